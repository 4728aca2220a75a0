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
 * Terminal caveat: echo is switched off with termios; if a signal ends us
 * while it is off, the handler restores the terminal before dying.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli_internal.h"

/* Room for the passphrase, a line ending (\r\n) and a NUL. */
enum { PASSPHRASE_BUFFER_BYTES = EHR_PASSPHRASE_BYTES_MAX + 3 };

static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;

static void tty_restore_on_signal(int sig)
{
    if (tty_echo_off)
        tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int fail_why(int rc, char *why, size_t why_size, const char *text)
{
    snprintf(why, why_size, "%s", text);
    return rc;
}

/* Cut BUF (LEN bytes) at its first line ending; anything after it is an error. */
static int first_line(char *buf, size_t *len)
{
    char *nl = memchr(buf, '\n', *len);
    if (nl != NULL) {
        if ((size_t)(nl - buf) + 1 != *len)
            return EHR_EINVAL;
        *len = (size_t)(nl - buf);
        if (*len > 0 && buf[*len - 1] == '\r')
            (*len)--;
    }
    if (*len > EHR_PASSPHRASE_BYTES_MAX)
        return EHR_ETOOBIG;
    buf[*len] = '\0';
    return 0;
}

static int from_file(struct cli__passphrase *p, const char *path, char *why, size_t why_size)
{
    size_t len = 0;
    int rc = ehr_file_read(path, p->bytes, PASSPHRASE_BUFFER_BYTES - 1, &len);
    if (rc == EHR_ETOOBIG)
        return fail_why(rc, why, why_size, "passphrase file is longer than 1024 bytes");
    if (rc != 0)
        return fail_why(rc, why, why_size, ehr_strerror(rc));
    rc = first_line(p->bytes, &len);
    if (rc == EHR_ETOOBIG)
        return fail_why(rc, why, why_size, "passphrase is longer than 1024 bytes");
    if (rc != 0)
        return fail_why(rc, why, why_size, "passphrase file has more than one line");
    p->len = len;
    return 0;
}

/* Read one line from the terminal with echo off into BUF. Returns its length or an error. */
static int tty_read_line(int fd, const char *prompt, char *buf, size_t *len)
{
    if (write(fd, prompt, strlen(prompt)) < 0)
        return -errno;
    struct termios quiet;
    if (tcgetattr(fd, &tty_saved) != 0)
        return -errno;
    quiet = tty_saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    tty_fd = fd;
    struct sigaction sa = {.sa_handler = tty_restore_on_signal}, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    tty_echo_off = 1;
    int rc = tcsetattr(fd, TCSAFLUSH, &quiet) == 0 ? 0 : -errno;
    size_t n = 0;
    while (rc == 0) {
        char c;
        ssize_t got = read(fd, &c, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            rc = got < 0 ? -errno : EHR_ETRUNCATED;
            break;
        }
        if (c == '\n')
            break;
        if (n == EHR_PASSPHRASE_BYTES_MAX) {
            rc = EHR_ETOOBIG;
            continue; /* keep reading to the end of the line, store nothing more */
        }
        buf[n++] = c;
    }
    tcsetattr(fd, TCSAFLUSH, &tty_saved);
    tty_echo_off = 0;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return rc;
}

static int from_terminal(struct cli__passphrase *p, const struct cli__passphrase_source *source,
                         char *why, size_t why_size)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return fail_why(EHR_ENOTFOUND, why, why_size, "cannot open the terminal to ask for it");
    int rc = tty_read_line(fd, source->prompt, p->bytes, &p->len);
    if (rc == 0 && source->confirm) {
        char *again = sodium_malloc(PASSPHRASE_BUFFER_BYTES);
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
            return fail_why(rc, why, why_size, "the two passphrases differ");
        }
    }
    close(fd);
    if (rc == EHR_ETOOBIG)
        return fail_why(rc, why, why_size, "passphrase is longer than 1024 bytes");
    if (rc != 0)
        return fail_why(rc, why, why_size, ehr_strerror(rc));
    return 0;
}

int cli__passphrase_get(struct cli__passphrase *p, const struct cli__passphrase_source *source,
                        char *why, size_t why_size)
{
    EHR_ASSERT(p != NULL && source != NULL);
    EHR_ASSERT(why != NULL && why_size > 0);
    EHR_ASSERT(source->flag_name != NULL && source->env_name != NULL);
    p->len = 0;
    p->bytes = sodium_malloc(PASSPHRASE_BUFFER_BYTES);
    if (p->bytes == NULL)
        return fail_why(-ENOMEM, why, why_size, "cannot allocate locked memory");
    int rc;
    const char *env = getenv(source->env_name);
    if (source->file != NULL) {
        rc = from_file(p, source->file, why, why_size);
    } else if (env != NULL) {
        size_t len = strlen(env);
        if (len > EHR_PASSPHRASE_BYTES_MAX) {
            rc = EHR_ETOOBIG;
            snprintf(why, why_size, "$%s is longer than 1024 bytes", source->env_name);
        } else {
            memcpy(p->bytes, env, len + 1);
            p->len = len;
            rc = 0;
        }
    } else if (isatty(STDIN_FILENO)) {
        rc = from_terminal(p, source, why, why_size);
    } else {
        rc = EHR_ENOTFOUND;
        snprintf(why, why_size, "no passphrase: give %s, set $%s, or run on a terminal",
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
