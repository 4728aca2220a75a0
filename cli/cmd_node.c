/*
 * cmd_node.c - ehrctl's commands that talk to a running node over its gRPC
 * API (service ehr.v1.Node): status, blocks follow, and the online forms of
 * tx show and block show (--node).
 *
 * Each answer is decoded with protobuf-c and checked before use: fixed-size
 * fields have their size, a block parses and hashes to the hash the node
 * gave, a transaction hashes to the hash asked for and sits in the block at
 * the place the node named. A node that breaks that gets a one-line "bad
 * answer" and exit 1, never trust. Failed calls map to exit statuses by
 * their gRPC status (cli_internal.h, CLI_EXIT_*).
 *
 * Not here: tx submit (submit.c), the signed reads of a patient's data
 * (listing.c and the commands on it: cmd_audit.c, cmd_records.c,
 * cmd_consents.c), the benchmark (cmd_bench.c), printing transactions and
 * blocks (show.c, shared with the offline forms), the option plumbing
 * (node.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "cli_internal.h"
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

/* A JSON number for V, or a decimal string past INT64_MAX (json_int_t is signed). */
static json_t *json_u64(uint64_t v)
{
    if (v > INT64_MAX) {
        char text[24];
        snprintf(text, sizeof text, "%llu", (unsigned long long)v);
        return json_checked(json_string(text));
    }
    return json_checked(json_integer((json_int_t)v));
}

/* ---- status ---- */

static const char *role_name(Ehr__V1__NodeRole role)
{
    switch (role) {
    case EHR__V1__NODE_ROLE__NODE_ROLE_FOLLOWER:
        return "follower";
    case EHR__V1__NODE_ROLE__NODE_ROLE_CANDIDATE:
        return "candidate";
    case EHR__V1__NODE_ROLE__NODE_ROLE_LEADER:
        return "leader";
    case EHR__V1__NODE_ROLE__NODE_ROLE_LEARNER:
        return "learner";
    default:
        return "unknown";
    }
}

static const char *link_name(Ehr__V1__LinkState state)
{
    switch (state) {
    case EHR__V1__LINK_STATE__LINK_STATE_DISCONNECTED:
        return "disconnected";
    case EHR__V1__LINK_STATE__LINK_STATE_CONNECTING:
        return "connecting";
    case EHR__V1__LINK_STATE__LINK_STATE_CONNECTED:
        return "connected";
    default:
        return "unknown";
    }
}

/* A peer's place in the consensus configuration as the node sees it. */
static const char *voting_name(const Ehr__V1__PeerStatus *p)
{
    return p->voter ? "voter" : p->learner ? "learner" : "outside";
}

static void status_print_human(const struct cli__node *node, const Ehr__V1__GetStatusResponse *s)
{
    char line[LINE_BYTES], id_hex[HASH_HEX_BYTES], hash_hex[HASH_HEX_BYTES];
    char text[EHR_MEMBER_NAME_BYTES_MAX + 1];
    ehr_hex_encode(id_hex, s->node_id.data, EHR_SCHNORR_PUBLIC_BYTES);
    cli__print_field("node", id_hex);
    cli__text_shown(s->name, text, sizeof text);
    cli__print_field("name", text);
    cli__print_field("address", node->address);
    cli__print_field("role", role_name(s->role));
    snprintf(line, sizeof line, "%llu", (unsigned long long)s->term);
    cli__print_field("term", line);
    if (s->restore_term != 0) {
        /* consensus/README.md, I14: a restored node that has not caught up */
        snprintf(line, sizeof line,
                 "until a committed entry of term %llu (restored from a backup: no vote, no "
                 "campaign)",
                 (unsigned long long)s->restore_term);
        cli__print_field("restoring", line);
    }
    if (s->leader_id.len == EHR_SCHNORR_PUBLIC_BYTES) {
        char leader_hex[HASH_HEX_BYTES], address[CLI_HOST_BYTES_MAX + 8];
        ehr_hex_encode(leader_hex, s->leader_id.data, EHR_SCHNORR_PUBLIC_BYTES);
        cli__text_shown(s->leader_rpc_address, address, sizeof address);
        bool self = memcmp(s->leader_id.data, s->node_id.data, EHR_SCHNORR_PUBLIC_BYTES) == 0;
        snprintf(line, sizeof line, "%s%s%s%s", leader_hex, self ? " (this node)" : "",
                 address[0] != '\0' ? " at " : "", address);
        cli__print_field("leader", line);
    } else {
        cli__print_field("leader", "none known");
    }
    snprintf(line, sizeof line, "%llu", (unsigned long long)s->commit_index);
    cli__print_field("commit index", line);
    snprintf(line, sizeof line, "%llu", (unsigned long long)s->applied_index);
    cli__print_field("applied index", line);
    ehr_hex_encode(hash_hex, s->tip_hash.data, EHR_HASH_BYTES);
    snprintf(line, sizeof line, "height %llu, %s", (unsigned long long)s->tip_height, hash_hex);
    cli__print_field("tip", line);
    cli__text_shown(s->chain_id, line, sizeof line);
    cli__print_field("chain id", line);
    snprintf(line, sizeof line, "%llu transactions, %llu bytes",
             (unsigned long long)s->mempool_tx_count, (unsigned long long)s->mempool_bytes);
    cli__print_field("mempool", line);
    snprintf(line, sizeof line, "user %llu ms, system %llu ms, up %llu ms",
             (unsigned long long)s->cpu_user_ms, (unsigned long long)s->cpu_system_ms,
             (unsigned long long)s->uptime_ms);
    cli__print_field("cpu", line);
    snprintf(line, sizeof line, "%zu", s->n_peers);
    cli__print_field("peers", line);
    for (size_t i = 0; i < s->n_peers; i++) {
        const Ehr__V1__PeerStatus *p = s->peers[i];
        char peer_hex[HASH_HEX_BYTES], address[EHR_PEER_ADDRESS_BYTES_MAX + 1];
        ehr_hex_encode(peer_hex, p->node_id.data, EHR_SCHNORR_PUBLIC_BYTES);
        cli__text_shown(p->name, text, sizeof text);
        cli__text_shown(p->peer_address, address, sizeof address);
        printf("  %s  %-12s  %-7s  match %-8llu  %s  %s\n", peer_hex, link_name(p->link_state),
               voting_name(p), (unsigned long long)p->match_index, address, text);
    }
}

static json_t *status_json(const struct cli__node *node, const Ehr__V1__GetStatusResponse *s)
{
    json_t *peers = json_checked(json_array());
    for (size_t i = 0; i < s->n_peers; i++) {
        const Ehr__V1__PeerStatus *p = s->peers[i];
        json_array_append_new(
            peers, json_checked(json_pack("{s:o, s:o, s:o, s:s, s:o}", "node_id",
                                          cli__json_hex(p->node_id.data, p->node_id.len), "name",
                                          cli__json_text(p->name), "peer_address",
                                          cli__json_text(p->peer_address), "link_state",
                                          link_name(p->link_state), "match_index",
                                          json_u64(p->match_index))));
        json_object_set_new(json_array_get(peers, json_array_size(peers) - 1), "consensus",
                            json_string(voting_name(p)));
    }
    bool leader_known = s->leader_id.len == EHR_SCHNORR_PUBLIC_BYTES;
    json_t *root = json_checked(json_pack(
        "{s:s, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "address",
        node->address, "node_id", cli__json_hex(s->node_id.data, s->node_id.len), "name",
        cli__json_text(s->name), "role", role_name(s->role), "term", json_u64(s->term), "leader_id",
        leader_known ? cli__json_hex(s->leader_id.data, s->leader_id.len) : json_null(),
        "leader_rpc_address",
        leader_known && s->leader_rpc_address[0] != '\0' ? cli__json_text(s->leader_rpc_address)
                                                         : json_null(),
        "commit_index", json_u64(s->commit_index), "applied_index", json_u64(s->applied_index),
        "tip_height", json_u64(s->tip_height), "tip_hash",
        cli__json_hex(s->tip_hash.data, s->tip_hash.len), "chain_id", cli__json_text(s->chain_id),
        "peers", peers));
    json_object_set_new(root, "mempool_tx_count", json_u64(s->mempool_tx_count));
    json_object_set_new(root, "mempool_bytes", json_u64(s->mempool_bytes));
    json_object_set_new(root, "cpu_user_ms", json_u64(s->cpu_user_ms));
    json_object_set_new(root, "cpu_system_ms", json_u64(s->cpu_system_ms));
    json_object_set_new(root, "uptime_ms", json_u64(s->uptime_ms));
    json_object_set_new(root, "restore_term", json_u64(s->restore_term));
    return root;
}

enum {
    STATUS_WAIT_S_MAX = 600,   /* --wait-leader */
    STATUS_WAIT_POLL_MS = 100, /* between two attempts */
};

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * One quiet attempt for --wait-leader: connect and ask GetStatus. Returns
 * true, with NODE connected, when the answer names a leader; false after any
 * failure or an answer without one (nothing printed: the caller tries again
 * until its deadline).
 */
static bool status_try_leader(const struct cli__node_options *o, struct cli__node *node)
{
    if (cli__node_connect(node, o, NULL) != 0)
        return false;
    Ehr__V1__GetStatusRequest request = EHR__V1__GET_STATUS_REQUEST__INIT;
    struct rpc_result result;
    Ehr__V1__GetStatusResponse *s = NULL;
    if (cli__node_call(node, "GetStatus", &request.base, 0, &result) == RPC_STATUS_OK)
        s = ehr__v1__get_status_response__unpack(NULL, result.response_len, result.response);
    rpc_result_clear(&result);
    bool leader = s != NULL && s->leader_id.len == EHR_SCHNORR_PUBLIC_BYTES;
    if (s != NULL)
        ehr__v1__get_status_response__free_unpacked(s, NULL);
    if (!leader)
        cli__node_close(node);
    return leader;
}

int cli__cmd_status(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"wait-leader", required_argument, NULL, 'W'}, CLI_NODE_OPTIONS, CLI_COMMON_OPTIONS};
    struct cli__node_options o = {0};
    uint64_t wait_s = 0;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'W') {
            if (cli__parse_u64(optarg, STATUS_WAIT_S_MAX, &wait_s) != 0 || wait_s == 0)
                return cli__usage_error(ctx, "--wait-leader wants 1 to %d seconds",
                                        STATUS_WAIT_S_MAX);
            continue;
        }
        EHR_ASSERT(c == 'N' || c == 'T');
        if (cli__node_option(ctx, c, optarg, &o) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    int exit_code = cli__node_options_finish(ctx, &o);
    if (exit_code != 0)
        return exit_code;
    struct cli__node node;
    if (wait_s > 0) {
        /* Until the node answers and names a leader (a node just started, a
         * cluster electing), or the deadline. */
        uint64_t deadline = monotonic_ms() + wait_s * 1000;
        while (!status_try_leader(&o, &node)) {
            if (monotonic_ms() >= deadline) {
                char why[96];
                snprintf(why, sizeof why, "no leader known within %llu s (UNAVAILABLE)",
                         (unsigned long long)wait_s);
                cli__fail(why, "status of %s", o.address);
                return CLI_EXIT_UNAVAILABLE;
            }
            struct timespec pause = {0, STATUS_WAIT_POLL_MS * 1000000L};
            nanosleep(&pause, NULL);
        }
    } else {
        exit_code = cli__node_open(&node, &o, "status");
        if (exit_code != 0)
            return exit_code;
    }
    Ehr__V1__GetStatusResponse *s = NULL;
    exit_code = cli__node_get_status(&node, "status", &s);
    if (exit_code == 0) {
        if (ctx->json)
            exit_code = cli__json_print(status_json(&node, s));
        else
            status_print_human(&node, s);
        ehr__v1__get_status_response__free_unpacked(s, NULL);
    }
    cli__node_close(&node);
    return exit_code;
}

/* ---- tx show, block show: the online forms ---- */

int cli__block_fetch(struct cli__node *node, uint64_t height, const char *what, uint8_t **bytes,
                     size_t *len, ledger_block_view *view, struct rpc_result *not_found)
{
    Ehr__V1__GetBlockRequest request = EHR__V1__GET_BLOCK_REQUEST__INIT;
    request.height = height;
    struct rpc_result result;
    if (cli__node_call(node, "GetBlock", &request.base, 0, &result) != RPC_STATUS_OK) {
        if (result.status == RPC_STATUS_NOT_FOUND && not_found != NULL) {
            *not_found = result;
            return EHR_ENOTFOUND;
        }
        int exit_code = cli__node_fail(node, &result, "%s", what);
        rpc_result_clear(&result);
        return exit_code;
    }
    Ehr__V1__GetBlockResponse *r =
        ehr__v1__get_block_response__unpack(NULL, result.response_len, result.response);
    rpc_result_clear(&result);
    const char *bad = NULL;
    ehr_diag diag;
    if (r == NULL)
        bad = "GetBlockResponse does not decode";
    else if (r->block_hash.len != EHR_HASH_BYTES)
        bad = "block_hash is not 32 bytes";
    else if (r->block.len == 0 || r->block.len > EHR_BLOCK_BYTES_MAX)
        bad = "the block is empty or over EHR_BLOCK_BYTES_MAX";
    else if (ledger_block_parse(r->block.data, r->block.len, view, &diag) != 0)
        bad = diag.msg;
    else if (view->header.height != height || memcmp(view->hash, r->block_hash.data, 32) != 0) {
        bad = view->header.height != height ? "the block is for another height"
                                            : "the block does not hash to block_hash";
        ledger_block_view_release(view);
    }
    if (bad != NULL) {
        int exit_code = cli__node_bad_answer(node, what, bad);
        if (r != NULL)
            ehr__v1__get_block_response__free_unpacked(r, NULL);
        return exit_code;
    }
    /* Keep the bytes (the view borrows them) and drop the rest. */
    *bytes = ehr_malloc(r->block.len);
    memcpy(*bytes, r->block.data, r->block.len);
    *len = r->block.len;
    ledger_block_view_release(view);
    ehr__v1__get_block_response__free_unpacked(r, NULL);
    int rc = ledger_block_parse(*bytes, *len, view, NULL);
    EHR_ASSERT(rc == 0); /* the same bytes parsed a moment ago */
    return 0;
}

int cli__block_show_online(struct cli__ctx *ctx, const struct cli__node_options *o, uint64_t height)
{
    struct cli__node node;
    int exit_code = cli__node_open(&node, o, "block show");
    if (exit_code != 0)
        return exit_code;
    uint8_t *bytes = NULL;
    size_t len = 0;
    ledger_block_view view;
    struct rpc_result not_found;
    exit_code = cli__block_fetch(&node, height, "block show", &bytes, &len, &view, &not_found);
    if (exit_code == EHR_ENOTFOUND) {
        /* Name the tip, as the offline form does. */
        rpc_result_clear(&not_found);
        Ehr__V1__GetStatusResponse *s;
        exit_code = cli__node_get_status(&node, "block show", &s);
        if (exit_code == 0) {
            char why[LINE_BYTES];
            snprintf(why, sizeof why, "no block at height %llu (tip is %llu)",
                     (unsigned long long)height, (unsigned long long)s->tip_height);
            ehr__v1__get_status_response__free_unpacked(s, NULL);
            exit_code = cli__fail(why, "block show");
        }
    } else if (exit_code == 0) {
        ledger_block_view_release(&view);
        exit_code = cli__block_print(ctx, bytes, len, height);
    }
    ehr_free(bytes);
    cli__node_close(&node);
    return exit_code;
}

/* Check R (GetTransaction's answer for HASH) and fill the fixed-size parts. */
static const char *tx_answer_check(const Ehr__V1__GetTransactionResponse *r)
{
    if (r == NULL)
        return "GetTransactionResponse does not decode";
    if (r->block_hash.len != EHR_HASH_BYTES)
        return "block_hash is not 32 bytes";
    if (r->envelope.len == 0 || r->envelope.len > EHR_TX_BYTES_MAX)
        return "the envelope is empty or over EHR_TX_BYTES_MAX";
    if (r->result != NULL)
        return cli__result_check(r->result);
    return NULL;
}

int cli__tx_show_online(struct cli__ctx *ctx, const struct cli__node_options *o,
                        const uint8_t hash[EHR_HASH_BYTES], const char *hash_arg)
{
    char what[HASH_HEX_BYTES + 8];
    snprintf(what, sizeof what, "tx %s", hash_arg);
    struct cli__node node;
    int exit_code = cli__node_open(&node, o, what);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__GetTransactionRequest request = EHR__V1__GET_TRANSACTION_REQUEST__INIT;
    request.tx_hash.data = (uint8_t *)hash;
    request.tx_hash.len = EHR_HASH_BYTES;
    struct rpc_result result;
    Ehr__V1__GetTransactionResponse *r = NULL;
    Ehr__V1__GetStatusResponse *s = NULL;
    uint8_t *block = NULL;
    size_t block_len = 0;
    ledger_block_view view;
    bool have_view = false;
    if (cli__node_call(&node, "GetTransaction", &request.base, 0, &result) != RPC_STATUS_OK) {
        if (result.status == RPC_STATUS_NOT_FOUND) {
            char why[LINE_BYTES + RPC_STATUS_MESSAGE_BYTES_MAX];
            char message[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
            cli__text_shown(result.message, message, sizeof message);
            snprintf(why, sizeof why, "not on this ledger (NOT_FOUND from %s: %s)", node.address,
                     message);
            exit_code = cli__fail(why, "%s", what);
        } else {
            exit_code = cli__node_fail(&node, &result, "%s", what);
        }
        rpc_result_clear(&result);
        goto done;
    }
    r = ehr__v1__get_transaction_response__unpack(NULL, result.response_len, result.response);
    rpc_result_clear(&result);
    const char *bad = tx_answer_check(r);
    if (bad != NULL) {
        exit_code = cli__node_bad_answer(&node, what, bad);
        goto done;
    }
    /* The chain id and the block's time for the admission check, and the
     * block to see the transaction where the node says it is. */
    exit_code = cli__node_get_status(&node, what, &s);
    if (exit_code == 0)
        exit_code = cli__block_fetch(&node, r->height, what, &block, &block_len, &view, NULL);
    if (exit_code != 0)
        goto done;
    have_view = true;
    if (memcmp(view.hash, r->block_hash.data, EHR_HASH_BYTES) != 0)
        bad = "block_hash is not the hash of the block at that height";
    else if (r->position >= view.header.tx_count)
        bad = "the position is past the block's last transaction";
    else if (view.txs[r->position].length != r->envelope.len ||
             memcmp(view.bytes + view.txs[r->position].offset, r->envelope.data, r->envelope.len) !=
                 0)
        bad = "the block holds another transaction at that position";
    if (bad != NULL) {
        exit_code = cli__node_bad_answer(&node, what, bad);
        goto done;
    }
    struct cli__tx_shown shown = {.envelope = r->envelope.data,
                                  .envelope_len = r->envelope.len,
                                  .height = r->height,
                                  .index = r->position,
                                  .chain_id = s->chain_id,
                                  .block_time_ms = view.header.time_ms,
                                  .result = r->result};
    exit_code = cli__tx_print(ctx, hash, hash_arg, &shown);
done:
    if (have_view)
        ledger_block_view_release(&view);
    ehr_free(block);
    if (s != NULL)
        ehr__v1__get_status_response__free_unpacked(s, NULL);
    if (r != NULL)
        ehr__v1__get_transaction_response__free_unpacked(r, NULL);
    cli__node_close(&node);
    return exit_code;
}

/* ---- blocks follow ---- */

struct follow {
    struct cli__ctx *ctx;
    struct cli__node node; /* address and timeout for messages; no sync connection */
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    uv_timer_t connect_timer;
    struct rpc_client *client;
    struct rpc_client_call *call;
    uint64_t next_height;
    uint64_t count_max; /* 0: no limit */
    uint64_t shown;
    bool connected;
    bool stopping; /* we cancelled: --count reached, a signal, or a bad answer */
    bool call_done;
    bool client_closed;
    bool connect_timed_out;
    char bad[LINE_BYTES]; /* a bad answer, or "" */
    int exit_code;
};

/* Time as YYYY-MM-DDTHH:MM:SS.mmmZ. */
static void iso_time(uint64_t time_ms, char *out, size_t size)
{
    time_t secs = (time_t)(time_ms / 1000);
    struct tm tm;
    if (time_ms / 1000 > (uint64_t)INT32_MAX * 1000 || gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, size, "%llums", (unsigned long long)time_ms);
        return;
    }
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(time_ms % 1000));
}

static void follow_stop(struct follow *f)
{
    if (!f->stopping && !f->call_done && f->call != NULL) {
        f->stopping = true;
        rpc_client_call_cancel(f->call);
    }
    f->stopping = true;
}

/* One block: check it and print its line. Runs inside the client's receive path. */
static void follow_message(void *data, const uint8_t *message, size_t len)
{
    struct follow *f = data;
    if (f->stopping)
        return;
    Ehr__V1__StreamBlocksResponse *r = ehr__v1__stream_blocks_response__unpack(NULL, len, message);
    ledger_block_view view;
    ehr_diag diag;
    const char *bad = NULL;
    if (r == NULL)
        bad = "StreamBlocksResponse does not decode";
    else if (r->block_hash.len != EHR_HASH_BYTES)
        bad = "block_hash is not 32 bytes";
    else if (r->height != f->next_height)
        bad = "a block out of height order";
    else if (r->block.len == 0 || r->block.len > EHR_BLOCK_BYTES_MAX)
        bad = "a block empty or over EHR_BLOCK_BYTES_MAX";
    else if (ledger_block_parse(r->block.data, r->block.len, &view, &diag) != 0)
        bad = diag.msg;
    else if (view.header.height != r->height ||
             memcmp(view.hash, r->block_hash.data, EHR_HASH_BYTES) != 0) {
        ledger_block_view_release(&view);
        bad = "the block is not the one its height and hash say";
    }
    if (bad != NULL) {
        snprintf(f->bad, sizeof f->bad, "block %llu: %s", (unsigned long long)f->next_height, bad);
        if (r != NULL)
            ehr__v1__stream_blocks_response__free_unpacked(r, NULL);
        follow_stop(f);
        return;
    }
    const ledger_block_header *h = &view.header;
    char hash_hex[HASH_HEX_BYTES], proposer_hex[HASH_HEX_BYTES], time_text[48];
    ehr_hex_encode(hash_hex, view.hash, EHR_HASH_BYTES);
    ehr_hex_encode(proposer_hex, h->proposer, EHR_SCHNORR_PUBLIC_BYTES);
    iso_time(h->time_ms, time_text, sizeof time_text);
    if (f->ctx->json) {
        json_t *line = json_checked(json_pack(
            "{s:o, s:s, s:I, s:o, s:o, s:I}", "height", json_u64(h->height), "hash", hash_hex,
            "tx_count", (json_int_t)h->tx_count, "time_ms", json_u64(h->time_ms), "proposer",
            h->height == 0 ? json_null() : json_checked(json_string(proposer_hex)), "bytes",
            (json_int_t)r->block.len));
        json_dumpf(line, stdout, JSON_COMPACT);
        json_decref(line);
        fputc('\n', stdout);
    } else {
        printf("%-8llu %s  %5u tx  %s  %s\n", (unsigned long long)h->height, hash_hex, h->tx_count,
               time_text, h->height == 0 ? "genesis" : proposer_hex);
    }
    bool reader_gone = fflush(stdout) != 0 || ferror(stdout); /* `| head` has had enough */
    ledger_block_view_release(&view);
    ehr__v1__stream_blocks_response__free_unpacked(r, NULL);
    f->next_height++;
    f->shown++;
    if (reader_gone || (f->count_max > 0 && f->shown >= f->count_max))
        follow_stop(f);
}

static void follow_done(void *data, enum rpc_status status, const char *message,
                        const uint8_t *response, size_t response_len)
{
    struct follow *f = data;
    f->call_done = true;
    f->call = NULL;
    uv_timer_stop(&f->connect_timer);
    if (f->bad[0] != '\0') {
        f->exit_code = cli__node_bad_answer(&f->node, "blocks follow", f->bad);
    } else if (f->connect_timed_out) {
        char why[LINE_BYTES];
        snprintf(why, sizeof why, "cannot connect to %s within %llu ms (DEADLINE_EXCEEDED)",
                 f->node.address, (unsigned long long)f->node.timeout_ms);
        cli__fail(why, "blocks follow");
        f->exit_code = CLI_EXIT_TIMEOUT;
    } else if (status == RPC_STATUS_OK || (f->stopping && status == RPC_STATUS_CANCELLED)) {
        f->exit_code = CLI_EXIT_OK; /* the stream ended, or we ended it */
    } else {
        struct rpc_result result = {.status = status};
        snprintf(result.message, sizeof result.message, "%s", message);
        f->exit_code = cli__node_fail(&f->node, &result, "blocks follow");
    }
    uv_signal_stop(&f->sigint);
    uv_signal_stop(&f->sigterm);
}

static void follow_connected(struct rpc_client *client, int status, void *data)
{
    struct follow *f = data;
    f->connected = status == 0;
    uv_timer_stop(&f->connect_timer);
}

static void follow_connect_timeout(uv_timer_t *timer)
{
    struct follow *f = timer->data;
    if (!f->connected && !f->call_done) {
        f->connect_timed_out = true;
        follow_stop(f);
    }
}

static void follow_signal(uv_signal_t *handle, int signum)
{
    follow_stop(handle->data);
}

static void follow_client_closed(void *data)
{
    ((struct follow *)data)->client_closed = true;
}

int cli__cmd_blocks_follow(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"from", required_argument, NULL, 'f'},
                                            {"count", required_argument, NULL, 'n'},
                                            CLI_NODE_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    struct cli__node_options o = {0};
    struct follow f = {.ctx = ctx};
    bool from_given = false;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'f') {
            if (cli__parse_u64(optarg, INT64_MAX, &f.next_height) != 0)
                return cli__usage_error(ctx, "--from wants a block height (0, 1, ...)");
            from_given = true;
        } else if (c == 'n') {
            if (cli__parse_u64(optarg, INT64_MAX, &f.count_max) != 0 || f.count_max == 0)
                return cli__usage_error(ctx, "--count wants a number of blocks, 1 or more");
        } else if (cli__node_option(ctx, c, optarg, &o) != 0) {
            return CLI_EXIT_USAGE;
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    int exit_code = cli__node_options_finish(ctx, &o);
    if (exit_code != 0)
        return exit_code;
    if (!from_given) { /* new blocks only: start after the tip */
        struct cli__node node;
        Ehr__V1__GetStatusResponse *s;
        exit_code = cli__node_open(&node, &o, "blocks follow");
        if (exit_code != 0)
            return exit_code;
        exit_code = cli__node_get_status(&node, "blocks follow", &s);
        cli__node_close(&node);
        if (exit_code != 0)
            return exit_code;
        f.next_height = s->tip_height + 1;
        ehr__v1__get_status_response__free_unpacked(s, NULL);
    }
    int rc = cli__address_parse(o.address, f.node.host, &f.node.port);
    EHR_ASSERT(rc == 0);
    snprintf(f.node.address, sizeof f.node.address, "%s", o.address);
    f.node.timeout_ms = o.timeout_ms;

    rc = uv_loop_init(&f.loop);
    EHR_ASSERT(rc == 0);
    uv_signal_init(&f.loop, &f.sigint);
    uv_signal_init(&f.loop, &f.sigterm);
    uv_timer_init(&f.loop, &f.connect_timer);
    f.sigint.data = f.sigterm.data = f.connect_timer.data = &f;
    uv_signal_start(&f.sigint, follow_signal, SIGINT);
    uv_signal_start(&f.sigterm, follow_signal, SIGTERM);
    uv_timer_start(&f.connect_timer, follow_connect_timeout, o.timeout_ms, 0);
    Ehr__V1__StreamBlocksRequest request = EHR__V1__STREAM_BLOCKS_REQUEST__INIT;
    request.from_height = f.next_height;
    uint8_t packed[16];
    size_t packed_len = ehr__v1__stream_blocks_request__pack(&request, packed);
    struct rpc_client_config config = {0};
    if (o.tls_ca != NULL) {
        struct rpc_tls_client_files files = {
            .ca_file = o.tls_ca, .cert_file = o.tls_cert, .key_file = o.tls_key};
        ehr_diag why;
        if (rpc_tls_client_new(&files, &f.node.tls, &why) != 0) /* read once already */
            return cli__fail(why.msg, "blocks follow");
        config.tls = f.node.tls;
    }
    rc = rpc_client_connect(&f.loop, f.node.host, f.node.port, &config, follow_connected, &f,
                            &f.client);
    if (rc != 0)
        f.client = NULL; /* nothing was created */
    if (rc == 0)
        rc = rpc_client_stream(f.client, "/ehr.v1.Node/StreamBlocks", packed, packed_len, 0,
                               follow_message, follow_done, &f, &f.call);
    if (rc != 0) {
        exit_code = cli__fail(ehr_strerror(rc), "blocks follow: start the stream");
        f.call_done = true;
    }
    while (!f.call_done)
        uv_run(&f.loop, UV_RUN_ONCE);
    if (rc == 0)
        exit_code = f.exit_code;
    if (f.client != NULL) {
        rpc_client_close(f.client, follow_client_closed, &f);
        while (!f.client_closed)
            uv_run(&f.loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&f.sigint, NULL);
    uv_close((uv_handle_t *)&f.sigterm, NULL);
    uv_close((uv_handle_t *)&f.connect_timer, NULL);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&f.loop);
    EHR_ASSERT(rc == 0);
    rpc_tls_free(f.node.tls); /* after the client that borrowed it */
    return exit_code;
}
