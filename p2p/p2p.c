/*
 * p2p.c - peer links on libuv: the listener, dialing with back-off, the
 * connection life cycle around the pure handshake (handshake.c), framed I/O
 * with bounded double-buffered write queues (frame.c), keep-alives and dead
 * peer detection, and the member set.
 *
 * Not here: the handshake and frame formats (handshake.c, frame.c), what
 * messages mean (node/).
 *
 * Design notes.
 *
 * A connection (struct conn) moves through
 *   CONNECTING --on_connect--> HANDSHAKE --conn_established--> LIVE
 *                                        --conn_established--> CONFIRMING --conn_go_live--> LIVE
 * and from any of them to CLOSING (conn_close), after which libuv's close
 * callback frees it. Inbound connections start in HANDSHAKE. A member's link
 * is the one LIVE connection member->link points to.
 *
 * | from       | to         | function                        | when |
 * |------------|------------|---------------------------------|----------------------------------------|
 * | CONNECTING | HANDSHAKE  | on_connect                      | TCP connected | | HANDSHAKE  | LIVE
 * | conn_established → conn_go_live | handshake done; we decide; no link yet | | HANDSHAKE  |
 * CONFIRMING | conn_established                | handshake done; the peer decides       | |
 * CONFIRMING | LIVE       | on_read → conn_go_live          | the deciding peer's first frame | |
 * any        | CLOSING    | conn_close                      | refusal, failure, timeout, duplicate
 * |
 *
 * Invariants:
 *   L1 At most one LIVE connection per member, and member->link is it.
 *   L2 One node of each pair decides which connection is their link: the one
 *      with the lower node key (the "decider"). It makes a connection live
 *      only when it has no link, and confirms it by sending its first frame
 *      at once (a keep-alive); any other connection to that peer that
 *      completes its handshake while the link lives is closed, and the link
 *      is probed (a peer that dials while we hold a link may have restarted:
 *      the probe finds a stale link within a round trip). The other node
 *      keeps a completed connection CONFIRMING and makes it live only when
 *      that first frame arrives, replacing its link if it has one (the
 *      decider dropped it). So when both nodes dial at once, both sides agree
 *      on the survivor before either is told the link is up: each side sees
 *      one on_link_up per link, and nothing queued on a link is dropped by
 *      the tie-break.
 *   L3 Messages on one link go out in p2p_send order: they are appended to
 *      the fill buffer, buffers are handed to uv_write in that order, and
 *      libuv completes the writes of one stream in order.
 *   L4 A link's queue (the fill buffer and every buffer being written)
 *      never holds more than queue_bytes_max bytes; p2p_send says EHR_EAGAIN
 *      instead, and on_writable follows once it has drained to half.
 *   L5 No callback fires after p2p_close; a conn is freed only in its close
 *      callback, so a callback that closes the conn it came from is safe.
 *
 * Member keys are kept sorted, so lookups on the send path are a binary
 * search. One timer (the tick) drives handshake timeouts, keep-alives, dead
 * peer detection and dialing; one idle handle flushes the queues once per
 * loop iteration, which batches every message sent during that iteration
 * into as few frames and writes as possible. An idle handle, not a prepare
 * one: a message sent from the caller's own prepare callback would
 * otherwise wait until something woke the loop up (libuv runs a prepare
 * handle started during the prepare phase only in the next iteration, after
 * a poll that blocks), while an active idle handle keeps the poll from
 * blocking.
 *
 * Write buffers: messages are encrypted in place in a fill buffer; once it
 * holds P2P__WRITE_CHUNK_BYTES it is written at once (and a new one takes
 * over), else at the end of the loop iteration. Writes complete chunk by
 * chunk, so the sender refills its queue while the kernel still holds data
 * and freshly encrypted bytes reach the socket while they are in cache.
 * Finished buffers go back to a small per-link pool, so the hot path does
 * not allocate.
 *
 * libuv caveats relied on: uv_close cancels pending writes, whose callbacks
 * run (with UV_ECANCELED) before the close callback; several uv_write calls
 * on one stream complete in order.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "p2p_internal.h"

enum {
    LISTEN_BACKLOG = 128,
    TICK_MS_MIN = 5,
    TICK_MS_MAX = 100,
    BACKOFF_SHIFT_MAX = 20,
    KEY_HEX_BYTES = 2 * P2P_KEY_BYTES + 1,
};

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_CONFIRMING, CONN_LIVE, CONN_CLOSING };

struct member {
    uint8_t key[P2P_KEY_BYTES];
    char address[P2P_ADDRESS_BYTES_MAX];
    bool dialable;                    /* it has an address */
    bool literal;                     /* the address is IP:PORT, parsed once into addr */
    char host[P2P_ADDRESS_BYTES_MAX]; /* a host name, resolved before each dial */
    uint16_t port;
    bool resolving; /* a lookup of host is under way (struct resolve) */
    struct sockaddr_storage addr;
    struct conn *link;    /* the LIVE connection, or NULL (L1) */
    struct conn *dialing; /* our outbound attempt in progress, or NULL */
    uint32_t failures;    /* dial attempts since the last link up */
    uint64_t next_dial_ms;
    bool blocked; /* p2p_send said EHR_EAGAIN; on_writable is due */
};

/* A lookup of a member's host name before a dial. It may outlive the member
 * (it finds it again by key when it completes) and holds p2p_close back
 * until it completes (counted in handles_open). */
struct resolve {
    uv_getaddrinfo_t req;
    p2p *owner;
    struct resolve *prev, *next;
    uint8_t key[P2P_KEY_BYTES];
    char host[P2P_ADDRESS_BYTES_MAX];
};

/* One write buffer: sealed frames, written with one uv_write. */
struct wbuf {
    p2p__outbuf ob;
    uv_write_t req;
    struct conn *conn;
    struct wbuf *next;
};

struct conn {
    p2p *owner;
    struct conn *prev, *next;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t hs_req[2];
    uint8_t hs_out[2][P2P__HS_OUT_BYTES_MAX];
    int hs_writes;
    enum conn_state state;
    bool initiator;
    bool counted_handshake; /* counts toward p->inbound_handshakes */
    struct member *member;  /* known from the start if outbound, from DONE if inbound */
    bool peer_known;        /* peer_key is set: outbound, or inbound after its hello */
    uint8_t peer_key[P2P_KEY_BYTES];
    p2p__handshake hs;
    p2p__cipher tx, rx;
    p2p__reader reader;
    struct wbuf *fill;                      /* takes messages; NULL until needed */
    struct wbuf *flight_head, *flight_tail; /* handed to uv_write, oldest first */
    struct wbuf *spare;                     /* pool of empty buffers */
    size_t spare_count;
    size_t queued_bytes;      /* in fill and in flight (L4) */
    uint64_t queued_messages; /* in fill and in flight */
    int write_error;          /* a uv_write that failed at once; closed by on_flush */
    uint64_t started_ms, last_rx_ms, last_tx_ms;
    uint64_t messages_sent, messages_received;
    char peer_address[P2P_ADDRESS_BYTES_MAX];
};

struct p2p {
    uv_loop_t *loop;
    const ehr_signing_key *node_key;
    char chain_id[P2P_CHAIN_ID_BYTES_MAX + 1];
    uint32_t handshake_timeout_ms, keepalive_interval_ms, dead_after_ms;
    uint32_t reconnect_base_ms, reconnect_max_ms, dial_yield_ms;
    size_t queue_bytes_max;
    p2p_callbacks cb;
    void *user;
    uv_tcp_t *listener; /* own allocation: freed by its close callback */
    bool listening;
    uint16_t port;
    uv_timer_t tick;
    uv_idle_t flush; /* an idle handle: the loop does not block while it is active */
    struct member *members[P2P_MEMBERS_MAX]; /* sorted by key */
    size_t member_count;
    struct conn *conns;       /* every connection, CLOSING ones included */
    struct resolve *resolves; /* host-name lookups under way */
    size_t inbound_handshakes;
    size_t handles_open;
    bool closing;
    void (*on_closed)(void *user);
};

/* ---- small helpers ---- */

static void key_hex(char out[KEY_HEX_BYTES], const uint8_t key[P2P_KEY_BYTES])
{
    ehr_hex_encode(out, key, P2P_KEY_BYTES);
}

static uint64_t now_ms(const p2p *p)
{
    return uv_now(p->loop);
}

/* A character of a host name (RFC 1123: letters, digits, '-', '.'). */
static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

/*
 * Parse TEXT, "a.b.c.d:port", "[v6]:port" or "host.name:port". An IP
 * literal goes into *OUT with *LITERAL true; a host name into HOST (room for
 * P2P_ADDRESS_BYTES_MAX) and *PORT with *LITERAL false, resolved at each
 * dial. Returns 0 or EHR_EINVAL.
 */
static int address_parse_any(const char *text, struct sockaddr_storage *out, bool *literal,
                             char *host_out, uint16_t *port_out)
{
    char host[P2P_ADDRESS_BYTES_MAX];
    const char *port_text;
    size_t host_len;
    bool v6 = text[0] == '[';
    if (v6) {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return EHR_EINVAL;
        host_len = (size_t)(close - text - 1);
        memcpy(host, text + 1, host_len < sizeof host ? host_len : 0);
        port_text = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL)
            return EHR_EINVAL;
        host_len = (size_t)(colon - text);
        if (memchr(text, ':', host_len) != NULL)
            return EHR_EINVAL; /* an IPv6 address needs brackets */
        memcpy(host, text, host_len < sizeof host ? host_len : 0);
        port_text = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof host)
        return EHR_EINVAL;
    host[host_len] = '\0';
    char *end = NULL;
    long port = strtol(port_text, &end, 10);
    if (port_text[0] < '0' || port_text[0] > '9' || *end != '\0' || port < 0 || port > 65535)
        return EHR_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = v6 ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out)
                : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out);
    *literal = rc == 0;
    if (rc == 0 || v6)
        return rc == 0 ? 0 : EHR_EINVAL;
    for (size_t i = 0; i < host_len; i++) {
        if (!host_char(host[i]))
            return EHR_EINVAL;
    }
    if (port == 0 || host[0] == '-' || host[0] == '.')
        return EHR_EINVAL; /* a name is dialled, so it needs a real port */
    memcpy(host_out, host, host_len + 1);
    *port_out = (uint16_t)port;
    return 0;
}

/* Parse an IP:PORT literal (a listen address) into *OUT. Returns 0 or EHR_EINVAL. */
static int address_parse(const char *text, struct sockaddr_storage *out)
{
    bool literal = false;
    char host[P2P_ADDRESS_BYTES_MAX];
    uint16_t port;
    int rc = address_parse_any(text, out, &literal, host, &port);
    return rc == 0 && literal ? 0 : EHR_EINVAL;
}

/* "ip:port" of a socket address, for logs. */
static void address_format(const struct sockaddr_storage *addr, char *out, size_t out_len)
{
    char host[P2P_ADDRESS_BYTES_MAX] = "?";
    int port = 0;
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        uv_ip4_name(a, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(out, out_len, "%s:%d", host, port);
    } else if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        uv_ip6_name(a, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(out, out_len, "[%s]:%d", host, port);
    } else {
        snprintf(out, out_len, "?");
    }
}

static int key_compare(const uint8_t a[P2P_KEY_BYTES], const uint8_t b[P2P_KEY_BYTES])
{
    return memcmp(a, b, P2P_KEY_BYTES);
}

static struct member *member_find(const p2p *p, const uint8_t key[P2P_KEY_BYTES])
{
    size_t lo = 0, hi = p->member_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = key_compare(key, p->members[mid]->key);
        if (cmp == 0)
            return p->members[mid];
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static int member_check(void *ctx, const uint8_t key[P2P_KEY_BYTES])
{
    return member_find(ctx, key) != NULL ? 0 : EHR_EDENIED;
}

static size_t conn_queued_bytes(const struct conn *c)
{
    return c->queued_bytes;
}

/* L2: of two nodes, the one with the lower key decides which connection is their link. */
static bool p2p_decides(const p2p *p, const struct member *m)
{
    return key_compare(p->node_key->public_key, m->key) < 0;
}

static void handle_closed(p2p *p);
static void on_listener_closed(uv_handle_t *handle);
static void on_flush(uv_idle_t *handle);
static void wbuf_free(struct wbuf *w);

/* ---- dialing ---- */

/* Delay before the next dial to M: exponential in its failures, with jitter,
 * plus the yield if our key is the higher one. */
static uint64_t dial_delay_ms(const p2p *p, const struct member *m)
{
    uint32_t shift = m->failures < BACKOFF_SHIFT_MAX ? m->failures : BACKOFF_SHIFT_MAX;
    uint64_t delay = (uint64_t)p->reconnect_base_ms << shift;
    if (delay > p->reconnect_max_ms)
        delay = p->reconnect_max_ms;
    /* Jitter: uniformly in [delay/2, delay], so that peers do not move in step. */
    uint64_t half = delay / 2;
    delay = half + randombytes_uniform((uint32_t)(delay - half + 1));
    if (key_compare(p->node_key->public_key, m->key) > 0)
        delay += p->dial_yield_ms;
    return delay;
}

static void member_schedule_dial(p2p *p, struct member *m)
{
    m->next_dial_ms = now_ms(p) + dial_delay_ms(p, m);
    if (m->failures < UINT32_MAX)
        m->failures++;
}

/* ---- closing ---- */

static void on_conn_closed(uv_handle_t *handle)
{
    struct conn *c = handle->data;
    p2p *p = c->owner;
    EHR_ASSERT(c->state == CONN_CLOSING);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    p2p__reader_free(&c->reader);
    EHR_ASSERT(c->flight_head == NULL); /* libuv ran every write callback first */
    wbuf_free(c->fill);
    while (c->spare != NULL) {
        struct wbuf *w = c->spare;
        c->spare = w->next;
        wbuf_free(w);
    }
    p2p__hs_wipe(&c->hs);
    p2p__cipher_wipe(&c->tx);
    p2p__cipher_wipe(&c->rx);
    ehr_free(c);
    handle_closed(p);
}

/*
 * Close C for REASON (a negative code); WHY is the log text. If C was a
 * member's link, on_link_down fires (unless p2p_close is under way) and a
 * redial is scheduled. Safe to call on a closing conn (nothing happens).
 */
static void conn_close(struct conn *c, int reason, const char *why)
{
    if (c->state == CONN_CLOSING)
        return;
    p2p *p = c->owner;
    bool was_live = c->state == CONN_LIVE;
    enum conn_state old_state = c->state;
    c->state = CONN_CLOSING;
    if (c->counted_handshake) {
        EHR_ASSERT(p->inbound_handshakes > 0);
        p->inbound_handshakes--;
        c->counted_handshake = false;
    }
    struct member *m = c->member;
    c->member = NULL;
    if (m != NULL && m->dialing == c) {
        m->dialing = NULL;
        if (m->link == NULL)
            member_schedule_dial(p, m);
    }
    if (m != NULL && m->link == c) {
        m->link = NULL;
        m->blocked = false;
        member_schedule_dial(p, m);
    }
    uint64_t unsent = c->queued_messages;
    if (why != NULL && !p->closing) {
        char hex[KEY_HEX_BYTES] = "-";
        if (c->peer_known)
            key_hex(hex, c->peer_key);
        bool refused =
            (old_state == CONN_CONNECTING || old_state == CONN_HANDSHAKE) && reason != EHR_EEXIST;
        ehr_log(refused ? EHR_LOG_WARN : EHR_LOG_INFO,
                refused ? "p2p handshake refused" : "p2p connection closed",
                "reason=\"%s\" err=%s peer=%s addr=%s dir=%s unsent=%llu", why, ehr_errname(reason),
                hex, c->peer_address, c->initiator ? "out" : "in",
                (unsigned long long)(was_live ? unsent : 0));
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    if (was_live && !p->closing && p->cb.on_link_down != NULL)
        p->cb.on_link_down(p->user, c->peer_key, reason, unsent);
}

/* ---- writing ---- */

enum {
    /* A fill buffer is written once it holds this much. */
    P2P__WRITE_CHUNK_BYTES = 256 << 10,
    /* Room a fill buffer may need: a chunk minus one byte, then a maximal
     * message in a frame of its own, and the open frame's tag. */
    WBUF_CAPACITY_MAX =
        P2P__WRITE_CHUNK_BYTES + P2P__LENGTH_BYTES + P2P_FRAME_BYTES_MAX + 2 * P2P__TAG_BYTES,
    /* Empty buffers kept per link while busy; all are freed once idle. */
    WBUF_SPARE_MAX = 8,
};

static void wbuf_free(struct wbuf *w)
{
    if (w == NULL)
        return;
    p2p__outbuf_free(&w->ob);
    ehr_free(w);
}

/* The fill buffer of C, taken from the pool or made. */
static struct wbuf *conn_fill(struct conn *c)
{
    if (c->fill != NULL)
        return c->fill;
    struct wbuf *w = c->spare;
    if (w != NULL) {
        c->spare = w->next;
        c->spare_count--;
    } else {
        w = ehr_calloc(1, sizeof *w);
    }
    w->conn = c;
    w->next = NULL;
    w->req.data = w;
    c->fill = w;
    return w;
}

static void on_wbuf_written(uv_write_t *req, int status);

/* Seal the fill buffer and hand it to uv_write. A failure to start the write
 * is recorded and acted on by on_flush (never a callback from here). */
static void conn_write(struct conn *c)
{
    struct wbuf *w = c->fill;
    if (w == NULL || w->ob.len == 0 || c->write_error != 0)
        return;
    EHR_ASSERT(c->state == CONN_LIVE);
    size_t before = w->ob.len;
    p2p__outbuf_seal(&w->ob, &c->tx);
    c->queued_bytes += w->ob.len - before;
    uv_buf_t buf = uv_buf_init((char *)w->ob.data, (unsigned)w->ob.len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_wbuf_written);
    if (rc != 0) {
        c->write_error = rc;
        if (!uv_is_active((uv_handle_t *)&c->owner->flush))
            uv_idle_start(&c->owner->flush, on_flush);
        return;
    }
    c->fill = NULL;
    if (c->flight_tail != NULL)
        c->flight_tail->next = w;
    else
        c->flight_head = w;
    c->flight_tail = w;
    c->last_tx_ms = now_ms(c->owner);
}

static void on_wbuf_written(uv_write_t *req, int status)
{
    struct wbuf *w = req->data;
    struct conn *c = w->conn;
    p2p *p = c->owner;
    EHR_ASSERT(c->flight_head == w); /* libuv completes one stream's writes in order (L3) */
    c->flight_head = w->next;
    if (c->flight_head == NULL)
        c->flight_tail = NULL;
    EHR_ASSERT(c->queued_bytes >= w->ob.len && c->queued_messages >= w->ob.message_count);
    c->queued_bytes -= w->ob.len;
    c->queued_messages -= w->ob.message_count;
    if (c->state == CONN_CLOSING || c->spare_count >= WBUF_SPARE_MAX) {
        wbuf_free(w);
    } else {
        p2p__outbuf_reset(&w->ob);
        w->next = c->spare;
        c->spare = w;
        c->spare_count++;
    }
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        conn_close(c, status, "write failed");
        return;
    }
    struct member *m = c->member;
    if (m != NULL && m->blocked && conn_queued_bytes(c) <= p->queue_bytes_max / 2) {
        m->blocked = false;
        if (p->cb.on_writable != NULL)
            p->cb.on_writable(p->user, c->peer_key);
    }
}

/* Queue a keep-alive on C if nothing else is queued. */
static void conn_keepalive(struct conn *c)
{
    if (c->queued_bytes != 0)
        return;
    struct wbuf *w = conn_fill(c);
    if (p2p__outbuf_keepalive(&w->ob, &c->tx, WBUF_CAPACITY_MAX) != 0)
        return;
    c->queued_bytes += w->ob.len;
    conn_write(c);
}

/* Free the pooled buffers of an idle link. */
static void conn_trim(struct conn *c)
{
    while (c->spare != NULL) {
        struct wbuf *w = c->spare;
        c->spare = w->next;
        wbuf_free(w);
    }
    c->spare_count = 0;
    if (c->fill != NULL && c->fill->ob.len == 0) {
        wbuf_free(c->fill);
        c->fill = NULL;
    }
}

static void on_flush(uv_idle_t *handle)
{
    p2p *p = handle->data;
    uv_idle_stop(&p->flush);
    for (struct conn *c = p->conns; c != NULL && !p->closing; c = c->next) {
        if (c->state != CONN_LIVE)
            continue;
        if (c->write_error != 0)
            conn_close(c, c->write_error, "write failed");
        else
            conn_write(c);
    }
}

static void on_hs_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state != CONN_CLOSING && status < 0)
        conn_close(c, status, "write failed");
}

/* Write the handshake's pending output, if any. */
static void conn_send_handshake(struct conn *c)
{
    if (c->hs.out_len == 0)
        return;
    EHR_ASSERT(c->hs_writes < 2);
    int i = c->hs_writes++;
    memcpy(c->hs_out[i], c->hs.out, c->hs.out_len);
    uv_buf_t buf = uv_buf_init((char *)c->hs_out[i], (unsigned)c->hs.out_len);
    c->hs.out_len = 0;
    c->hs_req[i].data = c;
    int rc = uv_write(&c->hs_req[i], (uv_stream_t *)&c->tcp, &buf, 1, on_hs_written);
    if (rc != 0)
        conn_close(c, rc, "write failed");
}

/* ---- reading ---- */

static void conn_established(struct conn *c);

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = handle->data;
    size_t capacity_min = c->state == CONN_LIVE || c->state == CONN_CONFIRMING
                              ? (size_t)P2P__READ_BYTES
                              : (size_t)P2P__READ_HANDSHAKE_BYTES;
    uint8_t *space = NULL;
    size_t space_len = 0;
    if (c->state == CONN_CLOSING ||
        p2p__reader_space(&c->reader, capacity_min, &space, &space_len) != 0) {
        *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init((char *)space, (unsigned)(space_len > UINT32_MAX ? UINT32_MAX : space_len));
}

/* Deliver the messages of one frame body. Returns 0, or a negative code
 * after which C must be closed; 1 if C or P closed under a callback. */
static int conn_deliver(struct conn *c, const uint8_t *body, size_t body_len)
{
    p2p *p = c->owner;
    size_t pos = 0;
    const uint8_t *msg = NULL;
    size_t msg_len = 0;
    int rc;
    while ((rc = p2p__body_next(body, body_len, &pos, &msg, &msg_len)) == 1) {
        c->messages_received++;
        p->cb.on_message(p->user, c->peer_key, msg, msg_len);
        if (c->state != CONN_LIVE || p->closing)
            return 1;
    }
    return rc;
}

/* Run the handshake over the bytes read so far. Returns true if C is LIVE or
 * CONFIRMING afterwards, with bytes possibly left for frames. */
static bool conn_handshake_step(struct conn *c)
{
    while (c->state == CONN_HANDSHAKE) {
        size_t avail = 0;
        const uint8_t *bytes = p2p__reader_bytes(&c->reader, &avail);
        size_t consumed = 0;
        int rc = p2p__hs_feed(&c->hs, bytes, avail, &consumed);
        p2p__reader_consume(&c->reader, consumed);
        if (!c->peer_known && (c->hs.state == P2P__HS_AWAIT_AUTH || c->hs.state == P2P__HS_DONE)) {
            memcpy(c->peer_key, c->hs.peer_key, P2P_KEY_BYTES);
            c->peer_known = true;
        }
        if (rc != 0) {
            conn_close(c, rc, c->hs.reason != NULL ? c->hs.reason : "handshake failed");
            return false;
        }
        conn_send_handshake(c);
        if (c->state == CONN_CLOSING)
            return false;
        if (c->hs.state == P2P__HS_DONE) {
            conn_established(c);
            return c->state == CONN_LIVE || c->state == CONN_CONFIRMING;
        }
        if (consumed == 0)
            return false;
    }
    return c->state == CONN_LIVE || c->state == CONN_CONFIRMING;
}

static bool conn_go_live(struct conn *c);

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = stream->data;
    if (c->state == CONN_CLOSING || nread == 0)
        return;
    if (nread < 0) {
        bool eof = nread == UV_EOF;
        const char *why = c->state == CONN_LIVE         ? "peer closed the connection"
                          : c->state == CONN_CONFIRMING ? "peer kept another connection"
                                                        : "peer closed during handshake";
        conn_close(c, eof ? EHR_ECLOSED : (int)nread, eof ? why : "read failed");
        return;
    }
    p2p__reader_commit(&c->reader, (size_t)nread);
    c->last_rx_ms = now_ms(c->owner);
    if (c->state == CONN_HANDSHAKE && !conn_handshake_step(c))
        return;
    while (c->state == CONN_LIVE || c->state == CONN_CONFIRMING) {
        uint8_t *body = NULL;
        size_t body_len = 0;
        int rc = p2p__reader_frame(&c->reader, &c->rx, &body, &body_len);
        if (rc == 0)
            return;
        if (rc < 0) {
            conn_close(c, rc,
                       rc == EHR_ETOOBIG ? "frame over the size limit"
                                         : "frame failed authentication");
            return;
        }
        /* L2: the deciding peer's first frame confirms the connection. */
        if (c->state == CONN_CONFIRMING && !conn_go_live(c))
            return;
        rc = conn_deliver(c, body, body_len);
        if (rc < 0)
            conn_close(c, rc, "malformed frame body");
        if (rc != 0)
            return;
    }
}

/* ---- the connection life cycle ---- */

static struct conn *conn_new(p2p *p, bool initiator)
{
    struct conn *c = ehr_calloc(1, sizeof *c);
    c->owner = p;
    c->initiator = initiator;
    c->started_ms = now_ms(p);
    snprintf(c->peer_address, sizeof c->peer_address, "?");
    int rc = uv_tcp_init(p->loop, &c->tcp);
    EHR_ASSERT(rc == 0); /* only fails for a bad loop or flags */
    c->tcp.data = c;
    c->connect_req.data = c;
    p->handles_open++;
    c->next = p->conns;
    if (p->conns != NULL)
        p->conns->prev = c;
    p->conns = c;
    return c;
}

/* Start the handshake on a connected socket. */
static void conn_start_handshake(struct conn *c)
{
    p2p *p = c->owner;
    c->state = CONN_HANDSHAKE;
    uv_tcp_nodelay(&c->tcp, 1);
    p2p__hs_params params = {
        .initiator = c->initiator,
        .node_key = p->node_key,
        .chain_id = p->chain_id,
        .expected_peer = c->initiator ? c->member->key : NULL,
        .member_check = member_check,
        .member_ctx = p,
    };
    int rc = p2p__reader_init(&c->reader, P2P__READ_HANDSHAKE_BYTES);
    if (rc == 0)
        rc = p2p__hs_start(&c->hs, &params);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_close(c, rc, "handshake could not start");
        return;
    }
    conn_send_handshake(c);
}

/*
 * Make C, which completed its handshake, its member's link (L1, L2): close
 * the link it replaces, and any dial of ours still under way, then tell the
 * caller. The decider sends its confirmation (the link's first frame) first.
 * Returns true if C is LIVE afterwards, false if a callback closed it or P.
 */
static bool conn_go_live(struct conn *c)
{
    p2p *p = c->owner;
    struct member *m = c->member;
    EHR_ASSERT(c->state == CONN_HANDSHAKE || c->state == CONN_CONFIRMING);
    EHR_ASSERT(m != NULL);
    if (m->dialing == c)
        m->dialing = NULL;
    if (m->dialing != NULL)
        conn_close(m->dialing, EHR_EEXIST, "superseded by the confirmed connection");
    struct conn *old = m->link;
    if (old != NULL) {
        /* Only the other node keeps a link when a new one is confirmed: the
         * decider confirms a connection only when it holds no link. */
        EHR_ASSERT(!p2p_decides(p, m));
        conn_close(old, EHR_EEXIST, "replaced by the connection the peer confirmed");
        if (c->state == CONN_CLOSING || p->closing)
            return false; /* a callback closed c or everything */
    }
    EHR_ASSERT(m->link == NULL);
    c->state = CONN_LIVE;
    m->link = c;
    m->failures = 0;
    m->blocked = false;
    c->last_rx_ms = c->last_tx_ms = now_ms(p);
    if (p2p_decides(p, m))
        conn_keepalive(c); /* the confirmation: nothing else is queued yet */
    char hex[KEY_HEX_BYTES];
    key_hex(hex, c->peer_key);
    ehr_log(EHR_LOG_INFO, "p2p link up", "peer=%s addr=%s dir=%s", hex, c->peer_address,
            c->initiator ? "out" : "in");
    if (p->cb.on_link_up != NULL)
        p->cb.on_link_up(p->user, c->peer_key);
    return c->state == CONN_LIVE && !p->closing;
}

/* The handshake of C is DONE: make it the member's link, wait for the
 * deciding peer to confirm it, or close it as a duplicate (L1, L2). */
static void conn_established(struct conn *c)
{
    p2p *p = c->owner;
    c->tx = c->hs.tx;
    c->rx = c->hs.rx;
    p2p__hs_wipe(&c->hs);
    if (c->counted_handshake) {
        p->inbound_handshakes--;
        c->counted_handshake = false;
    }
    struct member *m = member_find(p, c->peer_key);
    if (m == NULL || (c->initiator && m != c->member)) {
        conn_close(c, EHR_EDENIED, "key not in member set");
        return;
    }
    c->member = m;
    if (!p2p_decides(p, m)) {
        c->state = CONN_CONFIRMING; /* a dial of ours stays m->dialing until then */
        return;
    }
    if (m->link != NULL) {
        conn_close(c, EHR_EEXIST, "duplicate connection; the live link stays");
        /* The peer dialled although we hold a link: probe it now, so a
         * stale one (the peer restarted) is found within a round trip. */
        conn_keepalive(m->link);
        return;
    }
    conn_go_live(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        struct member *m = c->member;
        ehr_log(m != NULL && m->failures <= 1 ? EHR_LOG_INFO : EHR_LOG_DEBUG, "p2p dial failed",
                "addr=%s err=%s", c->peer_address, ehr_errname(status));
        conn_close(c, status, NULL);
        return;
    }
    conn_start_handshake(c);
}

/* Open a connection to M at M->addr (a literal, or what its name resolved to). */
static void member_connect(p2p *p, struct member *m)
{
    EHR_ASSERT(m->link == NULL && m->dialing == NULL && m->dialable);
    struct conn *c = conn_new(p, true);
    c->member = m;
    memcpy(c->peer_key, m->key, P2P_KEY_BYTES);
    c->peer_known = true;
    snprintf(c->peer_address, sizeof c->peer_address, "%s", m->address);
    m->dialing = c;
    int rc =
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&m->addr, on_connect);
    if (rc != 0) {
        ehr_log(EHR_LOG_INFO, "p2p dial failed", "addr=%s err=%s", m->address, ehr_errname(rc));
        conn_close(c, rc, NULL);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct resolve *r = req->data;
    p2p *p = r->owner;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        p->resolves = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    struct member *m = p->closing ? NULL : member_find(p, r->key);
    if (m != NULL && m->resolving) {
        m->resolving = false;
        if (strcmp(m->host, r->host) != 0) {
            m->next_dial_ms = now_ms(p); /* the address changed meanwhile: look up the new one */
        } else if (status != 0 || res == NULL) {
            ehr_log(m->failures <= 1 ? EHR_LOG_INFO : EHR_LOG_DEBUG, "p2p dial failed",
                    "addr=%s err=\"cannot resolve: %s\"", m->address,
                    status != 0 ? uv_strerror(status) : "no address");
            member_schedule_dial(p, m);
        } else {
            EHR_ASSERT(res->ai_addrlen <= sizeof m->addr);
            memset(&m->addr, 0, sizeof m->addr);
            memcpy(&m->addr, res->ai_addr, res->ai_addrlen);
            if (m->link == NULL && m->dialing == NULL)
                member_connect(p, m);
        }
    }
    if (res != NULL)
        uv_freeaddrinfo(res);
    ehr_free(r);
    handle_closed(p); /* may free p: nothing after this */
}

/* Dial M: at once for an IP literal; a host name is looked up first, at
 * every dial, so a member that moves its node to a new address is found. */
static void member_dial(p2p *p, struct member *m)
{
    EHR_ASSERT(m->link == NULL && m->dialing == NULL && m->dialable);
    EHR_ASSERT(!m->resolving);
    if (m->literal) {
        member_connect(p, m);
        return;
    }
    struct resolve *r = ehr_calloc(1, sizeof *r);
    r->owner = p;
    r->req.data = r;
    memcpy(r->key, m->key, P2P_KEY_BYTES);
    memcpy(r->host, m->host, sizeof r->host);
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)m->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(p->loop, &r->req, on_resolved, m->host, port, &hints);
    if (rc != 0) {
        ehr_free(r);
        ehr_log(EHR_LOG_INFO, "p2p dial failed", "addr=%s err=\"cannot resolve: %s\"", m->address,
                uv_strerror(rc));
        member_schedule_dial(p, m);
        return;
    }
    r->next = p->resolves;
    if (p->resolves != NULL)
        p->resolves->prev = r;
    p->resolves = r;
    p->handles_open++;
    m->resolving = true;
}

static void on_connection(uv_stream_t *server, int status)
{
    p2p *p = server->data;
    if (status < 0) {
        ehr_log(EHR_LOG_WARN, "p2p accept failed", "err=%s", ehr_errname(status));
        return;
    }
    struct conn *c = conn_new(p, false);
    c->state = CONN_HANDSHAKE;
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        conn_close(c, rc, "accept failed");
        return;
    }
    struct sockaddr_storage addr;
    int addr_len = (int)sizeof addr;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&addr, &addr_len) == 0)
        address_format(&addr, c->peer_address, sizeof c->peer_address);
    if (p->inbound_handshakes >= P2P_HANDSHAKES_MAX) {
        conn_close(c, EHR_EFULL, "too many connections in handshake");
        return;
    }
    p->inbound_handshakes++;
    c->counted_handshake = true;
    conn_start_handshake(c);
}

/* ---- the tick: timeouts, keep-alives, dialing ---- */

/* Dial every member whose time has come and that has no connection. */
static void dial_due(p2p *p)
{
    uint64_t now = now_ms(p);
    for (size_t i = 0; i < p->member_count && !p->closing; i++) {
        struct member *m = p->members[i];
        if (m->dialable && m->link == NULL && m->dialing == NULL && !m->resolving &&
            now >= m->next_dial_ms)
            member_dial(p, m);
    }
}

static void on_tick(uv_timer_t *timer)
{
    p2p *p = timer->data;
    uint64_t now = now_ms(p);
    for (struct conn *c = p->conns; c != NULL && !p->closing; c = c->next) {
        if (c->state == CONN_CONNECTING || c->state == CONN_HANDSHAKE ||
            c->state == CONN_CONFIRMING) {
            if (now - c->started_ms >= p->handshake_timeout_ms)
                conn_close(c, EHR_ETIMEDOUT,
                           c->state == CONN_CONNECTING  ? "connect timeout"
                           : c->state == CONN_HANDSHAKE ? "handshake timeout"
                                                        : "confirmation timeout");
        } else if (c->state == CONN_LIVE) {
            if (now - c->last_rx_ms >= p->dead_after_ms) {
                conn_close(c, EHR_ETIMEDOUT, "peer silent");
            } else if (now - c->last_tx_ms >= p->keepalive_interval_ms) {
                if (c->flight_head == NULL)
                    conn_trim(c); /* idle for a while: give the pooled buffers back */
                conn_keepalive(c);
            }
        }
    }
    dial_due(p);
}

/* ---- public API ---- */

static uint32_t or_default(uint32_t value, uint32_t fallback)
{
    return value != 0 ? value : fallback;
}

int p2p_create(uv_loop_t *loop, const p2p_config *config, p2p **out)
{
    if (loop == NULL || config == NULL || out == NULL || config->node_key == NULL ||
        config->chain_id == NULL || config->callbacks.on_message == NULL)
        return EHR_EINVAL;
    size_t chain_len = strlen(config->chain_id);
    if (chain_len == 0 || chain_len > P2P_CHAIN_ID_BYTES_MAX)
        return EHR_EINVAL;
    /* libuv writes with write(2): with SIGPIPE at its default, a peer that
     * closes while we write would kill the process. Changing the process's
     * signal disposition is not a library's business, so insist instead. */
    struct sigaction pipe_action;
    if (sigaction(SIGPIPE, NULL, &pipe_action) != 0 || pipe_action.sa_handler == SIG_DFL) {
        ehr_log(EHR_LOG_ERROR, "p2p needs SIGPIPE ignored", "hint=\"signal(SIGPIPE, SIG_IGN)\"");
        return EHR_EINVAL;
    }
    size_t queue =
        config->queue_bytes_max != 0 ? config->queue_bytes_max : (size_t)P2P_QUEUE_BYTES_DEFAULT;
    if (queue < P2P_QUEUE_BYTES_MIN || queue > P2P_QUEUE_BYTES_MAX)
        return EHR_EINVAL;
    uint32_t hs = or_default(config->handshake_timeout_ms, P2P_HANDSHAKE_TIMEOUT_MS_DEFAULT);
    uint32_t ka = or_default(config->keepalive_interval_ms, P2P_KEEPALIVE_INTERVAL_MS_DEFAULT);
    uint32_t dead = or_default(config->dead_after_ms, P2P_DEAD_AFTER_MS_DEFAULT);
    uint32_t base = or_default(config->reconnect_base_ms, P2P_RECONNECT_BASE_MS_DEFAULT);
    uint32_t max = or_default(config->reconnect_max_ms, P2P_RECONNECT_MAX_MS_DEFAULT);
    uint32_t yield =
        config->dial_yield_ms == P2P_DIAL_YIELD_NONE ? 0 : or_default(config->dial_yield_ms, base);
    if (hs > P2P_TIMING_MS_MAX || ka > P2P_TIMING_MS_MAX || dead > P2P_TIMING_MS_MAX ||
        base > P2P_TIMING_MS_MAX || max > P2P_TIMING_MS_MAX || yield > P2P_TIMING_MS_MAX ||
        base > max || dead <= ka)
        return EHR_EINVAL;

    p2p *p = ehr_calloc(1, sizeof *p);
    p->loop = loop;
    p->node_key = config->node_key;
    memcpy(p->chain_id, config->chain_id, chain_len + 1);
    p->handshake_timeout_ms = hs;
    p->keepalive_interval_ms = ka;
    p->dead_after_ms = dead;
    p->reconnect_base_ms = base;
    p->reconnect_max_ms = max;
    p->dial_yield_ms = yield;
    p->queue_bytes_max = queue;
    p->cb = config->callbacks;
    p->user = config->user;

    uint32_t tick = hs < ka ? hs : ka;
    tick = (base < tick ? base : tick) / 4;
    tick = tick < TICK_MS_MIN ? TICK_MS_MIN : tick > TICK_MS_MAX ? TICK_MS_MAX : tick;
    uv_timer_init(loop, &p->tick);
    p->tick.data = p;
    uv_idle_init(loop, &p->flush);
    p->flush.data = p;
    p->handles_open = 2;
    uv_timer_start(&p->tick, on_tick, tick, tick);
    *out = p;
    return 0;
}

int p2p_listen(p2p *p, const char *address)
{
    if (p->closing)
        return EHR_ECLOSED;
    if (p->listening)
        return EHR_EEXIST;
    struct sockaddr_storage addr;
    if (address == NULL || strnlen(address, P2P_ADDRESS_BYTES_MAX) == P2P_ADDRESS_BYTES_MAX ||
        address_parse(address, &addr) != 0)
        return EHR_EINVAL;
    uv_tcp_t *listener = ehr_malloc(sizeof *listener);
    uv_tcp_init(p->loop, listener);
    listener->data = p;
    p->handles_open++;
    int rc = uv_tcp_bind(listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)listener, LISTEN_BACKLOG, on_connection);
    struct sockaddr_storage bound;
    int bound_len = (int)sizeof bound;
    if (rc == 0)
        rc = uv_tcp_getsockname(listener, (struct sockaddr *)&bound, &bound_len);
    if (rc != 0) {
        uv_close((uv_handle_t *)listener, on_listener_closed);
        return rc;
    }
    p->listener = listener;
    p->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    p->listening = true;
    char text[P2P_ADDRESS_BYTES_MAX];
    address_format(&bound, text, sizeof text);
    ehr_log(EHR_LOG_INFO, "p2p listening", "addr=%s", text);
    return 0;
}

int p2p_listen_port(const p2p *p, uint16_t *port)
{
    if (!p->listening)
        return EHR_ECLOSED;
    *port = p->port;
    return 0;
}

static int member_entry_compare(const void *a, const void *b)
{
    const struct member *const *x = a;
    const struct member *const *y = b;
    return key_compare((*x)->key, (*y)->key);
}

int p2p_set_members(p2p *p, const p2p_member *members, size_t count)
{
    if (p->closing)
        return EHR_ECLOSED;
    if (count > P2P_MEMBERS_MAX)
        return EHR_ETOOBIG;
    if (count > 0 && members == NULL)
        return EHR_EINVAL;
    /* Validate everything before changing anything. */
    for (size_t i = 0; i < count; i++) {
        const p2p_member *e = &members[i];
        if (memchr(e->address, '\0', sizeof e->address) == NULL)
            return EHR_EINVAL;
        struct sockaddr_storage addr;
        bool literal;
        char host[P2P_ADDRESS_BYTES_MAX];
        uint16_t port;
        if (e->address[0] != '\0' &&
            address_parse_any(e->address, &addr, &literal, host, &port) != 0)
            return EHR_EINVAL;
        ehr_public_key parsed;
        if (ehr_public_key_parse(&parsed, e->node_key) != 0)
            return EHR_EINVAL;
        for (size_t j = 0; j < i; j++) {
            if (key_compare(members[j].node_key, e->node_key) == 0)
                return EHR_EINVAL;
        }
    }
    /* Build the new set, reusing the entries of members that stay. */
    struct member *next[P2P_MEMBERS_MAX];
    size_t next_count = 0;
    uint64_t now = now_ms(p);
    for (size_t i = 0; i < count; i++) {
        const p2p_member *e = &members[i];
        if (key_compare(e->node_key, p->node_key->public_key) == 0)
            continue;
        struct member *m = member_find(p, e->node_key);
        if (m == NULL) {
            m = ehr_calloc(1, sizeof *m);
            memcpy(m->key, e->node_key, P2P_KEY_BYTES);
            m->next_dial_ms =
                now + (key_compare(p->node_key->public_key, m->key) > 0 ? p->dial_yield_ms : 0);
        }
        memcpy(m->address, e->address, sizeof m->address);
        m->dialable = e->address[0] != '\0';
        m->host[0] = '\0';
        if (m->dialable) {
            int rc = address_parse_any(m->address, &m->addr, &m->literal, m->host, &m->port);
            EHR_ASSERT(rc == 0); /* validated above */
        }
        next[next_count++] = m;
    }
    qsort(next, next_count, sizeof next[0], member_entry_compare);
    /* Find the members that leave, then install the new set. */
    struct member *gone[P2P_MEMBERS_MAX];
    size_t gone_count = 0;
    for (size_t i = 0; i < p->member_count; i++) {
        struct member *m = p->members[i];
        bool stays = false;
        for (size_t j = 0; j < next_count && !stays; j++)
            stays = next[j] == m;
        if (!stays)
            gone[gone_count++] = m;
    }
    memcpy(p->members, next, next_count * sizeof next[0]);
    p->member_count = next_count;
    /* Close their connections (on_link_down may fire here), then free them. */
    for (size_t i = 0; i < gone_count; i++) {
        struct member *m = gone[i];
        for (struct conn *c = p->conns; c != NULL; c = c->next) {
            if (c->member == m)
                conn_close(c, EHR_EDENIED, "member removed");
        }
        EHR_ASSERT(m->link == NULL && m->dialing == NULL);
        ehr_free(m);
    }
    /* New members are dialled now rather than at the next tick. */
    dial_due(p);
    return 0;
}

int p2p_send(p2p *p, const uint8_t peer[P2P_KEY_BYTES], const uint8_t *data, size_t len)
{
    if (p->closing)
        return EHR_ECLOSED;
    if (len > P2P_MESSAGE_BYTES_MAX)
        return EHR_ETOOBIG;
    if (len > 0 && data == NULL)
        return EHR_EINVAL;
    struct member *m = member_find(p, peer);
    if (m == NULL)
        return EHR_ENOTFOUND;
    struct conn *c = m->link;
    if (c == NULL)
        return EHR_ECLOSED;
    EHR_ASSERT(c->state == CONN_LIVE);
    size_t cost = p2p__outbuf_message_cost(len);
    if (conn_queued_bytes(c) + cost > p->queue_bytes_max || c->write_error != 0) {
        m->blocked = true;
        return EHR_EAGAIN;
    }
    struct wbuf *w = conn_fill(c);
    size_t before = w->ob.len;
    if (p2p__outbuf_append(&w->ob, &c->tx, data, len, WBUF_CAPACITY_MAX) != 0) {
        m->blocked = true; /* only an allocation failure gets here */
        return EHR_EAGAIN;
    }
    c->queued_bytes += w->ob.len - before;
    c->queued_messages++;
    /* L4; the open frame's tag is counted when the frame is sealed. */
    EHR_ASSERT(conn_queued_bytes(c) <= p->queue_bytes_max + P2P__TAG_BYTES);
    c->messages_sent++;
    if (w->ob.len >= P2P__WRITE_CHUNK_BYTES)
        conn_write(c);
    else if (!uv_is_active((uv_handle_t *)&p->flush))
        uv_idle_start(&p->flush, on_flush);
    return 0;
}

int p2p_link_info_get(const p2p *p, const uint8_t peer[P2P_KEY_BYTES], p2p_link_info *info)
{
    const struct member *m = member_find(p, peer);
    if (m == NULL)
        return EHR_ENOTFOUND;
    memset(info, 0, sizeof *info);
    for (const struct conn *c = p->conns; c != NULL; c = c->next) {
        if (c->state != CONN_CLOSING && c->member == m)
            info->connection_count++;
    }
    const struct conn *c = m->link;
    if (c == NULL)
        return 0;
    info->up = true;
    info->initiator = c->initiator;
    info->queued_bytes = conn_queued_bytes(c);
    info->messages_sent = c->messages_sent;
    info->messages_received = c->messages_received;
    return 0;
}

static void handle_closed(p2p *p)
{
    EHR_ASSERT(p->handles_open > 0);
    p->handles_open--;
    if (p->closing && p->handles_open == 0) {
        void (*on_closed)(void *) = p->on_closed;
        void *user = p->user;
        ehr_free(p);
        if (on_closed != NULL)
            on_closed(user);
    }
}

static void on_own_handle_closed(uv_handle_t *handle)
{
    handle_closed(handle->data);
}

static void on_listener_closed(uv_handle_t *handle)
{
    p2p *p = handle->data;
    ehr_free(handle);
    handle_closed(p);
}

void p2p_close(p2p *p, void (*on_closed)(void *user))
{
    EHR_ASSERT(!p->closing);
    p->closing = true;
    p->on_closed = on_closed;
    for (struct conn *c = p->conns; c != NULL; c = c->next)
        conn_close(c, EHR_ECLOSED, NULL);
    /* A lookup that has not started yet is cancelled (its callback says so);
     * one under way completes; either way on_resolved frees it. */
    for (struct resolve *r = p->resolves; r != NULL; r = r->next)
        uv_cancel((uv_req_t *)&r->req);
    for (size_t i = 0; i < p->member_count; i++)
        ehr_free(p->members[i]);
    p->member_count = 0;
    if (p->listening)
        uv_close((uv_handle_t *)p->listener, on_listener_closed);
    uv_close((uv_handle_t *)&p->tick, on_own_handle_closed);
    uv_close((uv_handle_t *)&p->flush, on_own_handle_closed);
}
