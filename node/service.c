/*
 * service.c - the integrator API: service ehr.v1.Node (proto/ehr/v1/
 * node.proto) on the node's rpc/ server. Requests are decoded with
 * protobuf-c, checked, and answered from the ledger, the consensus status
 * and the mempool; SubmitTransaction is admitted at the leader (directly,
 * or forwarded by a follower over the peer network) and, when asked,
 * answered only once its block is applied on this node.
 *
 * Not here: consensus, proposals and applying blocks (node.c); the
 * queries answered from the world state (listings.c); the health service
 * (health.c); server reflection (reflection.c); the limits on open
 * streams (stream_set.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ehr/v1/node.pb-c.h"
#include "ehr/v1/state.pb-c.h"
#include "node_internal.h"

#define PATH_PREFIX "/ehr.v1.Node/"

enum { MESSAGE_BYTES_MAX = 256 };

/* ---- replies ---- */

typedef size_t (*packed_size_fn)(const void *);
typedef size_t (*pack_fn)(const void *, uint8_t *);

static void reply_packed(struct rpc_call *call, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = ehr_malloc(len ? len : 1);
    protobuf_c_message_pack(msg, buf);
    rpc_call_reply(call, buf, len);
    ehr_free(buf);
}

static void fail_err(struct rpc_call *call, int err, const char *reason)
{
    enum rpc_status st = rpc_status_from_err(err);
    if (st == RPC_STATUS_OK)
        st = RPC_STATUS_INTERNAL;
    rpc_call_fail(call, st, reason);
}

/*
 * What a failed SubmitTransaction tells a client besides its status, as
 * trailing metadata (node.proto documents them): the leader to send to, and
 * whether the transaction may have been admitted.
 */
#define TRAILER_LEADER_ID "ehr-leader-id"
#define TRAILER_LEADER_ADDRESS "ehr-leader-address"
#define TRAILER_OUTCOME "ehr-submit-outcome"
#define OUTCOME_NOT_ADMITTED "not-admitted" /* nothing was admitted: send it elsewhere */
#define OUTCOME_UNKNOWN "unknown"           /* it may be admitted: resubmit the same envelope */
/* Refused for the client address's rate: a submission is taken again after this many ms. */
#define TRAILER_RETRY_AFTER "ehr-retry-after-ms"

/* Fail CALL with STATUS and MSG, adding the leader hint and OUTCOME. */
static void fail_submit(struct node *n, struct rpc_call *call, enum rpc_status status,
                        const char *outcome, const char *msg)
{
    const struct node_member *m = node__leader_hint(n);
    if (m != NULL) {
        char hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
        ehr_hex_encode(hex, m->key, sizeof m->key);
        rpc_call_trailer_add(call, TRAILER_LEADER_ID, hex);
        if (m->rpc_address[0] != '\0')
            rpc_call_trailer_add(call, TRAILER_LEADER_ADDRESS, m->rpc_address);
    }
    rpc_call_trailer_add(call, TRAILER_OUTCOME, outcome);
    rpc_call_fail(call, status, msg);
}

/* UNAVAILABLE because this node cannot take the submission now: nothing
 * was admitted. */
static void fail_not_admitted(struct node *n, struct rpc_call *call)
{
    char msg[MESSAGE_BYTES_MAX];
    node__unavailable_message(n, msg, sizeof msg);
    fail_submit(n, call, RPC_STATUS_UNAVAILABLE, OUTCOME_NOT_ADMITTED, msg);
}

/* RESOURCE_EXHAUSTED: the client's address is over its submissions per
 * second; a token is there again in WAIT_MS. Nothing was read of the
 * request, so nothing was admitted. */
static void fail_throttled(struct node *n, struct rpc_call *call, uint64_t wait_ms)
{
    char msg[MESSAGE_BYTES_MAX], wait[24];
    snprintf(wait, sizeof wait, "%" PRIu64, wait_ms);
    snprintf(msg, sizeof msg,
             "too many submissions from your address: at most %" PRIu64
             " a second, in bursts of %" PRIu64 "; retry in %" PRIu64 " ms",
             n->submit_limit.rate_per_s, n->submit_limit.burst, wait_ms);
    rpc_call_trailer_add(call, TRAILER_RETRY_AFTER, wait);
    rpc_call_trailer_add(call, TRAILER_OUTCOME, OUTCOME_NOT_ADMITTED);
    rpc_call_fail(call, RPC_STATUS_RESOURCE_EXHAUSTED, msg);
}

/* ---- waiters ---- */

static size_t bucket_of_hash(const uint8_t hash[EHR_HASH_BYTES])
{
    return ((size_t)hash[0] << 8 | hash[1]) & (NODE_WAIT_BUCKETS - 1);
}

static size_t bucket_of_id(uint64_t id)
{
    return (size_t)(id & (NODE_WAIT_BUCKETS - 1));
}

static void table_remove(struct node__waiter **table, size_t bucket, struct node__waiter *w)
{
    for (struct node__waiter **p = &table[bucket]; *p != NULL; p = &(*p)->hnext)
        if (*p == w) {
            *p = w->hnext;
            w->hnext = NULL;
            return;
        }
}

/* Take W out of whichever table and list holds it. */
static void waiter_unlink(struct node__waiter *w)
{
    struct node *n = w->node;
    if (w->request_id != 0)
        table_remove(n->waits.forward_table, bucket_of_id(w->request_id), w);
    else
        table_remove(n->waits.commit_table, bucket_of_hash(w->hash), w);
    node__link_remove(&w->fifo);
    n->waits.count--;
}

static void waiter_free(struct node__waiter *w)
{
    ehr_free(w->envelope);
    ehr_free(w);
}

static void on_waiter_cancel(void *data, enum rpc_status why)
{
    struct node__waiter *w = data;
    waiter_unlink(w);
    rpc_call_fail(w->call, why, NULL);
    waiter_free(w);
}

static void wait_for_commit(struct node *n, struct node__waiter *w)
{
    w->request_id = 0;
    w->expires_at = uv_now(n->loop) + NODE_COMMIT_WAIT_MS_MAX;
    size_t b = bucket_of_hash(w->hash);
    w->hnext = n->waits.commit_table[b];
    n->waits.commit_table[b] = w;
    node__link_push(&n->waits.commit_waits, &w->fifo);
}

static struct node__waiter *waiter_new(struct node *n, struct rpc_call *call,
                                       const uint8_t hash[EHR_HASH_BYTES], bool wait_commit)
{
    struct node__waiter *w = ehr_calloc(1, sizeof *w);
    w->node = n;
    w->call = call;
    memcpy(w->hash, hash, EHR_HASH_BYTES);
    w->wait_commit = wait_commit;
    node__link_init(&w->fifo);
    n->waits.count++;
    rpc_call_on_cancel(call, on_waiter_cancel, w);
    return w;
}

/* Reply to a submission; RESULT (an encoded TxResult) when committed. */
static void reply_submitted(struct rpc_call *call, const uint8_t hash[EHR_HASH_BYTES],
                            bool committed, uint64_t height, uint32_t position,
                            const ledger_bytes *result)
{
    Ehr__V1__SubmitTransactionResponse r = EHR__V1__SUBMIT_TRANSACTION_RESPONSE__INIT;
    r.tx_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)hash};
    r.committed = committed;
    r.height = height;
    r.position = position;
    Ehr__V1__TxResult *res = NULL;
    if (result != NULL) {
        res = ehr__v1__tx_result__unpack(NULL, result->len, result->data);
        EHR_ASSERT(res != NULL); /* encoded by contracts/ */
        r.result = res;
    }
    reply_packed(call, &r.base);
    if (res != NULL)
        ehr__v1__tx_result__free_unpacked(res, NULL);
}

/* ---- SubmitTransaction ---- */

/*
 * The envelope of HASH is known already (node.proto, SubmitTransaction):
 * on this ledger, it is answered with its place (OK committed with
 * wait_for_commit, else ALREADY_EXISTS naming it); only in a mempool (ours
 * or the leader's), a wait_for_commit waits for its block and otherwise the
 * answer is ALREADY_EXISTS. So resubmitting an envelope whose outcome was
 * unknown is always safe and always ends in its outcome.
 */
static void answer_duplicate(struct node *n, struct rpc_call *call,
                             const uint8_t hash[EHR_HASH_BYTES], bool wait)
{
    ledger_tx_location loc;
    char msg[MESSAGE_BYTES_MAX];
    uint8_t *result = NULL;
    size_t result_len = 0;
    if (ledger_tx_get(n->ledger, hash, &loc, NULL, NULL, &result, &result_len, NULL) == 0) {
        if (wait) {
            ledger_bytes r = {result, result_len};
            reply_submitted(call, hash, true, loc.height, loc.index, &r);
            ehr_free(result);
            return;
        }
        ehr_free(result);
        snprintf(msg, sizeof msg,
                 "the transaction is already on the ledger at height %" PRIu64
                 ", position %" PRIu32,
                 loc.height, loc.index);
        rpc_call_fail(call, RPC_STATUS_ALREADY_EXISTS, msg);
        return;
    }
    if (wait) {
        wait_for_commit(n, waiter_new(n, call, hash, true));
        return;
    }
    rpc_call_fail(call, RPC_STATUS_ALREADY_EXISTS,
                  "the transaction is already admitted and not yet committed");
}

/* A submission at the leader whose signature is being checked. */
struct pending_admit {
    struct rpc_call *call; /* NULL once the call ended without us */
    bool wait_commit;
};

static void on_pending_admit_cancel(void *data, enum rpc_status why)
{
    struct pending_admit *pa = data;
    rpc_call_fail(pa->call, why, NULL);
    pa->call = NULL;
}

static void submit_admitted(struct node *n, void *ctx, int rc, const mempool_admit_result *res)
{
    struct pending_admit *pa = ctx;
    struct rpc_call *call = pa->call;
    bool wait = pa->wait_commit;
    ehr_free(pa);
    if (call == NULL)
        return; /* the client went away; the verdict stands */
    if (rc == EHR_EEXIST) {
        answer_duplicate(n, call, res->hash, wait);
        return;
    }
    if (rc == EHR_ECLOSED) { /* leadership lost or the node stopping: not admitted */
        fail_not_admitted(n, call);
        return;
    }
    if (rc != 0) {
        fail_err(call, rc, res->reason);
        return;
    }
    if (!wait) {
        reply_submitted(call, res->hash, false, 0, 0, NULL);
        return;
    }
    wait_for_commit(n, waiter_new(n, call, res->hash, true));
}

static void submit(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    /* The client's rate first: before the request is even decoded, so an
     * over-rate client costs a lookup, never a signature check. */
    struct rpc_peer_address from = rpc_call_peer_address(call);
    uint64_t wait_ms = node__submit_limit_take(&n->submit_limit, &from, uv_now(n->loop));
    if (wait_ms > 0) {
        fail_throttled(n, call, wait_ms);
        return;
    }
    Ehr__V1__SubmitTransactionRequest *r =
        ehr__v1__submit_transaction_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a SubmitTransactionRequest");
        return;
    }
    const uint8_t *env = r->envelope.data;
    size_t env_len = r->envelope.len;
    char msg[MEMPOOL_REASON_BYTES_MAX + 64];
    if (n->waits.count >= NODE_WAITERS_MAX) {
        rpc_call_fail(call, RPC_STATUS_RESOURCE_EXHAUSTED,
                      "too many submissions waiting on this node; retry later");
        goto out;
    }
    /* Already on this node's ledger: its place, whatever the role. */
    ledger_tx_view tv;
    ehr_diag diag = {{0}};
    int rc = ledger_tx_envelope_parse(env, env_len, &tv, &diag);
    if (rc != 0) {
        fail_err(call, rc, diag.msg);
        goto out;
    }
    uint8_t hash[EHR_HASH_BYTES];
    ledger_tx_hash(tv.body, tv.body_len, hash);
    ledger_tx_location loc;
    if (ledger_tx_get(n->ledger, hash, &loc, NULL, NULL, NULL, NULL, NULL) == 0) {
        answer_duplicate(n, call, hash, r->wait_for_commit);
        goto out;
    }
    if (n->cons.role == RAFT_LEADER) {
        struct pending_admit *pa = ehr_calloc(1, sizeof *pa);
        pa->call = call;
        pa->wait_commit = r->wait_for_commit;
        rpc_call_on_cancel(call, on_pending_admit_cancel, pa);
        node__admit(n, env, env_len, submit_admitted, pa);
        goto out;
    }
    /* A follower checks what costs nothing (the framing, a duplicate on its
     * own ledger, above) and leaves the rest, the signature above all, to
     * the leader's admission. */
    uint64_t request_id = ++n->waits.next_request_id;
    rc = node__forward(n, request_id, env, env_len);
    if (rc == EHR_EAGAIN) {
        snprintf(msg, sizeof msg, "the link to the leader is congested; retry shortly");
        fail_submit(n, call, RPC_STATUS_RESOURCE_EXHAUSTED, OUTCOME_NOT_ADMITTED, msg);
        goto out;
    }
    if (rc != 0) {
        fail_not_admitted(n, call);
        goto out;
    }
    struct node__waiter *w = waiter_new(n, call, hash, r->wait_for_commit);
    w->envelope = ehr_malloc(env_len);
    memcpy(w->envelope, env, env_len);
    w->envelope_len = env_len;
    w->request_id = request_id;
    w->forwarded_to = n->cons.leader;
    w->expires_at = uv_now(n->loop) + NODE_FORWARD_TIMEOUT_MS;
    size_t b = bucket_of_id(request_id);
    w->hnext = n->waits.forward_table[b];
    n->waits.forward_table[b] = w;
    node__link_push(&n->waits.forwards, &w->fifo);
out:
    ehr__v1__submit_transaction_request__free_unpacked(r, NULL);
}

static void api_forward_result(struct node *n, uint64_t request_id, int error, const char *reason,
                               const uint8_t *hash)
{
    struct node__waiter *w = n->waits.forward_table[bucket_of_id(request_id)];
    while (w != NULL && w->request_id != request_id)
        w = w->hnext;
    if (w == NULL)
        return; /* answered already (timed out, cancelled) */
    waiter_unlink(w);
    if (error != 0) {
        char msg[MESSAGE_BYTES_MAX + MEMPOOL_REASON_BYTES_MAX];
        if (error == EHR_ENOTLEADER || error == EHR_ECLOSED) {
            fail_not_admitted(n, w->call); /* it is no leader (any more) */
        } else if (error == EHR_EEXIST) {
            answer_duplicate(n, w->call, w->hash, w->wait_commit);
        } else {
            snprintf(msg, sizeof msg, "%s", reason && reason[0] ? reason : ehr_strerror(error));
            fail_err(w->call, error, msg);
        }
        waiter_free(w);
        return;
    }
    if (hash != NULL && memcmp(hash, w->hash, EHR_HASH_BYTES) != 0) {
        rpc_call_fail(w->call, RPC_STATUS_INTERNAL, "the leader answered for another transaction");
        waiter_free(w);
        return;
    }
    if (!w->wait_commit) {
        reply_submitted(w->call, w->hash, false, 0, 0, NULL);
        waiter_free(w);
        return;
    }
    /* The block may already be here: the verdict and the block travel on
     * one link in order, but the verdict may have been delayed. */
    ledger_tx_location loc;
    uint8_t *result = NULL;
    size_t result_len = 0;
    if (ledger_tx_get(n->ledger, w->hash, &loc, NULL, NULL, &result, &result_len, NULL) == 0) {
        ledger_bytes r = {result, result_len};
        reply_submitted(w->call, w->hash, true, loc.height, loc.index, &r);
        ehr_free(result);
        waiter_free(w);
        return;
    }
    ehr_free(w->envelope); /* admitted: no longer needed */
    w->envelope = NULL;
    n->waits.count++;
    wait_for_commit(n, w);
}

static void api_became_leader(struct node *n)
{
    EHR_ASSERT(n->cons.role == RAFT_LEADER);
    size_t count = 0;
    while (n->waits.forwards.next != &n->waits.forwards) {
        struct node__waiter *w = NODE__CONTAINER(n->waits.forwards.next, struct node__waiter, fifo);
        waiter_unlink(w);
        /* The old leader may have admitted it too (and handed it over): a
         * duplicate then reads as admitted (answer_duplicate). */
        struct pending_admit *pa = ehr_calloc(1, sizeof *pa);
        pa->call = w->call;
        pa->wait_commit = w->wait_commit;
        rpc_call_on_cancel(w->call, on_pending_admit_cancel, pa);
        node__admit(n, w->envelope, w->envelope_len, submit_admitted, pa);
        waiter_free(w);
        count++;
    }
    if (count > 0)
        ehr_log(EHR_LOG_INFO, "forwarded submissions admitted here after becoming leader",
                "count=%zu", count);
}

static void api_link_down(struct node *n, raft_id peer)
{
    struct node__link *l = n->waits.forwards.next;
    while (l != &n->waits.forwards) {
        struct node__waiter *w = NODE__CONTAINER(l, struct node__waiter, fifo);
        l = l->next;
        if (w->forwarded_to != peer)
            continue;
        waiter_unlink(w);
        fail_submit(n, w->call, RPC_STATUS_UNAVAILABLE, OUTCOME_UNKNOWN,
                    "the link to the leader failed before it answered; the transaction may or "
                    "may not have been admitted: resubmit the same envelope (safe: a known one "
                    "is recognised)");
        waiter_free(w);
    }
}

static void api_sweep(struct node *n)
{
    node__reads_sweep(n);
    node__health_update(n);
    uint64_t now = uv_now(n->loop);
    node__submit_limit_sweep(&n->submit_limit, now);
    struct node__link *lists[2] = {&n->waits.forwards, &n->waits.commit_waits};
    for (int i = 0; i < 2; i++) {
        while (lists[i]->next != lists[i]) {
            struct node__waiter *w = NODE__CONTAINER(lists[i]->next, struct node__waiter, fifo);
            if (w->expires_at > now)
                break;
            waiter_unlink(w);
            fail_submit(n, w->call, i == 0 ? RPC_STATUS_UNAVAILABLE : RPC_STATUS_DEADLINE_EXCEEDED,
                        OUTCOME_UNKNOWN,
                        i == 0 ? "the leader did not answer in time; resubmit the same envelope"
                               : "the transaction was not committed in time; it may still be");
            waiter_free(w);
        }
    }
}

/* ---- block streams ----
 *
 * The consensus loop never waits on a client (docs/DESIGN.md): a stream's
 * blocks are read, packed and queued only in stream_turn, which runs once
 * per loop turn while some stream has a block to send, and does at most
 * NODE_STREAM_TURN_BLOCKS_MAX blocks and NODE_STREAM_TURN_BYTES_MAX bytes
 * for all streams together, one block per stream in turn (round-robin), so
 * no stream waits behind another's backlog. Between two of its runs the
 * loop polls (without sleeping), so peer messages, ticks and the ready
 * protocol keep their pace whatever the streams ask. A stream is ready
 * (in streams_ready) while it is below the tip and its queue has room; the
 * tip moving (a block applied) and the queue draining (writable) make it
 * ready again.
 */

static void stream_turn(uv_idle_t *idle);

/* S may have a block to send: queue it for the next turns. */
static void stream_wake(struct node__stream *s)
{
    struct node *n = s->node;
    if (s->blocked || s->next_height > n->tip.height || s->ready.next != &s->ready)
        return;
    node__link_push(&n->waits.streams_ready, &s->ready);
    if (!uv_is_active((uv_handle_t *)&n->waits.stream_turn))
        uv_idle_start(&n->waits.stream_turn, stream_turn);
}

static void stream_end(struct node__stream *s, enum rpc_status st, const char *msg)
{
    node__stream_set_remove(&s->node->waits.streams, &s->slot);
    node__link_remove(&s->ready);
    rpc_stream_finish(s->stream, st, msg);
    ehr_free(s);
}

static void on_stream_cancel(void *data, enum rpc_status why)
{
    stream_end(data, why, NULL);
}

static void on_stream_writable(struct rpc_stream *stream, void *data)
{
    (void)stream;
    struct node__stream *s = data;
    s->blocked = false;
    stream_wake(s);
}

/* Send S its next block. Returns the bytes queued (0 when the stream is
 * blocked or ended instead; it is then no longer ready). */
static size_t stream_send_one(struct node__stream *s)
{
    struct node *n = s->node;
    EHR_ASSERT(s->next_height <= n->tip.height);
    uint8_t *block;
    size_t len;
    int rc = ledger_block_get(n->ledger, s->next_height, &block, &len, NULL);
    if (rc != 0) {
        stream_end(s, RPC_STATUS_INTERNAL, "cannot read a block from the ledger");
        return 0;
    }
    ledger_block_view v;
    rc = ledger_block_parse(block, len, &v, NULL);
    if (rc != 0) {
        ehr_free(block);
        stream_end(s, RPC_STATUS_INTERNAL, "a stored block does not parse");
        return 0;
    }
    Ehr__V1__StreamBlocksResponse r = EHR__V1__STREAM_BLOCKS_RESPONSE__INIT;
    r.height = s->next_height;
    r.block = (ProtobufCBinaryData){len, block};
    r.block_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, v.hash};
    size_t plen = protobuf_c_message_get_packed_size(&r.base);
    uint8_t *buf = ehr_malloc(plen);
    protobuf_c_message_pack(&r.base, buf);
    ledger_block_view_release(&v);
    ehr_free(block);
    rc = rpc_stream_send(s->stream, buf, plen);
    ehr_free(buf);
    if (rc == EHR_EAGAIN) {
        s->blocked = true; /* on_stream_writable wakes it */
        node__link_remove(&s->ready);
        return 0;
    }
    if (rc != 0) {
        stream_end(s, RPC_STATUS_UNAVAILABLE, NULL);
        return 0;
    }
    s->next_height++;
    if (s->next_height > n->tip.height)
        node__link_remove(&s->ready); /* the next block applied wakes it */
    return plen;
}

/* One turn's share of the block streams' work (the budget above). */
static void stream_turn(uv_idle_t *idle)
{
    struct node *n = idle->data;
    struct node__link *ready = &n->waits.streams_ready;
    size_t bytes = 0;
    for (uint32_t blocks = 0; blocks < NODE_STREAM_TURN_BLOCKS_MAX &&
                              bytes < NODE_STREAM_TURN_BYTES_MAX && ready->next != ready;
         blocks++) {
        struct node__stream *s = NODE__CONTAINER(ready->next, struct node__stream, ready);
        /* To the back first: a stream that stays ready waits for the others. */
        node__link_remove(&s->ready);
        node__link_push(ready, &s->ready);
        bytes += stream_send_one(s);
    }
    if (ready->next == ready)
        uv_idle_stop(idle);
}

static void stream_blocks(struct rpc_stream *stream, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__StreamBlocksRequest *r = ehr__v1__stream_blocks_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_stream_finish(stream, RPC_STATUS_INVALID_ARGUMENT,
                          "malformed request: not a StreamBlocksRequest");
        return;
    }
    uint64_t from = r->from_height;
    ehr__v1__stream_blocks_request__free_unpacked(r, NULL);
    char msg[MESSAGE_BYTES_MAX];
    if (from > n->tip.height + 1) {
        snprintf(msg, sizeof msg, "from_height %" PRIu64 " is above the tip + 1 (%" PRIu64 ")",
                 from, n->tip.height + 1);
        rpc_stream_finish(stream, RPC_STATUS_NOT_FOUND, msg);
        return;
    }
    struct node__stream *s = ehr_calloc(1, sizeof *s);
    if (node__stream_set_admit(&n->waits.streams, stream, &s->slot) != 0) {
        ehr_free(s);
        return;
    }
    s->node = n;
    s->stream = stream;
    s->next_height = from;
    node__link_init(&s->ready);
    rpc_stream_on_cancel(stream, on_stream_cancel, s);
    rpc_stream_on_writable(stream, on_stream_writable, s);
    stream_wake(s);
}

static void api_block_applied(struct node *n, uint64_t height,
                              const uint8_t (*hashes)[EHR_HASH_BYTES], const ledger_bytes *results,
                              size_t count)
{
    if (n->waits.count > 0)
        for (size_t i = 0; i < count; i++) {
            struct node__waiter **p = &n->waits.commit_table[bucket_of_hash(hashes[i])];
            while (*p != NULL) {
                struct node__waiter *w = *p;
                if (memcmp(w->hash, hashes[i], EHR_HASH_BYTES) != 0) {
                    p = &w->hnext;
                    continue;
                }
                *p = w->hnext;
                w->hnext = NULL;
                node__link_remove(&w->fifo);
                n->waits.count--;
                reply_submitted(w->call, w->hash, true, height, (uint32_t)i, &results[i]);
                waiter_free(w);
            }
        }
    struct node__link *streams = &n->waits.streams.slots;
    for (struct node__link *l = streams->next; l != streams; l = l->next)
        stream_wake(NODE__CONTAINER(l, struct node__stream, slot.link));
}

/* ---- queries ---- */

static void get_transaction(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__GetTransactionRequest *r = ehr__v1__get_transaction_request__unpack(NULL, len, req);
    if (r == NULL || r->tx_hash.len != EHR_HASH_BYTES) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      r == NULL ? "malformed request: not a GetTransactionRequest"
                                : "tx_hash must be 32 bytes");
        if (r != NULL)
            ehr__v1__get_transaction_request__free_unpacked(r, NULL);
        return;
    }
    ledger_tx_location loc;
    uint8_t *env = NULL, *block = NULL;
    size_t env_len = 0, block_len = 0;
    uint8_t *result = NULL;
    size_t result_len = 0;
    int rc =
        ledger_tx_get(n->ledger, r->tx_hash.data, &loc, &env, &env_len, &result, &result_len, NULL);
    ehr__v1__get_transaction_request__free_unpacked(r, NULL);
    if (rc == EHR_ENOTFOUND) {
        rpc_call_fail(call, RPC_STATUS_NOT_FOUND, "no committed transaction has this hash");
        return;
    }
    ledger_block_view v;
    if (rc == 0)
        rc = ledger_block_get(n->ledger, loc.height, &block, &block_len, NULL);
    if (rc == 0)
        rc = ledger_block_parse(block, block_len, &v, NULL);
    if (rc != 0) {
        ehr_free(env);
        ehr_free(block);
        ehr_free(result);
        fail_err(call, rc == EHR_ENOTFOUND ? EHR_ECORRUPT : rc, "cannot read the ledger");
        return;
    }
    Ehr__V1__GetTransactionResponse resp = EHR__V1__GET_TRANSACTION_RESPONSE__INIT;
    resp.envelope = (ProtobufCBinaryData){env_len, env};
    resp.height = loc.height;
    resp.position = loc.index;
    resp.block_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, v.hash};
    resp.result = ehr__v1__tx_result__unpack(NULL, result_len, result);
    if (resp.result == NULL)
        fail_err(call, EHR_ECORRUPT, "the transaction's stored result does not decode");
    else
        reply_packed(call, &resp.base);
    if (resp.result != NULL)
        ehr__v1__tx_result__free_unpacked(resp.result, NULL);
    ledger_block_view_release(&v);
    ehr_free(result);
    ehr_free(env);
    ehr_free(block);
}

static void get_block(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__GetBlockRequest *r = ehr__v1__get_block_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a GetBlockRequest");
        return;
    }
    uint64_t height = r->height;
    ehr__v1__get_block_request__free_unpacked(r, NULL);
    char msg[MESSAGE_BYTES_MAX];
    if (height > n->tip.height) {
        snprintf(msg, sizeof msg, "no block at height %" PRIu64 " (the tip is %" PRIu64 ")", height,
                 n->tip.height);
        rpc_call_fail(call, RPC_STATUS_NOT_FOUND, msg);
        return;
    }
    uint8_t *block;
    size_t block_len;
    ledger_block_view v;
    int rc = ledger_block_get(n->ledger, height, &block, &block_len, NULL);
    if (rc == 0) {
        rc = ledger_block_parse(block, block_len, &v, NULL);
        if (rc != 0)
            ehr_free(block);
    }
    if (rc != 0) {
        fail_err(call, rc == EHR_ENOTFOUND ? EHR_ECORRUPT : rc, "cannot read the block");
        return;
    }
    Ehr__V1__GetBlockResponse resp = EHR__V1__GET_BLOCK_RESPONSE__INIT;
    resp.block = (ProtobufCBinaryData){block_len, block};
    resp.block_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, v.hash};
    reply_packed(call, &resp.base);
    ledger_block_view_release(&v);
    ehr_free(block);
}

/* This process's resident memory in bytes (/proc/self/statm), 0 if unknown. */
static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    unsigned long long size_pages = 0, resident_pages = 0;
    int got = fscanf(f, "%llu %llu", &size_pages, &resident_pages);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return got == 2 && page > 0 ? (uint64_t)resident_pages * (uint64_t)page : 0;
}

static Ehr__V1__NodeRole role_of(const struct node *n, const struct raft_status *rs)
{
    if (n->cons.role == RAFT_FOLLOWER && !raft_config_is_voter(&rs->config, rs->id))
        return EHR__V1__NODE_ROLE__NODE_ROLE_LEARNER;
    switch (n->cons.role) {
    case RAFT_LEADER:
        return EHR__V1__NODE_ROLE__NODE_ROLE_LEADER;
    case RAFT_CANDIDATE:
    case RAFT_PRE_CANDIDATE:
        return EHR__V1__NODE_ROLE__NODE_ROLE_CANDIDATE;
    default:
        return EHR__V1__NODE_ROLE__NODE_ROLE_FOLLOWER;
    }
}

static void get_status(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__GetStatusRequest *r = ehr__v1__get_status_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a GetStatusRequest");
        return;
    }
    ehr__v1__get_status_request__free_unpacked(r, NULL);
    struct raft_status rs;
    raft_status_get(n->cons.raft, &rs);
    const struct node_member *self = &n->peers.members[n->peers.self_index];
    const struct node_member *leader = node__member_by_id(n, n->cons.leader);

    Ehr__V1__GetStatusResponse resp = EHR__V1__GET_STATUS_RESPONSE__INIT;
    resp.node_id = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)self->key};
    resp.name = (char *)self->name;
    resp.role = role_of(n, &rs);
    resp.term = rs.hard_state.term;
    if (leader != NULL) {
        resp.leader_id = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)leader->key};
        resp.leader_rpc_address = (char *)(leader->self ? n->cfg.rpc_listen : leader->rpc_address);
    }
    resp.commit_index = rs.hard_state.commit;
    resp.applied_index = n->cons.applied_index;
    resp.tip_height = n->tip.height;
    resp.tip_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, n->tip.hash};
    resp.chain_id = n->chain.chain_id;
    resp.mempool_tx_count = mempool_count(&n->pool);
    resp.mempool_bytes = mempool_bytes(&n->pool);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        resp.cpu_user_ms =
            (uint64_t)ru.ru_utime.tv_sec * 1000 + (uint64_t)ru.ru_utime.tv_usec / 1000;
        resp.cpu_system_ms =
            (uint64_t)ru.ru_stime.tv_sec * 1000 + (uint64_t)ru.ru_stime.tv_usec / 1000;
    }
    resp.uptime_ms = uv_now(n->loop) - n->started_ms;
    resp.loop_turn_max_us = node__loop_turn_max_us(n);
    resp.loop_turn_cpu_max_us = node__loop_turn_cpu_max_us(n);
    resp.reads_refused = n->reads.refused_count;
    resp.rss_bytes = rss_bytes();
    resp.restore_term = rs.hard_state.restore_term;

    Ehr__V1__PeerStatus peers[NODE_MEMBERS_MAX];
    Ehr__V1__PeerStatus *peer_ptrs[NODE_MEMBERS_MAX];
    /* Members are kept in node-key order (the ledger's scan order). */
    size_t np = 0;
    for (size_t i = 0; i < n->peers.count; i++) {
        const struct node_member *m = &n->peers.members[i];
        if (m->self)
            continue;
        Ehr__V1__PeerStatus *p = &peers[np];
        ehr__v1__peer_status__init(p);
        p->node_id = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)m->key};
        p->name = (char *)m->name;
        p->peer_address = (char *)m->peer_address;
        p2p_link_info li;
        p->link_state = EHR__V1__LINK_STATE__LINK_STATE_DISCONNECTED;
        if (p2p_link_info_get(n->peers.p2p, m->key, &li) == 0)
            p->link_state = li.up ? EHR__V1__LINK_STATE__LINK_STATE_CONNECTED
                            : li.connection_count > 0
                                ? EHR__V1__LINK_STATE__LINK_STATE_CONNECTING
                                : EHR__V1__LINK_STATE__LINK_STATE_DISCONNECTED;
        struct raft_progress_info pi;
        if (n->cons.role == RAFT_LEADER && raft_progress_get(n->cons.raft, m->id, &pi) == 0)
            p->match_index = pi.match;
        p->rpc_address = (char *)m->rpc_address;
        p->voter = raft_config_is_voter(&rs.config, m->id);
        p->learner = raft_config_is_learner(&rs.config, m->id);
        peer_ptrs[np++] = p;
    }
    resp.n_peers = np;
    resp.peers = peer_ptrs;
    reply_packed(call, &resp.base);
}

/* ---- start and drain ---- */

static int split_host_port(const char *address, char *host, size_t host_size, uint16_t *port)
{
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address)
        return EHR_EINVAL;
    const char *h = address;
    size_t hl = (size_t)(colon - address);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl + 1 > host_size)
        return EHR_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    unsigned long p = 0;
    for (const char *c = colon + 1; *c; c++) {
        if (*c < '0' || *c > '9' || p > 65535)
            return EHR_EINVAL;
        p = p * 10 + (unsigned long)(*c - '0');
    }
    if (colon[1] == '\0' || p > 65535)
        return EHR_EINVAL;
    *port = (uint16_t)p;
    return 0;
}

static void api_drain(struct node *n);

/* The TLS files the config names. */
static struct rpc_tls_server_files service_tls_files(const struct node *n)
{
    struct rpc_tls_server_files files = {.cert_file = n->cfg.tls_cert_file,
                                         .key_file = n->cfg.tls_key_file,
                                         .client_ca_file = n->cfg.tls_client_ca_file};
    return files;
}

int node_tls_reload(struct node *n, ehr_diag *diag)
{
    EHR_ASSERT(n != NULL);
    if (n->rpc_tls == NULL)
        return ehr_diag_fail(
            diag, EHR_ENOTFOUND,
            "the API is not served over TLS (no tls_cert_file): nothing to reload");
    struct rpc_tls_server_files files = service_tls_files(n);
    return rpc_tls_server_reload(n->rpc_tls, &files, diag);
}

int node__service_start(struct node *n, ehr_diag *diag)
{
    struct rpc_server_config rc_cfg = {.message_bytes_max = (size_t)n->cfg.limits.rpc_message_bytes,
                                       .stream_stall_timeout_ms = NODE_STREAM_STALL_TIMEOUT_MS};
    int rc = rpc_server_new(n->loop, &rc_cfg, &n->rpc);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot set up the RPC server: %s", ehr_strerror(rc));
    node__submit_limit_init(&n->submit_limit, n->cfg.limits.submit_rate_per_s,
                            n->cfg.limits.submit_burst);
    n->api = (struct node__api_hooks){.block_applied = api_block_applied,
                                      .became_leader = api_became_leader,
                                      .forward_result = api_forward_result,
                                      .link_down = api_link_down,
                                      .sweep = api_sweep,
                                      .drain = api_drain};
    rpc_server_add_unary(n->rpc, PATH_PREFIX "SubmitTransaction", submit, n);
    rpc_server_add_unary(n->rpc, PATH_PREFIX "GetTransaction", get_transaction, n);
    rpc_server_add_unary(n->rpc, PATH_PREFIX "GetBlock", get_block, n);
    rpc_server_add_unary(n->rpc, PATH_PREFIX "GetStatus", get_status, n);
    rpc_server_add_stream(n->rpc, PATH_PREFIX "StreamBlocks", stream_blocks, n);
    node__listings_add(n);
    node__health_add(n);
    rc = node__reflection_add(n, diag);
    if (rc != 0)
        return rc;
    rc = node__blob_service_start(n, diag);
    if (rc != 0)
        return rc;
    node__capsule_service_add(n);
    node__replication_start(n);
    char listen[NODE_CONFIG_ADDRESS_BYTES_MAX + 1];
    ehr_diag why;
    rc = node_config_listen_resolve(n->cfg.rpc_listen, listen, sizeof listen, &why);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot serve RPC on %s: %s", n->cfg.rpc_listen, why.msg);
    bool insecure = false;
    rc = node_config_rpc_exposure_check(&n->cfg, listen, &insecure, diag);
    if (rc != 0)
        return rc;
    if (insecure)
        ehr_log(EHR_LOG_WARN, "the RPC API is served without TLS beyond this host",
                "rpc_listen=%s insecure_rpc=true", n->cfg.rpc_listen);
    if (n->cfg.tls_cert_file != NULL) {
        struct rpc_tls_server_files files = service_tls_files(n);
        rc = rpc_tls_server_new(&files, &n->rpc_tls, &why);
        if (rc != 0)
            return ehr_diag_fail(diag, rc, "cannot serve RPC over TLS: %s", why.msg);
        rpc_server_use_tls(n->rpc, n->rpc_tls);
    }
    char host[NODE_CONFIG_ADDRESS_BYTES_MAX + 1];
    uint16_t port;
    rc = split_host_port(listen, host, sizeof host, &port);
    EHR_ASSERT(rc == 0); /* node_config_listen_resolve wrote IP:PORT */
    rc = rpc_server_listen(n->rpc, host, port);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot serve RPC on %s: %s", n->cfg.rpc_listen,
                             rc < 0 && rc > -4096 ? uv_strerror(rc) : ehr_strerror(rc));
    return 0;
}

static void api_drain(struct node *n)
{
    struct node__link *lists[2] = {&n->waits.forwards, &n->waits.commit_waits};
    for (int i = 0; i < 2; i++)
        while (lists[i]->next != lists[i]) {
            struct node__waiter *w = NODE__CONTAINER(lists[i]->next, struct node__waiter, fifo);
            waiter_unlink(w);
            fail_submit(n, w->call, RPC_STATUS_UNAVAILABLE, OUTCOME_UNKNOWN,
                        "the node is shutting down; the transaction may be admitted: resubmit "
                        "the same envelope to another node");
            waiter_free(w);
        }
    node__health_drain(n);
    node__reflection_drain(n);
    struct node__link *streams = &n->waits.streams.slots;
    while (!node__link_alone(streams))
        stream_end(NODE__CONTAINER(streams->next, struct node__stream, slot.link),
                   RPC_STATUS_UNAVAILABLE, "the node is shutting down");
}
