/*
 * sim.c - the deterministic simulator (see sim.h). One event per step: a
 * node's tick, a message delivery, a node restart or a control event
 * (client proposals, faults, membership, transfers, reads, snapshots). Each
 * node follows the ready protocol against a simulated disk; after every step
 * the safety checks run. Check names (S1..S9, L1) match consensus/README.md.
 *
 * Not here: timing of real I/O, threads; the core is driven exactly as the
 * node will drive it, only the world around it is simulated.
 */
#include "sim.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"
#include "raft_test_util.h"

enum {
    TICK_UNITS = 10,   /* virtual time units per raft tick */
    CONTROL_UNITS = 5, /* period of the control event */
    TRACE_LINES = 48,  /* kept for the failure report */
    TRACE_LINE_BYTES = 200,
    PAYLOAD_BYTES_MAX = 4096, /* proposal_bytes_max in the simulation */
    CHAOS_UNITS_MIN = 2000,
    CHAOS_UNITS_SPAN = 5000,
    CALM_UNITS = 6000, /* 60 base election timeouts */
    DRAIN_UNITS = 2500,
    READY_LOOPS_MAX = 64,
    DISK_REWRITE_BYTES = 256 * 1024,
    /* of the crashes in chaos where the cluster can lose the node: the
     * node comes back restored from its latest snapshot (I14) */
    RESTORE_PPM = 300000,
    BACKUP_DATA_BYTES_MAX = 16 + 600, /* take_snapshot's data at most */
};

/* ---- deterministic randomness ---- */

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return n == 0 ? 0 : rng_next(r) % n;
}

static bool rng_ppm(struct rng *r, uint32_t per_million)
{
    return rng_below(r, 1000000) < per_million;
}

/* ---- growable u64 arrays indexed by log index, term, id ---- */

struct u64vec {
    uint64_t *v;
    size_t cap;
};

static uint64_t vec_get(const struct u64vec *v, uint64_t i)
{
    return i < v->cap ? v->v[i] : 0;
}

static void vec_set(struct u64vec *v, uint64_t i, uint64_t x)
{
    if (i >= v->cap) {
        size_t cap = v->cap == 0 ? 1024 : v->cap;
        while (cap <= i)
            cap *= 2;
        v->v = ehr_realloc(v->v, cap * sizeof *v->v);
        memset(v->v + v->cap, 0, (cap - v->cap) * sizeof *v->v);
        v->cap = cap;
    }
    v->v[i] = x;
}

static void vec_free(struct u64vec *v)
{
    ehr_free(v->v);
    v->v = NULL;
    v->cap = 0;
}

/* ---- log-matching map: (index, term) -> (content hash, previous term) ---- */

struct lm_slot {
    uint64_t index;
    uint64_t term;
    uint64_t hash;
    uint64_t prev_term;
};

struct lm_map {
    struct lm_slot *slots;
    size_t cap;
    size_t used;
};

static size_t lm_home(const struct lm_map *m, uint64_t index, uint64_t term)
{
    uint64_t h = index * 0x9e3779b97f4a7c15ULL ^ term * 0xc2b2ae3d27d4eb4fULL;
    return (size_t)(h ^ (h >> 29)) & (m->cap - 1);
}

static struct lm_slot *lm_find(struct lm_map *m, uint64_t index, uint64_t term, bool insert);

static void lm_grow(struct lm_map *m)
{
    struct lm_slot *old = m->slots;
    size_t old_cap = m->cap;
    m->cap = old_cap == 0 ? 4096 : old_cap * 2;
    m->slots = ehr_calloc(m->cap, sizeof *m->slots);
    m->used = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].index == 0)
            continue;
        *lm_find(m, old[i].index, old[i].term, true) = old[i];
    }
    ehr_free(old);
}

static struct lm_slot *lm_find(struct lm_map *m, uint64_t index, uint64_t term, bool insert)
{
    if (insert && (m->used + 1) * 2 > m->cap)
        lm_grow(m);
    if (m->cap == 0)
        return NULL;
    for (size_t i = lm_home(m, index, term);; i = (i + 1) & (m->cap - 1)) {
        struct lm_slot *s = &m->slots[i];
        if (s->index == index && s->term == term)
            return s;
        if (s->index == 0) {
            if (!insert)
                return NULL;
            s->index = index;
            s->term = term;
            m->used++;
            return s;
        }
    }
}

/* ---- the simulated disk: length-prefixed records, append-only ---- */

enum rec_kind { REC_HS = 0x0F, REC_ENTRY = 0x33, REC_SNAP_INSTALL = 0x55, REC_SNAP_TAKE = 0x66 };

struct disk {
    uint8_t *buf;
    size_t len;
    size_t cap;
};

static void put32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* One record: [len u32][crc32c(len) u32][kind u8][a][b]; len counts kind+a+b. */
static void disk_put(struct disk *d, uint8_t kind, const uint8_t *a, size_t alen, const uint8_t *b,
                     size_t blen)
{
    size_t need = 8 + 1 + alen + blen;
    if (d->len + need > d->cap) {
        size_t cap = d->cap == 0 ? 65536 : d->cap;
        while (cap < d->len + need)
            cap *= 2;
        d->buf = ehr_realloc(d->buf, cap);
        d->cap = cap;
    }
    uint8_t *p = d->buf + d->len;
    put32le(p, (uint32_t)(1 + alen + blen));
    put32le(p + 4, raft_crc32c(0, p, 4));
    p[8] = kind;
    if (alen > 0)
        memcpy(p + 9, a, alen);
    if (blen > 0)
        memcpy(p + 9 + alen, b, blen);
    d->len += need;
}

/* Snapshot record payload head: [meta_len u32][meta record][compact u64][crc(compact+data)]. */
static void disk_put_snapshot(struct disk *d, uint8_t kind, const struct raft_snapshot_meta *meta,
                              uint64_t compact, const uint8_t *data, uint64_t size)
{
    uint8_t head[4 + RAFT_SNAPSHOT_META_RECORD_BYTES + 8 + 4];
    int mlen = raft_snapshot_meta_record_encode(meta, head + 4, RAFT_SNAPSHOT_META_RECORD_BYTES);
    if (mlen < 0) {
        fprintf(stderr, "sim: snapshot meta does not encode\n");
        abort();
    }
    put32le(head, (uint32_t)mlen);
    put64le(head + 4 + mlen, compact);
    uint32_t crc = raft_crc32c(0, head + 4 + mlen, 8);
    crc = raft_crc32c(crc, data, (size_t)size);
    put32le(head + 4 + mlen + 8, crc);
    disk_put(d, kind, head, 4 + (size_t)mlen + 12, data, (size_t)size);
}

/*
 * Replay the disk into ms. A record cut short at the end is a torn last
 * write (the write never completed, so nothing depended on it): the tail is
 * cut off and *torn set. Any other damage is corruption: EHR_ECORRUPT.
 */
static int disk_load(struct disk *d, struct raft_mem_storage *ms, bool *torn)
{
    *torn = false;
    size_t pos = 0;
    while (pos < d->len) {
        size_t left = d->len - pos;
        if (left < 8) {
            *torn = true;
            break;
        }
        const uint8_t *p = d->buf + pos;
        uint32_t rlen = get32le(p);
        if (raft_crc32c(0, p, 4) != get32le(p + 4) || rlen < 1)
            return EHR_ECORRUPT;
        if (left - 8 < rlen) {
            *torn = true;
            break;
        }
        const uint8_t *q = p + 9;
        size_t qlen = rlen - 1;
        int err = 0;
        switch (p[8]) {
        case REC_HS: {
            struct raft_hard_state hs;
            err = raft_hard_state_record_decode(q, qlen, &hs);
            if (err == 0)
                raft_mem_storage_set_hard_state(ms, &hs);
            break;
        }
        case REC_ENTRY: {
            struct raft_entry e;
            err = raft_entry_record_decode(q, qlen, &e);
            if (err == 0)
                err = raft_mem_storage_append(ms, &e, 1);
            break;
        }
        case REC_SNAP_INSTALL:
        case REC_SNAP_TAKE: {
            if (qlen < 4) {
                err = EHR_ECORRUPT;
                break;
            }
            uint32_t mlen = get32le(q);
            if (mlen > RAFT_SNAPSHOT_META_RECORD_BYTES || qlen < 4 + (size_t)mlen + 12) {
                err = EHR_ECORRUPT;
                break;
            }
            struct raft_snapshot_meta meta;
            err = raft_snapshot_meta_record_decode(q + 4, mlen, &meta);
            if (err != 0)
                break;
            const uint8_t *tail = q + 4 + mlen;
            const uint8_t *data = tail + 12;
            size_t size = qlen - 4 - mlen - 12;
            uint32_t crc = raft_crc32c(raft_crc32c(0, tail, 8), data, size);
            if (crc != get32le(tail + 8)) {
                err = EHR_ECORRUPT;
                break;
            }
            if (p[8] == REC_SNAP_TAKE) {
                err = raft_mem_storage_snapshot(ms, &meta, data, size, get64le(tail));
            } else {
                err = raft_mem_storage_stage_chunk(ms, 0, data, (uint32_t)size);
                if (err == 0)
                    err = raft_mem_storage_install_staged(ms, &meta);
            }
            break;
        }
        default:
            err = EHR_ECORRUPT;
        }
        if (err != 0)
            return EHR_ECORRUPT;
        pos += 8 + rlen;
    }
    d->len = pos; /* repair: drop the torn tail */
    return 0;
}

/* ---- the simulation ---- */

enum ev_kind { EV_TICK, EV_DELIVER, EV_CONTROL, EV_RESTART, EV_CRASH, EV_ISOLATE };

struct event {
    uint64_t time;
    uint64_t seq;
    enum ev_kind kind;
    uint32_t slot;
    uint32_t gen;
    struct raft_message *msg;
};

struct sim_node {
    raft_id id; /* 0: empty slot */
    bool up;
    bool corrupt;   /* refused to start: a flipped bit on its disk */
    bool joined;    /* has been in a committed configuration */
    bool damaged;   /* a bit was flipped on its disk (found or not yet) */
    bool restoring; /* restored from a backup, not caught up yet (I14) */
    /* at its restore: the highest index known committed in a term below its
     * restore term, which it must hold once it votes again (I14) */
    uint64_t restore_floor;
    uint32_t gen; /* bumped at every crash: stale restarts are ignored */
    struct raft *r;
    struct raft_mem_storage *ms;
    struct disk disk;
    struct raft_hard_state durable_hs;
    uint64_t applied;
    uint64_t app_hash;
    enum raft_role memo_role;
    uint64_t memo_term;
    uint64_t memo_commit;
    struct raft_config memo_config; /* the latest it held while up */
};

struct sim {
    struct sim_options opt;
    struct sim_result *res;
    struct rng rng;
    /* the restores' own stream: a history without a restore draws from
     * `rng` exactly as before restores existed */
    struct rng restore_rng;
    uint64_t now;
    uint64_t seq;
    struct event *heap;
    size_t heap_len;
    size_t heap_cap;
    struct sim_node nodes[SIM_NODES_MAX];
    uint32_t n;
    raft_id next_id;
    struct raft_options base_opt;
    bool cut[SIM_NODES_MAX][SIM_NODES_MAX]; /* by slot: cut[from][to] */
    bool isolated[SIM_NODES_MAX];           /* churn style: cut off by churn() */
    bool churn; /* this chaos phase isolates leaders one after another */
    /* phase */
    bool calm;
    uint64_t phase_start;
    uint64_t phase_end;
    uint32_t drop_ppm, dup_ppm, slow_ppm, delay_max, crash_ready_ppm, fault_ppm;
    /* A fresh leader soon dies or keeps only one peer: the window in which
     * old-term entries reach a majority before the new term's (figure 8). */
    uint32_t new_leader_fault_ppm;
    /* records for the checks */
    struct u64vec committed_term; /* by index */
    /* by index: the lowest term of a node seen holding it committed; at or
     * above the term of the leader that committed it (S2) */
    struct u64vec commit_seen_term;
    struct u64vec applied_hash;   /* by index */
    struct u64vec chain_hash;     /* app state after applying index */
    struct u64vec leader_of_term; /* by term */
    struct u64vec leader_gen;     /* by term: the leader's crash generation + 1 */
    uint64_t committed_max;
    struct lm_map lm;
    struct u64vec prop_node; /* by proposal id: proposing node id */
    struct u64vec prop_hash;
    struct u64vec prop_acked; /* index it was applied at by its proposer */
    struct u64vec prop_ack_time;
    uint64_t next_prop;
    uint64_t acked_max_index;
    struct u64vec read_floor; /* by request: acked index when issued, +1 */
    uint64_t next_read;
    /* trace */
    char trace[TRACE_LINES][TRACE_LINE_BYTES];
    uint64_t trace_count;
    uint8_t *scratch;
    size_t scratch_cap;
};

static void trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void trace(struct sim *s, const char *fmt, ...)
{
    char *line = s->trace[s->trace_count % TRACE_LINES];
    int used = snprintf(line, TRACE_LINE_BYTES, "t=%llu ", (unsigned long long)s->now);
    if (used < 0)
        used = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + used, TRACE_LINE_BYTES - (size_t)used, fmt, ap);
    va_end(ap);
    s->trace_count++;
    if (s->opt.trace)
        fprintf(s->opt.trace_out, "%s\n", line);
}

static void violation(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void violation(struct sim *s, const char *fmt, ...)
{
    if (s->res->violated)
        return;
    s->res->violated = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->res->violation, sizeof s->res->violation, fmt, ap);
    va_end(ap);
    trace(s, "VIOLATION %s", s->res->violation);
}

/* ---- event heap ---- */

static bool ev_before(const struct event *a, const struct event *b)
{
    return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

static void ev_push(struct sim *s, struct event ev)
{
    if (s->heap_len == s->heap_cap) {
        s->heap_cap = s->heap_cap == 0 ? 1024 : s->heap_cap * 2;
        s->heap = ehr_realloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    ev.seq = s->seq++;
    size_t i = s->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ev_before(&ev, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = ev;
}

static struct event ev_pop(struct sim *s)
{
    struct event top = s->heap[0];
    struct event last = s->heap[--s->heap_len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct event *best = &last;
        if (l < s->heap_len && ev_before(&s->heap[l], best)) {
            m = l;
            best = &s->heap[l];
        }
        if (r < s->heap_len && ev_before(&s->heap[r], best))
            m = r;
        if (m == i)
            break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (s->heap_len > 0)
        s->heap[i] = last;
    return top;
}

/* ---- nodes ---- */

static int slot_of(const struct sim *s, raft_id id)
{
    if (id == 0)
        return -1;
    for (uint32_t i = 0; i < s->n; i++)
        if (s->nodes[i].id == id)
            return (int)i;
    return -1;
}

static struct raft_status node_status(const struct sim_node *nd)
{
    struct raft_status st;
    raft_status_get(nd->r, &st);
    return st;
}

/* An up node that believes it leads, a deposed one as likely as the
 * newest (clients reach whichever they think leads), or -1. */
static int any_leader_slot(struct sim *s)
{
    int found[SIM_NODES_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->n && n < SIM_NODES_MAX; i++)
        if (s->nodes[i].up && node_status(&s->nodes[i]).role == RAFT_LEADER)
            found[n++] = (int)i;
    if (n == 0)
        return -1;
    return n == 1 ? found[0] : found[rng_below(&s->rng, n)];
}

/* The up node leading in the highest term, or -1. */
static int leader_slot(const struct sim *s)
{
    int best = -1;
    uint64_t best_term = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        const struct sim_node *nd = &s->nodes[i];
        if (!nd->up)
            continue;
        struct raft_status st = node_status(nd);
        if (st.role == RAFT_LEADER && st.hard_state.term >= best_term) {
            best = (int)i;
            best_term = st.hard_state.term;
        }
    }
    return best;
}

static uint8_t *scratch(struct sim *s, size_t size)
{
    if (size > s->scratch_cap) {
        s->scratch_cap = size * 2;
        s->scratch = ehr_realloc(s->scratch, s->scratch_cap);
    }
    return s->scratch;
}

static void disk_put_hs(struct disk *d, const struct raft_hard_state *hs)
{
    uint8_t buf[RAFT_HARD_STATE_RECORD_BYTES];
    int n = raft_hard_state_record_encode(hs, buf, sizeof buf);
    disk_put(d, REC_HS, buf, (size_t)n, NULL, 0);
}

static void disk_put_entry(struct sim *s, struct disk *d, const struct raft_entry *e)
{
    size_t need = RAFT_ENTRY_RECORD_HEADER_BYTES + e->size + RAFT_RECORD_CRC_BYTES;
    uint8_t *buf = scratch(s, need);
    int n = raft_entry_record_encode(e, buf, need);
    if (n < 0) {
        fprintf(stderr, "sim: entry does not encode\n");
        abort();
    }
    disk_put(d, REC_ENTRY, buf, (size_t)n, NULL, 0);
}

static uint64_t app_hash_step(uint64_t app, uint64_t entry_hash)
{
    return rt_hash(app, &entry_hash, sizeof entry_hash);
}

/* The application's snapshot data: [applied u64][app hash u64][padding]. */
static bool app_from_snapshot(struct sim *s, struct sim_node *nd,
                              const struct raft_snapshot_meta *meta)
{
    uint64_t size = 0;
    const uint8_t *data = raft_mem_storage_snapshot_data(nd->ms, &size);
    if (size < 16 || get64le(data) != meta->index) {
        violation(s, "S7 snapshot data of node %llu does not match its meta (index %llu)",
                  (unsigned long long)nd->id, (unsigned long long)meta->index);
        return false;
    }
    uint64_t app = get64le(data + 8);
    uint64_t known = vec_get(&s->chain_hash, meta->index);
    if (known != 0 && known != app) {
        violation(s, "S7 node %llu installed a snapshot at %llu whose state differs",
                  (unsigned long long)nd->id, (unsigned long long)meta->index);
        return false;
    }
    nd->applied = meta->index;
    nd->app_hash = app;
    return true;
}

static void schedule_restart(struct sim *s, uint32_t slot, uint64_t delay)
{
    ev_push(s, (struct event){.time = s->now + delay,
                              .kind = EV_RESTART,
                              .slot = slot,
                              .gen = s->nodes[slot].gen});
}

/* Nodes whose disk took a flipped bit, detected yet or not, and nodes
 * restored that do not vote yet: both lost to the cluster for now. */
static uint32_t damaged_count(const struct sim *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->n; i++)
        n += s->nodes[i].id != 0 &&
             (s->nodes[i].corrupt || s->nodes[i].damaged || s->nodes[i].restoring);
    return n;
}

/*
 * Whether the cluster can afford to lose node `slot` for good (a broken
 * disk): in every configuration some node holds, the node is a learner or
 * one of at least three voters. Any held configuration may be or become the
 * one in force (the committed one, a newer one not yet committed), so one
 * node's view is not enough: a leader cut off without check-quorum leads on
 * under a configuration a newer leader has since changed (seed 6000132137:
 * it still counted three voters when the committed configuration had two,
 * so a broken disk left no quorum). False while no node leads.
 */
static bool can_lose(const struct sim *s, uint32_t slot)
{
    if (leader_slot(s) < 0)
        return false;
    raft_id id = s->nodes[slot].id;
    for (uint32_t i = 0; i < s->n; i++) {
        const struct sim_node *nd = &s->nodes[i];
        if (nd->id == 0 || nd->corrupt)
            continue;
        struct raft_config c = nd->up ? node_status(nd).config : nd->memo_config;
        if (raft_config_is_voter(&c, id) && c.voter_count - (c.voter_count / 2 + 1) < 1)
            return false;
    }
    return true;
}

/* A backup of a node: its latest snapshot, and the highest term it knew. */
struct backup {
    struct raft_snapshot_meta meta;
    uint8_t data[BACKUP_DATA_BYTES_MAX];
    uint64_t size;
    uint64_t term;
};

static bool backup_take(struct sim_node *nd, struct backup *b)
{
    struct raft_storage st;
    raft_mem_storage_interface(nd->ms, &st);
    uint64_t size = 0;
    if (st.snapshot_meta(st.ctx, &b->meta, &size) != 0 || b->meta.index == 0)
        return false;
    const uint8_t *data = raft_mem_storage_snapshot_data(nd->ms, &size);
    if (size > sizeof b->data)
        abort();
    memcpy(b->data, data, (size_t)size);
    b->size = size;
    uint64_t term = node_status(nd).hard_state.term; /* at least the durable one */
    b->term = term > nd->durable_hs.term ? term : nd->durable_hs.term;
    return true;
}

/*
 * Restore a crashed node from backup B as an operator would (I14): the
 * disk holds the snapshot alone, and a hard state one term above every
 * term the node knew, with no vote and that term as restore_term. Whatever
 * it acknowledged after the snapshot is gone.
 */
static void restore(struct sim *s, struct sim_node *nd, const struct backup *b)
{
    uint64_t term = (b->term > b->meta.term ? b->term : b->meta.term) + 1;
    struct raft_hard_state hs = {.term = term, .commit = b->meta.index, .restore_term = term};
    struct disk fresh = {0};
    disk_put_snapshot(&fresh, REC_SNAP_INSTALL, &b->meta, b->meta.index, b->data, b->size);
    disk_put_hs(&fresh, &hs);
    ehr_free(nd->disk.buf);
    nd->disk = fresh;
    nd->durable_hs = hs;
    nd->restoring = true;
    /* Terms only grow along a log: the last index known committed in a
     * term below the restore term (entries inside installed snapshots are
     * not recorded; one below a recorded one is of no later term). Entries
     * committed in later terms never counted this node (it took part in no
     * such term), so it needs them no more than any follower that lags. */
    nd->restore_floor = 0;
    for (uint64_t i = s->committed_max; i > 0; i--) {
        uint64_t t = vec_get(&s->committed_term, i);
        if (t != 0 && t < term) {
            nd->restore_floor = i;
            break;
        }
    }
    s->res->restores++;
    trace(s, "crash n%llu, restored from its snapshot at %llu (term %llu), restore term %llu",
          (unsigned long long)nd->id, (unsigned long long)b->meta.index,
          (unsigned long long)b->meta.term, (unsigned long long)term);
}

static void crash(struct sim *s, uint32_t slot, size_t torn_from)
{
    struct sim_node *nd = &s->nodes[slot];
    nd->memo_config = node_status(nd).config;
    struct backup b;
    bool have_backup = !s->opt.no_restores && backup_take(nd, &b);
    raft_destroy(nd->r);
    nd->r = NULL;
    raft_mem_storage_destroy(nd->ms);
    nd->ms = NULL;
    nd->up = false;
    nd->gen++;
    s->res->crashes++;
    if (torn_from < nd->disk.len) {
        size_t cut = torn_from + (size_t)rng_below(&s->rng, nd->disk.len - torn_from);
        trace(s, "crash n%llu torn write: disk %zu -> %zu bytes", (unsigned long long)nd->id,
              nd->disk.len, cut);
        nd->disk.len = cut;
        s->res->torn_writes++;
    } else if (!s->calm && nd->disk.len > 0 && rng_ppm(&s->rng, 150000) && damaged_count(s) == 0 &&
               can_lose(s, slot)) {
        /* One broken disk at a time, and only where the cluster can afford
         * to lose the node: it will refuse to start until replaced. */
        uint64_t bit = rng_below(&s->rng, (uint64_t)nd->disk.len * 8);
        nd->damaged = true;
        nd->disk.buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        trace(s, "crash n%llu with a flipped bit at byte %llu", (unsigned long long)nd->id,
              (unsigned long long)(bit / 8));
    } else if (have_backup && !s->calm && rng_ppm(&s->restore_rng, RESTORE_PPM) &&
               damaged_count(s) == 0 && can_lose(s, slot)) {
        /* One lost node at a time, as for a broken disk: the restored one
         * does not vote until it catches up. */
        restore(s, nd, &b);
    } else {
        trace(s, "crash n%llu", (unsigned long long)nd->id);
    }
    schedule_restart(s, slot, s->calm ? 1 + rng_below(&s->rng, 20) : 50 + rng_below(&s->rng, 800));
}

static void restart(struct sim *s, uint32_t slot)
{
    struct sim_node *nd = &s->nodes[slot];
    nd->ms = raft_mem_storage_create(rng_below(&s->rng, 2) == 0);
    bool torn = false;
    int err = disk_load(&nd->disk, nd->ms, &torn);
    struct raft_storage st;
    raft_mem_storage_interface(nd->ms, &st);
    struct raft_hard_state hs = {0};
    st.hard_state(st.ctx, &hs);
    struct raft_snapshot_meta meta = {0};
    uint64_t size = 0;
    st.snapshot_meta(st.ctx, &meta, &size);
    nd->applied = 0;
    nd->app_hash = RT_HASH_INIT;
    if (err == 0 && meta.index > 0 && !app_from_snapshot(s, nd, &meta))
        err = EHR_ECORRUPT;
    struct raft_options opt = s->base_opt;
    opt.id = nd->id;
    opt.seed = rng_next(&s->rng);
    opt.applied = nd->applied;
    if (err == 0)
        err = raft_create(&nd->r, &opt, &st);
    if (err == EHR_ECORRUPT) {
        nd->corrupt = true;
        s->res->corruptions_detected++;
        raft_mem_storage_destroy(nd->ms);
        nd->ms = NULL;
        trace(s, "restart n%llu refused: storage corrupt", (unsigned long long)nd->id);
        return;
    }
    if (err != 0) {
        violation(s, "restart of node %llu failed: %s", (unsigned long long)nd->id,
                  ehr_errname(err));
        return;
    }
    nd->durable_hs = hs;
    nd->up = true;
    struct raft_status rs = node_status(nd);
    if (rs.hard_state.term < nd->memo_term)
        violation(s, "S2 node %llu restarted at term %llu after term %llu (term lost)",
                  (unsigned long long)nd->id, (unsigned long long)rs.hard_state.term,
                  (unsigned long long)nd->memo_term);
    nd->memo_role = rs.role;
    nd->memo_term = rs.hard_state.term;
    nd->memo_commit = rs.hard_state.commit;
    nd->memo_config = rs.config;
    trace(s, "restart n%llu%s term=%llu commit=%llu last=%llu applied=%llu",
          (unsigned long long)nd->id, torn ? " (torn tail repaired)" : "",
          (unsigned long long)rs.hard_state.term, (unsigned long long)rs.hard_state.commit,
          (unsigned long long)rs.last_index, (unsigned long long)nd->applied);
}

/* A new node in an empty slot: empty disk, or the bootstrap entry. */
static void node_init(struct sim *s, uint32_t slot, raft_id id, const struct raft_config *boot)
{
    struct sim_node *nd = &s->nodes[slot];
    ehr_free(nd->disk.buf);
    memset(nd, 0, sizeof *nd);
    nd->id = id;
    if (boot != NULL) {
        uint8_t buf[RAFT_CONFIG_ENCODED_BYTES_MAX];
        struct raft_entry e;
        if (raft_bootstrap_entry(boot, buf, &e) != 0)
            abort();
        disk_put_entry(s, &nd->disk, &e);
        nd->joined = true;
    }
    restart(s, slot);
}

static void node_destroy(struct sim *s, uint32_t slot)
{
    struct sim_node *nd = &s->nodes[slot];
    trace(s, "node n%llu leaves the cluster (slot %u freed)", (unsigned long long)nd->id, slot);
    raft_destroy(nd->r);
    raft_mem_storage_destroy(nd->ms);
    ehr_free(nd->disk.buf);
    memset(nd, 0, sizeof *nd);
}

/* ---- network ---- */

static void trace_msg(struct sim *s, const char *what, const struct raft_message *m)
{
    trace(s,
          "%s %s n%llu->n%llu term=%llu idx=%llu lt=%llu c=%llu n=%u rej=%d hint=%llu/%llu "
          "ctx=%llu off=%llu",
          what, raft_message_type_name(m->type), (unsigned long long)m->from,
          (unsigned long long)m->to, (unsigned long long)m->term, (unsigned long long)m->index,
          (unsigned long long)m->log_term, (unsigned long long)m->commit, m->entry_count, m->reject,
          (unsigned long long)m->hint_index, (unsigned long long)m->hint_term,
          (unsigned long long)m->context, (unsigned long long)m->offset);
}

/* S4: what a message claims must already be durable at its sender. */
static void check_persisted(struct sim *s, struct sim_node *nd, const struct raft_message *m)
{
    if (s->opt.consequences_only)
        return;
    const struct raft_hard_state *hs = &nd->durable_hs;
    if (m->type != RAFT_MSG_PREVOTE && m->type != RAFT_MSG_PREVOTE_RESP && m->term > hs->term) {
        /* a term that a crash can forget, so the sender could lead it twice */
        violation(s, "S4 node %llu sent a %s of term %llu before persisting the term",
                  (unsigned long long)nd->id, raft_message_type_name(m->type),
                  (unsigned long long)m->term);
    } else if (m->type == RAFT_MSG_VOTE_RESP && !m->reject) {
        if (hs->term != m->term || hs->vote != m->to)
            violation(s, "S4 node %llu granted a vote in term %llu before persisting it",
                      (unsigned long long)nd->id, (unsigned long long)m->term);
    } else if (m->type == RAFT_MSG_VOTE) {
        if (hs->term != m->term || hs->vote != nd->id)
            violation(s, "S4 node %llu asked for votes in term %llu before persisting it",
                      (unsigned long long)nd->id, (unsigned long long)m->term);
    } else if (m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index > 0) {
        struct raft_storage st;
        raft_mem_storage_interface(nd->ms, &st);
        uint64_t durable = 0, core = 0;
        if (st.last_index(st.ctx) < m->index || st.term(st.ctx, m->index, &durable) != 0 ||
            raft_term_at(nd->r, m->index, &core) != 0 || durable != core)
            violation(s, "S4 node %llu acknowledged index %llu before persisting it",
                      (unsigned long long)nd->id, (unsigned long long)m->index);
    }
}

static void net_send(struct sim *s, uint32_t from_slot, const struct raft_message *m)
{
    check_persisted(s, &s->nodes[from_slot], m);
    if (rng_ppm(&s->rng, s->drop_ppm)) {
        trace_msg(s, "drop", m);
        return;
    }
    int copies = rng_ppm(&s->rng, s->dup_ppm) ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        uint64_t delay = 1 + rng_below(&s->rng, s->delay_max);
        if (rng_ppm(&s->rng, s->slow_ppm))
            delay += rng_below(&s->rng, 300);
        ev_push(s,
                (struct event){.time = s->now + delay, .kind = EV_DELIVER, .msg = rt_msg_clone(m)});
    }
}

/* ---- applying ---- */

static void apply_entry(struct sim *s, struct sim_node *nd, const struct raft_entry *e)
{
    if (e->index != nd->applied + 1) {
        violation(s, "S6 node %llu applied index %llu after %llu", (unsigned long long)nd->id,
                  (unsigned long long)e->index, (unsigned long long)nd->applied);
        return;
    }
    uint64_t h = rt_entry_hash(e);
    uint64_t known = vec_get(&s->applied_hash, e->index);
    if (known == 0)
        vec_set(&s->applied_hash, e->index, h);
    else if (known != h)
        violation(s, "S5 node %llu applied a different entry at index %llu (term %llu)",
                  (unsigned long long)nd->id, (unsigned long long)e->index,
                  (unsigned long long)e->term);
    nd->app_hash = app_hash_step(nd->app_hash, h);
    known = vec_get(&s->chain_hash, e->index);
    if (known == 0)
        vec_set(&s->chain_hash, e->index, nd->app_hash);
    else if (known != nd->app_hash)
        violation(s, "S5 node %llu state after index %llu differs from the others'",
                  (unsigned long long)nd->id, (unsigned long long)e->index);
    nd->applied = e->index;
    if (e->type != RAFT_ENTRY_NORMAL || e->size < 8)
        return;
    uint64_t pid = get64le(e->data);
    if (pid == 0 || pid >= s->next_prop) {
        violation(s, "S9 node %llu applied an entry no client proposed (index %llu)",
                  (unsigned long long)nd->id, (unsigned long long)e->index);
        return;
    }
    if (vec_get(&s->prop_hash, pid) != rt_hash(RT_HASH_INIT, e->data, e->size)) {
        violation(s, "S9 node %llu applied proposal %llu with altered content",
                  (unsigned long long)nd->id, (unsigned long long)pid);
        return;
    }
    if (vec_get(&s->prop_node, pid) == nd->id && vec_get(&s->prop_acked, pid) == 0) {
        vec_set(&s->prop_acked, pid, e->index);
        vec_set(&s->prop_ack_time, pid, s->now);
        s->res->acked++;
        if (e->index > s->acked_max_index)
            s->acked_max_index = e->index;
    }
}

/* ---- the ready protocol, with crash points ---- */

static void record_persisted(struct sim *s, struct sim_node *nd, const struct raft_entry *e)
{
    /* S3 (log matching): an (index, term) pair names one entry and one predecessor. */
    uint64_t prev_term = 0;
    if (raft_term_at(nd->r, e->index - 1, &prev_term) != 0)
        return; /* predecessor compacted: nothing to compare */
    uint64_t h = rt_entry_hash(e);
    struct lm_slot *slot = lm_find(&s->lm, e->index, e->term, true);
    if (slot->hash == 0) {
        slot->hash = h;
        slot->prev_term = prev_term;
    } else if (slot->hash != h || slot->prev_term != prev_term) {
        violation(s,
                  "S3 node %llu holds a different entry (or predecessor) at index %llu "
                  "term %llu",
                  (unsigned long long)nd->id, (unsigned long long)e->index,
                  (unsigned long long)e->term);
    }
}

/* One ready cycle. Returns false if the node crashed or the cycle failed. */
static bool ready_cycle(struct sim *s, uint32_t slot)
{
    struct sim_node *nd = &s->nodes[slot];
    struct raft_ready rd;
    int err = raft_ready_get(nd->r, &rd);
    if (err != 0) {
        violation(s, "node %llu: raft_ready_get: %s", (unsigned long long)nd->id, ehr_errname(err));
        return false;
    }
    uint32_t crash_at =
        rng_ppm(&s->rng, s->crash_ready_ppm) ? 1 + (uint32_t)rng_below(&s->rng, 3) : 0;
    /* 1. messages that may leave before persisting */
    for (size_t i = 0; i < rd.message_count; i++) {
        trace_msg(s, "send", &rd.messages[i]);
        net_send(s, slot, &rd.messages[i]);
    }
    if (crash_at == 1) {
        crash(s, slot, SIZE_MAX);
        return false;
    }
    /* 2. persist: disk records first, then the storage the core reads */
    size_t batch_start = nd->disk.len;
    err = raft_mem_storage_persist(nd->ms, &rd);
    if (err != 0) {
        violation(s, "node %llu: persist: %s", (unsigned long long)nd->id, ehr_errname(err));
        return false;
    }
    if (rd.snapshot != NULL && rd.snapshot->install) {
        uint64_t size = 0;
        const uint8_t *data = raft_mem_storage_snapshot_data(nd->ms, &size);
        disk_put_snapshot(&nd->disk, REC_SNAP_INSTALL, &rd.snapshot->meta, rd.snapshot->meta.index,
                          data, size);
    }
    /* Entries before the hard state: a torn write may then lose a commit
     * index or vote (nothing depended on it yet), never an entry the
     * persisted commit index points at. */
    for (size_t i = 0; i < rd.entry_count; i++)
        disk_put_entry(s, &nd->disk, &rd.entries[i]);
    if (rd.hard_state_changed)
        disk_put_hs(&nd->disk, &rd.hard_state);
    if (crash_at == 2 && nd->disk.len > batch_start) {
        crash(s, slot, batch_start);
        return false;
    }
    if (rd.hard_state_changed)
        nd->durable_hs = rd.hard_state;
    for (size_t i = 0; i < rd.entry_count; i++)
        record_persisted(s, nd, &rd.entries[i]);
    /* 3. messages that needed the persisted state */
    for (size_t i = 0; i < rd.message_after_persist_count; i++) {
        trace_msg(s, "send", &rd.messages_after_persist[i]);
        net_send(s, slot, &rd.messages_after_persist[i]);
    }
    if (crash_at == 3) {
        crash(s, slot, SIZE_MAX);
        return false;
    }
    /* 4. apply */
    if (rd.snapshot != NULL && rd.snapshot->install) {
        trace(s, "n%llu installs snapshot index=%llu term=%llu", (unsigned long long)nd->id,
              (unsigned long long)rd.snapshot->meta.index,
              (unsigned long long)rd.snapshot->meta.term);
        s->res->snapshots_installed++;
        if (!app_from_snapshot(s, nd, &rd.snapshot->meta))
            return false;
    }
    for (size_t i = 0; i < rd.committed_count; i++)
        apply_entry(s, nd, &rd.committed[i]);
    for (size_t i = 0; i < rd.read_count; i++) {
        const struct raft_read_result *rr = &rd.reads[i];
        uint64_t floor = vec_get(&s->read_floor, rr->request);
        if (rr->err == 0 && floor > 0 && rr->index + 1 < floor)
            violation(s, "S8 read %llu on node %llu at index %llu misses acknowledged index %llu",
                      (unsigned long long)rr->request, (unsigned long long)nd->id,
                      (unsigned long long)rr->index, (unsigned long long)(floor - 1));
        if (rr->err == 0)
            s->res->reads++;
    }
    err = raft_ready_advance(nd->r);
    if (err != 0) {
        violation(s, "node %llu: raft_ready_advance: %s", (unsigned long long)nd->id,
                  ehr_errname(err));
        return false;
    }
    return true;
}

static void process(struct sim *s, uint32_t slot)
{
    struct sim_node *nd = &s->nodes[slot];
    for (int i = 0; nd->up && raft_ready_pending(nd->r); i++) {
        if (i == READY_LOOPS_MAX) {
            violation(s, "node %llu: ready batches never run dry", (unsigned long long)nd->id);
            return;
        }
        if (!ready_cycle(s, slot) || s->res->violated)
            return;
    }
}

/* ---- checks after every step ---- */

/*
 * S2 (leader completeness, Raft thesis 3.6.3): an entry committed in term U
 * is in the log of every leader of a term above U. Only higher terms: a
 * candidate of a lower term may still complete its election after a higher
 * term committed more (its voters voted before they saw that term, or were
 * not in that commit's quorum); such a leader can commit nothing, since the
 * quorum that committed holds the higher term and refuses its appends.
 * U is taken as the lowest term at which a node was seen holding the entry
 * committed: the committing leader is seen first, and any other node learned
 * the commit from a leader of its own term, never below U. Checked when a
 * leader is elected, and when an entry is first seen committed (or seen
 * committed in a lower term) for every leader already elected above it.
 */
static bool leader_holds(struct sim *s, struct sim_node *nd, const struct raft_status *st,
                         uint64_t i)
{
    uint64_t want = vec_get(&s->committed_term, i);
    uint64_t in_term = vec_get(&s->commit_seen_term, i);
    if (want == 0 || in_term >= st->hard_state.term || i < st->first_index)
        return true;
    uint64_t have = 0;
    if (i <= st->last_index && raft_term_at(nd->r, i, &have) == 0 && have == want)
        return true;
    violation(s, "S2 leader %llu of term %llu lacks entry %llu (term %llu) committed in term %llu",
              (unsigned long long)nd->id, (unsigned long long)st->hard_state.term,
              (unsigned long long)i, (unsigned long long)want, (unsigned long long)in_term);
    return false;
}

static void check_leader_completeness(struct sim *s, struct sim_node *nd,
                                      const struct raft_status *st)
{
    for (uint64_t i = st->first_index; i <= s->committed_max; i++)
        if (!leader_holds(s, nd, st, i))
            return;
}

/* Index i was just seen committed in term `term`, lower than before. */
static void commit_seen(struct sim *s, uint64_t i, uint64_t term)
{
    vec_set(&s->commit_seen_term, i, term);
    for (uint32_t k = 0; k < s->n && !s->res->violated; k++) {
        struct sim_node *nd = &s->nodes[k];
        if (nd->id == 0 || !nd->up)
            continue;
        struct raft_status st = node_status(nd);
        if (st.role == RAFT_LEADER)
            leader_holds(s, nd, &st, i);
    }
}

/*
 * S11 (I14): a restored node neither campaigns nor votes until it catches
 * up; then it holds every entry known committed when it was restored.
 */
static void check_restoring(struct sim *s, struct sim_node *nd, const struct raft_status *st)
{
    if (st->hard_state.restore_term != 0) {
        if (!s->opt.consequences_only && (st->role != RAFT_FOLLOWER || st->hard_state.vote != 0))
            violation(s, "S11 restored node %llu is %s with vote %llu before catching up",
                      (unsigned long long)nd->id, raft_role_name(st->role),
                      (unsigned long long)st->hard_state.vote);
        return;
    }
    if (!nd->restoring)
        return;
    nd->restoring = false;
    s->res->restores_completed++;
    trace(s, "n%llu caught up after its restore: commit %llu", (unsigned long long)nd->id,
          (unsigned long long)st->hard_state.commit);
    if (st->hard_state.commit < nd->restore_floor)
        violation(s,
                  "S11 restored node %llu votes again at commit %llu, below %llu known "
                  "committed in an earlier term when it was restored",
                  (unsigned long long)nd->id, (unsigned long long)st->hard_state.commit,
                  (unsigned long long)nd->restore_floor);
}

static void check_node(struct sim *s, struct sim_node *nd)
{
    struct raft_status st = node_status(nd);
    if (st.halted != 0) {
        violation(s, "node %llu halted: %s", (unsigned long long)nd->id, ehr_errname(st.halted));
        return;
    }
    check_restoring(s, nd, &st);
    uint64_t term = st.hard_state.term;
    if (term < nd->memo_term)
        violation(s, "I1 node %llu went from term %llu back to %llu", (unsigned long long)nd->id,
                  (unsigned long long)nd->memo_term, (unsigned long long)term);
    /* I1 also holds against the log: a node's term is never below the term
     * of an entry (or snapshot) it holds, across restarts too (founding
     * members hold the bootstrap entry, index 1 term 1, at term 0). */
    uint64_t last_term = 0;
    if (st.last_index > 1 && raft_term_at(nd->r, st.last_index, &last_term) == 0 &&
        last_term > term)
        violation(s, "I1 node %llu at term %llu holds entry %llu of term %llu",
                  (unsigned long long)nd->id, (unsigned long long)term,
                  (unsigned long long)st.last_index, (unsigned long long)last_term);
    if (st.hard_state.commit < nd->memo_commit)
        violation(s, "I7 node %llu commit went back from %llu to %llu", (unsigned long long)nd->id,
                  (unsigned long long)nd->memo_commit, (unsigned long long)st.hard_state.commit);
    /* commit: one entry per index, cluster-wide */
    for (uint64_t i = nd->memo_commit + 1; i <= st.hard_state.commit; i++) {
        uint64_t t = 0;
        if (raft_term_at(nd->r, i, &t) != 0)
            continue; /* inside an installed snapshot */
        uint64_t known = vec_get(&s->committed_term, i);
        if (known == 0)
            vec_set(&s->committed_term, i, t);
        else if (known != t)
            violation(s, "S5 node %llu committed term %llu at index %llu, others term %llu",
                      (unsigned long long)nd->id, (unsigned long long)t, (unsigned long long)i,
                      (unsigned long long)known);
        uint64_t seen = vec_get(&s->commit_seen_term, i);
        if (seen == 0 || term < seen)
            commit_seen(s, i, term);
    }
    /* S10 (the commit rule): a leader moves its commit index only onto an
     * entry of its own term; older entries commit under it. */
    if (!s->opt.consequences_only && st.role == RAFT_LEADER && nd->memo_role == RAFT_LEADER &&
        nd->memo_term == term && st.hard_state.commit > nd->memo_commit) {
        uint64_t t = 0;
        if (raft_term_at(nd->r, st.hard_state.commit, &t) != 0 || t != term)
            violation(s, "S10 leader %llu of term %llu committed index %llu of term %llu by count",
                      (unsigned long long)nd->id, (unsigned long long)term,
                      (unsigned long long)st.hard_state.commit, (unsigned long long)t);
    }
    if (st.hard_state.commit > s->committed_max) {
        s->committed_max = st.hard_state.commit;
        s->res->committed = s->committed_max;
    }
    if (st.role == RAFT_LEADER) {
        uint64_t who = vec_get(&s->leader_of_term, term);
        if (who == 0) {
            vec_set(&s->leader_of_term, term, nd->id);
            vec_set(&s->leader_gen, term, (uint64_t)nd->gen + 1);
            s->res->leaders++;
            trace(s, "n%llu leads term %llu", (unsigned long long)nd->id, (unsigned long long)term);
        } else if (who != nd->id) {
            violation(s, "S1 two leaders in term %llu: nodes %llu and %llu",
                      (unsigned long long)term, (unsigned long long)who,
                      (unsigned long long)nd->id);
        } else if (vec_get(&s->leader_gen, term) != (uint64_t)nd->gen + 1) {
            /* it voted for itself in that term: leading it again after a
             * crash means it forgot that vote, and may fork its own log */
            violation(s, "S1 node %llu led term %llu twice, before and after a crash",
                      (unsigned long long)nd->id, (unsigned long long)term);
        }
        if (nd->memo_role != RAFT_LEADER || nd->memo_term != term) {
            check_leader_completeness(s, nd, &st);
            if (rng_ppm(&s->rng, s->new_leader_fault_ppm))
                ev_push(s,
                        (struct event){.time = s->now + 1 + rng_below(&s->rng, 40),
                                       .kind = rng_below(&s->rng, 10) < 3 ? EV_CRASH : EV_ISOLATE,
                                       .slot = (uint32_t)(nd - s->nodes),
                                       .gen = nd->gen});
        }
    }
    nd->memo_role = st.role;
    nd->memo_term = term;
    nd->memo_commit = st.hard_state.commit;
    nd->memo_config = st.config;
}

static void check_all(struct sim *s)
{
    for (uint32_t i = 0; i < s->n && !s->res->violated; i++)
        if (s->nodes[i].up)
            check_node(s, &s->nodes[i]);
#ifdef RAFT_TEST_BUGS
    const char *what = NULL;
    if (raft_test_soft_assert_count(&what) > 0)
        violation(s, "core assertion failed: %s", what);
#endif
}

/* L1: after a calm period every acknowledged proposal is applied everywhere. */
static void check_calm(struct sim *s)
{
    int l = leader_slot(s);
    if (l < 0) {
        violation(s, "L1 no leader after a calm period of %d units", CALM_UNITS);
        return;
    }
    uint64_t cutoff = s->now - DRAIN_UNITS;
    uint64_t need = 0;
    for (uint64_t pid = 1; pid < s->next_prop; pid++) {
        uint64_t idx = vec_get(&s->prop_acked, pid);
        if (idx != 0 && vec_get(&s->prop_ack_time, pid) <= cutoff && idx > need)
            need = idx;
    }
    struct raft_status ls = node_status(&s->nodes[l]);
    for (uint32_t i = 0; i < s->n; i++) {
        const struct sim_node *nd = &s->nodes[i];
        if (nd->id == 0 || nd->corrupt || !nd->up)
            continue;
        if (!raft_config_is_voter(&ls.config, nd->id) &&
            !raft_config_is_learner(&ls.config, nd->id))
            continue;
        if (nd->applied < need) {
            violation(s,
                      "L1 node %llu applied only %llu after a calm period; %llu was acknowledged",
                      (unsigned long long)nd->id, (unsigned long long)nd->applied,
                      (unsigned long long)need);
            return;
        }
    }
    s->res->calm_checks++;
}

/* ---- control: phases, clients, faults, membership ---- */

static void cut_clear(struct sim *s)
{
    memset(s->cut, 0, sizeof s->cut);
    memset(s->isolated, 0, sizeof s->isolated);
}

static void start_chaos(struct sim *s)
{
    static const uint32_t drops[] = {0, 10000, 50000, 150000};
    s->calm = false;
    s->phase_start = s->now;
    s->phase_end = s->now + CHAOS_UNITS_MIN + rng_below(&s->rng, CHAOS_UNITS_SPAN);
    s->drop_ppm = drops[rng_below(&s->rng, 4)];
    s->dup_ppm = (uint32_t)rng_below(&s->rng, 30000);
    s->slow_ppm = (uint32_t)rng_below(&s->rng, 50000);
    s->delay_max = 2 + (uint32_t)rng_below(&s->rng, 20);
    s->crash_ready_ppm = (uint32_t)rng_below(&s->rng, 4000);
    s->fault_ppm = 10000 + (uint32_t)rng_below(&s->rng, 40000);
    s->new_leader_fault_ppm =
        rng_below(&s->rng, 2) == 0 ? 0 : 300000 + (uint32_t)rng_below(&s->rng, 600000);
    s->churn = rng_below(&s->rng, 3) == 0;
    if (s->churn) {
        s->fault_ppm = 100000 + (uint32_t)rng_below(&s->rng, 300000);
        s->new_leader_fault_ppm = 0;
    }
    cut_clear(s);
    trace(s, "phase chaos%s until t=%llu drop=%u dup=%u slow=%u delay<=%u",
          s->churn ? " (leader churn)" : "", (unsigned long long)s->phase_end, s->drop_ppm,
          s->dup_ppm, s->slow_ppm, s->delay_max);
}

static void start_calm(struct sim *s)
{
    s->calm = true;
    s->phase_start = s->now;
    s->phase_end = s->now + CALM_UNITS;
    s->drop_ppm = 0;
    s->dup_ppm = 0;
    s->slow_ppm = 0;
    s->delay_max = 5;
    s->crash_ready_ppm = 0;
    s->fault_ppm = 0;
    s->new_leader_fault_ppm = 0;
    s->churn = false;
    cut_clear(s);
    for (uint32_t i = 0; i < s->n; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (nd->id != 0 && !nd->up && !nd->corrupt)
            schedule_restart(s, i, 1 + rng_below(&s->rng, 20));
    }
    trace(s, "phase calm until t=%llu (network healed)", (unsigned long long)s->phase_end);
}

static uint32_t proposal_payload(struct sim *s, uint64_t pid, uint8_t *buf, uint32_t size)
{
    struct rng r = {.s = pid * 7919};
    put64le(buf, pid);
    for (uint32_t i = 8; i < size; i++)
        buf[i] = (uint8_t)rng_next(&r);
    vec_set(&s->prop_hash, pid, rt_hash(RT_HASH_INIT, buf, size));
    return size;
}

static void client_propose(struct sim *s)
{
    int l = leader_slot(s);
    if (l < 0)
        return;
    struct sim_node *nd = &s->nodes[l];
    uint32_t count = 1 + (uint32_t)rng_below(&s->rng, 8);
    for (uint32_t k = 0; k < count; k++) {
        uint32_t size = 8 + (uint32_t)rng_below(&s->rng, 56);
        uint32_t pick = (uint32_t)rng_below(&s->rng, 1000);
        if (pick < 20)
            size = 8 + (uint32_t)rng_below(&s->rng, PAYLOAD_BYTES_MAX - 8);
        else if (pick < 25)
            size = PAYLOAD_BYTES_MAX + 1; /* over the limit: must be refused */
        uint8_t *buf = scratch(s, size);
        uint64_t pid = s->next_prop;
        proposal_payload(s, pid, buf, size);
        int err = raft_propose(nd->r, buf, size);
        if (size > PAYLOAD_BYTES_MAX) {
            if (err != EHR_ETOOBIG)
                violation(s, "limit: a %u-byte proposal was not refused (%s)", size,
                          ehr_errname(err));
            continue;
        }
        if (err == 0) {
            vec_set(&s->prop_node, pid, nd->id);
            s->next_prop++;
        } else if (err != EHR_EAGAIN && err != EHR_ENOTLEADER) {
            violation(s, "propose on leader %llu: %s", (unsigned long long)nd->id,
                      ehr_errname(err));
        }
    }
    process(s, (uint32_t)l);
}

static void take_snapshot(struct sim *s, uint32_t slot)
{
    struct sim_node *nd = &s->nodes[slot];
    struct raft_status st = node_status(nd);
    if (nd->applied < st.snapshot_index + 20)
        return;
    struct raft_snapshot_meta meta;
    if (raft_snapshot_meta_applied(nd->r, &meta) != 0) {
        violation(s, "node %llu cannot describe its applied state", (unsigned long long)nd->id);
        return;
    }
    uint32_t pad = (uint32_t)rng_below(&s->rng, 600);
    uint8_t *data = scratch(s, 16 + pad);
    put64le(data, nd->applied);
    put64le(data + 8, nd->app_hash);
    for (uint32_t i = 0; i < pad; i++)
        data[16 + i] = (uint8_t)rng_next(&s->rng);
    uint64_t keep = rng_below(&s->rng, 8);
    uint64_t compact = meta.index > st.first_index - 1 + keep ? meta.index - keep : meta.index;
    int err = raft_mem_storage_snapshot(nd->ms, &meta, data, 16 + pad, compact);
    if (err != 0) {
        violation(s, "node %llu: snapshot at %llu: %s", (unsigned long long)nd->id,
                  (unsigned long long)meta.index, ehr_errname(err));
        return;
    }
    disk_put_snapshot(&nd->disk, REC_SNAP_TAKE, &meta, compact, data, 16 + pad);
    trace(s, "n%llu snapshot index=%llu compact=%llu", (unsigned long long)nd->id,
          (unsigned long long)meta.index, (unsigned long long)compact);
    if (nd->disk.len < DISK_REWRITE_BYTES)
        return;
    /* Rewrite the disk from what it holds now (an atomic rename, in real life). */
    struct disk fresh = {0};
    disk_put_snapshot(&fresh, REC_SNAP_INSTALL, &meta, meta.index, data, 16 + pad);
    disk_put_hs(&fresh, &nd->durable_hs);
    struct raft_storage rs;
    raft_mem_storage_interface(nd->ms, &rs);
    uint64_t last = rs.last_index(rs.ctx);
    for (uint64_t i = meta.index + 1; i <= last; i++) {
        struct raft_entry e;
        size_t got = 0;
        if (rs.entries(rs.ctx, i, i + 1, UINT64_MAX, &e, 1, &got) != 0 || got != 1)
            abort();
        disk_put_entry(s, &fresh, &e);
    }
    ehr_free(nd->disk.buf);
    nd->disk = fresh;
}

static void membership(struct sim *s)
{
    int l = leader_slot(s);
    if (l < 0)
        return;
    struct sim_node *ln = &s->nodes[l];
    struct raft_status st = node_status(ln);
    if (st.config_index > st.hard_state.commit)
        return; /* a change is under way */
    const struct raft_config *c = &st.config;
    /* Nodes gone from a committed configuration leave; members are "joined". */
    for (uint32_t i = 0; i < s->n; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (nd->id == 0)
            continue;
        bool member = raft_config_is_voter(c, nd->id) || raft_config_is_learner(c, nd->id);
        if (member)
            nd->joined = true;
        else if ((nd->joined || nd->corrupt) && (int)i != l)
            node_destroy(s, i); /* removed, or broken before it ever joined */
    }
    int err = 0;
    const char *what = NULL;
    raft_id who = 0;
    /* Replace nodes that refused to start (corrupt storage): remove first. */
    for (uint32_t i = 0; i < s->n && what == NULL; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (nd->id != 0 && nd->corrupt &&
            (raft_config_is_voter(c, nd->id) || raft_config_is_learner(c, nd->id))) {
            what = "remove corrupt";
            who = nd->id;
            err = raft_propose_config(ln->r, RAFT_CONFIG_REMOVE, who);
        }
    }
    /* Fresh nodes waiting to be added. */
    for (uint32_t i = 0; i < s->n && what == NULL; i++) {
        struct sim_node *nd = &s->nodes[i];
        if (nd->id != 0 && !nd->joined && !nd->corrupt && rng_below(&s->rng, 4) == 0) {
            what = "add learner";
            who = nd->id;
            err = raft_propose_config(ln->r, RAFT_CONFIG_ADD_LEARNER, who);
        }
    }
    if (what == NULL && c->learner_count > 0 && rng_below(&s->rng, 3) == 0) {
        what = "promote";
        who = c->learners[rng_below(&s->rng, c->learner_count)];
        err = raft_propose_config(ln->r, RAFT_CONFIG_PROMOTE, who);
    }
    if (what == NULL && !s->calm) {
        uint64_t pick = rng_below(&s->rng, 6);
        if (pick == 0) {
            for (uint32_t i = 0; i < s->n; i++) {
                if (s->nodes[i].id == 0) {
                    node_init(s, i, s->next_id++, NULL);
                    trace(s, "new node n%llu in slot %u", (unsigned long long)s->nodes[i].id, i);
                    break;
                }
            }
        } else if (pick == 1 && c->voter_count >= 3 && damaged_count(s) == 0) {
            what = "remove voter";
            who = c->voters[rng_below(&s->rng, c->voter_count)];
            err = raft_propose_config(ln->r, RAFT_CONFIG_REMOVE, who);
        } else if (pick == 2 && c->learner_count > 0) {
            what = "remove learner";
            who = c->learners[rng_below(&s->rng, c->learner_count)];
            err = raft_propose_config(ln->r, RAFT_CONFIG_REMOVE, who);
        }
    }
    if (what == NULL)
        return;
    trace(s, "config %s n%llu on leader n%llu: %s", what, (unsigned long long)who,
          (unsigned long long)ln->id, ehr_errname(err));
    if (err == 0)
        s->res->config_changes++;
    else if (err != EHR_EAGAIN && err != EHR_EFULL)
        violation(s, "config %s n%llu refused: %s", what, (unsigned long long)who,
                  ehr_errname(err));
    process(s, (uint32_t)l);
}

static void fault(struct sim *s)
{
    uint64_t pick = rng_below(&s->rng, 100);
    if (pick < 30) {
        uint32_t slot = (uint32_t)rng_below(&s->rng, s->n);
        if (s->nodes[slot].up)
            crash(s, slot, SIZE_MAX);
    } else if (pick < 50) {
        uint64_t side = rng_next(&s->rng);
        memset(s->cut, 0, sizeof s->cut);
        for (uint32_t a = 0; a < s->n; a++)
            for (uint32_t b = 0; b < s->n; b++)
                s->cut[a][b] = ((side >> a) & 1) != ((side >> b) & 1);
        trace(s, "partition %llx", (unsigned long long)(side & ((1u << s->n) - 1)));
    } else if (pick < 65) {
        uint32_t a = (uint32_t)rng_below(&s->rng, s->n), b = (uint32_t)rng_below(&s->rng, s->n);
        s->cut[a][b] = true;
        trace(s, "one-way cut slot %u -> slot %u", a, b);
    } else if (pick < 75) {
        int l = leader_slot(s);
        if (l >= 0) {
            for (uint32_t b = 0; b < s->n; b++) {
                s->cut[l][b] = true;
                s->cut[b][l] = true;
            }
            trace(s, "isolate leader n%llu", (unsigned long long)s->nodes[l].id);
        }
    } else {
        cut_clear(s);
        trace(s, "heal");
    }
}

/*
 * The "leader churn" fault style: cut the current leader off (keeping at
 * most one peer), or reconnect a node cut off earlier, never isolating more
 * nodes than the cluster tolerates. Old-term entries then often reach a
 * majority under a later leader before that leader's own entries do: the
 * situation of figure 8 in the Raft paper.
 */
static void churn(struct sim *s)
{
    uint32_t isolated = 0;
    for (uint32_t i = 0; i < s->n; i++)
        isolated += s->isolated[i];
    int l = leader_slot(s);
    if (l >= 0 && !s->isolated[l] && isolated < s->n - (s->n / 2 + 1) &&
        rng_below(&s->rng, 10) < 7) {
        bool keep = rng_below(&s->rng, 2) == 0;
        uint32_t peer = (uint32_t)rng_below(&s->rng, s->n);
        for (uint32_t b = 0; b < s->n; b++) {
            bool cut = b != (uint32_t)l && !(keep && b == peer);
            s->cut[l][b] = cut;
            s->cut[b][l] = cut;
        }
        s->isolated[l] = true;
        trace(s, "churn: cut off leader n%llu%s", (unsigned long long)s->nodes[l].id,
              keep ? " but for one peer" : "");
    } else if (isolated > 0) {
        uint32_t pick = (uint32_t)rng_below(&s->rng, isolated);
        for (uint32_t i = 0; i < s->n; i++) {
            if (!s->isolated[i] || pick-- != 0)
                continue;
            for (uint32_t b = 0; b < s->n; b++) {
                s->cut[i][b] = false;
                s->cut[b][i] = false;
            }
            s->isolated[i] = false;
            trace(s, "churn: reconnect slot %u", i);
            break;
        }
    }
}

static void control(struct sim *s)
{
    ev_push(s, (struct event){.time = s->now + CONTROL_UNITS, .kind = EV_CONTROL});
    if (s->now >= s->phase_end) {
        if (s->calm) {
            check_calm(s);
            start_chaos(s);
        } else {
            start_calm(s);
        }
    }
    if (rng_below(&s->rng, 100) < 60 && (!s->calm || s->now + DRAIN_UNITS < s->phase_end))
        client_propose(s);
    if (rng_ppm(&s->rng, s->fault_ppm)) {
        if (s->churn)
            churn(s);
        else
            fault(s);
    }
    if (rng_below(&s->rng, 100) < 3)
        membership(s);
    int l = leader_slot(s);
    if (l >= 0 && !s->calm && rng_below(&s->rng, 1000) < 5) {
        struct raft_status st = node_status(&s->nodes[l]);
        raft_id target = st.config.voters[rng_below(&s->rng, st.config.voter_count)];
        int err = raft_transfer_leadership(s->nodes[l].r, target);
        trace(s, "transfer n%llu -> n%llu: %s", (unsigned long long)s->nodes[l].id,
              (unsigned long long)target, ehr_errname(err));
        s->res->transfers += err == 0;
        process(s, (uint32_t)l);
    }
    int rl = any_leader_slot(s);
    if (rl >= 0 && rng_below(&s->rng, 100) < 5) {
        uint64_t req = ++s->next_read;
        int err = raft_read_index(s->nodes[rl].r, req);
        if (err == 0)
            vec_set(&s->read_floor, req, s->acked_max_index + 1);
        process(s, (uint32_t)rl);
    }
    if (rng_below(&s->rng, 100) < 4) {
        uint32_t slot = (uint32_t)rng_below(&s->rng, s->n);
        if (s->nodes[slot].up)
            take_snapshot(s, slot);
    }
}

/* ---- events ---- */

static void deliver(struct sim *s, struct raft_message *m)
{
    int to = slot_of(s, m->to);
    int from = slot_of(s, m->from);
    if (to < 0 || !s->nodes[to].up || (from >= 0 && s->cut[from][to])) {
        trace_msg(s, "lost", m);
        rt_msg_free(m);
        return;
    }
    trace_msg(s, "recv", m);
    int err = raft_step(s->nodes[to].r, m);
    rt_msg_free(m);
    if (err != 0) {
        violation(s, "node %llu refused a message: %s", (unsigned long long)s->nodes[to].id,
                  ehr_errname(err));
        return;
    }
    process(s, (uint32_t)to);
}

static void run_event(struct sim *s, struct event *ev)
{
    switch (ev->kind) {
    case EV_TICK: {
        ev_push(s, (struct event){.time = s->now + TICK_UNITS, .kind = EV_TICK, .slot = ev->slot});
        struct sim_node *nd = &s->nodes[ev->slot];
        if (!nd->up)
            break;
        int err = raft_tick(nd->r);
        if (err != 0)
            violation(s, "node %llu: raft_tick: %s", (unsigned long long)nd->id, ehr_errname(err));
        process(s, ev->slot);
        break;
    }
    case EV_DELIVER:
        deliver(s, ev->msg);
        break;
    case EV_CONTROL:
        control(s);
        break;
    case EV_CRASH: {
        struct sim_node *nd = &s->nodes[ev->slot];
        if (nd->id != 0 && nd->up && nd->gen == ev->gen && !s->calm)
            crash(s, ev->slot, SIZE_MAX);
        break;
    }
    case EV_ISOLATE: {
        /* cut the node off from every peer but one, both ways */
        struct sim_node *nd = &s->nodes[ev->slot];
        if (nd->id == 0 || !nd->up || nd->gen != ev->gen || s->calm)
            break;
        uint32_t keep = (uint32_t)rng_below(&s->rng, s->n);
        for (uint32_t b = 0; b < s->n; b++) {
            bool cut = b != keep && b != ev->slot;
            s->cut[ev->slot][b] = cut;
            s->cut[b][ev->slot] = cut;
        }
        trace(s, "isolate n%llu but for slot %u", (unsigned long long)nd->id, keep);
        break;
    }
    case EV_RESTART: {
        struct sim_node *nd = &s->nodes[ev->slot];
        if (nd->id != 0 && !nd->up && !nd->corrupt && nd->gen == ev->gen)
            restart(s, ev->slot);
        break;
    }
    }
}

static void print_report(const struct sim *s)
{
    fprintf(stderr, "ehr-sim: VIOLATION with seed %llu after %llu steps: %s\n",
            (unsigned long long)s->opt.seed, (unsigned long long)s->res->steps, s->res->violation);
    fprintf(stderr, "ehr-sim: replay with: ehr-sim --seed %llu --nodes %u --steps %llu --trace\n",
            (unsigned long long)s->opt.seed, s->n, (unsigned long long)s->opt.steps);
    fprintf(stderr, "ehr-sim: last events:\n");
    uint64_t from = s->trace_count > TRACE_LINES ? s->trace_count - TRACE_LINES : 0;
    for (uint64_t i = from; i < s->trace_count; i++)
        fprintf(stderr, "  %s\n", s->trace[i % TRACE_LINES]);
}

static void sim_free(struct sim *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        raft_destroy(s->nodes[i].r);
        raft_mem_storage_destroy(s->nodes[i].ms);
        ehr_free(s->nodes[i].disk.buf);
    }
    for (size_t i = 0; i < s->heap_len; i++)
        rt_msg_free(s->heap[i].msg);
    ehr_free(s->heap);
    vec_free(&s->committed_term);
    vec_free(&s->commit_seen_term);
    vec_free(&s->applied_hash);
    vec_free(&s->chain_hash);
    vec_free(&s->leader_of_term);
    vec_free(&s->leader_gen);
    vec_free(&s->prop_node);
    vec_free(&s->prop_hash);
    vec_free(&s->prop_acked);
    vec_free(&s->prop_ack_time);
    vec_free(&s->read_floor);
    ehr_free(s->lm.slots);
    ehr_free(s->scratch);
}

int sim_run(const struct sim_options *opt, struct sim_result *result)
{
    if (opt == NULL || result == NULL ||
        (opt->nodes != 0 && (opt->nodes < SIM_NODES_MIN || opt->nodes > SIM_NODES_MAX)))
        return EHR_EINVAL;
    memset(result, 0, sizeof *result);
    struct sim *s = ehr_calloc(1, sizeof *s);
    s->opt = *opt;
    if (s->opt.trace_out == NULL)
        s->opt.trace_out = stderr;
    s->res = result;
    s->rng.s = opt->seed * 0x2545f4914f6cdd1dULL + 1;
    s->restore_rng.s = opt->seed * 0x9e3779b97f4a7c15ULL + 0x5eed;
    /* drawn even when given, so that --nodes K replays a seed exactly */
    s->n = SIM_NODES_MIN + (uint32_t)rng_below(&s->rng, SIM_NODES_MAX - SIM_NODES_MIN + 1);
    if (opt->nodes != 0)
        s->n = opt->nodes;
    s->next_id = 100;
    s->next_prop = 1;
    /* Options drawn per seed, inside their valid ranges (edges included). */
    struct raft_options *o = &s->base_opt;
    raft_options_default(o);
    o->election_ticks = 10;
    o->heartbeat_ticks = 1 + (uint32_t)rng_below(&s->rng, 3);
    o->pre_vote = rng_below(&s->rng, 10) != 0;
    /* Without check-quorum a cut-off leader keeps believing it leads until
     * it hears a newer term: the reads sent to it show whether read-index
     * really waits for a quorum's confirmation. */
    o->check_quorum = rng_below(&s->rng, 5) != 0;
    o->append_entries_max = 1 + (uint32_t)rng_below(&s->rng, rng_below(&s->rng, 2) ? 4 : 64);
    o->append_bytes_max = 256 + rng_below(&s->rng, 65536);
    o->inflight_max = 1 + (uint32_t)rng_below(&s->rng, 32);
    o->inflight_bytes_max = 1024 + rng_below(&s->rng, 1 << 20);
    o->proposal_bytes_max = PAYLOAD_BYTES_MAX;
    o->uncommitted_bytes_max = 16384 + rng_below(&s->rng, 1 << 20);
    o->snapshot_chunk_bytes = RAFT_SNAPSHOT_CHUNK_BYTES_MIN + (uint32_t)rng_below(&s->rng, 1024);
    o->reads_pending_max = 64;
    o->apply_bytes_max = 4096 + rng_below(&s->rng, 1 << 20);
    o->promote_lag_max = 8 + rng_below(&s->rng, 64);
    struct raft_config boot = {.voter_count = s->n};
    for (uint32_t i = 0; i < s->n; i++)
        boot.voters[i] = i + 1;
    trace(s,
          "seed %llu: %u nodes, pre_vote=%d check_quorum=%d heartbeat=%u append<=%u/%llu "
          "inflight<=%u/%llu chunk=%u",
          (unsigned long long)opt->seed, s->n, o->pre_vote, o->check_quorum, o->heartbeat_ticks,
          o->append_entries_max, (unsigned long long)o->append_bytes_max, o->inflight_max,
          (unsigned long long)o->inflight_bytes_max, o->snapshot_chunk_bytes);
    for (uint32_t i = 0; i < s->n; i++) {
        node_init(s, i, i + 1, &boot);
        uint8_t buf[RAFT_CONFIG_ENCODED_BYTES_MAX];
        struct raft_entry e;
        raft_bootstrap_entry(&boot, buf, &e);
        if (i == 0) {
            struct lm_slot *ls = lm_find(&s->lm, 1, 1, true);
            ls->hash = rt_entry_hash(&e);
            ls->prev_term = 0;
        }
        ev_push(s, (struct event){
                       .time = 1 + rng_below(&s->rng, TICK_UNITS), .kind = EV_TICK, .slot = i});
    }
    ev_push(s, (struct event){.time = 1, .kind = EV_CONTROL});
    start_chaos(s);
    while (result->steps < opt->steps && !result->violated && s->heap_len > 0) {
        struct event ev = ev_pop(s);
        s->now = ev.time;
        run_event(s, &ev);
        if (!result->violated)
            check_all(s);
        result->steps++;
    }
    if (result->violated && !opt->quiet)
        print_report(s);
    sim_free(s);
    ehr_free(s);
    return 0;
}
