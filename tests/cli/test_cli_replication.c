/*
 * test_cli_replication - record ciphertext replicated to other members'
 * nodes and repaired (node/README.md, "Blob replication"), against three
 * real ehrd processes (tests/node/cluster.h), member 0 the custodian:
 *   - a record added through member 0 shows up in the two other nodes'
 *     blob stores, the same bytes (hashing to the blob id);
 *   - with the custodian's blob deleted from its disk, `record get` still
 *     opens the record, from a replica, saying which node lacked it; with
 *     the custodian's node down, too;
 *   - the custodian restarted with its blobs/ directory wiped repairs its
 *     copy (the same bytes);
 *   - a replica restarted without its copy, the custodian's copy altered
 *     on disk: the piece fetched from the custodian does not hash to the
 *     id, is discarded (logged) and leaves nothing, and the copy comes from
 *     the other replica, the right bytes.
 * With three members and NODE_BLOB_COPIES = 3 every node holds every blob
 * (the replica choice itself is test_replication's).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "ehr_crypto.h"
#include "proc.h"

#define EHRCTL EHR_BINARY_DIR "/cli/ehrctl"
#define EHRD EHR_BINARY_DIR "/node/ehrd"

enum { NODES = 3, KEY_HEX = 65, LEADER_WAIT_MS = 30000, REPLICATE_WAIT_MS = 60000 };
/* Three pieces on the links: two whole, one short. */
enum { DATA_BYTES = 600 * 1024 };

struct net {
    struct cluster c;
    char node[NODES][32];
};

static struct proc_result run_args(const struct net *n, const char *const *args)
{
    struct proc_spec spec = {
        .path = EHRCTL, .argv0 = "ehrctl", .args = args, .env = NULL, .cwd = n->c.root};
    return proc_run(&spec);
}

#define run(n, ...) run_args(n, PROC_ARGS(__VA_ARGS__, (const char *)NULL))

static void assert_ok(const struct proc_result *r)
{
    if (r->status != 0)
        fail_msg("exit %d; stdout: %s; stderr: %s", r->status, r->out, r->err);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int net_setup(void **state)
{
    if (ehr_crypto_init() != 0)
        return -1;
    struct net *n = calloc(1, sizeof *n);
    if (n == NULL)
        return -1;
    cluster_create(&n->c, NODES, EHRD, EHRCTL, NULL);
    if (cluster_start_all(&n->c, n->node, NULL, LEADER_WAIT_MS) != 0) {
        cluster_destroy(&n->c, true);
        return -1;
    }
    *state = n;
    return 0;
}

static int net_teardown(void **state)
{
    struct net *n = *state;
    if (n == NULL)
        return 0;
    int failed = 0;
    for (size_t i = 0; i < n->c.count; i++)
        if (n->c.nodes[i].pid != 0 && cluster_stop(&n->c, i) != 0) {
            print_error("node %zu did not stop cleanly (log: %s)\n", i, n->c.nodes[i].log);
            failed = -1;
        }
    cluster_destroy(&n->c, failed != 0);
    free(n);
    return failed;
}

/* The bytes of the file PATH (*LEN), or NULL if it cannot be read. */
static uint8_t *file_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)size + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return b;
}

/* Where node I keeps the blob BLOB (hex). */
static const char *blob_path(const struct net *n, size_t i, const char *blob)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", n->c.nodes[i].dir, blob, blob + 2);
    return path;
}

/* Does node I hold the blob BLOB, whole: its bytes hash to its id? */
static bool holds(const struct net *n, size_t i, const char *blob, uint64_t bytes)
{
    size_t len = 0;
    uint8_t *b = file_bytes(blob_path(n, i, blob), &len);
    if (b == NULL)
        return false;
    uint8_t hash[32];
    char hex[KEY_HEX];
    ehr_sha256(hash, b, len);
    free(b);
    ehr_hex_encode(hex, hash, 32);
    return len == bytes && strcmp(hex, blob) == 0;
}

static bool wait_holds(const struct net *n, size_t i, const char *blob, uint64_t bytes)
{
    uint64_t end = mono_ms() + REPLICATE_WAIT_MS;
    while (mono_ms() < end) {
        if (holds(n, i, blob, bytes))
            return true;
        usleep(50000);
    }
    return false;
}

/* Files under node I's blob store whose names begin with PREFIX. */
static unsigned blob_files(const struct net *n, size_t i, const char *prefix)
{
    char top[600];
    snprintf(top, sizeof top, "%s/blobs", n->c.nodes[i].dir);
    DIR *d = opendir(top);
    if (d == NULL)
        return 0;
    unsigned count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strlen(e->d_name) != 2)
            continue;
        char sub[700];
        snprintf(sub, sizeof sub, "%s/%s", top, e->d_name);
        DIR *s = opendir(sub);
        if (s == NULL)
            continue;
        struct dirent *f;
        while ((f = readdir(s)) != NULL)
            if (strcmp(f->d_name, ".") != 0 && strcmp(f->d_name, "..") != 0 &&
                strncmp(f->d_name, prefix, strlen(prefix)) == 0)
                count++;
        closedir(s);
    }
    closedir(d);
    return count;
}

static bool log_has(const struct net *n, size_t i, const char *text)
{
    size_t len = 0;
    uint8_t *b = file_bytes(n->c.nodes[i].log, &len);
    if (b == NULL)
        return false;
    b[len] = '\0';
    bool found = strstr((const char *)b, text) != NULL;
    free(b);
    return found;
}

static void wait_serving(struct net *n, size_t i)
{
    struct cluster_status st;
    uint64_t end = mono_ms() + LEADER_WAIT_MS;
    while (cluster_status(&n->c, i, &st) != 0 && mono_ms() < end)
        usleep(50000);
    assert_int_equal(cluster_status(&n->c, i, &st), 0);
}

/* `record get RECORD` as the patient through node VIA into NAME: the exact bytes back. */
static void get_back(struct net *n, const char *record, size_t via, const char *name,
                     const uint8_t *data, size_t len, const char *warned)
{
    struct proc_result r = run(n, "record", "get", record, "--key", "patient.key", "--out", name,
                               "--node", n->node[via]);
    assert_ok(&r);
    if (warned != NULL && strstr(r.err, warned) == NULL)
        fail_msg("no warning naming %s: %s", warned, r.err);
    proc_result_free(&r);
    size_t back_len = 0;
    uint8_t *back = file_bytes(proc_path(n->c.root, name), &back_len);
    assert_non_null(back);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, data, len);
    free(back);
}

static void test_replicated_read_from_a_replica_and_repaired(void **state)
{
    struct net *n = *state;
    struct proc_result r = run(n, "keygen", "--out", "patient.key", "--no-passphrase");
    assert_ok(&r);
    proc_result_free(&r);
    r = run(n, "patient", "enroll", "--patient", "patient.key", "--key", "node0.key", "--node",
            n->node[0], "--wait");
    assert_ok(&r);
    proc_result_free(&r);
    r = run(n, "patient", "public-keys", "--patient", "patient.key", "--out", "patient.pub.json");
    assert_ok(&r);
    proc_result_free(&r);
    uint8_t *data = malloc(DATA_BYTES);
    assert_non_null(data);
    for (size_t i = 0; i < DATA_BYTES; i++)
        data[i] = (uint8_t)(i * 2654435761u >> 13);
    FILE *f = fopen(proc_path(n->c.root, "scan.dcm"), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, DATA_BYTES, f), DATA_BYTES);
    assert_int_equal(fclose(f), 0);
    r = run(n, "record", "add", "scan.dcm", "--patient", "patient.pub.json", "--type", "imaging",
            "--key", "node0.key", "--node", n->node[0], "--wait", "--json");
    assert_ok(&r);
    json_error_t error;
    json_t *out = json_loads(r.out, 0, &error);
    assert_non_null(out);
    char record[KEY_HEX], blob[KEY_HEX];
    snprintf(record, sizeof record, "%s", json_string_value(json_object_get(out, "record_id")));
    snprintf(blob, sizeof blob, "%s", json_string_value(json_object_get(out, "blob_id")));
    uint64_t bytes = (uint64_t)json_integer_value(json_object_get(out, "ciphertext_bytes"));
    json_decref(out);
    proc_result_free(&r);
    assert_int_equal(strlen(blob), 64);
    assert_true(bytes > 2 * 256 * 1024);

    /* Replicated: the two other nodes hold the same bytes. */
    assert_true(holds(n, 0, blob, bytes));
    assert_true(wait_holds(n, 1, blob, bytes));
    assert_true(wait_holds(n, 2, blob, bytes));
    assert_int_equal(blob_files(n, 1, ".tmp-"), 0);
    assert_int_equal(blob_files(n, 2, ".tmp-"), 0);

    /* The custodian's copy deleted: record get falls back to a replica. */
    assert_int_equal(unlink(blob_path(n, 0, blob)), 0);
    get_back(n, record, 1, "back1.dcm", data, DATA_BYTES, n->node[0]);

    /* The custodian's node down: the same. */
    assert_int_equal(cluster_stop(&n->c, 0), 0);
    get_back(n, record, 2, "back2.dcm", data, DATA_BYTES, n->node[0]);

    /* Back with its blobs/ directory wiped: it repairs its copy. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/blobs'", n->c.nodes[0].dir);
    assert_int_equal(system(cmd), 0);
    cluster_start(&n->c, 0);
    wait_serving(n, 0);
    assert_true(wait_holds(n, 0, blob, bytes));
    get_back(n, record, 0, "back3.dcm", data, DATA_BYTES, NULL);

    /* A replica back without its copy while the custodian's is altered: the
     * custodian is asked first, its blob does not hash to the id and is
     * discarded, and the copy comes from the other replica. */
    assert_int_equal(cluster_stop(&n->c, 2), 0);
    assert_int_equal(unlink(blob_path(n, 2, blob)), 0);
    f = fopen(blob_path(n, 0, blob), "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 300000, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, 300000, SEEK_SET), 0);
    fputc(c ^ 0x40, f);
    assert_int_equal(fclose(f), 0);
    cluster_start(&n->c, 2);
    wait_serving(n, 2);
    assert_true(wait_holds(n, 2, blob, bytes));
    assert_true(log_has(n, 2, "fetched blob discarded"));
    assert_int_equal(blob_files(n, 2, ".tmp-"), 0);
    assert_int_equal(blob_files(n, 2, ""), 1);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicated_read_from_a_replica_and_repaired),
    };
    return cmocka_run_group_tests(tests, net_setup, net_teardown);
}
