/*
 * bench_apply - the consent contract's cost per transaction, by type:
 * nanoseconds of contracts_apply_tx for enrolment, practitioner
 * registration, anchors, grants with and without a policy, revokes, access
 * requests (permitted without a policy, permitted by a typical policy,
 * denied), emergency access, proposals and approvals, against a floor
 * measured in the same run: one BIP-340 verification (ehr_schnorr_verify on
 * a parsed key), the cost every transaction pays before it is applied.
 *
 * The signature check is excluded: every transaction is applied as
 * CONTRACTS_SIG_VALID (verified already, as the leader's admission and a
 * follower's cache do). Enrolment still verifies the patient's
 * co-signature inside its payload, one BIP-340 verification of its own, so
 * its row is reported apart.
 *
 * The world (tests/contracts/world.c) first gets a realistic amount of
 * state, so that reads are not all in a cache: --patients patients enrolled
 * by four hospitals, each with a lab result and an imaging record, a
 * consent to a hospital without a policy and one to a lab with a typical
 * policy, and their audit trails (about 16 keys per patient); eight members,
 * 64 practitioners, and open proposals for the approvals to approve. Every
 * transaction is built and signed before the clock starts, each round of a
 * type has its own --txs transactions on patients no other round touches,
 * and only the contracts_apply_tx calls are timed, in blocks of
 * BLOCK_TXS_MAX (the fold of a block's writes into the map is not timed).
 * Each result is checked after its block: the benchmark measures the paths
 * it names or stops.
 *
 * Usage: bench_apply [--patients N] [--txs N] [--rounds R] [--only KEY]
 * (defaults: 12,000 patients, 1,024 transactions a round, 5 rounds; the
 * patients must be at least twice the transactions of all rounds).
 * Each figure is the best of R rounds, taken round-robin over the types;
 * each round of a type is followed by a round of the floor (--txs
 * verifications). Two ratios: to the best floor round after the type's own
 * rounds, and to the best floor round of the whole run (see main). The
 * process pins itself to the CPU it starts on. Prints a table and one JSON line; nothing here
 * judges the figures (docs/BENCHMARKS.md records them).
 *
 * --only runs the one type whose JSON key is KEY. For where the time
 * goes, count instructions in the timed part alone:
 *   valgrind --tool=callgrind --toggle-collect=apply_timed bench_apply
 *   --patients 2048 --txs 256 --rounds 1 --only access_permit
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "policy.h"
#include "world.h"

enum {
    PATIENTS_MAX = 1000000,
    TXS_MAX = 100000,
    PER_KIND_MAX = 1000000, /* keeps the parties' seeds apart (party_make below) */
    ROUNDS_MAX = 100,
    BLOCK_TXS_MAX = 256,
    HOSPITAL_COUNT = 4,
    LAB_COUNT = 2,
    PRACTITIONER_COUNT = 64,
    NEWCOMER_COUNT = 16,
    FLOOR_MESSAGES = 256, /* distinct messages and signatures the floor cycles through */
};

#define OK EHR__V1__TX_RESULT_CODE__TX_RESULT_OK
#define PERMIT EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT
#define DENY EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY
#define LAB_RESULT EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT
#define IMAGING EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING
#define TREATMENT EHR__V1__PURPOSE__PURPOSE_TREATMENT

/* Block times: the setup at T0, every measured block at T1. */
#define T0 (WORLD_GENESIS_MS + WORLD_DAY_MS)
#define T1 (T0 + WORLD_DAY_MS)
#define YEAR_MS (365 * WORLD_DAY_MS)

/* A lab's consent as a patient would write it (one rule, 3 conditions). */
static const char typical_policy[] = "permit if requester.role == lab and record.type in "
                                     "[lab_result, genomic] and request.purpose == treatment";

/* The chain: members, practitioners, patients and what they hold. */
struct chain {
    struct world *w;
    struct party hospitals[HOSPITAL_COUNT], labs[LAB_COUNT], pharmacy, insurer;
    size_t patient_count;
    struct party *patients;
    uint8_t (*lab_records)[EHR_HASH_BYTES];     /* by a lab, LAB_RESULT */
    uint8_t (*imaging_records)[EHR_HASH_BYTES]; /* by a hospital, IMAGING */
    uint8_t (*hospital_consents)[EHR_HASH_BYTES];
    size_t proposal_count;
    uint8_t (*proposals)[EHR_HASH_BYTES]; /* open, approved by hospitals[0] only */
    uint8_t policy[CONTRACTS_POLICY_BYTES_MAX];
    size_t policy_len;
};

/* One measured type: its transactions, TXS per round, and what each must give. */
struct kind {
    const char *name;
    const char *key; /* in the JSON line */
    bool verifies_in_payload;
    int decision; /* the access decision each must give (0: not an access) */
    struct tx *txs;
    double ns, floor_ns; /* best per transaction, this type's rounds and the floor's */
    bool skip;           /* not named by --only */
};

struct floor {
    ehr_public_key key;
    uint8_t msgs[FLOOR_MESSAGES][EHR_HASH_BYTES];
    uint8_t sigs[FLOOR_MESSAGES][EHR_SCHNORR_SIG_BYTES];
    volatile int sink;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_apply: %s\n", what);
    exit(1);
}

/* ---- building the chain's state (untimed) ---- */

/* Apply COUNT transactions as blocks of up to BLOCK_TXS_MAX at TIME_MS; each must be OK. */
static void apply_all(struct world *w, uint64_t time_ms, struct tx *txs, size_t count)
{
    static enum contracts_sig valid[BLOCK_TXS_MAX];
    static struct contracts_tx_result results[BLOCK_TXS_MAX];
    for (size_t i = 0; i < BLOCK_TXS_MAX; i++)
        valid[i] = CONTRACTS_SIG_VALID;
    for (size_t at = 0; at < count; at += BLOCK_TXS_MAX) {
        size_t n = count - at < BLOCK_TXS_MAX ? count - at : BLOCK_TXS_MAX;
        if (world_block(w, time_ms, txs + at, n, valid, results) != 0)
            die("a setup block failed to apply");
        for (size_t i = 0; i < n; i++)
            if (results[i].code != OK) {
                fprintf(stderr, "bench_apply: setup transaction refused: %s\n", results[i].reason);
                exit(1);
            }
    }
    for (size_t i = 0; i < count; i++)
        tx_free(&txs[i]);
}

static void grant_hospital(struct chain *c, size_t k, const uint8_t *grantee, struct tx *out)
{
    static const Ehr__V1__RecordType types[] = {LAB_RESULT, IMAGING};
    struct grant g = {.grantee = grantee,
                      .types = types,
                      .n_types = 2,
                      .purpose = TREATMENT,
                      .from_ms = T0,
                      .until_ms = T0 + YEAR_MS,
                      .n_fragments = 3,
                      .fragment_len = 164};
    tx_grant(c->w, &c->patients[k], &g, out);
}

static void grant_lab(struct chain *c, size_t k, struct tx *out)
{
    static const Ehr__V1__RecordType types[] = {LAB_RESULT};
    struct grant g = {.grantee = c->labs[k % LAB_COUNT].sig.public_key,
                      .types = types,
                      .n_types = 1,
                      .purpose = TREATMENT,
                      .from_ms = T0,
                      .until_ms = T0 + YEAR_MS,
                      .policy = c->policy,
                      .policy_len = c->policy_len,
                      .n_fragments = 3,
                      .fragment_len = 164};
    tx_grant(c->w, &c->patients[k], &g, out);
}

static void chain_build(struct chain *c, size_t patients, size_t proposals)
{
    static const Ehr__V1__MemberRole clinical[] = {EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL,
                                                   EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB};
    c->w = world_new(clinical, 2);
    uint32_t seed = 1;
    for (size_t i = 0; i < HOSPITAL_COUNT; i++) {
        party_make(&c->hospitals[i], seed++);
        world_member_add(c->w, &c->hospitals[i], EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL);
    }
    for (size_t i = 0; i < LAB_COUNT; i++) {
        party_make(&c->labs[i], seed++);
        world_member_add(c->w, &c->labs[i], EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB);
    }
    party_make(&c->pharmacy, seed++);
    world_member_add(c->w, &c->pharmacy, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_PHARMACY);
    party_make(&c->insurer, seed++);
    world_member_add(c->w, &c->insurer, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_INSURER);
    ehr_diag diag;
    if (contracts_policy_compile(typical_policy, strlen(typical_policy), c->policy,
                                 sizeof c->policy, &c->policy_len, &diag) != 0)
        die(diag.msg);

    size_t most = patients > PRACTITIONER_COUNT ? patients : PRACTITIONER_COUNT;
    most = most > proposals ? most : proposals;
    struct tx *txs = ehr_calloc(2 * most, sizeof *txs);
    for (size_t i = 0; i < PRACTITIONER_COUNT; i++) {
        struct party p;
        party_make(&p, 1000000 + (uint32_t)i);
        tx_practitioner(c->w, &c->hospitals[i % HOSPITAL_COUNT], &p, true, &txs[i]);
    }
    apply_all(c->w, T0, txs, PRACTITIONER_COUNT);

    c->patient_count = patients;
    c->patients = ehr_calloc(patients, sizeof *c->patients);
    c->lab_records = ehr_calloc(patients, sizeof *c->lab_records);
    c->imaging_records = ehr_calloc(patients, sizeof *c->imaging_records);
    c->hospital_consents = ehr_calloc(patients, sizeof *c->hospital_consents);
    for (size_t k = 0; k < patients; k++) {
        party_make(&c->patients[k], 2000000 + (uint32_t)k);
        tx_enroll(c->w, &c->hospitals[k % HOSPITAL_COUNT], &c->patients[k], &txs[k]);
    }
    apply_all(c->w, T0, txs, patients);
    for (size_t k = 0; k < patients; k++) {
        tx_anchor(c->w, &c->labs[k % LAB_COUNT], &c->patients[k], LAB_RESULT, NULL, &txs[2 * k]);
        memcpy(c->lab_records[k], txs[2 * k].hash, EHR_HASH_BYTES);
        tx_anchor(c->w, &c->hospitals[k % HOSPITAL_COUNT], &c->patients[k], IMAGING, NULL,
                  &txs[2 * k + 1]);
        memcpy(c->imaging_records[k], txs[2 * k + 1].hash, EHR_HASH_BYTES);
    }
    apply_all(c->w, T0, txs, 2 * patients);
    for (size_t k = 0; k < patients; k++) {
        grant_hospital(c, k, c->hospitals[k % HOSPITAL_COUNT].sig.public_key, &txs[2 * k]);
        memcpy(c->hospital_consents[k], txs[2 * k].hash, EHR_HASH_BYTES);
        grant_lab(c, k, &txs[2 * k + 1]);
    }
    apply_all(c->w, T0, txs, 2 * patients);

    c->proposal_count = proposals;
    c->proposals = ehr_calloc(proposals, sizeof *c->proposals);
    for (size_t j = 0; j < proposals; j++) {
        struct party newcomer;
        party_make(&newcomer, 3000000 + (uint32_t)(j % NEWCOMER_COUNT));
        tx_propose_admit(c->w, &c->hospitals[0], &newcomer, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB,
                         T0 + YEAR_MS, &txs[j]);
        memcpy(c->proposals[j], txs[j].hash, EHR_HASH_BYTES);
    }
    apply_all(c->w, T0, txs, proposals);
    ehr_free(txs);
}

static void chain_free(struct chain *c)
{
    world_free(c->w);
    ehr_free(c->patients);
    ehr_free(c->lab_records);
    ehr_free(c->imaging_records);
    ehr_free(c->hospital_consents);
    ehr_free(c->proposals);
}

/* ---- the measured transactions (built untimed) ---- */

enum kind_index {
    KIND_ENROLL,
    KIND_PRACTITIONER,
    KIND_ANCHOR,
    KIND_GRANT,
    KIND_GRANT_POLICY,
    KIND_REVOKE,
    KIND_ACCESS,
    KIND_ACCESS_POLICY,
    KIND_ACCESS_DENY,
    KIND_EMERGENCY,
    KIND_PROPOSAL,
    KIND_APPROVAL,
    KIND_COUNT
};

#define KIND(NAME, KEY, DECISION)                                                                  \
    {                                                                                              \
        .name = NAME, .key = KEY, .decision = DECISION                                             \
    }
static struct kind kinds[KIND_COUNT] = {
    [KIND_ENROLL] = {.name = "enroll (+ co-signature check)",
                     .key = "enroll",
                     .verifies_in_payload = true},
    [KIND_PRACTITIONER] = KIND("practitioner register", "practitioner_register", 0),
    [KIND_ANCHOR] = KIND("record anchor", "anchor", 0),
    [KIND_GRANT] = KIND("grant, no policy", "grant", 0),
    [KIND_GRANT_POLICY] = KIND("grant, typical policy", "grant_policy", 0),
    [KIND_REVOKE] = KIND("revoke", "revoke", 0),
    [KIND_ACCESS] = KIND("access permit, no policy", "access_permit", PERMIT),
    [KIND_ACCESS_POLICY] = KIND("access permit, typical policy", "access_permit_policy", PERMIT),
    [KIND_ACCESS_DENY] = KIND("access deny (no consent)", "access_deny", DENY),
    [KIND_EMERGENCY] = KIND("emergency access", "emergency", PERMIT),
    [KIND_PROPOSAL] = KIND("member proposal", "proposal", 0),
    [KIND_APPROVAL] = KIND("member approval", "approval", 0),
};

/* Transaction K (0 .. TXS x ROUNDS - 1) of kind I. Access requests and
 * emergency accesses read the records and consents of patients K from the
 * bottom of the list; anchors, grants and revokes write those of patients
 * from the top, so that no kind changes what another kind reads. */
static void kind_build(struct chain *c, enum kind_index i, size_t k, struct tx *out)
{
    struct world *w = c->w;
    const struct party *hospital = &c->hospitals[k % HOSPITAL_COUNT];
    size_t top = c->patient_count - 1 - k;
    struct party p;
    switch (i) {
    case KIND_ENROLL:
        party_make(&p, 4000000 + (uint32_t)k);
        tx_enroll(w, hospital, &p, out);
        break;
    case KIND_PRACTITIONER:
        party_make(&p, 5000000 + (uint32_t)k);
        tx_practitioner(w, hospital, &p, true, out);
        break;
    case KIND_ANCHOR:
        tx_anchor(w, &c->labs[top % LAB_COUNT], &c->patients[top], LAB_RESULT, NULL, out);
        break;
    case KIND_GRANT:
        grant_hospital(c, top, c->hospitals[(top + 1) % HOSPITAL_COUNT].sig.public_key, out);
        break;
    case KIND_GRANT_POLICY:
        grant_lab(c, top, out);
        break;
    case KIND_REVOKE:
        tx_revoke(w, &c->patients[top], c->hospital_consents[top], out);
        break;
    case KIND_ACCESS:
        tx_access(w, hospital, c->lab_records[k], TREATMENT, out);
        break;
    case KIND_ACCESS_POLICY:
        tx_access(w, &c->labs[k % LAB_COUNT], c->lab_records[k], TREATMENT, out);
        break;
    case KIND_ACCESS_DENY:
        tx_access(w, &c->insurer, c->lab_records[k], TREATMENT, out);
        break;
    case KIND_EMERGENCY:
        tx_emergency(w, &c->hospitals[(k + 1) % HOSPITAL_COUNT], c->imaging_records[k],
                     "unconscious, brought in by ambulance", out);
        break;
    case KIND_PROPOSAL:
        party_make(&p, 3000000 + (uint32_t)(k % NEWCOMER_COUNT));
        tx_propose_admit(w, hospital, &p, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB, T0 + YEAR_MS, out);
        break;
    case KIND_APPROVAL:
        tx_approve(w, &c->hospitals[1 + k % (HOSPITAL_COUNT - 1)], c->proposals[k], out);
        break;
    case KIND_COUNT:
        abort();
    }
}

/* ---- timing ---- */

/* Apply TXS[0..COUNT) in blocks at T1, timing the contracts_apply_tx calls
 * only; check each result. Returns the seconds spent applying. Not inlined:
 * its name is what a profiler's --toggle-collect names. */
__attribute__((noinline)) static double apply_timed(struct world *w, const struct kind *k,
                                                    const struct tx *txs, size_t count)
{
    static struct contracts_tx_result results[BLOCK_TXS_MAX];
    double spent = 0;
    for (size_t at = 0; at < count; at += BLOCK_TXS_MAX) {
        size_t n = count - at < BLOCK_TXS_MAX ? count - at : BLOCK_TXS_MAX;
        contracts_block *b = world_block_open(w, T1);
        double t0 = now_seconds();
        for (size_t i = 0; i < n; i++) {
            struct contracts_tx t = {.envelope = txs[at + i].envelope,
                                     .len = txs[at + i].len,
                                     .hash = txs[at + i].hash,
                                     .position = (uint32_t)i,
                                     .sig = CONTRACTS_SIG_VALID};
            if (contracts_apply_tx(b, &t, &results[i]) != 0)
                die("contracts_apply_tx failed");
        }
        spent += now_seconds() - t0;
        world_block_close(w, b);
        for (size_t i = 0; i < n; i++) {
            if (results[i].code != OK || results[i].decision != k->decision) {
                fprintf(stderr, "bench_apply: %s: code %d, decision %d: %s\n", k->name,
                        results[i].code, results[i].decision, results[i].reason);
                exit(1);
            }
        }
    }
    return spent;
}

static double floor_timed(struct floor *f, size_t count)
{
    double t0 = now_seconds();
    int acc = 0;
    for (size_t i = 0; i < count; i++) {
        size_t m = i % FLOOR_MESSAGES;
        acc += ehr_schnorr_verify(&f->key, f->msgs[m], f->sigs[m]);
    }
    double spent = now_seconds() - t0;
    f->sink += acc;
    if (acc != 0)
        die("a floor signature does not verify");
    return spent;
}

static void floor_init(struct floor *f)
{
    struct party signer;
    party_make(&signer, 9000000);
    if (ehr_public_key_parse(&f->key, signer.sig.public_key) != 0)
        die("the floor's key does not parse");
    for (size_t m = 0; m < FLOOR_MESSAGES; m++) {
        uint8_t text[8];
        memcpy(text, &m, sizeof text < sizeof m ? sizeof text : sizeof m);
        ehr_sha256(f->msgs[m], text, sizeof text);
        if (ehr_schnorr_sign(&signer.sig, f->msgs[m], f->sigs[m]) != 0)
            die("the floor's signing failed");
    }
}

int main(int argc, char **argv)
{
    long patients = 12000, txs = 1024, rounds = 5;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--patients") == 0 && i + 1 < argc)
            patients = bench_parse_long("bench_apply", argv[++i], PATIENTS_MAX);
        else if (strcmp(argv[i], "--txs") == 0 && i + 1 < argc)
            txs = bench_parse_long("bench_apply", argv[++i], TXS_MAX);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = bench_parse_long("bench_apply", argv[++i], ROUNDS_MAX);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_apply [--patients N] [--txs N] [--rounds R] "
                            "[--only KEY]\n");
            return 2;
        }
    }
    size_t per_kind = (size_t)txs * (size_t)rounds;
    if (per_kind > PER_KIND_MAX) {
        fprintf(stderr, "bench_apply: --txs x --rounds must be at most %d\n", PER_KIND_MAX);
        return 2;
    }
    if ((size_t)patients < 2 * per_kind) {
        fprintf(stderr, "bench_apply: --patients must be at least 2 x --txs x --rounds (%zu)\n",
                2 * per_kind);
        return 2;
    }
    if (ehr_crypto_init() != 0)
        die("crypto init failed");

    double t0 = now_seconds();
    static struct chain c;
    chain_build(&c, (size_t)patients, per_kind);
    size_t keys = world_size(c.w);
    for (size_t i = 0; i < KIND_COUNT; i++) {
        kinds[i].skip = only != NULL && strcmp(kinds[i].key, only) != 0;
        kinds[i].txs = ehr_calloc(per_kind, sizeof *kinds[i].txs);
        if (kinds[i].skip)
            continue;
        for (size_t k = 0; k < per_kind; k++)
            kind_build(&c, (enum kind_index)i, k, &kinds[i].txs[k]);
    }
    static struct floor f;
    floor_init(&f);
    printf("# world: %ld patients, %ld records, %ld consents, %d members, %d practitioners, "
           "%zu open proposals: %zu keys (built and signed in %.1f s)\n",
           patients, 2 * patients, 2 * patients, HOSPITAL_COUNT + LAB_COUNT + 2, PRACTITIONER_COUNT,
           per_kind, keys, now_seconds() - t0);

    bench_pin_to_current_cpu();
    printf("# best of %ld rounds of %ld transactions per type, in blocks of up to %d, "
           "signatures pre-verified (CONTRACTS_SIG_VALID); floor = one BIP-340 verification "
           "(ehr_schnorr_verify, parsed key), a round after each round of a type; types "
           "round-robin\n",
           rounds, txs, BLOCK_TXS_MAX);
    /* Round-robin: round R of every type, then round R + 1 of every type, so
     * that each type's best round samples several moments of the machine's
     * load instead of one stretch of it. */
    for (size_t i = 0; i < KIND_COUNT; i++)
        kinds[i].ns = kinds[i].floor_ns = 1e30;
    double floor_best = 1e30;
    for (long r = 0; r < rounds; r++) {
        for (size_t i = 0; i < KIND_COUNT; i++) {
            struct kind *k = &kinds[i];
            if (k->skip)
                continue;
            double a = apply_timed(c.w, k, k->txs + (size_t)r * (size_t)txs, (size_t)txs);
            double b = floor_timed(&f, (size_t)txs);
            a = a * 1e9 / (double)txs;
            b = b * 1e9 / (double)txs;
            k->ns = a < k->ns ? a : k->ns;
            k->floor_ns = b < k->floor_ns ? b : k->floor_ns;
            floor_best = b < floor_best ? b : floor_best;
        }
    }
    /* Two ratios. "own": to the best floor round that followed one of the
     * type's rounds (what the alternation is for: load hits both alike).
     * "run": to the best floor round of the whole run (the same operation
     * every round, so its best is the truest figure for this CPU; a type
     * whose rounds were all slowed shows it here). */
    printf("# own = ns/tx / the best floor round after the type's rounds (\"own floor\"); "
           "run = ns/tx / the run's best floor round, %.0f ns\n",
           floor_best);
    printf("%-32s %10s %10s %8s %8s\n", "type", "ns/tx", "own floor", "own", "run");
    for (size_t i = 0; i < KIND_COUNT; i++) {
        const struct kind *k = &kinds[i];
        if (!k->skip)
            printf("%-32s %10.0f %10.0f %8.3f %8.3f%s\n", k->name, k->ns, k->floor_ns,
                   k->ns / k->floor_ns, k->ns / floor_best, k->verifies_in_payload ? " *" : "");
    }
    if (!kinds[KIND_ENROLL].skip)
        printf("# * enrolment verifies the patient's co-signature in its payload: one BIP-340 "
               "verification of its own, not the transaction's\n");

    printf("{\"bench\":\"apply\",\"patients\":%ld,\"keys\":%zu,\"txs\":%ld,\"rounds\":%ld,"
           "\"block_txs\":%d,\"floor_ns\":%.0f,\"types\":{",
           patients, keys, txs, rounds, BLOCK_TXS_MAX, floor_best);
    const char *comma = "";
    for (size_t i = 0; i < KIND_COUNT; i++) {
        const struct kind *k = &kinds[i];
        if (k->skip)
            continue;
        printf("%s\"%s\":{\"ns_per_tx\":%.0f,\"own_floor_ns\":%.0f,\"ratio_own\":%.4f,"
               "\"ratio_run\":%.4f}",
               comma, k->key, k->ns, k->floor_ns, k->ns / k->floor_ns, k->ns / floor_best);
        comma = ",";
    }
    printf("}}\n");

    for (size_t i = 0; i < KIND_COUNT; i++) {
        for (size_t k = 0; k < per_kind; k++)
            tx_free(&kinds[i].txs[k]);
        ehr_free(kinds[i].txs);
    }
    chain_free(&c);
    return 0;
}
