/*
 * audit_workload.c - patients' audit trails on a real ledger, written as
 * the consent contract writes them (audit_workload.h). Keep the writes in
 * step with contracts/rules.c: put_audit is its audit(), event_writes the
 * writes of apply_enroll, apply_anchor, apply_grant, apply_revoke and
 * apply_access.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit_workload.h"
#include "ledger_internal.h"
#include "ledger_testutil.h"

enum {
    TX_PAD_BYTES = 8,
    /* State writes of one transaction: a grant makes four (the most). */
    TX_WRITES_MAX = 4,
};
_Static_assert(AUDIT_WORKLOAD_MEMBER_COUNT <= 64, "tu_genesis takes at most 64 members");
_Static_assert(TX_WRITES_MAX *EHR_BLOCK_TX_COUNT_MAX + AUDIT_WORKLOAD_PRACTITIONER_COUNT <=
                   EHR_BLOCK_STATE_WRITES_MAX,
               "a block's writes stay within the ledger's bound");

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: the same seed, the same workload. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    EHR_ASSERT(n > 0);
    return rng_next(s) % n;
}

static double rng_unit(uint64_t *s) /* in (0, 1) */
{
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

static void rng_bytes(uint64_t *s, uint8_t *out, size_t len)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = rng_next(s);
        memcpy(out + i, &v, len - i < 8 ? len - i : 8);
    }
}

static ProtobufCBinaryData bin(const uint8_t *p, size_t len)
{
    return (ProtobufCBinaryData){len, (uint8_t *)p};
}

void audit_workload_init(audit_workload *w, const audit_workload_options *options)
{
    EHR_ASSERT(options->events >= 1);
    EHR_ASSERT(options->events <= AUDIT_WORKLOAD_EVENTS_MAX);
    EHR_ASSERT(options->patients >= 1);
    EHR_ASSERT(options->patients <= options->events);
    EHR_ASSERT(options->block_txs >= 1);
    EHR_ASSERT(options->block_txs <= EHR_BLOCK_TX_COUNT_MAX);
    memset(w, 0, sizeof *w);
    w->options = *options;
    w->rng = options->seed;
    uint64_t n = options->patients, e = options->events;
    /* Log-normal weights; each patient gets 1 plus its share of the rest,
     * and the rounding remainder goes to random patients. */
    w->patients = ehr_calloc(n, sizeof *w->patients);
    double *weight = ehr_malloc(n * sizeof *weight), sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        double z = sqrt(-2.0 * log(rng_unit(&w->rng))) * cos(6.283185307179586 * rng_unit(&w->rng));
        weight[i] = exp(0.7 * z);
        sum += weight[i];
    }
    uint64_t given = 0;
    for (uint64_t i = 0; i < n; i++) {
        w->patients[i].events = 1 + (uint32_t)((double)(e - n) * weight[i] / sum);
        given += w->patients[i].events;
        rng_bytes(&w->rng, w->patients[i].key, EHR_SCHNORR_PUBLIC_BYTES);
    }
    ehr_free(weight);
    EHR_ASSERT(given <= e);
    for (; given < e; given++)
        w->patients[rng_below(&w->rng, n)].events++;
    w->order = ehr_malloc(e * sizeof *w->order);
    uint64_t at = 0;
    for (uint64_t i = 0; i < n; i++) {
        for (uint32_t j = 0; j < w->patients[i].events; j++)
            w->order[at++] = (uint32_t)i;
        if (w->patients[i].events > w->trail_max)
            w->trail_max = w->patients[i].events;
    }
    EHR_ASSERT(at == e);
    for (uint64_t i = e - 1; i > 0; i--) {
        uint64_t j = rng_below(&w->rng, i + 1);
        uint32_t t = w->order[i];
        w->order[i] = w->order[j];
        w->order[j] = t;
    }
    w->places = ehr_malloc(e * sizeof *w->places);
    for (uint32_t i = 0; i < AUDIT_WORKLOAD_MEMBER_COUNT; i++) {
        tu_key(&w->members[i], 1 + i);
        memcpy(w->parties[i].key, w->members[i].public_key, EHR_SCHNORR_PUBLIC_BYTES);
        w->parties[i].member = i;
    }
    for (uint32_t i = AUDIT_WORKLOAD_MEMBER_COUNT; i < AUDIT_WORKLOAD_PARTY_COUNT; i++) {
        rng_bytes(&w->rng, w->parties[i].key, EHR_SCHNORR_PUBLIC_BYTES);
        w->parties[i].member = (uint32_t)rng_below(&w->rng, AUDIT_WORKLOAD_MEMBER_COUNT);
    }
    tu_key(&w->signer, 1000);
}

void audit_workload_free(audit_workload *w)
{
    ehr_free(w->patients);
    ehr_free(w->order);
    ehr_free(w->places);
    memset(w, 0, sizeof *w);
}

void audit_workload_genesis(const audit_workload *w, uint8_t **out, size_t *out_len)
{
    tu_genesis(w->members, AUDIT_WORKLOAD_MEMBER_COUNT, out, out_len);
}

size_t audit_workload_key(const audit_workload *w, const audit_place *e, uint8_t *key)
{
    EHR_ASSERT(e->patient < w->options.patients);
    uint8_t suffix[12];
    contracts_be64(suffix, e->height);
    contracts_be32(suffix + 8, e->position);
    size_t n = contracts_key(key, CONTRACTS_PREFIX_AUDIT, w->patients[e->patient].key, NULL, NULL);
    return contracts_key_append(key, n, suffix, sizeof suffix);
}

/* ---- one block's state writes, built as the rules build them ---- */

struct block_writes {
    ledger_state_write *writes;
    uint8_t (*keys)[CONTRACTS_KEY_BYTES_MAX];
    size_t count, cap;
    size_t bytes;
};

static void put_bytes(struct block_writes *bw, const uint8_t *key, size_t key_len,
                      const uint8_t *value, size_t value_len)
{
    EHR_ASSERT(bw->count < bw->cap);
    EHR_ASSERT(key_len <= CONTRACTS_KEY_BYTES_MAX);
    EHR_ASSERT(value_len <= EHR_STATE_VALUE_BYTES_MAX);
    uint8_t *v = ehr_malloc(value_len ? value_len : 1);
    if (value_len > 0)
        memcpy(v, value, value_len);
    memcpy(bw->keys[bw->count], key, key_len);
    bw->writes[bw->count] = (ledger_state_write){
        .key = bw->keys[bw->count], .key_len = key_len, .value = v, .value_len = value_len};
    bw->count++;
    bw->bytes += key_len + value_len;
}

/* As rules.c's put_message: the message packed, under KEY. */
static void put_message(struct block_writes *bw, const uint8_t *key, size_t key_len,
                        const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = ehr_malloc(len ? len : 1);
    protobuf_c_message_pack(msg, buf);
    put_bytes(bw, key, key_len, buf, len);
    ehr_free(buf);
}

/* As rules.c's audit(): "audit/" + patient + height + position, and
 * "audit-emergency/" + the same suffix for an emergency access. */
static void put_audit(struct block_writes *bw, const uint8_t *patient, Ehr__V1__AuditEvent *ev,
                      Ehr__V1__ChainPlace *place)
{
    ev->place = place;
    uint8_t suffix[12], k[CONTRACTS_KEY_BYTES_MAX];
    contracts_be64(suffix, place->height);
    contracts_be32(suffix + 8, place->position);
    size_t n = contracts_key(k, CONTRACTS_PREFIX_AUDIT, patient, NULL, NULL);
    n = contracts_key_append(k, n, suffix, sizeof suffix);
    put_message(bw, k, n, &ev->base);
    if (ev->emergency) {
        n = contracts_key(k, CONTRACTS_PREFIX_AUDIT_EMERGENCY, patient, NULL, NULL);
        n = contracts_key_append(k, n, suffix, sizeof suffix);
        put_message(bw, k, n, &ev->base);
    }
}

/* The consent entry of C (revoked at REVOKED unless NULL), as apply_grant
 * and apply_revoke write it. */
static void put_consent(const audit_workload *w, struct block_writes *bw, const audit_patient *p,
                        const audit_consent *c, Ehr__V1__ChainPlace *revoked)
{
    static const uint8_t policy[51] = {0x45, 0x48, 0x52}; /* the example policy's size */
    Ehr__V1__ChainPlace granted = EHR__V1__CHAIN_PLACE__INIT;
    granted.height = c->height;
    granted.position = c->position;
    granted.tx_hash = bin(c->id, EHR_HASH_BYTES);
    granted.time_ms = c->time_ms;
    Ehr__V1__RecordType types[1] = {c->record_type};
    Ehr__V1__ConsentEntry e = EHR__V1__CONSENT_ENTRY__INIT;
    e.patient_key = bin(p->key, EHR_SCHNORR_PUBLIC_BYTES);
    e.grantee_key = bin(w->parties[c->grantee].key, EHR_SCHNORR_PUBLIC_BYTES);
    e.n_record_types = 1;
    e.record_types = types;
    e.purpose = c->purpose;
    e.valid_from_ms = c->time_ms;
    e.valid_until_ms = c->time_ms + 365ull * 86400 * 1000;
    if (c->policy)
        e.policy_program = bin(policy, sizeof policy);
    e.granted = &granted;
    e.revoked = revoked != NULL;
    e.revoked_at = revoked;
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_CONSENT, c->id, NULL, NULL);
    put_message(bw, k, n, &e.base);
}

static const char *const deny_reasons[] = {
    "no consent of the patient covers this request",
    "the consent was revoked",
    "the consent's period does not cover the block time",
    "the consent is for another purpose",
    "the consent does not cover this record",
};

static const char *const emergency_reasons[] = {
    "unconscious on arrival, allergies unknown",
    "cardiac arrest in the emergency department",
    "suspected overdose, patient unresponsive",
};

static Ehr__V1__Purpose purpose_pick(uint64_t *rng)
{
    uint64_t r = rng_below(rng, 100);
    return r < 70   ? EHR__V1__PURPOSE__PURPOSE_TREATMENT
           : r < 85 ? EHR__V1__PURPOSE__PURPOSE_PAYMENT
           : r < 95 ? EHR__V1__PURPOSE__PURPOSE_OPERATIONS
                    : EHR__V1__PURPOSE__PURPOSE_RESEARCH;
}

/* A practitioner (PRACTITIONER_PERCENT of the time) or a member. */
static uint32_t party_pick(uint64_t *rng, unsigned practitioner_percent)
{
    if (rng_below(rng, 100) < practitioner_percent)
        return AUDIT_WORKLOAD_MEMBER_COUNT +
               (uint32_t)rng_below(rng, AUDIT_WORKLOAD_PRACTITIONER_COUNT);
    return (uint32_t)rng_below(rng, AUDIT_WORKLOAD_MEMBER_COUNT);
}

/* A patient's first event is its enrolment; the others: 25 % anchors, 10 %
 * grants, 4 % revokes, 1 % emergency accesses, 60 % accesses (85 % of them
 * permitted). An access needs a record (else it is an anchor), a revoke a
 * live consent not granted in this block (else it is a grant). */
enum { ANCHOR_BELOW = 25, GRANT_BELOW = 35, REVOKE_BELOW = 39, EMERGENCY_AT = 39 };

/* The writes of one event of patient PI by the transaction at PLACE, and
 * its result (*RES: OK, with the decision for an access). */
static void event_writes(audit_workload *w, struct block_writes *bw, uint32_t pi,
                         Ehr__V1__ChainPlace *place, struct contracts_tx_result *res)
{
    *res = (struct contracts_tx_result){.code = EHR__V1__TX_RESULT_CODE__TX_RESULT_OK};
    audit_patient *p = &w->patients[pi];
    const uint8_t *tx_hash = place->tx_hash.data;
    Ehr__V1__AuditEvent ev = EHR__V1__AUDIT_EVENT__INIT;
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n;
    uint64_t r = rng_below(&w->rng, 100);
    bool revocable = p->consent.live && p->consent.height != place->height;
    if (!p->enrolled) {
        const audit_party *by = &w->parties[rng_below(&w->rng, AUDIT_WORKLOAD_MEMBER_COUNT)];
        uint8_t kx[EHR_KX_PUBLIC_BYTES];
        rng_bytes(&w->rng, kx, sizeof kx);
        Ehr__V1__PatientEntry e = EHR__V1__PATIENT_ENTRY__INIT;
        e.kx_key = bin(kx, sizeof kx);
        e.enrolled_by = bin(by->key, EHR_SCHNORR_PUBLIC_BYTES);
        e.enrolled = place;
        n = contracts_key(k, CONTRACTS_PREFIX_PATIENT, p->key, NULL, NULL);
        put_message(bw, k, n, &e.base);
        ev.kind = EHR__V1__AUDIT_KIND__AUDIT_KIND_ENROLL;
        ev.actor = ev.institution = bin(by->key, EHR_SCHNORR_PUBLIC_BYTES);
        p->enrolled = true;
    } else if (r < ANCHOR_BELOW || (r >= REVOKE_BELOW && !p->has_record)) {
        const audit_party *custodian = &w->parties[rng_below(&w->rng, AUDIT_WORKLOAD_MEMBER_COUNT)];
        Ehr__V1__RecordType type = (Ehr__V1__RecordType)(1 + rng_below(&w->rng, 9));
        Ehr__V1__RecordEntry e = EHR__V1__RECORD_ENTRY__INIT;
        e.patient_key = bin(p->key, EHR_SCHNORR_PUBLIC_BYTES);
        e.custodian = bin(custodian->key, EHR_SCHNORR_PUBLIC_BYTES);
        e.record_type = type;
        e.anchored = place;
        n = contracts_key(k, CONTRACTS_PREFIX_RECORD, tx_hash, NULL, NULL);
        put_message(bw, k, n, &e.base);
        uint8_t suffix[4 + 8 + 4];
        contracts_be32(suffix, (uint32_t)type);
        contracts_be64(suffix + 4, place->height);
        contracts_be32(suffix + 12, place->position);
        n = contracts_key(k, CONTRACTS_PREFIX_PATIENT_RECORDS, p->key, NULL, NULL);
        n = contracts_key_append(k, n, suffix, sizeof suffix);
        put_bytes(bw, k, n, tx_hash, EHR_HASH_BYTES);
        ev.kind = EHR__V1__AUDIT_KIND__AUDIT_KIND_ANCHOR;
        ev.actor = ev.institution = bin(custodian->key, EHR_SCHNORR_PUBLIC_BYTES);
        ev.record_id = bin(tx_hash, EHR_HASH_BYTES);
        p->has_record = true;
        memcpy(p->record_id, tx_hash, EHR_HASH_BYTES);
    } else if (r < GRANT_BELOW || (r < REVOKE_BELOW && !revocable)) {
        audit_consent *c = &p->consent;
        *c = (audit_consent){.live = true,
                             .grantee = party_pick(&w->rng, 50),
                             .record_type = (Ehr__V1__RecordType)(1 + rng_below(&w->rng, 9)),
                             .purpose = purpose_pick(&w->rng),
                             .policy = rng_below(&w->rng, 5) == 0,
                             .height = place->height,
                             .time_ms = place->time_ms,
                             .position = place->position};
        memcpy(c->id, tx_hash, EHR_HASH_BYTES);
        put_consent(w, bw, p, c, NULL);
        const uint8_t *grantee = w->parties[c->grantee].key;
        n = contracts_key(k, CONTRACTS_PREFIX_PATIENT_CONSENTS, p->key, grantee, c->id);
        put_bytes(bw, k, n, NULL, 0);
        n = contracts_key(k, CONTRACTS_PREFIX_GRANTEE_CONSENTS, grantee, c->id, NULL);
        put_bytes(bw, k, n, p->key, EHR_SCHNORR_PUBLIC_BYTES);
        ev.kind = EHR__V1__AUDIT_KIND__AUDIT_KIND_GRANT;
        ev.actor = bin(p->key, EHR_SCHNORR_PUBLIC_BYTES);
        ev.consent_id = bin(c->id, EHR_HASH_BYTES);
        ev.purpose = c->purpose;
    } else if (r < REVOKE_BELOW) {
        audit_consent *c = &p->consent;
        put_consent(w, bw, p, c, place);
        c->live = false;
        ev.kind = EHR__V1__AUDIT_KIND__AUDIT_KIND_REVOKE;
        ev.actor = bin(p->key, EHR_SCHNORR_PUBLIC_BYTES);
        ev.consent_id = bin(c->id, EHR_HASH_BYTES);
        ev.purpose = c->purpose;
    } else {
        /* As apply_access: a permit names the consent that permitted (the
         * requester holds it and asks for its purpose), an emergency
         * access names none; the result carries the decision and the
         * reason. */
        bool emergency = r == EMERGENCY_AT;
        bool permit = emergency || (p->consent.live && rng_below(&w->rng, 100) < 85);
        const audit_party *actor = permit && !emergency ? &w->parties[p->consent.grantee]
                                                        : &w->parties[party_pick(&w->rng, 70)];
        ev.kind = emergency ? EHR__V1__AUDIT_KIND__AUDIT_KIND_EMERGENCY
                            : EHR__V1__AUDIT_KIND__AUDIT_KIND_ACCESS;
        ev.actor = bin(actor->key, EHR_SCHNORR_PUBLIC_BYTES);
        ev.institution = bin(w->parties[actor->member].key, EHR_SCHNORR_PUBLIC_BYTES);
        ev.record_id = bin(p->record_id, EHR_HASH_BYTES);
        ev.purpose = emergency ? EHR__V1__PURPOSE__PURPOSE_EMERGENCY
                     : permit  ? p->consent.purpose
                               : purpose_pick(&w->rng);
        ev.decision = permit ? EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT
                             : EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY;
        res->decision = ev.decision;
        if (permit && !emergency) {
            ev.consent_id = bin(p->consent.id, EHR_HASH_BYTES);
            res->has_consent = true;
            memcpy(res->consent_id, p->consent.id, EHR_HASH_BYTES);
        }
        /* The event's reason: none for a permit, why for a deny, the
         * requester's own words for an emergency access (the result's:
         * "emergency access: " and those words). */
        if (emergency) {
            ev.reason = (char *)emergency_reasons[rng_below(&w->rng, 3)];
            snprintf(res->reason, sizeof res->reason, "emergency access: %s", ev.reason);
        } else if (!permit) {
            /* Without a live consent: none covers the request. */
            uint64_t why = p->consent.live ? rng_below(&w->rng, EHR_ARRAY_COUNT(deny_reasons)) : 0;
            ev.reason = (char *)deny_reasons[why];
            snprintf(res->reason, sizeof res->reason, "%s", ev.reason);
        }
        ev.emergency = emergency;
    }
    put_audit(bw, p->key, &ev, place);
    w->kind_count[ev.kind]++;
}

/* The practitioners' registrations ("practitioner/" + key), in block 1. */
static void practitioners_put(const audit_workload *w, struct block_writes *bw,
                              Ehr__V1__ChainPlace *place)
{
    for (uint32_t i = AUDIT_WORKLOAD_MEMBER_COUNT; i < AUDIT_WORKLOAD_PARTY_COUNT; i++) {
        Ehr__V1__PractitionerEntry e = EHR__V1__PRACTITIONER_ENTRY__INIT;
        e.member_key = bin(w->parties[w->parties[i].member].key, EHR_SCHNORR_PUBLIC_BYTES);
        e.registered = place;
        uint8_t k[CONTRACTS_KEY_BYTES_MAX];
        size_t n = contracts_key(k, CONTRACTS_PREFIX_PRACTITIONER, w->parties[i].key, NULL, NULL);
        put_message(bw, k, n, &e.base);
    }
}

static int write_cmp(const void *x, const void *y)
{
    const ledger_state_write *a = x, *b = y;
    return ledger__key_cmp(a->key, a->key_len, b->key, b->key_len);
}

void audit_workload_append(audit_workload *w, ledger *l, uint64_t from, uint64_t to,
                           uint64_t overlay_bytes_max)
{
    EHR_ASSERT(from == w->place_count); /* in order, once */
    EHR_ASSERT(to <= w->options.events);
    struct block_writes bw = {.cap = w->options.block_txs * TX_WRITES_MAX +
                                     AUDIT_WORKLOAD_PRACTITIONER_COUNT};
    bw.writes = ehr_malloc(bw.cap * sizeof *bw.writes);
    bw.keys = ehr_malloc(bw.cap * sizeof *bw.keys);
    /* Each transaction's result, encoded as the node stores it. */
    ledger_bytes *results = ehr_malloc(w->options.block_txs * sizeof *results);
    uint8_t(*result_bytes)[CONTRACTS_RESULT_BYTES_MAX] =
        ehr_malloc(w->options.block_txs * sizeof *result_bytes);
    uint64_t overlay_bytes = 0, overlay_blocks = 0;
    for (uint64_t at = from; at < to;) {
        size_t count = (size_t)(to - at < w->options.block_txs ? to - at : w->options.block_txs);
        ledger_tip tip;
        if (ledger_tip_get(l, &tip, NULL) != 0)
            ehr_panic("audit_workload: no tip");
        double t0 = now_s();
        tu_batch batch;
        tu_batch_make(&batch, &w->signer, count, TX_PAD_BYTES);
        uint8_t *block;
        size_t len;
        tu_block_next(&tip, &batch, &w->members[0], &block, &len);
        w->sign_s += now_s() - t0;
        uint64_t height = tip.height + 1;
        bw.count = 0;
        bw.bytes = 0;
        Ehr__V1__ChainPlace place = EHR__V1__CHAIN_PLACE__INIT;
        place.height = height;
        place.time_ms = tip.time_ms + 1000; /* as tu_block_next */
        if (height == 1) {
            place.tx_hash = bin(batch.hashes[0], EHR_HASH_BYTES);
            practitioners_put(w, &bw, &place);
        }
        for (size_t i = 0; i < count; i++) {
            place.position = (uint32_t)i;
            place.tx_hash = bin(batch.hashes[i], EHR_HASH_BYTES);
            uint32_t pi = w->order[at + i];
            struct contracts_tx_result res;
            event_writes(w, &bw, pi, &place, &res);
            results[i] = (ledger_bytes){.data = result_bytes[i],
                                        .len = contracts_tx_result_encode(&res, result_bytes[i])};
            w->places[w->place_count++] =
                (audit_place){.patient = pi, .height = (uint32_t)height, .position = (uint32_t)i};
        }
        /* As contracts_block_writes hands them over: one per key, sorted. */
        qsort(bw.writes, bw.count, sizeof *bw.writes, write_cmp);
        for (size_t i = 1; i < bw.count; i++)
            EHR_ASSERT(write_cmp(&bw.writes[i - 1], &bw.writes[i]) < 0);
        EHR_ASSERT(bw.count <= EHR_BLOCK_STATE_WRITES_MAX);
        EHR_ASSERT(bw.bytes <= EHR_BLOCK_STATE_BYTES_MAX);
        if (overlay_bytes_max > 0) {
            ledger__write_log log = {.writes = bw.writes,
                                     .write_count = bw.count,
                                     .results = results,
                                     .result_count = count};
            overlay_bytes += ledger__ov_block_bytes(&log);
            overlay_blocks++;
            if (overlay_bytes > overlay_bytes_max || overlay_blocks > LEDGER_OVERLAY_BLOCKS_MAX)
                ehr_panic("audit_workload: the overlay would fill (%llu blocks, %llu bytes)",
                          (unsigned long long)overlay_blocks, (unsigned long long)overlay_bytes);
        }
        ledger_append req = {.block = block,
                             .block_len = len,
                             .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])batch.hashes,
                             .writes = bw.writes,
                             .write_count = bw.count,
                             .results = results,
                             .result_count = count,
                             .applied_index = height};
        double t1 = now_s();
        ehr_diag why;
        if (ledger_append_block(l, &req, &why) != 0)
            ehr_panic("audit_workload: append of block %llu failed: %s", (unsigned long long)height,
                      why.msg);
        w->append_s += now_s() - t1;
        for (size_t i = 0; i < bw.count; i++)
            ehr_free((void *)bw.writes[i].value);
        ehr_free(block);
        tu_batch_free(&batch);
        at += count;
    }
    ehr_free(results);
    ehr_free(result_bytes);
    ehr_free(bw.writes);
    ehr_free(bw.keys);
}
