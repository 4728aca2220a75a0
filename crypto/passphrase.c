/*
 * passphrase.c - a key file's passphrase from where a program finds it
 * without asking anyone: a file, else an environment variable. ehrd and
 * ehrctl both read passphrases through ehr_passphrase_read, so one file
 * means one passphrase to both (ehrctl adds a terminal prompt after these).
 *
 * Not here: prompting (cli/passphrase.c), key files (keyfile.c).
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ehr_crypto.h"

int ehr_passphrase_read(const char *file, const char *env_name, char *buf, size_t *len,
                        ehr_diag *diag)
{
    EHR_ASSERT(buf != NULL);
    EHR_ASSERT(len != NULL);
    *len = 0;
    buf[0] = '\0';
    if (file != NULL) {
        size_t n = 0;
        int rc = ehr_file_read(file, buf, EHR_PASSPHRASE_BUFFER_BYTES - 1, &n);
        if (rc == EHR_ETOOBIG)
            return ehr_diag_fail(diag, rc, "passphrase file %s is longer than %d bytes", file,
                                 EHR_PASSPHRASE_BYTES_MAX);
        if (rc != 0)
            return ehr_diag_fail(diag, rc, "cannot read the passphrase file %s: %s", file,
                                 ehr_strerror(rc));
        /* One line: a final "\n" or "\r\n" ends it and is not part of it. */
        char *nl = memchr(buf, '\n', n);
        if (nl != NULL) {
            if ((size_t)(nl - buf) + 1 != n) {
                sodium_memzero(buf, EHR_PASSPHRASE_BUFFER_BYTES);
                return ehr_diag_fail(diag, EHR_EINVAL, "passphrase file %s has more than one line",
                                     file);
            }
            n = (size_t)(nl - buf);
            if (n > 0 && buf[n - 1] == '\r')
                n--;
        }
        if (n > EHR_PASSPHRASE_BYTES_MAX) {
            sodium_memzero(buf, EHR_PASSPHRASE_BUFFER_BYTES);
            return ehr_diag_fail(diag, EHR_ETOOBIG, "the passphrase in %s is longer than %d bytes",
                                 file, EHR_PASSPHRASE_BYTES_MAX);
        }
        sodium_memzero(buf + n, EHR_PASSPHRASE_BUFFER_BYTES - n);
        *len = n;
        return 0;
    }
    const char *env = env_name != NULL ? getenv(env_name) : NULL;
    if (env == NULL)
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "no passphrase file given and $%s is not set",
                             env_name != NULL ? env_name : "(none)");
    size_t n = strlen(env);
    if (n > EHR_PASSPHRASE_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "$%s is longer than %d bytes", env_name,
                             EHR_PASSPHRASE_BYTES_MAX);
    memcpy(buf, env, n + 1);
    *len = n;
    return 0;
}
