/*
 * bench_crypto - signatures and hashing per second on one core, through our
 * API and, in the same run, directly through libsecp256k1 (the floor our
 * wrappers must stay close to), with the ratio between the two. SHA-256 is
 * compared with libsodium's crypto_hash_sha256 the same way. Last, the
 * time to open a key file at each argon2id cost profile (best of R).
 *
 * Usage: bench_crypto [--iterations N] [--rounds R]
 * Each figure is the best of R rounds of N operations; our API and the
 * library alternate round by round so that load from other processes hits
 * both alike. The process pins itself to the CPU it starts on. Prints
 * figures only; nothing here judges them.
 */
#include <errno.h>
#include <sched.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "ehr_crypto.h"

enum {
    MESSAGE_COUNT = 64, /* distinct messages and signatures, cycled */
    ITERATIONS_MAX = 10000000,
    ROUNDS_MAX = 100,
    HASH_INPUT_BYTES_MAX = 4096,
};

struct fixture {
    secp256k1_context *ctx; /* the raw library's own context, made like ours */
    ehr_signing_key key;
    ehr_public_key public_key;
    secp256k1_keypair raw_keypair;
    secp256k1_xonly_pubkey raw_public_key;
    uint8_t msg[MESSAGE_COUNT][32];
    uint8_t sig[MESSAGE_COUNT][64];
    uint8_t data[HASH_INPUT_BYTES_MAX];
    size_t data_len;
    volatile int sink; /* keeps results alive */
};

typedef void (*bench_fn)(struct fixture *f, long iterations);

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void ours_sign(struct fixture *f, long n)
{
    uint8_t sig[64];
    for (long i = 0; i < n; i++)
        f->sink += ehr_schnorr_sign(&f->key, f->msg[i % MESSAGE_COUNT], sig);
}

static void raw_sign(struct fixture *f, long n)
{
    /* The library with fresh auxiliary randomness per signature, as our API does. */
    uint8_t sig[64], aux[32];
    for (long i = 0; i < n; i++) {
        randombytes_buf(aux, sizeof aux);
        f->sink += secp256k1_schnorrsig_sign32(f->ctx, sig, f->msg[i % MESSAGE_COUNT],
                                               &f->raw_keypair, aux);
    }
}

static void ours_verify(struct fixture *f, long n)
{
    for (long i = 0; i < n; i++)
        f->sink += ehr_schnorr_verify(&f->public_key, f->msg[i % MESSAGE_COUNT],
                                      f->sig[i % MESSAGE_COUNT]);
}

static void raw_verify(struct fixture *f, long n)
{
    for (long i = 0; i < n; i++)
        f->sink += secp256k1_schnorrsig_verify(f->ctx, f->sig[i % MESSAGE_COUNT],
                                               f->msg[i % MESSAGE_COUNT], 32, &f->raw_public_key);
}

static void ours_verify_bytes(struct fixture *f, long n)
{
    for (long i = 0; i < n; i++)
        f->sink += ehr_schnorr_verify_bytes(f->key.public_key, f->msg[i % MESSAGE_COUNT],
                                            f->sig[i % MESSAGE_COUNT]);
}

static void raw_verify_bytes(struct fixture *f, long n)
{
    for (long i = 0; i < n; i++) {
        secp256k1_xonly_pubkey pk;
        f->sink += secp256k1_xonly_pubkey_parse(f->ctx, &pk, f->key.public_key);
        f->sink += secp256k1_schnorrsig_verify(f->ctx, f->sig[i % MESSAGE_COUNT],
                                               f->msg[i % MESSAGE_COUNT], 32, &pk);
    }
}

static void ours_sha256(struct fixture *f, long n)
{
    uint8_t out[32];
    for (long i = 0; i < n; i++) {
        f->data[0] = (uint8_t)i;
        ehr_sha256(out, f->data, f->data_len);
        f->sink += out[0];
    }
}

static void raw_sha256(struct fixture *f, long n)
{
    uint8_t out[32];
    for (long i = 0; i < n; i++) {
        f->data[0] = (uint8_t)i;
        crypto_hash_sha256(out, f->data, f->data_len);
        f->sink += out[0];
    }
}

/* Best (shortest) seconds per operation of OURS and RAW over ROUNDS alternating rounds. */
static void measure(struct fixture *f, bench_fn ours, bench_fn raw, long iterations, int rounds,
                    double *ours_best, double *raw_best)
{
    *ours_best = *raw_best = 1e9;
    ours(f, iterations / 10 + 1); /* warm up */
    raw(f, iterations / 10 + 1);
    for (int r = 0; r < rounds; r++) {
        double t0 = now_seconds();
        ours(f, iterations);
        double t1 = now_seconds();
        raw(f, iterations);
        double t2 = now_seconds();
        if ((t1 - t0) / (double)iterations < *ours_best)
            *ours_best = (t1 - t0) / (double)iterations;
        if ((t2 - t1) / (double)iterations < *raw_best)
            *raw_best = (t2 - t1) / (double)iterations;
    }
}

static void report_rate(const char *name, double ours, double raw)
{
    printf("%-34s %12.0f/s %12.0f/s %8.3f %9.2f us\n", name, 1.0 / ours, 1.0 / raw, raw / ours,
           ours * 1e6);
}

static void report_hash(size_t bytes, double ours, double raw)
{
    char name[64];
    snprintf(name, sizeof name, "sha256 %zu B (%.0f MB/s)", bytes, (double)bytes / ours / 1e6);
    report_rate(name, ours, raw);
}

/* Opening a key file sealed with each cost profile: what unlocking costs a node at start. */
static void report_keyfile_open(int rounds)
{
    static const char *const names[] = {"min", "interactive", "moderate"};
    ehr_identity id;
    ehr_identity_generate(&id, "bench");
    for (int p = EHR_KDF_MIN; p <= EHR_KDF_MODERATE; p++) {
        uint8_t sealed[EHR_KEYFILE_BYTES];
        ehr_kdf_params kdf = ehr_kdf_profile_params((enum ehr_kdf_profile)p);
        if (ehr_keyfile_seal(sealed, &id, "bench", 5, kdf) != 0)
            continue;
        double best = 1e9;
        for (int r = 0; r < rounds; r++) {
            ehr_identity got;
            double t0 = now_seconds();
            int rc = ehr_keyfile_open(&got, NULL, sealed, sizeof sealed, "bench", 5, NULL);
            double t = now_seconds() - t0;
            ehr_identity_wipe(&got);
            if (rc == 0 && t < best)
                best = t;
        }
        char name[64];
        snprintf(name, sizeof name, "key file open, argon2id %s", names[p - EHR_KDF_MIN]);
        printf("%-34s %12.1f ms (%llu passes, %llu KiB)\n", name, best * 1e3,
               (unsigned long long)kdf.opslimit, (unsigned long long)(kdf.memlimit_bytes >> 10));
    }
    ehr_identity_wipe(&id);
}

int main(int argc, char **argv)
{
    long iterations = 4000;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
            iterations = bench_parse_long("bench_crypto", argv[++i], ITERATIONS_MAX);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = (int)bench_parse_long("bench_crypto", argv[++i], ROUNDS_MAX);
        else {
            fprintf(stderr, "usage: bench_crypto [--iterations N] [--rounds R]\n");
            return 2;
        }
    }
    if (ehr_crypto_init() != 0) {
        fprintf(stderr, "bench_crypto: crypto init failed\n");
        return 1;
    }
    static struct fixture f;
    f.ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    uint8_t seed[32];
    randombytes_buf(seed, sizeof seed);
    if (f.ctx == NULL || !secp256k1_context_randomize(f.ctx, seed)) {
        fprintf(stderr, "bench_crypto: secp256k1 context failed\n");
        return 1;
    }
    ehr_signing_key_generate(&f.key);
    if (!secp256k1_keypair_create(f.ctx, &f.raw_keypair, f.key.secret) ||
        !secp256k1_xonly_pubkey_parse(f.ctx, &f.raw_public_key, f.key.public_key) ||
        ehr_public_key_parse(&f.public_key, f.key.public_key) != 0) {
        fprintf(stderr, "bench_crypto: key setup failed\n");
        return 1;
    }
    for (int i = 0; i < MESSAGE_COUNT; i++) {
        ehr_sha256(f.msg[i], &i, sizeof i);
        ehr_schnorr_sign(&f.key, f.msg[i], f.sig[i]);
        if (ehr_schnorr_verify(&f.public_key, f.msg[i], f.sig[i]) != 0) {
            fprintf(stderr, "bench_crypto: a fresh signature does not verify\n");
            return 1;
        }
    }
    randombytes_buf(f.data, sizeof f.data);

    bench_pin_to_current_cpu();
    printf("# best of %d rounds of %ld operations; ratio = our rate / the library's own rate\n",
           rounds, iterations);
    printf("%-34s %14s %14s %8s %12s\n", "operation", "ehr API", "library", "ratio", "per op");
    double ours, raw;
    measure(&f, ours_sign, raw_sign, iterations, rounds, &ours, &raw);
    report_rate("schnorr sign", ours, raw);
    measure(&f, ours_verify, raw_verify, iterations, rounds, &ours, &raw);
    report_rate("schnorr verify (parsed key)", ours, raw);
    measure(&f, ours_verify_bytes, raw_verify_bytes, iterations, rounds, &ours, &raw);
    report_rate("schnorr verify (parse + verify)", ours, raw);

    static const size_t hash_sizes[] = {256, 1024, 4096};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(hash_sizes); i++) {
        f.data_len = hash_sizes[i];
        measure(&f, ours_sha256, raw_sha256, iterations * 4, rounds, &ours, &raw);
        report_hash(hash_sizes[i], ours, raw);
    }
    report_keyfile_open(rounds);
    ehr_signing_key_wipe(&f.key);
    secp256k1_context_destroy(f.ctx);
    return 0;
}
