/*
 * listings.c - the API's queries answered from the world state alone: a
 * patient's audit trail, records and consents, one record's anchor
 * (GetAuditTrail, ListRecords, ListConsents, GetRecord: signed reads,
 * authorised by reads.c before anything of the patient's is answered) and
 * the members (ListMembers, unsigned: nothing of a patient's). Each answer
 * is one bounded page of an index (NODE_QUERY_LIMIT_MAX entries, a
 * filtered page NODE_READ_FILTER_SCAN_MAX looked through), built on the
 * loop in one call.
 *
 * Not here: who may read what (reads.c), transactions, blocks and the
 * node's status (service.c), the keys' layout (contracts.h).
 */
#include <stdio.h>
#include <string.h>

#include "ehr/v1/node.pb-c.h"
#include "ehr/v1/state.pb-c.h"
#include "node_internal.h"

#define PATH_PREFIX "/ehr.v1.Node/"

enum { MESSAGE_BYTES_MAX = 256 };

static void reply_packed(struct rpc_call *call, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = ehr_malloc(len ? len : 1);
    protobuf_c_message_pack(msg, buf);
    rpc_call_reply(call, buf, len);
    ehr_free(buf);
}

/* ---- listings: a patient's audit trail, records, consents ---- */

_Static_assert(NODE_QUERY_LIMIT_MAX + 1 <= LEDGER_SCAN_COUNT_MAX, "one scan answers a page");

static void answer_fail(node__answer *a, enum rpc_status status, const char *msg)
{
    a->status = status;
    snprintf(a->msg, sizeof a->msg, "%s", msg);
}

/* As fail_err. */
static void answer_err(node__answer *a, int err, const char *msg)
{
    enum rpc_status st = rpc_status_from_err(err);
    answer_fail(a, st == RPC_STATUS_OK ? RPC_STATUS_INTERNAL : st, msg);
}

/* As reply_packed. */
static void answer_packed(node__answer *a, const ProtobufCMessage *msg)
{
    a->status = RPC_STATUS_OK;
    a->len = protobuf_c_message_get_packed_size(msg);
    a->bytes = ehr_malloc(a->len ? a->len : 1);
    protobuf_c_message_pack(msg, a->bytes);
}

/* Send A to CALL and release it. */
static void reply_answer(struct rpc_call *call, node__answer *a)
{
    if (a->status == RPC_STATUS_OK)
        rpc_call_reply(call, a->bytes, a->len);
    else
        rpc_call_fail(call, a->status, a->msg);
    ehr_free(a->bytes);
    a->bytes = NULL;
}

/*
 * One page of an index (contracts.h, "The world state's keys"): the keys
 * under PREFIX after PAGE_TOKEN, at most LIMIT of them; for each, FILL adds
 * one entry to the response from the key and value (it may read the ledger,
 * and returns 0, or an error that fails the call). The next page token is
 * the last key answered, when more keys follow.
 */
struct page {
    ledger *ledger;
    const uint8_t *prefix;
    size_t prefix_len;
    size_t limit, seen;
    int (*fill)(struct page *p, const uint8_t *key, size_t key_len, const uint8_t *value,
                size_t value_len);
    /* A listing filtered for its reader: SKIP says whether an entry is left
     * out (1), kept (0) or an error; NULL: every entry is kept. A filtered
     * page looks through at most NODE_READ_FILTER_SCAN_MAX entries. */
    int (*skip)(struct page *p, const uint8_t *key, size_t key_len, const uint8_t *value,
                size_t value_len);
    const struct node__reader *reader;
    ProtobufCMessage *pending; /* what SKIP unpacked of a kept entry, for FILL */
    size_t visited;
    void *out; /* the response being filled */
    uint8_t last[EHR_STATE_KEY_BYTES_MAX];
    size_t last_len;
    bool more;
    int err;
};

static int page_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                    size_t value_len)
{
    struct page *p = ctx;
    p->visited++;
    if (p->skip != NULL) {
        int skip = p->skip(p, key, key_len, value, value_len);
        if (skip < 0) {
            p->err = skip;
            return 1;
        }
        if (skip == 1)
            return 0;
    }
    if (p->seen == p->limit) {
        p->more = true; /* the LIMIT+1th: only says a next page exists */
        return 1;
    }
    int rc = p->fill(p, key, key_len, value, value_len);
    if (rc != 0) {
        p->err = rc;
        return 1;
    }
    EHR_ASSERT(key_len <= sizeof p->last);
    memcpy(p->last, key, key_len);
    p->last_len = key_len;
    p->seen++;
    return 0;
}

/* Check the paging fields and run the page. Returns 0 with P filled, or
 * non-zero with *A failed. */
static int page_scan(struct page *p, uint32_t limit, ProtobufCBinaryData token, node__answer *a)
{
    if (limit > NODE_QUERY_LIMIT_MAX) {
        char msg[MESSAGE_BYTES_MAX];
        snprintf(msg, sizeof msg, "limit %u is over the maximum %d", limit, NODE_QUERY_LIMIT_MAX);
        answer_fail(a, RPC_STATUS_INVALID_ARGUMENT, msg);
        return -1;
    }
    p->limit = limit == 0 ? NODE_QUERY_LIMIT_DEFAULT : limit;
    /* A token is a key this listing answered: under its prefix. */
    if (token.len != 0 && (token.len > EHR_STATE_KEY_BYTES_MAX || token.len <= p->prefix_len ||
                           memcmp(token.data, p->prefix, p->prefix_len) != 0)) {
        answer_fail(a, RPC_STATUS_INVALID_ARGUMENT, "page_token is not one this listing gave");
        return -1;
    }
    ehr_diag diag = {{0}};
    size_t scan_max = p->skip != NULL ? NODE_READ_FILTER_SCAN_MAX : p->limit + 1;
    _Static_assert((int)NODE_READ_FILTER_SCAN_MAX <= (int)LEDGER_SCAN_COUNT_MAX, "one scan");
    long got = ledger_state_scan(p->ledger, p->prefix, p->prefix_len, token.len ? token.data : NULL,
                                 token.len, scan_max, page_one, p, &diag);
    if (p->pending != NULL) { /* a kept entry past the page */
        protobuf_c_message_free_unpacked(p->pending, NULL);
        p->pending = NULL;
    }
    int rc = got < 0 ? (int)got : p->err;
    if (rc != 0) {
        answer_err(a, rc, diag.msg[0] ? diag.msg : "cannot read the ledger");
        return -1;
    }
    if (p->skip != NULL && !p->more && p->visited == scan_max) {
        /* Looked through as many as one call may without filling the page.
         * The next token is always a key the reader was answered, never one
         * it may not see; with none answered there is no such key. */
        if (p->seen == 0) {
            char msg[MESSAGE_BYTES_MAX];
            snprintf(msg, sizeof msg,
                     "none of the next %d entries is one you may read: list them by "
                     "record type",
                     NODE_READ_FILTER_SCAN_MAX);
            answer_fail(a, RPC_STATUS_RESOURCE_EXHAUSTED, msg);
            return -1;
        }
        p->more = true;
    }
    return 0;
}

/* page_scan, failing CALL on error. */
static int page_run(struct rpc_call *call, struct page *p, uint32_t limit,
                    ProtobufCBinaryData token)
{
    node__answer a = {0};
    if (page_scan(p, limit, token, &a) == 0)
        return 0;
    reply_answer(call, &a);
    return -1;
}

/* Is K a 32-byte key? Else *A fails naming the field NAME. */
static bool key_ok(ProtobufCBinaryData k, const char *name, node__answer *a)
{
    if (k.len == EHR_SCHNORR_PUBLIC_BYTES)
        return true;
    char msg[MESSAGE_BYTES_MAX];
    snprintf(msg, sizeof msg, "%s must be %d bytes (it is %zu)", name, EHR_SCHNORR_PUBLIC_BYTES,
             k.len);
    answer_fail(a, RPC_STATUS_INVALID_ARGUMENT, msg);
    return false;
}

/* The 32-byte key of a request, or fail CALL. */
static bool key_arg(struct rpc_call *call, ProtobufCBinaryData k, const char *name)
{
    node__answer a = {0};
    if (key_ok(k, name, &a))
        return true;
    reply_answer(call, &a);
    return false;
}

static int fill_audit(struct page *p, const uint8_t *key, size_t key_len, const uint8_t *value,
                      size_t value_len)
{
    (void)key, (void)key_len;
    Ehr__V1__GetAuditTrailResponse *r = p->out;
    Ehr__V1__AuditEvent *ev = ehr__v1__audit_event__unpack(NULL, value_len, value);
    if (ev == NULL)
        return EHR_ECORRUPT;
    r->events[r->n_events++] = ev;
    return 0;
}

void node__audit_trail(ledger *l, const Ehr__V1__GetAuditTrailRequest *q, node__answer *a)
{
    *a = (node__answer){.status = RPC_STATUS_OK};
    EHR_ASSERT(q->patient_key.len == EHR_SCHNORR_PUBLIC_BYTES); /* node__read_check's subject */
    Ehr__V1__GetAuditTrailResponse r = EHR__V1__GET_AUDIT_TRAIL_RESPONSE__INIT;
    uint8_t prefix[CONTRACTS_KEY_BYTES_MAX];
    struct page p = {.ledger = l, .prefix = prefix, .fill = fill_audit, .out = &r};
    p.prefix_len = contracts_key(
        prefix, q->emergency_only ? CONTRACTS_PREFIX_AUDIT_EMERGENCY : CONTRACTS_PREFIX_AUDIT,
        q->patient_key.data, NULL, NULL);
    r.events = ehr_calloc(NODE_QUERY_LIMIT_MAX + 1, sizeof *r.events);
    if (page_scan(&p, q->limit, q->page_token, a) == 0) {
        if (p.more)
            r.next_page_token = (ProtobufCBinaryData){p.last_len, p.last};
        answer_packed(a, &r.base);
    }
    for (size_t i = 0; i < r.n_events; i++)
        ehr__v1__audit_event__free_unpacked(r.events[i], NULL);
    ehr_free(r.events);
}

static void get_audit_trail(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__GetAuditTrailRequest *q = ehr__v1__get_audit_trail_request__unpack(NULL, len, req);
    if (q == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a GetAuditTrailRequest");
        return;
    }
    node__answer a = {0};
    struct node__reader reader;
    if (key_ok(q->patient_key, "patient_key", &a) &&
        node__read_check(n, "GetAuditTrail", &q->base, &q->auth, NODE_READ_AUDIT, q->patient_key,
                         &reader, &a) == 0) {
        node__audit_trail(n->ledger, q, &a);
        node__reader_release(&reader);
    }
    reply_answer(call, &a);
    ehr__v1__get_audit_trail_request__free_unpacked(q, NULL);
}

/* The state.proto entry under PREFIX + ID, unpacked with DESC. */
static int entry_read(ledger *l, const char *prefix, const uint8_t id[EHR_HASH_BYTES],
                      const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX], *v = NULL;
    size_t klen = contracts_key(k, prefix, id, NULL, NULL), vlen = 0;
    int rc = ledger_state_get(l, k, klen, &v, &vlen, NULL);
    if (rc == EHR_ENOTFOUND)
        return EHR_ECORRUPT; /* an index entry without its entry */
    if (rc != 0)
        return rc;
    *out = protobuf_c_message_unpack(desc, NULL, vlen, v);
    ehr_free(v);
    return *out != NULL ? 0 : EHR_ECORRUPT;
}

static int fill_record(struct page *p, const uint8_t *key, size_t key_len, const uint8_t *value,
                       size_t value_len)
{
    (void)key, (void)key_len;
    if (value_len != EHR_HASH_BYTES)
        return EHR_ECORRUPT;
    Ehr__V1__ListRecordsResponse *r = p->out;
    Ehr__V1__RecordInfo *info = ehr_calloc(1, sizeof *info);
    ehr__v1__record_info__init(info);
    info->record_id.data = ehr_malloc(EHR_HASH_BYTES);
    info->record_id.len = EHR_HASH_BYTES;
    memcpy(info->record_id.data, value, EHR_HASH_BYTES);
    r->records[r->n_records++] = info;
    if (p->pending != NULL) { /* read by skip_record */
        info->record = (Ehr__V1__RecordEntry *)p->pending;
        p->pending = NULL;
        return 0;
    }
    return entry_read(p->ledger, CONTRACTS_PREFIX_RECORD, value, &ehr__v1__record_entry__descriptor,
                      (ProtobufCMessage **)&info->record);
}

/* A record the reader may not see is left out of its page (page.skip). */
static int skip_record(struct page *p, const uint8_t *key, size_t key_len, const uint8_t *value,
                       size_t value_len)
{
    (void)key, (void)key_len;
    if (value_len != EHR_HASH_BYTES)
        return EHR_ECORRUPT;
    ProtobufCMessage *m;
    int rc = entry_read(p->ledger, CONTRACTS_PREFIX_RECORD, value,
                        &ehr__v1__record_entry__descriptor, &m);
    if (rc != 0)
        return rc;
    if (!node__reader_sees_record(p->reader, value, (const Ehr__V1__RecordEntry *)m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return 1;
    }
    if (p->pending != NULL)
        protobuf_c_message_free_unpacked(p->pending, NULL);
    p->pending = m; /* fill_record takes it: the entry is read once */
    return 0;
}

static void list_records(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__ListRecordsRequest *q = ehr__v1__list_records_request__unpack(NULL, len, req);
    if (q == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a ListRecordsRequest");
        return;
    }
    Ehr__V1__ListRecordsResponse r = EHR__V1__LIST_RECORDS_RESPONSE__INIT;
    uint8_t prefix[CONTRACTS_KEY_BYTES_MAX];
    struct page p = {.ledger = n->ledger, .prefix = prefix, .fill = fill_record, .out = &r};
    struct node__reader reader;
    node__answer refused = {0};
    if (key_arg(call, q->patient_key, "patient_key") &&
        node__read_check(n, "ListRecords", &q->base, &q->auth, NODE_READ_RECORDS, q->patient_key,
                         &reader, &refused) != 0) {
        reply_answer(call, &refused);
    } else if (q->patient_key.len == EHR_SCHNORR_PUBLIC_BYTES) {
        if (!reader.patient) {
            p.skip = skip_record;
            p.reader = &reader;
        }
        p.prefix_len = contracts_key(prefix, CONTRACTS_PREFIX_PATIENT_RECORDS, q->patient_key.data,
                                     NULL, NULL);
        if (q->record_type != EHR__V1__RECORD_TYPE__RECORD_TYPE_UNSPECIFIED) {
            uint8_t type[4];
            contracts_be32(type, (uint32_t)q->record_type);
            p.prefix_len = contracts_key_append(prefix, p.prefix_len, type, sizeof type);
        }
        r.records = ehr_calloc(NODE_QUERY_LIMIT_MAX + 1, sizeof *r.records);
        if (page_run(call, &p, q->limit, q->page_token) != 0) {
            /* failed, said */
        } else if (p.skip != NULL && p.seen == 0 && !p.more && q->page_token.len == 0) {
            /* Not one of the patient's records is the reader's to see: a
             * refusal, counted, rather than a silent empty list. */
            rpc_call_fail(call, RPC_STATUS_PERMISSION_DENIED,
                          "none of this patient's records is yours to read: you are not their "
                          "custodian, and no current consent of the patient that you hold "
                          "covers them");
            node__reads_refused(n, "ListRecords", RPC_STATUS_PERMISSION_DENIED,
                                &q->auth->requester_key, &q->patient_key);
        } else {
            if (p.more)
                r.next_page_token = (ProtobufCBinaryData){p.last_len, p.last};
            reply_packed(call, &r.base);
        }
        r.next_page_token = (ProtobufCBinaryData){0, NULL};
        for (size_t i = 0; i < r.n_records; i++)
            ehr__v1__record_info__free_unpacked(r.records[i], NULL);
        ehr_free(r.records);
        node__reader_release(&reader);
    }
    ehr__v1__list_records_request__free_unpacked(q, NULL);
}

static int fill_consent(struct page *p, const uint8_t *key, size_t key_len, const uint8_t *value,
                        size_t value_len)
{
    (void)value, (void)value_len;
    if (key_len < p->prefix_len + EHR_HASH_BYTES)
        return EHR_ECORRUPT;
    const uint8_t *id = key + key_len - EHR_HASH_BYTES; /* both indexes end with the id */
    Ehr__V1__ListConsentsResponse *r = p->out;
    Ehr__V1__ConsentInfo *info = ehr_calloc(1, sizeof *info);
    ehr__v1__consent_info__init(info);
    info->consent_id.data = ehr_malloc(EHR_HASH_BYTES);
    info->consent_id.len = EHR_HASH_BYTES;
    memcpy(info->consent_id.data, id, EHR_HASH_BYTES);
    r->consents[r->n_consents++] = info;
    return entry_read(p->ledger, CONTRACTS_PREFIX_CONSENT, id, &ehr__v1__consent_entry__descriptor,
                      (ProtobufCMessage **)&info->consent);
}

static void list_consents(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__ListConsentsRequest *q = ehr__v1__list_consents_request__unpack(NULL, len, req);
    if (q == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a ListConsentsRequest");
        return;
    }
    Ehr__V1__ListConsentsResponse r = EHR__V1__LIST_CONSENTS_RESPONSE__INIT;
    uint8_t prefix[CONTRACTS_KEY_BYTES_MAX];
    struct page p = {.ledger = n->ledger, .prefix = prefix, .fill = fill_consent, .out = &r};
    bool by_patient = q->patient_key.len != 0;
    struct node__reader reader;
    node__answer refused = {0};
    if ((q->patient_key.len != 0) == (q->grantee_key.len != 0)) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "give exactly one of patient_key and grantee_key");
    } else if (!key_arg(call, by_patient ? q->patient_key : q->grantee_key,
                        by_patient ? "patient_key" : "grantee_key")) {
        /* failed, said */
    } else if (node__read_check(
                   n, "ListConsents", &q->base, &q->auth,
                   by_patient ? NODE_READ_CONSENTS_BY_PATIENT : NODE_READ_CONSENTS_BY_GRANTEE,
                   by_patient ? q->patient_key : q->grantee_key, &reader, &refused) != 0) {
        reply_answer(call, &refused);
    } else {
        node__reader_release(&reader); /* by its own key: nothing filtered */
        p.prefix_len = by_patient ? contracts_key(prefix, CONTRACTS_PREFIX_PATIENT_CONSENTS,
                                                  q->patient_key.data, NULL, NULL)
                                  : contracts_key(prefix, CONTRACTS_PREFIX_GRANTEE_CONSENTS,
                                                  q->grantee_key.data, NULL, NULL);
        r.consents = ehr_calloc(NODE_QUERY_LIMIT_MAX + 1, sizeof *r.consents);
        if (page_run(call, &p, q->limit, q->page_token) == 0) {
            if (p.more)
                r.next_page_token = (ProtobufCBinaryData){p.last_len, p.last};
            reply_packed(call, &r.base);
        }
        r.next_page_token = (ProtobufCBinaryData){0, NULL};
        for (size_t i = 0; i < r.n_consents; i++)
            ehr__v1__consent_info__free_unpacked(r.consents[i], NULL);
        ehr_free(r.consents);
    }
    ehr__v1__list_consents_request__free_unpacked(q, NULL);
}

/* ---- one record's anchor ---- */

/* GetRecord's answer for the record ID (its entry E, taken): the entry and
 * the anchoring transaction's envelope, into *A. */
static void record_answer(ledger *l, const uint8_t id[EHR_HASH_BYTES], Ehr__V1__RecordEntry *e,
                          node__answer *a)
{
    ledger_tx_location loc;
    uint8_t *env = NULL;
    size_t env_len = 0;
    int rc = ledger_tx_get(l, id, &loc, &env, &env_len, NULL, NULL, NULL);
    if (rc != 0) {
        /* The entry names a transaction the ledger must hold. */
        answer_err(a, rc == EHR_ENOTFOUND ? EHR_ECORRUPT : rc,
                   "cannot read the record's anchor from the ledger");
        return;
    }
    Ehr__V1__RecordInfo info = EHR__V1__RECORD_INFO__INIT;
    info.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)id};
    info.record = e;
    Ehr__V1__GetRecordResponse r = EHR__V1__GET_RECORD_RESPONSE__INIT;
    r.record = &info;
    r.anchor_envelope = (ProtobufCBinaryData){env_len, env};
    answer_packed(a, &r.base);
    ehr_free(env);
}

/*
 * GetRecord: the signature first (node__read_authenticate), then the
 * record's entry, which names its patient, then the requester's standing
 * for that patient and the per-record rule ListRecords applies to each
 * record it lists (node__reader_sees_record): one rule, two methods.
 */
static void get_record(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__GetRecordRequest *q = ehr__v1__get_record_request__unpack(NULL, len, req);
    if (q == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a GetRecordRequest");
        return;
    }
    node__answer a = {0};
    struct node__reader reader;
    Ehr__V1__RecordEntry *e = NULL;
    if (!key_ok(q->record_id, "record_id", &a) ||
        node__read_authenticate(n, "GetRecord", &q->base, &q->auth, q->record_id, &reader, &a) !=
            0) {
        /* failed, said */
    } else {
        uint8_t k[CONTRACTS_KEY_BYTES_MAX], *v = NULL;
        size_t klen = contracts_key(k, CONTRACTS_PREFIX_RECORD, q->record_id.data, NULL, NULL);
        size_t vlen = 0;
        int rc = ledger_state_get(n->ledger, k, klen, &v, &vlen, NULL);
        if (rc == 0) {
            e = ehr__v1__record_entry__unpack(NULL, vlen, v);
            ehr_free(v);
            if (e == NULL || e->patient_key.len != EHR_SCHNORR_PUBLIC_BYTES)
                rc = EHR_ECORRUPT;
        }
        if (rc == EHR_ENOTFOUND)
            answer_fail(&a, RPC_STATUS_NOT_FOUND, "no record has this id on the ledger");
        else if (rc != 0)
            answer_err(&a, rc, "cannot read the record's entry");
        else if (node__read_standing(n, "GetRecord", NODE_READ_RECORDS, e->patient_key, &reader,
                                     &a) == 0) {
            if (node__reader_sees_record(&reader, q->record_id.data, e)) {
                record_answer(n->ledger, q->record_id.data, e, &a);
            } else {
                answer_fail(&a, RPC_STATUS_PERMISSION_DENIED,
                            "this record is not yours to read: you are not its custodian, and "
                            "no current consent of the patient that you hold covers it");
                node__reads_refused(n, "GetRecord", RPC_STATUS_PERMISSION_DENIED,
                                    &q->auth->requester_key, &e->patient_key);
            }
            node__reader_release(&reader);
        }
    }
    reply_answer(call, &a);
    if (e != NULL)
        ehr__v1__record_entry__free_unpacked(e, NULL);
    ehr__v1__get_record_request__free_unpacked(q, NULL);
}

/* ---- the members ---- */

static int fill_member(struct page *p, const uint8_t *key, size_t key_len, const uint8_t *value,
                       size_t value_len)
{
    Ehr__V1__ListMembersResponse *r = p->out;
    Ehr__V1__Member *m = ehr__v1__member__unpack(NULL, value_len, value);
    if (m == NULL)
        return EHR_ECORRUPT;
    r->members[r->n_members++] = m;
    /* The key is "member/" + the node key the entry holds: the same fact
     * read on two paths. */
    if (m->node_key.len != EHR_SCHNORR_PUBLIC_BYTES || key_len != p->prefix_len + m->node_key.len ||
        memcmp(key + p->prefix_len, m->node_key.data, m->node_key.len) != 0)
        return EHR_ECORRUPT;
    return 0;
}

/* ListMembers: unsigned (node.proto says why), one page of "member/". */
static void list_members(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__ListMembersRequest *q = ehr__v1__list_members_request__unpack(NULL, len, req);
    if (q == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a ListMembersRequest");
        return;
    }
    Ehr__V1__ListMembersResponse r = EHR__V1__LIST_MEMBERS_RESPONSE__INIT;
    const char *prefix = CONTRACTS_PREFIX_MEMBER;
    struct page p = {.ledger = n->ledger,
                     .prefix = (const uint8_t *)prefix,
                     .prefix_len = strlen(prefix),
                     .fill = fill_member,
                     .out = &r};
    r.members = ehr_calloc(NODE_QUERY_LIMIT_MAX + 1, sizeof *r.members);
    node__answer a = {0};
    if (page_scan(&p, q->limit, q->page_token, &a) == 0) {
        if (p.more)
            r.next_page_token = (ProtobufCBinaryData){p.last_len, p.last};
        answer_packed(&a, &r.base);
    }
    reply_answer(call, &a);
    for (size_t i = 0; i < r.n_members; i++)
        ehr__v1__member__free_unpacked(r.members[i], NULL);
    ehr_free(r.members);
    ehr__v1__list_members_request__free_unpacked(q, NULL);
}

void node__listings_add(struct node *n)
{
    rpc_server_add_unary(n->rpc, PATH_PREFIX "GetAuditTrail", get_audit_trail, n);
    rpc_server_add_unary(n->rpc, PATH_PREFIX "ListRecords", list_records, n);
    rpc_server_add_unary(n->rpc, PATH_PREFIX "ListConsents", list_consents, n);
    rpc_server_add_unary(n->rpc, PATH_PREFIX "GetRecord", get_record, n);
    rpc_server_add_unary(n->rpc, PATH_PREFIX "ListMembers", list_members, n);
}
