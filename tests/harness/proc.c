/*
 * proc.c - the subprocess harness of the multi-process tests (see proc.h).
 *
 * The parent does everything that may allocate or fail in an interesting
 * way (the environment array, every file the child's streams go to) before
 * fork; the child only dup2s, chdirs and execs, which are async-signal-safe,
 * so a test may fork while other threads of its own (a fake server) run.
 * The child reports a failure before or at exec through a close-on-exec
 * pipe, so the parent can name it instead of guessing from an exit status.
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

enum { WAIT_POLL_MS = 10 };

static _Noreturn void proc__die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void proc__die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("proc: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr); /* in case a test made it buffered */
    abort();
}

/* ---- temporary directories and files ---- */

char *proc_dir_make(const char *name)
{
    const char *base = getenv("TMPDIR");
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/ehr-%s-XXXXXX", base != NULL ? base : "/tmp", name);
    if (n < 0 || (size_t)n >= sizeof path)
        proc__die("temporary directory name for %s: too long", name);
    if (mkdtemp(path) == NULL)
        proc__die("mkdtemp %s: %s", path, strerror(errno));
    return ehr_strdup(path);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        proc__die("remove %s: %s", path, strerror(errno));
    return 0;
}

void proc_dir_remove(char *dir)
{
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        proc__die("remove the directory %s: %s", dir, strerror(errno));
    ehr_free(dir);
}

const char *proc_path(const char *dir, const char *name)
{
    static char paths[PROC_PATH_SLOTS][PATH_MAX];
    static unsigned next;
    char *p = paths[next++ % PROC_PATH_SLOTS];
    int n = snprintf(p, PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_MAX)
        proc__die("path %s/%s: too long", dir, name);
    return p;
}

char *proc_slurp(const char *path, size_t bytes_max)
{
    uint8_t *data = NULL;
    size_t len = 0;
    if (ehr_file_read_alloc(path, bytes_max, &data, &len) != 0)
        return NULL;
    char *text = ehr_malloc(len + 1);
    memcpy(text, data, len);
    text[len] = '\0';
    ehr_free(data);
    return text;
}

void proc_text_write(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        proc__die("write %s: %s", path, strerror(errno));
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            proc__die("write %s: %s", path, strerror(errno));
        done += (size_t)n;
    }
    if (close(fd) != 0)
        proc__die("write %s: %s", path, strerror(errno));
}

/* ---- running programs ---- */

/* Open PATH with FLAGS (always close-on-exec) or die naming WHAT it is for. */
static int open_or_die(const char *path, int flags, const char *what)
{
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd < 0)
        proc__die("open %s (%s): %s", path, what, strerror(errno));
    /* A stream of ours closed would let the child's dup2(fd, fd) keep CLOEXEC. */
    if (fd <= STDERR_FILENO)
        proc__die("open %s: got fd %d: the test's stdin, stdout or stderr is closed", path, fd);
    return fd;
}

/* A new capture file: made in $TMPDIR (else /tmp) and unlinked at once. */
static int capture_open(void)
{
    const char *base = getenv("TMPDIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/ehr-proc-XXXXXX", base != NULL ? base : "/tmp");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        proc__die("capture file %s: %s", path, strerror(errno));
    if (fd <= STDERR_FILENO)
        proc__die("capture file: got fd %d: the test's stdin, stdout or stderr is closed", fd);
    unlink(path);
    return fd;
}

/* The fd the child gets for S (-1: inherit), and the capture fd in *CAPTURE (or -1). */
static int stream_open(const struct proc_stream *s, int *capture)
{
    *capture = -1;
    switch (s->to) {
    case PROC_TO_CAPTURE:
        *capture = capture_open();
        return *capture;
    case PROC_TO_INHERIT:
        return -1;
    case PROC_TO_NULL:
        return open_or_die("/dev/null", O_WRONLY, "output to nowhere");
    case PROC_TO_FILE:
        return open_or_die(s->path, O_WRONLY | O_CREAT | O_TRUNC, "output");
    case PROC_TO_APPEND:
        return open_or_die(s->path, O_WRONLY | O_CREAT | O_APPEND, "output, appended");
    case PROC_TO_STDOUT:
        break;
    }
    proc__die("a stream directed to stdout that is not stderr (or an unknown one: %d)", (int)s->to);
}

/* The length of NAME=VALUE's name, with the '='. */
static size_t env_name_len(const char *entry)
{
    const char *eq = strchr(entry, '=');
    if (eq == NULL)
        proc__die("environment entry \"%s\" has no '='", entry);
    return (size_t)(eq - entry) + 1;
}

static bool env_has_name(const char *const *env, const char *entry)
{
    size_t len = env_name_len(entry);
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
        if (strncmp(env[i], entry, len) == 0)
            return true;
    return false;
}

/* SPEC's environment as a NULL-terminated array (ehr_malloc'd; its strings are borrowed). */
static const char **env_build(const struct proc_spec *spec)
{
    const char **env = ehr_calloc(PROC_ENV_MAX + 1, sizeof *env);
    size_t count = 0;
    for (size_t i = 0; spec->env_inherit && environ[i] != NULL; i++) {
        if (env_has_name(spec->env, environ[i]))
            continue; /* set over by SPEC */
        if (count == PROC_ENV_MAX)
            proc__die("over %d environment entries", PROC_ENV_MAX);
        env[count++] = environ[i];
    }
    for (size_t i = 0; spec->env != NULL && spec->env[i] != NULL; i++) {
        (void)env_name_len(spec->env[i]);
        if (count == PROC_ENV_MAX)
            proc__die("over %d environment entries", PROC_ENV_MAX);
        env[count++] = spec->env[i];
    }
    return env;
}

/* What the child reports through the pipe when it cannot exec. */
struct exec_failure {
    int step; /* STEP_* */
    int err;  /* errno */
};
enum { STEP_DUP2 = 1, STEP_CHDIR, STEP_EXEC };

static _Noreturn void child_fail(int report, int step)
{
    struct exec_failure f = {step, errno};
    ssize_t n = write(report, &f, sizeof f);
    (void)n;
    _exit(126);
}

/* In the child: only async-signal-safe calls from here to exec. */
static _Noreturn void child_exec(const struct proc_spec *spec, const char *const *argv,
                                 const char *const *env, const int fds[3], bool err_to_out,
                                 int report)
{
    for (int target = 0; target < 3; target++)
        if (fds[target] >= 0 && dup2(fds[target], target) < 0)
            child_fail(report, STEP_DUP2);
    if (err_to_out && dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
        child_fail(report, STEP_DUP2);
    if (spec->cwd != NULL && chdir(spec->cwd) != 0)
        child_fail(report, STEP_CHDIR);
    execve(spec->path, (char *const *)argv, (char *const *)env);
    child_fail(report, STEP_EXEC);
}

void proc_spawn(const struct proc_spec *spec, struct proc_child *child)
{
    if (spec->out.to == PROC_TO_STDOUT)
        proc__die("stdout of %s directed to stdout", spec->path);
    const char *argv[PROC_ARGS_MAX + 2] = {spec->argv0 != NULL ? spec->argv0 : spec->path};
    size_t argc = 1;
    for (; spec->args != NULL && spec->args[argc - 1] != NULL; argc++) {
        if (argc > PROC_ARGS_MAX)
            proc__die("%s: over %d arguments", spec->path, PROC_ARGS_MAX);
        argv[argc] = spec->args[argc - 1];
    }
    argv[argc] = NULL;
    const char **env = env_build(spec);

    bool err_to_out = spec->err.to == PROC_TO_STDOUT;
    int fds[3];
    fds[STDIN_FILENO] = open_or_die("/dev/null", O_RDONLY, "stdin");
    fds[STDOUT_FILENO] = stream_open(&spec->out, &child->out_fd);
    if (err_to_out) {
        fds[STDERR_FILENO] = -1;
        child->err_fd = -1;
    } else {
        fds[STDERR_FILENO] = stream_open(&spec->err, &child->err_fd);
    }
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0)
        proc__die("pipe: %s", strerror(errno));

    pid_t pid = fork();
    if (pid < 0)
        proc__die("fork for %s: %s", spec->path, strerror(errno));
    if (pid == 0) {
        close(report[0]);
        child_exec(spec, argv, env, fds, err_to_out, report[1]);
    }
    close(report[1]);
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0 && fds[i] != child->out_fd && fds[i] != child->err_fd)
            close(fds[i]);
    ehr_free(env);

    struct exec_failure failure;
    ssize_t n;
    do
        n = read(report[0], &failure, sizeof failure);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n != 0) { /* the child wrote before exec (or the read failed) */
        waitpid(pid, NULL, 0);
        static const char *const steps[] = {"?", "redirect the streams of", "chdir to", "execute"};
        if (n != (ssize_t)sizeof failure || failure.step < STEP_DUP2 || failure.step > STEP_EXEC)
            proc__die("start %s: no word from the child (read %zd)", spec->path, n);
        proc__die("cannot %s %s: %s", steps[failure.step],
                  failure.step == STEP_CHDIR ? spec->cwd : spec->path, strerror(failure.err));
    }
    child->pid = pid;
}

int proc_wait(pid_t pid, uint64_t timeout_ms, int *signal_out)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t start_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, timeout_ms == PROC_WAIT_FOREVER ? 0 : WNOHANG);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            proc__die("wait for pid %d: %s", (int)pid, strerror(errno));
        if (r == pid) {
            if (signal_out != NULL)
                *signal_out = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
        if (now_ms - start_ms >= timeout_ms)
            return PROC_RUNNING;
        struct timespec pause = {0, WAIT_POLL_MS * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

int proc_end(pid_t pid, int sig)
{
    if (kill(pid, sig) != 0)
        proc__die("kill pid %d with signal %d: %s", (int)pid, sig, strerror(errno));
    return proc_wait(pid, PROC_WAIT_FOREVER, NULL);
}

/* Everything in the capture file FD so far, as text. */
static char *capture_read(int fd, const char *which)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        proc__die("capture file of %s: %s", which, strerror(errno));
    if (st.st_size > PROC_TEXT_BYTES_MAX)
        proc__die("%s: %lld bytes, over the bound of %d", which, (long long)st.st_size,
                  PROC_TEXT_BYTES_MAX);
    size_t len = (size_t)st.st_size;
    char *text = ehr_malloc(len + 1);
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, text + got, len - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            proc__die("read the capture file of %s: %s", which, n < 0 ? strerror(errno) : "short");
        got += (size_t)n;
    }
    text[len] = '\0';
    return text;
}

char *proc_stdout_so_far(const struct proc_child *child)
{
    if (child->out_fd < 0)
        proc__die("stdout of pid %d is not captured", (int)child->pid);
    return capture_read(child->out_fd, "stdout");
}

struct proc_result proc_collect(struct proc_child *child)
{
    if (child->pid <= 0)
        proc__die("collect a child that is not running (pid %d)", (int)child->pid);
    struct proc_result r = {0};
    r.status = proc_wait(child->pid, PROC_WAIT_FOREVER, &r.signal);
    child->pid = 0;
    if (child->out_fd >= 0) {
        r.out = capture_read(child->out_fd, "stdout");
        close(child->out_fd);
        child->out_fd = -1;
    }
    if (child->err_fd >= 0) {
        r.err = capture_read(child->err_fd, "stderr");
        close(child->err_fd);
        child->err_fd = -1;
    }
    return r;
}

struct proc_result proc_run(const struct proc_spec *spec)
{
    struct proc_child child;
    proc_spawn(spec, &child);
    return proc_collect(&child);
}

void proc_result_free(struct proc_result *r)
{
    ehr_free(r->out);
    ehr_free(r->err);
    r->out = NULL;
    r->err = NULL;
}
