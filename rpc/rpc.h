/*
 * rpc.h - gRPC over cleartext HTTP/2 (prior knowledge) on a libuv loop,
 * built on nghttp2: a server that dispatches registered methods to handler
 * callbacks, and a client for one HTTP/2 connection with many calls in
 * flight (plus a blocking wrapper for one-shot commands).
 *
 * It is a transport: handlers receive and return message bytes; it knows
 * nothing of ehrchain's methods or of protobuf. Not thread-safe: every
 * object belongs to the loop it was created on and is used from that loop's
 * thread only. Lifetime rules, limits and the status mapping are spelled out
 * in rpc/README.md; the rules that bind callers are repeated below.
 */
#ifndef EHR_RPC_H
#define EHR_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"

/* ---- status codes ---- */

/* The gRPC status codes, with their wire values. */
enum rpc_status {
    RPC_STATUS_OK = 0,
    RPC_STATUS_CANCELLED = 1,
    RPC_STATUS_UNKNOWN = 2,
    RPC_STATUS_INVALID_ARGUMENT = 3,
    RPC_STATUS_DEADLINE_EXCEEDED = 4,
    RPC_STATUS_NOT_FOUND = 5,
    RPC_STATUS_ALREADY_EXISTS = 6,
    RPC_STATUS_PERMISSION_DENIED = 7,
    RPC_STATUS_RESOURCE_EXHAUSTED = 8,
    RPC_STATUS_FAILED_PRECONDITION = 9,
    RPC_STATUS_ABORTED = 10,
    RPC_STATUS_OUT_OF_RANGE = 11,
    RPC_STATUS_UNIMPLEMENTED = 12,
    RPC_STATUS_INTERNAL = 13,
    RPC_STATUS_UNAVAILABLE = 14,
    RPC_STATUS_DATA_LOSS = 15,
    RPC_STATUS_UNAUTHENTICATED = 16,
    RPC_STATUS_COUNT_ /* not a status: one past the last */
};

/* "OK", "INVALID_ARGUMENT", ...; "UNKNOWN_STATUS" for values out of range. Never NULL. */
const char *rpc_status_name(int status);

/*
 * The status a client should see for an ehrchain error code (common.h's
 * EHR_E* or -errno): 0 -> OK, EHR_EINVAL/ETOOBIG/... -> INVALID_ARGUMENT,
 * EHR_ENOTFOUND -> NOT_FOUND, EHR_EEXIST -> ALREADY_EXISTS, EHR_EFULL/EAGAIN
 * -> RESOURCE_EXHAUSTED, EHR_ENOTLEADER -> UNAVAILABLE, ... (table in
 * rpc/README.md). Unknown codes map to UNKNOWN, other -errno to INTERNAL.
 */
enum rpc_status rpc_status_from_err(int err);

/* ---- limits (defaults of the configs below; each is checked where input enters) ---- */

/* Largest gRPC message (request or response) accepted, before it is buffered. */
#define RPC_MESSAGE_BYTES_MAX (4u * 1024 * 1024)
/* Connections a server holds at once; more are accepted and closed at once. */
#define RPC_CONNECTIONS_MAX 1024u
/* Connections a server holds at once from one client address (IPv4, or
 * IPv6 with an IPv4-mapped address counted as the IPv4 one), so that a few
 * clients cannot take every connection; more are closed at once too. */
#define RPC_CONNECTIONS_PER_ADDRESS_MAX 128u
/* Under mutual TLS, connections a server holds at once from one client
 * certificate (the SHA-256 of its DER encoding), from however many
 * addresses: a client behind NAT or on many hosts cannot take every
 * connection with one certificate. More are closed at once when their
 * handshake completes. The per-address cap's value: a certificate names
 * one client as an address does, and may hold the same share. */
#define RPC_CONNECTIONS_PER_CERTIFICATE_MAX 128u
/* When a server holds all its connections, a newcomer takes the place of
 * the idlest connection of the most-represented client address if that
 * address holds at least this many more connections than the newcomer's
 * (so one with none gets in while any address holds 2 or more); otherwise
 * it is closed at once. Below 2 a newcomer would only swap two counts. */
#define RPC_EVICTION_GAP_CONNECTIONS_MIN 2u
/* SETTINGS_MAX_CONCURRENT_STREAMS the server advertises (and enforces). */
#define RPC_STREAMS_PER_CONNECTION_MAX 128u
/* Request header list (names + values + 32 per field, as HTTP/2 counts it). */
#define RPC_HEADER_LIST_BYTES_MAX 8192u
/* Request bytes a server buffers per connection (all its partial messages). */
#define RPC_CONNECTION_REQUEST_BYTES_MAX (8u * 1024 * 1024)
/* The same bytes over all the connections of one client address (counted
 * as connections are): past it a request that would be buffered is refused
 * with RESOURCE_EXHAUSTED, as past the connection's; 4 connections' worth,
 * so one client cannot make the server hold 128 × 8 MiB. */
#define RPC_UNFINISHED_BYTES_PER_ADDRESS_MAX (32u * 1024 * 1024)
/* Under mutual TLS, the same bytes over all the connections of one client
 * certificate (counted as connections per certificate are, from however
 * many addresses): past it a request that would be buffered is refused
 * with RESOURCE_EXHAUSTED, as past the address's, so one certificate used
 * from many addresses cannot make the server hold unfinished_bytes_max.
 * The per-address budget's value: a certificate names one client as an
 * address does, and may hold the same share. */
#define RPC_UNFINISHED_BYTES_PER_CERTIFICATE_MAX RPC_UNFINISHED_BYTES_PER_ADDRESS_MAX
/* The same bytes over every connection of the server: past it a request
 * that would be buffered is refused with RESOURCE_EXHAUSTED, as past the
 * address's, so many addresses together cannot make the server hold
 * connections_max × 8 MiB. 8 addresses' worth: honest requests are small
 * and whole within a read, so they never come near it. */
#define RPC_UNFINISHED_BYTES_MAX (256u * 1024 * 1024)
/* Response bytes queued on the server's calls (unary replies and stream
 * messages, each with its 5-byte prefix) that their clients have not yet
 * taken into the connections' output, over all calls. Half of it is first
 * come, first served; the other half is shared out equally, a quota of
 * unread_reply_bytes_max / 2 / connections_max per connection (128 KiB at
 * the defaults). A unary reply that would take the count past half while
 * its connection would pass its quota fails RESOURCE_EXHAUSTED
 * (rpc_call_reply says EHR_EFULL), and so do that connection's next unary
 * calls, before their handlers run, until it reads. So unary replies never
 * pass the budget, and a client that reads is always served a reply up to
 * the quota. A stream message past half of it waits as in a full queue
 * (rpc_stream_send says EHR_EAGAIN) unless the stream's queue is empty.
 * rpc/README.md, "Unread replies". */
#define RPC_UNREAD_REPLY_BYTES_MAX (256u * 1024 * 1024)
/* Output a connection buffers for the socket before it stops producing more. */
#define RPC_CONNECTION_OUTPUT_BYTES_MAX (256u * 1024)
/*
 * Response bytes queued on one server stream before rpc_stream_send says
 * EAGAIN. Each message counts its 5-byte prefix, so this bounds the number
 * of queued messages too.
 */
#define RPC_STREAM_QUEUE_BYTES_MAX (1024u * 1024)
/* A client's upload queues at most this many message bytes (one larger
 * message into an empty queue): rpc_client_upload_send says EHR_EAGAIN past it. */
#define RPC_UPLOAD_QUEUE_BYTES_MAX (1024u * 1024)
/* Registered methods per server, and the length of a method path. */
#define RPC_METHODS_MAX 64u
#define RPC_METHOD_PATH_BYTES_MAX 128u
/* A status message is cut to this many bytes before it is percent-encoded. */
#define RPC_STATUS_MESSAGE_BYTES_MAX 512u
/* Longest deadline honoured (a longer grpc-timeout is cut to this). */
#define RPC_TIMEOUT_MS_MAX (100ull * 24 * 3600 * 1000)
/* A connection with no open stream and no request progress (a request's
 * HEADERS or DATA; PINGs, SETTINGS and WINDOW_UPDATEs do not count) for
 * this long gets GOAWAY and is closed. */
#define RPC_IDLE_TIMEOUT_MS 300000u
/* A connection whose first request is not complete (the HTTP/2 preface,
 * then a request's HEADERS and END_STREAM) this long after it was accepted
 * is closed (after a GOAWAY if it sent the preface), whatever else it
 * sends: a holder cannot keep a connection it never uses. Independent of
 * RPC_IDLE_TIMEOUT_MS, which applies after. */
#define RPC_FIRST_REQUEST_TIMEOUT_MS 10000u
/* A request not complete (END_STREAM) this long after its headers ends
 * with DEADLINE_EXCEEDED and its buffered bytes are freed, whatever
 * grpc-timeout says (a shorter one still ends it sooner). */
#define RPC_REQUEST_RECEIVE_TIMEOUT_MS 30000u
/* A streaming call whose queue filled (rpc_stream_send said EHR_EAGAIN)
 * and did not drain to half within this long (its client does not read:
 * its HTTP/2 window or its socket stays full) is ended: its queue is
 * freed, the client gets RST_STREAM(ENHANCE_YOUR_CALM), which gRPC
 * clients report as RESOURCE_EXHAUSTED, and the handler a cancel with
 * RESOURCE_EXHAUSTED. A client must so read at least half a queue
 * (RPC_STREAM_QUEUE_BYTES_MAX / 2) per this period. */
#define RPC_STREAM_STALL_TIMEOUT_MS 30000u
/* A call that ended (a unary reply, or a stream finished) with response
 * bytes still queued must have them all taken by its client within this
 * long of its end, whatever the client sends meanwhile (a WINDOW_UPDATE of
 * one byte renews nothing): past it the queue is freed, the client gets
 * RST_STREAM(ENHANCE_YOUR_CALM), which gRPC clients report as
 * RESOURCE_EXHAUSTED, and the connection is closed if its output is full
 * too. So a client must read a whole reply (up to message_bytes_max)
 * within this period. */
#define RPC_UNREAD_REPLY_TIMEOUT_MS 30000u
/* TLS handshake steps (a ClientHello answered: a key exchange and a
 * signature, about 0.1-0.2 ms; a client's Finished, with its certificate
 * checked under mutual TLS) a server runs per turn of its loop; more wait
 * for the next turn, their sockets unread meanwhile, so a flood of
 * handshakes delays the loop's other work by at most this many per turn. */
#define RPC_TLS_HANDSHAKES_PER_TURN_MAX 16u
/* Graceful shutdown waits this long for in-flight calls before it forces them. */
#define RPC_SHUTDOWN_GRACE_MS 5000u
/*
 * Custom trailing metadata: entries per answer, and the length of a name
 * (lowercase a-z 0-9 '-', not "grpc-..." which gRPC reserves) and of a value
 * (printable ASCII). Both sides keep at most this many.
 */
#define RPC_TRAILERS_MAX 4u
#define RPC_TRAILER_NAME_BYTES_MAX 32u
#define RPC_TRAILER_VALUE_BYTES_MAX 256u

/* One trailing metadata entry, NUL-terminated. */
struct rpc_trailer {
    char name[RPC_TRAILER_NAME_BYTES_MAX + 1];
    char value[RPC_TRAILER_VALUE_BYTES_MAX + 1];
};

/* ---- TLS ---- */

/*
 * A TLS context: TLS 1.3 only, ALPN "h2", OpenSSL under the HTTP/2
 * connection (rpc/tls.c). A server's holds its certificate chain and key
 * and, for mutual TLS, the CA its clients' certificates must chain to; a
 * client's holds the CA the server's certificate must chain to (the host
 * name or address the client connects to must match it) and, optionally,
 * the client's own certificate and key. Servers and clients borrow it:
 * free it after them. Files are PEM; a key protected by a passphrase is
 * refused (there is no one to type it). No message ever quotes a key.
 */
struct rpc_tls;

struct rpc_tls_server_files {
    const char *cert_file;      /* certificate chain, leaf first: required */
    const char *key_file;       /* its private key: required */
    const char *client_ca_file; /* NULL: no client certificate asked; else required and checked */
};

struct rpc_tls_client_files {
    const char *ca_file;   /* NULL: the system's CA store */
    const char *cert_file; /* NULL, or a client certificate (with key_file) for mutual TLS */
    const char *key_file;
};

/*
 * Load a server's or a client's context. Returns 0 and *out, or EHR_EINVAL
 * with a message naming the file and what is wrong with it in DIAG (may be
 * NULL): unreadable, not PEM, a key that is not the certificate's.
 */
int rpc_tls_server_new(const struct rpc_tls_server_files *files, struct rpc_tls **out,
                       ehr_diag *diag);
int rpc_tls_client_new(const struct rpc_tls_client_files *files, struct rpc_tls **out,
                       ehr_diag *diag);

/*
 * Load FILES again into the server context TLS: connections accepted from
 * now on use the new certificate, open ones keep theirs. On error (as
 * rpc_tls_server_new) TLS is unchanged and keeps serving the old one.
 */
int rpc_tls_server_reload(struct rpc_tls *tls, const struct rpc_tls_server_files *files,
                          ehr_diag *diag);

/* Free TLS (NULL is fine) once no server or client uses it. */
void rpc_tls_free(struct rpc_tls *tls);

/* ---- server ---- */

/* A client's address as the server counts it: an IPv4-mapped IPv6 address
 * is the IPv4 one (family AF_INET, the 4 bytes first, the rest zero);
 * family 0 when the socket could not say. Compare whole structs. */
struct rpc_peer_address {
    uint8_t family; /* AF_INET, AF_INET6, or 0 */
    uint8_t bytes[16];
};

struct rpc_server; /* one listening socket and its connections */
struct rpc_call;   /* one unary call, owned by the handler until finished */
struct rpc_stream; /* one server-streaming call, owned by the handler until finished */
struct rpc_upload; /* one client-streaming call, owned by the handler until finished */
/* A bidirectional call is an rpc_upload (its requests) and an rpc_stream
 * (its answers, rpc_upload_stream) at once: one call, one owner. */

/* Every field may be left 0 to take the default named in the comment. */
struct rpc_server_config {
    size_t message_bytes_max;                    /* RPC_MESSAGE_BYTES_MAX */
    uint32_t connections_max;                    /* RPC_CONNECTIONS_MAX */
    uint32_t connections_per_address_max;        /* RPC_CONNECTIONS_PER_ADDRESS_MAX */
    uint32_t connections_per_certificate_max;    /* RPC_CONNECTIONS_PER_CERTIFICATE_MAX */
    uint32_t streams_per_connection_max;         /* RPC_STREAMS_PER_CONNECTION_MAX */
    uint32_t header_list_bytes_max;              /* RPC_HEADER_LIST_BYTES_MAX */
    size_t connection_request_bytes_max;         /* RPC_CONNECTION_REQUEST_BYTES_MAX */
    size_t unfinished_bytes_per_address_max;     /* RPC_UNFINISHED_BYTES_PER_ADDRESS_MAX */
    size_t unfinished_bytes_per_certificate_max; /* RPC_UNFINISHED_BYTES_PER_CERTIFICATE_MAX */
    size_t unfinished_bytes_max;                 /* RPC_UNFINISHED_BYTES_MAX */
    size_t unread_reply_bytes_max;               /* RPC_UNREAD_REPLY_BYTES_MAX */
    size_t stream_queue_bytes_max;               /* RPC_STREAM_QUEUE_BYTES_MAX */
    uint64_t idle_timeout_ms;                    /* RPC_IDLE_TIMEOUT_MS */
    uint64_t first_request_timeout_ms;           /* RPC_FIRST_REQUEST_TIMEOUT_MS */
    uint64_t request_receive_timeout_ms;         /* RPC_REQUEST_RECEIVE_TIMEOUT_MS */
    uint64_t stream_stall_timeout_ms;            /* RPC_STREAM_STALL_TIMEOUT_MS */
    uint64_t unread_reply_timeout_ms;            /* RPC_UNREAD_REPLY_TIMEOUT_MS */
    uint64_t shutdown_grace_ms;                  /* RPC_SHUTDOWN_GRACE_MS */
    uint32_t tls_handshakes_per_turn_max;        /* RPC_TLS_HANDSHAKES_PER_TURN_MAX */
};

/*
 * Handlers. REQUEST/REQUEST_LEN is the one request message (it may be empty);
 * it is valid only until the handler returns. The handler now owns CALL (or
 * STREAM) and must finish it exactly once, now or later, whatever happens to
 * the client: rpc_call_reply / rpc_call_fail, or rpc_stream_finish.
 */
typedef void (*rpc_unary_handler)(struct rpc_call *call, const uint8_t *request, size_t request_len,
                                  void *method_data);
typedef void (*rpc_stream_handler)(struct rpc_stream *stream, const uint8_t *request,
                                   size_t request_len, void *method_data);

/*
 * Handler of a client-streaming method: called once the request's headers
 * are accepted, before any message. The handler now owns UPLOAD and must
 * finish it exactly once (rpc_upload_reply / rpc_upload_fail), now or
 * later; it sets its message callbacks with rpc_upload_on_message
 * (messages that arrive meanwhile wait).
 */
typedef void (*rpc_upload_handler)(struct rpc_upload *upload, void *method_data);
/* One request message of an upload, in order; valid only during the callback. */
typedef void (*rpc_upload_message_cb)(struct rpc_upload *upload, const uint8_t *message,
                                      size_t message_len, void *data);
/* The client half-closed and every message was delivered: the request is whole. */
typedef void (*rpc_upload_end_cb)(struct rpc_upload *upload, void *data);

/*
 * Told once when the call ended without the handler: the client cancelled or
 * went away (CANCELLED / UNAVAILABLE), the deadline passed
 * (DEADLINE_EXCEEDED; the client has already been told), the client did not
 * read a stream for stream_stall_timeout_ms (RESOURCE_EXHAUSTED), or the
 * server is shutting down (UNAVAILABLE). The call stays valid: the handler must still
 * finish it (which then only releases it); it may do so inside this callback.
 */
typedef void (*rpc_cancel_cb)(void *data, enum rpc_status why);

/* A stream whose send said EHR_EAGAIN has room again (its queue fell to half). */
typedef void (*rpc_writable_cb)(struct rpc_stream *stream, void *data);

/* Called once when rpc_server_close has finished: every call finished and released. */
typedef void (*rpc_server_close_cb)(struct rpc_server *server, void *data);

/*
 * Create a server on LOOP (which the caller owns and runs). CONFIG may be
 * NULL for the defaults. Returns 0 and *out, or EHR_EINVAL for a config out
 * of range. The server does nothing until rpc_server_listen.
 */
int rpc_server_new(uv_loop_t *loop, const struct rpc_server_config *config,
                   struct rpc_server **out);

/*
 * Register PATH ("/ehr.v1.Node/GetStatus": slash, service, slash, method) as a
 * unary or server-streaming method. Returns 0, EHR_EINVAL for a malformed
 * path, EHR_EEXIST if already registered, EHR_EFULL past RPC_METHODS_MAX.
 * Register before listening.
 */
int rpc_server_add_unary(struct rpc_server *server, const char *path, rpc_unary_handler handler,
                         void *method_data);
int rpc_server_add_stream(struct rpc_server *server, const char *path, rpc_stream_handler handler,
                          void *method_data);
/* The same for a client-streaming method (rpc_upload_*). */
int rpc_server_add_upload(struct rpc_server *server, const char *path, rpc_upload_handler handler,
                          void *method_data);
/* The same for a bidirectional method: an upload that answers as a stream
 * (rpc_upload_stream, below). */
int rpc_server_add_bidi(struct rpc_server *server, const char *path, rpc_upload_handler handler,
                        void *method_data);

/*
 * Listen on HOST (numeric IPv4 or IPv6) and PORT (0: the kernel picks one;
 * read it back with rpc_server_port). Returns 0 or -errno / EHR_EINVAL.
 */
int rpc_server_listen(struct rpc_server *server, const char *host, uint16_t port);
uint16_t rpc_server_port(const struct rpc_server *server);

/*
 * Serve TLS with TLS (a server context, borrowed until the server is
 * closed; rpc_tls_server_reload may change it meanwhile) on every
 * connection accepted from now on: call it before rpc_server_listen. The
 * handshake counts against first_request_timeout_ms like the first
 * request; a failed one closes the connection (after OpenSSL's alert) and
 * is logged as the refusals are, one line per interval with the count and
 * the last reason.
 */
void rpc_server_use_tls(struct rpc_server *server, struct rpc_tls *tls);

/* Connections open now and calls the handlers hold now (for metrics and tests). */
uint32_t rpc_server_connection_count(const struct rpc_server *server);
uint32_t rpc_server_call_count(const struct rpc_server *server);
/*
 * Connections, streams and calls refused or ended by a limit since the
 * server started, for KIND in 0 .. RPC_SERVER_REFUSAL_KINDS - 1; *LIMIT
 * (may be NULL) gets the name of the limit (a config field:
 * "connections_max", "connections_per_address_max",
 * "connections_per_certificate_max" (mutual TLS only),
 * "stream_stall_timeout_ms", "first_request_timeout_ms";
 * "connection_request_bytes_max", "unfinished_bytes_per_address_max",
 * "unfinished_bytes_per_certificate_max" (mutual TLS only),
 * "unfinished_bytes_max": requests refused for the bytes they would have
 * buffered past that budget; "unread_reply_bytes_max": unary calls
 * refused, before or after their handler, for the replies not read;
 * "unread_reply_timeout_ms": replies (or a finished stream's last
 * messages) dropped unread, their stream reset; "connections_max_evicted", the connections ended at
 * the cap to make room for a newcomer; "tls_handshake", the TLS handshakes that failed), a static
 * string. Each kind is logged at most once per interval, with the count.
 */
enum { RPC_SERVER_REFUSAL_KINDS = 13 };
uint64_t rpc_server_refused_count(const struct rpc_server *server, size_t kind, const char **limit);

/*
 * Calls ended since the server started, by method and final status, for
 * metrics: METHOD in 0 .. rpc_server_method_count(SERVER) - 1 is a
 * registered method (in the order of registration), METHOD ==
 * rpc_server_method_count(SERVER) the calls to a path no method has, so a
 * client cannot add a method of its own to the count. STATUS is what the
 * client was told: the handler's or the server's status,
 * RESOURCE_EXHAUSTED for a stream reset for not reading
 * (stream_stall_timeout_ms, unread_reply_timeout_ms: a reply dropped
 * unread counts so, not as its handler's status), or, for a call that ended before a status
 * was decided, the status its handler was told (CANCELLED: the client
 * left; UNAVAILABLE: the connection was closed). A call is counted once
 * its stream is gone and its handler has finished it. *PATH (may be NULL)
 * gets the method's path, or "unknown"; it lives as long as the server.
 */
uint32_t rpc_server_method_count(const struct rpc_server *server);
uint64_t rpc_server_calls_ended_count(const struct rpc_server *server, uint32_t method,
                                      enum rpc_status status, const char **path);

/*
 * Graceful shutdown: stop accepting, send GOAWAY on every connection, end
 * streaming calls with UNAVAILABLE, let unary calls finish for up to
 * shutdown_grace_ms, then close what is left (handlers get cancel callbacks).
 * CLOSE_CB (may be NULL) runs once every call the handlers held has been
 * finished and every handle is closed; the server is freed after it
 * returns. The loop must keep running until then.
 */
void rpc_server_close(struct rpc_server *server, rpc_server_close_cb close_cb, void *data);

/*
 * Finish a unary call with one response message (copied; any length up to
 * message_bytes_max) or with a status and a human-readable MESSAGE (may be
 * NULL; cut to RPC_STATUS_MESSAGE_BYTES_MAX). STATUS must not be OK.
 * On every return the call is finished and CALL is invalid. Returns 0 if the
 * answer was queued for the client; EHR_ECLOSED / EHR_ETIMEDOUT if the call
 * had already ended (cancel callback) and there is no one to answer;
 * EHR_ETOOBIG if the response was over the limit, EHR_EFULL if it would
 * pass the server's budget of unread replies (unread_reply_bytes_max; the
 * client gets RESOURCE_EXHAUSTED instead in both cases).
 */
int rpc_call_reply(struct rpc_call *call, const uint8_t *response, size_t response_len);
int rpc_call_fail(struct rpc_call *call, enum rpc_status status, const char *message);

/*
 * Add NAME: VALUE to the trailing metadata sent with CALL's answer (by
 * rpc_call_reply or rpc_call_fail, after it). Returns 0; EHR_EINVAL for a
 * name or value outside the rules above RPC_TRAILERS_MAX; EHR_EFULL past
 * RPC_TRAILERS_MAX entries. Nothing is added on error.
 */
int rpc_call_trailer_add(struct rpc_call *call, const char *name, const char *value);

/* Set (or clear with NULL) the cancel callback; call it from the handler. */
void rpc_call_on_cancel(struct rpc_call *call, rpc_cancel_cb cb, void *data);
/* The method path, and the milliseconds left before the deadline (UINT64_MAX: none). */
const char *rpc_call_method(const struct rpc_call *call);
/* The address the call's connection comes from (as connections are counted
 * per address), so that a handler can bound what one client asks. */
struct rpc_peer_address rpc_call_peer_address(const struct rpc_call *call);
uint64_t rpc_call_deadline_left_ms(const struct rpc_call *call);

/*
 * Queue one response message on a streaming call (copied). Returns 0;
 * EHR_EAGAIN if the stream's queue is full (nothing queued: wait for the
 * writable callback); EHR_ETOOBIG over message_bytes_max; EHR_ECLOSED /
 * EHR_ETIMEDOUT if the call has ended (the stream must still be finished).
 */
int rpc_stream_send(struct rpc_stream *stream, const uint8_t *message, size_t message_len);

/*
 * Finish a streaming call: the queued messages go out, then STATUS (OK or
 * an error) and MESSAGE (may be NULL). On every return STREAM is invalid.
 * Returns 0, or EHR_ECLOSED / EHR_ETIMEDOUT if the call had already ended.
 */
int rpc_stream_finish(struct rpc_stream *stream, enum rpc_status status, const char *message);

void rpc_stream_on_cancel(struct rpc_stream *stream, rpc_cancel_cb cb, void *data);
void rpc_stream_on_writable(struct rpc_stream *stream, rpc_writable_cb cb, void *data);
const char *rpc_stream_method(const struct rpc_stream *stream);
uint64_t rpc_stream_deadline_left_ms(const struct rpc_stream *stream);
/* The connection a stream came on: a number unique among this server's
 * connections for its lifetime (never reused, never 0), so that a handler
 * can bound what one connection holds. */
uint64_t rpc_stream_connection_id(const struct rpc_stream *stream);
/* The address the stream's connection comes from (rpc_call_peer_address). */
struct rpc_peer_address rpc_stream_peer_address(const struct rpc_stream *stream);

/*
 * Bidirectional calls (rpc_server_add_bidi): the handler gets an upload
 * and takes its requests as an upload's (rpc_upload_on_message, pause,
 * resume: every rule below holds), and answers on the same call as a
 * server-streaming handler does, through the stream rpc_upload_stream
 * gives: rpc_stream_send at any time, before or after the client
 * half-closed (the end callback), the writable callback, and
 * rpc_stream_finish to finish it (never rpc_upload_reply). A client that
 * sends nothing for request_receive_timeout_ms before it half-closes ends
 * the call DEADLINE_EXCEEDED, as an upload's does. rpc_upload_stream is
 * valid for a bidirectional call only and returns the same call: it is
 * finished once, by rpc_stream_finish.
 */
struct rpc_stream *rpc_upload_stream(struct rpc_upload *upload);

/*
 * Uploads (client-streaming calls). Messages reach MESSAGE_CB one at a
 * time, in order, from the server's pump; END_CB (may be NULL) follows the
 * last once the client half-closed. Undelivered messages count against the
 * connection's and the address's request budgets, and the client's HTTP/2
 * stream window is extended only once the handler has taken every whole
 * message and is not paused: a handler that cannot keep up pauses, and
 * the client can then send at most one stream window more (rpc/README.md,
 * "Client-streaming calls"). Set the callbacks from the handler.
 */
void rpc_upload_on_message(struct rpc_upload *upload, rpc_upload_message_cb message_cb,
                           rpc_upload_end_cb end_cb, void *data);
/* Deliver nothing more and extend no window until rpc_upload_resume (which
 * may be called from anywhere on the loop's thread, even a callback). While
 * paused, the client is not held to request_receive_timeout_ms. */
void rpc_upload_pause(struct rpc_upload *upload);
void rpc_upload_resume(struct rpc_upload *upload);
/* As rpc_call_reply / rpc_call_fail / rpc_call_trailer_add / rpc_call_on_cancel.
 * A reply or a failure before the request is whole stops the client's
 * upload (RST_STREAM(NO_ERROR) after the status) and drops what is queued.
 * The cancel callback also says why the server ended an upload it held:
 * DEADLINE_EXCEEDED (a message not in time), RESOURCE_EXHAUSTED (a message
 * or the buffered bytes over a limit), INTERNAL (a request cut inside a
 * message, or a bad message frame). */
int rpc_upload_reply(struct rpc_upload *upload, const uint8_t *response, size_t response_len);
int rpc_upload_fail(struct rpc_upload *upload, enum rpc_status status, const char *message);
int rpc_upload_trailer_add(struct rpc_upload *upload, const char *name, const char *value);
void rpc_upload_on_cancel(struct rpc_upload *upload, rpc_cancel_cb cb, void *data);
const char *rpc_upload_method(const struct rpc_upload *upload);
uint64_t rpc_upload_deadline_left_ms(const struct rpc_upload *upload);
uint64_t rpc_upload_connection_id(const struct rpc_upload *upload);
struct rpc_peer_address rpc_upload_peer_address(const struct rpc_upload *upload);

/* ---- client ---- */

struct rpc_client;      /* one HTTP/2 connection to a server */
struct rpc_client_call; /* one call in flight, valid until its done callback */

struct rpc_client_config {
    size_t message_bytes_max; /* largest response message accepted: RPC_MESSAGE_BYTES_MAX */
    struct rpc_tls *tls;      /* NULL: cleartext; else a client context (borrowed) */
};

/* The connection is up (STATUS 0; with TLS, once the handshake is complete
 * and the server's certificate checked) or could not be made (-errno /
 * EHR_E*; EHR_EPROTO for a failed TLS handshake). */
typedef void (*rpc_connect_cb)(struct rpc_client *client, int status, void *data);

/*
 * A call has ended. STATUS is what the server said, or what the client
 * concluded: UNAVAILABLE (connection lost), DEADLINE_EXCEEDED, CANCELLED,
 * INTERNAL (broken response), RESOURCE_EXHAUSTED (response over the limit).
 * MESSAGE is never NULL. RESPONSE is the unary response message (NULL for a
 * streaming call or on error). Everything is valid only during the callback.
 */
typedef void (*rpc_done_cb)(void *data, enum rpc_status status, const char *message,
                            const uint8_t *response, size_t response_len);

/* One message of a streaming call; valid only during the callback. */
typedef void (*rpc_message_cb)(void *data, const uint8_t *message, size_t message_len);

/* Called once after rpc_client_close when the client is freed. */
typedef void (*rpc_client_close_cb)(void *data);

/*
 * Connect to HOST:PORT (a numeric address or a name to resolve) on LOOP.
 * Returns 0 and *out: CONNECT_CB follows exactly once. Calls may be started
 * at once; they are sent when the connection is up (or fail UNAVAILABLE).
 * On a non-zero return nothing was created and no callback fires.
 */
int rpc_client_connect(uv_loop_t *loop, const char *host, uint16_t port,
                       const struct rpc_client_config *config, rpc_connect_cb connect_cb,
                       void *data, struct rpc_client **out);

/*
 * Start a unary call to PATH with REQUEST (copied) and TIMEOUT_MS (0: no
 * deadline). DONE_CB runs exactly once, never from inside this function.
 * *OUT (may be NULL) is a handle for rpc_client_call_cancel, valid until
 * DONE_CB returns. Returns 0, EHR_EINVAL (bad path), EHR_ETOOBIG (request
 * over the limit) or EHR_ECLOSED (client closing); on error no callback.
 */
int rpc_client_unary(struct rpc_client *client, const char *path, const uint8_t *request,
                     size_t request_len, uint64_t timeout_ms, rpc_done_cb done_cb, void *data,
                     struct rpc_client_call **out);

/* As rpc_client_unary, for a server-streaming method: MESSAGE_CB per response message. */
int rpc_client_stream(struct rpc_client *client, const char *path, const uint8_t *request,
                      size_t request_len, uint64_t timeout_ms, rpc_message_cb message_cb,
                      rpc_done_cb done_cb, void *data, struct rpc_client_call **out);

/*
 * Uploads (client-streaming calls). rpc_client_upload starts a call to PATH
 * with no message yet (TIMEOUT_MS, DONE_CB and *OUT as rpc_client_unary;
 * OUT is required). rpc_client_upload_send queues one message (copied):
 * 0; EHR_EAGAIN when RPC_UPLOAD_QUEUE_BYTES_MAX are queued already (nothing
 * queued: WRITABLE_CB follows, from the loop, once the queue is down to
 * half); EHR_ETOOBIG over message_bytes_max; EHR_ECLOSED once the call has
 * ended (its done callback is due). rpc_client_upload_close half-closes:
 * the request is whole after the queued messages. The server may answer
 * before the request is whole (a refusal): DONE_CB then runs as usual.
 */
typedef void (*rpc_client_writable_cb)(struct rpc_client_call *call, void *data);
int rpc_client_upload(struct rpc_client *client, const char *path, uint64_t timeout_ms,
                      rpc_client_writable_cb writable_cb, rpc_done_cb done_cb, void *data,
                      struct rpc_client_call **out);
int rpc_client_upload_send(struct rpc_client_call *call, const uint8_t *message,
                           size_t message_len);
void rpc_client_upload_close(struct rpc_client_call *call);

/*
 * True once the connection is gone (refused, lost, GOAWAY, closed): every
 * call started from now on ends UNAVAILABLE at once. There is no reconnect;
 * a caller that wants one closes CLIENT and connects a new one.
 */
bool rpc_client_is_down(const struct rpc_client *client);

/* Cancel a call in flight: RST_STREAM to the server, DONE_CB with CANCELLED (later). */
void rpc_client_call_cancel(struct rpc_client_call *call);

/*
 * The value of the trailing metadata entry NAME the server sent with CALL's
 * answer, or NULL. Only during CALL's done callback (use the handle from
 * rpc_client_unary's *OUT). The client keeps the first RPC_TRAILERS_MAX
 * entries that are not gRPC's own, each within the limits above.
 */
const char *rpc_client_call_trailer(const struct rpc_client_call *call, const char *name);

/*
 * Close the connection: calls still in flight end with CANCELLED; then
 * CLOSE_CB (may be NULL) and the client is freed. The loop must keep running.
 */
void rpc_client_close(struct rpc_client *client, rpc_client_close_cb close_cb, void *data);

/* ---- blocking client (for one-shot commands; runs its own private loop) ---- */

struct rpc_sync;

/* The outcome of one blocking call. Release with rpc_result_clear. */
struct rpc_result {
    enum rpc_status status;
    char message[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    uint8_t *response; /* unary response (ehr_malloc'ed), NULL on error */
    size_t response_len;
    struct rpc_trailer trailers[RPC_TRAILERS_MAX]; /* as rpc_client_call_trailer keeps them */
    uint32_t trailer_count;
};

void rpc_result_clear(struct rpc_result *result);

/* The value of RESULT's trailing metadata entry NAME, or NULL. */
const char *rpc_result_trailer(const struct rpc_result *result, const char *name);

/*
 * Connect within TIMEOUT_MS. Returns 0 and *out, or -errno / EHR_ETIMEDOUT /
 * EHR_EINVAL with a reason in DIAG (may be NULL).
 */
int rpc_sync_open(const char *host, uint16_t port, uint64_t timeout_ms, struct rpc_sync **out,
                  ehr_diag *diag);
/* As rpc_sync_open, with CONFIG for the client (NULL: the defaults; its tls for TLS). */
int rpc_sync_open_config(const char *host, uint16_t port, uint64_t timeout_ms,
                         const struct rpc_client_config *config, struct rpc_sync **out,
                         ehr_diag *diag);

/*
 * One call, blocking until it ends; the outcome goes to *RESULT (always
 * filled, even for local failures, which read as UNAVAILABLE / INTERNAL).
 * Returns RESULT->status. For a streaming method MESSAGE_CB runs per message.
 */
enum rpc_status rpc_sync_unary(struct rpc_sync *sync, const char *path, const uint8_t *request,
                               size_t request_len, uint64_t timeout_ms, struct rpc_result *result);
enum rpc_status rpc_sync_stream(struct rpc_sync *sync, const char *path, const uint8_t *request,
                                size_t request_len, uint64_t timeout_ms, rpc_message_cb message_cb,
                                void *data, struct rpc_result *result);

/*
 * A blocking upload: NEXT_CB gives the request messages one at a time (1
 * and *MESSAGE / *MESSAGE_LEN, valid until its next call; 0 at the end; a
 * negative code to give up, which cancels the call: RESULT then says
 * CANCELLED with NEXT_CB's code named). It is called only when the upload
 * has room, so the request streams in constant memory. Returns
 * RESULT->status; the unary response is in RESULT.
 */
typedef int (*rpc_upload_next_cb)(void *data, const uint8_t **message, size_t *message_len);
enum rpc_status rpc_sync_upload(struct rpc_sync *sync, const char *path, uint64_t timeout_ms,
                                rpc_upload_next_cb next_cb, void *data, struct rpc_result *result);

void rpc_sync_close(struct rpc_sync *sync);

#endif /* EHR_RPC_H */
