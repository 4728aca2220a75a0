/*
 * fuzz_record.c - libFuzzer target for record encryption's decoders
 * (crypto/record.h), what `ehrctl record get` runs on bytes a node sends.
 * The first input byte picks a mode:
 *   0  the rest is a sealed pointer, opened with a fixed key: it must be
 *      refused or give a 32-byte id and a printable address;
 *   1  the rest is ciphertext, fed to an opener in pieces whose size the
 *      second byte picks: refused or opened, never a crash, and never more
 *      plaintext than ciphertext;
 *   2  the rest is plaintext (at most 3 pieces): sealed here, opened in
 *      pieces of the second byte's size, it must come back exactly with the
 *      ciphertext's hash; then one byte of the ciphertext that the third
 *      byte picks is flipped, and the opener must refuse it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ehr_crypto.h"
#include "record.h"

static const uint8_t key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

struct sink {
    uint8_t *data;
    size_t len, cap;
};

static int sink_write(void *ctx, const uint8_t *plain, size_t len)
{
    struct sink *s = ctx;
    if (s->len + len > s->cap)
        abort(); /* more plaintext than there can be */
    memcpy(s->data + s->len, plain, len);
    s->len += len;
    return 0;
}

static int open_in_steps(const uint8_t *c, size_t len, size_t step, struct sink *sink,
                         uint8_t hash[32])
{
    struct ehr_record_opener o;
    ehr_record_opener_init(&o, key, sink_write, sink);
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = ehr_record_opener_feed(&o, c + off, len - off < step ? len - off : step, NULL);
    if (rc == 0)
        rc = ehr_record_opener_finish(&o, hash, NULL);
    ehr_record_opener_clear(&o);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (ehr_crypto_init() != 0)
            abort();
        ready = 1;
    }
    if (size < 3)
        return 0;
    uint8_t mode = data[0] % 3;
    size_t step = (size_t)data[1] * 257 + 1;
    uint8_t hash[32];
    if (mode == 0) {
        uint8_t id[32];
        char address[EHR_RECORD_POINTER_ADDRESS_BYTES_MAX + 1];
        if (ehr_record_pointer_open(key, data + 1, size - 1, id, address, NULL) == 0 &&
            (address[0] == '\0' || strlen(address) > EHR_RECORD_POINTER_ADDRESS_BYTES_MAX))
            abort();
        return 0;
    }
    if (mode == 1) {
        struct sink sink = {.data = malloc(size + 1), .cap = size};
        (void)open_in_steps(data + 2, size - 2, step, &sink, hash);
        free(sink.data);
        return 0;
    }
    const uint8_t *plain = data + 3;
    size_t len = size - 3;
    if (len > 3 * EHR_RECORD_PIECE_BYTES)
        len = 3 * EHR_RECORD_PIECE_BYTES;
    struct ehr_record_sealer s;
    ehr_record_sealer_init(&s, key);
    size_t clen = (size_t)ehr_record_sealed_bytes(len);
    uint8_t *c = malloc(clen);
    memcpy(c, s.header, EHR_RECORD_HEADER_BYTES);
    crypto_secretstream_xchacha20poly1305_state st = s.start;
    size_t off = EHR_RECORD_HEADER_BYTES, done = 0;
    for (;;) {
        size_t n = len - done < EHR_RECORD_PIECE_BYTES ? len - done : EHR_RECORD_PIECE_BYTES;
        bool last = done + n == len;
        ehr_record_seal_piece(&st, plain + done, n, last, c + off);
        off += n + EHR_RECORD_ABYTES;
        done += n;
        if (last)
            break;
    }
    if (off != clen)
        abort();
    struct sink sink = {.data = malloc(len + 1), .cap = len};
    uint8_t want[32];
    ehr_sha256(want, c, clen);
    if (open_in_steps(c, clen, step, &sink, hash) != 0 || sink.len != len ||
        memcmp(sink.data, plain, len) != 0 || memcmp(hash, want, 32) != 0)
        abort(); /* a round trip that does not come back */
    c[(size_t)data[2] * 4099 % clen] ^= 0x01;
    sink.len = 0;
    if (open_in_steps(c, clen, step, &sink, hash) == 0)
        abort(); /* a flipped byte accepted */
    free(sink.data);
    free(c);
    return 0;
}
