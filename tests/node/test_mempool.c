/*
 * test_mempool - the node's mempool: every admission rule with its own
 * verdict and error, the count and byte limits at their edges, FIFO batches,
 * removal of committed and expired transactions, the real ledger lookup, and
 * a randomized comparison against a naive reference model.
 *
 * Transactions are real signed envelopes (tests/ledger's builders). The
 * ledger is a fake hash set except in the one test of mempool_ledger_lookup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ledger_testutil.h"
#include "mempool.h"

#define NOW_MS (TU_GENESIS_TIME_MS + 1000000ull)
#define LATER_MS (NOW_MS + 3600ull * 1000)

/* ---- A fake ledger: a small set of hashes ---- */

enum { FAKE_LEDGER_MAX = 4096 };
typedef struct fake_ledger {
    uint8_t (*hashes)[EHR_HASH_BYTES];
    size_t count;
    int fail; /* if non-zero, every lookup returns it */
} fake_ledger;

static int fake_lookup(void *ctx, const uint8_t hash[EHR_HASH_BYTES])
{
    fake_ledger *f = ctx;
    if (f->fail != 0)
        return f->fail;
    for (size_t i = 0; i < f->count; i++)
        if (memcmp(f->hashes[i], hash, EHR_HASH_BYTES) == 0)
            return 1;
    return 0;
}

static void fake_add(fake_ledger *f, const uint8_t hash[EHR_HASH_BYTES])
{
    assert_true(f->count < FAKE_LEDGER_MAX);
    memcpy(f->hashes[f->count++], hash, EHR_HASH_BYTES);
}

/* ---- Fixture ---- */

typedef struct fixture {
    ehr_signing_key key;
    fake_ledger ledger;
    mempool pool;
} fixture;

static void pool_check(const mempool *pool)
{
    char msg[MEMPOOL_REASON_BYTES_MAX];
    int rc = mempool_check_invariants(pool, msg);
    if (rc != 0)
        fail_msg("mempool invariant broken: %s", msg);
}

static void fixture_pool(fixture *f, uint32_t count_max, uint64_t bytes_max)
{
    mempool_config cfg = {.chain_id = TU_CHAIN_ID,
                          .tx_count_max = count_max,
                          .bytes_max = bytes_max,
                          .ledger_lookup = fake_lookup,
                          .ledger_lookup_ctx = &f->ledger};
    assert_int_equal(mempool_init(&f->pool, &cfg), 0);
}

static int setup(void **state)
{
    fixture *f = ehr_calloc(1, sizeof *f);
    assert_int_equal(ehr_crypto_init(), 0);
    tu_key(&f->key, 7);
    f->ledger.hashes = ehr_calloc(FAKE_LEDGER_MAX, EHR_HASH_BYTES);
    fixture_pool(f, 16, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    pool_check(&f->pool);
    mempool_destroy(&f->pool);
    ehr_free(f->ledger.hashes);
    ehr_free(f);
    return 0;
}

/* A signed envelope for the test chain; caller frees *OUT. */
static void make_tx(fixture *f, uint64_t expiry_ms, size_t pad, uint8_t **out, size_t *len,
                    uint8_t hash[EHR_HASH_BYTES])
{
    tu_tx(&f->key, TU_CHAIN_ID, expiry_ms, pad, out, len, hash);
}

/* Admit a fresh tx of PAD bytes; returns its hash in HASH and length. */
static size_t admit_fresh(fixture *f, size_t pad, uint8_t hash[EHR_HASH_BYTES])
{
    uint8_t *env;
    size_t len;
    make_tx(f, LATER_MS, pad, &env, &len, hash);
    mempool_admit_result r;
    int rc = mempool_admit(&f->pool, env, len, NOW_MS, &r);
    if (rc != 0)
        fail_msg("admission failed: %s (%s)", ehr_errname(rc), r.reason);
    assert_int_equal(r.verdict, MEMPOOL_ADMITTED);
    assert_memory_equal(r.hash, hash, EHR_HASH_BYTES);
    ehr_free(env);
    return len;
}

/* Admission of ENV must fail with ERR and VERDICT and leave the pool as it was. */
static void expect_reject(fixture *f, const uint8_t *env, size_t len, uint64_t now_ms, int err,
                          enum mempool_verdict verdict)
{
    size_t count = mempool_count(&f->pool);
    uint64_t bytes = mempool_bytes(&f->pool);
    mempool_admit_result r;
    assert_int_equal(mempool_admit(&f->pool, env, len, now_ms, &r), err);
    assert_int_equal(r.verdict, verdict);
    assert_true(strlen(r.reason) > 0);
    assert_null(strchr(r.reason, '\n')); /* one line */
    assert_int_equal(mempool_count(&f->pool), count);
    assert_int_equal(mempool_bytes(&f->pool), bytes);
    pool_check(&f->pool);
}

/* ---- Admission rules ---- */

static void test_admit_valid_tx_is_held_with_its_hash(void **state)
{
    fixture *f = *state;
    uint8_t hash[EHR_HASH_BYTES];
    size_t len = admit_fresh(f, 10, hash);
    assert_int_equal(mempool_count(&f->pool), 1);
    assert_int_equal(mempool_pending_count(&f->pool), 1);
    assert_int_equal(mempool_bytes(&f->pool), len);
    assert_true(mempool_contains(&f->pool, hash));
    pool_check(&f->pool);
}

static void test_admit_rejects_bad_signature(void **state)
{
    fixture *f = *state;
    uint8_t *env, hash[EHR_HASH_BYTES];
    size_t len;
    make_tx(f, LATER_MS, 10, &env, &len, hash);
    env[len - 1] ^= 0x01; /* the signature is the envelope's last field */
    expect_reject(f, env, len, NOW_MS, EHR_EBADSIG, MEMPOOL_REJECT_SIGNATURE);
    assert_false(mempool_contains(&f->pool, hash));
    ehr_free(env);
}

static void test_admit_rejects_wrong_chain(void **state)
{
    fixture *f = *state;
    uint8_t *env;
    size_t len;
    tu_tx(&f->key, "another-chain", LATER_MS, 10, &env, &len, NULL);
    expect_reject(f, env, len, NOW_MS, EHR_ECHAIN, MEMPOOL_REJECT_CHAIN);
    ehr_free(env);
}

static void test_admit_rejects_expired(void **state)
{
    fixture *f = *state;
    uint8_t *env;
    size_t len;
    make_tx(f, NOW_MS - 1, 10, &env, &len, NULL);
    expect_reject(f, env, len, NOW_MS, EHR_EEXPIRED, MEMPOOL_REJECT_EXPIRED);
    ehr_free(env);
}

static void test_admit_rejects_expiry_within_clock_skew_and_accepts_just_beyond(void **state)
{
    fixture *f = *state;
    uint8_t *env;
    size_t len;
    /* Expiry exactly now, and exactly at the skew's edge: both refused. */
    make_tx(f, NOW_MS, 10, &env, &len, NULL);
    expect_reject(f, env, len, NOW_MS, EHR_EEXPIRED, MEMPOOL_REJECT_EXPIRING);
    ehr_free(env);
    make_tx(f, NOW_MS + MEMPOOL_CLOCK_SKEW_MS, 10, &env, &len, NULL);
    expect_reject(f, env, len, NOW_MS, EHR_EEXPIRED, MEMPOOL_REJECT_EXPIRING);
    /* The same transaction one millisecond earlier in time is beyond the skew. */
    mempool_admit_result r;
    assert_int_equal(mempool_admit(&f->pool, env, len, NOW_MS - 1, &r), 0);
    ehr_free(env);
}

static void test_admit_rejects_oversize_before_reading(void **state)
{
    fixture *f = *state;
    size_t len = EHR_TX_BYTES_MAX + 1;
    uint8_t *env = ehr_calloc(1, len);
    expect_reject(f, env, len, NOW_MS, EHR_ETOOBIG, MEMPOOL_REJECT_TOO_BIG);
    ehr_free(env);
}

static void test_admit_rejects_malformed(void **state)
{
    fixture *f = *state;
    uint8_t *env;
    size_t len;
    make_tx(f, LATER_MS, 10, &env, &len, NULL);
    /* Truncated framing: no hash can be known. */
    mempool_admit_result r;
    int rc = mempool_admit(&f->pool, env, len - 1, NOW_MS, &r);
    assert_true(rc == EHR_ETRUNCATED || rc == EHR_EINVAL);
    assert_int_equal(r.verdict, MEMPOOL_REJECT_MALFORMED);
    assert_false(r.hash_known);
    /* Well framed and signed, but the body is not a TxBody. */
    uint8_t junk[40];
    memset(junk, 0xff, sizeof junk);
    uint8_t *bad;
    size_t bad_len;
    assert_int_equal(ledger_tx_envelope_build(junk, sizeof junk, &f->key, &bad, &bad_len), 0);
    expect_reject(f, bad, bad_len, NOW_MS, EHR_EINVAL, MEMPOOL_REJECT_MALFORMED);
    expect_reject(f, NULL, 0, NOW_MS, EHR_ETRUNCATED, MEMPOOL_REJECT_MALFORMED);
    ehr_free(bad);
    ehr_free(env);
}

static void test_admit_rejects_duplicate_in_pool(void **state)
{
    fixture *f = *state;
    uint8_t *env, hash[EHR_HASH_BYTES];
    size_t len;
    make_tx(f, LATER_MS, 10, &env, &len, hash);
    mempool_admit_result r;
    assert_int_equal(mempool_admit(&f->pool, env, len, NOW_MS, &r), 0);
    expect_reject(f, env, len, NOW_MS, EHR_EEXIST, MEMPOOL_REJECT_DUPLICATE_POOL);
    /* Still a duplicate once handed to a proposal. */
    ledger_bytes envs[1];
    uint8_t hashes[1][EHR_HASH_BYTES];
    mempool_batch b = {.envelopes = envs, .hashes = hashes, .capacity = 1};
    assert_int_equal(mempool_batch_take(&f->pool, 1, UINT64_MAX, &b), 1);
    expect_reject(f, env, len, NOW_MS, EHR_EEXIST, MEMPOOL_REJECT_DUPLICATE_POOL);
    ehr_free(env);
}

static void test_admit_rejects_duplicate_on_ledger(void **state)
{
    fixture *f = *state;
    uint8_t *env, hash[EHR_HASH_BYTES];
    size_t len;
    make_tx(f, LATER_MS, 10, &env, &len, hash);
    fake_add(&f->ledger, hash);
    expect_reject(f, env, len, NOW_MS, EHR_EEXIST, MEMPOOL_REJECT_DUPLICATE_LEDGER);
    ehr_free(env);
}

static void test_admit_fails_with_ledger_lookup_error(void **state)
{
    fixture *f = *state;
    uint8_t *env;
    size_t len;
    make_tx(f, LATER_MS, 10, &env, &len, NULL);
    f->ledger.fail = EHR_ECORRUPT;
    expect_reject(f, env, len, NOW_MS, EHR_ECORRUPT, MEMPOOL_REJECT_LOOKUP);
    f->ledger.fail = 0;
    ehr_free(env);
}

static void test_duplicate_check_costs_no_signature_verification(void **state)
{
    /* A pool duplicate whose signature was since corrupted is still reported
     * as a duplicate: the hash check ran before the signature check. */
    fixture *f = *state;
    uint8_t *env;
    size_t len;
    make_tx(f, LATER_MS, 10, &env, &len, NULL);
    mempool_admit_result r;
    assert_int_equal(mempool_admit(&f->pool, env, len, NOW_MS, &r), 0);
    env[len - 1] ^= 0x01;
    expect_reject(f, env, len, NOW_MS, EHR_EEXIST, MEMPOOL_REJECT_DUPLICATE_POOL);
    ehr_free(env);
}

/* ---- Limits ---- */

/* Admission in steps: the pool and the ledger may change between begin and
 * finish (the signature is verified elsewhere meanwhile); finish sees it. */
static void test_admission_in_steps_rechecks_what_changed_meanwhile(void **state)
{
    fixture *f = *state;
    uint8_t *a, *b, *c;
    size_t alen, blen, clen;
    uint8_t ha[EHR_HASH_BYTES], hb[EHR_HASH_BYTES], hc[EHR_HASH_BYTES];
    make_tx(f, LATER_MS, 10, &a, &alen, ha);
    make_tx(f, LATER_MS, 10, &b, &blen, hb);
    make_tx(f, LATER_MS, 10, &c, &clen, hc);
    mempool_admit_result r;
    mempool_verified va, vb, vc;

    /* a: begun twice (two submissions of one tx), finished twice: one copy. */
    assert_int_equal(mempool_admit_begin(&f->pool, a, alen, &r), 0);
    assert_int_equal(mempool_admit_begin(&f->pool, a, alen, &r), 0);
    assert_int_equal(mempool_count(&f->pool), 0); /* begin changes nothing */
    assert_int_equal(mempool_tx_verify(mempool_chain_id(&f->pool), a, alen, NOW_MS, &va), 0);
    assert_memory_equal(va.hash, ha, EHR_HASH_BYTES);
    assert_int_equal(mempool_admit_finish(&f->pool, a, alen, &va, &r), 0);
    assert_int_equal(mempool_admit_finish(&f->pool, a, alen, &va, &r), EHR_EEXIST);
    assert_int_equal(r.verdict, MEMPOOL_REJECT_DUPLICATE_POOL);
    assert_int_equal(mempool_count(&f->pool), 1);

    /* b: committed on the ledger while it was being verified. */
    assert_int_equal(mempool_admit_begin(&f->pool, b, blen, &r), 0);
    assert_int_equal(mempool_tx_verify(TU_CHAIN_ID, b, blen, NOW_MS, &vb), 0);
    fake_add(&f->ledger, hb);
    assert_int_equal(mempool_admit_finish(&f->pool, b, blen, &vb, &r), EHR_EEXIST);
    assert_int_equal(r.verdict, MEMPOOL_REJECT_DUPLICATE_LEDGER);

    /* c: a bad signature found by the verification is refused at finish. */
    c[clen - 1] ^= 1;
    assert_int_equal(mempool_admit_begin(&f->pool, c, clen, &r), 0);
    assert_int_equal(mempool_tx_verify(TU_CHAIN_ID, c, clen, NOW_MS, &vc), EHR_EBADSIG);
    assert_true(strlen(vc.reason) > 0);
    assert_int_equal(mempool_admit_finish(&f->pool, c, clen, &vc, &r), EHR_EBADSIG);
    assert_int_equal(r.verdict, MEMPOOL_REJECT_SIGNATURE);
    assert_int_equal(mempool_count(&f->pool), 1);
    pool_check(&f->pool);
    ehr_free(a);
    ehr_free(b);
    ehr_free(c);
}

/* The pool filled up while a transaction was being verified: finish says full. */
static void test_admission_in_steps_finds_a_pool_filled_meanwhile(void **state)
{
    fixture *f = *state;
    mempool_destroy(&f->pool);
    fixture_pool(f, 1, 0);
    uint8_t *a;
    size_t alen;
    uint8_t ha[EHR_HASH_BYTES], other[EHR_HASH_BYTES];
    make_tx(f, LATER_MS, 10, &a, &alen, ha);
    mempool_admit_result r;
    mempool_verified va;
    assert_int_equal(mempool_admit_begin(&f->pool, a, alen, &r), 0);
    assert_int_equal(mempool_tx_verify(TU_CHAIN_ID, a, alen, NOW_MS, &va), 0);
    admit_fresh(f, 10, other);
    assert_int_equal(mempool_admit_finish(&f->pool, a, alen, &va, &r), EHR_EFULL);
    assert_int_equal(r.verdict, MEMPOOL_REJECT_FULL_COUNT);
    ehr_free(a);
}

static void test_config_ranges_are_validated(void **state)
{
    fixture *f = *state;
    mempool p;
    mempool_config c = {.chain_id = TU_CHAIN_ID, .ledger_lookup = fake_lookup};
    c.tx_count_max = MEMPOOL_TX_COUNT_MAX + 1;
    assert_int_equal(mempool_init(&p, &c), EHR_EINVAL);
    c.tx_count_max = 1;
    c.bytes_max = MEMPOOL_BYTES_MIN - 1;
    assert_int_equal(mempool_init(&p, &c), EHR_EINVAL);
    c.bytes_max = MEMPOOL_BYTES_MAX + 1;
    assert_int_equal(mempool_init(&p, &c), EHR_EINVAL);
    c.bytes_max = MEMPOOL_BYTES_MIN;
    assert_int_equal(mempool_init(&p, &c), 0);
    mempool_destroy(&p);
    c.bytes_max = MEMPOOL_BYTES_MAX;
    c.tx_count_max = MEMPOOL_TX_COUNT_MAX;
    assert_int_equal(mempool_init(&p, &c), 0);
    mempool_destroy(&p);
    c.chain_id = "";
    assert_int_equal(mempool_init(&p, &c), EHR_EINVAL);
    c.chain_id = TU_CHAIN_ID;
    c.ledger_lookup = NULL;
    assert_int_equal(mempool_init(&p, &c), EHR_EINVAL);
    (void)f;
}

static void test_full_by_count_exact_fill_then_one_more_is_efull(void **state)
{
    fixture *f = *state;
    mempool_destroy(&f->pool);
    fixture_pool(f, 3, 0);
    uint8_t hash[EHR_HASH_BYTES];
    for (int i = 0; i < 3; i++)
        admit_fresh(f, 10, hash);
    assert_int_equal(mempool_count(&f->pool), 3);
    uint8_t *env;
    size_t len;
    make_tx(f, LATER_MS, 10, &env, &len, hash);
    expect_reject(f, env, len, NOW_MS, EHR_EFULL, MEMPOOL_REJECT_FULL_COUNT);
    assert_false(mempool_contains(&f->pool, hash));
    /* Room again once one leaves. */
    ledger_bytes envs[1];
    uint8_t hashes[1][EHR_HASH_BYTES];
    mempool_batch b = {.envelopes = envs, .hashes = hashes, .capacity = 1};
    assert_int_equal(mempool_batch_take(&f->pool, 1, UINT64_MAX, &b), 1);
    assert_int_equal(mempool_remove_committed(&f->pool, hashes, 1), 1);
    mempool_admit_result r;
    assert_int_equal(mempool_admit(&f->pool, env, len, NOW_MS, &r), 0);
    ehr_free(env);
}

static void test_full_by_bytes_exact_fill_then_one_byte_more_is_efull(void **state)
{
    fixture *f = *state;
    /* Two transactions whose lengths sum to exactly the byte limit. */
    uint8_t *a, *b, *c, ha[EHR_HASH_BYTES], hb[EHR_HASH_BYTES], hc[EHR_HASH_BYTES];
    size_t la, lb, lc;
    make_tx(f, LATER_MS, 40000, &a, &la, ha);
    size_t want_b = (size_t)MEMPOOL_BYTES_MIN - la;
    size_t pad = want_b > 300 ? want_b - 300 : 0;
    make_tx(f, LATER_MS, pad, &b, &lb, hb);
    /* Adjust the pad until the envelope is exactly the remaining room. */
    for (int tries = 0; lb != want_b && tries < 50; tries++) {
        pad = lb < want_b ? pad + (want_b - lb) : pad - (lb - want_b);
        ehr_free(b);
        make_tx(f, LATER_MS, pad, &b, &lb, hb);
    }
    assert_int_equal(lb, want_b);
    make_tx(f, LATER_MS, 0, &c, &lc, hc);

    mempool_destroy(&f->pool);
    fixture_pool(f, 100, MEMPOOL_BYTES_MIN);
    mempool_admit_result r;
    assert_int_equal(mempool_admit(&f->pool, a, la, NOW_MS, &r), 0);
    assert_int_equal(mempool_admit(&f->pool, b, lb, NOW_MS, &r), 0);
    assert_int_equal(mempool_bytes(&f->pool), MEMPOOL_BYTES_MIN);
    expect_reject(f, c, lc, NOW_MS, EHR_EFULL, MEMPOOL_REJECT_FULL_BYTES);

    /* One byte less of room: B no longer fits after A. */
    mempool_destroy(&f->pool);
    fixture_pool(f, 100, MEMPOOL_BYTES_MIN);
    assert_int_equal(mempool_admit(&f->pool, a, la, NOW_MS, &r), 0);
    assert_int_equal(mempool_admit(&f->pool, c, lc, NOW_MS, &r), 0);
    expect_reject(f, b, lb, NOW_MS, EHR_EFULL, MEMPOOL_REJECT_FULL_BYTES);
    ehr_free(a);
    ehr_free(b);
    ehr_free(c);
}

/* ---- Batches ---- */

static void test_batches_are_fifo_and_bounded_by_count(void **state)
{
    fixture *f = *state;
    uint8_t h[6][EHR_HASH_BYTES];
    for (int i = 0; i < 6; i++)
        admit_fresh(f, 10, h[i]);
    ledger_bytes envs[8];
    uint8_t hashes[8][EHR_HASH_BYTES];
    mempool_batch b = {.envelopes = envs, .hashes = hashes, .capacity = 8};
    assert_int_equal(mempool_batch_take(&f->pool, 4, UINT64_MAX, &b), 4);
    for (int i = 0; i < 4; i++) {
        assert_memory_equal(hashes[i], h[i], EHR_HASH_BYTES);
        uint8_t body_hash[EHR_HASH_BYTES];
        ledger_tx_view v;
        assert_int_equal(ledger_tx_envelope_parse(envs[i].data, envs[i].len, &v, NULL), 0);
        ledger_tx_hash(v.body, v.body_len, body_hash);
        assert_memory_equal(body_hash, h[i], EHR_HASH_BYTES);
    }
    assert_int_equal(mempool_count(&f->pool), 6);
    assert_int_equal(mempool_pending_count(&f->pool), 2);
    pool_check(&f->pool);
    /* The next batch continues where the last stopped. */
    assert_int_equal(mempool_batch_take(&f->pool, 8, UINT64_MAX, &b), 2);
    assert_memory_equal(hashes[0], h[4], EHR_HASH_BYTES);
    assert_memory_equal(hashes[1], h[5], EHR_HASH_BYTES);
    assert_int_equal(mempool_batch_take(&f->pool, 8, UINT64_MAX, &b), 0);
    /* Requeue puts all six back in admission order. */
    assert_int_equal(mempool_proposed_requeue(&f->pool), 6);
    pool_check(&f->pool);
    assert_int_equal(mempool_batch_take(&f->pool, 8, UINT64_MAX, &b), 6);
    for (int i = 0; i < 6; i++)
        assert_memory_equal(hashes[i], h[i], EHR_HASH_BYTES);
    /* The caller's capacity bounds a batch too. */
    assert_int_equal(mempool_proposed_requeue(&f->pool), 6);
    b.capacity = 3;
    assert_int_equal(mempool_batch_take(&f->pool, 100, UINT64_MAX, &b), 3);
}

static void test_batches_are_bounded_by_bytes_and_keep_order(void **state)
{
    fixture *f = *state;
    uint8_t h[3][EHR_HASH_BYTES];
    size_t l0 = admit_fresh(f, 100, h[0]);
    size_t l1 = admit_fresh(f, 2000, h[1]);
    size_t l2 = admit_fresh(f, 10, h[2]);
    ledger_bytes envs[4];
    uint8_t hashes[4][EHR_HASH_BYTES];
    mempool_batch b = {.envelopes = envs, .hashes = hashes, .capacity = 4};
    /* Exactly the first one's size: one, even though the third would fit. */
    assert_int_equal(mempool_batch_take(&f->pool, 4, l0 + l1 - 1, &b), 1);
    assert_int_equal(b.bytes, l0);
    /* Exactly the next two's size: both. */
    assert_int_equal(mempool_batch_take(&f->pool, 4, l1 + l2, &b), 2);
    assert_int_equal(b.bytes, l1 + l2);
    assert_memory_equal(hashes[0], h[1], EHR_HASH_BYTES);
    assert_memory_equal(hashes[1], h[2], EHR_HASH_BYTES);
    /* A bound below the oldest's size hands out nothing. */
    assert_int_equal(mempool_proposed_requeue(&f->pool), 3);
    assert_int_equal(mempool_batch_take(&f->pool, 4, l0 - 1, &b), 0);
    assert_int_equal(mempool_pending_count(&f->pool), 3);
}

/* ---- Removal ---- */

static void test_remove_committed_drops_pending_and_proposed_and_ignores_unknown(void **state)
{
    fixture *f = *state;
    uint8_t h[5][EHR_HASH_BYTES];
    uint64_t total = 0;
    size_t len[5];
    for (int i = 0; i < 5; i++)
        total += len[i] = admit_fresh(f, 10 + 50 * (size_t)i, h[i]);
    ledger_bytes envs[2];
    uint8_t taken[2][EHR_HASH_BYTES];
    mempool_batch b = {.envelopes = envs, .hashes = taken, .capacity = 2};
    assert_int_equal(mempool_batch_take(&f->pool, 2, UINT64_MAX, &b), 2);
    /* A block from another proposer: h[1] (proposed), h[3] (pending), and
     * two the pool never had. */
    uint8_t block[4][EHR_HASH_BYTES];
    memcpy(block[0], h[1], EHR_HASH_BYTES);
    memset(block[1], 0xab, EHR_HASH_BYTES);
    memcpy(block[2], h[3], EHR_HASH_BYTES);
    memset(block[3], 0xcd, EHR_HASH_BYTES);
    assert_int_equal(mempool_remove_committed(&f->pool, block, 4), 2);
    pool_check(&f->pool);
    assert_int_equal(mempool_count(&f->pool), 3);
    assert_int_equal(mempool_bytes(&f->pool), total - len[1] - len[3]);
    assert_false(mempool_contains(&f->pool, h[1]));
    assert_false(mempool_contains(&f->pool, h[3]));
    assert_true(mempool_contains(&f->pool, h[0]));
    /* Removing them again removes nothing. */
    assert_int_equal(mempool_remove_committed(&f->pool, block, 4), 0);
    /* What is left comes out in order: h[0] after requeue, then h[2], h[4]. */
    assert_int_equal(mempool_proposed_requeue(&f->pool), 1);
    ledger_bytes envs3[3];
    uint8_t left[3][EHR_HASH_BYTES];
    mempool_batch b3 = {.envelopes = envs3, .hashes = left, .capacity = 3};
    assert_int_equal(mempool_batch_take(&f->pool, 3, UINT64_MAX, &b3), 3);
    assert_memory_equal(left[0], h[0], EHR_HASH_BYTES);
    assert_memory_equal(left[1], h[2], EHR_HASH_BYTES);
    assert_memory_equal(left[2], h[4], EHR_HASH_BYTES);
}

static void test_expire_drops_what_a_block_at_that_time_may_not_include(void **state)
{
    fixture *f = *state;
    const uint64_t t = NOW_MS + 10000;
    uint8_t *env[3], h[3][EHR_HASH_BYTES];
    size_t len[3];
    make_tx(f, t - 1, 10, &env[0], &len[0], h[0]);
    make_tx(f, t, 10, &env[1], &len[1], h[1]);
    make_tx(f, t + 1, 10, &env[2], &len[2], h[2]);
    mempool_admit_result r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mempool_admit(&f->pool, env[i], len[i], NOW_MS, &r), 0);
        ehr_free(env[i]);
    }
    ledger_bytes envs[1];
    uint8_t taken[1][EHR_HASH_BYTES];
    mempool_batch b = {.envelopes = envs, .hashes = taken, .capacity = 1};
    assert_int_equal(mempool_batch_take(&f->pool, 1, UINT64_MAX, &b), 1);
    assert_int_equal(mempool_expire(&f->pool, NOW_MS), 0);
    assert_int_equal(mempool_expire(&f->pool, t - 1), 0); /* expiry == block time: allowed */
    assert_int_equal(mempool_count(&f->pool), 3);
    assert_int_equal(mempool_expire(&f->pool, t), 1); /* the proposed one, h[0] */
    assert_false(mempool_contains(&f->pool, h[0]));
    pool_check(&f->pool);
    assert_int_equal(mempool_expire(&f->pool, t + 2), 2);
    assert_int_equal(mempool_count(&f->pool), 0);
    assert_int_equal(mempool_bytes(&f->pool), 0);
}

static void test_real_ledger_lookup_finds_committed_tx(void **state)
{
    fixture *f = *state;
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, &(ledger_options){.sync = LEDGER_SYNC_NONE}, &l, NULL), 0);
    uint8_t *genesis;
    size_t genesis_len;
    tu_genesis(&f->key, 1, &genesis, &genesis_len);
    assert_int_equal(ledger_genesis_init(l, genesis, genesis_len, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    tu_batch batch;
    tu_batch_make(&batch, &f->key, 2, 10);
    uint8_t *block;
    size_t block_len;
    tu_block_next(&tip, &batch, &f->key, &block, &block_len);
    ledger_append a = {.block = block,
                       .block_len = block_len,
                       .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])batch.hashes,
                       .writes = batch.writes,
                       .write_count = batch.count,
                       .results = batch.results,
                       .result_count = batch.count,
                       .applied_index = 1};
    assert_int_equal(ledger_append_block(l, &a, NULL), 0);

    mempool p;
    mempool_config c = {
        .chain_id = TU_CHAIN_ID, .ledger_lookup = mempool_ledger_lookup, .ledger_lookup_ctx = l};
    assert_int_equal(mempool_init(&p, &c), 0);
    mempool_admit_result r;
    uint64_t now = TU_GENESIS_TIME_MS + 1000;
    assert_int_equal(mempool_admit(&p, batch.envelopes[0].data, batch.envelopes[0].len, now, &r),
                     EHR_EEXIST);
    assert_int_equal(r.verdict, MEMPOOL_REJECT_DUPLICATE_LEDGER);
    /* A transaction not on the ledger goes in. */
    uint8_t *env;
    size_t len;
    tu_tx(&f->key, TU_CHAIN_ID, now + 3600000, 10, &env, &len, NULL);
    assert_int_equal(mempool_admit(&p, env, len, now, &r), 0);
    ehr_free(env);
    mempool_destroy(&p);
    ehr_free(block);
    ehr_free(genesis);
    tu_batch_free(&batch);
    ledger_close(l);
    tu_rmdir(dir);
}

static void test_verdict_names_are_distinct(void **state)
{
    (void)state;
    for (int i = 0; i < MEMPOOL_VERDICT_COUNT_; i++) {
        const char *a = mempool_verdict_name((enum mempool_verdict)i);
        assert_string_not_equal(a, "unknown");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(a, mempool_verdict_name((enum mempool_verdict)j));
    }
    assert_string_equal(mempool_verdict_name(MEMPOOL_VERDICT_COUNT_), "unknown");
}

/* ---- Randomized comparison with a naive model ---- */

enum {
    MODEL_CORPUS = 1500,
    MODEL_OPS = 5000,
    MODEL_COUNT_MAX = 40,
    MODEL_BATCH_MAX = 8,
};

typedef struct model_tx {
    uint8_t *env;
    size_t len;
    uint8_t hash[EHR_HASH_BYTES];
    uint64_t expiry_ms;
} model_tx;

typedef struct model_entry {
    int tx; /* index into the corpus */
    bool proposed;
} model_entry;

/* The reference: an array in admission order. */
typedef struct model {
    model_entry entries[MODEL_COUNT_MAX];
    size_t count;
    uint64_t bytes;
} model;

static long model_find(const model *m, int tx)
{
    for (size_t i = 0; i < m->count; i++)
        if (m->entries[i].tx == tx)
            return (long)i;
    return -1;
}

static void model_remove_at(model *m, const model_tx *corpus, size_t i)
{
    m->bytes -= corpus[m->entries[i].tx].len;
    memmove(&m->entries[i], &m->entries[i + 1], (m->count - i - 1) * sizeof m->entries[0]);
    m->count--;
}

static void test_random_operations_match_naive_model(void **state)
{
    fixture *f = *state;
    uint64_t bytes_max = MEMPOOL_BYTES_MIN;
    mempool_destroy(&f->pool);
    fixture_pool(f, MODEL_COUNT_MAX, bytes_max);
    unsigned seed = 20261121;
    const char *env_seed = getenv("EHR_TEST_SEED");
    if (env_seed != NULL)
        seed = (unsigned)strtoul(env_seed, NULL, 10);
    srand(seed);
    print_message("model seed %u (set EHR_TEST_SEED to replay)\n", seed);

    uint64_t now = NOW_MS;
    model_tx *corpus = ehr_calloc(MODEL_CORPUS, sizeof *corpus);
    for (int i = 0; i < MODEL_CORPUS; i++) {
        corpus[i].expiry_ms = now + (uint64_t)(rand() % 60000);
        size_t pad = (size_t)(rand() % 4) == 0 ? (size_t)(rand() % 6000) : (size_t)(rand() % 400);
        make_tx(f, corpus[i].expiry_ms, pad, &corpus[i].env, &corpus[i].len, corpus[i].hash);
    }
    model m = {.count = 0};
    bool on_ledger[MODEL_CORPUS] = {false};
    ledger_bytes envs[MODEL_BATCH_MAX];
    uint8_t hashes[MODEL_BATCH_MAX][EHR_HASH_BYTES];
    size_t admitted = 0, full = 0, taken_total = 0, removed_total = 0, expired_total = 0;

    for (int op = 0; op < MODEL_OPS; op++) {
        now += (uint64_t)(rand() % 20);
        int kind = rand() % 100;
        if (kind < 50) { /* admit */
            int t = rand() % MODEL_CORPUS;
            int want;
            if (model_find(&m, t) >= 0 || on_ledger[t])
                want = EHR_EEXIST;
            else if (m.count == MODEL_COUNT_MAX || m.bytes + corpus[t].len > bytes_max)
                want = EHR_EFULL;
            else if (corpus[t].expiry_ms <= now + MEMPOOL_CLOCK_SKEW_MS)
                want = EHR_EEXPIRED;
            else
                want = 0;
            mempool_admit_result r;
            int rc = mempool_admit(&f->pool, corpus[t].env, corpus[t].len, now, &r);
            if (rc != want)
                fail_msg("op %d: admit tx %d: got %s (%s), want %s", op, t, ehr_errname(rc),
                         r.reason, ehr_errname(want));
            if (rc == 0) {
                m.entries[m.count++] = (model_entry){.tx = t, .proposed = false};
                m.bytes += corpus[t].len;
                admitted++;
            }
            full += rc == EHR_EFULL;
        } else if (kind < 70) { /* take a batch */
            size_t count_max = (size_t)(rand() % (MODEL_BATCH_MAX + 1));
            uint64_t bytes_cap = (uint64_t)(rand() % 12000);
            mempool_batch b = {.envelopes = envs, .hashes = hashes, .capacity = MODEL_BATCH_MAX};
            size_t n = mempool_batch_take(&f->pool, count_max, bytes_cap, &b);
            size_t k = 0;
            uint64_t used = 0;
            for (size_t i = 0; i < m.count && k < count_max; i++) {
                if (m.entries[i].proposed)
                    continue;
                const model_tx *tx = &corpus[m.entries[i].tx];
                if (used + tx->len > bytes_cap)
                    break;
                if (k >= n)
                    fail_msg("op %d: batch has %zu, model expects more", op, n);
                assert_memory_equal(hashes[k], tx->hash, EHR_HASH_BYTES);
                assert_int_equal(envs[k].len, tx->len);
                assert_memory_equal(envs[k].data, tx->env, tx->len);
                m.entries[i].proposed = true;
                used += tx->len;
                k++;
            }
            assert_int_equal(n, k);
            assert_int_equal(b.bytes, used);
            taken_total += n;
        } else if (kind < 75) { /* requeue */
            size_t want = 0;
            for (size_t i = 0; i < m.count; i++) {
                want += m.entries[i].proposed;
                m.entries[i].proposed = false;
            }
            assert_int_equal(mempool_proposed_requeue(&f->pool), want);
        } else if (kind < 92) { /* commit a block of random corpus txs */
            size_t n = (size_t)(rand() % 6);
            uint8_t block[6][EHR_HASH_BYTES];
            size_t want = 0;
            int picked[6];
            for (size_t i = 0; i < n; i++) {
                int t = rand() % MODEL_CORPUS;
                /* Mostly what the pool handed out, sometimes anything. */
                if (m.count > 0 && rand() % 3 != 0)
                    t = m.entries[(size_t)rand() % m.count].tx;
                bool dup = false;
                for (size_t j = 0; j < i; j++)
                    dup |= picked[j] == t;
                if (dup) {
                    n = i;
                    break;
                }
                picked[i] = t;
                memcpy(block[i], corpus[t].hash, EHR_HASH_BYTES);
            }
            for (size_t i = 0; i < n; i++) {
                long at = model_find(&m, picked[i]);
                if (at >= 0) {
                    model_remove_at(&m, corpus, (size_t)at);
                    want++;
                }
                on_ledger[picked[i]] = true;
                fake_add(&f->ledger, corpus[picked[i]].hash);
            }
            assert_int_equal(mempool_remove_committed(&f->pool, block, n), want);
            removed_total += want;
        } else { /* expire at a block time around now */
            uint64_t block_time = now + (uint64_t)(rand() % 3000);
            size_t want = 0;
            for (size_t i = 0; i < m.count;) {
                if (corpus[m.entries[i].tx].expiry_ms < block_time) {
                    model_remove_at(&m, corpus, i);
                    want++;
                } else {
                    i++;
                }
            }
            assert_int_equal(mempool_expire(&f->pool, block_time), want);
            expired_total += want;
        }
        assert_int_equal(mempool_count(&f->pool), m.count);
        assert_int_equal(mempool_bytes(&f->pool), m.bytes);
        size_t pending = 0;
        for (size_t i = 0; i < m.count; i++)
            pending += !m.entries[i].proposed;
        assert_int_equal(mempool_pending_count(&f->pool), pending);
        if (op % 16 == 0) {
            pool_check(&f->pool);
            for (int t = 0; t < MODEL_CORPUS; t++)
                assert_int_equal(mempool_contains(&f->pool, corpus[t].hash),
                                 model_find(&m, t) >= 0);
        }
    }
    print_message("model: %zu admitted, %zu full, %zu taken, %zu committed, %zu expired\n",
                  admitted, full, taken_total, removed_total, expired_total);
    /* The run must have reached every interesting state. */
    assert_true(admitted > 300);
    assert_true(full > 10);
    assert_true(removed_total > 300);
    assert_true(expired_total > 3);
    for (int i = 0; i < MODEL_CORPUS; i++)
        ehr_free(corpus[i].env);
    ehr_free(corpus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admit_valid_tx_is_held_with_its_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admit_rejects_bad_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admit_rejects_wrong_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admit_rejects_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_admit_rejects_expiry_within_clock_skew_and_accepts_just_beyond, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admit_rejects_oversize_before_reading, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_admit_rejects_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admit_rejects_duplicate_in_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admit_rejects_duplicate_on_ledger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admit_fails_with_ledger_lookup_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_check_costs_no_signature_verification, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_config_ranges_are_validated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admission_in_steps_rechecks_what_changed_meanwhile,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_admission_in_steps_finds_a_pool_filled_meanwhile,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_by_count_exact_fill_then_one_more_is_efull, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_full_by_bytes_exact_fill_then_one_byte_more_is_efull,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_are_fifo_and_bounded_by_count, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batches_are_bounded_by_bytes_and_keep_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_remove_committed_drops_pending_and_proposed_and_ignores_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_drops_what_a_block_at_that_time_may_not_include,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_ledger_lookup_finds_committed_tx, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_random_operations_match_naive_model, setup, teardown),
        cmocka_unit_test(test_verdict_names_are_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
