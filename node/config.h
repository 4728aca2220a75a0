/*
 * config.h - the node's configuration file: what `ehrd --config FILE` reads
 * and `ehrctl init` writes. One JSON object (parsed with jansson) naming the
 * data directory, the key file, the peer and RPC listen addresses, the log
 * level and the node's limits.
 *
 * Not here: opening the key file, binding the addresses, locking the data
 * directory (datadir.h), the genesis (it lives in the ledger).
 *
 * A library of its own (ehr_node_config, with datadir.c) that ehrd and
 * ehrctl both link: it depends on the ledger's formats and store but not on
 * consensus, the mempool, the peer network or the RPC server. The ranges of
 * the limits the node's parts enforce are written here as numbers, and the
 * node checks at compile time that they are the parts' own (node.c).
 *
 * The file is strict: an unknown key, a wrong type or a value out of range
 * is refused with a message naming the key, so a typo never silently falls
 * back to a default. Omitted optional keys take the defaults below. Relative
 * paths are resolved against the directory holding the config file, so a
 * config file keeps working whatever the node's working directory is.
 *
 *   {
 *     "data_dir": "/var/lib/ehrd",          required
 *     "key_file": "node.key",               default DATA_DIR/node.key
 *     "passphrase_file": "pass.txt",        optional; else $EHR_PASSPHRASE
 *     "peer_listen": "0.0.0.0:7000",        required, HOST:PORT
 *     "rpc_listen": "127.0.0.1:7001",       required, HOST:PORT
 *     "metrics_listen": "127.0.0.1:7002",   optional, HOST:PORT; absent: no metrics
 *     "tls_cert_file": "api.crt",           optional: serve the API over TLS
 *     "tls_key_file": "api.key",            with tls_cert_file (PEM, no passphrase)
 *     "tls_client_ca_file": "clients.pem",  optional: mutual TLS (needs the two above)
 *     "insecure_rpc": false,                true: cleartext on a non-loopback rpc_listen
 *     "log_level": "info",                  debug, info, warn, error
 *     "limits": { "mempool_tx_count": 50000, ... }   each optional
 *   }
 */
#ifndef EHR_NODE_CONFIG_H
#define EHR_NODE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ledger.h"

/* ---- Limits of the file itself ---- */

enum {
    /* The config file (a few hundred bytes in practice). */
    NODE_CONFIG_FILE_BYTES_MAX = 64 * 1024,
    /* A path, after resolution against the config file's directory. */
    NODE_CONFIG_PATH_BYTES_MAX = 4095,
    /* A listen address, HOST:PORT (the genesis's peer address bound). */
    NODE_CONFIG_ADDRESS_BYTES_MAX = 256,
};

/* ---- Ranges of the limits (each key of "limits": default, min, max) ---- */

/* mempool_tx_count, mempool_bytes: the mempool's bounds (MEMPOOL_* in mempool.h). */
#define NODE_CONFIG_MEMPOOL_TX_COUNT_DEFAULT 50000u
#define NODE_CONFIG_MEMPOOL_TX_COUNT_MIN 1u
#define NODE_CONFIG_MEMPOOL_TX_COUNT_MAX (1u << 20)
#define NODE_CONFIG_MEMPOOL_BYTES_DEFAULT (128ull << 20)
#define NODE_CONFIG_MEMPOOL_BYTES_MIN ((uint64_t)EHR_TX_BYTES_MAX)
#define NODE_CONFIG_MEMPOOL_BYTES_MAX (4ull << 30)
/* The largest block proposal the consensus wire carries in one message
 * (NODE_RAFT_WIRE_PROPOSAL_BYTES_MAX in raft_wire.h): a 1 MiB peer message
 * less its envelope, a message header and 2,048 entries' overhead. */
#define NODE_CONFIG_PROPOSAL_BYTES_MAX ((1u << 20) - 4u - 288u - 2048u * 32u)

/* block_tx_count: transactions the leader puts in one block. */
#define NODE_CONFIG_BLOCK_TX_COUNT_DEFAULT 5000u
#define NODE_CONFIG_BLOCK_TX_COUNT_MIN 1u
#define NODE_CONFIG_BLOCK_TX_COUNT_MAX ((uint64_t)EHR_BLOCK_TX_COUNT_MAX)
/* block_bytes: a serialized block. It must hold the largest transaction with
 * the header and framing, and travel as one consensus proposal, which is
 * smaller than the ledger's EHR_BLOCK_BYTES_MAX (see raft_wire.h). */
#define NODE_CONFIG_BLOCK_BYTES_MIN ((uint64_t)EHR_TX_BYTES_MAX + EHR_BLOCK_HEADER_BYTES_MAX + 64u)
#define NODE_CONFIG_BLOCK_BYTES_MAX                                                                \
    ((uint64_t)NODE_CONFIG_PROPOSAL_BYTES_MAX < (uint64_t)EHR_BLOCK_BYTES_MAX                      \
         ? (uint64_t)NODE_CONFIG_PROPOSAL_BYTES_MAX                                                \
         : (uint64_t)EHR_BLOCK_BYTES_MAX)
#define NODE_CONFIG_BLOCK_BYTES_DEFAULT NODE_CONFIG_BLOCK_BYTES_MAX
/* block_flush_ms: how long the leader waits for more transactions before
 * proposing a block that is not full. */
#define NODE_CONFIG_BLOCK_FLUSH_MS_DEFAULT 100u
#define NODE_CONFIG_BLOCK_FLUSH_MS_MIN 1u
#define NODE_CONFIG_BLOCK_FLUSH_MS_MAX 60000u
/* rpc_message_bytes: the largest gRPC message the node accepts. It must hold
 * the largest transaction in its request. */
#define NODE_CONFIG_RPC_MESSAGE_BYTES_MIN ((uint64_t)EHR_TX_BYTES_MAX + 1024u)
#define NODE_CONFIG_RPC_MESSAGE_BYTES_MAX ((uint64_t)4u << 20) /* == RPC_MESSAGE_BYTES_MAX */
#define NODE_CONFIG_RPC_MESSAGE_BYTES_DEFAULT NODE_CONFIG_RPC_MESSAGE_BYTES_MAX
/* raft_tick_ms: the consensus clock's period. With the default election_ticks a
 * follower campaigns 0.5-1 s after it last heard from a leader: right for a
 * LAN or metro cluster; raise it for long or lossy links. */
#define NODE_CONFIG_RAFT_TICK_MS_DEFAULT 50u
#define NODE_CONFIG_RAFT_TICK_MS_MIN 1u
#define NODE_CONFIG_RAFT_TICK_MS_MAX 10000u
/* election_ticks: base election timeout (RAFT_ELECTION_TICKS_* in raft.h). */
#define NODE_CONFIG_ELECTION_TICKS_DEFAULT 10u
#define NODE_CONFIG_ELECTION_TICKS_MIN 3u
#define NODE_CONFIG_ELECTION_TICKS_MAX 100000u
/* heartbeat_ticks: 1 .. election_ticks - 1. */
#define NODE_CONFIG_HEARTBEAT_TICKS_DEFAULT 1u
#define NODE_CONFIG_HEARTBEAT_TICKS_MIN 1u

/* snapshot_entries: a node snapshots its ledger (a full copy, in a worker
 * thread) and compacts its consensus log once this many entries were applied
 * since its last snapshot. A follower further behind than the compacted log
 * is brought up to date with the snapshot. */
#define NODE_CONFIG_SNAPSHOT_ENTRIES_DEFAULT 10000u
#define NODE_CONFIG_SNAPSHOT_ENTRIES_MIN 16u
#define NODE_CONFIG_SNAPSHOT_ENTRIES_MAX ((uint64_t)1 << 32)

/* submit_rate_per_s, submit_burst: SubmitTransaction calls one client
 * address may make, a token bucket (node_internal.h, "Submissions per
 * second per client address"): this many a second on average, this many
 * at once after a quiet spell; more are refused with RESOURCE_EXHAUSTED
 * and a retry hint before anything of them is checked. Clients behind one
 * address (a gateway, NAT) share it: raise it for them. */
#define NODE_CONFIG_SUBMIT_RATE_PER_S_DEFAULT 1000u
#define NODE_CONFIG_SUBMIT_RATE_PER_S_MIN 1u
#define NODE_CONFIG_SUBMIT_RATE_PER_S_MAX 1000000u
#define NODE_CONFIG_SUBMIT_BURST_DEFAULT 2000u
#define NODE_CONFIG_SUBMIT_BURST_MIN 1u
#define NODE_CONFIG_SUBMIT_BURST_MAX 1000000u

/* ---- The configuration ---- */

struct node_config_limits {
    uint64_t mempool_tx_count;  /* NODE_CONFIG_MEMPOOL_TX_COUNT_MIN..MAX */
    uint64_t mempool_bytes;     /* NODE_CONFIG_MEMPOOL_BYTES_MIN..MAX */
    uint64_t block_tx_count;    /* NODE_CONFIG_BLOCK_TX_COUNT_MIN..MAX */
    uint64_t block_bytes;       /* NODE_CONFIG_BLOCK_BYTES_MIN..MAX */
    uint64_t block_flush_ms;    /* NODE_CONFIG_BLOCK_FLUSH_MS_MIN..MAX */
    uint64_t rpc_message_bytes; /* NODE_CONFIG_RPC_MESSAGE_BYTES_MIN..MAX */
    uint64_t raft_tick_ms;      /* NODE_CONFIG_RAFT_TICK_MS_MIN..MAX */
    uint64_t election_ticks;    /* NODE_CONFIG_ELECTION_TICKS_MIN..MAX */
    uint64_t heartbeat_ticks;   /* 1..election_ticks - 1 */
    uint64_t snapshot_entries;  /* NODE_CONFIG_SNAPSHOT_ENTRIES_MIN..MAX */
    uint64_t submit_rate_per_s; /* NODE_CONFIG_SUBMIT_RATE_PER_S_MIN..MAX */
    uint64_t submit_burst;      /* NODE_CONFIG_SUBMIT_BURST_MIN..MAX */
};

/*
 * A loaded configuration. The strings are ehr_malloc'd and owned by the
 * struct (node_config_free releases them); paths are absolute after
 * node_config_load. passphrase_file is NULL when the file names none.
 */
struct node_config {
    char *data_dir;
    char *key_file;
    char *passphrase_file;
    char *peer_listen;
    char *rpc_listen;
    char *metrics_listen;     /* the Prometheus endpoint (node/metrics.h); NULL: none */
    char *tls_cert_file;      /* NULL: the API speaks cleartext */
    char *tls_key_file;       /* set exactly when tls_cert_file is */
    char *tls_client_ca_file; /* NULL: no client certificate asked (needs tls_cert_file) */
    bool insecure_rpc;        /* cleartext allowed on a non-loopback rpc_listen */
    enum ehr_log_level log_level;
    struct node_config_limits limits;
};

/* Set CFG to the defaults: no strings, log level info, every limit at its
 * default. */
void node_config_defaults(struct node_config *cfg);

/*
 * Read and check the config file PATH into *CFG (overwritten; free it with
 * node_config_free even on error — it is then empty). Returns 0; on error
 * a message naming the file and the key (or the line and column of a JSON
 * error) in DIAG (may be NULL) and: -errno or EHR_EINVAL (not a regular
 * file) reading it, EHR_ETOOBIG over NODE_CONFIG_FILE_BYTES_MAX, EHR_EINVAL
 * for everything in it.
 */
int node_config_load(const char *path, struct node_config *cfg, ehr_diag *diag);

/*
 * Check CFG's fields (what load checks after parsing): required strings
 * present, addresses, path lengths, every limit in range. Returns 0, or
 * EHR_EINVAL with the message in DIAG (may be NULL).
 */
int node_config_check(const struct node_config *cfg, ehr_diag *diag);

/*
 * Write CFG to PATH as indented JSON with every key (defaults included), via
 * ehr_file_write_atomic with mode 0600, replacing an existing PATH only if
 * OVERWRITE. Paths are written as they are in CFG. Returns 0; EHR_EINVAL if
 * node_config_check refuses CFG; EHR_EEXIST; -errno; with the message in
 * DIAG (may be NULL).
 */
int node_config_write(const char *path, const struct node_config *cfg, bool overwrite,
                      ehr_diag *diag);

/* Release CFG's strings and reset it to the defaults. Safe twice. */
void node_config_free(struct node_config *cfg);

/*
 * Is RESOLVED (an IP literal and port, as node_config_listen_resolve
 * writes it) a loopback address: 127.0.0.0/8 or [::1]? 0.0.0.0 and [::]
 * (every interface) are not.
 */
bool node_config_address_is_loopback(const char *resolved);

/*
 * The rule for the API's exposure, given rpc_listen RESOLVED: a
 * non-loopback address is served only with TLS (tls_cert_file) or with
 * insecure_rpc. Returns 0, *INSECURE (may be NULL) true when the API will
 * speak cleartext beyond this host (the caller logs a warning); or
 * EHR_EINVAL with why and what to do in DIAG (may be NULL).
 */
int node_config_rpc_exposure_check(const struct node_config *cfg, const char *resolved,
                                   bool *insecure, ehr_diag *diag);

/*
 * Is ADDRESS a listen address: HOST:PORT with HOST a DNS name, an IPv4
 * address or [IPv6], PORT 1..65535, at most NODE_CONFIG_ADDRESS_BYTES_MAX
 * bytes? Returns 0, or EHR_EINVAL with why in DIAG (may be NULL).
 */
int node_config_address_check(const char *address, ehr_diag *diag);

/*
 * The listen address ADDRESS (node_config_address_check passed) as an IP
 * literal to bind: "IPv4:PORT" or "[IPv6]:PORT" into OUT (OUT_SIZE bytes;
 * NODE_CONFIG_ADDRESS_BYTES_MAX + 1 suffice). A host name is looked up with
 * getaddrinfo (blocking: call it at start-up, not on the loop) and its first
 * address taken. Returns 0, or EHR_ENOTFOUND with why in DIAG (may be NULL)
 * when the name does not resolve.
 */
int node_config_listen_resolve(const char *address, char *out, size_t out_size, ehr_diag *diag);

#endif /* EHR_NODE_CONFIG_H */
