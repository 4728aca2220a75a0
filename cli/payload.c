/*
 * payload.c - a transaction payload from JSON, for `ehrctl tx submit
 * --payload FILE.json`: {"patient_enroll": {"patient_key": "<hex>", ...}}.
 *
 * The file names exactly one member of TxBody's `payload` oneof
 * (proto/ehr/v1/tx.proto) and gives its fields by their proto names. The
 * mapping is driven by the protobuf descriptors, so every payload type (and
 * any added later) is accepted without code of its own, and it is strict: an
 * unknown key, a value of the wrong JSON type, bytes that are not hex, a
 * number out of range or a duplicate key is refused with the key named
 * (`record_anchor.ciphertext_hash: not hex`). Bytes are hex, strings are
 * strings, integers are JSON integers (a uint64 may also be a decimal
 * string, as `tx show --json` prints values past 2^63), enums are their
 * names (MEMBER_ROLE_HOSPITAL), repeated fields are arrays. Fields left out
 * keep their proto3 defaults.
 *
 * Not here: whether the payload makes sense on the ledger (the node's
 * contracts decide) or the body around it (cmd_node.c).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_internal.h"
#include "ledger.h"

/* Room for a dotted key path such as consent_grant.record_ids[3]. */
enum { PATH_BYTES = 160 };

static void *alloc_cb(void *data, size_t size)
{
    return ehr_malloc(size);
}

static void free_cb(void *data, void *p)
{
    ehr_free(p);
}

static ProtobufCAllocator allocator = {alloc_cb, free_cb, NULL};

static int fail(ehr_diag *diag, const char *path, const char *text)
{
    return ehr_diag_fail(diag, EHR_EINVAL, "%s: %s", path, text);
}

static int message_from_json(const ProtobufCMessageDescriptor *desc, json_t *obj, const char *path,
                             ProtobufCMessage **out, ehr_diag *diag);

/* A uint64 from a JSON integer >= 0 or a decimal string. Returns 0 or EHR_EINVAL. */
static int u64_from_json(json_t *v, uint64_t max, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || (uint64_t)i > max)
            return EHR_EINVAL;
        *out = (uint64_t)i;
        return 0;
    }
    if (json_is_string(v))
        return cli__parse_u64(json_string_value(v), max, out);
    return EHR_EINVAL;
}

/* A signed integer from a JSON integer within [MIN, MAX]. */
static int i64_from_json(json_t *v, int64_t min, int64_t max, int64_t *out)
{
    if (!json_is_integer(v))
        return EHR_EINVAL;
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
        return EHR_EINVAL;
    *out = i;
    return 0;
}

/*
 * Store JSON value V as one value of field FD at P (the field itself, or one
 * element of a repeated field's array). Returns 0 or EHR_EINVAL with DIAG.
 */

static int value_from_json(const ProtobufCFieldDescriptor *fd, json_t *v, const char *path, void *p,
                           ehr_diag *diag)
{
    uint64_t u;
    int64_t i;
    switch (fd->type) {
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return fail(diag, path, "wants true or false");
        *(protobuf_c_boolean *)p = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (u64_from_json(v, UINT32_MAX, &u) != 0)
            return fail(diag, path, "wants an integer from 0 to 4294967295");
        *(uint32_t *)p = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (u64_from_json(v, UINT64_MAX, &u) != 0)
            return fail(diag, path, "wants an integer from 0 to 2^64-1");
        *(uint64_t *)p = u;
        return 0;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (i64_from_json(v, INT32_MIN, INT32_MAX, &i) != 0)
            return fail(diag, path, "wants a 32-bit integer");
        *(int32_t *)p = (int32_t)i;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (i64_from_json(v, INT64_MIN, INT64_MAX, &i) != 0)
            return fail(diag, path, "wants a 64-bit integer");
        *(int64_t *)p = i;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return fail(diag, path, "floating-point fields are not supported");
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = fd->descriptor;
        const ProtobufCEnumValue *ev =
            json_is_string(v) ? cli__enum_value(ed, json_string_value(v)) : NULL;
        if (ev == NULL) {
            char text[PATH_BYTES];
            const ProtobufCEnumValue *example = &ed->values[ed->n_values > 1 ? 1 : 0];
            char short_name[64];
            snprintf(short_name, sizeof short_name, "%s", example->name + cli__enum_prefix_len(ed));
            for (char *c = short_name; *c != '\0'; c++)
                *c = (char)tolower((unsigned char)*c);
            snprintf(text, sizeof text, "wants one of the %s names, e.g. \"%s\" or \"%s\"",
                     ed->short_name, example->name, short_name);
            return fail(diag, path, text);
        }
        *(int *)p = ev->value;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v))
            return fail(diag, path, "wants a string");
        size_t len = json_string_length(v);
        if (memchr(json_string_value(v), '\0', len) != NULL)
            return fail(diag, path, "a string with a NUL character");
        char *s = ehr_malloc(len + 1);
        memcpy(s, json_string_value(v), len + 1);
        *(char **)p = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (!json_is_string(v))
            return fail(diag, path, "wants a string of hex digits");
        size_t len = json_string_length(v);
        if (len % 2 != 0)
            return fail(diag, path, "not hex (an odd number of digits)");
        ProtobufCBinaryData *b = p;
        b->len = len / 2;
        b->data = b->len > 0 ? ehr_malloc(b->len) : NULL;
        if (b->len > 0 && ehr_hex_decode(b->data, b->len, json_string_value(v)) != 0) {
            ehr_free(b->data);
            b->data = NULL;
            b->len = 0;
            return fail(diag, path, "not hex");
        }
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return message_from_json(fd->descriptor, v, path, (ProtobufCMessage **)p, diag);
    }
    return fail(diag, path, "a field type ehrctl cannot fill");
}

/*
 * Fill a new message of type DESC from the JSON object OBJ. Returns 0 and
 * *OUT (free with protobuf_c_message_free_unpacked(*OUT, &allocator)), or
 * EHR_EINVAL with DIAG naming the key; *OUT is then NULL.
 */
static int message_from_json(const ProtobufCMessageDescriptor *desc, json_t *obj, const char *path,
                             ProtobufCMessage **out, ehr_diag *diag)
{
    EHR_ASSERT(desc->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    *out = NULL;
    if (!json_is_object(obj))
        return fail(diag, path, "wants an object {...}");
    ProtobufCMessage *msg = ehr_calloc(1, desc->sizeof_message);
    desc->message_init(msg);
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(obj, key, v)
    {
        char sub[PATH_BYTES];
        snprintf(sub, sizeof sub, "%s.%s", path, key);
        const ProtobufCFieldDescriptor *fd =
            protobuf_c_message_descriptor_get_field_by_name(desc, key);
        if (fd == NULL) {
            rc = ehr_diag_fail(diag, EHR_EINVAL, "unknown key \"%s\" (%s has no such field)", sub,
                               desc->short_name);
            break;
        }
        uint8_t *base = (uint8_t *)msg;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            if (!json_is_array(v)) {
                rc = fail(diag, sub, "wants an array [...]");
                break;
            }
            size_t count = json_array_size(v); /* bounded by the file's size */
            uint8_t *items = ehr_calloc(count > 0 ? count : 1, cli__repeated_element_bytes(fd));
            *(void **)(base + fd->offset) = items;
            for (size_t k = 0; k < count && rc == 0; k++) {
                char item_path[PATH_BYTES + 24];
                snprintf(item_path, sizeof item_path, "%s[%zu]", sub, k);
                rc = value_from_json(fd, json_array_get(v, k), item_path,
                                     items + k * cli__repeated_element_bytes(fd), diag);
                if (rc == 0)
                    *(size_t *)(base + fd->quantifier_offset) = k + 1;
            }
            if (rc != 0)
                break;
            continue;
        }
        if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0) {
            if (*(uint32_t *)(base + fd->quantifier_offset) != 0) {
                rc = fail(diag, sub, "a second member of the same oneof");
                break;
            }
        }
        rc = value_from_json(fd, v, sub, base + fd->offset, diag);
        if (rc != 0)
            break;
        if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0)
            *(uint32_t *)(base + fd->quantifier_offset) = fd->id;
    }
    if (rc != 0) {
        protobuf_c_message_free_unpacked(msg, &allocator);
        return rc;
    }
    *out = msg;
    return 0;
}

/* The payload members of TxBody's oneof, listed into OUT for messages. */
static void payload_names(char *out, size_t size)
{
    const ProtobufCMessageDescriptor *desc = &ehr__v1__tx_body__descriptor;
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &desc->fields[i];
        if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) == 0 || n >= size)
            continue;
        n += (size_t)snprintf(out + n, size - n, "%s%s", n > 0 ? ", " : "", fd->name);
    }
}

int cli__payload_from_json(json_t *root, Ehr__V1__TxBody *body, ehr_diag *diag)
{
    EHR_ASSERT(body->payload_case == EHR__V1__TX_BODY__PAYLOAD__NOT_SET);
    char names[PATH_BYTES * 2];
    payload_names(names, sizeof names);
    if (!json_is_object(root) || json_object_size(root) != 1)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "wants an object with exactly one payload key: one of %s", names);
    const char *key = json_object_iter_key(json_object_iter(root));
    json_t *value = json_object_iter_value(json_object_iter(root));
    const ProtobufCFieldDescriptor *fd =
        protobuf_c_message_descriptor_get_field_by_name(&ehr__v1__tx_body__descriptor, key);
    if (fd == NULL || (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) == 0 ||
        fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return ehr_diag_fail(diag, EHR_EINVAL, "unknown key \"%.64s\": the payload is one of %s",
                             key, names);
    ProtobufCMessage *payload;
    int rc = message_from_json(fd->descriptor, value, fd->name, &payload, diag);
    if (rc != 0)
        return rc;
    *(ProtobufCMessage **)((uint8_t *)body + fd->offset) = payload;
    body->payload_case = (Ehr__V1__TxBody__PayloadCase)fd->id;
    return 0;
}

void cli__payload_free(Ehr__V1__TxBody *body)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
        &ehr__v1__tx_body__descriptor, (unsigned)body->payload_case);
    if (fd == NULL)
        return;
    EHR_ASSERT(fd->type == PROTOBUF_C_TYPE_MESSAGE);
    ProtobufCMessage **slot = (ProtobufCMessage **)((uint8_t *)body + fd->offset);
    if (*slot != NULL)
        protobuf_c_message_free_unpacked(*slot, &allocator);
    *slot = NULL;
    body->payload_case = EHR__V1__TX_BODY__PAYLOAD__NOT_SET;
}
