/*
 * mempool.h - the node's pool of admitted transactions waiting for a block:
 * admission (every check a transaction must pass before a node accepts it),
 * bounded storage in admission order, batches for block proposals, and
 * removal of what committed or expired.
 *
 * Not here: forwarding to the leader, the gRPC mapping of the results (see
 * proto/ehr/v1/node.proto), the ledger itself (duplicates on the ledger are
 * found through a lookup the caller provides; mempool_ledger_lookup is the
 * one backed by ledger_tx_get).
 *
 * Model: the caller owns the `mempool` struct (e.g. inside its node
 * struct); mempool_init allocates the slot array and hash table for the
 * configured count up front, so admission allocates only the copy of the
 * envelope. No global state. Not thread-safe: one thread (the node's loop)
 * calls everything.
 *
 * Invariants (checked by mempool_check_invariants, which the tests call
 * after every step):
 *   1. count <= tx_count_max and bytes <= bytes_max, and they equal the
 *      number and total envelope length of the entries in the two lists.
 *   2. Every entry is in exactly one of the lists `pending` (not yet handed
 *      to a proposal) and `proposed` (handed out by mempool_batch_take), and
 *      in the hash table under its tx hash; nothing else is in the table.
 *   3. `proposed` followed by `pending` is in admission order.
 *   4. Every entry passed ledger_tx_check (signature included) exactly once,
 *      at admission, and its stored hash is SHA-256 of its body.
 */
#ifndef EHR_MEMPOOL_H
#define EHR_MEMPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger.h"

/* ---- Limits ---- */

/* Transactions held: the default, and the range a config may set. */
#define MEMPOOL_TX_COUNT_DEFAULT 50000u
#define MEMPOOL_TX_COUNT_MIN 1u
#define MEMPOOL_TX_COUNT_MAX (1u << 20)
/* Envelope bytes held: the default, and the range a config may set. The
 * minimum lets an empty pool take the largest valid transaction. */
#define MEMPOOL_BYTES_DEFAULT (128ull << 20)
#define MEMPOOL_BYTES_MIN ((uint64_t)EHR_TX_BYTES_MAX)
#define MEMPOOL_BYTES_MAX (4ull << 30)
/* Clock skew tolerated between this node and the block time a transaction
 * will be checked against: a transaction expiring within this many ms of
 * now is refused at admission, since a block built a moment later (or by a
 * leader whose clock is ahead) could no longer include it. */
#define MEMPOOL_CLOCK_SKEW_MS 2000u
enum { MEMPOOL_REASON_BYTES_MAX = EHR_DIAG_BYTES_MAX };

/* ---- Types ---- */

/*
 * Is the transaction with HASH on the ledger? Returns 1 if it is, 0 if not,
 * or a negative error (then admission fails with that error).
 */
typedef int (*mempool_ledger_lookup_fn)(void *ctx, const uint8_t hash[EHR_HASH_BYTES]);

/* The lookup backed by a real ledger: CTX is a `ledger *`. ledger_tx_get's
 * EHR_ENOTFOUND becomes 0, success 1, any other error is returned. */
int mempool_ledger_lookup(void *ctx, const uint8_t hash[EHR_HASH_BYTES]);

typedef struct mempool_config {
    /* The chain transactions must name (Genesis.chain_id), 1..
     * EHR_CHAIN_ID_BYTES_MAX bytes; copied. */
    const char *chain_id;
    /* 0 for MEMPOOL_TX_COUNT_DEFAULT, else MEMPOOL_TX_COUNT_MIN..MAX. */
    uint32_t tx_count_max;
    /* 0 for MEMPOOL_BYTES_DEFAULT, else MEMPOOL_BYTES_MIN..MAX. */
    uint64_t bytes_max;
    /* Required: finds transactions already on the ledger. */
    mempool_ledger_lookup_fn ledger_lookup;
    void *ledger_lookup_ctx;
} mempool_config;

/* Why a transaction was or was not admitted. Each refusal has its own value
 * (the returned error code groups them: see mempool_admit). */
enum mempool_verdict {
    MEMPOOL_ADMITTED = 0,
    MEMPOOL_REJECT_TOO_BIG,          /* EHR_ETOOBIG: over EHR_TX_BYTES_MAX */
    MEMPOOL_REJECT_MALFORMED,        /* EHR_EINVAL / EHR_ETRUNCATED: not canonical, bad fields */
    MEMPOOL_REJECT_CHAIN,            /* EHR_ECHAIN: for another chain */
    MEMPOOL_REJECT_EXPIRED,          /* EHR_EEXPIRED: expiry already passed */
    MEMPOOL_REJECT_EXPIRING,         /* EHR_EEXPIRED: expires within MEMPOOL_CLOCK_SKEW_MS */
    MEMPOOL_REJECT_SIGNATURE,        /* EHR_EBADSIG */
    MEMPOOL_REJECT_DUPLICATE_POOL,   /* EHR_EEXIST: the same hash is in the pool */
    MEMPOOL_REJECT_DUPLICATE_LEDGER, /* EHR_EEXIST: the same hash is on the ledger */
    MEMPOOL_REJECT_FULL_COUNT,       /* EHR_EFULL: tx_count_max reached */
    MEMPOOL_REJECT_FULL_BYTES,       /* EHR_EFULL: bytes_max would be exceeded */
    MEMPOOL_REJECT_LOOKUP,           /* the ledger lookup failed (its error) */
    MEMPOOL_VERDICT_COUNT_,
};

/* A stable name for VERDICT ("admitted", "duplicate-pool", ...) for logs and
 * --json. Never NULL. */
const char *mempool_verdict_name(enum mempool_verdict verdict);

typedef struct mempool_admit_result {
    enum mempool_verdict verdict;
    /* The tx hash, once the envelope's framing parsed (else all zero). */
    uint8_t hash[EHR_HASH_BYTES];
    bool hash_known;
    /* One line a person can act on ("" when admitted). */
    char reason[MEMPOOL_REASON_BYTES_MAX];
} mempool_admit_result;

/* An admitted transaction. Private to mempool.c; here for the sizes. */
typedef struct mempool_entry {
    uint8_t hash[EHR_HASH_BYTES];
    uint8_t *envelope; /* ehr_malloc'd copy; NULL when the slot is free */
    uint32_t envelope_len;
    uint32_t prev, next; /* list links (slot indexes), MEMPOOL__NIL at the ends */
    uint64_t expiry_ms;
    uint64_t sequence; /* admission order */
    bool proposed;
} mempool_entry;

typedef struct mempool_list {
    uint32_t head, tail;
    uint32_t count;
} mempool_list;

/* The pool. Caller-owned; every field is private (read it through the
 * functions below). */
typedef struct mempool {
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1];
    uint32_t tx_count_max;
    uint64_t bytes_max;
    mempool_ledger_lookup_fn ledger_lookup;
    void *ledger_lookup_ctx;

    mempool_entry *slots; /* tx_count_max of them */
    uint32_t free_head;   /* free slots, linked through `next` */
    mempool_list pending, proposed;
    uint64_t bytes;
    uint64_t sequence_next;
    uint64_t expiry_min_ms; /* no entry expires before this (a lower bound) */

    uint32_t *table; /* open addressing, linear probing: slot index + 1, 0 empty */
    uint32_t table_mask;
    uint8_t table_key[16]; /* SipHash key, random per pool */
} mempool;

/* ---- Functions ---- */

/*
 * Set up POOL (caller-owned, contents undefined before) from CONFIG.
 * Allocates the slot array and the hash table (abort on out-of-memory, as
 * ehr_malloc). Returns 0; EHR_EINVAL (a limit out of range, no chain id or
 * lookup; POOL then holds nothing to destroy).
 */
int mempool_init(mempool *pool, const mempool_config *config);

/* Free every held transaction and the tables. POOL may be re-initialised. */
void mempool_destroy(mempool *pool);

/*
 * Admit the serialized TxEnvelope BYTES[0..LEN) at wall-clock time NOW_MS.
 * Checks in this order, cheapest first, so that a resubmission or a full
 * pool costs no signature verification: size and envelope framing; the hash
 * is not in the pool; not on the ledger; the pool has room by count and by
 * bytes; then ledger_tx_check (canonical body, chain id, expiry against
 * NOW_MS, signature); last, the expiry is more than MEMPOOL_CLOCK_SKEW_MS
 * after NOW_MS. On success the pool keeps its own copy of the bytes at the
 * back of the FIFO. RESULT (required) gets the verdict, the hash and the
 * reason.
 * Returns 0; EHR_ETOOBIG, EHR_EINVAL, EHR_ETRUNCATED, EHR_ECHAIN,
 * EHR_EEXPIRED, EHR_EBADSIG, EHR_EEXIST (duplicate), EHR_EFULL, or the
 * lookup's error. On error the pool is unchanged.
 */
int mempool_admit(mempool *pool, const uint8_t *bytes, size_t len, uint64_t now_ms,
                  mempool_admit_result *result);

/*
 * Admission in steps, for a caller that verifies signatures off its loop
 * thread (the leader does, on a worker pool):
 *   mempool_admit_begin   the cheap checks of mempool_admit, in its order
 *                         (framing, duplicate in the pool and on the ledger,
 *                         room); nothing changes; RESULT as mempool_admit's.
 *   mempool_tx_verify     ledger_tx_check at NOW_MS against CHAIN_ID into
 *                         *OUT: touches no pool, safe on any thread.
 *   mempool_admit_finish  on the pool's thread: the cheap checks again (the
 *                         pool or the ledger may have changed meanwhile: a
 *                         copy admitted in between is a duplicate now), then
 *                         VERIFIED's verdict for these very bytes, the
 *                         expiry against the skew tolerance, and insertion.
 * mempool_admit is begin + verify + finish. Each returns as mempool_admit
 * (mempool_tx_verify: ledger_tx_check's error, with OUT->reason).
 */
typedef struct mempool_verified {
    int err; /* ledger_tx_check's result */
    uint8_t hash[EHR_HASH_BYTES];
    uint64_t expiry_ms;
    uint64_t now_ms; /* the time it was checked at */
    char reason[MEMPOOL_REASON_BYTES_MAX];
} mempool_verified;

int mempool_admit_begin(mempool *pool, const uint8_t *bytes, size_t len,
                        mempool_admit_result *result);
int mempool_tx_verify(const char *chain_id, const uint8_t *bytes, size_t len, uint64_t now_ms,
                      mempool_verified *out);
int mempool_admit_finish(mempool *pool, const uint8_t *bytes, size_t len,
                         const mempool_verified *verified, mempool_admit_result *result);

/* The chain id the pool admits for (what mempool_tx_verify needs). */
const char *mempool_chain_id(const mempool *pool);

/* A batch handed out for a block proposal. */
typedef struct mempool_batch {
    /* Caller-provided arrays of capacity `capacity`: envelopes borrow the
     * pool's bytes (valid until those transactions leave the pool:
     * mempool_remove_committed, mempool_expire, mempool_destroy); hashes are
     * copies, ready for ledger_block_build and ledger_append. */
    ledger_bytes *envelopes;
    uint8_t (*hashes)[EHR_HASH_BYTES];
    size_t capacity;
    /* Filled by mempool_batch_take. */
    size_t count;
    uint64_t bytes;
} mempool_batch;

/*
 * Hand out the oldest pending transactions, in admission order, at most
 * COUNT_MAX of them (and at most BATCH->capacity) and at most BYTES_MAX
 * envelope bytes in total; stops at the first that does not fit, so order
 * is kept. They move to the proposed list: they stay in the pool (still
 * counted, still duplicates) and are not handed out again until
 * mempool_proposed_requeue. Call mempool_expire with the block's time first.
 * Returns the number handed out (BATCH->count; 0 if nothing is pending or
 * the oldest does not fit).
 */
size_t mempool_batch_take(mempool *pool, size_t count_max, uint64_t bytes_max,
                          mempool_batch *batch);

/*
 * Put every proposed transaction back in front of the pending ones, in
 * admission order (a proposal failed or leadership was lost). Returns the
 * number put back.
 */
size_t mempool_proposed_requeue(mempool *pool);

/*
 * Drop the transactions of a committed block: each of HASHES[0..COUNT) that
 * is in the pool (pending or proposed) leaves it; hashes the pool does not
 * hold are ignored. Returns the number removed.
 */
size_t mempool_remove_committed(mempool *pool, const uint8_t (*hashes)[EHR_HASH_BYTES],
                                size_t count);

/*
 * Drop every transaction a block with time BLOCK_TIME_MS may not include
 * (expiry_ms < BLOCK_TIME_MS, the ledger's rule), pending or proposed.
 * O(1) when nothing can have expired, else one pass over the pool.
 * Returns the number removed.
 */
size_t mempool_expire(mempool *pool, uint64_t block_time_ms);

/* Is the transaction with HASH in the pool? */
bool mempool_contains(const mempool *pool, const uint8_t hash[EHR_HASH_BYTES]);

/* Transactions held (pending + proposed), and their envelope bytes. */
size_t mempool_count(const mempool *pool);
uint64_t mempool_bytes(const mempool *pool);
/* Transactions not yet handed to a proposal. */
size_t mempool_pending_count(const mempool *pool);

/*
 * Check invariants 1-3 by walking everything (O(pool)): for tests and
 * debug builds. Returns 0, or EHR_ECORRUPT with a reason in MSG (may be
 * NULL; MEMPOOL_REASON_BYTES_MAX bytes).
 */
int mempool_check_invariants(const mempool *pool, char *msg);

#endif /* EHR_MEMPOOL_H */
