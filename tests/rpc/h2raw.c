/*
 * h2raw.c - see h2raw.h. Blocking I/O with poll(); one thread; test-only.
 */
#include "h2raw.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct h2raw_stream *find(struct h2raw *h, int32_t id)
{
    for (int i = 0; i < h->stream_count; i++)
        if (h->streams[i].id == id)
            return &h->streams[i];
    return NULL;
}

static ssize_t send_cb(nghttp2_session *session, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    struct h2raw *h = user_data;
    return raw_send(h->fd, data, len) == 0 ? (ssize_t)len : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *user_data)
{
    struct h2raw_stream *s = find(user_data, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    char v[1600];
    size_t n = value_len < sizeof v - 1 ? value_len : sizeof v - 1;
    memcpy(v, value, n);
    v[n] = '\0';
    if (name_len == 7 && memcmp(name, ":status", 7) == 0)
        s->http_status = (int)strtol(v, NULL, 10);
    else if (name_len == 11 && memcmp(name, "grpc-status", 11) == 0)
        s->grpc_status = (int)strtol(v, NULL, 10);
    else if (name_len == 12 && memcmp(name, "grpc-message", 12) == 0)
        memcpy(s->grpc_message, v, n + 1);
    else if (name_len > 0 && name[0] != ':' && s->meta_count < H2RAW_META_MAX &&
             name_len < sizeof s->meta[0].name) {
        memcpy(s->meta[s->meta_count].name, name, name_len);
        s->meta[s->meta_count].name[name_len] = '\0';
        size_t vn = n < sizeof s->meta[0].value - 1 ? n : sizeof s->meta[0].value - 1;
        memcpy(s->meta[s->meta_count].value, v, vn);
        s->meta[s->meta_count].value[vn] = '\0';
        s->meta_count++;
    }
    return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                   size_t len, void *user_data)
{
    struct h2raw_stream *s = find(user_data, stream_id);
    if (s == NULL)
        return 0;
    s->data = realloc(s->data, s->data_len + len + 1);
    memcpy(s->data + s->data_len, data, len);
    s->data_len += len;
    return 0;
}

static int on_close(nghttp2_session *session, int32_t stream_id, uint32_t code, void *user_data)
{
    struct h2raw_stream *s = find(user_data, stream_id);
    if (s != NULL) {
        s->closed = true;
        s->close_code = code;
    }
    return 0;
}

static int on_frame(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct h2raw *h = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY)
        h->goaway = true;
    return 0;
}

static ssize_t body_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    struct h2raw_stream *s = source->ptr;
    size_t n = s->body_len - s->body_pos;
    if (n > length)
        n = length;
    if (n > 0)
        memcpy(buf, s->body + s->body_pos, n);
    s->body_pos += n;
    if (s->body_pos == s->body_len) {
        if (!s->end_stream && n == 0)
            return NGHTTP2_ERR_DEFERRED; /* keep our side open, send nothing more */
        if (s->end_stream)
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

int raw_connect(uint16_t port)
{
    return raw_connect_from(0, port);
}

int raw_connect_from(uint32_t source, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    if (source != 0) {
        struct sockaddr_in from = {.sin_family = AF_INET};
        from.sin_addr.s_addr = htonl(source);
        if (bind(fd, (struct sockaddr *)&from, sizeof from) != 0) {
            int err = -errno;
            close(fd);
            return err;
        }
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int raw_send(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t raw_read(int fd, uint8_t *buf, size_t cap, int timeout_ms, bool *eof_seen)
{
    size_t got = 0;
    int64_t end = now_ms() + timeout_ms;
    *eof_seen = false;
    while (got < cap) {
        int left = (int)(end - now_ms());
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            break;
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n <= 0) {
            *eof_seen = true;
            break;
        }
        got += (size_t)n;
    }
    return got;
}

const char *h2raw_meta(const struct h2raw_stream *s, const char *name)
{
    for (int i = 0; i < s->meta_count; i++)
        if (strcmp(s->meta[i].name, name) == 0)
            return s->meta[i].value;
    return NULL;
}

int h2raw_connect(struct h2raw *h, uint16_t port)
{
    return h2raw_connect_from(h, 0, port);
}

int h2raw_connect_from(struct h2raw *h, uint32_t source, uint16_t port)
{
    return h2raw_connect_with(h, source, port, 0);
}

int h2raw_connect_with(struct h2raw *h, uint32_t source, uint16_t port, unsigned flags)
{
    memset(h, 0, sizeof *h);
    h->fd = raw_connect_from(source, port);
    if (h->fd < 0)
        return h->fd;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, send_cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_option *option;
    nghttp2_option_new(&option);
    if (flags & (H2RAW_NO_WINDOW_UPDATE | H2RAW_ZERO_WINDOW))
        nghttp2_option_set_no_auto_window_update(option, 1);
    nghttp2_session_client_new2(&h->session, cb, h, option);
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(cb);
    if (flags & H2RAW_LARGE_WINDOW) {
        nghttp2_settings_entry window = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
                                         NGHTTP2_MAX_WINDOW_SIZE};
        nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, &window, 1);
        nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0,
                                              NGHTTP2_MAX_WINDOW_SIZE);
    } else if (flags & H2RAW_ZERO_WINDOW) {
        nghttp2_settings_entry window = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0};
        nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, &window, 1);
    } else {
        nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, NULL, 0);
    }
    return 0;
}

void h2raw_close(struct h2raw *h)
{
    if (h->session != NULL)
        nghttp2_session_del(h->session);
    if (h->fd >= 0)
        close(h->fd);
    for (int i = 0; i < h->stream_count; i++)
        free(h->streams[i].data);
    memset(h, 0, sizeof *h);
    h->fd = -1;
}

static nghttp2_nv nv(const char *name, const char *value)
{
    nghttp2_nv v = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                    NGHTTP2_NV_FLAG_NONE};
    return v;
}

struct h2raw_stream *h2raw_request(struct h2raw *h, const char *path, const char *const *headers,
                                   const uint8_t *body, size_t body_len, bool end_stream)
{
    if (h->stream_count >= H2RAW_STREAMS_MAX)
        return NULL;
    nghttp2_nv list[32];
    size_t n = 0;
    bool defaults = !(headers && headers[0] && strcmp(headers[0], H2RAW_NO_DEFAULTS) == 0);
    if (defaults) {
        list[n++] = nv(":method", "POST");
        list[n++] = nv(":scheme", "http");
        list[n++] = nv(":authority", "localhost");
        list[n++] = nv(":path", path);
        list[n++] = nv("content-type", "application/grpc");
        list[n++] = nv("te", "trailers");
    }
    for (size_t i = defaults ? 0 : 2; headers && headers[i] && n < 32; i += 2)
        list[n++] = nv(headers[i], headers[i + 1]);
    struct h2raw_stream *s = &h->streams[h->stream_count];
    memset(s, 0, sizeof *s);
    s->grpc_status = -1;
    s->body = body;
    s->body_len = body_len;
    s->end_stream = end_stream;
    nghttp2_data_provider provider = {.source.ptr = s, .read_callback = body_read};
    int32_t id = nghttp2_submit_request(h->session, NULL, list, n, &provider, NULL);
    if (id < 0)
        return NULL;
    s->id = id;
    h->stream_count++;
    return s;
}

bool h2raw_wait(struct h2raw *h, struct h2raw_stream *stream, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    uint8_t buf[16384];
    for (;;) {
        if (nghttp2_session_send(h->session) != 0)
            return stream ? stream->closed : h->eof;
        if (stream ? stream->closed : h->eof)
            return true;
        if (h->eof)
            return false;
        int left = (int)(end - now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = h->fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t n = recv(h->fd, buf, sizeof buf, 0);
        if (n <= 0) {
            h->eof = true;
            continue;
        }
        if (nghttp2_session_mem_recv(h->session, buf, (size_t)n) < 0)
            h->eof = true;
    }
}

size_t h2raw_grpc_frame(uint8_t *out, uint8_t flag, const uint8_t *message, uint32_t len)
{
    out[0] = flag;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    if (len > 0 && message != NULL)
        memcpy(out + 5, message, len);
    return 5 + (size_t)len;
}
