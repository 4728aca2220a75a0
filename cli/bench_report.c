/*
 * bench_report.c - what `ehrctl bench` reports of a measured run: committed
 * transactions per second over the window, commit latency (p50, p99, max),
 * ehrctl's own CPU, each node's CPU (% of a core over the window, and µs per
 * committed transaction, from GetStatus's cpu_user_ms + cpu_system_ms), and
 * whether every transaction committed with the result the rules must give.
 * In words on stdout, or one JSON object per workload.
 *
 * Not here: running (cmd_bench.c) or building (bench_load.c) a workload.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_internal.h"

enum { LINE_BYTES = 640 /* room for a host name (253 bytes) and more */ };

const char *const bench_kind_names[BENCH_KIND_COUNT_] = {
    "enrolment", "record anchor", "consent grant", "access request to permit",
    "access request to deny"};
const char *const bench_kind_plurals[BENCH_KIND_COUNT_] = {
    "enrolments", "record anchors", "consent grants", "access requests to permit",
    "access requests to deny"};

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
json_t *bench_json_measured(double v, int decimals)
{
    EHR_ASSERT(decimals >= 0 && decimals <= 9);
    double scale = 1.0;
    for (int i = 0; i < decimals; i++)
        scale *= 10.0;
    return json_checked(json_real(round(v * scale) / scale));
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

void bench_figures_make(struct bench_run *run, size_t node_count, struct bench_figures *f)
{
    qsort(run->latency_us, run->latency_count, sizeof *run->latency_us, compare_u32);
    f->window_s =
        run->window_open ? (double)(run->window_end_ns - run->window_start_ns) / 1e9 : 0.0;
    f->tps = f->window_s > 0 ? (double)run->window_committed / f->window_s : 0.0;
    f->p50 = percentile_ms(run->latency_us, run->latency_count, 50);
    f->p99 = percentile_ms(run->latency_us, run->latency_count, 99);
    f->max = percentile_ms(run->latency_us, run->latency_count, 100);
    f->client_cpu = f->window_s > 0 ? (rusage_ms(&run->usage_end) - rusage_ms(&run->usage_start)) /
                                          (f->window_s * 1000) * 100
                                    : 0.0;
    f->failed_total = run->bad_answers;
    for (int s = 0; s < RPC_STATUS_COUNT_; s++)
        f->failed_total += run->failed[s];
    EHR_ASSERT(run->committed + f->failed_total == run->tx_count); /* invariant 1 */
    f->envelope_avg = (double)run->envelope_bytes_total / (double)run->tx_count;
    for (size_t i = 0; i < node_count; i++) {
        const struct bench_sample *a = &run->samples[i][0], *z = &run->samples[i][1];
        f->cpu_percent[i] = f->cpu_ms[i] = f->cpu_us_per_tx[i] = -1;
        if (!a->ok || !z->ok || z->uptime_ms <= a->uptime_ms || z->cpu_ms < a->cpu_ms)
            continue;
        f->cpu_ms[i] = (double)(z->cpu_ms - a->cpu_ms);
        f->cpu_percent[i] = 100.0 * f->cpu_ms[i] / (double)(z->uptime_ms - a->uptime_ms);
        if (run->window_committed > 0)
            f->cpu_us_per_tx[i] = f->cpu_ms[i] * 1000.0 / (double)run->window_committed;
    }
}

json_t *bench_run_json(const struct bench *b, const struct bench_run *run,
                       const struct bench_figures *f)
{
    json_t *failed = json_checked(json_object());
    for (int s = 0; s < RPC_STATUS_COUNT_; s++) {
        if (run->failed[s] > 0)
            json_object_set_new(failed, rpc_status_name(s),
                                json_integer((json_int_t)run->failed[s]));
    }
    if (run->bad_answers > 0)
        json_object_set_new(failed, "BAD_ANSWER", json_integer((json_int_t)run->bad_answers));
    json_t *nodes = json_checked(json_array());
    for (size_t i = 0; i < b->node_count; i++) {
        const struct bench_node *n = &b->nodes[i];
        json_array_append_new(
            nodes,
            json_checked(json_pack(
                "{s:s, s:s, s:I, s:I, s:o, s:o, s:o}", "address", n->address, "node_id", n->id_hex,
                "submissions", (json_int_t)run->sends[i], "reconnects",
                (json_int_t)(n->reconnects - run->reconnects_before[i]), "cpu_percent",
                f->cpu_percent[i] >= 0 ? bench_json_measured(f->cpu_percent[i], 1) : json_null(),
                "cpu_ms", f->cpu_ms[i] >= 0 ? json_integer((json_int_t)f->cpu_ms[i]) : json_null(),
                "cpu_us_per_tx",
                f->cpu_us_per_tx[i] >= 0 ? bench_json_measured(f->cpu_us_per_tx[i], 1)
                                         : json_null())));
    }
    json_t *mix = json_checked(json_object()), *expected = json_checked(json_object());
    static const char *const kind_keys[BENCH_KIND_COUNT_] = {"enroll", "anchor", "grant", "permit",
                                                             "deny"};
    uint64_t expected_total = 0;
    for (int k = 0; k < BENCH_KIND_COUNT_; k++) {
        if (run->kinds[k] == 0)
            continue;
        json_object_set_new(mix, kind_keys[k], json_integer((json_int_t)run->kinds[k]));
        json_object_set_new(expected, kind_keys[k], json_integer((json_int_t)run->as_expected[k]));
        expected_total += run->as_expected[k];
    }
    json_t *results = json_checked(json_pack(
        "{s:I, s:o, s:I, s:I, s:I, s:o}", "as_expected", (json_int_t)expected_total, "by_kind",
        expected, "refused", (json_int_t)run->refused, "unexpected", (json_int_t)run->unexpected,
        "not_given", (json_int_t)run->not_given, "first_wrong",
        run->first_wrong[0] ? cli__json_text(run->first_wrong) : json_null()));
    /* Each figure rounded to what is measured: ms to the microsecond
     * (latency is taken in µs), rates and percentages to a tenth. */
    return json_checked(json_pack(
        "{s:I, s:o, s:o, s:I, s:o, s:I, s:I, s:I, s:o, s:I, s:I, s:o, s:I, s:o, s:{s:o, s:o, "
        "s:o}, s:o, s:o, s:o}",
        "txs", (json_int_t)run->tx_count, "mix", mix, "envelope_bytes_avg",
        bench_json_measured(f->envelope_avg, 1), "inflight", (json_int_t)b->inflight_max, "rate",
        b->rate > 0 ? json_integer((json_int_t)b->rate) : json_null(), "warmup_ms",
        (json_int_t)(b->warmup_ns / 1000000), "submitted", (json_int_t)run->next_tx, "committed",
        (json_int_t)run->committed, "failed", failed, "failed_total", (json_int_t)f->failed_total,
        "retries", (json_int_t)run->retries, "window_s", bench_json_measured(f->window_s, 6),
        "window_committed", (json_int_t)run->window_committed, "committed_tx_per_s",
        bench_json_measured(f->tps, 1), "latency_ms", "p50", bench_json_measured(f->p50, 3), "p99",
        bench_json_measured(f->p99, 3), "max", bench_json_measured(f->max, 3), "client_cpu_percent",
        bench_json_measured(f->client_cpu, 1), "results", results, "nodes", nodes));
}

void bench_run_print(const struct bench *b, const struct bench_run *run,
                     const struct bench_figures *f)
{
    char line[LINE_BYTES];
    size_t n = 0;
    for (int k = 0; k < BENCH_KIND_COUNT_ && n < sizeof line; k++) {
        if (run->kinds[k] > 0)
            n += (size_t)snprintf(line + n, sizeof line - n, "%s%llu %s", n > 0 ? ", " : "",
                                  (unsigned long long)run->kinds[k],
                                  run->kinds[k] == 1 ? bench_kind_names[k] : bench_kind_plurals[k]);
    }
    printf("\nworkload %s: %s; %.0f bytes per envelope\n", run->name, line, f->envelope_avg);
    snprintf(line, sizeof line, "%zu", run->next_tx);
    cli__print_field("submitted", line);
    snprintf(line, sizeof line, "%llu", (unsigned long long)run->committed);
    cli__print_field("committed", line);
    n = (size_t)snprintf(line, sizeof line, "%llu", (unsigned long long)f->failed_total);
    for (int s = 0; s < RPC_STATUS_COUNT_ && n < sizeof line; s++) {
        if (run->failed[s] > 0)
            n += (size_t)snprintf(line + n, sizeof line - n, "  %s %llu", rpc_status_name(s),
                                  (unsigned long long)run->failed[s]);
    }
    if (run->bad_answers > 0 && n < sizeof line)
        snprintf(line + n, sizeof line - n, "  bad answers %llu",
                 (unsigned long long)run->bad_answers);
    cli__print_field("failed", line);
    snprintf(line, sizeof line, "%llu (UNAVAILABLE or throttled, sent again)",
             (unsigned long long)run->retries);
    cli__print_field("retries", line);
    uint64_t expected = 0;
    for (int k = 0; k < BENCH_KIND_COUNT_; k++)
        expected += run->as_expected[k];
    n = (size_t)snprintf(line, sizeof line, "%llu as expected", (unsigned long long)expected);
    if (run->kinds[BENCH_KIND_PERMIT] + run->kinds[BENCH_KIND_DENY] > 0)
        n += (size_t)snprintf(line + n, sizeof line - n, " (%llu permitted, %llu denied)",
                              (unsigned long long)run->as_expected[BENCH_KIND_PERMIT],
                              (unsigned long long)run->as_expected[BENCH_KIND_DENY]);
    snprintf(line + n, sizeof line - n, ", %llu refused, %llu decided otherwise%s",
             (unsigned long long)run->refused, (unsigned long long)run->unexpected,
             run->not_given > 0 ? ", some without a result from the node" : "");
    cli__print_field("results", line);
    if (!run->window_open) {
        cli__print_field("window", "none: every transaction was answered in the warm-up");
        return;
    }
    snprintf(line, sizeof line, "%.3f s, %llu commits", f->window_s,
             (unsigned long long)run->window_committed);
    cli__print_field("window", line);
    snprintf(line, sizeof line, "%.1f committed tx/s", f->tps);
    cli__print_field("throughput", line);
    snprintf(line, sizeof line, "p50 %.2f  p99 %.2f  max %.2f", f->p50, f->p99, f->max);
    cli__print_field("latency ms", line);
    snprintf(line, sizeof line, "%.1f %%", f->client_cpu);
    cli__print_field("client cpu", line);
    for (size_t i = 0; i < b->node_count; i++) {
        const struct bench_node *node = &b->nodes[i];
        if (f->cpu_percent[i] >= 0 && f->cpu_us_per_tx[i] >= 0)
            snprintf(line, sizeof line, "%5.1f %%  %7.1f us/tx  %s  (%.16s...)", f->cpu_percent[i],
                     f->cpu_us_per_tx[i], node->address, node->id_hex);
        else if (f->cpu_percent[i] >= 0)
            snprintf(line, sizeof line, "%5.1f %%  %s  (%.16s...)", f->cpu_percent[i],
                     node->address, node->id_hex);
        else
            snprintf(line, sizeof line, "unknown  %s  (no CPU sample)", node->address);
        cli__print_field("node cpu", line);
    }
}

/* Say loudly what went wrong in RUN. Returns CLI_EXIT_OK or CLI_EXIT_FAIL. */
int bench_run_verdict(const struct bench_run *run)
{
    int exit_code = CLI_EXIT_OK;
    if (run->committed != run->tx_count) {
        char why[128];
        snprintf(why, sizeof why, "%llu of %zu transactions did not commit",
                 (unsigned long long)(run->tx_count - run->committed), run->tx_count);
        exit_code = cli__fail(why, "bench: workload %s", run->name);
    }
    if (run->refused + run->unexpected > 0) {
        char why[256];
        snprintf(why, sizeof why,
                 "%llu committed with another result than the rules must give (%llu refused, "
                 "%llu decided otherwise): a bug in the bench or in the rules",
                 (unsigned long long)(run->refused + run->unexpected),
                 (unsigned long long)run->refused, (unsigned long long)run->unexpected);
        exit_code = cli__fail(why, "bench: workload %s", run->name);
    }
    if (exit_code != CLI_EXIT_OK && run->first_wrong[0] != '\0')
        cli__fail(run->first_wrong, "bench: workload %s: the first", run->name);
    return exit_code;
}
