/*
 * replay.c - the replay `ehrctl ledger verify` hands to ledger_verify: each
 * block's transactions applied again through contracts/ on the state as of
 * the block before, the way a node applies a committed block (node/apply.c:
 * one contracts_block, each transaction in order with the signature verdict
 * the node would have had), and the results and state writes compared with
 * the ones the ledger stores for the block.
 *
 * Not here: the state before each block (ledger_verify rebuilds it from the
 * write log and hands a view of it), the checks of the block itself (the
 * ledger's).
 */
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"
#include "contracts.h"
#include "ledger.h"

/* The ledger passes its verdicts on as contracts/ takes them. */
_Static_assert((int)LEDGER_TX_SIG_UNCHECKED == (int)CONTRACTS_SIG_UNCHECKED, "same verdicts");
_Static_assert((int)LEDGER_TX_SIG_VALID == (int)CONTRACTS_SIG_VALID, "same verdicts");
_Static_assert((int)LEDGER_TX_SIG_INVALID == (int)CONTRACTS_SIG_INVALID, "same verdicts");

enum {
    /* A message names a key by its printable prefix and at most this many
     * bytes of the rest, in hex, and a value by its size and this many
     * bytes of its SHA-256 (values differ anywhere, often only near the
     * end): enough to tell them apart, short enough for one line. */
    KEY_SHOWN_BYTES = 32,
    VALUE_DIGEST_SHOWN_BYTES = 8,
    KEY_TEXT_BYTES = EHR_STATE_KEY_BYTES_MAX + 2 * KEY_SHOWN_BYTES + 4,
    VALUE_TEXT_BYTES = 64,
    RESULT_TEXT_BYTES = CONTRACTS_REASON_BYTES_MAX + 96,
    CODE_NAME_BYTES = 32,
};

/* RESULT (a stored or replayed TxResult) in words: its code, its reason and
 * what else it holds. */
static void result_text(const ledger_bytes *result, char out[RESULT_TEXT_BYTES])
{
    if (result->len == 0) {
        snprintf(out, RESULT_TEXT_BYTES, "OK");
        return;
    }
    Ehr__V1__TxResult *r = ehr__v1__tx_result__unpack(NULL, result->len, result->data);
    if (r == NULL) {
        snprintf(out, RESULT_TEXT_BYTES, "%zu bytes that are not a TxResult", result->len);
        return;
    }
    char code[CODE_NAME_BYTES];
    cli__result_code_name(r->code, code, sizeof code);
    int n = snprintf(out, RESULT_TEXT_BYTES, "%s", code);
    if (r->reason[0] != '\0' && n >= 0 && n < RESULT_TEXT_BYTES)
        n += snprintf(out + n, RESULT_TEXT_BYTES - (size_t)n, " \"%s\"", r->reason);
    if (r->decision != 0 && n >= 0 && n < RESULT_TEXT_BYTES)
        n += snprintf(out + n, RESULT_TEXT_BYTES - (size_t)n, ", decision %d", (int)r->decision);
    if (r->gas_used != 0 && n >= 0 && n < RESULT_TEXT_BYTES)
        snprintf(out + n, RESULT_TEXT_BYTES - (size_t)n, ", gas %llu",
                 (unsigned long long)r->gas_used);
    ehr__v1__tx_result__free_unpacked(r, NULL);
}

/* KEY in words: its ASCII prefix (the keys are "prefix/" then binary
 * parts: contracts.h), then the rest in hex, cut after KEY_SHOWN_BYTES. */
static void key_text(const uint8_t *key, size_t len, char out[KEY_TEXT_BYTES])
{
    size_t prefix = 0;
    for (size_t i = 0; i < len && key[i] >= 0x20 && key[i] < 0x7f; i++)
        if (key[i] == '/')
            prefix = i + 1;
    memcpy(out, key, prefix);
    size_t rest = len - prefix, shown = rest > KEY_SHOWN_BYTES ? KEY_SHOWN_BYTES : rest;
    ehr_hex_encode(out + prefix, key + prefix, shown);
    memcpy(out + prefix + 2 * shown, rest > shown ? "..." : "", rest > shown ? 4 : 1);
}

/* What the write W does, in words; W NULL: the block does not write the key. */
static void write_text(const ledger_state_write *w, char out[VALUE_TEXT_BYTES])
{
    if (w == NULL) {
        snprintf(out, VALUE_TEXT_BYTES, "not written");
        return;
    }
    if (w->remove) {
        snprintf(out, VALUE_TEXT_BYTES, "deleted");
        return;
    }
    uint8_t digest[EHR_HASH_BYTES];
    char hex[2 * VALUE_DIGEST_SHOWN_BYTES + 1];
    ehr_sha256(digest, w->value, w->value_len);
    ehr_hex_encode(hex, digest, VALUE_DIGEST_SHOWN_BYTES);
    snprintf(out, VALUE_TEXT_BYTES, "%zu bytes (sha256 %s...)", w->value_len, hex);
}

static int key_cmp(const ledger_state_write *a, const ledger_state_write *b)
{
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    if (c != 0)
        return c;
    return a->key_len < b->key_len ? -1 : a->key_len > b->key_len ? 1 : 0;
}

static bool write_same(const ledger_state_write *a, const ledger_state_write *b)
{
    if (a->remove != b->remove)
        return false;
    if (a->remove)
        return true;
    return a->value_len == b->value_len &&
           (a->value_len == 0 || memcmp(a->value, b->value, a->value_len) == 0);
}

/*
 * The stored writes against the replayed ones. A node stores exactly
 * contracts_block_writes (one write per key, sorted by key), so the two
 * lists must be equal entry by entry; the first entry where they part
 * names the key: the lower of the two, as one list has it and the other
 * does not, or the same key with another value.
 */
static int writes_compare(const ledger_replay_block *b, const ledger_state_write *replayed,
                          size_t replayed_count, ledger_replay_finding *finding, ehr_diag *diag)
{
    for (size_t i = 0; i < b->write_count || i < replayed_count; i++) {
        const ledger_state_write *s = i < b->write_count ? &b->writes[i] : NULL;
        const ledger_state_write *r = i < replayed_count ? &replayed[i] : NULL;
        int c = s == NULL ? 1 : r == NULL ? -1 : key_cmp(s, r);
        if (c == 0 && write_same(s, r))
            continue;
        const ledger_state_write *named = c <= 0 ? s : r;
        char key[KEY_TEXT_BYTES], stored[VALUE_TEXT_BYTES], again[VALUE_TEXT_BYTES];
        key_text(named->key, named->key_len, key);
        write_text(c <= 0 ? s : NULL, stored);
        write_text(c >= 0 ? r : NULL, again);
        finding->fault = LEDGER_FAULT_REPLAY_STATE;
        finding->tx_index = -1;
        return ehr_diag_fail(diag, EHR_ECORRUPT,
                             "state key %s differs after block %llu: stored %s, replayed %s", key,
                             (unsigned long long)b->view->header.height, stored, again);
    }
    return 0;
}

int cli__ledger_replay(void *ctx, const ledger_replay_block *b, ledger_replay_finding *finding,
                       ehr_diag *diag)
{
    (void)ctx;
    const ledger_block_header *h = &b->view->header;
    EHR_ASSERT(h->height > 0); /* block 0 has no transactions to replay */
    EHR_ASSERT(h->tx_count == 0 || b->results != NULL);
    struct contracts_state state = {
        .ctx = b->state->ctx, .get = b->state->get, .scan = b->state->scan};
    struct contracts_block_ctx bctx = {.height = h->height, .time_ms = h->time_ms};
    memcpy(bctx.proposer, h->proposer, EHR_SCHNORR_PUBLIC_BYTES);
    snprintf(bctx.chain_id, sizeof bctx.chain_id, "%s", b->chain_id);
    contracts_block *block;
    int rc = contracts_block_begin(&state, &bctx, &block);
    EHR_ASSERT(rc == 0); /* aborts only on out-of-memory */
    for (uint32_t i = 0; rc == 0 && i < h->tx_count; i++) {
        const ledger_span *span = &b->view->txs[i];
        struct contracts_tx tx = {.envelope = b->view->bytes + span->offset,
                                  .len = span->length,
                                  .hash = b->tx_hashes[i],
                                  .position = i,
                                  .sig = (enum contracts_sig)b->sigs[i]};
        struct contracts_tx_result r;
        rc = contracts_apply_tx(block, &tx, &r);
        if (rc != 0) {
            rc = ehr_diag_fail(diag, rc,
                               "transaction %u: %s (the state before the block cannot "
                               "be read, or holds a value the rules cannot decode)",
                               i, ehr_strerror(rc));
            break;
        }
        uint8_t bytes[CONTRACTS_RESULT_BYTES_MAX];
        ledger_bytes again = {.data = bytes, .len = contracts_tx_result_encode(&r, bytes)};
        const ledger_bytes *stored = &b->results[i];
        if (stored->len == again.len &&
            (again.len == 0 || memcmp(stored->data, again.data, again.len) == 0))
            continue;
        char stored_text[RESULT_TEXT_BYTES], again_text[RESULT_TEXT_BYTES];
        result_text(stored, stored_text);
        result_text(&again, again_text);
        if (strcmp(stored_text, again_text) == 0) /* they differ where words do not show */
            snprintf(again_text, sizeof again_text, "another encoding of it (%zu bytes, not %zu)",
                     again.len, stored->len);
        finding->fault = LEDGER_FAULT_REPLAY_RESULT;
        finding->tx_index = (long)i;
        rc = ehr_diag_fail(diag, EHR_ECORRUPT,
                           "block %llu: transaction %u's result differs: stored %s, replayed %s",
                           (unsigned long long)h->height, i, stored_text, again_text);
    }
    if (rc == 0) {
        const ledger_state_write *writes;
        size_t count = contracts_block_writes(block, &writes);
        rc = writes_compare(b, writes, count, finding, diag);
    }
    contracts_block_end(block);
    return rc;
}
