/*
 * members.c - the chain's members as this node runs with them: read from
 * the world state at start (or, on a node joining a running chain, from
 * the join file `ehrctl init --join` wrote), read again whenever an
 * applied block changes them or a snapshot replaces the state, handed to
 * the peer links, and carried into the consensus configuration by the
 * leader.
 *
 * The rules (node/README.md, "Membership on a live network"):
 *
 * M1. The members this node links with are those of its applied state. A
 *     member the state gains is dialled on the block that admitted it. A
 *     member the state no longer holds stays linked ("leaving") only while
 *     the consensus configuration in force here still holds it, so that
 *     the consensus core never counts a voter this node cannot reach. A
 *     removal takes effect on the leader when it appends it, so its
 *     quorum never needs the removed node (a removal with another voter
 *     of four down completes either way: test_membership); the links
 *     outlive the block by one step of the leader at most. Once the
 *     configuration drops it, p2p closes its links and refuses
 *     its handshakes from then on. A leaving member counts for nothing
 *     else: not a current member, never added back to the configuration.
 * M2. The consensus configuration follows the applied member set, and only
 *     the leader changes it, one change at a time (raft_propose_config
 *     refuses a second while one is uncommitted): a voter or learner that
 *     is no longer a member leaves first; then a member the configuration
 *     lacks enters as a learner; then a learner that has caught up (it
 *     holds all but NODE_PROMOTE_LAG_MAX of the entries known committed,
 *     and the core's promote_lag_max of the log) becomes a voter.
 * M3. The leader acts only once it has applied every entry before its
 *     term's first (prop.open). Every configuration change in its log was
 *     proposed after the block that made it was applied, so that block is
 *     applied here too: a new leader never undoes a change its predecessor
 *     made for a block it has not yet applied.
 * M4. A joining node never bootstraps a configuration (node.c,
 *     start_raft): it has none, so it never campaigns, and waits for the
 *     leader's log or snapshot. It links with the join file's members
 *     until its applied state holds its own key; from then on the state's
 *     members count (M1). Once its ledger holds the block at the join
 *     file's height, that block's hash must be the one the file recorded,
 *     or the node stops: the node the file came from was not on this
 *     chain. Then the file is removed.
 * M5. Members are kept in node-key order (the ledger's scan order); a
 *     node's slot may move when the set changes, and the state digests of
 *     the window move with it (digests are indexed by slot).
 *
 * Not here: the governance rules that admit and remove members
 * (contracts/), the consensus core's configuration changes (consensus/).
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "datadir.h"
#include "node_internal.h"

_Static_assert((int)NODE_MEMBERS_MAX == (int)CONTRACTS_NODES_MAX,
               "the contract admits as many members as a configuration holds");
_Static_assert((int)NODE_DATADIR_JOIN_MEMBERS_MAX == (int)NODE_MEMBERS_MAX,
               "a join file holds the members a node runs with");

/* A member set being read: sorted by node key. */
struct member_list {
    struct node_member m[NODE_MEMBERS_MAX];
    size_t count;
    int err;
};

raft_id node__member_id(const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES])
{
    raft_id id = 0;
    for (int i = 0; i < 8; i++)
        id = id << 8 | key[i];
    return id;
}

/* Add a member to L in key order. Returns 0, EHR_ETOOBIG (L is full) or
 * EHR_EEXIST (the key is there). */
static int list_add(struct member_list *l, const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES],
                    const char *name, const char *peer_address)
{
    size_t at = 0;
    while (at < l->count && memcmp(l->m[at].key, key, EHR_SCHNORR_PUBLIC_BYTES) < 0)
        at++;
    if (at < l->count && memcmp(l->m[at].key, key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
        return EHR_EEXIST;
    if (l->count == NODE_MEMBERS_MAX)
        return EHR_ETOOBIG;
    memmove(&l->m[at + 1], &l->m[at], (l->count - at) * sizeof l->m[0]);
    struct node_member *nm = &l->m[at];
    memset(nm, 0, sizeof *nm);
    memcpy(nm->key, key, EHR_SCHNORR_PUBLIC_BYTES);
    nm->id = node__member_id(key);
    snprintf(nm->name, sizeof nm->name, "%s", name);
    snprintf(nm->peer_address, sizeof nm->peer_address, "%s", peer_address);
    l->count++;
    return 0;
}

static int member_row(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                      size_t value_len)
{
    (void)key, (void)key_len;
    struct member_list *l = ctx;
    Ehr__V1__Member *m = ehr__v1__member__unpack(NULL, value_len, value);
    if (m == NULL || m->node_key.len != EHR_SCHNORR_PUBLIC_BYTES) {
        if (m != NULL)
            ehr__v1__member__free_unpacked(m, NULL);
        l->err = EHR_ECORRUPT;
        return EHR_ECORRUPT;
    }
    int rc = list_add(l, m->node_key.data, m->name, m->peer_address);
    ehr__v1__member__free_unpacked(m, NULL);
    if (rc != 0) {
        l->err = rc == EHR_EEXIST ? EHR_ECORRUPT : rc;
        return l->err;
    }
    return 0;
}

/* The members of the ledger's world state, into L. */
static int list_from_ledger(struct node *n, struct member_list *l, ehr_diag *diag)
{
    memset(l, 0, sizeof *l);
    long got = ledger_state_scan(n->ledger, (const uint8_t *)LEDGER_MEMBER_KEY_PREFIX,
                                 strlen(LEDGER_MEMBER_KEY_PREFIX), NULL, 0, LEDGER_SCAN_COUNT_MAX,
                                 member_row, l, NULL);
    if (got < 0 && l->err == EHR_ETOOBIG)
        return ehr_diag_fail(
            diag, l->err, "the chain has more than %d members; a node runs with at most that many",
            NODE_MEMBERS_MAX);
    if (got < 0)
        return ehr_diag_fail(diag, l->err ? l->err : (int)got,
                             "cannot read the chain's members from the ledger (%s)",
                             ehr_errname(l->err ? l->err : (int)got));
    return 0;
}

/* Ids must be non-zero and distinct: they are the consensus ids. */
static int list_check_ids(const struct member_list *l, ehr_diag *diag)
{
    for (size_t i = 0; i < l->count; i++) {
        if (l->m[i].id == 0)
            return ehr_diag_fail(diag, EHR_EINVAL,
                                 "member \"%s\" has a node key whose first 8 bytes are zero",
                                 l->m[i].name);
        for (size_t j = 0; j < i; j++)
            if (l->m[j].id == l->m[i].id)
                return ehr_diag_fail(diag, EHR_EINVAL,
                                     "members \"%s\" and \"%s\" share a consensus id", l->m[j].name,
                                     l->m[i].name);
    }
    return 0;
}

static size_t list_find(const struct member_list *l, const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES])
{
    for (size_t i = 0; i < l->count; i++)
        if (sodium_memcmp(l->m[i].key, key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            return i;
    return SIZE_MAX;
}

static size_t peers_find(const struct node *n, const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES])
{
    for (size_t i = 0; i < n->peers.count; i++)
        if (sodium_memcmp(n->peers.members[i].key, key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            return i;
    return SIZE_MAX;
}

/* Take the join file's members into L, and its block to check. */
static int list_from_join_file(struct node *n, struct member_list *l, ehr_diag *diag)
{
    memset(l, 0, sizeof *l);
    Ehr__V1__JoinInfo *join = NULL;
    ehr_diag why;
    int rc = node_datadir_join_read(n->cfg.data_dir, &join, &why);
    if (rc == -ENOENT) {
        char hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
        ehr_hex_encode(hex, n->id->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES);
        return ehr_diag_fail(diag, EHR_EDENIED,
                             "this node's key %s is not a member of chain %s (a node joining a "
                             "running chain is prepared with `ehrctl init --join`)",
                             hex, n->chain.chain_id);
    }
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s", why.msg);
    if (strcmp(join->chain_id, n->chain.chain_id) != 0) {
        rc =
            ehr_diag_fail(diag, EHR_ECHAIN, "the join file is for chain \"%s\", the ledger's is %s",
                          join->chain_id, n->chain.chain_id);
    }
    for (size_t i = 0; rc == 0 && i < join->n_members; i++) {
        const Ehr__V1__Member *m = join->members[i];
        rc = list_add(l, m->node_key.data, m->name, m->peer_address);
        if (rc != 0)
            rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the join file's members: %s", ehr_strerror(rc));
    }
    if (rc == 0) {
        n->peers.join_height = join->height;
        memcpy(n->peers.join_hash, join->block_hash.data, EHR_HASH_BYTES);
        ehr_log(EHR_LOG_INFO, "joining a running chain",
                "members=%zu source=\"%s\" check_height=%" PRIu64, l->count, join->source,
                join->height);
    }
    ehr__v1__join_info__free_unpacked(join, NULL);
    return rc;
}

int node__members_load(struct node *n, ehr_diag *diag)
{
    struct member_list l;
    int rc = list_from_ledger(n, &l, diag);
    if (rc != 0)
        return rc;
    size_t self = list_find(&l, n->id->signing.public_key);
    n->peers.joining = self == SIZE_MAX;
    if (n->peers.joining) {
        if ((rc = list_from_join_file(n, &l, diag)) != 0)
            return rc;
        self = list_find(&l, n->id->signing.public_key);
        if (self == SIZE_MAX) {
            char hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
            ehr_hex_encode(hex, n->id->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES);
            return ehr_diag_fail(diag, EHR_EDENIED,
                                 "this node's key %s is not among the join file's members", hex);
        }
    } else {
        /* A node that joined and restarted before its check was made. */
        Ehr__V1__JoinInfo *join = NULL;
        if (node_datadir_join_read(n->cfg.data_dir, &join, NULL) == 0) {
            n->peers.join_height = join->height;
            memcpy(n->peers.join_hash, join->block_hash.data, EHR_HASH_BYTES);
            ehr__v1__join_info__free_unpacked(join, NULL);
        }
    }
    if ((rc = list_check_ids(&l, diag)) != 0)
        return rc;
    memcpy(n->peers.members, l.m, l.count * sizeof l.m[0]);
    n->peers.count = l.count;
    n->peers.self_index = self;
    n->peers.members[self].self = true;
    n->peers.self_removed = false;
    return 0;
}

int node__members_publish(struct node *n, const struct node_member *members, size_t count)
{
    p2p_member pm[NODE_MEMBERS_MAX];
    EHR_ASSERT(count <= NODE_MEMBERS_MAX);
    for (size_t i = 0; i < count; i++) {
        memcpy(pm[i].node_key, members[i].key, P2P_KEY_BYTES);
        snprintf(pm[i].address, sizeof pm[i].address, "%s", members[i].peer_address);
    }
    return p2p_set_members(n->peers.p2p, pm, count);
}

static bool config_has(const struct raft_config *c, raft_id id)
{
    return raft_config_is_voter(c, id) || raft_config_is_learner(c, id);
}

/* Move the window's state digests from the old slots to the new (M5). */
static void digests_remap(struct node *n, const struct member_list *next)
{
    size_t from[NODE_MEMBERS_MAX];
    for (size_t j = 0; j < next->count; j++) {
        from[j] = SIZE_MAX;
        for (size_t i = 0; i < n->peers.count; i++)
            if (memcmp(n->peers.members[i].key, next->m[j].key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
                from[j] = i;
    }
    for (size_t w = 0; w < NODE_DIGEST_WINDOW; w++) {
        struct node__digest_slot *s = &n->applying.digests[w];
        if (s->height == 0)
            continue;
        bool set[NODE_MEMBERS_MAX] = {false};
        uint8_t peer[NODE_MEMBERS_MAX][EHR_HASH_BYTES];
        for (size_t j = 0; j < next->count; j++) {
            if (from[j] == SIZE_MAX || !s->peer_set[from[j]])
                continue;
            set[j] = true;
            memcpy(peer[j], s->peer[from[j]], EHR_HASH_BYTES);
        }
        memcpy(s->peer_set, set, sizeof set);
        memcpy(s->peer, peer, sizeof peer);
    }
}

static void member_log(const char *msg, const struct node_member *m)
{
    char hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1];
    ehr_hex_encode(hex, m->key, EHR_SCHNORR_PUBLIC_BYTES);
    ehr_log(EHR_LOG_INFO, msg, "peer=\"%s\" node=%s address=%s", m->name, hex, m->peer_address);
}

void node__members_changed(struct node *n)
{
    if (n->stopping)
        return;
    struct member_list next;
    ehr_diag why;
    if (list_from_ledger(n, &next, &why) != 0 || list_check_ids(&next, &why) != 0) {
        node__fatal(n, NODE_EXIT_FAILURE, "cannot read the chain's members", "why=\"%s\"", why.msg);
        return;
    }
    const struct node_member *self = &n->peers.members[n->peers.self_index];
    size_t self_next = list_find(&next, self->key);
    if (self_next == SIZE_MAX && n->peers.joining)
        return; /* M4: the state is not yet one that holds this node */
    if (self_next == SIZE_MAX) {
        /* This node's member was removed: it keeps its own slot (ids and
         * names are read through it) but links with no one who would
         * refuse it, and takes no part (the leader removes it from the
         * configuration, M2). */
        int rc = list_add(&next, self->key, self->name, self->peer_address);
        if (rc == EHR_ETOOBIG) {
            node__fatal(n, NODE_EXIT_FAILURE, "cannot keep this node's slot", "members=%zu",
                        next.count);
            return;
        }
        self_next = list_find(&next, self->key);
        if (!n->peers.self_removed)
            ehr_log(EHR_LOG_WARN,
                    "this node's member was removed from the chain: the other members refuse "
                    "its links from now on",
                    "name=\"%s\"", self->name);
        n->peers.self_removed = true;
    } else if (n->peers.joining) {
        ehr_log(EHR_LOG_INFO, "this node's ledger now holds it as a member",
                "members=%zu height=%" PRIu64, next.count, n->tip.height);
        n->peers.joining = false;
    }
    /* M1: members gone from the state but still in the configuration. */
    struct raft_status rs;
    raft_status_get(n->cons.raft, &rs);
    for (size_t i = 0; i < n->peers.count; i++) {
        const struct node_member *m = &n->peers.members[i];
        if (m->self || list_find(&next, m->key) != SIZE_MAX || !config_has(&rs.config, m->id))
            continue;
        if (list_add(&next, m->key, m->name, m->peer_address) == 0) {
            next.m[list_find(&next, m->key)].leaving = true;
            if (!m->leaving)
                member_log("member removed: linked until the configuration drops it", m);
        }
    }
    self_next = list_find(&next, self->key);
    next.m[self_next].self = true;
    for (size_t j = 0; j < next.count; j++) {
        if (peers_find(n, next.m[j].key) == SIZE_MAX)
            member_log("member admitted: linking with it", &next.m[j]);
    }
    for (size_t i = 0; i < n->peers.count; i++)
        if (!n->peers.members[i].self && list_find(&next, n->peers.members[i].key) == SIZE_MAX)
            member_log("member removed: its links are closed and refused", &n->peers.members[i]);
    size_t leaving = 0;
    for (size_t j = 0; j < next.count; j++)
        leaving += next.m[j].leaving;
    /* M1: p2p first, with the old slots in place, so that the link-down
     * callbacks of removed members find them. */
    int rc = node__members_publish(n, next.m, next.count);
    if (rc != 0) {
        node__fatal(n, NODE_EXIT_FAILURE, "cannot link with the chain's members", "err=%s",
                    ehr_errname(rc));
        return;
    }
    for (size_t j = 0; j < next.count; j++) {
        size_t i = peers_find(n, next.m[j].key);
        if (i == SIZE_MAX)
            continue;
        next.m[j].link_up = n->peers.members[i].link_up;
        next.m[j].link_ups = n->peers.members[i].link_ups;
        memcpy(next.m[j].rpc_address, n->peers.members[i].rpc_address,
               sizeof next.m[j].rpc_address);
    }
    digests_remap(n, &next);
    memcpy(n->peers.members, next.m, next.count * sizeof next.m[0]);
    n->peers.count = next.count;
    n->peers.self_index = self_next;
    n->peers.leaving = leaving;
    node__replication_members_changed(n); /* the replica sets may have moved */
}

size_t node__members_current(const struct node *n)
{
    return n->peers.count - n->peers.leaving - (n->peers.self_removed ? 1 : 0);
}

/* Is ID a member of the applied state (this node's own slot aside once
 * it was removed)? */
static const struct node_member *member_current(const struct node *n, raft_id id)
{
    const struct node_member *m = node__member_by_id(n, id);
    if (m == NULL || m->leaving || (m->self && n->peers.self_removed))
        return NULL;
    return m;
}

void node__members_reconcile(struct node *n)
{
    if (n->stopping)
        return;
    struct raft_status rs;
    raft_status_get(n->cons.raft, &rs);
    /* M1, on every node: a leaving member whose configuration is gone. */
    for (size_t i = 0; n->peers.leaving > 0 && i < n->peers.count; i++) {
        if (n->peers.members[i].leaving && !config_has(&rs.config, n->peers.members[i].id)) {
            node__members_changed(n);
            break;
        }
    }
    if (n->stopping || n->cons.role != RAFT_LEADER || !n->prop.open || n->peers.joining)
        return;
    const struct raft_config *c = &rs.config;
    enum raft_config_op op = 0;
    raft_id id = 0;
    for (uint32_t i = 0; op == 0 && i < c->voter_count; i++)
        if (member_current(n, c->voters[i]) == NULL)
            op = RAFT_CONFIG_REMOVE, id = c->voters[i];
    for (uint32_t i = 0; op == 0 && i < c->learner_count; i++)
        if (member_current(n, c->learners[i]) == NULL)
            op = RAFT_CONFIG_REMOVE, id = c->learners[i];
    for (size_t i = 0; op == 0 && i < n->peers.count; i++) {
        const struct node_member *m = &n->peers.members[i];
        if (member_current(n, m->id) != NULL && !config_has(c, m->id))
            op = RAFT_CONFIG_ADD_LEARNER, id = m->id;
    }
    for (uint32_t i = 0; op == 0 && i < c->learner_count; i++) {
        /* The core promotes a learner within promote_lag_max entries of
         * the log's end, which on a short log is one that has received
         * nothing yet. A voter that holds nothing makes the quorum wait
         * for it: promote once it holds all but the last few entries
         * known committed. */
        struct raft_progress_info pi;
        if (raft_progress_get(n->cons.raft, c->learners[i], &pi) == 0 && pi.match > 0 &&
            pi.match + NODE_PROMOTE_LAG_MAX >= rs.hard_state.commit)
            op = RAFT_CONFIG_PROMOTE, id = c->learners[i];
    }
    if (op == 0)
        return;
    int rc = raft_propose_config(n->cons.raft, op, id);
    if (rc == EHR_EAGAIN)
        return; /* a change under way, or the learner is not caught up: next tick */
    static const char *const names[] = {"", "add-learner", "promote", "remove"};
    char hex[17];
    node__hex8(hex, id);
    const struct node_member *m = node__member_by_id(n, id);
    const char *name = m != NULL ? m->name : "(not a member)";
    if (rc == 0) {
        ehr_log(EHR_LOG_INFO, "consensus configuration change proposed",
                "op=%s peer=\"%s\" id=%s voters=%" PRIu32 " learners=%" PRIu32, names[op], name,
                hex, c->voter_count, c->learner_count);
        return;
    }
    uint64_t count;
    if (ehr_log_limit_hit(&n->peers.reconcile_log, node__now_ms(), &count))
        ehr_log(EHR_LOG_WARN, "consensus configuration change refused",
                "op=%s peer=\"%s\" id=%s err=%s times=%" PRIu64, names[op], name, hex,
                ehr_errname(rc), count);
}

void node__members_join_check(struct node *n)
{
    if (n->stopping || n->peers.join_height == 0 || n->peers.joining ||
        n->tip.height < n->peers.join_height)
        return;
    uint8_t *block = NULL;
    size_t len = 0;
    ehr_diag why = {{0}};
    ledger_block_view v;
    int rc = ledger_block_get(n->ledger, n->peers.join_height, &block, &len, &why);
    if (rc == 0)
        rc = ledger_block_parse(block, len, &v, &why);
    if (rc != 0) {
        ehr_free(block);
        node__fatal(n, NODE_EXIT_FAILURE, "cannot read the block the join file names",
                    "height=%" PRIu64 " err=%s why=\"%s\"", n->peers.join_height, ehr_errname(rc),
                    why.msg);
        return;
    }
    uint8_t hash[EHR_HASH_BYTES];
    memcpy(hash, v.hash, EHR_HASH_BYTES);
    ledger_block_view_release(&v);
    ehr_free(block);
    if (sodium_memcmp(hash, n->peers.join_hash, EHR_HASH_BYTES) != 0) {
        char mine[2 * EHR_HASH_BYTES + 1], theirs[2 * EHR_HASH_BYTES + 1];
        ehr_hex_encode(mine, hash, EHR_HASH_BYTES);
        ehr_hex_encode(theirs, n->peers.join_hash, EHR_HASH_BYTES);
        node__fatal(n, NODE_EXIT_DIVERGED,
                    "the node this one joined through is not on the chain its members lead: "
                    "stopping",
                    "height=%" PRIu64 " ledger=%s join_file=%s", n->peers.join_height, mine,
                    theirs);
        return;
    }
    rc = node_datadir_join_remove(n->cfg.data_dir);
    if (rc != 0 && rc != -ENOENT)
        ehr_log(EHR_LOG_WARN, "cannot remove the join file", "err=%s", ehr_errname(rc));
    ehr_log(EHR_LOG_INFO, "joined: the join file's block is on this node's ledger",
            "height=%" PRIu64, n->peers.join_height);
    n->peers.join_height = 0;
}
