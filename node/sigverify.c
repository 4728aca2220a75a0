/*
 * sigverify.c - see sigverify.h.
 *
 * One mutex guards the task queue and the cache; the work done outside it
 * (a BIP-340 verification, about 50 µs) is a thousand times what is done
 * inside, so one lock is enough.
 *
 * Invariants (under `mu`):
 *   S1. A task is in the queue exactly while it has items not yet taken
 *       (next < count); a batch task is ahead of every prefetch task.
 *   S2. taken items = next; finished items = done <= next <= count.
 *   S3. A batch task lives on its caller's stack: the caller returns only
 *       once done == count, and no worker touches a task after finishing
 *       its last item of it.
 *   S4. A prefetch task is freed by the worker that finishes its last item.
 *   S5. prefetch_queued counts the prefetch tasks not yet freed.
 */
#include "sigverify.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { VERDICT_EMPTY = 0 };

struct slot {
    uint8_t hash[EHR_HASH_BYTES];
    uint8_t sig[EHR_SCHNORR_SIG_BYTES];
    uint8_t verdict; /* VERDICT_EMPTY or enum contracts_sig */
};

struct task {
    struct task *next_task;
    struct sigverify_item *items;
    size_t count;
    size_t next;             /* items taken */
    size_t done;             /* items finished */
    enum contracts_sig *out; /* batch: verdicts by item; NULL for a prefetch */
    /* prefetch only: what the items point into */
    uint8_t *block;
    uint8_t (*hashes)[EHR_HASH_BYTES];
};

struct sigverify {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a task was queued, or stopping */
    pthread_cond_t done_cv; /* a batch item finished */
    struct task *head;
    size_t prefetch_queued;
    bool stopping;
    unsigned nthreads;
    pthread_t threads[SIGVERIFY_THREADS_MAX];
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1];
    struct slot *cache;
    uint64_t clock; /* which way the next eviction takes */
    struct sigverify_stats stats;
};

/* The set of SIGVERIFY_CACHE_WAYS slots HASH may live in. */
static struct slot *set_of(struct sigverify *sv, const uint8_t hash[EHR_HASH_BYTES])
{
    uint32_t h = (uint32_t)hash[0] | (uint32_t)hash[1] << 8 | (uint32_t)hash[2] << 16 |
                 (uint32_t)hash[3] << 24;
    size_t sets = SIGVERIFY_CACHE_SLOTS / SIGVERIFY_CACHE_WAYS;
    return &sv->cache[(h & (sets - 1)) * SIGVERIFY_CACHE_WAYS];
}

static struct slot *find_locked(struct sigverify *sv, const uint8_t hash[EHR_HASH_BYTES],
                                const uint8_t sig[EHR_SCHNORR_SIG_BYTES])
{
    struct slot *set = set_of(sv, hash);
    for (int w = 0; w < SIGVERIFY_CACHE_WAYS; w++)
        if (set[w].verdict != VERDICT_EMPTY && memcmp(set[w].hash, hash, EHR_HASH_BYTES) == 0 &&
            memcmp(set[w].sig, sig, EHR_SCHNORR_SIG_BYTES) == 0)
            return &set[w];
    return NULL;
}

static void note_locked(struct sigverify *sv, const uint8_t hash[EHR_HASH_BYTES],
                        const uint8_t sig[EHR_SCHNORR_SIG_BYTES], enum contracts_sig verdict)
{
    if (verdict == CONTRACTS_SIG_UNCHECKED)
        return;
    struct slot *s = find_locked(sv, hash, sig);
    if (s == NULL) {
        /* An empty way, else the oldest (ways are filled in turn). */
        struct slot *set = set_of(sv, hash);
        s = &set[sv->clock++ % SIGVERIFY_CACHE_WAYS];
        for (int w = 0; w < SIGVERIFY_CACHE_WAYS; w++)
            if (set[w].verdict == VERDICT_EMPTY) {
                s = &set[w];
                break;
            }
    }
    memcpy(s->hash, hash, EHR_HASH_BYTES);
    memcpy(s->sig, sig, EHR_SCHNORR_SIG_BYTES);
    s->verdict = (uint8_t)verdict;
}

static enum contracts_sig lookup_locked(struct sigverify *sv, const uint8_t hash[EHR_HASH_BYTES],
                                        const uint8_t sig[EHR_SCHNORR_SIG_BYTES])
{
    const struct slot *s = find_locked(sv, hash, sig);
    return s != NULL ? (enum contracts_sig)s->verdict : CONTRACTS_SIG_UNCHECKED;
}

/* The signature of ENVELOPE, judged alone (see sigverify.h). */
static enum contracts_sig verify_one(const char *chain_id, const uint8_t *envelope, size_t len)
{
    /* now_ms 0: expiry is the rules' business at block time, not ours. */
    ledger_tx_rules rules = {.chain_id = chain_id, .now_ms = 0};
    int rc = ledger_tx_check(envelope, len, &rules, NULL, NULL);
    if (rc == 0)
        return CONTRACTS_SIG_VALID;
    return rc == EHR_EBADSIG ? CONTRACTS_SIG_INVALID : CONTRACTS_SIG_UNCHECKED;
}

/* The signature bytes of a well-framed envelope (its last 64 bytes). */
static const uint8_t *sig_of(const struct sigverify_item *it)
{
    EHR_ASSERT(it->len >= EHR_SCHNORR_SIG_BYTES);
    return it->envelope + it->len - EHR_SCHNORR_SIG_BYTES;
}

static void unlink_task(struct sigverify *sv, struct task *t)
{
    struct task **p = &sv->head;
    while (*p != t)
        p = &(*p)->next_task;
    *p = t->next_task;
}

static void prefetch_free(struct task *t)
{
    ehr_free(t->items);
    ehr_free(t->hashes);
    ehr_free(t->block);
    ehr_free(t);
}

/* Take one item of T and verify it; called with `mu` held, returns with it
 * held. */
static void work_one(struct sigverify *sv, struct task *t)
{
    EHR_ASSERT(t->next < t->count); /* S1 */
    size_t i = t->next++;
    if (t->next == t->count)
        unlink_task(sv, t);
    const struct sigverify_item *it = &t->items[i];
    pthread_mutex_unlock(&sv->mu);
    enum contracts_sig v = verify_one(sv->chain_id, it->envelope, it->len);
    pthread_mutex_lock(&sv->mu);
    sv->stats.verified++;
    note_locked(sv, it->hash, sig_of(it), v);
    if (t->out != NULL)
        t->out[i] = v;
    t->done++;
    EHR_ASSERT(t->done <= t->next); /* S2 */
    if (t->done < t->count)
        return;
    if (t->out != NULL) {
        pthread_cond_broadcast(&sv->done_cv); /* S3: the caller may return now */
    } else {
        sv->prefetch_queued--;
        sv->stats.prefetched++;
        prefetch_free(t); /* S4 */
    }
}

static void *worker(void *arg)
{
    struct sigverify *sv = arg;
    pthread_mutex_lock(&sv->mu);
    for (;;) {
        while (sv->head == NULL && !sv->stopping)
            pthread_cond_wait(&sv->work_cv, &sv->mu);
        if (sv->head == NULL)
            break; /* stopping, and nothing is left */
        work_one(sv, sv->head);
    }
    pthread_mutex_unlock(&sv->mu);
    return NULL;
}

unsigned sigverify_threads_default(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores <= 2)
        return 1;
    return cores - 1 > SIGVERIFY_THREADS_MAX ? SIGVERIFY_THREADS_MAX : (unsigned)(cores - 1);
}

int sigverify_create(const char *chain_id, unsigned threads, struct sigverify **out)
{
    EHR_ASSERT(threads <= SIGVERIFY_THREADS_MAX);
    EHR_ASSERT(strlen(chain_id) <= EHR_CHAIN_ID_BYTES_MAX);
    struct sigverify *sv = ehr_calloc(1, sizeof *sv);
    snprintf(sv->chain_id, sizeof sv->chain_id, "%s", chain_id);
    sv->cache = ehr_calloc(SIGVERIFY_CACHE_SLOTS, sizeof *sv->cache);
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->work_cv, NULL);
    pthread_cond_init(&sv->done_cv, NULL);
    for (unsigned i = 0; i < threads; i++) {
        int rc = pthread_create(&sv->threads[i], NULL, worker, sv);
        if (rc != 0) {
            sv->nthreads = i;
            sigverify_destroy(sv);
            return -rc;
        }
    }
    sv->nthreads = threads;
    *out = sv;
    return 0;
}

void sigverify_destroy(struct sigverify *sv)
{
    if (sv == NULL)
        return;
    pthread_mutex_lock(&sv->mu);
    sv->stopping = true;
    pthread_cond_broadcast(&sv->work_cv);
    pthread_mutex_unlock(&sv->mu);
    for (unsigned i = 0; i < sv->nthreads; i++)
        pthread_join(sv->threads[i], NULL);
    EHR_ASSERT(sv->head == NULL);
    EHR_ASSERT(sv->prefetch_queued == 0); /* S5 */
    pthread_cond_destroy(&sv->done_cv);
    pthread_cond_destroy(&sv->work_cv);
    pthread_mutex_destroy(&sv->mu);
    ehr_free(sv->cache);
    ehr_free(sv);
}

void sigverify_note(struct sigverify *sv, const uint8_t hash[EHR_HASH_BYTES],
                    const uint8_t sig[EHR_SCHNORR_SIG_BYTES], bool valid)
{
    pthread_mutex_lock(&sv->mu);
    note_locked(sv, hash, sig, valid ? CONTRACTS_SIG_VALID : CONTRACTS_SIG_INVALID);
    pthread_mutex_unlock(&sv->mu);
}

enum contracts_sig sigverify_lookup(struct sigverify *sv, const uint8_t hash[EHR_HASH_BYTES],
                                    const uint8_t sig[EHR_SCHNORR_SIG_BYTES])
{
    pthread_mutex_lock(&sv->mu);
    enum contracts_sig v = lookup_locked(sv, hash, sig);
    pthread_mutex_unlock(&sv->mu);
    return v;
}

int sigverify_prefetch(struct sigverify *sv, const uint8_t *block, size_t len)
{
    if (sv->nthreads == 0)
        return EHR_EAGAIN;
    pthread_mutex_lock(&sv->mu);
    bool full = sv->prefetch_queued >= SIGVERIFY_PREFETCH_MAX;
    if (full)
        sv->stats.dropped++;
    pthread_mutex_unlock(&sv->mu);
    if (full)
        return EHR_EAGAIN;
    /* Parse and hash outside the lock, on a copy the task owns. */
    struct task *t = ehr_calloc(1, sizeof *t);
    t->block = ehr_malloc(len > 0 ? len : 1);
    memcpy(t->block, block, len);
    ledger_block_view v;
    if (ledger_block_parse(t->block, len, &v, NULL) != 0) {
        prefetch_free(t);
        return EHR_EINVAL;
    }
    size_t n = v.header.tx_count;
    t->items = ehr_calloc(n + 1, sizeof *t->items);
    t->hashes = ehr_calloc(n + 1, sizeof *t->hashes);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *env = v.bytes + v.txs[i].offset;
        ledger_tx_view tv;
        if (ledger_tx_envelope_parse(env, v.txs[i].length, &tv, NULL) != 0)
            continue; /* the rules refuse it; nothing to verify */
        ledger_tx_hash(tv.body, tv.body_len, t->hashes[t->count]);
        t->items[t->count] = (struct sigverify_item){
            .envelope = env, .len = v.txs[i].length, .hash = t->hashes[t->count]};
        t->count++;
    }
    ledger_block_view_release(&v);
    pthread_mutex_lock(&sv->mu);
    /* Drop what is known already (the leader's own admissions, a block
     * received twice). */
    size_t keep = 0;
    for (size_t i = 0; i < t->count; i++)
        if (lookup_locked(sv, t->items[i].hash, sig_of(&t->items[i])) == CONTRACTS_SIG_UNCHECKED)
            t->items[keep++] = t->items[i];
    t->count = keep;
    if (t->count == 0) {
        pthread_mutex_unlock(&sv->mu);
        prefetch_free(t);
        return 0;
    }
    struct task **p = &sv->head;
    while (*p != NULL)
        p = &(*p)->next_task;
    *p = t;
    sv->prefetch_queued++;
    EHR_ASSERT(sv->prefetch_queued <= SIGVERIFY_PREFETCH_MAX); /* S5 */
    pthread_cond_signal(&sv->work_cv);
    pthread_mutex_unlock(&sv->mu);
    return 0;
}

void sigverify_batch(struct sigverify *sv, const struct sigverify_item *items, size_t count,
                     enum contracts_sig *out)
{
    if (count == 0)
        return;
    struct sigverify_item *miss = ehr_malloc(count * sizeof *miss);
    size_t *where = ehr_malloc(count * sizeof *where);
    enum contracts_sig *verdicts = ehr_malloc(count * sizeof *verdicts);
    struct task t = {.items = miss, .out = verdicts};
    pthread_mutex_lock(&sv->mu);
    for (size_t i = 0; i < count; i++) {
        out[i] = items[i].len >= EHR_SCHNORR_SIG_BYTES
                     ? lookup_locked(sv, items[i].hash, sig_of(&items[i]))
                     : CONTRACTS_SIG_UNCHECKED;
        if (out[i] != CONTRACTS_SIG_UNCHECKED) {
            sv->stats.hits++;
        } else if (items[i].len >= EHR_SCHNORR_SIG_BYTES) {
            where[t.count] = i;
            miss[t.count++] = items[i];
        }
    }
    if (t.count > 0) {
        /* Ahead of the prefetches (S1): apply is waiting for this one. */
        t.next_task = sv->head;
        sv->head = &t;
        pthread_cond_broadcast(&sv->work_cv);
        while (t.next < t.count)
            work_one(sv, &t);
        while (t.done < t.count) /* S3 */
            pthread_cond_wait(&sv->done_cv, &sv->mu);
    }
    pthread_mutex_unlock(&sv->mu);
    for (size_t k = 0; k < t.count; k++)
        out[where[k]] = verdicts[k];
    ehr_free(verdicts);
    ehr_free(where);
    ehr_free(miss);
}

void sigverify_stats_get(struct sigverify *sv, struct sigverify_stats *out)
{
    pthread_mutex_lock(&sv->mu);
    *out = sv->stats;
    pthread_mutex_unlock(&sv->mu);
}
