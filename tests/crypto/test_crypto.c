/*
 * Unit tests for crypto/: the official BIP-340 vectors (every row, signing
 * and verification), wrong-key and tampered-message rejection, SHA-256,
 * and the X25519 public key check against X25519 itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ehr_crypto.h"

enum { VECTOR_LINE_BYTES_MAX = 1024, VECTOR_FIELD_COUNT = 8 };

/* Split a CSV line in place into at most VECTOR_FIELD_COUNT fields and
 * return how many it has. Every one of the VECTOR_FIELD_COUNT pointers is
 * set: those past the line's last field to the empty string at its end (so
 * no caller, and no compiler, sees one uninitialised). */
static int csv_split(char *line, char *fields[VECTOR_FIELD_COUNT])
{
    int count = 0;
    char *p = line;
    while (count < VECTOR_FIELD_COUNT) {
        fields[count++] = p;
        char *comma = strchr(p, ',');
        if (comma == NULL)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    char *end = fields[count - 1] + strcspn(fields[count - 1], "\r\n");
    *end = '\0';
    for (int i = count; i < VECTOR_FIELD_COUNT; i++)
        fields[i] = end;
    return count;
}

static void test_bip340_vectors(void **state)
{
    FILE *f = fopen(EHR_TEST_DATA_DIR "/vectors/bip340-test-vectors.csv", "r");
    assert_non_null(f);
    char line[VECTOR_LINE_BYTES_MAX];
    assert_non_null(fgets(line, sizeof line, f)); /* header */
    int rows = 0, signed_rows = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        char *field[VECTOR_FIELD_COUNT];
        assert_true(csv_split(line, field) >= 7);
        uint8_t pub[32], msg[32], sig[64];
        assert_int_equal(ehr_hex_decode(pub, 32, field[2]), 0);
        assert_int_equal(ehr_hex_decode(msg, 32, field[4]), 0);
        assert_int_equal(ehr_hex_decode(sig, 64, field[5]), 0);
        int expect_valid = strcmp(field[6], "TRUE") == 0;

        if (field[1][0] != '\0') {
            uint8_t secret[32], aux[32], made[64];
            ehr_signing_key key;
            assert_int_equal(ehr_hex_decode(secret, 32, field[1]), 0);
            assert_int_equal(ehr_hex_decode(aux, 32, field[3]), 0);
            assert_int_equal(ehr_signing_key_from_secret(&key, secret), 0);
            assert_memory_equal(key.public_key, pub, 32);
            assert_int_equal(ehr_schnorr_sign_aux(&key, msg, aux, made), 0);
            assert_memory_equal(made, sig, 64);
            ehr_signing_key_wipe(&key);
            signed_rows++;
        }

        ehr_public_key pk;
        int parse_rc = ehr_public_key_parse(&pk, pub);
        int verify_rc = parse_rc == 0 ? ehr_schnorr_verify(&pk, msg, sig) : parse_rc;
        if (expect_valid)
            assert_int_equal(verify_rc, 0);
        else
            assert_int_not_equal(verify_rc, 0);
        assert_int_equal(ehr_schnorr_verify_bytes(pub, msg, sig), verify_rc);
        rows++;
    }
    fclose(f);
    assert_int_equal(rows, 15);
    assert_int_equal(signed_rows, 4);
}

static void test_sign_verify_round_trip_and_rejections(void **state)
{
    ehr_signing_key key, other;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    assert_int_equal(ehr_signing_key_generate(&other), 0);
    uint8_t msg[32], sig[64];
    ehr_sha256(msg, "record anchor", 13);
    assert_int_equal(ehr_schnorr_sign(&key, msg, sig), 0);

    ehr_public_key pk, other_pk;
    assert_int_equal(ehr_public_key_parse(&pk, key.public_key), 0);
    assert_int_equal(ehr_public_key_parse(&other_pk, other.public_key), 0);
    assert_int_equal(ehr_schnorr_verify(&pk, msg, sig), 0);
    /* wrong key */
    assert_int_equal(ehr_schnorr_verify(&other_pk, msg, sig), EHR_EBADSIG);
    /* tampered message */
    msg[7] ^= 0x01;
    assert_int_equal(ehr_schnorr_verify(&pk, msg, sig), EHR_EBADSIG);
    msg[7] ^= 0x01;
    /* tampered signature */
    sig[40] ^= 0x80;
    assert_int_equal(ehr_schnorr_verify(&pk, msg, sig), EHR_EBADSIG);
    ehr_signing_key_wipe(&key);
    ehr_signing_key_wipe(&other);
    uint8_t zero[sizeof key] = {0};
    assert_memory_equal(&key, zero, sizeof key);
}

static void test_invalid_secret_rejected(void **state)
{
    ehr_signing_key key;
    uint8_t zero[32] = {0};
    assert_int_equal(ehr_signing_key_from_secret(&key, zero), EHR_EINVAL);
    uint8_t order[32]; /* the curve order n itself is not a valid secret */
    assert_int_equal(
        ehr_hex_decode(order, 32,
                       "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141"),
        0);
    assert_int_equal(ehr_signing_key_from_secret(&key, order), EHR_EINVAL);
}

static void test_sha256_known_answer(void **state)
{
    uint8_t out[32], expect[32];
    ehr_sha256(out, "abc", 3);
    assert_int_equal(
        ehr_hex_decode(expect, 32,
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        0);
    assert_memory_equal(out, expect, 32);
}

/* The content hash is plain SHA-256: the same digest as ehr_sha256 and
 * sha256sum, whatever the pieces it is fed in (one byte, uneven, empty). */
static void test_content_hash_is_sha256_in_any_pieces(void **state)
{
    enum { LEN = 100003 };
    uint8_t *data = malloc(LEN);
    assert_non_null(data);
    for (size_t i = 0; i < LEN; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    uint8_t expect[32], out[32];
    ehr_sha256(expect, data, LEN);
    const size_t pieces[] = {1, 7, 4096, 65536, LEN};
    for (size_t p = 0; p < EHR_ARRAY_COUNT(pieces); p++) {
        struct ehr_content_hash h;
        ehr_content_hash_init(&h);
        for (size_t off = 0; off < LEN; off += pieces[p]) {
            size_t n = LEN - off < pieces[p] ? LEN - off : pieces[p];
            ehr_content_hash_update(&h, data + off, n);
            ehr_content_hash_update(&h, data, 0);
        }
        ehr_content_hash_final(&h, out);
        assert_null(h.ctx_); /* final clears */
        assert_memory_equal(out, expect, 32);
    }
    struct ehr_content_hash h;
    ehr_content_hash_init(&h);
    ehr_content_hash_final(&h, out);
    assert_int_equal(
        ehr_hex_decode(expect, 32,
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        0);
    assert_memory_equal(out, expect, 32);
    ehr_content_hash_init(&h);
    ehr_content_hash_update(&h, "abc", 3);
    ehr_content_hash_clear(&h); /* dropped unfinished: no leak under ASan */
    ehr_content_hash_clear(&h);
    free(data);
}

static void test_kx_key_derivation(void **state)
{
    ehr_kx_key a, b;
    assert_int_equal(ehr_kx_key_generate(&a), 0);
    assert_int_equal(ehr_kx_key_from_secret(&b, a.secret), 0);
    assert_memory_equal(a.public_key, b.public_key, 32);
    ehr_kx_key_wipe(&a);
    ehr_kx_key_wipe(&b);
}

/* What ehr_kx_public_key_check decides, the long way: X25519 with a clamped
 * scalar refuses exactly the keys that send it to the all-zero result. */
static bool kx_refused_by_scalarmult(const uint8_t key[32])
{
    static const uint8_t scalar[32] = {0x6b, 0x5d, 0x39, 0x2a, 0x11, 0x47, 0x8c, 0x0e,
                                       0x95, 0x23, 0x71, 0xcc, 0x08, 0x5f, 0xa4, 0x31,
                                       0x72, 0x19, 0xe0, 0x3d, 0x56, 0x8b, 0x2f, 0x94,
                                       0x60, 0x1a, 0xd7, 0x4e, 0x83, 0x3c, 0x25, 0x59};
    uint8_t out[32];
    return crypto_scalarmult(out, scalar, key) != 0;
}

static void kx_check_agrees(const uint8_t key[32], size_t *refused)
{
    bool ours = ehr_kx_public_key_check(key) != 0;
    if (ours != kx_refused_by_scalarmult(key))
        fail_msg("key %02x%02x..%02x: ehr_kx_public_key_check %s it, X25519 does not", key[0],
                 key[1], key[31], ours ? "refuses" : "accepts");
    *refused += ours;
}

/* The check compares with the small-order encodings instead of multiplying:
 * the same answer at the edges of the field, around each of those
 * encodings, with the top bit either way, and for random keys. */
static void test_kx_public_key_check_matches_x25519(void **state)
{
    (void)state;
    size_t refused = 0, tried = 0;
    uint8_t key[32];
    for (int top = 0; top < 2; top++) {
        for (unsigned v = 0; v < 512; v++) { /* 0 .. 511 */
            memset(key, 0, sizeof key);
            key[0] = (uint8_t)v, key[1] = (uint8_t)(v >> 8), key[31] = (uint8_t)(top << 7);
            kx_check_agrees(key, &refused), tried++;
        }
        for (unsigned v = 0; v < 512; v++) { /* 2^255 - 512 .. 2^255 - 1 */
            memset(key, 0xff, sizeof key);
            key[0] = (uint8_t)v, key[1] = (uint8_t)(0xfe | (v >> 8));
            key[31] = (uint8_t)(0x7f | (top << 7));
            kx_check_agrees(key, &refused), tried++;
        }
    }
    /* 0, 1, p - 1, p, p + 1, each with the top bit clear and set. */
    assert_int_equal(refused, 10);
    /* Around the two points of order 8: each refused, its neighbours not. */
    static const uint8_t order8[2][32] = {
        {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
         0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
         0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
        {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1,
         0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c,
         0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57}};
    refused = 0;
    for (size_t i = 0; i < 2; i++) {
        for (int top = 0; top < 2; top++) {
            for (size_t at = 0; at < 32; at++) {
                for (int delta = -2; delta <= 2; delta++) {
                    memcpy(key, order8[i], sizeof key);
                    key[at] = (uint8_t)(key[at] + delta);
                    key[31] = (uint8_t)(key[31] | (top << 7));
                    kx_check_agrees(key, &refused), tried++;
                }
            }
        }
    }
    assert_int_equal(refused, 2 * 2 * 32); /* delta 0, once per byte position */
    for (int i = 0; i < 4096; i++) {
        randombytes_buf(key, sizeof key);
        kx_check_agrees(key, &refused), tried++;
    }
    assert_true(tried > 6000);
}

static int setup(void **state)
{
    return ehr_crypto_init();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bip340_vectors),
        cmocka_unit_test(test_sign_verify_round_trip_and_rejections),
        cmocka_unit_test(test_invalid_secret_rejected),
        cmocka_unit_test(test_sha256_known_answer),
        cmocka_unit_test(test_content_hash_is_sha256_in_any_pieces),
        cmocka_unit_test(test_kx_key_derivation),
        cmocka_unit_test(test_kx_public_key_check_matches_x25519),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
