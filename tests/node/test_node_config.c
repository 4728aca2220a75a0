/*
 * test_node_config - the node's config file (node/config.h): a written
 * config loads back identically, omitted keys take their defaults, every
 * key's wrong type or value is refused with a message naming it, unknown
 * keys and malformed JSON are refused (with the line), relative paths are
 * resolved against the config file's directory, and every limit (and the
 * file size) is accepted at its edges and refused one past them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "ledger_testutil.h"

struct fixture {
    char *dir;
    char path[PATH_MAX];
    ehr_diag err;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->dir = tu_tmpdir();
    snprintf(f->path, sizeof f->path, "%s/ehrd.json", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/sub", f->dir);
    char file[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/ehrd.json", sub);
    unlink(file);
    rmdir(sub);
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* Load TEXT as the config; returns load's result (CFG freed unless 0). */
static int load_text(struct fixture *f, const char *text, struct node_config *cfg)
{
    write_text(f->path, text);
    f->err.msg[0] = '\0';
    return node_config_load(f->path, cfg, &f->err);
}

/* Expect TEXT to be refused with EHR_EINVAL and a message containing FRAGMENT. */
static void expect_refused(struct fixture *f, const char *text, const char *fragment)
{
    struct node_config cfg;
    int rc = load_text(f, text, &cfg);
    if (rc != EHR_EINVAL || strstr(f->err.msg, fragment) == NULL)
        fail_msg("config %s: rc %d, message \"%s\", wanted \"%s\"", text, rc, f->err.msg, fragment);
    assert_null(cfg.data_dir);
    node_config_free(&cfg);
}

#define BASE "\"data_dir\": \"/d\", \"peer_listen\": \"h:1\", \"rpc_listen\": \"h:2\""

static void test_written_config_loads_back_identically(void **state)
{
    struct fixture *f = *state;
    struct node_config out;
    node_config_defaults(&out);
    out.data_dir = "/var/lib/ehrd";
    out.key_file = "/etc/ehrd/node.key";
    out.passphrase_file = "/etc/ehrd/pass";
    out.peer_listen = "[::1]:7000";
    out.rpc_listen = "127.0.0.1:7001";
    out.metrics_listen = "127.0.0.1:7002";
    out.log_level = EHR_LOG_WARN;
    out.limits.mempool_tx_count = 7;
    out.limits.mempool_bytes = NODE_CONFIG_MEMPOOL_BYTES_MAX;
    out.limits.block_tx_count = 3;
    out.limits.block_bytes = NODE_CONFIG_BLOCK_BYTES_MIN;
    out.limits.block_flush_ms = 250;
    out.limits.rpc_message_bytes = NODE_CONFIG_RPC_MESSAGE_BYTES_MIN;
    out.limits.raft_tick_ms = 20;
    out.limits.election_ticks = 30;
    out.limits.heartbeat_ticks = 29;
    assert_int_equal(node_config_write(f->path, &out, false, &f->err), 0);

    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    uint8_t *text;
    size_t len;
    assert_int_equal(ehr_file_read_alloc(f->path, 1 << 16, &text, &len), 0);
    /* Indented, one key per line, ending in a newline. */
    assert_non_null(strstr((char *)text, "\n  \"data_dir\": \"/var/lib/ehrd\""));
    assert_non_null(strstr((char *)text, "\n    \"heartbeat_ticks\": 29"));
    assert_int_equal(text[len - 1], '\n');
    ehr_free(text);

    struct node_config in;
    assert_int_equal(node_config_load(f->path, &in, &f->err), 0);
    assert_string_equal(in.data_dir, out.data_dir);
    assert_string_equal(in.key_file, out.key_file);
    assert_string_equal(in.passphrase_file, out.passphrase_file);
    assert_string_equal(in.peer_listen, out.peer_listen);
    assert_string_equal(in.rpc_listen, out.rpc_listen);
    assert_string_equal(in.metrics_listen, out.metrics_listen);
    assert_int_equal(in.log_level, EHR_LOG_WARN);
    assert_memory_equal(&in.limits, &out.limits, sizeof in.limits);
    node_config_free(&in);
    node_config_free(&in); /* safe twice */

    /* Never replaced without OVERWRITE. */
    assert_int_equal(node_config_write(f->path, &out, false, &f->err), EHR_EEXIST);
    assert_int_equal(node_config_write(f->path, &out, true, &f->err), 0);
}

static void test_write_refuses_an_incomplete_config(void **state)
{
    struct fixture *f = *state;
    struct node_config cfg;
    node_config_defaults(&cfg);
    cfg.peer_listen = "h:1";
    cfg.rpc_listen = "h:2";
    assert_int_equal(node_config_write(f->path, &cfg, false, &f->err), EHR_EINVAL);
    assert_non_null(strstr(f->err.msg, "data_dir: required"));
    cfg.data_dir = "/d";
    cfg.limits.heartbeat_ticks = cfg.limits.election_ticks;
    assert_int_equal(node_config_write(f->path, &cfg, false, &f->err), EHR_EINVAL);
    assert_non_null(strstr(f->err.msg, "limits.heartbeat_ticks"));
    assert_int_equal(access(f->path, F_OK), -1);
}

static void test_omitted_keys_take_their_defaults(void **state)
{
    struct fixture *f = *state;
    struct node_config cfg;
    assert_int_equal(load_text(f, "{" BASE "}", &cfg), 0);
    assert_string_equal(cfg.data_dir, "/d");
    assert_string_equal(cfg.key_file, "/d/node.key");
    assert_null(cfg.passphrase_file);
    assert_null(cfg.metrics_listen); /* no metrics endpoint unless asked for */
    assert_int_equal(cfg.log_level, EHR_LOG_INFO);
    assert_int_equal(cfg.limits.mempool_tx_count, NODE_CONFIG_MEMPOOL_TX_COUNT_DEFAULT);
    assert_int_equal(cfg.limits.mempool_bytes, NODE_CONFIG_MEMPOOL_BYTES_DEFAULT);
    assert_int_equal(cfg.limits.block_tx_count, NODE_CONFIG_BLOCK_TX_COUNT_DEFAULT);
    assert_int_equal(cfg.limits.block_bytes, NODE_CONFIG_BLOCK_BYTES_DEFAULT);
    assert_int_equal(cfg.limits.block_flush_ms, NODE_CONFIG_BLOCK_FLUSH_MS_DEFAULT);
    assert_int_equal(cfg.limits.rpc_message_bytes, NODE_CONFIG_RPC_MESSAGE_BYTES_DEFAULT);
    assert_int_equal(cfg.limits.raft_tick_ms, NODE_CONFIG_RAFT_TICK_MS_DEFAULT);
    assert_int_equal(cfg.limits.election_ticks, NODE_CONFIG_ELECTION_TICKS_DEFAULT);
    assert_int_equal(cfg.limits.heartbeat_ticks, NODE_CONFIG_HEARTBEAT_TICKS_DEFAULT);
    assert_int_equal(cfg.limits.submit_rate_per_s, NODE_CONFIG_SUBMIT_RATE_PER_S_DEFAULT);
    assert_int_equal(cfg.limits.submit_burst, NODE_CONFIG_SUBMIT_BURST_DEFAULT);
    node_config_free(&cfg);

    /* An empty limits object is fine; each level name parses. */
    const char *levels[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(levels); i++) {
        char text[256];
        snprintf(text, sizeof text, "{" BASE ", \"log_level\": \"%s\", \"limits\": {}}", levels[i]);
        assert_int_equal(load_text(f, text, &cfg), 0);
        assert_int_equal(cfg.log_level, (int)i);
        node_config_free(&cfg);
    }
}

static void test_unknown_keys_are_refused(void **state)
{
    struct fixture *f = *state;
    expect_refused(f, "{" BASE ", \"data_dri\": \"/x\"}", "data_dri: unknown key");
    expect_refused(f, "{" BASE ", \"limits\": {\"mempool_tx_cout\": 5}}",
                   "limits.mempool_tx_cout: unknown key");
}

static void test_malformed_json_names_the_line(void **state)
{
    struct fixture *f = *state;
    expect_refused(f, "{\n  \"data_dir\": \"/d\",\n  oops\n}\n", "line 3");
    expect_refused(f, "{\"data_dir\": \"/d\", \"data_dir\": \"/e\"}", "duplicate");
    expect_refused(f, "[]", "must be one JSON object");
    expect_refused(f, "", "line");
}

static void test_each_key_refuses_a_wrong_type_or_value_naming_it(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *text, *fragment;
    } cases[] = {
        {"{\"peer_listen\": \"h:1\", \"rpc_listen\": \"h:2\"}", "data_dir: required"},
        {"{\"data_dir\": \"/d\", \"rpc_listen\": \"h:2\"}", "peer_listen: required"},
        {"{\"data_dir\": \"/d\", \"peer_listen\": \"h:2\"}", "rpc_listen: required"},
        {"{\"data_dir\": 5, \"peer_listen\": \"h:1\", \"rpc_listen\": \"h:2\"}",
         "data_dir: must be a string"},
        {"{\"data_dir\": \"\", \"peer_listen\": \"h:1\", \"rpc_listen\": \"h:2\"}",
         "data_dir: must be 1 to"},
        {"{" BASE ", \"key_file\": []}", "key_file: must be a string"},
        {"{" BASE ", \"passphrase_file\": true}", "passphrase_file: must be a string"},
        {"{\"data_dir\": \"/d\", \"peer_listen\": \"nohost\", \"rpc_listen\": \"h:2\"}",
         "peer_listen: \"nohost\" is not HOST:PORT"},
        {"{\"data_dir\": \"/d\", \"peer_listen\": \":80\", \"rpc_listen\": \"h:2\"}",
         "peer_listen: \":80\" has no host"},
        {"{\"data_dir\": \"/d\", \"peer_listen\": \"h:0\", \"rpc_listen\": \"h:2\"}",
         "peer_listen: \"h:0\" does not end in a port"},
        {"{\"data_dir\": \"/d\", \"peer_listen\": \"h:65536\", \"rpc_listen\": \"h:2\"}",
         "peer_listen: \"h:65536\" does not end in a port"},
        {"{\"data_dir\": \"/d\", \"peer_listen\": \"h_x:1\", \"rpc_listen\": \"h:2\"}",
         "peer_listen: \"h_x:1\": the host has a character"},
        {"{\"data_dir\": \"/d\", \"peer_listen\": \"h:1\", \"rpc_listen\": \"h:x\"}",
         "rpc_listen: \"h:x\" does not end in a port"},
        {"{\"data_dir\": \"/d\", \"peer_listen\": \"h:1\", \"rpc_listen\": 7001}",
         "rpc_listen: must be a string"},
        {"{" BASE ", \"metrics_listen\": \"h:0\"}", "metrics_listen: "},
        {"{" BASE ", \"metrics_listen\": 7002}", "metrics_listen: must be a string"},
        {"{" BASE ", \"log_level\": \"loud\"}", "log_level: must be one of"},
        {"{" BASE ", \"log_level\": \"off\"}", "log_level: must be one of"},
        {"{" BASE ", \"log_level\": 1}", "log_level: must be one of"},
        {"{" BASE ", \"limits\": []}", "limits: must be an object"},
        {"{" BASE ", \"limits\": {\"block_bytes\": \"1\"}}",
         "limits.block_bytes: must be an integer"},
        {"{" BASE ", \"limits\": {\"raft_tick_ms\": 1.5}}",
         "limits.raft_tick_ms: must be an integer"},
        {"{" BASE ", \"limits\": {\"mempool_tx_count\": 0}}",
         "limits.mempool_tx_count: 0 is below the minimum 1"},
        {"{" BASE ", \"limits\": {\"block_flush_ms\": -1}}",
         "limits.block_flush_ms: -1 is below the minimum 1"},
        {"{" BASE ", \"limits\": {\"election_ticks\": 5, \"heartbeat_ticks\": 5}}",
         "limits.heartbeat_ticks: 5 must be below limits.election_ticks (5)"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++)
        expect_refused(f, cases[i].text, cases[i].fragment);
}

/* One limit: its key and range, restated here from the headers. */
struct limit_edge {
    const char *name;
    uint64_t min, max;
};

static void test_every_limit_at_its_edges(void **state)
{
    struct fixture *f = *state;
    static const struct limit_edge limits[] = {
        {"mempool_tx_count", NODE_CONFIG_MEMPOOL_TX_COUNT_MIN, NODE_CONFIG_MEMPOOL_TX_COUNT_MAX},
        {"mempool_bytes", NODE_CONFIG_MEMPOOL_BYTES_MIN, NODE_CONFIG_MEMPOOL_BYTES_MAX},
        {"block_tx_count", 1, EHR_BLOCK_TX_COUNT_MAX},
        {"block_bytes", NODE_CONFIG_BLOCK_BYTES_MIN, NODE_CONFIG_PROPOSAL_BYTES_MAX},
        {"block_flush_ms", 1, 60000},
        {"rpc_message_bytes", EHR_TX_BYTES_MAX + 1024, 4u << 20},
        {"raft_tick_ms", 1, 10000},
        {"election_ticks", NODE_CONFIG_ELECTION_TICKS_MIN, NODE_CONFIG_ELECTION_TICKS_MAX},
        {"heartbeat_ticks", 1, NODE_CONFIG_ELECTION_TICKS_MAX - 1},
        {"snapshot_entries", 16, (uint64_t)1 << 32},
        {"submit_rate_per_s", 1, 1000000},
        {"submit_burst", 1, 1000000},
    };
    /* The proposal bound is the tighter one for a block. */
    assert_true((long)NODE_CONFIG_PROPOSAL_BYTES_MAX < (long)EHR_BLOCK_BYTES_MAX);
    for (size_t i = 0; i < EHR_ARRAY_COUNT(limits); i++) {
        const struct limit_edge *e = &limits[i];
        /* heartbeat_ticks must stay below election_ticks: give it room. */
        const char *room =
            strcmp(e->name, "heartbeat_ticks") == 0 ? ", \"election_ticks\": 100000" : "";
        const uint64_t values[] = {e->min - 1, e->min, e->max, e->max + 1};
        for (size_t v = 0; v < EHR_ARRAY_COUNT(values); v++) {
            char text[512];
            snprintf(text, sizeof text, "{" BASE ", \"limits\": {\"%s\": %llu%s}}", e->name,
                     (unsigned long long)values[v], room);
            struct node_config cfg;
            int rc = load_text(f, text, &cfg);
            bool inside = v == 1 || v == 2;
            if (inside) {
                if (rc != 0)
                    fail_msg("%s = %llu refused: %s", e->name, (unsigned long long)values[v],
                             f->err.msg);
                const struct node_config_limits *l = &cfg.limits;
                const uint64_t got[] = {
                    l->mempool_tx_count, l->mempool_bytes,     l->block_tx_count,
                    l->block_bytes,      l->block_flush_ms,    l->rpc_message_bytes,
                    l->raft_tick_ms,     l->election_ticks,    l->heartbeat_ticks,
                    l->snapshot_entries, l->submit_rate_per_s, l->submit_burst};
                _Static_assert(sizeof got / sizeof got[0] == sizeof limits / sizeof limits[0],
                               "every limit is checked");
                assert_int_equal(got[i], values[v]);
            } else {
                char want[128];
                snprintf(want, sizeof want, "limits.%s: %llu is %s", e->name,
                         (unsigned long long)values[v],
                         v == 0 ? "below the minimum" : "above the maximum");
                if (rc != EHR_EINVAL || strstr(f->err.msg, want) == NULL)
                    fail_msg("%s = %llu: rc %d, \"%s\"", e->name, (unsigned long long)values[v], rc,
                             f->err.msg);
            }
            node_config_free(&cfg);
        }
    }
}

static void test_string_lengths_at_their_edges(void **state)
{
    struct fixture *f = *state;
    static char text[2 * NODE_CONFIG_PATH_BYTES_MAX];
    static char long_path[NODE_CONFIG_PATH_BYTES_MAX + 2];
    struct node_config cfg;
    /* An absolute path of exactly the maximum, then one byte more. */
    long_path[0] = '/';
    memset(long_path + 1, 'a', NODE_CONFIG_PATH_BYTES_MAX - 1);
    long_path[NODE_CONFIG_PATH_BYTES_MAX] = '\0';
    snprintf(text, sizeof text,
             "{\"data_dir\": \"/d\", \"key_file\": \"%s\", \"peer_listen\": \"h:1\", "
             "\"rpc_listen\": \"h:2\"}",
             long_path);
    assert_int_equal(load_text(f, text, &cfg), 0);
    assert_int_equal(strlen(cfg.key_file), NODE_CONFIG_PATH_BYTES_MAX);
    node_config_free(&cfg);
    long_path[NODE_CONFIG_PATH_BYTES_MAX] = 'a';
    long_path[NODE_CONFIG_PATH_BYTES_MAX + 1] = '\0';
    snprintf(text, sizeof text,
             "{\"data_dir\": \"/d\", \"key_file\": \"%s\", \"peer_listen\": \"h:1\", "
             "\"rpc_listen\": \"h:2\"}",
             long_path);
    expect_refused(f, text, "key_file: must be 1 to 4095 bytes");

    /* A listen address of exactly NODE_CONFIG_ADDRESS_BYTES_MAX, then one more. */
    char host[NODE_CONFIG_ADDRESS_BYTES_MAX + 2];
    memset(host, 'h', sizeof host);
    host[NODE_CONFIG_ADDRESS_BYTES_MAX - 5] = '\0'; /* + ":7000" = the maximum */
    snprintf(text, sizeof text,
             "{\"data_dir\": \"/d\", \"peer_listen\": \"%s:7000\", \"rpc_listen\": \"h:2\"}", host);
    assert_int_equal(load_text(f, text, &cfg), 0);
    assert_int_equal(strlen(cfg.peer_listen), NODE_CONFIG_ADDRESS_BYTES_MAX);
    node_config_free(&cfg);
    host[NODE_CONFIG_ADDRESS_BYTES_MAX - 5] = 'h';
    host[NODE_CONFIG_ADDRESS_BYTES_MAX - 4] = '\0';
    snprintf(text, sizeof text,
             "{\"data_dir\": \"/d\", \"peer_listen\": \"%s:7000\", \"rpc_listen\": \"h:2\"}", host);
    expect_refused(f, text, "peer_listen: must be 1 to 256 bytes");
}

static void test_file_size_at_its_edge(void **state)
{
    struct fixture *f = *state;
    static char text[NODE_CONFIG_FILE_BYTES_MAX + 2];
    const char *body = "{" BASE "}";
    size_t body_len = strlen(body);
    memcpy(text, body, body_len);
    /* Pad with spaces to exactly the maximum. */
    memset(text + body_len, ' ', NODE_CONFIG_FILE_BYTES_MAX - body_len);
    text[NODE_CONFIG_FILE_BYTES_MAX] = '\0';
    struct node_config cfg;
    assert_int_equal(load_text(f, text, &cfg), 0);
    node_config_free(&cfg);
    text[NODE_CONFIG_FILE_BYTES_MAX] = ' ';
    text[NODE_CONFIG_FILE_BYTES_MAX + 1] = '\0';
    assert_int_equal(load_text(f, text, &cfg), EHR_ETOOBIG);
    assert_non_null(strstr(f->err.msg, "larger than 65536 bytes"));
    node_config_free(&cfg);
}

static void test_missing_file_is_reported(void **state)
{
    struct fixture *f = *state;
    struct node_config cfg;
    assert_int_equal(node_config_load(f->path, &cfg, &f->err), -ENOENT);
    assert_non_null(strstr(f->err.msg, "ehrd.json: cannot read"));
    node_config_free(&cfg);
}

static void test_relative_paths_resolve_against_the_config_directory(void **state)
{
    struct fixture *f = *state;
    char sub[PATH_MAX], real[PATH_MAX], want[PATH_MAX + 32], file[PATH_MAX + 16];
    snprintf(sub, sizeof sub, "%s/sub", f->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_non_null(realpath(sub, real));
    snprintf(file, sizeof file, "%s/ehrd.json", sub);
    write_text(file, "{\"data_dir\": \"data\", \"key_file\": \"../k.key\", \"passphrase_file\": "
                     "\"/abs/pass\", \"peer_listen\": \"h:1\", \"rpc_listen\": \"h:2\"}");
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    /* From three working directories: the same absolute results. */
    const char *from[][2] = {{"/", file}, {f->dir, "sub/ehrd.json"}, {sub, "ehrd.json"}};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(from); i++) {
        assert_int_equal(chdir(from[i][0]), 0);
        struct node_config cfg;
        int rc = node_config_load(from[i][1], &cfg, &f->err);
        assert_int_equal(chdir(cwd), 0);
        assert_int_equal(rc, 0);
        snprintf(want, sizeof want, "%s/data", real);
        assert_string_equal(cfg.data_dir, want);
        snprintf(want, sizeof want, "%s/../k.key", real);
        assert_string_equal(cfg.key_file, want);
        assert_string_equal(cfg.passphrase_file, "/abs/pass");
        node_config_free(&cfg);
    }
}

/* Listen addresses: literals pass through, a name is resolved, a name that
 * does not resolve is refused with its reason. */
static void test_listen_addresses_resolve_to_ip_literals(void **state)
{
    (void)state;
    char out[NODE_CONFIG_ADDRESS_BYTES_MAX + 1];
    ehr_diag err;
    assert_int_equal(node_config_listen_resolve("127.0.0.1:7000", out, sizeof out, &err), 0);
    assert_string_equal(out, "127.0.0.1:7000");
    assert_int_equal(node_config_listen_resolve("0.0.0.0:1", out, sizeof out, &err), 0);
    assert_string_equal(out, "0.0.0.0:1");
    assert_int_equal(node_config_listen_resolve("[::1]:65535", out, sizeof out, &err), 0);
    assert_string_equal(out, "[::1]:65535");
    assert_int_equal(node_config_listen_resolve("localhost:7001", out, sizeof out, &err), 0);
    assert_true(strcmp(out, "127.0.0.1:7001") == 0 || strcmp(out, "[::1]:7001") == 0);
    assert_int_equal(node_config_listen_resolve("no-such-host.invalid:7001", out, sizeof out, &err),
                     EHR_ENOTFOUND);
    assert_non_null(strstr(err.msg, "cannot resolve \"no-such-host.invalid\""));
}

static void test_tls_keys_load_resolve_and_write_back(void **state)
{
    struct fixture *f = *state;
    struct node_config cfg;
    /* Omitted: cleartext, insecure_rpc false. */
    assert_int_equal(load_text(f, "{" BASE "}", &cfg), 0);
    assert_null(cfg.tls_cert_file);
    assert_null(cfg.tls_key_file);
    assert_null(cfg.tls_client_ca_file);
    assert_false(cfg.insecure_rpc);
    node_config_free(&cfg);
    assert_int_equal(load_text(f,
                               "{" BASE ", \"tls_cert_file\": \"api.crt\", \"tls_key_file\": "
                               "\"/k/api.key\", \"tls_client_ca_file\": \"ca.pem\", "
                               "\"insecure_rpc\": true}",
                               &cfg),
                     0);
    char want[PATH_MAX + 16];
    char dir[PATH_MAX];
    assert_non_null(realpath(f->dir, dir));
    snprintf(want, sizeof want, "%s/api.crt", dir);
    assert_string_equal(cfg.tls_cert_file, want); /* relative to the config's directory */
    assert_string_equal(cfg.tls_key_file, "/k/api.key");
    snprintf(want, sizeof want, "%s/ca.pem", dir);
    assert_string_equal(cfg.tls_client_ca_file, want);
    assert_true(cfg.insecure_rpc);
    /* Written and read back the same. */
    assert_int_equal(node_config_write(f->path, &cfg, true, &f->err), 0);
    struct node_config again;
    assert_int_equal(node_config_load(f->path, &again, &f->err), 0);
    assert_string_equal(again.tls_cert_file, cfg.tls_cert_file);
    assert_string_equal(again.tls_key_file, cfg.tls_key_file);
    assert_string_equal(again.tls_client_ca_file, cfg.tls_client_ca_file);
    assert_true(again.insecure_rpc);
    node_config_free(&again);
    node_config_free(&cfg);
}

static void test_tls_keys_refused_alone_or_of_a_wrong_type(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *text, *fragment;
    } cases[] = {
        {"{" BASE ", \"tls_cert_file\": \"a.crt\"}", "tls_cert_file: needs tls_key_file"},
        {"{" BASE ", \"tls_key_file\": \"a.key\"}", "tls_key_file: needs tls_cert_file"},
        {"{" BASE ", \"tls_client_ca_file\": \"ca.pem\"}",
         "tls_client_ca_file: needs tls_cert_file"},
        {"{" BASE ", \"tls_cert_file\": 1}", "tls_cert_file: must be a string"},
        {"{" BASE ", \"tls_key_file\": \"\"}", "tls_key_file: must be 1 to"},
        {"{" BASE ", \"tls_client_ca_file\": null}", "tls_client_ca_file: must be a string"},
        {"{" BASE ", \"insecure_rpc\": \"yes\"}", "insecure_rpc: must be true or false"},
        {"{" BASE ", \"insecure_rpc\": 1}", "insecure_rpc: must be true or false"},
        {"{" BASE ", \"insecure_rpc\": null}", "insecure_rpc: must be true or false"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++)
        expect_refused(f, cases[i].text, cases[i].fragment);
    /* The same rules for a config built in memory (ehrctl init). */
    struct node_config cfg;
    node_config_defaults(&cfg);
    cfg.data_dir = "/d";
    cfg.peer_listen = "h:1";
    cfg.rpc_listen = "h:2";
    cfg.tls_key_file = "/k";
    assert_int_equal(node_config_check(&cfg, &f->err), EHR_EINVAL);
    assert_non_null(strstr(f->err.msg, "tls_key_file: needs tls_cert_file"));
}

static void test_loopback_addresses_at_their_edges(void **state)
{
    assert_true(node_config_address_is_loopback("127.0.0.1:7001"));
    assert_true(node_config_address_is_loopback("127.255.255.254:1"));
    assert_true(node_config_address_is_loopback("[::1]:7001"));
    assert_false(node_config_address_is_loopback("128.0.0.1:7001"));
    assert_false(node_config_address_is_loopback("126.255.255.255:7001"));
    assert_false(node_config_address_is_loopback("0.0.0.0:7001"));
    assert_false(node_config_address_is_loopback("[::]:7001"));
    assert_false(node_config_address_is_loopback("[::2]:7001"));
    assert_false(node_config_address_is_loopback("[::ffff:127.0.0.1]:7001"));
    assert_false(node_config_address_is_loopback("10.0.0.1:7001"));
    assert_false(node_config_address_is_loopback("localhost:7001")); /* resolve it first */
    assert_false(node_config_address_is_loopback("nonsense"));
}

static void test_rpc_exposure_needs_tls_or_insecure_rpc_beyond_loopback(void **state)
{
    struct node_config cfg;
    node_config_defaults(&cfg);
    cfg.rpc_listen = "0.0.0.0:7001";
    ehr_diag why;
    bool insecure = true;
    /* Loopback: cleartext is fine, and not insecure. */
    assert_int_equal(node_config_rpc_exposure_check(&cfg, "127.0.0.1:7001", &insecure, &why), 0);
    assert_false(insecure);
    /* Beyond it, without TLS: refused, saying what to set. */
    assert_int_equal(node_config_rpc_exposure_check(&cfg, "0.0.0.0:7001", &insecure, &why),
                     EHR_EINVAL);
    assert_non_null(strstr(why.msg, "not a loopback address and TLS is not configured"));
    assert_non_null(strstr(why.msg, "tls_cert_file"));
    assert_non_null(strstr(why.msg, "insecure_rpc"));
    /* ... unless the operator says so: served, and flagged for the warning. */
    cfg.insecure_rpc = true;
    assert_int_equal(node_config_rpc_exposure_check(&cfg, "0.0.0.0:7001", &insecure, &why), 0);
    assert_true(insecure);
    /* With TLS: served, not insecure. */
    cfg.insecure_rpc = false;
    cfg.tls_cert_file = "/c";
    cfg.tls_key_file = "/k";
    assert_int_equal(node_config_rpc_exposure_check(&cfg, "[::]:7001", &insecure, &why), 0);
    assert_false(insecure);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_written_config_loads_back_identically, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_write_refuses_an_incomplete_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_omitted_keys_take_their_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_json_names_the_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_key_refuses_a_wrong_type_or_value_naming_it,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_limit_at_its_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_lengths_at_their_edges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_size_at_its_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_is_reported, setup, teardown),
        cmocka_unit_test(test_listen_addresses_resolve_to_ip_literals),
        cmocka_unit_test_setup_teardown(test_relative_paths_resolve_against_the_config_directory,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_keys_load_resolve_and_write_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_keys_refused_alone_or_of_a_wrong_type, setup,
                                        teardown),
        cmocka_unit_test(test_loopback_addresses_at_their_edges),
        cmocka_unit_test(test_rpc_exposure_needs_tls_or_insecure_rpc_beyond_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
