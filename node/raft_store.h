/*
 * raft_store.h - the node's Raft storage: the consensus core's read
 * interface (struct raft_storage) over the Raft log the ledger keeps in its
 * LMDB environment (ledger_raft_*), and the write side of the ready
 * protocol's step 2 (entries and hard state in one durable LMDB commit).
 *
 * Records are consensus/'s checksummed codec (raft_codec.c): the ledger
 * stores bytes it does not interpret. The store caches the log's bounds and
 * the term of every entry in memory (8 bytes an entry), so the core's
 * frequent term() calls never touch LMDB; entries() copies records out of
 * LMDB into a reused buffer and decodes them there (stable_pointers false:
 * the core copies what it keeps).
 *
 * Not here: snapshots' contents (the node creates and installs them through
 * the ledger; this store only reads the current snapshot file when the core
 * sends chunks, see node_raft_store_snapshot_set), what entries mean.
 *
 * One thread: the node's loop. The store is the only writer of the log.
 */
#ifndef EHR_NODE_RAFT_STORE_H
#define EHR_NODE_RAFT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger.h"
#include "raft.h"

enum {
    /* Entries one entries() call returns at most (the core asks for fewer
     * than RAFT_APPEND_ENTRIES_MAX per message; more are fetched again). */
    NODE_RAFT_STORE_READ_ENTRIES_MAX = 4096,
    /* Snapshot file path, with its NUL. */
    NODE_RAFT_STORE_PATH_BYTES_MAX = 4096,
};

struct node_raft_store {
    ledger *l;
    uint64_t first, last; /* the log holds [first, last] */
    uint64_t *terms;      /* terms[i]: term of index first - 1 + i, i in [0, last - first + 1] */
    size_t terms_cap;
    /* entries(): records copied out of LMDB */
    uint8_t *buf;
    size_t buf_cap, buf_len;
    size_t *offsets;
    size_t count, want;
    /* persist(): records encoded for one write */
    uint8_t *out;
    size_t out_cap;
    ledger_bytes *out_entries;
    size_t out_entries_cap;
    /* the current snapshot: its meta (index 0 when none) and file */
    struct raft_snapshot_meta snap_meta;
    int snap_fd;
    uint64_t snap_size;
};

/*
 * Open the store over L (borrowed; must outlive the store): read the log's
 * bounds and every entry's term. Returns 0; EHR_ECORRUPT (a record that does
 * not decode or an index out of sequence); a ledger error. The functions
 * below that take DIAG (may be NULL) write why they failed there.
 */
int node_raft_store_open(struct node_raft_store *s, ledger *l, ehr_diag *diag);
void node_raft_store_close(struct node_raft_store *s);

/* The read interface for raft_create (ctx = s). */
void node_raft_store_interface(struct node_raft_store *s, struct raft_storage *out);

/* The hard state on disk (all zero for a new node). */
int node_raft_store_hard_state(struct node_raft_store *s, struct raft_hard_state *out,
                               ehr_diag *diag);

/*
 * Step 2 of the ready protocol for RD's entries and hard state (the caller
 * handles RD->snapshot first): one ledger_raft_write, durable when it
 * returns 0. Returns 0 or the ledger's error (then nothing was written).
 */
int node_raft_store_persist(struct node_raft_store *s, const struct raft_ready *rd, ehr_diag *diag);

/* Write ENTRY (the bootstrap configuration entry at index 1) into an empty
 * log. Returns 0, EHR_EEXIST (the log is not empty) or a ledger error. */
int node_raft_store_bootstrap(struct node_raft_store *s, const struct raft_entry *entry,
                              ehr_diag *diag);

/*
 * Record a snapshot the node took: META (its index is in the log, at or
 * below the applied index) with its data in the file PATH (opened here and
 * kept open for snapshot_read), and drop the log below COMPACT_INDEX (<=
 * META->index + 1; 0 for no compaction), in one durable write. The previous
 * snapshot file is closed (the caller deletes it). Returns 0, EHR_EINVAL,
 * -errno, or a ledger error (then nothing changed).
 */
int node_raft_store_snapshot_set(struct node_raft_store *s, const struct raft_snapshot_meta *meta,
                                 const char *path, uint64_t compact_index, ehr_diag *diag);

/* Use PATH as the file of the snapshot the log already records (at start).
 * Returns 0 or -errno (e.g. -ENOENT: the file is gone; take a new one). */
int node_raft_store_snapshot_file(struct node_raft_store *s, const char *path);

/*
 * After the node has replaced its whole ledger by an installed snapshot
 * (whose Raft records the node wrote: an empty log from META->index + 1 and
 * the boundary), re-read everything from L and use PATH (may be NULL) as
 * the snapshot file. Returns as node_raft_store_open.
 */
int node_raft_store_reload(struct node_raft_store *s, ledger *l, const char *path, ehr_diag *diag);

/* Encode the boundary record for entry INDEX of TERM (what compaction keeps
 * about the entry before the first). BUF holds RAFT_ENTRY_RECORD_HEADER_BYTES
 * + RAFT_RECORD_CRC_BYTES. Returns the size written. */
size_t node_raft_store_boundary_encode(uint64_t index, uint64_t term, uint8_t *buf);

#endif /* EHR_NODE_RAFT_STORE_H */
