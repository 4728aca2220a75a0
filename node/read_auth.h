/*
 * read_auth.h - signed patient-scoped reads: the bytes a requester signs
 * for GetAuditTrail, ListRecords and ListConsents (node.proto, "Signed
 * reads"), made by ehrctl and the tests, checked by ehrd. One definition of
 * the message, so the signer and the checker cannot drift apart.
 *
 * Part of ehr_node_config (linked by ehrd and ehrctl). Not here: who may
 * read what (the node decides that against its world state, node/reads.c).
 */
#ifndef EHR_NODE_READ_AUTH_H
#define EHR_NODE_READ_AUTH_H

#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common.h"
#include "ehr/v1/node.pb-c.h"
#include "ehr_crypto.h"

/* The domain tag that opens the signed message: "ehr.v1.read" and a 0 byte,
 * so no other message this project signs can be mistaken for a read's. */
#define NODE_READ_AUTH_TAG "ehr.v1.read"
enum {
    NODE_READ_AUTH_TAG_BYTES = sizeof NODE_READ_AUTH_TAG, /* with its 0 byte */
    /* A full method name ("/ehr.v1.Node/GetAuditTrail"): its length is one byte. */
    NODE_READ_AUTH_METHOD_BYTES_MAX = 255,
};
_Static_assert(NODE_READ_AUTH_TAG_BYTES == 12, "node.proto documents a 12-byte tag");

/* not_after_ms - not_before_ms: at most 5 minutes, so a signed read that
 * leaks is good for little. */
#define NODE_READ_AUTH_WINDOW_MS_MAX 300000u
/* How far the node's clock and a client's may disagree. Larger than the
 * mempool's 2 s: a read is checked against a window the client chose from
 * its own clock, not against an expiry minutes away. */
#define NODE_READ_AUTH_CLOCK_SKEW_MS 30000u

/*
 * SHA-256 of REQUEST packed with its `auth` field unset: *AUTH_FIELD (the
 * request's own auth member) is NULL while packing and restored after.
 * protobuf-c packs fields in field-number order without defaults, the
 * canonical form node.proto asks a client to hash.
 */
void node_read_auth_request_hash(ProtobufCMessage *request, Ehr__V1__ReadAuth **auth_field,
                                 uint8_t out[EHR_HASH_BYTES]);

/*
 * The 32-byte digest the requester signs with BIP-340 (node.proto: SHA-256
 * of the tag, the chain id and the method each after a length byte, the
 * request's hash, the requester's key and the window, big-endian).
 * Preconditions: CHAIN_ID of at most EHR_CHAIN_ID_BYTES_MAX bytes, METHOD of
 * at most NODE_READ_AUTH_METHOD_BYTES_MAX.
 */
void node_read_auth_digest(const char *chain_id, const char *method,
                           const uint8_t request_hash[EHR_HASH_BYTES],
                           const uint8_t requester[EHR_SCHNORR_PUBLIC_BYTES],
                           uint64_t not_before_ms, uint64_t not_after_ms,
                           uint8_t out[EHR_HASH_BYTES]);

/* A ReadAuth and the bytes it points into (the caller owns both). */
struct node_read_auth_signed {
    Ehr__V1__ReadAuth auth;
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES];
    uint8_t signature[EHR_SCHNORR_SIG_BYTES];
};

/*
 * Sign REQUEST for METHOD on CHAIN_ID with KEY over [NOT_BEFORE_MS,
 * NOT_AFTER_MS]: OUT is filled and *AUTH_FIELD points at OUT->auth (keep OUT
 * alive while the request is packed). Every other field of REQUEST must be
 * final: the signature covers them. Returns 0, or EHR_EINVAL if signing
 * fails (a key that is not one).
 */
int node_read_auth_sign(struct node_read_auth_signed *out, ProtobufCMessage *request,
                        Ehr__V1__ReadAuth **auth_field, const char *chain_id, const char *method,
                        const ehr_signing_key *key, uint64_t not_before_ms, uint64_t not_after_ms);

/*
 * Check the ReadAuth of REQUEST (*AUTH_FIELD) for METHOD on CHAIN_ID at
 * NOW_MS: present, fields of their sizes, the window (positive, at most
 * NODE_READ_AUTH_WINDOW_MS_MAX, containing NOW_MS within
 * NODE_READ_AUTH_CLOCK_SKEW_MS), then the signature, the costly part, last.
 * Returns 0; EHR_EINVAL (a field of the wrong size); EHR_EEXPIRED (outside
 * the window, or a window that is empty or too long); EHR_EBADSIG (no auth
 * at all, or a signature that does not verify): each with a line in DIAG.
 * The node answers EHR_EINVAL with INVALID_ARGUMENT and the two others with
 * UNAUTHENTICATED.
 */
int node_read_auth_check(ProtobufCMessage *request, Ehr__V1__ReadAuth **auth_field,
                         const char *chain_id, const char *method, uint64_t now_ms, ehr_diag *diag);

#endif /* EHR_NODE_READ_AUTH_H */
