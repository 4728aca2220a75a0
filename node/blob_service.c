/*
 * blob_service.c - the API of the blob store (node.proto, "Blobs"):
 * PutBlob, a client-streaming upload of record ciphertext by a member, and
 * GetBlob, a server-streaming download by the record's patient, its
 * custodian or the holder of a committed permit.
 *
 * Every file operation (create, write and hash a chunk, commit, abort,
 * open, read) runs on libuv's worker pool, one at a time per call, so the
 * loop never waits on a disk (docs/DESIGN.md, "Clients and the consensus
 * loop"): an upload is paused (rpc_upload_pause) while its chunk is
 * written, so its client can send at most one stream window more; a
 * download reads its next chunk only once the last one is queued. What one
 * call holds is one chunk; how many calls are open is bounded on the node,
 * per connection and per client address (stream_set.c). The permission
 * checks read the committed world state on the loop, as GetRecord does.
 *
 * A call is finished only once no work of it is out, so the RPC server's
 * close (which waits for every call) also waits for the work, and the node
 * outlives it.
 *
 * Not here: the store itself (blobs.c); deleting the blobs of erased
 * records (blob_erase.c); replication to other members' nodes
 * (replication.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ehr/v1/node.pb-c.h"
#include "ehr/v1/state.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "node_internal.h"

#define PATH_PREFIX "/ehr.v1.Node/"

/* ---- PutBlob ---- */

enum put_job { PUT_BEGIN, PUT_WRITE, PUT_COMMIT, PUT_ABORT };

struct blob_put {
    struct node *node;
    struct rpc_upload *upload; /* NULL once finished */
    struct node__stream_slot slot;
    struct node_blob_writer writer;
    bool header_seen;
    bool writer_open;
    bool working;   /* a job is on the worker pool */
    bool cancelled; /* the call ended without us: abort once the job is back */
    uint8_t id[NODE_BLOB_ID_BYTES];
    uint64_t size_bytes; /* claimed */
    uint64_t received;   /* chunk bytes accepted */
    uint8_t *chunk;      /* the chunk being written (NODE_BLOB_CHUNK_BYTES_MAX) */
    size_t chunk_len;
    enum put_job job;
    int job_rc;
    ehr_diag job_diag;
    enum rpc_status fail_status; /* OK until put_fail */
    char fail_msg[EHR_DIAG_BYTES_MAX + 64];
    uv_work_t work;
};

static void put_free(struct blob_put *p)
{
    EHR_ASSERT(p->upload == NULL);
    EHR_ASSERT(!p->working);
    EHR_ASSERT(!p->writer_open);
    node__stream_set_remove(&p->node->blobs.uploads, &p->slot);
    ehr_free(p->chunk);
    ehr_free(p);
}

static void put_job_run(uv_work_t *w)
{
    struct blob_put *p = w->data;
    switch (p->job) {
    case PUT_BEGIN:
        p->job_rc = node_blob_write_begin(&p->node->blobs.store, p->id, &p->writer, &p->job_diag);
        break;
    case PUT_WRITE:
        p->job_rc = node_blob_write(&p->writer, p->chunk, p->chunk_len, &p->job_diag);
        break;
    case PUT_COMMIT:
        p->job_rc = node_blob_write_commit(&p->writer, &p->job_diag);
        break;
    case PUT_ABORT:
        node_blob_write_abort(&p->writer);
        p->job_rc = 0;
        break;
    }
}

static void put_job_done(uv_work_t *w, int status);

static void put_job_start(struct blob_put *p, enum put_job job)
{
    EHR_ASSERT(!p->working);
    p->job = job;
    p->job_rc = 0;
    p->job_diag.msg[0] = '\0';
    p->working = true;
    p->work.data = p;
    if (p->upload != NULL)
        rpc_upload_pause(p->upload);
    int rc = uv_queue_work(p->node->loop, &p->work, put_job_run, put_job_done);
    EHR_ASSERT(rc == 0); /* only fails for a NULL callback */
}

/* Fail the call with STATUS and MSG: first abort what is on disk (a job),
 * then finish the call, so no job outlives its call; then free. */
static void put_fail(struct blob_put *p, enum rpc_status status, const char *msg)
{
    if (p->fail_status == RPC_STATUS_OK) { /* the first reason is the one told */
        p->fail_status = status;
        snprintf(p->fail_msg, sizeof p->fail_msg, "%s", msg);
    }
    if (p->working)
        return; /* put_job_done comes back here */
    if (p->writer_open) {
        put_job_start(p, PUT_ABORT);
        return;
    }
    if (p->upload != NULL) {
        rpc_upload_fail(p->upload, p->fail_status, p->fail_msg);
        p->upload = NULL;
    }
    put_free(p);
}

static void put_job_done(uv_work_t *w, int status)
{
    (void)status; /* never cancelled: we do not call uv_cancel */
    struct blob_put *p = w->data;
    p->working = false;
    if (p->job == PUT_ABORT) {
        p->writer_open = false;
        put_fail(p, p->fail_status, p->fail_msg);
        return;
    }
    if (p->job == PUT_BEGIN && p->job_rc == 0)
        p->writer_open = true;
    if (p->job == PUT_COMMIT)
        p->writer_open = false; /* commit finishes the writer, stored or not */
    if (p->cancelled) {
        put_fail(p, RPC_STATUS_CANCELLED, "the upload ended");
        return;
    }
    if (p->job_rc != 0) {
        char msg[EHR_DIAG_BYTES_MAX + 64];
        snprintf(msg, sizeof msg, "blob not stored: %s", p->job_diag.msg);
        enum rpc_status st = p->job_rc == EHR_EINVAL    ? RPC_STATUS_INVALID_ARGUMENT
                             : p->job_rc == EHR_ETOOBIG ? RPC_STATUS_RESOURCE_EXHAUSTED
                                                        : RPC_STATUS_INTERNAL;
        if (st == RPC_STATUS_INTERNAL)
            ehr_log(EHR_LOG_ERROR, "blob store failed", "err=%s why=\"%s\"", ehr_errname(p->job_rc),
                    p->job_diag.msg);
        put_fail(p, st, msg);
        return;
    }
    if (p->job == PUT_COMMIT) {
        Ehr__V1__PutBlobResponse r = EHR__V1__PUT_BLOB_RESPONSE__INIT;
        r.blob_id = (ProtobufCBinaryData){NODE_BLOB_ID_BYTES, p->id};
        r.size_bytes = p->size_bytes;
        uint8_t buf[64];
        size_t len = ehr__v1__put_blob_response__pack(&r, buf);
        EHR_ASSERT(len <= sizeof buf);
        char hex[NODE_BLOB_ID_HEX_BYTES + 1];
        node_blob_id_hex(hex, p->id);
        ehr_log(EHR_LOG_INFO, "blob stored", "blob=%.16s bytes=%" PRIu64, hex, p->size_bytes);
        rpc_upload_reply(p->upload, buf, len);
        p->upload = NULL;
        put_free(p);
        return;
    }
    rpc_upload_resume(p->upload); /* the next chunk */
}

static void put_cancelled(void *data, enum rpc_status why)
{
    struct blob_put *p = data;
    (void)why;
    if (p->working) {
        p->cancelled = true; /* finished once the job is back */
        return;
    }
    put_fail(p, RPC_STATUS_CANCELLED, "the upload ended");
}

/* The first message: the header, checked and authorised, then the file. */
static void put_header(struct blob_put *p, Ehr__V1__PutBlobRequest *q)
{
    struct node *n = p->node;
    char msg[EHR_DIAG_BYTES_MAX];
    if (q->blob_id.len != NODE_BLOB_ID_BYTES || q->chunk.len != 0) {
        put_fail(p, RPC_STATUS_INVALID_ARGUMENT,
                 "the first PutBlob message is the header: a 32-byte blob_id, size_bytes and "
                 "auth, and no chunk");
        return;
    }
    if (q->size_bytes > n->blobs.store.bytes_max) {
        snprintf(msg, sizeof msg, "a blob of %" PRIu64 " bytes is over the limit of %" PRIu64,
                 q->size_bytes, n->blobs.store.bytes_max);
        put_fail(p, RPC_STATUS_RESOURCE_EXHAUSTED, msg);
        return;
    }
    struct node__reader reader;
    node__answer a;
    if (node__read_authenticate(n, "PutBlob", &q->base, &q->auth, q->blob_id, &reader, &a) != 0 ||
        node__read_institution(n, "PutBlob", q->blob_id, &reader, &a,
                               "only a member's node key or a practitioner of a member stores "
                               "blobs") != 0) {
        put_fail(p, a.status, a.msg);
        return;
    }
    memcpy(p->id, q->blob_id.data, NODE_BLOB_ID_BYTES);
    p->size_bytes = q->size_bytes;
    p->header_seen = true;
    put_job_start(p, PUT_BEGIN);
}

static void put_message(struct rpc_upload *upload, const uint8_t *message, size_t len, void *data)
{
    struct blob_put *p = data;
    EHR_ASSERT(!p->working); /* paused while a job is out */
    Ehr__V1__PutBlobRequest *q = ehr__v1__put_blob_request__unpack(NULL, len, message);
    if (q == NULL) {
        put_fail(p, RPC_STATUS_INVALID_ARGUMENT, "malformed request: not a PutBlobRequest");
        return;
    }
    if (!p->header_seen) {
        put_header(p, q);
        ehr__v1__put_blob_request__free_unpacked(q, NULL);
        return;
    }
    char msg[160];
    if (q->blob_id.len != 0 || q->size_bytes != 0 || q->auth != NULL || q->chunk.len == 0) {
        put_fail(p, RPC_STATUS_INVALID_ARGUMENT,
                 "a PutBlob message after the header carries one non-empty chunk and nothing "
                 "else");
    } else if (q->chunk.len > NODE_BLOB_CHUNK_BYTES_MAX) {
        snprintf(msg, sizeof msg, "a chunk of %zu bytes is over the limit of %u", q->chunk.len,
                 NODE_BLOB_CHUNK_BYTES_MAX);
        put_fail(p, RPC_STATUS_RESOURCE_EXHAUSTED, msg);
    } else if (q->chunk.len > p->size_bytes - p->received) {
        snprintf(msg, sizeof msg,
                 "more bytes than the header's size_bytes (%" PRIu64 "): %" PRIu64 " and %zu more",
                 p->size_bytes, p->received, q->chunk.len);
        put_fail(p, RPC_STATUS_INVALID_ARGUMENT, msg);
    } else {
        if (p->chunk == NULL)
            p->chunk = ehr_malloc(NODE_BLOB_CHUNK_BYTES_MAX);
        memcpy(p->chunk, q->chunk.data, q->chunk.len);
        p->chunk_len = q->chunk.len;
        p->received += q->chunk.len;
        put_job_start(p, PUT_WRITE);
    }
    ehr__v1__put_blob_request__free_unpacked(q, NULL);
}

static void put_end(struct rpc_upload *upload, void *data)
{
    struct blob_put *p = data;
    EHR_ASSERT(!p->working);
    char msg[160];
    if (!p->header_seen) {
        put_fail(p, RPC_STATUS_INVALID_ARGUMENT, "PutBlob without a header");
    } else if (p->received != p->size_bytes) {
        snprintf(msg, sizeof msg,
                 "the upload ended after %" PRIu64 " of the %" PRIu64 " bytes its header claims",
                 p->received, p->size_bytes);
        put_fail(p, RPC_STATUS_INVALID_ARGUMENT, msg);
    } else {
        put_job_start(p, PUT_COMMIT);
    }
}

static void put_blob(struct rpc_upload *upload, void *data)
{
    struct node *n = data;
    struct blob_put *p = ehr_calloc(1, sizeof *p);
    p->node = n;
    p->writer.fd = -1;
    char msg[192];
    if (node__stream_set_take(&n->blobs.uploads, rpc_upload_connection_id(upload),
                              rpc_upload_peer_address(upload), &p->slot, msg, sizeof msg) != 0) {
        rpc_upload_fail(upload, RPC_STATUS_RESOURCE_EXHAUSTED, msg);
        ehr_free(p);
        return;
    }
    p->upload = upload;
    rpc_upload_on_cancel(upload, put_cancelled, p);
    rpc_upload_on_message(upload, put_message, put_end, p);
}

/* ---- GetBlob ---- */

enum get_job { GET_OPEN, GET_READ };

struct blob_get {
    struct node *node;
    struct rpc_stream *stream; /* NULL once finished */
    struct node__stream_slot slot;
    struct node_blob_reader reader;
    uint8_t id[NODE_BLOB_ID_BYTES];
    uint8_t record_id[EHR_HASH_BYTES]; /* whose erasure ends the download */
    bool working;
    bool cancelled;
    bool blocked; /* a send said EAGAIN: the message waits in `out` */
    uint8_t *buf; /* the chunk read (send_bytes) */
    size_t buf_len;
    size_t send_bytes; /* chunk size: NODE_BLOB_SEND_BYTES or less */
    uint8_t *out;      /* the packed message */
    size_t out_len;
    enum get_job job;
    long job_rc;
    ehr_diag job_diag;
    uv_work_t work;
};

static void get_free(struct blob_get *g)
{
    EHR_ASSERT(g->stream == NULL);
    EHR_ASSERT(!g->working);
    node_blob_read_close(&g->reader); /* a close(2): no wait worth a worker */
    node__stream_set_remove(&g->node->blobs.downloads, &g->slot);
    ehr_free(g->buf);
    ehr_free(g->out);
    ehr_free(g);
}

static void get_finish(struct blob_get *g, enum rpc_status status, const char *msg)
{
    if (g->stream != NULL) {
        rpc_stream_finish(g->stream, status, msg);
        g->stream = NULL;
    }
    if (!g->working)
        get_free(g);
}

static void get_job_run(uv_work_t *w)
{
    struct blob_get *g = w->data;
    if (g->job == GET_OPEN)
        g->job_rc = node_blob_read_open(&g->node->blobs.store, g->id, &g->reader, &g->job_diag);
    else
        g->job_rc = node_blob_read(&g->reader, g->buf, g->send_bytes, &g->job_diag);
}

static void get_job_done(uv_work_t *w, int status);

static void get_job_start(struct blob_get *g, enum get_job job)
{
    EHR_ASSERT(!g->working);
    g->job = job;
    g->working = true;
    g->work.data = g;
    int rc = uv_queue_work(g->node->loop, &g->work, get_job_run, get_job_done);
    EHR_ASSERT(rc == 0);
}

/* Send what is in OUT; on EAGAIN wait for the writable callback. Then read
 * the next chunk, or finish at the end (AT_END). */
static void get_send(struct blob_get *g, bool at_end)
{
    int rc = rpc_stream_send(g->stream, g->out, g->out_len);
    if (rc == EHR_EAGAIN) {
        g->blocked = true;
        return;
    }
    if (rc != 0)
        return; /* ended: the cancel callback finishes it */
    if (at_end || g->reader.offset == g->reader.size) {
        get_finish(g, RPC_STATUS_OK, NULL);
        return;
    }
    get_job_start(g, GET_READ);
}

static void get_pack(struct blob_get *g, const Ehr__V1__GetBlobResponse *r)
{
    g->out_len = ehr__v1__get_blob_response__get_packed_size(r);
    EHR_ASSERT(g->out_len <= NODE_BLOB_SEND_BYTES + 32);
    ehr__v1__get_blob_response__pack(r, g->out);
}

static void get_job_done(uv_work_t *w, int status)
{
    (void)status;
    struct blob_get *g = w->data;
    g->working = false;
    if (g->cancelled || g->stream == NULL) {
        get_finish(g, RPC_STATUS_CANCELLED, "gone");
        return;
    }
    if (g->job_rc < 0) {
        enum rpc_status st =
            g->job_rc == EHR_ENOTFOUND ? RPC_STATUS_NOT_FOUND : RPC_STATUS_INTERNAL;
        if (st == RPC_STATUS_INTERNAL)
            ehr_log(EHR_LOG_ERROR, "blob read failed", "err=%s why=\"%s\"",
                    ehr_errname((int)g->job_rc), g->job_diag.msg);
        get_finish(g, st, g->job_diag.msg);
        return;
    }
    /* Nothing of a record is served from its erase's block on, not even
     * the rest of a download that began before it (the file may be gone
     * from the directory, not from an open descriptor). */
    bool erased = false;
    if (node__state_record_erased(g->node->ledger, g->record_id, &erased) != 0 || erased) {
        get_finish(g, RPC_STATUS_FAILED_PRECONDITION,
                   erased ? "the record was erased by its patient" : "cannot read the record");
        return;
    }
    Ehr__V1__GetBlobResponse r = EHR__V1__GET_BLOB_RESPONSE__INIT;
    if (g->job == GET_OPEN) {
        r.size_bytes = g->reader.size;
        get_pack(g, &r);
        get_send(g, false);
        return;
    }
    if (g->job_rc == 0) { /* the file is shorter than it was at open */
        get_finish(g, RPC_STATUS_DATA_LOSS, "the blob changed while it was read");
        return;
    }
    r.chunk = (ProtobufCBinaryData){(size_t)g->job_rc, g->buf};
    get_pack(g, &r);
    get_send(g, false);
}

static void get_writable(struct rpc_stream *stream, void *data)
{
    struct blob_get *g = data;
    if (!g->blocked)
        return;
    g->blocked = false;
    get_send(g, false);
}

static void get_cancelled(void *data, enum rpc_status why)
{
    struct blob_get *g = data;
    (void)why;
    g->cancelled = true;
    /* With a job out, the call stays open until it is back (get_job_done
     * finishes it): the server's close, and so the node's stop, wait for
     * the job, which uses the store and the node (as uploads do). */
    if (g->working)
        return;
    get_finish(g, RPC_STATUS_CANCELLED, "gone");
}

/* Is ENVELOPE (a committed transaction) an access request by REQUESTER for
 * RECORD_ID, and RESULT its PERMIT? */
static bool is_permit(const uint8_t *envelope, size_t envelope_len, const uint8_t *result,
                      size_t result_len, const uint8_t requester[32], const uint8_t record_id[32])
{
    ledger_tx_view v;
    if (ledger_tx_envelope_parse(envelope, envelope_len, &v, NULL) != 0)
        return false;
    Ehr__V1__TxBody *b = ehr__v1__tx_body__unpack(NULL, v.body_len, v.body);
    if (b == NULL)
        return false;
    bool ok = b->payload_case == EHR__V1__TX_BODY__PAYLOAD_ACCESS_REQUEST &&
              b->signer.len == EHR_SCHNORR_PUBLIC_BYTES &&
              memcmp(b->signer.data, requester, EHR_SCHNORR_PUBLIC_BYTES) == 0 &&
              b->access_request->record_id.len == EHR_HASH_BYTES &&
              memcmp(b->access_request->record_id.data, record_id, EHR_HASH_BYTES) == 0;
    ehr__v1__tx_body__free_unpacked(b, NULL);
    if (!ok || result == NULL)
        return false;
    Ehr__V1__TxResult *r = ehr__v1__tx_result__unpack(NULL, result_len, result);
    if (r == NULL)
        return false;
    ok = r->code == EHR__V1__TX_RESULT_CODE__TX_RESULT_OK &&
         r->decision == EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT;
    ehr__v1__tx_result__free_unpacked(r, NULL);
    return ok;
}

int node__anchor_blob_id(ledger *l, const uint8_t record_id[EHR_HASH_BYTES],
                         uint8_t out[NODE_BLOB_ID_BYTES])
{
    ledger_tx_location loc;
    uint8_t *env = NULL;
    size_t env_len = 0;
    int rc = ledger_tx_get(l, record_id, &loc, &env, &env_len, NULL, NULL, NULL);
    if (rc != 0)
        return rc == EHR_ENOTFOUND ? EHR_ECORRUPT : rc; /* the entry names it */
    ledger_tx_view v;
    rc = ledger_tx_envelope_parse(env, env_len, &v, NULL);
    Ehr__V1__TxBody *b = rc == 0 ? ehr__v1__tx_body__unpack(NULL, v.body_len, v.body) : NULL;
    rc = EHR_ECORRUPT;
    if (b != NULL && b->payload_case == EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR &&
        b->record_anchor->ciphertext_hash.len == NODE_BLOB_ID_BYTES) {
        memcpy(out, b->record_anchor->ciphertext_hash.data, NODE_BLOB_ID_BYTES);
        rc = 0;
    }
    if (b != NULL)
        ehr__v1__tx_body__free_unpacked(b, NULL);
    ehr_free(env);
    return rc;
}

/*
 * Who may download the record's blob: the signature first, then the
 * record's entry (its patient and custodian), then the requester: the
 * patient; the custodian or a practitioner of it; or the signer of the
 * committed permit PERMIT_TX names; and then no one if the patient erased
 * the record (FAILED_PRECONDITION). Returns 0 or -1 with *A failed.
 */
static int get_authorise(struct node *n, Ehr__V1__GetBlobRequest *q, node__answer *a)
{
    struct node__reader reader;
    if (node__read_authenticate(n, "GetBlob", &q->base, &q->auth, q->record_id, &reader, a) != 0)
        return -1;
    uint8_t k[CONTRACTS_KEY_BYTES_MAX], *v = NULL;
    size_t klen = contracts_key(k, CONTRACTS_PREFIX_RECORD, q->record_id.data, NULL, NULL);
    size_t vlen = 0;
    int rc = ledger_state_get(n->ledger, k, klen, &v, &vlen, NULL);
    Ehr__V1__RecordEntry *e = NULL;
    if (rc == 0) {
        e = ehr__v1__record_entry__unpack(NULL, vlen, v);
        ehr_free(v);
        if (e == NULL || e->patient_key.len != EHR_SCHNORR_PUBLIC_BYTES ||
            e->custodian.len != EHR_SCHNORR_PUBLIC_BYTES)
            rc = EHR_ECORRUPT;
    }
    int result = -1;
    uint8_t want[NODE_BLOB_ID_BYTES];
    if (rc == EHR_ENOTFOUND) {
        *a = (node__answer){.status = RPC_STATUS_NOT_FOUND};
        snprintf(a->msg, sizeof a->msg, "no record has this id on the ledger");
    } else if (rc != 0 || (rc = node__anchor_blob_id(n->ledger, q->record_id.data, want)) != 0) {
        *a = (node__answer){.status = RPC_STATUS_INTERNAL};
        snprintf(a->msg, sizeof a->msg, "cannot read the record: %s", ehr_strerror(rc));
    } else if (memcmp(want, q->blob_id.data, NODE_BLOB_ID_BYTES) != 0) {
        *a = (node__answer){.status = RPC_STATUS_INVALID_ARGUMENT};
        snprintf(a->msg, sizeof a->msg, "blob_id is not this record's ciphertext_hash");
    } else if (memcmp(reader.key, e->patient_key.data, EHR_SCHNORR_PUBLIC_BYTES) == 0) {
        result = 0; /* the patient */
    } else if (node__read_institution(n, "GetBlob", e->patient_key, &reader, a,
                                      "only the record's patient, its custodian and the holder "
                                      "of a committed permit for it read its blob") != 0) {
        /* refused, counted */
    } else if (memcmp(reader.institution, e->custodian.data, EHR_SCHNORR_PUBLIC_BYTES) == 0) {
        result = 0; /* the custodian, or its practitioner */
    } else if (q->permit_tx.len == EHR_HASH_BYTES) {
        uint8_t *env = NULL, *res = NULL;
        size_t env_len = 0, res_len = 0;
        ledger_tx_location loc;
        rc =
            ledger_tx_get(n->ledger, q->permit_tx.data, &loc, &env, &env_len, &res, &res_len, NULL);
        if (rc == 0 && is_permit(env, env_len, res, res_len, reader.key, q->record_id.data)) {
            result = 0; /* a committed permit of its own for this record */
        } else {
            *a = (node__answer){.status = RPC_STATUS_PERMISSION_DENIED};
            snprintf(a->msg, sizeof a->msg,
                     "permit_tx is not a committed access request of yours for this record "
                     "that was permitted");
            node__reads_refused(n, "GetBlob", RPC_STATUS_PERMISSION_DENIED, &q->auth->requester_key,
                                &e->patient_key);
        }
        ehr_free(env);
        ehr_free(res);
    } else {
        *a = (node__answer){.status = RPC_STATUS_PERMISSION_DENIED};
        snprintf(a->msg, sizeof a->msg,
                 "only the record's patient, its custodian and the holder of a committed permit "
                 "for it (permit_tx) read its blob");
        node__reads_refused(n, "GetBlob", RPC_STATUS_PERMISSION_DENIED, &q->auth->requester_key,
                            &e->patient_key);
    }
    if (result == 0 && e->erased) {
        /* Whoever may read it is told why not, the same from the erase's
         * block on, deleted here yet or not. */
        result = -1;
        *a = (node__answer){.status = RPC_STATUS_FAILED_PRECONDITION};
        snprintf(a->msg, sizeof a->msg,
                 "the record was erased by its patient at height %" PRIu64
                 ": no node serves its ciphertext any more",
                 e->erased_at != NULL ? e->erased_at->height : 0);
        node__reads_refused(n, "GetBlob", RPC_STATUS_FAILED_PRECONDITION, &q->auth->requester_key,
                            &e->patient_key);
    }
    if (e != NULL)
        ehr__v1__record_entry__free_unpacked(e, NULL);
    return result;
}

static void get_blob(struct rpc_stream *stream, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__GetBlobRequest *q = ehr__v1__get_blob_request__unpack(NULL, len, req);
    if (q == NULL) {
        rpc_stream_finish(stream, RPC_STATUS_INVALID_ARGUMENT,
                          "malformed request: not a GetBlobRequest");
        return;
    }
    node__answer a = {0};
    if (q->record_id.len != EHR_HASH_BYTES || q->blob_id.len != NODE_BLOB_ID_BYTES ||
        (q->permit_tx.len != 0 && q->permit_tx.len != EHR_HASH_BYTES)) {
        rpc_stream_finish(stream, RPC_STATUS_INVALID_ARGUMENT,
                          "record_id and blob_id are 32 bytes, permit_tx empty or 32 bytes");
    } else if (get_authorise(n, q, &a) != 0) {
        rpc_stream_finish(stream, a.status, a.msg);
    } else {
        struct blob_get *g = ehr_calloc(1, sizeof *g);
        g->node = n;
        g->reader.fd = -1;
        if (node__stream_set_admit(&n->blobs.downloads, stream, &g->slot) != 0) {
            ehr_free(g); /* finished by the refusal */
        } else {
            g->stream = stream;
            memcpy(g->id, q->blob_id.data, NODE_BLOB_ID_BYTES);
            memcpy(g->record_id, q->record_id.data, EHR_HASH_BYTES);
            size_t room = (size_t)n->cfg.limits.rpc_message_bytes - 32;
            g->send_bytes = room < NODE_BLOB_SEND_BYTES ? room : NODE_BLOB_SEND_BYTES;
            g->buf = ehr_malloc(g->send_bytes);
            g->out = ehr_malloc(NODE_BLOB_SEND_BYTES + 32);
            rpc_stream_on_cancel(stream, get_cancelled, g);
            rpc_stream_on_writable(stream, get_writable, g);
            get_job_start(g, GET_OPEN);
        }
    }
    ehr__v1__get_blob_request__free_unpacked(q, NULL);
}

/* ---- start and close ---- */

int node__blob_service_start(struct node *n, ehr_diag *diag)
{
    uint64_t swept = 0;
    int rc = node_blobs_open(&n->blobs.store, n->cfg.data_dir, NODE_BLOB_BYTES_MAX, &swept, diag);
    if (rc != 0)
        return rc;
    n->blobs.store_open = true;
    if (swept > 0)
        ehr_log(EHR_LOG_INFO, "blob store swept unfinished uploads", "files=%" PRIu64, swept);
    node__stream_set_init(&n->blobs.uploads, "blob uploads", NODE_BLOB_UPLOADS_MAX,
                          NODE_BLOB_UPLOADS_PER_CONNECTION_MAX, NODE_BLOB_UPLOADS_PER_ADDRESS_MAX);
    node__stream_set_init(&n->blobs.downloads, "blob downloads", NODE_BLOB_DOWNLOADS_MAX,
                          NODE_BLOB_DOWNLOADS_PER_CONNECTION_MAX,
                          NODE_BLOB_DOWNLOADS_PER_ADDRESS_MAX);
    rpc_server_add_upload(n->rpc, PATH_PREFIX "PutBlob", put_blob, n);
    rpc_server_add_stream(n->rpc, PATH_PREFIX "GetBlob", get_blob, n);
    return 0;
}

void node__blob_service_close(struct node *n)
{
    if (n->blobs.store_open)
        node_blobs_close(&n->blobs.store);
    n->blobs.store_open = false;
}
