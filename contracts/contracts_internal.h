/*
 * contracts_internal.h - what the transaction rules (rules.c) share with
 * their tests and nothing else: the world state's key layout, the limits
 * the rules place on payloads, and small helpers over a contracts_block.
 *
 * The key layout is public (contracts.h, "The world state's keys"), since
 * the node's queries read it.
 */
#ifndef EHR_CONTRACTS_INTERNAL_H
#define EHR_CONTRACTS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contracts.h"
#include "ehr/v1/tx.pb-c.h"

/* The limits the rules place on payloads are public (contracts.h, "the rules'
 * limits on payloads"): a client checks them before it signs. */

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
