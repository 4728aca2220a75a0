/*
 * fuzz_raft_record.c - libFuzzer target for the consensus record decoders
 * (entry, hard state, snapshot meta, configuration). The first input byte
 * picks the decoder. A decoder must never read out of bounds, and whatever
 * it accepts must re-encode to exactly the same bytes (one form per value).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    /* decode from an exact-size heap copy so ASan sees any over-read */
    uint8_t *copy = malloc(n > 0 ? n : 1);
    memcpy(copy, p, n);
    switch (data[0] % 4) {
    case 0: {
        struct raft_entry e;
        if (raft_entry_record_decode(copy, n, &e) == 0) {
            uint8_t *again = malloc(n);
            if (raft_entry_record_encode(&e, again, n) != (int)n || memcmp(again, copy, n) != 0)
                abort();
            free(again);
        }
        break;
    }
    case 1: {
        struct raft_hard_state hs;
        if (raft_hard_state_record_decode(copy, n, &hs) == 0) {
            uint8_t again[RAFT_HARD_STATE_RECORD_BYTES];
            if (raft_hard_state_record_encode(&hs, again, sizeof again) != (int)n ||
                memcmp(again, copy, n) != 0)
                abort();
        }
        break;
    }
    case 2: {
        struct raft_snapshot_meta m;
        if (raft_snapshot_meta_record_decode(copy, n, &m) == 0) {
            uint8_t again[RAFT_SNAPSHOT_META_RECORD_BYTES];
            if (raft_snapshot_meta_record_encode(&m, again, sizeof again) != (int)n ||
                memcmp(again, copy, n) != 0)
                abort();
        }
        break;
    }
    default: {
        struct raft_config c;
        if (raft_config_decode(copy, n, &c) == 0) {
            uint8_t again[RAFT_CONFIG_ENCODED_BYTES_MAX];
            if (raft_config_encode(&c, again) != (int)n || memcmp(again, copy, n) != 0)
                abort();
        }
        break;
    }
    }
    free(copy);
    return 0;
}
