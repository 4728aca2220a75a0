/*
 * record.h - record encryption (docs/DESIGN.md, "Records, keys and proxy
 * re-encryption"; cli/README.md, "Records and their data"): the record
 * key's two subkeys, the sealed pointer (node, blob id), and the
 * ciphertext stream: libsodium's secretstream (XChaCha20-Poly1305), a
 * 24-byte header then the plaintext in EHR_RECORD_PIECE_BYTES pieces, the
 * last tagged FINAL (short, or full when the size is a multiple; an empty
 * record is one empty FINAL piece), each EHR_RECORD_ABYTES longer sealed.
 *
 * The sealing side is two calls around the caller's file reading (the
 * caller owns I/O); the opening side (ehr_record_opener) takes the
 * ciphertext as it arrives, in pieces of any size, hashes it
 * (ehr_content_hash, on this thread or on a second one: ehr_hash_pipe) and
 * hands the plaintext to a callback: the decoder of untrusted bytes,
 * fuzzed (tests/fuzz/record).
 *
 * Not here: where the record key comes from (pre.h), files, the network.
 */
#ifndef EHR_RECORD_H
#define EHR_RECORD_H

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ehr_crypto.h"

#define EHR_RECORD_STREAM_TAG "ehr.v1.record.stream"
#define EHR_RECORD_POINTER_TAG "ehr.v1.record.pointer"
#define EHR_RECORD_POINTER_MAGIC "EHRP"
enum {
    EHR_RECORD_KEY_BYTES = 32,
    EHR_RECORD_PIECE_BYTES = 64 * 1024, /* plaintext per piece */
    EHR_RECORD_ABYTES = crypto_secretstream_xchacha20poly1305_ABYTES,
    EHR_RECORD_SEALED_PIECE_BYTES = EHR_RECORD_PIECE_BYTES + EHR_RECORD_ABYTES,
    EHR_RECORD_HEADER_BYTES = crypto_secretstream_xchacha20poly1305_HEADERBYTES,
    EHR_RECORD_POINTER_VERSION = 1,
    EHR_RECORD_BLOB_ID_BYTES = 32,
    /* HOST:PORT of the node holding the blob: a DNS name's 253 and a port. */
    EHR_RECORD_POINTER_ADDRESS_BYTES_MAX = 253 + 8,
    EHR_RECORD_POINTER_NONCE_BYTES = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
    EHR_RECORD_POINTER_PLAIN_FIXED_BYTES = 4 + 1 + EHR_RECORD_BLOB_ID_BYTES,
    EHR_RECORD_POINTER_BYTES_MAX =
        EHR_RECORD_POINTER_NONCE_BYTES + EHR_RECORD_POINTER_PLAIN_FIXED_BYTES +
        EHR_RECORD_POINTER_ADDRESS_BYTES_MAX + crypto_aead_xchacha20poly1305_ietf_ABYTES,
};

/* The ciphertext's size for a plaintext of PLAIN_BYTES. */
uint64_t ehr_record_sealed_bytes(uint64_t plain_bytes);

/* The stream key and the pointer key: keyed BLAKE2b-256 of RECORD_KEY over
 * EHR_RECORD_STREAM_TAG and EHR_RECORD_POINTER_TAG. The caller wipes all three. */
void ehr_record_subkeys(const uint8_t record_key[EHR_RECORD_KEY_BYTES], uint8_t stream_key[32],
                        uint8_t pointer_key[32]);

/*
 * The pointer: EHR_RECORD_POINTER_MAGIC, the version byte, BLOB_ID and
 * ADDRESS (1..EHR_RECORD_POINTER_ADDRESS_BYTES_MAX printable ASCII bytes),
 * sealed with POINTER_KEY (XChaCha20-Poly1305, a random nonce first, the
 * tag as associated data) into OUT (EHR_RECORD_POINTER_BYTES_MAX). Returns
 * its length, or 0 for an ADDRESS out of bounds.
 */
size_t ehr_record_pointer_seal(const uint8_t pointer_key[32],
                               const uint8_t blob_id[EHR_RECORD_BLOB_ID_BYTES], const char *address,
                               uint8_t *out);
/* Open a pointer. Returns 0 with BLOB_ID and ADDRESS (NUL-terminated), or
 * EHR_EINVAL with a reason in DIAG: a length out of bounds, a seal that
 * does not open with POINTER_KEY, an unknown version, an address that is
 * empty or not printable. */
int ehr_record_pointer_open(const uint8_t pointer_key[32], const uint8_t *sealed, size_t len,
                            uint8_t blob_id[EHR_RECORD_BLOB_ID_BYTES],
                            char address[EHR_RECORD_POINTER_ADDRESS_BYTES_MAX + 1], ehr_diag *diag);

/* Sealing: the header and the first state once, then any number of passes
 * over the same plaintext from a copy of that state give the same bytes. */
struct ehr_record_sealer {
    crypto_secretstream_xchacha20poly1305_state start;
    uint8_t header[EHR_RECORD_HEADER_BYTES];
};
void ehr_record_sealer_init(struct ehr_record_sealer *s, const uint8_t stream_key[32]);
/* Seal one piece of N (<= EHR_RECORD_PIECE_BYTES) plaintext bytes with
 * STATE (a copy of S->start, advanced by each call) into OUT (N +
 * EHR_RECORD_ABYTES), LAST tagging it FINAL. */
void ehr_record_seal_piece(crypto_secretstream_xchacha20poly1305_state *state, const uint8_t *plain,
                           size_t n, bool last, uint8_t *out);
void ehr_record_sealer_wipe(struct ehr_record_sealer *s);

/*
 * The content hash on a second thread (hash_pipe.c): the caller takes a
 * slot (ehr_hash_pipe_slot, which waits while all EHR_HASH_PIPE_SLOTS are
 * in use), fills it and pushes it; the pipe's thread hashes the slots in
 * order and hands each to SINK (may be NULL), which runs on that thread.
 * So the caller encrypts or decrypts piece i+1 on its core while piece i
 * is hashed (and written) on another. One producer thread only.
 */
enum {
    EHR_HASH_PIPE_SLOTS = 8,
    /* A slot's largest size: a few sealed pieces. */
    EHR_HASH_PIPE_SLOT_BYTES_MAX = 4 * 1024 * 1024,
};
struct ehr_hash_pipe;
/* Where a pipe hands the bytes it hashed: 0, or an error (-errno) after
 * which it hashes and sinks nothing more. */
typedef int (*ehr_hash_pipe_sink_fn)(void *ctx, const uint8_t *data, size_t len);
/* Start a pipe of slots of SLOT_BYTES (1..EHR_HASH_PIPE_SLOT_BYTES_MAX).
 * Returns 0 with *OUT (ehr_hash_pipe_finish or _free releases it), or
 * -errno when the thread cannot be started (nothing to release). */
int ehr_hash_pipe_start(struct ehr_hash_pipe **out, size_t slot_bytes, ehr_hash_pipe_sink_fn sink,
                        void *sink_ctx);
/* The next slot to fill (slot_bytes long), waiting for one to be free. */
uint8_t *ehr_hash_pipe_slot(struct ehr_hash_pipe *p);
/* Hand over the slot taken, its first LEN bytes filled. */
void ehr_hash_pipe_push(struct ehr_hash_pipe *p, size_t len);
/* Copy LEN bytes into as many slots as they need and push them. */
void ehr_hash_pipe_write(struct ehr_hash_pipe *p, const uint8_t *data, size_t len);
/* The sink's first error so far, or 0. */
int ehr_hash_pipe_error(struct ehr_hash_pipe *p);
/* Wait until every slot pushed is hashed and sunk, stop the thread and
 * release P. Returns 0 with HASH (the SHA-256 of every byte pushed, in
 * order), or the sink's first error (HASH untouched). */
int ehr_hash_pipe_finish(struct ehr_hash_pipe *p, uint8_t hash[EHR_SHA256_BYTES]);
/* Stop and release without a hash (NULL is fine): an error path. */
void ehr_hash_pipe_free(struct ehr_hash_pipe *p);

/* Where an opener puts plaintext: 0, or an error that stops it. */
typedef int (*ehr_record_write_fn)(void *ctx, const uint8_t *plain, size_t len);

/* Opening: the ciphertext in pieces of any size. */
struct ehr_record_opener {
    crypto_secretstream_xchacha20poly1305_state state;
    uint8_t stream_key[32];
    struct ehr_content_hash hash; /* when PIPE is NULL */
    struct ehr_hash_pipe *pipe;   /* the hash on a second thread, or NULL */
    uint8_t *buf;                 /* one sealed piece (EHR_RECORD_SEALED_PIECE_BYTES) */
    uint8_t *plain;               /* EHR_RECORD_PIECE_BYTES */
    size_t buf_len;
    bool header_done;
    bool final_seen;
    uint64_t bytes; /* ciphertext fed */
    ehr_record_write_fn write;
    void *write_ctx;
    int err; /* the first failure: nothing more is done after it */
};
void ehr_record_opener_init(struct ehr_record_opener *o, const uint8_t stream_key[32],
                            ehr_record_write_fn write, void *write_ctx);
/* The same with the hash on a second thread (ehr_hash_pipe): each byte fed
 * is copied to the pipe, and decrypted here meanwhile. Returns 0, or
 * -errno when the thread cannot be started (then O is as after clear). */
int ehr_record_opener_init_pipelined(struct ehr_record_opener *o, const uint8_t stream_key[32],
                                     ehr_record_write_fn write, void *write_ctx);
/* Feed LEN ciphertext bytes. Returns 0, or (now and on every later call)
 * EHR_ECORRUPT for a header, piece or order that does not check, or the
 * write callback's error; with a reason in DIAG. A full piece is opened
 * only once a byte after it shows it is not the last. */
int ehr_record_opener_feed(struct ehr_record_opener *o, const uint8_t *data, size_t len,
                           ehr_diag *diag);
/* The end of the ciphertext: the last piece opened (it must be the FINAL
 * one). Returns 0 with HASH (the SHA-256 of every byte fed) or an error as
 * above (EHR_ECORRUPT "cut short" when the FINAL piece never came). */
int ehr_record_opener_finish(struct ehr_record_opener *o, uint8_t hash[EHR_SHA256_BYTES],
                             ehr_diag *diag);
/* Release and wipe (safe after finish, or instead of it). */
void ehr_record_opener_clear(struct ehr_record_opener *o);

#endif /* EHR_RECORD_H */
