/*
 * fuzz_genesis - libFuzzer target for genesis decoding and validation
 * (ledger_genesis_parse) and block 0 derivation.
 *
 * Oracle beyond "no crash": a document we accept encodes back to the same
 * bytes, and block 0 derived from it parses and checks.
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
    Ehr__V1__Genesis *g;
    ehr_diag diag;
    if (ledger_genesis_parse(data, size, &g, &diag) != 0)
        return 0;
    uint8_t *again, *block;
    size_t again_len, block_len;
    if (ledger_genesis_encode(g, &again, &again_len, &diag) != 0 || again_len != size ||
        memcmp(again, data, size) != 0)
        abort();
    ehr_free(again);
    ehr__v1__genesis__free_unpacked(g, NULL);
    if (ledger_genesis_block_build(data, size, &block, &block_len, &diag) != 0)
        abort();
    ledger_block_view view;
    if (ledger_block_parse(block, block_len, &view, &diag) != 0 ||
        ledger_block_check(&view, LEDGER_CHECK_ALL, "any", NULL, NULL, &diag) != 0)
        abort();
    ledger_block_view_release(&view);
    ehr_free(block);
    return 0;
}
