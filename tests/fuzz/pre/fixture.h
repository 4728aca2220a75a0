/*
 * fixture.h - the fixed keys and objects the proxy re-encryption fuzz
 * targets and their seed writer share: test_pre's known-answer keys (Alice
 * delegates to Bob) and, from the same seeded generator, a capsule, three
 * kfrags of threshold 2 and a cfrag; and a node's X25519 key (sealed
 * kfrags). Deterministic, so a seed written by make_pre_seeds decodes to
 * the same objects the targets check it against.
 */
#ifndef FUZZ_PRE_FIXTURE_H
#define FUZZ_PRE_FIXTURE_H

#include <stdlib.h>

#include "ehr_crypto.h"
#include "pre.h"
#include "pre_internal.h"
#include "pre_seal.h"

typedef struct pre_fixture {
    ehr_pre_key alice; /* the delegator */
    ehr_pre_key bob;   /* the grantee */
    ehr_pre_capsule capsule;
    uint8_t key[EHR_PRE_KEY_BYTES];
    ehr_pre_kfrag kfrags[3];
    ehr_pre_cfrag cfrag; /* from kfrags[0] */
    ehr_kx_key node;     /* the node the sealed seeds are for */
} pre_fixture;

/* Fill F (as test_known_answers does); aborts if anything fails. */
static inline void pre_fixture_make(pre_fixture *f)
{
    uint8_t seed[32], secret[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    ehr_pre__rng rng;
    ehr_pre__rng_seed(&rng, seed);
    for (int i = 0; i < 32; i++)
        secret[i] = i < 31 ? (uint8_t)(i + 1) : 0;
    if (ehr_crypto_init() != 0 || ehr_pre_key_from_secret(&f->alice, secret) != 0)
        abort();
    for (int i = 0; i < 32; i++)
        secret[i] = i < 31 ? (uint8_t)(i + 0x21) : 0;
    if (ehr_pre_key_from_secret(&f->bob, secret) != 0 ||
        ehr_pre__encapsulate_rng(f->alice.public_key, &f->capsule, f->key, &rng) != 0 ||
        ehr_pre__kfrags_generate_rng(&f->alice, f->bob.public_key, 2, 3, f->kfrags, NULL, &rng) !=
            0 ||
        ehr_pre__reencapsulate_rng(&f->kfrags[0], &f->capsule, &f->cfrag, &rng) != 0)
        abort();
    for (int i = 0; i < 32; i++)
        secret[i] = (uint8_t)(i + 0x41);
    if (ehr_kx_key_from_secret(&f->node, secret) != 0)
        abort();
}

#endif /* FUZZ_PRE_FIXTURE_H */
