/*
 * blob_erase.c - a node deletes its copy of the ciphertext of every record
 * its patient erased (RecordErase, contracts/README.md "Erasure"): after
 * each block that erases one, and at start for any it still holds (a node
 * that was down during the erase, or installed a snapshot, catches up).
 *
 * The ids to delete wait in a bounded ring on the loop; one job at a time
 * deletes up to NODE_BLOB_ERASE_BATCH_MAX of them on libuv's worker pool
 * (node_blobs_remove: an unlink and a directory fsync each), never on the
 * loop. Deleting is idempotent (a blob not stored is nothing to do), so a
 * blob queued twice, or scanned again, costs one stat. The catch-up scan
 * reads "erased-records/" NODE_BLOB_ERASE_SCAN_STEP_MAX records a step
 * (each step an anchor read per record, on the loop, as GetBlob reads
 * one), a step only when the ring is empty and no job is out.
 *
 * Not here: refusing an erased record's blob and capsule fragments (the
 * services check node__state_record_erased on every call, so nothing is
 * served from the erase's block on, deleted yet or not); the rules.
 *
 * Invariants:
 *   E1. At most one job is out; the node is freed only once it is back
 *       (maybe_free), and the store is closed only after that.
 *   E2. The ring never holds more than NODE_BLOB_ERASE_QUEUE_MAX ids; an
 *       id that does not fit starts the catch-up scan again, so no erased
 *       record's blob is forgotten while the node runs.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "node_internal.h"

#define ERASED_PREFIX CONTRACTS_PREFIX_ERASED_RECORDS
#define ERASED_PREFIX_BYTES (sizeof ERASED_PREFIX - 1)

static void erase_kick(struct node *n);

/* Queue the blob of the erased record RECORD_ID (its anchor's hash).
 * Returns false when the ring is full (E2: the caller rescans). */
static bool erase_queue_record(struct node *n, const uint8_t record_id[EHR_HASH_BYTES])
{
    struct node__blob_erasure *e = &n->blobs.erase;
    if (e->count == NODE_BLOB_ERASE_QUEUE_MAX)
        return false;
    uint8_t blob_id[NODE_BLOB_ID_BYTES];
    int rc = node__anchor_blob_id(n->ledger, record_id, blob_id);
    if (rc != 0) {
        char hex[2 * EHR_HASH_BYTES + 1];
        ehr_hex_encode(hex, record_id, EHR_HASH_BYTES);
        ehr_log(EHR_LOG_ERROR, "cannot find the blob of an erased record", "record=%s err=%s", hex,
                ehr_errname(rc));
        return true; /* nothing to queue: said */
    }
    memcpy(e->queue[(e->head + e->count) % NODE_BLOB_ERASE_QUEUE_MAX], blob_id, NODE_BLOB_ID_BYTES);
    e->count++;
    EHR_ASSERT(e->count <= NODE_BLOB_ERASE_QUEUE_MAX);
    return true;
}

/* ---- the catch-up scan ---- */

struct scan_step {
    uint8_t ids[NODE_BLOB_ERASE_SCAN_STEP_MAX][EHR_HASH_BYTES];
    size_t count;
    uint8_t last[EHR_STATE_KEY_BYTES_MAX];
    size_t last_len;
};

static int scan_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                    size_t value_len)
{
    (void)value, (void)value_len;
    struct scan_step *s = ctx;
    EHR_ASSERT(s->count < NODE_BLOB_ERASE_SCAN_STEP_MAX); /* the scan's count_max */
    EHR_ASSERT(key_len <= sizeof s->last);
    memcpy(s->last, key, key_len);
    s->last_len = key_len;
    if (key_len != ERASED_PREFIX_BYTES + EHR_HASH_BYTES)
        return 0; /* not a key these rules write: not ours to judge */
    memcpy(s->ids[s->count++], key + ERASED_PREFIX_BYTES, EHR_HASH_BYTES);
    return 0;
}

/* One step of the scan: the next records after the last one seen. The
 * anchors are read after the scan's read snapshot ends. */
static void scan_step(struct node *n)
{
    struct node__blob_erasure *e = &n->blobs.erase;
    EHR_ASSERT(e->scanning);
    EHR_ASSERT(e->count == 0);
    struct scan_step *s = ehr_calloc(1, sizeof *s);
    ehr_diag why = {{0}};
    long seen = ledger_state_scan(n->ledger, (const uint8_t *)ERASED_PREFIX, ERASED_PREFIX_BYTES,
                                  e->scan_after_len > 0 ? e->scan_after : NULL, e->scan_after_len,
                                  NODE_BLOB_ERASE_SCAN_STEP_MAX, scan_one, s, &why);
    if (seen < 0) {
        ehr_log(EHR_LOG_ERROR, "cannot list the erased records", "err=%s why=\"%s\"",
                ehr_errname((int)seen), why.msg);
        e->scanning = false; /* the next start tries again */
        ehr_free(s);
        return;
    }
    for (size_t i = 0; i < s->count; i++) {
        bool queued = erase_queue_record(n, s->ids[i]);
        EHR_ASSERT(queued); /* the ring was empty and a step fits it */
    }
    if (s->last_len > 0) {
        memcpy(e->scan_after, s->last, s->last_len);
        e->scan_after_len = s->last_len;
    }
    if ((size_t)seen < NODE_BLOB_ERASE_SCAN_STEP_MAX)
        e->scanning = false; /* the end of the list */
    ehr_free(s);
}

static void scan_restart(struct node *n)
{
    n->blobs.erase.scanning = true;
    n->blobs.erase.scan_after_len = 0;
}

/* ---- the job ---- */

static void erase_job_run(uv_work_t *w)
{
    struct node__blob_erasure *e = w->data;
    const struct node *n = e->node;
    for (size_t i = 0; i < e->batch_count; i++)
        e->batch_rc[i] = node_blobs_remove(&n->blobs.store, e->batch[i], &e->batch_diag);
}

static void erase_job_done(uv_work_t *w, int status)
{
    (void)status; /* never cancelled: we do not call uv_cancel */
    struct node__blob_erasure *e = w->data;
    struct node *n = e->node;
    EHR_ASSERT(e->working);
    e->working = false;
    for (size_t i = 0; i < e->batch_count; i++) {
        char hex[NODE_BLOB_ID_HEX_BYTES + 1];
        node_blob_id_hex(hex, e->batch[i]);
        if (e->batch_rc[i] == 0) {
            e->deleted_count++;
            ehr_log(EHR_LOG_INFO, "blob of an erased record deleted", "blob=%s", hex);
        } else if (e->batch_rc[i] != EHR_ENOTFOUND) {
            ehr_log(EHR_LOG_ERROR, "cannot delete the blob of an erased record",
                    "blob=%s err=%s why=\"%s\"", hex, ehr_errname(e->batch_rc[i]),
                    e->batch_diag.msg);
        }
    }
    e->batch_count = 0;
    if (n->stopping) {
        node__work_returned(n); /* E1 */
        return;
    }
    erase_kick(n);
}

/* Start the job if there is work and none is out: the ring's oldest ids,
 * or else the next step of the scan. */
static void erase_kick(struct node *n)
{
    struct node__blob_erasure *e = &n->blobs.erase;
    if (!e->started || e->working || n->stopping)
        return;
    if (e->count == 0 && e->scanning)
        scan_step(n);
    if (e->count == 0)
        return;
    e->batch_count = e->count < NODE_BLOB_ERASE_BATCH_MAX ? e->count : NODE_BLOB_ERASE_BATCH_MAX;
    for (size_t i = 0; i < e->batch_count; i++) {
        memcpy(e->batch[i], e->queue[e->head], NODE_BLOB_ID_BYTES);
        e->head = (e->head + 1) % NODE_BLOB_ERASE_QUEUE_MAX;
        e->count--;
    }
    e->batch_diag.msg[0] = '\0';
    e->working = true;
    e->work.data = e;
    int rc = uv_queue_work(n->loop, &e->work, erase_job_run, erase_job_done);
    EHR_ASSERT(rc == 0); /* only fails for a NULL callback */
}

/* ---- the node's calls ---- */

void node__blob_erase_start(struct node *n)
{
    struct node__blob_erasure *e = &n->blobs.erase;
    EHR_ASSERT(!e->started);
    EHR_ASSERT(n->blobs.store_open);
    if (e->queue == NULL)
        e->queue = ehr_calloc(NODE_BLOB_ERASE_QUEUE_MAX, sizeof *e->queue);
    e->node = n;
    e->started = true;
    scan_restart(n);
    erase_kick(n);
}

void node__blob_erase_block(struct node *n, const ledger_state_write *writes, size_t count)
{
    struct node__blob_erasure *e = &n->blobs.erase;
    if (!e->started)
        return; /* the scan at start will find them */
    bool any = false;
    for (size_t i = 0; i < count; i++) {
        const ledger_state_write *w = &writes[i];
        if (w->remove || w->key_len != ERASED_PREFIX_BYTES + EHR_HASH_BYTES ||
            memcmp(w->key, ERASED_PREFIX, ERASED_PREFIX_BYTES) != 0)
            continue;
        any = true;
        if (!erase_queue_record(n, w->key + ERASED_PREFIX_BYTES)) {
            ehr_log(EHR_LOG_WARN, "erasure queue full; scanning the erased records again",
                    "queued=%zu", e->count);
            scan_restart(n); /* E2 */
        }
    }
    if (any)
        erase_kick(n);
}

void node__blob_erase_rescan(struct node *n)
{
    if (!n->blobs.erase.started)
        return;
    scan_restart(n);
    erase_kick(n);
}

void node__blob_erase_close(struct node *n)
{
    EHR_ASSERT(!n->blobs.erase.working); /* E1 */
    ehr_free(n->blobs.erase.queue);
    n->blobs.erase.queue = NULL;
}
