/*
 * bench_audit - a patient's audit trail among 1,000,000 audit events: the
 * work node/service.c's GetAuditTrail handler does for one request, by
 * unpacking it and calling the function it runs once the read is allowed,
 * node__audit_trail (the signed read's check, node__read_check, one BIP-340
 * verification and a member lookup, is not timed here; one
 * ledger_state_scan over "audit/" + patient with the page limit, each value
 * unpacked as an AuditEvent into the response, the response packed,
 * everything freed), timed per query for uniformly random patients, against
 * a floor measured in the same run: one ledger_state_get of a random
 * existing audit key (a read view and one lookup).
 *
 *   scripts/bench audit [--events N] [--patients N] [--block-txs N]
 *                       [--queries N] [--overlay-percent P] [--limit N]
 *                       [--sync none|durable] [--seed N] [--dir DIR] [--no-cold]
 *
 * The ledger (audit_workload.h) is real: LMDB through ledger_append_block,
 * --block-txs signed transactions per block, one audit event each, with
 * the state writes the consent contract makes for that kind of event. The
 * bulk load uses --sync none by default (no fdatasync: a throwaway
 * ledger); the reads do not depend on it.
 *
 * Phases, each --queries rounds: "overlay", right after the last append,
 * the last --overlay-percent of the events still in the overlay (the
 * automatic checkpoints paused for them); "derived", after ledger_checkpoint
 * has moved everything to the derived tables; "cold" (unless --no-cold),
 * after closing the ledger, dropping its files from the page cache
 * (posix_fadvise, this ledger's files only) and opening it again, as after
 * a restart. A round runs the whole query, the floor, the scan alone and
 * the scan with the unpacking, each for its own random patient or key, so
 * the same machine load hits all four; the last two say where the time
 * goes (scan, unpacking, packing).
 *
 * On a shared machine a query is sometimes preempted by another process
 * for a scheduler slice (milliseconds). Each timed call reads the thread's
 * involuntary context switches and major page faults around it
 * (getrusage, outside the timed part): the figures count every query, and
 * the preempted share and the p99 of the queries that ran uninterrupted are
 * printed next to them. Prints a table and one JSON line; nothing here
 * judges the figures (docs/BENCHMARKS.md records them).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit_workload.h"
#include "ehr/v1/node.pb-c.h"
#include "ledger_internal.h"
#include "ledger_testutil.h"
#include "node_internal.h"
#include "pbwire.h"

enum { PATIENTS_MAX = 10000000, QUERIES_MAX = 10000000, TARGET_P99_US = 1000 };

typedef struct bench_args {
    audit_workload_options workload;
    uint64_t queries, overlay_percent, limit;
    enum ledger_sync_mode sync;
    const char *dir;
    bool cold;
} bench_args;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64, for the queries (the workload has its own). */
static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) % n;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int args_parse(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){
        .workload = {.events = 1000000, .patients = 20000, .block_txs = 1000, .seed = 1},
        .queries = 20000,
        .overlay_percent = 25,
        .limit = NODE_QUERY_LIMIT_DEFAULT,
        .sync = LEDGER_SYNC_NONE,
        .cold = true};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(o, "--no-cold") == 0) {
            a->cold = false;
            continue;
        }
        if (v == NULL)
            return -1;
        i++;
        if (strcmp(o, "--events") == 0)
            rc = parse_u64(v, 1, AUDIT_WORKLOAD_EVENTS_MAX, &a->workload.events);
        else if (strcmp(o, "--patients") == 0)
            rc = parse_u64(v, 1, PATIENTS_MAX, &a->workload.patients);
        else if (strcmp(o, "--block-txs") == 0)
            rc = parse_u64(v, 1, EHR_BLOCK_TX_COUNT_MAX, &a->workload.block_txs);
        else if (strcmp(o, "--seed") == 0)
            rc = parse_u64(v, 0, UINT64_MAX, &a->workload.seed);
        else if (strcmp(o, "--queries") == 0)
            rc = parse_u64(v, 1, QUERIES_MAX, &a->queries);
        else if (strcmp(o, "--overlay-percent") == 0)
            rc = parse_u64(v, 0, 100, &a->overlay_percent);
        else if (strcmp(o, "--limit") == 0)
            rc = parse_u64(v, 1, NODE_QUERY_LIMIT_MAX, &a->limit);
        else if (strcmp(o, "--sync") == 0 && strcmp(v, "none") == 0)
            a->sync = LEDGER_SYNC_NONE;
        else if (strcmp(o, "--sync") == 0 && strcmp(v, "durable") == 0)
            a->sync = LEDGER_SYNC_DURABLE;
        else if (strcmp(o, "--dir") == 0)
            a->dir = v;
        else
            return -1;
        if (rc != 0)
            return -1;
    }
    return a->workload.events >= a->workload.patients ? 0 : -1; /* all are enrolled */
}

/* ---- the query: node__audit_trail, what the GetAuditTrail handler runs ---- */

/* What a pass runs: the whole handler (node__audit_trail itself), a part of
 * it for the breakdown, or the handler as it could be (QUERY_COPY: each
 * stored value, which is the AuditEvent's canonical encoding, copied into
 * the response as its field 1 instead of unpacked and packed again; the
 * answer is the same bytes). The parts are copies of service.c's paging
 * (page_scan, page_one, fill_audit): keep them in step. */
enum query_mode { QUERY_FULL, QUERY_SCAN_UNPACK, QUERY_SCAN, QUERY_COPY };

/* service.c's struct page, for the audit trail's parts. */
struct page {
    size_t limit, seen;
    enum query_mode mode;
    Ehr__V1__GetAuditTrailResponse *out;
    uint8_t last[EHR_STATE_KEY_BYTES_MAX];
    size_t last_len;
    bool more;
    int err;
    uint8_t *copy; /* QUERY_COPY: the response's bytes so far */
    size_t copy_len, copy_cap;
};

/* QUERY_COPY: append length-delimited field FIELD with BYTES to the response. */
static void copy_field(struct page *p, uint32_t field, const uint8_t *bytes, size_t len)
{
    size_t need = p->copy_len + ehr_pb_len_header_size(field, len) + len;
    if (need > p->copy_cap) {
        p->copy_cap = need > 2 * p->copy_cap ? need : 2 * p->copy_cap;
        p->copy = ehr_realloc(p->copy, p->copy_cap);
    }
    uint8_t *at = ehr_pb_len_header_write(p->copy + p->copy_len, field, len);
    if (len > 0)
        memcpy(at, bytes, len);
    p->copy_len = (size_t)(at - p->copy) + len;
}

/* service.c's fill_audit (QUERY_SCAN: the event is left packed; QUERY_COPY:
 * copied). */
static int fill_audit(struct page *p, const uint8_t *value, size_t value_len)
{
    Ehr__V1__GetAuditTrailResponse *r = p->out;
    if (p->mode == QUERY_SCAN) {
        r->n_events++;
        return 0;
    }
    if (p->mode == QUERY_COPY) {
        copy_field(p, 1, value, value_len); /* GetAuditTrailResponse.events */
        r->n_events++;
        return 0;
    }
    Ehr__V1__AuditEvent *ev = ehr__v1__audit_event__unpack(NULL, value_len, value);
    if (ev == NULL)
        return EHR_ECORRUPT;
    r->events[r->n_events++] = ev;
    return 0;
}

/* service.c's page_one. */
static int page_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                    size_t value_len)
{
    struct page *p = ctx;
    if (p->seen == p->limit) {
        p->more = true;
        return 1;
    }
    int rc = fill_audit(p, value, value_len);
    if (rc != 0) {
        p->err = rc;
        return 1;
    }
    EHR_ASSERT(key_len <= sizeof p->last);
    memcpy(p->last, key, key_len);
    p->last_len = key_len;
    p->seen++;
    return 0;
}

/* The events in ANSWER (a GetAuditTrailResponse) and whether it has a
 * next page token; panics if it failed or does not decode. */
static size_t answer_count(const node__answer *a, bool *more)
{
    if (a->status != RPC_STATUS_OK)
        ehr_panic("GetAuditTrail failed (status %d): %s", (int)a->status, a->msg);
    Ehr__V1__GetAuditTrailResponse *r =
        ehr__v1__get_audit_trail_response__unpack(NULL, a->len, a->bytes);
    if (r == NULL)
        ehr_panic("GetAuditTrail's answer does not decode");
    size_t n = r->n_events;
    *more = r->next_page_token.len > 0;
    ehr__v1__get_audit_trail_response__free_unpacked(r, NULL);
    return n;
}

/*
 * A part of the GetAuditTrail request REQ (packed), as node__audit_trail
 * runs it (MODE: not QUERY_FULL, which is node__audit_trail itself). For
 * QUERY_COPY, the reply is built into a buffer and freed (or handed to the
 * caller in *ANSWER, when not NULL: ehr_free it). Returns the events
 * answered; *MORE whether a next page exists.
 */
static size_t audit_query(ledger *l, const uint8_t *req, size_t req_len, enum query_mode mode,
                          bool *more, uint8_t **answer, size_t *answer_len)
{
    EHR_ASSERT(mode != QUERY_FULL);
    Ehr__V1__GetAuditTrailRequest *q = ehr__v1__get_audit_trail_request__unpack(NULL, req_len, req);
    EHR_ASSERT(q != NULL);
    EHR_ASSERT(q->patient_key.len == EHR_SCHNORR_PUBLIC_BYTES);
    Ehr__V1__GetAuditTrailResponse r = EHR__V1__GET_AUDIT_TRAIL_RESPONSE__INIT;
    uint8_t prefix[CONTRACTS_KEY_BYTES_MAX];
    size_t prefix_len =
        contracts_key(prefix, CONTRACTS_PREFIX_AUDIT, q->patient_key.data, NULL, NULL);
    struct page p = {.mode = mode, .out = &r};
    r.events = ehr_calloc(NODE_QUERY_LIMIT_MAX + 1, sizeof *r.events);
    p.limit = q->limit == 0 ? NODE_QUERY_LIMIT_DEFAULT : q->limit;
    ehr_diag diag = {{0}};
    long got =
        ledger_state_scan(l, prefix, prefix_len, q->page_token.len ? q->page_token.data : NULL,
                          q->page_token.len, p.limit + 1, page_one, &p, &diag);
    if (got < 0 || p.err != 0)
        ehr_panic("the audit scan failed: %s", diag.msg[0] ? diag.msg : ehr_strerror(p.err));
    if (mode == QUERY_COPY) {
        if (p.more)
            copy_field(&p, 2, p.last, p.last_len); /* next_page_token */
        if (answer != NULL) {
            *answer = p.copy;
            *answer_len = p.copy_len;
        } else {
            ehr_free(p.copy);
        }
    }
    size_t n = r.n_events;
    if (mode == QUERY_SCAN_UNPACK)
        for (size_t i = 0; i < r.n_events; i++)
            ehr__v1__audit_event__free_unpacked(r.events[i], NULL);
    ehr_free(r.events);
    ehr__v1__get_audit_trail_request__free_unpacked(q, NULL);
    *more = p.more;
    return n;
}

/* ---- measuring ---- */

/* The timed calls of one kind in one phase, in the order run. */
struct series {
    double *us;
    bool *preempted;
    size_t count;
    uint64_t events, events_max, full_pages, preempted_count, major_faults;
};

struct figures {
    size_t count;
    double p50, p99, p999, max, mean;
};

/* A timed call: the thread's counters before it and the clock. */
struct probe {
    struct rusage usage;
    double t0;
};

static void probe_begin(struct probe *p)
{
    getrusage(RUSAGE_THREAD, &p->usage);
    p->t0 = now_s();
}

/* Record the call begun with P in S; returns its index. */
static size_t probe_end(const struct probe *p, struct series *s)
{
    double t1 = now_s();
    struct rusage u;
    getrusage(RUSAGE_THREAD, &u);
    size_t i = s->count++;
    s->us[i] = 1e6 * (t1 - p->t0);
    s->preempted[i] = u.ru_nivcsw != p->usage.ru_nivcsw;
    s->preempted_count += s->preempted[i];
    s->major_faults += (uint64_t)(u.ru_majflt - p->usage.ru_majflt);
    return i;
}

static int double_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Nearest-rank percentiles and the mean of S's calls (those not preempted
 * only, if UNPREEMPTED). */
static struct figures figures_of(const struct series *s, bool unpreempted)
{
    double *v = ehr_malloc((s->count ? s->count : 1) * sizeof *v), sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++)
        if (!unpreempted || !s->preempted[i]) {
            v[n++] = s->us[i];
            sum += s->us[i];
        }
    struct figures f = {.count = n};
    if (n > 0) {
        qsort(v, n, sizeof *v, double_cmp);
        f.p50 = v[(size_t)ceil(0.5 * (double)n) - 1];
        f.p99 = v[(size_t)ceil(0.99 * (double)n) - 1];
        f.p999 = v[(size_t)ceil(0.999 * (double)n) - 1];
        f.max = v[n - 1];
        f.mean = sum / (double)n;
    }
    ehr_free(v);
    return f;
}

struct bench {
    bench_args a;
    audit_workload w;
    uint64_t rng;
    char dir[1024];
    ledger *l;
};

struct phase {
    const char *name, *where;
    uint64_t overlay_blocks, checkpoint_height;
    struct series full, full_pages, floor, scan, scan_unpack, copy;
};

static void series_init(struct series *s, size_t n)
{
    *s = (struct series){.us = ehr_malloc(n * sizeof *s->us),
                         .preempted = ehr_malloc(n * sizeof *s->preempted)};
}

static void series_free(struct series *s)
{
    ehr_free(s->us);
    ehr_free(s->preempted);
}

enum { REQUEST_BYTES_MAX = 64, CHECK_ROUNDS = 200 };

/* The handler's work for the packed request REQ once the read is allowed:
 * unpack, node__audit_trail, free. */
static void audit_trail_full(ledger *l, const uint8_t *req, size_t req_len, node__answer *a)
{
    Ehr__V1__GetAuditTrailRequest *q = ehr__v1__get_audit_trail_request__unpack(NULL, req_len, req);
    EHR_ASSERT(q != NULL);
    node__audit_trail(l, q, a);
    ehr__v1__get_audit_trail_request__free_unpacked(q, NULL);
}

/* A packed GetAuditTrailRequest for patient PI (limit 0 for the default,
 * as a client leaves it). Returns its length. */
static size_t request_make(const struct bench *b, uint32_t pi, uint8_t req[REQUEST_BYTES_MAX])
{
    Ehr__V1__GetAuditTrailRequest q = EHR__V1__GET_AUDIT_TRAIL_REQUEST__INIT;
    q.patient_key =
        (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)b->w.patients[pi].key};
    q.limit = b->a.limit == NODE_QUERY_LIMIT_DEFAULT ? 0 : (uint32_t)b->a.limit;
    EHR_ASSERT(ehr__v1__get_audit_trail_request__get_packed_size(&q) <= REQUEST_BYTES_MAX);
    return ehr__v1__get_audit_trail_request__pack(&q, req);
}

/* The copying handler (QUERY_COPY) answers a random patient with the very
 * bytes the node's handler does (untimed). */
static void answer_check(struct bench *b)
{
    uint32_t pi = (uint32_t)rng_below(&b->rng, b->a.workload.patients);
    uint8_t req[REQUEST_BYTES_MAX], *copy;
    size_t req_len = request_make(b, pi, req), copy_len;
    bool more;
    node__answer full;
    audit_trail_full(b->l, req, req_len, &full);
    answer_count(&full, &more);
    audit_query(b->l, req, req_len, QUERY_COPY, &more, &copy, &copy_len);
    if (full.len != copy_len || memcmp(full.bytes, copy, full.len) != 0)
        ehr_panic("patient %u: the copied answer (%zu bytes) differs from the packed one (%zu "
                  "bytes)",
                  pi, copy_len, full.len);
    ehr_free(full.bytes);
    ehr_free(copy);
}

/* One query of MODE for a random patient, timed into S (and into PAGES if
 * it filled a page), its answer checked against the trail's length. */
static void query_timed(struct bench *b, enum query_mode mode, struct series *s,
                        struct series *pages)
{
    uint32_t pi = (uint32_t)rng_below(&b->rng, b->a.workload.patients);
    const audit_patient *p = &b->w.patients[pi];
    uint8_t req[REQUEST_BYTES_MAX];
    size_t req_len = request_make(b, pi, req);
    bool more;
    struct probe probe;
    size_t n;
    probe_begin(&probe);
    if (mode == QUERY_FULL) {
        /* The handler: node__audit_trail, then the answer's bytes freed
         * once sent; the check between is not timed. */
        node__answer a;
        audit_trail_full(b->l, req, req_len, &a);
        double t1 = now_s();
        n = answer_count(&a, &more);
        double t2 = now_s();
        ehr_free(a.bytes);
        probe.t0 += t2 - t1;
    } else {
        n = audit_query(b->l, req, req_len, mode, &more, NULL, NULL);
    }
    size_t i = probe_end(&probe, s);
    uint64_t want = p->events < b->a.limit ? p->events : b->a.limit;
    if (n != want || more != (p->events > b->a.limit))
        ehr_panic("patient %u: %zu events answered (more: %d), its trail has %u", pi, n, more,
                  p->events);
    s->events += n;
    if (n > s->events_max)
        s->events_max = n;
    s->full_pages += more;
    if (pages != NULL && n == b->a.limit) {
        pages->us[pages->count] = s->us[i];
        pages->preempted[pages->count++] = s->preempted[i];
        pages->preempted_count += s->preempted[i];
    }
}

/* The floor: ledger_state_get of a random audit key that was written. */
static void floor_timed(struct bench *b, struct series *s)
{
    const audit_place *e = &b->w.places[rng_below(&b->rng, b->w.place_count)];
    uint8_t k[CONTRACTS_KEY_BYTES_MAX], *v;
    size_t n = audit_workload_key(&b->w, e, k), len;
    struct probe probe;
    probe_begin(&probe);
    int rc = ledger_state_get(b->l, k, n, &v, &len, NULL);
    ehr_free(v);
    probe_end(&probe, s);
    if (rc != 0)
        ehr_panic("an audit key written is not found: %s", ehr_strerror(rc));
}

static void phase_run(struct bench *b, struct phase *ph)
{
    ledger_stats st;
    if (ledger_stats_get(b->l, &st, NULL) != 0)
        ehr_panic("ledger_stats_get failed");
    ph->overlay_blocks = st.overlay_blocks;
    ph->checkpoint_height = st.checkpoint_height;
    size_t n = (size_t)b->a.queries;
    series_init(&ph->full, n);
    series_init(&ph->full_pages, n);
    series_init(&ph->floor, n);
    series_init(&ph->scan, n);
    series_init(&ph->scan_unpack, n);
    series_init(&ph->copy, n);
    for (size_t i = 0; i < CHECK_ROUNDS; i++)
        answer_check(b);
    for (size_t i = 0; i < n; i++) {
        query_timed(b, QUERY_FULL, &ph->full, &ph->full_pages);
        floor_timed(b, &ph->floor);
        query_timed(b, QUERY_SCAN, &ph->scan, NULL);
        query_timed(b, QUERY_SCAN_UNPACK, &ph->scan_unpack, NULL);
        query_timed(b, QUERY_COPY, &ph->copy, NULL);
    }
}

/* Major page faults in all of the phase's timed calls. */
static uint64_t phase_faults(const struct phase *ph)
{
    return ph->full.major_faults + ph->floor.major_faults + ph->scan.major_faults +
           ph->scan_unpack.major_faults + ph->copy.major_faults;
}

/* ---- the cold phase: the ledger's files out of the page cache ---- */

/* The share of PATH's pages in the page cache; *BYTES its size. */
static double resident_share(const char *path, uint64_t *bytes)
{
    *bytes = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    size_t size = (size_t)st.st_size, page = (size_t)sysconf(_SC_PAGESIZE);
    size_t count = (size + page - 1) / page, in = 0;
    unsigned char *vec = ehr_malloc(count);
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map != MAP_FAILED) {
        if (mincore(map, size, vec) == 0)
            for (size_t i = 0; i < count; i++)
                in += vec[i] & 1;
        munmap(map, size);
    }
    ehr_free(vec);
    close(fd);
    *bytes = size;
    return (double)in / (double)count;
}

/* Close the ledger, write back and drop its files from the page cache (only
 * these files: the machine is shared), open it again. */
static void ledger_reopen_cold(struct bench *b)
{
    ledger_close(b->l);
    b->l = NULL;
    const char *files[] = {"data.mdb", LEDGER__DERIVED_FILE};
    printf("cold:");
    for (size_t i = 0; i < EHR_ARRAY_COUNT(files); i++) {
        char path[1100];
        snprintf(path, sizeof path, "%s/%s", b->dir, files[i]);
        uint64_t bytes;
        double before = resident_share(path, &bytes);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fdatasync(fd) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
            ehr_panic("cannot drop %s from the page cache: %s", path, strerror(errno));
        close(fd);
        double after = resident_share(path, &bytes);
        printf(" %s (%.0f MB) %.0f%% in the page cache, then %.1f%%;", files[i],
               (double)bytes / 1e6, 100 * before, 100 * after);
    }
    printf("\n");
    ledger_options opts = {.sync = b->a.sync};
    ehr_diag why;
    if (ledger_open(b->dir, &opts, &b->l, &why) != 0)
        ehr_panic("reopening the ledger: %s", why.msg);
}

/* How far the cold phase read the files back, and its first queries. */
static void cold_report(const struct bench *b, const struct phase *ph)
{
    char data[1100], derived[1100];
    snprintf(data, sizeof data, "%s/data.mdb", b->dir);
    snprintf(derived, sizeof derived, "%s/%s", b->dir, LEDGER__DERIVED_FILE);
    uint64_t bytes;
    double data_share = resident_share(data, &bytes);
    double derived_share = resident_share(derived, &bytes);
    struct series head = ph->full;
    head.count = head.count < 1000 ? head.count : 1000;
    struct figures f = figures_of(&head, false);
    printf("cold: after the phase %.0f%% of data.mdb and %.0f%% of %s in the page cache, %llu "
           "major faults in the timed calls; the first %zu queries: p50 %.1f us, p99 %.1f us, max "
           "%.1f us\n",
           100 * data_share, 100 * derived_share, LEDGER__DERIVED_FILE,
           (unsigned long long)phase_faults(ph), f.count, f.p50, f.p99, f.max);
}

/* ---- output ---- */

static void phase_print(const struct phase *ph)
{
    struct figures q = figures_of(&ph->full, false), u = figures_of(&ph->full, true);
    struct figures f = figures_of(&ph->floor, false);
    printf("%-8s %-32s %7zu %5.1f %5.1f%% %7.1f %8.1f %8.1f %8.1f %6.2f %7.1f %5.1f%% %8.1f "
           "%7.1f\n",
           ph->name, ph->where, q.count, (double)ph->full.events / (double)q.count,
           100.0 * (double)ph->full.full_pages / (double)q.count, q.p50, q.p99, q.p999, q.max,
           f.p50, q.p99 / f.p50, 100.0 * (double)ph->full.preempted_count / (double)q.count, u.p99,
           u.p99 / f.p50);
}

static void breakdown_print(const struct phase *ph)
{
    /* Uninterrupted calls only: a preemption costs milliseconds and would
     * swamp the means. */
    struct figures s = figures_of(&ph->scan, true), u = figures_of(&ph->scan_unpack, true);
    struct figures q = figures_of(&ph->full, true), pg = figures_of(&ph->full_pages, true);
    struct figures c = figures_of(&ph->copy, true), ca = figures_of(&ph->copy, false);
    double es = (double)ph->scan.events / (double)ph->scan.count;
    double eu = (double)ph->scan_unpack.events / (double)ph->scan_unpack.count;
    double eq = (double)ph->full.events / (double)ph->full.count;
    double ec = (double)ph->copy.events / (double)ph->copy.count;
    printf("%-8s scan alone      mean %6.1f  p50 %6.1f  p99 %6.1f us  (%.1f events/query)\n",
           ph->name, s.mean, s.p50, s.p99, es);
    printf("%-8s scan + unpack   mean %6.1f  p50 %6.1f  p99 %6.1f us  (%.1f events/query)\n", "",
           u.mean, u.p50, u.p99, eu);
    printf("%-8s whole query     mean %6.1f  p50 %6.1f  p99 %6.1f us  (%.1f events/query)\n", "",
           q.mean, q.p50, q.p99, eq);
    printf("%-8s   full pages    mean %6.1f  p50 %6.1f  p99 %6.1f us  (%zu queries of %llu "
           "events; counting the preempted: p99 %.1f us)\n",
           "", pg.mean, pg.p50, pg.p99, pg.count, (unsigned long long)ph->full.events_max,
           figures_of(&ph->full_pages, false).p99);
    printf("%-8s copied values  mean %6.1f  p50 %6.1f  p99 %6.1f us  (%.1f events/query; "
           "counting the preempted: p99 %.1f us)\n",
           "", c.mean, c.p50, c.p99, ec, ca.p99);
    printf("%-8s per event: scan %.2f us, unpack + free %.2f us, pack %.2f us, copy %.2f us\n", "",
           s.mean / es, u.mean / eu - s.mean / es, q.mean / eq - u.mean / eu,
           c.mean / ec - s.mean / es);
}

static void phase_json(const struct phase *ph, const char *comma)
{
    struct figures q = figures_of(&ph->full, false), qu = figures_of(&ph->full, true);
    struct figures f = figures_of(&ph->floor, false), pg = figures_of(&ph->full_pages, false);
    struct figures s = figures_of(&ph->scan, true), u = figures_of(&ph->scan_unpack, true);
    struct figures c = figures_of(&ph->copy, false), cu = figures_of(&ph->copy, true);
    printf("%s\"%s\":{\"overlay_blocks\":%llu,\"checkpoint_height\":%llu,\"queries\":%zu,"
           "\"events_per_query\":%.2f,\"full_pages\":%llu,\"p50_us\":%.2f,\"p99_us\":%.2f,"
           "\"p999_us\":%.2f,\"max_us\":%.2f,\"full_page_p99_us\":%.2f,\"floor_p50_us\":%.3f,"
           "\"ratio_p99_floor\":%.2f,\"preempted\":%llu,\"unpreempted_p99_us\":%.2f,"
           "\"ratio_unpreempted_p99_floor\":%.2f,"
           "\"unpreempted_mean_us\":%.2f,\"scan_mean_us\":%.2f,\"scan_unpack_mean_us\":%.2f,"
           "\"copy_p99_us\":%.2f,\"copy_unpreempted_p99_us\":%.2f,\"copy_mean_us\":%.2f,"
           "\"major_faults\":%llu}",
           comma, ph->name, (unsigned long long)ph->overlay_blocks,
           (unsigned long long)ph->checkpoint_height, q.count,
           (double)ph->full.events / (double)q.count, (unsigned long long)ph->full.full_pages,
           q.p50, q.p99, q.p999, q.max, pg.p99, f.p50, q.p99 / f.p50,
           (unsigned long long)ph->full.preempted_count, qu.p99, qu.p99 / f.p50, qu.mean, s.mean,
           u.mean, c.p99, cu.p99, cu.mean, (unsigned long long)phase_faults(ph));
}

/* The trail lengths' median, p90, p99. */
static void trails_print(const audit_workload *w)
{
    uint64_t n = w->options.patients;
    double *len = ehr_malloc(n * sizeof *len);
    for (uint64_t i = 0; i < n; i++)
        len[i] = w->patients[i].events;
    qsort(len, n, sizeof *len, double_cmp);
    printf("trail length: median %.0f, p90 %.0f, p99 %.0f, longest %u; events: %llu enrol, %llu "
           "anchor, %llu grant, %llu revoke, %llu access, %llu emergency\n",
           len[(n - 1) / 2], len[(size_t)ceil(0.9 * (double)n) - 1],
           len[(size_t)ceil(0.99 * (double)n) - 1], w->trail_max,
           (unsigned long long)w->kind_count[EHR__V1__AUDIT_KIND__AUDIT_KIND_ENROLL],
           (unsigned long long)w->kind_count[EHR__V1__AUDIT_KIND__AUDIT_KIND_ANCHOR],
           (unsigned long long)w->kind_count[EHR__V1__AUDIT_KIND__AUDIT_KIND_GRANT],
           (unsigned long long)w->kind_count[EHR__V1__AUDIT_KIND__AUDIT_KIND_REVOKE],
           (unsigned long long)w->kind_count[EHR__V1__AUDIT_KIND__AUDIT_KIND_ACCESS],
           (unsigned long long)w->kind_count[EHR__V1__AUDIT_KIND__AUDIT_KIND_EMERGENCY]);
    ehr_free(len);
}

/* Build the ledger: the first events with the checkpoints running, then
 * the rest with them paused, so that part is still in the overlay. */
static void ledger_build(struct bench *b)
{
    uint8_t *g;
    size_t g_len;
    audit_workload_genesis(&b->w, &g, &g_len);
    ledger_options opts = {.sync = b->a.sync};
    ehr_diag why;
    if (ledger_open(b->dir, &opts, &b->l, &why) != 0 ||
        ledger_genesis_init(b->l, g, g_len, &why) != 0)
        ehr_panic("ledger setup in %s: %s", b->dir, why.msg);
    ehr_free(g);
    uint64_t events = b->a.workload.events;
    uint64_t split = events - events * b->a.overlay_percent / 100;
    double t0 = now_s();
    audit_workload_append(&b->w, b->l, 0, split, 0);
    if (ledger_checkpoint(b->l, &why) != 0)
        ehr_panic("checkpoint: %s", why.msg);
    ledger__checkpoint_pause(b->l, true);
    audit_workload_append(&b->w, b->l, split, events, LEDGER_OVERLAY_BYTES_MAX);
    ledger_stats st;
    if (ledger_stats_get(b->l, &st, NULL) != 0)
        ehr_panic("ledger_stats_get failed");
    printf("built in %.1f s (signing and building blocks %.1f s, ledger_append_block %.1f s): "
           "%llu blocks, %llu state keys, %.0f MB on disk; overlay %llu blocks (%.0f MB) above "
           "checkpoint height %llu\n",
           now_s() - t0, b->w.sign_s, b->w.append_s, (unsigned long long)st.blocks,
           (unsigned long long)st.state_keys, (double)st.file_bytes / 1e6,
           (unsigned long long)st.overlay_blocks, (double)st.overlay_bytes / 1e6,
           (unsigned long long)st.checkpoint_height);
    trails_print(&b->w);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct bench *b = ehr_calloc(1, sizeof *b);
    if (args_parse(argc, argv, &b->a) != 0) {
        fprintf(stderr, "usage: bench_audit [--events N] [--patients N (<= events)] "
                        "[--block-txs N] [--queries N] [--overlay-percent P] [--limit N] "
                        "[--sync none|durable] [--seed N] [--dir DIR] [--no-cold]\n");
        return 2;
    }
    if (ehr_crypto_init() != 0)
        return 1;
    char *tmp = b->a.dir == NULL ? tu_tmpdir() : NULL;
    snprintf(b->dir, sizeof b->dir, "%s", tmp != NULL ? tmp : b->a.dir);
    audit_workload_init(&b->w, &b->a.workload);
    b->rng = b->a.workload.seed ^ 0x5eed;
    printf("bench_audit: %llu audit events of %llu patients, blocks of %llu transactions, sync "
           "%s, page limit %llu, dir %s\n",
           (unsigned long long)b->a.workload.events, (unsigned long long)b->a.workload.patients,
           (unsigned long long)b->a.workload.block_txs,
           b->a.sync == LEDGER_SYNC_NONE ? "none (bulk load, no fdatasync)" : "durable",
           (unsigned long long)b->a.limit, b->dir);
    fflush(stdout);
    ledger_build(b);

    char where[64];
    snprintf(where, sizeof where, "last %llu%% of events in overlay",
             (unsigned long long)b->a.overlay_percent);
    struct phase phases[3] = {{.name = "overlay", .where = where},
                              {.name = "derived", .where = "all in the derived tables"},
                              {.name = "cold", .where = "derived, evicted, reopened"}};
    size_t phase_count = b->a.cold ? 3 : 2;
    phase_run(b, &phases[0]);
    ledger__checkpoint_pause(b->l, false);
    double c0 = now_s();
    ehr_diag why;
    if (ledger_checkpoint(b->l, &why) != 0)
        ehr_panic("checkpoint: %s", why.msg);
    printf("ledger_checkpoint of the overlay: %.2f s\n", now_s() - c0);
    phase_run(b, &phases[1]);
    if (b->a.cold) {
        ledger_reopen_cold(b);
        phase_run(b, &phases[2]);
        cold_report(b, &phases[2]);
    }

    printf("\n%-8s %-32s %7s %5s %6s %7s %8s %8s %8s %6s %7s %6s %8s %7s\n", "phase", "keys",
           "queries", "ev/q", "full", "p50 us", "p99 us", "p99.9 us", "max us", "floor", "p99/fl",
           "preem", "p99 unpr", "/floor");
    for (size_t i = 0; i < phase_count; i++)
        phase_print(&phases[i]);
    printf("full: share of queries answering a full page (a next page exists); floor: "
           "ledger_state_get of a random audit key, p50 us; preem: queries preempted by another "
           "process; p99 unpr: p99 of the others, and its ratio to the floor. Target: p99 under %d "
           "us.\n\n",
           TARGET_P99_US);
    for (size_t i = 0; i < phase_count; i++)
        breakdown_print(&phases[i]);
    printf("{\"bench\":\"audit\",\"events\":%llu,\"patients\":%llu,\"trail_max\":%u,"
           "\"block_txs\":%llu,\"limit\":%llu,\"sync\":\"%s\",\"overlay_percent\":%llu,"
           "\"target_p99_us\":%d,\"phases\":{",
           (unsigned long long)b->a.workload.events, (unsigned long long)b->a.workload.patients,
           b->w.trail_max, (unsigned long long)b->a.workload.block_txs,
           (unsigned long long)b->a.limit, b->a.sync == LEDGER_SYNC_NONE ? "none" : "durable",
           (unsigned long long)b->a.overlay_percent, TARGET_P99_US);
    for (size_t i = 0; i < phase_count; i++)
        phase_json(&phases[i], i ? "," : "");
    printf("}}\n");

    for (size_t i = 0; i < phase_count; i++) {
        series_free(&phases[i].full);
        series_free(&phases[i].full_pages);
        series_free(&phases[i].floor);
        series_free(&phases[i].scan);
        series_free(&phases[i].scan_unpack);
        series_free(&phases[i].copy);
    }
    ledger_close(b->l);
    if (tmp != NULL)
        tu_rmdir(tmp);
    audit_workload_free(&b->w);
    ehr_free(b);
    return 0;
}
