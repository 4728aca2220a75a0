/*
 * bench_ledger - ledger append throughput: blocks of realistic signed
 * transactions (each adds its tx-index row and one world-state write under a
 * random-looking key), appended with durable sync until the ledger holds
 * --txs transactions. Prints tx/s per segment and overall, bytes on disk,
 * and, with --floor (the default), the same writes done with bare LMDB in a
 * second environment, interleaved block by block so both see the same
 * machine load: the ratio ledger/floor is what our code costs on top of
 * what LMDB must write.
 *
 * Transactions and blocks are built (signed, hashed) before each timed
 * append; only ledger_append_block (and the floor's transaction) is timed.
 * Each append's latency is kept, and p50/p99/max per block are printed per
 * segment and overall, so a stall behind a checkpoint shows. The ledger's
 * checkpoint thread runs on while the benchmark builds the next block, as
 * it would while a node waits for the next one; the final figures include
 * ledger_checkpoint (bringing the derived tables up to the tip) as a
 * separate line.
 *
 *   scripts/bench ledger [--txs N] [--block-txs N] [--segment-txs N]
 *                        [--sync durable|none] [--no-floor] [--no-state] [--verify]
 *                        [--verify-threads N] [--dir DIR] [--prebuilt]
 *                        [--result-bytes N]
 *
 * --prebuilt builds every block first (untimed, all in memory), then
 * appends them back to back and times the wall clock of the whole run
 * including ledger_checkpoint at the end: the sustained rate, with the
 * background checkpoints competing for the disk and given no idle time
 * between blocks. The floor then does the same writes in its own phase
 * (not interleaved, so the two never share the disk; sync(2) before each
 * phase, so neither inherits the other's write-back).
 *
 * --no-state leaves out the world-state writes (tx-index rows only), to
 * show what each of the two random-key inserts per transaction costs.
 * --result-bytes N gives every transaction a result of N bytes (1..256)
 * instead of the empty one (OK, 0 bytes: what the node stores until the
 * consent contract computes results), to show what stored results cost.
 * --verify times ledger_verify over the finished ledger (every signature);
 * --verify-threads N does so with N threads (default: one per CPU).
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ledger_internal.h"
#include "ledger_testutil.h"

enum { STATE_VALUE_BYTES = 64, TX_PAD_BYTES = 8 };

typedef struct bench_args {
    uint64_t txs;
    uint64_t block_txs;
    uint64_t segment_txs;
    enum ledger_sync_mode sync;
    bool floor;
    bool state;
    bool verify;
    bool prebuilt;
    uint64_t verify_threads;
    uint64_t result_bytes;
    const char *dir;
} bench_args;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0)
        return -1;
    *out = v;
    return 0;
}

static int args_parse(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){
        .txs = 1200000, .block_txs = 1000, .segment_txs = 100000, .floor = true, .state = true};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--no-floor") == 0) {
            a->floor = false;
        } else if (strcmp(argv[i], "--no-state") == 0) {
            a->state = false;
        } else if (strcmp(argv[i], "--verify") == 0) {
            a->verify = true;
        } else if (strcmp(argv[i], "--prebuilt") == 0) {
            a->prebuilt = true;
        } else if (v == NULL) {
            return -1;
        } else if (strcmp(argv[i], "--txs") == 0) {
            if (parse_u64(v, &a->txs) != 0)
                return -1;
            i++;
        } else if (strcmp(argv[i], "--block-txs") == 0) {
            if (parse_u64(v, &a->block_txs) != 0 || a->block_txs > EHR_BLOCK_TX_COUNT_MAX)
                return -1;
            i++;
        } else if (strcmp(argv[i], "--segment-txs") == 0) {
            if (parse_u64(v, &a->segment_txs) != 0)
                return -1;
            i++;
        } else if (strcmp(argv[i], "--verify-threads") == 0) {
            if (parse_u64(v, &a->verify_threads) != 0 ||
                a->verify_threads > LEDGER_VERIFY_THREADS_MAX)
                return -1;
            a->verify = true;
            i++;
        } else if (strcmp(argv[i], "--sync") == 0) {
            if (strcmp(v, "durable") == 0)
                a->sync = LEDGER_SYNC_DURABLE;
            else if (strcmp(v, "none") == 0)
                a->sync = LEDGER_SYNC_NONE;
            else
                return -1;
            i++;
        } else if (strcmp(argv[i], "--result-bytes") == 0) {
            if (parse_u64(v, &a->result_bytes) != 0 || a->result_bytes > EHR_TX_RESULT_BYTES_MAX)
                return -1;
            i++;
        } else if (strcmp(argv[i], "--dir") == 0) {
            a->dir = v;
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Give every transaction of B a result of BYTES bytes (0: the empty one). */
static void batch_results(tu_batch *b, uint64_t bytes)
{
    for (size_t i = 0; bytes > 0 && i < b->count; i++) {
        memset(b->result_bytes[i], (int)(0x41 + i % 26), (size_t)bytes);
        b->results[i] = (ledger_bytes){b->result_bytes[i], (size_t)bytes};
    }
}

/* The bare-LMDB floor: the same rows, keys and block bytes. */
typedef struct floor_env {
    MDB_env *env;
    MDB_dbi blocks, txs, state;
} floor_env;

#define CHECK_MDB(call)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0)                                                                              \
            ehr_panic("%s: %s", #call, mdb_strerror(rc_));                                         \
    } while (0)

static void floor_open(floor_env *f, const char *dir, enum ledger_sync_mode sync)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        ehr_panic("mkdir %s failed", dir);
    CHECK_MDB(mdb_env_create(&f->env));
    CHECK_MDB(mdb_env_set_maxdbs(f->env, 4));
    CHECK_MDB(mdb_env_set_mapsize(f->env, (size_t)LEDGER_MAP_BYTES_DEFAULT_VALUE));
    CHECK_MDB(
        mdb_env_open(f->env, dir, MDB_NOTLS | (sync == LEDGER_SYNC_NONE ? MDB_NOSYNC : 0), 0600));
    MDB_txn *txn;
    CHECK_MDB(mdb_txn_begin(f->env, NULL, 0, &txn));
    CHECK_MDB(mdb_dbi_open(txn, "blocks", MDB_CREATE, &f->blocks));
    CHECK_MDB(mdb_dbi_open(txn, "txs", MDB_CREATE, &f->txs));
    CHECK_MDB(mdb_dbi_open(txn, "state", MDB_CREATE, &f->state));
    CHECK_MDB(mdb_txn_commit(txn));
}

static const uint8_t (*sort_keys)[EHR_HASH_BYTES];
static int order_cmp(const void *a, const void *b)
{
    return memcmp(sort_keys[*(const uint32_t *)a], sort_keys[*(const uint32_t *)b], 32);
}

/* One block's writes with bare LMDB (sorted inserts, MDB_APPEND for the
 * block), committed durably. */
static void floor_append(floor_env *f, uint64_t height, const uint8_t *block, size_t len,
                         const tu_batch *b, const ledger_block_view *view, uint32_t *order,
                         uint32_t *state_order, size_t state_count)
{
    MDB_txn *txn;
    CHECK_MDB(mdb_txn_begin(f->env, NULL, 0, &txn));
    MDB_cursor *cur;
    CHECK_MDB(mdb_cursor_open(txn, f->txs, &cur));
    for (size_t j = 0; j < b->count; j++) {
        uint32_t i = order[j];
        ledger_tx_location loc = {height, i, view->txs[i].offset, view->txs[i].length};
        uint8_t row[LEDGER__TX_LOCATION_BYTES_MAX];
        MDB_val k = {EHR_HASH_BYTES, b->hashes[i]},
                v = {ledger__tx_location_write(row, &loc, b->results[i]), row};
        CHECK_MDB(mdb_cursor_put(cur, &k, &v, MDB_NOOVERWRITE));
    }
    mdb_cursor_close(cur);
    CHECK_MDB(mdb_cursor_open(txn, f->state, &cur));
    for (size_t j = 0; j < state_count; j++) {
        const ledger_state_write *w = &b->writes[state_order[j]];
        MDB_val k = {w->key_len, (void *)w->key}, v = {w->value_len, (void *)w->value};
        CHECK_MDB(mdb_cursor_put(cur, &k, &v, 0));
    }
    mdb_cursor_close(cur);
    uint8_t key[8];
    ledger__height_key(key, height);
    size_t prefix = ledger__stored_block_prefix_size(len);
    MDB_val k = {sizeof key, key}, v = {prefix + len, NULL};
    CHECK_MDB(mdb_put(txn, f->blocks, &k, &v, MDB_APPEND | MDB_RESERVE));
    memset(v.mv_data, 0, prefix);
    memcpy((uint8_t *)v.mv_data + prefix, block, len);
    CHECK_MDB(mdb_txn_commit(txn));
}

static int double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* p50, p99 and max of LAT[0..N) in ms (sorts LAT). */
static void latency_print(const char *what, double *lat, size_t n)
{
    if (n == 0)
        return;
    qsort(lat, n, sizeof *lat, double_cmp);
    size_t p99 = (size_t)((double)n * 0.99);
    printf("%s append latency per block: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", what,
           1e3 * lat[n / 2], 1e3 * lat[p99 < n ? p99 : n - 1], 1e3 * lat[n - 1]);
}

/* A block built ahead of time, with what its append and the floor need. */
typedef struct prepared {
    tu_batch batch;
    uint8_t *block;
    size_t len;
} prepared;

static void floor_block(floor_env *f, uint64_t height, const prepared *p, bool state,
                        uint32_t *order, uint32_t *state_order);

/*
 * --prebuilt: build COUNT blocks on top of L's tip, then append them back to
 * back (wall clock, latency per block, then ledger_checkpoint), then the
 * floor's phase. Prints its own figures.
 */
static void run_prebuilt(const bench_args *a, ledger *l, floor_env *fl,
                         const ehr_signing_key *proposer, const ehr_signing_key *signer)
{
    size_t count = (size_t)((a->txs + a->block_txs - 1) / a->block_txs);
    prepared *blocks = ehr_calloc(count, sizeof *blocks);
    static uint8_t value[STATE_VALUE_BYTES];
    ledger_tip tip;
    if (ledger_tip_get(l, &tip, NULL) != 0)
        ehr_panic("no tip");
    double b0 = now_s();
    for (size_t i = 0; i < count; i++) {
        prepared *p = &blocks[i];
        tu_batch_make(&p->batch, signer, a->block_txs, TX_PAD_BYTES);
        batch_results(&p->batch, a->result_bytes);
        for (size_t j = 0; j < p->batch.count; j++) {
            p->batch.writes[j].value = value;
            p->batch.writes[j].value_len = sizeof value;
        }
        tu_block_next(&tip, &p->batch, proposer, &p->block, &p->len);
        ledger_block_view view;
        if (ledger_block_parse(p->block, p->len, &view, NULL) != 0)
            ehr_panic("parse");
        tip.height++;
        memcpy(tip.hash, view.hash, EHR_HASH_BYTES);
        tip.time_ms = view.header.time_ms;
        ledger_block_view_release(&view);
    }
    printf("built %zu blocks in %.1f s (untimed)\n", count, now_s() - b0);
    sync(); /* each phase starts with no write-back pending */
    double *lat = ehr_malloc(count * sizeof *lat);
    double start = now_s(), seg_start = start;
    uint64_t done = 0, seg_done = 0;
    for (size_t i = 0; i < count; i++) {
        prepared *p = &blocks[i];
        ledger_append req = {.block = p->block,
                             .block_len = p->len,
                             .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])p->batch.hashes,
                             .writes = p->batch.writes,
                             .write_count = a->state ? p->batch.count : 0,
                             .results = p->batch.results,
                             .result_count = p->batch.count,
                             .applied_index = i + 1};
        double t0 = now_s();
        ehr_diag why;
        if (ledger_append_block(l, &req, &why) != 0)
            ehr_panic("append failed: %s", why.msg);
        double t1 = now_s();
        lat[i] = t1 - t0;
        done += p->batch.count;
        if (done - seg_done >= a->segment_txs || i + 1 == count) {
            ledger_stats st;
            ledger_stats_get(l, &st, NULL);
            printf("ledger txs %8llu..%8llu  %8.0f tx/s wall  overlay %4llu blocks  checkpoint at "
                   "%llu\n",
                   (unsigned long long)seg_done, (unsigned long long)done,
                   (double)(done - seg_done) / (t1 - seg_start),
                   (unsigned long long)st.overlay_blocks, (unsigned long long)st.checkpoint_height);
            fflush(stdout);
            seg_done = done;
            seg_start = t1;
        }
    }
    double appended = now_s();
    ehr_diag why;
    if (ledger_checkpoint(l, &why) != 0)
        ehr_panic("checkpoint failed: %s", why.msg);
    double end = now_s();
    printf("ledger: %.0f tx/s wall clock over the appends (%.1f s), %.0f tx/s including the last "
           "checkpoint to the tip (%.2f s)\n",
           (double)done / (appended - start), appended - start, (double)done / (end - start),
           end - appended);
    latency_print("ledger", lat, count);
    if (a->floor) {
        sync();
        uint32_t *order = ehr_malloc(a->block_txs * sizeof *order);
        uint32_t *state_order = ehr_malloc(a->block_txs * sizeof *state_order);
        double f0 = now_s(), fseg = f0;
        uint64_t fdone = 0, fseg_done = 0;
        for (size_t i = 0; i < count; i++) {
            double t0 = now_s();
            floor_block(fl, i + 1, &blocks[i], a->state, order, state_order);
            lat[i] = now_s() - t0;
            fdone += blocks[i].batch.count;
            if (fdone - fseg_done >= a->segment_txs || i + 1 == count) {
                double t1 = now_s();
                printf("floor  txs %8llu..%8llu  %8.0f tx/s\n", (unsigned long long)fseg_done,
                       (unsigned long long)fdone, (double)(fdone - fseg_done) / (t1 - fseg));
                fseg = t1;
                fseg_done = fdone;
            }
        }
        double f1 = now_s();
        printf("floor: %.0f tx/s; ledger (with its last checkpoint) / floor = %.2f\n",
               (double)fdone / (f1 - f0), (f1 - f0) / (end - start));
        latency_print("floor", lat, count);
        ehr_free(order);
        ehr_free(state_order);
    }
    for (size_t i = 0; i < count; i++) {
        ehr_free(blocks[i].block);
        tu_batch_free(&blocks[i].batch);
    }
    ehr_free(blocks);
    ehr_free(lat);
}

/* The floor's writes for prepared block P at HEIGHT. */
static void floor_block(floor_env *f, uint64_t height, const prepared *p, bool state,
                        uint32_t *order, uint32_t *state_order)
{
    ledger_block_view view;
    if (ledger_block_parse(p->block, p->len, &view, NULL) != 0)
        ehr_panic("parse");
    for (uint32_t i = 0; i < p->batch.count; i++)
        order[i] = i;
    sort_keys = (const uint8_t(*)[EHR_HASH_BYTES])p->batch.hashes;
    qsort(order, p->batch.count, sizeof *order, order_cmp);
    memcpy(state_order, order, p->batch.count * sizeof *order);
    floor_append(f, height, p->block, p->len, &p->batch, &view, order, state_order,
                 state ? p->batch.count : 0);
    ledger_block_view_release(&view);
}

static uint64_t disk_bytes(const char *dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

int main(int argc, char **argv)
{
    bench_args a;
    if (args_parse(argc, argv, &a) != 0) {
        fprintf(stderr, "usage: bench_ledger [--txs N] [--block-txs N] [--segment-txs N] "
                        "[--sync durable|none] [--no-floor] [--no-state] [--verify] "
                        "[--verify-threads N] [--dir DIR] [--prebuilt] [--result-bytes N]\n");
        return 2;
    }
    if (ehr_crypto_init() != 0)
        return 1;
    char *base = a.dir != NULL ? ehr_strdup(a.dir) : tu_tmpdir();
    char ledger_dir[1024], floor_dir[1024];
    snprintf(ledger_dir, sizeof ledger_dir, "%s/ledger", base);
    snprintf(floor_dir, sizeof floor_dir, "%s/floor", base);
    if (mkdir(base, 0700) != 0 && errno != EEXIST)
        ehr_panic("cannot create %s", base);

    ehr_signing_key proposer, signer;
    tu_key(&proposer, 1);
    tu_key(&signer, 2);
    uint8_t *g;
    size_t g_len;
    tu_genesis(&proposer, 1, &g, &g_len);
    ledger *l;
    ledger_options opts = {.sync = a.sync};
    int rc = ledger_open(ledger_dir, &opts, &l, NULL);
    if (rc == 0)
        rc = ledger_genesis_init(l, g, g_len, NULL);
    if (rc != 0)
        ehr_panic("ledger setup in %s: %s", ledger_dir, ehr_strerror(rc));
    floor_env fl = {0};
    if (a.floor)
        floor_open(&fl, floor_dir, a.sync);

    printf("bench_ledger: %llu txs in blocks of %llu, sync %s, results of %llu bytes, dir %s\n",
           (unsigned long long)a.txs, (unsigned long long)a.block_txs,
           a.sync == LEDGER_SYNC_DURABLE ? "durable" : "none", (unsigned long long)a.result_bytes,
           base);
    if (a.prebuilt) {
        run_prebuilt(&a, l, &fl, &proposer, &signer);
        a.txs = 0; /* skip the interleaved loop */
    }
    size_t blocks_max = (size_t)(a.txs / a.block_txs + 2);
    double *lat = ehr_malloc(blocks_max * sizeof *lat);
    double *seg_lat = ehr_malloc(blocks_max * sizeof *seg_lat);
    size_t lat_count = 0, seg_lat_count = 0;
    uint32_t *order = ehr_malloc(a.block_txs * sizeof *order);
    uint32_t *state_order = ehr_malloc(a.block_txs * sizeof *state_order);
    double t_ledger = 0, t_floor = 0, t_check = 0, seg_ledger = 0, seg_floor = 0;
    uint64_t done = 0, seg_start = 0, env_bytes = 0;
    int segment = 0;
    while (done < a.txs) {
        /* Untimed: sign the transactions and build the block. */
        tu_batch b;
        tu_batch_make(&b, &signer, a.block_txs, TX_PAD_BYTES);
        batch_results(&b, a.result_bytes);
        static uint8_t value[STATE_VALUE_BYTES];
        for (size_t i = 0; i < b.count; i++) {
            b.writes[i].value = value;
            b.writes[i].value_len = sizeof value;
            env_bytes += b.envelopes[i].len;
        }
        ledger_tip tip;
        if (ledger_tip_get(l, &tip, NULL) != 0)
            ehr_panic("no tip");
        uint8_t *block;
        size_t len;
        tu_block_next(&tip, &b, &proposer, &block, &len);
        ledger_append req = {.block = block,
                             .block_len = len,
                             .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                             .writes = b.writes,
                             .write_count = a.state ? b.count : 0,
                             .results = b.results,
                             .result_count = b.count,
                             .applied_index = tip.height + 1};
        double t0 = now_s();
        ehr_diag why;
        rc = ledger_append_block(l, &req, &why);
        double t1 = now_s();
        if (rc != 0)
            ehr_panic("append failed: %s", why.msg);
        t_ledger += t1 - t0;
        seg_ledger += t1 - t0;
        lat[lat_count++] = t1 - t0;
        seg_lat[seg_lat_count++] = t1 - t0;

        /* Untimed for throughput: the CPU part of the append's checks
         * (parse, Merkle root, header signature), for the breakdown. */
        ledger_block_view view;
        uint8_t root[EHR_HASH_BYTES];
        double c0 = now_s();
        if (ledger_block_parse(block, len, &view, NULL) != 0 ||
            ledger_block_check(&view, LEDGER_CHECK_HEADER_SIG, NULL, NULL, NULL, NULL) != 0)
            ehr_panic("check");
        ledger_merkle_root((const uint8_t(*)[EHR_HASH_BYTES])b.hashes, b.count, root);
        t_check += now_s() - c0;
        if (memcmp(root, view.header.tx_root, EHR_HASH_BYTES) != 0)
            ehr_panic("root");

        if (a.floor) {
            for (uint32_t i = 0; i < b.count; i++)
                order[i] = state_order[i] = i;
            sort_keys = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes;
            double f0 = now_s();
            qsort(order, b.count, sizeof *order, order_cmp);
            /* State keys are "rec/" + tx hash: the same order. */
            memcpy(state_order, order, b.count * sizeof *order);
            floor_append(&fl, tip.height + 1, block, len, &b, &view, order, state_order,
                         a.state ? b.count : 0);
            double f1 = now_s();
            t_floor += f1 - f0;
            seg_floor += f1 - f0;
        }
        ledger_block_view_release(&view);
        ehr_free(block);
        tu_batch_free(&b);
        done += a.block_txs;
        if (done - seg_start >= a.segment_txs || done >= a.txs) {
            double n = (double)(done - seg_start);
            printf("segment %2d: txs %8llu..%8llu  ledger %8.0f tx/s", segment,
                   (unsigned long long)seg_start, (unsigned long long)done, n / seg_ledger);
            if (a.floor)
                printf("  floor %8.0f tx/s  ratio %.2f", n / seg_floor, seg_floor / seg_ledger);
            qsort(seg_lat, seg_lat_count, sizeof *seg_lat, double_cmp);
            printf("  p50 %.1f p99 %.1f max %.1f ms\n", 1e3 * seg_lat[seg_lat_count / 2],
                   1e3 * seg_lat[(size_t)((double)seg_lat_count * 0.99)],
                   1e3 * seg_lat[seg_lat_count - 1]);
            seg_lat_count = 0;
            fflush(stdout);
            segment++;
            seg_start = done;
            seg_ledger = seg_floor = 0;
        }
    }
    ledger_stats stats;
    ledger_stats_get(l, &stats, NULL);
    if (a.prebuilt) {
        printf("ledger: %llu blocks, %llu tx-index rows, %llu state keys, %.1f MB on disk\n",
               (unsigned long long)stats.blocks, (unsigned long long)stats.tx_index_rows,
               (unsigned long long)stats.state_keys, (double)stats.file_bytes / 1e6);
        if (a.floor)
            printf("floor: %.1f MB on disk\n", (double)disk_bytes(floor_dir) / 1e6);
        goto finish;
    }
    latency_print("ledger", lat, lat_count);
    printf("at the end: checkpoint height %llu, overlay %llu blocks (%.1f MB), %llu checkpoints\n",
           (unsigned long long)stats.checkpoint_height, (unsigned long long)stats.overlay_blocks,
           (double)stats.overlay_bytes / 1e6, (unsigned long long)stats.checkpoints);
    double c0 = now_s();
    ehr_diag why;
    if (ledger_checkpoint(l, &why) != 0)
        ehr_panic("checkpoint failed: %s", why.msg);
    printf("ledger_checkpoint to the tip: %.2f s; with it, ledger %.0f tx/s\n", now_s() - c0,
           (double)done / (t_ledger + now_s() - c0));
    ledger_stats_get(l, &stats, NULL);
    double blocks = (double)done / (double)a.block_txs;
    printf("overall: ledger %.0f tx/s (%.2f ms per block)", (double)done / t_ledger,
           1e3 * t_ledger / blocks);
    if (a.floor)
        printf(", floor %.0f tx/s (%.2f ms per block), ratio %.2f", (double)done / t_floor,
               1e3 * t_floor / blocks, t_floor / t_ledger);
    printf("\n");
    printf("checks (parse + Merkle root + header signature, CPU): %.2f ms per block\n",
           1e3 * t_check / blocks);
    printf("ledger: %llu blocks, %llu tx-index rows, %llu state keys, %.1f MB on disk, "
           "mean envelope %.0f bytes\n",
           (unsigned long long)stats.blocks, (unsigned long long)stats.tx_index_rows,
           (unsigned long long)stats.state_keys, (double)stats.file_bytes / 1e6,
           (double)env_bytes / (double)done);
    if (a.floor)
        printf("floor: %.1f MB on disk\n", (double)disk_bytes(floor_dir) / 1e6);
finish:
    if (a.verify) {
        ledger_verify_report rep;
        double v0 = now_s();
        ledger_verify_options vopts = {.threads = (uint32_t)a.verify_threads};
        rc = ledger_verify(l, &vopts, &rep);
        double v1 = now_s();
        printf("verify (threads %llu, 0 = one per CPU): %s in %.1f s (%.0f tx/s)\n",
               (unsigned long long)a.verify_threads, rep.msg, v1 - v0,
               (double)rep.txs_checked / (v1 - v0));
        if (rc != 0)
            return 1;
    }
    ledger_close(l);
    if (a.floor)
        mdb_env_close(fl.env);
    if (a.dir == NULL) {
        char path[1100];
        const char *files[] = {"ledger/data.mdb",         "ledger/lock.mdb", "ledger/derived.mdb",
                               "ledger/derived.mdb-lock", "floor/data.mdb",  "floor/lock.mdb"};
        for (size_t i = 0; i < EHR_ARRAY_COUNT(files); i++) {
            snprintf(path, sizeof path, "%s/%s", base, files[i]);
            remove(path);
        }
        remove(ledger_dir);
        remove(floor_dir);
        remove(base);
    }
    ehr_free(base);
    ehr_free(g);
    ehr_free(order);
    ehr_free(lat);
    ehr_free(seg_lat);
    ehr_free(state_order);
    return 0;
}
