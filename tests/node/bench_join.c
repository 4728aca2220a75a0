/*
 * bench_join - the time a new member takes to join a running network that
 * holds many transactions, on loopback with real ehrd processes
 * (tests/node/cluster.h), against a floor measured in the same run: a plain
 * copy of the leader's latest snapshot file (the bytes a joining node is
 * sent), written and fsynced.
 *
 *   scripts/bench join [--txs N] [--batch N] [--inflight K] [--snapshot-entries N]
 *                      [--keep]
 *
 * Set-up: three founding members commit --txs transactions (default
 * 1,000,000: enrolments of fresh patients by the hospital, each co-signed
 * by its patient), made and submitted --batch at a time. Then the fourth
 * member is admitted (`ehrctl member propose --admit`, one approval: 2 of
 * 3), `ehrctl init --join` prepares its directory, and its ehrd starts.
 * The nodes snapshot every --snapshot-entries entries (default 256, so
 * that the leader holds a recent snapshot as a long-running network does;
 * the default of the config, 10,000, is a few hours of blocks).
 * Timed from that start: until the leader counts it as a voter, and until
 * its tip is the leader's (the network is idle meanwhile). The copy of the
 * snapshot file runs after, on the same disk. Prints a table and one JSON
 * line; nothing here judges the figures (docs/BENCHMARKS.md records them).
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster.h"
#include "ehr/v1/node.pb-c.h"

enum { NODES = 4, FOUNDING = 3, NEWCOMER = 3, LEADER_WAIT_MS = 30000 };

#define DIE(...) cluster_die("bench_join", __VA_ARGS__)

/* Is M a voter in the leader's configuration, and is its tip the leader's? */
static void newcomer_view(struct cluster *c, size_t leader, bool *voter, bool *caught_up)
{
    *voter = *caught_up = false;
    Ehr__V1__GetStatusRequest req = EHR__V1__GET_STATUS_REQUEST__INIT;
    uint8_t buf[8];
    size_t len = ehr__v1__get_status_request__pack(&req, buf);
    struct rpc_result r;
    if (cluster_call(c, leader, "GetStatus", buf, len, 5000, &r) != 0) {
        rpc_result_clear(&r);
        return;
    }
    Ehr__V1__GetStatusResponse *s =
        ehr__v1__get_status_response__unpack(NULL, r.response_len, r.response);
    rpc_result_clear(&r);
    if (s == NULL)
        return;
    for (size_t p = 0; p < s->n_peers; p++)
        if (s->peers[p]->node_id.len == 32 &&
            memcmp(s->peers[p]->node_id.data, c->nodes[NEWCOMER].node_key, 32) == 0)
            *voter = s->peers[p]->voter;
    struct cluster_status mine;
    if (cluster_status(c, NEWCOMER, &mine) == 0)
        *caught_up = mine.tip_height == s->tip_height &&
                     memcmp(mine.tip_hash, s->tip_hash.data, EHR_HASH_BYTES) == 0;
    ehr__v1__get_status_response__free_unpacked(s, NULL);
}

/* The newest snapshot file of node I (its path into PATH), and its size. */
static uint64_t latest_snapshot(const struct cluster *c, size_t i, char path[CLUSTER_PATH_BYTES])
{
    char dir[CLUSTER_PATH_BYTES / 2];
    if (snprintf(dir, sizeof dir, "%s/snapshots", c->nodes[i].dir) >= (int)sizeof dir)
        DIE("the data directory's path is too long");
    DIR *d = opendir(dir);
    if (d == NULL)
        DIE("no snapshots directory in %s", c->nodes[i].dir);
    char best[CLUSTER_PATH_BYTES / 4] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "snap-", 5) == 0 && strlen(e->d_name) < sizeof best &&
            strcmp(e->d_name, best) > 0)
            memcpy(best, e->d_name, strlen(e->d_name) + 1);
    closedir(d);
    if (best[0] == '\0')
        DIE("node %zu has taken no snapshot", i);
    snprintf(path, CLUSTER_PATH_BYTES, "%s/%s", dir, best);
    struct stat st;
    if (stat(path, &st) != 0)
        DIE("cannot stat %s", path);
    return (uint64_t)st.st_size;
}

/* Copy FROM to TO in 1 MiB writes, then fsync: the floor. Seconds. */
static double copy_file_timed(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (in < 0 || out < 0)
        DIE("cannot open %s or %s", from, to);
    static char buf[1 << 20];
    uint64_t t0 = cluster_now_us();
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0)
            DIE("read %s", from);
        if (n == 0)
            break;
        if (write(out, buf, (size_t)n) != n)
            DIE("write %s", to);
    }
    if (fsync(out) != 0)
        DIE("fsync %s", to);
    double s = (double)(cluster_now_us() - t0) / 1e6;
    close(in);
    close(out);
    unlink(to);
    return s;
}

int main(int argc, char **argv)
{
    long txs = 1000000, batch = 100000, inflight = 256, snapshot_entries = 256;
    bool keep = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--txs") == 0 && i + 1 < argc)
            txs = cluster_arg_long("bench_join", "--txs", argv[++i], 100000000);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            batch = cluster_arg_long("bench_join", "--batch", argv[++i], 1000000);
        else if (strcmp(argv[i], "--inflight") == 0 && i + 1 < argc)
            inflight = cluster_arg_long("bench_join", "--inflight", argv[++i], 4096);
        else if (strcmp(argv[i], "--snapshot-entries") == 0 && i + 1 < argc)
            snapshot_entries =
                cluster_arg_long("bench_join", "--snapshot-entries", argv[++i], 1000000);
        else if (strcmp(argv[i], "--keep") == 0)
            keep = true;
        else
            DIE("usage: bench_join [--txs N] [--batch N] [--inflight K] [--snapshot-entries N] "
                "[--keep]");
    }
    if (ehr_crypto_init() != 0)
        DIE("cannot initialise the crypto libraries");
    struct cluster c;
    struct cluster_limits limits = {.founding = FOUNDING,
                                    .snapshot_entries = (uint64_t)snapshot_entries};
    cluster_create(&c, NODES, EHRD_PATH, EHRCTL_PATH, &limits);
    for (size_t i = 0; i < FOUNDING; i++)
        cluster_start(&c, i);
    if (cluster_wait_leader(&c, LEADER_WAIT_MS) == SIZE_MAX)
        DIE("no leader");

    uint64_t t0 = cluster_now_us();
    for (long done = 0; done < txs;) {
        size_t n = (size_t)(txs - done < batch ? txs - done : batch);
        struct cluster_tx *t = cluster_txs_make(&c, n);
        size_t committed = cluster_load(&c, t, n, (size_t)inflight, 600000, NULL, NULL);
        cluster_txs_free(t, n);
        if (committed != n)
            DIE("%zu of %zu committed", committed, n);
        done += (long)n;
        fprintf(stderr, "bench_join: %ld of %ld transactions committed (%.0f s)\n", done, txs,
                (double)(cluster_now_us() - t0) / 1e6);
    }
    double fill_s = (double)(cluster_now_us() - t0) / 1e6;
    uint64_t tip = cluster_wait_converged(&c, 120000);
    if (tip == UINT64_MAX)
        DIE("the founding nodes do not converge");

    char id[65];
    cluster_propose(&c, 0, true, NEWCOMER, id);
    cluster_approve(&c, 1, id);
    uint64_t t1 = cluster_now_us();
    cluster_join_prepare(&c, NEWCOMER, 1);
    double init_s = (double)(cluster_now_us() - t1) / 1e6;
    tip = cluster_wait_converged(&c, 120000); /* the founders only: the newcomer is not running */
    size_t leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    if (leader == SIZE_MAX)
        DIE("no leader before the join");

    uint64_t start = cluster_now_us();
    cluster_start(&c, NEWCOMER);
    double voter_s = -1, caught_up_s = -1;
    while (voter_s < 0 || caught_up_s < 0) {
        bool voter, caught_up;
        newcomer_view(&c, leader, &voter, &caught_up);
        double now = (double)(cluster_now_us() - start) / 1e6;
        if (voter && voter_s < 0)
            voter_s = now;
        if (caught_up && caught_up_s < 0)
            caught_up_s = now;
        if (now > 3600)
            DIE("the newcomer has not joined in an hour");
        usleep(20000);
    }
    char snap[CLUSTER_PATH_BYTES], copy[CLUSTER_PATH_BYTES + 16];
    uint64_t snap_bytes = latest_snapshot(&c, leader, snap);
    snprintf(copy, sizeof copy, "%s/copy.mdb", c.root);
    double copy_s = copy_file_timed(snap, copy);
    double join_s = voter_s > caught_up_s ? voter_s : caught_up_s;

    printf("network         %d founding members, %ld transactions in %.1f s, tip %" PRIu64 "\n",
           FOUNDING, txs, fill_s, tip);
    printf("init --join     %.3f s\n", init_s);
    printf("to voter        %.3f s\n", voter_s);
    printf("to leader's tip %.3f s\n", caught_up_s);
    printf("snapshot file   %.1f MB\n", (double)snap_bytes / 1e6);
    printf("floor: copy     %.3f s (%.0f MB/s, write + fsync)\n", copy_s,
           (double)snap_bytes / 1e6 / copy_s);
    printf("join / copy     %.2f\n", join_s / copy_s);
    printf("{\"bench\":\"join\",\"txs\":%ld,\"tip\":%" PRIu64 ",\"init_s\":%.3f,\"voter_s\":%.3f,"
           "\"caught_up_s\":%.3f,\"snapshot_bytes\":%" PRIu64 ",\"copy_s\":%.3f,\"ratio\":%.3f}\n",
           txs, tip, init_s, voter_s, caught_up_s, snap_bytes, copy_s, join_s / copy_s);
    cluster_destroy(&c, keep);
    return 0;
}
