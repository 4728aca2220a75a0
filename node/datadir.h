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

#endif /* EHR_NODE_DATADIR_H */
