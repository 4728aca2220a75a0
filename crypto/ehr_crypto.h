/*
 * ehr_crypto.h - the cryptography of ehrchain: SHA-256, BIP-340 Schnorr
 * signatures over x-only secp256k1 keys, X25519 key-exchange keys and
 * passphrase-protected key files.
 *
 * Prefix: ehr_crypto_* / ehr_sha256 / ehr_schnorr_* rather than crypto_*, so
 * that a reader never confuses our functions with libsodium's.
 *
 * Threshold proxy re-encryption has its own header in this module, pre.h.
 * Not here: transport encryption (p2p/), record encryption (later, also in
 * this module).
 *
 * Secrets live in caller-owned structs; every function that copies a secret
 * onto its own stack wipes it before returning, and callers wipe theirs with
 * ehr_signing_key_wipe / ehr_kx_key_wipe (sodium_memzero underneath).
 */
#ifndef EHR_CRYPTO_H
#define EHR_CRYPTO_H

#include <stdbool.h>
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

/*
 * The content hash of record ciphertext, a blob's id: SHA-256 of the whole
 * ciphertext (what `sha256sum` prints), streamed through OpenSSL's
 * libcrypto, which uses the CPU's SHA instructions (content_hash.c says
 * why). init, then update any number of times, then final (which also
 * clears); clear drops an unfinished hash. A failure inside libcrypto
 * (out of memory) aborts: there is no way on from it.
 */
struct ehr_content_hash {
    void *ctx_; /* OpenSSL's EVP_MD_CTX (private) */
};
void ehr_content_hash_init(struct ehr_content_hash *h);
void ehr_content_hash_update(struct ehr_content_hash *h, const void *data, size_t len);
void ehr_content_hash_final(struct ehr_content_hash *h, uint8_t out[EHR_SHA256_BYTES]);
void ehr_content_hash_clear(struct ehr_content_hash *h);

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

/*
 * Check that PUBLIC_KEY is usable for X25519: 0, or EHR_EINVAL for one of the
 * low-order points (all-zero shared secret whatever our secret is).
 */
int ehr_kx_public_key_check(const uint8_t public_key[EHR_KX_PUBLIC_BYTES]);

/*
 * ---- Identities and key files (keyfile.c) ----
 *
 * An identity is what one member node, patient or practitioner holds: a
 * BIP-340 signing key, an X25519 key and a short label for people. A key file
 * stores one identity, its secrets encrypted under a passphrase.
 *
 * Key file format, version 1. A fixed layout of exactly EHR_KEYFILE_BYTES,
 * integers little-endian:
 *
 *   offset size  field
 *        0    6  magic "EHRKEY"
 *        6    1  version (1)
 *        7    1  flags: bit 0 = sealed under the empty passphrase; others 0
 *        8    8  argon2id opslimit   [EHR_KEYFILE_OPSLIMIT_MIN, _MAX]
 *       16    8  argon2id memlimit in bytes [EHR_KEYFILE_MEMLIMIT_BYTES_MIN, _MAX]
 *       24   16  argon2id salt
 *       40   24  XChaCha20-Poly1305 nonce
 *       64   32  signing public key (BIP-340 x-only)
 *       96   32  X25519 public key
 *      128    1  label length (0..EHR_KEYFILE_LABEL_BYTES_MAX)
 *      129   64  label, printable ASCII, zero-padded
 *      193   80  ciphertext: signing secret (32) || X25519 secret (32), then
 *                the 16-byte Poly1305 tag
 *
 * The key is argon2id(passphrase, salt, opslimit, memlimit); the whole clear
 * header (bytes 0..192) is the AEAD associated data, so a change to any
 * header byte makes decryption fail like a wrong passphrase would.
 *
 * Why not protobuf, as elsewhere: this is the one format read from a file an
 * attacker may hand us *before* we know the passphrase, and the first thing
 * done with it is to choose how much memory argon2id gets. A fixed layout is
 * checked completely by comparing one length and a few bounds, with no
 * allocation, no optional or repeated fields and no second encoding of the
 * same header (the associated data is the bytes on disk, nothing
 * re-encoded). The version byte is the way to change it.
 *
 * A wrong passphrase and a tampered ciphertext, salt, nonce or public key are
 * the same event to an AEAD (the tag does not verify), so both give
 * EHR_EPASSPHRASE; the message says so.
 */
enum {
    EHR_KEYFILE_VERSION = 1,
    EHR_KEYFILE_MAGIC_BYTES = 6,
    EHR_KEYFILE_SALT_BYTES = 16,
    EHR_KEYFILE_NONCE_BYTES = 24,
    EHR_KEYFILE_LABEL_BYTES_MAX = 64,
    EHR_KEYFILE_HEADER_BYTES = 193,
    EHR_KEYFILE_SECRETS_BYTES = EHR_SCHNORR_SECRET_BYTES + EHR_KX_SECRET_BYTES,
    EHR_KEYFILE_TAG_BYTES = 16,
    EHR_KEYFILE_BYTES =
        EHR_KEYFILE_HEADER_BYTES + EHR_KEYFILE_SECRETS_BYTES + EHR_KEYFILE_TAG_BYTES,
    EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE = 0x01,
    EHR_PASSPHRASE_BYTES_MAX = 1024,
    /* Room to read one: the passphrase, a line ending ("\r\n") and a NUL. */
    EHR_PASSPHRASE_BUFFER_BYTES = EHR_PASSPHRASE_BYTES_MAX + 3,
};

/*
 * Bounds on the argon2id costs a key file may ask for, checked before any
 * work: a crafted file cannot make us allocate more than 1 GiB or spend more
 * than 16 passes. The minimum is argon2id's own (tests use it).
 */
#define EHR_KEYFILE_OPSLIMIT_MIN 1ULL
#define EHR_KEYFILE_OPSLIMIT_MAX 16ULL
#define EHR_KEYFILE_MEMLIMIT_BYTES_MIN 8192ULL
#define EHR_KEYFILE_MEMLIMIT_BYTES_MAX (1024ULL * 1024 * 1024)

/* argon2id costs for sealing a key file. */
typedef struct ehr_kdf_params {
    uint64_t opslimit;
    uint64_t memlimit_bytes;
} ehr_kdf_params;

/*
 * Named cost profiles: MIN (tests, fuzzing), INTERACTIVE (the default: 2
 * passes, 64 MiB, about a tenth of a second), MODERATE (3 passes, 256 MiB),
 * SENSITIVE (4 passes, 1 GiB).
 */
enum ehr_kdf_profile { EHR_KDF_MIN, EHR_KDF_INTERACTIVE, EHR_KDF_MODERATE, EHR_KDF_SENSITIVE };

ehr_kdf_params ehr_kdf_profile_params(enum ehr_kdf_profile profile);

/* Parse "min", "interactive", "moderate", "sensitive". Returns 0 or EHR_EINVAL. */
int ehr_kdf_profile_parse(const char *name, enum ehr_kdf_profile *out);

typedef struct ehr_identity {
    ehr_signing_key signing;
    ehr_kx_key kx;
    char label[EHR_KEYFILE_LABEL_BYTES_MAX + 1]; /* NUL-terminated */
} ehr_identity;

/*
 * Check LABEL: at most EHR_KEYFILE_LABEL_BYTES_MAX bytes of printable ASCII
 * (so that printing it can never drive a terminal). Returns 0, EHR_ETOOBIG
 * or EHR_EINVAL.
 */
int ehr_identity_label_check(const char *label);

/*
 * Generate a fresh identity with LABEL into caller memory (best: sodium_malloc'd).
 * Returns 0, or the error of ehr_identity_label_check (ID is then zeroed).
 */
int ehr_identity_generate(ehr_identity *id, const char *label);

/* Zero every byte of ID. */
void ehr_identity_wipe(ehr_identity *id);

/* The clear part of a key file: everything but the secrets. */
typedef struct ehr_keyfile_info {
    uint8_t version;
    uint8_t flags;
    ehr_kdf_params kdf;
    uint8_t salt[EHR_KEYFILE_SALT_BYTES];
    uint8_t nonce[EHR_KEYFILE_NONCE_BYTES];
    uint8_t signing_public_key[EHR_SCHNORR_PUBLIC_BYTES];
    uint8_t kx_public_key[EHR_KX_PUBLIC_BYTES];
    char label[EHR_KEYFILE_LABEL_BYTES_MAX + 1]; /* NUL-terminated */
} ehr_keyfile_info;

/*
 * Seal ID into OUT under the passphrase PASS (PASS_LEN bytes, may be 0: the
 * file is then flagged as unprotected) with argon2id costs KDF and a fresh
 * random salt and nonce. Returns 0; EHR_EINVAL for costs out of bounds or a
 * bad label; EHR_ETOOBIG for a passphrase over EHR_PASSPHRASE_BYTES_MAX;
 * -ENOMEM if argon2id cannot get its memory. Wipes every secret it made.
 */
int ehr_keyfile_seal(uint8_t out[EHR_KEYFILE_BYTES], const ehr_identity *id, const char *pass,
                     size_t pass_len, ehr_kdf_params kdf);

/*
 * Parse and check the clear header of the LEN bytes at DATA, without the
 * passphrase and without allocating. Returns 0 and fills INFO, or:
 * EHR_ETRUNCATED (shorter than a key file), EHR_ECORRUPT (bad magic, extra
 * bytes, bad flags, label or public key, costs under the minimum),
 * EHR_EVERSION (a version we do not read), EHR_ETOOBIG (argon2id costs over
 * the maximum). DIAG (may be NULL) gets why (common.h).
 */
int ehr_keyfile_parse(ehr_keyfile_info *info, const uint8_t *data, size_t len, ehr_diag *diag);

/*
 * Parse, derive the key and decrypt: on success ID holds the identity (the
 * caller wipes it) and INFO (may be NULL) the header. Errors: those of
 * ehr_keyfile_parse; EHR_EPASSPHRASE (wrong passphrase or tampered file);
 * EHR_ECORRUPT (secrets do not match the public keys); EHR_ETOOBIG
 * (passphrase too long); -ENOMEM. On error ID is zeroed and DIAG (may be
 * NULL) says why.
 */
int ehr_keyfile_open(ehr_identity *id, ehr_keyfile_info *info, const uint8_t *data, size_t len,
                     const char *pass, size_t pass_len, ehr_diag *diag);

/*
 * Files. ehr_keyfile_save seals ID and writes it to PATH atomically with
 * mode 0600 (common.h: ehr_file_write_atomic); an existing PATH is replaced
 * only with OVERWRITE, else EHR_EEXIST. ehr_keyfile_read_info and
 * ehr_keyfile_load read PATH (at most EHR_KEYFILE_BYTES + 1 bytes are read)
 * and return as ehr_keyfile_parse / ehr_keyfile_open, or -errno. A file
 * longer than a key file is EHR_ECORRUPT. DIAG (may be NULL) says why they
 * failed (without the path: the caller names the file).
 */
int ehr_keyfile_save(const char *path, const ehr_identity *id, const char *pass, size_t pass_len,
                     ehr_kdf_params kdf, bool overwrite);
int ehr_keyfile_read_info(const char *path, ehr_keyfile_info *info, ehr_diag *diag);
int ehr_keyfile_load(const char *path, ehr_identity *id, ehr_keyfile_info *info, const char *pass,
                     size_t pass_len, ehr_diag *diag);

/*
 * A passphrase from where a program finds it without asking: FILE (may be
 * NULL), whose one line is the passphrase (a final "\n" or "\r\n" is not
 * part of it), else the environment variable ENV_NAME (may be NULL). ehrd
 * and ehrctl both read passphrases with this, so a file means the same
 * passphrase to both. BUF holds EHR_PASSPHRASE_BUFFER_BYTES (sodium_malloc
 * it; the caller wipes it). Returns 0 with the passphrase and a NUL in BUF
 * and its length in *LEN; EHR_ENOTFOUND when FILE is NULL and ENV_NAME is
 * unset (the caller decides what that means: DIAG only says that neither
 * was given); else, with a message in DIAG (may be NULL) naming the file or
 * variable: -errno reading FILE, EHR_ETOOBIG (over
 * EHR_PASSPHRASE_BYTES_MAX), EHR_EINVAL (a file of more than one line).
 */
int ehr_passphrase_read(const char *file, const char *env_name, char *buf, size_t *len,
                        ehr_diag *diag);

#endif /* EHR_CRYPTO_H */
