/*
 * sync.c - a blocking gRPC client for one-shot commands (`ehrctl status`):
 * it runs the asynchronous client on a private libuv loop until each call
 * ends. Not for programs that already run a loop (use rpc_client_* there),
 * and not thread-safe (one rpc_sync per thread).
 */
#include <stdio.h>
#include <string.h>

#include "rpc_internal.h"

struct rpc_sync {
    uv_loop_t loop;
    struct rpc_client *client;
    uv_timer_t timer;
    bool timer_fired;
    bool connect_known;
    int connect_status;
    bool client_closed;
    bool client_tls; /* a failure's reason is the client's (the handshake's) */
};

struct sync_call {
    struct rpc_result *result;
    rpc_message_cb message_cb;
    void *data;
    struct rpc_client_call *handle; /* for the trailers, in the done callback */
    bool done;
};

void rpc_result_clear(struct rpc_result *result)
{
    ehr_free(result->response);
    memset(result, 0, sizeof *result);
}

const char *rpc_result_trailer(const struct rpc_result *result, const char *name)
{
    return rpc__trailer_find(result->trailers, result->trailer_count, name);
}

static void sync_connect_cb(struct rpc_client *client, int status, void *data)
{
    struct rpc_sync *sync = data;
    sync->connect_known = true;
    sync->connect_status = status;
}

static void sync_timer_cb(uv_timer_t *timer)
{
    struct rpc_sync *sync = timer->data;
    sync->timer_fired = true;
}

static void sync_client_closed(void *data)
{
    struct rpc_sync *sync = data;
    sync->client_closed = true;
}

static void sync_free(struct rpc_sync *sync)
{
    if (sync->client != NULL) {
        rpc_client_close(sync->client, sync_client_closed, sync);
        while (!sync->client_closed)
            uv_run(&sync->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&sync->timer, NULL);
    uv_run(&sync->loop, UV_RUN_DEFAULT); /* let every close callback run */
    int rv = uv_loop_close(&sync->loop);
    EHR_ASSERT(rv == 0);
    ehr_free(sync);
}

int rpc_sync_open(const char *host, uint16_t port, uint64_t timeout_ms, struct rpc_sync **out,
                  ehr_diag *diag)
{
    return rpc_sync_open_config(host, port, timeout_ms, NULL, out, diag);
}

int rpc_sync_open_config(const char *host, uint16_t port, uint64_t timeout_ms,
                         const struct rpc_client_config *config, struct rpc_sync **out,
                         ehr_diag *diag)
{
    EHR_ASSERT(out != NULL);
    struct rpc_sync *sync = ehr_calloc(1, sizeof *sync);
    int rv = uv_loop_init(&sync->loop);
    if (rv != 0) {
        ehr_free(sync);
        return ehr_diag_fail(diag, rv, "cannot create an event loop: %s", uv_strerror(rv));
    }
    uv_timer_init(&sync->loop, &sync->timer);
    sync->timer.data = sync;
    sync->client_tls = config != NULL && config->tls != NULL;
    rv = rpc_client_connect(&sync->loop, host, port, config, sync_connect_cb, sync, &sync->client);
    if (rv != 0) {
        sync->client = NULL;
        sync_free(sync);
        return ehr_diag_fail(diag, rv, "invalid address %s:%u", host ? host : "(null)", port);
    }
    if (timeout_ms > 0)
        uv_timer_start(&sync->timer, sync_timer_cb, timeout_ms, 0);
    while (!sync->connect_known && !sync->timer_fired)
        uv_run(&sync->loop, UV_RUN_ONCE);
    uv_timer_stop(&sync->timer);
    if (!sync->connect_known || sync->connect_status != 0) {
        rv = sync->connect_known ? sync->connect_status : EHR_ETIMEDOUT;
        if (sync->client_tls && (rv == EHR_EPROTO || rv == EHR_ECLOSED))
            ehr_diag_fail(diag, rv, "%s", rpc__client_down_reason(sync->client));
        else
            ehr_diag_fail(diag, rv, "cannot connect to %s:%u: %s", host, port,
                          sync->connect_known ? uv_strerror(rv) : "timed out");
        sync_free(sync);
        return rv;
    }
    *out = sync;
    return 0;
}

static void sync_done_cb(void *data, enum rpc_status status, const char *message,
                         const uint8_t *response, size_t response_len)
{
    struct sync_call *call = data;
    struct rpc_result *result = call->result;
    result->status = status;
    snprintf(result->message, sizeof result->message, "%s", message);
    if (response != NULL) {
        result->response = ehr_malloc(response_len);
        if (response_len > 0)
            memcpy(result->response, response, response_len);
        result->response_len = response_len;
    }
    /* The handle is set: rpc_client_* never calls back from inside itself. */
    EHR_ASSERT(call->handle != NULL);
    result->trailer_count = rpc__client_call_trailers_copy(call->handle, result->trailers);
    call->done = true;
}

static void sync_message_cb(void *data, const uint8_t *message, size_t message_len)
{
    struct sync_call *call = data;
    call->message_cb(call->data, message, message_len);
}

static enum rpc_status sync_call(struct rpc_sync *sync, const char *path, const uint8_t *request,
                                 size_t request_len, uint64_t timeout_ms, rpc_message_cb message_cb,
                                 void *data, struct rpc_result *result)
{
    memset(result, 0, sizeof *result);
    struct sync_call call = {.result = result, .message_cb = message_cb, .data = data};
    int rv = message_cb == NULL
                 ? rpc_client_unary(sync->client, path, request, request_len, timeout_ms,
                                    sync_done_cb, &call, &call.handle)
                 : rpc_client_stream(sync->client, path, request, request_len, timeout_ms,
                                     sync_message_cb, sync_done_cb, &call, &call.handle);
    if (rv != 0) {
        /* Local refusals read as the status a stock client would report. */
        result->status = rv == EHR_ETOOBIG  ? RPC_STATUS_RESOURCE_EXHAUSTED
                         : rv == EHR_EINVAL ? RPC_STATUS_INTERNAL
                                            : RPC_STATUS_UNAVAILABLE;
        snprintf(result->message, sizeof result->message, "call not started: %s", ehr_strerror(rv));
        return result->status;
    }
    while (!call.done)
        uv_run(&sync->loop, UV_RUN_ONCE);
    return result->status;
}

enum rpc_status rpc_sync_unary(struct rpc_sync *sync, const char *path, const uint8_t *request,
                               size_t request_len, uint64_t timeout_ms, struct rpc_result *result)
{
    return sync_call(sync, path, request, request_len, timeout_ms, NULL, NULL, result);
}

enum rpc_status rpc_sync_stream(struct rpc_sync *sync, const char *path, const uint8_t *request,
                                size_t request_len, uint64_t timeout_ms, rpc_message_cb message_cb,
                                void *data, struct rpc_result *result)
{
    EHR_ASSERT(message_cb != NULL);
    return sync_call(sync, path, request, request_len, timeout_ms, message_cb, data, result);
}

struct sync_upload {
    struct sync_call call;
    rpc_upload_next_cb next_cb;
    void *data;
    const uint8_t *message; /* from next_cb, not yet queued */
    size_t message_len;
    bool have_message;
    bool closed;
    int source_err; /* what next_cb said when it gave up */
};

/* Queue what the source gives until the upload is full, ended or closed. */
static void sync_upload_fill(struct sync_upload *up)
{
    while (!up->call.done && !up->closed && up->source_err == 0) {
        if (!up->have_message) {
            int r = up->next_cb(up->data, &up->message, &up->message_len);
            if (r < 0) {
                up->source_err = r;
                rpc_client_call_cancel(up->call.handle);
                return;
            }
            if (r == 0) {
                up->closed = true;
                rpc_client_upload_close(up->call.handle);
                return;
            }
            up->have_message = true;
        }
        int rv = rpc_client_upload_send(up->call.handle, up->message, up->message_len);
        if (rv == EHR_EAGAIN)
            return; /* the writable callback calls again */
        if (rv == EHR_ETOOBIG) {
            up->source_err = rv;
            rpc_client_call_cancel(up->call.handle);
            return;
        }
        if (rv != 0)
            return; /* ended: the done callback is due */
        up->have_message = false;
    }
}

static void sync_upload_writable(struct rpc_client_call *handle, void *data)
{
    sync_upload_fill(data);
}

enum rpc_status rpc_sync_upload(struct rpc_sync *sync, const char *path, uint64_t timeout_ms,
                                rpc_upload_next_cb next_cb, void *data, struct rpc_result *result)
{
    EHR_ASSERT(next_cb != NULL);
    memset(result, 0, sizeof *result);
    struct sync_upload up = {.call = {.result = result}, .next_cb = next_cb, .data = data};
    int rv = rpc_client_upload(sync->client, path, timeout_ms, sync_upload_writable, sync_done_cb,
                               &up, &up.call.handle);
    if (rv != 0) {
        result->status = rv == EHR_EINVAL ? RPC_STATUS_INTERNAL : RPC_STATUS_UNAVAILABLE;
        snprintf(result->message, sizeof result->message, "call not started: %s", ehr_strerror(rv));
        return result->status;
    }
    sync_upload_fill(&up);
    while (!up.call.done)
        uv_run(&sync->loop, UV_RUN_ONCE);
    if (up.source_err != 0) {
        result->status = RPC_STATUS_CANCELLED;
        snprintf(result->message, sizeof result->message, "upload stopped: the source failed (%s)",
                 ehr_errname(up.source_err));
    }
    return result->status;
}

void rpc_sync_close(struct rpc_sync *sync)
{
    if (sync != NULL)
        sync_free(sync);
}
