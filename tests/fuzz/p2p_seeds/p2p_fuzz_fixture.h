/*
 * p2p_fuzz_fixture.h - fixed keys shared by the p2p fuzz targets and the
 * program that writes their seed corpora, so that a recorded handshake
 * replays into a completed one inside the fuzzer (the responder's ephemeral
 * key is fixed through the handshake's test hook) and seeded frames decrypt.
 * Test material only: these secrets protect nothing.
 */
#ifndef EHR_P2P_FUZZ_FIXTURE_H
#define EHR_P2P_FUZZ_FIXTURE_H

#include <string.h>

#include "p2p_internal.h"

static const char P2P_FUZZ_CHAIN[] = "fuzz-chain";

/* Key material for one side: node key secret and ephemeral secret fill bytes. */
enum {
    P2P_FUZZ_RESPONDER_NODE = 0x11,
    P2P_FUZZ_RESPONDER_EPHEMERAL = 0x33,
    P2P_FUZZ_INITIATOR_NODE = 0x22,
    P2P_FUZZ_INITIATOR_EPHEMERAL = 0x44,
    P2P_FUZZ_FRAME_KEY = 0x55,
};

static inline void p2p_fuzz_node_key(ehr_signing_key *key, unsigned char fill)
{
    uint8_t secret[EHR_SCHNORR_SECRET_BYTES];
    memset(secret, fill, sizeof secret);
    EHR_ASSERT(ehr_signing_key_from_secret(key, secret) == 0);
}

static inline void p2p_fuzz_ephemeral(ehr_kx_key *key, unsigned char fill)
{
    uint8_t secret[EHR_KX_SECRET_BYTES];
    memset(secret, fill, sizeof secret);
    ehr_kx_key_from_secret(key, secret);
}

static inline void p2p_fuzz_frame_cipher(p2p__cipher *cipher)
{
    memset(cipher, 0, sizeof *cipher);
    memset(cipher->key, P2P_FUZZ_FRAME_KEY, sizeof cipher->key);
}

#endif /* EHR_P2P_FUZZ_FIXTURE_H */
