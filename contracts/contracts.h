/*
 * contracts.h - the home of ehrchain's state transition function: how
 * contracts/ sees the world state, and the writes a block's transactions make
 * to it. Every node applies a committed block's transactions in block order,
 * each seeing the writes of those before it, and hands the block's writes to
 * the ledger in the one durable append that stores the block.
 *
 * This file is the seam, in the way raft_storage is the consensus core's:
 *
 *   1. the caller (the node at apply, `ledger verify` at replay) describes
 *      the world state as committed before the block with a struct
 *      contracts_state: two functions, get and scan by prefix, over
 *      whatever holds it (the ledger's LMDB tables and overlay, or memory
 *      in a test);
 *   2. contracts_block_begin opens the block's write set on it;
 *   3. per transaction: contracts_block_tx_begin, reads and writes through
 *      the block (a read sees the pending writes of the transactions before
 *      it, and of this one so far, before the committed state), then
 *      contracts_block_tx_commit, or contracts_block_tx_abort when the
 *      transaction is refused (it changes nothing);
 *   4. contracts_block_writes gives the block's writes, one per key, sorted
 *      by key, in the ledger's form; contracts_block_end frees it all.
 *
 * contracts/ links neither LMDB, Raft, libuv nor the node: the ledger's
 * formats only (limits, ledger_state_write). Nothing here reads a clock or
 * depends on allocation or hash order, so every node computes the same
 * writes from the same state and transactions.
 *
 * The rules themselves (contracts_apply_tx, rules.c) run through this seam:
 * one transaction at a time, each in its own write-set transaction, giving a
 * result every node computes alike.
 *
 * Ownership: the caller owns the state view and must keep it valid and
 * unchanged from contracts_block_begin to contracts_block_end. The block
 * copies every key and value it is given. Not thread-safe: one thread per
 * block.
 */
#ifndef EHR_CONTRACTS_H
#define EHR_CONTRACTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ehr_crypto.h"
#include "ledger_format.h"

/* ---- limits ---- */

/* A block's write set is bounded as the ledger bounds what one append
 * writes: EHR_BLOCK_STATE_WRITES_MAX keys, EHR_BLOCK_STATE_BYTES_MAX bytes of
 * keys and values. A write past either is refused (EHR_ETOOBIG) and changes
 * nothing; the transaction making it is then refused as a whole. */
enum {
    CONTRACTS_BLOCK_KEYS_MAX = EHR_BLOCK_STATE_WRITES_MAX,
    CONTRACTS_BLOCK_BYTES_MAX = EHR_BLOCK_STATE_BYTES_MAX,
};

/* ---- the world state as committed before the block ---- */

/* Called once per key in ascending byte order; return non-zero to stop
 * (contracts_state.scan then returns that value). VALUE lives for the call. */
typedef int (*contracts_scan_fn)(void *ctx, const uint8_t *key, size_t key_len,
                                 const uint8_t *value, size_t value_len);

struct contracts_state {
    void *ctx;
    /*
     * Copy the value of KEY (1..EHR_STATE_KEY_BYTES_MAX bytes) into VALUE,
     * which has room for EHR_STATE_VALUE_BYTES_MAX bytes, and its length
     * into *LEN. Returns 0, EHR_ENOTFOUND, or a storage error (which the
     * block returns to its caller: a node that cannot read its state stops).
     */
    int (*get)(void *ctx, const uint8_t *key, size_t key_len, uint8_t *value, size_t *len);
    /*
     * Call FN for every key starting with PREFIX (may be empty), in
     * ascending byte order. Returns 0, FN's non-zero value, or a storage
     * error.
     */
    int (*scan)(void *ctx, const uint8_t *prefix, size_t prefix_len, contracts_scan_fn fn,
                void *fn_ctx);
};

/* What a transaction may know of its block, the same on every node. */
struct contracts_block_ctx {
    uint64_t height;
    uint64_t time_ms; /* the block's time: the one clock the rules may read */
    uint8_t proposer[EHR_SCHNORR_PUBLIC_BYTES];
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1]; /* every transaction must name it */
};

/* ---- a block's write set ---- */

typedef struct contracts_block contracts_block;

/* Open a block on STATE (borrowed) with CTX (copied). Returns 0 and *OUT
 * (release with contracts_block_end). Aborts only on out-of-memory. */
int contracts_block_begin(const struct contracts_state *state,
                          const struct contracts_block_ctx *ctx, contracts_block **out);

/* The block's context, as given. */
const struct contracts_block_ctx *contracts_block_context(const contracts_block *b);

/* Start a transaction's writes. Precondition: none in progress. */
void contracts_block_tx_begin(contracts_block *b);
/* Keep the writes made since contracts_block_tx_begin. */
void contracts_block_tx_commit(contracts_block *b);
/* Undo them: the block is as before contracts_block_tx_begin. */
void contracts_block_tx_abort(contracts_block *b);

/*
 * Set KEY to VALUE, or delete KEY, within the transaction in progress.
 * Returns 0; EHR_EINVAL for a key of 0 or over EHR_STATE_KEY_BYTES_MAX
 * bytes or a value over EHR_STATE_VALUE_BYTES_MAX; EHR_ETOOBIG when the
 * block's write set would pass CONTRACTS_BLOCK_KEYS_MAX or
 * CONTRACTS_BLOCK_BYTES_MAX. Nothing changes on error.
 */
int contracts_block_put(contracts_block *b, const uint8_t *key, size_t key_len,
                        const uint8_t *value, size_t value_len);
int contracts_block_delete(contracts_block *b, const uint8_t *key, size_t key_len);

/*
 * Read KEY as the transaction in progress sees it: its own writes and those
 * of the block's earlier transactions first, then the committed state.
 * VALUE has room for EHR_STATE_VALUE_BYTES_MAX bytes. Returns 0 with *LEN,
 * EHR_ENOTFOUND (absent or deleted), or the state's error.
 */
int contracts_block_get(contracts_block *b, const uint8_t *key, size_t key_len, uint8_t *value,
                        size_t *len);

/*
 * Call FN for every key starting with PREFIX as the transaction in progress
 * sees the state (pending writes merged over the committed state, deleted
 * keys left out), in ascending byte order. Returns 0, FN's non-zero value,
 * or the state's error.
 */
int contracts_block_scan(contracts_block *b, const uint8_t *prefix, size_t prefix_len,
                         contracts_scan_fn fn, void *fn_ctx);

/*
 * The block's writes: one per key written (the last write wins; a delete is
 * remove = true), sorted by key, ready for ledger_append. Borrowed until the
 * next change or contracts_block_end. Precondition: no transaction in
 * progress. Returns their count.
 */
size_t contracts_block_writes(contracts_block *b, const ledger_state_write **out);

/* Free the block and everything it copied. Safe on NULL. */
void contracts_block_end(contracts_block *b);

/* ---- the world state's keys ----
 * contracts/README.md, "World state": every key is an ASCII prefix ending in
 * '/', then fixed-size binary parts (32-byte keys and ids, big-endian
 * integers), so that a prefix scan lists one patient's or one grantee's
 * entries in the order the suffix sorts. Values are state.proto messages.
 */

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
#define CONTRACTS_PREFIX_ERASED_RECORDS "erased-records/"     /* + record id: empty */
/* + ciphertext hash: the id of the one record that names it (kept after
 * an erase, so an erased ciphertext is never anchored again). */
#define CONTRACTS_PREFIX_RECORD_BLOB "record-blobs/"

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

/* ---- the rules' limits on payloads (each with a test at its edge) ----
 * Public because a client must respect them too: ehrctl checks a payload it
 * builds against them before it signs, so bad input is refused with a clear
 * message and never reaches a block. */

enum {
    /* A record's encrypted pointer (where the ciphertext lives, sealed). */
    CONTRACTS_POINTER_BYTES_MAX = 1024,
    /* A record's key capsule (the PRE capsule of its data key). */
    CONTRACTS_CAPSULE_BYTES_MAX = 256,
    /* Record types and record ids one consent names (each list). */
    CONTRACTS_SCOPE_COUNT_MAX = 64,
    /* Key fragments one consent carries, and the size of each: a kfrag
     * sealed to one node is 336 bytes (crypto/pre_seal.h,
     * EHR_PRE_SEALED_KFRAG_BYTES; ehrctl and ehrd assert the two agree).
     * The rules keep them opaque: the node each is for opens it. */
    CONTRACTS_KEY_FRAGMENTS_MAX = 16,
    CONTRACTS_KEY_FRAGMENT_BYTES_MAX = 336,
    /* The reason an emergency access states. */
    CONTRACTS_EMERGENCY_REASON_BYTES_MAX = 256,
    /* Members a chain can hold, hence approvals of one proposal. */
    CONTRACTS_MEMBERS_MAX = EHR_GENESIS_MEMBERS_MAX,
    /* Members a running network admits up to: each member runs a node
     * that takes part in consensus, whose configurations hold at most 16
     * (RAFT_MEMBERS_MAX; node/ asserts the two equal). An admission past
     * it is refused when proposed and when approved. */
    CONTRACTS_NODES_MAX = 16,
    /* One access request: the consents of the patient for the requester
     * (and, for a practitioner, its member) it looks at, and the consent-VM
     * gas their policies may use together. Past either, the request is
     * denied with that reason: the cost of applying one request is bounded
     * whatever the patient has granted. */
    CONTRACTS_ACCESS_CONSENTS_MAX = 32,
    CONTRACTS_ACCESS_GAS_MAX = 512,
};

/* ---- the rules: one transaction at a time ---- */

enum {
    CONTRACTS_REASON_BYTES_MAX = 160, /* a result's reason, for a person */
    /* The longest serialized TxResult: code, reason, decision, consent id,
     * gas, with their tags and lengths. */
    CONTRACTS_RESULT_BYTES_MAX = 2 + (3 + CONTRACTS_REASON_BYTES_MAX) + 2 + (2 + 32) + 11,
};

/* What the caller knows of a transaction's signature. */
enum contracts_sig {
    CONTRACTS_SIG_UNCHECKED = 0, /* the rules verify it */
    CONTRACTS_SIG_VALID = 1,     /* verified on these very bytes (a cache, a worker) */
    CONTRACTS_SIG_INVALID = 2,   /* verified and it failed */
};

/* One committed transaction, as its block holds it. All borrowed. */
struct contracts_tx {
    const uint8_t *envelope; /* the serialized TxEnvelope */
    size_t len;
    const uint8_t *hash; /* its id: EHR_HASH_BYTES */
    uint32_t position;   /* its index in the block */
    enum contracts_sig sig;
};

/* What applying a transaction gave: the fields of TxResult (tx.proto). */
struct contracts_tx_result {
    int code;                                    /* Ehr__V1__TxResultCode */
    char reason[CONTRACTS_REASON_BYTES_MAX + 1]; /* "" when OK without a decision to explain */
    int decision;                                /* Ehr__V1__AccessDecision, access only */
    bool has_consent;                            /* consent_id is set */
    uint8_t consent_id[EHR_HASH_BYTES];          /* the consent that permitted */
    uint64_t gas_used;                           /* consent-VM gas its policies used */
};

/*
 * Apply one transaction of the block: check it (envelope, body, chain,
 * expiry at block time, the signature unless TX says it was checked), then
 * its payload's rules (contracts/README.md, "The rules"), and make its state
 * writes in a transaction of B of its own. *RESULT gets the outcome: OK
 * (writes kept) or a refusal code with a reason (no writes kept). A refused
 * transaction is a result, not an error: the block still holds it.
 *
 * Returns 0 with *RESULT filled, or a state error (a node that cannot read
 * its state, or holds a state value that does not decode: EHR_ECORRUPT),
 * after which B holds no writes of this transaction. Precondition: no
 * transaction of B in progress.
 */
int contracts_apply_tx(contracts_block *b, const struct contracts_tx *tx,
                       struct contracts_tx_result *result);

/*
 * The message a patient signs to agree to be enrolled by a member:
 * SHA-256("ehrchain/v1/patient-enroll" || len(chain_id) (1 byte) ||
 * chain_id || enroller node key || patient key || patient kx key). Binding
 * the chain and the enroller keeps a signature from being replayed on
 * another chain or by another member. Clients compute it to co-sign an
 * enrolment (tx.proto, PatientEnroll.patient_signature).
 */
void contracts_enroll_message(const char *chain_id,
                              const uint8_t enroller[EHR_SCHNORR_PUBLIC_BYTES],
                              const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES],
                              const uint8_t patient_kx[EHR_KX_PUBLIC_BYTES],
                              uint8_t out[EHR_HASH_BYTES]);

/* Serialize RESULT as a TxResult (canonical encoding) into OUT, which has
 * room for CONTRACTS_RESULT_BYTES_MAX. Returns the length. */
size_t contracts_tx_result_encode(const struct contracts_tx_result *result, uint8_t *out);

#endif /* EHR_CONTRACTS_H */
