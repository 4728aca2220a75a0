/*
 * blob_replica.h - the pure parts of blob replication (replication.c,
 * node/README.md "Blob replication"): which members' nodes hold a
 * record's ciphertext, whether a piece received from a peer is the one
 * asked for, and the queue of records waiting for a fetch. No I/O, no
 * loop, no node: tested alone (tests/node/test_replication.c) and fuzzed
 * (tests/fuzz/blob_chunk). Internal to node/ (node__ prefix).
 */
#ifndef EHR_NODE_BLOB_REPLICA_H
#define EHR_NODE_BLOB_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blobs.h"
#include "common.h"
#include "ehr/v1/p2p.pb-c.h"
#include "ehr_crypto.h"

/* How many members' nodes hold each record's ciphertext: the custodian's
 * and the others the rendezvous choice ranks first (all of them when the
 * chain has fewer members). */
enum { NODE_BLOB_COPIES = 3 };
/* A piece of a blob on a peer link: one BlobChunk's data, exactly this many
 * bytes unless it ends the blob. */
#define NODE_BLOB_REPLICA_CHUNK_BYTES (256u * 1024)
enum {
    /* Records waiting for a fetch (the apply trigger and the repair scan
     * fill it; a full queue is caught up by the next pass). */
    NODE_BLOB_QUEUE_MAX = 256,
    /* Members the replica choice ranks at most (p2p's member bound). */
    NODE_BLOB_REPLICA_MEMBERS_MAX = 256,
};

/* Record ids are transaction hashes (SHA-256). */

/* A FIFO of record ids without duplicates, at most NODE_BLOB_QUEUE_MAX. */
struct node__blob_queue {
    uint8_t ids[NODE_BLOB_QUEUE_MAX][EHR_SHA256_BYTES];
    size_t head;
    size_t count;
};
/* Push ID: 0; EHR_EEXIST (queued already: nothing changes); EHR_EFULL. */
int node__blob_queue_push(struct node__blob_queue *q, const uint8_t id[EHR_SHA256_BYTES]);
/* Pop the oldest into ID: 0, or EHR_ENOTFOUND when empty. */
int node__blob_queue_pop(struct node__blob_queue *q, uint8_t id[EHR_SHA256_BYTES]);

/*
 * The replica set of record RECORD_ID: indices into KEYS (COUNT member
 * node keys, at most NODE_BLOB_REPLICA_MEMBERS_MAX) of the members that
 * should hold its ciphertext, in OUT (room for COPIES), the count
 * returned. The custodian first when it is among KEYS, then the others by
 * descending SHA-256("ehrchain/blob-replica/v1" || record id || node key),
 * until COPIES in all or every member. A pure function: every node
 * computes the same set from the same committed members.
 */
size_t node__blob_replicas(const uint8_t record_id[EHR_SHA256_BYTES],
                           const uint8_t custodian[EHR_SCHNORR_PUBLIC_BYTES],
                           const uint8_t (*keys)[EHR_SCHNORR_PUBLIC_BYTES], size_t count,
                           size_t copies, size_t *out);

/* A token bucket: LEVEL_MILLI thousandths of a token as of AT_MS; a bucket
 * not USED yet is full. */
struct node__token_bucket {
    uint64_t level_milli;
    uint64_t at_ms;
    bool used;
};
/* Refill B at RATE_PER_S up to BURST tokens as of NOW_MS (a clock that
 * never goes back), then take one: true, or false when less than one is
 * left (nothing taken). */
bool node__token_take(struct node__token_bucket *b, uint64_t now_ms, uint64_t rate_per_s,
                      uint64_t burst);

/* What a fetch waits for: the piece at OFFSET of BLOB_ID (TOTAL_BYTES). */
struct node__blob_want {
    uint8_t record_id[EHR_SHA256_BYTES];
    uint8_t blob_id[NODE_BLOB_ID_BYTES];
    uint64_t offset;
    uint64_t total_bytes;
};
/*
 * Is C the answer to WANT (OFFSET at most TOTAL_BYTES)? 0 (take its
 * data); EHR_ENOTFOUND (the sender says it has none: ask another);
 * EHR_EAGAIN (the sender is busy, at the offset asked, with no data: ask
 * it again later; its TOTAL_BYTES is not read); EHR_ETOOBIG (data over
 * NODE_BLOB_REPLICA_CHUNK_BYTES); EHR_EINVAL (another record or blob, a
 * wrong offset, size or length, data with "missing" or "busy", or both of
 * them set), with why in DIAG. Reads nothing else.
 */
int node__blob_chunk_check(const struct node__blob_want *want, const Ehr__V1__BlobChunk *c,
                           ehr_diag *diag);

/* Is C a late answer to an earlier question of the same fetch: the record
 * and blob of WANT at an offset below WANT's (a serve slower than the
 * fetch's timeout, answered after it asked again)? Such an answer is
 * dropped, neither taken nor refused. */
bool node__blob_chunk_is_late(const struct node__blob_want *want, const Ehr__V1__BlobChunk *c);

#endif /* EHR_NODE_BLOB_REPLICA_H */
