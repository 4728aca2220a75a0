/*
 * Tests of the consent contract's rules (contracts_apply_tx) over an
 * in-memory world (world.h): the consent matrix as a table, every
 * transaction type valid and invalid with the state it leaves, the bounds of
 * one access request at their edges, signatures, and determinism.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contracts_internal.h"
#include "ehr/v1/state.pb-c.h"
#include "policy.h"
#include "vm.h"
#include "world.h"

#define OK EHR__V1__TX_RESULT_CODE__TX_RESULT_OK
#define MALFORMED EHR__V1__TX_RESULT_CODE__TX_RESULT_MALFORMED
#define BAD_SIGNATURE EHR__V1__TX_RESULT_CODE__TX_RESULT_BAD_SIGNATURE
#define NOT_AUTHORIZED EHR__V1__TX_RESULT_CODE__TX_RESULT_NOT_AUTHORIZED
#define NOT_FOUND EHR__V1__TX_RESULT_CODE__TX_RESULT_NOT_FOUND
#define CONFLICT EHR__V1__TX_RESULT_CODE__TX_RESULT_CONFLICT
#define REFUSED EHR__V1__TX_RESULT_CODE__TX_RESULT_REFUSED
#define PERMIT EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT
#define DENY EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY

#define HOSPITAL EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL
#define LAB EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB
#define INSURER EHR__V1__MEMBER_ROLE__MEMBER_ROLE_INSURER
#define LAB_RESULT EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT
#define IMAGING EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING
#define TREATMENT EHR__V1__PURPOSE__PURPOSE_TREATMENT
#define PAYMENT EHR__V1__PURPOSE__PURPOSE_PAYMENT

/* Block times: setup at T0, grants at T1, the access at T2. */
#define T0 (WORLD_GENESIS_MS + WORLD_DAY_MS)
#define T1 (T0 + WORLD_DAY_MS)
#define T2 (T1 + 10 * WORLD_DAY_MS)

/* ---- the fixture: a small chain with a patient and two records ---- */

struct fx {
    struct world *w;
    struct party hosp, hosp2, lab, ins; /* members */
    struct party prac2;                 /* a practitioner of hosp2 */
    struct party patient, patient2, stranger;
    uint8_t lab_record[EHR_HASH_BYTES];     /* a lab result of the patient, by hosp */
    uint8_t imaging_record[EHR_HASH_BYTES]; /* an imaging study of the patient, by hosp */
    uint8_t other_record[EHR_HASH_BYTES];   /* patient2's lab result, by hosp */
};

static void expect_ok(struct fx *f, uint64_t t, const struct tx *tx)
{
    struct contracts_tx_result r;
    int code = world_one(f->w, t, tx, &r);
    if (code != OK)
        fail_msg("expected OK, got %d: %s", code, r.reason);
}

static struct fx *fx_make(bool emergency_allowed)
{
    struct fx *f = ehr_calloc(1, sizeof *f);
    static const Ehr__V1__MemberRole clinical[] = {HOSPITAL, LAB};
    f->w = world_new(clinical, emergency_allowed ? 2 : 0);
    party_make(&f->hosp, 1);
    party_make(&f->hosp2, 2);
    party_make(&f->lab, 3);
    party_make(&f->ins, 4);
    party_make(&f->prac2, 10);
    party_make(&f->patient, 20);
    party_make(&f->patient2, 21);
    party_make(&f->stranger, 30);
    world_member_add(f->w, &f->hosp, HOSPITAL);
    world_member_add(f->w, &f->hosp2, HOSPITAL);
    world_member_add(f->w, &f->lab, LAB);
    world_member_add(f->w, &f->ins, INSURER);
    struct tx t;
    tx_enroll(f->w, &f->hosp, &f->patient, &t);
    expect_ok(f, T0, &t);
    tx_free(&t);
    tx_enroll(f->w, &f->hosp, &f->patient2, &t);
    expect_ok(f, T0, &t);
    tx_free(&t);
    tx_practitioner(f->w, &f->hosp2, &f->prac2, true, &t);
    expect_ok(f, T0, &t);
    tx_free(&t);
    tx_anchor(f->w, &f->hosp, &f->patient, LAB_RESULT, NULL, &t);
    expect_ok(f, T0, &t);
    memcpy(f->lab_record, t.hash, EHR_HASH_BYTES);
    tx_free(&t);
    tx_anchor(f->w, &f->hosp, &f->patient, IMAGING, NULL, &t);
    expect_ok(f, T0, &t);
    memcpy(f->imaging_record, t.hash, EHR_HASH_BYTES);
    tx_free(&t);
    tx_anchor(f->w, &f->hosp, &f->patient2, LAB_RESULT, NULL, &t);
    expect_ok(f, T0, &t);
    memcpy(f->other_record, t.hash, EHR_HASH_BYTES);
    tx_free(&t);
    return f;
}

static void fx_free(struct fx *f)
{
    world_free(f->w);
    ehr_free(f);
}

static int setup(void **state)
{
    *state = fx_make(true);
    return 0;
}

static int teardown(void **state)
{
    fx_free(*state);
    return 0;
}

/* Compile SRC into OUT (CONTRACTS_POLICY_BYTES_MAX); returns the length. */
static size_t compile(const char *src, uint8_t *out)
{
    size_t len = 0;
    int rc =
        contracts_policy_compile(src, strlen(src), out, CONTRACTS_POLICY_BYTES_MAX, &len, NULL);
    assert_int_equal(rc, 0);
    return len;
}

/* "deny if false and false ... " with TERMS terms: it never matches, so it
 * runs to its end; its gas grows by 2 a term. */
static size_t gas_burner(size_t terms, uint8_t *out)
{
    static const char first[] = "deny if false", more[] = " and false";
    size_t cap = sizeof first + terms * (sizeof more - 1);
    char *src = ehr_malloc(cap);
    size_t n = (size_t)snprintf(src, cap, "%s", first);
    for (size_t i = 1; i < terms; i++)
        n += (size_t)snprintf(src + n, cap - n, "%s", more);
    size_t len = compile(src, out);
    ehr_free(src);
    return len;
}

/* The gas CODE needs to run to its end on any request. */
static uint64_t gas_needed(const uint8_t *code, size_t len)
{
    struct contracts_vm_request req = {0};
    struct contracts_vm_result r;
    assert_int_equal(contracts_vm_eval(code, len, &req, CONTRACTS_VM_GAS_MAX, &r), 0);
    assert_int_equal(r.reason, CONTRACTS_VM_REASON_END);
    return r.gas_used;
}

/* ---- the consent matrix ---- */

enum requester { REQ_GRANTEE, REQ_OTHER_MEMBER, REQ_PRACTITIONER, REQ_INSURER };
enum scope { SCOPE_TYPE_IN, SCOPE_TYPE_OUT, SCOPE_ID_IN, SCOPE_ID_OUT };
enum period { PERIOD_BEFORE, PERIOD_INSIDE, PERIOD_AFTER };
enum revoked {
    REVOKED_NO,
    REVOKED_EARLIER_BLOCK,
    REVOKED_SAME_BLOCK_BEFORE,
    REVOKED_SAME_BLOCK_AFTER
};
enum policy { POLICY_NONE, POLICY_PERMITS, POLICY_DENIES, POLICY_OUT_OF_GAS, POLICY_MALFORMED };
enum emergency { EMERGENCY_NO, EMERGENCY_ALLOWED, EMERGENCY_DISALLOWED, EMERGENCY_NON_CLINICAL };

struct row {
    const char *name;
    enum requester requester;
    enum scope scope;
    bool purpose_matches;
    enum period period;
    enum revoked revoked;
    enum policy policy;
    enum emergency emergency;
    /* expected */
    int grant_code;
    int decision;
    const char *reason; /* the result's reason contains this ("" for a permit) */
};

static const char REASON_NO_CONSENT[] = "no consent of the patient covers this request";
static const char REASON_SCOPE[] = "the consent does not cover this record";
static const char REASON_PURPOSE[] = "the consent is for another purpose";
static const char REASON_PERIOD[] = "the consent's period does not cover the block time";
static const char REASON_REVOKED[] = "the consent was revoked";
static const char REASON_POLICY_DENY[] = "the consent's policy denied: a deny rule matched";
static const char REASON_POLICY_GAS[] = "the consent's policy denied: out of gas";
static const char REASON_NOT_ALLOWED[] =
    "emergency access is not allowed to this role on this chain";
static const char REASON_EMERGENCY[] = "emergency access: unconscious, brought in by ambulance";

#define BASE REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_INSIDE, REVOKED_NO, POLICY_NONE, EMERGENCY_NO

static const struct row matrix[] = {
    /* grantee */
    {"the grantee", BASE, OK, PERMIT, ""},
    {"another member", REQ_OTHER_MEMBER, SCOPE_TYPE_IN, true, PERIOD_INSIDE, REVOKED_NO,
     POLICY_NONE, EMERGENCY_NO, OK, DENY, REASON_NO_CONSENT},
    {"a practitioner of the grantee", REQ_PRACTITIONER, SCOPE_TYPE_IN, true, PERIOD_INSIDE,
     REVOKED_NO, POLICY_NONE, EMERGENCY_NO, OK, PERMIT, ""},
    /* scope */
    {"type out of scope", REQ_GRANTEE, SCOPE_TYPE_OUT, true, PERIOD_INSIDE, REVOKED_NO, POLICY_NONE,
     EMERGENCY_NO, OK, DENY, REASON_SCOPE},
    {"id in scope", REQ_GRANTEE, SCOPE_ID_IN, true, PERIOD_INSIDE, REVOKED_NO, POLICY_NONE,
     EMERGENCY_NO, OK, PERMIT, ""},
    {"id out of scope", REQ_GRANTEE, SCOPE_ID_OUT, true, PERIOD_INSIDE, REVOKED_NO, POLICY_NONE,
     EMERGENCY_NO, OK, DENY, REASON_SCOPE},
    {"practitioner, id in scope", REQ_PRACTITIONER, SCOPE_ID_IN, true, PERIOD_INSIDE, REVOKED_NO,
     POLICY_NONE, EMERGENCY_NO, OK, PERMIT, ""},
    {"practitioner, type out of scope", REQ_PRACTITIONER, SCOPE_TYPE_OUT, true, PERIOD_INSIDE,
     REVOKED_NO, POLICY_NONE, EMERGENCY_NO, OK, DENY, REASON_SCOPE},
    /* purpose */
    {"purpose mismatch", REQ_GRANTEE, SCOPE_TYPE_IN, false, PERIOD_INSIDE, REVOKED_NO, POLICY_NONE,
     EMERGENCY_NO, OK, DENY, REASON_PURPOSE},
    /* period, in block time, at its edges */
    {"before the period", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_BEFORE, REVOKED_NO, POLICY_NONE,
     EMERGENCY_NO, OK, DENY, REASON_PERIOD},
    {"after the period", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_AFTER, REVOKED_NO, POLICY_NONE,
     EMERGENCY_NO, OK, DENY, REASON_PERIOD},
    /* revocation */
    {"revoked in an earlier block", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_INSIDE,
     REVOKED_EARLIER_BLOCK, POLICY_NONE, EMERGENCY_NO, OK, DENY, REASON_REVOKED},
    {"revoked earlier in the same block", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_INSIDE,
     REVOKED_SAME_BLOCK_BEFORE, POLICY_NONE, EMERGENCY_NO, OK, DENY, REASON_REVOKED},
    {"revoked later in the same block", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_INSIDE,
     REVOKED_SAME_BLOCK_AFTER, POLICY_NONE, EMERGENCY_NO, OK, PERMIT, ""},
    {"practitioner, revoked", REQ_PRACTITIONER, SCOPE_TYPE_IN, true, PERIOD_INSIDE,
     REVOKED_EARLIER_BLOCK, POLICY_NONE, EMERGENCY_NO, OK, DENY, REASON_REVOKED},
    /* policy */
    {"policy permits", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_INSIDE, REVOKED_NO, POLICY_PERMITS,
     EMERGENCY_NO, OK, PERMIT, ""},
    {"policy denies", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_INSIDE, REVOKED_NO, POLICY_DENIES,
     EMERGENCY_NO, OK, DENY, REASON_POLICY_DENY},
    {"policy runs out of gas", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_INSIDE, REVOKED_NO,
     POLICY_OUT_OF_GAS, EMERGENCY_NO, OK, DENY, REASON_POLICY_GAS},
    {"policy malformed: the grant is refused", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_INSIDE,
     REVOKED_NO, POLICY_MALFORMED, EMERGENCY_NO, REFUSED, DENY, REASON_NO_CONSENT},
    {"practitioner, policy permits (the member's role)", REQ_PRACTITIONER, SCOPE_TYPE_IN, true,
     PERIOD_INSIDE, REVOKED_NO, POLICY_PERMITS, EMERGENCY_NO, OK, PERMIT, ""},
    {"policy is not run outside the period", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_AFTER,
     REVOKED_NO, POLICY_PERMITS, EMERGENCY_NO, OK, DENY, REASON_PERIOD},
    /* emergency: by the chain's rules alone, whatever the consents */
    {"emergency, allowed, no consent", REQ_OTHER_MEMBER, SCOPE_TYPE_OUT, true, PERIOD_INSIDE,
     REVOKED_NO, POLICY_NONE, EMERGENCY_ALLOWED, OK, PERMIT, REASON_EMERGENCY},
    {"emergency, allowed, by a practitioner", REQ_PRACTITIONER, SCOPE_TYPE_OUT, true, PERIOD_INSIDE,
     REVOKED_EARLIER_BLOCK, POLICY_DENIES, EMERGENCY_ALLOWED, OK, PERMIT, REASON_EMERGENCY},
    {"emergency, the chain allows none", REQ_GRANTEE, SCOPE_TYPE_IN, true, PERIOD_INSIDE,
     REVOKED_NO, POLICY_NONE, EMERGENCY_DISALLOWED, OK, DENY, REASON_NOT_ALLOWED},
    {"emergency, a non-clinical role", REQ_INSURER, SCOPE_TYPE_IN, true, PERIOD_INSIDE, REVOKED_NO,
     POLICY_NONE, EMERGENCY_NON_CLINICAL, OK, DENY, REASON_NOT_ALLOWED},
    /* an insurer with a consent of its own */
    {"insurer, the grantee", REQ_INSURER, SCOPE_TYPE_IN, true, PERIOD_INSIDE, REVOKED_NO,
     POLICY_NONE, EMERGENCY_NO, OK, PERMIT, ""},
    {"insurer, policy for hospitals only", REQ_INSURER, SCOPE_TYPE_IN, true, PERIOD_INSIDE,
     REVOKED_NO, POLICY_PERMITS, EMERGENCY_NO, OK, DENY,
     "the consent's policy denied: no rule matched"},
};

static const struct party *requester_of(struct fx *f, enum requester r)
{
    switch (r) {
    case REQ_GRANTEE:
        return &f->hosp2;
    case REQ_OTHER_MEMBER:
        return &f->lab;
    case REQ_PRACTITIONER:
        return &f->prac2;
    case REQ_INSURER:
        return &f->ins;
    }
    return NULL;
}

static void run_row(const struct row *row)
{
    struct fx *f = fx_make(row->emergency != EMERGENCY_DISALLOWED);
    const struct party *who = requester_of(f, row->requester);
    /* The grantee: hosp2 (whose practitioner is prac2), or the insurer. */
    const struct party *grantee = row->requester == REQ_INSURER ? &f->ins : &f->hosp2;

    Ehr__V1__RecordType type_in = LAB_RESULT, type_out = IMAGING;
    uint8_t ids[1][EHR_HASH_BYTES];
    struct grant g = {.grantee = grantee->sig.public_key, .purpose = TREATMENT};
    switch (row->scope) {
    case SCOPE_TYPE_IN:
        g.types = &type_in, g.n_types = 1;
        break;
    case SCOPE_TYPE_OUT:
        g.types = &type_out, g.n_types = 1;
        break;
    case SCOPE_ID_IN:
    case SCOPE_ID_OUT:
        memcpy(ids[0], row->scope == SCOPE_ID_IN ? f->lab_record : f->imaging_record,
               EHR_HASH_BYTES);
        g.ids = (const uint8_t(*)[EHR_HASH_BYTES])ids, g.n_ids = 1;
        break;
    }
    /* The edges: a consent covers [from, until) of block time. */
    switch (row->period) {
    case PERIOD_BEFORE:
        g.from_ms = T2 + 1, g.until_ms = T2 + WORLD_DAY_MS;
        break;
    case PERIOD_INSIDE:
        g.from_ms = T2, g.until_ms = T2 + 1;
        break;
    case PERIOD_AFTER:
        g.from_ms = T0, g.until_ms = T2;
        break;
    }
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX];
    switch (row->policy) {
    case POLICY_NONE:
        break;
    case POLICY_PERMITS:
        g.policy = code, g.policy_len = compile("permit if requester.role == hospital", code);
        break;
    case POLICY_DENIES:
        g.policy = code, g.policy_len = compile("deny if record.type == lab_result\n"
                                                "permit if true",
                                                code);
        break;
    case POLICY_OUT_OF_GAS:
        g.policy = code, g.policy_len = gas_burner(300, code);
        assert_true(gas_needed(code, g.policy_len) > CONTRACTS_ACCESS_GAS_MAX);
        break;
    case POLICY_MALFORMED: {
        static const uint8_t bad[] = {CONTRACTS_VM_VERSION, 0x99};
        g.policy = bad, g.policy_len = sizeof bad;
        break;
    }
    }
    struct tx grant, revoke, access;
    tx_grant(f->w, &f->patient, &g, &grant);
    struct contracts_tx_result r;
    assert_int_equal(world_one(f->w, T1, &grant, &r), row->grant_code);
    if (row->grant_code == REFUSED)
        assert_non_null(strstr(r.reason, "does not verify"));
    tx_revoke(f->w, &f->patient, grant.hash, &revoke);
    if (row->revoked == REVOKED_EARLIER_BLOCK)
        assert_int_equal(world_one(f->w, T1 + 1, &revoke, NULL), OK);

    Ehr__V1__AuditEvent **before;
    size_t events_before = world_audit(f->w, f->patient.sig.public_key, false, &before);
    for (size_t i = 0; i < events_before; i++)
        ehr__v1__audit_event__free_unpacked(before[i], NULL);
    free(before);

    bool emergency = row->emergency != EMERGENCY_NO;
    if (emergency)
        tx_emergency(f->w, who, f->lab_record, "unconscious, brought in by ambulance", &access);
    else
        tx_access(f->w, who, f->lab_record, row->purpose_matches ? TREATMENT : PAYMENT, &access);
    struct tx block[2];
    struct contracts_tx_result results[2];
    size_t n = 0, at = 0;
    if (row->revoked == REVOKED_SAME_BLOCK_BEFORE)
        block[n++] = revoke;
    at = n;
    block[n++] = access;
    if (row->revoked == REVOKED_SAME_BLOCK_AFTER)
        block[n++] = revoke;
    assert_int_equal(world_block(f->w, T2, block, n, NULL, results), 0);
    for (size_t i = 0; i < n; i++)
        if (i != at)
            assert_int_equal(results[i].code, OK); /* the revoke */
    const struct contracts_tx_result *got = &results[at];
    if (got->code != OK || got->decision != row->decision ||
        strstr(got->reason, row->reason) == NULL)
        fail_msg("%s: code %d decision %d reason \"%s\"; expected decision %d, reason \"%s\"",
                 row->name, got->code, got->decision, got->reason, row->decision, row->reason);
    if (row->reason[0] == '\0')
        assert_string_equal(got->reason, "");
    /* The consent used: named for a permit under a consent, never otherwise. */
    bool under_consent = got->decision == PERMIT && !emergency;
    assert_int_equal(got->has_consent, under_consent);
    if (under_consent)
        assert_memory_equal(got->consent_id, grant.hash, EHR_HASH_BYTES);
    if (row->policy == POLICY_OUT_OF_GAS)
        assert_int_equal(got->gas_used, CONTRACTS_ACCESS_GAS_MAX);
    else if (row->policy == POLICY_NONE || row->policy == POLICY_MALFORMED || emergency)
        assert_int_equal(got->gas_used, 0);

    /* Exactly one audit event more for the access (plus the same-block
     * revoke's), in chain order, saying who, for whom, and the decision. */
    Ehr__V1__AuditEvent **ev;
    size_t events = world_audit(f->w, f->patient.sig.public_key, false, &ev);
    size_t revokes_now =
        row->revoked == REVOKED_SAME_BLOCK_BEFORE || row->revoked == REVOKED_SAME_BLOCK_AFTER;
    assert_int_equal(events, events_before + 1 + revokes_now);
    const Ehr__V1__AuditEvent *e = ev[events_before + (row->revoked == REVOKED_SAME_BLOCK_BEFORE)];
    assert_int_equal(e->kind, emergency ? EHR__V1__AUDIT_KIND__AUDIT_KIND_EMERGENCY
                                        : EHR__V1__AUDIT_KIND__AUDIT_KIND_ACCESS);
    assert_int_equal(e->decision, row->decision);
    assert_int_equal(e->emergency, emergency);
    assert_memory_equal(e->actor.data, who->sig.public_key, 32);
    const struct party *institution = row->requester == REQ_PRACTITIONER ? &f->hosp2 : who;
    assert_memory_equal(e->institution.data, institution->sig.public_key, 32);
    assert_memory_equal(e->record_id.data, f->lab_record, EHR_HASH_BYTES);
    assert_int_equal(e->consent_id.len, under_consent ? EHR_HASH_BYTES : 0);
    assert_int_equal(e->place->height, world_height(f->w));
    assert_int_equal(e->place->position, at);
    assert_memory_equal(e->place->tx_hash.data, access.hash, EHR_HASH_BYTES);
    assert_int_equal(e->place->time_ms, T2);
    if (emergency)
        assert_string_equal(e->reason, "unconscious, brought in by ambulance");
    for (size_t i = 0; i < events; i++)
        ehr__v1__audit_event__free_unpacked(ev[i], NULL);
    free(ev);
    /* An emergency access is listed apart too, whatever its decision. */
    size_t flagged = world_audit(f->w, f->patient.sig.public_key, true, &ev);
    assert_int_equal(flagged, emergency ? 1 : 0);
    for (size_t i = 0; i < flagged; i++)
        ehr__v1__audit_event__free_unpacked(ev[i], NULL);
    free(ev);

    tx_free(&grant);
    tx_free(&revoke);
    tx_free(&access);
    fx_free(f);
}

static void test_consent_matrix(void **state)
{
    (void)state;
    for (size_t i = 0; i < EHR_ARRAY_COUNT(matrix); i++) {
        print_message("# %s\n", matrix[i].name);
        run_row(&matrix[i]);
    }
}

/* ---- every transaction type, valid and invalid ---- */

/* Apply T alone at T1 and check its code; the state must not change when
 * the code is not OK. Frees T. */
static struct contracts_tx_result apply_expect(struct fx *f, struct tx *t, int code,
                                               const char *reason)
{
    uint8_t before[EHR_HASH_BYTES], after[EHR_HASH_BYTES];
    world_digest(f->w, before);
    struct contracts_tx_result r;
    int got = world_one(f->w, T1, t, &r);
    if (got != code || (reason != NULL && strstr(r.reason, reason) == NULL))
        fail_msg("expected code %d (\"%s\"), got %d: \"%s\"", code, reason ? reason : "", got,
                 r.reason);
    world_digest(f->w, after);
    if (code != OK)
        assert_memory_equal(before, after, EHR_HASH_BYTES);
    else
        assert_memory_not_equal(before, after, EHR_HASH_BYTES);
    tx_free(t);
    return r;
}

static bool has_key(struct fx *f, const char *prefix, const uint8_t *part)
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, prefix, part, NULL, NULL), len;
    return world_get(f->w, k, n, &len) != NULL;
}

static void test_enroll(void **state)
{
    struct fx *f = *state;
    struct party p;
    party_make(&p, 100);
    struct tx t;
    /* Only a member enrolls; a practitioner or a patient cannot. */
    tx_enroll(f->w, &f->prac2, &p, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only a member enrolls");
    tx_enroll(f->w, &f->patient, &p, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, NULL);
    /* The patient's signature binds the enroller: hosp's cannot be replayed by lab. */
    tx_enroll(f->w, &f->hosp, &p, &t);
    Ehr__V1__TxEnvelope *env = ehr__v1__tx_envelope__unpack(NULL, t.len, t.envelope);
    Ehr__V1__TxBody *body = ehr__v1__tx_body__unpack(NULL, env->body.len, env->body.data);
    /* tx_sign and the forgery below point fields of BODY at other memory:
     * put back what the decoder allocated before freeing it. */
    Ehr__V1__TxBody decoded = *body;
    ProtobufCBinaryData decoded_signature = body->patient_enroll->patient_signature;
    struct tx replay;
    body->signer = (ProtobufCBinaryData){32, f->lab.sig.public_key};
    tx_sign(f->w, &f->lab, body, &replay);
    apply_expect(f, &replay, REFUSED, "the patient's signature on the enrolment does not verify");
    /* ... nor forged by the enroller with its own key. */
    uint8_t forged[EHR_SCHNORR_SIG_BYTES], msg[32];
    contracts_enroll_message(WORLD_CHAIN_ID, f->lab.sig.public_key, p.sig.public_key,
                             p.kx.public_key, msg);
    assert_int_equal(ehr_schnorr_sign(&f->lab.sig, msg, forged), 0);
    body->patient_enroll->patient_signature = (ProtobufCBinaryData){sizeof forged, forged};
    tx_sign(f->w, &f->lab, body, &replay);
    apply_expect(f, &replay, REFUSED, "does not verify");
    body->signer = decoded.signer;
    body->nonce = decoded.nonce;
    body->chain_id = decoded.chain_id;
    body->patient_enroll->patient_signature = decoded_signature;
    ehr__v1__tx_body__free_unpacked(body, NULL);
    ehr__v1__tx_envelope__free_unpacked(env, NULL);

    struct contracts_tx_result r = apply_expect(f, &t, OK, NULL);
    assert_string_equal(r.reason, "");
    assert_true(has_key(f, CONTRACTS_PREFIX_PATIENT, p.sig.public_key));
    tx_enroll(f->w, &f->hosp2, &p, &t);
    apply_expect(f, &t, CONFLICT, "enrolled already");
    /* A member's key cannot be a patient's. */
    tx_enroll(f->w, &f->hosp, &f->lab, &t);
    apply_expect(f, &t, REFUSED, "a member's node key");
    /* The enrolment is in the patient's audit trail. */
    Ehr__V1__AuditEvent **ev;
    size_t n = world_audit(f->w, p.sig.public_key, false, &ev);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0]->kind, EHR__V1__AUDIT_KIND__AUDIT_KIND_ENROLL);
    assert_memory_equal(ev[0]->actor.data, f->hosp.sig.public_key, 32);
    ehr__v1__audit_event__free_unpacked(ev[0], NULL);
    free(ev);
}

static void test_practitioners(void **state)
{
    struct fx *f = *state;
    struct party p;
    party_make(&p, 101);
    struct tx t;
    tx_practitioner(f->w, &f->patient, &p, true, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only a member");
    tx_practitioner(f->w, &f->prac2, &p, true, &t); /* a practitioner cannot register another */
    apply_expect(f, &t, NOT_AUTHORIZED, NULL);
    tx_practitioner(f->w, &f->hosp, &f->hosp2, true, &t);
    apply_expect(f, &t, REFUSED, "a member's node key");
    tx_practitioner(f->w, &f->hosp, &p, true, &t);
    apply_expect(f, &t, OK, NULL);
    tx_practitioner(f->w, &f->hosp2, &p, true, &t);
    apply_expect(f, &t, CONFLICT, "registered already");
    tx_practitioner(f->w, &f->hosp2, &p, false, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "acts for another member");
    /* Registered: p may request access (and is denied without a consent). */
    tx_access(f->w, &p, f->lab_record, TREATMENT, &t);
    struct contracts_tx_result r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.decision, DENY);
    tx_practitioner(f->w, &f->hosp, &p, false, &t);
    apply_expect(f, &t, OK, NULL);
    assert_false(has_key(f, CONTRACTS_PREFIX_PRACTITIONER, p.sig.public_key));
    tx_practitioner(f->w, &f->hosp, &p, false, &t);
    apply_expect(f, &t, NOT_FOUND, "no such practitioner");
    /* Removed: p acts for no one. */
    tx_access(f->w, &p, f->lab_record, TREATMENT, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "neither a member nor a registered practitioner");
}

static void test_anchors(void **state)
{
    struct fx *f = *state;
    struct party unknown;
    party_make(&unknown, 102);
    struct tx t;
    tx_anchor(f->w, &f->stranger, &f->patient, LAB_RESULT, NULL, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only a member");
    tx_anchor(f->w, &f->prac2, &f->patient, LAB_RESULT, NULL, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only a member");
    tx_anchor(f->w, &f->hosp, &unknown, LAB_RESULT, NULL, &t);
    apply_expect(f, &t, NOT_FOUND, "the patient is not enrolled");
    tx_anchor(f->w, &f->hosp, &f->patient, EHR__V1__RECORD_TYPE__RECORD_TYPE_UNSPECIFIED, NULL, &t);
    apply_expect(f, &t, MALFORMED, "record_type");
    tx_anchor(f->w, &f->hosp, &f->patient, (Ehr__V1__RecordType)10, NULL, &t);
    apply_expect(f, &t, MALFORMED, "record_type 10");

    /* Amending: a new anchor supersedes, once, by the same custodian and patient. */
    tx_anchor(f->w, &f->hosp, &f->patient, LAB_RESULT, f->lab_record, &t);
    uint8_t amended[EHR_HASH_BYTES];
    memcpy(amended, t.hash, EHR_HASH_BYTES);
    apply_expect(f, &t, OK, NULL);
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_RECORD, f->lab_record, NULL, NULL), len;
    const uint8_t *v = world_get(f->w, k, n, &len);
    assert_non_null(v);
    Ehr__V1__RecordEntry *old = ehr__v1__record_entry__unpack(NULL, len, v);
    assert_memory_equal(old->superseded_by.data, amended, EHR_HASH_BYTES);
    ehr__v1__record_entry__free_unpacked(old, NULL);
    n = contracts_key(k, CONTRACTS_PREFIX_RECORD, amended, NULL, NULL);
    v = world_get(f->w, k, n, &len);
    Ehr__V1__RecordEntry *fresh = ehr__v1__record_entry__unpack(NULL, len, v);
    assert_memory_equal(fresh->supersedes.data, f->lab_record, EHR_HASH_BYTES);
    assert_int_equal(fresh->superseded_by.len, 0);
    ehr__v1__record_entry__free_unpacked(fresh, NULL);
    tx_anchor(f->w, &f->hosp, &f->patient, LAB_RESULT, f->lab_record, &t);
    apply_expect(f, &t, CONFLICT, "superseded already");
    tx_anchor(f->w, &f->hosp2, &f->patient, LAB_RESULT, amended, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "same custodian and patient");
    tx_anchor(f->w, &f->hosp, &f->patient2, LAB_RESULT, amended, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "same custodian and patient");
    tx_anchor(f->w, &f->hosp, &f->patient, LAB_RESULT, f->patient.sig.public_key, &t);
    apply_expect(f, &t, NOT_FOUND, "the record it supersedes does not exist");

    /* The patient's records by type and time: 3 lab results, 1 imaging. */
    n = contracts_key(k, CONTRACTS_PREFIX_PATIENT_RECORDS, f->patient.sig.public_key, NULL, NULL);
    assert_int_equal(world_scan(f->w, k, n, NULL, NULL), 3);
    uint8_t type_be[4];
    contracts_be32(type_be, LAB_RESULT);
    n = contracts_key_append(k, n, type_be, 4);
    assert_int_equal(world_scan(f->w, k, n, NULL, NULL), 2);
}

/* An anchor by MEMBER for PATIENT naming ciphertext HASH (and superseding
 * SUPERSEDES when not NULL), signed into T. */
static void anchor_naming(struct fx *f, const struct party *member, const struct party *patient,
                          const uint8_t hash[EHR_HASH_BYTES], const uint8_t *supersedes,
                          struct tx *t)
{
    uint8_t pointer[16];
    memset(pointer, 3, sizeof pointer);
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__RecordAnchor a = EHR__V1__RECORD_ANCHOR__INIT;
    a.patient_key = (ProtobufCBinaryData){32, (uint8_t *)patient->sig.public_key};
    a.record_type = LAB_RESULT;
    a.encrypted_pointer = (ProtobufCBinaryData){sizeof pointer, pointer};
    a.ciphertext_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)hash};
    if (supersedes != NULL)
        a.supersedes = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)supersedes};
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
    b.record_anchor = &a;
    tx_sign(f->w, member, &b, t);
}

/*
 * A ciphertext belongs to one record: an erase deletes the blob on every
 * node, so another record naming the same ciphertext would lose its data
 * (or, the other way, keep an erased ciphertext alive). Another member for
 * another patient, the same custodian again, a new version, and anyone
 * after the erase: all refused.
 */
static void test_a_ciphertext_belongs_to_one_record(void **state)
{
    struct fx *f = *state;
    uint8_t hash[EHR_HASH_BYTES];
    memset(hash, 0x42, sizeof hash);
    struct tx t;
    anchor_naming(f, &f->hosp, &f->patient, hash, NULL, &t);
    uint8_t first[EHR_HASH_BYTES];
    memcpy(first, t.hash, EHR_HASH_BYTES);
    apply_expect(f, &t, OK, NULL);
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_RECORD_BLOB, hash, NULL, NULL), len;
    const uint8_t *v = world_get(f->w, k, n, &len);
    assert_non_null(v);
    assert_int_equal(len, EHR_HASH_BYTES);
    assert_memory_equal(v, first, EHR_HASH_BYTES);
    anchor_naming(f, &f->hosp2, &f->patient2, hash, NULL, &t);
    apply_expect(f, &t, CONFLICT, "names this ciphertext_hash already");
    anchor_naming(f, &f->hosp, &f->patient, hash, NULL, &t);
    apply_expect(f, &t, CONFLICT, "names this ciphertext_hash already");
    anchor_naming(f, &f->hosp, &f->patient, hash, first, &t);
    apply_expect(f, &t, CONFLICT, "names this ciphertext_hash already");
    /* After the patient's erase, the index stays: never anchored again. */
    tx_erase(f->w, &f->patient, first, EHR_HASH_BYTES,
             EHR__V1__ERASE_GROUND__ERASE_GROUND_CONSENT_WITHDRAWN, &t);
    apply_expect(f, &t, OK, NULL);
    assert_non_null(world_get(f->w, k, n, &len));
    anchor_naming(f, &f->hosp2, &f->patient2, hash, NULL, &t);
    apply_expect(f, &t, CONFLICT, "names this ciphertext_hash already");
    /* Another ciphertext is another record's. */
    hash[0] ^= 1;
    anchor_naming(f, &f->hosp2, &f->patient2, hash, NULL, &t);
    apply_expect(f, &t, OK, NULL);
}

static void test_anchor_limits_at_their_edges(void **state)
{
    struct fx *f = *state;
    uint8_t pointer[CONTRACTS_POINTER_BYTES_MAX + 1], hash[32] = {1};
    uint8_t capsule[CONTRACTS_CAPSULE_BYTES_MAX + 1];
    memset(pointer, 7, sizeof pointer);
    memset(capsule, 9, sizeof capsule);
    struct {
        size_t pointer, capsule;
        int code;
    } cases[] = {
        {CONTRACTS_POINTER_BYTES_MAX, CONTRACTS_CAPSULE_BYTES_MAX, OK},
        {CONTRACTS_POINTER_BYTES_MAX + 1, 0, MALFORMED},
        {0, 0, MALFORMED},
        {1, CONTRACTS_CAPSULE_BYTES_MAX + 1, MALFORMED},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
        Ehr__V1__RecordAnchor a = EHR__V1__RECORD_ANCHOR__INIT;
        a.patient_key = (ProtobufCBinaryData){32, f->patient.sig.public_key};
        a.record_type = LAB_RESULT;
        a.encrypted_pointer = (ProtobufCBinaryData){cases[i].pointer, pointer};
        a.ciphertext_hash = (ProtobufCBinaryData){32, hash};
        a.key_capsule = (ProtobufCBinaryData){cases[i].capsule, capsule};
        b.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
        b.record_anchor = &a;
        struct tx t;
        tx_sign(f->w, &f->hosp, &b, &t);
        apply_expect(f, &t, cases[i].code, NULL);
    }
}

static void test_grants(void **state)
{
    struct fx *f = *state;
    Ehr__V1__RecordType types[CONTRACTS_SCOPE_COUNT_MAX + 1];
    for (size_t i = 0; i < EHR_ARRAY_COUNT(types); i++)
        types[i] = (Ehr__V1__RecordType)(1 + i % 9);
    struct grant g = {.grantee = f->hosp2.sig.public_key,
                      .types = types,
                      .n_types = 1,
                      .purpose = TREATMENT,
                      .from_ms = T0,
                      .until_ms = T2};
    struct tx t;
    /* Only the patient grants: not a member, not another patient. */
    tx_grant(f->w, &f->hosp, &g, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only the patient grants");
    tx_grant(f->w, &f->stranger, &g, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, NULL);
    /* The grantee must be a member or a registered practitioner. */
    struct grant bad = g;
    bad.grantee = f->stranger.sig.public_key;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, NOT_FOUND, "neither a member nor a registered practitioner");
    bad = g, bad.n_types = 0;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, MALFORMED, "both empty");
    bad = g, bad.n_types = CONTRACTS_SCOPE_COUNT_MAX;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, OK, NULL);
    bad.n_types = CONTRACTS_SCOPE_COUNT_MAX + 1;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, MALFORMED, "at most");
    Ehr__V1__RecordType unknown_type = (Ehr__V1__RecordType)0;
    bad = g, bad.types = &unknown_type;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, MALFORMED, "record_types[0]");
    /* Record ids: the patient's own, existing. */
    uint8_t ids[2][EHR_HASH_BYTES];
    memcpy(ids[0], f->lab_record, 32);
    memcpy(ids[1], f->other_record, 32);
    bad = g, bad.n_types = 0, bad.ids = (const uint8_t(*)[32])ids, bad.n_ids = 2;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "record_ids[1] is another patient's record");
    memcpy(ids[1], f->patient.sig.public_key, 32);
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, NOT_FOUND, "record_ids[1] is not a record");
    bad = g, bad.purpose = (Ehr__V1__Purpose)0;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, MALFORMED, "purpose");
    bad = g, bad.until_ms = bad.from_ms;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, REFUSED, "the period ends");
    /* Key fragments: opaque, bounded in count and size. */
    bad = g, bad.n_fragments = CONTRACTS_KEY_FRAGMENTS_MAX,
    bad.fragment_len = CONTRACTS_KEY_FRAGMENT_BYTES_MAX;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, OK, NULL);
    bad.n_fragments = CONTRACTS_KEY_FRAGMENTS_MAX + 1;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, REFUSED, "key fragments");
    bad.n_fragments = 1, bad.fragment_len = CONTRACTS_KEY_FRAGMENT_BYTES_MAX + 1;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, REFUSED, "key_fragments[0]");
    /* Empty fragments: decoded, each is (0, NULL), which the body's
     * canonical-form check once handed to memcmp (UBSan stops there; found
     * by fuzz_apply). */
    bad.n_fragments = 2, bad.fragment_len = 0;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, REFUSED, "key_fragments[0] must be 1 to");
    /* The delegating key the fragments were made from: with them, exactly
     * 32 bytes of a valid point; without them, none. */
    bad.n_fragments = 1, bad.fragment_len = CONTRACTS_KEY_FRAGMENT_BYTES_MAX;
    bad.delegating = GRANT_DELEGATING_NONE;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, MALFORMED, "need the delegating_key");
    bad.delegating = GRANT_DELEGATING_SHORT;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, MALFORMED, "need the delegating_key");
    bad.delegating = GRANT_DELEGATING_INVALID;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, MALFORMED, "need the delegating_key");
    bad.delegating = GRANT_DELEGATING_VALID;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, OK, NULL);
    bad.n_fragments = 0;
    tx_grant(f->w, &f->patient, &bad, &t);
    apply_expect(f, &t, MALFORMED, "delegating_key without key_fragments");
    /* A grant to a practitioner directly. */
    bad = g, bad.grantee = f->prac2.sig.public_key, bad.types = &types[1]; /* lab results */
    assert_int_equal(types[1], LAB_RESULT);
    tx_grant(f->w, &f->patient, &bad, &t);
    uint8_t id[32];
    memcpy(id, t.hash, 32);
    apply_expect(f, &t, OK, NULL);
    /* Indexed by patient and grantee, and by grantee. */
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_PATIENT_CONSENTS, f->patient.sig.public_key,
                             f->prac2.sig.public_key, id),
           len;
    assert_non_null(world_get(f->w, k, n, &len));
    n = contracts_key(k, CONTRACTS_PREFIX_GRANTEE_CONSENTS, f->prac2.sig.public_key, id, NULL);
    assert_non_null(world_get(f->w, k, n, &len));
    tx_access(f->w, &f->prac2, f->lab_record, TREATMENT, &t);
    struct contracts_tx_result r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.decision, PERMIT);
    assert_memory_equal(r.consent_id, id, 32);
}

static void test_revokes(void **state)
{
    struct fx *f = *state;
    Ehr__V1__RecordType type = LAB_RESULT;
    struct grant g = {.grantee = f->hosp2.sig.public_key,
                      .types = &type,
                      .n_types = 1,
                      .purpose = TREATMENT,
                      .from_ms = T0,
                      .until_ms = T2};
    struct tx t;
    tx_grant(f->w, &f->patient, &g, &t);
    uint8_t id[32];
    memcpy(id, t.hash, 32);
    apply_expect(f, &t, OK, NULL);
    tx_revoke(f->w, &f->hosp2, id, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only the patient who granted it");
    tx_revoke(f->w, &f->patient2, id, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, NULL);
    tx_revoke(f->w, &f->patient, f->lab_record, &t);
    apply_expect(f, &t, NOT_FOUND, "no such consent");
    tx_revoke(f->w, &f->patient, id, &t);
    apply_expect(f, &t, OK, NULL);
    tx_revoke(f->w, &f->patient, id, &t);
    apply_expect(f, &t, CONFLICT, "revoked already");
}

static Ehr__V1__RecordEntry *record_entry(struct fx *f, const uint8_t id[EHR_HASH_BYTES])
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_RECORD, id, NULL, NULL), len;
    const uint8_t *v = world_get(f->w, k, n, &len);
    assert_non_null(v);
    Ehr__V1__RecordEntry *e = ehr__v1__record_entry__unpack(NULL, len, v);
    assert_non_null(e);
    return e;
}

#define NO_LONGER_NEEDED EHR__V1__ERASE_GROUND__ERASE_GROUND_NO_LONGER_NEEDED

/* RecordErase: only the record's patient, once, of a record that exists;
 * the entry stays as a tombstone with the erase's place; every later
 * access, emergency included, is a DENY saying so, audited; nothing new
 * may name the record (a grant of it, an amendment of it). */
static void test_erasure(void **state)
{
    struct fx *f = *state;
    struct grant g = {.grantee = f->hosp2.sig.public_key,
                      .ids = &f->lab_record,
                      .n_ids = 1,
                      .purpose = TREATMENT,
                      .from_ms = T0,
                      .until_ms = T2};
    struct tx t;
    tx_grant(f->w, &f->patient, &g, &t);
    apply_expect(f, &t, OK, NULL);
    tx_access(f->w, &f->hosp2, f->lab_record, TREATMENT, &t);
    assert_int_equal(apply_expect(f, &t, OK, NULL).decision, PERMIT);

    /* Who may not, and what is not there. */
    tx_erase(f->w, &f->hosp, f->lab_record, EHR_HASH_BYTES, NO_LONGER_NEEDED, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only the record's patient");
    tx_erase(f->w, &f->hosp2, f->lab_record, EHR_HASH_BYTES, NO_LONGER_NEEDED, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only the record's patient");
    tx_erase(f->w, &f->patient2, f->lab_record, EHR_HASH_BYTES, NO_LONGER_NEEDED, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only the record's patient");
    tx_erase(f->w, &f->stranger, f->lab_record, EHR_HASH_BYTES, NO_LONGER_NEEDED, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only the record's patient");
    tx_erase(f->w, &f->patient, f->patient.sig.public_key, EHR_HASH_BYTES, NO_LONGER_NEEDED, &t);
    apply_expect(f, &t, NOT_FOUND, "no such record");
    tx_erase(f->w, &f->patient, f->lab_record, EHR_HASH_BYTES - 1, NO_LONGER_NEEDED, &t);
    apply_expect(f, &t, MALFORMED, "record_id is not 32 bytes");
    tx_erase(f->w, &f->patient, f->lab_record, EHR_HASH_BYTES, (Ehr__V1__EraseGround)6, &t);
    apply_expect(f, &t, MALFORMED, "ground 6");

    /* A member's node forging the patient's erase: signed by the member,
     * naming the patient as the signer. */
    tx_erase(f->w, &f->patient, f->lab_record, EHR_HASH_BYTES, NO_LONGER_NEEDED, &t);
    Ehr__V1__TxEnvelope *env = ehr__v1__tx_envelope__unpack(NULL, t.len, t.envelope);
    uint8_t hash[32], sig[64];
    ehr_sha256(hash, env->body.data, env->body.len);
    assert_int_equal(ehr_schnorr_sign(&f->hosp.sig, hash, sig), 0);
    memcpy(env->signature.data, sig, 64);
    ehr__v1__tx_envelope__pack(env, t.envelope);
    ehr__v1__tx_envelope__free_unpacked(env, NULL);
    apply_expect(f, &t, BAD_SIGNATURE, "the signature does not verify");
    Ehr__V1__RecordEntry *e = record_entry(f, f->lab_record);
    assert_false(e->erased);
    ehr__v1__record_entry__free_unpacked(e, NULL);
    assert_false(has_key(f, CONTRACTS_PREFIX_ERASED_RECORDS, f->lab_record));

    /* The patient erases: the tombstone keeps who, what and where, and
     * says where it was erased; the index lists it. */
    uint8_t before[EHR_HASH_BYTES], after[EHR_HASH_BYTES];
    world_digest(f->w, before);
    tx_erase(f->w, &f->patient, f->lab_record, EHR_HASH_BYTES, NO_LONGER_NEEDED, &t);
    uint8_t erase_tx[EHR_HASH_BYTES];
    memcpy(erase_tx, t.hash, EHR_HASH_BYTES);
    apply_expect(f, &t, OK, NULL);
    world_digest(f->w, after);
    assert_memory_not_equal(before, after, EHR_HASH_BYTES); /* the state's hash covers it */
    e = record_entry(f, f->lab_record);
    assert_true(e->erased);
    assert_non_null(e->erased_at);
    assert_int_equal(e->erased_at->height, world_height(f->w));
    assert_int_equal(e->erased_at->time_ms, T1);
    assert_memory_equal(e->erased_at->tx_hash.data, erase_tx, EHR_HASH_BYTES);
    assert_int_equal(e->erase_ground, NO_LONGER_NEEDED);
    assert_memory_equal(e->patient_key.data, f->patient.sig.public_key, 32);
    assert_memory_equal(e->custodian.data, f->hosp.sig.public_key, 32);
    assert_int_equal(e->record_type, LAB_RESULT);
    assert_non_null(e->anchored);
    ehr__v1__record_entry__free_unpacked(e, NULL);
    assert_true(has_key(f, CONTRACTS_PREFIX_ERASED_RECORDS, f->lab_record));
    assert_false(has_key(f, CONTRACTS_PREFIX_ERASED_RECORDS, f->imaging_record));
    e = record_entry(f, f->imaging_record); /* the patient's other record is untouched */
    assert_false(e->erased);
    ehr__v1__record_entry__free_unpacked(e, NULL);

    /* Once. */
    tx_erase(f->w, &f->patient, f->lab_record, EHR_HASH_BYTES, NO_LONGER_NEEDED, &t);
    apply_expect(f, &t, CONFLICT, "erased already");

    /* Access after the erase: a DENY saying why, audited; emergency too. */
    tx_access(f->w, &f->hosp2, f->lab_record, TREATMENT, &t);
    struct contracts_tx_result r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.decision, DENY);
    assert_non_null(strstr(r.reason, "erased"));
    tx_emergency(f->w, &f->hosp2, f->lab_record, "unconscious on arrival", &t);
    r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.decision, DENY);
    assert_non_null(strstr(r.reason, "erased"));

    /* The trail keeps the earlier permit and shows the erase and the denies. */
    Ehr__V1__AuditEvent **ev = NULL;
    size_t count = world_audit(f->w, f->patient.sig.public_key, false, &ev);
    size_t permits = 0, erases = 0, denies = 0;
    for (size_t i = 0; i < count; i++) {
        bool this_record = ev[i]->record_id.len == EHR_HASH_BYTES &&
                           memcmp(ev[i]->record_id.data, f->lab_record, EHR_HASH_BYTES) == 0;
        permits += this_record && ev[i]->decision == PERMIT;
        denies += this_record && ev[i]->decision == DENY;
        erases += this_record && ev[i]->kind == EHR__V1__AUDIT_KIND__AUDIT_KIND_ERASE;
        ehr__v1__audit_event__free_unpacked(ev[i], NULL);
    }
    free(ev);
    assert_int_equal(permits, 1);
    assert_int_equal(erases, 1);
    assert_int_equal(denies, 2);

    /* Nothing new names it. */
    tx_grant(f->w, &f->patient, &g, &t);
    apply_expect(f, &t, REFUSED, "record_ids[0] was erased");
    tx_anchor(f->w, &f->hosp, &f->patient, LAB_RESULT, f->lab_record, &t);
    apply_expect(f, &t, REFUSED, "erased by its patient");
}

static void test_access_requests_invalid(void **state)
{
    struct fx *f = *state;
    struct tx t;
    tx_access(f->w, &f->stranger, f->lab_record, TREATMENT, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "neither a member nor a registered practitioner");
    tx_access(f->w, &f->patient, f->lab_record, TREATMENT, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, NULL);
    tx_access(f->w, &f->hosp2, f->patient.sig.public_key, TREATMENT, &t);
    apply_expect(f, &t, NOT_FOUND, "no such record");
    tx_access(f->w, &f->hosp2, f->lab_record, (Ehr__V1__Purpose)0, &t);
    apply_expect(f, &t, MALFORMED, "purpose 0");
    tx_access(f->w, &f->hosp2, f->lab_record, (Ehr__V1__Purpose)7, &t);
    apply_expect(f, &t, MALFORMED, "purpose 7");
    /* A deny is a committed outcome: the state changes (its audit event). */
    tx_access(f->w, &f->hosp2, f->lab_record, TREATMENT, &t);
    struct contracts_tx_result r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.decision, DENY);
}

static void test_emergency_reasons(void **state)
{
    struct fx *f = *state;
    char reason[CONTRACTS_EMERGENCY_REASON_BYTES_MAX + 2];
    memset(reason, 'r', sizeof reason);
    reason[CONTRACTS_EMERGENCY_REASON_BYTES_MAX] = '\0';
    struct tx t;
    tx_emergency(f->w, &f->hosp2, f->lab_record, reason, &t);
    struct contracts_tx_result r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.decision, PERMIT);
    /* The result's reason is cut to fit; the audit event keeps it whole. */
    assert_int_equal(strlen(r.reason), CONTRACTS_REASON_BYTES_MAX);
    Ehr__V1__AuditEvent **ev;
    size_t n = world_audit(f->w, f->patient.sig.public_key, true, &ev);
    assert_int_equal(n, 1);
    assert_string_equal(ev[0]->reason, reason);
    ehr__v1__audit_event__free_unpacked(ev[0], NULL);
    free(ev);
    reason[CONTRACTS_EMERGENCY_REASON_BYTES_MAX] = 'r';
    reason[CONTRACTS_EMERGENCY_REASON_BYTES_MAX + 1] = '\0';
    tx_emergency(f->w, &f->hosp2, f->lab_record, reason, &t);
    apply_expect(f, &t, MALFORMED, "1 to 256 bytes");
    tx_emergency(f->w, &f->hosp2, f->lab_record, "", &t);
    apply_expect(f, &t, MALFORMED, "states its reason");
    tx_emergency(f->w, &f->hosp2, f->lab_record, "bleeding\n\x1b[2Jtrust me", &t);
    apply_expect(f, &t, MALFORMED, "without control characters");
    tx_emergency(f->w, &f->hosp2, f->lab_record, "caf\xc3", &t);
    apply_expect(f, &t, MALFORMED, "UTF-8");
    /* A reason cut inside a character is cut before it. */
    memset(reason, 'r', sizeof reason);
    memcpy(reason + CONTRACTS_REASON_BYTES_MAX - 19, "\xe2\x82\xac", 3); /* across the cut */
    reason[200] = '\0';
    tx_emergency(f->w, &f->hosp2, f->lab_record, reason, &t);
    r = apply_expect(f, &t, OK, NULL);
    assert_true(ledger_text_ok(r.reason, CONTRACTS_REASON_BYTES_MAX));
}

/* ---- the bounds of one access request ---- */

static void test_access_consent_count_at_its_edge(void **state)
{
    struct fx *f = *state;
    /* CONTRACTS_ACCESS_CONSENTS_MAX consents that do not cover the request:
     * all are looked at. One more: the request stops at the bound. */
    Ehr__V1__RecordType type = IMAGING;
    struct grant g = {.grantee = f->hosp2.sig.public_key,
                      .types = &type,
                      .n_types = 1,
                      .purpose = TREATMENT,
                      .from_ms = T0,
                      .until_ms = T2};
    struct tx t;
    for (int i = 0; i < CONTRACTS_ACCESS_CONSENTS_MAX; i++) {
        tx_grant(f->w, &f->patient, &g, &t);
        apply_expect(f, &t, OK, NULL);
    }
    tx_access(f->w, &f->hosp2, f->lab_record, TREATMENT, &t);
    struct contracts_tx_result r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.decision, DENY);
    assert_string_equal(r.reason, REASON_SCOPE);
    tx_grant(f->w, &f->patient, &g, &t);
    apply_expect(f, &t, OK, NULL);
    tx_access(f->w, &f->hosp2, f->lab_record, TREATMENT, &t);
    r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.decision, DENY);
    assert_non_null(strstr(r.reason, "over 32 consents"));
}

static void test_access_gas_budget_at_its_edge(void **state)
{
    struct fx *f = *state;
    /* Find the burner that needs exactly the budget, and the one above. */
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX];
    size_t terms = 1, len = 0;
    while (gas_needed(code, len = gas_burner(terms, code)) < CONTRACTS_ACCESS_GAS_MAX)
        terms++;
    assert_int_equal(gas_needed(code, len), CONTRACTS_ACCESS_GAS_MAX);
    Ehr__V1__RecordType type = LAB_RESULT;
    struct grant g = {.grantee = f->hosp2.sig.public_key,
                      .types = &type,
                      .n_types = 1,
                      .purpose = TREATMENT,
                      .from_ms = T0,
                      .until_ms = T2,
                      .policy = code,
                      .policy_len = len};
    struct tx t;
    tx_grant(f->w, &f->patient, &g, &t);
    apply_expect(f, &t, OK, NULL);
    tx_access(f->w, &f->hosp2, f->lab_record, TREATMENT, &t);
    struct contracts_tx_result r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.decision, DENY);
    assert_string_equal(r.reason, "the consent's policy denied: no rule matched (ran off the end)");
    assert_int_equal(r.gas_used, CONTRACTS_ACCESS_GAS_MAX);
    /* A second consent: the budget is spent, its policy does not run (even
     * one that would permit). */
    uint8_t permit[CONTRACTS_POLICY_BYTES_MAX];
    g.policy = permit, g.policy_len = compile("permit if true", permit);
    tx_grant(f->w, &f->patient, &g, &t);
    apply_expect(f, &t, OK, NULL);
    tx_access(f->w, &f->hosp2, f->lab_record, TREATMENT, &t);
    r = apply_expect(f, &t, OK, NULL);
    assert_int_equal(r.gas_used, CONTRACTS_ACCESS_GAS_MAX);
    /* Which consent comes first is their ids' order: either the permit ran
     * first (permit) or the budget was spent before it (deny, saying so). */
    if (r.decision == DENY)
        assert_non_null(strstr(r.reason, "before this consent's policy ran"));
    else
        assert_true(r.has_consent);
}

/* ---- governance ---- */

static int proposal_done(struct fx *f, const uint8_t id[32])
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_PROPOSAL, id, NULL, NULL), len;
    const uint8_t *v = world_get(f->w, k, n, &len);
    assert_non_null(v);
    Ehr__V1__ProposalEntry *p = ehr__v1__proposal_entry__unpack(NULL, len, v);
    int done = p->done;
    ehr__v1__proposal_entry__free_unpacked(p, NULL);
    return done;
}

static bool is_member(struct fx *f, const struct party *p)
{
    return has_key(f, CONTRACTS_PREFIX_MEMBER, p->sig.public_key);
}

static void test_governance_needs_a_majority_of_current_members(void **state)
{
    struct fx *f = *state; /* four members: hosp, hosp2, lab, ins */
    struct party newcomer;
    party_make(&newcomer, 103);
    uint64_t expires = T2;
    struct tx t;
    tx_propose_admit(f->w, &f->prac2, &newcomer, LAB, expires, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only a member proposes");
    tx_propose_admit(f->w, &f->hosp, &f->hosp2, LAB, expires, &t);
    apply_expect(f, &t, CONFLICT, "a member already");
    tx_propose_admit(f->w, &f->hosp, &newcomer, LAB, T1, &t);
    apply_expect(f, &t, REFUSED, "expires before its block");
    tx_propose_admit(f->w, &f->hosp, &newcomer, (Ehr__V1__MemberRole)0, expires, &t);
    apply_expect(f, &t, MALFORMED, "the member to admit");

    tx_propose_admit(f->w, &f->hosp, &newcomer, LAB, expires, &t);
    uint8_t id[32];
    memcpy(id, t.hash, 32);
    apply_expect(f, &t, OK, NULL);
    assert_false(proposal_done(f, id)); /* 1 of 4 */
    tx_approve(f->w, &f->hosp, id, &t);
    apply_expect(f, &t, CONFLICT, "approved the proposal already");
    tx_approve(f->w, &f->prac2, id, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only a member approves");
    tx_approve(f->w, &f->hosp2, f->lab_record, &t);
    apply_expect(f, &t, NOT_FOUND, "no such proposal");
    tx_approve(f->w, &f->hosp2, id, &t);
    apply_expect(f, &t, OK, NULL);
    assert_false(proposal_done(f, id)); /* 2 of 4: not a majority */
    assert_false(is_member(f, &newcomer));
    tx_approve(f->w, &f->lab, id, &t);
    apply_expect(f, &t, OK, NULL);
    assert_true(proposal_done(f, id)); /* 3 of 4 */
    assert_true(is_member(f, &newcomer));
    tx_approve(f->w, &f->ins, id, &t);
    apply_expect(f, &t, CONFLICT, "carried already");

    /* Five members now: three approvals are a majority. The insurer
     * proposes a second newcomer, then is removed itself: its approval of
     * its own proposal no longer counts. */
    struct party second;
    party_make(&second, 104);
    tx_propose_admit(f->w, &f->ins, &second, LAB, expires, &t);
    uint8_t pid[32];
    memcpy(pid, t.hash, 32);
    apply_expect(f, &t, OK, NULL);
    tx_propose_remove(f->w, &f->hosp, f->stranger.sig.public_key, expires, &t);
    apply_expect(f, &t, NOT_FOUND, "no such member");
    tx_propose_remove(f->w, &f->hosp, f->ins.sig.public_key, expires, &t);
    uint8_t rid[32];
    memcpy(rid, t.hash, 32);
    apply_expect(f, &t, OK, NULL);
    tx_approve(f->w, &f->hosp2, rid, &t);
    apply_expect(f, &t, OK, NULL);
    assert_true(is_member(f, &f->ins)); /* 2 of 5 */
    tx_approve(f->w, &f->lab, rid, &t);
    apply_expect(f, &t, OK, NULL);
    assert_false(is_member(f, &f->ins)); /* 3 of 5 */
    tx_propose_admit(f->w, &f->ins, &second, LAB, expires, &t);
    apply_expect(f, &t, NOT_AUTHORIZED, "only a member proposes");
    /* Four members: hosp, hosp2, lab, newcomer. The insurer's approval is
     * void: newcomer and hosp make 2 of 4, lab makes 3. */
    tx_approve(f->w, &newcomer, pid, &t);
    apply_expect(f, &t, OK, NULL);
    tx_approve(f->w, &f->hosp, pid, &t);
    apply_expect(f, &t, OK, NULL);
    assert_false(proposal_done(f, pid));
    assert_false(is_member(f, &second));
    tx_approve(f->w, &f->lab, pid, &t);
    apply_expect(f, &t, OK, NULL);
    assert_true(proposal_done(f, pid));
    assert_true(is_member(f, &second));
    /* A proposal past its expiry is not carried by a late approval. */
    struct party third;
    party_make(&third, 105);
    tx_propose_admit(f->w, &f->hosp, &third, LAB, T1 + 1, &t);
    memcpy(pid, t.hash, 32);
    apply_expect(f, &t, OK, NULL);
    tx_approve(f->w, &f->hosp2, pid, &t);
    struct contracts_tx_result r;
    assert_int_equal(world_one(f->w, T1 + 1, &t, &r), REFUSED);
    assert_non_null(strstr(r.reason, "expired"));
    tx_free(&t);
}

static void test_governance_keeps_the_last_member(void **state)
{
    (void)state;
    struct world *w = world_new(NULL, 0);
    struct party only, other;
    party_make(&only, 1);
    party_make(&other, 2);
    world_member_add(w, &only, HOSPITAL);
    struct tx t;
    tx_propose_remove(w, &only, only.sig.public_key, T2, &t);
    struct contracts_tx_result r;
    assert_int_equal(world_one(w, T1, &t, &r), REFUSED);
    assert_non_null(strstr(r.reason, "the last member"));
    tx_free(&t);
    /* Alone, a member's proposal is carried at once (1 of 1). */
    tx_propose_admit(w, &only, &other, LAB, T2, &t);
    assert_int_equal(world_one(w, T1, &t, &r), OK);
    tx_free(&t);
    uint8_t key[LEDGER_MEMBER_KEY_BYTES];
    ledger_member_key(key, other.sig.public_key);
    size_t len;
    assert_non_null(world_get(w, key, sizeof key, &len));
    world_free(w);
}

/* A network runs with at most CONTRACTS_NODES_MAX members: the admission
 * that would pass it is refused when proposed, and a proposal made below
 * the bound is not carried by an approval once the bound is reached. */
static void test_governance_admits_up_to_the_network_bound(void **state)
{
    (void)state;
    struct world *w = world_new(NULL, 0);
    struct party members[CONTRACTS_NODES_MAX + 1];
    for (size_t i = 0; i <= CONTRACTS_NODES_MAX; i++)
        party_make(&members[i], (uint8_t)(40 + i));
    world_member_add(w, &members[0], HOSPITAL);
    struct tx t;
    struct contracts_tx_result r;
    /* Member 1 proposed while there are two members: held open by the
     * approvals it lacks until the network is full. */
    world_member_add(w, &members[1], HOSPITAL);
    tx_propose_admit(w, &members[0], &members[CONTRACTS_NODES_MAX], LAB, T2, &t);
    uint8_t late[32];
    memcpy(late, t.hash, 32);
    assert_int_equal(world_one(w, T1, &t, &r), OK);
    tx_free(&t);
    for (size_t i = 2; i < CONTRACTS_NODES_MAX; i++)
        world_member_add(w, &members[i], LAB);
    /* 16 members: the 17th is refused at once. */
    struct party extra;
    party_make(&extra, 99);
    tx_propose_admit(w, &members[0], &extra, LAB, T2, &t);
    assert_int_equal(world_one(w, T1, &t, &r), REFUSED);
    assert_non_null(strstr(r.reason, "the most a network runs with"));
    tx_free(&t);
    /* The early proposal: approvals up to a majority of 16 (9), the last
     * of which is refused, and the newcomer stays out. */
    for (size_t i = 1; i < 8; i++) {
        tx_approve(w, &members[i], late, &t);
        assert_int_equal(world_one(w, T1, &t, &r), OK);
        tx_free(&t);
    }
    tx_approve(w, &members[8], late, &t);
    assert_int_equal(world_one(w, T1, &t, &r), REFUSED);
    assert_non_null(strstr(r.reason, "the most a network runs with"));
    tx_free(&t);
    uint8_t key[LEDGER_MEMBER_KEY_BYTES];
    ledger_member_key(key, members[CONTRACTS_NODES_MAX].sig.public_key);
    size_t len;
    assert_null(world_get(w, key, sizeof key, &len));
    /* One removed, the same approval carries it. */
    tx_propose_remove(w, &members[0], members[15].sig.public_key, T2, &t);
    uint8_t rid[32];
    memcpy(rid, t.hash, 32);
    assert_int_equal(world_one(w, T1, &t, &r), OK);
    tx_free(&t);
    for (size_t i = 1; i < 9; i++) {
        tx_approve(w, &members[i], rid, &t);
        assert_int_equal(world_one(w, T1, &t, &r), OK);
        tx_free(&t);
    }
    tx_approve(w, &members[8], late, &t);
    assert_int_equal(world_one(w, T1, &t, &r), OK);
    tx_free(&t);
    assert_non_null(world_get(w, key, sizeof key, &len));
    world_free(w);
}

/* A proposal's member is checked as genesis checks one; the reason for a
 * bad one is printable text even when the bad field is not (found by
 * fuzz_apply: the peer address was quoted whatever its bytes). */
static void test_governance_reasons_are_text(void **state)
{
    struct fx *f = *state;
    struct party newcomer;
    party_make(&newcomer, 106);
    const char *addresses[] = {
        "m1.example:74\x16", /* a control character in the port */
        "\x1b[2J:7400x",     /* a terminal escape, and no valid port */
        "caf\xc3:x",         /* invalid UTF-8 */
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9:x", /* valid UTF-8, longer than a quote cuts */
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(addresses); i++) {
        Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
        Ehr__V1__MemberProposal p = EHR__V1__MEMBER_PROPOSAL__INIT;
        Ehr__V1__Member m = EHR__V1__MEMBER__INIT;
        m.name = "Newcomer Lab";
        m.role = LAB;
        m.node_key = (ProtobufCBinaryData){32, newcomer.sig.public_key};
        m.kx_key = (ProtobufCBinaryData){32, newcomer.kx.public_key};
        m.peer_address = (char *)addresses[i];
        p.change_case = EHR__V1__MEMBER_PROPOSAL__CHANGE_ADMIT;
        p.admit = &m;
        p.expires_ms = T2;
        b.payload_case = EHR__V1__TX_BODY__PAYLOAD_MEMBER_PROPOSAL;
        b.member_proposal = &p;
        struct tx t;
        tx_sign(f->w, &f->hosp, &b, &t);
        struct contracts_tx_result r =
            apply_expect(f, &t, MALFORMED, "the member to admit: address");
        if (!ledger_text_ok(r.reason, CONTRACTS_REASON_BYTES_MAX))
            fail_msg("address %zu: the reason is not printable text: \"%s\"", i, r.reason);
    }
}

/* ---- signatures, framing, determinism ---- */

static void test_signatures_are_checked_at_apply(void **state)
{
    struct fx *f = *state;
    Ehr__V1__RecordType type = LAB_RESULT;
    struct grant g = {.grantee = f->hosp2.sig.public_key,
                      .types = &type,
                      .n_types = 1,
                      .purpose = TREATMENT,
                      .from_ms = T0,
                      .until_ms = T2};
    /* A member's node forges the patient's consent: signed by the member,
     * naming the patient as the signer. */
    struct tx t;
    tx_grant(f->w, &f->patient, &g, &t);
    Ehr__V1__TxEnvelope *env = ehr__v1__tx_envelope__unpack(NULL, t.len, t.envelope);
    uint8_t hash[32], sig[64];
    ehr_sha256(hash, env->body.data, env->body.len);
    assert_int_equal(ehr_schnorr_sign(&f->hosp2.sig, hash, sig), 0);
    memcpy(env->signature.data, sig, 64);
    ehr__v1__tx_envelope__pack(env, t.envelope);
    ehr__v1__tx_envelope__free_unpacked(env, NULL);
    struct tx copy = {.envelope = ehr_malloc(t.len), .len = t.len};
    memcpy(copy.envelope, t.envelope, t.len);
    memcpy(copy.hash, t.hash, 32);
    apply_expect(f, &t, BAD_SIGNATURE, "the signature does not verify");
    /* The same, with the caller's verdict already known (a cache). */
    enum contracts_sig invalid = CONTRACTS_SIG_INVALID;
    uint8_t before[32], after[32];
    world_digest(f->w, before);
    struct contracts_tx_result r;
    assert_int_equal(world_block(f->w, T1, &copy, 1, &invalid, &r), 0);
    assert_int_equal(r.code, BAD_SIGNATURE);
    world_digest(f->w, after);
    assert_memory_equal(before, after, 32);
    tx_free(&copy);
    /* A good signature the caller checked is not checked again. */
    tx_grant(f->w, &f->patient, &g, &t);
    enum contracts_sig valid = CONTRACTS_SIG_VALID;
    assert_int_equal(world_block(f->w, T1, &t, 1, &valid, &r), 0);
    assert_int_equal(r.code, OK);
    tx_free(&t);
}

static void test_framing_chain_and_expiry_are_checked_at_apply(void **state)
{
    struct fx *f = *state;
    struct tx t = {.envelope = ehr_malloc(3), .len = 3};
    memcpy(t.envelope, "\x0a\x05x", 3);
    memset(t.hash, 0, 32);
    apply_expect(f, &t, MALFORMED, "transaction");
    /* Expired at the block's time (not any node's clock). */
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__ConsentRevoke rv = EHR__V1__CONSENT_REVOKE__INIT;
    uint8_t id[32] = {1};
    rv.grant_id = (ProtobufCBinaryData){32, id};
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_REVOKE;
    b.consent_revoke = &rv;
    tx_sign(f->w, &f->patient, &b, &t);
    struct contracts_tx_result r;
    assert_int_equal(world_one(f->w, WORLD_GENESIS_MS + 3651 * WORLD_DAY_MS, &t, &r), MALFORMED);
    assert_non_null(strstr(r.reason, "expired"));
    tx_free(&t);
}

/* The same transactions on two fresh worlds: the same results and bytes. */
static void test_apply_is_deterministic(void **state)
{
    (void)state;
    struct fx *a = fx_make(true), *b = fx_make(true);
    uint8_t da[32], db[32];
    world_digest(a->w, da);
    world_digest(b->w, db);
    assert_memory_equal(da, db, 32);
    Ehr__V1__RecordType type = LAB_RESULT;
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX];
    struct grant g = {.grantee = a->hosp2.sig.public_key,
                      .types = &type,
                      .n_types = 1,
                      .purpose = TREATMENT,
                      .from_ms = T0,
                      .until_ms = T2 + 1,
                      .policy = code,
                      .policy_len = compile("permit if requester.role == hospital", code)};
    struct tx txs[6];
    tx_grant(a->w, &a->patient, &g, &txs[0]);
    tx_access(a->w, &a->hosp2, a->lab_record, TREATMENT, &txs[1]);
    tx_access(a->w, &a->prac2, a->lab_record, TREATMENT, &txs[2]);
    tx_emergency(a->w, &a->lab, a->imaging_record, "stroke", &txs[3]);
    tx_revoke(a->w, &a->patient, txs[0].hash, &txs[4]);
    tx_access(a->w, &a->hosp2, a->lab_record, TREATMENT, &txs[5]);
    struct contracts_tx_result ra[6], rb[6];
    assert_int_equal(world_block(a->w, T2, txs, 6, NULL, ra), 0);
    assert_int_equal(world_block(b->w, T2, txs, 6, NULL, rb), 0);
    for (int i = 0; i < 6; i++) {
        uint8_t ea[CONTRACTS_RESULT_BYTES_MAX], eb[CONTRACTS_RESULT_BYTES_MAX];
        size_t na = contracts_tx_result_encode(&ra[i], ea);
        size_t nb = contracts_tx_result_encode(&rb[i], eb);
        assert_int_equal(na, nb);
        assert_memory_equal(ea, eb, na);
    }
    assert_int_equal(ra[1].decision, PERMIT);
    assert_int_equal(ra[2].decision, PERMIT);
    assert_int_equal(ra[3].decision, PERMIT);
    assert_int_equal(ra[5].decision, DENY);
    world_digest(a->w, da);
    world_digest(b->w, db);
    assert_memory_equal(da, db, 32);
    for (int i = 0; i < 6; i++)
        tx_free(&txs[i]);
    fx_free(a);
    fx_free(b);
}

static void test_result_encoding(void **state)
{
    (void)state;
    /* OK and nothing else: zero bytes (proto3 defaults). */
    struct contracts_tx_result r = {.code = OK};
    uint8_t out[CONTRACTS_RESULT_BYTES_MAX];
    assert_int_equal(contracts_tx_result_encode(&r, out), 0);
    /* The longest result fits its bound. */
    memset(&r, 0, sizeof r);
    r.code = REFUSED;
    memset(r.reason, 'x', CONTRACTS_REASON_BYTES_MAX);
    r.decision = DENY;
    r.has_consent = true;
    r.gas_used = UINT64_MAX;
    size_t n = contracts_tx_result_encode(&r, out);
    assert_true(n <= CONTRACTS_RESULT_BYTES_MAX);
    Ehr__V1__TxResult *back = ehr__v1__tx_result__unpack(NULL, n, out);
    assert_non_null(back);
    assert_int_equal(back->code, REFUSED);
    assert_int_equal(strlen(back->reason), CONTRACTS_REASON_BYTES_MAX);
    assert_int_equal(back->consent_id.len, 32);
    ehr__v1__tx_result__free_unpacked(back, NULL);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_consent_matrix),
    cmocka_unit_test_setup_teardown(test_enroll, setup, teardown),
    cmocka_unit_test_setup_teardown(test_practitioners, setup, teardown),
    cmocka_unit_test_setup_teardown(test_anchors, setup, teardown),
    cmocka_unit_test_setup_teardown(test_anchor_limits_at_their_edges, setup, teardown),
    cmocka_unit_test_setup_teardown(test_a_ciphertext_belongs_to_one_record, setup, teardown),
    cmocka_unit_test_setup_teardown(test_grants, setup, teardown),
    cmocka_unit_test_setup_teardown(test_revokes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_erasure, setup, teardown),
    cmocka_unit_test_setup_teardown(test_access_requests_invalid, setup, teardown),
    cmocka_unit_test_setup_teardown(test_emergency_reasons, setup, teardown),
    cmocka_unit_test_setup_teardown(test_access_consent_count_at_its_edge, setup, teardown),
    cmocka_unit_test_setup_teardown(test_access_gas_budget_at_its_edge, setup, teardown),
    cmocka_unit_test_setup_teardown(test_governance_needs_a_majority_of_current_members, setup,
                                    teardown),
    cmocka_unit_test(test_governance_keeps_the_last_member),
    cmocka_unit_test(test_governance_admits_up_to_the_network_bound),
    cmocka_unit_test_setup_teardown(test_governance_reasons_are_text, setup, teardown),
    cmocka_unit_test_setup_teardown(test_signatures_are_checked_at_apply, setup, teardown),
    cmocka_unit_test_setup_teardown(test_framing_chain_and_expiry_are_checked_at_apply, setup,
                                    teardown),
    cmocka_unit_test(test_apply_is_deterministic),
    cmocka_unit_test(test_result_encoding),
};

int main(void)
{
    if (ehr_crypto_init() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
