/*
 * datadir.h - the node's data directory: an exclusive lock so that one
 * process at a time runs a node on it, and the check that the ledger in it
 * belongs to the chain of a given genesis file.
 *
 * Not here: creating the directory and its ledger (`ehrctl init` does, with
 * ledger_open + ledger_genesis_init), the config file (config.h).
 *
 * The lock is flock(2) on DIR/LOCK: the kernel drops it when the holder
 * exits, however it dies, so a crashed node never leaves a stale lock. The
 * holder's pid is written into the file, for the message a second process
 * gets. flock locks belong to the open file description: a forked child
 * inherits the held lock, so fork only to exec.
 */
#ifndef EHR_NODE_DATADIR_H
#define EHR_NODE_DATADIR_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ehr/v1/datadir.pb-c.h"

#define NODE_DATADIR_LOCK_NAME "LOCK"
/* ehrd writes its pid here after taking the lock and removes it when it
 * exits; a killed ehrd leaves it behind, so a pid read from it is believed
 * only while DIR/LOCK is held (another process may have that pid by now). */
#define NODE_DATADIR_PID_NAME "ehrd.pid"
enum {
    /* DIR itself: room for "/LOCK" and the ledger's own file names. */
    NODE_DATADIR_PATH_BYTES_MAX = 4000,
};

/* A held lock. Caller-owned; fd is -1 when not held. */
struct node_datadir_lock {
    int fd;
};

/*
 * Take the exclusive lock on the data directory DIR: flock(LOCK_EX |
 * LOCK_NB) on DIR/LOCK, created with mode 0600 if absent, then write this
 * process's pid into it. Never blocks. Returns 0 with LOCK held; on error
 * LOCK->fd is -1 and DIAG (may be NULL) holds a message naming DIR:
 * EHR_EAGAIN when another process holds it (the message names its pid when
 * the file records one); -ENOENT when DIR does not exist; EHR_EINVAL when
 * DIR is too long or not a directory; other -errno.
 */
int node_datadir_lock(const char *dir, struct node_datadir_lock *lock, ehr_diag *diag);

/* Release LOCK (close its file; the pid stays in it). Safe on a lock not held. */
void node_datadir_unlock(struct node_datadir_lock *lock);

/*
 * Does the ledger in DIR belong to the chain of GENESIS (LEN bytes, a
 * genesis file's contents)? Opens the ledger read-only and compares its
 * chain id and genesis hash (SHA-256 of the genesis bytes, recorded at
 * ledger_genesis_init) with the file's. Returns 0 when both match; else a
 * message in DIAG (may be NULL) and: EHR_ECHAIN on a mismatch (both chain
 * ids and both hashes in the message); EHR_ENOTFOUND when DIR holds no
 * ledger or one without a genesis; a ledger_genesis_parse error for
 * GENESIS; a ledger_open error.
 */
int node_datadir_check_genesis(const char *dir, const uint8_t *genesis, size_t len, ehr_diag *diag);

/*
 * The join file, DIR/join.pb (JoinInfo, proto/ehr/v1/datadir.proto): the
 * members a node joining a running chain links with until its own ledger
 * holds it. `ehrctl init --join` writes it; ehrd reads it when its ledger
 * does not (yet) hold its key as a member, and removes it once the ledger
 * does and the block at the recorded height has the recorded hash.
 */
#define NODE_DATADIR_JOIN_NAME "join.pb"
enum {
    /* Members in a join file (every member runs a node: RAFT_MEMBERS_MAX). */
    NODE_DATADIR_JOIN_MEMBERS_MAX = 16,
    /* The file's size: 16 members of at most ~700 bytes each, and room. */
    NODE_DATADIR_JOIN_BYTES_MAX = 64 * 1024,
};

/*
 * Write JOIN to DIR/join.pb (atomically, mode 0600, replacing one there).
 * JOIN must pass the checks node_datadir_join_read makes. Returns 0,
 * EHR_EINVAL (JOIN does not) or -errno, with a message in DIAG.
 */
int node_datadir_join_write(const char *dir, const Ehr__V1__JoinInfo *join, ehr_diag *diag);

/*
 * Read DIR/join.pb into *OUT (free with ehr__v1__join_info__free_unpacked)
 * and check it: it decodes, is at most NODE_DATADIR_JOIN_BYTES_MAX bytes,
 * names a chain, holds 1 to NODE_DATADIR_JOIN_MEMBERS_MAX members, each
 * with a 32-byte node key (no two alike) and a peer address of at most
 * P2P's size, and a 32-byte block hash. Returns 0; -ENOENT when there is
 * no join file (no message); EHR_ECORRUPT (a message says what is wrong);
 * other -errno.
 */
int node_datadir_join_read(const char *dir, Ehr__V1__JoinInfo **out, ehr_diag *diag);

/* Decode and check a join file's bytes (what node_datadir_join_read does
 * after reading). Returns 0 and *OUT, or EHR_ECORRUPT with why in DIAG. */
int node_datadir_join_decode(const uint8_t *bytes, size_t len, Ehr__V1__JoinInfo **out,
                             ehr_diag *diag);

/* Remove DIR/join.pb and make the removal durable. Returns 0 or -errno. */
int node_datadir_join_remove(const char *dir);

#endif /* EHR_NODE_DATADIR_H */
