/*
 * pre.c - threshold proxy re-encryption on ristretto255 (crypto/PRE.md has
 * the scheme, the hashes and their tags, and the encodings; pre.h the
 * contract). Not here: record encryption, sealing kfrags to nodes, consent.
 *
 * Conventions in this file:
 *  - Group elements and scalars are kept as their 32-byte canonical
 *    encodings, the form libsodium's ristretto255 functions take: a decoded
 *    struct is its encoding, checked.
 *  - point_mul, point_add and point_sub report an invalid input encoding
 *    (at no cost on the common path), so a struct filled by hand rather
 *    than by a decoder is refused where it is used, never half-trusted:
 *    verification fails, the other operations return EHR_EINVAL. Points
 *    the decoders or the key checks passed are asserted valid instead.
 *  - Each function keeps its secrets in one local struct `w` and wipes it
 *    with one sodium_memzero on every path out.
 *  - No branch depends on a secret, except those on events of probability
 *    ~2^-252 (a hash or a random scalar equal to zero), which redraw or stop.
 *
 * libsodium 1.0.18 caveats, where they bite:
 *  - crypto_scalarmult_ristretto255(_base) return -1 when the product is the
 *    identity, leaving its all-zero encoding in the output; for an invalid
 *    input point they also return -1 but leave a copy of the scalar in the
 *    output. point_mul wipes the output on -1 either way.
 *  - crypto_core_ristretto255_is_valid_point accepts the identity (all
 *    zero): point_valid refuses it separately.
 *  - There is no public "is this scalar canonical" check; scalar_canonical
 *    reduces a copy and compares (constant time).
 *  - No HKDF in this version (it came in 1.0.19): every hash and the KDF are
 *    BLAKE2b (crypto_generichash) with a length-prefixed tag.
 */
#include "pre.h"
#include "pre_internal.h"

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

enum {
    P = EHR_PRE_POINT_BYTES,
    S = EHR_PRE_SCALAR_BYTES,
    WIDE = 64, /* BLAKE2b-512 output, reduced mod L to a scalar */
    TAG_BYTES_MAX = 255,
};

_Static_assert(crypto_core_ristretto255_BYTES == P, "point size");
_Static_assert(crypto_core_ristretto255_SCALARBYTES == S, "scalar size");
_Static_assert(crypto_core_ristretto255_NONREDUCEDSCALARBYTES == WIDE, "wide scalar size");
_Static_assert(crypto_core_ristretto255_HASHBYTES == WIDE, "hash-to-point input size");
_Static_assert(crypto_generichash_BYTES_MAX >= WIDE, "BLAKE2b-512 available");
_Static_assert(EHR_PRE_CAPSULE_BYTES == 96, "capsule encoding size (PRE.md)");
_Static_assert(EHR_PRE_KFRAG_BYTES == 256, "kfrag encoding size (PRE.md)");
_Static_assert(EHR_PRE_CFRAG_BYTES == 288, "cfrag encoding size (PRE.md)");
/* The structs are their encodings: byte arrays only, no padding. */
_Static_assert(sizeof(ehr_pre_capsule) == EHR_PRE_CAPSULE_BYTES, "capsule struct = encoding");
_Static_assert(sizeof(ehr_pre_kfrag) == EHR_PRE_KFRAG_BYTES, "kfrag struct = encoding");
_Static_assert(sizeof(ehr_pre_cfrag) == EHR_PRE_CFRAG_BYTES, "cfrag struct = encoding");
_Static_assert(offsetof(ehr_pre_kfrag, signature_z) == 224, "kfrag layout");
_Static_assert(offsetof(ehr_pre_cfrag, proof_z) == 256, "cfrag layout");

/* Domain-separation tags (PRE.md, "Hashes"). */
#define TAG_GENERATOR_U "ehrchain/pre/v1/generator-u"
#define TAG_CAPSULE "ehrchain/pre/v1/capsule"
#define TAG_KEY "ehrchain/pre/v1/key"
#define TAG_DH_FACTOR "ehrchain/pre/v1/dh-factor"
#define TAG_SHARE_SECRET "ehrchain/pre/v1/share-secret"
#define TAG_SHARE_INDEX "ehrchain/pre/v1/share-index"
#define TAG_KFRAG_SIGNATURE "ehrchain/pre/v1/kfrag-signature"
#define TAG_CFRAG_PROOF "ehrchain/pre/v1/cfrag-proof"
#define TAG_NONCE "ehrchain/pre/v1/nonce"
#define TAG_TEST_RNG "ehrchain/pre/v1/test-rng"

/* U = from_hash(BLAKE2b-512(len, TAG_GENERATOR_U)): nobody knows its logarithm to base g. */
const uint8_t ehr_pre__generator_u[P] = {
    0x4e, 0x4d, 0x9f, 0xe2, 0x7d, 0x8d, 0x75, 0x23, 0x68, 0x64, 0xbd, 0xa6, 0x24, 0x87, 0xd5, 0x1c,
    0x4a, 0xc9, 0x82, 0x18, 0x43, 0x1f, 0x50, 0x17, 0xb9, 0x62, 0x24, 0x29, 0x95, 0x74, 0x7f, 0x47,
};
#define GENERATOR_U ehr_pre__generator_u

/* ---- Hashing: BLAKE2b over (tag length, tag, fixed-size fields). ---- */

typedef struct hash {
    crypto_generichash_state state;
    size_t out_bytes;
} hash;

static void hash_put(hash *h, const void *data, size_t len)
{
    int rc = crypto_generichash_update(&h->state, data, len);
    EHR_ASSERT(rc == 0);
}

static void hash_begin(hash *h, const char *tag, size_t out_bytes)
{
    size_t tag_len = strlen(tag);
    EHR_ASSERT(tag_len <= TAG_BYTES_MAX);
    h->out_bytes = out_bytes;
    int rc = crypto_generichash_init(&h->state, NULL, 0, out_bytes);
    EHR_ASSERT(rc == 0);
    uint8_t len_byte = (uint8_t)tag_len;
    hash_put(h, &len_byte, 1);
    hash_put(h, tag, tag_len);
}

static void hash_finish(hash *h, uint8_t *out)
{
    int rc = crypto_generichash_final(&h->state, out, h->out_bytes);
    EHR_ASSERT(rc == 0);
    sodium_memzero(&h->state, sizeof h->state);
}

static void hash_finish_scalar(hash *h, uint8_t out[S])
{
    uint8_t wide[WIDE];
    EHR_ASSERT(h->out_bytes == WIDE);
    hash_finish(h, wide);
    crypto_core_ristretto255_scalar_reduce(out, wide);
    sodium_memzero(wide, sizeof wide);
}

/* ---- Randomness: libsodium's, or the tests' seeded generator. ---- */

void ehr_pre__rng_seed(ehr_pre__rng *rng, const uint8_t seed[32])
{
    memcpy(rng->seed, seed, sizeof rng->seed);
    rng->counter = 0;
}

static void rng_block(ehr_pre__rng *rng, uint8_t *out, size_t len)
{
    uint8_t counter[8];
    for (size_t i = 0; i < sizeof counter; i++)
        counter[i] = (uint8_t)(rng->counter >> (8 * i));
    hash h;
    hash_begin(&h, TAG_TEST_RNG, len);
    hash_put(&h, rng->seed, sizeof rng->seed);
    hash_put(&h, counter, sizeof counter);
    hash_finish(&h, out);
    rng->counter++;
}

static void random_bytes(ehr_pre__rng *rng, uint8_t *out, size_t len)
{
    if (rng == NULL)
        randombytes_buf(out, len);
    else
        rng_block(rng, out, len);
}

/* A uniformly random non-zero scalar. */
static void random_scalar(ehr_pre__rng *rng, uint8_t out[S])
{
    if (rng == NULL) {
        crypto_core_ristretto255_scalar_random(out); /* never zero */
        return;
    }
    do {
        uint8_t wide[WIDE];
        rng_block(rng, wide, sizeof wide);
        crypto_core_ristretto255_scalar_reduce(out, wide);
        sodium_memzero(wide, sizeof wide);
    } while (sodium_is_zero(out, S));
}

/*
 * A hedged nonce: H(TAG_NONCE, secret, 32 fresh random bytes, context), non-zero.
 * A repeated or predictable random source then still gives distinct nonces
 * for distinct (secret, context), so it cannot leak SECRET through reuse.
 */
static void nonce_derive(uint8_t out[S], const uint8_t secret[S], const uint8_t *context,
                         size_t context_len, ehr_pre__rng *rng)
{
    do {
        uint8_t fresh[32];
        random_bytes(rng, fresh, sizeof fresh);
        hash h;
        hash_begin(&h, TAG_NONCE, WIDE);
        hash_put(&h, secret, S);
        hash_put(&h, fresh, sizeof fresh);
        hash_put(&h, context, context_len);
        hash_finish_scalar(&h, out);
        sodium_memzero(fresh, sizeof fresh);
    } while (sodium_is_zero(out, S));
}

/* ---- Group and scalar helpers. ---- */

/* Q = N * P. False only when P is not a valid encoding (Q is then the identity). */
__attribute__((warn_unused_result)) static bool point_mul(uint8_t q[P], const uint8_t n[S],
                                                          const uint8_t p[P])
{
    if (crypto_scalarmult_ristretto255(q, n, p) == 0)
        return true;
    sodium_memzero(q, P); /* the identity's encoding, or a copy of N to wipe */
    return crypto_core_ristretto255_is_valid_point(p) == 1;
}

static void point_mul_base(uint8_t q[P], const uint8_t n[S])
{
    if (crypto_scalarmult_ristretto255_base(q, n) != 0)
        sodium_memzero(q, P);
}

/* R = P + Q. False when P or Q is not a valid encoding (R is then zero). */
__attribute__((warn_unused_result)) static bool point_add(uint8_t r[P], const uint8_t p[P],
                                                          const uint8_t q[P])
{
    if (crypto_core_ristretto255_add(r, p, q) == 0)
        return true;
    sodium_memzero(r, P);
    return false;
}

/* R = P - Q, as point_add. */
__attribute__((warn_unused_result)) static bool point_sub(uint8_t r[P], const uint8_t p[P],
                                                          const uint8_t q[P])
{
    if (crypto_core_ristretto255_sub(r, p, q) == 0)
        return true;
    sodium_memzero(r, P);
    return false;
}

/* A canonical encoding of a point other than the identity. */
static bool point_valid(const uint8_t p[P])
{
    return crypto_core_ristretto255_is_valid_point(p) == 1 && !sodium_is_zero(p, P);
}

/* Below L: reducing it changes nothing. Constant time. */
static bool scalar_canonical(const uint8_t s[S])
{
    uint8_t wide[WIDE] = {0}, reduced[S];
    memcpy(wide, s, S);
    crypto_core_ristretto255_scalar_reduce(reduced, wide);
    bool same = sodium_memcmp(reduced, s, S) == 0;
    sodium_memzero(wide, sizeof wide);
    sodium_memzero(reduced, sizeof reduced);
    return same;
}

/* ---- The scheme's hashes (PRE.md, "Hashes"). ---- */

/* h = H_capsule(E, V), the capsule's challenge. */
static void capsule_challenge(uint8_t out[S], const uint8_t e[P], const uint8_t v[P])
{
    hash h;
    hash_begin(&h, TAG_CAPSULE, WIDE);
    hash_put(&h, e, P);
    hash_put(&h, v, P);
    hash_finish_scalar(&h, out);
}

/* The symmetric key: BLAKE2b-256(TAG_KEY, delegating key, capsule, shared point). */
static void key_derive(uint8_t key[EHR_PRE_KEY_BYTES], const uint8_t delegating_key[P],
                       const ehr_pre_capsule *capsule, const uint8_t shared[P])
{
    hash h;
    hash_begin(&h, TAG_KEY, EHR_PRE_KEY_BYTES);
    hash_put(&h, delegating_key, P);
    hash_put(&h, capsule, sizeof *capsule);
    hash_put(&h, shared, P);
    hash_finish(&h, key);
}

/* d = H_dh(X, receiving key, X^b = pk_B^x): the factor only the grantee can recompute. */
static void dh_factor(uint8_t out[S], const uint8_t precursor[P], const uint8_t receiving_key[P],
                      const uint8_t dh[P])
{
    hash h;
    hash_begin(&h, TAG_DH_FACTOR, WIDE);
    hash_put(&h, precursor, P);
    hash_put(&h, receiving_key, P);
    hash_put(&h, dh, P);
    hash_finish_scalar(&h, out);
}

/* D = BLAKE2b-256(TAG_SHARE_SECRET, pk_A, pk_B, pk_B^a = pk_A^b): hides share indices from proxies.
 */
static void share_secret(uint8_t out[32], const uint8_t delegating_key[P],
                         const uint8_t receiving_key[P], const uint8_t dh[P])
{
    hash h;
    hash_begin(&h, TAG_SHARE_SECRET, 32);
    hash_put(&h, delegating_key, P);
    hash_put(&h, receiving_key, P);
    hash_put(&h, dh, P);
    hash_finish(&h, out);
}

/* x_i = H_index(D, id): the Shamir abscissa of one kfrag. */
static void share_index(uint8_t out[S], const uint8_t secret[32], const uint8_t id[32])
{
    hash h;
    hash_begin(&h, TAG_SHARE_INDEX, WIDE);
    hash_put(&h, secret, 32);
    hash_put(&h, id, EHR_PRE_KFRAG_ID_BYTES);
    hash_finish_scalar(&h, out);
}

/* The kfrag signature's challenge over R and what the delegator vouches for. */
static void kfrag_challenge(uint8_t out[S], const uint8_t r[P], const uint8_t delegating_key[P],
                            const uint8_t receiving_key[P], const uint8_t id[32],
                            const uint8_t precursor[P], const uint8_t commitment[P])
{
    hash h;
    hash_begin(&h, TAG_KFRAG_SIGNATURE, WIDE);
    hash_put(&h, r, P);
    hash_put(&h, delegating_key, P);
    hash_put(&h, receiving_key, P);
    hash_put(&h, id, EHR_PRE_KFRAG_ID_BYTES);
    hash_put(&h, precursor, P);
    hash_put(&h, commitment, P);
    hash_finish_scalar(&h, out);
}

/* The commitments of the Chaum-Pedersen proof: E2 = E^t, V2 = V^t, U2 = U^t. */
typedef struct proof_commitments {
    uint8_t e2[P];
    uint8_t v2[P];
    uint8_t u2[P];
} proof_commitments;

/* The proof's challenge: the capsule, the cfrag's points, the commitments and the kfrag's identity.
 */
static void proof_challenge(uint8_t out[S], const ehr_pre_capsule *capsule,
                            const ehr_pre_cfrag *cfrag, const proof_commitments *t,
                            const uint8_t delegating_key[P], const uint8_t receiving_key[P])
{
    hash h;
    hash_begin(&h, TAG_CFRAG_PROOF, WIDE);
    hash_put(&h, capsule, sizeof *capsule);
    hash_put(&h, cfrag->e1, P);
    hash_put(&h, cfrag->v1, P);
    hash_put(&h, cfrag->commitment, P);
    hash_put(&h, t->e2, P);
    hash_put(&h, t->v2, P);
    hash_put(&h, t->u2, P);
    hash_put(&h, delegating_key, P);
    hash_put(&h, receiving_key, P);
    hash_put(&h, cfrag->id, EHR_PRE_KFRAG_ID_BYTES);
    hash_put(&h, cfrag->precursor, P);
    hash_finish_scalar(&h, out);
}

/* ---- Keys. ---- */

int ehr_pre_public_key_check(const uint8_t public_key[EHR_PRE_PUBLIC_BYTES])
{
    return point_valid(public_key) ? 0 : EHR_EINVAL;
}

int ehr_pre_key_from_secret(ehr_pre_key *key, const uint8_t secret[EHR_PRE_SECRET_BYTES])
{
    if (sodium_is_zero(secret, S) || !scalar_canonical(secret)) {
        ehr_pre_key_wipe(key);
        return EHR_EINVAL;
    }
    memmove(key->secret, secret, S);
    point_mul_base(key->public_key, key->secret);
    EHR_ASSERT(point_valid(key->public_key)); /* a non-zero scalar below L */
    return 0;
}

int ehr_pre_key_generate(ehr_pre_key *key)
{
    uint8_t secret[S];
    crypto_core_ristretto255_scalar_random(secret);
    int rc = ehr_pre_key_from_secret(key, secret);
    sodium_memzero(secret, sizeof secret);
    EHR_ASSERT(rc == 0); /* libsodium's random scalars are canonical and non-zero */
    return 0;
}

int ehr_pre_delegating_key_derive(ehr_pre_key *key, const uint8_t root[EHR_PRE_ROOT_BYTES],
                                  uint32_t record_type)
{
    EHR_ASSERT(record_type != 0);
    static const char tag[] = EHR_PRE_TAG_DELEGATING;
    uint8_t type_be[4] = {(uint8_t)(record_type >> 24), (uint8_t)(record_type >> 16),
                          (uint8_t)(record_type >> 8), (uint8_t)record_type};
    uint8_t wide[64], secret[S];
    crypto_generichash_state st;
    crypto_generichash_init(&st, root, EHR_PRE_ROOT_BYTES, sizeof wide);
    crypto_generichash_update(&st, (const uint8_t *)tag, sizeof tag); /* with its NUL */
    crypto_generichash_update(&st, type_be, sizeof type_be);
    crypto_generichash_final(&st, wide, sizeof wide);
    crypto_core_ristretto255_scalar_reduce(secret, wide);
    int rc = ehr_pre_key_from_secret(key, secret); /* zero: probability 2^-252 */
    sodium_memzero(&st, sizeof st);
    sodium_memzero(wide, sizeof wide);
    sodium_memzero(secret, sizeof secret);
    return rc;
}

void ehr_pre_key_wipe(ehr_pre_key *key)
{
    sodium_memzero(key, sizeof *key);
}

/* ---- Encapsulation. ---- */

int ehr_pre__encapsulate_rng(const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                             ehr_pre_capsule *capsule, uint8_t key[EHR_PRE_KEY_BYTES],
                             ehr_pre__rng *rng)
{
    if (ehr_pre_public_key_check(delegating_key) != 0) {
        sodium_memzero(capsule, sizeof *capsule);
        sodium_memzero(key, EHR_PRE_KEY_BYTES);
        return EHR_EINVAL;
    }
    struct {
        uint8_t r[S], u[S], h[S], rh[S], ru[S], shared[P];
    } w;
    random_scalar(rng, w.r);
    random_scalar(rng, w.u);
    point_mul_base(capsule->e, w.r);
    point_mul_base(capsule->v, w.u);
    capsule_challenge(w.h, capsule->e, capsule->v);
    crypto_core_ristretto255_scalar_mul(w.rh, w.r, w.h);
    crypto_core_ristretto255_scalar_add(capsule->s, w.u, w.rh);
    crypto_core_ristretto255_scalar_add(w.ru, w.r, w.u);
    bool ok = point_mul(w.shared, w.ru, delegating_key); /* pk_A^(r+u) = (E V)^a */
    EHR_ASSERT(ok);                                      /* the key was checked above */
    key_derive(key, delegating_key, capsule, w.shared);
    sodium_memzero(&w, sizeof w);
    return 0;
}

int ehr_pre_encapsulate(const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                        ehr_pre_capsule *capsule, uint8_t key[EHR_PRE_KEY_BYTES])
{
    return ehr_pre__encapsulate_rng(delegating_key, capsule, key, NULL);
}

int ehr_pre_decapsulate(const ehr_pre_key *delegating, const ehr_pre_capsule *capsule,
                        uint8_t key[EHR_PRE_KEY_BYTES])
{
    struct {
        uint8_t ev[P], shared[P];
    } w;
    bool ok = point_add(w.ev, capsule->e, capsule->v);
    ok = ok && point_mul(w.shared, delegating->secret, w.ev);
    if (ok)
        key_derive(key, delegating->public_key, capsule, w.shared);
    else
        sodium_memzero(key, EHR_PRE_KEY_BYTES);
    sodium_memzero(&w, sizeof w);
    return ok ? 0 : EHR_EINVAL;
}

/* ---- Key fragments. ---- */

static void kfrag_sign(ehr_pre_kfrag *kfrag, const ehr_pre_key *delegating, ehr_pre__rng *rng)
{
    struct {
        uint8_t nonce[S], c[S], ca[S];
    } w;
    nonce_derive(w.nonce, delegating->secret, kfrag->id, sizeof kfrag->id, rng);
    point_mul_base(kfrag->signature_r, w.nonce);
    kfrag_challenge(w.c, kfrag->signature_r, kfrag->delegating_key, kfrag->receiving_key, kfrag->id,
                    kfrag->precursor, kfrag->commitment);
    crypto_core_ristretto255_scalar_mul(w.ca, w.c, delegating->secret);
    crypto_core_ristretto255_scalar_add(kfrag->signature_z, w.nonce, w.ca);
    sodium_memzero(&w, sizeof w);
}

/* g^z == R + c * pk_A, for the fields the delegator signed. Public data only. */
static int kfrag_signature_check(const uint8_t r[P], const uint8_t z[S],
                                 const uint8_t delegating_key[P], const uint8_t receiving_key[P],
                                 const uint8_t id[32], const uint8_t precursor[P],
                                 const uint8_t commitment[P])
{
    uint8_t c[S], left[P], c_pk[P], right[P];
    kfrag_challenge(c, r, delegating_key, receiving_key, id, precursor, commitment);
    point_mul_base(left, z);
    bool ok = point_mul(c_pk, c, delegating_key);
    ok = ok && point_add(right, r, c_pk);
    return ok && memcmp(left, right, P) == 0 ? 0 : EHR_EBADSIG;
}

int ehr_pre__kfrags_generate_rng(const ehr_pre_key *delegating,
                                 const uint8_t receiving_key[EHR_PRE_PUBLIC_BYTES],
                                 size_t threshold, size_t count, ehr_pre_kfrag *kfrags,
                                 ehr_diag *diag, ehr_pre__rng *rng)
{
    if (count > EHR_PRE_KFRAGS_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "%zu kfrags asked for, at most %d", count,
                             EHR_PRE_KFRAGS_MAX);
    if (threshold == 0 || threshold > count)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "threshold %zu of %zu kfrags: need 1 <= threshold <= count", threshold,
                             count);
    if (ehr_pre_public_key_check(receiving_key) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "receiving key is not a ristretto255 point other than the identity");
    if (memcmp(receiving_key, delegating->public_key, P) == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "receiving key is the delegating key itself");

    struct {
        uint8_t x[S], dh[P], d[S], d_inverse[S];
        uint8_t coefficient[EHR_PRE_KFRAGS_MAX][S]; /* f(X) = sum coefficient[j] X^j */
        uint8_t shared[P], secret[32], index[S], product[S];
    } w;
    uint8_t precursor[P];
    random_scalar(rng, w.x);
    point_mul_base(precursor, w.x);
    bool ok = point_mul(w.dh, w.x, receiving_key);
    dh_factor(w.d, precursor, receiving_key, w.dh);
    int rc = crypto_core_ristretto255_scalar_invert(w.d_inverse, w.d);
    EHR_ASSERT(rc == 0); /* d is zero with probability 2^-252 */
    /* f(0) = a / d: the grantee multiplies by d again at the end. */
    crypto_core_ristretto255_scalar_mul(w.coefficient[0], delegating->secret, w.d_inverse);
    for (size_t j = 1; j < threshold; j++)
        random_scalar(rng, w.coefficient[j]);
    ok = ok && point_mul(w.shared, delegating->secret, receiving_key);
    share_secret(w.secret, delegating->public_key, receiving_key, w.shared);

    for (size_t i = 0; i < count; i++) {
        ehr_pre_kfrag *k = &kfrags[i];
        do { /* an abscissa of zero would hand this proxy f(0) */
            random_bytes(rng, k->id, sizeof k->id);
            share_index(w.index, w.secret, k->id);
        } while (sodium_is_zero(w.index, S));
        /* Horner: share = (...(c[t-1] x + c[t-2]) x + ...) x + c[0] */
        memcpy(k->share, w.coefficient[threshold - 1], S);
        for (size_t j = threshold - 1; j > 0; j--) {
            crypto_core_ristretto255_scalar_mul(w.product, k->share, w.index);
            crypto_core_ristretto255_scalar_add(k->share, w.product, w.coefficient[j - 1]);
        }
        ok = ok && point_mul(k->commitment, k->share, GENERATOR_U);
        memcpy(k->precursor, precursor, P);
        memcpy(k->delegating_key, delegating->public_key, P);
        memcpy(k->receiving_key, receiving_key, P);
        kfrag_sign(k, delegating, rng);
    }
    sodium_memzero(&w, sizeof w);
    EHR_ASSERT(ok); /* the receiving key was checked above; U is a constant */
    return 0;
}

int ehr_pre_kfrags_generate(const ehr_pre_key *delegating,
                            const uint8_t receiving_key[EHR_PRE_PUBLIC_BYTES], size_t threshold,
                            size_t count, ehr_pre_kfrag *kfrags, ehr_diag *diag)
{
    return ehr_pre__kfrags_generate_rng(delegating, receiving_key, threshold, count, kfrags, diag,
                                        NULL);
}

int ehr_pre_kfrag_verify(const ehr_pre_kfrag *kfrag,
                         const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                         const uint8_t receiving_key[EHR_PRE_PUBLIC_BYTES])
{
    if (memcmp(kfrag->delegating_key, delegating_key, P) != 0)
        return EHR_EBADSIG;
    if (memcmp(kfrag->receiving_key, receiving_key, P) != 0)
        return EHR_EBADSIG;
    return kfrag_signature_check(kfrag->signature_r, kfrag->signature_z, delegating_key,
                                 receiving_key, kfrag->id, kfrag->precursor, kfrag->commitment);
}

void ehr_pre_kfrag_wipe(ehr_pre_kfrag *kfrag)
{
    sodium_memzero(kfrag, sizeof *kfrag);
}

/* ---- Re-encapsulation and its proof. ---- */

int ehr_pre__reencapsulate_rng(const ehr_pre_kfrag *kfrag, const ehr_pre_capsule *capsule,
                               ehr_pre_cfrag *cfrag, ehr_pre__rng *rng)
{
    struct {
        uint8_t t[S], c_share[S];
        proof_commitments commitments;
    } w;
    bool ok = point_mul(cfrag->e1, kfrag->share, capsule->e);
    ok = ok && point_mul(cfrag->v1, kfrag->share, capsule->v);
    memcpy(cfrag->id, kfrag->id, sizeof cfrag->id);
    memcpy(cfrag->precursor, kfrag->precursor, P);
    memcpy(cfrag->commitment, kfrag->commitment, P);
    memcpy(cfrag->signature_r, kfrag->signature_r, P);
    memcpy(cfrag->signature_z, kfrag->signature_z, S);

    nonce_derive(w.t, kfrag->share, (const uint8_t *)capsule, sizeof *capsule, rng);
    ok = ok && point_mul(w.commitments.e2, w.t, capsule->e);
    ok = ok && point_mul(w.commitments.v2, w.t, capsule->v);
    ok = ok && point_mul(w.commitments.u2, w.t, GENERATOR_U);
    proof_challenge(cfrag->proof_c, capsule, cfrag, &w.commitments, kfrag->delegating_key,
                    kfrag->receiving_key);
    crypto_core_ristretto255_scalar_mul(w.c_share, cfrag->proof_c, kfrag->share);
    crypto_core_ristretto255_scalar_add(cfrag->proof_z, w.t, w.c_share);
    sodium_memzero(&w, sizeof w);
    if (!ok) {
        sodium_memzero(cfrag, sizeof *cfrag);
        return EHR_EINVAL;
    }
    return 0;
}

int ehr_pre_reencapsulate(const ehr_pre_kfrag *kfrag, const ehr_pre_capsule *capsule,
                          ehr_pre_cfrag *cfrag)
{
    return ehr_pre__reencapsulate_rng(kfrag, capsule, cfrag, NULL);
}

/* base^z - point^c: a commitment recomputed from the proof. */
__attribute__((warn_unused_result)) static bool
commitment_recompute(uint8_t out[P], const uint8_t base[P], const uint8_t z[S],
                     const uint8_t point[P], const uint8_t c[S])
{
    uint8_t bz[P], pc[P];
    bool ok = point_mul(bz, z, base);
    ok = ok && point_mul(pc, c, point);
    return ok && point_sub(out, bz, pc);
}

int ehr_pre_cfrag_verify(const ehr_pre_cfrag *cfrag, const ehr_pre_capsule *capsule,
                         const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                         const uint8_t receiving_key[EHR_PRE_PUBLIC_BYTES])
{
    int rc = kfrag_signature_check(cfrag->signature_r, cfrag->signature_z, delegating_key,
                                   receiving_key, cfrag->id, cfrag->precursor, cfrag->commitment);
    if (rc != 0)
        return rc;
    proof_commitments t;
    bool ok = commitment_recompute(t.e2, capsule->e, cfrag->proof_z, cfrag->e1, cfrag->proof_c);
    ok = ok && commitment_recompute(t.v2, capsule->v, cfrag->proof_z, cfrag->v1, cfrag->proof_c);
    ok = ok &&
         commitment_recompute(t.u2, GENERATOR_U, cfrag->proof_z, cfrag->commitment, cfrag->proof_c);
    if (!ok)
        return EHR_EBADSIG;
    uint8_t c[S];
    proof_challenge(c, capsule, cfrag, &t, delegating_key, receiving_key);
    return memcmp(c, cfrag->proof_c, S) == 0 ? 0 : EHR_EBADSIG;
}

/* ---- Decapsulation by the grantee. ---- */

static int cfrags_check(const ehr_pre_capsule *capsule, const ehr_pre_cfrag *cfrags, size_t count,
                        const uint8_t delegating_key[P], const uint8_t receiving_key[P],
                        ehr_diag *diag)
{
    for (size_t i = 0; i < count; i++) {
        if (memcmp(cfrags[i].precursor, cfrags[0].precursor, P) != 0)
            return ehr_diag_fail(diag, EHR_EINVAL,
                                 "cfrag %zu is of another grant than cfrag 0 (precursors differ)",
                                 i);
        for (size_t j = 0; j < i; j++)
            if (memcmp(cfrags[i].id, cfrags[j].id, EHR_PRE_KFRAG_ID_BYTES) == 0)
                return ehr_diag_fail(diag, EHR_EEXIST,
                                     "cfrags %zu and %zu come from the same kfrag", j, i);
        if (ehr_pre_cfrag_verify(&cfrags[i], capsule, delegating_key, receiving_key) != 0)
            return ehr_diag_fail(diag, EHR_EBADSIG,
                                 "cfrag %zu does not verify: not from a kfrag of this delegator "
                                 "for this grantee, or not computed from this capsule",
                                 i);
    }
    return 0;
}

int ehr_pre_decapsulate_cfrags(const ehr_pre_key *receiving,
                               const uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES],
                               const ehr_pre_capsule *capsule, const ehr_pre_cfrag *cfrags,
                               size_t count, uint8_t key[EHR_PRE_KEY_BYTES], ehr_diag *diag)
{
    sodium_memzero(key, EHR_PRE_KEY_BYTES);
    if (count > EHR_PRE_KFRAGS_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "%zu cfrags, at most %d", count,
                             EHR_PRE_KFRAGS_MAX);
    if (count == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "no cfrags");
    if (ehr_pre_public_key_check(delegating_key) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "delegating key is not a ristretto255 point other than the identity");
    int rc = cfrags_check(capsule, cfrags, count, delegating_key, receiving->public_key, diag);
    if (rc != 0)
        return rc;

    struct {
        uint8_t shared[P], secret[32], index[EHR_PRE_KFRAGS_MAX][S];
        uint8_t numerator[S], denominator[S], difference[S], product[S], inverse[S], lambda[S];
        uint8_t term[P], e_sum[P], v_sum[P], next[P];
        uint8_t dh[P], d[S], d_inverse[S], sd[S], h[S], left[P], h_e[P], right[P];
        uint8_t ev[P], opened[P];
    } w;
    static const uint8_t one[S] = {1};
    bool ok = point_mul(w.shared, receiving->secret, delegating_key); /* pk_A^b = pk_B^a */
    share_secret(w.secret, delegating_key, receiving->public_key, w.shared);
    for (size_t i = 0; i < count; i++)
        share_index(w.index[i], w.secret, cfrags[i].id);

    /* E' = sum lambda_i E1_i, V' = sum lambda_i V1_i, lambda_i = prod_{j!=i} x_j / (x_j - x_i) */
    memset(w.e_sum, 0, P); /* the identity */
    memset(w.v_sum, 0, P);
    rc = 0;
    for (size_t i = 0; i < count; i++) {
        memcpy(w.numerator, one, S);
        memcpy(w.denominator, one, S);
        for (size_t j = 0; j < count; j++) {
            if (j == i)
                continue;
            crypto_core_ristretto255_scalar_mul(w.product, w.numerator, w.index[j]);
            memcpy(w.numerator, w.product, S);
            crypto_core_ristretto255_scalar_sub(w.difference, w.index[j], w.index[i]);
            crypto_core_ristretto255_scalar_mul(w.product, w.denominator, w.difference);
            memcpy(w.denominator, w.product, S);
        }
        if (crypto_core_ristretto255_scalar_invert(w.inverse, w.denominator) != 0)
            rc = EHR_EINVAL; /* two abscissas equal: only for ids that collide under the hash */
        crypto_core_ristretto255_scalar_mul(w.lambda, w.numerator, w.inverse);
        ok = ok && point_mul(w.term, w.lambda, cfrags[i].e1);
        ok = ok && point_add(w.next, w.e_sum, w.term);
        memcpy(w.e_sum, w.next, P);
        ok = ok && point_mul(w.term, w.lambda, cfrags[i].v1);
        ok = ok && point_add(w.next, w.v_sum, w.term);
        memcpy(w.v_sum, w.next, P);
    }

    /* d from the precursor, then check (V' E'^h)^d == pk_A^s before using the result:
     * V' E'^h = (V E^h)^(f'(0)) = g^(s f'(0)), which is pk_A^(s/d) only if f'(0) = a/d. */
    ok = ok && point_mul(w.dh, receiving->secret, cfrags[0].precursor); /* only hashed so far */
    dh_factor(w.d, cfrags[0].precursor, receiving->public_key, w.dh);
    if (crypto_core_ristretto255_scalar_invert(w.d_inverse, w.d) != 0)
        rc = EHR_EINVAL; /* probability 2^-252 */
    crypto_core_ristretto255_scalar_mul(w.sd, capsule->s, w.d_inverse);
    ok = ok && point_mul(w.left, w.sd, delegating_key);
    capsule_challenge(w.h, capsule->e, capsule->v);
    ok = ok && point_mul(w.h_e, w.h, w.e_sum);
    ok = ok && point_add(w.right, w.v_sum, w.h_e);
    if (!ok)
        rc = EHR_EINVAL;
    if (rc == 0 && sodium_memcmp(w.left, w.right, P) != 0)
        rc = EHR_EINVAL;
    if (rc == 0) {
        ok = point_add(w.ev, w.e_sum, w.v_sum);
        ok = ok && point_mul(w.opened, w.d, w.ev); /* (E' V')^d = (E V)^a */
        EHR_ASSERT(ok);                            /* sums of points checked above */
        key_derive(key, delegating_key, capsule, w.opened);
    }
    sodium_memzero(&w, sizeof w);
    if (rc != 0)
        return ehr_diag_fail(diag, rc,
                             "%zu verified cfrags do not open this capsule: fewer than the "
                             "grant's threshold",
                             count);
    return 0;
}

/* ---- Encodings. ---- */

enum field_kind { FIELD_BYTES, FIELD_POINT, FIELD_SCALAR, FIELD_SCALAR_NONZERO };

struct field {
    size_t offset;
    enum field_kind kind;
    const char *name;
};

static const struct field capsule_fields[] = {
    {offsetof(ehr_pre_capsule, e), FIELD_POINT, "E"},
    {offsetof(ehr_pre_capsule, v), FIELD_POINT, "V"},
    {offsetof(ehr_pre_capsule, s), FIELD_SCALAR_NONZERO, "s"},
};

static const struct field kfrag_fields[] = {
    {offsetof(ehr_pre_kfrag, id), FIELD_BYTES, "id"},
    {offsetof(ehr_pre_kfrag, share), FIELD_SCALAR_NONZERO, "share"},
    {offsetof(ehr_pre_kfrag, precursor), FIELD_POINT, "precursor"},
    {offsetof(ehr_pre_kfrag, commitment), FIELD_POINT, "commitment"},
    {offsetof(ehr_pre_kfrag, delegating_key), FIELD_POINT, "delegating key"},
    {offsetof(ehr_pre_kfrag, receiving_key), FIELD_POINT, "receiving key"},
    {offsetof(ehr_pre_kfrag, signature_r), FIELD_POINT, "signature R"},
    {offsetof(ehr_pre_kfrag, signature_z), FIELD_SCALAR, "signature z"},
};

static const struct field cfrag_fields[] = {
    {offsetof(ehr_pre_cfrag, e1), FIELD_POINT, "E1"},
    {offsetof(ehr_pre_cfrag, v1), FIELD_POINT, "V1"},
    {offsetof(ehr_pre_cfrag, id), FIELD_BYTES, "id"},
    {offsetof(ehr_pre_cfrag, precursor), FIELD_POINT, "precursor"},
    {offsetof(ehr_pre_cfrag, commitment), FIELD_POINT, "commitment"},
    {offsetof(ehr_pre_cfrag, signature_r), FIELD_POINT, "signature R"},
    {offsetof(ehr_pre_cfrag, signature_z), FIELD_SCALAR, "signature z"},
    {offsetof(ehr_pre_cfrag, proof_c), FIELD_SCALAR, "proof c"},
    {offsetof(ehr_pre_cfrag, proof_z), FIELD_SCALAR, "proof z"},
};

/*
 * Check LEN bytes at DATA against FIELDS and copy them into OUT (SIZE bytes,
 * the encoding's size). Returns 0, or an error with OUT zeroed.
 */
static int fields_decode(void *out, size_t size, const struct field *fields, size_t field_count,
                         const char *what, const uint8_t *data, size_t len, ehr_diag *diag)
{
    sodium_memzero(out, size);
    if (len < size)
        return ehr_diag_fail(diag, EHR_ETRUNCATED, "%s: %zu bytes, the encoding is %zu", what, len,
                             size);
    if (len > size)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: %zu bytes, the encoding is %zu", what, len,
                             size);
    for (size_t i = 0; i < field_count; i++) {
        const uint8_t *p = data + fields[i].offset;
        size_t first = fields[i].offset, last = fields[i].offset + 31;
        switch (fields[i].kind) {
        case FIELD_BYTES:
            break;
        case FIELD_POINT:
            if (!point_valid(p))
                return ehr_diag_fail(diag, EHR_EINVAL,
                                     "%s: %s (bytes %zu..%zu) is not a canonical ristretto255 "
                                     "point other than the identity",
                                     what, fields[i].name, first, last);
            break;
        case FIELD_SCALAR_NONZERO:
        case FIELD_SCALAR:
            if (fields[i].kind == FIELD_SCALAR_NONZERO && sodium_is_zero(p, S))
                return ehr_diag_fail(diag, EHR_EINVAL, "%s: %s (bytes %zu..%zu) is zero", what,
                                     fields[i].name, first, last);
            if (!scalar_canonical(p))
                return ehr_diag_fail(diag, EHR_EINVAL,
                                     "%s: %s (bytes %zu..%zu) is not a canonical scalar (below "
                                     "the group order)",
                                     what, fields[i].name, first, last);
            break;
        }
    }
    memcpy(out, data, size);
    return 0;
}

void ehr_pre_capsule_encode(const ehr_pre_capsule *capsule, uint8_t out[EHR_PRE_CAPSULE_BYTES])
{
    memcpy(out, capsule, EHR_PRE_CAPSULE_BYTES);
}

int ehr_pre_capsule_decode(ehr_pre_capsule *capsule, const uint8_t *data, size_t len,
                           ehr_diag *diag)
{
    int rc = fields_decode(capsule, sizeof *capsule, capsule_fields,
                           EHR_ARRAY_COUNT(capsule_fields), "capsule", data, len, diag);
    if (rc != 0)
        return rc;
    uint8_t h[S], left[P], h_e[P], right[P];
    capsule_challenge(h, capsule->e, capsule->v);
    point_mul_base(left, capsule->s);
    bool ok = point_mul(h_e, h, capsule->e);
    ok = ok && point_add(right, capsule->v, h_e);
    EHR_ASSERT(ok); /* E and V were checked above */
    if (memcmp(left, right, P) != 0) {
        sodium_memzero(capsule, sizeof *capsule);
        return ehr_diag_fail(diag, EHR_EBADSIG,
                             "capsule: g^s differs from V * E^h (not made by encapsulation)");
    }
    return 0;
}

void ehr_pre_kfrag_encode(const ehr_pre_kfrag *kfrag, uint8_t out[EHR_PRE_KFRAG_BYTES])
{
    memcpy(out, kfrag, EHR_PRE_KFRAG_BYTES);
}

int ehr_pre_kfrag_decode(ehr_pre_kfrag *kfrag, const uint8_t *data, size_t len, ehr_diag *diag)
{
    int rc = fields_decode(kfrag, sizeof *kfrag, kfrag_fields, EHR_ARRAY_COUNT(kfrag_fields),
                           "kfrag", data, len, diag);
    if (rc != 0)
        return rc;
    uint8_t expect[P];
    bool ok = point_mul(expect, kfrag->share, GENERATOR_U);
    EHR_ASSERT(ok); /* U is a constant */
    bool same = sodium_memcmp(expect, kfrag->commitment, P) == 0;
    sodium_memzero(expect, sizeof expect);
    if (!same) {
        ehr_pre_kfrag_wipe(kfrag);
        return ehr_diag_fail(diag, EHR_EBADSIG,
                             "kfrag: the commitment is not U^share (share or commitment altered)");
    }
    return 0;
}

void ehr_pre_cfrag_encode(const ehr_pre_cfrag *cfrag, uint8_t out[EHR_PRE_CFRAG_BYTES])
{
    memcpy(out, cfrag, EHR_PRE_CFRAG_BYTES);
}

int ehr_pre_cfrag_decode(ehr_pre_cfrag *cfrag, const uint8_t *data, size_t len, ehr_diag *diag)
{
    return fields_decode(cfrag, sizeof *cfrag, cfrag_fields, EHR_ARRAY_COUNT(cfrag_fields), "cfrag",
                         data, len, diag);
}
