/*
 * metrics_node.c - where the metrics endpoint's values come from: the
 * node's loop keeps its own node_metrics_snapshot (node_internal.h,
 * "struct node__metrics"), counts events into it as they happen (the
 * hooks below, a line each in node.c and apply.c), fills in the gauges
 * once per tick and publishes the whole to the HTTP server, which copies
 * it under its mutex (metrics.h, "Threads"). Everything here runs on the
 * loop thread; nothing here is read by another thread but the published
 * copy.
 *
 * Not here: the HTTP server (metrics_http.c), the text (metrics.c).
 */
#include <inttypes.h>
#include <string.h>
#include <sys/time.h>

#include "node_internal.h"

_Static_assert((int)NODE_METRICS_PEERS_MAX >= (int)NODE_MEMBERS_MAX, "every member has its line");
_Static_assert((int)NODE_METRICS_NAME_BYTES_MAX >= (int)EHR_MEMBER_NAME_BYTES_MAX,
               "names shown whole");
_Static_assert((int)NODE_METRICS_RPC_REFUSALS == (int)RPC_SERVER_REFUSAL_KINDS,
               "every RPC refusal");
_Static_assert((int)NODE_METRICS_ROLES == (int)RAFT_LEADER + 1, "every Raft role");
_Static_assert((int)NODE_METRICS_RPC_METHODS_MAX == (int)RPC_METHODS_MAX, "every method");
_Static_assert((int)NODE_METRICS_RPC_METHOD_PATH_BYTES_MAX == (int)RPC_METHOD_PATH_BYTES_MAX,
               "paths shown whole");
_Static_assert((int)NODE_METRICS_RPC_STATUSES == (int)RPC_STATUS_COUNT_, "every status");
_Static_assert((int)NODE_METRICS_STREAM_LIMITS == (int)NODE_STREAM_LIMIT_COUNT_,
               "every stream limit");
_Static_assert((int)NODE_METRICS_HEALTH_REASONS == (int)NODE_HEALTH_CATCHING_UP + 1,
               "every health reason");
/* The mempool's refusals come first, in its order, one less (no ADMITTED). */
_Static_assert((int)NODE_METRICS_REFUSED_TOO_BIG == (int)MEMPOOL_REJECT_TOO_BIG - 1,
               "mempool order");
_Static_assert((int)NODE_METRICS_REFUSED_SIGNATURE == (int)MEMPOOL_REJECT_SIGNATURE - 1,
               "mempool order");
_Static_assert((int)NODE_METRICS_REFUSED_LOOKUP == (int)MEMPOOL_REJECT_LOOKUP - 1, "mempool order");
_Static_assert((int)NODE_METRICS_REFUSED_LOOKUP + 2 == (int)MEMPOOL_VERDICT_COUNT_,
               "every verdict");

static uint64_t unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

int node__metrics_start(struct node *n, ehr_diag *diag)
{
    struct node_metrics_snapshot *v = &n->metrics.values;
    snprintf(v->chain_id, sizeof v->chain_id, "%s", n->chain.chain_id);
    snprintf(v->version, sizeof v->version, "%s", ehr_version());
    v->start_time_ms = unix_ms();
    for (int r = 0; r < NODE_METRICS_HEALTH_REASONS; r++)
        v->health_reason_names[r] = node__health_reason_name((enum node__health_reason)r);
    v->health_reason = NODE_HEALTH_NO_LEADER; /* until the first tick judges */
    for (int st = 0; st < NODE_METRICS_RPC_STATUSES; st++)
        v->rpc_status_names[st] = rpc_status_name(st);
    if (n->cfg.metrics_listen == NULL)
        return 0;
    char listen[NODE_CONFIG_ADDRESS_BYTES_MAX + 1];
    ehr_diag why;
    int rc = node_config_listen_resolve(n->cfg.metrics_listen, listen, sizeof listen, &why);
    if (rc == 0)
        rc = node_metrics_server_start(listen, &n->metrics.server, &why);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot serve metrics on %s: %s", n->cfg.metrics_listen,
                             why.msg);
    ehr_log(EHR_LOG_INFO, "metrics serving", "metrics_listen=%s port=%u", n->cfg.metrics_listen,
            node_metrics_server_port(n->metrics.server));
    return 0;
}

void node__metrics_stop(struct node *n)
{
    node_metrics_server_stop(n->metrics.server);
    n->metrics.server = NULL;
}

void node__metrics_publish(struct node *n)
{
    if (n->metrics.server == NULL || n->stopping)
        return; /* stopping: the RPC server is closing */
    struct node_metrics_snapshot *v = &n->metrics.values;
    v->raft_term = n->cons.term;
    EHR_ASSERT((int)n->cons.role >= 0);
    EHR_ASSERT((int)n->cons.role < NODE_METRICS_ROLES);
    v->raft_role = (int)n->cons.role;
    v->has_leader = n->cons.leader != 0;
    struct raft_status rs;
    raft_status_get(n->cons.raft, &rs);
    v->voter = raft_config_is_voter(&rs.config, rs.id);
    v->raft_restore_term = rs.hard_state.restore_term;
    v->commit_index = n->cons.commit_index;
    v->applied_index = n->cons.applied_index;
    v->proposals_inflight = n->cons.role == RAFT_LEADER ? n->prop.inflight : 0;
    v->block_height = n->tip.height;
    v->block_time_ms = n->tip.time_ms;
    v->mempool_tx_count = mempool_count(&n->pool);
    v->mempool_bytes = mempool_bytes(&n->pool);
    v->refused_total[NODE_METRICS_REFUSED_RATE_LIMITED] = n->submit_limit.refused_count;
    EHR_ASSERT(n->peers.count <= NODE_METRICS_PEERS_MAX);
    v->peer_count = n->peers.count;
    for (size_t i = 0; i < n->peers.count; i++) {
        const struct node_member *m = &n->peers.members[i];
        struct node_metrics_peer *p = &v->peers[i];
        snprintf(p->name, sizeof p->name, "%s", m->name);
        p->self = m->self;
        p->leader = n->cons.leader != 0 && m->id == n->cons.leader;
        p->up = !m->self && m->link_up;
        p->link_ups = m->link_ups;
    }
    v->rpc_connections = rpc_server_connection_count(n->rpc);
    v->rpc_calls = rpc_server_call_count(n->rpc);
    v->block_streams = n->waits.streams.count;
    v->health_watches = n->health.watches.count;
    v->reflection_streams = n->reflection.streams.count;
    _Static_assert(NODE_METRICS_STREAM_KINDS == 3,
                   "block streams, health watches, reflection streams");
    memcpy(v->streams_refused_total[0], n->waits.streams.refused_total,
           sizeof v->streams_refused_total[0]);
    memcpy(v->streams_refused_total[1], n->health.watches.refused_total,
           sizeof v->streams_refused_total[1]);
    memcpy(v->streams_refused_total[2], n->reflection.streams.refused_total,
           sizeof v->streams_refused_total[2]);
    v->rpc_refusals_known = true;
    for (size_t k = 0; k < NODE_METRICS_RPC_REFUSALS; k++)
        v->rpc_refused_total[k] = rpc_server_refused_count(n->rpc, k, &v->rpc_refusal_limit[k]);
    /* Methods are registered before the server listens: their paths are
     * copied once. */
    uint32_t methods = rpc_server_method_count(n->rpc);
    EHR_ASSERT(methods <= NODE_METRICS_RPC_METHODS_MAX);
    for (uint32_t m = 0; m <= methods; m++) {
        const char *path = NULL;
        for (int st = 0; st < NODE_METRICS_RPC_STATUSES; st++)
            v->rpc_calls_total[m][st] =
                rpc_server_calls_ended_count(n->rpc, m, (enum rpc_status)st, &path);
        if (m < methods && v->rpc_method_count != methods)
            snprintf(v->rpc_method_path[m], sizeof v->rpc_method_path[m], "%s", path);
    }
    v->rpc_method_count = methods;
    struct raft_stats stats;
    raft_stats_get(n->cons.raft, &stats);
    v->snapshot_sends_total = stats.snapshots_sent;
    v->reads_refused_total = n->reads.refused_count;
    v->blobs_replicated_total = n->replication.replicated_count;
    v->blob_fetches_total = n->replication.repair_fetch_count;
    v->blob_hash_mismatches_total = n->replication.hash_mismatch_count;
    v->blob_pieces_refused_total = n->replication.refused_chunk_count;
    v->blob_pieces_served_total = n->replication.served_count;
    v->blob_busy_sent_total = n->replication.busy_sent_count;
    v->blob_busy_received_total = n->replication.busy_received_count;
    v->loop_turn_max_us = node__loop_turn_max_us(n);
    v->serving = n->health.judged && n->health.reason == NODE_HEALTH_OK;
    if (n->health.judged)
        v->health_reason = (int)n->health.reason;
    node_metrics_server_publish(n->metrics.server, v);
}

void node__metrics_admission(struct node *n, int rc, const mempool_admit_result *result)
{
    struct node_metrics_snapshot *v = &n->metrics.values;
    if (rc == 0) {
        v->admitted_total++;
        return;
    }
    enum node_metrics_refusal reason;
    if (result->verdict != MEMPOOL_ADMITTED)
        /* The mempool's verdicts, in its order (the static assert above). */
        reason = (enum node_metrics_refusal)(result->verdict - 1);
    else if (rc == EHR_ECLOSED)
        reason = NODE_METRICS_REFUSED_SHUTDOWN;
    else
        reason = NODE_METRICS_REFUSED_RULES;
    EHR_ASSERT((unsigned)reason < NODE_METRICS_REFUSAL_COUNT_);
    v->refused_total[reason]++;
}

void node__metrics_proposed(struct node *n, uint64_t term, uint64_t index)
{
    EHR_ASSERT(index != 0);
    struct node__metrics *m = &n->metrics;
    /* A free slot, else the oldest (a proposal never applied here: this
     * node lost leadership, or the entry was overwritten). */
    size_t slot = 0;
    for (size_t i = 0; i < NODE_METRICS_PROPOSALS_TIMED; i++) {
        if (m->proposed[i].index == 0) {
            slot = i;
            break;
        }
        if (m->proposed[i].index < m->proposed[slot].index)
            slot = i;
    }
    m->proposed[slot].index = index;
    m->proposed[slot].term = term;
    m->proposed[slot].at_ns = uv_hrtime();
}

void node__metrics_block_applied(struct node *n, uint64_t term, uint64_t index, uint32_t tx_count)
{
    struct node__metrics *m = &n->metrics;
    m->values.blocks_applied_total++;
    m->values.transactions_applied_total += tx_count;
    for (size_t i = 0; i < NODE_METRICS_PROPOSALS_TIMED; i++) {
        if (m->proposed[i].index != index)
            continue;
        /* The entry at INDEX is ours only if its term is the one we
         * proposed in (another leader may have overwritten it). */
        if (m->proposed[i].term == term) {
            uint64_t now = uv_hrtime();
            uint64_t at = m->proposed[i].at_ns;
            node_metrics_histogram_observe(&m->values.commit, now > at ? (now - at) / 1000 : 0);
        }
        m->proposed[i].index = 0;
    }
}

void node__metrics_snapshot_installed(struct node *n)
{
    n->metrics.values.snapshot_installs_total++;
}

void node__metrics_sync_write(struct node *n, bool block, uint64_t ns)
{
    struct node_metrics_snapshot *v = &n->metrics.values;
    node_metrics_histogram_observe(block ? &v->block_write : &v->raft_log_write, ns / 1000);
}
