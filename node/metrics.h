/*
 * metrics.h - the node's Prometheus endpoint: what an operator scrapes and
 * alerts on (node/README.md, "Metrics"; docs/OPERATIONS.md, "Monitoring").
 *
 * Three parts, each usable alone:
 *
 *   1. node_metrics_snapshot: every value the endpoint shows, in one plain
 *      struct of fixed size (its only pointers are to static strings, so
 *      a memcpy is a whole copy). The node's loop fills its own
 *      copy (counters and histograms as events happen, gauges once per
 *      tick) and publishes it; nothing else ever writes one.
 *   2. The exposition: node_metrics_text_* write Prometheus text format
 *      0.0.4 (HELP and TYPE lines, escaped label values, cumulative
 *      histogram buckets ending in +Inf, _sum and _count) into a bounded
 *      buffer; node_metrics_render writes a whole snapshot. Pure functions.
 *   3. node_metrics_server: an HTTP server (libmicrohttpd) answering
 *      GET /metrics from its own thread.
 *
 * Threads. The node's state lives on one libuv loop thread and is not
 * thread-safe. The HTTP thread never sees it: the loop hands a finished
 * snapshot to node_metrics_server_publish, which copies it under the
 * server's mutex (once per tick, about 20 KiB); a scrape copies the published
 * snapshot under the same mutex and renders its copy after unlocking. The
 * mutex guards nothing else, and neither side does anything else while
 * holding it, so the loop never waits on a scraper for more than one copy.
 * Process-wide figures (CPU, memory, open files) come from /proc/self on
 * the HTTP thread itself.
 *
 * Not here: where the values come from (metrics_node.c reads the node).
 */
#ifndef EHR_NODE_METRICS_H
#define EHR_NODE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

enum {
    /* Members whose link is shown (the consensus core's bound on members). */
    NODE_METRICS_PEERS_MAX = 16,
    /* A member's name as shown (the ledger's EHR_MEMBER_NAME_BYTES_MAX). */
    NODE_METRICS_NAME_BYTES_MAX = 128,
    /* Histogram buckets with an upper bound (+Inf comes on top). */
    NODE_METRICS_BUCKETS = 14,
    /* The rendered page: a full snapshot (16 members with the longest
     * names) takes about 16 KiB; a page that would pass this is cut at the
     * last whole family (node_metrics_render says EHR_ETOOBIG). */
    NODE_METRICS_TEXT_BYTES_MAX = 256 * 1024,
    /* The HTTP server's bounds: connections at once, from one address,
     * the seconds a connection may stay idle, and the memory one
     * connection may use for its request (headers included; a request
     * over it is refused by libmicrohttpd). */
    NODE_METRICS_CONNECTIONS_MAX = 16,
    NODE_METRICS_CONNECTIONS_PER_ADDRESS_MAX = 4,
    NODE_METRICS_CONNECTION_TIMEOUT_S = 10,
    NODE_METRICS_CONNECTION_MEMORY_BYTES = 32 * 1024,
};

_Static_assert(NODE_METRICS_CONNECTIONS_PER_ADDRESS_MAX < NODE_METRICS_CONNECTIONS_MAX,
               "one address cannot take every metrics connection");

/* The buckets' upper bounds in microseconds, ascending (+Inf not included):
 * 0.5 ms to 10 s, for latencies from an fsync on a fast disk to a commit
 * that waited an election out. */
extern const uint64_t node_metrics_bucket_bounds_us[NODE_METRICS_BUCKETS];

/* A latency histogram. COUNTS[i] holds the observations that fell in
 * bucket i alone (not cumulative; the renderer sums them), COUNTS[last]
 * those above every bound. */
struct node_metrics_histogram {
    uint64_t counts[NODE_METRICS_BUCKETS + 1];
    uint64_t count;
    uint64_t sum_us;
};

/* Count one observation of US microseconds in H. */
void node_metrics_histogram_observe(struct node_metrics_histogram *h, uint64_t us);

/* Why a submission was not admitted, as the label reason="..." shows it:
 * the mempool's verdicts (mempool_verdict_name), then the node's own. */
enum node_metrics_refusal {
    NODE_METRICS_REFUSED_TOO_BIG,
    NODE_METRICS_REFUSED_MALFORMED,
    NODE_METRICS_REFUSED_CHAIN,
    NODE_METRICS_REFUSED_EXPIRED,
    NODE_METRICS_REFUSED_EXPIRING,
    NODE_METRICS_REFUSED_SIGNATURE,
    NODE_METRICS_REFUSED_DUPLICATE_POOL,
    NODE_METRICS_REFUSED_DUPLICATE_LEDGER,
    NODE_METRICS_REFUSED_FULL_COUNT,
    NODE_METRICS_REFUSED_FULL_BYTES,
    NODE_METRICS_REFUSED_LOOKUP,
    NODE_METRICS_REFUSED_RULES,        /* the consent contract's rules refused it */
    NODE_METRICS_REFUSED_SHUTDOWN,     /* the node was stopping */
    NODE_METRICS_REFUSED_RATE_LIMITED, /* over its address's submissions a second */
    NODE_METRICS_REFUSAL_COUNT_,
};
/* The label value of REASON ("signature", "rate_limited", ...). */
const char *node_metrics_refusal_name(enum node_metrics_refusal reason);

/* The RPC server's refusals by the limit that refused (rpc.h). */
enum { NODE_METRICS_RPC_REFUSALS = 13 };

/* gRPC calls by method and status: the methods a server may register
 * (rpc.h's RPC_METHODS_MAX), the length of a method's path
 * (RPC_METHOD_PATH_BYTES_MAX), and the gRPC status codes. */
enum {
    NODE_METRICS_RPC_METHODS_MAX = 64,
    NODE_METRICS_RPC_METHOD_PATH_BYTES_MAX = 128,
    NODE_METRICS_RPC_STATUSES = 17,
};

/* The node's streaming calls (block streams, health watches) and the
 * limits on them: on the node, per connection, per address. */
enum { NODE_METRICS_STREAM_KINDS = 3, NODE_METRICS_STREAM_LIMITS = 3 };

/* Roles as ehr_raft_role shows them (the consensus core's enum raft_role). */
enum { NODE_METRICS_ROLES = 4 };

/* The health service's reasons (ok, diverged, stopping, no-leader,
 * catching-up: node_internal.h's enum node__health_reason). */
enum { NODE_METRICS_HEALTH_REASONS = 5 };

struct node_metrics_peer {
    char name[NODE_METRICS_NAME_BYTES_MAX + 1];
    bool self;
    bool leader;       /* this member is the leader this node follows */
    bool up;           /* the link to it is up (never for self) */
    uint64_t link_ups; /* times the link came up since the node started */
};

struct node_metrics_snapshot {
    /* Who this is. */
    char chain_id[72];
    char version[64];
    uint64_t start_time_ms; /* Unix time the node started */
    /* Consensus. */
    uint64_t raft_term;
    uint64_t raft_restore_term; /* 0, or restored and not caught up (I14) */
    int raft_role;              /* enum raft_role: 0..NODE_METRICS_ROLES-1 */
    bool has_leader;
    bool voter; /* in the configuration it knows; false while a learner */
    uint64_t commit_index;
    uint64_t applied_index;
    uint32_t proposals_inflight;
    /* Ledger. */
    uint64_t block_height;
    uint64_t block_time_ms; /* the tip's block time (the proposer's clock) */
    uint64_t blocks_applied_total;
    uint64_t transactions_applied_total;
    /* Mempool and admission. */
    uint64_t mempool_tx_count;
    uint64_t mempool_bytes;
    uint64_t admitted_total;
    uint64_t refused_total[NODE_METRICS_REFUSAL_COUNT_];
    /* Latencies. */
    struct node_metrics_histogram commit;         /* a block, proposed to applied (leader) */
    struct node_metrics_histogram raft_log_write; /* entries and hard state, fsync'd */
    struct node_metrics_histogram block_write;    /* a block appended, fsync'd */
    /* Peers (PEER_COUNT of them, this node among them). */
    size_t peer_count;
    struct node_metrics_peer peers[NODE_METRICS_PEERS_MAX];
    /* The API. */
    uint64_t rpc_connections;
    uint64_t rpc_calls;
    uint64_t block_streams;
    uint64_t health_watches;
    uint64_t reflection_streams;
    /* [kind: block streams, health watches, reflection streams]
     * [limit: node, connection, address] */
    uint64_t streams_refused_total[NODE_METRICS_STREAM_KINDS][NODE_METRICS_STREAM_LIMITS];
    bool rpc_refusals_known; /* the server reports its refusals */
    uint64_t rpc_refused_total[NODE_METRICS_RPC_REFUSALS];
    const char *rpc_refusal_limit[NODE_METRICS_RPC_REFUSALS]; /* static strings */
    /* Calls ended, by method and status: RPC_METHOD_COUNT registered
     * methods, their paths in RPC_METHOD_PATH, and in RPC_CALLS_TOTAL one
     * row per method, then one (index RPC_METHOD_COUNT) for the calls to a
     * path no method has, shown as method="unknown". RPC_STATUS_NAMES
     * are static strings ("OK", "NOT_FOUND", ...). */
    uint32_t rpc_method_count;
    char rpc_method_path[NODE_METRICS_RPC_METHODS_MAX][NODE_METRICS_RPC_METHOD_PATH_BYTES_MAX + 1];
    uint64_t rpc_calls_total[NODE_METRICS_RPC_METHODS_MAX + 1][NODE_METRICS_RPC_STATUSES];
    const char *rpc_status_names[NODE_METRICS_RPC_STATUSES];
    uint64_t reads_refused_total;
    uint64_t loop_turn_max_us;
    /* Blob replication (replication.c). */
    uint64_t blobs_replicated_total;
    uint64_t blob_fetches_total;
    uint64_t blob_hash_mismatches_total;
    uint64_t blob_pieces_refused_total;
    uint64_t blob_pieces_served_total;
    uint64_t blob_busy_sent_total;
    uint64_t blob_busy_received_total;
    /* Snapshots: transfers this node started as leader, and snapshots it
     * received and installed in place of its ledger. */
    uint64_t snapshot_sends_total;
    uint64_t snapshot_installs_total;
    /* Health: 1 SERVING, 0 NOT_SERVING; and why: HEALTH_REASON indexes
     * HEALTH_REASON_NAMES (static strings, as health.c names them). */
    bool serving;
    int health_reason;
    const char *health_reason_names[NODE_METRICS_HEALTH_REASONS];
};

/* Process-wide figures, read from /proc/self (node_metrics_process_read). */
struct node_metrics_process {
    bool known;
    double cpu_seconds;
    uint64_t resident_bytes;
    uint64_t virtual_bytes;
    uint64_t open_fds;
    uint64_t max_fds;
};
/* Fill P from /proc/self; P->known is false where it cannot be read. */
void node_metrics_process_read(struct node_metrics_process *p);

/* ---- The text format ---- */

/* A buffer of at most CAP bytes being written. Once a write would pass
 * CAP, nothing more is written and OVERFLOW is set. */
struct node_metrics_text {
    char *buf;
    size_t len;
    size_t cap;
    bool overflow;
};

struct node_metrics_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*: the caller's constant */
    const char *value; /* any UTF-8: escaped here */
};

/* The HELP and TYPE lines of family NAME (TYPE: "counter", "gauge",
 * "histogram"). HELP's backslashes and newlines are escaped. */
void node_metrics_text_family(struct node_metrics_text *t, const char *name, const char *type,
                              const char *help);
/* One sample NAME{LABELS} VALUE (integer or floating point). */
void node_metrics_text_u64(struct node_metrics_text *t, const char *name,
                           const struct node_metrics_label *labels, size_t label_count,
                           uint64_t value);
void node_metrics_text_double(struct node_metrics_text *t, const char *name,
                              const struct node_metrics_label *labels, size_t label_count,
                              double value);
/* The samples of histogram H (buckets cumulative, le in seconds, +Inf,
 * NAME_sum in seconds, NAME_count), each with LABELS and then le. */
void node_metrics_text_histogram(struct node_metrics_text *t, const char *name,
                                 const struct node_metrics_label *labels, size_t label_count,
                                 const struct node_metrics_histogram *h);

/*
 * Render S (and P, when P->known) into T: every family the endpoint shows,
 * in a fixed order. Returns 0, or EHR_ETOOBIG when T's capacity was
 * reached (T then ends at the last family that fitted whole).
 */
int node_metrics_render(struct node_metrics_text *t, const struct node_metrics_snapshot *s,
                        const struct node_metrics_process *p);

/* ---- The HTTP server ---- */

struct node_metrics_server;

/*
 * Listen on ADDRESS, an IP literal and a port as node_config_listen_resolve
 * writes them ("127.0.0.1:7002", "[::1]:7002"; port 0: the kernel picks
 * one, node_metrics_server_port says which), and serve GET and HEAD
 * /metrics from libmicrohttpd's own thread, within the NODE_METRICS_*
 * bounds. Until the first publish a scrape is answered 503. Returns 0 and
 * *OUT (the caller owns it: stop it with node_metrics_server_stop), or
 * -errno / EHR_EINVAL with why in DIAG.
 */
int node_metrics_server_start(const char *address, struct node_metrics_server **out,
                              ehr_diag *diag);
uint16_t node_metrics_server_port(const struct node_metrics_server *s);
/* Copy S for the scrapes to come (any thread but the HTTP one; the loop). */
void node_metrics_server_publish(struct node_metrics_server *s,
                                 const struct node_metrics_snapshot *snap);
/* Stop serving, join the HTTP thread, free S. NULL is fine. */
void node_metrics_server_stop(struct node_metrics_server *s);

#endif /* EHR_NODE_METRICS_H */
