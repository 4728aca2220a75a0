/*
 * capsule_answer.c - a node's GetCapsuleFragment answer, decoded and its
 * shapes checked (capsule_answer.h). Not here: asking (record_grantee.c)
 * and verifying the proof (crypto/pre.h).
 */
#include <string.h>

#include "capsule_answer.h"
#include "ehr/v1/node.pb-c.h"

const char *cli__capsule_answer_decode(const uint8_t *bytes, size_t len, ehr_pre_cfrag *cfrag,
                                       uint8_t consent_id[32],
                                       uint8_t delegating[EHR_PRE_PUBLIC_BYTES])
{
    memset(cfrag, 0, sizeof *cfrag);
    memset(consent_id, 0, 32);
    memset(delegating, 0, EHR_PRE_PUBLIC_BYTES);
    Ehr__V1__GetCapsuleFragmentResponse *r =
        ehr__v1__get_capsule_fragment_response__unpack(NULL, len, bytes);
    if (r == NULL)
        return "the answer does not decode";
    const char *bad = NULL;
    if (r->consent_id.len != 32)
        bad = "consent_id is not 32 bytes";
    else if (r->delegating_key.len != EHR_PRE_PUBLIC_BYTES ||
             ehr_pre_public_key_check(r->delegating_key.data) != 0)
        bad = "delegating_key is not a delegating key";
    else if (ehr_pre_cfrag_decode(cfrag, r->cfrag.data, r->cfrag.len, NULL) != 0)
        bad = "the capsule fragment does not decode";
    if (bad == NULL) {
        memcpy(consent_id, r->consent_id.data, 32);
        memcpy(delegating, r->delegating_key.data, EHR_PRE_PUBLIC_BYTES);
    } else {
        memset(cfrag, 0, sizeof *cfrag);
    }
    ehr__v1__get_capsule_fragment_response__free_unpacked(r, NULL);
    return bad;
}
