/*
 * test_cluster.c - multi-process tests of ehrd: three real node processes
 * on loopback, driven through the gRPC API (cluster.h).
 *
 * How we know nothing acknowledged is lost: every transaction a node
 * acknowledged as committed (SubmitTransaction with wait_for_commit
 * answered OK) is looked up afterwards in every node's ledger, opened from
 * disk after the processes stopped, and `ehrctl ledger verify` must pass on
 * each data directory. A node killed with SIGKILL gets no chance to flush
 * anything, so what it acknowledged was on disk (its own and a quorum's)
 * before the answer left.
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "cluster.h"
#include "contracts.h"
#include "config.h"
#include "ehr/v1/node.pb-c.h"
#include "ledger_testutil.h"
#include "proc.h"
#include "read_auth.h"

#ifndef EHRD_PATH
#error "EHRD_PATH must name the ehrd binary"
#endif
#ifndef EHRD_TEST_PATH
#error "EHRD_TEST_PATH must name the ehrd-test binary (fault hooks)"
#endif
#ifndef EHRCTL_PATH
#error "EHRCTL_PATH must name the ehrctl binary"
#endif

enum { LEADER_WAIT_MS = 15000 };

static bool keep_dirs(void)
{
    return getenv("EHR_TEST_KEEP") != NULL;
}

/* Run PROGRAM with ARGS in this test's environment, stdout and stderr going as OUT and ERR say
 * (captured, inherited, to /dev/null, or stderr to stdout). */
static struct proc_result run(const char *program, const char *const *args, enum proc_to out,
                              enum proc_to err)
{
    struct proc_spec spec = {.path = program, .args = args, .env_inherit = true};
    spec.out.to = out;
    spec.err.to = err;
    return proc_run(&spec);
}

/* Wait until every running node has applied the same tip; returns it. */
static uint64_t wait_converged(struct cluster *c, uint64_t timeout_ms)
{
    uint64_t tip = cluster_wait_converged(c, timeout_ms);
    if (tip == UINT64_MAX)
        fail_msg("the nodes did not converge on one tip in %llu ms",
                 (unsigned long long)timeout_ms);
    return tip;
}

/* Wait until node I has applied HEIGHT (or more); its tip then. */
static uint64_t wait_tip(struct cluster *c, size_t i, uint64_t height, uint64_t timeout_ms)
{
    uint64_t end = cluster_now_us() + timeout_ms * 1000;
    for (;;) {
        struct cluster_status s;
        if (cluster_status(c, i, &s) == 0 && s.tip_height >= height)
            return s.tip_height;
        if (cluster_now_us() > end)
            fail_msg("node %zu did not reach height %llu in %llu ms", i, (unsigned long long)height,
                     (unsigned long long)timeout_ms);
        usleep(50000);
    }
}

/* Every node's block at every height 0..TIP has the same hash (through the API). */
static void assert_same_chain(struct cluster *c, uint64_t tip)
{
    for (uint64_t h = 0; h <= tip; h++) {
        uint8_t first[EHR_HASH_BYTES];
        bool have = false;
        for (size_t i = 0; i < c->count; i++) {
            if (c->nodes[i].pid == 0)
                continue;
            uint8_t hash[EHR_HASH_BYTES];
            assert_int_equal(cluster_block(c, i, h, hash, NULL), 0);
            if (!have) {
                memcpy(first, hash, EHR_HASH_BYTES);
                have = true;
            } else if (memcmp(first, hash, EHR_HASH_BYTES) != 0) {
                fail_msg("node %zu's block %llu differs", i, (unsigned long long)h);
            }
        }
    }
}

/* A running SHA-256 over a world state's keys and values, scanned in order. */
struct state_digest {
    crypto_hash_sha256_state sha;
    uint8_t last[EHR_STATE_KEY_BYTES_MAX];
    size_t last_len;
    uint64_t keys;
};

static void digest_bytes(struct state_digest *d, const uint8_t *bytes, size_t len)
{
    uint8_t n[8];
    for (size_t i = 0; i < sizeof n; i++)
        n[i] = (uint8_t)((uint64_t)len >> (8 * i));
    crypto_hash_sha256_update(&d->sha, n, sizeof n);
    if (len > 0)
        crypto_hash_sha256_update(&d->sha, bytes, len);
}

static int digest_key(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                      size_t value_len)
{
    struct state_digest *d = ctx;
    assert_true(key_len <= sizeof d->last);
    digest_bytes(d, key, key_len);
    digest_bytes(d, value, value_len);
    memcpy(d->last, key, key_len);
    d->last_len = key_len;
    d->keys++;
    return 0;
}

/* One digest of what L's rules made of the chain: every committed
 * transaction's stored result, in TXS order, then the whole world state. */
static void ledger_outcome_digest(ledger *l, const struct cluster_tx *txs, size_t count,
                                  uint8_t out[EHR_HASH_BYTES], uint64_t *keys)
{
    struct state_digest d;
    memset(&d, 0, sizeof d);
    crypto_hash_sha256_init(&d.sha);
    for (size_t t = 0; t < count; t++) {
        if (!txs[t].committed)
            continue;
        uint8_t *result = NULL;
        size_t result_len = 0;
        ledger_tx_location loc;
        assert_int_equal(
            ledger_tx_get(l, txs[t].hash, &loc, NULL, NULL, &result, &result_len, NULL), 0);
        digest_bytes(&d, result, result_len);
        ehr_free(result);
    }
    long n;
    do {
        n = ledger_state_scan(l, (const uint8_t *)"", 0, d.keys > 0 ? d.last : NULL, d.last_len,
                              LEDGER_SCAN_COUNT_MAX, digest_key, &d, NULL);
        assert_true(n >= 0);
    } while (n == LEDGER_SCAN_COUNT_MAX);
    crypto_hash_sha256_final(&d.sha, out);
    *keys = d.keys;
}

/* Stopped nodes: every acknowledged transaction is in every ledger, where
 * the node said, every node's rules made the same results and the same
 * world state of the chain (the state digests the nodes exchange cover
 * each block's writes; this compares what they hold at the end), and
 * `ehrctl ledger verify` passes on each. */
static void assert_ledgers_hold(struct cluster *c, const struct cluster_tx *txs, size_t count)
{
    uint8_t first[EHR_HASH_BYTES];
    uint64_t first_keys = 0;
    for (size_t i = 0; i < c->count; i++) {
        ledger *l;
        ledger_options o = {.read_only = true};
        assert_int_equal(ledger_open(c->nodes[i].dir, &o, &l, NULL), 0);
        for (size_t t = 0; t < count; t++) {
            if (!txs[t].committed)
                continue;
            ledger_tx_location loc;
            int rc = ledger_tx_get(l, txs[t].hash, &loc, NULL, NULL, NULL, NULL, NULL);
            if (rc != 0)
                fail_msg("node %zu lacks acknowledged tx %zu (%s)", i, t, ehr_errname(rc));
            assert_int_equal(loc.height, txs[t].height);
            assert_int_equal(loc.index, txs[t].position);
        }
        uint8_t digest[EHR_HASH_BYTES];
        uint64_t keys = 0;
        ledger_outcome_digest(l, txs, count, digest, &keys);
        assert_true(keys > 0);
        if (i == 0) {
            memcpy(first, digest, sizeof first);
            first_keys = keys;
        } else if (keys != first_keys || memcmp(digest, first, sizeof first) != 0) {
            fail_msg("node %zu's results or world state (%" PRIu64 " keys) differ from node 0's "
                     "(%" PRIu64 " keys)",
                     i, keys, first_keys);
        }
        ledger_close(l);
        struct proc_result r =
            run(EHRCTL_PATH, PROC_ARGS("ledger", "verify", "--data", c->nodes[i].dir, NULL),
                PROC_TO_INHERIT, PROC_TO_INHERIT);
        assert_int_equal(r.signal, 0);
        assert_int_equal(r.status, 0);
    }
}

static void test_three_nodes_commit_10000_transactions_into_identical_ledgers(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 3, EHRD_PATH, EHRCTL_PATH, NULL);
    for (size_t i = 0; i < 3; i++)
        cluster_start(&c, i);
    assert_int_not_equal(cluster_wait_leader(&c, LEADER_WAIT_MS), SIZE_MAX);
    enum { TXS = 10000 };
    struct cluster_tx *txs = cluster_txs_make(&c, TXS);
    uint64_t t0 = cluster_now_us();
    size_t committed = cluster_load(&c, txs, TXS, 256, 180000, NULL, NULL);
    uint64_t t1 = cluster_now_us();
    size_t retried = 0;
    for (size_t i = 0; i < TXS; i++) {
        if (txs[i].status != 0)
            fail_msg("tx %zu ended with status %s", i, rpc_status_name(txs[i].status));
        /* Every node applied it through the rules: an enrolment is OK. */
        if (txs[i].attempts == 1 && txs[i].result_code != 0)
            fail_msg("tx %zu: result code %d", i, txs[i].result_code);
        retried += txs[i].attempts > 1;
    }
    assert_int_equal(committed, TXS);
    printf("# 10000 transactions committed in %.2f s through 3 nodes (%zu retried)\n",
           (double)(t1 - t0) / 1e6, retried);
    uint64_t tip = wait_converged(&c, 20000);
    assert_true(tip >= 1);
    assert_same_chain(&c, tip);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cluster_stop(&c, i), 0); /* a clean stop exits 0 */
    assert_ledgers_hold(&c, txs, TXS);
    cluster_txs_free(txs, TXS);
    cluster_destroy(&c, keep_dirs());
}

/* ---- the leader dies mid-load ---- */

struct kill_plan {
    size_t victim;
    size_t after_committed;
    uint64_t killed_at_us;
};

static void kill_when_loaded(void *ctx, struct cluster *c, const struct cluster_tx *txs,
                             size_t count, uint64_t now_us)
{
    struct kill_plan *k = ctx;
    if (k->killed_at_us != 0)
        return;
    size_t done = 0;
    for (size_t i = 0; i < count; i++)
        done += txs[i].committed;
    if (done < k->after_committed)
        return;
    cluster_kill(c, k->victim);
    k->killed_at_us = now_us;
}

static void test_leader_killed_mid_load_loses_nothing_acknowledged(void **state)
{
    (void)state;
    struct cluster c;
    /* A 30 ms tick: followers campaign 0.3-0.6 s after the leader falls
     * silent, so even a split first vote leaves a new leader within 2 s on
     * a loaded machine (the default 50 ms tick takes 0.5-1 s per round). */
    struct cluster_limits lim = {.raft_tick_ms = 30};
    cluster_create(&c, 3, EHRD_PATH, EHRCTL_PATH, &lim);
    for (size_t i = 0; i < 3; i++)
        cluster_start(&c, i);
    size_t leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(leader, SIZE_MAX);
    enum { TXS = 4000 };
    struct cluster_tx *txs = cluster_txs_make(&c, TXS);
    struct kill_plan k = {.victim = leader, .after_committed = 1000};
    cluster_load(&c, txs, TXS, 128, 180000, kill_when_loaded, &k);
    assert_int_not_equal(k.killed_at_us, 0);

    /* When did a new leader serve? At the first acknowledged commit of a
     * transaction in a block the new leader proposed (an entry of the old
     * one may still be acknowledged after the kill: its commit was on the
     * wire already). */
    size_t new_leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(new_leader, SIZE_MAX);
    assert_int_not_equal(new_leader, leader);
    uint64_t first = UINT64_MAX;
    size_t acked = 0, by_status[RPC_STATUS_COUNT_ + 1] = {0};
    for (size_t i = 0; i < TXS; i++) {
        acked += txs[i].committed;
        int st = txs[i].status;
        by_status[st >= 0 && st < RPC_STATUS_COUNT_ ? st : RPC_STATUS_COUNT_]++;
        if (!txs[i].committed || txs[i].done_us <= k.killed_at_us || txs[i].done_us >= first)
            continue;
        uint8_t hash[EHR_HASH_BYTES], proposer[EHR_SCHNORR_PUBLIC_BYTES];
        assert_int_equal(cluster_block(&c, new_leader, txs[i].height, hash, proposer), 0);
        if (memcmp(proposer, c.nodes[leader].node_key, EHR_SCHNORR_PUBLIC_BYTES) != 0)
            first = txs[i].done_us;
    }
    for (int st = 1; st <= RPC_STATUS_COUNT_; st++)
        if (by_status[st] > 0)
            printf("# %zu submissions ended %s\n", by_status[st], rpc_status_name(st));
    assert_int_not_equal(first, UINT64_MAX);
    double serve_ms = (double)(first - k.killed_at_us) / 1000.0;
    printf("# leader SIGKILLed: a new leader committed %.0f ms later; %zu of %d submissions "
           "acknowledged as committed\n",
           serve_ms, acked, TXS);
    assert_true(serve_ms < 2000.0);

    /* The killed node comes back, catches up and agrees. */
    cluster_start(&c, leader);
    uint64_t tip = wait_converged(&c, 30000);
    assert_same_chain(&c, tip);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cluster_stop(&c, i), 0);
    assert_ledgers_hold(&c, txs, TXS);
    cluster_txs_free(txs, TXS);
    cluster_destroy(&c, keep_dirs());
}

/* ---- bad input through the API ---- */

/* What one SubmitTransaction got back (the harness's own failures abort:
 * usable from a thread). */
struct submitted {
    int status;
    char message[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    bool committed;
    uint64_t height;
    uint32_t position;
    char leader_id[RPC_TRAILER_VALUE_BYTES_MAX + 1]; /* trailers, "" when absent */
    char leader_address[RPC_TRAILER_VALUE_BYTES_MAX + 1];
    char outcome[RPC_TRAILER_VALUE_BYTES_MAX + 1];
};

static void submit_full(struct cluster *c, size_t node, const uint8_t *env, size_t len, bool wait,
                        uint64_t timeout_ms, struct submitted *out)
{
    memset(out, 0, sizeof *out);
    Ehr__V1__SubmitTransactionRequest req = EHR__V1__SUBMIT_TRANSACTION_REQUEST__INIT;
    req.envelope = (ProtobufCBinaryData){len, (uint8_t *)env};
    req.wait_for_commit = wait;
    size_t plen = ehr__v1__submit_transaction_request__get_packed_size(&req);
    uint8_t *buf = ehr_malloc(plen);
    ehr__v1__submit_transaction_request__pack(&req, buf);
    struct rpc_result r;
    out->status = cluster_call(c, node, "SubmitTransaction", buf, plen, timeout_ms, &r);
    snprintf(out->message, sizeof out->message, "%s", r.message);
    const char *t;
    if ((t = rpc_result_trailer(&r, "ehr-leader-id")) != NULL)
        snprintf(out->leader_id, sizeof out->leader_id, "%s", t);
    if ((t = rpc_result_trailer(&r, "ehr-leader-address")) != NULL)
        snprintf(out->leader_address, sizeof out->leader_address, "%s", t);
    if ((t = rpc_result_trailer(&r, "ehr-submit-outcome")) != NULL)
        snprintf(out->outcome, sizeof out->outcome, "%s", t);
    if (out->status == 0) {
        Ehr__V1__SubmitTransactionResponse *a =
            ehr__v1__submit_transaction_response__unpack(NULL, r.response_len, r.response);
        if (a == NULL)
            ehr_panic("SubmitTransactionResponse does not decode");
        out->committed = a->committed;
        out->height = a->height;
        out->position = a->position;
        ehr__v1__submit_transaction_response__free_unpacked(a, NULL);
    }
    rpc_result_clear(&r);
    ehr_free(buf);
}

static int submit(struct cluster *c, size_t node, const uint8_t *env, size_t len, bool wait,
                  char *msg, size_t msg_size)
{
    struct submitted s;
    submit_full(c, node, env, len, wait, 10000, &s);
    if (msg != NULL)
        snprintf(msg, msg_size, "%s", s.message);
    return s.status;
}

static void expect_refused(struct cluster *c, size_t node, const uint8_t *env, size_t len,
                           int status, const char *words)
{
    char msg[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
    int st = submit(c, node, env, len, true, msg, sizeof msg);
    if (st != status || strstr(msg, words) == NULL)
        fail_msg("node %zu: got %s \"%s\", expected %s with \"%s\"", node, rpc_status_name(st), msg,
                 rpc_status_name(status), words);
}

static void test_bad_input_gets_its_status_and_commits_nothing(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 3, EHRD_PATH, EHRCTL_PATH, NULL);
    for (size_t i = 0; i < 3; i++)
        cluster_start(&c, i);
    size_t leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(leader, SIZE_MAX);
    size_t follower = (leader + 1) % 3;
    struct cluster_status before;
    assert_int_equal(cluster_status(&c, leader, &before), 0);

    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    uint64_t now = (uint64_t)time(NULL) * 1000;
    uint8_t *env;
    size_t len;
    uint8_t hash[EHR_HASH_BYTES];

    /* Malformed protobuf: not a SubmitTransactionRequest at all. */
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};
    struct rpc_result r;
    for (size_t node = 0; node < 3; node++) {
        assert_int_equal(cluster_call(&c, node, "SubmitTransaction", junk, sizeof junk, 5000, &r),
                         RPC_STATUS_INVALID_ARGUMENT);
        rpc_result_clear(&r);
    }

    /* A bad signature, at the leader and through a follower (which leaves
     * the signature to the leader). */
    tu_tx(&key, c.chain_id, now + 600000, 64, &env, &len, hash);
    env[len - 1] ^= 0x01;
    expect_refused(&c, leader, env, len, RPC_STATUS_INVALID_ARGUMENT, "signature");
    expect_refused(&c, follower, env, len, RPC_STATUS_INVALID_ARGUMENT, "signature");
    ehr_free(env);

    /* Expired, and for another chain. */
    tu_tx(&key, c.chain_id, now - 1000, 64, &env, &len, hash);
    expect_refused(&c, leader, env, len, RPC_STATUS_INVALID_ARGUMENT, "expire");
    ehr_free(env);
    tu_tx(&key, "another-chain", now + 600000, 64, &env, &len, hash);
    expect_refused(&c, follower, env, len, RPC_STATUS_INVALID_ARGUMENT, "chain");
    ehr_free(env);

    /* Over the transaction size limit, and over the RPC message limit. */
    uint8_t *over = calloc(1, EHR_TX_BYTES_MAX + 1);
    assert_non_null(over);
    expect_refused(&c, leader, over, EHR_TX_BYTES_MAX + 1, RPC_STATUS_INVALID_ARGUMENT, "");
    expect_refused(&c, follower, over, EHR_TX_BYTES_MAX + 1, RPC_STATUS_INVALID_ARGUMENT, "");
    free(over);
    size_t huge = NODE_CONFIG_RPC_MESSAGE_BYTES_DEFAULT + 1;
    uint8_t *big = calloc(1, huge);
    assert_non_null(big);
    assert_int_equal(cluster_call(&c, leader, "SubmitTransaction", big, huge, 5000, &r),
                     RPC_STATUS_RESOURCE_EXHAUSTED);
    rpc_result_clear(&r);
    free(big);

    /* The contract's rules at submission, against the committed state: an
     * anchor for a patient nobody enrolled (NOT_FOUND), a consent granted
     * by a member for a patient (PERMISSION_DENIED), at the leader and
     * through a follower. */
    {
        uint8_t patient[32], hash32[32] = {7}, pointer[16] = {1};
        ehr_random_bytes(patient, sizeof patient);
        Ehr__V1__RecordAnchor a = EHR__V1__RECORD_ANCHOR__INIT;
        a.patient_key = (ProtobufCBinaryData){32, patient};
        a.record_type = EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT;
        a.encrypted_pointer = (ProtobufCBinaryData){sizeof pointer, pointer};
        a.ciphertext_hash = (ProtobufCBinaryData){32, hash32};
        Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
        b.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
        b.record_anchor = &a;
        cluster_tx_sign(&c, 0, &b, &env, &len, hash);
        expect_refused(&c, leader, env, len, RPC_STATUS_NOT_FOUND, "the patient is not enrolled");
        expect_refused(&c, follower, env, len, RPC_STATUS_NOT_FOUND, "the patient is not enrolled");
        ehr_free(env);
        Ehr__V1__RecordType type = EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT;
        Ehr__V1__ConsentGrant g = EHR__V1__CONSENT_GRANT__INIT;
        g.grantee_key = (ProtobufCBinaryData){32, c.nodes[1].node_key};
        g.n_record_types = 1;
        g.record_types = &type;
        g.purpose = EHR__V1__PURPOSE__PURPOSE_TREATMENT;
        g.valid_from_ms = 1;
        g.valid_until_ms = now + 600000;
        b = (Ehr__V1__TxBody)EHR__V1__TX_BODY__INIT;
        b.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_GRANT;
        b.consent_grant = &g;
        cluster_tx_sign(&c, 0, &b, &env, &len, hash);
        expect_refused(&c, leader, env, len, RPC_STATUS_PERMISSION_DENIED, "only the patient");
        expect_refused(&c, follower, env, len, RPC_STATUS_PERMISSION_DENIED, "only the patient");
        ehr_free(env);
    }

    /* A duplicate: committed once; then, at the leader and at a follower,
     * ALREADY_EXISTS naming its place without wait_for_commit, and with it
     * OK at that place (resubmitting is safe: node.proto). */
    ehr_identity patient;
    cluster_tx_enroll(&c, 0, &patient, &env, &len, hash);
    struct submitted first, again;
    submit_full(&c, follower, env, len, true, 10000, &first);
    assert_int_equal(first.status, 0);
    assert_true(first.committed);
    char place[96];
    snprintf(place, sizeof place, "already on the ledger at height %" PRIu64 ", position %" PRIu32,
             first.height, first.position);
    size_t nodes[2] = {leader, follower};
    for (size_t k = 0; k < 2; k++) {
        char msg[RPC_STATUS_MESSAGE_BYTES_MAX + 1];
        int st = submit(&c, nodes[k], env, len, false, msg, sizeof msg);
        if (st != RPC_STATUS_ALREADY_EXISTS || strstr(msg, place) == NULL)
            fail_msg("node %zu: got %s \"%s\", expected ALREADY_EXISTS with \"%s\"", nodes[k],
                     rpc_status_name(st), msg, place);
        submit_full(&c, nodes[k], env, len, true, 10000, &again);
        assert_int_equal(again.status, 0);
        assert_true(again.committed);
        assert_int_equal(again.height, first.height);
        assert_int_equal(again.position, first.position);
    }
    ehr_free(env);
    /* The same patient enrolled again (another transaction): refused at
     * submission, the rule's reason in the message. */
    {
        uint8_t msg32[32], sig[64];
        contracts_enroll_message(c.chain_id, c.nodes[1].node_key, patient.signing.public_key,
                                 patient.kx.public_key, msg32);
        assert_int_equal(ehr_schnorr_sign(&patient.signing, msg32, sig), 0);
        Ehr__V1__PatientEnroll p = EHR__V1__PATIENT_ENROLL__INIT;
        p.patient_key = (ProtobufCBinaryData){32, patient.signing.public_key};
        p.patient_kx_key = (ProtobufCBinaryData){32, patient.kx.public_key};
        p.patient_signature = (ProtobufCBinaryData){64, sig};
        Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
        b.payload_case = EHR__V1__TX_BODY__PAYLOAD_PATIENT_ENROLL;
        b.patient_enroll = &p;
        cluster_tx_sign(&c, 1, &b, &env, &len, hash);
        expect_refused(&c, follower, env, len, RPC_STATUS_FAILED_PRECONDITION,
                       "the patient is enrolled already");
        ehr_free(env);
    }
    ehr_signing_key_wipe(&patient.signing);
    ehr_kx_key_wipe(&patient.kx);

    /* Nothing else committed: exactly one more block's worth (the good tx). */
    usleep(300000);
    struct cluster_status after;
    assert_int_equal(cluster_status(&c, leader, &after), 0);
    assert_int_equal(after.tip_height, before.tip_height + 1);
    assert_int_equal(after.mempool_tx_count, 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cluster_stop(&c, i), 0);
    ehr_signing_key_wipe(&key);
    cluster_destroy(&c, keep_dirs());
}

/* ---- catching up by snapshot ---- */

static bool log_says(const struct cluster *c, size_t i, const char *words)
{
    FILE *f = fopen(c->nodes[i].log, "r");
    if (f == NULL)
        return false; /* not written yet */
    char line[2048];
    bool said = false;
    while (!said && fgets(line, sizeof line, f) != NULL)
        said = strstr(line, words) != NULL;
    fclose(f);
    return said;
}

static void test_a_node_behind_the_compacted_log_catches_up_by_snapshot(void **state)
{
    (void)state;
    struct cluster c;
    /* Small blocks and frequent snapshots: many entries, a short log. */
    struct cluster_limits lim = {.block_tx_count = 20, .block_flush_ms = 5, .snapshot_entries = 20};
    cluster_create(&c, 3, EHRD_PATH, EHRCTL_PATH, &lim);
    for (size_t i = 0; i < 3; i++)
        cluster_start(&c, i);
    size_t leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(leader, SIZE_MAX);
    size_t late = (leader + 1) % 3;
    assert_int_equal(cluster_stop(&c, late), 0);
    enum { TXS = 2000 };
    struct cluster_tx *txs = cluster_txs_make(&c, TXS);
    assert_int_equal(cluster_load(&c, txs, TXS, 64, 180000, NULL, NULL), TXS);
    wait_converged(&c, 20000);
    assert_true(log_says(&c, leader, "snapshot taken"));
    cluster_start(&c, late);
    uint64_t tip = wait_converged(&c, 60000);
    assert_true(tip >= TXS / 20);
    assert_true(log_says(&c, late, "snapshot installed"));
    assert_same_chain(&c, tip);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cluster_stop(&c, i), 0);
    assert_ledgers_hold(&c, txs, TXS);
    cluster_txs_free(txs, TXS);
    cluster_destroy(&c, keep_dirs());
}

/* ---- divergence ---- */

static void test_a_node_whose_state_digest_differs_stops_loudly(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 3, EHRD_TEST_PATH, EHRCTL_PATH, NULL);
    /* Node 2 computes a wrong digest at height 2 (the fault-injection hook
     * of ehrd-test stands in for a bug or a corrupted disk making it apply
     * differently). */
    cluster_start(&c, 0);
    cluster_start(&c, 1);
    cluster_start_env(&c, 2, "EHR_TEST_DIGEST_FAULT_HEIGHT", "2");
    assert_int_not_equal(cluster_wait_leader(&c, LEADER_WAIT_MS), SIZE_MAX);
    enum { TXS = 3 };
    struct cluster_tx *txs = cluster_txs_make(&c, TXS);
    for (size_t i = 0; i < TXS; i++) /* one block each */
        assert_int_equal(cluster_load(&c, &txs[i], 1, 1, 30000, NULL, NULL), 1);
    /* Node 2 stops once it has applied height 2 and holds the others'
     * digests of it. Under load that can take a while: it may lag, and a
     * link that failed comes back only after p2p's reconnect back-off (up to
     * 10 s, P2P_RECONNECT_MAX_MS_DEFAULT), when the digests are sent again. */
    assert_int_equal(cluster_wait_exit(&c, 2, 30000), 3);
    assert_true(log_says(&c, 2, "STATE DIVERGED"));
    /* The two that agree go on. Each block's commit was answered by the node
     * its transaction went to; the other may apply it a moment later. */
    assert_true(wait_tip(&c, 0, TXS, 20000) >= TXS);
    assert_true(wait_tip(&c, 1, TXS, 20000) >= TXS);
    assert_int_equal(cluster_stop(&c, 0), 0);
    assert_int_equal(cluster_stop(&c, 1), 0);
    cluster_txs_free(txs, TXS);
    cluster_destroy(&c, keep_dirs());
}

/* ---- a malicious leader ---- */

/* How many audit events node I holds for PATIENT (a read the patient signs). */
static size_t audit_count(struct cluster *c, size_t i, const ehr_identity *patient)
{
    Ehr__V1__GetAuditTrailRequest q = EHR__V1__GET_AUDIT_TRAIL_REQUEST__INIT;
    q.patient_key = (ProtobufCBinaryData){32, (uint8_t *)patient->signing.public_key};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000;
    struct node_read_auth_signed auth;
    assert_int_equal(node_read_auth_sign(&auth, &q.base, &q.auth, c->chain_id,
                                         "/ehr.v1.Node/GetAuditTrail", &patient->signing, now,
                                         now + 60000),
                     0);
    uint8_t buf[256];
    assert_true(ehr__v1__get_audit_trail_request__get_packed_size(&q) <= sizeof buf);
    size_t len = ehr__v1__get_audit_trail_request__pack(&q, buf);
    struct rpc_result r;
    assert_int_equal(cluster_call(c, i, "GetAuditTrail", buf, len, 5000, &r), RPC_STATUS_OK);
    Ehr__V1__GetAuditTrailResponse *a =
        ehr__v1__get_audit_trail_response__unpack(NULL, r.response_len, r.response);
    assert_non_null(a);
    size_t n = a->n_events;
    ehr__v1__get_audit_trail_response__free_unpacked(a, NULL);
    rpc_result_clear(&r);
    return n;
}

/*
 * Every node runs ehrd-test with the forge fault at height 2: whichever
 * leads then proposes block 2 with its transaction (a patient's enrolment)
 * re-signed with a key of the leader's choosing (never the signer's: the
 * enrolment's member may be the leader itself). Every node checks the signature at
 * apply: the transaction stays in the block with the result BAD_SIGNATURE,
 * the patient is not enrolled anywhere, the nodes' state digests agree (no
 * node stops), and the chain goes on.
 */
static void test_a_leader_forging_a_signature_changes_nothing(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 3, EHRD_TEST_PATH, EHRCTL_PATH, NULL);
    for (size_t i = 0; i < 3; i++)
        cluster_start_env(&c, i, "EHR_TEST_FORGE_HEIGHT", "2");
    assert_int_not_equal(cluster_wait_leader(&c, LEADER_WAIT_MS), SIZE_MAX);
    enum { TXS = 3 };
    ehr_identity patients[TXS];
    struct cluster_tx txs[TXS];
    memset(txs, 0, sizeof txs);
    for (size_t i = 0; i < TXS; i++) {
        cluster_tx_enroll(&c, i % 3, &patients[i], &txs[i].envelope, &txs[i].envelope_len,
                          txs[i].hash);
        txs[i].status = txs[i].result_code = -1;
    }
    for (size_t i = 0; i < TXS; i++) /* one block each: heights 1, 2, 3 */
        assert_int_equal(cluster_load(&c, &txs[i], 1, 1, 30000, NULL, NULL), 1);
    for (size_t i = 0; i < TXS; i++) {
        assert_int_equal(txs[i].height, i + 1);
        assert_int_equal(txs[i].result_code, i == 1
                                                 ? EHR__V1__TX_RESULT_CODE__TX_RESULT_BAD_SIGNATURE
                                                 : EHR__V1__TX_RESULT_CODE__TX_RESULT_OK);
    }
    assert_int_equal(wait_converged(&c, 20000), TXS);
    assert_same_chain(&c, TXS);
    for (size_t node = 0; node < 3; node++) {
        assert_true(c.nodes[node].pid != 0); /* no node diverged */
        for (size_t i = 0; i < TXS; i++)
            assert_int_equal(audit_count(&c, node, &patients[i]), i == 1 ? 0 : 1);
    }
    for (size_t node = 0; node < 3; node++)
        assert_int_equal(cluster_stop(&c, node), 0);
    /* The forged transaction, kept with its refusal, is a sound ledger:
     * verify replays it to the same BAD_SIGNATURE on every node. */
    for (size_t node = 0; node < 3; node++) {
        struct proc_result r =
            run(EHRCTL_PATH, PROC_ARGS("ledger", "verify", "--data", c.nodes[node].dir, NULL),
                PROC_TO_CAPTURE, PROC_TO_INHERIT);
        assert_int_equal(r.signal, 0);
        if (r.status != 0 || strncmp(r.out, "ledger ok: ", 11) != 0)
            fail_msg("node %zu: ledger verify says \"%s\"", node, r.out);
        proc_result_free(&r);
    }
    for (size_t i = 0; i < TXS; i++) {
        ehr_free(txs[i].envelope);
        ehr_signing_key_wipe(&patients[i].signing);
        ehr_kx_key_wipe(&patients[i].kx);
    }
    cluster_destroy(&c, keep_dirs());
}

/*
 * The same divergence, with node 2 started only after blocks 1 and 2 were
 * committed and applied by the other two: their digests of those heights
 * were published while they had no link to node 2. Node 2 must still get
 * them, and stop at its wrong digest for height 2.
 */
static void test_a_node_that_starts_late_and_diverges_stops_loudly(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 3, EHRD_TEST_PATH, EHRCTL_PATH, NULL);
    cluster_start(&c, 0);
    cluster_start(&c, 1);
    assert_int_not_equal(cluster_wait_leader(&c, LEADER_WAIT_MS), SIZE_MAX);
    enum { TXS = 2 };
    struct cluster_tx *txs = cluster_txs_make(&c, TXS);
    for (size_t i = 0; i < TXS; i++) /* one block each, node 2 not running */
        assert_int_equal(cluster_load(&c, &txs[i], 1, 1, 30000, NULL, NULL), 1);
    assert_int_equal(wait_converged(&c, 20000), TXS);
    cluster_start_env(&c, 2, "EHR_TEST_DIGEST_FAULT_HEIGHT", "2");
    assert_int_equal(cluster_wait_exit(&c, 2, 30000), 3);
    assert_true(log_says(&c, 2, "STATE DIVERGED"));
    assert_int_equal(cluster_stop(&c, 0), 0);
    assert_int_equal(cluster_stop(&c, 1), 0);
    cluster_txs_free(txs, TXS);
    cluster_destroy(&c, keep_dirs());
}

/* ---- a forward pending across a leadership change ---- */

struct submit_job {
    pthread_t thread;
    struct cluster *c;
    size_t node;
    const struct cluster_tx *tx;
    struct submitted out;
};

static void *submit_job_run(void *arg)
{
    struct submit_job *j = arg;
    submit_full(j->c, j->node, j->tx->envelope, j->tx->envelope_len, true, 30000, &j->out);
    return NULL;
}

/*
 * The leader L is frozen (SIGSTOP) and, at once, each follower is given a
 * transaction with wait_for_commit: both forward it to L, whose verdict
 * never comes. One follower, N, becomes leader: it must admit its pending
 * forward itself and answer OK, committed. The other, O, must answer
 * UNAVAILABLE with the outcome "unknown" and a leader hint naming N by its
 * id and RPC address (never a peer port, never O itself); resubmitting the
 * same envelope through O then commits it, once. L, thawed, agrees.
 */
static void test_a_forward_pending_across_a_leadership_change_is_answered_right(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 3, EHRD_PATH, EHRCTL_PATH, NULL);
    for (size_t i = 0; i < 3; i++)
        cluster_start(&c, i);
    size_t old = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(old, SIZE_MAX);
    size_t f[2] = {(old + 1) % 3, (old + 2) % 3};
    /* Every node knows every leader, and the peers have exchanged NodeInfo
     * (their RPC addresses): one committed transaction through each follower. */
    struct cluster_tx *warm = cluster_txs_make(&c, 2);
    for (size_t k = 0; k < 2; k++) {
        struct submitted s;
        submit_full(&c, f[k], warm[k].envelope, warm[k].envelope_len, true, 10000, &s);
        assert_int_equal(s.status, 0);
    }
    cluster_txs_free(warm, 2);

    struct cluster_tx *txs = cluster_txs_make(&c, 2);
    assert_int_equal(kill(c.nodes[old].pid, SIGSTOP), 0);
    struct submit_job jobs[2];
    for (size_t k = 0; k < 2; k++) {
        jobs[k] = (struct submit_job){.c = &c, .node = f[k], .tx = &txs[k]};
        assert_int_equal(pthread_create(&jobs[k].thread, NULL, submit_job_run, &jobs[k]), 0);
    }
    /* A new leader among the two followers (L is frozen: not asked). */
    size_t leader = SIZE_MAX;
    for (uint64_t end = cluster_now_us() + LEADER_WAIT_MS * 1000ull;
         leader == SIZE_MAX && cluster_now_us() < end; usleep(20000))
        for (size_t k = 0; k < 2 && leader == SIZE_MAX; k++) {
            struct cluster_status st;
            if (cluster_status(&c, f[k], &st) == 0 &&
                st.role == EHR__V1__NODE_ROLE__NODE_ROLE_LEADER)
                leader = f[k];
        }
    for (size_t k = 0; k < 2; k++)
        pthread_join(jobs[k].thread, NULL);
    assert_int_not_equal(leader, SIZE_MAX);
    size_t n_k = leader == f[0] ? 0 : 1, o_k = 1 - n_k;
    const struct submitted *won = &jobs[n_k].out, *other = &jobs[o_k].out;
    if (won->status != 0 || !won->committed)
        fail_msg("the new leader answered %s \"%s\" for its own pending forward",
                 rpc_status_name(won->status), won->message);
    txs[n_k].committed = true;
    txs[n_k].height = won->height;
    txs[n_k].position = won->position;
    /* The other follower: outcome unknown, and the hint names N, by its RPC
     * address (not its peer port, not O's own). */
    if (other->status != RPC_STATUS_UNAVAILABLE || strcmp(other->outcome, "unknown") != 0)
        fail_msg("the other follower answered %s \"%s\" (outcome \"%s\")",
                 rpc_status_name(other->status), other->message, other->outcome);
    char n_hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1], n_rpc[32];
    ehr_hex_encode(n_hex, c.nodes[leader].node_key, EHR_SCHNORR_PUBLIC_BYTES);
    snprintf(n_rpc, sizeof n_rpc, "127.0.0.1:%u", (unsigned)c.nodes[leader].rpc_port);
    assert_string_equal(other->leader_id, n_hex);
    assert_string_equal(other->leader_address, n_rpc);
    /* Resubmitting the same envelope through O commits it. */
    struct submitted again;
    submit_full(&c, f[o_k], txs[o_k].envelope, txs[o_k].envelope_len, true, 30000, &again);
    if (again.status != 0 || !again.committed)
        fail_msg("resubmitted: %s \"%s\"", rpc_status_name(again.status), again.message);
    txs[o_k].committed = true;
    txs[o_k].height = again.height;
    txs[o_k].position = again.position;

    assert_int_equal(kill(c.nodes[old].pid, SIGCONT), 0);
    uint64_t tip = wait_converged(&c, 30000);
    assert_same_chain(&c, tip);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cluster_stop(&c, i), 0);
    assert_ledgers_hold(&c, txs, 2);
    cluster_txs_free(txs, 2);
    cluster_destroy(&c, keep_dirs());
}

/* ---- refusing to start ---- */

static bool log_says(const struct cluster *c, size_t i, const char *words);

/* Run ehrd with ARGV[1..] and NAME=VALUE in its environment (NAME may be
 * NULL), expecting it to exit EXPECT within 20 s with WORDS in its stderr. */
static void expect_ehrd_exit(const char *config, const char *extra_flag, const char *extra_value,
                             int expect, const char *words)
{
    const char *const args[] = {"--config", config, extra_flag, extra_value, NULL};
    const char *const version[] = {"--version", NULL}; /* no config: ask for the version */
    struct proc_result r =
        run(EHRD_PATH, config != NULL ? args : version, PROC_TO_CAPTURE, PROC_TO_STDOUT);
    if (r.status != expect || strstr(r.out, words) == NULL)
        fail_msg("ehrd --config %s: exit %d, expected %d with \"%s\"; it said: %s", config,
                 r.status, expect, words, r.out);
    proc_result_free(&r);
}

static void test_ehrd_refuses_to_start_with_a_clear_message(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 2, EHRD_PATH, EHRCTL_PATH, NULL);
    char path[CLUSTER_PATH_BYTES + 64];

    /* A config with a typo in a key, and one that does not exist. */
    snprintf(path, sizeof path, "%s/bad.json", c.root);
    static const char bad[] =
        "{\"data_dir\": \"/x\", \"peer_listen\": \"127.0.0.1:1\", "
        "\"rpc_listen\": \"127.0.0.1:2\", \"limits\": {\"mempool_tx_cnt\": 5}}";
    assert_int_equal(ehr_file_write_atomic(path, bad, strlen(bad), 0600, true), 0);
    expect_ehrd_exit(path, NULL, NULL, 1, "mempool_tx_cnt");
    snprintf(path, sizeof path, "%s/none.json", c.root);
    expect_ehrd_exit(path, NULL, NULL, 1, "none.json");

    /* A missing data directory. */
    struct node_config cfg;
    ehr_diag err;
    assert_int_equal(node_config_load(c.nodes[0].config, &cfg, &err), 0);
    ehr_free(cfg.data_dir);
    snprintf(path, sizeof path, "%s/nowhere", c.root);
    cfg.data_dir = ehr_strdup(path);
    snprintf(path, sizeof path, "%s/missing-dir.json", c.root);
    assert_int_equal(node_config_write(path, &cfg, true, &err), 0);
    node_config_free(&cfg);
    expect_ehrd_exit(path, NULL, NULL, 1, "does not exist");

    /* Another node's key on this node's data directory: not the member the
     * directory was made for is fine, but a key of no member is refused. */
    assert_int_equal(node_config_load(c.nodes[0].config, &cfg, &err), 0);
    snprintf(path, sizeof path, "%s/stranger.key", c.root);
    struct proc_result r =
        run(c.ehrctl, PROC_ARGS("keygen", "--out", path, "--no-passphrase", NULL), PROC_TO_NULL,
            PROC_TO_INHERIT);
    assert_int_equal(r.status, 0);
    ehr_free(cfg.key_file);
    cfg.key_file = ehr_strdup(path);
    snprintf(path, sizeof path, "%s/stranger.json", c.root);
    assert_int_equal(node_config_write(path, &cfg, true, &err), 0);
    node_config_free(&cfg);
    expect_ehrd_exit(path, NULL, NULL, 1, "is not a member");

    /* A passphrase-protected key: with no passphrase given, with a passphrase
     * file that does not exist, and with one of two lines (ehrctl refuses the
     * same file: one reader for both). Each names what is wrong. */
    char pass_path[CLUSTER_PATH_BYTES + 64], key_path[CLUSTER_PATH_BYTES + 64];
    snprintf(pass_path, sizeof pass_path, "%s/protected.pass", c.root);
    assert_int_equal(ehr_file_write_atomic(pass_path, "secret words\n", 13, 0600, true), 0);
    snprintf(key_path, sizeof key_path, "%s/protected.key", c.root);
    r = run(c.ehrctl, PROC_ARGS("keygen", "--out", key_path, "--passphrase-file", pass_path, NULL),
            PROC_TO_NULL, PROC_TO_INHERIT);
    assert_int_equal(r.status, 0);
    assert_int_equal(node_config_load(c.nodes[0].config, &cfg, &err), 0);
    ehr_free(cfg.key_file);
    cfg.key_file = ehr_strdup(key_path);
    ehr_free(cfg.passphrase_file);
    cfg.passphrase_file = NULL;
    snprintf(path, sizeof path, "%s/no-passphrase.json", c.root);
    assert_int_equal(node_config_write(path, &cfg, true, &err), 0);
    expect_ehrd_exit(path, NULL, NULL, 1, "no passphrase was given");
    snprintf(pass_path, sizeof pass_path, "%s/missing.pass", c.root);
    cfg.passphrase_file = ehr_strdup(pass_path);
    snprintf(path, sizeof path, "%s/missing-passphrase.json", c.root);
    assert_int_equal(node_config_write(path, &cfg, true, &err), 0);
    expect_ehrd_exit(path, NULL, NULL, 1, "cannot read the passphrase file");
    assert_int_equal(ehr_file_write_atomic(pass_path, "secret words\nmore\n", 18, 0600, true), 0);
    expect_ehrd_exit(path, NULL, NULL, 1, "has more than one line");
    node_config_free(&cfg);

    /* A genesis that is not the ledger's. */
    snprintf(path, sizeof path, "%s/other-genesis.pb", c.root);
    ehr_signing_key k;
    tu_key(&k, 99);
    uint8_t *g;
    size_t glen;
    tu_genesis(&k, 1, &g, &glen);
    assert_int_equal(ehr_file_write_atomic(path, g, glen, 0600, true), 0);
    ehr_free(g);
    expect_ehrd_exit(c.nodes[0].config, "--genesis", path, 1, "chain");

    /* A data directory another ehrd holds. */
    cluster_start(&c, 0);
    for (int i = 0; i < 1000 && !log_says(&c, 0, "node started"); i++)
        usleep(10000);
    assert_true(log_says(&c, 0, "node started"));
    char pidtext[32];
    snprintf(pidtext, sizeof pidtext, "%d", (int)c.nodes[0].pid);
    expect_ehrd_exit(c.nodes[0].config, NULL, NULL, 1, pidtext);
    /* While it runs, DIR/ehrd.pid names it; a clean stop removes the file. */
    char pid_path[CLUSTER_PATH_BYTES + 16], pid_file[32] = "";
    snprintf(pid_path, sizeof pid_path, "%s/ehrd.pid", c.nodes[0].dir);
    size_t pid_len = 0;
    assert_int_equal(ehr_file_read(pid_path, pid_file, sizeof pid_file - 1, &pid_len), 0);
    pid_file[pid_len] = '\0';
    assert_int_equal(strtol(pid_file, NULL, 10), (long)c.nodes[0].pid);
    assert_int_equal(cluster_stop(&c, 0), 0);
    assert_int_equal(access(pid_path, F_OK), -1);

    /* Usage. */
    r = run(EHRD_PATH, PROC_ARGS("--bogus", NULL), PROC_TO_INHERIT, PROC_TO_NULL);
    assert_int_equal(r.status, 2);
    /* --version: exit 0 with the release and the commit. */
    expect_ehrd_exit(NULL, NULL, NULL, 0, "ehrd 0.");
    expect_ehrd_exit(NULL, NULL, NULL, 0, " (commit ");
    cluster_destroy(&c, keep_dirs());
}

/* ---- a stock gRPC client ---- */

/* Write member I's BIP-340 secret key, in hex, to C->root/memberI.secret
 * (its name into PATH), for a client that signs as that member. */
static void member_secret_write(const struct cluster *c, size_t i, char *path, size_t size)
{
    char key_path[CLUSTER_PATH_BYTES + 16], hex[2 * EHR_SCHNORR_SECRET_BYTES + 1];
    snprintf(path, size, "%s/member%zu.secret", c->root, i);
    snprintf(key_path, sizeof key_path, "%s/node%zu.key", c->root, i);
    ehr_identity id;
    assert_int_equal(ehr_keyfile_load(key_path, &id, NULL, NULL, 0, NULL), 0);
    ehr_hex_encode(hex, id.signing.secret, EHR_SCHNORR_SECRET_BYTES);
    assert_int_equal(ehr_file_write_atomic(path, hex, strlen(hex), 0600, true), 0);
    ehr_signing_key_wipe(&id.signing);
    ehr_kx_key_wipe(&id.kx);
    sodium_memzero(hex, sizeof hex);
}

static void test_stock_python_grpc_client_submits_and_reads(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 3, EHRD_PATH, EHRCTL_PATH, NULL);
    for (size_t i = 0; i < 3; i++)
        cluster_start(&c, i);
    size_t leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(leader, SIZE_MAX);
    uint8_t *env;
    size_t len;
    uint8_t hash[EHR_HASH_BYTES];
    cluster_tx_enroll(&c, 0, NULL, &env, &len, hash);
    char path[CLUSTER_PATH_BYTES + 16], secret_path[CLUSTER_PATH_BYTES + 16];
    char grantee_path[CLUSTER_PATH_BYTES + 16];
    snprintf(path, sizeof path, "%s/tx.bin", c.root);
    assert_int_equal(ehr_file_write_atomic(path, env, len, 0600, true), 0);
    ehr_free(env);
    /* The client signs as member 1 (the lab: enrols and anchors) and as
     * member 2 (the insurer: the grantee) itself; a test's keys, never real
     * ones. */
    member_secret_write(&c, 1, secret_path, sizeof secret_path);
    member_secret_write(&c, 2, grantee_path, sizeof grantee_path);
    char port[16];
    /* Through a follower, so the submission is forwarded to the leader. */
    snprintf(port, sizeof port, "%u", c.nodes[(leader + 1) % 3].rpc_port);
    struct proc_result r = run(
        "/usr/bin/python3",
        PROC_ARGS(EHR_SOURCE_DIR "/tests/node/interop_node.py", "--proto-root",
                  EHR_SOURCE_DIR "/proto", "--port", port, "--envelope", path, "--chain-id",
                  c.chain_id, "--vectors", EHR_SOURCE_DIR "/tests/vectors/bip340-test-vectors.csv",
                  "--member-secret", secret_path, "--grantee-secret", grantee_path, NULL),
        PROC_TO_INHERIT, PROC_TO_INHERIT);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cluster_stop(&c, i), 0);
    cluster_destroy(&c, keep_dirs());
    assert_int_equal(r.signal, 0);
    if (r.status == 77)
        skip();
    assert_int_equal(r.status, 0);
}

/* Wait up to TIMEOUT_MS until CHILD's stdout so far holds LINE; false if
 * it does not by then (or CHILD ended first). */
static bool child_printed(const struct proc_child *child, const char *line, uint64_t timeout_ms)
{
    uint64_t until = cluster_now_us() + timeout_ms * 1000;
    for (;;) {
        char *out = proc_stdout_so_far(child);
        bool found = strstr(out, line) != NULL;
        ehr_free(out);
        if (found)
            return true;
        /* Ended? Asked without reaping it: proc_collect does that. */
        siginfo_t info = {0};
        if (waitid(P_PID, (id_t)child->pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == child->pid)
            return false;
        if (cluster_now_us() >= until)
            return false;
        usleep(50 * 1000);
    }
}

/*
 * The standard health service (node/health.c) to a stock client
 * (tests/node/interop_health.py): SERVING on a healthy node; NOT_SERVING,
 * on Check and on a Watch open across the change, once the two other nodes
 * stop and it has no leader; SERVING again once they are back.
 */
static void test_health_follows_the_leader_with_a_stock_client(void **state)
{
    (void)state;
    enum { STEP_WAIT_MS = 40000 };
    struct cluster c;
    cluster_create(&c, 3, EHRD_PATH, EHRCTL_PATH, NULL);
    for (size_t i = 0; i < 3; i++)
        cluster_start(&c, i);
    /* The leader stays: it must notice it lost its quorum (check-quorum). */
    size_t kept = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(kept, SIZE_MAX);
    wait_converged(&c, LEADER_WAIT_MS);
    char port[16];
    snprintf(port, sizeof port, "%u", c.nodes[kept].rpc_port);
    struct proc_spec spec = {.path = "/usr/bin/python3",
                             .args = PROC_ARGS(EHR_SOURCE_DIR "/tests/node/interop_health.py",
                                               "--proto-root", EHR_SOURCE_DIR "/proto", "--port",
                                               port, NULL),
                             .env_inherit = true,
                             .err = {.to = PROC_TO_STDOUT}};
    struct proc_child child;
    proc_spawn(&spec, &child);
    bool watching = child_printed(&child, "WATCHING", STEP_WAIT_MS);
    if (watching)
        for (size_t i = 0; i < 3; i++)
            if (i != kept)
                assert_int_equal(cluster_stop(&c, i), 0);
    bool not_serving = watching && child_printed(&child, "NOT_SERVING SEEN", STEP_WAIT_MS);
    if (not_serving)
        for (size_t i = 0; i < 3; i++)
            if (i != kept)
                cluster_start(&c, i);
    if (!not_serving)
        kill(child.pid, SIGTERM); /* it waits on a change that will not come */
    struct proc_result r = proc_collect(&child);
    printf("%s", r.out);
    for (size_t i = 0; i < 3; i++)
        if (c.nodes[i].pid != 0)
            assert_int_equal(cluster_stop(&c, i), 0);
    cluster_destroy(&c, keep_dirs());
    int status = r.status;
    proc_result_free(&r);
    if (status == 77)
        skip();
    assert_true(watching);
    assert_true(not_serving);
    assert_int_equal(status, 0);
}

/*
 * Server reflection (node/reflection.c) to a stock client doing what
 * grpcurl does (tests/node/interop_reflection.py): it lists the services,
 * fetches the descriptors of ehr.v1.Node and calls GetStatus with message
 * classes built from them alone, and finds each limit at its edge.
 */
static void test_reflection_describes_the_api_to_a_stock_client(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 1, EHRD_PATH, EHRCTL_PATH, NULL);
    cluster_start(&c, 0);
    assert_int_not_equal(cluster_wait_leader(&c, LEADER_WAIT_MS), SIZE_MAX);
    char port[16];
    snprintf(port, sizeof port, "%u", c.nodes[0].rpc_port);
    struct proc_result r =
        run("/usr/bin/python3",
            PROC_ARGS(EHR_SOURCE_DIR "/tests/node/interop_reflection.py", "--proto-root",
                      EHR_SOURCE_DIR "/proto", "--port", port, "--chain-id", c.chain_id, NULL),
            PROC_TO_INHERIT, PROC_TO_INHERIT);
    assert_int_equal(cluster_stop(&c, 0), 0);
    cluster_destroy(&c, keep_dirs());
    assert_int_equal(r.signal, 0);
    if (r.status == 77)
        skip();
    assert_int_equal(r.status, 0);
}

/* A test that failed half-way leaves no node running. */
static int kill_leftovers(void **state)
{
    (void)state;
    cluster_kill_all();
    return 0;
}

/* An argument runs only the tests whose names match it (cmocka's filter,
 * `*` as a wildcard), e.g. to repeat one test in a loop. */
int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    assert_int_equal(ehr_crypto_init(), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ehrd_refuses_to_start_with_a_clear_message, kill_leftovers),
        cmocka_unit_test_teardown(test_bad_input_gets_its_status_and_commits_nothing,
                                  kill_leftovers),
        cmocka_unit_test_teardown(test_stock_python_grpc_client_submits_and_reads, kill_leftovers),
        cmocka_unit_test_teardown(test_reflection_describes_the_api_to_a_stock_client,
                                  kill_leftovers),
        cmocka_unit_test_teardown(test_health_follows_the_leader_with_a_stock_client,
                                  kill_leftovers),
        cmocka_unit_test_teardown(
            test_a_forward_pending_across_a_leadership_change_is_answered_right, kill_leftovers),
        cmocka_unit_test_teardown(test_a_node_whose_state_digest_differs_stops_loudly,
                                  kill_leftovers),
        cmocka_unit_test_teardown(test_a_node_that_starts_late_and_diverges_stops_loudly,
                                  kill_leftovers),
        cmocka_unit_test_teardown(test_a_leader_forging_a_signature_changes_nothing,
                                  kill_leftovers),
        cmocka_unit_test_teardown(test_a_node_behind_the_compacted_log_catches_up_by_snapshot,
                                  kill_leftovers),
        cmocka_unit_test_teardown(test_three_nodes_commit_10000_transactions_into_identical_ledgers,
                                  kill_leftovers),
        cmocka_unit_test_teardown(test_leader_killed_mid_load_loses_nothing_acknowledged,
                                  kill_leftovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
