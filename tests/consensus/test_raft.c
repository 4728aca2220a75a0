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

static __attribute__((unused)) void tweak_plain(struct raft_options *opt)
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

/* Campaign node id until it leads (other nodes only answer). */
static void elect(struct tn_net *net, raft_id id)
{
    for (int i = 0; i < 10; i++) {
        tn_settle(net);
        if (tn_status(net, id).role == RAFT_LEADER)
            return;
        force_campaign(net, id);
        tn_settle(net);
        if (tn_status(net, id).role == RAFT_LEADER)
            return;
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

static __attribute__((unused)) uint64_t term_at(struct tn_net *net, raft_id id, uint64_t index)
{
    uint64_t t = 0;
    assert_int_equal(raft_term_at(tn_node(net, id)->r, index, &t), 0);
    return t;
}

/* Messages queued in the network, matching type/from/to (0 = any). */
static __attribute__((unused)) size_t queued(struct tn_net *net, enum raft_message_type type,
                                             raft_id from, raft_id to,
                                             const struct raft_message **first)
{
    size_t n = 0;
    for (size_t i = 0; i < net->queue_count; i++) {
        const struct raft_message *m = net->queue[i];
        if (m->type == type && (from == 0 || m->from == from) && (to == 0 || m->to == to)) {
            if (n == 0 && first != NULL)
                *first = m;
            n++;
        }
    }
    return n;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_election_elects_one_leader),
        cmocka_unit_test(test_leader_first_appends_empty_entry_of_its_term),
        cmocka_unit_test(test_replicated_proposals_apply_everywhere_in_order),
        cmocka_unit_test(test_proposal_on_follower_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
