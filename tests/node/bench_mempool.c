/*
 * bench_mempool - mempool admissions per second (every check, the
 * signature included) against the bare signature-verification floor
 * (ehr_schnorr_verify_bytes on the same transactions) in the same run, with
 * the ratio; and the rate of taking batches and removing them as committed.
 *
 * Usage: bench_mempool [--txs N] [--rounds R] [--pad BYTES]
 * N pre-signed transactions of about BYTES + 150 bytes each; each figure is
 * the best of R rounds, the floor and the mempool alternating round by
 * round so that load from other processes hits both alike. Prints figures
 * only; nothing here judges them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger_testutil.h"
#include "mempool.h"

enum { TXS_MAX = 1000000, ROUNDS_MAX = 100, PAD_MAX = 60000, BATCH_TXS = 1000 };

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int no_ledger(void *ctx, const uint8_t hash[EHR_HASH_BYTES])
{
    (void)ctx;
    (void)hash;
    return 0;
}

static long parse_arg(const char *s, long min, long max, const char *name)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "bench_mempool: %s must be %ld..%ld\n", name, min, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long txs = 20000, rounds = 3, pad = 300;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--txs") == 0)
            txs = parse_arg(argv[++i], 1, TXS_MAX, "--txs");
        else if (i + 1 < argc && strcmp(argv[i], "--rounds") == 0)
            rounds = parse_arg(argv[++i], 1, ROUNDS_MAX, "--rounds");
        else if (i + 1 < argc && strcmp(argv[i], "--pad") == 0)
            pad = parse_arg(argv[++i], 0, PAD_MAX, "--pad");
        else {
            fprintf(stderr, "usage: bench_mempool [--txs N] [--rounds R] [--pad BYTES]\n");
            return 2;
        }
    }
    if (ehr_crypto_init() != 0)
        return 1;
    ehr_signing_key key;
    tu_key(&key, 1);
    const uint64_t now = TU_GENESIS_TIME_MS;
    ledger_bytes *env = ehr_calloc((size_t)txs, sizeof *env);
    uint8_t(*hash)[EHR_HASH_BYTES] = ehr_calloc((size_t)txs, EHR_HASH_BYTES);
    const uint8_t **sig = ehr_calloc((size_t)txs, sizeof *sig);
    uint64_t total_bytes = 0;
    for (long i = 0; i < txs; i++) {
        uint8_t *e;
        size_t len;
        tu_tx(&key, TU_CHAIN_ID, now + 3600000, (size_t)pad, &e, &len, hash[i]);
        env[i] = (ledger_bytes){e, len};
        ledger_tx_view v;
        if (ledger_tx_envelope_parse(e, len, &v, NULL) != 0)
            return 1;
        sig[i] = v.signature;
        total_bytes += len;
    }
    printf("transactions: %ld of %.0f bytes on average, best of %ld rounds\n", txs,
           (double)total_bytes / (double)txs, rounds);

    double best_floor = 1e30, best_admit = 1e30, best_cycle = 1e30;
    ledger_bytes *batch_env = ehr_calloc(BATCH_TXS, sizeof *batch_env);
    uint8_t(*batch_hash)[EHR_HASH_BYTES] = ehr_calloc(BATCH_TXS, EHR_HASH_BYTES);
    for (long r = 0; r < rounds; r++) {
        double t0 = now_seconds();
        int bad = 0;
        for (long i = 0; i < txs; i++)
            bad |= ehr_schnorr_verify_bytes(key.public_key, hash[i], sig[i]);
        double t1 = now_seconds();
        if (bad != 0)
            return 1;
        if (t1 - t0 < best_floor)
            best_floor = t1 - t0;

        mempool pool;
        mempool_config cfg = {.chain_id = TU_CHAIN_ID,
                              .tx_count_max = (uint32_t)txs,
                              .bytes_max = MEMPOOL_BYTES_MAX,
                              .ledger_lookup = no_ledger};
        if (mempool_init(&pool, &cfg) != 0)
            return 1;
        mempool_admit_result res;
        t0 = now_seconds();
        for (long i = 0; i < txs; i++)
            if (mempool_admit(&pool, env[i].data, env[i].len, now, &res) != 0) {
                fprintf(stderr, "admission failed: %s\n", res.reason);
                return 1;
            }
        t1 = now_seconds();
        if (t1 - t0 < best_admit)
            best_admit = t1 - t0;

        /* Leader cycle without signatures: expire, take a batch, commit it. */
        t0 = now_seconds();
        mempool_batch b = {.envelopes = batch_env, .hashes = batch_hash, .capacity = BATCH_TXS};
        while (mempool_count(&pool) > 0) {
            mempool_expire(&pool, now);
            size_t n = mempool_batch_take(&pool, BATCH_TXS, EHR_BLOCK_BYTES_MAX, &b);
            if (n == 0 || mempool_remove_committed(&pool, batch_hash, n) != n)
                return 1;
        }
        t1 = now_seconds();
        if (t1 - t0 < best_cycle)
            best_cycle = t1 - t0;
        mempool_destroy(&pool);
    }
    double floor_rate = (double)txs / best_floor, admit_rate = (double)txs / best_admit;
    printf("signature verification floor: %10.0f tx/s\n", floor_rate);
    printf("mempool admission (all checks): %8.0f tx/s   ratio %.3f of the floor\n", admit_rate,
           admit_rate / floor_rate);
    printf("take batch of %d + remove committed: %.0f tx/s\n", BATCH_TXS, (double)txs / best_cycle);

    for (long i = 0; i < txs; i++)
        ehr_free((void *)env[i].data);
    ehr_free(env);
    ehr_free(hash);
    ehr_free(sig);
    ehr_free(batch_env);
    ehr_free(batch_hash);
    return 0;
}
