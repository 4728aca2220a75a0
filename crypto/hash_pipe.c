/*
 * hash_pipe.c - the content hash on a second thread (record.h,
 * ehr_hash_pipe): the caller fills slots of a ring in order, the pipe's
 * thread hashes each (ehr_content_hash) and hands it to an optional sink,
 * so that encryption or decryption on the caller's core and the hash on
 * another run at the same time (crypto/README.md, "Content hash").
 *
 * Design notes. One producer (the caller), one consumer (the thread), a
 * ring of EHR_HASH_PIPE_SLOTS slots under one mutex and one condition
 * variable. Invariants:
 *   1. consumed <= produced <= consumed + EHR_HASH_PIPE_SLOTS: the caller
 *      waits for a free slot, the thread for a filled one;
 *   2. a slot is the caller's from ehr_hash_pipe_slot until
 *      ehr_hash_pipe_push, then the thread's until it counts it consumed;
 *      neither touches the other's slots, so the bytes are copied out of
 *      the lock;
 *   3. the slots are hashed and sunk in the order they were pushed;
 *   4. after the sink's first error the thread still hashes nothing more
 *      and sinks nothing more, but keeps consuming, so the caller never
 *      waits forever; the error is reported by ehr_hash_pipe_error and
 *      ehr_hash_pipe_finish.
 * Not here: what the bytes are (record.c, ehrctl's record add and get).
 */
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "record.h"

struct ehr_hash_pipe {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *slots; /* EHR_HASH_PIPE_SLOTS x slot_bytes */
    size_t slot_bytes;
    size_t len[EHR_HASH_PIPE_SLOTS];
    uint64_t produced, consumed; /* slots, ever */
    bool filling;                /* a slot is the caller's (ehr_hash_pipe_slot) */
    bool done;                   /* no more slots come */
    int sink_err;                /* the sink's first error, 0 while none */
    struct ehr_content_hash hash;
    ehr_hash_pipe_sink_fn sink;
    void *sink_ctx;
};

static void *pipe_run(void *arg)
{
    struct ehr_hash_pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->consumed == p->produced && !p->done)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->consumed == p->produced) /* done, and all consumed */
            break;
        size_t slot = (size_t)(p->consumed % EHR_HASH_PIPE_SLOTS);
        size_t len = p->len[slot];
        bool failed = p->sink_err != 0;
        pthread_mutex_unlock(&p->mu);
        const uint8_t *data = p->slots + slot * p->slot_bytes;
        int err = 0;
        if (!failed) {
            ehr_content_hash_update(&p->hash, data, len);
            if (p->sink != NULL)
                err = p->sink(p->sink_ctx, data, len);
        }
        pthread_mutex_lock(&p->mu);
        if (err != 0 && p->sink_err == 0)
            p->sink_err = err;
        p->consumed++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int ehr_hash_pipe_start(struct ehr_hash_pipe **out, size_t slot_bytes, ehr_hash_pipe_sink_fn sink,
                        void *sink_ctx)
{
    EHR_ASSERT(slot_bytes > 0);
    EHR_ASSERT(slot_bytes <= EHR_HASH_PIPE_SLOT_BYTES_MAX);
    struct ehr_hash_pipe *p = ehr_malloc(sizeof *p);
    memset(p, 0, sizeof *p);
    p->slot_bytes = slot_bytes;
    p->slots = ehr_malloc(EHR_HASH_PIPE_SLOTS * slot_bytes);
    p->sink = sink;
    p->sink_ctx = sink_ctx;
    ehr_content_hash_init(&p->hash);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    int rc = pthread_create(&p->thread, NULL, pipe_run, p);
    if (rc != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        ehr_content_hash_clear(&p->hash);
        ehr_free(p->slots);
        ehr_free(p);
        return -rc;
    }
    *out = p;
    return 0;
}

uint8_t *ehr_hash_pipe_slot(struct ehr_hash_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    EHR_ASSERT(!p->filling); /* one slot at a time */
    EHR_ASSERT(!p->done);
    while (p->produced - p->consumed == EHR_HASH_PIPE_SLOTS)
        pthread_cond_wait(&p->cv, &p->mu);
    p->filling = true;
    size_t slot = (size_t)(p->produced % EHR_HASH_PIPE_SLOTS);
    pthread_mutex_unlock(&p->mu);
    return p->slots + slot * p->slot_bytes;
}

void ehr_hash_pipe_push(struct ehr_hash_pipe *p, size_t len)
{
    EHR_ASSERT(len <= p->slot_bytes);
    pthread_mutex_lock(&p->mu);
    EHR_ASSERT(p->filling);
    p->len[p->produced % EHR_HASH_PIPE_SLOTS] = len;
    p->produced++;
    p->filling = false;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void ehr_hash_pipe_write(struct ehr_hash_pipe *p, const uint8_t *data, size_t len)
{
    while (len > 0) {
        size_t n = len < p->slot_bytes ? len : p->slot_bytes;
        memcpy(ehr_hash_pipe_slot(p), data, n);
        ehr_hash_pipe_push(p, n);
        data += n;
        len -= n;
    }
}

int ehr_hash_pipe_error(struct ehr_hash_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    int err = p->sink_err;
    pthread_mutex_unlock(&p->mu);
    return err;
}

/* Stop the thread after the slots pushed so far, and release. */
static int pipe_stop(struct ehr_hash_pipe *p)
{
    pthread_mutex_lock(&p->mu);
    EHR_ASSERT(!p->filling);
    p->done = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    int rc = pthread_join(p->thread, NULL);
    EHR_ASSERT(rc == 0);
    EHR_ASSERT(p->consumed == p->produced); /* invariant 1 at the end */
    int err = p->sink_err;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    /* The slots held ciphertext only; wiped all the same, as the opener's
     * buffers are. */
    sodium_memzero(p->slots, EHR_HASH_PIPE_SLOTS * p->slot_bytes);
    ehr_free(p->slots);
    return err;
}

int ehr_hash_pipe_finish(struct ehr_hash_pipe *p, uint8_t hash[EHR_SHA256_BYTES])
{
    int err = pipe_stop(p);
    if (err == 0)
        ehr_content_hash_final(&p->hash, hash);
    ehr_content_hash_clear(&p->hash);
    ehr_free(p);
    return err;
}

void ehr_hash_pipe_free(struct ehr_hash_pipe *p)
{
    if (p == NULL)
        return;
    if (p->filling) /* a slot taken and never pushed: hand it back empty */
        ehr_hash_pipe_push(p, 0);
    pipe_stop(p);
    ehr_content_hash_clear(&p->hash);
    ehr_free(p);
}
