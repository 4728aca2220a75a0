/*
 * reads.c - who may read what through the patient-scoped queries
 * (GetAuditTrail, ListRecords, ListConsents, GetRecord; node.proto "Signed
 * reads"): the request's signature and window (read_auth.h), then the
 * requester's standing in the committed world state, before any of the
 * patient's data is answered; and the count and the rate-limited log of
 * refused reads.
 *
 * The signature is checked here, on the loop, once per call: one BIP-340
 * verification (about 40 us) bounded by the call itself, cheaper than the
 * page the call reads next (a page of 100 audit events costs several times
 * that, docs/BENCHMARKS.md), and every cheap refusal (no auth, a field of
 * the wrong size, a window out of range) comes first. A worker-pool hop as
 * the mempool's would add a loop turn and a copy of the request to every
 * read for no saving in the loop's total work.
 *
 * Not here: the listings themselves (listings.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ehr/v1/state.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "node_internal.h"

/* Read the state.proto / tx.proto entry under PREFIX + KEY into *OUT
 * (NULL when there is none). Returns 0 or a ledger error. */
static int entry_get(ledger *l, const char *prefix, const uint8_t key[32],
                     const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX], *v = NULL;
    size_t klen = contracts_key(k, prefix, key, NULL, NULL), vlen = 0;
    *out = NULL;
    int rc = ledger_state_get(l, k, klen, &v, &vlen, NULL);
    if (rc == EHR_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    *out = protobuf_c_message_unpack(desc, NULL, vlen, v);
    ehr_free(v);
    return *out != NULL ? 0 : EHR_ECORRUPT;
}

/* The member KEY is or acts for (R->institution) and its role, from the
 * member and practitioner entries. Returns 0 (R->has_institution false for
 * neither) or a ledger error. */
static int institution_find(ledger *l, struct node__reader *r)
{
    ProtobufCMessage *m;
    int rc = entry_get(l, CONTRACTS_PREFIX_MEMBER, r->key, &ehr__v1__member__descriptor, &m);
    if (rc != 0)
        return rc;
    if (m == NULL) {
        ProtobufCMessage *p;
        rc = entry_get(l, CONTRACTS_PREFIX_PRACTITIONER, r->key,
                       &ehr__v1__practitioner_entry__descriptor, &p);
        if (rc != 0 || p == NULL)
            return rc;
        const Ehr__V1__PractitionerEntry *pe = (const Ehr__V1__PractitionerEntry *)p;
        if (pe->member_key.len == EHR_SCHNORR_PUBLIC_BYTES) {
            memcpy(r->institution, pe->member_key.data, EHR_SCHNORR_PUBLIC_BYTES);
            r->practitioner = true;
        }
        protobuf_c_message_free_unpacked(p, NULL);
        if (!r->practitioner)
            return EHR_ECORRUPT;
        rc =
            entry_get(l, CONTRACTS_PREFIX_MEMBER, r->institution, &ehr__v1__member__descriptor, &m);
        if (rc != 0 || m == NULL)
            return rc; /* its member was removed: it acts for no one */
    } else {
        memcpy(r->institution, r->key, EHR_SCHNORR_PUBLIC_BYTES);
    }
    r->role = ((const Ehr__V1__Member *)m)->role;
    r->has_institution = true;
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* Collecting the current consents from one patient to one grantee. */
struct consents_scan {
    struct node__reader *r;
    ledger *l;
    uint64_t now_ms;
    int err;
};

static int consent_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                       size_t value_len)
{
    (void)value, (void)value_len;
    struct consents_scan *s = ctx;
    EHR_ASSERT(s->r->consent_count < EHR_ARRAY_COUNT(s->r->consents));
    if (key_len < EHR_HASH_BYTES) {
        s->err = EHR_ECORRUPT;
        return 1;
    }
    ProtobufCMessage *m;
    int rc = entry_get(s->l, CONTRACTS_PREFIX_CONSENT, key + key_len - EHR_HASH_BYTES,
                       &ehr__v1__consent_entry__descriptor, &m);
    if (rc == 0 && m == NULL)
        rc = EHR_ECORRUPT; /* an index entry without its consent */
    if (rc != 0) {
        s->err = rc;
        return 1;
    }
    Ehr__V1__ConsentEntry *c = (Ehr__V1__ConsentEntry *)m;
    /* Current: not revoked, and its period [from, until) covers the node's
     * clock (a read is answered now, not at a block). */
    if (c->revoked || c->valid_from_ms > s->now_ms || s->now_ms >= c->valid_until_ms) {
        protobuf_c_message_free_unpacked(m, NULL);
        return 0;
    }
    s->r->consents[s->r->consent_count++] = c;
    return 0;
}

/* The current consents from PATIENT held by GRANTEE, appended to R: of the
 * first NODE_READ_CONSENTS_MAX in consent-id order, as the access rule
 * examines at most as many. */
static int consents_load(ledger *l, struct node__reader *r, const uint8_t patient[32],
                         const uint8_t grantee[32], uint64_t now_ms)
{
    uint8_t prefix[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(prefix, CONTRACTS_PREFIX_PATIENT_CONSENTS, patient, grantee, NULL);
    struct consents_scan s = {.r = r, .l = l, .now_ms = now_ms};
    long got =
        ledger_state_scan(l, prefix, n, NULL, 0, NODE_READ_CONSENTS_MAX, consent_one, &s, NULL);
    return got < 0 ? (int)got : s.err;
}

void node__reader_release(struct node__reader *r)
{
    for (size_t i = 0; i < r->consent_count; i++)
        ehr__v1__consent_entry__free_unpacked(r->consents[i], NULL);
    r->consent_count = 0;
}

bool node__reader_sees_record(const struct node__reader *r, const uint8_t record_id[32],
                              const Ehr__V1__RecordEntry *e)
{
    if (r->patient)
        return true;
    if (r->has_institution && e->custodian.len == EHR_SCHNORR_PUBLIC_BYTES &&
        memcmp(e->custodian.data, r->institution, EHR_SCHNORR_PUBLIC_BYTES) == 0)
        return true;
    for (size_t i = 0; i < r->consent_count; i++) {
        const Ehr__V1__ConsentEntry *c = r->consents[i];
        for (size_t t = 0; t < c->n_record_types; t++)
            if (c->record_types[t] == e->record_type)
                return true;
        for (size_t k = 0; k < c->n_record_ids; k++)
            if (c->record_ids[k].len == EHR_HASH_BYTES &&
                memcmp(c->record_ids[k].data, record_id, EHR_HASH_BYTES) == 0)
                return true;
    }
    return false;
}

/* The first 8 hex digits of KEY, for a log line (never a whole patient key). */
static void key_prefix(char out[17], const uint8_t *key, size_t len)
{
    char hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
    if (len != EHR_SCHNORR_PUBLIC_BYTES) {
        snprintf(out, 17, "-");
        return;
    }
    ehr_hex_encode(hex, key, EHR_SCHNORR_PUBLIC_BYTES);
    snprintf(out, 17, "%.8s", hex);
}

/* One line for COUNT refusals, the last of them described. */
static void refused_log(const struct node__reads *rd, uint64_t count)
{
    ehr_log(EHR_LOG_WARN, "signed reads refused",
            "count=%" PRIu64 " total=%" PRIu64 " last_method=%s last_status=%s "
            "last_requester=%s last_patient=%s",
            count, rd->refused_count, rd->last_method, rd->last_status, rd->last_requester,
            rd->last_subject);
}

void node__reads_refused(struct node *n, const char *method, enum rpc_status status,
                         const ProtobufCBinaryData *requester, const ProtobufCBinaryData *subject)
{
    struct node__reads *rd = &n->reads;
    rd->refused_count++;
    snprintf(rd->last_method, sizeof rd->last_method, "%s", method);
    snprintf(rd->last_status, sizeof rd->last_status, "%s",
             status == RPC_STATUS_UNAUTHENTICATED     ? "UNAUTHENTICATED"
             : status == RPC_STATUS_PERMISSION_DENIED ? "PERMISSION_DENIED"
                                                      : "INVALID_ARGUMENT");
    key_prefix(rd->last_requester, requester ? requester->data : NULL,
               requester ? requester->len : 0);
    key_prefix(rd->last_subject, subject->data, subject->len);
    /* The first refusal after a quiet interval is logged at once; the rest
     * of the interval is summed up by the sweep (node__reads_sweep). */
    rd->log.interval_ms = NODE_READ_REFUSED_LOG_INTERVAL_MS;
    uint64_t count;
    if (ehr_log_limit_hit(&rd->log, uv_now(n->loop), &count))
        refused_log(rd, count);
}

void node__reads_sweep(struct node *n)
{
    uint64_t count;
    if (ehr_log_limit_flush(&n->reads.log, uv_now(n->loop), &count))
        refused_log(&n->reads, count);
}

/* Refuse: *A fails with STATUS and MSG, the refusal counted. Returns -1. */
static int refuse(struct node *n, const char *method, node__answer *a, enum rpc_status status,
                  const ProtobufCBinaryData *requester, const ProtobufCBinaryData *subject,
                  const char *msg)
{
    a->status = status;
    snprintf(a->msg, sizeof a->msg, "%s", msg);
    node__reads_refused(n, method, status, requester, subject);
    return -1;
}

int node__read_authenticate(struct node *n, const char *method, ProtobufCMessage *request,
                            Ehr__V1__ReadAuth **auth_field, ProtobufCBinaryData subject,
                            struct node__reader *r, node__answer *a)
{
    memset(r, 0, sizeof *r);
    *a = (node__answer){.status = RPC_STATUS_OK};
    EHR_ASSERT(subject.len == EHR_SCHNORR_PUBLIC_BYTES); /* checked by the caller */
    char path[NODE_READ_AUTH_METHOD_BYTES_MAX + 1];
    snprintf(path, sizeof path, "/ehr.v1.Node/%s", method);
    ehr_diag why = {{0}};
    int rc =
        node_read_auth_check(request, auth_field, n->chain.chain_id, path, node__now_ms(), &why);
    const ProtobufCBinaryData *requester = *auth_field ? &(*auth_field)->requester_key : NULL;
    if (rc == EHR_EINVAL) {
        a->status = RPC_STATUS_INVALID_ARGUMENT;
        snprintf(a->msg, sizeof a->msg, "%s", why.msg);
        return -1;
    }
    if (rc != 0)
        return refuse(n, method, a, RPC_STATUS_UNAUTHENTICATED, requester, &subject, why.msg);
    EHR_ASSERT(requester->len == EHR_SCHNORR_PUBLIC_BYTES); /* node_read_auth_check's */
    memcpy(r->key, requester->data, EHR_SCHNORR_PUBLIC_BYTES);
    return 0;
}

int node__read_standing(struct node *n, const char *method, enum node__read_kind kind,
                        ProtobufCBinaryData subject, struct node__reader *r, node__answer *a)
{
    *a = (node__answer){.status = RPC_STATUS_OK};
    EHR_ASSERT(subject.len == EHR_SCHNORR_PUBLIC_BYTES); /* checked by the caller */
    const ProtobufCBinaryData requester_key = {EHR_SCHNORR_PUBLIC_BYTES, r->key};
    const ProtobufCBinaryData *requester = &requester_key;
    if (memcmp(r->key, subject.data, EHR_SCHNORR_PUBLIC_BYTES) == 0) {
        /* The patient (or, by grantee, the grantee) reads what is theirs. */
        r->patient = true;
        return 0;
    }
    if (kind == NODE_READ_CONSENTS_BY_PATIENT || kind == NODE_READ_CONSENTS_BY_GRANTEE)
        return refuse(n, method, a, RPC_STATUS_PERMISSION_DENIED, requester, &subject,
                      kind == NODE_READ_CONSENTS_BY_PATIENT
                          ? "only the patient lists the patient's consents (a grantee lists "
                            "those it holds, by grantee_key)"
                          : "only the grantee lists the consents it holds");
    uint64_t now_ms = node__now_ms();
    int rc = institution_find(n->ledger, r);
    if (rc == 0 && kind == NODE_READ_RECORDS && r->has_institution) {
        rc = consents_load(n->ledger, r, subject.data, r->key, now_ms);
        if (rc == 0 && r->practitioner)
            rc = consents_load(n->ledger, r, subject.data, r->institution, now_ms);
    }
    if (rc != 0) {
        node__reader_release(r);
        a->status = RPC_STATUS_INTERNAL;
        snprintf(a->msg, sizeof a->msg, "cannot read the world state: %s", ehr_strerror(rc));
        return -1;
    }
    if (kind == NODE_READ_AUDIT) {
        if (r->has_institution && r->role == EHR__V1__MEMBER_ROLE__MEMBER_ROLE_REGULATOR)
            return 0;
        return refuse(n, method, a, RPC_STATUS_PERMISSION_DENIED, requester, &subject,
                      "only the patient and a regulator read a patient's audit trail");
    }
    EHR_ASSERT(kind == NODE_READ_RECORDS);
    if (r->has_institution)
        return 0; /* the caller keeps what it may see (node__reader_sees_record) */
    return refuse(n, method, a, RPC_STATUS_PERMISSION_DENIED, requester, &subject,
                  "only the patient, a custodian of the patient's records and a holder of the "
                  "patient's consent read the patient's records");
}

int node__read_institution(struct node *n, const char *method, ProtobufCBinaryData subject,
                           struct node__reader *r, node__answer *a, const char *refusal)
{
    *a = (node__answer){.status = RPC_STATUS_OK};
    int rc = institution_find(n->ledger, r);
    if (rc != 0) {
        a->status = RPC_STATUS_INTERNAL;
        snprintf(a->msg, sizeof a->msg, "cannot read the world state: %s", ehr_strerror(rc));
        return -1;
    }
    if (r->has_institution)
        return 0;
    const ProtobufCBinaryData requester = {EHR_SCHNORR_PUBLIC_BYTES, r->key};
    return refuse(n, method, a, RPC_STATUS_PERMISSION_DENIED, &requester, &subject, refusal);
}

int node__read_check(struct node *n, const char *method, ProtobufCMessage *request,
                     Ehr__V1__ReadAuth **auth_field, enum node__read_kind kind,
                     ProtobufCBinaryData subject, struct node__reader *r, node__answer *a)
{
    if (node__read_authenticate(n, method, request, auth_field, subject, r, a) != 0)
        return -1;
    return node__read_standing(n, method, kind, subject, r, a);
}
