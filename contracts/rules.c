/*
 * rules.c - the state transition function: one committed transaction,
 * applied to the world state through a contracts_block, gives a result and
 * state writes (records, consents, audit events, indexes). The same bytes
 * in, the same result and writes out, on every node: no clock but the
 * block's, no hash or allocation order in anything written.
 *
 * Not here: the write set and its undo (block.c), the consent VM (vm.c),
 * the policy language (policy.c), storage (the caller's state view).
 *
 * Every transaction runs in its own write-set transaction: a refused one
 * changes nothing (its result is still recorded by the caller). The checks,
 * in order: the envelope and body (framing, canonical form, chain, expiry at
 * block time: MALFORMED), the signature (BAD_SIGNATURE), then the payload's
 * rules (contracts/README.md, "The rules"): who may sign it
 * (NOT_AUTHORIZED), what it names exists (NOT_FOUND), it was not done
 * already (CONFLICT), its own rules hold (REFUSED). An access request is
 * never refused for its decision: permit and deny are both results (OK with
 * a decision) and audit events.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "contracts_internal.h"
#include "ehr/v1/state.pb-c.h"
#include "pre.h"
#include "vm.h"

/* ---- results ---- */

static int refuse(struct contracts_tx_result *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill R with CODE and a reason; returns 0 (a refusal is a result). */
static int refuse(struct contracts_tx_result *r, int code, const char *fmt, ...)
{
    EHR_ASSERT(code != EHR__V1__TX_RESULT_CODE__TX_RESULT_OK);
    r->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    contracts_text_cut(r->reason);
    return 0;
}

#define NOT_AUTHORIZED EHR__V1__TX_RESULT_CODE__TX_RESULT_NOT_AUTHORIZED
#define NOT_FOUND EHR__V1__TX_RESULT_CODE__TX_RESULT_NOT_FOUND
#define CONFLICT EHR__V1__TX_RESULT_CODE__TX_RESULT_CONFLICT
#define REFUSED EHR__V1__TX_RESULT_CODE__TX_RESULT_REFUSED
#define MALFORMED EHR__V1__TX_RESULT_CODE__TX_RESULT_MALFORMED

/* ---- one transaction's context ---- */

struct apply {
    contracts_block *b;
    const struct contracts_block_ctx *ctx;
    const struct contracts_tx *tx;
    const Ehr__V1__TxBody *body;
    struct contracts_tx_result *r;
    uint8_t *value; /* scratch for reads: EHR_STATE_VALUE_BYTES_MAX, the block's */
};

/* Is K a valid 32-byte public key? *PARSED gets it (parsing is the costly
 * part: a square root; hand it on rather than parse again). */
static bool key_ok(ProtobufCBinaryData k, ehr_public_key *parsed)
{
    return k.len == EHR_SCHNORR_PUBLIC_BYTES && ehr_public_key_parse(parsed, k.data) == 0;
}

static void place_fill(const struct apply *a, Ehr__V1__ChainPlace *p)
{
    ehr__v1__chain_place__init(p);
    p->height = a->ctx->height;
    p->position = a->tx->position;
    p->tx_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)a->tx->hash};
    p->time_ms = a->ctx->time_ms;
}

/* Read KEY and unpack it as DESC's message into *OUT (free with
 * protobuf_c_message_free_unpacked). Returns 0, EHR_ENOTFOUND, a state error,
 * or EHR_ECORRUPT for a value that does not decode (the state was written by
 * these rules only: a node holding that must stop). */
static int get_message(struct apply *a, const uint8_t *key, size_t key_len,
                       const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    size_t len = 0;
    int rc = contracts_block_get(a->b, key, key_len, a->value, &len);
    if (rc != 0)
        return rc;
    *out = protobuf_c_message_unpack(desc, NULL, len, a->value);
    return *out != NULL ? 0 : EHR_ECORRUPT;
}

/* Pack MSG and write it under KEY. Returns 0 or EHR_ETOOBIG (the block's
 * write bound: the transaction is refused) or another error. */
static int put_message(struct apply *a, const uint8_t *key, size_t key_len,
                       const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > EHR_STATE_VALUE_BYTES_MAX)
        return EHR_ETOOBIG;
    uint8_t *buf = ehr_malloc(len > 0 ? len : 1);
    protobuf_c_message_pack(msg, buf);
    int rc = contracts_block_put(a->b, key, key_len, buf, len);
    ehr_free(buf);
    return rc;
}

/* ---- who the signer is ---- */

struct actor {
    bool member;       /* the signer is a member's node key */
    bool practitioner; /* the signer is a practitioner a member registered */
    uint8_t institution[EHR_SCHNORR_PUBLIC_BYTES]; /* the member it is or acts for */
    Ehr__V1__MemberRole role;                      /* that member's role */
};

/* Is KEY a current member? *ROLE (may be NULL) gets its role. */
static int member_get(struct apply *a, const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES],
                      Ehr__V1__MemberRole *role, bool *found)
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_MEMBER, key, NULL, NULL);
    Ehr__V1__Member *m = NULL;
    int rc = get_message(a, k, n, &ehr__v1__member__descriptor, (ProtobufCMessage **)&m);
    *found = rc == 0;
    if (rc == EHR_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (role != NULL)
        *role = m->role;
    ehr__v1__member__free_unpacked(m, NULL);
    return 0;
}

/* Who signed: a member, a practitioner of a current member, or neither. */
static int actor_get(struct apply *a, const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES],
                     struct actor *out)
{
    memset(out, 0, sizeof *out);
    bool found;
    int rc = member_get(a, key, &out->role, &found);
    if (rc != 0 || found) {
        out->member = found;
        memcpy(out->institution, key, EHR_SCHNORR_PUBLIC_BYTES);
        return rc;
    }
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_PRACTITIONER, key, NULL, NULL);
    Ehr__V1__PractitionerEntry *p = NULL;
    rc = get_message(a, k, n, &ehr__v1__practitioner_entry__descriptor, (ProtobufCMessage **)&p);
    if (rc == EHR_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    EHR_ASSERT(p->member_key.len == EHR_SCHNORR_PUBLIC_BYTES); /* written by these rules */
    memcpy(out->institution, p->member_key.data, EHR_SCHNORR_PUBLIC_BYTES);
    ehr__v1__practitioner_entry__free_unpacked(p, NULL);
    /* A practitioner of a member that was since removed acts for no one. */
    rc = member_get(a, out->institution, &out->role, &found);
    out->practitioner = rc == 0 && found;
    return rc;
}

/* ---- the patient's audit trail ---- */

static int audit(struct apply *a, const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES],
                 Ehr__V1__AuditEvent *ev)
{
    Ehr__V1__ChainPlace place;
    place_fill(a, &place);
    ev->place = &place;
    uint8_t suffix[12];
    contracts_be64(suffix, a->ctx->height);
    contracts_be32(suffix + 8, a->tx->position);
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_AUDIT, patient, NULL, NULL);
    n = contracts_key_append(k, n, suffix, sizeof suffix);
    int rc = put_message(a, k, n, &ev->base);
    if (rc == 0 && ev->emergency) {
        n = contracts_key(k, CONTRACTS_PREFIX_AUDIT_EMERGENCY, patient, NULL, NULL);
        n = contracts_key_append(k, n, suffix, sizeof suffix);
        rc = put_message(a, k, n, &ev->base);
    }
    ev->place = NULL;
    return rc;
}

/* ---- patients and practitioners ---- */

static int apply_enroll(struct apply *a)
{
    const Ehr__V1__PatientEnroll *p = a->body->patient_enroll;
    struct actor who;
    int rc = actor_get(a, a->body->signer.data, &who);
    if (rc != 0)
        return rc;
    if (!who.member)
        return refuse(a->r, NOT_AUTHORIZED, "only a member enrolls a patient");
    ehr_public_key patient;
    if (!key_ok(p->patient_key, &patient))
        return refuse(a->r, MALFORMED, "patient_key is not a valid 32-byte public key");
    if (p->patient_kx_key.len != EHR_KX_PUBLIC_BYTES ||
        ehr_kx_public_key_check(p->patient_kx_key.data) != 0)
        return refuse(a->r, MALFORMED, "patient_kx_key is not a usable %d-byte X25519 key",
                      EHR_KX_PUBLIC_BYTES);
    if (p->patient_signature.len != EHR_SCHNORR_SIG_BYTES)
        return refuse(a->r, MALFORMED, "patient_signature is not %d bytes", EHR_SCHNORR_SIG_BYTES);
    uint8_t msg[EHR_HASH_BYTES];
    contracts_enroll_message(a->ctx->chain_id, a->body->signer.data, p->patient_key.data,
                             p->patient_kx_key.data, msg);
    if (ehr_schnorr_verify(&patient, msg, p->patient_signature.data) != 0)
        return refuse(a->r, REFUSED,
                      "the patient's signature on the enrolment does not verify: no one is "
                      "enrolled without their key");
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_PATIENT, p->patient_key.data, NULL, NULL);
    size_t len;
    rc = contracts_block_get(a->b, k, n, a->value, &len);
    if (rc == 0)
        return refuse(a->r, CONFLICT, "the patient is enrolled already");
    if (rc != EHR_ENOTFOUND)
        return rc;
    bool member;
    if ((rc = member_get(a, p->patient_key.data, NULL, &member)) != 0)
        return rc;
    if (member)
        return refuse(a->r, REFUSED, "a member's node key cannot be a patient's");
    Ehr__V1__PatientEntry e = EHR__V1__PATIENT_ENTRY__INIT;
    Ehr__V1__ChainPlace place;
    place_fill(a, &place);
    e.kx_key = p->patient_kx_key;
    e.enrolled_by = a->body->signer;
    e.enrolled = &place;
    rc = put_message(a, k, n, &e.base);
    if (rc != 0)
        return rc;
    Ehr__V1__AuditEvent ev = EHR__V1__AUDIT_EVENT__INIT;
    ev.kind = EHR__V1__AUDIT_KIND__AUDIT_KIND_ENROLL;
    ev.actor = a->body->signer;
    ev.institution = a->body->signer;
    return audit(a, p->patient_key.data, &ev);
}

static int apply_practitioner(struct apply *a, bool add)
{
    ProtobufCBinaryData key = add ? a->body->practitioner_register->practitioner_key
                                  : a->body->practitioner_remove->practitioner_key;
    struct actor who;
    int rc = actor_get(a, a->body->signer.data, &who);
    if (rc != 0)
        return rc;
    if (!who.member)
        return refuse(a->r, NOT_AUTHORIZED, "only a member registers or removes its practitioners");
    ehr_public_key parsed;
    if (!key_ok(key, &parsed))
        return refuse(a->r, MALFORMED, "practitioner_key is not a valid 32-byte public key");
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_PRACTITIONER, key.data, NULL, NULL);
    Ehr__V1__PractitionerEntry *old = NULL;
    rc = get_message(a, k, n, &ehr__v1__practitioner_entry__descriptor, (ProtobufCMessage **)&old);
    if (rc != 0 && rc != EHR_ENOTFOUND)
        return rc;
    bool exists = rc == 0;
    bool ours = exists && old->member_key.len == EHR_SCHNORR_PUBLIC_BYTES &&
                memcmp(old->member_key.data, a->body->signer.data, EHR_SCHNORR_PUBLIC_BYTES) == 0;
    if (old != NULL)
        ehr__v1__practitioner_entry__free_unpacked(old, NULL);
    if (!add) {
        if (!exists)
            return refuse(a->r, NOT_FOUND, "no such practitioner");
        if (!ours)
            return refuse(a->r, NOT_AUTHORIZED, "the practitioner acts for another member");
        return contracts_block_delete(a->b, k, n);
    }
    if (exists)
        return refuse(a->r, CONFLICT, "the practitioner is registered already");
    bool member;
    if ((rc = member_get(a, key.data, NULL, &member)) != 0)
        return rc;
    if (member)
        return refuse(a->r, REFUSED, "a member's node key cannot be a practitioner's");
    Ehr__V1__PractitionerEntry e = EHR__V1__PRACTITIONER_ENTRY__INIT;
    Ehr__V1__ChainPlace place;
    place_fill(a, &place);
    e.member_key = a->body->signer;
    e.registered = &place;
    return put_message(a, k, n, &e.base);
}

/* ---- records ---- */

static bool record_type_ok(int t)
{
    return t >= EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING &&
           t <= EHR__V1__RECORD_TYPE__RECORD_TYPE_GENOMIC;
}

static bool purpose_ok(int p)
{
    return p >= EHR__V1__PURPOSE__PURPOSE_TREATMENT && p <= EHR__V1__PURPOSE__PURPOSE_EMERGENCY;
}

static int record_get(struct apply *a, ProtobufCBinaryData id, Ehr__V1__RecordEntry **out)
{
    *out = NULL;
    if (id.len != EHR_HASH_BYTES)
        return EHR_ENOTFOUND;
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_RECORD, id.data, NULL, NULL);
    return get_message(a, k, n, &ehr__v1__record_entry__descriptor, (ProtobufCMessage **)out);
}

static bool patient_enrolled(struct apply *a, const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES], int *rc)
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_PATIENT, key, NULL, NULL);
    size_t len;
    *rc = contracts_block_get(a->b, k, n, a->value, &len);
    bool found = *rc == 0;
    if (*rc == EHR_ENOTFOUND)
        *rc = 0;
    return found;
}

static int apply_anchor(struct apply *a)
{
    const Ehr__V1__RecordAnchor *p = a->body->record_anchor;
    struct actor who;
    int rc = actor_get(a, a->body->signer.data, &who);
    if (rc != 0)
        return rc;
    if (!who.member)
        return refuse(a->r, NOT_AUTHORIZED, "only a member, as custodian, anchors a record");
    if (p->patient_key.len != EHR_SCHNORR_PUBLIC_BYTES)
        return refuse(a->r, MALFORMED, "patient_key is not 32 bytes");
    if (!record_type_ok(p->record_type))
        return refuse(a->r, MALFORMED, "record_type %d is not a known record type",
                      (int)p->record_type);
    if (p->ciphertext_hash.len != EHR_HASH_BYTES)
        return refuse(a->r, MALFORMED, "ciphertext_hash is not %d bytes", EHR_HASH_BYTES);
    if (p->encrypted_pointer.len == 0 || p->encrypted_pointer.len > CONTRACTS_POINTER_BYTES_MAX)
        return refuse(a->r, MALFORMED, "encrypted_pointer must be 1 to %d bytes",
                      CONTRACTS_POINTER_BYTES_MAX);
    if (p->key_capsule.len > CONTRACTS_CAPSULE_BYTES_MAX)
        return refuse(a->r, MALFORMED, "key_capsule is over %d bytes", CONTRACTS_CAPSULE_BYTES_MAX);
    if (!patient_enrolled(a, p->patient_key.data, &rc))
        return rc != 0 ? rc : refuse(a->r, NOT_FOUND, "the patient is not enrolled");
    /* A ciphertext belongs to one record: its erasure deletes the blob on
     * every node, which must take no other record's data with it, and no
     * other record may keep an erased ciphertext alive (docs/DESIGN.md,
     * "Erasure"). A new version of a record is a new ciphertext. */
    uint8_t blob_key[CONTRACTS_KEY_BYTES_MAX];
    size_t blob_key_len =
        contracts_key(blob_key, CONTRACTS_PREFIX_RECORD_BLOB, p->ciphertext_hash.data, NULL, NULL);
    size_t named_len;
    rc = contracts_block_get(a->b, blob_key, blob_key_len, a->value, &named_len);
    if (rc == 0)
        return refuse(a->r, CONFLICT, "another record names this ciphertext_hash already");
    if (rc != EHR_ENOTFOUND)
        return rc;
    Ehr__V1__RecordEntry *old = NULL;
    if (p->supersedes.len != 0) {
        rc = record_get(a, p->supersedes, &old);
        if (rc == EHR_ENOTFOUND)
            return refuse(a->r, NOT_FOUND, "the record it supersedes does not exist");
        if (rc != 0)
            return rc;
        bool same =
            memcmp(old->custodian.data, a->body->signer.data, EHR_SCHNORR_PUBLIC_BYTES) == 0 &&
            memcmp(old->patient_key.data, p->patient_key.data, EHR_SCHNORR_PUBLIC_BYTES) == 0;
        bool taken = old->superseded_by.len != 0;
        bool erased = old->erased;
        if (!same || taken || erased) {
            ehr__v1__record_entry__free_unpacked(old, NULL);
            if (!same)
                return refuse(a->r, NOT_AUTHORIZED,
                              "a record supersedes only one of the same custodian and patient");
            return taken ? refuse(a->r, CONFLICT, "that record is superseded already")
                         : refuse(a->r, REFUSED,
                                  "that record was erased by its patient: it is not amended");
        }
        old->superseded_by = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)a->tx->hash};
        uint8_t k[CONTRACTS_KEY_BYTES_MAX];
        size_t n = contracts_key(k, CONTRACTS_PREFIX_RECORD, p->supersedes.data, NULL, NULL);
        rc = put_message(a, k, n, &old->base);
        old->superseded_by = (ProtobufCBinaryData){0, NULL};
        ehr__v1__record_entry__free_unpacked(old, NULL);
        if (rc != 0)
            return rc;
    }
    Ehr__V1__RecordEntry e = EHR__V1__RECORD_ENTRY__INIT;
    Ehr__V1__ChainPlace place;
    place_fill(a, &place);
    e.patient_key = p->patient_key;
    e.custodian = a->body->signer;
    e.record_type = p->record_type;
    e.anchored = &place;
    e.supersedes = p->supersedes;
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_RECORD, a->tx->hash, NULL, NULL);
    if ((rc = put_message(a, k, n, &e.base)) != 0)
        return rc;
    if ((rc = contracts_block_put(a->b, blob_key, blob_key_len, a->tx->hash, EHR_HASH_BYTES)) != 0)
        return rc;
    /* The patient's records by type and time. */
    uint8_t suffix[4 + 8 + 4];
    contracts_be32(suffix, (uint32_t)p->record_type);
    contracts_be64(suffix + 4, a->ctx->height);
    contracts_be32(suffix + 12, a->tx->position);
    n = contracts_key(k, CONTRACTS_PREFIX_PATIENT_RECORDS, p->patient_key.data, NULL, NULL);
    n = contracts_key_append(k, n, suffix, sizeof suffix);
    if ((rc = contracts_block_put(a->b, k, n, a->tx->hash, EHR_HASH_BYTES)) != 0)
        return rc;
    Ehr__V1__AuditEvent ev = EHR__V1__AUDIT_EVENT__INIT;
    ev.kind = EHR__V1__AUDIT_KIND__AUDIT_KIND_ANCHOR;
    ev.actor = a->body->signer;
    ev.institution = a->body->signer;
    ev.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)a->tx->hash};
    return audit(a, p->patient_key.data, &ev);
}

/*
 * RecordErase: the record's patient erases it (crypto-shredding). The
 * entry stays as a tombstone (id, patient, custodian, type, where anchored)
 * and gains the erase's place and ground; "erased-records/" + id lists the
 * erased records, so a node finds the blobs it must not hold without
 * reading every record. The anchor is untouched: the chain still verifies.
 */
static int apply_erase(struct apply *a)
{
    const Ehr__V1__RecordErase *p = a->body->record_erase;
    if (p->record_id.len != EHR_HASH_BYTES)
        return refuse(a->r, MALFORMED, "record_id is not %d bytes", EHR_HASH_BYTES);
    if (p->ground < EHR__V1__ERASE_GROUND__ERASE_GROUND_UNSPECIFIED ||
        p->ground > EHR__V1__ERASE_GROUND__ERASE_GROUND_LEGAL_OBLIGATION)
        return refuse(a->r, MALFORMED, "ground %d is not a known erasure ground", (int)p->ground);
    Ehr__V1__RecordEntry *rec = NULL;
    int rc = record_get(a, p->record_id, &rec);
    if (rc == EHR_ENOTFOUND)
        return refuse(a->r, NOT_FOUND, "no such record");
    if (rc != 0)
        return rc;
    EHR_ASSERT(rec->patient_key.len == EHR_SCHNORR_PUBLIC_BYTES); /* written by these rules */
    if (memcmp(rec->patient_key.data, a->body->signer.data, EHR_SCHNORR_PUBLIC_BYTES) != 0)
        rc = refuse(a->r, NOT_AUTHORIZED, "only the record's patient erases it");
    else if (rec->erased)
        rc = refuse(a->r, CONFLICT, "the record is erased already");
    else {
        Ehr__V1__ChainPlace place;
        place_fill(a, &place);
        rec->erased = true;
        rec->erase_ground = p->ground;
        Ehr__V1__ChainPlace *had = rec->erased_at;
        rec->erased_at = &place;
        uint8_t k[CONTRACTS_KEY_BYTES_MAX];
        size_t n = contracts_key(k, CONTRACTS_PREFIX_RECORD, p->record_id.data, NULL, NULL);
        rc = put_message(a, k, n, &rec->base);
        rec->erased_at = had;
        if (rc == 0) {
            n = contracts_key(k, CONTRACTS_PREFIX_ERASED_RECORDS, p->record_id.data, NULL, NULL);
            rc = contracts_block_put(a->b, k, n, NULL, 0);
        }
        if (rc == 0) {
            Ehr__V1__AuditEvent ev = EHR__V1__AUDIT_EVENT__INIT;
            ev.kind = EHR__V1__AUDIT_KIND__AUDIT_KIND_ERASE;
            ev.actor = a->body->signer;
            ev.record_id = p->record_id;
            rc = audit(a, a->body->signer.data, &ev);
        }
    }
    ehr__v1__record_entry__free_unpacked(rec, NULL);
    return rc;
}

/* ---- consents ---- */

static int apply_grant(struct apply *a)
{
    const Ehr__V1__ConsentGrant *p = a->body->consent_grant;
    const uint8_t *patient = a->body->signer.data;
    int rc;
    if (!patient_enrolled(a, patient, &rc))
        return rc != 0 ? rc
                       : refuse(a->r, NOT_AUTHORIZED,
                                "only the patient grants a consent: the signer is not an enrolled "
                                "patient");
    if (p->grantee_key.len != EHR_SCHNORR_PUBLIC_BYTES)
        return refuse(a->r, MALFORMED, "grantee_key is not 32 bytes");
    struct actor grantee;
    if ((rc = actor_get(a, p->grantee_key.data, &grantee)) != 0)
        return rc;
    if (!grantee.member && !grantee.practitioner)
        return refuse(a->r, NOT_FOUND,
                      "the grantee is neither a member nor a registered "
                      "practitioner");
    if (p->n_record_types == 0 && p->n_record_ids == 0)
        return refuse(a->r, MALFORMED, "a consent covers record types or record ids: both empty");
    if (p->n_record_types > CONTRACTS_SCOPE_COUNT_MAX ||
        p->n_record_ids > CONTRACTS_SCOPE_COUNT_MAX)
        return refuse(a->r, MALFORMED, "a consent names at most %d record types and %d record ids",
                      CONTRACTS_SCOPE_COUNT_MAX, CONTRACTS_SCOPE_COUNT_MAX);
    for (size_t i = 0; i < p->n_record_types; i++)
        if (!record_type_ok(p->record_types[i]))
            return refuse(a->r, MALFORMED, "record_types[%zu] is not a known record type", i);
    for (size_t i = 0; i < p->n_record_ids; i++) {
        Ehr__V1__RecordEntry *rec = NULL;
        rc = record_get(a, p->record_ids[i], &rec);
        if (rc == EHR_ENOTFOUND)
            return refuse(a->r, NOT_FOUND, "record_ids[%zu] is not a record", i);
        if (rc != 0)
            return rc;
        bool theirs = memcmp(rec->patient_key.data, patient, EHR_SCHNORR_PUBLIC_BYTES) == 0;
        bool erased = rec->erased;
        ehr__v1__record_entry__free_unpacked(rec, NULL);
        if (!theirs)
            return refuse(a->r, NOT_AUTHORIZED, "record_ids[%zu] is another patient's record", i);
        if (erased)
            return refuse(a->r, REFUSED, "record_ids[%zu] was erased", i);
    }
    if (!purpose_ok(p->purpose))
        return refuse(a->r, MALFORMED, "purpose %d is not a known purpose", (int)p->purpose);
    if (p->valid_until_ms <= p->valid_from_ms)
        return refuse(a->r, REFUSED, "the period ends (%llu) before it starts (%llu)",
                      (unsigned long long)p->valid_until_ms, (unsigned long long)p->valid_from_ms);
    if (p->policy_program.len > 0) {
        ehr_diag diag;
        if (contracts_vm_verify(p->policy_program.data, p->policy_program.len, &diag) != 0)
            return refuse(a->r, REFUSED, "the policy program does not verify: %s", diag.msg);
    }
    if (p->n_key_fragments > CONTRACTS_KEY_FRAGMENTS_MAX)
        return refuse(a->r, REFUSED, "%zu key fragments, over the limit of %d", p->n_key_fragments,
                      CONTRACTS_KEY_FRAGMENTS_MAX);
    for (size_t i = 0; i < p->n_key_fragments; i++)
        if (p->key_fragments[i].len == 0 ||
            p->key_fragments[i].len > CONTRACTS_KEY_FRAGMENT_BYTES_MAX)
            return refuse(a->r, REFUSED, "key_fragments[%zu] must be 1 to %d bytes", i,
                          CONTRACTS_KEY_FRAGMENT_BYTES_MAX);
    /* The fragments' delegating key, signed here by the patient: what the
     * nodes and the grantee hold the fragments to (tx.proto). */
    if (p->n_key_fragments > 0 && (p->delegating_key.len != EHR_PRE_PUBLIC_BYTES ||
                                   ehr_pre_public_key_check(p->delegating_key.data) != 0))
        return refuse(a->r, MALFORMED,
                      "key_fragments need the delegating_key they were made from (%d bytes, a "
                      "valid public key)",
                      EHR_PRE_PUBLIC_BYTES);
    if (p->n_key_fragments == 0 && p->delegating_key.len != 0)
        return refuse(a->r, MALFORMED, "delegating_key without key_fragments");
    Ehr__V1__ConsentEntry e = EHR__V1__CONSENT_ENTRY__INIT;
    Ehr__V1__ChainPlace place;
    place_fill(a, &place);
    e.patient_key = a->body->signer;
    e.grantee_key = p->grantee_key;
    e.n_record_types = p->n_record_types;
    e.record_types = p->record_types;
    e.n_record_ids = p->n_record_ids;
    e.record_ids = p->record_ids;
    e.purpose = p->purpose;
    e.valid_from_ms = p->valid_from_ms;
    e.valid_until_ms = p->valid_until_ms;
    e.policy_program = p->policy_program;
    e.granted = &place;
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_CONSENT, a->tx->hash, NULL, NULL);
    if ((rc = put_message(a, k, n, &e.base)) != 0)
        return rc;
    n = contracts_key(k, CONTRACTS_PREFIX_PATIENT_CONSENTS, patient, p->grantee_key.data,
                      a->tx->hash);
    if ((rc = contracts_block_put(a->b, k, n, NULL, 0)) != 0)
        return rc;
    n = contracts_key(k, CONTRACTS_PREFIX_GRANTEE_CONSENTS, p->grantee_key.data, a->tx->hash, NULL);
    if ((rc = contracts_block_put(a->b, k, n, patient, EHR_SCHNORR_PUBLIC_BYTES)) != 0)
        return rc;
    Ehr__V1__AuditEvent ev = EHR__V1__AUDIT_EVENT__INIT;
    ev.kind = EHR__V1__AUDIT_KIND__AUDIT_KIND_GRANT;
    ev.actor = a->body->signer;
    ev.consent_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)a->tx->hash};
    ev.purpose = p->purpose;
    return audit(a, patient, &ev);
}

static int consent_get(struct apply *a, const uint8_t id[EHR_HASH_BYTES],
                       Ehr__V1__ConsentEntry **out)
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_CONSENT, id, NULL, NULL);
    return get_message(a, k, n, &ehr__v1__consent_entry__descriptor, (ProtobufCMessage **)out);
}

static int apply_revoke(struct apply *a)
{
    const Ehr__V1__ConsentRevoke *p = a->body->consent_revoke;
    if (p->grant_id.len != EHR_HASH_BYTES)
        return refuse(a->r, MALFORMED, "grant_id is not %d bytes", EHR_HASH_BYTES);
    Ehr__V1__ConsentEntry *c = NULL;
    int rc = consent_get(a, p->grant_id.data, &c);
    if (rc == EHR_ENOTFOUND)
        return refuse(a->r, NOT_FOUND, "no such consent");
    if (rc != 0)
        return rc;
    if (memcmp(c->patient_key.data, a->body->signer.data, EHR_SCHNORR_PUBLIC_BYTES) != 0)
        rc = refuse(a->r, NOT_AUTHORIZED, "only the patient who granted it revokes a consent");
    else if (c->revoked)
        rc = refuse(a->r, CONFLICT, "the consent is revoked already");
    else {
        Ehr__V1__ChainPlace place;
        place_fill(a, &place);
        c->revoked = true;
        Ehr__V1__ChainPlace *had = c->revoked_at;
        c->revoked_at = &place;
        uint8_t k[CONTRACTS_KEY_BYTES_MAX];
        size_t n = contracts_key(k, CONTRACTS_PREFIX_CONSENT, p->grant_id.data, NULL, NULL);
        rc = put_message(a, k, n, &c->base);
        c->revoked_at = had;
        if (rc == 0) {
            Ehr__V1__AuditEvent ev = EHR__V1__AUDIT_EVENT__INIT;
            ev.kind = EHR__V1__AUDIT_KIND__AUDIT_KIND_REVOKE;
            ev.actor = a->body->signer;
            ev.consent_id = p->grant_id;
            ev.purpose = c->purpose;
            rc = audit(a, a->body->signer.data, &ev);
        }
    }
    ehr__v1__consent_entry__free_unpacked(c, NULL);
    return rc;
}

/* ---- access decisions ---- */

/* The consent search of one access request. */
struct search {
    struct apply *a;
    const Ehr__V1__RecordEntry *rec;
    const uint8_t *record_id;
    Ehr__V1__Purpose purpose;
    const struct actor *who;
    struct contracts_vm_request req;
    /* out */
    unsigned examined; /* consents looked at, at most CONTRACTS_ACCESS_CONSENTS_MAX */
    bool permitted;
    uint8_t consent_id[EHR_HASH_BYTES];
    uint64_t gas_used;
    char why[CONTRACTS_REASON_BYTES_MAX]; /* the last reason a consent did not permit */
    int err;
};

static bool consent_covers(const struct search *s, const Ehr__V1__ConsentEntry *c)
{
    for (size_t i = 0; i < c->n_record_types; i++)
        if ((int)c->record_types[i] == (int)s->rec->record_type)
            return true;
    for (size_t i = 0; i < c->n_record_ids; i++)
        if (c->record_ids[i].len == EHR_HASH_BYTES &&
            memcmp(c->record_ids[i].data, s->record_id, EHR_HASH_BYTES) == 0)
            return true;
    return false;
}

/* One consent of the patient for the grantee being tried (KEY ends with its id). */
static int search_consent(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                          size_t value_len)
{
    (void)value, (void)value_len;
    struct search *s = ctx;
    EHR_ASSERT(key_len >= EHR_HASH_BYTES);
    const uint8_t *id = key + key_len - EHR_HASH_BYTES;
    Ehr__V1__ConsentEntry *c = NULL;
    int rc = consent_get(s->a, id, &c);
    if (rc != 0) {
        s->err = rc == EHR_ENOTFOUND ? EHR_ECORRUPT : rc; /* an index without its consent */
        return 1;
    }
    uint64_t t = s->a->ctx->time_ms;
    if (s->examined == CONTRACTS_ACCESS_CONSENTS_MAX) {
        snprintf(s->why, sizeof s->why,
                 "the patient holds over %d consents for this requester: no more are examined",
                 CONTRACTS_ACCESS_CONSENTS_MAX);
        ehr__v1__consent_entry__free_unpacked(c, NULL);
        return 1;
    }
    s->examined++;
    if (c->revoked)
        snprintf(s->why, sizeof s->why, "the consent was revoked");
    else if (t < c->valid_from_ms || t >= c->valid_until_ms)
        snprintf(s->why, sizeof s->why, "the consent's period does not cover the block time");
    else if ((int)c->purpose != (int)s->purpose)
        snprintf(s->why, sizeof s->why, "the consent is for another purpose");
    else if (!consent_covers(s, c))
        snprintf(s->why, sizeof s->why, "the consent does not cover this record");
    else if (c->policy_program.len == 0) {
        s->permitted = true;
    } else if (s->gas_used == CONTRACTS_ACCESS_GAS_MAX) {
        snprintf(s->why, sizeof s->why,
                 "the request used its %d units of policy gas before this consent's policy ran",
                 CONTRACTS_ACCESS_GAS_MAX);
    } else {
        s->req.consent_purpose = (uint32_t)c->purpose;
        s->req.consent_from_ms = c->valid_from_ms;
        s->req.consent_until_ms = c->valid_until_ms;
        struct contracts_vm_result vr;
        EHR_ASSERT(s->gas_used < CONTRACTS_ACCESS_GAS_MAX);
        rc = contracts_vm_eval(c->policy_program.data, c->policy_program.len, &s->req,
                               CONTRACTS_ACCESS_GAS_MAX - s->gas_used, &vr);
        EHR_ASSERT(rc == 0); /* the gas limit is within bounds */
        s->gas_used += vr.gas_used;
        EHR_ASSERT(s->gas_used <= CONTRACTS_ACCESS_GAS_MAX);
        if (vr.decision == CONTRACTS_VM_PERMIT)
            s->permitted = true;
        else
            snprintf(s->why, sizeof s->why, "the consent's policy denied: %s",
                     contracts_vm_reason_text(vr.reason));
    }
    if (s->permitted)
        memcpy(s->consent_id, id, EHR_HASH_BYTES);
    ehr__v1__consent_entry__free_unpacked(c, NULL);
    return s->permitted ? 1 : 0;
}

/* Try the patient's consents held by GRANTEE, in id order, until one permits. */
static int search_grantee(struct search *s, const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES],
                          const uint8_t grantee[EHR_SCHNORR_PUBLIC_BYTES])
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_PATIENT_CONSENTS, patient, grantee, NULL);
    int rc = contracts_block_scan(s->a->b, k, n, search_consent, s);
    if (s->err != 0)
        return s->err;
    return rc == 1 ? 0 : rc;
}

static int apply_access(struct apply *a, bool emergency)
{
    ProtobufCBinaryData record_id =
        emergency ? a->body->emergency_access->record_id : a->body->access_request->record_id;
    ProtobufCBinaryData kx = emergency ? a->body->emergency_access->requester_kx_key
                                       : a->body->access_request->requester_kx_key;
    Ehr__V1__Purpose purpose =
        emergency ? EHR__V1__PURPOSE__PURPOSE_EMERGENCY : a->body->access_request->purpose;
    struct actor who;
    int rc = actor_get(a, a->body->signer.data, &who);
    if (rc != 0)
        return rc;
    if (!who.member && !who.practitioner)
        return refuse(a->r, NOT_AUTHORIZED,
                      "the requester is neither a member nor a registered practitioner");
    if (kx.len != EHR_KX_PUBLIC_BYTES || ehr_kx_public_key_check(kx.data) != 0)
        return refuse(a->r, MALFORMED, "requester_kx_key is not a usable %d-byte X25519 key",
                      EHR_KX_PUBLIC_BYTES);
    if (!emergency && !purpose_ok(purpose))
        return refuse(a->r, MALFORMED, "purpose %d is not a known purpose", (int)purpose);
    const char *reason_text = emergency ? a->body->emergency_access->reason : "";
    size_t reason_len = strlen(reason_text);
    if (emergency && !ledger_text_ok(reason_text, CONTRACTS_EMERGENCY_REASON_BYTES_MAX))
        return refuse(a->r, MALFORMED,
                      "an emergency access states its reason: 1 to %d bytes of UTF-8 text "
                      "without control characters (%zu bytes given)",
                      CONTRACTS_EMERGENCY_REASON_BYTES_MAX, reason_len);
    Ehr__V1__RecordEntry *rec = NULL;
    rc = record_get(a, record_id, &rec);
    if (rc == EHR_ENOTFOUND)
        return refuse(a->r, NOT_FOUND, "no such record");
    if (rc != 0)
        return rc;
    struct search s = {
        .a = a, .rec = rec, .record_id = record_id.data, .purpose = purpose, .who = &who};
    snprintf(s.why, sizeof s.why, "no consent of the patient covers this request");
    if (rec->erased) {
        /* Neither a consent nor the emergency policy opens an erased record. */
        snprintf(s.why, sizeof s.why, "the record was erased by its patient");
    } else if (emergency) {
        /* By the chain's rules alone: its genesis policy and the role. */
        rc = contracts_emergency_allowed(a->b, who.role, &s.permitted, a->value);
        if (rc == 0 && !s.permitted)
            snprintf(s.why, sizeof s.why,
                     "emergency access is not allowed to this role on this chain");
    } else {
        struct contracts_vm_request *q = &s.req;
        memcpy(q->requester_key, a->body->signer.data, EHR_SCHNORR_PUBLIC_BYTES);
        q->requester_role = (uint32_t)who.role;
        memcpy(q->requester_institution, who.institution, EHR_SCHNORR_PUBLIC_BYTES);
        q->requester_practitioner = who.practitioner;
        q->record_type = (uint32_t)rec->record_type;
        memcpy(q->record_custodian, rec->custodian.data, EHR_SCHNORR_PUBLIC_BYTES);
        uint64_t anchored = rec->anchored != NULL ? rec->anchored->time_ms : 0;
        q->record_age_days =
            a->ctx->time_ms > anchored ? (a->ctx->time_ms - anchored) / CONTRACTS_DAY_MS : 0;
        q->request_purpose = (uint32_t)purpose;
        q->block_time_ms = a->ctx->time_ms;
        /* The requester's own consents, then (a practitioner) its member's. */
        rc = search_grantee(&s, rec->patient_key.data, a->body->signer.data);
        if (rc == 0 && !s.permitted && who.practitioner)
            rc = search_grantee(&s, rec->patient_key.data, who.institution);
    }
    if (rc == 0) {
        a->r->decision = s.permitted ? EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT
                                     : EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY;
        a->r->has_consent = s.permitted && !emergency;
        memcpy(a->r->consent_id, s.consent_id, EHR_HASH_BYTES);
        a->r->gas_used = s.gas_used;
        if (!s.permitted)
            snprintf(a->r->reason, sizeof a->r->reason, "%s", s.why);
        else if (emergency)
            snprintf(a->r->reason, sizeof a->r->reason, "emergency access: %s", reason_text);
        contracts_text_cut(a->r->reason);
        Ehr__V1__AuditEvent ev = EHR__V1__AUDIT_EVENT__INIT;
        ev.kind = emergency ? EHR__V1__AUDIT_KIND__AUDIT_KIND_EMERGENCY
                            : EHR__V1__AUDIT_KIND__AUDIT_KIND_ACCESS;
        ev.actor = a->body->signer;
        ev.institution = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, who.institution};
        ev.record_id = record_id;
        if (a->r->has_consent)
            ev.consent_id = (ProtobufCBinaryData){EHR_HASH_BYTES, a->r->consent_id};
        ev.purpose = purpose;
        ev.decision = a->r->decision;
        ev.reason = emergency ? (char *)reason_text : a->r->reason;
        ev.emergency = emergency;
        rc = audit(a, rec->patient_key.data, &ev);
    }
    ehr__v1__record_entry__free_unpacked(rec, NULL);
    return rc;
}

/* ---- governance ---- */

/* Current members, and how many of APPROVALS are among them. */
static int members_count(struct apply *a, size_t *count)
{
    return contracts_members_count(a->b, count);
}

static int approvals_current(struct apply *a, const Ehr__V1__ProposalEntry *p, size_t *count)
{
    *count = 0;
    for (size_t i = 0; i < p->n_approvals; i++) {
        bool member;
        int rc = member_get(a, p->approvals[i].data, NULL, &member);
        if (rc != 0)
            return rc;
        *count += member;
    }
    return 0;
}

/* Make the proposal's change (a majority approved it). */
static int proposal_enact(struct apply *a, Ehr__V1__ProposalEntry *p)
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    p->done = true;
    if (p->change_case == EHR__V1__PROPOSAL_ENTRY__CHANGE_ADMIT) {
        size_t n = contracts_key(k, CONTRACTS_PREFIX_MEMBER, p->admit->node_key.data, NULL, NULL);
        return put_message(a, k, n, &p->admit->base);
    }
    size_t n = contracts_key(k, CONTRACTS_PREFIX_MEMBER, p->remove.data, NULL, NULL);
    return contracts_block_delete(a->b, k, n);
}

static int proposal_store(struct apply *a, const uint8_t id[EHR_HASH_BYTES],
                          Ehr__V1__ProposalEntry *p)
{
    size_t members, approvals;
    int rc = members_count(a, &members);
    if (rc == 0)
        rc = approvals_current(a, p, &approvals);
    if (rc == 0 && approvals > members / 2 &&
        p->change_case == EHR__V1__PROPOSAL_ENTRY__CHANGE_ADMIT && members >= CONTRACTS_NODES_MAX)
        return refuse(a->r, REFUSED, "the chain has %zu members, the most a network runs with",
                      members);
    if (rc == 0 && approvals > members / 2)
        rc = proposal_enact(a, p);
    if (rc != 0)
        return rc;
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_PROPOSAL, id, NULL, NULL);
    return put_message(a, k, n, &p->base);
}

static int apply_proposal(struct apply *a)
{
    const Ehr__V1__MemberProposal *p = a->body->member_proposal;
    struct actor who;
    int rc = actor_get(a, a->body->signer.data, &who);
    if (rc != 0)
        return rc;
    if (!who.member)
        return refuse(a->r, NOT_AUTHORIZED, "only a member proposes a membership change");
    if (p->expires_ms <= a->ctx->time_ms)
        return refuse(a->r, REFUSED, "the proposal expires before its block");
    Ehr__V1__ProposalEntry e = EHR__V1__PROPOSAL_ENTRY__INIT;
    if (p->change_case == EHR__V1__MEMBER_PROPOSAL__CHANGE_ADMIT) {
        ehr_diag diag;
        if (contracts_member_check(p->admit, &diag) != 0)
            return refuse(a->r, MALFORMED, "the member to admit: %s", diag.msg);
        bool member;
        if ((rc = member_get(a, p->admit->node_key.data, NULL, &member)) != 0)
            return rc;
        if (member)
            return refuse(a->r, CONFLICT, "that node key is a member already");
        size_t members;
        if ((rc = members_count(a, &members)) != 0)
            return rc;
        if (members >= CONTRACTS_NODES_MAX)
            return refuse(a->r, REFUSED, "the chain has %zu members, the most a network runs with",
                          members);
        e.change_case = EHR__V1__PROPOSAL_ENTRY__CHANGE_ADMIT;
        e.admit = p->admit;
    } else if (p->change_case == EHR__V1__MEMBER_PROPOSAL__CHANGE_REMOVE) {
        bool member;
        if (p->remove.len != EHR_SCHNORR_PUBLIC_BYTES)
            return refuse(a->r, MALFORMED, "the member to remove is not a 32-byte key");
        if ((rc = member_get(a, p->remove.data, NULL, &member)) != 0)
            return rc;
        if (!member)
            return refuse(a->r, NOT_FOUND, "no such member to remove");
        size_t members;
        if ((rc = members_count(a, &members)) != 0)
            return rc;
        if (members <= 1)
            return refuse(a->r, REFUSED, "the last member cannot be removed");
        e.change_case = EHR__V1__PROPOSAL_ENTRY__CHANGE_REMOVE;
        e.remove = p->remove;
    } else {
        return refuse(a->r, MALFORMED, "a proposal admits or removes a member: neither given");
    }
    Ehr__V1__ChainPlace place;
    place_fill(a, &place);
    e.proposer = a->body->signer;
    e.expires_ms = p->expires_ms;
    ProtobufCBinaryData approvals[1] = {a->body->signer};
    e.n_approvals = 1;
    e.approvals = approvals;
    e.proposed = &place;
    return proposal_store(a, a->tx->hash, &e);
}

static int apply_approval(struct apply *a)
{
    const Ehr__V1__MemberApproval *p = a->body->member_approval;
    struct actor who;
    int rc = actor_get(a, a->body->signer.data, &who);
    if (rc != 0)
        return rc;
    if (!who.member)
        return refuse(a->r, NOT_AUTHORIZED, "only a member approves a membership change");
    if (p->proposal_id.len != EHR_HASH_BYTES)
        return refuse(a->r, MALFORMED, "proposal_id is not %d bytes", EHR_HASH_BYTES);
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n = contracts_key(k, CONTRACTS_PREFIX_PROPOSAL, p->proposal_id.data, NULL, NULL);
    Ehr__V1__ProposalEntry *e = NULL;
    rc = get_message(a, k, n, &ehr__v1__proposal_entry__descriptor, (ProtobufCMessage **)&e);
    if (rc == EHR_ENOTFOUND)
        return refuse(a->r, NOT_FOUND, "no such proposal");
    if (rc != 0)
        return rc;
    bool again = false;
    for (size_t i = 0; i < e->n_approvals; i++)
        again |= memcmp(e->approvals[i].data, a->body->signer.data, EHR_SCHNORR_PUBLIC_BYTES) == 0;
    if (e->done)
        rc = refuse(a->r, CONFLICT, "the proposal was carried already");
    else if (e->expires_ms <= a->ctx->time_ms)
        rc = refuse(a->r, REFUSED, "the proposal has expired");
    else if (again)
        rc = refuse(a->r, CONFLICT, "this member approved the proposal already");
    else if (e->n_approvals >= CONTRACTS_MEMBERS_MAX)
        rc = refuse(a->r, REFUSED, "the proposal has the most approvals it can hold");
    else {
        ProtobufCBinaryData *more = ehr_malloc((e->n_approvals + 1) * sizeof *more);
        memcpy(more, e->approvals, e->n_approvals * sizeof *more);
        more[e->n_approvals] = a->body->signer;
        ProtobufCBinaryData *had = e->approvals;
        e->approvals = more;
        e->n_approvals++;
        rc = proposal_store(a, p->proposal_id.data, e);
        e->n_approvals--;
        e->approvals = had;
        ehr_free(more);
    }
    ehr__v1__proposal_entry__free_unpacked(e, NULL);
    return rc;
}

/* ---- the entry point ---- */

static int apply_payload(struct apply *a)
{
    switch (a->body->payload_case) {
    case EHR__V1__TX_BODY__PAYLOAD_PATIENT_ENROLL:
        return apply_enroll(a);
    case EHR__V1__TX_BODY__PAYLOAD_PRACTITIONER_REGISTER:
        return apply_practitioner(a, true);
    case EHR__V1__TX_BODY__PAYLOAD_PRACTITIONER_REMOVE:
        return apply_practitioner(a, false);
    case EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR:
        return apply_anchor(a);
    case EHR__V1__TX_BODY__PAYLOAD_CONSENT_GRANT:
        return apply_grant(a);
    case EHR__V1__TX_BODY__PAYLOAD_CONSENT_REVOKE:
        return apply_revoke(a);
    case EHR__V1__TX_BODY__PAYLOAD_RECORD_ERASE:
        return apply_erase(a);
    case EHR__V1__TX_BODY__PAYLOAD_ACCESS_REQUEST:
        return apply_access(a, false);
    case EHR__V1__TX_BODY__PAYLOAD_EMERGENCY_ACCESS:
        return apply_access(a, true);
    case EHR__V1__TX_BODY__PAYLOAD_MEMBER_PROPOSAL:
        return apply_proposal(a);
    case EHR__V1__TX_BODY__PAYLOAD_MEMBER_APPROVAL:
        return apply_approval(a);
    default:
        return refuse(a->r, MALFORMED, "unknown payload %d", (int)a->body->payload_case);
    }
}

int contracts_apply_tx(contracts_block *b, const struct contracts_tx *tx,
                       struct contracts_tx_result *result)
{
    EHR_ASSERT(b != NULL && tx != NULL && result != NULL);
    EHR_ASSERT(tx->hash != NULL);
    memset(result, 0, sizeof *result);
    result->code = EHR__V1__TX_RESULT_CODE__TX_RESULT_OK;
    const struct contracts_block_ctx *ctx = contracts_block_context(b);
    ledger_tx_rules rules = {.chain_id = ctx->chain_id,
                             .now_ms = ctx->time_ms,
                             .signature_checked = tx->sig != CONTRACTS_SIG_UNCHECKED};
    ledger_tx checked;
    ehr_diag diag = {{0}};
    int rc = ledger_tx_check(tx->envelope, tx->len, &rules, &checked, &diag);
    if (rc == EHR_EBADSIG || (rc == 0 && tx->sig == CONTRACTS_SIG_INVALID)) {
        if (rc == 0)
            ledger_tx_release(&checked);
        return refuse(result, EHR__V1__TX_RESULT_CODE__TX_RESULT_BAD_SIGNATURE,
                      "the signature does not verify");
    }
    if (rc != 0)
        return refuse(result, MALFORMED, "%s", diag.msg);
    EHR_ASSERT(memcmp(checked.hash, tx->hash, EHR_HASH_BYTES) == 0);
    struct apply a = {.b = b,
                      .ctx = ctx,
                      .tx = tx,
                      .body = checked.body,
                      .r = result,
                      .value = contracts_block_scratch(b)};
    contracts_block_tx_begin(b);
    rc = apply_payload(&a);
    if (rc == EHR_ETOOBIG) {
        /* The block's write bound: the transaction is refused, not the block. */
        rc = refuse(result, REFUSED, "the block's state writes would pass their bound");
    }
    if (rc == 0 && result->code == EHR__V1__TX_RESULT_CODE__TX_RESULT_OK)
        contracts_block_tx_commit(b);
    else
        contracts_block_tx_abort(b);
    ledger_tx_release(&checked);
    return rc;
}
