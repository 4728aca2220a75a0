/*
 * cmd_query.c - the listings a patient's data needs, over a node's gRPC
 * API: `ehrctl audit` (GetAuditTrail), `ehrctl records` (ListRecords) and
 * `ehrctl consents` (ListConsents); and one record, `ehrctl record show`
 * (GetRecord), whose anchor is checked here (its hash the record id, the
 * custodian's signature) before it is shown. Each checks and shows its own
 * entries; the options, the signed reads, the member names and the pager
 * they share are listing.h's.
 *
 * Not here: the node's side (node/service.c), what the entries mean
 * (contracts/README.md, "World state").
 */
#include <stdio.h>
#include <string.h>

#include "contracts.h"
#include "ledger_format.h"
#include "listing.h"

enum { HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1 };

/* ---- audit ---- */

struct audit_state {
    uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES];
    size_t emergencies;
};

static const char *audit_event_check(const Ehr__V1__AuditEvent *e)
{
    if (!cli__listing_place_ok(e->place))
        return "an event without its place on the chain";
    if (e->actor.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "an event's actor is not 32 bytes";
    if (e->institution.len != 0 && e->institution.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "an event's institution is neither empty nor 32 bytes";
    if (e->record_id.len != 0 && e->record_id.len != EHR_HASH_BYTES)
        return "an event's record_id is neither empty nor 32 bytes";
    if (e->consent_id.len != 0 && e->consent_id.len != EHR_HASH_BYTES)
        return "an event's consent_id is neither empty nor 32 bytes";
    return NULL;
}

static const char *decision_text(int decision)
{
    switch (decision) {
    case EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT:
        return "permit";
    case EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY:
        return "deny";
    default:
        return NULL;
    }
}

/* The actor of E in words: "patient", a member, or a practitioner of one. */
static void actor_text(const struct cli__listing *l, const struct audit_state *st,
                       const Ehr__V1__AuditEvent *e, char *out, size_t size)
{
    if (memcmp(e->actor.data, st->patient, EHR_SCHNORR_PUBLIC_BYTES) == 0) {
        snprintf(out, size, "patient");
        return;
    }
    char who[CLI_LISTING_NAME_SHOWN_BYTES + 32];
    cli__listing_who_text(&l->names, e->actor.data, e->actor.len, who, sizeof who);
    bool practitioner = e->institution.len == EHR_SCHNORR_PUBLIC_BYTES &&
                        memcmp(e->institution.data, e->actor.data, EHR_SCHNORR_PUBLIC_BYTES) != 0;
    if (!practitioner) {
        snprintf(out, size, "%s", who);
        return;
    }
    char of[CLI_LISTING_NAME_SHOWN_BYTES + 32];
    cli__listing_who_text(&l->names, e->institution.data, e->institution.len, of, sizeof of);
    snprintf(out, size, "practitioner %s of %s", who, of);
}

static void audit_event_print(const struct cli__listing *l, const struct audit_state *st,
                              const Ehr__V1__AuditEvent *e)
{
    char place[48], time[40], kind[32], actor[3 * CLI_LISTING_NAME_SHOWN_BYTES + 128],
        details[CLI_LISTING_LINE_BYTES];
    snprintf(place, sizeof place, "%llu/%u", (unsigned long long)e->place->height,
             e->place->position);
    cli__time_iso(e->place->time_ms, time, sizeof time);
    cli__listing_enum_short(&ehr__v1__audit_kind__descriptor, e->kind, kind, sizeof kind);
    actor_text(l, st, e, actor, sizeof actor);
    size_t at = 0;
    details[0] = '\0';
    char id[CLI_LISTING_SHORT_HEX_DIGITS + 1], purpose[32];
    if (e->record_id.len == EHR_HASH_BYTES) {
        cli__listing_short_hex(e->record_id.data, e->record_id.len, id);
        at += (size_t)snprintf(details + at, sizeof details - at, "  record %s", id);
    }
    if (e->consent_id.len == EHR_HASH_BYTES && at < sizeof details) {
        cli__listing_short_hex(e->consent_id.data, e->consent_id.len, id);
        at += (size_t)snprintf(details + at, sizeof details - at, "  consent %s", id);
    }
    if (e->purpose != EHR__V1__PURPOSE__PURPOSE_UNSPECIFIED && at < sizeof details)
        at += (size_t)snprintf(details + at, sizeof details - at, "  for %s",
                               cli__listing_enum_short(&ehr__v1__purpose__descriptor, e->purpose,
                                                       purpose, sizeof purpose));
    const char *decision = decision_text(e->decision);
    if (decision != NULL && at < sizeof details)
        at += (size_t)snprintf(details + at, sizeof details - at, "  %s", decision);
    if (e->reason[0] != '\0' && at < sizeof details) {
        char reason[CONTRACTS_REASON_BYTES_MAX + 1];
        cli__text_shown(e->reason, reason, sizeof reason);
        at += (size_t)snprintf(details + at, sizeof details - at, "  \"%s\"", reason);
    }
    if (at >= sizeof details)
        details[sizeof details - 1] = '\0';
    /* An emergency access is flagged at the start of its line. */
    printf("%s %-10s %s  %-9s  %s%s\n", e->emergency ? "!" : " ", place, time, kind, actor,
           details);
}

static json_t *audit_event_json(const struct cli__listing *l, const Ehr__V1__AuditEvent *e)
{
    const char *decision = decision_text(e->decision);
    json_t *j = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b}", "kind",
        cli__json_enum(&ehr__v1__audit_kind__descriptor, e->kind), "place",
        cli__listing_place_json(e->place), "actor",
        cli__listing_json_key(e->actor.data, e->actor.len), "actor_name",
        cli__listing_json_name(&l->names, e->actor.data, e->actor.len), "institution",
        cli__listing_json_key(e->institution.data, e->institution.len), "institution_name",
        cli__listing_json_name(&l->names, e->institution.data, e->institution.len), "record_id",
        cli__listing_json_key(e->record_id.data, e->record_id.len), "consent_id",
        cli__listing_json_key(e->consent_id.data, e->consent_id.len), "purpose",
        e->purpose != EHR__V1__PURPOSE__PURPOSE_UNSPECIFIED
            ? cli__json_enum(&ehr__v1__purpose__descriptor, e->purpose)
            : json_null(),
        "decision", decision != NULL ? json_string(decision) : json_null(), "reason",
        e->reason[0] != '\0' ? cli__json_text(e->reason) : json_null(), "emergency",
        (int)e->emergency);
    if (j == NULL)
        ehr_panic("out of memory building JSON");
    return j;
}

static const char *audit_page(struct cli__listing *l, const ProtobufCMessage *response,
                              size_t *count, ProtobufCBinaryData *next)
{
    const Ehr__V1__GetAuditTrailResponse *r = (const Ehr__V1__GetAuditTrailResponse *)response;
    struct audit_state *st = l->ctx_data;
    for (size_t i = 0; i < r->n_events; i++) {
        const char *bad = audit_event_check(r->events[i]);
        if (bad != NULL)
            return bad;
    }
    cli__listing_header(l);
    for (size_t i = 0; i < r->n_events; i++) {
        const Ehr__V1__AuditEvent *e = r->events[i];
        st->emergencies += e->emergency;
        if (l->fhir)
            json_array_append_new(
                l->entries,
                cli__fhir_audit_event(
                    e, st->patient, cli__listing_name_of(&l->names, e->actor.data, e->actor.len),
                    cli__listing_name_of(&l->names, e->institution.data, e->institution.len),
                    l->chain_id));
        else if (l->ctx->json)
            json_array_append_new(l->entries, audit_event_json(l, r->events[i]));
        else
            audit_event_print(l, st, r->events[i]);
    }
    *count = r->n_events;
    *next = r->next_page_token;
    return NULL;
}

int cli__cmd_audit(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"emergency", no_argument, NULL, 'e'},
                                            {"fhir", no_argument, NULL, 'f'},
                                            CLI_LISTING_OPTIONS,
                                            CLI_NODE_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    struct cli__listing_options q = {0};
    bool emergency = false;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'e')
            emergency = true;
        else if (cli__listing_option(ctx, c, optarg, &q) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "give one PATIENT: 64 hex digits or a key file");
    struct audit_state st = {0};
    const char *key_path = NULL;
    int exit_code = cli__listing_fhir_finish(ctx, &q);
    if (exit_code == 0)
        exit_code = cli__listing_key_arg(ctx, "PATIENT", argv[optind], st.patient);
    if (exit_code == 0)
        exit_code = cli__listing_reader_path(ctx, &q, argv[optind], "an audit trail", &key_path);
    if (exit_code == 0)
        exit_code = cli__node_options_finish(ctx, &q.node);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__GetAuditTrailRequest request = EHR__V1__GET_AUDIT_TRAIL_REQUEST__INIT;
    request.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, st.patient};
    request.emergency_only = emergency;
    struct cli__listing l = {.ctx = ctx,
                             .what = "audit",
                             .method = "GetAuditTrail",
                             .request = &request.base,
                             .request_limit = &request.limit,
                             .request_token = &request.page_token,
                             .request_auth = &request.auth,
                             .key_path = key_path,
                             .response_desc = &ehr__v1__get_audit_trail_response__descriptor,
                             .page = audit_page,
                             .ctx_data = &st,
                             .fhir = q.fhir,
                             .now_ms = cli__wall_ms()};
    exit_code = cli__listing_open(&l, &q);
    if (exit_code != 0)
        return exit_code;
    char patient_hex[HASH_HEX_BYTES];
    ehr_hex_encode(patient_hex, st.patient, EHR_SCHNORR_PUBLIC_BYTES);
    json_t *root = NULL;
    if (ctx->json) {
        root = json_pack("{s:s, s:b}", "patient", patient_hex, "emergency_only", (int)emergency);
        if (root == NULL)
            ehr_panic("out of memory building JSON");
    } else {
        snprintf(l.header, sizeof l.header, "%s of patient %s (! marks an emergency access)",
                 emergency ? "emergency accesses" : "audit trail", patient_hex);
    }
    exit_code = cli__listing_run(&l, &q, root, "events");
    cli__listing_close(&l);
    return exit_code;
}

/* ---- records ---- */

static const char *record_check(const Ehr__V1__RecordInfo *r)
{
    if (r->record_id.len != EHR_HASH_BYTES)
        return "a record_id is not 32 bytes";
    if (r->record == NULL || !cli__listing_place_ok(r->record->anchored))
        return "a record without its entry or its place";
    if (r->record->custodian.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "a record's custodian is not 32 bytes";
    if (r->record->patient_key.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "a record's patient_key is not 32 bytes";
    if (r->record->supersedes.len != 0 && r->record->supersedes.len != EHR_HASH_BYTES)
        return "a record's supersedes is neither empty nor 32 bytes";
    if (r->record->superseded_by.len != 0 && r->record->superseded_by.len != EHR_HASH_BYTES)
        return "a record's superseded_by is neither empty nor 32 bytes";
    return NULL;
}

static void record_print(const struct cli__listing *l, const Ehr__V1__RecordInfo *r)
{
    const Ehr__V1__RecordEntry *e = r->record;
    char id[HASH_HEX_BYTES], type[32], custodian[CLI_LISTING_NAME_SHOWN_BYTES + 32], time[40];
    char line[CLI_LISTING_LINE_BYTES];
    ehr_hex_encode(id, r->record_id.data, EHR_HASH_BYTES);
    cli__listing_enum_short(&ehr__v1__record_type__descriptor, e->record_type, type, sizeof type);
    cli__listing_who_text(&l->names, e->custodian.data, e->custodian.len, custodian,
                          sizeof custodian);
    cli__time_iso(e->anchored->time_ms, time, sizeof time);
    size_t at = (size_t)snprintf(line, sizeof line, "%s  %-17s  %llu/%u  %s  custodian %s", id,
                                 type, (unsigned long long)e->anchored->height,
                                 e->anchored->position, time, custodian);
    char other[CLI_LISTING_SHORT_HEX_DIGITS + 1];
    if (e->supersedes.len == EHR_HASH_BYTES && at < sizeof line) {
        cli__listing_short_hex(e->supersedes.data, EHR_HASH_BYTES, other);
        at += (size_t)snprintf(line + at, sizeof line - at, "  supersedes %s", other);
    }
    if (e->superseded_by.len == EHR_HASH_BYTES && at < sizeof line) {
        cli__listing_short_hex(e->superseded_by.data, EHR_HASH_BYTES, other);
        snprintf(line + at, sizeof line - at, "  superseded by %s", other);
    }
    printf("%s\n", line);
}

static json_t *record_json(const struct cli__listing *l, const Ehr__V1__RecordInfo *r)
{
    const Ehr__V1__RecordEntry *e = r->record;
    json_t *j =
        json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "record_id",
                  cli__json_hex(r->record_id.data, EHR_HASH_BYTES), "record_type",
                  cli__json_enum(&ehr__v1__record_type__descriptor, e->record_type), "patient_key",
                  cli__json_hex(e->patient_key.data, e->patient_key.len), "custodian",
                  cli__json_hex(e->custodian.data, e->custodian.len), "custodian_name",
                  cli__listing_json_name(&l->names, e->custodian.data, e->custodian.len),
                  "anchored", cli__listing_place_json(e->anchored), "supersedes",
                  cli__listing_json_key(e->supersedes.data, e->supersedes.len), "superseded_by",
                  cli__listing_json_key(e->superseded_by.data, e->superseded_by.len));
    if (j == NULL)
        ehr_panic("out of memory building JSON");
    return j;
}

static const char *records_page(struct cli__listing *l, const ProtobufCMessage *response,
                                size_t *count, ProtobufCBinaryData *next)
{
    const Ehr__V1__ListRecordsResponse *r = (const Ehr__V1__ListRecordsResponse *)response;
    for (size_t i = 0; i < r->n_records; i++) {
        const char *bad = record_check(r->records[i]);
        if (bad != NULL)
            return bad;
    }
    cli__listing_header(l);
    for (size_t i = 0; i < r->n_records; i++) {
        if (l->ctx->json)
            json_array_append_new(l->entries, record_json(l, r->records[i]));
        else
            record_print(l, r->records[i]);
    }
    *count = r->n_records;
    *next = r->next_page_token;
    return NULL;
}

int cli__cmd_records(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"type", required_argument, NULL, 'y'},
                                            CLI_LISTING_OPTIONS,
                                            CLI_NODE_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    struct cli__listing_options q = {0};
    int type = EHR__V1__RECORD_TYPE__RECORD_TYPE_UNSPECIFIED;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'y') {
            const ProtobufCEnumValue *ev =
                cli__enum_value(&ehr__v1__record_type__descriptor, optarg);
            if (ev == NULL || ev->value == EHR__V1__RECORD_TYPE__RECORD_TYPE_UNSPECIFIED)
                return cli__usage_error(ctx, "--type wants a record type: imaging, lab_result, "
                                             "prescription, discharge_summary, clinical_note, "
                                             "immunization, invoice, claim, genomic");
            type = ev->value;
        } else if (cli__listing_option(ctx, c, optarg, &q) != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "give one PATIENT: 64 hex digits or a key file");
    uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES];
    const char *key_path = NULL;
    int exit_code = cli__listing_key_arg(ctx, "PATIENT", argv[optind], patient);
    if (exit_code == 0)
        exit_code = cli__listing_reader_path(ctx, &q, argv[optind], "records", &key_path);
    if (exit_code == 0)
        exit_code = cli__node_options_finish(ctx, &q.node);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__ListRecordsRequest request = EHR__V1__LIST_RECORDS_REQUEST__INIT;
    request.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, patient};
    request.record_type = type;
    struct cli__listing l = {.ctx = ctx,
                             .what = "records",
                             .method = "ListRecords",
                             .request = &request.base,
                             .request_limit = &request.limit,
                             .request_token = &request.page_token,
                             .request_auth = &request.auth,
                             .key_path = key_path,
                             .response_desc = &ehr__v1__list_records_response__descriptor,
                             .page = records_page};
    exit_code = cli__listing_open(&l, &q);
    if (exit_code != 0)
        return exit_code;
    char patient_hex[HASH_HEX_BYTES];
    ehr_hex_encode(patient_hex, patient, EHR_SCHNORR_PUBLIC_BYTES);
    json_t *root = NULL;
    if (ctx->json) {
        root = json_pack("{s:s, s:o}", "patient", patient_hex, "record_type",
                         type != EHR__V1__RECORD_TYPE__RECORD_TYPE_UNSPECIFIED
                             ? cli__json_enum(&ehr__v1__record_type__descriptor, type)
                             : json_null());
        if (root == NULL)
            ehr_panic("out of memory building JSON");
    } else {
        snprintf(l.header, sizeof l.header,
                 "records of patient %s (record id, type, anchored at height/position and "
                 "time, custodian)",
                 patient_hex);
    }
    exit_code = cli__listing_run(&l, &q, root, "records");
    cli__listing_close(&l);
    return exit_code;
}

/* ---- consents ---- */

static const char *consent_check(const Ehr__V1__ConsentInfo *r)
{
    if (r->consent_id.len != EHR_HASH_BYTES)
        return "a consent_id is not 32 bytes";
    const Ehr__V1__ConsentEntry *e = r->consent;
    if (e == NULL || !cli__listing_place_ok(e->granted))
        return "a consent without its entry or its place";
    if (e->patient_key.len != EHR_SCHNORR_PUBLIC_BYTES ||
        e->grantee_key.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "a consent's patient or grantee key is not 32 bytes";
    if (e->revoked && !cli__listing_place_ok(e->revoked_at))
        return "a revoked consent without the place of its revocation";
    for (size_t i = 0; i < e->n_record_ids; i++)
        if (e->record_ids[i].len != EHR_HASH_BYTES)
            return "a consent's record id is not 32 bytes";
    return NULL;
}

/* The period [FROM, UNTIL) in block time: "FROM..UNTIL" (UTC, ISO-8601), or
 * "until UNTIL" when it starts at 0, into OUT. */
static void period_text(uint64_t from_ms, uint64_t until_ms, char *out, size_t size)
{
    char from[40], until[40];
    cli__time_iso(from_ms, from, sizeof from);
    cli__time_iso(until_ms, until, sizeof until);
    if (from_ms == 0)
        snprintf(out, size, "until %s", until);
    else
        snprintf(out, size, "%s..%s", from, until);
}

static void consent_print(const struct cli__listing *l, const Ehr__V1__ConsentInfo *r)
{
    const Ehr__V1__ConsentEntry *e = r->consent;
    char id[HASH_HEX_BYTES], grantee[CLI_LISTING_NAME_SHOWN_BYTES + 32],
        patient[CLI_LISTING_SHORT_HEX_DIGITS + 1];
    char purpose[32], scope[CLI_LISTING_LINE_BYTES / 2], period[96], line[CLI_LISTING_LINE_BYTES],
        time[40];
    ehr_hex_encode(id, r->consent_id.data, EHR_HASH_BYTES);
    cli__listing_who_text(&l->names, e->grantee_key.data, e->grantee_key.len, grantee,
                          sizeof grantee);
    cli__listing_short_hex(e->patient_key.data, EHR_SCHNORR_PUBLIC_BYTES, patient);
    cli__listing_enum_short(&ehr__v1__purpose__descriptor, e->purpose, purpose, sizeof purpose);
    size_t at = 0;
    for (size_t i = 0; i < e->n_record_types && at < sizeof scope; i++) {
        char type[32];
        at += (size_t)snprintf(scope + at, sizeof scope - at, "%s%s", i > 0 ? "," : "",
                               cli__listing_enum_short(&ehr__v1__record_type__descriptor,
                                                       e->record_types[i], type, sizeof type));
    }
    if (e->n_record_ids > 0 && at < sizeof scope)
        at += (size_t)snprintf(scope + at, sizeof scope - at, "%s%zu record%s", at > 0 ? " + " : "",
                               e->n_record_ids, e->n_record_ids == 1 ? "" : "s");
    if (at == 0)
        snprintf(scope, sizeof scope, "-");
    period_text(e->valid_from_ms, e->valid_until_ms, period, sizeof period);
    cli__time_iso(e->granted->time_ms, time, sizeof time);
    at = (size_t)snprintf(line, sizeof line,
                          "%s  patient %s  grantee %s  %s  %s  %s  policy %zu bytes  granted "
                          "%llu/%u %s",
                          id, patient, grantee, purpose, scope, period, e->policy_program.len,
                          (unsigned long long)e->granted->height, e->granted->position, time);
    if (e->revoked && at < sizeof line) {
        cli__time_iso(e->revoked_at->time_ms, time, sizeof time);
        snprintf(line + at, sizeof line - at, "  REVOKED %llu/%u %s",
                 (unsigned long long)e->revoked_at->height, e->revoked_at->position, time);
    }
    printf("%s\n", line);
}

static json_t *consent_json(const struct cli__listing *l, const Ehr__V1__ConsentInfo *r)
{
    const Ehr__V1__ConsentEntry *e = r->consent;
    json_t *types = json_array(), *ids = json_array();
    if (types == NULL || ids == NULL)
        ehr_panic("out of memory building JSON");
    for (size_t i = 0; i < e->n_record_types; i++)
        json_array_append_new(
            types, cli__json_enum(&ehr__v1__record_type__descriptor, e->record_types[i]));
    for (size_t i = 0; i < e->n_record_ids; i++)
        json_array_append_new(ids, cli__json_hex(e->record_ids[i].data, e->record_ids[i].len));
    json_t *j = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:b, s:o}", "consent_id",
        cli__json_hex(r->consent_id.data, EHR_HASH_BYTES), "patient_key",
        cli__json_hex(e->patient_key.data, e->patient_key.len), "grantee_key",
        cli__json_hex(e->grantee_key.data, e->grantee_key.len), "grantee_name",
        cli__listing_json_name(&l->names, e->grantee_key.data, e->grantee_key.len), "purpose",
        cli__json_enum(&ehr__v1__purpose__descriptor, e->purpose), "record_types", types,
        "record_ids", ids, "valid_from_ms", cli__json_u64(e->valid_from_ms), "valid_until_ms",
        cli__json_u64(e->valid_until_ms), "policy_program",
        cli__json_hex(e->policy_program.data, e->policy_program.len), "policy_bytes",
        (json_int_t)e->policy_program.len, "granted", cli__listing_place_json(e->granted),
        "revoked", (int)e->revoked, "revoked_at",
        e->revoked ? cli__listing_place_json(e->revoked_at) : json_null());
    if (j == NULL)
        ehr_panic("out of memory building JSON");
    return j;
}

static const char *consents_page(struct cli__listing *l, const ProtobufCMessage *response,
                                 size_t *count, ProtobufCBinaryData *next)
{
    const Ehr__V1__ListConsentsResponse *r = (const Ehr__V1__ListConsentsResponse *)response;
    for (size_t i = 0; i < r->n_consents; i++) {
        const char *bad = consent_check(r->consents[i]);
        if (bad != NULL)
            return bad;
    }
    cli__listing_header(l);
    for (size_t i = 0; i < r->n_consents; i++) {
        const Ehr__V1__ConsentEntry *e = r->consents[i]->consent;
        if (l->fhir)
            json_array_append_new(
                l->entries, cli__fhir_consent(r->consents[i],
                                              cli__listing_name_of(&l->names, e->grantee_key.data,
                                                                   e->grantee_key.len),
                                              l->now_ms));
        else if (l->ctx->json)
            json_array_append_new(l->entries, consent_json(l, r->consents[i]));
        else
            consent_print(l, r->consents[i]);
    }
    *count = r->n_consents;
    *next = r->next_page_token;
    return NULL;
}

int cli__cmd_consents(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"patient", required_argument, NULL, 'P'},
                                            {"grantee", required_argument, NULL, 'G'},
                                            {"fhir", no_argument, NULL, 'f'},
                                            CLI_LISTING_OPTIONS,
                                            CLI_NODE_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    struct cli__listing_options q = {0};
    const char *patient_arg = NULL, *grantee_arg = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'P')
            patient_arg = optarg;
        else if (c == 'G')
            grantee_arg = optarg;
        else if (cli__listing_option(ctx, c, optarg, &q) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if ((patient_arg == NULL) == (grantee_arg == NULL))
        return cli__usage_error(ctx, "give --patient KEY or --grantee KEY (one of them)");
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES];
    bool by_patient = patient_arg != NULL;
    const char *key_path = NULL;
    int exit_code = cli__listing_fhir_finish(ctx, &q);
    if (exit_code == 0)
        exit_code = cli__listing_key_arg(ctx, by_patient ? "--patient" : "--grantee",
                                         by_patient ? patient_arg : grantee_arg, key);
    if (exit_code == 0)
        exit_code = cli__listing_reader_path(ctx, &q, by_patient ? patient_arg : grantee_arg,
                                             "consents", &key_path);
    if (exit_code == 0)
        exit_code = cli__node_options_finish(ctx, &q.node);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__ListConsentsRequest request = EHR__V1__LIST_CONSENTS_REQUEST__INIT;
    if (by_patient)
        request.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, key};
    else
        request.grantee_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, key};
    struct cli__listing l = {.ctx = ctx,
                             .what = "consents",
                             .method = "ListConsents",
                             .request = &request.base,
                             .request_limit = &request.limit,
                             .request_token = &request.page_token,
                             .request_auth = &request.auth,
                             .key_path = key_path,
                             .response_desc = &ehr__v1__list_consents_response__descriptor,
                             .page = consents_page,
                             .fhir = q.fhir,
                             .now_ms = cli__wall_ms()};
    exit_code = cli__listing_open(&l, &q);
    if (exit_code != 0)
        return exit_code;
    char key_hex[HASH_HEX_BYTES], who[CLI_LISTING_NAME_SHOWN_BYTES + 32];
    ehr_hex_encode(key_hex, key, EHR_SCHNORR_PUBLIC_BYTES);
    json_t *root = NULL;
    if (ctx->json) {
        root = json_pack("{s:o, s:o}", "patient", by_patient ? json_string(key_hex) : json_null(),
                         "grantee", by_patient ? json_null() : json_string(key_hex));
        if (root == NULL)
            ehr_panic("out of memory building JSON");
    } else {
        cli__listing_who_text(&l.names, key, EHR_SCHNORR_PUBLIC_BYTES, who, sizeof who);
        snprintf(l.header, sizeof l.header, "consents %s %s%s%s",
                 by_patient ? "of patient" : "held by", by_patient ? key_hex : who,
                 by_patient ? "" : " ", by_patient ? "" : key_hex);
    }
    exit_code = cli__listing_run(&l, &q, root, "consents");
    cli__listing_close(&l);
    return exit_code;
}

/* ---- record show ---- */

/*
 * The anchor envelope of GetRecord checked against the record R: framed as
 * a TxEnvelope, its hash the record id, signed by the custodian, a
 * RecordAnchor of the record's patient and type. Returns NULL with *BODY
 * decoded (free it), or why the answer is bad.
 */
static const char *anchor_check(const ProtobufCBinaryData *envelope, const Ehr__V1__RecordInfo *r,
                                Ehr__V1__TxBody **body)
{
    *body = NULL;
    ledger_tx_view v;
    if (ledger_tx_envelope_parse(envelope->data, envelope->len, &v, NULL) != 0)
        return "the anchor is not a TxEnvelope";
    uint8_t hash[EHR_HASH_BYTES];
    ledger_tx_hash(v.body, v.body_len, hash);
    if (memcmp(hash, r->record_id.data, EHR_HASH_BYTES) != 0)
        return "the anchor's hash is not the record id";
    /* The transaction signs SHA-256 of its body: the record id. */
    if (ehr_schnorr_verify_bytes(r->record->custodian.data, hash, v.signature) != 0)
        return "the anchor is not signed by the record's custodian";
    *body = ehr__v1__tx_body__unpack(NULL, v.body_len, v.body);
    if (*body == NULL || (*body)->payload_case != EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR)
        return "the anchor is not a RecordAnchor";
    const Ehr__V1__RecordAnchor *a = (*body)->record_anchor;
    if (a->patient_key.len != EHR_SCHNORR_PUBLIC_BYTES ||
        memcmp(a->patient_key.data, r->record->patient_key.data, EHR_SCHNORR_PUBLIC_BYTES) != 0 ||
        a->record_type != r->record->record_type)
        return "the anchor names another patient or record type than the record's entry";
    if (a->ciphertext_hash.len != EHR_HASH_BYTES)
        return "the anchor's ciphertext hash is not 32 bytes";
    return NULL;
}

static void record_show_print(const struct cli__listing *l, const Ehr__V1__RecordInfo *r,
                              const Ehr__V1__RecordAnchor *a)
{
    const Ehr__V1__RecordEntry *e = r->record;
    char hex[HASH_HEX_BYTES], text[CLI_LISTING_LINE_BYTES], time[40];
    ehr_hex_encode(hex, r->record_id.data, EHR_HASH_BYTES);
    cli__print_field("record id", hex);
    ehr_hex_encode(hex, e->patient_key.data, EHR_SCHNORR_PUBLIC_BYTES);
    cli__print_field("patient", hex);
    cli__print_field("type", cli__listing_enum_short(&ehr__v1__record_type__descriptor,
                                                     e->record_type, text, sizeof text));
    cli__listing_who_text(&l->names, e->custodian.data, e->custodian.len, text, sizeof text);
    cli__print_field("custodian", text);
    cli__time_iso(e->anchored->time_ms, time, sizeof time);
    snprintf(text, sizeof text, "height %llu, position %u, %s",
             (unsigned long long)e->anchored->height, e->anchored->position, time);
    cli__print_field("anchored", text);
    hex[0] = '\0';
    if (e->supersedes.len == EHR_HASH_BYTES)
        ehr_hex_encode(hex, e->supersedes.data, EHR_HASH_BYTES);
    cli__print_field("supersedes", hex[0] ? hex : "-");
    hex[0] = '\0';
    if (e->superseded_by.len == EHR_HASH_BYTES)
        ehr_hex_encode(hex, e->superseded_by.data, EHR_HASH_BYTES);
    cli__print_field("superseded by", hex[0] ? hex : "-");
    /* The pointer is sealed: shown as hex, its first bytes only. */
    enum { POINTER_SHOWN_BYTES = 64 };
    char pointer[2 * POINTER_SHOWN_BYTES + 1];
    size_t shown = a->encrypted_pointer.len < POINTER_SHOWN_BYTES ? a->encrypted_pointer.len
                                                                  : POINTER_SHOWN_BYTES;
    ehr_hex_encode(pointer, a->encrypted_pointer.data, shown);
    snprintf(text, sizeof text, "%s%s (%zu bytes, encrypted)", pointer,
             shown < a->encrypted_pointer.len ? "..." : "", a->encrypted_pointer.len);
    cli__print_field("pointer", text);
    ehr_hex_encode(hex, a->ciphertext_hash.data, EHR_HASH_BYTES);
    snprintf(text, sizeof text, "%s, %llu bytes", hex, (unsigned long long)a->ciphertext_bytes);
    cli__print_field("ciphertext", text);
    snprintf(text, sizeof text, "%zu bytes", a->key_capsule.len);
    cli__print_field("key capsule", text);
    cli__print_field("signature", "verified: the custodian's");
}

static json_t *record_show_json(const struct cli__listing *l, const Ehr__V1__RecordInfo *r,
                                const Ehr__V1__RecordAnchor *a)
{
    json_t *j = record_json(l, r);
    if (json_object_set_new(j, "encrypted_pointer",
                            cli__json_hex(a->encrypted_pointer.data, a->encrypted_pointer.len)) !=
            0 ||
        json_object_set_new(j, "ciphertext_hash",
                            cli__json_hex(a->ciphertext_hash.data, EHR_HASH_BYTES)) != 0 ||
        json_object_set_new(j, "ciphertext_bytes", cli__json_u64(a->ciphertext_bytes)) != 0 ||
        json_object_set_new(j, "key_capsule",
                            cli__json_hex(a->key_capsule.data, a->key_capsule.len)) != 0 ||
        json_object_set_new(j, "signature_verified", json_true()) != 0)
        ehr_panic("out of memory building JSON");
    return j;
}

int cli__cmd_record_show(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"key", required_argument, NULL, 'k'},
                                            {"passphrase-file", required_argument, NULL, 'p'},
                                            CLI_NODE_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    struct cli__listing_options q = {0};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (cli__listing_option(ctx, c, optarg, &q) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "give one RECORD_ID (the anchor's transaction hash, as "
                                     "record anchor and records print it)");
    uint8_t id[EHR_HASH_BYTES];
    ehr_diag why;
    if (cli__hex_arg(argv[optind], id, sizeof id, &why) != 0)
        return cli__usage_error(ctx, "RECORD_ID %s", why.msg);
    if (q.key_path == NULL)
        return cli__usage_error(ctx, "a read of a record is signed by its reader: give --key "
                                     "FILE (the patient's key file, the custodian's, or a "
                                     "grantee's)");
    int exit_code = cli__node_options_finish(ctx, &q.node);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__GetRecordRequest request = EHR__V1__GET_RECORD_REQUEST__INIT;
    request.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, id};
    /* One answer, not a listing: the listing's key, connection, names and
     * signed call, without its pager. */
    struct cli__listing l = {.ctx = ctx,
                             .what = "record show",
                             .method = "GetRecord",
                             .request = &request.base,
                             .request_auth = &request.auth,
                             .key_path = q.key_path};
    exit_code = cli__listing_open(&l, &q);
    if (exit_code != 0)
        return exit_code;
    struct rpc_result result;
    exit_code = cli__listing_call(&l, &result);
    if (exit_code != 0) {
        cli__listing_close(&l);
        return exit_code;
    }
    Ehr__V1__GetRecordResponse *r =
        ehr__v1__get_record_response__unpack(NULL, result.response_len, result.response);
    rpc_result_clear(&result);
    Ehr__V1__TxBody *body = NULL;
    const char *bad = r == NULL           ? "the answer does not decode"
                      : r->record == NULL ? "no record in the answer"
                                          : record_check(r->record);
    if (bad == NULL && memcmp(r->record->record_id.data, id, EHR_HASH_BYTES) != 0)
        bad = "the answer is another record";
    if (bad == NULL)
        bad = anchor_check(&r->anchor_envelope, r->record, &body);
    if (bad != NULL) {
        exit_code = cli__node_bad_answer(&l.node, "record show", bad);
    } else if (ctx->json) {
        exit_code = cli__json_print(record_show_json(&l, r->record, body->record_anchor));
    } else {
        record_show_print(&l, r->record, body->record_anchor);
    }
    if (body != NULL)
        ehr__v1__tx_body__free_unpacked(body, NULL);
    if (r != NULL)
        ehr__v1__get_record_response__free_unpacked(r, NULL);
    cli__listing_close(&l);
    return exit_code;
}
