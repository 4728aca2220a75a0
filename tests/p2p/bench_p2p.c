/*
 * bench_p2p - figures for p2p/: two nodes in two processes on loopback.
 *
 *   1. the handshake: CPU time of both sides in memory (pure layer), and
 *      connect + handshake over loopback until link up (median of N);
 *   2. encrypted throughput with 64 KiB messages (MB = 10^6 bytes);
 *   3. the rate of 256-byte messages, which p2p batches into frames;
 *   4. the library floor in the same run: XChaCha20-Poly1305 in place over
 *      64 KiB buffers on one core, and the ratio of (2) to it.
 *
 * The sender keeps its queue full (p2p_send until EHR_EAGAIN, then
 * on_writable); each phase ends when the receiver acknowledges the last
 * message, so the time covers delivery, not just queueing.
 *
 * Usage: bench_p2p [--big-mib N] [--small-count N] [--handshakes N] [--floor-mib N]
 * Not a test: it prints figures and judges nothing (docs/BENCHMARKS.md).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "p2p_internal.h"

enum {
    BIG_MESSAGE_BYTES = 64 << 10,
    SMALL_MESSAGE_BYTES = 256,
    HANDSHAKE_SAMPLES_MAX = 10000,
    PHASE_BIG = 1,
    PHASE_SMALL = 2,
};

static const char CHAIN[] = "bench-chain";

typedef struct options {
    uint64_t big_mib;
    uint64_t small_count;
    uint64_t handshakes;
    uint64_t floor_mib;
} options;

/* ---- helpers ---- */

static int parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v == 0 || v > max)
        return EHR_EINVAL;
    *out = v;
    return 0;
}

static double seconds_since(uint64_t start_ns)
{
    return (double)(uv_hrtime() - start_ns) / 1e9;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            ehr_panic("bench_p2p: pipe write failed");
        p += n;
        len -= (size_t)n;
    }
}

static void read_all(int fd, void *data, size_t len)
{
    char *p = data;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            ehr_panic("bench_p2p: pipe read failed");
        p += n;
        len -= (size_t)n;
    }
}

/* ---- the floor and the in-memory handshake ---- */

static double aead_floor_mb_per_s(uint64_t mib)
{
    static uint8_t buf[BIG_MESSAGE_BYTES + 16];
    uint8_t key[32], nonce[24] = {0};
    randombytes_buf(key, sizeof key);
    randombytes_buf(buf, sizeof buf);
    uint64_t rounds = mib * (1 << 20) / BIG_MESSAGE_BYTES;
    uint64_t start = uv_hrtime();
    for (uint64_t i = 0; i < rounds; i++) {
        unsigned long long tag_len = 0;
        memcpy(nonce, &i, sizeof i);
        crypto_aead_xchacha20poly1305_ietf_encrypt_detached(buf, buf + BIG_MESSAGE_BYTES, &tag_len,
                                                            buf, BIG_MESSAGE_BYTES, NULL, 0, NULL,
                                                            nonce, key);
    }
    return (double)(rounds * BIG_MESSAGE_BYTES) / seconds_since(start) / 1e6;
}

static int allow_all(void *ctx, const uint8_t key[P2P_KEY_BYTES])
{
    return 0;
}

/* Mean microseconds for one whole handshake, both sides, in memory. */
static double handshake_in_memory_us(const ehr_signing_key *a, const ehr_signing_key *b,
                                     uint64_t count)
{
    static p2p__handshake hi, hr;
    p2p__hs_params pi = {
        .initiator = true, .node_key = a, .chain_id = CHAIN, .member_check = allow_all};
    p2p__hs_params pr = {
        .initiator = false, .node_key = b, .chain_id = CHAIN, .member_check = allow_all};
    uint64_t start = uv_hrtime();
    for (uint64_t n = 0; n < count; n++) {
        EHR_ASSERT(p2p__hs_start(&hi, &pi) == 0 && p2p__hs_start(&hr, &pr) == 0);
        for (int round = 0; round < 2; round++) {
            uint8_t oi[P2P__HS_OUT_BYTES_MAX], orr[P2P__HS_OUT_BYTES_MAX];
            size_t li = hi.out_len, lr = hr.out_len, used = 0;
            memcpy(oi, hi.out, li);
            memcpy(orr, hr.out, lr);
            hi.out_len = hr.out_len = 0;
            EHR_ASSERT(p2p__hs_feed(&hr, oi, li, &used) == 0 && used == li);
            EHR_ASSERT(p2p__hs_feed(&hi, orr, lr, &used) == 0 && used == lr);
        }
        EHR_ASSERT(hi.state == P2P__HS_DONE && hr.state == P2P__HS_DONE);
    }
    double us = (double)(uv_hrtime() - start) / 1e3 / (double)count;
    p2p__hs_wipe(&hi);
    p2p__hs_wipe(&hr);
    return us;
}

/* ---- the receiver process ---- */

typedef struct receiver {
    p2p *p;
    uint8_t sender[P2P_KEY_BYTES];
    uint64_t expect[3]; /* per phase */
    uint64_t got;
    int phase;
    bool finished;
} receiver;

static void receiver_on_message(void *user, const uint8_t peer[P2P_KEY_BYTES], const uint8_t *data,
                                size_t len)
{
    receiver *r = user;
    if (len == 0 || data[0] != r->phase)
        ehr_panic("bench_p2p: message of phase %d during phase %d", len ? data[0] : -1, r->phase);
    if (++r->got < r->expect[r->phase])
        return;
    uint8_t ack = (uint8_t)r->phase;
    if (p2p_send(r->p, peer, &ack, 1) != 0)
        ehr_panic("bench_p2p: ack not queued");
    r->got = 0;
    r->phase++;
    if (r->phase > PHASE_SMALL)
        r->finished = true;
}

static void receiver_on_link_down(void *user, const uint8_t peer[P2P_KEY_BYTES], int reason,
                                  uint64_t unsent)
{
    receiver *r = user;
    if (r->finished)
        p2p_close(r->p, NULL);
}

static int run_receiver(const options *o, const ehr_signing_key *key, const ehr_signing_key *sender,
                        int port_fd)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    receiver r = {.phase = PHASE_BIG};
    memcpy(r.sender, sender->public_key, P2P_KEY_BYTES);
    r.expect[PHASE_BIG] = o->big_mib * (1 << 20) / BIG_MESSAGE_BYTES;
    r.expect[PHASE_SMALL] = o->small_count;
    p2p_config config = {
        .node_key = key,
        .chain_id = CHAIN,
        .callbacks = {.on_message = receiver_on_message, .on_link_down = receiver_on_link_down},
        .user = &r,
    };
    uint16_t port = 0;
    if (p2p_create(&loop, &config, &r.p) != 0 || p2p_listen(r.p, "127.0.0.1:0") != 0 ||
        p2p_listen_port(r.p, &port) != 0)
        ehr_panic("bench_p2p: receiver could not listen");
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, sender->public_key, P2P_KEY_BYTES); /* no address: never dialled */
    EHR_ASSERT(p2p_set_members(r.p, &m, 1) == 0);
    write_all(port_fd, &port, sizeof port);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}

/* ---- the sender process ---- */

typedef struct sender {
    uv_loop_t *loop;
    p2p *p;
    p2p_member receiver;
    int phase; /* 0: handshakes */
    uint64_t target[3];
    uint64_t sent;
    uint64_t phase_start_ns;
    double phase_seconds[3];
    bool acked;
    /* Handshakes. */
    uint64_t handshakes_left;
    uint64_t dial_start_ns;
    uint64_t samples[HANDSHAKE_SAMPLES_MAX];
    size_t sample_count;
    bool link_up;
    uint8_t message[BIG_MESSAGE_BYTES];
} sender;

static void sender_pump(sender *s)
{
    size_t len = s->phase == PHASE_BIG ? BIG_MESSAGE_BYTES : SMALL_MESSAGE_BYTES;
    s->message[0] = (uint8_t)s->phase;
    while (s->sent < s->target[s->phase]) {
        int rc = p2p_send(s->p, s->receiver.node_key, s->message, len);
        if (rc == EHR_EAGAIN)
            return; /* on_writable resumes */
        if (rc != 0)
            ehr_panic("bench_p2p: send failed: %s", ehr_errname(rc));
        s->sent++;
    }
}

static void sender_start_phase(sender *s, int phase)
{
    s->phase = phase;
    s->sent = 0;
    s->acked = false;
    s->phase_start_ns = uv_hrtime();
    sender_pump(s);
}

static void sender_dial(sender *s)
{
    s->dial_start_ns = uv_hrtime();
    EHR_ASSERT(p2p_set_members(s->p, &s->receiver, 1) == 0);
}

static void sender_on_link_up(void *user, const uint8_t peer[P2P_KEY_BYTES])
{
    sender *s = user;
    s->link_up = true;
    if (s->phase != 0)
        ehr_panic("bench_p2p: the link flapped during a throughput phase");
    if (s->sample_count < HANDSHAKE_SAMPLES_MAX)
        s->samples[s->sample_count++] = uv_hrtime() - s->dial_start_ns;
    if (--s->handshakes_left > 0) {
        EHR_ASSERT(p2p_set_members(s->p, NULL, 0) == 0); /* closes the link */
        return;
    }
    sender_start_phase(s, PHASE_BIG);
}

static void sender_on_link_down(void *user, const uint8_t peer[P2P_KEY_BYTES], int reason,
                                uint64_t unsent)
{
    sender *s = user;
    s->link_up = false;
    if (s->phase != 0)
        ehr_panic("bench_p2p: the link went down during a throughput phase: %s",
                  ehr_errname(reason));
    if (s->handshakes_left > 0)
        sender_dial(s);
}

static void sender_on_writable(void *user, const uint8_t peer[P2P_KEY_BYTES])
{
    sender_pump(user);
}

static void sender_on_message(void *user, const uint8_t peer[P2P_KEY_BYTES], const uint8_t *data,
                              size_t len)
{
    sender *s = user;
    if (len != 1 || data[0] != s->phase)
        ehr_panic("bench_p2p: unexpected acknowledgement");
    s->phase_seconds[s->phase] = seconds_since(s->phase_start_ns);
    if (s->phase == PHASE_BIG)
        sender_start_phase(s, PHASE_SMALL);
    else
        p2p_close(s->p, NULL);
}

static int run_sender(const options *o, const ehr_signing_key *key,
                      const ehr_signing_key *receiver_key, uint16_t port, sender *s)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    s->loop = &loop;
    s->handshakes_left = o->handshakes;
    s->target[PHASE_BIG] = o->big_mib * (1 << 20) / BIG_MESSAGE_BYTES;
    s->target[PHASE_SMALL] = o->small_count;
    memset(s->message, 0x5a, sizeof s->message);
    memcpy(s->receiver.node_key, receiver_key->public_key, P2P_KEY_BYTES);
    snprintf(s->receiver.address, sizeof s->receiver.address, "127.0.0.1:%u", (unsigned)port);
    p2p_config config = {
        .node_key = key,
        .chain_id = CHAIN,
        .reconnect_base_ms = 1,
        .callbacks = {.on_message = sender_on_message,
                      .on_link_up = sender_on_link_up,
                      .on_link_down = sender_on_link_down,
                      .on_writable = sender_on_writable},
        .user = s,
    };
    if (p2p_create(&loop, &config, &s->p) != 0)
        ehr_panic("bench_p2p: sender could not start");
    sender_dial(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--big-mib N] [--small-count N] [--handshakes N] [--floor-mib N]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    options o = {.big_mib = 1024, .small_count = 4000000, .handshakes = 200, .floor_mib = 1024};
    for (int i = 1; i < argc; i++) {
        uint64_t *field = strcmp(argv[i], "--big-mib") == 0       ? &o.big_mib
                          : strcmp(argv[i], "--small-count") == 0 ? &o.small_count
                          : strcmp(argv[i], "--handshakes") == 0  ? &o.handshakes
                          : strcmp(argv[i], "--floor-mib") == 0   ? &o.floor_mib
                                                                  : NULL;
        if (field == NULL || i + 1 >= argc || parse_u64(argv[++i], 1ull << 40, field) != 0)
            usage(argv[0]);
    }
    if (o.handshakes > HANDSHAKE_SAMPLES_MAX)
        usage(argv[0]);
    if (ehr_crypto_init() != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    ehr_log_set_level(EHR_LOG_WARN);
    /* The sender's key sorts lower, so it dials without the tie-break wait. */
    ehr_signing_key send_key, recv_key;
    do {
        EHR_ASSERT(ehr_signing_key_generate(&send_key) == 0);
        EHR_ASSERT(ehr_signing_key_generate(&recv_key) == 0);
    } while (memcmp(send_key.public_key, recv_key.public_key, P2P_KEY_BYTES) >= 0);

    int port_pipe[2];
    if (pipe(port_pipe) != 0)
        ehr_panic("bench_p2p: pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t child = fork();
    if (child < 0)
        ehr_panic("bench_p2p: fork: %s", strerror(errno));
    if (child == 0) {
        close(port_pipe[0]);
        int rc = run_receiver(&o, &recv_key, &send_key, port_pipe[1]);
        ehr_signing_key_wipe(&recv_key);
        _exit(rc);
    }
    close(port_pipe[1]);
    uint16_t port = 0;
    read_all(port_pipe[0], &port, sizeof port);
    static sender s;
    run_sender(&o, &send_key, &recv_key, port, &s);
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        ehr_panic("bench_p2p: the receiver process failed");

    qsort(s.samples, s.sample_count, sizeof s.samples[0], compare_u64);
    double hs_cpu_us = handshake_in_memory_us(&send_key, &recv_key, o.handshakes);
    double floor = aead_floor_mb_per_s(o.floor_mib);
    uint64_t big_bytes = s.target[PHASE_BIG] * BIG_MESSAGE_BYTES;
    double big_mb_s = (double)big_bytes / s.phase_seconds[PHASE_BIG] / 1e6;
    double small_rate = (double)o.small_count / s.phase_seconds[PHASE_SMALL];
    printf("bench_p2p: two processes on loopback (MB = 10^6 bytes)\n");
    printf("  handshake, both sides in memory (CPU):        %8.1f us\n", hs_cpu_us);
    printf("  connect + handshake to link up, median of %llu: %8.1f us (p90 %.1f us)\n",
           (unsigned long long)s.sample_count, (double)s.samples[s.sample_count / 2] / 1e3,
           (double)s.samples[s.sample_count * 9 / 10] / 1e3);
    printf("  throughput, 64 KiB messages: %llu MiB in %.2f s = %8.0f MB/s\n",
           (unsigned long long)(big_bytes >> 20), s.phase_seconds[PHASE_BIG], big_mb_s);
    printf("  AEAD floor, XChaCha20-Poly1305 64 KiB, 1 core: %8.0f MB/s; p2p/floor = %.2f\n", floor,
           big_mb_s / floor);
    printf("  256 B messages: %llu in %.2f s = %10.0f msgs/s (%.0f MB/s of payload)\n",
           (unsigned long long)o.small_count, s.phase_seconds[PHASE_SMALL], small_rate,
           small_rate * SMALL_MESSAGE_BYTES / 1e6);
    ehr_signing_key_wipe(&send_key);
    ehr_signing_key_wipe(&recv_key);
    return 0;
}
