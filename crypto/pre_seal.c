/*
 * pre_seal.c - receiving keys and kfrags sealed to nodes (pre_seal.h;
 * crypto/PRE.md, "Sealed kfrags" and "Receiving keys"). Not here: the
 * scheme itself (pre.c).
 *
 * libsodium caveats, where they bite:
 *  - crypto_box_seal derives its nonce from the ephemeral and the
 *    recipient's public keys, so a sealed box is bound to its recipient:
 *    copying it under another node's key makes it fail to open.
 *  - crypto_box_seal_open needs the recipient's public key as well as its
 *    secret; a node passes its own pair (ehr_kx_key), never the key the
 *    sealed kfrag names.
 */
#include <sodium.h>
#include <string.h>

#include "pre_seal.h"

_Static_assert(EHR_PRE_SEAL_OVERHEAD_BYTES == crypto_box_SEALBYTES, "sealed box overhead");
_Static_assert(EHR_KX_PUBLIC_BYTES == crypto_box_PUBLICKEYBYTES, "X25519 public key");
_Static_assert(EHR_KX_SECRET_BYTES == crypto_box_SECRETKEYBYTES, "X25519 secret key");
_Static_assert(EHR_PRE_SEALED_KFRAG_BYTES == 336, "sealed kfrag layout (PRE.md)");

int ehr_pre_receiving_key_derive(ehr_pre_key *key, const uint8_t root[EHR_PRE_ROOT_BYTES])
{
    static const char tag[] = EHR_PRE_TAG_RECEIVING;
    uint8_t wide[64], secret[EHR_PRE_SECRET_BYTES];
    crypto_generichash(wide, sizeof wide, (const uint8_t *)tag, sizeof tag, root,
                       EHR_PRE_ROOT_BYTES); /* the tag with its NUL, keyed with ROOT */
    crypto_core_ristretto255_scalar_reduce(secret, wide);
    int rc = ehr_pre_key_from_secret(key, secret); /* zero: probability 2^-252 */
    sodium_memzero(wide, sizeof wide);
    sodium_memzero(secret, sizeof secret);
    return rc;
}

int ehr_pre_kfrag_seal(const ehr_pre_kfrag *kfrag, const uint8_t node_kx_key[EHR_KX_PUBLIC_BYTES],
                       uint8_t out[EHR_PRE_SEALED_KFRAG_BYTES])
{
    if (ehr_kx_public_key_check(node_kx_key) != 0) {
        memset(out, 0, EHR_PRE_SEALED_KFRAG_BYTES);
        return EHR_EINVAL;
    }
    uint8_t plain[EHR_PRE_KFRAG_BYTES];
    ehr_pre_kfrag_encode(kfrag, plain);
    memcpy(out, node_kx_key, EHR_KX_PUBLIC_BYTES);
    int rc = crypto_box_seal(out + EHR_KX_PUBLIC_BYTES, plain, sizeof plain, node_kx_key);
    sodium_memzero(plain, sizeof plain);
    EHR_ASSERT(rc == 0); /* fails only for a low-order key, refused above */
    return 0;
}

int ehr_pre_sealed_kfrag_recipient(const uint8_t *data, size_t len,
                                   uint8_t node_kx_key[EHR_KX_PUBLIC_BYTES], ehr_diag *diag)
{
    memset(node_kx_key, 0, EHR_KX_PUBLIC_BYTES);
    if (len < EHR_PRE_SEALED_KFRAG_BYTES)
        return ehr_diag_fail(diag, EHR_ETRUNCATED, "a sealed kfrag is %d bytes, not %zu",
                             EHR_PRE_SEALED_KFRAG_BYTES, len);
    if (len > EHR_PRE_SEALED_KFRAG_BYTES)
        return ehr_diag_fail(diag, EHR_EINVAL, "a sealed kfrag is %d bytes, not %zu",
                             EHR_PRE_SEALED_KFRAG_BYTES, len);
    if (ehr_kx_public_key_check(data) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "sealed kfrag: the node key (bytes 0-31) is a low-order point");
    memcpy(node_kx_key, data, EHR_KX_PUBLIC_BYTES);
    return 0;
}

int ehr_pre_kfrag_unseal(ehr_pre_kfrag *kfrag, const uint8_t *data, size_t len,
                         const ehr_kx_key *node, ehr_diag *diag)
{
    memset(kfrag, 0, sizeof *kfrag);
    uint8_t recipient[EHR_KX_PUBLIC_BYTES];
    int rc = ehr_pre_sealed_kfrag_recipient(data, len, recipient, diag);
    if (rc != 0)
        return rc;
    if (sodium_memcmp(recipient, node->public_key, EHR_KX_PUBLIC_BYTES) != 0)
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "the kfrag is sealed to another node");
    uint8_t plain[EHR_PRE_KFRAG_BYTES];
    if (crypto_box_seal_open(plain, data + EHR_KX_PUBLIC_BYTES,
                             EHR_PRE_SEAL_OVERHEAD_BYTES + EHR_PRE_KFRAG_BYTES, node->public_key,
                             node->secret) != 0) {
        sodium_memzero(plain, sizeof plain);
        return ehr_diag_fail(diag, EHR_EBADSIG,
                             "the sealed kfrag does not open with this node's key (altered, or "
                             "sealed to another key)");
    }
    ehr_diag why;
    rc = ehr_pre_kfrag_decode(kfrag, plain, sizeof plain, &why);
    sodium_memzero(plain, sizeof plain);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "the sealed kfrag holds no valid kfrag: %s", why.msg);
    return 0;
}
