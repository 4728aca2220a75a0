/*
 * records.c - the codecs of the node-local records in ledger.proto that sit
 * on the append path (StoredBlock framing, TxLocation): hand-written
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

size_t ledger__tx_location_write(uint8_t out[LEDGER__TX_LOCATION_BYTES_MAX],
                                 const ledger_tx_location *loc)
{
    size_t n = varint_field_write(out, 1, loc->height);
    n += varint_field_write(out + n, 2, loc->index);
    n += varint_field_write(out + n, 3, loc->offset);
    n += varint_field_write(out + n, 4, loc->length);
    EHR_ASSERT(n <= LEDGER__TX_LOCATION_BYTES_MAX);
    return n;
}

int ledger__tx_location_read(const uint8_t *data, size_t len, ledger_tx_location *loc)
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
    if (r.pos != len)
        return EHR_ECORRUPT;
    loc->height = v[1];
    loc->index = (uint32_t)v[2];
    loc->offset = (uint32_t)v[3];
    loc->length = (uint32_t)v[4];
    return 0;
}
