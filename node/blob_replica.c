/*
 * blob_replica.c - the pure parts of blob replication (blob_replica.h):
 * the replica set by rendezvous hashing, the checks on a received piece,
 * the queue of records waiting for a fetch. No I/O.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "blob_replica.h"

#define REPLICA_DOMAIN "ehrchain/blob-replica/v1"

/* ---- the queue ---- */

int node__blob_queue_push(struct node__blob_queue *q, const uint8_t id[EHR_SHA256_BYTES])
{
    EHR_ASSERT(q->count <= NODE_BLOB_QUEUE_MAX);
    for (size_t i = 0; i < q->count; i++)
        if (memcmp(q->ids[(q->head + i) % NODE_BLOB_QUEUE_MAX], id, EHR_SHA256_BYTES) == 0)
            return EHR_EEXIST;
    if (q->count == NODE_BLOB_QUEUE_MAX)
        return EHR_EFULL;
    memcpy(q->ids[(q->head + q->count) % NODE_BLOB_QUEUE_MAX], id, EHR_SHA256_BYTES);
    q->count++;
    return 0;
}

int node__blob_queue_pop(struct node__blob_queue *q, uint8_t id[EHR_SHA256_BYTES])
{
    if (q->count == 0)
        return EHR_ENOTFOUND;
    memcpy(id, q->ids[q->head], EHR_SHA256_BYTES);
    q->head = (q->head + 1) % NODE_BLOB_QUEUE_MAX;
    q->count--;
    return 0;
}

/* ---- the replica set ---- */

static void replica_score(const uint8_t record_id[EHR_SHA256_BYTES],
                          const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES],
                          uint8_t out[EHR_SHA256_BYTES])
{
    uint8_t in[sizeof REPLICA_DOMAIN - 1 + EHR_SHA256_BYTES + EHR_SCHNORR_PUBLIC_BYTES];
    memcpy(in, REPLICA_DOMAIN, sizeof REPLICA_DOMAIN - 1);
    memcpy(in + sizeof REPLICA_DOMAIN - 1, record_id, EHR_SHA256_BYTES);
    memcpy(in + sizeof REPLICA_DOMAIN - 1 + EHR_SHA256_BYTES, key, EHR_SCHNORR_PUBLIC_BYTES);
    ehr_sha256(out, in, sizeof in);
}

size_t node__blob_replicas(const uint8_t record_id[EHR_SHA256_BYTES],
                           const uint8_t custodian[EHR_SCHNORR_PUBLIC_BYTES],
                           const uint8_t (*keys)[EHR_SCHNORR_PUBLIC_BYTES], size_t count,
                           size_t copies, size_t *out)
{
    EHR_ASSERT(count <= NODE_BLOB_REPLICA_MEMBERS_MAX);
    size_t chosen = 0;
    bool taken[NODE_BLOB_REPLICA_MEMBERS_MAX] = {false};
    for (size_t i = 0; i < count && chosen < copies; i++)
        if (memcmp(keys[i], custodian, EHR_SCHNORR_PUBLIC_BYTES) == 0) {
            out[chosen++] = i;
            taken[i] = true;
            break;
        }
    /* Then the highest scores, one at a time (COUNT is at most a few dozen). */
    uint8_t scores[NODE_BLOB_REPLICA_MEMBERS_MAX][EHR_SHA256_BYTES];
    for (size_t i = 0; i < count; i++)
        replica_score(record_id, keys[i], scores[i]);
    while (chosen < copies && chosen < count) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < count; i++)
            if (!taken[i] &&
                (best == SIZE_MAX || memcmp(scores[i], scores[best], EHR_SHA256_BYTES) > 0))
                best = i;
        EHR_ASSERT(best != SIZE_MAX); /* fewer chosen than members: one is left */
        taken[best] = true;
        out[chosen++] = best;
    }
    EHR_ASSERT(chosen <= copies);
    EHR_ASSERT(chosen <= count);
    return chosen;
}

/* ---- a received piece ---- */

bool node__token_take(struct node__token_bucket *b, uint64_t now_ms, uint64_t rate_per_s,
                      uint64_t burst)
{
    EHR_ASSERT(burst > 0 && burst <= UINT64_MAX / 1000);
    const uint64_t full = burst * 1000;
    if (!b->used) {
        b->used = true;
        b->level_milli = full;
    } else if (now_ms > b->at_ms && b->level_milli < full && rate_per_s > 0) {
        uint64_t elapsed = now_ms - b->at_ms;
        uint64_t room = full - b->level_milli; /* thousandths a refill may add */
        /* rate_per_s tokens a second are rate_per_s thousandths a ms */
        b->level_milli += elapsed > room / rate_per_s ? room : elapsed * rate_per_s;
    }
    if (now_ms > b->at_ms)
        b->at_ms = now_ms;
    if (b->level_milli < 1000)
        return false;
    b->level_milli -= 1000;
    return true;
}

bool node__blob_chunk_is_late(const struct node__blob_want *want, const Ehr__V1__BlobChunk *c)
{
    return c->offset < want->offset && c->record_id.len == EHR_SHA256_BYTES &&
           memcmp(c->record_id.data, want->record_id, EHR_SHA256_BYTES) == 0 &&
           c->blob_id.len == NODE_BLOB_ID_BYTES &&
           memcmp(c->blob_id.data, want->blob_id, NODE_BLOB_ID_BYTES) == 0;
}

int node__blob_chunk_check(const struct node__blob_want *want, const Ehr__V1__BlobChunk *c,
                           ehr_diag *diag)
{
    if (c->record_id.len != EHR_SHA256_BYTES ||
        memcmp(c->record_id.data, want->record_id, EHR_SHA256_BYTES) != 0 ||
        c->blob_id.len != NODE_BLOB_ID_BYTES ||
        memcmp(c->blob_id.data, want->blob_id, NODE_BLOB_ID_BYTES) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "a piece of another record or blob than asked");
    if (c->missing && c->busy)
        return ehr_diag_fail(diag, EHR_EINVAL, "a piece said both missing and busy");
    /* Every answer, "busy" and "missing" too, is for the offset asked: an
     * answer to an earlier question (a delayed one) is refused. */
    if (c->offset != want->offset)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "%s at offset %" PRIu64 " when %" PRIu64 " was asked for",
                             c->busy      ? "busy"
                             : c->missing ? "missing"
                                          : "a piece",
                             c->offset, want->offset);
    if (c->busy) {
        if (c->data.len != 0)
            return ehr_diag_fail(diag, EHR_EINVAL, "a piece said busy carries %zu bytes",
                                 c->data.len);
        return ehr_diag_fail(diag, EHR_EAGAIN, "the member is busy serving others");
    }
    if (c->missing) {
        if (c->data.len != 0)
            return ehr_diag_fail(diag, EHR_EINVAL, "a piece said missing carries %zu bytes",
                                 c->data.len);
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "the member does not serve this blob");
    }
    if (c->total_bytes != want->total_bytes)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "a blob of %" PRIu64 " bytes when the anchor says %" PRIu64,
                             c->total_bytes, want->total_bytes);
    if (c->data.len > NODE_BLOB_REPLICA_CHUNK_BYTES)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "a piece of %zu bytes is over the limit of %u",
                             c->data.len, NODE_BLOB_REPLICA_CHUNK_BYTES);
    EHR_ASSERT(want->offset <= want->total_bytes);
    uint64_t left = want->total_bytes - want->offset;
    uint64_t expect = left < NODE_BLOB_REPLICA_CHUNK_BYTES ? left : NODE_BLOB_REPLICA_CHUNK_BYTES;
    if (c->data.len != expect)
        return ehr_diag_fail(diag, EHR_EINVAL, "a piece of %zu bytes where %" PRIu64 " are due",
                             c->data.len, expect);
    return 0;
}
