/*
 * test_reads - signed patient-scoped reads (node.proto, "Signed reads")
 * against real ehrd processes: the matrix of requester x method with the
 * answer each must get, and the requests the node must refuse before it
 * reads anything (no auth, a window expired, not yet valid or too long, a
 * signature by another key or over other parameters, another method).
 *
 * One network of three founding members (tests/node/cluster.h): member 0 a
 * hospital, member 1 a lab, member 2 a regulator. One patient P, enrolled
 * by the hospital, with records R1 (imaging) and R2 (lab_result) in the
 * hospital's custody and R3 (invoice) in the regulator's; the lab's three
 * practitioners hold P's consents: A for imaging (in scope of R1), B for
 * genomic (no record of P in scope), C for lab_result, revoked. A stranger
 * is a key nobody registered.
 *
 * Also here: GetRecord (one record's anchor, by the same per-record rule as
 * ListRecords) and ListMembers (unsigned: no patient data).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "ehr/v1/node.pb-c.h"
#include "ledger_format.h"
#include "read_auth.h"

enum { NODES = 3, LEADER_WAIT_MS = 30000, CALL_MS = 10000 };

struct net {
    struct cluster c;
    ehr_identity patient, a, b, c_revoked, stranger;
    uint8_t r1[EHR_HASH_BYTES], r2[EHR_HASH_BYTES], r3[EHR_HASH_BYTES];
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------- the network */

/* Submit ENVELOPE (freed here) through the leader, waiting; the result must be OK. */
static void submit(struct net *n, uint8_t *env, size_t len)
{
    size_t leader = cluster_wait_leader(&n->c, LEADER_WAIT_MS);
    assert_int_not_equal(leader, SIZE_MAX);
    int code;
    assert_int_equal(cluster_submit_wait(&n->c, leader, env, len, &code), RPC_STATUS_OK);
    assert_int_equal(code, EHR__V1__TX_RESULT_CODE__TX_RESULT_OK);
}

/* Submit BODY signed by KEY through the leader, waiting; the result must be OK. */
static void commit(struct net *n, const ehr_signing_key *key, Ehr__V1__TxBody *body,
                   uint8_t hash[EHR_HASH_BYTES])
{
    uint8_t *env;
    size_t len;
    cluster_tx_sign_as(&n->c, key, body, &env, &len, hash);
    submit(n, env, len);
}

static void anchor(struct net *n, size_t member, int type, uint8_t id[EHR_HASH_BYTES])
{
    uint8_t *env;
    size_t len;
    cluster_tx_anchor(&n->c, member, n->patient.signing.public_key, type, &env, &len, id);
    submit(n, env, len);
}

static void practitioner(struct net *n, size_t member, ehr_identity *p)
{
    assert_int_equal(ehr_identity_generate(p, "practitioner"), 0);
    Ehr__V1__PractitionerRegister r = EHR__V1__PRACTITIONER_REGISTER__INIT;
    r.practitioner_key = (ProtobufCBinaryData){32, p->signing.public_key};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_PRACTITIONER_REGISTER;
    body.practitioner_register = &r;
    commit(n, &n->c.nodes[member].identity->signing, &body, NULL);
}

/* The patient grants GRANTEE a treatment consent for TYPE records; its id into ID. */
static void grant(struct net *n, const ehr_identity *grantee, int type, uint8_t id[EHR_HASH_BYTES])
{
    uint8_t *env;
    size_t len;
    cluster_tx_grant(&n->c, &n->patient.signing, grantee->signing.public_key, type,
                     wall_ms() + 86400000ull, &env, &len, id);
    submit(n, env, len);
}

static int net_setup(void **state)
{
    if (ehr_crypto_init() != 0)
        return -1;
    struct net *n = calloc(1, sizeof *n);
    if (n == NULL)
        return -1;
    static const char *const roles[] = {"hospital", "lab", "regulator", NULL};
    struct cluster_limits lim = {.roles = roles};
    cluster_create(&n->c, NODES, EHR_BINARY_DIR "/node/ehrd", EHR_BINARY_DIR "/cli/ehrctl", &lim);
    for (size_t i = 0; i < NODES; i++)
        cluster_start(&n->c, i);
    size_t leader = cluster_wait_leader(&n->c, LEADER_WAIT_MS);
    if (leader == SIZE_MAX)
        return -1;
    uint8_t *env;
    size_t len;
    int code;
    cluster_tx_enroll(&n->c, 0, &n->patient, &env, &len, NULL);
    if (cluster_submit_wait(&n->c, leader, env, len, &code) != 0 || code != 0)
        return -1;
    anchor(n, 0, EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING, n->r1);
    anchor(n, 0, EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT, n->r2);
    anchor(n, 2, EHR__V1__RECORD_TYPE__RECORD_TYPE_INVOICE, n->r3);
    practitioner(n, 1, &n->a);
    practitioner(n, 1, &n->b);
    practitioner(n, 1, &n->c_revoked);
    assert_int_equal(ehr_identity_generate(&n->stranger, "stranger"), 0);
    uint8_t consent[EHR_HASH_BYTES];
    grant(n, &n->a, EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING, consent);
    grant(n, &n->b, EHR__V1__RECORD_TYPE__RECORD_TYPE_GENOMIC, consent);
    grant(n, &n->c_revoked, EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT, consent);
    Ehr__V1__ConsentRevoke r = EHR__V1__CONSENT_REVOKE__INIT;
    r.grant_id = (ProtobufCBinaryData){EHR_HASH_BYTES, consent};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_REVOKE;
    body.consent_revoke = &r;
    commit(n, &n->patient.signing, &body, NULL);
    /* Reads go to every node: each must have applied the last commit. */
    if (cluster_wait_converged(&n->c, LEADER_WAIT_MS) == UINT64_MAX)
        return -1;
    *state = n;
    return 0;
}

static int net_teardown(void **state)
{
    struct net *n = *state;
    if (n == NULL)
        return 0;
    for (size_t i = 0; i < n->c.count; i++)
        cluster_stop(&n->c, i);
    cluster_destroy(&n->c, getenv("EHR_TEST_KEEP") != NULL);
    free(n);
    return 0;
}

/* ------------------------------------------------------------ one call */

/* A request of one of the three methods, its fields reachable for signing. */
struct read {
    const char *method;
    ProtobufCMessage *request;
    Ehr__V1__ReadAuth **auth;
};

/* Pack R's request and call node I: the status, and the entries answered
 * (*COUNT) with their ids (IDS, up to 8; may be NULL). */
static int call(struct net *n, size_t i, const struct read *r, size_t *count,
                uint8_t ids[8][EHR_HASH_BYTES])
{
    size_t len = protobuf_c_message_get_packed_size(r->request);
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    protobuf_c_message_pack(r->request, buf);
    struct rpc_result res;
    int st = cluster_call(&n->c, i, r->method, buf, len, CALL_MS, &res);
    free(buf);
    *count = 0;
    if (st == RPC_STATUS_OK && strcmp(r->method, "GetAuditTrail") == 0) {
        Ehr__V1__GetAuditTrailResponse *a =
            ehr__v1__get_audit_trail_response__unpack(NULL, res.response_len, res.response);
        assert_non_null(a);
        *count = a->n_events;
        ehr__v1__get_audit_trail_response__free_unpacked(a, NULL);
    } else if (st == RPC_STATUS_OK && strcmp(r->method, "ListRecords") == 0) {
        Ehr__V1__ListRecordsResponse *a =
            ehr__v1__list_records_response__unpack(NULL, res.response_len, res.response);
        assert_non_null(a);
        *count = a->n_records;
        for (size_t k = 0; ids != NULL && k < a->n_records && k < 8; k++)
            memcpy(ids[k], a->records[k]->record_id.data, EHR_HASH_BYTES);
        ehr__v1__list_records_response__free_unpacked(a, NULL);
    } else if (st == RPC_STATUS_OK) {
        Ehr__V1__ListConsentsResponse *a =
            ehr__v1__list_consents_response__unpack(NULL, res.response_len, res.response);
        assert_non_null(a);
        *count = a->n_consents;
        ehr__v1__list_consents_response__free_unpacked(a, NULL);
    }
    rpc_result_clear(&res);
    return st;
}

/* Sign R as KEY for [FROM, UNTIL] (ms) into AUTH. */
static void sign(struct net *n, const struct read *r, const ehr_signing_key *key, uint64_t from,
                 uint64_t until, struct node_read_auth_signed *auth)
{
    char path[128];
    snprintf(path, sizeof path, "/ehr.v1.Node/%s", r->method);
    assert_int_equal(
        node_read_auth_sign(auth, r->request, r->auth, n->c.chain_id, path, key, from, until), 0);
}

/* Sign R as KEY for the next minute and call node I. */
static int signed_call(struct net *n, size_t i, const struct read *r, const ehr_signing_key *key,
                       size_t *count, uint8_t ids[8][EHR_HASH_BYTES])
{
    struct node_read_auth_signed auth;
    uint64_t now = wall_ms();
    sign(n, r, key, now, now + 60000, &auth);
    int st = call(n, i, r, count, ids);
    *r->auth = NULL;
    return st;
}

static uint64_t reads_refused(struct net *n, size_t i)
{
    struct rpc_result res;
    uint8_t empty = 0;
    assert_int_equal(cluster_call(&n->c, i, "GetStatus", &empty, 0, CALL_MS, &res), 0);
    Ehr__V1__GetStatusResponse *s =
        ehr__v1__get_status_response__unpack(NULL, res.response_len, res.response);
    assert_non_null(s);
    uint64_t v = s->reads_refused;
    ehr__v1__get_status_response__free_unpacked(s, NULL);
    rpc_result_clear(&res);
    return v;
}

static bool log_says(const struct net *n, size_t i, const char *words)
{
    FILE *f = fopen(n->c.nodes[i].log, "r");
    if (f == NULL)
        return false;
    char line[2048];
    bool said = false;
    while (!said && fgets(line, sizeof line, f) != NULL)
        said = strstr(line, words) != NULL;
    fclose(f);
    return said;
}

/* --------------------------------------------------------------- matrix */

enum { OK_ = RPC_STATUS_OK, DENIED = RPC_STATUS_PERMISSION_DENIED };

/*
 * Every requester against every method on P, through node 1 (a follower
 * or the leader: reads are answered from any node's committed state), with
 * the answer each must get; the records a reader sees are exactly its own.
 * Every refusal is counted in GetStatus and logged.
 */
static void test_who_reads_what(void **state)
{
    struct net *n = *state;
    const ehr_signing_key *hospital = &n->c.nodes[0].identity->signing;
    const ehr_signing_key *lab = &n->c.nodes[1].identity->signing;
    const ehr_signing_key *regulator = &n->c.nodes[2].identity->signing;
    ProtobufCBinaryData patient = {32, n->patient.signing.public_key};

    Ehr__V1__GetAuditTrailRequest audit = EHR__V1__GET_AUDIT_TRAIL_REQUEST__INIT;
    audit.patient_key = patient;
    Ehr__V1__ListRecordsRequest records = EHR__V1__LIST_RECORDS_REQUEST__INIT;
    records.patient_key = patient;
    Ehr__V1__ListConsentsRequest consents = EHR__V1__LIST_CONSENTS_REQUEST__INIT;
    consents.patient_key = patient;
    const struct read reads[3] = {{"GetAuditTrail", &audit.base, &audit.auth},
                                  {"ListRecords", &records.base, &records.auth},
                                  {"ListConsents", &consents.base, &consents.auth}};
    /* The expected status per method, and for ListRecords the records seen
     * (R1 R2 R3 as bits 1 2 4). */
    struct {
        const char *who;
        const ehr_signing_key *key;
        int status[3];
        unsigned records;
    } rows[] = {
        {"patient", &n->patient.signing, {OK_, OK_, OK_}, 7},
        {"custodian (the hospital)", hospital, {DENIED, OK_, DENIED}, 3},
        {"grantee in scope (A)", &n->a.signing, {DENIED, OK_, DENIED}, 1},
        {"grantee out of scope (B)", &n->b.signing, {DENIED, DENIED, DENIED}, 0},
        {"revoked grantee (C)", &n->c_revoked.signing, {DENIED, DENIED, DENIED}, 0},
        {"member with no standing (the lab)", lab, {DENIED, DENIED, DENIED}, 0},
        {"regulator (custodian of R3)", regulator, {OK_, OK_, DENIED}, 4},
        {"stranger", &n->stranger.signing, {DENIED, DENIED, DENIED}, 0},
    };
    uint64_t refused_before = reads_refused(n, 1), refusals = 0;
    for (size_t row = 0; row < EHR_ARRAY_COUNT(rows); row++) {
        for (size_t m = 0; m < 3; m++) {
            size_t count;
            uint8_t ids[8][EHR_HASH_BYTES];
            int st = signed_call(n, 1, &reads[m], rows[row].key, &count, ids);
            if (st != rows[row].status[m])
                fail_msg("%s, %s: status %d, want %d", rows[row].who, reads[m].method, st,
                         rows[row].status[m]);
            refusals += st != OK_;
            if (st != OK_ || m != 1)
                continue;
            unsigned seen = 0;
            for (size_t k = 0; k < count; k++)
                seen |= memcmp(ids[k], n->r1, 32) == 0   ? 1u
                        : memcmp(ids[k], n->r2, 32) == 0 ? 2u
                        : memcmp(ids[k], n->r3, 32) == 0 ? 4u
                                                         : 8u;
            if (seen != rows[row].records || count != (size_t)__builtin_popcount(seen))
                fail_msg("%s sees records %#x (%zu), want %#x", rows[row].who, seen, count,
                         rows[row].records);
        }
    }
    /* Consents by grantee: each grantee its own (C's revoked one included);
     * another's are refused. */
    Ehr__V1__ListConsentsRequest held = EHR__V1__LIST_CONSENTS_REQUEST__INIT;
    const struct read by_grantee = {"ListConsents", &held.base, &held.auth};
    const ehr_identity *grantees[] = {&n->a, &n->b, &n->c_revoked};
    for (size_t g = 0; g < 3; g++) {
        size_t count;
        held.grantee_key = (ProtobufCBinaryData){32, (uint8_t *)grantees[g]->signing.public_key};
        assert_int_equal(signed_call(n, 1, &by_grantee, &grantees[g]->signing, &count, NULL), OK_);
        assert_int_equal(count, 1);
        assert_int_equal(signed_call(n, 1, &by_grantee, &n->patient.signing, &count, NULL), DENIED);
        refusals++;
    }
    assert_int_equal(reads_refused(n, 1) - refused_before, refusals);
    assert_true(log_says(n, 1, "signed reads refused"));
}

/* ------------------------------------------------- requests refused early */

/*
 * The patient's own audit trail, through node 0, signed wrongly in every
 * way: each UNAUTHENTICATED (a field of the wrong size INVALID_ARGUMENT),
 * while the same request signed right is answered.
 */
static void test_a_read_outside_its_window_or_signed_wrongly_is_refused(void **state)
{
    struct net *n = *state;
    Ehr__V1__GetAuditTrailRequest q = EHR__V1__GET_AUDIT_TRAIL_REQUEST__INIT;
    q.patient_key = (ProtobufCBinaryData){32, n->patient.signing.public_key};
    q.limit = 2;
    const struct read r = {"GetAuditTrail", &q.base, &q.auth};
    const ehr_signing_key *key = &n->patient.signing;
    struct node_read_auth_signed auth;
    size_t count;
    uint64_t now = wall_ms(), skew = NODE_READ_AUTH_CLOCK_SKEW_MS,
             max = NODE_READ_AUTH_WINDOW_MS_MAX;

    /* unsigned */
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_UNAUTHENTICATED);
    /* windows: expired past the skew; not yet valid past it; one ms too long; empty */
    const struct {
        uint64_t from, until;
        int status;
    } windows[] = {
        {now - 120000, now - skew - 5000, RPC_STATUS_UNAUTHENTICATED},
        {now + skew + 5000, now + skew + 65000, RPC_STATUS_UNAUTHENTICATED},
        {now - 1000, now - 1000 + max + 1, RPC_STATUS_UNAUTHENTICATED},
        {now, now, RPC_STATUS_UNAUTHENTICATED},
        {now - 1000, now - 1000 + max, RPC_STATUS_OK},       /* the longest window */
        {now - 60000, now - skew / 2, RPC_STATUS_OK},        /* just expired, within the skew */
        {now + skew / 2, now + skew / 2 + 1, RPC_STATUS_OK}, /* not yet, within the skew */
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(windows); i++) {
        sign(n, &r, key, windows[i].from, windows[i].until, &auth);
        int st = call(n, 0, &r, &count, NULL);
        if (st != windows[i].status)
            fail_msg("window %zu: status %d, want %d", i, st, windows[i].status);
    }
    /* mis-signed: a flipped bit; another key's signature under the patient's key */
    sign(n, &r, key, now, now + 60000, &auth);
    auth.signature[17] ^= 1;
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_UNAUTHENTICATED);
    sign(n, &r, &n->stranger.signing, now, now + 60000, &auth);
    memcpy(auth.key, n->patient.signing.public_key, 32);
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_UNAUTHENTICATED);
    /* parameters changed after signing: the page token, the limit, the filter */
    sign(n, &r, key, now, now + 60000, &auth);
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_OK);
    assert_int_equal(count, 2);
    q.limit = 3;
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_UNAUTHENTICATED);
    q.limit = 2;
    q.emergency_only = true;
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_UNAUTHENTICATED);
    q.emergency_only = false;
    uint8_t token[64] = "audit/";
    memcpy(token + 6, n->patient.signing.public_key, 32);
    q.page_token = (ProtobufCBinaryData){6 + 32 + 1, token};
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_UNAUTHENTICATED);
    q.page_token = (ProtobufCBinaryData){0, NULL};
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_OK);
    /* signed for another method: ListRecords' signature sent to GetAuditTrail */
    const struct read other = {"ListRecords", &q.base, &q.auth};
    sign(n, &other, key, now, now + 60000, &auth);
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_UNAUTHENTICATED);
    /* a key of 31 bytes: malformed */
    sign(n, &r, key, now, now + 60000, &auth);
    auth.auth.requester_key.len = 31;
    assert_int_equal(call(n, 0, &r, &count, NULL), RPC_STATUS_INVALID_ARGUMENT);
    q.auth = NULL;
}

/* ------------------------------------------------------------ GetRecord */

/* GetRecord of ID signed by KEY (NULL: unsigned) through node I; on OK the
 * answer is checked: the entry of ID, the anchor envelope hashing to ID,
 * the record's type TYPE. */
static int get_record(struct net *n, size_t i, const uint8_t *id, size_t id_len,
                      const ehr_signing_key *key, int type)
{
    Ehr__V1__GetRecordRequest q = EHR__V1__GET_RECORD_REQUEST__INIT;
    q.record_id = (ProtobufCBinaryData){id_len, (uint8_t *)id};
    const struct read r = {"GetRecord", &q.base, &q.auth};
    struct node_read_auth_signed auth;
    if (key != NULL) {
        uint64_t now = wall_ms();
        sign(n, &r, key, now, now + 60000, &auth);
    }
    size_t len = protobuf_c_message_get_packed_size(&q.base);
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    protobuf_c_message_pack(&q.base, buf);
    struct rpc_result res;
    int st = cluster_call(&n->c, i, "GetRecord", buf, len, CALL_MS, &res);
    free(buf);
    if (st == RPC_STATUS_OK) {
        Ehr__V1__GetRecordResponse *a =
            ehr__v1__get_record_response__unpack(NULL, res.response_len, res.response);
        assert_non_null(a);
        assert_non_null(a->record);
        assert_non_null(a->record->record);
        assert_memory_equal(a->record->record_id.data, id, EHR_HASH_BYTES);
        assert_int_equal(a->record->record->record_type, type);
        assert_memory_equal(a->record->record->patient_key.data, n->patient.signing.public_key, 32);
        ledger_tx_view v;
        assert_int_equal(
            ledger_tx_envelope_parse(a->anchor_envelope.data, a->anchor_envelope.len, &v, NULL), 0);
        uint8_t hash[EHR_HASH_BYTES];
        ledger_tx_hash(v.body, v.body_len, hash);
        assert_memory_equal(hash, id, EHR_HASH_BYTES);
        ehr__v1__get_record_response__free_unpacked(a, NULL);
    }
    rpc_result_clear(&res);
    return st;
}

/*
 * One record's anchor, authorised as ListRecords authorises each record it
 * lists: every requester of the matrix against each of R1 R2 R3, through
 * node 2, answered exactly where test_who_reads_what's ListRecords shows
 * the record, refused (and counted) elsewhere. Then the requests refused
 * before any record is looked up (unsigned, signed for another record, an
 * id of 31 bytes), and a record nobody anchored (NOT_FOUND, to a request
 * whose signature verified).
 */
static void test_get_record_follows_the_listing_rule(void **state)
{
    struct net *n = *state;
    const struct {
        const char *who;
        const ehr_signing_key *key;
        unsigned records; /* R1 R2 R3 as bits 1 2 4 */
    } rows[] = {
        {"patient", &n->patient.signing, 7},
        {"custodian (the hospital)", &n->c.nodes[0].identity->signing, 3},
        {"grantee in scope (A)", &n->a.signing, 1},
        {"grantee out of scope (B)", &n->b.signing, 0},
        {"revoked grantee (C)", &n->c_revoked.signing, 0},
        {"member with no standing (the lab)", &n->c.nodes[1].identity->signing, 0},
        {"regulator (custodian of R3)", &n->c.nodes[2].identity->signing, 4},
        {"stranger", &n->stranger.signing, 0},
    };
    const struct {
        const uint8_t *id;
        int type;
    } records[3] = {{n->r1, EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING},
                    {n->r2, EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT},
                    {n->r3, EHR__V1__RECORD_TYPE__RECORD_TYPE_INVOICE}};
    uint64_t refused_before = reads_refused(n, 2), refusals = 0;
    for (size_t row = 0; row < EHR_ARRAY_COUNT(rows); row++) {
        for (size_t k = 0; k < 3; k++) {
            int want = rows[row].records & (1u << k) ? OK_ : DENIED;
            int st =
                get_record(n, 2, records[k].id, EHR_HASH_BYTES, rows[row].key, records[k].type);
            if (st != want)
                fail_msg("%s, R%zu: status %d, want %d", rows[row].who, k + 1, st, want);
            refusals += st != OK_;
        }
    }
    assert_int_equal(reads_refused(n, 2) - refused_before, refusals);

    /* unsigned; signed for R1 and sent for R2; a 31-byte id */
    assert_int_equal(get_record(n, 2, n->r1, EHR_HASH_BYTES, NULL, 0), RPC_STATUS_UNAUTHENTICATED);
    Ehr__V1__GetRecordRequest q = EHR__V1__GET_RECORD_REQUEST__INIT;
    q.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, n->r1};
    const struct read r = {"GetRecord", &q.base, &q.auth};
    struct node_read_auth_signed auth;
    uint64_t now = wall_ms();
    sign(n, &r, &n->patient.signing, now, now + 60000, &auth);
    q.record_id.data = n->r2;
    size_t len = protobuf_c_message_get_packed_size(&q.base);
    uint8_t buf[512];
    assert_true(len <= sizeof buf);
    protobuf_c_message_pack(&q.base, buf);
    struct rpc_result res;
    assert_int_equal(cluster_call(&n->c, 2, "GetRecord", buf, len, CALL_MS, &res),
                     RPC_STATUS_UNAUTHENTICATED);
    rpc_result_clear(&res);
    assert_int_equal(get_record(n, 2, n->r1, 31, &n->patient.signing, 0),
                     RPC_STATUS_INVALID_ARGUMENT);
    /* no such record */
    uint8_t nobody[EHR_HASH_BYTES];
    memset(nobody, 0x5a, sizeof nobody);
    assert_int_equal(get_record(n, 2, nobody, EHR_HASH_BYTES, &n->patient.signing, 0),
                     RPC_STATUS_NOT_FOUND);
}

/* ---------------------------------------------------------- ListMembers */

/* ListMembers on node I (LIMIT, TOKEN): the status; on OK the members'
 * node keys into KEYS (up to 8), their count into *COUNT, roles into ROLES
 * and the next token into NEXT (up to 128 bytes; *NEXT_LEN). */
static int list_members(struct net *n, size_t i, uint32_t limit, const uint8_t *token,
                        size_t token_len, size_t *count, uint8_t keys[8][32], int roles[8],
                        uint8_t next[128], size_t *next_len)
{
    Ehr__V1__ListMembersRequest q = EHR__V1__LIST_MEMBERS_REQUEST__INIT;
    q.limit = limit;
    q.page_token = (ProtobufCBinaryData){token_len, (uint8_t *)token};
    uint8_t buf[256];
    size_t len = protobuf_c_message_get_packed_size(&q.base);
    assert_true(len <= sizeof buf);
    protobuf_c_message_pack(&q.base, buf);
    struct rpc_result res;
    int st = cluster_call(&n->c, i, "ListMembers", buf, len, CALL_MS, &res);
    *count = 0;
    *next_len = 0;
    if (st == RPC_STATUS_OK) {
        Ehr__V1__ListMembersResponse *a =
            ehr__v1__list_members_response__unpack(NULL, res.response_len, res.response);
        assert_non_null(a);
        *count = a->n_members;
        for (size_t k = 0; k < a->n_members && k < 8; k++) {
            assert_int_equal(a->members[k]->node_key.len, 32);
            memcpy(keys[k], a->members[k]->node_key.data, 32);
            roles[k] = a->members[k]->role;
            assert_int_equal(a->members[k]->kx_key.len, 32);
            assert_true(strncmp(a->members[k]->name, "Member ", 7) == 0);
            assert_true(strlen(a->members[k]->peer_address) > 0);
        }
        assert_true(a->next_page_token.len <= 128);
        if (a->next_page_token.len > 0) /* an empty bytes field may be NULL */
            memcpy(next, a->next_page_token.data, a->next_page_token.len);
        *next_len = a->next_page_token.len;
        ehr__v1__list_members_response__free_unpacked(a, NULL);
    }
    rpc_result_clear(&res);
    return st;
}

/*
 * The members without a signature: the three founders in node-key order
 * with their roles, whole in one page and one by one over three pages,
 * from any node; a limit over the maximum and a token of another listing
 * are INVALID_ARGUMENT, and nothing is counted as a refused read.
 */
static void test_list_members_is_unsigned_and_paged(void **state)
{
    struct net *n = *state;
    uint64_t refused_before = reads_refused(n, 0);
    size_t count, next_len;
    uint8_t keys[8][32], next[128];
    int roles[8];
    assert_int_equal(list_members(n, 0, 0, NULL, 0, &count, keys, roles, next, &next_len), OK_);
    assert_int_equal(count, NODES);
    assert_int_equal(next_len, 0);
    for (size_t k = 0; k + 1 < NODES; k++)
        assert_true(memcmp(keys[k], keys[k + 1], 32) < 0);
    for (size_t m = 0; m < NODES; m++) {
        static const int want[NODES] = {EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL,
                                        EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB,
                                        EHR__V1__MEMBER_ROLE__MEMBER_ROLE_REGULATOR};
        size_t found = SIZE_MAX;
        for (size_t k = 0; k < NODES; k++)
            if (memcmp(keys[k], n->c.nodes[m].node_key, 32) == 0)
                found = k;
        assert_int_not_equal(found, SIZE_MAX);
        assert_int_equal(roles[found], want[m]);
    }
    /* one per page, through node 1 */
    uint8_t token[128];
    size_t token_len = 0;
    for (size_t page = 0; page < NODES; page++) {
        uint8_t one[8][32];
        assert_int_equal(
            list_members(n, 1, 1, token, token_len, &count, one, roles, next, &next_len), OK_);
        assert_int_equal(count, 1);
        assert_memory_equal(one[0], keys[page], 32);
        assert_int_equal(next_len != 0, page + 1 < NODES);
        memcpy(token, next, next_len);
        token_len = next_len;
    }
    assert_int_equal(list_members(n, 1, 1001, NULL, 0, &count, keys, roles, next, &next_len),
                     RPC_STATUS_INVALID_ARGUMENT);
    uint8_t other[40] = "audit/";
    assert_int_equal(
        list_members(n, 1, 1, other, sizeof other, &count, keys, roles, next, &next_len),
        RPC_STATUS_INVALID_ARGUMENT);
    assert_int_equal(reads_refused(n, 0), refused_before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_who_reads_what),
        cmocka_unit_test(test_a_read_outside_its_window_or_signed_wrongly_is_refused),
        cmocka_unit_test(test_get_record_follows_the_listing_rule),
        cmocka_unit_test(test_list_members_is_unsigned_and_paged),
    };
    int failed = cmocka_run_group_tests(tests, net_setup, net_teardown);
    cluster_kill_all();
    return failed;
}
