/*
 * test_raft.c - paper scenarios: each test drives a few raft instances by
 * hand through raft_test_net and names the property (README.md, I1..I12) it
 * proves. The randomized, fault-injecting counterpart is the simulator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "raft.h"
#include "raft_test_net.h"

/* ---- helpers ---- */

static void tweak_plain(struct raft_options *opt)
{
    opt->pre_vote = false;
    opt->check_quorum = false;
}

/* Tell node id to campaign now, as a leadership transfer would. */
static void force_campaign(struct tn_net *net, raft_id id)
{
    struct raft_status st = tn_status(net, id);
    raft_id from = id == 1 ? 2 : 1;
    struct raft_message m = {.type = RAFT_MSG_TIMEOUT_NOW,
                             .from = from,
                             .to = id,
                             .term = st.hard_state.term > 0 ? st.hard_state.term : 1};
    assert_int_equal(raft_step(tn_node(net, id)->r, &m), 0);
}

/* Campaign node id until it leads (other nodes only answer): a follower is
 * told to campaign at once; a candidate waits for its next timeout. */
static void elect(struct tn_net *net, raft_id id)
{
    for (int i = 0; i < 200; i++) {
        tn_settle(net);
        struct raft_status st = tn_status(net, id);
        if (st.role == RAFT_LEADER)
            return;
        if (st.role == RAFT_FOLLOWER)
            force_campaign(net, id);
        else
            tn_tick(net, id);
    }
    fail_msg("node %llu did not become leader", (unsigned long long)id);
}

static struct raft_entry entry_at(struct tn_net *net, raft_id id, uint64_t index)
{
    struct raft_storage st;
    raft_mem_storage_interface(tn_node(net, id)->ms, &st);
    struct raft_entry e;
    size_t got = 0;
    assert_int_equal(st.entries(st.ctx, index, index + 1, UINT64_MAX, &e, 1, &got), 0);
    assert_int_equal(got, 1);
    return e;
}

static uint64_t term_at(struct tn_net *net, raft_id id, uint64_t index)
{
    uint64_t t = 0;
    assert_int_equal(raft_term_at(tn_node(net, id)->r, index, &t), 0);
    return t;
}

/* ---- elections ---- */

static void test_first_election_elects_one_leader(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    tn_tick_all(&net, 40);
    raft_id leader = tn_leader(&net);
    assert_int_not_equal(leader, 0);
    int leaders = 0;
    for (raft_id id = 1; id <= 3; id++) {
        struct raft_status st = tn_status(&net, id);
        leaders += st.role == RAFT_LEADER;
        assert_int_equal(st.leader, leader);
    }
    assert_int_equal(leaders, 1);
    tn_free(&net);
}

static void test_leader_first_appends_empty_entry_of_its_term(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    struct raft_status st = tn_status(&net, 1);
    struct raft_entry e = entry_at(&net, 1, st.last_index);
    assert_int_equal(e.type, RAFT_ENTRY_EMPTY);
    assert_int_equal(e.term, st.hard_state.term);
    assert_int_equal(e.index, 2); /* right after the bootstrap configuration */
    /* and once committed it is applied everywhere, bootstrap entry first */
    for (raft_id id = 1; id <= 3; id++) {
        assert_int_equal(tn_node(&net, id)->applied, 2);
        assert_int_equal(tn_node(&net, id)->applied_hash[2], tn_node(&net, 1)->applied_hash[2]);
    }
    tn_free(&net);
}

static void test_replicated_proposals_apply_everywhere_in_order(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 100, 32), 0);
    tn_settle(&net);
    for (raft_id id = 1; id <= 3; id++) {
        struct tn_node *n = tn_node(&net, id);
        assert_int_equal(n->normal_applied, 100);
        assert_int_equal(n->applied, 102);
        assert_memory_equal(n->applied_hash, tn_node(&net, 1)->applied_hash,
                            103 * sizeof(uint64_t));
    }
    tn_free(&net);
}

static void test_proposal_on_follower_is_refused(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    uint8_t b = 1;
    assert_int_equal(raft_propose(tn_node(&net, 2)->r, &b, 1), EHR_ENOTLEADER);
    tn_free(&net);
}

static struct raft_stats stats_of(struct tn_net *net, raft_id id)
{
    struct raft_stats st;
    raft_stats_get(tn_node(net, id)->r, &st);
    return st;
}

/*
 * Deliver m to node `to` and run its ready protocol by hand. The response of
 * type `type` must be among the messages sent only after persisting (I5);
 * returns a copy of it (caller frees) or NULL if none.
 */
static struct raft_message *step_expect_after_persist(struct tn_net *net,
                                                      const struct raft_message *m,
                                                      enum raft_message_type type)
{
    struct tn_node *n = tn_node(net, m->to);
    assert_int_equal(raft_step(n->r, m), 0);
    struct raft_ready rd;
    assert_int_equal(raft_ready_get(n->r, &rd), 0);
    for (size_t i = 0; i < rd.message_count; i++)
        assert_int_not_equal(rd.messages[i].type, type); /* never before persisting */
    struct raft_message *found = NULL;
    for (size_t i = 0; i < rd.message_after_persist_count; i++)
        if (rd.messages_after_persist[i].type == type && found == NULL)
            found = rt_msg_clone(&rd.messages_after_persist[i]);
    assert_int_equal(raft_mem_storage_persist(n->ms, &rd), 0);
    assert_int_equal(raft_ready_advance(n->r), 0);
    return found;
}

static struct raft_message vote_req(raft_id from, raft_id to, uint64_t term, uint64_t last,
                                    uint64_t last_term)
{
    return (struct raft_message){.type = RAFT_MSG_VOTE,
                                 .from = from,
                                 .to = to,
                                 .term = term,
                                 .index = last,
                                 .log_term = last_term};
}

/* I1: a leader or candidate that sees a higher term becomes a follower in it. */
static void test_leader_and_candidate_step_down_on_higher_term(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, tweak_plain);
    elect(&net, 1);
    uint64_t t = tn_status(&net, 1).hard_state.term;
    struct raft_message m = {
        .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = t + 1, .reject = true};
    assert_int_equal(raft_step(tn_node(&net, 1)->r, &m), 0);
    struct raft_status st = tn_status(&net, 1);
    assert_int_equal(st.role, RAFT_FOLLOWER);
    assert_int_equal(st.hard_state.term, t + 1);
    assert_int_equal(st.leader, 0);

    tn_isolate(&net, 3);
    for (int i = 0; i < 100 && tn_status(&net, 3).role != RAFT_CANDIDATE; i++) {
        tn_tick(&net, 3);
        tn_settle(&net);
    }
    st = tn_status(&net, 3);
    assert_int_equal(st.role, RAFT_CANDIDATE);
    struct raft_message hb = {
        .type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 3, .term = st.hard_state.term + 1};
    assert_int_equal(raft_step(tn_node(&net, 3)->r, &hb), 0);
    assert_int_equal(tn_status(&net, 3).role, RAFT_FOLLOWER);
    assert_int_equal(tn_status(&net, 3).hard_state.term, st.hard_state.term + 1);
    assert_int_equal(tn_status(&net, 3).leader, 2);
    tn_free(&net);
}

/* I2: one vote per term, kept across a restart; a new term frees it. */
static void test_node_grants_at_most_one_vote_per_term(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, tweak_plain);
    struct raft_message req = vote_req(1, 3, 5, 1, 1);
    struct raft_message *resp = step_expect_after_persist(&net, &req, RAFT_MSG_VOTE_RESP);
    assert_non_null(resp);
    assert_false(resp->reject);
    rt_msg_free(resp);

    req = vote_req(2, 3, 5, 1, 1);
    resp = step_expect_after_persist(&net, &req, RAFT_MSG_VOTE_RESP);
    assert_non_null(resp);
    assert_true(resp->reject);
    rt_msg_free(resp);

    tn_restart(&net, 3); /* the vote was persisted before it was sent */
    assert_int_equal(tn_status(&net, 3).hard_state.vote, 1);
    resp = step_expect_after_persist(&net, &req, RAFT_MSG_VOTE_RESP);
    assert_true(resp->reject);
    rt_msg_free(resp);

    req = vote_req(1, 3, 5, 1, 1); /* the same candidate again: yes */
    resp = step_expect_after_persist(&net, &req, RAFT_MSG_VOTE_RESP);
    assert_false(resp->reject);
    rt_msg_free(resp);

    req = vote_req(2, 3, 6, 1, 1); /* a new term: a new vote */
    resp = step_expect_after_persist(&net, &req, RAFT_MSG_VOTE_RESP);
    assert_false(resp->reject);
    assert_int_equal(tn_status(&net, 3).hard_state.vote, 2);
    rt_msg_free(resp);
    tn_free(&net);
}

/* I3: a vote goes only to a candidate whose log is at least as up to date. */
static void test_vote_refused_to_candidate_with_less_up_to_date_log(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, tweak_plain);
    elect(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 5, 8), 0);
    tn_settle(&net);
    struct raft_status st = tn_status(&net, 2);
    uint64_t t = st.hard_state.term, last = st.last_index;
    struct {
        uint64_t last, last_term;
        bool granted;
    } cases[] = {
        {last - 1, t, false},      /* shorter log, same last term */
        {last + 10, t - 1, false}, /* longer log, older last term */
        {last, t, true},           /* equal */
        {last - 3, t + 1, true},   /* newer last term wins over length */
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        struct raft_message req = vote_req(3, 2, t + 1 + i, cases[i].last, cases[i].last_term);
        if (cases[i].last_term > t + 1 + i)
            req.term = cases[i].last_term;
        struct raft_message *resp = step_expect_after_persist(&net, &req, RAFT_MSG_VOTE_RESP);
        assert_non_null(resp);
        assert_int_equal(resp->reject, !cases[i].granted);
        rt_msg_free(resp);
    }
    tn_free(&net);
}

/* I5: a follower acknowledges appended entries only after persisting them,
 * while the leader may send its appends before its own write. */
static void test_append_acknowledged_only_after_persisting(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 3, 8), 0);
    struct raft_ready rd;
    struct tn_node *leader = tn_node(&net, 1);
    assert_int_equal(raft_ready_get(leader->r, &rd), 0);
    assert_int_equal(rd.entry_count, 3);
    size_t appends = 0;
    for (size_t i = 0; i < rd.message_count; i++)
        appends += rd.messages[i].type == RAFT_MSG_APPEND;
    assert_int_equal(appends, 2); /* early: no need to wait for our own disk */
    struct raft_message *app = NULL;
    for (size_t i = 0; i < rd.message_count; i++)
        if (rd.messages[i].type == RAFT_MSG_APPEND && rd.messages[i].to == 2)
            app = rt_msg_clone(&rd.messages[i]);
    assert_int_equal(raft_mem_storage_persist(leader->ms, &rd), 0);
    assert_int_equal(raft_ready_advance(leader->r), 0);
    struct raft_message *ack = step_expect_after_persist(&net, app, RAFT_MSG_APPEND_RESP);
    assert_non_null(ack);
    assert_false(ack->reject);
    assert_int_equal(ack->index, app->index + 3);
    struct raft_storage st;
    raft_mem_storage_interface(tn_node(&net, 2)->ms, &st);
    assert_true(st.last_index(st.ctx) >= ack->index);
    rt_msg_free(ack);
    rt_msg_free(app);
    tn_free(&net);
}

/* I9 and fast back-off: a follower's conflicting uncommitted entries are
 * replaced, its committed ones kept; one term is skipped per rejection. */
static void test_conflicting_follower_log_repaired_with_fast_backoff(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    uint64_t committed = tn_status(&net, 1).hard_state.commit;
    tn_isolate(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 50, 8), 0); /* 50 entries only node 1 holds */
    tn_settle(&net);
    elect(&net, 2);
    assert_int_equal(tn_propose(&net, 2, 3, 8), 0);
    tn_settle(&net);
    assert_int_equal(tn_status(&net, 1).hard_state.commit, committed);
    uint64_t rejected = stats_of(&net, 1).appends_rejected;
    tn_heal(&net);
    tn_tick_all(&net, 3);
    struct raft_status a = tn_status(&net, 1), b = tn_status(&net, 2);
    assert_int_equal(a.role, RAFT_FOLLOWER);
    assert_int_equal(a.last_index, b.last_index);
    for (uint64_t i = 1; i <= b.last_index; i++)
        assert_int_equal(term_at(&net, 1, i), term_at(&net, 2, i));
    assert_int_equal(tn_node(&net, 1)->applied, tn_node(&net, 2)->applied);
    assert_memory_equal(tn_node(&net, 1)->applied_hash, tn_node(&net, 2)->applied_hash,
                        (b.last_index + 1) * sizeof(uint64_t));
    /* 50 conflicting entries of one term cost at most two rejections */
    assert_true(stats_of(&net, 1).appends_rejected - rejected <= 2);
    tn_free(&net);
}

static bool drop_appends_from_1(void *ctx, const struct raft_message *m)
{
    (void)ctx;
    return m->from == 1 && m->type == RAFT_MSG_APPEND;
}

static bool drop_appends_from_5(void *ctx, const struct raft_message *m)
{
    (void)ctx;
    return m->from == 5 && m->type == RAFT_MSG_APPEND;
}

/*
 * I4, figure 8 of the Raft paper: an entry of an older term on a majority
 * is not committed by counting replicas, because a later leader may still
 * replace it. 5 nodes: (a) node 1 (term A) gets entry 3 to node 2 only;
 * (b) node 5 is elected without it and appends its own entry 3 (term B);
 * (c) node 1 leads again (term C) and its entry 3 reaches nodes 2 and 3:
 * a majority, but of term A: not committed; (d) node 5 leads again and
 * replaces entry 3 everywhere, which it may, since it was never committed.
 */
static void test_old_term_entry_not_committed_by_counting_replicas(void **state)
{
    struct tn_net net;
    tn_init(&net, 5, 5, NULL);
    elect(&net, 1);
    assert_int_equal(tn_status(&net, 1).hard_state.commit, 2);
    uint64_t term_a = tn_status(&net, 1).hard_state.term;
    for (raft_id id = 3; id <= 5; id++)
        net.cut[1][id] = net.cut[id][1] = true;
    assert_int_equal(tn_propose(&net, 1, 1, 8), 0);
    tn_settle(&net);
    assert_int_equal(term_at(&net, 2, 3), term_a);
    assert_int_equal(tn_status(&net, 1).hard_state.commit, 2);
    tn_crash(&net, 1);
    tn_heal(&net);

    net.filter = drop_appends_from_5; /* (b) node 5's entries stay with it */
    elect(&net, 5);
    uint64_t term_b = tn_status(&net, 5).hard_state.term;
    assert_int_equal(term_at(&net, 5, 3), term_b);
    tn_crash(&net, 5);

    tn_restart(&net, 1); /* (c) */
    net.filter = drop_appends_from_1;
    elect(&net, 1);
    struct raft_status st = tn_status(&net, 1);
    uint64_t term_c = st.hard_state.term;
    assert_true(term_c > term_b);
    assert_int_equal(st.last_index, 4); /* its empty entry of term C, held by nobody else */
    for (raft_id to = 2; to <= 3; to++) {
        /* what node 1 sends a follower it has backed off to index 3 */
        struct raft_entry e = {.term = term_a, .index = 3, .type = RAFT_ENTRY_NORMAL};
        struct raft_entry old = entry_at(&net, 1, 3);
        e.size = old.size;
        e.data = old.data;
        struct raft_message m = {.type = RAFT_MSG_APPEND,
                                 .from = 1,
                                 .to = to,
                                 .term = term_c,
                                 .index = 2,
                                 .log_term = term_at(&net, 1, 2),
                                 .commit = 2,
                                 .entries = &e,
                                 .entry_count = 1};
        assert_int_equal(raft_step(tn_node(&net, to)->r, &m), 0);
    }
    tn_settle(&net); /* their acknowledgements of index 3 reach node 1 */
    struct raft_progress_info p2, p3;
    assert_int_equal(raft_progress_get(tn_node(&net, 1)->r, 2, &p2), 0);
    assert_int_equal(raft_progress_get(tn_node(&net, 1)->r, 3, &p3), 0);
    assert_int_equal(p2.match, 3);
    assert_int_equal(p3.match, 3); /* nodes 1, 2, 3 hold entry 3: a majority of 5 */
    assert_int_equal(tn_status(&net, 1).hard_state.commit, 2); /* yet not committed */

    tn_crash(&net, 1); /* (d) */
    net.filter = NULL;
    tn_restart(&net, 5);
    elect(&net, 5);
    tn_settle(&net);
    for (raft_id id = 2; id <= 5; id++)
        assert_int_equal(term_at(&net, id, 3), term_b);
    tn_free(&net);
}

/* I12 (check-quorum): a leader cut off from a majority stops leading and
 * commits nothing meanwhile. */
static void test_leader_cut_off_from_quorum_steps_down_and_cannot_commit(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    uint64_t commit = tn_status(&net, 1).hard_state.commit;
    tn_isolate(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 3, 8), 0);
    for (int i = 0; i < 25; i++) {
        tn_tick(&net, 1);
        tn_settle(&net);
    }
    struct raft_status st = tn_status(&net, 1);
    assert_int_equal(st.role, RAFT_FOLLOWER);
    assert_int_equal(st.hard_state.commit, commit);
    assert_int_equal(stats_of(&net, 1).quorum_lost, 1);
    uint8_t b = 0;
    assert_int_equal(raft_propose(tn_node(&net, 1)->r, &b, 1), EHR_ENOTLEADER);
    tn_free(&net);
}

static void tweak_no_prevote(struct raft_options *opt)
{
    opt->pre_vote = false;
}

/* Pre-vote: a node cut off from the leader keeps campaigning without
 * raising its term, so on rejoining it does not depose a healthy leader.
 * Without pre-vote the same node does raise its term. */
static void test_prevote_from_partitioned_node_does_not_disturb_leader(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    uint64_t term = tn_status(&net, 1).hard_state.term;
    tn_isolate(&net, 3);
    tn_tick_all(&net, 100);
    assert_int_equal(tn_status(&net, 3).hard_state.term, term);
    tn_heal(&net);
    tn_tick_all(&net, 30);
    assert_int_equal(tn_leader(&net), 1);
    assert_int_equal(tn_status(&net, 1).hard_state.term, term);
    assert_int_equal(tn_status(&net, 3).hard_state.term, term);
    tn_free(&net);

    tn_init(&net, 3, 3, tweak_no_prevote);
    elect(&net, 1);
    term = tn_status(&net, 1).hard_state.term;
    tn_isolate(&net, 3);
    tn_tick_all(&net, 100);
    assert_true(tn_status(&net, 3).hard_state.term > term);
    tn_free(&net);
}

/*
 * Pre-vote with check-quorum: a node whose term ran ahead while its log fell
 * behind (here: it ran without pre-vote while cut off, as during an upgrade)
 * rejects the others' pre-votes for its term, and they reject its own for
 * its log. Unless a pre-vote from a lower term is answered with the higher
 * term, the healed cluster never elects a leader.
 */
static void test_prevote_and_checkquorum_healed_cluster_elects_leader(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    tn_node(&net, 3)->opt.pre_vote = false;
    tn_restart(&net, 3);
    elect(&net, 2);
    tn_isolate(&net, 3);
    for (int i = 0; i < 60; i++) {
        tn_tick(&net, 3);
        tn_settle(&net);
    }
    assert_int_equal(tn_propose(&net, 2, 5, 8), 0);
    tn_settle(&net);
    struct raft_status s1 = tn_status(&net, 1), s3 = tn_status(&net, 3);
    assert_true(s3.hard_state.term >= s1.hard_state.term + 2);
    assert_true(s3.last_index < s1.last_index);
    tn_node(&net, 3)->opt.pre_vote = true;
    tn_restart(&net, 3);
    tn_crash(&net, 2);
    tn_heal(&net);
    for (int i = 0; i < 200 && tn_leader(&net) == 0; i++)
        tn_tick_all(&net, 1);
    assert_int_equal(tn_leader(&net), 1);
    tn_free(&net);
}

static void tweak_small_chunks(struct raft_options *opt)
{
    opt->snapshot_chunk_bytes = RAFT_SNAPSHOT_CHUNK_BYTES_MIN;
}

enum { SNAPSHOT_TEST_BYTES = 100 };

static void take_snapshot(struct tn_net *net, raft_id id)
{
    struct tn_node *n = tn_node(net, id);
    struct raft_snapshot_meta meta;
    assert_int_equal(raft_snapshot_meta_applied(n->r, &meta), 0);
    uint8_t data[SNAPSHOT_TEST_BYTES];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(meta.index + i);
    assert_int_equal(raft_mem_storage_snapshot(n->ms, &meta, data, sizeof data, meta.index), 0);
}

struct chunk_count {
    int seen;
    int first_chunks;
    int drop_at;
};

static bool count_and_drop_chunk(void *ctx, const struct raft_message *m)
{
    struct chunk_count *c = ctx;
    if (m->type != RAFT_MSG_SNAPSHOT)
        return false;
    c->seen++;
    if (c->seen == c->drop_at)
        return true;
    c->first_chunks += m->offset == 0;
    return false;
}

/* A follower behind the compacted log gets the snapshot in chunks; a lost
 * chunk is resent from where the follower is, not from the start. */
static void test_follower_behind_compacted_log_receives_snapshot(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, tweak_small_chunks);
    elect(&net, 1);
    tn_isolate(&net, 3);
    assert_int_equal(tn_propose(&net, 1, 30, 8), 0);
    tn_settle(&net);
    take_snapshot(&net, 1);
    take_snapshot(&net, 2);
    struct raft_status ls = tn_status(&net, 1);
    assert_true(ls.first_index > tn_status(&net, 3).last_index + 1);
    struct chunk_count cc = {.drop_at = 3};
    net.filter = count_and_drop_chunk;
    net.filter_ctx = &cc;
    tn_heal(&net);
    tn_tick_all(&net, 20);
    assert_int_equal(tn_node(&net, 3)->snapshots_installed, 1);
    assert_int_equal(cc.first_chunks, 1); /* resumed, not restarted */
    assert_true(cc.seen >= SNAPSHOT_TEST_BYTES / RAFT_SNAPSHOT_CHUNK_BYTES_MIN + 1);
    uint64_t size1 = 0, size3 = 0;
    const uint8_t *d1 = raft_mem_storage_snapshot_data(tn_node(&net, 1)->ms, &size1);
    const uint8_t *d3 = raft_mem_storage_snapshot_data(tn_node(&net, 3)->ms, &size3);
    assert_int_equal(size3, size1);
    assert_memory_equal(d3, d1, size1);
    assert_int_equal(tn_status(&net, 3).snapshot_index, ls.snapshot_index);
    assert_int_equal(stats_of(&net, 3).snapshots_installed, 1);
    net.filter = NULL;
    assert_int_equal(tn_propose(&net, 1, 4, 8), 0);
    tn_settle(&net);
    assert_int_equal(tn_node(&net, 3)->applied, tn_node(&net, 1)->applied);
    assert_int_equal(tn_node(&net, 3)->applied_hash[tn_node(&net, 1)->applied],
                     tn_node(&net, 1)->applied_hash[tn_node(&net, 1)->applied]);
    tn_free(&net);
}

static void tweak_small_lag(struct raft_options *opt)
{
    opt->promote_lag_max = 4;
}

/* I10, I11: a learner catches up without a vote, is promoted only once
 * caught up, and then counts in the quorum. */
static void test_learner_catches_up_then_is_promoted(void **state)
{
    struct tn_net net;
    tn_init(&net, 4, 3, tweak_small_lag);
    elect(&net, 1);
    struct raft *l = tn_node(&net, 1)->r;
    tn_isolate(&net, 4);
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_ADD_LEARNER, 4), 0);
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_ADD_LEARNER, 4), EHR_EAGAIN); /* pending */
    tn_settle(&net);
    struct raft_status s2 = tn_status(&net, 2);
    assert_true(raft_config_is_learner(&s2.config, 4));
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_ADD_LEARNER, 4), EHR_EINVAL);
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_PROMOTE, 2), EHR_EINVAL);
    assert_int_equal(tn_propose(&net, 1, 20, 8), 0);
    tn_settle(&net);
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_PROMOTE, 4), EHR_EAGAIN); /* behind */
    for (int i = 0; i < 100; i++)
        tn_tick(&net, 4); /* not a voter in anything it knows: never campaigns */
    assert_int_equal(tn_status(&net, 4).role, RAFT_FOLLOWER);
    assert_int_equal(tn_status(&net, 4).hard_state.term, 0);
    tn_heal(&net);
    tn_tick_all(&net, 3);
    assert_int_equal(tn_node(&net, 4)->applied, tn_node(&net, 1)->applied);
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_PROMOTE, 4), 0);
    tn_settle(&net);
    for (raft_id id = 1; id <= 4; id++)
        assert_int_equal(tn_status(&net, id).config.voter_count, 4);
    /* quorum is now 3 of 4: nodes 1 and 4 alone cannot commit */
    tn_crash(&net, 2);
    tn_crash(&net, 3);
    uint64_t commit = tn_status(&net, 1).hard_state.commit;
    assert_int_equal(tn_propose(&net, 1, 1, 8), 0);
    tn_settle(&net);
    assert_int_equal(tn_status(&net, 1).hard_state.commit, commit);
    tn_restart(&net, 3);
    tn_tick_all(&net, 2);
    assert_true(tn_status(&net, 1).hard_state.commit > commit);
    tn_free(&net);
}

/* I13: a learner is sent committed entries only. With the two other voters
 * down the leader's new entries stay uncommitted, and the learner must not
 * hold them: an uncommitted entry of a newer term on a learner can make an
 * election impossible (seed 8000383286, consensus/README.md). Once the
 * voters are back and the entries commit, the learner gets them. */
static void test_learner_is_sent_committed_entries_only(void **state)
{
    (void)state;
    struct tn_net net;
    tn_init(&net, 4, 3, NULL);
    elect(&net, 1);
    struct raft *l = tn_node(&net, 1)->r;
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_ADD_LEARNER, 4), 0);
    assert_int_equal(tn_propose(&net, 1, 5, 8), 0);
    tn_settle(&net);
    uint64_t commit = tn_status(&net, 1).hard_state.commit;
    assert_int_equal(tn_status(&net, 4).last_index, commit); /* caught up */
    tn_crash(&net, 2);
    tn_crash(&net, 3);
    assert_int_equal(tn_propose(&net, 1, 10, 8), 0);
    tn_tick_all(&net, 2);
    tn_settle(&net);
    assert_int_equal(tn_status(&net, 1).hard_state.commit, commit);
    assert_true(tn_status(&net, 1).last_index > commit);
    assert_int_equal(tn_status(&net, 4).last_index, commit); /* none of them */
    tn_restart(&net, 2);
    tn_restart(&net, 3);
    tn_tick_all(&net, 3);
    tn_settle(&net);
    struct raft_status s1 = tn_status(&net, 1);
    assert_true(s1.hard_state.commit > commit);
    assert_int_equal(tn_status(&net, 4).last_index, s1.hard_state.commit);
    tn_free(&net);
}

static void tweak_any_lag(struct raft_options *opt)
{
    opt->promote_lag_max = UINT64_MAX;
}

/* promote_lag_max at the top of its range lets any learner be promoted
 * (the lag test must not wrap and refuse them all). */
static void test_promote_lag_max_at_its_top(void **state)
{
    struct tn_net net;
    tn_init(&net, 4, 3, tweak_any_lag);
    elect(&net, 1);
    struct raft *l = tn_node(&net, 1)->r;
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_ADD_LEARNER, 4), 0);
    tn_settle(&net);
    struct raft_progress_info pi;
    assert_int_equal(raft_progress_get(l, 4, &pi), 0);
    assert_true(pi.match > 0); /* it holds part of the log ... */
    tn_isolate(&net, 4);
    assert_int_equal(tn_propose(&net, 1, 20, 8), 0);
    tn_settle(&net);
    assert_true(tn_status(&net, 1).last_index > pi.match + 1); /* ... and lags */
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_PROMOTE, 4), 0);
    tn_settle(&net);
    struct raft_status st = tn_status(&net, 1);
    assert_true(raft_config_is_voter(&st.config, 4));
    tn_free(&net);
}

/* I11: the leader may remove itself: it leads until the change commits,
 * then steps down and hands over; it never campaigns again. */
static void test_leader_removes_itself_and_hands_over(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    assert_int_equal(raft_propose_config(tn_node(&net, 1)->r, RAFT_CONFIG_REMOVE, 1), 0);
    tn_settle(&net);
    struct raft_status s1 = tn_status(&net, 1);
    assert_int_equal(s1.role, RAFT_FOLLOWER);
    assert_false(raft_config_is_voter(&s1.config, 1));
    tn_tick_all(&net, 5);
    raft_id leader = tn_leader(&net);
    assert_true(leader == 2 || leader == 3);
    struct raft_status ls = tn_status(&net, leader);
    assert_int_equal(ls.config.voter_count, 2);
    assert_int_equal(tn_propose(&net, leader, 5, 8), 0);
    tn_settle(&net);
    assert_int_equal(tn_node(&net, 2)->applied, tn_node(&net, 3)->applied);
    uint64_t term = tn_status(&net, 1).hard_state.term;
    tn_isolate(&net, 1);
    for (int i = 0; i < 100; i++)
        tn_tick(&net, 1);
    tn_settle(&net);
    assert_int_equal(tn_status(&net, 1).hard_state.term, term);
    assert_int_equal(tn_status(&net, 1).role, RAFT_FOLLOWER);
    tn_free(&net);
}

/*
 * A leader that removed itself but lost leadership before the change
 * committed may be the only node holding it; the others, still in the old
 * configuration, then need its vote, which its longer log lets it refuse.
 * It must campaign itself (in the new configuration, without its own vote)
 * until the change commits, or the cluster stays without a leader.
 */
static void test_removed_leader_campaigns_until_its_removal_commits(void **state)
{
    struct tn_net net;
    tn_init(&net, 4, 4, NULL);
    elect(&net, 1);
    net.filter = drop_appends_from_1;
    assert_int_equal(raft_propose_config(tn_node(&net, 1)->r, RAFT_CONFIG_REMOVE, 1), 0);
    tn_settle(&net);
    tn_crash(&net, 2);
    tn_isolate(&net, 1);
    for (int i = 0; i < 25; i++) {
        tn_tick(&net, 1);
        tn_settle(&net);
    }
    assert_int_equal(tn_status(&net, 1).role, RAFT_FOLLOWER);
    tn_heal(&net);
    net.filter = NULL;
    for (int i = 0; i < 300; i++) {
        tn_tick_all(&net, 1);
        raft_id l = tn_leader(&net);
        if (l == 3 || l == 4)
            break;
    }
    raft_id leader = tn_leader(&net);
    assert_true(leader == 3 || leader == 4);
    struct raft_status st = tn_status(&net, leader);
    assert_int_equal(st.config.voter_count, 3);
    assert_false(raft_config_is_voter(&st.config, 1));
    assert_true(st.config_index <= st.hard_state.commit);
    tn_free(&net);
}

/*
 * A server removed while it was down never learns of its removal: a leader
 * does not replicate to a node outside its configuration. It restarts with
 * its old configuration and campaigns every election timeout, each time one
 * term higher. Without pre-vote and check-quorum nothing else stops it, and
 * each vote request of a higher term deposed the leader (seed 7000017323:
 * the only electable node led a third of the time, never long enough to
 * commit). While a node hears a leader, a vote request from a server outside
 * its configuration neither moves its term nor gets its vote (Raft section
 * 6); the rest of the cluster goes on under the same leader and term.
 */
static void test_removed_server_does_not_depose_leader_without_prevote_or_checkquorum(void **state)
{
    struct tn_net net;
    tn_init(&net, 4, 4, tweak_plain);
    elect(&net, 1);
    tn_crash(&net, 4);
    assert_int_equal(raft_propose_config(tn_node(&net, 1)->r, RAFT_CONFIG_REMOVE, 4), 0);
    tn_settle(&net);
    struct raft_status s1 = tn_status(&net, 1);
    assert_false(raft_config_is_voter(&s1.config, 4));
    assert_true(s1.config_index <= s1.hard_state.commit);
    uint64_t term = s1.hard_state.term;
    tn_restart(&net, 4);
    struct raft_status s4 = tn_status(&net, 4);
    assert_true(raft_config_is_voter(&s4.config, 4));
    tn_tick_all(&net, 100);
    assert_true(tn_status(&net, 4).hard_state.term > term + 2);
    assert_int_equal(tn_leader(&net), 1);
    for (raft_id id = 1; id <= 3; id++)
        assert_int_equal(tn_status(&net, id).hard_state.term, term);
    uint64_t commit = tn_status(&net, 1).hard_state.commit;
    assert_int_equal(tn_propose(&net, 1, 3, 8), 0);
    tn_settle(&net);
    assert_int_equal(tn_status(&net, 1).hard_state.commit, commit + 3);
    tn_free(&net);
}

/*
 * Leader completeness is by term (Raft thesis 3.6.3): an entry committed in
 * term C is in the log of every leader of a term above C, not of a lower
 * term. A candidate of term B < C may still win after C committed more: its
 * votes came from nodes that had not yet seen term C (one voted before it
 * moved on, one was down and restarts with an old term). Such a leader
 * commits nothing: the quorum that elected C refuses term B. Sim S2 checks
 * exactly this; it once demanded C's entries of B's leader (seed 6000120722).
 */
static void test_late_lower_term_leader_lacks_higher_term_commits_and_commits_nothing(void **state)
{
    struct tn_net net;
    tn_init(&net, 5, 5, NULL);
    elect(&net, 1);
    uint64_t term_a = tn_status(&net, 1).hard_state.term;
    /* entry 3 on nodes 1, 2, 5 (committed); 3 is down, 4 does not hear 1 */
    tn_crash(&net, 3);
    net.cut[1][4] = true;
    assert_int_equal(tn_propose(&net, 1, 1, 8), 0);
    tn_settle(&net);
    assert_int_equal(tn_status(&net, 1).hard_state.commit, 3);

    /* node 2 campaigns in term B: 4 grants, 3's request is lost, 1 and 5 are cut */
    for (raft_id id = 1; id <= 5; id++)
        if (id != 2 && id != 4)
            net.cut[2][id] = net.cut[id][2] = true;
    force_campaign(&net, 2);
    tn_settle(&net);
    struct raft_status cand = tn_status(&net, 2);
    assert_int_equal(cand.role, RAFT_CANDIDATE);
    uint64_t term_b = cand.hard_state.term;
    assert_int_equal(term_b, term_a + 1);

    /* node 1 hears term B from 4 and steps down, then wins term C with 4 and
     * 5 and commits entries 4..6 */
    net.cut[1][4] = false;
    for (int i = 0; i < 20 && tn_status(&net, 1).role == RAFT_LEADER; i++) {
        tn_tick(&net, 1);
        tn_settle(&net);
    }
    assert_int_equal(tn_status(&net, 1).hard_state.term, term_b);
    elect(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 2, 8), 0);
    tn_settle(&net);
    struct raft_status l1 = tn_status(&net, 1);
    uint64_t term_c = l1.hard_state.term;
    assert_true(term_c > term_b);
    assert_int_equal(l1.hard_state.commit, 6);
    assert_int_equal(term_at(&net, 1, 4), term_c);
    assert_int_equal(tn_status(&net, 2).role, RAFT_CANDIDATE); /* still in term B */

    /* 3 restarts with term A and its old log; 2's delayed request reaches it */
    tn_restart(&net, 3);
    for (raft_id id = 1; id <= 5; id++)
        if (id != 2 && id != 3)
            net.cut[3][id] = net.cut[id][3] = net.cut[2][id] = net.cut[id][2] = true;
    net.cut[2][3] = net.cut[3][2] = false;
    struct raft_message req = {.type = RAFT_MSG_VOTE,
                               .from = 2,
                               .to = 3,
                               .term = term_b,
                               .index = cand.last_index,
                               .log_term = term_at(&net, 2, cand.last_index)};
    assert_int_equal(raft_step(tn_node(&net, 3)->r, &req), 0);
    tn_settle(&net);
    struct raft_status l2 = tn_status(&net, 2);
    assert_int_equal(l2.role, RAFT_LEADER); /* term B: votes of 2, 3, 4 */
    assert_int_equal(l2.hard_state.term, term_b);
    assert_int_not_equal(term_at(&net, 2, 4), term_c); /* lacks C's entry 4 */
    assert_int_equal(tn_propose(&net, 2, 1, 8), 0);
    tn_settle(&net);
    assert_true(tn_status(&net, 2).hard_state.commit <= 3); /* commits nothing */
    assert_true(tn_status(&net, 3).hard_state.commit <= 3);

    /* healed: 2 learns term C and steps down; every log converges on C's */
    tn_heal(&net);
    tn_tick_all(&net, 30);
    raft_id leader = tn_leader(&net);
    assert_int_not_equal(leader, 0);
    uint64_t commit = tn_status(&net, leader).hard_state.commit;
    assert_true(commit >= 6);
    for (raft_id id = 1; id <= 5; id++) {
        assert_int_equal(term_at(&net, id, 4), term_c);
        assert_true(tn_node(&net, id)->applied >= 6);
        assert_memory_equal(tn_node(&net, id)->applied_hash, tn_node(&net, 1)->applied_hash,
                            7 * sizeof(uint64_t));
    }
    tn_free(&net);
}

/* Leadership transfer hands over to a caught-up voter; one that cannot
 * complete is abandoned after an election timeout and proposals resume. */
static void test_leadership_transfer_completes_or_times_out(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    struct raft *l = tn_node(&net, 1)->r;
    uint64_t term = tn_status(&net, 1).hard_state.term;
    assert_int_equal(raft_transfer_leadership(l, 1), EHR_EINVAL);
    assert_int_equal(raft_transfer_leadership(l, 9), EHR_EINVAL);
    assert_int_equal(raft_transfer_leadership(tn_node(&net, 2)->r, 3), EHR_ENOTLEADER);
    assert_int_equal(tn_propose(&net, 1, 5, 8), 0);
    assert_int_equal(raft_transfer_leadership(l, 3), 0);
    tn_settle(&net);
    assert_int_equal(tn_leader(&net), 3);
    assert_int_equal(tn_status(&net, 3).hard_state.term, term + 1);
    assert_int_equal(tn_status(&net, 1).role, RAFT_FOLLOWER);

    struct raft *l3 = tn_node(&net, 3)->r;
    net.cut[3][2] = net.cut[2][3] = true;
    assert_int_equal(raft_transfer_leadership(l3, 2), 0);
    assert_int_equal(raft_transfer_leadership(l3, 1), EHR_EAGAIN);
    uint8_t b = 0;
    assert_int_equal(raft_propose(l3, &b, 1), EHR_EAGAIN);
    for (int i = 0; i < 10; i++) {
        tn_tick(&net, 3);
        tn_settle(&net);
    }
    struct raft_status st = tn_status(&net, 3);
    assert_int_equal(st.role, RAFT_LEADER);
    assert_int_equal(st.transfer_target, 0);
    assert_int_equal(stats_of(&net, 3).transfers_aborted, 1);
    assert_int_equal(raft_propose(l3, &b, 1), 0);
    tn_free(&net);
}

static void tweak_two_reads(struct raft_options *opt)
{
    opt->reads_pending_max = 2;
}

/* I12 (read-index): a read is answered only once this term's first entry is
 * committed and a quorum has confirmed the leadership after the read came. */
static void test_read_index_waits_for_own_term_commit(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, tweak_two_reads);
    net.filter = drop_appends_from_1;
    force_campaign(&net, 1);
    tn_settle(&net);
    struct raft_status st = tn_status(&net, 1);
    assert_int_equal(st.role, RAFT_LEADER);
    assert_true(st.hard_state.commit < st.last_index); /* its empty entry is not committed */
    struct raft *l = tn_node(&net, 1)->r;
    assert_int_equal(raft_read_index(l, 42), 0);
    tn_tick_all(&net, 3);
    assert_int_equal(tn_node(&net, 1)->read_count, 0);
    net.filter = NULL;
    tn_tick_all(&net, 2);
    assert_int_equal(tn_node(&net, 1)->read_count, 1);
    struct raft_read_result rr = tn_node(&net, 1)->reads[0];
    assert_int_equal(rr.request, 42);
    assert_int_equal(rr.err, 0);
    assert_true(rr.index >= st.last_index); /* covers the leader's empty entry */
    assert_int_equal(raft_read_index(tn_node(&net, 2)->r, 1), EHR_ENOTLEADER);

    tn_isolate(&net, 1); /* no quorum to confirm the next reads */
    assert_int_equal(raft_read_index(l, 43), 0);
    assert_int_equal(raft_read_index(l, 44), 0);
    assert_int_equal(raft_read_index(l, 45), EHR_EAGAIN); /* reads_pending_max */
    tn_settle(&net);
    assert_int_equal(tn_node(&net, 1)->read_count, 1);
    for (int i = 0; i < 25; i++) {
        tn_tick(&net, 1);
        tn_settle(&net);
    }
    assert_int_equal(tn_status(&net, 1).role, RAFT_FOLLOWER);
    assert_int_equal(tn_node(&net, 1)->read_count, 3);
    assert_int_equal(tn_node(&net, 1)->reads[1].err, EHR_ENOTLEADER);
    assert_int_equal(tn_node(&net, 1)->reads[2].request, 44);
    tn_free(&net);
}

/* I12: only an echo of a round the leader sent confirms a read: a peer that
 * claims a round not yet begun cannot confirm reads issued after it. */
static void test_read_confirmed_only_by_rounds_sent(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    tn_settle(&net);
    struct raft *l = tn_node(&net, 1)->r;
    uint64_t term = tn_status(&net, 1).hard_state.term;
    tn_isolate(&net, 1);
    struct raft_message future = {
        .type = RAFT_MSG_HEARTBEAT_RESP, .from = 2, .to = 1, .term = term, .context = UINT64_MAX};
    assert_int_equal(raft_step(l, &future), 0);
    assert_int_equal(raft_read_index(l, 7), 0);
    future.context = 1000;
    assert_int_equal(raft_step(l, &future), 0);
    tn_settle(&net);
    assert_int_equal(tn_node(&net, 1)->read_count, 0); /* nobody confirmed it */
    tn_heal(&net);
    tn_tick_all(&net, 2);
    assert_int_equal(tn_node(&net, 1)->read_count, 1);
    assert_int_equal(tn_node(&net, 1)->reads[0].err, 0);
    assert_int_equal(tn_node(&net, 1)->reads[0].request, 7);
    tn_free(&net);
}

/* A restarted node recovers its term, vote, commit index and configuration. */
/*
 * I14: a node restored from a backup has forgotten entries it helped
 * commit. Here nodes 1 and 3 commit entries that node 2 (cut off) lacks;
 * 3 is restored from a backup taken before them and 1 goes down. 2 and 3
 * hold the same log, so 3's vote would elect 2 without the committed
 * entries; 3 refuses it, and campaigns neither on its timeout nor when told
 * to. Once 1 is back and leads, 3 catches up from it, and votes again only
 * then.
 */
static void test_restored_node_votes_only_once_caught_up(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 3, 8), 0);
    tn_settle(&net);
    struct raft_status s3 = tn_status(&net, 3);
    struct raft_snapshot_meta backup = {.index = s3.hard_state.commit,
                                        .term = term_at(&net, 3, s3.hard_state.commit),
                                        .config = s3.config};
    uint64_t old_term = s3.hard_state.term;

    tn_isolate(&net, 2);
    assert_int_equal(tn_propose(&net, 1, 3, 8), 0);
    tn_settle(&net);
    uint64_t committed = tn_status(&net, 1).hard_state.commit;
    assert_int_equal(committed, backup.index + 3);
    assert_int_equal(tn_status(&net, 3).last_index, committed);

    tn_restore(&net, 3, &backup);
    s3 = tn_status(&net, 3);
    assert_int_equal(s3.hard_state.term, old_term + 1);
    assert_int_equal(s3.hard_state.restore_term, old_term + 1);
    assert_int_equal(s3.last_index, backup.index);
    tn_crash(&net, 1);
    tn_heal(&net);
    tn_tick_all(&net, 100);
    assert_int_equal(tn_leader(&net), 0);
    assert_int_equal(stats_of(&net, 3).elections, 0);
    assert_int_equal(tn_status(&net, 3).hard_state.vote, 0);
    force_campaign(&net, 3);
    tn_settle(&net);
    assert_int_equal(tn_status(&net, 3).role, RAFT_FOLLOWER);
    /* 2 asks without pre-vote too: refused */
    struct raft_status s2 = tn_status(&net, 2);
    struct raft_message req = {.type = RAFT_MSG_VOTE,
                               .from = 2,
                               .to = 3,
                               .term = tn_status(&net, 3).hard_state.term + 1,
                               .index = s2.last_index,
                               .log_term = term_at(&net, 2, s2.last_index)};
    assert_int_equal(raft_step(tn_node(&net, 3)->r, &req), 0);
    tn_settle(&net);
    assert_int_equal(tn_status(&net, 3).hard_state.vote, 0);
    assert_int_not_equal(tn_status(&net, 2).role, RAFT_LEADER);

    tn_restart(&net, 1);
    for (int i = 0; i < 300 && tn_status(&net, 3).hard_state.restore_term != 0; i++)
        tn_tick_all(&net, 1);
    assert_int_equal(tn_leader(&net), 1);
    s3 = tn_status(&net, 3);
    assert_int_equal(s3.hard_state.restore_term, 0);
    assert_int_equal(stats_of(&net, 3).restores_completed, 1);
    assert_true(s3.hard_state.commit > committed);
    for (uint64_t i = backup.index + 1; i <= committed; i++) {
        assert_int_equal(term_at(&net, 3, i), term_at(&net, 1, i));
        assert_int_equal(tn_node(&net, 3)->applied_hash[i], tn_node(&net, 1)->applied_hash[i]);
    }
    /* caught up, it votes again: with 1 down, 2 and 3 elect a leader */
    tn_crash(&net, 1);
    for (int i = 0; i < 300 && tn_leader(&net) == 0; i++)
        tn_tick_all(&net, 1);
    assert_int_not_equal(tn_leader(&net), 0);
    tn_free(&net);
}

/* I14, liveness: the restored node's term is above the leader's, and it
 * may not campaign; without pre-vote or check-quorum a follower ignores a
 * lower-term leader, so the restored one answers it with its term instead:
 * the leader steps down, the next leads in a term the restored node
 * follows, and it catches up. */
static void test_restored_node_deposes_a_lower_term_leader_to_catch_up(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, tweak_plain);
    elect(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 2, 8), 0);
    tn_settle(&net);
    uint64_t term = tn_status(&net, 1).hard_state.term;
    struct raft_status s3 = tn_status(&net, 3);
    struct raft_snapshot_meta backup = {.index = s3.hard_state.commit,
                                        .term = term_at(&net, 3, s3.hard_state.commit),
                                        .config = s3.config};
    assert_int_equal(tn_propose(&net, 1, 2, 8), 0);
    tn_settle(&net);
    tn_restore(&net, 3, &backup);
    assert_int_equal(tn_status(&net, 3).hard_state.restore_term, term + 1);
    for (int i = 0; i < 300 && tn_status(&net, 3).hard_state.restore_term != 0; i++) {
        tn_tick(&net, 1); /* only the leader's clock runs: its heartbeats */
        tn_settle(&net);
        if (tn_leader(&net) == 0)
            tn_tick_all(&net, 1);
    }
    assert_int_equal(tn_status(&net, 3).hard_state.restore_term, 0);
    assert_true(tn_status(&net, tn_leader(&net)).hard_state.term > term);
    assert_int_equal(tn_status(&net, 3).hard_state.commit, tn_status(&net, 1).hard_state.commit);
    tn_free(&net);
}

/* I14 kept across a restart (it is hard state), and a restored node whose
 * storage claims a restore term above its term is refused as corrupt. */
static void test_restore_term_survives_restart_and_is_checked(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 2, 8), 0);
    tn_settle(&net);
    struct raft_status s3 = tn_status(&net, 3);
    struct raft_snapshot_meta backup = {.index = s3.hard_state.commit,
                                        .term = term_at(&net, 3, s3.hard_state.commit),
                                        .config = s3.config};
    tn_isolate(&net, 3);
    tn_restore(&net, 3, &backup);
    uint64_t restore_term = tn_status(&net, 3).hard_state.restore_term;
    assert_true(restore_term > 0);
    tn_tick_all(&net, 50); /* cut off: nothing to catch up from */
    tn_restart(&net, 3);
    assert_int_equal(tn_status(&net, 3).hard_state.restore_term, restore_term);
    tn_tick_all(&net, 50);
    assert_int_equal(stats_of(&net, 3).elections, 0);

    struct raft_hard_state bad = {.term = 4, .commit = backup.index, .restore_term = 5};
    struct raft_mem_storage *ms = raft_mem_storage_create(true);
    uint8_t data[16] = {0};
    assert_int_equal(raft_mem_storage_stage_chunk(ms, 0, data, sizeof data), 0);
    assert_int_equal(raft_mem_storage_install_staged(ms, &backup), 0);
    raft_mem_storage_set_hard_state(ms, &bad);
    struct raft_storage st;
    raft_mem_storage_interface(ms, &st);
    struct raft_options opt;
    raft_options_default(&opt);
    opt.id = 3;
    opt.seed = 1;
    struct raft *r = NULL;
    assert_int_equal(raft_create(&r, &opt, &st), EHR_ECORRUPT);
    bad.term = 5;
    raft_mem_storage_set_hard_state(ms, &bad);
    assert_int_equal(raft_create(&r, &opt, &st), 0);
    raft_destroy(r);
    raft_mem_storage_destroy(ms);

    tn_heal(&net);
    for (int i = 0; i < 300 && tn_status(&net, 3).hard_state.restore_term != 0; i++)
        tn_tick_all(&net, 1);
    assert_int_equal(tn_status(&net, 3).hard_state.restore_term, 0);
    tn_free(&net);
}

static void test_restart_recovers_persisted_state(void **state)
{
    struct tn_net net;
    tn_init(&net, 4, 3, NULL);
    elect(&net, 1);
    assert_int_equal(raft_propose_config(tn_node(&net, 1)->r, RAFT_CONFIG_ADD_LEARNER, 4), 0);
    assert_int_equal(tn_propose(&net, 1, 5, 8), 0);
    tn_settle(&net);
    struct raft_status before = tn_status(&net, 2);
    tn_restart(&net, 2);
    struct raft_status after = tn_status(&net, 2);
    assert_int_equal(after.hard_state.term, before.hard_state.term);
    assert_int_equal(after.hard_state.vote, before.hard_state.vote);
    assert_int_equal(after.hard_state.commit, before.hard_state.commit);
    assert_int_equal(after.last_index, before.last_index);
    assert_int_equal(after.config_index, before.config_index);
    assert_memory_equal(&after.config, &before.config, sizeof after.config);
    assert_int_equal(after.role, RAFT_FOLLOWER);
    tn_free(&net);
}

/* Tick node id (no settling, no batch processed) until it leads. */
static void tick_until_leader(struct tn_net *net, raft_id id)
{
    for (int i = 0; i < 100 && tn_status(net, id).role != RAFT_LEADER; i++)
        assert_int_equal(raft_tick(tn_node(net, id)->r), 0);
    assert_int_equal(tn_status(net, id).role, RAFT_LEADER);
}

/* I2, I5: a sole voter wins its election at once, in the batch that raises
 * its term. Its appends carry that term, so they must not leave before the
 * term is durable: a crash in between would let it win the same term again
 * with different entries at the same indices, and a learner that got the
 * first appends would apply an entry that was never committed. */
static void test_sole_voter_appends_wait_for_durable_term(void **state)
{
    struct tn_net net;
    tn_init(&net, 2, 1, tweak_plain);
    tick_until_leader(&net, 1);
    tn_settle(&net);
    assert_int_equal(raft_propose_config(tn_node(&net, 1)->r, RAFT_CONFIG_ADD_LEARNER, 2), 0);
    tn_settle(&net);
    tn_tick_all(&net, 2);
    assert_int_equal(tn_node(&net, 2)->applied, tn_node(&net, 1)->applied);

    /* restart the voter: it wins term T at once and proposes X */
    tn_restart(&net, 1);
    uint64_t durable_term = tn_status(&net, 1).hard_state.term;
    tick_until_leader(&net, 1);
    uint64_t term = tn_status(&net, 1).hard_state.term;
    assert_true(term > durable_term);
    uint8_t x = 'X';
    assert_int_equal(raft_propose(tn_node(&net, 1)->r, &x, 1), 0);
    struct raft_ready rd;
    assert_int_equal(raft_ready_get(tn_node(&net, 1)->r, &rd), 0);
    assert_true(rd.hard_state_changed);
    for (size_t i = 0; i < rd.message_count; i++)
        assert_true(rd.messages[i].term <= durable_term); /* only what is durable leaves */
    /* the messages go out, then the voter crashes before persisting */
    for (size_t i = 0; i < rd.message_count; i++)
        assert_int_equal(raft_step(tn_node(&net, 2)->r, &rd.messages[i]), 0);
    tn_crash(&net, 1);
    tn_settle(&net);
    tn_drop_queue(&net);

    /* it wins the same term again and commits Y where X was */
    tn_restart(&net, 1);
    tick_until_leader(&net, 1);
    assert_int_equal(tn_status(&net, 1).hard_state.term, term);
    uint8_t y = 'Y';
    assert_int_equal(raft_propose(tn_node(&net, 1)->r, &y, 1), 0);
    tn_settle(&net);
    tn_tick_all(&net, 3);
    uint64_t applied = tn_node(&net, 1)->applied;
    assert_int_equal(tn_node(&net, 2)->applied, applied);
    for (uint64_t i = 1; i <= applied; i++)
        assert_int_equal(tn_node(&net, 2)->applied_hash[i], tn_node(&net, 1)->applied_hash[i]);
    tn_free(&net);
}

/*
 * A crash tears node id's next write after its snapshot and entries, before
 * its hard state: the order raft.h allows ("snapshot, entries, then hard
 * state ... so that a torn write never leaves a commit index beyond the
 * log"), and what a node whose snapshot install and log write are separate
 * transactions leaves when it stops between them. Returns the highest term
 * the batch made durable in the log.
 */
static uint64_t crash_before_hard_state(struct tn_net *net, raft_id id)
{
    struct tn_node *n = tn_node(net, id);
    struct raft_ready rd;
    assert_int_equal(raft_ready_get(n->r, &rd), 0);
    assert_true(rd.hard_state_changed);
    uint64_t term = 0;
    if (rd.snapshot != NULL && rd.snapshot->install)
        term = rd.snapshot->meta.term;
    if (rd.entry_count > 0)
        term = rd.entries[rd.entry_count - 1].term;
    assert_int_equal(term, rd.hard_state.term); /* the batch raised the term */
    struct raft_ready torn = rd;
    torn.hard_state_changed = false;
    assert_int_equal(raft_mem_storage_persist(n->ms, &torn), 0);
    if (rd.snapshot != NULL && rd.snapshot->install)
        n->applied = rd.snapshot->meta.index; /* the state came with it */
    tn_crash(net, id);
    return term;
}

/* Restarted after crash_before_hard_state: node id holds entries (or a
 * snapshot) of `term` while its persisted hard state is older. Its term must
 * not be below its log's (I1): its vote requests must be ones a correct node
 * sends (last log term <= term), and it must be able to win. */
static void check_restart_takes_term_of_log(struct tn_net *net, raft_id id, uint64_t term)
{
    tn_restart(net, id);
    struct raft_status st = tn_status(net, id);
    assert_true(st.hard_state.term >= term);
    assert_int_equal(st.hard_state.vote, 0); /* no vote of that term ever left */
    tn_heal(net);
    for (int i = 0; i < 100 && tn_status(net, id).role == RAFT_FOLLOWER; i++)
        tn_tick(net, id);
    assert_int_equal(tn_status(net, id).role, RAFT_CANDIDATE);
    assert_true(tn_process(net, id));
    size_t votes = 0;
    for (size_t i = 0; i < net->queue_count; i++) {
        const struct raft_message *m = net->queue[i];
        if (m->type != RAFT_MSG_VOTE || m->from != id)
            continue;
        votes++;
        assert_true(m->log_term == term);
        assert_true(m->log_term <= m->term); /* else every peer refuses it (EHR_EPROTO) */
    }
    assert_true(votes > 0);
    tn_settle(net);
    assert_int_equal(tn_status(net, id).role, RAFT_LEADER);
}

/* Isolate node 3, then elect 2 and 1 in turn: node 1 leads a term at least
 * two above node 3's, with an entry of each of those terms node 3 lacks. */
static uint64_t leave_node_3_two_terms_behind(struct tn_net *net)
{
    tn_init(net, 3, 3, tweak_plain);
    elect(net, 1);
    tn_settle(net);
    tn_isolate(net, 3);
    elect(net, 2);
    elect(net, 1);
    tn_settle(net);
    uint64_t term = tn_status(net, 1).hard_state.term;
    assert_true(term >= tn_status(net, 3).hard_state.term + 2);
    return term;
}

/* I1 across a torn write (simulator seed 6000143584 --nodes 7): a follower
 * two terms behind takes an append of the leader's term, and a crash keeps
 * the entries but tears the hard state that carried the term. Restarted at
 * the old term, it campaigned in a term below its last entry's, and every
 * peer refused its vote requests. */
static void test_torn_hard_state_after_entries_restarts_at_log_term(void **state)
{
    struct tn_net net;
    uint64_t term = leave_node_3_two_terms_behind(&net);
    struct raft_status n3 = tn_status(&net, 3);
    struct raft_status n1 = tn_status(&net, 1);
    struct raft_entry ents[8];
    size_t count = (size_t)(n1.last_index - n3.last_index);
    assert_true(count > 0 && count <= 8);
    for (size_t i = 0; i < count; i++)
        ents[i] = entry_at(&net, 1, n3.last_index + 1 + i);
    struct raft_message m = {.type = RAFT_MSG_APPEND,
                             .from = 1,
                             .to = 3,
                             .term = term,
                             .index = n3.last_index,
                             .log_term = term_at(&net, 3, n3.last_index),
                             .commit = n1.hard_state.commit,
                             .entries = ents,
                             .entry_count = (uint32_t)count};
    assert_int_equal(raft_step(tn_node(&net, 3)->r, &m), 0);
    assert_int_equal(crash_before_hard_state(&net, 3), term);
    check_restart_takes_term_of_log(&net, 3, term);
    tn_free(&net);
}

/* The same with a snapshot: the install is durable, the hard state of the
 * term that brought it is not (the node installs a received snapshot in its
 * own transaction, before the log write that carries the hard state). */
static void test_torn_hard_state_after_snapshot_restarts_at_snapshot_term(void **state)
{
    struct tn_net net;
    uint64_t term = leave_node_3_two_terms_behind(&net);
    assert_int_equal(tn_propose(&net, 1, 3, 8), 0);
    tn_settle(&net);
    take_snapshot(&net, 1);
    struct raft_storage st;
    raft_mem_storage_interface(tn_node(&net, 1)->ms, &st);
    struct raft_snapshot_meta meta;
    uint64_t size = 0;
    assert_int_equal(st.snapshot_meta(st.ctx, &meta, &size), 0);
    assert_int_equal(meta.term, term);
    assert_true(meta.index > tn_status(&net, 3).last_index);
    const uint8_t *data = raft_mem_storage_snapshot_data(tn_node(&net, 1)->ms, &size);
    struct raft_message m = {.type = RAFT_MSG_SNAPSHOT,
                             .from = 1,
                             .to = 3,
                             .term = term,
                             .index = meta.index,
                             .snapshot = &meta,
                             .offset = 0,
                             .size = (uint32_t)size,
                             .data = data,
                             .done = true};
    assert_int_equal(raft_step(tn_node(&net, 3)->r, &m), 0);
    assert_int_equal(crash_before_hard_state(&net, 3), term);
    check_restart_takes_term_of_log(&net, 3, term);
    tn_free(&net);
}

/* ---- limits, each at its edge ---- */

static void test_options_validated_at_their_edges(void **state)
{
    struct raft_options o;
    raft_options_default(&o);
    assert_int_equal(raft_options_validate(&o), EHR_EINVAL); /* id 0 */
    o.id = 1;
    assert_int_equal(raft_options_validate(&o), 0);
#define EDGE(field, good, bad)                                                                     \
    do {                                                                                           \
        struct raft_options t = o;                                                                 \
        t.field = (good);                                                                          \
        assert_int_equal(raft_options_validate(&t), 0);                                            \
        t.field = (bad);                                                                           \
        assert_int_equal(raft_options_validate(&t), EHR_EINVAL);                                   \
    } while (0)
    EDGE(election_ticks, RAFT_ELECTION_TICKS_MIN, RAFT_ELECTION_TICKS_MIN - 1);
    EDGE(election_ticks, RAFT_ELECTION_TICKS_MAX, RAFT_ELECTION_TICKS_MAX + 1);
    EDGE(heartbeat_ticks, o.election_ticks - 1, o.election_ticks);
    EDGE(heartbeat_ticks, 1, 0);
    EDGE(append_entries_max, RAFT_APPEND_ENTRIES_MAX, RAFT_APPEND_ENTRIES_MAX + 1);
    EDGE(append_entries_max, 1, 0);
    EDGE(append_bytes_max, RAFT_APPEND_BYTES_MAX, RAFT_APPEND_BYTES_MAX + 1);
    EDGE(inflight_max, RAFT_INFLIGHT_MAX, RAFT_INFLIGHT_MAX + 1);
    EDGE(inflight_max, 1, 0);
    EDGE(inflight_bytes_max, RAFT_INFLIGHT_BYTES_MAX, RAFT_INFLIGHT_BYTES_MAX + 1);
    EDGE(proposal_bytes_max, RAFT_PROPOSAL_BYTES_MAX, RAFT_PROPOSAL_BYTES_MAX + 1);
    EDGE(uncommitted_bytes_max, RAFT_UNCOMMITTED_BYTES_MAX, RAFT_UNCOMMITTED_BYTES_MAX + 1);
    EDGE(uncommitted_bytes_max, 1, 0);
    EDGE(snapshot_chunk_bytes, RAFT_SNAPSHOT_CHUNK_BYTES_MIN, RAFT_SNAPSHOT_CHUNK_BYTES_MIN - 1);
    EDGE(snapshot_chunk_bytes, RAFT_SNAPSHOT_CHUNK_BYTES_MAX, RAFT_SNAPSHOT_CHUNK_BYTES_MAX + 1);
    EDGE(reads_pending_max, RAFT_READS_PENDING_MAX, RAFT_READS_PENDING_MAX + 1);
    EDGE(reads_pending_max, 1, 0);
    EDGE(apply_bytes_max, RAFT_APPLY_BYTES_MAX, RAFT_APPLY_BYTES_MAX + 1);
#undef EDGE
}

static void tweak_small_proposals(struct raft_options *opt)
{
    opt->proposal_bytes_max = 100;
    opt->uncommitted_bytes_max = 1000;
}

/* proposal_bytes_max at its edge, and back-pressure at uncommitted_bytes_max. */
static void test_proposal_limits_give_back_pressure(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, tweak_small_proposals);
    elect(&net, 1);
    struct raft *l = tn_node(&net, 1)->r;
    uint8_t buf[101] = {0};
    assert_int_equal(raft_propose(l, buf, 101), EHR_ETOOBIG);
    tn_isolate(&net, 1);
    /* each 100-byte proposal costs 100 + RAFT_ENTRY_OVERHEAD_BYTES = 164 */
    int accepted = 0;
    while (raft_propose(l, buf, 100) == 0)
        accepted++;
    assert_int_equal(accepted, 1000 / (100 + RAFT_ENTRY_OVERHEAD_BYTES));
    assert_int_equal(raft_propose(l, buf, 100), EHR_EAGAIN);
    assert_true(tn_status(&net, 1).uncommitted_bytes <= 1000);
    tn_heal(&net);
    tn_settle(&net);
    tn_tick_all(&net, 1);
    assert_int_equal(tn_status(&net, 1).uncommitted_bytes, 0);
    assert_int_equal(raft_propose(l, buf, 100), 0);
    tn_free(&net);
}

static void tweak_small_window(struct raft_options *opt)
{
    opt->inflight_max = 4;
    opt->append_entries_max = 3;
    opt->append_bytes_max = 100;
}

static bool drop_acks(void *ctx, const struct raft_message *m)
{
    (void)ctx;
    return m->type == RAFT_MSG_APPEND_RESP;
}

/* Per-message entry and byte bounds, and the in-flight window per follower. */
static void test_appends_bounded_per_message_and_in_flight(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, tweak_small_window);
    elect(&net, 1);
    assert_int_equal(tn_propose(&net, 1, 40, 30), 0);
    net.filter = drop_acks;
    assert_true(tn_process(&net, 1));
    size_t to2 = 0;
    for (size_t i = 0; i < net.queue_count; i++) {
        const struct raft_message *m = net.queue[i];
        if (m->type != RAFT_MSG_APPEND)
            continue;
        assert_true(m->entry_count <= 3);
        uint64_t bytes = 0;
        for (uint32_t k = 0; k < m->entry_count; k++)
            bytes += m->entries[k].size;
        assert_true(bytes <= 100);
        to2 += m->to == 2;
    }
    assert_int_equal(to2, 4); /* the window: inflight_max appends, then wait */
    struct raft_progress_info p;
    assert_int_equal(raft_progress_get(tn_node(&net, 1)->r, 2, &p), 0);
    assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
    assert_int_equal(p.inflight_count, 4);
    net.filter = NULL;
    tn_settle(&net);
    tn_tick_all(&net, 3);
    assert_int_equal(tn_node(&net, 2)->applied, tn_node(&net, 1)->applied);
    assert_int_equal(tn_node(&net, 1)->normal_applied, 40);
    tn_free(&net);
}

/* A caller that never collects its batches does not grow memory without
 * bound: past RAFT_OUTBOX_MAX queued messages, new ones are dropped (Raft
 * tolerates loss) and counted. */
static void test_outbox_bounded_when_batches_are_not_collected(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    struct raft *f = tn_node(&net, 2)->r;
    struct raft_message hb = {
        .type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = tn_status(&net, 2).hard_state.term};
    for (int i = 0; i < RAFT_OUTBOX_MAX + 10; i++)
        assert_int_equal(raft_step(f, &hb), 0);
    assert_int_equal(stats_of(&net, 2).messages_dropped, 10);
    struct raft_ready rd;
    assert_int_equal(raft_ready_get(f, &rd), 0);
    assert_int_equal(rd.message_count + rd.message_after_persist_count, RAFT_OUTBOX_MAX);
    assert_int_equal(raft_mem_storage_persist(tn_node(&net, 2)->ms, &rd), 0);
    assert_int_equal(raft_ready_advance(f), 0);
    tn_free(&net);
}

/* RAFT_MEMBERS_MAX members at most: the next addition is refused. */
static void test_membership_bounded_at_members_max(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    struct raft *l = tn_node(&net, 1)->r;
    for (raft_id id = 100; id < 100 + RAFT_MEMBERS_MAX - 3; id++) {
        assert_int_equal(raft_propose_config(l, RAFT_CONFIG_ADD_LEARNER, id), 0);
        tn_settle(&net);
    }
    struct raft_status st = tn_status(&net, 1);
    assert_int_equal(st.config.voter_count + st.config.learner_count, RAFT_MEMBERS_MAX);
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_ADD_LEARNER, 999), EHR_EFULL);
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_REMOVE, 100), 0);
    tn_settle(&net);
    assert_int_equal(raft_propose_config(l, RAFT_CONFIG_ADD_LEARNER, 999), 0);
    tn_free(&net);
}

/* A term is bounded (RAFT_TERM_MAX): a peer claiming a term past it is
 * refused, so no node adopts a term whose next campaign would wrap to 0 (a
 * failed assertion on every node the term reaches, again at each restart).
 * At the bound, a node is accepted but no longer campaigns. */
static void test_term_bounded_at_term_max(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, tweak_plain);
    elect(&net, 1);
    tn_isolate(&net, 1);
    struct raft *f = tn_node(&net, 2)->r;
    uint64_t t = tn_status(&net, 2).hard_state.term;
    struct raft_message hb = {
        .type = RAFT_MSG_HEARTBEAT, .from = 3, .to = 2, .term = RAFT_TERM_MAX + 1};
    assert_int_equal(raft_step(f, &hb), EHR_EPROTO);
    hb.term = UINT64_MAX;
    assert_int_equal(raft_step(f, &hb), EHR_EPROTO);
    struct raft_message vote = vote_req(3, 2, UINT64_MAX, 100, 1);
    assert_int_equal(raft_step(f, &vote), EHR_EPROTO);
    assert_int_equal(tn_status(&net, 2).hard_state.term, t);
    hb.term = RAFT_TERM_MAX;
    assert_int_equal(raft_step(f, &hb), 0);
    assert_int_equal(tn_status(&net, 2).hard_state.term, RAFT_TERM_MAX);
    tn_settle(&net);
    for (int i = 0; i < 100; i++)
        assert_int_equal(raft_tick(f), 0); /* times out, yet never campaigns past the bound */
    tn_settle(&net);
    assert_int_equal(tn_status(&net, 2).hard_state.term, RAFT_TERM_MAX);
    assert_int_equal(tn_status(&net, 2).role, RAFT_FOLLOWER);
    tn_free(&net);
    /* a persisted term past the bound is corrupt storage */
    struct raft_mem_storage *ms = raft_mem_storage_create(true);
    struct raft_storage st;
    raft_mem_storage_interface(ms, &st);
    struct raft_options opt;
    raft_options_default(&opt);
    opt.id = 1;
    struct raft *r = NULL;
    raft_mem_storage_set_hard_state(ms, &(struct raft_hard_state){.term = RAFT_TERM_MAX + 1});
    assert_int_equal(raft_create(&r, &opt, &st), EHR_ECORRUPT);
    raft_mem_storage_set_hard_state(ms, &(struct raft_hard_state){.term = RAFT_TERM_MAX});
    assert_int_equal(raft_create(&r, &opt, &st), 0);
    raft_destroy(r);
    raft_mem_storage_destroy(ms);
}

/* Whatever a peer sends is checked before use: bad messages change nothing. */
static void test_malformed_messages_are_refused(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    struct raft *f = tn_node(&net, 2)->r;
    uint64_t t = tn_status(&net, 2).hard_state.term;
    struct raft_status before = tn_status(&net, 2);
    uint8_t junk[4] = {9, 9, 9, 9};
    struct raft_entry good = {.term = t, .index = 3, .type = RAFT_ENTRY_NORMAL};
    struct raft_entry gap = {.term = t, .index = 5, .type = RAFT_ENTRY_NORMAL};
    struct raft_entry future = {.term = t + 1, .index = 3, .type = RAFT_ENTRY_NORMAL};
    struct raft_entry badconf = {
        .term = t, .index = 3, .type = RAFT_ENTRY_CONFIG, .size = 4, .data = junk};
    struct raft_entry nodata = {.term = t, .index = 3, .type = RAFT_ENTRY_NORMAL, .size = 4};
    struct raft_entry badtype = {.term = t, .index = 3, .type = (enum raft_entry_type)9};
    struct raft_message base = {.type = RAFT_MSG_APPEND,
                                .from = 1,
                                .to = 2,
                                .term = t,
                                .index = 2,
                                .log_term = t,
                                .entries = &good,
                                .entry_count = 1};
    struct raft_message bad[12];
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad); i++)
        bad[i] = base;
    bad[0].to = 3;             /* not for us */
    bad[1].from = 2;           /* from ourselves */
    bad[2].entries = &gap;     /* not consecutive */
    bad[3].entries = &future;  /* entry term beyond the message's */
    bad[4].entries = &badconf; /* configuration that does not decode */
    bad[5].entries = &nodata;  /* size without data */
    bad[6].entries = &badtype; /* unknown entry type */
    bad[7].entry_count = RAFT_APPEND_ENTRIES_MAX + 1;
    bad[8].type = (enum raft_message_type)99; /* unknown type */
    bad[9].term = 0;                          /* append without a term */
    bad[10].type = RAFT_MSG_SNAPSHOT;         /* snapshot without meta */
    bad[10].entries = NULL;
    bad[10].entry_count = 0;
    bad[11].log_term = t + 1; /* previous term beyond the message's */
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad); i++)
        assert_int_equal(raft_step(f, &bad[i]), EHR_EPROTO);
    assert_int_equal(raft_step(f, NULL), EHR_EPROTO);
    struct raft_status after = tn_status(&net, 2);
    assert_int_equal(after.last_index, before.last_index);
    assert_int_equal(after.hard_state.term, before.hard_state.term);
    assert_false(raft_ready_pending(f));
    tn_free(&net);
}

/* The batch protocol is enforced: no input while a batch is out. */
static void test_no_input_between_ready_and_advance(void **state)
{
    struct tn_net net;
    tn_init(&net, 3, 3, NULL);
    elect(&net, 1);
    struct raft *l = tn_node(&net, 1)->r;
    assert_int_equal(tn_propose(&net, 1, 1, 8), 0);
    struct raft_ready rd;
    assert_int_equal(raft_ready_get(l, &rd), 0);
    uint8_t b = 0;
    assert_int_equal(raft_propose(l, &b, 1), EHR_EINVAL);
    assert_int_equal(raft_tick(l), EHR_EINVAL);
    struct raft_ready again;
    assert_int_equal(raft_ready_get(l, &again), EHR_EINVAL);
    assert_int_equal(raft_mem_storage_persist(tn_node(&net, 1)->ms, &rd), 0);
    assert_int_equal(raft_ready_advance(l), 0);
    assert_int_equal(raft_ready_advance(l), EHR_EINVAL);
    assert_int_equal(raft_tick(l), 0);
    tn_free(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_election_elects_one_leader),
        cmocka_unit_test(test_leader_first_appends_empty_entry_of_its_term),
        cmocka_unit_test(test_replicated_proposals_apply_everywhere_in_order),
        cmocka_unit_test(test_proposal_on_follower_is_refused),
        cmocka_unit_test(test_leader_and_candidate_step_down_on_higher_term),
        cmocka_unit_test(test_node_grants_at_most_one_vote_per_term),
        cmocka_unit_test(test_vote_refused_to_candidate_with_less_up_to_date_log),
        cmocka_unit_test(test_append_acknowledged_only_after_persisting),
        cmocka_unit_test(test_conflicting_follower_log_repaired_with_fast_backoff),
        cmocka_unit_test(test_old_term_entry_not_committed_by_counting_replicas),
        cmocka_unit_test(test_leader_cut_off_from_quorum_steps_down_and_cannot_commit),
        cmocka_unit_test(test_prevote_from_partitioned_node_does_not_disturb_leader),
        cmocka_unit_test(test_prevote_and_checkquorum_healed_cluster_elects_leader),
        cmocka_unit_test(test_follower_behind_compacted_log_receives_snapshot),
        cmocka_unit_test(test_learner_catches_up_then_is_promoted),
        cmocka_unit_test(test_learner_is_sent_committed_entries_only),
        cmocka_unit_test(test_promote_lag_max_at_its_top),
        cmocka_unit_test(test_leader_removes_itself_and_hands_over),
        cmocka_unit_test(test_removed_leader_campaigns_until_its_removal_commits),
        cmocka_unit_test(test_removed_server_does_not_depose_leader_without_prevote_or_checkquorum),
        cmocka_unit_test(test_late_lower_term_leader_lacks_higher_term_commits_and_commits_nothing),
        cmocka_unit_test(test_leadership_transfer_completes_or_times_out),
        cmocka_unit_test(test_read_index_waits_for_own_term_commit),
        cmocka_unit_test(test_read_confirmed_only_by_rounds_sent),
        cmocka_unit_test(test_restored_node_votes_only_once_caught_up),
        cmocka_unit_test(test_restored_node_deposes_a_lower_term_leader_to_catch_up),
        cmocka_unit_test(test_restore_term_survives_restart_and_is_checked),
        cmocka_unit_test(test_restart_recovers_persisted_state),
        cmocka_unit_test(test_sole_voter_appends_wait_for_durable_term),
        cmocka_unit_test(test_torn_hard_state_after_entries_restarts_at_log_term),
        cmocka_unit_test(test_torn_hard_state_after_snapshot_restarts_at_snapshot_term),
        cmocka_unit_test(test_options_validated_at_their_edges),
        cmocka_unit_test(test_proposal_limits_give_back_pressure),
        cmocka_unit_test(test_appends_bounded_per_message_and_in_flight),
        cmocka_unit_test(test_outbox_bounded_when_batches_are_not_collected),
        cmocka_unit_test(test_membership_bounded_at_members_max),
        cmocka_unit_test(test_term_bounded_at_term_max),
        cmocka_unit_test(test_malformed_messages_are_refused),
        cmocka_unit_test(test_no_input_between_ready_and_advance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
