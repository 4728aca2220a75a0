/*
 * sigverify.h - transaction signature verdicts for the apply path, so that
 * every node checks every signature it applies without the event loop
 * verifying a block's signatures one after the other.
 *
 * Three ways a verdict is known before a block is applied:
 *   1. admission: the leader verified each transaction it admitted to its
 *      mempool (on libuv's pool) and notes the verdict (sigverify_note);
 *   2. arrival: a follower hands every block entry it receives to
 *      sigverify_prefetch, which verifies its transactions on this module's
 *      threads while the entry waits to be committed;
 *   3. apply: sigverify_batch gives the verdicts of a block's transactions,
 *      verifying what is still unknown on the worker threads and the
 *      calling thread together, and returns when all are known.
 *
 * A verdict is about exact bytes: the key is the transaction hash (SHA-256
 * of the body) and the 64 signature bytes, so a body re-signed with another
 * signature is another entry. The cache is 4-way set-associative and
 * lossy: an entry evicted is verified again, never trusted without a check.
 *
 * Only the signature is judged: a transaction that fails another check
 * (framing, chain, fields) gets no verdict, and the rules refuse it on their
 * own. Thread-safe: every function may be called from any thread; the
 * threads are this module's own (not libuv's pool, whose queue the
 * submissions use).
 */
#ifndef EHR_NODE_SIGVERIFY_H
#define EHR_NODE_SIGVERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contracts.h"
#include "ledger_format.h"

enum {
    SIGVERIFY_CACHE_SLOTS = 1 << 16, /* verdicts kept (about 100 bytes each) */
    SIGVERIFY_CACHE_WAYS = 4,        /* slots a verdict may take in its set */
    SIGVERIFY_THREADS_MAX = 16,      /* worker threads */
    SIGVERIFY_PREFETCH_MAX = 32,     /* blocks queued for background checks */
};
_Static_assert((SIGVERIFY_CACHE_SLOTS & (SIGVERIFY_CACHE_SLOTS - 1)) == 0, "a power of two");

struct sigverify;

/* Start THREADS worker threads (0..SIGVERIFY_THREADS_MAX; 0: everything
 * runs on the calling thread and prefetching is off) for chain CHAIN_ID
 * (copied). Returns 0 or an error from pthread_create (nothing started). */
int sigverify_create(const char *chain_id, unsigned threads, struct sigverify **out);

/* Stop the threads (a prefetch under way is finished first) and free all.
 * Safe on NULL. */
void sigverify_destroy(struct sigverify *sv);

/* The number of worker threads the machine suggests: its cores, less one
 * for the loop, at least 1, at most SIGVERIFY_THREADS_MAX. */
unsigned sigverify_threads_default(void);

/* Record that the transaction with body hash HASH and signature SIG
 * verified (VALID) or not. */
void sigverify_note(struct sigverify *sv, const uint8_t hash[EHR_HASH_BYTES],
                    const uint8_t sig[EHR_SCHNORR_SIG_BYTES], bool valid);

/* The verdict known for these bytes: CONTRACTS_SIG_VALID, _INVALID, or
 * _UNCHECKED. */
enum contracts_sig sigverify_lookup(struct sigverify *sv, const uint8_t hash[EHR_HASH_BYTES],
                                    const uint8_t sig[EHR_SCHNORR_SIG_BYTES]);

/* Verify the transactions of the serialized block BLOCK (copied) in the
 * background. Returns 0; EHR_EAGAIN when SIGVERIFY_PREFETCH_MAX blocks are
 * queued already or there are no threads (then nothing is queued: apply
 * verifies what it must); EHR_EINVAL for bytes that are not a block. */
int sigverify_prefetch(struct sigverify *sv, const uint8_t *block, size_t len);

/* One transaction of a block being applied: its envelope and body hash. */
struct sigverify_item {
    const uint8_t *envelope;
    size_t len;
    const uint8_t *hash; /* EHR_HASH_BYTES */
};

/* Fill OUT[i] with the verdict of ITEMS[i] for each of the COUNT items:
 * from the cache, the rest verified now, in parallel on the workers and the
 * calling thread. A transaction that fails a check other than its
 * signature is CONTRACTS_SIG_UNCHECKED (the rules refuse it). */
void sigverify_batch(struct sigverify *sv, const struct sigverify_item *items, size_t count,
                     enum contracts_sig *out);

/* Counters, for status and tests. */
struct sigverify_stats {
    uint64_t hits;       /* verdicts found in the cache by sigverify_batch */
    uint64_t verified;   /* signatures checked by this module */
    uint64_t prefetched; /* blocks checked in the background */
    uint64_t dropped;    /* prefetches refused (queue full) */
};
void sigverify_stats_get(struct sigverify *sv, struct sigverify_stats *out);

#endif /* EHR_NODE_SIGVERIFY_H */
