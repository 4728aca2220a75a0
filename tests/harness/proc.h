/*
 * proc.h - the subprocess harness of the multi-process tests (tests/cli/,
 * tests/node/): temporary directories, running a program with a given
 * argv, environment and working directory while capturing what it prints,
 * starting one that runs alongside the test and collecting it later, and
 * reading and writing the small text files the tests hand to it.
 *
 * A test does, for a program it waits for:
 *
 *   1. dir = proc_dir_make("test-x"), in its fixture's set-up;
 *   2. r = proc_run(&(struct proc_spec){.path = ..., .args = ..., .cwd = dir}):
 *      stdin is /dev/null, stdout and stderr are captured (the zero value
 *      of proc_stream), r.status is the exit status or -1 after a signal;
 *   3. its checks on r.status, r.out and r.err, then proc_result_free(&r);
 *   4. proc_dir_remove(dir), in its teardown.
 * For a program that runs while the test does something else (a node, a
 * follower of a stream it will interrupt): proc_spawn, then whatever the
 * test does (proc_stdout_so_far, kill(child.pid, ...)), then proc_collect;
 * or, when only the pid is kept, proc_wait / proc_end.
 *
 * Ownership: the caller owns every struct here and the strings a result
 * holds (proc_result_free); proc_dir_make's path until proc_dir_remove (or
 * ehr_free, to keep the directory); proc_slurp's text (ehr_free). The
 * harness keeps no list of children: a child spawned and never collected
 * is the caller's to kill and reap.
 *
 * Captured output goes to files (not pipes, so a child that prints much
 * never blocks on a test that is not reading yet), made in $TMPDIR (else
 * /tmp) and unlinked at once: they leave nothing in any directory, and two
 * children may capture at the same time. Each stream is bounded by
 * PROC_TEXT_BYTES_MAX.
 *
 * Test code only: a set-up failure (mkdtemp, fork, a file that cannot be
 * opened, a program that cannot be executed, a directory that cannot be
 * removed, output over its bound) prints `proc: <what>: <why>` and aborts;
 * what the program itself does (its exit status, its output) is returned
 * for the test to judge. Not here: terminals (test_cli.c keeps its pty
 * runner), process groups, timeouts on proc_run (a test that hangs is
 * ended by CTest's TIMEOUT), threads (call it from one thread; other
 * threads may run, the child does only async-signal-safe work before
 * exec).
 */
#ifndef EHR_TEST_PROC_H
#define EHR_TEST_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
    PROC_ARGS_MAX = 64,            /* arguments after argv[0] */
    PROC_ENV_MAX = 1024,           /* entries in a child's environment */
    PROC_TEXT_BYTES_MAX = 1 << 20, /* a captured stream; the bound tests give proc_slurp */
    PROC_PATH_SLOTS = 8,           /* proc_path's buffers in rotation */
    PROC_RUNNING = -2,             /* proc_wait: still running at the deadline */
};
#define PROC_WAIT_FOREVER UINT64_MAX

/* A NULL-terminated argument list from its elements: PROC_ARGS("keygen", "--out", f, NULL). */
#define PROC_ARGS(...) ((const char *const[]){__VA_ARGS__})

/* Where a child's stdout or stderr goes. */
enum proc_to {
    PROC_TO_CAPTURE = 0, /* a harness file, read back into the result */
    PROC_TO_INHERIT,     /* this process's own stream */
    PROC_TO_NULL,        /* /dev/null */
    PROC_TO_FILE,        /* PATH, created 0600 or truncated */
    PROC_TO_APPEND,      /* PATH, created 0600 or appended to */
    PROC_TO_STDOUT,      /* stderr only: wherever stdout goes (2>&1) */
};

struct proc_stream {
    enum proc_to to;
    const char *path; /* PROC_TO_FILE and PROC_TO_APPEND only */
};

/* How to run one program: an operation's parameters, read only by proc_spawn. */
struct proc_spec {
    const char *path;            /* the program, executed as is (no $PATH search) */
    const char *argv0;           /* its argv[0]; NULL: PATH */
    const char *const *args;     /* the arguments after argv[0], NULL-terminated; NULL: none */
    const char *const *env;      /* "NAME=VALUE" entries, NULL-terminated; NULL: none */
    bool env_inherit;            /* false: ENV is the whole environment (NULL: an empty one);
                                    true: this process's environment with ENV's entries set over it */
    const char *cwd;             /* the child's working directory; NULL: this process's */
    struct proc_stream out, err; /* zero: both captured */
};

/* A child started by proc_spawn and not yet collected. */
struct proc_child {
    pid_t pid;  /* 0 once collected */
    int out_fd; /* the capture file of stdout, or -1 */
    int err_fd; /* the capture file of stderr, or -1 */
};

/* How a child ended, and what it printed. */
struct proc_result {
    int status; /* exit status (0-255), or -1 if a signal ended it */
    int signal; /* the signal that ended it, or 0 */
    char *out;  /* captured stdout, NUL-terminated (ehr_malloc'd); NULL if not captured */
    char *err;  /* captured stderr, the same way; NULL with PROC_TO_STDOUT too */
};

/* ---- temporary directories and files ---- */

/*
 * A new empty directory $TMPDIR/ehr-NAME-XXXXXX (/tmp when $TMPDIR is unset),
 * mode 0700. Returns its path, ehr_malloc'd: pass it to proc_dir_remove, or
 * ehr_free it to keep the directory. Aborts on failure.
 */
char *proc_dir_make(const char *name);

/*
 * Remove DIR and everything below it (symbolic links are removed, never
 * followed), then ehr_free DIR. A DIR that no longer exists is fine; aborts
 * if anything cannot be removed.
 */
void proc_dir_remove(char *dir);

/*
 * "DIR/NAME" in one of PROC_PATH_SLOTS static buffers, valid until that
 * many more calls: enough for the paths of one expression. One thread only.
 * Aborts if the path is longer than PATH_MAX.
 */
const char *proc_path(const char *dir, const char *name);

/*
 * The file PATH as NUL-terminated text (ehr_malloc'd; the caller ehr_frees
 * it). Returns NULL if it cannot be read (missing, not a regular file) or
 * is longer than BYTES_MAX: the test decides whether that is a failure.
 */
char *proc_slurp(const char *path, size_t bytes_max);

/*
 * Write TEXT to PATH, created with mode 0600 or truncated. Not atomic and not
 * fsynced: test input, read back by a program the test starts afterwards.
 * Aborts on failure.
 */
void proc_text_write(const char *path, const char *text);

/* ---- running programs ---- */

/*
 * Start SPEC's program with stdin from /dev/null. Returns once it runs (its
 * exec succeeded), with CHILD filled: then collect it with proc_collect, or
 * wait for CHILD->pid with proc_wait / proc_end (which close nothing: use
 * them only for a child that captures nothing). Aborts if it cannot start:
 * a capture or output file that cannot be opened, fork failing, or, in the
 * child, a working directory or program that cannot be used (named in the
 * message).
 */
void proc_spawn(const struct proc_spec *spec, struct proc_child *child);

/*
 * Wait for CHILD to end and read what it captured. Returns how it ended
 * (free the result with proc_result_free); CHILD's pid becomes 0 and its
 * capture files are closed. Aborts if a stream is over its bound.
 */
struct proc_result proc_collect(struct proc_child *child);

/* proc_spawn then proc_collect: run SPEC's program to its end. */
struct proc_result proc_run(const struct proc_spec *spec);

/*
 * What CHILD, still running or not, has written to its captured stdout so
 * far (NUL-terminated, ehr_malloc'd). Aborts if stdout is not captured.
 */
char *proc_stdout_so_far(const struct proc_child *child);

/* Free R's captured text (safe on a zeroed or already freed result). */
void proc_result_free(struct proc_result *r);

/*
 * Wait up to TIMEOUT_MS (PROC_WAIT_FOREVER: no limit) for the child PID to
 * end, and reap it. Returns its exit status (0-255); -1 if a signal ended
 * it, with the signal in *SIGNAL_OUT (when not NULL); or PROC_RUNNING if it
 * still runs at the deadline (it is left as it was). Aborts if PID is not an
 * unreaped child of this process.
 */
int proc_wait(pid_t pid, uint64_t timeout_ms, int *signal_out);

/* Send SIG to the child PID and wait for it to end: proc_wait's return values. */
int proc_end(pid_t pid, int sig);

#endif /* EHR_TEST_PROC_H */
