/*
 * sim_main.c - ehr-sim: run the consensus simulator over a range of seeds.
 *
 *   ehr-sim [--seed N] [--seeds COUNT] [--nodes K] [--steps N] [--trace]
 *           [--expect-violation] [--budget-env] [--no-rule-checks] [--no-restores]
 *
 * --seed N runs (and with --trace prints) exactly one seed, reproducing a
 * failure; --seeds COUNT runs seeds N..N+COUNT-1. Prints the seed budget,
 * the steps checked, seeds/s and steps/s. Exit status: 0 when no seed
 * violated an invariant, 1 otherwise; with --expect-violation (the "teeth"
 * tests, built with a deliberate bug) the reverse: 0 only if some seed
 * violated. --budget-env lets EHR_SIM_SEEDS / EHR_SIM_STEPS override the
 * budget (CI uses it; sanitizer builds divide the default by four).
 * --no-rule-checks checks only the consequences of a broken rule (see
 * sim.h), to measure how quickly they alone expose a bug. --no-restores
 * restores no node from a backup: a seed found before restores existed
 * replays its history exactly.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "sim.h"

/* Which build this is: the plain core, or one with a deliberate bug. */
#ifdef EHR_SIM_BUG_NAME
#define SIM_NAME "ehr-sim[bug " EHR_SIM_BUG_NAME "]"
#else
#define SIM_NAME "ehr-sim"
#endif

static int parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0' || *s == '-')
        return EHR_EINVAL;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return EHR_EINVAL;
    *out = v;
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: ehr-sim [--seed N] [--seeds COUNT] [--nodes K] [--steps N] [--trace]\n"
                    "               [--expect-violation] [--budget-env] [--no-rule-checks]\n"
                    "               [--no-restores]\n");
}

int main(int argc, char **argv)
{
    uint64_t seed = 1, seeds = 1, nodes = 0, steps = 20000;
    bool single = false, trace = false, expect = false, budget_env = false, seeds_given = false;
    bool consequences_only = false, no_restores = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int err = 0;
        if (strcmp(a, "--seed") == 0) {
            err = parse_u64(v, &seed);
            single = true;
            i++;
        } else if (strcmp(a, "--seeds") == 0) {
            err = parse_u64(v, &seeds);
            seeds_given = true;
            i++;
        } else if (strcmp(a, "--nodes") == 0) {
            err = parse_u64(v, &nodes);
            i++;
        } else if (strcmp(a, "--steps") == 0) {
            err = parse_u64(v, &steps);
            i++;
        } else if (strcmp(a, "--trace") == 0) {
            trace = true;
        } else if (strcmp(a, "--expect-violation") == 0) {
            expect = true;
        } else if (strcmp(a, "--budget-env") == 0) {
            budget_env = true;
        } else if (strcmp(a, "--no-rule-checks") == 0) {
            consequences_only = true;
        } else if (strcmp(a, "--no-restores") == 0) {
            no_restores = true;
        } else {
            err = EHR_EINVAL;
        }
        if (err != 0) {
            usage();
            return 2;
        }
    }
    if (single && !seeds_given)
        seeds = 1;
    if (budget_env) {
#ifdef EHR_SANITIZE
        seeds = seeds / 4 > 0 ? seeds / 4 : 1;
#endif
        uint64_t v;
        if (parse_u64(getenv("EHR_SIM_SEEDS"), &v) == 0 && v > 0)
            seeds = v;
        if (parse_u64(getenv("EHR_SIM_STEPS"), &v) == 0 && v > 0)
            steps = v;
    }
    if (seeds == 0 || steps == 0 ||
        (nodes != 0 && (nodes < SIM_NODES_MIN || nodes > SIM_NODES_MAX))) {
        usage();
        return 2;
    }
    double start = now_seconds();
    uint64_t total_steps = 0, violations = 0, acked = 0, committed = 0, crashes = 0, torn = 0,
             corrupt = 0, snaps = 0, confs = 0, transfers = 0, reads = 0, calm = 0, leaders = 0,
             restores = 0, restored = 0;
    uint64_t run = 0;
    for (uint64_t k = 0; k < seeds; k++, run++) {
        struct sim_options opt = {.seed = seed + k,
                                  .nodes = (uint32_t)nodes,
                                  .steps = steps,
                                  .trace = trace,
                                  .consequences_only = consequences_only,
                                  .no_restores = no_restores};
        struct sim_result res;
        if (sim_run(&opt, &res) != 0) {
            usage();
            return 2;
        }
        total_steps += res.steps;
        acked += res.acked;
        committed += res.committed;
        crashes += res.crashes;
        torn += res.torn_writes;
        corrupt += res.corruptions_detected;
        snaps += res.snapshots_installed;
        confs += res.config_changes;
        transfers += res.transfers;
        reads += res.reads;
        calm += res.calm_checks;
        leaders += res.leaders;
        restores += res.restores;
        restored += res.restores_completed;
        if (res.violated) {
            violations++;
            if (expect) {
                run++;
                break;
            }
        }
    }
    double secs = now_seconds() - start;
    if (secs <= 0)
        secs = 1e-9;
    printf(SIM_NAME ": seeds %llu..%llu (%llu run), %llu steps each: %llu steps checked, "
                    "%llu violation(s)\n",
           (unsigned long long)seed, (unsigned long long)(seed + seeds - 1),
           (unsigned long long)run, (unsigned long long)steps, (unsigned long long)total_steps,
           (unsigned long long)violations);
    printf(SIM_NAME ": %llu leaders, %llu entries committed, %llu proposals acked, %llu reads, "
                    "%llu crashes (%llu torn writes, %llu corrupt disks refused), %llu snapshots "
                    "installed, %llu config changes, %llu transfers, %llu calm checks, %llu "
                    "restores (%llu caught up)\n",
           (unsigned long long)leaders, (unsigned long long)committed, (unsigned long long)acked,
           (unsigned long long)reads, (unsigned long long)crashes, (unsigned long long)torn,
           (unsigned long long)corrupt, (unsigned long long)snaps, (unsigned long long)confs,
           (unsigned long long)transfers, (unsigned long long)calm, (unsigned long long)restores,
           (unsigned long long)restored);
    printf(SIM_NAME ": %.2f s, %.1f seeds/s, %.0f steps/s\n", secs, (double)run / secs,
           (double)total_steps / secs);
    if (expect) {
        printf(SIM_NAME ": %s\n", violations > 0
                                      ? "the deliberate bug was caught"
                                      : "NO violation found: the simulator missed the bug");
        return violations > 0 ? 0 : 1;
    }
    return violations > 0 ? 1 : 0;
}
