/*
 * capsule_service.c - GetCapsuleFragment (node.proto, "Capsule fragments"):
 * a node's share of opening a record for a grantee. The node opens the key
 * fragment a consent carries sealed to it, re-encapsulates the record's
 * capsule with it and answers the capsule fragment with its proof
 * (crypto/PRE.md). It never holds the record key.
 *
 * Who is answered, checked on the loop against the committed state (as
 * GetBlob checks its permit):
 *   1. the request is signed (node__read_authenticate);
 *   2. permit_tx is a committed access request by the signer for
 *      record_id whose decision was PERMIT; its result names the consent;
 *   3. the record was not erased by its patient (else FAILED_PRECONDITION);
 *   4. that consent is not revoked and its period covers the time of the
 *      node's last block (block time: what every node agrees on);
 *   5. its grant carries a fragment sealed to this node's X25519 key.
 * Anything else is PERMISSION_DENIED, counted and logged as a refused read.
 * A revoke that commits makes step 4 fail from its block on, an erase
 * step 3.
 *
 * The cryptography (open the sealed fragment, check it, decode the
 * capsule, re-encapsulate: a few hundred microseconds) runs on libuv's
 * worker pool, at most NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX at a time, so
 * the loop never does more than the checks above for a request. The
 * opened kfrag lives only in the job, which wipes it before it returns.
 * A call is finished once its job is back, so the RPC server's close
 * waits for the job and the node outlives it.
 *
 * Not here: the scheme and the seal (crypto/pre.h, crypto/pre_seal.h),
 * deciding access (contracts/: the access request's result is the
 * decision).
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "ehr/v1/node.pb-c.h"
#include "ehr/v1/state.pb-c.h"
#include "ehr/v1/tx.pb-c.h"
#include "node_internal.h"
#include "pre_seal.h"

#define METHOD "GetCapsuleFragment"

/* One request's work, on the worker pool. */
struct capsule_job {
    struct node *node;
    struct rpc_call *call;
    uv_work_t work;
    uint8_t consent_id[EHR_HASH_BYTES];
    uint8_t sealed[EHR_PRE_SEALED_KFRAG_BYTES];
    uint8_t capsule[EHR_PRE_CAPSULE_BYTES];
    uint8_t cfrag[EHR_PRE_CFRAG_BYTES];
    uint8_t delegating_key[EHR_PRE_PUBLIC_BYTES]; /* as the grant names it */
    uint64_t delay_ms;                            /* node_test_faults.capsule_delay_ms */
    int rc;
    ehr_diag why;
};

/* The body of the committed transaction HASH, decoded (free with
 * ehr__v1__tx_body__free_unpacked), and its result if RESULT is not NULL
 * (decoded likewise; NULL for the empty one). Returns 0, EHR_ENOTFOUND,
 * or EHR_ECORRUPT. */
static int tx_body_get(ledger *l, const uint8_t hash[EHR_HASH_BYTES], Ehr__V1__TxBody **body,
                       Ehr__V1__TxResult **result)
{
    ledger_tx_location loc;
    uint8_t *env = NULL, *res = NULL;
    size_t env_len = 0, res_len = 0;
    *body = NULL;
    if (result != NULL)
        *result = NULL;
    int rc = ledger_tx_get(l, hash, &loc, &env, &env_len, result != NULL ? &res : NULL,
                           result != NULL ? &res_len : NULL, NULL);
    if (rc != 0)
        return rc;
    ledger_tx_view v;
    rc = ledger_tx_envelope_parse(env, env_len, &v, NULL);
    if (rc == 0) {
        *body = ehr__v1__tx_body__unpack(NULL, v.body_len, v.body);
        rc = *body == NULL ? EHR_ECORRUPT : 0;
    }
    if (rc == 0 && result != NULL && res != NULL) {
        *result = ehr__v1__tx_result__unpack(NULL, res_len, res);
        if (*result == NULL) {
            ehr__v1__tx_body__free_unpacked(*body, NULL);
            *body = NULL;
            rc = EHR_ECORRUPT;
        }
    }
    ehr_free(env);
    ehr_free(res);
    return rc;
}

static void answer(node__answer *a, enum rpc_status status, const char *msg)
{
    *a = (node__answer){.status = status};
    snprintf(a->msg, sizeof a->msg, "%s", msg);
}

/*
 * Steps 2-5 of the file's comment for the signed request Q of READER:
 * fills J's consent id, sealed fragment and capsule. Returns 0, or -1 with
 * *A failed (a refusal counted).
 */
static int capsule_authorise(struct node *n, const Ehr__V1__GetCapsuleFragmentRequest *q,
                             const struct node__reader *reader, struct capsule_job *j,
                             node__answer *a)
{
    Ehr__V1__TxBody *permit = NULL, *grant = NULL, *anchor = NULL;
    Ehr__V1__TxResult *result = NULL;
    Ehr__V1__ConsentEntry *consent = NULL;
    const char *refusal = NULL;
    int out = -1;
    int rc = tx_body_get(n->ledger, q->record_id.data, &anchor, NULL);
    if (rc == EHR_ENOTFOUND ||
        (rc == 0 && anchor->payload_case != EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR)) {
        answer(a, RPC_STATUS_NOT_FOUND, "no record has this id on the ledger");
        goto done;
    }
    if (rc != 0) {
        answer(a, RPC_STATUS_INTERNAL, "cannot read the record's anchor");
        goto done;
    }
    rc = tx_body_get(n->ledger, q->permit_tx.data, &permit, &result);
    if (rc != 0 && rc != EHR_ENOTFOUND) {
        answer(a, RPC_STATUS_INTERNAL, "cannot read permit_tx");
        goto done;
    }
    if (rc == EHR_ENOTFOUND || permit->payload_case != EHR__V1__TX_BODY__PAYLOAD_ACCESS_REQUEST ||
        permit->signer.len != EHR_SCHNORR_PUBLIC_BYTES ||
        memcmp(permit->signer.data, reader->key, EHR_SCHNORR_PUBLIC_BYTES) != 0 ||
        permit->access_request->record_id.len != EHR_HASH_BYTES ||
        memcmp(permit->access_request->record_id.data, q->record_id.data, EHR_HASH_BYTES) != 0 ||
        result == NULL || result->code != EHR__V1__TX_RESULT_CODE__TX_RESULT_OK ||
        result->decision != EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT ||
        result->consent_id.len != EHR_HASH_BYTES) {
        refusal = "permit_tx is not a committed access request of yours for this record that a "
                  "consent permitted";
        goto done;
    }
    bool erased = false;
    if ((rc = node__state_record_erased(n->ledger, q->record_id.data, &erased)) != 0) {
        answer(a, RPC_STATUS_INTERNAL, "cannot read the record's entry");
        goto done;
    }
    if (erased) {
        answer(a, RPC_STATUS_FAILED_PRECONDITION,
               "the record was erased by its patient: no node makes a capsule fragment for it");
        node__reads_refused(n, METHOD, RPC_STATUS_FAILED_PRECONDITION, &q->auth->requester_key,
                            &q->record_id);
        goto done;
    }
    memcpy(j->consent_id, result->consent_id.data, EHR_HASH_BYTES);
    uint8_t k[CONTRACTS_KEY_BYTES_MAX], *v = NULL;
    size_t klen = contracts_key(k, CONTRACTS_PREFIX_CONSENT, j->consent_id, NULL, NULL);
    size_t vlen = 0;
    rc = ledger_state_get(n->ledger, k, klen, &v, &vlen, NULL);
    if (rc == 0) {
        consent = ehr__v1__consent_entry__unpack(NULL, vlen, v);
        ehr_free(v);
        rc = consent == NULL ? EHR_ECORRUPT : 0;
    }
    if (rc == 0)
        rc = tx_body_get(n->ledger, j->consent_id, &grant, NULL);
    if (rc == 0 && grant->payload_case != EHR__V1__TX_BODY__PAYLOAD_CONSENT_GRANT)
        rc = EHR_ECORRUPT;
    if (rc != 0) {
        answer(a, RPC_STATUS_INTERNAL, "cannot read the consent the permit names");
        goto done;
    }
    uint64_t block_ms = n->tip.time_ms;
    if (consent->revoked) {
        refusal = "the consent that permitted this access has been revoked";
        goto done;
    }
    if (block_ms < consent->valid_from_ms || block_ms >= consent->valid_until_ms) {
        refusal = "the consent that permitted this access is not in its period (block time)";
        goto done;
    }
    const Ehr__V1__ConsentGrant *g = grant->consent_grant;
    size_t found = g->n_key_fragments;
    for (size_t i = 0; i < g->n_key_fragments && found == g->n_key_fragments; i++) {
        uint8_t recipient[EHR_KX_PUBLIC_BYTES];
        if (ehr_pre_sealed_kfrag_recipient(g->key_fragments[i].data, g->key_fragments[i].len,
                                           recipient, NULL) == 0 &&
            memcmp(recipient, n->id->kx.public_key, EHR_KX_PUBLIC_BYTES) == 0)
            found = i;
    }
    if (found == g->n_key_fragments) {
        refusal = "the consent carries no key fragment for this node";
        goto done;
    }
    const ProtobufCBinaryData capsule = anchor->record_anchor->key_capsule;
    if (capsule.len != EHR_PRE_CAPSULE_BYTES) {
        answer(a, RPC_STATUS_FAILED_PRECONDITION,
               "the record's anchor carries no proxy re-encryption capsule");
        goto done;
    }
    if (g->delegating_key.len != EHR_PRE_PUBLIC_BYTES) { /* the rules ask for it */
        answer(a, RPC_STATUS_INTERNAL, "the consent names no delegating key");
        goto done;
    }
    memcpy(j->delegating_key, g->delegating_key.data, EHR_PRE_PUBLIC_BYTES);
    memcpy(j->sealed, g->key_fragments[found].data, EHR_PRE_SEALED_KFRAG_BYTES);
    memcpy(j->capsule, capsule.data, EHR_PRE_CAPSULE_BYTES);
    out = 0;
done:
    if (refusal != NULL) {
        answer(a, RPC_STATUS_PERMISSION_DENIED, refusal);
        node__reads_refused(n, METHOD, RPC_STATUS_PERMISSION_DENIED, &q->auth->requester_key,
                            &q->record_id);
    }
    if (anchor != NULL)
        ehr__v1__tx_body__free_unpacked(anchor, NULL);
    if (permit != NULL)
        ehr__v1__tx_body__free_unpacked(permit, NULL);
    if (result != NULL)
        ehr__v1__tx_result__free_unpacked(result, NULL);
    if (grant != NULL)
        ehr__v1__tx_body__free_unpacked(grant, NULL);
    if (consent != NULL)
        ehr__v1__consent_entry__free_unpacked(consent, NULL);
    return out;
}

/* On the worker pool: open the fragment, check it, re-encapsulate. */
static void capsule_job_run(uv_work_t *w)
{
    struct capsule_job *j = w->data;
    ehr_pre_kfrag kfrag;
    ehr_pre_capsule capsule;
    ehr_pre_cfrag cfrag;
    if (j->delay_ms > 0) /* a test's fault (node_test_faults): fill the limit */
        uv_sleep((unsigned)j->delay_ms);
    j->rc = ehr_pre_kfrag_unseal(&kfrag, j->sealed, sizeof j->sealed, &j->node->id->kx, &j->why);
    /* The kfrag names the keys it was made for; its signature must hold
     * for them (a patient's tool that sealed garbage is caught here, not
     * by the grantee). */
    if (j->rc == 0 && ehr_pre_kfrag_verify(&kfrag, kfrag.delegating_key, kfrag.receiving_key) != 0)
        j->rc = ehr_diag_fail(&j->why, EHR_EBADSIG, "the key fragment's signature fails");
    /* ... and it must be made from the delegating key the patient signed
     * in the grant: a fragment sealed under another key (a tool's fault, or
     * a forgery slipped into a grant) is refused, never answered. */
    if (j->rc == 0 &&
        sodium_memcmp(kfrag.delegating_key, j->delegating_key, EHR_PRE_PUBLIC_BYTES) != 0)
        j->rc = ehr_diag_fail(&j->why, EHR_EBADSIG,
                              "the key fragment was made from another delegating key than the "
                              "consent names");
    if (j->rc == 0) {
        ehr_diag why;
        j->rc = ehr_pre_capsule_decode(&capsule, j->capsule, sizeof j->capsule, &why);
        if (j->rc != 0)
            ehr_diag_fail(&j->why, j->rc, "the record's capsule: %s", why.msg);
    }
    if (j->rc == 0)
        j->rc = ehr_pre_reencapsulate(&kfrag, &capsule, &cfrag);
    if (j->rc == 0)
        ehr_pre_cfrag_encode(&cfrag, j->cfrag);
    ehr_pre_kfrag_wipe(&kfrag);
    sodium_memzero(j->sealed, sizeof j->sealed);
}

static void capsule_job_done(uv_work_t *w, int status)
{
    (void)status; /* never cancelled: we do not call uv_cancel */
    struct capsule_job *j = w->data;
    struct node *n = j->node;
    EHR_ASSERT(n->capsules.inflight_count > 0);
    n->capsules.inflight_count--;
    if (j->rc == 0) {
        Ehr__V1__GetCapsuleFragmentResponse r = EHR__V1__GET_CAPSULE_FRAGMENT_RESPONSE__INIT;
        r.cfrag = (ProtobufCBinaryData){EHR_PRE_CFRAG_BYTES, j->cfrag};
        r.consent_id = (ProtobufCBinaryData){EHR_HASH_BYTES, j->consent_id};
        r.delegating_key = (ProtobufCBinaryData){EHR_PRE_PUBLIC_BYTES, j->delegating_key};
        uint8_t buf[EHR_PRE_CFRAG_BYTES + EHR_HASH_BYTES + EHR_PRE_PUBLIC_BYTES + 16];
        size_t len = ehr__v1__get_capsule_fragment_response__get_packed_size(&r);
        EHR_ASSERT(len <= sizeof buf);
        ehr__v1__get_capsule_fragment_response__pack(&r, buf);
        n->capsules.answered_count++;
        rpc_call_reply(j->call, buf, len);
    } else if (j->rc == EHR_EINVAL || j->rc == EHR_ETRUNCATED || j->rc == EHR_EBADSIG ||
               j->rc == EHR_ENOTFOUND) {
        /* What the patient sealed for this node does not serve: refused,
         * as a consent without a fragment for it is. */
        char msg[EHR_DIAG_BYTES_MAX + 64];
        snprintf(msg, sizeof msg, "the consent's key fragment for this node does not serve: %s",
                 j->why.msg);
        ehr_log(EHR_LOG_WARN, "capsule fragment refused", "why=\"%s\"", j->why.msg);
        rpc_call_fail(j->call, RPC_STATUS_PERMISSION_DENIED, msg);
    } else {
        ehr_log(EHR_LOG_ERROR, "capsule fragment failed", "err=%s why=\"%s\"", ehr_errname(j->rc),
                j->why.msg);
        rpc_call_fail(j->call, RPC_STATUS_INTERNAL, "re-encapsulation failed");
    }
    sodium_memzero(j, sizeof *j);
    ehr_free(j);
}

static void get_capsule_fragment(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Ehr__V1__GetCapsuleFragmentRequest *q =
        ehr__v1__get_capsule_fragment_request__unpack(NULL, len, req);
    if (q == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a GetCapsuleFragmentRequest");
        return;
    }
    node__answer a = {0};
    struct node__reader reader = {0};
    struct capsule_job *j = NULL;
    char msg[160];
    if (q->record_id.len != EHR_HASH_BYTES || q->permit_tx.len != EHR_HASH_BYTES) {
        answer(&a, RPC_STATUS_INVALID_ARGUMENT, "record_id and permit_tx are 32 bytes each");
    } else if (node__read_authenticate(n, METHOD, &q->base, &q->auth, q->record_id, &reader, &a) !=
               0) {
        /* failed, said */
    } else if (n->capsules.inflight_count == NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX) {
        snprintf(msg, sizeof msg,
                 "%u capsule fragments are being made, the limit: try again shortly",
                 NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX);
        answer(&a, RPC_STATUS_RESOURCE_EXHAUSTED, msg);
    } else {
        j = ehr_calloc(1, sizeof *j);
        if (capsule_authorise(n, q, &reader, j, &a) != 0) {
            sodium_memzero(j, sizeof *j);
            ehr_free(j);
            j = NULL;
        }
    }
    ehr__v1__get_capsule_fragment_request__free_unpacked(q, NULL);
    if (j == NULL) {
        rpc_call_fail(call, a.status, a.msg);
        return;
    }
    j->node = n;
    j->call = call;
    j->delay_ms = n->applying.test_faults.capsule_delay_ms;
    j->work.data = j;
    n->capsules.inflight_count++;
    int rc = uv_queue_work(n->loop, &j->work, capsule_job_run, capsule_job_done);
    EHR_ASSERT(rc == 0); /* only fails for a NULL callback */
}

void node__capsule_service_add(struct node *n)
{
    n->capsules.inflight_count = 0;
    rpc_server_add_unary(n->rpc, "/ehr.v1.Node/" METHOD, get_capsule_fragment, n);
}
