/*
 * Tests of rpc/: the codecs (no I/O); our client against our server on one
 * loop (unary, async reply, streaming with back-pressure, cancel,
 * deadlines, limits at their edges, disconnects, graceful shutdown); and a
 * server on its own thread fed raw bytes over real sockets (HTTP/1.1,
 * garbage, truncated and oversize messages, compressed flag, bad headers,
 * connection limit). The interoperability test with a stock gRPC client is
 * interop.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "echo.pb-c.h"
#include "echo_service.h"
#include "h2raw.h"
#include "rpc.h"
#include "rpc_internal.h"

/* ---------------------------------------------------------------- codecs */

static uint64_t timeout_of(const char *text)
{
    uint64_t ms = 0;
    assert_int_equal(rpc__timeout_parse((const uint8_t *)text, strlen(text), &ms), 0);
    return ms;
}

static int timeout_rejects(const char *text)
{
    uint64_t ms;
    return rpc__timeout_parse((const uint8_t *)text, strlen(text), &ms) == EHR_EINVAL;
}

static void test_grpc_timeout_parses_every_unit(void **state)
{
    assert_int_equal(timeout_of("2H"), 2ull * 3600 * 1000);
    assert_int_equal(timeout_of("3M"), 3ull * 60 * 1000);
    assert_int_equal(timeout_of("5S"), 5000);
    assert_int_equal(timeout_of("250m"), 250);
    assert_int_equal(timeout_of("1500u"), 2);    /* rounded up */
    assert_int_equal(timeout_of("1u"), 1);       /* a positive timeout never becomes 0 */
    assert_int_equal(timeout_of("1000000n"), 1); /* exactly one ms */
    assert_int_equal(timeout_of("1000001n"), 2);
    assert_int_equal(timeout_of("0m"), 0);
    assert_int_equal(timeout_of("99999999m"), 99999999); /* 8 digits: the edge */
    assert_int_equal(timeout_of("99999999H"), RPC_TIMEOUT_MS_MAX);
}

static void test_grpc_timeout_rejects_malformed(void **state)
{
    assert_true(timeout_rejects(""));
    assert_true(timeout_rejects("m"));
    assert_true(timeout_rejects("100"));
    assert_true(timeout_rejects("100x"));
    assert_true(timeout_rejects("-5S"));
    assert_true(timeout_rejects("1 S"));
    assert_true(timeout_rejects("123456789m")); /* 9 digits: one over */
}

static void test_grpc_timeout_format_round_trips(void **state)
{
    const uint64_t cases[] = {1, 999, 99999999, 100000000, 5000000001ull, RPC_TIMEOUT_MS_MAX};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        char text[RPC__TIMEOUT_TEXT_BYTES_MAX + 1];
        rpc__timeout_format(cases[i], text);
        uint64_t back = timeout_of(text);
        assert_true(back >= cases[i]);                  /* never shorter */
        assert_true(back - cases[i] <= 3600ull * 1000); /* at most one unit longer */
    }
}

static void test_grpc_message_percent_round_trip(void **state)
{
    const char *text = "height 7: 100% gone \xc3\xbc\n\x01 end";
    char encoded[3 * RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    size_t n = rpc__percent_encode(text, encoded, sizeof encoded);
    assert_string_equal(encoded, "height 7: 100%25 gone %C3%BC%0A%01 end");
    assert_int_equal(n, strlen(encoded));
    char decoded[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    rpc__percent_decode((const uint8_t *)encoded, n, decoded, sizeof decoded);
    assert_string_equal(decoded, text);
    /* Bad escapes pass through as they are. */
    rpc__percent_decode((const uint8_t *)"a%zzb%4", 7, decoded, sizeof decoded);
    assert_string_equal(decoded, "a%zzb%4");
}

static void test_grpc_message_cut_at_limit(void **state)
{
    char text[RPC_STATUS_MESSAGE_BYTES_MAX + 100];
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    char encoded[3 * RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    assert_int_equal(rpc__percent_encode(text, encoded, sizeof encoded),
                     RPC_STATUS_MESSAGE_BYTES_MAX);
    /* All escaped: three bytes each, still within the buffer. */
    memset(text, '%', sizeof text - 1);
    assert_int_equal(rpc__percent_encode(text, encoded, sizeof encoded),
                     3 * RPC_STATUS_MESSAGE_BYTES_MAX);
}

static void test_status_names_and_parse(void **state)
{
    assert_string_equal(rpc_status_name(RPC_STATUS_OK), "OK");
    assert_string_equal(rpc_status_name(RPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(rpc_status_name(17), "UNKNOWN_STATUS");
    assert_string_equal(rpc_status_name(-1), "UNKNOWN_STATUS");
    for (int s = 0; s < RPC_STATUS_COUNT_; s++) {
        const char *text = rpc__status_text((enum rpc_status)s);
        assert_int_equal(rpc__status_parse((const uint8_t *)text, strlen(text)), s);
    }
    assert_int_equal(rpc__status_parse((const uint8_t *)"17", 2), RPC_STATUS_UNKNOWN);
    assert_int_equal(rpc__status_parse((const uint8_t *)"x", 1), RPC_STATUS_UNKNOWN);
    assert_int_equal(rpc__status_parse((const uint8_t *)"", 0), RPC_STATUS_UNKNOWN);
}

static void test_status_from_err_mapping(void **state)
{
    assert_int_equal(rpc_status_from_err(0), RPC_STATUS_OK);
    assert_int_equal(rpc_status_from_err(EHR_EINVAL), RPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(rpc_status_from_err(EHR_ETOOBIG), RPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(rpc_status_from_err(EHR_EBADSIG), RPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(rpc_status_from_err(EHR_ECHAIN), RPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(rpc_status_from_err(EHR_ENOTFOUND), RPC_STATUS_NOT_FOUND);
    assert_int_equal(rpc_status_from_err(EHR_EEXIST), RPC_STATUS_ALREADY_EXISTS);
    assert_int_equal(rpc_status_from_err(EHR_EFULL), RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(rpc_status_from_err(EHR_EAGAIN), RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(rpc_status_from_err(EHR_ENOTLEADER), RPC_STATUS_UNAVAILABLE);
    assert_int_equal(rpc_status_from_err(EHR_ETIMEDOUT), RPC_STATUS_DEADLINE_EXCEEDED);
    assert_int_equal(rpc_status_from_err(EHR_EDENIED), RPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(rpc_status_from_err(EHR_ECORRUPT), RPC_STATUS_DATA_LOSS);
    assert_int_equal(rpc_status_from_err(-ENOMEM), RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(rpc_status_from_err(-EIO), RPC_STATUS_INTERNAL);
    assert_int_equal(rpc_status_from_err(12345), RPC_STATUS_UNKNOWN);
    /* Every ehrchain code maps to something other than OK and UNKNOWN. */
    for (int err = EHR_EINVAL; err < EHR_ERR_LAST_; err++) {
        assert_int_not_equal(rpc_status_from_err(err), RPC_STATUS_OK);
        assert_int_not_equal(rpc_status_from_err(err), RPC_STATUS_UNKNOWN);
    }
}

struct gathered {
    uint8_t data[256];
    size_t len;
    int count;
};

static enum rpc_status gather(void *ctx, const uint8_t *message, size_t len, ehr_diag *diag)
{
    struct gathered *g = ctx;
    memcpy(g->data + g->len, message, len);
    g->len += len;
    g->count++;
    return RPC_STATUS_OK;
}

static void test_reader_reassembles_at_every_split(void **state)
{
    uint8_t wire[64];
    size_t n = h2raw_grpc_frame(wire, 0, (const uint8_t *)"hello", 5);
    n += h2raw_grpc_frame(wire + n, 0, NULL, 0);
    n += h2raw_grpc_frame(wire + n, 0, (const uint8_t *)"world!", 6);
    for (size_t split = 0; split <= n; split++) {
        struct rpc__reader reader = {0};
        struct gathered g = {0};
        size_t left = 1000;
        struct rpc__budget budget = {.connection_bytes = &left};
        ehr_diag err;
        assert_int_equal(rpc__reader_feed(&reader, wire, split, 100, &budget, gather, &g, &err),
                         RPC_STATUS_OK);
        assert_int_equal(
            rpc__reader_feed(&reader, wire + split, n - split, 100, &budget, gather, &g, &err),
            RPC_STATUS_OK);
        assert_int_equal(g.count, 3);
        assert_memory_equal(g.data, "helloworld!", 11);
        assert_true(rpc__reader_idle(&reader));
        assert_int_equal(left, 1000); /* everything charged was given back */
        rpc__reader_release(&reader, &budget);
        rpc__buf_free(&reader.body);
    }
}

static void test_reader_refuses_oversize_before_buffering(void **state)
{
    uint8_t prefix[5];
    h2raw_grpc_frame(prefix, 0, NULL, 101);
    struct rpc__reader reader = {0};
    struct gathered g = {0};
    ehr_diag err;
    assert_int_equal(rpc__reader_feed(&reader, prefix, 5, 100, NULL, gather, &g, &err),
                     RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "101 bytes"));
    assert_null(reader.body.data); /* nothing was allocated for it */
    /* Exactly at the limit is fine. */
    struct rpc__reader ok = {0};
    uint8_t wire[105];
    memset(wire, 0, sizeof wire);
    h2raw_grpc_frame(wire, 0, NULL, 100);
    assert_int_equal(rpc__reader_feed(&ok, wire, 105, 100, NULL, gather, &g, &err), RPC_STATUS_OK);
    assert_int_equal(g.count, 1);
}

static void test_reader_refuses_compressed_and_bad_flags(void **state)
{
    uint8_t wire[8];
    ehr_diag err;
    struct gathered g = {0};
    struct rpc__reader reader = {0};
    h2raw_grpc_frame(wire, 1, (const uint8_t *)"abc", 3);
    assert_int_equal(rpc__reader_feed(&reader, wire, 8, 100, NULL, gather, &g, &err),
                     RPC_STATUS_INTERNAL);
    assert_non_null(strstr(err.msg, "compressed"));
    struct rpc__reader reader2 = {0};
    h2raw_grpc_frame(wire, 0x80, (const uint8_t *)"abc", 3);
    assert_int_equal(rpc__reader_feed(&reader2, wire, 8, 100, NULL, gather, &g, &err),
                     RPC_STATUS_INTERNAL);
    assert_int_equal(g.count, 0);
}

/* Which budget refused a charge, as rpc__budget_take tells its owner. */
static void note_refused(void *ctx, enum rpc__budget_kind kind)
{
    int *refused = ctx;
    refused[kind]++;
}

static void test_reader_budget_limits_partial_messages(void **state)
{
    int refused[4] = {0};
    uint8_t wire[5 + 50];
    memset(wire, 0, sizeof wire);
    h2raw_grpc_frame(wire, 0, NULL, 50);
    struct rpc__reader reader = {0};
    struct gathered g = {0};
    ehr_diag err;
    size_t left = 49;
    struct rpc__budget budget = {
        .connection_bytes = &left, .refused = note_refused, .refused_ctx = refused};
    /* A partial message of 50 bytes needs 50 bytes of budget. */
    assert_int_equal(rpc__reader_feed(&reader, wire, 20, 100, &budget, gather, &g, &err),
                     RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(refused[RPC__BUDGET_CONNECTION], 1);
    left = 50;
    struct rpc__reader reader2 = {0};
    assert_int_equal(rpc__reader_feed(&reader2, wire, 20, 100, &budget, gather, &g, &err),
                     RPC_STATUS_OK);
    assert_int_equal(left, 0);
    rpc__reader_release(&reader2, &budget); /* dropped mid-message: refunded */
    assert_int_equal(left, 50);
    /* With an address budget, a charge must fit both, and is taken from both. */
    size_t address_left = 49;
    struct rpc__budget both = {.connection_bytes = &left,
                               .address_bytes = &address_left,
                               .refused = note_refused,
                               .refused_ctx = refused};
    struct rpc__reader reader3 = {0};
    assert_int_equal(rpc__reader_feed(&reader3, wire, 20, 100, &both, gather, &g, &err),
                     RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "your address"));
    assert_int_equal(refused[RPC__BUDGET_ADDRESS], 1);
    assert_int_equal(left, 50); /* nothing taken from either */
    address_left = 50;
    struct rpc__reader reader4 = {0};
    assert_int_equal(rpc__reader_feed(&reader4, wire, 20, 100, &both, gather, &g, &err),
                     RPC_STATUS_OK);
    assert_int_equal(left, 0);
    assert_int_equal(address_left, 0);
    rpc__reader_release(&reader4, &both);
    assert_int_equal(left, 50);
    assert_int_equal(address_left, 50);
    /* With the server's too (invariant 14): all three, or none. */
    size_t server_left = 49;
    struct rpc__budget all = {.connection_bytes = &left,
                              .address_bytes = &address_left,
                              .server_bytes = &server_left,
                              .refused = note_refused,
                              .refused_ctx = refused};
    struct rpc__reader reader5 = {0};
    assert_int_equal(rpc__reader_feed(&reader5, wire, 20, 100, &all, gather, &g, &err),
                     RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "the server may buffer"));
    /* Each refusal told once, as the budget that was short. */
    assert_int_equal(refused[RPC__BUDGET_SERVER], 1);
    assert_int_equal(refused[RPC__BUDGET_CONNECTION], 1);
    assert_int_equal(refused[RPC__BUDGET_ADDRESS], 1);
    assert_int_equal(left, 50);
    assert_int_equal(address_left, 50);
    server_left = 50;
    struct rpc__reader reader6 = {0};
    assert_int_equal(rpc__reader_feed(&reader6, wire, 20, 100, &all, gather, &g, &err),
                     RPC_STATUS_OK);
    assert_int_equal(server_left, 0);
    assert_int_equal(address_left, 0);
    rpc__reader_release(&reader6, &all);
    assert_int_equal(server_left, 50);
    assert_int_equal(left, 50);
    /* With a client certificate's too (mutual TLS): all four, or none. */
    size_t certificate_left = 49;
    all.certificate_bytes = &certificate_left;
    struct rpc__reader reader7 = {0};
    assert_int_equal(rpc__reader_feed(&reader7, wire, 20, 100, &all, gather, &g, &err),
                     RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(err.msg, "your certificate"));
    assert_int_equal(refused[RPC__BUDGET_CERTIFICATE], 1);
    assert_int_equal(refused[RPC__BUDGET_SERVER], 1);
    assert_int_equal(left, 50);
    assert_int_equal(address_left, 50);
    assert_int_equal(server_left, 50);
    certificate_left = 50;
    struct rpc__reader reader8 = {0};
    assert_int_equal(rpc__reader_feed(&reader8, wire, 20, 100, &all, gather, &g, &err),
                     RPC_STATUS_OK);
    assert_int_equal(certificate_left, 0);
    assert_int_equal(server_left, 0);
    rpc__reader_release(&reader8, &all);
    assert_int_equal(certificate_left, 50);
    assert_int_equal(server_left, 50);
    rpc__buf_free(&reader8.body);
    rpc__buf_free(&reader6.body);
    rpc__buf_free(&reader4.body);
    rpc__buf_free(&reader2.body);
}

static void test_reader_counts_messages_against_max(void **state)
{
    uint8_t wire[10];
    size_t n = h2raw_grpc_frame(wire, 0, NULL, 0);
    n += h2raw_grpc_frame(wire + n, 0, NULL, 0);
    struct rpc__reader reader = {.messages_max = 1};
    struct gathered g = {0};
    ehr_diag err;
    assert_int_equal(rpc__reader_feed(&reader, wire, n, 100, NULL, gather, &g, &err),
                     RPC_STATUS_INTERNAL);
    assert_int_equal(g.count, 1);
    assert_non_null(strstr(err.msg, "more than 1 message"));
}

/* ------------------------------------------ client and server on one loop */

struct fixture {
    uv_loop_t loop;
    struct rpc_server *server;
    struct echo_service service;
    struct rpc_client *client;
    uint16_t port;
    bool connected;
    int connect_status;
    bool server_closed;
    bool client_closed;
};

struct outcome {
    bool done;
    enum rpc_status status;
    char message[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    uint8_t *response;
    size_t response_len;
    uint32_t messages;
    uint32_t next_index;
    bool out_of_order;
    struct fixture *fixture;
    bool close_client_after; /* messages */
    uint32_t close_after_count;
};

static void on_connected(struct rpc_client *client, int status, void *data)
{
    struct fixture *f = data;
    f->connected = true;
    f->connect_status = status;
}

static void on_done(void *data, enum rpc_status status, const char *message,
                    const uint8_t *response, size_t response_len)
{
    struct outcome *o = data;
    assert_false(o->done); /* exactly once */
    o->done = true;
    o->status = status;
    snprintf(o->message, sizeof o->message, "%s", message);
    if (response != NULL) {
        o->response = ehr_malloc(response_len + 1);
        memcpy(o->response, response, response_len);
        o->response_len = response_len;
    }
}

static void on_client_closed(void *data)
{
    ((struct fixture *)data)->client_closed = true;
}

static void on_message(void *data, const uint8_t *message, size_t len)
{
    struct outcome *o = data;
    Ehr__Test__CountReply *reply = ehr__test__count_reply__unpack(NULL, len, message);
    assert_non_null(reply);
    if (reply->index != o->next_index)
        o->out_of_order = true;
    o->next_index = reply->index + 1;
    o->messages++;
    ehr__test__count_reply__free_unpacked(reply, NULL);
    if (o->close_client_after && o->messages == o->close_after_count)
        rpc_client_close(o->fixture->client, on_client_closed, o->fixture); /* allowed here */
}

static void outcome_clear(struct outcome *o)
{
    ehr_free(o->response);
    memset(o, 0, sizeof *o);
}

static void wake_cb(uv_timer_t *timer) {}

/* Run LOOP until *FLAG or 10 s of loop time (then fail). */
static void run_until(uv_loop_t *loop, const bool *flag)
{
    uv_update_time(loop);
    uint64_t start = uv_now(loop);
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, wake_cb, 10, 10); /* keeps poll from sleeping long */
    uv_unref((uv_handle_t *)&tick);
    while (!*flag) {
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
        if (uv_now(loop) - start > 10000)
            fail_msg("timed out waiting on the loop");
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Run until a counter reaches WANT (for service counters). */
static void run_until_count(uv_loop_t *loop, atomic_uint *counter, unsigned want)
{
    bool reached = false;
    uv_update_time(loop);
    uint64_t start = uv_now(loop);
    while (!reached) {
        uv_run(loop, UV_RUN_NOWAIT);
        reached = atomic_load(counter) >= want;
        uv_update_time(loop);
        if (uv_now(loop) - start > 10000)
            fail_msg("timed out waiting for a counter");
        if (!reached)
            usleep(1000);
    }
}

static void fixture_start(struct fixture *f, const struct rpc_server_config *config,
                          const struct rpc_client_config *client_config)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(rpc_server_new(&f->loop, config, &f->server), 0);
    assert_int_equal(echo_service_register(&f->service, &f->loop, f->server), 0);
    assert_int_equal(rpc_server_listen(f->server, "127.0.0.1", 0), 0);
    f->port = rpc_server_port(f->server);
    assert_int_not_equal(f->port, 0);
    assert_int_equal(rpc_client_connect(&f->loop, "127.0.0.1", f->port, client_config, on_connected,
                                        f, &f->client),
                     0);
    run_until(&f->loop, &f->connected);
    assert_int_equal(f->connect_status, 0);
    assert_false(rpc_client_is_down(f->client));
}

static void on_server_closed(struct rpc_server *server, void *data)
{
    ((struct fixture *)data)->server_closed = true;
}

static void fixture_stop(struct fixture *f)
{
    if (f->client != NULL && !f->client_closed)
        rpc_client_close(f->client, on_client_closed, f);
    if (f->server != NULL && !f->server_closed)
        rpc_server_close(f->server, on_server_closed, f);
    run_until(&f->loop, &f->client_closed);
    run_until(&f->loop, &f->server_closed);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle was closed */
}

static size_t pack_echo(uint8_t **out, const char *text, size_t payload_len, uint32_t delay_ms,
                        uint32_t fail_code, const char *fail_message)
{
    Ehr__Test__EchoRequest req = EHR__TEST__ECHO_REQUEST__INIT;
    req.text = (char *)text;
    uint8_t *payload = ehr_calloc(1, payload_len + 1);
    memset(payload, 'p', payload_len);
    req.payload.data = payload;
    req.payload.len = payload_len;
    req.delay_ms = delay_ms;
    req.fail_code = fail_code;
    req.fail_message = (char *)(fail_message ? fail_message : "");
    size_t len = ehr__test__echo_request__get_packed_size(&req);
    *out = ehr_malloc(len + 1);
    ehr__test__echo_request__pack(&req, *out);
    ehr_free(payload);
    return len;
}

static size_t pack_count(uint8_t *out, uint32_t count, uint32_t payload_bytes, uint32_t fail_code,
                         bool hang)
{
    Ehr__Test__CountRequest req = EHR__TEST__COUNT_REQUEST__INIT;
    req.count = count;
    req.payload_bytes = payload_bytes;
    req.fail_code = fail_code;
    req.hang = hang;
    return ehr__test__count_request__pack(&req, out);
}

/* One unary Say through the fixture's client; returns its outcome in O. */
static void say_call(struct fixture *f, struct outcome *o, const char *text, size_t payload_len,
                     uint32_t delay_ms, uint32_t fail_code, const char *fail_message,
                     uint64_t timeout_ms)
{
    uint8_t *req;
    size_t len = pack_echo(&req, text, payload_len, delay_ms, fail_code, fail_message);
    assert_int_equal(rpc_client_unary(f->client, ECHO_SAY, req, len, timeout_ms, on_done, o, NULL),
                     0);
    ehr_free(req);
    run_until(&f->loop, &o->done);
}

static void test_unary_echo_round_trip(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome o = {0};
    say_call(&f, &o, "hello", 1000, 0, 0, NULL, 5000);
    assert_int_equal(o.status, RPC_STATUS_OK);
    Ehr__Test__EchoReply *reply = ehr__test__echo_reply__unpack(NULL, o.response_len, o.response);
    assert_non_null(reply);
    assert_string_equal(reply->text, "hello");
    assert_int_equal(reply->payload.len, 1000);
    ehr__test__echo_reply__free_unpacked(reply, NULL);
    outcome_clear(&o);
    /* An empty request message is a message too. */
    assert_int_equal(rpc_client_unary(f.client, ECHO_SAY, NULL, 0, 0, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(o.response_len, 0);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_unary_async_reply_after_delay(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome o = {0};
    say_call(&f, &o, "later", 10, 30, 0, NULL, 5000);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(atomic_load(&f.service.stats.late_closed), 0);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_fail_status_and_message_reach_client(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome o = {0};
    const char *text = "no block at height 7 \xe2\x80\x94 100% sure\nsecond line";
    say_call(&f, &o, "x", 0, 0, RPC_STATUS_NOT_FOUND, text, 5000);
    assert_int_equal(o.status, RPC_STATUS_NOT_FOUND);
    assert_string_equal(o.message, text);
    assert_null(o.response);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_unknown_method_is_unimplemented(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome o = {0};
    assert_int_equal(
        rpc_client_unary(f.client, "/ehr.test.Echo/Nope", NULL, 0, 5000, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_UNIMPLEMENTED);
    assert_non_null(strstr(o.message, "/ehr.test.Echo/Nope"));
    assert_int_equal(atomic_load(&f.service.stats.calls), 0);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void start_count(struct fixture *f, struct outcome *o, uint32_t count,
                        uint32_t payload_bytes, uint32_t fail_code, bool hang, uint64_t timeout_ms,
                        struct rpc_client_call **call)
{
    uint8_t req[64];
    size_t len = pack_count(req, count, payload_bytes, fail_code, hang);
    assert_int_equal(rpc_client_stream(f->client, ECHO_COUNT, req, len, timeout_ms, on_message,
                                       on_done, o, call),
                     0);
}

static void test_stream_many_messages_in_order_with_back_pressure(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome o = {0};
    start_count(&f, &o, 5000, 1000, 0, false, 0, NULL);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(o.messages, 5000);
    assert_false(o.out_of_order);
    /* 5 MB through a 1 MiB queue: the handler must have been held back and resumed. */
    assert_true(atomic_load(&f.service.stats.eagain) > 0);
    assert_true(atomic_load(&f.service.stats.writable) > 0);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_stream_ends_with_handler_status(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome o = {0};
    start_count(&f, &o, 3, 10, RPC_STATUS_FAILED_PRECONDITION, false, 0, NULL);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_FAILED_PRECONDITION);
    assert_string_equal(o.message, "failed as asked");
    assert_int_equal(o.messages, 3);
    outcome_clear(&o);
    /* Zero messages and OK: a trailers-only response. */
    start_count(&f, &o, 0, 0, 0, false, 0, NULL);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(o.messages, 0);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_client_cancel_reaches_handler(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome o = {0};
    struct rpc_client_call *call;
    assert_int_equal(rpc_client_unary(f.client, ECHO_HANG, NULL, 0, 0, on_done, &o, &call), 0);
    run_until_count(&f.loop, &f.service.stats.calls, 1);
    assert_int_equal(rpc_server_call_count(f.server), 1);
    rpc_client_call_cancel(call);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_CANCELLED);
    run_until_count(&f.loop, &f.service.stats.cancels[RPC_STATUS_CANCELLED], 1);
    /* The handler's finish after the cancel only released the call. */
    assert_int_equal(atomic_load(&f.service.stats.late_closed), 1);
    assert_int_equal(rpc_server_call_count(f.server), 0);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_deadline_exceeded_ends_call_on_both_sides(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome o = {0};
    assert_int_equal(rpc_client_unary(f.client, ECHO_HANG, NULL, 0, 50, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_DEADLINE_EXCEEDED);
    /* The server either timed out itself or saw the client's reset first. */
    while (atomic_load(&f.service.stats.cancels[RPC_STATUS_DEADLINE_EXCEEDED]) +
               atomic_load(&f.service.stats.cancels[RPC_STATUS_CANCELLED]) ==
           0)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(rpc_server_call_count(f.server), 0);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_message_limit_edge_on_server(void **state)
{
    struct rpc_server_config config = {.message_bytes_max = 65536};
    struct rpc_client_config client_config = {.message_bytes_max = 1 << 20};
    struct fixture f;
    fixture_start(&f, &config, &client_config);
    /* EchoRequest{payload} is 1 tag byte + 3 length bytes + payload. */
    struct outcome o = {0};
    say_call(&f, &o, "", 65536 - 4, 0, 0, NULL, 5000);
    assert_int_equal(o.status, RPC_STATUS_OK); /* exactly at the limit */
    outcome_clear(&o);
    say_call(&f, &o, "", 65536 - 3, 0, 0, NULL, 5000);
    assert_int_equal(o.status, RPC_STATUS_RESOURCE_EXHAUSTED); /* one byte over */
    assert_non_null(strstr(o.message, "65537 bytes"));
    assert_int_equal(atomic_load(&f.service.stats.calls), 1);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_oversize_request_refused_and_connection_lives(void **state)
{
    struct rpc_server_config config = {.message_bytes_max = 65536};
    struct rpc_client_config client_config = {.message_bytes_max = 4 << 20};
    struct fixture f;
    fixture_start(&f, &config, &client_config);
    uint8_t *req;
    size_t len = pack_echo(&req, "", 3 << 20, 0, 0, NULL);
    struct outcome o = {0};
    assert_int_equal(rpc_client_unary(f.client, ECHO_SAY, req, len, 5000, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(atomic_load(&f.service.stats.calls), 0);
    ehr_free(req);
    outcome_clear(&o);
    /* The connection is still good. */
    say_call(&f, &o, "after", 1, 0, 0, NULL, 5000);
    assert_int_equal(o.status, RPC_STATUS_OK);
    outcome_clear(&o);
    fixture_stop(&f);
}

static int big_reply_result = 1;

static void big_reply(struct rpc_call *call, const uint8_t *request, size_t len, void *data)
{
    size_t n = (size_t)(uintptr_t)data;
    uint8_t *bytes = ehr_calloc(1, n);
    big_reply_result = rpc_call_reply(call, bytes, n);
    ehr_free(bytes);
}

static void test_client_refuses_oversize_locally(void **state)
{
    struct rpc_client_config client_config = {.message_bytes_max = 100};
    struct fixture f;
    fixture_start(&f, NULL, &client_config);
    uint8_t req[101] = {0};
    struct outcome o = {0};
    assert_int_equal(rpc_client_unary(f.client, ECHO_SAY, req, 101, 0, on_done, &o, NULL),
                     EHR_ETOOBIG);
    assert_int_equal(rpc_client_unary(f.client, "no-slash", req, 1, 0, on_done, &o, NULL),
                     EHR_EINVAL);
    /* A response over the client's limit, and one at it. */
    assert_int_equal(rpc_server_add_unary(f.server, "/t.T/Big", big_reply, (void *)(uintptr_t)101),
                     0);
    assert_int_equal(rpc_server_add_unary(f.server, "/t.T/Edge", big_reply, (void *)(uintptr_t)100),
                     0);
    assert_int_equal(rpc_client_unary(f.client, "/t.T/Big", NULL, 0, 0, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(o.message, "101 bytes"));
    outcome_clear(&o);
    assert_int_equal(rpc_client_unary(f.client, "/t.T/Edge", NULL, 0, 0, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(o.response_len, 100);
    outcome_clear(&o);
    fixture_stop(&f);
}

/* ---- custom trailing metadata ---- */

static int trailer_results[8];

/* Adds trailers, checking the rules at their edges, then fails (method data
 * 0) or replies (1). */
static void trailers_handler(struct rpc_call *call, const uint8_t *request, size_t request_len,
                             void *data)
{
    char longest_name[RPC_TRAILER_NAME_BYTES_MAX + 2],
        longest_value[RPC_TRAILER_VALUE_BYTES_MAX + 2];
    memset(longest_name, 'n', sizeof longest_name);
    longest_name[RPC_TRAILER_NAME_BYTES_MAX + 1] = '\0'; /* one over */
    memset(longest_value, 'v', sizeof longest_value);
    longest_value[RPC_TRAILER_VALUE_BYTES_MAX + 1] = '\0'; /* one over */
    int *r = trailer_results;
    r[0] = rpc_call_trailer_add(call, "grpc-status", "0");     /* gRPC's own */
    r[1] = rpc_call_trailer_add(call, "Ehr-Leader", "x");      /* upper case */
    r[2] = rpc_call_trailer_add(call, longest_name, "x");      /* name one over */
    r[3] = rpc_call_trailer_add(call, "ehr-a", longest_value); /* value one over */
    r[4] = rpc_call_trailer_add(call, "ehr-a", "line\nbreak"); /* not printable */
    longest_name[RPC_TRAILER_NAME_BYTES_MAX] = '\0';
    longest_value[RPC_TRAILER_VALUE_BYTES_MAX] = '\0';
    r[5] = rpc_call_trailer_add(call, "ehr-a", longest_value) | /* at the edges */
           rpc_call_trailer_add(call, longest_name, "b") | rpc_call_trailer_add(call, "ehr-c", "") |
           rpc_call_trailer_add(call, "ehr-d", "d");
    r[6] = rpc_call_trailer_add(call, "ehr-e", "e"); /* a fifth */
    if ((uintptr_t)data == 0) {
        rpc_call_fail(call, RPC_STATUS_UNAVAILABLE, "go elsewhere");
    } else {
        uint8_t one = 7;
        rpc_call_reply(call, &one, 1);
    }
}

struct trailer_outcome {
    bool done;
    enum rpc_status status;
    struct rpc_client_call *call;
    char a[RPC_TRAILER_VALUE_BYTES_MAX + 1], d[8];
    bool has_c, has_e;
};

static void on_trailers_done(void *data, enum rpc_status status, const char *message,
                             const uint8_t *response, size_t response_len)
{
    struct trailer_outcome *o = data;
    o->done = true;
    o->status = status;
    const char *a = rpc_client_call_trailer(o->call, "ehr-a");
    const char *d = rpc_client_call_trailer(o->call, "ehr-d");
    snprintf(o->a, sizeof o->a, "%s", a != NULL ? a : "(none)");
    snprintf(o->d, sizeof o->d, "%s", d != NULL ? d : "(none)");
    o->has_c = rpc_client_call_trailer(o->call, "ehr-c") != NULL;
    o->has_e = rpc_client_call_trailer(o->call, "ehr-e") != NULL;
}

static void test_custom_trailers_reach_the_client_within_their_limits(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    assert_int_equal(rpc_server_add_unary(f.server, "/t.T/Fail", trailers_handler, (void *)0), 0);
    assert_int_equal(rpc_server_add_unary(f.server, "/t.T/Ok", trailers_handler, (void *)1), 0);
    const char *paths[] = {"/t.T/Fail", "/t.T/Ok"};
    for (size_t i = 0; i < 2; i++) {
        struct trailer_outcome o = {0};
        assert_int_equal(
            rpc_client_unary(f.client, paths[i], NULL, 0, 0, on_trailers_done, &o, &o.call), 0);
        run_until(&f.loop, &o.done);
        for (int k = 0; k <= 4; k++)
            assert_int_equal(trailer_results[k], EHR_EINVAL);
        assert_int_equal(trailer_results[5], 0);
        assert_int_equal(trailer_results[6], EHR_EFULL);
        assert_int_equal(o.status, i == 0 ? RPC_STATUS_UNAVAILABLE : RPC_STATUS_OK);
        assert_int_equal(strlen(o.a), RPC_TRAILER_VALUE_BYTES_MAX);
        assert_string_equal(o.d, "d");
        assert_true(o.has_c);
        assert_false(o.has_e);
    }
    fixture_stop(&f);
}

static void test_response_over_limit_fails_the_call(void **state)
{
    struct rpc_server_config config = {.message_bytes_max = 1000};
    struct fixture f;
    fixture_start(&f, &config, NULL);
    assert_int_equal(rpc_server_add_unary(f.server, "/t.T/Big", big_reply, (void *)(uintptr_t)1001),
                     0);
    assert_int_equal(
        rpc_server_add_unary(f.server, "/t.T/Edge", big_reply, (void *)(uintptr_t)1000), 0);
    struct outcome o = {0};
    assert_int_equal(rpc_client_unary(f.client, "/t.T/Big", NULL, 0, 0, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    assert_int_equal(big_reply_result, EHR_ETOOBIG);
    assert_int_equal(o.status, RPC_STATUS_RESOURCE_EXHAUSTED);
    outcome_clear(&o);
    assert_int_equal(rpc_client_unary(f.client, "/t.T/Edge", NULL, 0, 0, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    assert_int_equal(big_reply_result, 0);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(o.response_len, 1000);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_request_budget_is_returned_after_each_call(void **state)
{
    /* A budget of one message: each call must give it back for the next to fit. */
    struct rpc_server_config config = {.message_bytes_max = 1000,
                                       .connection_request_bytes_max = 1000};
    struct fixture f;
    fixture_start(&f, &config, NULL);
    for (int i = 0; i < 20; i++) {
        struct outcome o = {0};
        say_call(&f, &o, "", 900, 0, 0, NULL, 5000);
        assert_int_equal(o.status, RPC_STATUS_OK);
        outcome_clear(&o);
    }
    fixture_stop(&f);
}

/* The calls kept for reuse keep at most RPC__POOLED_BUFFERS_BYTES_MAX of
 * buffers: after 300 calls of 60,000 bytes each way at once (their
 * buffers, some 36 MB, would all fit the pool's per-buffer bound), the
 * pool keeps some of them and no more than that. */
static void test_pooled_calls_keep_their_buffers_within_the_bound(void **state)
{
    (void)state;
    enum { CALLS = 300, PAYLOAD = 60000 };
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    static struct outcome o[CALLS];
    memset(o, 0, sizeof o);
    uint8_t *req;
    size_t len = pack_echo(&req, "p", PAYLOAD, 0, 0, NULL);
    for (int i = 0; i < CALLS; i++)
        assert_int_equal(
            rpc_client_unary(f.client, ECHO_SAY, req, len, 10000, on_done, &o[i], NULL), 0);
    ehr_free(req);
    for (int i = 0; i < CALLS; i++) {
        run_until(&f.loop, &o[i].done);
        assert_int_equal(o[i].status, RPC_STATUS_OK);
        ehr_free(o[i].response);
    }
    size_t kept = rpc__server_pool_buffer_bytes(f.server);
    assert_true(kept > 0);
    assert_true(kept <= RPC__POOLED_BUFFERS_BYTES_MAX);
    assert_true(kept > RPC__POOLED_BUFFERS_BYTES_MAX - 4 * RPC__POOLED_BUFFER_BYTES_MAX);
    fixture_stop(&f);
}

static void test_many_concurrent_calls_on_one_connection(void **state)
{
    enum { CALLS = 1000 };
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome *o = ehr_calloc(CALLS, sizeof *o);
    for (int i = 0; i < CALLS; i++) {
        char text[16];
        snprintf(text, sizeof text, "%d", i);
        uint8_t *req;
        size_t len = pack_echo(&req, text, (size_t)i % 300, 0, 0, NULL);
        assert_int_equal(rpc_client_unary(f.client, ECHO_SAY, req, len, 0, on_done, &o[i], NULL),
                         0);
        ehr_free(req);
    }
    for (int i = 0; i < CALLS; i++) {
        run_until(&f.loop, &o[i].done);
        assert_int_equal(o[i].status, RPC_STATUS_OK);
        Ehr__Test__EchoReply *reply =
            ehr__test__echo_reply__unpack(NULL, o[i].response_len, o[i].response);
        assert_non_null(reply);
        char text[16];
        snprintf(text, sizeof text, "%d", i);
        assert_string_equal(reply->text, text);
        assert_int_equal(reply->payload.len, (size_t)i % 300);
        ehr__test__echo_reply__free_unpacked(reply, NULL);
        outcome_clear(&o[i]);
    }
    assert_int_equal(atomic_load(&f.service.stats.calls), CALLS);
    ehr_free(o);
    fixture_stop(&f);
}

static void test_client_disconnect_mid_stream_cancels_handler(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct outcome o = {.fixture = &f, .close_client_after = true, .close_after_count = 10};
    start_count(&f, &o, 10, 100, 0, true, 0, NULL);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_CANCELLED);
    assert_int_equal(o.messages, 10);
    run_until(&f.loop, &f.client_closed);
    run_until_count(&f.loop, &f.service.stats.cancels[RPC_STATUS_CANCELLED], 1);
    assert_int_equal(atomic_load(&f.service.stats.late_closed), 1);
    assert_int_equal(rpc_server_call_count(f.server), 0);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_reply_after_client_gone_is_safe(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    uint8_t *req;
    size_t len = pack_echo(&req, "late", 10, 40, 0, NULL);
    struct outcome o = {0};
    assert_int_equal(rpc_client_unary(f.client, ECHO_SAY, req, len, 0, on_done, &o, NULL), 0);
    ehr_free(req);
    run_until_count(&f.loop, &f.service.stats.calls, 1);
    rpc_client_close(f.client, on_client_closed, &f);
    run_until(&f.loop, &f.client_closed);
    assert_int_equal(o.status, RPC_STATUS_CANCELLED);
    /* The service holds the call with no cancel callback; its timer replies later. */
    run_until_count(&f.loop, &f.service.stats.late_closed, 1);
    assert_int_equal(rpc_server_call_count(f.server), 0);
    fixture_stop(&f);
}

/* A streaming handler that fills its queue once and records how much fit. */
static int queue_accepted = -1;
static int queue_big_first = -1;

static void fill_queue(struct rpc_stream *stream, const uint8_t *request, size_t len, void *data)
{
    size_t size = (size_t)(uintptr_t)data;
    uint8_t *msg = ehr_calloc(1, size + 1);
    int n = 0;
    while (rpc_stream_send(stream, msg, size) == 0)
        n++;
    queue_accepted = n;
    ehr_free(msg);
    rpc_stream_finish(stream, RPC_STATUS_OK, NULL);
}

static void big_first(struct rpc_stream *stream, const uint8_t *request, size_t len, void *data)
{
    uint8_t *msg = ehr_calloc(1, 5000);
    queue_big_first = rpc_stream_send(stream, msg, 5000);
    ehr_free(msg);
    rpc_stream_finish(stream, RPC_STATUS_OK, NULL);
}

static void count_messages(void *data, const uint8_t *message, size_t len)
{
    ((struct outcome *)data)->messages++;
}

static void test_stream_queue_limit_edge(void **state)
{
    struct rpc_server_config config = {.stream_queue_bytes_max = 1000};
    struct fixture f;
    fixture_start(&f, &config, NULL);
    assert_int_equal(rpc_server_add_stream(f.server, "/t.T/Fill", fill_queue, (void *)95), 0);
    assert_int_equal(rpc_server_add_stream(f.server, "/t.T/BigFirst", big_first, NULL), 0);
    struct outcome o = {0};
    assert_int_equal(
        rpc_client_stream(f.client, "/t.T/Fill", NULL, 0, 0, count_messages, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    /* Each message takes 95 + 5 bytes: ten fill the 1000-byte queue exactly. */
    assert_int_equal(queue_accepted, 10);
    assert_int_equal(o.messages, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    outcome_clear(&o);
    /* An empty queue takes one message larger than the queue. */
    assert_int_equal(
        rpc_client_stream(f.client, "/t.T/BigFirst", NULL, 0, 0, count_messages, on_done, &o, NULL),
        0);
    run_until(&f.loop, &o.done);
    assert_int_equal(queue_big_first, 0);
    assert_int_equal(o.messages, 1);
    outcome_clear(&o);
    fixture_stop(&f);
}

static void test_graceful_close_lets_unary_finish_and_ends_streams(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    uint8_t *req;
    size_t len = pack_echo(&req, "inflight", 1, 50, 0, NULL);
    struct outcome unary = {0}, stream = {0};
    assert_int_equal(rpc_client_unary(f.client, ECHO_SAY, req, len, 0, on_done, &unary, NULL), 0);
    ehr_free(req);
    start_count(&f, &stream, 2, 10, 0, true, 0, NULL);
    run_until_count(&f.loop, &f.service.stats.calls, 2);
    rpc_server_close(f.server, on_server_closed, &f);
    run_until(&f.loop, &stream.done);
    assert_int_equal(stream.status, RPC_STATUS_UNAVAILABLE);
    assert_int_equal(stream.messages, 2);
    run_until(&f.loop, &unary.done);
    assert_int_equal(unary.status, RPC_STATUS_OK); /* the in-flight call finished */
    run_until(&f.loop, &f.server_closed);
    assert_int_equal(atomic_load(&f.service.stats.cancels[RPC_STATUS_UNAVAILABLE]), 1);
    /* New calls now fail: the server is gone. */
    struct outcome late = {0};
    assert_int_equal(rpc_client_unary(f.client, ECHO_SAY, NULL, 0, 0, on_done, &late, NULL), 0);
    run_until(&f.loop, &late.done);
    assert_int_equal(late.status, RPC_STATUS_UNAVAILABLE);
    assert_true(rpc_client_is_down(f.client));
    outcome_clear(&unary);
    outcome_clear(&stream);
    outcome_clear(&late);
    fixture_stop(&f);
}

static void test_connect_refused_is_unavailable(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* Find a port nobody listens on: bind one and close it. */
    struct rpc_server *probe;
    assert_int_equal(rpc_server_new(&loop, NULL, &probe), 0);
    assert_int_equal(rpc_server_listen(probe, "127.0.0.1", 0), 0);
    uint16_t port = rpc_server_port(probe);
    struct fixture f = {0};
    rpc_server_close(probe, on_server_closed, &f);
    run_until(&loop, &f.server_closed);
    struct rpc_client *client;
    assert_int_equal(rpc_client_connect(&loop, "127.0.0.1", port, NULL, on_connected, &f, &client),
                     0);
    struct outcome o = {0};
    assert_int_equal(rpc_client_unary(client, ECHO_SAY, NULL, 0, 0, on_done, &o, NULL), 0);
    run_until(&loop, &o.done);
    assert_true(f.connected);
    assert_int_equal(f.connect_status, UV_ECONNREFUSED);
    assert_int_equal(o.status, RPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(o.message, "refused"));
    assert_true(rpc_client_is_down(client));
    rpc_client_close(client, on_client_closed, &f);
    run_until(&loop, &f.client_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    outcome_clear(&o);
    assert_int_equal(rpc_client_connect(&loop, "", 1, NULL, NULL, NULL, &client), EHR_EINVAL);
}

static void noop_unary(struct rpc_call *call, const uint8_t *r, size_t n, void *d)
{
    rpc_call_reply(call, NULL, 0);
}

static void test_method_registration_rules(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rpc_server *server;
    assert_int_equal(rpc_server_new(&loop, NULL, &server), 0);
    const char *bad[] = {"", "/", "//", "/a", "/a/", "//b", "a/b", "/a/b/c", "/a /b", "/a/b\n"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad); i++)
        assert_int_equal(rpc_server_add_unary(server, bad[i], noop_unary, NULL), EHR_EINVAL);
    char longest[RPC_METHOD_PATH_BYTES_MAX + 2];
    memset(longest, 'm', sizeof longest);
    longest[0] = '/';
    longest[2] = '/';
    longest[RPC_METHOD_PATH_BYTES_MAX] = '\0'; /* exactly the limit */
    assert_int_equal(rpc_server_add_unary(server, longest, noop_unary, NULL), 0);
    longest[RPC_METHOD_PATH_BYTES_MAX] = 'm';
    longest[RPC_METHOD_PATH_BYTES_MAX + 1] = '\0'; /* one over */
    assert_int_equal(rpc_server_add_unary(server, longest, noop_unary, NULL), EHR_EINVAL);
    assert_int_equal(rpc_server_add_unary(server, "/s.S/M", noop_unary, NULL), 0);
    assert_int_equal(rpc_server_add_unary(server, "/s.S/M", noop_unary, NULL), EHR_EEXIST);
    for (unsigned i = 2; i < RPC_METHODS_MAX; i++) {
        char path[32];
        snprintf(path, sizeof path, "/s.S/M%u", i);
        assert_int_equal(rpc_server_add_unary(server, path, noop_unary, NULL), 0);
    }
    assert_int_equal(rpc_server_add_unary(server, "/s.S/OneTooMany", noop_unary, NULL), EHR_EFULL);
    struct rpc_server_config config = {.message_bytes_max = 2u << 20,
                                       .connection_request_bytes_max = 1u << 20};
    struct rpc_server *bad_server;
    assert_int_equal(rpc_server_new(&loop, &config, &bad_server), EHR_EINVAL);
    struct fixture f = {0};
    rpc_server_close(server, on_server_closed, &f);
    run_until(&loop, &f.server_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Whether a server takes CONFIG (closed at once if it does): 0 or its error. */
static int config_taken(const struct rpc_server_config *config)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct rpc_server *server;
    int rv = rpc_server_new(&loop, config, &server);
    if (rv == 0) {
        struct fixture f = {0};
        rpc_server_close(server, on_server_closed, &f);
        run_until(&loop, &f.server_closed);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
    return rv;
}

/* Invariants 18 and 19: a certificate's caps given must be below the
 * server's totals (one client certificate cannot hold every connection,
 * nor the whole request budget); at the edge they are refused, one below
 * taken; left to their defaults they are taken over smaller totals. */
static void test_config_certificate_caps_below_the_totals(void **state)
{
    (void)state;
    struct rpc_server_config c = {.connections_max = 10, .connections_per_certificate_max = 10};
    assert_int_equal(config_taken(&c), EHR_EINVAL);
    c.connections_per_certificate_max = 11;
    assert_int_equal(config_taken(&c), EHR_EINVAL);
    c.connections_per_certificate_max = 9;
    assert_int_equal(config_taken(&c), 0);
    c.connections_per_certificate_max = 0; /* the default, 128, over 10 */
    assert_int_equal(config_taken(&c), 0);
    enum { TOTAL = 1 << 20 };
    struct rpc_server_config b = {.message_bytes_max = 65536,
                                  .unfinished_bytes_max = TOTAL,
                                  .unfinished_bytes_per_certificate_max = TOTAL};
    assert_int_equal(config_taken(&b), EHR_EINVAL);
    b.unfinished_bytes_per_certificate_max = TOTAL - 1;
    assert_int_equal(config_taken(&b), 0);
    b.unfinished_bytes_per_certificate_max = 65535; /* a message of the largest size must fit */
    assert_int_equal(config_taken(&b), EHR_EINVAL);
    b.unfinished_bytes_per_certificate_max = 0; /* the default, 32 MiB, over 1 MiB */
    assert_int_equal(config_taken(&b), 0);
}

/* ------------------------------------------------------ client streaming */

/* The client side of one Sum upload: sends COUNT messages of PAYLOAD bytes,
 * as fast as the upload takes them (EAGAIN, then the writable callback). */
struct uploader {
    struct outcome outcome; /* first: the call's data points at both */
    struct rpc_client_call *call;
    uint32_t count;
    uint32_t next;
    uint32_t payload_bytes;
    uint32_t fail_at; /* index sent as ECHO_SUM_FAIL_INDEX (count: never) */
    uint64_t accepted_bytes;
    uint32_t eagain;
    bool hold_close; /* do not half-close after the last message */
    bool closed;
    uint8_t *scratch;
    uint8_t *payload;
};

static void uploader_fill(struct uploader *up)
{
    while (!up->outcome.done && up->next < up->count) {
        Ehr__Test__CountReply m = EHR__TEST__COUNT_REPLY__INIT;
        m.index = up->next == up->fail_at ? ECHO_SUM_FAIL_INDEX : up->next;
        m.payload.data = up->payload;
        m.payload.len = up->payload_bytes;
        size_t len = ehr__test__count_reply__pack(&m, up->scratch);
        int rv = rpc_client_upload_send(up->call, up->scratch, len);
        if (rv == EHR_EAGAIN) {
            up->eagain++;
            return;
        }
        if (rv != 0)
            return;
        up->accepted_bytes += len;
        up->next++;
    }
    if (up->next == up->count && !up->closed && !up->hold_close && !up->outcome.done) {
        up->closed = true;
        rpc_client_upload_close(up->call);
    }
}

static void uploader_writable(struct rpc_client_call *call, void *data)
{
    uploader_fill(data);
}

static void uploader_start(struct fixture *f, struct uploader *up, uint32_t count,
                           uint32_t payload_bytes, uint64_t timeout_ms)
{
    memset(up, 0, sizeof *up);
    up->count = count;
    up->fail_at = count;
    up->payload_bytes = payload_bytes;
    up->payload = ehr_calloc(1, payload_bytes + 1);
    memset(up->payload, 'u', payload_bytes);
    up->scratch = ehr_malloc(payload_bytes + 32);
    assert_int_equal(rpc_client_upload(f->client, ECHO_SUM, timeout_ms, uploader_writable, on_done,
                                       &up->outcome, &up->call),
                     0);
}

static void uploader_clear(struct uploader *up)
{
    ehr_free(up->payload);
    ehr_free(up->scratch);
    outcome_clear(&up->outcome);
}

static Ehr__Test__SumReply *sum_reply(const struct outcome *o)
{
    assert_int_equal(o->status, RPC_STATUS_OK);
    Ehr__Test__SumReply *r = ehr__test__sum_reply__unpack(NULL, o->response_len, o->response);
    assert_non_null(r);
    return r;
}

static void on_connected_flag(struct rpc_client *client, int status, void *data)
{
    *(bool *)data = true;
}

static void on_flag_closed(void *data)
{
    *(bool *)data = true;
}

/* Run the loop for MS milliseconds of loop time. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, wake_cb, 10, 10);
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + ms;
    while (uv_now(loop) < end) {
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Invariant 11: every message reaches the handler once, in order, then the
 * end; the reply comes after it. 24 MiB pass through a 1 MiB window. */
static void test_upload_messages_arrive_in_order_then_the_end(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct uploader up;
    uploader_start(&f, &up, 384, 65536, 0);
    uploader_fill(&up);
    run_until(&f.loop, &up.outcome.done);
    Ehr__Test__SumReply *r = sum_reply(&up.outcome);
    assert_int_equal(r->messages, 384);
    assert_int_equal(r->bytes, 384ull * 65536);
    assert_true(r->in_order);
    assert_true(up.eagain > 0); /* the client's own queue pushed back (its invariant 4) */
    assert_int_equal(atomic_load(&f.service.stats.sum_ends), 1);
    ehr__test__sum_reply__free_unpacked(r, NULL);
    uploader_clear(&up);
    /* An upload of no message at all is a whole request too. */
    uploader_start(&f, &up, 0, 0, 0);
    uploader_fill(&up);
    run_until(&f.loop, &up.outcome.done);
    r = sum_reply(&up.outcome);
    assert_int_equal(r->messages, 0);
    ehr__test__sum_reply__free_unpacked(r, NULL);
    uploader_clear(&up);
    fixture_stop(&f);
}

/*
 * Invariant 11, back-pressure: a handler that pauses gets nothing more, and
 * the client can send at most one stream window (1 MiB) past what it took:
 * with its own 1 MiB queue, it gets no more than about 2 MiB accepted out
 * of 16 MiB. Held past request_receive_timeout_ms, it is not timed out;
 * resumed, everything arrives.
 */
static void test_upload_paused_handler_holds_the_client_to_one_window(void **state)
{
    struct rpc_server_config config = {.request_receive_timeout_ms = 200};
    struct fixture f;
    fixture_start(&f, &config, NULL);
    f.service.sum_hold = true;
    struct uploader up;
    uploader_start(&f, &up, 256, 65536, 0);
    uploader_fill(&up);
    run_for(&f.loop, 500);
    assert_false(up.outcome.done); /* not timed out while held */
    assert_int_equal(atomic_load(&f.service.stats.sum_messages), 0);
    assert_true(up.accepted_bytes > 1024 * 1024);
    assert_true(up.accepted_bytes <= 2 * 1024 * 1024 + 2 * 65600);
    echo_service_sum_resume(&f.service);
    run_until(&f.loop, &up.outcome.done);
    Ehr__Test__SumReply *r = sum_reply(&up.outcome);
    assert_int_equal(r->messages, 256);
    assert_true(r->in_order);
    ehr__test__sum_reply__free_unpacked(r, NULL);
    uploader_clear(&up);
    fixture_stop(&f);
}

/*
 * Invariants 10 and 11 at the edge: undelivered messages count against the
 * connection's request budget. With a paused handler, room for exactly two
 * messages: two wait, the third is refused RESOURCE_EXHAUSTED, and the
 * handler is told so.
 */
static void test_upload_undelivered_messages_count_against_the_budget(void **state)
{
    enum { MESSAGE = 32768 };
    struct rpc_server_config config = {.message_bytes_max = MESSAGE,
                                       .connection_request_bytes_max = 2 * MESSAGE};
    struct fixture f;
    fixture_start(&f, &config, NULL);
    f.service.sum_hold = true;
    struct uploader up;
    uploader_start(&f, &up, 2, MESSAGE - 8, 0); /* packs to just under MESSAGE */
    up.hold_close = true;
    uploader_fill(&up);
    run_for(&f.loop, 200);
    assert_false(up.outcome.done); /* two fit exactly */
    up.count = 3;
    uploader_fill(&up);
    run_until(&f.loop, &up.outcome.done);
    assert_int_equal(up.outcome.status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(atomic_load(&f.service.stats.cancels[RPC_STATUS_RESOURCE_EXHAUSTED]), 1);
    assert_int_equal(atomic_load(&f.service.stats.sum_messages), 0);
    uploader_clear(&up);
    /* The budget came back whole: the same upload, not held, passes. */
    f.service.sum_hold = false;
    uploader_start(&f, &up, 3, MESSAGE - 8, 0);
    uploader_fill(&up);
    run_until(&f.loop, &up.outcome.done);
    Ehr__Test__SumReply *r = sum_reply(&up.outcome);
    assert_int_equal(r->messages, 3);
    ehr__test__sum_reply__free_unpacked(r, NULL);
    uploader_clear(&up);
    fixture_stop(&f);
}

/* Invariant 6 for uploads: each message must arrive within
 * request_receive_timeout_ms of the one before; a client that stops is
 * ended DEADLINE_EXCEEDED and the handler told. */
static void test_upload_a_client_that_stops_sending_is_timed_out(void **state)
{
    struct rpc_server_config config = {.request_receive_timeout_ms = 200};
    struct fixture f;
    fixture_start(&f, &config, NULL);
    struct uploader up;
    uploader_start(&f, &up, 3, 100, 0);
    up.hold_close = true;
    uploader_fill(&up);
    run_until(&f.loop, &up.outcome.done);
    assert_int_equal(up.outcome.status, RPC_STATUS_DEADLINE_EXCEEDED);
    assert_int_equal(atomic_load(&f.service.stats.sum_messages), 3);
    assert_int_equal(atomic_load(&f.service.stats.cancels[RPC_STATUS_DEADLINE_EXCEEDED]), 1);
    assert_int_equal(atomic_load(&f.service.stats.sum_ends), 0);
    uploader_clear(&up);
    fixture_stop(&f);
}

/* A client that cancels half-way: the handler is told CANCELLED and never
 * sees an end (what the blob store relies on to leave nothing behind). */
static void test_upload_cut_off_reaches_the_handler_as_a_cancel(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct uploader up;
    uploader_start(&f, &up, 10, 1000, 0);
    up.hold_close = true;
    uploader_fill(&up);
    run_until_count(&f.loop, &f.service.stats.sum_messages, 10);
    rpc_client_call_cancel(up.call);
    run_until(&f.loop, &up.outcome.done);
    assert_int_equal(up.outcome.status, RPC_STATUS_CANCELLED);
    run_until_count(&f.loop, &f.service.stats.cancels[RPC_STATUS_CANCELLED], 1);
    assert_int_equal(atomic_load(&f.service.stats.sum_ends), 0);
    uploader_clear(&up);
    fixture_stop(&f);
}

/* A handler that refuses half-way stops the client's upload: it gets the
 * status, and its later sends say EHR_ECLOSED; the connection lives on. */
static void test_upload_refused_half_way_stops_the_client(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct uploader up;
    uploader_start(&f, &up, 200, 65536, 0);
    up.fail_at = 5;
    uploader_fill(&up);
    run_until(&f.loop, &up.outcome.done);
    assert_int_equal(up.outcome.status, RPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(atomic_load(&f.service.stats.sum_messages), 6);
    assert_true(up.next < 200);
    uploader_clear(&up);
    struct outcome o = {0};
    say_call(&f, &o, "still here", 0, 0, 0, NULL, 0);
    assert_int_equal(o.status, RPC_STATUS_OK);
    outcome_clear(&o);
    fixture_stop(&f);
}

/* The client's upload queue at RPC_UPLOAD_QUEUE_BYTES_MAX: messages fill it
 * exactly, the next (even empty) is EAGAIN and queues nothing; one larger
 * message goes into an empty queue. Measured before the connection is up,
 * so nothing drains meanwhile; then it all arrives. */
static void test_upload_client_queue_edge(void **state)
{
    struct fixture f;
    fixture_start(&f, NULL, NULL);
    struct rpc_client *c;
    bool connected = false;
    assert_int_equal(
        rpc_client_connect(&f.loop, "127.0.0.1", f.port, NULL, on_connected_flag, &connected, &c),
        0);
    struct outcome o = {0};
    struct rpc_client_call *call;
    assert_int_equal(rpc_client_upload(c, ECHO_SUM, 0, NULL, on_done, &o, &call), 0);
    enum { HALF = RPC_UPLOAD_QUEUE_BYTES_MAX / 2 - 5 }; /* with its prefix: half the queue */
    uint8_t *big = ehr_calloc(1, RPC_UPLOAD_QUEUE_BYTES_MAX + 1);
    /* CountReply{payload: ...} packs to the bytes' own size plus 4 (tag, length). */
    Ehr__Test__CountReply m = EHR__TEST__COUNT_REPLY__INIT;
    m.payload.data = big;
    m.payload.len = HALF - 4;
    uint8_t *packed = ehr_malloc(RPC_UPLOAD_QUEUE_BYTES_MAX + 16);
    size_t len = ehr__test__count_reply__pack(&m, packed);
    assert_int_equal(len, HALF);
    assert_int_equal(rpc_client_upload_send(call, packed, len), 0);
    assert_int_equal(rpc_client_upload_send(call, packed, len), 0); /* exactly full */
    assert_int_equal(rpc_client_upload_send(call, packed, 0), EHR_EAGAIN);
    rpc_client_upload_close(call);
    run_until(&f.loop, &o.done);
    Ehr__Test__SumReply *r = sum_reply(&o);
    assert_int_equal(r->messages, 2);
    ehr__test__sum_reply__free_unpacked(r, NULL);
    outcome_clear(&o);
    /* One message over the queue's size into an empty queue is taken. */
    m.payload.len = RPC_UPLOAD_QUEUE_BYTES_MAX;
    len = ehr__test__count_reply__pack(&m, packed);
    assert_int_equal(rpc_client_upload(c, ECHO_SUM, 0, NULL, on_done, &o, &call), 0);
    assert_int_equal(rpc_client_upload_send(call, packed, len), 0);
    rpc_client_upload_close(call);
    run_until(&f.loop, &o.done);
    r = sum_reply(&o);
    assert_int_equal(r->bytes, RPC_UPLOAD_QUEUE_BYTES_MAX);
    ehr__test__sum_reply__free_unpacked(r, NULL);
    outcome_clear(&o);
    bool closed = false;
    rpc_client_close(c, on_flag_closed, &closed);
    run_until(&f.loop, &closed);
    ehr_free(big);
    ehr_free(packed);
    fixture_stop(&f);
}

/* A message over message_bytes_max on an upload is refused before any of
 * it is buffered, as on a unary call (its handler, if it was dispatched
 * already, is told RESOURCE_EXHAUSTED). */
static void test_upload_message_limit_edge(void **state)
{
    enum { MESSAGE = 16384 };
    struct rpc_server_config config = {.message_bytes_max = MESSAGE};
    struct fixture f;
    fixture_start(&f, &config, NULL);
    struct uploader up;
    uploader_start(&f, &up, 1, 0, 0);
    /* The largest payload that packs to exactly MESSAGE bytes passes ... */
    uint32_t payload = MESSAGE;
    Ehr__Test__CountReply m = EHR__TEST__COUNT_REPLY__INIT;
    uint8_t *probe = ehr_calloc(1, MESSAGE + 64);
    m.payload.data = probe;
    m.payload.len = payload;
    while (ehr__test__count_reply__get_packed_size(&m) > MESSAGE)
        m.payload.len = --payload;
    assert_int_equal(ehr__test__count_reply__get_packed_size(&m), MESSAGE);
    uploader_clear(&up);
    uploader_start(&f, &up, 1, payload, 0);
    uploader_fill(&up);
    run_until(&f.loop, &up.outcome.done);
    Ehr__Test__SumReply *r = sum_reply(&up.outcome);
    assert_int_equal(r->bytes, payload);
    ehr__test__sum_reply__free_unpacked(r, NULL);
    uploader_clear(&up);
    /* ... one byte more does not. */
    uploader_start(&f, &up, 1, payload + 1, 0);
    uploader_fill(&up);
    run_until(&f.loop, &up.outcome.done);
    assert_int_equal(up.outcome.status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(atomic_load(&f.service.stats.sum_ends), 1); /* the first one only */
    uploader_clear(&up);
    ehr_free(probe);
    fixture_stop(&f);
}

/* ------------------------------------------ a server thread and raw sockets */

struct thread_server {
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t stop;
    uv_sem_t ready;
    /* A question the test thread asks of the server on its own thread
     * (ts_ask): the server belongs to its loop. */
    uv_async_t ask;
    uv_sem_t answered;
    uint64_t (*ask_fn)(const struct rpc_server *server, const void *arg);
    const void *ask_arg;
    uint64_t answer;
    struct rpc_server *server;
    struct echo_service service;
    struct rpc_server_config config;
    uint16_t port;
};

static void ts_closed(struct rpc_server *server, void *data)
{
    struct thread_server *ts = data;
    uv_close((uv_handle_t *)&ts->stop, NULL);
    uv_close((uv_handle_t *)&ts->ask, NULL);
}

static void ts_ask_cb(uv_async_t *async)
{
    struct thread_server *ts = async->data;
    if (ts->ask_fn == NULL)
        return;
    ts->answer = ts->ask_fn(ts->server, ts->ask_arg);
    ts->ask_fn = NULL;
    uv_sem_post(&ts->answered);
}

/* FN(server, ARG) run on the server's thread; its answer. */
static uint64_t ts_ask(struct thread_server *ts,
                       uint64_t (*fn)(const struct rpc_server *server, const void *arg),
                       const void *arg)
{
    ts->ask_arg = arg;
    ts->ask_fn = fn; /* published to the server's thread by uv_async_send */
    uv_async_send(&ts->ask);
    uv_sem_wait(&ts->answered);
    return ts->answer;
}

static uint64_t ask_refused(const struct rpc_server *server, const void *arg)
{
    for (size_t k = 0; k < RPC_SERVER_REFUSAL_KINDS; k++) {
        const char *limit;
        uint64_t count = rpc_server_refused_count(server, k, &limit);
        if (strcmp(limit, arg) == 0)
            return count;
    }
    EHR_ASSERT(!"a refusal kind of that name");
    return 0;
}

/* The server's refusals for the limit named LIMIT (rpc_server_refused_count). */
static uint64_t ts_refused(struct thread_server *ts, const char *limit)
{
    return ts_ask(ts, ask_refused, limit);
}

struct calls_question {
    const char *path; /* a method's, or "unknown" */
    enum rpc_status status;
};

static uint64_t ask_calls(const struct rpc_server *server, const void *arg)
{
    const struct calls_question *q = arg;
    for (uint32_t m = 0; m <= rpc_server_method_count(server); m++) {
        const char *path;
        uint64_t count = rpc_server_calls_ended_count(server, m, q->status, &path);
        if (strcmp(path, q->path) == 0)
            return count;
    }
    EHR_ASSERT(!"a method of that path");
    return 0;
}

static uint64_t ask_method_count(const struct rpc_server *server, const void *arg)
{
    (void)arg;
    return rpc_server_method_count(server);
}

/* Calls to PATH ("unknown": to no method) ended with STATUS, once COUNT
 * of them are (the server counts a call once its stream is gone: wait at
 * most 5 s for it); the count. */
static uint64_t ts_calls_wait(struct thread_server *ts, const char *path, enum rpc_status status,
                              uint64_t count)
{
    struct calls_question q = {path, status};
    uint64_t got = 0;
    for (int i = 0; i < 500 && (got = ts_ask(ts, ask_calls, &q)) < count; i++)
        usleep(10000);
    return got;
}

static void ts_stop(uv_async_t *async)
{
    struct thread_server *ts = async->data;
    rpc_server_close(ts->server, ts_closed, ts);
}

static void ts_main(void *arg)
{
    struct thread_server *ts = arg;
    uv_loop_init(&ts->loop);
    uv_async_init(&ts->loop, &ts->stop, ts_stop);
    ts->stop.data = ts;
    uv_async_init(&ts->loop, &ts->ask, ts_ask_cb);
    ts->ask.data = ts;
    EHR_ASSERT(rpc_server_new(&ts->loop, &ts->config, &ts->server) == 0);
    EHR_ASSERT(echo_service_register(&ts->service, &ts->loop, ts->server) == 0);
    EHR_ASSERT(rpc_server_listen(ts->server, "127.0.0.1", 0) == 0);
    ts->port = rpc_server_port(ts->server);
    uv_sem_post(&ts->ready);
    uv_run(&ts->loop, UV_RUN_DEFAULT);
    EHR_ASSERT(uv_loop_close(&ts->loop) == 0);
}

static struct thread_server *ts_start(const struct rpc_server_config *config)
{
    struct thread_server *ts = ehr_calloc(1, sizeof *ts);
    if (config != NULL)
        ts->config = *config;
    uv_sem_init(&ts->ready, 0);
    uv_sem_init(&ts->answered, 0);
    assert_int_equal(uv_thread_create(&ts->thread, ts_main, ts), 0);
    uv_sem_wait(&ts->ready);
    return ts;
}

static void ts_join(struct thread_server *ts)
{
    uv_async_send(&ts->stop);
    uv_thread_join(&ts->thread);
    uv_sem_destroy(&ts->ready);
    uv_sem_destroy(&ts->answered);
    ehr_free(ts);
}

/* Wait (from the test thread) for a service counter the server thread bumps. */
static void wait_count(atomic_uint *counter, unsigned want)
{
    for (int i = 0; i < 5000 && atomic_load(counter) < want; i++)
        usleep(1000);
    assert_true(atomic_load(counter) >= want);
}

static int setup_thread_server(void **state)
{
    *state = ts_start(NULL);
    return 0;
}

static int teardown_thread_server(void **state)
{
    ts_join(*state);
    return 0;
}

static void test_raw_http1_request_gets_505(void **state)
{
    struct thread_server *ts = *state;
    int fd = raw_connect(ts->port);
    assert_true(fd >= 0);
    const char request[] = "POST /ehr.test.Echo/Say HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(raw_send(fd, request, sizeof request - 1), 0);
    uint8_t buf[1024];
    bool eof;
    size_t n = raw_read(fd, buf, sizeof buf - 1, 5000, &eof);
    buf[n] = '\0';
    assert_true(eof);
    assert_memory_equal(buf, "HTTP/1.1 505 ", 13);
    assert_non_null(strstr((char *)buf, "HTTP/2"));
    close(fd);
}

static void test_raw_garbage_closes_connection_and_server_lives(void **state)
{
    struct thread_server *ts = *state;
    int fd = raw_connect(ts->port);
    assert_true(fd >= 0);
    uint8_t garbage[300];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t)(i * 131 + 7);
    assert_int_equal(raw_send(fd, garbage, sizeof garbage), 0);
    uint8_t buf[1024];
    bool eof;
    raw_read(fd, buf, sizeof buf, 5000, &eof);
    assert_true(eof);
    close(fd);
    /* A valid preface followed by a garbage frame: GOAWAY, then close. */
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, ts->port), 0);
    assert_true(h2raw_wait(&h, NULL, 100) == false);
    const uint8_t bad_frame[] = {0, 0, 4, 0xff, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    /* An unknown frame type must be ignored; a DATA frame on stream 0 is fatal. */
    const uint8_t fatal[] = {0, 0, 1, 0, 0, 0, 0, 0, 0, 'x'};
    assert_int_equal(raw_send(h.fd, bad_frame, sizeof bad_frame), 0);
    assert_int_equal(raw_send(h.fd, fatal, sizeof fatal), 0);
    assert_true(h2raw_wait(&h, NULL, 5000));
    assert_true(h.goaway);
    h2raw_close(&h);
    /* The server still serves. */
    struct rpc_sync *sync;
    ehr_diag err;
    assert_int_equal(rpc_sync_open("127.0.0.1", ts->port, 5000, &sync, &err), 0);
    struct rpc_result result;
    assert_int_equal(rpc_sync_unary(sync, ECHO_SAY, NULL, 0, 5000, &result), RPC_STATUS_OK);
    rpc_result_clear(&result);
    rpc_sync_close(sync);
}

/* Send one raw request and wait for its end. */
static struct h2raw_stream *raw_call(struct h2raw *h, uint16_t port, const char *path,
                                     const char *const *headers, const uint8_t *body,
                                     size_t body_len, bool end_stream)
{
    assert_int_equal(h2raw_connect(h, port), 0);
    struct h2raw_stream *s = h2raw_request(h, path, headers, body, body_len, end_stream);
    assert_non_null(s);
    assert_true(h2raw_wait(h, s, 5000));
    return s;
}

static void test_raw_truncated_message_is_internal(void **state)
{
    struct thread_server *ts = *state;
    uint8_t body[8];
    h2raw_grpc_frame(body, 0, NULL, 10); /* announces 10 bytes ... */
    memcpy(body + 5, "abc", 3);          /* ... sends 3, then ends the stream */
    struct h2raw h;
    struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_SAY, NULL, body, sizeof body, true);
    assert_int_equal(s->http_status, 200);
    assert_int_equal(s->grpc_status, RPC_STATUS_INTERNAL);
    assert_non_null(strstr(s->grpc_message, "truncated"));
    h2raw_close(&h);
}

static void test_raw_request_without_message_is_internal(void **state)
{
    struct thread_server *ts = *state;
    struct h2raw h;
    struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_SAY, NULL, NULL, 0, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_INTERNAL);
    assert_non_null(strstr(s->grpc_message, "no message"));
    h2raw_close(&h);
}

static void test_raw_two_messages_on_unary_is_internal(void **state)
{
    struct thread_server *ts = *state;
    uint8_t body[10];
    h2raw_grpc_frame(body, 0, NULL, 0);
    h2raw_grpc_frame(body + 5, 0, NULL, 0);
    struct h2raw h;
    struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_SAY, NULL, body, sizeof body, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_INTERNAL);
    assert_non_null(strstr(s->grpc_message, "more than 1 message"));
    h2raw_close(&h);
}

static void test_raw_length_prefix_over_limit_refused_early(void **state)
{
    struct thread_server *ts = *state;
    uint8_t prefix[5];
    h2raw_grpc_frame(prefix, 0, NULL, RPC_MESSAGE_BYTES_MAX + 1);
    /* Only the prefix, stream left open: the answer must not wait for the body. */
    struct h2raw h;
    struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_SAY, NULL, prefix, 5, false);
    assert_int_equal(s->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(s->grpc_message, "over the limit"));
    assert_int_equal(s->close_code, NGHTTP2_NO_ERROR); /* and told to stop sending */
    h2raw_close(&h);
}

static void test_raw_oversize_body_is_never_buffered(void **state)
{
    struct thread_server *ts = *state;
    size_t len = RPC_MESSAGE_BYTES_MAX + 1;
    uint8_t *body = calloc(1, 5 + len);
    assert_non_null(body);
    h2raw_grpc_frame(body, 0, NULL, (uint32_t)len);
    ehr_alloc_stats_reset(); /* this client allocates with malloc: only the server counts */
    struct h2raw h;
    struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_SAY, NULL, body, 5 + len, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    /* The server never held more than a read buffer's worth of it. */
    assert_true(ehr_alloc_largest_bytes() <= RPC__READ_BUFFER_BYTES);
    h2raw_close(&h);
    free(body);
}

static void test_raw_compressed_flag_is_internal(void **state)
{
    struct thread_server *ts = *state;
    uint8_t body[8];
    h2raw_grpc_frame(body, 1, (const uint8_t *)"abc", 3);
    struct h2raw h;
    struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_SAY, NULL, body, sizeof body, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_INTERNAL);
    assert_non_null(strstr(s->grpc_message, "compressed"));
    h2raw_close(&h);
    const char *const gzip[] = {"grpc-encoding", "gzip", NULL};
    h2raw_grpc_frame(body, 0, (const uint8_t *)"abc", 3);
    s = raw_call(&h, ts->port, ECHO_SAY, gzip, body, sizeof body, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_UNIMPLEMENTED);
    assert_non_null(strstr(s->grpc_message, "gzip"));
    h2raw_close(&h);
}

static void test_raw_bad_headers_are_refused(void **state)
{
    struct thread_server *ts = *state;
    uint8_t body[5];
    h2raw_grpc_frame(body, 0, NULL, 0);
    struct h2raw h;
    /* Each case: headers, then the HTTP and gRPC status expected. */
    const char *const no_te[] = {H2RAW_NO_DEFAULTS,
                                 "",
                                 ":method",
                                 "POST",
                                 ":scheme",
                                 "http",
                                 ":authority",
                                 "x",
                                 ":path",
                                 ECHO_SAY,
                                 "content-type",
                                 "application/grpc",
                                 NULL};
    struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_SAY, no_te, body, 5, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_INTERNAL);
    assert_non_null(strstr(s->grpc_message, "te: trailers"));
    h2raw_close(&h);
    const char *const json[] = {H2RAW_NO_DEFAULTS,
                                "",
                                ":method",
                                "POST",
                                ":scheme",
                                "http",
                                ":authority",
                                "x",
                                ":path",
                                ECHO_SAY,
                                "content-type",
                                "application/json",
                                "te",
                                "trailers",
                                NULL};
    s = raw_call(&h, ts->port, ECHO_SAY, json, body, 5, true);
    assert_int_equal(s->http_status, 415);
    assert_int_equal(s->grpc_status, RPC_STATUS_INTERNAL);
    h2raw_close(&h);
    const char *const get[] = {H2RAW_NO_DEFAULTS,
                               "",
                               ":method",
                               "GET",
                               ":scheme",
                               "http",
                               ":authority",
                               "x",
                               ":path",
                               ECHO_SAY,
                               "content-type",
                               "application/grpc",
                               "te",
                               "trailers",
                               NULL};
    s = raw_call(&h, ts->port, ECHO_SAY, get, NULL, 0, true);
    assert_int_equal(s->http_status, 405);
    h2raw_close(&h);
    const char *const bad_timeout[] = {"grpc-timeout", "soon", NULL};
    s = raw_call(&h, ts->port, ECHO_SAY, bad_timeout, body, 5, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_INTERNAL);
    assert_non_null(strstr(s->grpc_message, "grpc-timeout"));
    h2raw_close(&h);
    char big[RPC_HEADER_LIST_BYTES_MAX];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *const too_big[] = {"x-big", big, NULL};
    s = raw_call(&h, ts->port, ECHO_SAY, too_big, body, 5, true);
    assert_int_equal(s->http_status, 431);
    assert_int_equal(s->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    h2raw_close(&h);
}

static void test_raw_server_enforces_grpc_timeout(void **state)
{
    struct thread_server *ts = *state;
    uint8_t body[5];
    h2raw_grpc_frame(body, 0, NULL, 0);
    const char *const units[] = {"50m", "50000u", "50000000n"};
    unsigned cancels = atomic_load(&ts->service.stats.cancels[RPC_STATUS_DEADLINE_EXCEEDED]);
    unsigned timedout = atomic_load(&ts->service.stats.late_timedout);
    for (unsigned i = 0; i < EHR_ARRAY_COUNT(units); i++) {
        const char *const timeout[] = {"grpc-timeout", units[i], NULL};
        struct h2raw h;
        struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_HANG, timeout, body, 5, true);
        assert_int_equal(s->grpc_status, RPC_STATUS_DEADLINE_EXCEEDED);
        h2raw_close(&h);
        /* The handler was told, and its late finish said so. */
        wait_count(&ts->service.stats.cancels[RPC_STATUS_DEADLINE_EXCEEDED], cancels + i + 1);
        wait_count(&ts->service.stats.late_timedout, timedout + i + 1);
    }
}

static void test_raw_client_vanishes_mid_stream(void **state)
{
    struct thread_server *ts = *state;
    unsigned before = atomic_load(&ts->service.stats.cancels[RPC_STATUS_CANCELLED]);
    uint8_t req[64];
    size_t len = pack_count(req + 5, 1000000, 1000, 0, false);
    h2raw_grpc_frame(req, 0, req + 5, (uint32_t)len);
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, ts->port), 0);
    struct h2raw_stream *s = h2raw_request(&h, ECHO_COUNT, NULL, req, 5 + len, true);
    assert_non_null(s);
    for (int i = 0; i < 500 && s->data_len == 0; i++)
        h2raw_wait(&h, s, 10); /* some data flows, then the client just vanishes */
    assert_true(s->data_len > 0);
    h2raw_close(&h);
    wait_count(&ts->service.stats.cancels[RPC_STATUS_CANCELLED], before + 1);
}

static void test_sync_client_unary_and_stream(void **state)
{
    struct thread_server *ts = *state;
    struct rpc_sync *sync;
    ehr_diag err;
    assert_int_equal(rpc_sync_open("localhost", ts->port, 5000, &sync, &err), 0);
    uint8_t *req;
    size_t len = pack_echo(&req, "sync", 5, 0, 0, NULL);
    struct rpc_result result;
    assert_int_equal(rpc_sync_unary(sync, ECHO_SAY, req, len, 5000, &result), RPC_STATUS_OK);
    Ehr__Test__EchoReply *reply =
        ehr__test__echo_reply__unpack(NULL, result.response_len, result.response);
    assert_non_null(reply);
    assert_string_equal(reply->text, "sync");
    ehr__test__echo_reply__free_unpacked(reply, NULL);
    rpc_result_clear(&result);
    ehr_free(req);
    uint8_t count_req[32];
    len = pack_count(count_req, 7, 3, 0, false);
    struct outcome o = {0};
    assert_int_equal(
        rpc_sync_stream(sync, ECHO_COUNT, count_req, len, 5000, on_message, &o, &result),
        RPC_STATUS_OK);
    assert_int_equal(o.messages, 7);
    rpc_result_clear(&result);
    assert_int_equal(rpc_sync_unary(sync, ECHO_HANG, NULL, 0, 30, &result),
                     RPC_STATUS_DEADLINE_EXCEEDED);
    rpc_result_clear(&result);
    rpc_sync_close(sync);
    /* A port with no server: a clear error. */
    assert_int_not_equal(rpc_sync_open("127.0.0.1", 1, 2000, &sync, &err), 0);
    assert_non_null(strstr(err.msg, "127.0.0.1:1"));
}

/* A framed CountReply of INDEX into OUT (room for 32 bytes); returns its length. */
static size_t chat_frame(uint8_t *out, uint32_t index)
{
    Ehr__Test__CountReply m = EHR__TEST__COUNT_REPLY__INIT;
    m.index = index;
    size_t len = ehr__test__count_reply__pack(&m, out + 5);
    return h2raw_grpc_frame(out, 0, out + 5, (uint32_t)len);
}

/*
 * A bidirectional call (invariant 12 and the state table): the echo of a
 * message comes while the client's side of the stream is still open, then
 * a client that sends nothing more for request_receive_timeout_ms is ended
 * DEADLINE_EXCEEDED (invariant 6) and the handler told; a client that
 * half-closes gets its echoes and OK.
 */
static void test_bidirectional_answers_before_the_half_close_and_idles_out(void **state)
{
    enum { RECEIVE_MS = 600 };
    struct rpc_server_config config = {.request_receive_timeout_ms = RECEIVE_MS};
    struct thread_server *ts = ts_start(&config);
    unsigned cancels = atomic_load(&ts->service.stats.cancels[RPC_STATUS_DEADLINE_EXCEEDED]);
    uint8_t body[32];
    size_t len = chat_frame(body, 7);
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, ts->port), 0);
    struct h2raw_stream *s = h2raw_request(&h, ECHO_CHAT, NULL, body, len, false);
    assert_non_null(s);
    assert_false(h2raw_wait(&h, s, RECEIVE_MS / 3)); /* still open ... */
    assert_int_equal(s->data_len, len);              /* ... and answered */
    assert_memory_equal(s->data, body, len);
    assert_true(h2raw_wait(&h, s, 5000));
    assert_int_equal(s->grpc_status, RPC_STATUS_DEADLINE_EXCEEDED);
    wait_count(&ts->service.stats.cancels[RPC_STATUS_DEADLINE_EXCEEDED], cancels + 1);
    h2raw_close(&h);

    uint8_t two[64];
    size_t two_len = chat_frame(two, 1);
    two_len += chat_frame(two + two_len, 2);
    s = raw_call(&h, ts->port, ECHO_CHAT, NULL, two, two_len, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_OK);
    assert_int_equal(s->data_len, two_len);
    assert_memory_equal(s->data, two, two_len);
    h2raw_close(&h);
    ts_join(ts);
}

static void test_connection_limit_edge(void **state)
{
    struct rpc_server_config config = {.connections_max = 2};
    struct thread_server *ts = ts_start(&config);
    struct h2raw a, b;
    uint8_t body[5];
    h2raw_grpc_frame(body, 0, NULL, 0);
    /* Two connections (the limit) are served ... */
    struct h2raw_stream *s = raw_call(&a, ts->port, ECHO_SAY, NULL, body, 5, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_OK);
    s = raw_call(&b, ts->port, ECHO_SAY, NULL, body, 5, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_OK);
    /* ... the third is closed at once. */
    int fd = raw_connect(ts->port);
    assert_true(fd >= 0);
    uint8_t buf[64];
    bool eof;
    raw_read(fd, buf, sizeof buf, 5000, &eof);
    assert_true(eof);
    close(fd);
    h2raw_close(&a);
    h2raw_close(&b);
    ts_join(ts);
}

/* Log lines from the server's thread: how many, and the last of them. */
struct log_capture {
    pthread_mutex_t lock;
    unsigned lines;
    char last[512];
};

static void log_capture_sink(void *ctx, enum ehr_log_level level, const char *line)
{
    (void)level;
    struct log_capture *c = ctx;
    if (strstr(line, "rpc connections refused") == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->lines++;
    snprintf(c->last, sizeof c->last, "%s", line);
    pthread_mutex_unlock(&c->lock);
}

static unsigned log_capture_lines(struct log_capture *c, char *last, size_t last_size)
{
    pthread_mutex_lock(&c->lock);
    unsigned n = c->lines;
    snprintf(last, last_size, "%s", c->last);
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* A flood of connections past the limit costs one log line per
 * EHR_LOG_LIMIT_INTERVAL_MS, not one per connection: the first refusal at
 * once, the rest counted and told in one line (here when the server
 * closes, before their interval ends). */
static void test_connection_refusals_are_logged_once_per_interval_with_their_count(void **state)
{
    (void)state;
    enum { REFUSED = 50 };
    static struct log_capture capture = {.lock = PTHREAD_MUTEX_INITIALIZER};
    capture.lines = 0;
    ehr_log_set_sink(log_capture_sink, &capture);
    ehr_log_set_level(EHR_LOG_WARN); /* the suite runs silent */
    struct rpc_server_config config = {.connections_max = 1};
    struct thread_server *ts = ts_start(&config);
    struct h2raw held;
    uint8_t body[5];
    h2raw_grpc_frame(body, 0, NULL, 0);
    struct h2raw_stream *s = raw_call(&held, ts->port, ECHO_SAY, NULL, body, 5, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_OK);
    for (int i = 0; i < REFUSED; i++) {
        int fd = raw_connect(ts->port);
        assert_true(fd >= 0);
        uint8_t buf[64];
        bool eof;
        raw_read(fd, buf, sizeof buf, 5000, &eof);
        assert_true(eof); /* refused: closed at once */
        close(fd);
    }
    char last[512];
    assert_int_equal(log_capture_lines(&capture, last, sizeof last), 1);
    assert_non_null(strstr(last, "limit=connections_max count=1 "));
    h2raw_close(&held);
    ts_join(ts);
    assert_int_equal(log_capture_lines(&capture, last, sizeof last), 2);
    assert_non_null(strstr(last, "limit=connections_max count=49 "));
    ehr_log_set_sink(NULL, NULL);
    ehr_log_set_level(EHR_LOG_OFF);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A TCP connection to the server at 127.0.0.1:PORT from source address
 * SOURCE (any 127.x.y.z reaches loopback on Linux). Returns the fd. */
static int connect_from(const char *source, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in from = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, source, &from.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof from), 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    return fd;
}

/* Send the HTTP/2 preface on FD: true if the server answers (its SETTINGS),
 * false if it closes the connection instead. */
static bool h2_answers(int fd)
{
    static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                     "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    if (raw_send(fd, preface, sizeof preface - 1) != 0)
        return false;
    uint8_t buf[256];
    bool eof = false;
    size_t n = raw_read(fd, buf, sizeof buf, 300, &eof);
    return n > 0 && buf[3] == NGHTTP2_SETTINGS;
}

/* connections_per_address_max connections from one address are served; one
 * more from it is closed at once; one from another address is served (the
 * limit is per address, not global); a slot freed is taken again. */
static void test_connections_per_address_edge(void **state)
{
    (void)state;
    struct rpc_server_config config = {.connections_per_address_max = 2};
    struct thread_server *ts = ts_start(&config);
    int a = connect_from("127.0.0.1", ts->port);
    int b = connect_from("127.0.0.1", ts->port);
    assert_true(h2_answers(a));
    assert_true(h2_answers(b));
    int over = connect_from("127.0.0.1", ts->port);
    assert_false(h2_answers(over));
    close(over);
    int other = connect_from("127.0.0.2", ts->port);
    assert_true(h2_answers(other));
    close(a);
    /* The server sees the close on its loop thread: retry until the slot is back. */
    bool served = false;
    for (int i = 0; i < 50 && !served; i++) {
        int again = connect_from("127.0.0.1", ts->port);
        served = h2_answers(again);
        close(again);
    }
    assert_true(served);
    close(b);
    close(other);
    ts_join(ts);
}

/* Invariant 11 at its edge (RPC_EVICTION_GAP_CONNECTIONS_MIN): with every
 * connection held, a newcomer whose address holds one fewer than the
 * most-represented address is refused; one whose address holds that gap
 * fewer takes the place of that address's idlest connection (the one with
 * the oldest request progress, not the one that just made a call), which
 * is closed; once every address holds one, a newcomer is refused. */
static void test_connections_at_the_cap_evict_the_idlest_of_the_largest_address(void **state)
{
    (void)state;
    _Static_assert(RPC_EVICTION_GAP_CONNECTIONS_MIN == 2, "the counts below assume a gap of 2");
    struct rpc_server_config config = {.connections_max = 3};
    struct thread_server *ts = ts_start(&config);
    uint8_t body[5];
    h2raw_grpc_frame(body, 0, NULL, 0);
    /* 127.0.0.1 holds two (the busy one, then the idle one), 127.0.0.2 one: the cap. */
    struct h2raw busy;
    assert_int_equal(h2raw_connect_from(&busy, 0x7f000001u, ts->port), 0);
    struct h2raw_stream *s = h2raw_request(&busy, ECHO_SAY, NULL, body, 5, true);
    assert_non_null(s);
    assert_true(h2raw_wait(&busy, s, 5000));
    int idle = connect_from("127.0.0.1", ts->port);
    assert_true(h2_answers(idle));
    int second = connect_from("127.0.0.2", ts->port);
    assert_true(h2_answers(second));
    usleep(20000); /* the busy connection's next call is later than the idle one's accept */
    s = h2raw_request(&busy, ECHO_SAY, NULL, body, 5, true);
    assert_non_null(s);
    assert_true(h2raw_wait(&busy, s, 5000));
    assert_int_equal(s->grpc_status, RPC_STATUS_OK);
    /* A gap of one (2 against 1): refused, nobody evicted. */
    int narrow = connect_from("127.0.0.2", ts->port);
    assert_false(h2_answers(narrow));
    close(narrow);
    /* A gap of two (2 against 0): served, in the idle connection's place. */
    int newcomer = connect_from("127.0.0.3", ts->port);
    assert_true(h2_answers(newcomer));
    uint8_t buf[256];
    bool eof = false;
    raw_read(idle, buf, sizeof buf, 5000, &eof);
    assert_true(eof);
    close(idle);
    s = h2raw_request(&busy, ECHO_SAY, NULL, body, 5, true);
    assert_non_null(s);
    assert_true(h2raw_wait(&busy, s, 5000));
    assert_int_equal(s->grpc_status, RPC_STATUS_OK);
    /* One each: nobody has a share to give up. */
    int fourth = connect_from("127.0.0.4", ts->port);
    assert_false(h2_answers(fourth));
    close(fourth);
    h2raw_close(&busy);
    close(second);
    close(newcomer);
    ts_join(ts);
}

/* HTTP/2 PINGs (a holder's cheapest way to look alive) do not extend the
 * idle timeout: a connection that only pings is closed about when one
 * that says nothing would be. */
static void test_pings_do_not_keep_a_connection_from_idling(void **state)
{
    (void)state;
    struct rpc_server_config config = {.idle_timeout_ms = 200};
    struct thread_server *ts = ts_start(&config);
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, ts->port), 0);
    uint64_t start = now_ms();
    while (!h.eof && now_ms() - start < 3000) {
        assert_int_equal(nghttp2_submit_ping(h.session, NGHTTP2_FLAG_NONE, NULL), 0);
        h2raw_wait(&h, NULL, 50); /* a ping every 50 ms, a quarter of the timeout */
    }
    assert_true(h.eof);
    assert_true(h.goaway);
    assert_true(now_ms() - start < 1000); /* the first idle period or the next */
    h2raw_close(&h);
    ts_join(ts);
}

/* Requests are progress: a connection whose calls come more often than the
 * idle timeout stays open across many timeouts. */
static void test_requests_keep_a_connection_from_idling(void **state)
{
    (void)state;
    struct rpc_server_config config = {.idle_timeout_ms = 200};
    struct thread_server *ts = ts_start(&config);
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, ts->port), 0);
    uint8_t body[5];
    h2raw_grpc_frame(body, 0, NULL, 0);
    for (int i = 0; i < 8; i++) { /* 8 × 100 ms: four idle timeouts */
        struct h2raw_stream *s = h2raw_request(&h, ECHO_SAY, NULL, body, 5, true);
        assert_non_null(s);
        assert_true(h2raw_wait(&h, s, 5000));
        assert_int_equal(s->grpc_status, RPC_STATUS_OK);
        h2raw_wait(&h, NULL, 100);
        assert_false(h.eof);
    }
    h2raw_close(&h);
    ts_join(ts);
}

/* A request left unfinished (a message announced and never completed, no
 * END_STREAM) ends with DEADLINE_EXCEEDED after request_receive_timeout_ms,
 * with or without a longer grpc-timeout, and its connection serves on. */
static void test_an_unfinished_request_has_a_deadline(void **state)
{
    (void)state;
    struct rpc_server_config config = {.request_receive_timeout_ms = 100};
    struct thread_server *ts = ts_start(&config);
    uint8_t partial[5 + 10] = {0};
    h2raw_grpc_frame(partial, 0, NULL, 100); /* 100 bytes announced, 10 sent */
    const char *const long_timeout[] = {"grpc-timeout", "10S", NULL};
    const char *const *headers[] = {NULL, long_timeout};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(headers); i++) {
        struct h2raw h;
        assert_int_equal(h2raw_connect(&h, ts->port), 0);
        uint64_t start = now_ms();
        struct h2raw_stream *s =
            h2raw_request(&h, ECHO_SAY, headers[i], partial, sizeof partial, false);
        assert_non_null(s);
        assert_true(h2raw_wait(&h, s, 5000));
        assert_int_equal(s->grpc_status, RPC_STATUS_DEADLINE_EXCEEDED);
        assert_non_null(strstr(s->grpc_message, "not complete within 100 ms"));
        assert_true(now_ms() - start < 2000);
        uint8_t body[5];
        h2raw_grpc_frame(body, 0, NULL, 0);
        struct h2raw_stream *next = h2raw_request(&h, ECHO_SAY, NULL, body, 5, true);
        assert_true(h2raw_wait(&h, next, 5000));
        assert_int_equal(next->grpc_status, RPC_STATUS_OK);
        h2raw_close(&h);
    }
    ts_join(ts);
}

/* A framed CountRequest into OUT (room for 64 bytes): COUNT replies of
 * PAYLOAD bytes, then the stream hangs open if HANG. Returns its length. */
static size_t framed_count(uint8_t *out, uint32_t count, uint32_t payload_bytes, bool hang)
{
    size_t len = pack_count(out + 5, count, payload_bytes, 0, hang);
    return h2raw_grpc_frame(out, 0, out + 5, (uint32_t)len);
}

/*
 * Invariant 8: a stream whose client receives and never gives HTTP/2
 * flow-control credit back (its window stays full, so the server's queue
 * fills) is ended stream_stall_timeout_ms after its queue filled, and not
 * before: RST_STREAM(ENHANCE_YOUR_CALM), the handler told
 * RESOURCE_EXHAUSTED, the connection kept. A stream that is read, on the
 * same server meanwhile, is not ended.
 */
static void test_a_stream_not_read_is_ended_after_the_stall_timeout(void **state)
{
    (void)state;
    enum { STALL_MS = 1000 };
    struct rpc_server_config config = {.stream_stall_timeout_ms = STALL_MS,
                                       .stream_queue_bytes_max = 64 * 1024};
    struct thread_server *ts = ts_start(&config);
    uint8_t stalled_req[64], read_req[64];
    size_t stalled_len = framed_count(stalled_req, 1000000, 1000, false);
    size_t read_len = framed_count(read_req, 20000, 100, true);
    struct h2raw slow, reader;
    assert_int_equal(h2raw_connect_with(&slow, 0, ts->port, H2RAW_NO_WINDOW_UPDATE), 0);
    assert_int_equal(h2raw_connect(&reader, ts->port), 0);
    struct h2raw_stream *stalled =
        h2raw_request(&slow, ECHO_COUNT, NULL, stalled_req, stalled_len, true);
    assert_non_null(stalled);
    struct h2raw_stream *read = h2raw_request(&reader, ECHO_COUNT, NULL, read_req, read_len, true);
    assert_non_null(read);
    h2raw_wait(&slow, stalled, 1);
    wait_count(&ts->service.stats.eagain, 1); /* the stalled queue is full */
    uint64_t full_ms = now_ms();
    /* A third of the timeout later, both still run; the reader is read. */
    while (now_ms() - full_ms < STALL_MS / 3) {
        h2raw_wait(&reader, read, 20);
        h2raw_wait(&slow, stalled, 20);
    }
    assert_false(stalled->closed);
    while (!stalled->closed && now_ms() - full_ms < 10 * STALL_MS) {
        h2raw_wait(&reader, read, 20);
        h2raw_wait(&slow, stalled, 20);
    }
    assert_true(stalled->closed);
    assert_int_equal(stalled->close_code, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_true(now_ms() - full_ms >= STALL_MS - 100); /* the server's clock started earlier */
    wait_count(&ts->service.stats.cancels[RPC_STATUS_RESOURCE_EXHAUSTED], 1);
    assert_false(slow.eof); /* the connection is kept */
    assert_false(read->closed);
    assert_true(read->data_len > 4 * config.stream_queue_bytes_max);
    assert_int_equal(atomic_load(&ts->service.stats.cancels[RPC_STATUS_RESOURCE_EXHAUSTED]), 1);
    h2raw_close(&slow);
    h2raw_close(&reader);
    ts_join(ts);
}

/* Invariant 8, the other way not to read: a client that gives the server
 * every window HTTP/2 allows and then does not read its socket. The
 * server's output fills, then the stream's queue; after the stall timeout
 * the connection is closed (not even a reset could be written). */
static void test_a_client_that_does_not_read_its_socket_loses_the_connection(void **state)
{
    (void)state;
    enum { STALL_MS = 300 };
    struct rpc_server_config config = {.stream_stall_timeout_ms = STALL_MS};
    struct thread_server *ts = ts_start(&config);
    uint8_t req[64];
    size_t len = framed_count(req, 1000000, 16384, false);
    struct h2raw h;
    assert_int_equal(h2raw_connect_with(&h, 0, ts->port, H2RAW_LARGE_WINDOW), 0);
    assert_non_null(h2raw_request(&h, ECHO_COUNT, NULL, req, len, true));
    assert_int_equal(nghttp2_session_send(h.session), 0); /* then never read */
    wait_count(&ts->service.stats.eagain, 1);
    wait_count(&ts->service.stats.cancels[RPC_STATUS_RESOURCE_EXHAUSTED], 1);
    /* What the kernel holds comes first, then the end of the connection. */
    static uint8_t sink[1 << 20];
    bool eof = false;
    for (int i = 0; i < 200 && !eof; i++)
        raw_read(h.fd, sink, sizeof sink, 100, &eof);
    assert_true(eof);
    h2raw_close(&h);
    ts_join(ts);
}

/*
 * Invariant 9: a connection must carry a whole first request within
 * first_request_timeout_ms, whatever its idle timeout. One that sends
 * nothing is closed without a byte; one that sends only the preface (and
 * its SETTINGS and PINGs, which look alive) gets GOAWAY and is closed;
 * neither before a third of the timeout, both soon after it.
 */
static void test_a_connection_without_a_first_request_is_closed(void **state)
{
    (void)state;
    enum { FIRST_MS = 600 };
    struct rpc_server_config config = {.first_request_timeout_ms = FIRST_MS,
                                       .idle_timeout_ms = 60000};
    struct thread_server *ts = ts_start(&config);
    int silent = raw_connect(ts->port);
    assert_true(silent >= 0);
    struct h2raw preface_only;
    assert_int_equal(h2raw_connect(&preface_only, ts->port), 0);
    uint64_t start = now_ms();
    uint8_t buf[256];
    bool eof = false;
    assert_int_equal(raw_read(silent, buf, sizeof buf, FIRST_MS / 3, &eof), 0);
    assert_false(eof);
    assert_int_equal(nghttp2_submit_ping(preface_only.session, NGHTTP2_FLAG_NONE, NULL), 0);
    assert_false(h2raw_wait(&preface_only, NULL, 1));
    assert_false(preface_only.eof);
    while (!preface_only.eof && now_ms() - start < 10 * FIRST_MS) {
        nghttp2_submit_ping(preface_only.session, NGHTTP2_FLAG_NONE, NULL);
        h2raw_wait(&preface_only, NULL, 50);
    }
    assert_true(preface_only.eof);
    assert_true(preface_only.goaway);
    assert_true(now_ms() - start >= FIRST_MS - 50);
    assert_int_equal(raw_read(silent, buf, sizeof buf, 5000, &eof), 0);
    assert_true(eof); /* closed without a byte */
    assert_true(now_ms() - start < 5 * FIRST_MS);
    close(silent);
    h2raw_close(&preface_only);
    ts_join(ts);
}

/* A connection whose first request came in time is left to the idle
 * timeout: it is not closed when the first request timeout passes. */
static void test_a_connection_used_in_time_outlives_the_first_request_timeout(void **state)
{
    (void)state;
    enum { FIRST_MS = 200 };
    struct rpc_server_config config = {.first_request_timeout_ms = FIRST_MS,
                                       .idle_timeout_ms = 60000};
    struct thread_server *ts = ts_start(&config);
    uint8_t body[5];
    h2raw_grpc_frame(body, 0, NULL, 0);
    struct h2raw h;
    struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_SAY, NULL, body, 5, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_OK);
    h2raw_wait(&h, NULL, 3 * FIRST_MS);
    assert_false(h.eof);
    assert_false(h.goaway);
    s = h2raw_request(&h, ECHO_SAY, NULL, body, 5, true);
    assert_true(h2raw_wait(&h, s, 5000));
    assert_int_equal(s->grpc_status, RPC_STATUS_OK);
    h2raw_close(&h);
    ts_join(ts);
}

/*
 * Invariant 16: every call is counted once, by its method and the status
 * its client was told: a reply (OK), a handler's failure, a call the
 * server refused before its handler (a request with no message:
 * INTERNAL), a call whose client left (CANCELLED); calls to paths no
 * method has all count under "unknown", however many paths there are.
 */
static void test_calls_are_counted_by_method_and_status(void **state)
{
    (void)state;
    struct thread_server *ts = ts_start(NULL);
    uint64_t methods = ts_ask(ts, ask_method_count, NULL);
    assert_true(methods >= 4);
    assert_int_equal(ts_calls_wait(ts, ECHO_SAY, RPC_STATUS_OK, 0), 0);
    assert_int_equal(ts_calls_wait(ts, "unknown", RPC_STATUS_UNIMPLEMENTED, 0), 0);
    uint8_t *say;
    size_t say_len = pack_echo(&say, "c", 0, 0, 0, NULL);
    uint8_t frame[64];
    size_t frame_len = h2raw_grpc_frame(frame, 0, say, (uint32_t)say_len);
    ehr_free(say);
    size_t fail_len = pack_echo(&say, "c", 0, 0, RPC_STATUS_NOT_FOUND, NULL);
    uint8_t fail[64];
    size_t fail_frame_len = h2raw_grpc_frame(fail, 0, say, (uint32_t)fail_len);
    ehr_free(say);
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, ts->port), 0);
    struct h2raw_stream *s[6];
    s[0] = h2raw_request(&h, ECHO_SAY, NULL, frame, frame_len, true);
    s[1] = h2raw_request(&h, ECHO_SAY, NULL, frame, frame_len, true);
    s[2] = h2raw_request(&h, ECHO_SAY, NULL, fail, fail_frame_len, true);
    s[3] = h2raw_request(&h, ECHO_SAY, NULL, NULL, 0, true);
    s[4] = h2raw_request(&h, "/no.Such/Method", NULL, frame, frame_len, true);
    s[5] = h2raw_request(&h, "/another.Unknown/Path", NULL, frame, frame_len, true);
    for (int i = 0; i < 6; i++)
        assert_true(h2raw_wait(&h, s[i], 5000));
    assert_int_equal(s[2]->grpc_status, RPC_STATUS_NOT_FOUND);
    assert_int_equal(s[3]->grpc_status, RPC_STATUS_INTERNAL);
    assert_int_equal(s[4]->grpc_status, RPC_STATUS_UNIMPLEMENTED);
    struct h2raw_stream *hang = h2raw_request(&h, ECHO_HANG, NULL, frame, frame_len, true);
    h2raw_wait(&h, hang, 200);
    wait_count(&ts->service.stats.calls, 4); /* Say twice, Say failing, Hang */
    h2raw_close(&h);                         /* Hang's client leaves */
    assert_int_equal(ts_calls_wait(ts, ECHO_SAY, RPC_STATUS_OK, 2), 2);
    assert_int_equal(ts_calls_wait(ts, ECHO_SAY, RPC_STATUS_NOT_FOUND, 1), 1);
    assert_int_equal(ts_calls_wait(ts, ECHO_SAY, RPC_STATUS_INTERNAL, 1), 1);
    assert_int_equal(ts_calls_wait(ts, ECHO_HANG, RPC_STATUS_CANCELLED, 1), 1);
    assert_int_equal(ts_calls_wait(ts, "unknown", RPC_STATUS_UNIMPLEMENTED, 2), 2);
    /* Counted once each: nothing more comes. */
    usleep(50000);
    assert_int_equal(ts_calls_wait(ts, ECHO_SAY, RPC_STATUS_OK, 0), 2);
    assert_int_equal(ts_calls_wait(ts, ECHO_HANG, RPC_STATUS_OK, 0), 0);
    /* Unknown paths added no method. */
    assert_int_equal(ts_ask(ts, ask_method_count, NULL), methods);
    ts_join(ts);
}

static void test_streams_per_connection_edge(void **state)
{
    struct rpc_server_config config = {.streams_per_connection_max = 4};
    struct thread_server *ts = ts_start(&config);
    uint8_t body[5];
    h2raw_grpc_frame(body, 0, NULL, 0);
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, ts->port), 0);
    /* Sent at once, before our SETTINGS can be acknowledged: the server holds the line. */
    struct h2raw_stream *s[5];
    for (int i = 0; i < 5; i++) {
        s[i] = h2raw_request(&h, ECHO_HANG, NULL, body, 5, true);
        assert_non_null(s[i]);
    }
    assert_true(h2raw_wait(&h, s[4], 5000));
    assert_int_equal(s[4]->close_code, NGHTTP2_REFUSED_STREAM); /* the fifth: refused */
    wait_count(&ts->service.stats.calls, 4);                    /* four: served */
    for (int i = 0; i < 4; i++)
        assert_false(s[i]->closed);
    h2raw_close(&h);
    wait_count(&ts->service.stats.cancels[RPC_STATUS_CANCELLED], 4);
    assert_int_equal(atomic_load(&ts->service.stats.calls), 4);
    ts_join(ts);
}

struct sync_source {
    uint32_t count;
    uint32_t next;
    int fail_at_err; /* returned at index `fail_index` (0: never) */
    uint32_t fail_index;
    uint8_t scratch[256];
};

static int sync_source_next(void *data, const uint8_t **message, size_t *message_len)
{
    struct sync_source *src = data;
    if (src->fail_at_err != 0 && src->next == src->fail_index)
        return src->fail_at_err;
    if (src->next == src->count)
        return 0;
    Ehr__Test__CountReply m = EHR__TEST__COUNT_REPLY__INIT;
    m.index = src->next++;
    m.payload.data = (uint8_t *)"0123456789";
    m.payload.len = 10;
    *message_len = ehr__test__count_reply__pack(&m, src->scratch);
    *message = src->scratch;
    return 1;
}

/* The blocking upload streams from its source and returns the reply; a
 * source that gives up cancels the call and says so. */
static void test_sync_client_upload(void **state)
{
    struct thread_server *ts = *state;
    struct rpc_sync *sync;
    assert_int_equal(rpc_sync_open("127.0.0.1", ts->port, 5000, &sync, NULL), 0);
    struct sync_source src = {.count = 1000};
    struct rpc_result result;
    assert_int_equal(rpc_sync_upload(sync, ECHO_SUM, 5000, sync_source_next, &src, &result),
                     RPC_STATUS_OK);
    Ehr__Test__SumReply *r =
        ehr__test__sum_reply__unpack(NULL, result.response_len, result.response);
    assert_non_null(r);
    assert_int_equal(r->messages, 1000);
    assert_int_equal(r->bytes, 10000);
    assert_true(r->in_order);
    ehr__test__sum_reply__free_unpacked(r, NULL);
    rpc_result_clear(&result);
    struct sync_source bad = {.count = 1000, .fail_at_err = -EIO, .fail_index = 500};
    assert_int_equal(rpc_sync_upload(sync, ECHO_SUM, 5000, sync_source_next, &bad, &result),
                     RPC_STATUS_CANCELLED);
    assert_non_null(strstr(result.message, "source failed"));
    rpc_result_clear(&result);
    rpc_sync_close(sync);
}

static void test_header_list_edge(void **state)
{
    struct thread_server *ts = *state;
    uint8_t body[5];
    h2raw_grpc_frame(body, 0, NULL, 0);
    /* h2raw's own headers count 294 bytes (name + value + 32 each); x-big adds 37 + value. */
    size_t value_len = RPC_HEADER_LIST_BYTES_MAX - 294 - 37;
    char *big = calloc(1, value_len + 2);
    memset(big, 'v', value_len);
    const char *const headers[] = {"x-big", big, NULL};
    struct h2raw h;
    struct h2raw_stream *s = raw_call(&h, ts->port, ECHO_SAY, headers, body, 5, true);
    assert_int_equal(s->grpc_status, RPC_STATUS_OK); /* exactly at the limit */
    h2raw_close(&h);
    big[value_len] = 'v'; /* one byte over */
    s = raw_call(&h, ts->port, ECHO_SAY, headers, body, 5, true);
    assert_int_equal(s->http_status, 431);
    assert_int_equal(s->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    h2raw_close(&h);
    free(big);
}

static void test_connection_request_budget_edge(void **state)
{
    struct rpc_server_config config = {.message_bytes_max = 32768,
                                       .connection_request_bytes_max = 65536};
    struct thread_server *ts = ts_start(&config);
    size_t frame = 5 + 32768;
    uint8_t *a = calloc(1, frame), *b = calloc(1, frame);
    h2raw_grpc_frame(a, 0, NULL, 32768);
    h2raw_grpc_frame(b, 0, NULL, 32768);
    uint8_t c[6];
    h2raw_grpc_frame(c, 0, (const uint8_t *)"c", 1);
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, ts->port), 0);
    /* Two whole messages held (streams left open) use the budget exactly ... */
    struct h2raw_stream *sa = h2raw_request(&h, ECHO_SAY, NULL, a, frame, false);
    struct h2raw_stream *sb = h2raw_request(&h, ECHO_SAY, NULL, b, frame, false);
    struct h2raw_stream *sc = h2raw_request(&h, ECHO_SAY, NULL, c, sizeof c, true);
    assert_true(h2raw_wait(&h, sc, 5000));
    /* ... so a third, of one byte, does not fit, and is counted by its limit. */
    assert_int_equal(sc->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(sc->grpc_message, "connection"));
    assert_int_equal(ts_refused(ts, "connection_request_bytes_max"), 1);
    assert_int_equal(ts_refused(ts, "unfinished_bytes_per_address_max"), 0);
    assert_int_equal(ts_refused(ts, "unfinished_bytes_max"), 0);
    assert_false(sa->closed);
    assert_false(sb->closed);
    h2raw_close(&h);
    free(a);
    free(b);
    ts_join(ts);
}

/* What the unfinished-bytes edges send: BIG, a gRPC frame of a whole
 * message of MESSAGE zero bytes (held unfinished while its stream stays
 * open), and ONE, a small Say in a frame of its own. Free BIG. */
struct held_frames {
    uint8_t *big;
    size_t big_len;
    uint8_t one[64];
    size_t one_len;
};

static void held_frames_make(struct held_frames *f, uint32_t message)
{
    f->big_len = 5 + (size_t)message;
    f->big = calloc(1, f->big_len);
    assert_non_null(f->big);
    h2raw_grpc_frame(f->big, 0, NULL, message);
    uint8_t *say;
    size_t say_len = pack_echo(&say, "c", 0, 0, 0, NULL);
    assert_true(5 + say_len <= sizeof f->one);
    f->one_len = h2raw_grpc_frame(f->one, 0, say, (uint32_t)say_len);
    ehr_free(say);
}

/* Two whole messages held on A and one on B (streams left open: they count
 * until dispatch) meet the limit exactly; then ONE more on B is refused
 * RESOURCE_EXHAUSTED with WHO in its message. */
/* The three request budgets (invariant 14), as the refusal count names them. */
static const char *const request_budgets[] = {
    "connection_request_bytes_max", "unfinished_bytes_per_address_max", "unfinished_bytes_max"};

/* Every budget's refusal count is 0, but LIMIT's (when not NULL): WANT. */
static void budget_refusals_are(struct thread_server *ts, const char *limit, uint64_t want)
{
    for (size_t i = 0; i < EHR_ARRAY_COUNT(request_budgets); i++)
        assert_int_equal(ts_refused(ts, request_budgets[i]),
                         limit != NULL && strcmp(limit, request_budgets[i]) == 0 ? want : 0);
}

static void held_to_the_edge(struct thread_server *ts, struct h2raw *a, struct h2raw *b,
                             const struct held_frames *f, const char *who, const char *limit)
{
    struct h2raw_stream *a1 = h2raw_request(a, ECHO_SAY, NULL, f->big, f->big_len, false);
    struct h2raw_stream *a2 = h2raw_request(a, ECHO_SAY, NULL, f->big, f->big_len, false);
    h2raw_wait(a, NULL, 200);
    struct h2raw_stream *b1 = h2raw_request(b, ECHO_SAY, NULL, f->big, f->big_len, false);
    h2raw_wait(b, NULL, 200);
    assert_false(a1->closed);
    assert_false(a2->closed);
    assert_false(b1->closed); /* exactly at the limit */
    budget_refusals_are(ts, NULL, 0);
    struct h2raw_stream *b2 = h2raw_request(b, ECHO_SAY, NULL, f->one, f->one_len, true);
    assert_true(h2raw_wait(b, b2, 5000));
    assert_int_equal(b2->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(b2->grpc_message, who));
    budget_refusals_are(ts, limit, 1); /* counted by its limit, the others not */
}

/* After a connection holding bytes closed, ONE on B is served again: the
 * bytes given back are taken again (the server sees the close on its own
 * thread, so a few tries). */
static void served_again(struct h2raw *b, const struct held_frames *f)
{
    struct h2raw_stream *b3 = NULL;
    for (int i = 0; i < 50; i++) {
        b3 = h2raw_request(b, ECHO_SAY, NULL, f->one, f->one_len, true);
        assert_true(h2raw_wait(b, b3, 5000));
        if (b3->grpc_status == RPC_STATUS_OK)
            break;
        usleep(10000);
    }
    assert_int_equal(b3->grpc_status, RPC_STATUS_OK);
}

/*
 * Invariant 10: unfinished request bytes are bounded per client address
 * over all its connections. With room for three messages per address and
 * two per connection: two held on one connection and one on a second from
 * the same address fill it exactly; one more byte from that address, on
 * the second connection (which has room of its own), is refused
 * RESOURCE_EXHAUSTED naming the address; another address is served.
 */
static void test_unfinished_bytes_per_address_edge(void **state)
{
    (void)state;
    enum { MESSAGE = 32768 };
    struct rpc_server_config config = {.message_bytes_max = MESSAGE,
                                       .connection_request_bytes_max = 2 * MESSAGE,
                                       .unfinished_bytes_per_address_max = 3 * MESSAGE};
    struct thread_server *ts = ts_start(&config);
    struct held_frames f;
    held_frames_make(&f, MESSAGE);
    uint8_t *say;
    size_t big_say_len = pack_echo(&say, "c", MESSAGE - 64, 0, 0, NULL);
    uint8_t *big_say = malloc(5 + big_say_len);
    assert_non_null(big_say);
    size_t big_say_frame = h2raw_grpc_frame(big_say, 0, say, (uint32_t)big_say_len);
    ehr_free(say);
    const uint32_t address = 0x7f000005u, other = 0x7f000006u;
    struct h2raw a, b, c;
    assert_int_equal(h2raw_connect_from(&a, address, ts->port), 0);
    assert_int_equal(h2raw_connect_from(&b, address, ts->port), 0);
    /* Whole messages held (the streams left open) fill the address's limit. */
    held_to_the_edge(ts, &a, &b, &f, "your address", "unfinished_bytes_per_address_max");
    assert_int_equal(h2raw_connect_from(&c, other, ts->port), 0);
    struct h2raw_stream *c1 = h2raw_request(&c, ECHO_SAY, NULL, big_say, big_say_frame, true);
    assert_true(h2raw_wait(&c, c1, 5000));
    assert_int_equal(c1->grpc_status, RPC_STATUS_OK);
    /* Bytes given back are taken again: one connection gone, room again. */
    h2raw_close(&a);
    served_again(&b, &f);
    h2raw_close(&b);
    h2raw_close(&c);
    free(f.big);
    free(big_say);
    ts_join(ts);
}

/*
 * Invariant 14: unfinished request bytes are bounded over the whole server
 * (unfinished_bytes_max). With room for three messages on the server and
 * two per connection and per address: two held from one address and one
 * from a second fill it exactly; one more byte from the second address
 * (which has room of its own) is refused RESOURCE_EXHAUSTED naming the
 * server; once the first address leaves, the second is served again.
 */
static void test_unfinished_bytes_max_edge(void **state)
{
    (void)state;
    enum { MESSAGE = 32768 };
    struct rpc_server_config config = {.message_bytes_max = MESSAGE,
                                       .connection_request_bytes_max = 2 * MESSAGE,
                                       .unfinished_bytes_per_address_max = 2 * MESSAGE,
                                       .unfinished_bytes_max = 3 * MESSAGE};
    struct thread_server *ts = ts_start(&config);
    struct held_frames f;
    held_frames_make(&f, MESSAGE);
    struct h2raw a, b;
    assert_int_equal(h2raw_connect_from(&a, 0x7f000007u, ts->port), 0);
    assert_int_equal(h2raw_connect_from(&b, 0x7f000008u, ts->port), 0);
    held_to_the_edge(ts, &a, &b, &f, "the server may buffer", /* at the server's limit */
                     "unfinished_bytes_max");
    /* What the first address held comes back with its connection. */
    h2raw_close(&a);
    served_again(&b, &f);
    h2raw_close(&b);
    free(f.big);
    ts_join(ts);
}

/* The framed size of Say's reply to TEXT with a payload of PAYLOAD_LEN bytes. */
static size_t say_reply_framed_bytes(const char *text, size_t payload_len)
{
    Ehr__Test__EchoReply reply = EHR__TEST__ECHO_REPLY__INIT;
    reply.text = (char *)text;
    reply.payload.len = payload_len;
    return 5 + ehr__test__echo_reply__get_packed_size(&reply);
}

/*
 * Invariant 17: an answer its client never takes (a client that gives no
 * stream window) is held unread_reply_timeout_ms after the call ended,
 * not less, then dropped: RST_STREAM(ENHANCE_YOUR_CALM), counted as the
 * limit unread_reply_timeout_ms and the call as RESOURCE_EXHAUSTED, the
 * connection kept. Its bytes are given back: with a budget whose half is
 * one reply (R) and a little more, and a quota below R, a second reply to
 * the same client is refused while the first is held, and queued again
 * once it was dropped. A finished stream's last messages, not read (on a
 * second such client), are dropped alike. A reader on the same server
 * meanwhile is served and never reset.
 */
static void test_an_answer_not_read_is_dropped_after_the_unread_reply_timeout(void **state)
{
    (void)state;
    enum { UNREAD_MS = 600, PAYLOAD = 30000 };
    size_t reply_bytes = say_reply_framed_bytes("c", PAYLOAD);
    struct rpc_server_config config = {.unread_reply_timeout_ms = UNREAD_MS,
                                       .message_bytes_max = reply_bytes - 5,
                                       .connections_max = 4,
                                       .unread_reply_bytes_max = 2 * reply_bytes + 8192};
    struct thread_server *ts = ts_start(&config);
    uint8_t *say;
    size_t say_len = pack_echo(&say, "c", PAYLOAD, 0, 0, NULL);
    assert_true(say_len <= reply_bytes - 5);
    uint8_t *frame = malloc(5 + say_len);
    assert_non_null(frame);
    size_t frame_len = h2raw_grpc_frame(frame, 0, say, (uint32_t)say_len);
    ehr_free(say);
    say_len = pack_echo(&say, "small", 0, 0, 0, NULL);
    uint8_t small[64];
    size_t small_len = h2raw_grpc_frame(small, 0, say, (uint32_t)say_len);
    ehr_free(say);
    uint8_t count_req[64];
    size_t count_len = framed_count(count_req, 3, 100, false);
    struct h2raw z, z2, reader;
    assert_int_equal(h2raw_connect_with(&z, 0, ts->port, H2RAW_ZERO_WINDOW), 0);
    assert_int_equal(h2raw_connect_with(&z2, 0, ts->port, H2RAW_ZERO_WINDOW), 0);
    assert_int_equal(h2raw_connect(&reader, ts->port), 0);
    struct h2raw_stream *held = h2raw_request(&z, ECHO_SAY, NULL, frame, frame_len, true);
    h2raw_wait(&z, held, 1);
    wait_count(&ts->service.stats.calls, 1); /* the reply is queued */
    struct h2raw_stream *stream = h2raw_request(&z2, ECHO_COUNT, NULL, count_req, count_len, true);
    h2raw_wait(&z2, stream, 1);
    wait_count(&ts->service.stats.calls, 2); /* the stream's messages and end are queued */
    uint64_t start_ms = now_ms();
    h2raw_wait(&z, NULL, 50);
    /* The budget is held: a second reply to it does not fit. */
    struct h2raw_stream *refused = h2raw_request(&z, ECHO_SAY, NULL, frame, frame_len, true);
    assert_true(h2raw_wait(&z, refused, 5000));
    assert_int_equal(refused->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    /* Half the timeout later both are held; the reader is served. */
    while (now_ms() - start_ms < UNREAD_MS / 2) {
        struct h2raw_stream *r = h2raw_request(&reader, ECHO_SAY, NULL, small, small_len, true);
        assert_true(h2raw_wait(&reader, r, 5000));
        assert_int_equal(r->grpc_status, RPC_STATUS_OK);
        h2raw_wait(&z, NULL, 10);
        h2raw_wait(&z2, NULL, 10);
        if (reader.stream_count == H2RAW_STREAMS_MAX) /* room for more */
            break;
    }
    assert_false(held->closed);
    assert_false(stream->closed);
    assert_int_equal(ts_refused(ts, "unread_reply_timeout_ms"), 0);
    while ((!held->closed || !stream->closed) && now_ms() - start_ms < 10 * UNREAD_MS) {
        h2raw_wait(&z, NULL, 10);
        h2raw_wait(&z2, NULL, 10);
    }
    assert_true(held->closed);
    assert_true(stream->closed);
    assert_int_equal(held->close_code, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_int_equal(stream->close_code, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_int_equal(held->data_len, 0);                 /* not a byte of it went out */
    assert_true(now_ms() - start_ms >= UNREAD_MS - 100); /* the server's clock started earlier */
    assert_int_equal(ts_refused(ts, "unread_reply_timeout_ms"), 2);
    assert_int_equal(ts_calls_wait(ts, ECHO_SAY, RPC_STATUS_RESOURCE_EXHAUSTED, 2), 2);
    assert_int_equal(ts_calls_wait(ts, ECHO_COUNT, RPC_STATUS_RESOURCE_EXHAUSTED, 1), 1);
    assert_false(z.eof); /* the connections are kept */
    assert_false(z2.eof);
    /* Its bytes were given back: the same client's next reply is queued. */
    struct h2raw_stream *again = h2raw_request(&z, ECHO_SAY, NULL, frame, frame_len, true);
    h2raw_wait(&z, again, 200);
    assert_false(again->closed);
    /* The reader was never reset: its answers were taken at once. */
    for (int i = 0; i < reader.stream_count; i++)
        assert_int_equal(reader.streams[i].close_code, 0);
    h2raw_close(&z);
    h2raw_close(&z2);
    h2raw_close(&reader);
    free(frame);
    ts_join(ts);
}

/*
 * Invariant 15: replies not read are bounded over the whole server. Each
 * Say reply takes R bytes; the budget is 8 R over 4 connections: half
 * first come, first served, and a quota of (8 R / 2) / 4 = R for each
 * connection past it. Clients that give no flow-control window (nothing
 * of their replies leaves the server): the first takes 4 R (half,
 * exactly); its fifth is refused (past half, over its quota), and its
 * sixth before its handler runs. A second and a third each get one reply
 * (their quota) and no second. A client that reads, on the fourth
 * connection, is refused a reply of 1.5 R (over its quota) and still
 * served from its quota again and again: the server then holds 8 R, the
 * budget exactly. Once the first leaves, the second
 * is served from the first half again.
 */
static void test_unread_reply_bytes_max_edge(void **state)
{
    (void)state;
    enum { PAYLOAD = 40000 };
    size_t reply_bytes = say_reply_framed_bytes("c", PAYLOAD);
    struct rpc_server_config config = {.message_bytes_max = 65536,
                                       .connections_max = 4,
                                       .unread_reply_bytes_max = 8 * reply_bytes};
    struct thread_server *ts = ts_start(&config);
    uint8_t *say;
    size_t say_len = pack_echo(&say, "c", PAYLOAD, 0, 0, NULL);
    uint8_t *frame = malloc(5 + say_len);
    assert_non_null(frame);
    size_t frame_len = h2raw_grpc_frame(frame, 0, say, (uint32_t)say_len);
    ehr_free(say);
    struct h2raw z1, z2, z3, reader;
    assert_int_equal(h2raw_connect_with(&z1, 0, ts->port, H2RAW_ZERO_WINDOW), 0);
    assert_int_equal(h2raw_connect_with(&z2, 0, ts->port, H2RAW_ZERO_WINDOW), 0);
    assert_int_equal(h2raw_connect_with(&z3, 0, ts->port, H2RAW_ZERO_WINDOW), 0);
    struct h2raw_stream *held[4];
    for (int i = 0; i < 4; i++)
        held[i] = h2raw_request(&z1, ECHO_SAY, NULL, frame, frame_len, true);
    h2raw_wait(&z1, NULL, 200);
    wait_count(&ts->service.stats.calls, 4);
    for (int i = 0; i < 4; i++)
        assert_false(held[i]->closed); /* half, exactly */
    assert_int_equal(ts_refused(ts, "unread_reply_bytes_max"), 0);
    struct h2raw_stream *s15 = h2raw_request(&z1, ECHO_SAY, NULL, frame, frame_len, true);
    assert_true(h2raw_wait(&z1, s15, 5000));
    assert_int_equal(s15->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(s15->grpc_message, "your connection holds its share"));
    assert_int_equal(atomic_load(&ts->service.stats.calls), 5);
    assert_int_equal(ts_refused(ts, "unread_reply_bytes_max"), 1); /* after its handler */
    struct h2raw_stream *s16 = h2raw_request(&z1, ECHO_SAY, NULL, frame, frame_len, true);
    assert_true(h2raw_wait(&z1, s16, 5000));
    assert_int_equal(s16->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(s16->grpc_message, "was refused a reply"));
    assert_int_equal(atomic_load(&ts->service.stats.calls), 5);    /* no handler ran */
    assert_int_equal(ts_refused(ts, "unread_reply_bytes_max"), 2); /* before its handler */
    struct h2raw *quota_holders[2] = {&z2, &z3};
    for (int k = 0; k < 2; k++) {
        struct h2raw *z = quota_holders[k];
        struct h2raw_stream *first = h2raw_request(z, ECHO_SAY, NULL, frame, frame_len, true);
        h2raw_wait(z, NULL, 200);
        wait_count(&ts->service.stats.calls, 6 + 2 * (unsigned)k);
        assert_false(first->closed); /* its quota */
        struct h2raw_stream *second = h2raw_request(z, ECHO_SAY, NULL, frame, frame_len, true);
        assert_true(h2raw_wait(z, second, 5000));
        assert_int_equal(second->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    }
    /* 7 R held: a client that reads is refused a reply over its quota,
     * and is still served the next one from it, again and again. */
    assert_int_equal(h2raw_connect(&reader, ts->port), 0);
    size_t big_len = pack_echo(&say, "c", PAYLOAD * 3 / 2, 0, 0, NULL);
    uint8_t *big = malloc(5 + big_len);
    assert_non_null(big);
    size_t big_frame_len = h2raw_grpc_frame(big, 0, say, (uint32_t)big_len);
    ehr_free(say);
    struct h2raw_stream *over = h2raw_request(&reader, ECHO_SAY, NULL, big, big_frame_len, true);
    assert_true(h2raw_wait(&reader, over, 5000));
    assert_int_equal(over->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    free(big);
    for (int i = 0; i < 3; i++) {
        struct h2raw_stream *r = h2raw_request(&reader, ECHO_SAY, NULL, frame, frame_len, true);
        assert_true(h2raw_wait(&reader, r, 5000));
        assert_int_equal(r->grpc_status, RPC_STATUS_OK);
        assert_int_equal(r->data_len, reply_bytes);
    }
    /* Every refusal counted by its limit: the fifth and sixth of the
     * first, the second of the second and of the third, the reader's one
     * over its quota; none for the request budgets. */
    assert_int_equal(ts_refused(ts, "unread_reply_bytes_max"), 5);
    assert_int_equal(ts_refused(ts, "unfinished_bytes_max"), 0);
    /* The first leaves: the first half is free, and the second is served. */
    h2raw_close(&z1);
    struct h2raw_stream *s22 = NULL;
    for (int i = 0; i < 40; i++) {
        s22 = h2raw_request(&z2, ECHO_SAY, NULL, frame, frame_len, true);
        h2raw_wait(&z2, s22, 100);
        if (!s22->closed)
            break; /* queued: it waits for a window */
    }
    assert_false(s22->closed);
    h2raw_close(&z2);
    h2raw_close(&z3);
    h2raw_close(&reader);
    free(frame);
    ts_join(ts);
}

/*
 * Invariant 15 for streams: a stream message that would take the unread
 * replies past half their budget waits as in a full queue (EHR_EAGAIN,
 * then the writable callback) unless its stream's queue is empty. With a
 * budget of 8 R over 4 connections, a client that gives no window holding
 * 4 R (half, exactly), and a reader asking for 20 messages of 30,000 bytes
 * (a stream queue holds all of them): the stream is held back to one
 * message at a time, and completes; meanwhile a unary reply of R (to
 * another connection) is still served from that connection's quota.
 */
static void test_a_stream_past_the_unread_reply_budget_waits_and_completes(void **state)
{
    (void)state;
    enum { PAYLOAD = 40000, COUNT = 20, COUNT_PAYLOAD = 30000 };
    size_t reply_bytes = say_reply_framed_bytes("c", PAYLOAD);
    struct rpc_server_config config = {.message_bytes_max = 65536,
                                       .connections_max = 4,
                                       .unread_reply_bytes_max = 8 * reply_bytes};
    struct thread_server *ts = ts_start(&config);
    uint8_t *say;
    size_t say_len = pack_echo(&say, "c", PAYLOAD, 0, 0, NULL);
    uint8_t *frame = malloc(5 + say_len);
    assert_non_null(frame);
    size_t frame_len = h2raw_grpc_frame(frame, 0, say, (uint32_t)say_len);
    ehr_free(say);
    struct h2raw z, reader, unary;
    assert_int_equal(h2raw_connect_with(&z, 0, ts->port, H2RAW_ZERO_WINDOW), 0);
    struct h2raw_stream *held[4];
    for (int i = 0; i < 4; i++)
        held[i] = h2raw_request(&z, ECHO_SAY, NULL, frame, frame_len, true);
    h2raw_wait(&z, NULL, 200);
    wait_count(&ts->service.stats.calls, 4);
    for (int i = 0; i < 4; i++)
        assert_false(held[i]->closed);
    uint8_t req[64];
    size_t req_len = framed_count(req, COUNT, COUNT_PAYLOAD, false);
    assert_int_equal(h2raw_connect(&reader, ts->port), 0);
    struct h2raw_stream *s = h2raw_request(&reader, ECHO_COUNT, NULL, req, req_len, true);
    h2raw_wait(&reader, s, 50);
    assert_int_equal(h2raw_connect(&unary, ts->port), 0);
    struct h2raw_stream *u = h2raw_request(&unary, ECHO_SAY, NULL, frame, frame_len, true);
    assert_true(h2raw_wait(&unary, u, 10000));
    assert_int_equal(u->grpc_status, RPC_STATUS_OK);
    assert_true(h2raw_wait(&reader, s, 10000));
    assert_int_equal(s->grpc_status, RPC_STATUS_OK);
    assert_true(s->data_len > (size_t)COUNT * COUNT_PAYLOAD);
    assert_true(atomic_load(&ts->service.stats.eagain) >= 1); /* held back by the budget */
    assert_true(atomic_load(&ts->service.stats.writable) >= 1);
    h2raw_close(&z);
    h2raw_close(&unary);
    h2raw_close(&reader);
    free(frame);
    ts_join(ts);
}

static void test_idle_connection_is_closed(void **state)
{
    struct rpc_server_config config = {.idle_timeout_ms = 50};
    struct thread_server *ts = ts_start(&config);
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, ts->port), 0);
    assert_true(h2raw_wait(&h, NULL, 5000)); /* EOF after a GOAWAY, without a request */
    assert_true(h.goaway);
    h2raw_close(&h);
    ts_join(ts);
}

static void test_shutdown_grace_forces_held_calls(void **state)
{
    struct rpc_server_config config = {.shutdown_grace_ms = 50};
    struct fixture f;
    fixture_start(&f, &config, NULL);
    struct outcome o = {0};
    assert_int_equal(rpc_client_unary(f.client, ECHO_HANG, NULL, 0, 0, on_done, &o, NULL), 0);
    run_until_count(&f.loop, &f.service.stats.calls, 1);
    rpc_server_close(f.server, on_server_closed, &f);
    run_until(&f.loop, &f.server_closed); /* the grace ran out: the call was forced */
    assert_int_equal(atomic_load(&f.service.stats.cancels[RPC_STATUS_UNAVAILABLE]), 1);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_UNAVAILABLE);
    fixture_stop(&f);
}

int main(void)
{
    const struct CMUnitTest codec[] = {
        cmocka_unit_test(test_grpc_timeout_parses_every_unit),
        cmocka_unit_test(test_grpc_timeout_rejects_malformed),
        cmocka_unit_test(test_grpc_timeout_format_round_trips),
        cmocka_unit_test(test_grpc_message_percent_round_trip),
        cmocka_unit_test(test_grpc_message_cut_at_limit),
        cmocka_unit_test(test_status_names_and_parse),
        cmocka_unit_test(test_status_from_err_mapping),
        cmocka_unit_test(test_reader_reassembles_at_every_split),
        cmocka_unit_test(test_reader_refuses_oversize_before_buffering),
        cmocka_unit_test(test_reader_refuses_compressed_and_bad_flags),
        cmocka_unit_test(test_reader_budget_limits_partial_messages),
        cmocka_unit_test(test_reader_counts_messages_against_max),
    };
    const struct CMUnitTest loop[] = {
        cmocka_unit_test(test_unary_echo_round_trip),
        cmocka_unit_test(test_unary_async_reply_after_delay),
        cmocka_unit_test(test_fail_status_and_message_reach_client),
        cmocka_unit_test(test_custom_trailers_reach_the_client_within_their_limits),
        cmocka_unit_test(test_unknown_method_is_unimplemented),
        cmocka_unit_test(test_stream_many_messages_in_order_with_back_pressure),
        cmocka_unit_test(test_stream_ends_with_handler_status),
        cmocka_unit_test(test_client_cancel_reaches_handler),
        cmocka_unit_test(test_deadline_exceeded_ends_call_on_both_sides),
        cmocka_unit_test(test_message_limit_edge_on_server),
        cmocka_unit_test(test_oversize_request_refused_and_connection_lives),
        cmocka_unit_test(test_client_refuses_oversize_locally),
        cmocka_unit_test(test_response_over_limit_fails_the_call),
        cmocka_unit_test(test_request_budget_is_returned_after_each_call),
        cmocka_unit_test(test_many_concurrent_calls_on_one_connection),
        cmocka_unit_test(test_pooled_calls_keep_their_buffers_within_the_bound),
        cmocka_unit_test(test_client_disconnect_mid_stream_cancels_handler),
        cmocka_unit_test(test_reply_after_client_gone_is_safe),
        cmocka_unit_test(test_stream_queue_limit_edge),
        cmocka_unit_test(test_graceful_close_lets_unary_finish_and_ends_streams),
        cmocka_unit_test(test_connect_refused_is_unavailable),
        cmocka_unit_test(test_method_registration_rules),
        cmocka_unit_test(test_config_certificate_caps_below_the_totals),
        cmocka_unit_test(test_shutdown_grace_forces_held_calls),
        cmocka_unit_test(test_upload_messages_arrive_in_order_then_the_end),
        cmocka_unit_test(test_upload_paused_handler_holds_the_client_to_one_window),
        cmocka_unit_test(test_upload_undelivered_messages_count_against_the_budget),
        cmocka_unit_test(test_upload_a_client_that_stops_sending_is_timed_out),
        cmocka_unit_test(test_upload_cut_off_reaches_the_handler_as_a_cancel),
        cmocka_unit_test(test_upload_refused_half_way_stops_the_client),
        cmocka_unit_test(test_upload_message_limit_edge),
        cmocka_unit_test(test_upload_client_queue_edge),
    };
    const struct CMUnitTest raw[] = {
        cmocka_unit_test(test_raw_http1_request_gets_505),
        cmocka_unit_test(test_raw_garbage_closes_connection_and_server_lives),
        cmocka_unit_test(test_raw_truncated_message_is_internal),
        cmocka_unit_test(test_raw_request_without_message_is_internal),
        cmocka_unit_test(test_raw_two_messages_on_unary_is_internal),
        cmocka_unit_test(test_raw_length_prefix_over_limit_refused_early),
        cmocka_unit_test(test_raw_oversize_body_is_never_buffered),
        cmocka_unit_test(test_raw_compressed_flag_is_internal),
        cmocka_unit_test(test_raw_bad_headers_are_refused),
        cmocka_unit_test(test_raw_server_enforces_grpc_timeout),
        cmocka_unit_test(test_raw_client_vanishes_mid_stream),
        cmocka_unit_test(test_sync_client_unary_and_stream),
        cmocka_unit_test(test_sync_client_upload),
        cmocka_unit_test(test_header_list_edge),
    };
    const struct CMUnitTest limits[] = {
        cmocka_unit_test(test_bidirectional_answers_before_the_half_close_and_idles_out),
        cmocka_unit_test(test_connection_limit_edge),
        cmocka_unit_test(test_connection_refusals_are_logged_once_per_interval_with_their_count),
        cmocka_unit_test(test_connections_per_address_edge),
        cmocka_unit_test(test_connections_at_the_cap_evict_the_idlest_of_the_largest_address),
        cmocka_unit_test(test_pings_do_not_keep_a_connection_from_idling),
        cmocka_unit_test(test_requests_keep_a_connection_from_idling),
        cmocka_unit_test(test_an_unfinished_request_has_a_deadline),
        cmocka_unit_test(test_a_stream_not_read_is_ended_after_the_stall_timeout),
        cmocka_unit_test(test_an_answer_not_read_is_dropped_after_the_unread_reply_timeout),
        cmocka_unit_test(test_a_client_that_does_not_read_its_socket_loses_the_connection),
        cmocka_unit_test(test_a_connection_without_a_first_request_is_closed),
        cmocka_unit_test(test_a_connection_used_in_time_outlives_the_first_request_timeout),
        cmocka_unit_test(test_streams_per_connection_edge),
        cmocka_unit_test(test_calls_are_counted_by_method_and_status),
        cmocka_unit_test(test_connection_request_budget_edge),
        cmocka_unit_test(test_unfinished_bytes_per_address_edge),
        cmocka_unit_test(test_unfinished_bytes_max_edge),
        cmocka_unit_test(test_unread_reply_bytes_max_edge),
        cmocka_unit_test(test_a_stream_past_the_unread_reply_budget_waits_and_completes),
        cmocka_unit_test(test_idle_connection_is_closed),
    };
    ehr_log_set_level(EHR_LOG_OFF);
    int failed = cmocka_run_group_tests_name("rpc codecs", codec, NULL, NULL);
    failed += cmocka_run_group_tests_name("rpc client and server", loop, NULL, NULL);
    failed += cmocka_run_group_tests_name("rpc raw input", raw, setup_thread_server,
                                          teardown_thread_server);
    failed += cmocka_run_group_tests_name("rpc limits", limits, NULL, NULL);
    return failed;
}
