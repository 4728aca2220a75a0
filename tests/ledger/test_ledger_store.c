/*
 * Unit tests for the ledger's LMDB store: block 0 from genesis, appends and
 * every lookup, each refused append leaving nothing written, state writes
 * and scans, each transaction's result (overlay, checkpoint, reopen, the
 * count and size rules), the map-full error, reopening, read-only use and
 * the format version check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ledger_internal.h"
#include "ledger_testutil.h"
#include "ehr/v1/ledger.pb-c.h"

enum { MEMBERS = 3 };

/* A fresh ledger with a genesis of MEMBERS keys (keys[0] proposes). */
typedef struct fixture {
    char *dir;
    ledger *l;
    ehr_signing_key keys[MEMBERS];
    uint8_t *genesis;
    size_t genesis_len;
} fixture;

static int fixture_setup(void **state)
{
    if (ehr_crypto_init() != 0)
        return -1;
    fixture *f = ehr_calloc(1, sizeof *f);
    for (uint32_t i = 0; i < MEMBERS; i++)
        tu_key(&f->keys[i], 100 + i);
    tu_genesis(f->keys, MEMBERS, &f->genesis, &f->genesis_len);
    f->dir = tu_tmpdir();
    if (ledger_open(f->dir, NULL, &f->l, NULL) != 0)
        return -1;
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

/* What must not change when an append is refused. */
typedef struct snapshot {
    ledger_tip tip;
    ledger_stats stats;
} snapshot;

static snapshot snap(ledger *l)
{
    snapshot s;
    assert_int_equal(ledger_tip_get(l, &s.tip, NULL), 0);
    assert_int_equal(ledger_stats_get(l, &s.stats, NULL), 0);
    return s;
}

static void assert_unchanged(ledger *l, const snapshot *before)
{
    snapshot now = snap(l);
    assert_true(now.tip.height == before->tip.height);
    assert_memory_equal(now.tip.hash, before->tip.hash, EHR_HASH_BYTES);
    assert_true(now.tip.applied_index == before->tip.applied_index);
    assert_true(now.tip.tx_count == before->tip.tx_count);
    assert_true(now.stats.blocks == before->stats.blocks);
    assert_true(now.stats.tx_index_rows == before->stats.tx_index_rows);
    assert_true(now.stats.state_keys == before->stats.state_keys);
}

static ledger_append request_of(const uint8_t *block, size_t len, const tu_batch *b,
                                uint64_t applied)
{
    return (ledger_append){.block = block,
                           .block_len = len,
                           .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b->hashes,
                           .writes = b->writes,
                           .write_count = b->count,
                           .results = b->results,
                           .result_count = b->count,
                           .applied_index = applied};
}

static void test_genesis_init_writes_block0_members_and_tip(void **state)
{
    fixture *f = *state;
    uint8_t *b0;
    size_t b0_len;
    assert_int_equal(ledger_genesis_block_build(f->genesis, f->genesis_len, &b0, &b0_len, NULL), 0);
    ledger_block_view view;
    assert_int_equal(ledger_block_parse(b0, b0_len, &view, NULL), 0);

    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    assert_true(tip.height == 0 && tip.tx_count == 0 && tip.applied_index == 0);
    assert_memory_equal(tip.hash, view.hash, EHR_HASH_BYTES);
    assert_true(tip.time_ms == TU_GENESIS_TIME_MS);
    ledger_chain chain;
    assert_int_equal(ledger_chain_get(f->l, &chain, NULL), 0);
    assert_string_equal(chain.chain_id, TU_CHAIN_ID);
    assert_memory_equal(chain.genesis_block_hash, view.hash, EHR_HASH_BYTES);
    assert_memory_equal(chain.genesis_hash, view.header.genesis_hash, EHR_HASH_BYTES);

    uint8_t *stored;
    size_t stored_len;
    assert_int_equal(ledger_block_get(f->l, 0, &stored, &stored_len, NULL), 0);
    assert_int_equal(stored_len, b0_len);
    assert_memory_equal(stored, b0, b0_len);
    ehr_free(stored);

    Ehr__V1__Genesis *g;
    assert_int_equal(ledger_genesis_parse(f->genesis, f->genesis_len, &g, NULL), 0);
    for (size_t i = 0; i < MEMBERS; i++) {
        uint8_t key[LEDGER_MEMBER_KEY_BYTES], *value;
        size_t value_len;
        ledger_member_key(key, f->keys[i].public_key);
        assert_memory_equal(key, "member/", 7);
        assert_int_equal(ledger_state_get(f->l, key, sizeof key, &value, &value_len, NULL), 0);
        Ehr__V1__Member *m = ehr__v1__member__unpack(NULL, value_len, value);
        assert_non_null(m);
        assert_string_equal(m->name, g->members[i]->name);
        assert_memory_equal(m->node_key.data, f->keys[i].public_key, 32);
        ehr__v1__member__free_unpacked(m, NULL);
        ehr_free(value);
    }
    ehr__v1__genesis__free_unpacked(g, NULL);
    /* The genesis names no emergency policy: an empty one is stored, so
     * nobody may use emergency access on this chain. */
    uint8_t *policy;
    size_t policy_len = 1;
    assert_int_equal(ledger_state_get(f->l, (const uint8_t *)LEDGER_EMERGENCY_KEY,
                                      strlen(LEDGER_EMERGENCY_KEY), &policy, &policy_len, NULL),
                     0);
    assert_int_equal(policy_len, 0);
    ehr_free(policy);
    ledger_stats stats;
    assert_int_equal(ledger_stats_get(f->l, &stats, NULL), 0);
    assert_true(stats.blocks == 1 && stats.tx_index_rows == 0 && stats.state_keys == MEMBERS + 1);

    snapshot before = snap(f->l);
    ehr_diag why;
    assert_int_equal(ledger_genesis_init(f->l, f->genesis, f->genesis_len, &why), EHR_EEXIST);
    assert_non_null(strstr(why.msg, TU_CHAIN_ID));
    assert_unchanged(f->l, &before);
    ledger_block_view_release(&view);
    ehr_free(b0);
}

static void test_empty_ledger_has_no_tip_and_refuses_bad_genesis(void **state)
{
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    ledger_tip tip;
    ledger_chain chain;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), EHR_ENOTFOUND);
    assert_int_equal(ledger_chain_get(l, &chain, NULL), EHR_ENOTFOUND);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(l, NULL, &rep), EHR_ENOTFOUND);
    assert_int_equal(rep.fault, LEDGER_FAULT_NO_CHAIN);
    assert_non_null(strstr(rep.msg, "no genesis"));
    uint8_t junk[10] = {0xff, 0xff};
    ehr_diag why = {""};
    assert_int_equal(ledger_genesis_init(l, junk, sizeof junk, &why), EHR_EINVAL);
    assert_true(strlen(why.msg) > 0);
    assert_int_equal(ledger_tip_get(l, &tip, NULL), EHR_ENOTFOUND);
    /* No chain to append to. */
    ehr_signing_key key;
    tu_key(&key, 1);
    tu_batch b;
    tu_batch_make(&b, &key, 1, 0);
    uint8_t *block;
    size_t len;
    ledger_tip none = {.height = 0};
    tu_block_next(&none, &b, &key, &block, &len);
    ledger_append req = request_of(block, len, &b, 1);
    assert_int_equal(ledger_append_block(l, &req, &why), EHR_ENOTFOUND);
    assert_non_null(strstr(why.msg, "genesis"));
    ehr_free(block);
    tu_batch_free(&b);
    ledger_close(l);
    tu_rmdir(dir);
}

static void test_append_then_every_lookup(void **state)
{
    fixture *f = *state;
    enum { BLOCKS = 3, TXS = 5 };
    tu_batch batches[BLOCKS];
    for (size_t h = 0; h < BLOCKS; h++) {
        ledger_tip tip;
        assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
        tu_batch_make(&batches[h], &f->keys[1], TXS, 16);
        uint8_t *block;
        size_t len;
        tu_block_next(&tip, &batches[h], &f->keys[h % MEMBERS], &block, &len);
        ledger_append req = request_of(block, len, &batches[h], 10 + h);
        if (h == 1)
            req.tx_hashes = NULL; /* the ledger hashes them itself */
        assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
        uint8_t *back;
        size_t back_len;
        assert_int_equal(ledger_block_get(f->l, h + 1, &back, &back_len, NULL), 0);
        assert_int_equal(back_len, len);
        assert_memory_equal(back, block, len);
        ehr_free(back);
        ehr_free(block);
    }
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    assert_true(tip.height == BLOCKS && tip.tx_count == BLOCKS * TXS);
    assert_true(tip.applied_index == 10 + BLOCKS - 1);
    for (size_t h = 0; h < BLOCKS; h++) {
        for (size_t i = 0; i < TXS; i++) {
            ledger_tx_location loc;
            uint8_t *env;
            size_t env_len;
            assert_int_equal(
                ledger_tx_get(f->l, batches[h].hashes[i], &loc, &env, &env_len, NULL, NULL, NULL),
                0);
            assert_true(loc.height == h + 1);
            assert_int_equal(loc.index, i);
            assert_int_equal(env_len, batches[h].envelopes[i].len);
            assert_memory_equal(env, batches[h].envelopes[i].data, env_len);
            ehr_free(env);
            assert_int_equal(
                ledger_tx_get(f->l, batches[h].hashes[i], &loc, NULL, NULL, NULL, NULL, NULL), 0);
            uint8_t *value;
            size_t value_len;
            assert_int_equal(ledger_state_get(f->l, batches[h].keys[i], sizeof batches[h].keys[i],
                                              &value, &value_len, NULL),
                             0);
            assert_int_equal(value_len, sizeof batches[h].value);
            assert_memory_equal(value, batches[h].value, value_len);
            ehr_free(value);
        }
        tu_batch_free(&batches[h]);
    }
    uint8_t unknown[EHR_HASH_BYTES] = {1, 2, 3};
    ledger_tx_location loc;
    assert_int_equal(ledger_tx_get(f->l, unknown, &loc, NULL, NULL, NULL, NULL, NULL),
                     EHR_ENOTFOUND);
    uint8_t *bytes;
    size_t len;
    assert_int_equal(ledger_block_get(f->l, BLOCKS + 1, &bytes, &len, NULL), EHR_ENOTFOUND);
    uint8_t *value;
    assert_int_equal(ledger_state_get(f->l, (const uint8_t *)"nope", 4, &value, &len, NULL),
                     EHR_ENOTFOUND);
    uint8_t long_key[EHR_STATE_KEY_BYTES_MAX + 1] = {0};
    assert_int_equal(ledger_state_get(f->l, long_key, sizeof long_key, &value, &len, NULL),
                     EHR_EINVAL);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, NULL, &rep), 0);
    assert_true(rep.blocks_checked == BLOCKS + 1 && rep.txs_checked == BLOCKS * TXS);
}

/* Re-pack block PB after a change. */
static uint8_t *repack(const Ehr__V1__Block *pb, size_t *len)
{
    *len = ehr__v1__block__get_packed_size(pb);
    uint8_t *p = ehr_malloc(*len);
    assert_int_equal(ehr__v1__block__pack(pb, p), *len);
    return p;
}

/* Expect REQ to fail with ERR and leave the ledger as it was. */
static void refused(fixture *f, const ledger_append *req, int err, const char *says)
{
    snapshot before = snap(f->l);
    ehr_diag why = {""};
    assert_int_equal(ledger_append_block(f->l, req, &why), err);
    if (says != NULL && strstr(why.msg, says) == NULL)
        fail_msg("error \"%s\" does not say \"%s\"", why.msg, says);
    assert_unchanged(f->l, &before);
}

static void test_refused_appends_write_nothing(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_append(f->l, &f->keys[0], 4, NULL, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    /* An earlier block's transaction, to replay. */
    uint8_t *b1;
    size_t b1_len;
    assert_int_equal(ledger_block_get(f->l, 1, &b1, &b1_len, NULL), 0);
    Ehr__V1__Block *pb1 = ehr__v1__block__unpack(NULL, b1_len, b1);
    assert_non_null(pb1);

    tu_batch b;
    tu_batch_make(&b, &f->keys[1], 3, 16);
    uint8_t *block;
    size_t len;
    ledger_append req;

    ledger_tip skip = tip;
    skip.height++;
    tu_block_next(&skip, &b, &f->keys[0], &block, &len);
    req = request_of(block, len, &b, 100);
    refused(f, &req, EHR_ELINK, "does not follow");
    ehr_free(block);

    ledger_tip wrong_prev = tip;
    wrong_prev.hash[0] ^= 1;
    tu_block_next(&wrong_prev, &b, &f->keys[0], &block, &len);
    req = request_of(block, len, &b, 100);
    refused(f, &req, EHR_ELINK, "prev_hash");
    ehr_free(block);

    ledger_tip earlier = tip;
    earlier.time_ms -= 2000;
    tu_block_next(&earlier, &b, &f->keys[0], &block, &len);
    req = request_of(block, len, &b, 100);
    refused(f, &req, EHR_EINVAL, "before the tip");
    ehr_free(block);

    ehr_signing_key outsider;
    tu_key(&outsider, 999);
    tu_block_next(&tip, &b, &outsider, &block, &len);
    req = request_of(block, len, &b, 100);
    refused(f, &req, EHR_EDENIED, "not a member");
    ehr_free(block);

    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    req = request_of(block, len, &b, tip.applied_index - 1);
    refused(f, &req, EHR_EINVAL, "applied index");
    req = request_of(block, len - 1, &b, 100);
    refused(f, &req, EHR_ETRUNCATED, NULL);
    req = request_of(block, EHR_BLOCK_BYTES_MAX + 1, &b, 100);
    refused(f, &req, EHR_ETOOBIG, "over the limit");
    /* A flipped byte in the header signature. */
    ledger_block_view view;
    assert_int_equal(ledger_block_parse(block, len, &view, NULL), 0);
    size_t sig_at = (size_t)(view.signature - block);
    ledger_block_view_release(&view);
    block[sig_at] ^= 0x80;
    req = request_of(block, len, &b, 100);
    refused(f, &req, EHR_EBADSIG, "signature");
    block[sig_at] ^= 0x80;

    /* Transactions other than those the header's root covers. */
    Ehr__V1__Block *pb = ehr__v1__block__unpack(NULL, len, block);
    assert_non_null(pb);
    Ehr__V1__TxEnvelope *kept = pb->txs[0];
    pb->txs[0] = pb1->txs[0];
    size_t bad_len;
    uint8_t *bad = repack(pb, &bad_len);
    pb->txs[0] = kept;
    req = request_of(bad, bad_len, &b, 100);
    req.tx_hashes = NULL;
    refused(f, &req, EHR_EINVAL, "tx_root");
    ehr_free(bad);
    ehr__v1__block__free_unpacked(pb, NULL);

    /* A state write over its limits. */
    req = request_of(block, len, &b, 100);
    ledger_state_write w[1];
    uint8_t big_key[EHR_STATE_KEY_BYTES_MAX + 1];
    memset(big_key, 'k', sizeof big_key);
    w[0] = (ledger_state_write){.key = big_key, .key_len = sizeof big_key};
    req.writes = w;
    req.write_count = 1;
    refused(f, &req, EHR_ETOOBIG, "key");
    uint8_t *big_value = ehr_calloc(EHR_STATE_VALUE_BYTES_MAX + 1, 1);
    w[0] = (ledger_state_write){.key = big_key,
                                .key_len = 4,
                                .value = big_value,
                                .value_len = EHR_STATE_VALUE_BYTES_MAX + 1};
    refused(f, &req, EHR_ETOOBIG, "value");
    req.write_count = EHR_BLOCK_STATE_WRITES_MAX + 1;
    refused(f, &req, EHR_ETOOBIG, "state writes");
    req.write_count = 0;
    w[0].key_len = 0;
    req.write_count = 1;
    refused(f, &req, EHR_EINVAL, "key");
    ehr_free(big_value);
    ehr_free(block);
    tu_batch_free(&b);

    /* A transaction already on the ledger. */
    tu_batch replay;
    tu_batch_make(&replay, &f->keys[1], 2, 16);
    ehr_free((void *)replay.envelopes[1].data);
    uint8_t *copy = ehr_malloc(b1_len);
    ledger_block_view v1;
    assert_int_equal(ledger_block_parse(b1, b1_len, &v1, NULL), 0);
    memcpy(copy, b1 + v1.txs[2].offset, v1.txs[2].length);
    replay.envelopes[1] = (ledger_bytes){copy, v1.txs[2].length};
    ledger_tx_view tv;
    assert_int_equal(ledger_tx_envelope_parse(copy, v1.txs[2].length, &tv, NULL), 0);
    ledger_tx_hash(tv.body, tv.body_len, replay.hashes[1]);
    ledger_block_view_release(&v1);
    tu_block_next(&tip, &replay, &f->keys[0], &block, &len);
    req = request_of(block, len, &replay, 100);
    refused(f, &req, EHR_EEXIST, "already on the ledger");
    ehr_free(block);

    /* The same transaction twice in one block. */
    ehr_free((void *)replay.envelopes[1].data);
    uint8_t *dup = ehr_malloc(replay.envelopes[0].len);
    memcpy(dup, replay.envelopes[0].data, replay.envelopes[0].len);
    replay.envelopes[1] = (ledger_bytes){dup, replay.envelopes[0].len};
    memcpy(replay.hashes[1], replay.hashes[0], EHR_HASH_BYTES);
    tu_block_next(&tip, &replay, &f->keys[0], &block, &len);
    req = request_of(block, len, &replay, 100);
    refused(f, &req, EHR_EEXIST, "twice");
    ehr_free(block);
    tu_batch_free(&replay);

    /* A transaction over the size limit inside a block. */
    uint8_t *huge = ehr_calloc(EHR_TX_BODY_BYTES_MAX + 1, 1);
    ProtobufCBinaryData saved = pb1->txs[0]->body;
    pb1->txs[0]->body = (ProtobufCBinaryData){EHR_TX_BODY_BYTES_MAX + 1, huge};
    bad = repack(pb1, &bad_len);
    pb1->txs[0]->body = saved;
    req = (ledger_append){.block = bad, .block_len = bad_len, .applied_index = 100};
    refused(f, &req, EHR_ETOOBIG, "transaction 0");
    ehr_free(bad);
    ehr_free(huge);
    ehr__v1__block__free_unpacked(pb1, NULL);
    ehr_free(b1);
    /* Block 0 through append. */
    assert_int_equal(ledger_block_get(f->l, 0, &bad, &bad_len, NULL), 0);
    req = (ledger_append){.block = bad, .block_len = bad_len, .applied_index = 100};
    refused(f, &req, EHR_EINVAL, "block 0");
    ehr_free(bad);

    /* And after all that, the next good block goes on. */
    assert_int_equal(tu_append(f->l, &f->keys[2], 2, NULL, NULL), 0);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, NULL, &rep), 0);
}

/* Append one block of 1 transaction with the given state writes. */
static int append_with_writes(fixture *f, const ledger_state_write *w, size_t count, ehr_diag *diag)
{
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], 1, 0);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    ledger_append req = request_of(block, len, &b, tip.applied_index + 1);
    req.writes = w;
    req.write_count = count;
    int rc = ledger_append_block(f->l, &req, diag);
    ehr_free(block);
    tu_batch_free(&b);
    return rc;
}

#define W(k, v)                                                                                    \
    {                                                                                              \
        .key = (const uint8_t *)(k), .key_len = strlen(k), .value = (const uint8_t *)(v),          \
        .value_len = strlen(v)                                                                     \
    }
#define DEL(k)                                                                                     \
    {                                                                                              \
        .key = (const uint8_t *)(k), .key_len = strlen(k), .remove = true                          \
    }

static void assert_state(fixture *f, const char *key, const char *want)
{
    uint8_t *v;
    size_t len;
    int rc = ledger_state_get(f->l, (const uint8_t *)key, strlen(key), &v, &len, NULL);
    if (want == NULL) {
        assert_int_equal(rc, EHR_ENOTFOUND);
        return;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(len, strlen(want));
    if (len > 0)
        assert_memory_equal(v, want, len);
    ehr_free(v);
}

static void test_state_writes_apply_in_order_with_removals(void **state)
{
    fixture *f = *state;
    const ledger_state_write first[] = {W("z", "1"), W("a", "1"),        W("a", "2"),
                                        W("m", ""),  DEL("never-there"), W("gone", "x")};
    assert_int_equal(append_with_writes(f, first, EHR_ARRAY_COUNT(first), NULL), 0);
    assert_state(f, "a", "2"); /* the later write to a key wins */
    assert_state(f, "z", "1");
    assert_state(f, "m", "");
    assert_state(f, "gone", "x");
    const ledger_state_write second[] = {DEL("gone"), W("a", "3"), DEL("a"),
                                         W("z", "2"), DEL("z"),    W("z", "3")};
    assert_int_equal(append_with_writes(f, second, EHR_ARRAY_COUNT(second), NULL), 0);
    assert_state(f, "gone", NULL);
    assert_state(f, "a", NULL);
    assert_state(f, "z", "3");

    /* Key and value at their limits. */
    uint8_t key[EHR_STATE_KEY_BYTES_MAX];
    memset(key, 'k', sizeof key);
    uint8_t *value = ehr_malloc(EHR_STATE_VALUE_BYTES_MAX);
    memset(value, 'v', EHR_STATE_VALUE_BYTES_MAX);
    ledger_state_write edge = {
        .key = key, .key_len = sizeof key, .value = value, .value_len = EHR_STATE_VALUE_BYTES_MAX};
    assert_int_equal(append_with_writes(f, &edge, 1, NULL), 0);
    uint8_t *back;
    size_t back_len;
    assert_int_equal(ledger_state_get(f->l, key, sizeof key, &back, &back_len, NULL), 0);
    assert_int_equal(back_len, EHR_STATE_VALUE_BYTES_MAX);
    assert_memory_equal(back, value, back_len);
    ehr_free(back);
    ehr_free(value);
}

/* The per-block state write limits, at their edges. */
static void test_state_write_count_and_bytes_limits(void **state)
{
    fixture *f = *state;
    ledger_state_write *w = ehr_calloc(EHR_BLOCK_STATE_WRITES_MAX + 1, sizeof *w);
    uint8_t(*keys)[8] = ehr_malloc((EHR_BLOCK_STATE_WRITES_MAX + 1) * sizeof *keys);
    for (size_t i = 0; i <= EHR_BLOCK_STATE_WRITES_MAX; i++) {
        ledger__height_key(keys[i], i);
        w[i] = (ledger_state_write){.key = keys[i], .key_len = 8, .value = keys[i], .value_len = 8};
    }
    snapshot before = snap(f->l);
    assert_int_equal(append_with_writes(f, w, EHR_BLOCK_STATE_WRITES_MAX + 1, NULL), EHR_ETOOBIG);
    assert_unchanged(f->l, &before);
    assert_int_equal(append_with_writes(f, w, EHR_BLOCK_STATE_WRITES_MAX, NULL), 0);
    ledger_stats stats;
    assert_int_equal(ledger_stats_get(f->l, &stats, NULL), 0);
    assert_true(stats.state_keys == before.stats.state_keys + EHR_BLOCK_STATE_WRITES_MAX);

    /* Bytes: writes of one shared value adding up to exactly the limit. */
    enum { KEY_BYTES = 8 };
    size_t per = KEY_BYTES + EHR_STATE_VALUE_BYTES_MAX;
    size_t full = EHR_BLOCK_STATE_BYTES_MAX / per;
    size_t rest = EHR_BLOCK_STATE_BYTES_MAX - full * per; /* the last write's size */
    assert_true(rest > KEY_BYTES);
    uint8_t *value = ehr_calloc(EHR_STATE_VALUE_BYTES_MAX + 1, 1);
    for (size_t i = 0; i <= full; i++) {
        w[i].value = value;
        w[i].value_len = i < full ? EHR_STATE_VALUE_BYTES_MAX : rest - KEY_BYTES;
    }
    w[full].value_len++;
    before = snap(f->l);
    ehr_diag why;
    assert_int_equal(append_with_writes(f, w, full + 1, &why), EHR_ETOOBIG);
    assert_non_null(strstr(why.msg, "state writes over the limit"));
    assert_unchanged(f->l, &before);
    w[full].value_len--;
    assert_int_equal(append_with_writes(f, w, full + 1, NULL), 0);
    ehr_free(value);
    ehr_free(keys);
    ehr_free(w);
}

typedef struct scan_log {
    char keys[32][16];
    int count;
    int stop_at;   /* return 1 at this call (1-based), 0 for never */
    int fail_with; /* return this at stop_at instead, if non-zero */
} scan_log;

static int scan_record(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                       size_t value_len)
{
    scan_log *log = ctx;
    if (log->count < 32 && key_len < 16) {
        memcpy(log->keys[log->count], key, key_len);
        log->keys[log->count][key_len] = '\0';
    }
    log->count++;
    if (log->count == log->stop_at)
        return log->fail_with != 0 ? log->fail_with : 1;
    return 0;
}

/* A scan callback that reads the ledger again (a second read transaction
 * on the same thread: MDB_NOTLS allows it). */
typedef struct nested_ctx {
    ledger *l;
    int reads;
} nested_ctx;

static int scan_nested_read(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                            size_t value_len)
{
    nested_ctx *n = ctx;
    uint8_t *again;
    size_t again_len;
    if (ledger_state_get(n->l, key, key_len, &again, &again_len, NULL) != 0 ||
        again_len != value_len || (value_len > 0 && memcmp(again, value, value_len) != 0))
        return EHR_ECORRUPT;
    ehr_free(again);
    n->reads++;
    return 0;
}

static void test_state_scan_prefix_resume_and_bounds(void **state)
{
    fixture *f = *state;
    const ledger_state_write w[] = {W("a/3", "x"), W("a/1", "x"), W("a/2", "x"), W("a/10", "x"),
                                    W("a", "x"),   W("b/1", "x"), W("a/", "x")};
    assert_int_equal(append_with_writes(f, w, EHR_ARRAY_COUNT(w), NULL), 0);
    scan_log log = {0};
    assert_int_equal(
        ledger_state_scan(f->l, (const uint8_t *)"a/", 2, NULL, 0, 100, scan_record, &log, NULL),
        5);
    const char *want[] = {"a/", "a/1", "a/10", "a/2", "a/3"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(log.keys[i], want[i]);

    memset(&log, 0, sizeof log);
    assert_int_equal(ledger_state_scan(f->l, (const uint8_t *)"a/", 2, (const uint8_t *)"a/10", 4,
                                       100, scan_record, &log, NULL),
                     2);
    assert_string_equal(log.keys[0], "a/2");
    memset(&log, 0, sizeof log);
    assert_int_equal(
        ledger_state_scan(f->l, (const uint8_t *)"a/", 2, NULL, 0, 2, scan_record, &log, NULL), 2);
    memset(&log, 0, sizeof log);
    assert_int_equal(ledger_state_scan(f->l, (const uint8_t *)"a/", 2, (const uint8_t *)"0", 1, 100,
                                       scan_record, &log, NULL),
                     5); /* a start before the prefix starts at the prefix */
    memset(&log, 0, sizeof log);
    log.stop_at = 3;
    assert_int_equal(
        ledger_state_scan(f->l, (const uint8_t *)"a/", 2, NULL, 0, 100, scan_record, &log, NULL),
        3);
    memset(&log, 0, sizeof log);
    log.stop_at = 2;
    log.fail_with = EHR_EDENIED;
    assert_int_equal(
        ledger_state_scan(f->l, (const uint8_t *)"a/", 2, NULL, 0, 100, scan_record, &log, NULL),
        EHR_EDENIED);
    memset(&log, 0, sizeof log);
    long all =
        ledger_state_scan(f->l, NULL, 0, NULL, 0, LEDGER_SCAN_COUNT_MAX, scan_record, &log, NULL);
    assert_int_equal(all, (long)EHR_ARRAY_COUNT(w) + MEMBERS + 1); /* + the emergency policy */
    assert_int_equal(
        ledger_state_scan(f->l, (const uint8_t *)"zz", 2, NULL, 0, 10, scan_record, &log, NULL), 0);
    nested_ctx nested = {.l = f->l};
    assert_int_equal(ledger_state_scan(f->l, (const uint8_t *)"a/", 2, NULL, 0, 100,
                                       scan_nested_read, &nested, NULL),
                     5);
    assert_int_equal(nested.reads, 5);
    assert_int_equal(ledger_state_scan(f->l, NULL, 0, NULL, 0, 0, scan_record, &log, NULL),
                     EHR_EINVAL);
    assert_int_equal(ledger_state_scan(f->l, NULL, 0, NULL, 0, LEDGER_SCAN_COUNT_MAX + 1,
                                       scan_record, &log, NULL),
                     EHR_EINVAL);
}

static void test_applied_index_only_moves_forward(void **state)
{
    fixture *f = *state;
    assert_int_equal(ledger_applied_index_set(f->l, 7, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    assert_true(tip.applied_index == 7 && tip.height == 0);
    assert_int_equal(ledger_applied_index_set(f->l, 7, NULL), 0);
    assert_int_equal(ledger_applied_index_set(f->l, 6, NULL), EHR_EINVAL);
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    assert_true(tip.applied_index == 7);
}

static void test_map_full_is_a_clear_error_and_a_bigger_map_continues(void **state)
{
    ehr_signing_key keys[1];
    tu_key(&keys[0], 7);
    uint8_t *g;
    size_t g_len;
    tu_genesis(keys, 1, &g, &g_len);
    char *dir = tu_tmpdir();
    ledger *l;
    ledger_options opts = {.map_bytes = LEDGER_MAP_BYTES_MIN - 1};
    assert_int_equal(ledger_open(dir, &opts, &l, NULL), EHR_EINVAL);
    opts.map_bytes = LEDGER_MAP_BYTES_MAX + 1;
    assert_int_equal(ledger_open(dir, &opts, &l, NULL), EHR_EINVAL);
    opts.map_bytes = LEDGER_MAP_BYTES_MIN;
    assert_int_equal(ledger_open(dir, &opts, &l, NULL), 0);
    assert_int_equal(ledger_genesis_init(l, g, g_len, NULL), 0);
    int rc = 0;
    int blocks = 0;
    snapshot before;
    ehr_diag why;
    while (blocks < 500) {
        before = snap(l);
        rc = tu_append(l, &keys[0], 20, NULL, &why);
        if (rc != 0)
            break;
        blocks++;
    }
    assert_int_equal(rc, EHR_EFULL);
    assert_true(blocks > 0);
    assert_non_null(strstr(why.msg, "map"));
    assert_non_null(strstr(why.msg, "full"));
    assert_unchanged(l, &before);
    ledger_close(l);

    opts.map_bytes = 16ull << 20;
    assert_int_equal(ledger_open(dir, &opts, &l, NULL), 0);
    assert_unchanged(l, &before);
    assert_int_equal(tu_append(l, &keys[0], 20, NULL, NULL), 0);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(l, NULL, &rep), 0);
    assert_true(rep.blocks_checked == (uint64_t)blocks + 2);
    ledger_close(l);
    tu_rmdir(dir);
    ehr_free(g);
}

static void test_reopen_and_read_only_use(void **state)
{
    fixture *f = *state;
    assert_int_equal(tu_append(f->l, &f->keys[0], 3, NULL, NULL), 0);
    snapshot before = snap(f->l);
    ledger_close(f->l);
    f->l = NULL;

    ledger_options ro = {.read_only = true};
    ledger *r;
    assert_int_equal(ledger_open(f->dir, &ro, &r, NULL), 0);
    assert_unchanged(r, &before);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(r, NULL, &rep), 0);
    assert_non_null(strstr(rep.msg, "ledger ok"));
    ehr_diag why;
    assert_int_equal(ledger_genesis_init(r, f->genesis, f->genesis_len, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "read-only"));
    ledger_close(r);

    assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    assert_unchanged(f->l, &before);
    assert_int_equal(tu_append(f->l, &f->keys[1], 3, NULL, NULL), 0);

    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such-ledger", f->dir);
    assert_int_equal(ledger_open(missing, &ro, &r, NULL), EHR_ENOTFOUND);
    ledger_options bad = {.readers_max = LEDGER_READERS_MAX + 1};
    assert_int_equal(ledger_open(f->dir, &bad, &r, NULL), EHR_EINVAL);
    ledger_close(f->l);
    ledger_options most = {.readers_max = LEDGER_READERS_MAX};
    assert_int_equal(ledger_open(f->dir, &most, &f->l, NULL), 0);
    bad = (ledger_options){.sync = (enum ledger_sync_mode)7};
    assert_int_equal(ledger_open(f->dir, &bad, &r, NULL), EHR_EINVAL);
}

static void set_next_version(uint8_t *value, size_t *len, void *ctx)
{
    Ehr__V1__ChainInfo *c = ehr__v1__chain_info__unpack(NULL, *len, value);
    assert_non_null(c);
    c->format_version = LEDGER__FORMAT_VERSION + 1;
    *len = ehr__v1__chain_info__pack(c, value);
    ehr__v1__chain_info__free_unpacked(c, NULL);
}

static void test_other_format_version_is_refused_at_open(void **state)
{
    fixture *f = *state;
    ledger_close(f->l);
    f->l = NULL;
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_META, LEDGER__META_CHAIN,
                                 strlen(LEDGER__META_CHAIN), set_next_version, NULL),
                     0);
    ledger *l;
    assert_int_equal(ledger_open(f->dir, NULL, &l, NULL), EHR_EVERSION);
    ledger_options ro = {.read_only = true};
    assert_int_equal(ledger_open(f->dir, &ro, &l, NULL), EHR_EVERSION);
}

static void no_op(uint8_t *value, size_t *len, void *ctx) {}

static void point_elsewhere(uint8_t *value, size_t *len, void *ctx)
{
    ledger_tx_location loc;
    ledger_bytes result;
    assert_int_equal(ledger__tx_location_read(value, *len, &loc, &result), 0);
    uint8_t kept[EHR_TX_RESULT_BYTES_MAX];
    memcpy(kept, result.data != NULL ? result.data : kept, result.len);
    loc.offset += 1;
    *len = ledger__tx_location_write(value, &loc, (ledger_bytes){kept, result.len});
}

static void test_tx_lookup_detects_a_damaged_index_row(void **state)
{
    fixture *f = *state;
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], 2, 0);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    ledger_append req = request_of(block, len, &b, 1);
    assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
    ledger_close(f->l);
    f->l = NULL;
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_TXS, b.hashes[1], EHR_HASH_BYTES, no_op, NULL),
                     0);
    assert_int_equal(
        tu_raw_edit(f->dir, LEDGER__DB_TXS, b.hashes[1], EHR_HASH_BYTES, point_elsewhere, NULL), 0);
    assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    ledger_tx_location loc;
    assert_int_equal(ledger_tx_get(f->l, b.hashes[0], &loc, NULL, NULL, NULL, NULL, NULL), 0);
    assert_int_equal(ledger_tx_get(f->l, b.hashes[1], &loc, NULL, NULL, NULL, NULL, NULL),
                     EHR_ECORRUPT);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, NULL, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_TX_INDEX);
    assert_int_equal(rep.tx_index, 1);
    ehr_free(block);
    tu_batch_free(&b);
}

/* ---- Results ---- */

/* Every transaction's result, as ledger_tx_get returns it, is B's. */
static void results_expect(ledger *l, const tu_batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        ledger_tx_location loc;
        uint8_t *result = NULL;
        size_t len = 999;
        assert_int_equal(ledger_tx_get(l, b->hashes[i], &loc, NULL, NULL, &result, &len, NULL), 0);
        assert_int_equal(len, b->results[i].len);
        if (len == 0)
            assert_null(result);
        else
            assert_memory_equal(result, b->results[i].data, len);
        ehr_free(result);
    }
}

/* Append B as the next block (proposed by keys[0]). Returns the result. */
static int batch_append(fixture *f, const tu_batch *b, ehr_diag *diag)
{
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, b, &f->keys[0], &block, &len);
    ledger_append req = request_of(block, len, b, tip.applied_index + 1);
    int rc = ledger_append_block(f->l, &req, diag);
    ehr_free(block);
    return rc;
}

static void test_results_from_the_overlay_the_derived_tables_and_the_write_log(void **state)
{
    fixture *f = *state;
    /* Checkpoints paused: the block's rows stay in the overlay. */
    ledger__checkpoint_pause(f->l, true);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], 7, 0);
    tu_batch_results(&b, 1);
    assert_int_equal(b.results[0].len, 0); /* both kinds: OK (empty) ... */
    assert_true(b.results[1].len > 0);     /* ... and a result that says more */
    assert_int_equal(batch_append(f, &b, NULL), 0);
    ledger_stats st;
    assert_int_equal(ledger_stats_get(f->l, &st, NULL), 0);
    assert_true(st.checkpoint_height <= 1); /* block 1 is in the overlay only */
    results_expect(f->l, &b);               /* at once, from the overlay */

    /* The checkpoint writes them into the tx-index rows. */
    assert_int_equal(ledger_checkpoint(f->l, NULL), 0);
    assert_int_equal(ledger_stats_get(f->l, &st, NULL), 0);
    assert_int_equal(st.overlay_blocks, 0);
    assert_int_equal(st.checkpoint_height, 2);
    results_expect(f->l, &b);
    ledger_close(f->l);
    assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    results_expect(f->l, &b);

    /* A block still in the overlay at close: the next open rebuilds its
     * rows, results included, from the write log. */
    ledger__checkpoint_pause(f->l, true);
    tu_batch c;
    tu_batch_make(&c, &f->keys[2], 5, 0);
    tu_batch_results(&c, 2);
    assert_int_equal(batch_append(f, &c, NULL), 0);
    ledger_close(f->l);
    ledger_options ro = {.read_only = true};
    assert_int_equal(ledger_open(f->dir, &ro, &f->l, NULL), 0);
    assert_int_equal(ledger_stats_get(f->l, &st, NULL), 0);
    assert_int_equal(st.checkpoint_height, 2);
    results_expect(f->l, &c);
    ledger_close(f->l);
    assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    results_expect(f->l, &b);
    results_expect(f->l, &c);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, NULL, &rep), 0);
    tu_batch_free(&b);
    tu_batch_free(&c);
}

static void test_one_result_per_transaction(void **state)
{
    fixture *f = *state;
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], 3, 0);
    tu_batch_results(&b, 3);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    ledger_append req = request_of(block, len, &b, 1);
    req.result_count = 2;
    refused(f, &req, EHR_EINVAL, "block 1: 2 results for 3 transactions");
    req.result_count = 4;
    refused(f, &req, EHR_EINVAL, "4 results for 3 transactions");
    req.result_count = 0;
    refused(f, &req, EHR_EINVAL, "0 results for 3 transactions");
    req.results = NULL;
    req.result_count = 3;
    refused(f, &req, EHR_EINVAL, "results missing");
    req.results = b.results;
    ledger_bytes kept = b.results[2];
    b.results[2] = (ledger_bytes){NULL, 4};
    refused(f, &req, EHR_EINVAL, "tx 2: result bytes missing");
    b.results[2] = kept;
    assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
    results_expect(f->l, &b);
    ehr_free(block);
    tu_batch_free(&b);
}

static void test_result_size_limit_at_its_edge(void **state)
{
    fixture *f = *state;
    uint8_t big[EHR_TX_RESULT_BYTES_MAX + 1];
    memset(big, 0x7e, sizeof big);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], 2, 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    ledger_append req = request_of(block, len, &b, 1);
    b.results[1] = (ledger_bytes){big, EHR_TX_RESULT_BYTES_MAX + 1};
    refused(f, &req, EHR_ETOOBIG, "block 1 tx 1: the result is 257 bytes, over the limit of 256");
    b.results[1] = (ledger_bytes){big, EHR_TX_RESULT_BYTES_MAX};
    assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
    results_expect(f->l, &b);
    assert_int_equal(ledger_checkpoint(f->l, NULL), 0);
    results_expect(f->l, &b); /* the row holds the whole 256 bytes */
    ehr_free(block);
    tu_batch_free(&b);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_genesis_init_writes_block0_members_and_tip),
        cmocka_unit_test(test_empty_ledger_has_no_tip_and_refuses_bad_genesis),
        T(test_append_then_every_lookup),
        T(test_refused_appends_write_nothing),
        T(test_state_writes_apply_in_order_with_removals),
        T(test_state_scan_prefix_resume_and_bounds),
        T(test_state_write_count_and_bytes_limits),
        T(test_applied_index_only_moves_forward),
        cmocka_unit_test(test_map_full_is_a_clear_error_and_a_bigger_map_continues),
        T(test_reopen_and_read_only_use),
        T(test_other_format_version_is_refused_at_open),
        T(test_tx_lookup_detects_a_damaged_index_row),
        T(test_results_from_the_overlay_the_derived_tables_and_the_write_log),
        T(test_one_result_per_transaction),
        T(test_result_size_limit_at_its_edge),
    };
    if (ehr_crypto_init() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
