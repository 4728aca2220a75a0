/*
 * capsule_answer.h - the decoder of a node's GetCapsuleFragment answer
 * (node.proto, "Capsule fragments"), as `ehrctl record get` reads it for a
 * grantee. Apart from the rest of ehrctl so that a fuzz target links it
 * (tests/fuzz/capsule_answer). Checks shapes only: the proof is checked by
 * ehr_pre_cfrag_verify with the capsule and the keys.
 */
#ifndef EHR_CLI_CAPSULE_ANSWER_H
#define EHR_CLI_CAPSULE_ANSWER_H

#include <stddef.h>
#include <stdint.h>

#include "pre.h"

/*
 * Decode the LEN bytes at BYTES as a GetCapsuleFragmentResponse: a cfrag
 * that ehr_pre_cfrag_decode takes, a 32-byte consent id and a delegating
 * key that ehr_pre_public_key_check takes. Returns NULL with CFRAG,
 * CONSENT_ID and DELEGATING filled, or a constant string saying what is
 * wrong (CFRAG, CONSENT_ID and DELEGATING then zeroed).
 */
const char *cli__capsule_answer_decode(const uint8_t *bytes, size_t len, ehr_pre_cfrag *cfrag,
                                       uint8_t consent_id[32],
                                       uint8_t delegating[EHR_PRE_PUBLIC_BYTES]);

#endif /* EHR_CLI_CAPSULE_ANSWER_H */
