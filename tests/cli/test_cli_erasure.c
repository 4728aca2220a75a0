/*
 * test_cli_erasure - a patient erases a record (RecordErase, issue 13)
 * against real ehrd processes, three members (hospital, lab, insurer;
 * tests/node/cluster.h):
 *   - before: the hospital adds a record (its blob in the hospital node's
 *     data directory), the patient grants the lab with key fragments, the
 *     lab is permitted and opens the record byte for byte;
 *   - the lab cannot erase the patient's record (the rules refuse it, the
 *     blob stays);
 *   - `record erase` by the patient: the blob file is deleted from every
 *     node's data directory (the custodian's and the two replicas'); `records` and `record show`
 * say ERASED; the lab's `record get` with its earlier permit fails saying the record was erased,
 * and writes nothing; GetBlob (signed by the patient) and GetCapsuleFragment (the lab's earlier
 * permit) are FAILED_PRECONDITION on every node; a new access request is a DENY saying "erased"; a
 *     second erase is refused;
 *   - the audit trail still holds the earlier permit, and the erase and
 *     the deny after it;
 *   - a node that finds the blob of an erased record at start (put back
 *     while it was down, as a node that missed the erase would hold it)
 *     deletes it, and its repair pass tries no fetch of it, though a
 *     replica still holds a copy;
 *   - `ledger verify` of a node's data directory: the chain with the erase
 *     still verifies, the erase replayed to the same result and state.
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
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "cli_net.h"
#include "ehr/v1/node.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "ehr_crypto.h"
#include "ledger_format.h"
#include "read_auth.h"
#include "rpc.h"

#define EHRD EHR_BINARY_DIR "/tests/node/ehrd-test"

enum { NODES = 3, KEY_HEX = CLI_NET_HEX_BYTES, LEADER_WAIT_MS = 30000, CALL_MS = 10000 };
enum { HOSPITAL = 0, LAB = 1, INSURER = 2 };
/* How long a node may take to apply a block and delete a blob. */
enum { CATCH_UP_MS = 15000, POLL_MS = 100 };

static int net_setup(void **state)
{
    *state = cli_net_start(NODES, EHRD, NULL, LEADER_WAIT_MS);
    return *state != NULL ? 0 : -1;
}

static int net_teardown(void **state)
{
    return cli_net_stop(*state);
}

/* An ehrctl command that submitted with --wait --json: its hash (HASH, 65
 * bytes), its result's code into CODE and, when DECISION is not NULL, the
 * access decision and the reason (REASON, REASON_SIZE). */
static void submitted(struct proc_result *r, char hash[KEY_HEX], const char *code, char *decision,
                      char *reason, size_t reason_size)
{
    json_t *out = cli_parse_json(r->out);
    snprintf(hash, KEY_HEX, "%s", json_string_value(json_object_get(out, "hash")));
    json_t *result = json_object_get(out, "result");
    const char *got = json_string_value(json_object_get(result, "code"));
    if (got == NULL || strcmp(got, code) != 0)
        fail_msg("expected result %s; stdout: %s; stderr: %s", code, r->out, r->err);
    if (decision != NULL) {
        snprintf(decision, 16, "%s", json_string_value(json_object_get(result, "decision")));
        const char *why = json_string_value(json_object_get(result, "reason"));
        snprintf(reason, reason_size, "%s", why != NULL ? why : "");
    }
    json_decref(out);
    proc_result_free(r);
    assert_int_equal(strlen(hash), 64);
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Wait until PATH is gone; returns whether it went within CATCH_UP_MS. */
static bool wait_gone(const char *path)
{
    uint64_t end = cli_mono_ms() + CATCH_UP_MS;
    while (exists(path) && cli_mono_ms() < end)
        usleep(POLL_MS * 1000);
    return !exists(path);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Whether the file at PATH holds NEEDLE past byte FROM. */
static bool file_has_since(const char *path, long from, const char *needle)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    char *b = calloc(1, (size_t)(size > from ? size - from : 0) + 1);
    assert_non_null(b);
    fseek(f, from, SEEK_SET);
    size_t got = size > from ? fread(b, 1, (size_t)(size - from), f) : 0;
    b[got] = '\0';
    fclose(f);
    bool found = strstr(b, needle) != NULL;
    free(b);
    return found;
}

static bool wait_exists(const char *path)
{
    uint64_t end = cli_mono_ms() + CATCH_UP_MS;
    while (!exists(path) && cli_mono_ms() < end)
        usleep(POLL_MS * 1000);
    return exists(path);
}

static void ignore_message(void *data, const uint8_t *message, size_t len)
{
    (void)data, (void)message, (void)len;
}

/* GetBlob of RECORD's BLOB from node I, signed by KEY: the gRPC status and
 * its message (MSG). */
static int blob_get(struct cli_net *n, size_t i, const ehr_signing_key *key,
                    const uint8_t record[EHR_HASH_BYTES], const uint8_t blob[EHR_HASH_BYTES],
                    char msg[RPC_STATUS_MESSAGE_BYTES_MAX + 1])
{
    Ehr__V1__GetBlobRequest q = EHR__V1__GET_BLOB_REQUEST__INIT;
    q.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)record};
    q.blob_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)blob};
    struct node_read_auth_signed auth;
    uint64_t now = (uint64_t)time(NULL) * 1000;
    assert_int_equal(node_read_auth_sign(&auth, &q.base, &q.auth, n->c.chain_id,
                                         "/ehr.v1.Node/GetBlob", key, now - 1000, now + 60000),
                     0);
    uint8_t buf[512];
    assert_true(ehr__v1__get_blob_request__get_packed_size(&q) <= sizeof buf);
    size_t len = ehr__v1__get_blob_request__pack(&q, buf);
    struct rpc_sync *sync = NULL;
    assert_int_equal(rpc_sync_open("127.0.0.1", n->c.nodes[i].rpc_port, CALL_MS, &sync, NULL), 0);
    struct rpc_result res;
    int status = rpc_sync_stream(sync, "/ehr.v1.Node/GetBlob", buf, len, CALL_MS, ignore_message,
                                 NULL, &res);
    snprintf(msg, RPC_STATUS_MESSAGE_BYTES_MAX + 1, "%s", res.message);
    rpc_result_clear(&res);
    rpc_sync_close(sync);
    return status;
}

/* GetCapsuleFragment of RECORD from node I with PERMIT, signed by member
 * SIGNER: the gRPC status and its message (MSG). */
static int cfrag_get(struct cli_net *n, size_t i, size_t signer,
                     const uint8_t record[EHR_HASH_BYTES], const uint8_t permit[EHR_HASH_BYTES],
                     char msg[RPC_STATUS_MESSAGE_BYTES_MAX + 1])
{
    uint8_t buf[CLI_NET_CFRAG_REQUEST_BYTES_MAX];
    size_t len = cli_net_cfrag_request(n, signer, record, permit, buf);
    struct rpc_result res;
    int status = cluster_call(&n->c, i, "GetCapsuleFragment", buf, len, CALL_MS, &res);
    snprintf(msg, RPC_STATUS_MESSAGE_BYTES_MAX + 1, "%s", res.message);
    rpc_result_clear(&res);
    return status;
}

/* Node I answers CALL with WANT within CATCH_UP_MS (a node applies the
 * erase's block a moment after the leader acknowledged it). */
#define eventually(want, call)                                                                     \
    do {                                                                                           \
        int got_ = -1;                                                                             \
        uint64_t end_ = cli_mono_ms() + CATCH_UP_MS;                                               \
        while ((got_ = (call)) != (want) && cli_mono_ms() < end_)                                  \
            usleep(POLL_MS * 1000);                                                                \
        assert_int_equal(got_, (want));                                                            \
    } while (0)

static void test_patient_erases_a_record(void **state)
{
    struct cli_net *n = *state;
    /* The patient, a lab result the hospital holds, a grant to the lab. */
    cli_net_patient_enroll(n, "patient.key", "patient.pub.json", n->node[HOSPITAL]);
    struct proc_result r;
    cli_file_put(proc_path(n->c.root, "result.txt"), (const uint8_t *)"HbA1c 6.1 %\n", 12);
    r = cli_run(n, "record", "add", "result.txt", "--patient", "patient.pub.json", "--type",
                "lab_result", "--key", "node0.key", "--node", n->node[HOSPITAL], "--wait",
                "--json");
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    char record_hex[KEY_HEX], blob_hex[KEY_HEX];
    snprintf(record_hex, sizeof record_hex, "%s",
             json_string_value(json_object_get(out, "record_id")));
    snprintf(blob_hex, sizeof blob_hex, "%s", json_string_value(json_object_get(out, "blob_id")));
    json_decref(out);
    proc_result_free(&r);
    uint8_t record[EHR_HASH_BYTES], blob[EHR_HASH_BYTES];
    cli_hex_decode(record, record_hex, EHR_HASH_BYTES);
    cli_hex_decode(blob, blob_hex, EHR_HASH_BYTES);
    char stored[600];
    snprintf(stored, sizeof stored, "%s", cli_net_blob_path(n, HOSPITAL, blob_hex));
    assert_true(exists(stored));
    size_t ciphertext_len;
    uint8_t *ciphertext = cli_file_bytes(stored, &ciphertext_len);

    char receiving_hex[KEY_HEX];
    cli_net_receiving_key(n, "node1.key", receiving_hex);
    r = cli_run(n, "consent", "grant", "--grantee-key", "node1.key", "--purpose", "treatment",
                "--type", "lab_result", "--receiving-key", receiving_hex, "--key", "patient.key",
                "--node", n->node[HOSPITAL], "--wait", "--json");
    cli_assert_ok(&r);
    proc_result_free(&r);

    /* The lab is permitted and opens the record. */
    char hash[KEY_HEX], decision[16], reason[256];
    r = cli_run(n, "access", "request", record_hex, "--purpose", "treatment", "--key", "node1.key",
                "--node", n->node[HOSPITAL], "--json");
    cli_assert_ok(&r);
    submitted(&r, hash, "ok", decision, reason, sizeof reason);
    assert_string_equal(decision, "permit");
    char permit_hex[KEY_HEX];
    snprintf(permit_hex, sizeof permit_hex, "%s", hash);
    uint8_t permit[EHR_HASH_BYTES];
    cli_hex_decode(permit, permit_hex, EHR_HASH_BYTES);
    r = cli_run(n, "record", "get", record_hex, "--key", "node1.key", "--permit", permit_hex,
                "--fragment-node", n->node[0], "--fragment-node", n->node[1], "--fragment-node",
                n->node[2], "--node", n->node[LAB], "--out", "lab.txt");
    cli_assert_ok(&r);
    proc_result_free(&r);
    size_t got_len;
    uint8_t *got = cli_file_bytes(proc_path(n->c.root, "lab.txt"), &got_len);
    assert_int_equal(got_len, 12);
    assert_memory_equal(got, "HbA1c 6.1 %\n", 12);
    free(got);

    /* Only the patient erases: the lab's erase is refused, the blob stays. */
    r = cli_run(n, "record", "erase", record_hex, "--key", "node1.key", "--node", n->node[HOSPITAL],
                "--wait", "--json");
    assert_int_not_equal(r.status, 0);
    if (strstr(r.out, "only the record's patient") == NULL &&
        strstr(r.err, "only the record's patient") == NULL)
        fail_msg("stdout: %s; stderr: %s", r.out, r.err);
    proc_result_free(&r);
    assert_true(exists(stored));

    /* Every member's node holds a copy (three members, NODE_BLOB_COPIES
     * three): the erasure must reach the replicas too. */
    for (size_t i = 0; i < NODES; i++)
        assert_true(wait_exists(cli_net_blob_path(n, i, blob_hex)));

    /* The patient erases it: what ehrctl says it did, then the blob goes. */
    r = cli_run(n, "record", "erase", record_hex, "--ground", "no_longer_needed", "--key",
                "patient.key", "--node", n->node[HOSPITAL], "--wait");
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, record_hex));
    assert_non_null(strstr(r.out, "deletes its copy of the ciphertext"));
    proc_result_free(&r);
    assert_true(wait_gone(stored));
    for (size_t i = 0; i < NODES; i++)
        assert_true(wait_gone(cli_net_blob_path(n, i, blob_hex)));

    /* Listings mark it; record show says so. */
    r = cli_run(n, "records", "patient.key", "--node", n->node[LAB]);
    cli_assert_ok(&r);
    if (strstr(r.out, "ERASED at") == NULL)
        fail_msg("stdout: %s", r.out);
    proc_result_free(&r);
    r = cli_run(n, "records", "patient.key", "--node", n->node[LAB], "--json");
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    json_t *first = json_array_get(json_object_get(out, "records"), 0);
    assert_true(json_is_true(json_object_get(first, "erased")));
    assert_string_equal(json_string_value(json_object_get(first, "erase_ground")),
                        "no_longer_needed");
    json_decref(out);
    proc_result_free(&r);
    r = cli_run(n, "record", "show", record_hex, "--key", "patient.key", "--node", n->node[LAB]);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "ERASED"));
    proc_result_free(&r);

    /* The lab's record get with its earlier permit: refused, nothing written. */
    r = cli_run(n, "record", "get", record_hex, "--key", "node1.key", "--permit", permit_hex,
                "--fragment-node", n->node[0], "--fragment-node", n->node[1], "--node",
                n->node[LAB], "--out", "lab-after.txt");
    assert_int_not_equal(r.status, 0);
    if (strstr(r.err, "erased by its patient") == NULL)
        fail_msg("stderr: %s", r.err);
    proc_result_free(&r);
    assert_false(exists(proc_path(n->c.root, "lab-after.txt")));
    assert_false(exists(proc_path(n->c.root, "lab-after.txt.part")));

    /* Every node: no capsule fragment for the old permit; no blob, even to
     * the patient, and not from the node that held it. */
    ehr_identity *patient = sodium_malloc(sizeof *patient);
    assert_non_null(patient);
    assert_int_equal(
        ehr_keyfile_load(proc_path(n->c.root, "patient.key"), patient, NULL, "", 0, NULL), 0);
    char msg[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    for (size_t i = 0; i < NODES; i++) {
        eventually(RPC_STATUS_FAILED_PRECONDITION, cfrag_get(n, i, LAB, record, permit, msg));
        assert_non_null(strstr(msg, "erased"));
        eventually(RPC_STATUS_FAILED_PRECONDITION,
                   blob_get(n, i, &patient->signing, record, blob, msg));
        assert_non_null(strstr(msg, "erased by its patient"));
    }

    /* A new access request: a DENY saying why; a second erase: refused. */
    r = cli_run(n, "access", "request", record_hex, "--purpose", "treatment", "--key", "node1.key",
                "--node", n->node[HOSPITAL], "--json");
    cli_assert_ok(&r);
    submitted(&r, hash, "ok", decision, reason, sizeof reason);
    assert_string_equal(decision, "deny");
    assert_non_null(strstr(reason, "erased"));
    r = cli_run(n, "record", "erase", record_hex, "--key", "patient.key", "--node",
                n->node[HOSPITAL], "--wait", "--json");
    assert_int_not_equal(r.status, 0);
    if (strstr(r.out, "erased already") == NULL && strstr(r.err, "erased already") == NULL)
        fail_msg("stdout: %s; stderr: %s", r.out, r.err);
    proc_result_free(&r);

    /* The trail: the permit before, the erase, the deny after. */
    r = cli_run(n, "audit", "patient.key", "--all", "--node", n->node[INSURER], "--json");
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    json_t *events = json_object_get(out, "events");
    size_t permits = 0, denies = 0, erases = 0, i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        const char *id = json_string_value(json_object_get(ev, "record_id"));
        if (id == NULL || strcmp(id, record_hex) != 0)
            continue;
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        const char *d = json_string_value(json_object_get(ev, "decision"));
        erases += kind != NULL && strcmp(kind, "erase") == 0;
        permits += d != NULL && strcmp(d, "permit") == 0;
        denies += d != NULL && strcmp(d, "deny") == 0;
    }
    json_decref(out);
    proc_result_free(&r);
    assert_int_equal(permits, 1);
    assert_int_equal(erases, 1);
    assert_int_equal(denies, 1);

    /* A node that finds the blob of an erased record at start deletes it;
     * and repair never brings an erased record's blob back, though a
     * replica (the lab's, put back while it runs) still holds it: the
     * custodian holds none of it, and the lab serves none of it. */
    assert_int_equal(cluster_stop(&n->c, HOSPITAL), 0);
    cli_file_put(stored, ciphertext, ciphertext_len);
    char lab_copy[600];
    snprintf(lab_copy, sizeof lab_copy, "%s", cli_net_blob_path(n, LAB, blob_hex));
    cli_file_put(lab_copy, ciphertext, ciphertext_len);
    long log_from = file_size(n->c.nodes[HOSPITAL].log);
    cluster_start(&n->c, HOSPITAL);
    assert_true(wait_gone(stored));
    usleep(3000 * 1000); /* the start's repair pass, and a fetch it would make */
    assert_false(exists(stored));
    /* No fetch was even tried (one would log its end: stored, or given up). */
    assert_false(file_has_since(n->c.nodes[HOSPITAL].log, log_from, "blob replicated"));
    assert_false(file_has_since(n->c.nodes[HOSPITAL].log, log_from, "blob not fetched"));
    eventually(RPC_STATUS_FAILED_PRECONDITION,
               blob_get(n, HOSPITAL, &patient->signing, record, blob, msg));
    assert_int_not_equal(cluster_wait_leader(&n->c, LEADER_WAIT_MS), SIZE_MAX);

    /* The chain still verifies offline, the erase replayed through the
     * rules to the same results and state, the anchor in its block. */
    assert_int_equal(cluster_stop(&n->c, LAB), 0);
    r = cli_run(n, "ledger", "verify", "--data", n->c.nodes[LAB].dir, "--json");
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    assert_true(json_is_true(json_object_get(out, "ok")));
    json_decref(out);
    proc_result_free(&r);
    sodium_free(patient);
    free(ciphertext);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patient_erases_a_record),
    };
    return cmocka_run_group_tests(tests, net_setup, net_teardown);
}
