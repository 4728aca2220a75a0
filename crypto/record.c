/*
 * record.c - record encryption (record.h): subkeys, the sealed pointer,
 * and the secretstream ciphertext sealed piece by piece and opened from
 * pieces of any size, hashed on this thread or on a second one
 * (hash_pipe.c).
 */
#include <string.h>

#include "record.h"

uint64_t ehr_record_sealed_bytes(uint64_t plain_bytes)
{
    /* Whole pieces, the last one FINAL (full when the size is a multiple);
     * an empty record is one empty FINAL piece. */
    uint64_t pieces =
        plain_bytes == 0 ? 1 : (plain_bytes + EHR_RECORD_PIECE_BYTES - 1) / EHR_RECORD_PIECE_BYTES;
    return EHR_RECORD_HEADER_BYTES + plain_bytes + pieces * EHR_RECORD_ABYTES;
}

void ehr_record_subkeys(const uint8_t record_key[EHR_RECORD_KEY_BYTES], uint8_t stream_key[32],
                        uint8_t pointer_key[32])
{
    crypto_generichash(stream_key, 32, (const uint8_t *)EHR_RECORD_STREAM_TAG,
                       sizeof EHR_RECORD_STREAM_TAG - 1, record_key, EHR_RECORD_KEY_BYTES);
    crypto_generichash(pointer_key, 32, (const uint8_t *)EHR_RECORD_POINTER_TAG,
                       sizeof EHR_RECORD_POINTER_TAG - 1, record_key, EHR_RECORD_KEY_BYTES);
}

static bool address_ok(const char *a, size_t len)
{
    if (len == 0 || len > EHR_RECORD_POINTER_ADDRESS_BYTES_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (a[i] <= 0x20 || a[i] >= 0x7f)
            return false;
    return true;
}

size_t ehr_record_pointer_seal(const uint8_t pointer_key[32],
                               const uint8_t blob_id[EHR_RECORD_BLOB_ID_BYTES], const char *address,
                               uint8_t *out)
{
    size_t alen = strnlen(address, EHR_RECORD_POINTER_ADDRESS_BYTES_MAX + 1);
    if (!address_ok(address, alen))
        return 0;
    uint8_t plain[EHR_RECORD_POINTER_PLAIN_FIXED_BYTES + EHR_RECORD_POINTER_ADDRESS_BYTES_MAX];
    memcpy(plain, EHR_RECORD_POINTER_MAGIC, 4);
    plain[4] = EHR_RECORD_POINTER_VERSION;
    memcpy(plain + 5, blob_id, EHR_RECORD_BLOB_ID_BYTES);
    memcpy(plain + EHR_RECORD_POINTER_PLAIN_FIXED_BYTES, address, alen);
    size_t plen = EHR_RECORD_POINTER_PLAIN_FIXED_BYTES + alen;
    randombytes_buf(out, EHR_RECORD_POINTER_NONCE_BYTES);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + EHR_RECORD_POINTER_NONCE_BYTES, &clen, plain,
                                               plen, (const uint8_t *)EHR_RECORD_POINTER_TAG,
                                               sizeof EHR_RECORD_POINTER_TAG - 1, NULL, out,
                                               pointer_key);
    sodium_memzero(plain, sizeof plain);
    size_t total = EHR_RECORD_POINTER_NONCE_BYTES + (size_t)clen;
    EHR_ASSERT(total <= EHR_RECORD_POINTER_BYTES_MAX);
    return total;
}

int ehr_record_pointer_open(const uint8_t pointer_key[32], const uint8_t *sealed, size_t len,
                            uint8_t blob_id[EHR_RECORD_BLOB_ID_BYTES],
                            char address[EHR_RECORD_POINTER_ADDRESS_BYTES_MAX + 1], ehr_diag *diag)
{
    enum { OVERHEAD = EHR_RECORD_POINTER_NONCE_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES };
    uint8_t plain[EHR_RECORD_POINTER_PLAIN_FIXED_BYTES + EHR_RECORD_POINTER_ADDRESS_BYTES_MAX];
    if (len < OVERHEAD + EHR_RECORD_POINTER_PLAIN_FIXED_BYTES + 1 ||
        len > EHR_RECORD_POINTER_BYTES_MAX)
        return ehr_diag_fail(
            diag, EHR_EINVAL, "a pointer of %zu bytes is not one record add makes (%d to %d)", len,
            OVERHEAD + EHR_RECORD_POINTER_PLAIN_FIXED_BYTES + 1, EHR_RECORD_POINTER_BYTES_MAX);
    unsigned long long plen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            plain, &plen, NULL, sealed + EHR_RECORD_POINTER_NONCE_BYTES,
            len - EHR_RECORD_POINTER_NONCE_BYTES, (const uint8_t *)EHR_RECORD_POINTER_TAG,
            sizeof EHR_RECORD_POINTER_TAG - 1, sealed, pointer_key) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "the pointer does not open with the record key");
    int rc = 0;
    size_t alen = (size_t)plen - EHR_RECORD_POINTER_PLAIN_FIXED_BYTES;
    if (memcmp(plain, EHR_RECORD_POINTER_MAGIC, 4) != 0 || plain[4] != EHR_RECORD_POINTER_VERSION) {
        rc = ehr_diag_fail(diag, EHR_EINVAL, "the pointer is of an unknown version");
    } else if (!address_ok((const char *)plain + EHR_RECORD_POINTER_PLAIN_FIXED_BYTES, alen)) {
        rc = ehr_diag_fail(diag, EHR_EINVAL, "the pointer's node address is not printable");
    } else {
        memcpy(blob_id, plain + 5, EHR_RECORD_BLOB_ID_BYTES);
        memcpy(address, plain + EHR_RECORD_POINTER_PLAIN_FIXED_BYTES, alen);
        address[alen] = '\0';
    }
    sodium_memzero(plain, sizeof plain);
    return rc;
}

void ehr_record_sealer_init(struct ehr_record_sealer *s, const uint8_t stream_key[32])
{
    crypto_secretstream_xchacha20poly1305_init_push(&s->start, s->header, stream_key);
}

void ehr_record_seal_piece(crypto_secretstream_xchacha20poly1305_state *state, const uint8_t *plain,
                           size_t n, bool last, uint8_t *out)
{
    EHR_ASSERT(n <= EHR_RECORD_PIECE_BYTES);
    EHR_ASSERT(last || n == EHR_RECORD_PIECE_BYTES); /* only the last is short */
    unsigned long long clen = 0;
    crypto_secretstream_xchacha20poly1305_push(
        state, out, &clen, plain, n, NULL, 0,
        last ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
    EHR_ASSERT(clen == n + EHR_RECORD_ABYTES);
}

void ehr_record_sealer_wipe(struct ehr_record_sealer *s)
{
    sodium_memzero(s, sizeof *s);
}

void ehr_record_opener_init(struct ehr_record_opener *o, const uint8_t stream_key[32],
                            ehr_record_write_fn write, void *write_ctx)
{
    memset(o, 0, sizeof *o);
    memcpy(o->stream_key, stream_key, 32);
    ehr_content_hash_init(&o->hash);
    o->buf = ehr_malloc(EHR_RECORD_SEALED_PIECE_BYTES);
    o->plain = ehr_malloc(EHR_RECORD_PIECE_BYTES);
    o->write = write;
    o->write_ctx = write_ctx;
}

int ehr_record_opener_init_pipelined(struct ehr_record_opener *o, const uint8_t stream_key[32],
                                     ehr_record_write_fn write, void *write_ctx)
{
    ehr_record_opener_init(o, stream_key, write, write_ctx);
    int rc = ehr_hash_pipe_start(&o->pipe, EHR_RECORD_SEALED_PIECE_BYTES, NULL, NULL);
    if (rc != 0) {
        o->pipe = NULL;
        ehr_record_opener_clear(o);
    }
    return rc;
}

static int opener_fail(struct ehr_record_opener *o, int err, ehr_diag *diag, const char *why)
{
    o->err = err;
    return ehr_diag_fail(diag, err, "%s", why);
}

/* Open the piece in BUF, the last one when LAST. */
static int opener_piece(struct ehr_record_opener *o, bool last, ehr_diag *diag)
{
    if (o->final_seen)
        return opener_fail(o, EHR_ECORRUPT, diag, "the ciphertext goes on after its final piece");
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&o->state, o->plain, &mlen, &tag, o->buf,
                                                   o->buf_len, NULL, 0) != 0)
        return opener_fail(o, EHR_ECORRUPT, diag,
                           "a piece does not decrypt (another key, or the ciphertext was altered)");
    bool is_final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    if (is_final != last)
        return opener_fail(o, EHR_ECORRUPT, diag,
                           is_final ? "the final piece is not the last"
                                    : "the ciphertext is cut short (no final piece)");
    if (tag != 0 && !is_final)
        return opener_fail(o, EHR_ECORRUPT, diag, "a piece carries an unknown tag");
    o->final_seen = is_final;
    o->buf_len = 0;
    if (mlen > 0) {
        int rc = o->write(o->write_ctx, o->plain, (size_t)mlen);
        if (rc != 0)
            return opener_fail(o, rc, diag, "the plaintext could not be written");
    }
    return 0;
}

int ehr_record_opener_feed(struct ehr_record_opener *o, const uint8_t *data, size_t len,
                           ehr_diag *diag)
{
    if (o->err != 0)
        return ehr_diag_fail(diag, o->err, "the ciphertext was refused already");
    if (o->pipe != NULL)
        ehr_hash_pipe_write(o->pipe, data, len);
    else
        ehr_content_hash_update(&o->hash, data, len);
    o->bytes += len;
    while (len > 0) {
        if (!o->header_done) {
            size_t take = EHR_RECORD_HEADER_BYTES - o->buf_len;
            take = take < len ? take : len;
            memcpy(o->buf + o->buf_len, data, take);
            o->buf_len += take;
            data += take;
            len -= take;
            if (o->buf_len == EHR_RECORD_HEADER_BYTES) {
                if (crypto_secretstream_xchacha20poly1305_init_pull(&o->state, o->buf,
                                                                    o->stream_key) != 0)
                    return opener_fail(o, EHR_ECORRUPT, diag, "the ciphertext's header is bad");
                o->header_done = true;
                o->buf_len = 0;
            }
            continue;
        }
        if (o->final_seen)
            return opener_fail(o, EHR_ECORRUPT, diag,
                               "the ciphertext goes on after its final piece");
        if (o->buf_len == EHR_RECORD_SEALED_PIECE_BYTES) {
            int rc = opener_piece(o, false, diag); /* a byte follows: not the last */
            if (rc != 0)
                return rc;
            continue;
        }
        size_t take = EHR_RECORD_SEALED_PIECE_BYTES - o->buf_len;
        take = take < len ? take : len;
        memcpy(o->buf + o->buf_len, data, take);
        o->buf_len += take;
        data += take;
        len -= take;
    }
    return 0;
}

int ehr_record_opener_finish(struct ehr_record_opener *o, uint8_t hash[EHR_SHA256_BYTES],
                             ehr_diag *diag)
{
    if (o->err != 0)
        return ehr_diag_fail(diag, o->err, "the ciphertext was refused already");
    if (!o->header_done)
        return opener_fail(o, EHR_ECORRUPT, diag, "the ciphertext is shorter than its header");
    if (!o->final_seen) {
        if (o->buf_len < EHR_RECORD_ABYTES)
            return opener_fail(o, EHR_ECORRUPT, diag,
                               "the ciphertext is cut short (no final piece)");
        int rc = opener_piece(o, true, diag);
        if (rc != 0)
            return rc;
    }
    if (o->pipe != NULL) {
        int rc = ehr_hash_pipe_finish(o->pipe, hash);
        o->pipe = NULL;
        EHR_ASSERT(rc == 0); /* the opener's pipe has no sink to fail */
    } else {
        ehr_content_hash_final(&o->hash, hash);
    }
    return 0;
}

void ehr_record_opener_clear(struct ehr_record_opener *o)
{
    ehr_hash_pipe_free(o->pipe);
    o->pipe = NULL;
    ehr_content_hash_clear(&o->hash);
    if (o->plain != NULL)
        sodium_memzero(o->plain, EHR_RECORD_PIECE_BYTES);
    ehr_free(o->plain);
    ehr_free(o->buf);
    sodium_memzero(o, sizeof *o);
}
