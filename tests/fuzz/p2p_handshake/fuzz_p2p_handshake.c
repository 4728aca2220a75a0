/*
 * libFuzzer target: the peer handshake, then the frames that follow it.
 *
 * The first input byte picks our role (bit 0: initiator, else responder); the
 * rest is what the peer sends, cut into chunks whose sizes come from the
 * second byte. Our node key and ephemeral key are the fixture's, so a seed
 * recorded from a real peer completes the handshake and the fuzzer goes on
 * into the frame decoder under the session keys. Checks: no crash, no
 * sanitizer report, no broken assertion; a completed handshake names the
 * fixture's peer key and never our own.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p2p_fuzz_fixture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ehr_signing_key responder_key, initiator_key;
static ehr_kx_key responder_ephemeral, initiator_ephemeral;
static bool ready;

static int member_check(void *ctx, const uint8_t key[P2P_KEY_BYTES])
{
    const ehr_signing_key *peer = ctx;
    return memcmp(key, peer->public_key, P2P_KEY_BYTES) == 0 ? 0 : EHR_EDENIED;
}

static void drain_frames(p2p__cipher *rx, const uint8_t *data, size_t size)
{
    p2p__reader r;
    if (p2p__reader_init(&r, P2P__READ_HANDSHAKE_BYTES) != 0)
        return;
    size_t pos = 0;
    while (pos < size) {
        uint8_t *space = NULL;
        size_t space_len = 0;
        if (p2p__reader_space(&r, P2P__READ_BYTES, &space, &space_len) != 0)
            break;
        size_t n = size - pos < space_len ? size - pos : space_len;
        memcpy(space, data + pos, n);
        p2p__reader_commit(&r, n);
        pos += n;
        int rc;
        uint8_t *body = NULL;
        size_t body_len = 0;
        while ((rc = p2p__reader_frame(&r, rx, &body, &body_len)) == 1) {
            size_t bpos = 0, mlen = 0;
            const uint8_t *m = NULL;
            while ((rc = p2p__body_next(body, body_len, &bpos, &m, &mlen)) == 1)
                EHR_ASSERT(m >= body && m + mlen <= body + body_len);
            if (rc < 0)
                break;
        }
        if (rc < 0)
            break;
    }
    p2p__reader_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) {
        EHR_ASSERT(ehr_crypto_init() == 0);
        p2p_fuzz_node_key(&responder_key, P2P_FUZZ_RESPONDER_NODE);
        p2p_fuzz_node_key(&initiator_key, P2P_FUZZ_INITIATOR_NODE);
        p2p_fuzz_ephemeral(&responder_ephemeral, P2P_FUZZ_RESPONDER_EPHEMERAL);
        p2p_fuzz_ephemeral(&initiator_ephemeral, P2P_FUZZ_INITIATOR_EPHEMERAL);
        ready = true;
    }
    if (size < 2)
        return 0;
    bool initiator = data[0] & 1;
    size_t chunk = (size_t)data[1] + 1;
    data += 2;
    size -= 2;
    const ehr_signing_key *own = initiator ? &initiator_key : &responder_key;
    const ehr_signing_key *peer = initiator ? &responder_key : &initiator_key;
    p2p__hs_params params = {
        .initiator = initiator,
        .node_key = own,
        .chain_id = P2P_FUZZ_CHAIN,
        .expected_peer = initiator ? peer->public_key : NULL,
        .member_check = member_check,
        .member_ctx = (void *)peer,
        .ephemeral_for_test = initiator ? &initiator_ephemeral : &responder_ephemeral,
    };
    p2p__handshake hs;
    EHR_ASSERT(p2p__hs_start(&hs, &params) == 0);
    hs.out_len = 0;
    /* Feed the input in chunks, as a socket would deliver it. */
    uint8_t pending[2 * P2P__HS_OUT_BYTES_MAX];
    size_t pending_len = 0, pos = 0;
    while (pos < size && hs.state != P2P__HS_DONE && hs.state != P2P__HS_FAILED) {
        size_t n = size - pos < chunk ? size - pos : chunk;
        if (n > sizeof pending - pending_len)
            n = sizeof pending - pending_len;
        memcpy(pending + pending_len, data + pos, n);
        pending_len += n;
        pos += n;
        for (;;) {
            size_t consumed = 0;
            int rc = p2p__hs_feed(&hs, pending, pending_len, &consumed);
            EHR_ASSERT(consumed <= pending_len);
            memmove(pending, pending + consumed, pending_len - consumed);
            pending_len -= consumed;
            hs.out_len = 0;
            if (rc != 0) {
                EHR_ASSERT(hs.state == P2P__HS_FAILED && hs.reason != NULL);
                break;
            }
            if (consumed == 0 || hs.state == P2P__HS_DONE)
                break;
        }
        if (pending_len == sizeof pending)
            break; /* a peer that never completes a message within the bound */
    }
    if (hs.state == P2P__HS_DONE) {
        EHR_ASSERT(memcmp(hs.peer_key, peer->public_key, P2P_KEY_BYTES) == 0);
        /* Leftover bytes of the last chunk and the rest of the input: frames. */
        uint8_t *rest = malloc(pending_len + (size - pos) + 1);
        EHR_ASSERT(rest != NULL);
        memcpy(rest, pending, pending_len);
        memcpy(rest + pending_len, data + pos, size - pos);
        p2p__cipher rx = hs.rx;
        drain_frames(&rx, rest, pending_len + (size - pos));
        free(rest);
    }
    p2p__hs_wipe(&hs);
    return 0;
}
