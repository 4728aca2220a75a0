/*
 * cmd_practitioner.c - `ehrctl practitioner add` and `practitioner remove`:
 * a member registers (or removes) a practitioner's key as acting for it
 * (tx.proto PractitionerRegister / PractitionerRemove).
 *
 * The payload is the practitioner's public key and nothing else: a
 * practitioner's institution and role are those of the member that signs
 * (contracts/README.md, "Who may sign what"), so there is no --role to give.
 * The practitioner's key is named by its key file (only the public part is
 * read: no passphrase) or by 64 hex digits, so a member can register a key
 * whose file it never holds.
 *
 * Not here: signing and submitting (submit.c, cli__signed_tx_submit).
 */
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"

struct practitioner_args {
    const char *file_arg;   /* --practitioner FILE */
    const char *public_hex; /* --practitioner-public HEX */
    struct cli__signed_tx tx;
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES]; /* parsed from one of the two */
};

static int practitioner_parse(struct cli__ctx *ctx, int argc, char **argv,
                              struct practitioner_args *a)
{
    static const struct option options[] = {{"practitioner", required_argument, NULL, 'P'},
                                            {"practitioner-public", required_argument, NULL, 'u'},
                                            CLI_SIGNED_TX_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'P')
            a->file_arg = optarg;
        else if (c == 'u')
            a->public_hex = optarg;
        else if (cli__signed_tx_option(ctx, c, optarg, &a->tx) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    int exit_code = cli__key_choice(ctx, "--practitioner", a->file_arg, "--practitioner-public",
                                    a->public_hex, a->key);
    if (exit_code != 0)
        return exit_code;
    return cli__signed_tx_finish(ctx, &a->tx);
}

/* Both commands: the same arguments, the payload REGISTER or remove. */
static int practitioner_run(struct cli__ctx *ctx, int argc, char **argv, bool register_it)
{
    struct practitioner_args a = {0};
    int exit_code = practitioner_parse(ctx, argc, argv, &a);
    if (exit_code != 0)
        return exit_code;
    ProtobufCBinaryData key = {EHR_SCHNORR_PUBLIC_BYTES, a.key};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    Ehr__V1__PractitionerRegister add = EHR__V1__PRACTITIONER_REGISTER__INIT;
    Ehr__V1__PractitionerRemove remove = EHR__V1__PRACTITIONER_REMOVE__INIT;
    if (register_it) {
        add.practitioner_key = key;
        body.payload_case = EHR__V1__TX_BODY__PAYLOAD_PRACTITIONER_REGISTER;
        body.practitioner_register = &add;
    } else {
        remove.practitioner_key = key;
        body.payload_case = EHR__V1__TX_BODY__PAYLOAD_PRACTITIONER_REMOVE;
        body.practitioner_remove = &remove;
    }
    char hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
    ehr_hex_encode(hex, a.key, EHR_SCHNORR_PUBLIC_BYTES);
    json_t *extra = json_pack("{s:s}", ctx->json ? "practitioner_key" : "practitioner", hex);
    if (extra == NULL)
        ehr_panic("out of memory building JSON");
    return cli__signed_tx_submit(ctx, &a.tx, NULL, &body, NULL, extra);
}

int cli__cmd_practitioner_add(struct cli__ctx *ctx, int argc, char **argv)
{
    return practitioner_run(ctx, argc, argv, true);
}

int cli__cmd_practitioner_remove(struct cli__ctx *ctx, int argc, char **argv)
{
    return practitioner_run(ctx, argc, argv, false);
}
