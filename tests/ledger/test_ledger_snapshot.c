/*
 * Tests of ledger snapshots (ledger_snapshot_*): create and inspect, install
 * into another node's ledger with its own Raft hard state and compare the
 * result with the source (blocks, tx index, world state, tip, applied
 * index, Raft records), refusals that change nothing in the receiver's
 * directory, damaged files, the limits at their edges, a copy taken by a
 * thread while the owner appends (a consistent prefix), the lock against an
 * open ledger, a stale lock file, and a crash test (a child killed with
 * SIGKILL at each step of an install and at random moments).
 *
 * LMDB and fork: the parent never has a ledger open while it forks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "ehr/v1/ledger.pb-c.h"
#include "ledger_internal.h"
#include "ledger_testutil.h"

#define BYTES(s) ((ledger_bytes){(const uint8_t *)(s), sizeof(s) - 1})

enum {
    SOURCE_BLOCKS = 6,
    TXS_PER_BLOCK = 20,
    /* The source has applied beyond its last block (a membership change). */
    SOURCE_APPLIED = SOURCE_BLOCKS + 2,
    /* Raft entries the source holds, some not applied yet. */
    SOURCE_RAFT_LAST = SOURCE_APPLIED + 3,
    RECEIVER_RAFT_LAST = 2,
    PATH_BYTES = LEDGER_SNAPSHOT_PATH_BYTES_MAX + 64,
};

static const ledger_options fast = {.sync = LEDGER_SYNC_NONE};

/* ---- files ---- */

static void path_make(char out[PATH_BYTES], const char *dir, const char *name)
{
    int n = snprintf(out, PATH_BYTES, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH_BYTES);
}

static uint8_t *file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *buf = ehr_malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void file_write(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void file_copy(const char *from, const char *to)
{
    size_t len;
    uint8_t *buf = file_read(from, &len);
    file_write(to, buf, len);
    ehr_free(buf);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A digest of DIR: its sorted file names and the bytes of data.mdb. */
typedef struct digest {
    uint8_t hash[32];
} digest;

static digest dir_digest(const char *dir)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        crypto_generichash_update(&st, (const uint8_t *)names[i]->d_name,
                                  strlen(names[i]->d_name) + 1);
        free(names[i]);
    }
    free(names);
    char data[PATH_BYTES];
    path_make(data, dir, "data.mdb");
    size_t len;
    uint8_t *buf = file_read(data, &len);
    crypto_generichash_update(&st, buf, len);
    ehr_free(buf);
    digest d;
    crypto_generichash_final(&st, d.hash, sizeof d.hash);
    return d;
}

/* ---- the two nodes ---- */

typedef struct fixture {
    ehr_signing_key key;
    uint8_t *genesis;
    size_t genesis_len;
    char *source_dir;   /* the sender's ledger */
    char *receiver_dir; /* the receiver's ledger */
    char *stage_dir;    /* where snapshots are written and staged */
    char snapshot[PATH_BYTES];
    ledger_snapshot_info info; /* what ledger_snapshot_create reported */
    ledger_snapshot_expect expect;
} fixture;

/* Entry INDEX of a test log: a few recognisable bytes. */
static ledger_bytes raft_entry(uint8_t buf[16], uint64_t index, char who)
{
    int n = snprintf((char *)buf, 16, "%c-entry-%llu", who, (unsigned long long)index);
    assert_true(n > 0 && n < 16);
    return (ledger_bytes){buf, (size_t)n};
}

static void raft_append(ledger *l, uint64_t lo, uint64_t hi, char who, ledger_bytes hard_state)
{
    for (uint64_t i = lo; i <= hi; i++) {
        uint8_t buf[16];
        ledger_bytes e = raft_entry(buf, i, who);
        ledger_raft_batch b = {.append_index = i, .entries = &e, .entry_count = 1};
        if (i == hi)
            b.hard_state = hard_state;
        assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    }
}

/* Append a block of COUNT fresh transactions, with varied results, applied
 * at APPLIED (0: the current applied index + 1). Returns
 * ledger_append_block's result. */
static int block_append(ledger *l, const ehr_signing_key *key, size_t count, uint64_t applied)
{
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, key, count, 16);
    tu_batch_results(&b, (uint32_t)tip.height);
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
                         .applied_index = applied != 0 ? applied : tip.applied_index + 1};
    int rc = ledger_append_block(l, &req, NULL);
    ehr_free(block);
    tu_batch_free(&b);
    return rc;
}

static void ledger_make(const char *dir, const fixture *f)
{
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(ledger_genesis_init(l, f->genesis, f->genesis_len, NULL), 0);
    ledger_close(l);
}

static int setup(void **state)
{
    fixture *f = ehr_calloc(1, sizeof *f);
    tu_key(&f->key, 400);
    tu_genesis(&f->key, 1, &f->genesis, &f->genesis_len);
    f->source_dir = tu_tmpdir();
    f->receiver_dir = tu_tmpdir();
    f->stage_dir = tu_tmpdir();

    ledger_make(f->source_dir, f);
    ledger *l;
    assert_int_equal(ledger_open(f->source_dir, &fast, &l, NULL), 0);
    for (int i = 0; i < SOURCE_BLOCKS; i++)
        assert_int_equal(block_append(l, &f->key, TXS_PER_BLOCK, 0), 0);
    assert_int_equal(ledger_applied_index_set(l, SOURCE_APPLIED, NULL), 0);
    raft_append(l, 1, SOURCE_RAFT_LAST, 's', BYTES("source-hard-state"));
    ledger_raft_batch meta = {.snapshot_meta = BYTES("source-snapshot-meta")};
    assert_int_equal(ledger_raft_write(l, &meta, NULL), 0);
    path_make(f->snapshot, f->stage_dir, "snap.mdb");
    assert_int_equal(ledger_snapshot_create(l, f->snapshot, &f->info, NULL), 0);
    ledger_chain chain;
    assert_int_equal(ledger_chain_get(l, &chain, NULL), 0);
    ledger_close(l);

    ledger_make(f->receiver_dir, f);
    assert_int_equal(ledger_open(f->receiver_dir, &fast, &l, NULL), 0);
    raft_append(l, 1, RECEIVER_RAFT_LAST, 'r', BYTES("receiver-hard-state-term-9"));
    ledger_close(l);

    f->expect.chain_id = TU_CHAIN_ID;
    memcpy(f->expect.genesis_hash, chain.genesis_hash, EHR_HASH_BYTES);
    f->expect.applied_index = SOURCE_APPLIED;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rmdir(f->source_dir);
    tu_rmdir(f->receiver_dir);
    tu_rmdir(f->stage_dir);
    ehr_free(f->genesis);
    ehr_free(f);
    return 0;
}

/* The Raft reset a receiver passes for the fixture's snapshot. */
static ledger_raft_batch reset_for(uint64_t index)
{
    return (ledger_raft_batch){.compact_index = index + 1,
                               .boundary = BYTES("boundary-at-snapshot"),
                               .snapshot_meta = BYTES("receiver-snapshot-meta")};
}

/* Copy the fixture's snapshot to a staging file NAME in the stage dir. */
static void stage(const fixture *f, const char *name, char out[PATH_BYTES])
{
    path_make(out, f->stage_dir, name);
    file_copy(f->snapshot, out);
}

/* ---- comparing two ledgers ---- */

static int state_digest_fn(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                           size_t value_len)
{
    crypto_generichash_state *st = ctx;
    uint64_t lens[2] = {key_len, value_len};
    crypto_generichash_update(st, (const uint8_t *)lens, sizeof lens);
    crypto_generichash_update(st, key, key_len);
    crypto_generichash_update(st, value, value_len);
    return 0;
}

/* A digest of the whole world state (one scan page holds it); *COUNT keys. */
static digest state_digest(ledger *l, uint64_t *count)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    long n =
        ledger_state_scan(l, NULL, 0, NULL, 0, LEDGER_SCAN_COUNT_MAX, state_digest_fn, &st, NULL);
    assert_true(n > 0 && n < LEDGER_SCAN_COUNT_MAX);
    *count = (uint64_t)n;
    digest d;
    crypto_generichash_final(&st, d.hash, sizeof d.hash);
    return d;
}

/* A and B hold the same chain: tip, blocks, tx index rows, world state. */
static void ledgers_expect_equal(ledger *a, ledger *b)
{
    ledger_tip ta, tb;
    assert_int_equal(ledger_tip_get(a, &ta, NULL), 0);
    assert_int_equal(ledger_tip_get(b, &tb, NULL), 0);
    assert_int_equal(ta.height, tb.height);
    assert_memory_equal(ta.hash, tb.hash, EHR_HASH_BYTES);
    assert_int_equal(ta.applied_index, tb.applied_index);
    assert_int_equal(ta.tx_count, tb.tx_count);
    assert_int_equal(ta.time_ms, tb.time_ms);
    uint64_t txs = 0, results_seen = 0;
    for (uint64_t h = 0; h <= ta.height; h++) {
        uint8_t *ba, *bb;
        size_t la, lb;
        assert_int_equal(ledger_block_get(a, h, &ba, &la, NULL), 0);
        assert_int_equal(ledger_block_get(b, h, &bb, &lb, NULL), 0);
        assert_int_equal(la, lb);
        assert_memory_equal(ba, bb, la);
        ledger_block_view view;
        assert_int_equal(ledger_block_parse(ba, la, &view, NULL), 0);
        uint32_t n = view.header.tx_count;
        uint8_t(*hashes)[EHR_HASH_BYTES] = ehr_calloc(n + 1, EHR_HASH_BYTES);
        assert_int_equal(ledger_block_check(&view, LEDGER_CHECK_MERKLE, NULL, hashes, NULL, NULL),
                         0);
        for (uint32_t i = 0; i < n; i++) {
            ledger_tx_location xa, xb;
            uint8_t *ea, *eb, *ra, *rb;
            size_t ela, elb, rla, rlb;
            assert_int_equal(ledger_tx_get(a, hashes[i], &xa, &ea, &ela, &ra, &rla, NULL), 0);
            assert_int_equal(ledger_tx_get(b, hashes[i], &xb, &eb, &elb, &rb, &rlb, NULL), 0);
            assert_int_equal(xa.height, xb.height);
            assert_int_equal(xa.index, xb.index);
            assert_int_equal(xa.offset, xb.offset);
            assert_int_equal(xa.length, xb.length);
            assert_int_equal(ela, elb);
            assert_memory_equal(ea, eb, ela);
            /* The results came across too (the receiver rebuilt its tx
             * index from the write log the snapshot carries). */
            assert_int_equal(rla, rlb);
            if (rla > 0)
                assert_memory_equal(ra, rb, rla);
            results_seen += rla > 0;
            ehr_free(ea);
            ehr_free(eb);
            ehr_free(ra);
            ehr_free(rb);
        }
        txs += n;
        ehr_free(hashes);
        ledger_block_view_release(&view);
        ehr_free(ba);
        ehr_free(bb);
    }
    assert_int_equal(txs, ta.tx_count);
    assert_true(txs == 0 || results_seen > 0); /* not only empty ones */
    uint64_t ca, cb;
    digest da = state_digest(a, &ca), db = state_digest(b, &cb);
    assert_int_equal(ca, cb);
    assert_true(ca > 0);
    assert_memory_equal(da.hash, db.hash, sizeof da.hash);
    ledger_stats sa, sb;
    assert_int_equal(ledger_stats_get(a, &sa, NULL), 0);
    assert_int_equal(ledger_stats_get(b, &sb, NULL), 0);
    assert_int_equal(sa.tx_index_rows, sb.tx_index_rows);
    assert_int_equal(sa.state_keys, sb.state_keys);
}

static void meta_expect(int (*get)(ledger *, uint8_t *, size_t, size_t *, ehr_diag *), ledger *l,
                        ledger_bytes want)
{
    uint8_t buf[LEDGER_RAFT_META_BYTES_MAX];
    size_t len;
    assert_int_equal(get(l, buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, want.len);
    assert_memory_equal(buf, want.data, len);
}

static void verify_expect(ledger *l)
{
    ledger_verify_report rep;
    int rc = ledger_verify(l, &(ledger_verify_options){.threads = 1}, &rep);
    if (rc != 0)
        fail_msg("verify: %s", rep.msg);
}

/* What every installed ledger must hold: the source's chain, an empty log
 * after the snapshot with the boundary and meta, hard state HARD_STATE. */
static void installed_expect(const fixture *f, ledger_bytes hard_state)
{
    ledger *src, *got;
    assert_int_equal(ledger_open(f->source_dir, &(ledger_options){.read_only = true}, &src, NULL),
                     0);
    assert_int_equal(ledger_open(f->receiver_dir, &fast, &got, NULL), 0);
    ledgers_expect_equal(src, got);
    uint64_t first, last;
    assert_int_equal(ledger_raft_bounds(got, &first, &last, NULL), 0);
    assert_int_equal(first, SOURCE_APPLIED + 1);
    assert_int_equal(last, SOURCE_APPLIED);
    meta_expect(ledger_raft_hard_state_get, got, hard_state);
    meta_expect(ledger_raft_boundary_get, got, BYTES("boundary-at-snapshot"));
    meta_expect(ledger_raft_snapshot_meta_get, got, BYTES("receiver-snapshot-meta"));
    verify_expect(got);
    ledger_close(src);
    ledger_close(got);
}

/* ---- tests ---- */

static void test_create_reports_what_the_copy_holds_and_inspect_agrees(void **state)
{
    fixture *f = *state;
    ledger *l;
    assert_int_equal(ledger_open(f->source_dir, &(ledger_options){.read_only = true}, &l, NULL), 0);
    ledger_tip tip;
    ledger_chain chain;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    assert_int_equal(ledger_chain_get(l, &chain, NULL), 0);
    ledger_close(l);
    assert_int_equal(f->info.tip.height, SOURCE_BLOCKS);
    assert_int_equal(f->info.tip.applied_index, SOURCE_APPLIED);
    assert_memory_equal(&f->info.tip, &tip, sizeof tip);
    assert_memory_equal(&f->info.chain, &chain, sizeof chain);
    struct stat st;
    assert_int_equal(stat(f->snapshot, &st), 0);
    assert_int_equal(f->info.file_bytes, (uint64_t)st.st_size);

    ledger_snapshot_info info;
    ehr_diag diag;
    assert_int_equal(ledger_snapshot_inspect(f->snapshot, &info, &diag), 0);
    assert_memory_equal(&info, &f->info, sizeof info);
    /* Only the snapshot is left in the directory: no temporary, no lock. */
    struct dirent **names;
    int n = scandir(f->stage_dir, &names, NULL, alphasort);
    assert_int_equal(n, 3);
    assert_string_equal(names[2]->d_name, "snap.mdb");
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void test_create_replaces_an_older_snapshot_whole(void **state)
{
    fixture *f = *state;
    ledger *l;
    assert_int_equal(ledger_open(f->source_dir, &fast, &l, NULL), 0);
    assert_int_equal(block_append(l, &f->key, TXS_PER_BLOCK, 0), 0);
    ledger_snapshot_info info;
    char path[PATH_BYTES];
    path_make(path, f->stage_dir, "again.mdb");
    file_copy(f->snapshot, path);
    assert_int_equal(ledger_snapshot_create(l, path, &info, NULL), 0);
    ledger_close(l);
    assert_int_equal(info.tip.height, SOURCE_BLOCKS + 1);
    ledger_snapshot_info again;
    assert_int_equal(ledger_snapshot_inspect(path, &again, NULL), 0);
    assert_memory_equal(&again, &info, sizeof info);
    unlink(path);
}

static void test_install_replaces_the_ledger_and_keeps_the_receivers_hard_state(void **state)
{
    fixture *f = *state;
    char staged[PATH_BYTES];
    stage(f, "incoming.mdb", staged);
    ledger_raft_batch reset = reset_for(SOURCE_APPLIED);
    ledger_snapshot_info info;
    ehr_diag diag;
    int rc = ledger_snapshot_install(f->receiver_dir, staged, &reset, &f->expect, &info, &diag);
    if (rc != 0)
        fail_msg("install: %s", diag.msg);
    assert_false(file_exists(staged));
    assert_memory_equal(&info.tip, &f->info.tip, sizeof info.tip);
    assert_memory_equal(&info.chain, &f->info.chain, sizeof info.chain);
    /* No hard state in the reset: the receiver's own is carried over. */
    installed_expect(f, BYTES("receiver-hard-state-term-9"));

    /* The installed ledger takes new blocks and Raft writes. */
    ledger *l;
    assert_int_equal(ledger_open(f->receiver_dir, &fast, &l, NULL), 0);
    raft_append(l, SOURCE_APPLIED + 1, SOURCE_APPLIED + 2, 'r', BYTES("hs-after"));
    assert_int_equal(block_append(l, &f->key, TXS_PER_BLOCK, 0), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    assert_int_equal(tip.height, SOURCE_BLOCKS + 1);
    assert_int_equal(tip.applied_index, SOURCE_APPLIED + 1);
    verify_expect(l);
    ledger_close(l);
}

static void test_install_writes_the_given_hard_state_and_entries(void **state)
{
    fixture *f = *state;
    char staged[PATH_BYTES];
    stage(f, "incoming.mdb", staged);
    ledger_raft_batch reset = reset_for(SOURCE_APPLIED);
    reset.hard_state = BYTES("receiver-hard-state-term-10");
    uint8_t b1[16], b2[16];
    ledger_bytes entries[2] = {raft_entry(b1, SOURCE_APPLIED + 1, 'n'),
                               raft_entry(b2, SOURCE_APPLIED + 2, 'n')};
    reset.append_index = SOURCE_APPLIED + 1;
    reset.entries = entries;
    reset.entry_count = 2;
    ehr_diag diag;
    int rc = ledger_snapshot_install(f->receiver_dir, staged, &reset, &f->expect, NULL, &diag);
    if (rc != 0)
        fail_msg("install: %s", diag.msg);
    ledger *l;
    assert_int_equal(ledger_open(f->receiver_dir, &fast, &l, NULL), 0);
    uint64_t first, last;
    assert_int_equal(ledger_raft_bounds(l, &first, &last, NULL), 0);
    assert_int_equal(first, SOURCE_APPLIED + 1);
    assert_int_equal(last, SOURCE_APPLIED + 2);
    for (int i = 0; i < 2; i++) {
        uint8_t got[16];
        size_t len;
        assert_int_equal(
            ledger_raft_entry_get(l, SOURCE_APPLIED + 1 + (uint64_t)i, got, sizeof got, &len, NULL),
            0);
        assert_int_equal(len, entries[i].len);
        assert_memory_equal(got, entries[i].data, len);
    }
    meta_expect(ledger_raft_hard_state_get, l, BYTES("receiver-hard-state-term-10"));
    meta_expect(ledger_raft_boundary_get, l, BYTES("boundary-at-snapshot"));
    ledger_close(l);
}

static void test_install_into_a_directory_without_a_ledger(void **state)
{
    fixture *f = *state;
    char *dir = tu_tmpdir();
    char staged[PATH_BYTES];
    stage(f, "incoming.mdb", staged);
    ledger_raft_batch reset = reset_for(SOURCE_APPLIED);
    reset.hard_state = BYTES("new-node-hard-state");
    ehr_diag diag;
    int rc = ledger_snapshot_install(dir, staged, &reset, &f->expect, NULL, &diag);
    if (rc != 0)
        fail_msg("install: %s", diag.msg);
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    assert_memory_equal(&tip, &f->info.tip, sizeof tip);
    meta_expect(ledger_raft_hard_state_get, l, BYTES("new-node-hard-state"));
    verify_expect(l);
    ledger_close(l);
    tu_rmdir(dir);
}

/* ---- damaged files ---- */

static void flip_byte_inside(const char *path, const uint8_t *needle, size_t needle_len)
{
    size_t len;
    uint8_t *buf = file_read(path, &len);
    uint8_t *at = memmem(buf, len, needle, needle_len);
    assert_non_null(at);
    at[needle_len / 2] ^= 0x01;
    file_write(path, buf, len);
    ehr_free(buf);
}

static void truncate_to(const char *path, off_t size)
{
    assert_int_equal(truncate(path, size), 0);
}

static void inspect_refuses(const char *path, int want)
{
    ledger_snapshot_info info;
    memset(&info, 0x77, sizeof info);
    ehr_diag diag = {{0}};
    int rc = ledger_snapshot_inspect(path, &info, &diag);
    if (rc != want)
        fail_msg("inspect %s: %s (%d), want %s: %s", path, ehr_errname(rc), rc, ehr_errname(want),
                 diag.msg);
    assert_true(strlen(diag.msg) > 0);
    printf("# refused (%s): %s\n", ehr_errname(rc), diag.msg);
    /* Nothing half-filled is left in INFO. */
    ledger_snapshot_info zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&info, &zero, sizeof info);
}

/* The tip block's bytes in the source ledger. */
static uint8_t *tip_block(const fixture *f, size_t *len)
{
    ledger *l;
    assert_int_equal(ledger_open(f->source_dir, &(ledger_options){.read_only = true}, &l, NULL), 0);
    uint8_t *block;
    assert_int_equal(ledger_block_get(l, f->info.tip.height, &block, len, NULL), 0);
    ledger_close(l);
    return block;
}

static void format_version_bump(uint8_t *value, size_t *len, void *ctx)
{
    Ehr__V1__ChainInfo *c = ehr__v1__chain_info__unpack(NULL, *len, value);
    assert_non_null(c);
    c->format_version = LEDGER__FORMAT_VERSION + 1;
    *len = ehr__v1__chain_info__pack(c, value);
    ehr__v1__chain_info__free_unpacked(c, NULL);
}

static void test_inspect_refuses_damaged_and_foreign_files(void **state)
{
    fixture *f = *state;
    char path[PATH_BYTES];

    path_make(path, f->stage_dir, "absent.mdb");
    inspect_refuses(path, EHR_ENOTFOUND);
    inspect_refuses(f->stage_dir, EHR_EINVAL); /* a directory */
    inspect_refuses("", EHR_EINVAL);

    stage(f, "empty.mdb", path);
    truncate_to(path, 0);
    inspect_refuses(path, EHR_ETRUNCATED);

    stage(f, "short.mdb", path);
    truncate_to(path, 100);
    inspect_refuses(path, EHR_ETRUNCATED);

    stage(f, "half.mdb", path);
    truncate_to(path, (off_t)f->info.file_bytes / 2);
    inspect_refuses(path, EHR_ETRUNCATED);

    /* Garbage: random bytes the size of the snapshot. */
    path_make(path, f->stage_dir, "garbage.mdb");
    uint8_t *junk = ehr_malloc(f->info.file_bytes);
    randombytes_buf(junk, f->info.file_bytes);
    file_write(path, junk, f->info.file_bytes);
    ehr_free(junk);
    inspect_refuses(path, EHR_EINVAL);

    /* Another LMDB data version: the version word of meta page 0. */
    stage(f, "version.mdb", path);
    {
        size_t len;
        uint8_t *buf = file_read(path, &len);
        buf[16 + 4] ^= 0x02;
        file_write(path, buf, len);
        ehr_free(buf);
    }
    inspect_refuses(path, EHR_EVERSION);

    /* A flipped byte inside the tip block: its stored checksum fails. */
    stage(f, "flipped.mdb", path);
    size_t block_len;
    uint8_t *block = tip_block(f, &block_len);
    flip_byte_inside(path, block, block_len);
    ehr_free(block);
    inspect_refuses(path, EHR_ECORRUPT);

    /* Another ledger format version, and a ledger without a chain, and a
     * ledger that has applied nothing: made as a ledger directory first. */
    char *dir = tu_tmpdir();
    char data[PATH_BYTES];
    path_make(data, dir, "data.mdb");
    file_copy(f->snapshot, data);
    const char chain_key[] = LEDGER__META_CHAIN;
    assert_int_equal(
        tu_raw_edit(dir, "meta", chain_key, sizeof chain_key - 1, format_version_bump, NULL), 0);
    inspect_refuses(data, EHR_EVERSION);
    tu_rmdir(dir);

    dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    ledger_close(l);
    path_make(data, dir, "data.mdb");
    inspect_refuses(data, EHR_ENOTFOUND);
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(ledger_genesis_init(l, f->genesis, f->genesis_len, NULL), 0);
    /* Create refuses it too, and leaves no file behind. */
    char snap[PATH_BYTES];
    path_make(snap, f->stage_dir, "nothing-applied.mdb");
    ledger_snapshot_info info;
    ehr_diag why;
    assert_int_equal(ledger_snapshot_create(l, snap, &info, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "applied index 0"));
    assert_false(file_exists(snap));
    ledger_close(l);
    inspect_refuses(data, EHR_EINVAL);
    tu_rmdir(dir);
}

/* ---- refusals at install ---- */

typedef struct refusal {
    const char *what;
    int want;
} refusal;

static void install_refused(const fixture *f, const char *staged, const ledger_raft_batch *reset,
                            const ledger_snapshot_expect *expect, int want, const char *what)
{
    digest before = dir_digest(f->receiver_dir);
    ehr_diag diag = {{0}};
    ledger_snapshot_info info;
    int rc = ledger_snapshot_install(f->receiver_dir, staged, reset, expect, &info, &diag);
    if (rc != want)
        fail_msg("%s: %s (%d), want %s: %s", what, ehr_errname(rc), rc, ehr_errname(want),
                 diag.msg);
    assert_true(strlen(diag.msg) > 0);
    printf("# %s: %s\n", what, diag.msg);
    digest after = dir_digest(f->receiver_dir);
    assert_memory_equal(before.hash, after.hash, sizeof before.hash);
}

static void test_refused_installs_change_nothing_in_the_receiver(void **state)
{
    fixture *f = *state;
    char staged[PATH_BYTES];
    ledger_raft_batch reset = reset_for(SOURCE_APPLIED);

    /* Another chain: the expected genesis differs. */
    stage(f, "incoming.mdb", staged);
    ledger_snapshot_expect other = f->expect;
    other.genesis_hash[0] ^= 1;
    install_refused(f, staged, &reset, &other, EHR_ECHAIN, "another genesis");
    other = f->expect;
    other.chain_id = "ehr-other";
    install_refused(f, staged, &reset, &other, EHR_ECHAIN, "another chain id");

    /* The wrong index (and the reset that goes with it). */
    other = f->expect;
    other.applied_index = SOURCE_APPLIED + 1;
    ledger_raft_batch reset_next = reset_for(SOURCE_APPLIED + 1);
    install_refused(f, staged, &reset_next, &other, EHR_EINVAL, "wrong index");

    /* Malformed resets. */
    ledger_raft_batch bad = reset;
    bad.compact_index = SOURCE_APPLIED;
    install_refused(f, staged, &bad, &f->expect, EHR_EINVAL, "compaction not at index + 1");
    bad = reset;
    bad.snapshot_meta = (ledger_bytes){0};
    install_refused(f, staged, &bad, &f->expect, EHR_EINVAL, "no snapshot meta");
    bad = reset;
    bad.truncate_from = 1;
    install_refused(f, staged, &bad, &f->expect, EHR_EINVAL, "a truncation");
    bad = reset;
    uint8_t eb[16];
    ledger_bytes e = raft_entry(eb, SOURCE_APPLIED + 3, 'x');
    bad.append_index = SOURCE_APPLIED + 3; /* a gap after the snapshot */
    bad.entries = &e;
    bad.entry_count = 1;
    install_refused(f, staged, &bad, &f->expect, EHR_EINVAL, "entries with a gap");
    install_refused(f, staged, NULL, &f->expect, EHR_EINVAL, "no reset");

    /* Damaged files. */
    stage(f, "truncated.mdb", staged);
    truncate_to(staged, (off_t)f->info.file_bytes - 4096);
    install_refused(f, staged, &reset, &f->expect, EHR_ETRUNCATED, "truncated file");
    path_make(staged, f->stage_dir, "garbage.mdb");
    uint8_t junk[8192];
    randombytes_buf(junk, sizeof junk);
    file_write(staged, junk, sizeof junk);
    install_refused(f, staged, &reset, &f->expect, EHR_EINVAL, "garbage file");
    stage(f, "flipped.mdb", staged);
    size_t block_len;
    uint8_t *block = tip_block(f, &block_len);
    flip_byte_inside(staged, block, block_len);
    ehr_free(block);
    install_refused(f, staged, &reset, &f->expect, EHR_ECORRUPT, "flipped byte in the tip block");

    /* A receiver that has applied beyond the snapshot. */
    ledger *l;
    assert_int_equal(ledger_open(f->receiver_dir, &fast, &l, NULL), 0);
    assert_int_equal(ledger_applied_index_set(l, SOURCE_APPLIED + 1, NULL), 0);
    ledger_close(l);
    stage(f, "incoming.mdb", staged);
    install_refused(f, staged, &reset, &f->expect, EHR_EINVAL, "receiver ahead of the snapshot");
    /* The staged file was not touched by that refusal either. */
    ledger_snapshot_info info;
    assert_int_equal(ledger_snapshot_inspect(staged, &info, NULL), 0);
    size_t a_len, b_len;
    uint8_t *a = file_read(staged, &a_len), *b = file_read(f->snapshot, &b_len);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    ehr_free(a);
    ehr_free(b);

    /* A receiver of another chain. */
    char *other_dir = tu_tmpdir();
    ehr_signing_key k2;
    tu_key(&k2, 401);
    uint8_t *g2;
    size_t g2_len;
    tu_genesis(&k2, 1, &g2, &g2_len);
    assert_int_equal(ledger_open(other_dir, &fast, &l, NULL), 0);
    assert_int_equal(ledger_genesis_init(l, g2, g2_len, NULL), 0);
    ledger_close(l);
    ehr_free(g2);
    digest before = dir_digest(other_dir);
    ehr_diag diag;
    assert_int_equal(ledger_snapshot_install(other_dir, staged, &reset, &f->expect, NULL, &diag),
                     EHR_ECHAIN);
    printf("# receiver of another genesis: %s\n", diag.msg);
    digest after = dir_digest(other_dir);
    assert_memory_equal(before.hash, after.hash, sizeof before.hash);
    tu_rmdir(other_dir);
}

static void test_install_is_refused_while_the_ledger_is_open(void **state)
{
    fixture *f = *state;
    char staged[PATH_BYTES];
    stage(f, "incoming.mdb", staged);
    ledger_raft_batch reset = reset_for(SOURCE_APPLIED);

    /* Open in another process. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        ledger *l;
        if (ledger_open(f->receiver_dir, &fast, &l, NULL) != 0)
            _exit(2);
        char c = 'y';
        if (write(fds[1], &c, 1) != 1)
            _exit(3);
        pause();
        _exit(0);
    }
    close(fds[1]);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    digest before = dir_digest(f->receiver_dir);
    ehr_diag diag;
    int rc = ledger_snapshot_install(f->receiver_dir, staged, &reset, &f->expect, NULL, &diag);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_int_equal(rc, EHR_EAGAIN);
    printf("# open elsewhere: %s\n", diag.msg);
    digest after = dir_digest(f->receiver_dir);
    assert_memory_equal(before.hash, after.hash, sizeof before.hash);

    /* Open in this process (a caller that forgot to close it). */
    ledger *l;
    assert_int_equal(ledger_open(f->receiver_dir, &fast, &l, NULL), 0);
    assert_int_equal(
        ledger_snapshot_install(f->receiver_dir, staged, &reset, &f->expect, NULL, &diag),
        EHR_EAGAIN);
    ledger_close(l);

    /* Closed, and the killed holder's locks gone: it goes through. */
    rc = ledger_snapshot_install(f->receiver_dir, staged, &reset, &f->expect, NULL, &diag);
    if (rc != 0)
        fail_msg("install: %s", diag.msg);
    installed_expect(f, BYTES("receiver-hard-state-term-9"));
}

/* The receiver's lock file was left by a process killed inside a read
 * transaction, after many more commits than the snapshot file has: its
 * reader table and transaction counter are stale for the new file. */
static void test_a_stale_lock_file_does_not_outlive_the_install(void **state)
{
    fixture *f = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        ledger *l;
        if (ledger_open(f->receiver_dir, &fast, &l, NULL) != 0)
            _exit(2);
        ledger_raft_batch hs = {.hard_state = BYTES("receiver-hard-state-term-9")};
        for (int i = 0; i < 200; i++)
            if (ledger_raft_write(l, &hs, NULL) != 0)
                _exit(3);
        MDB_txn *txn;
        if (mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn) != 0)
            _exit(4);
        char c = 'y';
        if (write(fds[1], &c, 1) != 1)
            _exit(5);
        pause();
        _exit(0);
    }
    close(fds[1]);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);

    char staged[PATH_BYTES];
    stage(f, "incoming.mdb", staged);
    ledger_raft_batch reset = reset_for(SOURCE_APPLIED);
    ehr_diag diag;
    int rc = ledger_snapshot_install(f->receiver_dir, staged, &reset, &f->expect, NULL, &diag);
    if (rc != 0)
        fail_msg("install: %s", diag.msg);
    char lock[PATH_BYTES];
    path_make(lock, f->receiver_dir, "lock.mdb");
    struct stat st;
    assert_int_equal(stat(lock, &st), 0);
    assert_int_equal(st.st_size, 0);
    /* Writes on the new ledger commit and read back after reopening. */
    ledger *l;
    assert_int_equal(ledger_open(f->receiver_dir, &fast, &l, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(block_append(l, &f->key, TXS_PER_BLOCK, 0), 0);
    raft_append(l, SOURCE_APPLIED + 1, SOURCE_APPLIED + 4, 'r', BYTES("hs-new"));
    ledger_close(l);
    assert_int_equal(ledger_open(f->receiver_dir, &fast, &l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    assert_int_equal(tip.height, SOURCE_BLOCKS + 3);
    meta_expect(ledger_raft_hard_state_get, l, BYTES("hs-new"));
    verify_expect(l);
    ledger_close(l);
}

/* ---- limits ---- */

/* Make the directories for a path of exactly LEN bytes under BASE, whose
 * last component is a file name; DEPTH gets the directories made. */
static void long_path_make(char out[PATH_BYTES], const char *base, size_t len, int *depth)
{
    size_t n = strlen(base);
    assert_true(n + 2 < len);
    memcpy(out, base, n + 1);
    *depth = 0;
    while (len - n > 200) {
        out[n++] = '/';
        memset(out + n, 'd', 150);
        n += 150;
        out[n] = '\0';
        assert_int_equal(mkdir(out, 0700), 0);
        (*depth)++;
    }
    out[n++] = '/';
    memset(out + n, 'f', len - n);
    out[len] = '\0';
    assert_int_equal(strlen(out), len);
}

static void long_path_remove(char *path, int depth)
{
    unlink(path);
    for (int i = 0; i < depth; i++) {
        char *slash = strrchr(path, '/');
        *slash = '\0';
        assert_int_equal(rmdir(path), 0);
    }
}

static void test_limits_at_their_edges(void **state)
{
    fixture *f = *state;
    char path[PATH_BYTES];
    int depth;
    ledger *l;
    assert_int_equal(ledger_open(f->source_dir, &fast, &l, NULL), 0);
    ledger_snapshot_info info;

    /* A path of exactly the limit works; one byte more is refused. */
    long_path_make(path, f->stage_dir, LEDGER_SNAPSHOT_PATH_BYTES_MAX, &depth);
    ehr_diag why;
    int rc = ledger_snapshot_create(l, path, &info, &why);
    if (rc != 0)
        fail_msg("create at the path limit: %s", why.msg);
    assert_int_equal(ledger_snapshot_inspect(path, &info, NULL), 0);
    long_path_remove(path, depth);
    long_path_make(path, f->stage_dir, LEDGER_SNAPSHOT_PATH_BYTES_MAX + 1, &depth);
    assert_int_equal(ledger_snapshot_create(l, path, &info, &why), EHR_ETOOBIG);
    assert_non_null(strstr(why.msg, "limit"));
    assert_false(file_exists(path));
    ehr_diag diag;
    assert_int_equal(ledger_snapshot_inspect(path, &info, &diag), EHR_ETOOBIG);
    ledger_raft_batch reset = reset_for(SOURCE_APPLIED);
    assert_int_equal(
        ledger_snapshot_install(f->receiver_dir, path, &reset, &f->expect, NULL, &diag),
        EHR_ETOOBIG);
    assert_int_equal(ledger_snapshot_install(path, f->snapshot, &reset, &f->expect, NULL, &diag),
                     EHR_ETOOBIG);
    long_path_remove(path, depth);
    ledger_close(l);

    /* The file size: at the limit it passes the size check (and then is
     * not an LMDB file); one byte over, it is refused before any read. */
    assert_int_equal(ledger__snapshot_size_check(LEDGER_SNAPSHOT_BYTES_MAX, &diag), 0);
    assert_int_equal(ledger__snapshot_size_check(LEDGER_SNAPSHOT_BYTES_MAX + 1, &diag),
                     EHR_ETOOBIG);
    path_make(path, f->stage_dir, "sparse.mdb");
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)LEDGER_SNAPSHOT_BYTES_MAX), 0);
    assert_int_equal(ledger_snapshot_inspect(path, &info, &diag), EHR_EINVAL);
    assert_int_equal(ftruncate(fd, (off_t)LEDGER_SNAPSHOT_BYTES_MAX + 1), 0);
    assert_int_equal(ledger_snapshot_inspect(path, &info, &diag), EHR_ETOOBIG);
    printf("# %s\n", diag.msg);
    close(fd);
    unlink(path);
}

/* ---- a copy while the owner appends ---- */

enum { COPIES = 3, COPY_BLOCKS_MIN = 12 };

typedef struct copier {
    ledger *l;
    atomic_int done;
    atomic_int appended;
    int rc[COPIES];
    ledger_snapshot_info info[COPIES];
    char path[COPIES][PATH_BYTES];
} copier;

static void *copier_run(void *arg)
{
    copier *c = arg;
    for (int i = 0; i < COPIES; i++) {
        /* Spread the copies over the appends. */
        while (atomic_load(&c->appended) < (i * COPY_BLOCKS_MIN) / COPIES)
            usleep(100);
        c->rc[i] = ledger_snapshot_create(c->l, c->path[i], &c->info[i], NULL);
    }
    atomic_store(&c->done, 1);
    return NULL;
}

static void test_a_copy_taken_during_appends_is_a_consistent_prefix(void **state)
{
    fixture *f = *state;
    ledger *l;
    /* Durable, as the node runs: each append and raft write commits. */
    assert_int_equal(ledger_open(f->source_dir, NULL, &l, NULL), 0);
    ledger_tip start;
    assert_int_equal(ledger_tip_get(l, &start, NULL), 0);
    copier c = {.l = l};
    for (int i = 0; i < COPIES; i++) {
        char name[32];
        snprintf(name, sizeof name, "copy-%d.mdb", i);
        path_make(c.path[i], f->stage_dir, name);
    }
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, copier_run, &c), 0);
    /* As the node does: persist the Raft entry with its hard state, then
     * apply it (the block carries the entry's index as applied index). */
    uint64_t raft_last;
    assert_int_equal(ledger_raft_last_index(l, &raft_last, NULL), 0);
    int appended = 0;
    while (appended < COPY_BLOCKS_MIN || !atomic_load(&c.done)) {
        ledger_tip tip;
        assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
        uint8_t hs[32];
        int n = snprintf((char *)hs, sizeof hs, "hs-%llu", (unsigned long long)raft_last + 1);
        raft_append(l, raft_last + 1, raft_last + 1, 'c', (ledger_bytes){hs, (size_t)n});
        raft_last++;
        assert_int_equal(block_append(l, &f->key, 5, raft_last), 0);
        atomic_store(&c.appended, ++appended);
    }
    assert_int_equal(pthread_join(thread, NULL), 0);
    ledger_tip end;
    assert_int_equal(ledger_tip_get(l, &end, NULL), 0);

    int distinct = 0;
    uint64_t seen = UINT64_MAX;
    for (int i = 0; i < COPIES; i++) {
        if (c.rc[i] != 0)
            fail_msg("copy %d: %s", i, ehr_strerror(c.rc[i]));
        const ledger_tip *t = &c.info[i].tip;
        assert_true(t->height >= start.height && t->height <= end.height);
        distinct += t->height != seen;
        seen = t->height;
        /* Open the copy as a ledger and check it against the source. */
        char *dir = tu_tmpdir();
        char data[PATH_BYTES];
        path_make(data, dir, "data.mdb");
        file_copy(c.path[i], data);
        ledger *copy;
        /* Writable: the copy carries no derived tables; the open rebuilds them
         * from its blocks and write log (a read-only open would refuse). */
        assert_int_equal(ledger_open(dir, NULL, &copy, NULL), 0);
        verify_expect(copy);
        ledger_tip ct;
        assert_int_equal(ledger_tip_get(copy, &ct, NULL), 0);
        assert_memory_equal(&ct, t, sizeof ct);
        for (uint64_t h = 0; h <= ct.height; h++) {
            uint8_t *ba, *bb;
            size_t la, lb;
            assert_int_equal(ledger_block_get(copy, h, &ba, &la, NULL), 0);
            assert_int_equal(ledger_block_get(l, h, &bb, &lb, NULL), 0);
            assert_int_equal(la, lb);
            assert_memory_equal(ba, bb, la);
            ehr_free(ba);
            ehr_free(bb);
        }
        assert_int_equal(
            ledger_block_get(copy, ct.height + 1, &(uint8_t *){NULL}, &(size_t){0}, NULL),
            EHR_ENOTFOUND);
        /* The Raft log holds every applied entry, and the hard state is the
         * one written with its last entry (one commit, never split). */
        uint64_t first, last;
        assert_int_equal(ledger_raft_bounds(copy, &first, &last, NULL), 0);
        if (ct.height == start.height) {
            assert_int_equal(ct.applied_index, start.applied_index);
            assert_true(last == SOURCE_RAFT_LAST || last == SOURCE_RAFT_LAST + 1);
        } else {
            assert_true(last == ct.applied_index || last == ct.applied_index + 1);
        }
        uint8_t hs[32];
        int n = snprintf((char *)hs, sizeof hs, "hs-%llu", (unsigned long long)last);
        if (last > SOURCE_RAFT_LAST)
            meta_expect(ledger_raft_hard_state_get, copy, (ledger_bytes){hs, (size_t)n});
        ledger_close(copy);
        tu_rmdir(dir);
        unlink(c.path[i]);
    }
    printf("# %d copies during %d appends: tips %llu..%llu, %d distinct\n", COPIES, appended,
           (unsigned long long)start.height, (unsigned long long)end.height, distinct);
    ledger_close(l);
}

/* ---- crash test ---- */

enum { RANDOM_ROUNDS = 8, KILL_DELAY_US_MAX = 4000 };

static enum ledger__install_step kill_at;

static void kill_hook(enum ledger__install_step step)
{
    if (step == kill_at)
        raise(SIGKILL);
}

/* The receiver's state before any install, to tell old from new. */
typedef struct receiver_before {
    ledger_tip tip;
    uint64_t raft_first, raft_last;
} receiver_before;

/* Reopen DIR: it must hold the old ledger or the new one, whole. Returns
 * true for the new one. */
static bool old_or_new_expect(const fixture *f, const char *dir, const receiver_before *old)
{
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    verify_expect(l);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    uint64_t first, last;
    assert_int_equal(ledger_raft_bounds(l, &first, &last, NULL), 0);
    meta_expect(ledger_raft_hard_state_get, l, BYTES("receiver-hard-state-term-9"));
    bool is_new = memcmp(&tip, &f->info.tip, sizeof tip) == 0;
    if (is_new) {
        assert_int_equal(first, SOURCE_APPLIED + 1);
        assert_int_equal(last, SOURCE_APPLIED);
        meta_expect(ledger_raft_boundary_get, l, BYTES("boundary-at-snapshot"));
        meta_expect(ledger_raft_snapshot_meta_get, l, BYTES("receiver-snapshot-meta"));
    } else {
        assert_memory_equal(&tip, &old->tip, sizeof tip);
        assert_int_equal(first, old->raft_first);
        assert_int_equal(last, old->raft_last);
    }
    ledger_close(l);
    return is_new;
}

/* One round: a fresh receiver (a copy of the fixture's), a fresh staged
 * file, a child installing, killed at STEP (0: after a random delay). */
static bool crash_round(const fixture *f, enum ledger__install_step step, unsigned *seed,
                        const receiver_before *old)
{
    char *dir = tu_tmpdir();
    char from[PATH_BYTES], to[PATH_BYTES], staged[PATH_BYTES];
    path_make(from, f->receiver_dir, "data.mdb");
    path_make(to, dir, "data.mdb");
    file_copy(from, to);
    path_make(staged, dir, "incoming.mdb");
    file_copy(f->snapshot, staged);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kill_at = step;
        ledger__snapshot_install_hook = kill_hook;
        ledger_raft_batch reset = reset_for(SOURCE_APPLIED);
        _exit(ledger_snapshot_install(dir, staged, &reset, &f->expect, NULL, NULL) == 0 ? 0 : 1);
    }
    if (step == 0)
        usleep((useconds_t)(rand_r(seed) % KILL_DELAY_US_MAX));
    if (step == 0)
        kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    assert_true(killed || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    if (step != 0)
        assert_true(killed);
    bool is_new = old_or_new_expect(f, dir, old);
    if (step != 0)
        assert_int_equal(is_new, step >= LEDGER__INSTALL_RENAMED);
    printf("# step %d: %s, %s ledger\n", (int)step, killed ? "killed" : "finished",
           is_new ? "new" : "old");
    tu_rmdir(dir);
    return is_new;
}

static void test_killed_install_leaves_the_old_or_the_new_ledger_whole(void **state)
{
    fixture *f = *state;
    receiver_before old;
    ledger *l;
    assert_int_equal(ledger_open(f->receiver_dir, &fast, &l, NULL), 0);
    assert_int_equal(ledger_tip_get(l, &old.tip, NULL), 0);
    assert_int_equal(ledger_raft_bounds(l, &old.raft_first, &old.raft_last, NULL), 0);
    ledger_close(l);
    for (int step = LEDGER__INSTALL_LOCKED; step <= LEDGER__INSTALL_STEP_COUNT; step++)
        crash_round(f, (enum ledger__install_step)step, NULL, &old);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    printf("# crash test seed %u\n", seed);
    int news = 0;
    for (int i = 0; i < RANDOM_ROUNDS; i++)
        news += crash_round(f, 0, &seed, &old);
    printf("# random kills: %d of %d left the new ledger\n", news, RANDOM_ROUNDS);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_create_reports_what_the_copy_holds_and_inspect_agrees),
        T(test_create_replaces_an_older_snapshot_whole),
        T(test_install_replaces_the_ledger_and_keeps_the_receivers_hard_state),
        T(test_install_writes_the_given_hard_state_and_entries),
        T(test_install_into_a_directory_without_a_ledger),
        T(test_inspect_refuses_damaged_and_foreign_files),
        T(test_refused_installs_change_nothing_in_the_receiver),
        T(test_install_is_refused_while_the_ledger_is_open),
        T(test_a_stale_lock_file_does_not_outlive_the_install),
        T(test_limits_at_their_edges),
        T(test_a_copy_taken_during_appends_is_a_consistent_prefix),
        T(test_killed_install_leaves_the_old_or_the_new_ledger_whole),
    };
#undef T
    if (ehr_crypto_init() != 0 || sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
