/*
 * pre.h - threshold proxy re-encryption of 32-byte record keys, in the spirit
 * of Umbral (Nuñez 2018), on libsodium's ristretto255 group. The scheme, every
 * hash and its domain-separation tag, and the encodings byte by byte are in
 * crypto/PRE.md; this header is the contract.
 *
 * Roles: the delegator (a patient) holds a delegating key pair and
 * encapsulates record keys to its public key; a grantee holds its own key
 * pair of the same kind; proxies (nodes) each hold one key fragment (kfrag)
 * and turn a capsule into a capsule fragment (cfrag) for the grantee. The
 * grantee opens the record key from `threshold` verified cfrags; the
 * delegator opens it directly.
 *
 * The steps:
 *   1. delegator: ehr_pre_key_generate (one delegating key per patient per
 *      record type: see PRE.md, "Collusion bound"), then for each record
 *      ehr_pre_encapsulate(public key) -> capsule + key;
 *   2. delegator, on a grant: ehr_pre_kfrags_generate(grantee's public key,
 *      threshold, count) -> count kfrags, one per proxy;
 *   3. proxy: ehr_pre_kfrag_decode + ehr_pre_kfrag_verify on receipt, then
 *      per request ehr_pre_capsule_decode + ehr_pre_reencapsulate -> cfrag;
 *   4. grantee: ehr_pre_cfrag_decode, ehr_pre_cfrag_verify (to discard a bad
 *      proxy's answer and ask another), ehr_pre_decapsulate_cfrags -> key.
 *
 * What it never does: allocate, branch on a secret, or use a group or scalar
 * operation other than libsodium's constant-time ones. Every secret it puts
 * on its stack is wiped before it returns. Structs are caller-owned; those
 * that hold a secret (ehr_pre_key, ehr_pre_kfrag) are wiped with their _wipe
 * function. Capsules, kfrags and cfrags are meant to come from their
 * decoders; one filled by hand with an invalid point is refused where the
 * point is used (verification fails), never half-trusted. Call
 * ehr_crypto_init() first.
 *
 * Not here: the symmetric encryption of records, sealing kfrags to nodes
 * and receiving keys (pre_seal.h), and who may ask for a cfrag (consent).
 */
#ifndef EHR_PRE_H
#define EHR_PRE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

enum {
    EHR_PRE_POINT_BYTES = 32,  /* a canonical ristretto255 encoding */
    EHR_PRE_SCALAR_BYTES = 32, /* little-endian, below the group order L */
    EHR_PRE_SECRET_BYTES = EHR_PRE_SCALAR_BYTES,
    EHR_PRE_PUBLIC_BYTES = EHR_PRE_POINT_BYTES,
    EHR_PRE_KEY_BYTES = 32, /* the symmetric key a capsule carries */
    EHR_PRE_KFRAG_ID_BYTES = 32,
    EHR_PRE_KFRAGS_MAX = 16, /* count of kfrags per grant, and cfrags per opening */
    EHR_PRE_CAPSULE_BYTES = 2 * EHR_PRE_POINT_BYTES + EHR_PRE_SCALAR_BYTES,
    EHR_PRE_KFRAG_BYTES =
        EHR_PRE_KFRAG_ID_BYTES + 5 * EHR_PRE_POINT_BYTES + 2 * EHR_PRE_SCALAR_BYTES,
    EHR_PRE_CFRAG_BYTES =
        EHR_PRE_KFRAG_ID_BYTES + 5 * EHR_PRE_POINT_BYTES + 3 * EHR_PRE_SCALAR_BYTES,
};

/* A delegating or receiving key pair. The secret must be wiped after use. */
typedef struct ehr_pre_key {
    uint8_t secret[EHR_PRE_SECRET_BYTES];
    uint8_t public_key[EHR_PRE_PUBLIC_BYTES];
} ehr_pre_key;

/*
 * A capsule: E = g^r, V = g^u, s = u + r * H(E, V). Anyone can check it
 * (g^s = V * E^H(E, V)); ehr_pre_capsule_decode does, so every capsule in
 * this struct is well formed.
 */
typedef struct ehr_pre_capsule {
    uint8_t e[EHR_PRE_POINT_BYTES];
    uint8_t v[EHR_PRE_POINT_BYTES];
    uint8_t s[EHR_PRE_SCALAR_BYTES];
} ehr_pre_capsule;

/*
 * A key fragment, held by one proxy. `share` is secret (a Shamir share of
 * the re-encryption key); the rest is public. `commitment` = U^share for the
 * second generator U; the delegating key signs (Schnorr, ristretto255) id,
 * both public keys, the precursor and the commitment.
 */
typedef struct ehr_pre_kfrag {
    uint8_t id[EHR_PRE_KFRAG_ID_BYTES];
    uint8_t share[EHR_PRE_SCALAR_BYTES];
    uint8_t precursor[EHR_PRE_POINT_BYTES]; /* X = g^x, one per grant */
    uint8_t commitment[EHR_PRE_POINT_BYTES];
    uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES];
    uint8_t receiving_key[EHR_PRE_PUBLIC_BYTES];
    uint8_t signature_r[EHR_PRE_POINT_BYTES];
    uint8_t signature_z[EHR_PRE_SCALAR_BYTES];
} ehr_pre_kfrag;

/*
 * A capsule fragment: E1 = E^share, V1 = V^share, the kfrag's public part
 * (id, precursor, commitment, signature) and a Chaum-Pedersen proof (c, z)
 * that the same share is the exponent of E1, V1 and the commitment.
 */
typedef struct ehr_pre_cfrag {
    uint8_t e1[EHR_PRE_POINT_BYTES];
    uint8_t v1[EHR_PRE_POINT_BYTES];
    uint8_t id[EHR_PRE_KFRAG_ID_BYTES];
    uint8_t precursor[EHR_PRE_POINT_BYTES];
    uint8_t commitment[EHR_PRE_POINT_BYTES];
    uint8_t signature_r[EHR_PRE_POINT_BYTES];
    uint8_t signature_z[EHR_PRE_SCALAR_BYTES];
    uint8_t proof_c[EHR_PRE_SCALAR_BYTES];
    uint8_t proof_z[EHR_PRE_SCALAR_BYTES];
} ehr_pre_cfrag;

/* Generate a fresh key pair from the OS random source. Returns 0. */
int ehr_pre_key_generate(ehr_pre_key *key);

/*
 * Load a key pair from a 32-byte secret scalar. Returns 0, or EHR_EINVAL if
 * the secret is zero or not canonical (not below L); KEY is then zeroed.
 */
int ehr_pre_key_from_secret(ehr_pre_key *key, const uint8_t secret[EHR_PRE_SECRET_BYTES]);

/*
 * A patient's delegating key pair for one record type (PRE.md, "Delegating
 * keys"), derived from a 32-byte ROOT secret the patient holds (ehrctl
 * passes the signing secret of the patient's key file): BLAKE2b-512 keyed
 * with ROOT over EHR_PRE_TAG_DELEGATING (with its NUL) and RECORD_TYPE
 * (4 bytes, big-endian, not 0), reduced mod L. One-way: a delegating
 * secret (what a grantee colluding with t proxies could learn) reveals
 * neither ROOT nor another type's secret. Returns 0, or EHR_EINVAL (a zero
 * scalar, never in practice; KEY zeroed).
 */
#define EHR_PRE_TAG_DELEGATING "ehr.v1.pre.delegating"
enum { EHR_PRE_ROOT_BYTES = 32 };
int ehr_pre_delegating_key_derive(ehr_pre_key *key, const uint8_t root[EHR_PRE_ROOT_BYTES],
                                  uint32_t record_type);

/* Zero every byte of KEY. */
void ehr_pre_key_wipe(ehr_pre_key *key);

/*
 * Check a public key: a canonical ristretto255 encoding other than the
 * identity. Returns 0 or EHR_EINVAL.
 */
int ehr_pre_public_key_check(const uint8_t public_key[EHR_PRE_PUBLIC_BYTES]);

/*
 * Encapsulate a fresh random key to DELEGATING_KEY: fills CAPSULE and KEY
 * (EHR_PRE_KEY_BYTES; the caller wipes it). Returns 0, or EHR_EINVAL for a
 * public key that fails ehr_pre_public_key_check.
 */
int ehr_pre_encapsulate(const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                        ehr_pre_capsule *capsule, uint8_t key[EHR_PRE_KEY_BYTES]);

/*
 * Open CAPSULE with the delegating key pair itself: the key it carries.
 * Returns 0, or EHR_EINVAL (KEY zeroed) for a capsule with a point that is
 * not a valid encoding (one that did not come from ehr_pre_capsule_decode).
 */
int ehr_pre_decapsulate(const ehr_pre_key *delegating, const ehr_pre_capsule *capsule,
                        uint8_t key[EHR_PRE_KEY_BYTES]);

/*
 * Make COUNT kfrags of threshold THRESHOLD (1 <= THRESHOLD <= COUNT <=
 * EHR_PRE_KFRAGS_MAX) that re-encrypt capsules of DELEGATING to
 * RECEIVING_KEY, into KFRAGS[0..COUNT) (the caller wipes them). Returns 0;
 * EHR_EINVAL for a bad threshold or receiving key (or the delegating key
 * itself as receiver); EHR_ETOOBIG for COUNT over the maximum. DIAG (may be
 * NULL) says why.
 */
int ehr_pre_kfrags_generate(const ehr_pre_key *delegating,
                            const uint8_t receiving_key[EHR_PRE_PUBLIC_BYTES], size_t threshold,
                            size_t count, ehr_pre_kfrag *kfrags, ehr_diag *diag);

/*
 * Check that KFRAG was made by DELEGATING_KEY for RECEIVING_KEY: both keys
 * match and the signature verifies. Returns 0 or EHR_EBADSIG.
 */
int ehr_pre_kfrag_verify(const ehr_pre_kfrag *kfrag,
                         const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                         const uint8_t receiving_key[EHR_PRE_PUBLIC_BYTES]);

/* Zero every byte of KFRAG. */
void ehr_pre_kfrag_wipe(ehr_pre_kfrag *kfrag);

/*
 * Re-encapsulate CAPSULE with KFRAG (both decoded, so both well formed) into
 * CFRAG, with a fresh proof. Returns 0, or EHR_EINVAL (CFRAG zeroed) for a
 * capsule with a point that is not a valid encoding.
 */
int ehr_pre_reencapsulate(const ehr_pre_kfrag *kfrag, const ehr_pre_capsule *capsule,
                          ehr_pre_cfrag *cfrag);

/*
 * Check CFRAG for CAPSULE as its grantee: the kfrag it came from was signed
 * by DELEGATING_KEY for RECEIVING_KEY, and the proof shows E1 and V1 were
 * computed with that kfrag's share. Returns 0 or EHR_EBADSIG.
 */
int ehr_pre_cfrag_verify(const ehr_pre_cfrag *cfrag, const ehr_pre_capsule *capsule,
                         const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                         const uint8_t receiving_key[EHR_PRE_PUBLIC_BYTES]);

/*
 * Open CAPSULE as the grantee RECEIVING from COUNT cfrags (1..EHR_PRE_KFRAGS_MAX)
 * of a grant by DELEGATING_KEY. Every cfrag is verified here again (an
 * unverified cfrag is never used). Returns 0 with the key in KEY (the caller
 * wipes it), or: EHR_EINVAL (a bad count or delegating key, cfrags of
 * different grants, or cfrags that do not open the capsule: fewer than the
 * threshold); EHR_ETOOBIG (COUNT over the maximum); EHR_EEXIST (two cfrags
 * from the same kfrag); EHR_EBADSIG (a cfrag fails ehr_pre_cfrag_verify).
 * On error KEY is zeroed and DIAG (may be NULL) says why, naming the cfrag.
 */
int ehr_pre_decapsulate_cfrags(const ehr_pre_key *receiving,
                               const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                               const ehr_pre_capsule *capsule, const ehr_pre_cfrag *cfrags,
                               size_t count, uint8_t key[EHR_PRE_KEY_BYTES], ehr_diag *diag);

/*
 * Canonical fixed-size encodings (PRE.md, "Encodings"): the fields of each
 * struct in declaration order, nothing else. Encoding cannot fail.
 *
 * Decoding takes LEN bytes at DATA and checks every field: each point a
 * canonical ristretto255 encoding other than the identity, each scalar below
 * L (and the capsule's s, the kfrag's share not zero). The capsule decoder
 * also checks the capsule equation; the kfrag decoder checks the commitment
 * against the share. Returns 0, or EHR_ETRUNCATED (shorter than the
 * encoding), EHR_EINVAL (longer, or a field out of range), EHR_EBADSIG (the
 * capsule equation or the kfrag commitment does not hold). On error the
 * output is zeroed and DIAG (may be NULL) names the field.
 */
void ehr_pre_capsule_encode(const ehr_pre_capsule *capsule, uint8_t out[EHR_PRE_CAPSULE_BYTES]);
int ehr_pre_capsule_decode(ehr_pre_capsule *capsule, const uint8_t *data, size_t len,
                           ehr_diag *diag);
void ehr_pre_kfrag_encode(const ehr_pre_kfrag *kfrag, uint8_t out[EHR_PRE_KFRAG_BYTES]);
int ehr_pre_kfrag_decode(ehr_pre_kfrag *kfrag, const uint8_t *data, size_t len, ehr_diag *diag);
void ehr_pre_cfrag_encode(const ehr_pre_cfrag *cfrag, uint8_t out[EHR_PRE_CFRAG_BYTES]);
int ehr_pre_cfrag_decode(ehr_pre_cfrag *cfrag, const uint8_t *data, size_t len, ehr_diag *diag);

#endif /* EHR_PRE_H */
