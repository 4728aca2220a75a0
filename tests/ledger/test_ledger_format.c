/*
 * Unit tests for the ledger's formats: the canonical wire reader, the
 * transaction envelope and admission check, Merkle trees and proofs,
 * blocks (parse, check, build), the genesis document and block 0, and the
 * stored-record codecs. Every limit is tried at its edge and one past it.
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

#define FAR_FUTURE_MS (TU_GENESIS_TIME_MS + 365ull * 86400 * 1000)

static const ledger_tx_rules RULES = {.chain_id = TU_CHAIN_ID, .now_ms = TU_GENESIS_TIME_MS};

static int setup(void **state)
{
    return ehr_crypto_init();
}

/* Pack BODY and wrap it in an envelope signed by KEY. */
static void envelope_of(const Ehr__V1__TxBody *body, const ehr_signing_key *key, uint8_t **out,
                        size_t *len)
{
    size_t n = ehr__v1__tx_body__get_packed_size(body);
    uint8_t *p = ehr_malloc(n);
    assert_int_equal(ehr__v1__tx_body__pack(body, p), n);
    assert_int_equal(ledger_tx_envelope_build(p, n, key, out, len), 0);
    ehr_free(p);
}

/* A valid body for KEY whose fields a test then changes. */
static Ehr__V1__TxBody body_template(const ehr_signing_key *key, Ehr__V1__ConsentRevoke *payload,
                                     uint8_t nonce[EHR_TX_NONCE_BYTES])
{
    static uint8_t grant[32] = {7};
    Ehr__V1__ConsentRevoke r = EHR__V1__CONSENT_REVOKE__INIT;
    r.grant_id = (ProtobufCBinaryData){sizeof grant, grant};
    *payload = r;
    memset(nonce, 0x33, EHR_TX_NONCE_BYTES);
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    b.chain_id = TU_CHAIN_ID;
    b.signer = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)key->public_key};
    b.nonce = (ProtobufCBinaryData){EHR_TX_NONCE_BYTES, nonce};
    b.expiry_ms = FAR_FUTURE_MS;
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_REVOKE;
    b.consent_revoke = payload;
    return b;
}

/* ---- wire ---- */

static void test_varint_round_trip_and_minimal_encoding_only(void **state)
{
    const uint64_t values[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(values); i++) {
        uint8_t buf[LEDGER__VARINT_BYTES_MAX];
        size_t n = ledger__varint_write(buf, values[i]);
        assert_int_equal(n, ledger__varint_size(values[i]));
        ledger__reader r = {.data = buf, .len = n};
        uint64_t v;
        assert_int_equal(ledger__varint_read(&r, &v), 0);
        assert_true(v == values[i]);
        assert_int_equal(r.pos, n);
        r = (ledger__reader){.data = buf, .len = n - 1};
        assert_int_equal(ledger__varint_read(&r, &v), EHR_ETRUNCATED);
    }
    const uint8_t padded[] = {0x81, 0x00}; /* 1 with a redundant zero group */
    ledger__reader r = {.data = padded, .len = sizeof padded};
    uint64_t v;
    assert_int_equal(ledger__varint_read(&r, &v), EHR_EINVAL);
    uint8_t overlong[11];
    memset(overlong, 0xff, sizeof overlong);
    overlong[10] = 0x01;
    r = (ledger__reader){.data = overlong, .len = sizeof overlong};
    assert_int_equal(ledger__varint_read(&r, &v), EHR_EINVAL);
    uint8_t over64[10];
    memset(over64, 0xff, sizeof over64);
    over64[9] = 0x02; /* bit 64 set */
    r = (ledger__reader){.data = over64, .len = sizeof over64};
    assert_int_equal(ledger__varint_read(&r, &v), EHR_EINVAL);
}

/* ---- envelopes ---- */

static void test_envelope_round_trip_matches_protobuf_c(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 1);
    uint8_t *env, hash[EHR_HASH_BYTES];
    size_t len;
    tu_tx(&key, TU_CHAIN_ID, FAR_FUTURE_MS, 40, &env, &len, hash);
    ledger_tx_view view;
    assert_int_equal(ledger_tx_envelope_parse(env, len, &view, NULL), 0);
    Ehr__V1__TxEnvelope *pb = ehr__v1__tx_envelope__unpack(NULL, len, env);
    assert_non_null(pb);
    assert_int_equal(pb->body.len, view.body_len);
    assert_memory_equal(pb->body.data, view.body, view.body_len);
    assert_int_equal(pb->signature.len, EHR_SCHNORR_SIG_BYTES);
    assert_memory_equal(pb->signature.data, view.signature, EHR_SCHNORR_SIG_BYTES);
    /* Our envelope is byte for byte what protobuf-c writes. */
    uint8_t *repacked = ehr_malloc(len);
    assert_int_equal(ehr__v1__tx_envelope__pack(pb, repacked), len);
    assert_memory_equal(repacked, env, len);
    ehr_free(repacked);
    ehr__v1__tx_envelope__free_unpacked(pb, NULL);

    ledger_tx tx;
    ehr_diag diag;
    assert_int_equal(ledger_tx_check(env, len, &RULES, &tx, &diag), 0);
    assert_memory_equal(tx.hash, hash, EHR_HASH_BYTES);
    assert_int_equal(tx.body->payload_case, EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR);
    assert_memory_equal(tx.body->signer.data, key.public_key, EHR_SCHNORR_PUBLIC_BYTES);
    ledger_tx_release(&tx);
    ehr_free(env);
}

/* Envelopes protobuf-c accepts but that are not canonical: all refused. */
static void test_envelope_noncanonical_encodings_rejected(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 2);
    uint8_t *env;
    size_t len;
    tu_tx(&key, TU_CHAIN_ID, FAR_FUTURE_MS, 0, &env, &len, NULL);
    ledger_tx_view view;
    assert_int_equal(ledger_tx_envelope_parse(env, len, &view, NULL), 0);
    size_t body_field = len - 66; /* tag + length + body */
    uint8_t buf[1024];
    ehr_diag diag;

    /* Signature first, then body. */
    memcpy(buf, env + body_field, 66);
    memcpy(buf + 66, env, body_field);
    Ehr__V1__TxEnvelope *pb = ehr__v1__tx_envelope__unpack(NULL, len, buf);
    assert_non_null(pb); /* valid protobuf, */
    ehr__v1__tx_envelope__free_unpacked(pb, NULL);
    assert_int_equal(ledger_tx_envelope_parse(buf, len, &view, &diag), EHR_EINVAL); /* not ours */

    /* An unknown field after the signature. */
    memcpy(buf, env, len);
    buf[len] = (3 << 3) | 0;
    buf[len + 1] = 1;
    pb = ehr__v1__tx_envelope__unpack(NULL, len + 2, buf);
    assert_non_null(pb);
    ehr__v1__tx_envelope__free_unpacked(pb, NULL);
    assert_int_equal(ledger_tx_envelope_parse(buf, len + 2, &view, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "after the signature"));

    /* The signature field twice (protobuf keeps the last). */
    memcpy(buf, env, len);
    memcpy(buf + len, env + body_field, 66);
    assert_int_equal(ledger_tx_envelope_parse(buf, len + 66, &view, &diag), EHR_EINVAL);

    /* A body length written with a redundant varint byte. */
    size_t n = 0;
    buf[n++] = 0x0a;
    n += ledger__varint_write(buf + n, view.body_len);
    buf[n - 1] |= 0x80;
    buf[n++] = 0x00;
    memcpy(buf + n, view.body, view.body_len + 66);
    n += view.body_len + 66;
    pb = ehr__v1__tx_envelope__unpack(NULL, n, buf);
    assert_non_null(pb);
    ehr__v1__tx_envelope__free_unpacked(pb, NULL);
    assert_int_equal(ledger_tx_envelope_parse(buf, n, &view, &diag), EHR_EINVAL);

    /* Signatures of 63 and 65 bytes. */
    memcpy(buf, env, len);
    buf[body_field + 1] = 63;
    assert_int_equal(ledger_tx_envelope_parse(buf, len - 1, &view, &diag), EHR_EINVAL);
    buf[body_field + 1] = 65;
    buf[len] = 0;
    assert_int_equal(ledger_tx_envelope_parse(buf, len + 1, &view, &diag), EHR_EINVAL);

    /* An empty body. */
    const uint8_t empty_body[2 + 2 + 64] = {0x0a, 0x00, 0x12, 0x40};
    assert_int_equal(ledger_tx_envelope_parse(empty_body, sizeof empty_body, &view, &diag),
                     EHR_EINVAL);
    ehr_free(env);
}

static void test_envelope_every_truncation_rejected(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 3);
    uint8_t *env;
    size_t len;
    tu_tx(&key, TU_CHAIN_ID, FAR_FUTURE_MS, 200, &env, &len, NULL);
    ledger_tx_view view;
    for (size_t n = 0; n < len; n++) {
        int rc = ledger_tx_envelope_parse(env, n, &view, NULL);
        assert_true(rc == EHR_ETRUNCATED || rc == EHR_EINVAL);
        assert_int_not_equal(ledger_tx_check(env, n, &RULES, NULL, NULL), 0);
    }
    /* Whole but for the last byte of the body: the signature tag is then
     * misread, still an error. */
    assert_int_equal(ledger_tx_envelope_parse(env, len, &view, NULL), 0);
    ehr_free(env);
}

/* Pad a record-anchor body to exactly TARGET bytes. */
static void body_of_size(const ehr_signing_key *key, size_t target, uint8_t **out, size_t *len)
{
    size_t pad = target > 400 ? target - 400 : 0;
    for (int tries = 0; tries < 64; tries++) {
        tu_tx_body(key, TU_CHAIN_ID, FAR_FUTURE_MS, pad, out, len);
        if (*len == target)
            return;
        ehr_free(*out);
        pad = *len < target ? pad + (target - *len) : pad - (*len - target);
    }
    fail_msg("could not build a body of %zu bytes", target);
}

static void test_body_size_limit_edges(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 4);
    uint8_t *body, *env;
    size_t body_len, env_len;
    body_of_size(&key, EHR_TX_BODY_BYTES_MAX, &body, &body_len);
    assert_int_equal(ledger_tx_envelope_build(body, body_len, &key, &env, &env_len), 0);
    assert_int_equal(env_len, EHR_TX_BYTES_MAX);
    assert_int_equal(ledger_tx_check(env, env_len, &RULES, NULL, NULL), 0);
    ehr_free(env);
    ehr_free(body);

    body_of_size(&key, EHR_TX_BODY_BYTES_MAX + 1, &body, &body_len);
    assert_int_equal(ledger_tx_envelope_build(body, body_len, &key, &env, &env_len), EHR_ETOOBIG);
    /* The same envelope built by hand: refused before anything is decoded. */
    uint8_t *big = ehr_malloc(body_len + 80);
    size_t n = 0;
    big[n++] = 0x0a;
    n += ledger__varint_write(big + n, body_len);
    memcpy(big + n, body, body_len);
    n += body_len;
    big[n++] = 0x12;
    big[n++] = 64;
    memset(big + n, 0, 64);
    n += 64;
    ehr_diag diag;
    ledger_tx_view view;
    assert_int_equal(n, EHR_TX_BYTES_MAX + 1);
    assert_int_equal(ledger_tx_envelope_parse(big, n, &view, &diag), EHR_ETOOBIG);
    assert_non_null(strstr(diag.msg, "over the limit"));
    assert_int_equal(ledger_tx_check(big, n, &RULES, NULL, NULL), EHR_ETOOBIG);
    ehr_free(big);
    ehr_free(body);
}

static void test_tx_check_rejects_each_rule_with_its_code(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 5);
    Ehr__V1__ConsentRevoke payload;
    uint8_t nonce[EHR_TX_NONCE_BYTES];
    uint8_t *env;
    size_t len;
    ehr_diag diag;

    Ehr__V1__TxBody b = body_template(&key, &payload, nonce);
    envelope_of(&b, &key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), 0);
    /* Expiry edge: valid at its expiry, expired one millisecond later. */
    ledger_tx_rules at = {.chain_id = TU_CHAIN_ID, .now_ms = FAR_FUTURE_MS};
    assert_int_equal(ledger_tx_check(env, len, &at, NULL, &diag), 0);
    at.now_ms = FAR_FUTURE_MS + 1;
    assert_int_equal(ledger_tx_check(env, len, &at, NULL, &diag), EHR_EEXPIRED);
    ledger_tx_rules other = {.chain_id = "ehr-other-1", .now_ms = TU_GENESIS_TIME_MS};
    assert_int_equal(ledger_tx_check(env, len, &other, NULL, &diag), EHR_ECHAIN);
    assert_non_null(strstr(diag.msg, "ehr-other-1"));
    env[len - 1] ^= 0x01; /* a signature byte */
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EBADSIG);
    ehr_free(env);

    /* A chain id that is not one (the signer's bytes) is not echoed. */
    b = body_template(&key, &payload, nonce);
    b.chain_id = "ehr\x1b[2J\xff";
    envelope_of(&b, &key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_ECHAIN);
    assert_string_equal(diag.msg, "transaction names no valid chain id, not \"" TU_CHAIN_ID "\"");
    ehr_free(env);
    b = body_template(&key, &payload, nonce);

    /* Signed by a key other than the signer it names. */
    ehr_signing_key other_key;
    tu_key(&other_key, 6);
    envelope_of(&b, &other_key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EBADSIG);
    ehr_free(env);

    b = body_template(&key, &payload, nonce);
    b.signer.len = 31;
    envelope_of(&b, &key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "signer"));
    ehr_free(env);

    b = body_template(&key, &payload, nonce);
    b.nonce.len = EHR_TX_NONCE_BYTES - 1;
    envelope_of(&b, &key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "nonce"));
    ehr_free(env);

    b = body_template(&key, &payload, nonce);
    b.expiry_ms = 0;
    envelope_of(&b, &key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "expiry"));
    ehr_free(env);

    b = body_template(&key, &payload, nonce);
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD__NOT_SET;
    envelope_of(&b, &key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "payload"));
    ehr_free(env);

    b = body_template(&key, &payload, nonce);
    b.chain_id = "";
    envelope_of(&b, &key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EINVAL);
    ehr_free(env);

    /* A chain id at its length limit, and one past it. */
    char id[EHR_CHAIN_ID_BYTES_MAX + 2];
    memset(id, 'c', sizeof id);
    id[EHR_CHAIN_ID_BYTES_MAX] = '\0';
    ledger_tx_rules long_chain = {.chain_id = id, .now_ms = TU_GENESIS_TIME_MS};
    b = body_template(&key, &payload, nonce);
    b.chain_id = id;
    envelope_of(&b, &key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &long_chain, NULL, &diag), 0);
    ehr_free(env);
    id[EHR_CHAIN_ID_BYTES_MAX] = 'c';
    id[EHR_CHAIN_ID_BYTES_MAX + 1] = '\0';
    envelope_of(&b, &key, &env, &len);
    assert_int_equal(ledger_tx_check(env, len, &long_chain, NULL, &diag), EHR_EINVAL);
    ehr_free(env);
}

/* A body the signer signed but not in canonical form: refused. */
static void test_tx_check_rejects_noncanonical_body(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 7);
    Ehr__V1__ConsentRevoke payload;
    uint8_t nonce[EHR_TX_NONCE_BYTES];
    Ehr__V1__TxBody b = body_template(&key, &payload, nonce);
    size_t n = ehr__v1__tx_body__get_packed_size(&b);
    uint8_t body[512];
    assert_int_equal(ehr__v1__tx_body__pack(&b, body), n);
    uint8_t *env;
    size_t len;
    ehr_diag diag;

    /* An unknown top-level field (number 9, varint). */
    body[n] = (9 << 3) | 0;
    body[n + 1] = 1;
    assert_int_equal(ledger_tx_envelope_build(body, n + 2, &key, &env, &len), 0);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "canonical"));
    ehr_free(env);

    /* An unknown field inside the payload message. */
    Ehr__V1__TxBody b2 = b;
    b2.payload_case = EHR__V1__TX_BODY__PAYLOAD__NOT_SET;
    size_t n2 = ehr__v1__tx_body__pack(&b2, body);
    uint8_t inner[64];
    size_t inner_len = ehr__v1__consent_revoke__pack(&payload, inner);
    inner[inner_len++] = (5 << 3) | 0;
    inner[inner_len++] = 1;
    body[n2++] = (15 << 3) | 2;
    body[n2++] = (uint8_t)inner_len;
    memcpy(body + n2, inner, inner_len);
    n2 += inner_len;
    assert_int_equal(ledger_tx_envelope_build(body, n2, &key, &env, &len), 0);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EINVAL);
    ehr_free(env);

    /* A default value written out (expiry field with value 0 appended
     * after a real one: protobuf keeps the last). */
    n = ehr__v1__tx_body__pack(&b, body);
    body[n] = (4 << 3) | 0;
    body[n + 1] = 0;
    assert_int_equal(ledger_tx_envelope_build(body, n + 2, &key, &env, &len), 0);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EINVAL);
    ehr_free(env);

    /* Bytes that are not a TxBody at all. */
    memset(body, 0xff, 40);
    assert_int_equal(ledger_tx_envelope_build(body, 40, &key, &env, &len), 0);
    assert_int_equal(ledger_tx_check(env, len, &RULES, NULL, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "decode"));
    ehr_free(env);
}

/* ---- Merkle ---- */

/* RFC 6962's recursive definition, written independently of merkle.c. */
static void ref_root(const uint8_t (*h)[32], size_t n, uint8_t out[32])
{
    uint8_t buf[65];
    if (n == 0) {
        ehr_sha256(out, "", 0);
        return;
    }
    if (n == 1) {
        buf[0] = 0;
        memcpy(buf + 1, h[0], 32);
        ehr_sha256(out, buf, 33);
        return;
    }
    size_t k = 1;
    while (k << 1 < n)
        k <<= 1;
    buf[0] = 1;
    ref_root(h, k, buf + 1);
    ref_root(h + k, n - k, buf + 33);
    ehr_sha256(out, buf, 65);
}

static void test_merkle_root_matches_rfc6962_definition(void **state)
{
    enum { N = 70 };
    uint8_t leaves[N][32], a[32], b[32];
    for (size_t i = 0; i < N; i++)
        ehr_sha256(leaves[i], &i, sizeof i);
    for (size_t n = 0; n <= N; n++) {
        ledger_merkle_root((const uint8_t(*)[32])leaves, n, a);
        ref_root((const uint8_t(*)[32])leaves, n, b);
        assert_memory_equal(a, b, 32);
    }
    /* The empty tree is SHA-256 of nothing (a published constant). */
    uint8_t empty[32];
    assert_int_equal(
        ehr_hex_decode(empty, 32,
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        0);
    ledger_merkle_root(NULL, 0, a);
    assert_memory_equal(a, empty, 32);
    /* Domain separation: a one-leaf root is not the leaf itself. */
    ledger_merkle_root((const uint8_t(*)[32])leaves, 1, a);
    assert_memory_not_equal(a, leaves[0], 32);
    /* Order matters. */
    uint8_t swapped[2][32];
    memcpy(swapped[0], leaves[1], 32);
    memcpy(swapped[1], leaves[0], 32);
    ledger_merkle_root((const uint8_t(*)[32])leaves, 2, a);
    ledger_merkle_root((const uint8_t(*)[32])swapped, 2, b);
    assert_memory_not_equal(a, b, 32);
}

static void test_merkle_proofs_verify_and_tampering_fails(void **state)
{
    enum { N = 37 };
    uint8_t leaves[N][32], root[32];
    for (size_t i = 0; i < N; i++)
        ehr_sha256(leaves[i], &i, sizeof i);
    for (size_t n = 1; n <= N; n++) {
        ledger_merkle_root((const uint8_t(*)[32])leaves, n, root);
        for (size_t i = 0; i < n; i++) {
            uint8_t proof[EHR_MERKLE_PROOF_HASHES_MAX][32];
            size_t count;
            assert_int_equal(ledger_merkle_proof((const uint8_t(*)[32])leaves, n, i, proof, &count),
                             0);
            const uint8_t(*p)[32] = (const uint8_t(*)[32])proof;
            assert_int_equal(ledger_merkle_proof_check(leaves[i], i, n, p, count, root), 0);
            /* Another leaf, another position, a flipped proof byte, a
             * truncated or extended proof: all fail. */
            assert_int_not_equal(
                ledger_merkle_proof_check(leaves[(i + 1) % N], i, n, p, count, root), 0);
            if (n > 1)
                assert_int_not_equal(
                    ledger_merkle_proof_check(leaves[i], (i + 1) % n, n, p, count, root), 0);
            if (count > 0) {
                proof[count - 1][5] ^= 1;
                assert_int_equal(ledger_merkle_proof_check(leaves[i], i, n, p, count, root),
                                 EHR_ECORRUPT);
                proof[count - 1][5] ^= 1;
                assert_int_equal(ledger_merkle_proof_check(leaves[i], i, n, p, count - 1, root),
                                 EHR_EINVAL);
            }
            if (count < EHR_MERKLE_PROOF_HASHES_MAX)
                assert_int_equal(ledger_merkle_proof_check(leaves[i], i, n, p, count + 1, root),
                                 EHR_EINVAL);
        }
    }
    uint8_t proof[EHR_MERKLE_PROOF_HASHES_MAX][32];
    size_t count;
    assert_int_equal(ledger_merkle_proof((const uint8_t(*)[32])leaves, 5, 5, proof, &count),
                     EHR_EINVAL);
    assert_int_equal(ledger_merkle_proof_check(leaves[0], 3, 3, NULL, 0, root), EHR_EINVAL);
}

static void test_merkle_proof_at_block_tx_count_max(void **state)
{
    uint8_t(*leaves)[32] = ehr_malloc((EHR_BLOCK_TX_COUNT_MAX + 1) * 32);
    for (size_t i = 0; i <= EHR_BLOCK_TX_COUNT_MAX; i++)
        ehr_sha256(leaves[i], &i, sizeof i);
    uint8_t root[32], proof[EHR_MERKLE_PROOF_HASHES_MAX][32];
    size_t count;
    ledger_merkle_root((const uint8_t(*)[32])leaves, EHR_BLOCK_TX_COUNT_MAX, root);
    size_t last = EHR_BLOCK_TX_COUNT_MAX - 1;
    assert_int_equal(
        ledger_merkle_proof((const uint8_t(*)[32])leaves, EHR_BLOCK_TX_COUNT_MAX, 0, proof, &count),
        0);
    assert_int_equal(count, EHR_MERKLE_PROOF_HASHES_MAX);
    assert_int_equal(ledger_merkle_proof_check(leaves[0], 0, EHR_BLOCK_TX_COUNT_MAX,
                                               (const uint8_t(*)[32])proof, count, root),
                     0);
    assert_int_equal(ledger_merkle_proof((const uint8_t(*)[32])leaves, EHR_BLOCK_TX_COUNT_MAX, last,
                                         proof, &count),
                     0);
    assert_int_equal(ledger_merkle_proof_check(leaves[last], last, EHR_BLOCK_TX_COUNT_MAX,
                                               (const uint8_t(*)[32])proof, count, root),
                     0);
    assert_int_equal(ledger_merkle_proof((const uint8_t(*)[32])leaves, EHR_BLOCK_TX_COUNT_MAX + 1,
                                         0, proof, &count),
                     EHR_EINVAL);
    ehr_free(leaves);
}

/* ---- blocks ---- */

static const ledger_tip TIP1 = {.height = 1, .time_ms = TU_GENESIS_TIME_MS};

static void test_block_build_parse_check_round_trip(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 10);
    tu_batch b;
    tu_batch_make(&b, &key, 5, 16);
    uint8_t *block;
    size_t len;
    tu_block_next(&TIP1, &b, &key, &block, &len);

    ledger_block_view view;
    ehr_diag diag;
    assert_int_equal(ledger_block_parse(block, len, &view, &diag), 0);
    assert_int_equal(view.header.height, 2);
    assert_int_equal(view.header.tx_count, 5);
    assert_int_equal(view.header.time_ms, TU_GENESIS_TIME_MS + 1000);
    assert_memory_equal(view.header.proposer, key.public_key, 32);
    uint8_t hash[32];
    ehr_sha256(hash, block + view.header_span.offset, view.header_span.length);
    assert_memory_equal(view.hash, hash, 32);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(view.txs[i].length, b.envelopes[i].len);
        assert_memory_equal(block + view.txs[i].offset, b.envelopes[i].data, b.envelopes[i].len);
    }
    uint8_t hashes[5][32];
    long failed;
    assert_int_equal(
        ledger_block_check(&view, LEDGER_CHECK_ALL, TU_CHAIN_ID, hashes, &failed, &diag), 0);
    assert_int_equal(failed, -1);
    assert_memory_equal(hashes, b.hashes, sizeof hashes);

    /* protobuf-c reads the same block and writes the same bytes back. */
    Ehr__V1__Block *pb = ehr__v1__block__unpack(NULL, len, block);
    assert_non_null(pb);
    assert_int_equal(pb->n_txs, 5);
    uint8_t *again = ehr_malloc(len);
    assert_int_equal(ehr__v1__block__pack(pb, again), len);
    assert_memory_equal(again, block, len);
    ehr_free(again);
    ehr__v1__block__free_unpacked(pb, NULL);

    /* Building without the hashes gives the same header. */
    ledger_block_params p = {
        .height = 2, .time_ms = TU_GENESIS_TIME_MS + 1000, .raft_term = 1, .raft_index = 2};
    uint8_t *block2;
    size_t len2;
    uint8_t built_hash[EHR_HASH_BYTES];
    assert_int_equal(
        ledger_block_build(&p, b.envelopes, b.count, NULL, &key, &block2, &len2, built_hash, NULL),
        0);
    assert_int_equal(len2, len);
    assert_memory_equal(built_hash, view.hash, EHR_HASH_BYTES); /* the builder says the hash */
    assert_memory_equal(block2 + view.header_span.offset, block + view.header_span.offset,
                        view.header_span.length);
    ehr_free(block2);
    ledger_block_view_release(&view);
    ehr_free(block);
    tu_batch_free(&b);
}

/* Re-pack PB after a change; returns fresh bytes. */
static uint8_t *block_repack(const Ehr__V1__Block *pb, size_t *len)
{
    *len = ehr__v1__block__get_packed_size(pb);
    uint8_t *p = ehr_malloc(*len);
    assert_int_equal(ehr__v1__block__pack(pb, p), *len);
    return p;
}

static void test_block_check_finds_merkle_and_signature_faults(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 11);
    tu_batch b, other;
    tu_batch_make(&b, &key, 4, 16);
    tu_batch_make(&other, &key, 1, 16);
    uint8_t *block;
    size_t len;
    tu_block_next(&TIP1, &b, &key, &block, &len);
    ledger_block_view view;
    ehr_diag diag;
    long failed;

    /* Another transaction in place of tx 2: header intact, root wrong. */
    Ehr__V1__Block *pb = ehr__v1__block__unpack(NULL, len, block);
    assert_non_null(pb);
    Ehr__V1__TxEnvelope *swapped =
        ehr__v1__tx_envelope__unpack(NULL, other.envelopes[0].len, other.envelopes[0].data);
    Ehr__V1__TxEnvelope *kept = pb->txs[2];
    pb->txs[2] = swapped;
    size_t bad_len;
    uint8_t *bad = block_repack(pb, &bad_len);
    pb->txs[2] = kept;
    ehr__v1__tx_envelope__free_unpacked(swapped, NULL);
    assert_int_equal(ledger_block_parse(bad, bad_len, &view, &diag), 0);
    assert_int_equal(ledger_block_check(&view, LEDGER_CHECK_MERKLE, NULL, NULL, &failed, &diag),
                     EHR_ECORRUPT);
    assert_non_null(strstr(diag.msg, "tx_root"));
    assert_int_equal(ledger_block_check(&view, LEDGER_CHECK_HEADER_SIG, NULL, NULL, &failed, &diag),
                     0);
    ledger_block_view_release(&view);
    ehr_free(bad);

    /* A flipped byte in the header signature. */
    assert_int_equal(ledger_block_parse(block, len, &view, &diag), 0);
    size_t sig_at = (size_t)(view.signature - block);
    ledger_block_view_release(&view);
    block[sig_at + 10] ^= 0x40;
    assert_int_equal(ledger_block_parse(block, len, &view, &diag), 0);
    assert_int_equal(ledger_block_check(&view, LEDGER_CHECK_HEADER_SIG, NULL, NULL, &failed, &diag),
                     EHR_EBADSIG);
    assert_int_equal(failed, -1);
    ledger_block_view_release(&view);
    block[sig_at + 10] ^= 0x40;

    /* A flipped byte in tx 3's signature: the root still matches (it
     * covers bodies), the transaction check names tx 3. */
    assert_int_equal(ledger_block_parse(block, len, &view, &diag), 0);
    size_t tx3_sig = view.txs[3].offset + view.txs[3].length - 1;
    ledger_block_view_release(&view);
    block[tx3_sig] ^= 0x01;
    assert_int_equal(ledger_block_parse(block, len, &view, &diag), 0);
    assert_int_equal(ledger_block_check(&view, LEDGER_CHECK_MERKLE | LEDGER_CHECK_HEADER_SIG, NULL,
                                        NULL, &failed, &diag),
                     0);
    assert_int_equal(ledger_block_check(&view, LEDGER_CHECK_ALL, TU_CHAIN_ID, NULL, &failed, &diag),
                     EHR_EBADSIG);
    assert_int_equal(failed, 3);
    assert_non_null(strstr(diag.msg, "tx 3"));
    ledger_block_view_release(&view);

    ehr__v1__block__free_unpacked(pb, NULL);
    ehr_free(block);
    tu_batch_free(&b);
    tu_batch_free(&other);
}

static void test_block_parse_rejects_malformed_blocks(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 12);
    tu_batch b;
    tu_batch_make(&b, &key, 3, 0);
    uint8_t *block;
    size_t len;
    tu_block_next(&TIP1, &b, &key, &block, &len);
    ledger_block_view view;
    ehr_diag diag;

    for (size_t n = 0; n < len; n++) {
        int rc = ledger_block_parse(block, n, &view, &diag);
        assert_true(rc == EHR_ETRUNCATED || rc == EHR_EINVAL);
    }
    uint8_t *longer = ehr_malloc(len + 2);
    memcpy(longer, block, len);
    longer[len] = (7 << 3) | 0; /* unknown field */
    longer[len + 1] = 1;
    assert_int_equal(ledger_block_parse(longer, len + 2, &view, &diag), EHR_EINVAL);
    ehr_free(longer);

    Ehr__V1__Block *pb = ehr__v1__block__unpack(NULL, len, block);
    assert_non_null(pb);
    size_t bad_len;
    uint8_t *bad;
    /* One envelope fewer than tx_count. */
    pb->n_txs = 2;
    bad = block_repack(pb, &bad_len);
    assert_int_equal(ledger_block_parse(bad, bad_len, &view, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "header says 3"));
    ehr_free(bad);
    pb->n_txs = 3;
    /* No signature above height 0. */
    ProtobufCBinaryData sig = pb->signature;
    pb->signature = (ProtobufCBinaryData){0, NULL};
    bad = block_repack(pb, &bad_len);
    assert_int_equal(ledger_block_parse(bad, bad_len, &view, &diag), EHR_EINVAL);
    ehr_free(bad);
    pb->signature = sig;
    /* A genesis document above height 0. */
    uint8_t junk[4] = {1, 2, 3, 4};
    pb->genesis = (ProtobufCBinaryData){sizeof junk, junk};
    bad = block_repack(pb, &bad_len);
    assert_int_equal(ledger_block_parse(bad, bad_len, &view, &diag), EHR_EINVAL);
    ehr_free(bad);
    pb->genesis = (ProtobufCBinaryData){0, NULL};
    /* A transaction that is not a canonical envelope. */
    uint8_t bad_env[] = {0x12, 0x40};
    ProtobufCBinaryData saved_body = pb->txs[1]->body;
    pb->txs[1]->body = (ProtobufCBinaryData){sizeof bad_env, bad_env};
    pb->txs[1]->signature.len = 3;
    bad = block_repack(pb, &bad_len);
    assert_int_equal(ledger_block_parse(bad, bad_len, &view, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "transaction 1"));
    ehr_free(bad);
    pb->txs[1]->body = saved_body;
    pb->txs[1]->signature.len = 64;
    /* A header with an unknown field. */
    uint8_t header[EHR_BLOCK_HEADER_BYTES_MAX + 8];
    memcpy(header, pb->header.data, pb->header.len);
    header[pb->header.len] = (12 << 3) | 0;
    header[pb->header.len + 1] = 1;
    ProtobufCBinaryData saved_header = pb->header;
    pb->header = (ProtobufCBinaryData){saved_header.len + 2, header};
    bad = block_repack(pb, &bad_len);
    assert_int_equal(ledger_block_parse(bad, bad_len, &view, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "canonical"));
    ehr_free(bad);
    /* A header at its size limit (junk: refused as such), then over it. */
    memset(header, 0, sizeof header);
    pb->header = (ProtobufCBinaryData){EHR_BLOCK_HEADER_BYTES_MAX, header};
    bad = block_repack(pb, &bad_len);
    assert_int_equal(ledger_block_parse(bad, bad_len, &view, &diag), EHR_EINVAL);
    ehr_free(bad);
    pb->header = (ProtobufCBinaryData){EHR_BLOCK_HEADER_BYTES_MAX + 1, header};
    bad = block_repack(pb, &bad_len);
    assert_int_equal(ledger_block_parse(bad, bad_len, &view, &diag), EHR_ETOOBIG);
    ehr_free(bad);
    pb->header = saved_header;
    ehr__v1__block__free_unpacked(pb, NULL);

    /* Over the block size limit: refused before any decoding; at the limit,
     * decoded (and refused for what it is). */
    uint8_t *huge = ehr_calloc(EHR_BLOCK_BYTES_MAX + 1, 1);
    assert_int_equal(ledger_block_parse(huge, EHR_BLOCK_BYTES_MAX + 1, &view, &diag), EHR_ETOOBIG);
    assert_int_equal(ledger_block_parse(huge, EHR_BLOCK_BYTES_MAX, &view, &diag), EHR_EINVAL);
    ehr_free(huge);
    ehr_free(block);
    tu_batch_free(&b);
}

static void test_block_tx_count_limit_edges(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 13);
    /* One small envelope used EHR_BLOCK_TX_COUNT_MAX times would be a
     * duplicate for the store, but the format allows it; distinct
     * transactions are not what is under test here. */
    uint8_t *env;
    size_t env_len;
    tu_tx(&key, TU_CHAIN_ID, FAR_FUTURE_MS, 0, &env, &env_len, NULL);
    ledger_bytes *envs = ehr_malloc((EHR_BLOCK_TX_COUNT_MAX + 1) * sizeof *envs);
    for (size_t i = 0; i <= EHR_BLOCK_TX_COUNT_MAX; i++)
        envs[i] = (ledger_bytes){env, env_len};
    ledger_block_params p = {.height = 5, .time_ms = 1};
    uint8_t *block;
    size_t len;
    ehr_diag diag;
    assert_int_equal(
        ledger_block_build(&p, envs, EHR_BLOCK_TX_COUNT_MAX, NULL, &key, &block, &len, NULL, &diag),
        0);
    ledger_block_view view;
    assert_int_equal(ledger_block_parse(block, len, &view, &diag), 0);
    assert_int_equal(view.header.tx_count, EHR_BLOCK_TX_COUNT_MAX);
    assert_int_equal(ledger_block_check(&view, LEDGER_CHECK_MERKLE | LEDGER_CHECK_HEADER_SIG, NULL,
                                        NULL, NULL, &diag),
                     0);
    ledger_block_view_release(&view);
    ehr_free(block);
    assert_int_equal(ledger_block_build(&p, envs, EHR_BLOCK_TX_COUNT_MAX + 1, NULL, &key, &block,
                                        &len, NULL, &diag),
                     EHR_ETOOBIG);

    /* A header claiming one transaction too many. */
    Ehr__V1__BlockHeader h = EHR__V1__BLOCK_HEADER__INIT;
    uint8_t zero[32] = {0}, hdr[256], wire[512];
    h.height = 5;
    h.prev_hash = (ProtobufCBinaryData){32, zero};
    h.tx_root = (ProtobufCBinaryData){32, zero};
    h.proposer = (ProtobufCBinaryData){32, key.public_key};
    h.tx_count = EHR_BLOCK_TX_COUNT_MAX + 1;
    size_t hlen = ehr__v1__block_header__pack(&h, hdr);
    Ehr__V1__Block blk = EHR__V1__BLOCK__INIT;
    uint8_t sig[64] = {0};
    blk.header = (ProtobufCBinaryData){hlen, hdr};
    blk.signature = (ProtobufCBinaryData){64, sig};
    size_t wlen = ehr__v1__block__pack(&blk, wire);
    assert_int_equal(ledger_block_parse(wire, wlen, &view, &diag), EHR_ETOOBIG);

    /* Block bytes: envelopes that add up past EHR_BLOCK_BYTES_MAX. */
    uint8_t *big_body, *big_env;
    size_t big_body_len, big_env_len;
    body_of_size(&key, EHR_TX_BODY_BYTES_MAX, &big_body, &big_body_len);
    assert_int_equal(ledger_tx_envelope_build(big_body, big_body_len, &key, &big_env, &big_env_len),
                     0);
    size_t fit = EHR_BLOCK_BYTES_MAX / (big_env_len + 4);
    for (size_t i = 0; i <= fit; i++)
        envs[i] = (ledger_bytes){big_env, big_env_len};
    assert_int_equal(ledger_block_build(&p, envs, fit + 1, NULL, &key, &block, &len, NULL, &diag),
                     EHR_ETOOBIG);
    assert_int_equal(ledger_block_build(&p, envs, fit - 1, NULL, &key, &block, &len, NULL, &diag),
                     0);
    assert_true(len <= EHR_BLOCK_BYTES_MAX);
    ehr_free(block);
    ehr_free(big_env);
    ehr_free(big_body);
    ehr_free(envs);
    ehr_free(env);
}

/* ---- genesis ---- */

enum { G_MEMBERS_MAX = EHR_GENESIS_MEMBERS_MAX + 1 };

/* A genesis under construction, with storage for its members. */
typedef struct genesis_fixture {
    Ehr__V1__Genesis g;
    Ehr__V1__Member members[G_MEMBERS_MAX];
    Ehr__V1__Member *ptrs[G_MEMBERS_MAX];
    ehr_signing_key keys[G_MEMBERS_MAX];
    uint8_t kx[G_MEMBERS_MAX][32];
    char names[G_MEMBERS_MAX][48];
    char addresses[G_MEMBERS_MAX][48];
} genesis_fixture;

static genesis_fixture *fixture_make(size_t count)
{
    genesis_fixture *f = ehr_calloc(1, sizeof *f);
    Ehr__V1__Genesis g = EHR__V1__GENESIS__INIT;
    g.chain_id = TU_CHAIN_ID;
    g.time_ms = TU_GENESIS_TIME_MS;
    for (size_t i = 0; i < count; i++) {
        tu_key(&f->keys[i], (uint32_t)(1000 + i));
        f->kx[i][0] = (uint8_t)(i + 2); /* 0 and 1 are points of small order */
        f->kx[i][1] = (uint8_t)((i + 2) >> 8);
        snprintf(f->names[i], sizeof f->names[i], "General Hospital %zu", i);
        snprintf(f->addresses[i], sizeof f->addresses[i], "node-%zu.example:7400", i);
        Ehr__V1__Member m = EHR__V1__MEMBER__INIT;
        m.name = f->names[i];
        m.role = EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL;
        m.node_key = (ProtobufCBinaryData){32, f->keys[i].public_key};
        m.kx_key = (ProtobufCBinaryData){32, f->kx[i]};
        m.peer_address = f->addresses[i];
        f->members[i] = m;
        f->ptrs[i] = &f->members[i];
    }
    g.n_members = count;
    g.members = f->ptrs;
    f->g = g;
    return f;
}

/* Pack F's document without validating, and parse it. */
static int fixture_parse(const genesis_fixture *f, ehr_diag *diag)
{
    size_t n = ehr__v1__genesis__get_packed_size(&f->g);
    uint8_t *p = ehr_malloc(n);
    assert_int_equal(ehr__v1__genesis__pack(&f->g, p), n);
    int rc = ledger_genesis_parse(p, n, NULL, diag);
    ehr_free(p);
    return rc;
}

static void test_genesis_validation_rules_and_edges(void **state)
{
    ehr_diag diag;
    genesis_fixture *f = fixture_make(3);
    assert_int_equal(fixture_parse(f, &diag), 0);

    char id[EHR_CHAIN_ID_BYTES_MAX + 2];
    memset(id, 'a', sizeof id);
    id[EHR_CHAIN_ID_BYTES_MAX] = '\0';
    f->g.chain_id = id;
    assert_int_equal(fixture_parse(f, &diag), 0);
    id[EHR_CHAIN_ID_BYTES_MAX] = 'a';
    id[EHR_CHAIN_ID_BYTES_MAX + 1] = '\0';
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    f->g.chain_id = "";
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    f->g.chain_id = "ehr demo";
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "chain id"));
    f->g.chain_id = TU_CHAIN_ID;

    f->g.time_ms = 0;
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    f->g.time_ms = TU_GENESIS_TIME_MS;

    f->members[1].role = EHR__V1__MEMBER_ROLE__MEMBER_ROLE_UNSPECIFIED;
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "member 2 (\"General Hospital 1\"): role"));
    f->members[1].role = (Ehr__V1__MemberRole)6;
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    f->members[1].role = EHR__V1__MEMBER_ROLE__MEMBER_ROLE_REGULATOR;
    assert_int_equal(fixture_parse(f, &diag), 0);

    f->members[2].node_key = f->members[0].node_key;
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    assert_string_equal(diag.msg, "member 3 (\"General Hospital 2\"): node_key: same as member 1");
    f->members[2].node_key = (ProtobufCBinaryData){32, f->keys[2].public_key};
    f->members[2].kx_key = f->members[0].kx_key;
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    assert_non_null(
        strstr(diag.msg, "member 3 (\"General Hospital 2\"): kx_key: same as member 1"));
    f->members[2].kx_key = (ProtobufCBinaryData){32, f->kx[2]};

    f->members[0].node_key.len = 31;
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    uint8_t not_on_curve[32];
    memset(not_on_curve, 0xff, sizeof not_on_curve); /* x >= p */
    f->members[0].node_key = (ProtobufCBinaryData){32, not_on_curve};
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    f->members[0].node_key = (ProtobufCBinaryData){32, f->keys[0].public_key};
    uint8_t zero_kx[32] = {0};
    f->members[0].kx_key = (ProtobufCBinaryData){32, zero_kx};
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    uint8_t small_order_kx[32] = {1}; /* u = 1: every shared secret with it is zero */
    f->members[0].kx_key = (ProtobufCBinaryData){32, small_order_kx};
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "member 1 (\"General Hospital 0\"): kx_key: not a valid"));
    f->members[0].kx_key = (ProtobufCBinaryData){32, f->kx[0]};
    assert_int_equal(fixture_parse(f, &diag), 0);

    /* Names and addresses are unique too. */
    f->members[2].name = f->names[0];
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "member 3 (\"General Hospital 0\"): name: same as member 1"));
    f->members[2].name = f->names[2];
    f->members[2].peer_address = f->addresses[1];
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "address: same as member 2"));
    f->members[2].peer_address = f->addresses[2];

    char name[EHR_MEMBER_NAME_BYTES_MAX + 2];
    memset(name, 'n', sizeof name);
    name[EHR_MEMBER_NAME_BYTES_MAX] = '\0';
    f->members[0].name = name;
    assert_int_equal(fixture_parse(f, &diag), 0);
    name[EHR_MEMBER_NAME_BYTES_MAX] = 'n';
    name[EHR_MEMBER_NAME_BYTES_MAX + 1] = '\0';
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    f->members[0].name = "";
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    const char *bad_names[] = {
        "Lab\nInjected", "Lab\x7f",      "Lab\xc2\x85",      /* C0, DEL, C1 (NEL) */
        "\xc0\xaf",      "\xed\xa0\x80", "\xf4\x90\x80\x80", /* overlong, surrogate, > U+10FFFF */
        "Lab\xe2\x82",   "\x80Lab",      "Lab\xff"};         /* cut short, stray, invalid */
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad_names); i++) {
        f->members[0].name = (char *)bad_names[i];
        assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    }
    f->members[0].name = "H\xc3\xb4pital Saint-\xc3\x89loi \xe2\x80\x94 \xf0\x9f\x8f\xa5";
    assert_int_equal(fixture_parse(f, &diag), 0);
    f->members[0].name = "Lab";
    const char *bad_addresses[] = {"host :1",     "",           "host",
                                   ":7400",       "host:",      "host:0",
                                   "host:65536",  "host:07400", "host:74a0",
                                   "h\xc3\xa9:1", "a@b:1",      "a/b:1",
                                   "[::1:7400",   "[]:7400",    "host:123456"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad_addresses); i++) {
        f->members[0].peer_address = (char *)bad_addresses[i];
        assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    }
    /* Bytes that are not printable are not quoted: the message stays text
     * (a member proposal's result carries it). */
    const char *unprintable_addresses[] = {"host:74\x16", "\x1b[2J:x", "caf\xc3:x"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(unprintable_addresses); i++) {
        f->members[0].peer_address = (char *)unprintable_addresses[i];
        assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
        assert_true(ledger_text_ok(diag.msg, sizeof diag.msg - 1));
    }
    const char *good_addresses[] = {"h:1", "10.0.0.1:65535", "[::1]:7400", "node-9.example:7400"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(good_addresses); i++) {
        f->members[0].peer_address = (char *)good_addresses[i];
        assert_int_equal(fixture_parse(f, &diag), 0);
    }
    char address[EHR_PEER_ADDRESS_BYTES_MAX + 2];
    memset(address, 'a', sizeof address);
    memcpy(address + EHR_PEER_ADDRESS_BYTES_MAX - 5, ":7400", 6); /* exactly the limit */
    f->members[0].peer_address = address;
    assert_int_equal(fixture_parse(f, &diag), 0);
    memset(address, 'a', sizeof address);
    memcpy(address + EHR_PEER_ADDRESS_BYTES_MAX - 4, ":7400", 6); /* one over */
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    f->members[0].peer_address = "h:1";

    /* Emergency access: clinical roles only, each once; absent or empty
     * means nobody. */
    Ehr__V1__EmergencyPolicy policy = EHR__V1__EMERGENCY_POLICY__INIT;
    Ehr__V1__MemberRole roles[4] = {EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL,
                                    EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB,
                                    EHR__V1__MEMBER_ROLE__MEMBER_ROLE_PHARMACY};
    policy.roles = roles;
    f->g.emergency = &policy;
    assert_int_equal(fixture_parse(f, &diag), 0);
    policy.n_roles = 3;
    assert_int_equal(fixture_parse(f, &diag), 0);
    roles[3] = EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB;
    policy.n_roles = 4;
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    assert_string_equal(diag.msg, "emergency.roles[3]: role 2 named twice");
    const Ehr__V1__MemberRole not_clinical[] = {
        EHR__V1__MEMBER_ROLE__MEMBER_ROLE_INSURER, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_REGULATOR,
        EHR__V1__MEMBER_ROLE__MEMBER_ROLE_UNSPECIFIED, (Ehr__V1__MemberRole)31};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(not_clinical); i++) {
        roles[3] = not_clinical[i];
        assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
        assert_non_null(strstr(diag.msg, "emergency.roles[3]"));
        assert_non_null(strstr(diag.msg, "not a clinical role"));
    }
    f->g.emergency = NULL;

    f->g.n_members = 0;
    assert_int_equal(fixture_parse(f, &diag), EHR_EINVAL);
    ehr_free(f);

    f = fixture_make(G_MEMBERS_MAX);
    f->g.n_members = EHR_GENESIS_MEMBERS_MAX;
    assert_int_equal(fixture_parse(f, &diag), 0);
    f->g.n_members = EHR_GENESIS_MEMBERS_MAX + 1;
    assert_int_equal(fixture_parse(f, &diag), EHR_ETOOBIG);
    ehr_free(f);
}

static void test_genesis_rejects_bad_encodings(void **state)
{
    ehr_signing_key keys[2];
    tu_key(&keys[0], 1);
    tu_key(&keys[1], 2);
    uint8_t *g;
    size_t len;
    tu_genesis(keys, 2, &g, &len);
    ehr_diag diag;
    assert_int_equal(ledger_genesis_parse(g, len, NULL, &diag), 0);
    /* A protobuf message cut at a field boundary is still a message: a
     * prefix may only pass as a different, smaller document. */
    for (size_t n = 0; n < len; n++) {
        Ehr__V1__Genesis *cut;
        if (ledger_genesis_parse(g, n, &cut, &diag) == 0) {
            assert_true(cut->n_members < 2);
            ehr__v1__genesis__free_unpacked(cut, NULL);
        }
    }
    uint8_t *longer = ehr_malloc(len + 2);
    memcpy(longer, g, len);
    longer[len] = (9 << 3) | 0;
    longer[len + 1] = 1;
    assert_int_equal(ledger_genesis_parse(longer, len + 2, NULL, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "canonical"));
    ehr_free(longer);
    uint8_t *huge = ehr_calloc(EHR_GENESIS_BYTES_MAX + 1, 1);
    assert_int_equal(ledger_genesis_parse(huge, EHR_GENESIS_BYTES_MAX + 1, NULL, &diag),
                     EHR_ETOOBIG);
    assert_int_equal(ledger_genesis_parse(huge, EHR_GENESIS_BYTES_MAX, NULL, &diag), EHR_EINVAL);
    ehr_free(huge);
    ehr_free(g);
}

/* Block 0 is the same bytes on every derivation, and those bytes are the
 * encoding block.proto describes, written out here by hand. */
static void test_genesis_block_is_deterministic_and_as_specified(void **state)
{
    ehr_signing_key keys[3];
    for (uint32_t i = 0; i < 3; i++)
        tu_key(&keys[i], 50 + i);
    uint8_t *g, *b1, *b2;
    size_t g_len, l1, l2;
    tu_genesis(keys, 3, &g, &g_len);
    assert_int_equal(ledger_genesis_block_build(g, g_len, &b1, &l1, NULL), 0);
    assert_int_equal(ledger_genesis_block_build(g, g_len, &b2, &l2, NULL), 0);
    assert_int_equal(l1, l2);
    assert_memory_equal(b1, b2, l1);

    uint8_t expect[4096], header[256], genesis_hash[32], empty_root[32];
    ehr_sha256(genesis_hash, g, g_len);
    ehr_sha256(empty_root, "", 0);
    size_t h = 0;
    header[h++] = 0x12; /* prev_hash: 32 zero bytes (height 0 is omitted) */
    header[h++] = 32;
    memset(header + h, 0, 32);
    h += 32;
    header[h++] = 0x1a; /* tx_root */
    header[h++] = 32;
    memcpy(header + h, empty_root, 32);
    h += 32;
    header[h++] = 0x20; /* time_ms */
    h += ledger__varint_write(header + h, TU_GENESIS_TIME_MS);
    header[h++] = 0x4a; /* genesis_hash */
    header[h++] = 32;
    memcpy(header + h, genesis_hash, 32);
    h += 32;
    size_t n = 0;
    expect[n++] = 0x0a;
    n += ledger__varint_write(expect + n, h);
    memcpy(expect + n, header, h);
    n += h;
    expect[n++] = 0x22;
    n += ledger__varint_write(expect + n, g_len);
    memcpy(expect + n, g, g_len);
    n += g_len;
    assert_int_equal(l1, n);
    assert_memory_equal(b1, expect, n);

    ledger_block_view view;
    ehr_diag diag;
    assert_int_equal(ledger_block_parse(b1, l1, &view, &diag), 0);
    assert_int_equal(view.header.height, 0);
    assert_null(view.signature);
    assert_memory_equal(view.header.genesis_hash, genesis_hash, 32);
    assert_int_equal(ledger_block_check(&view, LEDGER_CHECK_ALL, TU_CHAIN_ID, NULL, NULL, &diag),
                     0);
    ledger_block_view_release(&view);

    /* Block 0 with a genesis_hash that is not the document's. */
    b1[n - g_len] ^= 0x01; /* first byte of the document */
    assert_int_equal(ledger_block_parse(b1, l1, &view, &diag), EHR_EINVAL);
    ehr_free(b1);
    ehr_free(b2);
    ehr_free(g);
}

/* ---- stored records ---- */

static void test_tx_location_codec_matches_protobuf_c(void **state)
{
    const ledger_tx_location cases[] = {
        {1, 0, 200, 150}, {123456789012ull, 9999, 8000000, 65606}, {0, 0, 0, 0}, {7, 1, 1, 1}};
    /* Results: none (OK encodes to nothing), one byte, at the limit. */
    static uint8_t full[EHR_TX_RESULT_BYTES_MAX];
    memset(full, 0x5a, sizeof full);
    const ledger_bytes results[] = {
        {NULL, 0}, {(const uint8_t *)"\x08\x06", 2}, {full, sizeof full}};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        for (size_t j = 0; j < EHR_ARRAY_COUNT(results); j++) {
            uint8_t ours[LEDGER__TX_LOCATION_BYTES_MAX], theirs[LEDGER__TX_LOCATION_BYTES_MAX];
            size_t n = ledger__tx_location_write(ours, &cases[i], results[j]);
            Ehr__V1__TxLocation pb = EHR__V1__TX_LOCATION__INIT;
            pb.height = cases[i].height;
            pb.index = cases[i].index;
            pb.offset = cases[i].offset;
            pb.length = cases[i].length;
            pb.result = (ProtobufCBinaryData){results[j].len, (uint8_t *)results[j].data};
            assert_int_equal(ehr__v1__tx_location__get_packed_size(&pb), n);
            assert_int_equal(ehr__v1__tx_location__pack(&pb, theirs), n);
            assert_memory_equal(ours, theirs, n);
            ledger_tx_location back;
            ledger_bytes result;
            assert_int_equal(ledger__tx_location_read(ours, n, &back, &result), 0);
            assert_true(back.height == cases[i].height);
            assert_int_equal(back.index, cases[i].index);
            assert_int_equal(back.offset, cases[i].offset);
            assert_int_equal(back.length, cases[i].length);
            assert_int_equal(result.len, results[j].len);
            if (result.len > 0)
                assert_memory_equal(result.data, results[j].data, result.len);
            if (n > 0) {
                assert_int_equal(ledger__tx_location_read(ours, n - 1, &back, NULL), EHR_ECORRUPT);
            }
        }
    }
    const uint8_t zero_written[] = {0x08, 0x00}; /* height 0 spelled out */
    ledger_tx_location back;
    assert_int_equal(ledger__tx_location_read(zero_written, 2, &back, NULL), EHR_ECORRUPT);
    const uint8_t reordered[] = {0x10, 0x01, 0x08, 0x01};
    assert_int_equal(ledger__tx_location_read(reordered, 4, &back, NULL), EHR_ECORRUPT);
    const uint8_t empty_result_written[] = {0x08, 0x01, 0x2a, 0x00}; /* result "" spelled out */
    assert_int_equal(ledger__tx_location_read(empty_result_written, 4, &back, NULL), EHR_ECORRUPT);
    /* A result one byte over the limit (as protobuf-c would encode it). */
    uint8_t over[EHR_TX_RESULT_BYTES_MAX + 1] = {0};
    Ehr__V1__TxLocation pb = EHR__V1__TX_LOCATION__INIT;
    pb.height = 1;
    pb.result = (ProtobufCBinaryData){sizeof over, over};
    uint8_t packed[LEDGER__TX_LOCATION_BYTES_MAX + 8];
    size_t packed_len = ehr__v1__tx_location__pack(&pb, packed);
    assert_true(packed_len <= sizeof packed);
    assert_int_equal(ledger__tx_location_read(packed, packed_len, &back, NULL), EHR_ECORRUPT);
}

static void test_stored_block_record_matches_protobuf_c_and_detects_damage(void **state)
{
    uint8_t block[300];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (uint8_t)i;
    uint8_t record[400];
    size_t prefix = ledger__stored_block_prefix_write(record, 42, block, sizeof block);
    memcpy(record + prefix, block, sizeof block);
    size_t len = prefix + sizeof block;
    Ehr__V1__StoredBlock *pb = ehr__v1__stored_block__unpack(NULL, len, record);
    assert_non_null(pb);
    assert_int_equal(pb->block.len, sizeof block);
    assert_memory_equal(pb->block.data, block, sizeof block);
    uint8_t sum[32];
    ledger__block_checksum(sum, 42, block, sizeof block);
    assert_memory_equal(pb->checksum.data, sum, 32);
    uint8_t again[400];
    assert_int_equal(ehr__v1__stored_block__pack(pb, again), len);
    assert_memory_equal(again, record, len);
    ehr__v1__stored_block__free_unpacked(pb, NULL);

    const uint8_t *out;
    size_t out_len;
    assert_int_equal(ledger__stored_block_open(record, len, 42, &out, &out_len), 0);
    assert_int_equal(out_len, sizeof block);
    assert_int_equal(ledger__stored_block_open(record, len, 43, &out, &out_len), EHR_ECORRUPT);
    record[prefix + 100] ^= 0x04;
    assert_int_equal(ledger__stored_block_open(record, len, 42, &out, &out_len), EHR_ECORRUPT);
    assert_int_equal(ledger__stored_block_open(record, len - 1, 42, &out, &out_len), EHR_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_round_trip_and_minimal_encoding_only),
        cmocka_unit_test(test_envelope_round_trip_matches_protobuf_c),
        cmocka_unit_test(test_envelope_noncanonical_encodings_rejected),
        cmocka_unit_test(test_envelope_every_truncation_rejected),
        cmocka_unit_test(test_body_size_limit_edges),
        cmocka_unit_test(test_tx_check_rejects_each_rule_with_its_code),
        cmocka_unit_test(test_tx_check_rejects_noncanonical_body),
        cmocka_unit_test(test_merkle_root_matches_rfc6962_definition),
        cmocka_unit_test(test_merkle_proofs_verify_and_tampering_fails),
        cmocka_unit_test(test_merkle_proof_at_block_tx_count_max),
        cmocka_unit_test(test_block_build_parse_check_round_trip),
        cmocka_unit_test(test_block_check_finds_merkle_and_signature_faults),
        cmocka_unit_test(test_block_parse_rejects_malformed_blocks),
        cmocka_unit_test(test_block_tx_count_limit_edges),
        cmocka_unit_test(test_genesis_validation_rules_and_edges),
        cmocka_unit_test(test_genesis_rejects_bad_encodings),
        cmocka_unit_test(test_genesis_block_is_deterministic_and_as_specified),
        cmocka_unit_test(test_tx_location_codec_matches_protobuf_c),
        cmocka_unit_test(test_stored_block_record_matches_protobuf_c_and_detects_damage),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
