/*
 * Tests of ledger_verify: a sound chain passes; each kind of damage to a
 * closed ledger (made through LMDB directly) is found at its place, with its
 * own fault, error code and message: a flipped byte (checksum), a broken
 * hash link, a bad transaction or header signature, a wrong Merkle root or
 * height, an expired or foreign transaction stored as OK, tx index and tip
 * damage, results that do not fit their block or differ between the write
 * log and the tx index, a proposer that was not a member, and block 0's
 * state writes that are not its genesis's. A transaction
 * stored with its refusal verifies. A replay callback sees the state before
 * each block and the verdicts, and its findings become faults.
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

enum { MEMBERS = 2, BLOCKS = 4, TXS = 3 };

typedef struct fixture {
    char *dir;
    ledger *l;
    ehr_signing_key keys[MEMBERS];
} fixture;

/* A closed ledger of BLOCKS blocks of TXS transactions after block 0. */
static int fixture_setup(void **state)
{
    fixture *f = ehr_calloc(1, sizeof *f);
    for (uint32_t i = 0; i < MEMBERS; i++)
        tu_key(&f->keys[i], 200 + i);
    uint8_t *g;
    size_t g_len;
    tu_genesis(f->keys, MEMBERS, &g, &g_len);
    f->dir = tu_tmpdir();
    if (ledger_open(f->dir, NULL, &f->l, NULL) != 0 ||
        ledger_genesis_init(f->l, g, g_len, NULL) != 0)
        return -1;
    ehr_free(g);
    for (int i = 0; i < BLOCKS; i++)
        if (tu_append(f->l, &f->keys[i % MEMBERS], TXS, NULL, NULL) != 0)
            return -1;
    ledger_close(f->l);
    f->l = NULL;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    fixture *f = *state;
    ledger_close(f->l);
    tu_rmdir(f->dir);
    ehr_free(f);
    return 0;
}

/* Open F's ledger and verify it; the report lands in REP. */
static int verify(fixture *f, ledger_verify_report *rep)
{
    if (f->l == NULL)
        assert_int_equal(ledger_open(f->dir, &(ledger_options){.read_only = true}, &f->l, NULL), 0);
    return ledger_verify(f->l, NULL, rep);
}

/* The stored block bytes at HEIGHT (ehr_malloc'd). */
static uint8_t *block_at(fixture *f, uint64_t height, size_t *len)
{
    ledger *l;
    assert_int_equal(ledger_open(f->dir, NULL, &l, NULL), 0);
    uint8_t *bytes;
    assert_int_equal(ledger_block_get(l, height, &bytes, len, NULL), 0);
    ledger_close(l);
    return bytes;
}

/* Store BYTES at HEIGHT with a correct checksum, bypassing every check. */
static void block_put_raw(fixture *f, uint64_t height, const uint8_t *bytes, size_t len)
{
    uint8_t key[8];
    ledger__height_key(key, height);
    size_t prefix = ledger__stored_block_prefix_size(len);
    uint8_t *record = ehr_malloc(prefix + len);
    ledger__stored_block_prefix_write(record, height, bytes, len);
    memcpy(record + prefix, bytes, len);
    assert_int_equal(tu_raw_put(f->dir, LEDGER__DB_BLOCKS, key, sizeof key, record, prefix + len),
                     0);
    ehr_free(record);
}

static void test_sound_ledger_verifies(void **state)
{
    fixture *f = *state;
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_int_equal(rep.fault, LEDGER_FAULT_NONE);
    assert_true(rep.blocks_checked == BLOCKS + 1);
    assert_true(rep.txs_checked == BLOCKS * TXS);
    assert_non_null(strstr(rep.msg, "ledger ok"));
    assert_string_equal(ledger_fault_name(rep.fault), "none");
}

static void flip_block_byte(uint8_t *value, size_t *len, void *ctx)
{
    value[*len - 100] ^= 0x10; /* inside the last transaction */
}

static void test_flipped_byte_in_stored_block_is_corrupt(void **state)
{
    fixture *f = *state;
    uint8_t key[8];
    ledger__height_key(key, 2);
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_BLOCKS, key, 8, flip_block_byte, NULL), 0);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_CORRUPT);
    assert_true(rep.height == 2);
    assert_true(rep.blocks_checked == 2);
    assert_string_equal(rep.msg,
                        "corrupt block record at height 2: the stored checksum does not match");
    uint8_t *bytes;
    size_t len;
    assert_int_equal(ledger_block_get(f->l, 2, &bytes, &len, NULL), EHR_ECORRUPT);
}

static void test_broken_hash_link_is_found(void **state)
{
    fixture *f = *state;
    /* A properly signed block 3 that names the wrong predecessor. */
    size_t len;
    uint8_t *old = block_at(f, 2, &len);
    ledger_block_view v2;
    assert_int_equal(ledger_block_parse(old, len, &v2, NULL), 0);
    ledger_tip fake = {.height = 2, .time_ms = v2.header.time_ms};
    memcpy(fake.hash, v2.hash, EHR_HASH_BYTES);
    fake.hash[31] ^= 1;
    ledger_block_view_release(&v2);
    ehr_free(old);
    tu_batch b;
    tu_batch_make(&b, &f->keys[0], TXS, 0);
    uint8_t *block;
    tu_block_next(&fake, &b, &f->keys[0], &block, &len);
    block_put_raw(f, 3, block, len);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_ELINK);
    assert_int_equal(rep.fault, LEDGER_FAULT_HASH_LINK);
    assert_true(rep.height == 3);
    assert_string_equal(rep.msg,
                        "broken hash link at height 3: prev_hash is not the hash of block 2");
    assert_string_equal(ledger_fault_name(rep.fault), "hash-link");
    ehr_free(block);
    tu_batch_free(&b);
}

/* The append path trusts admission for transaction signatures; verify does
 * not. A forged transaction stored as OK is found by verify. */
static void test_bad_transaction_signature_is_found(void **state)
{
    fixture *f = *state;
    assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], TXS, 0);
    uint8_t *forged = (uint8_t *)b.envelopes[1].data;
    forged[b.envelopes[1].len - 5] ^= 0x20; /* signature byte; the hash is the body's */
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                         .writes = b.writes,
                         .write_count = b.count,
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = 99};
    assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, NULL, &rep), EHR_EBADSIG);
    assert_int_equal(rep.fault, LEDGER_FAULT_TX_SIG);
    assert_true(rep.height == BLOCKS + 1);
    assert_int_equal(rep.tx_index, 1);
    char want[128];
    snprintf(want, sizeof want,
             "bad signature: height %d tx 1 is stored as OK, but its signature does not verify",
             BLOCKS + 1);
    assert_string_equal(rep.msg, want);
    ehr_free(block);
    tu_batch_free(&b);
}

static void test_bad_header_signature_is_found(void **state)
{
    fixture *f = *state;
    size_t len;
    uint8_t *block = block_at(f, 1, &len);
    ledger_block_view v;
    assert_int_equal(ledger_block_parse(block, len, &v, NULL), 0);
    block[v.signature - block + 3] ^= 0x01;
    ledger_block_view_release(&v);
    block_put_raw(f, 1, block, len);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_EBADSIG);
    assert_int_equal(rep.fault, LEDGER_FAULT_HEADER_SIG);
    assert_true(rep.height == 1);
    assert_int_equal(rep.tx_index, -1);
    assert_non_null(strstr(rep.msg, "bad block signature at height 1"));
    ehr_free(block);
}

static void test_merkle_root_and_height_faults_are_found(void **state)
{
    fixture *f = *state;
    size_t len, len3;
    uint8_t *block = block_at(f, 2, &len);
    uint8_t *block3 = block_at(f, 3, &len3);
    /* Block 2 with block 3's first transaction in place of its own. */
    Ehr__V1__Block *pb = ehr__v1__block__unpack(NULL, len, block);
    Ehr__V1__Block *pb3 = ehr__v1__block__unpack(NULL, len3, block3);
    assert_non_null(pb);
    assert_non_null(pb3);
    Ehr__V1__TxEnvelope *kept = pb->txs[0];
    pb->txs[0] = pb3->txs[0];
    size_t bad_len = ehr__v1__block__get_packed_size(pb);
    uint8_t *bad = ehr_malloc(bad_len);
    ehr__v1__block__pack(pb, bad);
    pb->txs[0] = kept;
    block_put_raw(f, 2, bad, bad_len);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_MERKLE);
    assert_true(rep.height == 2);
    assert_non_null(strstr(rep.msg, "bad Merkle root at height 2"));
    ledger_close(f->l);
    f->l = NULL;

    /* Block 3 stored at height 2. */
    block_put_raw(f, 2, block3, len3);
    assert_int_equal(verify(f, &rep), EHR_ELINK);
    assert_int_equal(rep.fault, LEDGER_FAULT_HEIGHT);
    assert_true(rep.height == 2);
    assert_non_null(strstr(rep.msg, "height sequence broken"));
    ehr_free(bad);
    ehr__v1__block__free_unpacked(pb, NULL);
    ehr__v1__block__free_unpacked(pb3, NULL);
    ehr_free(block);
    ehr_free(block3);
}

/* Append (through the API, which does not look inside transactions) a block
 * whose transaction 0 is for CHAIN and expires at EXPIRY_MS. */
static void append_questionable(fixture *f, const char *chain, uint64_t expiry_ms)
{
    if (f->l == NULL)
        assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], 1, 0);
    ehr_free((void *)b.envelopes[0].data);
    uint8_t *env;
    size_t env_len;
    tu_tx(&f->keys[1], chain, expiry_ms, 0, &env, &env_len, b.hashes[0]);
    b.envelopes[0] = (ledger_bytes){env, env_len};
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = 99};
    assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
    ehr_free(block);
    tu_batch_free(&b);
}

static void test_expired_and_foreign_transactions_are_found(void **state)
{
    fixture *f = *state;
    /* Block time is genesis time + 1 s per block: this expired before. */
    append_questionable(f, TU_CHAIN_ID, TU_GENESIS_TIME_MS + 10);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_EEXPIRED);
    assert_int_equal(rep.fault, LEDGER_FAULT_TX);
    assert_int_equal(rep.tx_index, 0);
    assert_non_null(strstr(rep.msg, "invalid transaction"));
    assert_non_null(strstr(rep.msg, "is stored as OK, but: transaction expired"));
    ledger_close(f->l);
    f->l = NULL;
    tu_rmdir(f->dir);
    ehr_free(f);
    assert_int_equal(fixture_setup(state), 0);
    f = *state;
    append_questionable(f, "ehr-elsewhere", TU_GENESIS_TIME_MS + 86400000);
    assert_int_equal(verify(f, &rep), EHR_ECHAIN);
    assert_int_equal(rep.fault, LEDGER_FAULT_TX);
}

static void add_tx_count(uint8_t *value, size_t *len, void *ctx)
{
    Ehr__V1__ChainTip *t = ehr__v1__chain_tip__unpack(NULL, *len, value);
    assert_non_null(t);
    t->tx_count += 1;
    *len = ehr__v1__chain_tip__pack(t, value);
    ehr__v1__chain_tip__free_unpacked(t, NULL);
}

static void test_tip_and_tx_index_damage_is_found(void **state)
{
    fixture *f = *state;
    /* The tip first: the derived tables are checked before the walk, so a
     * damaged index is reported ahead of a damaged tip. */
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_META, LEDGER__META_TIP,
                                 strlen(LEDGER__META_TIP), add_tx_count, NULL),
                     0);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_TIP);
    ledger_close(f->l);
    f->l = NULL;

    uint8_t bogus_hash[EHR_HASH_BYTES] = {0xee};
    uint8_t row[LEDGER__TX_LOCATION_BYTES_MAX];
    ledger_tx_location loc = {.height = 1, .index = 0, .offset = 5, .length = 5};
    size_t n = ledger__tx_location_write(row, &loc, (ledger_bytes){NULL, 0});
    assert_int_equal(tu_raw_put(f->dir, LEDGER__DB_TXS, bogus_hash, EHR_HASH_BYTES, row, n), 0);
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_TX_INDEX);
    assert_non_null(strstr(rep.msg, "rows"));
}

static void flip_last_byte(uint8_t *value, size_t *len, void *ctx)
{
    (void)ctx;
    value[*len - 1] ^= 0x01;
}

static int first_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                     size_t value_len)
{
    (void)value;
    (void)value_len;
    uint8_t *out = ctx;
    assert_int_equal(key_len, 4 + EHR_HASH_BYTES);
    memcpy(out, key, key_len);
    return 1;
}

/* The world state is checked against the write log it derives from: a
 * changed value, a key no write leaves there, and a damaged write-log
 * record each have their own finding. */
static void test_state_and_write_log_damage_is_found(void **state)
{
    fixture *f = *state;
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), 0);
    uint8_t key[4 + EHR_HASH_BYTES];
    assert_int_equal(
        ledger_state_scan(f->l, (const uint8_t *)"rec/", 4, NULL, 0, 1, first_key, key, NULL), 1);
    ledger_close(f->l);
    f->l = NULL;

    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_STATE, key, sizeof key, flip_last_byte, NULL),
                     0);
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_STATE);
    assert_non_null(strstr(rep.msg, "another value"));
    ledger_close(f->l);
    f->l = NULL;
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_STATE, key, sizeof key, flip_last_byte, NULL),
                     0);
    assert_int_equal(verify(f, &rep), 0);
    ledger_close(f->l);
    f->l = NULL;

    assert_int_equal(tu_raw_put(f->dir, LEDGER__DB_STATE, "rec/", 4, "x", 1), 0);
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_STATE);
    assert_non_null(strstr(rep.msg, "no write"));
    ledger_close(f->l);
    f->l = NULL;

    uint8_t height[8];
    ledger__height_key(height, 2);
    assert_int_equal(
        tu_raw_edit(f->dir, LEDGER__DB_WRITES, height, sizeof height, flip_last_byte, NULL), 0);
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_CORRUPT);
    assert_int_equal(rep.height, 2);
    assert_non_null(strstr(rep.msg, "write-log"));
}

/* Append a block of COUNT transactions whose signatures at BAD[0..BAD_COUNT)
 * are forged. */
static void append_forged(fixture *f, size_t count, const size_t *bad, size_t bad_count)
{
    if (f->l == NULL)
        assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], count, 0);
    for (size_t i = 0; i < bad_count; i++)
        ((uint8_t *)b.envelopes[bad[i]].data)[b.envelopes[bad[i]].len - 1] ^= 0x01;
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = 99};
    assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
    ehr_free(block);
    tu_batch_free(&b);
}

static void count_progress(void *ctx, uint64_t height, uint64_t tip)
{
    (*(int *)ctx)++;
}

/* Transactions are checked on several threads; the report names the first
 * bad one whatever the thread count. */
static void test_first_bad_signature_is_reported_whatever_the_thread_count(void **state)
{
    fixture *f = *state;
    const size_t bad[] = {50, 10};
    append_forged(f, 64, bad, 2);
    const uint32_t thread_counts[] = {1, 2, 3, LEDGER_VERIFY_THREADS_MAX, 0};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(thread_counts); i++) {
        int calls = 0;
        ledger_verify_options opts = {
            .threads = thread_counts[i], .progress = count_progress, .progress_ctx = &calls};
        ledger_verify_report rep;
        assert_int_equal(ledger_verify(f->l, &opts, &rep), EHR_EBADSIG);
        assert_int_equal(rep.fault, LEDGER_FAULT_TX_SIG);
        assert_int_equal(rep.tx_index, 10);
        assert_true(rep.height == BLOCKS + 1);
        assert_int_equal(calls, 1);
    }
    ledger_verify_options too_many = {.threads = LEDGER_VERIFY_THREADS_MAX + 1};
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, &too_many, &rep), EHR_EINVAL);
    assert_int_equal(rep.fault, LEDGER_FAULT_NONE);
    assert_non_null(strstr(rep.msg, "threads"));
}

/* A bad transaction only in the last thread's share is found too. */
static void test_bad_signature_in_a_worker_slice_is_found(void **state)
{
    fixture *f = *state;
    const size_t bad[] = {63};
    append_forged(f, 64, bad, 1);
    ledger_verify_options opts = {.threads = 2};
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, &opts, &rep), EHR_EBADSIG);
    assert_int_equal(rep.tx_index, 63);
    assert_string_equal(ledger_fault_name(rep.fault), "tx-signature");
}

/* Signers change from transaction to transaction (verify keeps the last
 * parsed key): a valid transaction by another member passes, one that names
 * a signer but was signed by another key does not. */
static void test_signer_changes_and_impostors_within_a_block(void **state)
{
    fixture *f = *state;
    assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], 64, 0);
    for (size_t i = 20; i < 24; i++) { /* valid, by keys[0] */
        ehr_free((void *)b.envelopes[i].data);
        uint8_t *env;
        size_t env_len;
        tu_tx(&f->keys[0], TU_CHAIN_ID, TU_GENESIS_TIME_MS + 86400000, 0, &env, &env_len,
              b.hashes[i]);
        b.envelopes[i] = (ledger_bytes){env, env_len};
    }
    uint8_t *body, *env;
    size_t body_len, env_len;
    tu_tx_body(&f->keys[1], TU_CHAIN_ID, TU_GENESIS_TIME_MS + 86400000, 0, &body, &body_len);
    assert_int_equal(ledger_tx_envelope_build(body, body_len, &f->keys[0], &env, &env_len), 0);
    ehr_free((void *)b.envelopes[40].data);
    b.envelopes[40] = (ledger_bytes){env, env_len}; /* names keys[1], signed by keys[0] */
    ledger_tx_hash(body, body_len, b.hashes[40]);
    ehr_free(body);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = 99};
    assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
    for (uint32_t threads = 1; threads <= 2; threads++) {
        ledger_verify_options opts = {.threads = threads};
        ledger_verify_report rep;
        assert_int_equal(ledger_verify(f->l, &opts, &rep), EHR_EBADSIG);
        assert_int_equal(rep.tx_index, 40);
    }
    ledger_block_view view;
    assert_int_equal(ledger_block_parse(block, len, &view, NULL), 0);
    long failed;
    assert_int_equal(ledger_block_check(&view, LEDGER_CHECK_ALL, TU_CHAIN_ID, NULL, &failed, NULL),
                     EHR_EBADSIG);
    assert_int_equal(failed, 40);
    ledger_block_view_release(&view);
    ehr_free(block);
    tu_batch_free(&b);
}

/* ---- Results ---- */

/* Open F's ledger, append one block of TXS transactions with varied
 * results (*B keeps them), close it (the final checkpoint writes the
 * rows). Returns the block's height. */
static uint64_t results_block_add(fixture *f, tu_batch *b)
{
    assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch_make(b, &f->keys[1], TXS, 0);
    tu_batch_results(b, 7);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, b, &f->keys[0], &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b->hashes,
                         .results = b->results,
                         .result_count = b->count,
                         .applied_index = tip.applied_index + 1};
    assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
    ehr_free(block);
    ledger_close(f->l);
    f->l = NULL;
    return tip.height + 1;
}

typedef struct result_at {
    uint64_t height;
    size_t index; /* the transaction whose result is edited */
} result_at;

/* Flip a byte inside the result at CTX in a write-log record. */
static void flip_logged_result(uint8_t *value, size_t *len, void *ctx)
{
    const result_at *at = ctx;
    ledger__write_log log;
    assert_int_equal(ledger__writes_record_open(value, *len, at->height, &log), 0);
    assert_true(log.results[at->index].len > 0);
    size_t offset = (size_t)(log.results[at->index].data - value);
    ledger__write_log_release(&log);
    value[offset] ^= 0x01;
}

/* Re-encode a write-log record without its last result (checksum right). */
static void drop_last_result(uint8_t *value, size_t *len, void *ctx)
{
    const result_at *at = ctx;
    ledger__write_log log;
    assert_int_equal(ledger__writes_record_open(value, *len, at->height, &log), 0);
    ledger__write_log shorter = log;
    shorter.result_count--;
    size_t n = ledger__writes_record_size(&shorter);
    uint8_t *rec = ehr_malloc(n);
    ledger__writes_record_write(rec, n, at->height, &shorter);
    ledger__write_log_release(&log);
    memcpy(value, rec, n);
    *len = n;
    ehr_free(rec);
}

/* Re-encode a write-log record with the result at CTX one byte over the
 * limit (with protobuf-c: our encoder refuses to; checksum right). */
static void oversize_result(uint8_t *value, size_t *len, void *ctx)
{
    const result_at *at = ctx;
    Ehr__V1__StoredWrites *m = ehr__v1__stored_writes__unpack(NULL, *len, value);
    assert_non_null(m);
    assert_true(at->index < m->n_results);
    static uint8_t over[EHR_TX_RESULT_BYTES_MAX + 1];
    ProtobufCBinaryData kept = m->results[at->index];
    m->results[at->index] = (ProtobufCBinaryData){sizeof over, over};
    size_t n = ehr__v1__stored_writes__get_packed_size(m);
    assert_true(n <= *len + 4096);
    assert_int_equal(ehr__v1__stored_writes__pack(m, value), n);
    m->results[at->index] = kept;
    ehr__v1__stored_writes__free_unpacked(m, NULL);
    ledger__block_checksum(value + 2, at->height, value + 2 + LEDGER__CHECKSUM_BYTES,
                           n - 2 - LEDGER__CHECKSUM_BYTES);
    *len = n;
}

/* Flip a byte inside the result of a tx-index row. */
static void flip_row_result(uint8_t *value, size_t *len, void *ctx)
{
    (void)ctx;
    ledger_tx_location loc;
    ledger_bytes result;
    assert_int_equal(ledger__tx_location_read(value, *len, &loc, &result), 0);
    assert_true(result.len > 0);
    value[result.data - value] ^= 0x01;
}

static void test_results_verify_and_a_flipped_logged_result_is_corrupt(void **state)
{
    fixture *f = *state;
    tu_batch b;
    uint64_t h = results_block_add(f, &b);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), 0);
    assert_true(rep.txs_checked == (BLOCKS + 1) * TXS);
    ledger_close(f->l);
    f->l = NULL;
    uint8_t key[8];
    ledger__height_key(key, h);
    result_at at = {.height = h, .index = 1};
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_WRITES, key, 8, flip_logged_result, &at), 0);
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_CORRUPT);
    assert_true(rep.height == h);
    char want[128];
    snprintf(want, sizeof want, "corrupt write-log record at height %llu: bad checksum or format",
             (unsigned long long)h);
    assert_string_equal(rep.msg, want);
    tu_batch_free(&b);
}

static void test_a_missing_result_is_found(void **state)
{
    fixture *f = *state;
    tu_batch b;
    uint64_t h = results_block_add(f, &b);
    uint8_t key[8];
    ledger__height_key(key, h);
    result_at at = {.height = h};
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_WRITES, key, 8, drop_last_result, &at), 0);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_RESULTS);
    assert_string_equal(ledger_fault_name(rep.fault), "results");
    assert_true(rep.height == h);
    char want[160];
    snprintf(want, sizeof want,
             "results mismatch at height %llu: the write-log record holds %d results for %d "
             "transactions",
             (unsigned long long)h, TXS - 1, TXS);
    assert_string_equal(rep.msg, want);
    tu_batch_free(&b);
}

static void test_a_result_over_the_limit_is_found(void **state)
{
    fixture *f = *state;
    tu_batch b;
    uint64_t h = results_block_add(f, &b);
    uint8_t key[8];
    ledger__height_key(key, h);
    result_at at = {.height = h, .index = 2};
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_WRITES, key, 8, oversize_result, &at), 0);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_RESULTS);
    assert_true(rep.height == h);
    assert_non_null(strstr(rep.msg, "results over their limit"));
    assert_non_null(strstr(rep.msg, "over the limit of 256 bytes"));
    tu_batch_free(&b);
}

static void test_a_row_holding_another_result_is_found(void **state)
{
    fixture *f = *state;
    tu_batch b;
    uint64_t h = results_block_add(f, &b);
    assert_true(b.results[1].len > 0);
    assert_int_equal(
        tu_raw_edit(f->dir, LEDGER__DB_TXS, b.hashes[1], EHR_HASH_BYTES, flip_row_result, NULL), 0);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_TX_INDEX);
    assert_true(rep.height == h);
    assert_int_equal(rep.tx_index, 1);
    char want[160];
    snprintf(want, sizeof want,
             "tx index mismatch: height %llu tx 1: the row's result (%zu bytes) is not the write "
             "log's (%zu bytes)",
             (unsigned long long)h, b.results[1].len, b.results[1].len);
    assert_string_equal(rep.msg, want);
    tu_batch_free(&b);
}

/* ---- Refusals, proposers and the replay ---- */

/* A serialized TxResult of CODE with a reason into OUT; returns its size. */
static size_t result_of(uint8_t out[EHR_TX_RESULT_BYTES_MAX], Ehr__V1__TxResultCode code)
{
    Ehr__V1__TxResult r = EHR__V1__TX_RESULT__INIT;
    r.code = code;
    r.reason = "refused";
    return ehr__v1__tx_result__pack(&r, out);
}

/* Append a block of TXS transactions whose transaction 1 has a forged
 * signature and transaction 2 expired before the block, each stored with
 * the refusal a node records (no state writes for either). */
static void append_refused(fixture *f)
{
    if (f->l == NULL)
        assert_int_equal(ledger_open(f->dir, NULL, &f->l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(f->l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &f->keys[1], TXS, 0);
    ((uint8_t *)b.envelopes[1].data)[b.envelopes[1].len - 5] ^= 0x20;
    ehr_free((void *)b.envelopes[2].data);
    uint8_t *env;
    size_t env_len;
    tu_tx(&f->keys[1], TU_CHAIN_ID, TU_GENESIS_TIME_MS + 10, 0, &env, &env_len, b.hashes[2]);
    b.envelopes[2] = (ledger_bytes){env, env_len};
    b.results[1] = (ledger_bytes){
        b.result_bytes[1],
        result_of(b.result_bytes[1], EHR__V1__TX_RESULT_CODE__TX_RESULT_BAD_SIGNATURE)};
    b.results[2] =
        (ledger_bytes){b.result_bytes[2],
                       result_of(b.result_bytes[2], EHR__V1__TX_RESULT_CODE__TX_RESULT_MALFORMED)};
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &f->keys[0], &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                         .writes = b.writes,
                         .write_count = 1, /* transaction 0's only */
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = tip.applied_index + 1};
    assert_int_equal(ledger_append_block(f->l, &req, NULL), 0);
    ehr_free(block);
    tu_batch_free(&b);
}

/* A node keeps a forged or expired transaction in its block with a refusal
 * result: that is a sound ledger. */
static void test_transactions_stored_with_their_refusal_verify(void **state)
{
    fixture *f = *state;
    append_refused(f);
    ledger_verify_report rep;
    for (uint32_t threads = 1; threads <= 2; threads++) {
        ledger_verify_options opts = {.threads = threads};
        assert_int_equal(ledger_verify(f->l, &opts, &rep), 0);
        assert_int_equal(rep.fault, LEDGER_FAULT_NONE);
        assert_true(rep.txs_checked == (BLOCKS + 1) * TXS);
    }
}

/* What the replay callback below saw and is told to answer. */
typedef struct replay_probe {
    uint64_t calls;
    uint64_t last_height;
    uint64_t fail_height; /* 0: never */
    enum ledger_fault fail_fault;
    long fail_tx;
    enum ledger_tx_sig sigs[TXS]; /* of the last block */
    size_t rec_keys;              /* "rec/" keys in the state before the last block */
} replay_probe;

static int count_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                     size_t value_len)
{
    (void)key;
    (void)value;
    assert_int_equal(key_len, 4 + EHR_HASH_BYTES);
    assert_int_equal(value_len, 48);
    (*(size_t *)ctx)++;
    return 0;
}

static int replay_check(void *ctx, const ledger_replay_block *b, ledger_replay_finding *finding,
                        ehr_diag *diag)
{
    replay_probe *p = ctx;
    const ledger_block_header *h = &b->view->header;
    p->calls++;
    /* Called in height order, from 1, once per block. */
    assert_true(h->height == p->last_height + 1);
    p->last_height = h->height;
    assert_string_equal(b->chain_id, TU_CHAIN_ID);
    assert_int_equal(h->tx_count, TXS);
    for (uint32_t i = 0; i < h->tx_count; i++) {
        p->sigs[i] = b->sigs[i];
        /* The state is as of the block before: this block's writes are not
         * in it, every earlier block's are. */
        uint8_t key[4 + EHR_HASH_BYTES], value[EHR_STATE_VALUE_BYTES_MAX];
        size_t len;
        memcpy(key, "rec/", 4);
        memcpy(key + 4, b->tx_hashes[i], EHR_HASH_BYTES);
        assert_int_equal(b->state->get(b->state->ctx, key, sizeof key, value, &len), EHR_ENOTFOUND);
    }
    p->rec_keys = 0;
    assert_int_equal(
        b->state->scan(b->state->ctx, (const uint8_t *)"rec/", 4, count_key, &p->rec_keys), 0);
    uint8_t member[LEDGER_MEMBER_KEY_BYTES], value[EHR_STATE_VALUE_BYTES_MAX];
    size_t len;
    ledger_member_key(member, h->proposer);
    assert_int_equal(b->state->get(b->state->ctx, member, sizeof member, value, &len), 0);
    assert_true(b->write_count >= 1);
    assert_non_null(b->results);
    if (h->height != p->fail_height)
        return 0;
    if (p->fail_fault == LEDGER_FAULT_NONE)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "a state value does not decode");
    finding->fault = p->fail_fault;
    finding->tx_index = p->fail_tx;
    return ehr_diag_fail(diag, EHR_ECORRUPT, "the probe says block %llu differs",
                         (unsigned long long)h->height);
}

/* The replay is called for each block above 0 with the state before it
 * (each fixture block writes TXS "rec/" keys) and each transaction's
 * verdict, judged as a node judges it. */
static void test_replay_sees_the_state_before_each_block_and_the_verdicts(void **state)
{
    fixture *f = *state;
    append_refused(f);
    replay_probe p = {0};
    ledger_verify_options opts = {.threads = 2, .replay = replay_check, .replay_ctx = &p};
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, &opts, &rep), 0);
    assert_true(p.calls == BLOCKS + 1);
    assert_true(p.rec_keys == BLOCKS * TXS);
    assert_int_equal(p.sigs[0], LEDGER_TX_SIG_VALID);
    assert_int_equal(p.sigs[1], LEDGER_TX_SIG_INVALID);
    /* Expiry is the rules' to judge at block time: the signature is good. */
    assert_int_equal(p.sigs[2], LEDGER_TX_SIG_VALID);
}

/* A replay that differs is a fault of its own kind at its place, with the
 * callback's words; one that cannot run is a state fault that says so. */
static void test_replay_findings_are_faults(void **state)
{
    fixture *f = *state;
    assert_int_equal(ledger_open(f->dir, &(ledger_options){.read_only = true}, &f->l, NULL), 0);
    replay_probe p = {.fail_height = 2, .fail_fault = LEDGER_FAULT_REPLAY_RESULT, .fail_tx = 1};
    ledger_verify_options opts = {.replay = replay_check, .replay_ctx = &p};
    ledger_verify_report rep;
    assert_int_equal(ledger_verify(f->l, &opts, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_REPLAY_RESULT);
    assert_string_equal(ledger_fault_name(rep.fault), "replay-result");
    assert_true(rep.height == 2);
    assert_int_equal(rep.tx_index, 1);
    assert_string_equal(rep.msg, "the probe says block 2 differs");
    assert_true(rep.blocks_checked == 2);

    p = (replay_probe){.fail_height = 3, .fail_fault = LEDGER_FAULT_REPLAY_STATE, .fail_tx = -1};
    assert_int_equal(ledger_verify(f->l, &opts, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_REPLAY_STATE);
    assert_string_equal(ledger_fault_name(rep.fault), "replay-state");
    assert_true(rep.height == 3);
    assert_int_equal(rep.tx_index, -1);

    p = (replay_probe){.fail_height = 1, .fail_fault = LEDGER_FAULT_NONE};
    assert_int_equal(ledger_verify(f->l, &opts, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_REPLAY_STATE);
    assert_string_equal(rep.msg, "block 1 cannot be replayed: a state value does not decode");
}

/* The last block re-signed by a key that is no member (its transactions,
 * and so its tx-index rows, unchanged): only the proposer's membership, in
 * the state as of the block before, tells it apart. */
static void test_a_proposer_that_was_not_a_member_is_found(void **state)
{
    fixture *f = *state;
    size_t len;
    uint8_t *block = block_at(f, BLOCKS, &len);
    ledger_block_view v;
    assert_int_equal(ledger_block_parse(block, len, &v, NULL), 0);
    ledger_bytes envelopes[TXS];
    for (uint32_t i = 0; i < TXS; i++)
        envelopes[i] = (ledger_bytes){v.bytes + v.txs[i].offset, v.txs[i].length};
    ledger_block_params params = {.height = v.header.height,
                                  .time_ms = v.header.time_ms,
                                  .raft_term = v.header.raft_term,
                                  .raft_index = v.header.raft_index};
    memcpy(params.prev_hash, v.header.prev_hash, EHR_HASH_BYTES);
    ehr_signing_key stranger;
    tu_key(&stranger, 999);
    uint8_t *forged;
    size_t forged_len;
    assert_int_equal(ledger_block_build(&params, envelopes, TXS, NULL, &stranger, &forged,
                                        &forged_len, NULL, NULL),
                     0);
    ledger_block_view_release(&v);
    block_put_raw(f, BLOCKS, forged, forged_len);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_EDENIED);
    assert_int_equal(rep.fault, LEDGER_FAULT_PROPOSER);
    assert_string_equal(ledger_fault_name(rep.fault), "proposer");
    assert_true(rep.height == BLOCKS);
    char want[64];
    snprintf(want, sizeof want, "block %d's proposer ", BLOCKS);
    assert_non_null(strstr(rep.msg, want));
    snprintf(want, sizeof want, " was not a member at height %d", BLOCKS - 1);
    assert_non_null(strstr(rep.msg, want));
    ehr_free(forged);
    ehr_free(block);
}

/* Re-encode block 0's write-log record (checksum right) with the last
 * byte of its second write's value (a founding member) flipped; CTX gets
 * that write's key. */
static void flip_genesis_member(uint8_t *value, size_t *len, void *ctx)
{
    uint8_t *key = ctx;
    ledger__write_log log;
    assert_int_equal(ledger__writes_record_open(value, *len, 0, &log), 0);
    assert_true(log.write_count == 1 + MEMBERS);
    ledger_state_write writes[1 + MEMBERS];
    memcpy(writes, log.writes, sizeof writes);
    assert_int_equal(writes[1].key_len, LEDGER_MEMBER_KEY_BYTES);
    memcpy(key, writes[1].key, LEDGER_MEMBER_KEY_BYTES);
    uint8_t flipped[EHR_STATE_VALUE_BYTES_MAX];
    memcpy(flipped, writes[1].value, writes[1].value_len);
    flipped[writes[1].value_len - 1] ^= 0x01;
    writes[1].value = flipped;
    ledger__write_log changed = log;
    changed.writes = writes;
    size_t n = ledger__writes_record_size(&changed);
    uint8_t *record = ehr_malloc(n);
    ledger__writes_record_write(record, n, 0, &changed);
    ledger__write_log_release(&log);
    memcpy(value, record, n);
    *len = n;
    ehr_free(record);
}

/* Block 0's state writes are the state every replay starts from: a member
 * record changed in the write log and the world state alike (so that the
 * two agree) is still found against the genesis. */
static void test_genesis_writes_that_are_not_the_genesis_are_found(void **state)
{
    fixture *f = *state;
    uint8_t height[8], key[LEDGER_MEMBER_KEY_BYTES];
    ledger__height_key(height, 0);
    assert_int_equal(
        tu_raw_edit(f->dir, LEDGER__DB_WRITES, height, sizeof height, flip_genesis_member, key), 0);
    assert_int_equal(tu_raw_edit(f->dir, LEDGER__DB_STATE, key, sizeof key, flip_last_byte, NULL),
                     0);
    ledger_verify_report rep;
    assert_int_equal(verify(f, &rep), EHR_ECORRUPT);
    assert_int_equal(rep.fault, LEDGER_FAULT_GENESIS);
    assert_true(rep.height == 0);
    assert_string_equal(
        rep.msg,
        "block 0's stored state writes are not the ones its genesis makes (from write 1 of 3)");
}

/* The three faults an operator must tell apart read differently. */
static void test_fault_messages_are_distinct(void **state)
{
    const enum ledger_fault faults[] = {
        LEDGER_FAULT_NO_CHAIN, LEDGER_FAULT_CORRUPT,       LEDGER_FAULT_DECODE,
        LEDGER_FAULT_HEIGHT,   LEDGER_FAULT_HASH_LINK,     LEDGER_FAULT_TIME,
        LEDGER_FAULT_GENESIS,  LEDGER_FAULT_MERKLE,        LEDGER_FAULT_HEADER_SIG,
        LEDGER_FAULT_TX,       LEDGER_FAULT_TX_SIG,        LEDGER_FAULT_TX_INDEX,
        LEDGER_FAULT_TIP,      LEDGER_FAULT_STATE,         LEDGER_FAULT_RESULTS,
        LEDGER_FAULT_PROPOSER, LEDGER_FAULT_REPLAY_RESULT, LEDGER_FAULT_REPLAY_STATE};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(faults); i++)
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(ledger_fault_name(faults[i]), ledger_fault_name(faults[j]));
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_sound_ledger_verifies),
        T(test_flipped_byte_in_stored_block_is_corrupt),
        T(test_broken_hash_link_is_found),
        T(test_bad_transaction_signature_is_found),
        T(test_bad_header_signature_is_found),
        T(test_merkle_root_and_height_faults_are_found),
        T(test_expired_and_foreign_transactions_are_found),
        T(test_tip_and_tx_index_damage_is_found),
        T(test_state_and_write_log_damage_is_found),
        T(test_first_bad_signature_is_reported_whatever_the_thread_count),
        T(test_bad_signature_in_a_worker_slice_is_found),
        T(test_signer_changes_and_impostors_within_a_block),
        T(test_results_verify_and_a_flipped_logged_result_is_corrupt),
        T(test_a_missing_result_is_found),
        T(test_a_result_over_the_limit_is_found),
        T(test_a_row_holding_another_result_is_found),
        T(test_transactions_stored_with_their_refusal_verify),
        T(test_replay_sees_the_state_before_each_block_and_the_verdicts),
        T(test_replay_findings_are_faults),
        T(test_a_proposer_that_was_not_a_member_is_found),
        T(test_genesis_writes_that_are_not_the_genesis_are_found),
        cmocka_unit_test(test_fault_messages_are_distinct),
    };
    if (ehr_crypto_init() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
