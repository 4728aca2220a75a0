/*
 * test_cli_init - `ehrctl init`, run as a subprocess in a fresh temporary
 * directory with an empty environment and stdin from /dev/null: success
 * creates the data directory, the key copy and the config with private
 * modes (and the config loads with node_config_load, the ledger matches the
 * genesis); a key that is not a founding member is refused with nothing
 * created; a re-run is refused without changing anything unless --force;
 * usage errors exit 2 and create nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_check.h"
#include "config.h"
#include "datadir.h"
#include "ehr_crypto.h"
#include "proc.h"

#define EHRCTL EHR_BINARY_DIR "/cli/ehrctl"

struct fixture {
    char *dir;
};

static const char *path_in(const struct fixture *f, const char *name)
{
    return proc_path(f->dir, name);
}

/* Run ehrctl in F's directory, with an empty environment, on ARGS. */
static struct proc_result run_list(const struct fixture *f, const char *const *args)
{
    return proc_run(
        &(struct proc_spec){.path = EHRCTL, .argv0 = "ehrctl", .args = args, .cwd = f->dir});
}

#define run(f, ...) run_list(f, PROC_ARGS(__VA_ARGS__, (const char *)NULL))

/* Run, expecting success. */
static void run_ok(struct proc_result r)
{
    if (r.status != 0)
        fail_msg("ehrctl failed (%d): %s", r.status, r.err);
    proc_result_free(&r);
}

/* A genesis file NAME of chain CHAIN_ID whose members are the key files KEYS. */
static void genesis_make(const struct fixture *f, const char *name, const char *chain_id,
                         const char *const *keys, size_t count)
{
    json_t *list = json_array();
    for (size_t i = 0; i < count; i++) {
        char member_name[48], address[48];
        snprintf(member_name, sizeof member_name, "member %zu", i);
        snprintf(address, sizeof address, "10.0.0.%zu:7000", i + 1);
        struct proc_result r = run(f, "genesis", "member", "--key", keys[i], "--name", member_name,
                                   "--role", "hospital", "--address", address);
        assert_int_equal(r.status, 0);
        json_error_t error;
        json_t *member = json_loads(r.out, 0, &error);
        assert_non_null(member);
        json_array_append_new(list, member);
        proc_result_free(&r);
    }
    json_t *root = json_pack("{s:o}", "members", list);
    char *text = json_dumps(root, 0);
    proc_text_write(path_in(f, "members.json"), text);
    free(text);
    json_decref(root);
    run_ok(run(f, "genesis", "--members", "members.json", "--chain-id", chain_id, "--out", name,
               "--force"));
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || ehr_crypto_init() != 0)
        return -1;
    f->dir = proc_dir_make("test-init");
    *state = f;
    /* Two keys, one a founding member of chain test-1, the other not. */
    run_ok(run(f, "keygen", "--out", "a.key", "--no-passphrase"));
    run_ok(run(f, "keygen", "--out", "b.key", "--no-passphrase"));
    const char *member[] = {"a.key"};
    genesis_make(f, "genesis.pb", "test-1", member, 1);
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    proc_dir_remove(f->dir);
    free(f);
    return 0;
}

static unsigned file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

#define INIT_ARGS(data)                                                                            \
    "init", "--genesis", "genesis.pb", "--key", "a.key", "--data", data, "--peer-listen",          \
        "0.0.0.0:7000", "--rpc-listen", "127.0.0.1:7001"

static void test_init_creates_the_directory_key_and_config_with_private_modes(void **state)
{
    struct fixture *f = *state;
    struct proc_result r = run(f, INIT_ARGS("node"));
    if (r.status != 0)
        fail_msg("init failed: %s", r.err);
    char real[PATH_MAX], want[PATH_MAX + 64];
    assert_non_null(realpath(path_in(f, "node"), real));
    /* It says what it did and how the node will be started, nothing more. */
    snprintf(want, sizeof want, "ehrd --config %s/ehrd.json", real);
    assert_non_null(strstr(r.out, want));
    assert_non_null(strstr(r.out, "test-1"));
    assert_string_equal(r.err, "");
    proc_result_free(&r);

    assert_int_equal(file_mode(path_in(f, "node")), 0700);
    assert_int_equal(file_mode(path_in(f, "node/node.key")), 0600);
    assert_int_equal(file_mode(path_in(f, "node/ehrd.json")), 0600);
    char *original = proc_slurp(path_in(f, "a.key"), PROC_TEXT_BYTES_MAX),
         *copy = proc_slurp(path_in(f, "node/node.key"), PROC_TEXT_BYTES_MAX);
    assert_string_equal(copy, original);
    ehr_free(original);
    ehr_free(copy);

    /* The config is what ehrd will load, with absolute paths. */
    struct node_config cfg;
    ehr_diag err;
    if (node_config_load(path_in(f, "node/ehrd.json"), &cfg, &err) != 0)
        fail_msg("the written config does not load: %s", err.msg);
    assert_string_equal(cfg.data_dir, real);
    snprintf(want, sizeof want, "%s/node.key", real);
    assert_string_equal(cfg.key_file, want);
    assert_null(cfg.passphrase_file);
    assert_string_equal(cfg.peer_listen, "0.0.0.0:7000");
    assert_string_equal(cfg.rpc_listen, "127.0.0.1:7001");
    assert_int_equal(cfg.limits.mempool_tx_count, NODE_CONFIG_MEMPOOL_TX_COUNT_DEFAULT);
    node_config_free(&cfg);

    /* The ledger holds this genesis's chain, and the directory is not left locked. */
    uint8_t *genesis;
    size_t len;
    assert_int_equal(ehr_file_read_alloc(path_in(f, "genesis.pb"), 1 << 20, &genesis, &len), 0);
    assert_int_equal(node_datadir_check_genesis(real, genesis, len, &err), 0);
    ehr_free(genesis);
    struct node_datadir_lock lock;
    assert_int_equal(node_datadir_lock(real, &lock, &err), 0);
    node_datadir_unlock(&lock);
}

static void test_init_with_json_and_a_config_path_elsewhere(void **state)
{
    struct fixture *f = *state;
    struct proc_result r = run(f, INIT_ARGS("node"), "--config", "elsewhere.json", "--json");
    if (r.status != 0)
        fail_msg("init failed: %s", r.err);
    json_error_t error;
    json_t *root = json_loads(r.out, 0, &error);
    assert_non_null(root);
    char real[PATH_MAX], want[PATH_MAX + 64];
    assert_non_null(realpath(path_in(f, "elsewhere.json"), real));
    snprintf(want, sizeof want, "ehrd --config %s", real);
    assert_string_equal(json_string_value(json_object_get(root, "start_command")), want);
    assert_string_equal(json_string_value(json_object_get(root, "chain_id")), "test-1");
    json_decref(root);
    proc_result_free(&r);
    assert_int_equal(access(path_in(f, "node/ehrd.json"), F_OK), -1);
    assert_int_equal(file_mode(path_in(f, "elsewhere.json")), 0600);
}

static void test_init_refuses_a_key_that_is_not_a_founding_member(void **state)
{
    struct fixture *f = *state;
    struct proc_result r = run(f, "init", "--genesis", "genesis.pb", "--key", "b.key", "--data",
                               "node", "--peer-listen", "h:1", "--rpc-listen", "h:2");
    cli_assert_failure(&r, 1, "this key is not a founding member of chain \"test-1\"");
    proc_result_free(&r);
    assert_int_equal(access(path_in(f, "node"), F_OK), -1);
}

/* --join: a bad address is a usage error; a node nobody runs is
 * UNAVAILABLE; neither creates anything (a joining node's success is in
 * tests/node/test_membership.c, against running nodes). */
static void test_init_join_refuses_bad_input_and_creates_nothing(void **state)
{
    struct fixture *f = *state;
    struct proc_result r =
        run(f, "init", "--genesis", "genesis.pb", "--key", "b.key", "--data", "node",
            "--peer-listen", "h:1", "--rpc-listen", "h:2", "--join", "no-port");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--join wants the HOST:PORT of a running node's API"));
    proc_result_free(&r);
    r = run(f, "init", "--genesis", "genesis.pb", "--key", "b.key", "--data", "node",
            "--peer-listen", "h:1", "--rpc-listen", "h:2", "--join", "127.0.0.1:1", "--timeout-ms",
            "0");
    assert_int_equal(r.status, 2);
    proc_result_free(&r);
    r = run(f, "init", "--genesis", "genesis.pb", "--key", "b.key", "--data", "node",
            "--peer-listen", "h:1", "--rpc-listen", "h:2", "--join", "127.0.0.1:1", "--timeout-ms",
            "2000");
    assert_int_equal(r.status, 6); /* UNAVAILABLE */
    assert_non_null(strstr(r.err, "cannot connect"));
    proc_result_free(&r);
    assert_int_equal(access(path_in(f, "node"), F_OK), -1);
}

static void test_init_reads_the_passphrase_like_the_other_commands(void **state)
{
    struct fixture *f = *state;
    proc_text_write(path_in(f, "pw"), "correct horse\n");
    proc_text_write(path_in(f, "wrong"), "battery staple\n");
    run_ok(run(f, "keygen", "--out", "c.key", "--passphrase-file", "pw", "--force"));
    const char *members[] = {"c.key"};
    genesis_make(f, "genesis.pb", "test-1", members, 1);

    /* No passphrase source (no terminal, no variable): refused, nothing created. */
    struct proc_result r = run(f, "init", "--genesis", "genesis.pb", "--key", "c.key", "--data",
                               "node", "--peer-listen", "h:1", "--rpc-listen", "h:2");
    cli_assert_failure(&r, 1, "open key file c.key");
    proc_result_free(&r);
    r = run(f, "init", "--genesis", "genesis.pb", "--key", "c.key", "--data", "node",
            "--peer-listen", "h:1", "--rpc-listen", "h:2", "--passphrase-file", "wrong");
    cli_assert_failure(&r, 1, "open key file c.key");
    proc_result_free(&r);
    assert_int_equal(access(path_in(f, "node"), F_OK), -1);

    /* The right one: accepted and recorded in the config for the node. */
    run_ok(run(f, "init", "--genesis", "genesis.pb", "--key", "c.key", "--data", "node",
               "--peer-listen", "h:1", "--rpc-listen", "h:2", "--passphrase-file", "pw"));
    struct node_config cfg;
    ehr_diag err;
    char real[PATH_MAX];
    assert_int_equal(node_config_load(path_in(f, "node/ehrd.json"), &cfg, &err), 0);
    assert_non_null(realpath(path_in(f, "pw"), real));
    assert_string_equal(cfg.passphrase_file, real);
    node_config_free(&cfg);
}

static void test_init_rerun_is_refused_unless_forced_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    run_ok(run(f, INIT_ARGS("node")));
    char *config_before = proc_slurp(path_in(f, "node/ehrd.json"), PROC_TEXT_BYTES_MAX);
    struct stat before, after;
    assert_int_equal(stat(path_in(f, "node/data.mdb"), &before), 0);

    struct proc_result r = run(f, "init", "--genesis", "genesis.pb", "--key", "a.key", "--data",
                               "node", "--peer-listen", "0.0.0.0:7000", "--rpc-listen", "h:9");
    cli_assert_failure(&r, 1, "not empty");
    proc_result_free(&r);
    char *config_after = proc_slurp(path_in(f, "node/ehrd.json"), PROC_TEXT_BYTES_MAX);
    assert_string_equal(config_after, config_before);
    ehr_free(config_after);
    assert_int_equal(stat(path_in(f, "node/data.mdb"), &after), 0);
    assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);

    /* --force with the same genesis: the config is rewritten, the ledger kept. */
    run_ok(run(f, "init", "--genesis", "genesis.pb", "--key", "a.key", "--data", "node",
               "--peer-listen", "0.0.0.0:7000", "--rpc-listen", "h:9", "--force"));
    config_after = proc_slurp(path_in(f, "node/ehrd.json"), PROC_TEXT_BYTES_MAX);
    assert_non_null(strstr(config_after, "\"rpc_listen\": \"h:9\""));
    ehr_free(config_after);

    /* --force never replaces a ledger of another chain. */
    const char *member[] = {"a.key"};
    genesis_make(f, "other.bin", "test-2", member, 1);
    r = run(f, "init", "--genesis", "other.bin", "--key", "a.key", "--data", "node",
            "--peer-listen", "h:1", "--rpc-listen", "h:3", "--force");
    cli_assert_failure(&r, 1, "keep the existing ledger");
    assert_non_null(strstr(r.err, "test-2"));
    proc_result_free(&r);
    ehr_free(config_before);
}

static void test_init_usage_errors_exit_2_and_create_nothing(void **state)
{
    struct fixture *f = *state;
    static const char *const cases[][14] = {
        {"init", NULL},
        {"init", "--key", "a.key", "--data", "node", "--peer-listen", "h:1", "--rpc-listen", "h:2",
         NULL},
        {"init", "--genesis", "genesis.pb", "--data", "node", "--peer-listen", "h:1",
         "--rpc-listen", "h:2", NULL},
        {"init", "--genesis", "genesis.pb", "--key", "a.key", "--peer-listen", "h:1",
         "--rpc-listen", "h:2", NULL},
        {"init", "--genesis", "genesis.pb", "--key", "a.key", "--data", "node", "--rpc-listen",
         "h:2", NULL},
        {"init", "--genesis", "genesis.pb", "--key", "a.key", "--data", "node", "--peer-listen",
         "h:1", NULL},
        {"init", "--genesis", "genesis.pb", "--key", "a.key", "--data", "node", "--peer-listen",
         "h", "--rpc-listen", "h:2", NULL},
        {"init", "--genesis", "genesis.pb", "--key", "a.key", "--data", "node", "--peer-listen",
         "h:1", "--rpc-listen", "h:70000", NULL},
        {"init", "--genesis", "genesis.pb", "--key", "a.key", "--data", "node", "--peer-listen",
         "h:1", "--rpc-listen", "h:2", "extra", NULL},
        {"init", "--genesis", "genesis.pb", "--key", "a.key", "--data", "node", "--peer-listen",
         "h:1", "--rpc-listen", "h:2", "--bogus", NULL},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        const char *const *c = cases[i];
        struct proc_result r =
            run(f, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12]);
        if (r.status != 2)
            fail_msg("case %zu: exit %d, stderr %s", i, r.status, r.err);
        assert_int_equal(strncmp(r.err, "ehrctl", 6), 0);
        assert_string_equal(r.out, "");
        proc_result_free(&r);
        assert_int_equal(access(path_in(f, "node"), F_OK), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_init_creates_the_directory_key_and_config_with_private_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_with_json_and_a_config_path_elsewhere, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_init_refuses_a_key_that_is_not_a_founding_member,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_reads_the_passphrase_like_the_other_commands,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_init_rerun_is_refused_unless_forced_and_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_join_refuses_bad_input_and_creates_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_init_usage_errors_exit_2_and_create_nothing, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
