/*
 * bench_load.c - the transactions `ehrctl bench` submits: a setup that
 * makes the domain valid (patients enrolled with their co-signatures,
 * records anchored, consents granted), the domain mix, and record anchors
 * alone (bench_internal.h says what each holds and what must come back).
 *
 * Who signs what, as the rules want it (contracts/README.md):
 *   - patient p is enrolled by member c(p) = p mod M, co-signed by the
 *     patient, and c(p) is the custodian of p's records;
 *   - p grants member g(p) = (p + 1) mod M a consent for lab results, for
 *     treatment, without a policy: the setup's consent;
 *   - access requests are signed by g(p)'s node key with g(p)'s X25519 key,
 *     on p's setup record: for treatment they are permitted by the setup's
 *     consent, for research they are denied (no consent is for research);
 *   - the domain mix's grants go to (p + 2) mod M, for imaging: they never
 *     cover a lab result, so they change no decision; with one member they
 *     are that member's too, and BENCH_TXS_PER_PATIENT keeps a patient's
 *     consents for one grantee under the 32 an access request examines.
 * Nothing here talks to a node or reads a clock but for the caller's expiry.
 */
#include <stdio.h>
#include <string.h>

#include "bench_internal.h"
#include "contracts.h"
#include "ledger.h"

enum {
    /* An encrypted pointer, as a blob id or URL would be. No key capsule:
     * the anchors are those of the earlier benchmark, ~280-byte envelopes. */
    POINTER_BYTES = 48,
    CONSENT_YEARS = 10,        /* the setup's consents are valid this long */
    BODY_BYTES_MAX = 1024,     /* the largest body made here (a grant) */
    MIX_PATIENT_STRIDE = 7919, /* a prime: where each slot of the mix starts */
};

static const uint64_t YEAR_MS = 365ull * 24 * 3600 * 1000;

void bench_cast_init(struct bench_cast *c, uint64_t txs, uint64_t expiry_ms)
{
    EHR_ASSERT(c->member_count > 0);
    uint64_t patients = txs / BENCH_TXS_PER_PATIENT;
    if (patients < BENCH_PATIENTS_MIN)
        patients = BENCH_PATIENTS_MIN;
    if (patients > BENCH_PATIENTS_MAX)
        patients = BENCH_PATIENTS_MAX;
    c->patient_count = (size_t)patients;
    c->patients = ehr_calloc(c->patient_count, sizeof *c->patients);
    c->records = ehr_calloc(c->patient_count, sizeof *c->records);
    for (size_t i = 0; i < c->patient_count; i++) {
        int rc = ehr_identity_generate(&c->patients[i], "bench patient");
        EHR_ASSERT(rc == 0);
    }
    c->expiry_ms = expiry_ms;
}

void bench_cast_free(struct bench_cast *c)
{
    for (size_t i = 0; c->patients != NULL && i < c->patient_count; i++)
        ehr_identity_wipe(&c->patients[i]);
    ehr_free(c->patients);
    ehr_free(c->records);
    c->patients = NULL;
    c->records = NULL;
}

static const ehr_identity *custodian(const struct bench_cast *c, size_t p)
{
    return c->members[p % c->member_count];
}

static const ehr_identity *grantee(const struct bench_cast *c, size_t p)
{
    return c->members[(p + 1) % c->member_count];
}

/*
 * Complete BODY (payload set) for C's chain, sign it with KEY and encode the
 * request into TX, of KIND. Every transaction passes the admission checks
 * (asserted: the bench's own transactions are never malformed).
 */
static void tx_make(const struct bench_cast *c, struct bench_tx *tx, Ehr__V1__TxBody *body,
                    const ehr_signing_key *key, enum bench_kind kind)
{
    uint8_t nonce[EHR_TX_NONCE_BYTES];
    ehr_random_bytes(nonce, sizeof nonce);
    body->chain_id = (char *)c->chain_id;
    body->signer = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)key->public_key};
    body->nonce = (ProtobufCBinaryData){sizeof nonce, nonce};
    body->expiry_ms = c->expiry_ms;
    uint8_t body_bytes[BODY_BYTES_MAX];
    size_t body_len = ehr__v1__tx_body__get_packed_size(body);
    EHR_ASSERT(body_len <= sizeof body_bytes);
    ehr__v1__tx_body__pack(body, body_bytes);
    uint8_t *envelope;
    size_t envelope_len;
    int rc = ledger_tx_envelope_build(body_bytes, body_len, key, &envelope, &envelope_len);
    EHR_ASSERT(rc == 0);
    ledger_tx_hash(body_bytes, body_len, tx->hash);
    Ehr__V1__SubmitTransactionRequest request = EHR__V1__SUBMIT_TRANSACTION_REQUEST__INIT;
    request.envelope = (ProtobufCBinaryData){envelope_len, envelope};
    request.wait_for_commit = true;
    size_t len = ehr__v1__submit_transaction_request__get_packed_size(&request);
    tx->request = ehr_malloc(len);
    tx->request_len = (uint32_t)ehr__v1__submit_transaction_request__pack(&request, tx->request);
    EHR_ASSERT(tx->request_len == len);
    tx->kind = (uint8_t)kind;
    tx->envelope_len = (uint32_t)envelope_len;
    ehr_free(envelope);
}

/* An anchor of a record of TYPE for patient P by its custodian, into TX. */
static void anchor_make(const struct bench_cast *c, struct bench_tx *tx, size_t p,
                        Ehr__V1__RecordType type, uint64_t serial)
{
    uint8_t pointer[POINTER_BYTES], ct_hash[EHR_HASH_BYTES];
    ehr_random_bytes(pointer, sizeof pointer);
    ehr_random_bytes(ct_hash, sizeof ct_hash);
    Ehr__V1__RecordAnchor anchor = EHR__V1__RECORD_ANCHOR__INIT;
    anchor.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES,
                                               (uint8_t *)c->patients[p].signing.public_key};
    anchor.record_type = type;
    anchor.encrypted_pointer = (ProtobufCBinaryData){sizeof pointer, pointer};
    anchor.ciphertext_hash = (ProtobufCBinaryData){sizeof ct_hash, ct_hash};
    anchor.ciphertext_bytes = 4096 + (serial % 65536) * 16;
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
    body.record_anchor = &anchor;
    tx_make(c, tx, &body, &custodian(c, p)->signing, BENCH_KIND_ANCHOR);
}

/* Patient P's grant of TYPE records for treatment to GRANTEE, into TX. */
static void grant_make(const struct bench_cast *c, struct bench_tx *tx, size_t p,
                       const ehr_identity *to, Ehr__V1__RecordType type)
{
    Ehr__V1__RecordType types[1] = {type};
    Ehr__V1__ConsentGrant grant = EHR__V1__CONSENT_GRANT__INIT;
    grant.grantee_key =
        (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)to->signing.public_key};
    grant.n_record_types = 1;
    grant.record_types = types;
    grant.purpose = EHR__V1__PURPOSE__PURPOSE_TREATMENT;
    grant.valid_until_ms = c->expiry_ms + CONSENT_YEARS * YEAR_MS;
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_GRANT;
    body.consent_grant = &grant;
    tx_make(c, tx, &body, &c->patients[p].signing, BENCH_KIND_GRANT);
}

/* The grantee of P's setup consent asks for P's setup record: for treatment
 * (KIND permit) or for research (KIND deny). */
static void access_make(const struct bench_cast *c, struct bench_tx *tx, size_t p,
                        enum bench_kind kind)
{
    EHR_ASSERT(kind == BENCH_KIND_PERMIT || kind == BENCH_KIND_DENY);
    const ehr_identity *who = grantee(c, p);
    Ehr__V1__AccessRequest access = EHR__V1__ACCESS_REQUEST__INIT;
    access.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)c->records[p]};
    access.purpose = kind == BENCH_KIND_PERMIT ? EHR__V1__PURPOSE__PURPOSE_TREATMENT
                                               : EHR__V1__PURPOSE__PURPOSE_RESEARCH;
    access.requester_kx_key =
        (ProtobufCBinaryData){EHR_KX_PUBLIC_BYTES, (uint8_t *)who->kx.public_key};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_ACCESS_REQUEST;
    body.access_request = &access;
    tx_make(c, tx, &body, &who->signing, kind);
}

void bench_load_enrollments(struct bench_cast *c, struct bench_tx *txs)
{
    for (size_t p = 0; p < c->patient_count; p++) {
        const ehr_identity *patient = &c->patients[p], *member = custodian(c, p);
        uint8_t msg[EHR_HASH_BYTES], sig[EHR_SCHNORR_SIG_BYTES];
        contracts_enroll_message(c->chain_id, member->signing.public_key,
                                 patient->signing.public_key, patient->kx.public_key, msg);
        int rc = ehr_schnorr_sign(&patient->signing, msg, sig);
        EHR_ASSERT(rc == 0);
        Ehr__V1__PatientEnroll enroll = EHR__V1__PATIENT_ENROLL__INIT;
        enroll.patient_key =
            (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)patient->signing.public_key};
        enroll.patient_kx_key =
            (ProtobufCBinaryData){EHR_KX_PUBLIC_BYTES, (uint8_t *)patient->kx.public_key};
        enroll.patient_signature = (ProtobufCBinaryData){sizeof sig, sig};
        Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
        body.payload_case = EHR__V1__TX_BODY__PAYLOAD_PATIENT_ENROLL;
        body.patient_enroll = &enroll;
        tx_make(c, &txs[p], &body, &member->signing, BENCH_KIND_ENROLL);
    }
}

void bench_load_setup(struct bench_cast *c, struct bench_tx *txs)
{
    for (size_t p = 0; p < c->patient_count; p++) {
        anchor_make(c, &txs[2 * p], p, EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT, p);
        memcpy(c->records[p], txs[2 * p].hash, EHR_HASH_BYTES);
        grant_make(c, &txs[2 * p + 1], p, grantee(c, p),
                   EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT);
    }
}

void bench_load_domain(const struct bench_cast *c, struct bench_tx *txs, size_t first, size_t count)
{
    for (size_t i = first; i < first + count; i++) {
        /* Each slot of the mix walks all the patients in turn, so every
         * patient gets its share of each kind (no patient collects the
         * grants). */
        size_t slot = i % BENCH_MIX_TOTAL;
        size_t p = (size_t)((i / BENCH_MIX_TOTAL + (uint64_t)slot * MIX_PATIENT_STRIDE) %
                            c->patient_count);
        if (slot < BENCH_MIX_ANCHORS)
            anchor_make(c, &txs[i], p, EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT, i);
        else if (slot < BENCH_MIX_ANCHORS + BENCH_MIX_GRANTS)
            grant_make(c, &txs[i], p, c->members[(p + 2) % c->member_count],
                       EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING);
        else if (slot < BENCH_MIX_ANCHORS + BENCH_MIX_GRANTS + BENCH_MIX_PERMITS)
            access_make(c, &txs[i], p, BENCH_KIND_PERMIT);
        else
            access_make(c, &txs[i], p, BENCH_KIND_DENY);
    }
}

void bench_load_anchors(const struct bench_cast *c, struct bench_tx *txs, size_t first,
                        size_t count)
{
    for (size_t i = first; i < first + count; i++)
        anchor_make(c, &txs[i], i % c->patient_count, EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT,
                    i);
}

void bench_txs_free(struct bench_tx *txs, size_t count)
{
    for (size_t i = 0; txs != NULL && i < count; i++)
        ehr_free(txs[i].request);
    ehr_free(txs);
}
