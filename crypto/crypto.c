/*
 * crypto.c - SHA-256, BIP-340 signatures and X25519 keys.
 *
 * libsecp256k1 caveats: one context for the process, created and randomised
 * in ehr_crypto_init() and read-only afterwards (safe to share between
 * threads then). BIP-340 signing needs 32 bytes of auxiliary randomness per
 * signature; we draw it from the OS (libsodium's randombytes).
 */
#include "ehr_crypto.h"

#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
#include <sodium.h>
#include <string.h>

_Static_assert(sizeof(secp256k1_keypair) == sizeof(((ehr_signing_key *)0)->keypair_),
               "signing key holds a libsecp256k1 keypair");
_Static_assert(sizeof(secp256k1_xonly_pubkey) == sizeof(((ehr_public_key *)0)->parsed_),
               "public key holds a libsecp256k1 x-only key");
_Static_assert(crypto_hash_sha256_BYTES == EHR_SHA256_BYTES, "SHA-256 size");
_Static_assert(crypto_kx_PUBLICKEYBYTES == EHR_KX_PUBLIC_BYTES, "X25519 public size");
_Static_assert(crypto_kx_SECRETKEYBYTES == EHR_KX_SECRET_BYTES, "X25519 secret size");

static secp256k1_context *secp_ctx;

int ehr_crypto_init(void)
{
    if (secp_ctx != NULL)
        return 0;
    if (sodium_init() < 0)
        return EHR_EINVAL;
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (ctx == NULL)
        return EHR_EINVAL;
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    int ok = secp256k1_context_randomize(ctx, seed);
    sodium_memzero(seed, sizeof seed);
    if (!ok) {
        secp256k1_context_destroy(ctx);
        return EHR_EINVAL;
    }
    secp_ctx = ctx;
    return 0;
}

static const secp256k1_context *ctx_get(void)
{
    EHR_ASSERT(secp_ctx != NULL); /* ehr_crypto_init() was called */
    return secp_ctx;
}

void ehr_random_bytes(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

void ehr_sha256(uint8_t out[EHR_SHA256_BYTES], const void *data, size_t len)
{
    crypto_hash_sha256(out, data, len);
}

int ehr_signing_key_from_secret(ehr_signing_key *key,
                                const uint8_t secret[EHR_SCHNORR_SECRET_BYTES])
{
    secp256k1_keypair *pair = (secp256k1_keypair *)(void *)key->keypair_;
    if (!secp256k1_keypair_create(ctx_get(), pair, secret)) {
        ehr_signing_key_wipe(key);
        return EHR_EINVAL;
    }
    secp256k1_xonly_pubkey xonly;
    int ok = secp256k1_keypair_xonly_pub(ctx_get(), &xonly, NULL, pair);
    EHR_ASSERT(ok == 1);
    ok = secp256k1_xonly_pubkey_serialize(ctx_get(), key->public_key, &xonly);
    EHR_ASSERT(ok == 1);
    memmove(key->secret, secret, EHR_SCHNORR_SECRET_BYTES);
    return 0;
}

int ehr_signing_key_generate(ehr_signing_key *key)
{
    uint8_t secret[EHR_SCHNORR_SECRET_BYTES];
    int rc;
    /* A uniformly random 256-bit value is a valid secret except with
     * probability ~2^-128; draw again in that case. */
    do {
        randombytes_buf(secret, sizeof secret);
        rc = ehr_signing_key_from_secret(key, secret);
    } while (rc != 0);
    sodium_memzero(secret, sizeof secret);
    return 0;
}

void ehr_signing_key_wipe(ehr_signing_key *key)
{
    sodium_memzero(key, sizeof *key);
}

int ehr_schnorr_sign_aux(const ehr_signing_key *key, const uint8_t msg32[32],
                         const uint8_t aux32[32], uint8_t sig[EHR_SCHNORR_SIG_BYTES])
{
    const secp256k1_keypair *pair = (const secp256k1_keypair *)(const void *)key->keypair_;
    if (!secp256k1_schnorrsig_sign32(ctx_get(), sig, msg32, pair, aux32))
        return EHR_EINVAL;
    return 0;
}

int ehr_schnorr_sign(const ehr_signing_key *key, const uint8_t msg32[32],
                     uint8_t sig[EHR_SCHNORR_SIG_BYTES])
{
    uint8_t aux[32];
    randombytes_buf(aux, sizeof aux);
    int rc = ehr_schnorr_sign_aux(key, msg32, aux, sig);
    sodium_memzero(aux, sizeof aux);
    return rc;
}

int ehr_public_key_parse(ehr_public_key *key, const uint8_t bytes[EHR_SCHNORR_PUBLIC_BYTES])
{
    secp256k1_xonly_pubkey *parsed = (secp256k1_xonly_pubkey *)(void *)key->parsed_;
    if (!secp256k1_xonly_pubkey_parse(ctx_get(), parsed, bytes))
        return EHR_EINVAL;
    memmove(key->bytes, bytes, EHR_SCHNORR_PUBLIC_BYTES);
    return 0;
}

int ehr_schnorr_verify(const ehr_public_key *key, const uint8_t msg32[32],
                       const uint8_t sig[EHR_SCHNORR_SIG_BYTES])
{
    const secp256k1_xonly_pubkey *parsed =
        (const secp256k1_xonly_pubkey *)(const void *)key->parsed_;
    if (!secp256k1_schnorrsig_verify(ctx_get(), sig, msg32, 32, parsed))
        return EHR_EBADSIG;
    return 0;
}

int ehr_schnorr_verify_bytes(const uint8_t public_key[EHR_SCHNORR_PUBLIC_BYTES],
                             const uint8_t msg32[32], const uint8_t sig[EHR_SCHNORR_SIG_BYTES])
{
    ehr_public_key key;
    int rc = ehr_public_key_parse(&key, public_key);
    if (rc != 0)
        return rc;
    return ehr_schnorr_verify(&key, msg32, sig);
}

int ehr_kx_key_generate(ehr_kx_key *key)
{
    crypto_kx_keypair(key->public_key, key->secret);
    return 0;
}

int ehr_kx_key_from_secret(ehr_kx_key *key, const uint8_t secret[EHR_KX_SECRET_BYTES])
{
    memmove(key->secret, secret, EHR_KX_SECRET_BYTES);
    crypto_scalarmult_base(key->public_key, key->secret);
    return 0;
}

void ehr_kx_key_wipe(ehr_kx_key *key)
{
    sodium_memzero(key, sizeof *key);
}

int ehr_kx_public_key_check(const uint8_t public_key[EHR_KX_PUBLIC_BYTES])
{
    /*
     * The encodings of the u-coordinates of the points of small order
     * (dividing 8) on Curve25519 and its twist, as libsodium's X25519 lists
     * them: 0, 1, the two points of order 8, p - 1, and p and p + 1 (0 and 1
     * unreduced). X25519 ignores the top bit. A key is refused exactly when
     * crypto_scalarmult with any clamped scalar refuses it (the result is
     * all zero): a clamped scalar is 8 times a number below both large prime
     * orders, so it sends a point to zero only if the point's order divides
     * 8. Comparing costs ~100 ns where that scalar multiplication costs
     * ~40 µs, and every access request and enrolment checks a key
     * (test_crypto compares the two over the edges and random keys).
     */
    static const uint8_t small_order[][EHR_KX_PUBLIC_BYTES] = {
        {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
         0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
         0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
        {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
         0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
         0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
        {0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
         0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
         0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
        {0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1,
         0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c,
         0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
        {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
        {0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
        {0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    };
    enum { LAST = EHR_KX_PUBLIC_BYTES - 1 };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(small_order); i++)
        if (memcmp(public_key, small_order[i], LAST) == 0 &&
            (public_key[LAST] & 0x7f) == small_order[i][LAST])
            return EHR_EINVAL;
    return 0;
}
