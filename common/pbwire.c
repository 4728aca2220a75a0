/*
 * pbwire.c - the part of the protobuf wire primitives that is not inline in
 * pbwire.h: the varint loop for two bytes and more, and its refusals.
 */
#include "pbwire.h"

int ehr_pb__varint_read_long(ehr_pb_reader *r, enum ehr_pb_rule rule, size_t bytes_max,
                             uint64_t *value)
{
    EHR_ASSERT(r->pos <= r->len);
    EHR_ASSERT(bytes_max == EHR_PB_VARINT_BYTES_MAX || bytes_max == EHR_PB_VARINT32_BYTES_MAX);
    size_t pos = r->pos;
    uint64_t v = 0;
    for (size_t i = 0; i < bytes_max; i++) {
        if (pos == r->len)
            return EHR_ETRUNCATED;
        uint8_t b = r->data[pos++];
        /* The 10th byte holds bit 63 alone; protobuf-c drops the rest. */
        if (i == EHR_PB_VARINT_BYTES_MAX - 1 && b > 1 && rule != EHR_PB_PROTOBUF_C)
            return EHR_EINVAL;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            if (b == 0 && i > 0 && rule == EHR_PB_MINIMAL)
                return EHR_EINVAL; /* a trailing zero group: padded */
            r->pos = pos;
            *value = v;
            return 0;
        }
    }
    return EHR_EINVAL; /* longer than BYTES_MAX */
}
