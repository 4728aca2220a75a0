/*
 * bench_raftlog - durable Raft log writes through ledger_raft_write: batches
 * of 1, 16 and 256 entries of 256 bytes, each batch with a hard state, one
 * fdatasync'd LMDB commit per batch. Prints writes/s and entries/s, and the
 * floor in the same run: a bare LMDB environment committing one 256-byte
 * put per transaction with the same sync mode (so the ratio holds under
 * load).
 *
 * Not a test: it judges nothing. Usage:
 *   bench_raftlog [--writes N] [--dir DIR]
 */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger_testutil.h"

enum { ENTRY_BYTES = 256, BATCH_MAX = 256, WRITES_DEFAULT = 400, WRITES_MAX = 1000000 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_raftlog: %s: %s\n", what, ehr_strerror(rc));
    exit(1);
}

/* WRITES durable batches of BATCH entries; returns seconds. */
static double run_batches(size_t batch, long writes)
{
    char *dir = tu_tmpdir();
    ledger *l;
    int rc = ledger_open(dir, NULL, &l, NULL);
    if (rc != 0)
        die("open", rc);
    static uint8_t data[BATCH_MAX][ENTRY_BYTES];
    ledger_bytes e[BATCH_MAX];
    for (size_t i = 0; i < batch; i++) {
        memset(data[i], (int)i, ENTRY_BYTES);
        e[i] = (ledger_bytes){data[i], ENTRY_BYTES};
    }
    uint8_t hs[29] = {1};
    uint64_t next = 1;
    double t0 = now_s();
    for (long w = 0; w < writes; w++) {
        ledger_raft_batch b = {.append_index = next,
                               .entries = e,
                               .entry_count = batch,
                               .hard_state = {hs, sizeof hs}};
        ehr_diag why;
        rc = ledger_raft_write(l, &b, &why);
        if (rc != 0)
            die(why.msg, rc);
        next += batch;
    }
    double t = now_s() - t0;
    ledger_close(l);
    tu_rmdir(dir);
    return t;
}

/* The floor: WRITES bare LMDB commits of one 256-byte put each. */
static double run_floor(long writes)
{
    char *dir = tu_tmpdir();
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    if (mdb_env_create(&env) != 0 || mdb_env_set_mapsize(env, 1ull << 30) != 0 ||
        mdb_env_open(env, dir, 0, 0600) != 0)
        die("floor env", EHR_EINVAL);
    if (mdb_txn_begin(env, NULL, 0, &txn) != 0 || mdb_dbi_open(txn, NULL, 0, &dbi) != 0 ||
        mdb_txn_commit(txn) != 0)
        die("floor db", EHR_EINVAL);
    uint8_t value[ENTRY_BYTES] = {0};
    double t0 = now_s();
    for (long w = 0; w < writes; w++) {
        uint8_t key[8];
        uint64_t k = (uint64_t)w;
        for (int i = 7; i >= 0; i--, k >>= 8)
            key[i] = (uint8_t)k;
        MDB_val kv = {sizeof key, key}, vv = {sizeof value, value};
        if (mdb_txn_begin(env, NULL, 0, &txn) != 0 ||
            mdb_put(txn, dbi, &kv, &vv, MDB_APPEND) != 0 || mdb_txn_commit(txn) != 0)
            die("floor put", EHR_EINVAL);
    }
    double t = now_s() - t0;
    mdb_env_close(env);
    tu_rmdir(dir);
    return t;
}

int main(int argc, char **argv)
{
    long writes = WRITES_DEFAULT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--writes") == 0 && i + 1 < argc) {
            char *end;
            writes = strtol(argv[++i], &end, 10);
            if (*end != '\0' || writes < 1 || writes > WRITES_MAX) {
                fprintf(stderr, "bench_raftlog: --writes takes 1..%d\n", WRITES_MAX);
                return 2;
            }
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            /* tu_tmpdir makes its directories under $TMPDIR. */
            if (setenv("TMPDIR", argv[++i], 1) != 0)
                return 2;
        } else {
            fprintf(stderr, "usage: bench_raftlog [--writes N] [--dir DIR]\n");
            return 2;
        }
    }
    double floor_s = run_floor(writes);
    printf("floor: bare LMDB commit of one 256 B put, durable: %.1f us/commit, %.0f commits/s\n",
           floor_s / (double)writes * 1e6, (double)writes / floor_s);
    const size_t batches[] = {1, 16, 256};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(batches); i++) {
        double t = run_batches(batches[i], writes);
        printf("batch %3zu x %d B + hard state, durable: %.1f us/write, %.0f writes/s, "
               "%.0f entries/s, %.2fx the floor's time per commit\n",
               batches[i], ENTRY_BYTES, t / (double)writes * 1e6, (double)writes / t,
               (double)writes * (double)batches[i] / t, t / floor_s);
    }
    return 0;
}
