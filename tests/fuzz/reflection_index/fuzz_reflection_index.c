/*
 * libFuzzer target for server reflection's decoders (node/reflection.h).
 * The first byte picks what the rest is:
 *   even: a FileDescriptorSet for reflection_index_new. If it is indexed,
 *         every service it names is found again by file_containing_symbol
 *         and answered with its file first, and list_services names them
 *         all, each answer within its limit and decoding back.
 *   odd:  a ServerReflectionRequest for reflection_answer against the
 *         node's embedded set. It is refused (over the limit, malformed)
 *         or answered within the limit, and the answer decodes.
 * Oracles are aborts; the sanitizers catch any read past the input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ehr_proto_services_set.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "reflection.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small enough that a fuzzed set can reach it. */
enum { ANSWER_BYTES_MAX = 4096 };

typedef Grpc__Reflection__V1alpha__ServerReflectionResponse response_t;

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* Answer the packed request Q and return the decoded answer. */
static response_t *answer_of(const struct reflection_index *ix, const uint8_t *q, size_t len,
                             size_t max, int *rc)
{
    uint8_t *answer = NULL;
    size_t answer_len = 0;
    *rc = reflection_answer(ix, q, len, max, &answer, &answer_len, NULL);
    if (*rc != 0) {
        check(answer == NULL);
        return NULL;
    }
    response_t *r =
        grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, answer_len, answer);
    check(r != NULL);
    /* Only an error that cannot be cut may pass the limit. */
    check(
        answer_len <= max ||
        r->message_response_case ==
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
    ehr_free(answer);
    return r;
}

static void fuzz_set(const uint8_t *data, size_t size)
{
    struct reflection_index *ix = NULL;
    ehr_diag diag = {{0}};
    int rc = reflection_index_new(data, size, &ix, &diag);
    if (rc != 0) {
        check(ix == NULL);
        check(diag.msg[0] != '\0');
        return;
    }
    size_t count = reflection_index_service_count(ix);
    for (size_t i = 0; i < count; i++) {
        const char *name = reflection_index_service_name(ix, i);
        Grpc__Reflection__V1alpha__ServerReflectionRequest q =
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
        q.message_request_case =
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
        q.file_containing_symbol = (char *)name;
        uint8_t buf[NODE_REFLECTION_REQUEST_BYTES_MAX];
        size_t len = grpc__reflection__v1alpha__server_reflection_request__get_packed_size(&q);
        check(len <= sizeof buf); /* names are at most NODE_REFLECTION_NAME_BYTES_MAX */
        grpc__reflection__v1alpha__server_reflection_request__pack(&q, buf);
        response_t *r = answer_of(ix, buf, len, ANSWER_BYTES_MAX, &rc);
        check(r != NULL);
        check(
            r->message_response_case !=
                GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE ||
            r->error_response->error_code == 8 /* RESOURCE_EXHAUSTED: over the limit */);
        if (r->file_descriptor_response != NULL)
            check(r->file_descriptor_response->n_file_descriptor_proto >= 1);
        grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
    }
    static const uint8_t list[] = {0x3a, 0x00}; /* list_services: "" */
    response_t *r = answer_of(ix, list, sizeof list, SIZE_MAX, &rc);
    check(r != NULL);
    check(r->list_services_response != NULL);
    check(r->list_services_response->n_service == count);
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
    reflection_index_free(ix);
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    static struct reflection_index *node;
    if (node == NULL)
        check(reflection_index_new(ehr_proto_services_set, EHR_PROTO_SERVICES_SET_BYTES, &node,
                                   NULL) == 0);
    int rc;
    response_t *r = answer_of(node, data, size, NODE_REFLECTION_ANSWER_BYTES_MAX, &rc);
    if (r == NULL) {
        check(rc == EHR_ETOOBIG || rc == EHR_EINVAL);
        check(rc != EHR_ETOOBIG || size > NODE_REFLECTION_REQUEST_BYTES_MAX);
        return;
    }
    check(size <= NODE_REFLECTION_REQUEST_BYTES_MAX);
    check(r->original_request != NULL);
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0)
        fuzz_set(data + 1, size - 1);
    else
        fuzz_request(data + 1, size - 1);
    return 0;
}
