/*
 * snapshot.c - the ledger side of Raft snapshots: a compacted copy of the
 * LMDB environment into one file (ledger_snapshot_create), the checks a
 * received file must pass (ledger_snapshot_inspect), and replacing a
 * node's ledger with one (ledger_snapshot_install).
 *
 * Not here: chunking and transfer (the node serves the file through
 * raft_storage.snapshot_read and stages received chunks), the Raft records'
 * contents (opaque, as in raftlog.c), a full check of every block
 * (ledger_verify).
 *
 * LMDB caveats, as they apply here (see also store.c):
 * - mdb_env_copyfd2 copies inside its own read transaction, so it may run
 *   on a worker thread while the owner thread writes through the same
 *   MDB_env (MDB_NOTLS: that reader takes its own slot). It holds that
 *   snapshot for the whole copy: pages freed meanwhile are not reused, so
 *   the ledger file grows by what is written during a copy.
 * - A snapshot file is opened with MDB_NOSUBDIR | MDB_NOLOCK: no lock file
 *   next to it, and nothing else may use the file at the same time (a
 *   snapshot being written or installed is private to its caller).
 * - LMDB trusts its file. A data file shorter than its header says is
 *   mapped beyond its end and a read there raises SIGBUS, so the header is
 *   read here first (its layout is LMDB 0.9's on-disk format, checked at
 *   the magic and version) and the file size checked against it. Pages
 *   are not checksummed: a flipped byte inside a page is found only where
 *   the ledger keeps its own checksums (the blocks).
 * - lock.mdb holds the reader table, the writer mutex and the last
 *   transaction id, all for the data file it was set up with. The first
 *   process to open an environment (it gets LMDB's exclusive fcntl lock on
 *   byte 0 of lock.mdb) rebuilds the table from the data file; later ones
 *   trust it. So install refuses while anyone holds that byte (an open
 *   environment), holds it itself while it swaps data.mdb, and leaves
 *   lock.mdb empty: an opener that waited on the old lock then fails to map
 *   it (and opens again), and the next opener rebuilds it for the new file.
 */
#include "ledger_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void (*ledger__snapshot_install_hook)(enum ledger__install_step step);

static void step_done(enum ledger__install_step step)
{
    if (ledger__snapshot_install_hook != NULL)
        ledger__snapshot_install_hook(step);
}

/* ---- Paths and files ---- */

enum {
    /* Room for a path plus "/data.mdb", "/lock.mdb" or ".tmp-XXXXXX". */
    PATH_BUF_BYTES = LEDGER_SNAPSHOT_PATH_BYTES_MAX + 16,
};

static int path_check(const char *path, const char *what, ehr_diag *diag)
{
    if (path == NULL || path[0] == '\0')
        return ehr_diag_fail(diag, EHR_EINVAL, "no %s path given", what);
    size_t len = strnlen(path, LEDGER_SNAPSHOT_PATH_BYTES_MAX + 1);
    if (len > LEDGER_SNAPSHOT_PATH_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "the %s path is over the limit of %d bytes", what,
                             LEDGER_SNAPSHOT_PATH_BYTES_MAX);
    return 0;
}

/* OUT = A followed by B (A checked by path_check, B short). */
static void path_join(char out[PATH_BUF_BYTES], const char *a, const char *b)
{
    int n = snprintf(out, PATH_BUF_BYTES, "%s%s", a, b);
    EHR_ASSERT(n > 0 && n < PATH_BUF_BYTES);
}

/* The directory part of PATH ("." if none), into OUT. */
static void path_dir(char out[PATH_BUF_BYTES], const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        path_join(out, ".", "");
        return;
    }
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    EHR_ASSERT(len < PATH_BUF_BYTES);
    memcpy(out, path, len);
    out[len] = '\0';
}

static int file_sync(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

/* ---- The LMDB header ----
 * LMDB 0.9's data file starts with two meta pages. Each page starts with a
 * 16-byte header (page number, pad, flags at byte 10, bounds); the meta
 * follows: magic, version, fixed address, map size, the free and main
 * database records (48 bytes each; the free one's first field is the page
 * size), the last page number and the transaction id. LMDB uses the meta
 * with the higher transaction id. Integers are in host byte order.
 */
enum {
    LMDB_PAGE_HEADER_BYTES = 16,
    LMDB_PAGE_FLAGS_AT = 10,
    LMDB_PAGE_FLAG_META = 0x08,
    LMDB_META_MAGIC_AT = 0,
    LMDB_META_VERSION_AT = 4,
    LMDB_META_PAGE_BYTES_AT = 24,
    LMDB_META_LAST_PAGE_AT = 120,
    LMDB_META_TXNID_AT = 128,
    LMDB_META_BYTES = 136,
    LMDB_HEAD_BYTES = LMDB_PAGE_HEADER_BYTES + LMDB_META_BYTES,
    LMDB_DATA_VERSION = 1,
    LMDB_PAGE_BYTES_MIN = 512,
    LMDB_PAGE_BYTES_MAX = 65536,
};
#define LMDB_MAGIC 0xBEEFC0DEu

typedef struct lmdb_meta {
    uint32_t page_bytes;
    uint64_t last_page;
    uint64_t txnid;
} lmdb_meta;

static uint32_t u32_at(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t u64_at(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Read and check meta page INDEX of FD at OFFSET. */
static int lmdb_meta_read(int fd, const char *path, unsigned index, uint64_t offset, lmdb_meta *out,
                          ehr_diag *diag)
{
    uint8_t head[LMDB_HEAD_BYTES];
    ssize_t n = pread(fd, head, sizeof head, (off_t)offset);
    if (n < 0)
        return ehr_diag_fail(diag, -errno, "%s: reading the LMDB header: %s", path,
                             strerror(errno));
    if ((size_t)n < sizeof head)
        return ehr_diag_fail(diag, EHR_ETRUNCATED,
                             "%s is too short for an LMDB header (meta page %u cut off)", path,
                             index);
    uint16_t flags;
    memcpy(&flags, head + LMDB_PAGE_FLAGS_AT, sizeof flags);
    const uint8_t *meta = head + LMDB_PAGE_HEADER_BYTES;
    if (!(flags & LMDB_PAGE_FLAG_META) || u32_at(meta + LMDB_META_MAGIC_AT) != LMDB_MAGIC)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s is not an LMDB file (no meta page %u)", path,
                             index);
    uint32_t version = u32_at(meta + LMDB_META_VERSION_AT);
    if (version != LMDB_DATA_VERSION)
        return ehr_diag_fail(diag, EHR_EVERSION,
                             "%s is an LMDB file of data version %u; this build reads version %d",
                             path, (unsigned)version, LMDB_DATA_VERSION);
    out->page_bytes = u32_at(meta + LMDB_META_PAGE_BYTES_AT);
    out->last_page = u64_at(meta + LMDB_META_LAST_PAGE_AT);
    out->txnid = u64_at(meta + LMDB_META_TXNID_AT);
    uint32_t pb = out->page_bytes;
    if (pb < LMDB_PAGE_BYTES_MIN || pb > LMDB_PAGE_BYTES_MAX || (pb & (pb - 1)) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: LMDB meta page %u gives a page size of %u",
                             path, index, (unsigned)pb);
    return 0;
}

int ledger__snapshot_size_check(uint64_t file_bytes, ehr_diag *diag)
{
    if (file_bytes > LEDGER_SNAPSHOT_BYTES_MAX)
        return ehr_diag_fail(
            diag, EHR_ETOOBIG, "the snapshot is %llu bytes, over the limit of %llu",
            (unsigned long long)file_bytes, (unsigned long long)LEDGER_SNAPSHOT_BYTES_MAX);
    return 0;
}

/*
 * Check the file PATH before LMDB maps it: a regular file within the size
 * limit, two valid meta pages, and the pages the current one counts inside
 * the file. *FILE_BYTES gets its size. Returns 0 or the errors of
 * ledger_snapshot_inspect.
 */
static int file_check(const char *path, uint64_t *file_bytes, ehr_diag *diag)
{
    /* O_NONBLOCK: a FIFO in PATH's place must not block the open. */
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
    if (rc == 0)
        rc = ledger__snapshot_size_check((uint64_t)st.st_size, diag);
    lmdb_meta metas[2];
    if (rc == 0)
        rc = lmdb_meta_read(fd, path, 0, 0, &metas[0], diag);
    if (rc == 0)
        rc = lmdb_meta_read(fd, path, 1, metas[0].page_bytes, &metas[1], diag);
    close(fd);
    if (rc != 0)
        return rc;
    const lmdb_meta *m = metas[1].txnid > metas[0].txnid ? &metas[1] : &metas[0];
    if (m->page_bytes != metas[0].page_bytes)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: the LMDB meta pages disagree on the page size",
                             path);
    uint64_t pages_max = LEDGER_SNAPSHOT_BYTES_MAX / m->page_bytes;
    if (m->last_page >= pages_max)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "%s: its LMDB header counts %llu pages", path,
                             (unsigned long long)m->last_page + 1);
    uint64_t need = (m->last_page + 1) * m->page_bytes;
    if ((uint64_t)st.st_size < need)
        return ehr_diag_fail(diag, EHR_ETRUNCATED,
                             "%s is %llu bytes; its LMDB header says %llu (truncated)", path,
                             (unsigned long long)st.st_size, (unsigned long long)need);
    *file_bytes = (uint64_t)st.st_size;
    return 0;
}

/* ---- Opening a snapshot file as a ledger ---- */

/*
 * Open the LMDB data file PATH (FILE_BYTES long, checked by file_check) as
 * a ledger handle without a lock file: read-only, or WRITABLE with room to
 * grow and MDB_NOSYNC (the caller syncs). Only this process may touch the
 * file meanwhile. *OUT is closed with ledger_close.
 * Returns 0; EHR_EINVAL (not a ledger: a database missing); LMDB's errors.
 */
static int snap_open(const char *path, bool writable, uint64_t file_bytes, ledger **out,
                     ehr_diag *diag)
{
    EHR_ASSERT(path != NULL && out != NULL);
    *out = NULL;
    ledger *s = ehr_calloc(1, sizeof *s);
    s->dir = ehr_strdup(path);
    s->options.read_only = !writable;
    s->options.sync = LEDGER_SYNC_NONE;
    s->options.readers_max = 1;
    long page = sysconf(_SC_PAGESIZE);
    EHR_ASSERT(page > 0);
    uint64_t map = file_bytes + (writable ? LEDGER_MAP_BYTES_DEFAULT_VALUE : 0);
    map = (map + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
    s->options.map_bytes = map > 0 ? map : (uint64_t)page;
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, 5);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, (size_t)s->options.map_bytes);
    unsigned flags = MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOTLS | (writable ? MDB_NOSYNC : MDB_RDONLY);
    if (rc == 0)
        rc = mdb_env_open(s->env, path, flags, 0600);
    if (rc != 0) {
        rc = ledger__lmdb_error(s, rc, "opening the file with LMDB", diag);
        goto fail;
    }
    MDB_txn *txn;
    rc = mdb_txn_begin(s->env, NULL, writable ? 0 : MDB_RDONLY, &txn);
    if (rc != 0) {
        rc = ledger__lmdb_error(s, rc, "reading the file", diag);
        goto fail;
    }
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{LEDGER__DB_BLOCKS, &s->db_blocks},
               {LEDGER__DB_WRITES, &s->db_writes},
               {LEDGER__DB_META, &s->db_meta}};
    for (size_t i = 0; rc == 0 && i < EHR_ARRAY_COUNT(dbs); i++) {
        rc = mdb_dbi_open(txn, dbs[i].name, 0, dbs[i].dbi);
        if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
            rc = ehr_diag_fail(diag, EHR_EINVAL, "%s is not a ledger (no %s database)", path,
                               dbs[i].name);
        else if (rc != 0)
            rc = ledger__lmdb_error(s, rc, "opening the databases", diag);
    }
    if (rc == 0) {
        /* Writable, the Raft log is created if the ledger predates it. */
        int lrc =
            mdb_dbi_open(txn, LEDGER__DB_RAFT_LOG, writable ? MDB_CREATE : 0, &s->db_raft_log);
        s->raft_log_present = lrc == 0;
        if (lrc != 0 && !(lrc == MDB_NOTFOUND && !writable))
            rc = ledger__lmdb_error(s, lrc, "opening the raft log database", diag);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        goto fail;
    }
    /* Commit (not abort) so the database handles stay open. */
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        rc = ledger__lmdb_error(s, rc, "opening the databases", diag);
        goto fail;
    }
    *out = s;
    return 0;
fail:
    ledger_close(s);
    return rc;
}

/* Read and check one stored block of S inside TXN: stored checksum, parse,
 * height. VIEW is released by the caller on success. */
static int block_read_checked(ledger *s, MDB_txn *txn, uint64_t height, ledger_block_view *view,
                              ehr_diag *diag)
{
    uint8_t key[8];
    ledger__height_key(key, height);
    MDB_val k = {.mv_size = sizeof key, .mv_data = key}, v;
    int rc = mdb_get(txn, s->db_blocks, &k, &v);
    if (rc == MDB_NOTFOUND)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "block %llu is missing",
                             (unsigned long long)height);
    if (rc != 0)
        return ledger__lmdb_error(s, rc, "reading a block", diag);
    const uint8_t *block;
    size_t block_len;
    if (ledger__stored_block_open(v.mv_data, v.mv_size, height, &block, &block_len) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT,
                             "block %llu is corrupt: its stored checksum does not match",
                             (unsigned long long)height);
    ehr_diag why;
    if (ledger_block_parse(block, block_len, view, &why) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "block %llu does not parse: %s",
                             (unsigned long long)height, why.msg);
    if (view->header.height != height) {
        ledger_block_view_release(view);
        return ehr_diag_fail(diag, EHR_ECORRUPT, "the block stored at %llu says height %llu",
                             (unsigned long long)height, (unsigned long long)view->header.height);
    }
    return 0;
}

/* The content checks of ledger_snapshot_inspect on an open handle, in one
 * read transaction. INFO gets the chain and tip. */
static int content_check(ledger *s, ledger_snapshot_info *info, ehr_diag *diag)
{
    MDB_txn *txn;
    int rc = ledger__read_begin(s, &txn, diag);
    if (rc != 0)
        return rc;
    rc = ledger__chain_read(s, txn, &info->chain, diag);
    if (rc == EHR_ENOTFOUND)
        rc = ehr_diag_fail(diag, rc, "the ledger holds no chain (no genesis)");
    if (rc == 0)
        rc = ledger__tip_read(s, txn, &info->tip, diag);
    const ledger_tip *tip = &info->tip;
    if (rc == 0 && tip->applied_index == 0)
        rc = ehr_diag_fail(diag, EHR_EINVAL,
                           "the ledger has applied no Raft entry (applied index 0)");
    MDB_stat st;
    if (rc == 0 && (rc = mdb_stat(txn, s->db_blocks, &st)) != 0)
        rc = ledger__lmdb_error(s, rc, "counting blocks", diag);
    if (rc == 0 && st.ms_entries != tip->height + 1)
        rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the ledger holds %llu blocks; its tip is at %llu",
                           (unsigned long long)st.ms_entries, (unsigned long long)tip->height);
    if (rc == 0) {
        /* The last key must be the tip's height (the count alone could hide a gap). */
        MDB_cursor *c;
        MDB_val k, v;
        rc = mdb_cursor_open(txn, s->db_blocks, &c);
        if (rc == 0) {
            rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
            mdb_cursor_close(c);
        }
        uint8_t want[8];
        ledger__height_key(want, tip->height);
        if (rc != 0)
            rc = ledger__lmdb_error(s, rc, "reading the last block", diag);
        else if (k.mv_size != sizeof want || memcmp(k.mv_data, want, sizeof want) != 0)
            rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the last block stored is not the tip's (%llu)",
                               (unsigned long long)tip->height);
    }
    ledger_block_view view;
    if (rc == 0 && (rc = block_read_checked(s, txn, tip->height, &view, diag)) == 0) {
        if (memcmp(view.hash, tip->hash, EHR_HASH_BYTES) != 0)
            rc = ehr_diag_fail(diag, EHR_ECORRUPT,
                               "the tip record's hash is not the hash of block %llu",
                               (unsigned long long)tip->height);
        else if (view.header.time_ms != tip->time_ms)
            rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the tip record's time is not block %llu's",
                               (unsigned long long)tip->height);
        ledger_block_view_release(&view);
    }
    if (rc == 0 && (rc = block_read_checked(s, txn, 0, &view, diag)) == 0) {
        if (memcmp(view.hash, info->chain.genesis_block_hash, EHR_HASH_BYTES) != 0 ||
            memcmp(view.header.genesis_hash, info->chain.genesis_hash, EHR_HASH_BYTES) != 0)
            rc = ehr_diag_fail(diag, EHR_ECORRUPT, "block 0 does not match the chain info");
        ledger_block_view_release(&view);
    }
    /* The tx index and world state live in the derived environment, which a
     * snapshot does not carry (the receiver rebuilds it from the blocks and
     * the write log): the write log must cover every block. */
    if (rc == 0 && (rc = mdb_stat(txn, s->db_writes, &st)) != 0)
        rc = ledger__lmdb_error(s, rc, "counting the write log", diag);
    if (rc == 0 && st.ms_entries != tip->height + 1)
        rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the write log has %llu records for %llu blocks",
                           (unsigned long long)st.ms_entries, (unsigned long long)tip->height + 1);
    mdb_txn_abort(txn);
    return rc;
}

/* Prefix DIAG's sentence with "PATH: " (keeping the error). */
static int diag_prefix(ehr_diag *diag, int rc, const char *path)
{
    if (diag == NULL)
        return rc;
    ehr_diag why = *diag;
    if (strncmp(why.msg, path, strlen(path)) == 0)
        return rc; /* already names the file */
    return ehr_diag_fail(diag, rc, "%s: %s", path, why.msg);
}

/* ledger_snapshot_inspect after the path check (create inspects its
 * temporary file, whose name may be a few bytes over the limit). */
static int inspect_file(const char *path, ledger_snapshot_info *info, ehr_diag *diag)
{
    EHR_ASSERT(path != NULL && info != NULL && diag != NULL);
    memset(info, 0, sizeof *info);
    uint64_t file_bytes = 0;
    int rc = file_check(path, &file_bytes, diag);
    if (rc != 0)
        return rc;
    ledger *s;
    rc = snap_open(path, false, file_bytes, &s, diag);
    if (rc == 0) {
        rc = content_check(s, info, diag);
        ledger_close(s);
    }
    if (rc != 0) {
        memset(info, 0, sizeof *info);
        return diag_prefix(diag, rc, path);
    }
    info->file_bytes = file_bytes;
    EHR_ASSERT(info->tip.applied_index >= 1);
    return 0;
}

int ledger_snapshot_inspect(const char *path, ledger_snapshot_info *info, ehr_diag *diag)
{
    EHR_ASSERT(info != NULL);
    memset(info, 0, sizeof *info);
    ehr_diag local;
    if (diag == NULL)
        diag = &local;
    int rc = path_check(path, "snapshot", diag);
    if (rc != 0)
        return rc;
    return inspect_file(path, info, diag);
}

/* ---- The Raft records of a file ---- */

/* Copy the meta record NAME of S into BUF (*LEN 0 when there is none). */
static int raft_record_copy(ledger *s,
                            int (*get)(ledger *, uint8_t *, size_t, size_t *, ehr_diag *),
                            uint8_t buf[LEDGER_RAFT_META_BYTES_MAX], size_t *len, ehr_diag *diag)
{
    int rc = get(s, buf, LEDGER_RAFT_META_BYTES_MAX, len, diag);
    if (rc == EHR_ENOTFOUND) {
        *len = 0;
        return 0;
    }
    if (rc == EHR_ETOOBIG)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "a raft record of %zu bytes, over the limit %d",
                             *len, LEDGER_RAFT_META_BYTES_MAX);
    return rc;
}

int ledger_snapshot_raft_read(const char *path, uint64_t lo, uint64_t hi, ledger_raft_entry_fn fn,
                              void *ctx, ledger_snapshot_raft *out, ehr_diag *diag)
{
    EHR_ASSERT(out != NULL);
    memset(out, 0, sizeof *out);
    ehr_diag local;
    if (diag == NULL)
        diag = &local;
    int rc = path_check(path, "ledger file", diag);
    if (rc != 0)
        return rc;
    uint64_t file_bytes = 0;
    rc = file_check(path, &file_bytes, diag);
    if (rc != 0)
        return diag_prefix(diag, rc, path);
    ledger *s;
    rc = snap_open(path, false, file_bytes, &s, diag);
    if (rc != 0)
        return diag_prefix(diag, rc, path);
    if (!s->raft_log_present) {
        out->first = 1; /* a ledger made before the Raft log: none */
        ledger_close(s);
        return 0;
    }
    rc = ledger_raft_bounds(s, &out->first, &out->last, diag);
    if (rc == 0)
        rc = raft_record_copy(s, ledger_raft_hard_state_get, out->hard_state, &out->hard_state_len,
                              diag);
    if (rc == 0)
        rc = raft_record_copy(s, ledger_raft_snapshot_meta_get, out->snapshot_meta,
                              &out->snapshot_meta_len, diag);
    if (rc == 0)
        rc = raft_record_copy(s, ledger_raft_boundary_get, out->boundary, &out->boundary_len, diag);
    uint64_t from = lo > out->first ? lo : out->first;
    uint64_t to = hi < out->last + 1 ? hi : out->last + 1;
    if (rc == 0 && fn != NULL && from < to) {
        /* No byte bound: one read snapshot, until FN stops or HI. */
        long n = ledger_raft_entries_read(s, from, to, UINT64_MAX, fn, ctx, diag);
        if (n < 0)
            rc = (int)n;
    }
    ledger_close(s);
    if (rc != 0) {
        memset(out, 0, sizeof *out);
        return diag_prefix(diag, rc, path);
    }
    return 0;
}

/* ---- Create ---- */

int ledger_snapshot_create(ledger *l, const char *path, ledger_snapshot_info *info, ehr_diag *diag)
{
    EHR_ASSERT(l != NULL && info != NULL);
    memset(info, 0, sizeof *info);
    int rc = path_check(path, "snapshot", diag);
    if (rc != 0)
        return rc;
    char tmp[PATH_BUF_BYTES], dir[PATH_BUF_BYTES];
    path_join(tmp, path, ".tmp-XXXXXX");
    path_dir(dir, path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return ehr_diag_fail(diag, -errno, "creating a file next to %s: %s", path, strerror(errno));
    rc = mdb_env_copyfd2(l->env, fd, MDB_CP_COMPACT);
    if (rc != 0)
        rc = ledger__lmdb_error(l, rc, "copying the ledger", diag);
    if (rc == 0 && fsync(fd) != 0)
        rc = ehr_diag_fail(diag, -errno, "syncing %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = ehr_diag_fail(diag, -errno, "closing %s: %s", tmp, strerror(errno));
    /* Check the copy before it takes PATH's name: never publish a bad one. */
    ehr_diag why;
    if (rc == 0 && (rc = inspect_file(tmp, info, &why)) != 0)
        rc = ehr_diag_fail(diag, rc, "the copy fails its checks: %s", why.msg);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = ehr_diag_fail(diag, -errno, "renaming the copy to %s: %s", path, strerror(errno));
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

/* ---- Install ---- */

/* The checks of EXPECT and RAFT_RESET that need no file. */
static int install_args_check(const ledger_snapshot_expect *expect, const ledger_raft_batch *reset,
                              ehr_diag *diag)
{
    if (expect == NULL || expect->chain_id == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "no expected chain given");
    ehr_diag why;
    if (ledger_chain_id_check(expect->chain_id, &why) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "the expected chain id: %s", why.msg);
    if (expect->applied_index == 0 || expect->applied_index == UINT64_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "the expected applied index must be 1..%llu",
                             (unsigned long long)UINT64_MAX - 1);
    if (reset == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "no raft reset given");
    if (reset->truncate_from != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "the raft reset must not truncate (the log is new)");
    if (reset->compact_index != expect->applied_index + 1)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "the raft reset must compact to %llu (the snapshot's index + 1), "
                             "not %llu",
                             (unsigned long long)expect->applied_index + 1,
                             (unsigned long long)reset->compact_index);
    if (reset->boundary.data == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "the raft reset has no boundary record");
    if (reset->snapshot_meta.data == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "the raft reset has no snapshot meta");
    return 0;
}

/* CHAIN must be EXPECT's (WHO names the ledger in the message). Returns 0
 * or EHR_ECHAIN. */
static int chain_match(const ledger_chain *chain, const ledger_snapshot_expect *expect,
                       const char *who, ehr_diag *diag)
{
    if (strcmp(chain->chain_id, expect->chain_id) != 0)
        return ehr_diag_fail(diag, EHR_ECHAIN, "%s is of chain \"%s\", not \"%s\"", who,
                             chain->chain_id, expect->chain_id);
    if (memcmp(chain->genesis_hash, expect->genesis_hash, EHR_HASH_BYTES) != 0) {
        char got[2 * EHR_HASH_BYTES + 1], want[2 * EHR_HASH_BYTES + 1];
        ehr_hex_encode(got, chain->genesis_hash, EHR_HASH_BYTES);
        ehr_hex_encode(want, expect->genesis_hash, EHR_HASH_BYTES);
        return ehr_diag_fail(diag, EHR_ECHAIN,
                             "%s is of chain \"%s\" with genesis %.16s..., not %.16s...", who,
                             chain->chain_id, got, want);
    }
    return 0;
}

/* The receiver's current ledger, read under the install lock. */
typedef struct current_state {
    bool present; /* DIR/data.mdb exists */
    bool has_hard_state;
    uint8_t hard_state[LEDGER_RAFT_META_BYTES_MAX];
    size_t hard_state_len;
} current_state;

/*
 * Read DATA_PATH (the receiver's data file, locked by the caller): it must
 * be a ledger of EXPECT's chain (or hold no chain yet) that has not applied
 * beyond EXPECT->applied_index. CUR gets its hard state record.
 */
static int current_read(const char *data_path, const ledger_snapshot_expect *expect,
                        current_state *cur, ehr_diag *diag)
{
    memset(cur, 0, sizeof *cur);
    struct stat st;
    if (stat(data_path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return ehr_diag_fail(diag, -errno, "%s: %s", data_path, strerror(errno));
    }
    cur->present = true;
    uint64_t file_bytes;
    ehr_diag why;
    int rc = file_check(data_path, &file_bytes, &why);
    ledger *s = NULL;
    if (rc == 0)
        rc = snap_open(data_path, false, file_bytes, &s, &why);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "the current ledger: %s", why.msg);
    ledger_chain chain;
    ledger_tip tip;
    MDB_txn *txn;
    rc = ledger__read_begin(s, &txn, &why);
    if (rc == 0) {
        rc = ledger__chain_read(s, txn, &chain, &why);
        if (rc == 0)
            rc = ledger__tip_read(s, txn, &tip, &why);
        mdb_txn_abort(txn);
    }
    if (rc == EHR_ENOTFOUND) {
        rc = 0; /* an empty ledger: nothing to compare */
    } else if (rc != 0) {
        rc = ehr_diag_fail(diag, rc, "the current ledger: %s", why.msg);
    } else if ((rc = chain_match(&chain, expect, "the current ledger", diag)) != 0) {
        /* another chain */
    } else if (tip.applied_index > expect->applied_index && !expect->replace_newer) {
        rc = ehr_diag_fail(diag, EHR_EINVAL,
                           "the current ledger has applied up to %llu, beyond the snapshot's "
                           "%llu",
                           (unsigned long long)tip.applied_index,
                           (unsigned long long)expect->applied_index);
    }
    if (rc == 0) {
        int hrc = ledger_raft_hard_state_get(s, cur->hard_state, sizeof cur->hard_state,
                                             &cur->hard_state_len, &why);
        if (hrc == 0)
            cur->has_hard_state = true;
        else if (hrc != EHR_ENOTFOUND)
            rc = ehr_diag_fail(diag, hrc, "the current ledger's hard state: %s", why.msg);
    }
    ledger_close(s);
    return rc;
}

/* Remove every Raft record of S (the sender's), in one write transaction. */
static int raft_clear(ledger *s, ehr_diag *diag)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        return ledger__lmdb_error(s, rc, "starting a write", diag);
    EHR_ASSERT(s->raft_log_present);
    rc = mdb_drop(txn, s->db_raft_log, 0);
    const char *names[] = {LEDGER__META_RAFT_HARD_STATE, LEDGER__META_RAFT_SNAPSHOT,
                           LEDGER__META_RAFT_FIRST};
    for (size_t i = 0; rc == 0 && i < EHR_ARRAY_COUNT(names); i++) {
        MDB_val k = {.mv_size = strlen(names[i]), .mv_data = (void *)names[i]};
        rc = mdb_del(txn, s->db_meta, &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return ledger__lmdb_error(s, rc, "removing the sender's raft records", diag);
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0)
        return ledger__lmdb_error(s, rc, "removing the sender's raft records", diag);
    return 0;
}

/*
 * Rewrite the Raft records of the snapshot file PATH: clear the sender's,
 * write RESET (with CUR's hard state if RESET has none), sync the file.
 */
static int snapshot_rewrite(const char *path, uint64_t file_bytes, const ledger_raft_batch *reset,
                            const current_state *cur, ehr_diag *diag)
{
    ledger *s;
    int rc = snap_open(path, true, file_bytes, &s, diag);
    if (rc != 0)
        return rc;
    rc = raft_clear(s, diag);
    if (rc == 0) {
        step_done(LEDGER__INSTALL_RAFT_CLEARED);
        ledger_raft_batch batch = *reset;
        if (batch.hard_state.data == NULL && cur->has_hard_state)
            batch.hard_state = (ledger_bytes){cur->hard_state, cur->hard_state_len};
        ehr_diag why;
        rc = ledger_raft_write(s, &batch, &why);
        if (rc != 0)
            rc = ehr_diag_fail(diag, rc, "the raft reset: %s", why.msg);
    }
    if (rc == 0) {
        step_done(LEDGER__INSTALL_RAFT_RESET);
        rc = mdb_env_sync(s->env, 1);
        if (rc != 0)
            rc = ledger__lmdb_error(s, rc, "syncing the snapshot", diag);
    }
    ledger_close(s);
    if (rc == 0 && (rc = file_sync(path)) != 0)
        rc = ehr_diag_fail(diag, rc, "syncing %s: %s", path, strerror(-rc));
    return rc;
}

/* Take LMDB's exclusive byte of DIR's lock.mdb with an open file
 * description lock (which conflicts with the record locks LMDB holds, even
 * those of this process). *FD keeps the lock until closed. */
static int install_lock(const char *lock_path, const char *dir, int *fd, ehr_diag *diag)
{
    *fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (*fd < 0)
        return ehr_diag_fail(diag, -errno, "%s: %s", lock_path, strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(*fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    int err = errno;
    close(*fd);
    *fd = -1;
    if (err == EAGAIN || err == EACCES)
        return ehr_diag_fail(diag, EHR_EAGAIN,
                             "the ledger in %s is open (in this or another process); close it "
                             "before installing a snapshot",
                             dir);
    return ehr_diag_fail(diag, -err, "locking %s: %s", lock_path, strerror(err));
}

int ledger_snapshot_install(const char *ledger_dir, const char *snapshot_path,
                            const ledger_raft_batch *raft_reset,
                            const ledger_snapshot_expect *expect, ledger_snapshot_info *info,
                            ehr_diag *diag)
{
    ehr_diag local;
    if (diag == NULL)
        diag = &local;
    ledger_snapshot_info got;
    if (info == NULL)
        info = &got;
    memset(info, 0, sizeof *info);
    int rc = path_check(ledger_dir, "ledger directory", diag);
    if (rc == 0)
        rc = path_check(snapshot_path, "snapshot", diag);
    if (rc == 0)
        rc = install_args_check(expect, raft_reset, diag);
    if (rc != 0)
        return rc;
    struct stat st;
    if (stat(ledger_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "%s is not a directory", ledger_dir);

    ledger_snapshot_info snap;
    rc = ledger_snapshot_inspect(snapshot_path, &snap, diag);
    if (rc != 0)
        return rc;
    rc = chain_match(&snap.chain, expect, "the snapshot", diag);
    if (rc != 0)
        return rc;
    if (snap.tip.applied_index != expect->applied_index)
        return ehr_diag_fail(
            diag, EHR_EINVAL, "the snapshot is at applied index %llu; %llu was expected",
            (unsigned long long)snap.tip.applied_index, (unsigned long long)expect->applied_index);

    char data_path[PATH_BUF_BYTES], lock_path[PATH_BUF_BYTES];
    path_join(data_path, ledger_dir, "/data.mdb");
    path_join(lock_path, ledger_dir, "/lock.mdb");
    int lock_fd;
    rc = install_lock(lock_path, ledger_dir, &lock_fd, diag);
    if (rc != 0)
        return rc;
    step_done(LEDGER__INSTALL_LOCKED);
    /* From here until the rename, only the snapshot file changes. */
    current_state *cur = ehr_malloc(sizeof *cur);
    rc = current_read(data_path, expect, cur, diag);
    if (rc == 0)
        rc = snapshot_rewrite(snapshot_path, snap.file_bytes, raft_reset, cur, diag);
    ehr_free(cur);
    if (rc == 0) {
        step_done(LEDGER__INSTALL_SYNCED);
        /* Check again what is about to become the ledger. */
        rc = ledger_snapshot_inspect(snapshot_path, info, diag);
        if (rc == 0 && (info->tip.applied_index != snap.tip.applied_index ||
                        memcmp(info->tip.hash, snap.tip.hash, EHR_HASH_BYTES) != 0))
            rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the snapshot's tip changed while installing");
    }
    bool renamed = false;
    if (rc == 0 && rename(snapshot_path, data_path) != 0) {
        int err = errno;
        rc = ehr_diag_fail(diag, -err, "renaming %s to %s: %s%s", snapshot_path, data_path,
                           strerror(err),
                           err == EXDEV ? " (stage the snapshot in the ledger's file system)" : "");
    }
    if (rc == 0) {
        renamed = true;
        step_done(LEDGER__INSTALL_RENAMED);
        rc = ehr_dir_sync(ledger_dir);
        if (rc != 0)
            rc = ehr_diag_fail(diag, rc, "syncing %s: %s", ledger_dir, strerror(-rc));
    }
    if (rc == 0) {
        step_done(LEDGER__INSTALL_DIR_SYNCED);
        /* The reader table and transaction counter describe the old file. */
        if (ftruncate(lock_fd, 0) != 0)
            rc = ehr_diag_fail(diag, -errno, "emptying %s: %s", lock_path, strerror(errno));
        else
            step_done(LEDGER__INSTALL_LOCK_EMPTIED);
    }
    close(lock_fd); /* releases the lock */
    if (rc != 0 && !renamed)
        memset(info, 0, sizeof *info);
    return rc;
}
