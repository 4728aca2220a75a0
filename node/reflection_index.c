/*
 * reflection_index.c - the index server reflection answers from: a walker
 * over the protobuf wire format of a FileDescriptorSet (the files, their
 * names and imports, and the fully qualified names of the services,
 * methods, messages and enums each defines), and the answer to one
 * ServerReflectionRequest (reflection.h).
 *
 * Why a walker and not protobuf-c's descriptor.proto: reflection needs
 * four fields of four messages, and the answer must carry each file as
 * the bytes protoc wrote (decoding and packing again would be work and a
 * chance to differ). It is a decoder of bytes it did not write, so it
 * trusts nothing: every length is checked against what is left of its
 * enclosing message before it is used, varints end within 10 bytes,
 * groups are refused, and nesting and every count stop at a named limit
 * (tests/fuzz/fuzz_reflection_index runs it on arbitrary bytes).
 *
 * Not here: the RPC stream and its limits (reflection.c).
 */
#include <stdio.h>
#include <string.h>

#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "reflection.h"
#include "rpc.h"

/* ---- the wire format ---- */

enum {
    WIRE_VARINT = 0,
    WIRE_FIXED64 = 1,
    WIRE_BYTES = 2,
    WIRE_FIXED32 = 5,
    WIRE_VARINT_BYTES_MAX = 10,
    WIRE_FIELD_NUMBER_MAX = (1 << 29) - 1,
};

/* What is left of one message. */
struct wire {
    const uint8_t *p;
    size_t left;
};

/* One field: its number and, for WIRE_BYTES, its contents. */
struct wire_field {
    uint32_t number;
    uint32_t type;
    const uint8_t *bytes;
    size_t len;
};

static int wire_varint(struct wire *w, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < WIRE_VARINT_BYTES_MAX; i++) {
        if (w->left == 0)
            return EHR_ETRUNCATED;
        uint8_t b = *w->p++;
        w->left--;
        if (i == WIRE_VARINT_BYTES_MAX - 1 && b > 1)
            return EHR_EINVAL; /* past 64 bits */
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return EHR_EINVAL;
}

static int wire_skip(struct wire *w, size_t n)
{
    if (n > w->left)
        return EHR_ETRUNCATED;
    w->p += n;
    w->left -= n;
    return 0;
}

/* The next field of W into *F. Returns 1, 0 at the end of W, or an error
 * for bytes that are not the wire format (a group, a length past the end). */
static int wire_next(struct wire *w, struct wire_field *f)
{
    if (w->left == 0)
        return 0;
    uint64_t tag, v;
    int rc = wire_varint(w, &tag);
    if (rc != 0)
        return rc;
    if ((tag >> 3) == 0 || (tag >> 3) > WIRE_FIELD_NUMBER_MAX)
        return EHR_EINVAL;
    f->number = (uint32_t)(tag >> 3);
    f->type = (uint32_t)(tag & 7);
    f->bytes = NULL;
    f->len = 0;
    switch (f->type) {
    case WIRE_VARINT:
        return wire_varint(w, &v) == 0 ? 1 : EHR_EINVAL;
    case WIRE_FIXED64:
        return wire_skip(w, 8) == 0 ? 1 : EHR_ETRUNCATED;
    case WIRE_FIXED32:
        return wire_skip(w, 4) == 0 ? 1 : EHR_ETRUNCATED;
    case WIRE_BYTES:
        rc = wire_varint(w, &v);
        if (rc != 0)
            return rc;
        if (v > w->left)
            return EHR_ETRUNCATED;
        f->bytes = w->p;
        f->len = (size_t)v;
        w->p += f->len;
        w->left -= f->len;
        return 1;
    default: /* groups (3, 4) and the unused 6, 7 */
        return EHR_EINVAL;
    }
}

/* The last WIRE_BYTES field NUMBER of MSG (protobuf's rule: the last one
 * wins) into *F. Returns 1 found, 0 not, or an error. */
static int wire_find(const uint8_t *msg, size_t len, uint32_t number, struct wire_field *out)
{
    struct wire w = {msg, len};
    struct wire_field f;
    int rc, found = 0;
    while ((rc = wire_next(&w, &f)) == 1) {
        if (f.number != number)
            continue;
        if (f.type != WIRE_BYTES)
            return EHR_EINVAL;
        *out = f;
        found = 1;
    }
    return rc < 0 ? rc : found;
}

/* ---- the index ---- */

/* Field numbers of descriptor.proto that reflection reads. */
enum {
    SET_FILE = 1,            /* FileDescriptorSet.file */
    FILE_NAME = 1,           /* FileDescriptorProto.name */
    FILE_PACKAGE = 2,        /* .package */
    FILE_DEPENDENCY = 3,     /* .dependency (repeated string) */
    FILE_MESSAGE_TYPE = 4,   /* .message_type (DescriptorProto) */
    FILE_ENUM_TYPE = 5,      /* .enum_type (EnumDescriptorProto) */
    FILE_SERVICE = 6,        /* .service (ServiceDescriptorProto) */
    MESSAGE_NAME = 1,        /* DescriptorProto.name */
    MESSAGE_NESTED_TYPE = 3, /* .nested_type */
    MESSAGE_ENUM_TYPE = 4,   /* .enum_type */
    ENUM_NAME = 1,           /* EnumDescriptorProto.name */
    SERVICE_NAME = 1,        /* ServiceDescriptorProto.name */
    SERVICE_METHOD = 2,      /* .method (MethodDescriptorProto) */
    METHOD_NAME = 1,         /* MethodDescriptorProto.name */
};

typedef char reflection_name[NODE_REFLECTION_NAME_BYTES_MAX + 1];

struct reflection_file {
    const uint8_t *bytes; /* the FileDescriptorProto, in the set */
    size_t len;
    reflection_name name;
    uint32_t dependency[NODE_REFLECTION_DEPENDENCIES_MAX]; /* indices into files */
    uint32_t dependency_count;
};

struct reflection_symbol {
    reflection_name name; /* fully qualified, no leading dot */
    uint32_t file;        /* index into files */
    bool service;
};

struct reflection_index {
    struct reflection_file files[NODE_REFLECTION_FILES_MAX];
    uint32_t file_count;
    struct reflection_symbol symbols[NODE_REFLECTION_SYMBOLS_MAX];
    uint32_t symbol_count;
};

/* Copy a name field into OUT: non-empty, no NUL, at most the limit. */
static int name_copy(const struct wire_field *f, reflection_name out, ehr_diag *diag)
{
    if (f->len == 0 || memchr(f->bytes, '\0', f->len) != NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "a name is empty or holds a NUL byte");
    if (f->len > NODE_REFLECTION_NAME_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "a name of %zu bytes is over the limit of %d",
                             f->len, NODE_REFLECTION_NAME_BYTES_MAX);
    memcpy(out, f->bytes, f->len);
    out[f->len] = '\0';
    return 0;
}

/* Add PREFIX.NAME (NAME alone when PREFIX is empty), NAME being field
 * NAME_FIELD of MSG, as a symbol of FILE; its full name into FULL. */
static int symbol_add(struct reflection_index *ix, const char *prefix, const uint8_t *msg,
                      size_t len, uint32_t name_field, uint32_t file, bool service,
                      reflection_name full, ehr_diag *diag)
{
    struct wire_field f;
    int rc = wire_find(msg, len, name_field, &f);
    if (rc < 0)
        return ehr_diag_fail(diag, rc, "a definition is not in the protobuf wire format");
    if (rc == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "a definition in %s has no name",
                             ix->files[file].name);
    reflection_name name;
    rc = name_copy(&f, name, diag);
    if (rc != 0)
        return rc;
    size_t prefix_len = strlen(prefix);
    size_t name_len = strlen(name);
    size_t full_len = prefix_len == 0 ? name_len : prefix_len + 1 + name_len;
    if (full_len > NODE_REFLECTION_NAME_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "the name %s.%s is over the limit of %d bytes",
                             prefix, name, NODE_REFLECTION_NAME_BYTES_MAX);
    if (ix->symbol_count == NODE_REFLECTION_SYMBOLS_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "more than %d symbols",
                             NODE_REFLECTION_SYMBOLS_MAX);
    size_t at = 0;
    if (prefix_len > 0) { /* the lengths were checked above */
        memcpy(full, prefix, prefix_len);
        full[prefix_len] = '.';
        at = prefix_len + 1;
    }
    memcpy(full + at, name, name_len + 1);
    struct reflection_symbol *s = &ix->symbols[ix->symbol_count++];
    memcpy(s->name, full, full_len + 1);
    s->file = file;
    s->service = service;
    return 0;
}

/* Every field NUMBER of MSG that is a message, handed to EACH. */
typedef int (*each_cb)(struct reflection_index *ix, const char *prefix, const uint8_t *msg,
                       size_t len, uint32_t file, uint32_t depth, ehr_diag *diag);

static int each_field(struct reflection_index *ix, const uint8_t *msg, size_t len, uint32_t number,
                      each_cb each, const char *prefix, uint32_t file, uint32_t depth,
                      ehr_diag *diag)
{
    struct wire w = {msg, len};
    struct wire_field f;
    int rc;
    while ((rc = wire_next(&w, &f)) == 1) {
        if (f.number != number)
            continue;
        if (f.type != WIRE_BYTES)
            return ehr_diag_fail(diag, EHR_EINVAL, "a definition in %s is not a message",
                                 ix->files[file].name);
        rc = each(ix, prefix, f.bytes, f.len, file, depth, diag);
        if (rc != 0)
            return rc;
    }
    if (rc < 0)
        return ehr_diag_fail(diag, rc, "%s is not in the protobuf wire format",
                             ix->files[file].name);
    return 0;
}

static int enum_add(struct reflection_index *ix, const char *prefix, const uint8_t *msg, size_t len,
                    uint32_t file, uint32_t depth, ehr_diag *diag)
{
    (void)depth;
    reflection_name full;
    return symbol_add(ix, prefix, msg, len, ENUM_NAME, file, false, full, diag);
}

static int method_add(struct reflection_index *ix, const char *prefix, const uint8_t *msg,
                      size_t len, uint32_t file, uint32_t depth, ehr_diag *diag)
{
    (void)depth;
    reflection_name full;
    return symbol_add(ix, prefix, msg, len, METHOD_NAME, file, false, full, diag);
}

static int service_add(struct reflection_index *ix, const char *prefix, const uint8_t *msg,
                       size_t len, uint32_t file, uint32_t depth, ehr_diag *diag)
{
    reflection_name full;
    int rc = symbol_add(ix, prefix, msg, len, SERVICE_NAME, file, true, full, diag);
    if (rc != 0)
        return rc;
    return each_field(ix, msg, len, SERVICE_METHOD, method_add, full, file, depth, diag);
}

static int message_add(struct reflection_index *ix, const char *prefix, const uint8_t *msg,
                       size_t len, uint32_t file, uint32_t depth, ehr_diag *diag)
{
    if (depth >= NODE_REFLECTION_NESTING_DEPTH_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "messages nested more than %d deep in %s",
                             NODE_REFLECTION_NESTING_DEPTH_MAX, ix->files[file].name);
    reflection_name full;
    int rc = symbol_add(ix, prefix, msg, len, MESSAGE_NAME, file, false, full, diag);
    if (rc != 0)
        return rc;
    rc = each_field(ix, msg, len, MESSAGE_NESTED_TYPE, message_add, full, file, depth + 1, diag);
    if (rc != 0)
        return rc;
    return each_field(ix, msg, len, MESSAGE_ENUM_TYPE, enum_add, full, file, depth, diag);
}

static int file_find(const struct reflection_index *ix, const char *name, size_t len)
{
    for (uint32_t i = 0; i < ix->file_count; i++)
        if (strlen(ix->files[i].name) == len && memcmp(ix->files[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

/* The file's name, package and symbols (its imports are resolved later). */
static int file_add(struct reflection_index *ix, const uint8_t *msg, size_t len, ehr_diag *diag)
{
    if (ix->file_count == NODE_REFLECTION_FILES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "more than %d files", NODE_REFLECTION_FILES_MAX);
    uint32_t file = ix->file_count;
    struct reflection_file *rf = &ix->files[file];
    struct wire_field f;
    int rc = wire_find(msg, len, FILE_NAME, &f);
    if (rc < 0)
        return ehr_diag_fail(diag, rc, "file %u is not in the protobuf wire format", file);
    if (rc == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "file %u has no name", file);
    rc = name_copy(&f, rf->name, diag);
    if (rc != 0)
        return rc;
    if (file_find(ix, rf->name, strlen(rf->name)) >= 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "file %s is in the set twice", rf->name);
    rf->bytes = msg;
    rf->len = len;
    rf->dependency_count = 0;
    ix->file_count++;
    reflection_name package = "";
    rc = wire_find(msg, len, FILE_PACKAGE, &f);
    if (rc < 0)
        return ehr_diag_fail(diag, rc, "%s is not in the protobuf wire format", rf->name);
    if (rc == 1 && f.len > 0) {
        rc = name_copy(&f, package, diag);
        if (rc != 0)
            return rc;
    }
    rc = each_field(ix, msg, len, FILE_MESSAGE_TYPE, message_add, package, file, 0, diag);
    if (rc == 0)
        rc = each_field(ix, msg, len, FILE_ENUM_TYPE, enum_add, package, file, 0, diag);
    if (rc == 0)
        rc = each_field(ix, msg, len, FILE_SERVICE, service_add, package, file, 0, diag);
    return rc;
}

/* FILE's imports as indices into the set: each must be there. */
static int file_link(struct reflection_index *ix, uint32_t file, ehr_diag *diag)
{
    struct reflection_file *rf = &ix->files[file];
    struct wire w = {rf->bytes, rf->len};
    struct wire_field f;
    int rc;
    while ((rc = wire_next(&w, &f)) == 1) {
        if (f.number != FILE_DEPENDENCY)
            continue;
        if (f.type != WIRE_BYTES)
            return ehr_diag_fail(diag, EHR_EINVAL, "an import of %s is not a name", rf->name);
        int dep = file_find(ix, (const char *)f.bytes, f.len);
        if (dep < 0)
            return ehr_diag_fail(diag, EHR_EINVAL, "%s imports %.*s, which is not in the set",
                                 rf->name, (int)(f.len < 64 ? f.len : 64), (const char *)f.bytes);
        if (rf->dependency_count == NODE_REFLECTION_DEPENDENCIES_MAX)
            return ehr_diag_fail(diag, EHR_ETOOBIG, "%s has more than %d imports", rf->name,
                                 NODE_REFLECTION_DEPENDENCIES_MAX);
        rf->dependency[rf->dependency_count++] = (uint32_t)dep;
    }
    return rc < 0 ? ehr_diag_fail(diag, rc, "%s is not in the protobuf wire format", rf->name) : 0;
}

int reflection_index_new(const uint8_t *set, size_t len, struct reflection_index **out,
                         ehr_diag *diag)
{
    EHR_ASSERT(set != NULL || len == 0);
    struct reflection_index *ix = ehr_calloc(1, sizeof *ix);
    struct wire w = {set, len};
    struct wire_field f;
    int rc;
    while ((rc = wire_next(&w, &f)) == 1) {
        if (f.number != SET_FILE)
            continue;
        if (f.type != WIRE_BYTES) {
            rc = ehr_diag_fail(diag, EHR_EINVAL, "not a FileDescriptorSet: a file is no message");
            break;
        }
        rc = file_add(ix, f.bytes, f.len, diag);
        if (rc != 0)
            break;
    }
    if (rc < 0 && diag != NULL && diag->msg[0] == '\0')
        rc = ehr_diag_fail(diag, rc, "not a FileDescriptorSet: not in the protobuf wire format");
    for (uint32_t i = 0; rc == 0 && i < ix->file_count; i++)
        rc = file_link(ix, i, diag);
    if (rc != 0) {
        ehr_free(ix);
        return rc;
    }
    EHR_ASSERT(ix->file_count <= NODE_REFLECTION_FILES_MAX);
    EHR_ASSERT(ix->symbol_count <= NODE_REFLECTION_SYMBOLS_MAX);
    *out = ix;
    return 0;
}

void reflection_index_free(struct reflection_index *index)
{
    ehr_free(index);
}

size_t reflection_index_service_count(const struct reflection_index *index)
{
    size_t n = 0;
    for (uint32_t i = 0; i < index->symbol_count; i++)
        n += index->symbols[i].service;
    return n;
}

const char *reflection_index_service_name(const struct reflection_index *index, size_t i)
{
    for (uint32_t s = 0; s < index->symbol_count; s++)
        if (index->symbols[s].service && i-- == 0)
            return index->symbols[s].name;
    EHR_ASSERT(!"service index out of range");
    return NULL;
}

/* ---- answers ---- */

/* The v1alpha messages serve v1 requests too: the two versions' messages
 * are the same on the wire (proto/grpc/reflection/v1/reflection.proto). */
typedef Grpc__Reflection__V1alpha__ServerReflectionRequest reflection_request;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse reflection_response;

/* FILE and every file it imports, directly or not, each once, FILE first,
 * into OUT (room for NODE_REFLECTION_FILES_MAX). Returns how many. */
static size_t file_closure(const struct reflection_index *ix, uint32_t file,
                           ProtobufCBinaryData *out)
{
    bool seen[NODE_REFLECTION_FILES_MAX] = {false};
    uint32_t stack[NODE_REFLECTION_FILES_MAX];
    size_t depth = 0, count = 0;
    stack[depth++] = file;
    seen[file] = true;
    while (depth > 0) {
        const struct reflection_file *rf = &ix->files[stack[--depth]];
        out[count].data = (uint8_t *)rf->bytes; /* protobuf-c only reads it */
        out[count].len = rf->len;
        count++;
        /* In reverse, so that the first import is answered first. */
        for (uint32_t d = rf->dependency_count; d-- > 0;) {
            uint32_t dep = rf->dependency[d];
            if (seen[dep])
                continue;
            seen[dep] = true;
            EHR_ASSERT(depth < NODE_REFLECTION_FILES_MAX); /* each file is pushed once */
            stack[depth++] = dep;
        }
    }
    EHR_ASSERT(count <= ix->file_count);
    return count;
}

static int symbol_file(const struct reflection_index *ix, const char *name)
{
    for (uint32_t i = 0; i < ix->symbol_count; i++)
        if (strcmp(ix->symbols[i].name, name) == 0)
            return (int)ix->symbols[i].file;
    return -1;
}

/* What an answer holds while it is packed. */
struct answer_parts {
    Grpc__Reflection__V1alpha__FileDescriptorResponse files;
    ProtobufCBinaryData file_bytes[NODE_REFLECTION_FILES_MAX];
    Grpc__Reflection__V1alpha__ListServiceResponse list;
    Grpc__Reflection__V1alpha__ServiceResponse services[NODE_REFLECTION_SYMBOLS_MAX];
    Grpc__Reflection__V1alpha__ServiceResponse *service_ptrs[NODE_REFLECTION_SYMBOLS_MAX];
    Grpc__Reflection__V1alpha__ErrorResponse error;
    char message[RPC_STATUS_MESSAGE_BYTES_MAX];
};

static void answer_error(reflection_response *r, struct answer_parts *p, enum rpc_status code)
{
    grpc__reflection__v1alpha__error_response__init(&p->error);
    p->error.error_code = (int32_t)code;
    p->error.error_message = p->message;
    r->message_response_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    r->error_response = &p->error;
}

static void answer_files(reflection_response *r, struct answer_parts *p,
                         const struct reflection_index *ix, uint32_t file)
{
    grpc__reflection__v1alpha__file_descriptor_response__init(&p->files);
    p->files.n_file_descriptor_proto = file_closure(ix, file, p->file_bytes);
    p->files.file_descriptor_proto = p->file_bytes;
    r->message_response_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    r->file_descriptor_response = &p->files;
}

static void answer_services(reflection_response *r, struct answer_parts *p,
                            const struct reflection_index *ix)
{
    grpc__reflection__v1alpha__list_service_response__init(&p->list);
    size_t n = 0;
    for (uint32_t i = 0; i < ix->symbol_count; i++) {
        if (!ix->symbols[i].service)
            continue;
        grpc__reflection__v1alpha__service_response__init(&p->services[n]);
        p->services[n].name = (char *)ix->symbols[i].name; /* only read */
        p->service_ptrs[n] = &p->services[n];
        n++;
    }
    p->list.n_service = n;
    p->list.service = p->service_ptrs;
    r->message_response_case =
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    r->list_services_response = &p->list;
}

/* Fill R (the request's echo set already) with the answer to Q. */
static void answer_fill(reflection_response *r, struct answer_parts *p,
                        const struct reflection_index *ix, const reflection_request *q)
{
    int file;
    switch (q->message_request_case) {
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        answer_services(r, p, ix);
        return;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = file_find(ix, q->file_by_filename, strlen(q->file_by_filename));
        if (file >= 0) {
            answer_files(r, p, ix, (uint32_t)file);
            return;
        }
        snprintf(p->message, sizeof p->message,
                 "no file %s among this node's services' files; file_containing_symbol "
                 "finds a service's",
                 q->file_by_filename);
        answer_error(r, p, RPC_STATUS_NOT_FOUND);
        return;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        file = symbol_file(ix, q->file_containing_symbol);
        if (file >= 0) {
            answer_files(r, p, ix, (uint32_t)file);
            return;
        }
        snprintf(p->message, sizeof p->message,
                 "no symbol %s in this node's services (a fully qualified service, method, "
                 "message or enum name; list_services names the services)",
                 q->file_containing_symbol);
        answer_error(r, p, RPC_STATUS_NOT_FOUND);
        return;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        snprintf(p->message, sizeof p->message,
                 "no extension %d of %s: this node's files define no extensions",
                 (int)q->file_containing_extension->extension_number,
                 q->file_containing_extension->containing_type);
        answer_error(r, p, RPC_STATUS_NOT_FOUND);
        return;
    case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        snprintf(p->message, sizeof p->message,
                 "no extensions of %s: this node's files define no extensions",
                 q->all_extension_numbers_of_type);
        answer_error(r, p, RPC_STATUS_NOT_FOUND);
        return;
    default:
        snprintf(p->message, sizeof p->message,
                 "the request asks nothing: set one of list_services, file_by_filename, "
                 "file_containing_symbol, file_containing_extension, "
                 "all_extension_numbers_of_type");
        answer_error(r, p, RPC_STATUS_INVALID_ARGUMENT);
        return;
    }
}

/*
 * Whether M kept an unknown field numbered 0. No such field exists in
 * protobuf, but protobuf-c keeps one read from a padded key (0x80 0x00)
 * and would write it back, in the echoed request, as a lone 0x00 byte that
 * no reader accepts: a request holding one is malformed.
 */
static bool has_field_zero(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return true;
    return false;
}

int reflection_answer(const struct reflection_index *index, const uint8_t *request,
                      size_t request_len, size_t answer_bytes_max, uint8_t **answer,
                      size_t *answer_len, ehr_diag *diag)
{
    EHR_ASSERT(index != NULL);
    EHR_ASSERT(answer != NULL && answer_len != NULL);
    if (request_len > NODE_REFLECTION_REQUEST_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG,
                             "a reflection request of %zu bytes is over the limit of %d bytes",
                             request_len, NODE_REFLECTION_REQUEST_BYTES_MAX);
    reflection_request *q =
        grpc__reflection__v1alpha__server_reflection_request__unpack(NULL, request_len, request);
    if (q == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "malformed request: not a ServerReflectionRequest");
    bool extension =
        q->message_request_case ==
        GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    if (has_field_zero(&q->base) ||
        (extension && has_field_zero(&q->file_containing_extension->base))) {
        grpc__reflection__v1alpha__server_reflection_request__free_unpacked(q, NULL);
        return ehr_diag_fail(diag, EHR_EINVAL, "malformed request: a field numbered 0");
    }
    struct answer_parts *parts = ehr_calloc(1, sizeof *parts);
    reflection_response r = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__INIT;
    r.valid_host = q->host;
    r.original_request = q;
    answer_fill(&r, parts, index, q);
    size_t len = grpc__reflection__v1alpha__server_reflection_response__get_packed_size(&r);
    if (len > answer_bytes_max) {
        snprintf(parts->message, sizeof parts->message,
                 "the answer is %zu bytes, over the limit of %zu bytes", len, answer_bytes_max);
        answer_error(&r, parts, RPC_STATUS_RESOURCE_EXHAUSTED);
        len = grpc__reflection__v1alpha__server_reflection_response__get_packed_size(&r);
    }
    uint8_t *out = ehr_malloc(len > 0 ? len : 1);
    size_t packed = grpc__reflection__v1alpha__server_reflection_response__pack(&r, out);
    EHR_ASSERT(packed == len);
    ehr_free(parts);
    grpc__reflection__v1alpha__server_reflection_request__free_unpacked(q, NULL);
    *answer = out;
    *answer_len = len;
    return 0;
}
