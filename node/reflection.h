/*
 * reflection.h - gRPC server reflection (grpc.reflection.v1 and v1alpha,
 * proto/grpc/reflection/, the same messages on the wire) without the
 * service: an index over a FileDescriptorSet (the one protoc wrote at
 * build time for the node's services, embedded in ehrd), and the answer
 * to one ServerReflectionRequest of either version from it. reflection.c serves it on the node's
 * RPC server; a test or a fuzzer calls it directly.
 *
 * The index borrows the set's bytes (they must outlive it) and never
 * copies a file: an answer carries each FileDescriptorProto as the very
 * bytes protoc wrote. The set is parsed by a small walker over the
 * protobuf wire format (reflection_index.c): lengths checked against what
 * is left at every level, nesting and every count bounded by the limits
 * below, so arbitrary bytes are refused, never read past.
 *
 * Not here: streams, their limits per connection, back-pressure
 * (reflection.c).
 */
#ifndef EHR_NODE_REFLECTION_H
#define EHR_NODE_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

enum {
    /* A request (ServerReflectionRequest) larger than this is refused
     * before it is decoded: the longest symbol or file name fits many
     * times over. */
    NODE_REFLECTION_REQUEST_BYTES_MAX = 1024,
    /* An answer (ServerReflectionResponse) larger than this is not sent:
     * the client gets an error_response RESOURCE_EXHAUSTED instead. The
     * node's whole set fits (a _Static_assert in reflection.c checks it
     * against the embedded set), so only a set grown past it would be
     * cut. */
    NODE_REFLECTION_ANSWER_BYTES_MAX = 256 * 1024,
    /* Requests one ServerReflectionInfo stream may make; the next ends it
     * with RESOURCE_EXHAUSTED. grpcurl's `describe` of every service asks
     * one per service and per file it lacks: a few dozen. */
    NODE_REFLECTION_REQUESTS_PER_STREAM_MAX = 256,
    /* ServerReflectionInfo streams open at once, on the node, on one
     * connection and from one client address (as the block streams'),
     * v1 and v1alpha streams counted together. */
    NODE_REFLECTION_STREAMS_MAX = 64,
    NODE_REFLECTION_STREAMS_PER_CONNECTION_MAX = 4,
    NODE_REFLECTION_STREAMS_PER_ADDRESS_MAX = 16,
    /* What the index holds at most: files, imports per file, symbols
     * (services, methods, messages, enums, at every nesting level), and a
     * symbol's or a file's name; messages nested deeper than the depth
     * are refused. The node's set is far inside each. */
    NODE_REFLECTION_FILES_MAX = 64,
    NODE_REFLECTION_DEPENDENCIES_MAX = 32,
    NODE_REFLECTION_SYMBOLS_MAX = 2048,
    NODE_REFLECTION_NAME_BYTES_MAX = 255,
    NODE_REFLECTION_NESTING_DEPTH_MAX = 16,
};

_Static_assert(NODE_REFLECTION_STREAMS_PER_CONNECTION_MAX <=
                   NODE_REFLECTION_STREAMS_PER_ADDRESS_MAX,
               "a connection's share fits its address's");
_Static_assert(NODE_REFLECTION_STREAMS_PER_ADDRESS_MAX < NODE_REFLECTION_STREAMS_MAX,
               "one address cannot take every stream");

struct reflection_index;

/*
 * Index the FileDescriptorSet SET (LEN bytes, borrowed until
 * reflection_index_free). Returns 0 and *OUT; EHR_EINVAL (not a
 * FileDescriptorSet: bad wire format, a file without a name, an import not
 * in the set, a name twice), EHR_ETOOBIG (past a limit above), each with a
 * line in DIAG (may be NULL). Nothing is allocated on error.
 */
int reflection_index_new(const uint8_t *set, size_t len, struct reflection_index **out,
                         ehr_diag *diag);
void reflection_index_free(struct reflection_index *index);

/* The services in the index (a symbol of a file's `service`), in set order. */
size_t reflection_index_service_count(const struct reflection_index *index);
const char *reflection_index_service_name(const struct reflection_index *index, size_t i);

/*
 * Answer one ServerReflectionRequest (REQUEST, REQUEST_LEN bytes):
 * *ANSWER (ehr_malloc'ed, the caller frees it) and *ANSWER_LEN get the
 * ServerReflectionResponse, which echoes the request and holds the
 * answer or an error_response: NOT_FOUND for an unknown file or symbol and
 * for any extension (the node's files define none), INVALID_ARGUMENT for
 * a request that asks nothing, RESOURCE_EXHAUSTED when the answer would
 * pass ANSWER_BYTES_MAX. Returns 0; EHR_ETOOBIG for a request over
 * NODE_REFLECTION_REQUEST_BYTES_MAX and EHR_EINVAL for one that is not a
 * ServerReflectionRequest, each with a line in DIAG, and then no answer.
 */
int reflection_answer(const struct reflection_index *index, const uint8_t *request,
                      size_t request_len, size_t answer_bytes_max, uint8_t **answer,
                      size_t *answer_len, ehr_diag *diag);

#endif /* EHR_NODE_REFLECTION_H */
