/*
 * ledger_format.h - the ledger's formats, pure: the limits of what a node
 * accepts; transactions (canonical envelope framing, hash, full check,
 * signing); Merkle trees over transaction hashes; blocks (canonical
 * parsing, checks, building and signing); the genesis document and block 0
 * derived from it; the world-state write. No storage, no LMDB: library
 * ehr_ledger_format, which contracts/ links alone and the store (ledger.h,
 * library ehr_ledger) builds on.
 *
 * Errors: 0 on success, a negative EHR_E* code (common.h). Check functions
 * also fill an optional ehr_diag with a sentence a person can act on.
 *
 * Memory: functions that return bytes return an ehr_malloc'd copy the caller
 * frees with ehr_free. Views (ledger_tx_view, ledger_block_view) borrow the
 * bytes they were parsed from; those bytes must outlive the view.
 */
#ifndef EHR_LEDGER_FORMAT_H
#define EHR_LEDGER_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ehr/v1/block.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "ehr_crypto.h"

/* ---- Limits (each checked where input enters, before anything is decoded) ---- */

enum {
    EHR_HASH_BYTES = 32,
    /* A serialized TxBody. */
    EHR_TX_BODY_BYTES_MAX = 64 * 1024,
    /* Envelope framing around the body: two tags, two lengths (the body's
     * takes at most 3 bytes), and the 64-byte signature. */
    EHR_TX_ENVELOPE_OVERHEAD_BYTES = 1 + 3 + 1 + 1 + 64,
    /* A serialized TxEnvelope. */
    EHR_TX_BYTES_MAX = EHR_TX_BODY_BYTES_MAX + EHR_TX_ENVELOPE_OVERHEAD_BYTES,
    EHR_TX_NONCE_BYTES = 16,
    EHR_CHAIN_ID_BYTES_MAX = 64,
    /* Transactions in one block, and a serialized Block's size. */
    EHR_BLOCK_TX_COUNT_MAX = 10000,
    EHR_BLOCK_BYTES_MAX = 8 * 1024 * 1024,
    /* A serialized BlockHeader (a full one is under 200 bytes). */
    EHR_BLOCK_HEADER_BYTES_MAX = 512,
    /* The genesis document and its member list. */
    EHR_GENESIS_BYTES_MAX = 1024 * 1024,
    EHR_GENESIS_MEMBERS_MAX = 256,
    EHR_MEMBER_NAME_BYTES_MAX = 128,
    EHR_PEER_ADDRESS_BYTES_MAX = 256,
    /* World state: one key, one value, and what one block may write. */
    EHR_STATE_KEY_BYTES_MAX = 256,
    EHR_STATE_VALUE_BYTES_MAX = 128 * 1024,
    EHR_BLOCK_STATE_WRITES_MAX = 8 * EHR_BLOCK_TX_COUNT_MAX,
    EHR_BLOCK_STATE_BYTES_MAX = 64 * 1024 * 1024,
    /* A transaction's result: a serialized TxResult (tx.proto) as the
     * consent contract computes it at apply and the ledger stores it (a
     * code, a one-line reason, a decision, a consent id, gas used). The
     * result OK with nothing else is 0 bytes. */
    EHR_TX_RESULT_BYTES_MAX = 256,
    /* Hashes in a Merkle inclusion proof: ceil(log2(EHR_BLOCK_TX_COUNT_MAX)). */
    EHR_MERKLE_PROOF_HASHES_MAX = 14,
};

/* Genesis time in ms since the epoch: within the signed 64-bit range that
 * JSON tools (and jansson's json_int_t) represent exactly. */
#define EHR_GENESIS_TIME_MS_MAX ((uint64_t)INT64_MAX)

_Static_assert((1u << EHR_MERKLE_PROOF_HASHES_MAX) >= EHR_BLOCK_TX_COUNT_MAX,
               "a proof can reach every leaf of the largest block");
_Static_assert(EHR_TX_BODY_BYTES_MAX < (1 << 21), "body length fits a 3-byte varint");
_Static_assert(EHR_STATE_KEY_BYTES_MAX <= 511, "LMDB's default key size limit");

/* A borrowed byte string. */
typedef struct ledger_bytes {
    const uint8_t *data;
    size_t len;
} ledger_bytes;

/* ---- Transactions ---- */

/* The two parts of a canonical TxEnvelope, pointing into its bytes. */
typedef struct ledger_tx_view {
    const uint8_t *body;
    size_t body_len;
    const uint8_t *signature; /* EHR_SCHNORR_SIG_BYTES */
} ledger_tx_view;

/*
 * Parse the framing of a serialized TxEnvelope. The only encoding accepted
 * is the canonical one: field 1 (body, 1..EHR_TX_BODY_BYTES_MAX bytes), then
 * field 2 (signature, exactly 64 bytes), minimal varints, nothing else. So a
 * transaction has one byte form and nobody can re-wrap a signed body.
 * Allocates nothing and does not look inside the body.
 * Returns 0; EHR_ETOOBIG (over EHR_TX_BYTES_MAX), EHR_ETRUNCATED, EHR_EINVAL.
 */
int ledger_tx_envelope_parse(const uint8_t *bytes, size_t len, ledger_tx_view *out, ehr_diag *diag);

/* The transaction hash (its id): SHA-256 of the body bytes. */
void ledger_tx_hash(const uint8_t *body, size_t body_len, uint8_t out[EHR_HASH_BYTES]);

/* What a transaction is checked against. */
typedef struct ledger_tx_rules {
    const char *chain_id; /* required: the body must name this chain */
    uint64_t now_ms;      /* the transaction is expired if now_ms > expiry_ms */
    /* The caller has checked the signature of these very bytes already (a
     * verification cache, a batch on a worker pool): every other check is
     * made, the signature is not verified again. */
    bool signature_checked;
} ledger_tx_rules;

/* A checked transaction. `body` is owned; release with ledger_tx_release. */
typedef struct ledger_tx {
    ledger_tx_view view;
    uint8_t hash[EHR_HASH_BYTES];
    Ehr__V1__TxBody *body;
} ledger_tx;

/*
 * Fully check a serialized TxEnvelope: framing (as ledger_tx_envelope_parse),
 * the body decodes in canonical form with no unknown fields, chain id, a
 * 32-byte signer that is a valid key, a 16-byte nonce, a non-zero expiry not
 * passed, a payload, and the signature over the hash.
 * OUT may be NULL; when given it holds the decoded body (release it).
 * Returns 0; EHR_ETOOBIG, EHR_ETRUNCATED, EHR_EINVAL, EHR_ECHAIN,
 * EHR_EEXPIRED, EHR_EBADSIG. On error OUT holds nothing to release.
 */
int ledger_tx_check(const uint8_t *bytes, size_t len, const ledger_tx_rules *rules, ledger_tx *out,
                    ehr_diag *diag);

void ledger_tx_release(ledger_tx *tx);

/*
 * Sign BODY (a serialized TxBody, at most EHR_TX_BODY_BYTES_MAX bytes) with
 * KEY and write the canonical envelope to *OUT (ehr_malloc'd, caller frees).
 * Does not check the body's contents. Returns 0, EHR_ETOOBIG, EHR_EINVAL.
 */
int ledger_tx_envelope_build(const uint8_t *body, size_t body_len, const ehr_signing_key *key,
                             uint8_t **out, size_t *out_len);

/* ---- Merkle trees over transaction hashes (RFC 6962 shape) ----
 * leaf = SHA-256(0x00 || tx hash), node = SHA-256(0x01 || left || right),
 * the left subtree of n leaves holds the largest power of two below n, and
 * the root of no leaves is SHA-256 of the empty string.
 */

/* The root over COUNT hashes (COUNT <= EHR_BLOCK_TX_COUNT_MAX). Allocates
 * scratch space of COUNT hashes. */
void ledger_merkle_root(const uint8_t (*hashes)[EHR_HASH_BYTES], size_t count,
                        uint8_t root[EHR_HASH_BYTES]);

/*
 * The inclusion proof (audit path, leaf to root) of leaf INDEX among COUNT.
 * Writes *PROOF_COUNT hashes (at most EHR_MERKLE_PROOF_HASHES_MAX) to PROOF.
 * Returns 0, or EHR_EINVAL if INDEX >= COUNT or COUNT is over the limit.
 */
int ledger_merkle_proof(const uint8_t (*hashes)[EHR_HASH_BYTES], size_t count, size_t index,
                        uint8_t proof[EHR_MERKLE_PROOF_HASHES_MAX][EHR_HASH_BYTES],
                        size_t *proof_count);

/*
 * Check that LEAF (a tx hash) is at INDEX of a COUNT-leaf tree with ROOT.
 * Returns 0; EHR_EINVAL for a proof of the wrong shape (INDEX >= COUNT, too
 * many or too few hashes); EHR_ECORRUPT if it does not lead to ROOT.
 */
int ledger_merkle_proof_check(const uint8_t leaf[EHR_HASH_BYTES], size_t index, size_t count,
                              const uint8_t (*proof)[EHR_HASH_BYTES], size_t proof_count,
                              const uint8_t root[EHR_HASH_BYTES]);

/* ---- Blocks ---- */

/* A decoded BlockHeader with its sizes checked. */
typedef struct ledger_block_header {
    uint64_t height;
    uint8_t prev_hash[EHR_HASH_BYTES];
    uint8_t tx_root[EHR_HASH_BYTES];
    uint64_t time_ms;
    uint8_t proposer[EHR_SCHNORR_PUBLIC_BYTES]; /* zero at height 0 */
    uint64_t raft_term;
    uint64_t raft_index;
    uint32_t tx_count;
    uint8_t genesis_hash[EHR_HASH_BYTES]; /* zero above height 0 */
} ledger_block_header;

/* Where a part lies inside the block bytes. */
typedef struct ledger_span {
    uint32_t offset;
    uint32_t length;
} ledger_span;

/* A parsed block, borrowing the bytes it was parsed from. */
typedef struct ledger_block_view {
    const uint8_t *bytes;
    size_t len;
    ledger_block_header header;
    uint8_t hash[EHR_HASH_BYTES]; /* SHA-256 of the header bytes */
    ledger_span header_span;
    const uint8_t *signature; /* 64 bytes; NULL at height 0 */
    ledger_span *txs;         /* envelope spans, header.tx_count of them; owned */
    ledger_span genesis;      /* length 0 above height 0 */
} ledger_block_view;

/*
 * Parse a serialized Block: size limits, canonical framing (fields 1-4 in
 * order, minimal varints, nothing unknown), each envelope's framing, the
 * header decoded canonically with the sizes and the height-0 rules of
 * block.proto, tx_count equal to the envelopes present, and at height 0 the
 * genesis document valid and matching genesis_hash. Computes the block hash.
 * Checks no signature and no Merkle root (ledger_block_check does).
 * Returns 0 (release OUT with ledger_block_view_release); EHR_ETOOBIG,
 * EHR_ETRUNCATED, EHR_EINVAL. On error OUT holds nothing to release.
 */
int ledger_block_parse(const uint8_t *bytes, size_t len, ledger_block_view *out, ehr_diag *diag);

void ledger_block_view_release(ledger_block_view *view);

enum ledger_block_check_flags {
    LEDGER_CHECK_MERKLE = 1u << 0,     /* tx hashes and the Merkle root */
    LEDGER_CHECK_HEADER_SIG = 1u << 1, /* the proposer's signature (height > 0) */
    LEDGER_CHECK_TXS = 1u << 2,        /* every tx: ledger_tx_check at block time */
    LEDGER_CHECK_ALL = 7u,
};

/*
 * Check a parsed block. With LEDGER_CHECK_TXS, CHAIN_ID is required
 * and each transaction is checked against the block time. TX_HASHES, if not
 * NULL, receives the tx_count transaction hashes (computed when MERKLE or
 * TXS is asked). FAILED_TX (may be NULL) gets the failing transaction, or -1.
 * Returns 0; EHR_ECORRUPT (Merkle root), EHR_EBADSIG (header or a tx
 * signature: a tx's when *FAILED_TX >= 0), or a ledger_tx_check error.
 */
int ledger_block_check(const ledger_block_view *view, unsigned flags, const char *chain_id,
                       uint8_t (*tx_hashes)[EHR_HASH_BYTES], long *failed_tx, ehr_diag *diag);

/* What the proposer puts in a header besides the transactions. */
typedef struct ledger_block_params {
    uint64_t height; /* > 0 */
    uint8_t prev_hash[EHR_HASH_BYTES];
    uint64_t time_ms;
    uint64_t raft_term;
    uint64_t raft_index;
} ledger_block_params;

/*
 * Build and sign a block of COUNT envelopes (each must pass
 * ledger_tx_envelope_parse; their contents are the caller's business).
 * TX_HASHES may be NULL (then computed) or hold the COUNT hashes the caller
 * already has. Writes the canonical Block to *OUT (ehr_malloc'd) and, when
 * OUT_HASH is not NULL, its hash there (the builder knows it: a caller need
 * not parse the block back to learn it).
 * Returns 0; EHR_EINVAL, EHR_ETOOBIG (count or size over a limit).
 */
int ledger_block_build(const ledger_block_params *params, const ledger_bytes *envelopes,
                       size_t count, const uint8_t (*tx_hashes)[EHR_HASH_BYTES],
                       const ehr_signing_key *proposer, uint8_t **out, size_t *out_len,
                       uint8_t out_hash[EHR_HASH_BYTES], ehr_diag *diag);

/* ---- Genesis ---- */

/*
 * The genesis rules, the one set every tool applies (ehrctl genesis checks
 * members with these same functions before it writes a file):
 * - chain id: 1..EHR_CHAIN_ID_BYTES_MAX characters from [A-Za-z0-9._-];
 * - a non-zero time, 1..EHR_GENESIS_MEMBERS_MAX members;
 * - each member: a name of 1..EHR_MEMBER_NAME_BYTES_MAX bytes of UTF-8
 *   without control characters, a known role, a valid BIP-340 node key, a
 *   valid X25519 kx key (not zero or another point of small order), and a
 *   peer address HOST:PORT of at most EHR_PEER_ADDRESS_BYTES_MAX bytes (HOST
 *   a DNS name, an IPv4 address or an [IPv6] address; PORT 1..65535 without
 *   a leading zero);
 * - no two members with the same name, node key, kx key or address.
 * Messages name the member by position from 1 (and name) and the field, as
 * `member 2 ("Lab"): kx_key: not a valid X25519 public key (32 bytes)`.
 */

/* Check a chain id. Returns 0 or EHR_EINVAL (reason in DIAG, may be NULL). */
int ledger_chain_id_check(const char *chain_id, ehr_diag *diag);

/*
 * Check one member's fields (not whether another member has the same ones).
 * Returns 0 or EHR_EINVAL with `FIELD: reason` in DIAG (may be NULL).
 */
int ledger_genesis_member_check(const Ehr__V1__Member *member, ehr_diag *diag);

/*
 * Decode and validate a serialized Genesis: at most EHR_GENESIS_BYTES_MAX
 * bytes, canonical encoding, and the rules above. *OUT (may be NULL) gets
 * the decoded document; free it with ehr__v1__genesis__free_unpacked(*OUT,
 * NULL). Returns 0; EHR_ETOOBIG, EHR_EINVAL.
 */
int ledger_genesis_parse(const uint8_t *bytes, size_t len, Ehr__V1__Genesis **out, ehr_diag *diag);

/*
 * Validate GENESIS and serialize it (what `ehrctl genesis` writes). Writes
 * *OUT (ehr_malloc'd). Returns 0, or a ledger_genesis_parse error.
 */
int ledger_genesis_encode(const Ehr__V1__Genesis *genesis, uint8_t **out, size_t *out_len,
                          ehr_diag *diag);

/*
 * Derive block 0 from a serialized genesis document. Deterministic: the
 * header and block are protobuf-c's serialization of structs filled only
 * from the document, and protobuf-c writes fields in field-number order, so
 * every node derives the same bytes. Writes *OUT (ehr_malloc'd).
 * Returns 0, or a ledger_genesis_parse error.
 */
int ledger_genesis_block_build(const uint8_t *genesis, size_t len, uint8_t **out, size_t *out_len,
                               ehr_diag *diag);

/* True if S is 1..MAX bytes of valid UTF-8 (no overlong form, surrogate or
 * code point past U+10FFFF) without control characters (C0, DEL, C1): text
 * a signer chose (a member's name, a stated reason) that is safe to print on
 * a terminal, to put in JSON and to decode as a protobuf string anywhere. */
bool ledger_text_ok(const char *s, size_t max);

/* World-state key of a member: "member/" followed by its 32-byte node key;
 * the value is the serialized Member. */
#define LEDGER_MEMBER_KEY_PREFIX "member/"
enum { LEDGER_MEMBER_KEY_BYTES = 7 + EHR_SCHNORR_PUBLIC_BYTES };
void ledger_member_key(uint8_t out[LEDGER_MEMBER_KEY_BYTES],
                       const uint8_t node_key[EHR_SCHNORR_PUBLIC_BYTES]);

/* World-state key of the chain's emergency-access policy, written at
 * genesis: the serialized EmergencyPolicy (empty when the genesis names
 * none). A string literal: it sorts before LEDGER_MEMBER_KEY_PREFIX. */
#define LEDGER_EMERGENCY_KEY "chain/emergency"

/* ---- World-state writes ---- */

/* One world-state write: set KEY to VALUE, or delete KEY. */
typedef struct ledger_state_write {
    const uint8_t *key;
    size_t key_len; /* 1..EHR_STATE_KEY_BYTES_MAX */
    const uint8_t *value;
    size_t value_len; /* 0..EHR_STATE_VALUE_BYTES_MAX */
    bool remove;
} ledger_state_write;

#endif /* EHR_LEDGER_FORMAT_H */
