/*
 * TLS on the node's API, end to end with real processes: ehrd started from
 * configs that name (or do not name) certificates made at test time by
 * tests/rpc/make_tls_certs.sh, and the real ehrctl with --tls-ca,
 * --tls-cert, --tls-key and their $EHR_TLS_* defaults. The rule at start
 * (no cleartext beyond loopback unless insecure_rpc, and then a warning),
 * who ehrctl reaches and who it is refused by, mutual TLS, and a SIGHUP
 * that makes new connections use a new certificate (and keeps the old one
 * when the new files are bad).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "config.h"
#include "node.h"
#include "proc.h"

static struct cluster cl;
static char certs[CLUSTER_PATH_BYTES];

static int group_setup(void **state)
{
    cluster_create(&cl, 1, EHRD_PATH, EHRCTL_PATH, NULL);
    snprintf(certs, sizeof certs, "%s/certs", cl.root);
    char cmd[2 * CLUSTER_PATH_BYTES];
    snprintf(cmd, sizeof cmd, "sh %s %s", EHR_TLS_CERTS_SCRIPT, certs);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    cluster_kill_all();
    cluster_destroy(&cl, false);
    return 0;
}

/* CERTS/NAME (one of PROC_PATH_SLOTS rotating buffers). */
static const char *cert(const char *name)
{
    return proc_path(certs, name);
}

static void copy_file(const char *from, const char *to)
{
    char *text = proc_slurp(from, 1 << 16);
    proc_text_write(to, text);
    ehr_free(text);
}

/* Node 0's config with these TLS keys (NULL: absent) and RPC_LISTEN. */
static void config_set(const char *rpc_listen, const char *cert_file, const char *key_file,
                       const char *client_ca_file, bool insecure)
{
    struct node_config cfg;
    ehr_diag err;
    assert_int_equal(node_config_load(cl.nodes[0].config, &cfg, &err), 0);
    ehr_free(cfg.rpc_listen);
    cfg.rpc_listen = ehr_strdup(rpc_listen);
    ehr_free(cfg.tls_cert_file);
    ehr_free(cfg.tls_key_file);
    ehr_free(cfg.tls_client_ca_file);
    cfg.tls_cert_file = cert_file ? ehr_strdup(cert_file) : NULL;
    cfg.tls_key_file = key_file ? ehr_strdup(key_file) : NULL;
    cfg.tls_client_ca_file = client_ca_file ? ehr_strdup(client_ca_file) : NULL;
    cfg.insecure_rpc = insecure;
    if (node_config_write(cl.nodes[0].config, &cfg, true, &err) != 0)
        fail_msg("config: %s", err.msg);
    node_config_free(&cfg);
}

static const char *loopback(void)
{
    static char text[64];
    snprintf(text, sizeof text, "127.0.0.1:%u", cl.nodes[0].rpc_port);
    return text;
}

/* `ehrctl status --node HOST:PORT EXTRA...` with ENV over ours; its result. */
static struct proc_result ehrctl_status(const char *host, const char *const *extra,
                                        const char *const *env)
{
    char node[64];
    snprintf(node, sizeof node, "%s:%u", host, cl.nodes[0].rpc_port);
    const char *args[16] = {"status", "--node", node, "--timeout-ms", "5000"};
    size_t n = 5;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    struct proc_spec spec = {.path = cl.ehrctl, .args = args, .env = env, .env_inherit = true};
    return proc_run(&spec);
}

/* Expect ehrctl status to exit WANT with FRAGMENT on stderr (NULL: any). */
static void expect_status(const char *host, const char *const *extra, const char *const *env,
                          int want, const char *fragment)
{
    struct proc_result r = ehrctl_status(host, extra, env);
    if (r.status != want || (fragment != NULL && strstr(r.err, fragment) == NULL))
        fail_msg("ehrctl status: exit %d, wanted %d with \"%s\"; stderr: %s", r.status, want,
                 fragment ? fragment : "", r.err);
    proc_result_free(&r);
}

/* Wait until node 0 answers, over TLS with the CA CA (NULL: cleartext). */
static void wait_serving(const char *ca)
{
    for (int i = 0; i < 200; i++) {
        struct proc_result r =
            ehrctl_status("127.0.0.1", ca != NULL ? PROC_ARGS("--tls-ca", ca, NULL) : NULL, NULL);
        int status = r.status;
        proc_result_free(&r);
        if (status == 0)
            return;
        usleep(50 * 1000);
    }
    fail_msg("node 0 did not serve over TLS");
}

/* Wait until node 0's log holds TEXT COUNT times. */
static void wait_log(const char *text, int count)
{
    for (int i = 0; i < 200; i++) {
        char *log = proc_slurp(cl.nodes[0].log, PROC_TEXT_BYTES_MAX);
        int seen = 0;
        for (const char *p = log; (p = strstr(p, text)) != NULL; p += strlen(text))
            seen++;
        ehr_free(log);
        if (seen >= count)
            return;
        usleep(50 * 1000);
    }
    fail_msg("node 0's log never said \"%s\" %d times", text, count);
}

static void test_cleartext_beyond_loopback_needs_insecure_rpc(void **state)
{
    char any[64];
    snprintf(any, sizeof any, "0.0.0.0:%u", cl.nodes[0].rpc_port);
    config_set(any, NULL, NULL, NULL, false);
    cluster_start(&cl, 0);
    assert_int_equal(cluster_wait_exit(&cl, 0, 20000), NODE_EXIT_FAILURE);
    char *log = proc_slurp(cl.nodes[0].log, PROC_TEXT_BYTES_MAX);
    assert_non_null(strstr(log, "is not a loopback address and TLS is not configured"));
    assert_non_null(strstr(log, "insecure_rpc"));
    ehr_free(log);
    /* Said so, it serves, and warns. */
    config_set(any, NULL, NULL, NULL, true);
    cluster_start(&cl, 0);
    wait_serving(NULL);
    wait_log("the RPC API is served without TLS beyond this host", 1);
    assert_int_equal(cluster_stop(&cl, 0), 0);
    /* With TLS it serves beyond loopback without a word of warning. */
    log = proc_slurp(cl.nodes[0].log, PROC_TEXT_BYTES_MAX);
    size_t before = strlen(log); /* the log is appended to by every start */
    ehr_free(log);
    config_set(any, cert("server.pem"), cert("server.key"), NULL, false);
    cluster_start(&cl, 0);
    wait_serving(cert("ca.pem"));
    assert_int_equal(cluster_stop(&cl, 0), 0);
    log = proc_slurp(cl.nodes[0].log, PROC_TEXT_BYTES_MAX);
    assert_true(strlen(log) > before);
    assert_null(strstr(log + before, "served without TLS"));
    ehr_free(log);
}

static void test_ehrctl_over_tls_and_a_reload_on_sighup(void **state)
{
    /* The config names files the operator replaces in place. */
    char api_crt[CLUSTER_PATH_BYTES], api_key[CLUSTER_PATH_BYTES];
    snprintf(api_crt, sizeof api_crt, "%s/api.crt", cl.root);
    snprintf(api_key, sizeof api_key, "%s/api.key", cl.root);
    copy_file(cert("server.pem"), api_crt);
    copy_file(cert("server.key"), api_key);
    config_set(loopback(), api_crt, api_key, NULL, false);
    pid_t pid = cluster_start(&cl, 0);
    wait_serving(cert("ca.pem"));
    /* --wait-leader polls over TLS too. */
    expect_status("127.0.0.1", PROC_ARGS("--wait-leader", "30", "--tls-ca", cert("ca.pem"), NULL),
                  NULL, 0, NULL);
    /* By name (the certificate holds localhost), and from $EHR_TLS_CA. */
    expect_status("localhost", PROC_ARGS("--tls-ca", cert("ca.pem"), NULL), NULL, 0, NULL);
    char env_ca[CLUSTER_PATH_BYTES + 16];
    snprintf(env_ca, sizeof env_ca, "EHR_TLS_CA=%s", cert("ca.pem"));
    expect_status("127.0.0.1", NULL, PROC_ARGS(env_ca, NULL), 0, NULL);
    /* Without the CA, or without TLS: refused, saying why (exit 6: UNAVAILABLE). */
    expect_status("127.0.0.1", PROC_ARGS("--tls-ca", cert("other-ca.pem"), NULL), NULL, 6,
                  "certificate verify failed");
    expect_status("127.0.0.1", NULL, NULL, 6, "answered with TLS");
    /* A key that is not the certificate's: the reload is refused, the old one stays. */
    copy_file(cert("other-server.pem"), api_crt);
    assert_int_equal(kill(pid, SIGHUP), 0);
    wait_log("TLS certificate not reloaded: the old one stays", 1);
    expect_status("127.0.0.1", PROC_ARGS("--tls-ca", cert("ca.pem"), NULL), NULL, 0, NULL);
    /* The matching key too: new connections get the new certificate. */
    copy_file(cert("other-server.key"), api_key);
    assert_int_equal(kill(pid, SIGHUP), 0);
    wait_log("TLS certificate reloaded: new connections use it", 1);
    expect_status("127.0.0.1", PROC_ARGS("--tls-ca", cert("other-ca.pem"), NULL), NULL, 0, NULL);
    expect_status("127.0.0.1", PROC_ARGS("--tls-ca", cert("ca.pem"), NULL), NULL, 6,
                  "certificate verify failed");
    assert_int_equal(cluster_stop(&cl, 0), 0);
    /* The key's contents never reach the log. */
    char *log = proc_slurp(cl.nodes[0].log, PROC_TEXT_BYTES_MAX);
    char *key = proc_slurp(api_key, 1 << 16);
    const char *body = strchr(key, '\n');
    assert_non_null(body);
    char line[32];
    snprintf(line, sizeof line, "%.24s", body + 1);
    assert_null(strstr(log, line));
    assert_null(strstr(log, "PRIVATE KEY"));
    ehr_free(key);
    ehr_free(log);
}

static void test_mutual_tls_through_ehrctl(void **state)
{
    config_set(loopback(), cert("server.pem"), cert("server.key"), cert("ca.pem"), false);
    cluster_start(&cl, 0);
    char ca[CLUSTER_PATH_BYTES];
    snprintf(ca, sizeof ca, "%s", cert("ca.pem"));
    /* Up once it refuses a client without a certificate for that reason. */
    for (int i = 0; i < 200; i++) {
        struct proc_result r = ehrctl_status("127.0.0.1", PROC_ARGS("--tls-ca", ca, NULL), NULL);
        bool up = strstr(r.err, "connection refused") == NULL;
        proc_result_free(&r);
        if (up)
            break;
        usleep(50 * 1000);
    }
    /* No certificate: refused (TLS 1.3: the alert ends the first call). */
    expect_status("127.0.0.1", PROC_ARGS("--tls-ca", ca, NULL), NULL, 6, "certificate required");
    expect_status("127.0.0.1",
                  PROC_ARGS("--tls-ca", ca, "--tls-cert", cert("other-client.pem"), "--tls-key",
                            cert("other-client.key"), NULL),
                  NULL, 6, "unknown ca");
    expect_status("127.0.0.1",
                  PROC_ARGS("--tls-ca", ca, "--tls-cert", cert("client.pem"), "--tls-key",
                            cert("client.key"), NULL),
                  NULL, 0, NULL);
    /* The same from the environment. */
    char env[3][CLUSTER_PATH_BYTES + 16];
    snprintf(env[0], sizeof env[0], "EHR_TLS_CA=%s", cert("ca.pem"));
    snprintf(env[1], sizeof env[1], "EHR_TLS_CERT=%s", cert("client.pem"));
    snprintf(env[2], sizeof env[2], "EHR_TLS_KEY=%s", cert("client.key"));
    expect_status("127.0.0.1", NULL, PROC_ARGS(env[0], env[1], env[2], NULL), 0, NULL);
    /* Half of a pair is a usage error (2), a bad file a failure (1). */
    expect_status("127.0.0.1", PROC_ARGS("--tls-ca", ca, "--tls-cert", cert("client.pem"), NULL),
                  NULL, 2, "go together");
    expect_status(
        "127.0.0.1",
        PROC_ARGS("--tls-cert", cert("client.pem"), "--tls-key", cert("client.key"), NULL), NULL, 2,
        "needs --tls-ca");
    expect_status("127.0.0.1", PROC_ARGS("--tls-ca", cert("nope.pem"), NULL), NULL, 1, "nope.pem");
    expect_status("127.0.0.1",
                  PROC_ARGS("--tls-ca", ca, "--tls-cert", cert("client.pem"), "--tls-key",
                            cert("locked.key"), NULL),
                  NULL, 1, "locked.key");
    assert_int_equal(cluster_stop(&cl, 0), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (ehr_crypto_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cleartext_beyond_loopback_needs_insecure_rpc),
        cmocka_unit_test(test_ehrctl_over_tls_and_a_reload_on_sighup),
        cmocka_unit_test(test_mutual_tls_through_ehrctl),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
