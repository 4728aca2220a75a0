/*
 * frame.c - the encrypted frame format of peer links, without I/O: the
 * XChaCha20-Poly1305 frame cipher with per-direction counters, the
 * hand-written protobuf codec of the PeerFrame body, the receive buffer that
 * cuts the byte stream into frames, and the send buffer that batches messages
 * into frames and encrypts them in place.
 *
 * Not here: sockets and timers (p2p.c), the handshake (handshake.c).
 *
 * Frame on the wire: length (4 bytes, big-endian, = ciphertext + tag bytes)
 * || ciphertext || tag. Nonce: the direction's frame counter as 8
 * little-endian bytes, then 16 zero bytes; each direction has its own key, so
 * a (key, nonce) pair never repeats. The length is the associated data.
 *
 * libsodium caveat: the detached AEAD functions accept the ciphertext and the
 * message at the same address (in-place), which both directions rely on; the
 * decrypting side checks the tag before it writes any plaintext.
 */
#include <string.h>

#include <sodium.h>

#include "p2p_internal.h"

_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == P2P__TAG_BYTES, "tag size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == P2P__SESSION_KEY_BYTES, "key size");

/* ---- cipher ---- */

void p2p__cipher_wipe(p2p__cipher *cipher)
{
    sodium_memzero(cipher, sizeof *cipher);
}

static void nonce_from_counter(uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES],
                               uint64_t counter)
{
    memset(nonce, 0, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    for (int i = 0; i < 8; i++)
        nonce[i] = (uint8_t)(counter >> (8 * i));
}

static void length_write(uint8_t out[P2P__LENGTH_BYTES], uint32_t value)
{
    out[0] = (uint8_t)(value >> 24);
    out[1] = (uint8_t)(value >> 16);
    out[2] = (uint8_t)(value >> 8);
    out[3] = (uint8_t)value;
}

static uint32_t length_read(const uint8_t in[P2P__LENGTH_BYTES])
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

int p2p__frame_seal(p2p__cipher *tx, uint8_t *frame, size_t plain_len)
{
    if (plain_len > P2P__FRAME_PLAIN_BYTES_MAX)
        return EHR_ETOOBIG;
    /* A counter that wrapped would reuse a nonce: never continue from there. */
    EHR_ASSERT(tx->counter != UINT64_MAX);
    length_write(frame, (uint32_t)(plain_len + P2P__TAG_BYTES));
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    nonce_from_counter(nonce, tx->counter);
    uint8_t *plain = frame + P2P__LENGTH_BYTES;
    unsigned long long tag_len = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(plain, plain + plain_len, &tag_len, plain,
                                                        plain_len, frame, P2P__LENGTH_BYTES, NULL,
                                                        nonce, tx->key);
    EHR_ASSERT(tag_len == P2P__TAG_BYTES);
    tx->counter++;
    return 0;
}

int p2p__frame_length(const uint8_t prefix[P2P__LENGTH_BYTES], size_t *cipher_len)
{
    uint32_t len = length_read(prefix);
    if (len > P2P_FRAME_BYTES_MAX)
        return EHR_ETOOBIG;
    if (len < P2P__TAG_BYTES)
        return EHR_EPROTO;
    *cipher_len = len;
    return 0;
}

int p2p__frame_open(p2p__cipher *rx, uint8_t *frame, size_t cipher_len, size_t *plain_len)
{
    EHR_ASSERT(cipher_len >= P2P__TAG_BYTES && cipher_len <= P2P_FRAME_BYTES_MAX);
    EHR_ASSERT(length_read(frame) == cipher_len);
    if (rx->counter == UINT64_MAX)
        return EHR_EPROTO;
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    nonce_from_counter(nonce, rx->counter);
    uint8_t *cipher = frame + P2P__LENGTH_BYTES;
    size_t body_len = cipher_len - P2P__TAG_BYTES;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(cipher, NULL, cipher, body_len,
                                                            cipher + body_len, frame,
                                                            P2P__LENGTH_BYTES, nonce, rx->key) != 0)
        return EHR_EPROTO;
    rx->counter++;
    *plain_len = body_len;
    return 0;
}

/* ---- protobuf wire format ---- */

/* Read as protobuf-c does, so that every body protobuf-c accepts, we accept
 * (and see the same fields); the primitives are common/pbwire.h's. */
static const enum ehr_pb_rule PB_RULE = EHR_PB_PROTOBUF_C;

int p2p__pb_next(const uint8_t *buf, size_t len, size_t *pos, p2p__pb_field *field)
{
    EHR_ASSERT(*pos <= len);
    if (*pos == len)
        return 0;
    ehr_pb_reader r = {.data = buf, .len = len, .pos = *pos};
    uint32_t number = 0;
    unsigned wire_type = 0;
    if (ehr_pb_key_read(&r, PB_RULE, &number, &wire_type) != 0)
        return EHR_EPROTO;
    *field = (p2p__pb_field){.number = number, .wire_type = wire_type};
    int rc;
    switch (wire_type) {
    case P2P__PB_VARINT:
        rc = ehr_pb_varint_read(&r, PB_RULE, &field->varint);
        break;
    case P2P__PB_FIXED64:
        rc = ehr_pb_skip(&r, 8);
        break;
    case P2P__PB_FIXED32:
        rc = ehr_pb_skip(&r, 4);
        break;
    case P2P__PB_BYTES: {
        ehr_pb_reader content = {.data = NULL};
        rc = ehr_pb_len_read(&r, PB_RULE, &content);
        field->bytes = content.data;
        field->bytes_len = content.len;
        break;
    }
    default: /* 3 and 4 are groups (deprecated, never used here); 6 and 7 do not exist */
        return EHR_EPROTO;
    }
    if (rc != 0)
        return EHR_EPROTO;
    *pos = r.pos;
    return 1;
}

/* ---- PeerFrame body ---- */

enum { PEER_FRAME_MESSAGES_FIELD = 1 };

size_t p2p__record_header_bytes(size_t len)
{
    return ehr_pb_len_header_size(PEER_FRAME_MESSAGES_FIELD, len);
}

size_t p2p__record_header_write(uint8_t *out, size_t len)
{
    EHR_ASSERT(len <= P2P_MESSAGE_BYTES_MAX);
    size_t n = (size_t)(ehr_pb_len_header_write(out, PEER_FRAME_MESSAGES_FIELD, len) - out);
    EHR_ASSERT(n <= P2P__RECORD_HEADER_BYTES_MAX);
    return n;
}

int p2p__body_next(const uint8_t *body, size_t body_len, size_t *pos, const uint8_t **msg,
                   size_t *msg_len)
{
    for (;;) {
        p2p__pb_field field;
        int rc = p2p__pb_next(body, body_len, pos, &field);
        if (rc <= 0)
            return rc;
        if (field.number != PEER_FRAME_MESSAGES_FIELD)
            continue; /* unknown field: skipped */
        if (field.wire_type != P2P__PB_BYTES)
            return EHR_EPROTO;
        if (field.bytes_len > P2P_MESSAGE_BYTES_MAX)
            return EHR_ETOOBIG;
        *msg = field.bytes;
        *msg_len = field.bytes_len;
        return 1;
    }
}

/* ---- receive buffer ---- */

int p2p__reader_init(p2p__reader *r, size_t capacity)
{
    EHR_ASSERT(capacity > 0 && capacity <= P2P__READ_BYTES_MAX);
    memset(r, 0, sizeof *r);
    r->data = ehr_try_malloc(capacity);
    if (r->data == NULL)
        return EHR_EFULL;
    r->capacity = capacity;
    return 0;
}

void p2p__reader_free(p2p__reader *r)
{
    ehr_free(r->data);
    memset(r, 0, sizeof *r);
}

static void reader_compact(p2p__reader *r)
{
    if (r->start == 0)
        return;
    memmove(r->data, r->data + r->start, r->end - r->start);
    r->end -= r->start;
    r->start = 0;
}

int p2p__reader_space(p2p__reader *r, size_t capacity_min, uint8_t **space, size_t *space_len)
{
    EHR_ASSERT(r->start <= r->end && r->end <= r->capacity);
    EHR_ASSERT(capacity_min <= P2P__READ_BYTES_MAX && r->need_size <= P2P__READ_BYTES_MAX);
    if (r->start == r->end)
        r->start = r->end = 0;
    size_t want = capacity_min > r->need_size ? capacity_min : r->need_size;
    if (want > r->capacity) {
        uint8_t *bigger = ehr_try_malloc(want);
        if (bigger == NULL)
            return EHR_EFULL;
        memcpy(bigger, r->data + r->start, r->end - r->start);
        ehr_free(r->data);
        r->data = bigger;
        r->capacity = want;
        r->end -= r->start;
        r->start = 0;
    }
    size_t free_bytes = r->capacity - r->end;
    size_t chunk =
        r->capacity / 2 < P2P__READ_CHUNK_BYTES_MIN ? r->capacity / 2 : P2P__READ_CHUNK_BYTES_MIN;
    if (free_bytes < chunk || r->start + r->need_size > r->capacity)
        reader_compact(r);
    if (r->end == r->capacity)
        return EHR_EFULL; /* only a peer that breaks the handshake gets here */
    *space = r->data + r->end;
    *space_len = r->capacity - r->end;
    return 0;
}

void p2p__reader_commit(p2p__reader *r, size_t n)
{
    EHR_ASSERT(n <= r->capacity - r->end);
    r->end += n;
}

void p2p__reader_consume(p2p__reader *r, size_t n)
{
    EHR_ASSERT(n <= r->end - r->start);
    r->start += n;
}

int p2p__reader_frame(p2p__reader *r, p2p__cipher *rx, uint8_t **body, size_t *body_len)
{
    size_t avail = r->end - r->start;
    if (avail < P2P__LENGTH_BYTES)
        return 0;
    if (r->need_size == 0) {
        size_t cipher_len = 0;
        int rc = p2p__frame_length(r->data + r->start, &cipher_len);
        if (rc != 0)
            return rc;
        r->need_size = P2P__LENGTH_BYTES + cipher_len;
    }
    if (avail < r->need_size)
        return 0;
    uint8_t *frame = r->data + r->start;
    size_t plain_len = 0;
    int rc = p2p__frame_open(rx, frame, r->need_size - P2P__LENGTH_BYTES, &plain_len);
    if (rc != 0)
        return rc;
    *body = frame + P2P__LENGTH_BYTES;
    *body_len = plain_len;
    r->start += r->need_size;
    r->need_size = 0;
    return 1;
}

/* ---- send buffer ---- */

enum { OUTBUF_BYTES_MIN = 64 << 10 };

void p2p__outbuf_free(p2p__outbuf *ob)
{
    ehr_free(ob->data);
    memset(ob, 0, sizeof *ob);
}

size_t p2p__outbuf_message_cost(size_t len)
{
    return P2P__LENGTH_BYTES + p2p__record_header_bytes(len) + len + P2P__TAG_BYTES;
}

/* Make room for EXTRA more bytes. Returns 0 or EHR_EFULL. */
static int outbuf_reserve(p2p__outbuf *ob, size_t extra, size_t capacity_max)
{
    if (ob->capacity - ob->len >= extra)
        return 0;
    size_t need = ob->len + extra;
    if (need > capacity_max)
        return EHR_EFULL;
    size_t cap = ob->capacity < OUTBUF_BYTES_MIN ? OUTBUF_BYTES_MIN : ob->capacity;
    while (cap < need)
        cap *= 2;
    if (cap > capacity_max)
        cap = capacity_max;
    uint8_t *bigger = ehr_try_malloc(cap);
    if (bigger == NULL)
        return EHR_EFULL;
    if (ob->len > 0)
        memcpy(bigger, ob->data, ob->len);
    ehr_free(ob->data);
    ob->data = bigger;
    ob->capacity = cap;
    return 0;
}

/* Seal the open frame; the caller has reserved room for its tag. */
static void outbuf_close_frame(p2p__outbuf *ob, p2p__cipher *tx)
{
    EHR_ASSERT(ob->frame_open);
    size_t plain_len = ob->len - ob->frame_start - P2P__LENGTH_BYTES;
    EHR_ASSERT(ob->capacity - ob->len >= P2P__TAG_BYTES);
    int rc = p2p__frame_seal(tx, ob->data + ob->frame_start, plain_len);
    EHR_ASSERT(rc == 0); /* the batching rule keeps every frame within the limit */
    ob->len += P2P__TAG_BYTES;
    ob->frame_open = false;
}

static void outbuf_open_frame(p2p__outbuf *ob)
{
    EHR_ASSERT(!ob->frame_open);
    ob->frame_start = ob->len;
    ob->len += P2P__LENGTH_BYTES;
    ob->frame_open = true;
}

int p2p__outbuf_append(p2p__outbuf *ob, p2p__cipher *tx, const uint8_t *msg, size_t len,
                       size_t capacity_max)
{
    if (len > P2P_MESSAGE_BYTES_MAX)
        return EHR_ETOOBIG;
    size_t record = p2p__record_header_bytes(len) + len;
    /* Worst case: the open frame's tag, then a whole new frame. */
    if (outbuf_reserve(ob, P2P__TAG_BYTES + p2p__outbuf_message_cost(len), capacity_max) != 0)
        return EHR_EFULL;
    if (ob->frame_open) {
        size_t plain_len = ob->len - ob->frame_start - P2P__LENGTH_BYTES;
        if (plain_len + record > P2P__FRAME_BATCH_BYTES)
            outbuf_close_frame(ob, tx);
    }
    if (!ob->frame_open)
        outbuf_open_frame(ob);
    ob->len += p2p__record_header_write(ob->data + ob->len, len);
    if (len > 0)
        memcpy(ob->data + ob->len, msg, len);
    ob->len += len;
    ob->message_count++;
    EHR_ASSERT(ob->len - ob->frame_start - P2P__LENGTH_BYTES <= P2P__FRAME_PLAIN_BYTES_MAX);
    return 0;
}

int p2p__outbuf_seal(p2p__outbuf *ob, p2p__cipher *tx)
{
    if (ob->frame_open)
        outbuf_close_frame(ob, tx);
    EHR_ASSERT(!ob->frame_open);
    return 0;
}

int p2p__outbuf_keepalive(p2p__outbuf *ob, p2p__cipher *tx, size_t capacity_max)
{
    if (outbuf_reserve(ob, 2 * P2P__TAG_BYTES + P2P__LENGTH_BYTES, capacity_max) != 0)
        return EHR_EFULL;
    p2p__outbuf_seal(ob, tx);
    outbuf_open_frame(ob);
    outbuf_close_frame(ob, tx);
    return 0;
}

void p2p__outbuf_reset(p2p__outbuf *ob)
{
    ob->len = 0;
    ob->frame_start = 0;
    ob->frame_open = false;
    ob->message_count = 0;
}
