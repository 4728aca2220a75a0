/*
 * Tests of the apply path's signature verdicts (node/sigverify.h): verdicts
 * for exact bytes, a block verified in parallel with forged signatures among
 * good ones, the cache, background checks of a block, and no threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>

#include "ledger_testutil.h"
#include "sigverify.h"

#define FAR_MS ((uint64_t)4102444800000) /* 2100-01-01 */

struct txs {
    size_t count;
    uint8_t **env;
    size_t *len;
    uint8_t (*hash)[EHR_HASH_BYTES];
    struct sigverify_item *items;
};

/* COUNT transactions; those with (i % BAD_EVERY == 1) carry a forged
 * signature (BAD_EVERY 0: none). */
static void txs_make(struct txs *t, size_t count, size_t bad_every)
{
    ehr_signing_key key;
    tu_key(&key, 7);
    t->count = count;
    t->env = ehr_calloc(count, sizeof *t->env);
    t->len = ehr_calloc(count, sizeof *t->len);
    t->hash = ehr_calloc(count, sizeof *t->hash);
    t->items = ehr_calloc(count, sizeof *t->items);
    for (size_t i = 0; i < count; i++) {
        tu_tx(&key, TU_CHAIN_ID, FAR_MS, 16, &t->env[i], &t->len[i], t->hash[i]);
        if (bad_every != 0 && i % bad_every == 1)
            t->env[i][t->len[i] - 1] ^= 0x01;
        t->items[i] = (struct sigverify_item){t->env[i], t->len[i], t->hash[i]};
    }
}

static void txs_free(struct txs *t)
{
    for (size_t i = 0; i < t->count; i++)
        ehr_free(t->env[i]);
    ehr_free(t->env);
    ehr_free(t->len);
    ehr_free(t->hash);
    ehr_free(t->items);
}

static void check_verdicts(const struct txs *t, const enum contracts_sig *v, size_t bad_every)
{
    for (size_t i = 0; i < t->count; i++) {
        enum contracts_sig want =
            bad_every != 0 && i % bad_every == 1 ? CONTRACTS_SIG_INVALID : CONTRACTS_SIG_VALID;
        if (v[i] != want)
            fail_msg("tx %zu: verdict %d, expected %d", i, v[i], want);
    }
}

static void test_batch_verifies_in_parallel_and_caches(void **state)
{
    (void)state;
    unsigned threads[] = {0, 1, 3};
    for (size_t k = 0; k < EHR_ARRAY_COUNT(threads); k++) {
        struct sigverify *sv;
        assert_int_equal(sigverify_create(TU_CHAIN_ID, threads[k], &sv), 0);
        struct txs t;
        txs_make(&t, 200, 5);
        enum contracts_sig v[200];
        sigverify_batch(sv, t.items, t.count, v);
        check_verdicts(&t, v, 5);
        struct sigverify_stats st;
        sigverify_stats_get(sv, &st);
        assert_int_equal(st.verified, 200);
        assert_int_equal(st.hits, 0);
        /* Again: every verdict from the cache, none verified (200 hashes
         * in 16384 sets of 4: a fifth in one set, the only way to lose one,
         * is a chance of about 3e-8). */
        memset(v, 0, sizeof v);
        sigverify_batch(sv, t.items, t.count, v);
        check_verdicts(&t, v, 5);
        sigverify_stats_get(sv, &st);
        assert_int_equal(st.verified, 200);
        assert_int_equal(st.hits, 200);
        txs_free(&t);
        sigverify_destroy(sv);
    }
}

static void test_a_verdict_is_for_exact_bytes(void **state)
{
    (void)state;
    struct sigverify *sv;
    assert_int_equal(sigverify_create(TU_CHAIN_ID, 1, &sv), 0);
    uint8_t hash[32], sig[64];
    memset(hash, 1, sizeof hash);
    memset(sig, 2, sizeof sig);
    assert_int_equal(sigverify_lookup(sv, hash, sig), CONTRACTS_SIG_UNCHECKED);
    sigverify_note(sv, hash, sig, true);
    assert_int_equal(sigverify_lookup(sv, hash, sig), CONTRACTS_SIG_VALID);
    /* The same body with another signature is not known. */
    sig[63] ^= 1;
    assert_int_equal(sigverify_lookup(sv, hash, sig), CONTRACTS_SIG_UNCHECKED);
    sigverify_note(sv, hash, sig, false);
    assert_int_equal(sigverify_lookup(sv, hash, sig), CONTRACTS_SIG_INVALID);

    /* An admission's verdict is used at apply: the noted transaction is a
     * hit, the other is verified. */
    struct txs t;
    txs_make(&t, 2, 0);
    sigverify_note(sv, t.hash[0], t.env[0] + t.len[0] - 64, true);
    enum contracts_sig v[2];
    sigverify_batch(sv, t.items, 2, v);
    assert_int_equal(v[0], CONTRACTS_SIG_VALID);
    assert_int_equal(v[1], CONTRACTS_SIG_VALID);
    struct sigverify_stats st;
    sigverify_stats_get(sv, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.verified, 1);
    txs_free(&t);
    sigverify_destroy(sv);
}

static void test_other_failures_get_no_verdict(void **state)
{
    (void)state;
    struct sigverify *sv;
    assert_int_equal(sigverify_create(TU_CHAIN_ID, 1, &sv), 0);
    ehr_signing_key key;
    tu_key(&key, 8);
    uint8_t *env, hash[32];
    size_t len;
    tu_tx(&key, "ehr-other-chain", FAR_MS, 0, &env, &len, hash);
    uint8_t junk[70] = {0};
    struct sigverify_item items[2] = {{env, len, hash}, {junk, sizeof junk, hash}};
    enum contracts_sig v[2];
    sigverify_batch(sv, items, 2, v);
    assert_int_equal(v[0], CONTRACTS_SIG_UNCHECKED); /* another chain: the rules refuse it */
    assert_int_equal(v[1], CONTRACTS_SIG_UNCHECKED); /* not an envelope */
    ehr_free(env);
    sigverify_destroy(sv);
}

static void test_prefetch_verifies_a_block_in_the_background(void **state)
{
    (void)state;
    struct sigverify *sv;
    assert_int_equal(sigverify_create(TU_CHAIN_ID, 2, &sv), 0);
    ehr_signing_key proposer;
    tu_key(&proposer, 1);
    tu_batch b;
    tu_batch_make(&b, &proposer, 64, 16);
    ledger_tip tip = {.height = 1, .time_ms = TU_GENESIS_TIME_MS};
    uint8_t *block;
    size_t block_len;
    tu_block_next(&tip, &b, &proposer, &block, &block_len);
    assert_int_equal(sigverify_prefetch(sv, block, block_len), 0);
    /* Wait for it (the workers finish within seconds even under load). */
    struct sigverify_stats st;
    for (int i = 0; i < 6000; i++) {
        sigverify_stats_get(sv, &st);
        if (st.prefetched == 1)
            break;
        usleep(10000);
    }
    assert_int_equal(st.prefetched, 1);
    assert_int_equal(st.verified, 64);
    struct sigverify_item items[64];
    for (size_t i = 0; i < 64; i++)
        items[i] = (struct sigverify_item){b.envelopes[i].data, b.envelopes[i].len, b.hashes[i]};
    enum contracts_sig v[64];
    sigverify_batch(sv, items, 64, v);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(v[i], CONTRACTS_SIG_VALID);
    sigverify_stats_get(sv, &st);
    assert_int_equal(st.hits, 64);
    assert_int_equal(st.verified, 64);
    /* The same block again: everything is known, nothing is queued. */
    assert_int_equal(sigverify_prefetch(sv, block, block_len), 0);
    assert_int_equal(sigverify_prefetch(sv, block, 3), EHR_EINVAL);
    ehr_free(block);
    tu_batch_free(&b);
    sigverify_destroy(sv);
}

static void test_prefetch_floods_are_bounded_and_drained(void **state)
{
    (void)state;
    struct sigverify *sv;
    assert_int_equal(sigverify_create(TU_CHAIN_ID, 0, &sv), 0);
    uint8_t x[8] = {0};
    assert_int_equal(sigverify_prefetch(sv, x, sizeof x), EHR_EAGAIN); /* no threads */
    sigverify_destroy(sv);

    assert_int_equal(sigverify_create(TU_CHAIN_ID, 1, &sv), 0);
    ehr_signing_key proposer;
    tu_key(&proposer, 1);
    size_t accepted = 0, refused = 0, rounds = 3 * SIGVERIFY_PREFETCH_MAX;
    for (size_t i = 0; i < rounds; i++) {
        tu_batch b;
        tu_batch_make(&b, &proposer, 32, 0);
        ledger_tip tip = {.height = 1, .time_ms = TU_GENESIS_TIME_MS};
        uint8_t *block;
        size_t len;
        tu_block_next(&tip, &b, &proposer, &block, &len);
        int rc = sigverify_prefetch(sv, block, len);
        assert_true(rc == 0 || rc == EHR_EAGAIN);
        accepted += rc == 0;
        refused += rc == EHR_EAGAIN;
        ehr_free(block);
        tu_batch_free(&b);
    }
    /* Destroy drains what was accepted (S5 is asserted inside). */
    struct sigverify_stats st;
    sigverify_stats_get(sv, &st);
    assert_int_equal(st.dropped, refused);
    sigverify_destroy(sv);
    assert_int_equal(accepted + refused, rounds);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_batch_verifies_in_parallel_and_caches),
    cmocka_unit_test(test_a_verdict_is_for_exact_bytes),
    cmocka_unit_test(test_other_failures_get_no_verdict),
    cmocka_unit_test(test_prefetch_verifies_a_block_in_the_background),
    cmocka_unit_test(test_prefetch_floods_are_bounded_and_drained),
};

int main(void)
{
    if (ehr_crypto_init() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
