/*
 * fuzz_apply - libFuzzer target for the consent contract's rules
 * (contracts_apply_tx) over sequences of transactions: the input is a
 * program (fuzz_apply.h) that enrols, registers, anchors, grants, revokes,
 * erases records, requests access, proposes and approves among a fixed cast, groups the
 * transactions into blocks whose times never go back, and sometimes flips a
 * byte of a signed envelope or says the signature was checked (or failed)
 * already. The world is in memory (tests/contracts/world.c), so nothing but
 * the rules can fail.
 *
 * Oracles, each an abort:
 *   - contracts_apply_tx returns 0 for every transaction (the state is in
 *     memory and written by these rules only: an error is a defect);
 *   - a result's code is a TxResultCode, its decision an AccessDecision,
 *     its reason empty or valid text (ledger_text_ok) within
 *     CONTRACTS_REASON_BYTES_MAX, its gas within CONTRACTS_ACCESS_GAS_MAX;
 *     a refused transaction carries no decision, consent or gas, and (when
 *     no byte was flipped, so the payload is the one built) only an access
 *     or emergency access carries a decision: a permit under a consent
 *     names it, an emergency permit names none;
 *   - a refused transaction leaves the block's write set as it was, and an
 *     accepted one changes it (the write set is the block's whole effect
 *     on the state, so this is the state digest per transaction, within
 *     blocks of many transactions);
 *   - an access or emergency access to a record its patient erased (an
 *     erase accepted earlier, nothing flipped since) is never a permit;
 *   - the same input run twice, on two fresh worlds, gives byte-identical
 *     results (contracts_tx_result_encode) and world digests.
 *
 * FUZZ_APPLY_TRACE=1 in the environment prints each step and its result,
 * to read a crashing input (or a seed) as the program it is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "contracts_internal.h"
#include "fuzz_apply.h"
#include "policy.h"
#include "world.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HOUR_MS ((uint64_t)3600000)
#define T0 (WORLD_GENESIS_MS + WORLD_DAY_MS)

/* ---- what every run shares: the cast and the compiled policies ---- */

static struct party cast[FUZZ_APPLY_PARTY_COUNT];
static const Ehr__V1__MemberRole member_roles[FUZZ_APPLY_MEMBER_COUNT] = {
    EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB,
    EHR__V1__MEMBER_ROLE__MEMBER_ROLE_INSURER, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_PHARMACY};

struct compiled {
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX];
    size_t len;
};
static struct compiled compiled[FUZZ_APPLY_COMPILED_COUNT];
static const char *const compiled_sources[FUZZ_APPLY_COMPILED_COUNT - 1] = {
    "permit if true",
    "permit if requester.role == hospital",
    "deny if record.type == lab_result\npermit if true",
    "permit if request.purpose == treatment and record.age_days < 30",
    "permit if requester.practitioner == true",
    "permit if requester.institution == record.custodian",
};

static void compile_one(struct compiled *c, const char *src)
{
    ehr_diag diag;
    if (contracts_policy_compile(src, strlen(src), c->code, sizeof c->code, &c->len, &diag) != 0) {
        fprintf(stderr, "fuzz_apply: policy does not compile: %s\n", diag.msg);
        abort();
    }
}

static void shared_init(void)
{
    if (ehr_crypto_init() != 0)
        abort();
    for (uint32_t i = 0; i < FUZZ_APPLY_PARTY_COUNT; i++)
        party_make(&cast[i], 1000 + i);
    for (size_t i = 0; i < EHR_ARRAY_COUNT(compiled_sources); i++)
        compile_one(&compiled[i], compiled_sources[i]);
    /* 300 terms that never match: over the CONTRACTS_ACCESS_GAS_MAX of a request. */
    static char burner[16 + 10 * 300];
    size_t n = (size_t)snprintf(burner, sizeof burner, "deny if false");
    for (int i = 1; i < 300; i++)
        n += (size_t)snprintf(burner + n, sizeof burner - n, " and false");
    compile_one(&compiled[FUZZ_APPLY_COMPILED_GAS_BURNER], burner);
}

/* ---- one run of a program ---- */

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

/* The ids of the last FUZZ_APPLY_SEEN_MAX transactions of one kind. */
struct seen {
    uint8_t ids[FUZZ_APPLY_SEEN_MAX][EHR_HASH_BYTES];
    size_t count; /* ever added */
};

static void seen_add(struct seen *s, const uint8_t id[EHR_HASH_BYTES])
{
    memcpy(s->ids[s->count % FUZZ_APPLY_SEEN_MAX], id, EHR_HASH_BYTES);
    s->count++;
}

/* An id picked by B, or one that names nothing (a stranger's key). */
static const uint8_t *seen_pick(const struct seen *s, uint8_t b)
{
    size_t k = s->count < FUZZ_APPLY_SEEN_MAX ? s->count : FUZZ_APPLY_SEEN_MAX;
    size_t i = b % (k + 1);
    return i < k ? s->ids[i] : cast[FUZZ_APPLY_STRANGER].sig.public_key;
}

enum { RESULTS_MAX = FUZZ_APPLY_STEPS_MAX };

struct run {
    struct world *w;
    contracts_block *b; /* the open block, or NULL */
    uint64_t time_ms;
    uint32_t position;
    struct seen records, consents, proposals;
    struct seen erased;    /* records an accepted erase named */
    const uint8_t *target; /* the record the step being applied names, or NULL */
    bool trace;
    /* what the determinism oracle compares */
    uint8_t results[RESULTS_MAX][CONTRACTS_RESULT_BYTES_MAX];
    size_t result_len[RESULTS_MAX];
    size_t result_count;
    uint8_t digest[EHR_HASH_BYTES];
};

static const struct party *party_pick(struct input *in)
{
    return &cast[take(in) % FUZZ_APPLY_PARTY_COUNT];
}

static int64_t signed_byte(struct input *in)
{
    return (int8_t)take(in);
}

/* A digest of the block's write set: its whole effect on the state so far. */
static void writes_digest(contracts_block *b, uint8_t out[EHR_HASH_BYTES])
{
    const ledger_state_write *w;
    size_t n = contracts_block_writes(b, &w);
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    for (size_t i = 0; i < n; i++) {
        uint8_t head[17];
        contracts_be64(head, w[i].key_len);
        contracts_be64(head + 8, w[i].value_len);
        head[16] = w[i].remove;
        crypto_hash_sha256_update(&h, head, sizeof head);
        crypto_hash_sha256_update(&h, w[i].key, w[i].key_len);
        if (w[i].value_len > 0)
            crypto_hash_sha256_update(&h, w[i].value, w[i].value_len);
    }
    crypto_hash_sha256_final(&h, out);
}

static void block_close(struct run *r)
{
    if (r->b != NULL)
        world_block_close(r->w, r->b);
    r->b = NULL;
    r->position = 0;
}

static bool is_access(enum fuzz_apply_op op)
{
    return op == FUZZ_APPLY_OP_ACCESS || op == FUZZ_APPLY_OP_EMERGENCY;
}

/* The oracles on one result; OP is the operation built, FLIPPED whether a
 * byte of its envelope was changed since (then the payload may be another). */
static void result_check(const struct contracts_tx_result *res, enum fuzz_apply_op op, bool flipped)
{
    if (res->code < EHR__V1__TX_RESULT_CODE__TX_RESULT_OK ||
        res->code > EHR__V1__TX_RESULT_CODE__TX_RESULT_REFUSED)
        abort();
    if (memchr(res->reason, '\0', sizeof res->reason) == NULL)
        abort();
    if (strlen(res->reason) > CONTRACTS_REASON_BYTES_MAX)
        abort();
    if (res->reason[0] != '\0' && !ledger_text_ok(res->reason, CONTRACTS_REASON_BYTES_MAX))
        abort();
    if (res->decision < EHR__V1__ACCESS_DECISION__ACCESS_DECISION_UNSPECIFIED ||
        res->decision > EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY)
        abort();
    if (res->gas_used > CONTRACTS_ACCESS_GAS_MAX)
        abort();
    bool permit = res->decision == EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT;
    if (res->has_consent && !permit)
        abort();
    if (res->code != EHR__V1__TX_RESULT_CODE__TX_RESULT_OK) {
        if (res->reason[0] == '\0')
            abort(); /* a refusal says why */
        if (res->decision != 0 || res->has_consent || res->gas_used != 0)
            abort();
        return;
    }
    if (flipped)
        return;
    if (!is_access(op)) {
        if (res->decision != 0 || res->gas_used != 0)
            abort();
        return;
    }
    if (res->decision == 0)
        abort(); /* an accepted access request is decided */
    if (op == FUZZ_APPLY_OP_EMERGENCY && (res->has_consent || res->gas_used != 0))
        abort();
    if (op == FUZZ_APPLY_OP_ACCESS && permit != res->has_consent)
        abort();
}

static const char *const code_names[] = {
    "OK", "MALFORMED", "BAD_SIGNATURE", "NOT_AUTHORIZED", "NOT_FOUND", "CONFLICT", "REFUSED"};
static const char *const op_names[FUZZ_APPLY_OP_COUNT] = {
    "block",  "enroll",    "practitioner add", "practitioner remove", "anchor",  "grant", "revoke",
    "access", "emergency", "propose admit",    "propose remove",      "approve", "erase"};

/* Apply T (its mode from the input) in the open block and check it. */
static void apply(struct run *r, struct input *in, enum fuzz_apply_op op, const struct party *by,
                  struct tx *t)
{
    uint8_t mode = take(in);
    bool flipped = (mode & FUZZ_APPLY_FLIP) != 0;
    if (flipped) {
        size_t at = (size_t)take(in) << 8;
        at = (at | take(in)) % t->len;
        uint8_t mask = take(in);
        t->envelope[at] ^= mask != 0 ? mask : 1;
        /* The id a node would give it: the hash of its body as it now reads. */
        ledger_tx_view view;
        if (ledger_tx_envelope_parse(t->envelope, t->len, &view, NULL) == 0)
            ledger_tx_hash(view.body, view.body_len, t->hash);
    }
    static const enum contracts_sig sigs[4] = {CONTRACTS_SIG_VALID, CONTRACTS_SIG_UNCHECKED,
                                               CONTRACTS_SIG_INVALID, CONTRACTS_SIG_VALID};
    if (r->b == NULL)
        r->b = world_block_open(r->w, r->time_ms);
    uint8_t before[EHR_HASH_BYTES], after[EHR_HASH_BYTES];
    writes_digest(r->b, before);
    struct contracts_tx tx = {.envelope = t->envelope,
                              .len = t->len,
                              .hash = t->hash,
                              .position = r->position++,
                              .sig = sigs[mode & 3]};
    struct contracts_tx_result res;
    if (contracts_apply_tx(r->b, &tx, &res) != 0)
        abort();
    if (r->trace)
        printf("%-20s by %2d mode %d%s: %s%s%s \"%s\" gas %llu\n", op_names[op], (int)(by - cast),
               mode & 3, flipped ? " flipped" : "", code_names[res.code],
               res.decision == 1   ? " PERMIT"
               : res.decision == 2 ? " DENY"
                                   : "",
               res.has_consent ? " (consent)" : "", res.reason, (unsigned long long)res.gas_used);
    result_check(&res, op, flipped);
    bool ok = res.code == EHR__V1__TX_RESULT_CODE__TX_RESULT_OK;
    if (ok && !flipped && r->target != NULL) {
        bool erased = false;
        size_t k = r->erased.count < FUZZ_APPLY_SEEN_MAX ? r->erased.count : FUZZ_APPLY_SEEN_MAX;
        for (size_t i = 0; i < k; i++)
            erased |= memcmp(r->erased.ids[i], r->target, EHR_HASH_BYTES) == 0;
        if (is_access(op) && erased &&
            res.decision == EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT)
            abort(); /* an erased record opened */
        if (op == FUZZ_APPLY_OP_ERASE && !erased)
            seen_add(&r->erased, r->target);
    }
    r->target = NULL;
    writes_digest(r->b, after);
    bool changed = memcmp(before, after, sizeof before) != 0;
    if (changed != (res.code == EHR__V1__TX_RESULT_CODE__TX_RESULT_OK))
        abort();
    EHR_ASSERT(r->result_count < RESULTS_MAX);
    r->result_len[r->result_count] = contracts_tx_result_encode(&res, r->results[r->result_count]);
    r->result_count++;
    tx_free(t);
}

static void step_grant(struct run *r, struct input *in, const struct party *by, struct tx *t)
{
    Ehr__V1__RecordType types[3];
    uint8_t ids[2][EHR_HASH_BYTES];
    uint8_t raw[1 + 64];
    struct grant g = {.grantee = party_pick(in)->sig.public_key};
    g.n_types = take(in) % (EHR_ARRAY_COUNT(types) + 1);
    for (size_t i = 0; i < g.n_types; i++)
        types[i] = (Ehr__V1__RecordType)(take(in) % 11);
    g.types = types;
    g.n_ids = take(in) % (EHR_ARRAY_COUNT(ids) + 1);
    for (size_t i = 0; i < g.n_ids; i++)
        memcpy(ids[i], seen_pick(&r->records, take(in)), EHR_HASH_BYTES);
    g.ids = (const uint8_t(*)[EHR_HASH_BYTES])ids;
    g.purpose = (Ehr__V1__Purpose)(take(in) % 8);
    g.from_ms = (uint64_t)((int64_t)r->time_ms + signed_byte(in) * (int64_t)WORLD_DAY_MS);
    g.until_ms = g.from_ms + take(in) * WORLD_DAY_MS;
    enum fuzz_apply_policy policy = (enum fuzz_apply_policy)(take(in) % FUZZ_APPLY_POLICY_COUNT);
    switch (policy) {
    case FUZZ_APPLY_POLICY_NONE:
    case FUZZ_APPLY_POLICY_COUNT:
        break;
    case FUZZ_APPLY_POLICY_COMPILED: {
        const struct compiled *c = &compiled[take(in) % FUZZ_APPLY_COMPILED_COUNT];
        g.policy = c->code, g.policy_len = c->len;
        break;
    }
    case FUZZ_APPLY_POLICY_RAW:
    case FUZZ_APPLY_POLICY_VERSIONED: {
        size_t n = 0;
        if (policy == FUZZ_APPLY_POLICY_VERSIONED)
            raw[n++] = CONTRACTS_VM_VERSION;
        for (size_t len = take(in) % 64; len > 0; len--)
            raw[n++] = take(in);
        g.policy = raw, g.policy_len = n;
        break;
    }
    }
    g.n_fragments = take(in) % (CONTRACTS_KEY_FRAGMENTS_MAX + 2);
    uint8_t size = take(in);
    g.fragment_len = size == 255   ? CONTRACTS_KEY_FRAGMENT_BYTES_MAX + 1
                     : size == 254 ? CONTRACTS_KEY_FRAGMENT_BYTES_MAX
                                   : size % 64;
    tx_grant(r->w, by, &g, t);
    seen_add(&r->consents, t->hash);
}

static void step_emergency(struct run *r, struct input *in, const struct party *by, struct tx *t)
{
    const uint8_t *record = seen_pick(&r->records, take(in));
    r->target = record;
    char reason[CONTRACTS_EMERGENCY_REASON_BYTES_MAX + 2];
    enum fuzz_apply_reason kind = (enum fuzz_apply_reason)(take(in) % FUZZ_APPLY_REASON_COUNT);
    switch (kind) {
    case FUZZ_APPLY_REASON_OK:
    case FUZZ_APPLY_REASON_COUNT:
        snprintf(reason, sizeof reason, "unconscious, brought in by ambulance");
        break;
    case FUZZ_APPLY_REASON_EMPTY:
        reason[0] = '\0';
        break;
    case FUZZ_APPLY_REASON_LONGEST:
    case FUZZ_APPLY_REASON_TOO_LONG: {
        size_t len = CONTRACTS_EMERGENCY_REASON_BYTES_MAX + (kind == FUZZ_APPLY_REASON_TOO_LONG);
        memset(reason, 'r', len);
        memcpy(reason + CONTRACTS_REASON_BYTES_MAX - 19, "\xe2\x82\xac", 3); /* across the cut */
        reason[len] = '\0';
        break;
    }
    case FUZZ_APPLY_REASON_BAD_UTF8:
        snprintf(reason, sizeof reason, "caf\xc3");
        break;
    case FUZZ_APPLY_REASON_CONTROL:
        snprintf(reason, sizeof reason, "bleeding\n\x1b[2Jtrust me");
        break;
    case FUZZ_APPLY_REASON_FROM_INPUT: {
        size_t len = take(in) % 64;
        for (size_t i = 0; i < len; i++)
            reason[i] = (char)take(in);
        reason[len] = '\0';
        break;
    }
    }
    tx_emergency(r->w, by, record, reason, t);
}

/* Build the transaction of OP from the input into *T. */
static void step_build(struct run *r, struct input *in, enum fuzz_apply_op op,
                       const struct party *by, struct tx *t)
{
    const struct party *p;
    switch (op) {
    case FUZZ_APPLY_OP_ENROLL:
        tx_enroll(r->w, by, party_pick(in), t);
        break;
    case FUZZ_APPLY_OP_PRACTITIONER_ADD:
    case FUZZ_APPLY_OP_PRACTITIONER_REMOVE:
        tx_practitioner(r->w, by, party_pick(in), op == FUZZ_APPLY_OP_PRACTITIONER_ADD, t);
        break;
    case FUZZ_APPLY_OP_ANCHOR: {
        p = party_pick(in);
        Ehr__V1__RecordType type = (Ehr__V1__RecordType)(take(in) % 11);
        uint8_t sup = take(in);
        tx_anchor(r->w, by, p, type, sup == 0 ? NULL : seen_pick(&r->records, sup - 1), t);
        seen_add(&r->records, t->hash);
        break;
    }
    case FUZZ_APPLY_OP_GRANT:
        step_grant(r, in, by, t);
        break;
    case FUZZ_APPLY_OP_REVOKE:
        tx_revoke(r->w, by, seen_pick(&r->consents, take(in)), t);
        break;
    case FUZZ_APPLY_OP_ACCESS: {
        const uint8_t *record = seen_pick(&r->records, take(in));
        r->target = record;
        tx_access(r->w, by, record, (Ehr__V1__Purpose)(take(in) % 8), t);
        break;
    }
    case FUZZ_APPLY_OP_ERASE: {
        const uint8_t *record = seen_pick(&r->records, take(in));
        r->target = record;
        tx_erase(r->w, by, record, EHR_HASH_BYTES, (Ehr__V1__EraseGround)(take(in) % 7), t);
        break;
    }
    case FUZZ_APPLY_OP_EMERGENCY:
        step_emergency(r, in, by, t);
        break;
    case FUZZ_APPLY_OP_PROPOSE_ADMIT: {
        p = party_pick(in);
        Ehr__V1__MemberRole role = (Ehr__V1__MemberRole)(take(in) % 8);
        uint64_t expires = (uint64_t)((int64_t)r->time_ms + signed_byte(in) * (int64_t)HOUR_MS);
        tx_propose_admit(r->w, by, p, role, expires, t);
        seen_add(&r->proposals, t->hash);
        break;
    }
    case FUZZ_APPLY_OP_PROPOSE_REMOVE: {
        p = party_pick(in);
        uint64_t expires = (uint64_t)((int64_t)r->time_ms + signed_byte(in) * (int64_t)HOUR_MS);
        tx_propose_remove(r->w, by, p->sig.public_key, expires, t);
        seen_add(&r->proposals, t->hash);
        break;
    }
    case FUZZ_APPLY_OP_APPROVE:
        tx_approve(r->w, by, seen_pick(&r->proposals, take(in)), t);
        break;
    case FUZZ_APPLY_OP_BLOCK:
    case FUZZ_APPLY_OP_COUNT:
        abort(); /* not a transaction */
    }
}

static void run(struct run *r, const uint8_t *data, size_t size, bool trace)
{
    memset(r, 0, sizeof *r);
    r->trace = trace;
    struct input in = {data, size};
    static const Ehr__V1__MemberRole clinical[] = {EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL,
                                                   EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB};
    bool no_emergency = (take(&in) & FUZZ_APPLY_FLAG_NO_EMERGENCY) != 0;
    r->w = world_new(clinical, no_emergency ? 0 : EHR_ARRAY_COUNT(clinical));
    for (size_t i = 0; i < FUZZ_APPLY_MEMBER_COUNT; i++)
        world_member_add(r->w, &cast[i], member_roles[i]);
    r->time_ms = T0;
    for (int steps = 0; steps < FUZZ_APPLY_STEPS_MAX && in.n > 0; steps++) {
        enum fuzz_apply_op op = (enum fuzz_apply_op)(take(&in) % FUZZ_APPLY_OP_COUNT);
        if (op == FUZZ_APPLY_OP_BLOCK) {
            uint8_t hours = take(&in);
            block_close(r);
            r->time_ms += hours == 255 ? 4000 * WORLD_DAY_MS : hours * HOUR_MS;
            if (r->trace)
                printf("-- block %llu at +%llu h\n", (unsigned long long)world_height(r->w) + 1,
                       (unsigned long long)((r->time_ms - T0) / HOUR_MS));
            continue;
        }
        const struct party *by = party_pick(&in);
        struct tx t;
        step_build(r, &in, op, by, &t);
        apply(r, &in, op, by, &t);
    }
    block_close(r);
    world_digest(r->w, r->digest);
    world_free(r->w);
    r->w = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready, trace;
    static struct run a, b;
    if (!ready) {
        shared_init();
        const char *env = getenv("FUZZ_APPLY_TRACE");
        trace = env != NULL && strcmp(env, "1") == 0;
        if (trace)
            setvbuf(stdout, NULL, _IOLBF, 0); /* each step out before a crash */
        ready = true;
    }
    run(&a, data, size, trace);
    run(&b, data, size, false);
    if (a.result_count != b.result_count)
        abort();
    for (size_t i = 0; i < a.result_count; i++) {
        if (a.result_len[i] != b.result_len[i] ||
            memcmp(a.results[i], b.results[i], a.result_len[i]) != 0) {
            fprintf(stderr, "fuzz_apply: the two runs differ at result %zu\n", i);
            abort();
        }
    }
    if (memcmp(a.digest, b.digest, sizeof a.digest) != 0) {
        fprintf(stderr, "fuzz_apply: the two runs end in different states\n");
        abort();
    }
    return 0;
}
