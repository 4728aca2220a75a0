/*
 * cli_internal.h - what the parts of ehrctl share: the command table entry,
 * the per-run context, option parsing around getopt_long, error and usage
 * reporting, JSON output, number parsing and passphrase input.
 *
 * Not a library: ehrctl is one executable and nothing outside cli/ includes
 * this header. Every command lives in a cmd_*.c file and is listed in the
 * table in main.c.
 *
 * Exit status, for every command: 0 success; 1 the operation failed (one
 * line `ehrctl: <what failed>: <why>` on stderr); 2 usage error (a message
 * and the command's usage on stderr).
 */
#ifndef EHR_CLI_INTERNAL_H
#define EHR_CLI_INTERNAL_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ehr/v1/block.pb-c.h"
#include "ehr_crypto.h"

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,
    CLI_EXIT_USAGE = 2,
};

struct cli__ctx;

/* One row of the command table. NAME is one or more words ("key show"). */
struct cli__command {
    const char *name;
    const char *synopsis; /* arguments after the name, for usage lines */
    const char *summary;  /* one line for `ehrctl help` */
    const char *details;  /* the options, for `ehrctl NAME --help` */
    int (*run)(struct cli__ctx *ctx, int argc, char **argv);
};

/* What one run of a command knows. */
struct cli__ctx {
    const struct cli__command *command;
    bool json;     /* --json: machine-readable output on stdout */
    int exit_code; /* set by cli__getopt when it returns CLI_OPT_EXIT */
};

/* Options every command accepts; end a command's option table with these. */
#define CLI_COMMON_OPTIONS                                                                         \
    {"help", no_argument, NULL, 'h'}, {"json", no_argument, NULL, 'J'},                            \
    {                                                                                              \
        NULL, 0, NULL, 0                                                                           \
    }

enum { CLI_OPT_END = -1, CLI_OPT_EXIT = -2 };

/*
 * getopt_long over a command's ARGV (ARGV[0] is the command name). Handles
 * --json itself; prints help for --help and a usage error for an unknown
 * option or a missing argument. Returns the option's value (> 0), CLI_OPT_END
 * when options are done (positional arguments start at optind), or
 * CLI_OPT_EXIT with ctx->exit_code set (0 after help, 2 after a usage error).
 */
int cli__getopt(struct cli__ctx *ctx, int argc, char **argv, const struct option *options);

/* Print `ehrctl: NAME: MESSAGE` and the command's usage to stderr. Returns CLI_EXIT_USAGE. */
int cli__usage_error(struct cli__ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print the command's help (usage, summary, details) to stdout. */
void cli__command_help(const struct cli__command *command);

/* Print `ehrctl: WHAT: WHY` to stderr. Returns CLI_EXIT_FAIL. */
int cli__fail(const char *why, const char *what_fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print ROOT as indented JSON and a newline on stdout, then release it. Returns 0 or 1. */
int cli__json_print(json_t *root);

/*
 * A JSON string for TEXT that may not be UTF-8 (a file name is any bytes):
 * TEXT itself if it is valid UTF-8, else a copy with every byte over 0x7f
 * shown as '?'. Never NULL (aborts on OOM).
 */
json_t *cli__json_text(const char *text);

/* A JSON string of LEN bytes as lowercase hex. Never NULL (aborts on OOM). */
json_t *cli__json_hex(const uint8_t *data, size_t len);

/*
 * Parse a decimal unsigned integer with no sign, spaces or trailing text, at
 * most MAX. Returns 0 or EHR_EINVAL.
 */
int cli__parse_u64(const char *text, uint64_t max, uint64_t *out);

/* Print a key-value line for human output: the key padded to a column. */
void cli__print_field(const char *key, const char *value);

/* TIME_MS as "<ms> ms (YYYY-MM-DDTHH:MM:SS.mmmZ)" into OUT (64 bytes suffice). */
void cli__time_text(uint64_t time_ms, char *out, size_t size);

/*
 * TEXT (UTF-8) made safe to print on a terminal: control characters (C0,
 * DEL, C1) become '?', and it is cut at a character boundary to fit
 * OUT_SIZE bytes with its NUL.
 */
void cli__text_shown(const char *text, char *out, size_t out_size);

/*
 * Passphrases (passphrase.c). A passphrase lives in a sodium_malloc'd buffer
 * (locked, guarded, wiped when freed).
 */
struct cli__passphrase {
    char *bytes; /* EHR_PASSPHRASE_BYTES_MAX + 3 bytes, NUL-terminated text */
    size_t len;
};

/* Where a passphrase comes from, in order: a file, an environment variable, the terminal. */
struct cli__passphrase_source {
    const char *file;      /* the value of FLAG_NAME, or NULL */
    const char *flag_name; /* e.g. "--passphrase-file", for messages */
    const char *env_name;  /* e.g. "EHR_PASSPHRASE" */
    const char *prompt;    /* shown on the terminal */
    bool confirm;          /* a new passphrase: ask twice on the terminal */
};

/*
 * Obtain a passphrase from SOURCE into P. Returns 0; or an error with a
 * message in WHY: -errno or EHR_ETOOBIG for the file; EHR_EINVAL for a file
 * with more than one line or a confirmation that differs; EHR_ENOTFOUND when
 * there is no file, no variable and no terminal. P is freed on error.
 */
int cli__passphrase_get(struct cli__passphrase *p, const struct cli__passphrase_source *source,
                        char *why, size_t why_size);

/* Wipe and free P (safe on a zeroed or already freed one). */
void cli__passphrase_free(struct cli__passphrase *p);

/*
 * Open the key file PATH into a new sodium_malloc'd identity (*OUT, freed by
 * the caller with sodium_free, which wipes it). A file sealed under the empty
 * passphrase is opened without asking; otherwise the passphrase comes from
 * PASSPHRASE_FILE, $EHR_PASSPHRASE or the terminal. Returns 0, or CLI_EXIT_FAIL
 * after printing `ehrctl: open key file PATH: <why>`.
 */
int cli__identity_load(const char *path, const char *passphrase_file, ehr_identity **out,
                       ehr_keyfile_info *info);

/* A genesis file read and checked by the ledger's rules (cmd_genesis.c). */
struct cli__genesis_file {
    uint8_t *bytes; /* the file, ehr_malloc'd */
    size_t len;
    Ehr__V1__Genesis *genesis; /* decoded */
    uint8_t hash[32];          /* SHA-256 of the bytes: the genesis hash */
};

/*
 * Read PATH (at most EHR_GENESIS_BYTES_MAX bytes) and check it with
 * ledger_genesis_parse. Returns 0 (free OUT with cli__genesis_file_free), or
 * CLI_EXIT_FAIL after printing `ehrctl: read|check genesis PATH: <why>`.
 */
int cli__genesis_read(const char *path, struct cli__genesis_file *out);
void cli__genesis_file_free(struct cli__genesis_file *file);

/*
 * Open DIR's ledger (cmd_ledger.c). Returns 0, or CLI_EXIT_FAIL after printing
 * `ehrctl: open ledger DIR: <why>` in words an operator can act on.
 */
struct ledger;
int cli__ledger_open(const char *dir, bool read_only, struct ledger **out);

/* Commands (cmd_*.c). */
int cli__cmd_keygen(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_key_show(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_key_passwd(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_genesis_create(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_genesis_show(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_genesis_member(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_ledger_init(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_ledger_verify(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_ledger_status(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_block_show(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_tx_show(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_init(struct cli__ctx *ctx, int argc, char **argv);

#endif /* EHR_CLI_INTERNAL_H */
