/* raft_test_net.c - the hand-driven test cluster (see raft_test_net.h). */
#include "raft_test_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, int err)
{
    fprintf(stderr, "test net: %s: %s\n", what, ehr_errname(err));
    exit(2); /* a failure, not a crash: the deliberate-bug runs expect failures */
}

struct tn_node *tn_node(struct tn_net *net, raft_id id)
{
    if (id == 0 || id > net->count)
        die("no such node", EHR_EINVAL);
    return &net->nodes[id - 1];
}

static void start(struct tn_net *net, raft_id id)
{
    struct tn_node *n = tn_node(net, id);
    struct raft_storage st;
    raft_mem_storage_interface(n->ms, &st);
    n->opt.applied = n->applied;
    int err = raft_create(&n->r, &n->opt, &st);
    if (err != 0)
        die("raft_create", err);
    n->up = true;
}

void tn_init(struct tn_net *net, size_t count, size_t voters, tn_tweak tweak)
{
    memset(net, 0, sizeof *net);
    net->count = count;
    struct raft_config conf = {.voter_count = (uint32_t)voters};
    for (size_t i = 0; i < voters; i++)
        conf.voters[i] = i + 1;
    for (size_t i = 0; i < count; i++) {
        struct tn_node *n = &net->nodes[i];
        n->id = i + 1;
        n->ms = raft_mem_storage_create(i % 2 == 0);
        raft_options_default(&n->opt);
        n->opt.id = n->id;
        n->opt.seed = 1000 + i;
        if (tweak != NULL)
            tweak(&n->opt);
        if (i < voters) {
            uint8_t buf[RAFT_CONFIG_ENCODED_BYTES_MAX];
            struct raft_entry e;
            if (raft_bootstrap_entry(&conf, buf, &e) != 0 ||
                raft_mem_storage_append(n->ms, &e, 1) != 0)
                die("bootstrap", EHR_EINVAL);
        }
        start(net, n->id);
    }
}

void tn_free(struct tn_net *net)
{
    tn_drop_queue(net);
    ehr_free(net->queue);
    for (size_t i = 0; i < net->count; i++) {
        raft_destroy(net->nodes[i].r);
        raft_mem_storage_destroy(net->nodes[i].ms);
    }
    memset(net, 0, sizeof *net);
}

struct raft_status tn_status(struct tn_net *net, raft_id id)
{
    struct raft_status st;
    raft_status_get(tn_node(net, id)->r, &st);
    return st;
}

static void enqueue(struct tn_net *net, const struct raft_message *m)
{
    if (net->queue_count == net->queue_cap) {
        net->queue_cap = net->queue_cap == 0 ? 64 : net->queue_cap * 2;
        net->queue = ehr_realloc(net->queue, net->queue_cap * sizeof *net->queue);
    }
    net->queue[net->queue_count++] = rt_msg_clone(m);
}

bool tn_process(struct tn_net *net, raft_id id)
{
    struct tn_node *n = tn_node(net, id);
    if (!n->up || !raft_ready_pending(n->r))
        return false;
    struct raft_ready rd;
    int err = raft_ready_get(n->r, &rd);
    if (err != 0)
        die("raft_ready_get", err);
    for (size_t i = 0; i < rd.message_count; i++)
        enqueue(net, &rd.messages[i]);
    err = raft_mem_storage_persist(n->ms, &rd);
    if (err != 0)
        die("persist", err);
    if (rd.snapshot != NULL && rd.snapshot->install) {
        n->applied = rd.snapshot->meta.index;
        n->snapshots_installed++;
    }
    for (size_t i = 0; i < rd.message_after_persist_count; i++)
        enqueue(net, &rd.messages_after_persist[i]);
    for (size_t i = 0; i < rd.committed_count; i++) {
        const struct raft_entry *e = &rd.committed[i];
        if (e->index != n->applied + 1)
            die("applied out of order", EHR_EINVAL);
        n->applied = e->index;
        if (e->index < TN_APPLIED_MAX)
            n->applied_hash[e->index] = rt_entry_hash(e);
        if (e->type == RAFT_ENTRY_NORMAL)
            n->normal_applied++;
    }
    for (size_t i = 0; i < rd.read_count && n->read_count < TN_READS_MAX; i++)
        n->reads[n->read_count++] = rd.reads[i];
    err = raft_ready_advance(n->r);
    if (err != 0)
        die("raft_ready_advance", err);
    return true;
}

static bool deliver_one(struct tn_net *net, struct raft_message *m)
{
    bool dropped = m->to == 0 || m->to > net->count || m->from > TN_NODES_MAX ||
                   net->cut[m->from][m->to] || !tn_node(net, m->to)->up ||
                   (net->filter != NULL && net->filter(net->filter_ctx, m));
    if (!dropped) {
        struct raft *r = tn_node(net, m->to)->r;
        int err = net->step != NULL ? net->step(net->step_ctx, r, m) : raft_step(r, m);
        if (err != 0)
            die("raft_step", err);
        net->delivered++;
    }
    rt_msg_free(m);
    return !dropped;
}

void tn_settle(struct tn_net *net)
{
    for (int round = 0; round < 10000; round++) {
        bool moved = false;
        for (size_t i = 0; i < net->count; i++)
            while (tn_process(net, i + 1))
                moved = true;
        if (net->queue_count == 0 && !moved)
            return;
        /* deliver what is queued now, in order; replies queue behind */
        size_t n = net->queue_count;
        struct raft_message **batch = ehr_malloc((n > 0 ? n : 1) * sizeof *batch);
        if (n > 0) /* the queue is NULL until the first message */
            memcpy(batch, net->queue, n * sizeof *batch);
        net->queue_count = 0;
        for (size_t i = 0; i < n; i++)
            deliver_one(net, batch[i]);
        ehr_free(batch);
    }
    die("network did not settle", EHR_ETIMEDOUT);
}

void tn_tick(struct tn_net *net, raft_id id)
{
    struct tn_node *n = tn_node(net, id);
    if (!n->up)
        return;
    int err = raft_tick(n->r);
    if (err != 0)
        die("raft_tick", err);
}

void tn_tick_all(struct tn_net *net, int rounds)
{
    for (int k = 0; k < rounds; k++) {
        for (size_t i = 0; i < net->count; i++)
            tn_tick(net, i + 1);
        tn_settle(net);
    }
}

bool tn_elect(struct tn_net *net, raft_id id)
{
    for (int k = 0; k < 1000; k++) {
        tn_settle(net);
        if (tn_status(net, id).role == RAFT_LEADER)
            return true;
        tn_tick(net, id);
    }
    return false;
}

raft_id tn_leader(struct tn_net *net)
{
    raft_id best = 0;
    uint64_t best_term = 0;
    for (size_t i = 0; i < net->count; i++) {
        struct tn_node *n = &net->nodes[i];
        if (!n->up)
            continue;
        struct raft_status st;
        raft_status_get(n->r, &st);
        if (st.role == RAFT_LEADER && st.hard_state.term >= best_term) {
            best = n->id;
            best_term = st.hard_state.term;
        }
    }
    return best;
}

void tn_isolate(struct tn_net *net, raft_id id)
{
    for (raft_id other = 1; other <= TN_NODES_MAX; other++) {
        net->cut[id][other] = true;
        net->cut[other][id] = true;
    }
}

void tn_heal(struct tn_net *net)
{
    memset(net->cut, 0, sizeof net->cut);
}

void tn_crash(struct tn_net *net, raft_id id)
{
    struct tn_node *n = tn_node(net, id);
    raft_destroy(n->r);
    n->r = NULL;
    n->up = false;
}

void tn_restart(struct tn_net *net, raft_id id)
{
    struct tn_node *n = tn_node(net, id);
    if (n->up)
        tn_crash(net, id);
    start(net, id);
}

void tn_restore(struct tn_net *net, raft_id id, const struct raft_snapshot_meta *meta)
{
    struct tn_node *n = tn_node(net, id);
    struct raft_storage st;
    raft_mem_storage_interface(n->ms, &st);
    struct raft_hard_state old = {0};
    int err = st.hard_state(st.ctx, &old);
    if (err != 0)
        die("hard state", err);
    if (n->up)
        tn_crash(net, id);
    raft_mem_storage_destroy(n->ms);
    n->ms = raft_mem_storage_create(id % 2 == 1);
    uint8_t data[16] = {0};
    err = raft_mem_storage_stage_chunk(n->ms, 0, data, sizeof data);
    if (err == 0)
        err = raft_mem_storage_install_staged(n->ms, meta);
    if (err != 0)
        die("restore", err);
    uint64_t term = (old.term > meta->term ? old.term : meta->term) + 1;
    struct raft_hard_state hs = {.term = term, .commit = meta->index, .restore_term = term};
    raft_mem_storage_set_hard_state(n->ms, &hs);
    n->applied = meta->index;
    start(net, id);
}

int tn_propose(struct tn_net *net, raft_id id, int count, uint32_t size)
{
    uint8_t *buf = ehr_calloc(1, size > 0 ? size : 1);
    int err = 0;
    for (int i = 0; i < count && err == 0; i++) {
        if (size >= 4)
            memcpy(buf, &i, 4);
        err = raft_propose(tn_node(net, id)->r, buf, size);
    }
    ehr_free(buf);
    return err;
}

void tn_drop_queue(struct tn_net *net)
{
    for (size_t i = 0; i < net->queue_count; i++)
        rt_msg_free(net->queue[i]);
    net->queue_count = 0;
}
