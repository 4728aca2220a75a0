/*
 * ehr_crypto.h - the cryptography of ehrchain: SHA-256, BIP-340 Schnorr
 * signatures over x-only secp256k1 keys, X25519 key-exchange keys and
 * passphrase-protected key files.
 *
 * Prefix: ehr_crypto_* / ehr_sha256 / ehr_schnorr_* rather than crypto_*, so
 * that a reader never confuses our functions with libsodium's.
 *
 * Not here: transport encryption (p2p/), record encryption and proxy
 * re-encryption (later, also in this module).
 *
 * Secrets live in caller-owned structs; every function that copies a secret
 * onto its own stack wipes it before returning, and callers wipe theirs with
 * ehr_signing_key_wipe / ehr_kx_key_wipe (sodium_memzero underneath).
 */
#ifndef EHR_CRYPTO_H
#define EHR_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

enum {
    EHR_SHA256_BYTES = 32,
    EHR_SCHNORR_SECRET_BYTES = 32,
    EHR_SCHNORR_PUBLIC_BYTES = 32, /* x-only (BIP-340) */
    EHR_SCHNORR_SIG_BYTES = 64,
    EHR_KX_SECRET_BYTES = 32, /* X25519 */
    EHR_KX_PUBLIC_BYTES = 32,
};

/*
 * Initialise libsodium and the process-wide secp256k1 context (randomised
 * against side channels). Idempotent; call once from main before any thread
 * starts. Returns 0, or EHR_EINVAL if a library fails to initialise.
 */
int ehr_crypto_init(void);

/* Fill BUF with LEN bytes from the OS random source. */
void ehr_random_bytes(void *buf, size_t len);

/* SHA-256 of DATA. */
void ehr_sha256(uint8_t out[EHR_SHA256_BYTES], const void *data, size_t len);

/* A BIP-340 signing key pair. The secret must be wiped after use. */
typedef struct ehr_signing_key {
    uint8_t secret[EHR_SCHNORR_SECRET_BYTES];
    uint8_t public_key[EHR_SCHNORR_PUBLIC_BYTES];
    uint8_t keypair_[96]; /* libsecp256k1's parsed keypair (private) */
} ehr_signing_key;

/* A parsed x-only public key: parse once, verify many times. */
typedef struct ehr_public_key {
    uint8_t bytes[EHR_SCHNORR_PUBLIC_BYTES];
    uint8_t parsed_[64]; /* libsecp256k1's parsed key (private) */
} ehr_public_key;

/* Generate a fresh signing key from the OS random source. Returns 0. */
int ehr_signing_key_generate(ehr_signing_key *key);

/*
 * Load a signing key from a 32-byte secret. Returns 0, or EHR_EINVAL if the
 * secret is zero or not below the curve order.
 */
int ehr_signing_key_from_secret(ehr_signing_key *key,
                                const uint8_t secret[EHR_SCHNORR_SECRET_BYTES]);

/* Zero every byte of KEY. */
void ehr_signing_key_wipe(ehr_signing_key *key);

/*
 * Sign the 32-byte message MSG32 (a SHA-256 digest) with fresh auxiliary
 * randomness. Returns 0; EHR_EINVAL only if libsecp256k1 refuses.
 */
int ehr_schnorr_sign(const ehr_signing_key *key, const uint8_t msg32[32],
                     uint8_t sig[EHR_SCHNORR_SIG_BYTES]);

/* As ehr_schnorr_sign with caller-chosen auxiliary randomness (for test vectors). */
int ehr_schnorr_sign_aux(const ehr_signing_key *key, const uint8_t msg32[32],
                         const uint8_t aux32[32], uint8_t sig[EHR_SCHNORR_SIG_BYTES]);

/*
 * Parse a 32-byte x-only public key. Returns 0, or EHR_EINVAL if the bytes
 * are not the x coordinate of a point on the curve.
 */
int ehr_public_key_parse(ehr_public_key *key, const uint8_t bytes[EHR_SCHNORR_PUBLIC_BYTES]);

/*
 * Verify SIG over the 32-byte MSG32 under KEY. Returns 0 if it verifies,
 * EHR_EBADSIG otherwise. Constant work per call: nothing is allocated.
 */
int ehr_schnorr_verify(const ehr_public_key *key, const uint8_t msg32[32],
                       const uint8_t sig[EHR_SCHNORR_SIG_BYTES]);

/*
 * Parse-and-verify in one call, for keys seen once. Returns 0, EHR_EINVAL for
 * an invalid key, EHR_EBADSIG for a signature that does not verify.
 */
int ehr_schnorr_verify_bytes(const uint8_t public_key[EHR_SCHNORR_PUBLIC_BYTES],
                             const uint8_t msg32[32], const uint8_t sig[EHR_SCHNORR_SIG_BYTES]);

/* An X25519 key pair for key exchange. The secret must be wiped after use. */
typedef struct ehr_kx_key {
    uint8_t secret[EHR_KX_SECRET_BYTES];
    uint8_t public_key[EHR_KX_PUBLIC_BYTES];
} ehr_kx_key;

/* Generate a fresh X25519 key pair. Returns 0. */
int ehr_kx_key_generate(ehr_kx_key *key);

/* Derive the public half from KEY->secret. Returns 0. */
int ehr_kx_key_from_secret(ehr_kx_key *key, const uint8_t secret[EHR_KX_SECRET_BYTES]);

/* Zero every byte of KEY. */
void ehr_kx_key_wipe(ehr_kx_key *key);

#endif /* EHR_CRYPTO_H */
