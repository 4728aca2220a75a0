/*
 * raft_test_net.h - a hand-driven cluster for the paper-scenario tests: a
 * few raft instances over raft_mem_storage, a FIFO network the test can cut
 * or filter, and helpers that follow the ready protocol to the letter.
 * Deterministic; no timing; test code only.
 */
#ifndef EHR_RAFT_TEST_NET_H
#define EHR_RAFT_TEST_NET_H

#include "raft.h"
#include "raft_test_util.h"

enum { TN_NODES_MAX = 7, TN_APPLIED_MAX = 4096, TN_READS_MAX = 64 };

struct tn_node {
    raft_id id;
    struct raft_mem_storage *ms;
    struct raft *r;
    struct raft_options opt;
    bool up;
    uint64_t applied;                      /* last applied index */
    uint64_t applied_hash[TN_APPLIED_MAX]; /* entry hash by index */
    uint64_t normal_applied;               /* NORMAL entries applied */
    struct raft_read_result reads[TN_READS_MAX];
    size_t read_count;
    uint64_t snapshots_installed;
};

/* Return true to drop m. */
typedef bool (*tn_filter)(void *ctx, const struct raft_message *m);

/* Hands a delivered message to r; returns raft_step's result. The default
 * (NULL) is raft_step itself; a hook may transform m on the way (e.g. through
 * a wire encoding). */
typedef int (*tn_step)(void *ctx, struct raft *r, const struct raft_message *m);

struct tn_net {
    struct tn_node nodes[TN_NODES_MAX];
    size_t count;
    struct raft_message **queue;
    size_t queue_count;
    size_t queue_cap;
    bool cut[TN_NODES_MAX + 1][TN_NODES_MAX + 1]; /* by id: cut[from][to] drops */
    tn_filter filter;
    void *filter_ctx;
    tn_step step;
    void *step_ctx;
    uint64_t delivered;
};

/* Options tweak applied to every node before start (may be NULL). */
typedef void (*tn_tweak)(struct raft_options *opt);

/* nodes 1..count; 1..voters form the bootstrap configuration, the others
 * start empty (to be added later). All are started. */
void tn_init(struct tn_net *net, size_t count, size_t voters, tn_tweak tweak);
void tn_free(struct tn_net *net);

struct tn_node *tn_node(struct tn_net *net, raft_id id);
struct raft_status tn_status(struct tn_net *net, raft_id id);

/* Run the ready protocol for one node, if it has work. Returns true if it had. */
bool tn_process(struct tn_net *net, raft_id id);
/* Process every node and deliver every message until nothing moves. */
void tn_settle(struct tn_net *net);
/* Tick node id once (no settling). */
void tn_tick(struct tn_net *net, raft_id id);
/* Tick every up node once, then settle; `rounds` times. */
void tn_tick_all(struct tn_net *net, int rounds);
/* Tick only node id until it is leader (settling in between). True on success. */
bool tn_elect(struct tn_net *net, raft_id id);
/* The one up node that believes it leads in the highest term, or 0. */
raft_id tn_leader(struct tn_net *net);

void tn_isolate(struct tn_net *net, raft_id id); /* cut both ways from everyone */
void tn_heal(struct tn_net *net);                /* remove every cut */
void tn_crash(struct tn_net *net, raft_id id);   /* drop the instance; storage survives */
void tn_restart(struct tn_net *net, raft_id id);

/* Restore node id from a backup of the committed state up to META (I14):
 * its storage replaced by that snapshot with an empty log after it, its
 * hard state one term above both its own and the backup's, no vote, that
 * term as restore_term; then started. */
void tn_restore(struct tn_net *net, raft_id id, const struct raft_snapshot_meta *meta);

/* Propose `count` NORMAL entries of `size` bytes on node id. Returns the
 * first error, else 0. */
int tn_propose(struct tn_net *net, raft_id id, int count, uint32_t size);

/* Drop every queued message (lost in the network). */
void tn_drop_queue(struct tn_net *net);

#endif
