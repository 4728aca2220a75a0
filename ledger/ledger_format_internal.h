/*
 * ledger_format_internal.h - what the formats' source files (wire.c, tx.c,
 * merkle.c, block.c) share with each other, with the store and with the
 * tests, but nothing else: the canonical protobuf wire reader and writer,
 * the canonical-encoding check, the transaction
 * check with a known hash and a key cache. No LMDB.
 *
 * Not a public interface: every name here has the `ledger__` prefix and may
 * change with the module.
 */
#ifndef EHR_LEDGER_FORMAT_INTERNAL_H
#define EHR_LEDGER_FORMAT_INTERNAL_H

#include <stdarg.h>

#include <protobuf-c/protobuf-c.h>

#include "ledger_format.h"
#include "pbwire.h"

/* ---- Canonical protobuf wire format ----
 * The framing parsers (envelope, block, stored records) accept only the
 * canonical encoding: fields in field-number order, minimal varints, no
 * unknown fields. The primitives are common/pbwire.h's, always under
 * EHR_PB_MINIMAL; what is the ledger's own is here: one-byte tags (every
 * field is numbered below 16), fields in order, each length within its
 * limits. A reader keeps a position in a bounded buffer; every read checks
 * the length first.
 */
enum {
    LEDGER__WIRE_VARINT = EHR_PB_WIRE_VARINT,
    LEDGER__WIRE_LEN = EHR_PB_WIRE_LEN,
    LEDGER__VARINT_BYTES_MAX = EHR_PB_VARINT_BYTES_MAX,
};

typedef ehr_pb_reader ledger__reader;

/* Read a minimal varint. Returns 0; EHR_ETRUNCATED; EHR_EINVAL (overlong,
 * over 64 bits, or not minimal). */
static inline int ledger__varint_read(ledger__reader *r, uint64_t *out)
{
    return ehr_pb_varint_read(r, EHR_PB_MINIMAL, out);
}

/* Peek whether the next bytes are the one-byte tag of FIELD with WIRE type
 * (all our fields are numbered below 16, so every tag is one byte). */
bool ledger__tag_next(const ledger__reader *r, unsigned field, unsigned wire);

/*
 * Read a length-delimited field FIELD whose tag is next: its bytes must be
 * LEN_MIN..LEN_MAX long. *OUT gets the offset of the content from
 * r->data. Returns 0; EHR_ETRUNCATED; EHR_EINVAL; EHR_ETOOBIG.
 */
int ledger__len_field_read(ledger__reader *r, unsigned field, size_t len_min, size_t len_max,
                           ledger_span *out);

/* Encoded size of V as a varint (1..10). */
static inline size_t ledger__varint_size(uint64_t v)
{
    return ehr_pb_varint_size(v);
}

/* Write V as a varint at P; returns the bytes written. */
static inline size_t ledger__varint_write(uint8_t *p, uint64_t v)
{
    return (size_t)(ehr_pb_varint_write(p, v) - p);
}

/*
 * Check that DATA is the canonical encoding of MSG (which was unpacked from
 * it): no unknown field in MSG or any message inside it, and packing MSG
 * again gives DATA byte for byte. Allocates nothing.
 * Returns true if canonical.
 */
bool ledger__proto_canonical(const ProtobufCMessage *msg, const uint8_t *data, size_t len);

/* ---- Transactions ---- */

/* The last signer key parsed, kept by a caller that checks many
 * transactions in a row (one per thread). Zero-initialise. */
typedef struct ledger__key_cache {
    ehr_public_key key;
    bool valid;
} ledger__key_cache;

/*
 * ledger_tx_check for callers that already hold the transaction's hash
 * (KNOWN_HASH, not NULL: it must be SHA-256 of the body) and/or a KEYS
 * cache (may be NULL). Same results and errors as ledger_tx_check.
 */
int ledger__tx_check(const uint8_t *bytes, size_t len, const ledger_tx_rules *rules,
                     const uint8_t known_hash[EHR_HASH_BYTES], ledger__key_cache *keys,
                     ledger_tx *out, ehr_diag *diag);

#endif /* EHR_LEDGER_FORMAT_INTERNAL_H */
