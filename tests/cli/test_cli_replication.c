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
 *   - the serving limits at their edges (pieces held on the worker pool by
 *     ehrd-test's EHR_TEST_BLOB_SERVE_DELAY_MS): NODE_BLOB_SERVES_PER_MEMBER_MAX
 *     from one member all served, its next answered "busy" at once; the
 *     total (lowered by ehrd-test's EHR_TEST_BLOB_SERVES_MAX) reached by two
 *     members and one more "busy"; NODE_BLOB_FETCHES_MAX (a wiped node with
 *     only a silent member to ask has exactly that many fetches out, and one
 *     more once one ends); and "busy" answered to a fetch: the same member
 *     asked again for the same offset after NODE_BLOB_BUSY_RETRY_MS,
 *     NODE_BLOB_BUSY_RETRIES_MAX times, nothing fetched again, then moving on
 *     (test_limits_at_their_edges says how).
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

/* How the fake answers BlobFetches for one record on its own: "busy" to
 * BUSY_LEFT of them at BUSY_OFFSET, else the piece of DATA asked for (none
 * without DATA). */
struct fake_script {
    uint8_t record[32], blob[32];
    uint64_t busy_offset;
    unsigned busy_left;
    const uint8_t *data;
    size_t data_len;
};

/* One BlobFetch the fake received. */
struct fake_ask {
    uint8_t record[32];
    uint64_t offset;
    uint64_t at_ms;
};

struct fake {
    uv_loop_t loop;
    p2p *p;
    uint8_t peer[EHR_SCHNORR_PUBLIC_BYTES]; /* the real node it talks to */
    bool up;
    bool closed;
    unsigned chunks; /* BlobChunks received; the last one below */
    unsigned chunks_with_data;
    bool missing, busy;
    unsigned missing_count, busy_count; /* of all BlobChunks received */
    uint64_t offset, total_bytes;
    uint8_t *data;
    size_t data_len;
    unsigned fetches; /* BlobFetches received; the last one's fields below */
    uint8_t fetch_record[32], fetch_blob[32];
    uint64_t fetch_offset;
    /* The distinct records asked for, with their blob ids. */
    unsigned asked_count;
    uint8_t asked_record[16][32], asked_blob[16][32];
    /* Every BlobFetch (the first 64), and the records answered on their own. */
    unsigned ask_count;
    struct fake_ask asks[64];
    unsigned script_count;
    struct fake_script scripts[2];
};

static void fake_send(struct fake *f, const Ehr__V1__PeerMessage *pm);

/* Send a BlobChunk: for BLOB of RECORD at OFFSET, of TOTAL bytes, LEN bytes
 * of DATA, with its flags. */
static void fake_reply(struct fake *f, const uint8_t record[32], const uint8_t blob[32],
                       uint64_t offset, uint64_t total, const uint8_t *data, size_t len,
                       bool missing, bool busy)
{
    Ehr__V1__BlobChunk c = EHR__V1__BLOB_CHUNK__INIT;
    c.record_id = (ProtobufCBinaryData){32, (uint8_t *)record};
    c.blob_id = (ProtobufCBinaryData){32, (uint8_t *)blob};
    c.offset = offset;
    c.total_bytes = total;
    c.data = (ProtobufCBinaryData){len, (uint8_t *)data};
    c.missing = missing;
    c.busy = busy;
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_CHUNK;
    pm.blob_chunk = &c;
    fake_send(f, &pm);
}

/* Answer the BlobFetch at OFFSET as script S says. */
static void fake_script_answer(struct fake *f, struct fake_script *s, uint64_t offset)
{
    if (s->busy_left > 0 && offset == s->busy_offset) {
        s->busy_left--;
        fake_reply(f, s->record, s->blob, offset, 0, NULL, 0, false, true);
    } else if (s->data != NULL && offset < s->data_len) {
        size_t left = s->data_len - (size_t)offset;
        size_t len = left < NODE_BLOB_REPLICA_CHUNK_BYTES ? left : NODE_BLOB_REPLICA_CHUNK_BYTES;
        fake_reply(f, s->record, s->blob, offset, s->data_len, s->data + offset, len, false, false);
    }
}

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
        f->chunks_with_data += c->data.len > 0;
        f->missing = c->missing;
        f->busy = c->busy;
        f->missing_count += c->missing;
        f->busy_count += c->busy;
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
        if (f->ask_count < 64) {
            struct fake_ask *a = &f->asks[f->ask_count++];
            memcpy(a->record, f->fetch_record, 32);
            a->offset = f->fetch_offset;
            a->at_ms = cli_mono_ms();
        }
        for (unsigned i = 0; i < f->script_count; i++)
            if (memcmp(f->scripts[i].record, f->fetch_record, 32) == 0)
                fake_script_answer(f, &f->scripts[i], f->fetch_offset);
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

/* Send a BlobFetch at OFFSET without waiting for its answer. */
static void fake_fetch_send(struct fake *f, const uint8_t record[32], const uint8_t blob[32],
                            uint64_t offset)
{
    Ehr__V1__BlobFetch q = EHR__V1__BLOB_FETCH__INIT;
    q.record_id = (ProtobufCBinaryData){32, (uint8_t *)record};
    q.blob_id = (ProtobufCBinaryData){32, (uint8_t *)blob};
    q.offset = offset;
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_FETCH;
    pm.blob_fetch = &q;
    fake_send(f, &pm);
}

/* Run both fakes' loops for MS. */
static void fakes_run_for(struct fake *a, struct fake *b, uint64_t ms)
{
    uint64_t end = cli_mono_ms() + ms;
    while (cli_mono_ms() < end) {
        uv_run(&a->loop, UV_RUN_NOWAIT);
        uv_run(&b->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
}

/* Run both fakes' loops until A has WANT_A BlobChunks with data and B
 * WANT_B (or TIMEOUT_MS). */
static void fakes_wait_served(struct fake *a, unsigned want_a, struct fake *b, unsigned want_b,
                              uint64_t timeout_ms)
{
    uint64_t end = cli_mono_ms() + timeout_ms;
    while ((a->chunks_with_data < want_a || b->chunks_with_data < want_b) && cli_mono_ms() < end)
        fakes_run_for(a, b, 10);
}

/* The asks the fake received for RECORD, from the FROM-th on, into OUT (at
 * most OUT_MAX); their count. */
static unsigned fake_asks_of(const struct fake *f, const uint8_t record[32], unsigned from,
                             struct fake_ask *out, unsigned out_max)
{
    unsigned count = 0;
    for (unsigned i = from; i < f->ask_count; i++)
        if (memcmp(f->asks[i].record, record, 32) == 0 && count < out_max)
            out[count++] = f->asks[i];
    return count;
}

/* Node 2's stored copy of the blob BLOB (node 2 holds every blob: three
 * members, three copies); malloc'd, its size in *LEN. */
static uint8_t *blob_of_node2(struct cli_net *n, const uint8_t blob[32], size_t *len)
{
    char hex[KEY_HEX];
    ehr_hex_encode(hex, blob, 32);
    uint8_t *b = cli_file_bytes_or_null(cli_net_blob_path(n, 2, hex), len);
    assert_non_null(b);
    return b;
}

/*
 * The limits of replication at their edges.
 *
 * Serving (R6), each piece held SERVE_DELAY_MS on member 0's worker pool
 * (ehrd-test's EHR_TEST_BLOB_SERVE_DELAY_MS), with the test's nodes of
 * members 1 and 2 asking:
 *   (a) member 2 gets NODE_BLOB_SERVES_PER_MEMBER_MAX pieces held; its
 *       next BlobFetch is answered "busy" at once (not "missing", the
 *       offset asked), and the held ones are then all served;
 *   (b) the total. With three members, two of them asking, at most
 *       2 * NODE_BLOB_SERVES_PER_MEMBER_MAX (8) pieces are ever held, below
 *       NODE_BLOB_SERVES_MAX (16): the total cannot be reached at its own
 *       value. Five or more nodes would reach it, but a member is served
 *       only the records whose replica set holds it, which with more
 *       members than NODE_BLOB_COPIES makes which fake may ask for what a
 *       matter of hashes, and starts two more daemons. So member 0 runs
 *       with the total lowered (ehrd-test's EHR_TEST_BLOB_SERVES_MAX,
 *       SERVES_MAX_LOWERED, the same check with another bound): member 2
 *       takes its NODE_BLOB_SERVES_PER_MEMBER_MAX again (so its count went
 *       back down when its pieces were sent), member 1 the rest, and
 *       member 1's next is "busy" though it holds fewer than its own
 *       limit. That NODE_BLOB_SERVES_MAX is above the per-member limit is
 *       checked at compile time.
 * Fetching, member 0 back with its store wiped and only member 2's node
 * (the test's) to ask:
 *   - NODE_BLOB_FETCHES_MAX: exactly that many fetches out while the test
 *     answers nothing; one answered "missing" ends, the next record is asked;
 *   - (c) "busy" (R7): a fetch that has written its first piece, answered
 *     "busy" at the second, asks member 2 again for that same offset
 *     NODE_BLOB_BUSY_RETRY_MS later, NODE_BLOB_BUSY_RETRIES_MAX times, and
 *     takes the piece then: the blob is whole, never started again; a fetch
 *     answered "busy" NODE_BLOB_BUSY_RETRIES_MAX + 1 times in a row moves
 *     on (no one else to ask: it gives up) and asks member 2 no more.
 */
enum {
    SERVE_DELAY_MS = 3000,
    SERVES_MAX_LOWERED = NODE_BLOB_SERVES_PER_MEMBER_MAX + 2,
    NOTE_BYTES = 300 * 1024, /* two pieces */
    NOTES = NODE_BLOB_FETCHES_MAX + 1,
};

static void test_limits_at_their_edges(void **state)
{
    struct cli_net *n = *state;
    for (size_t i = 0; i < NODES; i++)
        if (n->c.nodes[i].pid == 0)
            cluster_start(&n->c, i);
    assert_int_not_equal(cluster_wait_leader(&n->c, LEADER_WAIT_MS), SIZE_MAX);
    /* Records enough that member 0, wiped, lacks one more than it fetches
     * at once; every one in node 2's store. */
    char record_hex[KEY_HEX], blob_hex[KEY_HEX];
    uint8_t record[32], blob[32];
    uint64_t bytes = 0;
    for (unsigned k = 0; k < NOTES; k++) {
        char name[32];
        snprintf(name, sizeof name, "note%u.txt", k);
        free(record_added_of(n, name, 100 + k, NOTE_BYTES, record_hex, blob_hex, &bytes));
        assert_true(bytes > NODE_BLOB_REPLICA_CHUNK_BYTES);
        assert_true(wait_holds(n, 2, blob_hex, bytes));
    }
    cli_hex_decode(record, record_hex, 32);
    cli_hex_decode(blob, blob_hex, 32);
    assert_int_equal(cluster_stop(&n->c, 2), 0);
    assert_int_equal(cluster_stop(&n->c, 1), 0);
    assert_int_equal(cluster_stop(&n->c, 0), 0);

    /* Serving: member 0 alone, members 1 and 2 played by the test. */
    char value[32];
    snprintf(value, sizeof value, "%d", SERVES_MAX_LOWERED);
    assert_int_equal(setenv("EHR_TEST_BLOB_SERVES_MAX", value, 1), 0); /* inherited */
    snprintf(value, sizeof value, "%d", SERVE_DELAY_MS);
    cluster_start_env(&n->c, 0, "EHR_TEST_BLOB_SERVE_DELAY_MS", value);
    assert_int_equal(unsetenv("EHR_TEST_BLOB_SERVES_MAX"), 0);
    struct fake f, g;
    fake_start(&f, n, 2, 0);
    fake_start(&g, n, 1, 0);
    assert_true(fake_wait(&f, &f.up, 30000));
    assert_true(fake_wait(&g, &g.up, 30000));

    /* (a) One member: NODE_BLOB_SERVES_PER_MEMBER_MAX held, the next busy. */
    for (unsigned i = 0; i < NODE_BLOB_SERVES_PER_MEMBER_MAX; i++)
        fake_fetch_send(&f, record, blob, 0);
    fakes_run_for(&f, &g, SERVE_DELAY_MS / 6);
    assert_int_equal(f.chunks, 0); /* all held on the worker pool */
    fake_fetch_send(&f, record, blob, NODE_BLOB_REPLICA_CHUNK_BYTES);
    assert_true(fake_wait_count(&f, &f.chunks, 0, SERVE_DELAY_MS / 3));
    assert_int_equal(f.chunks, 1);
    assert_true(f.busy); /* one over its own limit: busy, not missing */
    assert_false(f.missing);
    assert_int_equal(f.data_len, 0);
    assert_int_equal(f.offset, NODE_BLOB_REPLICA_CHUNK_BYTES);
    fakes_wait_served(&f, NODE_BLOB_SERVES_PER_MEMBER_MAX, &g, 0, 4 * SERVE_DELAY_MS);
    assert_int_equal(f.chunks_with_data, NODE_BLOB_SERVES_PER_MEMBER_MAX);
    assert_int_equal(f.chunks, NODE_BLOB_SERVES_PER_MEMBER_MAX + 1);
    assert_false(f.busy);
    assert_false(f.missing);
    assert_int_equal(f.data_len, NODE_BLOB_REPLICA_CHUNK_BYTES);

    /* (b) The total (lowered): member 2 its limit again, member 1 the rest
     * held; member 1's next is busy. */
    unsigned f_before = f.chunks, g_before = g.chunks;
    for (unsigned i = 0; i < NODE_BLOB_SERVES_PER_MEMBER_MAX; i++)
        fake_fetch_send(&f, record, blob, 0);
    for (unsigned i = NODE_BLOB_SERVES_PER_MEMBER_MAX; i < SERVES_MAX_LOWERED; i++)
        fake_fetch_send(&g, record, blob, 0);
    fakes_run_for(&f, &g, SERVE_DELAY_MS / 6);
    assert_int_equal(f.chunks, f_before); /* all held */
    assert_int_equal(g.chunks, g_before);
    fake_fetch_send(&g, record, blob, 0);
    assert_true(fake_wait_count(&g, &g.chunks, g_before, SERVE_DELAY_MS / 3));
    assert_int_equal(g.chunks, g_before + 1);
    assert_true(g.busy); /* below its own limit: the total */
    assert_false(g.missing);
    assert_int_equal(g.data_len, 0);
    assert_int_equal(f.chunks, f_before);
    fakes_wait_served(&f, 2 * NODE_BLOB_SERVES_PER_MEMBER_MAX, &g,
                      SERVES_MAX_LOWERED - NODE_BLOB_SERVES_PER_MEMBER_MAX, 4 * SERVE_DELAY_MS);
    assert_int_equal(f.chunks_with_data, 2 * NODE_BLOB_SERVES_PER_MEMBER_MAX);
    assert_int_equal(g.chunks_with_data, SERVES_MAX_LOWERED - NODE_BLOB_SERVES_PER_MEMBER_MAX);
    assert_false(g.busy);
    fake_stop(&g);
    fake_stop(&f);
    assert_int_equal(cluster_stop(&n->c, 0), 0);

    /* Fetching: NODE_BLOB_FETCHES_MAX out while the test answers nothing. */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/blobs'", n->c.nodes[0].dir);
    assert_int_equal(system(cmd), 0);
    cluster_start(&n->c, 0);
    fake_start(&f, n, 2, 0);
    assert_true(fake_wait(&f, &f.up, 30000));
    uint64_t end = cli_mono_ms() + 20000;
    while (f.asked_count < NODE_BLOB_FETCHES_MAX && cli_mono_ms() < end)
        fake_run_for(&f, 10);
    assert_int_equal(f.asked_count, NODE_BLOB_FETCHES_MAX);
    fake_run_for(&f, 2000); /* nothing more while they wait (the timeout is 10 s) */
    assert_int_equal(f.asked_count, NODE_BLOB_FETCHES_MAX);
    /* One answered "missing": its fetch ends, the next record is asked for. */
    fake_reply(&f, f.asked_record[0], f.asked_blob[0], 0, 0, NULL, 0, true, false);
    end = cli_mono_ms() + 5000;
    while (f.asked_count < NODE_BLOB_FETCHES_MAX + 1 && cli_mono_ms() < end)
        fake_run_for(&f, 10);
    assert_int_equal(f.asked_count, NODE_BLOB_FETCHES_MAX + 1);

    /* (c) Busy. Two fetches still out, each asked of member 2 at offset 0:
     * the first is given its first piece, then "busy" at the second
     * NODE_BLOB_BUSY_RETRIES_MAX times, then the piece; the second is
     * answered "busy" every time. */
    size_t kept_len = 0;
    uint8_t *kept = blob_of_node2(n, f.asked_blob[1], &kept_len);
    assert_true(kept_len > NODE_BLOB_REPLICA_CHUNK_BYTES);
    struct fake_script *s = &f.scripts[0];
    memcpy(s->record, f.asked_record[1], 32);
    memcpy(s->blob, f.asked_blob[1], 32);
    s->busy_offset = NODE_BLOB_REPLICA_CHUNK_BYTES;
    s->busy_left = NODE_BLOB_BUSY_RETRIES_MAX;
    s->data = kept;
    s->data_len = kept_len;
    struct fake_script *t = &f.scripts[1];
    memcpy(t->record, f.asked_record[2], 32);
    memcpy(t->blob, f.asked_blob[2], 32);
    t->busy_offset = 0;
    t->busy_left = NODE_BLOB_BUSY_RETRIES_MAX + 1;
    f.script_count = 2;
    unsigned from = f.ask_count;
    fake_script_answer(&f, s, 0); /* the first piece */
    fake_script_answer(&f, t, 0); /* busy */
    char kept_hex[KEY_HEX];
    ehr_hex_encode(kept_hex, f.asked_blob[1], 32);
    end = cli_mono_ms() + 20000;
    while (!holds(n, 0, kept_hex, kept_len) && cli_mono_ms() < end)
        fake_run_for(&f, 50);
    assert_true(holds(n, 0, kept_hex, kept_len));
    /* The second gave up after its last "busy": nothing more comes for it
     * (a retry would within NODE_BLOB_BUSY_RETRY_MS; the next pass is
     * NODE_BLOB_RETRY_MS away). */
    end = cli_mono_ms() + 20000;
    while (t->busy_left > 0 && cli_mono_ms() < end)
        fake_run_for(&f, 10);
    assert_int_equal(t->busy_left, 0);
    fake_run_for(&f, 3 * NODE_BLOB_BUSY_RETRY_MS);
    struct fake_ask a[16];
    /* The first: asked again for the second piece, the same offset, each
     * time after the rest; never from the start again (a blob of three
     * pieces, from an earlier test, is asked for its third after). */
    unsigned count = fake_asks_of(&f, s->record, from, a, 16);
    assert_true(count >= NODE_BLOB_BUSY_RETRIES_MAX + 1);
    for (unsigned i = 0; i <= NODE_BLOB_BUSY_RETRIES_MAX; i++)
        assert_int_equal(a[i].offset, NODE_BLOB_REPLICA_CHUNK_BYTES);
    for (unsigned i = 1; i <= NODE_BLOB_BUSY_RETRIES_MAX; i++)
        assert_true(a[i].at_ms - a[i - 1].at_ms >= NODE_BLOB_BUSY_RETRY_MS * 3 / 4);
    for (unsigned i = NODE_BLOB_BUSY_RETRIES_MAX + 1; i < count; i++)
        assert_true(a[i].offset > NODE_BLOB_REPLICA_CHUNK_BYTES);
    /* The second: asked again NODE_BLOB_BUSY_RETRIES_MAX times, then no more. */
    count = fake_asks_of(&f, t->record, from, a, 16);
    assert_int_equal(count, NODE_BLOB_BUSY_RETRIES_MAX);
    for (unsigned i = 0; i < count; i++)
        assert_int_equal(a[i].offset, 0);
    for (unsigned i = 1; i < count; i++)
        assert_true(a[i].at_ms - a[i - 1].at_ms >= NODE_BLOB_BUSY_RETRY_MS * 3 / 4);
    assert_true(cli_mono_ms() - a[count - 1].at_ms >= 3 * NODE_BLOB_BUSY_RETRY_MS);
    assert_int_equal(cluster_stop(&n->c, 0), 0);
    fake_stop(&f);
    free(kept);
    assert_int_equal(cli_net_blob_files(n, 0, ".tmp-"), 0);
}

/*
 * NODE_BLOB_FETCH_REQUESTS_BURST at its edge. With refills off (ehrd-test:
 * EHR_TEST_BLOB_FETCH_NO_REFILL, so that the test's pace does not matter),
 * a member's first BURST BlobFetches are answered, here "missing" (a record
 * nobody anchored: each a ledger read), and the next one "busy", before
 * any ledger read.
 */
static void test_fetch_rate_at_its_edge(void **state)
{
    struct cli_net *n = *state;
    for (size_t i = 0; i < NODES; i++)
        if (n->c.nodes[i].pid != 0)
            assert_int_equal(cluster_stop(&n->c, i), 0);
    cluster_start_env(&n->c, 0, "EHR_TEST_BLOB_FETCH_NO_REFILL", "1");
    struct fake f;
    fake_start(&f, n, 2, 0);
    assert_true(fake_wait(&f, &f.up, 30000));
    uint8_t record[32], blob[32];
    memset(record, 0xab, sizeof record);
    memset(blob, 0xcd, sizeof blob);
    for (unsigned i = 0; i < NODE_BLOB_FETCH_REQUESTS_BURST; i++)
        fake_fetch_send(&f, record, blob, 0);
    uint64_t end = cli_mono_ms() + 20000;
    while (f.chunks < NODE_BLOB_FETCH_REQUESTS_BURST && cli_mono_ms() < end)
        fake_run_for(&f, 10);
    assert_int_equal(f.chunks, NODE_BLOB_FETCH_REQUESTS_BURST);
    assert_int_equal(f.missing_count, NODE_BLOB_FETCH_REQUESTS_BURST);
    assert_int_equal(f.busy_count, 0);
    fake_fetch_send(&f, record, blob, 0);
    assert_true(fake_wait_count(&f, &f.chunks, NODE_BLOB_FETCH_REQUESTS_BURST, 20000));
    assert_true(f.busy);
    assert_int_equal(f.busy_count, 1);
    assert_int_equal(f.missing_count, NODE_BLOB_FETCH_REQUESTS_BURST);
    fake_stop(&f);
    assert_int_equal(cluster_stop(&n->c, 0), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* p2p writes with write(2) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicated_read_from_a_replica_and_repaired),
        cmocka_unit_test(test_bad_input_from_a_member_is_refused),
        cmocka_unit_test(test_limits_at_their_edges),
        cmocka_unit_test(test_fetch_rate_at_its_edge),
    };
    return cmocka_run_group_tests(tests, net_setup, net_teardown);
}
