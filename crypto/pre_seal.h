/*
 * pre_seal.h - the pieces of proxy re-encryption that sit between pre.h and
 * the ledger: a grantee's receiving key, derived from its key file, and a
 * kfrag sealed to the one node that is to hold it (crypto/PRE.md, "Sealed
 * kfrags" and "Receiving keys").
 *
 * A sealed kfrag is what a consent grant carries in key_fragments: the
 * node's X25519 public key (so a node finds its own without trying every
 * one), then libsodium's crypto_box_seal of the kfrag's encoding to that
 * key (an ephemeral X25519 key, XSalsa20-Poly1305; anonymous sender, bound
 * to the recipient's key). Only that node opens it; the patient's
 * signature on the grant says who made it, the kfrag's own signature by
 * the delegating key what it is for.
 *
 * Not here: the scheme (pre.h), who may ask a node for a cfrag (node/),
 * the grant itself (contracts/).
 */
#ifndef EHR_PRE_SEAL_H
#define EHR_PRE_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ehr_crypto.h"
#include "pre.h"

enum {
    EHR_PRE_SEAL_OVERHEAD_BYTES = 48, /* crypto_box_SEALBYTES: ephemeral key and tag */
    EHR_PRE_SEALED_KFRAG_BYTES =
        EHR_KX_PUBLIC_BYTES + EHR_PRE_SEAL_OVERHEAD_BYTES + EHR_PRE_KFRAG_BYTES,
};

/*
 * A grantee's receiving key pair, derived one-way from a 32-byte ROOT the
 * grantee holds (ehrctl passes the X25519 secret of its key file):
 * BLAKE2b-512 keyed with ROOT over EHR_PRE_TAG_RECEIVING (with its NUL),
 * reduced mod L. Returns 0, or EHR_EINVAL (a zero scalar, never in
 * practice; KEY zeroed). The caller wipes KEY.
 */
#define EHR_PRE_TAG_RECEIVING "ehr.v1.pre.receiving"
int ehr_pre_receiving_key_derive(ehr_pre_key *key, const uint8_t root[EHR_PRE_ROOT_BYTES]);

/*
 * Seal KFRAG to the node whose X25519 public key is NODE_KX_KEY into OUT.
 * Returns 0, or EHR_EINVAL (OUT zeroed) for a key that fails
 * ehr_kx_public_key_check. The kfrag's encoding is wiped from the stack.
 */
int ehr_pre_kfrag_seal(const ehr_pre_kfrag *kfrag, const uint8_t node_kx_key[EHR_KX_PUBLIC_BYTES],
                       uint8_t out[EHR_PRE_SEALED_KFRAG_BYTES]);

/*
 * The decoder of a sealed kfrag's public part: LEN bytes at DATA are
 * exactly EHR_PRE_SEALED_KFRAG_BYTES and name a usable X25519 key, copied
 * to NODE_KX_KEY. Returns 0, EHR_ETRUNCATED (shorter), EHR_EINVAL (longer,
 * or a low-order key); on error NODE_KX_KEY is zeroed and DIAG (may be
 * NULL) says why.
 */
int ehr_pre_sealed_kfrag_recipient(const uint8_t *data, size_t len,
                                   uint8_t node_kx_key[EHR_KX_PUBLIC_BYTES], ehr_diag *diag);

/*
 * Open a sealed kfrag as the node NODE (its X25519 key pair): the
 * recipient must be NODE's public key, the box must open, and what it
 * holds must pass ehr_pre_kfrag_decode. Returns 0 with KFRAG (the caller
 * wipes it), or: the errors of ehr_pre_sealed_kfrag_recipient; EHR_ENOTFOUND
 * (sealed to another node); EHR_EBADSIG (the box does not open: not sealed
 * to this key, or altered); the errors of ehr_pre_kfrag_decode. On error
 * KFRAG is zeroed and DIAG (may be NULL) says why. Every opened byte is
 * wiped from the stack.
 */
int ehr_pre_kfrag_unseal(ehr_pre_kfrag *kfrag, const uint8_t *data, size_t len,
                         const ehr_kx_key *node, ehr_diag *diag);

#endif /* EHR_PRE_SEAL_H */
