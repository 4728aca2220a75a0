/*
 * libFuzzer target: the frame decoder and the PeerFrame body parser.
 *
 * First input byte, bit 0 clear: the rest is a byte stream from a peer with
 * the fixture's session key, fed to the receive buffer in chunks whose sizes
 * come from the second byte (length prefixes, limits, authentication,
 * buffer growth and compaction). Bit 0 set: the rest is a frame body, sealed
 * and then decoded, and compared with protobuf-c: whenever our parser accepts
 * a body, protobuf-c must accept it too and see the same messages.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ehr/v1/p2p.pb-c.h"
#include "p2p_fuzz_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MESSAGES_MAX = 4096 };

static bool ready;

static void stream_mode(const uint8_t *data, size_t size, size_t chunk)
{
    p2p__cipher rx;
    p2p_fuzz_frame_cipher(&rx);
    p2p__reader r;
    if (p2p__reader_init(&r, P2P__READ_HANDSHAKE_BYTES) != 0)
        return;
    size_t pos = 0;
    int rc = 0;
    while (pos < size && rc >= 0) {
        uint8_t *space = NULL;
        size_t space_len = 0;
        rc = p2p__reader_space(&r, P2P__READ_BYTES, &space, &space_len);
        if (rc != 0)
            break;
        EHR_ASSERT(space_len > 0);
        size_t n = size - pos < chunk ? size - pos : chunk;
        if (n > space_len)
            n = space_len;
        memcpy(space, data + pos, n);
        p2p__reader_commit(&r, n);
        pos += n;
        uint8_t *body = NULL;
        size_t body_len = 0;
        while ((rc = p2p__reader_frame(&r, &rx, &body, &body_len)) == 1) {
            EHR_ASSERT(body_len <= P2P__FRAME_PLAIN_BYTES_MAX);
            size_t bpos = 0, mlen = 0;
            const uint8_t *m = NULL;
            while ((rc = p2p__body_next(body, body_len, &bpos, &m, &mlen)) == 1)
                EHR_ASSERT(mlen <= P2P_MESSAGE_BYTES_MAX && m + mlen <= body + body_len);
            if (rc < 0)
                break;
        }
    }
    EHR_ASSERT(r.capacity <= P2P__READ_BYTES_MAX);
    p2p__reader_free(&r);
}

static void body_mode(const uint8_t *data, size_t size)
{
    if (size > P2P__FRAME_PLAIN_BYTES_MAX)
        return;
    p2p__cipher tx, rx;
    p2p_fuzz_frame_cipher(&tx);
    rx = tx;
    /* Seal the body as a sender would, then open it again. */
    size_t wire_len = P2P__LENGTH_BYTES + size + P2P__TAG_BYTES;
    uint8_t *frame = malloc(wire_len);
    EHR_ASSERT(frame != NULL);
    memcpy(frame + P2P__LENGTH_BYTES, data, size);
    EHR_ASSERT(p2p__frame_seal(&tx, frame, size) == 0);
    size_t cipher_len = 0, plain_len = 0;
    EHR_ASSERT(p2p__frame_length(frame, &cipher_len) == 0 && cipher_len == wire_len - 4);
    EHR_ASSERT(p2p__frame_open(&rx, frame, cipher_len, &plain_len) == 0 && plain_len == size);
    EHR_ASSERT(memcmp(frame + P2P__LENGTH_BYTES, data, size) == 0);

    static const uint8_t *msgs[MESSAGES_MAX];
    static size_t lens[MESSAGES_MAX];
    size_t count = 0, pos = 0, mlen = 0;
    const uint8_t *m = NULL;
    int rc;
    while ((rc = p2p__body_next(data, size, &pos, &m, &mlen)) == 1 && count < MESSAGES_MAX) {
        msgs[count] = m;
        lens[count] = mlen;
        count++;
    }
    if (rc == 0) {
        /* We accepted the whole body: protobuf-c must agree on every message. */
        Ehr__V1__PeerFrame *pf = ehr__v1__peer_frame__unpack(NULL, size, data);
        EHR_ASSERT(pf != NULL);
        EHR_ASSERT(pf->n_messages == count);
        for (size_t i = 0; i < count; i++) {
            EHR_ASSERT(pf->messages[i].len == lens[i]);
            EHR_ASSERT(lens[i] == 0 || memcmp(pf->messages[i].data, msgs[i], lens[i]) == 0);
        }
        ehr__v1__peer_frame__free_unpacked(pf, NULL);
    }
    free(frame);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) {
        EHR_ASSERT(ehr_crypto_init() == 0);
        ready = true;
    }
    if (size < 2)
        return 0;
    if (data[0] & 1)
        body_mode(data + 1, size - 1);
    else
        stream_mode(data + 2, size - 2, (size_t)data[1] * 64 + 1);
    return 0;
}
