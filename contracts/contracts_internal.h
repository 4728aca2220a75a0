/*
 * contracts_internal.h - what the transaction rules (rules.c) share with
 * their tests and nothing else: the world state's key layout, the limits
 * the rules place on payloads, and small helpers over a contracts_block.
 *
 * The key layout (contracts/README.md, "World state") in one place: every
 * key is an ASCII prefix ending in '/', then fixed-size binary parts (32-byte
 * keys and ids, big-endian integers), so that a prefix scan lists one
 * patient's or one grantee's entries in the order the suffix sorts.
 */
#ifndef EHR_CONTRACTS_INTERNAL_H
#define EHR_CONTRACTS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contracts.h"
#include "ehr/v1/tx.pb-c.h"

/* ---- keys ---- */

#define CONTRACTS_PREFIX_MEMBER LEDGER_MEMBER_KEY_PREFIX /* + node key */
#define CONTRACTS_PREFIX_PATIENT "patient/"              /* + patient key */
#define CONTRACTS_PREFIX_PRACTITIONER "practitioner/"    /* + practitioner key */
#define CONTRACTS_PREFIX_RECORD "record/"                /* + record id */
#define CONTRACTS_PREFIX_CONSENT "consent/"              /* + consent id */
#define CONTRACTS_PREFIX_PROPOSAL "proposal/"            /* + proposal id */
#define CONTRACTS_PREFIX_PATIENT_RECORDS                                                           \
    "patient-records/" /* + patient + type4 + height8 + pos4                                       \
                        */
#define CONTRACTS_PREFIX_PATIENT_CONSENTS                                                          \
    "patient-consents/"                                       /* + patient + grantee + consent id  \
                                                               */
#define CONTRACTS_PREFIX_GRANTEE_CONSENTS "grantee-consents/" /* + grantee + consent id */
#define CONTRACTS_PREFIX_AUDIT "audit/"                       /* + patient + height8 + pos4 */
#define CONTRACTS_PREFIX_AUDIT_EMERGENCY "audit-emergency/"   /* + patient + height8 + pos4 */

enum {
    CONTRACTS_KEY_PART_BYTES = 32, /* a public key, a record, consent or proposal id */
    /* The longest key: the longest prefix, three parts, a 16-byte suffix. */
    CONTRACTS_KEY_BYTES_MAX = 32 + 3 * CONTRACTS_KEY_PART_BYTES + 16,
};
_Static_assert((int)CONTRACTS_KEY_BYTES_MAX <= (int)EHR_STATE_KEY_BYTES_MAX,
               "a contract key is a state key");
_Static_assert(sizeof CONTRACTS_PREFIX_PATIENT_CONSENTS - 1 <= 32, "the longest prefix fits");

/*
 * Write PREFIX then the parts K1, K2, K3 (CONTRACTS_KEY_PART_BYTES each; a
 * NULL part and every part after it are left out) into OUT, which has room
 * for CONTRACTS_KEY_BYTES_MAX. Returns the key's length.
 */
size_t contracts_key(uint8_t *out, const char *prefix, const uint8_t *k1, const uint8_t *k2,
                     const uint8_t *k3);
/* Append LEN bytes of SUFFIX to the key of KEY_LEN bytes in OUT; returns the
 * new length. Precondition: it fits CONTRACTS_KEY_BYTES_MAX. */
size_t contracts_key_append(uint8_t *out, size_t key_len, const uint8_t *suffix, size_t len);

void contracts_be32(uint8_t out[4], uint32_t v);
void contracts_be64(uint8_t out[8], uint64_t v);

/* ---- limits on payloads (each with a test at its edge) ---- */

enum {
    /* A record's encrypted pointer (where the ciphertext lives, sealed). */
    CONTRACTS_POINTER_BYTES_MAX = 1024,
    /* A record's key capsule (the PRE capsule of its data key). */
    CONTRACTS_CAPSULE_BYTES_MAX = 256,
    /* Record types and record ids one consent names (each list). */
    CONTRACTS_SCOPE_COUNT_MAX = 64,
    /* Key fragments one consent carries, and the size of each. */
    CONTRACTS_KEY_FRAGMENTS_MAX = 16,
    CONTRACTS_KEY_FRAGMENT_BYTES_MAX = 256,
    /* The reason an emergency access states. */
    CONTRACTS_EMERGENCY_REASON_BYTES_MAX = 256,
    /* Members a chain can hold, hence approvals of one proposal. */
    CONTRACTS_MEMBERS_MAX = EHR_GENESIS_MEMBERS_MAX,
    /* One access request: the consents of the patient for the requester
     * (and, for a practitioner, its member) it looks at, and the consent-VM
     * gas their policies may use together. Past either, the request is
     * denied with that reason: the cost of applying one request is bounded
     * whatever the patient has granted. */
    CONTRACTS_ACCESS_CONSENTS_MAX = 32,
    CONTRACTS_ACCESS_GAS_MAX = 512,
};

/* One day of block time, for a record's age. */
#define CONTRACTS_DAY_MS ((uint64_t)86400000)

/* ---- helpers the rules use ---- */

/*
 * A buffer of EHR_STATE_VALUE_BYTES_MAX bytes owned by B, for the rules'
 * reads: allocated at the first call, then the same for every transaction
 * of the block, freed by contracts_block_end (a hot path allocates up front
 * and reuses).
 */
uint8_t *contracts_block_scratch(contracts_block *b);

/*
 * The message a patient signs to agree to be enrolled by a member:
 * SHA-256("ehrchain/v1/patient-enroll" || len(chain_id) (1 byte) ||
 * chain_id || enroller node key || patient key || patient kx key). Binding
 * the chain and the enroller keeps a signature from being replayed on
 * another chain or by another member.
 */
void contracts_enroll_message(const char *chain_id,
                              const uint8_t enroller[EHR_SCHNORR_PUBLIC_BYTES],
                              const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES],
                              const uint8_t patient_kx[EHR_KX_PUBLIC_BYTES],
                              uint8_t out[EHR_HASH_BYTES]);

/* May a member of ROLE (or its practitioners) use emergency access, by the
 * chain's genesis policy? SCRATCH has room for EHR_STATE_VALUE_BYTES_MAX.
 * Returns 0 with *ALLOWED, EHR_ECORRUPT when the policy is missing or does
 * not decode (every chain writes it at genesis), or a state error. */
int contracts_emergency_allowed(contracts_block *b, Ehr__V1__MemberRole role, bool *allowed,
                                uint8_t *scratch);

/* Cut the NUL-terminated TEXT, which snprintf may have cut inside a UTF-8
 * sequence, back to the end of its last whole character, so a result's
 * reason is always valid UTF-8 (a protobuf string). */
void contracts_text_cut(char *text);

/* How many members the chain has now. Returns 0 or a state error. */
int contracts_members_count(contracts_block *b, size_t *count);

/* Check a member to admit as genesis checks a founding member. Returns 0,
 * or EHR_EINVAL with DIAG. */
int contracts_member_check(const Ehr__V1__Member *member, ehr_diag *diag);

#endif /* EHR_CONTRACTS_INTERNAL_H */
