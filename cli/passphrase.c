/*
 * passphrase.c - where ehrctl gets passphrases: a file named on the command
 * line, an environment variable, or the terminal with echo off.
 *
 * Every copy lives in one sodium_malloc'd buffer (locked, guarded, wiped
 * by sodium_free). The environment is the weakest source (another process
 * of the same user can read /proc/PID/environ) and its string cannot be
 * wiped; it exists for unattended scripts. The terminal is used only when
 * stdin is a terminal, so a script never hangs on a prompt.
 *
 * Terminal caveats: echo is switched off with termios while the passphrase
 * is typed, and every signal that could leave it off is caught meanwhile.
 * One that ends the process (INT, QUIT, TERM, HUP, ALRM, PIPE) restores the
 * terminal and is raised again with its default action. One that stops it
 * (TSTP from ^Z, TTIN, TTOU) restores the terminal, stops, and on SIGCONT
 * switches echo off again; the prompt is then shown again and typing starts
 * over, so nothing is echoed after `fg` and no half-typed keys survive.
 * A signal the process was ignoring (nohup) stays ignored.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli_internal.h"

/* The signals that could leave the terminal without echo; see the file comment. */
static const int tty_signals[] = {SIGINT,  SIGQUIT, SIGTERM, SIGHUP, SIGALRM,
                                  SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU};

/* Shared with the signal handler: set before it is installed, read-only while it is. */
static int tty_fd = -1;
static struct termios tty_saved; /* the settings to give back */
static struct termios tty_quiet; /* echo off */
static volatile sig_atomic_t tty_echo_off;
static volatile sig_atomic_t tty_restarted; /* a stop and continue happened: start over */

static bool tty_stop_signal(int sig)
{
    return sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

/* Only async-signal-safe calls here (tcsetattr, sigaction, sigprocmask, raise). */
static void tty_on_signal(int sig)
{
    int saved_errno = errno;
    if (tty_echo_off)
        tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
    struct sigaction dfl = {.sa_handler = SIG_DFL}, mine;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, &mine);
    sigset_t just_sig;
    sigemptyset(&just_sig);
    sigaddset(&just_sig, sig);
    sigprocmask(SIG_UNBLOCK, &just_sig, NULL);
    raise(sig); /* dies here, or stops until SIGCONT */
    /* Only a stop signal returns (or one whose default action was refused,
     * as stops are in an orphaned process group): take the terminal again. */
    sigprocmask(SIG_BLOCK, &just_sig, NULL);
    sigaction(sig, &mine, NULL);
    if (tty_echo_off) {
        tcsetattr(tty_fd, TCSAFLUSH, &tty_quiet);
        if (tty_stop_signal(sig))
            tty_restarted = 1;
    }
    errno = saved_errno;
}

/* Catch tty_signals (those not ignored), saving the old actions in OLD. */
static void tty_signals_catch(struct sigaction old[EHR_ARRAY_COUNT(tty_signals)])
{
    struct sigaction sa = {.sa_handler = tty_on_signal};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < EHR_ARRAY_COUNT(tty_signals); i++)
        sigaddset(&sa.sa_mask, tty_signals[i]); /* one handler at a time */
    for (size_t i = 0; i < EHR_ARRAY_COUNT(tty_signals); i++) {
        sigaction(tty_signals[i], NULL, &old[i]);
        if (old[i].sa_handler != SIG_IGN)
            sigaction(tty_signals[i], &sa, NULL);
    }
}

static void tty_signals_release(const struct sigaction old[EHR_ARRAY_COUNT(tty_signals)])
{
    for (size_t i = 0; i < EHR_ARRAY_COUNT(tty_signals); i++)
        sigaction(tty_signals[i], &old[i], NULL);
}

/* tcsetattr, again if a signal interrupted it. Returns 0 or -errno. */
static int tty_set(int fd, const struct termios *tio)
{
    while (tcsetattr(fd, TCSAFLUSH, tio) != 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/*
 * Show PROMPT on the terminal FD and read one line with echo off into BUF
 * (room for EHR_PASSPHRASE_BYTES_MAX bytes, a line ending and a NUL).
 * Returns 0 with *LEN set; EHR_ETOOBIG for a longer line (read to its end);
 * EHR_ETRUNCATED at end of input; -errno. The terminal's settings and the
 * signal actions are as before on every return.
 */
static int tty_read_line(int fd, const char *prompt, char *buf, size_t *len)
{
    if (write(fd, prompt, strlen(prompt)) < 0)
        return -errno;
    if (tcgetattr(fd, &tty_saved) != 0)
        return -errno;
    tty_quiet = tty_saved;
    tty_quiet.c_lflag &= ~(tcflag_t)ECHO;
    tty_quiet.c_lflag |= ECHONL;
    tty_fd = fd;
    tty_restarted = 0;
    struct sigaction old[EHR_ARRAY_COUNT(tty_signals)];
    tty_signals_catch(old);
    tty_echo_off = 1;
    int rc = tty_set(fd, &tty_quiet);
    size_t n = 0;
    while (rc == 0 || rc == EHR_ETOOBIG) {
        if (tty_restarted) { /* stopped and continued: what came before is void */
            tty_restarted = 0;
            n = 0;
            rc = write(fd, prompt, strlen(prompt)) < 0 ? -errno : 0;
            continue;
        }
        char c;
        ssize_t got = read(fd, &c, 1);
        if (tty_restarted || (got < 0 && errno == EINTR))
            continue; /* a byte read just before a stop belongs to the void part */
        if (got <= 0) {
            rc = got < 0 ? -errno : EHR_ETRUNCATED;
            break;
        }
        if (c == '\n')
            break;
        if (n == EHR_PASSPHRASE_BYTES_MAX) {
            rc = EHR_ETOOBIG; /* keep reading to the end of the line, store nothing more */
            continue;
        }
        buf[n++] = c;
    }
    tty_set(fd, &tty_saved);
    tty_echo_off = 0;
    tty_signals_release(old);
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return rc;
}

static int from_terminal(struct cli__passphrase *p, const struct cli__passphrase_source *source,
                         ehr_diag *diag)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "cannot open the terminal to ask for it");
    int rc = tty_read_line(fd, source->prompt, p->bytes, &p->len);
    if (rc == 0 && source->confirm) {
        char *again = sodium_malloc(EHR_PASSPHRASE_BUFFER_BYTES);
        size_t again_len = 0;
        if (again == NULL)
            rc = -ENOMEM;
        else
            rc = tty_read_line(fd, "repeat it: ", again, &again_len);
        if (rc == 0 && (again_len != p->len || sodium_memcmp(again, p->bytes, p->len) != 0))
            rc = EHR_EINVAL;
        if (again != NULL)
            sodium_free(again);
        if (rc == EHR_EINVAL) {
            close(fd);
            return ehr_diag_fail(diag, rc, "the two passphrases differ");
        }
    }
    close(fd);
    if (rc == EHR_ETOOBIG)
        return ehr_diag_fail(diag, rc, "passphrase is longer than 1024 bytes");
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s", ehr_strerror(rc));
    return 0;
}

int cli__passphrase_get(struct cli__passphrase *p, const struct cli__passphrase_source *source,
                        ehr_diag *diag)
{
    EHR_ASSERT(p != NULL && source != NULL);
    EHR_ASSERT(source->flag_name != NULL && source->env_name != NULL);
    p->len = 0;
    p->bytes = sodium_malloc(EHR_PASSPHRASE_BUFFER_BYTES);
    if (p->bytes == NULL)
        return ehr_diag_fail(diag, -ENOMEM, "cannot allocate locked memory");
    /* A file, else the environment: as ehrd reads them (ehr_passphrase_read). */
    int rc = ehr_passphrase_read(source->file, source->env_name, p->bytes, &p->len, diag);
    if (rc == EHR_ENOTFOUND && isatty(STDIN_FILENO)) {
        rc = from_terminal(p, source, diag);
    } else if (rc == EHR_ENOTFOUND) {
        rc = ehr_diag_fail(diag, rc, "no passphrase: give %s, set $%s, or run on a terminal",
                           source->flag_name, source->env_name);
    }
    if (rc != 0)
        cli__passphrase_free(p);
    return rc;
}

void cli__passphrase_free(struct cli__passphrase *p)
{
    if (p->bytes != NULL)
        sodium_free(p->bytes);
    p->bytes = NULL;
    p->len = 0;
}
