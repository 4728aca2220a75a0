/*
 * test_cli_grantee - the grantee's path against real ehrd processes, three
 * members (hospital, lab, insurer; tests/node/cluster.h):
 *   - `key receiving-key` and `consent grant --receiving-key`: the grant
 *     carries one key fragment per member, each sealed to that member's
 *     node and opening only there, made from the patient's delegating key
 *     of the grant's type for the lab's receiving key; bad input (two
 *     types, a threshold over the members, a threshold without a key, a
 *     key that is not one) is exit 2 and submits nothing;
 *   - GetCapsuleFragment: the permitted lab gets a capsule fragment from
 *     each node, each proof verifies, and two of them open the record key
 *     the patient opens; a tampered fragment fails its proof; the denied
 *     insurer, and the insurer holding the lab's permit, get
 *     PERMISSION_DENIED and no fragment; with one node down the two others
 *     still open the record; once the revoke commits every node refuses;
 *     the grant names its fragments' delegating key, and a grant whose
 *     fragments were made from another key than it names gets no
 *     fragment from any node, though the rules permit the access;
 *     NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX at its edge (jobs held on the
 *     worker pool by ehrd-test's EHR_TEST_CAPSULE_DELAY_MS: of one more
 *     requests than the limit at once, one is RESOURCE_EXHAUSTED);
 *   - `record get` as the grantee: with --permit, the exact bytes back from
 *     three nodes' fragments; with --purpose and one node down, a warning
 *     naming it and the bytes from the two others; one node named (under
 *     the threshold), exit 1 and no file; for another purpose than the
 *     consent's, the rules' deny (exit 8), no file; after the revoke, and for the
 *     insurer (no consent), the anchor is refused already (exit 8), no file.
 *
 * The test signs its GetCapsuleFragment requests itself (node/read_auth.h)
 * with the members' key files' identities, as a client would.
 */
#include <pthread.h>
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
#include <unistd.h>

#include <sodium.h>

#include "cli_net.h"
#include "ehr/v1/node.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "ehr_crypto.h"
#include "node_internal.h"
#include "pre_seal.h"

/* The test build of the daemon: the same node, with fault switches read
 * from the environment (tests/node/ehrd_test_hooks.h). */
#define EHRD EHR_BINARY_DIR "/tests/node/ehrd-test"

enum { NODES = 3, KEY_HEX = CLI_NET_HEX_BYTES, LEADER_WAIT_MS = 30000 };
enum { HOSPITAL = 0, LAB = 1, INSURER = 2 };
/* The capsule-fragment limit's edge: this many requests at once, each job
 * held CAPSULE_DELAY_MS on the node's worker pool. */
enum { FLOOD = NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX + 1, CAPSULE_DELAY_MS = 500 };

/* One request of the flood, sent from its own thread (no cmocka assert
 * here: the main thread checks the statuses). */
struct flood_call {
    struct cli_net *n;
    size_t node;
    uint8_t request[CLI_NET_CFRAG_REQUEST_BYTES_MAX];
    size_t request_len;
    int status;
};

static void *flood_run(void *arg)
{
    struct flood_call *f = arg;
    struct rpc_result res;
    f->status = cluster_call(&f->n->c, f->node, "GetCapsuleFragment", f->request, f->request_len,
                             30000, &res);
    rpc_result_clear(&res);
    return NULL;
}

static int net_setup(void **state)
{
    *state = cli_net_start(NODES, EHRD, NULL, LEADER_WAIT_MS);
    return *state != NULL ? 0 : -1;
}

static int net_teardown(void **state)
{
    return cli_net_stop(*state);
}

/* The patient's delegating public key for lab results, from PUB.json. */
static void delegating_public(struct cli_net *n, uint8_t out[EHR_PRE_PUBLIC_BYTES])
{
    json_error_t error;
    json_t *root = json_load_file(proc_path(n->c.root, "patient.pub.json"), 0, &error);
    assert_non_null(root);
    cli_hex_decode(
        out,
        json_string_value(json_object_get(json_object_get(root, "delegating_keys"), "lab_result")),
        EHR_PRE_PUBLIC_BYTES);
    json_decref(root);
}

static void test_grantee_path(void **state)
{
    struct cli_net *n = *state;
    /* The patient, enrolled by the hospital, and a lab result it holds. */
    cli_net_patient_enroll(n, "patient.key", "patient.pub.json", n->node[HOSPITAL]);
    struct proc_result r;
    FILE *f = fopen(proc_path(n->c.root, "result.txt"), "w");
    assert_non_null(f);
    fputs("potassium 4.1 mmol/L\n", f);
    fclose(f);
    r = cli_run(n, "record", "add", "result.txt", "--patient", "patient.pub.json", "--type",
                "lab_result", "--key", "node0.key", "--node", n->node[HOSPITAL], "--wait",
                "--json");
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    uint8_t record[EHR_HASH_BYTES];
    cli_hex_decode(record, json_string_value(json_object_get(out, "record_id")), EHR_HASH_BYTES);
    json_decref(out);
    proc_result_free(&r);

    /* The lab's receiving key, as it hands it to the patient. */
    char receiving_hex[KEY_HEX];
    cli_net_receiving_key(n, "node1.key", receiving_hex);
    ehr_pre_key lab;
    assert_int_equal(ehr_pre_receiving_key_derive(&lab, n->c.nodes[LAB].identity->kx.secret), 0);
    uint8_t receiving[EHR_PRE_PUBLIC_BYTES];
    cli_hex_decode(receiving, receiving_hex, EHR_PRE_PUBLIC_BYTES);
    assert_memory_equal(receiving, lab.public_key, EHR_PRE_PUBLIC_BYTES);

    /* Bad input: exit 2, nothing submitted. */
    r = cli_run(n, "consent", "grant", "--grantee-key", "node1.key", "--purpose", "treatment",
                "--type", "lab_result", "--type", "imaging", "--receiving-key", receiving_hex,
                "--key", "patient.key", "--node", n->node[HOSPITAL]);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "exactly one record type"));
    proc_result_free(&r);
    r = cli_run(n, "consent", "grant", "--grantee-key", "node1.key", "--purpose", "treatment",
                "--type", "lab_result", "--receiving-key", receiving_hex, "--threshold", "4",
                "--key", "patient.key", "--node", n->node[HOSPITAL]);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "over the 3 members"));
    proc_result_free(&r);
    r = cli_run(n, "consent", "grant", "--grantee-key", "node1.key", "--purpose", "treatment",
                "--type", "lab_result", "--threshold", "2", "--key", "patient.key", "--node",
                n->node[HOSPITAL]);
    assert_int_equal(r.status, 2);
    proc_result_free(&r);
    /* 32 bytes that no ristretto255 point encodes (above the field's
     * prime). A random key would be a valid encoding about one time in
     * eight, so a fixed one, not another party's key. */
    r = cli_run(n, "consent", "grant", "--grantee-key", "node1.key", "--purpose", "treatment",
                "--type", "lab_result", "--receiving-key",
                "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "--key",
                "patient.key", "--node", n->node[HOSPITAL]);
    assert_int_equal(r.status, 2);
    proc_result_free(&r);

    /* The grant: 2 of 3. */
    r = cli_run(n, "consent", "grant", "--grantee-key", "node1.key", "--purpose", "treatment",
                "--type", "lab_result", "--receiving-key", receiving_hex, "--key", "patient.key",
                "--node", n->node[HOSPITAL], "--wait", "--json");
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(out, "key_fragments")), "2 of 3 members");
    uint8_t consent[EHR_HASH_BYTES];
    cli_hex_decode(consent, json_string_value(json_object_get(out, "consent_id")), EHR_HASH_BYTES);
    json_decref(out);
    proc_result_free(&r);

    /* Each fragment opens at its node only, made for the lab by the
     * patient's lab-result key. */
    uint8_t delegating[EHR_PRE_PUBLIC_BYTES];
    delegating_public(n, delegating);
    Ehr__V1__TxBody *grant = cli_net_tx_body(n, HOSPITAL, consent);
    assert_int_equal(grant->consent_grant->n_key_fragments, NODES);
    /* ... and the grant names that key, under the patient's signature. */
    assert_int_equal(grant->consent_grant->delegating_key.len, EHR_PRE_PUBLIC_BYTES);
    assert_memory_equal(grant->consent_grant->delegating_key.data, delegating,
                        EHR_PRE_PUBLIC_BYTES);
    unsigned opened_at[NODES] = {0};
    for (size_t k = 0; k < NODES; k++) {
        const ProtobufCBinaryData *b = &grant->consent_grant->key_fragments[k];
        assert_int_equal(b->len, EHR_PRE_SEALED_KFRAG_BYTES);
        for (size_t i = 0; i < NODES; i++) {
            ehr_pre_kfrag kfrag;
            if (ehr_pre_kfrag_unseal(&kfrag, b->data, b->len, &n->c.nodes[i].identity->kx, NULL) !=
                0)
                continue;
            opened_at[i]++;
            assert_int_equal(ehr_pre_kfrag_verify(&kfrag, delegating, receiving), 0);
            ehr_pre_kfrag_wipe(&kfrag);
        }
    }
    for (size_t i = 0; i < NODES; i++)
        assert_int_equal(opened_at[i], 1);
    ehr__v1__tx_body__free_unpacked(grant, NULL);

    /* The lab asks and is permitted; the insurer asks and is denied. */
    char hash[KEY_HEX], decision[32], record_hex[KEY_HEX];
    sodium_bin2hex(record_hex, sizeof record_hex, record, EHR_HASH_BYTES);
    r = cli_run(n, "access", "request", record_hex, "--purpose", "treatment", "--key", "node1.key",
                "--node", n->node[HOSPITAL], "--json");
    cli_submitted(&r, hash, decision, sizeof decision);
    assert_string_equal(decision, "permit");
    uint8_t permit[EHR_HASH_BYTES], denied[EHR_HASH_BYTES];
    cli_hex_decode(permit, hash, EHR_HASH_BYTES);
    r = cli_run(n, "access", "request", record_hex, "--purpose", "treatment", "--key", "node2.key",
                "--node", n->node[HOSPITAL], "--json");
    cli_submitted(&r, hash, decision, sizeof decision);
    assert_string_equal(decision, "deny");
    cli_hex_decode(denied, hash, EHR_HASH_BYTES);

    /* The record key as the patient opens it, to compare. */
    Ehr__V1__TxBody *anchor = cli_net_tx_body(n, HOSPITAL, record);
    ehr_pre_capsule capsule;
    assert_int_equal(ehr_pre_capsule_decode(&capsule, anchor->record_anchor->key_capsule.data,
                                            anchor->record_anchor->key_capsule.len, NULL),
                     0);
    ehr__v1__tx_body__free_unpacked(anchor, NULL);
    ehr_identity *patient = sodium_malloc(sizeof *patient);
    assert_int_equal(
        ehr_keyfile_load(proc_path(n->c.root, "patient.key"), patient, NULL, "", 0, NULL), 0);
    ehr_pre_key patient_lab;
    assert_int_equal(ehr_pre_delegating_key_derive(&patient_lab, patient->signing.secret,
                                                   EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT),
                     0);
    sodium_free(patient);
    uint8_t want[EHR_PRE_KEY_BYTES], got[EHR_PRE_KEY_BYTES];
    assert_int_equal(ehr_pre_decapsulate(&patient_lab, &capsule, want), 0);
    ehr_pre_key_wipe(&patient_lab);

    /* The permitted lab: a verified cfrag from every node; any two open it. */
    ehr_pre_cfrag cfrags[NODES];
    for (size_t i = 0; i < NODES; i++) {
        uint8_t named[EHR_PRE_PUBLIC_BYTES];
        assert_int_equal(cli_net_cfrag_get(n, i, LAB, record, permit, &cfrags[i], named),
                         RPC_STATUS_OK);
        assert_memory_equal(named, delegating, EHR_PRE_PUBLIC_BYTES);
        assert_int_equal(ehr_pre_cfrag_verify(&cfrags[i], &capsule, delegating, receiving), 0);
    }
    for (size_t skip = 0; skip < NODES; skip++) {
        ehr_pre_cfrag two[2];
        for (size_t i = 0, k = 0; i < NODES; i++)
            if (i != skip)
                two[k++] = cfrags[i];
        assert_int_equal(ehr_pre_decapsulate_cfrags(&lab, delegating, &capsule, two, 2, got, NULL),
                         0);
        assert_memory_equal(got, want, sizeof want);
    }
    /* One is not enough (t = 2); a tampered one fails its proof. */
    assert_int_equal(ehr_pre_decapsulate_cfrags(&lab, delegating, &capsule, cfrags, 1, got, NULL),
                     EHR_EINVAL);
    ehr_pre_cfrag bad = cfrags[0];
    bad.proof_z[0] ^= 0x01;
    assert_int_equal(ehr_pre_cfrag_verify(&bad, &capsule, delegating, receiving), EHR_EBADSIG);

    /* The insurer: with its own deny, and with the lab's permit. */
    ehr_pre_cfrag none;
    uint8_t named[EHR_PRE_PUBLIC_BYTES];
    for (size_t i = 0; i < NODES; i++) {
        assert_int_equal(cli_net_cfrag_get(n, i, INSURER, record, denied, &none, named),
                         RPC_STATUS_PERMISSION_DENIED);
        assert_int_equal(cli_net_cfrag_get(n, i, INSURER, record, permit, &none, named),
                         RPC_STATUS_PERMISSION_DENIED);
    }

    /* record get as the lab, with its permit: the exact bytes. */
    char permit_hex[KEY_HEX];
    sodium_bin2hex(permit_hex, sizeof permit_hex, permit, EHR_HASH_BYTES);
    r = cli_run(n, "record", "get", record_hex, "--key", "node1.key", "--permit", permit_hex,
                "--fragment-node", n->node[0], "--fragment-node", n->node[1], "--fragment-node",
                n->node[2], "--node", n->node[LAB], "--out", "lab-copy.txt", "--json");
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(out, "capsule_fragments")), NODES);
    json_decref(out);
    proc_result_free(&r);
    cli_net_assert_same_file(n, "lab-copy.txt", "result.txt");
    /* The same with no node named but the lab's own: it asks the peers the
     * lab's node knows the API addresses of (GetStatus). */
    r = cli_run(n, "record", "get", record_hex, "--key", "node1.key", "--permit", permit_hex,
                "--node", n->node[LAB], "--out", "lab-found.txt", "--json");
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    /* More than the one node named: the peers were found (a peer whose
     * link came up a moment ago may not have told its address yet). */
    assert_true(json_integer_value(json_object_get(out, "capsule_fragments")) >= 2);
    json_decref(out);
    proc_result_free(&r);
    cli_net_assert_same_file(n, "lab-found.txt", "result.txt");
    /* The insurer through record get: no consent, so not even the anchor
     * (exit 8), nothing written. */
    r = cli_run(n, "record", "get", record_hex, "--key", "node2.key", "--purpose", "treatment",
                "--fragment-node", n->node[0], "--node", n->node[HOSPITAL], "--out", "insurer.txt");
    assert_int_equal(r.status, 8);
    if (strstr(r.err, "not yours to read") == NULL)
        fail_msg("stderr: %s", r.err);
    proc_result_free(&r);
    assert_false(cli_net_file_exists(n, "insurer.txt"));
    /* The lab asking for another purpose than the consent's: the rules
     * deny it (exit 8), nothing written. */
    r = cli_run(n, "record", "get", record_hex, "--key", "node1.key", "--purpose", "research",
                "--fragment-node", n->node[0], "--node", n->node[LAB], "--out", "research.txt");
    assert_int_equal(r.status, 8);
    if (strstr(r.err, "access denied") == NULL)
        fail_msg("stderr: %s", r.err);
    proc_result_free(&r);
    assert_false(cli_net_file_exists(n, "research.txt"));
    /* One node named only: fewer than the threshold, refused, nothing written. */
    r = cli_run(n, "record", "get", record_hex, "--key", "node1.key", "--permit", permit_hex,
                "--fragment-node", n->node[0], "--node", n->node[LAB], "--out", "one.txt");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "threshold"));
    proc_result_free(&r);
    assert_false(cli_net_file_exists(n, "one.txt"));

    /* A grant whose fragments were made from another delegating key than
     * the one it names (here: the lab-result fragments, the imaging key
     * named), for research: the rules take it (they cannot open the
     * fragments) and permit the lab's research request, but every node
     * refuses a capsule fragment, so none is made from a key the patient
     * did not name. */
    {
        Ehr__V1__TxBody *orig = cli_net_tx_body(n, HOSPITAL, consent);
        Ehr__V1__ConsentGrant forged = *orig->consent_grant;
        forged.purpose = EHR__V1__PURPOSE__PURPOSE_RESEARCH;
        ehr_identity *pat = sodium_malloc(sizeof *pat);
        assert_int_equal(
            ehr_keyfile_load(proc_path(n->c.root, "patient.key"), pat, NULL, "", 0, NULL), 0);
        ehr_pre_key imaging;
        assert_int_equal(ehr_pre_delegating_key_derive(&imaging, pat->signing.secret,
                                                       EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING),
                         0);
        forged.delegating_key = (ProtobufCBinaryData){EHR_PRE_PUBLIC_BYTES, imaging.public_key};
        Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
        body.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_GRANT;
        body.consent_grant = &forged;
        uint8_t *env;
        size_t env_len;
        uint8_t forged_id[EHR_HASH_BYTES];
        cluster_tx_sign_as(&n->c, &pat->signing, &body, &env, &env_len, forged_id);
        int code = -1;
        assert_int_equal(cluster_submit_wait(&n->c, HOSPITAL, env, env_len, &code), 0);
        assert_int_equal(code, EHR__V1__TX_RESULT_CODE__TX_RESULT_OK);
        ehr_pre_key_wipe(&imaging);
        sodium_free(pat);
        ehr__v1__tx_body__free_unpacked(orig, NULL);
        r = cli_run(n, "access", "request", record_hex, "--purpose", "research", "--key",
                    "node1.key", "--node", n->node[HOSPITAL], "--json");
        cli_submitted(&r, hash, decision, sizeof decision);
        assert_string_equal(decision, "permit");
        uint8_t research_permit[EHR_HASH_BYTES];
        cli_hex_decode(research_permit, hash, EHR_HASH_BYTES);
        for (size_t i = 0; i < NODES; i++)
            assert_int_equal(cli_net_cfrag_get(n, i, LAB, record, research_permit, &none, named),
                             RPC_STATUS_PERMISSION_DENIED);
        r = cli_run(n, "record", "get", record_hex, "--key", "node1.key", "--permit", hash,
                    "--fragment-node", n->node[0], "--fragment-node", n->node[1], "--node",
                    n->node[LAB], "--out", "forged.txt");
        assert_int_equal(r.status, 1);
        proc_result_free(&r);
        assert_false(cli_net_file_exists(n, "forged.txt"));
        /* Revoked again, so that the revocation below leaves the lab none. */
        char forged_hex[KEY_HEX];
        sodium_bin2hex(forged_hex, sizeof forged_hex, forged_id, EHR_HASH_BYTES);
        r = cli_run(n, "consent", "revoke", forged_hex, "--key", "patient.key", "--node",
                    n->node[HOSPITAL], "--wait", "--json");
        cli_submitted(&r, hash, NULL, 0);
    }

    /* One node down: the two others still open the record. */
    assert_int_equal(cluster_stop(&n->c, INSURER), 0);
    assert_int_not_equal(cluster_wait_leader(&n->c, LEADER_WAIT_MS), SIZE_MAX);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(cli_net_cfrag_get(n, i, LAB, record, permit, &cfrags[i], named),
                         RPC_STATUS_OK);
    assert_int_equal(ehr_pre_decapsulate_cfrags(&lab, delegating, &capsule, cfrags, 2, got, NULL),
                     0);
    assert_memory_equal(got, want, sizeof want);
    /* The lab's record get with a new access request (--purpose), the
     * insurer's node down and still named: a warning, and the bytes. */
    r = cli_run(n, "record", "get", record_hex, "--key", "node1.key", "--purpose", "treatment",
                "--fragment-node", n->node[0], "--fragment-node", n->node[1], "--fragment-node",
                n->node[2], "--node", n->node[LAB], "--out", "lab-again.txt");
    cli_assert_ok(&r);
    assert_non_null(strstr(r.err, n->node[INSURER]));
    proc_result_free(&r);
    cli_net_assert_same_file(n, "lab-again.txt", "result.txt");

    /* NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX at its edge: the insurer's node
     * back, each job held CAPSULE_DELAY_MS; of FLOOD requests at once, the
     * limit's worth are answered and one is RESOURCE_EXHAUSTED. */
    char delay[16];
    snprintf(delay, sizeof delay, "%d", CAPSULE_DELAY_MS);
    cluster_start_env(&n->c, INSURER, "EHR_TEST_CAPSULE_DELAY_MS", delay);
    int status = RPC_STATUS_UNAVAILABLE;
    for (int tries = 0; tries < 100 && status != RPC_STATUS_OK; tries++) {
        status = cli_net_cfrag_get(n, INSURER, LAB, record, permit, &none, named);
        if (status != RPC_STATUS_OK) /* starting, or catching up */
            usleep(100 * 1000);
    }
    assert_int_equal(status, RPC_STATUS_OK);
    struct flood_call *flood = calloc(FLOOD, sizeof *flood);
    pthread_t threads[FLOOD];
    assert_non_null(flood);
    for (size_t i = 0; i < FLOOD; i++) {
        flood[i].n = n;
        flood[i].node = INSURER;
        flood[i].request_len = cli_net_cfrag_request(n, LAB, record, permit, flood[i].request);
    }
    for (size_t i = 0; i < FLOOD; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, flood_run, &flood[i]), 0);
    unsigned answered = 0, exhausted = 0;
    for (size_t i = 0; i < FLOOD; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        answered += flood[i].status == RPC_STATUS_OK;
        exhausted += flood[i].status == RPC_STATUS_RESOURCE_EXHAUSTED;
    }
    free(flood);
    assert_int_equal(answered, NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX);
    assert_int_equal(exhausted, 1);

    /* Revoked: every node refuses from its block on. */
    char consent_hex[KEY_HEX];
    sodium_bin2hex(consent_hex, sizeof consent_hex, consent, EHR_HASH_BYTES);
    r = cli_run(n, "consent", "revoke", consent_hex, "--key", "patient.key", "--node",
                cli_net_any_node(n), "--wait", "--json");
    cli_submitted(&r, hash, NULL, 0);
    r = cli_run(n, "record", "get", record_hex, "--key", "node1.key", "--permit", permit_hex,
                "--fragment-node", n->node[0], "--fragment-node", n->node[1], "--node",
                n->node[LAB], "--out", "revoked.txt");
    assert_int_equal(r.status, 8); /* no current consent: not even the anchor is read */
    proc_result_free(&r);
    assert_false(cli_net_file_exists(n, "revoked.txt"));
    for (size_t i = 0; i < NODES; i++) {
        status = RPC_STATUS_UNAVAILABLE;
        for (int tries = 0; tries < 100 && status != RPC_STATUS_PERMISSION_DENIED; tries++) {
            status = cli_net_cfrag_get(n, i, LAB, record, permit, &none, named);
            if (status != RPC_STATUS_PERMISSION_DENIED) /* catching up, or starting */
                usleep(100 * 1000);
        }
        assert_int_equal(status, RPC_STATUS_PERMISSION_DENIED);
    }
    ehr_pre_key_wipe(&lab);
    sodium_memzero(want, sizeof want);
    sodium_memzero(got, sizeof got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grantee_path),
    };
    return cmocka_run_group_tests(tests, net_setup, net_teardown);
}
