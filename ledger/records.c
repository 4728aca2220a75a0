/*
 * records.c - the codecs of the node-local records in ledger.proto that sit
 * on the append path (StoredBlock framing, TxLocation, StoredWrites): hand-written
 * canonical encoders and decoders, so an append writes the block bytes once,
 * straight into LMDB's page, and a tx-index row costs no allocation. The
 * tests check them against protobuf-c's own encoding of the same messages.
 *
 * Not here: the rarely written records (ChainTip, ChainInfo), which store.c
 * packs with protobuf-c.
 */
#include "ledger_internal.h"

#include <sodium.h>
#include <string.h>

_Static_assert(crypto_generichash_BYTES == LEDGER__CHECKSUM_BYTES, "BLAKE2b-256 checksum");
_Static_assert(EHR_BLOCK_BYTES_MAX < (1 << 28), "block length fits a 4-byte varint");

void ledger__height_key(uint8_t out[8], uint64_t height)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)height;
        height >>= 8;
    }
}

void ledger__block_checksum(uint8_t out[LEDGER__CHECKSUM_BYTES], uint64_t height,
                            const uint8_t *block, size_t block_len)
{
    /* libsodium's BLAKE2b: the checksum only guards against storage faults,
     * and BLAKE2b runs about three times as fast as its SHA-256 here. */
    crypto_generichash_state st;
    uint8_t key[8];
    ledger__height_key(key, height);
    crypto_generichash_init(&st, NULL, 0, LEDGER__CHECKSUM_BYTES);
    crypto_generichash_update(&st, key, sizeof key);
    crypto_generichash_update(&st, block, block_len);
    crypto_generichash_final(&st, out, LEDGER__CHECKSUM_BYTES);
}

size_t ledger__stored_block_prefix_size(size_t block_len)
{
    EHR_ASSERT(block_len <= EHR_BLOCK_BYTES_MAX);
    return 2 + LEDGER__CHECKSUM_BYTES + 1 + ledger__varint_size(block_len);
}

size_t ledger__stored_block_prefix_write(uint8_t *out, uint64_t height, const uint8_t *block,
                                         size_t block_len)
{
    size_t n = 0;
    out[n++] = (1 << 3) | LEDGER__WIRE_LEN;
    out[n++] = LEDGER__CHECKSUM_BYTES;
    ledger__block_checksum(out + n, height, block, block_len);
    n += LEDGER__CHECKSUM_BYTES;
    out[n++] = (2 << 3) | LEDGER__WIRE_LEN;
    n += ledger__varint_write(out + n, block_len);
    EHR_ASSERT(n == ledger__stored_block_prefix_size(block_len));
    return n;
}

int ledger__stored_block_locate(const uint8_t *record, size_t record_len, const uint8_t **block,
                                size_t *block_len, const uint8_t **checksum)
{
    ledger__reader r = {.data = record, .len = record_len};
    ledger_span sum, body;
    if (!ledger__tag_next(&r, 1, LEDGER__WIRE_LEN) ||
        ledger__len_field_read(&r, 1, LEDGER__CHECKSUM_BYTES, LEDGER__CHECKSUM_BYTES, &sum) != 0)
        return EHR_ECORRUPT;
    if (!ledger__tag_next(&r, 2, LEDGER__WIRE_LEN) ||
        ledger__len_field_read(&r, 2, 1, EHR_BLOCK_BYTES_MAX, &body) != 0 || r.pos != record_len)
        return EHR_ECORRUPT;
    *block = record + body.offset;
    *block_len = body.length;
    if (checksum != NULL)
        *checksum = record + sum.offset;
    return 0;
}

int ledger__stored_block_open(const uint8_t *record, size_t record_len, uint64_t height,
                              const uint8_t **block, size_t *block_len)
{
    const uint8_t *stored;
    int rc = ledger__stored_block_locate(record, record_len, block, block_len, &stored);
    if (rc != 0)
        return rc;
    uint8_t sum[LEDGER__CHECKSUM_BYTES];
    ledger__block_checksum(sum, height, *block, *block_len);
    if (sodium_memcmp(sum, stored, LEDGER__CHECKSUM_BYTES) != 0)
        return EHR_ECORRUPT;
    return 0;
}

static size_t varint_field_write(uint8_t *p, unsigned field, uint64_t v)
{
    if (v == 0)
        return 0; /* proto3: a default value is not written */
    p[0] = (uint8_t)((field << 3) | LEDGER__WIRE_VARINT);
    return 1 + ledger__varint_write(p + 1, v);
}

/* A tagged bytes field (proto3: an empty one is not written, unless
 * ALWAYS: an element of a repeated field). Returns the bytes written. */
static size_t bytes_field_write(uint8_t *p, unsigned field, ledger_bytes b, bool always)
{
    if (b.len == 0 && !always)
        return 0;
    p[0] = (uint8_t)((field << 3) | LEDGER__WIRE_LEN);
    size_t n = 1 + ledger__varint_write(p + 1, b.len);
    if (b.len > 0)
        memcpy(p + n, b.data, b.len);
    return n + b.len;
}

static size_t bytes_field_size(size_t len)
{
    return 1 + ledger__varint_size(len) + len;
}

size_t ledger__tx_location_write(uint8_t out[LEDGER__TX_LOCATION_BYTES_MAX],
                                 const ledger_tx_location *loc, ledger_bytes result)
{
    EHR_ASSERT(result.len <= EHR_TX_RESULT_BYTES_MAX);
    size_t n = varint_field_write(out, 1, loc->height);
    n += varint_field_write(out + n, 2, loc->index);
    n += varint_field_write(out + n, 3, loc->offset);
    n += varint_field_write(out + n, 4, loc->length);
    n += bytes_field_write(out + n, 5, result, false);
    EHR_ASSERT(n <= LEDGER__TX_LOCATION_BYTES_MAX);
    return n;
}

int ledger__tx_location_read(const uint8_t *data, size_t len, ledger_tx_location *loc,
                             ledger_bytes *result)
{
    uint64_t v[5] = {0};
    ledger__reader r = {.data = data, .len = len};
    for (unsigned field = 1; field <= 4; field++) {
        if (!ledger__tag_next(&r, field, LEDGER__WIRE_VARINT))
            continue;
        r.pos++;
        if (ledger__varint_read(&r, &v[field]) != 0 || v[field] == 0)
            return EHR_ECORRUPT;
        if (field > 1 && v[field] > UINT32_MAX)
            return EHR_ECORRUPT;
    }
    ledger_span res = {0, 0};
    /* Canonical: an empty result is not written (length 1 at least). */
    if (ledger__tag_next(&r, 5, LEDGER__WIRE_LEN) &&
        ledger__len_field_read(&r, 5, 1, EHR_TX_RESULT_BYTES_MAX, &res) != 0)
        return EHR_ECORRUPT;
    if (r.pos != len)
        return EHR_ECORRUPT;
    loc->height = v[1];
    loc->index = (uint32_t)v[2];
    loc->offset = (uint32_t)v[3];
    loc->length = (uint32_t)v[4];
    if (result != NULL)
        *result = (ledger_bytes){res.length > 0 ? data + res.offset : NULL, res.length};
    return 0;
}

/* ---- StoredWrites: a block's world-state writes and results (the write log) ---- */

/* The encoded StateWrite of W (without its own tag and length). */
static size_t state_write_size(const ledger_state_write *w)
{
    size_t n = 1 + ledger__varint_size(w->key_len) + w->key_len;
    if (w->remove)
        n += 2;
    else if (w->value_len > 0)
        n += 1 + ledger__varint_size(w->value_len) + w->value_len;
    return n;
}

size_t ledger__writes_record_size(const ledger__write_log *log)
{
    EHR_ASSERT(log->write_count == 0 || log->writes != NULL);
    EHR_ASSERT(log->result_count == 0 || log->results != NULL);
    size_t n = 2 + LEDGER__CHECKSUM_BYTES;
    for (size_t i = 0; i < log->write_count; i++)
        n += bytes_field_size(state_write_size(&log->writes[i]));
    for (size_t i = 0; i < log->result_count; i++)
        n += bytes_field_size(log->results[i].len);
    return n;
}

static void writes_checksum(uint8_t out[LEDGER__CHECKSUM_BYTES], uint64_t height,
                            const uint8_t *body, size_t body_len)
{
    /* The same construction as a stored block's checksum. */
    ledger__block_checksum(out, height, body, body_len);
}

size_t ledger__writes_record_write(uint8_t *out, size_t size, uint64_t height,
                                   const ledger__write_log *log)
{
    EHR_ASSERT(size == ledger__writes_record_size(log));
    size_t n = 2 + LEDGER__CHECKSUM_BYTES;
    for (size_t i = 0; i < log->write_count; i++) {
        const ledger_state_write *w = &log->writes[i];
        out[n++] = (2 << 3) | LEDGER__WIRE_LEN;
        n += ledger__varint_write(out + n, state_write_size(w));
        out[n++] = (1 << 3) | LEDGER__WIRE_LEN;
        n += ledger__varint_write(out + n, w->key_len);
        memcpy(out + n, w->key, w->key_len);
        n += w->key_len;
        if (w->remove) {
            out[n++] = (3 << 3) | LEDGER__WIRE_VARINT;
            out[n++] = 1;
        } else if (w->value_len > 0) {
            out[n++] = (2 << 3) | LEDGER__WIRE_LEN;
            n += ledger__varint_write(out + n, w->value_len);
            memcpy(out + n, w->value, w->value_len);
            n += w->value_len;
        }
    }
    /* Every result, the empty ones too: the count is the block's. */
    for (size_t i = 0; i < log->result_count; i++) {
        EHR_ASSERT(log->results[i].len <= EHR_TX_RESULT_BYTES_MAX);
        n += bytes_field_write(out + n, 3, log->results[i], true);
    }
    EHR_ASSERT(n == size);
    out[0] = (1 << 3) | LEDGER__WIRE_LEN;
    out[1] = LEDGER__CHECKSUM_BYTES;
    writes_checksum(out + 2, height, out + 2 + LEDGER__CHECKSUM_BYTES,
                    size - 2 - LEDGER__CHECKSUM_BYTES);
    return n;
}

/* Decode one canonical StateWrite of SUB_LEN bytes at R's position. */
static int state_write_read(ledger__reader *r, size_t sub_len, ledger_state_write *w)
{
    ledger__reader s = {.data = r->data + r->pos, .len = sub_len};
    ledger_span key, value = {0, 0};
    if (!ledger__tag_next(&s, 1, LEDGER__WIRE_LEN) ||
        ledger__len_field_read(&s, 1, 1, EHR_STATE_KEY_BYTES_MAX, &key) != 0)
        return EHR_ECORRUPT;
    bool remove = false;
    if (ledger__tag_next(&s, 2, LEDGER__WIRE_LEN) &&
        ledger__len_field_read(&s, 2, 1, EHR_STATE_VALUE_BYTES_MAX, &value) != 0)
        return EHR_ECORRUPT;
    if (ledger__tag_next(&s, 3, LEDGER__WIRE_VARINT)) {
        /* Canonical: true is the one value written, and never with a value. */
        if (s.len - s.pos < 2 || s.data[s.pos + 1] != 1 || value.length > 0)
            return EHR_ECORRUPT;
        s.pos += 2;
        remove = true;
    }
    if (s.pos != s.len)
        return EHR_ECORRUPT;
    *w = (ledger_state_write){.key = s.data + key.offset,
                              .key_len = key.length,
                              .value = value.length > 0 ? s.data + value.offset : NULL,
                              .value_len = value.length,
                              .remove = remove};
    r->pos += sub_len;
    return 0;
}

int ledger__writes_record_open(const uint8_t *record, size_t record_len, uint64_t height,
                               ledger__write_log *log)
{
    EHR_ASSERT(log != NULL);
    memset(log, 0, sizeof *log);
    ledger__reader r = {.data = record, .len = record_len};
    ledger_span sum;
    if (!ledger__tag_next(&r, 1, LEDGER__WIRE_LEN) ||
        ledger__len_field_read(&r, 1, LEDGER__CHECKSUM_BYTES, LEDGER__CHECKSUM_BYTES, &sum) != 0)
        return EHR_ECORRUPT;
    uint8_t expect[LEDGER__CHECKSUM_BYTES];
    writes_checksum(expect, height, record + r.pos, record_len - r.pos);
    if (sodium_memcmp(expect, record + sum.offset, LEDGER__CHECKSUM_BYTES) != 0)
        return EHR_ECORRUPT;
    /* Two passes: count the entries (framing only: the writes, then the
     * results, in field order), then decode them. */
    size_t body = r.pos, n = 0, m = 0;
    ledger_span sub;
    while (ledger__tag_next(&r, 2, LEDGER__WIRE_LEN)) {
        if (n == EHR_BLOCK_STATE_WRITES_MAX ||
            ledger__len_field_read(&r, 2, 1, EHR_BLOCK_STATE_BYTES_MAX, &sub) != 0)
            return EHR_ECORRUPT;
        n++;
    }
    size_t results_at = r.pos;
    while (ledger__tag_next(&r, 3, LEDGER__WIRE_LEN)) {
        if (m == EHR_BLOCK_TX_COUNT_MAX)
            return EHR_ETOOBIG;
        int rc = ledger__len_field_read(&r, 3, 0, EHR_TX_RESULT_BYTES_MAX, &sub);
        if (rc != 0)
            return rc == EHR_ETOOBIG ? EHR_ETOOBIG : EHR_ECORRUPT;
        m++;
    }
    if (r.pos != record_len)
        return EHR_ECORRUPT;
    if (n == 0 && m == 0)
        return 0;
    /* One allocation for both arrays: the results after the writes. */
    ledger_state_write *writes = ehr_malloc(n * sizeof *writes + m * sizeof(ledger_bytes));
    ledger_bytes *results = (ledger_bytes *)(writes + n);
    _Static_assert(_Alignof(ledger_bytes) <= _Alignof(ledger_state_write), "results follow writes");
    r.pos = body;
    for (size_t i = 0; i < n; i++) {
        uint64_t sub_len;
        r.pos++; /* the tag, checked above */
        int rc = ledger__varint_read(&r, &sub_len);
        EHR_ASSERT(rc == 0);
        if (state_write_read(&r, (size_t)sub_len, &writes[i]) != 0) {
            ehr_free(writes);
            return EHR_ECORRUPT;
        }
    }
    EHR_ASSERT(r.pos == results_at);
    for (size_t i = 0; i < m; i++) {
        int rc = ledger__len_field_read(&r, 3, 0, EHR_TX_RESULT_BYTES_MAX, &sub);
        EHR_ASSERT(rc == 0); /* checked above */
        results[i] = (ledger_bytes){sub.length > 0 ? record + sub.offset : NULL, sub.length};
    }
    EHR_ASSERT(r.pos == record_len);
    *log = (ledger__write_log){
        .writes = writes, .write_count = n, .results = results, .result_count = m, .mem = writes};
    return 0;
}

void ledger__write_log_release(ledger__write_log *log)
{
    ehr_free(log->mem);
    memset(log, 0, sizeof *log);
}
