/*
 * bench_snapshot - what a ledger snapshot costs: builds a ledger of --txs
 * signed transactions (blocks of 1,000, one state write each, appended
 * without fdatasync to build it quickly), then times, --rounds times each:
 *   - the floor: a plain copy of the ledger's data.mdb (1 MiB reads and
 *     writes, fsync), the least a full copy of the file can cost;
 *   - ledger_snapshot_create (compacting copy, fsync, inspect, rename);
 *   - ledger_snapshot_inspect of the result;
 *   - ledger_snapshot_install of a copy into a second ledger directory.
 * Prints the best of the rounds in MB/s of the snapshot file (create and
 * floor), and the ratio create/floor from the same run (robust to load).
 * The page cache is warm for all of them (the ledger was just written).
 *
 * Not a test: it judges nothing. Usage:
 *   bench_snapshot [--txs N] [--pad N] [--rounds N]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ledger_testutil.h"

enum {
    BLOCK_TXS = 1000,
    TXS_DEFAULT = 100000,
    PAD_DEFAULT = 400,
    ROUNDS_DEFAULT = 3,
    COPY_BUF_BYTES = 1 << 20,
    PATH_BYTES = 4096,
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static _Noreturn void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_snapshot: %s: %s\n", what, why);
    exit(1);
}

static uint64_t arg_u64(const char *s, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0 || v > max)
        die("bad number", s);
    return v;
}

static void path_make(char out[PATH_BYTES], const char *dir, const char *name)
{
    int n = snprintf(out, PATH_BYTES, "%s/%s", dir, name);
    if (n <= 0 || n >= PATH_BYTES)
        die("path too long", dir);
}

/* The floor: copy FROM to TO with 1 MiB reads and writes, then fsync. */
static uint64_t plain_copy(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (in < 0 || out < 0)
        die("open", strerror(errno));
    uint8_t *buf = ehr_malloc(COPY_BUF_BYTES);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(in, buf, COPY_BUF_BYTES);
        if (n < 0)
            die("read", strerror(errno));
        if (n == 0)
            break;
        if (write(out, buf, (size_t)n) != n)
            die("write", strerror(errno));
        total += (uint64_t)n;
    }
    if (fsync(out) != 0)
        die("fsync", strerror(errno));
    close(in);
    close(out);
    ehr_free(buf);
    return total;
}

static void ledger_build(const char *dir, const ehr_signing_key *key, const uint8_t *genesis,
                         size_t genesis_len, uint64_t txs, size_t pad)
{
    ledger *l;
    if (ledger_open(dir, &(ledger_options){.sync = LEDGER_SYNC_NONE}, &l, NULL) != 0 ||
        ledger_genesis_init(l, genesis, genesis_len, NULL) != 0)
        die("building the ledger", "open/genesis");
    for (uint64_t done = 0; done < txs; done += BLOCK_TXS) {
        size_t count = txs - done < BLOCK_TXS ? (size_t)(txs - done) : BLOCK_TXS;
        ledger_tip tip;
        ehr_diag why;
        if (ledger_tip_get(l, &tip, &why) != 0)
            die("tip", why.msg);
        tu_batch b;
        tu_batch_make(&b, key, count, pad);
        uint8_t *block;
        size_t len;
        tu_block_next(&tip, &b, key, &block, &len);
        ledger_append req = {.block = block,
                             .block_len = len,
                             .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                             .writes = b.writes,
                             .write_count = b.count,
                             .results = b.results,
                             .result_count = b.count,
                             .applied_index = tip.height + 1};
        if (ledger_append_block(l, &req, &why) != 0)
            die("append", why.msg);
        ehr_free(block);
        tu_batch_free(&b);
    }
    ledger_close(l);
}

int main(int argc, char **argv)
{
    uint64_t txs = TXS_DEFAULT, pad = PAD_DEFAULT, rounds = ROUNDS_DEFAULT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--txs") == 0 && i + 1 < argc)
            txs = arg_u64(argv[++i], 100000000);
        else if (strcmp(argv[i], "--pad") == 0 && i + 1 < argc)
            pad = arg_u64(argv[++i], 60000);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = arg_u64(argv[++i], 100);
        else
            die("usage", "bench_snapshot [--txs N] [--pad N] [--rounds N]");
    }
    if (ehr_crypto_init() != 0)
        die("crypto", "init");
    ehr_signing_key key;
    tu_key(&key, 77);
    uint8_t *genesis;
    size_t genesis_len;
    tu_genesis(&key, 1, &genesis, &genesis_len);
    char *source = tu_tmpdir(), *receiver = tu_tmpdir(), *stage = tu_tmpdir();
    double t0 = now_s();
    ledger_build(source, &key, genesis, genesis_len, txs, (size_t)pad);
    double build_s = now_s() - t0;
    char data[PATH_BYTES], plain[PATH_BYTES], snap[PATH_BYTES], staged[PATH_BYTES];
    path_make(data, source, "data.mdb");
    path_make(plain, stage, "plain.mdb");
    path_make(snap, stage, "snap.mdb");
    path_make(staged, receiver, "incoming.mdb");
    struct stat st;
    if (stat(data, &st) != 0)
        die("stat", data);
    printf("ledger: %llu txs in %.1f s, data.mdb %.1f MB\n", (unsigned long long)txs, build_s,
           (double)st.st_size / 1e6);

    ledger *l;
    if (ledger_open(source, NULL, &l, NULL) != 0)
        die("open", source);
    ledger_snapshot_info info;
    ledger_chain chain;
    ehr_diag why;
    if (ledger_chain_get(l, &chain, &why) != 0)
        die("chain", why.msg);
    double floor_best = 1e99, create_best = 1e99, inspect_best = 1e99, install_best = 1e99;
    uint64_t plain_bytes = 0;
    for (uint64_t r = 0; r < rounds; r++) {
        t0 = now_s();
        plain_bytes = plain_copy(data, plain);
        double t = now_s() - t0;
        floor_best = t < floor_best ? t : floor_best;
        unlink(plain);

        t0 = now_s();
        if (ledger_snapshot_create(l, snap, &info, &why) != 0)
            die("create", why.msg);
        t = now_s() - t0;
        create_best = t < create_best ? t : create_best;

        ehr_diag diag;
        t0 = now_s();
        if (ledger_snapshot_inspect(snap, &info, &diag) != 0)
            die("inspect", diag.msg);
        t = now_s() - t0;
        inspect_best = t < inspect_best ? t : inspect_best;

        /* Install into a fresh receiver with its own genesis ledger. */
        ledger *rl;
        if (ledger_open(receiver, NULL, &rl, NULL) != 0)
            die("open", receiver);
        ledger_chain rc;
        if (ledger_chain_get(rl, &rc, NULL) == EHR_ENOTFOUND &&
            ledger_genesis_init(rl, genesis, genesis_len, &why) != 0)
            die("genesis", why.msg);
        ledger_close(rl);
        if (rename(snap, staged) != 0)
            die("rename", strerror(errno));
        uint8_t hs[29] = {1}, meta[40] = {2}, boundary[30] = {3};
        ledger_raft_batch reset = {.compact_index = info.tip.applied_index + 1,
                                   .boundary = {boundary, sizeof boundary},
                                   .hard_state = {hs, sizeof hs},
                                   .snapshot_meta = {meta, sizeof meta}};
        ledger_snapshot_expect expect = {.chain_id = chain.chain_id,
                                         .applied_index = info.tip.applied_index};
        memcpy(expect.genesis_hash, chain.genesis_hash, EHR_HASH_BYTES);
        t0 = now_s();
        if (ledger_snapshot_install(receiver, staged, &reset, &expect, NULL, &diag) != 0)
            die("install", diag.msg);
        t = now_s() - t0;
        install_best = t < install_best ? t : install_best;
    }
    ledger_close(l);
    double mb = (double)info.file_bytes / 1e6;
    printf("snapshot file: %.1f MB (data.mdb %.1f MB), tip %llu, %llu txs\n", mb,
           (double)plain_bytes / 1e6, (unsigned long long)info.tip.height,
           (unsigned long long)info.tip.tx_count);
    printf("floor (plain copy of data.mdb + fsync): %.3f s, %.0f MB/s\n", floor_best,
           (double)plain_bytes / 1e6 / floor_best);
    printf("ledger_snapshot_create: %.3f s, %.0f MB/s of snapshot; time / floor's: %.2f\n",
           create_best, mb / create_best, create_best / floor_best);
    printf("ledger_snapshot_inspect: %.2f ms\n", inspect_best * 1e3);
    printf("ledger_snapshot_install: %.3f s (best of %llu)\n", install_best,
           (unsigned long long)rounds);
    tu_rmdir(stage);
    tu_rmdir(receiver);
    tu_rmdir(source);
    ehr_free(genesis);
    return 0;
}
