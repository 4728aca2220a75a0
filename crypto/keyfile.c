/*
 * keyfile.c - identities (a signing key, an X25519 key and a label) and the
 * passphrase-protected key file that stores one. The format is documented
 * in ehr_crypto.h next to the API and in crypto/README.md.
 *
 * Not here: passphrase prompting and terminal handling (cli/), key rotation
 * policy, hardware tokens.
 *
 * Secret handling: the derived key and the plaintext secrets live only in a
 * sodium_malloc'd scratch area (guard pages, locked in memory, wiped by
 * sodium_free) and in the caller's ehr_identity. libsodium's argon2id
 * allocates and wipes its own memory; crypto_pwhash fails (-1) only when it
 * cannot get that memory, which we report as -ENOMEM.
 */
#include "ehr_crypto.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Offsets of the version-1 layout (see ehr_crypto.h). */
enum {
    OFF_MAGIC = 0,
    OFF_VERSION = OFF_MAGIC + EHR_KEYFILE_MAGIC_BYTES,
    OFF_FLAGS = OFF_VERSION + 1,
    OFF_OPSLIMIT = OFF_FLAGS + 1,
    OFF_MEMLIMIT = OFF_OPSLIMIT + 8,
    OFF_SALT = OFF_MEMLIMIT + 8,
    OFF_NONCE = OFF_SALT + EHR_KEYFILE_SALT_BYTES,
    OFF_SIGNING_PUBLIC = OFF_NONCE + EHR_KEYFILE_NONCE_BYTES,
    OFF_KX_PUBLIC = OFF_SIGNING_PUBLIC + EHR_SCHNORR_PUBLIC_BYTES,
    OFF_LABEL_LEN = OFF_KX_PUBLIC + EHR_KX_PUBLIC_BYTES,
    OFF_LABEL = OFF_LABEL_LEN + 1,
    OFF_CIPHERTEXT = OFF_LABEL + EHR_KEYFILE_LABEL_BYTES_MAX,
    KEYFILE_FLAGS_KNOWN = EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE,
};

static const uint8_t keyfile_magic[EHR_KEYFILE_MAGIC_BYTES] = {'E', 'H', 'R', 'K', 'E', 'Y'};

_Static_assert((int)OFF_CIPHERTEXT == (int)EHR_KEYFILE_HEADER_BYTES, "header layout adds up");
_Static_assert(EHR_KEYFILE_BYTES == 273, "version 1 key files are 273 bytes");
_Static_assert(EHR_KEYFILE_SALT_BYTES == crypto_pwhash_argon2id_SALTBYTES, "argon2id salt");
_Static_assert(EHR_KEYFILE_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
               "XChaCha20-Poly1305 nonce");
_Static_assert(EHR_KEYFILE_TAG_BYTES == crypto_aead_xchacha20poly1305_ietf_ABYTES, "Poly1305 tag");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == 32, "AEAD key");
_Static_assert(EHR_KEYFILE_OPSLIMIT_MIN >= crypto_pwhash_argon2id_OPSLIMIT_MIN, "argon2id ops");
_Static_assert(EHR_KEYFILE_MEMLIMIT_BYTES_MIN >= crypto_pwhash_argon2id_MEMLIMIT_MIN,
               "argon2id memory");
_Static_assert(EHR_KEYFILE_MEMLIMIT_BYTES_MAX <= SIZE_MAX, "memlimit fits a size_t");
_Static_assert(EHR_KEYFILE_LABEL_BYTES_MAX <= UINT8_MAX, "label length fits its byte");

/* The secrets while they are in our hands: one guarded allocation. */
struct scratch {
    uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    uint8_t plain[EHR_KEYFILE_SECRETS_BYTES];
};

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

ehr_kdf_params ehr_kdf_profile_params(enum ehr_kdf_profile profile)
{
    switch (profile) {
    case EHR_KDF_MIN:
        return (ehr_kdf_params){EHR_KEYFILE_OPSLIMIT_MIN, EHR_KEYFILE_MEMLIMIT_BYTES_MIN};
    case EHR_KDF_INTERACTIVE:
        return (ehr_kdf_params){crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE,
                                crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE};
    case EHR_KDF_MODERATE:
        return (ehr_kdf_params){crypto_pwhash_argon2id_OPSLIMIT_MODERATE,
                                crypto_pwhash_argon2id_MEMLIMIT_MODERATE};
    case EHR_KDF_SENSITIVE:
        return (ehr_kdf_params){crypto_pwhash_argon2id_OPSLIMIT_SENSITIVE,
                                crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE};
    }
    ehr_panic("unknown key derivation profile %d", (int)profile);
}

int ehr_kdf_profile_parse(const char *name, enum ehr_kdf_profile *out)
{
    static const char *const names[] = {"min", "interactive", "moderate", "sensitive"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(names); i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum ehr_kdf_profile)i;
            return 0;
        }
    }
    return EHR_EINVAL;
}

static bool kdf_in_bounds(ehr_kdf_params kdf)
{
    return kdf.opslimit >= EHR_KEYFILE_OPSLIMIT_MIN && kdf.opslimit <= EHR_KEYFILE_OPSLIMIT_MAX &&
           kdf.memlimit_bytes >= EHR_KEYFILE_MEMLIMIT_BYTES_MIN &&
           kdf.memlimit_bytes <= EHR_KEYFILE_MEMLIMIT_BYTES_MAX;
}

/* Printable ASCII only: a label is shown on terminals and in JSON. */
static bool label_bytes_ok(const uint8_t *label, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (label[i] < 0x20 || label[i] > 0x7e)
            return false;
    }
    return true;
}

int ehr_identity_label_check(const char *label)
{
    EHR_ASSERT(label != NULL);
    size_t len = strnlen(label, EHR_KEYFILE_LABEL_BYTES_MAX + 1);
    if (len > EHR_KEYFILE_LABEL_BYTES_MAX)
        return EHR_ETOOBIG;
    return label_bytes_ok((const uint8_t *)label, len) ? 0 : EHR_EINVAL;
}

int ehr_identity_generate(ehr_identity *id, const char *label)
{
    EHR_ASSERT(id != NULL);
    memset(id, 0, sizeof *id);
    int rc = ehr_identity_label_check(label);
    if (rc != 0)
        return rc;
    ehr_signing_key_generate(&id->signing);
    ehr_kx_key_generate(&id->kx);
    memcpy(id->label, label, strlen(label) + 1);
    return 0;
}

void ehr_identity_wipe(ehr_identity *id)
{
    sodium_memzero(id, sizeof *id);
}

/* Derive the AEAD key from the passphrase. Returns 0 or -ENOMEM. */
static int derive_key(uint8_t key[32], const char *pass, size_t pass_len,
                      const uint8_t salt[EHR_KEYFILE_SALT_BYTES], ehr_kdf_params kdf)
{
    EHR_ASSERT(kdf_in_bounds(kdf));
    EHR_ASSERT(pass_len <= EHR_PASSPHRASE_BYTES_MAX);
    if (crypto_pwhash(key, 32, pass_len == 0 ? "" : pass, pass_len, salt, kdf.opslimit,
                      (size_t)kdf.memlimit_bytes, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return -ENOMEM;
    return 0;
}

int ehr_keyfile_seal(uint8_t out[EHR_KEYFILE_BYTES], const ehr_identity *id, const char *pass,
                     size_t pass_len, ehr_kdf_params kdf)
{
    EHR_ASSERT(out != NULL && id != NULL);
    EHR_ASSERT(pass != NULL || pass_len == 0);
    if (!kdf_in_bounds(kdf))
        return EHR_EINVAL;
    if (pass_len > EHR_PASSPHRASE_BYTES_MAX)
        return EHR_ETOOBIG;
    int rc = ehr_identity_label_check(id->label);
    if (rc != 0)
        return EHR_EINVAL;
    size_t label_len = strlen(id->label);

    memset(out, 0, EHR_KEYFILE_BYTES);
    memcpy(out + OFF_MAGIC, keyfile_magic, sizeof keyfile_magic);
    out[OFF_VERSION] = EHR_KEYFILE_VERSION;
    out[OFF_FLAGS] = pass_len == 0 ? EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE : 0;
    put_u64le(out + OFF_OPSLIMIT, kdf.opslimit);
    put_u64le(out + OFF_MEMLIMIT, kdf.memlimit_bytes);
    randombytes_buf(out + OFF_SALT, EHR_KEYFILE_SALT_BYTES);
    randombytes_buf(out + OFF_NONCE, EHR_KEYFILE_NONCE_BYTES);
    memcpy(out + OFF_SIGNING_PUBLIC, id->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES);
    memcpy(out + OFF_KX_PUBLIC, id->kx.public_key, EHR_KX_PUBLIC_BYTES);
    out[OFF_LABEL_LEN] = (uint8_t)label_len;
    memcpy(out + OFF_LABEL, id->label, label_len);

    struct scratch *s = sodium_malloc(sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    rc = derive_key(s->key, pass, pass_len, out + OFF_SALT, kdf);
    if (rc == 0) {
        memcpy(s->plain, id->signing.secret, EHR_SCHNORR_SECRET_BYTES);
        memcpy(s->plain + EHR_SCHNORR_SECRET_BYTES, id->kx.secret, EHR_KX_SECRET_BYTES);
        unsigned long long cipher_len = 0;
        crypto_aead_xchacha20poly1305_ietf_encrypt(out + OFF_CIPHERTEXT, &cipher_len, s->plain,
                                                   sizeof s->plain, out, EHR_KEYFILE_HEADER_BYTES,
                                                   NULL, out + OFF_NONCE, s->key);
        EHR_ASSERT(cipher_len == EHR_KEYFILE_SECRETS_BYTES + EHR_KEYFILE_TAG_BYTES);
    }
    sodium_free(s); /* wipes the key and the plaintext */
    if (rc != 0)
        sodium_memzero(out, EHR_KEYFILE_BYTES);
    return rc;
}

int ehr_keyfile_parse(ehr_keyfile_info *info, const uint8_t *data, size_t len, ehr_diag *diag)
{
    EHR_ASSERT(info != NULL);
    EHR_ASSERT(data != NULL || len == 0);
    memset(info, 0, sizeof *info);
    /* Magic first, over what we have: a short file that is not ours is "not a key file". */
    size_t magic_have = len < EHR_KEYFILE_MAGIC_BYTES ? len : EHR_KEYFILE_MAGIC_BYTES;
    if (memcmp(data == NULL ? keyfile_magic : data, keyfile_magic, magic_have) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "not an ehrchain key file (bad magic)");
    if (len <= OFF_VERSION)
        return ehr_diag_fail(diag, EHR_ETRUNCATED, "key file truncated: %zu of %d bytes", len,
                             EHR_KEYFILE_BYTES);
    if (data[OFF_VERSION] != EHR_KEYFILE_VERSION)
        return ehr_diag_fail(diag, EHR_EVERSION, "key file version %u; this build reads version %d",
                             data[OFF_VERSION], EHR_KEYFILE_VERSION);
    if (len < EHR_KEYFILE_BYTES)
        return ehr_diag_fail(diag, EHR_ETRUNCATED, "key file truncated: %zu of %d bytes", len,
                             EHR_KEYFILE_BYTES);
    if (len > EHR_KEYFILE_BYTES)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "key file has %zu bytes after its end",
                             len - EHR_KEYFILE_BYTES);

    info->version = data[OFF_VERSION];
    info->flags = data[OFF_FLAGS];
    if ((info->flags & ~KEYFILE_FLAGS_KNOWN) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "key file has unknown flags 0x%02x", info->flags);
    info->kdf.opslimit = get_u64le(data + OFF_OPSLIMIT);
    info->kdf.memlimit_bytes = get_u64le(data + OFF_MEMLIMIT);
    if (info->kdf.opslimit > EHR_KEYFILE_OPSLIMIT_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG,
                             "key file asks for %llu argon2id passes, over the maximum %llu",
                             (unsigned long long)info->kdf.opslimit, EHR_KEYFILE_OPSLIMIT_MAX);
    if (info->kdf.memlimit_bytes > EHR_KEYFILE_MEMLIMIT_BYTES_MAX)
        return ehr_diag_fail(
            diag, EHR_ETOOBIG,
            "key file asks for %llu bytes of argon2id memory, over the maximum %llu",
            (unsigned long long)info->kdf.memlimit_bytes, EHR_KEYFILE_MEMLIMIT_BYTES_MAX);
    if (!kdf_in_bounds(info->kdf))
        return ehr_diag_fail(diag, EHR_ECORRUPT, "key file argon2id costs are under the minimum");

    size_t label_len = data[OFF_LABEL_LEN];
    if (label_len > EHR_KEYFILE_LABEL_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "key file label length %zu is over %d", label_len,
                             EHR_KEYFILE_LABEL_BYTES_MAX);
    if (!label_bytes_ok(data + OFF_LABEL, label_len))
        return ehr_diag_fail(diag, EHR_ECORRUPT, "key file label is not printable ASCII");
    for (size_t i = label_len; i < EHR_KEYFILE_LABEL_BYTES_MAX; i++) {
        if (data[OFF_LABEL + i] != 0)
            return ehr_diag_fail(diag, EHR_ECORRUPT, "key file label padding is not zero");
    }
    ehr_public_key parsed;
    if (ehr_public_key_parse(&parsed, data + OFF_SIGNING_PUBLIC) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "key file signing public key is not a valid key");
    if (ehr_kx_public_key_check(data + OFF_KX_PUBLIC) != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "key file X25519 public key is not a valid key");

    memcpy(info->salt, data + OFF_SALT, EHR_KEYFILE_SALT_BYTES);
    memcpy(info->nonce, data + OFF_NONCE, EHR_KEYFILE_NONCE_BYTES);
    memcpy(info->signing_public_key, data + OFF_SIGNING_PUBLIC, EHR_SCHNORR_PUBLIC_BYTES);
    memcpy(info->kx_public_key, data + OFF_KX_PUBLIC, EHR_KX_PUBLIC_BYTES);
    memcpy(info->label, data + OFF_LABEL, label_len);
    info->label[label_len] = '\0';
    return 0;
}

/* Rebuild the identity from decrypted secrets and check them against the header. */
static int identity_from_plain(ehr_identity *id, const uint8_t plain[EHR_KEYFILE_SECRETS_BYTES],
                               const ehr_keyfile_info *info)
{
    if (ehr_signing_key_from_secret(&id->signing, plain) != 0)
        return EHR_ECORRUPT;
    ehr_kx_key_from_secret(&id->kx, plain + EHR_SCHNORR_SECRET_BYTES);
    if (sodium_memcmp(id->signing.public_key, info->signing_public_key, EHR_SCHNORR_PUBLIC_BYTES) !=
            0 ||
        sodium_memcmp(id->kx.public_key, info->kx_public_key, EHR_KX_PUBLIC_BYTES) != 0)
        return EHR_ECORRUPT;
    memcpy(id->label, info->label, sizeof id->label);
    return 0;
}

int ehr_keyfile_open(ehr_identity *id, ehr_keyfile_info *info, const uint8_t *data, size_t len,
                     const char *pass, size_t pass_len, ehr_diag *diag)
{
    EHR_ASSERT(id != NULL);
    EHR_ASSERT(pass != NULL || pass_len == 0);
    ehr_keyfile_info local;
    if (info == NULL)
        info = &local;
    memset(id, 0, sizeof *id);
    int rc = ehr_keyfile_parse(info, data, len, diag);
    if (rc != 0)
        return rc;
    if (pass_len > EHR_PASSPHRASE_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "passphrase longer than %d bytes",
                             EHR_PASSPHRASE_BYTES_MAX);

    struct scratch *s = sodium_malloc(sizeof *s);
    if (s == NULL)
        return ehr_diag_fail(diag, -ENOMEM, "cannot allocate locked memory for the key");
    rc = derive_key(s->key, pass, pass_len, info->salt, info->kdf);
    if (rc != 0) {
        sodium_free(s);
        return ehr_diag_fail(diag, rc, "argon2id could not get %llu bytes of memory",
                             (unsigned long long)info->kdf.memlimit_bytes);
    }
    unsigned long long plain_len = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            s->plain, &plain_len, NULL, data + OFF_CIPHERTEXT,
            EHR_KEYFILE_SECRETS_BYTES + EHR_KEYFILE_TAG_BYTES, data, EHR_KEYFILE_HEADER_BYTES,
            info->nonce, s->key) != 0) {
        sodium_free(s);
        return ehr_diag_fail(
            diag, EHR_EPASSPHRASE,
            "wrong passphrase, or the key file was altered (the two cannot be told "
            "apart)");
    }
    EHR_ASSERT(plain_len == EHR_KEYFILE_SECRETS_BYTES);
    rc = identity_from_plain(id, s->plain, info);
    sodium_free(s);
    if (rc != 0) {
        ehr_identity_wipe(id);
        return ehr_diag_fail(diag, rc, "key file secrets do not match its public keys");
    }
    return 0;
}

int ehr_keyfile_save(const char *path, const ehr_identity *id, const char *pass, size_t pass_len,
                     ehr_kdf_params kdf, bool overwrite)
{
    uint8_t sealed[EHR_KEYFILE_BYTES];
    int rc = ehr_keyfile_seal(sealed, id, pass, pass_len, kdf);
    if (rc != 0)
        return rc;
    return ehr_file_write_atomic(path, sealed, sizeof sealed, 0600, overwrite);
}

/* Read a key file into BUF; one byte of room past the format so longer files show. */
static int keyfile_read(const char *path, uint8_t buf[EHR_KEYFILE_BYTES + 1], size_t *len,
                        ehr_diag *diag)
{
    int rc = ehr_file_read(path, buf, EHR_KEYFILE_BYTES + 1, len);
    if (rc == EHR_ETOOBIG)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "file is larger than a key file (%d bytes)",
                             EHR_KEYFILE_BYTES);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s", ehr_strerror(rc));
    return 0;
}

int ehr_keyfile_read_info(const char *path, ehr_keyfile_info *info, ehr_diag *diag)
{
    uint8_t buf[EHR_KEYFILE_BYTES + 1];
    size_t len = 0;
    int rc = keyfile_read(path, buf, &len, diag);
    if (rc != 0)
        return rc;
    return ehr_keyfile_parse(info, buf, len, diag);
}

int ehr_keyfile_load(const char *path, ehr_identity *id, ehr_keyfile_info *info, const char *pass,
                     size_t pass_len, ehr_diag *diag)
{
    uint8_t buf[EHR_KEYFILE_BYTES + 1];
    size_t len = 0;
    memset(id, 0, sizeof *id);
    int rc = keyfile_read(path, buf, &len, diag);
    if (rc != 0)
        return rc;
    return ehr_keyfile_open(id, info, buf, len, pass, pass_len, diag);
}
