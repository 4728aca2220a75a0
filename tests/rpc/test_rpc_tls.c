/*
 * Tests of TLS under the rpc transport (rpc/tls.c and its hooks in the
 * server and the client): our client against our server on one loop, with
 * certificates made at test time by make_tls_certs.sh (Debian's openssl
 * command). Who is refused (a client without the CA, a server whose name
 * does not match, mutual TLS without a certificate or with one from another
 * CA, a cleartext client on a TLS port and the reverse), who is served,
 * what a reload changes, what a refused file says, how failed handshakes
 * are logged, that a handshake never outlives the first-request
 * deadline or the per-address limit, and that under mutual TLS one client
 * certificate holds at most its share of the connections from however
 * many addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "echo.pb-c.h"
#include "echo_service.h"
#include "rpc.h"
#include "rpc_internal.h"

static char certs_dir[256];

/* DIR/NAME of a made certificate or key (one of 32 rotating buffers: a test
 * holds at most a few files sets at once). */
static const char *cert(const char *name)
{
    static char paths[32][320];
    static unsigned next;
    char *p = paths[next++ % 32];
    snprintf(p, sizeof paths[0], "%s/%s", certs_dir, name);
    return p;
}

static int group_setup(void **state)
{
    snprintf(certs_dir, sizeof certs_dir, "/tmp/ehr-tls-XXXXXX");
    if (mkdtemp(certs_dir) == NULL)
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "sh %s %s", EHR_TLS_CERTS_SCRIPT, certs_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", certs_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- fixture */

struct fixture {
    uv_loop_t loop;
    struct rpc_server *server;
    struct rpc_tls *server_tls;
    struct echo_service service;
    uint16_t port;
    bool server_closed;
};

struct client {
    struct rpc_client *client;
    struct rpc_tls *tls;
    bool connected;
    int connect_status;
    bool closed;
};

struct outcome {
    bool done;
    enum rpc_status status;
    char message[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    size_t response_len;
    uint32_t messages;
};

static void wake_cb(uv_timer_t *timer) {}

/* Run LOOP until *FLAG or 10 s of loop time (then fail). */
static void run_until(uv_loop_t *loop, const bool *flag)
{
    uv_update_time(loop);
    uint64_t start = uv_now(loop);
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, wake_cb, 10, 10);
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

/* A server with TLS from FILES (NULL: cleartext) and CONFIG (may be NULL). */
static void server_start(struct fixture *f, const struct rpc_tls_server_files *files,
                         const struct rpc_server_config *config)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(rpc_server_new(&f->loop, config, &f->server), 0);
    assert_int_equal(echo_service_register(&f->service, &f->loop, f->server), 0);
    if (files != NULL) {
        ehr_diag why;
        int rc = rpc_tls_server_new(files, &f->server_tls, &why);
        if (rc != 0)
            fail_msg("server TLS: %s", why.msg);
        rpc_server_use_tls(f->server, f->server_tls);
    }
    assert_int_equal(rpc_server_listen(f->server, "127.0.0.1", 0), 0);
    f->port = rpc_server_port(f->server);
}

static void on_server_closed(struct rpc_server *server, void *data)
{
    ((struct fixture *)data)->server_closed = true;
}

static void server_stop(struct fixture *f)
{
    rpc_server_close(f->server, on_server_closed, f);
    run_until(&f->loop, &f->server_closed);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    rpc_tls_free(f->server_tls);
    assert_int_equal(uv_loop_close(&f->loop), 0); /* every handle was closed */
}

static void on_connected(struct rpc_client *client, int status, void *data)
{
    struct client *c = data;
    c->connected = true;
    c->connect_status = status;
}

/* Connect to HOST with TLS from FILES (NULL: cleartext); returns the connect status. */
static int client_start(struct fixture *f, struct client *c, const char *host,
                        const struct rpc_tls_client_files *files)
{
    memset(c, 0, sizeof *c);
    struct rpc_client_config config = {0};
    if (files != NULL) {
        ehr_diag why;
        int rc = rpc_tls_client_new(files, &c->tls, &why);
        if (rc != 0)
            fail_msg("client TLS: %s", why.msg);
        config.tls = c->tls;
    }
    assert_int_equal(
        rpc_client_connect(&f->loop, host, f->port, &config, on_connected, c, &c->client), 0);
    run_until(&f->loop, &c->connected);
    return c->connect_status;
}

static void on_client_closed(void *data)
{
    ((struct client *)data)->closed = true;
}

static void client_stop(struct fixture *f, struct client *c)
{
    rpc_client_close(c->client, on_client_closed, c);
    run_until(&f->loop, &c->closed);
    rpc_tls_free(c->tls);
}

static void on_done(void *data, enum rpc_status status, const char *message,
                    const uint8_t *response, size_t response_len)
{
    struct outcome *o = data;
    assert_false(o->done);
    o->done = true;
    o->status = status;
    snprintf(o->message, sizeof o->message, "%s", message);
    o->response_len = response_len;
}

static void on_message(void *data, const uint8_t *message, size_t len)
{
    ((struct outcome *)data)->messages++;
}

/* One Say of PAYLOAD_LEN bytes; its outcome in O. */
static void say(struct fixture *f, struct client *c, struct outcome *o, size_t payload_len)
{
    memset(o, 0, sizeof *o);
    Ehr__Test__EchoRequest req = EHR__TEST__ECHO_REQUEST__INIT;
    req.text = "over TLS";
    uint8_t *payload = ehr_calloc(1, payload_len + 1);
    req.payload.data = payload;
    req.payload.len = payload_len;
    size_t len = ehr__test__echo_request__get_packed_size(&req);
    uint8_t *bytes = ehr_malloc(len + 1);
    ehr__test__echo_request__pack(&req, bytes);
    assert_int_equal(rpc_client_unary(c->client, ECHO_SAY, bytes, len, 5000, on_done, o, NULL), 0);
    ehr_free(bytes);
    ehr_free(payload);
    run_until(&f->loop, &o->done);
}

/* The server's certificate (localhost, 127.0.0.1) and key, no client certificate asked. */
static struct rpc_tls_server_files plain_server(void)
{
    struct rpc_tls_server_files s = {.cert_file = cert("server.pem"),
                                     .key_file = cert("server.key")};
    return s;
}

/* ---------------------------------------------------------------- tests */

static void test_tls_client_with_the_ca_is_served(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    server_start(&f, &sf, NULL);
    struct rpc_tls_client_files cf = {.ca_file = cert("ca.pem")};
    struct client c;
    assert_int_equal(client_start(&f, &c, "127.0.0.1", &cf), 0);
    struct outcome o;
    say(&f, &c, &o, 1000);
    assert_int_equal(o.status, RPC_STATUS_OK);
    /* 3 MiB each way: many records, the output bound and flow control. */
    say(&f, &c, &o, 3u << 20);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_true(o.response_len > (3u << 20));
    /* A stream of many messages. */
    Ehr__Test__CountRequest count = EHR__TEST__COUNT_REQUEST__INIT;
    count.count = 500;
    count.payload_bytes = 4000;
    uint8_t req[64];
    size_t len = ehr__test__count_request__pack(&count, req);
    memset(&o, 0, sizeof o);
    assert_int_equal(
        rpc_client_stream(c.client, ECHO_COUNT, req, len, 10000, on_message, on_done, &o, NULL), 0);
    run_until(&f.loop, &o.done);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(o.messages, 500);
    client_stop(&f, &c);
    /* By name too: the certificate holds localhost. */
    assert_int_equal(client_start(&f, &c, "localhost", &cf), 0);
    say(&f, &c, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    client_stop(&f, &c);
    server_stop(&f);
}

static void test_tls_client_without_the_ca_is_refused(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    server_start(&f, &sf, NULL);
    struct rpc_tls_client_files cf = {.ca_file = cert("other-ca.pem")};
    struct client c;
    assert_int_equal(client_start(&f, &c, "127.0.0.1", &cf), EHR_EPROTO);
    assert_true(rpc_client_is_down(c.client));
    struct outcome o;
    say(&f, &c, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(o.message, "certificate verify failed"));
    assert_int_equal(f.service.stats.calls, 0);
    client_stop(&f, &c);
    server_stop(&f);
}

static void test_tls_server_name_must_match(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = {.cert_file = cert("wrong-name.pem"),
                                      .key_file = cert("wrong-name.key")};
    server_start(&f, &sf, NULL);
    struct rpc_tls_client_files cf = {.ca_file = cert("ca.pem")};
    struct client c;
    assert_int_equal(client_start(&f, &c, "127.0.0.1", &cf), EHR_EPROTO);
    struct outcome o;
    say(&f, &c, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(o.message, "mismatch"));
    client_stop(&f, &c);
    assert_int_equal(client_start(&f, &c, "localhost", &cf), EHR_EPROTO);
    client_stop(&f, &c);
    server_stop(&f);
}

static void test_mutual_tls_admits_only_certificates_of_the_client_ca(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    sf.client_ca_file = cert("ca.pem");
    server_start(&f, &sf, NULL);
    struct client c;
    struct outcome o;
    /* No certificate: TLS 1.3 lets the client finish its side first, so
     * the refusal (an alert) ends its first call. */
    struct rpc_tls_client_files none = {.ca_file = cert("ca.pem")};
    client_start(&f, &c, "127.0.0.1", &none);
    say(&f, &c, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(o.message, "certificate required"));
    client_stop(&f, &c);
    /* A certificate from another CA. */
    struct rpc_tls_client_files other = {.ca_file = cert("ca.pem"),
                                         .cert_file = cert("other-client.pem"),
                                         .key_file = cert("other-client.key")};
    client_start(&f, &c, "127.0.0.1", &other);
    say(&f, &c, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(o.message, "unknown ca"));
    client_stop(&f, &c);
    assert_int_equal(f.service.stats.calls, 0);
    /* One of ours. */
    struct rpc_tls_client_files good = {
        .ca_file = cert("ca.pem"), .cert_file = cert("client.pem"), .key_file = cert("client.key")};
    assert_int_equal(client_start(&f, &c, "127.0.0.1", &good), 0);
    say(&f, &c, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(f.service.stats.calls, 1);
    client_stop(&f, &c);
    server_stop(&f);
}

static void test_cleartext_client_on_a_tls_port_fails_cleanly(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    server_start(&f, &sf, NULL);
    struct client c;
    assert_int_equal(client_start(&f, &c, "127.0.0.1", NULL), 0); /* TCP is up */
    struct outcome o;
    say(&f, &c, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(o.message, "answered with TLS"));
    client_stop(&f, &c);
    assert_int_equal(f.service.stats.calls, 0);
    server_stop(&f);
}

static void test_tls_client_on_a_cleartext_port_fails_cleanly(void **state)
{
    struct fixture f;
    server_start(&f, NULL, NULL);
    struct rpc_tls_client_files cf = {.ca_file = cert("ca.pem")};
    struct client c;
    assert_int_not_equal(client_start(&f, &c, "127.0.0.1", &cf), 0);
    struct outcome o;
    say(&f, &c, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_UNAVAILABLE);
    assert_non_null(strstr(o.message, "TLS handshake with 127.0.0.1"));
    client_stop(&f, &c);
    server_stop(&f);
}

static void test_tls_reload_serves_new_connections_and_keeps_old_on_error(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    server_start(&f, &sf, NULL);
    struct rpc_tls_client_files ours = {.ca_file = cert("ca.pem")};
    struct rpc_tls_client_files theirs = {.ca_file = cert("other-ca.pem")};
    struct client before, c;
    struct outcome o;
    assert_int_equal(client_start(&f, &before, "127.0.0.1", &ours), 0);
    /* A certificate from the other CA from now on. */
    struct rpc_tls_server_files next = {.cert_file = cert("other-server.pem"),
                                        .key_file = cert("other-server.key")};
    ehr_diag why;
    assert_int_equal(rpc_tls_server_reload(f.server_tls, &next, &why), 0);
    assert_int_equal(client_start(&f, &c, "127.0.0.1", &theirs), 0);
    client_stop(&f, &c);
    assert_int_equal(client_start(&f, &c, "127.0.0.1", &ours), EHR_EPROTO);
    client_stop(&f, &c);
    /* The connection made before keeps its session. */
    say(&f, &before, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    client_stop(&f, &before);
    /* A bad file (a key that is not the certificate's) changes nothing. */
    struct rpc_tls_server_files bad = {.cert_file = cert("server.pem"),
                                       .key_file = cert("client.key")};
    assert_int_equal(rpc_tls_server_reload(f.server_tls, &bad, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "is not the key of the certificate"));
    assert_int_equal(client_start(&f, &c, "127.0.0.1", &theirs), 0);
    client_stop(&f, &c);
    server_stop(&f);
}

static void test_tls_files_refused_with_a_reason_and_never_a_key(void **state)
{
    struct rpc_tls *tls = NULL;
    ehr_diag why;
    struct rpc_tls_server_files missing = {.cert_file = cert("nope.pem"),
                                           .key_file = cert("server.key")};
    assert_int_equal(rpc_tls_server_new(&missing, &tls, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "nope.pem"));
    struct rpc_tls_server_files key_as_cert = {.cert_file = cert("server.key"),
                                               .key_file = cert("server.key")};
    assert_int_equal(rpc_tls_server_new(&key_as_cert, &tls, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "TLS certificate"));
    assert_null(strstr(why.msg, "BEGIN"));
    /* A key protected by a passphrase: refused, no prompt. */
    struct rpc_tls_server_files locked = {.cert_file = cert("client.pem"),
                                          .key_file = cert("locked.key")};
    assert_int_equal(rpc_tls_server_new(&locked, &tls, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "locked.key"));
    assert_null(strstr(why.msg, "secret"));
    struct rpc_tls_server_files no_key = {.cert_file = cert("server.pem")};
    assert_int_equal(rpc_tls_server_new(&no_key, &tls, &why), EHR_EINVAL);
    struct rpc_tls_server_files bad_ca = {.cert_file = cert("server.pem"),
                                          .key_file = cert("server.key"),
                                          .client_ca_file = cert("server.key")};
    assert_int_equal(rpc_tls_server_new(&bad_ca, &tls, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "client CA"));
    struct rpc_tls_client_files half = {.ca_file = cert("ca.pem"), .cert_file = cert("client.pem")};
    assert_int_equal(rpc_tls_client_new(&half, &tls, &why), EHR_EINVAL);
    struct rpc_tls_client_files bad_client_ca = {.ca_file = cert("nope.pem")};
    assert_int_equal(rpc_tls_client_new(&bad_client_ca, &tls, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "nope.pem"));
    assert_null(tls);
}

/* Log lines captured by the sink. */
static struct {
    unsigned tls_lines;
    char last[512];
} log_seen;

static void log_sink(void *ctx, enum ehr_log_level level, const char *line)
{
    if (strstr(line, "rpc TLS handshakes failed") != NULL) {
        log_seen.tls_lines++;
        snprintf(log_seen.last, sizeof log_seen.last, "%s", line);
    }
}

static void test_tls_failed_handshakes_logged_once_per_interval(void **state)
{
    memset(&log_seen, 0, sizeof log_seen);
    ehr_log_set_sink(log_sink, NULL);
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    server_start(&f, &sf, NULL);
    struct rpc_tls_client_files theirs = {.ca_file = cert("other-ca.pem")};
    for (int i = 0; i < 5; i++) {
        struct client c;
        assert_int_equal(client_start(&f, &c, "127.0.0.1", &theirs), EHR_EPROTO);
        client_stop(&f, &c);
    }
    /* Let the server read the clients' alerts. */
    for (int i = 0; i < 20; i++) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    assert_int_equal(log_seen.tls_lines, 1);
    assert_non_null(strstr(log_seen.last, "count=1"));
    assert_non_null(strstr(log_seen.last, "limit=tls_handshake"));
    /* The client's alert says why: it does not know our CA. */
    assert_non_null(strstr(log_seen.last, "unknown ca"));
    server_stop(&f); /* the held-back failures are told at teardown */
    assert_int_equal(log_seen.tls_lines, 2);
    assert_non_null(strstr(log_seen.last, "count=4"));
    ehr_log_set_sink(NULL, NULL);
}

/* ---- a raw TCP client that sends part of a handshake and waits ---- */

struct trickler {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    char read_buf[4096];
    bool eof;
    uint64_t eof_ms;
    bool closed;
};

static void trickler_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct trickler *t = h->data;
    *buf = uv_buf_init(t->read_buf, sizeof t->read_buf);
}

static void trickler_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct trickler *t = s->data;
    if (nread < 0 && !t->eof) {
        t->eof = true;
        t->eof_ms = uv_now(s->loop);
    }
}

static void trickler_written(uv_write_t *req, int status) {}

static void trickler_connected(uv_connect_t *req, int status)
{
    struct trickler *t = req->data;
    assert_int_equal(status, 0);
    /* A handshake record's header announcing 512 bytes, and 3 of them. */
    static char part[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01};
    uv_buf_t buf = uv_buf_init(part, sizeof part);
    t->write_req.data = t;
    assert_int_equal(uv_write(&t->write_req, (uv_stream_t *)&t->tcp, &buf, 1, trickler_written), 0);
    uv_read_start((uv_stream_t *)&t->tcp, trickler_alloc, trickler_read);
}

static void trickler_closed(uv_handle_t *h)
{
    ((struct trickler *)h->data)->closed = true;
}

static void test_tls_handshake_bounded_by_first_request_deadline_and_address_limit(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    struct rpc_server_config config = {.first_request_timeout_ms = 300,
                                       .connections_per_address_max = 2};
    server_start(&f, &sf, &config);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", f.port, &addr);
    struct trickler t[3];
    uv_update_time(&f.loop);
    uint64_t start = uv_now(&f.loop);
    for (int i = 0; i < 3; i++) {
        memset(&t[i], 0, sizeof t[i]);
        uv_tcp_init(&f.loop, &t[i].tcp);
        t[i].tcp.data = &t[i];
        t[i].connect_req.data = &t[i];
        assert_int_equal(uv_tcp_connect(&t[i].connect_req, &t[i].tcp,
                                        (const struct sockaddr *)&addr, trickler_connected),
                         0);
    }
    /* The third from the same address is closed at once... */
    run_until(&f.loop, &t[2].eof);
    assert_true(t[2].eof_ms - start < 250);
    assert_int_equal(rpc_server_connection_count(f.server), 2);
    /* ... and the two half-handshakes at the first-request deadline. */
    run_until(&f.loop, &t[0].eof);
    run_until(&f.loop, &t[1].eof);
    assert_true(t[0].eof_ms - start >= 290);
    assert_true(t[1].eof_ms - start < 3000);
    assert_int_equal(rpc_server_connection_count(f.server), 0);
    for (int i = 0; i < 3; i++) {
        uv_close((uv_handle_t *)&t[i].tcp, trickler_closed);
        run_until(&f.loop, &t[i].closed);
    }
    server_stop(&f);
}

static void test_tls_handshakes_per_turn_bounded_and_all_served(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    struct rpc_server_config config = {.tls_handshakes_per_turn_max = 1};
    server_start(&f, &sf, &config);
    struct rpc_tls_client_files cf = {.ca_file = cert("ca.pem")};
    enum { CLIENTS = 8 };
    struct client c[CLIENTS];
    struct rpc_client_config cc = {0};
    ehr_diag why;
    struct rpc_tls *tls;
    assert_int_equal(rpc_tls_client_new(&cf, &tls, &why), 0);
    cc.tls = tls;
    /* All at once: their ClientHellos arrive in the same turns. */
    for (int i = 0; i < CLIENTS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        assert_int_equal(rpc_client_connect(&f.loop, "127.0.0.1", f.port, &cc, on_connected, &c[i],
                                            &c[i].client),
                         0);
    }
    for (int i = 0; i < CLIENTS; i++) {
        run_until(&f.loop, &c[i].connected);
        assert_int_equal(c[i].connect_status, 0);
    }
    /* Some waited for a later turn, and every one is served. */
    assert_true(rpc__server_tls_deferred(f.server) > 0);
    for (int i = 0; i < CLIENTS; i++) {
        struct outcome o;
        say(&f, &c[i], &o, 10);
        assert_int_equal(o.status, RPC_STATUS_OK);
        client_stop(&f, &c[i]); /* frees c[i].tls: NULL, the context is shared */
    }
    rpc_tls_free(tls);
    server_stop(&f);
}

/* ---- a relay that makes a client's connection come from another address ---- */

/* Each connection accepted on 127.0.0.1:PORT is relayed to the server at
 * 127.0.0.1:UPSTREAM_PORT from SOURCE (127.0.0.2: Linux routes all of
 * 127/8 to the loopback), so the server sees another client address while
 * the client still checks the server's certificate against 127.0.0.1. */
struct relay {
    uv_tcp_t listener;
    struct sockaddr_in upstream;
    struct sockaddr_in source;
    uint16_t port;
    uint32_t pairs_open; /* connections relayed and not yet closed */
    bool closed;
};

struct relay_pair {
    struct relay *relay;
    uv_tcp_t down; /* from the client */
    uv_tcp_t up;   /* to the server */
    uv_connect_t connect_req;
    uint32_t handles_open;
    bool closing;
};

struct relay_write {
    uv_write_t req;
    char *data;
};

static void relay_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    *buf = uv_buf_init(ehr_malloc(65536), 65536);
}

static void relay_pair_handle_closed(uv_handle_t *h)
{
    struct relay_pair *p = h->data;
    if (--p->handles_open > 0)
        return;
    p->relay->pairs_open--;
    ehr_free(p);
}

static void relay_pair_close(struct relay_pair *p)
{
    if (p->closing)
        return;
    p->closing = true;
    uv_close((uv_handle_t *)&p->down, relay_pair_handle_closed);
    uv_close((uv_handle_t *)&p->up, relay_pair_handle_closed);
}

static void relay_written(uv_write_t *req, int status)
{
    struct relay_write *w = (struct relay_write *)req;
    ehr_free(w->data);
    ehr_free(w);
}

/* Bytes read on one side go to the other; an end or an error on either closes both. */
static void relay_read(uv_stream_t *from, ssize_t nread, const uv_buf_t *buf)
{
    struct relay_pair *p = from->data;
    if (nread <= 0 || p->closing) {
        ehr_free(buf->base);
        if (nread < 0)
            relay_pair_close(p);
        return;
    }
    uv_stream_t *to =
        from == (uv_stream_t *)&p->down ? (uv_stream_t *)&p->up : (uv_stream_t *)&p->down;
    struct relay_write *w = ehr_malloc(sizeof *w);
    w->data = buf->base;
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    if (uv_write(&w->req, to, &out, 1, relay_written) != 0) {
        relay_written(&w->req, 0);
        relay_pair_close(p);
    }
}

static void relay_up_connected(uv_connect_t *req, int status)
{
    struct relay_pair *p = req->data;
    if (p->closing)
        return;
    if (status != 0) {
        relay_pair_close(p);
        return;
    }
    /* It does come from the other address. */
    struct sockaddr_in bound;
    int len = sizeof bound;
    assert_int_equal(uv_tcp_getsockname(&p->up, (struct sockaddr *)&bound, &len), 0);
    assert_int_equal(bound.sin_addr.s_addr, p->relay->source.sin_addr.s_addr);
    uv_read_start((uv_stream_t *)&p->down, relay_alloc, relay_read);
    uv_read_start((uv_stream_t *)&p->up, relay_alloc, relay_read);
}

static void relay_accepted(uv_stream_t *listener, int status)
{
    struct relay *r = listener->data;
    assert_int_equal(status, 0);
    struct relay_pair *p = ehr_calloc(1, sizeof *p);
    p->relay = r;
    uv_tcp_init(listener->loop, &p->down);
    uv_tcp_init(listener->loop, &p->up);
    p->down.data = p;
    p->up.data = p;
    p->connect_req.data = p;
    p->handles_open = 2;
    r->pairs_open++;
    assert_int_equal(uv_accept(listener, (uv_stream_t *)&p->down), 0);
    assert_int_equal(uv_tcp_bind(&p->up, (const struct sockaddr *)&r->source, 0), 0);
    assert_int_equal(uv_tcp_connect(&p->connect_req, &p->up, (const struct sockaddr *)&r->upstream,
                                    relay_up_connected),
                     0);
}

static void relay_start(struct fixture *f, struct relay *r, const char *source)
{
    memset(r, 0, sizeof *r);
    uv_ip4_addr("127.0.0.1", f->port, &r->upstream);
    uv_ip4_addr(source, 0, &r->source);
    struct sockaddr_in here;
    uv_ip4_addr("127.0.0.1", 0, &here);
    uv_tcp_init(&f->loop, &r->listener);
    r->listener.data = r;
    assert_int_equal(uv_tcp_bind(&r->listener, (const struct sockaddr *)&here, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&r->listener, 16, relay_accepted), 0);
    int len = sizeof here;
    uv_tcp_getsockname(&r->listener, (struct sockaddr *)&here, &len);
    r->port = ntohs(here.sin_port);
}

static void relay_listener_closed(uv_handle_t *h)
{
    ((struct relay *)h->data)->closed = true;
}

/* Close the relay once every connection through it has closed. */
static void relay_stop(struct fixture *f, struct relay *r)
{
    for (int i = 0; i < 1000 && r->pairs_open > 0; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_int_equal(r->pairs_open, 0);
    uv_close((uv_handle_t *)&r->listener, relay_listener_closed);
    run_until(&f->loop, &r->closed);
}

/* Run the loop until the server holds COUNT connections (10 s at most). */
static void run_until_connections(struct fixture *f, uint32_t count)
{
    for (int i = 0; i < 10000 && rpc_server_connection_count(f->server) != count; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_int_equal(rpc_server_connection_count(f->server), count);
}

/* The server's refusals for the limit named LIMIT (rpc_server_refused_count). */
static uint64_t refused(const struct fixture *f, const char *limit)
{
    for (size_t k = 0; k < RPC_SERVER_REFUSAL_KINDS; k++) {
        const char *name;
        uint64_t count = rpc_server_refused_count(f->server, k, &name);
        if (strcmp(name, limit) == 0)
            return count;
    }
    fail_msg("no refusal kind named %s", limit);
    return 0;
}

/* Invariant 18 of rpc/server.c: under mutual TLS, connections_per_certificate_max
 * connections with one client certificate, from two addresses, are served;
 * one more with it is closed once its handshake completes, though its
 * address holds one connection only, while another certificate is served
 * from the same address; once one of the first closes, the certificate is
 * served again. */
static void test_connections_per_certificate_edge(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    sf.client_ca_file = cert("ca.pem");
    struct rpc_server_config config = {.connections_per_certificate_max = 2};
    server_start(&f, &sf, &config);
    struct relay relay;
    relay_start(&f, &relay, "127.0.0.2");
    struct rpc_tls_client_files one = {
        .ca_file = cert("ca.pem"), .cert_file = cert("client.pem"), .key_file = cert("client.key")};
    struct rpc_tls_client_files two = {.ca_file = cert("ca.pem"),
                                       .cert_file = cert("client2.pem"),
                                       .key_file = cert("client2.key")};
    struct client first, second, third, other, again;
    struct outcome o;
    /* The cap's worth with one certificate: from 127.0.0.1 and from 127.0.0.2. */
    assert_int_equal(client_start(&f, &first, "127.0.0.1", &one), 0);
    say(&f, &first, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    uint16_t port = f.port;
    f.port = relay.port;
    assert_int_equal(client_start(&f, &second, "127.0.0.1", &one), 0);
    f.port = port;
    say(&f, &second, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(rpc_server_connection_count(f.server), 2);
    /* One more with it, from 127.0.0.1, which holds one connection: TLS 1.3
     * completes the client's side first, so its first call sees the close. */
    client_start(&f, &third, "127.0.0.1", &one);
    say(&f, &third, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_UNAVAILABLE);
    assert_int_equal(refused(&f, "connections_per_certificate_max"), 1);
    assert_int_equal(refused(&f, "connections_per_address_max"), 0);
    assert_int_equal(refused(&f, "tls_handshake"), 0);
    assert_int_equal(f.service.stats.calls, 2); /* nothing of it was read */
    client_stop(&f, &third);
    /* Meanwhile another certificate is served from the same address. */
    assert_int_equal(client_start(&f, &other, "127.0.0.1", &two), 0);
    say(&f, &other, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(rpc_server_connection_count(f.server), 3);
    /* One of the first goes: its certificate is served again. */
    client_stop(&f, &first);
    run_until_connections(&f, 2);
    assert_int_equal(client_start(&f, &again, "127.0.0.1", &one), 0);
    say(&f, &again, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    assert_int_equal(refused(&f, "connections_per_certificate_max"), 1);
    assert_int_equal(rpc_server_connection_count(f.server), 3);
    client_stop(&f, &again);
    client_stop(&f, &other);
    client_stop(&f, &second);
    run_until_connections(&f, 0);
    relay_stop(&f, &relay);
    server_stop(&f);
}

/* Run the loop for MS of wall time (what two connections send meanwhile arrives). */
static void run_for(struct fixture *f, uint32_t ms)
{
    for (uint32_t i = 0; i < ms; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

/* A Say of PAYLOAD_LEN bytes, packed into *OUT (freed by the caller); its length. */
static size_t say_packed(uint8_t **out, size_t payload_len)
{
    Ehr__Test__EchoRequest req = EHR__TEST__ECHO_REQUEST__INIT;
    req.text = "held";
    uint8_t *payload = ehr_calloc(1, payload_len + 1);
    req.payload.data = payload;
    req.payload.len = payload_len;
    size_t len = ehr__test__echo_request__get_packed_size(&req);
    *out = ehr_malloc(len + 1);
    ehr__test__echo_request__pack(&req, *out);
    ehr_free(payload);
    return len;
}

/* A Say whose message is sent whole but whose request is left open (an
 * upload not half-closed): held unfinished until upload_close. */
struct held {
    struct rpc_client_call *call;
    struct outcome o;
};

static void hold(struct client *c, struct held *h, const uint8_t *message, size_t len)
{
    memset(h, 0, sizeof *h);
    assert_int_equal(rpc_client_upload(c->client, ECHO_SAY, 10000, NULL, on_done, &h->o, &h->call),
                     0);
    assert_int_equal(rpc_client_upload_send(h->call, message, len), 0);
}

/* The request budgets' refusals (invariants 10, 14, 19): all 0 but LIMIT's (when not NULL): WANT.
 */
static void budget_refusals_are(const struct fixture *f, const char *limit, uint64_t want)
{
    static const char *const budgets[] = {
        "connection_request_bytes_max", "unfinished_bytes_per_address_max",
        "unfinished_bytes_per_certificate_max", "unfinished_bytes_max"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(budgets); i++)
        assert_int_equal(refused(f, budgets[i]),
                         limit != NULL && strcmp(limit, budgets[i]) == 0 ? want : 0);
}

/* Invariant 19 of rpc/server.c: under mutual TLS, unfinished request bytes
 * are bounded per client certificate over all its connections, from
 * however many addresses. With room for three held messages per
 * certificate and more per connection and per address: two held on one
 * connection from 127.0.0.1 and one on a second from 127.0.0.2 fill it
 * exactly; one more request with that certificate (whose connection and
 * address have room of their own) is refused RESOURCE_EXHAUSTED naming the
 * certificate, while another certificate's held request and call are
 * served; once the held ones finish, the first certificate is served again. */
static void test_unfinished_bytes_per_certificate_edge(void **state)
{
    uint8_t *big;
    size_t big_len = say_packed(&big, 32000);
    struct rpc_tls_server_files sf = plain_server();
    sf.client_ca_file = cert("ca.pem");
    struct rpc_server_config config = {.message_bytes_max = big_len,
                                       .connection_request_bytes_max = 4 * big_len,
                                       .unfinished_bytes_per_address_max = 8 * big_len,
                                       .unfinished_bytes_per_certificate_max = 3 * big_len};
    struct fixture f;
    server_start(&f, &sf, &config);
    struct relay relay;
    relay_start(&f, &relay, "127.0.0.2");
    struct rpc_tls_client_files one = {
        .ca_file = cert("ca.pem"), .cert_file = cert("client.pem"), .key_file = cert("client.key")};
    struct rpc_tls_client_files two = {.ca_file = cert("ca.pem"),
                                       .cert_file = cert("client2.pem"),
                                       .key_file = cert("client2.key")};
    struct client first, second, other;
    struct outcome o;
    /* One certificate from 127.0.0.1 and from 127.0.0.2, each connection used once. */
    assert_int_equal(client_start(&f, &first, "127.0.0.1", &one), 0);
    say(&f, &first, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    uint16_t port = f.port;
    f.port = relay.port;
    assert_int_equal(client_start(&f, &second, "127.0.0.1", &one), 0);
    f.port = port;
    say(&f, &second, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    /* Held to the certificate's edge exactly: two on the first, one on the second. */
    struct held h[3];
    hold(&first, &h[0], big, big_len);
    hold(&first, &h[1], big, big_len);
    hold(&second, &h[2], big, big_len);
    run_for(&f, 200);
    for (int i = 0; i < 3; i++)
        assert_false(h[i].o.done);
    budget_refusals_are(&f, NULL, 0);
    /* One more with it, on the second (its connection and 127.0.0.2 have room). */
    say(&f, &second, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(o.message, "your certificate"));
    budget_refusals_are(&f, "unfinished_bytes_per_certificate_max", 1);
    /* Meanwhile another certificate, from 127.0.0.1, holds a request and is served. */
    assert_int_equal(client_start(&f, &other, "127.0.0.1", &two), 0);
    say(&f, &other, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    struct held oh;
    hold(&other, &oh, big, big_len);
    run_for(&f, 100);
    assert_false(oh.o.done);
    say(&f, &other, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    budget_refusals_are(&f, "unfinished_bytes_per_certificate_max", 1);
    /* The held requests finish: their bytes come back, the first certificate is served again. */
    rpc_client_upload_close(oh.call);
    run_until(&f.loop, &oh.o.done);
    assert_int_equal(oh.o.status, RPC_STATUS_OK);
    for (int i = 0; i < 3; i++) {
        rpc_client_upload_close(h[i].call);
        run_until(&f.loop, &h[i].o.done);
        assert_int_equal(h[i].o.status, RPC_STATUS_OK);
    }
    say(&f, &second, &o, 10);
    assert_int_equal(o.status, RPC_STATUS_OK);
    /* And with as much held again: the budget came back whole. */
    hold(&second, &h[0], big, big_len);
    hold(&second, &h[1], big, big_len);
    hold(&first, &h[2], big, big_len);
    run_for(&f, 200);
    for (int i = 0; i < 3; i++)
        assert_false(h[i].o.done);
    budget_refusals_are(&f, "unfinished_bytes_per_certificate_max", 1);
    /* The connections close with requests held: their charges go back with them. */
    client_stop(&f, &first);
    client_stop(&f, &second);
    client_stop(&f, &other);
    run_until_connections(&f, 0);
    relay_stop(&f, &relay);
    server_stop(&f);
    ehr_free(big);
}

/* Without mutual TLS no certificate is counted: past the certificates' cap
 * clients without one are served. */
static void test_connections_per_certificate_not_counted_without_mutual_tls(void **state)
{
    struct fixture f;
    struct rpc_tls_server_files sf = plain_server();
    struct rpc_server_config config = {.connections_per_certificate_max = 1};
    server_start(&f, &sf, &config);
    struct rpc_tls_client_files cf = {.ca_file = cert("ca.pem")};
    struct client c[3];
    struct outcome o;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(client_start(&f, &c[i], "127.0.0.1", &cf), 0);
        say(&f, &c[i], &o, 10);
        assert_int_equal(o.status, RPC_STATUS_OK);
    }
    assert_int_equal(refused(&f, "connections_per_certificate_max"), 0);
    for (int i = 0; i < 3; i++)
        client_stop(&f, &c[i]);
    server_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_client_with_the_ca_is_served),
        cmocka_unit_test(test_tls_client_without_the_ca_is_refused),
        cmocka_unit_test(test_tls_server_name_must_match),
        cmocka_unit_test(test_mutual_tls_admits_only_certificates_of_the_client_ca),
        cmocka_unit_test(test_cleartext_client_on_a_tls_port_fails_cleanly),
        cmocka_unit_test(test_tls_client_on_a_cleartext_port_fails_cleanly),
        cmocka_unit_test(test_tls_reload_serves_new_connections_and_keeps_old_on_error),
        cmocka_unit_test(test_tls_files_refused_with_a_reason_and_never_a_key),
        cmocka_unit_test(test_tls_failed_handshakes_logged_once_per_interval),
        cmocka_unit_test(test_tls_handshake_bounded_by_first_request_deadline_and_address_limit),
        cmocka_unit_test(test_tls_handshakes_per_turn_bounded_and_all_served),
        cmocka_unit_test(test_connections_per_certificate_edge),
        cmocka_unit_test(test_connections_per_certificate_not_counted_without_mutual_tls),
        cmocka_unit_test(test_unfinished_bytes_per_certificate_edge),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
