/*
 * p2p_test_util.c - the helpers of p2p_test_util.h: log capture, deadline
 * runner, recording test nodes and the raw peer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2p_test_util.h"

/* ---- log capture ---- */

enum { TLOG_BYTES_MAX = 1 << 20 };

static char tlog_buf[TLOG_BYTES_MAX];
static size_t tlog_len;
static bool tlog_verbose;

static void tlog_sink(void *ctx, enum ehr_log_level level, const char *line)
{
    size_t n = strlen(line);
    if (tlog_verbose)
        fprintf(stderr, "%s\n", line);
    if (tlog_len + n + 2 > sizeof tlog_buf)
        return;
    memcpy(tlog_buf + tlog_len, line, n);
    tlog_len += n;
    tlog_buf[tlog_len++] = '\n';
    tlog_buf[tlog_len] = '\0';
}

void tlog_capture(void)
{
    tlog_verbose = getenv("P2P_TEST_VERBOSE") != NULL;
    ehr_log_set_level(EHR_LOG_DEBUG);
    ehr_log_set_sink(tlog_sink, NULL);
    tlog_clear();
}

void tlog_clear(void)
{
    tlog_len = 0;
    tlog_buf[0] = '\0';
}

bool tlog_contains(const char *text)
{
    return strstr(tlog_buf, text) != NULL;
}

size_t tlog_count(const char *text)
{
    size_t count = 0;
    for (const char *at = strstr(tlog_buf, text); at != NULL; at = strstr(at + 1, text))
        count++;
    return count;
}

void tlog_dump(void)
{
    fprintf(stderr, "---- captured log ----\n%s----\n", tlog_buf);
}

/* ---- running the loop ---- */

struct deadline {
    bool expired;
    bool closed;
};

static void on_deadline(uv_timer_t *timer)
{
    ((struct deadline *)timer->data)->expired = true;
}

static void on_deadline_closed(uv_handle_t *handle)
{
    ((struct deadline *)handle->data)->closed = true;
}

static bool run_with_deadline(uv_loop_t *loop, tpred_fn pred, void *ctx, uint64_t timeout_ms)
{
    struct deadline dl = {0};
    uv_timer_t timer;
    uv_timer_init(loop, &timer);
    timer.data = &dl;
    uv_timer_start(&timer, on_deadline, timeout_ms, 0);
    while (!dl.expired && (pred == NULL || !pred(ctx)))
        uv_run(loop, UV_RUN_ONCE);
    bool ok = pred == NULL || pred(ctx);
    uv_close((uv_handle_t *)&timer, on_deadline_closed);
    while (!dl.closed)
        uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

void trun_until(uv_loop_t *loop, tpred_fn pred, void *ctx, uint64_t timeout_ms)
{
    if (!run_with_deadline(loop, pred, ctx, timeout_ms)) {
        tlog_dump();
        fail_msg("condition not reached within %llu ms", (unsigned long long)timeout_ms);
    }
}

bool trun_try(uv_loop_t *loop, tpred_fn pred, void *ctx, uint64_t timeout_ms)
{
    return run_with_deadline(loop, pred, ctx, timeout_ms);
}

void trun_for(uv_loop_t *loop, uint64_t duration_ms)
{
    run_with_deadline(loop, NULL, NULL, duration_ms);
}

/* ---- test nodes ---- */

enum { TMSG_HEADER_BYTES = 12 };

size_t tmsg_make(uint8_t *out, size_t len, uint32_t sender, uint64_t seq)
{
    assert_true(len >= TMSG_HEADER_BYTES);
    memcpy(out, &sender, 4);
    memcpy(out + 4, &seq, 8);
    for (size_t i = TMSG_HEADER_BYTES; i < len; i++)
        out[i] = (uint8_t)(i * 31 + seq * 7 + sender);
    return len;
}

static void tnode_on_message(void *user, const uint8_t peer[P2P_KEY_BYTES], const uint8_t *data,
                             size_t len)
{
    tnode *n = user;
    n->received_count++;
    size_t keep = len < sizeof n->last_message ? len : sizeof n->last_message;
    memcpy(n->last_message, data, keep);
    n->last_message_len = len;
    if (len >= TMSG_HEADER_BYTES) {
        uint32_t sender;
        uint64_t seq;
        memcpy(&sender, data, 4);
        memcpy(&seq, data + 4, 8);
        bool filler_ok = true;
        for (size_t i = TMSG_HEADER_BYTES; i < len && filler_ok; i++)
            filler_ok = data[i] == (uint8_t)(i * 31 + seq * 7 + sender);
        if (sender >= TNODE_PEERS_MAX || seq != n->next_seq[sender] || !filler_ok)
            n->order_broken = true;
        else
            n->next_seq[sender]++;
    }
    if (n->on_message_hook != NULL)
        n->on_message_hook(n, peer, data, len);
}

static void tnode_on_link_up(void *user, const uint8_t peer[P2P_KEY_BYTES])
{
    tnode *n = user;
    n->link_up_count++;
    if (n->on_link_up_hook != NULL)
        n->on_link_up_hook(n, peer);
}

static void tnode_on_link_down(void *user, const uint8_t peer[P2P_KEY_BYTES], int reason,
                               uint64_t unsent)
{
    tnode *n = user;
    n->link_down_count++;
    n->last_down_reason = reason;
    n->last_down_unsent = unsent;
}

static void tnode_on_writable(void *user, const uint8_t peer[P2P_KEY_BYTES])
{
    tnode *n = user;
    n->writable_count++;
}

void tnode_config(tnode *n, p2p_config *config, const char *chain_id)
{
    memset(config, 0, sizeof *config);
    config->node_key = &n->key;
    config->chain_id = chain_id;
    config->handshake_timeout_ms = 2000;
    config->keepalive_interval_ms = 200;
    config->dead_after_ms = 3000;
    config->reconnect_base_ms = 20;
    config->reconnect_max_ms = 400;
    config->callbacks.on_message = tnode_on_message;
    config->callbacks.on_link_up = tnode_on_link_up;
    config->callbacks.on_link_down = tnode_on_link_down;
    config->callbacks.on_writable = tnode_on_writable;
    config->user = n;
}

void tnode_start(tnode *n, uv_loop_t *loop, const ehr_signing_key *key, p2p_config *config)
{
    n->loop = loop;
    if (key != NULL)
        n->key = *key;
    else
        assert_int_equal(ehr_signing_key_generate(&n->key), 0);
    config->node_key = &n->key;
    assert_int_equal(p2p_create(loop, config, &n->p), 0);
    assert_int_equal(p2p_listen(n->p, "127.0.0.1:0"), 0);
    assert_int_equal(p2p_listen_port(n->p, &n->port), 0);
    assert_true(n->port != 0);
    snprintf(n->address, sizeof n->address, "127.0.0.1:%u", (unsigned)n->port);
    n->closed = false;
}

static void tnode_on_closed(void *user)
{
    ((tnode *)user)->closed = true;
}

static bool tpred_tnode_closed(void *n)
{
    return ((tnode *)n)->closed;
}

void tnode_stop(tnode *n)
{
    if (n->p == NULL)
        return;
    p2p_close(n->p, tnode_on_closed);
    n->p = NULL;
    trun_until(n->loop, tpred_tnode_closed, n, 5000);
}

p2p_member tnode_member(const tnode *n)
{
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, n->key.public_key, P2P_KEY_BYTES);
    snprintf(m.address, sizeof m.address, "%s", n->address);
    return m;
}

void tnode_set_members(tnode *n, tnode *const *nodes, size_t count)
{
    p2p_member members[8];
    assert_true(count <= 8);
    for (size_t i = 0; i < count; i++)
        members[i] = tnode_member(nodes[i]);
    assert_int_equal(p2p_set_members(n->p, members, count), 0);
}

bool tnode_link_up(const tnode *n, const tnode *peer)
{
    p2p_link_info info;
    return n->p != NULL && p2p_link_info_get(n->p, peer->key.public_key, &info) == 0 && info.up;
}

/* ---- raw peer ---- */

struct wreq {
    uv_write_t req;
    uint8_t data[];
};

static void rawpeer_on_written(uv_write_t *req, int status)
{
    free(req);
}

void rawpeer_write(rawpeer *rp, const void *data, size_t len)
{
    struct wreq *w = malloc(sizeof *w + len);
    assert_non_null(w);
    memcpy(w->data, data, len);
    if (rp->sent_len + len <= sizeof rp->sent) {
        memcpy(rp->sent + rp->sent_len, data, len);
        rp->sent_len += len;
    }
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&rp->tcp, &buf, 1, rawpeer_on_written);
    if (rc != 0)
        free(w);
}

static int rawpeer_member_check(void *ctx, const uint8_t key[P2P_KEY_BYTES])
{
    return 0;
}

static void rawpeer_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    *buf = uv_buf_init(malloc(65536), 65536);
}

static void rawpeer_send_hs_output(rawpeer *rp)
{
    if (rp->hs.out_len == 0)
        return;
    if (rp->corrupt_auth && rp->hs.state == P2P__HS_AWAIT_AUTH)
        rp->hs.out[rp->hs.out_len - 5] ^= 0x01; /* inside the 64-byte signature */
    if (rp->hold_auth && rp->hs.state == P2P__HS_AWAIT_AUTH) {
        memcpy(rp->held, rp->hs.out, rp->hs.out_len);
        rp->held_len = rp->hs.out_len;
        rp->hs.out_len = 0;
        return;
    }
    rawpeer_write(rp, rp->hs.out, rp->hs.out_len);
    rp->hs.out_len = 0;
}

static void rawpeer_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    rawpeer *rp = stream->data;
    if (nread < 0) {
        rp->eof = true;
        free(buf->base);
        uv_read_stop(stream);
        return;
    }
    if (rp->handshake && !rp->done && rp->hs.state != P2P__HS_FAILED) {
        size_t n = (size_t)nread;
        if (n > sizeof rp->in - rp->in_len)
            n = sizeof rp->in - rp->in_len;
        memcpy(rp->in + rp->in_len, buf->base, n);
        rp->in_len += n;
        for (;;) {
            size_t consumed = 0;
            int rc = p2p__hs_feed(&rp->hs, rp->in, rp->in_len, &consumed);
            memmove(rp->in, rp->in + consumed, rp->in_len - consumed);
            rp->in_len -= consumed;
            if (rc != 0)
                break;
            rawpeer_send_hs_output(rp);
            if (rp->hs.state == P2P__HS_DONE) {
                rp->done = true;
                rp->tx = rp->hs.tx;
                if (!rp->no_confirm && rp->held_len == 0 && /* our auth went out first */
                    memcmp(rp->key->public_key, rp->hs.peer_key, P2P_KEY_BYTES) < 0) {
                    p2p__outbuf ob;
                    memset(&ob, 0, sizeof ob);
                    assert_int_equal(p2p__outbuf_keepalive(&ob, &rp->tx, 1024), 0);
                    rawpeer_write(rp, ob.data, ob.len);
                    p2p__outbuf_free(&ob);
                    rp->confirmed = true;
                }
                if (rp->on_done != NULL)
                    rp->on_done(rp);
                break;
            }
            if (consumed == 0)
                break;
        }
    }
    free(buf->base);
}

static void rawpeer_begin(rawpeer *rp, bool initiator)
{
    uv_read_start((uv_stream_t *)&rp->tcp, rawpeer_alloc, rawpeer_on_read);
    if (rp->handshake) {
        p2p__hs_params params = {
            .initiator = initiator,
            .node_key = rp->key,
            .chain_id = rp->chain_id,
            .expected_peer = rp->expected_peer,
            .member_check = rawpeer_member_check,
        };
        assert_int_equal(p2p__hs_start(&rp->hs, &params), 0);
        rawpeer_send_hs_output(rp);
    }
}

static void rawpeer_on_connect(uv_connect_t *req, int status)
{
    rawpeer *rp = req->data;
    assert_int_equal(status, 0);
    rp->connected = true;
    rawpeer_begin(rp, true);
}

static void rawpeer_on_connection(uv_stream_t *server, int status)
{
    rawpeer *rp = server->data;
    if (status != 0 || rp->accepted)
        return; /* one connection only; later ones wait in the backlog */
    assert_int_equal(uv_tcp_init(rp->loop, &rp->tcp), 0);
    rp->tcp_open = true;
    rp->tcp.data = rp;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&rp->tcp), 0);
    rp->accepted = true;
    rp->connected = true;
    rawpeer_begin(rp, false);
}

void rawpeer_listen(rawpeer *rp, uv_loop_t *loop)
{
    rp->loop = loop;
    assert_int_equal(uv_tcp_init(loop, &rp->server), 0);
    rp->server.data = rp;
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_bind(&rp->server, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&rp->server, 8, rawpeer_on_connection), 0);
    struct sockaddr_storage bound;
    int len = (int)sizeof bound;
    assert_int_equal(uv_tcp_getsockname(&rp->server, (struct sockaddr *)&bound, &len), 0);
    rp->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    rp->listening = true;
}

void rawpeer_connect(rawpeer *rp, uv_loop_t *loop, uint16_t port)
{
    rp->loop = loop;
    assert_int_equal(uv_tcp_init(loop, &rp->tcp), 0);
    rp->tcp_open = true;
    rp->tcp.data = rp;
    rp->connect_req.data = rp;
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", port, &addr), 0);
    assert_int_equal(uv_tcp_connect(&rp->connect_req, &rp->tcp, (const struct sockaddr *)&addr,
                                    rawpeer_on_connect),
                     0);
}

uint8_t *rawpeer_frame(rawpeer *rp, const uint8_t *const *messages, const size_t *lens,
                       size_t count, size_t *len)
{
    p2p__outbuf ob;
    memset(&ob, 0, sizeof ob);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(p2p__outbuf_append(&ob, &rp->tx, messages[i], lens[i], 64 << 20), 0);
    p2p__outbuf_seal(&ob, &rp->tx);
    uint8_t *copy = malloc(ob.len);
    assert_non_null(copy);
    memcpy(copy, ob.data, ob.len);
    *len = ob.len;
    p2p__outbuf_free(&ob);
    return copy;
}

static void rawpeer_on_closed(uv_handle_t *handle)
{
    rawpeer *rp = handle->data;
    rp->closed = true;
}

static void rawpeer_on_server_closed(uv_handle_t *handle)
{
    rawpeer *rp = handle->data;
    rp->listening = false;
}

void rawpeer_close(rawpeer *rp)
{
    if (rp->tcp_open && !rp->closed && !uv_is_closing((uv_handle_t *)&rp->tcp)) {
        uv_close((uv_handle_t *)&rp->tcp, rawpeer_on_closed);
        while (!rp->closed)
            uv_run(rp->loop, UV_RUN_ONCE);
    }
    if (rp->listening) {
        uv_close((uv_handle_t *)&rp->server, rawpeer_on_server_closed);
        while (rp->listening)
            uv_run(rp->loop, UV_RUN_ONCE);
    }
    p2p__hs_wipe(&rp->hs);
}

bool tpred_rawpeer_eof(void *rp)
{
    return ((rawpeer *)rp)->eof;
}

bool tpred_rawpeer_done(void *rp)
{
    return ((rawpeer *)rp)->done;
}

bool tpred_rawpeer_connected(void *rp)
{
    return ((rawpeer *)rp)->connected;
}
