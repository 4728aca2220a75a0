/*
 * bench_reads - signed reads of a patient's audit trail through the API on
 * a loopback network of three real ehrd processes (tests/node/cluster.h):
 * GetAuditTrail calls per second, each with a freshly signed ReadAuth that
 * the node checks (window, one BIP-340 verification, who may read), against
 * a floor measured in the same run: GetStatus, the cheapest call of the API.
 *
 *   scripts/bench reads [--patients N] [--reads N] [--rounds N] [--inflight K]
 *                       [--keep]
 *
 * Set-up: --patients patients enrolled by member 0 (a hospital), each with
 * two records anchored by it and one consent granted to member 1 (a lab):
 * four audit events per patient. Then --rounds rounds, each --reads calls
 * of GetAuditTrail (the patient's own trail, signed by the patient, a
 * uniformly random patient per call) and --reads calls of GetStatus, the two
 * alternating which goes first, all to one follower over one HTTP/2
 * connection with --inflight calls in flight. Every answer is checked (OK,
 * and for the trail its four events).
 *
 * Signing is not timed: a round's requests are signed and packed before its
 * clock starts (the cost of one signature is printed on its own). The node's
 * CPU per call comes from GetStatus's cpu_user_ms + cpu_system_ms, read
 * before and after each phase on another connection (outside the clock).
 * The client runs on the same machine as the three nodes and shares its
 * cores. Prints a table and one JSON line; nothing here judges the figures
 * (docs/BENCHMARKS.md records them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cluster.h"
#include "ehr/v1/node.pb-c.h"
#include "read_auth.h"

enum { NODES = 3, LEADER_WAIT_MS = 30000, CALL_MS = 10000, EVENTS_PER_PATIENT = 4 };

#define DIE(...) cluster_die("bench_reads", __VA_ARGS__)

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) % n;
}

/* ------------------------------------------------------------- set-up */

/* Submit COUNT envelopes (taken) with INFLIGHT at a time; every one must commit OK. */
static void load_all(struct cluster *c, struct cluster_tx *txs, size_t count, const char *what)
{
    for (size_t i = 0; i < count; i++)
        txs[i].status = txs[i].result_code = -1;
    size_t committed = cluster_load(c, txs, count, 64, 300000, NULL, NULL);
    size_t ok = 0;
    for (size_t i = 0; i < count; i++)
        ok += txs[i].committed && txs[i].result_code == 0;
    if (committed != count || ok != count)
        DIE("%s: %zu of %zu committed, %zu with an OK result", what, committed, count, ok);
    cluster_txs_free(txs, count);
}

static void populate(struct cluster *c, ehr_identity *patients, size_t n)
{
    struct cluster_tx *txs = calloc(n, sizeof *txs);
    if (txs == NULL)
        DIE("out of memory");
    for (size_t i = 0; i < n; i++)
        cluster_tx_enroll(c, 0, &patients[i], &txs[i].envelope, &txs[i].envelope_len, txs[i].hash);
    load_all(c, txs, n, "enrolments");
    txs = calloc(3 * n, sizeof *txs);
    if (txs == NULL)
        DIE("out of memory");
    uint64_t until = wall_ms() + 86400000ull;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = patients[i].signing.public_key;
        struct cluster_tx *t = &txs[3 * i];
        cluster_tx_anchor(c, 0, p, EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING, &t[0].envelope,
                          &t[0].envelope_len, t[0].hash);
        cluster_tx_anchor(c, 0, p, EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT, &t[1].envelope,
                          &t[1].envelope_len, t[1].hash);
        cluster_tx_grant(c, &patients[i].signing, c->nodes[1].node_key,
                         EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING, until, &t[2].envelope,
                         &t[2].envelope_len, t[2].hash);
    }
    load_all(c, txs, 3 * n, "anchors and consents");
    if (cluster_wait_converged(c, LEADER_WAIT_MS) == UINT64_MAX)
        DIE("the nodes did not converge");
}

/* ----------------------------------------------------------- one phase */

struct req {
    uint8_t *bytes;
    size_t len;
};

/* --reads GetAuditTrail requests, each for a random patient signed by that patient. */
static struct req *sign_reads(const struct cluster *c, const ehr_identity *patients, size_t n,
                              size_t count, uint64_t *seed)
{
    struct req *r = calloc(count, sizeof *r);
    if (r == NULL)
        DIE("out of memory");
    uint64_t now = wall_ms();
    for (size_t k = 0; k < count; k++) {
        const ehr_identity *p = &patients[rng_below(seed, n)];
        Ehr__V1__GetAuditTrailRequest q = EHR__V1__GET_AUDIT_TRAIL_REQUEST__INIT;
        q.patient_key = (ProtobufCBinaryData){32, (uint8_t *)p->signing.public_key};
        struct node_read_auth_signed auth;
        if (node_read_auth_sign(&auth, &q.base, &q.auth, c->chain_id, "/ehr.v1.Node/GetAuditTrail",
                                &p->signing, now - 1000, now + 240000) != 0)
            DIE("signing a read failed");
        r[k].len = ehr__v1__get_audit_trail_request__get_packed_size(&q);
        r[k].bytes = malloc(r[k].len + 1);
        if (r[k].bytes == NULL)
            DIE("out of memory");
        ehr__v1__get_audit_trail_request__pack(&q, r[k].bytes);
    }
    return r;
}

static void reqs_free(struct req *r, size_t count)
{
    for (size_t k = 0; r != NULL && k < count; k++)
        free(r[k].bytes);
    free(r);
}

struct phase {
    uv_loop_t loop;
    struct rpc_client *client;
    const char *path;
    const struct req *reqs; /* NULL: GetStatus, an empty request */
    size_t count, next, done, inflight, inflight_max;
    uint64_t *lat_us; /* per call */
    uint64_t *sent_us;
    size_t bad;
    int bad_status;
};

struct slot {
    struct phase *ph;
    size_t k;
};

static void send_one(struct phase *ph);

static void on_done(void *data, enum rpc_status status, const char *message,
                    const uint8_t *response, size_t response_len)
{
    (void)message;
    struct slot *s = data;
    struct phase *ph = s->ph;
    ph->lat_us[s->k] = cluster_now_us() - ph->sent_us[s->k];
    bool good = status == RPC_STATUS_OK;
    if (good && ph->reqs != NULL) {
        Ehr__V1__GetAuditTrailResponse *a =
            ehr__v1__get_audit_trail_response__unpack(NULL, response_len, response);
        good = a != NULL && a->n_events == EVENTS_PER_PATIENT;
        if (a != NULL)
            ehr__v1__get_audit_trail_response__free_unpacked(a, NULL);
    }
    if (!good) {
        ph->bad++;
        ph->bad_status = (int)status;
    }
    free(s);
    ph->inflight--;
    ph->done++;
    while (ph->inflight < ph->inflight_max && ph->next < ph->count)
        send_one(ph);
    if (ph->done == ph->count)
        uv_stop(&ph->loop);
}

static void send_one(struct phase *ph)
{
    size_t k = ph->next++;
    struct slot *s = malloc(sizeof *s);
    if (s == NULL)
        DIE("out of memory");
    *s = (struct slot){ph, k};
    static const uint8_t empty[1];
    const uint8_t *b = ph->reqs != NULL ? ph->reqs[k].bytes : empty;
    size_t len = ph->reqs != NULL ? ph->reqs[k].len : 0;
    ph->sent_us[k] = cluster_now_us();
    ph->inflight++;
    if (rpc_client_unary(ph->client, ph->path, b, len, CALL_MS, on_done, s, NULL) != 0)
        DIE("rpc_client_unary failed");
}

static void on_connect(struct rpc_client *client, int status, void *data)
{
    (void)client;
    if (status != 0)
        DIE("connecting: %d", status);
    uv_stop(data);
}

/* The node's CPU time so far (user + system), in ms. */
static uint64_t node_cpu_ms(struct cluster *c, size_t i)
{
    struct rpc_result res;
    if (cluster_call(c, i, "GetStatus", (const uint8_t *)"", 0, CALL_MS, &res) != 0)
        DIE("GetStatus: %s", res.message);
    Ehr__V1__GetStatusResponse *s =
        ehr__v1__get_status_response__unpack(NULL, res.response_len, res.response);
    if (s == NULL)
        DIE("GetStatus: an answer that does not parse");
    uint64_t ms = s->cpu_user_ms + s->cpu_system_ms;
    ehr__v1__get_status_response__free_unpacked(s, NULL);
    rpc_result_clear(&res);
    return ms;
}

struct tally {
    double seconds;
    uint64_t calls, cpu_ms;
    uint64_t *lat_us; /* every call's latency, over all rounds */
};

/* Run one phase of COUNT calls on PH's open connection; add it to T. */
static void run_phase(struct cluster *c, size_t node, struct phase *ph, const char *path,
                      const struct req *reqs, size_t count, struct tally *t)
{
    ph->path = path;
    ph->reqs = reqs;
    ph->count = count;
    ph->next = ph->done = ph->inflight = ph->bad = 0;
    ph->lat_us = t->lat_us + t->calls;
    uint64_t cpu0 = node_cpu_ms(c, node);
    uint64_t t0 = cluster_now_us();
    while (ph->inflight < ph->inflight_max && ph->next < ph->count)
        send_one(ph);
    uv_run(&ph->loop, UV_RUN_DEFAULT);
    uint64_t t1 = cluster_now_us();
    t->cpu_ms += node_cpu_ms(c, node) - cpu0;
    if (ph->bad != 0)
        DIE("%s: %zu of %zu calls failed (last status %s)", path, ph->bad, count,
            rpc_status_name(ph->bad_status));
    t->seconds += (double)(t1 - t0) / 1e6;
    t->calls += count;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t pct(const uint64_t *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

/* ---------------------------------------------------------------- main */

static uint64_t arg_u64(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        DIE("%s needs a value", argv[*i]);
    char *end;
    unsigned long long v = strtoull(argv[++*i], &end, 10);
    if (*end != 0 || v == 0)
        DIE("%s: not a positive number: %s", argv[*i - 1], argv[*i]);
    return v;
}

int main(int argc, char **argv)
{
    size_t patients_n = 200, reads = 4000, rounds = 5, inflight = 16;
    bool keep = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--patients") == 0)
            patients_n = arg_u64(argc, argv, &i);
        else if (strcmp(argv[i], "--reads") == 0)
            reads = arg_u64(argc, argv, &i);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = arg_u64(argc, argv, &i);
        else if (strcmp(argv[i], "--inflight") == 0)
            inflight = arg_u64(argc, argv, &i);
        else if (strcmp(argv[i], "--keep") == 0)
            keep = true;
        else
            DIE("usage: bench_reads [--patients N] [--reads N] [--rounds N] [--inflight K] "
                "[--keep]");
    }
    if (inflight > 100)
        DIE("--inflight: at most 100 (the server's streams per connection are 128)");
    if (ehr_crypto_init() != 0)
        DIE("crypto init failed");

    static struct cluster c;
    static const char *const roles[] = {"hospital", "lab", "regulator", NULL};
    struct cluster_limits lim = {.roles = roles};
    cluster_create(&c, NODES, EHRD_PATH, EHRCTL_PATH, &lim);
    for (size_t i = 0; i < NODES; i++)
        cluster_start(&c, i);
    size_t leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    if (leader == SIZE_MAX)
        DIE("no leader");
    ehr_identity *patients = calloc(patients_n, sizeof *patients);
    if (patients == NULL)
        DIE("out of memory");
    double t_setup = (double)cluster_now_us();
    populate(&c, patients, patients_n);
    t_setup = ((double)cluster_now_us() - t_setup) / 1e6;
    leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    size_t node = (leader + 1) % NODES; /* a follower */

    /* One signature's cost, on its own (not in the timed phases). */
    uint64_t seed = 0x5eed;
    double ts0 = (double)cluster_now_us();
    size_t probe = reads < 1000 ? reads : 1000;
    reqs_free(sign_reads(&c, patients, patients_n, probe, &seed), probe);
    double sign_us = ((double)cluster_now_us() - ts0) / (double)probe;

    static struct phase ph;
    ph.inflight_max = inflight;
    if (uv_loop_init(&ph.loop) != 0)
        DIE("uv_loop_init");
    if (rpc_client_connect(&ph.loop, "127.0.0.1", c.nodes[node].rpc_port, NULL, on_connect,
                           &ph.loop, &ph.client) != 0)
        DIE("rpc_client_connect");
    uv_run(&ph.loop, UV_RUN_DEFAULT);
    ph.sent_us = calloc(reads, sizeof *ph.sent_us);
    struct tally tr = {.lat_us = calloc(reads * rounds, sizeof(uint64_t))};
    struct tally ts = {.lat_us = calloc(reads * rounds, sizeof(uint64_t))};
    if (ph.sent_us == NULL || tr.lat_us == NULL || ts.lat_us == NULL)
        DIE("out of memory");
    for (size_t r = 0; r < rounds; r++) {
        struct req *q = sign_reads(&c, patients, patients_n, reads, &seed);
        for (int half = 0; half < 2; half++) {
            if ((half == 0) == (r % 2 == 0))
                run_phase(&c, node, &ph, "/ehr.v1.Node/GetAuditTrail", q, reads, &tr);
            else
                run_phase(&c, node, &ph, "/ehr.v1.Node/GetStatus", NULL, reads, &ts);
        }
        reqs_free(q, reads);
    }
    rpc_client_close(ph.client, NULL, NULL);
    uv_run(&ph.loop, UV_RUN_DEFAULT);
    uv_loop_close(&ph.loop);

    qsort(tr.lat_us, tr.calls, sizeof(uint64_t), cmp_u64);
    qsort(ts.lat_us, ts.calls, sizeof(uint64_t), cmp_u64);
    double rps = (double)tr.calls / tr.seconds, sps = (double)ts.calls / ts.seconds;
    double cpu_read_us = 1000.0 * (double)tr.cpu_ms / (double)tr.calls;
    double cpu_status_us = 1000.0 * (double)ts.cpu_ms / (double)ts.calls;
    printf("signed reads through the API: 3 ehrd on loopback, %zu patients x %d audit events, "
           "node %zu (a follower), one HTTP/2 connection, %zu in flight, %zu rounds x %zu calls "
           "(set-up %.1f s)\n",
           patients_n, EVENTS_PER_PATIENT, node, inflight, rounds, reads, t_setup);
    printf("signing one ReadAuth (client, not timed below): %.1f us\n", sign_us);
    printf("%-28s %12s %10s %10s %16s\n", "call", "calls/s", "p50 us", "p99 us",
           "node CPU us/call");
    printf("%-28s %12.0f %10llu %10llu %16.1f\n", "GetAuditTrail (signed)", rps,
           (unsigned long long)pct(tr.lat_us, tr.calls, 0.50),
           (unsigned long long)pct(tr.lat_us, tr.calls, 0.99), cpu_read_us);
    printf("%-28s %12.0f %10llu %10llu %16.1f\n", "GetStatus (floor)", sps,
           (unsigned long long)pct(ts.lat_us, ts.calls, 0.50),
           (unsigned long long)pct(ts.lat_us, ts.calls, 0.99), cpu_status_us);
    printf("reads/s over the floor's calls/s: %.2f; node CPU per read over per GetStatus: %.2f\n",
           rps / sps, cpu_status_us > 0 ? cpu_read_us / cpu_status_us : 0.0);
    printf("{\"bench\":\"reads\",\"patients\":%zu,\"events_per_patient\":%d,\"inflight\":%zu,"
           "\"rounds\":%zu,\"calls_per_round\":%zu,\"sign_us\":%.1f,"
           "\"reads_per_s\":%.0f,\"read_p50_us\":%llu,\"read_p99_us\":%llu,"
           "\"read_node_cpu_us\":%.1f,\"status_per_s\":%.0f,\"status_p50_us\":%llu,"
           "\"status_p99_us\":%llu,\"status_node_cpu_us\":%.1f,\"ratio\":%.3f}\n",
           patients_n, EVENTS_PER_PATIENT, inflight, rounds, reads, sign_us, rps,
           (unsigned long long)pct(tr.lat_us, tr.calls, 0.50),
           (unsigned long long)pct(tr.lat_us, tr.calls, 0.99), cpu_read_us, sps,
           (unsigned long long)pct(ts.lat_us, ts.calls, 0.50),
           (unsigned long long)pct(ts.lat_us, ts.calls, 0.99), cpu_status_us, rps / sps);

    for (size_t i = 0; i < NODES; i++)
        cluster_stop(&c, i);
    cluster_destroy(&c, keep);
    for (size_t i = 0; i < patients_n; i++) {
        ehr_signing_key_wipe(&patients[i].signing);
        ehr_kx_key_wipe(&patients[i].kx);
    }
    free(patients);
    free(ph.sent_us);
    free(tr.lat_us);
    free(ts.lat_us);
    return 0;
}
