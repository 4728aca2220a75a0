/*
 * cmd_access.c - `ehrctl access request` and `access emergency`: a member
 * or a registered practitioner (whose key signs) asks to open a record,
 * for a purpose under the patient's consents, or in an emergency with a
 * stated reason under the chain's genesis policy (tx.proto AccessRequest,
 * EmergencyAccess).
 *
 * The decision is the answer, so both wait for the commit (--wait is
 * implied) and print it: permit (with the consent that permitted it and
 * the policy's gas) or deny (with why). A deny is a decided outcome, exit
 * 0; only a refusal of the transaction itself (a signer who is neither a
 * member nor a practitioner, a record that does not exist) is a failure.
 * The payload carries the requester's X25519 key, the one the record key
 * is re-encrypted to: taken from the signer's own key file.
 *
 * Not here: signing and submitting (submit.c, cli__signed_tx_submit);
 * opening the record itself (record encryption is not built yet).
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"
#include "contracts.h"

enum { NAMES_BYTES = 256 /* the purposes' names, for a message */ };

struct access_args {
    const char *purpose_arg; /* access request */
    const char *reason;      /* access emergency */
    struct cli__signed_tx tx;
    uint8_t record_id[EHR_HASH_BYTES];
    int purpose;
};

/* Parse either command's arguments: EMERGENCY takes --reason, the request
 * --purpose. Returns 0 or the exit status. */
static int access_parse(struct cli__ctx *ctx, int argc, char **argv, bool emergency,
                        struct access_args *a)
{
    static const struct option request_options[] = {
        {"purpose", required_argument, NULL, 'u'}, CLI_SIGNED_TX_OPTIONS, CLI_COMMON_OPTIONS};
    static const struct option emergency_options[] = {
        {"reason", required_argument, NULL, 'R'}, CLI_SIGNED_TX_OPTIONS, CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, emergency ? emergency_options : request_options)) >=
           0) {
        if (c == 'u')
            a->purpose_arg = optarg;
        else if (c == 'R')
            a->reason = optarg;
        else if (cli__signed_tx_option(ctx, c, optarg, &a->tx) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (cli__one_hash_arg(ctx, argc, argv, "RECORD_ID", CLI_RECORD_ID_HINT, a->record_id) != 0)
        return CLI_EXIT_USAGE;
    if (emergency) {
        /* The rules' own test of a reason, made first: 1..256 bytes of
         * printable UTF-8 (a reason is shown to people reading the trail). */
        if (a->reason == NULL || a->reason[0] == '\0')
            return cli__usage_error(ctx, "--reason TEXT is required: an emergency access states "
                                         "why (it is shown in the patient's audit trail)");
        if (!ledger_text_ok(a->reason, CONTRACTS_EMERGENCY_REASON_BYTES_MAX))
            return cli__usage_error(ctx,
                                    "--reason wants 1 to %d bytes of UTF-8 text without "
                                    "control characters (%zu bytes given)",
                                    CONTRACTS_EMERGENCY_REASON_BYTES_MAX, strlen(a->reason));
    } else {
        if (a->purpose_arg == NULL)
            return cli__usage_error(ctx, "--purpose P, why access is sought, is required");
        if (cli__enum_arg(&ehr__v1__purpose__descriptor, a->purpose_arg, &a->purpose) != 0) {
            char names[NAMES_BYTES];
            cli__enum_names(&ehr__v1__purpose__descriptor, names, sizeof names);
            return cli__usage_error(ctx, "--purpose \"%.40s\" is not a purpose: %s", a->purpose_arg,
                                    names);
        }
    }
    /* The decision is the answer: always wait for it. */
    a->tx.submit.wait = true;
    return cli__signed_tx_finish(ctx, &a->tx);
}

static int access_run(struct cli__ctx *ctx, int argc, char **argv, bool emergency)
{
    struct access_args a = {0};
    int exit_code = access_parse(ctx, argc, argv, emergency, &a);
    if (exit_code != 0)
        return exit_code;
    ehr_identity *id = NULL;
    ehr_keyfile_info info;
    exit_code = cli__identity_load(a.tx.key_path, a.tx.passphrase_file, &id, &info);
    if (exit_code != 0)
        return exit_code;
    ProtobufCBinaryData record = {EHR_HASH_BYTES, a.record_id};
    ProtobufCBinaryData kx = {EHR_KX_PUBLIC_BYTES, id->kx.public_key};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    Ehr__V1__AccessRequest request = EHR__V1__ACCESS_REQUEST__INIT;
    Ehr__V1__EmergencyAccess emergency_access = EHR__V1__EMERGENCY_ACCESS__INIT;
    if (emergency) {
        emergency_access.record_id = record;
        emergency_access.reason = (char *)a.reason;
        emergency_access.requester_kx_key = kx;
        body.payload_case = EHR__V1__TX_BODY__PAYLOAD_EMERGENCY_ACCESS;
        body.emergency_access = &emergency_access;
    } else {
        request.record_id = record;
        request.purpose = (Ehr__V1__Purpose)a.purpose;
        request.requester_kx_key = kx;
        body.payload_case = EHR__V1__TX_BODY__PAYLOAD_ACCESS_REQUEST;
        body.access_request = &request;
    }
    char record_hex[2 * EHR_HASH_BYTES + 1];
    ehr_hex_encode(record_hex, a.record_id, EHR_HASH_BYTES);
    json_t *extra =
        emergency ? json_pack("{s:s, s:s}", ctx->json ? "record_id" : "record", record_hex,
                              "reason", a.reason)
                  : json_pack("{s:s, s:o}", ctx->json ? "record_id" : "record", record_hex,
                              "purpose", cli__json_enum(&ehr__v1__purpose__descriptor, a.purpose));
    if (extra == NULL)
        ehr_panic("out of memory building JSON");
    exit_code = cli__signed_tx_submit(ctx, &a.tx, id, &body, NULL, extra);
    sodium_free(id);
    return exit_code;
}

int cli__cmd_access_request(struct cli__ctx *ctx, int argc, char **argv)
{
    return access_run(ctx, argc, argv, false);
}

int cli__cmd_access_emergency(struct cli__ctx *ctx, int argc, char **argv)
{
    return access_run(ctx, argc, argv, true);
}
