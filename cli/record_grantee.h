/*
 * record_grantee.h - `ehrctl record get` as a grantee: the permit, the
 * nodes' capsule fragments, the record key (record_grantee.c). Internal to
 * ehrctl.
 */
#ifndef EHR_CLI_RECORD_GRANTEE_H
#define EHR_CLI_RECORD_GRANTEE_H

#include "cli_internal.h"
#include "pre.h"

enum {
    /* Nodes `record get` asks for capsule fragments (--fragment-node):
     * one per key fragment a grant can carry. */
    CLI_FRAGMENT_NODES_MAX = EHR_PRE_KFRAGS_MAX,
};

struct cli__record_grantee {
    /* in */
    uint8_t record_id[EHR_HASH_BYTES];
    const char *chain_id;
    int purpose; /* the access request's, when no --permit */
    bool permit_given;
    const char *fragment_nodes[CLI_FRAGMENT_NODES_MAX];
    size_t fragment_node_count; /* 0: --node and the peers it knows (GetStatus) */
    /* in with --permit, else out */
    uint8_t permit[EHR_HASH_BYTES];
    /* out */
    size_t fragments_used;
};

/*
 * Open CAPSULE's key as the grantee ID: the permit (G->permit when
 * G->permit_given, else an access request submitted through NODE and
 * waited for), then a capsule fragment from each of G's nodes (NODE_OPTIONS
 * for the rest of the connection), each verified, the bad ones discarded
 * with a warning. Returns 0 with KEY (the caller wipes it) and G->permit,
 * or an exit status after saying why: the rules' deny is CLI_EXIT_DENIED;
 * fragments that do not open the key (fewer than the threshold) are
 * CLI_EXIT_FAIL.
 */
int cli__record_key_as_grantee(struct cli__ctx *ctx, struct cli__node *node,
                               const struct cli__node_options *node_options, const ehr_identity *id,
                               const ehr_pre_capsule *capsule, struct cli__record_grantee *g,
                               uint8_t key[EHR_PRE_KEY_BYTES]);

#endif /* EHR_CLI_RECORD_GRANTEE_H */
