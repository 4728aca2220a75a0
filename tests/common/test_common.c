/* Unit tests for common/: error names, hex, allocation hooks, log lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

static void test_errors_have_names_and_text(void **state)
{
    for (int err = EHR_EINVAL; err < EHR_ERR_LAST_; err++) {
        assert_string_not_equal(ehr_errname(err), "UNKNOWN");
        assert_string_not_equal(ehr_strerror(err), "unknown error");
    }
    assert_string_equal(ehr_errname(EHR_ETOOBIG), "EHR_ETOOBIG");
    assert_string_equal(ehr_errname(-ENOENT), "ENOENT");
    assert_string_equal(ehr_strerror(0), "success");
    assert_string_equal(ehr_errname(EHR_ERR_LAST_), "UNKNOWN");
}

static void test_hex_round_trip(void **state)
{
    const uint8_t data[] = {0x00, 0x01, 0xab, 0xff};
    char hex[2 * sizeof data + 1];
    ehr_hex_encode(hex, data, sizeof data);
    assert_string_equal(hex, "0001abff");
    uint8_t back[sizeof data];
    assert_int_equal(ehr_hex_decode(back, sizeof back, "0001ABff"), 0);
    assert_memory_equal(back, data, sizeof data);
}

static void test_hex_rejects_bad_input(void **state)
{
    uint8_t out[2];
    assert_int_equal(ehr_hex_decode(out, sizeof out, "abc"), EHR_EINVAL);    /* short */
    assert_int_equal(ehr_hex_decode(out, sizeof out, "abcdef"), EHR_EINVAL); /* long */
    assert_int_equal(ehr_hex_decode(out, sizeof out, "zz00"), EHR_EINVAL);   /* not hex */
    assert_int_equal(ehr_hex_decode(out, sizeof out, NULL), EHR_EINVAL);
}

static void test_alloc_fault_injection(void **state)
{
    ehr_alloc_fail_after(1);
    void *first = ehr_try_malloc(16);
    assert_non_null(first);
    assert_null(ehr_try_malloc(16));
    ehr_alloc_fail_after(-1);
    void *third = ehr_try_malloc(16);
    assert_non_null(third);
    ehr_free(first);
    ehr_free(third);
}

static void test_alloc_largest_tracked(void **state)
{
    ehr_alloc_stats_reset();
    void *p = ehr_malloc(1000);
    void *q = ehr_malloc(10);
    assert_int_equal(ehr_alloc_largest_bytes(), 1000);
    ehr_free(p);
    ehr_free(q);
}

struct captured {
    char line[512];
    int count;
};

static void capture_sink(void *ctx, enum ehr_log_level level, const char *line)
{
    struct captured *c = ctx;
    snprintf(c->line, sizeof c->line, "%s", line);
    c->count++;
}

static void test_log_line_format_and_level(void **state)
{
    struct captured c = {0};
    ehr_log_set_sink(capture_sink, &c);
    ehr_log_set_level(EHR_LOG_INFO);
    ehr_log(EHR_LOG_DEBUG, "hidden", NULL);
    assert_int_equal(c.count, 0);
    ehr_log(EHR_LOG_WARN, "peer refused", "peer=%s reason=%s", "abcd", "not-a-member");
    assert_int_equal(c.count, 1);
    assert_non_null(
        strstr(c.line, "level=warn msg=\"peer refused\" peer=abcd reason=not-a-member"));
    assert_int_equal(strncmp(c.line, "ts=", 3), 0);
    enum ehr_log_level lvl;
    assert_int_equal(ehr_log_level_parse("error", &lvl), 0);
    assert_int_equal(lvl, EHR_LOG_ERROR);
    assert_int_equal(ehr_log_level_parse("loud", &lvl), EHR_EINVAL);
    ehr_log_set_sink(NULL, NULL);
}

/* The first event is logged at once, alone. */
static void test_log_limit_logs_the_first_event_at_once(void **state)
{
    (void)state;
    struct ehr_log_limit limit = {.interval_ms = 1000};
    uint64_t count = 0;
    assert_true(ehr_log_limit_hit(&limit, 5000, &count));
    assert_int_equal(count, 1);
}

/* Within the interval, events are held and counted; the first at the
 * interval's edge (not one millisecond before) is logged with them all. */
static void test_log_limit_holds_events_until_the_interval_edge(void **state)
{
    (void)state;
    struct ehr_log_limit limit = {.interval_ms = 1000};
    uint64_t count = 0;
    assert_true(ehr_log_limit_hit(&limit, 5000, &count));
    for (int i = 0; i < 3174; i++)
        assert_false(ehr_log_limit_hit(&limit, 5000 + (uint64_t)i % 999, &count));
    assert_false(ehr_log_limit_hit(&limit, 5999, &count));
    assert_true(ehr_log_limit_hit(&limit, 6000, &count));
    assert_int_equal(count, 3176);
    /* The count starts again with the line. */
    assert_true(ehr_log_limit_hit(&limit, 7000, &count));
    assert_int_equal(count, 1);
}

/* Events held when a burst ends are reported by a flush once their
 * interval has passed, not before; with nothing held, nothing is due. */
static void test_log_limit_flush_reports_the_end_of_a_burst(void **state)
{
    (void)state;
    struct ehr_log_limit limit = {.interval_ms = 1000};
    uint64_t count = 0;
    assert_int_equal(ehr_log_limit_due_ms(&limit), 0);
    assert_true(ehr_log_limit_hit(&limit, 0, &count));
    assert_int_equal(ehr_log_limit_due_ms(&limit), 0);
    assert_false(ehr_log_limit_hit(&limit, 10, &count));
    assert_false(ehr_log_limit_hit(&limit, 20, &count));
    assert_int_equal(ehr_log_limit_due_ms(&limit), 1000);
    assert_false(ehr_log_limit_flush(&limit, 999, &count));
    assert_true(ehr_log_limit_flush(&limit, 1000, &count));
    assert_int_equal(count, 2);
    assert_false(ehr_log_limit_flush(&limit, 5000, &count));
}

/* A limiter left at zero uses the named interval. */
static void test_log_limit_default_interval(void **state)
{
    (void)state;
    struct ehr_log_limit limit = {0};
    uint64_t count = 0;
    assert_true(ehr_log_limit_hit(&limit, 0, &count));
    assert_false(ehr_log_limit_hit(&limit, EHR_LOG_LIMIT_INTERVAL_MS - 1, &count));
    assert_true(ehr_log_limit_hit(&limit, EHR_LOG_LIMIT_INTERVAL_MS, &count));
    assert_int_equal(count, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_have_names_and_text),
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_hex_rejects_bad_input),
        cmocka_unit_test(test_alloc_fault_injection),
        cmocka_unit_test(test_alloc_largest_tracked),
        cmocka_unit_test(test_log_line_format_and_level),
        cmocka_unit_test(test_log_limit_logs_the_first_event_at_once),
        cmocka_unit_test(test_log_limit_holds_events_until_the_interval_edge),
        cmocka_unit_test(test_log_limit_flush_reports_the_end_of_a_burst),
        cmocka_unit_test(test_log_limit_default_interval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
