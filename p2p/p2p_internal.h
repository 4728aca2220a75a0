/*
 * p2p_internal.h - the I/O-free layer under p2p.c: the handshake state
 * machine, the frame cipher, the PeerFrame body codec, the receive buffer and
 * the send buffer. Bytes in, bytes and results out; no sockets, no clock, so
 * unit tests and fuzz targets drive it directly.
 *
 * Not a public interface: only p2p.c, the tests and the fuzz targets include
 * it. Names carry the p2p__ prefix.
 */
#ifndef EHR_P2P_INTERNAL_H
#define EHR_P2P_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "p2p.h"
#include "pbwire.h"

enum {
    P2P__LENGTH_BYTES = 4, /* big-endian length before every message and frame */
    P2P__TAG_BYTES = 16,   /* Poly1305 tag at the end of every frame */
    P2P__SESSION_KEY_BYTES = 32,
    /* Largest plaintext (PeerFrame body) in one frame. */
    P2P__FRAME_PLAIN_BYTES_MAX = P2P_FRAME_BYTES_MAX - P2P__TAG_BYTES,
    /* Field header of one message in a PeerFrame: tag byte + length varint. */
    P2P__RECORD_HEADER_BYTES_MAX = 1 + 5,
    /* Small messages are batched into one frame up to this many plaintext
     * bytes; a larger message goes into a frame of its own. */
    P2P__FRAME_BATCH_BYTES = 64 << 10,
    /* Receive buffer once a link is up, and the least free space offered to
     * each read. */
    P2P__READ_BYTES = 256 << 10,
    P2P__READ_CHUNK_BYTES_MIN = 64 << 10,
    /* Receive buffer during the handshake (enough for both messages). */
    P2P__READ_HANDSHAKE_BYTES = 1024,
    /* Ceiling of the receive buffer: one maximal frame plus one read. */
    P2P__READ_BYTES_MAX = P2P__LENGTH_BYTES + P2P_FRAME_BYTES_MAX + P2P__READ_CHUNK_BYTES_MIN,
    /* Handshake output: one length-prefixed message at a time. */
    P2P__HS_OUT_BYTES_MAX = P2P__LENGTH_BYTES + P2P_HANDSHAKE_MESSAGE_BYTES_MAX,
};

_Static_assert(P2P__FRAME_PLAIN_BYTES_MAX >= P2P__RECORD_HEADER_BYTES_MAX + P2P_MESSAGE_BYTES_MAX,
               "a maximal message fits in one frame");
_Static_assert(P2P_FRAME_BYTES_MAX < UINT32_MAX, "frame length fits the 4-byte prefix");
_Static_assert(P2P__FRAME_BATCH_BYTES <= P2P__FRAME_PLAIN_BYTES_MAX, "batch within a frame");

/* ---- frame cipher: XChaCha20-Poly1305 with a per-direction counter ---- */

typedef struct p2p__cipher {
    uint8_t key[P2P__SESSION_KEY_BYTES];
    uint64_t counter; /* nonce of the next frame; never reused under one key */
} p2p__cipher;

/* Zero the key and the counter. */
void p2p__cipher_wipe(p2p__cipher *cipher);

/*
 * Seal one frame in place. FRAME holds 4 bytes of room for the length, then
 * PLAIN_LEN bytes of plaintext, then 16 bytes of room for the tag. Writes the
 * length (PLAIN_LEN + 16, big-endian; authenticated as associated data),
 * encrypts with nonce = counter, and advances the counter. Returns 0, or
 * EHR_ETOOBIG if PLAIN_LEN > P2P__FRAME_PLAIN_BYTES_MAX.
 */
int p2p__frame_seal(p2p__cipher *tx, uint8_t *frame, size_t plain_len);

/*
 * Read the length prefix of a frame. Returns 0 and *CIPHER_LEN (bytes after
 * the prefix, tag included), EHR_ETOOBIG above P2P_FRAME_BYTES_MAX, or
 * EHR_EPROTO below the tag size.
 */
int p2p__frame_length(const uint8_t prefix[P2P__LENGTH_BYTES], size_t *cipher_len);

/*
 * Open one whole frame in place: FRAME is the 4-byte prefix followed by
 * CIPHER_LEN bytes (already checked by p2p__frame_length). On success the
 * plaintext is at FRAME + 4, *PLAIN_LEN bytes long, and the counter advances.
 * Returns 0, or EHR_EPROTO if authentication fails (a modified, reordered,
 * replayed or dropped frame); the counter does not move then.
 */
int p2p__frame_open(p2p__cipher *rx, uint8_t *frame, size_t cipher_len, size_t *plain_len);

/* ---- protobuf wire format, by hand (no allocation) ----
 * On the primitives of common/pbwire.h, read under EHR_PB_PROTOBUF_C (what
 * protobuf-c accepts, we accept); written with its writers. */

enum {
    P2P__PB_VARINT = EHR_PB_WIRE_VARINT,
    P2P__PB_FIXED64 = EHR_PB_WIRE_FIXED64,
    P2P__PB_BYTES = EHR_PB_WIRE_LEN,
    P2P__PB_FIXED32 = EHR_PB_WIRE_FIXED32,
};

/* One field of a protobuf message. */
typedef struct p2p__pb_field {
    uint32_t number;
    uint32_t wire_type;
    uint64_t varint;      /* for P2P__PB_VARINT */
    const uint8_t *bytes; /* for P2P__PB_BYTES: points into the message */
    size_t bytes_len;
} p2p__pb_field;

/*
 * Read the field at *POS of BUF[0..LEN) and advance *POS past it. Returns 1
 * with *FIELD, 0 at the end, or EHR_EPROTO for a malformed field (varint over
 * 10 bytes, a tag or length over 32 bits, field number 0, a group, a reserved
 * wire type, a length past the end).
 */
int p2p__pb_next(const uint8_t *buf, size_t len, size_t *pos, p2p__pb_field *field);

/* ---- PeerFrame body: repeated bytes messages = 1, encoded by hand ---- */

/* Bytes the field header for a LEN-byte message takes (tag + varint). */
size_t p2p__record_header_bytes(size_t len);

/* Write the field header for a LEN-byte message at OUT (room for
 * P2P__RECORD_HEADER_BYTES_MAX). Returns the bytes written. */
size_t p2p__record_header_write(uint8_t *out, size_t len);

/*
 * Step through a PeerFrame body. *POS starts at 0. Returns 1 with *MSG and
 * *MSG_LEN (pointing into BODY) for the next message, 0 at the end of the
 * body, EHR_ETOOBIG for a message over P2P_MESSAGE_BYTES_MAX, or EHR_EPROTO
 * for a malformed body (truncated varint or field, a group, a wrong wire type
 * for field 1). Unknown fields are skipped, as protobuf requires.
 */
int p2p__body_next(const uint8_t *body, size_t body_len, size_t *pos, const uint8_t **msg,
                   size_t *msg_len);

/* ---- receive buffer ---- */

/*
 * Bytes read from the socket, consumed from the front. The buffer grows only
 * to hold a frame whose length prefix has already been checked, so a peer
 * cannot make it allocate more than P2P__READ_BYTES_MAX.
 */
typedef struct p2p__reader {
    uint8_t *data;
    size_t capacity;
    size_t start;     /* first unconsumed byte */
    size_t end;       /* one past the last byte read */
    size_t need_size; /* bytes the frame at START needs in all, once known */
} p2p__reader;

/* Allocate CAPACITY bytes. Returns 0 or EHR_EFULL (allocation failed). */
int p2p__reader_init(p2p__reader *r, size_t capacity);

/* Free the buffer. */
void p2p__reader_free(p2p__reader *r);

/*
 * Offer free space for the next read: *SPACE / *SPACE_LEN. Compacts, and
 * grows up to max(CAPACITY_MIN, the pending frame's size). Returns 0 (with
 * *SPACE_LEN > 0) or EHR_EFULL if growing failed.
 */
int p2p__reader_space(p2p__reader *r, size_t capacity_min, uint8_t **space, size_t *space_len);

/* Record that N bytes were read into the space last offered. */
void p2p__reader_commit(p2p__reader *r, size_t n);

/* The unconsumed bytes. */
static inline const uint8_t *p2p__reader_bytes(const p2p__reader *r, size_t *len)
{
    *len = r->end - r->start;
    return r->data + r->start;
}

/* Drop N unconsumed bytes from the front. */
void p2p__reader_consume(p2p__reader *r, size_t n);

/*
 * Take the next whole frame, decrypting it in place. Returns 1 with *BODY /
 * *BODY_LEN (valid until the next reader call), 0 if more bytes are needed,
 * or the error of p2p__frame_length / p2p__frame_open.
 */
int p2p__reader_frame(p2p__reader *r, p2p__cipher *rx, uint8_t **body, size_t *body_len);

/* ---- send buffer ---- */

/*
 * Sealed frames back to back, then at most one open frame still taking
 * messages. Everything before the open frame is ciphertext ready to write.
 */
typedef struct p2p__outbuf {
    uint8_t *data;
    size_t capacity;
    size_t len;             /* bytes used, the open frame included */
    size_t frame_start;     /* offset of the open frame's length prefix */
    bool frame_open;        /* an open frame exists */
    uint64_t message_count; /* messages in the buffer */
} p2p__outbuf;

/* Free the buffer. */
void p2p__outbuf_free(p2p__outbuf *ob);

/* Bytes appending a LEN-byte message may add at most (a new frame's prefix,
 * field header, message, tag). For the queue bound. */
size_t p2p__outbuf_message_cost(size_t len);

/*
 * Append one message, batching it into the open frame when the frame stays
 * within P2P__FRAME_BATCH_BYTES, else sealing that frame with TX and opening
 * another. Grows the buffer (never beyond CAPACITY_MAX). Returns 0,
 * EHR_ETOOBIG for LEN > P2P_MESSAGE_BYTES_MAX, or EHR_EFULL if the buffer
 * cannot grow.
 */
int p2p__outbuf_append(p2p__outbuf *ob, p2p__cipher *tx, const uint8_t *msg, size_t len,
                       size_t capacity_max);

/* Seal the open frame, if any, so that the whole buffer is ready to write.
 * Returns 0. */
int p2p__outbuf_seal(p2p__outbuf *ob, p2p__cipher *tx);

/* Append a sealed empty frame (a keep-alive). Returns 0 or EHR_EFULL. */
int p2p__outbuf_keepalive(p2p__outbuf *ob, p2p__cipher *tx, size_t capacity_max);

/* Forget the contents (after they were written); keeps the memory. */
void p2p__outbuf_reset(p2p__outbuf *ob);

/* ---- handshake ---- */

enum p2p__hs_state {
    P2P__HS_NEW,         /* p2p__hs_start not called yet */
    P2P__HS_AWAIT_HELLO, /* our PeerHello is out; waiting for theirs */
    P2P__HS_AWAIT_AUTH,  /* our PeerAuth is out; waiting for theirs */
    P2P__HS_DONE,        /* authenticated; tx/rx hold the session keys */
    P2P__HS_FAILED,      /* refused; error and reason say why */
};

/* Says whether KEY is a member now: 0 if so, EHR_EDENIED if not. */
typedef int (*p2p__member_check_fn)(void *ctx, const uint8_t key[P2P_KEY_BYTES]);

typedef struct p2p__hs_params {
    bool initiator;                  /* we opened the TCP connection */
    const ehr_signing_key *node_key; /* borrowed for the handshake's life */
    const char *chain_id;            /* borrowed; 1..P2P_CHAIN_ID_BYTES_MAX bytes */
    /* For an initiator: the key of the member we dialled (the responder must
     * present it). NULL for a responder. */
    const uint8_t *expected_peer;
    p2p__member_check_fn member_check;
    void *member_ctx;
    /* Tests and fuzzing only: use this ephemeral key instead of a fresh one. */
    const ehr_kx_key *ephemeral_for_test;
} p2p__hs_params;

typedef struct p2p__handshake {
    enum p2p__hs_state state;
    bool initiator;
    const ehr_signing_key *node_key;
    char chain_id[P2P_CHAIN_ID_BYTES_MAX + 1];
    bool expect_peer;
    uint8_t expected_peer[P2P_KEY_BYTES];
    p2p__member_check_fn member_check;
    void *member_ctx;
    ehr_kx_key ephemeral;
    uint8_t own_hello_hash[EHR_SHA256_BYTES];
    uint8_t transcript[EHR_SHA256_BYTES];
    uint8_t peer_key[P2P_KEY_BYTES]; /* valid from AWAIT_AUTH on */
    ehr_public_key peer_public;
    uint8_t peer_ephemeral[EHR_KX_PUBLIC_BYTES];
    /* Output not yet taken by the caller (one length-prefixed message). */
    uint8_t out[P2P__HS_OUT_BYTES_MAX];
    size_t out_len;
    /* Valid in DONE: the session's keys, one per direction. */
    p2p__cipher tx;
    p2p__cipher rx;
    /* Valid in FAILED. */
    int error;
    const char *reason; /* static text for the log line */
} p2p__handshake;

/*
 * Begin: pick an ephemeral key and put our PeerHello into hs->out. Returns 0
 * (state AWAIT_HELLO) or EHR_EINVAL for bad parameters.
 */
int p2p__hs_start(p2p__handshake *hs, const p2p__hs_params *params);

/*
 * Feed received bytes. Consumes at most one whole handshake message from IN
 * (*CONSUMED says how many bytes; 0 if the message is not complete yet) and
 * may put our next message into hs->out. Precondition: the caller has taken
 * the previous output (hs->out_len == 0). Returns 0 while all is well (check
 * hs->state for DONE; bytes after the last handshake message are the first
 * frames), or a negative code with state FAILED:
 *   EHR_ETOOBIG   a length prefix over P2P_HANDSHAKE_MESSAGE_BYTES_MAX
 *   EHR_EPROTO    a malformed message, an invalid key, or the own key
 *   EHR_EVERSION  another protocol version
 *   EHR_ECHAIN    another chain id
 *   EHR_EDENIED   a key outside the member set (or not the member dialled)
 *   EHR_EBADSIG   a transcript signature that does not verify
 * Calling it in DONE or FAILED returns EHR_EINVAL.
 */
int p2p__hs_feed(p2p__handshake *hs, const uint8_t *in, size_t in_len, size_t *consumed);

/* Zero every secret in HS (ephemeral key, session keys). */
void p2p__hs_wipe(p2p__handshake *hs);

#endif /* EHR_P2P_INTERNAL_H */
