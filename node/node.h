/*
 * node.h - the running node: consensus (consensus/) over the peer network
 * (p2p/), committing blocks into the ledger (ledger/), with the mempool and
 * the integrator API (service ehr.v1.Node over rpc/), all on one libuv loop
 * that the caller owns. ehrd is main() around this; tests may run a node
 * in-process the same way.
 *
 * What happens, in short (node/README.md has the whole story):
 * - The Raft log and hard state live in the ledger's LMDB environment;
 *   every ready batch is persisted in one durable commit before the
 *   messages that depend on it leave (raft.h's protocol).
 * - The leader batches admitted transactions into a signed block (bounded
 *   by count and bytes, flushed after block_flush_ms) and proposes the
 *   block's bytes; every node appends each committed block to its ledger in
 *   one LMDB write with the Raft index it was applied at. Restart recovers
 *   from LMDB alone.
 * - A follower forwards submitted transactions to the leader, which runs
 *   the whole admission (the only signature check before commit) and
 *   answers; clients asking to wait are answered when the block holding
 *   their transaction is applied on the node they asked.
 * - After each block, nodes exchange state digests; a node whose digest
 *   differs from what a quorum of the others applied stops.
 *
 * Not thread-safe: every call on the loop's thread.
 */
#ifndef EHR_NODE_H
#define EHR_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "ehr_crypto.h"

struct node;

/* Exit codes a node reports when it stops (ehrd exits with them). */
enum node_exit {
    NODE_EXIT_OK = 0,       /* stopped on request */
    NODE_EXIT_FAILURE = 1,  /* could not start, or a storage or system error */
    NODE_EXIT_USAGE = 2,    /* bad command line (ehrd itself) */
    NODE_EXIT_DIVERGED = 3, /* this node's state differs from the cluster's */
};

/*
 * Start a node on LOOP from CFG (borrowed for the call; what is kept is
 * copied) with the identity ID (copied into secure memory; the caller wipes
 * its own). The data directory must be locked by the caller and hold a
 * ledger with a chain whose members include ID's node key. Binds the peer
 * and RPC listeners. ON_STOPPED(USER, EXIT) is called once, from the loop,
 * when the node has stopped (after node_stop, or on its own after a fatal
 * error) and everything is closed and freed; run the loop until then.
 * Returns 0 and *OUT; or an error with a message in DIAG (may be NULL;
 * nothing is left running).
 */
int node_start(uv_loop_t *loop, const struct node_config *cfg, const ehr_identity *id,
               void (*on_stopped)(void *user, int exit_code), void *user, struct node **out,
               ehr_diag *diag);

/* Begin a clean stop: stop taking calls, finish what is in flight (a write
 * in flight is always finished: writes are synchronous on the loop), close
 * everything, then ON_STOPPED with NODE_EXIT_OK. Safe to call twice. */
void node_stop(struct node *n);

/*
 * Faults a test injects, all off (zero) unless set. Only the test build of
 * the daemon (ehrd-test, tests/node/) sets them; the production ehrd never
 * calls node_test_faults_set and reads no test switch.
 */
struct node_test_faults {
    /* Publish a wrong state digest for the block at this height (the
     * divergence test's stand-in for a bug or a damaged disk); 0: never. */
    uint64_t digest_fault_height;
    /* As leader, propose the block at this height with its first
     * transaction's signature replaced by one the leader makes with its
     * own key over the same body (a malicious leader forging what another
     * signed); 0: never. Every node must record it as refused. */
    uint64_t forge_height;
    /* Hold each GetCapsuleFragment job this long on the worker pool, so a
     * test fills NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX; 0: no delay. */
    uint64_t capsule_delay_ms;
    /* Hold each job that reads a blob piece for a peer this long on the
     * worker pool, so a test fills the serving limits; 0: no delay. */
    uint64_t blob_serve_delay_ms;
    /* Serve at most this many blob pieces to peers at once in all, below
     * NODE_BLOB_SERVES_MAX, so a test whose few members each reach
     * NODE_BLOB_SERVES_PER_MEMBER_MAX first can fill the total; 0 (or not
     * below): NODE_BLOB_SERVES_MAX. */
    uint64_t blob_serves_max;
    /* Refill no member's bucket of BlobFetches (NODE_BLOB_FETCH_REQUESTS_*):
     * each is answered NODE_BLOB_FETCH_REQUESTS_BURST of them, then "busy",
     * whatever the time a test takes; 0: the real rate. */
    uint64_t blob_fetch_no_refill;
};
void node_test_faults_set(struct node *n, const struct node_test_faults *faults);

/*
 * Read the TLS certificate, key and client CA of the config's files again
 * (SIGHUP): connections accepted from now on use them, open ones keep
 * theirs. Returns 0; EHR_ENOTFOUND when the API does not serve TLS; or
 * EHR_EINVAL naming the file and why (the old certificate stays); with the
 * message in DIAG (may be NULL).
 */
int node_tls_reload(struct node *n, ehr_diag *diag);

/* The ports actually bound (useful when the config asked for port 0). */
uint16_t node_peer_port(const struct node *n);
uint16_t node_rpc_port(const struct node *n);

#endif /* EHR_NODE_H */
