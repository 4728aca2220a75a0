/*
 * wire.c - the canonical protobuf wire reader and writer the ledger's
 * framing parsers share, the canonical-encoding check for messages decoded
 * with protobuf-c.
 *
 * Not a general protobuf library: it reads only what our formats use
 * (one-byte tags, varints, length-delimited fields) and refuses every
 * encoding but the canonical one. The varint and key primitives are
 * common/pbwire.h's under EHR_PB_MINIMAL; the ledger's rules (one-byte tags,
 * each field's length limits) are here.
 */
#include "ledger_format_internal.h"

#include <stdio.h>
#include <string.h>

bool ledger__tag_next(const ledger__reader *r, unsigned field, unsigned wire)
{
    EHR_ASSERT(field > 0);
    EHR_ASSERT(field < 16);
    return r->pos < r->len && r->data[r->pos] == (uint8_t)((field << 3) | wire);
}

int ledger__len_field_read(ledger__reader *r, unsigned field, size_t len_min, size_t len_max,
                           ledger_span *out)
{
    EHR_ASSERT(ledger__tag_next(r, field, LEDGER__WIRE_LEN));
    EHR_ASSERT(len_min <= len_max);
    r->pos++;
    uint64_t n;
    int rc = ledger__varint_read(r, &n);
    if (rc != 0)
        return rc;
    if (n > len_max)
        return EHR_ETOOBIG;
    if (n < len_min)
        return EHR_EINVAL;
    size_t offset = r->pos;
    rc = ehr_pb_skip(r, n);
    if (rc != 0)
        return rc;
    out->offset = (uint32_t)offset;
    out->length = (uint32_t)n;
    return 0;
}

/* True if MSG or any message inside it kept fields protobuf-c did not know. */
static bool proto_has_unknown(const ProtobufCMessage *msg)
{
    if (msg->n_unknown_fields != 0)
        return true;
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)msg;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t count = *(const size_t *)(const void *)(base + f->quantifier_offset);
            ProtobufCMessage *const *items =
                *(ProtobufCMessage *const *const *)(const void *)(base + f->offset);
            for (size_t j = 0; j < count; j++)
                if (proto_has_unknown(items[j]))
                    return true;
            continue;
        }
        /* A oneof member shares its storage with the other cases: read it
         * only when it is the case that is set. */
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
            *(const uint32_t *)(const void *)(base + f->quantifier_offset) != f->id)
            continue;
        const ProtobufCMessage *sub =
            *(const ProtobufCMessage *const *)(const void *)(base + f->offset);
        if (sub != NULL && proto_has_unknown(sub))
            return true;
    }
    return false;
}

/* A ProtobufCBuffer that compares what is packed with the expected bytes. */
typedef struct compare_buffer {
    ProtobufCBuffer base;
    const uint8_t *expect;
    size_t len;
    size_t pos;
    bool same;
} compare_buffer;

static void compare_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data)
{
    compare_buffer *c = (compare_buffer *)(void *)buffer;
    /* protobuf-c appends an empty bytes field (a decoded empty element of a
     * repeated bytes field) as (0, NULL): memcmp may not be given NULL, even
     * for no bytes. */
    if (len == 0)
        return;
    if (!c->same || len > c->len - c->pos || memcmp(c->expect + c->pos, data, len) != 0) {
        c->same = false;
        return;
    }
    c->pos += len;
}

bool ledger__proto_canonical(const ProtobufCMessage *msg, const uint8_t *data, size_t len)
{
    EHR_ASSERT(msg != NULL);
    if (proto_has_unknown(msg))
        return false;
    if (protobuf_c_message_get_packed_size(msg) != len)
        return false;
    compare_buffer c = {.base = {.append = compare_append}, .expect = data, .len = len};
    c.same = true;
    size_t packed = protobuf_c_message_pack_to_buffer(msg, &c.base);
    return c.same && packed == len && c.pos == len;
}
