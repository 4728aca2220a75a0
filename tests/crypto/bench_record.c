/*
 * bench_record - record encryption with its content hash, against
 * XChaCha20-Poly1305 alone, in the same run: what `ehrctl record add` and
 * `record get` spend per byte of a record besides I/O.
 *
 * The floor is libsodium's secretstream (XChaCha20-Poly1305) pushing the
 * record in 64 KiB pieces on one core, the cipher the record uses. Measured
 * against it, each as throughput / floor throughput (1.00 = the cipher's
 * speed):
 *   - encrypt + hash, one core: each piece encrypted, then its ciphertext
 *     hashed (ehr_content_hash: OpenSSL's SHA-256);
 *   - record add as built: each piece sealed into a slot of the hash pipe
 *     (ehr_hash_pipe, record.h), hashed on its thread while the next
 *     pieces are encrypted;
 *   - decrypt + hash, one core, a plain loop over the pieces;
 *   - record get as built: ehr_record_opener fed the ciphertext in 256 KiB
 *     chunks, hashing on this thread, and (as built) on the pipe's;
 *   - what record add did before its one-pass change: encrypt + hash,
 *     then encrypt again to upload;
 *   - the ceiling two threads reach on the machine as it is: the cipher on
 *     one and SHA-256 on another at once, with no hand-off (on a machine
 *     whose second core is busy, the pipelined figures cannot beat it);
 *   - the two hashes alone, OpenSSL's and libsodium's, for reference.
 *
 * Usage: bench_record [--mib N] [--rounds R]
 * A record of N MiB (default 64) in memory; each figure is the best of R
 * rounds, alternating with the floor round by round. Pins itself to the CPU
 * it starts on (the hash pipe's thread inherits the pin: see main). Prints
 * figures only.
 */
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "ehr_crypto.h"
#include "record.h"

#define PIECE_BYTES (64 * 1024)
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define CIPHER_PIECE_BYTES (PIECE_BYTES + ABYTES)
/* A hash pipe slot of record add and a GetBlob chunk: 256 KiB. */
enum { MIB_MAX = 4096, ROUNDS_MAX = 100, UPLOAD_SLOT_BYTES = 256 * 1024 };

struct fixture {
    uint8_t *plain;
    size_t len;
    size_t pieces;
    uint8_t *cipher; /* the whole record's ciphertext (for decrypt) */
    size_t cipher_len;
    uint8_t key[crypto_secretstream_xchacha20poly1305_KEYBYTES];
    uint8_t header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    /* The state the header was made with: every pass starts from a copy,
     * as record add does, so every pass makes the same ciphertext. */
    crypto_secretstream_xchacha20poly1305_state start;
    uint8_t out[CIPHER_PIECE_BYTES];
    uint8_t digest[32];
    volatile int sink;
};

typedef void (*bench_fn)(struct fixture *f);

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t piece_len(const struct fixture *f, size_t i)
{
    size_t off = i * PIECE_BYTES;
    return f->len - off < PIECE_BYTES ? f->len - off : PIECE_BYTES;
}

static void push_piece(struct fixture *f, crypto_secretstream_xchacha20poly1305_state *st, size_t i,
                       uint8_t *out)
{
    unsigned long long clen;
    crypto_secretstream_xchacha20poly1305_push(
        st, out, &clen, f->plain + i * PIECE_BYTES, piece_len(f, i), NULL, 0,
        i + 1 == f->pieces ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
}

static void floor_encrypt(struct fixture *f)
{
    crypto_secretstream_xchacha20poly1305_state st;
    memcpy(&st, &f->start, sizeof st);
    for (size_t i = 0; i < f->pieces; i++)
        push_piece(f, &st, i, f->out);
    f->sink += f->out[0];
}

static void op_encrypt_hash(struct fixture *f)
{
    crypto_secretstream_xchacha20poly1305_state st;
    struct ehr_content_hash h;
    ehr_content_hash_init(&h);
    memcpy(&st, &f->start, sizeof st);
    ehr_content_hash_update(&h, f->header, sizeof f->header);
    for (size_t i = 0; i < f->pieces; i++) {
        push_piece(f, &st, i, f->out);
        ehr_content_hash_update(&h, f->out, piece_len(f, i) + ABYTES);
    }
    ehr_content_hash_final(&h, f->digest);
    f->sink += f->digest[0];
}

/* record add before the one-pass change: encrypt + hash, then encrypt
 * again for the upload. */
static void op_record_add_passes(struct fixture *f)
{
    op_encrypt_hash(f);
    floor_encrypt(f);
}

static void op_decrypt_hash(struct fixture *f)
{
    crypto_secretstream_xchacha20poly1305_state st;
    struct ehr_content_hash h;
    ehr_content_hash_init(&h);
    const uint8_t *c = f->cipher;
    crypto_secretstream_xchacha20poly1305_init_pull(&st, c, f->key);
    ehr_content_hash_update(&h, c, crypto_secretstream_xchacha20poly1305_HEADERBYTES);
    c += crypto_secretstream_xchacha20poly1305_HEADERBYTES;
    uint8_t plain[PIECE_BYTES];
    for (size_t i = 0; i < f->pieces; i++) {
        size_t clen = piece_len(f, i) + ABYTES;
        ehr_content_hash_update(&h, c, clen);
        unsigned long long mlen;
        unsigned char tag;
        f->sink +=
            crypto_secretstream_xchacha20poly1305_pull(&st, plain, &mlen, &tag, c, clen, NULL, 0);
        c += clen;
    }
    ehr_content_hash_final(&h, f->digest);
    f->sink += f->digest[0] + plain[0];
}

static void op_openssl_sha256(struct fixture *f)
{
    struct ehr_content_hash h;
    ehr_content_hash_init(&h);
    ehr_content_hash_update(&h, f->plain, f->len);
    ehr_content_hash_final(&h, f->digest);
    f->sink += f->digest[0];
}

static void op_sodium_sha256(struct fixture *f)
{
    crypto_hash_sha256(f->digest, f->plain, f->len);
    f->sink += f->digest[0];
}

/* ---- encrypt or decrypt here, hash on a second thread (as built) ---- */

/* record add as built (cli/cmd_record_data.c): the pieces sealed straight
 * into the hash pipe's slots of UPLOAD_SLOT_BYTES, hashed on its thread
 * (record add's sink also spools them to a file: not timed here). */
static void op_encrypt_hash_pipe(struct fixture *f)
{
    struct ehr_hash_pipe *p;
    if (ehr_hash_pipe_start(&p, UPLOAD_SLOT_BYTES, NULL, NULL) != 0)
        abort();
    crypto_secretstream_xchacha20poly1305_state st;
    memcpy(&st, &f->start, sizeof st);
    uint8_t *slot = ehr_hash_pipe_slot(p);
    memcpy(slot, f->header, sizeof f->header);
    size_t fill = sizeof f->header;
    for (size_t i = 0; i < f->pieces; i++) {
        if (UPLOAD_SLOT_BYTES - fill < CIPHER_PIECE_BYTES) {
            ehr_hash_pipe_push(p, fill);
            slot = ehr_hash_pipe_slot(p);
            fill = 0;
        }
        push_piece(f, &st, i, slot + fill);
        fill += piece_len(f, i) + ABYTES;
    }
    ehr_hash_pipe_push(p, fill);
    if (ehr_hash_pipe_finish(p, f->digest) != 0)
        abort();
    f->sink += f->digest[0];
}

static void *hash_whole_cipher(void *arg)
{
    struct fixture *f = arg;
    struct ehr_content_hash h;
    ehr_content_hash_init(&h);
    ehr_content_hash_update(&h, f->cipher, f->cipher_len);
    ehr_content_hash_final(&h, f->digest);
    return NULL;
}

/* The ceiling for two threads on this machine now: the cipher over the
 * record on this thread and SHA-256 over its ciphertext on another, at the
 * same time, with no hand-off between them. Where the machine gives the
 * process two free cores this is ~1.0 (the slower of the two); where it
 * does not, the pipelined figures cannot beat it. */
static void op_two_threads_ceiling(struct fixture *f)
{
    pthread_t t;
    if (pthread_create(&t, NULL, hash_whole_cipher, f) != 0)
        abort();
    floor_encrypt(f);
    pthread_join(t, NULL);
    f->sink += f->digest[0];
}

static int discard(void *ctx, const uint8_t *plain, size_t len)
{
    struct fixture *f = ctx;
    f->sink += plain[len - 1];
    return 0;
}

/* record get: the ciphertext fed to ehr_record_opener in GetBlob-sized
 * chunks, hashed here or (as built) on the pipe's thread. */
static void record_get_opener(struct fixture *f, bool pipelined)
{
    struct ehr_record_opener o;
    if (pipelined) {
        if (ehr_record_opener_init_pipelined(&o, f->key, discard, f) != 0)
            abort();
    } else {
        ehr_record_opener_init(&o, f->key, discard, f);
    }
    size_t total = f->cipher_len;
    for (size_t off = 0; off < total; off += UPLOAD_SLOT_BYTES) {
        size_t n = total - off < UPLOAD_SLOT_BYTES ? total - off : UPLOAD_SLOT_BYTES;
        if (ehr_record_opener_feed(&o, f->cipher + off, n, NULL) != 0)
            abort();
    }
    if (ehr_record_opener_finish(&o, f->digest, NULL) != 0)
        abort();
    ehr_record_opener_clear(&o);
    f->sink += f->digest[0];
}

static void op_opener_one_core(struct fixture *f)
{
    record_get_opener(f, false);
}

static void op_opener_pipe(struct fixture *f)
{
    record_get_opener(f, true);
}

/* The CPU the process was pinned to (the floor's and the one-core
 * figures'), and every CPU (the two-thread figures'). */
static cpu_set_t pinned, every_cpu;

/* Best seconds of OP and of the floor over ROUNDS alternating rounds. OP
 * runs with every CPU allowed when TWO_THREADS (a thread inherits its
 * creator's CPUs: so the hash pipe's thread can have the other core),
 * pinned otherwise; the floor always runs pinned. */
static void report(const char *name, struct fixture *f, bench_fn op, int rounds, bool two_threads)
{
    double op_best = 1e9, floor_best = 1e9;
    for (int r = -1; r < rounds; r++) { /* round -1: a warm-up */
        if (two_threads)
            sched_setaffinity(0, sizeof every_cpu, &every_cpu);
        double t0 = now_seconds();
        op(f);
        double t1 = now_seconds();
        if (two_threads)
            sched_setaffinity(0, sizeof pinned, &pinned);
        double t2 = now_seconds();
        floor_encrypt(f);
        double t3 = now_seconds();
        if (r < 0)
            continue;
        if (t1 - t0 < op_best)
            op_best = t1 - t0;
        if (t3 - t2 < floor_best)
            floor_best = t3 - t2;
    }
    double mb = (double)f->len / 1e6;
    printf("%-44s %9.0f MB/s %9.0f MB/s %8.2f\n", name, mb / op_best, mb / floor_best,
           floor_best / op_best);
}

int main(int argc, char **argv)
{
    long mib = 64;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc)
            mib = bench_parse_long("bench_record", argv[++i], MIB_MAX);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = (int)bench_parse_long("bench_record", argv[++i], ROUNDS_MAX);
        else {
            fprintf(stderr, "usage: bench_record [--mib N] [--rounds R]\n");
            return 2;
        }
    }
    if (ehr_crypto_init() != 0) {
        fprintf(stderr, "bench_record: set-up failed\n");
        return 1;
    }
    static struct fixture f;
    f.len = (size_t)mib * 1024 * 1024 + 12345; /* not a whole number of pieces */
    f.pieces = f.len / PIECE_BYTES + 1;
    f.plain = malloc(f.len);
    f.cipher =
        malloc(crypto_secretstream_xchacha20poly1305_HEADERBYTES + f.len + f.pieces * ABYTES);
    if (f.plain == NULL || f.cipher == NULL) {
        fprintf(stderr, "bench_record: out of memory\n");
        return 1;
    }
    randombytes_buf(f.plain, f.len);
    crypto_secretstream_xchacha20poly1305_keygen(f.key);
    /* The record's ciphertext, for the decrypt figure; and the check that
     * each pass hashes exactly it. */
    crypto_secretstream_xchacha20poly1305_init_push(&f.start, f.header, f.key);
    crypto_secretstream_xchacha20poly1305_state st;
    memcpy(&st, &f.start, sizeof st);
    memcpy(f.cipher, f.header, sizeof f.header);
    size_t off = sizeof f.header;
    for (size_t i = 0; i < f.pieces; i++) {
        push_piece(&f, &st, i, f.cipher + off);
        off += piece_len(&f, i) + ABYTES;
    }
    f.cipher_len = off;
    uint8_t one[32], two[32], opened[32], whole[32];
    ehr_sha256(whole, f.cipher, off);
    op_encrypt_hash(&f);
    memcpy(one, f.digest, 32);
    op_encrypt_hash_pipe(&f);
    memcpy(two, f.digest, 32);
    op_opener_pipe(&f);
    memcpy(opened, f.digest, 32);
    if (memcmp(one, whole, 32) != 0 || memcmp(two, whole, 32) != 0 ||
        memcmp(opened, whole, 32) != 0) {
        fprintf(stderr, "bench_record: the hashes disagree\n");
        return 1;
    }
    CPU_ZERO(&every_cpu);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < cpus && c < CPU_SETSIZE; c++)
        CPU_SET((int)c, &every_cpu);
    bench_pin_to_current_cpu();
    if (sched_getaffinity(0, sizeof pinned, &pinned) != 0)
        pinned = every_cpu;
    printf("# a record of %ld MiB + 12345 bytes in 64 KiB pieces; best of %d rounds; floor = "
           "secretstream (XChaCha20-Poly1305) encryption alone, one core, same run; "
           "x floor = throughput / floor throughput\n",
           mib, rounds);
    printf("%-44s %14s %14s %8s\n", "operation", "throughput", "floor", "x floor");
    report("encrypt + hash, one core", &f, op_encrypt_hash, rounds, false);
    report("record add: encrypt, hash on a 2nd thread", &f, op_encrypt_hash_pipe, rounds, true);
    report("decrypt + hash, one core", &f, op_decrypt_hash, rounds, false);
    report("record get: opener, one core", &f, op_opener_one_core, rounds, false);
    report("record get: opener, hash on a 2nd thread", &f, op_opener_pipe, rounds, true);
    report("before: encrypt + hash, encrypt again", &f, op_record_add_passes, rounds, false);
    report("ceiling: encrypt | hash, 2 threads, no hand-off", &f, op_two_threads_ceiling, rounds,
           true);
    report("SHA-256 alone, OpenSSL (content hash)", &f, op_openssl_sha256, rounds, false);
    report("SHA-256 alone, libsodium", &f, op_sodium_sha256, rounds, false);
    sodium_memzero(f.key, sizeof f.key);
    free(f.plain);
    free(f.cipher);
    return 0;
}
