/*
 * h2raw.h - a deliberately plain HTTP/2 client for tests: blocking socket,
 * nghttp2 client session, every header and body byte chosen by the test, so
 * it can send what a well-behaved gRPC client never would (no te, a bad
 * content-type, a truncated or oversize message, a compressed flag) and
 * read back exactly what the server answered. Test-only.
 */
#ifndef EHR_TEST_H2RAW_H
#define EHR_TEST_H2RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#define H2RAW_STREAMS_MAX 64

struct h2raw_stream {
    int32_t id;
    int http_status;
    int grpc_status; /* -1 until seen */
    char grpc_message[1600];
    uint8_t *data; /* response body bytes (gRPC-framed) */
    size_t data_len;
    const uint8_t *body; /* request body to send */
    size_t body_len;
    size_t body_pos;
    bool end_stream; /* close our side after the body */
    bool closed;
    uint32_t close_code; /* RST_STREAM code, or 0 */
    /* Other response headers and trailers (custom metadata), the first
     * H2RAW_META_MAX of them, cut to fit. */
    struct {
        char name[32];
        char value[128];
    } meta[4];
    int meta_count;
};
#define H2RAW_META_MAX 4

struct h2raw {
    int fd;
    nghttp2_session *session;
    struct h2raw_stream streams[H2RAW_STREAMS_MAX];
    int stream_count;
    bool eof;
    bool goaway;
};

/* Connect to 127.0.0.1:PORT and queue the preface and SETTINGS. Returns 0 or -errno. */
int h2raw_connect(struct h2raw *h, uint16_t port);
/* The same from the loopback address SOURCE (host order, e.g. 0x7f000002 for
 * 127.0.0.2: a second client address on one machine). */
int h2raw_connect_from(struct h2raw *h, uint32_t source, uint16_t port);
/* The same with FLAGS (bits): H2RAW_NO_WINDOW_UPDATE never gives the
 * server HTTP/2 flow-control credit back (a client that receives and does
 * not read: the server's window to it stays full). */
#define H2RAW_NO_WINDOW_UPDATE 1u
/* H2RAW_LARGE_WINDOW gives the server the largest windows HTTP/2 allows,
 * so only TCP holds it back from a client that does not read its socket. */
#define H2RAW_LARGE_WINDOW 2u
/* H2RAW_ZERO_WINDOW gives each stream a window of 0 and never credits it:
 * the server can send headers and trailers-only answers, but not one DATA
 * byte, so every reply stays queued on the server, unread. */
#define H2RAW_ZERO_WINDOW 4u
int h2raw_connect_with(struct h2raw *h, uint32_t source, uint16_t port, unsigned flags);
/* The value of the response metadata NAME of S, or NULL. */
const char *h2raw_meta(const struct h2raw_stream *s, const char *name);
void h2raw_close(struct h2raw *h);

/*
 * Start a request. HEADERS are extra (name, value) pairs ending with NULL;
 * the usual gRPC headers are added unless the pair list sets
 * H2RAW_NO_DEFAULTS first. BODY (may be NULL) stays owned by the caller and
 * must outlive the stream. Returns the stream, or NULL.
 */
#define H2RAW_NO_DEFAULTS "x-no-defaults"
struct h2raw_stream *h2raw_request(struct h2raw *h, const char *path, const char *const *headers,
                                   const uint8_t *body, size_t body_len, bool end_stream);

/* Send and receive until STREAM (may be NULL: until EOF) closes or TIMEOUT_MS passes. */
bool h2raw_wait(struct h2raw *h, struct h2raw_stream *stream, int timeout_ms);

/* A gRPC frame of MESSAGE into OUT (len + 5 bytes), with FLAG as the compressed flag. */
size_t h2raw_grpc_frame(uint8_t *out, uint8_t flag, const uint8_t *message, uint32_t len);

/* Plain sockets for non-HTTP/2 input. */
int raw_connect(uint16_t port);
/* From SOURCE (host order; 0: any). */
int raw_connect_from(uint32_t source, uint16_t port);
int raw_send(int fd, const void *data, size_t len);
/* Read until EOF or TIMEOUT_MS; returns the byte count; *EOF_SEEN tells which. */
size_t raw_read(int fd, uint8_t *buf, size_t cap, int timeout_ms, bool *eof_seen);

#endif
