/*
 * fuzz_block - libFuzzer target for block parsing and checking
 * (ledger_block_parse, ledger_block_check with every check on).
 *
 * Oracle beyond "no crash": a block our parser accepts is one protobuf-c
 * decodes and re-encodes to the same bytes, with as many envelopes as the
 * header says, each inside the input.
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
    ledger_block_view view;
    ehr_diag diag;
    if (ledger_block_parse(data, size, &view, &diag) != 0)
        return 0;
    Ehr__V1__Block *pb = ehr__v1__block__unpack(NULL, size, data);
    if (pb == NULL || pb->n_txs != view.header.tx_count)
        abort();
    size_t n = ehr__v1__block__get_packed_size(pb);
    uint8_t *again = malloc(n > 0 ? n : 1);
    ehr__v1__block__pack(pb, again);
    if (n != size || memcmp(again, data, n) != 0)
        abort();
    free(again);
    ehr__v1__block__free_unpacked(pb, NULL);
    for (uint32_t i = 0; i < view.header.tx_count; i++)
        if (view.txs[i].offset > size || view.txs[i].length > size - view.txs[i].offset)
            abort();
    long failed;
    (void)ledger_block_check(&view, LEDGER_CHECK_ALL, "ehr-test-1", NULL, &failed, &diag);
    ledger_block_view_release(&view);
    return 0;
}
