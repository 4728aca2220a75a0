/*
 * fuzz_backup_header - libFuzzer target for the backup file header's
 * decoder (node_backup_header_decode, node/backup.h), which `ehrctl backup
 * inspect` and `ehrctl restore` run on a file an operator hands them.
 *
 * Each input is decoded twice: as it is (almost always refused on the
 * header's own checksum, which is what a damaged file meets), and with that
 * checksum recomputed over the input's first bytes, so that the fuzzer
 * reaches every field check behind it. Oracle beyond "no crash": a refusal
 * leaves INFO zeroed and says why; an accepted header has a valid chain id,
 * a non-zero applied index, a snapshot within the limit and file_bytes =
 * header + snapshot, and encodes back to the same bytes.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "backup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *h, size_t size)
{
    struct node_backup_info info;
    ehr_diag diag = {{0}};
    int rc = node_backup_header_decode(h, size, "fuzz", &info, &diag);
    if (rc != 0) {
        static const struct node_backup_info zero;
        if (rc > 0 || diag.msg[0] == '\0' || memcmp(&info, &zero, sizeof info) != 0)
            abort();
        return;
    }
    size_t id_len = strlen(info.chain.chain_id);
    if (size < NODE_BACKUP_HEADER_BYTES || id_len < 1 || id_len > EHR_CHAIN_ID_BYTES_MAX ||
        info.tip.applied_index == 0 || info.snapshot_bytes > LEDGER_SNAPSHOT_BYTES_MAX ||
        info.file_bytes != NODE_BACKUP_HEADER_BYTES + info.snapshot_bytes ||
        info.format_version != NODE_BACKUP_FORMAT_VERSION)
        abort();
    uint8_t again[NODE_BACKUP_HEADER_BYTES];
    node_backup_header_encode(&info, again);
    if (memcmp(again, h, NODE_BACKUP_HEADER_BYTES) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = true;
    }
    check(data, size);
    if (size < NODE_BACKUP_HEADER_BYTES)
        return 0;
    uint8_t h[NODE_BACKUP_HEADER_BYTES];
    memcpy(h, data, sizeof h);
    enum { SUM_AT = NODE_BACKUP_HEADER_BYTES - NODE_BACKUP_CHECKSUM_BYTES };
    crypto_generichash(h + SUM_AT, NODE_BACKUP_CHECKSUM_BYTES, h, SUM_AT, NULL, 0);
    check(h, sizeof h);
    return 0;
}
