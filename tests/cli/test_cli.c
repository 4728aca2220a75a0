/*
 * Tests for ehrctl: each runs the built binary as a subprocess in a fresh
 * temporary directory, with an empty environment and stdin from /dev/null
 * (so no test can hang on a passphrase prompt), and checks exit status,
 * stdout (parsed with jansson for --json) and stderr, and the files left
 * behind. The ledger commands run on ledgers that the tests extend in
 * process with the ledger's test builders (signed blocks of transactions,
 * applied through the consent contract's rules as a node applies them, so
 * that verify's replay agrees) and damage through LMDB directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli_check.h"
#include "contracts.h"
#include "ehr_crypto.h"
#include "ledger.h"
#include "ledger_internal.h"
#include "ledger_testutil.h"
#include "proc.h"

#define EHRCTL EHR_BINARY_DIR "/cli/ehrctl"

enum { ARGS_MAX = 32 };

struct fixture {
    char *dir;
    pid_t tty_leader; /* a terminal test's session leader still running, or 0 */
    int tty_master;   /* its terminal, or -1 */
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || ehr_crypto_init() != 0)
        return -1;
    f->tty_master = -1;
    f->dir = proc_dir_make("test-cli");
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    if (f->tty_leader > 0) { /* a terminal test failed midway: end its processes */
        kill(f->tty_leader, SIGKILL);
        /* The job dies with its leader (PR_SET_PDEATHSIG) and, as we are a
         * subreaper, comes back to us: reap both. */
        while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
            ;
    }
    if (f->tty_master >= 0)
        close(f->tty_master);
    proc_dir_remove(f->dir);
    free(f);
    return 0;
}

static const char *path_in(const struct fixture *f, const char *name)
{
    return proc_path(f->dir, name);
}

/*
 * Run ehrctl in F's directory with ENV (NULL-terminated "K=V" list, may be
 * NULL) and ARGS (NULL-terminated, without the program name).
 */
static struct proc_result run_args(const struct fixture *f, const char *const *env,
                                   const char *const *args)
{
    return proc_run(&(struct proc_spec){
        .path = EHRCTL, .argv0 = "ehrctl", .args = args, .env = env, .cwd = f->dir});
}

/* As run_args with the arguments listed after ENV, ending with NULL. */
#define run_env(f, env, ...) run_args(f, env, PROC_ARGS(__VA_ARGS__))
#define run(f, ...) run_env(f, NULL, __VA_ARGS__, (const char *)NULL)

static void assert_usage_error(const struct proc_result *r)
{
    assert_int_equal(r->status, 2);
    assert_int_equal(strncmp(r->err, "ehrctl", 6), 0);
    assert_string_equal(r->out, "");
}

static bool file_exists(const struct fixture *f, const char *name)
{
    return access(path_in(f, name), F_OK) == 0;
}

static int dir_entry_count(const struct fixture *f)
{
    DIR *d = opendir(f->dir);
    int count = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        count += e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    return count;
}

/* keygen with the passphrase in file "pw"; returns the parsed --json output. */
static json_t *keygen(const struct fixture *f, const char *out, const char *label)
{
    if (!file_exists(f, "pw"))
        proc_text_write(path_in(f, "pw"), "correct horse\n");
    struct proc_result r =
        run(f, "keygen", "--out", out, "--label", label, "--passphrase-file", "pw", "--json");
    if (r.status != 0)
        fail_msg("keygen failed: %s", r.err);
    json_t *root = cli_parse_json(r.out);
    proc_result_free(&r);
    return root;
}

static void test_keygen_and_key_show_agree(void **state)
{
    struct fixture *f = *state;
    json_t *made = keygen(f, "node.key", "st-mary-1");
    struct stat st;
    assert_int_equal(stat(path_in(f, "node.key"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, EHR_KEYFILE_BYTES);

    struct proc_result r = run(f, "key", "show", "node.key", "--json");
    assert_int_equal(r.status, 0);
    json_t *shown = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(shown, "signing_key"), cli_json_str(made, "signing_key"));
    assert_string_equal(cli_json_str(shown, "kx_key"), cli_json_str(made, "kx_key"));
    assert_string_equal(cli_json_str(shown, "label"), "st-mary-1");
    assert_true(json_is_true(json_object_get(shown, "passphrase")));
    uint8_t key[32];
    assert_int_equal(ehr_hex_decode(key, 32, cli_json_str(shown, "signing_key")), 0);
    assert_int_equal(ehr_hex_decode(key, 32, cli_json_str(shown, "kx_key")), 0);
    proc_result_free(&r);

    r = run(f, "key", "show", "node.key"); /* human output names the same key */
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, cli_json_str(made, "signing_key")));
    assert_non_null(strstr(r.out, "st-mary-1"));
    assert_null(strchr(r.out, '{'));
    proc_result_free(&r);
    json_decref(shown);
    json_decref(made);
}

static void test_wrong_passphrase_fails_and_changes_nothing(void **state)
{
    struct fixture *f = *state;
    json_decref(keygen(f, "node.key", "n"));
    char *before = proc_slurp(path_in(f, "node.key"), PROC_TEXT_BYTES_MAX);
    proc_text_write(path_in(f, "wrong"), "correct horse.\n");
    proc_text_write(path_in(f, "new"), "new passphrase\n");
    int entries = dir_entry_count(f);
    struct proc_result r = run(f, "key", "passwd", "node.key", "--passphrase-file", "wrong",
                               "--new-passphrase-file", "new");
    cli_assert_failure(&r, 1, "wrong passphrase");
    assert_non_null(strstr(r.err, "node.key"));
    proc_result_free(&r);
    char *after = proc_slurp(path_in(f, "node.key"), PROC_TEXT_BYTES_MAX);
    assert_memory_equal(before, after, EHR_KEYFILE_BYTES);
    assert_int_equal(dir_entry_count(f), entries); /* nothing written beside it */
    ehr_free(before);
    ehr_free(after);
}

static void test_passwd_changes_the_passphrase_and_keeps_the_keys(void **state)
{
    struct fixture *f = *state;
    json_t *made = keygen(f, "node.key", "n");
    const char *env[] = {"EHR_PASSPHRASE=correct horse", "EHR_NEW_PASSPHRASE=second", NULL};
    struct proc_result r = run_env(f, env, "key", "passwd", "node.key", "--json", NULL);
    if (r.status != 0)
        fail_msg("passwd failed: %s", r.err);
    json_t *shown = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(shown, "signing_key"), cli_json_str(made, "signing_key"));
    proc_result_free(&r);
    /* the old passphrase no longer opens it; the new one does */
    r = run_env(f, env, "key", "passwd", "node.key", NULL);
    cli_assert_failure(&r, 1, "wrong passphrase");
    proc_result_free(&r);
    const char *env2[] = {"EHR_PASSPHRASE=second", "EHR_NEW_PASSPHRASE=third", NULL};
    r = run_env(f, env2, "key", "passwd", "node.key", NULL);
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    json_decref(shown);
    json_decref(made);
}

static void test_keygen_refuses_to_overwrite_without_force(void **state)
{
    struct fixture *f = *state;
    json_t *first = keygen(f, "node.key", "one");
    struct proc_result r =
        run(f, "keygen", "--out", "node.key", "--passphrase-file", "pw", "--label", "two");
    cli_assert_failure(&r, 1, "already exists");
    proc_result_free(&r);
    r = run(f, "key", "show", "node.key", "--json");
    json_t *shown = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(shown, "signing_key"), cli_json_str(first, "signing_key"));
    proc_result_free(&r);
    json_decref(shown);

    r = run(f, "keygen", "--out", "node.key", "--passphrase-file", "pw", "--force", "--json");
    assert_int_equal(r.status, 0);
    shown = cli_parse_json(r.out);
    assert_string_not_equal(cli_json_str(shown, "signing_key"), cli_json_str(first, "signing_key"));
    proc_result_free(&r);
    json_decref(shown);
    json_decref(first);
}

static void test_keygen_passphrase_sources_and_empty_passphrase(void **state)
{
    struct fixture *f = *state;
    /* no file, no variable, no terminal: a clear failure, no file */
    struct proc_result r = run(f, "keygen", "--out", "a.key");
    cli_assert_failure(&r, 1, "no passphrase");
    assert_false(file_exists(f, "a.key"));
    proc_result_free(&r);
    /* an empty passphrase is refused unless asked for */
    proc_text_write(path_in(f, "empty"), "\n");
    r = run(f, "keygen", "--out", "a.key", "--passphrase-file", "empty");
    cli_assert_failure(&r, 1, "empty passphrase");
    assert_false(file_exists(f, "a.key"));
    proc_result_free(&r);
    const char *env_empty[] = {"EHR_PASSPHRASE=", NULL};
    r = run_env(f, env_empty, "keygen", "--out", "a.key", NULL);
    cli_assert_failure(&r, 1, "empty passphrase");
    proc_result_free(&r);
    /* a passphrase file of two lines is refused rather than guessed at */
    proc_text_write(path_in(f, "two"), "first\nsecond\n");
    r = run(f, "keygen", "--out", "a.key", "--passphrase-file", "two");
    cli_assert_failure(&r, 1, "more than one line");
    proc_result_free(&r);
    r = run(f, "keygen", "--out", "a.key", "--no-passphrase", "--json");
    assert_int_equal(r.status, 0);
    json_t *shown = cli_parse_json(r.out);
    assert_true(json_is_false(json_object_get(shown, "passphrase")));
    json_decref(shown);
    proc_result_free(&r);
    /* from the environment */
    const char *env[] = {"EHR_PASSPHRASE=from env", NULL};
    r = run_env(f, env, "keygen", "--out", "b.key", NULL);
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    const char *env_new[] = {"EHR_PASSPHRASE=from env", "EHR_NEW_PASSPHRASE=x", NULL};
    r = run_env(f, env_new, "key", "passwd", "b.key", NULL);
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
}

static void test_corrupt_key_files_are_named_clearly(void **state)
{
    struct fixture *f = *state;
    json_decref(keygen(f, "node.key", "n"));
    char *good = proc_slurp(path_in(f, "node.key"), PROC_TEXT_BYTES_MAX);
    assert_int_equal(ehr_file_write_atomic(path_in(f, "short.key"), good, 100, 0600, false), 0);
    struct proc_result r = run(f, "key", "show", "short.key");
    cli_assert_failure(&r, 1, "truncated");
    proc_result_free(&r);
    proc_text_write(path_in(f, "text.key"), "hello, this is not a key file\n");
    r = run(f, "key", "show", "text.key");
    cli_assert_failure(&r, 1, "not an ehrchain key file");
    proc_result_free(&r);
    good[6] = 9; /* version */
    assert_int_equal(
        ehr_file_write_atomic(path_in(f, "v9.key"), good, EHR_KEYFILE_BYTES, 0600, false), 0);
    r = run(f, "key", "show", "v9.key");
    cli_assert_failure(&r, 1, "version 9");
    proc_result_free(&r);
    r = run(f, "key", "show", "missing.key");
    cli_assert_failure(&r, 1, "No such file");
    proc_result_free(&r);
    ehr_free(good);
}

static void test_usage_errors_exit_2(void **state)
{
    struct fixture *f = *state;
    proc_text_write(path_in(f, "m.json"), "{\"members\": []}");
    const char *const cases[][12] = {
        {NULL},
        {"frobnicate", NULL},
        {"--json", NULL},
        {"key", NULL},
        {"keygen", NULL},
        {"keygen", "--out", NULL},
        {"keygen", "--out", "a.key", "--bogus", NULL},
        {"keygen", "--out", "a.key", "extra", NULL},
        {"keygen", "--out", "a.key", "--kdf", "fast", NULL},
        {"keygen", "--out", "a.key", "--kdf", "min", NULL},
        {"keygen", "--out", "a.key", "--label", "tab\there", NULL},
        {"keygen", "--out", "a.key", "--no-passphrase", "--passphrase-file", "pw", NULL},
        {"key", "show", NULL},
        {"key", "show", "a", "b", NULL},
        {"key", "passwd", NULL},
        {"genesis", "--members", "m.json", "--out", "g.pb", NULL},
        {"genesis", "--members", "m.json", "--chain-id", "c", "--out", "g.pb", "--time-ms", "-5",
         NULL},
        {"genesis", "--members", "m.json", "--chain-id", "has space", "--out", "g.pb", NULL},
        {"genesis", "--members", "m.json", "--chain-id", "c", "--out", "g.pb", "stray", NULL},
        {"genesis", "show", NULL},
        {"genesis", "member", "--key", "k", NULL},
        {"genesis", "member", "--key", "k", "--name", "n", "--role", "dentist", "--address", "a:1",
         NULL},
        {"genesis", "--members", "m.json", "--chain-id", "c", "--out", "g.pb", "--time-ms", "0",
         NULL},
        {"ledger", NULL},
        {"ledger", "init", NULL},
        {"ledger", "init", "--genesis", "g.pb", NULL}, /* no --data, no $EHR_DATA */
        {"ledger", "init", "--data", "d", NULL},
        {"ledger", "init", "--genesis", "g.pb", "--data", "d", "stray", NULL},
        {"ledger", "verify", NULL},
        {"ledger", "verify", "--data", "d", "--threads", "17", NULL},
        {"ledger", "verify", "--data", "d", "--threads", "-1", NULL},
        {"ledger", "verify", "--data", "d", "extra", NULL},
        {"ledger", "status", "--data", "d", "extra", NULL},
        {"backup", "--data", "d", NULL}, /* no --out */
        {"backup", "--out", "b", NULL},  /* no --data, no $EHR_DATA */
        {"backup", "--data", "d", "--out", "b", "stray", NULL},
        {"backup", "inspect", NULL},
        {"backup", "inspect", "a", "b", NULL},
        {"restore", "--data", "d", NULL}, /* no --from */
        {"restore", "--from", "b", NULL}, /* no --data, no $EHR_DATA */
        {"restore", "--from", "b", "--data", "d", "stray", NULL},
        {"restore", "--from", "b", "--data", "d", "--genesis", "g", NULL}, /* no such option */
        {"block", "show", "--data", "d", NULL},
        {"block", "show", "1", "2", "--data", "d", NULL},
        {"block", "show", "x", "--data", "d", NULL},
        {"block", "show", "-1", "--data", "d", NULL},
        {"block", "show", "1", NULL},
        {"tx", "show", "--data", "d", NULL},
        {"tx", "show", "zz", "--data", "d", NULL},
        {"help", "nothing", NULL},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        struct proc_result r = run_args(f, NULL, cases[i]);
        if (r.status != 2)
            fail_msg("case %zu (%s %s): exit %d, stderr: %s", i, cases[i][0] ? cases[i][0] : "",
                     cases[i][0] && cases[i][1] ? cases[i][1] : "", r.status, r.err);
        assert_usage_error(&r);
        proc_result_free(&r);
    }
    assert_false(file_exists(f, "a.key"));
    assert_false(file_exists(f, "g.pb"));
    assert_false(file_exists(f, "d"));
}

static void test_label_limit_edge(void **state)
{
    struct fixture *f = *state;
    char label[EHR_KEYFILE_LABEL_BYTES_MAX + 2];
    memset(label, 'x', EHR_KEYFILE_LABEL_BYTES_MAX + 1);
    label[EHR_KEYFILE_LABEL_BYTES_MAX + 1] = '\0';
    struct proc_result r = run(f, "keygen", "--out", "a.key", "--no-passphrase", "--label", label);
    assert_usage_error(&r);
    proc_result_free(&r);
    label[EHR_KEYFILE_LABEL_BYTES_MAX] = '\0';
    r = run(f, "keygen", "--out", "a.key", "--no-passphrase", "--label", label, "--json");
    assert_int_equal(r.status, 0);
    json_t *shown = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(shown, "label"), label);
    json_decref(shown);
    proc_result_free(&r);
}

static void test_help_lists_every_command(void **state)
{
    struct fixture *f = *state;
    struct proc_result r = run(f, "help");
    assert_int_equal(r.status, 0);
    const char *names[] = {
        "keygen",        "key show",       "key passwd",       "genesis",
        "genesis show",  "genesis member", "ledger init",      "ledger verify",
        "ledger status", "backup",         "backup inspect",   "restore",
        "block show",    "tx show",        "practitioner add", "practitioner remove",
        "record anchor", "record list",    "consent grant",    "consent revoke",
        "consent list",  "access request", "access emergency", "record show",
        "member list",   "member propose", "member approve"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(names); i++)
        assert_non_null(strstr(r.out, names[i]));
    proc_result_free(&r);
    r = run(f, "keygen", "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: ehrctl keygen --out FILE"));
    assert_string_equal(r.err, "");
    proc_result_free(&r);
    /* --version: the release and the commit, exit 0, nothing else. */
    r = run(f, "--version");
    assert_int_equal(r.status, 0);
    assert_int_equal(strncmp(r.out, "ehrctl 0.", 9), 0);
    assert_non_null(strstr(r.out, " (commit "));
    assert_string_equal(r.err, "");
    proc_result_free(&r);
    r = run(f, "help", "key", "show");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: ehrctl key show FILE"));
    proc_result_free(&r);
}

/*
 * Every command the overview lists answers --help and -h with its usage on
 * stdout, nothing on stderr, exit 0, and does nothing else (no file made, no
 * node contacted, no prompt). The list is read from the overview itself, so a
 * command added later is covered without touching this test.
 */
static void test_every_listed_command_answers_help(void **state)
{
    struct fixture *f = *state;
    struct proc_result overview = run(f, "--help");
    assert_int_equal(overview.status, 0);
    const char *p = strstr(overview.out, "\ncommands:\n");
    assert_non_null(p);
    p += strlen("\ncommands:\n");
    size_t checked = 0;
    while (p[0] == ' ' && p[1] == ' ') {
        /* "  NAME<padding> summary": NAME is one or more words. */
        const char *name = p + 2;
        const char *end = strstr(name, "  ");
        assert_non_null(end);
        char command[64];
        assert_true((size_t)(end - name) < sizeof command);
        memcpy(command, name, (size_t)(end - name));
        command[end - name] = '\0';
        const char *flags[] = {"--help", "-h"};
        for (size_t i = 0; i < EHR_ARRAY_COUNT(flags); i++) {
            char *copy = strdup(command);
            const char *argv[8];
            size_t n = 0;
            char *save = NULL;
            for (char *w = strtok_r(copy, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save))
                argv[n++] = w;
            argv[n++] = flags[i];
            argv[n] = NULL;
            struct proc_result r = run_args(f, NULL, argv);
            char usage[96];
            snprintf(usage, sizeof usage, "usage: ehrctl %s ", command);
            if (r.status != 0 || strncmp(r.out, usage, strlen(usage)) != 0 || r.err[0] != '\0')
                fail_msg("ehrctl %s %s: exit %d, stdout \"%.80s\", stderr \"%.200s\"", command,
                         flags[i], r.status, r.out, r.err);
            proc_result_free(&r);
            free(copy);
        }
        checked++;
        p = strchr(p, '\n');
        assert_non_null(p);
        p++;
    }
    assert_true(checked >= 17); /* the overview was read, not an empty list */
    assert_int_equal(dir_entry_count(f), 0);
    proc_result_free(&overview);
}

/* A member entry as `ehrctl genesis member` prints it, for a fresh identity. */
static json_t *member_json(const char *name, const char *role, const char *address)
{
    ehr_identity id;
    assert_int_equal(ehr_identity_generate(&id, ""), 0);
    char node[65], kx[65];
    ehr_hex_encode(node, id.signing.public_key, 32);
    ehr_hex_encode(kx, id.kx.public_key, 32);
    ehr_identity_wipe(&id);
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name, "role", role, "node_key", node,
                     "kx_key", kx, "address", address);
}

static void write_members(const struct fixture *f, const char *file, json_t *list)
{
    json_t *root = json_pack("{s:O}", "members", list);
    assert_int_equal(json_dump_file(root, path_in(f, file), 0), 0);
    json_decref(root);
}

static void test_genesis_from_key_files_is_deterministic(void **state)
{
    struct fixture *f = *state;
    const char *roles[] = {"hospital", "lab", "insurer"};
    json_t *list = json_array();
    for (int i = 0; i < 3; i++) {
        char key[16], name[32], address[32];
        snprintf(key, sizeof key, "m%d.key", i);
        snprintf(name, sizeof name, "H\xc3\xb4pital %d", i); /* UTF-8 names are fine */
        snprintf(address, sizeof address, "10.0.0.%d:7000", i + 1);
        struct proc_result r = run(f, "keygen", "--out", key, "--no-passphrase");
        assert_int_equal(r.status, 0);
        proc_result_free(&r);
        r = run(f, "genesis", "member", "--key", key, "--name", name, "--role", roles[i],
                "--address", address);
        if (r.status != 0)
            fail_msg("genesis member: %s", r.err);
        json_array_append_new(list, cli_parse_json(r.out));
        proc_result_free(&r);
    }
    write_members(f, "members.json", list);
    struct proc_result r =
        run(f, "genesis", "--members", "members.json", "--chain-id", "ehr-test-1", "--out", "g1.pb",
            "--time-ms", "1700000000000", "--json");
    if (r.status != 0)
        fail_msg("genesis: %s", r.err);
    json_t *made = cli_parse_json(r.out);
    proc_result_free(&r);
    /* the printed hash is SHA-256 of the file's bytes */
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(ehr_file_read_alloc(path_in(f, "g1.pb"), 1 << 20, &bytes, &len), 0);
    uint8_t hash[32];
    char hash_hex[65];
    ehr_sha256(hash, bytes, len);
    ehr_hex_encode(hash_hex, hash, 32);
    assert_string_equal(cli_json_str(made, "genesis_hash"), hash_hex);

    /* the same input gives the same bytes */
    r = run(f, "genesis", "--members", "members.json", "--chain-id", "ehr-test-1", "--out", "g2.pb",
            "--time-ms", "1700000000000");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    uint8_t *again = NULL;
    size_t again_len = 0;
    assert_int_equal(ehr_file_read_alloc(path_in(f, "g2.pb"), 1 << 20, &again, &again_len), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, bytes, len);

    /* the entries as `genesis member` printed them, one --member FILE each, in
     * the same order, give the same bytes */
    for (size_t i = 0; i < json_array_size(list); i++) {
        char name[32];
        snprintf(name, sizeof name, "m%zu.json", i);
        assert_int_equal(json_dump_file(json_array_get(list, i), path_in(f, name), 0), 0);
    }
    r = run(f, "genesis", "--member", "m0.json", "--member", "m1.json", "--member", "m2.json",
            "--chain-id", "ehr-test-1", "--out", "g3.pb", "--time-ms", "1700000000000");
    if (r.status != 0)
        fail_msg("genesis --member: %s", r.err);
    proc_result_free(&r);
    uint8_t *third = NULL;
    size_t third_len = 0;
    assert_int_equal(ehr_file_read_alloc(path_in(f, "g3.pb"), 1 << 20, &third, &third_len), 0);
    assert_int_equal(third_len, len);
    assert_memory_equal(third, bytes, len);
    ehr_free(third);
    /* a list is not one entry; --members and --member do not mix */
    r = run(f, "genesis", "--member", "members.json", "--chain-id", "c", "--out", "g4.pb");
    cli_assert_failure(&r, 1, "expected one member entry");
    proc_result_free(&r);
    r = run(f, "genesis", "--members", "members.json", "--member", "m0.json", "--chain-id", "c",
            "--out", "g4.pb");
    assert_usage_error(&r);
    proc_result_free(&r);
    assert_false(file_exists(f, "g4.pb"));

    /* show gives back the members, in order, and the same hash */
    r = run(f, "genesis", "show", "g1.pb", "--json");
    assert_int_equal(r.status, 0);
    json_t *shown = cli_parse_json(r.out);
    assert_true(json_equal(json_object_get(shown, "members"), list));
    assert_string_equal(cli_json_str(shown, "chain_id"), "ehr-test-1");
    assert_int_equal(json_integer_value(json_object_get(shown, "time_ms")), 1700000000000LL);
    assert_string_equal(cli_json_str(shown, "genesis_hash"), hash_hex);
    proc_result_free(&r);
    /* refuses to overwrite */
    r = run(f, "genesis", "--members", "members.json", "--chain-id", "other", "--out", "g1.pb");
    cli_assert_failure(&r, 1, "already exists");
    proc_result_free(&r);

    json_decref(shown);
    json_decref(made);
    json_decref(list);
    ehr_free(bytes);
    ehr_free(again);
}

/*
 * --emergency-roles writes Genesis.emergency, which genesis show prints (and
 * --json lists); without it the genesis has none (nobody may use emergency
 * access). A role that is not clinical, one named twice, or a name that is
 * no role is a usage error (exit 2) that says why, with the ledger's own
 * message for the first two, and nothing is written.
 */
static json_t *two_members(void);

static void test_genesis_emergency_roles(void **state)
{
    struct fixture *f = *state;
    json_t *list = two_members();
    write_members(f, "members.json", list);
    json_decref(list);
    struct proc_result r = run(f, "genesis", "--members", "members.json", "--chain-id", "e-1",
                               "--out", "g.pb", "--emergency-roles", "hospital,pharmacy");
    if (r.status != 0)
        fail_msg("genesis: %s", r.err);
    proc_result_free(&r);
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(ehr_file_read_alloc(path_in(f, "g.pb"), 1 << 20, &bytes, &len), 0);
    Ehr__V1__Genesis *g = ehr__v1__genesis__unpack(NULL, len, bytes);
    assert_non_null(g);
    assert_non_null(g->emergency);
    assert_int_equal(g->emergency->n_roles, 2);
    assert_int_equal(g->emergency->roles[0], EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL);
    assert_int_equal(g->emergency->roles[1], EHR__V1__MEMBER_ROLE__MEMBER_ROLE_PHARMACY);
    ehr__v1__genesis__free_unpacked(g, NULL);
    ehr_free(bytes);
    r = run(f, "genesis", "show", "g.pb");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "emergency       hospital, pharmacy\n"));
    proc_result_free(&r);
    r = run(f, "genesis", "show", "g.pb", "--json");
    assert_int_equal(r.status, 0);
    json_t *shown = cli_parse_json(r.out);
    json_t *roles = json_object_get(shown, "emergency_roles");
    assert_int_equal(json_array_size(roles), 2);
    assert_string_equal(json_string_value(json_array_get(roles, 0)), "hospital");
    assert_string_equal(json_string_value(json_array_get(roles, 1)), "pharmacy");
    json_decref(shown);
    proc_result_free(&r);

    /* none given, or "none": no policy in the file, and show says nobody may */
    const char *none[] = {NULL, "none"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(none); i++) {
        const char *args[] = {"genesis",
                              "--members",
                              "members.json",
                              "--chain-id",
                              "e-1",
                              "--out",
                              "n.pb",
                              "--force",
                              "--time-ms",
                              "1700000000000",
                              none[i] ? "--emergency-roles" : NULL,
                              none[i],
                              NULL};
        r = run_args(f, NULL, args);
        assert_int_equal(r.status, 0);
        proc_result_free(&r);
        assert_int_equal(ehr_file_read_alloc(path_in(f, "n.pb"), 1 << 20, &bytes, &len), 0);
        g = ehr__v1__genesis__unpack(NULL, len, bytes);
        assert_non_null(g);
        assert_null(g->emergency);
        ehr__v1__genesis__free_unpacked(g, NULL);
        ehr_free(bytes);
        r = run(f, "genesis", "show", "n.pb");
        assert_non_null(strstr(r.out, "emergency       none"));
        proc_result_free(&r);
    }

    struct {
        const char *roles;
        const char *fragment;
    } bad[] = {
        {"hospital,insurer", "emergency.roles[1]: role 4 is not a clinical role (hospital, lab, "
                             "pharmacy): only those may use emergency access"},
        {"regulator", "emergency.roles[0]: role 5 is not a clinical role"},
        {"lab,lab", "emergency.roles[1]: role 2 named twice"},
        {"dentist", "\"dentist\" is not a role"},
        {"hospital,", "\"\" is not a role"},
        {"", "\"\" is not a role"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad); i++) {
        r = run(f, "genesis", "--members", "members.json", "--chain-id", "e-1", "--out", "x.pb",
                "--emergency-roles", bad[i].roles);
        assert_usage_error(&r);
        if (strstr(r.err, bad[i].fragment) == NULL || strstr(r.err, "--emergency-roles") == NULL)
            fail_msg("--emergency-roles %s: stderr: %s", bad[i].roles, r.err);
        proc_result_free(&r);
        assert_false(file_exists(f, "x.pb"));
    }
}

/*
 * ehrctl init with the key's passphrase from $EHR_PASSPHRASE (or a prompt)
 * writes a config with no passphrase source: it warns, saying where ehrd will
 * look. With --passphrase-file it records the file and says nothing. A
 * passphrase file that is missing is named as such, not as the key file.
 */
static void test_init_warns_when_the_config_has_no_passphrase_source(void **state)
{
    struct fixture *f = *state;
    proc_text_write(path_in(f, "pw"), "correct horse\n");
    struct proc_result r = run(f, "keygen", "--out", "n.key", "--passphrase-file", "pw");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    r = run(f, "genesis", "member", "--key", "n.key", "--name", "Node", "--role", "hospital",
            "--address", "node.example:7000");
    assert_int_equal(r.status, 0);
    proc_text_write(path_in(f, "member.json"), r.out);
    proc_result_free(&r);
    r = run(f, "genesis", "--member", "member.json", "--chain-id", "warn-1", "--out", "g.pb");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    static const char *const env[] = {"EHR_PASSPHRASE=correct horse", NULL};
    r = run_env(f, env, "init", "--genesis", "g.pb", "--key", "n.key", "--data", "a",
                "--peer-listen", "127.0.0.1:7000", "--rpc-listen", "127.0.0.1:7001", NULL);
    if (r.status != 0)
        fail_msg("init: %s", r.err);
    if (strstr(r.err, "warning:") == NULL || strstr(r.err, "no passphrase file") == NULL ||
        strstr(r.err, "EHR_PASSPHRASE") == NULL)
        fail_msg("no warning about the passphrase source: %s", r.err);
    proc_result_free(&r);
    r = run(f, "init", "--genesis", "g.pb", "--key", "n.key", "--data", "b", "--peer-listen",
            "127.0.0.1:7000", "--rpc-listen", "127.0.0.1:7001", "--passphrase-file", "pw");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    proc_result_free(&r);
    r = run(f, "init", "--genesis", "g.pb", "--key", "n.key", "--data", "c", "--peer-listen",
            "127.0.0.1:7000", "--rpc-listen", "127.0.0.1:7001", "--passphrase-file", "nope");
    cli_assert_failure(&r, 1, "cannot read the passphrase file nope");
    proc_result_free(&r);
}

/* Run genesis on LIST and expect failure naming FRAGMENT, with no file written. */
static void expect_genesis_rejects(const struct fixture *f, json_t *list, const char *fragment)
{
    write_members(f, "bad.json", list);
    struct proc_result r =
        run(f, "genesis", "--members", "bad.json", "--chain-id", "c", "--out", "g.pb");
    cli_assert_failure(&r, 1, fragment);
    proc_result_free(&r);
    assert_false(file_exists(f, "g.pb"));
    json_decref(list);
}

static json_t *two_members(void)
{
    json_t *list = json_array();
    json_array_append_new(list, member_json("A", "hospital", "a.example:7000"));
    json_array_append_new(list, member_json("B", "pharmacy", "b.example:7000"));
    return list;
}

/*
 * File names are bytes, not always UTF-8, and JSON strings must be UTF-8:
 * --json output still comes out (the bytes that are not UTF-8 shown as '?'),
 * and the command still succeeds.
 */
static void test_json_output_survives_file_names_that_are_not_utf8(void **state)
{
    struct fixture *f = *state;
    const char *key = "n\xff\xfe.key", *genesis = "g\xc3(.pb";
    struct proc_result r = run(f, "keygen", "--out", key, "--no-passphrase", "--json");
    if (r.status != 0)
        fail_msg("keygen: %s", r.err);
    json_t *made = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(made, "file"), "n??.key");
    json_decref(made);
    proc_result_free(&r);
    r = run(f, "key", "show", key, "--json");
    assert_int_equal(r.status, 0);
    json_t *shown = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(shown, "file"), "n??.key");
    json_decref(shown);
    proc_result_free(&r);

    json_t *list = two_members();
    write_members(f, "members.json", list);
    json_decref(list);
    r = run(f, "genesis", "--members", "members.json", "--chain-id", "c", "--out", genesis,
            "--json");
    if (r.status != 0)
        fail_msg("genesis: %s", r.err);
    json_t *g = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(g, "file"), "g?(.pb");
    json_decref(g);
    proc_result_free(&r);
    r = run(f, "genesis", "show", genesis, "--json");
    assert_int_equal(r.status, 0);
    g = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(g, "file"), "g?(.pb");
    json_decref(g);
    proc_result_free(&r);
}

static void test_genesis_rejects_bad_members_naming_member_and_field(void **state)
{
    struct fixture *f = *state;
    json_t *l;

    l = two_members();
    json_object_set_new(json_array_get(l, 1), "node_key", json_string("abcd"));
    expect_genesis_rejects(f, l, "member 2 (\"B\"): node_key: not 64 hex digits");

    l = two_members();
    json_object_set_new(
        json_array_get(l, 0), "kx_key",
        json_string("zz00000000000000000000000000000000000000000000000000000000000000"));
    expect_genesis_rejects(f, l, "member 1 (\"A\"): kx_key: not 64 hex digits");

    l = two_members();
    json_object_set_new(json_array_get(l, 1), "role", json_string("dentist"));
    expect_genesis_rejects(f, l, "member 2 (\"B\"): role");

    l = two_members();
    json_object_set(json_array_get(l, 1), "node_key",
                    json_object_get(json_array_get(l, 0), "node_key"));
    expect_genesis_rejects(f, l, "member 2 (\"B\"): node_key: same as member 1");

    l = two_members();
    json_object_set(json_array_get(l, 1), "kx_key",
                    json_object_get(json_array_get(l, 0), "kx_key"));
    expect_genesis_rejects(f, l, "kx_key: same as member 1");

    l = two_members();
    json_object_set_new(json_array_get(l, 1), "name", json_string("A"));
    expect_genesis_rejects(f, l, "name: same as member 1");

    l = two_members();
    json_object_set_new(json_array_get(l, 1), "address", json_string("a.example:7000"));
    expect_genesis_rejects(f, l, "address: same as member 1");

    l = two_members();
    json_object_del(json_array_get(l, 0), "address");
    expect_genesis_rejects(f, l, "member 1 (\"A\"): missing field \"address\"");

    l = two_members();
    json_object_set_new(json_array_get(l, 0), "adress", json_string("x:1"));
    expect_genesis_rejects(f, l, "unknown field \"adress\"");

    l = two_members();
    json_object_set_new(json_array_get(l, 0), "address", json_string("no-port"));
    expect_genesis_rejects(f, l, "member 1 (\"A\"): address");

    l = two_members();
    json_object_set_new(json_array_get(l, 0), "name", json_integer(7));
    expect_genesis_rejects(f, l, "member 1: \"name\" must be a string");

    l = two_members(); /* a valid-looking key that is not on the curve */
    json_object_set_new(
        json_array_get(l, 0), "node_key",
        json_string("eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34"));
    expect_genesis_rejects(f, l, "node_key: not a valid BIP-340");

    l = two_members(); /* a low-order X25519 point */
    json_object_set_new(
        json_array_get(l, 0), "kx_key",
        json_string("0100000000000000000000000000000000000000000000000000000000000000"));
    expect_genesis_rejects(f, l, "kx_key: not a valid X25519");

    l = two_members(); /* names are printed: no control characters */
    json_object_set_new(json_array_get(l, 1), "name", json_string("B\x1b[2J"));
    expect_genesis_rejects(f, l, "member 2");

    l = two_members();
    json_object_set_new(json_array_get(l, 1), "name", json_string(""));
    expect_genesis_rejects(f, l, "name: must be 1 to 128 bytes");

    expect_genesis_rejects(f, json_array(), "no members");

    proc_text_write(path_in(f, "bad.json"), "{\"members\": [ {\"name\": } ]}");
    struct proc_result r =
        run(f, "genesis", "--members", "bad.json", "--chain-id", "c", "--out", "g.pb");
    cli_assert_failure(&r, 1, "line 1");
    proc_result_free(&r);
}

static void test_genesis_member_count_limit_edge(void **state)
{
    struct fixture *f = *state;
    json_t *list = json_array();
    for (int i = 0; i < EHR_GENESIS_MEMBERS_MAX; i++) {
        char name[16], address[32];
        snprintf(name, sizeof name, "M%d", i);
        snprintf(address, sizeof address, "10.0.%d.%d:7000", i / 250, i % 250 + 1);
        json_array_append_new(list, member_json(name, "lab", address));
    }
    write_members(f, "max.json", list);
    struct proc_result r =
        run(f, "genesis", "--members", "max.json", "--chain-id", "c", "--out", "max.pb", "--json");
    if (r.status != 0)
        fail_msg("genesis at the member limit: %s", r.err);
    json_t *made = cli_parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(made, "member_count")),
                     EHR_GENESIS_MEMBERS_MAX);
    json_decref(made);
    proc_result_free(&r);
    /* one rule set: what genesis writes at the limit, a node takes */
    r = run(f, "ledger", "init", "--genesis", "max.pb", "--data", "data");
    if (r.status != 0)
        fail_msg("ledger init at the member limit: %s", r.err);
    proc_result_free(&r);
    json_array_append_new(list, member_json("one too many", "lab", "10.9.9.9:7000"));
    expect_genesis_rejects(f, list, "over the maximum");
}

/* A string of LEN copies of C, then TAIL (into a static buffer). */
static const char *repeat(char c, size_t len, const char *tail)
{
    static char buf[2048];
    assert_true(len + strlen(tail) < sizeof buf);
    memset(buf, c, len);
    memcpy(buf + len, tail, strlen(tail) + 1);
    return buf;
}

/* Genesis with one member changed by KEY=VALUE and chain id CHAIN; returns the exit status. */
static int genesis_with(const struct fixture *f, const char *key, const char *value,
                        const char *chain)
{
    json_t *l = two_members();
    json_object_set_new(json_array_get(l, 0), key, json_string(value));
    write_members(f, "edge.json", l);
    json_decref(l);
    unlink(path_in(f, "edge.pb"));
    struct proc_result r =
        run(f, "genesis", "--members", "edge.json", "--chain-id", chain, "--out", "edge.pb");
    int status = r.status;
    proc_result_free(&r);
    return status;
}

static void test_genesis_and_passphrase_limits_at_their_edges(void **state)
{
    struct fixture *f = *state;
    /* member name: the ledger's limit */
    assert_int_equal(genesis_with(f, "name", repeat('n', EHR_MEMBER_NAME_BYTES_MAX, ""), "c"), 0);
    assert_int_equal(genesis_with(f, "name", repeat('n', EHR_MEMBER_NAME_BYTES_MAX + 1, ""), "c"),
                     1);
    /* address: the ledger's limit, HOST and ":7000" */
    assert_int_equal(
        genesis_with(f, "address", repeat('a', EHR_PEER_ADDRESS_BYTES_MAX - 5, ":7000"), "c"), 0);
    assert_int_equal(
        genesis_with(f, "address", repeat('a', EHR_PEER_ADDRESS_BYTES_MAX - 4, ":7000"), "c"), 1);
    assert_int_equal(genesis_with(f, "address", "a:65535", "c"), 0);
    assert_int_equal(genesis_with(f, "address", "a:65536", "c"), 1);
    /* chain id: the ledger's limit (a usage error, it is an option) */
    char chain[EHR_CHAIN_ID_BYTES_MAX + 2];
    /* (each snprintf's length checked: the copy is whole) */
    assert_int_equal(snprintf(chain, sizeof chain, "%s", repeat('c', EHR_CHAIN_ID_BYTES_MAX, "")),
                     EHR_CHAIN_ID_BYTES_MAX);
    assert_int_equal(genesis_with(f, "name", "x", chain), 0);
    assert_int_equal(
        snprintf(chain, sizeof chain, "%s", repeat('c', EHR_CHAIN_ID_BYTES_MAX + 1, "")),
        EHR_CHAIN_ID_BYTES_MAX + 1);
    assert_int_equal(genesis_with(f, "name", "x", chain), 2);
    /* the members file: 1 MiB */
    FILE *fp = fopen(path_in(f, "huge.json"), "w");
    assert_non_null(fp);
    for (int i = 0; i <= (1 << 20); i++)
        fputc(' ', fp);
    assert_int_equal(fclose(fp), 0);
    struct proc_result r =
        run(f, "genesis", "--members", "huge.json", "--chain-id", "c", "--out", "g.pb");
    cli_assert_failure(&r, 1, "larger than 1 MiB");
    proc_result_free(&r);
    /* passphrase: 1024 bytes, plus its line ending */
    proc_text_write(path_in(f, "pw1024"), repeat('p', 1024, "\r\n"));
    r = run(f, "keygen", "--out", "a.key", "--passphrase-file", "pw1024");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    proc_text_write(path_in(f, "pw1025"), repeat('p', 1025, "\n"));
    r = run(f, "keygen", "--out", "b.key", "--passphrase-file", "pw1025");
    cli_assert_failure(&r, 1, "longer than 1024 bytes");
    proc_result_free(&r);
    const char *env[] = {"EHR_PASSPHRASE=", NULL};
    char *long_env = ehr_malloc(1100);
    assert_int_equal(snprintf(long_env, 1100, "EHR_PASSPHRASE=%s", repeat('p', 1025, "")),
                     strlen("EHR_PASSPHRASE=") + 1025);
    env[0] = long_env;
    r = run_env(f, env, "keygen", "--out", "b.key", NULL);
    cli_assert_failure(&r, 1, "longer than 1024 bytes");
    proc_result_free(&r);
    ehr_free(long_env);
    assert_false(file_exists(f, "b.key"));
}

static void test_genesis_show_rejects_what_is_not_a_genesis(void **state)
{
    struct fixture *f = *state;
    struct proc_result r = run(f, "keygen", "--out", "k.key", "--no-passphrase");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    r = run(f, "genesis", "show", "k.key");
    assert_int_equal(r.status, 1);
    proc_result_free(&r);
    proc_text_write(path_in(f, "empty.pb"), ""); /* decodes, but has no chain id and no members */
    r = run(f, "genesis", "show", "empty.pb");
    cli_assert_failure(&r, 1, "chain id");
    proc_result_free(&r);
}

/* ---- ledger init / verify / status, block show, tx show ---- */

enum { LEDGER_MEMBERS = 2, LEDGER_BLOCKS = 3, LEDGER_BLOCK_TXS = 4 };

/* Members' keys for the ledger tests: the same seeds give the same keys. */
static void ledger_keys(ehr_signing_key keys[LEDGER_MEMBERS], uint32_t seed)
{
    for (uint32_t i = 0; i < LEDGER_MEMBERS; i++)
        tu_key(&keys[i], seed + i);
}

/* Write a genesis for the members of SEED to NAME; HASH_HEX (may be NULL) gets its hash. */
static void write_genesis(const struct fixture *f, const char *name, uint32_t seed,
                          char hash_hex[65])
{
    ehr_signing_key keys[LEDGER_MEMBERS];
    ledger_keys(keys, seed);
    uint8_t *g;
    size_t len;
    tu_genesis(keys, LEDGER_MEMBERS, &g, &len);
    assert_int_equal(ehr_file_write_atomic(path_in(f, name), g, len, 0644, true), 0);
    if (hash_hex != NULL) {
        uint8_t hash[32];
        ehr_sha256(hash, g, len);
        ehr_hex_encode(hash_hex, hash, 32);
    }
    ehr_free(g);
}

/* ---- blocks applied through the rules, as a node applies them ---- */

_Static_assert((int)CONTRACTS_RESULT_BYTES_MAX <= (int)EHR_TX_RESULT_BYTES_MAX,
               "a result fits a batch's result slot");

/* The ledger L (CTX) as contracts/ reads the state (node/state_view.c does
 * the same for the node). */
static int rules_state_get(void *ctx, const uint8_t *key, size_t key_len, uint8_t *value,
                           size_t *len)
{
    uint8_t *copy = NULL;
    size_t n = 0;
    int rc = ledger_state_get(ctx, key, key_len, &copy, &n, NULL);
    if (rc != 0)
        return rc;
    if (n > 0)
        memcpy(value, copy, n);
    *len = n;
    ehr_free(copy);
    return 0;
}

struct rules_scan {
    contracts_scan_fn fn;
    void *fn_ctx;
    int stopped; /* FN's non-zero value */
};

static int rules_scan_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                          size_t value_len)
{
    struct rules_scan *s = ctx;
    int rc = s->fn(s->fn_ctx, key, key_len, value, value_len);
    if (rc == 0)
        return 0;
    s->stopped = rc;
    return 1;
}

static int rules_state_scan(void *ctx, const uint8_t *prefix, size_t prefix_len,
                            contracts_scan_fn fn, void *fn_ctx)
{
    struct rules_scan s = {.fn = fn, .fn_ctx = fn_ctx};
    long seen = ledger_state_scan(ctx, prefix, prefix_len, NULL, 0, LEDGER_SCAN_COUNT_MAX,
                                  rules_scan_one, &s, NULL);
    if (seen < 0)
        return (int)seen;
    assert_true(seen < LEDGER_SCAN_COUNT_MAX); /* a test ledger is small: one scan holds it */
    return s.stopped;
}

/* A signed enrolment of a fresh patient by MEMBER (co-signed by the
 * patient): an OK transaction that writes state. HASH gets its tx hash. */
static void enroll_tx(const ehr_signing_key *member, ledger_bytes *out, uint8_t hash[32])
{
    ehr_identity patient;
    assert_int_equal(ehr_identity_generate(&patient, "patient"), 0);
    uint8_t msg[EHR_HASH_BYTES], sig[EHR_SCHNORR_SIG_BYTES], nonce[EHR_TX_NONCE_BYTES];
    contracts_enroll_message(TU_CHAIN_ID, member->public_key, patient.signing.public_key,
                             patient.kx.public_key, msg);
    assert_int_equal(ehr_schnorr_sign(&patient.signing, msg, sig), 0);
    ehr_random_bytes(nonce, sizeof nonce);
    Ehr__V1__PatientEnroll p = EHR__V1__PATIENT_ENROLL__INIT;
    p.patient_key = (ProtobufCBinaryData){32, patient.signing.public_key};
    p.patient_kx_key = (ProtobufCBinaryData){32, patient.kx.public_key};
    p.patient_signature = (ProtobufCBinaryData){sizeof sig, sig};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.chain_id = TU_CHAIN_ID;
    body.signer = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)member->public_key};
    body.nonce = (ProtobufCBinaryData){sizeof nonce, nonce};
    body.expiry_ms = TU_GENESIS_TIME_MS + 365ull * 86400 * 1000;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_PATIENT_ENROLL;
    body.patient_enroll = &p;
    size_t len = ehr__v1__tx_body__get_packed_size(&body);
    uint8_t *bytes = ehr_malloc(len);
    assert_int_equal(ehr__v1__tx_body__pack(&body, bytes), len);
    uint8_t *env;
    size_t env_len;
    assert_int_equal(ledger_tx_envelope_build(bytes, len, member, &env, &env_len), 0);
    ledger_tx_hash(bytes, len, hash);
    *out = (ledger_bytes){env, env_len};
    ehr_free(bytes);
    ehr_identity_wipe(&patient);
}

/* A batch of COUNT transactions by MEMBER: an enrolment, then record
 * anchors for patients nobody enrolled (refused by the rules). */
static void rules_batch_make(tu_batch *b, const ehr_signing_key *member, size_t count)
{
    tu_batch_make(b, member, count, 0);
    ehr_free((void *)b->envelopes[0].data);
    enroll_tx(member, &b->envelopes[0], b->hashes[0]);
}

/* Append to L the block of B's transactions by PROPOSER, each applied
 * through the rules (signatures included) on the state at the tip: the
 * writes and results a node stores. B's results are left as stored. */
static void rules_append(ledger *l, const ehr_signing_key *proposer, tu_batch *b)
{
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, b, proposer, &block, &len);
    struct contracts_state state = {.ctx = l, .get = rules_state_get, .scan = rules_state_scan};
    struct contracts_block_ctx ctx = {.height = tip.height + 1, .time_ms = tip.time_ms + 1000};
    memcpy(ctx.proposer, proposer->public_key, EHR_SCHNORR_PUBLIC_BYTES);
    snprintf(ctx.chain_id, sizeof ctx.chain_id, "%s", TU_CHAIN_ID);
    contracts_block *cb;
    assert_int_equal(contracts_block_begin(&state, &ctx, &cb), 0);
    for (size_t i = 0; i < b->count; i++) {
        struct contracts_tx tx = {.envelope = b->envelopes[i].data,
                                  .len = b->envelopes[i].len,
                                  .hash = b->hashes[i],
                                  .position = (uint32_t)i,
                                  .sig = CONTRACTS_SIG_UNCHECKED};
        struct contracts_tx_result r;
        assert_int_equal(contracts_apply_tx(cb, &tx, &r), 0);
        b->results[i] =
            (ledger_bytes){b->result_bytes[i], contracts_tx_result_encode(&r, b->result_bytes[i])};
    }
    const ledger_state_write *writes;
    size_t write_count = contracts_block_writes(cb, &writes);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b->hashes,
                         .writes = writes,
                         .write_count = write_count,
                         .results = b->results,
                         .result_count = b->count,
                         .applied_index = tip.applied_index + 1};
    assert_int_equal(ledger_append_block(l, &req, NULL), 0);
    contracts_block_end(cb);
    ehr_free(block);
}

/* `ledger init` DATA from a genesis of seed 1, then LEDGER_BLOCKS blocks of
 * LEDGER_BLOCK_TXS signed transactions applied through the rules. */
static void make_ledger(const struct fixture *f, const char *data)
{
    write_genesis(f, "g.pb", 1, NULL);
    struct proc_result r = run(f, "ledger", "init", "--genesis", "g.pb", "--data", data);
    if (r.status != 0)
        fail_msg("ledger init: %s", r.err);
    proc_result_free(&r);
    ehr_signing_key keys[LEDGER_MEMBERS];
    ledger_keys(keys, 1);
    ledger *l;
    assert_int_equal(ledger_open(path_in(f, data), NULL, &l, NULL), 0);
    for (int i = 0; i < LEDGER_BLOCKS; i++) {
        tu_batch b;
        rules_batch_make(&b, &keys[i % LEDGER_MEMBERS], LEDGER_BLOCK_TXS);
        rules_append(l, &keys[i % LEDGER_MEMBERS], &b);
        tu_batch_free(&b);
    }
    ledger_close(l);
}

/* Run `ledger verify --data DATA --json` and return the parsed output; *STATUS gets the exit. */
static json_t *verify_json(const struct fixture *f, const char *data, int *status)
{
    struct proc_result r = run(f, "ledger", "verify", "--data", data, "--json");
    *status = r.status;
    json_t *root = cli_parse_json(r.out);
    proc_result_free(&r);
    return root;
}

static json_int_t json_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    assert_non_null(v);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void test_ledger_init_then_verify_and_init_again(void **state)
{
    struct fixture *f = *state;
    char genesis_hex[65];
    write_genesis(f, "g.pb", 1, genesis_hex);
    struct proc_result r =
        run(f, "ledger", "init", "--genesis", "g.pb", "--data", "data", "--json");
    if (r.status != 0)
        fail_msg("ledger init: %s", r.err);
    json_t *made = cli_parse_json(r.out);
    proc_result_free(&r);
    assert_true(json_is_true(json_object_get(made, "created")));
    assert_string_equal(cli_json_str(made, "chain_id"), TU_CHAIN_ID);
    assert_string_equal(cli_json_str(made, "genesis_hash"), genesis_hex);
    assert_int_equal(json_int(made, "members"), LEDGER_MEMBERS);
    struct stat st;
    assert_int_equal(stat(path_in(f, "data"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    /* block 0's hash is the one block show and verify report */
    const char *block0 = cli_json_str(made, "block0_hash");
    r = run(f, "block", "show", "0", "--data", "data", "--json");
    assert_int_equal(r.status, 0);
    json_t *shown = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(shown, "hash"), block0);
    assert_string_equal(cli_json_str(shown, "genesis_hash"), genesis_hex);
    assert_true(json_is_null(json_object_get(shown, "proposer")));
    json_decref(shown);
    proc_result_free(&r);
    r = run(f, "ledger", "verify", "--data", "data");
    assert_int_equal(r.status, 0);
    char want[160];
    snprintf(want, sizeof want, "ledger ok: 1 block, 0 transactions, tip 0 %s\n", block0);
    assert_string_equal(r.out, want);
    proc_result_free(&r);

    /* the same genesis again: nothing changes, and it says so */
    r = run(f, "ledger", "init", "--genesis", "g.pb", "--data", "data");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "already initialised"));
    assert_non_null(strstr(r.out, block0));
    proc_result_free(&r);
    const char *env[] = {"EHR_DATA=data", NULL}; /* --data defaults to $EHR_DATA */
    r = run_env(f, env, "ledger", "status", "--json", NULL);
    assert_int_equal(r.status, 0);
    json_t *status = cli_parse_json(r.out);
    assert_int_equal(json_int(status, "tip_height"), 0);
    assert_string_equal(cli_json_str(status, "tip_hash"), block0);
    assert_string_equal(cli_json_str(status, "genesis_hash"), genesis_hex);
    json_decref(status);
    proc_result_free(&r);
    json_decref(made);
}

static void test_ledger_init_refuses_another_chain_and_a_foreign_directory(void **state)
{
    struct fixture *f = *state;
    write_genesis(f, "g.pb", 1, NULL);
    write_genesis(f, "other.pb", 7, NULL);
    struct proc_result r = run(f, "ledger", "init", "--genesis", "g.pb", "--data", "data");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    r = run(f, "ledger", "init", "--genesis", "other.pb", "--data", "data");
    cli_assert_failure(&r, 1, "already holds chain");
    proc_result_free(&r);
    r = run(f, "ledger", "verify", "--data", "data"); /* untouched */
    assert_int_equal(r.status, 0);
    proc_result_free(&r);

    /* a directory with other files in it is not taken for a ledger */
    assert_int_equal(mkdir(path_in(f, "home"), 0700), 0);
    proc_text_write(path_in(f, "home/notes.txt"), "mine\n");
    r = run(f, "ledger", "init", "--genesis", "g.pb", "--data", "home");
    cli_assert_failure(&r, 1, "not empty");
    proc_result_free(&r);
    assert_int_equal(access(path_in(f, "home/data.mdb"), F_OK), -1);
    /* nor is a file; and a bad genesis stops before any directory is made */
    r = run(f, "ledger", "init", "--genesis", "g.pb", "--data", "g.pb");
    cli_assert_failure(&r, 1, "not a directory");
    proc_result_free(&r);
    proc_text_write(path_in(f, "junk.pb"), "not a genesis");
    r = run(f, "ledger", "init", "--genesis", "junk.pb", "--data", "fresh");
    cli_assert_failure(&r, 1, "genesis");
    proc_result_free(&r);
    assert_false(file_exists(f, "fresh"));
    /* reading commands do not create a ledger where there is none */
    r = run(f, "ledger", "verify", "--data", "fresh");
    cli_assert_failure(&r, 1, "no ledger");
    proc_result_free(&r);
    assert_false(file_exists(f, "fresh"));
}

static void test_block_show_lists_transactions_and_names_the_tip(void **state)
{
    struct fixture *f = *state;
    make_ledger(f, "data");
    struct proc_result r = run(f, "block", "show", "2", "--data", "data", "--json");
    assert_int_equal(r.status, 0);
    json_t *block = cli_parse_json(r.out);
    proc_result_free(&r);
    assert_int_equal(json_int(block, "height"), 2);
    assert_int_equal(json_int(block, "tx_count"), LEDGER_BLOCK_TXS);
    json_t *txs = json_object_get(block, "txs");
    assert_int_equal(json_array_size(txs), LEDGER_BLOCK_TXS);
    /* each listed hash is found by tx show at that place */
    for (size_t i = 0; i < LEDGER_BLOCK_TXS; i++) {
        json_t *tx = json_array_get(txs, i);
        /* rules_batch_make: an enrolment first, then record anchors */
        assert_string_equal(cli_json_str(tx, "type"), i == 0 ? "patient_enroll" : "record_anchor");
        r = run(f, "tx", "show", cli_json_str(tx, "hash"), "--data", "data", "--json");
        assert_int_equal(r.status, 0);
        json_t *shown = cli_parse_json(r.out);
        assert_int_equal(json_int(shown, "height"), 2);
        assert_int_equal(json_int(shown, "index"), (json_int_t)i);
        json_decref(shown);
        proc_result_free(&r);
    }
    /* block 1 is block 2's predecessor */
    r = run(f, "block", "show", "1", "--data", "data", "--json");
    assert_int_equal(r.status, 0);
    json_t *prev = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(prev, "hash"), cli_json_str(block, "prev_hash"));
    json_decref(prev);
    proc_result_free(&r);
    /* human output names the same transactions */
    r = run(f, "block", "show", "2", "--data", "data");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, cli_json_str(json_array_get(txs, 3), "hash")));
    assert_null(strchr(r.out, '{'));
    proc_result_free(&r);

    char missing[32], want[64];
    snprintf(missing, sizeof missing, "%d", LEDGER_BLOCKS + 1);
    snprintf(want, sizeof want, "no block at height %d (tip is %d)", LEDGER_BLOCKS + 1,
             LEDGER_BLOCKS);
    r = run(f, "block", "show", missing, "--data", "data");
    cli_assert_failure(&r, 1, want);
    proc_result_free(&r);
    json_decref(block);
}

static void test_tx_show_found_not_found_and_malformed(void **state)
{
    struct fixture *f = *state;
    make_ledger(f, "data");
    ehr_signing_key keys[LEDGER_MEMBERS];
    ledger_keys(keys, 1);
    /* a transaction whose contents the test knows */
    ledger *l;
    assert_int_equal(ledger_open(path_in(f, "data"), NULL, &l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, &keys[1], 1, 5);
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, &keys[0], &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .writes = b.writes,
                         .write_count = b.count,
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = tip.height + 1};
    assert_int_equal(ledger_append_block(l, &req, NULL), 0);
    ledger_close(l);
    ehr_free(block);
    char hash_hex[65], signer_hex[65];
    ehr_hex_encode(hash_hex, b.hashes[0], 32);
    ehr_hex_encode(signer_hex, keys[1].public_key, 32);
    ledger_tx_view view;
    assert_int_equal(ledger_tx_envelope_parse(b.envelopes[0].data, b.envelopes[0].len, &view, NULL),
                     0);
    Ehr__V1__TxBody *body = ehr__v1__tx_body__unpack(NULL, view.body_len, view.body);
    assert_non_null(body);
    char nonce_hex[2 * EHR_TX_NONCE_BYTES + 1], pointer_hex[64];
    ehr_hex_encode(nonce_hex, body->nonce.data, body->nonce.len);
    ehr_hex_encode(pointer_hex, body->record_anchor->encrypted_pointer.data,
                   body->record_anchor->encrypted_pointer.len);

    struct proc_result r = run(f, "tx", "show", hash_hex, "--data", "data", "--json");
    assert_int_equal(r.status, 0);
    json_t *tx = cli_parse_json(r.out);
    proc_result_free(&r);
    assert_string_equal(cli_json_str(tx, "hash"), hash_hex);
    assert_int_equal(json_int(tx, "height"), tip.height + 1);
    assert_int_equal(json_int(tx, "index"), 0);
    assert_string_equal(cli_json_str(tx, "chain_id"), TU_CHAIN_ID);
    assert_string_equal(cli_json_str(tx, "signer"), signer_hex);
    assert_string_equal(cli_json_str(tx, "nonce"), nonce_hex);
    assert_int_equal(json_int(tx, "expiry_ms"), (json_int_t)body->expiry_ms);
    assert_string_equal(cli_json_str(tx, "type"), "record_anchor");
    assert_true(json_is_true(json_object_get(tx, "valid")));
    json_t *payload = json_object_get(tx, "payload");
    assert_string_equal(cli_json_str(payload, "record_type"), "lab_result");
    assert_string_equal(cli_json_str(payload, "encrypted_pointer"), pointer_hex);
    assert_int_equal(json_int(payload, "ciphertext_bytes"),
                     (json_int_t)body->record_anchor->ciphertext_bytes);
    json_decref(tx);
    /* human output: the same facts, no JSON */
    r = run(f, "tx", "show", hash_hex, "--data", "data");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, signer_hex));
    assert_non_null(strstr(r.out, "lab_result"));
    assert_non_null(strstr(r.out, pointer_hex));
    assert_null(strchr(r.out, '{'));
    proc_result_free(&r);
    ehr__v1__tx_body__free_unpacked(body, NULL);
    tu_batch_free(&b);

    hash_hex[0] = hash_hex[0] == '0' ? '1' : '0'; /* a hash not on the ledger */
    r = run(f, "tx", "show", hash_hex, "--data", "data");
    cli_assert_failure(&r, 1, "not on this ledger");
    proc_result_free(&r);
    hash_hex[63] = '\0'; /* 63 digits */
    r = run(f, "tx", "show", hash_hex, "--data", "data");
    assert_usage_error(&r);
    assert_non_null(strstr(r.err, "64 hex digits"));
    proc_result_free(&r);
}

static void flip_byte(uint8_t *value, size_t *len, void *ctx)
{
    (void)ctx;
    value[*len - 100] ^= 0x10; /* inside the block's last transaction */
}

/* Store BYTES at HEIGHT of the ledger in DIR with a correct checksum, bypassing every check. */
static void block_put_raw(const char *dir, uint64_t height, const uint8_t *bytes, size_t len)
{
    uint8_t key[8];
    ledger__height_key(key, height);
    size_t prefix = ledger__stored_block_prefix_size(len);
    uint8_t *record = ehr_malloc(prefix + len);
    ledger__stored_block_prefix_write(record, height, bytes, len);
    memcpy(record + prefix, bytes, len);
    assert_int_equal(tu_raw_put(dir, LEDGER__DB_BLOCKS, key, sizeof key, record, prefix + len), 0);
    ehr_free(record);
}

/* Replace block HEIGHT of DIR with a properly signed one whose prev_hash is wrong. */
static void plant_broken_link(const char *dir, uint64_t height, const ehr_signing_key *proposer)
{
    ledger *l;
    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    uint8_t *bytes;
    size_t len;
    assert_int_equal(ledger_block_get(l, height - 1, &bytes, &len, NULL), 0);
    ledger_close(l);
    ledger_block_view prev;
    assert_int_equal(ledger_block_parse(bytes, len, &prev, NULL), 0);
    ledger_tip fake = {.height = height - 1, .time_ms = prev.header.time_ms};
    memcpy(fake.hash, prev.hash, EHR_HASH_BYTES);
    fake.hash[31] ^= 1;
    ledger_block_view_release(&prev);
    ehr_free(bytes);
    tu_batch b;
    tu_batch_make(&b, proposer, LEDGER_BLOCK_TXS, 0);
    uint8_t *block;
    tu_block_next(&fake, &b, proposer, &block, &len);
    block_put_raw(dir, height, block, len);
    ehr_free(block);
    tu_batch_free(&b);
}

/* Append to DIR a block whose transaction 1 carries a forged signature,
 * stored as OK with a write (the append path leaves transaction signatures
 * to admission and verify): what no correct node stores. */
static void plant_bad_signature(const char *dir, const ehr_signing_key *proposer)
{
    ledger *l;
    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    ledger_tip tip;
    assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
    tu_batch b;
    tu_batch_make(&b, proposer, LEDGER_BLOCK_TXS, 0);
    uint8_t *forged = (uint8_t *)b.envelopes[1].data;
    forged[b.envelopes[1].len - 5] ^= 0x20; /* a signature byte */
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, proposer, &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                         .writes = b.writes,
                         .write_count = b.count,
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = tip.height + 1};
    assert_int_equal(ledger_append_block(l, &req, NULL), 0);
    ledger_close(l);
    ehr_free(block);
    tu_batch_free(&b);
}

/* Verify DATA: exit 1, one line `ledger FAULT: ...` holding FRAGMENT; the
 * --json form agrees (fault name, height, tx index). Returns the line. */
static char *expect_fault(const struct fixture *f, const char *data, const char *fragment,
                          enum ledger_fault fault, uint64_t height, long tx_index)
{
    struct proc_result r = run(f, "ledger", "verify", "--data", data);
    assert_int_equal(r.status, 1);
    assert_int_equal(strncmp(r.out, "ledger FAULT: ", 14), 0);
    assert_non_null(strchr(r.out, '\n'));
    assert_int_equal(strchr(r.out, '\n')[1], '\0');
    if (strstr(r.out, fragment) == NULL)
        fail_msg("verify says \"%s\", not \"%s\"", r.out, fragment);
    char *line = r.out;
    r.out = NULL;
    proc_result_free(&r);
    int status;
    json_t *v = verify_json(f, data, &status);
    assert_int_equal(status, 1);
    assert_true(json_is_false(json_object_get(v, "ok")));
    assert_string_equal(cli_json_str(v, "fault"), ledger_fault_name(fault));
    assert_int_equal(json_int(v, "height"), (json_int_t)height);
    if (tx_index < 0)
        assert_true(json_is_null(json_object_get(v, "tx_index")));
    else
        assert_int_equal(json_int(v, "tx_index"), tx_index);
    assert_non_null(strstr(line, cli_json_str(v, "message")));
    json_decref(v);
    return line;
}

static void test_verify_passes_a_sound_chain_and_names_three_planted_faults(void **state)
{
    struct fixture *f = *state;
    ehr_signing_key keys[LEDGER_MEMBERS];
    ledger_keys(keys, 1);
    const char *dirs[] = {"d1", "d2", "d3"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(dirs); i++)
        make_ledger(f, dirs[i]);
    struct proc_result r = run(f, "ledger", "verify", "--data", "d1", "--threads", "2");
    assert_int_equal(r.status, 0);
    char want[64];
    snprintf(want, sizeof want, "ledger ok: %d blocks, %d transactions, tip %d ", LEDGER_BLOCKS + 1,
             LEDGER_BLOCKS * LEDGER_BLOCK_TXS, LEDGER_BLOCKS);
    if (strncmp(r.out, want, strlen(want)) != 0)
        fail_msg("verify says \"%s\"", r.out);
    proc_result_free(&r);
    int status;
    json_t *ok = verify_json(f, "d1", &status);
    assert_int_equal(status, 0);
    assert_true(json_is_true(json_object_get(ok, "ok")));
    assert_string_equal(cli_json_str(ok, "fault"), ledger_fault_name(LEDGER_FAULT_NONE));
    assert_int_equal(json_int(ok, "blocks_checked"), LEDGER_BLOCKS + 1);
    assert_int_equal(json_int(ok, "txs_checked"), LEDGER_BLOCKS * LEDGER_BLOCK_TXS);
    assert_int_equal(json_int(ok, "tip_height"), LEDGER_BLOCKS);
    r = run(f, "block", "show", "3", "--data", "d1", "--json");
    json_t *tip = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(ok, "tip_hash"), cli_json_str(tip, "hash"));
    json_decref(tip);
    json_decref(ok);
    proc_result_free(&r);

    /* 1. one flipped byte in the stored block at height 2 */
    uint8_t key[8];
    ledger__height_key(key, 2);
    assert_int_equal(tu_raw_edit(path_in(f, "d1"), LEDGER__DB_BLOCKS, key, 8, flip_byte, NULL), 0);
    char *corrupt =
        expect_fault(f, "d1", "corrupt block record at height 2", LEDGER_FAULT_CORRUPT, 2, -1);
    /* 2. block 3 signed properly but linked to the wrong predecessor */
    plant_broken_link(path_in(f, "d2"), 3, &keys[0]);
    char *link =
        expect_fault(f, "d2", "broken hash link at height 3", LEDGER_FAULT_HASH_LINK, 3, -1);
    /* 3. a new block whose transaction 1 has a forged signature */
    plant_bad_signature(path_in(f, "d3"), &keys[1]);
    snprintf(want, sizeof want, "bad signature: height %d tx 1", LEDGER_BLOCKS + 1);
    char *sig = expect_fault(f, "d3", want, LEDGER_FAULT_TX_SIG, LEDGER_BLOCKS + 1, 1);
    /* three distinct verdicts */
    assert_string_not_equal(corrupt, link);
    assert_string_not_equal(link, sig);
    assert_string_not_equal(corrupt, sig);
    ehr_free(corrupt);
    ehr_free(link);
    ehr_free(sig);
}

/* A block whose transaction 1 carries a forged signature, applied through
 * the rules as every node applies it (test_cluster's forging leader): the
 * transaction stays in its block, refused with BAD_SIGNATURE. */
static void append_refused_forgery(const char *dir, const ehr_signing_key *proposer)
{
    ledger *l;
    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    tu_batch b;
    rules_batch_make(&b, proposer, LEDGER_BLOCK_TXS);
    ((uint8_t *)b.envelopes[1].data)[b.envelopes[1].len - 5] ^= 0x20; /* a signature byte */
    rules_append(l, proposer, &b);
    Ehr__V1__TxResult *r = ehr__v1__tx_result__unpack(NULL, b.results[1].len, b.results[1].data);
    assert_non_null(r);
    assert_int_equal(r->code, EHR__V1__TX_RESULT_CODE__TX_RESULT_BAD_SIGNATURE);
    ehr__v1__tx_result__free_unpacked(r, NULL);
    ledger_close(l);
    tu_batch_free(&b);
}

/* What to change in a write-log record, and in the derived tables to match
 * (so that only the replay can tell). */
struct tamper {
    uint64_t height;
    uint32_t tx;                             /* the result to replace */
    uint8_t result[EHR_TX_RESULT_BYTES_MAX]; /* its new bytes */
    size_t result_len;
    char prefix[32];                      /* the first write with this key prefix */
    uint8_t key[EHR_STATE_KEY_BYTES_MAX]; /* found: its key */
    size_t key_len;
};

/* Re-encode a write-log record (checksum right) with the result at T->tx
 * replaced by T->result, or, when T->prefix is set, the value of the first
 * write under it with its last byte flipped (its key goes to T->key). */
static void rewrite_record(uint8_t *value, size_t *len, void *ctx)
{
    struct tamper *t = ctx;
    ledger__write_log log;
    assert_int_equal(ledger__writes_record_open(value, *len, t->height, &log), 0);
    ledger__write_log changed = log;
    ledger_state_write *writes = ehr_calloc(log.write_count + 1, sizeof *writes);
    ledger_bytes *results = ehr_calloc(log.result_count + 1, sizeof *results);
    memcpy(writes, log.writes, log.write_count * sizeof *writes);
    memcpy(results, log.results, log.result_count * sizeof *results);
    uint8_t flipped[EHR_STATE_VALUE_BYTES_MAX];
    if (t->prefix[0] != '\0') {
        size_t n = strlen(t->prefix), i = 0;
        while (i < log.write_count &&
               (writes[i].remove || writes[i].value_len == 0 || writes[i].key_len < n ||
                memcmp(writes[i].key, t->prefix, n) != 0))
            i++;
        assert_true(i < log.write_count);
        memcpy(flipped, writes[i].value, writes[i].value_len);
        flipped[writes[i].value_len - 1] ^= 0x01;
        writes[i].value = flipped;
        memcpy(t->key, writes[i].key, writes[i].key_len);
        t->key_len = writes[i].key_len;
    } else {
        assert_true(t->tx < log.result_count);
        results[t->tx] = (ledger_bytes){t->result_len > 0 ? t->result : NULL, t->result_len};
    }
    changed.writes = writes;
    changed.results = results;
    size_t n = ledger__writes_record_size(&changed);
    assert_true(n <= *len + 4096);
    uint8_t *record = ehr_malloc(n);
    ledger__writes_record_write(record, n, t->height, &changed);
    ledger__write_log_release(&log);
    memcpy(value, record, n);
    *len = n;
    ehr_free(record);
    ehr_free(writes);
    ehr_free(results);
}

/* Give a tx-index row the result in T. */
static void rewrite_row(uint8_t *value, size_t *len, void *ctx)
{
    const struct tamper *t = ctx;
    ledger_tx_location loc;
    assert_int_equal(ledger__tx_location_read(value, *len, &loc, NULL), 0);
    uint8_t row[LEDGER__TX_LOCATION_BYTES_MAX];
    *len = ledger__tx_location_write(
        row, &loc, (ledger_bytes){t->result_len > 0 ? t->result : NULL, t->result_len});
    memcpy(value, row, *len);
}

static void flip_last_value_byte(uint8_t *value, size_t *len, void *ctx)
{
    (void)ctx;
    value[*len - 1] ^= 0x01;
}

/* The hash of transaction INDEX of block HEIGHT in DIR. */
static void tx_hash_at(const char *dir, uint64_t height, uint32_t index, uint8_t hash[32])
{
    ledger *l;
    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    uint8_t *bytes;
    size_t len;
    assert_int_equal(ledger_block_get(l, height, &bytes, &len, NULL), 0);
    ledger_close(l);
    ledger_block_view v;
    assert_int_equal(ledger_block_parse(bytes, len, &v, NULL), 0);
    ledger_tx_view tv;
    assert_int_equal(
        ledger_tx_envelope_parse(v.bytes + v.txs[index].offset, v.txs[index].length, &tv, NULL), 0);
    ledger_tx_hash(tv.body, tv.body_len, hash);
    ledger_block_view_release(&v);
    ehr_free(bytes);
}

/*
 * verify replays every transaction through the rules: a forged transaction
 * kept with its BAD_SIGNATURE result is a sound ledger; a stored result, or
 * a stored state write, that differs from the replay's is a fault, even when
 * the write log, the tx index and the world state were changed to agree
 * (checksums right), each with its own message.
 */
static void test_verify_replays_the_rules_and_names_what_differs(void **state)
{
    struct fixture *f = *state;
    ehr_signing_key keys[LEDGER_MEMBERS];
    ledger_keys(keys, 1);
    const char *dirs[] = {"r1", "r2", "r3"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(dirs); i++) {
        make_ledger(f, dirs[i]);
        append_refused_forgery(path_in(f, dirs[i]), &keys[0]);
    }
    struct proc_result r = run(f, "ledger", "verify", "--data", "r1");
    if (r.status != 0 || strncmp(r.out, "ledger ok: ", 11) != 0)
        fail_msg("verify of a ledger with a refused forgery says \"%s\" \"%s\"", r.out, r.err);
    proc_result_free(&r);

    /* 1. transaction 0 of block 2, an enrolment (OK), stored as NOT_AUTHORIZED */
    struct tamper t = {.height = 2, .tx = 0};
    Ehr__V1__TxResult refused = EHR__V1__TX_RESULT__INIT;
    refused.code = EHR__V1__TX_RESULT_CODE__TX_RESULT_NOT_AUTHORIZED;
    refused.reason = "planted";
    t.result_len = ehr__v1__tx_result__pack(&refused, t.result);
    uint8_t key[8], hash[32];
    ledger__height_key(key, t.height);
    assert_int_equal(tu_raw_edit(path_in(f, "r2"), LEDGER__DB_WRITES, key, 8, rewrite_record, &t),
                     0);
    tx_hash_at(path_in(f, "r2"), t.height, t.tx, hash);
    assert_int_equal(tu_raw_edit(path_in(f, "r2"), LEDGER__DB_TXS, hash, 32, rewrite_row, &t), 0);
    char *result = expect_fault(
        f, "r2",
        "block 2: transaction 0's result differs: stored NOT_AUTHORIZED \"planted\", replayed OK",
        LEDGER_FAULT_REPLAY_RESULT, 2, 0);

    /* 2. the patient record block 2's enrolment wrote, one byte changed in
     * the write log and in the world state alike */
    struct tamper w = {.height = 2};
    snprintf(w.prefix, sizeof w.prefix, "%s", CONTRACTS_PREFIX_PATIENT);
    assert_int_equal(tu_raw_edit(path_in(f, "r3"), LEDGER__DB_WRITES, key, 8, rewrite_record, &w),
                     0);
    assert_int_equal(tu_raw_edit(path_in(f, "r3"), LEDGER__DB_STATE, w.key, w.key_len,
                                 flip_last_value_byte, NULL),
                     0);
    char *write = expect_fault(f, "r3", "state key patient/", LEDGER_FAULT_REPLAY_STATE, 2, -1);
    const char *stored = strstr(write, " differs after block 2: stored ");
    const char *replayed = strstr(write, ", replayed ");
    if (stored == NULL || replayed == NULL)
        fail_msg("verify says \"%s\"", write);
    stored += strlen(" differs after block 2: stored ");
    size_t stored_len = (size_t)(replayed - stored);
    replayed += strlen(", replayed ");
    /* the two values read differently */
    assert_false(strlen(replayed) == stored_len + 1 && strncmp(stored, replayed, stored_len) == 0);
    assert_string_not_equal(result, write);
    ehr_free(result);
    ehr_free(write);
}

/* Write NAME as the bytes of genesis file SRC with EXTRA appended (or PREFIX prepended). */
static void genesis_variant(const struct fixture *f, const char *src, const char *name,
                            const uint8_t *prefix, size_t prefix_len, const uint8_t *extra,
                            size_t extra_len)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(ehr_file_read_alloc(path_in(f, src), 1 << 20, &bytes, &len), 0);
    uint8_t *out = ehr_malloc(prefix_len + len + extra_len);
    if (prefix_len > 0)
        memcpy(out, prefix, prefix_len);
    memcpy(out + prefix_len, bytes, len);
    if (extra_len > 0)
        memcpy(out + prefix_len + len, extra, extra_len);
    assert_int_equal(
        ehr_file_write_atomic(path_in(f, name), out, prefix_len + len + extra_len, 0644, true), 0);
    ehr_free(out);
    ehr_free(bytes);
}

/*
 * genesis show accepts only the exact encoding ehrctl genesis writes, so what
 * it prints is all that the printed hash covers. Each variant below decodes
 * and passes every field check, yet hashes differently from what it shows.
 */
static void test_genesis_show_refuses_other_encodings_of_a_genesis(void **state)
{
    struct fixture *f = *state;
    json_t *list = two_members();
    write_members(f, "members.json", list);
    json_decref(list);
    struct proc_result r = run(f, "genesis", "--members", "members.json", "--chain-id", "c1",
                               "--out", "g.pb", "--time-ms", "1000");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    r = run(f, "genesis", "show", "g.pb");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);

    static const uint8_t unknown_field[] = {15 << 3, 1};                 /* field 15, varint 1 */
    static const uint8_t chain_id_again[] = {0x0a, 2, 'c', '1'};         /* field 1 repeated */
    static const uint8_t chain_id_nul[] = {0x0a, 4, 'c', '1', 0, 'x'};   /* shows as "c1" */
    static const uint8_t time_padded[] = {0x10, 0xe8, 0x87, 0x80, 0x00}; /* 1000, 4-byte varint */
    genesis_variant(f, "g.pb", "unknown.pb", NULL, 0, unknown_field, sizeof unknown_field);
    genesis_variant(f, "g.pb", "again.pb", NULL, 0, chain_id_again, sizeof chain_id_again);
    genesis_variant(f, "g.pb", "nul.pb", chain_id_nul, sizeof chain_id_nul, NULL, 0);
    genesis_variant(f, "g.pb", "padded.pb", NULL, 0, time_padded, sizeof time_padded);
    /* the same fields in another order: same size, other bytes */
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(ehr_file_read_alloc(path_in(f, "g.pb"), 1 << 20, &bytes, &len), 0);
    static const uint8_t chain_id_field[] = {0x0a, 2, 'c', '1'};
    assert_memory_equal(bytes, chain_id_field, sizeof chain_id_field); /* written first */
    uint8_t *moved = ehr_malloc(len);
    memcpy(moved, bytes + sizeof chain_id_field, len - sizeof chain_id_field);
    memcpy(moved + len - sizeof chain_id_field, chain_id_field, sizeof chain_id_field);
    assert_int_equal(ehr_file_write_atomic(path_in(f, "moved.pb"), moved, len, 0644, true), 0);
    ehr_free(moved);
    ehr_free(bytes);
    const char *variants[] = {"unknown.pb", "again.pb", "nul.pb", "padded.pb", "moved.pb"};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        r = run(f, "genesis", "show", variants[i]);
        if (r.status != 1)
            fail_msg("genesis show accepted %s: %s", variants[i], r.out);
        cli_assert_failure(&r, 1, "genesis is not in canonical form");
        proc_result_free(&r);
    }
}

/* Genesis time: at most INT64_MAX ms, so that JSON (signed 64-bit) shows it as it is. */
static void test_genesis_time_limit_edge(void **state)
{
    struct fixture *f = *state;
    json_t *list = two_members();
    write_members(f, "members.json", list);
    json_decref(list);
    struct proc_result r = run(f, "genesis", "--members", "members.json", "--chain-id", "c",
                               "--out", "max.pb", "--time-ms", "9223372036854775807", "--json");
    if (r.status != 0)
        fail_msg("genesis at the time limit: %s", r.err);
    proc_result_free(&r);
    r = run(f, "genesis", "show", "max.pb", "--json");
    assert_int_equal(r.status, 0);
    json_t *shown = cli_parse_json(r.out);
    assert_true(json_integer_value(json_object_get(shown, "time_ms")) == INT64_MAX);
    json_decref(shown);
    proc_result_free(&r);

    r = run(f, "genesis", "--members", "members.json", "--chain-id", "c", "--out", "over.pb",
            "--time-ms", "9223372036854775808");
    assert_usage_error(&r);
    proc_result_free(&r);
    assert_false(file_exists(f, "over.pb"));

    /* A file with time INT64_MAX + 1, encoded as ehrctl would: genesis show refuses it.
     * time_ms is top-level field 2 (tag 0x10); INT64_MAX is the varint ff x8 7f and
     * 2^63 the varint 80 x9 01. */
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(ehr_file_read_alloc(path_in(f, "max.pb"), 1 << 20, &bytes, &len), 0);
    static const uint8_t max_time[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    static const uint8_t over_time[] = {0x10, 0x80, 0x80, 0x80, 0x80, 0x80,
                                        0x80, 0x80, 0x80, 0x80, 0x01};
    uint8_t *at = memmem(bytes, len, max_time, sizeof max_time);
    assert_non_null(at);
    size_t before = (size_t)(at - bytes), after = len - before - sizeof max_time;
    uint8_t *over = ehr_malloc(len + 1);
    memcpy(over, bytes, before);
    memcpy(over + before, over_time, sizeof over_time);
    memcpy(over + before + sizeof over_time, at + sizeof max_time, after);
    assert_int_equal(ehr_file_write_atomic(path_in(f, "over.pb"), over, len + 1, 0644, false), 0);
    ehr_free(over);
    ehr_free(bytes);
    r = run(f, "genesis", "show", "over.pb", "--json");
    cli_assert_failure(&r, 1, "time");
    proc_result_free(&r);
}

/*
 * ---- ehrctl on a terminal ----
 *
 * ehrctl runs on a pseudo-terminal as the foreground job of a small session
 * leader, as under a job-control shell, so keys like ^Z and ^\ reach it as
 * they would reach a person's ehrctl. The leader exits with ehrctl's exit
 * status (128 + the signal if a signal ended it). Waits below are guards
 * against a hang, not measurements: the awaited event normally comes at once.
 */
enum { TTY_GUARD_MS = 10000, TTY_OUTPUT_BYTES_MAX = 1 << 16 };

struct tty_run {
    int master;
    pid_t leader;
    char out[TTY_OUTPUT_BYTES_MAX]; /* everything ehrctl wrote to the terminal */
    size_t out_len;
};

static long long now_ms_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The foreground job: ehrctl in its own process group, owning the terminal. */
static _Noreturn void tty_job_exec(const struct fixture *f, int slave, const char *const *argv)
{
    static const char *const no_env[] = {NULL};
    struct rlimit no_core = {0, 0};
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1 || setpgid(0, 0) != 0 ||
        signal(SIGTTOU, SIG_IGN) == SIG_ERR || tcsetpgrp(slave, getpid()) != 0 ||
        signal(SIGTTOU, SIG_DFL) == SIG_ERR || setrlimit(RLIMIT_CORE, &no_core) != 0 ||
        dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0 || chdir(f->dir) != 0)
        _exit(126);
    execve(EHRCTL, (char *const *)argv, (char *const *)no_env);
    _exit(127);
}

/* Start `ehrctl ARGS...` (NULL-terminated) on a fresh terminal. */
static void tty_start(struct tty_run *t, struct fixture *f, const char *const *args)
{
    const char *argv[ARGS_MAX + 2] = {"ehrctl"};
    for (int i = 0; args[i] != NULL; i++) {
        assert_true(i < ARGS_MAX);
        argv[i + 1] = args[i];
    }
    t->out_len = 0;
    if (f->tty_master >= 0)
        close(f->tty_master);
    t->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (t->master < 0 && (errno == ENOENT || errno == ENXIO || errno == ENODEV))
        skip(); /* no pseudo-terminals in this environment */
    assert_true(t->master >= 0);
    assert_int_equal(grantpt(t->master), 0);
    assert_int_equal(unlockpt(t->master), 0);
    const char *slave_name = ptsname(t->master);
    assert_non_null(slave_name);
    t->leader = fork();
    assert_true(t->leader >= 0);
    if (t->leader == 0) {
        int slave = -1;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || setsid() < 0 ||
            (slave = open(slave_name, O_RDWR)) < 0) /* our controlling tty */
            _exit(126);
        pid_t job = fork();
        if (job < 0)
            _exit(126);
        if (job == 0)
            tty_job_exec(f, slave, argv);
        int status;
        while (waitpid(job, &status, 0) < 0) {
            if (errno != EINTR)
                _exit(126);
        }
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
    f->tty_leader = t->leader;
    f->tty_master = t->master;
}

/* Read what ehrctl wrote until the output holds TEXT COUNT times. Fails after the guard. */
static void tty_wait_for(struct tty_run *t, const char *text, int count)
{
    long long deadline = now_ms_monotonic() + TTY_GUARD_MS;
    for (;;) {
        t->out[t->out_len] = '\0';
        int seen = 0;
        for (const char *p = t->out; (p = strstr(p, text)) != NULL; p += strlen(text))
            seen++;
        if (seen >= count)
            return;
        long long left = deadline - now_ms_monotonic();
        if (left <= 0)
            fail_msg("terminal never showed \"%s\" %d times; it shows: %s", text, count, t->out);
        struct pollfd pfd = {t->master, POLLIN, 0};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        ssize_t n = read(t->master, t->out + t->out_len, sizeof t->out - 1 - t->out_len);
        if (n <= 0)
            fail_msg("terminal closed before \"%s\" showed; it shows: %s", text, t->out);
        t->out_len += (size_t)n;
    }
}

static bool tty_echo_is_on(const struct tty_run *t)
{
    struct termios tio;
    assert_int_equal(tcgetattr(t->master, &tio), 0);
    return (tio.c_lflag & ECHO) != 0;
}

/* Wait until the terminal's echo is ON (or off). Fails after the guard. */
static void tty_wait_echo(const struct tty_run *t, bool on, const char *when)
{
    long long deadline = now_ms_monotonic() + TTY_GUARD_MS;
    while (tty_echo_is_on(t) != on) {
        if (now_ms_monotonic() > deadline)
            fail_msg("terminal echo still %s %s", on ? "off" : "on", when);
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

static void tty_type(const struct tty_run *t, const char *keys)
{
    assert_int_equal(write(t->master, keys, strlen(keys)), (ssize_t)strlen(keys));
}

/*
 * Wait for the session leader; returns ehrctl's exit status (128 + signal if
 * killed). The terminal stays open (its settings can still be read) until
 * the fixture's teardown or the next tty_start.
 */
static int tty_finish(struct fixture *f, struct tty_run *t)
{
    int status;
    assert_int_equal(waitpid(t->leader, &status, 0), t->leader);
    f->tty_leader = 0;
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* A signal that ends ehrctl at the passphrase prompt leaves the terminal echoing. */
static void test_terminal_echo_is_restored_when_a_signal_ends_the_prompt(void **state)
{
    struct fixture *f = *state;
    json_decref(keygen(f, "node.key", "n"));
    proc_text_write(path_in(f, "new"), "new passphrase\n");
    static const int signals[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        static const char *const args[] = {"key", "passwd", "node.key", "--new-passphrase-file",
                                           "new", NULL};
        struct tty_run t;
        tty_start(&t, f, args);
        tty_wait_for(&t, "passphrase for node.key: ", 1);
        tty_wait_echo(&t, false, "at the prompt");
        pid_t job = tcgetpgrp(t.master);
        assert_true(job > 0);
        assert_int_equal(kill(-job, signals[i]), 0);
        assert_int_equal(tty_finish(f, &t), 128 + signals[i]);
        if (!tty_echo_is_on(&t))
            fail_msg("echo left off after signal %d (%s)", signals[i], strsignal(signals[i]));
    }
}

/*
 * ^Z at the prompt gives the terminal back with echo on while ehrctl is
 * stopped; on SIGCONT (fg) echo goes off again and the prompt is shown again,
 * so the passphrase typed next is neither echoed nor mixed with earlier keys.
 */
static void test_terminal_prompt_survives_stop_and_continue(void **state)
{
    struct fixture *f = *state;
    json_decref(keygen(f, "node.key", "n"));
    proc_text_write(path_in(f, "new"), "new passphrase\n");
    static const char *const args[] = {"key", "passwd", "node.key", "--new-passphrase-file",
                                       "new", NULL};
    struct tty_run t;
    tty_start(&t, f, args);
    tty_wait_for(&t, "passphrase for node.key: ", 1);
    tty_wait_echo(&t, false, "at the prompt");
    pid_t job = tcgetpgrp(t.master);
    assert_true(job > 0);
    tty_type(&t, "half typed\x1a"); /* ^Z: SIGTSTP to the foreground job */
    tty_wait_echo(&t, true, "while ehrctl is stopped");
    assert_int_equal(kill(-job, SIGCONT), 0);
    tty_wait_for(&t, "passphrase for node.key: ", 2);
    tty_wait_echo(&t, false, "after ehrctl continued");
    tty_type(&t, "correct horse\n");
    tty_wait_for(&t, "passphrase (argon2id", 1); /* key passwd printed the re-encrypted file */
    assert_int_equal(tty_finish(f, &t), 0);
    assert_null(strstr(t.out, "correct horse")); /* never echoed */
    assert_true(tty_echo_is_on(&t));

    struct proc_result r = run(f, "key", "passwd", "node.key", "--passphrase-file", "new",
                               "--new-passphrase-file", "pw");
    assert_int_equal(r.status, 0); /* the new passphrase took */
    proc_result_free(&r);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    /* Orphans of a failed terminal test are reparented to us, to be reaped. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        T(test_keygen_and_key_show_agree),
        T(test_wrong_passphrase_fails_and_changes_nothing),
        T(test_passwd_changes_the_passphrase_and_keeps_the_keys),
        T(test_keygen_refuses_to_overwrite_without_force),
        T(test_keygen_passphrase_sources_and_empty_passphrase),
        T(test_corrupt_key_files_are_named_clearly),
        T(test_usage_errors_exit_2),
        T(test_label_limit_edge),
        T(test_help_lists_every_command),
        T(test_every_listed_command_answers_help),
        T(test_init_warns_when_the_config_has_no_passphrase_source),
        T(test_genesis_from_key_files_is_deterministic),
        T(test_genesis_emergency_roles),
        T(test_genesis_rejects_bad_members_naming_member_and_field),
        T(test_genesis_member_count_limit_edge),
        T(test_genesis_show_rejects_what_is_not_a_genesis),
        T(test_genesis_show_refuses_other_encodings_of_a_genesis),
        T(test_genesis_time_limit_edge),
        T(test_genesis_and_passphrase_limits_at_their_edges),
        T(test_json_output_survives_file_names_that_are_not_utf8),
        T(test_terminal_echo_is_restored_when_a_signal_ends_the_prompt),
        T(test_terminal_prompt_survives_stop_and_continue),
        T(test_ledger_init_then_verify_and_init_again),
        T(test_ledger_init_refuses_another_chain_and_a_foreign_directory),
        T(test_block_show_lists_transactions_and_names_the_tip),
        T(test_tx_show_found_not_found_and_malformed),
        T(test_verify_passes_a_sound_chain_and_names_three_planted_faults),
        T(test_verify_replays_the_rules_and_names_what_differs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
