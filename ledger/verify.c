/*
 * verify.c - the offline check of a whole ledger (`ehrctl ledger verify`):
 * first the derived tables against the write log (the world state rebuilt
 * from the write log in a scratch LMDB environment and compared key by
 * key; the tx index's row count); then every stored block from 0 to the tip
 * against its checksum, its predecessor, its Merkle root and header
 * signature, its write-log record's results (one per transaction), each
 * transaction's verdict against its stored result and its tx-index row
 * (location and result), its proposer's membership and, with a replay
 * callback, its transactions re-applied. Stops at the first fault and says
 * where it is. (The walk decodes each write-log record again for its
 * results: the rebuild before it keeps only the writes.)
 *
 * A transaction that fails its checks (framing, chain, expiry at block time,
 * signature) is no fault of the ledger: the node keeps it in its block with
 * a refusal result. What must hold is that its stored result is what a
 * correct node records; without a replay, verify checks the decisive part of
 * that (such a transaction is never stored as OK), and the replay checks the
 * rest.
 *
 * The state before each block: once the derived tables are checked, the
 * scratch environment is emptied and rebuilt again block by block in step
 * with the walk (each block's stored writes applied once its checks and
 * replay pass), so that at block H it holds the state as of block H - 1:
 * what the proposer's membership is judged against and what the replay
 * reads.
 *
 * LMDB: the walk reads in short read transactions, renewed every
 * VERIFY_BATCH_BLOCKS blocks, so a verify running next to a node never pins
 * old pages for long. Blocks up to the tip seen at the start never change,
 * so the batches see the same chain. Only the calling thread touches LMDB
 * (the scratch environment too) and calls the replay.
 *
 * Threads: the transaction checks of a block (signatures dominate, ~40 us
 * each) are split into contiguous slices, one per thread; the caller takes
 * slice 0 and waits for the others. Each slice writes every transaction's
 * verdict into that transaction's own slots; the caller then looks for the
 * lowest faulty index, so the report does not depend on the thread count.
 * Workers only parse, hash and verify (no LMDB, no ehr_malloc).
 */
#include "ledger_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ehr/v1/ledger.pb-c.h"

enum {
    VERIFY_BATCH_BLOCKS = 64,
    /* Blocks with fewer transactions are checked on the calling thread. */
    VERIFY_PARALLEL_TXS_MIN = 32,
};

const char *ledger_fault_name(enum ledger_fault fault)
{
    switch (fault) {
    case LEDGER_FAULT_NONE:
        return "none";
    case LEDGER_FAULT_NO_CHAIN:
        return "no-chain";
    case LEDGER_FAULT_CORRUPT:
        return "corrupt";
    case LEDGER_FAULT_DECODE:
        return "decode";
    case LEDGER_FAULT_HEIGHT:
        return "height";
    case LEDGER_FAULT_HASH_LINK:
        return "hash-link";
    case LEDGER_FAULT_TIME:
        return "time";
    case LEDGER_FAULT_GENESIS:
        return "genesis";
    case LEDGER_FAULT_MERKLE:
        return "merkle-root";
    case LEDGER_FAULT_HEADER_SIG:
        return "header-signature";
    case LEDGER_FAULT_TX:
        return "transaction";
    case LEDGER_FAULT_TX_SIG:
        return "tx-signature";
    case LEDGER_FAULT_TX_INDEX:
        return "tx-index";
    case LEDGER_FAULT_TIP:
        return "tip";
    case LEDGER_FAULT_STATE:
        return "state";
    case LEDGER_FAULT_RESULTS:
        return "results";
    case LEDGER_FAULT_PROPOSER:
        return "proposer";
    case LEDGER_FAULT_REPLAY_RESULT:
        return "replay-result";
    case LEDGER_FAULT_REPLAY_STATE:
        return "replay-state";
    }
    return "unknown";
}

/* Record FAULT at HEIGHT (and TX, or -1) in REPORT; returns ERR. */
static int fault(ledger_verify_report *report, int err, enum ledger_fault kind, uint64_t height,
                 long tx, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fault(ledger_verify_report *report, int err, enum ledger_fault kind, uint64_t height,
                 long tx, const char *fmt, ...)
{
    EHR_ASSERT(err < 0 && kind != LEDGER_FAULT_NONE);
    report->fault = kind;
    report->height = height;
    report->tx_index = tx;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(report->msg, sizeof report->msg, fmt, ap);
    va_end(ap);
    return err;
}

/* One thread's share of a block's transaction checks. */
typedef struct slice {
    uint32_t first, end; /* transactions [first, end) */
    ledger__key_cache keys;
} slice;

struct tx_pool;

typedef struct worker_arg {
    struct tx_pool *pool;
    unsigned index;
} worker_arg;

/* The threads that check a block's transactions (see the file comment). */
typedef struct tx_pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t generation; /* bumped for each block handed out */
    unsigned pending;    /* workers still busy with the current block */
    bool stop;
    unsigned count; /* threads, the caller included */
    unsigned started;
    pthread_t threads[LEDGER_VERIFY_THREADS_MAX];
    worker_arg args[LEDGER_VERIFY_THREADS_MAX];
    const ledger_block_view *view;
    const uint8_t (*hashes)[EHR_HASH_BYTES]; /* the block's tx hashes, from the Merkle check */
    const char *chain_id;
    /* Per transaction of the block, written by the slice that holds it: its
     * signature verdict, and why the rules must refuse it (0: they may
     * accept it). */
    enum ledger_tx_sig *sigs;
    int *refusals;
    slice slices[LEDGER_VERIFY_THREADS_MAX];
} tx_pool;

static void slice_check(const tx_pool *pool, slice *s)
{
    const ledger_block_view *view = pool->view;
    /* The signature is judged as a node judges it before applying the block
     * (node/sigverify.c): without expiry, which the rules check at block
     * time, as below. The same verdict makes the same replay. */
    ledger_tx_rules rules = {.chain_id = pool->chain_id, .now_ms = 0};
    for (uint32_t i = s->first; i < s->end; i++) {
        const ledger_span *span = &view->txs[i];
        ledger_tx tx;
        int rc = ledger__tx_check(view->bytes + span->offset, span->length, &rules, pool->hashes[i],
                                  &s->keys, &tx, NULL);
        pool->sigs[i] = rc == 0             ? LEDGER_TX_SIG_VALID
                        : rc == EHR_EBADSIG ? LEDGER_TX_SIG_INVALID
                                            : LEDGER_TX_SIG_UNCHECKED;
        if (rc == 0) {
            if (view->header.time_ms > tx.body->expiry_ms)
                rc = EHR_EEXPIRED;
            ledger_tx_release(&tx);
        }
        pool->refusals[i] = rc;
    }
}

static void *worker_main(void *arg)
{
    worker_arg *w = arg;
    tx_pool *pool = w->pool;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool->mu);
        while (pool->generation == seen && !pool->stop)
            pthread_cond_wait(&pool->go, &pool->mu);
        if (pool->stop) {
            pthread_mutex_unlock(&pool->mu);
            return NULL;
        }
        seen = pool->generation;
        pthread_mutex_unlock(&pool->mu);
        slice_check(pool, &pool->slices[w->index]);
        pthread_mutex_lock(&pool->mu);
        EHR_ASSERT(pool->pending > 0);
        if (--pool->pending == 0)
            pthread_cond_signal(&pool->done);
        pthread_mutex_unlock(&pool->mu);
    }
}

/* Start COUNT - 1 workers (fewer if the system refuses: then fewer slices).
 * POOL must stay where it is until pool_stop. */
static void pool_start(tx_pool *pool, unsigned count)
{
    EHR_ASSERT(count >= 1 && count <= LEDGER_VERIFY_THREADS_MAX);
    memset(pool, 0, sizeof *pool);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->go, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->count = 1;
    for (unsigned i = 1; i < count; i++) {
        pool->args[i] = (worker_arg){.pool = pool, .index = i};
        if (pthread_create(&pool->threads[i], NULL, worker_main, &pool->args[i]) != 0)
            break;
        pool->count++;
    }
}

static void pool_stop(tx_pool *pool)
{
    pthread_mutex_lock(&pool->mu);
    pool->stop = true;
    pthread_cond_broadcast(&pool->go);
    pthread_mutex_unlock(&pool->mu);
    for (unsigned i = 1; i < pool->count; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->go);
    pthread_mutex_destroy(&pool->mu);
}

/* Check every transaction of VIEW: pool->sigs and pool->refusals get the
 * verdicts. */
static void pool_check(tx_pool *pool, const ledger_block_view *view,
                       const uint8_t (*hashes)[EHR_HASH_BYTES], const char *chain_id)
{
    uint32_t n = view->header.tx_count;
    unsigned parts = n >= VERIFY_PARALLEL_TXS_MIN ? pool->count : 1;
    pool->view = view;
    pool->hashes = hashes;
    pool->chain_id = chain_id;
    for (unsigned i = 0; i < pool->count; i++) {
        /* Slices beyond PARTS are empty: their workers wake and finish. */
        pool->slices[i].first = i < parts ? (uint32_t)((uint64_t)n * i / parts) : n;
        pool->slices[i].end = i < parts ? (uint32_t)((uint64_t)n * (i + 1) / parts) : n;
    }
    if (pool->count > 1) {
        pthread_mutex_lock(&pool->mu);
        pool->pending = pool->count - 1;
        pool->generation++;
        pthread_cond_broadcast(&pool->go);
        pthread_mutex_unlock(&pool->mu);
    }
    slice_check(pool, &pool->slices[0]);
    if (pool->count > 1) {
        pthread_mutex_lock(&pool->mu);
        while (pool->pending > 0)
            pthread_cond_wait(&pool->done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
}

/* A scratch LMDB environment in a fresh temporary directory, for the world
 * state rebuilt from the write log (no sync: it is thrown away). */
typedef struct scratch {
    char dir[512];
    MDB_env *env;
    MDB_dbi state;
} scratch;

/* The state the walk carries from block to block. */
typedef struct walk {
    ledger *ledger;
    ledger_verify_report *report;
    const ledger_verify_options *options; /* may be NULL */
    scratch scratch;                      /* the state before the block being walked */
    ledger_chain chain;
    uint8_t prev_hash[EHR_HASH_BYTES];
    uint64_t prev_time_ms;
    uint64_t tx_total;
    uint8_t (*hashes)[EHR_HASH_BYTES];
    tx_pool pool;
    /* What the derived tables' checkpoint claims, checked when the walk
     * passes height checkpoint_next - 1. */
    uint64_t checkpoint_next;
    uint64_t checkpoint_tx_count;
    /* What the store's functions say when they fail, for the report. */
    ehr_diag diag;
} walk;

/* Whether the writes A[0..A_COUNT) and B[0..B_COUNT) are the same, in the
 * same order; *AT gets the first position where they part. */
static bool writes_same(const ledger_state_write *a, size_t a_count, const ledger_state_write *b,
                        size_t b_count, size_t *at)
{
    size_t i = 0;
    for (; i < a_count && i < b_count; i++) {
        const ledger_state_write *x = &a[i], *y = &b[i];
        if (x->remove != y->remove || x->key_len != y->key_len ||
            memcmp(x->key, y->key, x->key_len) != 0)
            break;
        if (!x->remove && (x->value_len != y->value_len ||
                           (x->value_len > 0 && memcmp(x->value, y->value, x->value_len) != 0)))
            break;
    }
    *at = i;
    return i == a_count && i == b_count;
}

static int verify_genesis(walk *w, const ledger_block_view *view)
{
    const uint8_t *g_bytes = view->bytes + view->genesis.offset;
    Ehr__V1__Genesis *g;
    int rc = ledger_genesis_parse(g_bytes, view->genesis.length, &g, NULL);
    EHR_ASSERT(rc == 0); /* ledger_block_parse validated it */
    bool same = strcmp(g->chain_id, w->chain.chain_id) == 0 &&
                memcmp(view->header.genesis_hash, w->chain.genesis_hash, EHR_HASH_BYTES) == 0 &&
                memcmp(view->hash, w->chain.genesis_block_hash, EHR_HASH_BYTES) == 0;
    ehr__v1__genesis__free_unpacked(g, NULL);
    if (!same)
        return fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_GENESIS, 0, -1,
                     "block 0 does not match the ledger's chain info");
    return 0;
}

/* Block 0's stored state writes (LOG) against the ones its genesis makes:
 * the state every replay starts from. */
static int verify_genesis_writes(walk *w, const ledger_block_view *view,
                                 const ledger__write_log *log)
{
    Ehr__V1__Genesis *g;
    int rc =
        ledger_genesis_parse(view->bytes + view->genesis.offset, view->genesis.length, &g, NULL);
    EHR_ASSERT(rc == 0); /* ledger_block_parse validated it */
    ledger__genesis_writes gw;
    ledger__genesis_writes_make(g, &gw);
    size_t at;
    bool same = writes_same(log->writes, log->write_count, gw.writes, gw.count, &at);
    ledger__genesis_writes_release(&gw);
    ehr__v1__genesis__free_unpacked(g, NULL);
    if (!same)
        return fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_GENESIS, 0, -1,
                     "block 0's stored state writes are not the ones its genesis makes (from "
                     "write %zu of %zu)",
                     at, log->write_count);
    return 0;
}

/* Whether RESULT, a stored TxResult, says OK. One that does not decode
 * does not: the replay says what it should have been. */
static bool result_is_ok(const ledger_bytes *result)
{
    if (result->len == 0)
        return true; /* OK with nothing else is the empty encoding */
    Ehr__V1__TxResult *r = ehr__v1__tx_result__unpack(NULL, result->len, result->data);
    if (r == NULL)
        return false;
    bool ok = r->code == EHR__V1__TX_RESULT_CODE__TX_RESULT_OK;
    ehr__v1__tx_result__free_unpacked(r, NULL);
    return ok;
}

/* A transaction the rules must refuse (REFUSAL, from the pool) stored as
 * OK: a fault whatever the replay would say. */
static int refused_stored_ok(walk *w, const ledger_block_view *view, uint32_t i, int refusal)
{
    const ledger_block_header *h = &view->header;
    if (refusal == EHR_EBADSIG)
        return fault(w->report, refusal, LEDGER_FAULT_TX_SIG, h->height, (long)i,
                     "bad signature: height %llu tx %u is stored as OK, but its signature does "
                     "not verify",
                     (unsigned long long)h->height, (unsigned)i);
    /* Checked again, at block time, for the words: the pool keeps none. */
    ledger_tx_rules rules = {.chain_id = w->chain.chain_id, .now_ms = h->time_ms};
    ehr_diag why = {{0}};
    const ledger_span *span = &view->txs[i];
    int rc = ledger__tx_check(view->bytes + span->offset, span->length, &rules, w->hashes[i], NULL,
                              NULL, &why);
    EHR_ASSERT(rc != 0); /* the pool found it refused */
    return fault(w->report, refusal, LEDGER_FAULT_TX, h->height, (long)i,
                 "invalid transaction: height %llu tx %u is stored as OK, but: %s",
                 (unsigned long long)h->height, (unsigned)i, why.msg);
}

/* Each transaction of the block (in the pool) against its stored result in
 * LOG, the block's write-log record, then its index row against the block
 * and LOG. */
static int verify_txs(walk *w, const ledger_block_view *view, const ledger__write_log *log)
{
    const ledger_block_header *h = &view->header;
    pool_check(&w->pool, view, (const uint8_t(*)[EHR_HASH_BYTES])w->hashes, w->chain.chain_id);
    EHR_ASSERT(log->result_count == h->tx_count); /* verify_block checked it */
    for (uint32_t i = 0; i < h->tx_count; i++)
        if (w->pool.refusals[i] != 0 && result_is_ok(&log->results[i]))
            return refused_stored_ok(w, view, i, w->pool.refusals[i]);
    /* The rows as every lookup sees them: the overlay, then the derived
     * tables. */
    ledger__view v;
    int rc = h->tx_count > 0 ? ledger__view_begin(w->ledger, &v, &w->diag) : 0;
    if (rc != 0)
        return fault(w->report, rc, LEDGER_FAULT_CORRUPT, h->height, -1, "%s", w->diag.msg);
    for (uint32_t i = 0; rc == 0 && i < h->tx_count; i++) {
        const ledger_span *span = &view->txs[i];
        ledger_tx_location loc;
        ledger_bytes result;
        const ledger_bytes *logged = &log->results[i];
        int found = ledger__view_tx(&v, w->hashes[i], &loc, &result, NULL);
        if (found != 0 || loc.height != h->height || loc.index != i || loc.offset != span->offset ||
            loc.length != span->length)
            rc = fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_TX_INDEX, h->height, (long)i,
                       "tx index mismatch: height %llu tx %u is %s", (unsigned long long)h->height,
                       (unsigned)i, found == EHR_ENOTFOUND ? "not indexed" : "indexed elsewhere");
        else if (result.len != logged->len ||
                 (result.len > 0 && memcmp(result.data, logged->data, result.len) != 0))
            rc = fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_TX_INDEX, h->height, (long)i,
                       "tx index mismatch: height %llu tx %u: the row's result (%zu bytes) is "
                       "not the write log's (%zu bytes)",
                       (unsigned long long)h->height, (unsigned)i, result.len, logged->len);
    }
    if (h->tx_count > 0)
        ledger__view_end(&v);
    if (rc == 0)
        w->report->txs_checked += h->tx_count;
    return rc;
}

/* The write-log record at HEIGHT inside TXN into *LOG (released by the
 * caller, also after an error): its checksum and, when TX_COUNT is not
 * UINT32_MAX, one result per transaction. Reports a fault otherwise. */
static int write_log_read(walk *w, MDB_txn *txn, uint64_t height, uint32_t tx_count,
                          ledger__write_log *log)
{
    int rc = ledger__writes_read(w->ledger, txn, height, log, &w->diag);
    if (rc == EHR_ETOOBIG)
        return fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_RESULTS, height, -1,
                     "results over their limit at height %llu: %s", (unsigned long long)height,
                     w->diag.msg);
    if (rc != 0)
        return fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_CORRUPT, height, -1,
                     "corrupt write-log record at height %llu: %s", (unsigned long long)height,
                     rc == EHR_ENOTFOUND ? "missing" : "bad checksum or format");
    if (tx_count != UINT32_MAX && log->result_count != tx_count)
        return fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_RESULTS, height, -1,
                     "results mismatch at height %llu: the write-log record holds %zu results "
                     "for %u transactions",
                     (unsigned long long)height, log->result_count, (unsigned)tx_count);
    return 0;
}

/* ---- The state before each block ---- */

/* The scratch state inside one of its transactions, as a ledger_state_view. */
typedef struct scratch_view {
    ledger *ledger; /* for LMDB's error words */
    MDB_txn *txn;
    MDB_dbi state;
    ehr_diag diag; /* what a failed read says */
} scratch_view;

static int scratch_get(void *ctx, const uint8_t *key, size_t key_len, uint8_t *value, size_t *len)
{
    scratch_view *sv = ctx;
    if (key_len == 0 || key_len > EHR_STATE_KEY_BYTES_MAX)
        return EHR_ENOTFOUND; /* no such key is ever written */
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key}, v;
    int rc = mdb_get(sv->txn, sv->state, &k, &v);
    if (rc == MDB_NOTFOUND)
        return EHR_ENOTFOUND;
    if (rc != 0)
        return ledger__lmdb_error(sv->ledger, rc, "reading the scratch state", &sv->diag);
    if (v.mv_size > EHR_STATE_VALUE_BYTES_MAX) /* the write log's decoder bounds them */
        return ehr_diag_fail(&sv->diag, EHR_ECORRUPT, "a scratch state value is over its limit");
    if (v.mv_size > 0)
        memcpy(value, v.mv_data, v.mv_size);
    *len = v.mv_size;
    return 0;
}

static int scratch_scan(void *ctx, const uint8_t *prefix, size_t prefix_len, ledger_scan_fn fn,
                        void *fn_ctx)
{
    scratch_view *sv = ctx;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(sv->txn, sv->state, &cur);
    if (rc != 0)
        return ledger__lmdb_error(sv->ledger, rc, "reading the scratch state", &sv->diag);
    MDB_val k = {.mv_size = prefix_len, .mv_data = (void *)prefix}, v;
    /* LMDB keys are never empty: an empty prefix starts at the first key. */
    rc = mdb_cursor_get(cur, &k, &v, prefix_len > 0 ? MDB_SET_RANGE : MDB_FIRST);
    int out = 0;
    while (rc == 0 && k.mv_size >= prefix_len &&
           (prefix_len == 0 || memcmp(k.mv_data, prefix, prefix_len) == 0)) {
        out = fn(fn_ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        if (out != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (out == 0 && rc != 0 && rc != MDB_NOTFOUND)
        out = ledger__lmdb_error(sv->ledger, rc, "reading the scratch state", &sv->diag);
    return out;
}

/* Apply LOG's writes, in their order (a later write to a key wins), to the
 * scratch state inside TXN. Returns 0 or an LMDB code. */
static int scratch_apply(MDB_txn *txn, MDB_dbi state, const ledger__write_log *log)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < log->write_count; i++) {
        const ledger_state_write *x = &log->writes[i];
        MDB_val k = {.mv_size = x->key_len, .mv_data = (void *)x->key};
        if (x->remove) {
            rc = mdb_del(txn, state, &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0; /* removing an absent key is not an error (as the checkpoint) */
        } else {
            MDB_val v = {.mv_size = x->value_len, .mv_data = (void *)x->value};
            rc = mdb_put(txn, state, &k, &v, 0);
        }
    }
    return rc;
}

/* Replay VIEW through the caller's callback on SV, the state before it. */
static int replay_block(walk *w, const ledger_block_view *view, const ledger__write_log *log,
                        scratch_view *sv)
{
    const ledger_verify_options *o = w->options;
    const ledger_block_header *h = &view->header;
    ledger_state_view state = {.ctx = sv, .get = scratch_get, .scan = scratch_scan};
    ledger_replay_block block = {.chain_id = w->chain.chain_id,
                                 .view = view,
                                 .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])w->hashes,
                                 .sigs = w->pool.sigs,
                                 .state = &state,
                                 .writes = log->writes,
                                 .write_count = log->write_count,
                                 .results = log->results};
    ledger_replay_finding finding = {.fault = LEDGER_FAULT_NONE, .tx_index = -1};
    ehr_diag why = {{0}};
    int rc = o->replay(o->replay_ctx, &block, &finding, &why);
    if (rc == 0)
        return 0;
    int err = rc < 0 ? rc : EHR_ECORRUPT;
    /* A result finding names one of the block's transactions. */
    EHR_ASSERT(finding.fault != LEDGER_FAULT_REPLAY_RESULT || finding.tx_index >= 0);
    EHR_ASSERT(finding.fault != LEDGER_FAULT_REPLAY_RESULT || finding.tx_index < (long)h->tx_count);
    if (finding.fault == LEDGER_FAULT_REPLAY_RESULT || finding.fault == LEDGER_FAULT_REPLAY_STATE)
        return fault(w->report, err, finding.fault, h->height, finding.tx_index, "%s", why.msg);
    /* A read of the scratch state that failed says why in SV. */
    return fault(w->report, err, LEDGER_FAULT_REPLAY_STATE, h->height, -1,
                 "block %llu cannot be replayed: %s%s%s", (unsigned long long)h->height, why.msg,
                 sv->diag.msg[0] != '\0' ? ": " : "", sv->diag.msg);
}

/*
 * With the scratch state as of the block before VIEW: its proposer must be
 * a member then (as ledger_append_block checks against the tip), and the
 * replay, if any, must agree with LOG, the block's write-log record. Then
 * LOG's writes bring the scratch state to the end of the block.
 */
static int state_step(walk *w, const ledger_block_view *view, const ledger__write_log *log)
{
    const ledger_block_header *h = &view->header;
    EHR_ASSERT(log->result_count == h->tx_count); /* write_log_read checked it */
    EHR_ASSERT(w->scratch.env != NULL);
    scratch_view sv = {.ledger = w->ledger, .state = w->scratch.state};
    int lrc = mdb_txn_begin(w->scratch.env, NULL, 0, &sv.txn);
    if (lrc != 0)
        return fault(w->report,
                     ledger__lmdb_error(w->ledger, lrc, "the scratch environment", &w->diag),
                     LEDGER_FAULT_NO_CHAIN, h->height, -1, "%s", w->diag.msg);
    int rc = 0;
    if (h->height > 0) {
        uint8_t key[LEDGER_MEMBER_KEY_BYTES];
        ledger_member_key(key, h->proposer);
        MDB_val k = {.mv_size = sizeof key, .mv_data = key}, v;
        lrc = mdb_get(sv.txn, sv.state, &k, &v);
        if (lrc == MDB_NOTFOUND) {
            char hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
            ehr_hex_encode(hex, h->proposer, EHR_SCHNORR_PUBLIC_BYTES);
            rc = fault(w->report, EHR_EDENIED, LEDGER_FAULT_PROPOSER, h->height, -1,
                       "block %llu's proposer %s was not a member at height %llu",
                       (unsigned long long)h->height, hex, (unsigned long long)h->height - 1);
        } else if (lrc != 0) {
            rc = fault(w->report,
                       ledger__lmdb_error(w->ledger, lrc, "reading the scratch state", &w->diag),
                       LEDGER_FAULT_NO_CHAIN, h->height, -1, "%s", w->diag.msg);
        }
    }
    if (rc == 0 && h->height > 0 && w->options != NULL && w->options->replay != NULL)
        rc = replay_block(w, view, log, &sv);
    if (rc == 0) {
        lrc = scratch_apply(sv.txn, sv.state, log);
        lrc = lrc == 0 ? mdb_txn_commit(sv.txn) : (mdb_txn_abort(sv.txn), lrc);
        if (lrc != 0)
            rc = fault(w->report,
                       ledger__lmdb_error(w->ledger, lrc, "rebuilding the state", &w->diag),
                       LEDGER_FAULT_NO_CHAIN, h->height, -1, "%s", w->diag.msg);
    } else {
        mdb_txn_abort(sv.txn);
    }
    return rc;
}

static int verify_block(walk *w, MDB_txn *txn, uint64_t height, const ledger_tip *tip)
{
    ledger_verify_report *rep = w->report;
    uint8_t key[8];
    ledger__height_key(key, height);
    MDB_val k = {.mv_size = sizeof key, .mv_data = key}, v;
    int rc = mdb_get(txn, w->ledger->db_blocks, &k, &v);
    if (rc == MDB_NOTFOUND)
        return fault(rep, EHR_ELINK, LEDGER_FAULT_HEIGHT, height, -1,
                     "block %llu is missing below the tip", (unsigned long long)height);
    if (rc != 0)
        return fault(rep, ledger__lmdb_error(w->ledger, rc, "reading a block", &w->diag),
                     LEDGER_FAULT_CORRUPT, height, -1, "block %llu cannot be read: %s",
                     (unsigned long long)height, w->diag.msg);
    const uint8_t *bytes;
    size_t len;
    if (ledger__stored_block_open(v.mv_data, v.mv_size, height, &bytes, &len) != 0)
        return fault(rep, EHR_ECORRUPT, LEDGER_FAULT_CORRUPT, height, -1,
                     "corrupt block record at height %llu: the stored checksum does not match",
                     (unsigned long long)height);
    ledger_block_view view;
    ehr_diag diag;
    rc = ledger_block_parse(bytes, len, &view, &diag);
    if (rc != 0)
        return fault(rep, EHR_ECORRUPT, LEDGER_FAULT_DECODE, height, -1,
                     "block %llu does not parse: %s", (unsigned long long)height, diag.msg);
    const ledger_block_header *h = &view.header;
    if (h->height != height) {
        rc = fault(rep, EHR_ELINK, LEDGER_FAULT_HEIGHT, height, -1,
                   "height sequence broken: the block stored at %llu says height %llu",
                   (unsigned long long)height, (unsigned long long)h->height);
        goto out;
    }
    if (height == 0) {
        rc = verify_genesis(w, &view);
        if (rc != 0)
            goto out;
    } else if (memcmp(h->prev_hash, w->prev_hash, EHR_HASH_BYTES) != 0) {
        rc = fault(rep, EHR_ELINK, LEDGER_FAULT_HASH_LINK, height, -1,
                   "broken hash link at height %llu: prev_hash is not the hash of block %llu",
                   (unsigned long long)height, (unsigned long long)height - 1);
        goto out;
    }
    if (h->time_ms < w->prev_time_ms) {
        rc = fault(rep, EHR_ELINK, LEDGER_FAULT_TIME, height, -1,
                   "block time goes backwards at height %llu", (unsigned long long)height);
        goto out;
    }
    if (h->tx_count > 0 && w->hashes == NULL)
        w->hashes = ehr_malloc(EHR_BLOCK_TX_COUNT_MAX * EHR_HASH_BYTES);
    long failed_tx;
    rc = ledger_block_check(&view, LEDGER_CHECK_MERKLE | LEDGER_CHECK_HEADER_SIG, NULL, w->hashes,
                            &failed_tx, &diag);
    if (rc == EHR_ECORRUPT) {
        rc = fault(rep, rc, LEDGER_FAULT_MERKLE, height, -1,
                   "bad Merkle root at height %llu: tx_root does not match the transactions",
                   (unsigned long long)height);
        goto out;
    }
    if (rc != 0) {
        rc = fault(rep, rc, LEDGER_FAULT_HEADER_SIG, height, -1,
                   "bad block signature at height %llu: the proposer's signature does not verify",
                   (unsigned long long)height);
        goto out;
    }
    ledger__write_log log;
    rc = write_log_read(w, txn, height, h->tx_count, &log);
    if (rc == 0 && height == 0)
        rc = verify_genesis_writes(w, &view, &log);
    if (rc == 0)
        rc = verify_txs(w, &view, &log);
    if (rc == 0)
        rc = state_step(w, &view, &log);
    ledger__write_log_release(&log);
    if (rc != 0)
        goto out;
    memcpy(w->prev_hash, view.hash, EHR_HASH_BYTES);
    w->prev_time_ms = h->time_ms;
    w->tx_total += h->tx_count;
    rep->blocks_checked++;
    if (height == tip->height &&
        (memcmp(view.hash, tip->hash, EHR_HASH_BYTES) != 0 || w->tx_total != tip->tx_count)) {
        rc = fault(rep, EHR_ECORRUPT, LEDGER_FAULT_TIP, tip->height, -1,
                   "the tip record disagrees with block %llu", (unsigned long long)tip->height);
        goto out;
    }
    if (height + 1 == w->checkpoint_next && w->tx_total != w->checkpoint_tx_count)
        rc = fault(rep, EHR_ECORRUPT, LEDGER_FAULT_TX_INDEX, height, -1,
                   "the tx index's checkpoint counts %llu transactions in blocks 0..%llu, the "
                   "blocks hold %llu",
                   (unsigned long long)w->checkpoint_tx_count, (unsigned long long)height,
                   (unsigned long long)w->tx_total);
out:
    ledger_block_view_release(&view);
    return rc;
}

/* The snapshot the walk is judged against: chain, tip, row counts. */
static int verify_start(walk *w, ledger_tip *tip)
{
    ledger *l = w->ledger;
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, &w->diag);
    if (rc != 0)
        return fault(w->report, rc, LEDGER_FAULT_NO_CHAIN, 0, -1, "%s", w->diag.msg);
    rc = ledger__chain_read(l, txn, &w->chain, &w->diag);
    if (rc == 0)
        rc = ledger__tip_read(l, txn, tip, &w->diag);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return fault(w->report, rc, LEDGER_FAULT_NO_CHAIN, 0, -1, "%s", w->diag.msg);
    }
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t tip_key[8];
    ledger__height_key(tip_key, tip->height);
    rc = mdb_cursor_open(txn, l->db_blocks, &cur);
    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    if (rc != 0 || k.mv_size != sizeof tip_key || memcmp(k.mv_data, tip_key, sizeof tip_key) != 0)
        return fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_TIP, tip->height, -1,
                     "the last stored block is not the tip at height %llu",
                     (unsigned long long)tip->height);
    return 0;
}

/* ---- The derived tables against the write log ---- */

static int scratch_open(walk *w, scratch *s)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(s->dir, sizeof s->dir, "%s/ehr-verify-XXXXXX",
                     tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof s->dir || mkdtemp(s->dir) == NULL) {
        s->dir[0] = '\0';
        return fault(w->report, EHR_EINVAL, LEDGER_FAULT_NO_CHAIN, 0, -1,
                     "cannot create a scratch directory for the state check under %s",
                     tmp != NULL ? tmp : "/tmp");
    }
    MDB_txn *txn;
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, (size_t)w->ledger->options.map_bytes);
    if (rc == 0)
        rc = mdb_env_open(s->env, s->dir, MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS, 0600);
    if (rc == 0 && (rc = mdb_txn_begin(s->env, NULL, 0, &txn)) == 0) {
        rc = mdb_dbi_open(txn, NULL, 0, &s->state);
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (rc != 0)
        return fault(w->report,
                     ledger__lmdb_error(w->ledger, rc, "the scratch environment", &w->diag),
                     LEDGER_FAULT_NO_CHAIN, 0, -1, "%s", w->diag.msg);
    return 0;
}

static void scratch_close(scratch *s)
{
    if (s->env != NULL)
        mdb_env_close(s->env);
    if (s->dir[0] == '\0')
        return;
    const char *files[] = {"data.mdb", "lock.mdb"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(files); i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", s->dir, files[i]);
        unlink(path);
    }
    rmdir(s->dir);
}

/* Empty the scratch state, for the walk to rebuild it in step. */
static int scratch_empty(walk *w, scratch *s)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_drop(txn, s->state, 0);
        rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
    }
    if (rc != 0)
        return fault(w->report,
                     ledger__lmdb_error(w->ledger, rc, "the scratch environment", &w->diag),
                     LEDGER_FAULT_NO_CHAIN, 0, -1, "%s", w->diag.msg);
    return 0;
}

/* Apply the write log of heights FROM..TO-1 to the scratch state, in
 * sorted batches (the checkpoint's own code), each record checked. */
static int rebuild(walk *w, scratch *s, uint64_t from, uint64_t to)
{
    ledger *l = w->ledger;
    ledger__ov_block *blocks[VERIFY_BATCH_BLOCKS];
    uint64_t h = from;
    int rc = 0;
    while (h < to && rc == 0) {
        MDB_txn *txn;
        rc = ledger__read_begin(l, &txn, &w->diag);
        if (rc != 0)
            return fault(w->report, rc, LEDGER_FAULT_CORRUPT, h, -1, "%s", w->diag.msg);
        size_t n = 0, bytes = 0;
        for (; h < to && n < VERIFY_BATCH_BLOCKS && bytes < LEDGER_OVERLAY_BYTES_MAX; h++) {
            /* The results are checked against the blocks in the walk. */
            ledger__write_log log;
            rc = write_log_read(w, txn, h, UINT32_MAX, &log);
            if (rc != 0) {
                ledger__write_log_release(&log);
                break;
            }
            const ledger__write_log state_only = {.writes = log.writes,
                                                  .write_count = log.write_count};
            blocks[n] = ledger__ov_block_make(h, NULL, NULL, &state_only);
            bytes += blocks[n++]->bytes;
            ledger__write_log_release(&log);
        }
        mdb_txn_abort(txn);
        MDB_txn *stxn;
        int lrc = rc == 0 ? mdb_txn_begin(s->env, NULL, 0, &stxn) : 0;
        if (rc == 0 && lrc == 0) {
            lrc = ledger__rows_apply(stxn, 0, s->state, blocks, n);
            lrc = lrc == 0 ? mdb_txn_commit(stxn) : (mdb_txn_abort(stxn), lrc);
        }
        if (rc == 0 && lrc != 0)
            rc = fault(w->report, ledger__lmdb_error(l, lrc, "replaying the write log", &w->diag),
                       LEDGER_FAULT_NO_CHAIN, h, -1, "%s", w->diag.msg);
        for (size_t i = 0; i < n; i++)
            ehr_free(blocks[i]);
    }
    return rc;
}

/* KEY as hex for a message, cut to its first 32 bytes. */
static void key_hex(char out[2 * 32 + 4], const uint8_t *key, size_t len)
{
    size_t n = len > 32 ? 32 : len;
    ehr_hex_encode(out, key, n);
    if (len > n)
        memcpy(out + 2 * n, "...", 4);
}

/* Walk the derived state (DTXN) and the rebuilt one side by side. */
static int state_compare(walk *w, MDB_txn *dtxn, scratch *s, uint64_t height)
{
    MDB_txn *stxn;
    MDB_cursor *dc = NULL, *sc = NULL;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &stxn);
    if (rc != 0)
        return fault(w->report,
                     ledger__lmdb_error(w->ledger, rc, "the scratch environment", &w->diag),
                     LEDGER_FAULT_NO_CHAIN, height, -1, "%s", w->diag.msg);
    MDB_val dk, dv, sk, sv;
    rc = mdb_cursor_open(dtxn, w->ledger->db_state, &dc);
    if (rc == 0)
        rc = mdb_cursor_open(stxn, s->state, &sc);
    int drc = rc == 0 ? mdb_cursor_get(dc, &dk, &dv, MDB_FIRST) : rc;
    int src = rc == 0 ? mdb_cursor_get(sc, &sk, &sv, MDB_FIRST) : rc;
    int out = 0;
    char hex[2 * 32 + 4];
    while (rc == 0 && out == 0) {
        if ((drc != 0 && drc != MDB_NOTFOUND) || (src != 0 && src != MDB_NOTFOUND)) {
            rc = drc != 0 && drc != MDB_NOTFOUND ? drc : src;
            break;
        }
        if (drc == MDB_NOTFOUND && src == MDB_NOTFOUND)
            break;
        int cmp = drc == MDB_NOTFOUND ? 1
                  : src == MDB_NOTFOUND
                      ? -1
                      : ledger__key_cmp(dk.mv_data, dk.mv_size, sk.mv_data, sk.mv_size);
        if (cmp < 0) {
            key_hex(hex, dk.mv_data, dk.mv_size);
            out = fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_STATE, height, -1,
                        "world state mismatch: key %s is in the state but no write in the "
                        "write log below height %llu leaves it there",
                        hex, (unsigned long long)height + 1);
        } else if (cmp > 0) {
            key_hex(hex, sk.mv_data, sk.mv_size);
            out = fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_STATE, height, -1,
                        "world state mismatch: key %s, written by the write log, is missing", hex);
        } else if (dv.mv_size != sv.mv_size ||
                   (dv.mv_size > 0 && memcmp(dv.mv_data, sv.mv_data, dv.mv_size) != 0)) {
            key_hex(hex, dk.mv_data, dk.mv_size);
            out = fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_STATE, height, -1,
                        "world state mismatch: key %s holds another value than the write log's "
                        "last write",
                        hex);
        } else {
            drc = mdb_cursor_get(dc, &dk, &dv, MDB_NEXT);
            src = mdb_cursor_get(sc, &sk, &sv, MDB_NEXT);
        }
    }
    if (dc != NULL)
        mdb_cursor_close(dc);
    if (sc != NULL)
        mdb_cursor_close(sc);
    mdb_txn_abort(stxn);
    if (out == 0 && rc != 0)
        out =
            fault(w->report, ledger__lmdb_error(w->ledger, rc, "reading the world state", &w->diag),
                  LEDGER_FAULT_CORRUPT, height, -1, "%s", w->diag.msg);
    return out;
}

/*
 * The derived tables against the write log, in one derived snapshot (at
 * checkpoint C): the state equals the write log of blocks 0..C-1 replayed,
 * and the tx index holds as many rows as its checkpoint counts (the walk
 * then checks that count against the blocks, and each block's rows). The
 * snapshot is taken after most of the replay, so it stays short.
 */
static int verify_derived(walk *w)
{
    ledger *l = w->ledger;
    scratch *s = &w->scratch;
    int rc = scratch_open(w, s);
    uint64_t done = 0, next = 0, tx_count = 0;
    MDB_txn *dtxn = NULL;
    for (int round = 0; rc == 0; round++) {
        int lrc = ledger__lmdb_error(l, mdb_txn_begin(l->derived_env, NULL, MDB_RDONLY, &dtxn),
                                     "reading the derived tables", &w->diag);
        if (lrc == 0)
            lrc = ledger__checkpoint_get(l, dtxn, &next, &tx_count, &w->diag);
        if (lrc != 0) {
            rc = fault(w->report, lrc, LEDGER_FAULT_CORRUPT, 0, -1, "%s", w->diag.msg);
            break;
        }
        /* Far behind: replay without holding the snapshot, then look again. */
        if (next - done > VERIFY_BATCH_BLOCKS && round < 3) {
            mdb_txn_abort(dtxn);
            dtxn = NULL;
            rc = rebuild(w, s, done, next);
            done = next;
            continue;
        }
        rc = rebuild(w, s, done, next);
        break;
    }
    MDB_stat st;
    if (rc == 0) {
        int lrc = mdb_stat(dtxn, l->db_txs, &st);
        if (lrc != 0)
            rc = fault(w->report, ledger__lmdb_error(l, lrc, "reading the tx index", &w->diag),
                       LEDGER_FAULT_CORRUPT, 0, -1, "%s", w->diag.msg);
    }
    uint64_t height = next > 0 ? next - 1 : 0;
    if (rc == 0 && st.ms_entries != tx_count)
        rc = fault(w->report, EHR_ECORRUPT, LEDGER_FAULT_TX_INDEX, height, -1,
                   "the tx index holds %llu rows, its checkpoint counts %llu transactions in "
                   "blocks below %llu",
                   (unsigned long long)st.ms_entries, (unsigned long long)tx_count,
                   (unsigned long long)next);
    if (rc == 0)
        rc = state_compare(w, dtxn, s, height);
    if (dtxn != NULL)
        mdb_txn_abort(dtxn);
    if (rc == 0)
        rc = scratch_empty(w, s);
    w->checkpoint_next = next;
    w->checkpoint_tx_count = tx_count;
    return rc;
}

/* The thread count OPTIONS ask for (0 if out of range). */
static unsigned threads_of(const ledger_verify_options *options)
{
    uint32_t n = options != NULL ? options->threads : 0;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus < 1                           ? 1
            : cpus > LEDGER_VERIFY_THREADS_MAX ? LEDGER_VERIFY_THREADS_MAX
                                               : (uint32_t)cpus;
    }
    return n <= LEDGER_VERIFY_THREADS_MAX ? n : 0;
}

int ledger_verify(ledger *l, const ledger_verify_options *options, ledger_verify_report *report)
{
    EHR_ASSERT(l != NULL && report != NULL);
    memset(report, 0, sizeof *report);
    report->tx_index = -1;
    unsigned threads = threads_of(options);
    if (threads == 0) {
        snprintf(report->msg, sizeof report->msg, "verify threads must be 0..%d",
                 LEDGER_VERIFY_THREADS_MAX);
        return EHR_EINVAL;
    }
    walk *w = ehr_calloc(1, sizeof *w);
    w->ledger = l;
    w->report = report;
    w->options = options;
    ledger_tip tip;
    int rc = verify_start(w, &tip);
    if (rc == 0)
        rc = verify_derived(w);
    if (rc != 0) {
        scratch_close(&w->scratch);
        ehr_free(w);
        return rc;
    }
    /* A writer may have checkpointed past the tip seen at the start: walk
     * far enough to check the checkpoint's count (those blocks exist). */
    uint64_t end = tip.height;
    if (w->checkpoint_next > 0 && w->checkpoint_next - 1 > end)
        end = w->checkpoint_next - 1;
    pool_start(&w->pool, threads);
    w->pool.sigs = ehr_malloc(EHR_BLOCK_TX_COUNT_MAX * sizeof *w->pool.sigs);
    w->pool.refusals = ehr_malloc(EHR_BLOCK_TX_COUNT_MAX * sizeof *w->pool.refusals);
    MDB_txn *txn = NULL;
    for (uint64_t h = 0; h <= end && rc == 0; h++) {
        if (h % VERIFY_BATCH_BLOCKS == 0) {
            if (options != NULL && options->progress != NULL)
                options->progress(options->progress_ctx, h, tip.height);
            /* A fresh snapshot now and then: see the file comment. */
            if (txn != NULL)
                mdb_txn_reset(txn);
            int lrc =
                txn == NULL ? mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn) : mdb_txn_renew(txn);
            if (lrc != 0) {
                rc = fault(report, ledger__lmdb_error(l, lrc, "reading blocks", &w->diag),
                           LEDGER_FAULT_CORRUPT, h, -1, "%s", w->diag.msg);
                break;
            }
        }
        rc = verify_block(w, txn, h, &tip);
    }
    if (txn != NULL)
        mdb_txn_abort(txn);
    pool_stop(&w->pool);
    ehr_free(w->pool.sigs);
    ehr_free(w->pool.refusals);
    scratch_close(&w->scratch);
    if (rc == 0)
        snprintf(report->msg, sizeof report->msg,
                 "ledger ok: %llu blocks (0..%llu), %llu transactions, chain %s",
                 (unsigned long long)report->blocks_checked, (unsigned long long)end,
                 (unsigned long long)report->txs_checked, w->chain.chain_id);
    ehr_free(w->hashes);
    ehr_free(w);
    return rc;
}
