/*
 * bench_raft.c - what the consensus core itself costs: committed entries
 * per second through a 3-instance cluster in one thread, in-memory storage,
 * messages handed from one instance to the next directly (no copies, no
 * I/O), proposals in batches. The node's real costs (fsync, network,
 * encoding) come on top; this shows the core is not the bottleneck.
 *
 *   bench_raft [ENTRIES [BATCH [PAYLOAD_BYTES]]]   (defaults 4000000 4096 64)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft.h"

enum { NODES = 3, COMPACT_EVERY = 1 << 16 };

struct node {
    struct raft *r;
    struct raft_mem_storage *ms;
    uint64_t applied;
    uint64_t applied_normal;
    uint64_t snapshot_index;
};

static struct node nodes[NODES];

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_raft: %s: %s\n", what, ehr_errname(err));
    exit(1);
}

static void deliver(const struct raft_message *m)
{
    if (m->to < 1 || m->to > NODES)
        return;
    int err = raft_step(nodes[m->to - 1].r, m);
    if (err != 0)
        die("raft_step", err);
}

/* Run node i's ready protocol; messages go straight to their targets. */
static bool process(int i)
{
    struct node *n = &nodes[i];
    if (!raft_ready_pending(n->r))
        return false;
    struct raft_ready rd;
    int err = raft_ready_get(n->r, &rd);
    if (err != 0)
        die("raft_ready_get", err);
    /* The targets are other instances, not inside a batch: deliver now. */
    for (size_t k = 0; k < rd.message_count; k++)
        deliver(&rd.messages[k]);
    if ((err = raft_mem_storage_persist(n->ms, &rd)) != 0)
        die("persist", err);
    for (size_t k = 0; k < rd.message_after_persist_count; k++)
        deliver(&rd.messages_after_persist[k]);
    for (size_t k = 0; k < rd.committed_count; k++)
        n->applied_normal += rd.committed[k].type == RAFT_ENTRY_NORMAL;
    if (rd.committed_count > 0)
        n->applied = rd.committed[rd.committed_count - 1].index;
    if ((err = raft_ready_advance(n->r)) != 0)
        die("raft_ready_advance", err);
    if (n->applied >= n->snapshot_index + COMPACT_EVERY) {
        struct raft_snapshot_meta meta;
        if ((err = raft_snapshot_meta_applied(n->r, &meta)) != 0)
            die("snapshot meta", err);
        err = raft_mem_storage_snapshot(n->ms, &meta, (const uint8_t *)"s", 1, meta.index);
        if (err != 0)
            die("compact", err);
        n->snapshot_index = meta.index;
    }
    return true;
}

static void pump(void)
{
    bool moved = true;
    while (moved) {
        moved = false;
        for (int i = 0; i < NODES; i++)
            moved |= process(i);
    }
}

static uint64_t parse(const char *s, uint64_t dflt)
{
    if (s == NULL)
        return dflt;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0) {
        fprintf(stderr, "usage: bench_raft [ENTRIES [BATCH [PAYLOAD_BYTES]]]\n");
        exit(2);
    }
    return v;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    uint64_t total = parse(argc > 1 ? argv[1] : NULL, 4000000);
    uint64_t batch = parse(argc > 2 ? argv[2] : NULL, 4096);
    uint64_t payload = parse(argc > 3 ? argv[3] : NULL, 64);
    if (payload > RAFT_PROPOSAL_BYTES_MAX)
        die("payload", EHR_ETOOBIG);
    struct raft_config conf = {.voter_count = NODES};
    for (int i = 0; i < NODES; i++)
        conf.voters[i] = (raft_id)(i + 1);
    for (int i = 0; i < NODES; i++) {
        struct raft_options opt;
        raft_options_default(&opt);
        opt.id = (raft_id)(i + 1);
        opt.seed = (uint64_t)i * 7 + 1;
        nodes[i].ms = raft_mem_storage_create(true);
        uint8_t buf[RAFT_CONFIG_ENCODED_BYTES_MAX];
        struct raft_entry boot;
        if (raft_bootstrap_entry(&conf, buf, &boot) != 0 ||
            raft_mem_storage_append(nodes[i].ms, &boot, 1) != 0)
            die("bootstrap", EHR_EINVAL);
        struct raft_storage st;
        raft_mem_storage_interface(nodes[i].ms, &st);
        int err = raft_create(&nodes[i].r, &opt, &st);
        if (err != 0)
            die("raft_create", err);
    }
    /* elect node 1: only it ticks */
    struct raft_status st;
    for (int t = 0; t < 1000; t++) {
        raft_status_get(nodes[0].r, &st);
        if (st.role == RAFT_LEADER)
            break;
        raft_tick(nodes[0].r);
        pump();
    }
    if (st.role != RAFT_LEADER)
        die("election", EHR_ETIMEDOUT);

    uint8_t *data = calloc(1, payload);
    uint64_t proposed = 0, refused = 0;
    double start = now_seconds();
    while (nodes[0].applied_normal < total || nodes[1].applied_normal < total ||
           nodes[2].applied_normal < total) {
        for (uint64_t k = 0; k < batch && proposed < total; k++) {
            memcpy(data, &proposed, payload < 8 ? payload : 8);
            int err = raft_propose(nodes[0].r, data, (uint32_t)payload);
            if (err == EHR_EAGAIN) {
                refused++;
                break; /* back-pressure: let the followers catch up */
            }
            if (err != 0)
                die("raft_propose", err);
            proposed++;
        }
        pump();
        if (proposed == total && !raft_ready_pending(nodes[0].r)) {
            raft_tick(nodes[0].r); /* a heartbeat carries the last commit index */
            pump();
        }
    }
    double secs = now_seconds() - start;
    free(data);
    printf("bench_raft: %llu entries of %llu bytes, batches of %llu, 3 instances, in memory\n",
           (unsigned long long)total, (unsigned long long)payload, (unsigned long long)batch);
    printf("bench_raft: committed and applied on all 3 in %.3f s: %.0f entries/s, %.1f MB/s, "
           "%.0f ns per entry (%llu proposals deferred by back-pressure)\n",
           secs, (double)total / secs, (double)total * (double)payload / secs / 1e6,
           secs * 1e9 / (double)total, (unsigned long long)refused);
    for (int i = 0; i < NODES; i++) {
        raft_destroy(nodes[i].r);
        raft_mem_storage_destroy(nodes[i].ms);
    }
    return 0;
}
