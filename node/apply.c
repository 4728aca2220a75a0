/*
 * apply.c - what a node does with each committed entry: apply a block to
 * the ledger (parsed once, its view and hashes handed on), the refusal
 * policy for a block the ledger refuses (deterministic refusals are skipped
 * identically on every node, anything else stops this node), and the state
 * digests nodes exchange after each block to catch a divergent state, and
 * the consent contract's work at apply: every transaction of every block
 * run through contracts/ (signatures included) on every node.
 *
 * Not here: proposing blocks (node.c), the API's waiters (service.c, told
 * through the node's hooks), persistence of the Raft log (raft_store.c).
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "ehr/v1/p2p.pb-c.h"
#include "node_internal.h"

/* ---- state digests ---- */

static void put_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

/* SHA-256 over what a block's transactions did: each state write (key,
 * removed or not, value, lengths first) in the ledger's order, then each
 * result, lengths first: the same bytes on every node that applied alike. */
static void effects_hash(const ledger_state_write *writes, size_t write_count,
                         const ledger_bytes *results, size_t result_count,
                         uint8_t out[EHR_HASH_BYTES])
{
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    uint8_t n8[8];
    for (size_t i = 0; i < write_count; i++) {
        const ledger_state_write *w = &writes[i];
        put_be64(n8, w->key_len);
        crypto_hash_sha256_update(&h, n8, 8);
        crypto_hash_sha256_update(&h, w->key, w->key_len);
        uint8_t removed = w->remove ? 1 : 0;
        crypto_hash_sha256_update(&h, &removed, 1);
        put_be64(n8, w->remove ? 0 : w->value_len);
        crypto_hash_sha256_update(&h, n8, 8);
        if (!w->remove && w->value_len > 0)
            crypto_hash_sha256_update(&h, w->value, w->value_len);
    }
    put_be64(n8, result_count);
    crypto_hash_sha256_update(&h, n8, 8);
    for (size_t i = 0; i < result_count; i++) {
        put_be64(n8, results[i].len);
        crypto_hash_sha256_update(&h, n8, 8);
        if (results[i].len > 0)
            crypto_hash_sha256_update(&h, results[i].data, results[i].len);
    }
    crypto_hash_sha256_final(&h, out);
}

static void digest_compute(const uint8_t block_hash[EHR_HASH_BYTES], uint64_t height,
                           uint64_t raft_index, const uint8_t effects[EHR_HASH_BYTES],
                           uint8_t out[EHR_HASH_BYTES])
{
    static const char domain[] = "ehrchain/state-digest/v2";
    uint8_t in[sizeof domain - 1 + 8 + EHR_HASH_BYTES + 8 + EHR_HASH_BYTES];
    size_t at = 0;
    memcpy(in, domain, sizeof domain - 1);
    at += sizeof domain - 1;
    put_be64(in + at, height);
    at += 8;
    memcpy(in + at, block_hash, EHR_HASH_BYTES);
    at += EHR_HASH_BYTES;
    put_be64(in + at, raft_index);
    at += 8;
    memcpy(in + at, effects, EHR_HASH_BYTES);
    at += EHR_HASH_BYTES;
    EHR_ASSERT(at == sizeof in);
    ehr_sha256(out, in, at);
}

static struct node__digest_slot *digest_slot(struct node *n, uint64_t height, bool create)
{
    struct node__digest_slot *s = &n->applying.digests[height % NODE_DIGEST_WINDOW];
    if (s->height == height)
        return s;
    if (!create || height < s->height)
        return NULL;
    memset(s, 0, sizeof *s);
    s->height = height;
    return s;
}

/* Compare this node's digest at slot S with the peers'. */
static void digest_judge(struct node *n, struct node__digest_slot *s)
{
    if (!s->own_set || s->judged)
        return;
    /* The quorum of the members of the moment (a removed node's own slot
     * is not one; a removed peer has no slot and its digests are gone). */
    size_t quorum = node__members_current(n) / 2 + 1;
    for (size_t i = 0; i < n->peers.count; i++) {
        if (!s->peer_set[i] || sodium_memcmp(s->peer[i], s->own, EHR_HASH_BYTES) == 0)
            continue;
        size_t same = 0;
        for (size_t j = 0; j < n->peers.count; j++)
            if (s->peer_set[j] && sodium_memcmp(s->peer[j], s->peer[i], EHR_HASH_BYTES) == 0)
                same++;
        char mine[2 * EHR_HASH_BYTES + 1], theirs[2 * EHR_HASH_BYTES + 1];
        ehr_hex_encode(mine, s->own, EHR_HASH_BYTES);
        ehr_hex_encode(theirs, s->peer[i], EHR_HASH_BYTES);
        if (same >= quorum) {
            s->judged = true;
            node__fatal(n, NODE_EXIT_DIVERGED,
                        "STATE DIVERGED: this node's state differs from a quorum's; stopping",
                        "height=%" PRIu64 " own=%s quorum=%s agreeing=%zu", s->height, mine, theirs,
                        same);
            return;
        }
        ehr_log(EHR_LOG_WARN, "a peer's state digest differs from ours",
                "height=%" PRIu64 " peer=\"%s\" own=%s theirs=%s", s->height,
                n->peers.members[i].name, mine, theirs);
    }
}

/* Send our digest of slot S to M, or to every peer with a live link when M
 * is NULL. Best effort, like every peer message: a peer without a live link
 * gets it when the link comes up, if the height is still in the window
 * (node__digests_link_up). */
static void digest_send(struct node *n, const struct node_member *m,
                        const struct node__digest_slot *s)
{
    EHR_ASSERT(s->own_set);
    Ehr__V1__StateDigest sd = EHR__V1__STATE_DIGEST__INIT;
    sd.height = s->height;
    sd.digest = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)s->own};
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_STATE_DIGEST;
    pm.state_digest = &sd;
    node__send_kind(n, m, &pm);
}

static void digest_publish(struct node *n, uint64_t height, const uint8_t digest[EHR_HASH_BYTES])
{
    struct node__digest_slot *s = digest_slot(n, height, true);
    memcpy(s->own, digest, EHR_HASH_BYTES);
    s->own_set = true;
    digest_send(n, NULL, s);
    digest_judge(n, s);
}

void node__digests_link_up(struct node *n, const struct node_member *m)
{
    EHR_ASSERT(m != NULL);
    EHR_ASSERT(!m->self);
    for (size_t i = 0; i < NODE_DIGEST_WINDOW; i++) {
        const struct node__digest_slot *s = &n->applying.digests[i];
        if (s->height != 0 && s->own_set)
            digest_send(n, m, s);
    }
}

void node__digest_received(struct node *n, size_t member, const Ehr__V1__StateDigest *sd)
{
    if (sd->digest.len != EHR_HASH_BYTES || sd->height == 0)
        return;
    /* Only heights near ours are kept: a digest far ahead waits in no queue. */
    if (sd->height + NODE_DIGEST_WINDOW <= n->tip.height ||
        sd->height > n->tip.height + NODE_DIGEST_WINDOW / 2)
        return;
    struct node__digest_slot *s = digest_slot(n, sd->height, true);
    if (s == NULL)
        return;
    memcpy(s->peer[member], sd->digest.data, EHR_HASH_BYTES);
    s->peer_set[member] = true;
    digest_judge(n, s);
}

/* ---- applying committed entries ---- */

static bool deterministic_refusal(int rc)
{
    return rc == EHR_ELINK || rc == EHR_EEXIST || rc == EHR_EBADSIG || rc == EHR_EDENIED ||
           rc == EHR_EINVAL || rc == EHR_ECORRUPT || rc == EHR_ETOOBIG || rc == EHR_ETRUNCATED ||
           rc == EHR_ECHAIN || rc == EHR_EEXPIRED;
}

/*
 * Run the block's transactions through the consent contract's rules on a
 * view of the state as of the tip: signatures from the verdicts (checked
 * here if unknown, on the verification threads and this one), then each
 * transaction in block order in a write set of its own. On success *OUT is
 * the block's write set (end it) and n->applying.result_views[0..count) the
 * encoded results. Returns 0 or a state error with DIAG (a node that cannot
 * read its state, or holds a value its rules did not write, cannot go on).
 */
static int contracts_run(struct node *n, const ledger_block_view *v, contracts_block **out,
                         ehr_diag *diag)
{
    uint32_t count = v->header.tx_count;
    struct node__applying *ap = &n->applying;
    for (uint32_t i = 0; i < count; i++)
        ap->items[i] = (struct sigverify_item){.envelope = v->bytes + v->txs[i].offset,
                                               .len = v->txs[i].length,
                                               .hash = ap->hashes[i]};
    sigverify_batch(ap->sigv, ap->items, count, ap->verdicts);

    struct node__state_view sv;
    struct contracts_state state = node__state_view(&sv, n->ledger);
    struct contracts_block_ctx ctx = {.height = v->header.height, .time_ms = v->header.time_ms};
    memcpy(ctx.proposer, v->header.proposer, EHR_SCHNORR_PUBLIC_BYTES);
    snprintf(ctx.chain_id, sizeof ctx.chain_id, "%s", n->chain.chain_id);
    contracts_block *b;
    int rc = contracts_block_begin(&state, &ctx, &b);
    EHR_ASSERT(rc == 0); /* aborts only on out-of-memory */
    for (uint32_t i = 0; i < count; i++) {
        struct contracts_tx tx = {.envelope = ap->items[i].envelope,
                                  .len = ap->items[i].len,
                                  .hash = ap->hashes[i],
                                  .position = i,
                                  .sig = ap->verdicts[i]};
        struct contracts_tx_result r;
        rc = contracts_apply_tx(b, &tx, &r);
        if (rc != 0) {
            contracts_block_end(b);
            return ehr_diag_fail(diag, rc, "transaction %u of block %" PRIu64 ": %s%s%s", i,
                                 v->header.height, ehr_strerror(rc), sv.diag.msg[0] ? ": " : "",
                                 sv.diag.msg);
        }
        uint8_t *slot = ap->results + (size_t)i * CONTRACTS_RESULT_BYTES_MAX;
        ap->result_views[i] =
            (ledger_bytes){.data = slot, .len = contracts_tx_result_encode(&r, slot)};
        if (r.code != EHR__V1__TX_RESULT_CODE__TX_RESULT_OK)
            ehr_log(EHR_LOG_INFO, "transaction refused at apply",
                    "height=%" PRIu64 " position=%u code=%d reason=\"%s\"", v->header.height, i,
                    r.code, r.reason);
    }
    *out = b;
    return 0;
}

int node__contracts_check(struct node *n, const uint8_t *envelope, size_t len,
                          const uint8_t hash[EHR_HASH_BYTES], ehr_diag *diag)
{
    struct node__state_view sv;
    struct contracts_state state = node__state_view(&sv, n->ledger);
    uint64_t now = node__now_ms();
    struct contracts_block_ctx ctx = {.height = n->tip.height + 1,
                                      .time_ms = now > n->tip.time_ms ? now : n->tip.time_ms};
    memcpy(ctx.proposer, n->id->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES);
    snprintf(ctx.chain_id, sizeof ctx.chain_id, "%s", n->chain.chain_id);
    contracts_block *b;
    int rc = contracts_block_begin(&state, &ctx, &b);
    EHR_ASSERT(rc == 0); /* aborts only on out-of-memory */
    struct contracts_tx tx = {
        .envelope = envelope, .len = len, .hash = hash, .position = 0, .sig = CONTRACTS_SIG_VALID};
    struct contracts_tx_result r;
    rc = contracts_apply_tx(b, &tx, &r);
    contracts_block_end(b);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot read the state: %s", sv.diag.msg);
    switch (r.code) {
    case EHR__V1__TX_RESULT_CODE__TX_RESULT_OK:
        return 0;
    case EHR__V1__TX_RESULT_CODE__TX_RESULT_NOT_AUTHORIZED:
        return ehr_diag_fail(diag, EHR_EDENIED, "%s", r.reason);
    case EHR__V1__TX_RESULT_CODE__TX_RESULT_NOT_FOUND:
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "%s", r.reason);
    case EHR__V1__TX_RESULT_CODE__TX_RESULT_CONFLICT:
    case EHR__V1__TX_RESULT_CODE__TX_RESULT_REFUSED:
        return ehr_diag_fail(diag, EHR_EREFUSED, "%s", r.reason);
    case EHR__V1__TX_RESULT_CODE__TX_RESULT_BAD_SIGNATURE:
        return ehr_diag_fail(diag, EHR_EBADSIG, "%s", r.reason);
    default:
        return ehr_diag_fail(diag, EHR_EINVAL, "%s", r.reason);
    }
}

/* Apply the block of E: its transactions through the rules, then the block
 * with their writes in one append; a block every node refuses alike is
 * skipped (its index recorded as applied). Returns 0, or an error this node
 * cannot go on from with why in DIAG (may be NULL). */
/* Tell replication about each record entry a block wrote (replication.c):
 * a new record's blob is fetched by the nodes that should hold it. */
static void records_written(struct node *n, const ledger_state_write *writes, size_t count)
{
    const size_t prefix = sizeof CONTRACTS_PREFIX_RECORD - 1;
    for (size_t i = 0; i < count; i++)
        if (!writes[i].remove && writes[i].key_len == prefix + EHR_HASH_BYTES &&
            memcmp(writes[i].key, CONTRACTS_PREFIX_RECORD, prefix) == 0)
            node__replication_record_written(n, writes[i].key + prefix);
}

static int apply_block(struct node *n, const struct raft_entry *e, ehr_diag *diag)
{
    ehr_diag why = {{0}};
    ledger_block_view v;
    int rc = ledger_block_parse(e->data, e->size, &v, &why);
    bool parsed = rc == 0;
    for (uint32_t i = 0; parsed && rc == 0 && i < v.header.tx_count; i++) {
        ledger_tx_view tv;
        rc = ledger_tx_envelope_parse(v.bytes + v.txs[i].offset, v.txs[i].length, &tv, &why);
        if (rc == 0)
            ledger_tx_hash(tv.body, tv.body_len, n->applying.hashes[i]);
    }
    contracts_block *cb = NULL;
    bool members_written = false;
    const ledger_state_write *writes = NULL;
    size_t write_count = 0;
    if (parsed && rc == 0) {
        rc = contracts_run(n, &v, &cb, diag);
        if (rc != 0) {
            ledger_block_view_release(&v);
            return rc; /* not a refusal: this node cannot read its own state */
        }
        write_count = contracts_block_writes(cb, &writes);
        for (size_t i = 0; i < write_count && !members_written; i++)
            members_written = writes[i].key_len >= sizeof LEDGER_MEMBER_KEY_PREFIX - 1 &&
                              memcmp(writes[i].key, LEDGER_MEMBER_KEY_PREFIX,
                                     sizeof LEDGER_MEMBER_KEY_PREFIX - 1) == 0;
        /* The ledger takes the parsed view and the hashes: parsed once. */
        ledger_append req = {.block = e->data,
                             .block_len = e->size,
                             .view = &v,
                             .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])n->applying.hashes,
                             .writes = writes,
                             .write_count = write_count,
                             .results = n->applying.result_views,
                             .result_count = v.header.tx_count,
                             .applied_index = e->index};
        uint64_t append_ns = uv_hrtime();
        rc = ledger_append_block(n->ledger, &req, &why);
        if (rc == 0) /* a block refused by its checks writes nothing */
            node__metrics_sync_write(n, true, uv_hrtime() - append_ns);
    }
    if (rc != 0) {
        contracts_block_end(cb);
        if (parsed)
            ledger_block_view_release(&v);
        if (!deterministic_refusal(rc)) /* a full disk or an I/O error: this node cannot go on */
            return ehr_diag_fail(diag, rc, "%s", why.msg);
        /* Every node refuses the same entry the same way (the checks depend
         * only on the entry and the ledger, which are equal everywhere), so
         * the entry is skipped everywhere: record it as applied. */
        ehr_log(EHR_LOG_ERROR, "committed block refused; skipped on every node",
                "index=%" PRIu64 " err=%s why=\"%s\"", e->index, ehr_errname(rc), why.msg);
        int rc2 = ledger_applied_index_set(n->ledger, e->index, diag);
        if (rc2 != 0)
            return rc2;
        n->tip.applied_index = e->index;
        node__proposals_applied(n, e->index, true);
        return 0;
    }
    uint32_t count = v.header.tx_count;
    n->tip.height = v.header.height;
    memcpy(n->tip.hash, v.hash, EHR_HASH_BYTES);
    n->tip.time_ms = v.header.time_ms;
    n->tip.applied_index = e->index;
    n->tip.tx_count += count;
    uint8_t effects[EHR_HASH_BYTES], digest[EHR_HASH_BYTES];
    effects_hash(writes, write_count, n->applying.result_views, count, effects);
    digest_compute(v.hash, v.header.height, e->index, effects, digest);
    node__blob_erase_block(n, writes, write_count); /* the blobs of records it erased */
    records_written(n, writes, write_count);
    contracts_block_end(cb);
    ledger_block_view_release(&v);
    mempool_remove_committed(&n->pool, (const uint8_t(*)[EHR_HASH_BYTES])n->applying.hashes, count);
    node__proposals_applied(n, e->index, false);
    node__metrics_block_applied(n, e->term, e->index, count);
    n->api.block_applied(n, n->tip.height, (const uint8_t(*)[EHR_HASH_BYTES])n->applying.hashes,
                         n->applying.result_views, count);
    if (n->applying.test_faults.digest_fault_height != 0 &&
        n->applying.test_faults.digest_fault_height == n->tip.height)
        digest[0] ^= 1; /* injected by a test (node_test_faults_set) */
    digest_publish(n, n->tip.height, digest);
    if (members_written)
        node__members_changed(n); /* members.c, M1 */
    node__members_join_check(n);
    return 0;
}

/* A configuration entry: say what it is (the core took it in when it was
 * appended; applying it is recording its index). */
static void config_applied(const struct raft_entry *e)
{
    struct raft_config c;
    if (raft_config_decode(e->data, e->size, &c) != 0)
        return; /* the core decoded it when appended: cannot happen */
    ehr_log(EHR_LOG_INFO, "consensus configuration applied",
            "index=%" PRIu64 " voters=%" PRIu32 " learners=%" PRIu32, e->index, c.voter_count,
            c.learner_count);
}

int node__apply_committed(struct node *n, const struct raft_entry *entries, size_t count)
{
    for (size_t i = 0; i < count && !n->stopping; i++) {
        const struct raft_entry *e = &entries[i];
        if (e->index <= n->cons.applied_index)
            continue;
        int rc;
        ehr_diag why;
        if (e->type == RAFT_ENTRY_NORMAL) {
            rc = apply_block(n, e, &why);
        } else {
            if (e->type == RAFT_ENTRY_CONFIG)
                config_applied(e);
            rc = ledger_applied_index_set(n->ledger, e->index, &why);
            if (rc == 0)
                n->tip.applied_index = e->index;
        }
        if (rc != 0) {
            node__fatal(n, NODE_EXIT_FAILURE, "cannot apply a committed entry",
                        "index=%" PRIu64 " err=%s why=\"%s\"", e->index, ehr_errname(rc), why.msg);
            return rc;
        }
        n->cons.applied_index = e->index;
    }
    return 0;
}
