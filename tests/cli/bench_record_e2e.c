/*
 * bench_record_e2e - `ehrctl record add` and `record get` of a large record
 * (100 MiB by default) end to end on a three-node loopback network of real
 * ehrd processes (tests/node/cluster.h), against a plain copy of the same
 * file on the same disk, measured in the same run.
 *
 *   scripts/bench record-e2e [--mib N] [--rounds R] [--compare EHRCTL] [--keep]
 *
 * Set-up: three founding members; a patient enrolled by member 0 (the
 * custodian) and its public keys; a file of N MiB of random bytes in the
 * cluster's directory. Then R rounds, each timing, one after another:
 *   - the floor: the file copied with 1 MiB reads and writes, then fsync
 *     (what `cp` and a sync cost; the file is in the page cache, as it is
 *     for record add);
 *   - `record add FILE --wait` by member 0 through its node: encryption,
 *     the content hash, PutBlob (the node hashes and fsyncs the blob), the
 *     anchor committed;
 *   - `record get` by the patient through the same node: GetRecord,
 *     GetBlob, the hash checked, decryption, the output fsynced; the
 *     output is checked to be the file's bytes (SHA-256) after the clock
 *     stops.
 * With --compare, another ehrctl binary (an older build) does the same
 * record add and record get right after, each round, against the same
 * nodes: a before-and-after in one run.
 * Each figure is the best and the median of R rounds; × copy is the
 * operation's time over the copy's (best over best, median over median). The load average
 * (/proc/loadavg) before and after is printed: the machine may be shared. Prints figures only;
 * nothing judges them (docs/BENCHMARKS.md records them).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster.h"
#include "proc.h"

enum { NODES = 3, LEADER_WAIT_MS = 30000, MIB_MAX = 8192, ROUNDS_MAX = 20, CLIENTS_MAX = 2 };
enum { COPY_BUFFER_BYTES = 1 << 20, LOADAVG_BYTES = 128 };

#define DIE(...) cluster_die("bench_record_e2e", __VA_ARGS__)

/* The ehrctl at PATH with ARGS in the cluster's directory; dies with its
 * output unless it exits 0. */
static void ehrctl_at(const struct cluster *c, const char *path, const char *const *args)
{
    struct proc_spec spec = {.path = path, .argv0 = "ehrctl", .args = args, .cwd = c->root};
    struct proc_result r = proc_run(&spec);
    if (r.status != 0)
        DIE("ehrctl %s %s: exit %d: %s", args[0], args[1], r.status, r.err);
    proc_result_free(&r);
}

#define EHRCTL(c, ...) ehrctl_at(c, EHRCTL_PATH, PROC_ARGS(__VA_ARGS__, (const char *)NULL))

static void loadavg(char out[LOADAVG_BYTES])
{
    FILE *f = fopen("/proc/loadavg", "r");
    out[0] = '\0';
    if (f == NULL)
        return;
    if (fgets(out, LOADAVG_BYTES, f) != NULL)
        out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

/* PATH: BYTES random bytes, fsynced. */
static void file_make(const char *path, uint64_t bytes)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        DIE("cannot create %s", path);
    uint8_t *buf = malloc(COPY_BUFFER_BYTES);
    if (buf == NULL)
        DIE("out of memory");
    for (uint64_t done = 0; done < bytes;) {
        size_t n = bytes - done < COPY_BUFFER_BYTES ? (size_t)(bytes - done) : COPY_BUFFER_BYTES;
        randombytes_buf(buf, n);
        if (write(fd, buf, n) != (ssize_t)n)
            DIE("write %s", path);
        done += n;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        DIE("fsync %s", path);
    free(buf);
}

/* The floor: FROM copied to TO with 1 MiB reads and writes, then fsync.
 * Seconds. */
static double copy_timed(const char *from, const char *to)
{
    static uint8_t buf[COPY_BUFFER_BYTES];
    uint64_t t0 = cluster_now_us();
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (in < 0 || out < 0)
        DIE("cannot open %s or %s", from, to);
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
    close(in);
    close(out);
    return (double)(cluster_now_us() - t0) / 1e6;
}

static void file_sha256(const char *path, uint8_t out[crypto_hash_sha256_BYTES])
{
    static uint8_t buf[COPY_BUFFER_BYTES];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        DIE("cannot open %s", path);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        crypto_hash_sha256_update(&st, buf, (size_t)n);
    if (n < 0)
        DIE("read %s", path);
    close(fd);
    crypto_hash_sha256_final(&st, out);
}

/* `record add` of the file by member 0 with the ehrctl at EHRCTL:
 * seconds, and the record id. */
static double record_add_timed(const struct cluster *c, const char *ehrctl, const char *node,
                               char record[65])
{
    const char *const args[] = {"record", "add",     "record.bin", "--patient",       "pub.json",
                                "--type", "imaging", "--key",      "node0.key",       "--node",
                                node,     "--wait",  "--json",     (const char *)NULL};
    struct proc_spec spec = {.path = ehrctl, .argv0 = "ehrctl", .args = args, .cwd = c->root};
    uint64_t t0 = cluster_now_us();
    struct proc_result r = proc_run(&spec);
    double s = (double)(cluster_now_us() - t0) / 1e6;
    if (r.status != 0)
        DIE("record add: exit %d: %s", r.status, r.err);
    json_t *out = json_loads(r.out, 0, NULL);
    const char *id = json_string_value(json_object_get(out, "record_id"));
    if (id == NULL || strlen(id) != 64)
        DIE("record add printed no record_id: %s", r.out);
    memcpy(record, id, 65);
    json_decref(out);
    proc_result_free(&r);
    return s;
}

static double best(const double *v, size_t n)
{
    double b = v[0];
    for (size_t i = 1; i < n; i++)
        b = v[i] < b ? v[i] : b;
    return b;
}

static int double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of V[0..N) (the mean of the two middle ones for an even N). */
static double median(const double *v, size_t n)
{
    double sorted[ROUNDS_MAX];
    memcpy(sorted, v, n * sizeof *v);
    qsort(sorted, n, sizeof *sorted, double_cmp);
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    long mib = 100, rounds = 3;
    bool keep = false;
    /* The ehrctl built with this bench, and another to compare with it in
     * the same run (--compare PATH: an older build, say). */
    const char *clients[CLIENTS_MAX] = {EHRCTL_PATH, NULL};
    size_t client_count = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc)
            mib = cluster_arg_long("bench_record_e2e", "--mib", argv[++i], MIB_MAX);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = cluster_arg_long("bench_record_e2e", "--rounds", argv[++i], ROUNDS_MAX);
        else if (strcmp(argv[i], "--compare") == 0 && i + 1 < argc && client_count == 1)
            clients[client_count++] = argv[++i];
        else if (strcmp(argv[i], "--keep") == 0)
            keep = true;
        else
            DIE("usage: bench_record_e2e [--mib N] [--rounds R] [--compare EHRCTL] [--keep]");
    }
    if (ehr_crypto_init() != 0)
        DIE("cannot initialise the crypto libraries");
    struct cluster c;
    cluster_create(&c, NODES, EHRD_PATH, EHRCTL_PATH, NULL);
    char node[NODES][32];
    if (cluster_start_all(&c, node, NULL, LEADER_WAIT_MS) != 0)
        DIE("no leader");
    EHRCTL(&c, "keygen", "--out", "patient.key", "--no-passphrase");
    EHRCTL(&c, "patient", "enroll", "--patient", "patient.key", "--key", "node0.key", "--node",
           node[0], "--wait");
    EHRCTL(&c, "patient", "public-keys", "--patient", "patient.key", "--out", "pub.json");
    uint64_t bytes = (uint64_t)mib * 1024 * 1024;
    char path[CLUSTER_PATH_BYTES], copy[CLUSTER_PATH_BYTES], got[CLUSTER_PATH_BYTES];
    snprintf(path, sizeof path, "%s", proc_path(c.root, "record.bin"));
    snprintf(copy, sizeof copy, "%s", proc_path(c.root, "copy.bin"));
    snprintf(got, sizeof got, "%s", proc_path(c.root, "got.bin"));
    file_make(path, bytes);
    uint8_t want[crypto_hash_sha256_BYTES], have[crypto_hash_sha256_BYTES];
    file_sha256(path, want);

    char load_before[LOADAVG_BYTES], load_after[LOADAVG_BYTES];
    loadavg(load_before);
    double copy_s[ROUNDS_MAX], add_s[CLIENTS_MAX][ROUNDS_MAX], get_s[CLIENTS_MAX][ROUNDS_MAX];
    for (long r = 0; r < rounds; r++) {
        copy_s[r] = copy_timed(path, copy);
        unlink(copy);
        fprintf(stderr, "bench_record_e2e: round %ld: copy %.3f s", r + 1, copy_s[r]);
        for (size_t k = 0; k < client_count; k++) {
            char record[65];
            add_s[k][r] = record_add_timed(&c, clients[k], node[0], record);
            uint64_t t0 = cluster_now_us();
            ehrctl_at(&c, clients[k],
                      PROC_ARGS("record", "get", record, "--key", "patient.key", "--node", node[0],
                                "--out", "got.bin", (const char *)NULL));
            get_s[k][r] = (double)(cluster_now_us() - t0) / 1e6;
            file_sha256(got, have);
            if (memcmp(want, have, sizeof want) != 0)
                DIE("record get wrote other bytes than the record's");
            unlink(got);
            fprintf(stderr, "; %s: add %.3f s, get %.3f s", k == 0 ? "ehrctl" : "compared",
                    add_s[k][r], get_s[k][r]);
        }
        fputc('\n', stderr);
    }
    loadavg(load_after);
    double mb = (double)bytes / 1e6;
    size_t n = (size_t)rounds;
    double copy_best = best(copy_s, n), copy_mid = median(copy_s, n);
    printf("# a record of %ld MiB (%.1f MB) on a %d-node loopback network; %ld rounds\n", mib, mb,
           NODES, rounds);
    printf("# load average before: %s; after: %s\n", load_before, load_after);
    if (client_count > 1)
        printf("# compared: %s\n", clients[1]);
    printf("%-40s %8s %8s %8s %9s %8s\n", "operation", "best s", "MB/s", "x copy", "median s",
           "x copy");
    printf("%-40s %8.3f %8.0f %8.2f %9.3f %8.2f\n", "floor: copy (read, write, fsync)", copy_best,
           mb / copy_best, 1.0, copy_mid, 1.0);
    for (size_t k = 0; k < client_count; k++) {
        const char *who = k == 0 ? "" : ", compared";
        char name[64];
        double b = best(add_s[k], n), m = median(add_s[k], n);
        snprintf(name, sizeof name, "record add --wait (custodian%s)", who);
        printf("%-40s %8.3f %8.0f %8.2f %9.3f %8.2f\n", name, b, mb / b, b / copy_best, m,
               m / copy_mid);
        printf("{\"bench\":\"record_e2e\",\"op\":\"add\",\"client\":%zu,\"mib\":%ld,"
               "\"rounds\":%ld,\"copy_s\":%.3f,\"best_s\":%.3f,\"copy_median_s\":%.3f,"
               "\"median_s\":%.3f}\n",
               k, mib, rounds, copy_best, b, copy_mid, m);
        b = best(get_s[k], n);
        m = median(get_s[k], n);
        snprintf(name, sizeof name, "record get (patient%s)", who);
        printf("%-40s %8.3f %8.0f %8.2f %9.3f %8.2f\n", name, b, mb / b, b / copy_best, m,
               m / copy_mid);
        printf("{\"bench\":\"record_e2e\",\"op\":\"get\",\"client\":%zu,\"mib\":%ld,"
               "\"rounds\":%ld,\"copy_s\":%.3f,\"best_s\":%.3f,\"copy_median_s\":%.3f,"
               "\"median_s\":%.3f}\n",
               k, mib, rounds, copy_best, b, copy_mid, m);
    }
    unlink(path);
    for (size_t i = 0; i < NODES; i++)
        cluster_stop(&c, i);
    cluster_destroy(&c, keep);
    return 0;
}
