/*
 * bench_vm - the consent VM's speed: nanoseconds per evaluation of typical
 * policies (the one-rule example, a ten-rule policy over mixed requests and
 * over a request no rule matches), against a floor measured in the same
 * run: one SHA-256 of 64 bytes with libsodium (crypto_hash_sha256), the
 * cheapest operation every access request pays anyway. Also the cost of
 * verifying and of compiling each policy, for scale.
 *
 * Usage: bench_vm [--iterations N] [--rounds R]
 * Each figure is the best of R rounds of N operations; the policies and the
 * floor alternate round by round so that load from other processes hits
 * both alike. The process pins itself to the CPU it starts on. Prints
 * figures only; nothing here judges them (docs/BENCHMARKS.md records them).
 */
#include <errno.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "policy.h"

enum {
    ITERATIONS_MAX = 100000000,
    ROUNDS_MAX = 100,
    REQUEST_COUNT = 8, /* requests cycled, so no branch is predicted by a single input */
};

#define EXAMPLE                                                                                    \
    "permit if requester.role == insurer and record.type in [invoice, claim] and block.time < "    \
    "2027-06-30\n"

static const char ten_rules[] =
    "deny if record.type == genomic and request.purpose != treatment\n"
    "deny if block.time >= consent.until or block.time < consent.from\n"
    "deny if requester.practitioner == false and requester.role == hospital and record.type == "
    "clinical_note\n"
    "permit if request.purpose == emergency and requester.role == hospital\n"
    "permit if requester.role == hospital and request.purpose == treatment and consent.purpose == "
    "treatment\n"
    "permit if requester.role == lab and record.type in [lab_result, genomic] and "
    "request.purpose == treatment\n"
    "permit if requester.role == pharmacy and record.type == prescription and record.age_days < "
    "365\n"
    "permit if requester.role == insurer and record.type in [invoice, claim] and request.purpose "
    "== payment\n"
    "permit if requester.role == regulator and request.purpose == public_health and "
    "record.age_days > 30\n"
    "permit if requester.institution == record.custodian\n";

struct policy {
    const char *name;
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX];
    size_t len;
};

struct fixture {
    struct contracts_vm_request mixed[REQUEST_COUNT];
    struct contracts_vm_request none; /* matches no rule of ten_rules: all ten run */
    const struct policy *policy;
    const struct contracts_vm_request *requests;
    size_t request_count;
    const char *source; /* for the compile figure */
    uint8_t data[64];
    volatile uint64_t sink; /* keeps results alive */
};

typedef void (*bench_fn)(struct fixture *f, long iterations);

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_eval(struct fixture *f, long n)
{
    struct contracts_vm_result res;
    uint64_t acc = 0;
    for (long i = 0; i < n; i++) {
        const struct contracts_vm_request *r = &f->requests[(size_t)i % f->request_count];
        contracts_vm_eval(f->policy->code, f->policy->len, r, CONTRACTS_VM_GAS_DEFAULT, &res);
        acc += res.gas_used + (uint64_t)res.decision;
    }
    f->sink += acc;
}

static void run_verify(struct fixture *f, long n)
{
    for (long i = 0; i < n; i++)
        f->sink += (uint64_t)contracts_vm_verify(f->policy->code, f->policy->len, NULL);
}

static void run_compile(struct fixture *f, long n)
{
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX];
    size_t len;
    size_t src_len = strlen(f->source);
    for (long i = 0; i < n; i++) {
        contracts_policy_compile(f->source, src_len, code, sizeof code, &len, NULL);
        f->sink += len;
    }
}

static void run_floor(struct fixture *f, long n)
{
    uint8_t out[crypto_hash_sha256_BYTES];
    for (long i = 0; i < n; i++) {
        f->data[0] = (uint8_t)i;
        crypto_hash_sha256(out, f->data, sizeof f->data);
        f->sink += out[0];
    }
}

/* Best ns per operation of FN and of the floor over ROUNDS alternating rounds. */
static void measure(struct fixture *f, bench_fn fn, long iterations, int rounds, double *ns,
                    double *floor_ns)
{
    *ns = *floor_ns = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_seconds();
        fn(f, iterations);
        double t1 = now_seconds();
        run_floor(f, iterations);
        double t2 = now_seconds();
        double a = (t1 - t0) * 1e9 / (double)iterations;
        double b = (t2 - t1) * 1e9 / (double)iterations;
        *ns = a < *ns ? a : *ns;
        *floor_ns = b < *floor_ns ? b : *floor_ns;
    }
}

static void policy_compile(struct policy *p, const char *name, const char *src)
{
    ehr_diag diag;
    p->name = name;
    if (contracts_policy_compile(src, strlen(src), p->code, sizeof p->code, &p->len, &diag) != 0) {
        fprintf(stderr, "bench_vm: %s does not compile: %s\n", name, diag.msg);
        exit(1);
    }
}

static void date(const char *text, uint64_t *ms)
{
    int64_t v;
    if (contracts_policy_date_parse(text, strlen(text), &v) != 0)
        abort();
    *ms = (uint64_t)v;
}

/* Eight requests from the members a hospital's records meet, and one no rule matches. */
static void requests_init(struct fixture *f)
{
    static const struct {
        uint32_t role, type, purpose;
        bool practitioner;
        uint64_t age_days;
    } kinds[REQUEST_COUNT] = {
        {CONTRACTS_ROLE_INSURER, CONTRACTS_RECORD_CLAIM, CONTRACTS_PURPOSE_PAYMENT, false, 40},
        {CONTRACTS_ROLE_HOSPITAL, CONTRACTS_RECORD_IMAGING, CONTRACTS_PURPOSE_TREATMENT, true, 3},
        {CONTRACTS_ROLE_LAB, CONTRACTS_RECORD_LAB_RESULT, CONTRACTS_PURPOSE_TREATMENT, false, 1},
        {CONTRACTS_ROLE_PHARMACY, CONTRACTS_RECORD_PRESCRIPTION, CONTRACTS_PURPOSE_TREATMENT, true,
         20},
        {CONTRACTS_ROLE_INSURER, CONTRACTS_RECORD_INVOICE, CONTRACTS_PURPOSE_PAYMENT, false, 400},
        {CONTRACTS_ROLE_REGULATOR, CONTRACTS_RECORD_IMMUNIZATION, CONTRACTS_PURPOSE_PUBLIC_HEALTH,
         false, 90},
        {CONTRACTS_ROLE_HOSPITAL, CONTRACTS_RECORD_GENOMIC, CONTRACTS_PURPOSE_RESEARCH, true, 700},
        {CONTRACTS_ROLE_INSURER, CONTRACTS_RECORD_IMAGING, CONTRACTS_PURPOSE_PAYMENT, false, 10},
    };
    for (size_t i = 0; i < REQUEST_COUNT; i++) {
        struct contracts_vm_request *r = &f->mixed[i];
        memset(r, 0, sizeof *r);
        memset(r->requester_key, (int)(0x10 + i), sizeof r->requester_key);
        memset(r->requester_institution, (int)(0x40 + i), sizeof r->requester_institution);
        memset(r->record_custodian, 0x40, sizeof r->record_custodian);
        r->requester_role = kinds[i].role;
        r->requester_practitioner = kinds[i].practitioner;
        r->record_type = kinds[i].type;
        r->record_age_days = kinds[i].age_days;
        r->consent_purpose = kinds[i].purpose;
        r->request_purpose = kinds[i].purpose;
        date("2027-01-01", &r->consent_from_ms);
        date("2028-01-01", &r->consent_until_ms);
        date(i % 2 == 0 ? "2027-03-01" : "2027-08-15", &r->block_time_ms);
    }
    f->none = f->mixed[7]; /* an insurer asking for imaging, for payment, another custodian */
}

static void report(const char *name, size_t bytes, double ns, double floor_ns)
{
    printf("%-40s %6zu %10.1f %10.1f %8.2f\n", name, bytes, ns, floor_ns, ns / floor_ns);
}

int main(int argc, char **argv)
{
    long iterations = 1000000;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
            iterations = bench_parse_long("bench_vm", argv[++i], ITERATIONS_MAX);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = (int)bench_parse_long("bench_vm", argv[++i], ROUNDS_MAX);
        else {
            fprintf(stderr, "usage: bench_vm [--iterations N] [--rounds R]\n");
            return 2;
        }
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "bench_vm: libsodium init failed\n");
        return 1;
    }
    static struct fixture f;
    static struct policy example, ten;
    policy_compile(&example, "example (1 rule)", EXAMPLE);
    policy_compile(&ten, "10 rules", ten_rules);
    requests_init(&f);
    randombytes_buf(f.data, sizeof f.data);

    struct contracts_vm_result res;
    contracts_vm_eval(ten.code, ten.len, &f.none, CONTRACTS_VM_GAS_DEFAULT, &res);
    if (res.reason != CONTRACTS_VM_REASON_END) {
        fprintf(stderr, "bench_vm: the no-match request matched a rule\n");
        return 1;
    }
    uint64_t gas_none = res.gas_used;

    bench_pin_to_current_cpu();
    printf("# best of %d rounds of %ld operations; floor = SHA-256 of 64 bytes (libsodium), "
           "same rounds\n",
           rounds, iterations);
    printf("%-40s %6s %10s %10s %8s\n", "operation", "bytes", "ns/op", "floor ns", "ratio");
    double ns, floor_ns;
    f.policy = &example;
    f.requests = f.mixed;
    f.request_count = REQUEST_COUNT;
    measure(&f, run_eval, iterations, rounds, &ns, &floor_ns);
    report("eval example, 8 mixed requests", example.len, ns, floor_ns);
    f.policy = &ten;
    measure(&f, run_eval, iterations, rounds, &ns, &floor_ns);
    report("eval 10 rules, 8 mixed requests", ten.len, ns, floor_ns);
    f.requests = &f.none;
    f.request_count = 1;
    measure(&f, run_eval, iterations, rounds, &ns, &floor_ns);
    char name[64];
    snprintf(name, sizeof name, "eval 10 rules, no match (gas %llu)", (unsigned long long)gas_none);
    report(name, ten.len, ns, floor_ns);

    long slow = iterations / 10 > 0 ? iterations / 10 : 1;
    f.policy = &example;
    measure(&f, run_verify, slow, rounds, &ns, &floor_ns);
    report("verify example", example.len, ns, floor_ns);
    f.policy = &ten;
    measure(&f, run_verify, slow, rounds, &ns, &floor_ns);
    report("verify 10 rules", ten.len, ns, floor_ns);
    f.source = EXAMPLE;
    measure(&f, run_compile, slow, rounds, &ns, &floor_ns);
    report("compile example", example.len, ns, floor_ns);
    f.source = ten_rules;
    measure(&f, run_compile, slow, rounds, &ns, &floor_ns);
    report("compile 10 rules", ten.len, ns, floor_ns);
    return 0;
}
