/*
 * bench_rpc.c - unary gRPC calls per second and their latency through our
 * client and server: the server (a handler that answers with the request
 * bytes) runs in a child process, the client in this one keeps N calls in
 * flight on one connection. For comparison in the same run it measures a
 * floor: the same request/response pattern as bare length-prefixed
 * messages over a libuv TCP connection (no HTTP/2, no gRPC), so the ratio
 * shows what the RPC layer costs on this machine under its current load.
 * With --tls it also measures the same calls over TLS 1.3 (a second server
 * in the child, certificates made for the run by make_tls_certs.sh), on a
 * fresh connection after the cleartext run, and prints the ratio.
 *
 * Usage: bench_rpc [--calls M] [--inflight N] [--bytes B] [--pin] [--no-floor] [--tls]
 * Prints figures; judges nothing.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "rpc.h"

#define BENCH_PATH "/bench.Bench/Echo"

struct options {
    uint64_t calls;
    uint32_t inflight;
    uint32_t bytes;
    bool pin;
    bool floor;
    bool tls;
    char certs[64]; /* --tls: the run's certificates (a temporary directory) */
};

static void pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        perror("bench_rpc: sched_setaffinity");
}

/* ---- the server process ---- */

static void echo_handler(struct rpc_call *call, const uint8_t *request, size_t len, void *data)
{
    rpc_call_reply(call, request, len);
}

/* The floor's server: echo every length-prefixed frame back. */
struct floor_conn {
    uv_tcp_t tcp;
    uint8_t buf[1 << 16];
    size_t len;
    uint8_t inbuf[1 << 16];
};

static void floor_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct floor_conn *c = h->data;
    buf->base = (char *)c->inbuf;
    buf->len = sizeof c->inbuf;
}

static void floor_conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void floor_server_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n <= 0) {
        if (n < 0)
            uv_close((uv_handle_t *)s, floor_conn_closed);
        return;
    }
    /* Frames are echoed unchanged: the bytes themselves are the replies. */
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
    if (uv_try_write(s, &out, 1) != n) {
        fprintf(stderr, "bench_rpc: floor server write backed up\n");
        exit(1);
    }
}

static void floor_server_conn(uv_stream_t *listener, int status)
{
    struct floor_conn *c = calloc(1, sizeof *c);
    uv_tcp_init(listener->loop, &c->tcp);
    c->tcp.data = c;
    uv_accept(listener, (uv_stream_t *)&c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, floor_alloc, floor_server_read);
}

static void run_server(int ready_fd, const struct options *opt)
{
    if (opt->pin)
        pin_to(0);
    uv_loop_t *loop = uv_default_loop();
    struct rpc_server *server;
    EHR_ASSERT(rpc_server_new(loop, NULL, &server) == 0);
    EHR_ASSERT(rpc_server_add_unary(server, BENCH_PATH, echo_handler, NULL) == 0);
    EHR_ASSERT(rpc_server_listen(server, "127.0.0.1", 0) == 0);
    /* The same service over TLS, on its own port. */
    struct rpc_server *tls_server;
    EHR_ASSERT(rpc_server_new(loop, NULL, &tls_server) == 0);
    EHR_ASSERT(rpc_server_add_unary(tls_server, BENCH_PATH, echo_handler, NULL) == 0);
    if (opt->tls) {
        char cert[128], key[128];
        snprintf(cert, sizeof cert, "%s/server.pem", opt->certs);
        snprintf(key, sizeof key, "%s/server.key", opt->certs);
        struct rpc_tls_server_files files = {.cert_file = cert, .key_file = key};
        struct rpc_tls *tls;
        ehr_diag why;
        if (rpc_tls_server_new(&files, &tls, &why) != 0) {
            fprintf(stderr, "bench_rpc: %s\n", why.msg);
            exit(1);
        }
        rpc_server_use_tls(tls_server, tls);
    }
    EHR_ASSERT(rpc_server_listen(tls_server, "127.0.0.1", 0) == 0);
    uv_tcp_t floor;
    uv_tcp_init(loop, &floor);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    EHR_ASSERT(uv_tcp_bind(&floor, (struct sockaddr *)&addr, 0) == 0);
    EHR_ASSERT(uv_listen((uv_stream_t *)&floor, 16, floor_server_conn) == 0);
    struct sockaddr_in bound;
    int bound_len = sizeof bound;
    uv_tcp_getsockname(&floor, (struct sockaddr *)&bound, &bound_len);
    uint16_t ports[3] = {rpc_server_port(server), ntohs(bound.sin_port),
                         rpc_server_port(tls_server)};
    EHR_ASSERT(write(ready_fd, ports, sizeof ports) == sizeof ports);
    close(ready_fd);
    uv_run(loop, UV_RUN_DEFAULT); /* until the parent kills us */
}

/* ---- the client process ---- */

struct bench {
    uv_loop_t *loop;
    struct rpc_client *client;
    const struct options *opt;
    uint8_t *request;
    uint64_t started;
    uint64_t finished;
    uint64_t failed;
    uint64_t *latency_ns; /* per call, by start order */
    bool connected;
    bool closed;
};

struct slot {
    struct bench *bench;
    uint64_t index;
    uint64_t start_ns;
};

static void bench_start_one(struct bench *b, struct slot *slot);

static void bench_done(void *data, enum rpc_status status, const char *message,
                       const uint8_t *response, size_t len)
{
    struct slot *slot = data;
    struct bench *b = slot->bench;
    b->latency_ns[slot->index] = uv_hrtime() - slot->start_ns;
    b->finished++;
    if (status != RPC_STATUS_OK || len != b->opt->bytes) {
        if (b->failed++ == 0)
            fprintf(stderr, "bench_rpc: call failed: %s %s\n", rpc_status_name(status), message);
    }
    if (b->started < b->opt->calls)
        bench_start_one(b, slot);
}

static void bench_start_one(struct bench *b, struct slot *slot)
{
    slot->index = b->started++;
    slot->start_ns = uv_hrtime();
    int rv = rpc_client_unary(b->client, BENCH_PATH, b->request, b->opt->bytes, 10000, bench_done,
                              slot, NULL);
    EHR_ASSERT(rv == 0);
}

static void bench_connected(struct rpc_client *client, int status, void *data)
{
    struct bench *b = data;
    if (status != 0) {
        fprintf(stderr, "bench_rpc: connect: %s\n", uv_strerror(status));
        exit(1);
    }
    b->connected = true;
}

static void bench_closed(void *data)
{
    ((struct bench *)data)->closed = true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t calls, uint64_t elapsed_ns, uint64_t *latency)
{
    qsort(latency, calls, sizeof *latency, cmp_u64);
    double seconds = (double)elapsed_ns / 1e9;
    printf("%-22s %10.0f calls/s   p50 %7.1f us   p99 %7.1f us   (%llu calls, %.2f s)\n", what,
           (double)calls / seconds, (double)latency[calls / 2] / 1e3,
           (double)latency[calls * 99 / 100] / 1e3, (unsigned long long)calls, seconds);
}

/* The run's calls on one connection to PORT (over TLS with TLS, a client
 * context; NULL: cleartext). Returns calls per second. */
static double run_rpc(const struct options *opt, uint16_t port, struct rpc_tls *tls)
{
    uv_loop_t *loop = uv_default_loop();
    struct bench b = {.loop = loop, .opt = opt};
    b.request = ehr_calloc(1, opt->bytes + 1);
    memset(b.request, 'r', opt->bytes);
    b.latency_ns = ehr_calloc(opt->calls, sizeof *b.latency_ns);
    struct rpc_client_config config = {.tls = tls};
    EHR_ASSERT(
        rpc_client_connect(loop, "127.0.0.1", port, &config, bench_connected, &b, &b.client) == 0);
    while (!b.connected)
        uv_run(loop, UV_RUN_ONCE);
    /* Warm up the pools and the connection. */
    struct slot *slots = ehr_calloc(opt->inflight, sizeof *slots);
    uint64_t t0 = uv_hrtime();
    for (uint32_t i = 0; i < opt->inflight && b.started < opt->calls; i++) {
        slots[i].bench = &b;
        bench_start_one(&b, &slots[i]);
    }
    while (b.finished < opt->calls)
        uv_run(loop, UV_RUN_ONCE);
    uint64_t elapsed = uv_hrtime() - t0;
    if (b.failed > 0) {
        fprintf(stderr, "bench_rpc: %llu calls failed\n", (unsigned long long)b.failed);
        exit(1);
    }
    char what[64];
    snprintf(what, sizeof what, "rpc%s unary (%u in flight)", tls != NULL ? " tls" : "",
             opt->inflight);
    report(what, opt->calls, elapsed, b.latency_ns);
    rpc_client_close(b.client, bench_closed, &b);
    while (!b.closed)
        uv_run(loop, UV_RUN_ONCE);
    ehr_free(slots);
    ehr_free(b.request);
    ehr_free(b.latency_ns);
    return (double)opt->calls / ((double)elapsed / 1e9);
}

/* ---- the floor: framed request/response over bare libuv TCP ---- */

struct floor_client {
    uv_tcp_t tcp;
    uv_connect_t connect;
    const struct options *opt;
    uint8_t *frames; /* inflight request frames, written in one go per refill */
    uint64_t sent;
    uint64_t received;
    size_t partial; /* bytes of the current response frame seen */
    uint64_t *start_ns;
    uint64_t *latency_ns;
    uint8_t inbuf[1 << 16];
    bool connected;
};

static void floor_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct floor_client *c = h->data;
    buf->base = (char *)c->inbuf;
    buf->len = sizeof c->inbuf;
}

static void floor_send(struct floor_client *c, uint64_t count)
{
    size_t frame = 4 + c->opt->bytes;
    uint64_t now = uv_hrtime();
    for (uint64_t i = 0; i < count; i++)
        c->start_ns[c->sent + i] = now;
    uv_buf_t buf = uv_buf_init((char *)c->frames, (unsigned)(frame * count));
    if (uv_try_write((uv_stream_t *)&c->tcp, &buf, 1) != (int)buf.len) {
        fprintf(stderr, "bench_rpc: floor client write backed up\n");
        exit(1);
    }
    c->sent += count;
}

static void floor_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct floor_client *c = s->data;
    if (n < 0) {
        fprintf(stderr, "bench_rpc: floor connection lost\n");
        exit(1);
    }
    size_t frame = 4 + c->opt->bytes;
    size_t total = c->partial + (size_t)n;
    uint64_t done = total / frame;
    c->partial = total % frame;
    uint64_t now = uv_hrtime();
    for (uint64_t i = 0; i < done; i++) {
        c->latency_ns[c->received] = now - c->start_ns[c->received];
        c->received++;
    }
    uint64_t refill = c->opt->calls - c->sent;
    if (refill > done)
        refill = done;
    if (refill > 0)
        floor_send(c, refill);
}

static void floor_connected(uv_connect_t *req, int status)
{
    struct floor_client *c = req->data;
    EHR_ASSERT(status == 0);
    c->connected = true;
}

static double run_floor(const struct options *opt, uint16_t port)
{
    uv_loop_t *loop = uv_default_loop();
    struct floor_client *c = ehr_calloc(1, sizeof *c);
    c->opt = opt;
    size_t frame = 4 + opt->bytes;
    c->frames = ehr_calloc(opt->inflight, frame);
    for (uint32_t i = 0; i < opt->inflight; i++) {
        uint8_t *f = c->frames + i * frame;
        f[0] = (uint8_t)(opt->bytes >> 24);
        f[1] = (uint8_t)(opt->bytes >> 16);
        f[2] = (uint8_t)(opt->bytes >> 8);
        f[3] = (uint8_t)opt->bytes;
    }
    c->start_ns = ehr_calloc(opt->calls, sizeof *c->start_ns);
    c->latency_ns = ehr_calloc(opt->calls, sizeof *c->latency_ns);
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&addr, floor_connected);
    while (!c->connected)
        uv_run(loop, UV_RUN_ONCE);
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, floor_client_alloc, floor_client_read);
    uint64_t t0 = uv_hrtime();
    floor_send(c, opt->inflight < opt->calls ? opt->inflight : opt->calls);
    while (c->received < opt->calls)
        uv_run(loop, UV_RUN_ONCE);
    uint64_t elapsed = uv_hrtime() - t0;
    char what[64];
    snprintf(what, sizeof what, "floor tcp (%u in flight)", opt->inflight);
    report(what, opt->calls, elapsed, c->latency_ns);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    ehr_free(c->frames);
    ehr_free(c->start_ns);
    ehr_free(c->latency_ns);
    double rate = (double)opt->calls / ((double)elapsed / 1e9);
    ehr_free(c);
    return rate;
}

static uint64_t parse_number(const char *text, const char *what)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0) {
        fprintf(stderr, "bench_rpc: bad %s: %s\n", what, text);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    struct options opt = {.calls = 200000, .inflight = 64, .bytes = 100, .floor = true};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc)
            opt.calls = parse_number(argv[++i], "--calls");
        else if (strcmp(argv[i], "--inflight") == 0 && i + 1 < argc)
            opt.inflight = (uint32_t)parse_number(argv[++i], "--inflight");
        else if (strcmp(argv[i], "--bytes") == 0 && i + 1 < argc)
            opt.bytes = (uint32_t)parse_number(argv[++i], "--bytes");
        else if (strcmp(argv[i], "--pin") == 0)
            opt.pin = true;
        else if (strcmp(argv[i], "--no-floor") == 0)
            opt.floor = false;
        else if (strcmp(argv[i], "--tls") == 0)
            opt.tls = true;
        else {
            fprintf(stderr, "usage: bench_rpc [--calls M] [--inflight N] [--bytes B] [--pin] "
                            "[--no-floor] [--tls]\n");
            return 2;
        }
    }
    if (opt.tls) {
        snprintf(opt.certs, sizeof opt.certs, "/tmp/ehr-bench-tls-XXXXXX");
        if (mkdtemp(opt.certs) == NULL) {
            perror("bench_rpc: mkdtemp");
            return 1;
        }
        char cmd[256];
        snprintf(cmd, sizeof cmd, "sh %s %s", EHR_TLS_CERTS_SCRIPT, opt.certs);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_rpc: cannot make the TLS certificates\n");
            return 1;
        }
    }
    if (opt.inflight > 4096 || opt.bytes > 60000) {
        fprintf(stderr, "bench_rpc: --inflight at most 4096, --bytes at most 60000\n");
        return 2;
    }
    ehr_log_set_level(EHR_LOG_WARN);
    int fds[2];
    EHR_ASSERT(pipe(fds) == 0);
    pid_t child = fork();
    EHR_ASSERT(child >= 0);
    if (child == 0) {
        close(fds[0]);
        run_server(fds[1], &opt);
        _exit(0);
    }
    close(fds[1]);
    uint16_t ports[3];
    if (read(fds[0], ports, sizeof ports) != sizeof ports) {
        fprintf(stderr, "bench_rpc: the server did not start\n");
        return 1;
    }
    close(fds[0]);
    if (opt.pin)
        pin_to(1);
    printf("bench_rpc: %llu unary calls, %u bytes each way, one connection%s\n",
           (unsigned long long)opt.calls, opt.bytes,
           opt.pin ? ", processes pinned to cpu 0/1" : "");
    double rpc = run_rpc(&opt, ports[0], NULL);
    if (opt.tls) {
        char ca[128];
        snprintf(ca, sizeof ca, "%s/ca.pem", opt.certs);
        struct rpc_tls_client_files files = {.ca_file = ca};
        struct rpc_tls *tls;
        ehr_diag why;
        if (rpc_tls_client_new(&files, &tls, &why) != 0) {
            fprintf(stderr, "bench_rpc: %s\n", why.msg);
            return 1;
        }
        double over_tls = run_rpc(&opt, ports[2], tls);
        rpc_tls_free(tls);
        printf("tls / cleartext: %.2f\n", over_tls / rpc);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", opt.certs);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_rpc: cannot remove %s\n", opt.certs);
    }
    if (opt.floor) {
        double floor = run_floor(&opt, ports[1]);
        printf("rpc / floor: %.2f\n", rpc / floor);
    }
    kill(child, SIGTERM);
    waitpid(child, NULL, 0);
    return 0;
}
