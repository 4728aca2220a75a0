/*
 * test_cli_replication - record ciphertext replicated to other members'
 * nodes and repaired (node/README.md, "Blob replication"), against three
 * real ehrd processes (tests/node/cluster.h), member 0 the custodian:
 *   - a record added through member 0 shows up in the two other nodes'
 *     blob stores, the same bytes (hashing to the blob id);
 *   - with the custodian's blob deleted from its disk, `record get` still
 *     opens the record, from a replica, saying which node lacked it (and
 *     with --blob-node naming that node, fails and leaves no file); with
 *     the custodian's node down, too;
 *   - the custodian restarted with its blobs/ directory wiped repairs its
 *     copy (the same bytes);
 *   - a replica restarted without its copy, the custodian's copy altered
 *     on disk: the piece fetched from the custodian does not hash to the
 *     id, is discarded (logged) and leaves nothing, and the copy comes from
 *     the other replica, the right bytes.
 *   - bad input from a member's node (the test speaks p2p with member 2's
 *     key while its ehrd is stopped): a BlobChunk not asked for is refused
 *     and leaves nothing; a BlobFetch for a blob no committed anchor of the
 *     record names, for another record, or past the blob's end is answered
 *     "missing", a good one with the exact bytes; asked for a piece, a
 *     piece over NODE_BLOB_REPLICA_CHUNK_BYTES is refused, and the node,
 *     with no one else to ask, leaves nothing and holds no copy;
 *   - NODE_BLOB_SERVES_MAX at its edge (pieces held on the worker pool by
 *     ehrd-test's EHR_TEST_BLOB_SERVE_DELAY_MS: that many requests at once
 *     all served, one more answered "missing" at once) and
 *     NODE_BLOB_FETCHES_MAX (a wiped node with only a silent member to ask
 *     has exactly that many fetches out, and one more once one ends).
 * With three members and NODE_BLOB_COPIES = 3 every node holds every blob
 * (the replica choice itself is test_replication's).
 */
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
#include <unistd.h>

#include <signal.h>
#include <uv.h>

#include "cli_net.h"
#include "ehr/v1/p2p.pb-c.h"
#include "ehr_crypto.h"
#include "node_internal.h"
#include "p2p.h"

/* The test build of the daemon: the same node, with fault switches read
 * from the environment (tests/node/ehrd_test_hooks.h). */
#define EHRD EHR_BINARY_DIR "/tests/node/ehrd-test"

enum { NODES = 3, KEY_HEX = CLI_NET_HEX_BYTES, LEADER_WAIT_MS = 30000, REPLICATE_WAIT_MS = 60000 };
/* Three pieces on the links: two whole, one short. */
enum { DATA_BYTES = 600 * 1024 };

static int net_setup(void **state)
{
    *state = cli_net_start(NODES, EHRD, NULL, LEADER_WAIT_MS);
    return *state != NULL ? 0 : -1;
}

static int net_teardown(void **state)
{
    return cli_net_stop(*state);
}

/* Does node I hold the blob BLOB, whole: its bytes hash to its id? */
static bool holds(const struct cli_net *n, size_t i, const char *blob, uint64_t bytes)
{
    size_t len = 0;
    uint8_t *b = cli_file_bytes_or_null(cli_net_blob_path(n, i, blob), &len);
    if (b == NULL)
        return false;
    uint8_t hash[32];
    char hex[KEY_HEX];
    ehr_sha256(hash, b, len);
    free(b);
    ehr_hex_encode(hex, hash, 32);
    return len == bytes && strcmp(hex, blob) == 0;
}

static bool wait_holds(const struct cli_net *n, size_t i, const char *blob, uint64_t bytes)
{
    uint64_t end = cli_mono_ms() + REPLICATE_WAIT_MS;
    while (cli_mono_ms() < end) {
        if (holds(n, i, blob, bytes))
            return true;
        usleep(50000);
    }
    return false;
}

static bool log_has(const struct cli_net *n, size_t i, const char *text)
{
    size_t len = 0;
    uint8_t *b = cli_file_bytes_or_null(n->c.nodes[i].log, &len);
    if (b == NULL)
        return false;
    b[len] = '\0';
    bool found = strstr((const char *)b, text) != NULL;
    free(b);
    return found;
}

static bool wait_log(const struct cli_net *n, size_t i, const char *text, uint64_t timeout_ms)
{
    uint64_t end = cli_mono_ms() + timeout_ms;
    while (!log_has(n, i, text) && cli_mono_ms() < end)
        usleep(50000);
    return log_has(n, i, text);
}

static void wait_serving(struct cli_net *n, size_t i)
{
    struct cluster_status st;
    uint64_t end = cli_mono_ms() + LEADER_WAIT_MS;
    while (cluster_status(&n->c, i, &st) != 0 && cli_mono_ms() < end)
        usleep(50000);
    assert_int_equal(cluster_status(&n->c, i, &st), 0);
}

/* `record get RECORD` as the patient through node VIA into NAME: the exact bytes back. */
static void get_back(struct cli_net *n, const char *record, size_t via, const char *name,
                     const uint8_t *data, size_t len, const char *warned)
{
    struct proc_result r = cli_run(n, "record", "get", record, "--key", "patient.key", "--out",
                                   name, "--node", n->node[via]);
    cli_assert_ok(&r);
    if (warned != NULL && strstr(r.err, warned) == NULL)
        fail_msg("no warning naming %s: %s", warned, r.err);
    proc_result_free(&r);
    size_t back_len = 0;
    uint8_t *back = cli_file_bytes_or_null(proc_path(n->c.root, name), &back_len);
    assert_non_null(back);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, data, len);
    free(back);
}

/* The patient (patient.key), enrolled by member 0 once. */
static void patient_enrolled(struct cli_net *n)
{
    struct stat st;
    if (stat(proc_path(n->c.root, "patient.pub.json"), &st) == 0)
        return;
    cli_net_patient_enroll(n, "patient.key", "patient.pub.json", n->node[0]);
}

/* DATA_BYTES (SEED) added by member 0 as NAME: the data (malloc'd), the
 * record and blob ids and the ciphertext's size. */
static uint8_t *record_added_of(struct cli_net *n, const char *name, unsigned seed, size_t len,
                                char record[KEY_HEX], char blob[KEY_HEX], uint64_t *bytes)
{
    patient_enrolled(n);
    uint8_t *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)((i + seed) * 2654435761u >> 13);
    cli_file_put(proc_path(n->c.root, name), data, len);
    struct proc_result r =
        cli_run(n, "record", "add", name, "--patient", "patient.pub.json", "--type", "imaging",
                "--key", "node0.key", "--node", n->node[0], "--wait", "--json");
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    snprintf(record, KEY_HEX, "%s", json_string_value(json_object_get(out, "record_id")));
    snprintf(blob, KEY_HEX, "%s", json_string_value(json_object_get(out, "blob_id")));
    *bytes = (uint64_t)json_integer_value(json_object_get(out, "ciphertext_bytes"));
    json_decref(out);
    proc_result_free(&r);
    assert_int_equal(strlen(record), 64);
    assert_int_equal(strlen(blob), 64);
    assert_true(*bytes > len);
    return data;
}

static uint8_t *record_added(struct cli_net *n, const char *name, unsigned seed,
                             char record[KEY_HEX], char blob[KEY_HEX], uint64_t *bytes)
{
    uint8_t *data = record_added_of(n, name, seed, DATA_BYTES, record, blob, bytes);
    assert_true(*bytes > 2 * NODE_BLOB_REPLICA_CHUNK_BYTES);
    return data;
}

static void test_replicated_read_from_a_replica_and_repaired(void **state)
{
    struct cli_net *n = *state;
    char record[KEY_HEX], blob[KEY_HEX];
    uint64_t bytes = 0;
    uint8_t *data = record_added(n, "scan.dcm", 0, record, blob, &bytes);
    FILE *f;

    /* Replicated: the two other nodes hold the same bytes. */
    assert_true(holds(n, 0, blob, bytes));
    assert_true(wait_holds(n, 1, blob, bytes));
    assert_true(wait_holds(n, 2, blob, bytes));
    assert_int_equal(cli_net_blob_files(n, 1, ".tmp-"), 0);
    assert_int_equal(cli_net_blob_files(n, 2, ".tmp-"), 0);

    /* The custodian's copy deleted: record get falls back to a replica. */
    assert_int_equal(unlink(cli_net_blob_path(n, 0, blob)), 0);
    get_back(n, record, 1, "back1.dcm", data, DATA_BYTES, n->node[0]);
    /* --blob-node names that node alone: no fallback, no file. */
    struct proc_result r = cli_run(n, "record", "get", record, "--key", "patient.key", "--out",
                                   "alone.dcm", "--node", n->node[1], "--blob-node", n->node[0]);
    assert_int_not_equal(r.status, 0);
    assert_non_null(strstr(r.err, "NOT_FOUND"));
    proc_result_free(&r);
    struct stat st;
    assert_int_not_equal(stat(proc_path(n->c.root, "alone.dcm"), &st), 0);
    assert_int_not_equal(stat(proc_path(n->c.root, "alone.dcm.part"), &st), 0);

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

    /* A replica back without its copy while the custodian's is altered and
     * the other replica's node is down: the custodian's copy does not hash
     * to the id, is discarded, and nothing is left; once the other replica
     * is back, the copy comes from it. */
    assert_int_equal(cluster_stop(&n->c, 2), 0);
    assert_int_equal(cluster_stop(&n->c, 1), 0);
    assert_int_equal(unlink(cli_net_blob_path(n, 2, blob)), 0);
    f = fopen(cli_net_blob_path(n, 0, blob), "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 300000, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, 300000, SEEK_SET), 0);
    fputc(c ^ 0x40, f);
    assert_int_equal(fclose(f), 0);
    cluster_start(&n->c, 2);
    wait_serving(n, 2);
    assert_true(wait_log(n, 2, "fetched blob discarded", REPLICATE_WAIT_MS));
    assert_int_not_equal(stat(cli_net_blob_path(n, 2, blob), &st), 0);
    cluster_start(&n->c, 1);
    wait_serving(n, 1);
    assert_true(wait_holds(n, 2, blob, bytes));
    assert_int_equal(cli_net_blob_files(n, 2, ".tmp-"), 0);
    assert_int_equal(cli_net_blob_files(n, 2, ""), 1);
    assert_int_not_equal(cluster_wait_leader(&n->c, LEADER_WAIT_MS), SIZE_MAX);
    free(data);
}

/* ---- a member's node played by the test, over p2p ---- */

struct fake {
    uv_loop_t loop;
    p2p *p;
    uint8_t peer[EHR_SCHNORR_PUBLIC_BYTES]; /* the real node it talks to */
    bool up;
    bool closed;
    unsigned chunks; /* BlobChunks received; the last one below */
    bool missing;
    uint64_t offset, total_bytes;
    uint8_t *data;
    size_t data_len;
    unsigned fetches; /* BlobFetches received; the last one's fields below */
    uint8_t fetch_record[32], fetch_blob[32];
    uint64_t fetch_offset;
    /* The distinct records asked for, with their blob ids. */
    unsigned asked_count;
    uint8_t asked_record[16][32], asked_blob[16][32];
};

static void fake_message(void *user, const uint8_t peer[P2P_KEY_BYTES], const uint8_t *data,
                         size_t len)
{
    struct fake *f = user;
    (void)peer;
    Ehr__V1__PeerMessage *pm = ehr__v1__peer_message__unpack(NULL, len, data);
    if (pm == NULL)
        return;
    if (pm->kind_case == EHR__V1__PEER_MESSAGE__KIND_BLOB_CHUNK) {
        const Ehr__V1__BlobChunk *c = pm->blob_chunk;
        f->chunks++;
        f->missing = c->missing;
        f->offset = c->offset;
        f->total_bytes = c->total_bytes;
        free(f->data);
        f->data = malloc(c->data.len + 1);
        assert_non_null(f->data);
        if (c->data.len > 0)
            memcpy(f->data, c->data.data, c->data.len);
        f->data_len = c->data.len;
    } else if (pm->kind_case == EHR__V1__PEER_MESSAGE__KIND_BLOB_FETCH &&
               pm->blob_fetch->record_id.len == 32 && pm->blob_fetch->blob_id.len == 32) {
        f->fetches++;
        memcpy(f->fetch_record, pm->blob_fetch->record_id.data, 32);
        memcpy(f->fetch_blob, pm->blob_fetch->blob_id.data, 32);
        f->fetch_offset = pm->blob_fetch->offset;
        bool seen = false;
        for (unsigned i = 0; i < f->asked_count; i++)
            seen = seen || memcmp(f->asked_record[i], f->fetch_record, 32) == 0;
        if (!seen && f->asked_count < 16) {
            memcpy(f->asked_record[f->asked_count], f->fetch_record, 32);
            memcpy(f->asked_blob[f->asked_count], f->fetch_blob, 32);
            f->asked_count++;
        }
    }
    ehr__v1__peer_message__free_unpacked(pm, NULL);
}

static void fake_up(void *user, const uint8_t peer[P2P_KEY_BYTES])
{
    struct fake *f = user;
    if (memcmp(peer, f->peer, P2P_KEY_BYTES) == 0)
        f->up = true;
}

static void fake_down(void *user, const uint8_t peer[P2P_KEY_BYTES], int reason, uint64_t unsent)
{
    struct fake *f = user;
    (void)reason;
    (void)unsent;
    if (memcmp(peer, f->peer, P2P_KEY_BYTES) == 0)
        f->up = false;
}

static void fake_closed(void *user)
{
    ((struct fake *)user)->closed = true;
}

/* Run the fake's loop until *FLAG (or TIMEOUT_MS); true if it came. */
static bool fake_wait(struct fake *f, const bool *flag, uint64_t timeout_ms)
{
    uint64_t end = cli_mono_ms() + timeout_ms;
    while (!*flag && cli_mono_ms() < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    return *flag;
}

/* Run the fake's loop until its count *COUNT passes BEFORE. */
static bool fake_wait_count(struct fake *f, const unsigned *count, unsigned before,
                            uint64_t timeout_ms)
{
    uint64_t end = cli_mono_ms() + timeout_ms;
    while (*count == before && cli_mono_ms() < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    return *count != before;
}

/* Member AS's node, played by the test, linked to node PEER alone. */
static void fake_start(struct fake *f, struct cli_net *n, size_t as, size_t peer)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    memcpy(f->peer, n->c.nodes[peer].node_key, P2P_KEY_BYTES);
    p2p_config pc = {
        .node_key = &n->c.nodes[as].identity->signing,
        .chain_id = n->c.chain_id,
        .callbacks = {.on_message = fake_message, .on_link_up = fake_up, .on_link_down = fake_down},
        .user = f};
    assert_int_equal(p2p_create(&f->loop, &pc, &f->p), 0);
    p2p_member m[2];
    memset(m, 0, sizeof m);
    memcpy(m[0].node_key, n->c.nodes[peer].node_key, P2P_KEY_BYTES);
    snprintf(m[0].address, sizeof m[0].address, "127.0.0.1:%u", n->c.nodes[peer].peer_port);
    memcpy(m[1].node_key, n->c.nodes[as].node_key, P2P_KEY_BYTES);
    assert_int_equal(p2p_set_members(f->p, m, 2), 0);
}

static void fake_stop(struct fake *f)
{
    p2p_close(f->p, fake_closed);
    while (!f->closed)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->data);
}

static void fake_send(struct fake *f, const Ehr__V1__PeerMessage *pm)
{
    size_t len = ehr__v1__peer_message__get_packed_size(pm);
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    ehr__v1__peer_message__pack(pm, buf);
    assert_int_equal(p2p_send(f->p, f->peer, buf, len), 0);
    free(buf);
}

static void fake_fetch(struct fake *f, const uint8_t record[32], const uint8_t blob[32],
                       uint64_t offset)
{
    Ehr__V1__BlobFetch q = EHR__V1__BLOB_FETCH__INIT;
    q.record_id = (ProtobufCBinaryData){32, (uint8_t *)record};
    q.blob_id = (ProtobufCBinaryData){32, (uint8_t *)blob};
    q.offset = offset;
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_FETCH;
    pm.blob_fetch = &q;
    unsigned before = f->chunks;
    fake_send(f, &pm);
    assert_true(fake_wait_count(f, &f->chunks, before, 10000));
}

static void fake_chunk(struct fake *f, const uint8_t record[32], const uint8_t blob[32],
                       uint64_t offset, uint64_t total, size_t len)
{
    static uint8_t junk[NODE_BLOB_REPLICA_CHUNK_BYTES + 1];
    memset(junk, 0x5c, sizeof junk);
    Ehr__V1__BlobChunk c = EHR__V1__BLOB_CHUNK__INIT;
    c.record_id = (ProtobufCBinaryData){32, (uint8_t *)record};
    c.blob_id = (ProtobufCBinaryData){32, (uint8_t *)blob};
    c.offset = offset;
    c.total_bytes = total;
    c.data = (ProtobufCBinaryData){len, junk};
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_CHUNK;
    pm.blob_chunk = &c;
    fake_send(f, &pm);
}

static void test_bad_input_from_a_member_is_refused(void **state)
{
    struct cli_net *n = *state;
    char record_hex[KEY_HEX], blob_hex[KEY_HEX];
    uint64_t bytes = 0;
    assert_int_not_equal(cluster_wait_leader(&n->c, LEADER_WAIT_MS), SIZE_MAX);
    free(record_added(n, "xray.dcm", 7, record_hex, blob_hex, &bytes));
    assert_true(wait_holds(n, 2, blob_hex, bytes));
    assert_true(wait_holds(n, 1, blob_hex, bytes));
    uint8_t record[32], blob[32], other[32];
    cli_hex_decode(record, record_hex, 32);
    cli_hex_decode(blob, blob_hex, 32);
    memset(other, 0xab, sizeof other);
    size_t stored_len = 0;
    uint8_t *stored = cli_file_bytes_or_null(cli_net_blob_path(n, 0, blob_hex), &stored_len);
    assert_non_null(stored);
    unsigned files_before = cli_net_blob_files(n, 0, "");

    /* Member 2's node, played by the test. */
    assert_int_equal(cluster_stop(&n->c, 2), 0);
    struct fake f;
    fake_start(&f, n, 2, 0);
    assert_true(fake_wait(&f, &f.up, 20000));

    /* A piece never asked for: refused, nothing written. */
    fake_chunk(&f, record, blob, 0, bytes, NODE_BLOB_REPLICA_CHUNK_BYTES);
    fake_chunk(&f, other, other, 0, 10, 10);
    assert_true(wait_log(n, 0, "a piece of a blob not asked for", 10000));
    assert_int_equal(cli_net_blob_files(n, 0, ".tmp-"), 0);
    assert_int_equal(cli_net_blob_files(n, 0, ""), files_before);

    /* Served: the exact bytes of a committed anchor's blob, and nothing else. */
    fake_fetch(&f, record, blob, NODE_BLOB_REPLICA_CHUNK_BYTES);
    assert_false(f.missing);
    assert_int_equal(f.offset, NODE_BLOB_REPLICA_CHUNK_BYTES);
    assert_int_equal(f.total_bytes, bytes);
    assert_int_equal(f.data_len, NODE_BLOB_REPLICA_CHUNK_BYTES);
    assert_memory_equal(f.data, stored + NODE_BLOB_REPLICA_CHUNK_BYTES,
                        NODE_BLOB_REPLICA_CHUNK_BYTES);
    fake_fetch(&f, record, blob, 2 * NODE_BLOB_REPLICA_CHUNK_BYTES); /* the short last piece */
    assert_false(f.missing);
    assert_int_equal(f.data_len, bytes - 2 * NODE_BLOB_REPLICA_CHUNK_BYTES);
    assert_memory_equal(f.data, stored + 2 * NODE_BLOB_REPLICA_CHUNK_BYTES, f.data_len);
    fake_fetch(&f, record, other, 0); /* not the blob the anchor names */
    assert_true(f.missing);
    assert_int_equal(f.data_len, 0);
    fake_fetch(&f, other, blob, 0); /* no such record */
    assert_true(f.missing);
    assert_int_equal(f.data_len, 0);
    fake_fetch(&f, record, blob, bytes); /* past the end */
    assert_true(f.missing);
    assert_int_equal(f.data_len, 0);

    /* Asked for a piece, the fake answers one byte over the limit: refused;
     * with no one else to ask (member 1's node stopped) nothing is left. */
    assert_int_equal(cluster_stop(&n->c, 1), 0);
    fake_stop(&f);
    assert_int_equal(cluster_stop(&n->c, 0), 0);
    assert_int_equal(unlink(cli_net_blob_path(n, 0, blob_hex)), 0);
    cluster_start(&n->c, 0);
    fake_start(&f, n, 2, 0);
    assert_true(fake_wait(&f, &f.up, 30000));
    bool asked = false;
    uint64_t end = cli_mono_ms() + 30000;
    while (!asked && cli_mono_ms() < end) {
        unsigned before = f.fetches;
        if (!fake_wait_count(&f, &f.fetches, before, 1000))
            continue;
        asked = memcmp(f.fetch_record, record, 32) == 0;
    }
    assert_true(asked);
    assert_int_equal(f.fetch_offset, 0);
    fake_chunk(&f, record, blob, 0, bytes, NODE_BLOB_REPLICA_CHUNK_BYTES + 1);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    assert_true(wait_log(n, 0, "over the limit", 10000));
    assert_true(wait_log(n, 0, "no member served it", 10000));
    /* Stopped (a fetch tried again meanwhile is abandoned), nothing is left. */
    assert_int_equal(cluster_stop(&n->c, 0), 0);
    fake_stop(&f);
    assert_int_equal(cli_net_blob_files(n, 0, ".tmp-"), 0);
    assert_false(holds(n, 0, blob_hex, bytes));
    struct stat st;
    assert_int_not_equal(stat(cli_net_blob_path(n, 0, blob_hex), &st), 0);
    free(stored);
}

/* Run the fake's loop for MS. */
static void fake_run_for(struct fake *f, uint64_t ms)
{
    uint64_t end = cli_mono_ms() + ms;
    while (cli_mono_ms() < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
}

/* Send a BlobFetch without waiting for its answer. */
static void fake_fetch_send(struct fake *f, const uint8_t record[32], const uint8_t blob[32])
{
    Ehr__V1__BlobFetch q = EHR__V1__BLOB_FETCH__INIT;
    q.record_id = (ProtobufCBinaryData){32, (uint8_t *)record};
    q.blob_id = (ProtobufCBinaryData){32, (uint8_t *)blob};
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_FETCH;
    pm.blob_fetch = &q;
    fake_send(f, &pm);
}

/*
 * NODE_BLOB_SERVES_MAX and NODE_BLOB_FETCHES_MAX at their edges. Serving:
 * with each piece held SERVE_DELAY_MS on member 0's worker pool
 * (ehrd-test), NODE_BLOB_SERVES_MAX requests at once are all served, with
 * data; one more at once is answered "missing" at once (busy). Fetching:
 * member 0 back with its store wiped and only the test's node to ask, which
 * answers nothing, has exactly NODE_BLOB_FETCHES_MAX fetches out; once the
 * test answers one "missing", the next record is asked for.
 */
enum { SERVE_DELAY_MS = 1500, SMALL_BYTES = 10000 };

static void test_limits_at_their_edges(void **state)
{
    struct cli_net *n = *state;
    for (size_t i = 0; i < NODES; i++)
        if (n->c.nodes[i].pid == 0)
            cluster_start(&n->c, i);
    assert_int_not_equal(cluster_wait_leader(&n->c, LEADER_WAIT_MS), SIZE_MAX);
    /* Records enough that member 0, wiped, lacks one more than it fetches at once. */
    char record_hex[KEY_HEX], blob_hex[KEY_HEX];
    uint8_t record[32], blob[32];
    uint64_t bytes = 0;
    for (unsigned k = 0; k < NODE_BLOB_FETCHES_MAX; k++) {
        char name[32];
        snprintf(name, sizeof name, "note%u.txt", k);
        free(record_added_of(n, name, 100 + k, SMALL_BYTES, record_hex, blob_hex, &bytes));
    }
    cli_hex_decode(record, record_hex, 32);
    cli_hex_decode(blob, blob_hex, 32);
    assert_int_equal(cluster_stop(&n->c, 2), 0);
    assert_int_equal(cluster_stop(&n->c, 1), 0);
    assert_int_equal(cluster_stop(&n->c, 0), 0);

    /* Serving. */
    cluster_start_env(&n->c, 0, "EHR_TEST_BLOB_SERVE_DELAY_MS", "1500");
    struct fake f;
    fake_start(&f, n, 2, 0);
    assert_true(fake_wait(&f, &f.up, 30000));
    for (unsigned i = 0; i < NODE_BLOB_SERVES_MAX; i++)
        fake_fetch_send(&f, record, blob);
    fake_run_for(&f, SERVE_DELAY_MS / 3);
    assert_int_equal(f.chunks, 0); /* all held on the worker pool */
    fake_fetch_send(&f, record, blob);
    assert_true(fake_wait_count(&f, &f.chunks, 0, SERVE_DELAY_MS / 3));
    assert_int_equal(f.chunks, 1);
    assert_true(f.missing); /* one over: busy */
    uint64_t end = cli_mono_ms() + 4 * SERVE_DELAY_MS;
    while (f.chunks < NODE_BLOB_SERVES_MAX + 1 && cli_mono_ms() < end)
        fake_run_for(&f, 10);
    assert_int_equal(f.chunks, NODE_BLOB_SERVES_MAX + 1);
    assert_false(f.missing);
    assert_int_equal(f.data_len, bytes);
    fake_stop(&f);
    assert_int_equal(cluster_stop(&n->c, 0), 0);

    /* Fetching. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/blobs'", n->c.nodes[0].dir);
    assert_int_equal(system(cmd), 0);
    cluster_start(&n->c, 0);
    fake_start(&f, n, 2, 0);
    assert_true(fake_wait(&f, &f.up, 30000));
    end = cli_mono_ms() + 20000;
    while (f.asked_count < NODE_BLOB_FETCHES_MAX && cli_mono_ms() < end)
        fake_run_for(&f, 10);
    assert_int_equal(f.asked_count, NODE_BLOB_FETCHES_MAX);
    fake_run_for(&f, 2000); /* nothing more while they wait (the timeout is 10 s) */
    assert_int_equal(f.asked_count, NODE_BLOB_FETCHES_MAX);
    /* One answered "missing": its fetch ends, the next record is asked for. */
    Ehr__V1__BlobChunk c = EHR__V1__BLOB_CHUNK__INIT;
    c.record_id = (ProtobufCBinaryData){32, f.asked_record[0]};
    c.blob_id = (ProtobufCBinaryData){32, f.asked_blob[0]};
    c.missing = true;
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_CHUNK;
    pm.blob_chunk = &c;
    fake_send(&f, &pm);
    end = cli_mono_ms() + 5000;
    while (f.asked_count < NODE_BLOB_FETCHES_MAX + 1 && cli_mono_ms() < end)
        fake_run_for(&f, 10);
    assert_int_equal(f.asked_count, NODE_BLOB_FETCHES_MAX + 1);
    assert_int_equal(cluster_stop(&n->c, 0), 0);
    fake_stop(&f);
    assert_int_equal(cli_net_blob_files(n, 0, ".tmp-"), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* p2p writes with write(2) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicated_read_from_a_replica_and_repaired),
        cmocka_unit_test(test_bad_input_from_a_member_is_refused),
        cmocka_unit_test(test_limits_at_their_edges),
    };
    return cmocka_run_group_tests(tests, net_setup, net_teardown);
}
