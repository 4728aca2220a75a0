/*
 * listing.h - what ehrctl's signed reads of a patient's data share
 * (listing.c): their options, the reader's key, member names from the node's
 * status, the pieces of text and JSON their lines are made of, and the pager
 * that fetches, checks and prints a listing page by page. Its users are
 * `ehrctl audit` (cmd_audit.c), `records` and `record show` (cmd_records.c)
 * and `consents` (cmd_consents.c).
 *
 * A command fills a struct cli__listing with what is its own (the method,
 * the request, a function that checks and shows one page) and takes these
 * steps:
 *
 *   1. its options through cli__listing_option (CLI_LISTING_OPTIONS), then
 *      cli__listing_fhir_finish if it takes --fhir;
 *   2. its key arguments through cli__listing_key_arg, and the reader's key
 *      file through cli__listing_reader_path;
 *   3. cli__listing_open: the key opened, the node connected, its chain id
 *      and member names learnt;
 *   4. the text header line in L->header, or the JSON root object, then
 *      cli__listing_run (or, for one answer, cli__listing_call);
 *   5. cli__listing_close, whatever step 4 returned.
 *
 * Keys are given as 64 hex digits or as a key file (its public part, read
 * without a passphrase): cli__public_key_arg. Every request is a signed
 * read (node.proto, "Signed reads"; node/read_auth.h): signed with --key
 * FILE, by default with the key file given as the patient or the grantee,
 * each page's request for a window of CLI_READ_WINDOW_MS from now. The node
 * answers a reader it refuses with PERMISSION_DENIED (exit 8). Paging
 * (node.proto): each call answers at most --limit entries and a token for
 * the next page; without --all one page is printed (with the token when
 * more follow, and --page-token continues from it), with --all every page,
 * fetched until the node says there is no more. Every answer is checked
 * before use: ids and keys of 32 bytes (or empty where the schema allows;
 * each listing's page function), no more entries than asked for, a next
 * page that moves on (the pager).
 *
 * Member institutions are named from GetStatus (the node's own name and its
 * peers'): an actor, custodian or grantee that is a member shows as
 * "St. Mary Hospital (3f2a9c1e)". Times are UTC, ISO-8601.
 *
 * Not here: what each listing shows and checks in its entries (its
 * cmd_*.c), the node's side (node/service.c), what the entries mean
 * (contracts/README.md, "World state").
 */
#ifndef EHR_CLI_LISTING_H
#define EHR_CLI_LISTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli_internal.h"

enum {
    CLI_LISTING_TOKEN_BYTES_MAX = 1024, /* a page token (a state key: EHR_STATE_KEY_BYTES_MAX) */
    CLI_LISTING_NAME_SHOWN_BYTES = 64,  /* a member's name as shown, with its NUL */
    CLI_LISTING_SHORT_HEX_DIGITS = 8,   /* of a key or id in a human line */
    CLI_LISTING_LINE_BYTES = 1024,      /* a human line; a longer one is cut */
};

/* ---- options ---- */

/* What the listings' options say (record show takes --key, --passphrase-file
 * and the node options only). Zeroed before parsing. */
struct cli__listing_options {
    struct cli__node_options node;
    uint64_t limit;                             /* --limit: entries per page; 0 until given */
    bool all;                                   /* --all: every page */
    uint8_t token[CLI_LISTING_TOKEN_BYTES_MAX]; /* --page-token: where to start */
    size_t token_len;
    const char *key_path;        /* --key: the reader's key file */
    const char *passphrase_file; /* --passphrase-file */
    bool fhir;                   /* --fhir (audit, consents): a FHIR R4 Bundle of every page */
};

/* The options table entries every listing takes; their values are 'l', 'a',
 * 't', 'k' and 'p'. --fhir, where a listing takes it, is 'f'. */
#define CLI_LISTING_OPTIONS                                                                        \
    {"limit", required_argument, NULL, 'l'}, {"all", no_argument, NULL, 'a'},                      \
        {"page-token", required_argument, NULL, 't'}, {"key", required_argument, NULL, 'k'},       \
    {                                                                                              \
        "passphrase-file", required_argument, NULL, 'p'                                            \
    }

/* Handle option C ('l', 'a', 'f', 't', 'k', 'p', or a node option) with ARG
 * into O. Returns 0 or CLI_EXIT_USAGE (said why). */
int cli__listing_option(struct cli__ctx *ctx, int c, const char *arg,
                        struct cli__listing_options *o);

/* --fhir's rules, once the options are read: it is JSON of its own (not
 * with --json) and covers every page (not with --page-token; sets O->all).
 * Nothing to do without --fhir. Returns 0 or CLI_EXIT_USAGE (said why). */
int cli__listing_fhir_finish(struct cli__ctx *ctx, struct cli__listing_options *o);

/* A key argument TEXT (64 hex digits or a key file) into KEY. Returns 0, or
 * CLI_EXIT_USAGE after a message naming WHAT (the option or argument). */
int cli__listing_key_arg(struct cli__ctx *ctx, const char *what, const char *text,
                         uint8_t key[EHR_SCHNORR_PUBLIC_BYTES]);

/*
 * The reader's key file into *PATH (a pointer into O or DEFAULT_ARG, not a
 * copy): --key, else DEFAULT_ARG when it names a key file (not 64 hex
 * digits; may be NULL). Returns 0, or CLI_EXIT_USAGE after saying that a
 * read of WHAT is signed by its reader.
 */
int cli__listing_reader_path(struct cli__ctx *ctx, const struct cli__listing_options *o,
                             const char *default_arg, const char *what, const char **path);

/* ---- member names, and the pieces of a line ---- */

/* The member institutions a node knows (itself and its peers), by key. */
struct cli__listing_names {
    size_t count;
    uint8_t keys[CLI_STATUS_PEERS_MAX + 1][EHR_SCHNORR_PUBLIC_BYTES];
    char names[CLI_STATUS_PEERS_MAX + 1][CLI_LISTING_NAME_SHOWN_BYTES]; /* safe to print */
};

/* KEY's member name (owned by N), or NULL. KEY may be empty (LEN 0). */
const char *cli__listing_name_of(const struct cli__listing_names *n, const uint8_t *key,
                                 size_t len);

/* "Name (1a2b3c4d)" for a member, else the short hex ("-" for an empty
 * key), into OUT (cut to fit SIZE). */
void cli__listing_who_text(const struct cli__listing_names *n, const uint8_t *key, size_t len,
                           char *out, size_t size);

/* The first CLI_LISTING_SHORT_HEX_DIGITS hex digits of BYTES, which must be
 * EHR_HASH_BYTES long (asserted), into OUT. */
void cli__listing_short_hex(const uint8_t *bytes, size_t len,
                            char out[CLI_LISTING_SHORT_HEX_DIGITS + 1]);

/* Whether P, an entry's place on the chain, is present with a 32-byte
 * transaction hash: what the page functions check before using it. */
bool cli__listing_place_ok(const Ehr__V1__ChainPlace *p);

/*
 * JSON values, each new (the caller owns it; never NULL, aborts on OOM):
 * cli__listing_json_key, KEY as hex, or null when empty (LEN 0);
 * cli__listing_json_name, KEY's member name in N, or null;
 * cli__listing_place_json, {height, position, tx_hash, time_ms, time} of P
 * (cli__listing_place_ok passed).
 */
json_t *cli__listing_json_key(const uint8_t *key, size_t len);
json_t *cli__listing_json_name(const struct cli__listing_names *n, const uint8_t *key, size_t len);
json_t *cli__listing_place_json(const Ehr__V1__ChainPlace *p);

/* ---- one listing, paged ---- */

/*
 * One run of a listing, owned by the command (on its stack). The command
 * sets what differs between the listings: the method, the request (whose
 * limit, page token and auth the pager sets), and what to do with an
 * answer; listing.c sets the rest.
 */
struct cli__listing {
    struct cli__ctx *ctx;
    struct cli__node node;           /* connected by cli__listing_open */
    struct cli__listing_names names; /* learnt by cli__listing_open */
    const char *what;                /* for messages: "audit", "records", "consents" */
    const char *method;              /* GetAuditTrail, ... */
    ProtobufCMessage *request;
    uint32_t *request_limit;
    ProtobufCBinaryData *request_token;
    Ehr__V1__ReadAuth **request_auth;
    const char *key_path;                      /* the reader's key file */
    ehr_identity *reader;                      /* opened by cli__listing_open */
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1]; /* the node's, signed for */
    const ProtobufCMessageDescriptor *response_desc;
    /* Check and show one page (print, or add to ENTRIES in JSON). Returns
     * NULL, or why the answer is bad. *COUNT gets the entries in it, *NEXT
     * the next page token. */
    const char *(*page)(struct cli__listing *l, const ProtobufCMessage *response, size_t *count,
                        ProtobufCBinaryData *next);
    bool fhir;        /* --fhir: ENTRIES are FHIR resources, printed as a Bundle */
    uint64_t now_ms;  /* --fhir: when the listing started (a consent's expiry) */
    json_t *entries;  /* --json: every entry; --fhir: every resource */
    char header[256]; /* text: printed once the first answer is checked */
    size_t shown;
    void *ctx_data; /* the listing's own state */
};

/*
 * Open the reader's key (L->key_path, its passphrase from O), connect to
 * O's node, learn its chain id and member names. Returns 0 (then close with
 * cli__listing_close), or an exit status after saying why, nothing left
 * open.
 */
int cli__listing_open(struct cli__listing *l, const struct cli__listing_options *o);

/* Close L's connection and wipe and free the reader's key. */
void cli__listing_close(struct cli__listing *l);

/*
 * Sign L's request (its auth field L->request_auth) for L's chain with the
 * reader's key, valid for CLI_READ_WINDOW_MS from now, and call L->method
 * with it once. The signature lives only for the call: *L->request_auth is
 * NULL again on return. Returns 0 with RESULT (release with
 * rpc_result_clear), or an exit status after saying why (the request
 * cannot be signed, or the node's status), nothing to release.
 */
int cli__listing_call(struct cli__listing *l, struct rpc_result *result);

/* Print L's header line (text only) unless done already: a page function
 * calls it once the page has been checked, so that a failure prints nothing
 * on stdout. */
void cli__listing_header(struct cli__listing *l);

/*
 * Run L to its end: one page, or every page with O->all, each request
 * signed afresh (cli__listing_call) and each answer checked. Prints the
 * JSON object (ROOT, taken; may be NULL in text, gets "entries" under
 * ENTRIES_KEY and "next_page_token"), the FHIR Bundle, or in text a closing
 * line. Returns an exit status (after saying why, nothing on stdout but
 * what the pages printed).
 */
int cli__listing_run(struct cli__listing *l, const struct cli__listing_options *o, json_t *root,
                     const char *entries_key);

#endif /* EHR_CLI_LISTING_H */
