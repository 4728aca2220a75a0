/*
 * datadir.c - the data directory's lock and genesis check (datadir.h).
 *
 * Not here: creating the directory or its ledger.
 */
#include "datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ehr/v1/block.pb-c.h"
#include "ledger.h"

_Static_assert(NODE_DATADIR_PATH_BYTES_MAX + sizeof "/" NODE_DATADIR_LOCK_NAME < PATH_MAX,
               "DIR/LOCK fits PATH_MAX");

/* Digits of a pid in the lock file, and the newline. */
enum { PID_TEXT_BYTES_MAX = 24 };

/* DIR must exist and be a directory: -ENOENT / EHR_EINVAL / -errno with a message. */
static int dir_check(const char *dir, ehr_diag *diag)
{
    if (strlen(dir) == 0 || strlen(dir) > NODE_DATADIR_PATH_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "data directory path must be 1 to %d bytes",
                             NODE_DATADIR_PATH_BYTES_MAX);
    struct stat st;
    if (stat(dir, &st) != 0) {
        int rc = -errno;
        if (rc == -ENOENT)
            return ehr_diag_fail(diag, rc,
                                 "data directory %s does not exist (ehrctl init creates one)", dir);
        return ehr_diag_fail(diag, rc, "data directory %s: %s", dir, ehr_strerror(rc));
    }
    if (!S_ISDIR(st.st_mode))
        return ehr_diag_fail(diag, EHR_EINVAL, "data directory %s is not a directory", dir);
    return 0;
}

/* The pid recorded in the lock file FD, or 0 if it holds none. */
static long holder_pid(int fd)
{
    char text[PID_TEXT_BYTES_MAX + 1];
    ssize_t n = pread(fd, text, PID_TEXT_BYTES_MAX, 0);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    long pid = 0;
    for (ssize_t i = 0; i < n && text[i] != '\n'; i++) {
        if (text[i] < '0' || text[i] > '9' || pid > (long)INT32_MAX)
            return 0;
        pid = pid * 10 + (text[i] - '0');
    }
    return pid;
}

int node_datadir_lock(const char *dir, struct node_datadir_lock *lock, ehr_diag *diag)
{
    EHR_ASSERT(dir != NULL);
    EHR_ASSERT(lock != NULL);
    lock->fd = -1;
    int rc = dir_check(dir, diag);
    if (rc != 0)
        return rc;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, NODE_DATADIR_LOCK_NAME);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        return ehr_diag_fail(diag, rc, "cannot open %s: %s", path, ehr_strerror(rc));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        if (rc == -EWOULDBLOCK) {
            long pid = holder_pid(fd);
            close(fd);
            if (pid > 0)
                return ehr_diag_fail(
                    diag, EHR_EAGAIN,
                    "data directory %s is in use by process %ld (another node runs on it)", dir,
                    pid);
            return ehr_diag_fail(diag, EHR_EAGAIN, "data directory %s is in use by another process",
                                 dir);
        }
        close(fd);
        return ehr_diag_fail(diag, rc, "cannot lock %s: %s", path, ehr_strerror(rc));
    }
    char text[PID_TEXT_BYTES_MAX];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    EHR_ASSERT(len > 0 && len < (int)sizeof text);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len) {
        rc = errno != 0 ? -errno : -EIO;
        close(fd);
        return ehr_diag_fail(diag, rc, "cannot record the pid in %s: %s", path, ehr_strerror(rc));
    }
    lock->fd = fd;
    return 0;
}

void node_datadir_unlock(struct node_datadir_lock *lock)
{
    if (lock == NULL || lock->fd < 0)
        return;
    close(lock->fd); /* drops the flock */
    lock->fd = -1;
}

int node_datadir_check_genesis(const char *dir, const uint8_t *genesis, size_t len, ehr_diag *diag)
{
    EHR_ASSERT(dir != NULL);
    EHR_ASSERT(genesis != NULL || len == 0);
    ehr_diag why;
    Ehr__V1__Genesis *doc = NULL;
    int rc = ledger_genesis_parse(genesis, len, &doc, &why);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "not a valid genesis file: %s", why.msg);
    char file_chain[EHR_CHAIN_ID_BYTES_MAX + 1];
    snprintf(file_chain, sizeof file_chain, "%s", doc->chain_id);
    ehr__v1__genesis__free_unpacked(doc, NULL);
    uint8_t file_hash[EHR_HASH_BYTES];
    ehr_sha256(file_hash, genesis, len);

    if ((rc = dir_check(dir, diag)) != 0)
        return rc;
    ledger_options options = {.read_only = true};
    ledger *l = NULL;
    rc = ledger_open(dir, &options, &l, NULL);
    if (rc == EHR_ENOTFOUND)
        return ehr_diag_fail(diag, rc,
                             "data directory %s holds no ledger (ehrctl init creates one)", dir);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot open the ledger in %s: %s", dir, ehr_strerror(rc));
    ledger_chain chain;
    rc = ledger_chain_get(l, &chain, NULL);
    ledger_close(l);
    if (rc == EHR_ENOTFOUND)
        return ehr_diag_fail(diag, rc, "the ledger in %s has no genesis block", dir);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot read the chain of the ledger in %s: %s", dir,
                             ehr_strerror(rc));
    if (strcmp(chain.chain_id, file_chain) == 0 &&
        memcmp(chain.genesis_hash, file_hash, EHR_HASH_BYTES) == 0)
        return 0;
    char ledger_hex[2 * EHR_HASH_BYTES + 1], file_hex[2 * EHR_HASH_BYTES + 1];
    ehr_hex_encode(ledger_hex, chain.genesis_hash, EHR_HASH_BYTES);
    ehr_hex_encode(file_hex, file_hash, EHR_HASH_BYTES);
    return ehr_diag_fail(
        diag, EHR_ECHAIN,
        "the ledger in %s is chain \"%s\" with genesis hash %s, but the genesis file is "
        "chain \"%s\" with hash %s",
        dir, chain.chain_id, ledger_hex, file_chain, file_hex);
}
