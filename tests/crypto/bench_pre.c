/*
 * bench_pre - the proxy re-encryption operations (crypto/pre.h) per second
 * on one core, each against the floor measured in the same run: one
 * ristretto255 scalar multiplication of a point by a secret scalar
 * (crypto_scalarmult_ristretto255), the operation the scheme is made of.
 * "x floor" is an operation's time in units of that multiplication, so it
 * holds whatever else the machine is doing: re-encapsulation does five
 * (E1, V1 and the proof's three commitments), verification eight (two for
 * the kfrag's signature, six for the proof; one of them a faster
 * fixed-base one).
 *
 * Usage: bench_pre [--iterations N] [--rounds R]
 * Each figure is the best of R rounds of N operations; every operation
 * alternates round by round with the floor so that load from other
 * processes hits both alike. Pins itself to the CPU it starts on. Prints
 * figures only; nothing here judges them.
 */
#include <errno.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "ehr_crypto.h"
#include "pre.h"

enum { ITERATIONS_MAX = 10000000, ROUNDS_MAX = 100, THRESHOLD_BENCHED_MAX = 5 };

struct fixture {
    ehr_pre_key alice, bob;
    ehr_pre_capsule capsule;
    uint8_t capsule_bytes[EHR_PRE_CAPSULE_BYTES];
    /* one grant per threshold benched: t cfrags of a t-of-EHR_PRE_KFRAGS_MAX grant */
    ehr_pre_kfrag kfrags[THRESHOLD_BENCHED_MAX + 1][EHR_PRE_KFRAGS_MAX];
    ehr_pre_cfrag cfrags[THRESHOLD_BENCHED_MAX + 1][EHR_PRE_KFRAGS_MAX];
    uint8_t cfrag_bytes[EHR_PRE_CFRAG_BYTES];
    size_t threshold; /* the grant op_decapsulate_cfrags opens */
    uint8_t scalar[32], point[32];
    volatile int sink; /* keeps results alive */
};

typedef void (*bench_fn)(struct fixture *f, long iterations);

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void floor_scalarmult(struct fixture *f, long n)
{
    uint8_t q[32];
    for (long i = 0; i < n; i++) {
        f->sink += crypto_scalarmult_ristretto255(q, f->scalar, f->point);
        f->sink += q[0];
    }
}

static void op_reencapsulate(struct fixture *f, long n)
{
    ehr_pre_cfrag cfrag;
    for (long i = 0; i < n; i++) {
        f->sink += ehr_pre_reencapsulate(&f->kfrags[2][i % 3], &f->capsule, &cfrag);
        f->sink += cfrag.proof_z[0];
    }
}

static void op_cfrag_verify(struct fixture *f, long n)
{
    for (long i = 0; i < n; i++)
        f->sink += ehr_pre_cfrag_verify(&f->cfrags[2][i % 3], &f->capsule, f->alice.public_key,
                                        f->bob.public_key);
}

static void op_cfrag_decode_verify(struct fixture *f, long n)
{
    for (long i = 0; i < n; i++) {
        ehr_pre_cfrag cfrag;
        f->sink += ehr_pre_cfrag_decode(&cfrag, f->cfrag_bytes, sizeof f->cfrag_bytes, NULL);
        f->sink +=
            ehr_pre_cfrag_verify(&cfrag, &f->capsule, f->alice.public_key, f->bob.public_key);
    }
}

static void op_encapsulate(struct fixture *f, long n)
{
    ehr_pre_capsule capsule;
    uint8_t key[EHR_PRE_KEY_BYTES];
    for (long i = 0; i < n; i++) {
        f->sink += ehr_pre_encapsulate(f->alice.public_key, &capsule, key);
        f->sink += key[0];
    }
}

static void op_capsule_decode(struct fixture *f, long n)
{
    for (long i = 0; i < n; i++) {
        ehr_pre_capsule capsule;
        f->sink +=
            ehr_pre_capsule_decode(&capsule, f->capsule_bytes, sizeof f->capsule_bytes, NULL);
    }
}

static void op_decapsulate(struct fixture *f, long n)
{
    uint8_t key[EHR_PRE_KEY_BYTES];
    for (long i = 0; i < n; i++) {
        f->sink += ehr_pre_decapsulate(&f->alice, &f->capsule, key);
        f->sink += key[0];
    }
}

static void op_kfrags_generate(struct fixture *f, long n)
{
    ehr_pre_kfrag kfrags[3];
    for (long i = 0; i < n; i++) {
        f->sink += ehr_pre_kfrags_generate(&f->alice, f->bob.public_key, 2, 3, kfrags, NULL);
        f->sink += kfrags[2].share[0];
    }
}

static void op_decapsulate_cfrags(struct fixture *f, long n)
{
    uint8_t key[EHR_PRE_KEY_BYTES];
    for (long i = 0; i < n; i++) {
        f->sink += ehr_pre_decapsulate_cfrags(&f->bob, f->alice.public_key, &f->capsule,
                                              f->cfrags[f->threshold], f->threshold, key, NULL);
        f->sink += key[0];
    }
}

/* Best seconds per operation of OP and of the floor over ROUNDS alternating rounds. */
static void measure(struct fixture *f, bench_fn op, long iterations, int rounds, double *op_best,
                    double *floor_best)
{
    *op_best = *floor_best = 1e9;
    op(f, iterations / 10 + 1); /* warm up */
    floor_scalarmult(f, iterations / 10 + 1);
    for (int r = 0; r < rounds; r++) {
        double t0 = now_seconds();
        op(f, iterations);
        double t1 = now_seconds();
        floor_scalarmult(f, iterations);
        double t2 = now_seconds();
        if ((t1 - t0) / (double)iterations < *op_best)
            *op_best = (t1 - t0) / (double)iterations;
        if ((t2 - t1) / (double)iterations < *floor_best)
            *floor_best = (t2 - t1) / (double)iterations;
    }
}

static void report(const char *name, struct fixture *f, bench_fn op, long iterations, int rounds)
{
    double op_s, floor_s;
    measure(f, op, iterations, rounds, &op_s, &floor_s);
    printf("%-40s %10.0f/s %9.1f us %10.0f/s %8.2f\n", name, 1.0 / op_s, op_s * 1e6, 1.0 / floor_s,
           op_s / floor_s);
}

static int setup(struct fixture *f)
{
    uint8_t key[EHR_PRE_KEY_BYTES], opened[EHR_PRE_KEY_BYTES];
    if (ehr_pre_key_generate(&f->alice) != 0 || ehr_pre_key_generate(&f->bob) != 0 ||
        ehr_pre_encapsulate(f->alice.public_key, &f->capsule, key) != 0)
        return -1;
    for (size_t t = 1; t <= THRESHOLD_BENCHED_MAX; t++) {
        if (ehr_pre_kfrags_generate(&f->alice, f->bob.public_key, t, EHR_PRE_KFRAGS_MAX,
                                    f->kfrags[t], NULL) != 0)
            return -1;
        for (size_t i = 0; i < EHR_PRE_KFRAGS_MAX; i++) {
            if (ehr_pre_reencapsulate(&f->kfrags[t][i], &f->capsule, &f->cfrags[t][i]) != 0 ||
                ehr_pre_cfrag_verify(&f->cfrags[t][i], &f->capsule, f->alice.public_key,
                                     f->bob.public_key) != 0)
                return -1;
        }
        if (ehr_pre_decapsulate_cfrags(&f->bob, f->alice.public_key, &f->capsule, f->cfrags[t], t,
                                       opened, NULL) != 0 ||
            memcmp(key, opened, sizeof key) != 0)
            return -1;
    }
    ehr_pre_capsule_encode(&f->capsule, f->capsule_bytes);
    ehr_pre_cfrag_encode(&f->cfrags[2][0], f->cfrag_bytes);
    crypto_core_ristretto255_scalar_random(f->scalar);
    crypto_core_ristretto255_random(f->point);
    return 0;
}

int main(int argc, char **argv)
{
    long iterations = 2000;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
            iterations = bench_parse_long("bench_pre", argv[++i], ITERATIONS_MAX);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = (int)bench_parse_long("bench_pre", argv[++i], ROUNDS_MAX);
        else {
            fprintf(stderr, "usage: bench_pre [--iterations N] [--rounds R]\n");
            return 2;
        }
    }
    static struct fixture f;
    if (ehr_crypto_init() != 0 || setup(&f) != 0) {
        fprintf(stderr, "bench_pre: set-up failed\n");
        return 1;
    }
    bench_pin_to_current_cpu();
    printf("# best of %d rounds of %ld operations; floor = one ristretto255 scalar "
           "multiplication, same run; x floor = operation time / floor time\n",
           rounds, iterations);
    printf("%-40s %12s %12s %12s %8s\n", "operation", "rate", "per op", "floor", "x floor");
    report("cfrag generate (ehr_pre_reencapsulate)", &f, op_reencapsulate, iterations, rounds);
    report("cfrag verify (ehr_pre_cfrag_verify)", &f, op_cfrag_verify, iterations, rounds);
    report("cfrag decode + verify", &f, op_cfrag_decode_verify, iterations, rounds);
    report("encapsulate", &f, op_encapsulate, iterations, rounds);
    report("capsule decode (checks g^s = V E^h)", &f, op_capsule_decode, iterations, rounds);
    report("decapsulate (delegator)", &f, op_decapsulate, iterations, rounds);
    report("kfrags generate, t=2 of n=3", &f, op_kfrags_generate, iterations / 4 + 1, rounds);
    static const size_t thresholds[] = {1, 2, THRESHOLD_BENCHED_MAX};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(thresholds); i++) {
        char name[64];
        f.threshold = thresholds[i];
        snprintf(name, sizeof name, "decapsulate %zu cfrags (verifies each)", thresholds[i]);
        report(name, &f, op_decapsulate_cfrags, iterations / 8 + 1, rounds);
    }
    ehr_pre_key_wipe(&f.alice);
    ehr_pre_key_wipe(&f.bob);
    sodium_memzero(f.kfrags, sizeof f.kfrags);
    return 0;
}
