/*
 * world.h - a chain's world state in memory for the rules' tests, fuzz
 * target and benchmark: a sorted map behind struct contracts_state, members
 * written as genesis writes them, transactions built and signed as a client
 * would, and blocks applied through contracts_apply_tx with their writes
 * folded back into the map. No ledger, no LMDB.
 */
#ifndef EHR_TESTS_CONTRACTS_WORLD_H
#define EHR_TESTS_CONTRACTS_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contracts.h"
#include "ehr/v1/state.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "ehr_crypto.h"

#define WORLD_CHAIN_ID "ehr-test-1"
#define WORLD_GENESIS_MS ((uint64_t)1767225600000) /* 2026-01-01 */
#define WORLD_DAY_MS ((uint64_t)86400000)

/* Someone who signs: a member's node, a practitioner, a patient. */
struct party {
    ehr_signing_key sig;
    ehr_kx_key kx;
};

/* A party derived from SEED alone (the same keys in every run). */
void party_make(struct party *p, uint32_t seed);

struct world;

/* A world with no members and the emergency policy EMERGENCY_ROLES
 * (COUNT roles; 0: nobody may use emergency access). */
struct world *world_new(const Ehr__V1__MemberRole *emergency_roles, size_t count);
void world_free(struct world *w);

/* Write P as a member with ROLE, as genesis does (no transaction). */
void world_member_add(struct world *w, const struct party *p, Ehr__V1__MemberRole role);

/* The state view over W's committed map. */
struct contracts_state world_view(struct world *w);

/* A signed transaction. */
struct tx {
    uint8_t *envelope;
    size_t len;
    uint8_t hash[EHR_HASH_BYTES];
};
void tx_free(struct tx *t);

/* Sign BODY (chain id, signer, nonce and expiry filled here from SIGNER and
 * a counter) into *OUT. */
void tx_sign(struct world *w, const struct party *signer, Ehr__V1__TxBody *body, struct tx *out);

/* Builders for each payload, signed by the party that would sign it. */
void tx_enroll(struct world *w, const struct party *member, const struct party *patient,
               struct tx *out);
void tx_practitioner(struct world *w, const struct party *member, const struct party *practitioner,
                     bool add, struct tx *out);
void tx_anchor(struct world *w, const struct party *member, const struct party *patient,
               Ehr__V1__RecordType type, const uint8_t *supersedes, struct tx *out);

struct grant {
    const uint8_t *grantee; /* 32-byte key */
    const Ehr__V1__RecordType *types;
    size_t n_types;
    const uint8_t (*ids)[EHR_HASH_BYTES];
    size_t n_ids;
    Ehr__V1__Purpose purpose;
    uint64_t from_ms, until_ms;
    const uint8_t *policy;
    size_t policy_len;
    size_t n_fragments; /* key fragments of FRAGMENT_LEN bytes each */
    size_t fragment_len;
    /* The grant's delegating_key: by default a valid key with fragments
     * and none without. */
    enum {
        GRANT_DELEGATING_DEFAULT,
        GRANT_DELEGATING_NONE,
        GRANT_DELEGATING_INVALID,
        GRANT_DELEGATING_SHORT,
        GRANT_DELEGATING_VALID
    } delegating;
};
void tx_grant(struct world *w, const struct party *patient, const struct grant *g, struct tx *out);
void tx_revoke(struct world *w, const struct party *patient, const uint8_t grant_id[EHR_HASH_BYTES],
               struct tx *out);
void tx_access(struct world *w, const struct party *requester,
               const uint8_t record_id[EHR_HASH_BYTES], Ehr__V1__Purpose purpose, struct tx *out);
/* A RecordErase of RECORD_ID (RECORD_ID_LEN bytes) on GROUND, signed by SIGNER. */
void tx_erase(struct world *w, const struct party *signer, const uint8_t *record_id,
              size_t record_id_len, Ehr__V1__EraseGround ground, struct tx *out);
void tx_emergency(struct world *w, const struct party *requester,
                  const uint8_t record_id[EHR_HASH_BYTES], const char *reason, struct tx *out);
void tx_propose_admit(struct world *w, const struct party *member, const struct party *newcomer,
                      Ehr__V1__MemberRole role, uint64_t expires_ms, struct tx *out);
void tx_propose_remove(struct world *w, const struct party *member, const uint8_t *node_key,
                       uint64_t expires_ms, struct tx *out);
void tx_approve(struct world *w, const struct party *member,
                const uint8_t proposal_id[EHR_HASH_BYTES], struct tx *out);

/*
 * Apply a block of COUNT transactions at TIME_MS (height: one more than the
 * last block), fill RESULTS (COUNT), fold its writes into the map. Returns
 * 0 or the first contracts_apply_tx error (then the map is unchanged).
 * SIGS (may be NULL: all unchecked) says what the caller knows of each
 * signature.
 */
int world_block(struct world *w, uint64_t time_ms, const struct tx *txs, size_t count,
                const enum contracts_sig *sigs, struct contracts_tx_result *results);

/*
 * The same in two halves, for a caller that applies the transactions itself
 * (the fuzz target checks the write set between them; the benchmark times
 * the applies alone): world_block_open opens the next block at TIME_MS over
 * W's map (release it only with world_block_close, which folds its writes
 * into the map, ends it and counts the block). No other block of W may be
 * open in between.
 */
contracts_block *world_block_open(struct world *w, uint64_t time_ms);
void world_block_close(struct world *w, contracts_block *b);

/* One transaction alone in a block at TIME_MS; returns its result code
 * (asserting the apply itself succeeded) and fills *R if not NULL. */
int world_one(struct world *w, uint64_t time_ms, const struct tx *t, struct contracts_tx_result *r);

/* Read KEY from the committed map: the value's bytes (borrowed until the
 * next block) or NULL. */
const uint8_t *world_get(struct world *w, const uint8_t *key, size_t key_len, size_t *len);

/* Every key starting with PREFIX, in order, with its value (borrowed). */
size_t world_scan(struct world *w, const uint8_t *prefix, size_t prefix_len,
                  void (*fn)(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                             size_t value_len),
                  void *ctx);

/* The patient's audit trail, decoded, in key order (the caller frees each
 * with ehr__v1__audit_event__free_unpacked and the array with free). */
size_t world_audit(struct world *w, const uint8_t patient[32], bool emergency_only,
                   Ehr__V1__AuditEvent ***out);

/* A digest of the whole map (keys and values), to compare worlds. */
void world_digest(struct world *w, uint8_t out[EHR_HASH_BYTES]);

/* The height of the last block applied (0: none). */
uint64_t world_height(const struct world *w);

/* How many keys the map holds. */
size_t world_size(const struct world *w);

#endif /* EHR_TESTS_CONTRACTS_WORLD_H */
