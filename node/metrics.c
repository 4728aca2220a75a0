/*
 * metrics.c - the Prometheus text exposition (format 0.0.4) of a
 * node_metrics_snapshot: the writer of families, samples and histograms,
 * and the page itself (metrics.h). Pure functions of their arguments, but
 * for node_metrics_process_read, which reads /proc/self.
 *
 * Names follow Prometheus' conventions: the prefix ehr_, the unit last
 * and in base units (_seconds, _bytes), counters ending in _total. The
 * page's families and what to alert on are listed in node/README.md
 * ("Metrics") and docs/OPERATIONS.md ("Monitoring").
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "metrics.h"

const uint64_t node_metrics_bucket_bounds_us[NODE_METRICS_BUCKETS] = {
    500,    1000,   2500,   5000,    10000,   25000,   50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

void node_metrics_histogram_observe(struct node_metrics_histogram *h, uint64_t us)
{
    size_t i = 0;
    while (i < NODE_METRICS_BUCKETS && us > node_metrics_bucket_bounds_us[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum_us += us;
}

static const char *const refusal_names[NODE_METRICS_REFUSAL_COUNT_] = {
    "too_big",        "malformed",        "chain",      "expired",    "expiring", "signature",
    "duplicate_pool", "duplicate_ledger", "full_count", "full_bytes", "lookup",   "rules",
    "shutdown",       "rate_limited"};

const char *node_metrics_refusal_name(enum node_metrics_refusal reason)
{
    EHR_ASSERT((unsigned)reason < NODE_METRICS_REFUSAL_COUNT_);
    return refusal_names[reason];
}

/* ---- the writer ---- */

static void put(struct node_metrics_text *t, const char *s, size_t n)
{
    if (t->overflow)
        return;
    if (n > t->cap - t->len) {
        t->overflow = true;
        return;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

static void puts_(struct node_metrics_text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void putf(struct node_metrics_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(struct node_metrics_text *t, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    EHR_ASSERT(n >= 0);
    EHR_ASSERT((size_t)n < sizeof tmp); /* numbers and short constants only */
    put(t, tmp, (size_t)n);
}

/* S escaped: backslash and newline always, the double quote in label
 * values (the format's two escaping rules). */
static void put_escaped(struct node_metrics_text *t, const char *s, bool quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            puts_(t, "\\\\");
        else if (*s == '\n')
            puts_(t, "\\n");
        else if (quote && *s == '"')
            puts_(t, "\\\"");
        else
            put(t, s, 1);
    }
}

void node_metrics_text_family(struct node_metrics_text *t, const char *name, const char *type,
                              const char *help)
{
    puts_(t, "# HELP ");
    puts_(t, name);
    puts_(t, " ");
    put_escaped(t, help, false);
    puts_(t, "\n# TYPE ");
    puts_(t, name);
    puts_(t, " ");
    puts_(t, type);
    puts_(t, "\n");
}

static void put_labels(struct node_metrics_text *t, const struct node_metrics_label *labels,
                       size_t count, const char *le)
{
    if (count == 0 && le == NULL)
        return;
    puts_(t, "{");
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            puts_(t, ",");
        puts_(t, labels[i].name);
        puts_(t, "=\"");
        put_escaped(t, labels[i].value, true);
        puts_(t, "\"");
    }
    if (le != NULL) {
        if (count > 0)
            puts_(t, ",");
        puts_(t, "le=\"");
        puts_(t, le);
        puts_(t, "\"");
    }
    puts_(t, "}");
}

void node_metrics_text_u64(struct node_metrics_text *t, const char *name,
                           const struct node_metrics_label *labels, size_t label_count,
                           uint64_t value)
{
    puts_(t, name);
    put_labels(t, labels, label_count, NULL);
    putf(t, " %" PRIu64 "\n", value);
}

void node_metrics_text_double(struct node_metrics_text *t, const char *name,
                              const struct node_metrics_label *labels, size_t label_count,
                              double value)
{
    puts_(t, name);
    put_labels(t, labels, label_count, NULL);
    putf(t, " %.15g\n", value);
}

void node_metrics_text_histogram(struct node_metrics_text *t, const char *name,
                                 const struct node_metrics_label *labels, size_t label_count,
                                 const struct node_metrics_histogram *h)
{
    uint64_t cumulative = 0;
    char le[32];
    for (size_t i = 0; i <= NODE_METRICS_BUCKETS; i++) {
        cumulative += h->counts[i];
        if (i < NODE_METRICS_BUCKETS)
            snprintf(le, sizeof le, "%g", (double)node_metrics_bucket_bounds_us[i] / 1e6);
        else
            snprintf(le, sizeof le, "+Inf");
        puts_(t, name);
        puts_(t, "_bucket");
        put_labels(t, labels, label_count, le);
        putf(t, " %" PRIu64 "\n", cumulative);
    }
    /* The +Inf bucket is the count: the buckets partition the observations. */
    EHR_ASSERT(cumulative == h->count);
    puts_(t, name);
    puts_(t, "_sum");
    put_labels(t, labels, label_count, NULL);
    putf(t, " %.6f\n", (double)h->sum_us / 1e6);
    puts_(t, name);
    puts_(t, "_count");
    put_labels(t, labels, label_count, NULL);
    putf(t, " %" PRIu64 "\n", h->count);
}

/* ---- the page ---- */

static const char *const role_names[NODE_METRICS_ROLES] = {"follower", "pre_candidate", "candidate",
                                                           "leader"};

/* One family of one unlabelled sample. */
static void gauge(struct node_metrics_text *t, const char *name, const char *help, uint64_t v)
{
    node_metrics_text_family(t, name, "gauge", help);
    node_metrics_text_u64(t, name, NULL, 0, v);
}
static void counter(struct node_metrics_text *t, const char *name, const char *help, uint64_t v)
{
    node_metrics_text_family(t, name, "counter", help);
    node_metrics_text_u64(t, name, NULL, 0, v);
}
static void gauge_seconds(struct node_metrics_text *t, const char *name, const char *help, double v)
{
    node_metrics_text_family(t, name, "gauge", help);
    node_metrics_text_double(t, name, NULL, 0, v);
}

/* The families of the node itself, in page order. Each is written whole or
 * not at all (render_family keeps the length before it). */
static void render_node(struct node_metrics_text *t, const struct node_metrics_snapshot *s)
{
    node_metrics_text_family(t, "ehr_node_info", "gauge",
                             "Always 1: the chain this node serves and the release it runs.");
    struct node_metrics_label info[] = {{"chain", s->chain_id}, {"version", s->version}};
    node_metrics_text_u64(t, "ehr_node_info", info, EHR_ARRAY_COUNT(info), 1);
    gauge_seconds(t, "ehr_node_start_time_seconds", "Unix time the node started.",
                  (double)s->start_time_ms / 1e3);
    gauge(t, "ehr_health_serving",
          "1 when the health service answers SERVING (node/README.md, Health), else 0.",
          s->serving);
    node_metrics_text_family(t, "ehr_health_status", "gauge",
                             "1 for the reason the health service judges now (ok when SERVING), 0 "
                             "for the others.");
    for (int r = 0; r < NODE_METRICS_HEALTH_REASONS; r++) {
        struct node_metrics_label reason[] = {{"reason", s->health_reason_names[r]}};
        node_metrics_text_u64(t, "ehr_health_status", reason, 1, s->health_reason == r);
    }
}

static void render_consensus(struct node_metrics_text *t, const struct node_metrics_snapshot *s)
{
    gauge(t, "ehr_raft_term", "The current Raft term.", s->raft_term);
    gauge(t, "ehr_raft_restore_term",
          "0, or this node was restored from a backup and neither votes nor campaigns until it "
          "holds a committed entry of this term (it counts as lost meanwhile).",
          s->raft_restore_term);
    node_metrics_text_family(t, "ehr_raft_role", "gauge",
                             "1 for this node's Raft role, 0 for the others.");
    for (int r = 0; r < NODE_METRICS_ROLES; r++) {
        struct node_metrics_label l[] = {{"role", role_names[r]}};
        node_metrics_text_u64(t, "ehr_raft_role", l, 1, s->raft_role == r);
    }
    gauge(t, "ehr_raft_voter",
          "1 when this node votes in the Raft configuration it knows, 0 while it is a learner "
          "(a joining member catching up).",
          s->voter);
    gauge(t, "ehr_raft_has_leader",
          "1 when this node knows a leader (itself or the one it follows).", s->has_leader);
    node_metrics_text_family(t, "ehr_raft_leader", "gauge",
                             "1 for the member this node knows as leader, 0 for the others.");
    for (size_t i = 0; i < s->peer_count; i++) {
        struct node_metrics_label l[] = {{"member", s->peers[i].name}};
        node_metrics_text_u64(t, "ehr_raft_leader", l, 1, s->peers[i].leader);
    }
    gauge(t, "ehr_raft_commit_index", "The highest Raft log index this node knows committed.",
          s->commit_index);
    gauge(t, "ehr_raft_applied_index", "The highest Raft log index applied to the ledger.",
          s->applied_index);
    gauge(t, "ehr_raft_proposals_inflight",
          "Block proposals the leader has in flight (proposed, not applied; 0 on followers).",
          s->proposals_inflight);
    counter(t, "ehr_snapshot_sends_total",
            "Snapshot transfers this node started as leader, to a member behind its compacted "
            "log.",
            s->snapshot_sends_total);
    counter(t, "ehr_snapshot_installs_total",
            "Snapshots this node received from the leader and installed in place of its ledger.",
            s->snapshot_installs_total);
}

static void render_ledger(struct node_metrics_text *t, const struct node_metrics_snapshot *s)
{
    gauge(t, "ehr_block_height", "The height of the last block applied to the ledger.",
          s->block_height);
    gauge_seconds(t, "ehr_block_time_seconds",
                  "The last applied block's time (Unix seconds, its proposer's clock).",
                  (double)s->block_time_ms / 1e3);
    counter(t, "ehr_blocks_applied_total", "Blocks applied to the ledger since the node started.",
            s->blocks_applied_total);
    counter(t, "ehr_transactions_committed_total",
            "Transactions in the blocks applied since the node started (OK or refused by the "
            "rules).",
            s->transactions_applied_total);
    node_metrics_text_family(
        t, "ehr_block_commit_seconds", "histogram",
        "On the leader, from a block's proposal to its application on this node.");
    node_metrics_text_histogram(t, "ehr_block_commit_seconds", NULL, 0, &s->commit);
    node_metrics_text_family(t, "ehr_storage_sync_write_seconds", "histogram",
                             "Durable (fsync'd) LMDB writes: the Raft log's entries and hard "
                             "state, and each block appended.");
    struct node_metrics_label raft[] = {{"write", "raft_log"}};
    node_metrics_text_histogram(t, "ehr_storage_sync_write_seconds", raft, 1, &s->raft_log_write);
    struct node_metrics_label block[] = {{"write", "block"}};
    node_metrics_text_histogram(t, "ehr_storage_sync_write_seconds", block, 1, &s->block_write);
}

static void render_mempool(struct node_metrics_text *t, const struct node_metrics_snapshot *s)
{
    gauge(t, "ehr_mempool_transactions", "Transactions in the mempool (admitted, not committed).",
          s->mempool_tx_count);
    gauge(t, "ehr_mempool_bytes", "Bytes of the transactions in the mempool.", s->mempool_bytes);
    counter(t, "ehr_submissions_admitted_total",
            "Transactions this node admitted to its mempool (as leader).", s->admitted_total);
    node_metrics_text_family(t, "ehr_submissions_refused_total", "counter",
                             "Submissions this node refused, by reason.");
    for (int r = 0; r < NODE_METRICS_REFUSAL_COUNT_; r++) {
        struct node_metrics_label l[] = {{"reason", refusal_names[r]}};
        node_metrics_text_u64(t, "ehr_submissions_refused_total", l, 1, s->refused_total[r]);
    }
}

static void render_peers(struct node_metrics_text *t, const struct node_metrics_snapshot *s)
{
    node_metrics_text_family(t, "ehr_peer_up", "gauge",
                             "1 while the link to the member is up, 0 while it is down.");
    for (size_t i = 0; i < s->peer_count; i++) {
        if (s->peers[i].self)
            continue;
        struct node_metrics_label l[] = {{"peer", s->peers[i].name}};
        node_metrics_text_u64(t, "ehr_peer_up", l, 1, s->peers[i].up);
    }
    node_metrics_text_family(t, "ehr_peer_link_ups_total", "counter",
                             "Times the link to the member came up (a reconnect adds one).");
    for (size_t i = 0; i < s->peer_count; i++) {
        if (s->peers[i].self)
            continue;
        struct node_metrics_label l[] = {{"peer", s->peers[i].name}};
        node_metrics_text_u64(t, "ehr_peer_link_ups_total", l, 1, s->peers[i].link_ups);
    }
}

static void render_api(struct node_metrics_text *t, const struct node_metrics_snapshot *s)
{
    gauge(t, "ehr_rpc_connections", "gRPC connections open.", s->rpc_connections);
    gauge(t, "ehr_rpc_calls", "gRPC calls the node holds now (unary and streaming).", s->rpc_calls);
    node_metrics_text_family(t, "ehr_rpc_streams", "gauge",
                             "Streaming calls open, by kind (each bounded).");
    struct node_metrics_label blocks[] = {{"kind", "block_stream"}};
    node_metrics_text_u64(t, "ehr_rpc_streams", blocks, 1, s->block_streams);
    struct node_metrics_label watches[] = {{"kind", "health_watch"}};
    node_metrics_text_u64(t, "ehr_rpc_streams", watches, 1, s->health_watches);
    struct node_metrics_label reflection[] = {{"kind", "reflection_stream"}};
    node_metrics_text_u64(t, "ehr_rpc_streams", reflection, 1, s->reflection_streams);
    node_metrics_text_family(t, "ehr_rpc_streams_refused_total", "counter",
                             "Streaming calls refused RESOURCE_EXHAUSTED, by kind and by the "
                             "limit: on the node, per connection, per client address.");
    static const char *const kinds[NODE_METRICS_STREAM_KINDS] = {"block_stream", "health_watch",
                                                                 "reflection_stream"};
    static const char *const limits[NODE_METRICS_STREAM_LIMITS] = {"node", "connection", "address"};
    for (int k = 0; k < NODE_METRICS_STREAM_KINDS; k++)
        for (int l = 0; l < NODE_METRICS_STREAM_LIMITS; l++) {
            struct node_metrics_label ls[] = {{"kind", kinds[k]}, {"limit", limits[l]}};
            node_metrics_text_u64(t, "ehr_rpc_streams_refused_total", ls, 2,
                                  s->streams_refused_total[k][l]);
        }
    if (s->rpc_refusals_known) {
        node_metrics_text_family(t, "ehr_rpc_refused_total", "counter",
                                 "Connections, streams and calls the gRPC server refused or "
                                 "ended, by the limit (rpc/README.md, Limits).");
        for (int k = 0; k < NODE_METRICS_RPC_REFUSALS; k++) {
            struct node_metrics_label l[] = {{"limit", s->rpc_refusal_limit[k]}};
            node_metrics_text_u64(t, "ehr_rpc_refused_total", l, 1, s->rpc_refused_total[k]);
        }
    }
    node_metrics_text_family(t, "ehr_rpc_calls_total", "counter",
                             "gRPC calls ended, by method and by the status the client was told "
                             "(CANCELLED: it left first). Every method has its OK line, other "
                             "statuses appear once they occur; calls to a path no method has "
                             "count as method=\"unknown\".");
    for (uint32_t m = 0; m <= s->rpc_method_count; m++) {
        const char *method = m < s->rpc_method_count ? s->rpc_method_path[m] : "unknown";
        for (int st = 0; st < NODE_METRICS_RPC_STATUSES; st++) {
            uint64_t v = s->rpc_calls_total[m][st];
            if (st != 0 && v == 0)
                continue;
            struct node_metrics_label l[] = {{"method", method},
                                             {"status", s->rpc_status_names[st]}};
            node_metrics_text_u64(t, "ehr_rpc_calls_total", l, 2, v);
        }
    }
    counter(t, "ehr_reads_refused_total",
            "Signed reads refused (UNAUTHENTICATED or PERMISSION_DENIED).", s->reads_refused_total);
    counter(t, "ehr_blobs_replicated_total",
            "Record blobs this node stored from a peer (replication and repair).",
            s->blobs_replicated_total);
    counter(t, "ehr_blob_fetches_total",
            "Blob fetches started for records this node should hold and may lack.",
            s->blob_fetches_total);
    counter(t, "ehr_blob_hash_mismatches_total",
            "Blobs fetched from a peer that did not hash to their id, discarded.",
            s->blob_hash_mismatches_total);
    counter(t, "ehr_blob_pieces_refused_total",
            "Blob pieces and requests from peers refused (not asked for, wrong offset, size "
            "or length).",
            s->blob_pieces_refused_total);
    counter(t, "ehr_blob_pieces_served_total",
            "Blob pieces this node read and sent to peers that should hold them.",
            s->blob_pieces_served_total);
    counter(t, "ehr_blob_busy_sent_total",
            "Blob piece requests from peers answered busy (at the limit of pieces being served, "
            "in all or to that peer, or of that peer's requests a second).",
            s->blob_busy_sent_total);
    counter(t, "ehr_blob_busy_received_total",
            "Busy answers from peers to this node's blob piece requests (asked again later).",
            s->blob_busy_received_total);
    gauge_seconds(t, "ehr_loop_turn_max_seconds",
                  "The longest turn of the node's event loop in the last 10 to 20 s "
                  "(GetStatus loop_turn_max_us).",
                  (double)s->loop_turn_max_us / 1e6);
}

static void render_process(struct node_metrics_text *t, const struct node_metrics_process *p)
{
    node_metrics_text_family(t, "process_cpu_seconds_total", "counter",
                             "User and system CPU time spent, in seconds.");
    node_metrics_text_double(t, "process_cpu_seconds_total", NULL, 0, p->cpu_seconds);
    gauge(t, "process_resident_memory_bytes", "Resident memory size in bytes.", p->resident_bytes);
    gauge(t, "process_virtual_memory_bytes", "Virtual memory size in bytes.", p->virtual_bytes);
    gauge(t, "process_open_fds", "Number of open file descriptors.", p->open_fds);
    gauge(t, "process_max_fds", "Maximum number of open file descriptors.", p->max_fds);
}

int node_metrics_render(struct node_metrics_text *t, const struct node_metrics_snapshot *s,
                        const struct node_metrics_process *p)
{
    EHR_ASSERT(s->peer_count <= NODE_METRICS_PEERS_MAX);
    EHR_ASSERT(s->raft_role >= 0);
    for (int r = 0; r < NODE_METRICS_HEALTH_REASONS; r++)
        EHR_ASSERT(s->health_reason_names[r] != NULL);
    EHR_ASSERT(s->rpc_method_count <= NODE_METRICS_RPC_METHODS_MAX);
    for (int st = 0; st < NODE_METRICS_RPC_STATUSES; st++)
        EHR_ASSERT(s->rpc_status_names[st] != NULL);
    void (*const parts[])(struct node_metrics_text *, const struct node_metrics_snapshot *) = {
        render_node, render_consensus, render_ledger, render_mempool, render_peers, render_api};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(parts); i++) {
        size_t before = t->len;
        parts[i](t, s);
        if (t->overflow) {
            t->len = before; /* never half a family */
            return EHR_ETOOBIG;
        }
    }
    if (p != NULL && p->known) {
        size_t before = t->len;
        render_process(t, p);
        if (t->overflow) {
            t->len = before;
            return EHR_ETOOBIG;
        }
    }
    return 0;
}

/* ---- the process ---- */

void node_metrics_process_read(struct node_metrics_process *p)
{
    memset(p, 0, sizeof *p);
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return;
    char line[1024];
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    /* Fields after the command, which may hold spaces and parentheses:
     * start after its last ')'. utime and stime are fields 14 and 15,
     * vsize 23, rss 24 (pages); after ')' comes field 3. */
    char *rp = ok ? strrchr(line, ')') : NULL;
    if (rp == NULL || ticks <= 0 || page <= 0)
        return;
    unsigned long utime = 0, stime = 0, vsize = 0;
    long rss = 0;
    int n = sscanf(rp + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
                   "%*u %lu %ld",
                   &utime, &stime, &vsize, &rss);
    if (n != 4)
        return;
    p->cpu_seconds = (double)(utime + stime) / (double)ticks;
    p->virtual_bytes = vsize;
    p->resident_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    uint64_t fds = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            fds++;
    closedir(d);
    p->open_fds = fds > 0 ? fds - 1 : 0; /* less the directory's own descriptor */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        p->max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    p->known = true;
}
