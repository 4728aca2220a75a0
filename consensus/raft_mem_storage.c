/*
 * raft_mem_storage.c - struct raft_storage kept in memory: the hard state,
 * the log, the latest snapshot and a staging area for a snapshot being
 * received. Used by the tests, the benchmark and the simulator (which puts
 * its own crash-prone "disk" behind it); the node uses LMDB instead.
 *
 * Entry data lives in append-only blocks that are freed only when every
 * entry ever written into them is compacted, so pointers handed out stay
 * valid until compaction (stable_pointers) even across truncation. Not
 * durable and not thread-safe.
 */
#include "raft.h"

#include <string.h>

enum { MEM_BLOCK_BYTES = 1 << 20 };

struct mem_block {
    struct mem_block *next;
    size_t cap;
    size_t used;
    uint64_t index_max; /* highest entry index ever written here */
    uint8_t data[];
};

struct raft_mem_storage {
    bool stable_pointers;
    struct raft_hard_state hs;
    struct raft_snapshot_meta snap;
    uint8_t *snap_data;
    uint64_t snap_size;
    uint8_t *staged;
    uint64_t staged_size;
    uint64_t staged_cap;
    uint64_t base_index; /* first_index - 1 */
    uint64_t base_term;
    struct raft_entry *entries; /* entries[start .. start+count) = log [base+1 ..] */
    size_t start;
    size_t count;
    size_t cap;
    struct mem_block *blocks;
    struct mem_block *tail;
};

struct raft_mem_storage *raft_mem_storage_create(bool stable_pointers)
{
    struct raft_mem_storage *ms = ehr_calloc(1, sizeof *ms);
    ms->stable_pointers = stable_pointers;
    return ms;
}

static void blocks_free_all(struct raft_mem_storage *ms)
{
    struct mem_block *b = ms->blocks;
    while (b != NULL) {
        struct mem_block *next = b->next;
        ehr_free(b);
        b = next;
    }
    ms->blocks = NULL;
    ms->tail = NULL;
}

void raft_mem_storage_destroy(struct raft_mem_storage *ms)
{
    if (ms == NULL)
        return;
    blocks_free_all(ms);
    ehr_free(ms->entries);
    ehr_free(ms->snap_data);
    ehr_free(ms->staged);
    ehr_free(ms);
}

static uint64_t last_index(const struct raft_mem_storage *ms)
{
    return ms->base_index + ms->count;
}

static uint8_t *data_alloc(struct raft_mem_storage *ms, uint32_t size, uint64_t index)
{
    struct mem_block *b = ms->tail;
    if (b == NULL || b->cap - b->used < size) {
        size_t cap = size > MEM_BLOCK_BYTES ? size : MEM_BLOCK_BYTES;
        b = ehr_malloc(sizeof *b + cap);
        b->next = NULL;
        b->cap = cap;
        b->used = 0;
        b->index_max = 0;
        if (ms->tail != NULL)
            ms->tail->next = b;
        else
            ms->blocks = b;
        ms->tail = b;
    }
    uint8_t *p = b->data + b->used;
    b->used += size;
    if (index > b->index_max)
        b->index_max = index;
    return p;
}

/* ---- the read interface ---- */

static int ms_hard_state(void *ctx, struct raft_hard_state *out)
{
    const struct raft_mem_storage *ms = ctx;
    *out = ms->hs;
    return 0;
}

static int ms_snapshot_meta(void *ctx, struct raft_snapshot_meta *out, uint64_t *size)
{
    const struct raft_mem_storage *ms = ctx;
    *out = ms->snap;
    *size = ms->snap_size;
    return 0;
}

static int ms_snapshot_read(void *ctx, uint64_t offset, uint8_t *buf, size_t cap, size_t *read)
{
    const struct raft_mem_storage *ms = ctx;
    if (offset > ms->snap_size)
        return EHR_EINVAL;
    uint64_t left = ms->snap_size - offset;
    size_t n = left < cap ? (size_t)left : cap;
    if (n > 0)
        memcpy(buf, ms->snap_data + offset, n);
    *read = n;
    return 0;
}

static uint64_t ms_first_index(void *ctx)
{
    const struct raft_mem_storage *ms = ctx;
    return ms->base_index + 1;
}

static uint64_t ms_last_index(void *ctx)
{
    return last_index(ctx);
}

static int ms_term(void *ctx, uint64_t index, uint64_t *term)
{
    const struct raft_mem_storage *ms = ctx;
    if (index == ms->base_index) {
        *term = ms->base_term;
        return 0;
    }
    if (index < ms->base_index || index > last_index(ms))
        return EHR_ENOTFOUND;
    *term = ms->entries[ms->start + (index - ms->base_index - 1)].term;
    return 0;
}

static int ms_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t bytes_max,
                      struct raft_entry *out, size_t cap, size_t *count)
{
    const struct raft_mem_storage *ms = ctx;
    *count = 0;
    if (lo <= ms->base_index || hi > last_index(ms) + 1 || lo >= hi || cap == 0)
        return EHR_EINVAL;
    uint64_t bytes = 0;
    size_t n = 0;
    const struct raft_entry *src = &ms->entries[ms->start + (lo - ms->base_index - 1)];
    for (uint64_t i = lo; i < hi && n < cap; i++, n++) {
        if (n > 0 && bytes + src[n].size > bytes_max)
            break;
        out[n] = src[n];
        bytes += src[n].size;
    }
    *count = n;
    return 0;
}

void raft_mem_storage_interface(struct raft_mem_storage *ms, struct raft_storage *out)
{
    *out = (struct raft_storage){.ctx = ms,
                                 .hard_state = ms_hard_state,
                                 .snapshot_meta = ms_snapshot_meta,
                                 .snapshot_read = ms_snapshot_read,
                                 .first_index = ms_first_index,
                                 .last_index = ms_last_index,
                                 .term = ms_term,
                                 .entries = ms_entries,
                                 .stable_pointers = ms->stable_pointers};
}

/* ---- writes ---- */

void raft_mem_storage_set_hard_state(struct raft_mem_storage *ms, const struct raft_hard_state *hs)
{
    ms->hs = *hs;
}

int raft_mem_storage_append(struct raft_mem_storage *ms, const struct raft_entry *entries,
                            size_t count)
{
    if (count == 0)
        return 0;
    uint64_t first = entries[0].index;
    if (first <= ms->base_index || first > last_index(ms) + 1)
        return EHR_EINVAL;
    for (size_t i = 0; i < count; i++) {
        if (entries[i].index != first + i || (entries[i].size > 0 && entries[i].data == NULL))
            return EHR_EINVAL;
        if (i > 0 && entries[i].term < entries[i - 1].term)
            return EHR_EINVAL;
    }
    ms->count = first - ms->base_index - 1; /* replace from `first` on */
    if (ms->start + ms->count + count > ms->cap) {
        if (ms->start > 0) {
            memmove(ms->entries, ms->entries + ms->start, ms->count * sizeof *ms->entries);
            ms->start = 0;
        }
        size_t cap = ms->cap == 0 ? 1024 : ms->cap;
        while (cap < ms->count + count)
            cap *= 2;
        if (cap != ms->cap) {
            ms->entries = ehr_realloc(ms->entries, cap * sizeof *ms->entries);
            ms->cap = cap;
        }
    }
    struct raft_entry *dst = &ms->entries[ms->start + ms->count];
    for (size_t i = 0; i < count; i++) {
        dst[i] = entries[i];
        if (entries[i].size > 0) {
            uint8_t *copy = data_alloc(ms, entries[i].size, entries[i].index);
            memcpy(copy, entries[i].data, entries[i].size);
            dst[i].data = copy;
        } else {
            dst[i].data = NULL;
        }
    }
    ms->count += count;
    return 0;
}

int raft_mem_storage_stage_chunk(struct raft_mem_storage *ms, uint64_t offset, const uint8_t *data,
                                 uint32_t size)
{
    if (offset == 0)
        ms->staged_size = 0;
    if (offset != ms->staged_size || (size > 0 && data == NULL))
        return EHR_EINVAL;
    if (ms->staged_size + size > ms->staged_cap) {
        uint64_t cap = ms->staged_cap == 0 ? 4096 : ms->staged_cap;
        while (cap < ms->staged_size + size)
            cap *= 2;
        ms->staged = ehr_realloc(ms->staged, (size_t)cap);
        ms->staged_cap = cap;
    }
    if (size > 0)
        memcpy(ms->staged + ms->staged_size, data, size);
    ms->staged_size += size;
    return 0;
}

int raft_mem_storage_install_staged(struct raft_mem_storage *ms,
                                    const struct raft_snapshot_meta *meta)
{
    if (meta->index == 0 || meta->term == 0)
        return EHR_EINVAL;
    ehr_free(ms->snap_data);
    ms->snap_data = ms->staged; /* the staged chunks become the snapshot */
    ms->snap_size = ms->staged_size;
    ms->staged = NULL;
    ms->staged_size = 0;
    ms->staged_cap = 0;
    ms->snap = *meta;
    ms->base_index = meta->index;
    ms->base_term = meta->term;
    ms->start = 0;
    ms->count = 0;
    blocks_free_all(ms);
    return 0;
}

static void compact(struct raft_mem_storage *ms, uint64_t index)
{
    if (index <= ms->base_index)
        return;
    uint64_t drop = index - ms->base_index;
    ms->base_term = ms->entries[ms->start + drop - 1].term;
    ms->start += (size_t)drop;
    ms->count -= (size_t)drop;
    ms->base_index = index;
    /* free leading blocks whose every entry is now compacted */
    while (ms->blocks != NULL && ms->blocks != ms->tail && ms->blocks->index_max <= index) {
        struct mem_block *b = ms->blocks;
        ms->blocks = b->next;
        ehr_free(b);
    }
}

int raft_mem_storage_snapshot(struct raft_mem_storage *ms, const struct raft_snapshot_meta *meta,
                              const uint8_t *data, uint64_t size, uint64_t compact_index)
{
    uint64_t term = 0;
    if (meta->index == 0 || meta->index < ms->snap.index || ms_term(ms, meta->index, &term) != 0 ||
        term != meta->term || compact_index > meta->index || (size > 0 && data == NULL))
        return EHR_EINVAL;
    uint8_t *copy = ehr_malloc(size > 0 ? (size_t)size : 1);
    if (size > 0)
        memcpy(copy, data, (size_t)size);
    ehr_free(ms->snap_data);
    ms->snap_data = copy;
    ms->snap_size = size;
    ms->snap = *meta;
    compact(ms, compact_index);
    return 0;
}

const uint8_t *raft_mem_storage_snapshot_data(const struct raft_mem_storage *ms, uint64_t *size)
{
    *size = ms->snap_size;
    return ms->snap_data;
}

int raft_mem_storage_persist(struct raft_mem_storage *ms, const struct raft_ready *rd)
{
    int err;
    if (rd->snapshot != NULL) {
        const struct raft_snapshot_chunk *c = rd->snapshot;
        err = raft_mem_storage_stage_chunk(ms, c->offset, c->data, c->size);
        if (err != 0)
            return err;
        if (c->install) {
            err = raft_mem_storage_install_staged(ms, &c->meta);
            if (err != 0)
                return err;
        }
    }
    if ((err = raft_mem_storage_append(ms, rd->entries, rd->entry_count)) != 0)
        return err;
    if (rd->hard_state_changed)
        raft_mem_storage_set_hard_state(ms, &rd->hard_state);
    return 0;
}
