/*
 * fhir.c - HL7 FHIR R4 resources from the ledger's entries, for
 * integrators: a patient's consents as `Consent` resources and their audit
 * trail as `AuditEvent` resources, each listing in one `Bundle` of type
 * `collection` (`ehrctl consent list --fhir`, `ehrctl audit --fhir`;
 * cmd_consents.c and cmd_audit.c fetch and check the entries). The mapping, field by field,
 * is the table in cli/README.md ("FHIR R4 export"); keep the two together.
 *
 * Standard slots and code systems where FHIR R4 has one (v3 ActReason for
 * purposes, LOINC for the consent category and document types, DICOM for
 * the audit event type); the rest under our own namespace, FHIR_NS:
 * identifier systems for keys and ids, and extensions for the place on the
 * chain and the policy program's hash. Only keys identify people: the
 * ledger holds no names, and a member institution's name (from the node's
 * status) is the one display text added.
 *
 * Not here: fetching (cmd_consents.c, cmd_audit.c), FHIR search, XML, resources other than
 * the two, and any check of the output against the FHIR schema (the test
 * test_cli_fhir runs the official R4 JSON Schema on it).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli_internal.h"

/* Our namespace, for identifier systems, code systems and extensions. */
#define FHIR_NS "urn:ehrchain:"
#define FHIR_SYSTEM_PATIENT_KEY FHIR_NS "patient-key" /* a patient's BIP-340 key, hex */
#define FHIR_SYSTEM_KEY FHIR_NS "key"                 /* a member's or practitioner's key */
#define FHIR_SYSTEM_CONSENT_ID FHIR_NS "consent-id"   /* the grant's transaction hash */
#define FHIR_SYSTEM_RECORD_ID FHIR_NS "record-id"     /* the anchor's transaction hash */
#define FHIR_SYSTEM_CHAIN_ID FHIR_NS "chain-id"       /* Genesis.chain_id */
#define FHIR_SYSTEM_RECORD_TYPE FHIR_NS "record-type" /* RecordType's short names */
#define FHIR_SYSTEM_AUDIT_KIND FHIR_NS "audit-kind"   /* AuditKind's short names */
#define FHIR_EXT FHIR_NS "fhir:extension:"
#define FHIR_EXT_CHAIN_PLACE FHIR_EXT "chain-place"      /* where on the chain (ChainPlace) */
#define FHIR_EXT_REVOKED FHIR_EXT "consent-revoked"      /* a consent's revocation's place */
#define FHIR_EXT_POLICY FHIR_EXT "policy-program-sha256" /* a consent's policy program */

/* FHIR's and HL7's code systems. */
#define FHIR_LOINC "http://loinc.org"
#define FHIR_DICOM "http://dicom.nema.org/resources/ontology/DCM"
#define FHIR_V3_ACT_REASON "http://terminology.hl7.org/CodeSystem/v3-ActReason"
#define FHIR_V3_ACT_CODE "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#define FHIR_V3_PARTICIPATION "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
#define FHIR_CONSENT_SCOPE "http://terminology.hl7.org/CodeSystem/consentscope"
#define FHIR_RESOURCE_TYPES "http://hl7.org/fhir/resource-types"
#define FHIR_ENTITY_TYPE "http://terminology.hl7.org/CodeSystem/audit-entity-type"
#define FHIR_OBJECT_ROLE "http://terminology.hl7.org/CodeSystem/object-role"
#define FHIR_SOURCE_TYPE "http://terminology.hl7.org/CodeSystem/security-source-type"

enum {
    FHIR_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    FHIR_TIME_BYTES = 80, /* room for any int the format names; 25 used */
    /* FHIR's dateTime and instant name years 0001-9999. */
    FHIR_YEAR_MAX = 9999,
    FHIR_SECONDS_MAX = 253402300799LL, /* 9999-12-31T23:59:59Z */
};
_Static_assert((int)EHR_SCHNORR_PUBLIC_BYTES == (int)EHR_HASH_BYTES,
               "one hex buffer fits keys and ids");

/* ---- building JSON (every failure is out of memory) ---- */

static json_t *fhir_object(void)
{
    json_t *o = json_object();
    if (o == NULL)
        ehr_panic("out of memory building JSON");
    return o;
}

static json_t *fhir_array(void)
{
    json_t *a = json_array();
    if (a == NULL)
        ehr_panic("out of memory building JSON");
    return a;
}

/* Set KEY of O to V (taken). */
static void fhir_set(json_t *o, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(o, key, v) != 0)
        ehr_panic("out of memory building JSON");
}

static void fhir_push(json_t *a, json_t *v)
{
    if (v == NULL || json_array_append_new(a, v) != 0)
        ehr_panic("out of memory building JSON");
}

static json_t *fhir_string(const char *text)
{
    json_t *s = json_string(text);
    if (s == NULL)
        ehr_panic("out of memory building JSON");
    return s;
}

static void fhir_hex(const uint8_t *bytes, size_t len, char out[FHIR_HEX_BYTES])
{
    EHR_ASSERT(len <= EHR_HASH_BYTES);
    ehr_hex_encode(out, bytes, len);
}

/*
 * TIME_MS as a FHIR instant (and dateTime), "YYYY-MM-DDThh:mm:ss.sssZ", into
 * OUT. Returns false, OUT empty, for a time past 9999-12-31 (FHIR has no
 * year 10000): the element is then left out.
 */
static bool fhir_time(uint64_t time_ms, char out[FHIR_TIME_BYTES])
{
    out[0] = '\0';
    if (time_ms / 1000 > (uint64_t)FHIR_SECONDS_MAX)
        return false;
    time_t secs = (time_t)(time_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 > FHIR_YEAR_MAX)
        return false;
    snprintf(out, FHIR_TIME_BYTES, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(time_ms % 1000));
    return true;
}

/* A Coding; DISPLAY may be NULL. */
static json_t *fhir_coding(const char *system, const char *code, const char *display)
{
    json_t *c = fhir_object();
    fhir_set(c, "system", fhir_string(system));
    fhir_set(c, "code", fhir_string(code));
    if (display != NULL)
        fhir_set(c, "display", fhir_string(display));
    return c;
}

/* A CodeableConcept of one Coding. */
static json_t *fhir_concept(const char *system, const char *code, const char *display)
{
    json_t *c = fhir_object(), *codings = fhir_array();
    fhir_push(codings, fhir_coding(system, code, display));
    fhir_set(c, "coding", codings);
    return c;
}

/* An Identifier: SYSTEM, and BYTES as hex. */
static json_t *fhir_identifier(const char *system, const uint8_t *bytes, size_t len)
{
    char hex[FHIR_HEX_BYTES];
    fhir_hex(bytes, len, hex);
    json_t *id = fhir_object();
    fhir_set(id, "system", fhir_string(system));
    fhir_set(id, "value", fhir_string(hex));
    return id;
}

/* A Reference by identifier (our keys and ids resolve on the chain, not on a
 * FHIR server). TYPE and DISPLAY may be NULL. */
static json_t *fhir_reference(const char *type, const char *system, const uint8_t *bytes,
                              size_t len, const char *display)
{
    json_t *r = fhir_object();
    if (type != NULL)
        fhir_set(r, "type", fhir_string(type));
    fhir_set(r, "identifier", fhir_identifier(system, bytes, len));
    if (display != NULL)
        fhir_set(r, "display", cli__json_text(display));
    return r;
}

static json_t *fhir_patient_reference(const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES])
{
    return fhir_reference("Patient", FHIR_SYSTEM_PATIENT_KEY, patient, EHR_SCHNORR_PUBLIC_BYTES,
                          NULL);
}

/* An extension of sub-extensions height, position, tx-hash and time: the
 * ChainPlace P under URL. */
static json_t *fhir_place_extension(const char *url, const Ehr__V1__ChainPlace *p)
{
    EHR_ASSERT(p != NULL);
    EHR_ASSERT(p->tx_hash.len == EHR_HASH_BYTES);
    json_t *parts = fhir_array(), *part;
    part = fhir_object();
    fhir_set(part, "url", fhir_string("height"));
    fhir_set(part, "valueDecimal", cli__json_u64(p->height)); /* FHIR has no 64-bit integer */
    fhir_push(parts, part);
    part = fhir_object();
    fhir_set(part, "url", fhir_string("position"));
    fhir_set(part, "valueUnsignedInt", json_integer((json_int_t)p->position));
    fhir_push(parts, part);
    char hex[FHIR_HEX_BYTES];
    fhir_hex(p->tx_hash.data, p->tx_hash.len, hex);
    part = fhir_object();
    fhir_set(part, "url", fhir_string("tx-hash"));
    fhir_set(part, "valueString", fhir_string(hex));
    fhir_push(parts, part);
    char time[FHIR_TIME_BYTES];
    if (fhir_time(p->time_ms, time)) {
        part = fhir_object();
        fhir_set(part, "url", fhir_string("time"));
        fhir_set(part, "valueInstant", fhir_string(time));
        fhir_push(parts, part);
    }
    json_t *ext = fhir_object();
    fhir_set(ext, "url", fhir_string(url));
    fhir_set(ext, "extension", parts);
    return ext;
}

/* ---- our codes to theirs ---- */

struct fhir_code {
    const char *code;
    const char *display;
};

/* Purpose to v3 ActReason (the PurposeOfUse value set); {NULL} unknown. */
static struct fhir_code fhir_purpose(int purpose)
{
    switch (purpose) {
    case EHR__V1__PURPOSE__PURPOSE_TREATMENT:
        return (struct fhir_code){"TREAT", "treatment"};
    case EHR__V1__PURPOSE__PURPOSE_PAYMENT:
        return (struct fhir_code){"HPAYMT", "healthcare payment"};
    case EHR__V1__PURPOSE__PURPOSE_OPERATIONS:
        return (struct fhir_code){"HOPERAT", "healthcare operations"};
    case EHR__V1__PURPOSE__PURPOSE_RESEARCH:
        return (struct fhir_code){"HRESCH", "healthcare research"};
    case EHR__V1__PURPOSE__PURPOSE_PUBLIC_HEALTH:
        return (struct fhir_code){"PUBHLTH", "public health"};
    case EHR__V1__PURPOSE__PURPOSE_EMERGENCY:
        return (struct fhir_code){"ETREAT", "Emergency Treatment"};
    default:
        return (struct fhir_code){NULL, NULL};
    }
}

/* A record type's FHIR resource type (Consent.provision.class) and LOINC
 * document type (Consent.provision.code; {NULL} where none fits). */
struct fhir_record_type {
    const char *resource;
    struct fhir_code loinc;
};

static struct fhir_record_type fhir_record_type(int type)
{
    switch (type) {
    case EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING:
        return (struct fhir_record_type){"ImagingStudy", {"18748-4", "Diagnostic imaging study"}};
    case EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT:
        return (struct fhir_record_type){"DiagnosticReport", {"11502-2", "Laboratory report"}};
    case EHR__V1__RECORD_TYPE__RECORD_TYPE_PRESCRIPTION:
        return (struct fhir_record_type){"MedicationRequest",
                                         {"57833-6", "Prescription for medication"}};
    case EHR__V1__RECORD_TYPE__RECORD_TYPE_DISCHARGE_SUMMARY:
        return (struct fhir_record_type){"DocumentReference", {"18842-5", "Discharge summary"}};
    case EHR__V1__RECORD_TYPE__RECORD_TYPE_CLINICAL_NOTE:
        return (struct fhir_record_type){"DocumentReference", {"34109-9", "Note"}};
    case EHR__V1__RECORD_TYPE__RECORD_TYPE_IMMUNIZATION:
        return (struct fhir_record_type){"Immunization", {NULL, NULL}};
    case EHR__V1__RECORD_TYPE__RECORD_TYPE_INVOICE:
        return (struct fhir_record_type){"Invoice", {NULL, NULL}};
    case EHR__V1__RECORD_TYPE__RECORD_TYPE_CLAIM:
        return (struct fhir_record_type){"Claim", {NULL, NULL}};
    case EHR__V1__RECORD_TYPE__RECORD_TYPE_GENOMIC:
        return (struct fhir_record_type){"MolecularSequence",
                                         {"51969-4", "Genetic analysis report"}};
    default:
        return (struct fhir_record_type){NULL, {NULL, NULL}};
    }
}

/* ---- Consent ---- */

/* Consent.provision: a permit to the grantee, for the purpose, in the
 * period, over the record types and record ids. */
static json_t *fhir_provision(const Ehr__V1__ConsentEntry *e, const char *grantee_name)
{
    json_t *p = fhir_object();
    fhir_set(p, "type", fhir_string("permit"));
    char time[FHIR_TIME_BYTES];
    json_t *period = fhir_object();
    if (e->valid_from_ms > 0 && fhir_time(e->valid_from_ms, time))
        fhir_set(period, "start", fhir_string(time));
    if (fhir_time(e->valid_until_ms, time))
        fhir_set(period, "end", fhir_string(time));
    if (json_object_size(period) > 0)
        fhir_set(p, "period", period);
    else
        json_decref(period);

    json_t *actors = fhir_array(), *actor = fhir_object();
    fhir_set(actor, "role", fhir_concept(FHIR_V3_PARTICIPATION, "IRCP", "information recipient"));
    fhir_set(actor, "reference",
             fhir_reference(NULL, FHIR_SYSTEM_KEY, e->grantee_key.data, e->grantee_key.len,
                            grantee_name));
    fhir_push(actors, actor);
    fhir_set(p, "actor", actors);

    struct fhir_code purpose = fhir_purpose(e->purpose);
    if (purpose.code != NULL) {
        json_t *purposes = fhir_array();
        fhir_push(purposes, fhir_coding(FHIR_V3_ACT_REASON, purpose.code, purpose.display));
        fhir_set(p, "purpose", purposes);
    }

    if (e->n_record_types > 0) {
        json_t *classes = fhir_array(), *codes = fhir_array();
        for (size_t i = 0; i < e->n_record_types; i++) {
            struct fhir_record_type t = fhir_record_type(e->record_types[i]);
            char name[64];
            cli__enum_short(&ehr__v1__record_type__descriptor, e->record_types[i], name,
                            sizeof name);
            if (t.resource != NULL)
                fhir_push(classes, fhir_coding(FHIR_RESOURCE_TYPES, t.resource, NULL));
            json_t *concept = fhir_concept(FHIR_SYSTEM_RECORD_TYPE, name, NULL);
            if (t.loinc.code != NULL)
                fhir_push(json_object_get(concept, "coding"),
                          fhir_coding(FHIR_LOINC, t.loinc.code, t.loinc.display));
            fhir_push(codes, concept);
        }
        if (json_array_size(classes) > 0)
            fhir_set(p, "class", classes);
        else
            json_decref(classes);
        fhir_set(p, "code", codes);
    }

    if (e->n_record_ids > 0) {
        json_t *data = fhir_array();
        for (size_t i = 0; i < e->n_record_ids; i++) {
            json_t *d = fhir_object();
            fhir_set(d, "meaning", fhir_string("instance"));
            fhir_set(d, "reference",
                     fhir_reference(NULL, FHIR_SYSTEM_RECORD_ID, e->record_ids[i].data,
                                    e->record_ids[i].len, NULL));
            fhir_push(data, d);
        }
        fhir_set(p, "data", data);
    }
    return p;
}

json_t *cli__fhir_consent(const Ehr__V1__ConsentInfo *c, const char *grantee_name, uint64_t now_ms)
{
    const Ehr__V1__ConsentEntry *e = c->consent;
    EHR_ASSERT(c->consent_id.len == EHR_HASH_BYTES);
    EHR_ASSERT(e->patient_key.len == EHR_SCHNORR_PUBLIC_BYTES);
    char id[FHIR_HEX_BYTES];
    fhir_hex(c->consent_id.data, c->consent_id.len, id);
    json_t *r = fhir_object();
    fhir_set(r, "resourceType", fhir_string("Consent"));
    fhir_set(r, "id", fhir_string(id)); /* 64 hex digits: FHIR's id allows 1-64 */

    json_t *ext = fhir_array();
    fhir_push(ext, fhir_place_extension(FHIR_EXT_CHAIN_PLACE, e->granted));
    if (e->revoked)
        fhir_push(ext, fhir_place_extension(FHIR_EXT_REVOKED, e->revoked_at));
    if (e->policy_program.len > 0) {
        uint8_t digest[EHR_SHA256_BYTES];
        ehr_sha256(digest, e->policy_program.data, e->policy_program.len);
        char hex[FHIR_HEX_BYTES];
        fhir_hex(digest, sizeof digest, hex);
        json_t *policy = fhir_object();
        fhir_set(policy, "url", fhir_string(FHIR_EXT_POLICY));
        fhir_set(policy, "valueString", fhir_string(hex));
        fhir_push(ext, policy);
    }
    fhir_set(r, "extension", ext);

    json_t *ids = fhir_array();
    fhir_push(ids, fhir_identifier(FHIR_SYSTEM_CONSENT_ID, c->consent_id.data, c->consent_id.len));
    fhir_set(r, "identifier", ids);

    /* Revoked, or past its period (by NOW_MS): no longer in force. A consent
     * whose period has not begun is active: granted, with a later start. */
    bool expired = now_ms >= e->valid_until_ms;
    fhir_set(r, "status", fhir_string(e->revoked || expired ? "inactive" : "active"));
    fhir_set(r, "scope", fhir_concept(FHIR_CONSENT_SCOPE, "patient-privacy", "Privacy Consent"));
    json_t *categories = fhir_array();
    fhir_push(categories, fhir_concept(FHIR_LOINC, "59284-0", "Patient Consent"));
    fhir_set(r, "category", categories);
    fhir_set(r, "patient", fhir_patient_reference(e->patient_key.data));
    char time[FHIR_TIME_BYTES];
    if (fhir_time(e->granted->time_ms, time))
        fhir_set(r, "dateTime", fhir_string(time));
    /* The patient grants: the grantor. */
    json_t *performers = fhir_array();
    fhir_push(performers, fhir_patient_reference(e->patient_key.data));
    fhir_set(r, "performer", performers);
    /* R4's ppc-1 wants a policy or a policyRule: opt-in, restricted by a
     * policy program when there is one. */
    fhir_set(r, "policyRule",
             e->policy_program.len > 0
                 ? fhir_concept(FHIR_V3_ACT_CODE, "OPTINR", "opt-in with restrictions")
                 : fhir_concept(FHIR_V3_ACT_CODE, "OPTIN", "opt-in"));
    fhir_set(r, "provision", fhir_provision(e, grantee_name));
    return r;
}

/* ---- AuditEvent ---- */

/* AuditEvent.action: C create, R read, U update, D delete (R4's AuditEventAction). */
static const char *fhir_audit_action(int kind)
{
    switch (kind) {
    case EHR__V1__AUDIT_KIND__AUDIT_KIND_ENROLL:
    case EHR__V1__AUDIT_KIND__AUDIT_KIND_ANCHOR:
    case EHR__V1__AUDIT_KIND__AUDIT_KIND_GRANT:
        return "C";
    case EHR__V1__AUDIT_KIND__AUDIT_KIND_REVOKE:
        return "U";
    case EHR__V1__AUDIT_KIND__AUDIT_KIND_ACCESS:
    case EHR__V1__AUDIT_KIND__AUDIT_KIND_EMERGENCY:
        return "R";
    case EHR__V1__AUDIT_KIND__AUDIT_KIND_ERASE:
        return "D";
    default:
        return "E";
    }
}

/* One AuditEvent.agent: KEY (a patient's, else a member's or
 * practitioner's) as TYPE; NAME may be NULL. */
static json_t *fhir_agent(const char *type, bool patient, const uint8_t *key, size_t len,
                          const char *name, bool requestor)
{
    json_t *a = fhir_object();
    fhir_set(
        a, "who",
        fhir_reference(type, patient ? FHIR_SYSTEM_PATIENT_KEY : FHIR_SYSTEM_KEY, key, len, name));
    fhir_set(a, "requestor", json_boolean(requestor));
    return a;
}

/* One AuditEvent.entity: WHAT, of entity TYPE_CODE (audit-entity-type),
 * with ROLE_CODE (object-role; NULL none). */
static json_t *fhir_entity(json_t *what, const char *type_code, const char *type_display,
                           const char *role_code, const char *role_display)
{
    json_t *e = fhir_object();
    fhir_set(e, "what", what);
    fhir_set(e, "type", fhir_coding(FHIR_ENTITY_TYPE, type_code, type_display));
    if (role_code != NULL)
        fhir_set(e, "role", fhir_coding(FHIR_OBJECT_ROLE, role_code, role_display));
    return e;
}

json_t *cli__fhir_audit_event(const Ehr__V1__AuditEvent *e,
                              const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES],
                              const char *actor_name, const char *institution_name,
                              const char *chain_id)
{
    EHR_ASSERT(e->place != NULL);
    EHR_ASSERT(e->actor.len == EHR_SCHNORR_PUBLIC_BYTES);
    char id[FHIR_HEX_BYTES], kind[64];
    fhir_hex(e->place->tx_hash.data, e->place->tx_hash.len, id);
    cli__enum_short(&ehr__v1__audit_kind__descriptor, e->kind, kind, sizeof kind);
    json_t *r = fhir_object();
    fhir_set(r, "resourceType", fhir_string("AuditEvent"));
    /* One event per transaction in a patient's trail: its hash names it. */
    fhir_set(r, "id", fhir_string(id));
    json_t *ext = fhir_array();
    fhir_push(ext, fhir_place_extension(FHIR_EXT_CHAIN_PLACE, e->place));
    fhir_set(r, "extension", ext);

    fhir_set(r, "type", fhir_coding(FHIR_DICOM, "110110", "Patient Record"));
    json_t *subtypes = fhir_array();
    fhir_push(subtypes, fhir_coding(FHIR_SYSTEM_AUDIT_KIND, kind, NULL));
    fhir_set(r, "subtype", subtypes);
    fhir_set(r, "action", fhir_string(fhir_audit_action(e->kind)));
    char time[FHIR_TIME_BYTES];
    if (!fhir_time(e->place->time_ms, time))
        snprintf(time, sizeof time, "9999-12-31T23:59:59.999Z"); /* recorded is required */
    fhir_set(r, "recorded", fhir_string(time));
    /* 0 success; 4 minor failure: a deny is the rules working, not an error. */
    bool denied = e->decision == EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY;
    fhir_set(r, "outcome", fhir_string(denied ? "4" : "0"));
    if (e->reason[0] != '\0' && !e->emergency)
        fhir_set(r, "outcomeDesc", cli__json_text(e->reason));

    json_t *purposes = fhir_array();
    struct fhir_code purpose = fhir_purpose(e->purpose);
    if (purpose.code != NULL)
        fhir_push(purposes, fhir_concept(FHIR_V3_ACT_REASON, purpose.code, purpose.display));
    if (e->emergency) {
        /* Break-glass, with the requester's reason; ETREAT as well when the
         * purpose did not say it already. */
        if (e->purpose != EHR__V1__PURPOSE__PURPOSE_EMERGENCY)
            fhir_push(purposes, fhir_concept(FHIR_V3_ACT_REASON, "ETREAT", "Emergency Treatment"));
        json_t *btg = fhir_concept(FHIR_V3_ACT_REASON, "BTG", "break the glass");
        if (e->reason[0] != '\0')
            fhir_set(btg, "text", cli__json_text(e->reason));
        fhir_push(purposes, btg);
    }
    if (json_array_size(purposes) > 0)
        fhir_set(r, "purposeOfEvent", purposes);
    else
        json_decref(purposes);

    /* Who: the signer, the requestor; for a practitioner, its member too. */
    json_t *agents = fhir_array();
    bool by_patient = memcmp(e->actor.data, patient, EHR_SCHNORR_PUBLIC_BYTES) == 0;
    bool practitioner = e->institution.len == EHR_SCHNORR_PUBLIC_BYTES &&
                        memcmp(e->institution.data, e->actor.data, EHR_SCHNORR_PUBLIC_BYTES) != 0;
    const char *actor_type = by_patient     ? "Patient"
                             : practitioner ? "Practitioner"
                                            : "Organization";
    fhir_push(agents,
              fhir_agent(actor_type, by_patient, e->actor.data, e->actor.len, actor_name, true));
    if (practitioner)
        fhir_push(agents, fhir_agent("Organization", false, e->institution.data, e->institution.len,
                                     institution_name, false));
    fhir_set(r, "agent", agents);

    /* The observer: the chain, whose every node records the same event. */
    json_t *source = fhir_object(), *observer = fhir_object(), *oid = fhir_object();
    fhir_set(oid, "system", fhir_string(FHIR_SYSTEM_CHAIN_ID));
    fhir_set(oid, "value", fhir_string(chain_id));
    fhir_set(observer, "identifier", oid);
    fhir_set(source, "site", fhir_string(chain_id));
    fhir_set(source, "observer", observer);
    json_t *source_types = fhir_array();
    fhir_push(source_types, fhir_coding(FHIR_SOURCE_TYPE, "4", "Application Server"));
    fhir_set(source, "type", source_types);
    fhir_set(r, "source", source);

    /* What: the patient, and the record or consent it concerned. */
    json_t *entities = fhir_array();
    fhir_push(entities,
              fhir_entity(fhir_patient_reference(patient), "1", "Person", "1", "Patient"));
    if (e->record_id.len == EHR_HASH_BYTES)
        fhir_push(entities, fhir_entity(fhir_reference(NULL, FHIR_SYSTEM_RECORD_ID,
                                                       e->record_id.data, e->record_id.len, NULL),
                                        "2", "System Object", "4", "Domain Resource"));
    if (e->consent_id.len == EHR_HASH_BYTES)
        fhir_push(entities, fhir_entity(fhir_reference("Consent", FHIR_SYSTEM_CONSENT_ID,
                                                       e->consent_id.data, e->consent_id.len, NULL),
                                        "2", "System Object", "13", "Security Resource"));
    fhir_set(r, "entity", entities);
    return r;
}

/* ---- Bundle ---- */

json_t *cli__fhir_bundle(json_t *resources, uint64_t now_ms)
{
    EHR_ASSERT(json_is_array(resources));
    json_t *b = fhir_object(), *entries = fhir_array();
    fhir_set(b, "resourceType", fhir_string("Bundle"));
    fhir_set(b, "type", fhir_string("collection"));
    char time[FHIR_TIME_BYTES];
    if (fhir_time(now_ms, time))
        fhir_set(b, "timestamp", fhir_string(time));
    size_t i;
    json_t *resource;
    json_array_foreach(resources, i, resource)
    {
        json_t *entry = fhir_object();
        fhir_set(entry, "resource", json_incref(resource));
        fhir_push(entries, entry);
    }
    json_decref(resources);
    fhir_set(b, "entry", entries);
    return b;
}
