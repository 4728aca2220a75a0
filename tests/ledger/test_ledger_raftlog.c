/*
 * Tests of the Raft log in the ledger's LMDB environment (ledger_raft_*):
 * round trips, truncation, compaction, refusals that write nothing, the
 * limits at their edges, reopening, a crash test (a child killed with
 * SIGKILL while writing durably), and one test that drives a single-node
 * consensus instance through a raft_storage adapter over ledger_raft_*, the
 * seam the node will use.
 *
 * Not here: the meaning of the records (the consensus codec's own tests).
 * LMDB and fork: the parent never has the ledger open while it forks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>

#include "ledger_testutil.h"
#include "raft.h"

/* ---- helpers ---- */

static const ledger_options fast = {.sync = LEDGER_SYNC_NONE};

/* The bytes of test entry INDEX in generation GEN: LEN bytes, a pattern. */
static void entry_fill(uint8_t *out, size_t len, uint64_t index, uint8_t gen)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(index * 31 + i * 7 + gen);
}

static size_t entry_len(uint64_t index)
{
    return 1 + (size_t)(index % 97);
}

/* Append COUNT pattern entries of generation GEN at INDEX. */
static int append_pattern(ledger *l, uint64_t index, size_t count, uint8_t gen)
{
    ledger_bytes *e = ehr_calloc(count, sizeof *e);
    uint8_t *buf = ehr_malloc(count * 100);
    for (size_t i = 0; i < count; i++) {
        size_t n = entry_len(index + i);
        entry_fill(buf + i * 100, n, index + i, gen);
        e[i] = (ledger_bytes){buf + i * 100, n};
    }
    ledger_raft_batch b = {.append_index = index, .entries = e, .entry_count = count};
    int rc = ledger_raft_write(l, &b, NULL);
    ehr_free(buf);
    ehr_free(e);
    return rc;
}

/* Assert that entry INDEX holds generation GEN's pattern. */
static void entry_expect(ledger *l, uint64_t index, uint8_t gen)
{
    uint8_t got[100], want[100];
    size_t len;
    assert_int_equal(ledger_raft_entry_get(l, index, got, sizeof got, &len, NULL), 0);
    assert_int_equal(len, entry_len(index));
    entry_fill(want, len, index, gen);
    assert_memory_equal(got, want, len);
}

static void bounds_expect(ledger *l, uint64_t first, uint64_t last)
{
    uint64_t f, t;
    assert_int_equal(ledger_raft_bounds(l, &f, &t, NULL), 0);
    assert_int_equal(f, first);
    assert_int_equal(t, last);
    assert_int_equal(ledger_raft_first_index(l, &f, NULL), 0);
    assert_int_equal(ledger_raft_last_index(l, &t, NULL), 0);
    assert_int_equal(f, first);
    assert_int_equal(t, last);
}

/* A digest of everything the raft log holds, to prove a refusal changed
 * nothing: bounds, every entry, the three metadata records. */
typedef struct digest {
    uint8_t hash[32];
} digest;

static int digest_entry(void *ctx, uint64_t index, const uint8_t *bytes, size_t len)
{
    crypto_generichash_state *st = ctx;
    crypto_generichash_update(st, (const uint8_t *)&index, sizeof index);
    crypto_generichash_update(st, bytes, len);
    return 0;
}

static digest log_digest(ledger *l)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    uint64_t first, last;
    assert_int_equal(ledger_raft_bounds(l, &first, &last, NULL), 0);
    crypto_generichash_update(&st, (const uint8_t *)&first, sizeof first);
    crypto_generichash_update(&st, (const uint8_t *)&last, sizeof last);
    if (last >= first)
        assert_int_equal(
            ledger_raft_entries_read(l, first, last + 1, UINT64_MAX, digest_entry, &st, NULL),
            (long)(last - first + 1));
    int (*gets[])(ledger *, uint8_t *, size_t, size_t *, ehr_diag *) = {
        ledger_raft_hard_state_get, ledger_raft_snapshot_meta_get, ledger_raft_boundary_get};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(gets); i++) {
        uint8_t buf[LEDGER_RAFT_META_BYTES_MAX];
        size_t len = 0;
        int rc = gets[i](l, buf, sizeof buf, &len, NULL);
        assert_true(rc == 0 || rc == EHR_ENOTFOUND);
        crypto_generichash_update(&st, (const uint8_t *)&rc, sizeof rc);
        crypto_generichash_update(&st, buf, rc == 0 ? len : 0);
    }
    digest d;
    crypto_generichash_final(&st, d.hash, sizeof d.hash);
    return d;
}

static void digest_expect(ledger *l, const digest *before)
{
    digest now = log_digest(l);
    assert_memory_equal(now.hash, before->hash, sizeof now.hash);
}

#define BYTES(s) ((ledger_bytes){(const uint8_t *)(s), sizeof(s) - 1})

/* ---- tests ---- */

static void test_new_ledger_has_an_empty_log_starting_at_one(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    bounds_expect(l, 1, 0);
    uint8_t buf[16];
    size_t len;
    assert_int_equal(ledger_raft_entry_get(l, 1, buf, sizeof buf, &len, NULL), EHR_ENOTFOUND);
    assert_int_equal(ledger_raft_entry_get(l, 0, buf, sizeof buf, &len, NULL), EHR_ENOTFOUND);
    assert_int_equal(ledger_raft_hard_state_get(l, buf, sizeof buf, &len, NULL), EHR_ENOTFOUND);
    assert_int_equal(ledger_raft_snapshot_meta_get(l, buf, sizeof buf, &len, NULL), EHR_ENOTFOUND);
    assert_int_equal(ledger_raft_boundary_get(l, buf, sizeof buf, &len, NULL), EHR_ENOTFOUND);
    ledger_close(l);
    tu_rmdir(dir);
}

static void test_entries_and_metadata_round_trip(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(append_pattern(l, 1, 40, 0), 0);
    ledger_raft_batch b = {.hard_state = BYTES("hard-1"), .snapshot_meta = BYTES("snap-1")};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 1, 40);
    for (uint64_t i = 1; i <= 40; i++)
        entry_expect(l, i, 0);
    assert_int_equal(append_pattern(l, 41, 1, 0), 0);
    entry_expect(l, 41, 0);
    bounds_expect(l, 1, 41);
    uint8_t buf[64];
    size_t len;
    assert_int_equal(ledger_raft_hard_state_get(l, buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "hard-1", 6);
    assert_int_equal(ledger_raft_snapshot_meta_get(l, buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "snap-1", 6);
    /* A buffer one byte short: the size needed, the buffer untouched. */
    memset(buf, 0xee, sizeof buf);
    assert_int_equal(ledger_raft_hard_state_get(l, buf, 5, &len, NULL), EHR_ETOOBIG);
    assert_int_equal(len, 6);
    assert_int_equal(buf[0], 0xee);
    assert_int_equal(ledger_raft_entry_get(l, 40, buf, entry_len(40) - 1, &len, NULL), EHR_ETOOBIG);
    assert_int_equal(len, entry_len(40));
    assert_int_equal(ledger_raft_entry_get(l, 42, buf, sizeof buf, &len, NULL), EHR_ENOTFOUND);
    /* Hard state alone replaces the previous one. */
    b = (ledger_raft_batch){.hard_state = BYTES("hard-two")};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    assert_int_equal(ledger_raft_hard_state_get(l, buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(buf, "hard-two", 8);
    ledger_close(l);
    tu_rmdir(dir);
}

struct collect {
    uint64_t indices[64];
    size_t count;
    int stop_after; /* return 1 after this many (0: never) */
    int fail_after; /* return an error after this many (0: never) */
};

static int collect_entry(void *ctx, uint64_t index, const uint8_t *bytes, size_t len)
{
    struct collect *c = ctx;
    uint8_t want[100];
    entry_fill(want, len, index, 0);
    if (len != entry_len(index) || memcmp(bytes, want, len) != 0)
        return EHR_ECORRUPT;
    c->indices[c->count++] = index;
    if (c->fail_after > 0 && (int)c->count == c->fail_after)
        return EHR_EAGAIN;
    return c->stop_after > 0 && (int)c->count == c->stop_after ? 1 : 0;
}

static void test_range_read_keeps_to_its_range_budget_and_callback(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(append_pattern(l, 1, 30, 0), 0);
    struct collect c = {0};
    assert_int_equal(ledger_raft_entries_read(l, 5, 15, UINT64_MAX, collect_entry, &c, NULL), 10);
    for (size_t i = 0; i < c.count; i++)
        assert_int_equal(c.indices[i], 5 + i);
    /* The budget: entries 5, 6, 7 are 6 + 7 + 8 bytes. */
    c = (struct collect){0};
    assert_int_equal(ledger_raft_entries_read(l, 5, 15, 6 + 7 + 8, collect_entry, &c, NULL), 3);
    c = (struct collect){0};
    assert_int_equal(ledger_raft_entries_read(l, 5, 15, 6 + 7 + 8 - 1, collect_entry, &c, NULL), 2);
    /* Always at least one entry, even over the budget. */
    c = (struct collect){0};
    assert_int_equal(ledger_raft_entries_read(l, 5, 15, 0, collect_entry, &c, NULL), 1);
    assert_int_equal(c.indices[0], 5);
    c = (struct collect){.stop_after = 4};
    assert_int_equal(ledger_raft_entries_read(l, 1, 31, UINT64_MAX, collect_entry, &c, NULL), 4);
    c = (struct collect){.fail_after = 2};
    assert_int_equal(ledger_raft_entries_read(l, 1, 31, UINT64_MAX, collect_entry, &c, NULL),
                     EHR_EAGAIN);
    c = (struct collect){0};
    assert_int_equal(ledger_raft_entries_read(l, 30, 31, UINT64_MAX, collect_entry, &c, NULL), 1);
    assert_int_equal(ledger_raft_entries_read(l, 30, 32, UINT64_MAX, collect_entry, &c, NULL),
                     EHR_ENOTFOUND);
    assert_int_equal(ledger_raft_entries_read(l, 0, 3, UINT64_MAX, collect_entry, &c, NULL),
                     EHR_ENOTFOUND);
    assert_int_equal(ledger_raft_entries_read(l, 7, 7, UINT64_MAX, collect_entry, &c, NULL),
                     EHR_EINVAL);
    ledger_close(l);
    tu_rmdir(dir);
}

static void test_appending_inside_the_log_replaces_the_suffix(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(append_pattern(l, 1, 10, 0), 0);
    /* Conflicting entries from 6: 6..8 replaced, 9 and 10 gone. */
    assert_int_equal(append_pattern(l, 6, 3, 1), 0);
    bounds_expect(l, 1, 8);
    for (uint64_t i = 1; i <= 5; i++)
        entry_expect(l, i, 0);
    for (uint64_t i = 6; i <= 8; i++)
        entry_expect(l, i, 1);
    /* Explicit truncation, then an append at the new end, in one write. */
    uint8_t e[3] = {7, 7, 7};
    ledger_bytes one = {e, sizeof e};
    ledger_raft_batch b = {
        .truncate_from = 4, .append_index = 4, .entries = &one, .entry_count = 1};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 1, 4);
    uint8_t buf[8];
    size_t len;
    assert_int_equal(ledger_raft_entry_get(l, 4, buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, e, 3);
    /* Truncation alone, down to an empty log; and at last + 1 (nothing). */
    b = (ledger_raft_batch){.truncate_from = 5};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 1, 4);
    b = (ledger_raft_batch){.truncate_from = 1};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 1, 0);
    assert_int_equal(append_pattern(l, 1, 2, 0), 0);
    bounds_expect(l, 1, 2);
    ledger_close(l);
    tu_rmdir(dir);
}

static void test_compaction_hides_entries_below_first(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(append_pattern(l, 1, 20, 0), 0);
    ledger_raft_batch b = {.compact_index = 8, .boundary = BYTES("term-of-7")};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 8, 20);
    uint8_t buf[100];
    size_t len;
    for (uint64_t i = 1; i < 8; i++)
        assert_int_equal(ledger_raft_entry_get(l, i, buf, sizeof buf, &len, NULL), EHR_ENOTFOUND);
    for (uint64_t i = 8; i <= 20; i++)
        entry_expect(l, i, 0);
    struct collect c = {0};
    assert_int_equal(ledger_raft_entries_read(l, 7, 9, UINT64_MAX, collect_entry, &c, NULL),
                     EHR_ENOTFOUND);
    assert_int_equal(ledger_raft_boundary_get(l, buf, sizeof buf, &len, NULL), 0);
    assert_int_equal(len, 9);
    assert_memory_equal(buf, "term-of-7", 9);
    ledger_stats stats;
    assert_int_equal(ledger_stats_get(l, &stats, NULL), 0);
    assert_int_equal(stats.raft_entries, 13);
    /* Compacting to first again is allowed (nothing dropped). */
    b.compact_index = 8;
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 8, 20);
    /* Installing a snapshot at 29: the log is empty and starts at 30. */
    b = (ledger_raft_batch){.compact_index = 30,
                            .boundary = BYTES("term-of-29"),
                            .snapshot_meta = BYTES("snapshot-29")};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 30, 29);
    assert_int_equal(ledger_raft_entry_get(l, 20, buf, sizeof buf, &len, NULL), EHR_ENOTFOUND);
    assert_int_equal(append_pattern(l, 31, 1, 0), EHR_EINVAL);
    assert_int_equal(append_pattern(l, 29, 1, 0), EHR_EINVAL);
    assert_int_equal(append_pattern(l, 30, 5, 0), 0);
    bounds_expect(l, 30, 34);
    entry_expect(l, 30, 0);
    /* Installing a snapshot inside the log (at 31): truncate, then compact. */
    b = (ledger_raft_batch){.truncate_from = 32, .compact_index = 32, .boundary = BYTES("t31")};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 32, 31);
    assert_int_equal(ledger_stats_get(l, &stats, NULL), 0);
    assert_int_equal(stats.raft_entries, 0);
    ledger_close(l);
    tu_rmdir(dir);
}

static void test_refused_writes_change_nothing(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(append_pattern(l, 1, 20, 0), 0);
    ledger_raft_batch b = {.compact_index = 5, .boundary = BYTES("b4"), .hard_state = BYTES("h")};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 5, 20);
    digest before = log_digest(l);

    uint8_t big[LEDGER_RAFT_META_BYTES_MAX + 1] = {0};
    ledger_bytes e = {(const uint8_t *)"x", 1}, empty = {(const uint8_t *)"", 0};
    const struct {
        ledger_raft_batch b;
        int rc;
    } bad[] = {
        {{0}, EHR_EINVAL},                                                   /* nothing */
        {{.append_index = 22, .entries = &e, .entry_count = 1}, EHR_EINVAL}, /* a gap */
        {{.append_index = 4, .entries = &e, .entry_count = 1}, EHR_EINVAL},  /* below first */
        {{.append_index = 0, .entries = &e, .entry_count = 1}, EHR_EINVAL},  /* index 0 */
        {{.append_index = 21, .entries = &empty, .entry_count = 1}, EHR_EINVAL},
        {{.append_index = 21, .entries = NULL, .entry_count = 1}, EHR_EINVAL},
        {{.truncate_from = 22}, EHR_EINVAL},
        {{.truncate_from = 4}, EHR_EINVAL},
        {{.compact_index = 4, .boundary = BYTES("b")}, EHR_EINVAL}, /* backwards */
        {{.compact_index = 10}, EHR_EINVAL},                        /* no boundary */
        {{.boundary = BYTES("b"), .hard_state = BYTES("h")}, EHR_EINVAL},
        {{.hard_state = {big, 0}}, EHR_EINVAL},
        {{.hard_state = {big, sizeof big}}, EHR_ETOOBIG},
        {{.snapshot_meta = {big, sizeof big}}, EHR_ETOOBIG},
        {{.compact_index = 10, .boundary = {big, sizeof big}}, EHR_ETOOBIG},
        /* Valid steps first, an invalid one after: nothing of it lands. */
        {{.truncate_from = 10,
          .hard_state = BYTES("h2"),
          .append_index = 12,
          .entries = &e,
          .entry_count = 1},
         EHR_EINVAL},
        {{.compact_index = 15,
          .boundary = BYTES("b"),
          .append_index = 14,
          .entries = &e,
          .entry_count = 1},
         EHR_EINVAL},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad); i++) {
        ehr_diag why = {""};
        int rc = ledger_raft_write(l, &bad[i].b, &why);
        if (rc != bad[i].rc)
            fail_msg("case %zu: %d, wanted %d (%s)", i, rc, bad[i].rc, why.msg);
        assert_true(why.msg[0] != '\0');
        digest_expect(l, &before);
    }
    ledger_close(l);

    /* A write that fails inside LMDB (the map is full) leaves nothing too. */
    ledger_options tiny = {.sync = LEDGER_SYNC_NONE, .map_bytes = LEDGER_MAP_BYTES_MIN};
    assert_int_equal(ledger_open(dir, &tiny, &l, NULL), 0);
    digest_expect(l, &before);
    static uint8_t chunk[16 * 1024];
    ledger_bytes many[64];
    for (size_t i = 0; i < EHR_ARRAY_COUNT(many); i++)
        many[i] = (ledger_bytes){chunk, sizeof chunk};
    ledger_raft_batch full = {.truncate_from = 10,
                              .append_index = 10,
                              .entries = many,
                              .entry_count = EHR_ARRAY_COUNT(many),
                              .hard_state = BYTES("h3")};
    assert_int_equal(ledger_raft_write(l, &full, NULL), EHR_EFULL);
    digest_expect(l, &before);
    ledger_close(l);
    tu_rmdir(dir);
}

static void test_limits_at_their_edges(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    /* One entry of exactly the largest size, then one byte over. */
    size_t max = LEDGER_RAFT_ENTRY_BYTES_MAX;
    uint8_t *big = ehr_malloc(max + 1);
    memset(big, 0x5a, max + 1);
    ledger_bytes e = {big, max + 1};
    ledger_raft_batch b = {.append_index = 1, .entries = &e, .entry_count = 1};
    assert_int_equal(ledger_raft_write(l, &b, NULL), EHR_ETOOBIG);
    bounds_expect(l, 1, 0);
    e.len = max;
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    memset(big, 0, max + 1);
    size_t len;
    assert_int_equal(ledger_raft_entry_get(l, 1, big, max + 1, &len, NULL), 0);
    assert_int_equal(len, max);
    assert_int_equal(big[0], 0x5a);
    assert_int_equal(big[max - 1], 0x5a);
    ehr_free(big);

    /* The entry count of one write: the limit, then one over. */
    size_t count = LEDGER_RAFT_WRITE_ENTRIES_MAX;
    ledger_bytes *many = ehr_calloc(count + 1, sizeof *many);
    for (size_t i = 0; i <= count; i++)
        many[i] = (ledger_bytes){(const uint8_t *)"e", 1};
    b = (ledger_raft_batch){.append_index = 2, .entries = many, .entry_count = count + 1};
    assert_int_equal(ledger_raft_write(l, &b, NULL), EHR_ETOOBIG);
    bounds_expect(l, 1, 1);
    b.entry_count = count;
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    bounds_expect(l, 1, 1 + count);
    ehr_free(many);

    /* Metadata records of exactly the limit. */
    uint8_t meta[LEDGER_RAFT_META_BYTES_MAX];
    memset(meta, 0x11, sizeof meta);
    b = (ledger_raft_batch){.compact_index = 2,
                            .boundary = {meta, sizeof meta},
                            .hard_state = {meta, sizeof meta},
                            .snapshot_meta = {meta, sizeof meta}};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    uint8_t got[LEDGER_RAFT_META_BYTES_MAX];
    assert_int_equal(ledger_raft_hard_state_get(l, got, sizeof got, &len, NULL), 0);
    assert_int_equal(len, sizeof meta);
    assert_int_equal(ledger_raft_snapshot_meta_get(l, got, sizeof got, &len, NULL), 0);
    assert_int_equal(len, sizeof meta);
    assert_int_equal(ledger_raft_boundary_get(l, got, sizeof got, &len, NULL), 0);
    assert_int_equal(len, sizeof meta);
    assert_memory_equal(got, meta, sizeof meta);
    ledger_close(l);
    tu_rmdir(dir);
}

static void test_reopen_yields_exactly_what_was_written(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    assert_int_equal(append_pattern(l, 1, 50, 0), 0);
    assert_int_equal(append_pattern(l, 45, 10, 1), 0); /* 45..54 replaced */
    ledger_raft_batch b = {.compact_index = 12,
                           .boundary = BYTES("t11"),
                           .hard_state = BYTES("hs"),
                           .snapshot_meta = BYTES("sm")};
    assert_int_equal(ledger_raft_write(l, &b, NULL), 0);
    digest before = log_digest(l);
    ledger_close(l);

    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    digest_expect(l, &before);
    bounds_expect(l, 12, 54);
    for (uint64_t i = 12; i <= 44; i++)
        entry_expect(l, i, 0);
    for (uint64_t i = 45; i <= 54; i++)
        entry_expect(l, i, 1);
    ledger_close(l);
    ledger_options ro = {.read_only = true};
    assert_int_equal(ledger_open(dir, &ro, &l, NULL), 0);
    digest_expect(l, &before);
    assert_int_equal(append_pattern(l, 55, 1, 0), EHR_EINVAL);
    ledger_close(l);
    tu_rmdir(dir);
}

static void test_raft_log_and_blocks_share_one_environment(void **state)
{
    (void)state;
    ehr_signing_key key;
    tu_key(&key, 77);
    uint8_t *g;
    size_t g_len;
    tu_genesis(&key, 1, &g, &g_len);
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(ledger_genesis_init(l, g, g_len, NULL), 0);
    ehr_free(g);
    assert_int_equal(append_pattern(l, 1, 5, 0), 0);
    uint64_t height;
    assert_int_equal(tu_append(l, &key, 3, &height, NULL), 0);
    assert_int_equal(append_pattern(l, 6, 5, 0), 0);
    ledger_close(l);
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    assert_int_equal(tip.height, 1);
    bounds_expect(l, 1, 10);
    ledger_stats stats;
    assert_int_equal(ledger_stats_get(l, &stats, NULL), 0);
    assert_int_equal(stats.blocks, 2);
    assert_int_equal(stats.raft_entries, 10);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(l, NULL, &rep), 0);
    ledger_close(l);
    tu_rmdir(dir);
}

/* A ledger written before the Raft log existed: read-only it reads as an
 * empty log; writable, the database is created. */
static void test_ledger_without_a_raft_log_database_opens(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(append_pattern(l, 1, 3, 0), 0);
    ledger_close(l);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "raft_log", 0, &dbi), 0);
    assert_int_equal(mdb_drop(txn, dbi, 1), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    ledger_options ro = {.read_only = true};
    assert_int_equal(ledger_open(dir, &ro, &l, NULL), 0);
    bounds_expect(l, 1, 0);
    uint8_t buf[8];
    size_t len;
    assert_int_equal(ledger_raft_entry_get(l, 1, buf, sizeof buf, &len, NULL), EHR_ENOTFOUND);
    ledger_stats stats;
    assert_int_equal(ledger_stats_get(l, &stats, NULL), 0);
    assert_int_equal(stats.raft_entries, 0);
    ledger_close(l);
    assert_int_equal(ledger_open(dir, &fast, &l, NULL), 0);
    assert_int_equal(append_pattern(l, 1, 2, 0), 0);
    bounds_expect(l, 1, 2);
    ledger_close(l);
    tu_rmdir(dir);
}

/* ---- crash test ---- */

enum {
    CRASH_ROUNDS = 6,
    CRASH_WRITES_MAX = 1000000,
    CRASH_BATCH_MAX = 16,
    CRASH_COMPACT_EVERY = 40,
    CRASH_KEEP = 64, /* entries kept below the end when compacting */
    CRASH_REPORTS_BEFORE_KILL_MAX = 40,
    CRASH_KILL_DELAY_US_MAX = 5000,
};

/* Hard state in the crash test: 8-byte big-endian commit = last index. */
static void u64_be(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static uint64_t u64_be_read(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

/* The child: durable raft writes until killed, each reported once done. */
static _Noreturn void crash_child(const char *dir, int report_fd, unsigned seed)
{
    ledger *l;
    if (ledger_open(dir, NULL, &l, NULL) != 0)
        _exit(2);
    srand(seed);
    uint64_t first, last;
    if (ledger_raft_bounds(l, &first, &last, NULL) != 0)
        _exit(3);
    uint8_t buf[CRASH_BATCH_MAX][100];
    ledger_bytes e[CRASH_BATCH_MAX];
    for (int w = 0; w < CRASH_WRITES_MAX; w++) {
        size_t n = 1 + (size_t)rand() % CRASH_BATCH_MAX;
        for (size_t i = 0; i < n; i++) {
            entry_fill(buf[i], entry_len(last + 1 + i), last + 1 + i, 0);
            e[i] = (ledger_bytes){buf[i], entry_len(last + 1 + i)};
        }
        uint8_t hs[8], boundary[8];
        u64_be(hs, last + n);
        ledger_raft_batch b = {.append_index = last + 1,
                               .entries = e,
                               .entry_count = n,
                               .hard_state = {hs, sizeof hs}};
        if (w % CRASH_COMPACT_EVERY == 0 && last > CRASH_KEEP) {
            b.compact_index = last - CRASH_KEEP;
            u64_be(boundary, b.compact_index - 1);
            b.boundary = (ledger_bytes){boundary, sizeof boundary};
        }
        if (ledger_raft_write(l, &b, NULL) != 0)
            _exit(4);
        last += n;
        if (write(report_fd, &last, sizeof last) != (ssize_t)sizeof last)
            _exit(5);
    }
    _exit(0);
}

static bool report_read(int fd, uint64_t *v)
{
    size_t got = 0;
    while (got < sizeof *v) {
        ssize_t n = read(fd, (uint8_t *)v + got, sizeof *v - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

static void test_killed_writer_leaves_a_prefix_with_every_acknowledged_write(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    printf("# raft log crash test seed %u\n", seed);
    srand(seed);
    uint64_t acknowledged = 0;
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        unsigned child_seed = (unsigned)rand();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(dir, fds[1], child_seed);
        }
        close(fds[1]);
        int wait_reports = 1 + rand() % CRASH_REPORTS_BEFORE_KILL_MAX;
        uint64_t last;
        for (int i = 0; i < wait_reports && report_read(fds[0], &last); i++)
            acknowledged = last > acknowledged ? last : acknowledged;
        usleep((useconds_t)(rand() % CRASH_KILL_DELAY_US_MAX));
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        while (report_read(fds[0], &last))
            acknowledged = last > acknowledged ? last : acknowledged;
        close(fds[0]);

        ledger *l;
        assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
        uint64_t first;
        assert_int_equal(ledger_raft_bounds(l, &first, &last, NULL), 0); /* one contiguous run */
        if (last < acknowledged)
            fail_msg("round %d: log ends at %llu, below acknowledged %llu", round,
                     (unsigned long long)last, (unsigned long long)acknowledged);
        /* The hard state refers to exactly the log that is there. */
        uint8_t hs[8];
        size_t len;
        assert_int_equal(ledger_raft_hard_state_get(l, hs, sizeof hs, &len, NULL), 0);
        assert_int_equal(len, 8);
        assert_int_equal(u64_be_read(hs), last);
        if (first > 1) {
            assert_int_equal(ledger_raft_boundary_get(l, hs, sizeof hs, &len, NULL), 0);
            assert_int_equal(u64_be_read(hs), first - 1);
        }
        for (uint64_t i = first; i <= last; i++)
            entry_expect(l, i, 0);
        printf("# round %d: acknowledged %llu, log %llu..%llu\n", round,
               (unsigned long long)acknowledged, (unsigned long long)first,
               (unsigned long long)last);
        ledger_close(l);
    }
    assert_true(acknowledged >= CRASH_ROUNDS);
    tu_rmdir(dir);
}

/* ---- a raft_storage over ledger_raft_* (the node's seam) ---- */

/*
 * The adapter: records are the consensus codec's; first and last are cached
 * (the adapter is the only writer and updates them after each write);
 * entries() copies the records into a reused buffer and decodes them there,
 * so data pointers live until the next entries() call (stable_pointers is
 * false: the core copies what it keeps). No snapshot data is held here.
 */
struct lstore {
    ledger *l;
    uint64_t first, last;
    uint8_t *buf; /* records of the last entries() call */
    size_t buf_cap, buf_len;
    size_t offsets[256];
    size_t count;
    size_t cap; /* entries wanted in this call */
};

static int ls_hard_state(void *ctx, struct raft_hard_state *out)
{
    struct lstore *s = ctx;
    uint8_t buf[RAFT_HARD_STATE_RECORD_BYTES];
    size_t len;
    int rc = ledger_raft_hard_state_get(s->l, buf, sizeof buf, &len, NULL);
    if (rc == EHR_ENOTFOUND) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    return rc != 0 ? rc : raft_hard_state_record_decode(buf, len, out);
}

static int ls_snapshot_meta(void *ctx, struct raft_snapshot_meta *out, uint64_t *size)
{
    struct lstore *s = ctx;
    uint8_t buf[RAFT_SNAPSHOT_META_RECORD_BYTES];
    size_t len;
    *size = 0;
    int rc = ledger_raft_snapshot_meta_get(s->l, buf, sizeof buf, &len, NULL);
    if (rc == EHR_ENOTFOUND) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    return rc != 0 ? rc : raft_snapshot_meta_record_decode(buf, len, out);
}

static int ls_snapshot_read(void *ctx, uint64_t offset, uint8_t *buf, size_t cap, size_t *read)
{
    (void)ctx, (void)offset, (void)buf, (void)cap, (void)read;
    return EHR_ENOTFOUND;
}

static uint64_t ls_first_index(void *ctx)
{
    return ((struct lstore *)ctx)->first;
}

static uint64_t ls_last_index(void *ctx)
{
    return ((struct lstore *)ctx)->last;
}

static int ls_collect(void *ctx, uint64_t index, const uint8_t *bytes, size_t len)
{
    (void)index;
    struct lstore *s = ctx;
    if (s->buf_len + len > s->buf_cap) {
        s->buf_cap = (s->buf_len + len) * 2;
        s->buf = ehr_realloc(s->buf, s->buf_cap);
    }
    memcpy(s->buf + s->buf_len, bytes, len);
    s->offsets[s->count++] = s->buf_len;
    s->buf_len += len;
    return s->count == s->cap ? 1 : 0;
}

static int ls_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t bytes_max,
                      struct raft_entry *out, size_t cap, size_t *count)
{
    struct lstore *s = ctx;
    s->buf_len = 0;
    s->count = 0;
    s->cap = cap < EHR_ARRAY_COUNT(s->offsets) ? cap : EHR_ARRAY_COUNT(s->offsets);
    /* Record bytes exceed data bytes, so the ledger's budget stops no later
     * than the core's. */
    long n = ledger_raft_entries_read(s->l, lo, hi, bytes_max, ls_collect, s, NULL);
    if (n < 0)
        return (int)n;
    for (size_t i = 0; i < s->count; i++) {
        size_t end = i + 1 < s->count ? s->offsets[i + 1] : s->buf_len;
        int rc = raft_entry_record_decode(s->buf + s->offsets[i], end - s->offsets[i], &out[i]);
        if (rc != 0)
            return rc;
        if (out[i].index != lo + i)
            return EHR_ECORRUPT;
    }
    *count = s->count;
    return 0;
}

static int ls_term(void *ctx, uint64_t index, uint64_t *term)
{
    struct lstore *s = ctx;
    if (index + 1 < s->first || index > s->last)
        return EHR_ENOTFOUND;
    if (index == s->first - 1) {
        if (index == 0) {
            *term = 0;
            return 0;
        }
        uint8_t buf[RAFT_ENTRY_RECORD_HEADER_BYTES + RAFT_RECORD_CRC_BYTES];
        size_t len;
        struct raft_entry e;
        int rc = ledger_raft_boundary_get(s->l, buf, sizeof buf, &len, NULL);
        if (rc == 0)
            rc = raft_entry_record_decode(buf, len, &e);
        if (rc == 0)
            *term = e.term;
        return rc;
    }
    struct raft_entry e;
    size_t count;
    int rc = ls_entries(s, index, index + 1, UINT64_MAX, &e, 1, &count);
    if (rc == 0)
        *term = e.term;
    return rc;
}

static void ls_open(struct lstore *s, ledger *l, struct raft_storage *st)
{
    memset(s, 0, sizeof *s);
    s->l = l;
    assert_int_equal(ledger_raft_bounds(l, &s->first, &s->last, NULL), 0);
    *st = (struct raft_storage){.ctx = s,
                                .hard_state = ls_hard_state,
                                .snapshot_meta = ls_snapshot_meta,
                                .snapshot_read = ls_snapshot_read,
                                .first_index = ls_first_index,
                                .last_index = ls_last_index,
                                .term = ls_term,
                                .entries = ls_entries,
                                .stable_pointers = false};
}

/* Step 2 of the ready protocol: entries and hard state in one write. */
static int ls_persist(struct lstore *s, const struct raft_entry *entries, size_t count,
                      const struct raft_hard_state *hs)
{
    if (count == 0 && hs == NULL)
        return 0;
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += RAFT_ENTRY_RECORD_HEADER_BYTES + entries[i].size + RAFT_RECORD_CRC_BYTES;
    uint8_t *records = ehr_malloc(total + 1);
    ledger_bytes *e = ehr_calloc(count + 1, sizeof *e);
    size_t at = 0;
    int rc = 0;
    for (size_t i = 0; rc >= 0 && i < count; i++) {
        rc = raft_entry_record_encode(&entries[i], records + at, total - at);
        if (rc > 0) {
            e[i] = (ledger_bytes){records + at, (size_t)rc};
            at += (size_t)rc;
        }
    }
    uint8_t hs_buf[RAFT_HARD_STATE_RECORD_BYTES];
    ledger_raft_batch b = {
        .append_index = count > 0 ? entries[0].index : 0, .entries = e, .entry_count = count};
    if (rc >= 0 && hs != NULL) {
        rc = raft_hard_state_record_encode(hs, hs_buf, sizeof hs_buf);
        b.hard_state = (ledger_bytes){hs_buf, (size_t)rc};
    }
    if (rc >= 0)
        rc = ledger_raft_write(s->l, &b, NULL);
    if (rc >= 0 && count > 0)
        s->last = entries[count - 1].index;
    ehr_free(e);
    ehr_free(records);
    return rc < 0 ? rc : 0;
}

static void ls_close(struct lstore *s)
{
    ehr_free(s->buf);
}

/* Drain every ready batch: persist, apply (collect normal entries), advance. */
static void raft_drain(struct raft *r, struct lstore *s, char applied[][16], size_t *applied_count)
{
    while (raft_ready_pending(r)) {
        struct raft_ready rd;
        assert_int_equal(raft_ready_get(r, &rd), 0);
        assert_null(rd.snapshot);
        assert_int_equal(ls_persist(s, rd.entries, rd.entry_count,
                                    rd.hard_state_changed ? &rd.hard_state : NULL),
                         0);
        for (size_t i = 0; i < rd.committed_count; i++) {
            const struct raft_entry *e = &rd.committed[i];
            if (e->type != RAFT_ENTRY_NORMAL)
                continue;
            assert_true(e->size < 16);
            memcpy(applied[*applied_count], e->data, e->size);
            applied[*applied_count][e->size] = '\0';
            (*applied_count)++;
        }
        assert_int_equal(raft_ready_advance(r), 0);
    }
}

static struct raft *raft_start(struct lstore *s, const struct raft_storage *st, uint64_t applied)
{
    struct raft_options opt;
    raft_options_default(&opt);
    opt.id = 1;
    opt.seed = 7;
    opt.applied = applied;
    struct raft *r;
    assert_int_equal(raft_create(&r, &opt, st), 0);
    char sink[4][16];
    size_t n = 0;
    struct raft_status status;
    for (int i = 0; i < 4 * (int)opt.election_ticks; i++) {
        assert_int_equal(raft_tick(r), 0);
        raft_drain(r, s, sink, &n);
        raft_status_get(r, &status);
        if (status.role == RAFT_LEADER)
            break;
    }
    assert_int_equal(status.role, RAFT_LEADER);
    return r;
}

enum { ADAPTER_PROPOSALS = 20 };

static void test_raft_instance_persists_through_the_ledger_and_recovers(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    struct lstore s;
    struct raft_storage st;
    ls_open(&s, l, &st);
    struct raft_config conf = {.voter_count = 1, .voters = {1}};
    uint8_t cbuf[RAFT_CONFIG_ENCODED_BYTES_MAX];
    struct raft_entry boot;
    assert_int_equal(raft_bootstrap_entry(&conf, cbuf, &boot), 0);
    assert_int_equal(ls_persist(&s, &boot, 1, NULL), 0);

    struct raft *r = raft_start(&s, &st, 0);
    char applied[ADAPTER_PROPOSALS + 1][16];
    size_t applied_count = 0;
    for (int i = 0; i < ADAPTER_PROPOSALS; i++) {
        char p[16];
        int n = snprintf(p, sizeof p, "entry-%d", i);
        assert_int_equal(raft_propose(r, (const uint8_t *)p, (uint32_t)n), 0);
        if (i % 3 == 0)
            raft_drain(r, &s, applied, &applied_count);
    }
    raft_drain(r, &s, applied, &applied_count);
    assert_int_equal(applied_count, ADAPTER_PROPOSALS);
    for (size_t i = 0; i < applied_count; i++) {
        char p[32];
        snprintf(p, sizeof p, "entry-%d", (int)i);
        assert_string_equal(applied[i], p);
    }
    struct raft_status before;
    raft_status_get(r, &before);
    assert_int_equal(before.hard_state.commit, before.last_index);
    raft_destroy(r);
    ls_close(&s);
    ledger_close(l);

    /* Restart from the ledger alone. */
    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    ls_open(&s, l, &st);
    assert_int_equal(s.last, before.last_index);
    struct raft_hard_state hs;
    assert_int_equal(ls_hard_state(&s, &hs), 0);
    assert_int_equal(hs.term, before.hard_state.term);
    assert_int_equal(hs.vote, before.hard_state.vote);
    assert_int_equal(hs.commit, before.hard_state.commit);
    /* Replaying from applied 0 hands back the same committed entries. */
    struct raft_options opt;
    raft_options_default(&opt);
    opt.id = 1;
    opt.seed = 7;
    assert_int_equal(raft_create(&r, &opt, &st), 0);
    struct raft_status after;
    raft_status_get(r, &after);
    assert_int_equal(after.hard_state.commit, before.hard_state.commit);
    assert_int_equal(after.hard_state.term, before.hard_state.term);
    assert_int_equal(after.last_index, before.last_index);
    char replay[ADAPTER_PROPOSALS + 1][16];
    size_t replay_count = 0;
    raft_drain(r, &s, replay, &replay_count);
    assert_int_equal(replay_count, ADAPTER_PROPOSALS);
    for (size_t i = 0; i < replay_count; i++)
        assert_string_equal(replay[i], applied[i]);
    raft_destroy(r);

    /* And it goes on: a new term, one more entry committed. */
    r = raft_start(&s, &st, before.hard_state.commit);
    assert_int_equal(raft_propose(r, (const uint8_t *)"more", 4), 0);
    applied_count = 0;
    raft_drain(r, &s, applied, &applied_count);
    assert_int_equal(applied_count, 1);
    assert_string_equal(applied[0], "more");
    raft_status_get(r, &after);
    assert_true(after.hard_state.term > before.hard_state.term);
    assert_int_equal(after.hard_state.commit, after.last_index);
    assert_int_equal(ls_hard_state(&s, &hs), 0);
    assert_int_equal(hs.commit, after.hard_state.commit);
    raft_destroy(r);
    ls_close(&s);
    ledger_close(l);
    tu_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_ledger_has_an_empty_log_starting_at_one),
        cmocka_unit_test(test_entries_and_metadata_round_trip),
        cmocka_unit_test(test_range_read_keeps_to_its_range_budget_and_callback),
        cmocka_unit_test(test_appending_inside_the_log_replaces_the_suffix),
        cmocka_unit_test(test_compaction_hides_entries_below_first),
        cmocka_unit_test(test_refused_writes_change_nothing),
        cmocka_unit_test(test_limits_at_their_edges),
        cmocka_unit_test(test_reopen_yields_exactly_what_was_written),
        cmocka_unit_test(test_raft_log_and_blocks_share_one_environment),
        cmocka_unit_test(test_ledger_without_a_raft_log_database_opens),
        cmocka_unit_test(test_killed_writer_leaves_a_prefix_with_every_acknowledged_write),
        cmocka_unit_test(test_raft_instance_persists_through_the_ledger_and_recovers),
    };
    if (ehr_crypto_init() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
