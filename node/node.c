/*
 * node.c - the node's runtime: start and stop, consensus driven by the
 * loop (tick timer, peer messages, the ready protocol in a prepare handle
 * so that everything received in one loop iteration costs one durable
 * write), applying committed blocks, the leader's block proposals, the
 * hand-over of transactions to the leader, and state digests.
 *
 * Not here: the gRPC handlers (service.c), the storage adapter
 * (raft_store.c), message encodings (raft_wire.c; the other peer message
 * kinds are protobuf-c's).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "ehr/v1/p2p.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "node_internal.h"

/* The config's ranges (config.h, a library apart) are the parts' own. */
_Static_assert(NODE_CONFIG_MEMPOOL_TX_COUNT_DEFAULT == MEMPOOL_TX_COUNT_DEFAULT, "mempool.h");
_Static_assert(NODE_CONFIG_MEMPOOL_TX_COUNT_MIN == MEMPOOL_TX_COUNT_MIN, "mempool.h");
_Static_assert(NODE_CONFIG_MEMPOOL_TX_COUNT_MAX == MEMPOOL_TX_COUNT_MAX, "mempool.h");
_Static_assert(NODE_CONFIG_MEMPOOL_BYTES_DEFAULT == MEMPOOL_BYTES_DEFAULT, "mempool.h");
_Static_assert(NODE_CONFIG_MEMPOOL_BYTES_MIN == MEMPOOL_BYTES_MIN, "mempool.h");
_Static_assert(NODE_CONFIG_MEMPOOL_BYTES_MAX == MEMPOOL_BYTES_MAX, "mempool.h");
_Static_assert(NODE_CONFIG_PROPOSAL_BYTES_MAX == (unsigned)NODE_RAFT_WIRE_PROPOSAL_BYTES_MAX,
               "raft_wire.h");
_Static_assert(NODE_CONFIG_ELECTION_TICKS_MIN == (unsigned)RAFT_ELECTION_TICKS_MIN, "raft.h");
_Static_assert(NODE_CONFIG_ELECTION_TICKS_MAX == (unsigned)RAFT_ELECTION_TICKS_MAX, "raft.h");
_Static_assert(NODE_CONFIG_RPC_MESSAGE_BYTES_MAX == RPC_MESSAGE_BYTES_MAX, "rpc.h");

/* Every address a genesis accepts fits a peer link's (snprintf would cut it silently). */
_Static_assert((int)EHR_PEER_ADDRESS_BYTES_MAX < (int)P2P_ADDRESS_BYTES_MAX,
               "a genesis peer address and its NUL fit p2p_member.address");

/* ---- small helpers ---- */

uint64_t node__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void node__hex8(char out[17], raft_id id)
{
    snprintf(out, 17, "%016" PRIx64, id);
}

const struct node_member *node__member_by_id(const struct node *n, raft_id id)
{
    for (size_t i = 0; i < n->peers.count; i++)
        if (n->peers.members[i].id == id)
            return &n->peers.members[i];
    return NULL;
}

static struct node_member *member_by_key(struct node *n, const uint8_t key[P2P_KEY_BYTES])
{
    for (size_t i = 0; i < n->peers.count; i++)
        if (sodium_memcmp(n->peers.members[i].key, key, P2P_KEY_BYTES) == 0)
            return &n->peers.members[i];
    return NULL;
}

/* Stop the node because it must not go on: log why, then a normal stop
 * with EXIT_CODE. */
void node__fatal(struct node *n, int exit_code, const char *msg, const char *kv_fmt, ...)
{
    char kv[512];
    va_list ap;
    va_start(ap, kv_fmt);
    vsnprintf(kv, sizeof kv, kv_fmt, ap);
    va_end(ap);
    ehr_log(EHR_LOG_ERROR, msg, "%s exit=%d", kv, exit_code);
    if (n->exit_code == 0)
        n->exit_code = exit_code;
    node_stop(n);
}

/* ---- sending ---- */

static void send_peer(struct node *n, const struct node_member *m, const uint8_t *data, size_t len)
{
    if (m == NULL || m->self)
        return;
    int rc = p2p_send(n->peers.p2p, m->key, data, len);
    if (rc != 0 && ehr_log_get_level() <= EHR_LOG_DEBUG) {
        char id[17];
        node__hex8(id, m->id);
        ehr_log(EHR_LOG_DEBUG, "peer message not sent", "peer=%s err=%s", id, ehr_errname(rc));
    }
}

/* Pack a PeerMessage and send it to M (or to every peer when M is NULL). */
void node__send_kind(struct node *n, const struct node_member *m, const Ehr__V1__PeerMessage *pm)
{
    size_t len = ehr__v1__peer_message__get_packed_size(pm);
    if (len > P2P_MESSAGE_BYTES_MAX)
        return;
    uint8_t *buf = ehr_malloc(len ? len : 1);
    ehr__v1__peer_message__pack(pm, buf);
    if (m != NULL)
        send_peer(n, m, buf, len);
    else
        for (size_t i = 0; i < n->peers.count; i++)
            if (!n->peers.members[i].self && n->peers.members[i].link_up)
                send_peer(n, &n->peers.members[i], buf, len);
    ehr_free(buf);
}

static void send_raft_messages(struct node *n, const struct raft_message *msgs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct node_member *m = node__member_by_id(n, msgs[i].to);
        if (m == NULL || m->self)
            continue;
        size_t written;
        int rc =
            node_raft_wire_peer_encode(&msgs[i], n->peers.wire_buf, n->peers.wire_cap, &written);
        if (rc != 0) {
            /* The options were fitted to the wire: this is a bug, not input. */
            ehr_log(EHR_LOG_ERROR, "consensus message does not encode", "type=%s err=%s",
                    raft_message_type_name(msgs[i].type), ehr_errname(rc));
            continue;
        }
        send_peer(n, m, n->peers.wire_buf, written);
    }
}

int node__forward(struct node *n, uint64_t request_id, const uint8_t *envelope, size_t len)
{
    const struct node_member *m = node__member_by_id(n, n->cons.leader);
    if (n->cons.leader == 0 || m == NULL || m->self)
        return EHR_ENOTLEADER;
    if (!m->link_up)
        return EHR_ECLOSED;
    Ehr__V1__TxForward fw = EHR__V1__TX_FORWARD__INIT;
    fw.request_id = request_id;
    fw.envelope = (ProtobufCBinaryData){len, (uint8_t *)envelope};
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_TX_FORWARD;
    pm.tx_forward = &fw;
    size_t plen = ehr__v1__peer_message__get_packed_size(&pm);
    uint8_t *buf = ehr_malloc(plen);
    ehr__v1__peer_message__pack(&pm, buf);
    int rc = p2p_send(n->peers.p2p, m->key, buf, plen);
    ehr_free(buf);
    return rc;
}

const struct node_member *node__leader_hint(const struct node *n)
{
    const struct node_member *m = node__member_by_id(n, n->cons.leader);
    return n->cons.leader != 0 && m != NULL && !m->self ? m : NULL;
}

void node__unavailable_message(const struct node *n, char *msg, size_t size)
{
    const struct node_member *m = node__leader_hint(n);
    if (m == NULL) {
        snprintf(msg, size, "no leader this node can name yet; retry shortly");
        return;
    }
    char hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
    ehr_hex_encode(hex, m->key, sizeof m->key);
    if (m->rpc_address[0] != '\0')
        snprintf(msg, size, "this node cannot reach the leader; leader=%s address=%s", hex,
                 m->rpc_address);
    else
        snprintf(msg, size,
                 "this node cannot reach the leader; leader=%s (its RPC address is not known "
                 "yet)",
                 hex);
}

/* ---- the leader's admission and proposals ---- */

static void on_flush(uv_timer_t *t)
{
    struct node *n = t->data;
    n->prop.flush_due = true; /* the prepare handle proposes */
}

/* One submission waiting for, or under, signature verification. */
struct admit {
    struct admit *next;
    struct node *node;
    uint8_t *envelope;
    size_t len;
    uint64_t now_ms;
    mempool_verified verified;
    node__admit_cb cb;
    void *ctx;
};

/* The submissions of one loop iteration, or a part of them: one work item
 * for the pool, so a busy leader hands over batches, not single
 * transactions (each hand-over costs a lock and a wake-up). */
struct verify_job {
    uv_work_t work;
    struct node *node;
    struct admit *head;
};

static void maybe_free(struct node *n);

static void job_verify(uv_work_t *w)
{
    struct verify_job *j = w->data;
    /* The chain id never changes while the node runs. */
    for (struct admit *a = j->head; a != NULL; a = a->next)
        mempool_tx_verify(j->node->chain.chain_id, a->envelope, a->len, a->now_ms, &a->verified);
}

/* Finish one admission on the loop (STOPPED: the node is going away). */
static void admit_finish(struct node *n, struct admit *a, bool stopped)
{
    n->adm.inflight--;
    mempool_admit_result res;
    memset(&res, 0, sizeof res);
    int rc;
    if (stopped || n->stopping) {
        rc = EHR_ECLOSED;
        snprintf(res.reason, sizeof res.reason, "the node is shutting down");
    } else {
        /* Apply uses the verdict (a block of our own admissions is not
         * verified twice); a bad signature is refused here already. Then
         * the contract's rules against the committed state, so an obvious
         * refusal is answered now rather than after commit. */
        rc = 0;
        if (a->verified.err == 0) {
            EHR_ASSERT(a->len >= EHR_SCHNORR_SIG_BYTES); /* a checked envelope */
            sigverify_note(n->applying.sigv, a->verified.hash,
                           a->envelope + a->len - EHR_SCHNORR_SIG_BYTES, true);
            ehr_diag why = {{0}};
            rc = node__contracts_check(n, a->envelope, a->len, a->verified.hash, &why);
            if (rc != 0) {
                memcpy(res.hash, a->verified.hash, EHR_HASH_BYTES);
                snprintf(res.reason, sizeof res.reason, "%s", why.msg);
            }
        }
        if (rc == 0)
            rc = mempool_admit_finish(&n->pool, a->envelope, a->len, &a->verified, &res);
        if (rc == 0 && !uv_is_active((uv_handle_t *)&n->flush_timer))
            uv_timer_start(&n->flush_timer, on_flush, n->cfg.limits.block_flush_ms, 0);
    }
    node__metrics_admission(n, rc, &res);
    a->cb(n, a->ctx, rc, &res);
    ehr_free(a->envelope);
    ehr_free(a);
}

static void job_done(uv_work_t *w, int status)
{
    struct verify_job *j = w->data;
    struct node *n = j->node;
    struct admit *a = j->head;
    while (a != NULL) {
        struct admit *next = a->next;
        admit_finish(n, a, status != 0);
        a = next;
    }
    ehr_free(j);
    if (n->stopping)
        maybe_free(n);
}

/* Hand the queued submissions to the pool: one job, or two when there are
 * enough to keep both cores busy. */
static void admit_dispatch(struct node *n)
{
    size_t count = n->adm.queued;
    if (count == 0)
        return;
    size_t jobs = count >= NODE_VERIFY_SPLIT_MIN ? 2 : 1;
    struct admit *a = n->adm.head;
    for (size_t k = 0; k < jobs; k++) {
        size_t take = k + 1 < jobs ? count / jobs : count - (count / jobs) * (jobs - 1);
        struct verify_job *j = ehr_calloc(1, sizeof *j);
        j->work.data = j;
        j->node = n;
        j->head = a;
        for (size_t i = 1; i < take; i++)
            a = a->next;
        struct admit *rest = a->next;
        a->next = NULL;
        a = rest;
        int rc = uv_queue_work(n->loop, &j->work, job_verify, job_done);
        EHR_ASSERT(rc == 0); /* fails only for a NULL callback */
    }
    n->adm.head = n->adm.tail = NULL;
    n->adm.queued = 0;
}

/* Answer the queued submissions: the node stops. */
static void admit_drain(struct node *n)
{
    struct admit *a = n->adm.head;
    n->adm.head = n->adm.tail = NULL;
    n->adm.queued = 0;
    while (a != NULL) {
        struct admit *next = a->next;
        admit_finish(n, a, true);
        a = next;
    }
}

void node__admit(struct node *n, const uint8_t *envelope, size_t len, node__admit_cb cb, void *ctx)
{
    mempool_admit_result res;
    int rc = mempool_admit_begin(&n->pool, envelope, len, &res);
    if (rc != 0) {
        node__metrics_admission(n, rc, &res);
        cb(n, ctx, rc, &res);
        return;
    }
    struct admit *a = ehr_calloc(1, sizeof *a);
    a->node = n;
    a->envelope = ehr_malloc(len);
    memcpy(a->envelope, envelope, len);
    a->len = len;
    a->now_ms = node__now_ms();
    a->cb = cb;
    a->ctx = ctx;
    n->adm.inflight++;
    if (n->adm.tail != NULL)
        n->adm.tail->next = a;
    else
        n->adm.head = a;
    n->adm.tail = a;
    n->adm.queued++;
}

/* Can the leader propose now? */
static bool proposals_open(struct node *n)
{
    if (n->cons.role != RAFT_LEADER || n->stopping)
        return false;
    if (!n->prop.open) {
        if (n->cons.applied_index < n->prop.term_start_index)
            return false;
        /* Everything before this term is applied: build on the tip. */
        n->prop.open = true;
        n->prop.height = n->tip.height;
        memcpy(n->prop.hash, n->tip.hash, EHR_HASH_BYTES);
        n->prop.time_ms = n->tip.time_ms;
        n->prop.inflight = 0;
        n->prop.rebase = false;
        mempool_proposed_requeue(&n->pool);
    }
    if (n->prop.rebase) {
        if (n->prop.inflight > 0)
            return false;
        n->prop.rebase = false;
        n->prop.height = n->tip.height;
        memcpy(n->prop.hash, n->tip.hash, EHR_HASH_BYTES);
        n->prop.time_ms = n->tip.time_ms;
        mempool_proposed_requeue(&n->pool);
    }
    return true;
}

/* The test fault forge_height: B's first envelope replaced by a copy whose
 * signature the leader made over the same body with a key of its own
 * choosing, a fresh one, so that it is never the signer's (the leader's
 * node key would be, for a transaction the leader's member signed itself).
 * Returns the copy (free it once the block is built). */
static uint8_t *forge_first(struct node *n, mempool_batch *b)
{
    ledger_tx_view tv;
    int rc = ledger_tx_envelope_parse(b->envelopes[0].data, b->envelopes[0].len, &tv, NULL);
    EHR_ASSERT(rc == 0); /* admitted */
    uint8_t *copy = ehr_malloc(b->envelopes[0].len);
    memcpy(copy, b->envelopes[0].data, b->envelopes[0].len);
    uint8_t *sig = copy + (tv.signature - b->envelopes[0].data);
    ehr_signing_key forger;
    rc = ehr_signing_key_generate(&forger);
    EHR_ASSERT(rc == 0);
    rc = ehr_schnorr_sign(&forger, b->hashes[0], sig);
    EHR_ASSERT(rc == 0);
    ehr_signing_key_wipe(&forger);
    b->envelopes[0].data = copy;
    ehr_log(EHR_LOG_WARN, "test fault: the first transaction's signature is forged",
            "height=%" PRIu64, n->prop.height + 1);
    return copy;
}

/* Propose full blocks, and a partial one if FLUSH. */
static void propose_blocks(struct node *n, bool flush)
{
    if (!proposals_open(n))
        return;
    const struct node_config_limits *lim = &n->cfg.limits;
    while (n->prop.inflight < NODE_PROPOSALS_INFLIGHT_MAX) {
        /* A full block goes at once; a partial one when nothing is in
         * flight (an idle pipeline gains nothing by waiting: under load,
         * blocks fill while earlier ones commit) or when the flush timer
         * says the oldest transaction has waited block_flush_ms. */
        size_t pending = mempool_pending_count(&n->pool);
        if (pending == 0 || (pending < lim->block_tx_count && !flush && n->prop.inflight > 0))
            break;
        struct raft_status st;
        raft_status_get(n->cons.raft, &st);
        if (st.transfer_target != 0 ||
            st.uncommitted_bytes + lim->block_bytes > RAFT_UNCOMMITTED_BYTES_MAX)
            break;
        uint64_t time_ms = node__now_ms();
        if (time_ms < n->prop.time_ms)
            time_ms = n->prop.time_ms;
        mempool_expire(&n->pool, time_ms);
        size_t count_max = (size_t)lim->block_tx_count;
        uint64_t budget = lim->block_bytes - EHR_BLOCK_HEADER_BYTES_MAX - 128;
        if (budget > 4u * count_max + EHR_TX_BYTES_MAX)
            budget -= 4u * count_max; /* each envelope's field tag and length */
        mempool_batch b = {.envelopes = n->prop.batch_envelopes,
                           .hashes = n->prop.batch_hashes,
                           .capacity = n->prop.batch_cap};
        if (mempool_batch_take(&n->pool, count_max, budget, &b) == 0)
            break;
        ledger_block_params p = {.height = n->prop.height + 1,
                                 .time_ms = time_ms,
                                 .raft_term = n->cons.term,
                                 .raft_index = st.last_index + 1};
        memcpy(p.prev_hash, n->prop.hash, EHR_HASH_BYTES);
        uint8_t *block = NULL;
        size_t block_len = 0;
        uint8_t hash[EHR_HASH_BYTES];
        ehr_diag diag = {{0}};
        uint8_t *forged = NULL;
        if (n->applying.test_faults.forge_height == p.height && b.count > 0)
            forged = forge_first(n, &b); /* injected by a test (node_test_faults_set) */
        int rc =
            ledger_block_build(&p, b.envelopes, b.count, (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                               &n->id->signing, &block, &block_len, hash, &diag);
        ehr_free(forged);
        if (rc == 0)
            rc = raft_propose(n->cons.raft, block, (uint32_t)block_len);
        if (rc != 0) {
            ehr_log(EHR_LOG_WARN, "block proposal failed", "height=%" PRIu64 " err=%s why=\"%s\"",
                    p.height, ehr_errname(rc), diag.msg);
            ehr_free(block);
            /* Put the batch back once the blocks in flight are applied. */
            n->prop.rebase = true;
            break;
        }
        ehr_free(block);
        n->prop.height = p.height;
        memcpy(n->prop.hash, hash, EHR_HASH_BYTES);
        n->prop.time_ms = time_ms;
        n->prop.last_index = p.raft_index;
        n->prop.inflight++;
        node__metrics_proposed(n, p.raft_term, p.raft_index);
        ehr_log(EHR_LOG_DEBUG, "block proposed",
                "height=%" PRIu64 " index=%" PRIu64 " txs=%zu bytes=%zu", p.height, p.raft_index,
                b.count, block_len);
        flush = false;
    }
    if (mempool_pending_count(&n->pool) > 0 && !uv_is_active((uv_handle_t *)&n->flush_timer))
        uv_timer_start(&n->flush_timer, on_flush, lim->block_flush_ms, 0);
}

/* A follower hands what it admitted as leader over to the current leader. */
static void hand_over(struct node *n)
{
    if (n->cons.role == RAFT_LEADER || n->cons.leader == 0)
        return;
    const struct node_member *m = node__member_by_id(n, n->cons.leader);
    if (m == NULL || !m->link_up || mempool_pending_count(&n->pool) == 0)
        return;
    mempool_batch b = {.envelopes = n->prop.batch_envelopes,
                       .hashes = n->prop.batch_hashes,
                       .capacity = n->prop.batch_cap};
    size_t count = mempool_batch_take(&n->pool, NODE_HANDOVER_PER_TICK, UINT64_MAX, &b);
    for (size_t i = 0; i < count; i++)
        node__forward(n, 0, b.envelopes[i].data, b.envelopes[i].len);
    ehr_log(EHR_LOG_INFO, "transactions handed over to the leader", "count=%zu", count);
}

/* The leader's bookkeeping of its proposals, after entry INDEX applied. */
void node__proposals_applied(struct node *n, uint64_t index, bool refused)
{
    if (n->cons.role != RAFT_LEADER || !n->prop.open || n->prop.inflight == 0)
        return;
    if (refused)
        n->prop.rebase = true;
    if (index >= n->prop.last_index)
        n->prop.inflight = 0;
    else if (index >= n->prop.term_start_index)
        n->prop.inflight--;
}

/* ---- the ready protocol ---- */

static void role_changed(struct node *n, enum raft_role role, raft_id leader)
{
    struct raft_status st;
    raft_status_get(n->cons.raft, &st);
    n->cons.term = st.hard_state.term;
    if (role == n->cons.role && leader == n->cons.leader)
        return;
    char lid[17];
    node__hex8(lid, leader);
    ehr_log(EHR_LOG_INFO, "consensus role", "role=%s term=%" PRIu64 " leader=%s",
            raft_role_name(role), n->cons.term, leader ? lid : "none");
    bool was_leader = n->cons.role == RAFT_LEADER;
    bool leader_changed = leader != n->cons.leader;
    n->cons.role = role;
    n->cons.leader = leader;
    if (role == RAFT_LEADER && !was_leader) {
        n->prop.term_start_index = st.last_index;
        n->prop.open = false;
    }
    if (was_leader && role != RAFT_LEADER) {
        n->prop.open = false;
        n->prop.inflight = 0;
    }
    if (leader_changed || (was_leader && role != RAFT_LEADER))
        mempool_proposed_requeue(&n->pool); /* re-offered to whoever leads now */
    if (role == RAFT_LEADER && !was_leader)
        n->api.became_leader(n);
}

static void process_ready(struct node *n)
{
    while (!n->stopping && raft_ready_pending(n->cons.raft)) {
        struct raft_ready rd;
        int rc = raft_ready_get(n->cons.raft, &rd);
        if (rc != 0) {
            node__fatal(n, rc == EHR_EDIVERGED ? NODE_EXIT_DIVERGED : NODE_EXIT_FAILURE,
                        "consensus halted", "err=%s", ehr_errname(rc));
            return;
        }
        send_raft_messages(n, rd.messages, rd.message_count);
        if (rd.snapshot != NULL && node__snapshot_chunk(n, rd.snapshot) != 0)
            return;
        /* Entries from a leader: their signatures are checked on the
         * verification threads while they wait to be committed. */
        if (rd.role != RAFT_LEADER)
            for (size_t i = 0; i < rd.entry_count; i++)
                if (rd.entries[i].type == RAFT_ENTRY_NORMAL)
                    (void)sigverify_prefetch(n->applying.sigv, rd.entries[i].data,
                                             rd.entries[i].size);
        ehr_diag why;
        uint64_t persist_ns = uv_hrtime();
        rc = node_raft_store_persist(&n->cons.store, &rd, &why);
        if (rd.entry_count > 0 || rd.hard_state_changed)
            node__metrics_sync_write(n, false, uv_hrtime() - persist_ns);
        if (rc != 0) {
            node__fatal(n, NODE_EXIT_FAILURE, "cannot persist the consensus log",
                        "err=%s why=\"%s\"", ehr_errname(rc), why.msg);
            return;
        }
        if (rd.hard_state_changed)
            n->cons.commit_index = rd.hard_state.commit;
        send_raft_messages(n, rd.messages_after_persist, rd.message_after_persist_count);
        if (node__apply_committed(n, rd.committed, rd.committed_count) != 0)
            return;
        role_changed(n, rd.role, rd.leader);
        rc = raft_ready_advance(n->cons.raft);
        EHR_ASSERT(rc == 0);
    }
    node__snapshot_maybe_start(n);
}

/* One turn ended (the loop is about to poll): measure it (node__loop_meter). */
static void loop_meter_turn(struct node *n)
{
    struct node__loop_meter *m = &n->meter;
    uint64_t now_ns = uv_hrtime();
    uint64_t idle_ns = uv_metrics_idle_time(n->loop);
    struct timespec cpu;
    uint64_t cpu_ns = m->last_cpu_ns;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0)
        cpu_ns = (uint64_t)cpu.tv_sec * 1000000000u + (uint64_t)cpu.tv_nsec;
    if (m->last_ns != 0) {
        uint64_t wall_ns = now_ns - m->last_ns;
        uint64_t slept_ns = idle_ns - m->last_idle_ns;
        uint64_t turn_us = (wall_ns > slept_ns ? wall_ns - slept_ns : 0) / 1000;
        uint64_t turn_cpu_us = (cpu_ns > m->last_cpu_ns ? cpu_ns - m->last_cpu_ns : 0) / 1000;
        uint64_t now_ms = now_ns / 1000000;
        if (now_ms >= m->window_end_ms) {
            /* A window with no turn at all (impossible while the tick timer
             * runs) would leave an old maximum behind; it only errs long. */
            m->prev_max_us = m->max_us;
            m->max_us = 0;
            m->prev_cpu_max_us = m->cpu_max_us;
            m->cpu_max_us = 0;
            m->window_end_ms = now_ms + NODE_LOOP_TURN_WINDOW_MS;
        }
        if (turn_us > m->max_us)
            m->max_us = turn_us;
        if (turn_cpu_us > m->cpu_max_us)
            m->cpu_max_us = turn_cpu_us;
    }
    m->last_ns = now_ns;
    m->last_idle_ns = idle_ns;
    m->last_cpu_ns = cpu_ns;
}

uint64_t node__loop_turn_max_us(const struct node *n)
{
    return n->meter.max_us > n->meter.prev_max_us ? n->meter.max_us : n->meter.prev_max_us;
}

uint64_t node__loop_turn_cpu_max_us(const struct node *n)
{
    const struct node__loop_meter *m = &n->meter;
    return m->cpu_max_us > m->prev_cpu_max_us ? m->cpu_max_us : m->prev_cpu_max_us;
}

static void on_prepare(uv_prepare_t *h)
{
    struct node *n = h->data;
    loop_meter_turn(n);
    if (n->stopping)
        return;
    admit_dispatch(n);
    process_ready(n);
    if (n->cons.role == RAFT_LEADER) {
        bool flush = n->prop.flush_due;
        n->prop.flush_due = false;
        propose_blocks(n, flush);
        process_ready(n);
    }
}

static void on_tick(uv_timer_t *t)
{
    struct node *n = t->data;
    if (n->stopping)
        return;
    int rc = raft_tick(n->cons.raft);
    if (rc != 0) {
        node__fatal(n, rc == EHR_EDIVERGED ? NODE_EXIT_DIVERGED : NODE_EXIT_FAILURE,
                    "consensus halted", "err=%s", ehr_errname(rc));
        return;
    }
    mempool_expire(&n->pool, node__now_ms());
    node__members_reconcile(n);
    hand_over(n);
    node__replication_tick(n);
    n->api.sweep(n);
    node__metrics_publish(n);
}

/* ---- peer messages ---- */

/*
 * The RPC address to advertise: rpc_listen, with an unspecified host
 * (0.0.0.0, [::]: "every interface") replaced by the host of this member's
 * peer address in the genesis, the name other members reach it by.
 */
static void rpc_advertised(const struct node *n, char *out, size_t size)
{
    const char *listen = n->cfg.rpc_listen;
    const char *port = strrchr(listen, ':');
    EHR_ASSERT(port != NULL); /* checked with the config */
    size_t host_len = (size_t)(port - listen);
    bool any = (host_len == 7 && memcmp(listen, "0.0.0.0", 7) == 0) ||
               (host_len == 4 && memcmp(listen, "[::]", 4) == 0);
    const char *peer = n->peers.members[n->peers.self_index].peer_address;
    const char *peer_port = strrchr(peer, ':');
    if (!any || peer_port == NULL) {
        snprintf(out, size, "%s", listen);
        return;
    }
    snprintf(out, size, "%.*s%s", (int)(peer_port - peer), peer, port);
}

static void send_node_info(struct node *n, const struct node_member *m)
{
    Ehr__V1__NodeInfo info = EHR__V1__NODE_INFO__INIT;
    char
        advertised[NODE_CONFIG_ADDRESS_BYTES_MAX + 8]; /* a longer one is refused by its receiver */
    rpc_advertised(n, advertised, sizeof advertised);
    info.rpc_address = advertised;
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_NODE_INFO;
    pm.node_info = &info;
    node__send_kind(n, m, &pm);
}

struct forward_ctx {
    raft_id from;
    uint64_t request_id;
};

static void forward_answer(struct node *n, raft_id from, uint64_t request_id, int rc,
                           const mempool_admit_result *res)
{
    const struct node_member *m = node__member_by_id(n, from);
    if (request_id == 0 || m == NULL || n->stopping)
        return;
    Ehr__V1__TxForwardResult r = EHR__V1__TX_FORWARD_RESULT__INIT;
    r.request_id = request_id;
    r.error = rc;
    r.reason = (char *)res->reason;
    if (res->hash_known)
        r.tx_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)res->hash};
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_TX_FORWARD_RESULT;
    pm.tx_forward_result = &r;
    node__send_kind(n, m, &pm);
}

static void forward_admitted(struct node *n, void *ctx, int rc, const mempool_admit_result *res)
{
    struct forward_ctx *fc = ctx;
    forward_answer(n, fc->from, fc->request_id, rc, res);
    ehr_free(fc);
}

static void tx_forward_received(struct node *n, struct node_member *from,
                                const Ehr__V1__TxForward *fw)
{
    if (n->cons.role != RAFT_LEADER) {
        mempool_admit_result res;
        memset(&res, 0, sizeof res);
        snprintf(res.reason, sizeof res.reason, "the receiving node is no longer the leader");
        forward_answer(n, from->id, fw->request_id, EHR_ENOTLEADER, &res);
        return;
    }
    struct forward_ctx *fc = ehr_calloc(1, sizeof *fc);
    fc->from = from->id;
    fc->request_id = fw->request_id;
    node__admit(n, fw->envelope.data, fw->envelope.len, forward_admitted, fc);
}

static void peer_kind_received(struct node *n, struct node_member *from, const uint8_t *data,
                               size_t len)
{
    Ehr__V1__PeerMessage *pm = ehr__v1__peer_message__unpack(NULL, len, data);
    if (pm == NULL) {
        ehr_log(EHR_LOG_WARN, "malformed peer message dropped", "peer=\"%s\" bytes=%zu", from->name,
                len);
        return;
    }
    switch (pm->kind_case) {
    case EHR__V1__PEER_MESSAGE__KIND_TX_FORWARD:
        tx_forward_received(n, from, pm->tx_forward);
        break;
    case EHR__V1__PEER_MESSAGE__KIND_TX_FORWARD_RESULT: {
        const Ehr__V1__TxForwardResult *r = pm->tx_forward_result;
        const uint8_t *hash = r->tx_hash.len == EHR_HASH_BYTES ? r->tx_hash.data : NULL;
        n->api.forward_result(n, r->request_id, r->error, r->reason, hash);
        break;
    }
    case EHR__V1__PEER_MESSAGE__KIND_STATE_DIGEST:
        node__digest_received(n, (size_t)(from - n->peers.members), pm->state_digest);
        break;
    case EHR__V1__PEER_MESSAGE__KIND_BLOB_FETCH:
        node__replication_fetch_received(n, from, pm->blob_fetch);
        break;
    case EHR__V1__PEER_MESSAGE__KIND_BLOB_CHUNK:
        node__replication_chunk_received(n, from, pm->blob_chunk);
        break;
    case EHR__V1__PEER_MESSAGE__KIND_NODE_INFO:
        if (node_config_address_check(pm->node_info->rpc_address, NULL) == 0)
            snprintf(from->rpc_address, sizeof from->rpc_address, "%s", pm->node_info->rpc_address);
        break;
    default:
        ehr_log(EHR_LOG_WARN, "peer message of an unknown kind dropped", "peer=\"%s\" kind=%d",
                from->name, (int)pm->kind_case);
        break;
    }
    ehr__v1__peer_message__free_unpacked(pm, NULL);
}

static void on_peer_message(void *user, const uint8_t peer[P2P_KEY_BYTES], const uint8_t *data,
                            size_t len)
{
    struct node *n = user;
    struct node_member *from = member_by_key(n, peer);
    if (from == NULL || n->stopping)
        return;
    struct node_raft_wire_message wm;
    int rc = node_raft_wire_peer_decode(data, len, &wm);
    if (rc == EHR_ENOTFOUND) {
        peer_kind_received(n, from, data, len);
        return;
    }
    if (rc != 0) {
        ehr_log(EHR_LOG_WARN, "malformed consensus message dropped", "peer=\"%s\" err=%s",
                from->name, ehr_errname(rc));
        return;
    }
    if (wm.message.from != from->id) {
        /* An authenticated member speaking for another one. */
        ehr_log(EHR_LOG_WARN, "consensus message with a forged sender dropped", "peer=\"%s\"",
                from->name);
        node_raft_wire_release(&wm);
        return;
    }
    rc = raft_step(n->cons.raft, &wm.message);
    node_raft_wire_release(&wm);
    if (rc == EHR_EPROTO) {
        ehr_log(EHR_LOG_WARN, "consensus message refused", "peer=\"%s\"", from->name);
    } else if (rc != 0) {
        node__fatal(n, rc == EHR_EDIVERGED ? NODE_EXIT_DIVERGED : NODE_EXIT_FAILURE,
                    "consensus halted", "err=%s", ehr_errname(rc));
    }
}

static void on_link_up(void *user, const uint8_t peer[P2P_KEY_BYTES])
{
    struct node *n = user;
    struct node_member *m = member_by_key(n, peer);
    if (m == NULL)
        return;
    m->link_up = true;
    m->link_ups++;
    ehr_log(EHR_LOG_INFO, "peer link up", "peer=\"%s\"", m->name);
    send_node_info(n, m);
    node__digests_link_up(n, m);
}

static void on_link_down(void *user, const uint8_t peer[P2P_KEY_BYTES], int reason, uint64_t unsent)
{
    struct node *n = user;
    struct node_member *m = member_by_key(n, peer);
    if (m == NULL)
        return;
    if (m->link_up)
        ehr_log(EHR_LOG_INFO, "peer link down", "peer=\"%s\" reason=%s unsent=%" PRIu64, m->name,
                ehr_errname(reason), unsent);
    m->link_up = false;
    n->api.link_down(n, m->id);
    node__replication_link_down(n, m);
}

/* ---- start ---- */

static int start_raft(struct node *n, ehr_diag *diag)
{
    ehr_diag why;
    int rc = node_raft_store_open(&n->cons.store, n->ledger, &why);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "cannot read the consensus log: %s (%s)", ehr_strerror(rc),
                      why.msg);
        return rc;
    }
    if (n->cons.store.snap_meta.index != 0) {
        snprintf(n->snap.path, sizeof n->snap.path, "%s/snap-%020" PRIu64 ".mdb", n->snap.dir,
                 n->cons.store.snap_meta.index);
        if (node_raft_store_snapshot_file(&n->cons.store, n->snap.path) != 0) {
            ehr_log(EHR_LOG_WARN, "the recorded snapshot's file is missing; taking a new one",
                    "path=%s", n->snap.path);
            n->snap.path[0] = '\0';
            n->snap.wanted = true;
        }
    }
    struct raft_hard_state hs;
    rc = node_raft_store_hard_state(&n->cons.store, &hs, NULL);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "cannot read the consensus hard state: %s", ehr_strerror(rc));
        return rc;
    }
    if (n->cons.store.last == 0 && n->cons.store.first == 1 && hs.term == 0 && !n->peers.joining) {
        /* A founding member's first start: every one bootstraps the same
         * configuration (the members' ids in ascending order) at index 1.
         * A joining node bootstraps nothing: it has no configuration until
         * the leader's log or snapshot brings one (members.c, M4). */
        struct raft_config conf = {.voter_count = (uint32_t)n->peers.count};
        for (size_t i = 0; i < n->peers.count; i++)
            conf.voters[i] = n->peers.members[i].id;
        for (size_t i = 1; i < n->peers.count; i++)
            for (size_t j = i; j > 0 && conf.voters[j - 1] > conf.voters[j]; j--) {
                raft_id t = conf.voters[j];
                conf.voters[j] = conf.voters[j - 1];
                conf.voters[j - 1] = t;
            }
        uint8_t cbuf[RAFT_CONFIG_ENCODED_BYTES_MAX];
        struct raft_entry boot;
        rc = raft_bootstrap_entry(&conf, cbuf, &boot);
        if (rc == 0)
            rc = node_raft_store_bootstrap(&n->cons.store, &boot, NULL);
        if (rc != 0) {
            ehr_diag_fail(diag, rc, "cannot write the first consensus entry: %s", ehr_strerror(rc));
            return rc;
        }
        ehr_log(EHR_LOG_INFO, "consensus bootstrapped", "voters=%zu", n->peers.count);
    }
    struct raft_options opt;
    raft_options_default(&opt);
    opt.id = n->peers.members[n->peers.self_index].id;
    randombytes_buf(&opt.seed, sizeof opt.seed);
    opt.election_ticks = (uint32_t)n->cfg.limits.election_ticks;
    opt.heartbeat_ticks = (uint32_t)n->cfg.limits.heartbeat_ticks;
    opt.pre_vote = true;
    opt.check_quorum = true;
    opt.applied = n->tip.applied_index;
    node_raft_wire_options_fit(&opt);
    struct raft_storage st;
    node_raft_store_interface(&n->cons.store, &st);
    rc = raft_create(&n->cons.raft, &opt, &st);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "cannot start consensus: %s", ehr_strerror(rc));
        return rc;
    }
    n->cons.applied_index = n->tip.applied_index;
    struct raft_status rs;
    raft_status_get(n->cons.raft, &rs);
    n->cons.term = rs.hard_state.term;
    n->cons.commit_index = rs.hard_state.commit;
    return 0;
}

static int start_p2p(struct node *n, ehr_diag *diag)
{
    p2p_config pc = {.node_key = &n->id->signing,
                     .chain_id = n->chain.chain_id,
                     .callbacks = {.on_message = on_peer_message,
                                   .on_link_up = on_link_up,
                                   .on_link_down = on_link_down},
                     .user = n};
    int rc = p2p_create(n->loop, &pc, &n->peers.p2p);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "cannot set up the peer network: %s", ehr_strerror(rc));
        return rc;
    }
    char listen[NODE_CONFIG_ADDRESS_BYTES_MAX + 1];
    ehr_diag why;
    rc = node_config_listen_resolve(n->cfg.peer_listen, listen, sizeof listen, &why);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "cannot listen for peers on %s: %s", n->cfg.peer_listen, why.msg);
        return rc;
    }
    rc = p2p_listen(n->peers.p2p, listen);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "cannot listen for peers on %s: %s", n->cfg.peer_listen,
                      rc < 0 && rc > -4096 ? uv_strerror(rc) : ehr_strerror(rc));
        return rc;
    }
    rc = node__members_publish(n, n->peers.members, n->peers.count);
    if (rc != 0) {
        ehr_diag_fail(diag, rc,
                      "cannot use the members' peer addresses: %s (each must be HOST:PORT, a host "
                      "name or an IP address)",
                      ehr_strerror(rc));
        return rc;
    }
    return 0;
}

static void config_copy(struct node_config *dst, const struct node_config *src)
{
    *dst = *src;
    dst->data_dir = ehr_strdup(src->data_dir);
    dst->key_file = src->key_file ? ehr_strdup(src->key_file) : NULL;
    dst->passphrase_file = src->passphrase_file ? ehr_strdup(src->passphrase_file) : NULL;
    dst->peer_listen = ehr_strdup(src->peer_listen);
    dst->rpc_listen = ehr_strdup(src->rpc_listen);
    dst->metrics_listen = src->metrics_listen ? ehr_strdup(src->metrics_listen) : NULL;
    dst->tls_cert_file = src->tls_cert_file ? ehr_strdup(src->tls_cert_file) : NULL;
    dst->tls_key_file = src->tls_key_file ? ehr_strdup(src->tls_key_file) : NULL;
    dst->tls_client_ca_file = src->tls_client_ca_file ? ehr_strdup(src->tls_client_ca_file) : NULL;
}

static void free_node(struct node *n);

int node_start(uv_loop_t *loop, const struct node_config *cfg, const ehr_identity *id,
               void (*on_stopped)(void *user, int exit_code), void *user, struct node **out,
               ehr_diag *diag)
{
    struct node *n = ehr_calloc(1, sizeof *n);
    n->loop = loop;
    n->on_stopped = on_stopped;
    n->user = user;
    n->started_ms = uv_now(loop);
    config_copy(&n->cfg, cfg);
    n->id = sodium_malloc(sizeof *n->id);
    EHR_ASSERT(n->id != NULL);
    memcpy(n->id, id, sizeof *id);
    n->waits.commit_waits.prev = n->waits.commit_waits.next = &n->waits.commit_waits;
    n->waits.forwards.prev = n->waits.forwards.next = &n->waits.forwards;
    node__stream_set_init(&n->waits.streams, "block streams", NODE_BLOCK_STREAMS_MAX,
                          NODE_BLOCK_STREAMS_PER_CONNECTION_MAX,
                          NODE_BLOCK_STREAMS_PER_ADDRESS_MAX);
    n->waits.streams_ready.prev = n->waits.streams_ready.next = &n->waits.streams_ready;
    n->applying.digests = ehr_calloc(NODE_DIGEST_WINDOW, sizeof *n->applying.digests);
    n->snap.stage_fd = -1;
    n->peers.wire_cap = NODE_RAFT_WIRE_ENVELOPE_BYTES_MAX + NODE_RAFT_WIRE_BYTES_MAX;
    n->peers.wire_buf = ehr_malloc(n->peers.wire_cap);
    n->prop.batch_cap = (size_t)cfg->limits.block_tx_count;
    if (n->prop.batch_cap < NODE_HANDOVER_PER_TICK)
        n->prop.batch_cap = NODE_HANDOVER_PER_TICK;
    n->prop.batch_envelopes = ehr_calloc(n->prop.batch_cap, sizeof *n->prop.batch_envelopes);
    n->prop.batch_hashes = ehr_calloc(n->prop.batch_cap, sizeof *n->prop.batch_hashes);
    n->applying.hashes = ehr_calloc(EHR_BLOCK_TX_COUNT_MAX, sizeof *n->applying.hashes);
    n->applying.items = ehr_calloc(EHR_BLOCK_TX_COUNT_MAX, sizeof *n->applying.items);
    n->applying.verdicts = ehr_calloc(EHR_BLOCK_TX_COUNT_MAX, sizeof *n->applying.verdicts);
    n->applying.results = ehr_calloc(EHR_BLOCK_TX_COUNT_MAX, CONTRACTS_RESULT_BYTES_MAX);
    n->applying.result_views = ehr_calloc(EHR_BLOCK_TX_COUNT_MAX, sizeof *n->applying.result_views);

    int rc = ledger_open(cfg->data_dir, NULL, &n->ledger, NULL);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "cannot open the ledger in %s: %s", cfg->data_dir,
                      ehr_strerror(rc));
        goto fail;
    }
    rc = ledger_chain_get(n->ledger, &n->chain, NULL);
    if (rc == 0)
        rc = ledger_tip_get(n->ledger, &n->tip, NULL);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "%s holds no chain (create it with `ehrctl init`)", cfg->data_dir);
        goto fail;
    }
    rc = node__members_load(n, diag);
    if (rc != 0)
        goto fail;
    mempool_config mc = {.chain_id = n->chain.chain_id,
                         .tx_count_max = (uint32_t)cfg->limits.mempool_tx_count,
                         .bytes_max = cfg->limits.mempool_bytes,
                         .ledger_lookup = mempool_ledger_lookup,
                         .ledger_lookup_ctx = n->ledger};
    rc = mempool_init(&n->pool, &mc);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "cannot set up the mempool: %s", ehr_strerror(rc));
        goto fail;
    }
    rc = sigverify_create(n->chain.chain_id, sigverify_threads_default(), &n->applying.sigv);
    if (rc != 0) {
        ehr_diag_fail(diag, rc, "cannot start the signature threads: %s", ehr_strerror(rc));
        goto fail;
    }
    if (strlen(cfg->data_dir) + sizeof "/snapshots" > sizeof n->snap.dir) {
        rc = EHR_EINVAL;
        ehr_diag_fail(diag, rc, "the data directory's path is over %zu bytes",
                      sizeof n->snap.dir - sizeof "/snapshots");
        goto fail;
    }
    snprintf(n->snap.dir, sizeof n->snap.dir, "%s/snapshots", cfg->data_dir);
    snprintf(n->snap.creating, sizeof n->snap.creating, "%s/creating.mdb", n->snap.dir);
    snprintf(n->snap.stage_path, sizeof n->snap.stage_path, "%s/snapshot-incoming.mdb",
             cfg->data_dir);
    if (mkdir(n->snap.dir, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        ehr_diag_fail(diag, rc, "cannot create %s: %s", n->snap.dir, strerror(errno));
        goto fail;
    }
    unlink(n->snap.creating); /* left by a node that stopped mid-copy */
    unlink(n->snap.stage_path);
    /* ... and by a restore that stopped mid-copy (ehrctl restore holds
     * LOCK as we do: none runs now). */
    char restore_stage[sizeof n->snap.stage_path];
    snprintf(restore_stage, sizeof restore_stage, "%s/" NODE_BACKUP_STAGE_NAME, cfg->data_dir);
    unlink(restore_stage);
    if ((rc = start_raft(n, diag)) != 0 || (rc = start_p2p(n, diag)) != 0 ||
        (rc = node__service_start(n, diag)) != 0 || (rc = node__metrics_start(n, diag)) != 0)
        goto fail;
    uv_timer_init(loop, &n->tick_timer);
    uv_timer_init(loop, &n->flush_timer);
    uv_prepare_init(loop, &n->prepare);
    uv_idle_init(loop, &n->waits.stream_turn);
    uv_async_init(loop, &n->snap.async, node__on_snapshot_done);
    n->snap.async.data = n;
    n->tick_timer.data = n->flush_timer.data = n->prepare.data = n;
    n->waits.stream_turn.data = n;
    /* The loop meter needs the time the loop sleeps in poll; libuv counts
     * it only when asked. Only a libuv too old to know the option refuses. */
    int mrc = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
    EHR_ASSERT(mrc == 0);
    uv_timer_start(&n->tick_timer, on_tick, cfg->limits.raft_tick_ms, cfg->limits.raft_tick_ms);
    uv_prepare_start(&n->prepare, on_prepare);
    {
        char hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
        ehr_hex_encode(hex, n->id->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES);
        ehr_log(EHR_LOG_INFO, "node started",
                "chain=%s node=%s name=\"%s\" members=%zu tip=%" PRIu64 " applied=%" PRIu64
                " peer_listen=%s rpc_listen=%s version=\"%s\"",
                n->chain.chain_id, hex, n->peers.members[n->peers.self_index].name, n->peers.count,
                n->tip.height, n->tip.applied_index, cfg->peer_listen, cfg->rpc_listen,
                ehr_version());
    }
    node__blob_erase_start(n); /* once nothing can fail: no job is out on a failed start */
    *out = n;
    return 0;
fail:
    /* Nothing is running on the loop yet but p2p and rpc, which close
     * asynchronously: run them down here. */
    n->stopping = true;
    if (n->rpc != NULL)
        rpc_server_close(n->rpc, NULL, NULL);
    if (n->peers.p2p != NULL)
        p2p_close(n->peers.p2p, NULL);
    n->rpc = NULL;
    n->peers.p2p = NULL;
    uv_run(loop, UV_RUN_NOWAIT);
    uv_run(loop, UV_RUN_DEFAULT);
    free_node(n);
    return rc != 0 ? rc : EHR_EINVAL;
}

void node_test_faults_set(struct node *n, const struct node_test_faults *faults)
{
    EHR_ASSERT(faults != NULL);
    n->applying.test_faults = *faults;
}

uint16_t node_peer_port(const struct node *n)
{
    uint16_t port = 0;
    p2p_listen_port(n->peers.p2p, &port);
    return port;
}

uint16_t node_rpc_port(const struct node *n)
{
    return rpc_server_port(n->rpc);
}

/* ---- stop ---- */

static void free_node(struct node *n)
{
    node__metrics_stop(n); /* joins the HTTP thread (it holds nothing of the node) */
    if (n->cons.raft != NULL)
        raft_destroy(n->cons.raft);
    node_raft_store_close(&n->cons.store);
    if (n->pool.slots != NULL)
        mempool_destroy(&n->pool);
    if (n->ledger != NULL)
        ledger_close(n->ledger);
    if (n->id != NULL) {
        ehr_identity_wipe(n->id);
        sodium_free(n->id);
    }
    node_config_free(&n->cfg);
    rpc_tls_free(n->rpc_tls); /* after the RPC server, which borrowed it */
    node__reflection_free(n); /* after the RPC server: its streams are gone */
    ehr_free(n->applying.digests);
    ehr_free(n->peers.wire_buf);
    ehr_free(n->prop.batch_envelopes);
    ehr_free(n->prop.batch_hashes);
    ehr_free(n->applying.hashes);
    ehr_free(n->applying.items);
    ehr_free(n->applying.verdicts);
    ehr_free(n->applying.results);
    ehr_free(n->applying.result_views);
    sigverify_destroy(n->applying.sigv);
    node__blob_erase_close(n);
    node__blob_service_close(n);
    ehr_free(n);
}

void node__work_returned(struct node *n)
{
    if (n->stopping)
        maybe_free(n);
}

/* Free the node once every handle is closed and no signature check or
 * blob deletion is out. */
static void maybe_free(struct node *n)
{
    if (n->closing > 0 || n->adm.inflight > 0 || n->blobs.erase.working ||
        node__replication_busy(n))
        return;
    int code = n->exit_code;
    void (*cb)(void *, int) = n->on_stopped;
    void *user = n->user;
    ehr_log(EHR_LOG_INFO, "node stopped", "exit=%d", code);
    free_node(n);
    if (cb != NULL)
        cb(user, code);
}

void node__maybe_free(struct node *n)
{
    maybe_free(n);
}

static void closed_one(struct node *n)
{
    --n->closing;
    maybe_free(n);
}

static void on_handle_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

static void on_rpc_closed(struct rpc_server *s, void *data)
{
    (void)s;
    closed_one(data);
}

static void on_p2p_closed(void *user)
{
    closed_one(user);
}

void node_stop(struct node *n)
{
    if (n->stopping)
        return;
    n->stopping = true;
    ehr_log(EHR_LOG_INFO, "node stopping", "applied=%" PRIu64 " tip=%" PRIu64,
            n->cons.applied_index, n->tip.height);
    admit_drain(n);
    node__replication_stop(n);
    if (n->api.drain != NULL)
        n->api.drain(n); /* NULL when the API never started */
    node__snapshot_join(n);
    if (n->snap.stage_fd >= 0) {
        close(n->snap.stage_fd);
        n->snap.stage_fd = -1;
        unlink(n->snap.stage_path);
    }
    n->closing = 8;
    rpc_server_close(n->rpc, on_rpc_closed, n);
    p2p_close(n->peers.p2p, on_p2p_closed);
    uv_close((uv_handle_t *)&n->tick_timer, on_handle_closed);
    uv_close((uv_handle_t *)&n->flush_timer, on_handle_closed);
    uv_close((uv_handle_t *)&n->prepare, on_handle_closed);
    uv_close((uv_handle_t *)&n->waits.stream_turn, on_handle_closed);
    uv_close((uv_handle_t *)&n->snap.async, on_handle_closed);
    /* The eighth: this function's own reference, dropped last so that no
     * callback frees the node while it runs. */
    closed_one(n);
}
