/*
 * block.c - a block's write set over the committed world state
 * (contracts.h): pending writes kept sorted by key, reads and prefix scans
 * that merge them over the state view, and per-transaction undo so that a
 * refused transaction changes nothing.
 *
 * Design notes.
 *
 * The write set is an array of entries sorted by key (binary search, insert
 * by moving the tail): a block writes at most CONTRACTS_BLOCK_KEYS_MAX keys,
 * most blocks far fewer, and the ledger wants them sorted anyway. Each
 * entry owns one allocation holding its key and value.
 *
 * Undo: the first time a transaction writes a key (the entry's stamp is not
 * this transaction's number), the entry's previous state (absent, or its
 * old value) is pushed on an undo log; abort replays the log backwards. A
 * commit drops the log. So a write costs a binary search and no scan of the
 * log, however many keys one transaction writes.
 *
 * Invariants (asserted):
 *   B1 entries are sorted by key, strictly ascending (one entry per key);
 *   B2 bytes = sum over entries of key_len + value_len, and bytes and count
 *      never pass the limits in contracts.h;
 *   B3 the undo log is empty whenever no transaction is in progress.
 */
#include <stdlib.h>
#include <string.h>

#include "contracts_internal.h"

struct entry {
    uint8_t *key; /* one allocation: key then value */
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    bool removed;
    uint64_t tx; /* the transaction that last wrote it (contracts_block.tx) */
};

struct undo {
    size_t key_len;
    uint8_t *key;     /* a copy, owned */
    bool existed;     /* an entry for the key was in the set before */
    struct entry old; /* that entry, owned by the undo record while it lasts */
};

struct contracts_block {
    const struct contracts_state *state;
    struct contracts_block_ctx ctx;
    struct entry *entries;
    size_t count, cap;
    size_t bytes;
    bool in_tx;
    uint64_t tx; /* counts transactions begun: tells an entry's first write in one */
    struct undo *undo;
    size_t undo_count, undo_cap;
    ledger_state_write *out; /* contracts_block_writes' array */
    size_t out_cap;
    uint8_t *scratch; /* contracts_block_scratch's buffer, or NULL until asked */
};

static int key_cmp(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    size_t n = a_len < b_len ? a_len : b_len;
    int c = n > 0 ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c;
    return a_len < b_len ? -1 : a_len > b_len ? 1 : 0;
}

/* Index of KEY in the set, or where it would go (*FOUND false). */
static size_t find(const contracts_block *b, const uint8_t *key, size_t key_len, bool *found)
{
    size_t lo = 0, hi = b->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(b->entries[mid].key, b->entries[mid].key_len, key, key_len);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static size_t entry_bytes(const struct entry *e)
{
    return e->key_len + e->value_len;
}

int contracts_block_begin(const struct contracts_state *state,
                          const struct contracts_block_ctx *ctx, contracts_block **out)
{
    EHR_ASSERT(state != NULL);
    EHR_ASSERT(state->get != NULL && state->scan != NULL);
    EHR_ASSERT(ctx != NULL && out != NULL);
    contracts_block *b = ehr_calloc(1, sizeof *b);
    b->state = state;
    b->ctx = *ctx;
    *out = b;
    return 0;
}

const struct contracts_block_ctx *contracts_block_context(const contracts_block *b)
{
    return &b->ctx;
}

void contracts_block_tx_begin(contracts_block *b)
{
    EHR_ASSERT(!b->in_tx);
    EHR_ASSERT(b->undo_count == 0); /* B3 */
    b->in_tx = true;
    b->tx++;
}

void contracts_block_tx_commit(contracts_block *b)
{
    EHR_ASSERT(b->in_tx);
    for (size_t i = 0; i < b->undo_count; i++) {
        ehr_free(b->undo[i].key);
        if (b->undo[i].existed)
            ehr_free(b->undo[i].old.key);
    }
    b->undo_count = 0;
    b->in_tx = false;
}

void contracts_block_tx_abort(contracts_block *b)
{
    EHR_ASSERT(b->in_tx);
    while (b->undo_count > 0) {
        struct undo *u = &b->undo[--b->undo_count];
        bool found;
        size_t i = find(b, u->key, u->key_len, &found);
        EHR_ASSERT(found); /* the transaction wrote it */
        b->bytes -= entry_bytes(&b->entries[i]);
        ehr_free(b->entries[i].key);
        if (u->existed) {
            b->entries[i] = u->old;
            b->bytes += entry_bytes(&u->old);
        } else {
            memmove(&b->entries[i], &b->entries[i + 1], (b->count - i - 1) * sizeof *b->entries);
            b->count--;
        }
        ehr_free(u->key);
    }
    b->in_tx = false;
}

/*
 * Record what the key's entry was before this transaction first wrote it.
 * Returns true if the undo record took the existing entry's memory: the
 * caller must then not free it.
 */
static bool undo_note(contracts_block *b, size_t i, bool found, const uint8_t *key, size_t key_len)
{
    if (found && b->entries[i].tx == b->tx)
        return false; /* noted at its first write in this transaction */
    if (b->undo_count == b->undo_cap) {
        b->undo_cap = b->undo_cap ? 2 * b->undo_cap : 16;
        b->undo = ehr_realloc(b->undo, b->undo_cap * sizeof *b->undo);
    }
    struct undo *u = &b->undo[b->undo_count++];
    u->key = ehr_malloc(key_len);
    memcpy(u->key, key, key_len);
    u->key_len = key_len;
    u->existed = found;
    if (found)
        u->old = b->entries[i];
    return found;
}

static int write_one(contracts_block *b, const uint8_t *key, size_t key_len, const uint8_t *value,
                     size_t value_len, bool removed)
{
    EHR_ASSERT(b->in_tx);
    if (key == NULL || key_len == 0 || key_len > EHR_STATE_KEY_BYTES_MAX)
        return EHR_EINVAL;
    if (value_len > EHR_STATE_VALUE_BYTES_MAX || (value_len > 0 && value == NULL))
        return EHR_EINVAL;
    bool found;
    size_t i = find(b, key, key_len, &found);
    size_t old_bytes = found ? entry_bytes(&b->entries[i]) : 0;
    size_t new_bytes = key_len + value_len;
    if (!found && b->count == CONTRACTS_BLOCK_KEYS_MAX)
        return EHR_ETOOBIG;
    if (b->bytes - old_bytes + new_bytes > CONTRACTS_BLOCK_BYTES_MAX)
        return EHR_ETOOBIG;
    bool taken = undo_note(b, i, found, key, key_len);
    uint8_t *mem = ehr_malloc(new_bytes);
    memcpy(mem, key, key_len);
    if (value_len > 0)
        memcpy(mem + key_len, value, value_len);
    struct entry e = {.key = mem,
                      .key_len = key_len,
                      .value = mem + key_len,
                      .value_len = value_len,
                      .removed = removed,
                      .tx = b->tx};
    if (found) {
        if (!taken)
            ehr_free(b->entries[i].key);
        b->entries[i] = e;
    } else {
        if (b->count == b->cap) {
            b->cap = b->cap ? 2 * b->cap : 64;
            b->entries = ehr_realloc(b->entries, b->cap * sizeof *b->entries);
        }
        memmove(&b->entries[i + 1], &b->entries[i], (b->count - i) * sizeof *b->entries);
        b->entries[i] = e;
        b->count++;
    }
    b->bytes = b->bytes - old_bytes + new_bytes;
    EHR_ASSERT(i == 0 || key_cmp(b->entries[i - 1].key, b->entries[i - 1].key_len, key, key_len) <
                             0); /* B1 */
    EHR_ASSERT(i + 1 >= b->count || key_cmp(key, key_len, b->entries[i + 1].key,
                                            b->entries[i + 1].key_len) < 0); /* B1 */
    return 0;
}

int contracts_block_put(contracts_block *b, const uint8_t *key, size_t key_len,
                        const uint8_t *value, size_t value_len)
{
    return write_one(b, key, key_len, value, value_len, false);
}

int contracts_block_delete(contracts_block *b, const uint8_t *key, size_t key_len)
{
    return write_one(b, key, key_len, NULL, 0, true);
}

int contracts_block_get(contracts_block *b, const uint8_t *key, size_t key_len, uint8_t *value,
                        size_t *len)
{
    EHR_ASSERT(value != NULL && len != NULL);
    if (key == NULL || key_len == 0 || key_len > EHR_STATE_KEY_BYTES_MAX)
        return EHR_EINVAL;
    bool found;
    size_t i = find(b, key, key_len, &found);
    if (found) {
        const struct entry *e = &b->entries[i];
        if (e->removed)
            return EHR_ENOTFOUND;
        if (e->value_len > 0)
            memcpy(value, e->value, e->value_len);
        *len = e->value_len;
        return 0;
    }
    return b->state->get(b->state->ctx, key, key_len, value, len);
}

/* A scan of the committed state merged with the pending writes. */
struct merge {
    contracts_block *b;
    size_t next; /* the next pending entry (in prefix order) not yet given */
    size_t end;  /* one past the last pending entry with the prefix */
    contracts_scan_fn fn;
    void *fn_ctx;
};

/* Give the pending entries before KEY (all of them when KEY is NULL). */
static int merge_pending_before(struct merge *m, const uint8_t *key, size_t key_len)
{
    while (m->next < m->end) {
        const struct entry *e = &m->b->entries[m->next];
        if (key != NULL && key_cmp(e->key, e->key_len, key, key_len) >= 0)
            return 0;
        m->next++;
        if (e->removed)
            continue;
        int rc = m->fn(m->fn_ctx, e->key, e->key_len, e->value, e->value_len);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int merge_committed(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                           size_t value_len)
{
    struct merge *m = ctx;
    int rc = merge_pending_before(m, key, key_len);
    if (rc != 0)
        return rc;
    if (m->next < m->end) {
        const struct entry *e = &m->b->entries[m->next];
        if (key_cmp(e->key, e->key_len, key, key_len) == 0) {
            m->next++; /* the pending write stands for this key */
            return e->removed ? 0 : m->fn(m->fn_ctx, e->key, e->key_len, e->value, e->value_len);
        }
    }
    return m->fn(m->fn_ctx, key, key_len, value, value_len);
}

static bool has_prefix(const struct entry *e, const uint8_t *prefix, size_t prefix_len)
{
    return e->key_len >= prefix_len && (prefix_len == 0 || memcmp(e->key, prefix, prefix_len) == 0);
}

int contracts_block_scan(contracts_block *b, const uint8_t *prefix, size_t prefix_len,
                         contracts_scan_fn fn, void *fn_ctx)
{
    EHR_ASSERT(fn != NULL);
    EHR_ASSERT(prefix != NULL || prefix_len == 0);
    bool found;
    struct merge m = {.b = b, .fn = fn, .fn_ctx = fn_ctx};
    m.next = prefix_len > 0 ? find(b, prefix, prefix_len, &found) : 0;
    m.end = m.next;
    while (m.end < b->count && has_prefix(&b->entries[m.end], prefix, prefix_len))
        m.end++;
    int rc = b->state->scan(b->state->ctx, prefix, prefix_len, merge_committed, &m);
    if (rc != 0)
        return rc;
    return merge_pending_before(&m, NULL, 0);
}

uint8_t *contracts_block_scratch(contracts_block *b)
{
    if (b->scratch == NULL)
        b->scratch = ehr_malloc(EHR_STATE_VALUE_BYTES_MAX);
    return b->scratch;
}

size_t contracts_block_writes(contracts_block *b, const ledger_state_write **out)
{
    EHR_ASSERT(!b->in_tx);
    EHR_ASSERT(out != NULL);
    if (b->count > b->out_cap) {
        b->out_cap = b->count;
        b->out = ehr_realloc(b->out, b->out_cap * sizeof *b->out);
    }
    size_t bytes = 0;
    for (size_t i = 0; i < b->count; i++) {
        const struct entry *e = &b->entries[i];
        b->out[i] = (ledger_state_write){.key = e->key,
                                         .key_len = e->key_len,
                                         .value = e->value,
                                         .value_len = e->value_len,
                                         .remove = e->removed};
        bytes += entry_bytes(e);
    }
    EHR_ASSERT(bytes == b->bytes); /* B2 */
    *out = b->out;
    return b->count;
}

void contracts_block_end(contracts_block *b)
{
    if (b == NULL)
        return;
    if (b->in_tx)
        contracts_block_tx_abort(b);
    for (size_t i = 0; i < b->count; i++)
        ehr_free(b->entries[i].key);
    ehr_free(b->entries);
    ehr_free(b->undo);
    ehr_free(b->out);
    ehr_free(b->scratch);
    ehr_free(b);
}
