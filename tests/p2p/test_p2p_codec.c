/*
 * Unit tests for the I/O-free layer of p2p/: the handshake state machine
 * (success, every refusal, replay of either side, split input) and the frame
 * codec (round trip with batching, tampering, replay, reordering, the size
 * limit at its edge without a large allocation, the PeerFrame body parser,
 * and agreement with protobuf-c on the .proto formats). No sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ehr/v1/p2p.pb-c.h"
#include "p2p_internal.h"

static const char CHAIN[] = "test-chain";

/* ---- in-memory handshakes ---- */

typedef struct side {
    ehr_signing_key key;
    p2p__handshake hs;
    const uint8_t *allowed; /* the one key the member check admits, or NULL: everyone */
    /* Every byte this side sent, in order. */
    uint8_t wire[1024];
    size_t wire_len;
    /* Bytes received but not consumed yet. */
    uint8_t in[1024];
    size_t in_len;
    int rc;
} side;

static int side_member_check(void *ctx, const uint8_t key[P2P_KEY_BYTES])
{
    const side *s = ctx;
    return s->allowed == NULL || memcmp(s->allowed, key, P2P_KEY_BYTES) == 0 ? 0 : EHR_EDENIED;
}

static void side_start(side *s, bool initiator, const char *chain, const uint8_t *expected)
{
    p2p__hs_params params = {
        .initiator = initiator,
        .node_key = &s->key,
        .chain_id = chain,
        .expected_peer = expected,
        .member_check = side_member_check,
        .member_ctx = s,
    };
    assert_int_equal(p2p__hs_start(&s->hs, &params), 0);
    assert_int_equal(s->hs.state, P2P__HS_AWAIT_HELLO);
}

/* Move FROM's pending output onto its wire log and into TO's input. */
static void side_transfer(side *from, side *to)
{
    size_t n = from->hs.out_len;
    assert_true(from->wire_len + n <= sizeof from->wire);
    memcpy(from->wire + from->wire_len, from->hs.out, n);
    from->wire_len += n;
    if (to != NULL) {
        assert_true(to->in_len + n <= sizeof to->in);
        memcpy(to->in + to->in_len, from->hs.out, n);
        to->in_len += n;
    }
    from->hs.out_len = 0;
}

/* Feed S's pending input until it stops making progress. */
static void side_feed(side *s)
{
    for (;;) {
        if (s->hs.state != P2P__HS_AWAIT_HELLO && s->hs.state != P2P__HS_AWAIT_AUTH)
            return;
        size_t consumed = 0;
        s->rc = p2p__hs_feed(&s->hs, s->in, s->in_len, &consumed);
        memmove(s->in, s->in + consumed, s->in_len - consumed);
        s->in_len -= consumed;
        if (s->rc != 0 || consumed == 0)
            return;
    }
}

/* Run a handshake between A (initiator) and B to completion or failure. */
static void run_handshake(side *a, side *b)
{
    for (int round = 0; round < 4; round++) {
        side_transfer(a, b);
        side_transfer(b, a);
        side_feed(a);
        side_feed(b);
    }
    side_transfer(a, b);
    side_transfer(b, a);
    side_feed(a);
    side_feed(b);
}

static void sides_init(side *a, side *b)
{
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    assert_int_equal(ehr_signing_key_generate(&a->key), 0);
    assert_int_equal(ehr_signing_key_generate(&b->key), 0);
}

static void test_handshake_completes_with_matching_session_keys(void **state)
{
    side a, b;
    sides_init(&a, &b);
    side_start(&a, true, CHAIN, b.key.public_key);
    side_start(&b, false, CHAIN, NULL);
    run_handshake(&a, &b);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(a.hs.state, P2P__HS_DONE);
    assert_int_equal(b.hs.state, P2P__HS_DONE);
    assert_memory_equal(a.hs.peer_key, b.key.public_key, P2P_KEY_BYTES);
    assert_memory_equal(b.hs.peer_key, a.key.public_key, P2P_KEY_BYTES);
    assert_memory_equal(a.hs.tx.key, b.hs.rx.key, P2P__SESSION_KEY_BYTES);
    assert_memory_equal(a.hs.rx.key, b.hs.tx.key, P2P__SESSION_KEY_BYTES);
    assert_memory_not_equal(a.hs.tx.key, a.hs.rx.key, P2P__SESSION_KEY_BYTES);
    /* The ephemeral secret is gone once the keys exist. */
    uint8_t zero[EHR_KX_SECRET_BYTES] = {0};
    assert_memory_equal(a.hs.ephemeral.secret, zero, sizeof zero);
    /* One hello and one auth each way: a single round trip. */
    assert_int_equal(a.wire_len, b.wire_len);
    p2p__hs_wipe(&a.hs);
    p2p__hs_wipe(&b.hs);
}

static void test_handshake_completes_when_bytes_arrive_one_at_a_time(void **state)
{
    side a, b;
    sides_init(&a, &b);
    side_start(&a, true, CHAIN, NULL);
    side_start(&b, false, CHAIN, NULL);
    /* Each side's whole output, delivered to the other one byte per call. */
    for (int step = 0; step < 2; step++) {
        uint8_t a_out[P2P__HS_OUT_BYTES_MAX], b_out[P2P__HS_OUT_BYTES_MAX];
        size_t a_len = a.hs.out_len, b_len = b.hs.out_len;
        memcpy(a_out, a.hs.out, a_len);
        memcpy(b_out, b.hs.out, b_len);
        a.hs.out_len = b.hs.out_len = 0;
        for (size_t i = 0; i < b_len; i++) {
            a.in[a.in_len++] = b_out[i];
            side_feed(&a);
            assert_int_equal(a.rc, 0);
        }
        for (size_t i = 0; i < a_len; i++) {
            b.in[b.in_len++] = a_out[i];
            side_feed(&b);
            assert_int_equal(b.rc, 0);
        }
    }
    assert_int_equal(a.hs.state, P2P__HS_DONE);
    assert_int_equal(b.hs.state, P2P__HS_DONE);
    assert_memory_equal(a.hs.tx.key, b.hs.rx.key, P2P__SESSION_KEY_BYTES);
}

static void test_handshake_messages_match_the_proto_schema(void **state)
{
    side a, b;
    sides_init(&a, &b);
    side_start(&a, true, CHAIN, NULL);
    /* Our hand-written PeerHello, read back by protobuf-c. */
    const uint8_t *msg = a.hs.out + P2P__LENGTH_BYTES;
    size_t len = a.hs.out_len - P2P__LENGTH_BYTES;
    Ehr__V1__PeerHello *hello = ehr__v1__peer_hello__unpack(NULL, len, msg);
    assert_non_null(hello);
    assert_int_equal(hello->version, P2P_PROTOCOL_VERSION);
    assert_string_equal(hello->chain_id, CHAIN);
    assert_int_equal(hello->node_key.len, P2P_KEY_BYTES);
    assert_memory_equal(hello->node_key.data, a.key.public_key, P2P_KEY_BYTES);
    assert_int_equal(hello->ephemeral_key.len, EHR_KX_PUBLIC_BYTES);
    assert_memory_equal(hello->ephemeral_key.data, a.hs.ephemeral.public_key, 32);
    /* And protobuf-c's encoding of the same values is byte for byte ours. */
    uint8_t packed[P2P_HANDSHAKE_MESSAGE_BYTES_MAX];
    assert_int_equal(ehr__v1__peer_hello__get_packed_size(hello), len);
    ehr__v1__peer_hello__pack(hello, packed);
    assert_memory_equal(packed, msg, len);
    ehr__v1__peer_hello__free_unpacked(hello, NULL);

    side_start(&b, false, CHAIN, NULL);
    run_handshake(&a, &b);
    assert_int_equal(a.hs.state, P2P__HS_DONE);
    /* The second message on A's wire is a PeerAuth with a 64-byte signature. */
    size_t hello_len = P2P__LENGTH_BYTES + len;
    Ehr__V1__PeerAuth *auth = ehr__v1__peer_auth__unpack(
        NULL, a.wire_len - hello_len - P2P__LENGTH_BYTES, a.wire + hello_len + P2P__LENGTH_BYTES);
    assert_non_null(auth);
    assert_int_equal(auth->signature.len, EHR_SCHNORR_SIG_BYTES);
    ehr__v1__peer_auth__free_unpacked(auth, NULL);
}

/* Start B as responder and feed it a PeerHello that protobuf-c packs from H. */
static int feed_packed_hello(side *b, const Ehr__V1__PeerHello *h)
{
    uint8_t buf[4 + 512];
    size_t len = ehr__v1__peer_hello__get_packed_size(h);
    assert_true(len <= 512);
    ehr__v1__peer_hello__pack(h, buf + 4);
    buf[0] = buf[1] = 0;
    buf[2] = (uint8_t)(len >> 8);
    buf[3] = (uint8_t)len;
    side_transfer(b, NULL);
    memcpy(b->in, buf, 4 + len);
    b->in_len = 4 + len;
    side_feed(b);
    return b->rc;
}

static void hello_for(Ehr__V1__PeerHello *h, const side *from, uint32_t version, const char *chain,
                      const uint8_t *ephemeral)
{
    ehr__v1__peer_hello__init(h);
    h->version = version;
    h->chain_id = (char *)chain;
    h->node_key.data = (uint8_t *)from->key.public_key;
    h->node_key.len = P2P_KEY_BYTES;
    h->ephemeral_key.data = (uint8_t *)ephemeral;
    h->ephemeral_key.len = 32;
}

static void test_handshake_refuses_key_outside_member_set(void **state)
{
    side a, b;
    sides_init(&a, &b);
    ehr_signing_key other;
    assert_int_equal(ehr_signing_key_generate(&other), 0);
    b.allowed = other.public_key; /* A is not a member for B */
    side_start(&a, true, CHAIN, NULL);
    side_start(&b, false, CHAIN, NULL);
    run_handshake(&a, &b);
    assert_int_equal(b.rc, EHR_EDENIED);
    assert_int_equal(b.hs.state, P2P__HS_FAILED);
    assert_string_equal(b.hs.reason, "key not in member set");
    /* B refused at A's hello, before signing anything: only its hello left. */
    assert_int_equal(b.wire_len, a.wire_len - (P2P__LENGTH_BYTES + 2 + EHR_SCHNORR_SIG_BYTES));
    assert_int_not_equal(a.hs.state, P2P__HS_DONE);
}

static void test_handshake_refuses_wrong_chain_id(void **state)
{
    side a, b;
    sides_init(&a, &b);
    side_start(&a, true, "other-chain", NULL);
    side_start(&b, false, CHAIN, NULL);
    run_handshake(&a, &b);
    assert_int_equal(b.rc, EHR_ECHAIN);
    assert_string_equal(b.hs.reason, "wrong chain id");
    assert_int_equal(a.rc, EHR_ECHAIN);
    /* A chain id that is a prefix of ours is another chain too. */
    side c, d;
    sides_init(&c, &d);
    side_start(&c, true, "test-chai", NULL);
    side_start(&d, false, CHAIN, NULL);
    run_handshake(&c, &d);
    assert_int_equal(d.rc, EHR_ECHAIN);
}

static void test_handshake_refuses_other_protocol_version(void **state)
{
    side a, b;
    sides_init(&a, &b);
    side_start(&b, false, CHAIN, NULL);
    uint8_t eph[32];
    ehr_kx_key kx;
    ehr_kx_key_generate(&kx);
    memcpy(eph, kx.public_key, 32);
    Ehr__V1__PeerHello h;
    hello_for(&h, &a, P2P_PROTOCOL_VERSION + 1, CHAIN, eph);
    assert_int_equal(feed_packed_hello(&b, &h), EHR_EVERSION);
    assert_string_equal(b.hs.reason, "unsupported protocol version");
}

static void test_handshake_refuses_bad_transcript_signature(void **state)
{
    side a, b;
    sides_init(&a, &b);
    side_start(&a, true, CHAIN, NULL);
    side_start(&b, false, CHAIN, NULL);
    side_transfer(&a, &b);
    side_transfer(&b, &a);
    side_feed(&a); /* A now holds its auth in a.hs.out */
    assert_int_equal(a.hs.state, P2P__HS_AWAIT_AUTH);
    a.hs.out[a.hs.out_len - 1] ^= 0x80; /* last byte of the signature */
    side_transfer(&a, &b);
    side_feed(&b);
    assert_int_equal(b.rc, EHR_EBADSIG);
    assert_string_equal(b.hs.reason, "bad transcript signature");
}

static void test_handshake_refuses_replayed_initiator(void **state)
{
    /* Record a real initiator's bytes, then replay them to a fresh responder
     * with the same node key: its new ephemeral key makes the old signature
     * worthless (I1). */
    side a, b;
    sides_init(&a, &b);
    side_start(&a, true, CHAIN, NULL);
    side_start(&b, false, CHAIN, NULL);
    run_handshake(&a, &b);
    assert_int_equal(b.hs.state, P2P__HS_DONE);

    side fresh;
    memset(&fresh, 0, sizeof fresh);
    fresh.key = b.key;
    side_start(&fresh, false, CHAIN, NULL);
    side_transfer(&fresh, NULL);
    memcpy(fresh.in, a.wire, a.wire_len);
    fresh.in_len = a.wire_len;
    side_feed(&fresh);
    assert_int_equal(fresh.rc, EHR_EBADSIG);
    assert_int_equal(fresh.hs.state, P2P__HS_FAILED);
}

static void test_handshake_refuses_replayed_responder(void **state)
{
    side a, b;
    sides_init(&a, &b);
    side_start(&a, true, CHAIN, NULL);
    side_start(&b, false, CHAIN, NULL);
    run_handshake(&a, &b);
    assert_int_equal(a.hs.state, P2P__HS_DONE);

    side fresh;
    memset(&fresh, 0, sizeof fresh);
    fresh.key = a.key;
    side_start(&fresh, true, CHAIN, b.key.public_key);
    side_transfer(&fresh, NULL);
    memcpy(fresh.in, b.wire, b.wire_len);
    fresh.in_len = b.wire_len;
    side_feed(&fresh);
    assert_int_equal(fresh.rc, EHR_EBADSIG);
}

static void test_handshake_refuses_reflected_hello(void **state)
{
    side a, b;
    sides_init(&a, &b);
    side_start(&a, true, CHAIN, NULL);
    /* A's own hello comes back to it. */
    memcpy(a.in, a.hs.out, a.hs.out_len);
    a.in_len = a.hs.out_len;
    side_transfer(&a, NULL);
    side_feed(&a);
    assert_int_equal(a.rc, EHR_EPROTO);
    assert_string_equal(a.hs.reason, "peer presented our own node key");
}

static void test_handshake_refuses_responder_other_than_dialled(void **state)
{
    side a, b;
    sides_init(&a, &b);
    ehr_signing_key expected;
    assert_int_equal(ehr_signing_key_generate(&expected), 0);
    side_start(&a, true, CHAIN, expected.public_key);
    side_start(&b, false, CHAIN, NULL);
    run_handshake(&a, &b);
    assert_int_equal(a.rc, EHR_EDENIED);
    assert_string_equal(a.hs.reason, "not the member dialled");
}

static void test_handshake_message_size_limit_edge(void **state)
{
    side b;
    memset(&b, 0, sizeof b);
    assert_int_equal(ehr_signing_key_generate(&b.key), 0);
    /* Exactly the limit: read and judged on its content (junk: malformed). */
    side_start(&b, false, CHAIN, NULL);
    b.in[2] = (uint8_t)(P2P_HANDSHAKE_MESSAGE_BYTES_MAX >> 8);
    b.in[3] = (uint8_t)P2P_HANDSHAKE_MESSAGE_BYTES_MAX;
    memset(b.in + 4, 0xff, P2P_HANDSHAKE_MESSAGE_BYTES_MAX);
    b.in_len = 4 + P2P_HANDSHAKE_MESSAGE_BYTES_MAX;
    side_feed(&b);
    assert_int_equal(b.rc, EHR_EPROTO);
    /* One over: refused from the length alone, before the body arrives. */
    side_start(&b, false, CHAIN, NULL);
    b.in[2] = (uint8_t)((P2P_HANDSHAKE_MESSAGE_BYTES_MAX + 1) >> 8);
    b.in[3] = (uint8_t)(P2P_HANDSHAKE_MESSAGE_BYTES_MAX + 1);
    b.in_len = 4;
    side_feed(&b);
    assert_int_equal(b.rc, EHR_ETOOBIG);
    /* Text garbage reads as a huge length. */
    side_start(&b, false, CHAIN, NULL);
    memcpy(b.in, "GET / HTTP/1.1\r\n", 16);
    b.in_len = 16;
    side_feed(&b);
    assert_int_equal(b.rc, EHR_ETOOBIG);
}

static void test_handshake_refuses_malformed_hellos(void **state)
{
    side a, b;
    sides_init(&a, &b);
    ehr_kx_key kx;
    ehr_kx_key_generate(&kx);
    Ehr__V1__PeerHello h;

    /* A node key of the wrong length. */
    side_start(&b, false, CHAIN, NULL);
    hello_for(&h, &a, P2P_PROTOCOL_VERSION, CHAIN, kx.public_key);
    h.node_key.len = 31;
    assert_int_equal(feed_packed_hello(&b, &h), EHR_EPROTO);
    /* A node key that is not on the curve. */
    side_start(&b, false, CHAIN, NULL);
    uint8_t bad_key[32];
    memset(bad_key, 0xff, sizeof bad_key);
    hello_for(&h, &a, P2P_PROTOCOL_VERSION, CHAIN, kx.public_key);
    h.node_key.data = bad_key;
    assert_int_equal(feed_packed_hello(&b, &h), EHR_EPROTO);
    assert_string_equal(b.hs.reason, "invalid node key");
    /* An ephemeral key that gives no shared secret (all zero: low order). */
    side_start(&b, false, CHAIN, NULL);
    uint8_t zero[32] = {0};
    hello_for(&h, &a, P2P_PROTOCOL_VERSION, CHAIN, zero);
    assert_int_equal(feed_packed_hello(&b, &h), EHR_EPROTO);
    assert_string_equal(b.hs.reason, "invalid ephemeral key");
    /* Missing version (proto3 default 0) is another version. */
    side_start(&b, false, CHAIN, NULL);
    hello_for(&h, &a, 0, CHAIN, kx.public_key);
    assert_int_equal(feed_packed_hello(&b, &h), EHR_EVERSION);
    /* A known field twice. */
    side_start(&b, false, CHAIN, NULL);
    uint8_t dup[] = {0, 0, 0, 4, 0x08, 0x01, 0x08, 0x01};
    memcpy(b.in, dup, sizeof dup);
    b.in_len = sizeof dup;
    side_feed(&b);
    assert_int_equal(b.rc, EHR_EPROTO);
    /* Feeding a failed handshake is a caller error. */
    size_t consumed = 0;
    assert_int_equal(p2p__hs_feed(&b.hs, dup, sizeof dup, &consumed), EHR_EINVAL);
}

static void test_handshake_start_rejects_bad_parameters(void **state)
{
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    p2p__handshake hs;
    char long_chain[P2P_CHAIN_ID_BYTES_MAX + 2];
    memset(long_chain, 'c', sizeof long_chain - 1);
    long_chain[sizeof long_chain - 1] = '\0';
    p2p__hs_params params = {.node_key = &key, .chain_id = long_chain, .member_check = NULL};
    assert_int_equal(p2p__hs_start(&hs, &params), EHR_EINVAL);
    params.member_check = side_member_check;
    assert_int_equal(p2p__hs_start(&hs, &params), EHR_EINVAL);
    long_chain[P2P_CHAIN_ID_BYTES_MAX] = '\0'; /* exactly the limit */
    side s = {0};
    params.member_ctx = &s;
    assert_int_equal(p2p__hs_start(&hs, &params), 0);
    params.chain_id = "";
    assert_int_equal(p2p__hs_start(&hs, &params), EHR_EINVAL);
}

/* ---- frames ---- */

static void cipher_pair(p2p__cipher *tx, p2p__cipher *rx)
{
    memset(tx, 0, sizeof *tx);
    randombytes_buf(tx->key, sizeof tx->key);
    *rx = *tx;
}

/* Feed BYTES[0..LEN) to a reader in chunks of CHUNK, collecting messages.
 * Returns the first error, or the number of frames. */
static int read_all(p2p__cipher *rx, const uint8_t *bytes, size_t len, size_t chunk, uint8_t **msgs,
                    size_t *lens, size_t *count, size_t count_max)
{
    p2p__reader r;
    assert_int_equal(p2p__reader_init(&r, P2P__READ_HANDSHAKE_BYTES), 0);
    size_t pos = 0;
    int frames = 0;
    *count = 0;
    while (pos < len) {
        uint8_t *space = NULL;
        size_t space_len = 0;
        assert_int_equal(p2p__reader_space(&r, P2P__READ_BYTES, &space, &space_len), 0);
        size_t n = len - pos < chunk ? len - pos : chunk;
        if (n > space_len)
            n = space_len;
        memcpy(space, bytes + pos, n);
        p2p__reader_commit(&r, n);
        pos += n;
        for (;;) {
            uint8_t *body = NULL;
            size_t body_len = 0;
            int rc = p2p__reader_frame(&r, rx, &body, &body_len);
            if (rc < 0) {
                p2p__reader_free(&r);
                return rc;
            }
            if (rc == 0)
                break;
            frames++;
            size_t bpos = 0;
            const uint8_t *m = NULL;
            size_t mlen = 0;
            while ((rc = p2p__body_next(body, body_len, &bpos, &m, &mlen)) == 1) {
                assert_true(*count < count_max);
                msgs[*count] = malloc(mlen + 1);
                memcpy(msgs[*count], m, mlen);
                lens[*count] = mlen;
                (*count)++;
            }
            if (rc < 0) {
                p2p__reader_free(&r);
                return rc;
            }
        }
    }
    p2p__reader_free(&r);
    return frames;
}

enum { ROUND_TRIP_COUNT = 300 };

static void test_frames_round_trip_in_order_and_batch_small_messages(void **state)
{
    p2p__cipher tx, rx;
    cipher_pair(&tx, &rx);
    p2p__outbuf ob;
    memset(&ob, 0, sizeof ob);
    static uint8_t big[P2P_MESSAGE_BYTES_MAX + 64];
    randombytes_buf(big, sizeof big);
    size_t sizes[ROUND_TRIP_COUNT];
    for (size_t i = 0; i < ROUND_TRIP_COUNT; i++) {
        sizes[i] = i == 0 ? 0 : i == 150 ? P2P_MESSAGE_BYTES_MAX : (i * 37) % 700;
        assert_int_equal(p2p__outbuf_append(&ob, &tx, big + (i % 64), sizes[i], 64 << 20), 0);
    }
    assert_int_equal(ob.message_count, ROUND_TRIP_COUNT);
    p2p__outbuf_seal(&ob, &tx);
    /* Several chunkings of the same stream give the same messages. */
    size_t chunks[] = {1, 7, 4096, 1 << 20};
    for (size_t c = 0; c < EHR_ARRAY_COUNT(chunks); c++) {
        p2p__cipher rx_copy = rx;
        uint8_t *msgs[ROUND_TRIP_COUNT];
        size_t lens[ROUND_TRIP_COUNT], count = 0;
        int frames =
            read_all(&rx_copy, ob.data, ob.len, chunks[c], msgs, lens, &count, ROUND_TRIP_COUNT);
        assert_true(frames > 0);
        /* Small messages share frames: far fewer frames than messages. */
        assert_true(frames < ROUND_TRIP_COUNT / 10);
        assert_int_equal(rx_copy.counter, tx.counter);
        assert_int_equal(count, ROUND_TRIP_COUNT);
        for (size_t i = 0; i < count; i++) {
            assert_int_equal(lens[i], sizes[i]);
            if (sizes[i] > 0)
                assert_memory_equal(msgs[i], big + (i % 64), sizes[i]);
            free(msgs[i]);
        }
    }
    p2p__outbuf_free(&ob);
}

static void test_frame_with_any_flipped_bit_is_refused(void **state)
{
    p2p__cipher tx, rx;
    cipher_pair(&tx, &rx);
    p2p__outbuf ob;
    memset(&ob, 0, sizeof ob);
    const uint8_t msg[] = "a consensus message";
    assert_int_equal(p2p__outbuf_append(&ob, &tx, msg, sizeof msg, 1 << 20), 0);
    p2p__outbuf_seal(&ob, &tx);
    /* Every bit after the length prefix: authentication fails. */
    for (size_t byte = P2P__LENGTH_BYTES; byte < ob.len; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            p2p__cipher r = rx;
            ob.data[byte] ^= (uint8_t)(1 << bit);
            uint8_t *msgs[4];
            size_t lens[4], count = 0;
            assert_int_equal(read_all(&r, ob.data, ob.len, ob.len, msgs, lens, &count, 4),
                             EHR_EPROTO);
            assert_int_equal(count, 0);
            assert_int_equal(r.counter, 0);
            ob.data[byte] ^= (uint8_t)(1 << bit);
        }
    }
    /* A shorter length: the tag is checked over the wrong bytes. */
    p2p__cipher r = rx;
    ob.data[3] -= 1;
    uint8_t *msgs[4];
    size_t lens[4], count = 0;
    assert_true(read_all(&r, ob.data, ob.len, ob.len, msgs, lens, &count, 4) < 0);
    assert_int_equal(count, 0);
    p2p__outbuf_free(&ob);
}

static void test_frames_replayed_reordered_or_dropped_are_refused(void **state)
{
    p2p__cipher tx, rx;
    cipher_pair(&tx, &rx);
    uint8_t frames[3][64];
    for (int i = 0; i < 3; i++) {
        memset(frames[i], 0, sizeof frames[i]);
        frames[i][4] = 0x0a;
        frames[i][5] = 1;
        frames[i][6] = (uint8_t)('0' + i);
        assert_int_equal(p2p__frame_seal(&tx, frames[i], 3), 0);
    }
    size_t frame_len = P2P__LENGTH_BYTES + 3 + P2P__TAG_BYTES;
    size_t plain = 0;
    uint8_t copy[64];
    /* In order: fine. */
    p2p__cipher r = rx;
    for (int i = 0; i < 3; i++) {
        memcpy(copy, frames[i], sizeof copy);
        assert_int_equal(p2p__frame_open(&r, copy, frame_len - 4, &plain), 0);
        assert_int_equal(copy[6], '0' + i);
    }
    /* Replayed: frame 0 twice. */
    r = rx;
    memcpy(copy, frames[0], sizeof copy);
    assert_int_equal(p2p__frame_open(&r, copy, frame_len - 4, &plain), 0);
    memcpy(copy, frames[0], sizeof copy);
    assert_int_equal(p2p__frame_open(&r, copy, frame_len - 4, &plain), EHR_EPROTO);
    /* Reordered: frame 1 before frame 0. */
    r = rx;
    memcpy(copy, frames[1], sizeof copy);
    assert_int_equal(p2p__frame_open(&r, copy, frame_len - 4, &plain), EHR_EPROTO);
    /* Dropped: frame 0 then frame 2. */
    r = rx;
    memcpy(copy, frames[0], sizeof copy);
    assert_int_equal(p2p__frame_open(&r, copy, frame_len - 4, &plain), 0);
    memcpy(copy, frames[2], sizeof copy);
    assert_int_equal(p2p__frame_open(&r, copy, frame_len - 4, &plain), EHR_EPROTO);
    /* From the other direction's key: refused. */
    p2p__cipher other;
    cipher_pair(&other, &r);
    memcpy(copy, frames[0], sizeof copy);
    assert_int_equal(p2p__frame_open(&r, copy, frame_len - 4, &plain), EHR_EPROTO);
}

static void put_be32(uint8_t *out, uint32_t v)
{
    out[0] = (uint8_t)(v >> 24);
    out[1] = (uint8_t)(v >> 16);
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)v;
}

static void test_frame_length_limit_edges(void **state)
{
    uint8_t prefix[4];
    size_t len = 0;
    put_be32(prefix, P2P_FRAME_BYTES_MAX);
    assert_int_equal(p2p__frame_length(prefix, &len), 0);
    assert_int_equal(len, P2P_FRAME_BYTES_MAX);
    put_be32(prefix, P2P_FRAME_BYTES_MAX + 1);
    assert_int_equal(p2p__frame_length(prefix, &len), EHR_ETOOBIG);
    put_be32(prefix, UINT32_MAX);
    assert_int_equal(p2p__frame_length(prefix, &len), EHR_ETOOBIG);
    put_be32(prefix, P2P__TAG_BYTES);
    assert_int_equal(p2p__frame_length(prefix, &len), 0); /* an empty frame: a keep-alive */
    put_be32(prefix, P2P__TAG_BYTES - 1);
    assert_int_equal(p2p__frame_length(prefix, &len), EHR_EPROTO);
}

static void test_frame_over_limit_refused_before_allocation(void **state)
{
    p2p__cipher tx, rx;
    cipher_pair(&tx, &rx);
    p2p__reader r;
    assert_int_equal(p2p__reader_init(&r, P2P__READ_HANDSHAKE_BYTES), 0);
    ehr_alloc_stats_reset();
    uint8_t *space = NULL;
    size_t space_len = 0;
    assert_int_equal(p2p__reader_space(&r, P2P__READ_BYTES, &space, &space_len), 0);
    put_be32(space, P2P_FRAME_BYTES_MAX + 1);
    memset(space + 4, 0xab, 100);
    p2p__reader_commit(&r, 104);
    uint8_t *body = NULL;
    size_t body_len = 0;
    assert_int_equal(p2p__reader_frame(&r, &rx, &body, &body_len), EHR_ETOOBIG);
    /* Nothing near the claimed size was ever allocated. */
    assert_true(ehr_alloc_largest_bytes() <= P2P__READ_BYTES);
    p2p__reader_free(&r);
}

static void test_frame_at_limit_accepted_one_over_refused(void **state)
{
    p2p__cipher tx, rx;
    cipher_pair(&tx, &rx);
    size_t plain_max = P2P__FRAME_PLAIN_BYTES_MAX;
    uint8_t *frame = calloc(1, P2P__LENGTH_BYTES + plain_max + 1 + P2P__TAG_BYTES);
    assert_non_null(frame);
    /* Body: one maximal message, then an unknown field filling the rest. */
    uint8_t *body = frame + P2P__LENGTH_BYTES;
    size_t pos = p2p__record_header_write(body, P2P_MESSAGE_BYTES_MAX);
    memset(body + pos, 0x5a, P2P_MESSAGE_BYTES_MAX);
    pos += P2P_MESSAGE_BYTES_MAX;
    size_t rest = plain_max - pos;
    assert_true(rest >= 3 && rest < 128 + 2);
    body[pos++] = (uint8_t)(15 << 3 | P2P__PB_BYTES);
    body[pos++] = (uint8_t)(rest - 2);
    pos += rest - 2;
    assert_int_equal(pos, plain_max);
    p2p__cipher tx_over = tx;
    assert_int_equal(p2p__frame_seal(&tx_over, frame, plain_max + 1), EHR_ETOOBIG);
    assert_int_equal(p2p__frame_seal(&tx, frame, plain_max), 0);
    size_t wire_len = P2P__LENGTH_BYTES + P2P_FRAME_BYTES_MAX;
    uint8_t *msgs[2];
    size_t lens[2], count = 0;
    assert_int_equal(read_all(&rx, frame, wire_len, 1 << 16, msgs, lens, &count, 2), 1);
    assert_int_equal(count, 1);
    assert_int_equal(lens[0], P2P_MESSAGE_BYTES_MAX);
    assert_int_equal(msgs[0][P2P_MESSAGE_BYTES_MAX - 1], 0x5a);
    free(msgs[0]);
    free(frame);
}

static void test_body_parser_skips_unknown_fields_and_refuses_malformed(void **state)
{
    size_t pos = 0;
    const uint8_t *m = NULL;
    size_t mlen = 0;
    /* Unknown varint, fixed64, fixed32 and bytes fields around two messages. */
    const uint8_t good[] = {0x10, 0x96, 0x01,                     /* field 2 varint */
                            0x0a, 0x02, 'h',  'i',                /* message "hi" */
                            0x19, 1,    2,    3,   4, 5, 6, 7, 8, /* field 3 fixed64 */
                            0x25, 1,    2,    3,   4,             /* field 4 fixed32 */
                            0x2a, 0x01, 'x',                      /* field 5 bytes */
                            0x0a, 0x00};                          /* empty message */
    assert_int_equal(p2p__body_next(good, sizeof good, &pos, &m, &mlen), 1);
    assert_int_equal(mlen, 2);
    assert_memory_equal(m, "hi", 2);
    assert_int_equal(p2p__body_next(good, sizeof good, &pos, &m, &mlen), 1);
    assert_int_equal(mlen, 0);
    assert_int_equal(p2p__body_next(good, sizeof good, &pos, &m, &mlen), 0);

    struct {
        uint8_t bytes[12];
        size_t len;
        int expect;
    } bad[] = {
        {{0x08, 0x01}, 2, EHR_EPROTO},      /* field 1 as a varint */
        {{0x0a, 0x05, 'a'}, 3, EHR_EPROTO}, /* message past the end */
        {{0x0a}, 1, EHR_EPROTO},            /* length missing */
        {{0x0b}, 1, EHR_EPROTO},            /* a group */
        {{0x0e}, 1, EHR_EPROTO},            /* wire type 6 */
        {{0x02, 0x00}, 2, EHR_EPROTO},      /* field number 0 */
        {{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
         12,
         EHR_EPROTO},                                    /* varint over 10 bytes */
        {{0x19, 1, 2, 3}, 4, EHR_EPROTO},                /* fixed64 truncated */
        {{0xff, 0xff, 0xff, 0xff, 0x7f}, 5, EHR_EPROTO}, /* tag over 32 bits */
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad); i++) {
        pos = 0;
        int rc;
        do
            rc = p2p__body_next(bad[i].bytes, bad[i].len, &pos, &m, &mlen);
        while (rc == 1);
        assert_int_equal(rc, bad[i].expect);
    }
    /* A message one byte over the limit (possible inside a maximal frame). */
    size_t over_len = 4 + P2P_MESSAGE_BYTES_MAX + 1;
    uint8_t *over = calloc(1, over_len);
    assert_non_null(over);
    assert_int_equal(p2p__record_header_write(over, P2P_MESSAGE_BYTES_MAX), 4);
    pos = 0;
    assert_int_equal(p2p__body_next(over, over_len - 1, &pos, &m, &mlen), 1);
    assert_int_equal(mlen, P2P_MESSAGE_BYTES_MAX);
    over[1] = 0x81; /* the varint now says 1 MiB + 1 */
    pos = 0;
    assert_int_equal(p2p__body_next(over, over_len, &pos, &m, &mlen), EHR_ETOOBIG);
    free(over);
}

static void test_frame_body_matches_the_proto_schema(void **state)
{
    /* protobuf-c's PeerFrame read by our parser... */
    ProtobufCBinaryData items[3] = {
        {.len = 5, .data = (uint8_t *)"alpha"},
        {.len = 0, .data = NULL},
        {.len = 300, .data = NULL},
    };
    uint8_t long_item[300];
    memset(long_item, 0x33, sizeof long_item);
    items[2].data = long_item;
    Ehr__V1__PeerFrame frame = EHR__V1__PEER_FRAME__INIT;
    frame.n_messages = 3;
    frame.messages = items;
    uint8_t packed[512];
    size_t packed_len = ehr__v1__peer_frame__pack(&frame, packed);
    size_t pos = 0, i = 0, mlen = 0;
    const uint8_t *m = NULL;
    int rc;
    while ((rc = p2p__body_next(packed, packed_len, &pos, &m, &mlen)) == 1) {
        assert_true(i < 3);
        assert_int_equal(mlen, items[i].len);
        if (mlen > 0)
            assert_memory_equal(m, items[i].data, mlen);
        i++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(i, 3);

    /* ... and our encoding read by protobuf-c. */
    uint8_t ours[512];
    size_t len = 0;
    for (i = 0; i < 3; i++) {
        len += p2p__record_header_write(ours + len, items[i].len);
        if (items[i].len > 0)
            memcpy(ours + len, items[i].data, items[i].len);
        len += items[i].len;
    }
    assert_int_equal(len, packed_len);
    assert_memory_equal(ours, packed, len);
    Ehr__V1__PeerFrame *back = ehr__v1__peer_frame__unpack(NULL, len, ours);
    assert_non_null(back);
    assert_int_equal(back->n_messages, 3);
    assert_int_equal(back->messages[2].len, 300);
    ehr__v1__peer_frame__free_unpacked(back, NULL);
}

static void test_outbuf_message_size_limit_edge(void **state)
{
    p2p__cipher tx, rx;
    cipher_pair(&tx, &rx);
    p2p__outbuf ob;
    memset(&ob, 0, sizeof ob);
    static uint8_t msg[P2P_MESSAGE_BYTES_MAX + 1];
    assert_int_equal(p2p__outbuf_append(&ob, &tx, msg, P2P_MESSAGE_BYTES_MAX + 1, 64 << 20),
                     EHR_ETOOBIG);
    assert_int_equal(ob.message_count, 0);
    assert_int_equal(p2p__outbuf_append(&ob, &tx, msg, P2P_MESSAGE_BYTES_MAX, 64 << 20), 0);
    p2p__outbuf_free(&ob);
    /* A buffer that may not grow enough: refused, left intact. */
    assert_int_equal(p2p__outbuf_append(&ob, &tx, msg, 10, 100), 0);
    size_t used = ob.len;
    assert_int_equal(p2p__outbuf_append(&ob, &tx, msg, 1000, 100), EHR_EFULL);
    assert_int_equal(ob.len, used);
    assert_int_equal(ob.message_count, 1);
    p2p__outbuf_free(&ob);
}

static void test_buffers_report_allocation_failure(void **state)
{
    p2p__reader r;
    ehr_alloc_fail_after(0);
    assert_int_equal(p2p__reader_init(&r, 1024), EHR_EFULL);
    ehr_alloc_fail_after(-1);
    assert_int_equal(p2p__reader_init(&r, 1024), 0);
    uint8_t *space = NULL;
    size_t space_len = 0;
    ehr_alloc_fail_after(0);
    assert_int_equal(p2p__reader_space(&r, P2P__READ_BYTES, &space, &space_len), EHR_EFULL);
    ehr_alloc_fail_after(-1);
    p2p__reader_free(&r);

    p2p__cipher tx, rx;
    cipher_pair(&tx, &rx);
    p2p__outbuf ob;
    memset(&ob, 0, sizeof ob);
    ehr_alloc_fail_after(0);
    assert_int_equal(p2p__outbuf_append(&ob, &tx, (const uint8_t *)"x", 1, 1 << 20), EHR_EFULL);
    ehr_alloc_fail_after(-1);
    assert_int_equal(ob.message_count, 0);
    assert_int_equal(tx.counter, 0);
    p2p__outbuf_free(&ob);
}

static void test_keepalive_is_an_empty_frame(void **state)
{
    p2p__cipher tx, rx;
    cipher_pair(&tx, &rx);
    p2p__outbuf ob;
    memset(&ob, 0, sizeof ob);
    assert_int_equal(p2p__outbuf_keepalive(&ob, &tx, 1 << 20), 0);
    assert_int_equal(ob.len, P2P__LENGTH_BYTES + P2P__TAG_BYTES);
    uint8_t *msgs[1];
    size_t lens[1], count = 0;
    assert_int_equal(read_all(&rx, ob.data, ob.len, ob.len, msgs, lens, &count, 1), 1);
    assert_int_equal(count, 0);
    p2p__outbuf_free(&ob);
}

int main(void)
{
    if (ehr_crypto_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_completes_with_matching_session_keys),
        cmocka_unit_test(test_handshake_completes_when_bytes_arrive_one_at_a_time),
        cmocka_unit_test(test_handshake_messages_match_the_proto_schema),
        cmocka_unit_test(test_handshake_refuses_key_outside_member_set),
        cmocka_unit_test(test_handshake_refuses_wrong_chain_id),
        cmocka_unit_test(test_handshake_refuses_other_protocol_version),
        cmocka_unit_test(test_handshake_refuses_bad_transcript_signature),
        cmocka_unit_test(test_handshake_refuses_replayed_initiator),
        cmocka_unit_test(test_handshake_refuses_replayed_responder),
        cmocka_unit_test(test_handshake_refuses_reflected_hello),
        cmocka_unit_test(test_handshake_refuses_responder_other_than_dialled),
        cmocka_unit_test(test_handshake_message_size_limit_edge),
        cmocka_unit_test(test_handshake_refuses_malformed_hellos),
        cmocka_unit_test(test_handshake_start_rejects_bad_parameters),
        cmocka_unit_test(test_frames_round_trip_in_order_and_batch_small_messages),
        cmocka_unit_test(test_frame_with_any_flipped_bit_is_refused),
        cmocka_unit_test(test_frames_replayed_reordered_or_dropped_are_refused),
        cmocka_unit_test(test_frame_length_limit_edges),
        cmocka_unit_test(test_frame_over_limit_refused_before_allocation),
        cmocka_unit_test(test_frame_at_limit_accepted_one_over_refused),
        cmocka_unit_test(test_body_parser_skips_unknown_fields_and_refuses_malformed),
        cmocka_unit_test(test_frame_body_matches_the_proto_schema),
        cmocka_unit_test(test_outbuf_message_size_limit_edge),
        cmocka_unit_test(test_buffers_report_allocation_failure),
        cmocka_unit_test(test_keepalive_is_an_empty_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
