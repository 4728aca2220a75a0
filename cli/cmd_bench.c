/*
 * cmd_bench.c - `ehrctl bench`, the cluster benchmark: how many transactions
 * per second a running cluster commits, how long a commit takes, and what
 * CPU each node spends on it.
 *
 * Shape of a run:
 *   1. GetStatus on every node (blocking): the chain id (all must agree),
 *      each node's id.
 *   2. Sign N record_anchor transactions with a fresh in-memory key and
 *      encode each SubmitTransactionRequest (wait_for_commit), before the
 *      clock starts: the run measures the cluster, not our signing.
 *   3. One libuv loop, one HTTP/2 connection per node (rpc_client_*), K
 *      transactions outstanding, each sent to the next node round-robin with
 *      a deadline. With --rate, transaction i starts no earlier than
 *      t0 + i/R (open loop) and its latency counts from that scheduled
 *      time, so time spent queued in the client is not hidden (no
 *      coordinated omission).
 *   4. At the end of the warm-up the window opens: GetStatus on every node
 *      samples CPU time (cpu_user_ms + cpu_system_ms) and uptime; when the
 *      last transaction is answered the window closes and every node is
 *      sampled again. CPU % = CPU ms / uptime ms between the two samples.
 *
 * Invariants (asserted):
 *   1. Every transaction is resolved exactly once: committed, or failed
 *      with one status. Retries are counted apart and never as outcomes.
 *   2. A transaction waiting for a retry keeps its in-flight slot, so at
 *      most K transactions are outstanding and the retry queue (K slots)
 *      never overflows.
 *   3. A committed answer counts only if it names the transaction's own
 *      hash and says committed.
 *
 * UNAVAILABLE (no leader, leader changed, connection lost) is retried after
 * BENCH_RETRY_PAUSE_MS on the next node, at most BENCH_RETRIES_MAX times per
 * transaction; a connection found down is replaced before its next use (the
 * rpc client never reconnects by itself).
 *
 * Not here: a load that mixes payload types, or signing with a member's key
 * (the transactions are signed by a key no ledger knows; the node admits
 * them by ledger_tx_check's rules).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli_internal.h"
#include "ledger.h"

enum {
    BENCH_NODES_MAX = 16,
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
    /* record_anchor contents: a realistic envelope of ~270-290 bytes. */
    BENCH_POINTER_BYTES = 48,
    BENCH_PATIENTS = 16,
    BENCH_PROGRESS_EVERY = 1000, /* signing progress line, on a terminal */
    HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    LINE_BYTES = 640, /* room for a host name (253 bytes) and more */
};

#define SUBMIT_PATH "/ehr.v1.Node/SubmitTransaction"
#define STATUS_PATH "/ehr.v1.Node/GetStatus"

struct bench;

struct bench_tx {
    struct bench *bench;
    uint8_t *request; /* the encoded SubmitTransactionRequest */
    uint32_t request_len;
    uint32_t attempts;
    uint64_t start_ns; /* first send, or the scheduled start with --rate */
    bool resolved;
    uint8_t hash[EHR_HASH_BYTES];
};

/* One CPU sample of one node. */
struct bench_sample {
    bool pending;
    bool ok;
    uint64_t cpu_ms;
    uint64_t uptime_ms;
};

struct bench_node;

/* What a GetStatus sample call reports to. */
struct bench_sample_call {
    struct bench_node *node;
    int which; /* 0: window start, 1: window end */
};

struct bench_node {
    struct bench *bench;
    struct bench_sample_call sample_calls[2];
    char address[CLI_HOST_BYTES_MAX + 8];
    char host[CLI_HOST_BYTES_MAX + 1];
    uint16_t port;
    char id_hex[HASH_HEX_BYTES];
    struct rpc_client *client;
    uint32_t reconnects;
    uint64_t sends;
    struct bench_sample samples[2]; /* window start, window end */
};

struct bench {
    uv_loop_t loop;
    uv_timer_t tick;
    struct bench_node nodes[BENCH_NODES_MAX];
    size_t node_count;
    size_t next_node;
    uint32_t clients_open;

    struct bench_tx *txs;
    size_t tx_count;
    size_t next_tx;     /* the first never sent */
    size_t outstanding; /* sent and not resolved (in flight or waiting to retry) */
    size_t inflight_max;
    size_t resolved;
    uint64_t envelope_bytes_total;

    /* Transactions waiting to be sent again, oldest first (due times grow). */
    struct bench_tx **retry;
    uint64_t *retry_due_ns;
    size_t retry_head, retry_count;

    uint64_t rate; /* tx/s, 0: no cap */
    uint64_t timeout_ms;
    uint64_t t0_ns, warmup_ns;
    bool window_open, window_closed;
    uint64_t window_start_ns, window_end_ns;
    struct rusage usage_start, usage_end;
    uint32_t samples_pending;

    uint64_t committed, window_committed, retries, bad_answers;
    uint64_t failed[RPC_STATUS_COUNT_];
    uint32_t *latency_us; /* of the commits in the window */
    size_t latency_count;
    bool finished; /* every transaction resolved and the end samples answered */
};

static json_t *json_checked(json_t *v)
{
    if (v == NULL)
        ehr_panic("out of memory building JSON");
    return v;
}

/*
 * A measured figure V rounded to DECIMALS places, as a JSON number that
 * prints as rounded (cli__json_print writes reals with 15 significant
 * digits, so 1.995 is not 1.9950000000000001).
 */
static json_t *json_measured(double v, int decimals)
{
    EHR_ASSERT(decimals >= 0 && decimals <= 9);
    double scale = 1.0;
    for (int i = 0; i < decimals; i++)
        scale *= 10.0;
    return json_checked(json_real(round(v * scale) / scale));
}

/* ---- preparation ---- */

/*
 * Sign B->tx_count transactions for CHAIN_ID with a fresh key and encode
 * their requests. Every one is checked by the admission rules once signed.
 */
static void bench_prepare(struct bench *b, const char *chain_id, bool progress)
{
    ehr_signing_key key;
    int rc = ehr_signing_key_generate(&key);
    EHR_ASSERT(rc == 0);
    uint8_t patients[BENCH_PATIENTS][EHR_SCHNORR_PUBLIC_BYTES];
    for (size_t i = 0; i < BENCH_PATIENTS; i++) {
        ehr_signing_key patient;
        rc = ehr_signing_key_generate(&patient);
        EHR_ASSERT(rc == 0);
        memcpy(patients[i], patient.public_key, EHR_SCHNORR_PUBLIC_BYTES);
        ehr_signing_key_wipe(&patient);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    b->txs = ehr_calloc(b->tx_count, sizeof *b->txs);
    for (size_t i = 0; i < b->tx_count; i++) {
        if (progress && (i % BENCH_PROGRESS_EVERY == 0 || i + 1 == b->tx_count))
            fprintf(stderr, "\rbench: signing transactions %zu/%zu", i + 1, b->tx_count);
        uint8_t nonce[EHR_TX_NONCE_BYTES], pointer[BENCH_POINTER_BYTES], ct_hash[EHR_HASH_BYTES];
        ehr_random_bytes(nonce, sizeof nonce);
        ehr_random_bytes(pointer, sizeof pointer);
        ehr_random_bytes(ct_hash, sizeof ct_hash);
        Ehr__V1__RecordAnchor anchor = EHR__V1__RECORD_ANCHOR__INIT;
        anchor.patient_key.data = patients[i % BENCH_PATIENTS];
        anchor.patient_key.len = EHR_SCHNORR_PUBLIC_BYTES;
        anchor.record_type = EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT;
        anchor.encrypted_pointer.data = pointer;
        anchor.encrypted_pointer.len = sizeof pointer;
        anchor.ciphertext_hash.data = ct_hash;
        anchor.ciphertext_hash.len = sizeof ct_hash;
        anchor.ciphertext_bytes = 4096 + (uint64_t)(i % 65536) * 16;
        Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
        body.chain_id = (char *)chain_id;
        body.signer.data = key.public_key;
        body.signer.len = EHR_SCHNORR_PUBLIC_BYTES;
        body.nonce.data = nonce;
        body.nonce.len = sizeof nonce;
        body.expiry_ms = now_ms + BENCH_EXPIRY_S * 1000ull;
        body.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
        body.record_anchor = &anchor;
        uint8_t body_bytes[512];
        size_t body_len = ehr__v1__tx_body__get_packed_size(&body);
        EHR_ASSERT(body_len <= sizeof body_bytes);
        ehr__v1__tx_body__pack(&body, body_bytes);
        uint8_t *envelope;
        size_t envelope_len;
        rc = ledger_tx_envelope_build(body_bytes, body_len, &key, &envelope, &envelope_len);
        EHR_ASSERT(rc == 0);
        ledger_tx_hash(body_bytes, body_len, b->txs[i].hash);
        if (i == 0) { /* the first one through the node's own admission rules */
            ledger_tx_rules rules = {.chain_id = chain_id, .now_ms = now_ms};
            rc = ledger_tx_check(envelope, envelope_len, &rules, NULL, NULL);
            EHR_ASSERT(rc == 0);
        }
        Ehr__V1__SubmitTransactionRequest request = EHR__V1__SUBMIT_TRANSACTION_REQUEST__INIT;
        request.envelope.data = envelope;
        request.envelope.len = envelope_len;
        request.wait_for_commit = true;
        size_t len = ehr__v1__submit_transaction_request__get_packed_size(&request);
        b->txs[i].request = ehr_malloc(len);
        b->txs[i].request_len =
            (uint32_t)ehr__v1__submit_transaction_request__pack(&request, b->txs[i].request);
        EHR_ASSERT(b->txs[i].request_len == len);
        b->txs[i].bench = b;
        b->envelope_bytes_total += envelope_len;
        ehr_free(envelope);
    }
    ehr_signing_key_wipe(&key);
    if (progress)
        fputc('\n', stderr);
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
        int rc = rpc_client_connect(&b->loop, node->host, node->port, NULL, node_connected, node,
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
        node->samples[which].pending = true;
        int rc = rpc_client_unary(node_client(node), STATUS_PATH, empty, 0, CLI_TIMEOUT_MS_DEFAULT,
                                  sample_done, call, NULL);
        if (rc != 0) {
            node->samples[which].pending = false;
            continue;
        }
        b->samples_pending++;
    }
}

static void sample_done(void *data, enum rpc_status status, const char *message,
                        const uint8_t *response, size_t response_len)
{
    struct bench_sample_call *call = data;
    struct bench_sample *sample = &call->node->samples[call->which];
    struct bench *b = call->node->bench;
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

/* ---- the run ---- */

static void tx_done(void *data, enum rpc_status status, const char *message,
                    const uint8_t *response, size_t response_len);

static void window_open(struct bench *b, uint64_t now)
{
    EHR_ASSERT(!b->window_open);
    b->window_open = true;
    b->window_start_ns = now;
    getrusage(RUSAGE_SELF, &b->usage_start);
    bench_sample(b, 0);
}

/* Resolve TX: committed (STATUS OK) or failed with STATUS. */
static void tx_resolve(struct bench *b, struct bench_tx *tx, enum rpc_status status, bool bad)
{
    EHR_ASSERT(!tx->resolved); /* invariant 1 */
    EHR_ASSERT(b->outstanding > 0);
    tx->resolved = true;
    b->outstanding--;
    b->resolved++;
    uint64_t now = uv_hrtime();
    if (bad) {
        b->bad_answers++;
    } else if (status != RPC_STATUS_OK) {
        b->failed[status < RPC_STATUS_COUNT_ ? status : RPC_STATUS_UNKNOWN]++;
    } else {
        b->committed++;
        if (b->window_open && !b->window_closed) {
            uint64_t us = (now - tx->start_ns) / 1000;
            b->latency_us[b->latency_count++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
            b->window_committed++;
        }
    }
    if (b->resolved == b->tx_count) {
        b->window_end_ns = now;
        b->window_closed = true;
        getrusage(RUSAGE_SELF, &b->usage_end);
        uv_timer_stop(&b->tick);
        if (b->window_open)
            bench_sample(b, 1);
    }
}

static void tx_send(struct bench *b, struct bench_tx *tx)
{
    struct bench_node *node = &b->nodes[b->next_node++ % b->node_count];
    tx->attempts++;
    node->sends++;
    int rc = rpc_client_unary(node_client(node), SUBMIT_PATH, tx->request, tx->request_len,
                              b->timeout_ms, tx_done, tx, NULL);
    if (rc != 0) /* refused locally: no callback will come */
        tx_resolve(b, tx, rc == EHR_ETOOBIG ? RPC_STATUS_RESOURCE_EXHAUSTED : RPC_STATUS_INTERNAL,
                   false);
}

/* Send what is due: retries first, then new transactions within the limits. */
static void bench_pump(struct bench *b)
{
    uint64_t now = uv_hrtime();
    if (!b->window_open && now >= b->t0_ns + b->warmup_ns && !b->window_closed)
        window_open(b, now);
    while (b->retry_count > 0 && b->retry_due_ns[b->retry_head] <= now) {
        struct bench_tx *tx = b->retry[b->retry_head];
        b->retry_head = (b->retry_head + 1) % b->inflight_max;
        b->retry_count--;
        tx_send(b, tx);
    }
    while (b->outstanding < b->inflight_max && b->next_tx < b->tx_count) {
        struct bench_tx *tx = &b->txs[b->next_tx];
        uint64_t start = now;
        if (b->rate > 0) {
            start = b->t0_ns + (uint64_t)((double)b->next_tx * 1e9 / (double)b->rate);
            if (start > now)
                break;
        }
        b->next_tx++;
        b->outstanding++;
        tx->start_ns = start;
        tx_send(b, tx);
    }
}

static void tx_done(void *data, enum rpc_status status, const char *message,
                    const uint8_t *response, size_t response_len)
{
    struct bench_tx *tx = data;
    struct bench *b = tx->bench;
    if (status == RPC_STATUS_UNAVAILABLE && tx->attempts <= BENCH_RETRIES_MAX) {
        EHR_ASSERT(b->retry_count < b->inflight_max); /* invariant 2 */
        size_t slot = (b->retry_head + b->retry_count) % b->inflight_max;
        b->retry[slot] = tx;
        b->retry_due_ns[slot] = uv_hrtime() + BENCH_RETRY_PAUSE_MS * 1000000ull;
        b->retry_count++;
        b->retries++;
        return; /* the tick sends it when due */
    }
    bool bad = false;
    if (status == RPC_STATUS_OK) { /* invariant 3 */
        Ehr__V1__SubmitTransactionResponse *r =
            ehr__v1__submit_transaction_response__unpack(NULL, response_len, response);
        bad = r == NULL || r->tx_hash.len != EHR_HASH_BYTES ||
              memcmp(r->tx_hash.data, tx->hash, EHR_HASH_BYTES) != 0 || !r->committed;
        if (r != NULL)
            ehr__v1__submit_transaction_response__free_unpacked(r, NULL);
    }
    tx_resolve(b, tx, status, bad);
    bench_pump(b);
}

static void bench_tick(uv_timer_t *timer)
{
    bench_pump(timer->data);
}

/* Run the loop until every transaction is resolved and sampled. */
static void bench_run(struct bench *b)
{
    b->retry = ehr_calloc(b->inflight_max, sizeof *b->retry);
    b->retry_due_ns = ehr_calloc(b->inflight_max, sizeof *b->retry_due_ns);
    b->latency_us = ehr_calloc(b->tx_count, sizeof *b->latency_us);
    uv_timer_init(&b->loop, &b->tick);
    b->tick.data = b;
    for (size_t i = 0; i < b->node_count; i++)
        node_client(&b->nodes[i]);
    b->t0_ns = uv_hrtime();
    uv_timer_start(&b->tick, bench_tick, BENCH_TICK_MS, BENCH_TICK_MS);
    bench_pump(b);
    while (b->resolved < b->tx_count || b->samples_pending > 0)
        uv_run(&b->loop, UV_RUN_ONCE);
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

/* ---- report ---- */

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile P (0-100] of the SORTED COUNT values, in ms. */
static double percentile_ms(const uint32_t *sorted, size_t count, double p)
{
    if (count == 0)
        return 0;
    size_t rank = (size_t)ceil(p / 100.0 * (double)count);
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1] / 1000.0;
}

static double rusage_ms(const struct rusage *u)
{
    return (double)u->ru_utime.tv_sec * 1000 + u->ru_utime.tv_usec / 1000.0 +
           (double)u->ru_stime.tv_sec * 1000 + u->ru_stime.tv_usec / 1000.0;
}

/* CPU % of NODE over the window, or a negative number if not known. */
static double node_cpu_percent(const struct bench_node *node)
{
    const struct bench_sample *a = &node->samples[0], *z = &node->samples[1];
    if (!a->ok || !z->ok || z->uptime_ms <= a->uptime_ms || z->cpu_ms < a->cpu_ms)
        return -1;
    return 100.0 * (double)(z->cpu_ms - a->cpu_ms) / (double)(z->uptime_ms - a->uptime_ms);
}

static int bench_report(struct cli__ctx *ctx, struct bench *b)
{
    qsort(b->latency_us, b->latency_count, sizeof *b->latency_us, compare_u32);
    double window_s = b->window_open ? (double)(b->window_end_ns - b->window_start_ns) / 1e9 : 0.0;
    double tps = window_s > 0 ? (double)b->window_committed / window_s : 0.0;
    double p50 = percentile_ms(b->latency_us, b->latency_count, 50);
    double p99 = percentile_ms(b->latency_us, b->latency_count, 99);
    double max = percentile_ms(b->latency_us, b->latency_count, 100);
    double client_cpu = window_s > 0 ? (rusage_ms(&b->usage_end) - rusage_ms(&b->usage_start)) /
                                           (window_s * 1000) * 100
                                     : 0.0;
    uint64_t failed_total = b->bad_answers;
    for (int s = 0; s < RPC_STATUS_COUNT_; s++)
        failed_total += b->failed[s];
    EHR_ASSERT(b->committed + failed_total == b->tx_count); /* invariant 1 */
    double envelope_avg = (double)b->envelope_bytes_total / (double)b->tx_count;
    if (ctx->json) {
        json_t *failed = json_checked(json_object());
        for (int s = 0; s < RPC_STATUS_COUNT_; s++) {
            if (b->failed[s] > 0)
                json_object_set_new(failed, rpc_status_name(s),
                                    json_integer((json_int_t)b->failed[s]));
        }
        if (b->bad_answers > 0)
            json_object_set_new(failed, "BAD_ANSWER", json_integer((json_int_t)b->bad_answers));
        json_t *nodes = json_checked(json_array());
        for (size_t i = 0; i < b->node_count; i++) {
            const struct bench_node *n = &b->nodes[i];
            double cpu = node_cpu_percent(n);
            json_array_append_new(
                nodes,
                json_checked(json_pack("{s:s, s:s, s:I, s:I, s:o}", "address", n->address,
                                       "node_id", n->id_hex, "submissions", (json_int_t)n->sends,
                                       "reconnects", (json_int_t)n->reconnects, "cpu_percent",
                                       cpu >= 0 ? json_measured(cpu, 1) : json_null())));
        }
        /* Each figure rounded to what is measured: ms to the microsecond
         * (latency is taken in µs), rates and percentages to a tenth. */
        json_t *root = json_checked(json_pack(
            "{s:I, s:o, s:I, s:o, s:I, s:I, s:I, s:o, s:I, s:I, s:o, s:I, s:o, s:{s:o, s:o, "
            "s:o}, s:o, s:o}",
            "txs", (json_int_t)b->tx_count, "envelope_bytes_avg", json_measured(envelope_avg, 1),
            "inflight", (json_int_t)b->inflight_max, "rate",
            b->rate > 0 ? json_integer((json_int_t)b->rate) : json_null(), "warmup_ms",
            (json_int_t)(b->warmup_ns / 1000000), "submitted", (json_int_t)b->next_tx, "committed",
            (json_int_t)b->committed, "failed", failed, "failed_total", (json_int_t)failed_total,
            "retries", (json_int_t)b->retries, "window_s", json_measured(window_s, 6),
            "window_committed", (json_int_t)b->window_committed, "committed_tx_per_s",
            json_measured(tps, 1), "latency_ms", "p50", json_measured(p50, 3), "p99",
            json_measured(p99, 3), "max", json_measured(max, 3), "client_cpu_percent",
            json_measured(client_cpu, 1), "nodes", nodes));
        int exit_code = cli__json_print(root);
        if (exit_code != 0)
            return exit_code;
    } else {
        char line[LINE_BYTES];
        char rate[32] = "unlimited";
        if (b->rate > 0)
            snprintf(rate, sizeof rate, "%llu tx/s", (unsigned long long)b->rate);
        printf("bench: %zu node%s, %zu transactions of %.0f bytes, %zu in flight, rate %s, "
               "warm-up %.1f s\n",
               b->node_count, b->node_count == 1 ? "" : "s", b->tx_count, envelope_avg,
               b->inflight_max, rate, (double)b->warmup_ns / 1e9);
        snprintf(line, sizeof line, "%zu", b->next_tx);
        cli__print_field("submitted", line);
        snprintf(line, sizeof line, "%llu", (unsigned long long)b->committed);
        cli__print_field("committed", line);
        size_t n = (size_t)snprintf(line, sizeof line, "%llu", (unsigned long long)failed_total);
        for (int s = 0; s < RPC_STATUS_COUNT_ && n < sizeof line; s++) {
            if (b->failed[s] > 0)
                n += (size_t)snprintf(line + n, sizeof line - n, "  %s %llu", rpc_status_name(s),
                                      (unsigned long long)b->failed[s]);
        }
        if (b->bad_answers > 0 && n < sizeof line)
            snprintf(line + n, sizeof line - n, "  bad answers %llu",
                     (unsigned long long)b->bad_answers);
        cli__print_field("failed", line);
        snprintf(line, sizeof line, "%llu (UNAVAILABLE, sent again)",
                 (unsigned long long)b->retries);
        cli__print_field("retries", line);
        if (b->window_open) {
            snprintf(line, sizeof line, "%.3f s, %llu commits", window_s,
                     (unsigned long long)b->window_committed);
            cli__print_field("window", line);
            snprintf(line, sizeof line, "%.1f committed tx/s", tps);
            cli__print_field("throughput", line);
            snprintf(line, sizeof line, "p50 %.2f  p99 %.2f  max %.2f", p50, p99, max);
            cli__print_field("latency ms", line);
            snprintf(line, sizeof line, "%.1f %%", client_cpu);
            cli__print_field("client cpu", line);
        } else {
            cli__print_field("window", "none: every transaction was answered in the warm-up");
        }
        for (size_t i = 0; i < b->node_count; i++) {
            const struct bench_node *node = &b->nodes[i];
            double cpu = node_cpu_percent(node);
            if (cpu >= 0)
                snprintf(line, sizeof line, "%5.1f %%  %s  (%.16s...)", cpu, node->address,
                         node->id_hex);
            else
                snprintf(line, sizeof line, "unknown  %s  (no CPU sample)", node->address);
            cli__print_field("node cpu", line);
        }
    }
    if (b->committed != b->tx_count) {
        char why[96];
        snprintf(why, sizeof why, "%llu of %zu transactions did not commit",
                 (unsigned long long)(b->tx_count - b->committed), b->tx_count);
        return cli__fail(why, "bench");
    }
    return CLI_EXIT_OK;
}

/* ---- the command ---- */

struct bench_args {
    const char *addresses[BENCH_NODES_MAX];
    size_t address_count;
    uint64_t txs, inflight, rate, warmup_s, timeout_ms;
};

static int bench_parse(struct cli__ctx *ctx, int argc, char **argv, struct bench_args *a)
{
    static const struct option options[] = {{"node", required_argument, NULL, 'N'},
                                            {"txs", required_argument, NULL, 'n'},
                                            {"inflight", required_argument, NULL, 'k'},
                                            {"rate", required_argument, NULL, 'r'},
                                            {"warmup-s", required_argument, NULL, 'w'},
                                            {"timeout-ms", required_argument, NULL, 'T'},
                                            CLI_COMMON_OPTIONS};
    a->txs = BENCH_TXS_DEFAULT;
    a->inflight = BENCH_INFLIGHT_DEFAULT;
    a->timeout_ms = BENCH_TIMEOUT_MS_DEFAULT;
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
        case 'n':
            if (cli__parse_u64(optarg, BENCH_TXS_MAX, &a->txs) != 0 || a->txs == 0)
                return cli__usage_error(ctx, "--txs wants 1 to %d", BENCH_TXS_MAX);
            break;
        case 'k':
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
    if (a->address_count == 0) {
        struct cli__node_options o = {0};
        int exit_code = cli__node_options_finish(ctx, &o);
        if (exit_code != 0)
            return exit_code;
        a->addresses[a->address_count++] = o.address;
    }
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
                                      .timeout_ms = CLI_TIMEOUT_MS_DEFAULT};
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

static void bench_free(struct bench *b)
{
    for (size_t i = 0; i < b->tx_count && b->txs != NULL; i++)
        ehr_free(b->txs[i].request);
    ehr_free(b->txs);
    ehr_free(b->retry);
    ehr_free(b->retry_due_ns);
    ehr_free(b->latency_us);
    int rc = uv_loop_close(&b->loop);
    EHR_ASSERT(rc == 0);
    ehr_free(b);
}

int cli__cmd_bench(struct cli__ctx *ctx, int argc, char **argv)
{
    struct bench_args a = {0};
    int exit_code = bench_parse(ctx, argc, argv, &a);
    if (exit_code != 0)
        return exit_code;
    struct bench *b = ehr_calloc(1, sizeof *b);
    int rc = uv_loop_init(&b->loop);
    EHR_ASSERT(rc == 0);
    b->tx_count = a.txs;
    b->inflight_max = a.inflight;
    b->rate = a.rate;
    b->warmup_ns = a.warmup_s * 1000000000ull;
    b->timeout_ms = a.timeout_ms;
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1];
    exit_code = bench_survey(b, &a, chain_id);
    if (exit_code == 0) {
        /* Progress on a terminal: signing 60,000 takes seconds. */
        bench_prepare(b, chain_id, !ctx->json && isatty(STDERR_FILENO));
        bench_run(b);
        exit_code = bench_report(ctx, b);
    }
    bench_free(b);
    return exit_code;
}
