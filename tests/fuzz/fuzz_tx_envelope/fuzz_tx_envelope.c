/*
 * fuzz_tx_envelope - libFuzzer target for the transaction envelope parser
 * and the full admission check (ledger_tx_envelope_parse, ledger_tx_check).
 *
 * Oracle beyond "no crash": our canonical parser accepts exactly the inputs
 * that protobuf-c decodes to an envelope with a non-empty body and a 64-byte
 * signature and re-encodes to the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "ledger.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (ehr_crypto_init() != 0)
            abort();
        ready = 1;
    }
    ledger_tx_view view;
    ehr_diag diag;
    int ours = ledger_tx_envelope_parse(data, size, &view, &diag);
    if (size <= EHR_TX_BYTES_MAX) {
        bool canonical = false;
        Ehr__V1__TxEnvelope *pb = ehr__v1__tx_envelope__unpack(NULL, size, data);
        if (pb != NULL) {
            size_t n = ehr__v1__tx_envelope__get_packed_size(pb);
            if (n == size && pb->body.len > 0 && pb->signature.len == EHR_SCHNORR_SIG_BYTES &&
                pb->base.n_unknown_fields == 0) {
                uint8_t *again = malloc(n);
                ehr__v1__tx_envelope__pack(pb, again);
                canonical = memcmp(again, data, n) == 0;
                free(again);
            }
            ehr__v1__tx_envelope__free_unpacked(pb, NULL);
        }
        if (canonical != (ours == 0))
            abort();
    }
    ledger_tx_rules rules = {.chain_id = "ehr-test-1", .now_ms = 1700000000000ull};
    ledger_tx tx;
    if (ledger_tx_check(data, size, &rules, &tx, &diag) == 0) {
        if (ours != 0 || tx.body->signer.len != EHR_SCHNORR_PUBLIC_BYTES ||
            tx.body->nonce.len != EHR_TX_NONCE_BYTES)
            abort();
        ledger_tx_release(&tx);
    }
    return 0;
}
