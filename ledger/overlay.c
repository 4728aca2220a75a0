/*
 * overlay.c - the in-memory overlay of the blocks that are on the ledger but
 * not yet in the derived tables (derived.c): per block, its tx-index rows
 * and its world-state writes; across blocks, a hash table from tx hash to
 * location and an ordered map (a skip list) from state key to the newest
 * write of that key. Reads consult it before the derived tables.
 *
 * Not here: locking (derived.c holds the overlay lock around every call),
 * LMDB, and the decision of when blocks leave (the checkpoint).
 *
 * Memory: a block is one allocation (header, rows, writes, and a copy of
 * the result, key and value bytes), immutable once made, so the checkpointer reads
 * it without the lock; only the thread that drops it frees it. The hash
 * table's buckets and the skip list's nodes are the only other allocations.
 * Bucket index: SipHash of the tx hash under a random per-overlay key, so
 * transactions ground to collide in the low bits cannot make chains long.
 * Skip-list levels come from a PRNG, not from the keys, for the same reason.
 */
#include "ledger_internal.h"

#include <sodium.h>
#include <string.h>

/* Memory a node and a bucket slot cost, counted against the limit. */
enum {
    OVERLAY_NODE_BYTES = sizeof(ledger__ov_node) + 2 * sizeof(void *),
    OVERLAY_TX_BYTES = 2 * sizeof(void *),
    OVERLAY_BUCKETS_MIN = 1024,
};

_Static_assert(LEDGER__OV_LEVELS_MAX <= 32, "levels fit the PRNG's bits");
/* The largest block (ledger__ov_block_bytes at every limit) fits the
 * overlay alone, so an append never waits for room that cannot exist. */
enum { OVERLAY_ROW_BYTES_MAX = 256 };
_Static_assert(sizeof(ledger__ov_tx) + OVERLAY_TX_BYTES <= OVERLAY_ROW_BYTES_MAX, "tx row cost");
_Static_assert(sizeof(ledger_state_write) + OVERLAY_NODE_BYTES <= OVERLAY_ROW_BYTES_MAX,
               "state row cost");
_Static_assert(sizeof(ledger__ov_block) +
                       (uint64_t)EHR_BLOCK_TX_COUNT_MAX *
                           (OVERLAY_ROW_BYTES_MAX + EHR_TX_RESULT_BYTES_MAX) +
                       (uint64_t)EHR_BLOCK_STATE_WRITES_MAX * OVERLAY_ROW_BYTES_MAX +
                       EHR_BLOCK_STATE_BYTES_MAX <=
                   LEDGER_OVERLAY_BYTES_MAX,
               "the largest block fits the overlay");

size_t ledger__ov_block_bytes(const ledger__write_log *log)
{
    size_t n = sizeof(ledger__ov_block) +
               log->result_count * (sizeof(ledger__ov_tx) + OVERLAY_TX_BYTES) +
               log->write_count * (sizeof(ledger_state_write) + OVERLAY_NODE_BYTES);
    for (size_t i = 0; i < log->result_count; i++)
        n += log->results[i].len;
    for (size_t i = 0; i < log->write_count; i++)
        n += log->writes[i].key_len + (log->writes[i].remove ? 0 : log->writes[i].value_len);
    return n;
}

ledger__ov_block *ledger__ov_block_make(uint64_t height, const uint8_t (*hashes)[EHR_HASH_BYTES],
                                        const ledger_span *spans, const ledger__write_log *log)
{
    uint32_t tx_count = (uint32_t)log->result_count;
    size_t write_count = log->write_count;
    const ledger_state_write *writes = log->writes;
    EHR_ASSERT(log->result_count <= EHR_BLOCK_TX_COUNT_MAX);
    EHR_ASSERT(tx_count == 0 || hashes != NULL);
    EHR_ASSERT(tx_count == 0 || spans != NULL);
    EHR_ASSERT(tx_count == 0 || log->results != NULL);
    EHR_ASSERT(write_count == 0 || writes != NULL);
    size_t bytes = ledger__ov_block_bytes(log);
    ledger__ov_block *b = ehr_malloc(bytes);
    b->height = height;
    b->tx_count = tx_count;
    b->write_count = write_count;
    b->bytes = bytes;
    b->next = NULL;
    b->txs = (ledger__ov_tx *)(b + 1);
    b->writes = (ledger_state_write *)(b->txs + tx_count);
    uint8_t *arena = (uint8_t *)(b->writes + write_count);
    for (uint32_t i = 0; i < tx_count; i++) {
        ledger__ov_tx *t = &b->txs[i];
        const ledger_bytes *r = &log->results[i];
        EHR_ASSERT(r->len <= EHR_TX_RESULT_BYTES_MAX);
        memcpy(t->hash, hashes[i], EHR_HASH_BYTES);
        t->loc = (ledger_tx_location){
            .height = height, .index = i, .offset = spans[i].offset, .length = spans[i].length};
        t->result = (ledger_bytes){NULL, 0};
        if (r->len > 0) {
            memcpy(arena, r->data, r->len);
            t->result = (ledger_bytes){arena, r->len};
            arena += r->len;
        }
        t->next = NULL;
    }
    for (size_t i = 0; i < write_count; i++) {
        const ledger_state_write *w = &writes[i];
        ledger_state_write *c = &b->writes[i];
        *c = (ledger_state_write){.key = arena, .key_len = w->key_len, .remove = w->remove};
        memcpy(arena, w->key, w->key_len);
        arena += w->key_len;
        if (!w->remove && w->value_len > 0) {
            memcpy(arena, w->value, w->value_len);
            c->value = arena;
            c->value_len = w->value_len;
            arena += w->value_len;
        }
    }
    EHR_ASSERT(arena <= (uint8_t *)b + bytes);
    return b;
}

/* ---- Tx hash table ---- */

static size_t bucket_of(const ledger__overlay *ov, const uint8_t hash[EHR_HASH_BYTES])
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, hash, EHR_HASH_BYTES, ov->hash_key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return (size_t)(v & (ov->bucket_count - 1));
}

static void buckets_grow(ledger__overlay *ov)
{
    size_t old_count = ov->bucket_count;
    ledger__ov_tx **old = ov->buckets;
    ov->bucket_count = old_count * 2;
    ov->buckets = ehr_calloc(ov->bucket_count, sizeof *ov->buckets);
    for (size_t i = 0; i < old_count; i++) {
        ledger__ov_tx *t = old[i];
        while (t != NULL) {
            ledger__ov_tx *next = t->next;
            size_t j = bucket_of(ov, t->hash);
            t->next = ov->buckets[j];
            ov->buckets[j] = t;
            t = next;
        }
    }
    ehr_free(old);
}

const ledger__ov_tx *ledger__overlay_tx(const ledger__overlay *ov,
                                        const uint8_t hash[EHR_HASH_BYTES])
{
    for (const ledger__ov_tx *t = ov->buckets[bucket_of(ov, hash)]; t != NULL; t = t->next)
        if (memcmp(t->hash, hash, EHR_HASH_BYTES) == 0)
            return t;
    return NULL;
}

static void tx_remove(ledger__overlay *ov, const ledger__ov_tx *tx)
{
    ledger__ov_tx **p = &ov->buckets[bucket_of(ov, tx->hash)];
    while (*p != NULL && *p != tx)
        p = &(*p)->next;
    EHR_ASSERT(*p == tx); /* every row of an overlay block is in the table */
    *p = tx->next;
    ov->tx_count--;
}

/* ---- State skip list ---- */

/* LMDB's default key order: bytes, then the shorter key first. */
int ledger__key_cmp(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    size_t common = a_len < b_len ? a_len : b_len;
    int c = common > 0 ? memcmp(a, b, common) : 0;
    if (c != 0)
        return c;
    return a_len < b_len ? -1 : a_len > b_len ? 1 : 0;
}

static int node_cmp(const ledger__ov_node *n, const uint8_t *key, size_t key_len)
{
    return ledger__key_cmp(n->write->key, n->write->key_len, key, key_len);
}

/* Fill UPDATE[i] with the last node at level i before KEY; returns the
 * first node at or after KEY (NULL at the end). */
static ledger__ov_node *seek(const ledger__overlay *ov, const uint8_t *key, size_t key_len,
                             ledger__ov_node **update)
{
    ledger__ov_node *x = ov->head;
    for (int i = (int)ov->level - 1; i >= 0; i--) {
        while (x->next[i] != NULL && node_cmp(x->next[i], key, key_len) < 0)
            x = x->next[i];
        if (update != NULL)
            update[i] = x;
    }
    return x->next[0];
}

static uint32_t random_level(ledger__overlay *ov)
{
    /* xorshift64*; a level has probability 1/4 of the one below. */
    ov->rng ^= ov->rng >> 12;
    ov->rng ^= ov->rng << 25;
    ov->rng ^= ov->rng >> 27;
    uint64_t r = ov->rng * 2685821657736338717ull;
    uint32_t level = 1;
    while (level < LEDGER__OV_LEVELS_MAX && (r & 3) == 0) {
        level++;
        r >>= 2;
    }
    return level;
}

static void state_put(ledger__overlay *ov, const ledger_state_write *w, uint64_t height)
{
    ledger__ov_node *update[LEDGER__OV_LEVELS_MAX];
    ledger__ov_node *x = seek(ov, w->key, w->key_len, update);
    if (x != NULL && node_cmp(x, w->key, w->key_len) == 0) {
        EHR_ASSERT(height >= x->height); /* blocks arrive in height order */
        x->write = w;
        x->height = height;
        return;
    }
    uint32_t level = random_level(ov);
    for (uint32_t i = ov->level; i < level; i++)
        update[i] = ov->head;
    if (level > ov->level)
        ov->level = level;
    x = ehr_malloc(sizeof *x + level * sizeof x->next[0]);
    x->write = w;
    x->height = height;
    x->level = level;
    for (uint32_t i = 0; i < level; i++) {
        x->next[i] = update[i]->next[i];
        update[i]->next[i] = x;
    }
    ov->key_count++;
}

/* Remove KEY's node if its newest write is at or below HEIGHT. */
static void state_drop(ledger__overlay *ov, const uint8_t *key, size_t key_len, uint64_t height)
{
    ledger__ov_node *update[LEDGER__OV_LEVELS_MAX];
    ledger__ov_node *x = seek(ov, key, key_len, update);
    if (x == NULL || node_cmp(x, key, key_len) != 0 || x->height > height)
        return; /* already dropped, or written again by a later block */
    for (uint32_t i = 0; i < x->level; i++) {
        EHR_ASSERT(update[i]->next[i] == x);
        update[i]->next[i] = x->next[i];
    }
    while (ov->level > 1 && ov->head->next[ov->level - 1] == NULL)
        ov->level--;
    ehr_free(x);
    ov->key_count--;
}

const ledger__ov_node *ledger__overlay_state(const ledger__overlay *ov, const uint8_t *key,
                                             size_t key_len)
{
    const ledger__ov_node *x = seek(ov, key, key_len, NULL);
    return x != NULL && node_cmp(x, key, key_len) == 0 ? x : NULL;
}

const ledger__ov_node *ledger__overlay_seek(const ledger__overlay *ov, const uint8_t *key,
                                            size_t key_len)
{
    return seek(ov, key, key_len, NULL);
}

/* ---- The overlay ---- */

void ledger__overlay_init(ledger__overlay *ov)
{
    memset(ov, 0, sizeof *ov);
    ov->bucket_count = OVERLAY_BUCKETS_MIN;
    ov->buckets = ehr_calloc(ov->bucket_count, sizeof *ov->buckets);
    crypto_shorthash_keygen(ov->hash_key);
    randombytes_buf(&ov->rng, sizeof ov->rng);
    ov->rng |= 1; /* xorshift must not start at zero */
    ov->head = ehr_calloc(1, sizeof *ov->head + LEDGER__OV_LEVELS_MAX * sizeof ov->head->next[0]);
    ov->head->level = LEDGER__OV_LEVELS_MAX;
    ov->level = 1;
}

void ledger__overlay_free(ledger__overlay *ov)
{
    if (ov->head == NULL)
        return;
    ledger__ov_node *x = ov->head->next[0];
    while (x != NULL) {
        ledger__ov_node *next = x->next[0];
        ehr_free(x);
        x = next;
    }
    ledger__ov_block *b = ov->first;
    while (b != NULL) {
        ledger__ov_block *next = b->next;
        ehr_free(b);
        b = next;
    }
    ehr_free(ov->head);
    ehr_free(ov->buckets);
    memset(ov, 0, sizeof *ov);
}

void ledger__overlay_add(ledger__overlay *ov, ledger__ov_block *b)
{
    EHR_ASSERT(ov->last == NULL || b->height == ov->last->height + 1);
    for (uint32_t i = 0; i < b->tx_count; i++) {
        ledger__ov_tx *t = &b->txs[i];
        if (ov->tx_count >= ov->bucket_count)
            buckets_grow(ov);
        size_t j = bucket_of(ov, t->hash);
        t->next = ov->buckets[j];
        ov->buckets[j] = t;
        ov->tx_count++;
    }
    for (size_t i = 0; i < b->write_count; i++)
        state_put(ov, &b->writes[i], b->height);
    if (ov->last != NULL)
        ov->last->next = b;
    else
        ov->first = b;
    ov->last = b;
    ov->block_count++;
    ov->bytes += b->bytes;
}

size_t ledger__overlay_drop_through(ledger__overlay *ov, uint64_t height)
{
    /* Unlink every row first, then free: a node of a later block may still
     * point at the key bytes of a block being dropped until it is gone. */
    size_t dropped = 0;
    for (ledger__ov_block *b = ov->first; b != NULL && b->height <= height; b = b->next) {
        for (uint32_t i = 0; i < b->tx_count; i++)
            tx_remove(ov, &b->txs[i]);
        for (size_t i = 0; i < b->write_count; i++)
            state_drop(ov, b->writes[i].key, b->writes[i].key_len, height);
        dropped++;
    }
    for (size_t i = 0; i < dropped; i++) {
        ledger__ov_block *b = ov->first;
        ov->first = b->next;
        ov->block_count--;
        ov->bytes -= b->bytes;
        ehr_free(b);
    }
    if (ov->first == NULL)
        ov->last = NULL;
    return dropped;
}
