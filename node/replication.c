/*
 * replication.c - record ciphertext copied to other members' nodes, and
 * repaired after a node lost its copy (node/README.md, "Blob
 * replication").
 *
 * Each committed record's blob should be held by NODE_BLOB_COPIES members'
 * nodes: the custodian's and the others a rendezvous hash of (record id,
 * node key) ranks first, so every node computes the same set from the
 * committed members with no coordination (node__blob_replicas). A node of
 * that set that lacks the blob pulls it from a peer over the authenticated
 * p2p links, one piece (BlobChunk, NODE_BLOB_REPLICA_CHUNK_BYTES) at a
 * time, asking for the next only once the last is written: at most
 * NODE_BLOB_FETCHES_MAX pieces are ever in flight towards it, on links that
 * also carry consensus. The custodian's node is asked first, then the
 * other replicas, then every other member.
 *
 * Two triggers: a block that writes a record entry (apply.c), and a repair
 * pass over every committed record, at start and every
 * NODE_BLOB_REPAIR_INTERVAL_MS, NODE_BLOB_SCAN_PER_TICK_MAX records a tick
 * (a cursor: the loop never waits on it), so a node whose blob directory
 * was wiped fetches back everything it should hold.
 *
 * Invariants:
 *   R1. Only ciphertext a committed anchor names moves: a node serves a
 *       piece only of the blob its committed record's anchor names, and
 *       fetches only for a committed record it should hold
 *       (node__blob_should_hold, the one place that decides).
 *   R2. A piece is taken only from the member it was asked of, for the
 *       record, blob and offset asked, with the size the anchor says
 *       (node__blob_chunk_check); anything else is refused, counted, and
 *       the fetch starts again from the next member.
 *   R3. What is fetched is written through the store's atomic writer
 *       (blobs.h, invariants 2 and 3): a blob that does not hash to its id
 *       is discarded and counted, and nothing of it is left.
 *   R4. Every file operation runs on libuv's worker pool; the ledger reads
 *       (a record entry, an anchor) run on the loop, bounded per tick.
 *   R5. No job outlives the node: the stop waits for jobs_inflight.
 *   R6. Serving is bounded before any ledger read: at most
 *       NODE_BLOB_SERVES_MAX pieces are read for peers at once, and at most
 *       NODE_BLOB_SERVES_PER_MEMBER_MAX for one asking member (counted by
 *       its key, released when the read ends even if the member left), so
 *       one member cannot starve the others' repair; and a member's
 *       BlobFetches are answered at most NODE_BLOB_FETCH_REQUESTS_PER_S a
 *       second (a token bucket, NODE_BLOB_FETCH_REQUESTS_BURST at once),
 *       which bounds the loop's ledger reads per member. Past any the
 *       answer is "busy", never "missing": "missing" says the sender does
 *       not hold or serve the blob, "busy" that it did not look.
 *   R7. A "busy" answer passes R2 like a piece (the member asked, the
 *       record, blob and offset asked) and keeps what was written: the same
 *       member is asked for the same offset NODE_BLOB_BUSY_RETRY_MS later
 *       (the tick, never a sleep), at most NODE_BLOB_BUSY_RETRIES_MAX times
 *       in a row; one more "busy" and the fetch moves on as after a
 *       refusal.
 *
 * States of a fetch (struct node__blob_fetch), with the function that moves
 * between them: free -(fetch_start)-> BEGIN job (stat, else open a
 * temporary file) -(fetch_job_done)-> present: free; else waiting
 * (fetch_ask) -(chunk_received)-> WRITE job -(fetch_job_done)-> waiting
 * (fetch_ask), or at the end COMMIT job -(fetch_job_done)-> free. A "busy"
 * answer: waiting -(chunk_received)-> resting -(node__replication_tick,
 * after NODE_BLOB_BUSY_RETRY_MS)-> waiting (fetch_ask, the same member and
 * offset). A refusal, "missing", a timeout, a link down (waiting or
 * resting), or one "busy" past NODE_BLOB_BUSY_RETRIES_MAX moves to the
 * next member (fetch_next: RESTART job when something was written, else
 * fetch_ask); with none left, ABORT job -> free (the next pass tries
 * again).
 *
 * Not here: serving pieces to peers (replication_serve.c: R1's serving
 * side, R6), the store (blobs.c), the client API (blob_service.c), deleting
 * an erased record's blob (blob_erase.c; node__blob_should_hold holds none
 * and a node serves none of an erased record).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ehr/v1/state.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "node_internal.h"

/* The current members' keys (those the applied state holds) into KEYS. */
static size_t current_keys(const struct node *n, uint8_t (*keys)[EHR_SCHNORR_PUBLIC_BYTES])
{
    size_t count = 0;
    for (size_t i = 0; i < n->peers.count; i++) {
        const struct node_member *m = &n->peers.members[i];
        if (m->leaving || (m->self && n->peers.self_removed))
            continue;
        memcpy(keys[count++], m->key, EHR_SCHNORR_PUBLIC_BYTES);
    }
    return count;
}

bool node__blob_replica_of(const struct node *n, const uint8_t record_id[EHR_HASH_BYTES],
                           const Ehr__V1__RecordEntry *e,
                           const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES])
{
    if (e->custodian.len != EHR_SCHNORR_PUBLIC_BYTES)
        return false;
    uint8_t keys[NODE_MEMBERS_MAX][EHR_SCHNORR_PUBLIC_BYTES];
    size_t count = current_keys(n, keys);
    size_t chosen[NODE_MEMBERS_MAX];
    size_t k = node__blob_replicas(record_id, e->custodian.data, (const uint8_t(*)[32])keys, count,
                                   NODE_BLOB_COPIES, chosen);
    for (size_t i = 0; i < k; i++)
        if (memcmp(keys[chosen[i]], key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            return true;
    return false;
}

bool node__blob_should_hold(const struct node *n, const uint8_t record_id[EHR_HASH_BYTES],
                            const Ehr__V1__RecordEntry *e)
{
    if (e->custodian.len != EHR_SCHNORR_PUBLIC_BYTES || n->peers.joining || n->peers.self_removed)
        return false;
    /* A record erased by its patient is held by no one (blob_erase.c
     * deletes the copies; repair must never fetch one back). */
    if (e->erased)
        return false;
    return node__blob_replica_of(n, record_id, e, n->peers.members[n->peers.self_index].key);
}

/* ---- the ledger: a record and its anchor ---- */

Ehr__V1__RecordEntry *node__blob_record_entry(ledger *l, const uint8_t record_id[EHR_HASH_BYTES])
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX], *v = NULL;
    size_t klen = contracts_key(k, CONTRACTS_PREFIX_RECORD, record_id, NULL, NULL);
    size_t vlen = 0;
    if (ledger_state_get(l, k, klen, &v, &vlen, NULL) != 0)
        return NULL;
    Ehr__V1__RecordEntry *e = ehr__v1__record_entry__unpack(NULL, vlen, v);
    ehr_free(v);
    return e;
}

int node__blob_record_blob(ledger *l, const uint8_t record_id[EHR_HASH_BYTES],
                           uint8_t blob_id[NODE_BLOB_ID_BYTES], uint64_t *total_bytes)
{
    ledger_tx_location loc;
    uint8_t *env = NULL;
    size_t env_len = 0;
    int rc = ledger_tx_get(l, record_id, &loc, &env, &env_len, NULL, NULL, NULL);
    if (rc != 0)
        return rc;
    ledger_tx_view v;
    rc = ledger_tx_envelope_parse(env, env_len, &v, NULL);
    Ehr__V1__TxBody *b = rc == 0 ? ehr__v1__tx_body__unpack(NULL, v.body_len, v.body) : NULL;
    rc = EHR_ECORRUPT;
    if (b != NULL && b->payload_case == EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR &&
        b->record_anchor->ciphertext_hash.len == NODE_BLOB_ID_BYTES) {
        memcpy(blob_id, b->record_anchor->ciphertext_hash.data, NODE_BLOB_ID_BYTES);
        *total_bytes = b->record_anchor->ciphertext_bytes;
        rc = 0;
    }
    if (b != NULL)
        ehr__v1__tx_body__free_unpacked(b, NULL);
    ehr_free(env);
    return rc;
}

struct node_member *node__member_by_key(struct node *n, const uint8_t key[32])
{
    for (size_t i = 0; i < n->peers.count; i++)
        if (memcmp(n->peers.members[i].key, key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            return &n->peers.members[i];
    return NULL;
}

void node__blob_refused(struct node *n, const struct node_member *from, const char *why)
{
    n->replication.refused_chunk_count++;
    uint64_t count = 0;
    if (ehr_log_limit_hit(&n->replication.refused_log, node__now_ms(), &count))
        ehr_log(EHR_LOG_WARN, "blob pieces refused", "count=%" PRIu64 " peer=\"%s\" why=\"%s\"",
                count, from->name, why);
}

/* ---- fetching ---- */

enum fetch_job { FETCH_BEGIN, FETCH_WRITE, FETCH_COMMIT, FETCH_RESTART, FETCH_ABORT };

static void fetch_job_run(uv_work_t *w)
{
    struct node__blob_fetch *f = w->data;
    const struct node_blobs *store = &f->node->blobs.store;
    switch ((enum fetch_job)f->job) {
    case FETCH_BEGIN:
        f->job_rc = node_blobs_stat(store, f->want.blob_id, NULL);
        f->present = f->job_rc == 0;
        if (f->job_rc == EHR_ENOTFOUND)
            f->job_rc = node_blob_write_begin(store, f->want.blob_id, &f->writer, &f->job_diag);
        break;
    case FETCH_WRITE:
        f->job_rc = node_blob_write(&f->writer, f->chunk, f->chunk_len, &f->job_diag);
        break;
    case FETCH_COMMIT:
        f->job_rc = node_blob_write_commit(&f->writer, &f->job_diag);
        break;
    case FETCH_RESTART:
        node_blob_write_abort(&f->writer);
        f->job_rc = node_blob_write_begin(store, f->want.blob_id, &f->writer, &f->job_diag);
        break;
    case FETCH_ABORT:
        node_blob_write_abort(&f->writer);
        f->job_rc = 0;
        break;
    }
}

static void fetch_job_done(uv_work_t *w, int status);

static void fetch_job_start(struct node__blob_fetch *f, enum fetch_job job)
{
    EHR_ASSERT(!f->working);
    f->job = job;
    f->job_rc = 0;
    f->job_diag.msg[0] = '\0';
    f->working = true;
    f->waiting = false;
    f->resting = false;
    f->work.data = f;
    f->node->replication.jobs_inflight++;
    int rc = uv_queue_work(f->node->loop, &f->work, fetch_job_run, fetch_job_done);
    EHR_ASSERT(rc == 0);
}

static void fetch_free(struct node__blob_fetch *f)
{
    EHR_ASSERT(!f->working);
    EHR_ASSERT(!f->writer_open);
    ehr_free(f->chunk);
    f->chunk = NULL;
    f->used = false;
}

static void fetch_log(struct node__blob_fetch *f, int level, const char *msg, const char *why)
{
    char hex[NODE_BLOB_ID_HEX_BYTES + 1];
    node_blob_id_hex(hex, f->want.blob_id);
    ehr_log(level, msg, "blob=%.16s bytes=%" PRIu64 " why=\"%s\"", hex, f->want.total_bytes, why);
}

/* Ask member M for the fetch's next piece. Returns 0, or non-zero when
 * the message could not be queued (its queue full, or the link just went). */
static int fetch_send(struct node__blob_fetch *f, const struct node_member *m)
{
    Ehr__V1__BlobFetch q = EHR__V1__BLOB_FETCH__INIT;
    q.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, f->want.record_id};
    q.blob_id = (ProtobufCBinaryData){NODE_BLOB_ID_BYTES, f->want.blob_id};
    q.offset = f->want.offset;
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_FETCH;
    pm.blob_fetch = &q;
    uint8_t buf[128];
    size_t len = ehr__v1__peer_message__get_packed_size(&pm);
    EHR_ASSERT(len <= sizeof buf);
    ehr__v1__peer_message__pack(&pm, buf);
    if (p2p_send(f->node->peers.p2p, m->key, buf, len) != 0)
        return -1;
    f->waiting = true;
    f->asked_count++;
    f->deadline_ms = node__now_ms() + NODE_BLOB_FETCH_TIMEOUT_MS;
    return 0;
}

/* Ask the current member, or the next one with a live link, for the next
 * piece; with none left, give up (ABORT) until the next pass. */
static void fetch_ask(struct node__blob_fetch *f)
{
    struct node *n = f->node;
    EHR_ASSERT(!f->working);
    EHR_ASSERT(!f->resting);
    EHR_ASSERT(f->writer_open);
    for (; f->source < f->source_count; f->source++) {
        struct node_member *m = node__member_by_key(n, f->sources[f->source]);
        if (m != NULL && !m->self && m->link_up && fetch_send(f, m) == 0)
            return;
        if (m != NULL && !m->self)
            f->skipped_count++; /* no live link, its queue is full, or the link just went */
        f->busy_count = 0;      /* the next member has its own retries */
        if (f->want.offset > 0) {
            /* What was written came from this member: another one starts
             * over from byte 0 (R2), as fetch_next does. */
            f->source++;
            f->want.offset = 0;
            fetch_job_start(f, FETCH_RESTART);
            return;
        }
    }
    /* A member unreachable, or too busy to answer (it did not look
     * whether it serves the blob), may have it. */
    bool unreachable = f->skipped_count + f->busy_passed_count > 0 && f->missing_count == 0;
    uint64_t count = 0;
    /* A record whose ciphertext lives outside the nodes (a PACS pointer)
     * ends here on every pass: one line per interval, with the count. */
    if (f->asked_count > 0 &&
        ehr_log_limit_hit(&n->replication.gave_up_log, node__now_ms(), &count)) {
        char hex[NODE_BLOB_ID_HEX_BYTES + 1];
        node_blob_id_hex(hex, f->want.blob_id);
        ehr_log(EHR_LOG_WARN, "blob not fetched: no member served it",
                "count=%" PRIu64 " blob=%.16s why=\"%s\"", count, hex,
                unreachable ? "some members have no live link or are busy; the next pass comes soon"
                            : "asked every member with a live link; the next pass tries again");
    }
    if (f->asked_count == 0 || unreachable) {
        n->replication.retry_soon = true; /* someone unreachable may have it */
        if (!n->replication.scanning)
            n->replication.next_pass_ms = node__now_ms() + NODE_BLOB_RETRY_MS;
    }
    fetch_job_start(f, FETCH_ABORT);
}

/* The current member failed (it has none, refused, timed out, lost its
 * link, or was busy too often): ask the next one, from the start of the
 * blob if anything was written. */
static void fetch_next(struct node__blob_fetch *f)
{
    EHR_ASSERT(!f->working);
    f->waiting = false;
    f->resting = false;
    f->busy_count = 0;
    f->source++;
    if (f->source >= f->source_count) {
        fetch_ask(f); /* gives up */
        return;
    }
    if (f->want.offset == 0) {
        fetch_ask(f);
        return;
    }
    f->want.offset = 0;
    fetch_job_start(f, FETCH_RESTART);
}

static void fetch_job_done(uv_work_t *w, int status)
{
    (void)status;
    struct node__blob_fetch *f = w->data;
    struct node *n = f->node;
    EHR_ASSERT(n->replication.jobs_inflight > 0);
    n->replication.jobs_inflight--;
    f->working = false;
    enum fetch_job job = (enum fetch_job)f->job;
    if (job == FETCH_BEGIN || job == FETCH_RESTART)
        f->writer_open = f->job_rc == 0 && !f->present;
    if (job == FETCH_COMMIT || job == FETCH_ABORT)
        f->writer_open = false; /* finished, stored or not */
    if (n->stopping) {
        if (f->writer_open) {
            fetch_job_start(f, FETCH_ABORT); /* nothing half-written is left */
            return;
        }
        fetch_free(f);
        node__maybe_free(n);
        return;
    }
    switch (job) {
    case FETCH_BEGIN:
    case FETCH_RESTART:
        if (f->present) {
            fetch_free(f);
        } else if (f->job_rc != 0) {
            fetch_log(f, EHR_LOG_ERROR, "blob not fetched: the store failed", f->job_diag.msg);
            fetch_free(f);
        } else if (f->want.total_bytes == 0) {
            fetch_job_start(f, FETCH_COMMIT);
        } else {
            fetch_ask(f);
        }
        return;
    case FETCH_WRITE:
        if (f->job_rc != 0) {
            fetch_log(f, EHR_LOG_ERROR, "blob not fetched: the store failed", f->job_diag.msg);
            fetch_job_start(f, FETCH_ABORT);
            return;
        }
        f->want.offset += f->chunk_len;
        if (f->want.offset == f->want.total_bytes)
            fetch_job_start(f, FETCH_COMMIT);
        else
            fetch_ask(f);
        return;
    case FETCH_COMMIT:
        if (f->job_rc == 0) {
            n->replication.replicated_count++;
            fetch_log(f, EHR_LOG_INFO, "blob replicated", "stored from a peer");
            /* Its patient may have erased the record while it came: the
             * erasure's deletion may have run before this commit, so list
             * the erased records again (blob_erase.c deletes it). */
            Ehr__V1__RecordEntry *e = node__blob_record_entry(n->ledger, f->want.record_id);
            if (e != NULL && e->erased)
                node__blob_erase_rescan(n);
            if (e != NULL)
                ehr__v1__record_entry__free_unpacked(e, NULL);
            fetch_free(f);
        } else if (f->job_rc == EHR_EINVAL) {
            n->replication.hash_mismatch_count++; /* R3: discarded, nothing left */
            fetch_log(f, EHR_LOG_WARN, "fetched blob discarded", f->job_diag.msg);
            f->want.offset = 0;
            f->source++;
            if (f->source >= f->source_count) {
                fetch_free(f);
                return;
            }
            fetch_job_start(f, FETCH_BEGIN);
        } else {
            fetch_log(f, EHR_LOG_ERROR, "blob not fetched: the store failed", f->job_diag.msg);
            fetch_free(f);
        }
        return;
    case FETCH_ABORT:
        fetch_free(f);
        return;
    }
}

/* The members to ask for record RECORD_ID (its entry E), in order: the
 * custodian, the other replicas, then every other member. */
static void fetch_sources(struct node *n, struct node__blob_fetch *f, const Ehr__V1__RecordEntry *e)
{
    uint8_t keys[NODE_MEMBERS_MAX][EHR_SCHNORR_PUBLIC_BYTES];
    size_t count = current_keys(n, keys);
    size_t order[NODE_MEMBERS_MAX];
    size_t k = node__blob_replicas(f->want.record_id, e->custodian.data, (const uint8_t(*)[32])keys,
                                   count, count, order);
    EHR_ASSERT(k == count);
    f->source_count = 0;
    for (size_t i = 0; i < k; i++)
        memcpy(f->sources[f->source_count++], keys[order[i]], EHR_SCHNORR_PUBLIC_BYTES);
    f->source = 0;
}

/* Start fetching record RECORD_ID's blob in the free slot F, if this node
 * should hold it. The ledger is read here, on the loop (bounded by the
 * slots per tick); the store only in the job. */
static void fetch_start(struct node *n, struct node__blob_fetch *f,
                        const uint8_t record_id[EHR_HASH_BYTES])
{
    EHR_ASSERT(!f->used);
    Ehr__V1__RecordEntry *e = node__blob_record_entry(n->ledger, record_id);
    if (e == NULL)
        return;
    memset(f, 0, sizeof *f);
    f->node = n;
    f->writer.fd = -1;
    memcpy(f->want.record_id, record_id, EHR_HASH_BYTES);
    if (node__blob_should_hold(n, record_id, e) &&
        node__blob_record_blob(n->ledger, record_id, f->want.blob_id, &f->want.total_bytes) == 0 &&
        f->want.total_bytes <= n->blobs.store.bytes_max) {
        fetch_sources(n, f, e);
        f->used = true;
        f->chunk = ehr_malloc(NODE_BLOB_REPLICA_CHUNK_BYTES);
        n->replication.repair_fetch_count++;
        fetch_job_start(f, FETCH_BEGIN);
    }
    ehr__v1__record_entry__free_unpacked(e, NULL);
}

static bool fetching(const struct node *n, const uint8_t record_id[EHR_HASH_BYTES])
{
    for (size_t i = 0; i < NODE_BLOB_FETCHES_MAX; i++)
        if (n->replication.fetches[i].used &&
            memcmp(n->replication.fetches[i].want.record_id, record_id, EHR_HASH_BYTES) == 0)
            return true;
    return false;
}

void node__replication_chunk_received(struct node *n, const struct node_member *from,
                                      const Ehr__V1__BlobChunk *c)
{
    /* R2: the one fetch waiting on FROM for this record. */
    struct node__blob_fetch *f = NULL;
    for (size_t i = 0; i < NODE_BLOB_FETCHES_MAX && n->replication.started; i++) {
        struct node__blob_fetch *g = &n->replication.fetches[i];
        if (g->used && g->waiting && c->record_id.len == EHR_HASH_BYTES &&
            memcmp(g->want.record_id, c->record_id.data, EHR_HASH_BYTES) == 0 &&
            memcmp(g->sources[g->source], from->key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            f = g;
    }
    if (f == NULL) {
        node__blob_refused(n, from, "a piece of a blob not asked for");
        return;
    }
    /* A late answer, from that member, to an earlier question of the same
     * blob (a serve slower than NODE_BLOB_FETCH_TIMEOUT_MS, answered after
     * the fetch asked again): dropped, the fetch still waits for its own. */
    if (node__blob_chunk_is_late(&f->want, c)) {
        n->replication.late_answer_count++;
        return;
    }
    ehr_diag why;
    int rc = node__blob_chunk_check(&f->want, c, &why);
    if (rc == EHR_ENOTFOUND) {
        f->missing_count++;
        fetch_next(f);
        return;
    }
    if (rc == EHR_EAGAIN) {
        /* Busy: keep what is written, ask the same member for the same
         * offset after a rest (node__replication_tick), a few times. */
        n->replication.busy_received_count++;
        if (f->busy_count >= NODE_BLOB_BUSY_RETRIES_MAX) {
            f->busy_passed_count++;
            fetch_next(f);
            return;
        }
        f->busy_count++;
        f->waiting = false;
        f->resting = true;
        f->deadline_ms = node__now_ms() + NODE_BLOB_BUSY_RETRY_MS;
        return;
    }
    if (rc != 0) {
        node__blob_refused(n, from, why.msg);
        fetch_next(f);
        return;
    }
    f->busy_count = 0;
    memcpy(f->chunk, c->data.data, c->data.len);
    f->chunk_len = c->data.len;
    fetch_job_start(f, FETCH_WRITE);
}

void node__replication_link_down(struct node *n, const struct node_member *m)
{
    for (size_t i = 0; i < NODE_BLOB_FETCHES_MAX; i++) {
        struct node__blob_fetch *f = &n->replication.fetches[i];
        if (f->used && (f->waiting || f->resting) &&
            memcmp(f->sources[f->source], m->key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            fetch_next(f);
    }
}

/* A pass over every record at once, or right after the one under way
 * (which may have passed the records in question already). */
static void pass_soon(struct node__replication *r)
{
    if (r->scanning)
        r->pass_due = true;
    else
        r->next_pass_ms = 0;
}

void node__replication_record_written(struct node *n, const uint8_t record_id[EHR_HASH_BYTES])
{
    if (!n->replication.started || fetching(n, record_id))
        return;
    if (node__blob_queue_push(&n->replication.queue, record_id) == EHR_EFULL)
        pass_soon(&n->replication); /* the next pass finds it */
}

void node__replication_members_changed(struct node *n)
{
    if (n->replication.started)
        pass_soon(&n->replication);
}

/* ---- the repair scan ---- */

struct scan_ctx {
    struct node *n;
    uint8_t last[64];
    size_t last_len;
    size_t pushed;
};

static int scan_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                    size_t value_len)
{
    struct scan_ctx *s = ctx;
    const size_t prefix = sizeof CONTRACTS_PREFIX_RECORD - 1;
    if (key_len > sizeof s->last)
        return 0;
    memcpy(s->last, key, key_len);
    s->last_len = key_len;
    if (key_len != prefix + EHR_HASH_BYTES)
        return 0;
    Ehr__V1__RecordEntry *e = ehr__v1__record_entry__unpack(NULL, value_len, value);
    if (e == NULL)
        return 0;
    const uint8_t *id = key + prefix;
    if (node__blob_should_hold(s->n, id, e) && !fetching(s->n, id) &&
        node__blob_queue_push(&s->n->replication.queue, id) == 0)
        s->pushed++;
    ehr__v1__record_entry__free_unpacked(e, NULL);
    return 0;
}

static bool any_link_up(const struct node *n)
{
    for (size_t i = 0; i < n->peers.count; i++)
        if (!n->peers.members[i].self && n->peers.members[i].link_up)
            return true;
    return false;
}

/* One step of the repair pass: at most NODE_BLOB_SCAN_PER_TICK_MAX records,
 * and no more than the queue has room for. */
static void scan_step(struct node *n, uint64_t now)
{
    struct node__replication *r = &n->replication;
    if (!r->scanning) {
        if (now < r->next_pass_ms || !any_link_up(n))
            return; /* a pass without links would find no one to ask */
        r->scanning = true;
        r->cursor_len = 0;
    }
    size_t room = NODE_BLOB_QUEUE_MAX - r->queue.count;
    size_t count = room < NODE_BLOB_SCAN_PER_TICK_MAX ? room : NODE_BLOB_SCAN_PER_TICK_MAX;
    if (count == 0)
        return;
    struct scan_ctx s = {.n = n};
    ehr_diag why;
    long seen = ledger_state_scan(
        n->ledger, (const uint8_t *)CONTRACTS_PREFIX_RECORD, sizeof CONTRACTS_PREFIX_RECORD - 1,
        r->cursor_len ? r->cursor : NULL, r->cursor_len, count, scan_one, &s, &why);
    if (seen < 0) {
        ehr_log(EHR_LOG_ERROR, "blob repair scan failed", "why=\"%s\"", why.msg);
        r->scanning = false;
        r->next_pass_ms = now + NODE_BLOB_REPAIR_INTERVAL_MS;
        return;
    }
    if (s.last_len > 0) {
        memcpy(r->cursor, s.last, s.last_len);
        r->cursor_len = s.last_len;
    }
    if ((size_t)seen < count) { /* the end: the pass is over */
        r->scanning = false;
        r->next_pass_ms = r->pass_due     ? now
                          : r->retry_soon ? now + NODE_BLOB_RETRY_MS
                                          : now + NODE_BLOB_REPAIR_INTERVAL_MS;
        r->retry_soon = false;
        r->pass_due = false;
    }
}

void node__replication_tick(struct node *n)
{
    struct node__replication *r = &n->replication;
    if (!r->started || n->stopping)
        return;
    uint64_t now = node__now_ms();
    for (size_t i = 0; i < NODE_BLOB_FETCHES_MAX; i++) {
        struct node__blob_fetch *f = &r->fetches[i];
        if (f->used && f->waiting && now >= f->deadline_ms) {
            fetch_next(f);
        } else if (f->used && f->resting && now >= f->deadline_ms) {
            f->resting = false;
            fetch_ask(f); /* the busy member again, the same offset */
        }
    }
    scan_step(n, now);
    for (size_t i = 0; i < NODE_BLOB_FETCHES_MAX && r->queue.count > 0; i++) {
        if (r->fetches[i].used)
            continue;
        uint8_t id[EHR_HASH_BYTES];
        int rc = node__blob_queue_pop(&r->queue, id);
        EHR_ASSERT(rc == 0);
        fetch_start(n, &r->fetches[i], id);
    }
}

void node__replication_start(struct node *n)
{
    struct node__replication *r = &n->replication;
    EHR_ASSERT(n->blobs.store_open);
    r->started = true;
    r->next_pass_ms = 0; /* a pass at once: a node back with an empty store refetches */
}

void node__replication_stop(struct node *n)
{
    for (size_t i = 0; i < NODE_BLOB_FETCHES_MAX; i++) {
        struct node__blob_fetch *f = &n->replication.fetches[i];
        if (!f->used || f->working)
            continue; /* a job out: fetch_job_done finishes it */
        if (f->writer_open)
            fetch_job_start(f, FETCH_ABORT); /* R3: nothing half-written is left */
        else
            fetch_free(f);
    }
}

bool node__replication_busy(const struct node *n)
{
    return n->replication.jobs_inflight > 0;
}
