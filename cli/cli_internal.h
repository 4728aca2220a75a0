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
 * and the command's usage on stderr); the commands that talk to a node add
 * 3-10 by the node's gRPC status and 11 for a committed transaction whose
 * result is a refusal (CLI_EXIT_* below).
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
#include "ledger_format.h"
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
    /* The consent contract's rules, run by the leader at submission against
     * its committed state (node.proto): */
    CLI_EXIT_DENIED = 8,        /* PERMISSION_DENIED: the signer has no right to it */
    CLI_EXIT_NOT_FOUND = 9,     /* NOT_FOUND: what it names does not exist */
    CLI_EXIT_PRECONDITION = 10, /* FAILED_PRECONDITION: a rule fails (done already, ...) */
    /* Committed, but the rules refused it when its block was applied: its
     * result (TxResult) is not OK. Not a gRPC status: the call succeeded. */
    CLI_EXIT_TX_REFUSED = 11,
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
    bool json; /* --json: machine-readable output on stdout */
    /* --tls-ca, --tls-cert, --tls-key (CLI_NODE_OPTIONS), taken by
     * cli__getopt and handed on by cli__node_options_finish. */
    const char *tls_ca;
    const char *tls_cert;
    const char *tls_key;
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
 * for a value the schema does not name) and cli__enum_short the same as
 * text into OUT (cut to fit SIZE; returns OUT); cli__enum_prefix_len the
 * prefix's length.
 */
const ProtobufCEnumValue *cli__enum_value(const ProtobufCEnumDescriptor *ed, const char *text);
json_t *cli__json_enum(const ProtobufCEnumDescriptor *ed, int value);
const char *cli__enum_short(const ProtobufCEnumDescriptor *ed, int value, char *out, size_t size);
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
/* The same with the passphrase's sources named: FLAG_NAME (its value
 * PASSPHRASE_FILE) and ENV_NAME, e.g. --patient-passphrase-file and
 * EHR_PATIENT_PASSPHRASE for a second key file in one command. */
int cli__identity_load_from(const char *path, const char *passphrase_file, const char *flag_name,
                            const char *env_name, ehr_identity **out, ehr_keyfile_info *info);

/*
 * A public key given on the command line (util.c): 64 hex digits, or the
 * path of a key file whose signing key it is (read without a passphrase;
 * KX, may be NULL, gets its X25519 key, zeroed for a hex key). Checked to be
 * a point on the curve. Returns 0, or EHR_EINVAL with a reason in DIAG (the
 * caller names the option): a hex string of the wrong length names its
 * length, so a 31-byte key is never taken for a file name.
 */
int cli__public_key_arg(const char *text, uint8_t key[EHR_SCHNORR_PUBLIC_BYTES],
                        uint8_t kx[EHR_KX_PUBLIC_BYTES], ehr_diag *diag);

/* V as a JSON number, or a decimal string past INT64_MAX (json_int_t is signed). */
json_t *cli__json_u64(uint64_t v);

/* TIME_MS as YYYY-MM-DDTHH:MM:SS.mmmZ (UTC) into OUT (32 bytes suffice). */
void cli__time_iso(uint64_t time_ms, char *out, size_t size);

/* The wall clock (CLOCK_REALTIME) in ms since the Unix epoch. */
uint64_t cli__wall_ms(void);

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
    /* What the rules concluded when the block was applied (checked with
     * cli__result_check), or NULL if the node did not say. */
    const Ehr__V1__TxResult *result;
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

/* The options table entries; their values are 'N' and 'T' (the command
 * handles them with cli__node_option) and the CLI_OPT_TLS_* (cli__getopt
 * takes them into the context itself). */
enum { CLI_OPT_TLS_CA = 0x100, CLI_OPT_TLS_CERT, CLI_OPT_TLS_KEY };
#define CLI_NODE_OPTIONS                                                                           \
    {"node", required_argument, NULL, 'N'}, {"timeout-ms", required_argument, NULL, 'T'},          \
        {"tls-ca", required_argument, NULL, CLI_OPT_TLS_CA},                                       \
        {"tls-cert", required_argument, NULL, CLI_OPT_TLS_CERT},                                   \
    {                                                                                              \
        "tls-key", required_argument, NULL, CLI_OPT_TLS_KEY                                        \
    }

struct cli__node_options {
    const char *address; /* as given; NULL until cli__node_options_finish */
    uint64_t timeout_ms;
    bool given;            /* --node was on the command line */
    bool timeout_ms_given; /* --timeout-ms was on the command line */
    /* TLS (cli__node_options_finish: --tls-* else $EHR_TLS_CA, $EHR_TLS_CERT,
     * $EHR_TLS_KEY): tls_ca NULL means cleartext. */
    const char *tls_ca;
    const char *tls_cert;
    const char *tls_key;
};

/*
 * Parse HOST:PORT or [IPv6]:PORT (port 1-65535, host printable ASCII of at
 * most CLI_HOST_BYTES_MAX bytes). Returns 0 or EHR_EINVAL.
 */
int cli__address_parse(const char *text, char host[CLI_HOST_BYTES_MAX + 1], uint16_t *port);

/* Handle option C ('N' or 'T') with ARG into O. Returns 0 or CLI_EXIT_USAGE (said why). */
int cli__node_option(struct cli__ctx *ctx, int c, const char *arg, struct cli__node_options *o);

/* Fill in the defaults ($EHR_NODE, CLI_NODE_DEFAULT; the TLS files from
 * the context, else $EHR_TLS_*). Returns 0 or CLI_EXIT_USAGE. */
int cli__node_options_finish(struct cli__ctx *ctx, struct cli__node_options *o);

/* A blocking connection to one node. */
struct cli__node {
    char address[CLI_HOST_BYTES_MAX + 8]; /* as given, for messages */
    char host[CLI_HOST_BYTES_MAX + 1];
    uint16_t port;
    uint64_t timeout_ms;
    struct rpc_sync *sync;
    struct rpc_tls *tls; /* NULL: cleartext */
};

/*
 * Connect within O's timeout (over TLS when O names a CA: the node's
 * certificate must chain to it and match the host of --node). Returns 0,
 * CLI_EXIT_FAIL when a TLS file cannot be used, or CLI_EXIT_UNAVAILABLE
 * after printing `ehrctl: WHAT: cannot connect to ... (UNAVAILABLE)`.
 */
int cli__node_open(struct cli__node *node, const struct cli__node_options *o, const char *what);
/* As cli__node_open, printing nothing: 0; EHR_EINVAL (a TLS file, or the
 * address) or another code (cannot connect) with why in DIAG (may be NULL). */
int cli__node_connect(struct cli__node *node, const struct cli__node_options *o, ehr_diag *diag);
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
 * Every page of ListMembers from NODE, each member checked (32-byte keys, a
 * known role) and handed to FN(CTX, member) in the node's order; FN returns
 * 0 to go on or an exit status to stop with. WHAT names the command in
 * messages. Returns 0 with *COUNT, or an exit status after saying why
 * (cmd_member.c).
 */
typedef int (*cli__member_fn)(void *ctx, const Ehr__V1__Member *member);
int cli__members_each(struct cli__node *node, const char *what, cli__member_fn fn, void *ctx,
                      size_t *count);

/*
 * GetBlock(HEIGHT), checked: a 32-byte hash, a block that parses, is for
 * HEIGHT and hashes to that hash. Returns 0 with *BYTES (ehr_free) and VIEW
 * (release), RPC NOT_FOUND as EHR_ENOTFOUND with NOT_FOUND (may be NULL:
 * then it is a failure like any other) kept for messages, or an exit status
 * after saying why (cmd_node.c).
 */
int cli__block_fetch(struct cli__node *node, uint64_t height, const char *what, uint8_t **bytes,
                     size_t *len, ledger_block_view *view, struct rpc_result *not_found);

/*
 * The online forms of `tx show` and `block show` (cmd_node.c): the same
 * output as the offline ones, from GetTransaction / GetBlock. O is finished.
 */
int cli__tx_show_online(struct cli__ctx *ctx, const struct cli__node_options *o,
                        const uint8_t hash[32], const char *hash_arg);
int cli__block_show_online(struct cli__ctx *ctx, const struct cli__node_options *o,
                           uint64_t height);

/*
 * The replay `ledger verify` passes to ledger_verify (replay.c): BLOCK's
 * transactions applied again through contracts/ on the state before it, as a
 * node applies them, the results and state writes compared with the stored
 * ones (a ledger_replay_fn; CTX unused).
 */
struct ledger_replay_block;
struct ledger_replay_finding;
int cli__ledger_replay(void *ctx, const struct ledger_replay_block *block,
                       struct ledger_replay_finding *finding, ehr_diag *diag);

/*
 * A transaction's result (result.c): TxResult (tx.proto) for people and for
 * scripts. Shared by every command that prints one.
 */

/* Why R cannot be printed as a result (a consent id that is neither empty nor
 * 32 bytes, a reason over CONTRACTS_REASON_BYTES_MAX), or NULL when it can. */
const char *cli__result_check(const Ehr__V1__TxResult *r);
/* The code's name as tx.proto spells it without its prefix: "OK", "NOT_FOUND"
 * (a number for a code the schema does not name), into OUT (32 bytes). */
void cli__result_code_name(int code, char *out, size_t size);
/* An access decision (AccessDecision) as text: "permit" or "deny" (a static
 * string), or NULL for no decision (unspecified, or a value the schema does
 * not name). */
const char *cli__result_decision_name(int decision);
/*
 * R as human fields (cli__print_field): "result" (the code, and the reason
 * when refused), and for an access decision "decision" (permit or deny,
 * why), "consent" and "policy gas". R == NULL: "result" says the node gave
 * none.
 */
void cli__result_print(const Ehr__V1__TxResult *r);
/* R as JSON: {"code", "ok", "reason", "decision", "consent_id", "gas_used"}
 * (decision and consent_id null when they do not apply); json null for NULL. */
json_t *cli__result_json(const Ehr__V1__TxResult *r);

/*
 * fhir.c: HL7 FHIR R4 resources (JSON) from checked ledger entries; the
 * mapping is cli/README.md's "FHIR R4 export". Each returns a new object
 * (the caller owns it; never NULL, aborts on OOM).
 *
 * cli__fhir_consent: a Consent of C (consent_check passed). GRANTEE_NAME
 * is the grantee member's name or NULL; NOW_MS (wall clock) decides whether
 * an unrevoked consent has expired (status inactive).
 * cli__fhir_audit_event: an AuditEvent of E (audit_event_check passed) in
 * PATIENT's trail on chain CHAIN_ID; ACTOR_NAME and INSTITUTION_NAME are
 * member names or NULL.
 * cli__fhir_bundle: a Bundle of type collection, one entry per resource in
 * RESOURCES (a JSON array, taken), timestamped NOW_MS.
 */
json_t *cli__fhir_consent(const Ehr__V1__ConsentInfo *c, const char *grantee_name, uint64_t now_ms);
json_t *cli__fhir_audit_event(const Ehr__V1__AuditEvent *e,
                              const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES],
                              const char *actor_name, const char *institution_name,
                              const char *chain_id);
json_t *cli__fhir_bundle(json_t *resources, uint64_t now_ms);

/*
 * Signing and submitting a transaction (submit.c), for tx submit and the
 * commands that build a payload themselves (patient enroll).
 */
enum {
    CLI_EXPIRY_S_DEFAULT = 300,
    CLI_EXPIRY_S_MAX = 7 * 24 * 3600, /* a node refuses what has expired anyway */
};

/* --chain-id, --expiry-s and --wait, whose option values are 'c', 'x', 'w'. */
#define CLI_SUBMIT_OPTIONS                                                                         \
    {"chain-id", required_argument, NULL, 'c'}, {"expiry-s", required_argument, NULL, 'x'},        \
    {                                                                                              \
        "wait", no_argument, NULL, 'w'                                                             \
    }

struct cli__submit_options {
    const char *chain_id; /* NULL: the node's, from GetStatus */
    uint64_t expiry_s;    /* 0 until given: CLI_EXPIRY_S_DEFAULT */
    bool wait;
};

/* Handle option C ('c', 'x' or 'w') with ARG into O. Returns 0 or CLI_EXIT_USAGE (said why). */
int cli__submit_option(struct cli__ctx *ctx, int c, const char *arg, struct cli__submit_options *o);

/*
 * The chain id to sign for: O's --chain-id, else the node's (GetStatus),
 * into OUT. Returns 0, or an exit status after saying why (WHAT names the
 * command).
 */
int cli__submit_chain_id(struct cli__node *node, const struct cli__submit_options *o,
                         const char *what, char out[EHR_CHAIN_ID_BYTES_MAX + 1]);

/*
 * Build and sign the envelope: BODY (payload set) gets CHAIN_ID, KEY's
 * public key as signer, a random nonce and an expiry EXPIRY_S from now; the
 * admission checks a node makes are made on the result. Returns 0 with
 * *OUT (ehr_free) and HASH, or an exit status after saying why. BODY's
 * fields other than the payload are as they were (unset) on return.
 */
int cli__tx_sign(struct cli__ctx *ctx, Ehr__V1__TxBody *body, const char *chain_id,
                 uint64_t expiry_s, const ehr_signing_key *key, uint8_t **out, size_t *out_len,
                 uint8_t hash[EHR_HASH_BYTES]);

/*
 * Submit the envelope (WAIT: wait_for_commit) and print the answer: the
 * hash, where it committed and its result (human or --json), EXTRA's string
 * members first (a JSON object, taken; may be NULL). Returns 0; the status's
 * exit after a failed call; CLI_EXIT_TX_REFUSED, with a line on stderr, when
 * it committed with a result that is not OK (what was printed stands).
 */
int cli__tx_send(struct cli__ctx *ctx, struct cli__node *node, const uint8_t *envelope,
                 size_t envelope_len, const uint8_t hash[EHR_HASH_BYTES], bool wait, json_t *extra);

/*
 * The commands that build a payload from their flags and sign it with one
 * key file (practitioner add, record anchor, consent grant and revoke,
 * access request and emergency): --key, --passphrase-file, the submit
 * options and the node options, parsed by one function and used by one
 * submission path, so each command holds only what its payload needs.
 * The option values are 'k', 'p', 'c', 'x', 'w', 'N' and 'T'.
 */
#define CLI_SIGNED_TX_OPTIONS                                                                      \
    {"key", required_argument, NULL, 'k'}, {"passphrase-file", required_argument, NULL, 'p'},      \
        CLI_SUBMIT_OPTIONS, CLI_NODE_OPTIONS

struct cli__signed_tx {
    const char *key_path;        /* --key: the signer's key file (required) */
    const char *passphrase_file; /* --passphrase-file, or NULL */
    struct cli__submit_options submit;
    struct cli__node_options node;
};

/* Handle option C, one of CLI_SIGNED_TX_OPTIONS' (asserted), with ARG into A.
 * Returns 0 or CLI_EXIT_USAGE (said why). */
int cli__signed_tx_option(struct cli__ctx *ctx, int c, const char *arg, struct cli__signed_tx *a);

/* After the options: --key is required; the defaults filled in. Returns 0 or
 * CLI_EXIT_USAGE (said why). */
int cli__signed_tx_finish(struct cli__ctx *ctx, struct cli__signed_tx *a);

/*
 * Sign BODY (its payload set, every value in it already checked) with ID's
 * signing key, or when ID is NULL with the key A names (opened here, with
 * its passphrase), for the node's chain or --chain-id, submit it and print
 * the answer (cli__tx_send). ID_NAME, when not NULL, names the object the
 * transaction creates, whose id is the transaction's hash: printed first as
 * "ID_NAME id" (JSON "ID_NAME_id"), then EXTRA's string members (a JSON
 * object, taken; may be NULL). Returns what cli__tx_send returns, or the
 * exit status of the step that failed after saying why.
 */
int cli__signed_tx_submit(struct cli__ctx *ctx, const struct cli__signed_tx *a,
                          const ehr_identity *id, Ehr__V1__TxBody *body, const char *id_name,
                          json_t *extra);

/*
 * Values given on the command line (util.c).
 * cli__hex_arg: exactly LEN bytes as 2*LEN hex digits into OUT. Returns 0,
 * or EHR_EINVAL with a reason in DIAG (the caller names the option).
 * cli__enum_arg: ED's value by name (full or short, cli__enum_value), never
 * its 0 (UNSPECIFIED) value. Returns 0 or EHR_EINVAL.
 * cli__enum_names: ED's short names but the 0 one, ", "-separated, into OUT
 * (cut to fit SIZE), for the message that lists what is accepted.
 * cli__date_arg: YYYY-MM-DD (UTC midnight, as the policy language reads a
 * date) or ms since the epoch. Returns 0 or EHR_EINVAL.
 */
int cli__hex_arg(const char *text, uint8_t *out, size_t len, ehr_diag *diag);

/* The one argument left after the options, a hash named NAME (RECORD_ID,
 * CONSENT_ID, ...) in hex, into OUT. Returns 0, or CLI_EXIT_USAGE having
 * said "give one NAME (HINT)" or why the hex is wrong. */
int cli__one_hash_arg(struct cli__ctx *ctx, int argc, char **argv, const char *name,
                      const char *hint, uint8_t out[EHR_HASH_BYTES]);
#define CLI_RECORD_ID_HINT "the anchor's transaction hash, as record add and records print it"
int cli__enum_arg(const ProtobufCEnumDescriptor *ed, const char *text, int *value);
void cli__enum_names(const ProtobufCEnumDescriptor *ed, char *out, size_t size);
int cli__date_arg(const char *text, uint64_t *ms);

/*
 * A public key given by one of two options: FILE_OPTION (a key file, only
 * its public part read; 64 hex digits are taken too) or HEX_OPTION (64 hex
 * digits only), exactly one of them (the other's argument NULL). Checked to
 * be a point on the curve. Returns 0 with KEY, or CLI_EXIT_USAGE (said why,
 * naming the option).
 */
int cli__key_choice(struct cli__ctx *ctx, const char *file_option, const char *file_arg,
                    const char *hex_option, const char *hex_arg,
                    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES]);

/*
 * A consent policy FILE (cmd_policy.c): a compiled program as it is, or
 * source compiled with contracts_policy_compile. Returns 0 with OUT set;
 * EHR_EINVAL for source that does not compile, DIAG holding
 * "LINE:COLUMN: message"; another code when the file cannot be read or
 * passes a limit, DIAG saying why. Prints nothing: the caller says it in
 * its command's way.
 */
struct cli__policy_program {
    uint8_t code[1024]; /* CONTRACTS_POLICY_BYTES_MAX, asserted in cmd_policy.c */
    size_t len;
    bool from_source;
};
int cli__policy_program_load(const char *path, struct cli__policy_program *out, ehr_diag *diag);

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
/*
 * A member entry (cmd_genesis.c), as `ehrctl genesis member` prints it and
 * `genesis --members` and `member propose --admit` read it: {"name",
 * "role", "node_key", "kx_key", "address"}, nothing else.
 * cli__member_from_json fills M from OBJ, its keys decoded into KEYS (M
 * points into OBJ and KEYS), every field checked as the ledger checks a
 * member (ledger_genesis_member_check). Returns 0, or EHR_EINVAL with a
 * line naming the field in DIAG. cli__member_role_name: "hospital", ...,
 * or NULL for a value that is no role.
 */
int cli__member_from_json(json_t *obj, Ehr__V1__Member *m, uint8_t keys[2][32], ehr_diag *diag);
const char *cli__member_role_name(int role);

int cli__cmd_keygen(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_key_show(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_key_receiving_key(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_key_passwd(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_genesis_create(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_genesis_show(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_genesis_member(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_ledger_init(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_ledger_verify(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_ledger_status(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_backup(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_backup_inspect(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_restore(struct cli__ctx *ctx, int argc, char **argv);
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
int cli__cmd_patient_enroll(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_patient_consent(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_audit(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_records(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_consents(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_practitioner_add(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_practitioner_remove(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_record_anchor(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_consent_grant(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_consent_revoke(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_record_erase(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_access_request(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_access_emergency(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_member_list(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_member_propose(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_member_remove(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_member_approve(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_record_show(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_record_add(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_record_get(struct cli__ctx *ctx, int argc, char **argv);
int cli__cmd_patient_public_keys(struct cli__ctx *ctx, int argc, char **argv);

#endif /* EHR_CLI_INTERNAL_H */
