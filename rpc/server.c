/*
 * server.c - the gRPC server: accepts h2c connections (prior knowledge),
 * turns each request stream into a call, dispatches it to the registered
 * handler (unary, server-streaming, client-streaming: an "upload", fed
 * to its handler message by message, or bidirectional: an upload whose
 * handler answers as a stream does), and carries the handler's answer
 * back with gRPC framing, status trailers, deadlines and bounds on
 * everything a client can make us hold.
 *
 * It does not know any method's messages: handlers get and give bytes.
 *
 * Design notes
 *
 * A call has two owners, each a flag (rpc_call is freed when both are
 * clear; see call_reap):
 *   stream_attached  the HTTP/2 stream exists (nghttp2 may still read our
 *                    output buffer or report frames for it);
 *   app_owned        the handler holds the call (from dispatch until it
 *                    finishes it with reply / fail / finish).
 * Invariants:
 *   1. A handler's call is valid until the handler finishes it, whatever
 *      the client does: a vanished stream only clears stream_attached.
 *   2. `ended` is set once a final status is decided (the handler's, or
 *      ours: cancel, deadline, shutdown, a framing error); nothing more is
 *      queued for the client after it.
 *   3. The cancel callback fires at most once, only while app_owned, and
 *      only for an end the handler did not choose.
 *   4. Handlers and callbacks run only from server_pump, never from inside
 *      an nghttp2 callback, so they may call any rpc_* function (even
 *      rpc_server_close); nghttp2 callbacks only record and queue.
 *   5. Memory of a reaped call is recycled only at the end of the pump,
 *      so code that just ran a handler may still read the call's fields.
 *   6. Nothing a client sends for free holds resources for ever: only a
 *      request's HEADERS or DATA reset a connection's idle timer (never a
 *      PING), and a request not whole within request_receive_timeout_ms
 *      ends, whatever its grpc-timeout, freeing what it buffered. For an
 *      upload the same time runs from its headers to its first message and
 *      from each message to the next (or to its end), and stands still
 *      while its handler has it paused (the client cannot send then).
 *   7. A client address holds at most connections_per_address_max of the
 *      connections, and refusals cost at most one log line per interval
 *      per kind (ehr_log_limit). A call keeps its connection's id and
 *      address for its whole life (rpc_call_peer_address), so a handler
 *      can bound what one client asks of it.
 *   8. A client that does not read holds a stream's queue for at most
 *      stream_stall_timeout_ms: stall_by_ms is set when the queue fills
 *      (rpc_stream_send says EAGAIN) and cleared only when it drains to
 *      half (send_data_cb); when it passes, call_stalled frees the queue
 *      and resets the stream (closing the connection if even that cannot
 *      be written).
 *   9. A connection is used or closed: unless its first request arrives
 *      whole (preface, HEADERS, END_STREAM; for an upload, its headers
 *      accepted, as invariant 6 bounds the rest) within
 *      first_request_timeout_ms of its accept, conn_first_request_cb
 *      closes it, whatever it sent meanwhile (PINGs, SETTINGS, a request
 *      that never ends).
 *  10. The request bytes buffered for the calls of one client address
 *      (partial messages and requests held until dispatch, as the
 *      connection counts them) stay within unfinished_bytes_per_address_max
 *      over all its connections: every charge is taken from the
 *      connection's and the address's budget together (rpc__budget_take)
 *      and given back to both; when the address's last connection closes
 *      its budget is whole again. Under mutual TLS a certificate is a
 *      client too (invariant 19).
 *  11. Holding every connection locks nobody out who holds fewer: when
 *      connections_max are open, a newcomer whose address holds at least
 *      RPC_EVICTION_GAP_CONNECTIONS_MIN fewer connections than the
 *      most-represented address takes the place of that address's idlest
 *      connection (server_eviction_victim: fewest calls, then the oldest
 *      request progress), which is closed at once; otherwise it is
 *      refused. So no set of addresses can hold more than an equal share
 *      against a newcomer, and an address with one connection is served
 *      unless every connection is from an address of its own.
 *  12. An upload's handler takes its messages in order, one at a time,
 *      from the pump (call_deliver_input), then the end once the client
 *      half-closed; never after the call ended. Whole messages not yet
 *      delivered are charged to the budgets of invariant 10 (in_charged)
 *      and dropped with their charge when the call ends. Flow control is
 *      ours (no automatic WINDOW_UPDATE): every DATA byte is credited back
 *      at once, except an upload's stream-level credit, which waits
 *      (window_owed) until its handler holds no undelivered message and is
 *      not paused (call_credit). So a handler that cannot keep up pauses,
 *      and its client can send at most one stream window
 *      (STREAM_WINDOW_BYTES) more; the budgets still refuse what exceeds
 *      them. A bidirectional call is an upload on its request side and a
 *      stream on its answer side: everything here holds for its requests,
 *      and invariants 8 and 15 for its answers, which it may send before
 *      the client half-closed.
 *  13. A turn of the loop runs at most tls_handshakes_per_turn_max TLS
 *      handshake steps over all connections: past it a connection's
 *      ciphertext is stashed, its socket no longer read, and it waits in
 *      tls_waiting for a later turn (tls_turn_cb), first come first served;
 *      its first-request deadline runs on meanwhile.
 *  14. The request bytes buffered over all connections (as invariant 10
 *      counts them) stay within unfinished_bytes_max: the server's budget
 *      is the last that rpc__budget_take charges together with the
 *      connection's, the address's and the certificate's (invariant 19),
 *      given back with them; when the last connection closes it is whole
 *      again.
 *  15. Replies not yet read (bytes queued on calls, unary replies and
 *      stream messages with their prefixes, not yet copied into a
 *      connection's output by send_data_cb; the output itself is bounded
 *      per connection) are counted per call (out_charged), per connection
 *      and for the server (call_out_charge, after every change of a
 *      queue; all given back at call_detach). A unary reply is queued only
 *      if the server's count stays within half of unread_reply_bytes_max
 *      (first come, first served) or its connection's within its quota,
 *      the other half over connections_max (call_reply_refusal, the same
 *      for every connection); otherwise the call ends RESOURCE_EXHAUSTED,
 *      and, if the connection holds unread replies, its further unary
 *      calls end so before their handlers run until it reads
 *      (reply_refused). So unary replies alone never take the count past
 *      unread_reply_bytes_max, and a connection that holds no unread
 *      reply is always served one up to its quota, whatever the others
 *      hold. A stream message past half of
 *      unread_reply_bytes_max waits as in a full queue, unless its
 *      stream's queue is empty (so streams never take the half unary
 *      replies are served from, and a stream always moves on); so the
 *      count exceeds the bound by at most one message per open stream.
 *  16. Every call is counted once, by method and outcome, when it is
 *      reaped (call_reap): `outcome` is set where `ended` is first set
 *      (the status the client is told, RESOURCE_EXHAUSTED for a reset
 *      for not reading (call_stalled), or the cancel its handler is told
 *      when no status was decided), and set again to RESOURCE_EXHAUSTED
 *      if its answer is dropped unread (call_unread, invariant 17).
 *      Calls to a path no method has are counted under one entry, so the
 *      table (calls_ended) is bounded by RPC_METHODS_MAX + 1 entries
 *      whatever clients send.
 *  17. A call that ended with response bytes still queued (a unary reply
 *      its client has not taken, a finished stream's last messages)
 *      holds them for at most unread_reply_timeout_ms after its end:
 *      unread_by_ms is set when it ends with bytes queued
 *      (call_unread_arm), cleared only when send_data_cb has taken them
 *      all, and never renewed by what the client sends (a WINDOW_UPDATE
 *      of one byte is free); when it passes, call_unread frees the queue
 *      and resets the stream (closing the connection if even that cannot
 *      be written). With invariant 8 this bounds, in time, every byte a
 *      client can make the server hold by not reading.
 *  18. Under mutual TLS a client certificate (the SHA-256 of its DER
 *      encoding) holds at most connections_per_certificate_max of the
 *      connections, from however many addresses: when a handshake
 *      completes, before any of its plaintext is read, conn_tls_opened
 *      counts the connection in its certificate's entry or, past the cap,
 *      closes it at once, refused as invariant 7's are (counted, one log
 *      line per interval). The count is given back when the connection
 *      closes, whichever way (conn_close, conn_clients_leave); the
 *      entries are kept and freed as the addresses' are (client_join,
 *      client_leave), so there are at most connections_max of them. A
 *      connection without a client certificate (no client_ca_file) is
 *      not counted; one still in its handshake is not yet.
 *  19. Under mutual TLS the request bytes buffered for the calls of one
 *      client certificate (as invariant 10 counts them) stay within
 *      unfinished_bytes_per_certificate_max over all its connections,
 *      from however many addresses: conn_tls_opened attaches the
 *      certificate's budget to the connection's (budget.certificate_bytes)
 *      when it counts the connection, before any plaintext is read, so
 *      nothing was charged before; from then every charge is taken from
 *      it together with the others and given back to the same entry
 *      (call_detach gives back every charge before conn_clients_leave
 *      detaches it), so the entry, freed with its last connection, is
 *      whole again then. A request past it is refused as past the
 *      address's (counted, one log line per interval).
 *
 * Call states (the function that moves between them):
 *   receiving --call_request_done--> queued --call_deliver--> with handler
 *   receiving (upload) --call_headers_done--> queued --call_deliver-->
 *     with handler, receiving: messages queued by call_on_upload_message,
 *     delivered by call_deliver_input; paused / running by
 *     rpc_upload_pause / rpc_upload_resume; the end delivered after
 *     call_request_done; a cut-off, an over-limit message or budget, or a
 *     late message end it (call_end_told: its handler is told)
 *   receiving (bidirectional) as an upload; with handler, it also sends as
 *     a stream does (rpc_stream_send, the writable callback) and finishes
 *     with rpc_stream_finish, whether or not the client half-closed
 *   receiving --call_timer_cb (not whole in time)--> ended, never dispatched
 *   queued (unary) --call_deliver, its connection refused a reply while
 *     holding unread ones and the server past half the budget (invariant
 *     15)--> ended RESOURCE_EXHAUSTED, never dispatched
 *   with handler --rpc_call_reply/fail, rpc_stream_finish--> draining
 *   with handler --rpc_call_reply past the unread replies' budget
 *     (call_reply_refusal, invariant 15)--> draining, RESOURCE_EXHAUSTED
 *   with handler --call_detach / deadline / shutdown--> ended, with handler
 *   draining, its bytes not all taken --call_unread (unread_reply_timeout_ms
 *     passed, invariant 17)--> reset, its queue freed
 *   with handler --call_stalled (queue full too long)--> ended, with handler
 *   with handler (stream) --rpc_stream_send past its queue or past half
 *     the unread replies' budget (EHR_EAGAIN)--> waiting for writable
 *     --send_data_cb (queue at half)--> with handler, or --call_stalled-->
 *     ended (invariants 8, 15)
 *   ended, with handler --finish--> draining or reaped
 *   any --call_detach (stream closed)--> reaped once app_owned is clear,
 *     and counted by method and outcome (call_reap, invariant 16)
 *
 * Connection states:
 *   accepted --conn_recv (the client's first bytes)--> speaking HTTP/2
 *     (or answered 505 and closing)
 *   accepted (TLS) --conn_recv_tls (handshake complete: conn_tls_opened)-->
 *     speaking, counted for its client certificate; or, that certificate
 *     at connections_per_certificate_max, closed at once (invariant 18)
 *   accepted / speaking --call_request_done (a first request whole)--> used
 *   accepted / speaking --conn_first_request_cb--> closed at once (no
 *     byte came) or closing after a GOAWAY (invariant 9)
 *   used --conn_idle_cb (no call, no request progress)--> closing (GOAWAY)
 *   any but closing --on_connection (evicted for a newcomer, invariant
 *     11)--> closed at once (its calls' handlers told UNAVAILABLE)
 *   closing --conn_flush (output written)--> closed (conn_close)
 *
 * nghttp2 caveats (where they bite):
 *   - submit_* may be called inside its callbacks; session_send and
 *     session_del may not. We flush only from the pump and close
 *     connections only outside nghttp2 (conn_close is never reached from
 *     a callback).
 *   - A data provider that has nothing returns NGHTTP2_ERR_DEFERRED, and
 *     nothing is sent for the stream until nghttp2_session_resume_data():
 *     every path that queues output or ends a call resumes a deferred
 *     stream (call_resume).
 *   - With NGHTTP2_DATA_FLAG_NO_COPY the read callback only promises bytes;
 *     send_data_cb copies them later (after WOULDBLOCK possibly in a later
 *     session_send), so we keep a cursor and never a pointer across them.
 *   - Trailers are submitted from inside the read callback, with
 *     NO_END_STREAM on the last DATA frame (the documented way).
 *   - nghttp2 reports BAD_CLIENT_MAGIC for a non-HTTP/2 client; we look at
 *     the first bytes to answer an HTTP/1.x request with a 505.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "rpc_internal.h"

/* Why a request's headers are refused (bits of rpc_call.header_faults). */
enum {
    FAULT_HEADERS_TOO_BIG = 1 << 0,
    FAULT_BAD_TIMEOUT = 1 << 1,
    FAULT_BAD_ENCODING = 1 << 2,
    SEEN_POST = 1 << 3,
    SEEN_GRPC_CONTENT_TYPE = 1 << 4,
    SEEN_TE_TRAILERS = 1 << 5,
};

/* Bytes of the first read kept to tell an HTTP/1.x client from garbage. */
#define FIRST_BYTES_KEPT 8u
/* HTTP/2 windows: per stream and per connection (our own budgets bound memory). */
#define STREAM_WINDOW_BYTES (1 << 20)
#define CONNECTION_WINDOW_BYTES (16 << 20)
/* Room for one status message once percent-encoded. */
#define ENCODED_MESSAGE_BYTES (3 * RPC_STATUS_MESSAGE_BYTES_MAX + 1)

_Static_assert(RPC__PREFIX_BYTES + RPC_MESSAGE_BYTES_MAX <= RPC_UNREAD_REPLY_BYTES_MAX / 2,
               "a reply of the largest size fits half the unread replies' budget");
_Static_assert(RPC_UNREAD_REPLY_BYTES_MAX / 2 / RPC_CONNECTIONS_MAX >= 64 * 1024,
               "every connection may always hold a reply of 64 KiB unread");
_Static_assert(RPC_MESSAGE_BYTES_MAX <= RPC_UNFINISHED_BYTES_MAX,
               "a request of the largest size fits the server's request budget");
_Static_assert(RPC_CONNECTIONS_PER_CERTIFICATE_MAX < RPC_CONNECTIONS_MAX,
               "one client certificate cannot hold every connection");
_Static_assert(RPC_UNFINISHED_BYTES_PER_CERTIFICATE_MAX < RPC_UNFINISHED_BYTES_MAX,
               "one client certificate cannot hold the server's whole request budget");
_Static_assert(RPC_MESSAGE_BYTES_MAX <= RPC_UNFINISHED_BYTES_PER_CERTIFICATE_MAX,
               "a request of the largest size fits a certificate's request budget");
_Static_assert(RPC_EVICTION_GAP_CONNECTIONS_MIN >= 2,
               "an eviction must leave the two addresses closer than they were");

/* Refusals a client provokes at will: each kind is logged at most once per
 * EHR_LOG_LIMIT_INTERVAL_MS, with the number refused (an attacker holding
 * the connection cap must not be able to flood the log). */
enum refusal {
    REFUSAL_CONNECTIONS_MAX,
    REFUSAL_CONNECTIONS_PER_ADDRESS,
    REFUSAL_STREAM_STALLED,
    REFUSAL_FIRST_REQUEST_LATE,
    REFUSAL_EVICTED,
    REFUSAL_TLS_HANDSHAKE,
    /* A request over a budget of invariants 10 and 14, in rpc__budget_kind's
     * order (refusal_budget_cb). */
    REFUSAL_CONNECTION_REQUEST_BYTES,
    REFUSAL_UNFINISHED_BYTES_PER_ADDRESS,
    REFUSAL_UNFINISHED_BYTES,
    REFUSAL_UNREAD_REPLY_BYTES, /* a unary call refused for unread replies (invariant 15) */
    REFUSAL_UNREAD_REPLY_LATE,  /* an answer dropped unread (invariant 17) */
    REFUSAL_CONNECTIONS_PER_CERTIFICATE, /* mutual TLS (invariant 18) */
    /* A request over its certificate's budget (mutual TLS, invariant 19). */
    REFUSAL_UNFINISHED_BYTES_PER_CERTIFICATE,
    REFUSAL_COUNT_
};
static const char *const refusal_limit_names[REFUSAL_COUNT_] = {
    "connections_max",
    "connections_per_address_max",
    "stream_stall_timeout_ms",
    "first_request_timeout_ms",
    "connections_max_evicted",
    "tls_handshake",
    "connection_request_bytes_max",
    "unfinished_bytes_per_address_max",
    "unfinished_bytes_max",
    "unread_reply_bytes_max",
    "unread_reply_timeout_ms",
    "connections_per_certificate_max",
    "unfinished_bytes_per_certificate_max"};
_Static_assert((int)REFUSAL_CONNECTION_REQUEST_BYTES + (int)RPC__BUDGET_ADDRESS ==
                   (int)REFUSAL_UNFINISHED_BYTES_PER_ADDRESS,
               "the budgets' refusals in their order");
_Static_assert((int)REFUSAL_CONNECTION_REQUEST_BYTES + (int)RPC__BUDGET_SERVER ==
                   (int)REFUSAL_UNFINISHED_BYTES,
               "the budgets' refusals in their order");
_Static_assert((int)REFUSAL_COUNT_ == (int)RPC_SERVER_REFUSAL_KINDS,
               "rpc.h counts the refusals' kinds");
/* The last failed handshake's reason kept for its log line (OpenSSL's words, never a key). */
#define TLS_REASON_BYTES 160u

struct rpc__method {
    char path[RPC_METHOD_PATH_BYTES_MAX + 1];
    size_t path_len;
    bool streaming; /* server-streaming (with upload: bidirectional) */
    bool upload;    /* client-streaming (with streaming: bidirectional) */
    rpc_unary_handler unary;
    rpc_stream_handler stream;
    rpc_upload_handler upload_handler;
    void *data;
};

/* Bytes of what tells one client from another: its address (a struct
 * rpc_peer_address, address_key) or its certificate's SHA-256. */
#define CLIENT_KEY_BYTES RPC__TLS_FINGERPRINT_BYTES
_Static_assert(1 + sizeof(((struct rpc_peer_address *)0)->bytes) <= CLIENT_KEY_BYTES,
               "an address fits a client's key");

/*
 * A client with open connections, as the server tells clients apart: by
 * address (server addresses: invariants 7, 10, 11) or, under mutual TLS,
 * by certificate (server certificates: invariant 18). An entry lives while
 * a connection counts in it (client_join, client_leave), so a list holds
 * at most connections_max entries.
 */
struct rpc__client {
    uint8_t key[CLIENT_KEY_BYTES]; /* compared whole */
    uint32_t connection_count;
    /* Unfinished request bytes its connections may still buffer: an
     * address's (invariant 10), a certificate's (invariant 19). */
    size_t request_budget;
    struct rpc__link link; /* server addresses or certificates */
};

struct rpc_server {
    uv_loop_t *loop;
    struct rpc_server_config config;
    struct rpc__method methods[RPC_METHODS_MAX];
    uint32_t method_count;
    /* Calls ended by method (index into methods; RPC_METHODS_MAX: a path no
     * method has) and outcome, for metrics (invariant 16). */
    uint64_t calls_ended[RPC_METHODS_MAX + 1][RPC_STATUS_COUNT_];
    uv_tcp_t listener;
    bool listening;
    uint16_t port;
    uv_idle_t kick; /* runs the pump after calls finished outside our callbacks */
    uv_timer_t grace_timer;
    uv_timer_t refusal_timer; /* logs the refusals held back when their interval ends */
    struct ehr_log_limit refusals[REFUSAL_COUNT_];
    uint64_t refused_total[REFUSAL_COUNT_]; /* since the server started (metrics) */
    uint8_t *read_buf;
    nghttp2_session_callbacks *callbacks;
    nghttp2_option *option;
    struct rpc__link conns;        /* open connections */
    struct rpc__link addresses;    /* rpc__client of the open connections' known addresses */
    struct rpc__link certificates; /* rpc__client of their client certificates (inv. 18) */
    struct rpc__link dirty;        /* connections that may have output to produce */
    struct rpc__link pending;      /* calls with notifications to deliver */
    struct rpc__link reap;         /* calls to recycle at the end of the pump */
    struct rpc__link pool;         /* recycled calls (their timers initialised) */
    uint32_t pool_count;
    size_t pool_buffer_bytes; /* capacity the pooled calls' buffers keep */
    uint32_t conn_count;
    size_t request_budget;     /* unfinished request bytes all connections may still buffer */
    size_t unread_reply_bytes; /* queued on calls, not yet in a connection's output (inv. 15) */
    uint64_t conn_id_last;     /* the last connection id given (rpc_stream_connection_id) */
    uint32_t app_call_count;
    uint32_t handles_open; /* every uv handle of the server, its connections and calls */
    bool pumping;
    bool closing;
    bool torn_down;
    rpc_server_close_cb close_cb;
    void *close_data;
    struct rpc_tls *tls; /* NULL: cleartext (rpc_server_use_tls) */
    char tls_reason[TLS_REASON_BYTES];
    uv_prepare_t tls_turn;        /* each turn: the budget anew, waiting handshakes first */
    uv_idle_t tls_wake;           /* keeps poll from sleeping while handshakes wait */
    struct rpc__link tls_waiting; /* connections whose handshake waits for a turn (inv. 13) */
    uint32_t tls_steps;           /* handshake steps run this turn */
    uint64_t tls_deferred;        /* steps put off to a later turn */
};

struct rpc__server_conn {
    struct rpc__conn io; /* first: nghttp2 user_data and handle data point here */
    struct rpc_server *server;
    uint64_t id;                     /* rpc_stream_connection_id */
    struct rpc_peer_address peer;    /* 0: unknown (not counted per address) */
    struct rpc__client *address;     /* NULL: unknown address, or socketless */
    struct rpc__client *certificate; /* NULL: no client certificate (yet) (invariant 18) */
    struct rpc__budget budget; /* request_budget, the address's, the certificate's, the server's */
    struct rpc__link link_all;
    struct rpc__link link_dirty;
    struct rpc__link calls; /* calls whose stream is attached */
    uint32_t call_count;
    uv_timer_t idle_timer;
    uv_timer_t first_request_timer; /* stopped by the first complete request */
    bool first_request_done;
    uint64_t progress_ms;      /* loop time of the last request progress (the accept at first) */
    size_t request_budget;     /* request bytes this connection may still buffer (budget) */
    size_t unread_reply_bytes; /* its calls' share of the server's (invariant 15) */
    bool reply_refused;        /* refused a reply while holding some, and not read since */
    uint8_t first_bytes[FIRST_BYTES_KEPT];
    uint32_t first_len;
    uint32_t handles_open;
    bool closing;
    bool close_after_write;
    struct rpc__link link_tls_waiting; /* server tls_waiting (invariant 13) */
    bool tls_paused;                   /* not read while its handshake waits */
};

struct rpc_call {
    struct rpc_server *server;
    struct rpc__server_conn *conn; /* NULL once the stream is gone */
    uint64_t conn_id;              /* conn's id, kept after the stream is gone */
    struct rpc_peer_address peer;  /* conn's address, kept likewise */
    struct rpc__link link;         /* conn->calls, or server reap / pool */
    struct rpc__link link_pending; /* server pending */
    int32_t stream_id;
    const struct rpc__method *method;
    struct rpc__reader reader;
    struct rpc__buf request; /* the request message, held until dispatch */
    size_t request_charged;  /* request bytes charged to the connection */
    bool have_request;
    uint32_t header_bytes;
    uint32_t header_faults;
    char path[RPC_METHOD_PATH_BYTES_MAX + 1];
    char encoding[32];
    bool has_deadline;
    uint64_t timeout_ms;
    uint64_t deadline_ms;   /* loop time */
    uint64_t receive_by_ms; /* loop time: the request must be complete by then */
    uint64_t stall_by_ms;   /* loop time, 0: none; a full queue must drain to half by then */
    uint64_t unread_by_ms;  /* loop time, 0: none; an ended call's queue must be taken by then */
    bool stream_attached;
    bool app_owned;
    bool ended;
    bool request_done;
    bool headers_sent;
    bool data_deferred;
    bool want_writable;
    bool reaped;
    bool notify_request;
    bool notify_cancel;
    bool notify_writable;
    enum rpc_status cancel_why;
    int end_err;             /* what a late finish returns: EHR_ECLOSED or EHR_ETIMEDOUT */
    enum rpc_status outcome; /* what the client was told, counted at reap (invariant 16) */
    enum rpc_status final_status;
    char final_message[ENCODED_MESSAGE_BYTES];
    size_t final_message_len;
    struct rpc_trailer trailers[RPC_TRAILERS_MAX]; /* rpc_call_trailer_add */
    uint32_t trailer_count;
    struct rpc__buf out; /* framed response messages; out.data[out_pos..] not yet sent */
    size_t out_pos;
    size_t out_promised; /* bytes from out_pos the read callback promised (NO_COPY) */
    size_t out_charged;  /* bytes of `out` counted as unread replies (invariant 15) */
    rpc_cancel_cb cancel_cb;
    void *cancel_data;
    rpc_writable_cb writable_cb;
    void *writable_data;
    /* Client-streaming (upload) calls only: */
    struct rpc__buf in;  /* whole messages not yet delivered: [4-byte length][body]... */
    size_t in_pos;       /* in.data[in_pos..in.len) is still to deliver */
    size_t in_charged;   /* bytes of `in` charged to the connection's budget */
    size_t window_owed;  /* DATA bytes received but not yet credited to the stream window */
    bool paused;         /* rpc_upload_pause: deliver nothing, credit nothing */
    bool end_delivered;  /* the end callback ran */
    bool notify_message; /* messages (or the end) may be deliverable */
    rpc_upload_message_cb message_cb;
    rpc_upload_end_cb end_cb;
    void *message_data;
    uv_timer_t timer; /* the deadline */
};

/* A streaming call is a call; the distinct type only keeps the two APIs apart. */
struct rpc_stream {
    struct rpc_call call;
};

/* A client-streaming call is a call too, likewise. */
struct rpc_upload {
    struct rpc_call call;
};

static void server_pump(struct rpc_server *server);
static void conn_close(struct rpc__server_conn *conn, enum rpc_status why);
static void call_timer_arm(struct rpc_call *call);

#define NV(name, value)                                                                            \
    {                                                                                              \
        (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, sizeof(value) - 1,                \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }

static nghttp2_nv nv_make(const char *name, const char *value, size_t value_len)
{
    nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name), value_len,
                     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    return nv;
}

/* ---- handles and the pump ---- */

static void server_handle_closed(uv_handle_t *handle);

static void server_finish_close(struct rpc_server *server)
{
    EHR_ASSERT(server->torn_down && server->handles_open == 0);
    if (server->close_cb != NULL)
        server->close_cb(server, server->close_data);
    nghttp2_session_callbacks_del(server->callbacks);
    nghttp2_option_del(server->option);
    ehr_free(server->read_buf);
    ehr_free(server);
}

static void server_handle_closed(uv_handle_t *handle)
{
    struct rpc_server *server = handle->data;
    EHR_ASSERT(server->handles_open > 0);
    server->handles_open--;
    if (server->torn_down && server->handles_open == 0)
        server_finish_close(server);
}

static void call_handle_closed(uv_handle_t *handle)
{
    struct rpc_call *call = handle->data;
    struct rpc_server *server = call->server;
    ehr_free(call);
    EHR_ASSERT(server->handles_open > 0);
    server->handles_open--;
    if (server->torn_down && server->handles_open == 0)
        server_finish_close(server);
}

static void refusal_timer_cb(uv_timer_t *timer);

static void refusal_log(struct rpc_server *server, enum refusal kind, uint64_t count)
{
    if (kind == REFUSAL_STREAM_STALLED) {
        ehr_log(EHR_LOG_WARN, "rpc streams ended: the client did not read",
                "limit=%s count=%" PRIu64 " stream_stall_timeout_ms=%" PRIu64,
                refusal_limit_names[kind], count, server->config.stream_stall_timeout_ms);
        return;
    }
    if (kind == REFUSAL_FIRST_REQUEST_LATE) {
        ehr_log(EHR_LOG_WARN, "rpc connections closed: no complete request in time",
                "limit=%s count=%" PRIu64 " first_request_timeout_ms=%" PRIu64,
                refusal_limit_names[kind], count, server->config.first_request_timeout_ms);
        return;
    }
    if (kind == REFUSAL_EVICTED) {
        ehr_log(EHR_LOG_WARN, "rpc connections evicted: a newcomer took the place",
                "limit=%s count=%" PRIu64 " connections=%u connections_max=%u",
                refusal_limit_names[kind], count, server->conn_count,
                server->config.connections_max);
        return;
    }
    if (kind == REFUSAL_TLS_HANDSHAKE) {
        ehr_log(EHR_LOG_WARN, "rpc TLS handshakes failed", "limit=%s count=%" PRIu64 " last=\"%s\"",
                refusal_limit_names[kind], count, server->tls_reason);
        return;
    }
    if (kind == REFUSAL_UNREAD_REPLY_LATE) {
        ehr_log(EHR_LOG_WARN, "rpc replies dropped: the client did not read them",
                "limit=%s count=%" PRIu64 " unread_reply_timeout_ms=%" PRIu64,
                refusal_limit_names[kind], count, server->config.unread_reply_timeout_ms);
        return;
    }
    if (kind == REFUSAL_UNREAD_REPLY_BYTES) {
        ehr_log(EHR_LOG_WARN, "rpc calls refused: their clients do not read their replies",
                "limit=%s count=%" PRIu64 " unread_reply_bytes=%zu unread_reply_bytes_max=%zu",
                refusal_limit_names[kind], count, server->unread_reply_bytes,
                server->config.unread_reply_bytes_max);
        return;
    }
    if ((kind >= REFUSAL_CONNECTION_REQUEST_BYTES && kind <= REFUSAL_UNFINISHED_BYTES) ||
        kind == REFUSAL_UNFINISHED_BYTES_PER_CERTIFICATE) {
        ehr_log(EHR_LOG_WARN, "rpc requests refused: over a budget of unfinished request bytes",
                "limit=%s count=%" PRIu64 " unfinished_bytes=%zu unfinished_bytes_max=%zu",
                refusal_limit_names[kind], count,
                server->config.unfinished_bytes_max - server->request_budget,
                server->config.unfinished_bytes_max);
        return;
    }
    ehr_log(EHR_LOG_WARN, "rpc connections refused",
            "limit=%s count=%" PRIu64 " connections=%u connections_max=%u",
            refusal_limit_names[kind], count, server->conn_count, server->config.connections_max);
}

/* Log what is due; arm the timer for what is still held back. */
static void refusal_flush(struct rpc_server *server, uint64_t now_ms)
{
    uint64_t due_min = 0;
    for (int k = 0; k < REFUSAL_COUNT_; k++) {
        uint64_t count;
        if (ehr_log_limit_flush(&server->refusals[k], now_ms, &count))
            refusal_log(server, (enum refusal)k, count);
        uint64_t due = ehr_log_limit_due_ms(&server->refusals[k]);
        if (due != 0 && (due_min == 0 || due < due_min))
            due_min = due;
    }
    if (due_min != 0 && !server->torn_down)
        uv_timer_start(&server->refusal_timer, refusal_timer_cb,
                       due_min > now_ms ? due_min - now_ms : 0, 0);
}

static void refusal_timer_cb(uv_timer_t *timer)
{
    struct rpc_server *server = timer->data;
    refusal_flush(server, uv_now(server->loop));
}

/* A connection (or a stream) was refused for KIND: log it, or count it for a later line. */
static void server_refused(struct rpc_server *server, enum refusal kind)
{
    uint64_t count;
    uint64_t now = uv_now(server->loop);
    server->refused_total[kind]++;
    if (ehr_log_limit_hit(&server->refusals[kind], now, &count))
        refusal_log(server, kind, count);
    else if (!uv_is_active((uv_handle_t *)&server->refusal_timer))
        refusal_flush(server, now);
}

/* A connection's request budget refused a charge (invariants 10, 14, 19). */
static void refusal_budget_cb(void *ctx, enum rpc__budget_kind kind)
{
    if (kind == RPC__BUDGET_CERTIFICATE)
        server_refused(ctx, REFUSAL_UNFINISHED_BYTES_PER_CERTIFICATE);
    else
        server_refused(ctx, (enum refusal)(REFUSAL_CONNECTION_REQUEST_BYTES + kind));
}

static void kick_cb(uv_idle_t *idle)
{
    struct rpc_server *server = idle->data;
    uv_idle_stop(idle);
    server_pump(server);
}

/* Make sure the pump runs soon (after a call finished outside our callbacks). */
static void server_kick(struct rpc_server *server)
{
    if (!server->pumping && !server->torn_down && !uv_is_active((uv_handle_t *)&server->kick))
        uv_idle_start(&server->kick, kick_cb);
}

static void conn_mark_dirty(struct rpc__server_conn *conn)
{
    if (!conn->closing && !rpc__list_linked(&conn->link_dirty))
        rpc__list_push(&conn->server->dirty, &conn->link_dirty);
}

/* ---- calls: allocation and ownership ---- */

/* Capacity of the buffers CALL keeps for reuse. */
static size_t call_buffer_bytes(const struct rpc_call *call)
{
    return call->request.cap + call->out.cap + call->in.cap + call->reader.body.cap;
}

static struct rpc_call *call_get(struct rpc_server *server)
{
    struct rpc_call *call;
    if (!rpc__list_empty(&server->pool)) {
        struct rpc__link *link = server->pool.next;
        rpc__list_remove(link);
        server->pool_count--;
        call = RPC__CONTAINER(link, struct rpc_call, link);
        EHR_ASSERT(server->pool_buffer_bytes >= call_buffer_bytes(call));
        server->pool_buffer_bytes -= call_buffer_bytes(call);
    } else {
        /* Every call is allocated as a stream so every view is valid. */
        _Static_assert(sizeof(struct rpc_stream) == sizeof(struct rpc_upload), "one size");
        call = (struct rpc_call *)ehr_calloc(1, sizeof(struct rpc_stream));
        call->server = server;
        uv_timer_init(server->loop, &call->timer);
        call->timer.data = call;
        server->handles_open++;
        rpc__list_init(&call->link);
    }
    rpc__list_init(&call->link_pending);
    call->reader.messages_max = 1; /* unary and server-streaming take one request */
    call->end_err = EHR_ECLOSED;
    EHR_ASSERT(!call->app_owned && !call->stream_attached);
    return call;
}

/* Clear a call for reuse, keeping its buffers (within the pooled size) and its timer. */
static void call_reset(struct rpc_call *call)
{
    struct rpc__buf request = call->request, out = call->out, in = call->in;
    struct rpc__reader reader = call->reader;
    uv_timer_t timer = call->timer;
    rpc__reader_release(&reader, NULL);
    rpc__buf_recycle(&request);
    rpc__buf_recycle(&out);
    rpc__buf_recycle(&in);
    struct rpc_server *server = call->server;
    memset(call, 0, sizeof *call);
    call->server = server;
    call->request = request;
    call->out = out;
    call->in = in;
    call->reader = reader;
    call->timer = timer;
    rpc__list_init(&call->link);
    rpc__list_init(&call->link_pending);
}

/* Both owners are gone: recycle at the end of the pump (invariant 5). */
static void call_reap(struct rpc_call *call)
{
    EHR_ASSERT(!call->app_owned);
    EHR_ASSERT(!call->stream_attached);
    EHR_ASSERT(call->out_charged == 0); /* given back at call_detach (invariant 15) */
    if (call->reaped)
        return;
    call->reaped = true;
    EHR_ASSERT(call->ended); /* so its outcome is decided (invariant 16) */
    EHR_ASSERT((unsigned)call->outcome < RPC_STATUS_COUNT_);
    struct rpc_server *server = call->server;
    size_t method =
        call->method != NULL ? (size_t)(call->method - server->methods) : (size_t)RPC_METHODS_MAX;
    server->calls_ended[method][call->outcome]++;
    uv_timer_stop(&call->timer);
    rpc__list_remove(&call->link_pending);
    rpc__list_remove(&call->link);
    rpc__list_push(&call->server->reap, &call->link);
}

static void server_recycle_reaped(struct rpc_server *server)
{
    while (!rpc__list_empty(&server->reap)) {
        struct rpc__link *link = server->reap.next;
        rpc__list_remove(link);
        struct rpc_call *call = RPC__CONTAINER(link, struct rpc_call, link);
        if (server->pool_count >= RPC__POOLED_CALLS_MAX || server->closing) {
            rpc__reader_release(&call->reader, NULL);
            rpc__buf_free(&call->reader.body);
            rpc__buf_free(&call->request);
            rpc__buf_free(&call->out);
            rpc__buf_free(&call->in);
            uv_close((uv_handle_t *)&call->timer, call_handle_closed);
            continue;
        }
        call_reset(call);
        if (server->pool_buffer_bytes + call_buffer_bytes(call) > RPC__POOLED_BUFFERS_BYTES_MAX) {
            rpc__buf_free(&call->reader.body);
            rpc__buf_free(&call->request);
            rpc__buf_free(&call->out);
            rpc__buf_free(&call->in);
        }
        server->pool_buffer_bytes += call_buffer_bytes(call);
        EHR_ASSERT(server->pool_buffer_bytes <= RPC__POOLED_BUFFERS_BYTES_MAX);
        rpc__list_push(&server->pool, &call->link);
        server->pool_count++;
    }
}

static void call_notify(struct rpc_call *call, bool *flag)
{
    *flag = true;
    if (!rpc__list_linked(&call->link_pending))
        rpc__list_push(&call->server->pending, &call->link_pending);
}

static size_t call_queued_bytes(const struct rpc_call *call)
{
    return call->out.len - call->out_pos;
}

/* Count BYTES of CALL's queue as unread replies, its server's and its
 * connection's, in place of what was counted before (invariant 15). */
static void call_out_charge(struct rpc_call *call, size_t bytes)
{
    struct rpc_server *server = call->server;
    struct rpc__server_conn *conn = call->conn;
    EHR_ASSERT(conn != NULL || bytes == 0);
    EHR_ASSERT(server->unread_reply_bytes >= call->out_charged);
    server->unread_reply_bytes = server->unread_reply_bytes - call->out_charged + bytes;
    if (conn != NULL) {
        EHR_ASSERT(conn->unread_reply_bytes >= call->out_charged);
        conn->unread_reply_bytes = conn->unread_reply_bytes - call->out_charged + bytes;
        if (bytes < call->out_charged)
            conn->reply_refused = false; /* it read (or dropped) some: it may ask again */
    }
    call->out_charged = bytes;
}

/* What a connection may always hold of unread replies, whatever the
 * others hold: the half of unread_reply_bytes_max that is not first come,
 * first served, shared equally by connections_max connections
 * (invariant 15). */
static size_t server_reply_quota_bytes(const struct rpc_server *server)
{
    return server->config.unread_reply_bytes_max / 2 / server->config.connections_max;
}

/* Why a reply of BYTES (prefix included) on CALL must not be queued, or
 * NULL if it may (invariant 15): past half of unread_reply_bytes_max, its
 * connection would hold more than its quota. */
static const char *call_reply_refusal(const struct rpc_call *call, size_t bytes)
{
    const struct rpc_server *server = call->server;
    EHR_ASSERT(call->conn != NULL);
    if (server->unread_reply_bytes + bytes <= server->config.unread_reply_bytes_max / 2)
        return NULL;
    if (call->conn->unread_reply_bytes + bytes <= server_reply_quota_bytes(server))
        return NULL;
    return "the server holds many replies not yet read and your connection holds its share "
           "of them; read them, then retry";
}

/* Give back what the held request charged to the connection. */
static void call_uncharge_request(struct rpc_call *call)
{
    if (call->conn != NULL)
        rpc__budget_give(&call->conn->budget, call->request_charged);
    call->request_charged = 0;
}

/* An upload's undelivered messages: dropped, and their charge given back
 * (invariant 12). */
static void call_drop_input(struct rpc_call *call)
{
    if (call->conn != NULL)
        rpc__budget_give(&call->conn->budget, call->in_charged);
    call->in_charged = 0;
    call->in.len = 0;
    call->in_pos = 0;
}

/*
 * The stream is gone (closed, reset, or its connection closed). The handler,
 * if it holds the call, is told once (invariant 3); the call is reaped when
 * the handler has finished it too.
 */
static void call_detach(struct rpc_call *call, enum rpc_status why)
{
    struct rpc__server_conn *conn = call->conn;
    EHR_ASSERT(call->stream_attached && conn != NULL);
    rpc__list_remove(&call->link);
    EHR_ASSERT(conn->call_count > 0);
    conn->call_count--;
    rpc__reader_release(&call->reader, &conn->budget);
    call_uncharge_request(call);
    call_drop_input(call);
    call_out_charge(call, 0); /* nothing more of it leaves */
    if (conn->io.session != NULL)
        nghttp2_session_set_stream_user_data(conn->io.session, call->stream_id, NULL);
    call->conn = NULL;
    call->stream_attached = false;
    uv_timer_stop(&call->timer);
    if (!call->ended)
        call->outcome = why; /* no status was decided: what its handler is told */
    if (call->app_owned && !call->ended) {
        call->end_err = EHR_ECLOSED;
        call->cancel_why = why;
        call_notify(call, &call->notify_cancel);
    }
    call->ended = true;
    if (!call->app_owned)
        call_reap(call);
}

/* ---- calls: output ---- */

static void call_resume(struct rpc_call *call)
{
    if (call->data_deferred && call->conn != NULL) {
        call->data_deferred = false;
        nghttp2_session_resume_data(call->conn->io.session, call->stream_id);
    }
}

/* The custom trailing metadata of CALL as header fields into OUT (room for
 * RPC_TRAILERS_MAX). Returns how many. */
static size_t call_custom_trailers(const struct rpc_call *call, nghttp2_nv *out)
{
    for (uint32_t i = 0; i < call->trailer_count; i++)
        out[i] = nv_make(call->trailers[i].name, call->trailers[i].value,
                         strlen(call->trailers[i].value));
    return call->trailer_count;
}

/* nghttp2 data provider: promise queued bytes (copied in send_data_cb), then trailers. */
static ssize_t call_read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    struct rpc_call *call = source->ptr;
    EHR_ASSERT(call->stream_id == stream_id);
    size_t queued = call_queued_bytes(call);
    if (queued == 0 && !call->ended) {
        call->data_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = queued < length ? queued : length;
    if (n > 0)
        *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    call->out_promised = n;
    if (n == queued && call->ended) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        const char *status = rpc__status_text(call->final_status);
        nghttp2_nv trailers[2 + RPC_TRAILERS_MAX];
        size_t count = 0;
        trailers[count++] = nv_make("grpc-status", status, strlen(status));
        if (call->final_message_len > 0)
            trailers[count++] =
                nv_make("grpc-message", call->final_message, call->final_message_len);
        count += call_custom_trailers(call, trailers + count);
        if (nghttp2_submit_trailer(session, stream_id, trailers, count) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

static int server_send_data_cb(nghttp2_session *session, nghttp2_frame *frame,
                               const uint8_t *framehd, size_t length, nghttp2_data_source *source,
                               void *user_data)
{
    struct rpc__server_conn *conn = user_data;
    struct rpc_call *call = source->ptr;
    EHR_ASSERT(frame->data.padlen == 0); /* we never pad */
    EHR_ASSERT(length == call->out_promised && length <= call_queued_bytes(call));
    uint8_t *out = rpc__conn_out_reserve(&conn->io, 9 + length);
    if (out == NULL)
        return NGHTTP2_ERR_WOULDBLOCK;
    memcpy(out, framehd, 9);
    memcpy(out + 9, call->out.data + call->out_pos, length);
    rpc__conn_out_commit(&conn->io, 9 + length);
    call->out_pos += length;
    call->out_promised = 0;
    if (call->out_pos == call->out.len) {
        call->out.len = 0;
        call->out_pos = 0;
        if (call->unread_by_ms != 0) { /* all taken in time (invariant 17) */
            call->unread_by_ms = 0;
            call_timer_arm(call);
        }
    }
    call_out_charge(call, call_queued_bytes(call)); /* in the output now: read, as we count */
    if (call->want_writable && call->app_owned && !call->ended &&
        call_queued_bytes(call) <= conn->server->config.stream_queue_bytes_max / 2) {
        call->want_writable = false;
        call->stall_by_ms = 0; /* the client reads (invariant 8) */
        call_notify(call, &call->notify_writable);
    }
    return 0;
}

/* CALL ended with response bytes still queued: its client must take them
 * all within unread_reply_timeout_ms of now (invariant 17). */
static void call_unread_arm(struct rpc_call *call)
{
    EHR_ASSERT(call->ended);
    if (call_queued_bytes(call) == 0)
        return;
    call->unread_by_ms = uv_now(call->server->loop) + call->server->config.unread_reply_timeout_ms;
    call_timer_arm(call);
}

/*
 * Decide the call's final status and put it on the wire: trailers after the
 * queued messages if headers went out, a trailers-only response otherwise.
 * HTTP_STATUS is the :status of a trailers-only response. Precondition: the
 * stream is attached and the call has not ended (invariant 2).
 */
static void call_end(struct rpc_call *call, const char *http_status, enum rpc_status status,
                     const char *message, bool discard_queued, int end_err)
{
    EHR_ASSERT(call->stream_attached && call->conn != NULL);
    EHR_ASSERT(!call->ended);
    call->ended = true;
    call->end_err = end_err;
    call->outcome = status;
    uv_timer_stop(&call->timer);
    call->final_status = status;
    call->final_message_len =
        rpc__percent_encode(message, call->final_message, sizeof call->final_message);
    call_drop_input(call); /* an upload's undelivered messages go with its end */
    if (discard_queued) {
        call->out.len = call->out_pos + call->out_promised; /* keep what nghttp2 was promised */
        call_out_charge(call, call_queued_bytes(call));
    }
    nghttp2_session *session = call->conn->io.session;
    if (call->headers_sent) {
        call_resume(call);
    } else {
        call->headers_sent = true;
        const char *status_text = rpc__status_text(status);
        nghttp2_nv nv[4 + RPC_TRAILERS_MAX];
        size_t count = 0;
        nv[count++] = nv_make(":status", http_status, strlen(http_status));
        nv[count++] = (nghttp2_nv)NV("content-type", "application/grpc");
        nv[count++] = nv_make("grpc-status", status_text, strlen(status_text));
        if (call->final_message_len > 0)
            nv[count++] = nv_make("grpc-message", call->final_message, call->final_message_len);
        count += call_custom_trailers(call, nv + count);
        if (nghttp2_submit_response(session, call->stream_id, nv, count, NULL) != 0)
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
                                      NGHTTP2_INTERNAL_ERROR);
    }
    call_unread_arm(call);
    conn_mark_dirty(call->conn);
}

/* End CALL with STATUS as call_end does, and tell its handler if one holds
 * it (an upload is with its handler while its request still arrives). */
static void call_end_told(struct rpc_call *call, enum rpc_status status, const char *message,
                          int end_err)
{
    call_end(call, "200", status, message, true, end_err);
    if (call->app_owned) {
        call->cancel_why = status;
        call_notify(call, &call->notify_cancel);
    }
}

/* Submit the response headers with our data provider (the first message or the end). */
static void call_send_headers(struct rpc_call *call)
{
    EHR_ASSERT(!call->headers_sent);
    call->headers_sent = true;
    nghttp2_nv nv[2] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider provider = {.source.ptr = call, .read_callback = call_read_cb};
    nghttp2_session *session = call->conn->io.session;
    if (nghttp2_submit_response(session, call->stream_id, nv, 2, &provider) != 0)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
                                  NGHTTP2_INTERNAL_ERROR);
}

/* Append one framed message to the call's queue. */
static void call_queue_message(struct rpc_call *call, const uint8_t *message, size_t len)
{
    if (call->out_pos == call->out.len) {
        call->out.len = 0;
        call->out_pos = 0;
    } else if (call->out_pos > call->out.cap / 2) {
        /* Compacting is safe: a promised frame is copied from out_pos later. */
        memmove(call->out.data, call->out.data + call->out_pos, call_queued_bytes(call));
        call->out.len -= call->out_pos;
        call->out_pos = 0;
    }
    uint8_t *p = rpc__buf_reserve(&call->out, RPC__PREFIX_BYTES + len);
    rpc__prefix_write(p, (uint32_t)len);
    if (len > 0)
        memcpy(p + RPC__PREFIX_BYTES, message, len);
    call->out.len += RPC__PREFIX_BYTES + len;
    call_out_charge(call, call_queued_bytes(call));
}

static void call_timer_cb(uv_timer_t *timer);

/* Arm the call's timer for what comes first: the client's deadline, or the
 * end of the time the request has to arrive whole (until it has). */
static void call_timer_arm(struct rpc_call *call)
{
    uint64_t due = UINT64_MAX;
    if (call->ended) {
        /* Only its answer's time to be taken is left (invariant 17). */
        if (call->unread_by_ms != 0)
            due = call->unread_by_ms;
    } else {
        if (call->has_deadline)
            due = call->deadline_ms;
        if (!call->request_done && !call->paused && call->receive_by_ms < due)
            due = call->receive_by_ms;
        if (call->stall_by_ms != 0 && call->stall_by_ms < due)
            due = call->stall_by_ms;
    }
    if (due == UINT64_MAX) {
        uv_timer_stop(&call->timer);
        return;
    }
    uint64_t now = uv_now(call->server->loop);
    uv_timer_start(&call->timer, call_timer_cb, due > now ? due - now : 0, 0);
}

/*
 * The client has not read CALL (a stream) for stream_stall_timeout_ms: its
 * queue filled and never drained to half. A status cannot reach it (the
 * trailers would wait behind the unread messages), so the stream is reset
 * with ENHANCE_YOUR_CALM, which gRPC clients report as RESOURCE_EXHAUSTED;
 * its queue is freed now and the handler is told RESOURCE_EXHAUSTED. If the
 * client does not read its socket at all (the connection's output is full
 * and reading stopped, so not even the reset can leave), the connection is
 * closed (invariant 8).
 */
static void call_stalled(struct rpc_call *call)
{
    struct rpc__server_conn *conn = call->conn;
    struct rpc_server *server = call->server;
    EHR_ASSERT(call->stream_attached);
    EHR_ASSERT(!call->ended);
    call->ended = true;
    call->end_err = EHR_ECLOSED;
    call->outcome = RPC_STATUS_RESOURCE_EXHAUSTED; /* as gRPC clients read the reset */
    call->stall_by_ms = 0;
    call->want_writable = false;
    uv_timer_stop(&call->timer);
    call->out.len = call->out_pos + call->out_promised; /* keep what nghttp2 was promised */
    if (call->out_promised == 0) {
        call->out_pos = 0;
        rpc__buf_free(&call->out);
    }
    call_out_charge(call, call_queued_bytes(call));
    if (call->app_owned) {
        call->cancel_why = RPC_STATUS_RESOURCE_EXHAUSTED;
        call_notify(call, &call->notify_cancel);
    }
    server_refused(server, REFUSAL_STREAM_STALLED);
    if (conn->io.read_stopped) {
        conn_close(conn, RPC_STATUS_RESOURCE_EXHAUSTED);
        return;
    }
    nghttp2_submit_rst_stream(conn->io.session, NGHTTP2_FLAG_NONE, call->stream_id,
                              NGHTTP2_ENHANCE_YOUR_CALM);
    conn_mark_dirty(conn);
}

/*
 * CALL ended unread_reply_timeout_ms ago and its client has still not
 * taken its answer (invariant 17): it gives no window, or does not read
 * its socket. As in call_stalled, the queue is freed now and the stream
 * reset with ENHANCE_YOUR_CALM (gRPC clients report RESOURCE_EXHAUSTED,
 * which is how the call is counted); a connection whose output is full
 * and no longer read is closed. The handler finished it already.
 */
static void call_unread(struct rpc_call *call)
{
    struct rpc__server_conn *conn = call->conn;
    EHR_ASSERT(call->stream_attached);
    EHR_ASSERT(call->ended);
    EHR_ASSERT(call_queued_bytes(call) > 0);
    call->unread_by_ms = 0;
    call->outcome = RPC_STATUS_RESOURCE_EXHAUSTED;      /* its answer never reached it (inv. 16) */
    call->out.len = call->out_pos + call->out_promised; /* keep what nghttp2 was promised */
    if (call->out_promised == 0) {
        call->out_pos = 0;
        rpc__buf_free(&call->out);
    }
    call_out_charge(call, call_queued_bytes(call));
    server_refused(call->server, REFUSAL_UNREAD_REPLY_LATE);
    if (conn->io.read_stopped) {
        conn_close(conn, RPC_STATUS_RESOURCE_EXHAUSTED);
        return;
    }
    nghttp2_submit_rst_stream(conn->io.session, NGHTTP2_FLAG_NONE, call->stream_id,
                              NGHTTP2_ENHANCE_YOUR_CALM);
    conn_mark_dirty(conn);
}

static void call_timer_cb(uv_timer_t *timer)
{
    struct rpc_call *call = timer->data;
    struct rpc_server *server = call->server;
    if (!call->stream_attached)
        return;
    uint64_t now = uv_now(server->loop);
    if (call->ended) {
        if (call->unread_by_ms == 0)
            return;
        if (now < call->unread_by_ms) {
            call_timer_arm(call);
            return;
        }
        call_unread(call);
        server_pump(server);
        return;
    }
    if (!call->request_done && !call->paused && now >= call->receive_by_ms) {
        char message[128];
        snprintf(message, sizeof message,
                 call->method != NULL && call->method->upload
                     ? "no request message arrived within %" PRIu64 " ms"
                     : "the request was not complete within %" PRIu64 " ms",
                 server->config.request_receive_timeout_ms);
        /* A unary or server-streaming call is not dispatched yet, so there
         * is no handler to tell; an upload's handler is told. The reset
         * that follows our END_STREAM frees what the request buffered. */
        call_end_told(call, RPC_STATUS_DEADLINE_EXCEEDED, message, EHR_ETIMEDOUT);
        server_pump(server);
        return;
    }
    if (call->stall_by_ms != 0 && now >= call->stall_by_ms) {
        call_stalled(call);
        server_pump(server);
        return;
    }
    if (!call->has_deadline || now < call->deadline_ms) {
        call_timer_arm(call);
        return;
    }
    call_end(call, "200", RPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", true, EHR_ETIMEDOUT);
    if (call->app_owned) {
        call->cancel_why = RPC_STATUS_DEADLINE_EXCEEDED;
        call_notify(call, &call->notify_cancel);
    }
    server_pump(server);
}

/* ---- calls: the request side (inside nghttp2 callbacks: record and queue only) ---- */

static const struct rpc__method *method_find(const struct rpc_server *server, const uint8_t *path,
                                             size_t len)
{
    for (uint32_t i = 0; i < server->method_count; i++) {
        const struct rpc__method *m = &server->methods[i];
        if (m->path_len == len && memcmp(m->path, path, len) == 0)
            return m;
    }
    return NULL;
}

static bool value_is(const uint8_t *value, size_t len, const char *text)
{
    size_t n = strlen(text);
    return len == n && memcmp(value, text, n) == 0;
}

static bool content_type_is_grpc(const uint8_t *value, size_t len)
{
    static const char base[] = "application/grpc";
    size_t n = sizeof base - 1;
    if (len < n || memcmp(value, base, n) != 0)
        return false;
    return len == n || value[n] == '+' || value[n] == ';';
}

/* The request headers are complete: refuse what we cannot serve, or arm the deadline. */
static void call_headers_done(struct rpc_call *call)
{
    char message[RPC_METHOD_PATH_BYTES_MAX + 96];
    uint32_t f = call->header_faults;
    struct rpc_server *server = call->server;
    if (f & FAULT_HEADERS_TOO_BIG) {
        snprintf(message, sizeof message, "request headers over the limit of %u bytes",
                 server->config.header_list_bytes_max);
        call_end(call, "431", RPC_STATUS_RESOURCE_EXHAUSTED, message, true, EHR_ECLOSED);
    } else if (!(f & SEEN_POST)) {
        call_end(call, "405", RPC_STATUS_INTERNAL, "gRPC requests must use POST", true,
                 EHR_ECLOSED);
    } else if (!(f & SEEN_GRPC_CONTENT_TYPE)) {
        call_end(call, "415", RPC_STATUS_INTERNAL, "content-type must be application/grpc", true,
                 EHR_ECLOSED);
    } else if (!(f & SEEN_TE_TRAILERS)) {
        call_end(call, "400", RPC_STATUS_INTERNAL, "te: trailers is required", true, EHR_ECLOSED);
    } else if (f & FAULT_BAD_TIMEOUT) {
        call_end(call, "400", RPC_STATUS_INTERNAL, "malformed grpc-timeout", true, EHR_ECLOSED);
    } else if (f & FAULT_BAD_ENCODING) {
        snprintf(message, sizeof message, "grpc-encoding %s is not supported (identity only)",
                 call->encoding);
        call_end(call, "200", RPC_STATUS_UNIMPLEMENTED, message, true, EHR_ECLOSED);
    } else if (call->method == NULL) {
        snprintf(message, sizeof message, "unknown method %s", call->path);
        call_end(call, "200", RPC_STATUS_UNIMPLEMENTED, message, true, EHR_ECLOSED);
    } else {
        uint64_t now = uv_now(server->loop);
        if (call->has_deadline)
            call->deadline_ms = now + call->timeout_ms;
        call->receive_by_ms = now + server->config.request_receive_timeout_ms;
        call_timer_arm(call);
        if (call->method->upload) {
            /* Dispatched now, before any message (invariant 12); the
             * connection counts as used (invariant 9), the upload's own
             * receive timer bounds it from here. */
            call->reader.messages_max = 0;
            struct rpc__server_conn *conn = call->conn;
            if (!conn->first_request_done) {
                conn->first_request_done = true;
                if (!conn->io.socketless)
                    uv_timer_stop(&conn->first_request_timer);
            }
            call_notify(call, &call->notify_request);
        }
    }
}

/* END_STREAM from the client: the request is complete (or broken). */
static void call_request_done(struct rpc_call *call)
{
    call->request_done = true;
    if (call->ended)
        return;
    struct rpc__server_conn *conn = call->conn;
    if (!conn->first_request_done) { /* invariant 9 */
        conn->first_request_done = true;
        if (!conn->io.socketless)
            uv_timer_stop(&conn->first_request_timer);
    }
    call_timer_arm(call); /* the request's own time limit no longer applies */
    if (!rpc__reader_idle(&call->reader))
        call_end_told(call, RPC_STATUS_INTERNAL, "request ended inside a message (truncated)",
                      EHR_ECLOSED);
    else if (call->method != NULL && call->method->upload)
        call_notify(call, &call->notify_message); /* the end, after the messages */
    else if (!call->have_request)
        call_end(call, "200", RPC_STATUS_INTERNAL, "request has no message", true, EHR_ECLOSED);
    else
        call_notify(call, &call->notify_request);
}

/* One whole message of an upload: queued for its handler, charged to the
 * budgets until delivered (invariant 12). */
static enum rpc_status call_on_upload_message(struct rpc_call *call, const uint8_t *message,
                                              size_t len, ehr_diag *diag)
{
    struct rpc__server_conn *conn = call->conn;
    enum rpc_status st = rpc__budget_take(&conn->budget, len, diag);
    if (st != RPC_STATUS_OK)
        return st;
    call->in_charged += len;
    uint8_t *p = rpc__buf_reserve(&call->in, 4 + len);
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    if (len > 0)
        memcpy(p + 4, message, len);
    call->in.len += 4 + len;
    call->receive_by_ms =
        uv_now(call->server->loop) + call->server->config.request_receive_timeout_ms;
    call_notify(call, &call->notify_message);
    return RPC_STATUS_OK;
}

static enum rpc_status call_on_request(void *ctx, const uint8_t *message, size_t len,
                                       ehr_diag *diag)
{
    struct rpc_call *call = ctx;
    struct rpc__server_conn *conn = call->conn;
    if (call->method->upload)
        return call_on_upload_message(call, message, len, diag);
    EHR_ASSERT(!call->have_request); /* the reader allows one message */
    enum rpc_status st = rpc__budget_take(&conn->budget, len, diag);
    if (st != RPC_STATUS_OK)
        return st;
    call->request_charged = len;
    if (message == call->reader.body.data) {
        /* Gathered across chunks: take the reader's buffer instead of copying. */
        struct rpc__buf taken = call->reader.body;
        call->reader.body = call->request;
        call->request = taken;
    } else if (len > 0) {
        memcpy(rpc__buf_reserve(&call->request, len), message, len);
    }
    call->request.len = len;
    call->have_request = true;
    return RPC_STATUS_OK;
}

static struct rpc_call *stream_call(nghttp2_session *session, int32_t stream_id)
{
    return nghttp2_session_get_stream_user_data(session, stream_id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct rpc__server_conn *conn = user_data;
    struct rpc_server *server = conn->server;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (conn->call_count >= server->config.streams_per_connection_max) {
        /* nghttp2 refuses these itself from the moment our SETTINGS are
         * queued (its pending limit); this check is the belt to that. */
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    struct rpc_call *call = call_get(server);
    call->conn = conn;
    call->conn_id = conn->id;
    call->peer = conn->peer;
    call->stream_id = frame->hd.stream_id;
    call->stream_attached = true;
    rpc__list_push(&conn->calls, &call->link);
    conn->call_count++;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *user_data)
{
    struct rpc__server_conn *conn = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers from a client carry nothing we use */
    struct rpc_call *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL || (call->header_faults & FAULT_HEADERS_TOO_BIG))
        return 0;
    call->header_bytes += (uint32_t)(name_len + value_len + 32);
    if (call->header_bytes > conn->server->config.header_list_bytes_max) {
        call->header_faults |= FAULT_HEADERS_TOO_BIG;
        return 0;
    }
    if (value_is(name, name_len, ":method")) {
        if (value_is(value, value_len, "POST"))
            call->header_faults |= SEEN_POST;
    } else if (value_is(name, name_len, ":path")) {
        size_t n = value_len < RPC_METHOD_PATH_BYTES_MAX ? value_len : RPC_METHOD_PATH_BYTES_MAX;
        rpc__percent_decode(value, n, call->path, sizeof call->path);
        call->method = method_find(conn->server, value, value_len);
    } else if (value_is(name, name_len, "content-type")) {
        if (content_type_is_grpc(value, value_len))
            call->header_faults |= SEEN_GRPC_CONTENT_TYPE;
    } else if (value_is(name, name_len, "te")) {
        if (value_is(value, value_len, "trailers"))
            call->header_faults |= SEEN_TE_TRAILERS;
    } else if (value_is(name, name_len, "grpc-timeout")) {
        if (rpc__timeout_parse(value, value_len, &call->timeout_ms) == 0)
            call->has_deadline = true;
        else
            call->header_faults |= FAULT_BAD_TIMEOUT;
    } else if (value_is(name, name_len, "grpc-encoding")) {
        if (!value_is(value, value_len, "identity")) {
            call->header_faults |= FAULT_BAD_ENCODING;
            rpc__percent_decode(value, value_len < 16 ? value_len : 16, call->encoding,
                                sizeof call->encoding);
        }
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    struct rpc_call *call = stream_call(session, frame->hd.stream_id);
    if (call == NULL)
        return 0;
    /* Only a request's progress keeps the connection from being idle:
     * PINGs and other control frames cost a holder nothing to send. */
    struct rpc__server_conn *conn = user_data;
    if (!conn->io.socketless) {
        uv_timer_again(&conn->idle_timer);
        conn->progress_ms = uv_now(conn->server->loop);
    }
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        call_headers_done(call);
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        call_request_done(call);
    return 0;
}

/*
 * Credit an upload's stream window with what it received, once its handler
 * has taken every whole message and is not paused (invariant 12): until
 * then the client can send at most one stream window more.
 */
static void call_credit(struct rpc_call *call)
{
    if (call->window_owed == 0 || call->conn == NULL || call->ended || call->request_done)
        return;
    if (call->paused || call->in_pos < call->in.len)
        return;
    nghttp2_session_consume_stream(call->conn->io.session, call->stream_id, call->window_owed);
    call->window_owed = 0;
    conn_mark_dirty(call->conn);
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    struct rpc__server_conn *conn = user_data;
    struct rpc_call *call = stream_call(session, stream_id);
    /* Flow control is ours (no automatic WINDOW_UPDATE): the connection's
     * window is credited at once, a stream's at once too except an
     * upload's, which waits for its handler (call_credit). Our budgets,
     * not the windows, bound what we buffer. */
    bool upload = call != NULL && !call->ended && call->method != NULL && call->method->upload;
    if (upload) {
        nghttp2_session_consume_connection(session, len);
        call->window_owed += len;
    } else {
        nghttp2_session_consume(session, stream_id, len);
    }
    if (call == NULL || call->ended)
        return 0; /* refused already: the rest is dropped */
    ehr_diag why;
    enum rpc_status status =
        rpc__reader_feed(&call->reader, data, len, conn->server->config.message_bytes_max,
                         &conn->budget, call_on_request, call, &why);
    if (status != RPC_STATUS_OK) {
        call_end_told(call, status, why.msg, EHR_ECLOSED);
    } else if (upload) {
        call_credit(call);
        call_timer_arm(call);
    }
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct rpc_call *call = stream_call(session, frame->hd.stream_id);
    /* We ended the stream before the client finished sending (an early
     * refusal): tell it to stop, as HTTP/2 asks (RFC 9113 8.1). */
    if (call != NULL && !call->request_done)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct rpc_call *call = stream_call(session, stream_id);
    if (call != NULL)
        call_detach(call, RPC_STATUS_CANCELLED);
    return 0;
}

/* ---- connections ---- */

static void conn_handle_closed(uv_handle_t *handle)
{
    struct rpc__server_conn *conn = handle->data;
    struct rpc_server *server = conn->server;
    EHR_ASSERT(conn->handles_open > 0);
    if (--conn->handles_open == 0) {
        rpc__conn_free_buffers(&conn->io);
        ehr_free(conn);
    }
    EHR_ASSERT(server->handles_open > 0);
    server->handles_open--;
    if (server->torn_down && server->handles_open == 0)
        server_finish_close(server);
}

/* The entry of the client KEY in LIST if it has open connections, else
 * NULL. A scan of at most connections_max entries, on accept (addresses)
 * or a completed handshake (certificates) only. */
static struct rpc__client *client_find(const struct rpc__link *list,
                                       const uint8_t key[CLIENT_KEY_BYTES])
{
    for (struct rpc__link *l = list->next; l != list; l = l->next) {
        struct rpc__client *e = RPC__CONTAINER(l, struct rpc__client, link);
        if (memcmp(e->key, key, CLIENT_KEY_BYTES) == 0)
            return e;
    }
    return NULL;
}

/* Count one more connection of the client KEY in LIST: in ENTRY, its entry
 * found by client_find, or, if NULL, in a new one with REQUEST_BUDGET.
 * Returns the entry (owned by LIST until client_leave frees it). */
static struct rpc__client *client_join(struct rpc__link *list, struct rpc__client *entry,
                                       const uint8_t key[CLIENT_KEY_BYTES], size_t request_budget)
{
    if (entry == NULL) {
        entry = ehr_calloc(1, sizeof *entry);
        memcpy(entry->key, key, CLIENT_KEY_BYTES);
        entry->request_budget = request_budget;
        rpc__list_push(list, &entry->link);
    }
    EHR_ASSERT(memcmp(entry->key, key, CLIENT_KEY_BYTES) == 0);
    entry->connection_count++;
    return entry;
}

/* One connection fewer for ENTRY; the entry goes with its last, its
 * request budget whole again (REQUEST_BUDGET, as client_join gave it). */
static void client_leave(struct rpc__client *entry, size_t request_budget)
{
    EHR_ASSERT(entry->connection_count > 0);
    if (--entry->connection_count > 0)
        return;
    /* Every byte its connections' calls took came back (invariant 10). */
    EHR_ASSERT(entry->request_budget == request_budget);
    rpc__list_remove(&entry->link);
    ehr_free(entry);
}

/* CONN no longer counts for its address nor for its certificate.
 * Precondition: no call of CONN holds request bytes. */
static void conn_clients_leave(struct rpc__server_conn *conn)
{
    if (conn->address != NULL) {
        client_leave(conn->address, conn->server->config.unfinished_bytes_per_address_max);
        conn->address = NULL;
        conn->budget.address_bytes = NULL;
    }
    if (conn->certificate != NULL) {
        /* invariants 18, 19 */
        client_leave(conn->certificate, conn->server->config.unfinished_bytes_per_certificate_max);
        conn->certificate = NULL;
        conn->budget.certificate_bytes = NULL;
    }
}

/*
 * Close a connection now (never from inside an nghttp2 callback): every
 * call still attached is detached, its handler told WHY.
 */
static void conn_close(struct rpc__server_conn *conn, enum rpc_status why)
{
    struct rpc_server *server = conn->server;
    if (conn->closing)
        return;
    conn->closing = true;
    EHR_ASSERT(server->conn_count > 0);
    server->conn_count--;
    rpc__list_remove(&conn->link_dirty);
    rpc__list_remove(&conn->link_all);
    rpc__list_remove(&conn->link_tls_waiting);
    while (!rpc__list_empty(&conn->calls))
        call_detach(RPC__CONTAINER(conn->calls.next, struct rpc_call, link), why);
    EHR_ASSERT(conn->call_count == 0);
    EHR_ASSERT(conn->unread_reply_bytes == 0); /* given back by call_detach (invariant 15) */
    conn_clients_leave(conn);
    /* With no connection left, every request byte came back (invariant 14). */
    if (server->conn_count == 0)
        EHR_ASSERT(server->request_budget == server->config.unfinished_bytes_max);
    if (conn->io.session != NULL) {
        nghttp2_session_del(conn->io.session);
        conn->io.session = NULL;
    }
    if (conn->io.socketless)
        return; /* rpc__server_conn_close frees it */
    uv_read_stop((uv_stream_t *)&conn->io.tcp);
    uv_close((uv_handle_t *)&conn->io.tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&conn->idle_timer, conn_handle_closed);
    uv_close((uv_handle_t *)&conn->first_request_timer, conn_handle_closed);
}

/* Produce and write what the session has; close when HTTP/2 says we are done. */
static void conn_flush(struct rpc__server_conn *conn)
{
    if (conn->closing)
        return;
    int rv = rpc__conn_flush(&conn->io);
    if (rv != 0) {
        ehr_log(EHR_LOG_DEBUG, "rpc connection write failed", "err=%d", rv);
        conn_close(conn, RPC_STATUS_CANCELLED);
        return;
    }
    nghttp2_session *session = conn->io.session;
    if (conn->close_after_write || session == NULL ||
        (!nghttp2_session_want_read(session) && !nghttp2_session_want_write(session))) {
        if (rpc__conn_output_bytes(&conn->io) == 0)
            conn_close(conn, RPC_STATUS_CANCELLED);
        else
            conn->close_after_write = true;
        return;
    }
    if (!conn->io.socketless && !conn->io.read_stopped &&
        rpc__conn_output_bytes(&conn->io) >= conn->io.output_bytes_max) {
        /* The peer does not read: stop reading its requests until it does. */
        uv_read_stop((uv_stream_t *)&conn->io.tcp);
        conn->io.read_stopped = true;
    }
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void conn_write_done(struct rpc__conn *io, int status)
{
    struct rpc__server_conn *conn = (struct rpc__server_conn *)io;
    struct rpc_server *server = conn->server;
    if (conn->closing)
        return;
    if (status < 0) {
        conn_close(conn, RPC_STATUS_CANCELLED);
    } else {
        if (io->read_stopped && rpc__conn_output_bytes(io) < io->output_bytes_max / 2) {
            io->read_stopped = false;
            uv_read_start((uv_stream_t *)&io->tcp, rpc__conn_alloc_cb, conn_read_cb);
        }
        conn_mark_dirty(conn);
    }
    server_pump(server);
}

/* An HTTP/1.x request line starts with an upper-case method and a space. */
static bool conn_looks_http1(const struct rpc__server_conn *conn)
{
    uint32_t i = 0;
    while (i < conn->first_len && conn->first_bytes[i] >= 'A' && conn->first_bytes[i] <= 'Z')
        i++;
    return i > 0 && i < conn->first_len && conn->first_bytes[i] == ' ';
}

static void conn_answer_http1(struct rpc__server_conn *conn)
{
    static const char body[] = "this server speaks gRPC over HTTP/2 (prior knowledge) only\n";
    char response[256];
    int n = snprintf(response, sizeof response,
                     "HTTP/1.1 505 HTTP Version Not Supported\r\n"
                     "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     sizeof body - 1, body);
    EHR_ASSERT(n > 0 && (size_t)n < sizeof response);
    uint8_t *out = rpc__conn_out_reserve(&conn->io, (size_t)n);
    if (out != NULL) {
        memcpy(out, response, (size_t)n);
        rpc__conn_out_commit(&conn->io, (size_t)n);
    }
    conn->close_after_write = true;
    conn_mark_dirty(conn);
}

/* Bytes from the client into nghttp2 (which calls the on_* functions above). */
static void conn_recv(struct rpc__server_conn *conn, const uint8_t *data, size_t len)
{
    if (conn->io.session == NULL)
        return; /* answered as HTTP/1.x already: the rest is ignored */
    if (conn->first_len < FIRST_BYTES_KEPT) {
        size_t take = FIRST_BYTES_KEPT - conn->first_len;
        if (take > len)
            take = len;
        memcpy(conn->first_bytes + conn->first_len, data, take);
        conn->first_len += (uint32_t)take;
    }
    ssize_t rv = nghttp2_session_mem_recv(conn->io.session, data, len);
    if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC && conn_looks_http1(conn)) {
        ehr_log(EHR_LOG_DEBUG, "rpc refused an HTTP/1.x request", "%s", "answer=505");
        nghttp2_session_del(conn->io.session);
        conn->io.session = NULL;
        while (!rpc__list_empty(&conn->calls))
            call_detach(RPC__CONTAINER(conn->calls.next, struct rpc_call, link),
                        RPC_STATUS_CANCELLED);
        conn_answer_http1(conn);
        return;
    }
    if (rv < 0) {
        ehr_log(EHR_LOG_DEBUG, "rpc connection protocol error", "err=\"%s\"",
                nghttp2_strerror((int)rv));
        /* nghttp2 may have queued a GOAWAY: let it out, then close. */
        conn->close_after_write = true;
    }
    conn_mark_dirty(conn);
}

static int conn_recv_plain(struct rpc__conn *io, const uint8_t *data, size_t len)
{
    conn_recv((struct rpc__server_conn *)io, data, len);
    return 0;
}

/*
 * A TLS handshake is complete, before any of its plaintext is read: under
 * mutual TLS the connection counts for its client's certificate, or is
 * closed at once if that certificate holds connections_per_certificate_max
 * already (invariant 18). Returns non-zero when it closed it.
 */
static int conn_tls_opened(struct rpc__conn *io)
{
    struct rpc__server_conn *conn = (struct rpc__server_conn *)io;
    struct rpc_server *server = conn->server;
    EHR_ASSERT(conn->certificate == NULL);
    EHR_ASSERT(conn->budget.certificate_bytes == NULL);
    /* No plaintext was read: nothing was charged that the certificate's
     * budget would not get back (invariant 19). */
    EHR_ASSERT(conn->call_count == 0);
    EHR_ASSERT(conn->request_budget == server->config.connection_request_bytes_max);
    uint8_t key[CLIENT_KEY_BYTES];
    if (rpc__tls_peer_fingerprint(io, key) != 0)
        return 0; /* no client certificate was asked: not mutual TLS */
    struct rpc__client *entry = client_find(&server->certificates, key);
    if (entry != NULL &&
        entry->connection_count >= server->config.connections_per_certificate_max) {
        server_refused(server, REFUSAL_CONNECTIONS_PER_CERTIFICATE);
        conn_close(conn, RPC_STATUS_CANCELLED); /* it holds no call yet */
        return 1;
    }
    conn->certificate = client_join(&server->certificates, entry, key,
                                    server->config.unfinished_bytes_per_certificate_max);
    conn->budget.certificate_bytes = &conn->certificate->request_budget;
    return 0;
}

static void tls_wake_cb(uv_idle_t *idle);

/* Ciphertext from a TLS client: its plaintext to conn_recv; a failed
 * handshake is counted and logged once per interval, its alert let out
 * before the close (tls.c). */
static void conn_recv_tls(struct rpc__server_conn *conn, const uint8_t *data, size_t len)
{
    struct rpc_server *server = conn->server;
    bool was_open = rpc__tls_open(&conn->io);
    if (!was_open && server->tls_steps >= server->config.tls_handshakes_per_turn_max) {
        rpc__tls_stash(&conn->io, data, len); /* invariant 13 */
        if (!rpc__list_linked(&conn->link_tls_waiting))
            rpc__list_push(&server->tls_waiting, &conn->link_tls_waiting);
        if (!conn->tls_paused) {
            uv_read_stop((uv_stream_t *)&conn->io.tcp);
            conn->tls_paused = true;
        }
        server->tls_deferred++;
        uv_idle_start(&server->tls_wake, tls_wake_cb);
        return;
    }
    if (!was_open)
        server->tls_steps++;
    ehr_diag why;
    int rv = rpc__tls_recv(&conn->io, data, len, conn_tls_opened, conn_recv_plain, &why);
    if (rv != 0) {
        if (!was_open && rv == EHR_EPROTO) {
            snprintf(conn->server->tls_reason, sizeof conn->server->tls_reason, "%.*s",
                     (int)sizeof conn->server->tls_reason - 1, why.msg);
            server_refused(conn->server, REFUSAL_TLS_HANDSHAKE);
        }
        conn->close_after_write = true;
    }
    conn_mark_dirty(conn);
}

static void tls_wake_cb(uv_idle_t *idle)
{
    (void)idle; /* its being active is the point: poll does not sleep */
}

/* A new turn (before poll): the handshake budget anew, spent first on the
 * connections that waited (invariant 13). */
static void tls_turn_cb(uv_prepare_t *prepare)
{
    struct rpc_server *server = prepare->data;
    server->tls_steps = 0;
    if (rpc__list_empty(&server->tls_waiting))
        return; /* the usual turn: nothing waited */
    while (!rpc__list_empty(&server->tls_waiting) &&
           server->tls_steps < server->config.tls_handshakes_per_turn_max) {
        struct rpc__server_conn *conn =
            RPC__CONTAINER(server->tls_waiting.next, struct rpc__server_conn, link_tls_waiting);
        rpc__list_remove(&conn->link_tls_waiting);
        conn->tls_paused = false;
        if (!conn->io.read_stopped)
            uv_read_start((uv_stream_t *)&conn->io.tcp, rpc__conn_alloc_cb, conn_read_cb);
        conn_recv_tls(conn, NULL, 0); /* what it stashed */
    }
    if (rpc__list_empty(&server->tls_waiting))
        uv_idle_stop(&server->tls_wake);
    server_pump(server);
}

static void conn_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct rpc__server_conn *conn = stream->data;
    struct rpc_server *server = conn->server;
    if (nread == 0 || conn->closing)
        return;
    if (nread < 0) {
        conn_close(conn, RPC_STATUS_CANCELLED);
    } else if (conn->io.tls != NULL) {
        conn_recv_tls(conn, (const uint8_t *)buf->base, (size_t)nread);
    } else {
        conn_recv(conn, (const uint8_t *)buf->base, (size_t)nread);
    }
    server_pump(server);
}

static void conn_idle_cb(uv_timer_t *timer)
{
    struct rpc__server_conn *conn = timer->data;
    if (conn->closing || conn->call_count > 0)
        return; /* repeat: it fires again after another idle period */
    if (conn->io.session == NULL) {
        conn_close(conn, RPC_STATUS_CANCELLED);
        server_pump(conn->server);
        return;
    }
    nghttp2_session_terminate_session(conn->io.session, NGHTTP2_NO_ERROR);
    conn_mark_dirty(conn);
    server_pump(conn->server);
}

/* The connection's first request did not arrive whole in time (invariant
 * 9): a client that sent nothing is closed at once; one that spoke HTTP/2
 * gets GOAWAY first, as an idle one does. */
static void conn_first_request_cb(uv_timer_t *timer)
{
    struct rpc__server_conn *conn = timer->data;
    struct rpc_server *server = conn->server;
    if (conn->closing || conn->first_request_done)
        return;
    server_refused(server, REFUSAL_FIRST_REQUEST_LATE);
    if (conn->io.session == NULL || conn->first_len == 0) {
        conn_close(conn, RPC_STATUS_CANCELLED);
    } else {
        nghttp2_session_terminate_session(conn->io.session, NGHTTP2_NO_ERROR);
        conn->close_after_write = true;
        conn_mark_dirty(conn);
    }
    server_pump(server);
}

/* Everything but the socket: session, settings, budgets. */
static int conn_setup(struct rpc_server *server, struct rpc__server_conn *conn, bool socketless)
{
    rpc__conn_init(&conn->io, RPC_CONNECTION_OUTPUT_BYTES_MAX);
    conn->io.socketless = socketless;
    conn->io.read_buf = server->read_buf;
    conn->io.on_write_done = conn_write_done;
    conn->server = server;
    conn->id = ++server->conn_id_last;
    conn->request_budget = server->config.connection_request_bytes_max;
    conn->budget.connection_bytes = &conn->request_budget;
    if (conn->address != NULL)
        conn->budget.address_bytes = &conn->address->request_budget;
    conn->budget.server_bytes = &server->request_budget;
    conn->budget.refused = refusal_budget_cb;
    conn->budget.refused_ctx = server;
    rpc__list_init(&conn->link_all);
    rpc__list_init(&conn->link_dirty);
    rpc__list_init(&conn->link_tls_waiting);
    rpc__list_init(&conn->calls);
    int rv =
        nghttp2_session_server_new2(&conn->io.session, server->callbacks, conn, server->option);
    if (rv != 0)
        return EHR_EINVAL;
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server->config.streams_per_connection_max},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, server->config.header_list_bytes_max},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW_BYTES},
    };
    rv = nghttp2_submit_settings(conn->io.session, NGHTTP2_FLAG_NONE, settings,
                                 EHR_ARRAY_COUNT(settings));
    if (rv == 0)
        rv = nghttp2_session_set_local_window_size(conn->io.session, NGHTTP2_FLAG_NONE, 0,
                                                   CONNECTION_WINDOW_BYTES);
    if (rv != 0) {
        nghttp2_session_del(conn->io.session);
        conn->io.session = NULL;
        return EHR_EINVAL;
    }
    rpc__list_push(&server->conns, &conn->link_all);
    server->conn_count++;
    /* Our SETTINGS go out with the answer to the client's first bytes, so an
     * HTTP/1.x client gets a clean 505 and no HTTP/2 frame before it. */
    return 0;
}

static void reject_closed(uv_handle_t *handle)
{
    struct rpc_server *server = handle->data;
    ehr_free(handle);
    server->handles_open--;
    if (server->torn_down && server->handles_open == 0)
        server_finish_close(server);
}

/* The address TCP's peer connects from ({0} if unknown). */
static struct rpc_peer_address peer_address_of(uv_tcp_t *tcp)
{
    struct rpc_peer_address a = {0};
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        return a;
    if (ss.ss_family == AF_INET) {
        a.family = AF_INET;
        memcpy(a.bytes, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const uint8_t *b = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
        static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, v4_mapped, sizeof v4_mapped) == 0) {
            a.family = AF_INET;
            memcpy(a.bytes, b + 12, 4);
        } else {
            a.family = AF_INET6;
            memcpy(a.bytes, b, 16);
        }
    }
    return a;
}

/* The key address A is counted under: its family, its bytes, zeros. */
static void address_key(const struct rpc_peer_address *a, uint8_t key[CLIENT_KEY_BYTES])
{
    memset(key, 0, CLIENT_KEY_BYTES);
    key[0] = a->family;
    memcpy(key + 1, a->bytes, sizeof a->bytes);
}

/*
 * At the connection cap (invariant 11): the connection a newcomer whose
 * address holds NEWCOMER_COUNT connections may take the place of, or NULL
 * if none. The most-represented address gives way when it holds at least
 * RPC_EVICTION_GAP_CONNECTIONS_MIN more than the newcomer's (a smaller gap
 * would only swap the two counts); of its connections, the one with the
 * fewest calls, then the oldest request progress. Two scans of at most
 * connections_max entries, at the cap only.
 */
static struct rpc__server_conn *server_eviction_victim(const struct rpc_server *server,
                                                       uint32_t newcomer_count)
{
    const struct rpc__client *most = NULL;
    for (struct rpc__link *l = server->addresses.next; l != &server->addresses; l = l->next) {
        const struct rpc__client *e = RPC__CONTAINER(l, struct rpc__client, link);
        if (most == NULL || e->connection_count > most->connection_count)
            most = e;
    }
    if (most == NULL || most->connection_count < newcomer_count + RPC_EVICTION_GAP_CONNECTIONS_MIN)
        return NULL;
    struct rpc__server_conn *victim = NULL;
    for (struct rpc__link *l = server->conns.next; l != &server->conns; l = l->next) {
        struct rpc__server_conn *c = RPC__CONTAINER(l, struct rpc__server_conn, link_all);
        if (c->address != most)
            continue;
        if (victim == NULL || c->call_count < victim->call_count ||
            (c->call_count == victim->call_count && c->progress_ms < victim->progress_ms))
            victim = c;
    }
    EHR_ASSERT(victim != NULL); /* an address entry exists only with a connection */
    EHR_ASSERT(!victim->closing);
    return victim;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct rpc_server *server = listener->data;
    if (status < 0) {
        ehr_log(EHR_LOG_WARN, "rpc accept failed", "err=\"%s\"", uv_strerror(status));
        return;
    }
    if (server->closing) {
        uv_tcp_t *reject = ehr_malloc(sizeof *reject);
        uv_tcp_init(server->loop, reject);
        reject->data = server;
        server->handles_open++;
        (void)uv_accept(listener, (uv_stream_t *)reject);
        uv_close((uv_handle_t *)reject, reject_closed);
        return;
    }
    struct rpc__server_conn *conn = ehr_calloc(1, sizeof *conn);
    uv_tcp_init(server->loop, &conn->io.tcp);
    uv_timer_init(server->loop, &conn->idle_timer);
    uv_timer_init(server->loop, &conn->first_request_timer);
    conn->io.tcp.data = conn;
    conn->idle_timer.data = conn;
    conn->first_request_timer.data = conn;
    conn->handles_open = 3;
    conn->server = server;
    server->handles_open += 3;
    bool refused = false;
    int rv = uv_accept(listener, (uv_stream_t *)&conn->io.tcp);
    if (rv == 0) {
        conn->peer = peer_address_of(&conn->io.tcp);
        uint8_t key[CLIENT_KEY_BYTES];
        address_key(&conn->peer, key);
        struct rpc__client *entry = client_find(&server->addresses, key);
        uint32_t held = entry != NULL ? entry->connection_count : 0;
        if (held >= server->config.connections_per_address_max) {
            refused = true;
            server_refused(server, REFUSAL_CONNECTIONS_PER_ADDRESS);
        } else if (server->conn_count >= server->config.connections_max) {
            /* Invariant 11; an address we cannot tell has no share to claim. */
            struct rpc__server_conn *victim =
                conn->peer.family != 0 ? server_eviction_victim(server, held) : NULL;
            refused = victim == NULL;
            if (refused) {
                server_refused(server, REFUSAL_CONNECTIONS_MAX);
            } else {
                EHR_ASSERT(victim->address != entry);
                server_refused(server, REFUSAL_EVICTED);
                conn_close(victim, RPC_STATUS_UNAVAILABLE);
            }
        }
        if (!refused && conn->peer.family != 0)
            conn->address = client_join(&server->addresses, entry, key,
                                        server->config.unfinished_bytes_per_address_max);
    }
    if (rv == 0 && !refused && (rv = conn_setup(server, conn, false)) == 0 && server->tls != NULL)
        rv = rpc__tls_conn_new(&conn->io, server->tls, NULL, NULL);
    if (rv != 0 || refused) {
        if (conn->io.session != NULL) { /* set up, then TLS failed: undo conn_setup */
            nghttp2_session_del(conn->io.session);
            conn->io.session = NULL;
            rpc__list_remove(&conn->link_all);
            server->conn_count--;
        }
        conn_clients_leave(conn);
        conn->closing = true;
        uv_close((uv_handle_t *)&conn->io.tcp, conn_handle_closed);
        uv_close((uv_handle_t *)&conn->idle_timer, conn_handle_closed);
        uv_close((uv_handle_t *)&conn->first_request_timer, conn_handle_closed);
        server_pump(server); /* a connection evicted for it may have cancels to deliver */
        return;
    }
    EHR_ASSERT(server->conn_count <= server->config.connections_max);
    conn->progress_ms = uv_now(server->loop);
    uv_tcp_nodelay(&conn->io.tcp, 1);
    uv_timer_start(&conn->idle_timer, conn_idle_cb, server->config.idle_timeout_ms,
                   server->config.idle_timeout_ms);
    uv_timer_start(&conn->first_request_timer, conn_first_request_cb,
                   server->config.first_request_timeout_ms, 0);
    uv_read_start((uv_stream_t *)&conn->io.tcp, rpc__conn_alloc_cb, conn_read_cb);
    server_pump(server);
}

/* ---- the pump: deliver notifications, then flush, until quiet (invariant 4) ---- */

/*
 * Hand an upload's queued messages to its handler in order, then the end
 * once the client half-closed and every message went; stop as soon as the
 * handler pauses, finishes, or the call ends (invariant 12). The work is
 * bounded by what the stream window let in.
 */
static void call_deliver_input(struct rpc_call *call)
{
    while (call->app_owned && !call->ended && !call->paused && call->message_cb != NULL) {
        if (call->in_pos < call->in.len) {
            const uint8_t *p = call->in.data + call->in_pos;
            size_t len = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
            EHR_ASSERT(call->in_pos + 4 + len <= call->in.len);
            EHR_ASSERT(call->in_charged >= len);
            call->in_pos += 4 + len;
            call->in_charged -= len;
            rpc__budget_give(&call->conn->budget, len);
            /* The bytes stay where they are until the pump ends (invariant 5). */
            call->message_cb((struct rpc_upload *)call, p + 4, len, call->message_data);
            continue;
        }
        call->in.len = 0;
        call->in_pos = 0;
        if (call->request_done && !call->end_delivered) {
            call->end_delivered = true;
            if (call->end_cb != NULL)
                call->end_cb((struct rpc_upload *)call, call->message_data);
        }
        break;
    }
    if (call->stream_attached)
        call_credit(call);
}

static void call_deliver(struct rpc_call *call)
{
    struct rpc_server *server = call->server;
    rpc__list_remove(&call->link_pending);
    if (call->notify_request) {
        call->notify_request = false;
        if (call->stream_attached && !call->ended) {
            const struct rpc__method *m = call->method;
            if (m->streaming && server->closing) {
                call_end(call, "200", RPC_STATUS_UNAVAILABLE, "server shutting down", true,
                         EHR_ECLOSED);
            } else if (!m->streaming && !m->upload && call->conn->reply_refused &&
                       call->conn->unread_reply_bytes > 0 &&
                       server->unread_reply_bytes + RPC__PREFIX_BYTES >
                           server->config.unread_reply_bytes_max / 2) {
                /* Its reply would be refused too: spare the handler's work
                 * (invariant 15). */
                server_refused(server, REFUSAL_UNREAD_REPLY_BYTES);
                call_end(call, "200", RPC_STATUS_RESOURCE_EXHAUSTED,
                         "your connection was refused a reply for the replies it has not "
                         "read; read them, then retry",
                         true, EHR_ECLOSED);
            } else {
                call->app_owned = true;
                server->app_call_count++;
                if (m->upload) /* client-streaming or bidirectional */
                    m->upload_handler((struct rpc_upload *)call, m->data);
                else if (m->streaming)
                    m->stream((struct rpc_stream *)call, call->request.data, call->request.len,
                              m->data);
                else
                    m->unary(call, call->request.data, call->request.len, m->data);
            }
        }
        /* The handler may have finished (even reaped) the call: its memory
         * stays until the pump ends (invariant 5), so this is safe. */
        call_uncharge_request(call);
        rpc__buf_recycle(&call->request);
    }
    if (call->notify_message) {
        call->notify_message = false;
        call_deliver_input(call);
    }
    if (call->notify_cancel) {
        call->notify_cancel = false;
        if (call->app_owned && call->cancel_cb != NULL)
            call->cancel_cb(call->cancel_data, call->cancel_why);
    }
    if (call->notify_writable) {
        call->notify_writable = false;
        if (call->app_owned && !call->ended && call->writable_cb != NULL)
            call->writable_cb((struct rpc_stream *)call, call->writable_data);
    }
}

static void server_teardown(struct rpc_server *server)
{
    server->torn_down = true;
    /* What is held back is told now: the interval no longer matters. */
    for (int k = 0; k < REFUSAL_COUNT_; k++) {
        uint64_t count;
        if (ehr_log_limit_flush(&server->refusals[k], UINT64_MAX, &count))
            refusal_log(server, (enum refusal)k, count);
    }
    uv_close((uv_handle_t *)&server->kick, server_handle_closed);
    uv_close((uv_handle_t *)&server->grace_timer, server_handle_closed);
    uv_close((uv_handle_t *)&server->refusal_timer, server_handle_closed);
    uv_close((uv_handle_t *)&server->tls_turn, server_handle_closed);
    uv_close((uv_handle_t *)&server->tls_wake, server_handle_closed);
    while (!rpc__list_empty(&server->pool)) {
        struct rpc__link *link = server->pool.next;
        rpc__list_remove(link);
        struct rpc_call *call = RPC__CONTAINER(link, struct rpc_call, link);
        rpc__buf_free(&call->reader.body);
        rpc__buf_free(&call->request);
        rpc__buf_free(&call->out);
        rpc__buf_free(&call->in);
        uv_close((uv_handle_t *)&call->timer, call_handle_closed);
    }
    server->pool_count = 0;
}

static void server_pump(struct rpc_server *server)
{
    if (server->pumping || server->torn_down)
        return;
    server->pumping = true;
    for (;;) {
        if (!rpc__list_empty(&server->pending)) {
            call_deliver(RPC__CONTAINER(server->pending.next, struct rpc_call, link_pending));
            continue;
        }
        if (!rpc__list_empty(&server->dirty)) {
            struct rpc__server_conn *conn =
                RPC__CONTAINER(server->dirty.next, struct rpc__server_conn, link_dirty);
            rpc__list_remove(&conn->link_dirty);
            conn_flush(conn);
            continue;
        }
        break;
    }
    server_recycle_reaped(server);
    server->pumping = false;
    if (server->closing && server->conn_count == 0 && server->app_call_count == 0 &&
        !server->listening) {
        server_teardown(server);
        if (server->handles_open == 0)
            server_finish_close(server);
    }
}

/* ---- public: server ---- */

static int config_fill(struct rpc_server_config *c, const struct rpc_server_config *in)
{
    memset(c, 0, sizeof *c);
    if (in != NULL)
        *c = *in;
    if (c->message_bytes_max == 0)
        c->message_bytes_max = RPC_MESSAGE_BYTES_MAX;
    if (c->connections_max == 0)
        c->connections_max = RPC_CONNECTIONS_MAX;
    if (c->connections_per_address_max == 0)
        c->connections_per_address_max = RPC_CONNECTIONS_PER_ADDRESS_MAX;
    if (c->connections_per_certificate_max == 0)
        c->connections_per_certificate_max = RPC_CONNECTIONS_PER_CERTIFICATE_MAX;
    if (c->request_receive_timeout_ms == 0)
        c->request_receive_timeout_ms = RPC_REQUEST_RECEIVE_TIMEOUT_MS;
    if (c->stream_stall_timeout_ms == 0)
        c->stream_stall_timeout_ms = RPC_STREAM_STALL_TIMEOUT_MS;
    if (c->unread_reply_timeout_ms == 0)
        c->unread_reply_timeout_ms = RPC_UNREAD_REPLY_TIMEOUT_MS;
    if (c->unfinished_bytes_per_address_max == 0)
        c->unfinished_bytes_per_address_max = RPC_UNFINISHED_BYTES_PER_ADDRESS_MAX;
    if (c->unfinished_bytes_per_certificate_max == 0)
        c->unfinished_bytes_per_certificate_max = RPC_UNFINISHED_BYTES_PER_CERTIFICATE_MAX;
    if (c->unfinished_bytes_max == 0)
        c->unfinished_bytes_max = RPC_UNFINISHED_BYTES_MAX;
    if (c->unread_reply_bytes_max == 0)
        c->unread_reply_bytes_max = RPC_UNREAD_REPLY_BYTES_MAX;
    if (c->streams_per_connection_max == 0)
        c->streams_per_connection_max = RPC_STREAMS_PER_CONNECTION_MAX;
    if (c->header_list_bytes_max == 0)
        c->header_list_bytes_max = RPC_HEADER_LIST_BYTES_MAX;
    if (c->connection_request_bytes_max == 0)
        c->connection_request_bytes_max = RPC_CONNECTION_REQUEST_BYTES_MAX;
    if (c->stream_queue_bytes_max == 0)
        c->stream_queue_bytes_max = RPC_STREAM_QUEUE_BYTES_MAX;
    if (c->idle_timeout_ms == 0)
        c->idle_timeout_ms = RPC_IDLE_TIMEOUT_MS;
    if (c->first_request_timeout_ms == 0)
        c->first_request_timeout_ms = RPC_FIRST_REQUEST_TIMEOUT_MS;
    if (c->shutdown_grace_ms == 0)
        c->shutdown_grace_ms = RPC_SHUTDOWN_GRACE_MS;
    if (c->tls_handshakes_per_turn_max == 0)
        c->tls_handshakes_per_turn_max = RPC_TLS_HANDSHAKES_PER_TURN_MAX;
    /* A message must fit the 32-bit prefix and the connection's request budget. */
    if (c->message_bytes_max > UINT32_MAX || c->message_bytes_max > c->connection_request_bytes_max)
        return EHR_EINVAL;
    if (c->message_bytes_max > c->unfinished_bytes_per_address_max)
        return EHR_EINVAL;
    if (c->message_bytes_max > c->unfinished_bytes_per_certificate_max)
        return EHR_EINVAL;
    if (c->message_bytes_max > c->unfinished_bytes_max)
        return EHR_EINVAL;
    /* A reply of the largest size fits a server that holds no other. */
    if (RPC__PREFIX_BYTES + c->message_bytes_max > c->unread_reply_bytes_max / 2)
        return EHR_EINVAL;
    if (c->streams_per_connection_max > (1u << 20))
        return EHR_EINVAL;
    /* One client certificate cannot hold every connection nor the whole
     * request budget (invariants 18, 19): a cap given must be below the
     * total. The defaults are (the _Static_asserts above); one left to its
     * default over a smaller total given bounds no more than the total. */
    if (in != NULL && in->connections_per_certificate_max != 0 &&
        c->connections_per_certificate_max >= c->connections_max)
        return EHR_EINVAL;
    if (in != NULL && in->unfinished_bytes_per_certificate_max != 0 &&
        c->unfinished_bytes_per_certificate_max >= c->unfinished_bytes_max)
        return EHR_EINVAL;
    return 0;
}

int rpc_server_new(uv_loop_t *loop, const struct rpc_server_config *config, struct rpc_server **out)
{
    EHR_ASSERT(loop != NULL && out != NULL);
    struct rpc_server_config c;
    int rv = config_fill(&c, config);
    if (rv != 0)
        return rv;
    struct rpc_server *server = ehr_calloc(1, sizeof *server);
    server->loop = loop;
    server->config = c;
    server->request_budget = c.unfinished_bytes_max;
    server->read_buf = ehr_malloc(RPC__READ_BUFFER_BYTES);
    rpc__list_init(&server->conns);
    rpc__list_init(&server->addresses);
    rpc__list_init(&server->certificates);
    rpc__list_init(&server->dirty);
    rpc__list_init(&server->pending);
    rpc__list_init(&server->reap);
    rpc__list_init(&server->pool);
    uv_idle_init(loop, &server->kick);
    server->kick.data = server;
    uv_timer_init(loop, &server->grace_timer);
    server->grace_timer.data = server;
    uv_timer_init(loop, &server->refusal_timer);
    server->refusal_timer.data = server;
    uv_unref((uv_handle_t *)&server->refusal_timer); /* a log line keeps no loop alive */
    uv_prepare_init(loop, &server->tls_turn);
    server->tls_turn.data = server;
    uv_unref((uv_handle_t *)&server->tls_turn);
    uv_idle_init(loop, &server->tls_wake);
    server->tls_wake.data = server;
    uv_unref((uv_handle_t *)&server->tls_wake);
    rpc__list_init(&server->tls_waiting);
    server->handles_open = 5;

    EHR_ASSERT(nghttp2_session_callbacks_new(&server->callbacks) == 0);
    nghttp2_session_callbacks *cb = server->callbacks;
    nghttp2_session_callbacks_set_send_callback(cb, rpc__conn_send_cb);
    nghttp2_session_callbacks_set_send_data_callback(cb, server_send_data_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    EHR_ASSERT(nghttp2_option_new(&server->option) == 0);
    nghttp2_option_set_no_closed_streams(server->option, 1);
    /* Window updates are ours: an upload's wait for its handler (invariant 12). */
    nghttp2_option_set_no_auto_window_update(server->option, 1);
    *out = server;
    return 0;
}

static bool path_valid(const char *path)
{
    /* "/Service/Method": printable, no spaces, exactly two slashes, neither part empty. */
    size_t len = strnlen(path, RPC_METHOD_PATH_BYTES_MAX + 1);
    if (len < 4 || len > RPC_METHOD_PATH_BYTES_MAX || path[0] != '/')
        return false;
    const char *second = strchr(path + 1, '/');
    if (second == NULL || second == path + 1 || second[1] == '\0' || strchr(second + 1, '/'))
        return false;
    for (size_t i = 0; i < len; i++)
        if (path[i] <= 0x20 || path[i] >= 0x7f)
            return false;
    return true;
}

static int server_add(struct rpc_server *server, const char *path, bool streaming,
                      rpc_unary_handler unary, rpc_stream_handler stream, rpc_upload_handler upload,
                      void *data)
{
    EHR_ASSERT(server != NULL && !server->closing);
    if (path == NULL || !path_valid(path))
        return EHR_EINVAL;
    if (method_find(server, (const uint8_t *)path, strlen(path)) != NULL)
        return EHR_EEXIST;
    if (server->method_count >= RPC_METHODS_MAX)
        return EHR_EFULL;
    struct rpc__method *m = &server->methods[server->method_count++];
    m->path_len = strlen(path);
    memcpy(m->path, path, m->path_len + 1);
    m->streaming = streaming;
    m->upload = upload != NULL;
    m->unary = unary;
    m->stream = stream;
    m->upload_handler = upload;
    m->data = data;
    return 0;
}

int rpc_server_add_unary(struct rpc_server *server, const char *path, rpc_unary_handler handler,
                         void *method_data)
{
    EHR_ASSERT(handler != NULL);
    return server_add(server, path, false, handler, NULL, NULL, method_data);
}

int rpc_server_add_stream(struct rpc_server *server, const char *path, rpc_stream_handler handler,
                          void *method_data)
{
    EHR_ASSERT(handler != NULL);
    return server_add(server, path, true, NULL, handler, NULL, method_data);
}

int rpc_server_add_upload(struct rpc_server *server, const char *path, rpc_upload_handler handler,
                          void *method_data)
{
    EHR_ASSERT(handler != NULL);
    return server_add(server, path, false, NULL, NULL, handler, method_data);
}

int rpc_server_add_bidi(struct rpc_server *server, const char *path, rpc_upload_handler handler,
                        void *method_data)
{
    EHR_ASSERT(handler != NULL);
    return server_add(server, path, true, NULL, NULL, handler, method_data);
}

int rpc_server_listen(struct rpc_server *server, const char *host, uint16_t port)
{
    EHR_ASSERT(!server->listening && !server->closing);
    struct sockaddr_storage addr;
    if (rpc__addr_parse(host, port, &addr) != 0)
        return EHR_EINVAL;
    uv_tcp_init(server->loop, &server->listener);
    server->listener.data = server;
    server->handles_open++;
    server->listening = true;
    int rv = uv_tcp_bind(&server->listener, (const struct sockaddr *)&addr, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&server->listener, 511, on_connection);
    if (rv != 0) {
        server->listening = false;
        uv_close((uv_handle_t *)&server->listener, server_handle_closed);
        return rv;
    }
    struct sockaddr_storage bound;
    int bound_len = sizeof bound;
    uv_tcp_getsockname(&server->listener, (struct sockaddr *)&bound, &bound_len);
    server->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                               : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

void rpc_server_use_tls(struct rpc_server *server, struct rpc_tls *tls)
{
    EHR_ASSERT(!server->listening);
    EHR_ASSERT(tls != NULL);
    server->tls = tls;
    uv_prepare_start(&server->tls_turn, tls_turn_cb);
}

uint16_t rpc_server_port(const struct rpc_server *server)
{
    return server->port;
}

uint32_t rpc_server_connection_count(const struct rpc_server *server)
{
    return server->conn_count;
}

uint32_t rpc_server_call_count(const struct rpc_server *server)
{
    return server->app_call_count;
}

uint64_t rpc_server_refused_count(const struct rpc_server *server, size_t kind, const char **limit)
{
    EHR_ASSERT(kind < REFUSAL_COUNT_);
    if (limit != NULL)
        *limit = refusal_limit_names[kind];
    return server->refused_total[kind];
}

uint32_t rpc_server_method_count(const struct rpc_server *server)
{
    return server->method_count;
}

uint64_t rpc_server_calls_ended_count(const struct rpc_server *server, uint32_t method,
                                      enum rpc_status status, const char **path)
{
    EHR_ASSERT(method <= server->method_count);
    EHR_ASSERT((unsigned)status < RPC_STATUS_COUNT_);
    size_t index = method < server->method_count ? method : RPC_METHODS_MAX;
    if (path != NULL)
        *path = method < server->method_count ? server->methods[method].path : "unknown";
    return server->calls_ended[index][status];
}

static void grace_cb(uv_timer_t *timer)
{
    struct rpc_server *server = timer->data;
    while (!rpc__list_empty(&server->conns))
        conn_close(RPC__CONTAINER(server->conns.next, struct rpc__server_conn, link_all),
                   RPC_STATUS_UNAVAILABLE);
    server_pump(server);
}

/* GOAWAY (streams the client already opened may finish); streaming calls end now. */
static void conn_goaway(struct rpc__server_conn *conn)
{
    nghttp2_session *session = conn->io.session;
    if (session == NULL)
        return;
    nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session), NGHTTP2_NO_ERROR, NULL,
                          0);
    for (struct rpc__link *l = conn->calls.next; l != &conn->calls; l = l->next) {
        struct rpc_call *call = RPC__CONTAINER(l, struct rpc_call, link);
        if (call->app_owned && !call->ended && call->method->streaming) {
            call_end(call, "200", RPC_STATUS_UNAVAILABLE, "server shutting down", true,
                     EHR_ECLOSED);
            call->cancel_why = RPC_STATUS_UNAVAILABLE;
            call_notify(call, &call->notify_cancel);
        }
    }
    conn_mark_dirty(conn);
}

void rpc_server_close(struct rpc_server *server, rpc_server_close_cb close_cb, void *data)
{
    EHR_ASSERT(!server->closing);
    server->closing = true;
    server->close_cb = close_cb;
    server->close_data = data;
    if (server->listening) {
        server->listening = false;
        uv_close((uv_handle_t *)&server->listener, server_handle_closed);
    }
    for (struct rpc__link *l = server->conns.next; l != &server->conns; l = l->next)
        conn_goaway(RPC__CONTAINER(l, struct rpc__server_conn, link_all));
    uv_timer_start(&server->grace_timer, grace_cb, server->config.shutdown_grace_ms, 0);
    uv_unref((uv_handle_t *)&server->grace_timer);
    server_kick(server);
    server_pump(server);
}

/* ---- public: calls ---- */

/* The handler gives the call back. Returns 0 if it may still answer, else why not. */
static int call_app_release(struct rpc_call *call)
{
    struct rpc_server *server = call->server;
    EHR_ASSERT(call->app_owned); /* finished twice, or never dispatched */
    call->app_owned = false;
    EHR_ASSERT(server->app_call_count > 0);
    server->app_call_count--;
    call->cancel_cb = NULL;
    call->writable_cb = NULL;
    server_kick(server);
    if (!call->ended)
        return 0;
    if (!call->stream_attached)
        call_reap(call);
    return call->end_err;
}

int rpc_call_reply(struct rpc_call *call, const uint8_t *response, size_t response_len)
{
    EHR_ASSERT(!call->method->streaming);
    int err = call_app_release(call);
    if (err != 0)
        return err;
    size_t max = call->server->config.message_bytes_max;
    if (response_len > max) {
        char message[128];
        snprintf(message, sizeof message,
                 "response message of %zu bytes is over the limit of %zu bytes", response_len, max);
        call_end(call, "200", RPC_STATUS_RESOURCE_EXHAUSTED, message, true, EHR_ECLOSED);
        return EHR_ETOOBIG;
    }
    const char *refusal = call_reply_refusal(call, RPC__PREFIX_BYTES + response_len);
    if (refusal != NULL) {
        /* Only a connection that holds replies unread is refused before
         * its handlers: one that reads was refused a reply over its quota. */
        call->conn->reply_refused = call->conn->unread_reply_bytes > 0;
        server_refused(call->server, REFUSAL_UNREAD_REPLY_BYTES);
        call_end(call, "200", RPC_STATUS_RESOURCE_EXHAUSTED, refusal, true, EHR_ECLOSED);
        return EHR_EFULL;
    }
    call_queue_message(call, response, response_len);
    call_drop_input(call);
    call->ended = true;
    call->outcome = RPC_STATUS_OK;
    uv_timer_stop(&call->timer);
    call->final_status = RPC_STATUS_OK;
    call->final_message_len = 0;
    call_send_headers(call);
    call_unread_arm(call);
    conn_mark_dirty(call->conn);
    return 0;
}

int rpc_call_fail(struct rpc_call *call, enum rpc_status status, const char *message)
{
    EHR_ASSERT(status > RPC_STATUS_OK && status < RPC_STATUS_COUNT_);
    int err = call_app_release(call);
    if (err != 0)
        return err;
    call_end(call, "200", status, message, true, EHR_ECLOSED);
    return 0;
}

int rpc_call_trailer_add(struct rpc_call *call, const char *name, const char *value)
{
    EHR_ASSERT(call->app_owned);
    EHR_ASSERT(name != NULL && value != NULL);
    if (!rpc__trailer_name_ok(name, strlen(name)) || !rpc__trailer_value_ok(value, strlen(value)))
        return EHR_EINVAL;
    if (call->trailer_count == RPC_TRAILERS_MAX)
        return EHR_EFULL;
    struct rpc_trailer *t = &call->trailers[call->trailer_count++];
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->value, sizeof t->value, "%s", value);
    return 0;
}

void rpc_call_on_cancel(struct rpc_call *call, rpc_cancel_cb cb, void *data)
{
    EHR_ASSERT(call->app_owned);
    call->cancel_cb = cb;
    call->cancel_data = data;
}

const char *rpc_call_method(const struct rpc_call *call)
{
    return call->method->path;
}

struct rpc_peer_address rpc_call_peer_address(const struct rpc_call *call)
{
    EHR_ASSERT(call->conn_id != 0); /* set when the stream began */
    return call->peer;
}

uint64_t rpc_call_deadline_left_ms(const struct rpc_call *call)
{
    if (!call->has_deadline)
        return UINT64_MAX;
    uint64_t now = uv_now(call->server->loop);
    return call->deadline_ms > now ? call->deadline_ms - now : 0;
}

int rpc_stream_send(struct rpc_stream *stream, const uint8_t *message, size_t message_len)
{
    struct rpc_call *call = &stream->call;
    EHR_ASSERT(call->app_owned && call->method->streaming);
    if (call->ended)
        return call->end_err;
    const struct rpc_server_config *config = &call->server->config;
    if (message_len > config->message_bytes_max)
        return EHR_ETOOBIG;
    size_t queued = call_queued_bytes(call);
    size_t bytes = RPC__PREFIX_BYTES + message_len;
    /* Past either bound the message waits, unless the queue is empty (so
     * the writable callback, at half a queue, always comes): streams keep
     * to half the unread replies' budget, the rest is for unary replies
     * (invariant 15). */
    bool server_full =
        call->server->unread_reply_bytes + bytes > config->unread_reply_bytes_max / 2;
    if (queued > 0 && (queued + bytes > config->stream_queue_bytes_max || server_full)) {
        call->want_writable = true;
        if (call->stall_by_ms == 0) { /* full from now: the client must read (invariant 8) */
            call->stall_by_ms = uv_now(call->server->loop) + config->stream_stall_timeout_ms;
            call_timer_arm(call);
        }
        return EHR_EAGAIN;
    }
    call_queue_message(call, message, message_len);
    if (!call->headers_sent)
        call_send_headers(call);
    else
        call_resume(call);
    conn_mark_dirty(call->conn);
    server_kick(call->server);
    return 0;
}

int rpc_stream_finish(struct rpc_stream *stream, enum rpc_status status, const char *message)
{
    struct rpc_call *call = &stream->call;
    EHR_ASSERT((unsigned)status < RPC_STATUS_COUNT_);
    EHR_ASSERT(call->method->streaming);
    int err = call_app_release(call);
    if (err != 0)
        return err;
    call_end(call, "200", status, message, false, EHR_ECLOSED);
    return 0;
}

void rpc_stream_on_cancel(struct rpc_stream *stream, rpc_cancel_cb cb, void *data)
{
    rpc_call_on_cancel(&stream->call, cb, data);
}

void rpc_stream_on_writable(struct rpc_stream *stream, rpc_writable_cb cb, void *data)
{
    EHR_ASSERT(stream->call.app_owned);
    stream->call.writable_cb = cb;
    stream->call.writable_data = data;
}

const char *rpc_stream_method(const struct rpc_stream *stream)
{
    return stream->call.method->path;
}

uint64_t rpc_stream_deadline_left_ms(const struct rpc_stream *stream)
{
    return rpc_call_deadline_left_ms(&stream->call);
}

uint64_t rpc_stream_connection_id(const struct rpc_stream *stream)
{
    EHR_ASSERT(stream->call.conn_id != 0); /* set when the stream began */
    return stream->call.conn_id;
}

struct rpc_peer_address rpc_stream_peer_address(const struct rpc_stream *stream)
{
    return rpc_call_peer_address(&stream->call);
}

/* ---- public: uploads (client-streaming calls) ---- */

void rpc_upload_on_message(struct rpc_upload *upload, rpc_upload_message_cb message_cb,
                           rpc_upload_end_cb end_cb, void *data)
{
    struct rpc_call *call = &upload->call;
    EHR_ASSERT(call->app_owned);
    EHR_ASSERT(call->method->upload);
    call->message_cb = message_cb;
    call->end_cb = end_cb;
    call->message_data = data;
    call_notify(call, &call->notify_message); /* what arrived meanwhile */
    server_kick(call->server);
}

void rpc_upload_pause(struct rpc_upload *upload)
{
    EHR_ASSERT(upload->call.app_owned);
    upload->call.paused = true;
    call_timer_arm(&upload->call); /* the client cannot be late while we hold it back */
}

void rpc_upload_resume(struct rpc_upload *upload)
{
    struct rpc_call *call = &upload->call;
    EHR_ASSERT(call->app_owned);
    if (!call->paused)
        return;
    call->paused = false;
    if (call->ended)
        return;
    /* The client's time to send the next message starts again now. */
    call->receive_by_ms =
        uv_now(call->server->loop) + call->server->config.request_receive_timeout_ms;
    call_timer_arm(call);
    call_notify(call, &call->notify_message);
    server_kick(call->server);
}

struct rpc_stream *rpc_upload_stream(struct rpc_upload *upload)
{
    EHR_ASSERT(upload->call.method->upload);
    EHR_ASSERT(upload->call.method->streaming); /* registered with rpc_server_add_bidi */
    return (struct rpc_stream *)&upload->call;
}

int rpc_upload_reply(struct rpc_upload *upload, const uint8_t *response, size_t response_len)
{
    return rpc_call_reply(&upload->call, response, response_len);
}

int rpc_upload_fail(struct rpc_upload *upload, enum rpc_status status, const char *message)
{
    return rpc_call_fail(&upload->call, status, message);
}

int rpc_upload_trailer_add(struct rpc_upload *upload, const char *name, const char *value)
{
    return rpc_call_trailer_add(&upload->call, name, value);
}

void rpc_upload_on_cancel(struct rpc_upload *upload, rpc_cancel_cb cb, void *data)
{
    rpc_call_on_cancel(&upload->call, cb, data);
}

const char *rpc_upload_method(const struct rpc_upload *upload)
{
    return upload->call.method->path;
}

uint64_t rpc_upload_deadline_left_ms(const struct rpc_upload *upload)
{
    return rpc_call_deadline_left_ms(&upload->call);
}

uint64_t rpc_upload_connection_id(const struct rpc_upload *upload)
{
    EHR_ASSERT(upload->call.conn_id != 0);
    return upload->call.conn_id;
}

struct rpc_peer_address rpc_upload_peer_address(const struct rpc_upload *upload)
{
    return rpc_call_peer_address(&upload->call);
}

/* ---- socketless connections (fuzzing) ---- */

int rpc__server_conn_new_socketless(struct rpc_server *server, struct rpc__server_conn **out)
{
    if (server->closing || server->conn_count >= server->config.connections_max)
        return EHR_EFULL;
    struct rpc__server_conn *conn = ehr_calloc(1, sizeof *conn);
    int rv = conn_setup(server, conn, true);
    if (rv != 0) {
        ehr_free(conn);
        return rv;
    }
    *out = conn;
    server_pump(server);
    return 0;
}

int rpc__server_conn_feed(struct rpc__server_conn *conn, const uint8_t *data, size_t len)
{
    if (conn->closing || conn->io.session == NULL)
        return EHR_ECLOSED;
    conn_recv(conn, data, len);
    server_pump(conn->server);
    return conn->closing ? EHR_ECLOSED : 0;
}

size_t rpc__server_pool_buffer_bytes(const struct rpc_server *server)
{
    return server->pool_buffer_bytes;
}

uint64_t rpc__server_tls_deferred(const struct rpc_server *server)
{
    return server->tls_deferred;
}

void rpc__server_conn_close(struct rpc__server_conn *conn)
{
    EHR_ASSERT(conn->io.socketless);
    if (!conn->closing) {
        conn_close(conn, RPC_STATUS_CANCELLED);
        server_pump(conn->server);
    }
    rpc__conn_free_buffers(&conn->io);
    ehr_free(conn);
}
