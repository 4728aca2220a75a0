/*
 * echo_service.c - the Echo test service (see echo_service.h). Say answers
 * at once, later (a timer, with no cancel callback: the reply must then be
 * safe on a call whose client is gone) or with a requested error; Hang
 * never answers and finishes only from its cancel callback; Count streams
 * messages with back-pressure (EAGAIN, then the writable callback); Sum
 * adds up an upload, and can be held paused to test back-pressure; Chat
 * (bidirectional) answers each message at once with its echo, pausing its
 * requests while its answers' queue is full.
 */
#include <string.h>

#include "common.h"
#include "echo.pb-c.h"
#include "echo_service.h"

static void note_finish(struct echo_service *service, int rv)
{
    if (rv == EHR_ECLOSED)
        atomic_fetch_add(&service->stats.late_closed, 1);
    else if (rv == EHR_ETIMEDOUT)
        atomic_fetch_add(&service->stats.late_timedout, 1);
}

/* ---- Say ---- */

struct say_later {
    uv_timer_t timer;
    struct echo_service *service;
    struct rpc_call *call;
    uint8_t *reply;
    size_t reply_len;
};

static void say_later_closed(uv_handle_t *handle)
{
    struct say_later *later = handle->data;
    ehr_free(later->reply);
    ehr_free(later);
}

static void say_later_fire(uv_timer_t *timer)
{
    struct say_later *later = timer->data;
    /* No cancel callback was set: the client may be long gone, and the
     * reply must still be safe (it then returns EHR_ECLOSED). */
    note_finish(later->service, rpc_call_reply(later->call, later->reply, later->reply_len));
    uv_close((uv_handle_t *)&later->timer, say_later_closed);
}

static void say(struct rpc_call *call, const uint8_t *request, size_t request_len, void *data)
{
    struct echo_service *service = data;
    atomic_fetch_add(&service->stats.calls, 1);
    Ehr__Test__EchoRequest *req = ehr__test__echo_request__unpack(NULL, request_len, request);
    if (req == NULL) {
        atomic_fetch_add(&service->stats.decode_errors, 1);
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT, "malformed EchoRequest");
        return;
    }
    if (req->fail_code != 0) {
        enum rpc_status status = req->fail_code < RPC_STATUS_COUNT_
                                     ? (enum rpc_status)req->fail_code
                                     : RPC_STATUS_UNKNOWN;
        rpc_call_fail(call, status, req->fail_message);
        ehr__test__echo_request__free_unpacked(req, NULL);
        return;
    }
    Ehr__Test__EchoReply reply = EHR__TEST__ECHO_REPLY__INIT;
    reply.text = req->text;
    reply.payload = req->payload;
    size_t len = ehr__test__echo_reply__get_packed_size(&reply);
    uint8_t *bytes = ehr_malloc(len);
    ehr__test__echo_reply__pack(&reply, bytes);
    if (req->delay_ms == 0) {
        rpc_call_reply(call, bytes, len);
        ehr_free(bytes);
    } else {
        struct say_later *later = ehr_calloc(1, sizeof *later);
        later->service = service;
        later->call = call;
        later->reply = bytes;
        later->reply_len = len;
        uv_timer_init(service->loop, &later->timer);
        later->timer.data = later;
        uv_timer_start(&later->timer, say_later_fire, req->delay_ms, 0);
    }
    ehr__test__echo_request__free_unpacked(req, NULL);
}

/* ---- Hang ---- */

struct hang {
    struct echo_service *service;
    struct rpc_call *call;
};

static void hang_cancelled(void *data, enum rpc_status why)
{
    struct hang *hang = data;
    atomic_fetch_add(&hang->service->stats.cancels[why], 1);
    /* Finishing from inside the cancel callback is allowed: it releases. */
    note_finish(hang->service, rpc_call_fail(hang->call, RPC_STATUS_CANCELLED, "gone"));
    ehr_free(hang);
}

static void hang_handler(struct rpc_call *call, const uint8_t *request, size_t request_len,
                         void *data)
{
    struct echo_service *service = data;
    atomic_fetch_add(&service->stats.calls, 1);
    struct hang *hang = ehr_calloc(1, sizeof *hang);
    hang->service = service;
    hang->call = call;
    rpc_call_on_cancel(call, hang_cancelled, hang);
}

/* ---- Count ---- */

struct count {
    struct echo_service *service;
    struct rpc_stream *stream;
    uint32_t next;
    uint32_t total;
    uint32_t fail_code;
    bool hang;
    uint8_t *payload;
    size_t payload_len;
    uint8_t *scratch;
};

static void count_free(struct count *count)
{
    ehr_free(count->payload);
    ehr_free(count->scratch);
    ehr_free(count);
}

static void count_cancelled(void *data, enum rpc_status why)
{
    struct count *count = data;
    atomic_fetch_add(&count->service->stats.cancels[why], 1);
    note_finish(count->service, rpc_stream_finish(count->stream, RPC_STATUS_CANCELLED, "gone"));
    count_free(count);
}

static void count_pump(struct count *count);

static void count_writable(struct rpc_stream *stream, void *data)
{
    struct count *count = data;
    atomic_fetch_add(&count->service->stats.writable, 1);
    count_pump(count);
}

/* Send until done or the queue is full; finish at the end unless hanging. */
static void count_pump(struct count *count)
{
    while (count->next < count->total) {
        Ehr__Test__CountReply reply = EHR__TEST__COUNT_REPLY__INIT;
        reply.index = count->next;
        reply.payload.data = count->payload;
        reply.payload.len = count->payload_len;
        size_t len = ehr__test__count_reply__pack(&reply, count->scratch);
        int rv = rpc_stream_send(count->stream, count->scratch, len);
        if (rv == EHR_EAGAIN) {
            atomic_fetch_add(&count->service->stats.eagain, 1);
            return; /* the writable callback resumes */
        }
        if (rv != 0)
            return; /* ended: the cancel callback finishes it */
        count->next++;
    }
    if (count->hang)
        return;
    enum rpc_status status = count->fail_code < RPC_STATUS_COUNT_
                                 ? (enum rpc_status)count->fail_code
                                 : RPC_STATUS_UNKNOWN;
    note_finish(count->service,
                rpc_stream_finish(count->stream, status, status ? "failed as asked" : NULL));
    count_free(count);
}

static void count_handler(struct rpc_stream *stream, const uint8_t *request, size_t request_len,
                          void *data)
{
    struct echo_service *service = data;
    atomic_fetch_add(&service->stats.calls, 1);
    Ehr__Test__CountRequest *req = ehr__test__count_request__unpack(NULL, request_len, request);
    if (req == NULL) {
        atomic_fetch_add(&service->stats.decode_errors, 1);
        rpc_stream_finish(stream, RPC_STATUS_INVALID_ARGUMENT, "malformed CountRequest");
        return;
    }
    if (req->payload_bytes > 1024 * 1024) {
        rpc_stream_finish(stream, RPC_STATUS_INVALID_ARGUMENT, "payload_bytes over 1 MiB");
        ehr__test__count_request__free_unpacked(req, NULL);
        return;
    }
    struct count *count = ehr_calloc(1, sizeof *count);
    count->service = service;
    count->stream = stream;
    count->total = req->count;
    count->fail_code = req->fail_code;
    count->hang = req->hang;
    count->payload_len = req->payload_bytes;
    count->payload = ehr_calloc(1, count->payload_len + 1);
    memset(count->payload, 'x', count->payload_len);
    count->scratch = ehr_malloc(count->payload_len + 32);
    ehr__test__count_request__free_unpacked(req, NULL);
    rpc_stream_on_cancel(stream, count_cancelled, count);
    rpc_stream_on_writable(stream, count_writable, count);
    count_pump(count);
}

/* ---- Sum ---- */

struct sum {
    struct echo_service *service;
    struct rpc_upload *upload;
    uint32_t messages;
    uint64_t bytes;
    bool in_order;
};

static void sum_done(struct sum *sum)
{
    if (sum->service->sum_held == sum->upload)
        sum->service->sum_held = NULL;
    ehr_free(sum);
}

static void sum_cancelled(void *data, enum rpc_status why)
{
    struct sum *sum = data;
    atomic_fetch_add(&sum->service->stats.cancels[why], 1);
    note_finish(sum->service, rpc_upload_fail(sum->upload, RPC_STATUS_CANCELLED, "gone"));
    sum_done(sum);
}

static void sum_message(struct rpc_upload *upload, const uint8_t *message, size_t len, void *data)
{
    struct sum *sum = data;
    atomic_fetch_add(&sum->service->stats.sum_messages, 1);
    Ehr__Test__CountReply *m = ehr__test__count_reply__unpack(NULL, len, message);
    if (m == NULL || m->index == ECHO_SUM_FAIL_INDEX) {
        if (m == NULL)
            atomic_fetch_add(&sum->service->stats.decode_errors, 1);
        rpc_upload_fail(upload, RPC_STATUS_INVALID_ARGUMENT,
                        m == NULL ? "malformed CountReply" : "failed as asked");
        ehr__test__count_reply__free_unpacked(m, NULL);
        sum_done(sum);
        return;
    }
    if (m->index != sum->messages)
        sum->in_order = false;
    sum->messages++;
    sum->bytes += m->payload.len;
    ehr__test__count_reply__free_unpacked(m, NULL);
}

static void sum_end(struct rpc_upload *upload, void *data)
{
    struct sum *sum = data;
    atomic_fetch_add(&sum->service->stats.sum_ends, 1);
    Ehr__Test__SumReply reply = EHR__TEST__SUM_REPLY__INIT;
    reply.messages = sum->messages;
    reply.bytes = sum->bytes;
    reply.in_order = sum->in_order;
    uint8_t bytes[32];
    size_t len = ehr__test__sum_reply__pack(&reply, bytes);
    note_finish(sum->service, rpc_upload_reply(upload, bytes, len));
    sum_done(sum);
}

static void sum_handler(struct rpc_upload *upload, void *data)
{
    struct echo_service *service = data;
    atomic_fetch_add(&service->stats.calls, 1);
    struct sum *sum = ehr_calloc(1, sizeof *sum);
    sum->service = service;
    sum->upload = upload;
    sum->in_order = true;
    rpc_upload_on_cancel(upload, sum_cancelled, sum);
    rpc_upload_on_message(upload, sum_message, sum_end, sum);
    if (service->sum_hold) {
        rpc_upload_pause(upload);
        service->sum_held = upload;
    }
}

void echo_service_sum_resume(struct echo_service *service)
{
    if (service->sum_held != NULL)
        rpc_upload_resume(service->sum_held);
}

/* ---- Chat ---- */

struct chat {
    struct echo_service *service;
    struct rpc_upload *upload;
    struct rpc_stream *stream;
    uint8_t *pending; /* an echo the queue had no room for: requests paused */
    size_t pending_len;
};

static void chat_done(struct chat *chat, enum rpc_status status, const char *message)
{
    note_finish(chat->service, rpc_stream_finish(chat->stream, status, message));
    ehr_free(chat->pending);
    ehr_free(chat);
}

static void chat_cancelled(void *data, enum rpc_status why)
{
    struct chat *chat = data;
    atomic_fetch_add(&chat->service->stats.cancels[why], 1);
    chat_done(chat, RPC_STATUS_CANCELLED, "gone");
}

/* Send MESSAGE (copied), or hold it and pause. False if the chat ended. */
static bool chat_send(struct chat *chat, const uint8_t *message, size_t len)
{
    int rv = rpc_stream_send(chat->stream, message, len);
    if (rv == EHR_EAGAIN) {
        chat->pending = ehr_malloc(len + 1);
        memcpy(chat->pending, message, len);
        chat->pending_len = len;
        rpc_upload_pause(chat->upload);
        return true;
    }
    if (rv != 0) {
        chat_done(chat, RPC_STATUS_UNAVAILABLE, NULL);
        return false;
    }
    return true;
}

static void chat_writable(struct rpc_stream *stream, void *data)
{
    (void)stream;
    struct chat *chat = data;
    if (chat->pending == NULL)
        return;
    uint8_t *held = chat->pending;
    chat->pending = NULL;
    bool alive = chat_send(chat, held, chat->pending_len);
    ehr_free(held);
    if (alive && chat->pending == NULL)
        rpc_upload_resume(chat->upload);
}

static void chat_message(struct rpc_upload *upload, const uint8_t *message, size_t len, void *data)
{
    (void)upload;
    struct chat *chat = data;
    atomic_fetch_add(&chat->service->stats.sum_messages, 1);
    Ehr__Test__CountReply *m = ehr__test__count_reply__unpack(NULL, len, message);
    if (m == NULL || m->index == ECHO_SUM_FAIL_INDEX) {
        if (m == NULL)
            atomic_fetch_add(&chat->service->stats.decode_errors, 1);
        ehr__test__count_reply__free_unpacked(m, NULL);
        chat_done(chat, RPC_STATUS_INVALID_ARGUMENT,
                  m == NULL ? "malformed CountReply" : "failed as asked");
        return;
    }
    ehr__test__count_reply__free_unpacked(m, NULL);
    chat_send(chat, message, len);
}

static void chat_end(struct rpc_upload *upload, void *data)
{
    (void)upload;
    struct chat *chat = data;
    atomic_fetch_add(&chat->service->stats.sum_ends, 1);
    chat_done(chat, RPC_STATUS_OK, NULL);
}

static void chat_handler(struct rpc_upload *upload, void *data)
{
    struct echo_service *service = data;
    atomic_fetch_add(&service->stats.calls, 1);
    struct chat *chat = ehr_calloc(1, sizeof *chat);
    chat->service = service;
    chat->upload = upload;
    chat->stream = rpc_upload_stream(upload);
    rpc_stream_on_cancel(chat->stream, chat_cancelled, chat);
    rpc_stream_on_writable(chat->stream, chat_writable, chat);
    rpc_upload_on_message(upload, chat_message, chat_end, chat);
}

int echo_service_register(struct echo_service *service, uv_loop_t *loop, struct rpc_server *server)
{
    memset(&service->stats, 0, sizeof service->stats);
    service->loop = loop;
    service->sum_hold = false;
    service->sum_held = NULL;
    int rv = rpc_server_add_unary(server, ECHO_SAY, say, service);
    if (rv == 0)
        rv = rpc_server_add_unary(server, ECHO_HANG, hang_handler, service);
    if (rv == 0)
        rv = rpc_server_add_stream(server, ECHO_COUNT, count_handler, service);
    if (rv == 0)
        rv = rpc_server_add_upload(server, ECHO_SUM, sum_handler, service);
    if (rv == 0)
        rv = rpc_server_add_bidi(server, ECHO_CHAT, chat_handler, service);
    return rv;
}
