/*
 * test_metrics_cluster - the metrics endpoint of real ehrd processes on a
 * three-node loopback network (tests/node/cluster.c), scraped over HTTP
 * with libcurl as Prometheus would: every node's page passes `promtool
 * check metrics` (Debian's prometheus package; the strict reader of
 * test_metrics covers the format where promtool is missing); the roles,
 * term and leader agree with GetStatus; the commit counters, the admission
 * counter and the latency histograms move under a load; the leader's
 * ehr_peer_up for a member drops to 0 when that member is killed and comes
 * back with one more link-up when it restarts, having missed enough to be
 * sent a snapshot (the leader's ehr_snapshot_sends_total and its own
 * ehr_snapshot_installs_total move); a GetStatus and a call to a method
 * the node does not have move their ehr_rpc_calls_total lines; every metric the example
 * alerting rules (docs/ehrchain-alerts.yml) name is on the page; and a
 * metrics port in use stops ehrd at start with a message naming it.
 */
#include <netinet/in.h>
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
#include <curl/curl.h>

#include "cluster.h"
#include "config.h"
#include "proc.h"

enum { NODES = 3, LEADER_WAIT_MS = 15000, SCRAPE_BYTES_MAX = 512 * 1024 };

static bool keep_dirs(void)
{
    return getenv("EHR_TEST_KEEP") != NULL;
}

/* A port free on loopback now (bound, read back, released). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Point node I's config at a metrics port of its own; returns the port. */
static uint16_t metrics_enable(struct cluster *c, size_t i)
{
    struct node_config cfg;
    ehr_diag err;
    assert_int_equal(node_config_load(c->nodes[i].config, &cfg, &err), 0);
    uint16_t port = free_port();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    cfg.metrics_listen = ehr_strdup(addr);
    assert_int_equal(node_config_write(c->nodes[i].config, &cfg, true, &err), 0);
    node_config_free(&cfg);
    return port;
}

struct page {
    char *text;
    size_t len;
    long code;
    char content_type[128];
};

static size_t on_body(char *data, size_t size, size_t count, void *ctx)
{
    struct page *p = ctx;
    size_t n = size * count;
    if (p->len + n >= SCRAPE_BYTES_MAX)
        return 0; /* over: fail the transfer */
    memcpy(p->text + p->len, data, n);
    p->len += n;
    p->text[p->len] = '\0';
    return n;
}

/* GET http://127.0.0.1:PORT/metrics into P (P->code 0: no answer). */
static void scrape(uint16_t port, struct page *p)
{
    if (p->text == NULL)
        p->text = malloc(SCRAPE_BYTES_MAX);
    assert_non_null(p->text);
    p->len = 0;
    p->text[0] = '\0';
    p->code = 0;
    p->content_type[0] = '\0';
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", port);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, p);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(h) == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &p->code);
        char *ct = NULL;
        if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL)
            snprintf(p->content_type, sizeof p->content_type, "%s", ct);
    }
    curl_easy_cleanup(h);
}

/* The value of the sample SERIES ("name" or "name{labels}") in P, or -1 if
 * the page has no such line. */
static double value_of(const struct page *p, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = p->text; line != NULL && *line != '\0';) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return -1;
}

/* Scrape PORT until SERIES has VALUE (at most TIMEOUT_MS); the last value. */
static double wait_value(uint16_t port, const char *series, double value, uint64_t timeout_ms)
{
    struct page p = {0};
    uint64_t until = cluster_now_us() + timeout_ms * 1000;
    double v = -1;
    do {
        scrape(port, &p);
        v = value_of(&p, series);
        if (v == value)
            break;
        usleep(100 * 1000);
    } while (cluster_now_us() < until);
    free(p.text);
    return v;
}

/* Scrape PORT until SERIES is at least VALUE (at most TIMEOUT_MS); the last value. */
static double wait_at_least(uint16_t port, const char *series, double value, uint64_t timeout_ms)
{
    struct page p = {0};
    uint64_t until = cluster_now_us() + timeout_ms * 1000;
    double v = -1;
    do {
        scrape(port, &p);
        v = value_of(&p, series);
        if (v >= value)
            break;
        usleep(100 * 1000);
    } while (cluster_now_us() < until);
    free(p.text);
    return v;
}

/* `promtool check metrics` on P: its exit status (77: no promtool). */
static int promtool_check(const struct page *p)
{
    if (access(EHR_PROMTOOL, X_OK) != 0)
        return 77;
    char dir_template[] = "/tmp/ehr-metrics-XXXXXX";
    char *dir = mkdtemp(dir_template);
    assert_non_null(dir);
    char file[128];
    snprintf(file, sizeof file, "%s/page.txt", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(p->text, 1, p->len, f), p->len);
    fclose(f);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s check metrics < %s", EHR_PROMTOOL, file);
    struct proc_result r =
        proc_run(&(struct proc_spec){.path = "/bin/sh", .args = PROC_ARGS("-c", cmd, NULL)});
    if (r.status != 0)
        printf("promtool check metrics said (status %d):\n%s%s\n", r.status, r.out, r.err);
    int status = r.status;
    proc_result_free(&r);
    unlink(file);
    rmdir(dir);
    return status;
}

/* Every ehr_* name in the example alerting rules is served in P (a
 * histogram's _bucket series included). */
static void check_alert_rules_names(const struct page *p)
{
    uint8_t *rules = NULL;
    size_t len = 0;
    assert_int_equal(
        ehr_file_read_alloc(EHR_SOURCE_DIR "/docs/ehrchain-alerts.yml", 1 << 20, &rules, &len), 0);
    size_t names = 0;
    for (size_t i = 0; i + 4 < len; i++) {
        if (memcmp(rules + i, "ehr_", 4) != 0 ||
            (i > 0 && rules[i - 1] != '(' && rules[i - 1] != ' ' && rules[i - 1] != '\n'))
            continue;
        char name[96];
        size_t n = 0;
        while (i + n < len && n + 1 < sizeof name &&
               ((rules[i + n] >= 'a' && rules[i + n] <= 'z') || rules[i + n] == '_'))
            name[n] = (char)rules[i + n], n++;
        name[n] = '\0';
        char line_start[100];
        snprintf(line_start, sizeof line_start, "\n%s", name);
        if (strstr(p->text, line_start) == NULL)
            fail_msg("the alerting rules name %s, which the page does not serve", name);
        names++;
        i += n;
    }
    assert_true(names >= 9);
    ehr_free(rules);
}

static void test_metrics_of_a_running_network(void **state)
{
    (void)state;
    struct cluster c;
    /* Small blocks and frequent snapshots: a member down for a few hundred
     * transactions falls behind the leader's compacted log. */
    struct cluster_limits limits = {.block_tx_count = 8,
                                    .snapshot_entries = NODE_CONFIG_SNAPSHOT_ENTRIES_MIN};
    cluster_create(&c, NODES, EHRD_PATH, EHRCTL_PATH, &limits);
    uint16_t port[NODES];
    for (size_t i = 0; i < NODES; i++)
        port[i] = metrics_enable(&c, i);
    for (size_t i = 0; i < NODES; i++)
        cluster_start(&c, i);
    size_t leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(leader, SIZE_MAX);
    assert_int_not_equal(cluster_wait_converged(&c, LEADER_WAIT_MS), UINT64_MAX);

    /* Every node's page: 200, the exposition's content type, promtool. */
    struct page p = {0};
    for (size_t i = 0; i < NODES; i++) {
        /* A tick publishes the gauges: wait for this node to know the leader. */
        assert_int_equal(wait_value(port[i], "ehr_raft_has_leader", 1, LEADER_WAIT_MS), 1);
        scrape(port[i], &p);
        assert_int_equal(p.code, 200);
        assert_string_equal(p.content_type, "text/plain; version=0.0.4; charset=utf-8");
        int st = promtool_check(&p);
        if (st == 77)
            printf("promtool not found at %s: not run\n", EHR_PROMTOOL);
        else
            assert_int_equal(st, 0);
        struct cluster_status cs;
        assert_int_equal(cluster_status(&c, i, &cs), 0);
        assert_int_equal(value_of(&p, "ehr_raft_role{role=\"leader\"}"), i == leader);
        assert_int_equal(value_of(&p, "ehr_raft_role{role=\"follower\"}"), i != leader);
        char series[96];
        snprintf(series, sizeof series, "ehr_raft_leader{member=\"Member %zu\"}", leader);
        assert_int_equal(value_of(&p, series), 1);
        assert_true(value_of(&p, "ehr_raft_term") >= 1);
        assert_int_equal(value_of(&p, "ehr_raft_voter"), 1);        /* founding members vote */
        assert_int_equal(value_of(&p, "ehr_raft_restore_term"), 0); /* none restored */
        assert_int_equal(wait_value(port[i], "ehr_health_serving", 1, LEADER_WAIT_MS), 1);
        scrape(port[i], &p);
        assert_int_equal(value_of(&p, "ehr_health_status{reason=\"ok\"}"), 1);
        assert_int_equal(value_of(&p, "ehr_health_status{reason=\"no-leader\"}"), 0);
        assert_true(value_of(&p, "ehr_block_height") >= 0);
        assert_true(value_of(&p, "process_resident_memory_bytes") > 0);
        for (size_t j = 0; j < NODES; j++) {
            snprintf(series, sizeof series, "ehr_peer_up{peer=\"Member %zu\"}", j);
            assert_int_equal(value_of(&p, series), i == j ? -1 : 1); /* no line for itself */
        }
    }

    /* Under a load the counters move, on the leader and on a follower. */
    size_t follower = (leader + 1) % NODES;
    scrape(port[leader], &p);
    double committed0 = value_of(&p, "ehr_transactions_committed_total");
    double admitted0 = value_of(&p, "ehr_submissions_admitted_total");
    double blocks0 = value_of(&p, "ehr_blocks_applied_total");
    double commit_index0 = value_of(&p, "ehr_raft_commit_index");
    assert_true(committed0 >= 0);
    enum { TXS = 600 };
    struct cluster_tx *txs = cluster_txs_make(&c, TXS);
    assert_int_equal(cluster_load(&c, txs, TXS, 64, 120000, NULL, NULL), TXS);
    cluster_txs_free(txs, TXS);
    assert_int_not_equal(cluster_wait_converged(&c, LEADER_WAIT_MS), UINT64_MAX);
    usleep(300 * 1000); /* a few ticks: the counters are published */
    scrape(port[leader], &p);
    printf("leader: committed %.0f -> %.0f, blocks %.0f -> %.0f, commit index %.0f -> %.0f\n",
           committed0, value_of(&p, "ehr_transactions_committed_total"), blocks0,
           value_of(&p, "ehr_blocks_applied_total"), commit_index0,
           value_of(&p, "ehr_raft_commit_index"));
    assert_true(value_of(&p, "ehr_transactions_committed_total") >= committed0 + TXS);
    assert_true(value_of(&p, "ehr_submissions_admitted_total") >= admitted0 + TXS);
    assert_true(value_of(&p, "ehr_blocks_applied_total") > blocks0);
    assert_true(value_of(&p, "ehr_raft_commit_index") > commit_index0);
    assert_true(value_of(&p, "ehr_block_commit_seconds_count") > 0);
    assert_true(value_of(&p, "ehr_storage_sync_write_seconds_count{write=\"raft_log\"}") > 0);
    assert_true(value_of(&p, "ehr_storage_sync_write_seconds_count{write=\"block\"}") > 0);
    assert_int_equal(promtool_check(&p) == 0 || promtool_check(&p) == 77, 1);
    check_alert_rules_names(&p);
    /* Calls by method and status: a GetStatus moves its OK line, a call to
     * a method the node does not have moves the unknown one. */
    const char *status_ok = "ehr_rpc_calls_total{method=\"/ehr.v1.Node/GetStatus\",status=\"OK\"}";
    const char *unknown = "ehr_rpc_calls_total{method=\"unknown\",status=\"UNIMPLEMENTED\"}";
    scrape(port[leader], &p);
    double status_ok0 = value_of(&p, status_ok);
    assert_true(status_ok0 >= 0);
    assert_int_equal(value_of(&p, unknown), -1); /* no such call yet: no line */
    assert_true(value_of(&p, "ehr_rpc_calls_total{method=\"/ehr.v1.Node/SubmitTransaction\","
                             "status=\"OK\"}") >= 1);
    struct cluster_status cs;
    assert_int_equal(cluster_status(&c, leader, &cs), 0);
    struct rpc_result r;
    assert_int_equal(cluster_call(&c, leader, "NoSuchMethod", NULL, 0, 5000, &r),
                     RPC_STATUS_UNIMPLEMENTED);
    rpc_result_clear(&r);
    assert_true(wait_at_least(port[leader], status_ok, status_ok0 + 1, 5000) >= status_ok0 + 1);
    assert_true(wait_at_least(port[leader], unknown, 1, 5000) >= 1);
    /* The budgets' refusals have their lines (test_rpc provokes each). */
    scrape(port[leader], &p);
    assert_int_equal(value_of(&p, "ehr_rpc_refused_total{limit=\"unfinished_bytes_max\"}"), 0);
    assert_int_equal(value_of(&p, "ehr_rpc_refused_total{limit=\"unread_reply_bytes_max\"}"), 0);
    scrape(port[follower], &p);
    assert_true(value_of(&p, "ehr_transactions_committed_total") >= TXS);
    assert_int_equal(value_of(&p, "ehr_raft_proposals_inflight"), 0);
    assert_int_equal(value_of(&p, "ehr_block_commit_seconds_count"), 0); /* the leader's */

    /* A killed member's link drops on the leader's page, and comes back. */
    size_t victim = (leader + 2) % NODES;
    char up[96], ups[96];
    snprintf(up, sizeof up, "ehr_peer_up{peer=\"Member %zu\"}", victim);
    snprintf(ups, sizeof ups, "ehr_peer_link_ups_total{peer=\"Member %zu\"}", victim);
    scrape(port[leader], &p);
    double link_ups0 = value_of(&p, ups);
    assert_true(link_ups0 >= 1);
    double sends0 = value_of(&p, "ehr_snapshot_sends_total");
    assert_true(sends0 >= 0);
    cluster_kill(&c, victim);
    assert_int_equal(wait_value(port[leader], up, 0, 10000), 0);
    /* What it misses meanwhile is more than the leader keeps in its log. */
    enum { MISSED_TXS = 400 };
    txs = cluster_txs_make(&c, MISSED_TXS);
    assert_int_equal(cluster_load(&c, txs, MISSED_TXS, 64, 120000, NULL, NULL), MISSED_TXS);
    cluster_txs_free(txs, MISSED_TXS);
    scrape(port[leader], &p);
    char other[96];
    snprintf(other, sizeof other, "ehr_peer_up{peer=\"Member %zu\"}", follower);
    assert_int_equal(value_of(&p, other), 1);
    assert_int_equal(value_of(&p, "ehr_raft_has_leader"), 1); /* two of three: a quorum */
    cluster_start(&c, victim);
    assert_int_equal(wait_value(port[leader], up, 1, 20000), 1);
    scrape(port[leader], &p);
    assert_true(value_of(&p, ups) >= link_ups0 + 1);
    assert_int_equal(wait_value(port[victim], "ehr_snapshot_installs_total", 1, 30000), 1);
    scrape(port[leader], &p);
    printf("leader: snapshot sends %.0f -> %.0f\n", sends0,
           value_of(&p, "ehr_snapshot_sends_total"));
    assert_true(value_of(&p, "ehr_snapshot_sends_total") >= sends0 + 1);
    assert_int_equal(promtool_check(&p) == 0 || promtool_check(&p) == 77, 1);

    free(p.text);
    for (size_t i = 0; i < NODES; i++)
        assert_int_equal(cluster_stop(&c, i), 0);
    cluster_destroy(&c, keep_dirs());
}

/* A metrics port already taken: ehrd does not start, and says which. */
static void test_a_metrics_port_in_use_stops_ehrd_at_start(void **state)
{
    (void)state;
    struct cluster c;
    cluster_create(&c, 1, EHRD_PATH, EHRCTL_PATH, NULL);
    uint16_t port = metrics_enable(&c, 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    cluster_start(&c, 0);
    assert_int_equal(cluster_wait_exit(&c, 0, 10000), 1);
    close(fd);
    uint8_t *log = NULL;
    size_t len = 0;
    assert_int_equal(ehr_file_read_alloc(c.nodes[0].log, 1 << 20, &log, &len), 0);
    log = ehr_realloc(log, len + 1);
    log[len] = '\0';
    char want[96];
    snprintf(want, sizeof want, "cannot serve metrics on 127.0.0.1:%u", port);
    if (strstr((char *)log, want) == NULL)
        fail_msg("ehrd's log lacks \"%s\":\n%s", want, (char *)log);
    ehr_free(log);
    cluster_destroy(&c, keep_dirs());
}

static int kill_leftovers(void **state)
{
    (void)state;
    cluster_kill_all();
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    assert_int_equal(ehr_crypto_init(), 0);
    assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_a_metrics_port_in_use_stops_ehrd_at_start, kill_leftovers),
        cmocka_unit_test_teardown(test_metrics_of_a_running_network, kill_leftovers),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
