/*
 * blobs.h - the node's blob store: content-addressed record ciphertext
 * under the data directory, DIR/blobs/XX/YYYY... (XX the first two hex
 * digits of the id, YYYY... the other 62), written atomically and read in
 * chunks. A blob's id is the SHA-256 of its bytes (ehr_content_hash,
 * crypto/README.md "Content hash"), the anchor's ciphertext_hash.
 *
 * Synchronous and loop-free: every call does file I/O and may block, so
 * the node calls them on libuv's worker pool, never on its loop
 * (node/blob_service.c). One writer or reader is used by one thread at a
 * time; different ones may run at once (the store itself holds only the
 * directory's descriptor).
 *
 * Not here: who may upload or download (blob_service.c), which blobs a
 * node must delete because their record was erased (blob_erase.c),
 * replication to other members' nodes (replication.c).
 *
 * Invariants:
 *   1. A blob id reaches a path only as the 64 lowercase hex digits this
 *      module prints from 32 bytes (node_blob_id_parse refuses anything
 *      else), so no id can name a file outside DIR/blobs.
 *   2. A blob's final name exists only with its whole content, hashed to
 *      its id, and durable: the bytes go to a temporary file in the same
 *      directory (".tmp-" + id + "-" + 16 random hex digits), which is
 *      fsync'd, renamed over the final name, and the directory fsync'd.
 *   3. A write that fails, is over the size limit, does not hash to its
 *      claimed id or is abandoned leaves nothing: its temporary file is
 *      removed (node_blob_write_abort), and node_blobs_open removes any
 *      left by a process that died mid-write.
 */
#ifndef EHR_NODE_BLOBS_H
#define EHR_NODE_BLOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ehr_crypto.h"

#define NODE_BLOBS_DIR_NAME "blobs"
#define NODE_BLOB_TMP_PREFIX ".tmp-"
enum {
    NODE_BLOB_ID_BYTES = 32,     /* SHA-256 */
    NODE_BLOB_ID_HEX_BYTES = 64, /* its lowercase hex, without a NUL */
    /* DIR/blobs/XX/.tmp-<64>-<16>: the data directory's path and 100 more. */
    NODE_BLOB_PATH_BYTES_MAX = 4200,
};
_Static_assert((int)NODE_BLOB_ID_BYTES == (int)EHR_SHA256_BYTES, "a blob id is a SHA-256");

/* The largest blob a node stores by default: a CT or MR study in DICOM runs
 * to a few GiB. node_blobs_open takes the limit; the node passes this. */
#define NODE_BLOB_BYTES_MAX ((uint64_t)8 << 30)

/* An open store. Caller-owned; node_blobs_close releases it. */
struct node_blobs {
    char dir[NODE_BLOB_PATH_BYTES_MAX]; /* DIR/blobs */
    int dir_fd;
    uint64_t bytes_max;
};

/*
 * Open (creating it, mode 0700, if absent) DATADIR/blobs with a limit of
 * BYTES_MAX (> 0) bytes per blob, and remove the temporary files a write
 * that never finished left behind (invariant 3); *SWEPT (may be NULL) says
 * how many. Returns 0, EHR_EINVAL (a path too long), or -errno, with DIAG.
 */
int node_blobs_open(struct node_blobs *store, const char *datadir, uint64_t bytes_max,
                    uint64_t *swept, ehr_diag *diag);
void node_blobs_close(struct node_blobs *store);

/* Parse HEX (exactly 64 lowercase hex digits, NUL-terminated) into ID.
 * Returns 0 or EHR_EINVAL (anything else: a path, upper case, a length). */
int node_blob_id_parse(const char *hex, uint8_t id[NODE_BLOB_ID_BYTES]);
/* ID as 64 lowercase hex digits and a NUL. */
void node_blob_id_hex(char out[NODE_BLOB_ID_HEX_BYTES + 1], const uint8_t id[NODE_BLOB_ID_BYTES]);

/* Is the blob ID stored? Returns 0 with *SIZE (may be NULL), EHR_ENOTFOUND, or -errno. */
int node_blobs_stat(const struct node_blobs *store, const uint8_t id[NODE_BLOB_ID_BYTES],
                    uint64_t *size);

/*
 * Delete the blob ID (its record was erased), durably: the file is
 * unlinked and its directory fsync'd, so a crash cannot bring it back.
 * Idempotent. Returns 0 (deleted), EHR_ENOTFOUND (not stored: nothing to
 * do), or -errno with DIAG. A reader that has the file open keeps reading
 * what it opened (POSIX); the caller refuses new readers first.
 */
int node_blobs_remove(const struct node_blobs *store, const uint8_t id[NODE_BLOB_ID_BYTES],
                      ehr_diag *diag);

/* One write in progress: begin, write any number of times, then commit or abort. */
struct node_blob_writer {
    const struct node_blobs *store;
    uint8_t id[NODE_BLOB_ID_BYTES];
    int fd; /* -1 once finished */
    uint64_t bytes;
    struct ehr_content_hash hash;
    char tmp_path[NODE_BLOB_PATH_BYTES_MAX];
    char final_path[NODE_BLOB_PATH_BYTES_MAX];
    char sub_dir[NODE_BLOB_PATH_BYTES_MAX];
    bool sub_dir_created;
};

/*
 * Start writing the blob that claims to be ID: a new temporary file in its
 * directory. Returns 0 with W open, or -errno with DIAG (nothing left).
 */
int node_blob_write_begin(const struct node_blobs *store, const uint8_t id[NODE_BLOB_ID_BYTES],
                          struct node_blob_writer *w, ehr_diag *diag);
/*
 * Append LEN bytes of DATA. Returns 0; EHR_ETOOBIG if the blob would pass
 * the store's limit (nothing of DATA written); -errno (a write failed).
 * On error W stays open: abort it.
 */
int node_blob_write(struct node_blob_writer *w, const void *data, size_t len, ehr_diag *diag);
/*
 * Finish: the content must hash to the claimed id. Returns 0 with the blob
 * stored (already stored: the same bytes, replaced); EHR_EINVAL if the
 * hash differs (DIAG names both); -errno. On every return W is finished
 * and, on error, nothing is left (invariant 3).
 */
int node_blob_write_commit(struct node_blob_writer *w, ehr_diag *diag);
/* Give up: remove the temporary file. Safe on a finished writer. */
void node_blob_write_abort(struct node_blob_writer *w);

/* One blob being read. */
struct node_blob_reader {
    int fd; /* -1 once closed */
    uint64_t size;
    uint64_t offset;
};

/* Open the blob ID. Returns 0, EHR_ENOTFOUND, or -errno, with DIAG. */
int node_blob_read_open(const struct node_blobs *store, const uint8_t id[NODE_BLOB_ID_BYTES],
                        struct node_blob_reader *r, ehr_diag *diag);
/* Read up to CAP bytes into BUF from where the last read stopped. Returns
 * the count (0 at the end), or -errno. */
long node_blob_read(struct node_blob_reader *r, uint8_t *buf, size_t cap, ehr_diag *diag);
/* Continue reading from OFFSET (at most the size). Returns 0, EHR_EINVAL
 * past the end, or -errno. */
int node_blob_read_seek(struct node_blob_reader *r, uint64_t offset, ehr_diag *diag);
void node_blob_read_close(struct node_blob_reader *r);

#endif /* EHR_NODE_BLOBS_H */
