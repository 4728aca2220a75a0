/*
 * pbwire.h - the protobuf wire primitives the hand-written codecs share:
 * varints (size, write, read), field keys (field number and wire type) and
 * the header of a length-delimited field, over a bounded reader.
 *
 * Who uses it: the ledger's canonical framing parsers (ledger/wire.c and the
 * files that include ledger_internal.h), the PeerFrame body and handshake
 * codec of p2p (p2p/frame.c, p2p/handshake.c) and the consensus messages
 * (node/raft_wire.c). Each of them keeps its own rules in its own module:
 * which fields exist, in which order, how often, which wire type each takes,
 * the size limit of each, what an unknown field means, and which error code
 * the caller sees. Only the bytes-level primitives live here.
 *
 * Not here: messages, descriptors, allocation, fixed32/fixed64 values,
 * zigzag, groups, packed repeated fields. Nothing in this file allocates,
 * and the writers never check room: the caller sizes its buffer first
 * (ehr_pb_*_size, or the *_BYTES_MAX bounds below) and then writes. Writers
 * return the end of what they wrote (as protobuf's own CodedOutputStream
 * array writers do), so that writes chain without arithmetic.
 *
 * How strict a reader is: every read takes an `enum ehr_pb_rule`, so that a
 * caller states which encodings it accepts instead of inheriting one:
 *
 *   EHR_PB_MINIMAL     the canonical encoding only: a varint without
 *                      padding (no trailing 0x80 ... 0x00 groups) whose
 *                      value fits 64 bits. One value, one byte form: what
 *                      the ledger's stored and signed formats require.
 *   EHR_PB_PADDED      any varint of at most 10 bytes whose value fits 64
 *                      bits (the 10th byte is 0 or 1): padding is accepted,
 *                      in keys and lengths too, but a key or a length is at
 *                      most 5 bytes and at most UINT32_MAX, as protobuf-c
 *                      reads them (it refuses a key or a length padded to
 *                      6..10 bytes, so this rule does too).
 *   EHR_PB_PROTOBUF_C  what protobuf-c (1.4) reads: any varint of at most 10
 *                      bytes, bits past the 64th dropped; a key or a length
 *                      at most 5 bytes. A peer that may be written with
 *                      protobuf-c is read the way protobuf-c reads it.
 *
 * Under every rule a key is at most 5 bytes (EHR_PB_KEY_BYTES_MAX; a
 * minimal varint longer than that is over UINT32_MAX) and at most
 * UINT32_MAX, with a field number of 1 or more (so the number is
 * 1..EHR_PB_FIELD_NUMBER_MAX; protobuf-c would wrap a larger key, we refuse
 * it), and a length must not run past the end of the input.
 *
 * Readers: an ehr_pb_reader is a view of DATA[0..LEN) with a position; the
 * caller owns the bytes and the struct. Every read checks the bytes left
 * before it reads one. On success a read moves `pos` past what it read; on
 * error it leaves `pos` and its outputs unchanged. Errors: EHR_ETRUNCATED
 * when the input ends inside the item (or a length runs past the end),
 * EHR_EINVAL when the bytes break the rule. Callers map these to their own
 * codes (p2p answers EHR_EPROTO to both).
 *
 * Everything here is inline: the hot paths (a frame body, an append of a
 * thousand entries, a block's framing) call these per field, the build has
 * no link-time optimisation, and each call site passes a constant rule, so
 * the compiler folds the rule's branches away. Measured with bench_wire:
 * with the loop out of line the ledger's framing parse was ~25 % slower.
 */
#ifndef EHR_PBWIRE_H
#define EHR_PBWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

enum {
    EHR_PB_VARINT_BYTES_MAX = 10,         /* a 64-bit value */
    EHR_PB_VARINT32_BYTES_MAX = 5,        /* a 32-bit value: a key, a length */
    EHR_PB_FIELD_NUMBER_MAX = 0x1fffffff, /* 2^29 - 1: the key fits 32 bits */
    EHR_PB_KEY_BYTES_MAX = EHR_PB_VARINT32_BYTES_MAX,
    /* A length-delimited field's key and length. */
    EHR_PB_LEN_HEADER_BYTES_MAX = EHR_PB_KEY_BYTES_MAX + EHR_PB_VARINT_BYTES_MAX,
};

/* The wire types of a key's low 3 bits. 6 and 7 are unassigned. */
enum ehr_pb_wire_type {
    EHR_PB_WIRE_VARINT = 0,
    EHR_PB_WIRE_FIXED64 = 1,
    EHR_PB_WIRE_LEN = 2,
    EHR_PB_WIRE_GROUP_START = 3, /* deprecated groups: no codec here uses them */
    EHR_PB_WIRE_GROUP_END = 4,
    EHR_PB_WIRE_FIXED32 = 5,
};

/* Which encodings a read accepts: see the top of this file. */
enum ehr_pb_rule {
    EHR_PB_MINIMAL,
    EHR_PB_PADDED,
    EHR_PB_PROTOBUF_C,
};

typedef struct ehr_pb_reader {
    const uint8_t *data; /* may be NULL when len is 0 */
    size_t len;
    size_t pos; /* next byte to read; pos <= len always */
} ehr_pb_reader;

/* ---- writing ---- */

/* Bytes VALUE takes as a varint: 1..EHR_PB_VARINT_BYTES_MAX. */
static inline size_t ehr_pb_varint_size(uint64_t value)
{
    size_t n = 1;
    while (value >= 0x80) {
        value >>= 7;
        n++;
    }
    return n;
}

/* Write VALUE as a minimal varint at OUT, which has room for
 * ehr_pb_varint_size(VALUE) bytes. Returns the end: OUT + that size. */
static inline uint8_t *ehr_pb_varint_write(uint8_t *out, uint64_t value)
{
    while (value >= 0x80) {
        *out++ = (uint8_t)(value | 0x80);
        value >>= 7;
    }
    *out++ = (uint8_t)value;
    return out;
}

/*
 * The key of field FIELD with WIRE_TYPE: FIELD << 3 | WIRE_TYPE.
 * Preconditions, not asserted: FIELD is 1..EHR_PB_FIELD_NUMBER_MAX and
 * WIRE_TYPE 0..5. Every caller passes its schema's constants, which its
 * byte-for-byte tests against protobuf-c pin. Asserting them here cost
 * raft_wire's append encoder ~17 % at -O3 although GCC 12 folds every one
 * of them away (bench_wire, median over code layouts; the asserts change
 * how it lays out the per-entry loop), so the writers below do without.
 */
static inline uint32_t ehr_pb_key(uint32_t field, enum ehr_pb_wire_type wire_type)
{
    return field << 3 | (uint32_t)wire_type;
}

/* Bytes the key of FIELD (1..EHR_PB_FIELD_NUMBER_MAX) takes, whatever its
 * wire type: 1..EHR_PB_KEY_BYTES_MAX. */
static inline size_t ehr_pb_key_size(uint32_t field)
{
    return ehr_pb_varint_size((uint64_t)field << 3);
}

/* Write the key of FIELD with WIRE_TYPE at OUT (room for ehr_pb_key_size).
 * Returns the end. Preconditions as ehr_pb_key. */
static inline uint8_t *ehr_pb_key_write(uint8_t *out, uint32_t field,
                                        enum ehr_pb_wire_type wire_type)
{
    return ehr_pb_varint_write(out, ehr_pb_key(field, wire_type));
}

/* Bytes the header (key and length) of length-delimited field FIELD with
 * LEN content bytes takes, content not included. */
static inline size_t ehr_pb_len_header_size(uint32_t field, uint64_t len)
{
    return ehr_pb_key_size(field) + ehr_pb_varint_size(len);
}

/* Write the header of length-delimited field FIELD for LEN content bytes at
 * OUT (room for ehr_pb_len_header_size). Returns the end, where the caller
 * writes the content. */
static inline uint8_t *ehr_pb_len_header_write(uint8_t *out, uint32_t field, uint64_t len)
{
    return ehr_pb_varint_write(ehr_pb_key_write(out, field, EHR_PB_WIRE_LEN), len);
}

/* ---- reading ---- */

/* The loop behind the varint reads, for varints of 2 bytes or more (and
 * for the errors): at most BYTES_MAX (5 or 10) bytes under RULE. */
static inline int ehr_pb__varint_read_long(ehr_pb_reader *r, enum ehr_pb_rule rule,
                                           size_t bytes_max, uint64_t *value)
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

/*
 * Read a varint under RULE into *VALUE. Returns 0; EHR_ETRUNCATED if the
 * input ends before the varint does; EHR_EINVAL if it is longer than 10
 * bytes, or (EHR_PB_MINIMAL, EHR_PB_PADDED) its value needs more than 64
 * bits, or (EHR_PB_MINIMAL) it is padded.
 */
static inline int ehr_pb_varint_read(ehr_pb_reader *r, enum ehr_pb_rule rule, uint64_t *value)
{
    EHR_ASSERT(r->pos <= r->len);
    if (r->pos < r->len && r->data[r->pos] < 0x80) {
        *value = r->data[r->pos++];
        return 0;
    }
    return ehr_pb__varint_read_long(r, rule, EHR_PB_VARINT_BYTES_MAX, value);
}

/* A varint that must fit 32 bits (a key; a length under EHR_PB_PADDED and
 * EHR_PB_PROTOBUF_C): at most EHR_PB_VARINT32_BYTES_MAX (5) bytes, as
 * protobuf-c reads keys and lengths, and at most UINT32_MAX. Longer or
 * larger is EHR_EINVAL; the input ending inside the 5 bytes is
 * EHR_ETRUNCATED. Otherwise errors as ehr_pb_varint_read. */
static inline int ehr_pb__varint32_read(ehr_pb_reader *r, enum ehr_pb_rule rule, uint64_t *value)
{
    EHR_ASSERT(r->pos <= r->len);
    if (r->pos < r->len && r->data[r->pos] < 0x80) {
        *value = r->data[r->pos++];
        return 0;
    }
    size_t start = r->pos;
    uint64_t v = 0;
    int err = ehr_pb__varint_read_long(r, rule, EHR_PB_VARINT32_BYTES_MAX, &v);
    if (err != 0)
        return err;
    if (v > UINT32_MAX) {
        r->pos = start;
        return EHR_EINVAL;
    }
    *value = v;
    return 0;
}

/*
 * Read a field key under RULE: *FIELD gets its number
 * (1..EHR_PB_FIELD_NUMBER_MAX), *WIRE_TYPE its low 3 bits (0..7, unchecked:
 * the caller refuses the types it does not take, 3, 4, 6 and 7 included).
 * Returns 0; EHR_ETRUNCATED; EHR_EINVAL for a varint the rule refuses, a
 * key longer than 5 bytes, a key over UINT32_MAX or field number 0.
 */
static inline int ehr_pb_key_read(ehr_pb_reader *r, enum ehr_pb_rule rule, uint32_t *field,
                                  unsigned *wire_type)
{
    size_t start = r->pos;
    uint64_t key = 0;
    int err = ehr_pb__varint32_read(r, rule, &key);
    if (err != 0)
        return err;
    if (key >> 3 == 0) {
        r->pos = start;
        return EHR_EINVAL;
    }
    *field = (uint32_t)(key >> 3);
    *wire_type = (unsigned)(key & 7);
    return 0;
}

/*
 * Move past COUNT bytes (a fixed64 or fixed32 value, a field's content).
 * Returns 0, or EHR_ETRUNCATED if fewer than COUNT bytes are left.
 */
static inline int ehr_pb_skip(ehr_pb_reader *r, uint64_t count)
{
    EHR_ASSERT(r->pos <= r->len);
    if (count > r->len - r->pos)
        return EHR_ETRUNCATED;
    r->pos += (size_t)count;
    return 0;
}

/*
 * Read the length of a length-delimited field whose key was just read, and
 * its content: *CONTENT becomes a reader over the content bytes (inside R's
 * bytes, at position 0) and R moves past them. The length is checked
 * against the bytes left before it is used. Returns 0; EHR_ETRUNCATED if
 * the input ends inside the length or the content; EHR_EINVAL for a length
 * varint the rule refuses (under EHR_PB_PADDED and EHR_PB_PROTOBUF_C one
 * longer than 5 bytes or over UINT32_MAX too). A limit of the module's own
 * (a message size) is the caller's to check on CONTENT->len.
 */
static inline int ehr_pb_len_read(ehr_pb_reader *r, enum ehr_pb_rule rule, ehr_pb_reader *content)
{
    size_t start = r->pos;
    uint64_t len = 0;
    int err = rule == EHR_PB_MINIMAL ? ehr_pb_varint_read(r, rule, &len)
                                     : ehr_pb__varint32_read(r, rule, &len);
    if (err != 0)
        return err;
    const uint8_t *bytes = r->data + r->pos;
    if (ehr_pb_skip(r, len) != 0) {
        r->pos = start;
        return EHR_ETRUNCATED;
    }
    *content = (ehr_pb_reader){.data = bytes, .len = (size_t)len, .pos = 0};
    return 0;
}

#endif /* EHR_PBWIRE_H */
