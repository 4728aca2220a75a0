/*
 * cmd_bench.c - `ehrctl bench`, the cluster benchmark: how many transactions
 * per second a running cluster commits, how long a commit takes, what CPU
 * each node spends on it, and whether every transaction got the result the
 * consent contract's rules must give it.
 *
 * Shape of a run:
 *   1. The members' key files (--key, one or more: they sign enrolments,
 *      anchors and access requests) are opened, and GetStatus asked of every
 *      node (blocking): the chain id (all must agree), each node's id.
 *   2. Setup, not measured (bench_load.c): fresh patients in memory,
 *      enrolled by the members (co-signed) and waited for; then one record
 *      anchored and one consent granted per patient, waited for. Every
 *      setup transaction must commit OK, or the bench stops there.
 *   3. Each workload of --workload (domain, then anchors): N transactions
 *      signed before the clock starts, then submitted with wait_for_commit
 *      over one HTTP/2 connection per node (kept across runs), round-robin
 *      over the nodes, K outstanding, each with a deadline. With --rate,
 *      transaction i starts no earlier than t0 + i/R (open loop) and its
 *      latency counts from that scheduled time, so time spent queued in the
 *      client is not hidden (no coordinated omission).
 *   4. At the end of a workload's warm-up its window opens: GetStatus on
 *      every node samples CPU time (cpu_user_ms + cpu_system_ms) and uptime;
 *      when its last transaction is answered the window closes and every
 *      node is sampled again. CPU % = CPU ms / uptime ms between the two,
 *      and CPU per transaction = CPU ms / the window's commits.
 *   5. Each committed transaction's result is checked against what its kind
 *      must give (OK; for an access request, permit or deny). A refusal or
 *      another decision in the bench's own workload is a bug, in the bench
 *      or in the rules: counted, the first one named, exit 1.
 *
 * Invariants (asserted):
 *   1. Every transaction of a run is resolved exactly once: committed, or
 *      failed with one status. Retries are counted apart, never as outcomes.
 *   2. A transaction waiting for a retry keeps its in-flight slot, so at
 *      most K transactions are outstanding and the retry queue (K slots)
 *      never overflows.
 *   3. A committed answer counts only if it names the transaction's own
 *      hash and says committed.
 *   4. One run at a time: a run ends (every transaction resolved, every CPU
 *      sample answered) before the next is started.
 *
 * UNAVAILABLE (no leader, leader changed, connection lost), and
 * RESOURCE_EXHAUSTED with a retry hint (ehr-retry-after-ms: the node's
 * per-client submission rate, the transaction not admitted), are retried
 * after BENCH_RETRY_PAUSE_MS on the next node, at most BENCH_RETRIES_MAX
 * times per transaction (a full mempool, RESOURCE_EXHAUSTED without the
 * hint, is a failure the report names); a connection found down is replaced before its next use
 * (the rpc client never reconnects by itself).
 *
 * Not here: which transactions a workload holds (bench_load.c).
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_internal.h"
#include "ledger.h"

enum {
    BENCH_TXS_DEFAULT = 10000,
    BENCH_TXS_MAX = 1000000,
    BENCH_INFLIGHT_DEFAULT = 64,
    BENCH_INFLIGHT_MAX = 4096,
    BENCH_TIMEOUT_MS_DEFAULT = 30000,
    BENCH_RATE_MAX = 10000000,
    BENCH_WARMUP_S_MAX = 3600,
    BENCH_RETRY_PAUSE_MS = 50,
    BENCH_RETRIES_MAX = 100,
    BENCH_TICK_MS = 1,
    /* The transactions expire long after any sensible run. */
    BENCH_EXPIRY_S = 3600,
    BENCH_PROGRESS_EVERY = 1000, /* signing progress line, on a terminal */
    LINE_BYTES = 640,            /* room for a host name (253 bytes) and more */
};

#define SUBMIT_PATH "/ehr.v1.Node/SubmitTransaction"
#define STATUS_PATH "/ehr.v1.Node/GetStatus"

/* Which workloads --workload runs. */
enum { WORKLOAD_DOMAIN = 1, WORKLOAD_ANCHORS = 2 };

static json_t *json_checked(json_t *v)
{
    if (v == NULL)
        ehr_panic("out of memory building JSON");
    return v;
}

/* Note the first thing that went wrong in RUN, in words. */
static void run_wrong(struct bench_run *run, const struct bench_tx *tx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void run_wrong(struct bench_run *run, const struct bench_tx *tx, const char *fmt, ...)
{
    if (run->first_wrong[0] != '\0')
        return;
    char hash_hex[BENCH_HASH_HEX_BYTES], what[BENCH_WRONG_BYTES - 64];
    ehr_hex_encode(hash_hex, tx->hash, EHR_HASH_BYTES);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(run->first_wrong, sizeof run->first_wrong, "%s %.16s...: %s",
             bench_kind_names[tx->kind], hash_hex, what);
}

/* ---- connections ---- */

static void node_connected(struct rpc_client *client, int status, void *data)
{
    /* A failed connection shows as UNAVAILABLE on its calls; nothing to do. */
}

static void node_client_closed(void *data)
{
    struct bench *b = data;
    EHR_ASSERT(b->clients_open > 0);
    b->clients_open--;
}

/* NODE's client, replaced first if its connection is gone. */
static struct rpc_client *node_client(struct bench_node *node)
{
    struct bench *b = node->bench;
    if (node->client != NULL && rpc_client_is_down(node->client)) {
        rpc_client_close(node->client, node_client_closed, b);
        node->client = NULL;
        node->reconnects++;
    }
    if (node->client == NULL) {
        struct rpc_client_config config = {.tls = b->tls};
        int rc = rpc_client_connect(&b->loop, node->host, node->port, &config, node_connected, node,
                                    &node->client);
        if (rc != 0)
            ehr_panic("cannot start a connection to %s: %s", node->address, ehr_strerror(rc));
        b->clients_open++;
    }
    return node->client;
}

/* ---- CPU samples ---- */

static void sample_done(void *data, enum rpc_status status, const char *message,
                        const uint8_t *response, size_t response_len);

static void bench_sample(struct bench *b, int which)
{
    static const uint8_t empty[1];
    for (size_t i = 0; i < b->node_count; i++) {
        struct bench_node *node = &b->nodes[i];
        struct bench_sample_call *call = &node->sample_calls[which];
        call->node = node;
        call->which = which;
        b->run->samples[i][which].pending = true;
        int rc = rpc_client_unary(node_client(node), STATUS_PATH, empty, 0, CLI_TIMEOUT_MS_DEFAULT,
                                  sample_done, call, NULL);
        if (rc != 0) {
            b->run->samples[i][which].pending = false;
            continue;
        }
        b->samples_pending++;
    }
}

static void sample_done(void *data, enum rpc_status status, const char *message,
                        const uint8_t *response, size_t response_len)
{
    struct bench_sample_call *call = data;
    struct bench *b = call->node->bench;
    struct bench_sample *sample = &b->run->samples[call->node->index][call->which];
    EHR_ASSERT(sample->pending);
    EHR_ASSERT(b->samples_pending > 0);
    sample->pending = false;
    b->samples_pending--;
    if (status != RPC_STATUS_OK)
        return;
    Ehr__V1__GetStatusResponse *s =
        ehr__v1__get_status_response__unpack(NULL, response_len, response);
    if (s == NULL)
        return;
    sample->ok = true;
    sample->cpu_ms = s->cpu_user_ms + s->cpu_system_ms;
    sample->uptime_ms = s->uptime_ms;
    ehr__v1__get_status_response__free_unpacked(s, NULL);
}

/* ---- a run ---- */

static void tx_done(void *data, enum rpc_status status, const char *message,
                    const uint8_t *response, size_t response_len);

static void window_open(struct bench *b, uint64_t now)
{
    struct bench_run *run = b->run;
    EHR_ASSERT(!run->window_open);
    run->window_open = true;
    run->window_start_ns = now;
    getrusage(RUSAGE_SELF, &run->usage_start);
    bench_sample(b, 0);
}

/* Check the result of TX, committed: the one its kind must give. */
static void result_check(struct bench_run *run, const struct bench_tx *tx,
                         const Ehr__V1__TxResult *res)
{
    if (res == NULL) { /* a node that keeps no result: not checked */
        run->not_given++;
        return;
    }
    char code[32];
    cli__result_code_name(res->code, code, sizeof code);
    if (res->code != EHR__V1__TX_RESULT_CODE__TX_RESULT_OK) {
        run->refused++;
        run_wrong(run, tx, "refused: %s: %.160s", code, res->reason);
        return;
    }
    int want = tx->kind == BENCH_KIND_PERMIT ? EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT
               : tx->kind == BENCH_KIND_DENY
                   ? EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY
                   : EHR__V1__ACCESS_DECISION__ACCESS_DECISION_UNSPECIFIED;
    if ((int)res->decision != want) {
        run->unexpected++;
        run_wrong(run, tx, "decided %s: %.160s",
                  res->decision == EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT ? "permit"
                  : res->decision == EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY ? "deny"
                                                                                    : "nothing",
                  res->reason);
        return;
    }
    run->as_expected[tx->kind]++;
}

/* Resolve TX: committed (STATUS OK, RES its result) or failed with STATUS. */
static void tx_resolve(struct bench *b, struct bench_tx *tx, enum rpc_status status, bool bad,
                       const Ehr__V1__TxResult *res)
{
    struct bench_run *run = b->run;
    EHR_ASSERT(!tx->resolved); /* invariant 1 */
    EHR_ASSERT(run->outstanding > 0);
    tx->resolved = true;
    run->outstanding--;
    run->resolved++;
    uint64_t now = uv_hrtime();
    if (bad) {
        run->bad_answers++;
        run_wrong(run, tx, "a bad answer to its submission");
    } else if (status != RPC_STATUS_OK) {
        run->failed[status < RPC_STATUS_COUNT_ ? status : RPC_STATUS_UNKNOWN]++;
    } else {
        run->committed++;
        result_check(run, tx, res);
        if (run->window_open && !run->window_closed) {
            uint64_t us = (now - tx->start_ns) / 1000;
            run->latency_us[run->latency_count++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
            run->window_committed++;
        }
    }
    if (run->resolved == run->tx_count) {
        run->window_end_ns = now;
        run->window_closed = true;
        getrusage(RUSAGE_SELF, &run->usage_end);
        uv_timer_stop(&b->tick);
        if (run->window_open)
            bench_sample(b, 1);
    }
}

static void tx_send(struct bench *b, struct bench_tx *tx)
{
    struct bench_node *node = &b->nodes[b->next_node++ % b->node_count];
    tx->attempts++;
    b->run->sends[node->index]++;
    int rc = rpc_client_unary(node_client(node), SUBMIT_PATH, tx->request, tx->request_len,
                              b->timeout_ms, tx_done, tx, &tx->call);
    if (rc != 0) /* refused locally: no callback will come */
        tx_resolve(b, tx, rc == EHR_ETOOBIG ? RPC_STATUS_RESOURCE_EXHAUSTED : RPC_STATUS_INTERNAL,
                   false, NULL);
}

/* Send what is due: retries first, then new transactions within the limits. */
static void bench_pump(struct bench *b)
{
    struct bench_run *run = b->run;
    uint64_t now = uv_hrtime();
    if (run->measured && !run->window_open && now >= run->t0_ns + b->warmup_ns &&
        !run->window_closed)
        window_open(b, now);
    while (run->retry_count > 0 && run->retry_due_ns[run->retry_head] <= now) {
        struct bench_tx *tx = run->retry[run->retry_head];
        run->retry_head = (run->retry_head + 1) % b->inflight_max;
        run->retry_count--;
        tx_send(b, tx);
    }
    while (run->outstanding < b->inflight_max && run->next_tx < run->tx_count) {
        struct bench_tx *tx = &run->txs[run->next_tx];
        uint64_t start = now;
        if (b->rate > 0 && run->measured) {
            start = run->t0_ns + (uint64_t)((double)run->next_tx * 1e9 / (double)b->rate);
            if (start > now)
                break;
        }
        run->next_tx++;
        run->outstanding++;
        tx->start_ns = start;
        tx_send(b, tx);
    }
}

static void tx_done(void *data, enum rpc_status status, const char *message,
                    const uint8_t *response, size_t response_len)
{
    struct bench_tx *tx = data;
    struct bench_run *run = tx->run;
    struct bench *b = run->bench;
    EHR_ASSERT(b->run == run); /* invariant 4 */
    bool throttled = status == RPC_STATUS_RESOURCE_EXHAUSTED &&
                     rpc_client_call_trailer(tx->call, "ehr-retry-after-ms") != NULL;
    tx->call = NULL;
    if ((status == RPC_STATUS_UNAVAILABLE || throttled) && tx->attempts <= BENCH_RETRIES_MAX) {
        EHR_ASSERT(run->retry_count < b->inflight_max); /* invariant 2 */
        size_t slot = (run->retry_head + run->retry_count) % b->inflight_max;
        run->retry[slot] = tx;
        run->retry_due_ns[slot] = uv_hrtime() + BENCH_RETRY_PAUSE_MS * 1000000ull;
        run->retry_count++;
        run->retries++;
        return; /* the tick sends it when due */
    }
    bool bad = false;
    Ehr__V1__SubmitTransactionResponse *r = NULL;
    if (status == RPC_STATUS_OK) { /* invariant 3 */
        r = ehr__v1__submit_transaction_response__unpack(NULL, response_len, response);
        bad = r == NULL || r->tx_hash.len != EHR_HASH_BYTES ||
              memcmp(r->tx_hash.data, tx->hash, EHR_HASH_BYTES) != 0 || !r->committed ||
              (r->result != NULL && cli__result_check(r->result) != NULL);
    } else {
        char shown[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
        cli__text_shown(message != NULL ? message : "", shown, sizeof shown);
        run_wrong(run, tx, "%s: %.200s", rpc_status_name(status), shown);
    }
    tx_resolve(b, tx, status, bad, r != NULL && !bad ? r->result : NULL);
    if (r != NULL)
        ehr__v1__submit_transaction_response__free_unpacked(r, NULL);
    bench_pump(b);
}

static void bench_tick(uv_timer_t *timer)
{
    bench_pump(timer->data);
}

/* Run RUN (its transactions built) until every transaction is resolved and
 * sampled. The connections stay open for the next run. */
static void bench_run_go(struct bench *b, struct bench_run *run)
{
    EHR_ASSERT(b->run == NULL); /* invariant 4 */
    b->run = run;
    run->bench = b;
    run->retry = ehr_calloc(b->inflight_max, sizeof *run->retry);
    run->retry_due_ns = ehr_calloc(b->inflight_max, sizeof *run->retry_due_ns);
    run->latency_us = ehr_calloc(run->tx_count, sizeof *run->latency_us);
    for (size_t i = 0; i < run->tx_count; i++) {
        run->txs[i].run = run;
        run->kinds[run->txs[i].kind]++;
        run->envelope_bytes_total += run->txs[i].envelope_len;
    }
    for (size_t i = 0; i < b->node_count; i++) {
        node_client(&b->nodes[i]);
        run->reconnects_before[i] = b->nodes[i].reconnects;
    }
    run->t0_ns = uv_hrtime();
    uv_timer_start(&b->tick, bench_tick, BENCH_TICK_MS, BENCH_TICK_MS);
    bench_pump(b);
    while (run->resolved < run->tx_count || b->samples_pending > 0)
        uv_run(&b->loop, UV_RUN_ONCE);
    uv_timer_stop(&b->tick);
    b->run = NULL;
}

/* Close the connections and the timer, and drain the loop. */
static void bench_close(struct bench *b)
{
    uv_close((uv_handle_t *)&b->tick, NULL);
    for (size_t i = 0; i < b->node_count; i++) {
        if (b->nodes[i].client != NULL)
            rpc_client_close(b->nodes[i].client, node_client_closed, b);
        b->nodes[i].client = NULL;
    }
    while (b->clients_open > 0)
        uv_run(&b->loop, UV_RUN_ONCE);
    uv_run(&b->loop, UV_RUN_DEFAULT);
}

static void run_free(struct bench_run *run)
{
    bench_txs_free(run->txs, run->tx_count);
    ehr_free(run->retry);
    ehr_free(run->retry_due_ns);
    ehr_free(run->latency_us);
    memset(run, 0, sizeof *run);
}

/* Transactions of RUN that did not commit with their expected result. */
static uint64_t run_wrong_count(const struct bench_run *run)
{
    return run->tx_count - run->committed + run->refused + run->unexpected;
}

/* ---- the command ---- */

struct bench_args {
    const char *addresses[BENCH_NODES_MAX];
    size_t address_count;
    const char *keys[BENCH_MEMBERS_MAX];
    size_t key_count;
    const char *passphrase_file;
    struct cli__node_options tls; /* only its tls_* (cli__node_options_finish) */
    int workloads;                /* WORKLOAD_* */
    uint64_t txs, inflight, rate, warmup_s, timeout_ms;
};

static int bench_parse(struct cli__ctx *ctx, int argc, char **argv, struct bench_args *a)
{
    static const struct option options[] = {{"node", required_argument, NULL, 'N'},
                                            {"key", required_argument, NULL, 'k'},
                                            {"passphrase-file", required_argument, NULL, 'p'},
                                            {"workload", required_argument, NULL, 'W'},
                                            {"txs", required_argument, NULL, 'n'},
                                            {"inflight", required_argument, NULL, 'K'},
                                            {"rate", required_argument, NULL, 'r'},
                                            {"warmup-s", required_argument, NULL, 'w'},
                                            {"timeout-ms", required_argument, NULL, 'T'},
                                            {"tls-ca", required_argument, NULL, CLI_OPT_TLS_CA},
                                            {"tls-cert", required_argument, NULL, CLI_OPT_TLS_CERT},
                                            {"tls-key", required_argument, NULL, CLI_OPT_TLS_KEY},
                                            CLI_COMMON_OPTIONS};
    a->txs = BENCH_TXS_DEFAULT;
    a->inflight = BENCH_INFLIGHT_DEFAULT;
    a->timeout_ms = BENCH_TIMEOUT_MS_DEFAULT;
    a->workloads = WORKLOAD_DOMAIN | WORKLOAD_ANCHORS;
    char host[CLI_HOST_BYTES_MAX + 1];
    uint16_t port;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'N':
            if (cli__address_parse(optarg, host, &port) != 0)
                return cli__usage_error(ctx, "--node wants HOST:PORT, not \"%.80s\"", optarg);
            if (a->address_count == BENCH_NODES_MAX)
                return cli__usage_error(ctx, "at most %d --node", BENCH_NODES_MAX);
            a->addresses[a->address_count++] = optarg;
            break;
        case 'k':
            if (a->key_count == BENCH_MEMBERS_MAX)
                return cli__usage_error(ctx, "at most %d --key", BENCH_MEMBERS_MAX);
            a->keys[a->key_count++] = optarg;
            break;
        case 'p':
            a->passphrase_file = optarg;
            break;
        case 'W':
            if (strcmp(optarg, "domain") == 0)
                a->workloads = WORKLOAD_DOMAIN;
            else if (strcmp(optarg, "anchors") == 0)
                a->workloads = WORKLOAD_ANCHORS;
            else if (strcmp(optarg, "both") == 0)
                a->workloads = WORKLOAD_DOMAIN | WORKLOAD_ANCHORS;
            else
                return cli__usage_error(ctx, "--workload wants domain, anchors or both");
            break;
        case 'n':
            if (cli__parse_u64(optarg, BENCH_TXS_MAX, &a->txs) != 0 || a->txs == 0)
                return cli__usage_error(ctx, "--txs wants 1 to %d", BENCH_TXS_MAX);
            break;
        case 'K':
            if (cli__parse_u64(optarg, BENCH_INFLIGHT_MAX, &a->inflight) != 0 || a->inflight == 0)
                return cli__usage_error(ctx, "--inflight wants 1 to %d", BENCH_INFLIGHT_MAX);
            break;
        case 'r':
            if (cli__parse_u64(optarg, BENCH_RATE_MAX, &a->rate) != 0 || a->rate == 0)
                return cli__usage_error(ctx, "--rate wants 1 to %d tx/s", BENCH_RATE_MAX);
            break;
        case 'w':
            if (cli__parse_u64(optarg, BENCH_WARMUP_S_MAX, &a->warmup_s) != 0)
                return cli__usage_error(ctx, "--warmup-s wants 0 to %d", BENCH_WARMUP_S_MAX);
            break;
        case 'T':
            if (cli__parse_u64(optarg, CLI_TIMEOUT_MS_MAX, &a->timeout_ms) != 0 ||
                a->timeout_ms == 0)
                return cli__usage_error(ctx, "--timeout-ms wants 1 to %llu",
                                        (unsigned long long)CLI_TIMEOUT_MS_MAX);
            break;
        default:
            EHR_ASSERT(0 && "option in the table but not handled");
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if (a->key_count == 0)
        return cli__usage_error(ctx, "give --key FILE: a member's node key (repeat it for more "
                                     "members) to enrol patients, anchor records and ask for "
                                     "access");
    int exit_code = cli__node_options_finish(ctx, &a->tls); /* the TLS files, checked */
    if (exit_code != 0)
        return exit_code;
    if (a->address_count == 0)
        a->addresses[a->address_count++] = a->tls.address;
    return 0;
}

/*
 * GetStatus on every node: the chain id (all must serve the same one) and
 * each node's id. Returns 0 or an exit status after saying why.
 */
static int bench_survey(struct bench *b, const struct bench_args *a,
                        char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1])
{
    for (size_t i = 0; i < a->address_count; i++) {
        struct bench_node *node = &b->nodes[i];
        struct cli__node_options o = {.address = a->addresses[i],
                                      .timeout_ms = CLI_TIMEOUT_MS_DEFAULT,
                                      .tls_ca = a->tls.tls_ca,
                                      .tls_cert = a->tls.tls_cert,
                                      .tls_key = a->tls.tls_key};
        struct cli__node conn;
        int exit_code = cli__node_open(&conn, &o, "bench");
        if (exit_code != 0)
            return exit_code;
        Ehr__V1__GetStatusResponse *s;
        exit_code = cli__node_get_status(&conn, "bench", &s);
        cli__node_close(&conn);
        if (exit_code != 0)
            return exit_code;
        if (i == 0) {
            snprintf(chain_id, EHR_CHAIN_ID_BYTES_MAX + 1, "%s", s->chain_id);
        } else if (strcmp(chain_id, s->chain_id) != 0) {
            char why[LINE_BYTES];
            snprintf(why, sizeof why, "%s serves chain \"%.64s\", %s serves \"%.64s\"",
                     a->addresses[0], chain_id, a->addresses[i], s->chain_id);
            ehr__v1__get_status_response__free_unpacked(s, NULL);
            return cli__fail(why, "bench");
        }
        node->bench = b;
        node->index = i;
        snprintf(node->address, sizeof node->address, "%s", a->addresses[i]);
        int rc = cli__address_parse(node->address, node->host, &node->port);
        EHR_ASSERT(rc == 0);
        ehr_hex_encode(node->id_hex, s->node_id.data, EHR_SCHNORR_PUBLIC_BYTES);
        ehr__v1__get_status_response__free_unpacked(s, NULL);
    }
    b->node_count = a->address_count;
    if (ledger_chain_id_check(chain_id, NULL) != 0)
        return cli__fail("the node's chain id is not valid", "bench");
    return 0;
}

/* Run one setup step (every transaction must commit OK). Returns 0 or an exit status. */
static int bench_setup_step(struct bench *b, struct bench_run *run, const char *what)
{
    bench_run_go(b, run);
    if (run_wrong_count(run) == 0)
        return 0;
    char why[BENCH_WRONG_BYTES + 256];
    snprintf(why, sizeof why,
             "%llu of %zu %s failed; the first: %s (are the --key files node keys of members of "
             "this chain?)",
             (unsigned long long)run_wrong_count(run), run->tx_count, what, run->first_wrong);
    return cli__fail(why, "bench: setup");
}

/* Build a workload of COUNT transactions with LOAD, a progress line on a
 * terminal. */
static void bench_build(const struct bench_cast *cast, struct bench_run *run, size_t count,
                        void (*load)(const struct bench_cast *, struct bench_tx *, size_t, size_t),
                        bool progress)
{
    run->txs = ehr_calloc(count, sizeof *run->txs);
    run->tx_count = count;
    for (size_t i = 0; i < count; i += BENCH_PROGRESS_EVERY) {
        size_t n = count - i < BENCH_PROGRESS_EVERY ? count - i : BENCH_PROGRESS_EVERY;
        if (progress)
            fprintf(stderr, "\rbench: signing %s transactions %zu/%zu", run->name, i + n, count);
        load(cast, run->txs, i, n);
    }
    if (progress)
        fputc('\n', stderr);
}

int cli__cmd_bench(struct cli__ctx *ctx, int argc, char **argv)
{
    struct bench_args a = {0};
    int exit_code = bench_parse(ctx, argc, argv, &a);
    if (exit_code != 0)
        return exit_code;
    struct bench_cast cast = {0};
    ehr_keyfile_info info;
    for (size_t i = 0; i < a.key_count && exit_code == 0; i++) {
        ehr_identity *id;
        exit_code = cli__identity_load(a.keys[i], a.passphrase_file, &id, &info);
        if (exit_code == 0)
            cast.members[cast.member_count++] = id;
    }
    struct bench *b = ehr_calloc(1, sizeof *b);
    int rc = uv_loop_init(&b->loop);
    EHR_ASSERT(rc == 0);
    uv_timer_init(&b->loop, &b->tick);
    b->tick.data = b;
    b->inflight_max = a.inflight;
    b->rate = a.rate;
    b->warmup_ns = a.warmup_s * 1000000000ull;
    b->timeout_ms = a.timeout_ms;
    if (exit_code == 0)
        exit_code = bench_survey(b, &a, cast.chain_id);
    if (exit_code == 0 && a.tls.tls_ca != NULL) {
        struct rpc_tls_client_files files = {
            .ca_file = a.tls.tls_ca, .cert_file = a.tls.tls_cert, .key_file = a.tls.tls_key};
        ehr_diag why;
        if (rpc_tls_client_new(&files, &b->tls, &why) != 0) /* the survey read them already */
            exit_code = cli__fail(why.msg, "bench");
    }
    bool progress = !ctx->json && isatty(STDERR_FILENO); /* signing 60,000 takes seconds */
    struct bench_run setup[2] = {{.name = "setup: enrolments"},
                                 {.name = "setup: records and consents"}};
    struct bench_run runs[2] = {{.name = "domain", .measured = true},
                                {.name = "anchors", .measured = true}};
    struct bench_figures figures[2];
    uint64_t setup_ns = 0;
    if (exit_code == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        bench_cast_init(&cast, a.txs, now_ms + BENCH_EXPIRY_S * 1000ull);
        uint64_t t0 = uv_hrtime();
        setup[0].tx_count = cast.patient_count;
        setup[0].txs = ehr_calloc(setup[0].tx_count, sizeof *setup[0].txs);
        bench_load_enrollments(&cast, setup[0].txs);
        exit_code = bench_setup_step(b, &setup[0], "enrolments");
        if (exit_code == 0) {
            setup[1].tx_count = 2 * cast.patient_count;
            setup[1].txs = ehr_calloc(setup[1].tx_count, sizeof *setup[1].txs);
            bench_load_setup(&cast, setup[1].txs);
            exit_code = bench_setup_step(b, &setup[1], "record anchors and consent grants");
        }
        setup_ns = uv_hrtime() - t0;
    }
    if (exit_code == 0 && !ctx->json) {
        char rate[32] = "unlimited";
        if (b->rate > 0)
            snprintf(rate, sizeof rate, "%llu tx/s", (unsigned long long)b->rate);
        printf("bench: %zu node%s, %zu member key%s, %llu transactions per workload, %zu in "
               "flight, rate %s, warm-up %.1f s\n",
               b->node_count, b->node_count == 1 ? "" : "s", cast.member_count,
               cast.member_count == 1 ? "" : "s", (unsigned long long)a.txs, b->inflight_max, rate,
               (double)b->warmup_ns / 1e9);
        printf("setup: %zu patients enrolled, a record and a consent each (%zu transactions, "
               "every one OK) in %.3f s\n",
               cast.patient_count, setup[0].tx_count + setup[1].tx_count, (double)setup_ns / 1e9);
    }
    static void (*const loads[2])(const struct bench_cast *, struct bench_tx *, size_t,
                                  size_t) = {bench_load_domain, bench_load_anchors};
    bool ran[2] = {false, false};
    for (int w = 0; w < 2 && exit_code == 0; w++) {
        if ((a.workloads & (1 << w)) == 0)
            continue;
        bench_build(&cast, &runs[w], (size_t)a.txs, loads[w], progress);
        bench_run_go(b, &runs[w]);
        bench_figures_make(&runs[w], b->node_count, &figures[w]);
        ran[w] = true;
        if (!ctx->json)
            bench_run_print(b, &runs[w], &figures[w]);
    }
    if (exit_code == 0 && ctx->json) {
        json_t *workloads = json_checked(json_object());
        for (int w = 0; w < 2; w++) {
            if (ran[w])
                json_object_set_new(workloads, runs[w].name,
                                    bench_run_json(b, &runs[w], &figures[w]));
        }
        json_t *root = json_checked(
            json_pack("{s:I, s:I, s:o, s:I, s:I, s:I, s:{s:I, s:b, s:o, s:I}, s:o}", "txs",
                      (json_int_t)a.txs, "inflight", (json_int_t)b->inflight_max, "rate",
                      b->rate > 0 ? json_integer((json_int_t)b->rate) : json_null(), "warmup_ms",
                      (json_int_t)(b->warmup_ns / 1000000), "members",
                      (json_int_t)cast.member_count, "patients", (json_int_t)cast.patient_count,
                      "setup", "txs", (json_int_t)(setup[0].tx_count + setup[1].tx_count), "ok", 1,
                      "s", bench_json_measured((double)setup_ns / 1e9, 3), "retries",
                      (json_int_t)(setup[0].retries + setup[1].retries), "workloads", workloads));
        exit_code = cli__json_print(root);
    } else if (exit_code == 0 && ran[0] && ran[1] && figures[1].tps > 0 && figures[1].p50 > 0) {
        printf("\ndomain against anchors: %.2fx the throughput, %.2fx the p50 latency\n",
               figures[0].tps / figures[1].tps, figures[0].p50 / figures[1].p50);
    }
    for (int w = 0; w < 2; w++) {
        if (ran[w] && bench_run_verdict(&runs[w]) != CLI_EXIT_OK && exit_code == 0)
            exit_code = CLI_EXIT_FAIL;
    }
    for (int i = 0; i < 2; i++) {
        run_free(&setup[i]);
        run_free(&runs[i]);
    }
    bench_close(b);
    rc = uv_loop_close(&b->loop);
    EHR_ASSERT(rc == 0);
    rpc_tls_free(b->tls); /* after every client that borrowed it */
    ehr_free(b);
    bench_cast_free(&cast);
    for (size_t i = 0; i < cast.member_count; i++)
        sodium_free((void *)cast.members[i]);
    return exit_code;
}
