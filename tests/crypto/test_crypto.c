/*
 * Unit tests for crypto/: the official BIP-340 vectors (every row, signing
 * and verification), wrong-key and tampered-message rejection, SHA-256.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void test_kx_key_derivation(void **state)
{
    ehr_kx_key a, b;
    assert_int_equal(ehr_kx_key_generate(&a), 0);
    assert_int_equal(ehr_kx_key_from_secret(&b, a.secret), 0);
    assert_memory_equal(a.public_key, b.public_key, 32);
    ehr_kx_key_wipe(&a);
    ehr_kx_key_wipe(&b);
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
        cmocka_unit_test(test_kx_key_derivation),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
