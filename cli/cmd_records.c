/*
 * cmd_records.c - reading a patient's records: `ehrctl records` (and its
 * alias `record list`), one line per record (ListRecords), or --json; and
 * `ehrctl record show`, one record's anchor (GetRecord), which is checked
 * here before it is shown: its hash is the record id, the custodian signed
 * it, and it names the record's patient and type.
 *
 * Both are signed reads (listing.h): `records` pages through the listing's
 * pager, by default signed with the patient's key file; `record show` makes
 * one signed call and wants --key. Every record is checked before any is
 * shown: a 32-byte id, custodian and patient key, its place on the chain,
 * what it supersedes or is superseded by 32 bytes or empty.
 *
 * Not here: anchoring a record (`record anchor`, cmd_record.c), the node's
 * side (node/service.c), what the entries mean (contracts/README.md,
 * "World state").
 */
#include <stdio.h>
#include <string.h>

#include "ledger_format.h"
#include "listing.h"

enum { HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1 };

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
    if (r->record->erased && !cli__listing_place_ok(r->record->erased_at))
        return "an erased record without the place of its erasure";
    return NULL;
}

static void record_print(const struct cli__listing *l, const Ehr__V1__RecordInfo *r)
{
    const Ehr__V1__RecordEntry *e = r->record;
    char id[HASH_HEX_BYTES], type[32], custodian[CLI_LISTING_NAME_SHOWN_BYTES + 32], time[40];
    char line[CLI_LISTING_LINE_BYTES];
    ehr_hex_encode(id, r->record_id.data, EHR_HASH_BYTES);
    cli__enum_short(&ehr__v1__record_type__descriptor, e->record_type, type, sizeof type);
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
        at += (size_t)snprintf(line + at, sizeof line - at, "  superseded by %s", other);
    }
    if (e->erased && at < sizeof line)
        snprintf(line + at, sizeof line - at, "  ERASED at %llu/%u",
                 (unsigned long long)e->erased_at->height, e->erased_at->position);
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
    if (j == NULL || json_object_set_new(j, "erased", json_boolean(e->erased)) != 0 ||
        json_object_set_new(j, "erased_at",
                            e->erased ? cli__listing_place_json(e->erased_at) : json_null()) != 0 ||
        json_object_set_new(
            j, "erase_ground",
            e->erased ? cli__json_enum(&ehr__v1__erase_ground__descriptor, (int)e->erase_ground)
                      : json_null()) != 0)
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
                 "time, custodian; ERASED once the patient erased it)",
                 patient_hex);
    }
    exit_code = cli__listing_run(&l, &q, root, "records");
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
    cli__print_field("type", cli__enum_short(&ehr__v1__record_type__descriptor, e->record_type,
                                             text, sizeof text));
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
    if (e->erased) {
        char ground[40];
        cli__time_iso(e->erased_at->time_ms, time, sizeof time);
        snprintf(text, sizeof text,
                 "by the patient at height %llu, position %u, %s (%s): its ciphertext is deleted "
                 "and no node serves it",
                 (unsigned long long)e->erased_at->height, e->erased_at->position, time,
                 cli__enum_short(&ehr__v1__erase_ground__descriptor, (int)e->erase_ground, ground,
                                 sizeof ground));
        cli__print_field("ERASED", text);
    }
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
    uint8_t id[EHR_HASH_BYTES];
    if (cli__one_hash_arg(ctx, argc, argv, "RECORD_ID", CLI_RECORD_ID_HINT, id) != 0)
        return CLI_EXIT_USAGE;
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
