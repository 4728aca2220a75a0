/*
 * conn.c - the socket side of one HTTP/2 connection, shared by the server
 * and the client: nghttp2's output is gathered into a bounded buffer and
 * written with one uv_try_write (and uv_write for the rest), so a burst of
 * replies made in one loop iteration leaves in one system call.
 *
 * It does not read (the owners read, because the server checks the client
 * preface and the client does not) and it does not decide when to close.
 *
 * nghttp2 caveats that shape this file:
 *  - nghttp2_session_send() must never be called from inside an nghttp2
 *    callback (it is not reentrant); rpc__conn_flush asserts that.
 *  - The send callback may refuse with NGHTTP2_ERR_WOULDBLOCK; nghttp2 keeps
 *    the frame and offers it again on the next nghttp2_session_send(), which
 *    the owner calls when a write completes. That is our back-pressure: a
 *    peer that does not read cannot make us buffer more than
 *    output_bytes_max plus one frame.
 */
#include <string.h>

#include "rpc_internal.h"

void rpc__conn_init(struct rpc__conn *conn, size_t output_bytes_max)
{
    EHR_ASSERT(output_bytes_max > 0);
    /* Not a memset: the owner may have initialised the tcp handle already. */
    memset(conn->out, 0, sizeof conn->out);
    conn->session = NULL;
    conn->fill_index = 0;
    conn->writing = false;
    conn->socketless = false;
    conn->read_stopped = false;
    conn->in_send = false;
    conn->tls = NULL;
    conn->output_bytes_max = output_bytes_max;
    conn->write_req.data = conn;
}

void rpc__conn_free_buffers(struct rpc__conn *conn)
{
    EHR_ASSERT(!conn->writing);
    rpc__buf_free(&conn->out[0]);
    rpc__buf_free(&conn->out[1]);
    rpc__tls_conn_free(conn);
}

size_t rpc__conn_output_bytes(const struct rpc__conn *conn)
{
    size_t n = conn->out[conn->fill_index].len;
    if (conn->writing)
        n += conn->out[conn->fill_index ^ 1].len;
    return n;
}

uint8_t *rpc__conn_out_reserve(struct rpc__conn *conn, size_t n)
{
    struct rpc__buf *fill = &conn->out[conn->fill_index];
    /* Always accept into an empty buffer so that one frame larger than the
     * bound can still leave; otherwise hold the bound. */
    if (fill->len > 0 && rpc__conn_output_bytes(conn) + n > conn->output_bytes_max)
        return NULL;
    return rpc__buf_reserve(fill, n);
}

ssize_t rpc__conn_send_cb(nghttp2_session *session, const uint8_t *data, size_t len, int flags,
                          void *user_data)
{
    struct rpc__conn *conn = user_data;
    EHR_ASSERT(conn->session == session);
    uint8_t *out = rpc__conn_out_reserve(conn, len);
    if (out == NULL)
        return NGHTTP2_ERR_WOULDBLOCK;
    memcpy(out, data, len);
    rpc__conn_out_commit(conn, len);
    return (ssize_t)len;
}

void rpc__conn_out_commit(struct rpc__conn *conn, size_t n)
{
    struct rpc__buf *fill = &conn->out[conn->fill_index];
    EHR_ASSERT(fill->cap - fill->len >= n);
    fill->len += n;
}

static void conn_write_cb(uv_write_t *req, int status)
{
    struct rpc__conn *conn = req->data;
    EHR_ASSERT(conn->writing);
    conn->writing = false;
    rpc__buf_recycle(&conn->out[conn->fill_index ^ 1]);
    conn->on_write_done(conn, status);
}

int rpc__conn_write_other(struct rpc__conn *conn)
{
    EHR_ASSERT(!conn->writing);
    struct rpc__buf *other = &conn->out[conn->fill_index ^ 1];
    if (other->len == 0)
        return 0;
    uv_buf_t buf = uv_buf_init((char *)other->data, (unsigned)other->len);
    int n = uv_try_write((uv_stream_t *)&conn->tcp, &buf, 1);
    if (n == (int)other->len) {
        other->len = 0;
        return 0;
    }
    if (n < 0 && n != UV_EAGAIN)
        return n;
    size_t done = n > 0 ? (size_t)n : 0;
    buf = uv_buf_init((char *)other->data + done, (unsigned)(other->len - done));
    int rv = uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &buf, 1, conn_write_cb);
    if (rv != 0)
        return rv;
    conn->writing = true; /* conn_write_cb recycles out[fill_index ^ 1] */
    return 0;
}

int rpc__conn_start_write(struct rpc__conn *conn)
{
    if (conn->tls != NULL)
        return rpc__tls_start_write(conn);
    struct rpc__buf *fill = &conn->out[conn->fill_index];
    if (conn->writing || fill->len == 0)
        return 0;
    if (conn->socketless) {
        fill->len = 0;
        return 0;
    }
    uv_buf_t buf = uv_buf_init((char *)fill->data, (unsigned)fill->len);
    int n = uv_try_write((uv_stream_t *)&conn->tcp, &buf, 1);
    if (n == (int)fill->len) {
        fill->len = 0;
        return 0;
    }
    if (n < 0 && n != UV_EAGAIN)
        return n;
    size_t done = n > 0 ? (size_t)n : 0;
    /* The kernel took part of it: the rest goes with uv_write from this
     * buffer, and new output gathers in the other one meanwhile. */
    buf = uv_buf_init((char *)fill->data + done, (unsigned)(fill->len - done));
    int rv = uv_write(&conn->write_req, (uv_stream_t *)&conn->tcp, &buf, 1, conn_write_cb);
    if (rv != 0)
        return rv;
    conn->writing = true;
    conn->fill_index ^= 1;
    EHR_ASSERT(conn->out[conn->fill_index].len == 0);
    return 0;
}

int rpc__conn_flush(struct rpc__conn *conn)
{
    EHR_ASSERT(!conn->in_send); /* never from inside an nghttp2 callback */
    if (conn->session == NULL)
        return rpc__conn_start_write(conn);
    for (;;) {
        conn->in_send = true;
        int rv = nghttp2_session_send(conn->session);
        conn->in_send = false;
        if (rv != 0)
            return rv;
        bool was_full = conn->out[conn->fill_index].len > 0 &&
                        rpc__conn_output_bytes(conn) >= conn->output_bytes_max / 2;
        rv = rpc__conn_start_write(conn);
        if (rv != 0)
            return rv;
        /* If the write drained a full buffer synchronously, nghttp2 may have
         * stopped on WOULDBLOCK with more to give: go round again. */
        if (!was_full || conn->writing || !nghttp2_session_want_write(conn->session))
            break;
    }
    return 0;
}

void rpc__conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct rpc__conn *conn = handle->data;
    buf->base = (char *)conn->read_buf;
    buf->len = RPC__READ_BUFFER_BYTES;
}

int rpc__addr_parse(const char *host, uint16_t port, struct sockaddr_storage *addr)
{
    memset(addr, 0, sizeof *addr);
    if (host == NULL)
        return EHR_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr) == 0)
        return 0;
    return EHR_EINVAL;
}
