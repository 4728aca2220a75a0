/*
 * cluster.c - a local network of ehrd processes for tests (see cluster.h).
 */
#include "cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "config.h"
#include "contracts.h"
#include "ehr/v1/node.pb-c.h"
#include "ehr_crypto.h"
#include "ledger_testutil.h"
#include "proc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "cluster: %s:%d: %s\n", __FILE__, __LINE__, #cond);                    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

uint64_t cluster_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

enum {
    /* Ports handed to nodes come from [CLUSTER_PORT_MIN, the kernel's
     * ephemeral range) (see free_port). */
    CLUSTER_PORT_MIN = 20000,
    CLUSTER_PORT_ROOM_MIN = 1000, /* fewer ports below the range: use the old way */
    CLUSTER_PORT_TRIES_MAX = 1000,
};

/* The first port of the kernel's ephemeral range (ip_local_port_range). */
static unsigned ephemeral_port_min(void)
{
    unsigned low = 32768, high = 60999; /* Linux's default */
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%u %u", &low, &high) != 2)
            low = 32768;
        fclose(f);
    }
    return low;
}

/* Whether PORT on loopback can be bound now, as a node binds it (libuv sets
 * SO_REUSEADDR, so a connection of an earlier run in TIME_WAIT does not
 * count). With PORT 0, the kernel picks one: *PORT gets it. */
static bool port_bindable(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    int on = 1;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(*port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    socklen_t len = sizeof a;
    if (ok && *port == 0) {
        CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
        *port = ntohs(a.sin_port);
    }
    close(fd);
    return ok;
}

/*
 * A loopback port for a node of C to listen on, free now and not one of
 * C's. Taken from below the kernel's ephemeral range: a port from inside
 * it (what bind to port 0 gives) is free only until some outgoing
 * connection (the nodes' dials, this harness's calls, anything on the
 * machine) is given it as its source port, and the node that starts later
 * then fails with "address already in use". Below the range only a bind
 * takes a port, and the pick is random, so that clusters of tests running
 * at once rarely try the same one.
 */
static uint16_t free_port(const struct cluster *c)
{
    unsigned low = ephemeral_port_min();
    for (int tries = 0; tries < CLUSTER_PORT_TRIES_MAX; tries++) {
        uint16_t port = 0;
        if (low >= CLUSTER_PORT_MIN + CLUSTER_PORT_ROOM_MIN) {
            uint32_t r;
            ehr_random_bytes(&r, sizeof r);
            port = (uint16_t)(CLUSTER_PORT_MIN + r % (low - CLUSTER_PORT_MIN));
        }
        if (!port_bindable(&port))
            continue;
        bool taken = false;
        for (size_t i = 0; i < c->count; i++)
            taken |= port == c->nodes[i].peer_port || port == c->nodes[i].rpc_port;
        if (!taken)
            return port;
    }
    fprintf(stderr, "cluster: no free loopback port in %d tries\n", CLUSTER_PORT_TRIES_MAX);
    abort();
}

/* Run ehrctl with ARGS (NULL-terminated) and stdout to OUT (NULL: /dev/null); abort unless it
 * exits 0. Its stderr is the test's, so a failure shows why. */
static void ehrctl_run(const struct cluster *c, const char *out, const char *const *args)
{
    struct proc_spec spec = {.path = c->ehrctl, .args = args, .env_inherit = true};
    spec.out = (struct proc_stream){out != NULL ? PROC_TO_FILE : PROC_TO_NULL, out};
    spec.err.to = PROC_TO_INHERIT;
    struct proc_result r = proc_run(&spec);
    if (r.status != 0) {
        fprintf(stderr, "cluster: command failed: %s", c->ehrctl);
        for (int i = 0; args[i]; i++)
            fprintf(stderr, " %s", args[i]);
        fprintf(stderr, "\n");
        abort();
    }
}

static void pathf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pathf(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, CLUSTER_PATH_BYTES, fmt, ap);
    va_end(ap);
    CHECK(n > 0 && n < CLUSTER_PATH_BYTES);
}

static void append_file(FILE *to, const char *path)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        CHECK(fwrite(buf, 1, n, to) == n);
    fclose(f);
}

/* Write the cluster's limits into node I's config. */
static void config_limits_write(const struct cluster *c, const struct cluster_node *n)
{
    const struct cluster_limits *limits = &c->limits;
    struct node_config cfg;
    ehr_diag err;
    CHECK(node_config_load(n->config, &cfg, &err) == 0);
    cfg.limits.submit_rate_per_s =
        limits->submit_rate_per_s ? limits->submit_rate_per_s : NODE_CONFIG_SUBMIT_RATE_PER_S_MAX;
    cfg.limits.submit_burst =
        limits->submit_burst ? limits->submit_burst : NODE_CONFIG_SUBMIT_BURST_MAX;
    if (limits->block_tx_count)
        cfg.limits.block_tx_count = limits->block_tx_count;
    if (limits->block_flush_ms)
        cfg.limits.block_flush_ms = limits->block_flush_ms;
    if (limits->raft_tick_ms)
        cfg.limits.raft_tick_ms = limits->raft_tick_ms;
    if (limits->snapshot_entries)
        cfg.limits.snapshot_entries = limits->snapshot_entries;
    if (limits->mempool_tx_count)
        cfg.limits.mempool_tx_count = limits->mempool_tx_count;
    CHECK(node_config_write(n->config, &cfg, true, &err) == 0);
    node_config_free(&cfg);
}

/* `ehrctl init` for node I (with --join VIA when VIA is not NULL), then its limits. */
static void node_prepare(struct cluster *c, size_t i, const char *via)
{
    struct cluster_node *n = &c->nodes[i];
    char key[CLUSTER_PATH_BYTES], genesis[CLUSTER_PATH_BYTES], peer[64], rpcl[64];
    pathf(key, "%s/node%zu.key", c->root, i);
    pathf(genesis, "%s/genesis.pb", c->root);
    pathf(n->dir, "%s/node%zu", c->root, i);
    pathf(n->config, "%s/node%zu/ehrd.json", c->root, i);
    pathf(n->log, "%s/node%zu.log", c->root, i);
    snprintf(peer, sizeof peer, "127.0.0.1:%u", n->peer_port);
    snprintf(rpcl, sizeof rpcl, "127.0.0.1:%u", n->rpc_port);
    ehrctl_run(c, NULL,
               PROC_ARGS("init", "--genesis", genesis, "--key", key, "--data", n->dir,
                         "--peer-listen", peer, "--rpc-listen", rpcl, via != NULL ? "--join" : NULL,
                         via, NULL));
    config_limits_write(c, n);
}

void cluster_join_prepare(struct cluster *c, size_t i, size_t via)
{
    CHECK(i < c->count && via < c->count && c->nodes[i].dir[0] == '\0');
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", c->nodes[via].rpc_port);
    node_prepare(c, i, addr);
}

void cluster_member_entry(const struct cluster *c, size_t i, char path[CLUSTER_PATH_BYTES])
{
    CHECK(i < c->count);
    pathf(path, "%s/member%zu.json", c->root, i);
}

void cluster_create(struct cluster *c, size_t count, const char *ehrd, const char *ehrctl,
                    const struct cluster_limits *limits)
{
    CHECK(count >= 1 && count <= CLUSTER_NODES_MAX);
    memset(c, 0, sizeof *c);
    c->root = proc_dir_make("cluster");
    c->count = count;
    static const struct cluster_limits none = {0};
    c->limits = limits != NULL ? *limits : none;
    size_t founding = c->limits.founding != 0 ? c->limits.founding : count;
    CHECK(founding <= count);
    snprintf(c->ehrd, sizeof c->ehrd, "%s", ehrd);
    snprintf(c->ehrctl, sizeof c->ehrctl, "%s", ehrctl);
    snprintf(c->chain_id, sizeof c->chain_id, "ehr-cluster-test");
    char members[CLUSTER_PATH_BYTES], genesis[CLUSTER_PATH_BYTES];
    pathf(members, "%s/members.json", c->root);
    pathf(genesis, "%s/genesis.pb", c->root);
    FILE *mf = fopen(members, "w");
    CHECK(mf != NULL);
    fputs("{\"members\": [", mf);
    static const char *default_roles[] = {"hospital", "lab", "insurer", "pharmacy", "regulator"};
    const char *const *roles =
        limits != NULL && limits->roles != NULL ? limits->roles : default_roles;
    for (size_t i = 0; i < count; i++) {
        struct cluster_node *n = &c->nodes[i];
        n->peer_port = free_port(c);
        n->rpc_port = free_port(c);
        char key[CLUSTER_PATH_BYTES], name[64], addr[64], entry[CLUSTER_PATH_BYTES];
        pathf(key, "%s/node%zu.key", c->root, i);
        snprintf(name, sizeof name, "Member %zu", i);
        snprintf(addr, sizeof addr, "127.0.0.1:%u", n->peer_port);
        pathf(entry, "%s/member%zu.json", c->root, i);
        ehrctl_run(
            c, NULL,
            PROC_ARGS("keygen", "--out", key, "--no-passphrase", "--kdf", "interactive", NULL));
        ehrctl_run(c, entry,
                   PROC_ARGS("genesis", "member", "--key", key, "--name", name, "--role", roles[i],
                             "--address", addr, NULL));
        if (i < founding) {
            if (i > 0)
                fputs(",", mf);
            append_file(mf, entry);
        }
        ehr_keyfile_info info;
        CHECK(ehr_keyfile_read_info(key, &info, NULL) == 0);
        memcpy(n->node_key, info.signing_public_key, EHR_SCHNORR_PUBLIC_BYTES);
        n->identity = malloc(sizeof *n->identity);
        CHECK(n->identity != NULL);
        CHECK(ehr_keyfile_load(key, n->identity, NULL, NULL, 0, NULL) == 0);
    }
    fputs("]}\n", mf);
    fclose(mf);
    const char *emergency = limits != NULL ? limits->emergency_roles : NULL;
    ehrctl_run(c, NULL,
               PROC_ARGS("genesis", "--members", members, "--chain-id", c->chain_id, "--out",
                         genesis, emergency != NULL ? "--emergency-roles" : NULL, emergency, NULL));
    for (size_t i = 0; i < founding; i++)
        node_prepare(c, i, NULL);
}

void cluster_destroy(struct cluster *c, bool keep)
{
    for (size_t i = 0; i < c->count; i++)
        if (c->nodes[i].pid > 0)
            cluster_kill(c, i);
    for (size_t i = 0; i < c->count; i++) {
        if (c->nodes[i].identity == NULL)
            continue;
        ehr_identity_wipe(c->nodes[i].identity);
        free(c->nodes[i].identity);
        c->nodes[i].identity = NULL;
    }
    if (keep) {
        fprintf(stderr, "cluster: kept %s\n", c->root);
        ehr_free(c->root);
    } else {
        proc_dir_remove(c->root);
    }
    c->root = NULL;
}

/* Every node started and not yet reaped, for cluster_kill_all. */
enum { LIVE_MAX = 64 };
static pid_t live[LIVE_MAX];

static void live_add(pid_t pid)
{
    for (int i = 0; i < LIVE_MAX; i++)
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
}

static void live_remove(pid_t pid)
{
    for (int i = 0; i < LIVE_MAX; i++)
        if (live[i] == pid)
            live[i] = 0;
}

void cluster_kill_all(void)
{
    for (int i = 0; i < LIVE_MAX; i++)
        if (live[i] != 0) {
            proc_end(live[i], SIGKILL);
            live[i] = 0;
        }
}

void cluster_die(const char *prog, const char *fmt, ...)
{
    fprintf(stderr, "%s: ", prog);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cluster_kill_all();
    exit(1);
}

long cluster_arg_long(const char *prog, const char *name, const char *s, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > max)
        cluster_die(prog, "%s wants a number from 1 to %ld, not \"%s\"", name, max, s);
    return v;
}

pid_t cluster_start(struct cluster *c, size_t i)
{
    return cluster_start_env(c, i, NULL, NULL);
}

int cluster_start_all(struct cluster *c, char (*node)[32],
                      char (*hex)[2 * EHR_SCHNORR_PUBLIC_BYTES + 1], uint64_t leader_wait_ms)
{
    for (size_t i = 0; i < c->count; i++) {
        cluster_start(c, i);
        if (node != NULL)
            snprintf(node[i], sizeof node[i], "127.0.0.1:%u", c->nodes[i].rpc_port);
        if (hex != NULL)
            ehr_hex_encode(hex[i], c->nodes[i].node_key, EHR_SCHNORR_PUBLIC_BYTES);
    }
    return cluster_wait_leader(c, leader_wait_ms) == SIZE_MAX ? -1 : 0;
}

void cluster_stop_all(struct cluster *c)
{
    for (size_t i = 0; i < c->count; i++)
        if (c->nodes[i].pid > 0)
            cluster_stop(c, i);
    cluster_destroy(c, false);
}

int cluster_wait_exit(struct cluster *c, size_t i, uint64_t timeout_ms)
{
    struct cluster_node *n = &c->nodes[i];
    if (n->pid == 0)
        return -1;
    int status = proc_wait(n->pid, timeout_ms, NULL);
    if (status == PROC_RUNNING)
        return -1;
    live_remove(n->pid);
    n->pid = 0;
    return status;
}

pid_t cluster_start_env(struct cluster *c, size_t i, const char *name, const char *value)
{
    struct cluster_node *n = &c->nodes[i];
    CHECK(n->pid == 0);
    char entry[256];
    const char *env[] = {entry, NULL};
    if (name != NULL) {
        int len = snprintf(entry, sizeof entry, "%s=%s", name, value);
        CHECK(len > 0 && (size_t)len < sizeof entry);
    }
    struct proc_spec spec = {.path = c->ehrd,
                             .args = PROC_ARGS("--config", n->config, NULL),
                             .env = name != NULL ? env : NULL,
                             .env_inherit = true,
                             .out = {PROC_TO_APPEND, n->log},
                             .err = {PROC_TO_STDOUT, NULL}};
    struct proc_child child;
    proc_spawn(&spec, &child);
    n->pid = child.pid;
    live_add(child.pid);
    return child.pid;
}

int cluster_stop(struct cluster *c, size_t i)
{
    struct cluster_node *n = &c->nodes[i];
    if (n->pid == 0)
        return -1;
    int status = proc_end(n->pid, SIGTERM);
    live_remove(n->pid);
    n->pid = 0;
    return status;
}

void cluster_kill(struct cluster *c, size_t i)
{
    struct cluster_node *n = &c->nodes[i];
    if (n->pid == 0)
        return;
    proc_end(n->pid, SIGKILL);
    live_remove(n->pid);
    n->pid = 0;
}

/* ---- blocking calls ---- */

int cluster_call(struct cluster *c, size_t i, const char *method, const uint8_t *request,
                 size_t request_len, uint64_t timeout_ms, struct rpc_result *result)
{
    memset(result, 0, sizeof *result);
    struct rpc_sync *s;
    ehr_diag err;
    if (rpc_sync_open("127.0.0.1", c->nodes[i].rpc_port, timeout_ms, &s, &err) != 0) {
        result->status = RPC_STATUS_UNAVAILABLE;
        snprintf(result->message, sizeof result->message, "%s", err.msg);
        return RPC_STATUS_UNAVAILABLE;
    }
    char path[128];
    snprintf(path, sizeof path, "/ehr.v1.Node/%s", method);
    int st = rpc_sync_unary(s, path, request, request_len, timeout_ms, result);
    rpc_sync_close(s);
    return st;
}

int cluster_status(struct cluster *c, size_t i, struct cluster_status *out)
{
    memset(out, 0, sizeof *out);
    struct rpc_result r;
    int st = cluster_call(c, i, "GetStatus", NULL, 0, 2000, &r);
    if (st != 0) {
        rpc_result_clear(&r);
        return st;
    }
    Ehr__V1__GetStatusResponse *s =
        ehr__v1__get_status_response__unpack(NULL, r.response_len, r.response);
    rpc_result_clear(&r);
    CHECK(s != NULL);
    out->role = s->role;
    out->term = s->term;
    out->commit_index = s->commit_index;
    out->applied_index = s->applied_index;
    out->tip_height = s->tip_height;
    CHECK(s->tip_hash.len == EHR_HASH_BYTES);
    memcpy(out->tip_hash, s->tip_hash.data, EHR_HASH_BYTES);
    if (s->leader_id.len == EHR_SCHNORR_PUBLIC_BYTES) {
        out->has_leader = true;
        memcpy(out->leader_id, s->leader_id.data, EHR_SCHNORR_PUBLIC_BYTES);
    }
    out->mempool_tx_count = s->mempool_tx_count;
    out->loop_turn_max_us = s->loop_turn_max_us;
    out->loop_turn_cpu_max_us = s->loop_turn_cpu_max_us;
    out->rss_bytes = s->rss_bytes;
    out->restore_term = s->restore_term;
    for (size_t p = 0; p < s->n_peers; p++)
        out->peers_connected +=
            s->peers[p]->link_state == EHR__V1__LINK_STATE__LINK_STATE_CONNECTED;
    ehr__v1__get_status_response__free_unpacked(s, NULL);
    return 0;
}

size_t cluster_wait_leader(struct cluster *c, uint64_t timeout_ms)
{
    uint64_t end = cluster_now_us() + timeout_ms * 1000;
    do {
        for (size_t i = 0; i < c->count; i++) {
            if (c->nodes[i].pid == 0)
                continue;
            struct cluster_status s;
            if (cluster_status(c, i, &s) != 0 || s.role != EHR__V1__NODE_ROLE__NODE_ROLE_LEADER)
                continue;
            return i;
        }
        usleep(10000);
    } while (cluster_now_us() < end);
    return SIZE_MAX;
}

int cluster_block(struct cluster *c, size_t i, uint64_t height, uint8_t hash[EHR_HASH_BYTES],
                  uint8_t proposer[EHR_SCHNORR_PUBLIC_BYTES])
{
    Ehr__V1__GetBlockRequest req = EHR__V1__GET_BLOCK_REQUEST__INIT;
    req.height = height;
    uint8_t buf[32];
    size_t len = ehr__v1__get_block_request__pack(&req, buf);
    struct rpc_result r;
    int st = cluster_call(c, i, "GetBlock", buf, len, 5000, &r);
    if (st == 0) {
        Ehr__V1__GetBlockResponse *b =
            ehr__v1__get_block_response__unpack(NULL, r.response_len, r.response);
        CHECK(b != NULL && b->block_hash.len == EHR_HASH_BYTES);
        memcpy(hash, b->block_hash.data, EHR_HASH_BYTES);
        if (proposer != NULL) {
            ledger_block_view v;
            CHECK(ledger_block_parse(b->block.data, b->block.len, &v, NULL) == 0);
            memcpy(proposer, v.header.proposer, EHR_SCHNORR_PUBLIC_BYTES);
            ledger_block_view_release(&v);
        }
        ehr__v1__get_block_response__free_unpacked(b, NULL);
    }
    rpc_result_clear(&r);
    return st;
}

/* ---- load ---- */

void cluster_tx_sign(const struct cluster *c, size_t member, Ehr__V1__TxBody *body,
                     uint8_t **envelope, size_t *len, uint8_t hash[EHR_HASH_BYTES])
{
    CHECK(member < c->count);
    CHECK(c->nodes[member].identity != NULL);
    cluster_tx_sign_as(c, &c->nodes[member].identity->signing, body, envelope, len, hash);
}

int cluster_submit_wait(struct cluster *c, size_t i, uint8_t *envelope, size_t len,
                        int *result_code)
{
    Ehr__V1__SubmitTransactionRequest q = EHR__V1__SUBMIT_TRANSACTION_REQUEST__INIT;
    q.envelope = (ProtobufCBinaryData){len, envelope};
    q.wait_for_commit = true;
    size_t n = ehr__v1__submit_transaction_request__get_packed_size(&q);
    uint8_t *buf = malloc(n);
    CHECK(buf != NULL);
    ehr__v1__submit_transaction_request__pack(&q, buf);
    struct rpc_result r;
    int st = cluster_call(c, i, "SubmitTransaction", buf, n, 30000, &r);
    free(buf);
    ehr_free(envelope);
    if (result_code != NULL) {
        *result_code = -1;
        Ehr__V1__SubmitTransactionResponse *a =
            st == 0 ? ehr__v1__submit_transaction_response__unpack(NULL, r.response_len, r.response)
                    : NULL;
        if (a != NULL && a->result != NULL)
            *result_code = a->result->code;
        if (a != NULL)
            ehr__v1__submit_transaction_response__free_unpacked(a, NULL);
    }
    rpc_result_clear(&r);
    return st;
}

void cluster_tx_sign_as(const struct cluster *c, const ehr_signing_key *key, Ehr__V1__TxBody *body,
                        uint8_t **envelope, size_t *len, uint8_t hash[EHR_HASH_BYTES])
{
    uint8_t nonce[EHR_TX_NONCE_BYTES];
    ehr_random_bytes(nonce, sizeof nonce);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    body->chain_id = (char *)c->chain_id;
    body->signer = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)key->public_key};
    body->nonce = (ProtobufCBinaryData){sizeof nonce, nonce};
    body->expiry_ms = (uint64_t)ts.tv_sec * 1000 + 3600 * 1000;
    size_t n = ehr__v1__tx_body__get_packed_size(body);
    uint8_t *bytes = malloc(n);
    CHECK(bytes != NULL);
    ehr__v1__tx_body__pack(body, bytes);
    CHECK(ledger_tx_envelope_build(bytes, n, key, envelope, len) == 0);
    if (hash != NULL)
        ledger_tx_hash(bytes, n, hash);
    free(bytes);
    body->chain_id = NULL;
    body->signer = body->nonce = (ProtobufCBinaryData){0, NULL};
}

void cluster_tx_enroll(const struct cluster *c, size_t member, ehr_identity *patient,
                       uint8_t **envelope, size_t *len, uint8_t hash[EHR_HASH_BYTES])
{
    ehr_identity fresh;
    if (patient == NULL)
        patient = &fresh;
    CHECK(ehr_identity_generate(patient, "patient") == 0);
    uint8_t msg[EHR_HASH_BYTES], sig[EHR_SCHNORR_SIG_BYTES];
    contracts_enroll_message(c->chain_id, c->nodes[member].node_key, patient->signing.public_key,
                             patient->kx.public_key, msg);
    CHECK(ehr_schnorr_sign(&patient->signing, msg, sig) == 0);
    Ehr__V1__PatientEnroll p = EHR__V1__PATIENT_ENROLL__INIT;
    p.patient_key = (ProtobufCBinaryData){32, patient->signing.public_key};
    p.patient_kx_key = (ProtobufCBinaryData){32, patient->kx.public_key};
    p.patient_signature = (ProtobufCBinaryData){sizeof sig, sig};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_PATIENT_ENROLL;
    body.patient_enroll = &p;
    cluster_tx_sign(c, member, &body, envelope, len, hash);
    if (patient == &fresh) {
        ehr_signing_key_wipe(&fresh.signing);
        ehr_kx_key_wipe(&fresh.kx);
    }
}

void cluster_tx_anchor(const struct cluster *c, size_t member,
                       const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES], int type,
                       uint8_t **envelope, size_t *len, uint8_t hash[EHR_HASH_BYTES])
{
    uint8_t ciphertext_hash[EHR_HASH_BYTES];
    ehr_random_bytes(ciphertext_hash, sizeof ciphertext_hash); /* one record's (the rules) */
    Ehr__V1__RecordAnchor a = EHR__V1__RECORD_ANCHOR__INIT;
    a.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)patient};
    a.record_type = type;
    a.encrypted_pointer = (ProtobufCBinaryData){4, (uint8_t *)"blob"};
    a.ciphertext_hash = (ProtobufCBinaryData){sizeof ciphertext_hash, ciphertext_hash};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
    body.record_anchor = &a;
    cluster_tx_sign(c, member, &body, envelope, len, hash);
}

void cluster_tx_grant(const struct cluster *c, const ehr_signing_key *patient,
                      const uint8_t grantee[EHR_SCHNORR_PUBLIC_BYTES], int type,
                      uint64_t valid_until_ms, uint8_t **envelope, size_t *len,
                      uint8_t hash[EHR_HASH_BYTES])
{
    Ehr__V1__ConsentGrant g = EHR__V1__CONSENT_GRANT__INIT;
    Ehr__V1__RecordType types[1] = {type};
    g.grantee_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)grantee};
    g.n_record_types = 1;
    g.record_types = types;
    g.purpose = EHR__V1__PURPOSE__PURPOSE_TREATMENT;
    g.valid_until_ms = valid_until_ms;
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_GRANT;
    body.consent_grant = &g;
    cluster_tx_sign_as(c, patient, &body, envelope, len, hash);
}

struct cluster_tx *cluster_txs_make(const struct cluster *c, size_t count)
{
    struct cluster_tx *txs = calloc(count, sizeof *txs);
    CHECK(txs != NULL);
    for (size_t i = 0; i < count; i++) {
        cluster_tx_enroll(c, 0, NULL, &txs[i].envelope, &txs[i].envelope_len, txs[i].hash);
        txs[i].status = -1;
        txs[i].result_code = -1;
    }
    return txs;
}

void cluster_txs_free(struct cluster_tx *txs, size_t count)
{
    for (size_t i = 0; i < count; i++)
        ehr_free(txs[i].envelope);
    free(txs);
}

enum { LOAD_ATTEMPTS_MAX = 100, LOAD_RETRY_DELAY_US = 20000 };

struct load_conn {
    struct rpc_client *client;
};

struct load {
    struct cluster *c;
    uv_loop_t loop;
    uv_timer_t timer;
    struct cluster_tx *txs;
    size_t count, next, inflight, inflight_max, done, committed, rr;
    struct load_conn conns[CLUSTER_NODES_MAX];
    size_t *retry; /* tx indexes waiting to be retried */
    uint64_t *retry_at;
    size_t retry_count;
    cluster_load_tick tick;
    void *tick_ctx;
    uint64_t deadline_us;
    bool stopping;       /* draining: submit nothing more */
    uint64_t rate_per_s; /* 0: a closed loop; else one start per 1/rate s from start_us */
    uint64_t start_us;
};

struct attempt {
    struct load *L;
    size_t tx, node;
};

static void submit_one(struct load *L, size_t tx);

static void conn_drop(struct load *L, size_t node)
{
    if (L->conns[node].client != NULL) {
        rpc_client_close(L->conns[node].client, NULL, NULL);
        L->conns[node].client = NULL;
    }
}

static void on_done(void *data, enum rpc_status status, const char *message,
                    const uint8_t *response, size_t response_len)
{
    (void)message;
    struct attempt *a = data;
    struct load *L = a->L;
    struct cluster_tx *t = &L->txs[a->tx];
    t->done_us = cluster_now_us();
    L->inflight--;
    bool retry = (status == RPC_STATUS_UNAVAILABLE || status == RPC_STATUS_RESOURCE_EXHAUSTED ||
                  status == RPC_STATUS_DEADLINE_EXCEEDED || status == RPC_STATUS_CANCELLED) &&
                 t->attempts < LOAD_ATTEMPTS_MAX;
    if (status == RPC_STATUS_OK) {
        Ehr__V1__SubmitTransactionResponse *r =
            ehr__v1__submit_transaction_response__unpack(NULL, response_len, response);
        CHECK(r != NULL && r->tx_hash.len == EHR_HASH_BYTES);
        CHECK(memcmp(r->tx_hash.data, t->hash, EHR_HASH_BYTES) == 0);
        t->committed = r->committed;
        t->height = r->height;
        t->position = r->position;
        /* A committed answer carries its result, except a resubmission's
         * (already on the ledger) which gives only the place. */
        if (r->result != NULL)
            t->result_code = (int)r->result->code;
        ehr__v1__submit_transaction_response__free_unpacked(r, NULL);
        t->status = 0;
        L->done++;
        L->committed += t->committed;
    } else if (retry && !L->stopping) {
        if (status == RPC_STATUS_UNAVAILABLE && L->c->nodes[a->node].pid == 0)
            conn_drop(L, a->node);
        L->retry[L->retry_count] = a->tx;
        L->retry_at[L->retry_count++] = cluster_now_us() + LOAD_RETRY_DELAY_US;
    } else {
        t->status = (int)status;
        L->done++;
    }
    free(a);
    while (!L->stopping && L->rate_per_s == 0 && L->inflight < L->inflight_max &&
           L->next < L->count)
        submit_one(L, L->next++);
    if (L->done == L->count)
        uv_stop(&L->loop);
}

static void submit_one(struct load *L, size_t tx)
{
    struct cluster *c = L->c;
    size_t node = SIZE_MAX;
    for (size_t k = 0; k < c->count; k++) {
        size_t i = (L->rr + k) % c->count;
        if (c->nodes[i].pid != 0) {
            node = i;
            break;
        }
    }
    CHECK(node != SIZE_MAX);
    L->rr = node + 1;
    if (L->conns[node].client == NULL)
        CHECK(rpc_client_connect(&L->loop, "127.0.0.1", c->nodes[node].rpc_port, NULL, NULL, NULL,
                                 &L->conns[node].client) == 0);
    struct cluster_tx *t = &L->txs[tx];
    Ehr__V1__SubmitTransactionRequest req = EHR__V1__SUBMIT_TRANSACTION_REQUEST__INIT;
    req.envelope = (ProtobufCBinaryData){t->envelope_len, t->envelope};
    req.wait_for_commit = true;
    size_t len = ehr__v1__submit_transaction_request__get_packed_size(&req);
    uint8_t *buf = malloc(len);
    CHECK(buf != NULL);
    ehr__v1__submit_transaction_request__pack(&req, buf);
    struct attempt *a = calloc(1, sizeof *a);
    CHECK(a != NULL);
    *a = (struct attempt){L, tx, node};
    t->sent_us = cluster_now_us();
    if (t->attempts == 0 && L->rate_per_s == 0)
        t->start_us = t->sent_us; /* paced: its slot, set by load_pace */
    t->attempts++;
    L->inflight++;
    int rc = rpc_client_unary(L->conns[node].client, "/ehr.v1.Node/SubmitTransaction", buf, len,
                              10000, on_done, a, NULL);
    free(buf);
    if (rc != 0) {
        /* The client is closing (its node went away): retry elsewhere. */
        L->inflight--;
        free(a);
        conn_drop(L, node);
        L->retry[L->retry_count] = tx;
        L->retry_at[L->retry_count++] = cluster_now_us() + LOAD_RETRY_DELAY_US;
    }
}

/* A paced load: start every transaction whose slot has come (as many as
 * INFLIGHT allows; one held back keeps its slot as its start). */
static void load_pace(struct load *L, uint64_t now)
{
    if (L->rate_per_s == 0 || now < L->start_us)
        return;
    uint64_t due = (now - L->start_us) * L->rate_per_s / 1000000 + 1;
    while (!L->stopping && L->next < L->count && L->next < due && L->inflight < L->inflight_max) {
        L->txs[L->next].start_us = L->start_us + L->next * 1000000 / L->rate_per_s;
        submit_one(L, L->next++);
    }
}

static void on_timer(uv_timer_t *h)
{
    struct load *L = h->data;
    uint64_t now = cluster_now_us();
    load_pace(L, now);
    if (L->tick != NULL)
        L->tick(L->tick_ctx, L->c, L->txs, L->count, now);
    for (size_t i = 0; i < L->c->count; i++)
        if (L->c->nodes[i].pid == 0)
            conn_drop(L, i);
    /* Take the due retries out first: submitting may queue new ones. */
    size_t keep = 0, due_count = 0;
    size_t *due = calloc(L->retry_count + 1, sizeof *due);
    CHECK(due != NULL);
    for (size_t i = 0; i < L->retry_count; i++) {
        if (L->retry_at[i] <= now && L->inflight + due_count < L->inflight_max) {
            due[due_count++] = L->retry[i];
        } else {
            L->retry[keep] = L->retry[i];
            L->retry_at[keep++] = L->retry_at[i];
        }
    }
    L->retry_count = keep;
    for (size_t i = 0; i < due_count && !L->stopping; i++)
        submit_one(L, due[i]);
    free(due);
    if (now > L->deadline_us || L->done == L->count)
        uv_stop(&L->loop);
}

static void on_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static size_t load_run(struct cluster *c, struct cluster_tx *txs, size_t count, size_t inflight,
                       uint64_t rate_per_s, uint64_t timeout_ms, cluster_load_tick tick,
                       void *tick_ctx)
{
    struct load *L = calloc(1, sizeof *L);
    CHECK(L != NULL);
    L->c = c;
    L->txs = txs;
    L->count = count;
    L->inflight_max = inflight;
    L->tick = tick;
    L->tick_ctx = tick_ctx;
    L->retry = calloc(count + 1, sizeof *L->retry);
    L->retry_at = calloc(count + 1, sizeof *L->retry_at);
    L->deadline_us = cluster_now_us() + timeout_ms * 1000;
    L->rate_per_s = rate_per_s;
    CHECK(uv_loop_init(&L->loop) == 0);
    uv_timer_init(&L->loop, &L->timer);
    L->timer.data = L;
    uv_timer_start(&L->timer, on_timer, rate_per_s == 0 ? 10 : 1, rate_per_s == 0 ? 10 : 1);
    L->start_us = cluster_now_us();
    if (rate_per_s != 0)
        load_pace(L, L->start_us);
    while (rate_per_s == 0 && L->inflight < L->inflight_max && L->next < L->count)
        submit_one(L, L->next++);
    uv_run(&L->loop, UV_RUN_DEFAULT);
    L->stopping = true;
    for (size_t i = 0; i < c->count; i++)
        conn_drop(L, i);
    uv_timer_stop(&L->timer);
    uv_run(&L->loop, UV_RUN_NOWAIT);
    uv_walk(&L->loop, on_close_walk, NULL);
    uv_run(&L->loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&L->loop) == 0);
    size_t committed = L->committed;
    free(L->retry);
    free(L->retry_at);
    free(L);
    return committed;
}

size_t cluster_load(struct cluster *c, struct cluster_tx *txs, size_t count, size_t inflight,
                    uint64_t timeout_ms, cluster_load_tick tick, void *tick_ctx)
{
    return load_run(c, txs, count, inflight, 0, timeout_ms, tick, tick_ctx);
}

size_t cluster_load_paced(struct cluster *c, struct cluster_tx *txs, size_t count,
                          uint64_t rate_per_s, size_t inflight_max, uint64_t timeout_ms)
{
    CHECK(rate_per_s > 0);
    return load_run(c, txs, count, inflight_max, rate_per_s, timeout_ms, NULL, NULL);
}

/* ---- waiting for the nodes ---- */

uint64_t cluster_wait_converged(struct cluster *c, uint64_t timeout_ms)
{
    uint64_t end = cluster_now_us() + timeout_ms * 1000;
    for (;;) {
        uint64_t tip = UINT64_MAX;
        bool same = true;
        uint8_t hash[EHR_HASH_BYTES];
        for (size_t i = 0; i < c->count; i++) {
            if (c->nodes[i].pid == 0)
                continue;
            struct cluster_status s;
            if (cluster_status(c, i, &s) != 0) {
                same = false;
                break;
            }
            if (tip == UINT64_MAX) {
                tip = s.tip_height;
                memcpy(hash, s.tip_hash, EHR_HASH_BYTES);
            } else if (s.tip_height != tip || memcmp(hash, s.tip_hash, EHR_HASH_BYTES) != 0) {
                same = false;
            }
        }
        if (same && tip != UINT64_MAX)
            return tip;
        if (cluster_now_us() > end)
            return UINT64_MAX;
        usleep(50000);
    }
}

/* ---- governance through ehrctl ---- */

/* Run ehrctl ARGS against node I's API with --json; abort unless it exits
 * 0; the "hash" its output names into HASH (65 bytes), when not NULL. */
static void ehrctl_tx(const struct cluster *c, size_t i, const char *const *args, char *hash)
{
    const char *argv[32];
    char node[32];
    snprintf(node, sizeof node, "127.0.0.1:%u", c->nodes[i].rpc_port);
    size_t n = 0;
    for (size_t k = 0; args[k] != NULL; k++) {
        CHECK(n < 28);
        argv[n++] = args[k];
    }
    argv[n++] = "--json";
    argv[n++] = "--node";
    argv[n++] = node;
    argv[n] = NULL;
    struct proc_spec spec = {.path = c->ehrctl, .args = argv, .env_inherit = true};
    struct proc_result r = proc_run(&spec);
    if (r.status != 0) {
        fprintf(stderr, "cluster: ehrctl %s %s: exit %d: %s%s\n", args[0], args[1], r.status, r.out,
                r.err);
        abort();
    }
    if (hash != NULL) {
        json_t *out = json_loads(r.out, 0, NULL);
        const char *h = out != NULL ? json_string_value(json_object_get(out, "hash")) : NULL;
        CHECK(h != NULL && strlen(h) == 64);
        snprintf(hash, 65, "%s", h);
        json_decref(out);
    }
    proc_result_free(&r);
}

void cluster_propose(struct cluster *c, size_t proposer, bool admit, size_t subject, char id[65])
{
    CHECK(proposer < c->count && subject < c->count);
    char key[CLUSTER_PATH_BYTES], entry[CLUSTER_PATH_BYTES], subject_key[65];
    pathf(key, "%s/node%zu.key", c->root, proposer);
    pathf(entry, "%s/member%zu.json", c->root, subject);
    ehr_hex_encode(subject_key, c->nodes[subject].node_key, EHR_SCHNORR_PUBLIC_BYTES);
    if (admit)
        ehrctl_tx(c, proposer,
                  PROC_ARGS("member", "propose", "--admit", entry, "--key", key, "--wait", NULL),
                  id);
    else
        ehrctl_tx(c, proposer,
                  PROC_ARGS("member", "remove", subject_key, "--key", key, "--wait", NULL), id);
}

void cluster_approve_via(struct cluster *c, size_t member, size_t via, const char *id)
{
    CHECK(member < c->count && via < c->count);
    char key[CLUSTER_PATH_BYTES];
    pathf(key, "%s/node%zu.key", c->root, member);
    ehrctl_tx(c, via, PROC_ARGS("member", "approve", id, "--key", key, "--wait", NULL), NULL);
}

void cluster_approve(struct cluster *c, size_t member, const char *id)
{
    cluster_approve_via(c, member, member, id);
}
