/*
 * backup.c - backup files of a node's ledger and their restore (backup.h):
 * the header format, writing a backup atomically, checking one byte by
 * byte, and restoring one into a stopped node's data directory through
 * ledger_snapshot_install with a Raft reset built here.
 *
 * Not here: the snapshot's contents and its install (ledger/snapshot.c),
 * the command line (cli/cmd_backup.c).
 *
 * Header layout (NODE_BACKUP_HEADER_BYTES, integers little-endian):
 *
 *   offset  size  field
 *        0     8  magic "EHRBACKU"
 *        8     4  backup format version (1)
 *       12     4  ledger format version of the snapshot
 *       16     8  snapshot bytes (the file is header + this)
 *       24     8  created, Unix ms
 *       32     8  tip height
 *       40     8  tip time, Unix ms
 *       48     8  applied Raft index
 *       56     8  transactions in blocks 0..tip
 *       64    32  tip block hash
 *       96    32  genesis hash (SHA-256 of the genesis document)
 *      128    32  block 0 hash
 *      160    32  BLAKE2b-256 of the snapshot bytes
 *      192     1  chain id length, 1..EHR_CHAIN_ID_BYTES_MAX
 *      193    64  chain id, zero-padded
 *      257   223  reserved, zero
 *      480    32  BLAKE2b-256 of bytes 0..479
 *
 * What the header says of the chain and tip is what ledger_snapshot_create
 * read back from the snapshot it wrote; restore checks the snapshot again
 * (ledger_snapshot_inspect, inside the install) and compares.
 *
 * Raft and a restored node (consensus/README.md, I14). A node restored
 * from a backup has forgotten the entries it acknowledged after it, and its
 * acknowledgement may be what committed one: counted as a vote, it could
 * elect a leader lacking it. Restore starts the log empty after the
 * backup's applied index I and writes the hard state {term R, no vote,
 * commit I, restore_term R}, R one above every term the node knew: the
 * directory's hard state (the node's own latest term: it took part in no
 * later one), the backup's, and entry I's. The core then neither votes nor
 * campaigns until it holds a committed entry of term >= R, and clears
 * restore_term itself. Every leader that counted this node's
 * acknowledgements is of a term below R, so the node's first answer deposes
 * it, and the next leader, elected without it, replicates to it from
 * scratch. A directory without a readable hard state (a lost or wiped
 * disk) gives no such R and is refused: that node rejoins as a new member.
 * Restored voters count as lost until they catch up: restore a minority at
 * a time (node/README.md, "Backups").
 */
#include "backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datadir.h"
#include "raft.h"

enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 8,
    OFF_LEDGER_VERSION = 12,
    OFF_SNAPSHOT_BYTES = 16,
    OFF_CREATED_MS = 24,
    OFF_TIP_HEIGHT = 32,
    OFF_TIP_TIME_MS = 40,
    OFF_APPLIED_INDEX = 48,
    OFF_TX_COUNT = 56,
    OFF_TIP_HASH = 64,
    OFF_GENESIS_HASH = 96,
    OFF_BLOCK0_HASH = 128,
    OFF_CHECKSUM = 160,
    OFF_CHAIN_ID_LEN = 192,
    OFF_CHAIN_ID = 193,
    OFF_RESERVED = OFF_CHAIN_ID + EHR_CHAIN_ID_BYTES_MAX,
    OFF_HEADER_CHECKSUM = NODE_BACKUP_HEADER_BYTES - NODE_BACKUP_CHECKSUM_BYTES,
    /* Copy buffer of the snapshot bytes. */
    COPY_BUF_BYTES = 1 << 20,
    /* Room for a path and a suffix made next to it. */
    PATH_BUF_BYTES = NODE_BACKUP_PATH_BYTES_MAX + 64,
    SNAPSHOT_NAME_PREFIX_BYTES = 5, /* "snap-" */
};
_Static_assert(OFF_RESERVED <= OFF_HEADER_CHECKSUM, "the chain id fits before the checksum");
_Static_assert(sizeof NODE_BACKUP_MAGIC - 1 == NODE_BACKUP_MAGIC_BYTES, "magic size");
_Static_assert(NODE_BACKUP_CHECKSUM_BYTES == crypto_generichash_BYTES, "BLAKE2b-256");
_Static_assert(EHR_HASH_BYTES == 32, "32-byte hashes in the header");
_Static_assert((long)PATH_BUF_BYTES <= (long)LEDGER_SNAPSHOT_PATH_BYTES_MAX,
               "paths made here stay within the ledger's limit");

/* ---- header ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void header_checksum(const uint8_t *h, uint8_t out[NODE_BACKUP_CHECKSUM_BYTES])
{
    crypto_generichash(out, NODE_BACKUP_CHECKSUM_BYTES, h, OFF_HEADER_CHECKSUM, NULL, 0);
}

void node_backup_header_encode(const struct node_backup_info *info,
                               uint8_t h[NODE_BACKUP_HEADER_BYTES])
{
    size_t id_len = strlen(info->chain.chain_id);
    EHR_ASSERT(id_len >= 1);
    EHR_ASSERT(id_len <= EHR_CHAIN_ID_BYTES_MAX);
    memset(h, 0, NODE_BACKUP_HEADER_BYTES);
    memcpy(h + OFF_MAGIC, NODE_BACKUP_MAGIC, NODE_BACKUP_MAGIC_BYTES);
    put32(h + OFF_VERSION, info->format_version);
    put32(h + OFF_LEDGER_VERSION, info->chain.format_version);
    put64(h + OFF_SNAPSHOT_BYTES, info->snapshot_bytes);
    put64(h + OFF_CREATED_MS, info->created_ms);
    put64(h + OFF_TIP_HEIGHT, info->tip.height);
    put64(h + OFF_TIP_TIME_MS, info->tip.time_ms);
    put64(h + OFF_APPLIED_INDEX, info->tip.applied_index);
    put64(h + OFF_TX_COUNT, info->tip.tx_count);
    memcpy(h + OFF_TIP_HASH, info->tip.hash, EHR_HASH_BYTES);
    memcpy(h + OFF_GENESIS_HASH, info->chain.genesis_hash, EHR_HASH_BYTES);
    memcpy(h + OFF_BLOCK0_HASH, info->chain.genesis_block_hash, EHR_HASH_BYTES);
    memcpy(h + OFF_CHECKSUM, info->checksum, NODE_BACKUP_CHECKSUM_BYTES);
    h[OFF_CHAIN_ID_LEN] = (uint8_t)id_len;
    memcpy(h + OFF_CHAIN_ID, info->chain.chain_id, id_len);
    header_checksum(h, h + OFF_HEADER_CHECKSUM);
}

static int header_decode(const uint8_t h[NODE_BACKUP_HEADER_BYTES], const char *path,
                         struct node_backup_info *info, ehr_diag *diag);

int node_backup_header_decode(const uint8_t *buf, size_t size, const char *name,
                              struct node_backup_info *info, ehr_diag *diag)
{
    EHR_ASSERT(info != NULL);
    EHR_ASSERT(name != NULL);
    int rc = 0;
    if (buf == NULL || size < NODE_BACKUP_HEADER_BYTES)
        rc = ehr_diag_fail(diag, EHR_EINVAL,
                           "%s is not an ehrchain backup (%zu bytes, shorter than a header)", name,
                           buf == NULL ? (size_t)0 : size);
    else
        rc = header_decode(buf, name, info, diag);
    if (rc != 0)
        memset(info, 0, sizeof *info);
    return rc;
}

/* Decode and check a header (PATH names the file in messages). */
static int header_decode(const uint8_t h[NODE_BACKUP_HEADER_BYTES], const char *path,
                         struct node_backup_info *info, ehr_diag *diag)
{
    memset(info, 0, sizeof *info);
    if (memcmp(h + OFF_MAGIC, NODE_BACKUP_MAGIC, NODE_BACKUP_MAGIC_BYTES) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s is not an ehrchain backup (no %s header)", path,
                             NODE_BACKUP_MAGIC);
    uint8_t sum[NODE_BACKUP_CHECKSUM_BYTES];
    header_checksum(h, sum);
    if (sodium_memcmp(sum, h + OFF_HEADER_CHECKSUM, sizeof sum) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT,
                             "%s is damaged: its header does not match the header's checksum",
                             path);
    info->format_version = get32(h + OFF_VERSION);
    if (info->format_version != NODE_BACKUP_FORMAT_VERSION)
        return ehr_diag_fail(diag, EHR_EVERSION,
                             "%s is a backup of format version %" PRIu32
                             "; this build reads version %d",
                             path, info->format_version, NODE_BACKUP_FORMAT_VERSION);
    for (size_t i = OFF_RESERVED; i < OFF_HEADER_CHECKSUM; i++)
        if (h[i] != 0)
            return ehr_diag_fail(diag, EHR_ECORRUPT, "%s: reserved header byte %zu is not zero",
                                 path, i);
    size_t id_len = h[OFF_CHAIN_ID_LEN];
    if (id_len < 1 || id_len > EHR_CHAIN_ID_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "%s: a chain id of %zu bytes", path, id_len);
    memcpy(info->chain.chain_id, h + OFF_CHAIN_ID, id_len);
    info->chain.chain_id[id_len] = '\0';
    if (strlen(info->chain.chain_id) != id_len)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "%s: a NUL byte inside the chain id", path);
    for (size_t i = OFF_CHAIN_ID + id_len; i < OFF_RESERVED; i++)
        if (h[i] != 0)
            return ehr_diag_fail(diag, EHR_ECORRUPT,
                                 "%s: header byte %zu after the chain id is not zero", path, i);
    ehr_diag why;
    if (ledger_chain_id_check(info->chain.chain_id, &why) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "%s: the chain id: %s", path, why.msg);
    info->chain.format_version = get32(h + OFF_LEDGER_VERSION);
    info->snapshot_bytes = get64(h + OFF_SNAPSHOT_BYTES);
    info->created_ms = get64(h + OFF_CREATED_MS);
    info->tip.height = get64(h + OFF_TIP_HEIGHT);
    info->tip.time_ms = get64(h + OFF_TIP_TIME_MS);
    info->tip.applied_index = get64(h + OFF_APPLIED_INDEX);
    info->tip.tx_count = get64(h + OFF_TX_COUNT);
    memcpy(info->tip.hash, h + OFF_TIP_HASH, EHR_HASH_BYTES);
    memcpy(info->chain.genesis_hash, h + OFF_GENESIS_HASH, EHR_HASH_BYTES);
    memcpy(info->chain.genesis_block_hash, h + OFF_BLOCK0_HASH, EHR_HASH_BYTES);
    memcpy(info->checksum, h + OFF_CHECKSUM, NODE_BACKUP_CHECKSUM_BYTES);
    if (info->snapshot_bytes > LEDGER_SNAPSHOT_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG,
                             "%s: a snapshot of %" PRIu64 " bytes, over the limit %llu", path,
                             info->snapshot_bytes, (unsigned long long)LEDGER_SNAPSHOT_BYTES_MAX);
    if (info->tip.applied_index == 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "%s: applied index 0 in the header", path);
    info->file_bytes = NODE_BACKUP_HEADER_BYTES + info->snapshot_bytes;
    return 0;
}

/* ---- files ---- */

static int path_check(const char *path, const char *what, ehr_diag *diag)
{
    if (path == NULL || path[0] == '\0')
        return ehr_diag_fail(diag, EHR_EINVAL, "no %s path given", what);
    if (strlen(path) > NODE_BACKUP_PATH_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "the %s path is over %d bytes", what,
                             NODE_BACKUP_PATH_BYTES_MAX);
    return 0;
}

/* The directory part of PATH ("." when none). */
static void path_dir(char out[PATH_BUF_BYTES], const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(out, PATH_BUF_BYTES, ".");
    else if (slash == path)
        snprintf(out, PATH_BUF_BYTES, "/");
    else
        snprintf(out, PATH_BUF_BYTES, "%.*s", (int)(slash - path), path);
}

/*
 * Stream BYTES bytes of IN from IN_OFFSET into the checksum (and into OUT at
 * OUT_OFFSET when OUT >= 0). Returns 0, EHR_ETRUNCATED, -errno (WHICH says
 * which side failed: 0 reading, 1 writing).
 */
static int stream(int in, uint64_t in_offset, uint64_t bytes, int out, uint64_t out_offset,
                  uint8_t sum[NODE_BACKUP_CHECKSUM_BYTES], int *which)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, NODE_BACKUP_CHECKSUM_BYTES);
    uint8_t *buf = ehr_malloc(COPY_BUF_BYTES);
    int rc = 0;
    *which = 0;
    for (uint64_t done = 0; rc == 0 && done < bytes;) {
        size_t n = bytes - done < COPY_BUF_BYTES ? (size_t)(bytes - done) : COPY_BUF_BYTES;
        rc = ehr_pread_all(in, buf, n, in_offset + done);
        if (rc == 0 && out >= 0 && (rc = ehr_pwrite_all(out, buf, n, out_offset + done)) != 0)
            *which = 1;
        if (rc == 0)
            crypto_generichash_update(&st, buf, n);
        done += n;
    }
    ehr_free(buf);
    crypto_generichash_final(&st, sum, NODE_BACKUP_CHECKSUM_BYTES);
    return rc;
}

/*
 * node_backup_check, and with OUT >= 0 also copy the snapshot bytes into OUT
 * (from offset 0) as they are checked.
 */
static int backup_read(const char *path, int out, struct node_backup_info *info, ehr_diag *diag)
{
    memset(info, 0, sizeof *info);
    /* O_NONBLOCK: a FIFO given as the file does not block the open; it is
     * refused as not a regular file just below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        return ehr_diag_fail(diag, err == ENOENT ? EHR_ENOTFOUND : -err, "%s: %s", path,
                             strerror(err));
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = ehr_diag_fail(diag, -errno, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = ehr_diag_fail(diag, EHR_EINVAL, "%s is not a regular file", path);
    else if ((uint64_t)st.st_size < NODE_BACKUP_HEADER_BYTES)
        rc = ehr_diag_fail(diag, EHR_EINVAL,
                           "%s is not an ehrchain backup (%lld bytes, shorter than a header)", path,
                           (long long)st.st_size);
    uint8_t h[NODE_BACKUP_HEADER_BYTES];
    if (rc == 0 && (rc = ehr_pread_all(fd, h, sizeof h, 0)) != 0)
        rc = ehr_diag_fail(diag, rc, "%s: reading the header: %s", path, ehr_strerror(rc));
    if (rc == 0)
        rc = header_decode(h, path, info, diag);
    if (rc == 0 && (uint64_t)st.st_size < info->file_bytes)
        rc = ehr_diag_fail(diag, EHR_ETRUNCATED,
                           "%s is cut short: %lld bytes, its header says %" PRIu64, path,
                           (long long)st.st_size, info->file_bytes);
    if (rc == 0 && (uint64_t)st.st_size > info->file_bytes)
        rc =
            ehr_diag_fail(diag, EHR_ECORRUPT, "%s is damaged: %lld bytes, its header says %" PRIu64,
                          path, (long long)st.st_size, info->file_bytes);
    uint8_t sum[NODE_BACKUP_CHECKSUM_BYTES];
    int which = 0;
    if (rc == 0 &&
        (rc = stream(fd, NODE_BACKUP_HEADER_BYTES, info->snapshot_bytes, out, 0, sum, &which)) != 0)
        rc = ehr_diag_fail(diag, rc, "%s: %s the ledger copy: %s", path,
                           which ? "staging" : "reading", ehr_strerror(rc));
    if (rc == 0 && sodium_memcmp(sum, info->checksum, sizeof sum) != 0)
        rc = ehr_diag_fail(diag, EHR_ECORRUPT,
                           "%s is damaged: its ledger copy does not match the checksum in its "
                           "header",
                           path);
    close(fd);
    if (rc != 0)
        memset(info, 0, sizeof *info);
    return rc;
}

int node_backup_check(const char *path, struct node_backup_info *info, ehr_diag *diag)
{
    EHR_ASSERT(info != NULL);
    int rc = path_check(path, "backup", diag);
    if (rc != 0) {
        memset(info, 0, sizeof *info);
        return rc;
    }
    return backup_read(path, -1, info, diag);
}

/* ---- create ---- */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Copy the snapshot file SNAP behind a header into the new file TMP (fd
 * FD), fsync'd; INFO gets the header's fields. */
static int backup_write(int fd, const char *tmp, const char *snap, const ledger_snapshot_info *si,
                        struct node_backup_info *info, ehr_diag *diag)
{
    int in = open(snap, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return ehr_diag_fail(diag, -errno, "%s: %s", snap, strerror(errno));
    memset(info, 0, sizeof *info);
    info->format_version = NODE_BACKUP_FORMAT_VERSION;
    info->chain = si->chain;
    info->tip = si->tip;
    info->created_ms = wall_ms();
    info->snapshot_bytes = si->file_bytes;
    info->file_bytes = NODE_BACKUP_HEADER_BYTES + si->file_bytes;
    int which = 0;
    int rc = stream(in, 0, si->file_bytes, fd, NODE_BACKUP_HEADER_BYTES, info->checksum, &which);
    close(in);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s %s: %s", which ? "writing" : "reading",
                             which ? tmp : snap, ehr_strerror(rc));
    uint8_t h[NODE_BACKUP_HEADER_BYTES];
    node_backup_header_encode(info, h);
    rc = ehr_pwrite_all(fd, h, sizeof h, 0);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "writing %s: %s", tmp, strerror(-rc));
    return 0;
}

int node_backup_create(ledger *l, const char *out_path, bool force, struct node_backup_info *info,
                       ehr_diag *diag)
{
    EHR_ASSERT(l != NULL);
    EHR_ASSERT(info != NULL);
    memset(info, 0, sizeof *info);
    int rc = path_check(out_path, "backup", diag);
    if (rc != 0)
        return rc;
    struct stat st;
    if (!force && lstat(out_path, &st) == 0)
        return ehr_diag_fail(diag, EHR_EEXIST, "%s exists (--force replaces it)", out_path);
    char snap[PATH_BUF_BYTES], tmp[PATH_BUF_BYTES], dir[PATH_BUF_BYTES];
    snprintf(snap, sizeof snap, "%s.snapshot-XXXXXX", out_path);
    snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", out_path);
    path_dir(dir, out_path);
    /* Reserve a unique name for the snapshot: ledger_snapshot_create
     * renames its copy over it. */
    int sfd = mkostemp(snap, O_CLOEXEC);
    if (sfd < 0)
        return ehr_diag_fail(diag, -errno, "creating a file next to %s: %s", out_path,
                             strerror(errno));
    close(sfd);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = ehr_diag_fail(diag, -errno, "creating a file next to %s: %s", out_path,
                           strerror(errno));
        unlink(snap);
        return rc;
    }
    ledger_snapshot_info si;
    ehr_diag why;
    rc = ledger_snapshot_create(l, snap, &si, &why);
    if (rc != 0)
        rc = ehr_diag_fail(diag, rc, "copying the ledger: %s", why.msg);
    if (rc == 0)
        rc = backup_write(fd, tmp, snap, &si, info, diag);
    close(fd);
    unlink(snap);
    /* Read back what is on disk before it takes the name. */
    struct node_backup_info back;
    if (rc == 0 && (rc = backup_read(tmp, -1, &back, &why)) != 0)
        rc = ehr_diag_fail(diag, rc, "the backup fails its check once written: %s", why.msg);
    if (rc == 0 && (back.tip.height != info->tip.height ||
                    memcmp(back.tip.hash, info->tip.hash, EHR_HASH_BYTES) != 0))
        rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the backup reads back another tip than written");
    int renamed =
        rc == 0 ? renameat2(AT_FDCWD, tmp, AT_FDCWD, out_path, force ? 0 : RENAME_NOREPLACE) : 0;
    if (rc == 0 && renamed != 0 && errno == EINVAL && !force) {
        /* A file system without rename flags (NFS): link() refuses an
         * existing name too, atomically. */
        renamed = link(tmp, out_path);
        if (renamed == 0)
            unlink(tmp);
    }
    if (rc == 0 && renamed != 0) {
        int err = errno;
        rc = err == EEXIST
                 ? ehr_diag_fail(diag, EHR_EEXIST, "%s exists (--force replaces it)", out_path)
                 : ehr_diag_fail(diag, -err, "renaming %s to %s: %s", tmp, out_path, strerror(err));
    }
    if (rc != 0) {
        unlink(tmp);
        memset(info, 0, sizeof *info);
        return rc;
    }
    rc = ehr_dir_sync(dir);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "syncing the directory %s: %s", dir, strerror(-rc));
    return 0;
}

/* ---- restore ---- */

/* What restore learns from the backup's Raft log about its applied index. */
struct log_scan {
    uint64_t applied_index;
    bool have_term;
    uint64_t term; /* of entry applied_index */
    bool have_config;
    struct raft_config config; /* the last configuration entry at or below it */
    int err;
};

static int log_scan_entry(void *ctx, uint64_t index, const uint8_t *bytes, size_t len)
{
    struct log_scan *s = ctx;
    struct raft_entry e;
    int rc = raft_entry_record_decode(bytes, len, &e);
    if (rc == 0 && e.index != index)
        rc = EHR_ECORRUPT;
    if (rc == 0 && e.type == RAFT_ENTRY_CONFIG) {
        rc = raft_config_decode(e.data, e.size, &s->config);
        s->have_config = rc == 0;
    }
    if (rc != 0) {
        s->err = rc;
        return rc;
    }
    if (index == s->applied_index) {
        s->have_term = true;
        s->term = e.term;
    }
    return 0;
}

/*
 * Build the Raft reset for installing the staged snapshot STAGE at
 * applied index I: snapshot meta and boundary for I, an empty log after
 * it, and the restored hard state (I14; REPORT says what was written).
 * DIR_HS (required): the directory's hard state. Records go into the
 * caller's buffers.
 */
struct reset_bufs {
    uint8_t boundary[RAFT_ENTRY_RECORD_HEADER_BYTES + RAFT_RECORD_CRC_BYTES];
    uint8_t meta[RAFT_SNAPSHOT_META_RECORD_BYTES];
    uint8_t hard_state[RAFT_HARD_STATE_RECORD_BYTES];
};

static int reset_build(const char *stage, uint64_t i, const struct raft_hard_state *dir_hs,
                       struct reset_bufs *bufs, ledger_raft_batch *reset,
                       struct node_backup_restore_report *report, ehr_diag *diag)
{
    struct log_scan scan = {.applied_index = i};
    ledger_snapshot_raft *rec = ehr_malloc(sizeof *rec);
    ehr_diag why;
    int rc = ledger_snapshot_raft_read(stage, 1, i + 1, log_scan_entry, &scan, rec, &why);
    if (rc != 0) {
        rc = ehr_diag_fail(diag, rc, "reading the backup's Raft records: %s",
                           scan.err != 0 ? ehr_strerror(scan.err) : why.msg);
        goto done;
    }
    struct raft_snapshot_meta bmeta = {0};
    if (rec->snapshot_meta_len > 0 &&
        (rc = raft_snapshot_meta_record_decode(rec->snapshot_meta, rec->snapshot_meta_len,
                                               &bmeta)) != 0) {
        rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the backup's snapshot meta: %s", ehr_strerror(rc));
        goto done;
    }
    struct raft_entry bound = {0};
    if (rec->boundary_len > 0 &&
        (rc = raft_entry_record_decode(rec->boundary, rec->boundary_len, &bound)) != 0) {
        rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the backup's log boundary: %s", ehr_strerror(rc));
        goto done;
    }
    struct raft_hard_state bhs = {0};
    bool have_bhs = rec->hard_state_len > 0;
    if (have_bhs &&
        (rc = raft_hard_state_record_decode(rec->hard_state, rec->hard_state_len, &bhs)) != 0) {
        rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the backup's hard state: %s", ehr_strerror(rc));
        goto done;
    }
    struct raft_snapshot_meta meta = {.index = i};
    if (scan.have_term)
        meta.term = scan.term;
    else if (bmeta.index == i)
        meta.term = bmeta.term;
    else if (rec->boundary_len > 0 && bound.index == i)
        meta.term = bound.term;
    if (meta.term == 0) {
        rc = ehr_diag_fail(diag, EHR_ECORRUPT,
                           "the backup's Raft log does not hold its applied entry %" PRIu64
                           " (log %" PRIu64 "..%" PRIu64 ")",
                           i, rec->first, rec->last);
        goto done;
    }
    /* Membership changes do not reach consensus: the configuration in
     * force is the last one the log or the snapshot recorded. */
    if (scan.have_config)
        meta.config = scan.config;
    else if (bmeta.index > 0)
        meta.config = bmeta.config;
    else {
        rc =
            ehr_diag_fail(diag, EHR_ECORRUPT,
                          "the backup records no Raft configuration at or below entry %" PRIu64, i);
        goto done;
    }
    /* R: one above the directory's term (the node's own), the backup's and
     * entry I's, so the node took part in no term >= R (I14). */
    EHR_ASSERT(dir_hs != NULL);
    uint64_t known = dir_hs->term;
    report->term_from = "directory";
    if (have_bhs && bhs.term > known) {
        known = bhs.term;
        report->term_from = "backup";
    }
    if (meta.term > known) {
        known = meta.term;
        report->term_from = "log";
    }
    if (known >= RAFT_TERM_MAX) {
        rc = ehr_diag_fail(diag, EHR_ECORRUPT,
                           "the %s's Raft term %" PRIu64
                           " leaves no term above it (the limit is %" PRIu64 ")",
                           report->term_from, known, (uint64_t)RAFT_TERM_MAX);
        goto done;
    }
    struct raft_hard_state hs = {.term = known + 1, .commit = i, .restore_term = known + 1};
    EHR_ASSERT(hs.term > meta.term); /* a term never below the last entry's (I1) */
    EHR_ASSERT(hs.term > dir_hs->term);
    EHR_ASSERT(hs.vote == 0);
    report->term = hs.term;
    report->restore_term = hs.restore_term;
    report->directory_term = dir_hs->term;
    int mn = raft_snapshot_meta_record_encode(&meta, bufs->meta, sizeof bufs->meta);
    struct raft_entry b = {.term = meta.term, .index = i, .type = RAFT_ENTRY_EMPTY};
    int bn = raft_entry_record_encode(&b, bufs->boundary, sizeof bufs->boundary);
    int hn = raft_hard_state_record_encode(&hs, bufs->hard_state, sizeof bufs->hard_state);
    EHR_ASSERT(mn > 0);
    EHR_ASSERT(bn == (int)sizeof bufs->boundary);
    EHR_ASSERT(hn > 0);
    *reset = (ledger_raft_batch){.compact_index = i + 1,
                                 .boundary = {bufs->boundary, (size_t)bn},
                                 .snapshot_meta = {bufs->meta, (size_t)mn},
                                 .hard_state = {bufs->hard_state, (size_t)hn}};
done:
    ehr_free(rec);
    return rc;
}

/* The directory's current ledger: whether there is one, its chain and tip,
 * and its Raft hard state, or why there is none to read (NO_HS). */
struct current {
    bool present;
    ledger_chain chain;
    ledger_tip tip;
    bool has_hs;
    struct raft_hard_state hs;
    char no_hs[EHR_DIAG_BYTES_MAX];
};

/* Returns 0 (CUR->has_hs false, with CUR->no_hs saying why, when the
 * directory holds no readable hard state); -errno when DIR cannot be
 * looked at. */
static int current_read(const char *dir, struct current *cur, ehr_diag *diag)
{
    memset(cur, 0, sizeof *cur);
    char data[PATH_BUF_BYTES];
    snprintf(data, sizeof data, "%s/data.mdb", dir);
    struct stat st;
    if (stat(data, &st) != 0) {
        if (errno != ENOENT)
            return ehr_diag_fail(diag, -errno, "%s: %s", data, strerror(errno));
        snprintf(cur->no_hs, sizeof cur->no_hs, "it holds no ledger");
        return 0;
    }
    ledger *l;
    ehr_diag why = {{0}};
    int rc = ledger_open(dir, &(ledger_options){.read_only = true}, &l, &why);
    if (rc != 0) {
        snprintf(cur->no_hs, sizeof cur->no_hs, "its ledger cannot be read: %s%s%.300s",
                 ehr_strerror(rc), why.msg[0] ? ": " : "", why.msg);
        return 0;
    }
    rc = ledger_chain_get(l, &cur->chain, &why);
    if (rc == 0)
        rc = ledger_tip_get(l, &cur->tip, &why);
    if (rc == 0)
        cur->present = true;
    else if (rc != EHR_ENOTFOUND) /* ENOTFOUND: a ledger without a chain */
        rc = ehr_diag_fail(diag, rc, "the ledger in %s: %s", dir, why.msg);
    else
        rc = 0;
    uint8_t rec[LEDGER_RAFT_META_BYTES_MAX];
    size_t len = 0;
    int hrc = rc == 0 ? ledger_raft_hard_state_get(l, rec, sizeof rec, &len, &why) : rc;
    if (hrc == 0) {
        hrc = raft_hard_state_record_decode(rec, len, &cur->hs);
        cur->has_hs = hrc == 0;
        if (hrc != 0)
            snprintf(cur->no_hs, sizeof cur->no_hs, "its Raft hard state does not decode: %s",
                     ehr_strerror(hrc));
    } else if (hrc == EHR_ENOTFOUND) {
        snprintf(cur->no_hs, sizeof cur->no_hs,
                 "its ledger holds no Raft hard state (the node never ran on it)");
    } else if (rc == 0) {
        snprintf(cur->no_hs, sizeof cur->no_hs, "its Raft hard state cannot be read: %.300s",
                 why.msg);
    }
    ledger_close(l);
    return rc;
}

static int chain_compare(const ledger_chain *got, const char *want_id, const uint8_t *want_hash,
                         const char *whose, ehr_diag *diag)
{
    if (strcmp(got->chain_id, want_id) == 0 &&
        memcmp(got->genesis_hash, want_hash, EHR_HASH_BYTES) == 0)
        return 0;
    char g[2 * EHR_HASH_BYTES + 1], w[2 * EHR_HASH_BYTES + 1];
    ehr_hex_encode(g, got->genesis_hash, EHR_HASH_BYTES);
    ehr_hex_encode(w, want_hash, EHR_HASH_BYTES);
    return ehr_diag_fail(diag, EHR_ECHAIN,
                         "the backup is of chain \"%s\" (genesis %.16s...), not %s chain \"%s\" "
                         "(genesis %.16s...)",
                         got->chain_id, g, whose, want_id, w);
}

/* Remove DIR/snapshots/snap-*.mdb (the replaced ledger's). Returns how many. */
static size_t snapshot_files_remove(const char *dir)
{
    char sdir[PATH_BUF_BYTES];
    snprintf(sdir, sizeof sdir, "%s/snapshots", dir);
    DIR *d = opendir(sdir);
    if (d == NULL)
        return 0;
    size_t removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "snap-", SNAPSHOT_NAME_PREFIX_BYTES) != 0 || n < sizeof ".mdb" ||
            strcmp(e->d_name + n - (sizeof ".mdb" - 1), ".mdb") != 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    if (removed > 0)
        ehr_dir_sync(sdir);
    return removed;
}

int node_backup_restore(const char *backup_path, const char *data_dir,
                        const struct node_backup_restore_options *options,
                        struct node_backup_restore_report *report, ehr_diag *diag)
{
    EHR_ASSERT(options != NULL);
    EHR_ASSERT(report != NULL);
    memset(report, 0, sizeof *report);
    int rc = path_check(backup_path, "backup", diag);
    if (rc == 0)
        rc = path_check(data_dir, "data directory", diag);
    if (rc != 0)
        return rc;
    struct node_datadir_lock lock;
    ehr_diag why;
    rc = node_datadir_lock(data_dir, &lock, &why);
    if (rc == EHR_EAGAIN)
        return ehr_diag_fail(diag, rc, "%s (stop ehrd before restoring)", why.msg);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s", why.msg);

    char stage[PATH_BUF_BYTES];
    snprintf(stage, sizeof stage, "%s/%s", data_dir, NODE_BACKUP_STAGE_NAME);
    unlink(stage); /* left by a restore that was interrupted */
    struct current cur;
    int fd = -1;
    /* Cheap checks first: the header, the chain, the heights. */
    uint8_t h[NODE_BACKUP_HEADER_BYTES];
    int hfd = open(backup_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (hfd < 0) {
        int err = errno;
        rc = ehr_diag_fail(diag, err == ENOENT ? EHR_ENOTFOUND : -err, "%s: %s", backup_path,
                           strerror(err));
        goto out;
    }
    struct stat hst;
    if (fstat(hfd, &hst) != 0 || !S_ISREG(hst.st_mode)) {
        close(hfd);
        rc = ehr_diag_fail(diag, EHR_EINVAL, "%s is not a regular file", backup_path);
        goto out;
    }
    rc = ehr_pread_all(hfd, h, sizeof h, 0);
    close(hfd);
    if (rc == EHR_ETRUNCATED)
        rc = ehr_diag_fail(diag, EHR_EINVAL, "%s is not an ehrchain backup (shorter than a header)",
                           backup_path);
    else if (rc != 0)
        rc = ehr_diag_fail(diag, rc, "%s: %s", backup_path, ehr_strerror(rc));
    if (rc == 0)
        rc = header_decode(h, backup_path, &report->backup, diag);
    if (rc == 0)
        rc = current_read(data_dir, &cur, diag);
    if (rc != 0)
        goto out;
    if (!cur.has_hs) {
        /* I14 needs a term above every term this node took part in: only
         * its own durable hard state says which that is. */
        rc = ehr_diag_fail(diag, EHR_EREFUSED,
                           "%s holds no readable Raft hard state (%s); a restore needs it to "
                           "choose a term above every term this node took part in, so it is "
                           "refused and nothing was changed. A node that lost its disk must "
                           "rejoin the network as a new member (docs/OPERATIONS.md, section 4, "
                           "\"Backups\")",
                           data_dir, cur.no_hs);
        goto out;
    }
    const ledger_chain *bchain = &report->backup.chain;
    if (!cur.present)
        rc = ehr_diag_fail(diag, EHR_EINVAL,
                           "%s holds a Raft hard state but no chain to check the backup's "
                           "against",
                           data_dir);
    else
        rc = chain_compare(bchain, cur.chain.chain_id, cur.chain.genesis_hash, "the directory's",
                           diag);
    if (rc != 0)
        goto out;
    report->replaced = cur.tip;
    const ledger_tip *btip = &report->backup.tip;
    if (!options->force && cur.tip.applied_index > btip->applied_index)
        rc = ehr_diag_fail(diag, EHR_EREFUSED,
                           "the backup (height %" PRIu64 ", applied index %" PRIu64
                           ") is older than the ledger in %s (height %" PRIu64
                           ", applied index %" PRIu64 "); --force replaces it",
                           btip->height, btip->applied_index, data_dir, cur.tip.height,
                           cur.tip.applied_index);
    if (rc != 0)
        goto out;

    /* Stage the snapshot, checking every byte against the checksum. */
    fd = open(stage, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = ehr_diag_fail(diag, -errno, "%s: %s", stage, strerror(errno));
        goto out;
    }
    struct node_backup_info checked;
    rc = backup_read(backup_path, fd, &checked, diag);
    if (rc == 0 && memcmp(h + OFF_CHECKSUM, checked.checksum, NODE_BACKUP_CHECKSUM_BYTES) != 0)
        rc = ehr_diag_fail(diag, EHR_ECORRUPT, "%s changed while it was restored", backup_path);
    if (rc == 0 && fsync(fd) != 0)
        rc = ehr_diag_fail(diag, -errno, "syncing %s: %s", stage, strerror(errno));
    close(fd);
    if (rc != 0)
        goto out;

    struct reset_bufs bufs;
    ledger_raft_batch reset;
    rc = reset_build(stage, btip->applied_index, &cur.hs, &bufs, &reset, report, diag);
    if (rc != 0)
        goto out;
    ledger_snapshot_expect expect = {.chain_id = bchain->chain_id,
                                     .applied_index = btip->applied_index,
                                     .replace_newer = options->force};
    memcpy(expect.genesis_hash, bchain->genesis_hash, EHR_HASH_BYTES);
    ledger_snapshot_info installed;
    rc = ledger_snapshot_install(data_dir, stage, &reset, &expect, &installed, &why);
    if (rc != 0) {
        rc = ehr_diag_fail(diag, rc, "installing the backup: %s", why.msg);
        goto out;
    }
    if (installed.tip.height != btip->height ||
        memcmp(installed.tip.hash, btip->hash, EHR_HASH_BYTES) != 0) {
        /* The header was written from the same snapshot: a mismatch means a
         * backup made with another tool, or a bug. The ledger installed is
         * whole and of the chain; say so loudly. */
        rc = ehr_diag_fail(diag, EHR_ECORRUPT,
                           "the restored ledger's tip (height %" PRIu64
                           ") is not the one the backup's header names (height %" PRIu64 ")",
                           installed.tip.height, btip->height);
        goto out;
    }
    report->snapshot_files_removed = snapshot_files_remove(data_dir);
out:
    unlink(stage);
    node_datadir_unlock(&lock);
    return rc;
}
