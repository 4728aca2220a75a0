/*
 * test_submit_limit - submissions per second per client address
 * (node/submit_limit.c): the token bucket at its edges (a burst accepted,
 * the next refused with the wait until a token, refill with time and its
 * cap), one address never spending another's tokens, a new address never
 * refused its first submission however many others the table holds, and
 * the refusals counted and logged at most once per interval.
 *
 * The clock is the test's: every call names its millisecond.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "node_internal.h"

enum { RATE = 10, BURST = 5, T0 = 1000000 };

static struct node__submit_limit limit; /* large: not on the stack */

static struct rpc_peer_address v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
    struct rpc_peer_address p = {.family = AF_INET};
    p.bytes[0] = a, p.bytes[1] = b, p.bytes[2] = c, p.bytes[3] = d;
    return p;
}

static int lines;
static char last_line[1024];

static void sink(void *ctx, enum ehr_log_level level, const char *line)
{
    (void)ctx, (void)level;
    lines++;
    snprintf(last_line, sizeof last_line, "%s", line);
}

static int setup(void **state)
{
    (void)state;
    node__submit_limit_init(&limit, RATE, BURST);
    lines = 0;
    last_line[0] = '\0';
    ehr_log_set_sink(sink, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ehr_log_set_sink(NULL, NULL);
    return 0;
}

/* BURST submissions at one instant are taken; the next is refused with the
 * time until a token is back (1000 / RATE ms from empty). */
static void test_a_burst_is_taken_and_the_next_refused_with_its_wait(void **state)
{
    (void)state;
    struct rpc_peer_address a = v4(10, 0, 0, 1);
    for (int i = 0; i < BURST; i++)
        assert_int_equal(node__submit_limit_take(&limit, &a, T0), 0);
    assert_int_equal(node__submit_limit_take(&limit, &a, T0), 1000 / RATE);
    assert_int_equal(limit.refused_count, 1);
}

/* One token comes back every 1000 / RATE ms, not a millisecond sooner. */
static void test_tokens_come_back_at_the_rate(void **state)
{
    (void)state;
    struct rpc_peer_address a = v4(10, 0, 0, 1);
    for (int i = 0; i < BURST; i++)
        assert_int_equal(node__submit_limit_take(&limit, &a, T0), 0);
    const uint64_t period = 1000 / RATE;
    assert_int_equal(node__submit_limit_take(&limit, &a, T0 + period - 1), 1);
    assert_int_equal(node__submit_limit_take(&limit, &a, T0 + period), 0);
    assert_int_equal(node__submit_limit_take(&limit, &a, T0 + period), period);
    /* Half a period gives half a token: the wait says the other half. */
    assert_int_equal(node__submit_limit_take(&limit, &a, T0 + period + period / 2), period / 2);
}

/* However long a client stays quiet, it gets at most BURST at once. */
static void test_refill_stops_at_the_burst(void **state)
{
    (void)state;
    struct rpc_peer_address a = v4(10, 0, 0, 1);
    assert_int_equal(node__submit_limit_take(&limit, &a, T0), 0);
    uint64_t later = T0 + 3600ull * 1000;
    for (int i = 0; i < BURST; i++)
        assert_int_equal(node__submit_limit_take(&limit, &a, later), 0);
    assert_true(node__submit_limit_take(&limit, &a, later) > 0);
}

/* An address that spent its tokens does not spend another's: a second
 * IPv4 address, and an IPv6 address with the same first bytes, each get
 * their own burst. */
static void test_addresses_have_their_own_buckets(void **state)
{
    (void)state;
    struct rpc_peer_address a = v4(10, 0, 0, 1), b = v4(10, 0, 0, 2), c = a;
    c.family = AF_INET6;
    for (int i = 0; i < BURST; i++)
        assert_int_equal(node__submit_limit_take(&limit, &a, T0), 0);
    assert_true(node__submit_limit_take(&limit, &a, T0) > 0);
    for (int i = 0; i < BURST; i++)
        assert_int_equal(node__submit_limit_take(&limit, &b, T0), 0);
    for (int i = 0; i < BURST; i++)
        assert_int_equal(node__submit_limit_take(&limit, &c, T0), 0);
    assert_true(node__submit_limit_take(&limit, &b, T0) > 0);
}

static struct rpc_peer_address v6(const char *text)
{
    struct rpc_peer_address p = {.family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, text, p.bytes), 1);
    return p;
}

/* Empty A's bucket at T0, then say whether B may still submit then. */
static bool other_served_after(struct rpc_peer_address a, struct rpc_peer_address b)
{
    node__submit_limit_init(&limit, RATE, BURST);
    for (int i = 0; i < BURST; i++)
        assert_int_equal(node__submit_limit_take(&limit, &a, T0), 0);
    assert_true(node__submit_limit_take(&limit, &a, T0) > 0);
    return node__submit_limit_take(&limit, &b, T0) == 0;
}

/* An IPv6 client is its /64 (NODE_SUBMIT_IPV6_PREFIX_BYTES): another
 * address in the same /64 shares its bucket, one in the next /64 does not;
 * an IPv4-mapped address is its IPv4 address. */
static void test_an_ipv6_client_is_its_64(void **state)
{
    (void)state;
    assert_int_equal(NODE_SUBMIT_IPV6_PREFIX_BYTES, 8);
    assert_false(other_served_after(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:ffff:ffff:ffff:ffff")));
    assert_false(other_served_after(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:8000::")));
    assert_true(other_served_after(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1")));
    assert_true(other_served_after(v6("2001:db8:1:2::1"), v6("2001:db9:1:2::1")));
    /* ::ffff:10.0.0.1 is 10.0.0.1, not the /64 every mapped address shares */
    assert_false(other_served_after(v6("::ffff:10.0.0.1"), v4(10, 0, 0, 1)));
    assert_true(other_served_after(v6("::ffff:10.0.0.1"), v6("::ffff:10.0.0.2")));
    assert_true(other_served_after(v4(10, 0, 0, 1), v4(10, 0, 0, 2)));
}

/* Four times as many addresses as the table has buckets, each emptying
 * its bucket at the same instant: every one still gets its first
 * submission (nobody is locked out by others filling the table). */
static void test_a_full_table_never_refuses_a_new_address(void **state)
{
    (void)state;
    size_t first_refused = 0;
    for (uint32_t i = 0; i < 4 * NODE_SUBMIT_BUCKETS; i++) {
        struct rpc_peer_address p = v4(10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i);
        first_refused += node__submit_limit_take(&limit, &p, T0) != 0;
        for (int k = 1; k < BURST; k++)
            node__submit_limit_take(&limit, &p, T0);
    }
    assert_int_equal(first_refused, 0);
}

/* Refusals are counted each and logged as one line per interval, naming
 * the limit, the count and the last address. */
static void test_refusals_are_logged_once_per_interval_with_their_count(void **state)
{
    (void)state;
    struct rpc_peer_address a = v4(10, 0, 0, 7);
    for (int i = 0; i < BURST; i++)
        node__submit_limit_take(&limit, &a, T0);
    for (int i = 0; i < 100; i++)
        node__submit_limit_take(&limit, &a, T0);
    assert_int_equal(limit.refused_count, 100);
    assert_int_equal(lines, 1); /* the first refusal */
    node__submit_limit_sweep(&limit, T0 + EHR_LOG_LIMIT_INTERVAL_MS - 1);
    assert_int_equal(lines, 1);
    node__submit_limit_sweep(&limit, T0 + EHR_LOG_LIMIT_INTERVAL_MS);
    assert_int_equal(lines, 2);
    assert_non_null(strstr(last_line, "limit=submit_rate_per_s"));
    assert_non_null(strstr(last_line, "count=99"));
    assert_non_null(strstr(last_line, "last_address=10.0.0.7"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_burst_is_taken_and_the_next_refused_with_its_wait,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_come_back_at_the_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refill_stops_at_the_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addresses_have_their_own_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_ipv6_client_is_its_64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_full_table_never_refuses_a_new_address, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refusals_are_logged_once_per_interval_with_their_count,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
