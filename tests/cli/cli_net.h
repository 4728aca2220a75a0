/*
 * cli_net.h - what the tests of ehrctl on a real network of members share
 * (every test_cli_* that starts ehrd processes): the network of real ehrd
 * processes on loopback (tests/node/cluster.h) as a cmocka group fixture,
 * ehrctl run as a subprocess in the cluster's directory with an empty (or a
 * given) environment, the checks on what it prints, files in the cluster's
 * and the nodes' directories, and GetCapsuleFragment signed with a member's
 * key file identity as a client signs it. The checks on what ehrctl
 * printed are cli_check.h's (included).
 *
 * Test code only: the checks are cmocka assertions that fail the running
 * test. Compiled into each test that uses it (tests/cli/CMakeLists.txt).
 * Not here: anything a test judges (the tests say what they check).
 */
#ifndef EHR_TEST_CLI_NET_H
#define EHR_TEST_CLI_NET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli_check.h"
#include "cluster.h"
#include "ehr/v1/tx.pb-c.h"
#include "pre.h"
#include "proc.h"

#define CLI_NET_EHRCTL EHR_BINARY_DIR "/cli/ehrctl"

enum {
    CLI_NET_HEX_BYTES = 2 * EHR_HASH_BYTES + 1, /* a hash or key in hex, NUL-terminated */
    CLI_NET_ADDRESS_BYTES = 32,                 /* "127.0.0.1:PORT" */
    CLI_NET_CALL_MS = 10000,                    /* a unary call's deadline */
    CLI_NET_CFRAG_REQUEST_BYTES_MAX = 512,      /* a signed GetCapsuleFragment request */
};

struct cli_net {
    struct cluster c;
    char node[CLUSTER_NODES_MAX][CLI_NET_ADDRESS_BYTES]; /* node I's API address */
    char hex[CLUSTER_NODES_MAX][CLI_NET_HEX_BYTES];      /* member I's node key */
    unsigned name_count; /* files a test has named so far, for unique names */
};

/*
 * Start COUNT founding members with the daemon at EHRD under LIMITS (NULL:
 * the cluster's defaults) and wait up to LEADER_WAIT_MS for a leader.
 * Returns the network (cli_net_stop frees it), or NULL when the crypto
 * libraries or the leader failed (the directory is kept for a look).
 */
struct cli_net *cli_net_start(size_t count, const char *ehrd, const struct cluster_limits *limits,
                              uint64_t leader_wait_ms);
/* SIGTERM every running node and free N; the directory is kept if one did
 * not stop cleanly. Returns 0, or -1 then (NULL is fine: 0). */
int cli_net_stop(struct cli_net *n);

/* ehrctl with ARGS (NULL-terminated) in the cluster's directory, with the
 * environment ENV (NULL-terminated "NAME=VALUE"s; NULL: empty). */
struct proc_result cli_net_run_env(const struct cli_net *n, const char *const *env,
                                   const char *const *args);
/* The same with an empty environment. */
struct proc_result cli_net_run_args(const struct cli_net *n, const char *const *args);
#define cli_run(n, ...) cli_net_run_args(n, PROC_ARGS(__VA_ARGS__, (const char *)NULL))
#define cli_run_env(n, env, ...) cli_net_run_env(n, env, PROC_ARGS(__VA_ARGS__, (const char *)NULL))
/* ehrctl with ARGS, which must exit 0 and print JSON: the JSON (json_decref
 * it). With SAVE, stdout is also written to that file in the cluster's
 * directory, byte for byte. */
json_t *cli_net_run_json(const struct cli_net *n, const char *save, const char *const *args);

/* HEX (2 * LEN digits) into OUT, or fail. */
void cli_hex_decode(uint8_t *out, const char *hex, size_t len);
/* A command run with --wait --json that submitted: it exited 0 and its
 * result is ok; its hash into HASH and, when DECISION is not NULL, the
 * access decision into DECISION (SIZE bytes). Frees R. */
void cli_submitted(struct proc_result *r, char hash[CLI_NET_HEX_BYTES], char *decision,
                   size_t size);

/* A key file NAME in the cluster's directory: its signing public key in
 * hex into HEX, or fail. */
void cli_net_key_hex(const struct cli_net *n, const char *name, char hex[CLI_NET_HEX_BYTES]);
/* A patient's key file KEY (no passphrase) made and enrolled by member 0
 * through NODE, waiting; with PUB (not NULL) its public keys written there
 * too. Fails the test if a step does. */
void cli_net_patient_enroll(const struct cli_net *n, const char *key, const char *pub,
                            const char *node);

/* `key receiving-key KEY --json`: the receiving key of the key file KEY
 * (in the cluster's directory) in hex into HEX, or fail. */
void cli_net_receiving_key(const struct cli_net *n, const char *key, char hex[CLI_NET_HEX_BYTES]);

/* The API address of a running node (the first), or fail. */
const char *cli_net_any_node(const struct cli_net *n);
/* Does NAME exist in the cluster's directory? */
bool cli_net_file_exists(const struct cli_net *n, const char *name);
/* The SHA-256 of NAME in the cluster's directory (read in pieces, any
 * size) into HASH, its size into *SIZE; fail if it cannot be read. */
void cli_net_file_sha256(const struct cli_net *n, const char *name, uint8_t hash[EHR_SHA256_BYTES],
                         uint64_t *size);
/* Files A and B in the cluster's directory hold the same bytes (their
 * sizes and SHA-256), or fail naming them. */
void cli_net_assert_same_file(const struct cli_net *n, const char *a, const char *b);
/* Where node I keeps the blob BLOB (hex): a static buffer, overwritten by
 * the next call. */
const char *cli_net_blob_path(const struct cli_net *n, size_t i, const char *blob);
/* How many files node I's blob store holds whose names begin with PREFIX
 * ("": all, temporary files included); 0 without a store. */
unsigned cli_net_blob_files(const struct cli_net *n, size_t i, const char *prefix);

/* A monotonic clock in milliseconds, for deadlines. */
uint64_t cli_mono_ms(void);
/* The bytes of the file at PATH (malloc'd, with one spare byte past *LEN
 * for a NUL), or NULL if it cannot be opened. */
uint8_t *cli_file_bytes_or_null(const char *path, size_t *len);
/* The same, failing the test if it cannot be opened. */
uint8_t *cli_file_bytes(const char *path, size_t *len);
/* LEN bytes from B written to the file at PATH (made or emptied), or fail. */
void cli_file_put(const char *path, const uint8_t *b, size_t len);

/* GetTransaction HASH from node I: the decoded body (free it). */
Ehr__V1__TxBody *cli_net_tx_body(struct cli_net *n, size_t i, const uint8_t hash[EHR_HASH_BYTES]);

/* A GetCapsuleFragment request for RECORD under PERMIT, signed by member
 * SIGNER's key, packed into BUF; its length. */
size_t cli_net_cfrag_request(struct cli_net *n, size_t signer, const uint8_t record[EHR_HASH_BYTES],
                             const uint8_t permit[EHR_HASH_BYTES],
                             uint8_t buf[CLI_NET_CFRAG_REQUEST_BYTES_MAX]);
/* GetCapsuleFragment from node I, signed by member SIGNER's key: the gRPC
 * status; on OK the cfrag (decoded) and the delegating key it names, and
 * otherwise a check that the answer carries nothing. */
int cli_net_cfrag_get(struct cli_net *n, size_t i, size_t signer,
                      const uint8_t record[EHR_HASH_BYTES], const uint8_t permit[EHR_HASH_BYTES],
                      ehr_pre_cfrag *cfrag, uint8_t delegating[EHR_PRE_PUBLIC_BYTES]);

#endif /* EHR_TEST_CLI_NET_H */
