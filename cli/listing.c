/*
 * listing.c - what ehrctl's signed reads share: their options, the reader's
 * key, member names from GetStatus, the pieces of text and JSON their lines
 * are made of, and the pager (cli__listing_run). The contract, and the
 * steps a command takes, are in listing.h.
 *
 * Not here: any one listing's request, checks or lines (cmd_audit.c,
 * cmd_records.c, cmd_consents.c).
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "listing.h"
#include "read_auth.h"

enum {
    HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    LISTING_LIMIT_DEFAULT = 100,
    LISTING_LIMIT_MAX = 1000,    /* the node's NODE_QUERY_LIMIT_MAX (node.proto) */
    LISTING_PAGES_MAX = 1000000, /* --all: a node that never ends the listing is cut off */
    /* A signed request's window: long enough for a slow call, well within
     * the node's NODE_READ_AUTH_WINDOW_MS_MAX. */
    CLI_READ_WINDOW_MS = 60000,
};
_Static_assert(CLI_READ_WINDOW_MS <= NODE_READ_AUTH_WINDOW_MS_MAX, "the node takes the window");

/* ---- options ---- */

int cli__listing_option(struct cli__ctx *ctx, int c, const char *arg,
                        struct cli__listing_options *o)
{
    switch (c) {
    case 'l':
        if (cli__parse_u64(arg, LISTING_LIMIT_MAX, &o->limit) != 0 || o->limit == 0)
            return cli__usage_error(ctx, "--limit wants 1 to %d entries per page",
                                    LISTING_LIMIT_MAX);
        return 0;
    case 'a':
        o->all = true;
        return 0;
    case 'f':
        o->fhir = true;
        return 0;
    case 'k':
        o->key_path = arg;
        return 0;
    case 'p':
        o->passphrase_file = arg;
        return 0;
    case 't': {
        size_t len = strlen(arg);
        if (len == 0 || len % 2 != 0 || len / 2 > sizeof o->token ||
            ehr_hex_decode(o->token, len / 2, arg) != 0)
            return cli__usage_error(ctx, "--page-token wants the hex token a listing printed");
        o->token_len = len / 2;
        return 0;
    }
    default:
        return cli__node_option(ctx, c, arg, &o->node);
    }
}

int cli__listing_fhir_finish(struct cli__ctx *ctx, struct cli__listing_options *o)
{
    if (!o->fhir)
        return 0;
    if (ctx->json)
        return cli__usage_error(ctx, "--fhir prints FHIR JSON of its own: not with --json");
    if (o->token_len > 0)
        return cli__usage_error(ctx, "--fhir exports every page: not with --page-token");
    o->all = true;
    return 0;
}

int cli__listing_key_arg(struct cli__ctx *ctx, const char *what, const char *text,
                         uint8_t key[EHR_SCHNORR_PUBLIC_BYTES])
{
    ehr_diag why;
    if (cli__public_key_arg(text, key, NULL, &why) != 0)
        return cli__usage_error(ctx, "%s: %s", what, why.msg);
    return 0;
}

int cli__listing_reader_path(struct cli__ctx *ctx, const struct cli__listing_options *o,
                             const char *default_arg, const char *what, const char **path)
{
    *path = o->key_path;
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

/* ---- member names, and the pieces of a line ---- */

static void names_add(struct cli__listing_names *n, const uint8_t *key, const char *name)
{
    EHR_ASSERT(n->count < EHR_ARRAY_COUNT(n->keys));
    memcpy(n->keys[n->count], key, EHR_SCHNORR_PUBLIC_BYTES);
    cli__text_shown(name, n->names[n->count], sizeof n->names[n->count]);
    n->count++;
}

/* The member institutions the node knows, from S. */
static void names_from_status(struct cli__listing_names *n, const Ehr__V1__GetStatusResponse *s)
{
    n->count = 0;
    names_add(n, s->node_id.data, s->name);
    for (size_t i = 0; i < s->n_peers; i++)
        names_add(n, s->peers[i]->node_id.data, s->peers[i]->name);
}

const char *cli__listing_name_of(const struct cli__listing_names *n, const uint8_t *key, size_t len)
{
    if (len != EHR_SCHNORR_PUBLIC_BYTES)
        return NULL;
    for (size_t i = 0; i < n->count; i++) {
        if (memcmp(n->keys[i], key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            return n->names[i];
    }
    return NULL;
}

void cli__listing_who_text(const struct cli__listing_names *n, const uint8_t *key, size_t len,
                           char *out, size_t size)
{
    char hex[HASH_HEX_BYTES] = "-";
    if (len == EHR_SCHNORR_PUBLIC_BYTES) {
        ehr_hex_encode(hex, key, len);
        hex[CLI_LISTING_SHORT_HEX_DIGITS] = '\0';
    }
    const char *name = cli__listing_name_of(n, key, len);
    if (name != NULL)
        snprintf(out, size, "%s (%s)", name, hex);
    else
        snprintf(out, size, "%s", hex);
}

json_t *cli__listing_json_key(const uint8_t *key, size_t len)
{
    return len == 0 ? json_null() : cli__json_hex(key, len);
}

json_t *cli__listing_json_name(const struct cli__listing_names *n, const uint8_t *key, size_t len)
{
    const char *name = cli__listing_name_of(n, key, len);
    return name != NULL ? cli__json_text(name) : json_null();
}

void cli__listing_short_hex(const uint8_t *bytes, size_t len,
                            char out[CLI_LISTING_SHORT_HEX_DIGITS + 1])
{
    char hex[HASH_HEX_BYTES];
    EHR_ASSERT(len == EHR_HASH_BYTES);
    ehr_hex_encode(hex, bytes, len);
    memcpy(out, hex, CLI_LISTING_SHORT_HEX_DIGITS);
    out[CLI_LISTING_SHORT_HEX_DIGITS] = '\0';
}

bool cli__listing_place_ok(const Ehr__V1__ChainPlace *p)
{
    return p != NULL && p->tx_hash.len == EHR_HASH_BYTES;
}

json_t *cli__listing_place_json(const Ehr__V1__ChainPlace *p)
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

/* ---- one listing, paged ---- */

void cli__listing_header(struct cli__listing *l)
{
    if (!l->ctx->json && !l->fhir && l->header[0] != '\0')
        printf("%s\n", l->header);
    l->header[0] = '\0';
}

int cli__listing_call(struct cli__listing *l, struct rpc_result *result)
{
    EHR_ASSERT(l->reader != NULL); /* opened by cli__listing_open */
    EHR_ASSERT(l->request_auth != NULL);
    char path[NODE_READ_AUTH_METHOD_BYTES_MAX + 1];
    snprintf(path, sizeof path, "/ehr.v1.Node/%s", l->method);
    uint64_t now_ms = cli__wall_ms();
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

int cli__listing_run(struct cli__listing *l, const struct cli__listing_options *o, json_t *root,
                     const char *entries_key)
{
    EHR_ASSERT(l->page != NULL);
    EHR_ASSERT(o->token_len <= sizeof o->token);
    uint8_t token[CLI_LISTING_TOKEN_BYTES_MAX];
    size_t token_len = o->token_len;
    memcpy(token, o->token, o->token_len);
    *l->request_limit = (uint32_t)(o->limit > 0 ? o->limit : LISTING_LIMIT_DEFAULT);
    l->entries = json_array();
    bool more = false;
    int exit_code = 0;
    for (size_t pages = 0; exit_code == 0; pages++) {
        if (pages == LISTING_PAGES_MAX) {
            exit_code = cli__node_bad_answer(&l->node, l->what, "over a million pages");
            break;
        }
        *l->request_token = (ProtobufCBinaryData){token_len, token_len > 0 ? token : NULL};
        /* Each page is its own request: signed afresh, with its token. */
        struct rpc_result result;
        exit_code = cli__listing_call(l, &result);
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
        else if (bad == NULL && next.len > CLI_LISTING_TOKEN_BYTES_MAX)
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
        if (!more || !o->all)
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
        json_t *bundle = cli__fhir_bundle(l->entries, cli__wall_ms());
        l->entries = NULL;
        return cli__json_print(bundle);
    }
    char token_hex[2 * CLI_LISTING_TOKEN_BYTES_MAX + 1] = "";
    if (more)
        ehr_hex_encode(token_hex, token, token_len);
    if (l->ctx->json) {
        json_object_set_new(root, entries_key, l->entries);
        json_object_set_new(root, "next_page_token", more ? json_string(token_hex) : json_null());
        return cli__json_print(root);
    }
    json_decref(l->entries);
    json_decref(root);
    cli__listing_header(l); /* an empty listing has a header too */
    if (more)
        printf("(%zu shown; more: --all, or --page-token %s)\n", l->shown, token_hex);
    else
        printf("(%zu %s)\n", l->shown, l->shown == 1 ? "entry" : "entries");
    return 0;
}

int cli__listing_open(struct cli__listing *l, const struct cli__listing_options *o)
{
    ehr_keyfile_info info;
    int exit_code = cli__identity_load(l->key_path, o->passphrase_file, &l->reader, &info);
    if (exit_code != 0)
        return exit_code;
    exit_code = cli__node_open(&l->node, &o->node, l->what);
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

void cli__listing_close(struct cli__listing *l)
{
    cli__node_close(&l->node);
    sodium_free(l->reader); /* wipes the key */
    l->reader = NULL;
}
