/*
 * test_proc - the subprocess harness (proc.h) on /bin/sh: what a child
 * sees (argv, environment, working directory, stdin), where its output
 * goes, how its end is reported, the bounds at their edges, and that a
 * set-up failure aborts naming what failed (run in a forked copy of this
 * test, whose stderr is read back).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "proc.h"

#define SH "/bin/sh"

static int setup(void **state)
{
    *state = proc_dir_make("test-proc");
    return 0;
}

static int teardown(void **state)
{
    proc_dir_remove(*state);
    return 0;
}

static struct proc_result sh(const char *dir, const char *script)
{
    return proc_run(
        &(struct proc_spec){.path = SH, .args = PROC_ARGS("-c", script, NULL), .cwd = dir});
}

static void test_run_captures_both_streams_and_the_exit_status(void **state)
{
    const char *dir = *state;
    struct proc_result r = sh(dir, "echo out; echo err >&2; pwd; exit 3");
    assert_int_equal(r.status, 3);
    assert_int_equal(r.signal, 0);
    char want[4096 + 8];
    char real[4096];
    assert_non_null(realpath(dir, real));
    snprintf(want, sizeof want, "out\n%s\n", real);
    assert_string_equal(r.out, want);
    assert_string_equal(r.err, "err\n");
    proc_result_free(&r);
    assert_null(r.out);
    /* nothing is left in the directory: the capture files are not there */
    r = sh(dir, "ls -A");
    assert_string_equal(r.out, "");
    proc_result_free(&r);
    /* stdin is /dev/null */
    r = sh(dir, "cat; echo end");
    assert_string_equal(r.out, "end\n");
    proc_result_free(&r);
}

static void test_argv0_and_arguments(void **state)
{
    /* the shell's own argv, as the kernel holds it, with '|' between */
    static const char script[] = "tr '\\0' '|' < /proc/$$/cmdline";
    struct proc_result r = proc_run(&(struct proc_spec){
        .path = SH, .argv0 = "named", .args = PROC_ARGS("-c", script, "one", "two words", NULL)});
    char want[128];
    snprintf(want, sizeof want, "named|-c|%s|one|two words|", script);
    assert_string_equal(r.out, want);
    proc_result_free(&r);
    r = proc_run(&(struct proc_spec){.path = SH, .args = PROC_ARGS("-c", script, NULL)});
    snprintf(want, sizeof want, "%s|-c|%s|", SH, script); /* no argv0: the path */
    assert_string_equal(r.out, want);
    proc_result_free(&r);
}

static void test_environment_empty_given_or_inherited(void **state)
{
    assert_int_equal(setenv("PROC_TEST_A", "parent", 1), 0);
    struct proc_spec spec = {.path = SH, .args = PROC_ARGS("-c", "echo \"[$PROC_TEST_A]\"", NULL)};
    struct proc_result r = proc_run(&spec); /* empty */
    assert_string_equal(r.out, "[]\n");
    proc_result_free(&r);
    spec.env = PROC_ARGS("PROC_TEST_A=given", NULL);
    r = proc_run(&spec);
    assert_string_equal(r.out, "[given]\n");
    proc_result_free(&r);
    spec.env_inherit = true; /* the given entry is set over the inherited one */
    r = proc_run(&spec);
    assert_string_equal(r.out, "[given]\n");
    proc_result_free(&r);
    spec.env = NULL;
    r = proc_run(&spec);
    assert_string_equal(r.out, "[parent]\n");
    proc_result_free(&r);
    unsetenv("PROC_TEST_A");
}

static void test_streams_to_files_null_and_joined(void **state)
{
    const char *dir = *state;
    const char *log = proc_path(dir, "log");
    struct proc_spec spec = {.path = SH, .args = PROC_ARGS("-c", "echo a; echo b >&2", NULL)};
    spec.out = (struct proc_stream){PROC_TO_APPEND, log};
    spec.err.to = PROC_TO_STDOUT;
    struct proc_result r = proc_run(&spec);
    assert_null(r.out);
    assert_null(r.err);
    r = proc_run(&spec); /* appended */
    char *text = proc_slurp(log, PROC_TEXT_BYTES_MAX);
    assert_string_equal(text, "a\nb\na\nb\n");
    ehr_free(text);
    spec.out = (struct proc_stream){PROC_TO_FILE, log}; /* truncated */
    spec.err.to = PROC_TO_NULL;
    r = proc_run(&spec);
    text = proc_slurp(log, PROC_TEXT_BYTES_MAX);
    assert_string_equal(text, "a\n");
    ehr_free(text);
    struct stat st;
    assert_int_equal(stat(log, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    spec.out.to = PROC_TO_CAPTURE; /* 2>&1 into the capture */
    spec.err.to = PROC_TO_STDOUT;
    r = proc_run(&spec);
    assert_string_equal(r.out, "a\nb\n");
    assert_null(r.err);
    proc_result_free(&r);
}

static void test_spawn_peek_signal_and_collect(void **state)
{
    struct proc_spec spec = {
        .path = SH, .args = PROC_ARGS("-c", "echo ready; exec sleep 30", NULL), .cwd = *state};
    struct proc_child child;
    proc_spawn(&spec, &child);
    char *out = NULL;
    for (int i = 0; i < 1000; i++) {
        ehr_free(out);
        out = proc_stdout_so_far(&child);
        if (strcmp(out, "ready\n") == 0)
            break;
        usleep(10000);
    }
    assert_string_equal(out, "ready\n");
    ehr_free(out);
    assert_int_equal(proc_wait(child.pid, 0, NULL), PROC_RUNNING);
    assert_int_equal(proc_wait(child.pid, 30, NULL), PROC_RUNNING);
    assert_int_equal(kill(child.pid, SIGTERM), 0);
    struct proc_result r = proc_collect(&child);
    assert_int_equal(child.pid, 0);
    assert_int_equal(r.status, -1);
    assert_int_equal(r.signal, SIGTERM);
    assert_string_equal(r.out, "ready\n");
    proc_result_free(&r);
    /* by pid alone */
    spec.out.to = PROC_TO_NULL;
    spec.err.to = PROC_TO_NULL;
    proc_spawn(&spec, &child);
    int sig = 0;
    assert_int_equal(proc_end(child.pid, SIGKILL), -1);
    proc_spawn(&spec, &child);
    assert_int_equal(kill(child.pid, SIGKILL), 0);
    assert_int_equal(proc_wait(child.pid, PROC_WAIT_FOREVER, &sig), -1);
    assert_int_equal(sig, SIGKILL);
    spec.args = PROC_ARGS("-c", "exit 0", NULL);
    proc_spawn(&spec, &child);
    assert_int_equal(proc_wait(child.pid, 10000, &sig), 0);
    assert_int_equal(sig, 0);
}

static void test_dir_removal_is_recursive_and_follows_no_link(void **state)
{
    (void)state;
    char *outside = proc_dir_make("test-proc-outside");
    proc_text_write(proc_path(outside, "kept"), "kept\n");
    char *inner = proc_dir_make("test-proc-inner");
    assert_int_equal(mkdir(proc_path(inner, "a"), 0700), 0);
    assert_int_equal(mkdir(proc_path(inner, "a/b"), 0700), 0);
    proc_text_write(proc_path(inner, "a/b/f"), "x");
    assert_int_equal(symlink(outside, proc_path(inner, "a/link")), 0);
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", inner);
    proc_dir_remove(inner);
    assert_int_equal(access(copy, F_OK), -1);
    assert_int_equal(access(proc_path(outside, "kept"), F_OK), 0);
    proc_dir_remove(outside);
}

static void test_slurp_bound_at_its_edge(void **state)
{
    const char *path = proc_path(*state, "f");
    proc_text_write(path, "0123456789");
    char *text = proc_slurp(path, 10);
    assert_string_equal(text, "0123456789");
    ehr_free(text);
    assert_null(proc_slurp(path, 9));
    assert_null(proc_slurp(proc_path(*state, "missing"), 10));
}

static void test_capture_bound_at_its_edge(void **state)
{
    char script[128];
    snprintf(script, sizeof script, "head -c %d /dev/zero | tr '\\0' x", PROC_TEXT_BYTES_MAX);
    struct proc_result r = sh(*state, script);
    assert_int_equal(r.status, 0);
    assert_int_equal(strlen(r.out), PROC_TEXT_BYTES_MAX);
    proc_result_free(&r);
}

/*
 * Run F(ARG) in a forked copy of this test with stderr to a file; expect it
 * to abort with WORDS in what it printed.
 */
static void expect_abort(const char *dir, void (*f)(const char *), const char *arg,
                         const char *words)
{
    const char *log = proc_path(dir, "abort.log");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(99);
        f(arg);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    char *said = proc_slurp(log, PROC_TEXT_BYTES_MAX);
    assert_non_null(said);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT || strstr(said, words) == NULL)
        fail_msg("expected an abort with \"%s\"; status %#x, it said: %s", words, status, said);
    ehr_free(said);
}

static void run_program(const char *path)
{
    proc_run(&(struct proc_spec){.path = path});
}

static void run_in(const char *cwd)
{
    proc_run(&(struct proc_spec){.path = SH, .args = PROC_ARGS("-c", "true", NULL), .cwd = cwd});
}

static void run_writing_to(const char *path)
{
    proc_run(&(struct proc_spec){.path = SH, .out = {PROC_TO_FILE, path}});
}

static void run_with_args_over_the_bound(const char *unused)
{
    (void)unused;
    const char *args[PROC_ARGS_MAX + 2];
    for (int i = 0; i <= PROC_ARGS_MAX; i++)
        args[i] = "x";
    args[PROC_ARGS_MAX + 1] = NULL;
    proc_run(&(struct proc_spec){.path = SH, .args = args});
}

static void run_with_an_env_entry_without_equals(const char *entry)
{
    proc_run(&(struct proc_spec){.path = SH, .env = PROC_ARGS(entry, NULL)});
}

static void run_printing_over_the_bound(const char *unused)
{
    (void)unused;
    char script[128];
    snprintf(script, sizeof script, "head -c %d /dev/zero", PROC_TEXT_BYTES_MAX + 1);
    proc_run(&(struct proc_spec){.path = SH, .args = PROC_ARGS("-c", script, NULL)});
}

static void test_set_up_failures_abort_naming_what_failed(void **state)
{
    const char *dir = *state;
    expect_abort(dir, run_program, "/nonexistent/program", "cannot execute /nonexistent/program");
    expect_abort(dir, run_in, "/nonexistent/dir", "cannot chdir to /nonexistent/dir");
    expect_abort(dir, run_writing_to, "/nonexistent/out", "open /nonexistent/out");
    expect_abort(dir, run_with_args_over_the_bound, NULL, "over 64 arguments");
    expect_abort(dir, run_with_an_env_entry_without_equals, "NOEQUALS", "has no '='");
    expect_abort(dir, run_printing_over_the_bound, NULL, "stdout: 1048577 bytes, over the bound");
    /* exactly PROC_ARGS_MAX arguments are fine */
    const char *args[PROC_ARGS_MAX + 1] = {"-c", "exit $(($# + 1))"};
    for (int i = 2; i < PROC_ARGS_MAX; i++)
        args[i] = "x";
    args[PROC_ARGS_MAX] = NULL;
    struct proc_result r = proc_run(&(struct proc_spec){.path = SH, .args = args});
    assert_int_equal(r.status, PROC_ARGS_MAX - 2); /* $0 is the first "x", $# the others */
    proc_result_free(&r);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_run_captures_both_streams_and_the_exit_status),
        T(test_argv0_and_arguments),
        T(test_environment_empty_given_or_inherited),
        T(test_streams_to_files_null_and_joined),
        T(test_spawn_peek_signal_and_collect),
        T(test_dir_removal_is_recursive_and_follows_no_link),
        T(test_slurp_bound_at_its_edge),
        T(test_capture_bound_at_its_edge),
        T(test_set_up_failures_abort_naming_what_failed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
