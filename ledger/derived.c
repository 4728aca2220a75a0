/*
 * derived.c - the derived tables (tx index and world state) in their own
 * LMDB environment, DIR/derived.mdb, brought up to date by checkpoints; the
 * overlay that answers for the blocks above the checkpoint meanwhile; the
 * read views that merge the two.
 *
 * Not here: the block append itself (store.c: the block, its write-log
 * record and the tip commit in the main environment, the only durable
 * step of an append) and the overlay's data structures (overlay.c).
 *
 * Design notes. Invariants:
 *  1. The derived tables hold exactly the rows of blocks
 *     0..checkpoint_next - 1, as their Checkpoint record says, written in
 *     the same transaction as the rows.
 *  2. The overlay holds the rows of blocks checkpoint_next..published_next
 *     - 1, each added after its block committed in the main environment
 *     and dropped only after a derived commit covering it. So a block's
 *     rows are always in the overlay or in a derived snapshot taken after
 *     they left it: a reader that holds the overlay lock shared while it
 *     begins its derived transaction sees every row of every published
 *     block (where both have a row, the overlay's is as new or newer).
 *  3. tip + 1 - checkpoint_next <= LEDGER_OVERLAY_BLOCKS_MAX, in memory and
 *     on disk (an append reserves its place before its commit; the
 *     checkpoint record is committed before the overlay shrinks), so what
 *     ledger_open replays is bounded the same way.
 * Threads: the owner's appends (one at a time), the checkpointer (writable
 * ledgers), any readers. The checkpointer is the only writer of the derived
 * environment and the only one that drops overlay blocks (read-only: the
 * refreshing reader, under refresh_mu). Lock order: refresh_mu, then
 * overlay_lock; checkpoint_mu is never held while taking overlay_lock (and
 * a thread that holds overlay_lock shared, e.g. in a scan callback, may
 * take checkpoint_mu).
 * States of the checkpointer: idle (waits on checkpoint_wake) -> running
 * (checkpoint_run, no lock held) -> idle; -> failed (checkpoint_error set:
 * appends fail once they would wait; cleared only by reopening); stop
 * (ledger__derived_close: one last checkpoint unless failed or paused).
 *
 * LMDB caveats: one write transaction at a time per environment, which is
 * why the derived tables have their own: a long checkpoint commit never
 * holds up a block append in the main environment. Read transactions are
 * short (one call). The map size is the ledger's option, per environment.
 */
#include "ledger_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>

#include "ehr/v1/ledger.pb-c.h"

/* A scan callback may read again: nested views skip the refresh. */
static _Thread_local unsigned view_depth;

static MDB_val val_of(const void *data, size_t len)
{
    return (MDB_val){.mv_size = len, .mv_data = (void *)data};
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- The checkpoint record ---- */

typedef struct checkpoint_rec {
    bool present;
    uint64_t next;
    uint64_t tx_count;
    uint8_t genesis_block_hash[EHR_HASH_BYTES];
} checkpoint_rec;

static int checkpoint_read(ledger *l, MDB_txn *txn, checkpoint_rec *out, ehr_diag *diag)
{
    memset(out, 0, sizeof *out);
    MDB_val k = val_of(LEDGER__META_CHECKPOINT, sizeof LEDGER__META_CHECKPOINT - 1), v;
    int rc = mdb_get(txn, l->db_derived_meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "reading the checkpoint record", diag);
    Ehr__V1__Checkpoint *c = ehr__v1__checkpoint__unpack(NULL, v.mv_size, v.mv_data);
    if (c == NULL || c->genesis_block_hash.len != EHR_HASH_BYTES) {
        if (c != NULL)
            ehr__v1__checkpoint__free_unpacked(c, NULL);
        return ehr_diag_fail(diag, EHR_ECORRUPT, "the checkpoint record does not decode");
    }
    out->present = true;
    out->next = c->height_next;
    out->tx_count = c->tx_count;
    memcpy(out->genesis_block_hash, c->genesis_block_hash.data, EHR_HASH_BYTES);
    ehr__v1__checkpoint__free_unpacked(c, NULL);
    return 0;
}

int ledger__checkpoint_get(ledger *l, MDB_txn *txn, uint64_t *next, uint64_t *tx_count,
                           ehr_diag *diag)
{
    checkpoint_rec cp;
    int rc = checkpoint_read(l, txn, &cp, diag);
    *next = cp.next;
    *tx_count = cp.tx_count;
    return rc;
}

static int checkpoint_write(ledger *l, MDB_txn *txn, uint64_t next, uint64_t tx_count)
{
    Ehr__V1__Checkpoint c = EHR__V1__CHECKPOINT__INIT;
    c.height_next = next;
    c.tx_count = tx_count;
    c.genesis_block_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, l->genesis_block_hash};
    uint8_t buf[128];
    size_t n = ehr__v1__checkpoint__get_packed_size(&c);
    EHR_ASSERT(n <= sizeof buf);
    ehr__v1__checkpoint__pack(&c, buf);
    MDB_val k = val_of(LEDGER__META_CHECKPOINT, sizeof LEDGER__META_CHECKPOINT - 1),
            v = val_of(buf, n);
    return mdb_put(txn, l->db_derived_meta, &k, &v, 0);
}

/* ---- Applying rows in sorted batches ---- */

typedef struct state_ref {
    const ledger_state_write *write;
    size_t seq; /* position over the whole batch: later wins */
} state_ref;

static int tx_ref_cmp(const void *a, const void *b)
{
    const ledger__ov_tx *x = *(const ledger__ov_tx *const *)a;
    const ledger__ov_tx *y = *(const ledger__ov_tx *const *)b;
    return memcmp(x->hash, y->hash, EHR_HASH_BYTES);
}

static int state_ref_cmp(const void *a, const void *b)
{
    const state_ref *x = a, *y = b;
    int c = ledger__key_cmp(x->write->key, x->write->key_len, y->write->key, y->write->key_len);
    if (c != 0)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

int ledger__rows_apply(MDB_txn *txn, MDB_dbi txs, MDB_dbi state, ledger__ov_block *const *blocks,
                       size_t count)
{
    EHR_ASSERT(count == 0 || blocks != NULL);
    size_t tx_total = 0, write_total = 0;
    for (size_t i = 0; i < count; i++) {
        EHR_ASSERT(i == 0 || blocks[i]->height == blocks[i - 1]->height + 1);
        tx_total += blocks[i]->tx_count;
        write_total += blocks[i]->write_count;
    }
    /* Sorted inserts: each leaf page is dirtied once per batch, not once
     * per row, and LMDB's cursor walks forward instead of searching. */
    const ledger__ov_tx **rows = ehr_malloc((tx_total + 1) * sizeof *rows);
    state_ref *refs = ehr_malloc((write_total + 1) * sizeof *refs);
    size_t r = 0, w = 0;
    for (size_t i = 0; i < count; i++) {
        for (uint32_t j = 0; j < blocks[i]->tx_count; j++)
            rows[r++] = &blocks[i]->txs[j];
        for (size_t j = 0; j < blocks[i]->write_count; j++, w++)
            refs[w] = (state_ref){.write = &blocks[i]->writes[j], .seq = w};
    }
    qsort(rows, tx_total, sizeof *rows, tx_ref_cmp);
    qsort(refs, write_total, sizeof *refs, state_ref_cmp);
    MDB_cursor *cur = NULL;
    int rc = tx_total > 0 ? mdb_cursor_open(txn, txs, &cur) : 0;
    for (size_t i = 0; rc == 0 && i < tx_total; i++) {
        uint8_t row[LEDGER__TX_LOCATION_BYTES_MAX];
        MDB_val k = val_of(rows[i]->hash, EHR_HASH_BYTES),
                v = val_of(row, ledger__tx_location_write(row, &rows[i]->loc, rows[i]->result));
        rc = mdb_cursor_put(cur, &k, &v, 0);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    cur = NULL;
    if (rc == 0 && write_total > 0)
        rc = mdb_cursor_open(txn, state, &cur);
    for (size_t i = 0; rc == 0 && i < write_total; i++) {
        const ledger_state_write *x = refs[i].write;
        /* Of the writes to one key only the last counts. */
        if (i + 1 < write_total && ledger__key_cmp(x->key, x->key_len, refs[i + 1].write->key,
                                                   refs[i + 1].write->key_len) == 0)
            continue;
        MDB_val k = val_of(x->key, x->key_len), v;
        if (x->remove) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET);
            if (rc == 0)
                rc = mdb_cursor_del(cur, 0);
            else if (rc == MDB_NOTFOUND)
                rc = 0; /* removing an absent key is not an error */
        } else {
            v = val_of(x->value, x->value_len);
            rc = mdb_cursor_put(cur, &k, &v, 0);
        }
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    ehr_free(rows);
    ehr_free(refs);
    return rc;
}

/* ---- The checkpoint ---- */

/* Record RC (an LMDB code) as the sticky checkpoint error, with its message
 * (also in DIAG, may be NULL), and wake every waiter. Called without
 * checkpoint_mu. Returns our error code. */
static int checkpoint_fail(ledger *l, int rc, const char *what, ehr_diag *diag)
{
    ehr_diag why;
    int err = ledger__lmdb_error(l, rc, what, &why);
    pthread_mutex_lock(&l->checkpoint_mu);
    l->checkpoint_error = err;
    snprintf(l->checkpoint_error_msg, sizeof l->checkpoint_error_msg, "%s", why.msg);
    pthread_cond_broadcast(&l->checkpoint_done);
    pthread_mutex_unlock(&l->checkpoint_mu);
    ehr_log(EHR_LOG_ERROR, "ledger checkpoint failed", "dir=%s error=%s", l->dir, why.msg);
    return ehr_diag_fail(diag, err, "%s", why.msg);
}

/*
 * Write the rows of the overlay blocks up to THROUGH (published) to the
 * derived tables in one transaction with the new checkpoint record, then
 * drop those blocks from the overlay. Only the checkpointer (or ledger_open
 * before it starts) runs this. Returns 0 or the recorded error.
 */
static int checkpoint_run(ledger *l, uint64_t through, ehr_diag *diag)
{
    pthread_mutex_lock(&l->checkpoint_mu);
    uint64_t from = l->checkpoint_next, tx_count = l->checkpoint_tx_count;
    pthread_mutex_unlock(&l->checkpoint_mu);
    EHR_ASSERT(through >= from);
    size_t count = (size_t)(through - from + 1);
    ledger__ov_block **blocks = ehr_malloc(count * sizeof *blocks);
    size_t n = 0, bytes = 0;
    pthread_rwlock_rdlock(&l->overlay_lock);
    for (ledger__ov_block *b = l->overlay.first; b != NULL && b->height <= through; b = b->next) {
        blocks[n++] = b;
        tx_count += b->tx_count;
        bytes += b->bytes;
    }
    pthread_rwlock_unlock(&l->overlay_lock);
    /* Blocks are immutable and only this thread frees them: safe to read. */
    EHR_ASSERT(n == count && blocks[0]->height == from);
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->derived_env, NULL, 0, &txn);
    if (rc == 0) {
        rc = ledger__rows_apply(txn, l->db_txs, l->db_state, blocks, n);
        if (rc == 0)
            rc = checkpoint_write(l, txn, through + 1, tx_count);
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    ehr_free(blocks);
    if (rc != 0)
        return checkpoint_fail(l, rc, "checkpointing the derived tables", diag);
    /* Invariant 2: the rows are committed; now they may leave the overlay.
     * One block per exclusive hold, so appends and readers never wait for
     * the whole batch (dropping 100 blocks of 1,000 rows takes ~100 ms). */
    size_t dropped = 0;
    for (uint64_t h = from; h <= through; h++) {
        /* The lock does not queue writers fairly: let a waiting publish
         * (an append, ~1 ms under the lock) go first. */
        while (atomic_load(&l->publishers_waiting) > 0)
            sched_yield();
        pthread_rwlock_wrlock(&l->overlay_lock);
        dropped += ledger__overlay_drop_through(&l->overlay, h);
        pthread_rwlock_unlock(&l->overlay_lock);
    }
    EHR_ASSERT(dropped == n);
    pthread_mutex_lock(&l->checkpoint_mu);
    l->checkpoint_next = through + 1;
    l->checkpoint_tx_count = tx_count;
    EHR_ASSERT(l->reserved_blocks >= n && l->reserved_bytes >= bytes);
    l->reserved_blocks -= n;
    l->reserved_bytes -= bytes;
    l->checkpoints_done++;
    l->oldest_ns = now_ns();
    pthread_cond_broadcast(&l->checkpoint_done);
    pthread_mutex_unlock(&l->checkpoint_mu);
    return 0;
}

/* Whether a checkpoint should start now (checkpoint_mu held). */
static bool checkpoint_due(const ledger *l, uint64_t now)
{
    uint64_t pending = l->published_next - l->checkpoint_next;
    if (pending == 0 || l->checkpoint_error != 0)
        return false;
    if (l->checkpoint_want > l->checkpoint_next || l->checkpoint_stop)
        return !l->checkpoint_paused || l->checkpoint_want > l->checkpoint_next;
    if (l->checkpoint_paused)
        return false;
    return l->appends_waiting > 0 || pending >= LEDGER_CHECKPOINT_BLOCKS_MIN ||
           now - l->oldest_ns >= (uint64_t)LEDGER_CHECKPOINT_DELAY_MS * 1000000ull;
}

static void *checkpoint_main(void *arg)
{
    ledger *l = arg;
    pthread_mutex_lock(&l->checkpoint_mu);
    for (;;) {
        uint64_t now = now_ns();
        if (checkpoint_due(l, now)) {
            uint64_t through = l->published_next - 1;
            pthread_mutex_unlock(&l->checkpoint_mu);
            (void)checkpoint_run(l, through, NULL); /* a failure is recorded */
            pthread_mutex_lock(&l->checkpoint_mu);
            continue;
        }
        if (l->checkpoint_stop)
            break;
        if (l->published_next > l->checkpoint_next && !l->checkpoint_paused &&
            l->checkpoint_error == 0) {
            uint64_t at = l->oldest_ns + (uint64_t)LEDGER_CHECKPOINT_DELAY_MS * 1000000ull;
            struct timespec ts = {.tv_sec = (time_t)(at / 1000000000ull),
                                  .tv_nsec = (long)(at % 1000000000ull)};
            pthread_cond_timedwait(&l->checkpoint_wake, &l->checkpoint_mu, &ts);
        } else {
            pthread_cond_wait(&l->checkpoint_wake, &l->checkpoint_mu);
        }
    }
    pthread_mutex_unlock(&l->checkpoint_mu);
    return NULL;
}

int ledger__derived_reserve(ledger *l, size_t bytes, ehr_diag *diag)
{
    EHR_ASSERT(!l->options.read_only);
    EHR_ASSERT(bytes <= LEDGER_OVERLAY_BYTES_MAX);
    int rc = 0;
    pthread_mutex_lock(&l->checkpoint_mu);
    while (l->reserved_blocks > 0 && (l->reserved_blocks + 1 > l->overlay_blocks_max ||
                                      l->reserved_bytes + bytes > l->overlay_bytes_max)) {
        if (l->checkpoint_error != 0) {
            rc = ehr_diag_fail(diag, l->checkpoint_error,
                               "the derived tables are %llu blocks behind and cannot catch up: %s",
                               (unsigned long long)l->reserved_blocks, l->checkpoint_error_msg);
            break;
        }
        EHR_ASSERT(l->checkpoint_running);
        l->append_waits++;
        l->appends_waiting++;
        pthread_cond_signal(&l->checkpoint_wake);
        pthread_cond_wait(&l->checkpoint_done, &l->checkpoint_mu);
        l->appends_waiting--;
    }
    if (rc == 0) {
        l->reserved_blocks++;
        l->reserved_bytes += bytes;
    }
    pthread_mutex_unlock(&l->checkpoint_mu);
    return rc;
}

void ledger__derived_unreserve(ledger *l, size_t bytes)
{
    pthread_mutex_lock(&l->checkpoint_mu);
    EHR_ASSERT(l->reserved_blocks > 0 && l->reserved_bytes >= bytes);
    l->reserved_blocks--;
    l->reserved_bytes -= bytes;
    pthread_cond_broadcast(&l->checkpoint_done);
    pthread_mutex_unlock(&l->checkpoint_mu);
}

void ledger__derived_publish(ledger *l, ledger__ov_block *b)
{
    atomic_fetch_add(&l->publishers_waiting, 1);
    pthread_rwlock_wrlock(&l->overlay_lock);
    atomic_fetch_sub(&l->publishers_waiting, 1);
    ledger__overlay_add(&l->overlay, b);
    pthread_rwlock_unlock(&l->overlay_lock);
    pthread_mutex_lock(&l->checkpoint_mu);
    EHR_ASSERT(b->height == l->published_next); /* invariant 2: no gap */
    if (l->published_next == l->checkpoint_next)
        l->oldest_ns = now_ns();
    l->published_next = b->height + 1;
    if (checkpoint_due(l, now_ns()))
        pthread_cond_signal(&l->checkpoint_wake);
    pthread_mutex_unlock(&l->checkpoint_mu);
}

int ledger_checkpoint(ledger *l, ehr_diag *diag)
{
    EHR_ASSERT(l != NULL);
    if (l->options.read_only)
        return ehr_diag_fail(diag, EHR_EINVAL, "the ledger is open read-only");
    pthread_mutex_lock(&l->checkpoint_mu);
    uint64_t want = l->published_next;
    if (want > l->checkpoint_want)
        l->checkpoint_want = want;
    pthread_cond_signal(&l->checkpoint_wake);
    while (l->checkpoint_next < want && l->checkpoint_error == 0)
        pthread_cond_wait(&l->checkpoint_done, &l->checkpoint_mu);
    int rc = 0;
    if (l->checkpoint_next < want)
        rc = ehr_diag_fail(diag, l->checkpoint_error, "%s", l->checkpoint_error_msg);
    pthread_mutex_unlock(&l->checkpoint_mu);
    return rc;
}

/* ---- Opening: catching the overlay up with the main environment ---- */

/* The overlay block of HEIGHT, rebuilt from the block (tx rows) and its
 * write-log record in the main environment. */
static int block_load(ledger *l, MDB_txn *txn, uint64_t height, ledger__ov_block **out,
                      ehr_diag *diag)
{
    uint8_t key[8];
    ledger__height_key(key, height);
    MDB_val k = val_of(key, sizeof key), v;
    int rc = mdb_get(txn, l->db_blocks, &k, &v);
    if (rc != 0)
        return rc == MDB_NOTFOUND
                   ? ehr_diag_fail(diag, EHR_ECORRUPT, "block %llu is missing below the tip",
                                   (unsigned long long)height)
                   : ledger__lmdb_error(l, rc, "reading a block", diag);
    const uint8_t *bytes;
    size_t len;
    if (ledger__stored_block_open(v.mv_data, v.mv_size, height, &bytes, &len) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "block %llu fails its stored checksum",
                             (unsigned long long)height);
    ledger_block_view view;
    ehr_diag why;
    if (ledger_block_parse(bytes, len, &view, &why) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "block %llu does not parse: %s",
                             (unsigned long long)height, why.msg);
    uint32_t n = view.header.tx_count;
    uint8_t(*hashes)[EHR_HASH_BYTES] = ehr_malloc(((size_t)n + 1) * EHR_HASH_BYTES);
    for (uint32_t i = 0; i < n; i++) {
        ledger_tx_view tx;
        rc = ledger_tx_envelope_parse(bytes + view.txs[i].offset, view.txs[i].length, &tx, NULL);
        EHR_ASSERT(rc == 0); /* ledger_block_parse checked the framing */
        ledger_tx_hash(tx.body, tx.body_len, hashes[i]);
    }
    ledger__write_log log;
    rc = ledger__writes_read(l, txn, height, &log, diag);
    if (rc == EHR_ETOOBIG)
        rc = EHR_ECORRUPT; /* a stored record over its limits is damage (message kept) */
    if (rc == 0 && log.result_count != n)
        rc = ehr_diag_fail(diag, EHR_ECORRUPT,
                           "the write-log record at height %llu holds %zu results for %u "
                           "transactions",
                           (unsigned long long)height, log.result_count, (unsigned)n);
    if (rc == 0)
        *out =
            ledger__ov_block_make(height, (const uint8_t(*)[EHR_HASH_BYTES])hashes, view.txs, &log);
    ledger__write_log_release(&log);
    ehr_free(hashes);
    ledger_block_view_release(&view);
    return rc;
}

/* The main environment's tip height (*HAS false before genesis). */
static int tip_height(ledger *l, bool *has, uint64_t *height, ehr_diag *diag)
{
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    ledger_tip tip;
    ehr_diag why; /* no tip yet is no failure here */
    rc = ledger__tip_read(l, txn, &tip, &why);
    mdb_txn_abort(txn);
    *has = rc == 0;
    *height = rc == 0 ? tip.height : 0;
    if (rc != 0 && rc != EHR_ENOTFOUND)
        return ehr_diag_fail(diag, rc, "%s", why.msg);
    return 0;
}

/*
 * Add the blocks published_next..TIP to the overlay. Writable: checkpoint
 * whenever the overlay is full (before the checkpointer runs). Read-only:
 * stop at the limits and leave the rest (reads are then behind). Called
 * with checkpoint_mu not held, by one thread at a time.
 */
static int overlay_extend(ledger *l, uint64_t tip, ehr_diag *diag)
{
    MDB_txn *txn = NULL;
    int rc = 0;
    for (uint64_t h = l->published_next; h <= tip && rc == 0; h++) {
        if (txn == NULL && (rc = ledger__read_begin(l, &txn, diag)) != 0)
            break;
        ledger__ov_block *b;
        rc = block_load(l, txn, h, &b, diag);
        if (rc != 0)
            break;
        if (l->reserved_blocks > 0 && (l->reserved_blocks + 1 > l->overlay_blocks_max ||
                                       l->reserved_bytes + b->bytes > l->overlay_bytes_max)) {
            if (l->options.read_only) {
                ehr_free(b);
                rc = ehr_diag_fail(diag, EHR_EAGAIN,
                                   "the derived tables are more than %d blocks behind the tip; "
                                   "open the ledger writable to let them catch up",
                                   LEDGER_OVERLAY_BLOCKS_MAX);
                break;
            }
            /* No read transaction across a long checkpoint. */
            mdb_txn_abort(txn);
            txn = NULL;
            rc = checkpoint_run(l, h - 1, diag);
            if (rc != 0) {
                ehr_free(b);
                break;
            }
        }
        pthread_mutex_lock(&l->checkpoint_mu);
        l->reserved_blocks++;
        l->reserved_bytes += b->bytes;
        pthread_mutex_unlock(&l->checkpoint_mu);
        ledger__derived_publish(l, b);
        if (h % 64 == 63 && txn != NULL) { /* short read transactions */
            mdb_txn_abort(txn);
            txn = NULL;
        }
    }
    if (txn != NULL)
        mdb_txn_abort(txn);
    return rc;
}

/* Read-only: follow the writer. Drop what its checkpoints now cover, add
 * the blocks it appended. Errors leave the reader behind, not broken. */
static void overlay_refresh(ledger *l)
{
    /* refresh_mu: the only thread that changes this handle's overlay and
     * counters (read-only: no appender, no checkpointer). checkpoint_mu is
     * taken only around the counters, never while the overlay lock is
     * wanted (a scan callback may hold it shared and ask for the stats). */
    pthread_mutex_lock(&l->refresh_mu);
    bool has;
    uint64_t tip;
    checkpoint_rec cp = {0};
    MDB_txn *txn;
    /* The tip first: then no block of it can be below the checkpoint read
     * next and above the overlay (invariant 3 bounds what is added). */
    int rc = tip_height(l, &has, &tip, NULL);
    if (rc == 0 && has && (rc = mdb_txn_begin(l->derived_env, NULL, MDB_RDONLY, &txn)) == 0) {
        rc = checkpoint_read(l, txn, &cp, NULL);
        mdb_txn_abort(txn);
    }
    if (rc != 0 || !has) {
        pthread_mutex_unlock(&l->refresh_mu);
        return;
    }
    if (cp.present && cp.next > l->checkpoint_next) {
        pthread_rwlock_wrlock(&l->overlay_lock);
        ledger__overlay_drop_through(&l->overlay, cp.next - 1);
        uint64_t blocks = l->overlay.block_count, bytes = l->overlay.bytes;
        pthread_rwlock_unlock(&l->overlay_lock);
        pthread_mutex_lock(&l->checkpoint_mu);
        l->reserved_blocks = blocks;
        l->reserved_bytes = bytes;
        l->checkpoint_next = cp.next;
        l->checkpoint_tx_count = cp.tx_count;
        if (l->published_next < cp.next)
            l->published_next = cp.next;
        pthread_mutex_unlock(&l->checkpoint_mu);
    }
    if (tip + 1 > l->published_next)
        (void)overlay_extend(l, tip, NULL);
    pthread_mutex_unlock(&l->refresh_mu);
}

/* Writable: empty the derived tables (they belong to another chain, or are
 * ahead of the blocks after a crash without sync). */
static int derived_reset(ledger *l, ehr_diag *diag)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->derived_env, NULL, 0, &txn);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "resetting the derived tables", diag);
    rc = mdb_drop(txn, l->db_txs, 0);
    if (rc == 0)
        rc = mdb_drop(txn, l->db_state, 0);
    if (rc == 0)
        rc = mdb_drop(txn, l->db_derived_meta, 0);
    if (rc == 0)
        return ledger__lmdb_error(l, mdb_txn_commit(txn), "resetting the derived tables", diag);
    mdb_txn_abort(txn);
    return ledger__lmdb_error(l, rc, "resetting the derived tables", diag);
}

static int derived_env_open(ledger *l, ehr_diag *diag)
{
    int rc = mdb_env_create(&l->derived_env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(l->derived_env, 3);
    if (rc == 0)
        rc = mdb_env_set_mapsize(l->derived_env, (size_t)l->options.map_bytes);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(l->derived_env, l->options.readers_max);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "creating the derived environment", diag);
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", l->dir, LEDGER__DERIVED_FILE);
    if (n < 0 || (size_t)n >= sizeof path)
        return ehr_diag_fail(diag, EHR_EINVAL, "the ledger directory's path is too long");
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
    if (l->options.sync == LEDGER_SYNC_NONE)
        flags |= MDB_NOSYNC;
    if (l->options.read_only)
        flags |= MDB_RDONLY;
    rc = mdb_env_open(l->derived_env, path, flags, 0600);
    if (rc == ENOENT)
        return ehr_diag_fail(diag, EHR_ENOTFOUND,
                             "no derived tables (%s); open the ledger writable once to rebuild "
                             "them",
                             path);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "opening the derived environment", diag);
    /* One writable open at a time: its overlay is the only record of the
     * blocks above the checkpoint, so a second writer would check
     * duplicates against an overlay that misses the first one's blocks.
     * flock (not LMDB's fcntl locks) on the data file; released at close. */
    int fd;
    if (!l->options.read_only && mdb_env_get_fd(l->derived_env, &fd) == 0 &&
        flock(fd, LOCK_EX | LOCK_NB) != 0)
        return errno == EWOULDBLOCK
                   ? ehr_diag_fail(diag, EHR_EAGAIN,
                                   "another process has the ledger in %s open for writing", l->dir)
                   : ehr_diag_fail(diag, -errno, "locking %s: %s", path, strerror(errno));
    int dead = 0;
    (void)mdb_reader_check(l->derived_env, &dead);
    MDB_txn *txn;
    rc = mdb_txn_begin(l->derived_env, NULL, l->options.read_only ? MDB_RDONLY : 0, &txn);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "opening the derived tables", diag);
    unsigned dbi_flags = l->options.read_only ? 0 : MDB_CREATE;
    rc = mdb_dbi_open(txn, LEDGER__DB_TXS, dbi_flags, &l->db_txs);
    if (rc == 0)
        rc = mdb_dbi_open(txn, LEDGER__DB_STATE, dbi_flags, &l->db_state);
    if (rc == 0)
        rc = mdb_dbi_open(txn, LEDGER__DB_DERIVED_META, dbi_flags, &l->db_derived_meta);
    if (rc != 0) {
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND)
            return ehr_diag_fail(diag, EHR_ENOTFOUND,
                                 "the derived tables are missing; open the ledger writable once "
                                 "to rebuild them");
        return ledger__lmdb_error(l, rc, "opening the derived tables", diag);
    }
    return ledger__lmdb_error(l, mdb_txn_commit(txn), "opening the derived tables", diag);
}

/* Check the checkpoint record against the main environment's tip (*HAS,
 * *TIP, read before); writable, reset tables that cannot be used. Sets
 * checkpoint_next. */
static int derived_check(ledger *l, bool *has_tip, uint64_t *tip, ehr_diag *diag)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->derived_env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "reading the derived tables", diag);
    checkpoint_rec cp;
    ehr_diag read_why; /* writable, a record that does not decode is rebuilt below */
    rc = checkpoint_read(l, txn, &cp, &read_why);
    MDB_stat st_txs, st_state;
    if (rc == 0)
        rc = ledger__lmdb_error(l, mdb_stat(txn, l->db_txs, &st_txs), "reading the tx index",
                                &read_why);
    if (rc == 0)
        rc = ledger__lmdb_error(l, mdb_stat(txn, l->db_state, &st_state), "reading the world state",
                                &read_why);
    mdb_txn_abort(txn);
    if (rc != 0 && !(rc == EHR_ECORRUPT && !l->options.read_only))
        return ehr_diag_fail(diag, rc, "%s", read_why.msg);
    /* A writer in another process may have appended and checkpointed since
     * the tip was read: read it again before calling the tables ahead. */
    if (rc == 0 && cp.present && (!*has_tip || cp.next > *tip + 1)) {
        rc = tip_height(l, has_tip, tip, diag);
        if (rc != 0)
            return rc;
    }
    bool has = *has_tip;
    const char *why = NULL;
    if (rc != 0)
        why = "the checkpoint record does not decode";
    else if (cp.present && !has)
        why = "they hold rows but the ledger has no chain";
    else if (cp.present &&
             memcmp(cp.genesis_block_hash, l->genesis_block_hash, EHR_HASH_BYTES) != 0)
        why = "they belong to another chain";
    else if (cp.present && cp.next > *tip + 1)
        why = "they are ahead of the blocks";
    else if (!cp.present && (st_txs.ms_entries > 0 || st_state.ms_entries > 0))
        why = "they hold rows without a checkpoint record";
    if (why != NULL) {
        if (l->options.read_only)
            return ehr_diag_fail(diag, EHR_ECORRUPT,
                                 "the derived tables cannot be used (%s); open the ledger "
                                 "writable to rebuild them",
                                 why);
        ehr_log(EHR_LOG_WARN, "ledger derived tables rebuilt", "dir=%s reason=%s", l->dir, why);
        rc = derived_reset(l, diag);
        if (rc != 0)
            return rc;
        cp = (checkpoint_rec){0};
    }
    l->checkpoint_next = l->published_next = cp.next;
    l->checkpoint_tx_count = cp.tx_count;
    return 0;
}

int ledger__derived_open(ledger *l, ehr_diag *diag)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Readers nest (a scan callback that reads): readers must not queue
     * behind a waiting writer, or a nested read would deadlock. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_READER_NP);
    pthread_rwlock_init(&l->overlay_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&l->checkpoint_mu, NULL);
    pthread_mutex_init(&l->refresh_mu, NULL);
    pthread_condattr_t cattr;
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&l->checkpoint_wake, &cattr);
    pthread_condattr_destroy(&cattr);
    pthread_cond_init(&l->checkpoint_done, NULL);
    ledger__overlay_init(&l->overlay);
    l->oldest_ns = now_ns();
    l->overlay_blocks_max = LEDGER_OVERLAY_BLOCKS_MAX;
    l->overlay_bytes_max = LEDGER_OVERLAY_BYTES_MAX;

    int rc = derived_env_open(l, diag);
    if (rc != 0)
        return rc;
    MDB_txn *txn;
    rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    ledger_chain chain;
    ehr_diag why; /* no chain yet is no failure here */
    rc = ledger__chain_read(l, txn, &chain, &why);
    mdb_txn_abort(txn);
    if (rc != 0 && rc != EHR_ENOTFOUND)
        return ehr_diag_fail(diag, rc, "%s", why.msg);
    l->chain_known = rc == 0;
    if (l->chain_known)
        memcpy(l->genesis_block_hash, chain.genesis_block_hash, EHR_HASH_BYTES);
    bool has;
    uint64_t tip;
    rc = tip_height(l, &has, &tip, diag);
    if (rc == 0)
        rc = derived_check(l, &has, &tip, diag);
    if (rc == 0 && has) {
        rc = overlay_extend(l, tip, &why);
        if (rc != 0 && rc != EHR_EAGAIN && l->options.read_only) {
            /* Let verify report the damage rather than refuse to open. */
            ehr_log(EHR_LOG_WARN, "ledger overlay incomplete", "dir=%s error=%s", l->dir, why.msg);
            rc = 0;
        } else if (rc != 0) {
            rc = ehr_diag_fail(diag, rc, "%s", why.msg);
        }
    }
    if (rc != 0 || l->options.read_only)
        return rc;
    if (pthread_create(&l->checkpoint_thread, NULL, checkpoint_main, l) != 0)
        return ehr_diag_fail(diag, EHR_EAGAIN, "cannot start the checkpoint thread");
    l->checkpoint_running = true;
    return 0;
}

void ledger__derived_close(ledger *l)
{
    if (l->checkpoint_running) {
        pthread_mutex_lock(&l->checkpoint_mu);
        l->checkpoint_stop = true;
        pthread_cond_signal(&l->checkpoint_wake);
        pthread_mutex_unlock(&l->checkpoint_mu);
        pthread_join(l->checkpoint_thread, NULL);
        l->checkpoint_running = false;
    }
    if (l->overlay.head == NULL)
        return; /* never initialised */
    ledger__overlay_free(&l->overlay);
    if (l->derived_env != NULL)
        mdb_env_close(l->derived_env);
    l->derived_env = NULL;
    pthread_cond_destroy(&l->checkpoint_done);
    pthread_cond_destroy(&l->checkpoint_wake);
    pthread_mutex_destroy(&l->checkpoint_mu);
    pthread_mutex_destroy(&l->refresh_mu);
    pthread_rwlock_destroy(&l->overlay_lock);
}

/* ---- Read views ---- */

int ledger__view_begin(ledger *l, ledger__view *v, ehr_diag *diag)
{
    if (l->options.read_only && view_depth == 0)
        overlay_refresh(l);
    pthread_rwlock_rdlock(&l->overlay_lock);
    /* Invariant 2: the derived snapshot begins while the overlay is held. */
    int rc = mdb_txn_begin(l->derived_env, NULL, MDB_RDONLY, &v->txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&l->overlay_lock);
        return ledger__lmdb_error(l, rc, "starting a read transaction", diag);
    }
    v->ledger = l;
    view_depth++;
    return 0;
}

void ledger__view_end(ledger__view *v)
{
    EHR_ASSERT(view_depth > 0);
    mdb_txn_abort(v->txn);
    view_depth--;
    pthread_rwlock_unlock(&v->ledger->overlay_lock);
}

int ledger__view_tx(ledger__view *v, const uint8_t hash[EHR_HASH_BYTES], ledger_tx_location *loc,
                    ledger_bytes *result, ehr_diag *diag)
{
    const ledger__ov_tx *t = ledger__overlay_tx(&v->ledger->overlay, hash);
    if (t != NULL) {
        *loc = t->loc;
        if (result != NULL)
            *result = t->result;
        return 0;
    }
    MDB_val k = val_of(hash, EHR_HASH_BYTES), val;
    int rc = mdb_get(v->txn, v->ledger->db_txs, &k, &val);
    if (rc == MDB_NOTFOUND)
        return EHR_ENOTFOUND;
    if (rc != 0)
        return ledger__lmdb_error(v->ledger, rc, "reading the tx index", diag);
    if (ledger__tx_location_read(val.mv_data, val.mv_size, loc, result) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "the tx index row does not decode");
    return 0;
}

int ledger__view_state(ledger__view *v, const uint8_t *key, size_t key_len, const uint8_t **value,
                       size_t *value_len, ehr_diag *diag)
{
    const ledger__ov_node *n = ledger__overlay_state(&v->ledger->overlay, key, key_len);
    if (n != NULL) {
        if (n->write->remove)
            return EHR_ENOTFOUND;
        *value = n->write->value;
        *value_len = n->write->value_len;
        return 0;
    }
    MDB_val k = val_of(key, key_len), val;
    int rc = mdb_get(v->txn, v->ledger->db_state, &k, &val);
    if (rc == MDB_NOTFOUND)
        return EHR_ENOTFOUND;
    if (rc != 0)
        return ledger__lmdb_error(v->ledger, rc, "reading the world state", diag);
    *value = val.mv_data;
    *value_len = val.mv_size;
    return 0;
}

int ledger__state_cursor_open(ledger__view *v, const uint8_t *start, size_t start_len,
                              ledger__state_cursor *c, ehr_diag *diag)
{
    memset(c, 0, sizeof *c);
    c->view = v;
    c->node = start_len > 0 ? ledger__overlay_seek(&v->ledger->overlay, start, start_len)
                            : v->ledger->overlay.head->next[0];
    int rc = mdb_cursor_open(v->txn, v->ledger->db_state, &c->cur);
    if (rc != 0)
        return ledger__lmdb_error(v->ledger, rc, "opening the world state", diag);
    c->key = val_of(start, start_len);
    rc = mdb_cursor_get(c->cur, &c->key, &c->value, start_len > 0 ? MDB_SET_RANGE : MDB_FIRST);
    c->derived_end = rc == MDB_NOTFOUND;
    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_cursor_close(c->cur);
        c->cur = NULL;
        return ledger__lmdb_error(v->ledger, rc, "scanning the world state", diag);
    }
    return 0;
}

int ledger__state_cursor_next(ledger__state_cursor *c, const uint8_t **key, size_t *key_len,
                              const uint8_t **value, size_t *value_len, ehr_diag *diag)
{
    for (;;) {
        bool have_node = c->node != NULL;
        if (!have_node && c->derived_end)
            return 1;
        int cmp = !have_node       ? 1
                  : c->derived_end ? -1
                                   : ledger__key_cmp(c->node->write->key, c->node->write->key_len,
                                                     c->key.mv_data, c->key.mv_size);
        const ledger__ov_node *n = NULL;
        if (cmp <= 0) {
            n = c->node;
            c->node = n->next[0];
        } else {
            *key = c->key.mv_data;
            *key_len = c->key.mv_size;
            *value = c->value.mv_data;
            *value_len = c->value.mv_size;
        }
        if (cmp >= 0) {
            /* Pointers into the map stay valid for the read transaction. */
            int rc = mdb_cursor_get(c->cur, &c->key, &c->value, MDB_NEXT);
            c->derived_end = rc == MDB_NOTFOUND;
            if (rc != 0 && rc != MDB_NOTFOUND)
                return ledger__lmdb_error(c->view->ledger, rc, "scanning the world state", diag);
        }
        if (n == NULL)
            return 0;
        if (n->write->remove)
            continue; /* a removal hides the derived row of its key */
        *key = n->write->key;
        *key_len = n->write->key_len;
        *value = n->write->value;
        *value_len = n->write->value_len;
        return 0;
    }
}

void ledger__state_cursor_close(ledger__state_cursor *c)
{
    if (c->cur != NULL)
        mdb_cursor_close(c->cur);
    c->cur = NULL;
}

/* ---- Stats ---- */

int ledger__derived_stats(ledger *l, ledger_stats *out, ehr_diag *diag)
{
    ledger__view v;
    int rc = ledger__view_begin(l, &v, diag);
    if (rc != 0)
        return rc;
    checkpoint_rec cp;
    MDB_stat txs, state;
    rc = checkpoint_read(l, v.txn, &cp, diag);
    if (rc == 0)
        rc = ledger__lmdb_error(l, mdb_stat(v.txn, l->db_txs, &txs), "reading the tx index", diag);
    if (rc == 0)
        rc = ledger__lmdb_error(l, mdb_stat(v.txn, l->db_state, &state), "reading the state", diag);
    if (rc == 0) {
        out->tx_index_rows = txs.ms_entries;
        out->state_keys = state.ms_entries;
    }
    /* Count only what the derived snapshot does not already hold. */
    uint64_t next = cp.present ? cp.next : 0;
    for (const ledger__ov_block *b = l->overlay.first; rc == 0 && b != NULL; b = b->next) {
        if (b->height >= next)
            out->tx_index_rows += b->tx_count;
    }
    for (const ledger__ov_node *n = l->overlay.head->next[0]; rc == 0 && n != NULL;
         n = n->next[0]) {
        if (n->height < next)
            continue;
        MDB_val k = val_of(n->write->key, n->write->key_len), val;
        int g = mdb_get(v.txn, l->db_state, &k, &val);
        bool in_derived = g == 0;
        if (!n->write->remove && !in_derived)
            out->state_keys++;
        else if (n->write->remove && in_derived)
            out->state_keys--;
    }
    out->overlay_blocks = l->overlay.block_count;
    out->overlay_bytes = l->overlay.bytes;
    ledger__view_end(&v);
    pthread_mutex_lock(&l->checkpoint_mu);
    out->checkpoint_height = l->checkpoint_next;
    out->checkpoints = l->checkpoints_done;
    pthread_mutex_unlock(&l->checkpoint_mu);
    return rc;
}

/* ---- Test hooks ---- */

void ledger__checkpoint_pause(ledger *l, bool paused)
{
    pthread_mutex_lock(&l->checkpoint_mu);
    l->checkpoint_paused = paused;
    pthread_cond_signal(&l->checkpoint_wake);
    pthread_mutex_unlock(&l->checkpoint_mu);
}

uint64_t ledger__append_waits(ledger *l)
{
    pthread_mutex_lock(&l->checkpoint_mu);
    uint64_t n = l->append_waits;
    pthread_mutex_unlock(&l->checkpoint_mu);
    return n;
}

void ledger__overlay_limits_set(ledger *l, uint64_t blocks_max, uint64_t bytes_max)
{
    EHR_ASSERT(blocks_max >= 1 && blocks_max <= LEDGER_OVERLAY_BLOCKS_MAX);
    EHR_ASSERT(bytes_max >= 1 && bytes_max <= LEDGER_OVERLAY_BYTES_MAX);
    pthread_mutex_lock(&l->checkpoint_mu);
    l->overlay_blocks_max = blocks_max;
    l->overlay_bytes_max = bytes_max;
    pthread_cond_broadcast(&l->checkpoint_done);
    pthread_mutex_unlock(&l->checkpoint_mu);
}
