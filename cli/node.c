/*
 * node.c - how ehrctl talks to a running node over its gRPC API (service
 * ehr.v1.Node, proto/ehr/v1/node.proto): the --node and --timeout-ms
 * options, a blocking connection for one-shot commands, the one-line
 * failure message and exit status for every gRPC status, and GetStatus with
 * every length checked.
 *
 * Not here: what a command does with the answers (cmd_node.c) or the
 * benchmark's own asynchronous clients (cmd_bench.c). Responses are decoded
 * with protobuf-c and every byte field whose size the API fixes is checked
 * before use: a node that sends a 31-byte hash gets an error, not a crash.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_internal.h"
#include "ehr/v1/node.pb-c.h"
#include "ledger.h"

/* Room for one failure line's parts. */
enum { WHY_BYTES = 2 * RPC_STATUS_MESSAGE_BYTES_MAX + 3 * CLI_HOST_BYTES_MAX + 256 };

int cli__address_parse(const char *text, char host[CLI_HOST_BYTES_MAX + 1], uint16_t *port)
{
    EHR_ASSERT(text != NULL);
    EHR_ASSERT(host != NULL && port != NULL);
    const char *colon, *host_start = text;
    size_t host_len;
    if (text[0] == '[') { /* [IPv6]:PORT */
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return EHR_EINVAL;
        host_start = text + 1;
        host_len = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
            return EHR_EINVAL; /* no port, or a bare IPv6 address */
        host_len = (size_t)(colon - text);
    }
    if (host_len == 0 || host_len > CLI_HOST_BYTES_MAX)
        return EHR_EINVAL;
    for (size_t i = 0; i < host_len; i++) {
        char c = host_start[i];
        if (c <= ' ' || c > '~' || c == '/' || c == '[' || c == ']')
            return EHR_EINVAL;
    }
    uint64_t value;
    if (colon[1] == '0' || cli__parse_u64(colon + 1, UINT16_MAX, &value) != 0 || value == 0)
        return EHR_EINVAL;
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    *port = (uint16_t)value;
    return 0;
}

int cli__node_option(struct cli__ctx *ctx, int c, const char *arg, struct cli__node_options *o)
{
    EHR_ASSERT(c == 'N' || c == 'T');
    char host[CLI_HOST_BYTES_MAX + 1];
    uint16_t port;
    if (c == 'N') {
        if (cli__address_parse(arg, host, &port) != 0)
            return cli__usage_error(ctx, "--node wants HOST:PORT (or [IPv6]:PORT), not \"%.80s\"",
                                    arg);
        o->address = arg;
        o->given = true;
        return 0;
    }
    if (cli__parse_u64(arg, CLI_TIMEOUT_MS_MAX, &o->timeout_ms) != 0 || o->timeout_ms == 0)
        return cli__usage_error(ctx, "--timeout-ms wants 1 to %llu milliseconds, not \"%.40s\"",
                                (unsigned long long)CLI_TIMEOUT_MS_MAX, arg);
    o->timeout_ms_given = true;
    return 0;
}

/* OPTION if given, else the environment variable ENV if set and not empty, else NULL. */
static const char *option_or_env(const char *option, const char *env)
{
    if (option != NULL)
        return option;
    const char *value = getenv(env);
    return value != NULL && value[0] != '\0' ? value : NULL;
}

int cli__node_options_finish(struct cli__ctx *ctx, struct cli__node_options *o)
{
    if (o->address == NULL) {
        const char *env = getenv("EHR_NODE");
        o->address = env != NULL && env[0] != '\0' ? env : CLI_NODE_DEFAULT;
    }
    if (o->timeout_ms == 0)
        o->timeout_ms = CLI_TIMEOUT_MS_DEFAULT;
    char host[CLI_HOST_BYTES_MAX + 1];
    uint16_t port;
    if (cli__address_parse(o->address, host, &port) != 0)
        return cli__usage_error(ctx, "$EHR_NODE wants HOST:PORT, not \"%.80s\"", o->address);
    o->tls_ca = option_or_env(ctx->tls_ca, "EHR_TLS_CA");
    o->tls_cert = option_or_env(ctx->tls_cert, "EHR_TLS_CERT");
    o->tls_key = option_or_env(ctx->tls_key, "EHR_TLS_KEY");
    if ((o->tls_cert == NULL) != (o->tls_key == NULL))
        return cli__usage_error(ctx, "--tls-cert and --tls-key (or $EHR_TLS_CERT and "
                                     "$EHR_TLS_KEY) go together");
    if (o->tls_cert != NULL && o->tls_ca == NULL)
        return cli__usage_error(ctx, "--tls-cert needs --tls-ca (or $EHR_TLS_CA): the CA of the "
                                     "node's certificate");
    return 0;
}

int cli__node_connect(struct cli__node *node, const struct cli__node_options *o, ehr_diag *diag)
{
    EHR_ASSERT(o->address != NULL && o->timeout_ms > 0);
    memset(node, 0, sizeof *node);
    int rc = cli__address_parse(o->address, node->host, &node->port);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "--node wants HOST:PORT, not \"%.80s\"", o->address);
    snprintf(node->address, sizeof node->address, "%s", o->address);
    node->timeout_ms = o->timeout_ms;
    struct rpc_client_config config = {0};
    if (o->tls_ca != NULL) {
        struct rpc_tls_client_files files = {
            .ca_file = o->tls_ca, .cert_file = o->tls_cert, .key_file = o->tls_key};
        rc = rpc_tls_client_new(&files, &node->tls, diag);
        if (rc != 0)
            return rc; /* EHR_EINVAL: a file */
        config.tls = node->tls;
    }
    rc = rpc_sync_open_config(node->host, node->port, o->timeout_ms, &config, &node->sync, diag);
    if (rc != 0) {
        node->sync = NULL;
        rpc_tls_free(node->tls);
        node->tls = NULL;
        return rc == EHR_EINVAL ? EHR_ECLOSED : rc; /* EHR_EINVAL means a file */
    }
    return 0;
}

int cli__node_open(struct cli__node *node, const struct cli__node_options *o, const char *what)
{
    ehr_diag err;
    int rc = cli__node_connect(node, o, &err);
    if (rc == EHR_EINVAL) {
        cli__fail(err.msg, "%s", what);
        return CLI_EXIT_FAIL;
    }
    if (rc != 0) {
        char why[sizeof err.msg + 64];
        snprintf(why, sizeof why, "%s (UNAVAILABLE)", err.msg);
        cli__fail(why, "%s", what);
        return CLI_EXIT_UNAVAILABLE;
    }
    return 0;
}

void cli__node_close(struct cli__node *node)
{
    rpc_sync_close(node->sync);
    node->sync = NULL;
    rpc_tls_free(node->tls); /* after the client that borrowed it */
    node->tls = NULL;
}

enum rpc_status cli__node_call(struct cli__node *node, const char *method,
                               const ProtobufCMessage *request, uint64_t timeout_ms,
                               struct rpc_result *result)
{
    EHR_ASSERT(node->sync != NULL);
    EHR_ASSERT(method != NULL && request != NULL);
    char path[RPC_METHOD_PATH_BYTES_MAX + 1];
    snprintf(path, sizeof path, "/ehr.v1.Node/%s", method);
    size_t len = protobuf_c_message_get_packed_size(request);
    uint8_t *bytes = ehr_malloc(len + 1);
    size_t packed = protobuf_c_message_pack(request, bytes);
    EHR_ASSERT(packed == len);
    enum rpc_status status = rpc_sync_unary(node->sync, path, bytes, len,
                                            timeout_ms > 0 ? timeout_ms : node->timeout_ms, result);
    ehr_free(bytes);
    return status;
}

int cli__exit_for_status(enum rpc_status status)
{
    switch (status) {
    case RPC_STATUS_OK:
        return CLI_EXIT_OK;
    case RPC_STATUS_INVALID_ARGUMENT:
        return CLI_EXIT_REJECTED;
    case RPC_STATUS_ALREADY_EXISTS:
        return CLI_EXIT_DUPLICATE;
    case RPC_STATUS_RESOURCE_EXHAUSTED:
        return CLI_EXIT_BUSY;
    case RPC_STATUS_UNAVAILABLE:
        return CLI_EXIT_UNAVAILABLE;
    case RPC_STATUS_DEADLINE_EXCEEDED:
        return CLI_EXIT_TIMEOUT;
    case RPC_STATUS_PERMISSION_DENIED:
    case RPC_STATUS_UNAUTHENTICATED: /* a signed read whose signature or window is refused */
        return CLI_EXIT_DENIED;
    case RPC_STATUS_NOT_FOUND:
        return CLI_EXIT_NOT_FOUND;
    case RPC_STATUS_FAILED_PRECONDITION:
        return CLI_EXIT_PRECONDITION;
    default:
        return CLI_EXIT_FAIL;
    }
}

/* The sentence for STATUS that says what it means for the caller. */
static const char *status_meaning(enum rpc_status status)
{
    switch (status) {
    case RPC_STATUS_INVALID_ARGUMENT:
        return "the node refused it";
    case RPC_STATUS_ALREADY_EXISTS:
        return "already in the node's mempool or on the ledger";
    case RPC_STATUS_RESOURCE_EXHAUSTED:
        return "the node has no room now, retry later";
    case RPC_STATUS_UNAVAILABLE:
        return "the node cannot serve it now";
    case RPC_STATUS_DEADLINE_EXCEEDED:
        return "no answer in time";
    case RPC_STATUS_NOT_FOUND:
        return "what it names does not exist";
    case RPC_STATUS_PERMISSION_DENIED:
        return "the signer may not do this";
    case RPC_STATUS_UNAUTHENTICATED:
        return "the node did not accept the request's signature";
    case RPC_STATUS_FAILED_PRECONDITION:
        return "a rule of the transaction does not hold";
    case RPC_STATUS_INTERNAL:
        return "the node reports an internal error";
    case RPC_STATUS_UNIMPLEMENTED:
        return "the node does not serve this call (an older or other server?)";
    default:
        return "the call failed";
    }
}

int cli__node_fail(const struct cli__node *node, const struct rpc_result *result,
                   const char *what_fmt, ...)
{
    EHR_ASSERT(result->status != RPC_STATUS_OK);
    char what[256];
    va_list ap;
    va_start(ap, what_fmt);
    vsnprintf(what, sizeof what, what_fmt, ap);
    va_end(ap);
    char message[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    cli__text_shown(result->message, message, sizeof message);
    /* The node's advice, from its trailing metadata (node.proto). */
    const char *leader_id = rpc_result_trailer(result, "ehr-leader-id");
    const char *leader_address = rpc_result_trailer(result, "ehr-leader-address");
    const char *outcome = rpc_result_trailer(result, "ehr-submit-outcome");
    char hint[2 * RPC_TRAILER_VALUE_BYTES_MAX + 160] = "";
    size_t at = 0;
    if (result->status == RPC_STATUS_UNAVAILABLE) {
        if (leader_address != NULL)
            at += (size_t)snprintf(
                hint, sizeof hint, "; the leader is %.16s... at %s: retry with --node %s",
                leader_id != NULL ? leader_id : "?", leader_address, leader_address);
        else if (leader_id != NULL)
            at += (size_t)snprintf(hint, sizeof hint,
                                   "; the leader is %.16s... (its address is not known yet)",
                                   leader_id);
        else if (outcome != NULL && strcmp(outcome, "not-admitted") == 0)
            at += (size_t)snprintf(hint, sizeof hint, "; no leader known yet: retry shortly");
    } else if (result->status == RPC_STATUS_DEADLINE_EXCEEDED) {
        at += (size_t)snprintf(hint, sizeof hint, " (--timeout-ms %llu)",
                               (unsigned long long)node->timeout_ms);
    }
    if (outcome != NULL && strcmp(outcome, "unknown") == 0 && at < sizeof hint)
        snprintf(hint + at, sizeof hint - at,
                 "; it may have been admitted: submitting the same envelope again is safe");
    char why[WHY_BYTES];
    snprintf(why, sizeof why, "%s (%s from %s): %s%s", status_meaning(result->status),
             rpc_status_name(result->status), node->address, message[0] ? message : "-", hint);
    cli__fail(why, "%s", what);
    return cli__exit_for_status(result->status);
}

/* Fail with a response the node should not have sent. Returns CLI_EXIT_FAIL. */
int cli__node_bad_answer(const struct cli__node *node, const char *what, const char *why)
{
    char line[CLI_HOST_BYTES_MAX + EHR_DIAG_BYTES_MAX + 64];
    snprintf(line, sizeof line, "bad answer from %s: %s", node->address, why);
    return cli__fail(line, "%s", what);
}

static bool status_lengths_ok(const Ehr__V1__GetStatusResponse *s, const char **why)
{
    if (s->node_id.len != EHR_SCHNORR_PUBLIC_BYTES) {
        *why = "node_id is not 32 bytes";
        return false;
    }
    if (s->leader_id.len != 0 && s->leader_id.len != EHR_SCHNORR_PUBLIC_BYTES) {
        *why = "leader_id is neither empty nor 32 bytes";
        return false;
    }
    if (s->tip_hash.len != EHR_HASH_BYTES) {
        *why = "tip_hash is not 32 bytes";
        return false;
    }
    if (strlen(s->chain_id) > EHR_CHAIN_ID_BYTES_MAX) {
        *why = "chain_id is longer than 64 bytes";
        return false;
    }
    if (s->n_peers > CLI_STATUS_PEERS_MAX) {
        *why = "over 1024 peers listed";
        return false;
    }
    for (size_t i = 0; i < s->n_peers; i++) {
        if (s->peers[i]->node_id.len != EHR_SCHNORR_PUBLIC_BYTES) {
            *why = "a peer's node_id is not 32 bytes";
            return false;
        }
    }
    return true;
}

int cli__node_get_status(struct cli__node *node, const char *what, Ehr__V1__GetStatusResponse **out)
{
    Ehr__V1__GetStatusRequest request = EHR__V1__GET_STATUS_REQUEST__INIT;
    struct rpc_result result;
    *out = NULL;
    if (cli__node_call(node, "GetStatus", &request.base, 0, &result) != RPC_STATUS_OK) {
        int exit_code = cli__node_fail(node, &result, "%s", what);
        rpc_result_clear(&result);
        return exit_code;
    }
    Ehr__V1__GetStatusResponse *s =
        ehr__v1__get_status_response__unpack(NULL, result.response_len, result.response);
    rpc_result_clear(&result);
    const char *why = "GetStatusResponse does not decode";
    if (s == NULL || !status_lengths_ok(s, &why)) {
        if (s != NULL)
            ehr__v1__get_status_response__free_unpacked(s, NULL);
        return cli__node_bad_answer(node, what, why);
    }
    *out = s;
    return 0;
}
