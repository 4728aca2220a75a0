/*
 * sim.h - the deterministic cluster simulator for the consensus core.
 *
 * 3 to 7 raft instances in one process on a virtual clock; a network that
 * drops, delays, duplicates, reorders and partitions (symmetric and one-way);
 * crashes that lose whatever was not persisted; a simulated disk with torn
 * last writes and flipped bits that restart must detect; nodes restored
 * from a backup (an older snapshot, its log after it lost); membership changes,
 * leadership transfers, snapshots, read-index reads and client proposals
 * throughout. After every step it checks the safety properties listed in
 * consensus/README.md (S1..S9) and, in calm periods, liveness (L1).
 *
 * Everything follows from the seed: a failing seed replays exactly. Used by
 * the ehr-sim program, its CTest runs and the "teeth" tests. Test code only.
 */
#ifndef EHR_RAFT_SIM_H
#define EHR_RAFT_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { SIM_NODES_MIN = 3, SIM_NODES_MAX = 7 };

struct sim_options {
    uint64_t seed;
    uint32_t nodes;  /* 0: chosen from the seed in [SIM_NODES_MIN, SIM_NODES_MAX] */
    uint64_t steps;  /* events to run */
    bool trace;      /* print every event to trace_out as it happens */
    FILE *trace_out; /* default stderr */
    bool quiet;      /* do not print the violation report */
    /* Skip the checks of the rules behind the properties, S4 (what a
     * message claims is durable at its sender) and S10 (the commit rule),
     * and check only their consequences (split votes, lost or diverging
     * entries): to measure how quickly those alone expose a bug. */
    bool consequences_only;
    /* No restores from a backup (I14): the histories of seeds found before
     * the simulator restored nodes, replayed exactly. */
    bool no_restores;
};

struct sim_result {
    bool violated;
    char violation[256]; /* which check failed, and how */
    uint64_t steps;      /* events run, each followed by the safety checks */
    uint64_t committed;  /* highest index known committed */
    uint64_t acked;      /* proposals acknowledged to clients */
    uint64_t leaders;    /* distinct (term, leader) pairs seen */
    uint64_t crashes;
    uint64_t torn_writes;
    uint64_t corruptions_detected;
    uint64_t snapshots_installed;
    uint64_t config_changes;
    uint64_t transfers;
    uint64_t reads;
    uint64_t calm_checks;        /* liveness checks passed */
    uint64_t restores;           /* nodes restored from a backup (I14) */
    uint64_t restores_completed; /* ... that caught up and vote again */
};

/* Run one seed. Returns 0 (result filled; result->violated tells) or a
 * negative error for bad options. On a violation it prints the seed, the
 * failed check and the last events to stderr unless quiet. */
int sim_run(const struct sim_options *opt, struct sim_result *result);

#endif
