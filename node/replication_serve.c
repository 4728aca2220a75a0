/*
 * replication_serve.c - pieces of record ciphertext read for other
 * members' nodes that fetch them (node/README.md, "Blob replication";
 * the design notes and invariants are replication.c's).
 *
 * A BlobFetch is answered here, on the loop, and its piece read on
 * libuv's worker pool. R6 first, before any ledger read: at most
 * NODE_BLOB_SERVES_MAX pieces are being read at once, and at most
 * NODE_BLOB_SERVES_PER_MEMBER_MAX for one asking member (counted by key in
 * node__replication.serving); past either, "busy". Then R1: only the blob
 * a committed, not erased record's anchor names, only to a member of its
 * replica set, below its size; anything else "missing". An erase applied
 * while a piece is read is checked again before the piece is sent.
 *
 * Not here: fetching (replication.c), the client API (blob_service.c).
 */
#include <string.h>

#include "ehr/v1/state.pb-c.h"
#include "node_internal.h"

struct blob_serve {
    struct node *node;
    uint8_t peer[EHR_SCHNORR_PUBLIC_BYTES];
    struct node__blob_want want;
    uint8_t *buf;
    size_t len;
    int rc;
    uint64_t delay_ms; /* node_test_faults.blob_serve_delay_ms */
    uv_work_t work;
};

/* What a BlobChunk says besides its data. */
enum chunk_answer { CHUNK_DATA, CHUNK_MISSING, CHUNK_BUSY };

static void send_chunk(struct node *n, const struct node_member *to,
                       const struct node__blob_want *w, const uint8_t *data, size_t len,
                       enum chunk_answer answer)
{
    Ehr__V1__BlobChunk c = EHR__V1__BLOB_CHUNK__INIT;
    c.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)w->record_id};
    c.blob_id = (ProtobufCBinaryData){NODE_BLOB_ID_BYTES, (uint8_t *)w->blob_id};
    c.offset = w->offset;
    c.total_bytes = w->total_bytes;
    c.data = (ProtobufCBinaryData){len, (uint8_t *)data};
    c.missing = answer == CHUNK_MISSING;
    c.busy = answer == CHUNK_BUSY;
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_CHUNK;
    pm.blob_chunk = &c;
    node__send_kind(n, to, &pm); /* a full queue drops it: the fetcher times out, asks the next */
}

/* The count of pieces being read for the member KEY; with ADD, a free
 * slot taken for it when it has none (there always is one: every serve in
 * flight holds a count). NULL when it has none and ADD is false. */
static struct node__blob_serving *serving_of(struct node *n, const uint8_t key[32], bool add)
{
    struct node__blob_serving *free_slot = NULL;
    for (size_t i = 0; i < NODE_BLOB_SERVES_MAX; i++) {
        struct node__blob_serving *c = &n->replication.serving[i];
        if (c->count == 0) {
            if (free_slot == NULL)
                free_slot = c;
        } else if (memcmp(c->key, key, EHR_SCHNORR_PUBLIC_BYTES) == 0) {
            return c;
        }
    }
    if (!add)
        return NULL;
    EHR_ASSERT(free_slot != NULL);
    memcpy(free_slot->key, key, EHR_SCHNORR_PUBLIC_BYTES);
    return free_slot;
}

static void serve_run(uv_work_t *w)
{
    struct blob_serve *s = w->data;
    if (s->delay_ms > 0) /* a test's fault (node_test_faults): fill the limit */
        uv_sleep((unsigned)s->delay_ms);
    struct node_blob_reader r = {.fd = -1};
    ehr_diag why;
    s->rc = node_blob_read_open(&s->node->blobs.store, s->want.blob_id, &r, &why);
    if (s->rc != 0)
        return;
    uint64_t left = s->want.total_bytes - s->want.offset;
    size_t want =
        left < NODE_BLOB_REPLICA_CHUNK_BYTES ? (size_t)left : NODE_BLOB_REPLICA_CHUNK_BYTES;
    if (r.size != s->want.total_bytes) {
        s->rc = EHR_ECORRUPT; /* a copy of another size: not this blob */
    } else if ((s->rc = node_blob_read_seek(&r, s->want.offset, &why)) == 0) {
        s->len = 0;
        while (s->len < want) {
            long k = node_blob_read(&r, s->buf + s->len, want - s->len, &why);
            if (k <= 0) {
                s->rc = k < 0 ? (int)k : EHR_ECORRUPT;
                break;
            }
            s->len += (size_t)k;
        }
    }
    node_blob_read_close(&r);
}

static void serve_done(uv_work_t *w, int status)
{
    (void)status;
    struct blob_serve *s = w->data;
    struct node *n = s->node;
    EHR_ASSERT(n->replication.serves_inflight > 0);
    EHR_ASSERT(n->replication.jobs_inflight > 0);
    n->replication.serves_inflight--;
    n->replication.jobs_inflight--;
    /* By key: the member may have left meanwhile. */
    struct node__blob_serving *held = serving_of(n, s->peer, false);
    EHR_ASSERT(held != NULL);
    EHR_ASSERT(held->count > 0);
    held->count--;
    struct node_member *to = n->stopping ? NULL : node__member_by_key(n, s->peer);
    /* R1 again for what changed while the piece was read: an erase applied
     * (nothing of the record is served), or the asker no longer in the
     * record's replica set (it left, or is leaving). */
    if (s->rc == 0 && to != NULL) {
        Ehr__V1__RecordEntry *e = node__blob_record_entry(n->ledger, s->want.record_id);
        if (e == NULL || e->erased || !node__blob_replica_of(n, s->want.record_id, e, s->peer))
            s->rc = EHR_ENOTFOUND;
        if (e != NULL)
            ehr__v1__record_entry__free_unpacked(e, NULL);
    }
    if (to != NULL) {
        if (s->rc == 0)
            n->replication.served_count++;
        send_chunk(n, to, &s->want, s->buf, s->rc == 0 ? s->len : 0,
                   s->rc == 0 ? CHUNK_DATA : CHUNK_MISSING);
    }
    ehr_free(s->buf);
    ehr_free(s);
    if (n->stopping)
        node__maybe_free(n);
}

void node__replication_fetch_received(struct node *n, const struct node_member *from,
                                      const Ehr__V1__BlobFetch *f)
{
    if (!n->replication.started || f->record_id.len != EHR_HASH_BYTES ||
        f->blob_id.len != NODE_BLOB_ID_BYTES) {
        node__blob_refused(n, from, "a BlobFetch without a 32-byte record and blob id");
        return;
    }
    struct node__blob_want w = {.offset = f->offset};
    memcpy(w.record_id, f->record_id.data, EHR_HASH_BYTES);
    memcpy(w.blob_id, f->blob_id.data, NODE_BLOB_ID_BYTES);
    /* Every limit before any ledger read: "busy", and the asker comes
     * back for the same offset (total_bytes 0: not looked up). The rate
     * first: it bounds the loop's work per member, answered "missing" or
     * not. */
    unsigned serves_max = NODE_BLOB_SERVES_MAX;
    uint64_t lowered = n->applying.test_faults.blob_serves_max;
    if (lowered != 0 && lowered < serves_max)
        serves_max = (unsigned)lowered; /* a test's fault (node_test_faults) */
    uint64_t rate = n->applying.test_faults.blob_fetch_no_refill ? 0 /* a test's fault */
                                                                 : NODE_BLOB_FETCH_REQUESTS_PER_S;
    struct node_member *asker = node__member_by_key(n, from->key);
    const struct node__blob_serving *mine = serving_of(n, from->key, false);
    if ((asker != NULL && !node__token_take(&asker->blob_fetches, node__now_ms(), rate,
                                            NODE_BLOB_FETCH_REQUESTS_BURST)) ||
        n->replication.serves_inflight >= serves_max ||
        (mine != NULL && mine->count >= NODE_BLOB_SERVES_PER_MEMBER_MAX)) {
        n->replication.busy_sent_count++;
        send_chunk(n, from, &w, NULL, 0, CHUNK_BUSY);
        return;
    }
    /* R1: only the blob the anchor of a committed record names (an anchor
     * the rules refused is in its block but made no record). */
    Ehr__V1__RecordEntry *e = node__blob_record_entry(n->ledger, w.record_id);
    uint8_t named[NODE_BLOB_ID_BYTES];
    /* ... and not once its patient erased it, deleted here yet or not;
     * and only to a member that should hold it (the custodian's node or a
     * replica, not leaving): ciphertext goes no further than it must. */
    int rc = e == NULL || e->erased || !node__blob_replica_of(n, w.record_id, e, from->key)
                 ? EHR_ENOTFOUND
                 : node__blob_record_blob(n->ledger, w.record_id, named, &w.total_bytes);
    if (e != NULL)
        ehr__v1__record_entry__free_unpacked(e, NULL);
    if (rc != 0 || memcmp(named, w.blob_id, NODE_BLOB_ID_BYTES) != 0 || w.offset >= w.total_bytes ||
        w.total_bytes > n->blobs.store.bytes_max) {
        w.total_bytes = 0;
        send_chunk(n, from, &w, NULL, 0, CHUNK_MISSING);
        return;
    }
    struct blob_serve *s = ehr_calloc(1, sizeof *s);
    s->node = n;
    memcpy(s->peer, from->key, EHR_SCHNORR_PUBLIC_BYTES);
    s->want = w;
    s->buf = ehr_malloc(NODE_BLOB_REPLICA_CHUNK_BYTES);
    s->delay_ms = n->applying.test_faults.blob_serve_delay_ms;
    s->work.data = s;
    n->replication.serves_inflight++;
    serving_of(n, from->key, true)->count++;
    n->replication.jobs_inflight++;
    rc = uv_queue_work(n->loop, &s->work, serve_run, serve_done);
    EHR_ASSERT(rc == 0);
}
