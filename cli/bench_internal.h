/*
 * bench_internal.h - what the two halves of `ehrctl bench` share: the
 * transactions a run submits (cmd_bench.c runs them and reports) and the
 * workloads that make them (bench_load.c).
 *
 * A workload is valid under the consent contract's rules, so that every
 * transaction has one expected result, checked when it commits:
 *   setup     the patients enrolled by the members, then for each one record
 *             anchored by its custodian member and one consent granted by the
 *             patient to another member (lab results, for treatment);
 *   domain    a mix over the patients set up: record anchors, consent grants,
 *             and access requests by the consent's grantee, half for
 *             treatment (permitted by that consent) and half for research
 *             (denied: no consent is for research);
 *   anchors   record anchors only: the workload of the earlier benchmark,
 *             for patients enrolled by the setup.
 * Signing happens before a run's clock starts; every transaction is built
 * once, with its expected result.
 */
#ifndef EHR_CLI_BENCH_INTERNAL_H
#define EHR_CLI_BENCH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/resource.h>

#include "cli_internal.h"

enum {
    BENCH_MEMBERS_MAX = 16, /* --key files */
    BENCH_PATIENTS_MIN = 16,
    BENCH_PATIENTS_MAX = 4096,
    BENCH_TXS_PER_PATIENT = 100, /* patients = txs / this, within the bounds above */
    /* The share of each kind in the domain mix, in twentieths. */
    BENCH_MIX_ANCHORS = 8,
    BENCH_MIX_GRANTS = 2,
    BENCH_MIX_PERMITS = 5,
    BENCH_MIX_DENIES = 5,
    BENCH_MIX_TOTAL = 20,
};
_Static_assert(BENCH_MIX_ANCHORS + BENCH_MIX_GRANTS + BENCH_MIX_PERMITS + BENCH_MIX_DENIES ==
                   BENCH_MIX_TOTAL,
               "the mix adds up");

/* What a transaction is, for counting. */
enum bench_kind {
    BENCH_KIND_ENROLL,
    BENCH_KIND_ANCHOR,
    BENCH_KIND_GRANT,
    BENCH_KIND_PERMIT, /* an access request the rules must permit */
    BENCH_KIND_DENY,   /* one they must deny */
    BENCH_KIND_COUNT_,
};

struct bench_run;

/* One transaction of a run: its request, ready to send, and what must come back. */
struct bench_tx {
    struct bench_run *run;
    uint8_t *request; /* the encoded SubmitTransactionRequest (wait_for_commit) */
    uint32_t request_len;
    uint32_t attempts;
    struct rpc_client_call *call; /* the send in flight (its trailers, in tx_done) */
    uint64_t start_ns;            /* first send, or the scheduled start with --rate */
    uint32_t envelope_len;
    bool resolved;
    uint8_t kind; /* enum bench_kind; the expected result follows from it */
    uint8_t hash[EHR_HASH_BYTES];
};

/* The members and patients a workload is made of, all in memory. */
struct bench_cast {
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1];
    uint64_t expiry_ms; /* every transaction's */
    const ehr_identity *members[BENCH_MEMBERS_MAX];
    size_t member_count;
    ehr_identity *patients; /* ehr_calloc'd, wiped by bench_cast_free */
    size_t patient_count;
    /* Each patient's record anchored by the setup (the anchor's hash). */
    uint8_t (*records)[EHR_HASH_BYTES];
};

/* Fresh patients for TXS transactions per workload (BENCH_TXS_PER_PATIENT
 * each, within the bounds), and the transactions' expiry. */
void bench_cast_init(struct bench_cast *c, uint64_t txs, uint64_t expiry_ms);
void bench_cast_free(struct bench_cast *c);

/* The setup: one enrolment per patient (TXS: patient_count of them), then
 * one anchor and one grant per patient (2 * patient_count). The second
 * fills C's records. */
void bench_load_enrollments(struct bench_cast *c, struct bench_tx *txs);
void bench_load_setup(struct bench_cast *c, struct bench_tx *txs);

/* Transactions FIRST .. FIRST + COUNT - 1 of the domain mix, or of record
 * anchors only, into TXS (the whole workload's array), so that a caller may
 * build a long workload in parts. */
void bench_load_domain(const struct bench_cast *c, struct bench_tx *txs, size_t first,
                       size_t count);
void bench_load_anchors(const struct bench_cast *c, struct bench_tx *txs, size_t first,
                        size_t count);

/* Free the requests of COUNT transactions and the array. */
void bench_txs_free(struct bench_tx *txs, size_t count);

/* ---- the runner (cmd_bench.c) and its report (bench_report.c) ---- */

enum {
    BENCH_NODES_MAX = 16,
    BENCH_HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    BENCH_WRONG_BYTES = 512, /* the first transaction that went wrong, in words */
};

/* A transaction kind in words, singular and plural ("record anchor"). */
extern const char *const bench_kind_names[BENCH_KIND_COUNT_];
extern const char *const bench_kind_plurals[BENCH_KIND_COUNT_];

struct bench;

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

/* A node and its connection: long-lived, across runs. */
struct bench_node {
    struct bench *bench;
    size_t index;
    struct bench_sample_call sample_calls[2];
    char address[CLI_HOST_BYTES_MAX + 8];
    char host[CLI_HOST_BYTES_MAX + 1];
    uint16_t port;
    char id_hex[BENCH_HASH_HEX_BYTES];
    struct rpc_client *client;
    uint32_t reconnects;
};

/* One run over a set of transactions: a setup step, or a measured workload. */
struct bench_run {
    struct bench *bench;
    const char *name;
    bool measured; /* a window, latencies and CPU samples */
    struct bench_tx *txs;
    size_t tx_count;
    size_t next_tx;     /* the first never sent */
    size_t outstanding; /* sent and not resolved (in flight or waiting to retry) */
    size_t resolved;
    uint64_t envelope_bytes_total;

    /* Transactions waiting to be sent again, oldest first (due times grow). */
    struct bench_tx **retry;
    uint64_t *retry_due_ns;
    size_t retry_head, retry_count;

    uint64_t t0_ns;
    bool window_open, window_closed;
    uint64_t window_start_ns, window_end_ns;
    struct rusage usage_start, usage_end;

    uint64_t committed, window_committed, retries, bad_answers;
    uint64_t failed[RPC_STATUS_COUNT_];
    uint64_t sends[BENCH_NODES_MAX];
    uint32_t reconnects_before[BENCH_NODES_MAX];
    struct bench_sample samples[BENCH_NODES_MAX][2]; /* window start, window end */
    uint32_t *latency_us;                            /* of the commits in the window */
    size_t latency_count;

    /* Results: committed as expected (by kind), and what went wrong. */
    uint64_t kinds[BENCH_KIND_COUNT_];
    uint64_t as_expected[BENCH_KIND_COUNT_];
    uint64_t refused, unexpected, not_given;
    char first_wrong[BENCH_WRONG_BYTES]; /* "" until something goes wrong */
};

struct bench {
    uv_loop_t loop;
    uv_timer_t tick;
    struct bench_node nodes[BENCH_NODES_MAX];
    size_t node_count;
    size_t next_node;
    uint32_t clients_open;
    uint32_t samples_pending;
    size_t inflight_max;
    uint64_t rate; /* tx/s, 0: no cap */
    uint64_t timeout_ms;
    uint64_t warmup_ns;
    struct bench_run *run; /* the run in progress (invariant 4) */
    struct rpc_tls *tls;   /* --tls-ca: every connection speaks TLS (NULL: cleartext) */
};

/* What a measured run's figures come to. */
struct bench_figures {
    double window_s, tps, p50, p99, max, client_cpu, envelope_avg;
    uint64_t failed_total;
    double cpu_percent[BENCH_NODES_MAX]; /* < 0: not known */
    double cpu_ms[BENCH_NODES_MAX];
    double cpu_us_per_tx[BENCH_NODES_MAX]; /* < 0: not known (or no commits) */
};

/* Sort RUN's latencies and work out its figures (RUN measured and ended). */
void bench_figures_make(struct bench_run *run, size_t node_count, struct bench_figures *f);
/* RUN's report as a JSON object (the shape of one workload in --json). */
json_t *bench_run_json(const struct bench *b, const struct bench_run *run,
                       const struct bench_figures *f);
/* RUN's report for people, on stdout. */
void bench_run_print(const struct bench *b, const struct bench_run *run,
                     const struct bench_figures *f);
/* Say on stderr what went wrong in RUN, if anything. Returns CLI_EXIT_OK or CLI_EXIT_FAIL. */
int bench_run_verdict(const struct bench_run *run);
/* A measured figure V rounded to DECIMALS places, as a JSON number. */
json_t *bench_json_measured(double v, int decimals);

#endif /* EHR_CLI_BENCH_INTERNAL_H */
