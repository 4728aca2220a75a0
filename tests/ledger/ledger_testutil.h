/*
 * ledger_testutil.h - builders the ledger's tests and benchmark share:
 * deterministic keys, genesis documents, signed transactions and blocks.
 *
 * Test code only: these abort on any failure (a builder that fails is a bug
 * in the test, not a case under test).
 */
#ifndef EHR_LEDGER_TESTUTIL_H
#define EHR_LEDGER_TESTUTIL_H

#include "ledger.h"

#define TU_CHAIN_ID "ehr-test-1"
#define TU_GENESIS_TIME_MS 1700000000000ull

/* A valid signing key derived from SEED (the same SEED, the same key). */
void tu_key(ehr_signing_key *key, uint32_t seed);

/* A serialized genesis for TU_CHAIN_ID whose members are KEYS[0..COUNT). */
void tu_genesis(const ehr_signing_key *keys, size_t count, uint8_t **out, size_t *out_len);

/* A serialized TxBody (record anchor) by SIGNER with a random nonce and
 * PAD bytes of encrypted pointer; for CHAIN_ID, expiring at EXPIRY_MS. */
void tu_tx_body(const ehr_signing_key *signer, const char *chain_id, uint64_t expiry_ms, size_t pad,
                uint8_t **out, size_t *out_len);

/* A signed envelope around tu_tx_body; HASH (may be NULL) gets its tx hash. */
void tu_tx(const ehr_signing_key *signer, const char *chain_id, uint64_t expiry_ms, size_t pad,
           uint8_t **out, size_t *out_len, uint8_t hash[EHR_HASH_BYTES]);

/* A batch of COUNT fresh transactions, their hashes, one state write each
 * ("rec/" + tx hash -> 48 bytes) and one result each (the empty one, OK, as
 * the node stores today), ready for a block. */
typedef struct tu_batch {
    size_t count;
    ledger_bytes *envelopes;
    uint8_t (*hashes)[EHR_HASH_BYTES];
    ledger_state_write *writes;
    uint8_t (*keys)[4 + EHR_HASH_BYTES];
    uint8_t value[48];
    ledger_bytes *results;                            /* COUNT of them */
    uint8_t (*result_bytes)[EHR_TX_RESULT_BYTES_MAX]; /* what they point to */
} tu_batch;

void tu_batch_make(tu_batch *b, const ehr_signing_key *signer, size_t count, size_t pad);
void tu_batch_free(tu_batch *b);

/* The result tu_batch_results gives the transaction at INDEX: a serialized
 * TxResult (tx.proto) into OUT, its size returned; 0 (the empty one, OK)
 * for every third index from 0, else a code, a reason naming INDEX and
 * SALT, and gas. Deterministic. */
size_t tu_result(uint8_t out[EHR_TX_RESULT_BYTES_MAX], size_t index, uint32_t salt);

/* Give B's transactions the results tu_result makes with SALT. */
void tu_batch_results(tu_batch *b, uint32_t salt);

/* Build the block that follows TIP with batch B, signed by PROPOSER. */
void tu_block_next(const ledger_tip *tip, const tu_batch *b, const ehr_signing_key *proposer,
                   uint8_t **out, size_t *out_len);

/*
 * Append one block of COUNT fresh transactions (one state write each, the
 * results of tu_batch_results salted with the block's height) on top of L's
 * tip. Returns ledger_append_block's result (DIAG, may be NULL, says why it
 * failed); *HEIGHT gets the height the block was for.
 */
int tu_append(ledger *l, const ehr_signing_key *proposer, size_t count, uint64_t *height,
              ehr_diag *diag);

/*
 * Tamper with a closed ledger through LMDB directly: read the value under
 * KEY in database DB ("blocks", "writes", "meta" in the main environment;
 * "txs", "state", "derived_meta" in the derived one), let EDIT change a
 * copy (it may change *LEN up to 4096 bytes more) and write it back.
 * Returns 0, or the LMDB error (MDB_NOTFOUND if there is no such key).
 */
int tu_raw_edit(const char *dir, const char *db, const void *key, size_t key_len,
                void (*edit)(uint8_t *value, size_t *len, void *ctx), void *ctx);

/* Put VALUE under KEY in database DB of a closed ledger. Returns 0 or the
 * LMDB error. */
int tu_raw_put(const char *dir, const char *db, const void *key, size_t key_len, const void *value,
               size_t len);

/* A fresh temporary directory path (created); caller frees with tu_rmdir. */
char *tu_tmpdir(void);
/* Remove DIR and the files in it, then free the path. */
void tu_rmdir(char *dir);

#endif /* EHR_LEDGER_TESTUTIL_H */
