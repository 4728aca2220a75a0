/*
 * test_pre_seal.c - receiving keys and kfrags sealed to nodes
 * (crypto/pre_seal.h): a grant's kfrags sealed to three nodes open only at
 * their own node and still open the record key from a threshold of cfrags;
 * a sealed kfrag that is altered, cut, lengthened or moved under another
 * node's key is refused; the sealed size is tested at its edge.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include <sodium.h>

#include "ehr_crypto.h"
#include "pre.h"
#include "pre_seal.h"

enum { NODES = 3, THRESHOLD = 2 };

struct grant {
    ehr_pre_key patient, grantee;
    ehr_kx_key nodes[NODES];
    uint8_t sealed[NODES][EHR_PRE_SEALED_KFRAG_BYTES];
};

static void grant_make(struct grant *g)
{
    uint8_t root[EHR_PRE_ROOT_BYTES];
    randombytes_buf(root, sizeof root);
    assert_int_equal(ehr_pre_delegating_key_derive(&g->patient, root, 2), 0);
    randombytes_buf(root, sizeof root);
    assert_int_equal(ehr_pre_receiving_key_derive(&g->grantee, root), 0);
    ehr_pre_kfrag kfrags[NODES];
    assert_int_equal(
        ehr_pre_kfrags_generate(&g->patient, g->grantee.public_key, THRESHOLD, NODES, kfrags, NULL),
        0);
    for (size_t i = 0; i < NODES; i++) {
        assert_int_equal(ehr_kx_key_generate(&g->nodes[i]), 0);
        assert_int_equal(ehr_pre_kfrag_seal(&kfrags[i], g->nodes[i].public_key, g->sealed[i]), 0);
        ehr_pre_kfrag_wipe(&kfrags[i]);
    }
}

static void test_receiving_key_derivation(void **state)
{
    (void)state;
    uint8_t root[EHR_PRE_ROOT_BYTES], other[EHR_PRE_ROOT_BYTES];
    randombytes_buf(root, sizeof root);
    memcpy(other, root, sizeof other);
    other[0] ^= 1;
    ehr_pre_key a, b, c, d;
    assert_int_equal(ehr_pre_receiving_key_derive(&a, root), 0);
    assert_int_equal(ehr_pre_receiving_key_derive(&b, root), 0);
    assert_memory_equal(a.public_key, b.public_key, EHR_PRE_PUBLIC_BYTES);
    assert_int_equal(ehr_pre_receiving_key_derive(&c, other), 0);
    assert_memory_not_equal(a.public_key, c.public_key, EHR_PRE_PUBLIC_BYTES);
    /* Not any of the delegating keys of the same root. */
    assert_int_equal(ehr_pre_delegating_key_derive(&d, root, 1), 0);
    assert_memory_not_equal(a.public_key, d.public_key, EHR_PRE_PUBLIC_BYTES);
    assert_int_equal(ehr_pre_public_key_check(a.public_key), 0);
    ehr_pre_key_wipe(&a);
    ehr_pre_key_wipe(&b);
    ehr_pre_key_wipe(&c);
    ehr_pre_key_wipe(&d);
}

/* Each node opens its own kfrag; two of the three cfrags open the key. */
static void test_sealed_kfrags_open_at_their_node(void **state)
{
    (void)state;
    struct grant g;
    grant_make(&g);
    ehr_pre_capsule capsule;
    uint8_t key[EHR_PRE_KEY_BYTES], opened[EHR_PRE_KEY_BYTES];
    assert_int_equal(ehr_pre_encapsulate(g.patient.public_key, &capsule, key), 0);
    ehr_pre_cfrag cfrags[NODES];
    for (size_t i = 0; i < NODES; i++) {
        uint8_t recipient[EHR_KX_PUBLIC_BYTES];
        assert_int_equal(
            ehr_pre_sealed_kfrag_recipient(g.sealed[i], sizeof g.sealed[i], recipient, NULL), 0);
        assert_memory_equal(recipient, g.nodes[i].public_key, EHR_KX_PUBLIC_BYTES);
        ehr_pre_kfrag kfrag;
        ehr_diag why;
        assert_int_equal(
            ehr_pre_kfrag_unseal(&kfrag, g.sealed[i], sizeof g.sealed[i], &g.nodes[i], &why), 0);
        assert_int_equal(ehr_pre_kfrag_verify(&kfrag, g.patient.public_key, g.grantee.public_key),
                         0);
        assert_int_equal(ehr_pre_reencapsulate(&kfrag, &capsule, &cfrags[i]), 0);
        ehr_pre_kfrag_wipe(&kfrag);
        /* Another node's key does not open it. */
        assert_int_equal(ehr_pre_kfrag_unseal(&kfrag, g.sealed[i], sizeof g.sealed[i],
                                              &g.nodes[(i + 1) % NODES], &why),
                         EHR_ENOTFOUND);
    }
    assert_int_equal(ehr_pre_decapsulate_cfrags(&g.grantee, g.patient.public_key, &capsule,
                                                &cfrags[1], THRESHOLD, opened, NULL),
                     0);
    assert_memory_equal(opened, key, sizeof key);
    sodium_memzero(key, sizeof key);
    sodium_memzero(opened, sizeof opened);
}

static void test_sealed_kfrag_tampering_refused(void **state)
{
    (void)state;
    struct grant g;
    grant_make(&g);
    ehr_pre_kfrag kfrag;
    ehr_diag why;
    uint8_t bad[EHR_PRE_SEALED_KFRAG_BYTES + 1];
    /* Any byte of the box altered: it does not open. */
    for (size_t at = EHR_KX_PUBLIC_BYTES; at < EHR_PRE_SEALED_KFRAG_BYTES; at += 37) {
        memcpy(bad, g.sealed[0], EHR_PRE_SEALED_KFRAG_BYTES);
        bad[at] ^= 0x40;
        assert_int_equal(
            ehr_pre_kfrag_unseal(&kfrag, bad, EHR_PRE_SEALED_KFRAG_BYTES, &g.nodes[0], &why),
            EHR_EBADSIG);
    }
    /* Node 0's box relabelled for node 1: the box is bound to its key. */
    memcpy(bad, g.sealed[0], EHR_PRE_SEALED_KFRAG_BYTES);
    memcpy(bad, g.nodes[1].public_key, EHR_KX_PUBLIC_BYTES);
    assert_int_equal(
        ehr_pre_kfrag_unseal(&kfrag, bad, EHR_PRE_SEALED_KFRAG_BYTES, &g.nodes[1], &why),
        EHR_EBADSIG);
    /* A low-order recipient is refused by the decoder. */
    memcpy(bad, g.sealed[0], EHR_PRE_SEALED_KFRAG_BYTES);
    memset(bad, 0, EHR_KX_PUBLIC_BYTES);
    uint8_t recipient[EHR_KX_PUBLIC_BYTES];
    assert_int_equal(
        ehr_pre_sealed_kfrag_recipient(bad, EHR_PRE_SEALED_KFRAG_BYTES, recipient, &why),
        EHR_EINVAL);
    uint8_t low[EHR_KX_PUBLIC_BYTES] = {0};
    uint8_t out[EHR_PRE_SEALED_KFRAG_BYTES];
    assert_int_equal(ehr_pre_kfrag_unseal(&kfrag, g.sealed[0], 1, &g.nodes[0], &why),
                     EHR_ETRUNCATED);
    struct grant h;
    grant_make(&h);
    ehr_pre_kfrag k;
    assert_int_equal(ehr_pre_kfrag_unseal(&k, h.sealed[0], sizeof h.sealed[0], &h.nodes[0], NULL),
                     0);
    assert_int_equal(ehr_pre_kfrag_seal(&k, low, out), EHR_EINVAL);
    ehr_pre_kfrag_wipe(&k);
}

/* EHR_PRE_SEALED_KFRAG_BYTES at its edge: one byte less or more is refused. */
static void test_sealed_kfrag_size_at_its_edge(void **state)
{
    (void)state;
    struct grant g;
    grant_make(&g);
    uint8_t longer[EHR_PRE_SEALED_KFRAG_BYTES + 1];
    memcpy(longer, g.sealed[2], EHR_PRE_SEALED_KFRAG_BYTES);
    longer[EHR_PRE_SEALED_KFRAG_BYTES] = 0;
    uint8_t recipient[EHR_KX_PUBLIC_BYTES];
    ehr_diag why;
    assert_int_equal(ehr_pre_sealed_kfrag_recipient(g.sealed[2], EHR_PRE_SEALED_KFRAG_BYTES - 1,
                                                    recipient, &why),
                     EHR_ETRUNCATED);
    assert_non_null(strstr(why.msg, "336"));
    assert_int_equal(ehr_pre_sealed_kfrag_recipient(longer, sizeof longer, recipient, &why),
                     EHR_EINVAL);
    ehr_pre_kfrag kfrag;
    assert_int_equal(ehr_pre_kfrag_unseal(&kfrag, longer, sizeof longer, &g.nodes[2], &why),
                     EHR_EINVAL);
    assert_int_equal(
        ehr_pre_kfrag_unseal(&kfrag, longer, EHR_PRE_SEALED_KFRAG_BYTES, &g.nodes[2], &why), 0);
    ehr_pre_kfrag_wipe(&kfrag);
}

int main(void)
{
    if (ehr_crypto_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receiving_key_derivation),
        cmocka_unit_test(test_sealed_kfrags_open_at_their_node),
        cmocka_unit_test(test_sealed_kfrag_tampering_refused),
        cmocka_unit_test(test_sealed_kfrag_size_at_its_edge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
