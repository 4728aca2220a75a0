/*
 * test_cli_node - ehrctl's commands that talk to a node (status, tx submit,
 * tx show / block show --node, blocks follow, bench), run as a subprocess
 * against a fake ehr.v1.Node served in this process by the project's own
 * rpc server on its own thread.
 *
 * The fake is canned but checking: it decodes every request, admits a
 * submitted envelope only if ledger_tx_check passes against its chain id
 * and clock (as a node would) and answers with the real hash; it serves
 * blocks and transactions from a real ledger built with the ledger's test
 * builders, so the online forms of tx show / block show can be compared
 * byte for byte with the offline ones on the same directory. Knobs make it
 * fail submissions with a chosen status, answer commits with a chosen result
 * (TxResult) or none, answer with malformed lengths, or refuse the first few
 * submissions with UNAVAILABLE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli_check.h"
#include "ehr/v1/node.pb-c.h"
#include "ehr_crypto.h"
#include "ledger.h"
#include "ledger_testutil.h"
#include "proc.h"
#include "rpc.h"

#define EHRCTL EHR_BINARY_DIR "/cli/ehrctl"

enum {
    LEDGER_MEMBERS = 2,
    LEDGER_BLOCKS = 3,
    LEDGER_BLOCK_TXS = 4,
    STREAMS_MAX = 8,
};

/* ------------------------------------------------------------ the fake node */

struct fake {
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t stop;
    uv_sem_t ready;
    struct rpc_server *server;
    uint16_t port;
    uv_mutex_t lock; /* guards everything below */

    /* set by the test */
    char ledger_dir[PATH_MAX]; /* "" for none */
    ehr_signing_key node_key;
    enum rpc_status submit_status; /* OK: admit; else fail with it */
    char submit_message[256];
    const char *submit_trailers[3][2]; /* (name, value) pairs sent with a failure */
    unsigned unavailable_first;        /* answer the first N submissions UNAVAILABLE */
    unsigned throttled_first; /* then N RESOURCE_EXHAUSTED with the rate limit's retry hint */
    bool wrong_hash;          /* answer SubmitTransaction with another hash */
    bool short_node_id;       /* GetStatus with a 31-byte node id */
    unsigned no_leader_first; /* GetStatus names no leader in its first N answers */
    bool short_block_hash;    /* GetBlock with a 31-byte hash */
    bool stream_end;          /* end StreamBlocks after the tip (else hold it open) */
    unsigned plain_first;     /* admit and commit OK the first N, whatever the above */
    bool no_result;           /* a commit answered without a TxResult */
    int result_code;          /* the TxResult of a commit: code, reason, decision, */
    char result_reason[256];  /* consent id (when result_consent_len > 0), gas */
    int result_decision;
    size_t result_consent_len;
    uint64_t result_gas;

    /* seen by the fake */
    unsigned submits, status_calls, admitted;
    uint8_t last_envelope[EHR_TX_BYTES_MAX];
    size_t last_envelope_len;
    bool last_wait;
    uint64_t next_height;

    /* server thread only */
    ledger *ledger;
    struct rpc_stream *held[STREAMS_MAX];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void reply_message(struct rpc_call *call, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *bytes = ehr_malloc(len + 1);
    protobuf_c_message_pack(m, bytes);
    rpc_call_reply(call, bytes, len);
    ehr_free(bytes);
}

static void fake_get_status(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct fake *f = data;
    Ehr__V1__GetStatusRequest *r = ehr__v1__get_status_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT, "malformed GetStatusRequest");
        return;
    }
    ehr__v1__get_status_request__free_unpacked(r, NULL);
    uv_mutex_lock(&f->lock);
    f->status_calls++;
    Ehr__V1__GetStatusResponse s = EHR__V1__GET_STATUS_RESPONSE__INIT;
    s.node_id.data = f->node_key.public_key;
    s.node_id.len = f->short_node_id ? 31 : 32;
    s.name = (char *)"St. Mary Hospital";
    s.role = EHR__V1__NODE_ROLE__NODE_ROLE_LEADER;
    s.term = 7;
    s.leader_id.data = f->node_key.public_key;
    s.leader_id.len = f->status_calls <= f->no_leader_first ? 0 : 32;
    char address[32];
    snprintf(address, sizeof address, "127.0.0.1:%u", f->port);
    s.leader_rpc_address = address;
    s.commit_index = 41;
    s.applied_index = 40;
    ledger_tip tip = {.height = 5};
    memset(tip.hash, 0xab, sizeof tip.hash);
    if (f->ledger != NULL)
        EHR_ASSERT(ledger_tip_get(f->ledger, &tip, NULL) == 0);
    s.tip_height = tip.height;
    s.tip_hash.data = tip.hash;
    s.tip_hash.len = 32;
    s.chain_id = (char *)TU_CHAIN_ID;
    uint8_t peer_ids[2][32];
    memset(peer_ids[0], 0x11, 32);
    memset(peer_ids[1], 0x22, 32);
    Ehr__V1__PeerStatus p0 = EHR__V1__PEER_STATUS__INIT, p1 = EHR__V1__PEER_STATUS__INIT;
    p0.node_id.data = peer_ids[0];
    p0.node_id.len = 32;
    p0.name = (char *)"City Lab";
    p0.peer_address = (char *)"10.0.0.2:7000";
    p0.link_state = EHR__V1__LINK_STATE__LINK_STATE_CONNECTED;
    p0.match_index = 40;
    p1.node_id.data = peer_ids[1];
    p1.node_id.len = 32;
    p1.name = (char *)"Acme Insurance";
    p1.peer_address = (char *)"10.0.0.3:7000";
    p1.link_state = EHR__V1__LINK_STATE__LINK_STATE_CONNECTING;
    Ehr__V1__PeerStatus *peers[2] = {&p0, &p1};
    s.peers = peers;
    s.n_peers = 2;
    s.mempool_tx_count = 3;
    s.mempool_bytes = 900;
    /* CPU grows 50 ms per 100 ms of uptime between calls: 50 %. */
    s.cpu_user_ms = 1000 + 40ull * f->status_calls;
    s.cpu_system_ms = 200 + 10ull * f->status_calls;
    s.uptime_ms = 60000 + 100ull * f->status_calls;
    reply_message(call, &s.base);
    uv_mutex_unlock(&f->lock);
}

static void fake_submit(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct fake *f = data;
    Ehr__V1__SubmitTransactionRequest *r =
        ehr__v1__submit_transaction_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT, "malformed SubmitTransactionRequest");
        return;
    }
    uv_mutex_lock(&f->lock);
    f->submits++;
    EHR_ASSERT(r->envelope.len <= sizeof f->last_envelope);
    memcpy(f->last_envelope, r->envelope.data, r->envelope.len);
    f->last_envelope_len = r->envelope.len;
    f->last_wait = r->wait_for_commit;
    ledger_tx_rules rules = {.chain_id = TU_CHAIN_ID, .now_ms = now_ms()};
    ledger_tx tx;
    ehr_diag diag;
    if (f->unavailable_first > 0) {
        f->unavailable_first--;
        rpc_call_fail(call, RPC_STATUS_UNAVAILABLE, "no leader known");
    } else if (f->throttled_first > 0) {
        f->throttled_first--;
        EHR_ASSERT(rpc_call_trailer_add(call, "ehr-retry-after-ms", "10") == 0);
        EHR_ASSERT(rpc_call_trailer_add(call, "ehr-submit-outcome", "not-admitted") == 0);
        rpc_call_fail(call, RPC_STATUS_RESOURCE_EXHAUSTED,
                      "submissions from your address are over the rate; retry in 10 ms");
    } else if (ledger_tx_check(r->envelope.data, r->envelope.len, &rules, &tx, &diag) != 0) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT, diag.msg);
    } else if (f->submit_status != RPC_STATUS_OK && f->plain_first == 0) {
        ledger_tx_release(&tx);
        for (size_t i = 0; i < 3 && f->submit_trailers[i][0] != NULL; i++)
            EHR_ASSERT(rpc_call_trailer_add(call, f->submit_trailers[i][0],
                                            f->submit_trailers[i][1]) == 0);
        rpc_call_fail(call, f->submit_status, f->submit_message);
    } else {
        f->admitted++;
        if (f->wrong_hash)
            tx.hash[0] ^= 1;
        Ehr__V1__SubmitTransactionResponse a = EHR__V1__SUBMIT_TRANSACTION_RESPONSE__INIT;
        a.tx_hash.data = tx.hash;
        a.tx_hash.len = 32;
        a.committed = r->wait_for_commit;
        Ehr__V1__TxResult result = EHR__V1__TX_RESULT__INIT;
        uint8_t consent[EHR_HASH_BYTES];
        bool plain = f->plain_first > 0;
        if (plain)
            f->plain_first--;
        if (a.committed && plain) {
            a.height = f->next_height++;
            a.result = &result;
        } else if (a.committed) {
            a.height = f->next_height++;
            a.position = 2;
            memset(consent, 0xc5, sizeof consent);
            result.code = f->result_code;
            result.reason = f->result_reason;
            result.decision = f->result_decision;
            result.consent_id = (ProtobufCBinaryData){f->result_consent_len, consent};
            result.gas_used = f->result_gas;
            a.result = f->no_result ? NULL : &result;
        }
        reply_message(call, &a.base);
        ledger_tx_release(&tx);
    }
    uv_mutex_unlock(&f->lock);
    ehr__v1__submit_transaction_request__free_unpacked(r, NULL);
}

static void fake_get_block(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct fake *f = data;
    Ehr__V1__GetBlockRequest *r = ehr__v1__get_block_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT, "malformed GetBlockRequest");
        return;
    }
    uint8_t *bytes = NULL;
    size_t bytes_len = 0;
    ledger_block_view view;
    if (f->ledger == NULL ||
        ledger_block_get(f->ledger, r->height, &bytes, &bytes_len, NULL) != 0) {
        rpc_call_fail(call, RPC_STATUS_NOT_FOUND, "no such block");
    } else {
        EHR_ASSERT(ledger_block_parse(bytes, bytes_len, &view, NULL) == 0);
        Ehr__V1__GetBlockResponse a = EHR__V1__GET_BLOCK_RESPONSE__INIT;
        a.block.data = bytes;
        a.block.len = bytes_len;
        a.block_hash.data = view.hash;
        uv_mutex_lock(&f->lock);
        a.block_hash.len = f->short_block_hash ? 31 : 32;
        uv_mutex_unlock(&f->lock);
        reply_message(call, &a.base);
        ledger_block_view_release(&view);
    }
    ehr_free(bytes);
    ehr__v1__get_block_request__free_unpacked(r, NULL);
}

static void fake_get_transaction(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct fake *f = data;
    Ehr__V1__GetTransactionRequest *r = ehr__v1__get_transaction_request__unpack(NULL, len, req);
    if (r == NULL || r->tx_hash.len != 32) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT, "tx_hash must be 32 bytes");
        if (r != NULL)
            ehr__v1__get_transaction_request__free_unpacked(r, NULL);
        return;
    }
    ledger_tx_location loc;
    uint8_t *envelope = NULL, *block = NULL;
    size_t envelope_len = 0, block_len = 0;
    uint8_t *result = NULL;
    size_t result_len = 0;
    if (f->ledger == NULL || ledger_tx_get(f->ledger, r->tx_hash.data, &loc, &envelope,
                                           &envelope_len, &result, &result_len, NULL) != 0) {
        rpc_call_fail(call, RPC_STATUS_NOT_FOUND, "no committed transaction with that hash");
    } else {
        ledger_block_view view;
        EHR_ASSERT(ledger_block_get(f->ledger, loc.height, &block, &block_len, NULL) == 0);
        EHR_ASSERT(ledger_block_parse(block, block_len, &view, NULL) == 0);
        Ehr__V1__GetTransactionResponse a = EHR__V1__GET_TRANSACTION_RESPONSE__INIT;
        a.envelope.data = envelope;
        a.envelope.len = envelope_len;
        a.height = loc.height;
        a.position = loc.index;
        a.block_hash.data = view.hash;
        a.block_hash.len = 32;
        a.result = ehr__v1__tx_result__unpack(NULL, result_len, result);
        EHR_ASSERT(a.result != NULL);
        reply_message(call, &a.base);
        ehr__v1__tx_result__free_unpacked(a.result, NULL);
        ledger_block_view_release(&view);
    }
    ehr_free(result);
    ehr_free(envelope);
    ehr_free(block);
    ehr__v1__get_transaction_request__free_unpacked(r, NULL);
}

/* A held stream is finished when its client leaves (or the server closes). */
static void fake_stream_cancelled(void *data, enum rpc_status why)
{
    struct rpc_stream **slot = data;
    rpc_stream_finish(*slot, why, NULL);
    *slot = NULL;
}

static void fake_stream_blocks(struct rpc_stream *stream, const uint8_t *req, size_t len,
                               void *data)
{
    struct fake *f = data;
    Ehr__V1__StreamBlocksRequest *r = ehr__v1__stream_blocks_request__unpack(NULL, len, req);
    ledger_tip tip;
    if (r == NULL || f->ledger == NULL || ledger_tip_get(f->ledger, &tip, NULL) != 0) {
        rpc_stream_finish(stream, RPC_STATUS_INVALID_ARGUMENT, "malformed StreamBlocksRequest");
        if (r != NULL)
            ehr__v1__stream_blocks_request__free_unpacked(r, NULL);
        return;
    }
    uint64_t from = r->from_height;
    ehr__v1__stream_blocks_request__free_unpacked(r, NULL);
    if (from > tip.height + 1) {
        rpc_stream_finish(stream, RPC_STATUS_NOT_FOUND, "from_height is above the tip + 1");
        return;
    }
    for (uint64_t h = from; h <= tip.height; h++) {
        uint8_t *bytes;
        size_t bytes_len;
        ledger_block_view view;
        EHR_ASSERT(ledger_block_get(f->ledger, h, &bytes, &bytes_len, NULL) == 0);
        EHR_ASSERT(ledger_block_parse(bytes, bytes_len, &view, NULL) == 0);
        Ehr__V1__StreamBlocksResponse m = EHR__V1__STREAM_BLOCKS_RESPONSE__INIT;
        m.height = h;
        m.block.data = bytes;
        m.block.len = bytes_len;
        m.block_hash.data = view.hash;
        m.block_hash.len = 32;
        size_t n = ehr__v1__stream_blocks_response__get_packed_size(&m);
        uint8_t *packed = ehr_malloc(n);
        ehr__v1__stream_blocks_response__pack(&m, packed);
        EHR_ASSERT(rpc_stream_send(stream, packed, n) == 0); /* a few small blocks fit */
        ehr_free(packed);
        ledger_block_view_release(&view);
        ehr_free(bytes);
    }
    uv_mutex_lock(&f->lock);
    bool end = f->stream_end;
    uv_mutex_unlock(&f->lock);
    if (end) {
        rpc_stream_finish(stream, RPC_STATUS_OK, NULL);
        return;
    }
    for (size_t i = 0; i < STREAMS_MAX; i++) {
        if (f->held[i] == NULL) {
            f->held[i] = stream;
            rpc_stream_on_cancel(stream, fake_stream_cancelled, &f->held[i]);
            return;
        }
    }
    rpc_stream_finish(stream, RPC_STATUS_RESOURCE_EXHAUSTED, "too many streams");
}

static void fake_closed(struct rpc_server *server, void *data)
{
    struct fake *f = data;
    uv_close((uv_handle_t *)&f->stop, NULL);
}

static void fake_stop(uv_async_t *async)
{
    struct fake *f = async->data;
    rpc_server_close(f->server, fake_closed, f);
}

static void fake_main(void *arg)
{
    struct fake *f = arg;
    EHR_ASSERT(uv_loop_init(&f->loop) == 0);
    uv_async_init(&f->loop, &f->stop, fake_stop);
    f->stop.data = f;
    if (f->ledger_dir[0] != '\0')
        EHR_ASSERT(ledger_open(f->ledger_dir, &(ledger_options){.read_only = true}, &f->ledger,
                               NULL) == 0);
    EHR_ASSERT(rpc_server_new(&f->loop, NULL, &f->server) == 0);
    EHR_ASSERT(rpc_server_add_unary(f->server, "/ehr.v1.Node/GetStatus", fake_get_status, f) == 0);
    EHR_ASSERT(rpc_server_add_unary(f->server, "/ehr.v1.Node/SubmitTransaction", fake_submit, f) ==
               0);
    EHR_ASSERT(rpc_server_add_unary(f->server, "/ehr.v1.Node/GetBlock", fake_get_block, f) == 0);
    EHR_ASSERT(rpc_server_add_unary(f->server, "/ehr.v1.Node/GetTransaction", fake_get_transaction,
                                    f) == 0);
    EHR_ASSERT(
        rpc_server_add_stream(f->server, "/ehr.v1.Node/StreamBlocks", fake_stream_blocks, f) == 0);
    EHR_ASSERT(rpc_server_listen(f->server, "127.0.0.1", 0) == 0);
    f->port = rpc_server_port(f->server);
    uv_sem_post(&f->ready);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    EHR_ASSERT(uv_loop_close(&f->loop) == 0);
    if (f->ledger != NULL)
        ledger_close(f->ledger);
}

/* Start a fake node serving LEDGER_DIR (NULL: none). */
static struct fake *fake_start(const char *ledger_dir)
{
    struct fake *f = ehr_calloc(1, sizeof *f);
    if (ledger_dir != NULL)
        snprintf(f->ledger_dir, sizeof f->ledger_dir, "%s", ledger_dir);
    tu_key(&f->node_key, 77);
    f->next_height = 6;
    uv_mutex_init(&f->lock);
    uv_sem_init(&f->ready, 0);
    assert_int_equal(uv_thread_create(&f->thread, fake_main, f), 0);
    uv_sem_wait(&f->ready);
    return f;
}

static void fake_join(struct fake *f)
{
    uv_async_send(&f->stop);
    uv_thread_join(&f->thread);
    uv_sem_destroy(&f->ready);
    uv_mutex_destroy(&f->lock);
    ehr_free(f);
}

static unsigned fake_count(struct fake *f, const unsigned *counter)
{
    uv_mutex_lock(&f->lock);
    unsigned v = *counter;
    uv_mutex_unlock(&f->lock);
    return v;
}

/* ------------------------------------------------------ running ehrctl */

struct fixture {
    char *dir;
    char address[32]; /* the fake's HOST:PORT */
    struct fake *fake;
};

static const char *path_in(const struct fixture *fx, const char *name)
{
    return proc_path(fx->dir, name);
}

/* ehrctl with ENV (NULL: an empty environment) and ARGS (NULL-terminated), in FX's directory. */
static struct proc_spec ehrctl(const struct fixture *fx, const char *const *env,
                               const char *const *args)
{
    return (struct proc_spec){
        .path = EHRCTL, .argv0 = "ehrctl", .args = args, .env = env, .cwd = fx->dir};
}

static struct proc_result run_args(const struct fixture *fx, const char *const *env,
                                   const char *const *args)
{
    struct proc_spec spec = ehrctl(fx, env, args);
    return proc_run(&spec);
}

#define run_env(fx, env, ...) run_args(fx, env, PROC_ARGS(__VA_ARGS__))
#define run(fx, ...) run_env(fx, NULL, __VA_ARGS__, (const char *)NULL)

static json_int_t json_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("no integer \"%s\"", key);
    return json_integer_value(v);
}

static void assert_usage_error(const struct proc_result *r, const char *fragment)
{
    if (r->status != 2)
        fail_msg("exit %d, want 2; stderr: %s", r->status, r->err);
    assert_int_equal(strncmp(r->err, "ehrctl", 6), 0);
    if (fragment != NULL && strstr(r->err, fragment) == NULL)
        fail_msg("stderr lacks \"%s\": %s", fragment, r->err);
    assert_string_equal(r->out, "");
}

/* A ledger of LEDGER_BLOCKS blocks of LEDGER_BLOCK_TXS transactions in DIR/data. */
static void make_ledger(const struct fixture *fx)
{
    ehr_signing_key keys[LEDGER_MEMBERS];
    for (uint32_t i = 0; i < LEDGER_MEMBERS; i++)
        tu_key(&keys[i], 1 + i);
    uint8_t *g;
    size_t len;
    tu_genesis(keys, LEDGER_MEMBERS, &g, &len);
    ledger *l;
    assert_int_equal(ledger_open(path_in(fx, "data"), NULL, &l, NULL), 0);
    assert_int_equal(ledger_genesis_init(l, g, len, NULL), 0);
    for (int i = 0; i < LEDGER_BLOCKS; i++)
        assert_int_equal(tu_append(l, &keys[i % LEDGER_MEMBERS], LEDGER_BLOCK_TXS, NULL, NULL), 0);
    ledger_close(l);
    ehr_free(g);
}

/* The fixture: a temporary directory with a ledger, and a fake node serving it. */
static int fixture_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    if (fx == NULL || ehr_crypto_init() != 0)
        return -1;
    fx->dir = proc_dir_make("test-cli-node");
    make_ledger(fx);
    fx->fake = fake_start(path_in(fx, "data"));
    snprintf(fx->address, sizeof fx->address, "127.0.0.1:%u", fx->fake->port);
    *state = fx;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *fx = *state;
    fake_join(fx->fake);
    proc_dir_remove(fx->dir);
    free(fx);
    return 0;
}

/* A key file "k" under passphrase "pw"; *PUBLIC_HEX gets its signing key. */
static void make_key(const struct fixture *fx, char public_hex[65])
{
    ehr_identity id;
    assert_int_equal(ehr_identity_generate(&id, "test"), 0);
    assert_int_equal(
        ehr_keyfile_save(path_in(fx, "k"), &id, "pw", 2, ehr_kdf_profile_params(EHR_KDF_MIN), true),
        0);
    ehr_hex_encode(public_hex, id.signing.public_key, 32);
    ehr_identity_wipe(&id);
}

static const char *const pass_env[] = {"EHR_PASSPHRASE=pw", NULL};

/* The body of the envelope the fake received last. */
static Ehr__V1__TxBody *last_body(struct fake *f, uint8_t hash[32])
{
    uv_mutex_lock(&f->lock);
    ledger_tx_view view;
    assert_int_equal(ledger_tx_envelope_parse(f->last_envelope, f->last_envelope_len, &view, NULL),
                     0);
    ledger_tx_hash(view.body, view.body_len, hash);
    Ehr__V1__TxBody *body = ehr__v1__tx_body__unpack(NULL, view.body_len, view.body);
    uv_mutex_unlock(&f->lock);
    assert_non_null(body);
    return body;
}

/* ---------------------------------------------------------------- status */

static void test_status_human_and_json_show_what_the_node_said(void **state)
{
    struct fixture *fx = *state;
    char id_hex[65], peer_hex[65];
    ehr_hex_encode(id_hex, fx->fake->node_key.public_key, 32);
    memset(peer_hex, '1', 64);
    peer_hex[64] = '\0';
    struct proc_result r = run(fx, "status", "--node", fx->address, "--json");
    assert_int_equal(r.status, 0);
    json_t *s = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(s, "node_id"), id_hex);
    assert_string_equal(cli_json_str(s, "name"), "St. Mary Hospital");
    assert_string_equal(cli_json_str(s, "role"), "leader");
    assert_int_equal(json_int(s, "term"), 7);
    assert_string_equal(cli_json_str(s, "leader_id"), id_hex);
    assert_string_equal(cli_json_str(s, "leader_rpc_address"), fx->address);
    assert_int_equal(json_int(s, "commit_index"), 41);
    assert_int_equal(json_int(s, "applied_index"), 40);
    assert_int_equal(json_int(s, "tip_height"), LEDGER_BLOCKS);
    assert_string_equal(cli_json_str(s, "chain_id"), TU_CHAIN_ID);
    assert_int_equal(json_int(s, "mempool_tx_count"), 3);
    assert_int_equal(json_int(s, "mempool_bytes"), 900);
    json_t *peers = json_object_get(s, "peers");
    assert_int_equal(json_array_size(peers), 2);
    assert_string_equal(cli_json_str(json_array_get(peers, 0), "node_id"), peer_hex);
    assert_string_equal(cli_json_str(json_array_get(peers, 0), "link_state"), "connected");
    assert_int_equal(json_int(json_array_get(peers, 0), "match_index"), 40);
    assert_string_equal(cli_json_str(json_array_get(peers, 1), "link_state"), "connecting");
    assert_string_equal(cli_json_str(json_array_get(peers, 1), "name"), "Acme Insurance");
    const char *tip_hash = cli_json_str(s, "tip_hash");
    char tip_copy[65];
    snprintf(tip_copy, sizeof tip_copy, "%s", tip_hash);
    json_decref(s);
    proc_result_free(&r);

    /* human: the same facts, no JSON; the node from $EHR_NODE */
    char env_node[48];
    snprintf(env_node, sizeof env_node, "EHR_NODE=%s", fx->address);
    const char *const env[] = {env_node, NULL};
    r = run_env(fx, env, "status", (const char *)NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, id_hex));
    assert_non_null(strstr(r.out, "(this node)"));
    assert_non_null(strstr(r.out, "leader"));
    assert_non_null(strstr(r.out, tip_copy));
    assert_non_null(strstr(r.out, peer_hex));
    assert_non_null(strstr(r.out, "connecting"));
    assert_non_null(strstr(r.out, "City Lab"));
    assert_null(strchr(r.out, '{'));
    assert_string_equal(r.err, "");
    proc_result_free(&r);
}

static void test_status_unreachable_and_malformed_answers_fail_cleanly(void **state)
{
    struct fixture *fx = *state;
    /* nobody listens on port 1 */
    struct proc_result r = run(fx, "status", "--node", "127.0.0.1:1");
    cli_assert_failure(&r, 6, "UNAVAILABLE");
    proc_result_free(&r);
    /* a node id of 31 bytes is a bad answer, not a crash */
    fx->fake->short_node_id = true;
    r = run(fx, "status", "--node", fx->address);
    fx->fake->short_node_id = false;
    cli_assert_failure(&r, 1, "node_id is not 32 bytes");
    proc_result_free(&r);
    /* so is a block hash of 31 bytes */
    fx->fake->short_block_hash = true;
    r = run(fx, "block", "show", "1", "--node", fx->address);
    fx->fake->short_block_hash = false;
    cli_assert_failure(&r, 1, "block_hash is not 32 bytes");
    proc_result_free(&r);
}

/* status --wait-leader polls until the node names a leader, or gives up
 * with UNAVAILABLE (exit 6) at its deadline. */
static void test_status_wait_leader_waits_for_a_leader_or_gives_up(void **state)
{
    struct fixture *fx = *state;
    fx->fake->no_leader_first = fx->fake->status_calls + 3;
    struct proc_result r =
        run(fx, "status", "--wait-leader", "10", "--node", fx->address, "--json");
    assert_int_equal(r.status, 0);
    json_t *root = cli_parse_json(r.out);
    assert_true(strlen(cli_json_str(root, "leader_id")) == 64);
    json_decref(root);
    assert_true(fx->fake->status_calls >= fx->fake->no_leader_first + 1);
    proc_result_free(&r);
    /* never a leader: exit 6 after about a second, naming why */
    fx->fake->no_leader_first = UINT32_MAX;
    uint64_t start = now_ms();
    r = run(fx, "status", "--wait-leader", "1", "--node", fx->address);
    fx->fake->no_leader_first = 0;
    cli_assert_failure(&r, 6, "no leader known within 1 s");
    assert_true(now_ms() - start >= 1000);
    proc_result_free(&r);
    /* nobody listening: the same */
    r = run(fx, "status", "--wait-leader", "1", "--node", "127.0.0.1:1");
    cli_assert_failure(&r, 6, "no leader known within 1 s");
    proc_result_free(&r);
    r = run(fx, "status", "--wait-leader", "0", "--node", fx->address);
    assert_usage_error(&r, "--wait-leader");
    proc_result_free(&r);
    r = run(fx, "status", "--wait-leader", "601", "--node", fx->address);
    assert_usage_error(&r, "--wait-leader");
    proc_result_free(&r);
}

/* Something that is not an HTTP/2 server: accept ACCEPTS connections, and
 * answer each with WHAT (or nothing) and a close, as a peer port does. */
struct not_grpc {
    int fd;
    int accepts;
    const char *what;
};

static void *not_grpc_serve(void *arg)
{
    struct not_grpc *ng = arg;
    for (int i = 0; i < ng->accepts; i++) {
        int c = accept(ng->fd, NULL, NULL);
        if (c < 0)
            break;
        char buf[256];
        ssize_t n = read(c, buf, sizeof buf); /* the client's preface, at least a part */
        (void)n;
        if (ng->what != NULL && write(c, ng->what, strlen(ng->what)) < 0)
            break;
        close(c);
    }
    return NULL;
}

/* A listener that accepts CONNECTIONS and closes each at once, reading
 * nothing (RESET: with an RST, as SO_LINGER 0 makes it), as a node at its
 * connection limit does. */
struct closer {
    int fd;
    int connections;
    bool reset;
};

static void *closer_serve(void *arg)
{
    struct closer *cl = arg;
    for (int i = 0; i < cl->connections; i++) {
        int c = accept(cl->fd, NULL, NULL);
        if (c < 0)
            break;
        if (cl->reset) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(c);
    }
    return NULL;
}

/* A TCP socket listening on a free loopback port, its "127.0.0.1:PORT"
 * into ADDRESS; fails the test if a step does. Close it. */
static int loopback_listen(char address[32])
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    snprintf(address, 32, "127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
    return fd;
}

/* A node that closes the connection at once, before a byte of ours is
 * read (a FIN, or an RST), makes ehrctl's writes fail: an error with a
 * line naming the address and exit 6 (UNAVAILABLE), never death by SIGPIPE
 * (exit 141 and nothing said). Which line depends on when the close
 * overtakes ehrctl (while connecting, writing or reading), so only the
 * address is asserted. */
static void test_a_node_that_closes_at_once_is_an_error_not_a_signal(void **state)
{
    struct fixture *fx = *state;
    for (int reset = 0; reset <= 1; reset++) {
        struct closer cl = {.connections = 1, .reset = reset};
        char address[32];
        cl.fd = loopback_listen(address);
        pthread_t thread;
        assert_int_equal(pthread_create(&thread, NULL, closer_serve, &cl), 0);
        struct proc_result r = run(fx, "status", "--node", address);
        cli_assert_failure(&r, 6, address);
        proc_result_free(&r);
        pthread_join(thread, NULL);
        close(cl.fd);
    }
}
/* A wrong port (one that answers, but not in HTTP/2) is named as such, and
 * ehrctl exits 6 with that line, never killed by SIGPIPE. */
static void test_a_port_that_is_not_grpc_is_named_as_such(void **state)
{
    struct fixture *fx = *state;
    const char *answers[] = {NULL, "\x00\x00\x10garbage that is not HTTP/2 at all\n"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(answers); i++) {
        struct not_grpc ng = {.accepts = 1, .what = answers[i]};
        char address[32];
        ng.fd = loopback_listen(address);
        pthread_t thread;
        assert_int_equal(pthread_create(&thread, NULL, not_grpc_serve, &ng), 0);
        struct proc_result r = run(fx, "status", "--node", address);
        cli_assert_failure(&r, 6, "is not a gRPC (HTTP/2) endpoint");
        assert_non_null(strstr(r.err, "peer port"));
        proc_result_free(&r);
        pthread_join(thread, NULL);
        close(ng.fd);
    }
}

static void test_node_options_usage_errors_exit_2(void **state)
{
    struct fixture *fx = *state;
    const char *const cases[][10] = {
        {"status", "--node", "localhost", NULL},
        {"status", "--node", "127.0.0.1:0", NULL},
        {"status", "--node", "127.0.0.1:65536", NULL},
        {"status", "--node", "::1:7001", NULL},
        {"status", "--timeout-ms", "0", NULL},
        {"status", "--timeout-ms", "86400001", NULL},
        {"status", "extra", NULL},
        {"tx", "show", "00", "--data", "d", "--node", "127.0.0.1:7001", NULL},
        {"block", "show", "1", "--data", "d", "--node", "127.0.0.1:7001", NULL},
        {"tx", "submit", NULL},
        {"tx", "submit", "--payload", "p.json", NULL},
        {"tx", "submit", "--envelope", "e", "--key", "k", NULL},
        {"tx", "submit", "--envelope", "e", "--payload", "p.json", "--key", "k", NULL},
        {"tx", "submit", "--payload", "p.json", "--key", "k", "--expiry-s", "604801", NULL},
        {"tx", "submit", "--payload", "p.json", "--key", "k", "--chain-id", "a b", NULL},
        {"blocks", "follow", "--count", "0", NULL},
        {"bench", "--key", "k", "--inflight", "4097", NULL},
        {"bench", "--key", "k", "--txs", "0", NULL},
        {"bench", "--key", "k", "--txs", "1000001", NULL},
        {"bench", "--key", "k", "--workload", "all", NULL},
        {"bench", "--txs", "10", NULL}, /* no member key */
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        struct proc_result r = run_args(fx, NULL, cases[i]);
        if (r.status != 2)
            fail_msg("case %zu (%s %s): exit %d, stderr: %s", i, cases[i][0],
                     cases[i][1] ? cases[i][1] : "", r.status, r.err);
        assert_usage_error(&r, NULL);
        proc_result_free(&r);
    }
    assert_int_equal(fake_count(fx->fake, &fx->fake->submits), 0);
    /* the [IPv6]:PORT form parses (and nobody listens there) */
    struct proc_result r = run(fx, "status", "--node", "[::1]:1", "--timeout-ms", "2000");
    cli_assert_failure(&r, 6, "UNAVAILABLE");
    proc_result_free(&r);
}

/* ------------------------------------------------------------- tx submit */

static void test_tx_submit_sends_a_valid_signed_envelope_and_prints_its_hash(void **state)
{
    struct fixture *fx = *state;
    char signer_hex[65];
    make_key(fx, signer_hex);
    uint8_t patient[32], patient_kx[32];
    ehr_random_bytes(patient, 32);
    ehr_random_bytes(patient_kx, 32);
    char patient_hex[65], patient_kx_hex[65], payload[256];
    ehr_hex_encode(patient_hex, patient, 32);
    ehr_hex_encode(patient_kx_hex, patient_kx, 32);
    snprintf(payload, sizeof payload,
             "{\"patient_enroll\": {\"patient_key\": \"%s\", \"patient_kx_key\": \"%s\"}}",
             patient_hex, patient_kx_hex);
    proc_text_write(path_in(fx, "p.json"), payload);
    unsigned status_before = fake_count(fx->fake, &fx->fake->status_calls);
    uint64_t before = now_ms();
    struct proc_result r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload",
                                   "p.json", "--node", fx->address, "--json", (const char *)NULL);
    uint64_t after = now_ms();
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    assert_int_equal(fake_count(fx->fake, &fx->fake->admitted), 1);
    /* the chain id came from GetStatus */
    assert_int_equal(fake_count(fx->fake, &fx->fake->status_calls), status_before + 1);
    uint8_t hash[32];
    Ehr__V1__TxBody *body = last_body(fx->fake, hash);
    char hash_hex[65];
    ehr_hex_encode(hash_hex, hash, 32);
    json_t *out = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(out, "hash"), hash_hex);
    assert_false(json_is_true(json_object_get(out, "committed")));
    json_decref(out);
    proc_result_free(&r);
    assert_string_equal(body->chain_id, TU_CHAIN_ID);
    char body_signer[65];
    ehr_hex_encode(body_signer, body->signer.data, body->signer.len);
    assert_string_equal(body_signer, signer_hex);
    assert_int_equal(body->nonce.len, EHR_TX_NONCE_BYTES);
    assert_true(body->expiry_ms >= before + 300000 && body->expiry_ms <= after + 300000);
    assert_int_equal(body->payload_case, EHR__V1__TX_BODY__PAYLOAD_PATIENT_ENROLL);
    assert_memory_equal(body->patient_enroll->patient_key.data, patient, 32);
    assert_memory_equal(body->patient_enroll->patient_kx_key.data, patient_kx, 32);
    uint8_t first_nonce[EHR_TX_NONCE_BYTES];
    memcpy(first_nonce, body->nonce.data, EHR_TX_NONCE_BYTES);
    ehr__v1__tx_body__free_unpacked(body, NULL);
    assert_false(fx->fake->last_wait);

    /* human form, --wait, --chain-id (no GetStatus), --expiry-s at its maximum */
    status_before = fake_count(fx->fake, &fx->fake->status_calls);
    r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload", "p.json", "--node",
                fx->address, "--wait", "--chain-id", TU_CHAIN_ID, "--expiry-s", "604800",
                (const char *)NULL);
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    assert_int_equal(fake_count(fx->fake, &fx->fake->status_calls), status_before);
    assert_true(fx->fake->last_wait);
    body = last_body(fx->fake, hash);
    ehr_hex_encode(hash_hex, hash, 32);
    assert_non_null(strstr(r.out, hash_hex));
    assert_non_null(strstr(r.out, "committed at height"));
    assert_memory_not_equal(body->nonce.data, first_nonce, EHR_TX_NONCE_BYTES);
    assert_true(body->expiry_ms >= before + 604800000ull);
    ehr__v1__tx_body__free_unpacked(body, NULL);
    proc_result_free(&r);

    /* another chain id: the node refuses it, and the line says so */
    unsigned admitted = fake_count(fx->fake, &fx->fake->admitted);
    r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload", "p.json", "--node",
                fx->address, "--chain-id", "other-chain", (const char *)NULL);
    cli_assert_failure(&r, 3, "INVALID_ARGUMENT");
    assert_non_null(strstr(r.err, "chain"));
    proc_result_free(&r);
    assert_int_equal(fake_count(fx->fake, &fx->fake->admitted), admitted);
}

static void test_tx_submit_payload_json_is_strict_and_nothing_is_sent(void **state)
{
    struct fixture *fx = *state;
    char signer_hex[65];
    make_key(fx, signer_hex);
    char key64[65];
    memset(key64, 'a', 64);
    key64[64] = '\0';
    struct {
        const char *json;
        const char *fragment;
    } cases[] = {
        {"{\"patient_enrol\": {}}", "unknown key \"patient_enrol\""},
        {"{\"patient_enroll\": {\"patient_key\": \"aa\", \"name\": \"x\"}}",
         "unknown key \"patient_enroll.name\""},
        {"{\"patient_enroll\": {\"patient_key\": \"zz\"}}", "patient_enroll.patient_key: not hex"},
        {"{\"patient_enroll\": {\"patient_key\": \"abc\"}}", "patient_enroll.patient_key: not hex"},
        {"{\"patient_enroll\": {\"patient_key\": 12}}", "patient_enroll.patient_key: wants"},
        {"{\"record_anchor\": {\"ciphertext_bytes\": \"many\"}}",
         "record_anchor.ciphertext_bytes: wants an integer"},
        {"{\"record_anchor\": {\"ciphertext_bytes\": -1}}", "record_anchor.ciphertext_bytes"},
        {"{\"record_anchor\": {\"record_type\": 5}}",
         "record_anchor.record_type: wants one of the RecordType names"},
        {"{\"record_anchor\": {\"record_type\": \"x-ray\"}}",
         "e.g. \"RECORD_TYPE_IMAGING\" or \"imaging\""},
        {"{\"consent_grant\": {\"record_types\": \"lab\"}}",
         "consent_grant.record_types: wants an array"},
        {"{\"consent_grant\": {\"record_ids\": [\"00\", \"0g\"]}}",
         "consent_grant.record_ids[1]: not hex"},
        {"{\"member_proposal\": {\"admit\": {\"role\": \"dentist\"}}}",
         "member_proposal.admit.role: wants one of"},
        {"{\"patient_enroll\": {}, \"consent_revoke\": {}}", "exactly one payload"},
        {"{\"patient_enroll\": []}", "patient_enroll: wants an object"},
        {"{\"chain_id\": {}}", "unknown key \"chain_id\""},
        {"[1]", "exactly one payload"},
        {"{\"patient_enroll\": {\"patient_key\": \"aa\", \"patient_key\": \"bb\"}}", "not JSON"},
        {"{\"patient_enroll\": ", "not JSON"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        proc_text_write(path_in(fx, "p.json"), cases[i].json);
        struct proc_result r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload",
                                       "p.json", "--node", fx->address, (const char *)NULL);
        if (r.status != 2 || strstr(r.err, cases[i].fragment) == NULL)
            fail_msg("case %zu (%s): exit %d, stderr: %s", i, cases[i].json, r.status, r.err);
        assert_usage_error(&r, cases[i].fragment);
        proc_result_free(&r);
    }
    /* the payload file's size limit at its edge: at the limit the file is read (and this
     * one makes a body over EHR_TX_BODY_BYTES_MAX), one byte more is not */
    enum { FILE_MAX = 4 * 64 * 1024 };
    char *big = ehr_malloc(FILE_MAX + 2);
    const char *head = "{\"record_anchor\": {\"encrypted_pointer\": \"";
    size_t head_len = strlen(head), hex_len = 2 * 70000;
    memcpy(big, head, head_len);
    memset(big + head_len, 'a', hex_len);
    memcpy(big + head_len + hex_len, "\"}}", 3);
    memset(big + head_len + hex_len + 3, ' ', FILE_MAX - head_len - hex_len - 3);
    big[FILE_MAX] = '\0';
    proc_text_write(path_in(fx, "p.json"), big);
    struct proc_result r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload",
                                   "p.json", "--node", fx->address, (const char *)NULL);
    assert_usage_error(&r, "over 65536");
    proc_result_free(&r);
    big[FILE_MAX] = ' ';
    big[FILE_MAX + 1] = '\0';
    proc_text_write(path_in(fx, "p.json"), big);
    r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload", "p.json", "--node",
                fx->address, (const char *)NULL);
    assert_usage_error(&r, "over 262144 bytes");
    proc_result_free(&r);
    ehr_free(big);
    assert_int_equal(fake_count(fx->fake, &fx->fake->submits), 0);
    assert_int_equal(fake_count(fx->fake, &fx->fake->status_calls), 0);

    /* every JSON type of the mapping, accepted: nested message, enum, repeated, uint64 */
    char payload[1024];
    snprintf(payload, sizeof payload,
             "{\"member_proposal\": {\"admit\": {\"name\": \"City Lab\", \"role\": "
             "\"MEMBER_ROLE_LAB\", \"node_key\": \"%s\", \"kx_key\": \"%s\", \"peer_address\": "
             "\"10.0.0.2:7000\"}, \"expires_ms\": 1900000000000}}",
             key64, key64);
    proc_text_write(path_in(fx, "p.json"), payload);
    r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload", "p.json", "--node",
                fx->address, (const char *)NULL);
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    proc_result_free(&r);
    uint8_t hash[32];
    Ehr__V1__TxBody *body = last_body(fx->fake, hash);
    assert_int_equal(body->payload_case, EHR__V1__TX_BODY__PAYLOAD_MEMBER_PROPOSAL);
    assert_string_equal(body->member_proposal->admit->name, "City Lab");
    assert_int_equal(body->member_proposal->admit->role, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB);
    ehr__v1__tx_body__free_unpacked(body, NULL);
    proc_text_write(path_in(fx, "p.json"),
                    "{\"consent_grant\": {\"record_types\": [\"lab_result\", "
                    "\"RECORD_TYPE_IMAGING\"], \"record_ids\": [\"0102\"], \"valid_until_ms\": "
                    "\"18446744073709551615\", \"purpose\": \"treatment\"}}");
    r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload", "p.json", "--node",
                fx->address, (const char *)NULL);
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    proc_result_free(&r);
    body = last_body(fx->fake, hash);
    assert_int_equal(body->consent_grant->n_record_types, 2);
    assert_int_equal(body->consent_grant->record_types[0],
                     EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT); /* a short name */
    assert_int_equal(body->consent_grant->record_types[1],
                     EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING); /* a full one */
    assert_int_equal(body->consent_grant->purpose, EHR__V1__PURPOSE__PURPOSE_TREATMENT);
    assert_int_equal(body->consent_grant->n_record_ids, 1);
    assert_int_equal(body->consent_grant->record_ids[0].len, 2);
    assert_true(body->consent_grant->valid_until_ms == UINT64_MAX);
    ehr__v1__tx_body__free_unpacked(body, NULL);
}

static void test_tx_submit_maps_each_error_status_to_its_line_and_exit(void **state)
{
    struct fixture *fx = *state;
    char signer_hex[65];
    make_key(fx, signer_hex);
    proc_text_write(path_in(fx, "p.json"), "{\"consent_revoke\": {\"grant_id\": \"00ff\"}}");
    char leader_hex[65];
    memset(leader_hex, 'c', 64);
    leader_hex[64] = '\0';
    /* The node's advice comes as trailing metadata (node.proto), not text. */
    const char *leader_named[3][2] = {{"ehr-leader-id", leader_hex},
                                      {"ehr-leader-address", "10.0.0.2:7001"},
                                      {"ehr-submit-outcome", "not-admitted"}};
    const char *no_leader[3][2] = {{"ehr-submit-outcome", "not-admitted"}};
    const char *unknown[3][2] = {{"ehr-leader-id", leader_hex}, {"ehr-submit-outcome", "unknown"}};
    struct {
        enum rpc_status status;
        const char *message;
        int exit_code;
        const char *fragment;
        const char *fragment2;
        const char *(*trailers)[2];
    } cases[] = {
        {RPC_STATUS_INVALID_ARGUMENT, "expired", 3, "refused it (INVALID_ARGUMENT", "expired",
         NULL},
        {RPC_STATUS_ALREADY_EXISTS, "duplicate", 4, "already in the node's mempool or on the",
         "ALREADY_EXISTS", NULL},
        {RPC_STATUS_RESOURCE_EXHAUSTED, "mempool full (10000 transactions)", 5, "retry later",
         "RESOURCE_EXHAUSTED", NULL},
        {RPC_STATUS_UNAVAILABLE, "not the leader", 6, "retry with --node 10.0.0.2:7001",
         "the leader is cccccccccccccccc", leader_named},
        {RPC_STATUS_UNAVAILABLE, "no leader known", 6, "no leader known yet", "UNAVAILABLE",
         no_leader},
        {RPC_STATUS_UNAVAILABLE, "the link failed", 6, "its address is not known yet",
         "submitting the same envelope again is safe", unknown},
        {RPC_STATUS_DEADLINE_EXCEEDED, "waited too long", 7, "DEADLINE_EXCEEDED", "no answer",
         NULL},
        /* the consent contract's rules at submission: the rule's reason is the message */
        {RPC_STATUS_PERMISSION_DENIED, "only the patient who granted it revokes a consent", 8,
         "the signer may not do this (PERMISSION_DENIED",
         "only the patient who granted it revokes a consent", NULL},
        /* a signed read the node does not accept */
        {RPC_STATUS_UNAUTHENTICATED, "the read expired", 8,
         "the node did not accept the request's signature (UNAUTHENTICATED", "the read expired",
         NULL},
        {RPC_STATUS_NOT_FOUND, "no such consent", 9, "what it names does not exist (NOT_FOUND",
         "no such consent", NULL},
        {RPC_STATUS_FAILED_PRECONDITION, "the consent is revoked already", 10,
         "a rule of the transaction does not hold (FAILED_PRECONDITION",
         "the consent is revoked already", NULL},
        {RPC_STATUS_INTERNAL, "state inconsistent", 1, "INTERNAL", "state inconsistent", NULL},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        uv_mutex_lock(&fx->fake->lock);
        fx->fake->submit_status = cases[i].status;
        snprintf(fx->fake->submit_message, sizeof fx->fake->submit_message, "%s", cases[i].message);
        memset(fx->fake->submit_trailers, 0, sizeof fx->fake->submit_trailers);
        if (cases[i].trailers != NULL)
            memcpy(fx->fake->submit_trailers, cases[i].trailers, sizeof fx->fake->submit_trailers);
        uv_mutex_unlock(&fx->fake->lock);
        struct proc_result r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload",
                                       "p.json", "--node", fx->address, (const char *)NULL);
        cli_assert_failure(&r, cases[i].exit_code, cases[i].fragment);
        if (strstr(r.err, cases[i].fragment2) == NULL)
            fail_msg("case %zu: stderr lacks \"%s\": %s", i, cases[i].fragment2, r.err);
        /* the line names the transaction */
        uint8_t hash[32];
        Ehr__V1__TxBody *body = last_body(fx->fake, hash);
        ehr__v1__tx_body__free_unpacked(body, NULL);
        char hash_hex[65];
        ehr_hex_encode(hash_hex, hash, 32);
        assert_non_null(strstr(r.err, hash_hex));
        proc_result_free(&r);
    }
    uv_mutex_lock(&fx->fake->lock);
    fx->fake->submit_status = RPC_STATUS_OK;
    fx->fake->wrong_hash = true;
    uv_mutex_unlock(&fx->fake->lock);
    struct proc_result r = run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload",
                                   "p.json", "--node", fx->address, (const char *)NULL);
    fx->fake->wrong_hash = false;
    cli_assert_failure(&r, 1, "not the hash of the transaction sent");
    proc_result_free(&r);
}

/* Set the TxResult the fake answers commits with. */
static void fake_result(struct fake *f, int code, const char *reason, int decision,
                        size_t consent_len, uint64_t gas)
{
    uv_mutex_lock(&f->lock);
    f->result_code = code;
    snprintf(f->result_reason, sizeof f->result_reason, "%s", reason);
    f->result_decision = decision;
    f->result_consent_len = consent_len;
    f->result_gas = gas;
    uv_mutex_unlock(&f->lock);
}

/*
 * tx submit --wait prints the transaction's result: OK; an access decision
 * (permit with its consent and gas, deny with why: both exit 0); a refusal
 * (exit 11, the result printed on stdout and one line on stderr naming the
 * code and the reason); none at all (said so). A result that breaks the
 * schema's sizes is a bad answer.
 */
static void test_tx_submit_wait_prints_the_result(void **state)
{
    struct fixture *fx = *state;
    char signer_hex[65];
    make_key(fx, signer_hex);
    proc_text_write(path_in(fx, "p.json"), "{\"consent_revoke\": {\"grant_id\": \"00ff\"}}");
#define SUBMIT(...)                                                                                \
    run_env(fx, pass_env, "tx", "submit", "--key", "k", "--payload", "p.json", "--node",           \
            fx->address, "--wait", __VA_ARGS__, (const char *)NULL)
    /* OK */
    struct proc_result r = SUBMIT("--timeout-ms", "10000");
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    assert_non_null(strstr(r.out, "\nresult          OK\n"));
    assert_null(strstr(r.out, "decision"));
    proc_result_free(&r);
    r = SUBMIT("--json");
    assert_int_equal(r.status, 0);
    json_t *out = cli_parse_json(r.out);
    json_t *res = json_object_get(out, "result");
    assert_string_equal(cli_json_str(res, "code"), "ok");
    assert_true(json_is_true(json_object_get(res, "ok")));
    assert_true(json_is_null(json_object_get(res, "decision")));
    assert_true(json_is_null(json_object_get(res, "consent_id")));
    json_decref(out);
    proc_result_free(&r);

    /* an access request permitted by a consent, its policy using 7 units of gas */
    fake_result(fx->fake, EHR__V1__TX_RESULT_CODE__TX_RESULT_OK, "",
                EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT, 32, 7);
    char consent_hex[65];
    memset(consent_hex, 'c', 64);
    for (int i = 1; i < 64; i += 2)
        consent_hex[i] = '5';
    consent_hex[64] = '\0';
    r = SUBMIT("--timeout-ms", "10000");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "decision        permit\n"));
    assert_non_null(strstr(r.out, consent_hex));
    assert_non_null(strstr(r.out, "policy gas      7\n"));
    proc_result_free(&r);
    r = SUBMIT("--json");
    assert_int_equal(r.status, 0);
    out = cli_parse_json(r.out);
    res = json_object_get(out, "result");
    assert_string_equal(cli_json_str(res, "decision"), "permit");
    assert_string_equal(cli_json_str(res, "consent_id"), consent_hex);
    assert_int_equal(json_int(res, "gas_used"), 7);
    json_decref(out);
    proc_result_free(&r);

    /* denied: an OK result with its decision, exit 0 */
    fake_result(fx->fake, EHR__V1__TX_RESULT_CODE__TX_RESULT_OK, "the consent was revoked",
                EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY, 0, 0);
    r = SUBMIT("--timeout-ms", "10000");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "decision        deny: the consent was revoked\n"));
    assert_string_equal(r.err, "");
    proc_result_free(&r);
    r = SUBMIT("--json");
    assert_int_equal(r.status, 0);
    out = cli_parse_json(r.out);
    res = json_object_get(out, "result");
    assert_string_equal(cli_json_str(res, "decision"), "deny");
    assert_string_equal(cli_json_str(res, "reason"), "the consent was revoked");
    assert_true(json_is_true(json_object_get(res, "ok")));
    json_decref(out);
    proc_result_free(&r);

    /* refused when its block was applied: exit 11, the result on stdout, one line on stderr */
    fake_result(fx->fake, EHR__V1__TX_RESULT_CODE__TX_RESULT_CONFLICT,
                "the consent is revoked already", 0, 0, 0);
    r = SUBMIT("--timeout-ms", "10000");
    assert_int_equal(r.status, 11);
    assert_non_null(strstr(r.out, "result          CONFLICT: the consent is revoked already\n"));
    assert_int_equal(strncmp(r.err, "ehrctl: tx submit ", 18), 0);
    assert_non_null(strstr(r.err, "but refused by the rules (CONFLICT): the consent is revoked "
                                  "already\n"));
    assert_int_equal(strchr(r.err, '\n')[1], '\0');
    proc_result_free(&r);
    r = SUBMIT("--json");
    assert_int_equal(r.status, 11);
    out = cli_parse_json(r.out);
    res = json_object_get(out, "result");
    assert_string_equal(cli_json_str(res, "code"), "conflict");
    assert_false(json_is_true(json_object_get(res, "ok")));
    json_decref(out);
    proc_result_free(&r);

    /* no result in the answer (a node that keeps none): said, exit 0 */
    fx->fake->no_result = true;
    r = SUBMIT("--timeout-ms", "10000");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "result          not given by the node\n"));
    proc_result_free(&r);
    r = SUBMIT("--json");
    assert_int_equal(r.status, 0);
    out = cli_parse_json(r.out);
    assert_true(json_is_null(json_object_get(out, "result")));
    json_decref(out);
    proc_result_free(&r);
    fx->fake->no_result = false;

    /* a consent id of 31 bytes is a bad answer */
    fake_result(fx->fake, EHR__V1__TX_RESULT_CODE__TX_RESULT_OK, "",
                EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT, 31, 1);
    r = SUBMIT("--timeout-ms", "10000");
    cli_assert_failure(&r, 1, "consent_id is neither empty nor 32 bytes");
    proc_result_free(&r);
    fake_result(fx->fake, 0, "", 0, 0, 0);
#undef SUBMIT
}

static void test_tx_submit_envelope_is_sent_as_is(void **state)
{
    struct fixture *fx = *state;
    ehr_signing_key key;
    tu_key(&key, 9);
    uint8_t *envelope, hash[32];
    size_t len;
    tu_tx(&key, TU_CHAIN_ID, now_ms() + 60000, 40, &envelope, &len, hash);
    assert_int_equal(ehr_file_write_atomic(path_in(fx, "e.bin"), envelope, len, 0600, true), 0);
    struct proc_result r = run(fx, "tx", "submit", "--envelope", "e.bin", "--node", fx->address);
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    char hash_hex[65];
    ehr_hex_encode(hash_hex, hash, 32);
    assert_non_null(strstr(r.out, hash_hex));
    proc_result_free(&r);
    uv_mutex_lock(&fx->fake->lock);
    assert_int_equal(fx->fake->last_envelope_len, len);
    assert_memory_equal(fx->fake->last_envelope, envelope, len);
    uv_mutex_unlock(&fx->fake->lock);
    /* a file that is not an envelope is not sent */
    unsigned submits = fake_count(fx->fake, &fx->fake->submits);
    proc_text_write(path_in(fx, "junk.bin"), "not an envelope");
    r = run(fx, "tx", "submit", "--envelope", "junk.bin", "--node", fx->address);
    cli_assert_failure(&r, 1, "not a TxEnvelope");
    proc_result_free(&r);
    assert_int_equal(fake_count(fx->fake, &fx->fake->submits), submits);
    ehr_free(envelope);
}

/* -------------------------------------------------- tx show / block show */

static void assert_same_output(const struct fixture *fx, const char *const *offline,
                               const char *const *online)
{
    struct proc_result a = run_args(fx, NULL, offline);
    struct proc_result b = run_args(fx, NULL, online);
    if (a.status != 0 || b.status != 0)
        fail_msg("exit %d / %d: %s / %s", a.status, b.status, a.err, b.err);
    assert_string_equal(a.out, b.out);
    assert_true(strlen(a.out) > 100);
    proc_result_free(&a);
    proc_result_free(&b);
}

static void test_show_online_prints_what_show_offline_prints(void **state)
{
    struct fixture *fx = *state;
    const char *data = path_in(fx, "data");
    char data_dir[PATH_MAX];
    snprintf(data_dir, sizeof data_dir, "%s", data);
    for (int height = 0; height <= LEDGER_BLOCKS; height++) {
        char h[16];
        snprintf(h, sizeof h, "%d", height);
        for (int json = 0; json < 2; json++) {
            const char *offline[] = {"block", "show", h, "--data", data_dir, json ? "--json" : NULL,
                                     NULL};
            const char *online[] = {
                "block", "show", h, "--node", fx->address, json ? "--json" : NULL, NULL};
            assert_same_output(fx, offline, online);
        }
    }
    /* every transaction of the last block */
    struct proc_result r = run(fx, "block", "show", "3", "--node", fx->address, "--json");
    assert_int_equal(r.status, 0);
    json_t *block = cli_parse_json(r.out);
    proc_result_free(&r);
    json_t *txs = json_object_get(block, "txs");
    assert_int_equal(json_array_size(txs), LEDGER_BLOCK_TXS);
    for (size_t i = 0; i < LEDGER_BLOCK_TXS; i++) {
        const char *hash = cli_json_str(json_array_get(txs, i), "hash");
        for (int json = 0; json < 2; json++) {
            const char *offline[] = {"tx", "show", hash, "--data", data_dir, json ? "--json" : NULL,
                                     NULL};
            const char *online[] = {
                "tx", "show", hash, "--node", fx->address, json ? "--json" : NULL, NULL};
            assert_same_output(fx, offline, online);
        }
    }
    /* the result the ledger stored with the block: OK for these */
    r = run(fx, "tx", "show", cli_json_str(json_array_get(txs, 0), "hash"), "--node", fx->address,
            "--json");
    assert_int_equal(r.status, 0);
    json_t *shown = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(json_object_get(shown, "result"), "code"), "ok");
    json_decref(shown);
    proc_result_free(&r);
    /* not found: the same words as offline */
    r = run(fx, "block", "show", "9", "--node", fx->address);
    cli_assert_failure(&r, 1, "no block at height 9 (tip is 3)");
    proc_result_free(&r);
    char missing[65];
    snprintf(missing, sizeof missing, "%s", cli_json_str(json_array_get(txs, 0), "hash"));
    missing[0] = missing[0] == '0' ? '1' : '0';
    r = run(fx, "tx", "show", missing, "--node", fx->address);
    cli_assert_failure(&r, 1, "not on this ledger");
    proc_result_free(&r);
    json_decref(block);
}

/* ---------------------------------------------------------- blocks follow */

static void test_blocks_follow_prints_one_line_per_block_and_stops(void **state)
{
    struct fixture *fx = *state;
    /* --count stops a stream the node holds open */
    struct proc_result r =
        run(fx, "blocks", "follow", "--from", "1", "--count", "2", "--node", fx->address, "--json");
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    char *line2 = strchr(r.out, '\n');
    assert_non_null(line2);
    *line2++ = '\0';
    json_t *first = cli_parse_json(r.out);
    assert_int_equal(json_int(first, "height"), 1);
    assert_int_equal(json_int(first, "tx_count"), LEDGER_BLOCK_TXS);
    json_t *second = cli_parse_json(line2);
    assert_int_equal(json_int(second, "height"), 2);
    assert_int_equal(strchr(line2, '\n')[1], '\0'); /* two lines, no more */
    /* the hashes are the blocks' */
    struct proc_result b = run(fx, "block", "show", "2", "--node", fx->address, "--json");
    json_t *block = cli_parse_json(b.out);
    assert_string_equal(cli_json_str(second, "hash"), cli_json_str(block, "hash"));
    json_decref(block);
    json_decref(first);
    json_decref(second);
    proc_result_free(&b);
    proc_result_free(&r);

    /* a stream the node ends: every block from 0, then exit 0 */
    fx->fake->stream_end = true;
    r = run(fx, "blocks", "follow", "--from", "0", "--node", fx->address);
    fx->fake->stream_end = false;
    assert_int_equal(r.status, 0);
    int lines = 0;
    for (const char *p = r.out; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, LEDGER_BLOCKS + 1);
    assert_non_null(strstr(r.out, "genesis"));
    proc_result_free(&r);
    /* without --from it starts after the tip: no old block is printed */
    fx->fake->stream_end = true;
    r = run(fx, "blocks", "follow", "--node", fx->address);
    fx->fake->stream_end = false;
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "");
    proc_result_free(&r);

    /* above the tip + 1: the node's NOT_FOUND */
    r = run(fx, "blocks", "follow", "--from", "9", "--node", fx->address);
    cli_assert_failure(&r, 9, "NOT_FOUND");
    proc_result_free(&r);
}

static void test_blocks_follow_exits_0_on_sigint(void **state)
{
    struct fixture *fx = *state;
    const char *args[] = {"blocks", "follow", "--from", "0", "--node", fx->address, NULL};
    struct proc_spec spec = ehrctl(fx, NULL, args);
    struct proc_child child;
    proc_spawn(&spec, &child);
    /* wait until all blocks are printed, then interrupt the held stream */
    bool printed = false;
    for (int i = 0; i < 1000 && !printed; i++) {
        char *out = proc_stdout_so_far(&child);
        int lines = 0;
        for (const char *p = out; p != NULL && (p = strchr(p, '\n')) != NULL; p++)
            lines++;
        printed = lines == LEDGER_BLOCKS + 1;
        ehr_free(out);
        if (!printed)
            usleep(10000);
    }
    assert_true(printed);
    assert_int_equal(kill(child.pid, SIGINT), 0);
    struct proc_result r = proc_collect(&child);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    proc_result_free(&r);
}

/* ------------------------------------------------------------------ bench */

/*
 * The bench's setup against the fake: 16 patients (the least), each
 * enrolled, then a record and a consent each: 48 transactions before a
 * workload starts.
 */
enum { BENCH_SETUP_TXS = 48 };

static void test_bench_commits_every_transaction_and_reports_it(void **state)
{
    struct fixture *fx = *state;
    enum { TXS = 60 };
    char signer_hex[65];
    make_key(fx, signer_hex);
    unsigned admitted = fake_count(fx->fake, &fx->fake->admitted);
    unsigned submits = fake_count(fx->fake, &fx->fake->submits);
    /* the first 5 submissions meet "no leader", the next 3 the rate limit:
     * sent again, counted once */
    fx->fake->unavailable_first = 5;
    fx->fake->throttled_first = 3;
    struct proc_result r = run_env(fx, pass_env, "bench", "--node", fx->address, "--node",
                                   fx->address, "--key", "k", "--workload", "anchors", "--txs",
                                   "60", "--inflight", "8", "--json", (const char *)NULL);
    if (r.status != 0)
        fail_msg("exit %d: %s", r.status, r.err);
    json_t *root = cli_parse_json(r.out);
    /* every figure rounded to what is measured: no 1.9946829749999999 */
    for (const char *p = strchr(r.out, '.'); p != NULL; p = strchr(p + 1, '.')) {
        size_t digits = strspn(p + 1, "0123456789");
        if (digits > 6)
            fail_msg("a number with %zu decimals in: %s", digits, r.out);
    }
    assert_int_equal(json_int(root, "txs"), TXS);
    assert_int_equal(json_int(root, "members"), 1);
    assert_int_equal(json_int(root, "patients"), 16);
    json_t *setup = json_object_get(root, "setup");
    assert_int_equal(json_int(setup, "txs"), BENCH_SETUP_TXS);
    assert_true(json_is_true(json_object_get(setup, "ok")));
    json_t *workloads = json_object_get(root, "workloads");
    assert_int_equal(json_object_size(workloads), 1);
    json_t *rep = json_object_get(workloads, "anchors");
    assert_int_equal(json_int(rep, "txs"), TXS);
    assert_int_equal(json_int(rep, "submitted"), TXS);
    assert_int_equal(json_int(rep, "committed"), TXS);
    assert_int_equal(json_int(rep, "failed_total"), 0);
    json_int_t retries = json_int(rep, "retries");
    assert_int_equal(json_int(setup, "retries") + retries, 5 + 3);
    assert_int_equal(json_int(rep, "window_committed"), TXS);
    assert_int_equal(json_int(json_object_get(rep, "mix"), "anchor"), TXS);
    json_t *results = json_object_get(rep, "results");
    assert_int_equal(json_int(results, "as_expected"), TXS);
    assert_int_equal(json_int(results, "refused"), 0);
    assert_true(json_is_null(json_object_get(results, "first_wrong")));
    assert_true(json_real_value(json_object_get(rep, "committed_tx_per_s")) > 0);
    json_t *latency = json_object_get(rep, "latency_ms");
    double p50 = json_real_value(json_object_get(latency, "p50"));
    double p99 = json_real_value(json_object_get(latency, "p99"));
    double max = json_real_value(json_object_get(latency, "max"));
    assert_true(p50 > 0 && p50 <= p99 && p99 <= max);
    double envelope = json_real_value(json_object_get(rep, "envelope_bytes_avg"));
    assert_true(envelope >= 200 && envelope <= 300);
    json_t *nodes = json_object_get(rep, "nodes");
    assert_int_equal(json_array_size(nodes), 2);
    json_int_t sent = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *node = json_array_get(nodes, i);
        /* the fake's CPU grows 50 ms per 100 ms of uptime between calls */
        json_t *cpu = json_object_get(node, "cpu_percent");
        assert_true(json_is_real(cpu));
        assert_true(json_real_value(cpu) > 49.9 && json_real_value(cpu) < 50.1);
        /* 50 ms per GetStatus call between its two samples of the window
         * (the other node's samples are calls to the same fake), over 60 commits */
        json_int_t cpu_ms = json_int(node, "cpu_ms");
        assert_true(cpu_ms >= 50);
        assert_int_equal(cpu_ms % 50, 0);
        double per_tx = json_real_value(json_object_get(node, "cpu_us_per_tx"));
        double want = (double)cpu_ms * 1000.0 / TXS;
        assert_true(per_tx > want - 0.1 && per_tx < want + 0.1);
        sent += json_int(node, "submissions");
    }
    assert_int_equal(sent, TXS + retries);
    json_decref(root);
    proc_result_free(&r);
    /* every transaction reached the fake, valid, exactly once more than the retries */
    assert_int_equal(fake_count(fx->fake, &fx->fake->admitted), admitted + BENCH_SETUP_TXS + TXS);
    assert_int_equal(fake_count(fx->fake, &fx->fake->submits),
                     submits + BENCH_SETUP_TXS + TXS + 5 + 3);

    /* human form, with a rate and failures in the workload: the report names
     * them and exits 1 */
    uv_mutex_lock(&fx->fake->lock);
    fx->fake->submit_status = RPC_STATUS_RESOURCE_EXHAUSTED;
    snprintf(fx->fake->submit_message, sizeof fx->fake->submit_message, "mempool full");
    fx->fake->plain_first = BENCH_SETUP_TXS;
    uv_mutex_unlock(&fx->fake->lock);
    r = run_env(fx, pass_env, "bench", "--node", fx->address, "--key", "k", "--workload", "anchors",
                "--txs", "10", "--rate", "2000", (const char *)NULL);
    fx->fake->submit_status = RPC_STATUS_OK;
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "RESOURCE_EXHAUSTED 10"));
    assert_non_null(strstr(r.out, "rate 2000 tx/s"));
    assert_non_null(strstr(r.err, "workload anchors: 10 of 10 transactions did not commit"));
    assert_non_null(strstr(r.err, "RESOURCE_EXHAUSTED: mempool full"));
    proc_result_free(&r);

    /* the setup failing stops the bench there, saying why */
    uv_mutex_lock(&fx->fake->lock);
    fx->fake->submit_status = RPC_STATUS_PERMISSION_DENIED;
    snprintf(fx->fake->submit_message, sizeof fx->fake->submit_message,
             "only a member enrolls a patient");
    uv_mutex_unlock(&fx->fake->lock);
    r = run_env(fx, pass_env, "bench", "--node", fx->address, "--key", "k", "--txs", "10",
                (const char *)NULL);
    fx->fake->submit_status = RPC_STATUS_OK;
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "bench: setup: 16 of 16 enrolments failed; the first: "));
    assert_non_null(strstr(r.err, "PERMISSION_DENIED: only a member enrolls a patient"));
    assert_non_null(strstr(r.err, "are the --key files node keys of members"));
    proc_result_free(&r);

    /* a workload's transaction refused by the rules is a bug, said loudly;
     * so is an access request decided otherwise (the fake decides nothing) */
    fake_result(fx->fake, EHR__V1__TX_RESULT_CODE__TX_RESULT_CONFLICT, "done already", 0, 0, 0);
    fx->fake->plain_first = BENCH_SETUP_TXS;
    r = run_env(fx, pass_env, "bench", "--node", fx->address, "--key", "k", "--workload", "anchors",
                "--txs", "10", (const char *)NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "0 as expected, 10 refused"));
    assert_non_null(strstr(r.err, "10 committed with another result than the rules must give (10 "
                                  "refused, 0 decided otherwise): a bug"));
    assert_non_null(strstr(r.err, "the first: record anchor "));
    assert_non_null(strstr(r.err, "refused: CONFLICT: done already"));
    proc_result_free(&r);
    fake_result(fx->fake, 0, "", 0, 0, 0);
    fx->fake->plain_first = BENCH_SETUP_TXS;
    r = run_env(fx, pass_env, "bench", "--node", fx->address, "--key", "k", "--workload", "domain",
                "--txs", "20", "--json", (const char *)NULL);
    assert_int_equal(r.status, 1);
    root = cli_parse_json(r.out);
    results =
        json_object_get(json_object_get(json_object_get(root, "workloads"), "domain"), "results");
    assert_int_equal(json_int(results, "unexpected"), 10); /* 5 permits, 5 denies */
    assert_int_equal(json_int(results, "as_expected"), 10);
    json_decref(root);
    assert_non_null(strstr(r.err, "decided nothing"));
    proc_result_free(&r);

    /* the in-flight limit at its edge (4097 is a usage error) */
    r = run_env(fx, pass_env, "bench", "--node", fx->address, "--key", "k", "--txs", "3",
                "--inflight", "4096", "--workload", "anchors", (const char *)NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "4096 in flight"));
    proc_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_status_human_and_json_show_what_the_node_said,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_status_unreachable_and_malformed_answers_fail_cleanly,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_status_wait_leader_waits_for_a_leader_or_gives_up,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_port_that_is_not_grpc_is_named_as_such,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_node_that_closes_at_once_is_an_error_not_a_signal,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_node_options_usage_errors_exit_2, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_tx_submit_sends_a_valid_signed_envelope_and_prints_its_hash, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tx_submit_payload_json_is_strict_and_nothing_is_sent,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tx_submit_maps_each_error_status_to_its_line_and_exit,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tx_submit_wait_prints_the_result, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_tx_submit_envelope_is_sent_as_is, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_show_online_prints_what_show_offline_prints,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_blocks_follow_prints_one_line_per_block_and_stops,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_blocks_follow_exits_0_on_sigint, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_bench_commits_every_transaction_and_reports_it,
                                        fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
