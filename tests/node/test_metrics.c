/*
 * test_metrics - the metrics endpoint's parts alone (node/metrics.h): the
 * text exposition (HELP and TYPE lines, escaping of label values and of
 * HELP, histogram buckets cumulative up to +Inf, _sum and _count), a whole
 * page checked line by line by a strict reader of the format, the page's
 * byte bound at its edge, and the HTTP server (GET, HEAD, 404, 405, 503
 * before the first publish, the connection bounds per address and on the
 * server, the idle timeout and the request memory at their edges, scrapes
 * while the loop side publishes). The endpoint on a running node,
 * checked by promtool, is in test_metrics_cluster.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics.h"

/* ---- a strict reader of the text format ---- */

static bool name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/*
 * Check TEXT as Prometheus text format 0.0.4 more strictly than the
 * format asks: every family has HELP then TYPE before its samples, once;
 * samples are of the family just declared; names and label names are
 * valid, label values use only the three escapes; values are numbers;
 * counters end in _total; a histogram's buckets rise to le="+Inf", which
 * equals its _count. Fails the test at the first fault, naming the line.
 */
static void check_exposition(const char *text, size_t len)
{
    char family[128] = "", type[16] = "";
    char seen[128][128];
    size_t seen_count = 0;
    double last_bucket = -1, inf_bucket = -1;
    size_t line_no = 0;
    const char *p = text, *end = text + len;
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        size_t n = (size_t)(nl - p);
        char line[1024];
        assert_true(n < sizeof line);
        memcpy(line, p, n);
        line[n] = '\0';
        line_no++;
        p = nl + 1;
        assert_true(n > 0); /* no blank lines */
        if (strncmp(line, "# HELP ", 7) == 0) {
            const char *name = line + 7;
            const char *sp = strchr(name, ' ');
            assert_non_null(sp);
            assert_true(name_ok(name, (size_t)(sp - name)));
            assert_true((size_t)(sp - name) < sizeof family);
            memcpy(family, name, (size_t)(sp - name));
            family[sp - name] = '\0';
            for (size_t i = 0; i < seen_count; i++)
                assert_string_not_equal(seen[i], family); /* one block per family */
            assert_true(seen_count < 128);
            snprintf(seen[seen_count++], sizeof seen[0], "%s", family);
            type[0] = '\0';
            /* HELP text: a backslash only as \\ or \n. */
            for (const char *c = sp + 1; *c; c++)
                if (*c == '\\') {
                    assert_true(c[1] == '\\' || c[1] == 'n');
                    c++;
                }
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            size_t fl = strlen(family);
            assert_true(fl > 0);
            assert_memory_equal(line + 7, family, fl); /* TYPE right after its HELP */
            assert_int_equal(line[7 + fl], ' ');
            const char *t = line + 8 + fl;
            assert_true(strcmp(t, "counter") == 0 || strcmp(t, "gauge") == 0 ||
                        strcmp(t, "histogram") == 0);
            snprintf(type, sizeof type, "%s", t);
            if (strcmp(type, "counter") == 0)
                assert_true(ends_with(family, fl, "_total"));
            last_bucket = inf_bucket = -1;
            continue;
        }
        assert_int_not_equal(line[0], '#'); /* no other comments */
        assert_true(type[0] != '\0');       /* a sample after its TYPE */
        size_t nl_name = strcspn(line, "{ ");
        assert_true(name_ok(line, nl_name));
        size_t fl = strlen(family);
        bool of_family = nl_name == fl && memcmp(line, family, fl) == 0;
        bool bucket = false, count = false;
        if (strcmp(type, "histogram") == 0) {
            of_family = false;
            bucket = nl_name == fl + 7 && memcmp(line, family, fl) == 0 &&
                     ends_with(line, nl_name, "_bucket");
            bool sum = nl_name == fl + 4 && memcmp(line, family, fl) == 0 &&
                       ends_with(line, nl_name, "_sum");
            count = nl_name == fl + 6 && memcmp(line, family, fl) == 0 &&
                    ends_with(line, nl_name, "_count");
            of_family = bucket || sum || count;
        }
        if (!of_family)
            fail_msg("line %zu: sample %.*s outside its family %s", line_no, (int)nl_name, line,
                     family);
        const char *c = line + nl_name;
        char le[256] = "";
        if (*c == '{') {
            c++;
            while (*c != '}') {
                size_t ln = strcspn(c, "=");
                assert_true(name_ok(c, ln));
                bool is_le = ln == 2 && memcmp(c, "le", 2) == 0;
                c += ln;
                assert_int_equal(c[0], '=');
                assert_int_equal(c[1], '"');
                c += 2;
                char value[256];
                size_t vl = 0;
                while (*c != '"') {
                    assert_int_not_equal(*c, '\0');
                    assert_int_not_equal(*c, '\n');
                    if (*c == '\\') {
                        assert_true(c[1] == '\\' || c[1] == '"' || c[1] == 'n');
                        c++;
                    }
                    assert_true(vl + 1 < sizeof value);
                    value[vl++] = *c++;
                }
                value[vl] = '\0';
                if (is_le)
                    snprintf(le, sizeof le, "%s", value);
                c++;
                if (*c == ',')
                    c++;
                else
                    assert_int_equal(*c, '}');
            }
            c++;
        }
        assert_int_equal(*c, ' ');
        c++;
        char *num_end;
        errno = 0;
        double v = strtod(c, &num_end);
        assert_int_equal(errno, 0);
        assert_true(num_end != c);
        assert_int_equal(*num_end, '\0');
        assert_true(v >= 0);
        if (bucket) {
            assert_true(le[0] != '\0');
            if (last_bucket >= 0 && inf_bucket < 0)
                assert_true(v >= last_bucket); /* cumulative */
            last_bucket = v;
            if (strcmp(le, "+Inf") == 0)
                inf_bucket = v;
        } else if (count) {
            assert_true(inf_bucket >= 0); /* +Inf came before _count */
            assert_true(v == inf_bucket);
            last_bucket = inf_bucket = -1; /* the next label set */
        }
    }
}

/* ---- the writer ---- */

static char page[NODE_METRICS_TEXT_BYTES_MAX];

static struct node_metrics_text text_of(size_t cap)
{
    return (struct node_metrics_text){.buf = page, .cap = cap};
}

static void test_label_values_and_help_are_escaped(void **state)
{
    (void)state;
    struct node_metrics_text t = text_of(sizeof page);
    node_metrics_text_family(&t, "ehr_x", "gauge", "a \\ backslash, a \"quote\" and\na newline");
    struct node_metrics_label l[] = {{"peer", "st \"Mary's\"\\\nward"}, {"b", ""}};
    node_metrics_text_u64(&t, "ehr_x", l, 2, 7);
    assert_false(t.overflow);
    const char want[] = "# HELP ehr_x a \\\\ backslash, a \"quote\" and\\na newline\n"
                        "# TYPE ehr_x gauge\n"
                        "ehr_x{peer=\"st \\\"Mary's\\\"\\\\\\nward\",b=\"\"} 7\n";
    assert_int_equal(t.len, strlen(want));
    assert_memory_equal(t.buf, want, t.len);
    check_exposition(t.buf, t.len);
}

static void test_histogram_buckets_are_cumulative_up_to_inf(void **state)
{
    (void)state;
    struct node_metrics_histogram h = {0};
    /* Each bound is inclusive (le): exactly 0.5 ms is in le="0.0005",
     * one microsecond more is in the next. */
    node_metrics_histogram_observe(&h, 0);
    node_metrics_histogram_observe(&h, node_metrics_bucket_bounds_us[0]);
    node_metrics_histogram_observe(&h, node_metrics_bucket_bounds_us[0] + 1);
    node_metrics_histogram_observe(&h, node_metrics_bucket_bounds_us[NODE_METRICS_BUCKETS - 1]);
    node_metrics_histogram_observe(&h, node_metrics_bucket_bounds_us[NODE_METRICS_BUCKETS - 1] + 1);
    assert_int_equal(h.count, 5);
    assert_int_equal(h.counts[0], 2);
    assert_int_equal(h.counts[1], 1);
    assert_int_equal(h.counts[NODE_METRICS_BUCKETS - 1], 1);
    assert_int_equal(h.counts[NODE_METRICS_BUCKETS], 1);
    for (size_t i = 1; i < NODE_METRICS_BUCKETS; i++)
        assert_true(node_metrics_bucket_bounds_us[i] > node_metrics_bucket_bounds_us[i - 1]);

    struct node_metrics_text t = text_of(sizeof page);
    node_metrics_text_family(&t, "ehr_h_seconds", "histogram", "h");
    struct node_metrics_label l[] = {{"write", "raft_log"}};
    node_metrics_text_histogram(&t, "ehr_h_seconds", l, 1, &h);
    page[t.len] = '\0';
    assert_non_null(strstr(page, "ehr_h_seconds_bucket{write=\"raft_log\",le=\"0.0005\"} 2\n"));
    assert_non_null(strstr(page, "ehr_h_seconds_bucket{write=\"raft_log\",le=\"0.001\"} 3\n"));
    assert_non_null(strstr(page, "ehr_h_seconds_bucket{write=\"raft_log\",le=\"5\"} 3\n"));
    assert_non_null(strstr(page, "ehr_h_seconds_bucket{write=\"raft_log\",le=\"10\"} 4\n"));
    assert_non_null(strstr(page, "ehr_h_seconds_bucket{write=\"raft_log\",le=\"+Inf\"} 5\n"));
    /* 0 + 500 + 501 + 10,000,000 + 10,000,001 µs */
    assert_non_null(strstr(page, "ehr_h_seconds_sum{write=\"raft_log\"} 20.001002\n"));
    assert_non_null(strstr(page, "ehr_h_seconds_count{write=\"raft_log\"} 5\n"));
    /* +Inf is the last bucket, _sum and _count follow. */
    const char *inf = strstr(page, "le=\"+Inf\"");
    assert_true(inf < strstr(page, "_sum"));
    assert_true(strstr(page, "_sum") < strstr(page, "_count"));
    check_exposition(t.buf, t.len);
}

/* The gRPC status names as rpc_status_name gives them (metrics.c takes
 * them from the snapshot: it links no RPC code). */
static const char *const status_names[NODE_METRICS_RPC_STATUSES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

/* A snapshot with every part in use, and names that need escaping. */
static void full_snapshot(struct node_metrics_snapshot *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->chain_id, sizeof s->chain_id, "ehr-test");
    snprintf(s->version, sizeof s->version, "0.1.0 (abc)");
    s->start_time_ms = 1764900000123;
    s->raft_term = 7;
    s->raft_restore_term = 5;
    s->raft_role = 3;
    s->has_leader = true;
    s->voter = true;
    s->commit_index = 100;
    s->applied_index = 99;
    s->proposals_inflight = 2;
    s->block_height = 42;
    s->block_time_ms = 1764900001000;
    s->blocks_applied_total = 40;
    s->transactions_applied_total = 4000;
    s->mempool_tx_count = 12;
    s->mempool_bytes = 4096;
    s->admitted_total = 4012;
    for (int r = 0; r < NODE_METRICS_REFUSAL_COUNT_; r++)
        s->refused_total[r] = (uint64_t)r;
    for (uint64_t us = 1; us < 20000000; us *= 3) {
        node_metrics_histogram_observe(&s->commit, us);
        node_metrics_histogram_observe(&s->raft_log_write, us / 2);
        node_metrics_histogram_observe(&s->block_write, us / 4);
    }
    s->peer_count = NODE_METRICS_PEERS_MAX;
    for (size_t i = 0; i < NODE_METRICS_PEERS_MAX; i++) {
        /* The longest name a member may have, with characters to escape. */
        memset(s->peers[i].name, 'a', NODE_METRICS_NAME_BYTES_MAX);
        s->peers[i].name[NODE_METRICS_NAME_BYTES_MAX] = '\0';
        s->peers[i].name[0] = '"';
        s->peers[i].name[1] = '\\';
        s->peers[i].name[2] = (char)('A' + i);
        s->peers[i].self = i == 0;
        s->peers[i].leader = i == 0;
        s->peers[i].up = i % 2 == 1;
        s->peers[i].link_ups = i;
    }
    s->rpc_connections = 3;
    s->rpc_calls = 5;
    s->block_streams = 1;
    s->health_watches = 2;
    s->reflection_streams = 3;
    for (int k = 0; k < NODE_METRICS_STREAM_KINDS; k++)
        for (int l = 0; l < NODE_METRICS_STREAM_LIMITS; l++)
            s->streams_refused_total[k][l] = (uint64_t)(k * 4 + l * 2);
    s->rpc_refusals_known = true;
    const char *limits[NODE_METRICS_RPC_REFUSALS] = {"a", "b", "c", "d", "e", "f", "g",
                                                     "h", "i", "j", "k", "l", "m"};
    for (int k = 0; k < NODE_METRICS_RPC_REFUSALS; k++) {
        s->rpc_refused_total[k] = (uint64_t)k * 10;
        s->rpc_refusal_limit[k] = limits[k];
    }
    /* The most methods, each path of the longest length, some calls of
     * each, and every status on the last. */
    s->rpc_method_count = NODE_METRICS_RPC_METHODS_MAX;
    for (size_t m = 0; m < NODE_METRICS_RPC_METHODS_MAX; m++) {
        char *path = s->rpc_method_path[m];
        memset(path, 'x', NODE_METRICS_RPC_METHOD_PATH_BYTES_MAX);
        path[NODE_METRICS_RPC_METHOD_PATH_BYTES_MAX] = '\0';
        int n = snprintf(path, 32, "/ehr.v1.Node/M%02zu", m);
        path[n] = 'x';
        s->rpc_calls_total[m][0] = 100 + m;
        s->rpc_calls_total[m][5] = m % 2; /* NOT_FOUND on every other */
    }
    for (int st = 0; st < NODE_METRICS_RPC_STATUSES; st++) {
        s->rpc_status_names[st] = status_names[st];
        s->rpc_calls_total[NODE_METRICS_RPC_METHODS_MAX - 1][st] += 1;
    }
    s->rpc_calls_total[NODE_METRICS_RPC_METHODS_MAX][12] = 3; /* unknown, UNIMPLEMENTED */
    s->snapshot_sends_total = 4;
    s->snapshot_installs_total = 2;
    s->reads_refused_total = 9;
    s->blobs_replicated_total = 21;
    s->blob_pieces_served_total = 22;
    s->blob_busy_sent_total = 23;
    s->blob_busy_received_total = 24;
    s->loop_turn_max_us = 1234;
    s->serving = true;
    static const char *const reasons[NODE_METRICS_HEALTH_REASONS] = {"ok", "diverged", "stopping",
                                                                     "no-leader", "catching-up"};
    for (int r = 0; r < NODE_METRICS_HEALTH_REASONS; r++)
        s->health_reason_names[r] = reasons[r];
    s->health_reason = 0;
}

static void test_a_full_page_is_well_formed(void **state)
{
    (void)state;
    struct node_metrics_snapshot s;
    full_snapshot(&s);
    struct node_metrics_process p = {.known = true,
                                     .cpu_seconds = 1.5,
                                     .resident_bytes = 1 << 20,
                                     .virtual_bytes = 1 << 30,
                                     .open_fds = 12,
                                     .max_fds = 4096};
    struct node_metrics_text t = text_of(sizeof page);
    assert_int_equal(node_metrics_render(&t, &s, &p), 0);
    check_exposition(t.buf, t.len);
    page[t.len] = '\0';
    assert_non_null(strstr(page, "\nehr_raft_term 7\n"));
    assert_non_null(strstr(page, "\n# TYPE ehr_raft_restore_term gauge\n"));
    assert_non_null(strstr(page, "\nehr_raft_restore_term 5\n"));
    assert_non_null(strstr(page, "\nehr_raft_voter 1\n"));
    assert_non_null(strstr(page, "\nehr_health_status{reason=\"ok\"} 1\n"));
    assert_non_null(strstr(page, "\nehr_health_status{reason=\"no-leader\"} 0\n"));
    assert_non_null(strstr(page, "\nehr_raft_role{role=\"leader\"} 1\n"));
    assert_non_null(strstr(page, "\nehr_raft_role{role=\"follower\"} 0\n"));
    assert_non_null(strstr(page, "\nehr_block_height 42\n"));
    assert_non_null(strstr(page, "\nehr_block_time_seconds 1764900001\n"));
    assert_non_null(strstr(page, "\nehr_submissions_refused_total{reason=\"rate_limited\"} 13\n"));
    assert_non_null(strstr(page, "\nehr_submissions_refused_total{reason=\"too_big\"} 0\n"));
    assert_non_null(strstr(page, "\nehr_peer_up{peer=\"\\\"\\\\B"));
    assert_null(strstr(page, "\nehr_peer_up{peer=\"\\\"\\\\A")); /* self has no link */
    assert_non_null(strstr(page, "\nehr_raft_leader{member=\"\\\"\\\\A"));
    assert_non_null(strstr(page, "\nehr_rpc_refused_total{limit=\"d\"} 30\n"));
    assert_non_null(strstr(
        page, "\nehr_rpc_streams_refused_total{kind=\"health_watch\",limit=\"address\"} 8\n"));
    assert_non_null(strstr(page, "\nehr_rpc_streams{kind=\"reflection_stream\"} 3\n"));
    assert_non_null(strstr(
        page,
        "\nehr_rpc_streams_refused_total{kind=\"reflection_stream\",limit=\"connection\"} 10\n"));
    assert_non_null(strstr(page, "\nehr_loop_turn_max_seconds 0.001234\n"));
    assert_non_null(strstr(page, "\nprocess_open_fds 12\n"));
    assert_non_null(strstr(page, "\nehr_rpc_calls_total{method=\"/ehr.v1.Node/M00xxx"));
    assert_non_null(strstr(page, "xx\",status=\"OK\"} 100\n"));
    assert_non_null(strstr(page, "\nehr_rpc_calls_total{method=\"unknown\",status=\"OK\"} 0\n"));
    assert_non_null(
        strstr(page, "\nehr_rpc_calls_total{method=\"unknown\",status=\"UNIMPLEMENTED\"} 3\n"));
    assert_non_null(strstr(page, "xx\",status=\"UNAUTHENTICATED\"} 1\n"));
    assert_non_null(strstr(page, "\nehr_snapshot_sends_total 4\n"));
    assert_non_null(strstr(page, "\nehr_snapshot_installs_total 2\n"));
    assert_non_null(strstr(page, "\nehr_blobs_replicated_total 21\n"));
    assert_non_null(strstr(page, "\nehr_blob_pieces_served_total 22\n"));
    assert_non_null(strstr(page, "\nehr_blob_busy_sent_total 23\n"));
    assert_non_null(strstr(page, "\nehr_blob_busy_received_total 24\n"));
    /* Under the page bound with room to spare: the most members, the
     * longest names. */
    printf("a full page: %zu bytes\n", t.len);
    assert_true(t.len < NODE_METRICS_TEXT_BYTES_MAX / 4);

    /* Without the process figures and the RPC refusals, still well formed. */
    s.rpc_refusals_known = false;
    t = text_of(sizeof page);
    assert_int_equal(node_metrics_render(&t, &s, NULL), 0);
    check_exposition(t.buf, t.len);
}

/* The value of the sample SERIES (a whole "name{labels}") on the page
 * rendered from S, or -1 if there is no such line. */
static double rendered_value(const struct node_metrics_snapshot *s, const char *series)
{
    struct node_metrics_text t = text_of(sizeof page);
    assert_int_equal(node_metrics_render(&t, s, NULL), 0);
    check_exposition(t.buf, t.len);
    page[t.len] = '\0';
    char want[256];
    snprintf(want, sizeof want, "\n%s ", series);
    const char *at = strstr(page, want);
    return at != NULL ? strtod(at + strlen(want), NULL) : -1;
}

/* Calls by method and status: each registered method has its OK line
 * from the start, another status appears once a call ends with it, calls
 * to unknown paths have one line of their own; and each value moves with
 * the snapshot (as the node's loop counts, metrics_node.c). The snapshot
 * counters likewise. */
static void test_rpc_calls_and_snapshots_are_shown_and_move(void **state)
{
    (void)state;
    struct node_metrics_snapshot s;
    full_snapshot(&s);
    memset(s.rpc_calls_total, 0, sizeof s.rpc_calls_total);
    s.rpc_method_count = 2;
    snprintf(s.rpc_method_path[0], sizeof s.rpc_method_path[0], "/ehr.v1.Node/GetStatus");
    snprintf(s.rpc_method_path[1], sizeof s.rpc_method_path[1], "/ehr.v1.Node/GetBlock");
    s.snapshot_sends_total = 0;
    s.snapshot_installs_total = 0;
    const char *ok = "ehr_rpc_calls_total{method=\"/ehr.v1.Node/GetStatus\",status=\"OK\"}";
    const char *not_found =
        "ehr_rpc_calls_total{method=\"/ehr.v1.Node/GetBlock\",status=\"NOT_FOUND\"}";
    const char *unknown = "ehr_rpc_calls_total{method=\"unknown\",status=\"UNIMPLEMENTED\"}";
    assert_true(rendered_value(&s, ok) == 0);
    assert_true(rendered_value(&s, "ehr_rpc_calls_total{method=\"/ehr.v1.Node/GetBlock\","
                                   "status=\"OK\"}") == 0);
    assert_true(rendered_value(&s, "ehr_rpc_calls_total{method=\"unknown\",status=\"OK\"}") == 0);
    assert_true(rendered_value(&s, not_found) == -1);
    assert_true(rendered_value(&s, unknown) == -1);
    assert_true(rendered_value(&s, "ehr_snapshot_sends_total") == 0);
    assert_true(rendered_value(&s, "ehr_snapshot_installs_total") == 0);
    s.rpc_calls_total[0][0] = 1;
    s.rpc_calls_total[1][5] = 2;
    s.rpc_calls_total[2][12] = 7;
    s.snapshot_sends_total = 1;
    s.snapshot_installs_total = 1;
    assert_true(rendered_value(&s, ok) == 1);
    assert_true(rendered_value(&s, not_found) == 2);
    assert_true(rendered_value(&s, unknown) == 7);
    assert_true(rendered_value(&s, "ehr_snapshot_sends_total") == 1);
    assert_true(rendered_value(&s, "ehr_snapshot_installs_total") == 1);
    /* A third method is not shown while the server has two. */
    snprintf(s.rpc_method_path[2], sizeof s.rpc_method_path[2], "/ehr.v1.Node/Other");
    assert_true(rendered_value(&s, "ehr_rpc_calls_total{method=\"/ehr.v1.Node/Other\","
                                   "status=\"OK\"}") == -1);
}

static void test_a_page_over_its_bound_ends_at_a_whole_family(void **state)
{
    (void)state;
    struct node_metrics_snapshot s;
    full_snapshot(&s);
    struct node_metrics_text t = text_of(sizeof page);
    assert_int_equal(node_metrics_render(&t, &s, NULL), 0);
    size_t whole = t.len;
    /* Exactly the page's length fits... */
    t = text_of(whole);
    assert_int_equal(node_metrics_render(&t, &s, NULL), 0);
    assert_int_equal(t.len, whole);
    /* ...one byte less does not, and what is left is well formed. */
    t = text_of(whole - 1);
    assert_int_equal(node_metrics_render(&t, &s, NULL), EHR_ETOOBIG);
    assert_true(t.len < whole);
    check_exposition(t.buf, t.len);
}

/* ---- the HTTP server ---- */

/* A connection to PORT on 127.0.0.1 from the source address 127.0.0.SOURCE
 * (1: the usual one; Linux answers the whole of 127/8 on loopback, so a
 * test has as many client addresses as it wants). */
static int connect_from(uint8_t source, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK - 1 + source);
    assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof src), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static int connect_to(uint16_t port)
{
    return connect_from(1, port);
}

/* Has the server closed FD (within WAIT_MS)? */
static bool closed_by_server(int fd, int wait_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, wait_ms) != 1)
        return false;
    char buf[64];
    return read(fd, buf, sizeof buf) <= 0;
}

/* Read FD to its end (at most 5 s) into BUF (NUL-terminated); the bytes read. */
static size_t read_all(int fd, char *buf, size_t size)
{
    size_t len = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) != 1)
            fail_msg("no answer within 5 s");
        ssize_t r = read(fd, buf + len, size - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        assert_true(len < size - 1);
    }
    buf[len] = '\0';
    return len;
}

/* One HTTP/1.0 request; the whole answer (status line, headers, body). */
static size_t http(uint16_t port, const char *method, const char *path, char *buf, size_t size)
{
    int fd = connect_to(port);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t len = read_all(fd, buf, size);
    close(fd);
    return len;
}

static char answer_buf[NODE_METRICS_TEXT_BYTES_MAX + 4096];

/* A metrics server on a free loopback port, its port into *PORT; fails the
 * test if it does not start. Stop it with node_metrics_server_stop. */
static struct node_metrics_server *server_started(uint16_t *port)
{
    struct node_metrics_server *srv = NULL;
    ehr_diag diag = {{0}};
    assert_int_equal(node_metrics_server_start("127.0.0.1:0", &srv, &diag), 0);
    *port = node_metrics_server_port(srv);
    assert_int_not_equal(*port, 0);
    return srv;
}

/* The same, serving a full snapshot (into S). */
static struct node_metrics_server *server_serving(uint16_t *port, struct node_metrics_snapshot *s)
{
    struct node_metrics_server *srv = server_started(port);
    full_snapshot(s);
    node_metrics_server_publish(srv, s);
    return srv;
}

static void test_the_server_answers_get_head_and_refuses_the_rest(void **state)
{
    (void)state;
    uint16_t port;
    struct node_metrics_server *srv = server_started(&port);

    http(port, "GET", "/metrics", answer_buf, sizeof answer_buf);
    assert_non_null(strstr(answer_buf, "HTTP/1.0 503") ?: strstr(answer_buf, "HTTP/1.1 503"));

    struct node_metrics_snapshot s;
    full_snapshot(&s);
    node_metrics_server_publish(srv, &s);
    http(port, "GET", "/metrics", answer_buf, sizeof answer_buf);
    assert_non_null(strstr(answer_buf, " 200 OK\r\n"));
    assert_non_null(
        strstr(answer_buf, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    char *body = strstr(answer_buf, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    check_exposition(body, strlen(body));
    assert_non_null(strstr(body, "\nehr_raft_term 7\n"));
    assert_non_null(strstr(body, "\nprocess_resident_memory_bytes ")); /* read on its thread */

    size_t head_len = http(port, "HEAD", "/metrics", answer_buf, sizeof answer_buf);
    assert_non_null(strstr(answer_buf, " 200 OK\r\n"));
    assert_true(head_len ==
                (size_t)(strstr(answer_buf, "\r\n\r\n") + 4 - answer_buf)); /* no body */

    http(port, "GET", "/", answer_buf, sizeof answer_buf);
    assert_non_null(strstr(answer_buf, " 404 "));
    http(port, "POST", "/metrics", answer_buf, sizeof answer_buf);
    assert_non_null(strstr(answer_buf, " 405 "));
    assert_non_null(strstr(answer_buf, "Allow: GET, HEAD\r\n"));
    node_metrics_server_stop(srv);
    node_metrics_server_stop(NULL); /* harmless */
}

static void test_the_server_refuses_a_bad_address_and_a_port_in_use(void **state)
{
    (void)state;
    struct node_metrics_server *a = NULL, *b = NULL;
    ehr_diag diag = {{0}};
    assert_int_equal(node_metrics_server_start("localhost:1", &b, &diag), EHR_EINVAL);
    assert_int_equal(node_metrics_server_start("[::1:7002", &b, &diag), EHR_EINVAL);
    assert_int_equal(node_metrics_server_start("127.0.0.1:0", &a, &diag), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", node_metrics_server_port(a));
    assert_int_equal(node_metrics_server_start(addr, &b, &diag), -EADDRINUSE);
    assert_non_null(strstr(diag.msg, addr));
    node_metrics_server_stop(a);
}

/* Open connections idle until the server holds its bound from one
 * address; one more is closed at once, and a held one still answers. */
static void test_connections_from_one_address_are_bounded_at_the_edge(void **state)
{
    (void)state;
    uint16_t port;
    struct node_metrics_snapshot s;
    struct node_metrics_server *srv = server_serving(&port, &s);
    int held[NODE_METRICS_CONNECTIONS_PER_ADDRESS_MAX];
    for (int i = 0; i < NODE_METRICS_CONNECTIONS_PER_ADDRESS_MAX; i++)
        held[i] = connect_to(port);
    usleep(200 * 1000); /* the server's thread accepts them */
    int extra = connect_to(port);
    char buf[64];
    struct pollfd pfd = {.fd = extra, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    assert_true(read(extra, buf, sizeof buf) <= 0); /* closed without an answer */
    close(extra);
    /* The held ones are served: the last of the bound answers. */
    int last = held[NODE_METRICS_CONNECTIONS_PER_ADDRESS_MAX - 1];
    const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    assert_int_equal(write(last, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    read_all(last, answer_buf, sizeof answer_buf);
    assert_non_null(strstr(answer_buf, " 200 OK\r\n"));
    for (int i = 0; i < NODE_METRICS_CONNECTIONS_PER_ADDRESS_MAX; i++)
        close(held[i]);
    node_metrics_server_stop(srv);
}

/* The server-wide bound: NODE_METRICS_CONNECTIONS_MAX held from several
 * addresses (each within its own bound); one more, from a fresh address,
 * is not taken up (libmicrohttpd stops accepting: it waits in the listen
 * backlog) until a held one closes, and is then served. */
static void test_connections_are_bounded_at_the_edge(void **state)
{
    (void)state;
    uint16_t port;
    struct node_metrics_server *srv = server_started(&port);
    int held[NODE_METRICS_CONNECTIONS_MAX];
    enum { PER = NODE_METRICS_CONNECTIONS_PER_ADDRESS_MAX };
    for (int i = 0; i < NODE_METRICS_CONNECTIONS_MAX; i++)
        held[i] = connect_from((uint8_t)(2 + i / PER), port);
    usleep(200 * 1000);
    for (int i = 0; i < NODE_METRICS_CONNECTIONS_MAX; i++)
        assert_false(closed_by_server(held[i], 0));
    int extra = connect_from(2 + NODE_METRICS_CONNECTIONS_MAX / PER + 1, port);
    const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    assert_int_equal(write(extra, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    struct pollfd pfd = {.fd = extra, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 1000), 0); /* not served while the server is full */
    close(held[0]);
    read_all(extra, answer_buf, sizeof answer_buf);
    assert_non_null(strstr(answer_buf, " 503 ")); /* served now (nothing published) */
    close(extra);
    for (int i = 1; i < NODE_METRICS_CONNECTIONS_MAX; i++)
        close(held[i]);
    node_metrics_server_stop(srv);
}

/* An idle connection lives NODE_METRICS_CONNECTION_TIMEOUT_S, not much
 * longer (libmicrohttpd counts in whole seconds). */
static void test_an_idle_connection_is_closed_after_the_timeout(void **state)
{
    (void)state;
    uint16_t port;
    struct node_metrics_server *srv = server_started(&port);
    int fd = connect_to(port);
    assert_false(closed_by_server(fd, (NODE_METRICS_CONNECTION_TIMEOUT_S - 1) * 1000));
    assert_true(closed_by_server(fd, 3000));
    close(fd);
    node_metrics_server_stop(srv);
}

/* A request is served within NODE_METRICS_CONNECTION_MEMORY_BYTES; one
 * whose headers alone pass it is refused, not buffered. */
static void test_a_request_over_the_memory_bound_is_refused(void **state)
{
    (void)state;
    uint16_t port;
    struct node_metrics_snapshot s;
    struct node_metrics_server *srv = server_serving(&port, &s);
    static char req[2 * NODE_METRICS_CONNECTION_MEMORY_BYTES];
    size_t sizes[] = {NODE_METRICS_CONNECTION_MEMORY_BYTES / 8,
                      NODE_METRICS_CONNECTION_MEMORY_BYTES + 1};
    for (size_t k = 0; k < 2; k++) {
        int n = snprintf(req, sizeof req, "GET /metrics HTTP/1.0\r\nX-Pad: ");
        memset(req + n, 'a', sizes[k]);
        n += (int)sizes[k];
        n += snprintf(req + n, sizeof req - (size_t)n, "\r\n\r\n");
        int fd = connect_to(port);
        ssize_t w = write(fd, req, (size_t)n);
        (void)w; /* the server may close before reading it all */
        read_all(fd, answer_buf, sizeof answer_buf);
        close(fd);
        if (k == 0)
            assert_non_null(strstr(answer_buf, " 200 OK\r\n"));
        else
            assert_null(strstr(answer_buf, " 200 OK\r\n"));
    }
    node_metrics_server_stop(srv);
}

struct scraper {
    uint16_t port;
    int ok;
};

static void *scrape_loop(void *arg)
{
    struct scraper *sc = arg;
    static char buf[NODE_METRICS_TEXT_BYTES_MAX + 4096];
    for (int i = 0; i < 100; i++) {
        http(sc->port, "GET", "/metrics", buf, sizeof buf);
        char *body = strstr(buf, "\r\n\r\n");
        if (strstr(buf, " 200 OK\r\n") != NULL && body != NULL) {
            check_exposition(body + 4, strlen(body + 4));
            sc->ok++;
        }
    }
    return NULL;
}

/* The loop side publishes while a client scrapes: every page is whole
 * (the copy is taken under the lock; a torn copy would break a histogram's
 * +Inf = _count, which check_exposition checks). */
static void test_scrapes_while_the_loop_publishes_are_whole(void **state)
{
    (void)state;
    uint16_t port;
    struct node_metrics_snapshot s;
    struct node_metrics_server *srv = server_serving(&port, &s);
    struct scraper sc = {.port = port};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, scrape_loop, &sc), 0);
    for (uint64_t i = 0; i < 20000; i++) {
        node_metrics_histogram_observe(&s.commit, i);
        s.raft_term++;
        node_metrics_server_publish(srv, &s);
    }
    pthread_join(th, NULL);
    assert_int_equal(sc.ok, 100);
    node_metrics_server_stop(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_values_and_help_are_escaped),
        cmocka_unit_test(test_histogram_buckets_are_cumulative_up_to_inf),
        cmocka_unit_test(test_a_full_page_is_well_formed),
        cmocka_unit_test(test_rpc_calls_and_snapshots_are_shown_and_move),
        cmocka_unit_test(test_a_page_over_its_bound_ends_at_a_whole_family),
        cmocka_unit_test(test_the_server_answers_get_head_and_refuses_the_rest),
        cmocka_unit_test(test_the_server_refuses_a_bad_address_and_a_port_in_use),
        cmocka_unit_test(test_connections_from_one_address_are_bounded_at_the_edge),
        cmocka_unit_test(test_connections_are_bounded_at_the_edge),
        cmocka_unit_test(test_an_idle_connection_is_closed_after_the_timeout),
        cmocka_unit_test(test_a_request_over_the_memory_bound_is_refused),
        cmocka_unit_test(test_scrapes_while_the_loop_publishes_are_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
