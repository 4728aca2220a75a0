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
 *   - encrypt + hash, two threads: the same, the hash of piece i on a
 *     second thread while piece i+1 is encrypted (a ring of pieces);
 *   - decrypt + hash, one core (record get);
 *   - what record add does today: encrypt + hash, then encrypt again to
 *     upload (it names the blob id in PutBlob's header before the upload);
 *   - the two hashes alone, OpenSSL's and libsodium's, for reference.
 *
 * Usage: bench_record [--mib N] [--rounds R]
 * A record of N MiB (default 64) in memory; each figure is the best of R
 * rounds, alternating with the floor round by round. Pins itself to the CPU
 * it starts on (the second thread of the two-thread figure runs where the
 * kernel puts it). Prints figures only.
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

#define PIECE_BYTES (64 * 1024)
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define CIPHER_PIECE_BYTES (PIECE_BYTES + ABYTES)
enum { MIB_MAX = 4096, ROUNDS_MAX = 100, RING = 8 };

struct fixture {
    uint8_t *plain;
    size_t len;
    size_t pieces;
    uint8_t *cipher; /* the whole record's ciphertext (for decrypt) */
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

/* record add today: encrypt + hash, then encrypt again for the upload. */
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

/* ---- encrypt here, hash on a second thread ---- */

struct ring {
    uint8_t buf[RING][CIPHER_PIECE_BYTES];
    size_t len[RING];
    size_t produced, consumed; /* pieces */
    bool done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ehr_content_hash hash;
};

static void *hasher(void *arg)
{
    struct ring *r = arg;
    /* The main thread is pinned and a new thread inherits that: let this
     * one run on any CPU, so the kernel can give it the other core. */
    cpu_set_t all;
    CPU_ZERO(&all);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < cpus && c < CPU_SETSIZE; c++)
        CPU_SET((int)c, &all);
    pthread_setaffinity_np(pthread_self(), sizeof all, &all);
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (r->consumed == r->produced && !r->done)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->consumed == r->produced && r->done) {
            pthread_mutex_unlock(&r->mu);
            return NULL;
        }
        size_t slot = r->consumed % RING;
        pthread_mutex_unlock(&r->mu);
        ehr_content_hash_update(&r->hash, r->buf[slot], r->len[slot]);
        pthread_mutex_lock(&r->mu);
        r->consumed++;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
}

static void op_encrypt_hash_two_threads(struct fixture *f)
{
    static struct ring r;
    r.produced = r.consumed = 0;
    r.done = false;
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    ehr_content_hash_init(&r.hash);
    ehr_content_hash_update(&r.hash, f->header, sizeof f->header);
    pthread_t t;
    if (pthread_create(&t, NULL, hasher, &r) != 0)
        abort();
    crypto_secretstream_xchacha20poly1305_state st;
    memcpy(&st, &f->start, sizeof st);
    for (size_t i = 0; i < f->pieces; i++) {
        pthread_mutex_lock(&r.mu);
        while (r.produced - r.consumed == RING)
            pthread_cond_wait(&r.cv, &r.mu);
        size_t slot = r.produced % RING;
        pthread_mutex_unlock(&r.mu);
        push_piece(f, &st, i, r.buf[slot]);
        r.len[slot] = piece_len(f, i) + ABYTES;
        pthread_mutex_lock(&r.mu);
        r.produced++;
        pthread_cond_broadcast(&r.cv);
        pthread_mutex_unlock(&r.mu);
    }
    pthread_mutex_lock(&r.mu);
    r.done = true;
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    pthread_join(t, NULL);
    ehr_content_hash_final(&r.hash, f->digest);
    pthread_mutex_destroy(&r.mu);
    pthread_cond_destroy(&r.cv);
    f->sink += f->digest[0];
}

/* Best seconds of OP and of the floor over ROUNDS alternating rounds. */
static void report(const char *name, struct fixture *f, bench_fn op, int rounds)
{
    double op_best = 1e9, floor_best = 1e9;
    op(f); /* warm up */
    for (int r = 0; r < rounds; r++) {
        double t0 = now_seconds();
        op(f);
        double t1 = now_seconds();
        floor_encrypt(f);
        double t2 = now_seconds();
        if (t1 - t0 < op_best)
            op_best = t1 - t0;
        if (t2 - t1 < floor_best)
            floor_best = t2 - t1;
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
    uint8_t one[32], two[32], whole[32];
    ehr_sha256(whole, f.cipher, off);
    op_encrypt_hash(&f);
    memcpy(one, f.digest, 32);
    op_encrypt_hash_two_threads(&f);
    memcpy(two, f.digest, 32);
    if (memcmp(one, whole, 32) != 0 || memcmp(two, whole, 32) != 0) {
        fprintf(stderr, "bench_record: the hashes disagree\n");
        return 1;
    }
    bench_pin_to_current_cpu();
    printf("# a record of %ld MiB + 12345 bytes in 64 KiB pieces; best of %d rounds; floor = "
           "secretstream (XChaCha20-Poly1305) encryption alone, one core, same run; "
           "x floor = throughput / floor throughput\n",
           mib, rounds);
    printf("%-44s %14s %14s %8s\n", "operation", "throughput", "floor", "x floor");
    report("encrypt + hash, one core", &f, op_encrypt_hash, rounds);
    report("encrypt + hash, hash on a second thread", &f, op_encrypt_hash_two_threads, rounds);
    report("decrypt + hash, one core (record get)", &f, op_decrypt_hash, rounds);
    report("record add today: encrypt + hash, encrypt", &f, op_record_add_passes, rounds);
    report("SHA-256 alone, OpenSSL (content hash)", &f, op_openssl_sha256, rounds);
    report("SHA-256 alone, libsodium", &f, op_sodium_sha256, rounds);
    sodium_memzero(f.key, sizeof f.key);
    free(f.plain);
    free(f.cipher);
    return 0;
}
