/*
 * cluster.h - a local network of real ehrd processes on loopback for the
 * node's multi-process tests and load programs: keys, genesis and data
 * directories made with the real ehrctl binary, nodes started with fork and
 * exec, stopped with SIGTERM or killed with SIGKILL, and a client side on
 * the real gRPC API (rpc/ client, ehr.v1.Node messages).
 *
 * Test code only: set-up failures abort with a message (they are bugs in
 * the test or the machine, not cases under test).
 */
#ifndef EHR_TEST_CLUSTER_H
#define EHR_TEST_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ehr/v1/tx.pb-c.h"
#include "ehr_crypto.h"
#include "ledger.h"
#include "rpc.h"

enum { CLUSTER_NODES_MAX = 5, CLUSTER_PATH_BYTES = 512 };

struct cluster_node {
    char dir[CLUSTER_PATH_BYTES];    /* data directory */
    char config[CLUSTER_PATH_BYTES]; /* its ehrd.json */
    char log[CLUSTER_PATH_BYTES];    /* ehrd's stderr */
    uint16_t peer_port, rpc_port;
    uint8_t node_key[EHR_SCHNORR_PUBLIC_BYTES];
    /* Its key file's identity, loaded once: opening a key file runs
     * argon2id, far too slow to do per signed transaction. */
    ehr_identity *identity;
    pid_t pid; /* 0: not running */
};

/* Limits written into every node's config (0: leave ehrctl init's default),
 * and the genesis's emergency roles (ehrctl genesis --emergency-roles; NULL:
 * none). */
struct cluster_limits {
    uint64_t block_tx_count;
    uint64_t block_flush_ms;
    uint64_t raft_tick_ms;
    uint64_t snapshot_entries;
    uint64_t mempool_tx_count;
    /* Submissions per second per client address, and their burst (0: the
     * largest the config takes, since every client of a test comes from
     * 127.0.0.1 and the load generators would otherwise be throttled). */
    uint64_t submit_rate_per_s;
    uint64_t submit_burst;
    const char *emergency_roles;
    /* Member I's role (ehrctl genesis member --role), NULL-terminated or
     * NULL: hospital, lab, insurer, pharmacy, regulator in that order. */
    const char *const *roles;
    /* The founding members, in the genesis (0: all COUNT). Nodes from
     * here to COUNT are members-to-be: a key, ports and a member entry
     * (cluster_member_entry), no data directory until cluster_join_prepare. */
    size_t founding;
};

struct cluster {
    char *root; /* a temporary directory holding everything */
    size_t count;
    struct cluster_node nodes[CLUSTER_NODES_MAX];
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1];
    char ehrd[CLUSTER_PATH_BYTES], ehrctl[CLUSTER_PATH_BYTES];
    struct cluster_limits limits; /* as created (pointers borrowed) */
};

/*
 * Make COUNT founding members (keys without passphrase, a genesis, `ehrctl
 * init` for each with free loopback ports) under a new temporary directory.
 * EHRD and EHRCTL are the binaries' paths. Nothing is started.
 */
void cluster_create(struct cluster *c, size_t count, const char *ehrd, const char *ehrctl,
                    const struct cluster_limits *limits);
/* Node I's member entry file (`ehrctl genesis member` output), for
 * `ehrctl member propose --admit`. */
void cluster_member_entry(const struct cluster *c, size_t i, char path[CLUSTER_PATH_BYTES]);
/* Prepare member-to-be I, once admitted, with `ehrctl init --join` through
 * node VIA's API (running), and the cluster's limits in its config. */
void cluster_join_prepare(struct cluster *c, size_t i, size_t via);

/* `ehrctl member propose --admit` (ADMIT: member-to-be SUBJECT) or
 * `ehrctl member remove` (member SUBJECT) by member node PROPOSER through
 * its own node, with --wait; the proposal id (64 hex digits) into ID. Aborts on a failure. */
void cluster_propose(struct cluster *c, size_t proposer, bool admit, size_t subject, char id[65]);
/* `ehrctl member approve ID` by member node MEMBER through its own node,
 * with --wait. Aborts on a failure. */
void cluster_approve(struct cluster *c, size_t member, const char *id);
/* The same, signed by MEMBER's key but sent through node VIA (MEMBER's own
 * node may be down). */
void cluster_approve_via(struct cluster *c, size_t member, size_t via, const char *id);

/* SIGKILL every node any cluster of this process still runs (a teardown for
 * tests that failed before cluster_destroy). */
void cluster_kill_all(void);

/* A bench's fatal error: "PROG: " and the message on stderr, every node
 * killed (cluster_kill_all), exit 1. */
_Noreturn void cluster_die(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The command-line number S of option NAME, from 1 to MAX; anything else
 * dies (cluster_die) saying so. */
long cluster_arg_long(const char *prog, const char *name, const char *s, long max);

/* Kill whatever still runs and remove the directory (unless KEEP). */
void cluster_destroy(struct cluster *c, bool keep);

/*
 * Start nodes 0..C->count-1 and wait up to LEADER_WAIT_MS for a leader. Each
 * node's API address goes to NODE[i] ("127.0.0.1:PORT"; may be NULL) and
 * its member's node key, in hex, to HEX[i] (may be NULL). Returns 0, or -1
 * when no leader came (the nodes keep running for a look; cluster_destroy).
 */
int cluster_start_all(struct cluster *c, char (*node)[32],
                      char (*hex)[2 * EHR_SCHNORR_PUBLIC_BYTES + 1], uint64_t leader_wait_ms);
/* SIGTERM every running node, wait for each, then cluster_destroy. */
void cluster_stop_all(struct cluster *c);

/* Start node I (ehrd --config ..., stderr to its log). Returns its pid. */
pid_t cluster_start(struct cluster *c, size_t i);
/* As cluster_start, with NAME=VALUE in the node's environment. */
pid_t cluster_start_env(struct cluster *c, size_t i, const char *name, const char *value);
/* Wait up to TIMEOUT_MS for node I to exit on its own; its exit status, or
 * -1 if it is still running (or died from a signal). */
int cluster_wait_exit(struct cluster *c, size_t i, uint64_t timeout_ms);
/* SIGTERM node I and wait for it; returns its exit status (or -1). */
int cluster_stop(struct cluster *c, size_t i);
/* SIGKILL node I and reap it. */
void cluster_kill(struct cluster *c, size_t i);

/* ---- the API, blocking (one connection per call set-up) ---- */

struct cluster_status {
    int role; /* Ehr__V1__NodeRole */
    uint64_t term, commit_index, applied_index, tip_height;
    uint8_t tip_hash[EHR_HASH_BYTES];
    uint8_t leader_id[EHR_SCHNORR_PUBLIC_BYTES];
    bool has_leader;
    uint64_t mempool_tx_count;
    size_t peers_connected;
    uint64_t loop_turn_max_us;     /* GetStatusResponse.loop_turn_max_us */
    uint64_t loop_turn_cpu_max_us; /* GetStatusResponse.loop_turn_cpu_max_us */
    uint64_t rss_bytes;            /* GetStatusResponse.rss_bytes */
    uint64_t restore_term;         /* GetStatusResponse.restore_term */
};

/* GetStatus of node I. Returns the gRPC status (0 = OK). */
int cluster_status(struct cluster *c, size_t i, struct cluster_status *out);

/* The index of the node that node I (or any node, when I is SIZE_MAX) names
 * as leader, waiting up to TIMEOUT_MS; SIZE_MAX if none. */
size_t cluster_wait_leader(struct cluster *c, uint64_t timeout_ms);

/* GetBlock HEIGHT from node I: its hash and (PROPOSER may be NULL) its
 * proposer's key, from the parsed header. Returns the gRPC status. */
int cluster_block(struct cluster *c, size_t i, uint64_t height, uint8_t hash[EHR_HASH_BYTES],
                  uint8_t proposer[EHR_SCHNORR_PUBLIC_BYTES]);

/* One blocking unary call to node I: PATH under /ehr.v1.Node/, REQUEST
 * bytes; RESULT as rpc_sync_unary fills it (the caller clears it). */
int cluster_call(struct cluster *c, size_t i, const char *method, const uint8_t *request,
                 size_t request_len, uint64_t timeout_ms, struct rpc_result *result);

/* ---- load ---- */

/* What happened to one submitted transaction. */
struct cluster_tx {
    uint8_t *envelope;
    size_t envelope_len;
    uint8_t hash[EHR_HASH_BYTES];
    int status;      /* final gRPC status; -1 while pending */
    bool committed;  /* acknowledged as committed */
    uint64_t height; /* and where */
    uint32_t position;
    int result_code; /* TxResult.code when the answer carried one, else -1 */
    uint32_t attempts;
    uint64_t sent_us, done_us; /* of the last attempt */
    uint64_t start_us;         /* the first attempt's, or its slot in a paced load */
};

/* Sign BODY (its payload set) as member node MEMBER: the chain id, the
 * signer, a random nonce and an expiry in an hour are filled in (and cleared
 * again). *ENVELOPE is ehr_malloc'd; HASH (may be NULL) gets its hash. */
void cluster_tx_sign(const struct cluster *c, size_t member, Ehr__V1__TxBody *body,
                     uint8_t **envelope, size_t *len, uint8_t hash[EHR_HASH_BYTES]);

/* As cluster_tx_sign, signed by KEY (a patient, a practitioner). */
void cluster_tx_sign_as(const struct cluster *c, const ehr_signing_key *key, Ehr__V1__TxBody *body,
                        uint8_t **envelope, size_t *len, uint8_t hash[EHR_HASH_BYTES]);

/* Submit ENVELOPE (freed here) to node I with wait_for_commit; returns the
 * gRPC status, and the result's code in *RESULT_CODE (may be NULL; -1 when
 * none). */
int cluster_submit_wait(struct cluster *c, size_t i, uint8_t *envelope, size_t len,
                        int *result_code);

/* A patient enrolment by member node MEMBER of a fresh patient, co-signed
 * by the patient (whose keys go to *PATIENT when it is not NULL). */
void cluster_tx_enroll(const struct cluster *c, size_t member, ehr_identity *patient,
                       uint8_t **envelope, size_t *len, uint8_t hash[EHR_HASH_BYTES]);

/* A record anchor by member node MEMBER for PATIENT (a record of TYPE, a
 * Ehr__V1__RecordType, with a placeholder pointer and a random ciphertext
 * hash, as each record names its own): the record's id is the transaction's
 * HASH. */
void cluster_tx_anchor(const struct cluster *c, size_t member,
                       const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES], int type,
                       uint8_t **envelope, size_t *len, uint8_t hash[EHR_HASH_BYTES]);

/* A treatment consent signed by PATIENT for GRANTEE (a member or a
 * registered practitioner) over records of TYPE, valid until
 * VALID_UNTIL_MS: the consent's id is the transaction's HASH. */
void cluster_tx_grant(const struct cluster *c, const ehr_signing_key *patient,
                      const uint8_t grantee[EHR_SCHNORR_PUBLIC_BYTES], int type,
                      uint64_t valid_until_ms, uint8_t **envelope, size_t *len,
                      uint8_t hash[EHR_HASH_BYTES]);

/* COUNT fresh transactions for the cluster's chain, each valid whatever
 * else commits (enrolments of fresh patients by member 0), expiring in an
 * hour. */
struct cluster_tx *cluster_txs_make(const struct cluster *c, size_t count);
void cluster_txs_free(struct cluster_tx *txs, size_t count);

/* Called now and then while a load runs (every ~10 ms): may kill nodes. */
typedef void (*cluster_load_tick)(void *ctx, struct cluster *c, const struct cluster_tx *txs,
                                  size_t count, uint64_t now_us);

/*
 * Submit TXS with wait_for_commit, INFLIGHT at a time, round-robin over the
 * running nodes; a submission answered UNAVAILABLE, RESOURCE_EXHAUSTED or
 * DEADLINE_EXCEEDED (or whose connection fails) is retried on the next
 * running node after a short pause, up to 100 attempts. Runs until every
 * transaction has a final status or TIMEOUT_MS passes. TICK (may be NULL)
 * runs about every 10 ms. Returns the number committed.
 */
size_t cluster_load(struct cluster *c, struct cluster_tx *txs, size_t count, size_t inflight,
                    uint64_t timeout_ms, cluster_load_tick tick, void *tick_ctx);

/*
 * An open loop: start TXS[i] at i / RATE_PER_S seconds from now (at most
 * INFLIGHT_MAX in flight: one held back by it starts late but keeps its
 * slot as its start_us, so its latency counts the wait), retried as
 * cluster_load does, until every one has a final status or TIMEOUT_MS
 * passes. What the network does not keep up with shows as latency and as
 * fewer commits in time, never as a slower offered rate. Returns the
 * number committed.
 */
size_t cluster_load_paced(struct cluster *c, struct cluster_tx *txs, size_t count,
                          uint64_t rate_per_s, size_t inflight_max, uint64_t timeout_ms);

uint64_t cluster_now_us(void);

/* Wait up to TIMEOUT_MS until every running node has applied the same tip
 * (height and hash); returns its height, or UINT64_MAX on timeout. A
 * commit answered by one node is applied by the others a moment later:
 * wait for this before reading from another node. */
uint64_t cluster_wait_converged(struct cluster *c, uint64_t timeout_ms);

#endif /* EHR_TEST_CLUSTER_H */
