/*
 * read_auth.c - the signed message of a patient-scoped read (read_auth.h,
 * node.proto "Signed reads"): its digest, signing it, checking it.
 */
#include <inttypes.h>
#include <string.h>

#include <sodium.h>

#include "ledger_format.h"
#include "read_auth.h"

_Static_assert(EHR_CHAIN_ID_BYTES_MAX <= 255, "the chain id's length is one byte");

void node_read_auth_request_hash(ProtobufCMessage *request, Ehr__V1__ReadAuth **auth_field,
                                 uint8_t out[EHR_HASH_BYTES])
{
    Ehr__V1__ReadAuth *saved = *auth_field;
    *auth_field = NULL;
    size_t len = protobuf_c_message_get_packed_size(request);
    uint8_t *buf = ehr_malloc(len ? len : 1);
    size_t packed = protobuf_c_message_pack(request, buf);
    EHR_ASSERT(packed == len);
    *auth_field = saved;
    ehr_sha256(out, buf, len);
    ehr_free(buf);
}

static void put_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

void node_read_auth_digest(const char *chain_id, const char *method,
                           const uint8_t request_hash[EHR_HASH_BYTES],
                           const uint8_t requester[EHR_SCHNORR_PUBLIC_BYTES],
                           uint64_t not_before_ms, uint64_t not_after_ms,
                           uint8_t out[EHR_HASH_BYTES])
{
    size_t chain_len = strlen(chain_id), method_len = strlen(method);
    EHR_ASSERT(chain_len <= EHR_CHAIN_ID_BYTES_MAX);
    EHR_ASSERT(method_len <= NODE_READ_AUTH_METHOD_BYTES_MAX);
    uint8_t chain_len_byte = (uint8_t)chain_len, method_len_byte = (uint8_t)method_len;
    uint8_t window[16];
    put_be64(window, not_before_ms);
    put_be64(window + 8, not_after_ms);
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    /* The tag with its terminating 0 byte: node.proto's 12 bytes. */
    crypto_hash_sha256_update(&h, (const uint8_t *)NODE_READ_AUTH_TAG, NODE_READ_AUTH_TAG_BYTES);
    crypto_hash_sha256_update(&h, &chain_len_byte, 1);
    crypto_hash_sha256_update(&h, (const uint8_t *)chain_id, chain_len);
    crypto_hash_sha256_update(&h, &method_len_byte, 1);
    crypto_hash_sha256_update(&h, (const uint8_t *)method, method_len);
    crypto_hash_sha256_update(&h, request_hash, EHR_HASH_BYTES);
    crypto_hash_sha256_update(&h, requester, EHR_SCHNORR_PUBLIC_BYTES);
    crypto_hash_sha256_update(&h, window, sizeof window);
    crypto_hash_sha256_final(&h, out);
}

int node_read_auth_sign(struct node_read_auth_signed *out, ProtobufCMessage *request,
                        Ehr__V1__ReadAuth **auth_field, const char *chain_id, const char *method,
                        const ehr_signing_key *key, uint64_t not_before_ms, uint64_t not_after_ms)
{
    uint8_t request_hash[EHR_HASH_BYTES], digest[EHR_HASH_BYTES];
    node_read_auth_request_hash(request, auth_field, request_hash);
    node_read_auth_digest(chain_id, method, request_hash, key->public_key, not_before_ms,
                          not_after_ms, digest);
    if (ehr_schnorr_sign(key, digest, out->signature) != 0)
        return EHR_EINVAL;
    memcpy(out->key, key->public_key, EHR_SCHNORR_PUBLIC_BYTES);
    ehr__v1__read_auth__init(&out->auth);
    out->auth.requester_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, out->key};
    out->auth.signature = (ProtobufCBinaryData){EHR_SCHNORR_SIG_BYTES, out->signature};
    out->auth.not_before_ms = not_before_ms;
    out->auth.not_after_ms = not_after_ms;
    *auth_field = &out->auth;
    return 0;
}

int node_read_auth_check(ProtobufCMessage *request, Ehr__V1__ReadAuth **auth_field,
                         const char *chain_id, const char *method, uint64_t now_ms, ehr_diag *diag)
{
    const Ehr__V1__ReadAuth *a = *auth_field;
    if (a == NULL)
        return ehr_diag_fail(diag, EHR_EBADSIG,
                             "this read must be signed by its requester (ReadAuth, node.proto "
                             "\"Signed reads\")");
    if (a->requester_key.len != EHR_SCHNORR_PUBLIC_BYTES)
        return ehr_diag_fail(diag, EHR_EINVAL, "auth.requester_key must be %d bytes (it is %zu)",
                             EHR_SCHNORR_PUBLIC_BYTES, a->requester_key.len);
    if (a->signature.len != EHR_SCHNORR_SIG_BYTES)
        return ehr_diag_fail(diag, EHR_EINVAL, "auth.signature must be %d bytes (it is %zu)",
                             EHR_SCHNORR_SIG_BYTES, a->signature.len);
    if (a->not_after_ms <= a->not_before_ms)
        return ehr_diag_fail(diag, EHR_EEXPIRED,
                             "the read's window is empty: not_after_ms %" PRIu64
                             " is not after not_before_ms %" PRIu64,
                             a->not_after_ms, a->not_before_ms);
    uint64_t window_ms = a->not_after_ms - a->not_before_ms;
    if (window_ms > NODE_READ_AUTH_WINDOW_MS_MAX)
        return ehr_diag_fail(diag, EHR_EEXPIRED,
                             "the read's window is %" PRIu64 " ms, over the limit of %u ms: "
                             "sign it for a shorter time",
                             window_ms, NODE_READ_AUTH_WINDOW_MS_MAX);
    /* Compared without overflow: both bounds are the client's numbers. */
    if (a->not_before_ms > now_ms && a->not_before_ms - now_ms > NODE_READ_AUTH_CLOCK_SKEW_MS)
        return ehr_diag_fail(diag, EHR_EEXPIRED,
                             "the read is not valid yet: it starts %" PRIu64
                             " ms after this node's clock (more than the %u ms of skew "
                             "allowed); check the client's clock",
                             a->not_before_ms - now_ms, NODE_READ_AUTH_CLOCK_SKEW_MS);
    if (now_ms > a->not_after_ms && now_ms - a->not_after_ms > NODE_READ_AUTH_CLOCK_SKEW_MS)
        return ehr_diag_fail(diag, EHR_EEXPIRED,
                             "the read expired %" PRIu64
                             " ms ago by this node's clock (%u ms of skew allowed): sign it "
                             "again",
                             now_ms - a->not_after_ms, NODE_READ_AUTH_CLOCK_SKEW_MS);
    uint8_t request_hash[EHR_HASH_BYTES], digest[EHR_HASH_BYTES];
    node_read_auth_request_hash(request, auth_field, request_hash);
    node_read_auth_digest(chain_id, method, request_hash, a->requester_key.data, a->not_before_ms,
                          a->not_after_ms, digest);
    if (ehr_schnorr_verify_bytes(a->requester_key.data, digest, a->signature.data) != 0)
        return ehr_diag_fail(diag, EHR_EBADSIG,
                             "the read's signature does not verify for this request, method, "
                             "chain and window by auth.requester_key");
    return 0;
}
