/*
 * libFuzzer targets for the proxy re-encryption decoders (crypto/pre.h), one
 * binary per decoder: FUZZ_PRE_CAPSULE, FUZZ_PRE_KFRAG, FUZZ_PRE_CFRAG or FUZZ_PRE_SEALED
 * chooses which. Checks the decoder's promises on any bytes: only the
 * documented errors, EHR_ETRUNCATED exactly for short input, a message and
 * an all-zero output on every error, success only at the exact size, and an
 * encoding that gives back the same bytes. What decodes is then used the way
 * the scheme uses it, against fixed keys (fixture.h): a capsule is opened by
 * the delegator and re-encapsulated by a real kfrag, whose cfrag must
 * verify; a kfrag is verified and re-encapsulates a real capsule, its cfrag
 * verifying exactly when the kfrag did; a cfrag is verified (it may fail,
 * never crash) and, when it verifies, opens the capsule with a real cfrag.
 * FUZZ_PRE_SEALED: a kfrag sealed to a node (pre_seal.h), opened by the
 * fixture's node.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++) {
        if (b[i] != 0)
            return false;
    }
    return true;
}

#if !defined(FUZZ_PRE_SEALED)
/* The checks every decoder's result gets; true when DATA decoded. */
static bool decoded(int rc, const ehr_diag *why, const void *out, size_t out_size, size_t size)
{
    if (rc != 0) {
        check(rc == EHR_ETRUNCATED || rc == EHR_EINVAL || rc == EHR_EBADSIG);
        check((rc == EHR_ETRUNCATED) == (size < out_size));
        check(why->msg[0] != '\0');
        check(all_zero(out, out_size));
        return false;
    }
    check(size == out_size);
    return true;
}
#endif

static const pre_fixture *fixture(void)
{
    static pre_fixture f;
    static bool ready;
    if (!ready) {
        pre_fixture_make(&f);
        ready = true;
    }
    return &f;
}

#if defined(FUZZ_PRE_CAPSULE)
static void one_input(const pre_fixture *f, const uint8_t *data, size_t size)
{
    ehr_pre_capsule capsule;
    ehr_diag why = {""};
    int rc = ehr_pre_capsule_decode(&capsule, data, size, &why);
    if (!decoded(rc, &why, &capsule, sizeof capsule, size))
        return;
    uint8_t again[EHR_PRE_CAPSULE_BYTES], key[EHR_PRE_KEY_BYTES];
    ehr_pre_capsule_encode(&capsule, again);
    check(memcmp(again, data, size) == 0);
    check(ehr_pre_decapsulate(&f->alice, &capsule, key) == 0);
    ehr_pre_cfrag cfrag;
    check(ehr_pre_reencapsulate(&f->kfrags[0], &capsule, &cfrag) == 0);
    check(ehr_pre_cfrag_verify(&cfrag, &capsule, f->alice.public_key, f->bob.public_key) == 0);
}
#elif defined(FUZZ_PRE_KFRAG)
static void one_input(const pre_fixture *f, const uint8_t *data, size_t size)
{
    ehr_pre_kfrag kfrag;
    ehr_diag why = {""};
    int rc = ehr_pre_kfrag_decode(&kfrag, data, size, &why);
    if (!decoded(rc, &why, &kfrag, sizeof kfrag, size))
        return;
    uint8_t again[EHR_PRE_KFRAG_BYTES];
    ehr_pre_kfrag_encode(&kfrag, again);
    check(memcmp(again, data, size) == 0);
    rc = ehr_pre_kfrag_verify(&kfrag, f->alice.public_key, f->bob.public_key);
    check(rc == 0 || rc == EHR_EBADSIG);
    ehr_pre_cfrag cfrag;
    check(ehr_pre_reencapsulate(&kfrag, &f->capsule, &cfrag) == 0);
    int verified =
        ehr_pre_cfrag_verify(&cfrag, &f->capsule, f->alice.public_key, f->bob.public_key);
    check((verified == 0) == (rc == 0));
    ehr_pre_kfrag_wipe(&kfrag);
}
#elif defined(FUZZ_PRE_CFRAG)
static void one_input(const pre_fixture *f, const uint8_t *data, size_t size)
{
    ehr_pre_cfrag cfrag;
    ehr_diag why = {""};
    int rc = ehr_pre_cfrag_decode(&cfrag, data, size, &why);
    if (!decoded(rc, &why, &cfrag, sizeof cfrag, size))
        return;
    uint8_t again[EHR_PRE_CFRAG_BYTES];
    ehr_pre_cfrag_encode(&cfrag, again);
    check(memcmp(again, data, size) == 0);
    rc = ehr_pre_cfrag_verify(&cfrag, &f->capsule, f->alice.public_key, f->bob.public_key);
    check(rc == 0 || rc == EHR_EBADSIG);
    if (rc != 0)
        return;
    /* Verified: with a cfrag of another kfrag it opens the fixture's capsule (t = 2),
     * unless it is a second cfrag of that same kfrag. */
    ehr_pre_cfrag pair[2] = {cfrag, f->cfrag};
    uint8_t key[EHR_PRE_KEY_BYTES];
    rc = ehr_pre_decapsulate_cfrags(&f->bob, f->alice.public_key, &f->capsule, pair, 2, key, NULL);
    if (memcmp(cfrag.id, f->cfrag.id, sizeof cfrag.id) == 0) {
        check(rc == EHR_EEXIST);
    } else {
        check(rc == 0);
        check(memcmp(key, f->key, sizeof key) == 0);
    }
}
#elif defined(FUZZ_PRE_SEALED)
/* A sealed kfrag (pre_seal.h) as the fixture's node opens it: only the
 * documented errors, a message and an all-zero kfrag on each; what opens
 * is a kfrag that decodes again to itself and re-encapsulates. */
static void one_input(const pre_fixture *f, const uint8_t *data, size_t size)
{
    uint8_t recipient[EHR_KX_PUBLIC_BYTES];
    ehr_diag why = {""};
    int rc = ehr_pre_sealed_kfrag_recipient(data, size, recipient, &why);
    if (rc != 0) {
        check(rc == EHR_ETRUNCATED || rc == EHR_EINVAL);
        check((rc == EHR_ETRUNCATED) == (size < EHR_PRE_SEALED_KFRAG_BYTES));
        check(why.msg[0] != '\0');
        check(all_zero(recipient, sizeof recipient));
    }
    ehr_pre_kfrag kfrag;
    why.msg[0] = '\0';
    int opened = ehr_pre_kfrag_unseal(&kfrag, data, size, &f->node, &why);
    if (rc != 0)
        check(opened == rc);
    if (opened != 0) {
        check(opened == EHR_ETRUNCATED || opened == EHR_EINVAL || opened == EHR_EBADSIG ||
              opened == EHR_ENOTFOUND);
        check(why.msg[0] != '\0');
        check(all_zero(&kfrag, sizeof kfrag));
        return;
    }
    check(size == EHR_PRE_SEALED_KFRAG_BYTES);
    check(memcmp(recipient, f->node.public_key, EHR_KX_PUBLIC_BYTES) == 0);
    uint8_t again[EHR_PRE_KFRAG_BYTES];
    ehr_pre_kfrag_encode(&kfrag, again);
    ehr_pre_kfrag twice;
    check(ehr_pre_kfrag_decode(&twice, again, sizeof again, NULL) == 0);
    ehr_pre_cfrag cfrag;
    check(ehr_pre_reencapsulate(&kfrag, &f->capsule, &cfrag) == 0);
    ehr_pre_kfrag_wipe(&kfrag);
    ehr_pre_kfrag_wipe(&twice);
}
#else
#error "define FUZZ_PRE_CAPSULE, FUZZ_PRE_KFRAG, FUZZ_PRE_CFRAG or FUZZ_PRE_SEALED"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one_input(fixture(), data, size);
    return 0;
}
