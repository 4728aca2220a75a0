/*
 * submit.c - signing a transaction and submitting it to a node: `ehrctl tx
 * submit`, and the pieces other commands that build a payload themselves
 * share (patient enroll; through cli__signed_tx_submit, the commands with
 * one signer: practitioner, record, consent, access): the --chain-id /
 * --expiry-s / --wait options, the body around a payload, the signature,
 * the admission checks made before anything is sent, and the answer
 * printed with the transaction's result.
 *
 * What a node answers (node.proto, SubmitTransaction):
 *   - a failed call: its gRPC status, one line and the exit of
 *     cli__node_fail (3-10; PERMISSION_DENIED, NOT_FOUND and
 *     FAILED_PRECONDITION are the consent contract's rules run by the leader
 *     at submission, with the rule's reason as the message);
 *   - admitted (without --wait): the hash;
 *   - committed (with --wait): height, position and the result the rules
 *     gave when the block was applied. A result other than OK is exit
 *     CLI_EXIT_TX_REFUSED (11): the transaction is on the ledger, refused,
 *     and changed nothing. An access decision, permit or deny, is an OK
 *     result: exit 0 either way, the decision printed.
 *
 * Not here: payloads from JSON (payload.c), the connection (node.c), how a
 * result reads (result.c).
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_internal.h"
#include "contracts.h"
#include "ledger.h"

enum {
    HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    LINE_BYTES = 640, /* a line with a host name (253 bytes) and a message */
};

static json_t *json_checked(json_t *v)
{
    if (v == NULL)
        ehr_panic("out of memory building JSON");
    return v;
}

/* ---- the shared options and steps ---- */

int cli__submit_option(struct cli__ctx *ctx, int c, const char *arg, struct cli__submit_options *o)
{
    switch (c) {
    case 'c':
        if (ledger_chain_id_check(arg, NULL) != 0)
            return cli__usage_error(ctx, "--chain-id wants 1-64 characters from A-Z a-z 0-9 "
                                         ". _ -");
        o->chain_id = arg;
        return 0;
    case 'x':
        if (cli__parse_u64(arg, CLI_EXPIRY_S_MAX, &o->expiry_s) != 0 || o->expiry_s == 0)
            return cli__usage_error(ctx, "--expiry-s wants 1 to %d seconds", CLI_EXPIRY_S_MAX);
        return 0;
    case 'w':
        o->wait = true;
        return 0;
    default:
        EHR_ASSERT(0 && "not a submit option");
        return CLI_EXIT_USAGE;
    }
}

int cli__submit_chain_id(struct cli__node *node, const struct cli__submit_options *o,
                         const char *what, char out[EHR_CHAIN_ID_BYTES_MAX + 1])
{
    if (o->chain_id != NULL) {
        snprintf(out, EHR_CHAIN_ID_BYTES_MAX + 1, "%s", o->chain_id);
        return 0;
    }
    char asking[128];
    snprintf(asking, sizeof asking, "%s: ask the node for its chain id", what);
    Ehr__V1__GetStatusResponse *s;
    int exit_code = cli__node_get_status(node, asking, &s);
    if (exit_code != 0)
        return exit_code;
    snprintf(out, EHR_CHAIN_ID_BYTES_MAX + 1, "%s", s->chain_id);
    ehr__v1__get_status_response__free_unpacked(s, NULL);
    if (ledger_chain_id_check(out, NULL) != 0)
        return cli__node_bad_answer(node, what, "its chain id is not valid");
    return 0;
}

int cli__tx_sign(struct cli__ctx *ctx, Ehr__V1__TxBody *body, const char *chain_id,
                 uint64_t expiry_s, const ehr_signing_key *key, uint8_t **out, size_t *out_len,
                 uint8_t hash[EHR_HASH_BYTES])
{
    EHR_ASSERT(body->payload_case != EHR__V1__TX_BODY__PAYLOAD__NOT_SET);
    EHR_ASSERT(expiry_s > 0 && expiry_s <= CLI_EXPIRY_S_MAX);
    uint8_t nonce[EHR_TX_NONCE_BYTES];
    ehr_random_bytes(nonce, sizeof nonce);
    uint64_t now = cli__wall_ms();
    body->chain_id = (char *)chain_id;
    body->signer.data = (uint8_t *)key->public_key;
    body->signer.len = EHR_SCHNORR_PUBLIC_BYTES;
    body->nonce.data = nonce;
    body->nonce.len = sizeof nonce;
    body->expiry_ms = now + expiry_s * 1000;
    size_t body_len = ehr__v1__tx_body__get_packed_size(body);
    if (body_len > EHR_TX_BODY_BYTES_MAX)
        return cli__usage_error(ctx, "the transaction body would be %zu bytes, over %d", body_len,
                                EHR_TX_BODY_BYTES_MAX);
    uint8_t *body_bytes = ehr_malloc(body_len);
    ehr__v1__tx_body__pack(body, body_bytes);
    /* Nothing of ours stays in the caller's body. */
    body->chain_id = (char *)protobuf_c_empty_string;
    body->signer = body->nonce = (ProtobufCBinaryData){0};
    body->expiry_ms = 0;
    ledger_tx_hash(body_bytes, body_len, hash);
    int rc = ledger_tx_envelope_build(body_bytes, body_len, key, out, out_len);
    ehr_free(body_bytes);
    if (rc != 0)
        return cli__fail(ehr_strerror(rc), "sign the transaction");
    /* The checks a node makes on admission, made here first: what fails
     * them is never sent. */
    ledger_tx_rules rules = {.chain_id = chain_id, .now_ms = now};
    ehr_diag diag;
    if (ledger_tx_check(*out, *out_len, &rules, NULL, &diag) != 0) {
        ehr_free(*out);
        *out = NULL;
        return cli__fail(diag.msg, "check the transaction");
    }
    return 0;
}

/* Check R, the answer to a submission of HASH. Returns why it is bad, or NULL. */
static const char *submit_answer_check(const Ehr__V1__SubmitTransactionResponse *r,
                                       const uint8_t hash[EHR_HASH_BYTES], bool wait)
{
    if (r == NULL)
        return "SubmitTransactionResponse does not decode";
    if (r->tx_hash.len != EHR_HASH_BYTES)
        return "tx_hash is not 32 bytes";
    if (memcmp(r->tx_hash.data, hash, EHR_HASH_BYTES) != 0)
        return "tx_hash is not the hash of the transaction sent";
    if (wait && !r->committed)
        return "answered before the commit although asked to wait";
    if (!r->committed && r->result != NULL)
        return "a result for a transaction not committed";
    if (r->result != NULL)
        return cli__result_check(r->result);
    return NULL;
}

/* Print EXTRA's string members as human fields. */
static void extra_print(json_t *extra)
{
    const char *key;
    json_t *v;
    json_object_foreach(extra, key, v)
    {
        if (json_is_string(v))
            cli__print_field(key, json_string_value(v));
    }
}

int cli__tx_send(struct cli__ctx *ctx, struct cli__node *node, const uint8_t *envelope,
                 size_t envelope_len, const uint8_t hash[EHR_HASH_BYTES], bool wait, json_t *extra)
{
    char hash_hex[HASH_HEX_BYTES];
    ehr_hex_encode(hash_hex, hash, EHR_HASH_BYTES);
    Ehr__V1__SubmitTransactionRequest request = EHR__V1__SUBMIT_TRANSACTION_REQUEST__INIT;
    request.envelope.data = (uint8_t *)envelope;
    request.envelope.len = envelope_len;
    request.wait_for_commit = wait;
    struct rpc_result result;
    if (cli__node_call(node, "SubmitTransaction", &request.base, 0, &result) != RPC_STATUS_OK) {
        int exit_code = cli__node_fail(node, &result, "%s %s", ctx->command->name, hash_hex);
        rpc_result_clear(&result);
        if (extra != NULL)
            json_decref(extra);
        return exit_code;
    }
    Ehr__V1__SubmitTransactionResponse *r =
        ehr__v1__submit_transaction_response__unpack(NULL, result.response_len, result.response);
    rpc_result_clear(&result);
    const char *bad = submit_answer_check(r, hash, wait);
    if (bad != NULL) {
        if (r != NULL)
            ehr__v1__submit_transaction_response__free_unpacked(r, NULL);
        if (extra != NULL)
            json_decref(extra);
        char what[HASH_HEX_BYTES + 64];
        snprintf(what, sizeof what, "%s %s", ctx->command->name, hash_hex);
        return cli__node_bad_answer(node, what, bad);
    }
    int exit_code = CLI_EXIT_OK;
    if (ctx->json) {
        json_t *root = extra != NULL ? extra : json_checked(json_object());
        json_object_set_new(root, "hash", json_checked(json_string(hash_hex)));
        json_object_set_new(root, "node", cli__json_text(node->address));
        json_object_set_new(root, "committed", json_boolean(r->committed));
        if (r->committed) {
            json_object_set_new(root, "height", cli__json_u64(r->height));
            json_object_set_new(root, "position", cli__json_u64(r->position));
            json_object_set_new(root, "result", cli__result_json(r->result));
        }
        exit_code = cli__json_print(root);
    } else {
        char line[LINE_BYTES];
        if (extra != NULL) {
            extra_print(extra);
            json_decref(extra);
        }
        cli__print_field("tx", hash_hex);
        if (r->committed)
            snprintf(line, sizeof line, "committed at height %llu, position %u",
                     (unsigned long long)r->height, r->position);
        else
            snprintf(line, sizeof line, "admitted to the mempool of %s", node->address);
        cli__print_field("status", line);
        if (r->committed)
            cli__result_print(r->result);
    }
    if (exit_code == CLI_EXIT_OK && r->committed && r->result != NULL &&
        r->result->code != EHR__V1__TX_RESULT_CODE__TX_RESULT_OK) {
        char code[32], reason[CONTRACTS_REASON_BYTES_MAX + 1], why[LINE_BYTES];
        cli__result_code_name(r->result->code, code, sizeof code);
        cli__text_shown(r->result->reason, reason, sizeof reason);
        snprintf(why, sizeof why,
                 "committed at height %llu, position %u, but refused by the rules (%s): %s",
                 (unsigned long long)r->height, r->position, code, reason[0] ? reason : "-");
        cli__fail(why, "%s %s", ctx->command->name, hash_hex);
        exit_code = CLI_EXIT_TX_REFUSED;
    }
    ehr__v1__submit_transaction_response__free_unpacked(r, NULL);
    return exit_code;
}

/* ---- the commands that build their own payload ---- */

int cli__signed_tx_option(struct cli__ctx *ctx, int c, const char *arg, struct cli__signed_tx *a)
{
    switch (c) {
    case 'k':
        a->key_path = arg;
        return 0;
    case 'p':
        a->passphrase_file = arg;
        return 0;
    case 'c':
    case 'x':
    case 'w':
        return cli__submit_option(ctx, c, arg, &a->submit);
    case 'N':
    case 'T':
        return cli__node_option(ctx, c, arg, &a->node);
    default:
        EHR_ASSERT(0 && "option in the table but not handled");
        return CLI_EXIT_USAGE;
    }
}

int cli__signed_tx_finish(struct cli__ctx *ctx, struct cli__signed_tx *a)
{
    if (a->key_path == NULL)
        return cli__usage_error(ctx, "--key FILE, the signer's key file, is required");
    if (a->submit.expiry_s == 0)
        a->submit.expiry_s = CLI_EXPIRY_S_DEFAULT;
    return cli__node_options_finish(ctx, &a->node);
}

int cli__signed_tx_submit(struct cli__ctx *ctx, const struct cli__signed_tx *a,
                          const ehr_identity *id, Ehr__V1__TxBody *body, const char *id_name,
                          json_t *extra)
{
    EHR_ASSERT(body->payload_case != EHR__V1__TX_BODY__PAYLOAD__NOT_SET);
    EHR_ASSERT(a->submit.expiry_s > 0);
    int exit_code = 0;
    ehr_identity *opened = NULL;
    if (id == NULL) {
        ehr_keyfile_info info;
        exit_code = cli__identity_load(a->key_path, a->passphrase_file, &opened, &info);
        id = opened;
    }
    struct cli__node node = {0};
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1] = "";
    if (exit_code == 0)
        exit_code = cli__node_open(&node, &a->node, ctx->command->name);
    if (exit_code == 0)
        exit_code = cli__submit_chain_id(&node, &a->submit, ctx->command->name, chain_id);
    uint8_t *envelope = NULL;
    size_t envelope_len = 0;
    uint8_t hash[EHR_HASH_BYTES];
    if (exit_code == 0)
        exit_code = cli__tx_sign(ctx, body, chain_id, a->submit.expiry_s, &id->signing, &envelope,
                                 &envelope_len, hash);
    if (opened != NULL)
        sodium_free(opened);
    if (exit_code == 0) {
        /* The id first, then the command's own fields: what a script takes. */
        json_t *fields = json_checked(json_object());
        if (id_name != NULL) {
            char key[64], hash_hex[HASH_HEX_BYTES];
            ehr_hex_encode(hash_hex, hash, EHR_HASH_BYTES);
            snprintf(key, sizeof key, ctx->json ? "%s_id" : "%s id", id_name);
            json_object_set_new(fields, key, json_checked(json_string(hash_hex)));
        }
        if (extra != NULL)
            json_object_update(fields, extra);
        exit_code = cli__tx_send(ctx, &node, envelope, envelope_len, hash, a->submit.wait, fields);
    }
    if (extra != NULL)
        json_decref(extra);
    ehr_free(envelope);
    if (node.sync != NULL)
        cli__node_close(&node);
    return exit_code;
}

/* ---- tx submit ---- */

struct submit_args {
    struct cli__signed_tx tx; /* --key optional: an --envelope is signed already */
    const char *payload_path;
    const char *envelope_path;
};

static int submit_parse(struct cli__ctx *ctx, int argc, char **argv, struct submit_args *a)
{
    static const struct option options[] = {{"payload", required_argument, NULL, 'P'},
                                            {"envelope", required_argument, NULL, 'e'},
                                            CLI_SIGNED_TX_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'P')
            a->payload_path = optarg;
        else if (c == 'e')
            a->envelope_path = optarg;
        else if (cli__signed_tx_option(ctx, c, optarg, &a->tx) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if ((a->payload_path != NULL) == (a->envelope_path != NULL))
        return cli__usage_error(ctx, "give --payload FILE.json (with --key) or --envelope FILE");
    if (a->envelope_path != NULL && (a->tx.key_path != NULL || a->tx.passphrase_file != NULL ||
                                     a->tx.submit.chain_id != NULL || a->tx.submit.expiry_s != 0))
        return cli__usage_error(ctx, "--envelope is sent as is: --key, --passphrase-file, "
                                     "--chain-id and --expiry-s do not apply");
    if (a->payload_path != NULL && a->tx.key_path == NULL)
        return cli__usage_error(ctx, "--payload needs --key FILE to sign with");
    if (a->tx.submit.expiry_s == 0)
        a->tx.submit.expiry_s = CLI_EXPIRY_S_DEFAULT;
    return cli__node_options_finish(ctx, &a->tx.node);
}

/*
 * Read and parse the payload file into BODY's payload. Returns 0, or
 * CLI_EXIT_USAGE / CLI_EXIT_FAIL after saying why (nothing is sent).
 */
static int submit_payload_read(struct cli__ctx *ctx, const char *path, Ehr__V1__TxBody *body)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = ehr_file_read_alloc(path, CLI_PAYLOAD_FILE_BYTES_MAX, &bytes, &len);
    if (rc == EHR_ETOOBIG)
        return cli__usage_error(ctx, "payload %s: over %u bytes", path, CLI_PAYLOAD_FILE_BYTES_MAX);
    if (rc != 0)
        return cli__fail(rc < 0 && rc > -4096 ? strerror(-rc) : ehr_strerror(rc), "read payload %s",
                         path);
    json_error_t error;
    json_t *root = json_loadb((const char *)bytes, len, JSON_REJECT_DUPLICATES, &error);
    ehr_free(bytes);
    if (root == NULL)
        return cli__usage_error(ctx, "payload %s: not JSON: line %d: %s", path, error.line,
                                error.text);
    ehr_diag why;
    rc = cli__payload_from_json(root, body, &why);
    json_decref(root);
    if (rc != 0)
        return cli__usage_error(ctx, "payload %s: %s", path, why.msg);
    /* The smallest body this payload can make (empty chain id, no expiry):
     * if even that is over the limit, say so before a passphrase or a call. */
    uint8_t zeros[EHR_TX_NONCE_BYTES + EHR_SCHNORR_PUBLIC_BYTES] = {0};
    body->signer = (ProtobufCBinaryData){.data = zeros, .len = EHR_SCHNORR_PUBLIC_BYTES};
    body->nonce = (ProtobufCBinaryData){.data = zeros, .len = EHR_TX_NONCE_BYTES};
    size_t body_len = ehr__v1__tx_body__get_packed_size(body);
    body->signer = body->nonce = (ProtobufCBinaryData){0};
    if (body_len > EHR_TX_BODY_BYTES_MAX)
        return cli__usage_error(ctx, "payload %s: the transaction body would be %zu bytes, over %d",
                                path, body_len, EHR_TX_BODY_BYTES_MAX);
    return 0;
}

/* Read an envelope file and take its hash. Returns 0 or an exit status. */
static int submit_envelope_read(const char *path, uint8_t **out, size_t *out_len,
                                uint8_t hash[EHR_HASH_BYTES])
{
    int rc = ehr_file_read_alloc(path, EHR_TX_BYTES_MAX, out, out_len);
    if (rc == EHR_ETOOBIG)
        return cli__fail("over EHR_TX_BYTES_MAX (65606 bytes)", "read envelope %s", path);
    if (rc != 0)
        return cli__fail(rc < 0 && rc > -4096 ? strerror(-rc) : ehr_strerror(rc),
                         "read envelope %s", path);
    ledger_tx_view view;
    ehr_diag diag;
    if (ledger_tx_envelope_parse(*out, *out_len, &view, &diag) != 0) {
        ehr_free(*out);
        *out = NULL;
        return cli__fail(diag.msg, "envelope %s is not a TxEnvelope", path);
    }
    ledger_tx_hash(view.body, view.body_len, hash);
    return 0;
}

int cli__cmd_tx_submit(struct cli__ctx *ctx, int argc, char **argv)
{
    struct submit_args a = {0};
    int exit_code = submit_parse(ctx, argc, argv, &a);
    if (exit_code != 0)
        return exit_code;
    uint8_t *envelope = NULL;
    size_t envelope_len = 0;
    uint8_t hash[EHR_HASH_BYTES];
    if (a.envelope_path != NULL) {
        exit_code = submit_envelope_read(a.envelope_path, &envelope, &envelope_len, hash);
        if (exit_code != 0)
            return exit_code;
    }
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    ehr_identity *id = NULL;
    ehr_keyfile_info info;
    if (a.payload_path != NULL) {
        /* Payload first: a mistake there costs no passphrase and sends nothing. */
        exit_code = submit_payload_read(ctx, a.payload_path, &body);
        if (exit_code == 0)
            exit_code = cli__identity_load(a.tx.key_path, a.tx.passphrase_file, &id, &info);
        if (exit_code != 0) {
            cli__payload_free(&body);
            return exit_code;
        }
    }
    struct cli__node node;
    exit_code = cli__node_open(&node, &a.tx.node, "tx submit");
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1] = "";
    if (exit_code == 0 && id != NULL)
        exit_code = cli__submit_chain_id(&node, &a.tx.submit, "tx submit", chain_id);
    if (exit_code == 0 && id != NULL)
        exit_code = cli__tx_sign(ctx, &body, chain_id, a.tx.submit.expiry_s, &id->signing,
                                 &envelope, &envelope_len, hash);
    if (id != NULL)
        sodium_free(id);
    cli__payload_free(&body);
    if (exit_code == 0)
        exit_code = cli__tx_send(ctx, &node, envelope, envelope_len, hash, a.tx.submit.wait, NULL);
    if (node.sync != NULL)
        cli__node_close(&node);
    ehr_free(envelope);
    return exit_code;
}
