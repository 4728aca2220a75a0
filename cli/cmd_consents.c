/*
 * cmd_consents.c - `ehrctl consents` (and its alias `consent list`): the
 * consents a patient granted (--patient) or a grantee holds (--grantee),
 * from ListConsents. One line per consent (its id, for a revoke; patient,
 * grantee, purpose, scope, period, policy size, where granted and revoked);
 * or --json; or --fhir, one FHIR R4 Bundle of Consents (fhir.c).
 *
 * A signed read, by the patient or the grantee (--key; by default the key
 * file given as --patient or --grantee); the options, the paging and the
 * member names are the listing's (listing.h). Every consent of a page is
 * checked before any is shown: 32-byte id and keys, the place of its grant
 * and, once revoked, of its revocation, record ids of 32 bytes.
 *
 * Not here: granting and revoking a consent (cmd_consent.c: transactions
 * the patient signs), the node's side (node/service.c), what the entries
 * mean (contracts/README.md, "World state").
 */
#include <stdio.h>
#include <string.h>

#include "listing.h"

enum { HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1 };

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
    cli__enum_short(&ehr__v1__purpose__descriptor, e->purpose, purpose, sizeof purpose);
    size_t at = 0;
    for (size_t i = 0; i < e->n_record_types && at < sizeof scope; i++) {
        char type[32];
        at += (size_t)snprintf(scope + at, sizeof scope - at, "%s%s", i > 0 ? "," : "",
                               cli__enum_short(&ehr__v1__record_type__descriptor,
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
