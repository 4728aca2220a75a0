/*
 * main.c - ehrctl, the operator's command-line tool: the command table, the
 * dispatcher and `ehrctl help`.
 *
 * A command is a row in `commands` below and a function in a cmd_*.c file;
 * adding one means adding both, nothing else.
 * The dispatcher picks the row whose words match the most leading
 * arguments, so "genesis" and "genesis show" can coexist.
 */
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"

static int cmd_help(struct cli__ctx *ctx, int argc, char **argv);

static const struct cli__command commands[] = {
    {"keygen",
     "--out FILE [--label TEXT] [--passphrase-file FILE | --no-passphrase] [--kdf PROFILE] "
     "[--force]",
     "Create an identity (signing + X25519 key) in a new key file.",
     "options:\n"
     "  --out FILE              the key file to write; never replaced unless --force\n"
     "  --label TEXT            a short printable-ASCII label stored in clear (max 64 bytes)\n"
     "  --passphrase-file FILE  read the passphrase from the first line of FILE; without it\n"
     "                          $EHR_PASSPHRASE, else a prompt (twice) on the terminal\n"
     "  --no-passphrase         store the secrets under the empty passphrase (test networks;\n"
     "                          the file's mode is then its only protection)\n"
     "  --kdf PROFILE           argon2id cost: interactive (default), moderate, sensitive\n"
     "  --force                 replace an existing FILE\n",
     cli__cmd_keygen},
    {"key show", "FILE", "Show a key file's label and public keys (no passphrase).", NULL,
     cli__cmd_key_show},
    {"key passwd",
     "FILE [--passphrase-file FILE] [--new-passphrase-file FILE | --no-passphrase] [--kdf "
     "PROFILE]",
     "Re-encrypt a key file under a new passphrase.",
     "options:\n"
     "  --passphrase-file FILE      the current passphrase (else $EHR_PASSPHRASE, else a prompt)\n"
     "  --new-passphrase-file FILE  the new passphrase (else $EHR_NEW_PASSPHRASE, else a\n"
     "                              prompt, twice)\n"
     "  --no-passphrase             the new passphrase is empty (test networks only)\n"
     "  --kdf PROFILE               argon2id cost for the new file: interactive (default),\n"
     "                              moderate, sensitive\n",
     cli__cmd_key_passwd},
    {"genesis", "--members FILE.json --chain-id ID --out FILE [--time-ms MS] [--force]",
     "Write a genesis file from a JSON list of founding members.",
     "options:\n"
     "  --members FILE.json  {\"members\": [{\"name\", \"role\", \"node_key\", \"kx_key\",\n"
     "                       \"address\"}, ...]}; role is hospital, lab, pharmacy, insurer or\n"
     "                       regulator; keys are 64 hex digits; address is HOST:PORT\n"
     "                       (`ehrctl genesis member` prints one entry from a key file)\n"
     "  --chain-id ID        1-64 characters from A-Z a-z 0-9 . _ -\n"
     "  --out FILE           the genesis file to write; never replaced unless --force\n"
     "  --time-ms MS         genesis time in ms since the Unix epoch (default: now)\n"
     "  --force              replace an existing FILE\n",
     cli__cmd_genesis_create},
    {"genesis show", "FILE", "Check a genesis file and show its contents.", NULL,
     cli__cmd_genesis_show},
    {"genesis member", "--key FILE --name NAME --role ROLE --address HOST:PORT",
     "Print a genesis member entry (JSON) for a key file.", NULL, cli__cmd_genesis_member},
    {"ledger init", "--genesis FILE --data DIR",
     "Create a node's ledger (block 0) from a genesis file.",
     "options:\n"
     "  --genesis FILE  the genesis file (ehrctl genesis writes one)\n"
     "  --data DIR      the node's data directory (default $EHR_DATA); created with mode\n"
     "                  0700 if missing. Running it again with the same genesis changes\n"
     "                  nothing; a directory holding another chain is refused.\n",
     cli__cmd_ledger_init},
    {"ledger verify", "--data DIR [--threads N]",
     "Re-check the whole chain: hash links, Merkle roots, every signature.",
     "options:\n"
     "  --data DIR     the node's data directory (default $EHR_DATA), opened read-only\n"
     "  --threads N    threads checking signatures: 0 (default) one per CPU, else 1-16\n"
     "\nPrints one line, \"ledger ok: ...\" (exit 0) or \"ledger FAULT: <what, where>\"\n"
     "(exit 1), on stdout; it stops at the first fault.\n",
     cli__cmd_ledger_verify},
    {"ledger status", "--data DIR", "Show a ledger's chain, tip and counts.",
     "options:\n"
     "  --data DIR     the node's data directory (default $EHR_DATA), opened read-only\n",
     cli__cmd_ledger_status},
    {"block show", "HEIGHT --data DIR", "Show a block's header and its transactions.",
     "options:\n"
     "  --data DIR     the node's data directory (default $EHR_DATA), opened read-only\n",
     cli__cmd_block_show},
    {"tx show", "HASH --data DIR", "Show a transaction: where it is and what it says.",
     "HASH is the transaction's id, 64 hex digits.\n\n"
     "options:\n"
     "  --data DIR     the node's data directory (default $EHR_DATA), opened read-only\n",
     cli__cmd_tx_show},
    {"init",
     "--genesis FILE --key FILE --data DIR --peer-listen HOST:PORT --rpc-listen HOST:PORT "
     "[--config OUT] [--passphrase-file FILE] [--force]",
     "Create a founding node's data directory: ledger, key copy, config file.",
     "options:\n"
     "  --genesis FILE          the chain's genesis file (ehrctl genesis writes it)\n"
     "  --key FILE              this node's key file; its signing key must be a founding\n"
     "                          member of the genesis; copied to DIR/node.key (mode 0600)\n"
     "  --data DIR              the data directory, created with mode 0700; must be absent\n"
     "                          or empty unless --force\n"
     "  --peer-listen HOST:PORT where the node listens for its peers\n"
     "  --rpc-listen HOST:PORT  where the node serves the gRPC API\n"
     "  --config OUT            the node's config file (default DIR/ehrd.json)\n"
     "  --passphrase-file FILE  the key's passphrase (else $EHR_PASSPHRASE, else a prompt);\n"
     "                          recorded in the config for the node\n"
     "  --force                 re-run on an initialised DIR: rewrite node.key and the\n"
     "                          config, keep the ledger if it is this genesis's chain\n",
     cli__cmd_init},
    {"help", "[COMMAND]", "Show the commands, or one command's help.", NULL, cmd_help},
};

/* How many leading words of ARGV match NAME's words; 0 if not all of them do. */
static int command_match(const char *name, int argc, char **argv)
{
    int words = 0;
    const char *p = name;
    while (*p != '\0') {
        size_t len = strcspn(p, " ");
        if (words >= argc || strlen(argv[words]) != len || memcmp(argv[words], p, len) != 0)
            return 0;
        words++;
        p += len;
        p += *p == ' ';
    }
    return words;
}

/* The command matching the most leading words of ARGV, with their count in *WORDS. */
static const struct cli__command *command_find(int argc, char **argv, int *words)
{
    const struct cli__command *best = NULL;
    *words = 0;
    for (size_t i = 0; i < EHR_ARRAY_COUNT(commands); i++) {
        int n = command_match(commands[i].name, argc, argv);
        if (n > *words) {
            best = &commands[i];
            *words = n;
        }
    }
    return best;
}

static void print_overview(FILE *out)
{
    fprintf(out, "usage: ehrctl COMMAND [ARGS...] [--json]\n\n"
                 "Operate an ehrchain network: identities and key files, the genesis file, a\n"
                 "node's ledger and data directory.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < EHR_ARRAY_COUNT(commands); i++)
        fprintf(out, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`ehrctl COMMAND --help` shows a command's options. Human output by default,\n"
                 "--json for scripts. Exit status: 0 success, 1 the operation failed (reason on\n"
                 "stderr), 2 usage error.\n");
}

static int cmd_help(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0)
        EHR_ASSERT(0 && "help takes no options of its own");
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind >= argc) {
        print_overview(stdout);
        return CLI_EXIT_OK;
    }
    int words;
    const struct cli__command *command = command_find(argc - optind, argv + optind, &words);
    if (command == NULL || optind + words != argc)
        return cli__usage_error(ctx, "no command \"%s\"", argv[optind]);
    cli__command_help(command);
    return CLI_EXIT_OK;
}

/* Name the commands that start with ARGV[0], for `ehrctl key` and similar. */
static bool print_group(const char *group)
{
    bool any = false;
    size_t len = strlen(group);
    for (size_t i = 0; i < EHR_ARRAY_COUNT(commands); i++) {
        if (strncmp(commands[i].name, group, len) == 0 && commands[i].name[len] == ' ') {
            if (!any)
                fprintf(stderr, "ehrctl: \"%s\" needs one of:\n", group);
            fprintf(stderr, "  ehrctl %-16s %s\n", commands[i].name, commands[i].summary);
            any = true;
        }
    }
    return any;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "ehrctl: no command given\n");
        print_overview(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_overview(stdout);
        return CLI_EXIT_OK;
    }
    int words;
    const struct cli__command *command = command_find(argc - 1, argv + 1, &words);
    if (command == NULL) {
        if (!print_group(argv[1]))
            fprintf(stderr, "ehrctl: no command \"%s\"%s (ehrctl help lists them)\n", argv[1],
                    argv[1][0] == '-' ? "; options go after the command" : "");
        return CLI_EXIT_USAGE;
    }
    if (ehr_crypto_init() != 0) {
        fprintf(stderr, "ehrctl: cannot initialise the crypto libraries\n");
        return CLI_EXIT_FAIL;
    }
    struct cli__ctx ctx = {.command = command};
    /* The command sees its own name as argv[0] and its arguments after it. */
    int sub_argc = argc - words;
    char **sub_argv = argv + words;
    sub_argv[0] = (char *)command->name;
    optind = 0; /* glibc: a full getopt reset */
    int rc = command->run(&ctx, sub_argc, sub_argv);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ehrctl: write to stdout failed\n");
        return CLI_EXIT_FAIL;
    }
    return rc;
}
