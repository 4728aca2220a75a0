/*
 * test_health - the rule of the node's health (node/health.c,
 * node__health_judge) at its edges: SERVING needs a known leader, an
 * applied index at most NODE_HEALTH_APPLY_LAG_MAX below the commit index
 * the node knows, no divergence and no stop; the reason named is the first
 * that holds, in the enum's order. The service over the wire is tested by
 * test_cluster (tests/node/interop_health.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "node_internal.h"

enum { COMMIT = 1000 };

/* A healthy node's facts: a leader, everything committed applied. */
static struct node__health_facts healthy(void)
{
    return (struct node__health_facts){
        .leader_known = true, .commit_index = COMMIT, .applied_index = COMMIT};
}

static void test_a_node_with_a_leader_that_applied_everything_serves(void **state)
{
    (void)state;
    struct node__health_facts f = healthy();
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_OK);
    /* A fresh chain: nothing committed, nothing applied. */
    f.commit_index = f.applied_index = 0;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_OK);
}

static void test_an_apply_lag_up_to_the_bound_serves_one_more_does_not(void **state)
{
    (void)state;
    struct node__health_facts f = healthy();
    f.applied_index = COMMIT - NODE_HEALTH_APPLY_LAG_MAX;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_OK);
    f.applied_index = COMMIT - NODE_HEALTH_APPLY_LAG_MAX - 1;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_CATCHING_UP);
    f.applied_index = 0;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_CATCHING_UP);
}

static void test_applied_past_the_known_commit_is_no_lag(void **state)
{
    (void)state;
    /* A snapshot installed ahead of the commit index the node has heard of. */
    struct node__health_facts f = healthy();
    f.applied_index = COMMIT + NODE_HEALTH_APPLY_LAG_MAX + 1;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_OK);
    f.commit_index = 0;
    f.applied_index = UINT64_MAX;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_OK);
}

static void test_no_leader_is_not_serving(void **state)
{
    (void)state;
    struct node__health_facts f = healthy();
    f.leader_known = false;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_NO_LEADER);
    /* ... and says so before any lag. */
    f.applied_index = 0;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_NO_LEADER);
}

static void test_a_stopping_or_diverged_node_is_not_serving_whatever_else(void **state)
{
    (void)state;
    struct node__health_facts f = healthy();
    f.stopping = true;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_STOPPING);
    f.diverged = true; /* a diverged node stops too: divergence is named */
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_DIVERGED);
    f.stopping = false;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_DIVERGED);
    f.leader_known = false;
    f.applied_index = 0;
    assert_int_equal(node__health_judge(&f), NODE_HEALTH_DIVERGED);
}

static void test_every_reason_has_a_distinct_name(void **state)
{
    (void)state;
    const enum node__health_reason all[] = {NODE_HEALTH_OK, NODE_HEALTH_DIVERGED,
                                            NODE_HEALTH_STOPPING, NODE_HEALTH_NO_LEADER,
                                            NODE_HEALTH_CATCHING_UP};
    size_t count = sizeof all / sizeof all[0];
    for (size_t i = 0; i < count; i++) {
        assert_string_not_equal(node__health_reason_name(all[i]), "?");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(node__health_reason_name(all[i]),
                                    node__health_reason_name(all[j]));
    }
    assert_string_equal(node__health_reason_name(NODE_HEALTH_OK), "ok");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_node_with_a_leader_that_applied_everything_serves),
        cmocka_unit_test(test_an_apply_lag_up_to_the_bound_serves_one_more_does_not),
        cmocka_unit_test(test_applied_past_the_known_commit_is_no_lag),
        cmocka_unit_test(test_no_leader_is_not_serving),
        cmocka_unit_test(test_a_stopping_or_diverged_node_is_not_serving_whatever_else),
        cmocka_unit_test(test_every_reason_has_a_distinct_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
