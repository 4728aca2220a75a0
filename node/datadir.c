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

/* ---- the join file ---- */

_Static_assert(NODE_DATADIR_PATH_BYTES_MAX + sizeof "/" NODE_DATADIR_JOIN_NAME < PATH_MAX,
               "DIR/join.pb fits PATH_MAX");

/* What is wrong with JOIN, or NULL. */
static const char *join_problem(const Ehr__V1__JoinInfo *join)
{
    /* Written by this build only (node_datadir_join_write): a field it does
     * not know is a corrupt file, not something to carry along (protobuf-c
     * keeps unknown fields, even one numbered 0 in a long varint, and
     * writes them back in a form it then refuses). */
    if (join->base.n_unknown_fields != 0)
        return "it holds a field this version does not write";
    size_t chain_len = strlen(join->chain_id);
    if (chain_len == 0 || chain_len > EHR_CHAIN_ID_BYTES_MAX)
        return "no chain id, or one over 64 bytes";
    if (join->block_hash.len != EHR_HASH_BYTES)
        return "the block hash is not 32 bytes";
    if (join->n_members == 0 || join->n_members > NODE_DATADIR_JOIN_MEMBERS_MAX)
        return "not 1 to 16 members";
    for (size_t i = 0; i < join->n_members; i++) {
        const Ehr__V1__Member *m = join->members[i];
        if (m->base.n_unknown_fields != 0)
            return "a member holds a field this version does not write";
        if (m->node_key.len != EHR_SCHNORR_PUBLIC_BYTES)
            return "a member's node key is not 32 bytes";
        if (strlen(m->peer_address) > EHR_PEER_ADDRESS_BYTES_MAX)
            return "a member's peer address is over 256 bytes";
        if (strlen(m->name) > EHR_MEMBER_NAME_BYTES_MAX)
            return "a member's name is over 128 bytes";
        for (size_t j = 0; j < i; j++)
            if (memcmp(join->members[j]->node_key.data, m->node_key.data,
                       EHR_SCHNORR_PUBLIC_BYTES) == 0)
                return "a member is listed twice";
    }
    return NULL;
}

static void join_path(char *out, size_t size, const char *dir)
{
    int n = snprintf(out, size, "%s/%s", dir, NODE_DATADIR_JOIN_NAME);
    EHR_ASSERT(n > 0 && (size_t)n < size);
}

int node_datadir_join_write(const char *dir, const Ehr__V1__JoinInfo *join, ehr_diag *diag)
{
    EHR_ASSERT(dir != NULL && join != NULL);
    if (strlen(dir) == 0 || strlen(dir) > NODE_DATADIR_PATH_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "data directory path must be 1 to %d bytes",
                             NODE_DATADIR_PATH_BYTES_MAX);
    const char *bad = join_problem(join);
    if (bad != NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "not a valid join file: %s", bad);
    size_t len = ehr__v1__join_info__get_packed_size(join);
    if (len > NODE_DATADIR_JOIN_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "the join file would be over %d bytes",
                             NODE_DATADIR_JOIN_BYTES_MAX);
    uint8_t *buf = ehr_malloc(len ? len : 1);
    ehr__v1__join_info__pack(join, buf);
    char path[PATH_MAX];
    join_path(path, sizeof path, dir);
    int rc = ehr_file_write_atomic(path, buf, len, 0600, true);
    ehr_free(buf);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot write %s: %s", path, ehr_strerror(rc));
    return 0;
}

int node_datadir_join_read(const char *dir, Ehr__V1__JoinInfo **out, ehr_diag *diag)
{
    EHR_ASSERT(dir != NULL && out != NULL);
    *out = NULL;
    if (strlen(dir) == 0 || strlen(dir) > NODE_DATADIR_PATH_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "data directory path must be 1 to %d bytes",
                             NODE_DATADIR_PATH_BYTES_MAX);
    char path[PATH_MAX];
    join_path(path, sizeof path, dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = ehr_file_read_alloc(path, NODE_DATADIR_JOIN_BYTES_MAX, &buf, &len);
    if (rc == -ENOENT)
        return rc;
    if (rc == EHR_ETOOBIG)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "%s is over %d bytes", path,
                             NODE_DATADIR_JOIN_BYTES_MAX);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot read %s: %s", path, ehr_strerror(rc));
    ehr_diag why;
    rc = node_datadir_join_decode(buf, len, out, &why);
    ehr_free(buf);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s: %s", path, why.msg);
    return 0;
}

int node_datadir_join_decode(const uint8_t *bytes, size_t len, Ehr__V1__JoinInfo **out,
                             ehr_diag *diag)
{
    EHR_ASSERT(out != NULL);
    *out = NULL;
    if (len > NODE_DATADIR_JOIN_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "over %d bytes", NODE_DATADIR_JOIN_BYTES_MAX);
    Ehr__V1__JoinInfo *join = ehr__v1__join_info__unpack(NULL, len, bytes);
    if (join == NULL)
        return ehr_diag_fail(diag, EHR_ECORRUPT, "does not decode as a join file");
    const char *bad = join_problem(join);
    if (bad != NULL) {
        ehr__v1__join_info__free_unpacked(join, NULL);
        return ehr_diag_fail(diag, EHR_ECORRUPT, "%s", bad);
    }
    *out = join;
    return 0;
}

int node_datadir_join_remove(const char *dir)
{
    EHR_ASSERT(dir != NULL);
    if (strlen(dir) == 0 || strlen(dir) > NODE_DATADIR_PATH_BYTES_MAX)
        return EHR_EINVAL;
    char path[PATH_MAX];
    join_path(path, sizeof path, dir);
    if (unlink(path) != 0)
        return -errno;
    return ehr_dir_sync(dir);
}
