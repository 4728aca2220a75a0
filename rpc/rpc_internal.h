/*
 * rpc_internal.h - what the rpc server and client share: byte buffers, the
 * gRPC message reader (5-byte length prefix), grpc-timeout and grpc-message
 * codecs, and the socket side of an HTTP/2 connection (nghttp2 output into a
 * bounded double buffer written with uv_write).
 *
 * Not part of the public API (names carry the rpc__ prefix). Tests and the
 * fuzz target include it to reach the codecs and a socketless connection.
 */
#ifndef EHR_RPC_INTERNAL_H
#define EHR_RPC_INTERNAL_H

#include <stddef.h>

#include <nghttp2/nghttp2.h>

#include "common.h"
#include "rpc.h"

/* gRPC length-prefixed message: 1 flag byte + 4-byte big-endian length. */
#define RPC__PREFIX_BYTES 5u
/* Bytes read from a socket per read callback (one buffer per server/client). */
#define RPC__READ_BUFFER_BYTES (64u * 1024)
/* A pooled buffer keeps at most this capacity when its call is released. */
#define RPC__POOLED_BUFFER_BYTES_MAX (64u * 1024)
/* Call objects kept on a free list for reuse. */
#define RPC__POOLED_CALLS_MAX 1024u
/* Buffer bytes (capacity) the pooled calls keep over all of them; a call
 * recycled past it keeps none. Without it a burst of large answers left
 * RPC__POOLED_CALLS_MAX x 3 buffers x RPC__POOLED_BUFFER_BYTES_MAX (192 MiB)
 * held for reuse for good. */
#define RPC__POOLED_BUFFERS_BYTES_MAX (8u * 1024 * 1024)
/* Longest grpc-timeout value: 8 ASCII digits and a unit. */
#define RPC__TIMEOUT_TEXT_BYTES_MAX 10u

/* ---- intrusive doubly linked lists (circular; an unlinked item points at itself) ---- */

struct rpc__link {
    struct rpc__link *prev;
    struct rpc__link *next;
};

#define RPC__CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void rpc__list_init(struct rpc__link *link)
{
    link->prev = link;
    link->next = link;
}

static inline bool rpc__list_empty(const struct rpc__link *head)
{
    return head->next == head;
}

/* Append ITEM (unlinked) at the tail of HEAD. */
static inline void rpc__list_push(struct rpc__link *head, struct rpc__link *item)
{
    item->prev = head->prev;
    item->next = head;
    head->prev->next = item;
    head->prev = item;
}

/* Unlink ITEM (a no-op if it is not linked). */
static inline void rpc__list_remove(struct rpc__link *item)
{
    item->prev->next = item->next;
    item->next->prev = item->prev;
    item->prev = item;
    item->next = item;
}

static inline bool rpc__list_linked(const struct rpc__link *item)
{
    return item->next != item;
}

/* ---- buffers ---- */

struct rpc__buf {
    uint8_t *data;
    size_t len; /* bytes in use from data[0] */
    size_t cap;
};

/* Make room for EXTRA more bytes (aborts on out-of-memory). Returns data + len. */
uint8_t *rpc__buf_reserve(struct rpc__buf *buf, size_t extra);
/* Drop the contents; keep the memory only up to RPC__POOLED_BUFFER_BYTES_MAX. */
void rpc__buf_recycle(struct rpc__buf *buf);
void rpc__buf_free(struct rpc__buf *buf);

/* ---- codecs ---- */

/*
 * Parse a grpc-timeout value ("100m", "5S", "1H", up to 8 digits and one of
 * H M S m u n) into milliseconds, rounded up and cut to RPC_TIMEOUT_MS_MAX.
 * Returns 0 or EHR_EINVAL.
 */
int rpc__timeout_parse(const uint8_t *text, size_t text_len, uint64_t *out_ms);
/* Format MS (> 0) as a grpc-timeout value into OUT (RPC__TIMEOUT_TEXT_BYTES_MAX + 1). */
void rpc__timeout_format(uint64_t ms, char *out);

/*
 * Percent-encode TEXT (cut to RPC_STATUS_MESSAGE_BYTES_MAX bytes) as a
 * grpc-message value into OUT of OUT_BYTES (>= 3 * RPC_STATUS_MESSAGE_BYTES_MAX
 * + 1 always suffices). Returns the encoded length.
 */
size_t rpc__percent_encode(const char *text, char *out, size_t out_bytes);

/*
 * Is NAME (NAME_LEN bytes) a custom trailing metadata name we send or keep:
 * 1..RPC_TRAILER_NAME_BYTES_MAX of lowercase a-z 0-9 '-', not gRPC's own
 * ("grpc-..."), not a pseudo-header or content-type? And is VALUE one we send
 * or keep: up to RPC_TRAILER_VALUE_BYTES_MAX printable ASCII bytes?
 */
bool rpc__trailer_name_ok(const char *name, size_t name_len);
bool rpc__trailer_value_ok(const char *value, size_t value_len);

/* Copy CALL's custom trailers into OUT (room for RPC_TRAILERS_MAX) during its
 * done callback. Returns how many. */
uint32_t rpc__client_call_trailers_copy(const struct rpc_client_call *call,
                                        struct rpc_trailer *out);

/* Why CLIENT is down ("" while it is not). */
const char *rpc__client_down_reason(const struct rpc_client *client);

/* The value of NAME among TRAILERS[0..COUNT), or NULL. */
const char *rpc__trailer_find(const struct rpc_trailer *trailers, uint32_t count, const char *name);
/* Decode a grpc-message value into OUT (NUL-terminated, cut to fit); bad escapes stay as is. */
void rpc__percent_decode(const uint8_t *in, size_t in_len, char *out, size_t out_bytes);

/* The numeric text of STATUS ("0".."16"), static storage. */
const char *rpc__status_text(enum rpc_status status);
/* Parse a grpc-status value; out-of-range or malformed gives UNKNOWN. */
enum rpc_status rpc__status_parse(const uint8_t *text, size_t text_len);

/* Write the 5-byte message prefix for an uncompressed message of LEN bytes. */
void rpc__prefix_write(uint8_t *out, uint32_t len);

/*
 * Incremental reader of length-prefixed gRPC messages from DATA frames.
 * Each complete message goes to ON_MESSAGE; a message that arrives whole in
 * one chunk is passed straight from the chunk, others are gathered in BODY.
 */
struct rpc__reader {
    uint8_t prefix[RPC__PREFIX_BYTES];
    uint32_t prefix_len; /* bytes of the current prefix seen */
    uint32_t body_len;   /* length announced by the current prefix */
    bool in_body;        /* prefix complete, body incomplete */
    struct rpc__buf body;
    uint32_t message_count; /* complete messages so far */
    uint32_t messages_max;  /* more is an error (0: unlimited); set by the owner */
};

/*
 * A complete message; MESSAGE is valid only during the call (it may point
 * into the caller's chunk or into BODY, which the callee may take by
 * swapping buffers). Return RPC_STATUS_OK, or a status and a reason in DIAG
 * (may be NULL) to stop the reader.
 */
typedef enum rpc_status (*rpc__message_fn)(void *ctx, const uint8_t *message, size_t message_len,
                                           ehr_diag *diag);

/*
 * Request bytes a server may still buffer for a call: its connection's
 * (connection_request_bytes_max), its client address's over all the
 * address's connections (unfinished_bytes_per_address_max; NULL: not
 * counted), under mutual TLS its client certificate's over all the
 * certificate's connections (unfinished_bytes_per_certificate_max; NULL:
 * not counted) and the server's over all connections (unfinished_bytes_max;
 * NULL: not counted). A charge is taken from all of them or from none, and
 * given back to the same ones.
 */
enum rpc__budget_kind {
    RPC__BUDGET_CONNECTION,
    RPC__BUDGET_ADDRESS,
    RPC__BUDGET_SERVER,
    RPC__BUDGET_CERTIFICATE,
};
struct rpc__budget {
    size_t *connection_bytes;
    size_t *address_bytes;
    size_t *certificate_bytes;
    size_t *server_bytes;
    /* Told which budget was short when a charge is refused (NULL: no one),
     * so that the server counts its refusals by limit. */
    void (*refused)(void *ctx, enum rpc__budget_kind kind);
    void *refused_ctx;
};
/* Take N bytes from BUDGET: RPC_STATUS_OK, or RESOURCE_EXHAUSTED with a
 * reason in DIAG (may be NULL) naming the budget that is short. */
enum rpc_status rpc__budget_take(const struct rpc__budget *budget, size_t n, ehr_diag *diag);
/* Give back N bytes taken from BUDGET. */
void rpc__budget_give(const struct rpc__budget *budget, size_t n);

/*
 * Feed LEN bytes. MESSAGE_BYTES_MAX is checked on each prefix before any of
 * its body is buffered; BUDGET (NULL: unlimited) is charged for body
 * bytes gathered and refunded by rpc__reader_release. Returns RPC_STATUS_OK,
 * or the status to end the call with (and a reason in DIAG, may be NULL):
 * INTERNAL for a compressed or invalid flag, RESOURCE_EXHAUSTED over a limit.
 */
enum rpc_status rpc__reader_feed(struct rpc__reader *reader, const uint8_t *data, size_t len,
                                 size_t message_bytes_max, const struct rpc__budget *budget,
                                 rpc__message_fn on_message, void *ctx, ehr_diag *diag);
/* Format a reason into DIAG (may be NULL) and return STATUS (not OK): how the
 * reader and its message callbacks refuse (ehr_diag_fail for a status). */
enum rpc_status rpc__status_fail(ehr_diag *diag, enum rpc_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* True between messages (no partial prefix or body). */
bool rpc__reader_idle(const struct rpc__reader *reader);
/* Reset for reuse; refund what BODY had charged to BUDGET (may be NULL). */
void rpc__reader_release(struct rpc__reader *reader, const struct rpc__budget *budget);

/* ---- the socket side of a connection ---- */

struct rpc__conn;
struct rpc__tls_conn; /* tls.c */
typedef void (*rpc__conn_fn)(struct rpc__conn *conn);
typedef void (*rpc__conn_err_fn)(struct rpc__conn *conn, int err);

/*
 * The transport half of a server connection or of a client. The owner embeds
 * it as its first member, so the nghttp2 user_data and the uv handle's data
 * both lead back to it.
 */
struct rpc__conn {
    uv_tcp_t tcp;
    nghttp2_session *session;
    struct rpc__buf out[2]; /* out[fill_index] gathers, the other is being written */
    unsigned fill_index;
    uv_write_t write_req;
    bool writing;      /* a uv_write is in flight */
    bool socketless;   /* fuzzing: output is dropped, no socket */
    bool read_stopped; /* reading paused because output backed up */
    bool in_send;      /* inside nghttp2_session_send (reentrancy guard) */
    size_t output_bytes_max;
    uint8_t *read_buf;              /* shared by every connection of the owner */
    rpc__conn_err_fn on_write_done; /* status 0 or -errno; owner flushes / closes */
    rpc__conn_fn on_readable_again; /* output drained below half: restart reading */
    /* NULL: cleartext. Else TLS (tls.c): out[fill_index] gathers plaintext,
     * the other buffer holds the ciphertext being written. */
    struct rpc__tls_conn *tls;
};

/* Set up the output side (leaves tcp alone); the owner sets session, callbacks and read_buf. */
void rpc__conn_init(struct rpc__conn *conn, size_t output_bytes_max);
/* Free the output buffers and the TLS state, once the connection's handles are closed. */
void rpc__conn_free_buffers(struct rpc__conn *conn);

/* nghttp2 send_callback: append to the gathering buffer or say WOULDBLOCK. */
ssize_t rpc__conn_send_cb(nghttp2_session *session, const uint8_t *data, size_t len, int flags,
                          void *user_data);

/* Room for N output bytes, or NULL if the output is backed up (try later). */
uint8_t *rpc__conn_out_reserve(struct rpc__conn *conn, size_t n);
/* Count N bytes written at the pointer rpc__conn_out_reserve returned. */
void rpc__conn_out_commit(struct rpc__conn *conn, size_t n);
/* Start writing what was gathered, if no write is in flight (with TLS:
 * sealed first, rpc__tls_start_write). Returns 0, -errno, or EHR_EPROTO. */
int rpc__conn_start_write(struct rpc__conn *conn);
/* Write out[fill_index ^ 1] (the TLS layer's ciphertext), no write being in flight. */
int rpc__conn_write_other(struct rpc__conn *conn);

/*
 * Let nghttp2 produce what it has (never call from inside an nghttp2
 * callback) and start a write if none is in flight. Returns 0 or a negative
 * nghttp2 / -errno code: the owner must then close the connection.
 */
int rpc__conn_flush(struct rpc__conn *conn);

/* Bytes gathered or being written. */
size_t rpc__conn_output_bytes(const struct rpc__conn *conn);

/* libuv alloc callback handing out the owner's shared read buffer. */
void rpc__conn_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);

/* Fill ADDR from a numeric HOST and PORT. Returns 0 or EHR_EINVAL. */
int rpc__addr_parse(const char *host, uint16_t port, struct sockaddr_storage *addr);

/* ---- TLS under a connection (tls.c) ---- */

/* Plaintext taken from OpenSSL per SSL_read: one TLS record's worth. */
#define RPC__TLS_RECORD_BYTES_MAX 16384u

/*
 * Put CONN under TLS with the context TLS: a server connection (HOST NULL)
 * waits for the ClientHello; a client connection (HOST: the name or
 * address the certificate must match) has its ClientHello queued for the
 * next flush. Returns 0, or EHR_EINVAL / EHR_EPROTO with why in DIAG (may
 * be NULL); either way CONN->tls is set and freed by rpc__conn_free_buffers.
 */
int rpc__tls_conn_new(struct rpc__conn *conn, struct rpc_tls *tls, const char *host,
                      ehr_diag *diag);
void rpc__tls_conn_free(struct rpc__conn *conn);
/* The handshake is complete (and ALPN is h2): application data flows. */
bool rpc__tls_open(const struct rpc__conn *conn);

/* Plaintext for the owner; non-zero stops the delivery (the owner is closing). */
typedef int (*rpc__tls_deliver_fn)(struct rpc__conn *conn, const uint8_t *data, size_t len);
/* The handshake just completed, before any plaintext is delivered (the
 * peer's certificate, if any, was checked); non-zero refuses the
 * connection: nothing of it is delivered (the owner is closing). */
typedef int (*rpc__tls_open_fn)(struct rpc__conn *conn);

/*
 * Ciphertext DATA read from the socket: the handshake goes on, and the
 * plaintext it carries goes to DELIVER (in pieces of at most
 * RPC__TLS_RECORD_BYTES_MAX). What OpenSSL wants to send (handshake,
 * alerts) waits for the owner's flush. ON_OPEN (may be NULL) is told once,
 * when the handshake completes. Returns 0 (also when ON_OPEN or DELIVER
 * stopped it); EHR_EPROTO (handshake refused, a bad record, an alert, no
 * ALPN h2) or EHR_ECLOSED (close_notify) with why in DIAG (may be NULL):
 * the owner flushes what is queued (the alert) and closes.
 */
int rpc__tls_recv(struct rpc__conn *conn, const uint8_t *data, size_t len, rpc__tls_open_fn on_open,
                  rpc__tls_deliver_fn deliver, ehr_diag *diag);
/* Bytes of a certificate's fingerprint (SHA-256). */
#define RPC__TLS_FINGERPRINT_BYTES 32u
/*
 * The SHA-256 of the DER encoding of the certificate CONN's peer presented
 * (the handshake complete): 0 and OUT, or EHR_ENOTFOUND if it presented
 * none (a server without client_ca_file asks none).
 */
int rpc__tls_peer_fingerprint(const struct rpc__conn *conn,
                              uint8_t out[RPC__TLS_FINGERPRINT_BYTES]);
/* Keep ciphertext DATA for a later rpc__tls_recv (LEN 0: none new), which
 * a server whose handshake budget for this turn is spent calls next turn. */
void rpc__tls_stash(struct rpc__conn *conn, const uint8_t *data, size_t len);
/* rpc__conn_start_write under TLS: seal the gathered plaintext (once the
 * handshake is complete) and write the ciphertext. */
int rpc__tls_start_write(struct rpc__conn *conn);

/* ---- server internals the fuzz target uses ---- */

struct rpc__server_conn;

/*
 * A server connection with no socket: bytes come from rpc__server_conn_feed,
 * output is produced (so the whole send path runs) and dropped. Returns 0 or
 * EHR_EFULL (connection limit).
 */
int rpc__server_conn_new_socketless(struct rpc_server *server, struct rpc__server_conn **out);
/* Feed bytes as if read from the socket. Returns 0, or EHR_ECLOSED once the connection closed. */
int rpc__server_conn_feed(struct rpc__server_conn *conn, const uint8_t *data, size_t len);
/* Close it (as a socket EOF would). */
void rpc__server_conn_close(struct rpc__server_conn *conn);
/* Buffer bytes SERVER's pooled calls keep (RPC__POOLED_BUFFERS_BYTES_MAX). */
size_t rpc__server_pool_buffer_bytes(const struct rpc_server *server);
/* TLS handshake steps SERVER put off to a later turn (its per-turn budget spent). */
uint64_t rpc__server_tls_deferred(const struct rpc_server *server);

#endif /* EHR_RPC_INTERNAL_H */
