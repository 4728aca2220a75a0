/*
 * cmd_consent.c - `ehrctl consent grant` and `consent revoke`: the patient
 * (whose key signs) grants a member or a practitioner access to some of
 * their records, or revokes an earlier grant (tx.proto ConsentGrant,
 * ConsentRevoke). A grant's id is its transaction's hash, printed first.
 *
 * A grant's scope is record types (--type) and/or record ids (--record),
 * one purpose, a period [--from, --until) in block time, and optionally a
 * policy (--policy FILE: source compiled here with the compiler the nodes
 * share, contracts_policy_compile, or a compiled program) that must also
 * permit each access. Every value is checked against the rules' shapes and
 * limits before any passphrase is asked: bad input is exit 2 and nothing
 * is sent. What needs the ledger (the grantee is a member, the records are
 * the patient's) the leader's rules answer at submission.
 *
 * Not here: key fragments (record encryption is not built; a grant carries
 * none), signing and submitting (submit.c), listing consents (`consents`,
 * cmd_consents.c).
 */
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"
#include "contracts.h"
#include "policy.h"

enum {
    HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    NAMES_BYTES = 256, /* an enum's names, for a message */
};

/* A grant with no --until runs to the last day the policy language can
 * name: "no end" in a form every attribute comparison handles. */
#define CONSENT_UNTIL_OPEN "9999-12-31"

struct grant_args {
    const char *grantee_hex, *grantee_file;
    const char *purpose_arg;
    const char *type_args[CONTRACTS_SCOPE_COUNT_MAX];
    size_t type_count;
    const char *record_args[CONTRACTS_SCOPE_COUNT_MAX];
    size_t record_count;
    const char *from_arg, *until_arg, *policy_path;
    struct cli__signed_tx tx;
    /* parsed */
    uint8_t grantee[EHR_SCHNORR_PUBLIC_BYTES];
    int purpose;
    Ehr__V1__RecordType types[CONTRACTS_SCOPE_COUNT_MAX];
    uint8_t records[CONTRACTS_SCOPE_COUNT_MAX][EHR_HASH_BYTES];
    ProtobufCBinaryData record_ids[CONTRACTS_SCOPE_COUNT_MAX];
    uint64_t from_ms, until_ms;
    struct cli__policy_program policy;
};

/* Add ARG to a repeated option's list (LIST, *COUNT) of at most
 * CONTRACTS_SCOPE_COUNT_MAX. Returns 0 or CLI_EXIT_USAGE. */
static int scope_add(struct cli__ctx *ctx, const char *option, const char *arg, const char **list,
                     size_t *count)
{
    if (*count == CONTRACTS_SCOPE_COUNT_MAX)
        return cli__usage_error(ctx, "%s: a consent names at most %d (the rules' limit)", option,
                                CONTRACTS_SCOPE_COUNT_MAX);
    list[(*count)++] = arg;
    return 0;
}

static int grant_values(struct cli__ctx *ctx, struct grant_args *a)
{
    int exit_code = cli__key_choice(ctx, "--grantee-key", a->grantee_file, "--grantee",
                                    a->grantee_hex, a->grantee);
    if (exit_code != 0)
        return exit_code;
    char names[NAMES_BYTES];
    if (a->purpose_arg == NULL)
        return cli__usage_error(ctx, "--purpose P, what the consent is for, is required");
    if (cli__enum_arg(&ehr__v1__purpose__descriptor, a->purpose_arg, &a->purpose) != 0) {
        cli__enum_names(&ehr__v1__purpose__descriptor, names, sizeof names);
        return cli__usage_error(ctx, "--purpose \"%.40s\" is not a purpose: %s", a->purpose_arg,
                                names);
    }
    if (a->type_count == 0 && a->record_count == 0)
        return cli__usage_error(ctx, "a consent covers record types (--type) or records "
                                     "(--record), or both: give at least one");
    for (size_t i = 0; i < a->type_count; i++) {
        int type;
        if (cli__enum_arg(&ehr__v1__record_type__descriptor, a->type_args[i], &type) != 0) {
            cli__enum_names(&ehr__v1__record_type__descriptor, names, sizeof names);
            return cli__usage_error(ctx, "--type \"%.40s\" is not a record type: %s",
                                    a->type_args[i], names);
        }
        a->types[i] = (Ehr__V1__RecordType)type;
    }
    for (size_t i = 0; i < a->record_count; i++) {
        ehr_diag why;
        if (cli__hex_arg(a->record_args[i], a->records[i], EHR_HASH_BYTES, &why) != 0)
            return cli__usage_error(ctx, "--record (a record id) %s", why.msg);
        a->record_ids[i] = (ProtobufCBinaryData){EHR_HASH_BYTES, a->records[i]};
    }
    if (a->from_arg != NULL && cli__date_arg(a->from_arg, &a->from_ms) != 0)
        return cli__usage_error(ctx, "--from wants a date, YYYY-MM-DD (UTC), or ms since the "
                                     "epoch");
    const char *until = a->until_arg != NULL ? a->until_arg : CONSENT_UNTIL_OPEN;
    if (cli__date_arg(until, &a->until_ms) != 0)
        return cli__usage_error(ctx, "--until wants a date, YYYY-MM-DD (UTC), or ms since the "
                                     "epoch");
    if (a->until_ms <= a->from_ms)
        return cli__usage_error(ctx, "the period ends (--until) before or when it starts "
                                     "(--from): it would cover no time");
    if (a->policy_path != NULL) {
        ehr_diag why;
        int rc = cli__policy_program_load(a->policy_path, &a->policy, &why);
        if (rc == EHR_EINVAL)
            return cli__usage_error(ctx, "--policy %s:%s", a->policy_path, why.msg);
        if (rc != 0)
            return cli__fail(why.msg, "consent grant: --policy");
        /* A program file is taken as it is: the verifier says now what the
         * rules would refuse at apply time. */
        if (contracts_vm_verify(a->policy.code, a->policy.len, &why) != 0)
            return cli__usage_error(ctx, "--policy %s: the program does not verify: %s",
                                    a->policy_path, why.msg);
    }
    return cli__signed_tx_finish(ctx, &a->tx);
}

static int grant_parse(struct cli__ctx *ctx, int argc, char **argv, struct grant_args *a)
{
    static const struct option options[] = {{"grantee", required_argument, NULL, 'g'},
                                            {"grantee-key", required_argument, NULL, 'G'},
                                            {"purpose", required_argument, NULL, 'u'},
                                            {"type", required_argument, NULL, 'y'},
                                            {"record", required_argument, NULL, 'r'},
                                            {"from", required_argument, NULL, 'F'},
                                            {"until", required_argument, NULL, 'U'},
                                            {"policy", required_argument, NULL, 'o'},
                                            CLI_SIGNED_TX_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        int exit_code = 0;
        switch (c) {
        case 'g':
            a->grantee_hex = optarg;
            break;
        case 'G':
            a->grantee_file = optarg;
            break;
        case 'u':
            a->purpose_arg = optarg;
            break;
        case 'y':
            exit_code = scope_add(ctx, "--type", optarg, a->type_args, &a->type_count);
            break;
        case 'r':
            exit_code = scope_add(ctx, "--record", optarg, a->record_args, &a->record_count);
            break;
        case 'F':
            a->from_arg = optarg;
            break;
        case 'U':
            a->until_arg = optarg;
            break;
        case 'o':
            a->policy_path = optarg;
            break;
        default:
            exit_code = cli__signed_tx_option(ctx, c, optarg, &a->tx);
        }
        if (exit_code != 0)
            return exit_code;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    return grant_values(ctx, a);
}

int cli__cmd_consent_grant(struct cli__ctx *ctx, int argc, char **argv)
{
    struct grant_args *a = ehr_calloc(1, sizeof *a); /* ~3 KiB of scope and program */
    int exit_code = grant_parse(ctx, argc, argv, a);
    if (exit_code != 0) {
        ehr_free(a);
        return exit_code;
    }
    Ehr__V1__ConsentGrant grant = EHR__V1__CONSENT_GRANT__INIT;
    grant.grantee_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, a->grantee};
    grant.n_record_types = a->type_count;
    grant.record_types = a->types;
    grant.n_record_ids = a->record_count;
    grant.record_ids = a->record_ids;
    grant.purpose = (Ehr__V1__Purpose)a->purpose;
    grant.valid_from_ms = a->from_ms;
    grant.valid_until_ms = a->until_ms;
    if (a->policy.len > 0)
        grant.policy_program = (ProtobufCBinaryData){a->policy.len, a->policy.code};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_GRANT;
    body.consent_grant = &grant;
    char grantee_hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
    ehr_hex_encode(grantee_hex, a->grantee, EHR_SCHNORR_PUBLIC_BYTES);
    json_t *purpose = cli__json_enum(&ehr__v1__purpose__descriptor, a->purpose);
    json_t *extra = ctx->json
                        ? json_pack("{s:s, s:o}", "grantee_key", grantee_hex, "purpose", purpose)
                        : json_pack("{s:s, s:o}", "grantee", grantee_hex, "purpose", purpose);
    if (extra == NULL)
        ehr_panic("out of memory building JSON");
    exit_code = cli__signed_tx_submit(ctx, &a->tx, NULL, &body, "consent", extra);
    ehr_free(a);
    return exit_code;
}

int cli__cmd_consent_revoke(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_SIGNED_TX_OPTIONS, CLI_COMMON_OPTIONS};
    struct cli__signed_tx tx = {0};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (cli__signed_tx_option(ctx, c, optarg, &tx) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "give one CONSENT_ID (the grant's transaction hash, as "
                                     "consent grant and consents print it)");
    uint8_t grant_id[EHR_HASH_BYTES];
    ehr_diag why;
    if (cli__hex_arg(argv[optind], grant_id, sizeof grant_id, &why) != 0)
        return cli__usage_error(ctx, "CONSENT_ID %s", why.msg);
    int exit_code = cli__signed_tx_finish(ctx, &tx);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__ConsentRevoke revoke = EHR__V1__CONSENT_REVOKE__INIT;
    revoke.grant_id = (ProtobufCBinaryData){EHR_HASH_BYTES, grant_id};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_REVOKE;
    body.consent_revoke = &revoke;
    char grant_hex[HASH_HEX_BYTES];
    ehr_hex_encode(grant_hex, grant_id, EHR_HASH_BYTES);
    json_t *extra = json_pack("{s:s}", ctx->json ? "consent_id" : "revokes", grant_hex);
    if (extra == NULL)
        ehr_panic("out of memory building JSON");
    return cli__signed_tx_submit(ctx, &tx, NULL, &body, NULL, extra);
}
