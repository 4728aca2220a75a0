/* raft_test_util.c - message deep copies and hashes for tests (see the header). */
#include "raft_test_util.h"

#include <string.h>

static size_t align16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

struct raft_message *rt_msg_clone(const struct raft_message *m)
{
    size_t total = align16(sizeof *m);
    total += align16((size_t)m->entry_count * sizeof(struct raft_entry));
    for (uint32_t i = 0; i < m->entry_count; i++)
        total += align16(m->entries[i].size);
    if (m->snapshot != NULL)
        total += align16(sizeof *m->snapshot);
    total += align16(m->size);
    uint8_t *p = ehr_malloc(total);
    struct raft_message *c = (struct raft_message *)p;
    *c = *m;
    p += align16(sizeof *m);
    if (m->entry_count > 0) {
        struct raft_entry *entries = (struct raft_entry *)p;
        p += align16((size_t)m->entry_count * sizeof(struct raft_entry));
        for (uint32_t i = 0; i < m->entry_count; i++) {
            entries[i] = m->entries[i];
            if (m->entries[i].size > 0) {
                memcpy(p, m->entries[i].data, m->entries[i].size);
                entries[i].data = p;
                p += align16(m->entries[i].size);
            }
        }
        c->entries = entries;
    }
    if (m->snapshot != NULL) {
        memcpy(p, m->snapshot, sizeof *m->snapshot);
        c->snapshot = (const struct raft_snapshot_meta *)p;
        p += align16(sizeof *m->snapshot);
    }
    if (m->size > 0) {
        memcpy(p, m->data, m->size);
        c->data = p;
    }
    return c;
}

void rt_msg_free(struct raft_message *m)
{
    ehr_free(m);
}

uint64_t rt_hash(uint64_t h, const void *data, size_t size)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < size; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t rt_entry_hash(const struct raft_entry *e)
{
    uint64_t h = RT_HASH_INIT;
    uint64_t head[3] = {e->index, e->term, (uint64_t)e->type};
    h = rt_hash(h, head, sizeof head);
    if (e->size > 0)
        h = rt_hash(h, e->data, e->size);
    return h;
}
