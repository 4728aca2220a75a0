/*
 * fuzz_raft_step.c - libFuzzer target for the consensus core's input
 * boundary: arbitrary sequences of ticks and peer messages (any type, term,
 * indices, entries, snapshot chunks) fed to one instance of a 3-voter
 * cluster, each followed by the full ready protocol against in-memory
 * storage. Whatever a peer sends must be refused or handled: no crash, no
 * failed assertion, the term and commit index never go back, the storage
 * always accepts what the core asks it to persist; the only way to stop is
 * EHR_EDIVERGED, when the input contradicts what the node committed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"

/* A message term: mostly small, sometimes at or past RAFT_TERM_MAX and at
 * the top of the range, where a term adopted and then raised would wrap. */
static uint64_t fuzz_term(uint8_t b)
{
    static const uint64_t high[] = {RAFT_TERM_MAX - 1, RAFT_TERM_MAX, RAFT_TERM_MAX + 1,
                                    UINT64_MAX - 1, UINT64_MAX};
    if (b >= 256 - EHR_ARRAY_COUNT(high))
        return high[b - (256 - EHR_ARRAY_COUNT(high))];
    return b % 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

enum { ENTRIES_MAX = 4, DATA_MAX = 32 }; /* DATA_MAX holds a 3-voter configuration */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct raft_mem_storage *ms = raft_mem_storage_create(size % 2 == 0);
    struct raft_storage st;
    raft_mem_storage_interface(ms, &st);
    struct raft_config conf = {.voter_count = 3, .voters = {1, 2, 3}};
    uint8_t cbuf[RAFT_CONFIG_ENCODED_BYTES_MAX];
    struct raft_entry boot;
    if (raft_bootstrap_entry(&conf, cbuf, &boot) != 0 || raft_mem_storage_append(ms, &boot, 1) != 0)
        abort();
    struct raft_options opt;
    raft_options_default(&opt);
    opt.id = 1;
    opt.election_ticks = 3;
    opt.heartbeat_ticks = 1;
    opt.append_entries_max = 2;
    opt.inflight_max = 2;
    opt.snapshot_chunk_bytes = RAFT_SNAPSHOT_CHUNK_BYTES_MIN;
    struct raft *r = NULL;
    if (raft_create(&r, &opt, &st) != 0)
        abort();
    struct input in = {data, size};
    uint64_t term = 0, commit = 0;
    uint8_t payload[ENTRIES_MAX][DATA_MAX];
    while (in.n > 0) {
        uint8_t op = take(&in);
        if (op % 5 == 0) {
            if (raft_tick(r) != 0)
                abort();
        } else if (op % 5 == 1) {
            uint8_t b[DATA_MAX] = {0};
            raft_propose(r, b, take(&in) % DATA_MAX);
        } else {
            struct raft_entry entries[ENTRIES_MAX];
            struct raft_snapshot_meta meta = {.config = conf};
            struct raft_message m = {.type = (enum raft_message_type)(take(&in) % 13),
                                     .from = take(&in) % 5,
                                     .to = take(&in) % 8 == 0 ? 2 : 1,
                                     .term = fuzz_term(take(&in)),
                                     .index = take(&in) % 16,
                                     .log_term = take(&in) % 8,
                                     .commit = take(&in) % 16,
                                     .hint_index = take(&in) % 16,
                                     .hint_term = take(&in) % 8,
                                     .context = take(&in) % 4};
            uint8_t flags = take(&in);
            m.reject = flags & 1;
            m.transfer = flags & 2;
            m.done = flags & 4;
            m.entry_count = (flags >> 3) % (ENTRIES_MAX + 1);
            for (uint32_t i = 0; i < m.entry_count; i++) {
                uint32_t len = take(&in) % DATA_MAX;
                for (uint32_t k = 0; k < len; k++)
                    payload[i][k] = take(&in);
                entries[i] = (struct raft_entry){.term = take(&in) % 8,
                                                 .index = m.index + 1 + i,
                                                 .type = (enum raft_entry_type)(take(&in) % 4),
                                                 .size = len,
                                                 .data = len > 0 ? payload[i] : NULL};
                if (entries[i].type == RAFT_ENTRY_CONFIG && take(&in) % 2 == 0) {
                    int c = raft_config_encode(&conf, payload[i]);
                    entries[i].size = (uint32_t)c;
                    entries[i].data = payload[i];
                }
            }
            m.entries = m.entry_count > 0 ? entries : NULL;
            if (flags & 0x80) {
                meta.index = take(&in) % 16;
                meta.term = take(&in) % 8;
                m.snapshot = &meta;
                m.offset = take(&in) % 64;
                m.size = take(&in) % DATA_MAX;
                m.data = m.size > 0 ? payload[0] : NULL;
            }
            int err = raft_step(r, &m);
            if (err != 0 && err != EHR_EPROTO)
                abort();
        }
        while (raft_ready_pending(r)) { /* halted instances have nothing pending */
            struct raft_ready rd;
            if (raft_ready_get(r, &rd) != 0 || raft_mem_storage_persist(ms, &rd) != 0 ||
                raft_ready_advance(r) != 0)
                abort();
        }
        struct raft_status s;
        raft_status_get(r, &s);
        if (s.halted == EHR_EDIVERGED)
            break; /* a "leader" contradicted what we committed: stopping is right */
        if (s.halted != 0 || s.hard_state.term < term || s.hard_state.commit < commit ||
            s.hard_state.commit > s.last_index)
            abort();
        term = s.hard_state.term;
        commit = s.hard_state.commit;
    }
    raft_destroy(r);
    raft_mem_storage_destroy(ms);
    return 0;
}
