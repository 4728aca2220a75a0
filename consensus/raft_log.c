/*
 * raft_log.c - the core's view of its log: the persisted entries it reads
 * through struct raft_storage plus the unstable suffix it holds in memory
 * until the caller has persisted it; and the arena that holds entry data for
 * one ready batch. No storage writes happen here: the caller persists.
 */
#include "raft_internal.h"

#include <string.h>

/* ---- arena ---- */

static struct raft__arena_block *arena_block_new(size_t cap)
{
    struct raft__arena_block *b = ehr_malloc(sizeof *b + cap);
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

void *raft__arena_alloc(struct raft__arena *a, size_t size)
{
    size_t need = (size + 15) & ~(size_t)15;
    EHR_ASSERT(need >= size); /* no overflow */
    if (a->cur != NULL && a->cur->cap - a->cur->used >= need) {
        void *p = a->cur->data + a->cur->used;
        a->cur->used += need;
        return p;
    }
    /* Next kept block, if it fits; else a new one after the current. */
    struct raft__arena_block *next = a->cur != NULL ? a->cur->next : a->first;
    if (next == NULL || next->cap < need) {
        size_t cap = need > RAFT__ARENA_BLOCK_BYTES ? need : RAFT__ARENA_BLOCK_BYTES;
        struct raft__arena_block *b = arena_block_new(cap);
        b->next = next;
        if (a->cur != NULL)
            a->cur->next = b;
        else
            a->first = b;
        next = b;
    }
    EHR_ASSERT(next->used == 0);
    a->cur = next;
    next->used = need;
    return next->data;
}

void raft__arena_reset(struct raft__arena *a)
{
    struct raft__arena_block **link = &a->first;
    unsigned kept = 0;
    while (*link != NULL) {
        struct raft__arena_block *b = *link;
        if (b->cap != RAFT__ARENA_BLOCK_BYTES || kept == RAFT__ARENA_BLOCKS_KEPT) {
            *link = b->next;
            ehr_free(b);
            continue;
        }
        b->used = 0;
        kept++;
        link = &b->next;
    }
    a->cur = NULL;
}

void raft__arena_free(struct raft__arena *a)
{
    struct raft__arena_block *b = a->first;
    while (b != NULL) {
        struct raft__arena_block *next = b->next;
        ehr_free(b);
        b = next;
    }
    a->first = NULL;
    a->cur = NULL;
}

void raft__unstable_free(struct raft__unstable *u)
{
    ehr_free(u->entries);
    raft__arena_free(&u->arena);
    memset(u, 0, sizeof *u);
}

/* ---- log view ---- */

void raft__halt(struct raft *r, int err)
{
    EHR_ASSERT(err < 0);
    if (r->halted == 0)
        r->halted = err;
}

static uint64_t storage_last(const struct raft *r)
{
    return r->st.last_index(r->st.ctx);
}

uint64_t raft__log_first(const struct raft *r)
{
    if (r->u.snap_pending)
        return r->u.snap.index + 1;
    return r->st.first_index(r->st.ctx);
}

uint64_t raft__log_last(const struct raft *r)
{
    if (r->u.count > 0)
        return r->u.offset + r->u.count - 1;
    if (r->u.snap_pending)
        return r->u.snap.index;
    uint64_t last = storage_last(r);
    return last < r->u.offset ? last : r->u.offset - 1;
}

uint64_t raft__log_persisted_last(const struct raft *r)
{
    if (r->u.snap_pending)
        return 0; /* nothing of the new log is durable yet */
    uint64_t last = storage_last(r);
    return last < r->u.offset ? last : r->u.offset - 1;
}

int raft__log_term(struct raft *r, uint64_t index, uint64_t *term)
{
    const struct raft__unstable *u = &r->u;
    if (u->count > 0 && index >= u->offset && index < u->offset + u->count) {
        *term = u->entries[index - u->offset].term;
        return 0;
    }
    if (u->snap_pending) {
        if (index == u->snap.index) {
            *term = u->snap.term;
            return 0;
        }
        return EHR_ENOTFOUND;
    }
    if (index >= u->offset)
        return EHR_ENOTFOUND; /* beyond the end, or about to be replaced */
    if (index == 0) {
        *term = 0;
        return 0;
    }
    int err = r->st.term(r->st.ctx, index, term);
    if (err != 0 && err != EHR_ENOTFOUND)
        raft__halt(r, err);
    return err;
}

uint64_t raft__log_last_term(struct raft *r)
{
    uint64_t term = 0;
    int err = raft__log_term(r, raft__log_last(r), &term);
    RAFT_ASSERT(err == 0 || r->halted != 0); /* the last entry's term is always known */
    return term;
}

bool raft__log_match(struct raft *r, uint64_t index, uint64_t term)
{
    uint64_t t;
    return raft__log_term(r, index, &t) == 0 && t == term;
}

int raft__log_entries(struct raft *r, uint64_t lo, uint64_t hi, uint64_t bytes_max,
                      struct raft_entry *out, size_t cap, size_t *count)
{
    EHR_ASSERT(lo < hi);
    EHR_ASSERT(cap > 0);
    *count = 0;
    if (lo < raft__log_first(r))
        return EHR_ENOTFOUND;
    RAFT_ASSERT(hi <= raft__log_last(r) + 1);
    uint64_t bytes = 0;
    size_t n = 0;
    const struct raft__unstable *u = &r->u;
    uint64_t stored_end = u->snap_pending ? lo : (u->offset < hi ? u->offset : hi);
    if (lo < stored_end) {
        size_t got = 0;
        int err = r->st.entries(r->st.ctx, lo, stored_end, bytes_max, out, cap, &got);
        if (err != 0) {
            raft__halt(r, err);
            return err;
        }
        RAFT_ASSERT(got > 0 && got <= cap);
        for (size_t i = 0; i < got; i++) {
            RAFT_ASSERT(out[i].index == lo + i); /* storage returns what was asked */
            bytes += out[i].size;
            if (!r->st.stable_pointers && out[i].size > 0) {
                uint8_t *copy = raft__arena_alloc(&r->ready_arena, out[i].size);
                memcpy(copy, out[i].data, out[i].size);
                out[i].data = copy;
            }
        }
        n = got;
        if (lo + got < stored_end || n == cap || bytes >= bytes_max) {
            *count = n;
            return 0;
        }
    }
    for (uint64_t i = lo + n; i < hi && n < cap; i++) {
        const struct raft_entry *e = &u->entries[i - u->offset];
        if (n > 0 && bytes + e->size > bytes_max)
            break;
        out[n++] = *e;
        bytes += e->size;
    }
    *count = n;
    return 0;
}

static void unstable_reserve(struct raft__unstable *u, size_t count)
{
    if (count <= u->cap)
        return;
    size_t cap = u->cap == 0 ? 256 : u->cap;
    while (cap < count)
        cap *= 2;
    u->entries = ehr_realloc(u->entries, cap * sizeof *u->entries);
    u->cap = cap;
}

void raft__log_append(struct raft *r, const struct raft_entry *entries, size_t count)
{
    struct raft__unstable *u = &r->u;
    if (count == 0)
        return;
    uint64_t first = entries[0].index;
    uint64_t last = raft__log_last(r);
    RAFT_ASSERT(first <= last + 1); /* no gap */
    RAFT_ASSERT(first > r->commit); /* a committed entry is never replaced */
    if (first < u->offset) {
        /* Replaces persisted entries: the caller truncates storage at persist. */
        RAFT_ASSERT(!u->snap_pending);
        u->offset = first;
        u->count = 0;
    } else if (first < u->offset + u->count) {
        u->count = first - u->offset;
    }
    RAFT_ASSERT(first == u->offset + u->count);
    unstable_reserve(u, u->count + count);
    for (size_t i = 0; i < count; i++) {
        struct raft_entry *dst = &u->entries[u->count + i];
        *dst = entries[i];
        if (entries[i].size > 0) {
            uint8_t *copy = raft__arena_alloc(&u->arena, entries[i].size);
            memcpy(copy, entries[i].data, entries[i].size);
            dst->data = copy;
        } else {
            dst->data = NULL;
        }
    }
    u->count += count;
}

void raft__log_find_conflict_by_term(struct raft *r, uint64_t index, uint64_t term,
                                     uint64_t *out_index, uint64_t *out_term)
{
    uint64_t i = index;
    for (;;) {
        uint64_t t;
        if (raft__log_term(r, i, &t) != 0) {
            *out_index = i;
            *out_term = 0;
            return;
        }
        if (t <= term || i == 0) {
            *out_index = i;
            *out_term = t;
            return;
        }
        i--;
    }
}
