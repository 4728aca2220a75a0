/*
 * apply.c - what a node does with each committed entry: apply a block to
 * the ledger (parsed once, its view and hashes handed on), the refusal
 * policy for a block the ledger refuses (deterministic refusals are skipped
 * identically on every node, anything else stops this node), and the state
 * digests nodes exchange after each block to catch a divergent state. The
 * consent contract's work at apply lands here.
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

static void digest_compute(const uint8_t block_hash[EHR_HASH_BYTES], uint64_t height,
                           uint64_t raft_index, uint8_t out[EHR_HASH_BYTES])
{
    /* No transaction writes world state yet (contracts/ is not built), so
     * the writes' hash is that of the empty list. */
    uint8_t writes[EHR_HASH_BYTES];
    ehr_sha256(writes, "", 0);
    static const char domain[] = "ehrchain/state-digest/v1";
    uint8_t in[sizeof domain - 1 + 8 + EHR_HASH_BYTES + 8 + EHR_HASH_BYTES];
    size_t at = 0;
    memcpy(in, domain, sizeof domain - 1);
    at += sizeof domain - 1;
    for (int i = 7; i >= 0; i--)
        in[at++] = (uint8_t)(height >> (8 * i));
    memcpy(in + at, block_hash, EHR_HASH_BYTES);
    at += EHR_HASH_BYTES;
    for (int i = 7; i >= 0; i--)
        in[at++] = (uint8_t)(raft_index >> (8 * i));
    memcpy(in + at, writes, EHR_HASH_BYTES);
    at += EHR_HASH_BYTES;
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
    size_t quorum = n->peers.count / 2 + 1;
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

static void digest_publish(struct node *n, uint64_t height, const uint8_t digest[EHR_HASH_BYTES])
{
    struct node__digest_slot *s = digest_slot(n, height, true);
    memcpy(s->own, digest, EHR_HASH_BYTES);
    s->own_set = true;
    Ehr__V1__StateDigest sd = EHR__V1__STATE_DIGEST__INIT;
    sd.height = height;
    sd.digest = (ProtobufCBinaryData){EHR_HASH_BYTES, s->own};
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_STATE_DIGEST;
    pm.state_digest = &sd;
    node__send_kind(n, NULL, &pm);
    digest_judge(n, s);
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

/* Append the block of E; a block every node refuses alike is skipped (its
 * index recorded as applied). Returns 0, or an error this node cannot go on
 * from with why in DIAG (may be NULL). */
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
    if (parsed && rc == 0) {
        /* The ledger takes the parsed view and the hashes: parsed once. */
        /* One result per transaction: the empty one (OK) for now; the
         * consent contract's results for the rules it applies go here. */
        for (uint32_t i = 0; i < v.header.tx_count; i++)
            n->applying.results[i] = (ledger_bytes){NULL, 0};
        ledger_append req = {.block = e->data,
                             .block_len = e->size,
                             .view = &v,
                             .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])n->applying.hashes,
                             .results = n->applying.results,
                             .result_count = v.header.tx_count,
                             .applied_index = e->index};
        rc = ledger_append_block(n->ledger, &req, &why);
    }
    if (rc != 0) {
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
    uint8_t digest[EHR_HASH_BYTES];
    digest_compute(v.hash, v.header.height, e->index, digest);
    ledger_block_view_release(&v);
    mempool_remove_committed(&n->pool, (const uint8_t(*)[EHR_HASH_BYTES])n->applying.hashes, count);
    node__proposals_applied(n, e->index, false);
    n->api.block_applied(n, n->tip.height, (const uint8_t(*)[EHR_HASH_BYTES])n->applying.hashes,
                         count);
    if (n->applying.test_faults.digest_fault_height != 0 &&
        n->applying.test_faults.digest_fault_height == n->tip.height)
        digest[0] ^= 1; /* injected by a test (node_test_faults_set) */
    digest_publish(n, n->tip.height, digest);
    return 0;
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
