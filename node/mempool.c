/*
 * mempool.c - the node's transaction pool (see mempool.h for the model and
 * the invariants).
 *
 * Storage: a slot array of tx_count_max entries allocated at init, two
 * doubly linked lists through it (pending, proposed) that keep admission
 * order, a free list, and an open-addressing hash table (linear probing,
 * at most half full, backward-shift deletion so there are no tombstones)
 * from tx hash to slot. Table positions come from SipHash-2-4 of the tx
 * hash under a random per-pool key, so a submitter who grinds hashes cannot
 * aim at one probe chain. Lookups allocate nothing.
 *
 * Not here: anything about the network or the ledger's storage; the ledger
 * is reached only through the caller's lookup.
 */
#include "mempool.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MEMPOOL__NIL UINT32_MAX

_Static_assert(MEMPOOL_TX_COUNT_MAX < UINT32_MAX / 4, "table size and slot+1 fit in uint32_t");
_Static_assert(EHR_TX_BYTES_MAX < UINT32_MAX, "an envelope length fits in uint32_t");
_Static_assert(MEMPOOL_BYTES_MIN >= EHR_TX_BYTES_MAX, "an empty pool takes any valid tx");
_Static_assert(crypto_shorthash_KEYBYTES == sizeof(((mempool *)0)->table_key), "SipHash key");

static const char *const verdict_names[MEMPOOL_VERDICT_COUNT_] = {
    [MEMPOOL_ADMITTED] = "admitted",
    [MEMPOOL_REJECT_TOO_BIG] = "too-big",
    [MEMPOOL_REJECT_MALFORMED] = "malformed",
    [MEMPOOL_REJECT_CHAIN] = "wrong-chain",
    [MEMPOOL_REJECT_EXPIRED] = "expired",
    [MEMPOOL_REJECT_EXPIRING] = "expiring",
    [MEMPOOL_REJECT_SIGNATURE] = "bad-signature",
    [MEMPOOL_REJECT_DUPLICATE_POOL] = "duplicate-pool",
    [MEMPOOL_REJECT_DUPLICATE_LEDGER] = "duplicate-ledger",
    [MEMPOOL_REJECT_FULL_COUNT] = "full-count",
    [MEMPOOL_REJECT_FULL_BYTES] = "full-bytes",
    [MEMPOOL_REJECT_LOOKUP] = "ledger-lookup",
};

const char *mempool_verdict_name(enum mempool_verdict verdict)
{
    if ((unsigned)verdict >= MEMPOOL_VERDICT_COUNT_)
        return "unknown";
    return verdict_names[verdict];
}

int mempool_ledger_lookup(void *ctx, const uint8_t hash[EHR_HASH_BYTES])
{
    EHR_ASSERT(ctx != NULL);
    ledger_tx_location location;
    int rc = ledger_tx_get((ledger *)ctx, hash, &location, NULL, NULL, NULL, NULL, NULL);
    if (rc == 0)
        return 1;
    return rc == EHR_ENOTFOUND ? 0 : rc;
}

/* ---- Hash table ---- */

static uint32_t mempool__home(const mempool *pool, const uint8_t hash[EHR_HASH_BYTES])
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, hash, EHR_HASH_BYTES, pool->table_key);
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return (uint32_t)h & pool->table_mask;
}

/* The table position holding HASH, or -1. */
static long mempool__find(const mempool *pool, const uint8_t hash[EHR_HASH_BYTES])
{
    uint32_t i = mempool__home(pool, hash);
    for (uint32_t probes = 0; probes <= pool->table_mask; probes++) {
        uint32_t v = pool->table[i];
        if (v == 0)
            return -1;
        if (memcmp(pool->slots[v - 1].hash, hash, EHR_HASH_BYTES) == 0)
            return (long)i;
        i = (i + 1) & pool->table_mask;
    }
    ehr_panic("mempool: hash table has no empty position (load over one half)");
}

static void mempool__table_insert(mempool *pool, uint32_t slot)
{
    uint32_t i = mempool__home(pool, pool->slots[slot].hash);
    while (pool->table[i] != 0)
        i = (i + 1) & pool->table_mask;
    pool->table[i] = slot + 1;
}

/* Remove position I and shift later members of its probe run back, so that
 * every entry stays reachable from its home without tombstones. */
static void mempool__table_delete(mempool *pool, uint32_t i)
{
    uint32_t mask = pool->table_mask;
    pool->table[i] = 0;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint32_t v = pool->table[j];
        if (v == 0)
            return;
        uint32_t home = mempool__home(pool, pool->slots[v - 1].hash);
        /* The entry at J may move to I if its home is not cyclically in (I, J]. */
        bool home_between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!home_between) {
            pool->table[i] = v;
            pool->table[j] = 0;
            i = j;
        }
    }
}

/* ---- Lists ---- */

static void mempool__list_push_back(mempool *pool, mempool_list *list, uint32_t slot)
{
    mempool_entry *e = &pool->slots[slot];
    e->prev = list->tail;
    e->next = MEMPOOL__NIL;
    if (list->tail != MEMPOOL__NIL)
        pool->slots[list->tail].next = slot;
    else
        list->head = slot;
    list->tail = slot;
    list->count++;
}

static void mempool__list_unlink(mempool *pool, mempool_list *list, uint32_t slot)
{
    EHR_ASSERT(list->count > 0);
    mempool_entry *e = &pool->slots[slot];
    if (e->prev != MEMPOOL__NIL)
        pool->slots[e->prev].next = e->next;
    else
        list->head = e->next;
    if (e->next != MEMPOOL__NIL)
        pool->slots[e->next].prev = e->prev;
    else
        list->tail = e->prev;
    list->count--;
}

static void mempool__list_init(mempool_list *list)
{
    list->head = list->tail = MEMPOOL__NIL;
    list->count = 0;
}

/* Remove the entry in SLOT, found at table position POS, from everything. */
static void mempool__remove(mempool *pool, uint32_t slot, uint32_t pos)
{
    mempool_entry *e = &pool->slots[slot];
    EHR_ASSERT(e->envelope != NULL);
    EHR_ASSERT(pool->bytes >= e->envelope_len);
    mempool__table_delete(pool, pos);
    mempool__list_unlink(pool, e->proposed ? &pool->proposed : &pool->pending, slot);
    pool->bytes -= e->envelope_len;
    ehr_free(e->envelope);
    memset(e, 0, sizeof *e);
    e->prev = MEMPOOL__NIL;
    e->next = pool->free_head;
    pool->free_head = slot;
}

/* ---- Life cycle ---- */

int mempool_init(mempool *pool, const mempool_config *config)
{
    EHR_ASSERT(pool != NULL);
    EHR_ASSERT(config != NULL);
    uint32_t count_max = config->tx_count_max ? config->tx_count_max : MEMPOOL_TX_COUNT_DEFAULT;
    uint64_t bytes_max = config->bytes_max ? config->bytes_max : MEMPOOL_BYTES_DEFAULT;
    if (count_max < MEMPOOL_TX_COUNT_MIN || count_max > MEMPOOL_TX_COUNT_MAX)
        return EHR_EINVAL;
    if (bytes_max < MEMPOOL_BYTES_MIN || bytes_max > MEMPOOL_BYTES_MAX)
        return EHR_EINVAL;
    if (config->chain_id == NULL || config->ledger_lookup == NULL)
        return EHR_EINVAL;
    size_t chain_len = strlen(config->chain_id);
    if (chain_len == 0 || chain_len > EHR_CHAIN_ID_BYTES_MAX)
        return EHR_EINVAL;

    memset(pool, 0, sizeof *pool);
    memcpy(pool->chain_id, config->chain_id, chain_len + 1);
    pool->tx_count_max = count_max;
    pool->bytes_max = bytes_max;
    pool->ledger_lookup = config->ledger_lookup;
    pool->ledger_lookup_ctx = config->ledger_lookup_ctx;

    pool->slots = ehr_calloc(count_max, sizeof *pool->slots);
    for (uint32_t i = 0; i < count_max; i++) {
        pool->slots[i].prev = MEMPOOL__NIL;
        pool->slots[i].next = i + 1 < count_max ? i + 1 : MEMPOOL__NIL;
    }
    pool->free_head = 0;
    mempool__list_init(&pool->pending);
    mempool__list_init(&pool->proposed);

    uint32_t table_size = 2;
    while (table_size < 2 * count_max)
        table_size *= 2;
    pool->table = ehr_calloc(table_size, sizeof *pool->table);
    pool->table_mask = table_size - 1;
    randombytes_buf(pool->table_key, sizeof pool->table_key);
    pool->expiry_min_ms = UINT64_MAX;
    return 0;
}

void mempool_destroy(mempool *pool)
{
    if (pool == NULL || pool->slots == NULL)
        return;
    for (uint32_t i = 0; i < pool->tx_count_max; i++)
        ehr_free(pool->slots[i].envelope);
    ehr_free(pool->slots);
    ehr_free(pool->table);
    sodium_memzero(pool->table_key, sizeof pool->table_key);
    memset(pool, 0, sizeof *pool);
}

/* ---- Admission ---- */

__attribute__((format(printf, 4, 5))) static int mempool__reject(mempool_admit_result *result,
                                                                 enum mempool_verdict verdict,
                                                                 int err, const char *fmt, ...)
{
    EHR_ASSERT(err < 0);
    result->verdict = verdict;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(result->reason, sizeof result->reason, fmt, ap);
    va_end(ap);
    return err;
}

static enum mempool_verdict mempool__verdict_of_check(int rc)
{
    switch (rc) {
    case EHR_ETOOBIG:
        return MEMPOOL_REJECT_TOO_BIG;
    case EHR_ECHAIN:
        return MEMPOOL_REJECT_CHAIN;
    case EHR_EEXPIRED:
        return MEMPOOL_REJECT_EXPIRED;
    case EHR_EBADSIG:
        return MEMPOOL_REJECT_SIGNATURE;
    default:
        return MEMPOOL_REJECT_MALFORMED;
    }
}

/* The cheap checks, in order: framing (which yields the hash), the hash in
 * the pool, on the ledger, room by count and by bytes. */
static int mempool__cheap_checks(mempool *pool, const uint8_t *bytes, size_t len,
                                 const uint8_t *known_hash, mempool_admit_result *result)
{
    ehr_diag diag;
    ledger_tx_view view;
    int rc = ledger_tx_envelope_parse(bytes, len, &view, &diag);
    if (rc != 0)
        return mempool__reject(result, mempool__verdict_of_check(rc), rc, "%s", diag.msg);
    if (known_hash != NULL)
        memcpy(result->hash, known_hash, EHR_HASH_BYTES); /* of these very bytes */
    else
        ledger_tx_hash(view.body, view.body_len, result->hash);
    result->hash_known = true;

    if (mempool__find(pool, result->hash) >= 0)
        return mempool__reject(result, MEMPOOL_REJECT_DUPLICATE_POOL, EHR_EEXIST,
                               "transaction is already in the mempool");
    rc = pool->ledger_lookup(pool->ledger_lookup_ctx, result->hash);
    if (rc < 0)
        return mempool__reject(result, MEMPOOL_REJECT_LOOKUP, rc,
                               "looking the transaction up on the ledger failed: %s",
                               ehr_strerror(rc));
    if (rc > 0)
        return mempool__reject(result, MEMPOOL_REJECT_DUPLICATE_LEDGER, EHR_EEXIST,
                               "transaction is already on the ledger");
    size_t count = mempool_count(pool);
    if (count >= pool->tx_count_max)
        return mempool__reject(result, MEMPOOL_REJECT_FULL_COUNT, EHR_EFULL,
                               "mempool is full: %zu transactions, the limit; retry later", count);
    if (len > pool->bytes_max - pool->bytes)
        return mempool__reject(result, MEMPOOL_REJECT_FULL_BYTES, EHR_EFULL,
                               "mempool is full: %llu of %llu bytes used, no room for %zu more; "
                               "retry later",
                               (unsigned long long)pool->bytes, (unsigned long long)pool->bytes_max,
                               len);
    return 0;
}

int mempool_admit_begin(mempool *pool, const uint8_t *bytes, size_t len,
                        mempool_admit_result *result)
{
    EHR_ASSERT(pool != NULL && pool->slots != NULL);
    EHR_ASSERT(result != NULL);
    memset(result, 0, sizeof *result);
    return mempool__cheap_checks(pool, bytes, len, NULL, result);
}

int mempool_tx_verify(const char *chain_id, const uint8_t *bytes, size_t len, uint64_t now_ms,
                      mempool_verified *out)
{
    EHR_ASSERT(out != NULL);
    memset(out, 0, sizeof *out);
    ledger_tx_rules rules = {.chain_id = chain_id, .now_ms = now_ms};
    ledger_tx tx;
    ehr_diag diag = {{0}};
    out->err = ledger_tx_check(bytes, len, &rules, &tx, &diag);
    out->now_ms = now_ms;
    if (out->err != 0) {
        snprintf(out->reason, sizeof out->reason, "%s", diag.msg);
        return out->err;
    }
    memcpy(out->hash, tx.hash, EHR_HASH_BYTES);
    out->expiry_ms = tx.body->expiry_ms;
    ledger_tx_release(&tx);
    return 0;
}

int mempool_admit_finish(mempool *pool, const uint8_t *bytes, size_t len,
                         const mempool_verified *verified, mempool_admit_result *result)
{
    EHR_ASSERT(pool != NULL && pool->slots != NULL);
    EHR_ASSERT(result != NULL && verified != NULL);
    memset(result, 0, sizeof *result);
    /* The pool and the ledger may have changed since mempool_admit_begin.
     * A successful verification hashed these bytes already. */
    int rc =
        mempool__cheap_checks(pool, bytes, len, verified->err == 0 ? verified->hash : NULL, result);
    if (rc != 0)
        return rc;
    if (verified->err != 0)
        return mempool__reject(result, mempool__verdict_of_check(verified->err), verified->err,
                               "%s", verified->reason);
    uint64_t expiry_ms = verified->expiry_ms, now_ms = verified->now_ms;
    if (expiry_ms - now_ms <= MEMPOOL_CLOCK_SKEW_MS) /* now_ms <= expiry_ms after the check */
        return mempool__reject(result, MEMPOOL_REJECT_EXPIRING, EHR_EEXPIRED,
                               "transaction expires at %llu ms, within the %u ms clock-skew "
                               "tolerance of now (%llu ms); sign it with a later expiry",
                               (unsigned long long)expiry_ms, MEMPOOL_CLOCK_SKEW_MS,
                               (unsigned long long)now_ms);

    uint32_t slot = pool->free_head;
    EHR_ASSERT(slot != MEMPOOL__NIL);
    mempool_entry *e = &pool->slots[slot];
    EHR_ASSERT(e->envelope == NULL);
    pool->free_head = e->next;
    memcpy(e->hash, result->hash, EHR_HASH_BYTES);
    e->envelope = ehr_malloc(len);
    memcpy(e->envelope, bytes, len);
    e->envelope_len = (uint32_t)len;
    e->expiry_ms = expiry_ms;
    e->sequence = pool->sequence_next++;
    e->proposed = false;
    mempool__list_push_back(pool, &pool->pending, slot);
    mempool__table_insert(pool, slot);
    pool->bytes += len;
    if (expiry_ms < pool->expiry_min_ms)
        pool->expiry_min_ms = expiry_ms;
    result->verdict = MEMPOOL_ADMITTED;
    return 0;
}

const char *mempool_chain_id(const mempool *pool)
{
    return pool->chain_id;
}

int mempool_admit(mempool *pool, const uint8_t *bytes, size_t len, uint64_t now_ms,
                  mempool_admit_result *result)
{
    /* Everything cheap first, so a resubmission or a full pool costs no
     * signature verification; then the one verification this transaction
     * gets; then the insertion (whose cheap checks cannot fail now: nothing
     * changed in between). */
    int rc = mempool_admit_begin(pool, bytes, len, result);
    if (rc != 0)
        return rc;
    mempool_verified v;
    mempool_tx_verify(pool->chain_id, bytes, len, now_ms, &v);
    return mempool_admit_finish(pool, bytes, len, &v, result);
}

/* ---- Batches and removal ---- */

size_t mempool_batch_take(mempool *pool, size_t count_max, uint64_t bytes_max, mempool_batch *batch)
{
    EHR_ASSERT(pool != NULL && batch != NULL);
    EHR_ASSERT(batch->capacity == 0 || (batch->envelopes != NULL && batch->hashes != NULL));
    if (count_max > batch->capacity)
        count_max = batch->capacity;
    batch->count = 0;
    batch->bytes = 0;
    while (batch->count < count_max && pool->pending.head != MEMPOOL__NIL) {
        uint32_t slot = pool->pending.head;
        mempool_entry *e = &pool->slots[slot];
        if (e->envelope_len > bytes_max - batch->bytes)
            break;
        mempool__list_unlink(pool, &pool->pending, slot);
        e->proposed = true;
        mempool__list_push_back(pool, &pool->proposed, slot);
        batch->envelopes[batch->count] = (ledger_bytes){e->envelope, e->envelope_len};
        memcpy(batch->hashes[batch->count], e->hash, EHR_HASH_BYTES);
        batch->count++;
        batch->bytes += e->envelope_len;
    }
    EHR_ASSERT(batch->bytes <= bytes_max);
    return batch->count;
}

size_t mempool_proposed_requeue(mempool *pool)
{
    EHR_ASSERT(pool != NULL);
    size_t moved = pool->proposed.count;
    if (moved == 0)
        return 0;
    for (uint32_t s = pool->proposed.head; s != MEMPOOL__NIL; s = pool->slots[s].next)
        pool->slots[s].proposed = false;
    /* Splice: proposed ++ pending (invariant 3 keeps this in admission order). */
    if (pool->pending.head != MEMPOOL__NIL) {
        pool->slots[pool->proposed.tail].next = pool->pending.head;
        pool->slots[pool->pending.head].prev = pool->proposed.tail;
        pool->pending.head = pool->proposed.head;
    } else {
        pool->pending.head = pool->proposed.head;
        pool->pending.tail = pool->proposed.tail;
    }
    pool->pending.count += pool->proposed.count;
    mempool__list_init(&pool->proposed);
    return moved;
}

size_t mempool_remove_committed(mempool *pool, const uint8_t (*hashes)[EHR_HASH_BYTES],
                                size_t count)
{
    EHR_ASSERT(pool != NULL);
    EHR_ASSERT(count == 0 || hashes != NULL);
    size_t removed = 0;
    for (size_t i = 0; i < count; i++) {
        long pos = mempool__find(pool, hashes[i]);
        if (pos < 0)
            continue;
        mempool__remove(pool, pool->table[pos] - 1, (uint32_t)pos);
        removed++;
    }
    if (mempool_count(pool) == 0)
        pool->expiry_min_ms = UINT64_MAX;
    return removed;
}

static size_t mempool__expire_list(mempool *pool, mempool_list *list, uint64_t block_time_ms,
                                   uint64_t *expiry_min_ms)
{
    size_t removed = 0;
    uint32_t s = list->head;
    while (s != MEMPOOL__NIL) {
        mempool_entry *e = &pool->slots[s];
        uint32_t next = e->next;
        if (e->expiry_ms < block_time_ms) {
            long pos = mempool__find(pool, e->hash);
            EHR_ASSERT(pos >= 0 && pool->table[pos] == s + 1);
            mempool__remove(pool, s, (uint32_t)pos);
            removed++;
        } else if (e->expiry_ms < *expiry_min_ms) {
            *expiry_min_ms = e->expiry_ms;
        }
        s = next;
    }
    return removed;
}

size_t mempool_expire(mempool *pool, uint64_t block_time_ms)
{
    EHR_ASSERT(pool != NULL);
    if (block_time_ms <= pool->expiry_min_ms)
        return 0; /* nothing expires before expiry_min_ms */
    uint64_t expiry_min_ms = UINT64_MAX;
    size_t removed = mempool__expire_list(pool, &pool->proposed, block_time_ms, &expiry_min_ms);
    removed += mempool__expire_list(pool, &pool->pending, block_time_ms, &expiry_min_ms);
    pool->expiry_min_ms = expiry_min_ms;
    return removed;
}

/* ---- Queries ---- */

bool mempool_contains(const mempool *pool, const uint8_t hash[EHR_HASH_BYTES])
{
    EHR_ASSERT(pool != NULL);
    return mempool__find(pool, hash) >= 0;
}

size_t mempool_count(const mempool *pool)
{
    return (size_t)pool->pending.count + pool->proposed.count;
}

uint64_t mempool_bytes(const mempool *pool)
{
    return pool->bytes;
}

size_t mempool_pending_count(const mempool *pool)
{
    return pool->pending.count;
}

/* ---- Invariants ---- */

__attribute__((format(printf, 2, 3))) static int mempool__corrupt(char *msg, const char *fmt, ...)
{
    if (msg != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, MEMPOOL_REASON_BYTES_MAX, fmt, ap);
        va_end(ap);
    }
    return EHR_ECORRUPT;
}

static int mempool__check_list(const mempool *pool, const mempool_list *list, bool proposed,
                               uint64_t *sequence_last, uint64_t *bytes, size_t *seen, char *msg)
{
    size_t n = 0;
    uint32_t prev = MEMPOOL__NIL;
    for (uint32_t s = list->head; s != MEMPOOL__NIL; s = pool->slots[s].next) {
        const mempool_entry *e = &pool->slots[s];
        if (++n > pool->tx_count_max)
            return mempool__corrupt(msg, "list has a cycle");
        if (e->envelope == NULL || e->proposed != proposed || e->prev != prev)
            return mempool__corrupt(msg, "slot %u: free, wrong list or broken back link", s);
        if (*sequence_last != UINT64_MAX && e->sequence <= *sequence_last)
            return mempool__corrupt(msg, "slot %u: out of admission order", s);
        long pos = mempool__find(pool, e->hash);
        if (pos < 0 || pool->table[pos] != s + 1)
            return mempool__corrupt(msg, "slot %u: not in the hash table", s);
        if (e->expiry_ms < pool->expiry_min_ms)
            return mempool__corrupt(msg, "slot %u: expires before the cached minimum", s);
        *sequence_last = e->sequence;
        *bytes += e->envelope_len;
        prev = s;
    }
    if (n != list->count || prev != list->tail)
        return mempool__corrupt(msg, "list count %u or tail is wrong (walked %zu)", list->count, n);
    *seen += n;
    return 0;
}

int mempool_check_invariants(const mempool *pool, char *msg)
{
    EHR_ASSERT(pool != NULL);
    uint64_t sequence_last = UINT64_MAX, bytes = 0;
    size_t seen = 0;
    int rc = mempool__check_list(pool, &pool->proposed, true, &sequence_last, &bytes, &seen, msg);
    if (rc == 0)
        rc = mempool__check_list(pool, &pool->pending, false, &sequence_last, &bytes, &seen, msg);
    if (rc != 0)
        return rc;
    if (bytes != pool->bytes || bytes > pool->bytes_max)
        return mempool__corrupt(msg, "bytes %llu recorded, %llu held, limit %llu",
                                (unsigned long long)pool->bytes, (unsigned long long)bytes,
                                (unsigned long long)pool->bytes_max);
    if (seen > pool->tx_count_max)
        return mempool__corrupt(msg, "%zu entries over the limit", seen);
    size_t in_table = 0;
    for (uint32_t i = 0; i <= pool->table_mask; i++)
        in_table += pool->table[i] != 0;
    if (in_table != seen)
        return mempool__corrupt(msg, "table holds %zu, lists %zu", in_table, seen);
    size_t free_count = 0;
    for (uint32_t s = pool->free_head; s != MEMPOOL__NIL; s = pool->slots[s].next) {
        if (pool->slots[s].envelope != NULL || ++free_count > pool->tx_count_max)
            return mempool__corrupt(msg, "free list holds a live slot or cycles");
    }
    if (free_count + seen != pool->tx_count_max)
        return mempool__corrupt(msg, "%zu free + %zu live != %u slots", free_count, seen,
                                pool->tx_count_max);
    if (msg != NULL)
        msg[0] = '\0';
    return 0;
}
