/*
 * tx.c - transactions: the canonical envelope framing, the hash, the full
 * admission check (body, chain, expiry, signature) and signing.
 *
 * Not here: what a payload means or whether its signer may send it
 * (contracts/), and the mempool's policies (node/).
 */
#include "ledger_format_internal.h"

#include <stdlib.h>
#include <string.h>

int ledger_tx_envelope_parse(const uint8_t *bytes, size_t len, ledger_tx_view *out, ehr_diag *diag)
{
    EHR_ASSERT(out != NULL);
    if (len > EHR_TX_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "transaction is %zu bytes, over the limit of %d",
                             len, EHR_TX_BYTES_MAX);
    if (bytes == NULL && len > 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "transaction bytes missing");
    ledger__reader r = {.data = bytes, .len = len};
    if (!ledger__tag_next(&r, 1, LEDGER__WIRE_LEN))
        return ehr_diag_fail(diag, len == 0 ? EHR_ETRUNCATED : EHR_EINVAL,
                             "transaction envelope does not start with its body (field 1)");
    ledger_span body;
    int rc = ledger__len_field_read(&r, 1, 1, EHR_TX_BODY_BYTES_MAX, &body);
    if (rc == EHR_ETOOBIG)
        return ehr_diag_fail(diag, rc, "transaction body is over the limit of %d bytes",
                             EHR_TX_BODY_BYTES_MAX);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "transaction body field is %s",
                             rc == EHR_ETRUNCATED ? "truncated" : "malformed or empty");
    if (!ledger__tag_next(&r, 2, LEDGER__WIRE_LEN))
        return ehr_diag_fail(diag, r.pos == len ? EHR_ETRUNCATED : EHR_EINVAL,
                             "transaction envelope: signature (field 2) must follow the body");
    ledger_span sig;
    rc = ledger__len_field_read(&r, 2, EHR_SCHNORR_SIG_BYTES, EHR_SCHNORR_SIG_BYTES, &sig);
    if (rc != 0)
        return ehr_diag_fail(diag, rc == EHR_ETRUNCATED ? rc : EHR_EINVAL,
                             "transaction signature is %s, not exactly %d bytes",
                             rc == EHR_ETRUNCATED ? "truncated" : "the wrong size",
                             EHR_SCHNORR_SIG_BYTES);
    if (r.pos != len)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "transaction envelope has %zu bytes after the signature "
                             "(unknown or repeated fields are not accepted)",
                             len - r.pos);
    out->body = bytes + body.offset;
    out->body_len = body.length;
    out->signature = bytes + sig.offset;
    return 0;
}

void ledger_tx_hash(const uint8_t *body, size_t body_len, uint8_t out[EHR_HASH_BYTES])
{
    ehr_sha256(out, body, body_len);
}

void ledger_tx_release(ledger_tx *tx)
{
    if (tx == NULL)
        return;
    if (tx->body != NULL)
        ehr__v1__tx_body__free_unpacked(tx->body, NULL);
    tx->body = NULL;
}

/* The body's field rules after it decoded canonically. */
static int tx_body_rules(const Ehr__V1__TxBody *b, const ledger_tx_rules *rules, ehr_diag *diag)
{
    size_t chain_len = strlen(b->chain_id);
    if (chain_len == 0 || chain_len > EHR_CHAIN_ID_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "transaction chain id is empty or over %d bytes",
                             EHR_CHAIN_ID_BYTES_MAX);
    if (strcmp(b->chain_id, rules->chain_id) != 0) {
        /* The signer chose those bytes: shown only if they are a chain id. */
        if (ledger_chain_id_check(b->chain_id, NULL) != 0)
            return ehr_diag_fail(diag, EHR_ECHAIN,
                                 "transaction names no valid chain id, not \"%s\"",
                                 rules->chain_id);
        return ehr_diag_fail(diag, EHR_ECHAIN, "transaction is for chain \"%s\", not \"%s\"",
                             b->chain_id, rules->chain_id);
    }
    if (b->signer.len != EHR_SCHNORR_PUBLIC_BYTES)
        return ehr_diag_fail(diag, EHR_EINVAL, "transaction signer is %zu bytes, not %d",
                             b->signer.len, EHR_SCHNORR_PUBLIC_BYTES);
    if (b->nonce.len != EHR_TX_NONCE_BYTES)
        return ehr_diag_fail(diag, EHR_EINVAL, "transaction nonce is %zu bytes, not %d",
                             b->nonce.len, EHR_TX_NONCE_BYTES);
    if (b->expiry_ms == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "transaction has no expiry");
    if (rules->now_ms > b->expiry_ms)
        return ehr_diag_fail(diag, EHR_EEXPIRED,
                             "transaction expired at %llu ms, it is now %llu ms",
                             (unsigned long long)b->expiry_ms, (unsigned long long)rules->now_ms);
    if (b->payload_case == EHR__V1__TX_BODY__PAYLOAD__NOT_SET)
        return ehr_diag_fail(diag, EHR_EINVAL, "transaction has no payload");
    return 0;
}

int ledger__tx_check(const uint8_t *bytes, size_t len, const ledger_tx_rules *rules,
                     const uint8_t known_hash[EHR_HASH_BYTES], ledger__key_cache *keys,
                     ledger_tx *out, ehr_diag *diag)
{
    EHR_ASSERT(rules != NULL && rules->chain_id != NULL);
    ledger_tx tx = {0};
    int rc = ledger_tx_envelope_parse(bytes, len, &tx.view, diag);
    if (rc != 0)
        return rc;
    tx.body = ehr__v1__tx_body__unpack(NULL, tx.view.body_len, tx.view.body);
    if (tx.body == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "transaction body does not decode as a TxBody");
    if (!ledger__proto_canonical(&tx.body->base, tx.view.body, tx.view.body_len)) {
        rc = ehr_diag_fail(diag, EHR_EINVAL,
                           "transaction body is not in canonical form (unknown, repeated, "
                           "default-valued or out-of-order fields)");
        goto fail;
    }
    rc = tx_body_rules(tx.body, rules, diag);
    if (rc != 0)
        goto fail;
    if (known_hash != NULL)
        memcpy(tx.hash, known_hash, EHR_HASH_BYTES);
    else
        ledger_tx_hash(tx.view.body, tx.view.body_len, tx.hash);
    if (rules->signature_checked) {
        if (out != NULL)
            *out = tx;
        else
            ledger_tx_release(&tx);
        return 0;
    }
    /* Parsing an x-only key recovers its y coordinate (a square root):
     * worth skipping when the same signer signed the previous transaction. */
    ledger__key_cache local = {0};
    if (keys == NULL)
        keys = &local;
    if (!keys->valid ||
        memcmp(keys->key.bytes, tx.body->signer.data, EHR_SCHNORR_PUBLIC_BYTES) != 0) {
        keys->valid = ehr_public_key_parse(&keys->key, tx.body->signer.data) == 0;
        if (!keys->valid) {
            rc = ehr_diag_fail(diag, EHR_EINVAL, "transaction signer is not a valid public key");
            goto fail;
        }
    }
    if (ehr_schnorr_verify(&keys->key, tx.hash, tx.view.signature) != 0) {
        rc = ehr_diag_fail(diag, EHR_EBADSIG, "transaction signature does not verify");
        goto fail;
    }
    if (out != NULL)
        *out = tx;
    else
        ledger_tx_release(&tx);
    return 0;
fail:
    ledger_tx_release(&tx);
    return rc;
}

int ledger_tx_check(const uint8_t *bytes, size_t len, const ledger_tx_rules *rules, ledger_tx *out,
                    ehr_diag *diag)
{
    return ledger__tx_check(bytes, len, rules, NULL, NULL, out, diag);
}

int ledger_tx_envelope_build(const uint8_t *body, size_t body_len, const ehr_signing_key *key,
                             uint8_t **out, size_t *out_len)
{
    EHR_ASSERT(key != NULL && out != NULL && out_len != NULL);
    if (body_len > EHR_TX_BODY_BYTES_MAX)
        return EHR_ETOOBIG;
    if (body == NULL || body_len == 0)
        return EHR_EINVAL;
    uint8_t hash[EHR_HASH_BYTES];
    ledger_tx_hash(body, body_len, hash);
    size_t total = 1 + ledger__varint_size(body_len) + body_len + 2 + EHR_SCHNORR_SIG_BYTES;
    EHR_ASSERT(total <= EHR_TX_BYTES_MAX);
    uint8_t *p = ehr_malloc(total);
    size_t n = 0;
    p[n++] = (1 << 3) | LEDGER__WIRE_LEN;
    n += ledger__varint_write(p + n, body_len);
    memcpy(p + n, body, body_len);
    n += body_len;
    p[n++] = (2 << 3) | LEDGER__WIRE_LEN;
    p[n++] = EHR_SCHNORR_SIG_BYTES;
    int rc = ehr_schnorr_sign(key, hash, p + n);
    if (rc != 0) {
        ehr_free(p);
        return rc;
    }
    n += EHR_SCHNORR_SIG_BYTES;
    EHR_ASSERT(n == total);
    *out = p;
    *out_len = total;
    return 0;
}
