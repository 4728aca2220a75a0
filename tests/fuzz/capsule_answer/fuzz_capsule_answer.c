/*
 * libFuzzer target for cli__capsule_answer_decode (cli/capsule_answer.h):
 * any bytes as a node's GetCapsuleFragment answer. Oracles, each an abort:
 * the decoder returns NULL or a message; on a message every output is
 * zero; on NULL the cfrag encodes and decodes back to itself and the
 * delegating key passes the key check; the decoded cfrag's proof, checked
 * against the PRE fixture's capsule and keys (tests/fuzz/pre/fixture.h),
 * verifies or fails with EHR_EBADSIG, and one that verifies for the
 * fixture's delegating key opens the fixture's key with a second cfrag,
 * as ehrctl would go on to do.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capsule_answer.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const pre_fixture *f = fixture();
    ehr_pre_cfrag cfrag;
    uint8_t consent_id[32], delegating[EHR_PRE_PUBLIC_BYTES];
    const char *bad = cli__capsule_answer_decode(data, size, &cfrag, consent_id, delegating);
    if (bad != NULL) {
        check(bad[0] != '\0');
        check(all_zero(&cfrag, sizeof cfrag));
        check(all_zero(consent_id, sizeof consent_id));
        check(all_zero(delegating, sizeof delegating));
        return 0;
    }
    check(ehr_pre_public_key_check(delegating) == 0);
    uint8_t again[EHR_PRE_CFRAG_BYTES];
    ehr_pre_cfrag_encode(&cfrag, again);
    ehr_pre_cfrag twice;
    check(ehr_pre_cfrag_decode(&twice, again, sizeof again, NULL) == 0);
    check(memcmp(&twice, &cfrag, sizeof cfrag) == 0);
    int rc = ehr_pre_cfrag_verify(&cfrag, &f->capsule, delegating, f->bob.public_key);
    check(rc == 0 || rc == EHR_EBADSIG);
    if (rc != 0 || memcmp(delegating, f->alice.public_key, EHR_PRE_PUBLIC_BYTES) != 0 ||
        memcmp(cfrag.id, f->cfrag.id, sizeof cfrag.id) == 0)
        return 0;
    ehr_pre_cfrag pair[2] = {cfrag, f->cfrag};
    uint8_t key[EHR_PRE_KEY_BYTES];
    check(ehr_pre_decapsulate_cfrags(&f->bob, f->alice.public_key, &f->capsule, pair, 2, key,
                                     NULL) == 0);
    check(memcmp(key, f->key, sizeof key) == 0);
    return 0;
}
