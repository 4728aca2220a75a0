/*
 * record_grantee.c - how `ehrctl record get` opens a record's key for a
 * grantee (cli/README.md, "Records and their data"): the permit (an
 * access request submitted now and waited for, or --permit TX), then
 * GetCapsuleFragment from each node named (--fragment-node; else --node and
 * every peer whose API address --node learnt over their link),
 * each answer checked (its proof, against the delegating key that the
 * permit's consent grant names, read from --node with its hash checked,
 * and this key file's receiving key) and a bad one
 * discarded with a warning, then the key opened from the verified capsule
 * fragments (ehr_pre_decapsulate_cfrags, which checks the result against
 * the capsule: fewer than the grant's threshold fails, never a wrong key).
 *
 * Not here: the anchor, the pointer and the blob (cmd_record_data.c, the
 * same for the patient and a grantee).
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "capsule_answer.h"
#include "cli_internal.h"
#include "contracts.h"
#include "ledger_format.h"
#include "pre_seal.h"
#include "read_auth.h"
#include "record_grantee.h"

enum { READ_WINDOW_MS = 60000 };
_Static_assert(READ_WINDOW_MS <= NODE_READ_AUTH_WINDOW_MS_MAX, "the node takes the window");

/*
 * Submit an access request for G's record with purpose G->purpose, signed
 * by ID, and wait for its block. Returns 0 with G->permit set when the
 * decision is PERMIT; otherwise an exit status after saying why (a deny
 * is CLI_EXIT_DENIED, with the rules' reason).
 */
static int permit_request(struct cli__ctx *ctx, struct cli__node *node, const ehr_identity *id,
                          struct cli__record_grantee *g)
{
    Ehr__V1__AccessRequest ar = EHR__V1__ACCESS_REQUEST__INIT;
    ar.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)g->record_id};
    ar.purpose = (Ehr__V1__Purpose)g->purpose;
    ar.requester_kx_key = (ProtobufCBinaryData){EHR_KX_PUBLIC_BYTES, (uint8_t *)id->kx.public_key};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_ACCESS_REQUEST;
    body.access_request = &ar;
    uint8_t *envelope = NULL;
    size_t envelope_len = 0;
    uint8_t hash[EHR_HASH_BYTES];
    int exit_code = cli__tx_sign(ctx, &body, g->chain_id, CLI_EXPIRY_S_DEFAULT, &id->signing,
                                 &envelope, &envelope_len, hash);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__SubmitTransactionRequest q = EHR__V1__SUBMIT_TRANSACTION_REQUEST__INIT;
    q.envelope = (ProtobufCBinaryData){envelope_len, envelope};
    q.wait_for_commit = true;
    struct rpc_result result;
    enum rpc_status st = cli__node_call(node, "SubmitTransaction", &q.base, 0, &result);
    ehr_free(envelope);
    if (st != RPC_STATUS_OK) {
        exit_code = cli__node_fail(node, &result, "record get: the access request");
        rpc_result_clear(&result);
        return exit_code;
    }
    Ehr__V1__SubmitTransactionResponse *r =
        ehr__v1__submit_transaction_response__unpack(NULL, result.response_len, result.response);
    rpc_result_clear(&result);
    const char *bad = NULL;
    if (r == NULL)
        bad = "the answer does not decode";
    else if (r->tx_hash.len != EHR_HASH_BYTES || memcmp(r->tx_hash.data, hash, EHR_HASH_BYTES))
        bad = "tx_hash is not the hash of the access request sent";
    else if (!r->committed || r->result == NULL)
        bad = "the access request was not waited for until its block";
    if (bad != NULL) {
        if (r != NULL)
            ehr__v1__submit_transaction_response__free_unpacked(r, NULL);
        return cli__node_bad_answer(node, "record get: the access request", bad);
    }
    char reason[CONTRACTS_REASON_BYTES_MAX + 1], why[CONTRACTS_REASON_BYTES_MAX + 160];
    cli__text_shown(r->result->reason, reason, sizeof reason);
    if (r->result->code != EHR__V1__TX_RESULT_CODE__TX_RESULT_OK) {
        snprintf(why, sizeof why, "the access request was refused by the rules: %s",
                 reason[0] ? reason : "-");
        cli__fail(why, "record get");
        exit_code = CLI_EXIT_TX_REFUSED;
    } else if (r->result->decision != EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT) {
        snprintf(why, sizeof why, "access denied: %s", reason[0] ? reason : "-");
        cli__fail(why, "record get");
        exit_code = CLI_EXIT_DENIED;
    } else {
        memcpy(g->permit, hash, EHR_HASH_BYTES);
    }
    ehr__v1__submit_transaction_response__free_unpacked(r, NULL);
    return exit_code;
}

/*
 * The committed transaction HASH from NODE (GetTransaction): its body,
 * decoded and checked to hash to HASH, and its result. Returns 0 with
 * *BODY and *RESULT (free both), or an exit status after saying why.
 */
static int tx_fetch(struct cli__node *node, const uint8_t hash[EHR_HASH_BYTES], const char *what,
                    Ehr__V1__TxBody **body, Ehr__V1__TxResult **result)
{
    *body = NULL;
    *result = NULL;
    Ehr__V1__GetTransactionRequest q = EHR__V1__GET_TRANSACTION_REQUEST__INIT;
    q.tx_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)hash};
    struct rpc_result rr;
    if (cli__node_call(node, "GetTransaction", &q.base, 0, &rr) != RPC_STATUS_OK) {
        int exit_code = cli__node_fail(node, &rr, "record get: %s", what);
        rpc_result_clear(&rr);
        return exit_code;
    }
    Ehr__V1__GetTransactionResponse *r =
        ehr__v1__get_transaction_response__unpack(NULL, rr.response_len, rr.response);
    rpc_result_clear(&rr);
    const char *bad = NULL;
    ledger_tx_view v;
    uint8_t got[EHR_HASH_BYTES];
    if (r == NULL)
        bad = "the answer does not decode";
    else if (r->result == NULL)
        bad = "the answer carries no result";
    else if (ledger_tx_envelope_parse(r->envelope.data, r->envelope.len, &v, NULL) != 0)
        bad = "the envelope is not a transaction envelope";
    if (bad == NULL) {
        ledger_tx_hash(v.body, v.body_len, got);
        if (memcmp(got, hash, EHR_HASH_BYTES) != 0)
            bad = "the transaction does not hash to the id asked for";
    }
    if (bad == NULL && (*body = ehr__v1__tx_body__unpack(NULL, v.body_len, v.body)) == NULL)
        bad = "the transaction's body does not decode";
    if (bad == NULL) {
        *result = r->result;
        r->result = NULL; /* now the caller's */
    }
    if (r != NULL)
        ehr__v1__get_transaction_response__free_unpacked(r, NULL);
    if (bad != NULL) {
        char w[96];
        snprintf(w, sizeof w, "record get: %s", what);
        return cli__node_bad_answer(node, w, bad);
    }
    return 0;
}

/*
 * The consent that permitted G->permit (the permit's result, from NODE:
 * the grantee's own node) and the delegating key its grant names, signed
 * by the patient: what every capsule fragment is checked against, so that
 * no other node's answer chooses it. Returns 0 with CONSENT_ID and
 * DELEGATING, or an exit status after saying why.
 */
static int grant_key(struct cli__node *node, const struct cli__record_grantee *g,
                     uint8_t consent_id[EHR_HASH_BYTES], uint8_t delegating[EHR_PRE_PUBLIC_BYTES])
{
    Ehr__V1__TxBody *body = NULL;
    Ehr__V1__TxResult *result = NULL;
    int exit_code = tx_fetch(node, g->permit, "the permit", &body, &result);
    if (exit_code != 0)
        return exit_code;
    const char *bad = NULL;
    if (body->payload_case != EHR__V1__TX_BODY__PAYLOAD_ACCESS_REQUEST ||
        body->access_request->record_id.len != EHR_HASH_BYTES ||
        memcmp(body->access_request->record_id.data, g->record_id, EHR_HASH_BYTES) != 0)
        bad = "the permit is not an access request for this record";
    else if (result->decision != EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT ||
             result->consent_id.len != EHR_HASH_BYTES)
        bad = "the permit's result is not a PERMIT naming a consent";
    else
        memcpy(consent_id, result->consent_id.data, EHR_HASH_BYTES);
    ehr__v1__tx_body__free_unpacked(body, NULL);
    ehr__v1__tx_result__free_unpacked(result, NULL);
    if (bad != NULL)
        return cli__node_bad_answer(node, "record get: the permit", bad);
    if ((exit_code = tx_fetch(node, consent_id, "the consent's grant", &body, &result)) != 0)
        return exit_code;
    if (body->payload_case != EHR__V1__TX_BODY__PAYLOAD_CONSENT_GRANT)
        bad = "the consent is not a consent grant";
    else if (body->consent_grant->n_key_fragments == 0)
        bad = "the consent carries no key fragments (granted without --receiving-key)";
    else if (body->consent_grant->delegating_key.len != EHR_PRE_PUBLIC_BYTES ||
             ehr_pre_public_key_check(body->consent_grant->delegating_key.data) != 0)
        bad = "the consent's delegating_key is not a delegating key";
    else
        memcpy(delegating, body->consent_grant->delegating_key.data, EHR_PRE_PUBLIC_BYTES);
    ehr__v1__tx_body__free_unpacked(body, NULL);
    ehr__v1__tx_result__free_unpacked(result, NULL);
    if (bad != NULL)
        return cli__fail(bad, "record get");
    return 0;
}

/*
 * GetCapsuleFragment from the node at ADDRESS: 0 with *CFRAG (decoded) and
 * the delegating key the node names, or -1 after a warning on stderr
 * naming the node and why (the caller goes on with the others).
 */
static int cfrag_ask(const struct cli__node_options *base, const char *address,
                     const ehr_identity *id, const struct cli__record_grantee *g,
                     ehr_pre_cfrag *cfrag, uint8_t consent_id[EHR_HASH_BYTES],
                     uint8_t delegating[EHR_PRE_PUBLIC_BYTES])
{
    struct cli__node_options o = *base;
    o.address = address;
    struct cli__node node = {0};
    ehr_diag why;
    if (cli__node_connect(&node, &o, &why) != 0) {
        fprintf(stderr, "ehrctl: record get: warning: %s: %s\n", address, why.msg);
        return -1;
    }
    Ehr__V1__GetCapsuleFragmentRequest q = EHR__V1__GET_CAPSULE_FRAGMENT_REQUEST__INIT;
    q.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)g->record_id};
    q.permit_tx = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)g->permit};
    struct node_read_auth_signed auth;
    uint64_t now = cli__wall_ms();
    int rc =
        node_read_auth_sign(&auth, &q.base, &q.auth, g->chain_id, "/ehr.v1.Node/GetCapsuleFragment",
                            &id->signing, now, now + READ_WINDOW_MS);
    EHR_ASSERT(rc == 0); /* a key file's signing key signs */
    struct rpc_result result;
    enum rpc_status st = cli__node_call(&node, "GetCapsuleFragment", &q.base, 0, &result);
    q.auth = NULL;
    cli__node_close(&node);
    if (st != RPC_STATUS_OK) {
        char msg[160];
        cli__text_shown(result.message, msg, sizeof msg);
        fprintf(stderr, "ehrctl: record get: warning: %s: no capsule fragment (%s): %s\n", address,
                rpc_status_name(st), msg);
        rpc_result_clear(&result);
        return -1;
    }
    const char *bad = cli__capsule_answer_decode(result.response, result.response_len, cfrag,
                                                 consent_id, delegating);
    rpc_result_clear(&result);
    if (bad != NULL) {
        fprintf(stderr, "ehrctl: record get: warning: %s: bad answer: %s\n", address, bad);
        return -1;
    }
    return 0;
}

/*
 * The nodes to ask when none were named: NODE itself, then every peer whose
 * API address it learnt over their link (GetStatus), at most
 * CLI_FRAGMENT_NODES_MAX; an address that does not parse is left out.
 * Returns how many, into OUT (pointing into TEXT).
 */
static size_t nodes_discover(struct cli__node *node, const struct cli__node_options *node_options,
                             const char *out[CLI_FRAGMENT_NODES_MAX],
                             char text[CLI_FRAGMENT_NODES_MAX][CLI_HOST_BYTES_MAX + 8])
{
    size_t count = 0;
    snprintf(text[count], sizeof text[count], "%s", node_options->address);
    out[count] = text[count];
    count++;
    Ehr__V1__GetStatusResponse *st = NULL;
    if (cli__node_get_status(node, "record get", &st) != 0)
        return count; /* said why; the node named still gets asked */
    for (size_t i = 0; i < st->n_peers && count < CLI_FRAGMENT_NODES_MAX; i++) {
        const char *a = st->peers[i]->rpc_address;
        char host[CLI_HOST_BYTES_MAX + 1];
        uint16_t port;
        if (a == NULL || a[0] == '\0' || strlen(a) >= sizeof text[count] ||
            cli__address_parse(a, host, &port) != 0)
            continue;
        snprintf(text[count], sizeof text[count], "%s", a);
        out[count] = text[count];
        count++;
    }
    ehr__v1__get_status_response__free_unpacked(st, NULL);
    return count;
}

int cli__record_key_as_grantee(struct cli__ctx *ctx, struct cli__node *node,
                               const struct cli__node_options *node_options, const ehr_identity *id,
                               const ehr_pre_capsule *capsule, struct cli__record_grantee *g,
                               uint8_t key[EHR_PRE_KEY_BYTES])
{
    EHR_ASSERT(g->fragment_node_count <= CLI_FRAGMENT_NODES_MAX);
    int exit_code = 0;
    if (!g->permit_given && (exit_code = permit_request(ctx, node, id, g)) != 0)
        return exit_code;
    ehr_pre_key receiving;
    if (ehr_pre_receiving_key_derive(&receiving, id->kx.secret) != 0)
        return cli__fail("the receiving key is zero (never in practice)", "record get");
    const char *found[CLI_FRAGMENT_NODES_MAX];
    char found_text[CLI_FRAGMENT_NODES_MAX][CLI_HOST_BYTES_MAX + 8];
    const char *const *nodes = g->fragment_nodes;
    size_t node_count = g->fragment_node_count;
    if (node_count == 0) {
        node_count = nodes_discover(node, node_options, found, found_text);
        nodes = found;
    }
    ehr_pre_cfrag cfrags[CLI_FRAGMENT_NODES_MAX];
    uint8_t consent_id[EHR_HASH_BYTES], delegating[EHR_PRE_PUBLIC_BYTES];
    if ((exit_code = grant_key(node, g, consent_id, delegating)) != 0) {
        ehr_pre_key_wipe(&receiving);
        return exit_code;
    }
    size_t good = 0;
    for (size_t i = 0; i < node_count; i++) {
        uint8_t named[EHR_PRE_PUBLIC_BYTES], named_consent[EHR_HASH_BYTES];
        if (cfrag_ask(node_options, nodes[i], id, g, &cfrags[good], named_consent, named) != 0)
            continue;
        if (memcmp(named_consent, consent_id, EHR_HASH_BYTES) != 0 ||
            memcmp(named, delegating, EHR_PRE_PUBLIC_BYTES) != 0) {
            fprintf(stderr,
                    "ehrctl: record get: warning: %s: names another consent or delegating key "
                    "than the permit's grant: discarded\n",
                    nodes[i]);
            continue;
        }
        if (ehr_pre_cfrag_verify(&cfrags[good], capsule, delegating, receiving.public_key) != 0) {
            fprintf(stderr,
                    "ehrctl: record get: warning: %s: its capsule fragment fails its proof: "
                    "discarded\n",
                    nodes[i]);
            continue;
        }
        bool seen = false;
        for (size_t j = 0; j < good; j++)
            seen = seen || memcmp(cfrags[j].id, cfrags[good].id, EHR_PRE_KFRAG_ID_BYTES) == 0;
        if (seen) /* the same node twice, under two addresses */
            continue;
        good++;
    }
    if (good == 0) {
        ehr_pre_key_wipe(&receiving);
        return cli__fail("no node gave a capsule fragment (see the warnings above)", "record get");
    }
    ehr_diag why;
    int rc = ehr_pre_decapsulate_cfrags(&receiving, delegating, capsule, cfrags, good, key, &why);
    ehr_pre_key_wipe(&receiving);
    if (rc != 0) {
        char msg[EHR_DIAG_BYTES_MAX + 160];
        snprintf(msg, sizeof msg,
                 "%zu verified capsule fragment%s do not open the record key (%s): fewer than "
                 "the grant's threshold? name more nodes with --fragment-node",
                 good, good == 1 ? "" : "s", why.msg);
        return cli__fail(msg, "record get");
    }
    g->fragments_used = good;
    return 0;
}
