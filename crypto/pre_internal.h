/*
 * pre_internal.h - what tests need of pre.c and nothing else may use: the
 * operations that draw randomness, with the randomness taken from a seeded
 * deterministic generator, so that known-answer tests pin every encoding.
 *
 * The public functions in pre.h are these same functions called with RNG =
 * NULL (libsodium's randombytes and crypto_core_ristretto255_scalar_random);
 * there is one code path. A seeded generator is predictable by design: no
 * program outside tests/ includes this header.
 */
#ifndef EHR_PRE_INTERNAL_H
#define EHR_PRE_INTERNAL_H

#include "pre.h"

/* A deterministic generator: block i is BLAKE2b("ehrchain/pre/v1/test-rng", seed, i). */
typedef struct ehr_pre__rng {
    uint8_t seed[32];
    uint64_t counter;
} ehr_pre__rng;

void ehr_pre__rng_seed(ehr_pre__rng *rng, const uint8_t seed[32]);

/* The second generator U, as derived in PRE.md (tests check the constant). */
extern const uint8_t ehr_pre__generator_u[EHR_PRE_POINT_BYTES];

int ehr_pre__encapsulate_rng(const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                             ehr_pre_capsule *capsule, uint8_t key[EHR_PRE_KEY_BYTES],
                             ehr_pre__rng *rng);
int ehr_pre__kfrags_generate_rng(const ehr_pre_key *delegating,
                                 const uint8_t receiving_key[EHR_PRE_PUBLIC_BYTES],
                                 size_t threshold, size_t count, ehr_pre_kfrag *kfrags,
                                 ehr_diag *diag, ehr_pre__rng *rng);
int ehr_pre__reencapsulate_rng(const ehr_pre_kfrag *kfrag, const ehr_pre_capsule *capsule,
                               ehr_pre_cfrag *cfrag, ehr_pre__rng *rng);

#endif /* EHR_PRE_INTERNAL_H */
