/*
 * test_reflection - server reflection without the network
 * (node/reflection.h): the index of the descriptor set embedded at build
 * time, and the answers and refusals of reflection_answer at their edges:
 * the set names both versions of reflection (v1, v1alpha), each answered
 * with its own file; an unknown symbol, file or extension answers an
 * error_response NOT_FOUND; a request of NODE_REFLECTION_REQUEST_BYTES_MAX bytes is
 * answered and one byte more refused; an answer of exactly the limit goes
 * out and one byte over becomes RESOURCE_EXHAUSTED; the index refuses sets
 * past its limits (files, nesting, name length) and broken ones. The
 * service over the wire, with a stock client, is tested by test_cluster
 * (tests/node/interop_reflection.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ehr_proto_services_set.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "reflection.h"
#include "rpc.h"

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest request_t;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse response_t;

static struct reflection_index *index_of_the_node(void)
{
    struct reflection_index *ix = NULL;
    ehr_diag diag = {{0}};
    int rc = reflection_index_new(ehr_proto_services_set, EHR_PROTO_SERVICES_SET_BYTES, &ix, &diag);
    if (rc != 0)
        fail_msg("the embedded set: %s", diag.msg);
    return ix;
}

/* Pack Q, answer it with MAX, and unpack the answer (NULL if refused: *RC). */
static response_t *ask(const struct reflection_index *ix, const request_t *q, size_t max,
                       size_t *answer_len, int *rc)
{
    size_t len = grpc__reflection__v1alpha__server_reflection_request__get_packed_size(q);
    uint8_t *buf = ehr_malloc(len + 1);
    grpc__reflection__v1alpha__server_reflection_request__pack(q, buf);
    uint8_t *answer = NULL;
    size_t alen = 0;
    *rc = reflection_answer(ix, buf, len, max, &answer, &alen, NULL);
    ehr_free(buf);
    if (*rc != 0) {
        assert_null(answer);
        return NULL;
    }
    response_t *r =
        grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, alen, answer);
    assert_non_null(r);
    ehr_free(answer);
    if (answer_len != NULL)
        *answer_len = alen;
    return r;
}

static response_t *ask_symbol(const struct reflection_index *ix, const char *symbol, size_t max,
                              size_t *answer_len)
{
    request_t q = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    q.message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    q.file_containing_symbol = (char *)symbol;
    int rc;
    response_t *r = ask(ix, &q, max, answer_len, &rc);
    assert_int_equal(rc, 0);
    return r;
}

static void assert_error(const response_t *r, enum rpc_status code)
{
    assert_int_equal(
        r->message_response_case,
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
    assert_int_equal(r->error_response->error_code, code);
    assert_true(strlen(r->error_response->error_message) > 0);
}

static void free_response(response_t *r)
{
    grpc__reflection__v1alpha__server_reflection_response__free_unpacked(r, NULL);
}

static void test_the_embedded_set_names_every_service_of_the_node(void **state)
{
    (void)state;
    struct reflection_index *ix = index_of_the_node();
    /* Both versions of reflection: the node serves both. */
    const char *want[] = {"ehr.v1.Node", "grpc.health.v1.Health",
                          "grpc.reflection.v1.ServerReflection",
                          "grpc.reflection.v1alpha.ServerReflection"};
    size_t count = reflection_index_service_count(ix);
    assert_int_equal(count, EHR_ARRAY_COUNT(want));
    for (size_t w = 0; w < EHR_ARRAY_COUNT(want); w++) {
        bool found = false;
        for (size_t i = 0; i < count; i++)
            found = found || strcmp(reflection_index_service_name(ix, i), want[w]) == 0;
        if (!found)
            fail_msg("%s is not among the services", want[w]);
    }
    reflection_index_free(ix);
}

static void test_a_symbol_answers_its_file_first_then_its_imports(void **state)
{
    (void)state;
    struct reflection_index *ix = index_of_the_node();
    const char *symbols[] = {"ehr.v1.Node", "ehr.v1.Node.GetStatus", "ehr.v1.GetStatusResponse"};
    for (size_t i = 0; i < 3; i++) {
        response_t *r = ask_symbol(ix, symbols[i], NODE_REFLECTION_ANSWER_BYTES_MAX, NULL);
        assert_int_equal(
            r->message_response_case,
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
        /* node.proto, state.proto, tx.proto: the file and both imports. */
        assert_int_equal(r->file_descriptor_response->n_file_descriptor_proto, 3);
        const ProtobufCBinaryData *first = &r->file_descriptor_response->file_descriptor_proto[0];
        /* FileDescriptorProto.name (field 1) comes first: 0x0a, length, name. */
        assert_true(first->len > 19);
        assert_int_equal(first->data[0], 0x0a);
        assert_memory_equal(first->data + 2, "ehr/v1/node.proto", 17);
        assert_string_equal(r->original_request->file_containing_symbol, symbols[i]);
        free_response(r);
    }
    reflection_index_free(ix);
}

/* Each version of reflection is described by its own file, alone (it
 * imports nothing): a client of either finds the service it speaks. */
static void test_each_reflection_version_answers_its_own_file(void **state)
{
    (void)state;
    struct reflection_index *ix = index_of_the_node();
    static const char v1[] = "grpc/reflection/v1/reflection.proto";
    static const char v1alpha[] = "grpc/reflection/v1alpha/reflection.proto";
    const struct {
        const char *symbol, *file;
    } cases[] = {
        {"grpc.reflection.v1.ServerReflection", v1},
        {"grpc.reflection.v1.ServerReflection.ServerReflectionInfo", v1},
        {"grpc.reflection.v1.ServerReflectionResponse", v1},
        {"grpc.reflection.v1alpha.ServerReflection", v1alpha},
        {"grpc.reflection.v1alpha.ServerReflectionRequest", v1alpha},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        response_t *r = ask_symbol(ix, cases[i].symbol, NODE_REFLECTION_ANSWER_BYTES_MAX, NULL);
        assert_int_equal(
            r->message_response_case,
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
        assert_int_equal(r->file_descriptor_response->n_file_descriptor_proto, 1);
        const ProtobufCBinaryData *file = &r->file_descriptor_response->file_descriptor_proto[0];
        size_t name_len = strlen(cases[i].file);
        /* FileDescriptorProto.name (field 1) comes first: 0x0a, length, name. */
        assert_true(file->len > name_len + 2);
        assert_int_equal(file->data[0], 0x0a);
        assert_int_equal(file->data[1], name_len);
        assert_memory_equal(file->data + 2, cases[i].file, name_len);
        free_response(r);
    }
    reflection_index_free(ix);
}

static void test_an_unknown_symbol_answers_not_found(void **state)
{
    (void)state;
    struct reflection_index *ix = index_of_the_node();
    const char *unknown[] = {"ehr.v1.NoSuch", "ehr.v1", "", "ehr.v1.Node.", ".ehr.v1.Node"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        response_t *r = ask_symbol(ix, unknown[i], NODE_REFLECTION_ANSWER_BYTES_MAX, NULL);
        assert_error(r, RPC_STATUS_NOT_FOUND);
        assert_non_null(strstr(r->error_response->error_message, "no symbol"));
        free_response(r);
    }
    reflection_index_free(ix);
}

static void test_an_unknown_file_and_any_extension_answer_not_found(void **state)
{
    (void)state;
    struct reflection_index *ix = index_of_the_node();
    request_t q = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    int rc;
    q.message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    q.file_by_filename = "ehr/v1/none.proto";
    response_t *r = ask(ix, &q, NODE_REFLECTION_ANSWER_BYTES_MAX, NULL, &rc);
    assert_error(r, RPC_STATUS_NOT_FOUND);
    free_response(r);

    Grpc__Reflection__V1alpha__ExtensionRequest ext =
        GRPC__REFLECTION__V1ALPHA__EXTENSION_REQUEST__INIT;
    ext.containing_type = "ehr.v1.GetStatusRequest";
    ext.extension_number = 100;
    q.message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    q.file_containing_extension = &ext;
    r = ask(ix, &q, NODE_REFLECTION_ANSWER_BYTES_MAX, NULL, &rc);
    assert_error(r, RPC_STATUS_NOT_FOUND);
    free_response(r);

    q.message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    q.all_extension_numbers_of_type = "ehr.v1.GetStatusRequest";
    r = ask(ix, &q, NODE_REFLECTION_ANSWER_BYTES_MAX, NULL, &rc);
    assert_error(r, RPC_STATUS_NOT_FOUND);
    free_response(r);

    q.message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET;
    r = ask(ix, &q, NODE_REFLECTION_ANSWER_BYTES_MAX, NULL, &rc);
    assert_error(r, RPC_STATUS_INVALID_ARGUMENT);
    free_response(r);
    reflection_index_free(ix);
}

/* A list_services request of exactly SIZE bytes (its host padded). */
static uint8_t *request_of_size(size_t size)
{
    char *host = ehr_calloc(1, size + 1);
    request_t q = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
    q.message_request_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    q.list_services = "";
    q.host = host;
    for (size_t n = 0;
         grpc__reflection__v1alpha__server_reflection_request__get_packed_size(&q) < size; n++)
        host[n] = 'h';
    assert_int_equal(grpc__reflection__v1alpha__server_reflection_request__get_packed_size(&q),
                     size);
    uint8_t *buf = ehr_malloc(size);
    grpc__reflection__v1alpha__server_reflection_request__pack(&q, buf);
    ehr_free(host);
    return buf;
}

static void test_a_request_over_the_limit_is_refused_at_the_limit_answered(void **state)
{
    (void)state;
    struct reflection_index *ix = index_of_the_node();
    uint8_t *answer = NULL;
    size_t len = 0;
    uint8_t *at = request_of_size(NODE_REFLECTION_REQUEST_BYTES_MAX);
    assert_int_equal(reflection_answer(ix, at, NODE_REFLECTION_REQUEST_BYTES_MAX,
                                       NODE_REFLECTION_ANSWER_BYTES_MAX, &answer, &len, NULL),
                     0);
    response_t *r =
        grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, len, answer);
    assert_non_null(r);
    assert_int_equal(
        r->message_response_case,
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
    assert_int_equal(r->list_services_response->n_service, reflection_index_service_count(ix));
    free_response(r);
    ehr_free(answer);
    ehr_free(at);

    uint8_t *over = request_of_size(NODE_REFLECTION_REQUEST_BYTES_MAX + 1);
    answer = NULL;
    ehr_diag diag = {{0}};
    assert_int_equal(reflection_answer(ix, over, NODE_REFLECTION_REQUEST_BYTES_MAX + 1,
                                       NODE_REFLECTION_ANSWER_BYTES_MAX, &answer, &len, &diag),
                     EHR_ETOOBIG);
    assert_null(answer);
    assert_non_null(strstr(diag.msg, "1025 bytes is over the limit of 1024"));
    ehr_free(over);

    static const uint8_t garbage[] = {0x0a, 0x7f, 'x'}; /* a length past the end */
    assert_int_equal(reflection_answer(ix, garbage, sizeof garbage,
                                       NODE_REFLECTION_ANSWER_BYTES_MAX, &answer, &len, &diag),
                     EHR_EINVAL);
    assert_null(answer);
    reflection_index_free(ix);
}

/* A field numbered 0 (a padded key, 0x80 0x00, which protobuf-c keeps) is
 * refused, in the request and in its extension request: echoed back it
 * would make an answer nobody can read. Any other unknown field is echoed
 * and the answer decodes. */
static void test_a_field_numbered_zero_is_refused_other_unknown_fields_echoed(void **state)
{
    (void)state;
    struct reflection_index *ix = index_of_the_node();
    static const uint8_t zero[] = {0x80, 0x00, 0x00};
    static const uint8_t listing_and_zero[] = {0x3a, 0x00, 0x80, 0x00, 0x00};
    static const uint8_t extension_zero[] = {0x2a, 0x03, 0x80, 0x00, 0x00};
    const struct {
        const uint8_t *bytes;
        size_t len;
    } refused[] = {{zero, sizeof zero},
                   {listing_and_zero, sizeof listing_and_zero},
                   {extension_zero, sizeof extension_zero}};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(refused); i++) {
        uint8_t *answer = NULL;
        size_t len = 0;
        ehr_diag diag = {{0}};
        assert_int_equal(reflection_answer(ix, refused[i].bytes, refused[i].len,
                                           NODE_REFLECTION_ANSWER_BYTES_MAX, &answer, &len, &diag),
                         EHR_EINVAL);
        assert_null(answer);
        assert_non_null(strstr(diag.msg, "a field numbered 0"));
    }
    static const uint8_t listing_and_field_15[] = {0x3a, 0x00, 0x78, 0x01};
    uint8_t *answer = NULL;
    size_t len = 0;
    assert_int_equal(reflection_answer(ix, listing_and_field_15, sizeof listing_and_field_15,
                                       NODE_REFLECTION_ANSWER_BYTES_MAX, &answer, &len, NULL),
                     0);
    response_t *r =
        grpc__reflection__v1alpha__server_reflection_response__unpack(NULL, len, answer);
    assert_non_null(r);
    assert_non_null(r->list_services_response);
    free_response(r);
    ehr_free(answer);
    reflection_index_free(ix);
}

static void test_an_answer_over_its_limit_becomes_resource_exhausted(void **state)
{
    (void)state;
    struct reflection_index *ix = index_of_the_node();
    size_t whole = 0, len = 0;
    response_t *r = ask_symbol(ix, "ehr.v1.Node", NODE_REFLECTION_ANSWER_BYTES_MAX, &whole);
    assert_true(r->file_descriptor_response != NULL);
    free_response(r);
    r = ask_symbol(ix, "ehr.v1.Node", whole, &len);
    assert_int_equal(len, whole);
    assert_non_null(r->file_descriptor_response);
    free_response(r);
    r = ask_symbol(ix, "ehr.v1.Node", whole - 1, &len);
    assert_error(r, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_true(len < whole);
    free_response(r);
    reflection_index_free(ix);
}

/* ---- sets built by hand: the index's own limits ---- */

struct pb {
    uint8_t *data;
    size_t len;
};

static void pb_put(struct pb *b, const void *p, size_t n)
{
    b->data = ehr_realloc(b->data, b->len + n + 1);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void pb_varint(struct pb *b, uint64_t v)
{
    do {
        uint8_t byte = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            byte |= 0x80;
        pb_put(b, &byte, 1);
    } while (v);
}

/* Field NUMBER, length-delimited, holding N bytes at P. */
static void pb_field(struct pb *b, uint32_t number, const void *p, size_t n)
{
    pb_varint(b, (uint64_t)number << 3 | 2);
    pb_varint(b, n);
    pb_put(b, p, n);
}

static void pb_string(struct pb *b, uint32_t number, const char *s)
{
    pb_field(b, number, s, strlen(s));
}

/* A message named NAME with DEPTH more levels nested inside it. */
static struct pb nested_message(uint32_t depth)
{
    struct pb m = {0};
    pb_string(&m, 1, "M");
    if (depth > 0) {
        struct pb inner = nested_message(depth - 1);
        pb_field(&m, 3, inner.data, inner.len);
        ehr_free(inner.data);
    }
    return m;
}

static int index_rc(const struct pb *set, ehr_diag *diag)
{
    struct reflection_index *ix = NULL;
    int rc = reflection_index_new(set->data, set->len, &ix, diag);
    if (rc == 0)
        reflection_index_free(ix);
    else
        assert_null(ix);
    return rc;
}

static void test_nesting_up_to_the_limit_is_indexed_deeper_refused(void **state)
{
    (void)state;
    for (uint32_t depth = NODE_REFLECTION_NESTING_DEPTH_MAX - 1;
         depth <= NODE_REFLECTION_NESTING_DEPTH_MAX; depth++) {
        struct pb file = {0}, set = {0};
        pb_string(&file, 1, "deep.proto");
        pb_string(&file, 2, "p");
        struct pb m = nested_message(depth); /* depth + 1 levels of messages */
        pb_field(&file, 4, m.data, m.len);
        pb_field(&set, 1, file.data, file.len);
        ehr_diag diag = {{0}};
        int rc = index_rc(&set, &diag);
        if (depth + 1 <= NODE_REFLECTION_NESTING_DEPTH_MAX)
            assert_int_equal(rc, 0);
        else
            assert_int_equal(rc, EHR_ETOOBIG);
        ehr_free(m.data);
        ehr_free(file.data);
        ehr_free(set.data);
    }
}

static void test_files_and_names_up_to_their_limits_are_indexed_more_refused(void **state)
{
    (void)state;
    for (int extra = 0; extra <= 1; extra++) {
        struct pb set = {0};
        for (int i = 0; i < NODE_REFLECTION_FILES_MAX + extra; i++) {
            struct pb file = {0};
            char name[32];
            snprintf(name, sizeof name, "f%d.proto", i);
            pb_string(&file, 1, name);
            pb_field(&set, 1, file.data, file.len);
            ehr_free(file.data);
        }
        assert_int_equal(index_rc(&set, NULL), extra ? EHR_ETOOBIG : 0);
        ehr_free(set.data);
    }
    for (int extra = 0; extra <= 1; extra++) {
        char name[NODE_REFLECTION_NAME_BYTES_MAX + 2];
        memset(name, 'n', sizeof name);
        name[NODE_REFLECTION_NAME_BYTES_MAX + extra] = '\0';
        struct pb file = {0}, set = {0};
        pb_string(&file, 1, name);
        pb_field(&set, 1, file.data, file.len);
        assert_int_equal(index_rc(&set, NULL), extra ? EHR_ETOOBIG : 0);
        ehr_free(file.data);
        ehr_free(set.data);
    }
}

static void test_broken_sets_are_refused(void **state)
{
    (void)state;
    ehr_diag diag = {{0}};
    /* An import that is not in the set. */
    struct pb file = {0}, set = {0};
    pb_string(&file, 1, "a.proto");
    pb_string(&file, 3, "b.proto");
    pb_field(&set, 1, file.data, file.len);
    assert_int_equal(index_rc(&set, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "b.proto"));
    ehr_free(file.data);
    ehr_free(set.data);
    /* A file twice. */
    file = (struct pb){0};
    set = (struct pb){0};
    pb_string(&file, 1, "a.proto");
    pb_field(&set, 1, file.data, file.len);
    pb_field(&set, 1, file.data, file.len);
    assert_int_equal(index_rc(&set, NULL), EHR_EINVAL);
    ehr_free(file.data);
    ehr_free(set.data);
    /* Every cut of the node's set but the whole: refused, never read past. */
    for (size_t cut = 1; cut < EHR_PROTO_SERVICES_SET_BYTES; cut += 97) {
        struct reflection_index *ix = NULL;
        int rc = reflection_index_new(ehr_proto_services_set, cut, &ix, NULL);
        if (rc == 0)
            reflection_index_free(ix);
        assert_int_not_equal(rc, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_embedded_set_names_every_service_of_the_node),
        cmocka_unit_test(test_a_symbol_answers_its_file_first_then_its_imports),
        cmocka_unit_test(test_each_reflection_version_answers_its_own_file),
        cmocka_unit_test(test_an_unknown_symbol_answers_not_found),
        cmocka_unit_test(test_an_unknown_file_and_any_extension_answer_not_found),
        cmocka_unit_test(test_a_request_over_the_limit_is_refused_at_the_limit_answered),
        cmocka_unit_test(test_a_field_numbered_zero_is_refused_other_unknown_fields_echoed),
        cmocka_unit_test(test_an_answer_over_its_limit_becomes_resource_exhausted),
        cmocka_unit_test(test_nesting_up_to_the_limit_is_indexed_deeper_refused),
        cmocka_unit_test(test_files_and_names_up_to_their_limits_are_indexed_more_refused),
        cmocka_unit_test(test_broken_sets_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
