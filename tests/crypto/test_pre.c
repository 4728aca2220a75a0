/*
 * Unit tests for the threshold proxy re-encryption (crypto/pre.h, PRE.md):
 * round trips for every threshold t of n up to 7, t-1 cfrags, a kfrag for
 * another grantee, kfrags not from the delegator, tampered and duplicate
 * cfrags, cfrags of two grants, the decoders' refusals, argument bounds, and
 * known answers that pin every encoding (through the seeded generator of
 * pre_internal.h, which only tests use).
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
#include "pre.h"
#include "pre_internal.h"

enum { N_MAX_TESTED = 7, HEX_BYTES_MAX = 2 * EHR_PRE_CFRAG_BYTES + 1 };

/* The group order L, little-endian: the smallest non-canonical scalar. */
static const char L_HEX[] = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";
/* p = 2^255 - 19, little-endian: a field element out of range, so no point. */
static const char P_HEX[] = "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";

typedef struct parties {
    ehr_pre_key alice; /* the delegator (a patient's delegating key) */
    ehr_pre_key bob;   /* the grantee */
    ehr_pre_key carol; /* another grantee */
} parties;

static int setup(void **state)
{
    assert_int_equal(ehr_crypto_init(), 0);
    parties *p = calloc(1, sizeof *p);
    assert_non_null(p);
    assert_int_equal(ehr_pre_key_generate(&p->alice), 0);
    assert_int_equal(ehr_pre_key_generate(&p->bob), 0);
    assert_int_equal(ehr_pre_key_generate(&p->carol), 0);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    parties *p = *state;
    ehr_pre_key_wipe(&p->alice);
    ehr_pre_key_wipe(&p->bob);
    ehr_pre_key_wipe(&p->carol);
    free(p);
    return 0;
}

static void reencapsulate_all(const ehr_pre_kfrag *kfrags, size_t count,
                              const ehr_pre_capsule *capsule, ehr_pre_cfrag *cfrags)
{
    for (size_t i = 0; i < count; i++)
        assert_int_equal(ehr_pre_reencapsulate(&kfrags[i], capsule, &cfrags[i]), 0);
}

/* A capsule to Alice (CAPSULE, its KEY), COUNT kfrags of THRESHOLD from
 * Alice to GRANTEE (KFRAGS: the caller wipes them) and each kfrag's cfrag
 * of the capsule (CFRAGS); fails the test if a step does. */
static void grant_made(const parties *p, const uint8_t grantee[EHR_PRE_PUBLIC_BYTES],
                       size_t threshold, size_t count, ehr_pre_capsule *capsule, uint8_t key[32],
                       ehr_pre_kfrag *kfrags, ehr_pre_cfrag *cfrags)
{
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, capsule, key), 0);
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, grantee, threshold, count, kfrags, NULL),
                     0);
    reencapsulate_all(kfrags, count, capsule, cfrags);
}

static void hex_of(char *out, const void *data, size_t len)
{
    assert_true(2 * len + 1 <= HEX_BYTES_MAX);
    ehr_hex_encode(out, data, len);
}

static void test_generator_u_derivation(void **state)
{
    (void)state;
    /* PRE.md: U = from_hash(BLAKE2b-512(len(tag) || tag)), tag "ehrchain/pre/v1/generator-u". */
    static const char tag[] = "ehrchain/pre/v1/generator-u";
    uint8_t input[1 + sizeof tag - 1], wide[64], u[32];
    input[0] = (uint8_t)(sizeof tag - 1);
    memcpy(input + 1, tag, sizeof tag - 1);
    assert_int_equal(crypto_generichash(wide, sizeof wide, input, sizeof input, NULL, 0), 0);
    assert_int_equal(crypto_core_ristretto255_from_hash(u, wide), 0);
    assert_memory_equal(u, ehr_pre__generator_u, 32);
    assert_int_equal(ehr_pre_public_key_check(ehr_pre__generator_u), 0);
}

static void test_delegator_round_trip(void **state)
{
    parties *p = *state;
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32], other[32];
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &capsule, key), 0);
    assert_int_equal(ehr_pre_decapsulate(&p->alice, &capsule, opened), 0);
    assert_memory_equal(key, opened, 32);
    /* another key pair opens something else */
    assert_int_equal(ehr_pre_decapsulate(&p->bob, &capsule, other), 0);
    assert_memory_not_equal(key, other, 32);
    /* two encapsulations to the same key differ */
    ehr_pre_capsule again;
    uint8_t key2[32];
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &again, key2), 0);
    assert_memory_not_equal(&again, &capsule, sizeof capsule);
    assert_memory_not_equal(key, key2, 32);
}

/* Pinned from the first run of the derivation: a change to the tag, the
 * type's encoding or the hash fails here. */
#define DELEGATING_KAT_LAB "c0bb5ba00b523ad05d828221f9bc07e1051b461b217adf9009573b0644c1f712"

/* Delegating keys per record type: the same root and type give the same
 * pair, another type or another root another one; each opens what was
 * encapsulated to it; the derivation is pinned by a known answer. */
static void test_delegating_keys_per_record_type(void **state)
{
    (void)state;
    uint8_t root[EHR_PRE_ROOT_BYTES], other_root[EHR_PRE_ROOT_BYTES];
    for (size_t i = 0; i < sizeof root; i++) {
        root[i] = (uint8_t)i;
        other_root[i] = (uint8_t)(i + 1);
    }
    ehr_pre_key lab, lab_again, imaging, lab_other;
    assert_int_equal(ehr_pre_delegating_key_derive(&lab, root, 2), 0);
    assert_int_equal(ehr_pre_delegating_key_derive(&lab_again, root, 2), 0);
    assert_int_equal(ehr_pre_delegating_key_derive(&imaging, root, 1), 0);
    assert_int_equal(ehr_pre_delegating_key_derive(&lab_other, other_root, 2), 0);
    assert_memory_equal(&lab, &lab_again, sizeof lab);
    assert_memory_not_equal(lab.public_key, imaging.public_key, EHR_PRE_PUBLIC_BYTES);
    assert_memory_not_equal(lab.public_key, lab_other.public_key, EHR_PRE_PUBLIC_BYTES);
    assert_int_equal(ehr_pre_public_key_check(lab.public_key), 0);
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32], wrong[32];
    assert_int_equal(ehr_pre_encapsulate(lab.public_key, &capsule, key), 0);
    assert_int_equal(ehr_pre_decapsulate(&lab_again, &capsule, opened), 0);
    assert_memory_equal(key, opened, 32);
    assert_int_equal(ehr_pre_decapsulate(&imaging, &capsule, wrong), 0);
    assert_memory_not_equal(key, wrong, 32);
    /* Known answer: BLAKE2b-512 keyed with root 00..1f over the tag, its
     * NUL and 00000002, reduced mod L, times the base point. */
    char hex[2 * EHR_PRE_PUBLIC_BYTES + 1];
    ehr_hex_encode(hex, lab.public_key, EHR_PRE_PUBLIC_BYTES);
    assert_string_equal(hex, DELEGATING_KAT_LAB);
    ehr_pre_key_wipe(&lab);
    ehr_pre_key_wipe(&lab_again);
    ehr_pre_key_wipe(&imaging);
    ehr_pre_key_wipe(&lab_other);
}

/* Every t of every n up to 7: the first t, the last t and all n cfrags open the key. */
static void test_threshold_round_trips(void **state)
{
    parties *p = *state;
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32];
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &capsule, key), 0);
    for (size_t n = 1; n <= N_MAX_TESTED; n++) {
        for (size_t t = 1; t <= n; t++) {
            ehr_pre_kfrag kfrags[N_MAX_TESTED];
            ehr_pre_cfrag cfrags[N_MAX_TESTED];
            ehr_diag why = {""};
            assert_int_equal(
                ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, t, n, kfrags, &why), 0);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(
                    ehr_pre_kfrag_verify(&kfrags[i], p->alice.public_key, p->bob.public_key), 0);
            reencapsulate_all(kfrags, n, &capsule, cfrags);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(ehr_pre_cfrag_verify(&cfrags[i], &capsule, p->alice.public_key,
                                                      p->bob.public_key),
                                 0);
            assert_int_equal(ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule,
                                                        cfrags, t, opened, &why),
                             0);
            assert_memory_equal(opened, key, 32);
            assert_int_equal(ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule,
                                                        cfrags + (n - t), t, opened, &why),
                             0);
            assert_memory_equal(opened, key, 32);
            assert_int_equal(ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule,
                                                        cfrags, n, opened, &why),
                             0);
            assert_memory_equal(opened, key, 32);
            for (size_t i = 0; i < n; i++)
                ehr_pre_kfrag_wipe(&kfrags[i]);
        }
    }
}

/* t-1 verified cfrags do not open: the capsule check in decapsulation says so. */
static void test_fewer_than_threshold_fail(void **state)
{
    parties *p = *state;
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32], zero[32] = {0};
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &capsule, key), 0);
    for (size_t t = 2; t <= N_MAX_TESTED; t++) {
        ehr_pre_kfrag kfrags[N_MAX_TESTED];
        ehr_pre_cfrag cfrags[N_MAX_TESTED];
        assert_int_equal(
            ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, t, N_MAX_TESTED, kfrags, NULL),
            0);
        reencapsulate_all(kfrags, N_MAX_TESTED, &capsule, cfrags);
        ehr_diag why = {""};
        memset(opened, 0xa5, sizeof opened);
        assert_int_equal(ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, cfrags,
                                                    t - 1, opened, &why),
                         EHR_EINVAL);
        assert_memory_equal(opened, zero, 32);
        assert_non_null(strstr(why.msg, "threshold"));
        for (size_t i = 0; i < N_MAX_TESTED; i++)
            ehr_pre_kfrag_wipe(&kfrags[i]);
    }
}

/* kfrags made for Carol: Bob's checks refuse them; Carol opens with them. */
static void test_kfrag_for_other_grantee_fails(void **state)
{
    parties *p = *state;
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32];
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &capsule, key), 0);
    ehr_pre_kfrag kfrags[3];
    ehr_pre_cfrag cfrags[3];
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->carol.public_key, 2, 3, kfrags, NULL),
                     0);
    assert_int_equal(ehr_pre_kfrag_verify(&kfrags[0], p->alice.public_key, p->bob.public_key),
                     EHR_EBADSIG);
    reencapsulate_all(kfrags, 3, &capsule, cfrags);
    assert_int_equal(
        ehr_pre_cfrag_verify(&cfrags[0], &capsule, p->alice.public_key, p->bob.public_key),
        EHR_EBADSIG);
    ehr_diag why = {""};
    assert_int_equal(
        ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, cfrags, 2, opened, &why),
        EHR_EBADSIG);
    assert_non_null(strstr(why.msg, "cfrag 0"));
    assert_int_equal(ehr_pre_decapsulate_cfrags(&p->carol, p->alice.public_key, &capsule, cfrags, 2,
                                                opened, &why),
                     0);
    assert_memory_equal(opened, key, 32);
    for (size_t i = 0; i < 3; i++)
        ehr_pre_kfrag_wipe(&kfrags[i]);
}

/* A kfrag made with another key that claims to be Alice's is refused, and so are its cfrags. */
static void test_kfrag_not_from_delegator_refused(void **state)
{
    parties *p = *state;
    ehr_pre_key mallory;
    assert_int_equal(ehr_pre_key_generate(&mallory), 0);
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32];
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &capsule, key), 0);
    ehr_pre_kfrag forged[2];
    assert_int_equal(ehr_pre_kfrags_generate(&mallory, p->bob.public_key, 1, 2, forged, NULL), 0);
    assert_int_equal(ehr_pre_kfrag_verify(&forged[0], p->alice.public_key, p->bob.public_key),
                     EHR_EBADSIG);
    memcpy(forged[0].delegating_key, p->alice.public_key, 32);
    assert_int_equal(ehr_pre_kfrag_verify(&forged[0], p->alice.public_key, p->bob.public_key),
                     EHR_EBADSIG);
    ehr_pre_cfrag cfrag;
    assert_int_equal(ehr_pre_reencapsulate(&forged[0], &capsule, &cfrag), 0);
    assert_int_equal(ehr_pre_cfrag_verify(&cfrag, &capsule, p->alice.public_key, p->bob.public_key),
                     EHR_EBADSIG);
    assert_int_equal(
        ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, &cfrag, 1, opened, NULL),
        EHR_EBADSIG);

    /* A genuine kfrag with any signed field changed no longer verifies. */
    ehr_pre_kfrag good[1];
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, 1, 1, good, NULL), 0);
    assert_int_equal(ehr_pre_kfrag_verify(&good[0], p->alice.public_key, p->bob.public_key), 0);
    size_t offsets[] = {offsetof(ehr_pre_kfrag, id), offsetof(ehr_pre_kfrag, precursor),
                        offsetof(ehr_pre_kfrag, commitment), offsetof(ehr_pre_kfrag, signature_r),
                        offsetof(ehr_pre_kfrag, signature_z)};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(offsets); i++) {
        ehr_pre_kfrag bad = good[0];
        ((uint8_t *)&bad)[offsets[i]] ^= 0x02;
        assert_int_equal(ehr_pre_kfrag_verify(&bad, p->alice.public_key, p->bob.public_key),
                         EHR_EBADSIG);
        ehr_pre_kfrag_wipe(&bad);
    }
    ehr_pre_kfrag_wipe(&good[0]);
    ehr_pre_kfrag_wipe(&forged[0]);
    ehr_pre_kfrag_wipe(&forged[1]);
    ehr_pre_key_wipe(&mallory);
}

/* Replace each field of a cfrag by another value of its kind: the proof or signature catches it. */
static void test_tampered_cfrag_caught(void **state)
{
    parties *p = *state;
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32];
    ehr_pre_kfrag kfrags[2];
    ehr_pre_cfrag cfrags[2];
    grant_made(p, p->bob.public_key, 2, 2, &capsule, key, kfrags, cfrags);
    uint8_t g[32], one[32] = {1};
    assert_int_equal(crypto_scalarmult_ristretto255_base(g, one), 0);

    struct {
        size_t offset;
        int is_point; /* else a scalar or the id */
    } fields[] = {
        {offsetof(ehr_pre_cfrag, e1), 1},          {offsetof(ehr_pre_cfrag, v1), 1},
        {offsetof(ehr_pre_cfrag, id), 0},          {offsetof(ehr_pre_cfrag, precursor), 1},
        {offsetof(ehr_pre_cfrag, commitment), 1},  {offsetof(ehr_pre_cfrag, signature_r), 1},
        {offsetof(ehr_pre_cfrag, signature_z), 0}, {offsetof(ehr_pre_cfrag, proof_c), 0},
        {offsetof(ehr_pre_cfrag, proof_z), 0},
    };
    _Static_assert(sizeof fields / sizeof fields[0] == 9, "every cfrag field");
    for (size_t i = 0; i < EHR_ARRAY_COUNT(fields); i++) {
        ehr_pre_cfrag bad = cfrags[0];
        uint8_t *f = (uint8_t *)&bad + fields[i].offset;
        if (fields[i].is_point)
            assert_int_equal(crypto_core_ristretto255_add(f, f, g), 0); /* still a valid point */
        else
            crypto_core_ristretto255_scalar_add(f, f, one); /* still canonical */
        uint8_t enc[EHR_PRE_CFRAG_BYTES];
        ehr_pre_cfrag_encode(&bad, enc);
        ehr_pre_cfrag decoded;
        assert_int_equal(ehr_pre_cfrag_decode(&decoded, enc, sizeof enc, NULL), 0);
        assert_int_equal(
            ehr_pre_cfrag_verify(&decoded, &capsule, p->alice.public_key, p->bob.public_key),
            EHR_EBADSIG);
        ehr_pre_cfrag pair[2] = {decoded, cfrags[1]};
        assert_int_equal(ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, pair, 2,
                                                    opened, NULL),
                         EHR_EBADSIG);
    }
    /* Every single-bit flip of the encoding: refused by the decoder or by the proof. */
    uint8_t enc[EHR_PRE_CFRAG_BYTES];
    ehr_pre_cfrag_encode(&cfrags[0], enc);
    for (size_t bit = 0; bit < 8 * sizeof enc; bit++) {
        enc[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ehr_pre_cfrag decoded;
        int rc = ehr_pre_cfrag_decode(&decoded, enc, sizeof enc, NULL);
        if (rc == 0)
            assert_int_equal(
                ehr_pre_cfrag_verify(&decoded, &capsule, p->alice.public_key, p->bob.public_key),
                EHR_EBADSIG);
        else
            assert_int_equal(rc, EHR_EINVAL);
        enc[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* the same cfrag against another capsule */
    ehr_pre_capsule other;
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &other, key), 0);
    assert_int_equal(
        ehr_pre_cfrag_verify(&cfrags[0], &other, p->alice.public_key, p->bob.public_key),
        EHR_EBADSIG);
    ehr_pre_kfrag_wipe(&kfrags[0]);
    ehr_pre_kfrag_wipe(&kfrags[1]);
}

static void test_duplicate_cfrags_refused(void **state)
{
    parties *p = *state;
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32];
    ehr_pre_kfrag kfrags[3];
    ehr_pre_cfrag cfrags[3];
    grant_made(p, p->bob.public_key, 2, 3, &capsule, key, kfrags, cfrags);
    ehr_diag why = {""};
    ehr_pre_cfrag same[2] = {cfrags[1], cfrags[1]};
    assert_int_equal(
        ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, same, 2, opened, &why),
        EHR_EEXIST);
    assert_non_null(strstr(why.msg, "same kfrag"));
    /* the same kfrag re-encapsulating twice: different proofs, same index */
    ehr_pre_cfrag twice[2];
    twice[0] = cfrags[2];
    assert_int_equal(ehr_pre_reencapsulate(&kfrags[2], &capsule, &twice[1]), 0);
    assert_memory_not_equal(twice[0].proof_z, twice[1].proof_z, 32);
    assert_int_equal(
        ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, twice, 2, opened, NULL),
        EHR_EEXIST);
    for (size_t i = 0; i < 3; i++)
        ehr_pre_kfrag_wipe(&kfrags[i]);
}

static void test_cfrags_of_two_grants_refused(void **state)
{
    parties *p = *state;
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32];
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &capsule, key), 0);
    ehr_pre_kfrag first[2], second[2];
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, 2, 2, first, NULL), 0);
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, 2, 2, second, NULL), 0);
    ehr_pre_cfrag mixed[2];
    assert_int_equal(ehr_pre_reencapsulate(&first[0], &capsule, &mixed[0]), 0);
    assert_int_equal(ehr_pre_reencapsulate(&second[1], &capsule, &mixed[1]), 0);
    ehr_diag why = {""};
    assert_int_equal(
        ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, mixed, 2, opened, &why),
        EHR_EINVAL);
    assert_non_null(strstr(why.msg, "another grant"));
    for (size_t i = 0; i < 2; i++) {
        ehr_pre_kfrag_wipe(&first[i]);
        ehr_pre_kfrag_wipe(&second[i]);
    }
}

static void test_bad_arguments(void **state)
{
    parties *p = *state;
    ehr_pre_kfrag kfrags[EHR_PRE_KFRAGS_MAX + 1];
    ehr_diag why = {""};
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, 0, 3, kfrags, &why),
                     EHR_EINVAL);
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, 4, 3, kfrags, &why),
                     EHR_EINVAL);
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, 1,
                                             EHR_PRE_KFRAGS_MAX + 1, kfrags, &why),
                     EHR_ETOOBIG);
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, EHR_PRE_KFRAGS_MAX,
                                             EHR_PRE_KFRAGS_MAX, kfrags, &why),
                     0);
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->alice.public_key, 1, 1, kfrags, &why),
                     EHR_EINVAL);
    uint8_t identity[32] = {0};
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, identity, 1, 1, kfrags, &why), EHR_EINVAL);
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32];
    assert_int_equal(ehr_pre_encapsulate(identity, &capsule, key), EHR_EINVAL);
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &capsule, key), 0);

    /* the largest threshold opens */
    ehr_pre_cfrag cfrags[EHR_PRE_KFRAGS_MAX + 1];
    reencapsulate_all(kfrags, EHR_PRE_KFRAGS_MAX, &capsule, cfrags);
    assert_int_equal(ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, cfrags,
                                                EHR_PRE_KFRAGS_MAX, opened, &why),
                     0);
    assert_memory_equal(opened, key, 32);
    cfrags[EHR_PRE_KFRAGS_MAX] = cfrags[0];
    assert_int_equal(ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, cfrags,
                                                EHR_PRE_KFRAGS_MAX + 1, opened, &why),
                     EHR_ETOOBIG);
    assert_int_equal(
        ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule, cfrags, 0, opened, &why),
        EHR_EINVAL);
    assert_int_equal(
        ehr_pre_decapsulate_cfrags(&p->bob, identity, &capsule, cfrags, 1, opened, &why),
        EHR_EINVAL);
    for (size_t i = 0; i < EHR_PRE_KFRAGS_MAX; i++)
        ehr_pre_kfrag_wipe(&kfrags[i]);

    /* secrets: zero and L are refused, L - 1 is fine */
    ehr_pre_key k;
    uint8_t secret[32] = {0};
    assert_int_equal(ehr_pre_key_from_secret(&k, secret), EHR_EINVAL);
    assert_int_equal(ehr_hex_decode(secret, 32, L_HEX), 0);
    assert_int_equal(ehr_pre_key_from_secret(&k, secret), EHR_EINVAL);
    secret[0]--;
    assert_int_equal(ehr_pre_key_from_secret(&k, secret), 0);
    ehr_pre_key_wipe(&k);
    uint8_t zero[sizeof k] = {0};
    assert_memory_equal(&k, zero, sizeof k);
}

/* Structs filled by hand, not by a decoder, with a point that is no encoding: refused where used.
 */
static void test_hand_filled_structs_refused(void **state)
{
    parties *p = *state;
    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32], p_bytes[32];
    assert_int_equal(ehr_hex_decode(p_bytes, 32, P_HEX), 0);
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &capsule, key), 0);
    ehr_pre_kfrag kfrags[1];
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, 1, 1, kfrags, NULL), 0);
    ehr_pre_cfrag cfrag;
    assert_int_equal(ehr_pre_reencapsulate(&kfrags[0], &capsule, &cfrag), 0);

    size_t cfrag_points[] = {offsetof(ehr_pre_cfrag, e1), offsetof(ehr_pre_cfrag, v1),
                             offsetof(ehr_pre_cfrag, precursor),
                             offsetof(ehr_pre_cfrag, commitment),
                             offsetof(ehr_pre_cfrag, signature_r)};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cfrag_points); i++) {
        ehr_pre_cfrag bad = cfrag;
        memcpy((uint8_t *)&bad + cfrag_points[i], p_bytes, 32);
        assert_int_equal(
            ehr_pre_cfrag_verify(&bad, &capsule, p->alice.public_key, p->bob.public_key),
            EHR_EBADSIG);
        assert_int_not_equal(ehr_pre_decapsulate_cfrags(&p->bob, p->alice.public_key, &capsule,
                                                        &bad, 1, opened, NULL),
                             0);
    }
    ehr_pre_capsule bad_capsule = capsule;
    memcpy(bad_capsule.v, p_bytes, 32);
    assert_int_equal(ehr_pre_decapsulate(&p->alice, &bad_capsule, opened), EHR_EINVAL);
    assert_int_equal(ehr_pre_reencapsulate(&kfrags[0], &bad_capsule, &cfrag), EHR_EINVAL);
    assert_int_equal(
        ehr_pre_cfrag_verify(&cfrag, &bad_capsule, p->alice.public_key, p->bob.public_key),
        EHR_EBADSIG);
    ehr_pre_kfrag bad_kfrag = kfrags[0];
    memcpy(bad_kfrag.signature_r, p_bytes, 32);
    assert_int_equal(ehr_pre_kfrag_verify(&bad_kfrag, p->alice.public_key, p->bob.public_key),
                     EHR_EBADSIG);
    ehr_pre_kfrag_wipe(&bad_kfrag);
    ehr_pre_kfrag_wipe(&kfrags[0]);
}

/* Put bytes V at OFFSET in a copy of ENC and expect DECODE to return RC. */
typedef int (*decode_fn)(void *out, const uint8_t *data, size_t len, ehr_diag *diag);

static int capsule_decode(void *out, const uint8_t *data, size_t len, ehr_diag *diag)
{
    return ehr_pre_capsule_decode(out, data, len, diag);
}
static int kfrag_decode(void *out, const uint8_t *data, size_t len, ehr_diag *diag)
{
    return ehr_pre_kfrag_decode(out, data, len, diag);
}
static int cfrag_decode(void *out, const uint8_t *data, size_t len, ehr_diag *diag)
{
    return ehr_pre_cfrag_decode(out, data, len, diag);
}

static void expect_refused(decode_fn decode, const uint8_t *enc, size_t size, size_t offset,
                           const uint8_t value[32], int rc)
{
    uint8_t copy[EHR_PRE_CFRAG_BYTES + 1];
    uint8_t out[EHR_PRE_CFRAG_BYTES];
    assert_true(size <= sizeof out);
    memcpy(copy, enc, size);
    memcpy(copy + offset, value, 32);
    ehr_diag why = {""};
    memset(out, 0xa5, sizeof out);
    assert_int_equal(decode(out, copy, size, &why), rc);
    assert_true(why.msg[0] != '\0');
    for (size_t i = 0; i < size; i++)
        assert_int_equal(out[i], 0); /* zeroed on error */
}

/* Length, every point field (off-curve, non-canonical, identity), every scalar (L, 2^256-1). */
static void check_decoder(decode_fn decode, const uint8_t *enc, size_t size, const size_t *points,
                          size_t point_count, const size_t *scalars, size_t scalar_count)
{
    uint8_t out[EHR_PRE_CFRAG_BYTES], longer[EHR_PRE_CFRAG_BYTES + 1] = {0};
    assert_int_equal(decode(out, enc, size, NULL), 0);
    assert_memory_equal(out, enc, size);
    assert_int_equal(decode(out, enc, 0, NULL), EHR_ETRUNCATED);
    assert_int_equal(decode(out, enc, size - 1, NULL), EHR_ETRUNCATED);
    memcpy(longer, enc, size);
    assert_int_equal(decode(out, longer, size + 1, NULL), EHR_EINVAL);

    uint8_t identity[32] = {0}, odd[32] = {1}, p[32], l[32], ones[32];
    assert_int_equal(ehr_hex_decode(p, 32, P_HEX), 0);
    assert_int_equal(ehr_hex_decode(l, 32, L_HEX), 0);
    memset(ones, 0xff, sizeof ones);
    for (size_t i = 0; i < point_count; i++) {
        expect_refused(decode, enc, size, points[i], identity, EHR_EINVAL);
        expect_refused(decode, enc, size, points[i], odd, EHR_EINVAL); /* negative: not canonical */
        expect_refused(decode, enc, size, points[i], p, EHR_EINVAL);
        expect_refused(decode, enc, size, points[i], ones, EHR_EINVAL);
    }
    for (size_t i = 0; i < scalar_count; i++) {
        expect_refused(decode, enc, size, scalars[i], l, EHR_EINVAL);
        expect_refused(decode, enc, size, scalars[i], ones, EHR_EINVAL);
    }
}

static void test_decoders_refuse_non_canonical(void **state)
{
    parties *p = *state;
    ehr_pre_capsule capsule;
    uint8_t key[32];
    assert_int_equal(ehr_pre_encapsulate(p->alice.public_key, &capsule, key), 0);
    ehr_pre_kfrag kfrags[1];
    assert_int_equal(ehr_pre_kfrags_generate(&p->alice, p->bob.public_key, 1, 1, kfrags, NULL), 0);
    ehr_pre_cfrag cfrag;
    assert_int_equal(ehr_pre_reencapsulate(&kfrags[0], &capsule, &cfrag), 0);

    uint8_t capsule_enc[EHR_PRE_CAPSULE_BYTES], kfrag_enc[EHR_PRE_KFRAG_BYTES],
        cfrag_enc[EHR_PRE_CFRAG_BYTES];
    ehr_pre_capsule_encode(&capsule, capsule_enc);
    ehr_pre_kfrag_encode(&kfrags[0], kfrag_enc);
    ehr_pre_cfrag_encode(&cfrag, cfrag_enc);

    static const size_t capsule_points[] = {0, 32}, capsule_scalars[] = {64};
    check_decoder(capsule_decode, capsule_enc, sizeof capsule_enc, capsule_points, 2,
                  capsule_scalars, 1);
    static const size_t kfrag_points[] = {64, 96, 128, 160, 192}, kfrag_scalars[] = {32, 224};
    check_decoder(kfrag_decode, kfrag_enc, sizeof kfrag_enc, kfrag_points, 5, kfrag_scalars, 2);
    static const size_t cfrag_points[] = {0, 32, 96, 128, 160}, cfrag_scalars[] = {192, 224, 256};
    check_decoder(cfrag_decode, cfrag_enc, sizeof cfrag_enc, cfrag_points, 5, cfrag_scalars, 3);

    /* zero s and zero share are refused as such */
    uint8_t zero[32] = {0};
    expect_refused(capsule_decode, capsule_enc, sizeof capsule_enc, 64, zero, EHR_EINVAL);
    expect_refused(kfrag_decode, kfrag_enc, sizeof kfrag_enc, 32, zero, EHR_EINVAL);
    /* canonical but inconsistent: the capsule equation, the kfrag commitment */
    uint8_t s1[32], one[32] = {1};
    crypto_core_ristretto255_scalar_add(s1, capsule.s, one);
    expect_refused(capsule_decode, capsule_enc, sizeof capsule_enc, 64, s1, EHR_EBADSIG);
    crypto_core_ristretto255_scalar_add(s1, kfrags[0].share, one);
    expect_refused(kfrag_decode, kfrag_enc, sizeof kfrag_enc, 32, s1, EHR_EBADSIG);
    ehr_pre_kfrag_wipe(&kfrags[0]);
    sodium_memzero(kfrag_enc, sizeof kfrag_enc);
}

/*
 * Known answers: fixed secrets and the seeded generator pin the public keys,
 * a capsule and its key, a kfrag (t = 2 of 3) and a cfrag byte for byte. A
 * change to any hash, tag, encoding or step of PRE.md changes one of these.
 * The seed: bytes 0..31; Alice's secret: 0x01..0x1f, 0x00; Bob's: 0x21..0x3f, 0x00.
 */
static const char KAT_ALICE_PUBLIC[] =
    "cece76aabc4bb51f95d38fd5d7ab0349d6ddd42a6fae74056e06cc8002b07b5a";
static const char KAT_BOB_PUBLIC[] =
    "c889ade5c49d8745d87fd3e3a1d8971b87a72c4f7a138655b22ed1fcbf00394a";
static const char KAT_CAPSULE[] =
    "8a5289f17d5acec1ea7f0f3ab3fe7b16dc7af0c0f8022a3e4da52aeb09671016"
    "165a0d13365fc86e8dac2723fa30d843f2c4be6903c6924ea1f7e4818d327f12"
    "804de7b13b4a145624358ccc6226922724899dd3de29b563abac7a3e855ebf08";
static const char KAT_KEY[] = "7ba4c47ff3a10f6d74cf091449ccbc246fbfeb98aac9dfb093f8ec8a9ef72778";
static const char KAT_KFRAG0[] = "21da22b9b824003c3e8dd3c8d637349eca7cede7d01d0d2e400790c97dbdfe41"
                                 "3c40334099292c07766c9ebc9a722adc9ffc6551404bfda775d077e1ed7cc30e"
                                 "7e0a417c2fb8bb8cfadad5495606847bdfcf308867a5e6c5196de59a3ee34b30"
                                 "ecb9e9a6bbb2e2bb55bfe0dea4f56dc89a12bb2c4e46943f1c7fb4450716454b"
                                 "cece76aabc4bb51f95d38fd5d7ab0349d6ddd42a6fae74056e06cc8002b07b5a"
                                 "c889ade5c49d8745d87fd3e3a1d8971b87a72c4f7a138655b22ed1fcbf00394a"
                                 "9eede0293bc527718c1180bfd72a6ffa0d982ebcd8c900a57c9466e75f4ce776"
                                 "9c30bf650cd58a8adcd44ae2a35f33e61ea01006896638954ecd51b06c019d09";
static const char KAT_CFRAG0[] = "481d0733aeffb6dc459b90ef422452287acf83ed3dd756b18021d0eb043e4068"
                                 "f4ca6c0dc5b8e0867eadb5d830bd4ff73357061140354c83f770f2360b972e40"
                                 "21da22b9b824003c3e8dd3c8d637349eca7cede7d01d0d2e400790c97dbdfe41"
                                 "7e0a417c2fb8bb8cfadad5495606847bdfcf308867a5e6c5196de59a3ee34b30"
                                 "ecb9e9a6bbb2e2bb55bfe0dea4f56dc89a12bb2c4e46943f1c7fb4450716454b"
                                 "9eede0293bc527718c1180bfd72a6ffa0d982ebcd8c900a57c9466e75f4ce776"
                                 "9c30bf650cd58a8adcd44ae2a35f33e61ea01006896638954ecd51b06c019d09"
                                 "1ae9c095eea13c1dbc2e73ff7e225c480146e20b582927f49b4bffbc7bbfd80f"
                                 "ba1c8227e0c7a3a763fb0f6352c1f3b3a055c7686acfa72321c9168f2ee1b403";

static void check_hex(const char *name, const void *data, size_t len, const char *expect)
{
    char got[HEX_BYTES_MAX];
    hex_of(got, data, len);
    if (getenv("EHR_PRE_KAT_PRINT") != NULL)
        printf("%s = \"%s\"\n", name, got);
    else
        assert_string_equal(got, expect);
}

static void test_known_answers(void **state)
{
    (void)state;
    uint8_t seed[32], secret[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    ehr_pre__rng rng;
    ehr_pre__rng_seed(&rng, seed);
    ehr_pre_key alice, bob;
    for (int i = 0; i < 32; i++)
        secret[i] = i < 31 ? (uint8_t)(i + 1) : 0;
    assert_int_equal(ehr_pre_key_from_secret(&alice, secret), 0);
    for (int i = 0; i < 32; i++)
        secret[i] = i < 31 ? (uint8_t)(i + 0x21) : 0;
    assert_int_equal(ehr_pre_key_from_secret(&bob, secret), 0);
    check_hex("KAT_ALICE_PUBLIC", alice.public_key, 32, KAT_ALICE_PUBLIC);
    check_hex("KAT_BOB_PUBLIC", bob.public_key, 32, KAT_BOB_PUBLIC);

    ehr_pre_capsule capsule;
    uint8_t key[32], opened[32];
    assert_int_equal(ehr_pre__encapsulate_rng(alice.public_key, &capsule, key, &rng), 0);
    uint8_t capsule_enc[EHR_PRE_CAPSULE_BYTES];
    ehr_pre_capsule_encode(&capsule, capsule_enc);
    check_hex("KAT_CAPSULE", capsule_enc, sizeof capsule_enc, KAT_CAPSULE);
    check_hex("KAT_KEY", key, 32, KAT_KEY);

    ehr_pre_kfrag kfrags[3];
    assert_int_equal(ehr_pre__kfrags_generate_rng(&alice, bob.public_key, 2, 3, kfrags, NULL, &rng),
                     0);
    uint8_t kfrag_enc[EHR_PRE_KFRAG_BYTES];
    ehr_pre_kfrag_encode(&kfrags[0], kfrag_enc);
    check_hex("KAT_KFRAG0", kfrag_enc, sizeof kfrag_enc, KAT_KFRAG0);

    ehr_pre_cfrag cfrags[2];
    assert_int_equal(ehr_pre__reencapsulate_rng(&kfrags[0], &capsule, &cfrags[0], &rng), 0);
    assert_int_equal(ehr_pre__reencapsulate_rng(&kfrags[2], &capsule, &cfrags[1], &rng), 0);
    uint8_t cfrag_enc[EHR_PRE_CFRAG_BYTES];
    ehr_pre_cfrag_encode(&cfrags[0], cfrag_enc);
    check_hex("KAT_CFRAG0", cfrag_enc, sizeof cfrag_enc, KAT_CFRAG0);

    /* the pinned objects decode and open */
    ehr_pre_capsule capsule2;
    ehr_pre_cfrag cfrag2;
    assert_int_equal(ehr_pre_capsule_decode(&capsule2, capsule_enc, sizeof capsule_enc, NULL), 0);
    assert_int_equal(ehr_pre_cfrag_decode(&cfrag2, cfrag_enc, sizeof cfrag_enc, NULL), 0);
    assert_int_equal(ehr_pre_decapsulate(&alice, &capsule2, opened), 0);
    assert_memory_equal(opened, key, 32);
    assert_int_equal(
        ehr_pre_decapsulate_cfrags(&bob, alice.public_key, &capsule2, cfrags, 2, opened, NULL), 0);
    assert_memory_equal(opened, key, 32);
    for (size_t i = 0; i < 3; i++)
        ehr_pre_kfrag_wipe(&kfrags[i]);
    ehr_pre_key_wipe(&alice);
    ehr_pre_key_wipe(&bob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delegating_keys_per_record_type),
        cmocka_unit_test(test_generator_u_derivation),
        cmocka_unit_test(test_delegator_round_trip),
        cmocka_unit_test(test_threshold_round_trips),
        cmocka_unit_test(test_fewer_than_threshold_fail),
        cmocka_unit_test(test_kfrag_for_other_grantee_fails),
        cmocka_unit_test(test_kfrag_not_from_delegator_refused),
        cmocka_unit_test(test_tampered_cfrag_caught),
        cmocka_unit_test(test_duplicate_cfrags_refused),
        cmocka_unit_test(test_cfrags_of_two_grants_refused),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_hand_filled_structs_refused),
        cmocka_unit_test(test_decoders_refuse_non_canonical),
        cmocka_unit_test(test_known_answers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
