/*
 * backup.h - an operator's backup of a node's ledger, and restoring one into
 * a stopped node's data directory (`ehrctl backup`, `ehrctl restore`).
 *
 * A backup file is a fixed header followed by a ledger snapshot
 * (ledger_snapshot_create: the main LMDB environment, compacted: blocks,
 * write log, chain info, tip, and the Raft log and records of the node it
 * was taken from). The header records what the snapshot holds (chain id,
 * genesis hash, tip height and hash, applied index) and a BLAKE2b-256
 * checksum of the snapshot's bytes, itself covered by the header's own
 * checksum: LMDB does not checksum its pages, so without ours a flipped
 * byte in a backup would go unnoticed until it was restored.
 *
 * Not in a backup: the derived environment (tx index, world state: left
 * in place, the node brings it to the restored blocks and write log when
 * it opens them, whole when it is ahead of them), the node's key file and its passphrase (the
 * operator backs the key up separately), the config file, the node's snapshot files, the blob store
 * (record ciphertext: replicated to three members' nodes, and fetched back by a node that lacks its
 * share).
 *
 * Not here: the command line (cli/cmd_backup.c), the snapshot format and
 * its install (ledger/snapshot.c).
 */
#ifndef EHR_NODE_BACKUP_H
#define EHR_NODE_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ledger.h"

/* The first 8 bytes of every backup file. */
#define NODE_BACKUP_MAGIC "EHRBACKU"
enum {
    NODE_BACKUP_MAGIC_BYTES = 8,
    NODE_BACKUP_FORMAT_VERSION = 1,
    /* The header before the snapshot bytes, fixed size (layout in backup.c). */
    NODE_BACKUP_HEADER_BYTES = 512,
    NODE_BACKUP_CHECKSUM_BYTES = 32,
    /* A backup, restore or data directory path, without its NUL: within the
     * ledger's path limit, with room for the names made next to it. */
    NODE_BACKUP_PATH_BYTES_MAX = LEDGER_SNAPSHOT_PATH_BYTES_MAX - 64,
};
/* A backup file: the header and the largest snapshot. */
#define NODE_BACKUP_FILE_BYTES_MAX (LEDGER_SNAPSHOT_BYTES_MAX + NODE_BACKUP_HEADER_BYTES)
/* The file restore stages the snapshot in, inside the data directory (the
 * install renames it over data.mdb, so it must be on the same file system). */
#define NODE_BACKUP_STAGE_NAME "restore-incoming.mdb"

/* What a backup holds, read from its header (and checked against its bytes). */
struct node_backup_info {
    uint32_t format_version; /* NODE_BACKUP_FORMAT_VERSION */
    ledger_chain chain;      /* chain id, genesis hash, block 0 hash, ledger format */
    ledger_tip tip;          /* height, hash, time, applied index, tx count */
    uint64_t created_ms;     /* when the backup was written (Unix ms) */
    uint64_t snapshot_bytes; /* the ledger snapshot after the header */
    uint64_t file_bytes;     /* header + snapshot */
    uint8_t checksum[NODE_BACKUP_CHECKSUM_BYTES]; /* BLAKE2b-256 of the snapshot bytes */
};

/*
 * Encode INFO as a backup file's header into H (its layout in backup.c),
 * with the header's own checksum. INFO->chain.chain_id must be a valid
 * chain id (1..EHR_CHAIN_ID_BYTES_MAX bytes); file_bytes is not encoded
 * (it is the header plus snapshot_bytes).
 */
void node_backup_header_encode(const struct node_backup_info *info,
                               uint8_t h[NODE_BACKUP_HEADER_BYTES]);

/*
 * Decode and check the header at the start of a backup file: BUF holds its
 * first SIZE bytes, of which the first NODE_BACKUP_HEADER_BYTES are read.
 * NAME (required) names the file in DIAG's messages. Checks the magic, the
 * header's own checksum, the format version, the chain id and its zero
 * padding, the reserved bytes (zero), the snapshot size (at most
 * LEDGER_SNAPSHOT_BYTES_MAX) and a non-zero applied index; not the snapshot
 * bytes (node_backup_check does). INFO (required) gets what the header
 * says, file_bytes included; zeroed on error. An accepted header encodes
 * back (node_backup_header_encode) to the same bytes.
 * Returns 0; EHR_EINVAL (shorter than a header; not a backup); EHR_ECORRUPT
 * (a checksum mismatch, a malformed field); EHR_EVERSION (another backup
 * format); EHR_ETOOBIG; with a sentence in DIAG (may be NULL).
 */
int node_backup_header_decode(const uint8_t *buf, size_t size, const char *name,
                              struct node_backup_info *info, ehr_diag *diag);

/*
 * Write a backup of L (open read-only or writable; a node may be appending
 * to it from another process meanwhile) to OUT_PATH: a ledger snapshot is
 * taken into a temporary file next to OUT_PATH, copied behind a header into
 * a second temporary file while its checksum is computed, that file is
 * fsync'd, read back and checked (node_backup_check), renamed to OUT_PATH
 * (without FORCE, only if OUT_PATH does not exist: RENAME_NOREPLACE, so a
 * file that appears meanwhile is not replaced either), and the directory
 * fsync'd. OUT_PATH is either untouched or the whole new backup; the
 * temporary files are removed on every path. Needs free disk for twice the
 * snapshot while it runs.
 * INFO (required) gets what the backup holds. Returns 0; EHR_EEXIST
 * (OUT_PATH exists and FORCE is false); EHR_EINVAL (bad path; a ledger that
 * has applied nothing yet); a ledger_snapshot_create error; -errno; with a
 * sentence in DIAG (may be NULL).
 */
int node_backup_create(ledger *l, const char *out_path, bool force, struct node_backup_info *info,
                       ehr_diag *diag);

/*
 * Check the backup file PATH without restoring it: the header (magic,
 * format version, its own checksum, the chain id, reserved bytes zero), the
 * file's size against the header's, and every snapshot byte against the
 * checksum. INFO (required) gets what it holds. Changes nothing.
 * Returns 0; EHR_ENOTFOUND (no such file); EHR_EINVAL (not a regular file,
 * not a backup); EHR_EVERSION (another backup format); EHR_ETRUNCATED
 * (shorter than its header says); EHR_ECORRUPT (a checksum mismatch, a file
 * longer than its header says, a malformed header); EHR_ETOOBIG; -errno;
 * with a sentence in DIAG (may be NULL) naming the file.
 */
int node_backup_check(const char *path, struct node_backup_info *info, ehr_diag *diag);

/* What restore is asked to do. */
struct node_backup_restore_options {
    /* Replace a ledger that has applied beyond the backup. */
    bool force;
};

/* What restore did. */
struct node_backup_restore_report {
    struct node_backup_info backup;
    ledger_tip replaced;     /* the tip of the ledger the directory held before */
    uint64_t directory_term; /* the term of the directory's Raft hard state before */
    /*
     * The Raft hard state written (backup.c, "Raft and a restored node";
     * consensus/README.md, I14): term R, no vote, commit at the backup's
     * applied index, restore_term R, where R is one above the highest of
     * the directory's hard state's term, the backup's, and the term of the
     * backup's applied entry. The node neither votes nor campaigns until it
     * holds a committed entry of term >= R.
     */
    uint64_t term;
    uint64_t restore_term;         /* == term */
    const char *term_from;         /* the highest: "directory", "backup" or "log" */
    size_t snapshot_files_removed; /* the replaced ledger's snapshots/snap-*.mdb */
};

/*
 * Restore the backup BACKUP_PATH into the data directory DATA_DIR of a
 * stopped node. Takes the directory's lock first (node_datadir_lock; held
 * throughout, so ehrd cannot start meanwhile): EHR_EAGAIN while a node runs
 * there. Then: the backup's header is checked; the directory must hold a
 * ledger with a readable Raft hard state (EHR_EREFUSED otherwise: a lost or
 * wiped disk, a ledger the node never ran on; no option bypasses it, the
 * node rejoins as a new member); the backup must be of the directory's
 * chain (EHR_ECHAIN) and, unless OPTIONS->force, not behind its ledger
 * (EHR_EREFUSED, both heights in DIAG). The snapshot is copied into
 * DATA_DIR/restore-incoming.mdb while its checksum is checked (a mismatch:
 * EHR_ECORRUPT, nothing changed), fsync'd, and installed with
 * ledger_snapshot_install, crash-safe as that is (the directory holds the
 * old ledger or the new one, whole): the backup's Raft records are replaced
 * by an empty log after its applied index I, a snapshot meta and boundary
 * for I (the term of entry I, read from the backup's log; the configuration
 * in force there), and the restored hard state described in the report
 * (I14). The key file, the config and everything else in the directory
 * stay; the replaced ledger's snapshot files are removed (the node takes a
 * new one). When ehrd next starts it brings the derived tables to them and
 * catches up from its peers; it votes again once it holds a committed
 * entry of the restore term.
 * REPORT (required) says what was done. Returns 0; EHR_EAGAIN; EHR_EREFUSED;
 * EHR_ECHAIN; EHR_EINVAL (a bad path; a hard state without a chain); a
 * node_backup_check error; a ledger_snapshot_install error; EHR_ECORRUPT
 * (the backup's Raft records do not hold entry I; a term at the limit);
 * -errno; with a sentence in DIAG (may be NULL). On an error before the
 * install's swap the directory is as it was; after it (syncing the
 * directory failed, or the installed tip is not the header's) the ledger
 * may already be the backup's, whole (`ehrctl ledger status` tells).
 */
int node_backup_restore(const char *backup_path, const char *data_dir,
                        const struct node_backup_restore_options *options,
                        struct node_backup_restore_report *report, ehr_diag *diag);

#endif /* EHR_NODE_BACKUP_H */
