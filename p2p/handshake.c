/*
 * handshake.c - the peer handshake as a pure state machine: bytes in, the
 * next message and a verdict out. No sockets and no clock (the handshake
 * timeout lives in p2p.c).
 *
 * Design notes (the numbered states are also in p2p/README.md):
 *
 *   1 NEW         --p2p__hs_start-->                        2 AWAIT_HELLO
 *   2 AWAIT_HELLO --p2p__hs_feed(peer's PeerHello ok)-->     3 AWAIT_AUTH
 *   3 AWAIT_AUTH  --p2p__hs_feed(peer's PeerAuth ok)-->      4 DONE
 *   2, 3          --p2p__hs_feed(anything refused)-->        5 FAILED
 *
 * Both sides send PeerHello at once, then PeerAuth as soon as they hold the
 * other's PeerHello, so the handshake takes one round trip.
 *
 * Invariants:
 *   I1 Our ephemeral X25519 key is fresh for every handshake (unless a test
 *      supplies one), and both signatures cover both PeerHello messages as
 *      sent, hence both ephemeral keys: a recorded PeerAuth never verifies
 *      against a new handshake, so replaying a recorded side yields nothing.
 *   I2 A PeerAuth is produced only after the peer's PeerHello passed every
 *      check (version, chain id, key valid, not our own, a member).
 *   I3 DONE is reached only after the peer's signature verified under the
 *      node key it presented, with the role opposite to ours.
 *   I4 Session keys: crypto_kx over the ephemeral keys (one key per
 *      direction), each then keyed-hashed with the transcript, so they are
 *      bound to both node identities and the chain too.
 *   I5 FAILED is final; every secret is wiped by p2p__hs_wipe.
 */
#include <string.h>

#include <sodium.h>

#include "p2p_internal.h"

_Static_assert(crypto_kx_SESSIONKEYBYTES == P2P__SESSION_KEY_BYTES, "session key size");

enum {
    HELLO_VERSION_FIELD = 1,
    HELLO_CHAIN_ID_FIELD = 2,
    HELLO_NODE_KEY_FIELD = 3,
    HELLO_EPHEMERAL_FIELD = 4,
    AUTH_SIGNATURE_FIELD = 1,
    ROLE_INITIATOR = 0x01,
    ROLE_RESPONDER = 0x02,
};

static const char TRANSCRIPT_DOMAIN[] = "ehrchain/p2p/v1/transcript";
static const char AUTH_DOMAIN[] = "ehrchain/p2p/v1/auth";

static int fail(p2p__handshake *hs, int error, const char *reason)
{
    hs->state = P2P__HS_FAILED;
    hs->error = error;
    hs->reason = reason;
    p2p__cipher_wipe(&hs->tx);
    p2p__cipher_wipe(&hs->rx);
    ehr_kx_key_wipe(&hs->ephemeral);
    return error;
}

static void put_length(uint8_t out[P2P__LENGTH_BYTES], size_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

/* Append a length-delimited field to BUF at *POS. */
static void put_bytes_field(uint8_t *buf, size_t *pos, uint32_t number, const void *data,
                            size_t len)
{
    *pos = (size_t)(ehr_pb_len_header_write(buf + *pos, number, len) - buf);
    memcpy(buf + *pos, data, len);
    *pos += len;
}

/* Put our PeerHello into hs->out and hash it. */
static void hello_write(p2p__handshake *hs)
{
    uint8_t *msg = hs->out + P2P__LENGTH_BYTES;
    uint8_t *end = ehr_pb_key_write(msg, HELLO_VERSION_FIELD, EHR_PB_WIRE_VARINT);
    end = ehr_pb_varint_write(end, P2P_PROTOCOL_VERSION);
    size_t pos = (size_t)(end - msg);
    put_bytes_field(msg, &pos, HELLO_CHAIN_ID_FIELD, hs->chain_id, strlen(hs->chain_id));
    put_bytes_field(msg, &pos, HELLO_NODE_KEY_FIELD, hs->node_key->public_key, P2P_KEY_BYTES);
    put_bytes_field(msg, &pos, HELLO_EPHEMERAL_FIELD, hs->ephemeral.public_key,
                    EHR_KX_PUBLIC_BYTES);
    EHR_ASSERT(pos <= P2P_HANDSHAKE_MESSAGE_BYTES_MAX);
    put_length(hs->out, pos);
    hs->out_len = P2P__LENGTH_BYTES + pos;
    ehr_sha256(hs->own_hello_hash, msg, pos);
}

int p2p__hs_start(p2p__handshake *hs, const p2p__hs_params *params)
{
    memset(hs, 0, sizeof *hs);
    if (params->node_key == NULL || params->chain_id == NULL || params->member_check == NULL)
        return EHR_EINVAL;
    size_t chain_len = strlen(params->chain_id);
    if (chain_len == 0 || chain_len > P2P_CHAIN_ID_BYTES_MAX)
        return EHR_EINVAL;
    hs->initiator = params->initiator;
    hs->node_key = params->node_key;
    memcpy(hs->chain_id, params->chain_id, chain_len + 1);
    if (params->expected_peer != NULL) {
        hs->expect_peer = true;
        memcpy(hs->expected_peer, params->expected_peer, P2P_KEY_BYTES);
    }
    hs->member_check = params->member_check;
    hs->member_ctx = params->member_ctx;
    if (params->ephemeral_for_test != NULL)
        hs->ephemeral = *params->ephemeral_for_test;
    else
        ehr_kx_key_generate(&hs->ephemeral);
    hello_write(hs);
    hs->state = P2P__HS_AWAIT_HELLO;
    return 0;
}

/* The fields of a peer's PeerHello, pointing into the received bytes. */
struct hello {
    uint64_t version;
    const uint8_t *chain_id;
    size_t chain_id_len;
    const uint8_t *node_key;
    size_t node_key_len;
    const uint8_t *ephemeral;
    size_t ephemeral_len;
};

/* Parse a PeerHello. A known field twice is refused. Returns 0 or EHR_EPROTO. */
static int hello_parse(const uint8_t *msg, size_t len, struct hello *h)
{
    memset(h, 0, sizeof *h);
    unsigned seen = 0;
    size_t pos = 0;
    p2p__pb_field f;
    int rc;
    while ((rc = p2p__pb_next(msg, len, &pos, &f)) == 1) {
        if (f.number > HELLO_EPHEMERAL_FIELD)
            continue; /* a later version's field */
        if (seen & (1u << f.number))
            return EHR_EPROTO;
        seen |= 1u << f.number;
        uint32_t want = f.number == HELLO_VERSION_FIELD ? P2P__PB_VARINT : P2P__PB_BYTES;
        if (f.wire_type != want)
            return EHR_EPROTO;
        switch (f.number) {
        case HELLO_VERSION_FIELD:
            h->version = f.varint;
            break;
        case HELLO_CHAIN_ID_FIELD:
            h->chain_id = f.bytes;
            h->chain_id_len = f.bytes_len;
            break;
        case HELLO_NODE_KEY_FIELD:
            h->node_key = f.bytes;
            h->node_key_len = f.bytes_len;
            break;
        default:
            h->ephemeral = f.bytes;
            h->ephemeral_len = f.bytes_len;
            break;
        }
    }
    return rc == 0 ? 0 : EHR_EPROTO;
}

/* Parse a PeerAuth into SIG. Returns 0 or EHR_EPROTO. */
static int auth_parse(const uint8_t *msg, size_t len, uint8_t sig[EHR_SCHNORR_SIG_BYTES])
{
    bool seen = false;
    size_t pos = 0;
    p2p__pb_field f;
    int rc;
    while ((rc = p2p__pb_next(msg, len, &pos, &f)) == 1) {
        if (f.number != AUTH_SIGNATURE_FIELD)
            continue;
        if (seen || f.wire_type != P2P__PB_BYTES || f.bytes_len != EHR_SCHNORR_SIG_BYTES)
            return EHR_EPROTO;
        memcpy(sig, f.bytes, EHR_SCHNORR_SIG_BYTES);
        seen = true;
    }
    return rc == 0 && seen ? 0 : EHR_EPROTO;
}

/* The 32-byte digest a side with ROLE signs. */
static void auth_digest(const uint8_t transcript[EHR_SHA256_BYTES], uint8_t role,
                        uint8_t out[EHR_SHA256_BYTES])
{
    uint8_t buf[sizeof AUTH_DOMAIN - 1 + 1 + EHR_SHA256_BYTES];
    memcpy(buf, AUTH_DOMAIN, sizeof AUTH_DOMAIN - 1);
    buf[sizeof AUTH_DOMAIN - 1] = role;
    memcpy(buf + sizeof AUTH_DOMAIN, transcript, EHR_SHA256_BYTES);
    ehr_sha256(out, buf, sizeof buf);
}

/* Derive the two session keys (I4). Returns 0 or EHR_EPROTO for an
 * ephemeral key that gives no shared secret (a low-order point). */
static int derive_keys(p2p__handshake *hs)
{
    uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
    int rc = hs->initiator
                 ? crypto_kx_client_session_keys(rx, tx, hs->ephemeral.public_key,
                                                 hs->ephemeral.secret, hs->peer_ephemeral)
                 : crypto_kx_server_session_keys(rx, tx, hs->ephemeral.public_key,
                                                 hs->ephemeral.secret, hs->peer_ephemeral);
    if (rc == 0) {
        crypto_generichash(hs->rx.key, P2P__SESSION_KEY_BYTES, hs->transcript, EHR_SHA256_BYTES, rx,
                           sizeof rx);
        crypto_generichash(hs->tx.key, P2P__SESSION_KEY_BYTES, hs->transcript, EHR_SHA256_BYTES, tx,
                           sizeof tx);
        hs->rx.counter = 0;
        hs->tx.counter = 0;
    }
    sodium_memzero(rx, sizeof rx);
    sodium_memzero(tx, sizeof tx);
    return rc == 0 ? 0 : EHR_EPROTO;
}

/* Handle the peer's PeerHello MSG[0..LEN): check it, then put our PeerAuth
 * into hs->out (I2). */
static int on_hello(p2p__handshake *hs, const uint8_t *msg, size_t len)
{
    struct hello h;
    if (hello_parse(msg, len, &h) != 0)
        return fail(hs, EHR_EPROTO, "malformed hello");
    if (h.version != P2P_PROTOCOL_VERSION)
        return fail(hs, EHR_EVERSION, "unsupported protocol version");
    size_t chain_len = strlen(hs->chain_id);
    if (h.chain_id_len != chain_len || memcmp(h.chain_id, hs->chain_id, chain_len) != 0)
        return fail(hs, EHR_ECHAIN, "wrong chain id");
    if (h.node_key_len != P2P_KEY_BYTES || h.ephemeral_len != EHR_KX_PUBLIC_BYTES)
        return fail(hs, EHR_EPROTO, "malformed hello");
    if (ehr_public_key_parse(&hs->peer_public, h.node_key) != 0)
        return fail(hs, EHR_EPROTO, "invalid node key");
    if (memcmp(h.node_key, hs->node_key->public_key, P2P_KEY_BYTES) == 0)
        return fail(hs, EHR_EPROTO, "peer presented our own node key");
    if (hs->member_check(hs->member_ctx, h.node_key) != 0)
        return fail(hs, EHR_EDENIED, "key not in member set");
    if (hs->expect_peer && memcmp(h.node_key, hs->expected_peer, P2P_KEY_BYTES) != 0)
        return fail(hs, EHR_EDENIED, "not the member dialled");
    memcpy(hs->peer_key, h.node_key, P2P_KEY_BYTES);
    memcpy(hs->peer_ephemeral, h.ephemeral, EHR_KX_PUBLIC_BYTES);

    uint8_t peer_hello_hash[EHR_SHA256_BYTES];
    ehr_sha256(peer_hello_hash, msg, len);
    uint8_t buf[sizeof TRANSCRIPT_DOMAIN - 1 + 2 * EHR_SHA256_BYTES];
    memcpy(buf, TRANSCRIPT_DOMAIN, sizeof TRANSCRIPT_DOMAIN - 1);
    uint8_t *first = buf + sizeof TRANSCRIPT_DOMAIN - 1;
    memcpy(first, hs->initiator ? hs->own_hello_hash : peer_hello_hash, EHR_SHA256_BYTES);
    memcpy(first + EHR_SHA256_BYTES, hs->initiator ? peer_hello_hash : hs->own_hello_hash,
           EHR_SHA256_BYTES);
    ehr_sha256(hs->transcript, buf, sizeof buf);

    if (derive_keys(hs) != 0)
        return fail(hs, EHR_EPROTO, "invalid ephemeral key");

    uint8_t digest[EHR_SHA256_BYTES], sig[EHR_SCHNORR_SIG_BYTES];
    auth_digest(hs->transcript, hs->initiator ? ROLE_INITIATOR : ROLE_RESPONDER, digest);
    if (ehr_schnorr_sign(hs->node_key, digest, sig) != 0)
        return fail(hs, EHR_EINVAL, "signing failed");
    size_t pos = 0;
    put_bytes_field(hs->out + P2P__LENGTH_BYTES, &pos, AUTH_SIGNATURE_FIELD, sig, sizeof sig);
    put_length(hs->out, pos);
    EHR_ASSERT(hs->out_len == 0);
    hs->out_len = P2P__LENGTH_BYTES + pos;
    hs->state = P2P__HS_AWAIT_AUTH;
    return 0;
}

/* Handle the peer's PeerAuth (I3). */
static int on_auth(p2p__handshake *hs, const uint8_t *msg, size_t len)
{
    uint8_t sig[EHR_SCHNORR_SIG_BYTES];
    if (auth_parse(msg, len, sig) != 0)
        return fail(hs, EHR_EPROTO, "malformed auth");
    uint8_t digest[EHR_SHA256_BYTES];
    auth_digest(hs->transcript, hs->initiator ? ROLE_RESPONDER : ROLE_INITIATOR, digest);
    if (ehr_schnorr_verify(&hs->peer_public, digest, sig) != 0)
        return fail(hs, EHR_EBADSIG, "bad transcript signature");
    ehr_kx_key_wipe(&hs->ephemeral);
    hs->state = P2P__HS_DONE;
    return 0;
}

int p2p__hs_feed(p2p__handshake *hs, const uint8_t *in, size_t in_len, size_t *consumed)
{
    *consumed = 0;
    if (hs->state != P2P__HS_AWAIT_HELLO && hs->state != P2P__HS_AWAIT_AUTH)
        return EHR_EINVAL;
    if (in_len < P2P__LENGTH_BYTES)
        return 0;
    size_t len = (size_t)in[0] << 24 | (size_t)in[1] << 16 | (size_t)in[2] << 8 | in[3];
    if (len > P2P_HANDSHAKE_MESSAGE_BYTES_MAX)
        return fail(hs, EHR_ETOOBIG, "handshake message over the size limit");
    if (in_len - P2P__LENGTH_BYTES < len)
        return 0;
    *consumed = P2P__LENGTH_BYTES + len;
    const uint8_t *msg = in + P2P__LENGTH_BYTES;
    return hs->state == P2P__HS_AWAIT_HELLO ? on_hello(hs, msg, len) : on_auth(hs, msg, len);
}

void p2p__hs_wipe(p2p__handshake *hs)
{
    ehr_kx_key_wipe(&hs->ephemeral);
    p2p__cipher_wipe(&hs->tx);
    p2p__cipher_wipe(&hs->rx);
}
