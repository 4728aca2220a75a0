/*
 * cmd_audit.c - `ehrctl audit`: a patient's audit trail (GetAuditTrail),
 * every enrolment, anchor, grant, revoke and access in chain order, or the
 * emergency accesses only (--emergency). One line per event, its actor in
 * words (the patient, a member by name, a practitioner and its member) and
 * an emergency access marked with "!"; or --json; or --fhir, one FHIR R4
 * Bundle of AuditEvents (fhir.c).
 *
 * A signed read, by the patient or a regulator (--key; by default the
 * patient's key file); the options, the paging and the member names are
 * the listing's (listing.h). Every event of a page is checked before any
 * is shown: its place on the chain, a 32-byte actor, the other keys and
 * ids 32 bytes or empty.
 *
 * Not here: the node's side (node/service.c), what the events mean
 * (contracts/README.md, "World state").
 */
#include <stdio.h>
#include <string.h>

#include "contracts.h"
#include "listing.h"

enum { HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1 };

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
    cli__enum_short(&ehr__v1__audit_kind__descriptor, e->kind, kind, sizeof kind);
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
        at += (size_t)snprintf(
            details + at, sizeof details - at, "  for %s",
            cli__enum_short(&ehr__v1__purpose__descriptor, e->purpose, purpose, sizeof purpose));
    const char *decision = cli__result_decision_name(e->decision);
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
    const char *decision = cli__result_decision_name(e->decision);
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
