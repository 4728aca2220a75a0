/*
 * Tests of the ledger's write path: the write-log record codec, the overlay
 * of blocks above the checkpoint (reads, scans and stats merged with the
 * derived tables; its two limits and the back-pressure at their edges),
 * reopening with an overlay to replay, the derived tables rebuilt when they
 * are missing or belong to another chain, and a read-only process that
 * follows a writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger_internal.h"
#include "ledger_testutil.h"
#include "ehr/v1/ledger.pb-c.h"

typedef struct fixture {
    char *dir;
    ledger *l;
    ehr_signing_key key;
    uint8_t *genesis;
    size_t genesis_len;
} fixture;

static void fixture_open(fixture *f, enum ledger_sync_mode sync)
{
    ledger_options opts = {.sync = sync};
    assert_int_equal(ledger_open(f->dir, &opts, &f->l, NULL), 0);
}

static int fixture_setup(void **state)
{
    fixture *f = ehr_calloc(1, sizeof *f);
    tu_key(&f->key, 500);
    tu_genesis(&f->key, 1, &f->genesis, &f->genesis_len);
    f->dir = tu_tmpdir();
    ledger_options opts = {.sync = LEDGER_SYNC_NONE};
    if (ledger_open(f->dir, &opts, &f->l, NULL) != 0)
        return -1;
    ledger__checkpoint_pause(f->l, true);
    if (ledger_genesis_init(f->l, f->genesis, f->genesis_len, NULL) != 0)
        return -1;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    fixture *f = *state;
    ledger_close(f->l);
    tu_rmdir(f->dir);
    ehr_free(f->genesis);
    ehr_free(f);
    return 0;
}

static ledger_stats stats_of(ledger *l)
{
    ledger_stats s;
    assert_int_equal(ledger_stats_get(l, &s, NULL), 0);
    return s;
}

/* Append a block of one transaction with WRITES[0..COUNT) as its state
 * writes; *HASH (may be NULL) gets the transaction's hash. */
static int append_writes(ledger *l, const ehr_signing_key *key, const ledger_state_write *writes,
                         size_t count, uint8_t hash[EHR_HASH_BYTES])
{
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, key, 1, 0);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, key, &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                         .writes = writes,
                         .write_count = count,
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = tip.height + 1};
    int rc = ledger_append_block(l, &req, NULL);
    if (hash != NULL)
        memcpy(hash, b.hashes[0], EHR_HASH_BYTES);
    ehr_free(block);
    tu_batch_free(&b);
    return rc;
}

static ledger_state_write set_of(const char *key, const char *value)
{
    return (ledger_state_write){.key = (const uint8_t *)key,
                                .key_len = strlen(key),
                                .value = (const uint8_t *)value,
                                .value_len = strlen(value)};
}

static ledger_state_write remove_of(const char *key)
{
    return (ledger_state_write){
        .key = (const uint8_t *)key, .key_len = strlen(key), .remove = true};
}

/* ---- The write-log record ---- */

static void test_write_log_record_is_canonical_protobuf_and_checked(void **state)
{
    (void)state;
    uint8_t big[300];
    memset(big, 0x42, sizeof big);
    ledger_state_write writes[] = {
        set_of("a", "one"),
        remove_of("b"),
        {.key = (const uint8_t *)"c", .key_len = 1, .value = NULL, .value_len = 0},
        {.key = big, .key_len = EHR_STATE_KEY_BYTES_MAX, .value = big, .value_len = sizeof big},
    };
    /* Results: OK (empty, still one element each), a short one, one at the
     * limit. */
    ledger_bytes results[] = {
        {NULL, 0}, {(const uint8_t *)"\x08\x03", 2}, {big, EHR_TX_RESULT_BYTES_MAX}, {NULL, 0}};
    const ledger__write_log log = {.writes = writes,
                                   .write_count = EHR_ARRAY_COUNT(writes),
                                   .results = results,
                                   .result_count = EHR_ARRAY_COUNT(results)};
    size_t n = ledger__writes_record_size(&log);
    uint8_t *rec = ehr_malloc(n);
    assert_int_equal(ledger__writes_record_write(rec, n, 7, &log), n);

    /* protobuf-c decodes it to the same writes and results and re-encodes
     * it exactly. */
    Ehr__V1__StoredWrites *m = ehr__v1__stored_writes__unpack(NULL, n, rec);
    assert_non_null(m);
    assert_int_equal(m->n_writes, EHR_ARRAY_COUNT(writes));
    assert_int_equal(m->checksum.len, LEDGER__CHECKSUM_BYTES);
    assert_true(m->writes[1]->remove && m->writes[1]->value.len == 0);
    assert_int_equal(m->writes[3]->key.len, EHR_STATE_KEY_BYTES_MAX);
    assert_int_equal(m->n_results, EHR_ARRAY_COUNT(results));
    for (size_t i = 0; i < m->n_results; i++)
        assert_int_equal(m->results[i].len, results[i].len);
    uint8_t *again = ehr_malloc(n);
    assert_int_equal(ehr__v1__stored_writes__pack(m, again), n);
    assert_memory_equal(again, rec, n);
    ehr__v1__stored_writes__free_unpacked(m, NULL);
    ehr_free(again);

    ledger__write_log out;
    assert_int_equal(ledger__writes_record_open(rec, n, 7, &out), 0);
    assert_int_equal(out.write_count, EHR_ARRAY_COUNT(writes));
    for (size_t i = 0; i < out.write_count; i++) {
        assert_int_equal(out.writes[i].key_len, writes[i].key_len);
        assert_memory_equal(out.writes[i].key, writes[i].key, writes[i].key_len);
        assert_int_equal(out.writes[i].remove, writes[i].remove);
        assert_int_equal(out.writes[i].value_len, writes[i].remove ? 0 : writes[i].value_len);
        if (out.writes[i].value_len > 0)
            assert_memory_equal(out.writes[i].value, writes[i].value, out.writes[i].value_len);
    }
    assert_int_equal(out.result_count, EHR_ARRAY_COUNT(results));
    for (size_t i = 0; i < out.result_count; i++) {
        assert_int_equal(out.results[i].len, results[i].len);
        if (results[i].len > 0)
            assert_memory_equal(out.results[i].data, results[i].data, results[i].len);
    }
    ledger__write_log_release(&out);
    /* Another height, a flipped bit (in the last result), a cut record: all
     * refused. */
    assert_int_equal(ledger__writes_record_open(rec, n, 8, &out), EHR_ECORRUPT);
    rec[n - 3] ^= 0x01;
    assert_int_equal(ledger__writes_record_open(rec, n, 7, &out), EHR_ECORRUPT);
    rec[n - 3] ^= 0x01;
    assert_int_equal(ledger__writes_record_open(rec, n - 1, 7, &out), EHR_ECORRUPT);
    ehr_free(rec);

    /* No writes, no results (block 0 has writes but no transactions): the
     * checksum alone. */
    const ledger__write_log none = {0};
    n = ledger__writes_record_size(&none);
    uint8_t empty[64];
    assert_true(n <= sizeof empty);
    ledger__writes_record_write(empty, n, 1, &none);
    assert_int_equal(ledger__writes_record_open(empty, n, 1, &out), 0);
    assert_int_equal(out.write_count, 0);
    assert_int_equal(out.result_count, 0);
    assert_null(out.mem);
}

/* A key over the limit inside an otherwise well-formed record (checksum
 * right) is refused by the decoder, not passed on. */
static void test_write_log_decoder_enforces_the_key_limit(void **state)
{
    (void)state;
    uint8_t key[EHR_STATE_KEY_BYTES_MAX + 1];
    memset(key, 'k', sizeof key);
    for (size_t len = EHR_STATE_KEY_BYTES_MAX; len <= EHR_STATE_KEY_BYTES_MAX + 1; len++) {
        ledger_state_write w = {.key = key, .key_len = len, .value = key, .value_len = 1};
        const ledger__write_log log = {.writes = &w, .write_count = 1};
        size_t n = ledger__writes_record_size(&log);
        uint8_t *rec = ehr_malloc(n);
        ledger__writes_record_write(rec, n, 3, &log);
        ledger__write_log out;
        int rc = ledger__writes_record_open(rec, n, 3, &out);
        assert_int_equal(rc, len <= EHR_STATE_KEY_BYTES_MAX ? 0 : EHR_ECORRUPT);
        ledger__write_log_release(&out);
        ehr_free(rec);
    }
}

/* A StoredWrites record packed by protobuf-c, its checksum made right for
 * HEIGHT (the field comes first: 2 bytes of framing, then the 32 bytes). */
static uint8_t *stored_writes_pack(Ehr__V1__StoredWrites *m, uint64_t height, size_t *len)
{
    static uint8_t zero[LEDGER__CHECKSUM_BYTES];
    m->checksum = (ProtobufCBinaryData){sizeof zero, zero};
    *len = ehr__v1__stored_writes__get_packed_size(m);
    uint8_t *rec = ehr_malloc(*len);
    assert_int_equal(ehr__v1__stored_writes__pack(m, rec), *len);
    ledger__block_checksum(rec + 2, height, rec + 2 + LEDGER__CHECKSUM_BYTES,
                           *len - 2 - LEDGER__CHECKSUM_BYTES);
    return rec;
}

/* Results at their limit (EHR_TX_RESULT_BYTES_MAX) decode; one byte more,
 * checksum right, is refused as over the limit (EHR_ETOOBIG), and results
 * before the writes (not canonical) as corrupt. */
static void test_write_log_decoder_enforces_the_result_limit(void **state)
{
    (void)state;
    uint8_t bytes[EHR_TX_RESULT_BYTES_MAX + 1];
    memset(bytes, 'r', sizeof bytes);
    for (size_t len = EHR_TX_RESULT_BYTES_MAX; len <= EHR_TX_RESULT_BYTES_MAX + 1; len++) {
        Ehr__V1__StoredWrites m = EHR__V1__STORED_WRITES__INIT;
        ProtobufCBinaryData results[2] = {{0, NULL}, {len, bytes}};
        m.n_results = 2;
        m.results = results;
        size_t n;
        uint8_t *rec = stored_writes_pack(&m, 5, &n);
        ledger__write_log out;
        int rc = ledger__writes_record_open(rec, n, 5, &out);
        assert_int_equal(rc, len <= EHR_TX_RESULT_BYTES_MAX ? 0 : EHR_ETOOBIG);
        if (rc == 0) {
            assert_int_equal(out.result_count, 2);
            assert_int_equal(out.results[0].len, 0);
            assert_int_equal(out.results[1].len, len);
        }
        ledger__write_log_release(&out);
        ehr_free(rec);
    }
    /* Field 3 before field 2: protobuf accepts it, our canonical form not. */
    ledger_state_write w = set_of("k", "v");
    const ledger_bytes r = {(const uint8_t *)"\x08\x01", 2};
    const ledger__write_log log = {
        .writes = &w, .write_count = 1, .results = &r, .result_count = 1};
    size_t n = ledger__writes_record_size(&log);
    uint8_t *rec = ehr_malloc(n);
    ledger__writes_record_write(rec, n, 9, &log);
    /* The tail is the write (2+ bytes of framing and "k","v") then the
     * result's 4 bytes: swap them and fix the checksum. */
    uint8_t *swapped = ehr_malloc(n);
    size_t body = 2 + LEDGER__CHECKSUM_BYTES, result_len = 4, write_len = n - body - result_len;
    memcpy(swapped, rec, body);
    memcpy(swapped + body, rec + body + write_len, result_len);
    memcpy(swapped + body + result_len, rec + body, write_len);
    ledger__block_checksum(swapped + 2, 9, swapped + body, n - body);
    ledger__write_log out;
    assert_int_equal(ledger__writes_record_open(rec, n, 9, &out), 0);
    ledger__write_log_release(&out);
    assert_int_equal(ledger__writes_record_open(swapped, n, 9, &out), EHR_ECORRUPT);
    ehr_free(swapped);
    ehr_free(rec);
}

/* ---- Reads merge the overlay with the derived tables ---- */

typedef struct scan_result {
    char keys[16][16];
    char values[16][16];
    size_t count;
} scan_result;

static int collect(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                   size_t value_len)
{
    scan_result *r = ctx;
    assert_true(r->count < 16 && key_len < 16 && value_len < 16);
    memcpy(r->keys[r->count], key, key_len);
    r->keys[r->count][key_len] = '\0';
    memcpy(r->values[r->count], value, value_len);
    r->values[r->count][value_len] = '\0';
    r->count++;
    return 0;
}

/* Scan PREFIX two keys at a time, continuing after the last key seen, and
 * check the result is EXPECT ("key=value" strings). */
static void scan_expect(ledger *l, const char *prefix, const char *const *expect, size_t n)
{
    scan_result all = {0};
    const uint8_t *after = NULL;
    size_t after_len = 0;
    char last[16];
    for (;;) {
        scan_result part = {0};
        long got = ledger_state_scan(l, (const uint8_t *)prefix, strlen(prefix), after, after_len,
                                     2, collect, &part, NULL);
        assert_true(got >= 0 && got <= 2);
        for (long i = 0; i < got; i++) {
            memcpy(all.keys[all.count], part.keys[i], sizeof part.keys[i]);
            memcpy(all.values[all.count], part.values[i], sizeof part.values[i]);
            all.count++;
        }
        if (got < 2)
            break;
        memcpy(last, part.keys[1], sizeof last);
        after = (const uint8_t *)last;
        after_len = strlen(last);
    }
    assert_int_equal(all.count, n);
    for (size_t i = 0; i < n; i++) {
        char kv[40];
        snprintf(kv, sizeof kv, "%s=%s", all.keys[i], all.values[i]);
        assert_string_equal(kv, expect[i]);
    }
}

static void state_expect(ledger *l, const char *key, const char *value)
{
    uint8_t *v = NULL;
    size_t len = 0;
    int rc = ledger_state_get(l, (const uint8_t *)key, strlen(key), &v, &len, NULL);
    if (value == NULL) {
        assert_int_equal(rc, EHR_ENOTFOUND);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(len, strlen(value));
    assert_memory_equal(v, value, len);
    ehr_free(v);
}

static void check_merged_view(ledger *l, const uint8_t hash_a[EHR_HASH_BYTES],
                              const uint8_t hash_b[EHR_HASH_BYTES])
{
    state_expect(l, "k/1", "one");
    state_expect(l, "k/2", "TWO");
    state_expect(l, "k/2a", "new");
    state_expect(l, "k/3", NULL);
    state_expect(l, "k/4", "four");
    state_expect(l, "k/9", NULL);
    const char *const expect[] = {"k/1=one",  "k/2=TWO",  "k/2a=new",
                                  "k/4=four", "k/5=five", "k/6=six"};
    scan_expect(l, "k/", expect, EHR_ARRAY_COUNT(expect));
    ledger_tx_location loc;
    assert_int_equal(ledger_tx_get(l, hash_a, &loc, NULL, NULL, NULL, NULL, NULL), 0);
    assert_true(loc.height == 1 && loc.index == 0);
    assert_int_equal(ledger_tx_get(l, hash_b, &loc, NULL, NULL, NULL, NULL, NULL), 0);
    assert_true(loc.height == 2 && loc.index == 0);
    ledger_stats s = stats_of(l);
    assert_true(s.tx_index_rows == 2);
    assert_true(s.state_keys == 2 + 6); /* emergency policy, member, k/1 k/2 k/2a k/4 k/5 k/6 */
}

/* Block 1 is checkpointed, block 2 (updates, a removal, a new key between
 * two old ones, the removal of an absent key) is in the overlay: point
 * reads, scans continued with `after`, tx lookups and the counts see the
 * merge; then the same after a checkpoint, and after a reopen that replays
 * the overlay. */
static void test_reads_merge_the_overlay_with_the_derived_tables(void **state)
{
    fixture *f = *state;
    ledger_state_write first[] = {set_of("k/1", "one"), set_of("k/2", "two"),
                                  set_of("k/3", "three"), set_of("k/4", "four"),
                                  set_of("k/5", "five")};
    uint8_t hash_a[EHR_HASH_BYTES], hash_b[EHR_HASH_BYTES];
    assert_int_equal(append_writes(f->l, &f->key, first, EHR_ARRAY_COUNT(first), hash_a), 0);
    assert_int_equal(ledger_checkpoint(f->l, NULL), 0);
    ledger_stats s = stats_of(f->l);
    assert_true(s.checkpoint_height == 2 && s.overlay_blocks == 0);

    ledger_state_write second[] = {set_of("k/2", "TWO"), remove_of("k/3"), set_of("k/2a", "x"),
                                   set_of("k/6", "six"), remove_of("k/9"), set_of("k/2a", "new")};
    assert_int_equal(append_writes(f->l, &f->key, second, EHR_ARRAY_COUNT(second), hash_b), 0);
    s = stats_of(f->l);
    assert_true(s.checkpoint_height == 2 && s.overlay_blocks == 1);
    check_merged_view(f->l, hash_a, hash_b);

    /* Close while paused: no last checkpoint, so the reopen replays. */
    ledger_close(f->l);
    fixture_open(f, LEDGER_SYNC_NONE);
    ledger__checkpoint_pause(f->l, true);
    s = stats_of(f->l);
    assert_true(s.checkpoint_height == 2 && s.overlay_blocks == 1);
    check_merged_view(f->l, hash_a, hash_b);

    assert_int_equal(ledger_checkpoint(f->l, NULL), 0);
    s = stats_of(f->l);
    assert_true(s.checkpoint_height == 3 && s.overlay_blocks == 0 && s.overlay_bytes == 0);
    check_merged_view(f->l, hash_a, hash_b);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, NULL, &rep), 0);

    /* A transaction already in the derived tables, or in the overlay, is a
     * duplicate. */
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &f->key, 1, 0);
    memcpy(b.hashes[0], hash_a, EHR_HASH_BYTES);
    ehr_free((void *)b.envelopes[0].data);
    assert_int_equal(ledger_tx_get(f->l, hash_a, &(ledger_tx_location){0},
                                   (uint8_t **)&b.envelopes[0].data, &b.envelopes[0].len, NULL,
                                   NULL, NULL),
                     0);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->key, &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = tip.height + 1};
    assert_int_equal(ledger_append_block(f->l, &req, NULL), EHR_EEXIST);
    ehr_free(block);
    tu_batch_free(&b);
    assert_int_equal(stats_of(f->l).overlay_blocks, 0);
}

/* ---- The overlay's limits ---- */

typedef struct appender {
    ledger *l;
    const ehr_signing_key *key;
    int rc;
} appender;

static void *append_main(void *arg)
{
    appender *a = arg;
    a->rc = tu_append(a->l, a->key, 1, NULL, NULL);
    return NULL;
}

/* Wait (without a deadline: the test's own timeout bounds it) until an
 * append has started waiting for room, WAITS in all. */
static void wait_for_waiting_append(ledger *l, uint64_t waits)
{
    while (ledger__append_waits(l) < waits)
        usleep(1000);
}

/* With checkpoints paused the overlay fills to LEDGER_OVERLAY_BLOCKS_MAX
 * blocks (block 0 counts) without any append waiting; the next append
 * waits, writes nothing, and completes once checkpoints may run again. */
static void test_overlay_block_limit_makes_the_next_append_wait(void **state)
{
    fixture *f = *state;
    for (int i = 1; i < LEDGER_OVERLAY_BLOCKS_MAX; i++)
        assert_int_equal(tu_append(f->l, &f->key, 1, NULL, NULL), 0);
    ledger_stats s = stats_of(f->l);
    assert_int_equal(s.overlay_blocks, LEDGER_OVERLAY_BLOCKS_MAX);
    assert_int_equal(s.checkpoint_height, 0);
    assert_int_equal(ledger__append_waits(f->l), 0);

    appender a = {.l = f->l, .key = &f->key, .rc = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, append_main, &a), 0);
    wait_for_waiting_append(f->l, 1);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    assert_int_equal(tip.height, LEDGER_OVERLAY_BLOCKS_MAX - 1);
    ledger__checkpoint_pause(f->l, false);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a.rc, 0);
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    assert_int_equal(tip.height, LEDGER_OVERLAY_BLOCKS_MAX);
    s = stats_of(f->l);
    assert_true(s.checkpoint_height >= LEDGER_OVERLAY_BLOCKS_MAX);
    assert_true(s.overlay_blocks <= 1);
    assert_true(s.tx_index_rows == LEDGER_OVERLAY_BLOCKS_MAX);
}

/* The byte limit (lowered for the test; the logic is the same at the real
 * one): a block that brings the overlay exactly to the limit goes in, one
 * byte more waits until the limit allows it. */
static void test_overlay_byte_limit_edge(void **state)
{
    fixture *f = *state;
    uint64_t base = stats_of(f->l).overlay_bytes;
    assert_true(base > 0); /* block 0: the founding member */
    assert_int_equal(tu_append(f->l, &f->key, 1, NULL, NULL), 0);
    uint64_t block = stats_of(f->l).overlay_bytes - base;
    ledger__overlay_limits_set(f->l, LEDGER_OVERLAY_BLOCKS_MAX, base + 3 * block - 1);
    assert_int_equal(tu_append(f->l, &f->key, 1, NULL, NULL), 0);
    assert_int_equal(stats_of(f->l).overlay_bytes, base + 2 * block);
    assert_int_equal(ledger__append_waits(f->l), 0);

    appender a = {.l = f->l, .key = &f->key, .rc = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, append_main, &a), 0);
    wait_for_waiting_append(f->l, 1);
    ledger__overlay_limits_set(f->l, LEDGER_OVERLAY_BLOCKS_MAX, base + 3 * block);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(a.rc, 0);
    ledger_stats s = stats_of(f->l);
    assert_int_equal(s.overlay_bytes, base + 3 * block);
    assert_int_equal(s.checkpoint_height, 0); /* it went in without a checkpoint */
}

/* ---- Opening ---- */

static void remove_derived(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, LEDGER__DERIVED_FILE);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof path, "%s/%s-lock", dir, LEDGER__DERIVED_FILE);
    unlink(path);
}

static void flip_hash(uint8_t *value, size_t *len, void *ctx)
{
    (void)ctx;
    Ehr__V1__Checkpoint *c = ehr__v1__checkpoint__unpack(NULL, *len, value);
    assert_non_null(c);
    c->genesis_block_hash.data[0] ^= 0x01;
    *len = ehr__v1__checkpoint__pack(c, value);
    ehr__v1__checkpoint__free_unpacked(c, NULL);
}

/* Lost derived tables: read-only refuses with a message, writable
 * rebuilds them from the write log and the blocks (checkpointing as it
 * goes, past the overlay limit). Tables of another chain: the same. */
static void test_derived_tables_are_rebuilt_when_lost_or_foreign(void **state)
{
    fixture *f = *state;
    ledger__checkpoint_pause(f->l, false);
    for (int i = 0; i < 20; i++)
        assert_int_equal(tu_append(f->l, &f->key, 3, NULL, NULL), 0);
    ledger_stats before = stats_of(f->l);
    ledger_close(f->l);
    f->l = NULL;

    remove_derived(f->dir);
    ledger *r;
    ledger_options ro = {.read_only = true};
    assert_int_equal(ledger_open(f->dir, &ro, &r, NULL), EHR_ENOTFOUND);
    fixture_open(f, LEDGER_SYNC_NONE);
    ledger_stats s = stats_of(f->l);
    assert_true(s.tx_index_rows == before.tx_index_rows && s.state_keys == before.state_keys);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, NULL, &rep), 0);
    ledger_close(f->l);
    f->l = NULL;

    /* Now tables that claim another chain. */
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_DERIVED_META, LEDGER__META_CHECKPOINT,
                                 strlen(LEDGER__META_CHECKPOINT), flip_hash, NULL),
                     0);
    assert_int_equal(ledger_open(f->dir, &ro, &r, NULL), EHR_ECORRUPT);
    fixture_open(f, LEDGER_SYNC_NONE);
    s = stats_of(f->l);
    assert_true(s.tx_index_rows == before.tx_index_rows && s.state_keys == before.state_keys);
    assert_int_equal(ledger_verify(f->l, NULL, &rep), 0);
}

/* A writable open of a ledger whose derived tables are lost, with more
 * blocks than the overlay holds: it checkpoints in overlay-sized steps
 * (invariant 3) instead of holding them all. */
static void test_catch_up_at_open_checkpoints_in_steps(void **state)
{
    fixture *f = *state;
    ledger__checkpoint_pause(f->l, false);
    int blocks = LEDGER_OVERLAY_BLOCKS_MAX + 10;
    for (int i = 0; i < blocks; i++)
        assert_int_equal(tu_append(f->l, &f->key, 1, NULL, NULL), 0);
    ledger_close(f->l);
    remove_derived(f->dir);
    fixture_open(f, LEDGER_SYNC_NONE);
    ledger_stats s = stats_of(f->l);
    assert_true(s.checkpoints >= 1);
    assert_true(s.checkpoint_height >= LEDGER_OVERLAY_BLOCKS_MAX);
    assert_true(s.overlay_blocks <= LEDGER_OVERLAY_BLOCKS_MAX);
    assert_int_equal(s.tx_index_rows, blocks);
    assert_int_equal(s.state_keys, blocks + 2); /* + block 0: the emergency policy, the member */
}

static void file_copy(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* Put back the derived tables saved (checkpointed at height 1) in OLD. */
static void derived_restore(const char *dir, const char *old)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, LEDGER__DERIVED_FILE);
    file_copy(old, path);
}

/* A read-only open replays at most LEDGER_OVERLAY_BLOCKS_MAX blocks above
 * the derived tables' checkpoint: exactly that many open, one more is
 * EHR_EAGAIN with a message (a writable open then catches up in steps). */
static void test_read_only_replay_limit_edge(void **state)
{
    fixture *f = *state;
    assert_int_equal(ledger_checkpoint(f->l, NULL), 0); /* block 0: checkpoint at 1 */
    ledger_close(f->l);
    char derived[600], old[600];
    snprintf(derived, sizeof derived, "%s/%s", f->dir, LEDGER__DERIVED_FILE);
    snprintf(old, sizeof old, "%s/derived.old", f->dir);
    file_copy(derived, old);

    fixture_open(f, LEDGER_SYNC_NONE);
    for (int i = 0; i < LEDGER_OVERLAY_BLOCKS_MAX; i++)
        assert_int_equal(tu_append(f->l, &f->key, 1, NULL, NULL), 0);
    ledger_close(f->l);
    f->l = NULL;
    derived_restore(f->dir, old); /* blocks 1..MAX above the checkpoint */
    ledger *r;
    ledger_options ro = {.read_only = true};
    assert_int_equal(ledger_open(f->dir, &ro, &r, NULL), 0);
    ledger_stats s = stats_of(r);
    assert_int_equal(s.overlay_blocks, LEDGER_OVERLAY_BLOCKS_MAX);
    assert_int_equal(s.checkpoint_height, 1);
    assert_int_equal(s.tx_index_rows, LEDGER_OVERLAY_BLOCKS_MAX);
    ledger_close(r);

    fixture_open(f, LEDGER_SYNC_NONE);
    assert_int_equal(tu_append(f->l, &f->key, 1, NULL, NULL), 0);
    ledger_close(f->l);
    f->l = NULL;
    derived_restore(f->dir, old); /* one block more */
    assert_int_equal(ledger_open(f->dir, &ro, &r, NULL), EHR_EAGAIN);
    fixture_open(f, LEDGER_SYNC_NONE);
    s = stats_of(f->l);
    assert_true(s.checkpoints >= 1);
    assert_int_equal(s.tx_index_rows, LEDGER_OVERLAY_BLOCKS_MAX + 1);
    unlink(old);
}

/* ---- A read-only process follows the writer ---- */

/* The child: for each batch of hashes the parent sends, answer one byte per
 * hash: 1 if its tx lookup and its state key ("rec/" + hash) answer. */
static _Noreturn void follower_run(const char *dir, int in_fd, int out_fd)
{
    ledger *r = NULL;
    for (;;) {
        uint8_t hash[EHR_HASH_BYTES];
        ssize_t n = read(in_fd, hash, sizeof hash);
        if (n == 0)
            break;
        if (n != (ssize_t)sizeof hash)
            _exit(3);
        if (r == NULL && ledger_open(dir, &(ledger_options){.read_only = true}, &r, NULL) != 0)
            _exit(2);
        ledger_tx_location loc;
        uint8_t key[4 + EHR_HASH_BYTES], *value = NULL;
        size_t value_len;
        memcpy(key, "rec/", 4);
        memcpy(key + 4, hash, EHR_HASH_BYTES);
        uint8_t ok = ledger_tx_get(r, hash, &loc, NULL, NULL, NULL, NULL, NULL) == 0 &&
                     ledger_state_get(r, key, sizeof key, &value, &value_len, NULL) == 0;
        ehr_free(value);
        if (write(out_fd, &ok, 1) != 1)
            _exit(4);
    }
    ledger_verify_report rep;
    int rc = ledger_verify(r, NULL, &rep);
    ledger_close(r);
    _exit(rc == 0 ? 0 : 5);
}

static bool ask(int to, int from, const uint8_t hash[EHR_HASH_BYTES])
{
    assert_int_equal(write(to, hash, EHR_HASH_BYTES), EHR_HASH_BYTES);
    uint8_t ok = 0;
    assert_int_equal(read(from, &ok, 1), 1);
    return ok == 1;
}

/* Blocks in the writer's overlay, then checkpointed ones, then newer
 * overlay blocks: the read-only process answers for all of them, having
 * rebuilt its own overlay at open and caught up before each read. */
static void test_read_only_process_sees_overlay_and_checkpointed_blocks(void **state)
{
    fixture *f = *state;
    ledger_close(f->l); /* fork with no environment open (LMDB) */
    f->l = NULL;
    int to_child[2], from_child[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(from_child), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        follower_run(f->dir, to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    fixture_open(f, LEDGER_SYNC_NONE);
    ledger__checkpoint_pause(f->l, true);
    uint8_t hashes[6][EHR_HASH_BYTES];
    for (int i = 0; i < 6; i++) {
        tu_batch b;
        tu_batch_make(&b, &f->key, 1, 0);
        memcpy(hashes[i], b.hashes[0], EHR_HASH_BYTES);
        ledger_tip tip;
        assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
        uint8_t *block;
        size_t len;
        tu_block_next(&tip, &b, &f->key, &block, &len);
        ledger_append req = {.block = block,
                             .block_len = len,
                             .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                             .writes = b.writes,
                             .write_count = 1,
                             .results = b.results,
                             .result_count = b.count,
                             .applied_index = tip.height + 1};
        assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
        ehr_free(block);
        tu_batch_free(&b);
        if (i == 1) { /* blocks 1-2 in the overlay: the child opens now */
            assert_true(ask(to_child[1], from_child[0], hashes[0]));
            assert_true(ask(to_child[1], from_child[0], hashes[1]));
        }
        if (i == 3) /* blocks 0-4 checkpointed */
            assert_int_equal(ledger_checkpoint(f->l, NULL), 0);
    }
    for (int i = 0; i < 6; i++)
        assert_true(ask(to_child[1], from_child[0], hashes[i]));
    uint8_t unknown[EHR_HASH_BYTES] = {0x77};
    assert_false(ask(to_child[1], from_child[0], unknown));
    close(to_child[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(from_child[0]);
}

/* One writable open at a time: a second writer's overlay would miss the
 * first one's blocks. Readers are welcome. */
static void test_a_second_writer_is_refused(void **state)
{
    fixture *f = *state;
    ledger_close(f->l); /* fork with no environment open (LMDB) */
    f->l = NULL;
    int ready[2], done[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(done), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Only the parent's ends stay open there: if it fails and exits,
         * the read below sees the end of the pipe and the child exits. */
        close(ready[0]);
        close(done[1]);
        ledger *w;
        uint8_t byte = ledger_open(f->dir, NULL, &w, NULL) == 0;
        if (write(ready[1], &byte, 1) != 1)
            _exit(2);
        if (read(done[0], &byte, 1) < 0)
            _exit(3);
        ledger_close(w);
        _exit(0);
    }
    close(ready[1]);
    close(done[0]);
    uint8_t ok = 0;
    assert_int_equal(read(ready[0], &ok, 1), 1);
    assert_int_equal(ok, 1);
    ledger *l;
    assert_int_equal(ledger_open(f->dir, NULL, &l, NULL), EHR_EAGAIN);
    assert_int_equal(ledger_open(f->dir, &(ledger_options){.read_only = true}, &l, NULL), 0);
    ledger_close(l);
    assert_int_equal(write(done[1], &ok, 1), 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);
    close(done[1]);
    fixture_open(f, LEDGER_SYNC_NONE); /* free again once the writer closed */
}

/* ---- Readers racing appends and checkpoints ---- */

enum { RACE_BLOCKS = 240, RACE_TXS = 4, RACE_READERS = 2, RACE_WAIT_MS = 30000 };

typedef struct race {
    ledger *l;
    const ehr_signing_key *key;
    uint8_t hashes[RACE_BLOCKS * RACE_TXS][EHR_HASH_BYTES];
    uint64_t heights[RACE_BLOCKS * RACE_TXS];
    _Atomic size_t published; /* hashes whose append has returned */
    _Atomic bool done;
    _Atomic long failures;
    _Atomic long lookups;
    uint64_t checkpoints_before; /* the ledger's count when the run began */
} race;

/* Wait (up to RACE_WAIT_MS) until L has committed WANT checkpoints. */
static void race_wait_checkpoints(ledger *l, uint64_t want)
{
    for (int waited = 0; waited < RACE_WAIT_MS; waited++) {
        ledger_stats s;
        if (ledger_stats_get(l, &s, NULL) == 0 && s.checkpoints >= want)
            return;
        usleep(1000);
    }
}

static void *race_appender(void *arg)
{
    race *r = arg;
    for (int i = 0; i < RACE_BLOCKS; i++) {
        /* A third and two thirds of the way, let the checkpointer catch
         * up before going on: the run then interleaves at least two
         * checkpoints with appends and reads however the threads are
         * scheduled (a loaded machine once ran all the appends before the
         * checkpointer's second turn). */
        if (i == RACE_BLOCKS / 3)
            race_wait_checkpoints(r->l, r->checkpoints_before + 1);
        if (i == 2 * RACE_BLOCKS / 3)
            race_wait_checkpoints(r->l, r->checkpoints_before + 2);
        ledger_tip tip;
        if (ledger_tip_get(r->l, &tip, NULL) != 0) {
            r->failures++;
            break;
        }
        tu_batch b;
        tu_batch_make(&b, r->key, RACE_TXS, 0);
        uint8_t *block;
        size_t len;
        tu_block_next(&tip, &b, r->key, &block, &len);
        ledger_append req = {.block = block,
                             .block_len = len,
                             .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                             .writes = b.writes,
                             .write_count = b.count,
                             .results = b.results,
                             .result_count = b.count,
                             .applied_index = tip.height + 1};
        if (ledger_append_block(r->l, &req, NULL) != 0)
            r->failures++;
        size_t at = r->published;
        for (size_t j = 0; j < RACE_TXS; j++) {
            memcpy(r->hashes[at + j], b.hashes[j], EHR_HASH_BYTES);
            r->heights[at + j] = tip.height + 1;
        }
        r->published = at + RACE_TXS;
        ehr_free(block);
        tu_batch_free(&b);
    }
    r->done = true;
    return NULL;
}

static void *race_checkpointer(void *arg)
{
    race *r = arg;
    while (!r->done)
        if (ledger_checkpoint(r->l, NULL) != 0)
            r->failures++;
    return NULL;
}

static int scan_in_order(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                         size_t value_len)
{
    (void)value;
    (void)value_len;
    uint8_t *last = ctx; /* 1 + key: last[0] says whether there is one */
    if (last[0] && ledger__key_cmp(last + 1, 4 + EHR_HASH_BYTES, key, key_len) >= 0)
        return EHR_ECORRUPT;
    last[0] = 1;
    memcpy(last + 1, key, key_len);
    return 0;
}

static void *race_reader(void *arg)
{
    race *r = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    while (!r->done) {
        size_t n = r->published;
        if (n == 0)
            continue;
        size_t i = (size_t)rand_r(&seed) % n;
        ledger_tx_location loc;
        if (ledger_tx_get(r->l, r->hashes[i], &loc, NULL, NULL, NULL, NULL, NULL) != 0 ||
            loc.height != r->heights[i])
            r->failures++;
        uint8_t key[4 + EHR_HASH_BYTES], *value = NULL;
        size_t value_len;
        memcpy(key, "rec/", 4);
        memcpy(key + 4, r->hashes[i], EHR_HASH_BYTES);
        if (ledger_state_get(r->l, key, sizeof key, &value, &value_len, NULL) != 0)
            r->failures++;
        ehr_free(value);
        uint8_t last[1 + 4 + EHR_HASH_BYTES] = {0};
        long seen = ledger_state_scan(r->l, (const uint8_t *)"rec/", 4, NULL, 0,
                                      LEDGER_SCAN_COUNT_MAX, scan_in_order, last, NULL);
        if (seen < (long)n) /* every published key, in order */
            r->failures++;
        r->lookups++;
    }
    return NULL;
}

/* Invariant 2 of derived.c under load: while one thread appends, another
 * forces checkpoints back to back and readers look up transactions and
 * state keys whose appends have returned, and scan them all in order;
 * not one read may miss, whichever side of a checkpoint it falls on. */
static void test_readers_never_miss_a_row_while_checkpoints_run(void **state)
{
    fixture *f = *state;
    ledger__checkpoint_pause(f->l, false);
    race *r = ehr_calloc(1, sizeof *r);
    r->l = f->l;
    r->key = &f->key;
    r->checkpoints_before = stats_of(f->l).checkpoints;
    pthread_t append_thread, checkpointer, readers[RACE_READERS];
    assert_int_equal(pthread_create(&append_thread, NULL, race_appender, r), 0);
    assert_int_equal(pthread_create(&checkpointer, NULL, race_checkpointer, r), 0);
    for (int i = 0; i < RACE_READERS; i++)
        assert_int_equal(pthread_create(&readers[i], NULL, race_reader, r), 0);
    assert_int_equal(pthread_join(append_thread, NULL), 0);
    assert_int_equal(pthread_join(checkpointer, NULL), 0);
    for (int i = 0; i < RACE_READERS; i++)
        assert_int_equal(pthread_join(readers[i], NULL), 0);
    printf("# %ld lookups, %llu checkpoints\n", (long)r->lookups,
           (unsigned long long)stats_of(f->l).checkpoints);
    assert_int_equal(r->failures, 0);
    assert_true(r->lookups > 0);
    assert_true(stats_of(f->l).checkpoints >= r->checkpoints_before + 2);
    ehr_free(r);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_log_record_is_canonical_protobuf_and_checked),
        cmocka_unit_test(test_write_log_decoder_enforces_the_key_limit),
        cmocka_unit_test(test_write_log_decoder_enforces_the_result_limit),
        T(test_reads_merge_the_overlay_with_the_derived_tables),
        T(test_overlay_block_limit_makes_the_next_append_wait),
        T(test_overlay_byte_limit_edge),
        T(test_derived_tables_are_rebuilt_when_lost_or_foreign),
        T(test_catch_up_at_open_checkpoints_in_steps),
        T(test_read_only_replay_limit_edge),
        T(test_read_only_process_sees_overlay_and_checkpointed_blocks),
        T(test_a_second_writer_is_refused),
        T(test_readers_never_miss_a_row_while_checkpoints_run),
    };
    if (ehr_crypto_init() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
