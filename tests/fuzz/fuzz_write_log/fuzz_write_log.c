/*
 * fuzz_write_log - libFuzzer target for the write-log record decoder
 * (ledger__writes_record_open), which reads StoredWrites records back from
 * the ledger's files.
 *
 * The input is the record's body (the `writes` and `results` fields); the
 * harness puts the checksum in front, so the fuzzer reaches the decoder
 * instead of stopping at the checksum. Oracle beyond "no crash": what the
 * decoder accepts, protobuf-c decodes to the same writes and results, and
 * encoding the decoded record again gives the same bytes (one byte form);
 * every key, value and result lies inside the input and within its limit.
 */
#include <stdlib.h>
#include <string.h>

#include "ledger_internal.h"
#include "ehr/v1/ledger.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (ehr_crypto_init() != 0)
            abort();
        ready = 1;
    }
    const uint64_t height = 42;
    size_t len = 2 + LEDGER__CHECKSUM_BYTES + size;
    uint8_t *record = malloc(len);
    record[0] = (1 << 3) | LEDGER__WIRE_LEN;
    record[1] = LEDGER__CHECKSUM_BYTES;
    if (size > 0)
        memcpy(record + 2 + LEDGER__CHECKSUM_BYTES, data, size);
    ledger__block_checksum(record + 2, height, record + 2 + LEDGER__CHECKSUM_BYTES, size);
    ledger__write_log log;
    if (ledger__writes_record_open(record, len, height, &log) != 0) {
        free(record);
        return 0;
    }
    const ledger_state_write *writes = log.writes;
    size_t count = log.write_count;
    Ehr__V1__StoredWrites *pb = ehr__v1__stored_writes__unpack(NULL, len, record);
    if (pb == NULL || pb->n_writes != count || pb->n_results != log.result_count)
        abort();
    if (log.result_count > EHR_BLOCK_TX_COUNT_MAX)
        abort();
    for (size_t i = 0; i < log.result_count; i++) {
        const ledger_bytes *r = &log.results[i];
        if (r->len > EHR_TX_RESULT_BYTES_MAX || pb->results[i].len != r->len)
            abort();
        if (r->len > 0 && (r->data < record || r->data + r->len > record + len ||
                           memcmp(pb->results[i].data, r->data, r->len) != 0))
            abort();
    }
    for (size_t i = 0; i < count; i++) {
        const ledger_state_write *w = &writes[i];
        if (w->key_len == 0 || w->key_len > EHR_STATE_KEY_BYTES_MAX ||
            w->value_len > EHR_STATE_VALUE_BYTES_MAX || (w->remove && w->value_len > 0))
            abort();
        if (w->key < record || w->key + w->key_len > record + len)
            abort();
        if (w->value_len > 0 && (w->value < record || w->value + w->value_len > record + len))
            abort();
        if (pb->writes[i]->key.len != w->key_len ||
            memcmp(pb->writes[i]->key.data, w->key, w->key_len) != 0 ||
            pb->writes[i]->value.len != w->value_len || pb->writes[i]->remove != w->remove)
            abort();
    }
    ehr__v1__stored_writes__free_unpacked(pb, NULL);
    size_t n = ledger__writes_record_size(&log);
    uint8_t *again = malloc(n);
    ledger__writes_record_write(again, n, height, &log);
    if (n != len || memcmp(again, record, n) != 0)
        abort();
    free(again);
    ledger__write_log_release(&log);
    free(record);
    return 0;
}
