/*
 * cmd_query.c - the listings a patient's data needs, over a node's gRPC
 * API: `ehrctl audit` (GetAuditTrail), `ehrctl records` (ListRecords) and
 * `ehrctl consents` (ListConsents); and one record, `ehrctl record show`
 * (GetRecord), whose anchor is checked here (its hash the record id, the
 * custodian's signature) before it is shown.
 *
 * Keys are given as 64 hex digits or as a key file (its public part, read
 * without a passphrase): cli__public_key_arg. Every request is a signed
 * read (node.proto, "Signed reads"; node/read_auth.h): signed with --key
 * FILE, by default with the key file given as the patient (audit,
 * records, consents --patient) or the grantee (consents --grantee), each
 * page's request for a window of CLI_READ_WINDOW_MS from now. The node
 * answers a reader it refuses with PERMISSION_DENIED (exit 8). Paging (node.proto): each call
 * answers at most --limit entries and a token for the next page; without
 * --all one page is printed (with the token when more follow, and
 * --page-token continues from it), with --all every page, fetched until the
 * node says there is no more. Every answer is checked before use: ids and
 * keys of 32 bytes (or empty where the schema allows), no more entries than
 * asked for, a next page that moves on.
 *
 * Member institutions are named from GetStatus (the node's own name and its
 * peers'): an actor, custodian or grantee that is a member shows as
 * "St. Mary Hospital (3f2a9c1e)". Times are UTC, ISO-8601.
 *
 * Not here: the node's side (node/service.c), what the entries mean
 * (contracts/README.md, "World state").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "cli_internal.h"
#include "contracts.h"
#include "ledger_format.h"
#include "read_auth.h"

enum {
    HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    SHORT_HEX_DIGITS = 8, /* of a key or id in a human line */
    LINE_BYTES = 1024,
    QUERY_LIMIT_DEFAULT = 100,
    QUERY_LIMIT_MAX = 1000,       /* the node's NODE_QUERY_LIMIT_MAX (node.proto) */
    QUERY_PAGES_MAX = 1000000,    /* --all: a node that never ends the listing is cut off */
    QUERY_TOKEN_BYTES_MAX = 1024, /* a page token (a state key: EHR_STATE_KEY_BYTES_MAX) */
    NAME_SHOWN_BYTES = 64,
    /* A signed request's window: long enough for a slow call, well within
     * the node's NODE_READ_AUTH_WINDOW_MS_MAX. */
    CLI_READ_WINDOW_MS = 60000,
};
_Static_assert(CLI_READ_WINDOW_MS <= NODE_READ_AUTH_WINDOW_MS_MAX, "the node takes the window");

/* ---- options shared by the three listings ---- */

struct query_args {
    struct cli__node_options node;
    uint64_t limit;
    bool all;
    uint8_t token[QUERY_TOKEN_BYTES_MAX];
    size_t token_len;
    const char *key_path;        /* --key: the reader's key file */
    const char *passphrase_file; /* --passphrase-file */
    bool fhir;                   /* --fhir (audit, consents): a FHIR R4 Bundle of every page */
};

#define QUERY_OPTIONS                                                                              \
    {"limit", required_argument, NULL, 'l'}, {"all", no_argument, NULL, 'a'},                      \
        {"page-token", required_argument, NULL, 't'}, {"key", required_argument, NULL, 'k'},       \
    {                                                                                              \
        "passphrase-file", required_argument, NULL, 'p'                                            \
    }

/* Handle 'l', 'a', 't' and the node options. Returns 0 or CLI_EXIT_USAGE. */
static int query_option(struct cli__ctx *ctx, int c, const char *arg, struct query_args *q)
{
    switch (c) {
    case 'l':
        if (cli__parse_u64(arg, QUERY_LIMIT_MAX, &q->limit) != 0 || q->limit == 0)
            return cli__usage_error(ctx, "--limit wants 1 to %d entries per page", QUERY_LIMIT_MAX);
        return 0;
    case 'a':
        q->all = true;
        return 0;
    case 'f':
        q->fhir = true;
        return 0;
    case 'k':
        q->key_path = arg;
        return 0;
    case 'p':
        q->passphrase_file = arg;
        return 0;
    case 't': {
        size_t len = strlen(arg);
        if (len == 0 || len % 2 != 0 || len / 2 > sizeof q->token ||
            ehr_hex_decode(q->token, len / 2, arg) != 0)
            return cli__usage_error(ctx, "--page-token wants the hex token a listing printed");
        q->token_len = len / 2;
        return 0;
    }
    default:
        return cli__node_option(ctx, c, arg, &q->node);
    }
}

/* --fhir's rules, once the options are read: it is JSON of its own and
 * covers every page. Returns 0 or CLI_EXIT_USAGE. */
static int fhir_options_finish(struct cli__ctx *ctx, struct query_args *q)
{
    if (!q->fhir)
        return 0;
    if (ctx->json)
        return cli__usage_error(ctx, "--fhir prints FHIR JSON of its own: not with --json");
    if (q->token_len > 0)
        return cli__usage_error(ctx, "--fhir exports every page: not with --page-token");
    q->all = true;
    return 0;
}

/* A key argument into KEY, or a usage error naming WHAT. */
static int key_argument(struct cli__ctx *ctx, const char *what, const char *text,
                        uint8_t key[EHR_SCHNORR_PUBLIC_BYTES])
{
    ehr_diag why;
    if (cli__public_key_arg(text, key, NULL, &why) != 0)
        return cli__usage_error(ctx, "%s: %s", what, why.msg);
    return 0;
}

/*
 * The reader's key file: --key, else DEFAULT_ARG when it names a key file
 * (not 64 hex digits), else a usage error saying that WHAT must be signed.
 */
static int reader_key_path(struct cli__ctx *ctx, const struct query_args *q,
                           const char *default_arg, const char *what, const char **path)
{
    *path = q->key_path;
    if (*path != NULL)
        return 0;
    size_t len = default_arg != NULL ? strlen(default_arg) : 0;
    uint8_t ignored[EHR_SCHNORR_PUBLIC_BYTES];
    bool hex = len == 2 * EHR_SCHNORR_PUBLIC_BYTES &&
               ehr_hex_decode(ignored, sizeof ignored, default_arg) == 0;
    if (default_arg != NULL && !hex) {
        *path = default_arg;
        return 0;
    }
    return cli__usage_error(ctx,
                            "a read of %s is signed by its reader: give --key FILE (the "
                            "patient's key file, a custodian's, a grantee's or a regulator's), "
                            "or the patient as a key file",
                            what);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- member names ---- */

struct names {
    size_t count;
    uint8_t keys[CLI_STATUS_PEERS_MAX + 1][EHR_SCHNORR_PUBLIC_BYTES];
    char names[CLI_STATUS_PEERS_MAX + 1][NAME_SHOWN_BYTES];
};

static void names_add(struct names *n, const uint8_t *key, const char *name)
{
    EHR_ASSERT(n->count < EHR_ARRAY_COUNT(n->keys));
    memcpy(n->keys[n->count], key, EHR_SCHNORR_PUBLIC_BYTES);
    cli__text_shown(name, n->names[n->count], sizeof n->names[n->count]);
    n->count++;
}

/* The member institutions the node knows, from S. */
static void names_from_status(struct names *n, const Ehr__V1__GetStatusResponse *s)
{
    n->count = 0;
    names_add(n, s->node_id.data, s->name);
    for (size_t i = 0; i < s->n_peers; i++)
        names_add(n, s->peers[i]->node_id.data, s->peers[i]->name);
}

/* KEY's member name, or NULL. KEY may be empty (LEN 0). */
static const char *name_of(const struct names *n, const uint8_t *key, size_t len)
{
    if (len != EHR_SCHNORR_PUBLIC_BYTES)
        return NULL;
    for (size_t i = 0; i < n->count; i++) {
        if (memcmp(n->keys[i], key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            return n->names[i];
    }
    return NULL;
}

/* "Name (1a2b3c4d)" for a member, else the short hex, into OUT. */
static void who_text(const struct names *n, const uint8_t *key, size_t len, char *out, size_t size)
{
    char hex[HASH_HEX_BYTES] = "-";
    if (len == EHR_SCHNORR_PUBLIC_BYTES) {
        ehr_hex_encode(hex, key, len);
        hex[SHORT_HEX_DIGITS] = '\0';
    }
    const char *name = name_of(n, key, len);
    if (name != NULL)
        snprintf(out, size, "%s (%s)", name, hex);
    else
        snprintf(out, size, "%s", hex);
}

static json_t *json_key(const uint8_t *key, size_t len)
{
    return len == 0 ? json_null() : cli__json_hex(key, len);
}

static json_t *json_name(const struct names *n, const uint8_t *key, size_t len)
{
    const char *name = name_of(n, key, len);
    return name != NULL ? cli__json_text(name) : json_null();
}

static void short_hex(const uint8_t *bytes, size_t len, char out[SHORT_HEX_DIGITS + 1])
{
    char hex[HASH_HEX_BYTES];
    EHR_ASSERT(len == EHR_HASH_BYTES);
    ehr_hex_encode(hex, bytes, len);
    memcpy(out, hex, SHORT_HEX_DIGITS);
    out[SHORT_HEX_DIGITS] = '\0';
}

/* ChainPlace checked: present, with a 32-byte transaction hash. */
static bool place_ok(const Ehr__V1__ChainPlace *p)
{
    return p != NULL && p->tx_hash.len == EHR_HASH_BYTES;
}

static json_t *place_json(const Ehr__V1__ChainPlace *p)
{
    char time[40];
    cli__time_iso(p->time_ms, time, sizeof time);
    json_t *j = json_pack("{s:o, s:I, s:o, s:o, s:s}", "height", cli__json_u64(p->height),
                          "position", (json_int_t)p->position, "tx_hash",
                          cli__json_hex(p->tx_hash.data, p->tx_hash.len), "time_ms",
                          cli__json_u64(p->time_ms), "time", time);
    if (j == NULL)
        ehr_panic("out of memory building JSON");
    return j;
}

static const char *enum_short(const ProtobufCEnumDescriptor *ed, int value, char *out, size_t size)
{
    json_t *j = cli__json_enum(ed, value);
    if (json_is_string(j))
        snprintf(out, size, "%s", json_string_value(j));
    else
        snprintf(out, size, "%d", value);
    json_decref(j);
    return out;
}

/* ---- one listing, paged ---- */

/*
 * What differs between the three listings: the method, the request (whose
 * limit and page token the pager sets), and what to do with an answer.
 */
struct listing {
    struct cli__ctx *ctx;
    struct cli__node node;
    struct names names;
    const char *what;   /* for messages: "audit", "records", "consents" */
    const char *method; /* GetAuditTrail, ... */
    ProtobufCMessage *request;
    uint32_t *request_limit;
    ProtobufCBinaryData *request_token;
    Ehr__V1__ReadAuth **request_auth;
    const char *key_path;                      /* the reader's key file */
    ehr_identity *reader;                      /* opened by listing_open */
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1]; /* the node's, signed for */
    const ProtobufCMessageDescriptor *response_desc;
    /* Check and show one page (print, or add to ENTRIES in JSON). Returns
     * NULL, or why the answer is bad. *COUNT gets the entries in it, *NEXT
     * the next page token. */
    const char *(*page)(struct listing *l, const ProtobufCMessage *response, size_t *count,
                        ProtobufCBinaryData *next);
    bool fhir;        /* --fhir: ENTRIES are FHIR resources, printed as a Bundle */
    uint64_t now_ms;  /* --fhir: when the listing started (a consent's expiry) */
    json_t *entries;  /* --json: every entry; --fhir: every resource */
    char header[256]; /* text: printed once the first answer is checked */
    size_t shown;
    void *ctx_data; /* the listing's own state */
};

/* Print L's header line (text only) unless done already: once a page has
 * been checked, so that a failure prints nothing on stdout. */
static void listing_header(struct listing *l)
{
    if (!l->ctx->json && !l->fhir && l->header[0] != '\0')
        printf("%s\n", l->header);
    l->header[0] = '\0';
}

/*
 * Sign L's request (its auth field L->request_auth) for L's chain with the
 * reader's key, valid for CLI_READ_WINDOW_MS from now, and call L->method
 * with it once. The signature lives only for the call: *L->request_auth is
 * NULL again on return. Returns 0 with RESULT (release with
 * rpc_result_clear), or an exit status after saying why (the request
 * cannot be signed, or the node's status), nothing to release.
 */
static int listing_call(struct listing *l, struct rpc_result *result)
{
    char path[NODE_READ_AUTH_METHOD_BYTES_MAX + 1];
    snprintf(path, sizeof path, "/ehr.v1.Node/%s", l->method);
    uint64_t now_ms = wall_ms();
    struct node_read_auth_signed auth;
    if (node_read_auth_sign(&auth, l->request, l->request_auth, l->chain_id, path,
                            &l->reader->signing, now_ms, now_ms + CLI_READ_WINDOW_MS) != 0)
        return cli__fail("cannot sign the request", "%s: %s", l->what, l->key_path);
    enum rpc_status status = cli__node_call(&l->node, l->method, l->request, 0, result);
    *l->request_auth = NULL;
    sodium_memzero(&auth, sizeof auth);
    if (status != RPC_STATUS_OK) {
        int exit_code = cli__node_fail(&l->node, result, "%s", l->what);
        rpc_result_clear(result);
        return exit_code;
    }
    return 0;
}

/*
 * Run L to its end: one page, or every page with --all. Prints the JSON
 * object (ROOT, taken, gets "entries" under ENTRIES_KEY and
 * "next_page_token") or, in text, a closing line. Returns an exit status.
 */
static int listing_run(struct listing *l, const struct query_args *q, json_t *root,
                       const char *entries_key)
{
    uint8_t token[QUERY_TOKEN_BYTES_MAX];
    size_t token_len = q->token_len;
    memcpy(token, q->token, q->token_len);
    *l->request_limit = (uint32_t)(q->limit > 0 ? q->limit : QUERY_LIMIT_DEFAULT);
    l->entries = json_array();
    bool more = false;
    int exit_code = 0;
    for (size_t pages = 0; exit_code == 0; pages++) {
        if (pages == QUERY_PAGES_MAX) {
            exit_code = cli__node_bad_answer(&l->node, l->what, "over a million pages");
            break;
        }
        *l->request_token = (ProtobufCBinaryData){token_len, token_len > 0 ? token : NULL};
        /* Each page is its own request: signed afresh, with its token. */
        struct rpc_result result;
        exit_code = listing_call(l, &result);
        if (exit_code != 0)
            break;
        ProtobufCMessage *response =
            protobuf_c_message_unpack(l->response_desc, NULL, result.response_len, result.response);
        rpc_result_clear(&result);
        size_t count = 0;
        ProtobufCBinaryData next = {0, NULL};
        const char *bad =
            response == NULL ? "the answer does not decode" : l->page(l, response, &count, &next);
        if (bad == NULL && count > *l->request_limit)
            bad = "more entries than the limit asked for";
        else if (bad == NULL && next.len > QUERY_TOKEN_BYTES_MAX)
            bad = "a next_page_token over 1024 bytes";
        /* An empty page with a next one is possible: a reader who is not
         * the patient sees some of the records only, and a page ends after
         * the node has looked through so many (node.proto). */
        else if (bad == NULL && next.len > 0 && next.len == token_len &&
                 memcmp(next.data, token, token_len) == 0)
            bad = "the next page is this page again";
        if (bad == NULL) {
            more = next.len > 0;
            token_len = next.len;
            if (more)
                memcpy(token, next.data, next.len);
        }
        if (response != NULL)
            protobuf_c_message_free_unpacked(response, NULL);
        if (bad != NULL) {
            exit_code = cli__node_bad_answer(&l->node, l->what, bad);
            break;
        }
        l->shown += count;
        if (!more || !q->all)
            break;
    }
    if (exit_code != 0) {
        json_decref(l->entries);
        json_decref(root);
        return exit_code;
    }
    if (l->fhir) {
        EHR_ASSERT(!more); /* --fhir implies --all */
        json_decref(root);
        json_t *bundle = cli__fhir_bundle(l->entries, wall_ms());
        l->entries = NULL;
        return cli__json_print(bundle);
    }
    char token_hex[2 * QUERY_TOKEN_BYTES_MAX + 1] = "";
    if (more)
        ehr_hex_encode(token_hex, token, token_len);
    if (l->ctx->json) {
        json_object_set_new(root, entries_key, l->entries);
        json_object_set_new(root, "next_page_token", more ? json_string(token_hex) : json_null());
        return cli__json_print(root);
    }
    json_decref(l->entries);
    json_decref(root);
    listing_header(l); /* an empty listing has a header too */
    if (more)
        printf("(%zu shown; more: --all, or --page-token %s)\n", l->shown, token_hex);
    else
        printf("(%zu %s)\n", l->shown, l->shown == 1 ? "entry" : "entries");
    return 0;
}

/* Open the reader's key (L->key_path), connect, learn the chain and the
 * member names. Returns 0 (close with listing_close) or an exit status. */
static int listing_open(struct listing *l, const struct query_args *q)
{
    ehr_keyfile_info info;
    int exit_code = cli__identity_load(l->key_path, q->passphrase_file, &l->reader, &info);
    if (exit_code != 0)
        return exit_code;
    exit_code = cli__node_open(&l->node, &q->node, l->what);
    if (exit_code != 0) {
        sodium_free(l->reader);
        return exit_code;
    }
    Ehr__V1__GetStatusResponse *s;
    exit_code = cli__node_get_status(&l->node, l->what, &s);
    if (exit_code != 0) {
        cli__node_close(&l->node);
        sodium_free(l->reader);
        return exit_code;
    }
    names_from_status(&l->names, s);
    snprintf(l->chain_id, sizeof l->chain_id, "%s", s->chain_id); /* checked: at most 64 bytes */
    ehr__v1__get_status_response__free_unpacked(s, NULL);
    return 0;
}

static void listing_close(struct listing *l)
{
    cli__node_close(&l->node);
    sodium_free(l->reader); /* wipes the key */
    l->reader = NULL;
}

/* ---- audit ---- */

struct audit_state {
    uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES];
    size_t emergencies;
};

static const char *audit_event_check(const Ehr__V1__AuditEvent *e)
{
    if (!place_ok(e->place))
        return "an event without its place on the chain";
    if (e->actor.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "an event's actor is not 32 bytes";
    if (e->institution.len != 0 && e->institution.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "an event's institution is neither empty nor 32 bytes";
    if (e->record_id.len != 0 && e->record_id.len != EHR_HASH_BYTES)
        return "an event's record_id is neither empty nor 32 bytes";
    if (e->consent_id.len != 0 && e->consent_id.len != EHR_HASH_BYTES)
        return "an event's consent_id is neither empty nor 32 bytes";
    return NULL;
}

static const char *decision_text(int decision)
{
    switch (decision) {
    case EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT:
        return "permit";
    case EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY:
        return "deny";
    default:
        return NULL;
    }
}

/* The actor of E in words: "patient", a member, or a practitioner of one. */
static void actor_text(const struct listing *l, const struct audit_state *st,
                       const Ehr__V1__AuditEvent *e, char *out, size_t size)
{
    if (memcmp(e->actor.data, st->patient, EHR_SCHNORR_PUBLIC_BYTES) == 0) {
        snprintf(out, size, "patient");
        return;
    }
    char who[NAME_SHOWN_BYTES + 32];
    who_text(&l->names, e->actor.data, e->actor.len, who, sizeof who);
    bool practitioner = e->institution.len == EHR_SCHNORR_PUBLIC_BYTES &&
                        memcmp(e->institution.data, e->actor.data, EHR_SCHNORR_PUBLIC_BYTES) != 0;
    if (!practitioner) {
        snprintf(out, size, "%s", who);
        return;
    }
    char of[NAME_SHOWN_BYTES + 32];
    who_text(&l->names, e->institution.data, e->institution.len, of, sizeof of);
    snprintf(out, size, "practitioner %s of %s", who, of);
}

static void audit_event_print(const struct listing *l, const struct audit_state *st,
                              const Ehr__V1__AuditEvent *e)
{
    char place[48], time[40], kind[32], actor[3 * NAME_SHOWN_BYTES + 128], details[LINE_BYTES];
    snprintf(place, sizeof place, "%llu/%u", (unsigned long long)e->place->height,
             e->place->position);
    cli__time_iso(e->place->time_ms, time, sizeof time);
    enum_short(&ehr__v1__audit_kind__descriptor, e->kind, kind, sizeof kind);
    actor_text(l, st, e, actor, sizeof actor);
    size_t at = 0;
    details[0] = '\0';
    char id[SHORT_HEX_DIGITS + 1], purpose[32];
    if (e->record_id.len == EHR_HASH_BYTES) {
        short_hex(e->record_id.data, e->record_id.len, id);
        at += (size_t)snprintf(details + at, sizeof details - at, "  record %s", id);
    }
    if (e->consent_id.len == EHR_HASH_BYTES && at < sizeof details) {
        short_hex(e->consent_id.data, e->consent_id.len, id);
        at += (size_t)snprintf(details + at, sizeof details - at, "  consent %s", id);
    }
    if (e->purpose != EHR__V1__PURPOSE__PURPOSE_UNSPECIFIED && at < sizeof details)
        at += (size_t)snprintf(
            details + at, sizeof details - at, "  for %s",
            enum_short(&ehr__v1__purpose__descriptor, e->purpose, purpose, sizeof purpose));
    const char *decision = decision_text(e->decision);
    if (decision != NULL && at < sizeof details)
        at += (size_t)snprintf(details + at, sizeof details - at, "  %s", decision);
    if (e->reason[0] != '\0' && at < sizeof details) {
        char reason[CONTRACTS_REASON_BYTES_MAX + 1];
        cli__text_shown(e->reason, reason, sizeof reason);
        at += (size_t)snprintf(details + at, sizeof details - at, "  \"%s\"", reason);
    }
    if (at >= sizeof details)
        details[sizeof details - 1] = '\0';
    /* An emergency access is flagged at the start of its line. */
    printf("%s %-10s %s  %-9s  %s%s\n", e->emergency ? "!" : " ", place, time, kind, actor,
           details);
}

static json_t *audit_event_json(const struct listing *l, const Ehr__V1__AuditEvent *e)
{
    const char *decision = decision_text(e->decision);
    json_t *j =
        json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b}", "kind",
                  cli__json_enum(&ehr__v1__audit_kind__descriptor, e->kind), "place",
                  place_json(e->place), "actor", json_key(e->actor.data, e->actor.len),
                  "actor_name", json_name(&l->names, e->actor.data, e->actor.len), "institution",
                  json_key(e->institution.data, e->institution.len), "institution_name",
                  json_name(&l->names, e->institution.data, e->institution.len), "record_id",
                  json_key(e->record_id.data, e->record_id.len), "consent_id",
                  json_key(e->consent_id.data, e->consent_id.len), "purpose",
                  e->purpose != EHR__V1__PURPOSE__PURPOSE_UNSPECIFIED
                      ? cli__json_enum(&ehr__v1__purpose__descriptor, e->purpose)
                      : json_null(),
                  "decision", decision != NULL ? json_string(decision) : json_null(), "reason",
                  e->reason[0] != '\0' ? cli__json_text(e->reason) : json_null(), "emergency",
                  (int)e->emergency);
    if (j == NULL)
        ehr_panic("out of memory building JSON");
    return j;
}

static const char *audit_page(struct listing *l, const ProtobufCMessage *response, size_t *count,
                              ProtobufCBinaryData *next)
{
    const Ehr__V1__GetAuditTrailResponse *r = (const Ehr__V1__GetAuditTrailResponse *)response;
    struct audit_state *st = l->ctx_data;
    for (size_t i = 0; i < r->n_events; i++) {
        const char *bad = audit_event_check(r->events[i]);
        if (bad != NULL)
            return bad;
    }
    listing_header(l);
    for (size_t i = 0; i < r->n_events; i++) {
        const Ehr__V1__AuditEvent *e = r->events[i];
        st->emergencies += e->emergency;
        if (l->fhir)
            json_array_append_new(
                l->entries,
                cli__fhir_audit_event(
                    e, st->patient, name_of(&l->names, e->actor.data, e->actor.len),
                    name_of(&l->names, e->institution.data, e->institution.len), l->chain_id));
        else if (l->ctx->json)
            json_array_append_new(l->entries, audit_event_json(l, r->events[i]));
        else
            audit_event_print(l, st, r->events[i]);
    }
    *count = r->n_events;
    *next = r->next_page_token;
    return NULL;
}

int cli__cmd_audit(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"emergency", no_argument, NULL, 'e'},
                                            {"fhir", no_argument, NULL, 'f'},
                                            QUERY_OPTIONS,
                                            CLI_NODE_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    struct query_args q = {0};
    bool emergency = false;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'e')
            emergency = true;
        else if (query_option(ctx, c, optarg, &q) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "give one PATIENT: 64 hex digits or a key file");
    struct audit_state st = {0};
    const char *key_path = NULL;
    int exit_code = fhir_options_finish(ctx, &q);
    if (exit_code == 0)
        exit_code = key_argument(ctx, "PATIENT", argv[optind], st.patient);
    if (exit_code == 0)
        exit_code = reader_key_path(ctx, &q, argv[optind], "an audit trail", &key_path);
    if (exit_code == 0)
        exit_code = cli__node_options_finish(ctx, &q.node);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__GetAuditTrailRequest request = EHR__V1__GET_AUDIT_TRAIL_REQUEST__INIT;
    request.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, st.patient};
    request.emergency_only = emergency;
    struct listing l = {.ctx = ctx,
                        .what = "audit",
                        .method = "GetAuditTrail",
                        .request = &request.base,
                        .request_limit = &request.limit,
                        .request_token = &request.page_token,
                        .request_auth = &request.auth,
                        .key_path = key_path,
                        .response_desc = &ehr__v1__get_audit_trail_response__descriptor,
                        .page = audit_page,
                        .ctx_data = &st,
                        .fhir = q.fhir,
                        .now_ms = wall_ms()};
    exit_code = listing_open(&l, &q);
    if (exit_code != 0)
        return exit_code;
    char patient_hex[HASH_HEX_BYTES];
    ehr_hex_encode(patient_hex, st.patient, EHR_SCHNORR_PUBLIC_BYTES);
    json_t *root = NULL;
    if (ctx->json) {
        root = json_pack("{s:s, s:b}", "patient", patient_hex, "emergency_only", (int)emergency);
        if (root == NULL)
            ehr_panic("out of memory building JSON");
    } else {
        snprintf(l.header, sizeof l.header, "%s of patient %s (! marks an emergency access)",
                 emergency ? "emergency accesses" : "audit trail", patient_hex);
    }
    exit_code = listing_run(&l, &q, root, "events");
    listing_close(&l);
    return exit_code;
}

/* ---- records ---- */

static const char *record_check(const Ehr__V1__RecordInfo *r)
{
    if (r->record_id.len != EHR_HASH_BYTES)
        return "a record_id is not 32 bytes";
    if (r->record == NULL || !place_ok(r->record->anchored))
        return "a record without its entry or its place";
    if (r->record->custodian.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "a record's custodian is not 32 bytes";
    if (r->record->patient_key.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "a record's patient_key is not 32 bytes";
    if (r->record->supersedes.len != 0 && r->record->supersedes.len != EHR_HASH_BYTES)
        return "a record's supersedes is neither empty nor 32 bytes";
    if (r->record->superseded_by.len != 0 && r->record->superseded_by.len != EHR_HASH_BYTES)
        return "a record's superseded_by is neither empty nor 32 bytes";
    return NULL;
}

static void record_print(const struct listing *l, const Ehr__V1__RecordInfo *r)
{
    const Ehr__V1__RecordEntry *e = r->record;
    char id[HASH_HEX_BYTES], type[32], custodian[NAME_SHOWN_BYTES + 32], time[40];
    char line[LINE_BYTES];
    ehr_hex_encode(id, r->record_id.data, EHR_HASH_BYTES);
    enum_short(&ehr__v1__record_type__descriptor, e->record_type, type, sizeof type);
    who_text(&l->names, e->custodian.data, e->custodian.len, custodian, sizeof custodian);
    cli__time_iso(e->anchored->time_ms, time, sizeof time);
    size_t at = (size_t)snprintf(line, sizeof line, "%s  %-17s  %llu/%u  %s  custodian %s", id,
                                 type, (unsigned long long)e->anchored->height,
                                 e->anchored->position, time, custodian);
    char other[SHORT_HEX_DIGITS + 1];
    if (e->supersedes.len == EHR_HASH_BYTES && at < sizeof line) {
        short_hex(e->supersedes.data, EHR_HASH_BYTES, other);
        at += (size_t)snprintf(line + at, sizeof line - at, "  supersedes %s", other);
    }
    if (e->superseded_by.len == EHR_HASH_BYTES && at < sizeof line) {
        short_hex(e->superseded_by.data, EHR_HASH_BYTES, other);
        snprintf(line + at, sizeof line - at, "  superseded by %s", other);
    }
    printf("%s\n", line);
}

static json_t *record_json(const struct listing *l, const Ehr__V1__RecordInfo *r)
{
    const Ehr__V1__RecordEntry *e = r->record;
    json_t *j = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "record_id",
        cli__json_hex(r->record_id.data, EHR_HASH_BYTES), "record_type",
        cli__json_enum(&ehr__v1__record_type__descriptor, e->record_type), "patient_key",
        cli__json_hex(e->patient_key.data, e->patient_key.len), "custodian",
        cli__json_hex(e->custodian.data, e->custodian.len), "custodian_name",
        json_name(&l->names, e->custodian.data, e->custodian.len), "anchored",
        place_json(e->anchored), "supersedes", json_key(e->supersedes.data, e->supersedes.len),
        "superseded_by", json_key(e->superseded_by.data, e->superseded_by.len));
    if (j == NULL)
        ehr_panic("out of memory building JSON");
    return j;
}

static const char *records_page(struct listing *l, const ProtobufCMessage *response, size_t *count,
                                ProtobufCBinaryData *next)
{
    const Ehr__V1__ListRecordsResponse *r = (const Ehr__V1__ListRecordsResponse *)response;
    for (size_t i = 0; i < r->n_records; i++) {
        const char *bad = record_check(r->records[i]);
        if (bad != NULL)
            return bad;
    }
    listing_header(l);
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
                                            QUERY_OPTIONS,
                                            CLI_NODE_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    struct query_args q = {0};
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
        } else if (query_option(ctx, c, optarg, &q) != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "give one PATIENT: 64 hex digits or a key file");
    uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES];
    const char *key_path = NULL;
    int exit_code = key_argument(ctx, "PATIENT", argv[optind], patient);
    if (exit_code == 0)
        exit_code = reader_key_path(ctx, &q, argv[optind], "records", &key_path);
    if (exit_code == 0)
        exit_code = cli__node_options_finish(ctx, &q.node);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__ListRecordsRequest request = EHR__V1__LIST_RECORDS_REQUEST__INIT;
    request.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, patient};
    request.record_type = type;
    struct listing l = {.ctx = ctx,
                        .what = "records",
                        .method = "ListRecords",
                        .request = &request.base,
                        .request_limit = &request.limit,
                        .request_token = &request.page_token,
                        .request_auth = &request.auth,
                        .key_path = key_path,
                        .response_desc = &ehr__v1__list_records_response__descriptor,
                        .page = records_page};
    exit_code = listing_open(&l, &q);
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
                 "time, custodian)",
                 patient_hex);
    }
    exit_code = listing_run(&l, &q, root, "records");
    listing_close(&l);
    return exit_code;
}

/* ---- consents ---- */

static const char *consent_check(const Ehr__V1__ConsentInfo *r)
{
    if (r->consent_id.len != EHR_HASH_BYTES)
        return "a consent_id is not 32 bytes";
    const Ehr__V1__ConsentEntry *e = r->consent;
    if (e == NULL || !place_ok(e->granted))
        return "a consent without its entry or its place";
    if (e->patient_key.len != EHR_SCHNORR_PUBLIC_BYTES ||
        e->grantee_key.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "a consent's patient or grantee key is not 32 bytes";
    if (e->revoked && !place_ok(e->revoked_at))
        return "a revoked consent without the place of its revocation";
    for (size_t i = 0; i < e->n_record_ids; i++)
        if (e->record_ids[i].len != EHR_HASH_BYTES)
            return "a consent's record id is not 32 bytes";
    return NULL;
}

/* The period [FROM, UNTIL) in block time: "FROM..UNTIL" (UTC, ISO-8601), or
 * "until UNTIL" when it starts at 0, into OUT. */
static void period_text(uint64_t from_ms, uint64_t until_ms, char *out, size_t size)
{
    char from[40], until[40];
    cli__time_iso(from_ms, from, sizeof from);
    cli__time_iso(until_ms, until, sizeof until);
    if (from_ms == 0)
        snprintf(out, size, "until %s", until);
    else
        snprintf(out, size, "%s..%s", from, until);
}

static void consent_print(const struct listing *l, const Ehr__V1__ConsentInfo *r)
{
    const Ehr__V1__ConsentEntry *e = r->consent;
    char id[HASH_HEX_BYTES], grantee[NAME_SHOWN_BYTES + 32], patient[SHORT_HEX_DIGITS + 1];
    char purpose[32], scope[LINE_BYTES / 2], period[96], line[LINE_BYTES], time[40];
    ehr_hex_encode(id, r->consent_id.data, EHR_HASH_BYTES);
    who_text(&l->names, e->grantee_key.data, e->grantee_key.len, grantee, sizeof grantee);
    short_hex(e->patient_key.data, EHR_SCHNORR_PUBLIC_BYTES, patient);
    enum_short(&ehr__v1__purpose__descriptor, e->purpose, purpose, sizeof purpose);
    size_t at = 0;
    for (size_t i = 0; i < e->n_record_types && at < sizeof scope; i++) {
        char type[32];
        at += (size_t)snprintf(
            scope + at, sizeof scope - at, "%s%s", i > 0 ? "," : "",
            enum_short(&ehr__v1__record_type__descriptor, e->record_types[i], type, sizeof type));
    }
    if (e->n_record_ids > 0 && at < sizeof scope)
        at += (size_t)snprintf(scope + at, sizeof scope - at, "%s%zu record%s", at > 0 ? " + " : "",
                               e->n_record_ids, e->n_record_ids == 1 ? "" : "s");
    if (at == 0)
        snprintf(scope, sizeof scope, "-");
    period_text(e->valid_from_ms, e->valid_until_ms, period, sizeof period);
    cli__time_iso(e->granted->time_ms, time, sizeof time);
    at = (size_t)snprintf(line, sizeof line,
                          "%s  patient %s  grantee %s  %s  %s  %s  policy %zu bytes  granted "
                          "%llu/%u %s",
                          id, patient, grantee, purpose, scope, period, e->policy_program.len,
                          (unsigned long long)e->granted->height, e->granted->position, time);
    if (e->revoked && at < sizeof line) {
        cli__time_iso(e->revoked_at->time_ms, time, sizeof time);
        snprintf(line + at, sizeof line - at, "  REVOKED %llu/%u %s",
                 (unsigned long long)e->revoked_at->height, e->revoked_at->position, time);
    }
    printf("%s\n", line);
}

static json_t *consent_json(const struct listing *l, const Ehr__V1__ConsentInfo *r)
{
    const Ehr__V1__ConsentEntry *e = r->consent;
    json_t *types = json_array(), *ids = json_array();
    if (types == NULL || ids == NULL)
        ehr_panic("out of memory building JSON");
    for (size_t i = 0; i < e->n_record_types; i++)
        json_array_append_new(
            types, cli__json_enum(&ehr__v1__record_type__descriptor, e->record_types[i]));
    for (size_t i = 0; i < e->n_record_ids; i++)
        json_array_append_new(ids, cli__json_hex(e->record_ids[i].data, e->record_ids[i].len));
    json_t *j = json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:b, s:o}", "consent_id",
        cli__json_hex(r->consent_id.data, EHR_HASH_BYTES), "patient_key",
        cli__json_hex(e->patient_key.data, e->patient_key.len), "grantee_key",
        cli__json_hex(e->grantee_key.data, e->grantee_key.len), "grantee_name",
        json_name(&l->names, e->grantee_key.data, e->grantee_key.len), "purpose",
        cli__json_enum(&ehr__v1__purpose__descriptor, e->purpose), "record_types", types,
        "record_ids", ids, "valid_from_ms", cli__json_u64(e->valid_from_ms), "valid_until_ms",
        cli__json_u64(e->valid_until_ms), "policy_program",
        cli__json_hex(e->policy_program.data, e->policy_program.len), "policy_bytes",
        (json_int_t)e->policy_program.len, "granted", place_json(e->granted), "revoked",
        (int)e->revoked, "revoked_at", e->revoked ? place_json(e->revoked_at) : json_null());
    if (j == NULL)
        ehr_panic("out of memory building JSON");
    return j;
}

static const char *consents_page(struct listing *l, const ProtobufCMessage *response, size_t *count,
                                 ProtobufCBinaryData *next)
{
    const Ehr__V1__ListConsentsResponse *r = (const Ehr__V1__ListConsentsResponse *)response;
    for (size_t i = 0; i < r->n_consents; i++) {
        const char *bad = consent_check(r->consents[i]);
        if (bad != NULL)
            return bad;
    }
    listing_header(l);
    for (size_t i = 0; i < r->n_consents; i++) {
        const Ehr__V1__ConsentEntry *e = r->consents[i]->consent;
        if (l->fhir)
            json_array_append_new(
                l->entries,
                cli__fhir_consent(r->consents[i],
                                  name_of(&l->names, e->grantee_key.data, e->grantee_key.len),
                                  l->now_ms));
        else if (l->ctx->json)
            json_array_append_new(l->entries, consent_json(l, r->consents[i]));
        else
            consent_print(l, r->consents[i]);
    }
    *count = r->n_consents;
    *next = r->next_page_token;
    return NULL;
}

int cli__cmd_consents(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"patient", required_argument, NULL, 'P'},
                                            {"grantee", required_argument, NULL, 'G'},
                                            {"fhir", no_argument, NULL, 'f'},
                                            QUERY_OPTIONS,
                                            CLI_NODE_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    struct query_args q = {0};
    const char *patient_arg = NULL, *grantee_arg = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'P')
            patient_arg = optarg;
        else if (c == 'G')
            grantee_arg = optarg;
        else if (query_option(ctx, c, optarg, &q) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if ((patient_arg == NULL) == (grantee_arg == NULL))
        return cli__usage_error(ctx, "give --patient KEY or --grantee KEY (one of them)");
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES];
    bool by_patient = patient_arg != NULL;
    const char *key_path = NULL;
    int exit_code = fhir_options_finish(ctx, &q);
    if (exit_code == 0)
        exit_code = key_argument(ctx, by_patient ? "--patient" : "--grantee",
                                 by_patient ? patient_arg : grantee_arg, key);
    if (exit_code == 0)
        exit_code =
            reader_key_path(ctx, &q, by_patient ? patient_arg : grantee_arg, "consents", &key_path);
    if (exit_code == 0)
        exit_code = cli__node_options_finish(ctx, &q.node);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__ListConsentsRequest request = EHR__V1__LIST_CONSENTS_REQUEST__INIT;
    if (by_patient)
        request.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, key};
    else
        request.grantee_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, key};
    struct listing l = {.ctx = ctx,
                        .what = "consents",
                        .method = "ListConsents",
                        .request = &request.base,
                        .request_limit = &request.limit,
                        .request_token = &request.page_token,
                        .request_auth = &request.auth,
                        .key_path = key_path,
                        .response_desc = &ehr__v1__list_consents_response__descriptor,
                        .page = consents_page,
                        .fhir = q.fhir,
                        .now_ms = wall_ms()};
    exit_code = listing_open(&l, &q);
    if (exit_code != 0)
        return exit_code;
    char key_hex[HASH_HEX_BYTES], who[NAME_SHOWN_BYTES + 32];
    ehr_hex_encode(key_hex, key, EHR_SCHNORR_PUBLIC_BYTES);
    json_t *root = NULL;
    if (ctx->json) {
        root = json_pack("{s:o, s:o}", "patient", by_patient ? json_string(key_hex) : json_null(),
                         "grantee", by_patient ? json_null() : json_string(key_hex));
        if (root == NULL)
            ehr_panic("out of memory building JSON");
    } else {
        who_text(&l.names, key, EHR_SCHNORR_PUBLIC_BYTES, who, sizeof who);
        snprintf(l.header, sizeof l.header, "consents %s %s%s%s",
                 by_patient ? "of patient" : "held by", by_patient ? key_hex : who,
                 by_patient ? "" : " ", by_patient ? "" : key_hex);
    }
    exit_code = listing_run(&l, &q, root, "consents");
    listing_close(&l);
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

static void record_show_print(const struct listing *l, const Ehr__V1__RecordInfo *r,
                              const Ehr__V1__RecordAnchor *a)
{
    const Ehr__V1__RecordEntry *e = r->record;
    char hex[HASH_HEX_BYTES], text[LINE_BYTES], time[40];
    ehr_hex_encode(hex, r->record_id.data, EHR_HASH_BYTES);
    cli__print_field("record id", hex);
    ehr_hex_encode(hex, e->patient_key.data, EHR_SCHNORR_PUBLIC_BYTES);
    cli__print_field("patient", hex);
    cli__print_field(
        "type", enum_short(&ehr__v1__record_type__descriptor, e->record_type, text, sizeof text));
    who_text(&l->names, e->custodian.data, e->custodian.len, text, sizeof text);
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

static json_t *record_show_json(const struct listing *l, const Ehr__V1__RecordInfo *r,
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
    struct query_args q = {0};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (query_option(ctx, c, optarg, &q) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "give one RECORD_ID (the anchor's transaction hash, as "
                                     "record anchor and records print it)");
    uint8_t id[EHR_HASH_BYTES];
    ehr_diag why;
    if (cli__hex_arg(argv[optind], id, sizeof id, &why) != 0)
        return cli__usage_error(ctx, "RECORD_ID %s", why.msg);
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
    struct listing l = {.ctx = ctx,
                        .what = "record show",
                        .method = "GetRecord",
                        .request = &request.base,
                        .request_auth = &request.auth,
                        .key_path = q.key_path};
    exit_code = listing_open(&l, &q);
    if (exit_code != 0)
        return exit_code;
    struct rpc_result result;
    exit_code = listing_call(&l, &result);
    if (exit_code != 0) {
        listing_close(&l);
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
    listing_close(&l);
    return exit_code;
}
