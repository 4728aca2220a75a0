/*
 * client.c - the gRPC client: one HTTP/2 connection (h2c, prior knowledge)
 * on the caller's libuv loop with any number of unary and server-streaming
 * calls in flight, each with its own deadline. ehrctl's commands and its
 * benchmark use it (the benchmark keeps N calls in flight on one connection).
 *
 * It does not reconnect or retry: a lost connection ends every call with
 * UNAVAILABLE and the caller decides.
 *
 * Design notes
 *
 * A call has two owners, like the server's (see server.c): stream_open
 * (nghttp2 may still read our request bytes or report frames) and
 * app_pending (the done callback has not run yet). It is recycled when both
 * are clear. Invariants:
 *   1. The done callback runs exactly once per started call, from the pump
 *      (never from inside rpc_client_* or an nghttp2 callback).
 *   2. `done` is set once; after it, nothing more reaches the caller (no
 *      message callback) and no status changes.
 *   3. Message callbacks of a streaming call run inside nghttp2's receive
 *      callback: the caller may start or cancel calls and close the client
 *      there (all of which only submit or defer), nothing else of ours.
 *   4. An upload (client-streaming call) holds at most
 *      RPC_UPLOAD_QUEUE_BYTES_MAX of queued messages (one larger message
 *      into an empty queue); past it rpc_client_upload_send says EAGAIN and
 *      the writable callback follows from the pump once the queue is down
 *      to half. Its END_STREAM goes only after rpc_client_upload_close and
 *      every queued byte.
 *
 * nghttp2 caveats: as in server.c, session_send/session_del only from the
 * pump; a request body uses NO_COPY with a cursor (promised bytes are
 * copied later in send_data_cb); nghttp2 itself holds requests beyond the
 * server's SETTINGS_MAX_CONCURRENT_STREAMS and sends them as streams free
 * up, so callers may start more calls than the server runs at once.
 */
#include <stdio.h>
#include <string.h>

#include "rpc_internal.h"

#define STREAM_WINDOW_BYTES (1 << 20)
#define CONNECTION_WINDOW_BYTES (16 << 20)
#define HOST_BYTES_MAX 255u
/* Room for a reason that names the server and a system error. */
#define REASON_BYTES (HOST_BYTES_MAX + 512)

enum client_state { CLIENT_CONNECTING, CLIENT_UP, CLIENT_DOWN };

struct rpc_client {
    struct rpc__conn io; /* first: nghttp2 user_data and handle data point here */
    uv_loop_t *loop;
    struct rpc_client_config config;
    nghttp2_session_callbacks *callbacks;
    char host[HOST_BYTES_MAX + 1];
    uint16_t port;
    char authority[HOST_BYTES_MAX + 16];
    enum client_state state;
    uv_getaddrinfo_t gai;
    uv_connect_t connect_req;
    uint32_t reqs_pending; /* getaddrinfo / connect in flight */
    rpc_connect_cb connect_cb;
    void *connect_data;
    int connect_status;
    bool connect_known; /* connect_status is final */
    bool connect_reported;
    bool settings_seen; /* the server's SETTINGS arrived: it speaks HTTP/2 */
    bool bytes_seen;    /* the server sent something, HTTP/2 or not */
    uint8_t first_byte; /* the first the server sent (a TLS record starts 0x15 or 0x16) */
    char down_reason[REASON_BYTES];
    struct rpc__link calls;    /* every call not recycled */
    struct rpc__link done;     /* calls whose done callback is due */
    struct rpc__link writable; /* uploads whose writable callback is due */
    struct rpc__link reap;
    struct rpc__link pool;
    uint32_t pool_count;
    uv_idle_t kick;
    uint32_t handles_open;
    bool dirty;
    bool pumping;
    bool close_requested;
    bool torn_down;
    rpc_client_close_cb close_cb;
    void *close_data;
};

struct rpc_client_call {
    struct rpc_client *client;
    struct rpc__link link;          /* client->calls, or reap / pool */
    struct rpc__link link_done;     /* client->done */
    struct rpc__link link_writable; /* client->writable (uploads) */
    int32_t stream_id;
    bool streaming;
    bool upload;        /* client-streaming */
    bool send_closed;   /* rpc_client_upload_close: END_STREAM after the queue */
    bool data_deferred; /* the data provider said DEFERRED: resume on the next send */
    bool want_writable; /* rpc_client_upload_send said EAGAIN */
    rpc_client_writable_cb writable_cb;
    bool submitted;
    bool stream_open;
    bool app_pending;
    bool done;
    bool reaped;
    char path[RPC_METHOD_PATH_BYTES_MAX + 1];
    char timeout_text[RPC__TIMEOUT_TEXT_BYTES_MAX + 1];
    uint64_t timeout_ms;
    struct rpc__buf out; /* the framed request */
    size_t out_pos;
    size_t out_promised;
    struct rpc__reader reader;
    struct rpc__buf response; /* the unary response */
    bool have_response;
    rpc_message_cb message_cb;
    rpc_done_cb done_cb;
    void *data;
    int http_status;
    bool content_type_ok;
    bool have_grpc_status;
    enum rpc_status grpc_status;
    char grpc_message[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    struct rpc_trailer trailers[RPC_TRAILERS_MAX]; /* custom ones, from the trailers */
    uint32_t trailer_count;
    bool in_done_cb;        /* the trailers may be read */
    enum rpc_status status; /* final, once done */
    char message[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    uv_timer_t timer;
};

static void client_pump(struct rpc_client *client);

static nghttp2_nv nv_make(const char *name, const char *value)
{
    nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    return nv;
}

/* ---- handles, teardown, kick ---- */

static void client_finish_close(struct rpc_client *client)
{
    EHR_ASSERT(client->handles_open == 0 && client->reqs_pending == 0);
    if (client->close_cb != NULL)
        client->close_cb(client->close_data);
    nghttp2_session_callbacks_del(client->callbacks);
    rpc__conn_free_buffers(&client->io);
    ehr_free(client->io.read_buf);
    ehr_free(client);
}

static void client_maybe_finish(struct rpc_client *client)
{
    if (client->torn_down && client->handles_open == 0 && client->reqs_pending == 0)
        client_finish_close(client);
}

static void client_handle_closed(uv_handle_t *handle)
{
    struct rpc_client *client = handle->data;
    EHR_ASSERT(client->handles_open > 0);
    client->handles_open--;
    client_maybe_finish(client);
}

static void call_handle_closed(uv_handle_t *handle)
{
    struct rpc_client_call *call = handle->data;
    struct rpc_client *client = call->client;
    ehr_free(call);
    EHR_ASSERT(client->handles_open > 0);
    client->handles_open--;
    client_maybe_finish(client);
}

static void kick_cb(uv_idle_t *idle)
{
    uv_idle_stop(idle);
    client_pump(idle->data);
}

static void client_kick(struct rpc_client *client)
{
    if (!client->pumping && !client->torn_down && !uv_is_active((uv_handle_t *)&client->kick))
        uv_idle_start(&client->kick, kick_cb);
}

/* ---- calls ---- */

static void call_free_buffers(struct rpc_client_call *call)
{
    rpc__reader_release(&call->reader, NULL);
    rpc__buf_free(&call->reader.body);
    rpc__buf_free(&call->out);
    rpc__buf_free(&call->response);
}

static struct rpc_client_call *call_get(struct rpc_client *client)
{
    struct rpc_client_call *call;
    if (!rpc__list_empty(&client->pool)) {
        struct rpc__link *link = client->pool.next;
        rpc__list_remove(link);
        client->pool_count--;
        call = RPC__CONTAINER(link, struct rpc_client_call, link);
        struct rpc__buf out = call->out, response = call->response;
        struct rpc__reader reader = call->reader;
        uv_timer_t timer = call->timer;
        memset(call, 0, sizeof *call);
        call->out = out;
        call->response = response;
        call->reader = reader;
        call->timer = timer;
    } else {
        call = ehr_calloc(1, sizeof *call);
        uv_timer_init(client->loop, &call->timer);
        call->timer.data = call;
        client->handles_open++;
    }
    call->client = client;
    rpc__list_init(&call->link);
    rpc__list_init(&call->link_done);
    rpc__list_init(&call->link_writable);
    return call;
}

static void call_reap(struct rpc_client_call *call)
{
    EHR_ASSERT(!call->app_pending && !call->stream_open);
    if (call->reaped)
        return;
    call->reaped = true;
    uv_timer_stop(&call->timer);
    rpc__list_remove(&call->link_done);
    rpc__list_remove(&call->link_writable);
    rpc__list_remove(&call->link);
    rpc__list_push(&call->client->reap, &call->link);
}

static void client_recycle_reaped(struct rpc_client *client)
{
    while (!rpc__list_empty(&client->reap)) {
        struct rpc__link *link = client->reap.next;
        rpc__list_remove(link);
        struct rpc_client_call *call = RPC__CONTAINER(link, struct rpc_client_call, link);
        if (client->pool_count >= RPC__POOLED_CALLS_MAX || client->close_requested) {
            call_free_buffers(call);
            uv_close((uv_handle_t *)&call->timer, call_handle_closed);
            continue;
        }
        rpc__reader_release(&call->reader, NULL);
        rpc__buf_recycle(&call->out);
        rpc__buf_recycle(&call->response);
        rpc__list_push(&client->pool, &call->link);
        client->pool_count++;
    }
}

/* Decide the call's outcome (once, invariant 2); the callback follows from the pump. */
static void call_complete(struct rpc_client_call *call, enum rpc_status status, const char *message)
{
    if (call->done)
        return;
    call->done = true;
    call->status = status;
    size_t len = strnlen(message, sizeof call->message - 1); /* no snprintf: once per call */
    memcpy(call->message, message, len);
    call->message[len] = '\0';
    uv_timer_stop(&call->timer);
    rpc__list_push(&call->client->done, &call->link_done);
    client_kick(call->client);
}

/* Stop the server's work on a call we no longer want. */
static void call_reset_stream(struct rpc_client_call *call)
{
    struct rpc_client *client = call->client;
    if (call->stream_open && client->io.session != NULL) {
        nghttp2_submit_rst_stream(client->io.session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_CANCEL);
        client->dirty = true;
        client_kick(client);
    }
}

/* The status a stream that ended says, per the gRPC HTTP/2 protocol. */
static void call_conclude(struct rpc_client_call *call, uint32_t error_code)
{
    char message[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    if (call->have_grpc_status) {
        if (!rpc__reader_idle(&call->reader)) {
            call_complete(call, RPC_STATUS_INTERNAL, "response ended inside a message");
        } else if (call->grpc_status == RPC_STATUS_OK && !call->streaming && !call->have_response) {
            call_complete(call, RPC_STATUS_INTERNAL, "OK without a response message");
        } else {
            call_complete(call, call->grpc_status, call->grpc_message);
        }
        return;
    }
    if (error_code == NGHTTP2_REFUSED_STREAM) {
        call_complete(call, RPC_STATUS_UNAVAILABLE, "the server refused the stream (retry)");
        return;
    }
    if (error_code == NGHTTP2_ENHANCE_YOUR_CALM) {
        /* gRPC's mapping: the server shed us for what we cost it (we did not read). */
        call_complete(call, RPC_STATUS_RESOURCE_EXHAUSTED,
                      "the server reset the stream (ENHANCE_YOUR_CALM): it was not read in time");
        return;
    }
    if (error_code == NGHTTP2_CANCEL) {
        call_complete(call, RPC_STATUS_CANCELLED, "the server cancelled the stream");
        return;
    }
    if (error_code != NGHTTP2_NO_ERROR) {
        snprintf(message, sizeof message, "stream reset by the server (%s)",
                 nghttp2_http2_strerror(error_code));
        call_complete(call, RPC_STATUS_INTERNAL, message);
        return;
    }
    if (call->http_status != 0 && call->http_status != 200) {
        /* No grpc-status: map the HTTP status as the gRPC protocol says. */
        enum rpc_status st = RPC_STATUS_UNKNOWN;
        switch (call->http_status) {
        case 400:
            st = RPC_STATUS_INTERNAL;
            break;
        case 401:
            st = RPC_STATUS_UNAUTHENTICATED;
            break;
        case 403:
            st = RPC_STATUS_PERMISSION_DENIED;
            break;
        case 404:
            st = RPC_STATUS_UNIMPLEMENTED;
            break;
        case 429:
        case 502:
        case 503:
        case 504:
            st = RPC_STATUS_UNAVAILABLE;
            break;
        default:
            break;
        }
        snprintf(message, sizeof message, "HTTP status %d without grpc-status", call->http_status);
        call_complete(call, st, message);
        return;
    }
    call_complete(call, RPC_STATUS_INTERNAL, "the server ended the stream without grpc-status");
}

static void call_timer_cb(uv_timer_t *timer)
{
    struct rpc_client_call *call = timer->data;
    call_complete(call, RPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
    call_reset_stream(call);
    client_pump(call->client);
}

/* ---- nghttp2 callbacks (record and queue only) ---- */

static ssize_t call_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    struct rpc_client_call *call = source->ptr;
    size_t queued = call->out.len - call->out_pos;
    bool last = !call->upload || call->send_closed;
    if (queued == 0 && !last) {
        call->data_deferred = true; /* an upload waiting for its next message */
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = queued < length ? queued : length;
    if (n > 0)
        *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == queued && last)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF; /* END_STREAM: the request is whole */
    call->out_promised = n;
    return (ssize_t)n;
}

static int client_send_data_cb(nghttp2_session *session, nghttp2_frame *frame,
                               const uint8_t *framehd, size_t length, nghttp2_data_source *source,
                               void *user_data)
{
    struct rpc_client *client = user_data;
    struct rpc_client_call *call = source->ptr;
    EHR_ASSERT(frame->data.padlen == 0);
    EHR_ASSERT(length == call->out_promised);
    uint8_t *out = rpc__conn_out_reserve(&client->io, 9 + length);
    if (out == NULL)
        return NGHTTP2_ERR_WOULDBLOCK;
    memcpy(out, framehd, 9);
    memcpy(out + 9, call->out.data + call->out_pos, length);
    rpc__conn_out_commit(&client->io, 9 + length);
    call->out_pos += length;
    call->out_promised = 0;
    if (call->upload && call->want_writable && !call->done &&
        call->out.len - call->out_pos <= RPC_UPLOAD_QUEUE_BYTES_MAX / 2) {
        call->want_writable = false;
        if (!rpc__list_linked(&call->link_writable))
            rpc__list_push(&client->writable, &call->link_writable); /* invariant 4 */
    }
    return 0;
}

static struct rpc_client_call *stream_call(nghttp2_session *session, int32_t stream_id)
{
    return nghttp2_session_get_stream_user_data(session, stream_id);
}

static bool name_is(const uint8_t *name, size_t len, const char *text)
{
    return len == strlen(text) && memcmp(name, text, len) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct rpc_client_call *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL || call->done)
        return 0;
    if (name_is(name, name_len, ":status")) {
        int status = 0;
        for (size_t i = 0; i < value_len && i < 3; i++)
            status = status * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
        call->http_status = status;
    } else if (name_is(name, name_len, "content-type")) {
        call->content_type_ok = value_len >= 16 && memcmp(value, "application/grpc", 16) == 0;
    } else if (name_is(name, name_len, "grpc-status")) {
        call->have_grpc_status = true;
        call->grpc_status = rpc__status_parse(value, value_len);
    } else if (name_is(name, name_len, "grpc-message")) {
        rpc__percent_decode(value, value_len, call->grpc_message, sizeof call->grpc_message);
    } else if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
               call->trailer_count < RPC_TRAILERS_MAX &&
               rpc__trailer_name_ok((const char *)name, name_len) &&
               rpc__trailer_value_ok((const char *)value, value_len)) {
        /* Trailing metadata (a trailers block ends the stream): keep ours. */
        struct rpc_trailer *t = &call->trailers[call->trailer_count++];
        memcpy(t->name, name, name_len);
        t->name[name_len] = '\0';
        memcpy(t->value, value, value_len);
        t->value[value_len] = '\0';
    }
    return 0;
}

static enum rpc_status call_on_message(void *ctx, const uint8_t *message, size_t len,
                                       ehr_diag *diag)
{
    struct rpc_client_call *call = ctx;
    if (call->streaming) {
        if (!call->done)
            call->message_cb(call->data, message, len);
        return RPC_STATUS_OK;
    }
    if (message == call->reader.body.data) {
        struct rpc__buf taken = call->reader.body;
        call->reader.body = call->response;
        call->response = taken;
    } else if (len > 0) {
        call->response.len = 0;
        memcpy(rpc__buf_reserve(&call->response, len), message, len);
    }
    call->response.len = len;
    call->have_response = true;
    return RPC_STATUS_OK;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    struct rpc_client *client = user_data;
    struct rpc_client_call *call = stream_call(session, stream_id);
    if (call == NULL || call->done)
        return 0;
    if (call->http_status != 200 || !call->content_type_ok) {
        call_complete(call, RPC_STATUS_INTERNAL, "response body without a gRPC response");
        call_reset_stream(call);
        return 0;
    }
    ehr_diag why;
    enum rpc_status st =
        rpc__reader_feed(&call->reader, data, len, client->config.message_bytes_max, NULL,
                         call_on_message, call, &why);
    if (st != RPC_STATUS_OK) {
        call_complete(call, st, why.msg);
        call_reset_stream(call);
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    if (frame->hd.type == NGHTTP2_SETTINGS)
        ((struct rpc_client *)user_data)->settings_seen = true;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct rpc_client_call *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL || call->done)
        return 0;
    call_conclude(call, NGHTTP2_NO_ERROR);
    /* If our request is still going out, the server does not want the rest. */
    if (call->out_pos < call->out.len)
        call_reset_stream(call);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct rpc_client_call *call = stream_call(session, stream_id);
    if (call == NULL)
        return 0;
    call->stream_open = false;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    call_conclude(call, error_code); /* no-op if already done */
    if (!call->app_pending)
        call_reap(call);
    return 0;
}

/* ---- connection ---- */

/* The connection is gone: every call not done ends UNAVAILABLE with REASON. */
static void client_down(struct rpc_client *client, const char *reason)
{
    if (client->state == CLIENT_DOWN)
        return;
    /* An HTTP/2 server's first frame is its SETTINGS. A connection that ends,
     * or says something that is not HTTP/2, before one arrived reached
     * something else: say so, and what it usually is. */
    char not_grpc[REASON_BYTES];
    if (client->io.tls != NULL && !rpc__tls_open(&client->io) && !client->close_requested &&
        client->state == CLIENT_UP) {
        snprintf(not_grpc, sizeof not_grpc,
                 "TLS handshake with %s failed: %s (a node at its connection limit, or one "
                 "that serves its API without TLS?)",
                 client->authority, reason);
        reason = not_grpc;
    } else if (client->state == CLIENT_UP && !client->settings_seen && !client->close_requested &&
               client->bytes_seen && client->io.tls == NULL &&
               (client->first_byte == 0x15 || client->first_byte == 0x16)) {
        snprintf(not_grpc, sizeof not_grpc,
                 "%s answered with TLS: connect with TLS (ehrctl --tls-ca FILE) (%s)",
                 client->authority, reason);
        reason = not_grpc;
    } else if (client->state == CLIENT_UP && !client->settings_seen && !client->close_requested &&
               !client->bytes_seen) {
        /* Silence then a close is also how a node at its connection limit
         * (or past its limit per address) turns a client away. */
        snprintf(not_grpc, sizeof not_grpc,
                 "%s closed the connection without answering: either a node at its connection "
                 "limit (retry later, or another node) or it is not a gRPC (HTTP/2) endpoint "
                 "(a node's peer port rather than its RPC port?) (%s)",
                 client->authority, reason);
        reason = not_grpc;
    } else if (client->state == CLIENT_UP && !client->settings_seen && !client->close_requested) {
        snprintf(not_grpc, sizeof not_grpc,
                 "%s answered but is not a gRPC (HTTP/2) endpoint: a node's peer port rather "
                 "than its RPC port? (%s)",
                 client->authority, reason);
        reason = not_grpc;
    }
    bool was_connecting = client->state == CLIENT_CONNECTING;
    client->state = CLIENT_DOWN;
    snprintf(client->down_reason, sizeof client->down_reason, "%s", reason);
    /* Not known yet: still connecting, or (TLS) still in the handshake. */
    (void)was_connecting;
    if (!client->connect_known) {
        client->connect_known = true;
        if (client->connect_status == 0)
            client->connect_status = EHR_ECLOSED;
    }
    for (struct rpc__link *l = client->calls.next; l != &client->calls;) {
        struct rpc_client_call *call = RPC__CONTAINER(l, struct rpc_client_call, link);
        l = l->next;
        call_complete(call, RPC_STATUS_UNAVAILABLE, reason);
        call->stream_open = false;
        if (!call->app_pending)
            call_reap(call);
    }
    if (client->io.session != NULL) {
        nghttp2_session_del(client->io.session);
        client->io.session = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&client->io.tcp)) {
        uv_read_stop((uv_stream_t *)&client->io.tcp);
        uv_close((uv_handle_t *)&client->io.tcp, client_handle_closed);
    }
    client_kick(client);
}

static void client_flush(struct rpc_client *client)
{
    client->dirty = false;
    if (client->state != CLIENT_UP)
        return;
    int rv = rpc__conn_flush(&client->io);
    if (rv != 0) {
        char reason[REASON_BYTES];
        snprintf(reason, sizeof reason, "connection to %s failed: %s", client->authority,
                 rv < 0 && rv > -4096 ? uv_strerror(rv) : nghttp2_strerror(rv));
        client_down(client, reason);
        return;
    }
    nghttp2_session *session = client->io.session;
    if (!nghttp2_session_want_read(session) && !nghttp2_session_want_write(session) &&
        rpc__conn_output_bytes(&client->io) == 0)
        client_down(client, "the server closed the connection (GOAWAY)");
}

/* HTTP/2 bytes from the server (the plaintext, under TLS). Non-zero: the
 * connection went down. */
static int client_recv(struct rpc__conn *io, const uint8_t *data, size_t len)
{
    struct rpc_client *client = (struct rpc_client *)io;
    if (client->state != CLIENT_UP)
        return 1;
    ssize_t rv = nghttp2_session_mem_recv(client->io.session, data, len);
    if (rv < 0) {
        char reason[REASON_BYTES];
        snprintf(reason, sizeof reason, "HTTP/2 error from %s: %s", client->authority,
                 nghttp2_strerror((int)rv));
        client_down(client, reason);
        return 1;
    }
    client->dirty = true;
    return 0;
}

/* Ciphertext from the server: the handshake, then the HTTP/2 it carries.
 * The connection is reported up once the handshake is complete. */
static void client_recv_tls(struct rpc_client *client, const uint8_t *data, size_t len)
{
    ehr_diag why;
    int rv = rpc__tls_recv(&client->io, data, len, NULL, client_recv, &why);
    if (rv != 0 && client->state == CLIENT_UP) {
        char reason[REASON_BYTES];
        snprintf(reason, sizeof reason, "TLS with %s failed: %.240s", client->authority, why.msg);
        if (!client->connect_known)
            client->connect_status = EHR_EPROTO;
        /* Best effort: OpenSSL's alert tells the server why (its log). */
        (void)rpc__conn_start_write(&client->io);
        client_down(client, reason);
        return;
    }
    if (rpc__tls_open(&client->io) && !client->connect_known) {
        client->connect_known = true;
        client->connect_status = 0;
    }
    client->dirty = true; /* the handshake's answer, or what waited for it */
}

static void client_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct rpc_client *client = stream->data;
    if (nread == 0 || client->state != CLIENT_UP)
        return;
    if (nread < 0) {
        char reason[REASON_BYTES];
        snprintf(reason, sizeof reason, "connection to %s lost: %s", client->authority,
                 nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
        client_down(client, reason);
    } else {
        if (!client->bytes_seen)
            client->first_byte = (uint8_t)buf->base[0];
        client->bytes_seen = true;
        if (client->io.tls != NULL)
            client_recv_tls(client, (const uint8_t *)buf->base, (size_t)nread);
        else
            client_recv(&client->io, (const uint8_t *)buf->base, (size_t)nread);
    }
    client_pump(client);
}

static void client_write_done(struct rpc__conn *io, int status)
{
    struct rpc_client *client = (struct rpc_client *)io;
    if (client->state != CLIENT_UP)
        return;
    if (status < 0) {
        char reason[REASON_BYTES];
        snprintf(reason, sizeof reason, "write to %s failed: %s", client->authority,
                 uv_strerror(status));
        client_down(client, reason);
    } else {
        client->dirty = true;
    }
    client_pump(client);
}

static void call_submit(struct rpc_client_call *call)
{
    struct rpc_client *client = call->client;
    EHR_ASSERT(client->state == CLIENT_UP && !call->submitted && !call->done);
    call->submitted = true;
    nghttp2_nv nv[8];
    size_t n = 0;
    nv[n++] = nv_make(":method", "POST");
    nv[n++] = nv_make(":scheme", client->io.tls != NULL ? "https" : "http");
    nv[n++] = nv_make(":path", call->path);
    nv[n++] = nv_make(":authority", client->authority);
    nv[n++] = nv_make("content-type", "application/grpc");
    nv[n++] = nv_make("te", "trailers");
    nv[n++] = nv_make("user-agent", "ehrchain-rpc/0.1");
    if (call->timeout_ms > 0)
        nv[n++] = nv_make("grpc-timeout", call->timeout_text);
    nghttp2_data_provider provider = {.source.ptr = call, .read_callback = call_read_cb};
    int32_t id = nghttp2_submit_request(client->io.session, NULL, nv, n, &provider, call);
    if (id < 0) {
        char message[128];
        snprintf(message, sizeof message, "cannot start a call: %s", nghttp2_strerror(id));
        call_complete(call, RPC_STATUS_UNAVAILABLE, message);
        return;
    }
    call->stream_id = id;
    call->stream_open = true;
    client->dirty = true;
}

static void client_connected(struct rpc_client *client)
{
    client->state = CLIENT_UP;
    if (client->config.tls != NULL) {
        /* Known once the handshake is complete (client_recv_tls). */
        ehr_diag why;
        if (rpc__tls_conn_new(&client->io, client->config.tls, client->host, &why) != 0) {
            char reason[REASON_BYTES];
            snprintf(reason, sizeof reason, "TLS with %s cannot start: %.240s", client->authority,
                     why.msg);
            client->connect_status = EHR_EPROTO;
            client_down(client, reason);
            return;
        }
    } else {
        client->connect_known = true;
        client->connect_status = 0;
    }
    uv_tcp_nodelay(&client->io.tcp, 1);
    uv_read_start((uv_stream_t *)&client->io.tcp, rpc__conn_alloc_cb, client_read_cb);
    for (struct rpc__link *l = client->calls.next; l != &client->calls; l = l->next) {
        struct rpc_client_call *call = RPC__CONTAINER(l, struct rpc_client_call, link);
        if (!call->submitted && !call->done)
            call_submit(call);
    }
    client->dirty = true;
}

static void client_connect_done(uv_connect_t *req, int status)
{
    struct rpc_client *client = req->data;
    client->reqs_pending--;
    if (status == 0 && client->state == CLIENT_CONNECTING) {
        client_connected(client);
    } else if (client->state != CLIENT_DOWN) {
        char reason[REASON_BYTES];
        snprintf(reason, sizeof reason, "connect to %s failed: %s", client->authority,
                 uv_strerror(status));
        client->connect_status = status;
        client_down(client, reason);
    }
    if (client->torn_down)
        client_maybe_finish(client); /* may free the client */
    else
        client_pump(client);
}

static int client_start_connect(struct rpc_client *client, const struct sockaddr *addr)
{
    client->connect_req.data = client;
    int rv = uv_tcp_connect(&client->connect_req, &client->io.tcp, addr, client_connect_done);
    if (rv == 0)
        client->reqs_pending++;
    return rv;
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rpc_client *client = req->data;
    client->reqs_pending--;
    if (client->state == CLIENT_CONNECTING) {
        int rv = status;
        if (rv == 0)
            rv = res != NULL ? client_start_connect(client, res->ai_addr) : UV_EAI_NONAME;
        if (rv != 0) {
            char reason[REASON_BYTES];
            snprintf(reason, sizeof reason, "cannot reach %s: %s", client->authority,
                     uv_strerror(rv));
            client->connect_status = rv;
            client_down(client, reason);
        }
    }
    uv_freeaddrinfo(res);
    if (client->torn_down)
        client_maybe_finish(client); /* may free the client */
    else
        client_pump(client);
}

/* ---- the pump ---- */

static void client_teardown(struct rpc_client *client)
{
    client->torn_down = true;
    uv_close((uv_handle_t *)&client->kick, client_handle_closed);
    while (!rpc__list_empty(&client->pool)) {
        struct rpc__link *link = client->pool.next;
        rpc__list_remove(link);
        struct rpc_client_call *call = RPC__CONTAINER(link, struct rpc_client_call, link);
        call_free_buffers(call);
        uv_close((uv_handle_t *)&call->timer, call_handle_closed);
    }
    client->pool_count = 0;
}

static void client_pump(struct rpc_client *client)
{
    if (client->pumping || client->torn_down)
        return;
    client->pumping = true;
    for (;;) {
        if (client->close_requested && client->state != CLIENT_DOWN) {
            for (struct rpc__link *l = client->calls.next; l != &client->calls; l = l->next)
                call_complete(RPC__CONTAINER(l, struct rpc_client_call, link), RPC_STATUS_CANCELLED,
                              "the client was closed");
            if (client->state == CLIENT_UP) {
                nghttp2_session_terminate_session(client->io.session, NGHTTP2_NO_ERROR);
                rpc__conn_flush(&client->io); /* best effort: the GOAWAY */
            } else if (client->reqs_pending > 0) {
                uv_cancel((uv_req_t *)&client->gai); /* fails harmlessly if not resolving */
            }
            client_down(client, "the client was closed");
            continue;
        }
        if (client->connect_known && !client->connect_reported) {
            client->connect_reported = true;
            if (client->connect_cb != NULL)
                client->connect_cb(client, client->connect_status, client->connect_data);
            continue;
        }
        if (!rpc__list_empty(&client->done)) {
            struct rpc_client_call *call =
                RPC__CONTAINER(client->done.next, struct rpc_client_call, link_done);
            rpc__list_remove(&call->link_done);
            call->app_pending = false;
            const uint8_t *response = NULL;
            size_t response_len = 0;
            if (call->status == RPC_STATUS_OK && !call->streaming) {
                response = call->response.data;
                response_len = call->response.len;
            }
            call->in_done_cb = true;
            call->done_cb(call->data, call->status, call->message, response, response_len);
            call->in_done_cb = false;
            if (!call->stream_open)
                call_reap(call);
            continue;
        }
        if (!rpc__list_empty(&client->writable)) {
            struct rpc_client_call *call =
                RPC__CONTAINER(client->writable.next, struct rpc_client_call, link_writable);
            rpc__list_remove(&call->link_writable);
            if (!call->done && call->app_pending && call->writable_cb != NULL)
                call->writable_cb(call, call->data);
            continue;
        }
        if (client->dirty) {
            client_flush(client);
            continue;
        }
        break;
    }
    client_recycle_reaped(client);
    client->pumping = false;
    if (client->close_requested && client->state == CLIENT_DOWN &&
        rpc__list_empty(&client->calls)) {
        client_teardown(client);
        client_maybe_finish(client);
    }
}

/* ---- public ---- */

int rpc_client_connect(uv_loop_t *loop, const char *host, uint16_t port,
                       const struct rpc_client_config *config, rpc_connect_cb connect_cb,
                       void *data, struct rpc_client **out)
{
    EHR_ASSERT(loop != NULL && out != NULL);
    if (host == NULL || host[0] == '\0' || strlen(host) > HOST_BYTES_MAX || port == 0)
        return EHR_EINVAL;
    size_t message_bytes_max =
        config && config->message_bytes_max ? config->message_bytes_max : RPC_MESSAGE_BYTES_MAX;
    if (message_bytes_max > UINT32_MAX)
        return EHR_EINVAL;
    struct rpc_client *client = ehr_calloc(1, sizeof *client);
    rpc__conn_init(&client->io, RPC_CONNECTION_OUTPUT_BYTES_MAX);
    client->io.read_buf = ehr_malloc(RPC__READ_BUFFER_BYTES);
    client->io.on_write_done = client_write_done;
    client->loop = loop;
    client->config.message_bytes_max = message_bytes_max;
    client->config.tls = config != NULL ? config->tls : NULL;
    client->connect_cb = connect_cb;
    client->connect_data = data;
    client->port = port;
    memcpy(client->host, host, strlen(host) + 1);
    snprintf(client->authority, sizeof client->authority, strchr(host, ':') ? "[%s]:%u" : "%s:%u",
             host, port);
    rpc__list_init(&client->calls);
    rpc__list_init(&client->done);
    rpc__list_init(&client->writable);
    rpc__list_init(&client->reap);
    rpc__list_init(&client->pool);
    uv_idle_init(loop, &client->kick);
    client->kick.data = client;
    uv_tcp_init(loop, &client->io.tcp);
    client->io.tcp.data = client;
    client->handles_open = 2;

    EHR_ASSERT(nghttp2_session_callbacks_new(&client->callbacks) == 0);
    nghttp2_session_callbacks *cb = client->callbacks;
    nghttp2_session_callbacks_set_send_callback(cb, rpc__conn_send_cb);
    nghttp2_session_callbacks_set_send_data_callback(cb, client_send_data_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    EHR_ASSERT(nghttp2_session_client_new(&client->io.session, cb, client) == 0);
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW_BYTES},
    };
    EHR_ASSERT(nghttp2_submit_settings(client->io.session, NGHTTP2_FLAG_NONE, settings,
                                       EHR_ARRAY_COUNT(settings)) == 0);
    EHR_ASSERT(nghttp2_session_set_local_window_size(client->io.session, NGHTTP2_FLAG_NONE, 0,
                                                     CONNECTION_WINDOW_BYTES) == 0);

    struct sockaddr_storage addr;
    int rv;
    if (rpc__addr_parse(host, port, &addr) == 0) {
        rv = client_start_connect(client, (const struct sockaddr *)&addr);
    } else {
        char port_text[8];
        snprintf(port_text, sizeof port_text, "%u", port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        client->gai.data = client;
        rv = uv_getaddrinfo(loop, &client->gai, gai_cb, host, port_text, &hints);
        if (rv == 0)
            client->reqs_pending++;
    }
    if (rv != 0) {
        char reason[REASON_BYTES];
        snprintf(reason, sizeof reason, "connect to %s failed: %s", client->authority,
                 uv_strerror(rv));
        client->connect_status = rv;
        client_down(client, reason); /* reported through connect_cb, as promised */
    }
    *out = client;
    return 0;
}

static int client_call_start(struct rpc_client *client, const char *path, const uint8_t *request,
                             size_t request_len, uint64_t timeout_ms, bool streaming,
                             rpc_message_cb message_cb, rpc_done_cb done_cb, void *data,
                             struct rpc_client_call **out)
{
    EHR_ASSERT(done_cb != NULL);
    if (path == NULL || path[0] != '/' || strlen(path) > RPC_METHOD_PATH_BYTES_MAX)
        return EHR_EINVAL;
    if (request_len > client->config.message_bytes_max)
        return EHR_ETOOBIG;
    if (client->close_requested || client->torn_down)
        return EHR_ECLOSED;
    struct rpc_client_call *call = call_get(client);
    call->streaming = streaming;
    call->message_cb = message_cb;
    call->done_cb = done_cb;
    call->data = data;
    call->app_pending = true;
    call->reader.messages_max = streaming ? 0 : 1;
    memcpy(call->path, path, strlen(path) + 1);
    uint8_t *p = rpc__buf_reserve(&call->out, RPC__PREFIX_BYTES + request_len);
    rpc__prefix_write(p, (uint32_t)request_len);
    if (request_len > 0)
        memcpy(p + RPC__PREFIX_BYTES, request, request_len);
    call->out.len = RPC__PREFIX_BYTES + request_len;
    rpc__list_push(&client->calls, &call->link);
    if (timeout_ms > 0) {
        call->timeout_ms = timeout_ms > RPC_TIMEOUT_MS_MAX ? RPC_TIMEOUT_MS_MAX : timeout_ms;
        rpc__timeout_format(call->timeout_ms, call->timeout_text);
        uv_timer_start(&call->timer, call_timer_cb, call->timeout_ms, 0);
    }
    if (client->state == CLIENT_UP)
        call_submit(call);
    else if (client->state == CLIENT_DOWN)
        call_complete(call, RPC_STATUS_UNAVAILABLE, client->down_reason);
    client_kick(client);
    if (out != NULL)
        *out = call;
    return 0;
}

const char *rpc__client_down_reason(const struct rpc_client *client)
{
    return client->down_reason;
}

bool rpc_client_is_down(const struct rpc_client *client)
{
    EHR_ASSERT(client != NULL);
    return client->state == CLIENT_DOWN;
}

int rpc_client_unary(struct rpc_client *client, const char *path, const uint8_t *request,
                     size_t request_len, uint64_t timeout_ms, rpc_done_cb done_cb, void *data,
                     struct rpc_client_call **out)
{
    return client_call_start(client, path, request, request_len, timeout_ms, false, NULL, done_cb,
                             data, out);
}

int rpc_client_stream(struct rpc_client *client, const char *path, const uint8_t *request,
                      size_t request_len, uint64_t timeout_ms, rpc_message_cb message_cb,
                      rpc_done_cb done_cb, void *data, struct rpc_client_call **out)
{
    EHR_ASSERT(message_cb != NULL);
    return client_call_start(client, path, request, request_len, timeout_ms, true, message_cb,
                             done_cb, data, out);
}

int rpc_client_upload(struct rpc_client *client, const char *path, uint64_t timeout_ms,
                      rpc_client_writable_cb writable_cb, rpc_done_cb done_cb, void *data,
                      struct rpc_client_call **out)
{
    EHR_ASSERT(out != NULL);
    struct rpc_client_call *call = NULL;
    int rv =
        client_call_start(client, path, NULL, 0, timeout_ms, false, NULL, done_cb, data, &call);
    if (rv != 0)
        return rv;
    /* Nothing is queued yet: client_call_start framed an empty message we drop. */
    call->out.len = 0;
    call->upload = true;
    call->writable_cb = writable_cb;
    *out = call;
    return 0;
}

static void upload_resume(struct rpc_client_call *call)
{
    struct rpc_client *client = call->client;
    if (call->data_deferred && call->stream_open && client->io.session != NULL) {
        call->data_deferred = false;
        nghttp2_session_resume_data(client->io.session, call->stream_id);
    }
    client->dirty = true;
    client_kick(client);
}

int rpc_client_upload_send(struct rpc_client_call *call, const uint8_t *message, size_t message_len)
{
    EHR_ASSERT(call->upload);
    EHR_ASSERT(call->app_pending); /* the handle is valid until the done callback */
    EHR_ASSERT(!call->send_closed);
    if (call->done)
        return EHR_ECLOSED;
    if (message_len > call->client->config.message_bytes_max)
        return EHR_ETOOBIG;
    size_t queued = call->out.len - call->out_pos;
    if (queued > 0 && queued + RPC__PREFIX_BYTES + message_len > RPC_UPLOAD_QUEUE_BYTES_MAX) {
        call->want_writable = true; /* invariant 4 */
        return EHR_EAGAIN;
    }
    if (queued == 0) {
        call->out.len = 0;
        call->out_pos = 0;
    } else if (call->out_pos > call->out.cap / 2) {
        /* Safe: promised bytes are copied from out_pos later (a cursor, not a pointer). */
        memmove(call->out.data, call->out.data + call->out_pos, queued);
        call->out.len = queued;
        call->out_pos = 0;
    }
    uint8_t *p = rpc__buf_reserve(&call->out, RPC__PREFIX_BYTES + message_len);
    rpc__prefix_write(p, (uint32_t)message_len);
    if (message_len > 0)
        memcpy(p + RPC__PREFIX_BYTES, message, message_len);
    call->out.len += RPC__PREFIX_BYTES + message_len;
    upload_resume(call);
    return 0;
}

void rpc_client_upload_close(struct rpc_client_call *call)
{
    EHR_ASSERT(call->upload);
    EHR_ASSERT(call->app_pending);
    if (call->send_closed)
        return;
    call->send_closed = true;
    if (!call->done)
        upload_resume(call);
}

uint32_t rpc__client_call_trailers_copy(const struct rpc_client_call *call, struct rpc_trailer *out)
{
    EHR_ASSERT(call->in_done_cb); /* only during the done callback */
    memcpy(out, call->trailers, call->trailer_count * sizeof *out);
    return call->trailer_count;
}

const char *rpc_client_call_trailer(const struct rpc_client_call *call, const char *name)
{
    EHR_ASSERT(call->in_done_cb); /* only during the done callback */
    return rpc__trailer_find(call->trailers, call->trailer_count, name);
}

void rpc_client_call_cancel(struct rpc_client_call *call)
{
    EHR_ASSERT(call->app_pending); /* the handle is valid until the done callback */
    if (call->done)
        return;
    call_complete(call, RPC_STATUS_CANCELLED, "cancelled by the client");
    call_reset_stream(call);
}

void rpc_client_close(struct rpc_client *client, rpc_client_close_cb close_cb, void *data)
{
    EHR_ASSERT(!client->close_requested);
    client->close_requested = true;
    client->close_cb = close_cb;
    client->close_data = data;
    client_kick(client);
}
