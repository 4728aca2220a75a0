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
#include "ehr/v1/node.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "ehr_crypto.h"
#include "rpc.h"

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,
    CLI_EXIT_USAGE = 2,
    /* Commands that talk to a node: the gRPC statuses a caller acts on. */
    CLI_EXIT_REJECTED = 3,    /* INVALID_ARGUMENT: the node refused the request */
    CLI_EXIT_DUPLICATE = 4,   /* ALREADY_EXISTS: the transaction is known already */
    CLI_EXIT_BUSY = 5,        /* RESOURCE_EXHAUSTED: mempool full, retry later */
    CLI_EXIT_UNAVAILABLE = 6, /* UNAVAILABLE: unreachable, no leader, or not the leader */
    CLI_EXIT_TIMEOUT = 7,     /* DEADLINE_EXCEEDED: no answer within --timeout-ms */
    /* Not an exit status: "the help was shown, stop here". Option parsers
     * return it like any other non-zero code, so every caller's
     * `if (exit_code != 0) return exit_code;` stops the command; main turns it
     * into 0. (A 0 here would let the command carry on with no arguments.) */
    CLI_EXIT_HELP_SHOWN = -1,
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
    int exit_code; /* set by cli__getopt when it returns CLI_OPT_EXIT; never 0 */
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
 * CLI_OPT_EXIT with ctx->exit_code set (CLI_EXIT_HELP_SHOWN after --help,
 * 2 after a usage error): the caller returns ctx->exit_code at once.
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

/*
 * Protobuf enum values by name: the full name ("RECORD_TYPE_LAB_RESULT") or
 * the short one in lower case ("lab_result": the full name less the prefix
 * all the enum's values share). cli__enum_value finds a value by either
 * (NULL if none); cli__json_enum gives VALUE's short name as JSON (the number
 * for a value the schema does not name); cli__enum_prefix_len the prefix's
 * length.
 */
const ProtobufCEnumValue *cli__enum_value(const ProtobufCEnumDescriptor *ed, const char *text);
json_t *cli__json_enum(const ProtobufCEnumDescriptor *ed, int value);
size_t cli__enum_prefix_len(const ProtobufCEnumDescriptor *ed);

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
 * Bytes one element of the repeated field FD takes in memory (the stride of
 * the array protobuf-c keeps at FD's offset): the one answer both the JSON
 * reader of payloads (payload.c) and the printer (show.c) walk arrays with.
 * FD must be a repeated field.
 */
size_t cli__repeated_element_bytes(const ProtobufCFieldDescriptor *fd);

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
 * message in DIAG (may be NULL): -errno or EHR_ETOOBIG for the file;
 * EHR_EINVAL for a file with more than one line or a confirmation that
 * differs; EHR_ENOTFOUND when there is no file, no variable and no terminal.
 * P is freed on error.
 */
int cli__passphrase_get(struct cli__passphrase *p, const struct cli__passphrase_source *source,
                        ehr_diag *diag);

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

/*
 * Printing a committed transaction and a block (show.c), shared by the
 * offline (--data) and online (--node) forms of `tx show` and `block show`
 * so that both print the same thing for the same data.
 */
struct cli__tx_shown {
    const uint8_t *envelope; /* the serialized TxEnvelope as committed */
    size_t envelope_len;
    uint64_t height;        /* of the block that holds it */
    uint32_t index;         /* its position in that block */
    const char *chain_id;   /* the ledger's chain, for the admission check */
    uint64_t block_time_ms; /* the check is made as of the block's time */
};

/*
 * Print TX (whose id is HASH, given by the user as HASH_ARG) in human or
 * --json form. Returns CLI_EXIT_OK, or CLI_EXIT_FAIL after saying why (the
 * body does not decode, or does not hash to HASH).
 */
int cli__tx_print(struct cli__ctx *ctx, const uint8_t hash[32], const char *hash_arg,
                  const struct cli__tx_shown *tx);

/*
 * Parse the serialized Block BYTES (which must be block HEIGHT) and print it.
 * Returns CLI_EXIT_OK, or CLI_EXIT_FAIL after saying why it does not parse.
 */
int cli__block_print(struct cli__ctx *ctx, const uint8_t *bytes, size_t len, uint64_t height);

/*
 * A node's gRPC API (node.c). --node HOST:PORT (else $EHR_NODE, else
 * CLI_NODE_DEFAULT) and --timeout-ms (connect and each call). Every byte
 * field whose size the API fixes is checked before use.
 */
#define CLI_NODE_DEFAULT "127.0.0.1:7001"
enum {
    CLI_HOST_BYTES_MAX = 253, /* a DNS name's longest text form */
    CLI_TIMEOUT_MS_DEFAULT = 10000,
    CLI_STATUS_PEERS_MAX = 1024, /* peers listed by GetStatus */
};
#define CLI_TIMEOUT_MS_MAX (24ull * 3600 * 1000)

/* The options table entries; their values are 'N' and 'T'. */
#define CLI_NODE_OPTIONS                                                                           \
    {"node", required_argument, NULL, 'N'},                                                        \
    {                                                                                              \
        "timeout-ms", required_argument, NULL, 'T'                                                 \
    }

struct cli__node_options {
    const char *address; /* as given; NULL until cli__node_options_finish */
    uint64_t timeout_ms;
    bool given;            /* --node was on the command line */
    bool timeout_ms_given; /* --timeout-ms was on the command line */
};

/*
 * Parse HOST:PORT or [IPv6]:PORT (port 1-65535, host printable ASCII of at
 * most CLI_HOST_BYTES_MAX bytes). Returns 0 or EHR_EINVAL.
 */
int cli__address_parse(const char *text, char host[CLI_HOST_BYTES_MAX + 1], uint16_t *port);

/* Handle option C ('N' or 'T') with ARG into O. Returns 0 or CLI_EXIT_USAGE (said why). */
int cli__node_option(struct cli__ctx *ctx, int c, const char *arg, struct cli__node_options *o);

/* Fill in the defaults ($EHR_NODE, CLI_NODE_DEFAULT). Returns 0 or CLI_EXIT_USAGE. */
int cli__node_options_finish(struct cli__ctx *ctx, struct cli__node_options *o);

/* A blocking connection to one node. */
struct cli__node {
    char address[CLI_HOST_BYTES_MAX + 8]; /* as given, for messages */
    char host[CLI_HOST_BYTES_MAX + 1];
    uint16_t port;
    uint64_t timeout_ms;
    struct rpc_sync *sync;
};

/*
 * Connect within O's timeout. Returns 0, or CLI_EXIT_UNAVAILABLE after
 * printing `ehrctl: WHAT: cannot connect to ... (UNAVAILABLE)`.
 */
int cli__node_open(struct cli__node *node, const struct cli__node_options *o, const char *what);
void cli__node_close(struct cli__node *node);

/*
 * Call /ehr.v1.Node/METHOD with REQUEST and a deadline of TIMEOUT_MS (0: the
 * node's --timeout-ms). Returns the status; RESULT is always filled (release
 * with rpc_result_clear).
 */
enum rpc_status cli__node_call(struct cli__node *node, const char *method,
                               const ProtobufCMessage *request, uint64_t timeout_ms,
                               struct rpc_result *result);

/* The exit status for a gRPC status (CLI_EXIT_* above; 1 for the rest). */
int cli__exit_for_status(enum rpc_status status);

/*
 * Print one line for a failed call: what the status means, its name, the
 * node, grpc-message (control characters shown as '?'), and for UNAVAILABLE
 * the leader the message names. Returns cli__exit_for_status(status).
 */
int cli__node_fail(const struct cli__node *node, const struct rpc_result *result,
                   const char *what_fmt, ...) __attribute__((format(printf, 3, 4)));

/* Print `ehrctl: WHAT: bad answer from NODE: WHY`. Returns CLI_EXIT_FAIL. */
int cli__node_bad_answer(const struct cli__node *node, const char *what, const char *why);

/*
 * GetStatus, decoded and checked (32-byte ids and tip hash, a chain id of
 * at most 64 bytes, a bounded peer list). Returns 0 and *OUT (free with
 * ehr__v1__get_status_response__free_unpacked), or the exit status after
 * printing why.
 */
int cli__node_get_status(struct cli__node *node, const char *what,
                         Ehr__V1__GetStatusResponse **out);

/*
 * The online forms of `tx show` and `block show` (cmd_node.c): the same
 * output as the offline ones, from GetTransaction / GetBlock. O is finished.
 */
int cli__tx_show_online(struct cli__ctx *ctx, const struct cli__node_options *o,
                        const uint8_t hash[32], const char *hash_arg);
int cli__block_show_online(struct cli__ctx *ctx, const struct cli__node_options *o,
                           uint64_t height);

/*
 * Transaction payloads from JSON (payload.c). A payload file is at most
 * CLI_PAYLOAD_FILE_BYTES_MAX bytes (hex doubles the bytes of a body).
 */
#define CLI_PAYLOAD_FILE_BYTES_MAX (4u * 64 * 1024)

/*
 * Set BODY's payload from ROOT, {"<payload type>": {<fields>}}, strictly (see
 * payload.c). BODY's payload must be unset. Returns 0 (release with
 * cli__payload_free), or EHR_EINVAL with a reason naming the key in DIAG
 * (may be NULL).
 */
int cli__payload_from_json(json_t *root, Ehr__V1__TxBody *body, ehr_diag *diag);
void cli__payload_free(Ehr__V1__TxBody *body);

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
int cli__cmd_status(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_tx_submit(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_blocks_follow(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_bench(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_policy_compile(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_policy_show(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_policy_eval(struct cli__ctx *ctx, int argc, char **argv);

#endif /* EHR_CLI_INTERNAL_H */
