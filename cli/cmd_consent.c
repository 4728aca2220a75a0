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
 * Key fragments (--receiving-key, the grantee's key from `key
 * receiving-key`): for a grant of one record type, the patient's
 * delegating key of that type (crypto/PRE.md, "Delegating keys") makes one
 * kfrag per current member (ListMembers), threshold a majority or
 * --threshold, each sealed to its member's X25519 key (crypto/pre_seal.h),
 * in the members' order. A node later re-encapsulates a record's capsule
 * with its own only for a permitted requester of a consent still in force
 * (node/capsule_service.c).
 *
 * Not here: signing and submitting (submit.c), listing consents
 * (`consents`, cmd_consents.c).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_internal.h"
#include "contracts.h"
#include "policy.h"
#include "pre_seal.h"

/* What the rules bound is what a grant of ehrctl's can carry. */
_Static_assert((int)CONTRACTS_KEY_FRAGMENT_BYTES_MAX == (int)EHR_PRE_SEALED_KFRAG_BYTES,
               "a key fragment is a sealed kfrag");
_Static_assert((int)CONTRACTS_KEY_FRAGMENTS_MAX == (int)EHR_PRE_KFRAGS_MAX,
               "a grant carries at most as many fragments as a PRE grant makes");

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
    const char *receiving_hex, *threshold_arg;
    struct cli__signed_tx tx;
    /* parsed */
    uint8_t grantee[EHR_SCHNORR_PUBLIC_BYTES];
    int purpose;
    Ehr__V1__RecordType types[CONTRACTS_SCOPE_COUNT_MAX];
    uint8_t records[CONTRACTS_SCOPE_COUNT_MAX][EHR_HASH_BYTES];
    ProtobufCBinaryData record_ids[CONTRACTS_SCOPE_COUNT_MAX];
    uint64_t from_ms, until_ms;
    struct cli__policy_program policy;
    uint8_t receiving[EHR_PRE_PUBLIC_BYTES];
    size_t threshold; /* 0: a majority of the members */
    /* the key fragments, one per member */
    uint8_t member_kx[EHR_PRE_KFRAGS_MAX][EHR_KX_PUBLIC_BYTES];
    size_t member_count;
    uint8_t sealed[EHR_PRE_KFRAGS_MAX][EHR_PRE_SEALED_KFRAG_BYTES];
    ProtobufCBinaryData fragments[EHR_PRE_KFRAGS_MAX];
    uint8_t delegating[EHR_PRE_PUBLIC_BYTES]; /* the public key they were made from */
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
    if (a->threshold_arg != NULL && a->receiving_hex == NULL)
        return cli__usage_error(ctx, "--threshold is for the key fragments: give "
                                     "--receiving-key too");
    if (a->receiving_hex != NULL) {
        ehr_diag why;
        if (cli__hex_arg(a->receiving_hex, a->receiving, EHR_PRE_PUBLIC_BYTES, &why) != 0)
            return cli__usage_error(ctx, "--receiving-key %s", why.msg);
        if (ehr_pre_public_key_check(a->receiving) != 0)
            return cli__usage_error(ctx, "--receiving-key is not a receiving key (a "
                                         "ristretto255 point, as `ehrctl key receiving-key` "
                                         "prints it)");
        if (a->type_count != 1)
            return cli__usage_error(ctx, "a grant with key fragments (--receiving-key) covers "
                                         "exactly one record type: the fragments re-encrypt "
                                         "that type's records only; give one --type");
        if (a->threshold_arg != NULL) {
            char *end = NULL;
            unsigned long t = strtoul(a->threshold_arg, &end, 10);
            if (end == a->threshold_arg || *end != '\0' || a->threshold_arg[0] == '-' || t == 0 ||
                t > EHR_PRE_KFRAGS_MAX)
                return cli__usage_error(ctx,
                                        "--threshold wants a number from 1 to %d (at most "
                                        "the members' count)",
                                        EHR_PRE_KFRAGS_MAX);
            a->threshold = (size_t)t;
        }
    }
    return cli__signed_tx_finish(ctx, &a->tx);
}

/* Collect each member's X25519 key into the grant's list (cli__members_each). */
static int member_kx_add(void *ctx, const Ehr__V1__Member *m)
{
    struct grant_args *a = ctx;
    if (a->member_count == EHR_PRE_KFRAGS_MAX)
        return cli__fail("more members than a grant carries key fragments for (16)",
                         "consent grant");
    memcpy(a->member_kx[a->member_count++], m->kx_key.data, EHR_KX_PUBLIC_BYTES);
    return 0;
}

/*
 * The key fragments: the members from the node, then one kfrag each of the
 * delegating key of the grant's type, sealed to the member. ID is the
 * patient's. Returns 0 with A's fragments set, or an exit status after
 * saying why. Every secret made here is wiped.
 */
static int grant_fragments(struct cli__ctx *ctx, struct grant_args *a, const ehr_identity *id)
{
    struct cli__node node = {0};
    int exit_code = cli__node_open(&node, &a->tx.node, ctx->command->name);
    size_t count = 0;
    if (exit_code == 0)
        exit_code =
            cli__members_each(&node, "consent grant: list the members", member_kx_add, a, &count);
    cli__node_close(&node);
    if (exit_code != 0)
        return exit_code;
    if (a->member_count == 0)
        return cli__fail("the node lists no members", "consent grant");
    size_t t = a->threshold != 0 ? a->threshold : a->member_count / 2 + 1;
    if (t > a->member_count)
        return cli__usage_error(ctx, "--threshold %zu is over the %zu members' count", t,
                                a->member_count);
    a->threshold = t;
    ehr_pre_key delegating;
    if (ehr_pre_delegating_key_derive(&delegating, id->signing.secret, (uint32_t)a->types[0]) != 0)
        return cli__fail("the delegating key is zero (never in practice)", "consent grant");
    ehr_pre_kfrag *kfrags = sodium_malloc(EHR_PRE_KFRAGS_MAX * sizeof *kfrags);
    if (kfrags == NULL) {
        ehr_pre_key_wipe(&delegating);
        return cli__fail("cannot allocate locked memory", "consent grant");
    }
    ehr_diag why;
    int rc = ehr_pre_kfrags_generate(&delegating, a->receiving, t, a->member_count, kfrags, &why);
    memcpy(a->delegating, delegating.public_key, EHR_PRE_PUBLIC_BYTES);
    ehr_pre_key_wipe(&delegating);
    for (size_t i = 0; rc == 0 && i < a->member_count; i++) {
        rc = ehr_pre_kfrag_seal(&kfrags[i], a->member_kx[i], a->sealed[i]);
        if (rc != 0)
            snprintf(why.msg, sizeof why.msg, "member %zu's kx_key is not a usable X25519 key",
                     i + 1);
        a->fragments[i] = (ProtobufCBinaryData){EHR_PRE_SEALED_KFRAG_BYTES, a->sealed[i]};
    }
    sodium_memzero(kfrags, EHR_PRE_KFRAGS_MAX * sizeof *kfrags);
    sodium_free(kfrags);
    if (rc != 0)
        return cli__fail(why.msg, "consent grant: key fragments");
    return 0;
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
                                            {"receiving-key", required_argument, NULL, 'R'},
                                            {"threshold", required_argument, NULL, 't'},
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
        case 'R':
            a->receiving_hex = optarg;
            break;
        case 't':
            a->threshold_arg = optarg;
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
    ehr_identity *id = NULL;
    if (a->receiving_hex != NULL) {
        ehr_keyfile_info info;
        exit_code = cli__identity_load(a->tx.key_path, a->tx.passphrase_file, &id, &info);
        if (exit_code == 0)
            exit_code = grant_fragments(ctx, a, id);
        if (exit_code != 0) {
            if (id != NULL)
                sodium_free(id);
            ehr_free(a);
            return exit_code;
        }
        grant.n_key_fragments = a->member_count;
        grant.key_fragments = a->fragments;
        grant.delegating_key = (ProtobufCBinaryData){EHR_PRE_PUBLIC_BYTES, a->delegating};
    }
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
    if (grant.n_key_fragments > 0) {
        char line[64];
        snprintf(line, sizeof line, "%zu of %zu members", a->threshold, a->member_count);
        if (json_object_set_new(extra, "key_fragments", json_string(line)) != 0)
            ehr_panic("out of memory building JSON");
    }
    exit_code = cli__signed_tx_submit(ctx, &a->tx, id, &body, "consent", extra);
    if (id != NULL)
        sodium_free(id);
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
    uint8_t grant_id[EHR_HASH_BYTES];
    if (cli__one_hash_arg(ctx, argc, argv, "CONSENT_ID",
                          "the grant's transaction hash, as consent grant and consents print it",
                          grant_id) != 0)
        return CLI_EXIT_USAGE;
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
