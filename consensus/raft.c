/*
 * raft.c - the Raft state machine: roles and terms, elections (with pre-vote
 * and check-quorum), replication and the commit rule, snapshots, membership,
 * leadership transfer, read-index, and the ready batch.
 *
 * It performs no I/O: it reads the persisted log through struct raft_storage
 * and hands everything else back in struct raft_ready. The invariants it
 * keeps are numbered in README.md (I1..I12); the comments below cite them.
 * Not here: the log view and arena (raft_log.c), the stored record forms
 * (raft_codec.c), the in-memory storage (raft_mem_storage.c).
 */
#include "raft_internal.h"

#include <string.h>

/* ---- test-only soft assertions ---- */

#ifdef RAFT_TEST_BUGS
static unsigned long soft_assert_count;
static const char *soft_assert_first;

void raft__soft_assert_fail(const char *what, const char *file, int line)
{
    (void)file;
    (void)line;
    if (soft_assert_count++ == 0)
        soft_assert_first = what;
}

unsigned long raft_test_soft_assert_count(const char **first)
{
    if (first != NULL)
        *first = soft_assert_first;
    return soft_assert_count;
}
#endif

/* ---- options ---- */

void raft_options_default(struct raft_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->election_ticks = 10;
    opt->heartbeat_ticks = 1;
    opt->pre_vote = true;
    opt->check_quorum = true;
    opt->append_entries_max = 4096;
    opt->append_bytes_max = (uint64_t)1 << 20;
    opt->inflight_max = 256;
    opt->inflight_bytes_max = (uint64_t)32 << 20;
    opt->proposal_bytes_max = (uint32_t)4 << 20;
    opt->uncommitted_bytes_max = (uint64_t)256 << 20;
    opt->snapshot_chunk_bytes = (uint32_t)1 << 20;
    opt->reads_pending_max = 4096;
    opt->apply_bytes_max = (uint64_t)64 << 20;
    opt->promote_lag_max = 1024;
}

int raft_options_validate(const struct raft_options *opt)
{
    if (opt == NULL || opt->id == 0)
        return EHR_EINVAL;
    if (opt->election_ticks < RAFT_ELECTION_TICKS_MIN ||
        opt->election_ticks > RAFT_ELECTION_TICKS_MAX)
        return EHR_EINVAL;
    if (opt->heartbeat_ticks < 1 || opt->heartbeat_ticks >= opt->election_ticks)
        return EHR_EINVAL;
    if (opt->append_entries_max < 1 || opt->append_entries_max > RAFT_APPEND_ENTRIES_MAX)
        return EHR_EINVAL;
    if (opt->append_bytes_max < 1 || opt->append_bytes_max > RAFT_APPEND_BYTES_MAX)
        return EHR_EINVAL;
    if (opt->inflight_max < 1 || opt->inflight_max > RAFT_INFLIGHT_MAX)
        return EHR_EINVAL;
    if (opt->inflight_bytes_max < 1 || opt->inflight_bytes_max > RAFT_INFLIGHT_BYTES_MAX)
        return EHR_EINVAL;
    if (opt->proposal_bytes_max > RAFT_PROPOSAL_BYTES_MAX)
        return EHR_EINVAL;
    if (opt->uncommitted_bytes_max < 1 || opt->uncommitted_bytes_max > RAFT_UNCOMMITTED_BYTES_MAX)
        return EHR_EINVAL;
    if (opt->snapshot_chunk_bytes < RAFT_SNAPSHOT_CHUNK_BYTES_MIN ||
        opt->snapshot_chunk_bytes > RAFT_SNAPSHOT_CHUNK_BYTES_MAX)
        return EHR_EINVAL;
    if (opt->reads_pending_max < 1 || opt->reads_pending_max > RAFT_READS_PENDING_MAX)
        return EHR_EINVAL;
    if (opt->apply_bytes_max < 1 || opt->apply_bytes_max > RAFT_APPLY_BYTES_MAX)
        return EHR_EINVAL;
    return 0;
}

/* ---- small helpers ---- */

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "unknown";
}

const char *raft_message_type_name(enum raft_message_type type)
{
    static const char *const names[] = {
        "?",         "append",    "append-resp",    "prevote",  "prevote-resp",  "vote",
        "vote-resp", "heartbeat", "heartbeat-resp", "snapshot", "snapshot-resp", "timeout-now"};
    if ((unsigned)type >= EHR_ARRAY_COUNT(names))
        return "unknown";
    return names[type];
}

bool raft_config_is_voter(const struct raft_config *c, raft_id id)
{
    for (uint32_t i = 0; i < c->voter_count; i++)
        if (c->voters[i] == id)
            return true;
    return false;
}

bool raft_config_is_learner(const struct raft_config *c, raft_id id)
{
    for (uint32_t i = 0; i < c->learner_count; i++)
        if (c->learners[i] == id)
            return true;
    return false;
}

static bool config_is_member(const struct raft_config *c, raft_id id)
{
    return raft_config_is_voter(c, id) || raft_config_is_learner(c, id);
}

static uint32_t quorum(const struct raft *r)
{
    return r->conf.voter_count / 2 + 1;
}

static uint64_t rng_next(struct raft *r)
{
    /* splitmix64: good enough to spread election timeouts, seeded per node */
    uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void randomize_timeout(struct raft *r)
{
    r->election_timeout = r->opt.election_ticks + (uint32_t)(rng_next(r) % r->opt.election_ticks);
}

/*
 * May this node campaign? A voter of its latest configuration may. So may a
 * voter of the previous one while the latest is uncommitted: a leader that
 * removed itself and lost leadership before the change committed may be the
 * only node holding it, and the others may need its log to elect anyone
 * (Raft thesis 4.2.2). Its own vote then does not count (poll).
 */
static bool promotable(const struct raft *r)
{
    if (raft_config_is_voter(&r->conf, r->id))
        return true;
    return r->conf_index > r->commit && raft_config_is_voter(&r->conf_prev, r->id);
}

/* The hard state as it is now (what the next batch persists). */
static struct raft_hard_state hard_state_now(const struct raft *r)
{
    return (struct raft_hard_state){
        .term = r->term, .vote = r->vote, .commit = r->commit, .restore_term = r->restore_term};
}

/* ---- outbox ---- */

/*
 * Queue m (from and term already set by the caller or here) for the batch.
 * after_persist: the message depends on durable state (votes, acks). So does
 * any message that carries a term not yet durable here (I5): a leader that
 * won in the batch that raised its term (a sole voter) must not send its
 * appends before that term is durable, or a crash lets it win the same term
 * again with other entries at the same indices. Pre-votes and their answers
 * carry a term nobody adopts and are exempt. Beyond RAFT_OUTBOX_MAX messages
 * are dropped: Raft tolerates loss, and a caller that never collects its
 * batches must not grow memory without bound.
 */
static void send(struct raft *r, struct raft_message *m, bool after_persist)
{
    EHR_ASSERT(m->to != r->id);
    EHR_ASSERT(m->type > 0 && m->type < RAFT_MSG_TYPE_LAST_);
    if (m->type != RAFT_MSG_PREVOTE && m->type != RAFT_MSG_PREVOTE_RESP &&
        m->term > r->hs_handed.term)
        after_persist = true;
    struct raft__outbox *o = after_persist ? &r->out_after : &r->out_now;
    if (r->out_now.count + r->out_after.count >= RAFT_OUTBOX_MAX) {
        r->stats.messages_dropped++;
        return;
    }
    if (o->count == o->cap) {
        o->cap = o->cap == 0 ? 64 : o->cap * 2;
        o->msgs = ehr_realloc(o->msgs, o->cap * sizeof *o->msgs);
    }
    m->from = r->id;
    o->msgs[o->count++] = *m;
}

/* Responses whose content must be durable before they leave (I5). */
static void send_response(struct raft *r, struct raft_message *m)
{
#ifdef RAFT_TEST_BUG_REPLY_BEFORE_PERSIST
    send(r, m, false);
#else
    send(r, m, true);
#endif
}

/* ---- progress (leader) ---- */

static struct raft__progress *progress_find(struct raft *r, raft_id id)
{
    for (uint32_t i = 0; i < r->progress_count; i++)
        if (r->progress[i].id == id)
            return &r->progress[i];
    return NULL;
}

static void inflight_reset(struct raft__progress *pr)
{
    pr->inflight_start = 0;
    pr->inflight_count = 0;
    pr->inflight_bytes_total = 0;
}

static bool inflight_full(const struct raft *r, const struct raft__progress *pr)
{
    return pr->inflight_count >= r->opt.inflight_max ||
           pr->inflight_bytes_total >= r->opt.inflight_bytes_max;
}

static void inflight_add(struct raft *r, struct raft__progress *pr, uint64_t last, uint64_t bytes)
{
    EHR_ASSERT(pr->inflight_count < r->opt.inflight_max);
    uint32_t slot = (pr->inflight_start + pr->inflight_count) % r->opt.inflight_max;
    pr->inflight_index[slot] = last;
    pr->inflight_bytes[slot] = bytes;
    pr->inflight_count++;
    pr->inflight_bytes_total += bytes;
}

/* Free every in-flight append up to and including `index`. */
static void inflight_free_to(struct raft *r, struct raft__progress *pr, uint64_t index)
{
    while (pr->inflight_count > 0 && pr->inflight_index[pr->inflight_start] <= index) {
        EHR_ASSERT(pr->inflight_bytes_total >= pr->inflight_bytes[pr->inflight_start]);
        pr->inflight_bytes_total -= pr->inflight_bytes[pr->inflight_start];
        pr->inflight_start = (pr->inflight_start + 1) % r->opt.inflight_max;
        pr->inflight_count--;
    }
}

static void inflight_free_first(struct raft *r, struct raft__progress *pr)
{
    if (pr->inflight_count > 0)
        inflight_free_to(r, pr, pr->inflight_index[pr->inflight_start]);
}

static void progress_become_probe(struct raft__progress *pr)
{
    if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
        uint64_t next = pr->match + 1;
        pr->next = next > pr->snap_index + 1 ? next : pr->snap_index + 1;
    } else {
        pr->next = pr->match + 1;
    }
    pr->state = RAFT_PROGRESS_PROBE;
    pr->probe_sent = false;
    inflight_reset(pr);
}

static void progress_become_replicate(struct raft__progress *pr)
{
    pr->state = RAFT_PROGRESS_REPLICATE;
    pr->next = pr->match + 1;
    pr->probe_sent = false;
    inflight_reset(pr);
}

static bool progress_paused(const struct raft *r, const struct raft__progress *pr)
{
    switch (pr->state) {
    case RAFT_PROGRESS_PROBE:
        return pr->probe_sent;
    case RAFT_PROGRESS_REPLICATE:
        return inflight_full(r, pr);
    case RAFT_PROGRESS_SNAPSHOT:
        return true;
    }
    return true;
}

static void progress_init(struct raft *r, struct raft__progress *pr, raft_id id, bool voter)
{
    uint64_t *idx = pr->inflight_index;
    uint64_t *bytes = pr->inflight_bytes;
    memset(pr, 0, sizeof *pr);
    pr->inflight_index = idx;
    pr->inflight_bytes = bytes;
    pr->id = id;
    pr->voter = voter;
    pr->state = RAFT_PROGRESS_PROBE;
    pr->next = raft__log_last(r) + 1;
    if (id == r->id) {
        pr->match = raft__log_persisted_last(r);
        pr->recent_active = true;
    }
}

/* Make the progress set match the configuration (leader only). */
static void progress_sync(struct raft *r)
{
    /* drop members that left */
    for (uint32_t i = 0; i < r->progress_count;) {
        if (!config_is_member(&r->conf, r->progress[i].id)) {
            struct raft__progress gone = r->progress[i];
            r->progress[i] = r->progress[r->progress_count - 1];
            r->progress[r->progress_count - 1] = gone; /* keep the ring buffers */
            r->progress_count--;
            continue;
        }
        r->progress[i].voter = raft_config_is_voter(&r->conf, r->progress[i].id);
        i++;
    }
    /* add members that joined */
    const struct raft_config *c = &r->conf;
    for (uint32_t k = 0; k < c->voter_count + c->learner_count; k++) {
        bool voter = k < c->voter_count;
        raft_id id = voter ? c->voters[k] : c->learners[k - c->voter_count];
        if (progress_find(r, id) != NULL)
            continue;
        EHR_ASSERT(r->progress_count < RAFT_MEMBERS_MAX);
        progress_init(r, &r->progress[r->progress_count++], id, voter);
    }
}

/* ---- configuration tracking (I10) ---- */

/* A configuration entry entered the log at `index`: it is in force at once. */
static void config_entered(struct raft *r, const struct raft_config *c, uint64_t index)
{
    r->conf_prev = r->conf;
    r->conf_prev_index = r->conf_index;
    r->conf = *c;
    r->conf_index = index;
    if (r->role == RAFT_LEADER)
        progress_sync(r);
}

/* The log is about to lose every entry from `index` on. */
static void config_truncated(struct raft *r, uint64_t index)
{
    if (r->conf_index < index)
        return;
    /* Every configuration but the last in a log is committed (I10), if
     * maybe not known so here yet: it is never the one truncated. */
    RAFT_ASSERT(r->conf_prev_index < index);
    r->conf = r->conf_prev;
    r->conf_index = r->conf_prev_index;
}

/* Append to the log, keeping the configuration in step. */
static void log_append(struct raft *r, const struct raft_entry *entries, size_t count)
{
    if (count == 0)
        return;
    if (entries[0].index <= raft__log_last(r))
        config_truncated(r, entries[0].index);
    raft__log_append(r, entries, count);
    for (size_t i = 0; i < count; i++) {
        if (entries[i].type != RAFT_ENTRY_CONFIG)
            continue;
        struct raft_config c;
        int err = raft_config_decode(entries[i].data, entries[i].size, &c);
        RAFT_ASSERT(err == 0); /* checked where the entry entered (raft_step, propose) */
        if (err == 0)
            config_entered(r, &c, entries[i].index);
    }
}

/* ---- role changes ---- */

static void read_result_push(struct raft *r, uint64_t request, uint64_t index, int err)
{
    if (r->read_result_count == r->read_result_cap) {
        r->read_result_cap = r->read_result_cap == 0 ? 16 : r->read_result_cap * 2;
        r->read_results =
            ehr_realloc(r->read_results, r->read_result_cap * sizeof *r->read_results);
    }
    r->read_results[r->read_result_count++] =
        (struct raft_read_result){.request = request, .index = index, .err = err};
}

static void reads_fail_all(struct raft *r)
{
    for (uint32_t i = 0; i < r->reads_count; i++) {
        const struct raft__pending_read *p =
            &r->reads[(r->reads_start + i) % r->opt.reads_pending_max];
        read_result_push(r, p->request, 0, EHR_ENOTLEADER);
    }
    r->reads_start = 0;
    r->reads_count = 0;
}

/* Enter `term` (>= the current one) with no role-specific state (I1, I2). */
static void reset(struct raft *r, uint64_t term)
{
    RAFT_ASSERT(term >= r->term); /* I1: terms never go back */
    if (term != r->term) {
        r->term = term;
#ifndef RAFT_TEST_BUG_KEEP_VOTE
        r->vote = 0; /* I2: a new term, a new vote */
#endif
    }
    if (r->role == RAFT_LEADER)
        reads_fail_all(r);
    r->leader = 0;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    randomize_timeout(r);
    r->votes_count = 0;
    r->transfer_target = 0;
    r->transfer_elapsed = 0;
    r->flush_needed = false;
    r->progress_count = 0;
}

static void become_follower(struct raft *r, uint64_t term, raft_id leader)
{
    reset(r, term);
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
}

static void become_pre_candidate(struct raft *r)
{
    EHR_ASSERT(r->role != RAFT_LEADER);
    /* Neither the term nor the vote changes: a pre-vote disturbs nobody. */
    r->role = RAFT_PRE_CANDIDATE;
    r->leader = 0;
    r->votes_count = 0;
    r->election_elapsed = 0;
    randomize_timeout(r);
}

static void become_candidate(struct raft *r)
{
    EHR_ASSERT(r->role != RAFT_LEADER);
    reset(r, r->term + 1);
    r->role = RAFT_CANDIDATE;
    r->vote = r->id;
    r->stats.elections++;
}

static void broadcast_append(struct raft *r);

static void become_leader(struct raft *r)
{
    EHR_ASSERT(r->role == RAFT_CANDIDATE);
    EHR_ASSERT(r->vote == r->id);
    reset(r, r->term);
    r->role = RAFT_LEADER;
    r->leader = r->id;
    r->stats.leaderships++;
    r->proposed_total = 0;
    r->committed_total = 0;
    r->marks_start = 0;
    r->marks_count = 0;
    r->read_round = 0;
    progress_sync(r);
    /* I6: a new leader's first entry is an empty one of its own term; its
     * commit is what lets the leader commit (and serve reads for) the rest. */
    struct raft_entry empty = {
        .term = r->term, .index = raft__log_last(r) + 1, .type = RAFT_ENTRY_EMPTY};
    r->term_start_index = empty.index;
    log_append(r, &empty, 1);
    r->flush_needed = true;
}

/* ---- elections ---- */

enum poll_result { POLL_PENDING, POLL_WON, POLL_LOST };

static enum poll_result poll(struct raft *r, raft_id from, bool granted)
{
    uint32_t i;
    for (i = 0; i < r->votes_count; i++)
        if (r->votes_from[i] == from)
            break;
    if (i == r->votes_count && raft_config_is_voter(&r->conf, from)) {
        EHR_ASSERT(r->votes_count < RAFT_MEMBERS_MAX);
        r->votes_from[r->votes_count] = from;
        r->votes_granted[r->votes_count] = granted;
        r->votes_count++;
    }
    uint32_t yes = 0, no = 0;
    for (i = 0; i < r->votes_count; i++) {
        if (r->votes_granted[i])
            yes++;
        else
            no++;
    }
    if (yes >= quorum(r))
        return POLL_WON;
    if (no > r->conf.voter_count - quorum(r))
        return POLL_LOST;
    return POLL_PENDING;
}

enum campaign_kind { CAMPAIGN_PRE, CAMPAIGN_REAL, CAMPAIGN_TRANSFER };

static void campaign(struct raft *r, enum campaign_kind kind)
{
    if (!promotable(r) || r->term >= RAFT_TERM_MAX)
        return; /* at the bound the next term would not be accepted (I1) */
#ifndef RAFT_TEST_BUG_RESTORED_VOTES
    if (r->restore_term != 0)
        return; /* I14: restored, not caught up: no campaign, not even on a transfer */
#endif
    uint64_t term;
    enum raft_message_type type;
    if (kind == CAMPAIGN_PRE) {
        become_pre_candidate(r);
        term = r->term + 1;
        type = RAFT_MSG_PREVOTE;
    } else {
        become_candidate(r);
        term = r->term;
        type = RAFT_MSG_VOTE;
    }
    if (poll(r, r->id, true) == POLL_WON) {
        if (kind == CAMPAIGN_PRE)
            campaign(r, CAMPAIGN_REAL);
        else
            become_leader(r);
        return;
    }
    uint64_t last = raft__log_last(r);
    uint64_t last_term = raft__log_last_term(r);
    for (uint32_t i = 0; i < r->conf.voter_count; i++) {
        raft_id to = r->conf.voters[i];
        if (to == r->id)
            continue;
        struct raft_message m = {.type = type,
                                 .to = to,
                                 .term = term,
                                 .index = last,
                                 .log_term = last_term,
                                 .transfer = kind == CAMPAIGN_TRANSFER};
        /* A vote request carries our term and self-vote: durable first (I5). */
        send(r, &m, type == RAFT_MSG_VOTE);
    }
}

/* True while this node has heard from a leader within the election timeout. */
static bool in_lease(const struct raft *r)
{
    return r->leader != 0 && r->election_elapsed < r->opt.election_ticks;
}

static void handle_vote(struct raft *r, const struct raft_message *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    bool can_vote =
        r->vote == m->from || (r->vote == 0 && r->leader == 0) || (pre && m->term > r->term);
    uint64_t last = raft__log_last(r);
    uint64_t last_term = raft__log_last_term(r);
#ifdef RAFT_TEST_BUG_VOTE_NO_LOG_CHECK
    bool up_to_date = true; /* the bug: any log will do */
    (void)last;
    (void)last_term;
#else
    /* I3: only a candidate whose log holds every committed entry may win. */
    bool up_to_date = m->log_term > last_term || (m->log_term == last_term && m->index >= last);
#endif
    /* Leader stickiness: a node that hears from a leader refuses pre-votes. */
    bool sticky = pre && !m->transfer && in_lease(r);
    /* I14: a restored node may lack entries it helped commit; its vote could
     * elect a candidate that lacks them too. */
#ifdef RAFT_TEST_BUG_RESTORED_VOTES
    bool restoring = false; /* the bug: a restored node votes at once */
#else
    bool restoring = r->restore_term != 0;
#endif
    struct raft_message resp = {.type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
                                .to = m->from};
    if (can_vote && up_to_date && !sticky && !restoring) {
        resp.term = m->term;
        if (!pre) {
            RAFT_ASSERT(m->term == r->term);
            RAFT_ASSERT(r->vote == 0 || r->vote == m->from); /* I2: one vote per term */
            r->vote = m->from;
            r->election_elapsed = 0;
        }
    } else {
        resp.term = r->term;
        resp.reject = true;
    }
    if (pre)
        send(r, &resp, false);
    else
        send_response(r, &resp);
}

static void handle_vote_resp(struct raft *r, const struct raft_message *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE_RESP;
    if (pre && r->role != RAFT_PRE_CANDIDATE)
        return;
    if (!pre && r->role != RAFT_CANDIDATE)
        return;
    if (!pre && m->term != r->term)
        return;
    if (pre && !m->reject && m->term != r->term + 1)
        return;
    switch (poll(r, m->from, !m->reject)) {
    case POLL_WON:
        if (pre)
            campaign(r, CAMPAIGN_REAL);
        else
            become_leader(r);
        break;
    case POLL_LOST:
        become_follower(r, r->term, 0);
        break;
    case POLL_PENDING:
        break;
    }
}

/* ---- replication (leader) ---- */

static void send_snapshot_chunk(struct raft *r, struct raft__progress *pr);

static void start_snapshot(struct raft *r, struct raft__progress *pr)
{
    struct raft_snapshot_meta meta;
    uint64_t size = 0;
    int err = r->st.snapshot_meta(r->st.ctx, &meta, &size);
    if (err == 0 && meta.index == 0)
        err = EHR_ECORRUPT; /* entries compacted without a snapshot */
    if (err != 0) {
        raft__halt(r, err);
        return;
    }
    pr->state = RAFT_PROGRESS_SNAPSHOT;
    pr->snap_index = meta.index;
    pr->snap_term = meta.term;
    pr->snap_size = size;
    pr->snap_offset = 0;
    pr->snap_chunk_sent = false;
    inflight_reset(pr);
    r->stats.snapshots_sent++;
    send_snapshot_chunk(r, pr);
}

static void send_snapshot_chunk(struct raft *r, struct raft__progress *pr)
{
    EHR_ASSERT(pr->state == RAFT_PROGRESS_SNAPSHOT);
    if (pr->snap_chunk_sent)
        return;
    struct raft_snapshot_meta *meta = raft__arena_alloc(&r->ready_arena, sizeof *meta);
    uint64_t size = 0;
    int err = r->st.snapshot_meta(r->st.ctx, meta, &size);
    if (err != 0) {
        raft__halt(r, err);
        return;
    }
    if (meta->index != pr->snap_index || meta->term != pr->snap_term || size != pr->snap_size) {
        /* A newer snapshot replaced the one being sent: start it over. */
        pr->snap_index = meta->index;
        pr->snap_term = meta->term;
        pr->snap_size = size;
        pr->snap_offset = 0;
    }
    RAFT_ASSERT(pr->snap_offset <= size);
    uint64_t left = size - pr->snap_offset;
    uint32_t n = left < r->opt.snapshot_chunk_bytes ? (uint32_t)left : r->opt.snapshot_chunk_bytes;
    uint8_t *buf = NULL;
    if (n > 0) {
        buf = raft__arena_alloc(&r->ready_arena, n);
        size_t got = 0;
        err = r->st.snapshot_read(r->st.ctx, pr->snap_offset, buf, n, &got);
        if (err == 0 && got != n)
            err = EHR_ECORRUPT;
        if (err != 0) {
            raft__halt(r, err);
            return;
        }
    }
    struct raft_message m = {.type = RAFT_MSG_SNAPSHOT,
                             .to = pr->id,
                             .term = r->term,
                             .index = meta->index,
                             .snapshot = meta,
                             .offset = pr->snap_offset,
                             .size = n,
                             .data = buf,
                             .done = pr->snap_offset + n == size};
    pr->snap_chunk_sent = true;
    send(r, &m, false);
}

/*
 * Send pr the next append if its state allows: entries from pr->next on
 * (bounded per message and by the in-flight budget), or an empty append when
 * allow_empty (to carry the commit index or probe). Switches to sending a
 * snapshot when the entries it needs are compacted. Returns true if an
 * append with entries went out.
 */
static bool send_append(struct raft *r, struct raft__progress *pr, bool allow_empty)
{
    if (r->halted != 0 || pr->id == r->id)
        return false;
    if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
        send_snapshot_chunk(r, pr);
        return false;
    }
    if (progress_paused(r, pr))
        return false;
    uint64_t last = raft__log_last(r);
    RAFT_ASSERT(pr->next >= 1 && pr->next <= last + 1);
    RAFT_ASSERT(pr->next > pr->match); /* I8: never resend below the match */
    /* I13: a learner is sent committed entries only. An uncommitted entry
     * of a newer term on a learner would make its log "more up to date"
     * than a voter's that a configuration counting the learner as a voter
     * needs elected, while the learner, a learner in its own log, never
     * campaigns: no leader could ever be elected. */
    uint64_t end = last;
    if (!pr->voter && r->commit < end)
        end = r->commit;
    uint64_t prev = pr->next - 1;
    uint64_t prev_term = 0;
    int err = raft__log_term(r, prev, &prev_term);
    if (err == EHR_ENOTFOUND) {
        start_snapshot(r, pr);
        return false;
    }
    if (err != 0)
        return false;
    size_t count = 0;
    uint64_t bytes = 0;
    struct raft_entry *entries = NULL;
    if (pr->next <= end) {
        uint64_t want = end + 1 - pr->next;
        if (want > r->opt.append_entries_max)
            want = r->opt.append_entries_max;
        uint64_t budget = r->opt.append_bytes_max;
        if (pr->state == RAFT_PROGRESS_REPLICATE) {
            uint64_t room = r->opt.inflight_bytes_max - pr->inflight_bytes_total;
            if (room < budget)
                budget = room;
        }
        entries = raft__arena_alloc(&r->ready_arena, (size_t)want * sizeof *entries);
        err =
            raft__log_entries(r, pr->next, pr->next + want, budget, entries, (size_t)want, &count);
        if (err == EHR_ENOTFOUND) {
            start_snapshot(r, pr);
            return false;
        }
        if (err != 0)
            return false;
        for (size_t i = 0; i < count; i++)
            bytes += entries[i].size + RAFT_ENTRY_OVERHEAD_BYTES;
    }
    if (count == 0 && !allow_empty)
        return false;
    struct raft_message m = {.type = RAFT_MSG_APPEND,
                             .to = pr->id,
                             .term = r->term,
                             .index = prev,
                             .log_term = prev_term,
                             .commit = r->commit,
                             .entries = count > 0 ? entries : NULL,
                             .entry_count = (uint32_t)count};
    uint64_t learnable = prev + count < r->commit ? prev + count : r->commit;
    if (learnable > pr->sent_commit)
        pr->sent_commit = learnable;
    if (pr->state == RAFT_PROGRESS_REPLICATE && count > 0) {
        pr->next = entries[count - 1].index + 1;
        inflight_add(r, pr, entries[count - 1].index, bytes);
    } else if (pr->state == RAFT_PROGRESS_PROBE) {
        pr->probe_sent = true;
    }
    send(r, &m, false);
    return count > 0;
}

/* Send pr appends until its window is full or it has everything. */
static void send_append_fill(struct raft *r, struct raft__progress *pr, bool allow_empty)
{
    bool sent = send_append(r, pr, allow_empty);
    while (sent && pr->state == RAFT_PROGRESS_REPLICATE && pr->next <= raft__log_last(r))
        sent = send_append(r, pr, false);
}

static void broadcast_append(struct raft *r)
{
    for (uint32_t i = 0; i < r->progress_count; i++)
        if (r->progress[i].id != r->id)
            send_append_fill(r, &r->progress[i], true);
}

static void send_heartbeat(struct raft *r, struct raft__progress *pr, uint64_t round)
{
    /* Never tell a follower to commit past what it is known to hold. */
    uint64_t commit = pr->match < r->commit ? pr->match : r->commit;
    struct raft_message m = {.type = RAFT_MSG_HEARTBEAT,
                             .to = pr->id,
                             .term = r->term,
                             .commit = commit,
                             .context = round};
    send(r, &m, false);
}

static void broadcast_heartbeat(struct raft *r)
{
    for (uint32_t i = 0; i < r->progress_count; i++)
        if (r->progress[i].id != r->id)
            send_heartbeat(r, &r->progress[i], r->read_round);
}

static void send_timeout_now(struct raft *r, raft_id to)
{
    struct raft_message m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = to, .term = r->term};
    send(r, &m, false);
}

/* ---- commit (I4) ---- */

static void reads_advance(struct raft *r);

static void uncommitted_release(struct raft *r)
{
    while (r->marks_count > 0) {
        const struct raft__uncommitted_mark *mk = &r->marks[r->marks_start];
        if (mk->last_index > r->commit)
            break;
        r->committed_total = mk->proposed_total;
        r->marks_start = (r->marks_start + 1) % RAFT__UNCOMMITTED_MARKS;
        r->marks_count--;
    }
}

static void leader_commit_advanced(struct raft *r, uint64_t old_commit)
{
    uncommitted_release(r);
    if (old_commit < r->term_start_index && r->commit >= r->term_start_index) {
        /* This term's first entry is committed: waiting reads can start. */
        bool any = false;
        for (uint32_t i = 0; i < r->reads_count; i++) {
            struct raft__pending_read *p =
                &r->reads[(r->reads_start + i) % r->opt.reads_pending_max];
            if (p->round == 0) {
                p->index = r->commit;
                p->round = ++r->read_round;
                any = true;
            }
        }
        if (any) {
            reads_advance(r);
            broadcast_heartbeat(r);
        }
    }
    /* I11: a leader removed from the voters leads until the change commits. */
    if (r->conf_index <= r->commit && !promotable(r)) {
        raft_id best = 0;
        uint64_t last = raft__log_last(r);
        for (uint32_t i = 0; i < r->progress_count; i++) {
            const struct raft__progress *pr = &r->progress[i];
            if (pr->voter && pr->id != r->id && pr->match == last)
                best = pr->id;
        }
        if (best != 0)
            send_timeout_now(r, best);
        become_follower(r, r->term, 0);
    }
}

/* Advance the commit index to what a quorum holds, if it is of this term. */
static bool maybe_commit(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->conf.voter_count == 0)
        return false;
    uint64_t matches[RAFT_MEMBERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->conf.voter_count; i++) {
        struct raft__progress *pr = progress_find(r, r->conf.voters[i]);
        matches[n++] = pr != NULL ? pr->match : 0;
    }
    /* sort descending; n <= RAFT_MEMBERS_MAX */
    for (uint32_t i = 1; i < n; i++) {
        uint64_t v = matches[i];
        uint32_t j = i;
        while (j > 0 && matches[j - 1] < v) {
            matches[j] = matches[j - 1];
            j--;
        }
        matches[j] = v;
    }
    uint64_t q = matches[quorum(r) - 1];
    if (q <= r->commit)
        return false;
    uint64_t t = 0;
    if (raft__log_term(r, q, &t) != 0)
        return false;
#ifndef RAFT_TEST_BUG_COMMIT_OLD_TERM
    /* I4: count replicas only for entries of the leader's own term. */
    if (t != r->term)
        return false;
#endif
    uint64_t old = r->commit;
    RAFT_ASSERT(q <= raft__log_last(r));
    r->commit = q;
    leader_commit_advanced(r, old);
    return true;
}

/*
 * I14: a restored node (restore_term R) votes again once it holds,
 * committed, an entry of term R or later: the entry at the commit index,
 * whose term is TERM. A leader of a term >= R was elected without any
 * restored node's vote, so by voters that all kept what they acknowledged;
 * its log held every entry committed in earlier terms ahead of its own
 * entries (leader completeness), and a log that matches it up to one of
 * its own holds them all. Entries committed in terms >= R never counted
 * this node (it took part in no such term before its restore): it may
 * lack them as any lagging follower may.
 */
static void restore_check(struct raft *r, uint64_t term)
{
    if (r->restore_term == 0 || term < r->restore_term)
        return;
    RAFT_ASSERT(r->term >= term);
    r->restore_term = 0;
    r->stats.restores_completed++;
}

/* Follower: learn a commit index (I7: never past the log, never back). */
static void commit_to(struct raft *r, uint64_t index)
{
    if (index <= r->commit)
        return;
    RAFT_ASSERT(index <= raft__log_last(r));
    r->commit = index;
    uint64_t term = 0;
    if (r->restore_term != 0 && raft__log_term(r, index, &term) == 0)
        restore_check(r, term);
}

/* ---- read-index (I12) ---- */

static void reads_advance(struct raft *r)
{
    while (r->reads_count > 0) {
        struct raft__pending_read *p = &r->reads[r->reads_start];
        if (p->round == 0)
            break;
        uint32_t acks = 0;
        for (uint32_t i = 0; i < r->conf.voter_count; i++) {
            raft_id id = r->conf.voters[i];
            if (id == r->id) {
                acks++;
                continue;
            }
            struct raft__progress *pr = progress_find(r, id);
            if (pr != NULL && pr->read_ack >= p->round)
                acks++;
        }
        if (acks < quorum(r))
            break;
        RAFT_ASSERT(p->index >= r->term_start_index);
        read_result_push(r, p->request, p->index, 0);
        r->reads_start = (r->reads_start + 1) % r->opt.reads_pending_max;
        r->reads_count--;
    }
}

/* ---- follower handlers ---- */

/* Returns 0, or EHR_EPROTO for an append no correct leader sends. */
static int handle_append(struct raft *r, const struct raft_message *m)
{
    struct raft_message resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term};
    if (m->index < r->commit) {
        /* Everything up to our commit index matches the leader already. */
        resp.index = r->commit;
        send_response(r, &resp);
        return 0;
    }
    if (!raft__log_match(r, m->index, m->log_term)) {
        if (r->halted != 0)
            return 0;
        uint64_t last = raft__log_last(r);
        uint64_t hint = m->index < last ? m->index : last;
        raft__log_find_conflict_by_term(r, hint, m->log_term, &resp.hint_index, &resp.hint_term);
        resp.index = m->index;
        resp.reject = true;
        r->stats.appends_rejected++;
        send_response(r, &resp);
        return 0;
    }
    /* Skip what we already hold; replace from the first conflict (I9). */
    uint64_t last_new = m->index + m->entry_count;
    size_t k = 0;
    for (; k < m->entry_count; k++) {
        const struct raft_entry *e = &m->entries[k];
        uint64_t t;
        if (raft__log_term(r, e->index, &t) != 0) {
            if (e->index < raft__log_first(r))
                continue; /* compacted: committed, hence matching */
            break;        /* beyond our log */
        }
        if (t == e->term)
            continue;
        if (e->index <= r->commit) {
            /* I9: a leader wants to change an entry we know is committed.
             * Our state and the cluster's differ: stop, never serve it. */
            raft__halt(r, EHR_EDIVERGED);
            return 0;
        }
        if (e->index <= r->conf_index && e->index <= r->conf_prev_index)
            return EHR_EPROTO; /* it would drop a configuration known committed (I10) */
        break;
    }
    if (r->halted != 0)
        return 0;
    if (k < m->entry_count)
        log_append(r, &m->entries[k], m->entry_count - k);
    commit_to(r, m->commit < last_new ? m->commit : last_new);
    resp.index = last_new;
    send_response(r, &resp);
    return 0;
}

static void handle_heartbeat(struct raft *r, const struct raft_message *m)
{
    commit_to(r, m->commit);
    struct raft_message resp = {
        .type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .term = r->term, .context = m->context};
    send(r, &resp, false);
}

static void handle_snapshot(struct raft *r, const struct raft_message *m)
{
    const struct raft_snapshot_meta *meta = m->snapshot;
    if (meta->index <= r->commit) {
        r->recv_active = false;
        struct raft_message resp = {
            .type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term, .index = r->commit};
        send_response(r, &resp);
        return;
    }
    bool same =
        r->recv_active && r->recv_meta.index == meta->index && r->recv_meta.term == meta->term;
    if (m->offset == 0 && !r->chunk_pending) {
        r->recv_active = true;
        r->recv_meta = *meta;
        r->recv_offset = 0;
        same = true;
    }
    if (r->chunk_pending)
        return; /* one chunk per batch; the leader resends */
    if (!same || m->offset != r->recv_offset) {
        struct raft_message resp = {.type = RAFT_MSG_SNAPSHOT_RESP,
                                    .to = m->from,
                                    .term = r->term,
                                    .index = meta->index,
                                    .offset = same ? r->recv_offset : 0,
                                    .reject = true};
        send(r, &resp, false);
        return;
    }
    /* Accept the chunk: the caller stages it durably before we acknowledge. */
    uint8_t *copy = NULL;
    if (m->size > 0) {
        copy = raft__arena_alloc(&r->ready_arena, m->size);
        memcpy(copy, m->data, m->size);
    }
    r->chunk = (struct raft_snapshot_chunk){
        .meta = *meta, .offset = m->offset, .size = m->size, .done = m->done, .data = copy};
    r->chunk_pending = true;
    r->recv_offset += m->size;
    if (!m->done) {
        struct raft_message resp = {.type = RAFT_MSG_SNAPSHOT_RESP,
                                    .to = m->from,
                                    .term = r->term,
                                    .index = meta->index,
                                    .offset = r->recv_offset};
        send_response(r, &resp);
        return;
    }
    r->recv_active = false;
    if (raft__log_match(r, meta->index, meta->term)) {
        /* We hold that entry already: just learn that it is committed. */
        commit_to(r, meta->index);
    } else {
        /* Replace the whole log with the snapshot. */
        RAFT_ASSERT(meta->index > r->commit);
        r->u.count = 0;
        r->u.snap_pending = true;
        r->u.snap = *meta;
        r->u.offset = meta->index + 1;
        r->commit = meta->index;
        r->conf = meta->config;
        r->conf_index = meta->index;
        r->conf_prev = meta->config;
        r->conf_prev_index = meta->index;
        r->chunk.install = true;
        r->stats.snapshots_installed++;
        restore_check(r, meta->term);
    }
    struct raft_message resp = {
        .type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term, .index = meta->index};
    send_response(r, &resp);
}

/* ---- leader handlers ---- */

static void handle_append_resp(struct raft *r, struct raft__progress *pr,
                               const struct raft_message *m)
{
    if (m->reject) {
        /* only an index we sent an append after can be rejected */
        bool stale = m->index >= pr->next ||
                     (pr->state == RAFT_PROGRESS_REPLICATE && m->index <= pr->match) ||
                     (pr->state == RAFT_PROGRESS_PROBE && m->index != pr->next - 1) ||
                     pr->state == RAFT_PROGRESS_SNAPSHOT;
        if (stale)
            return;
        uint64_t probe = m->hint_index;
        if (m->hint_term > 0) {
            uint64_t t;
            raft__log_find_conflict_by_term(r, m->hint_index, m->hint_term, &probe, &t);
        }
        uint64_t next = m->index < probe + 1 ? m->index : probe + 1;
        if (next < pr->match + 1)
            next = pr->match + 1;
        if (pr->state == RAFT_PROGRESS_REPLICATE)
            progress_become_probe(pr);
        pr->next = next;
        pr->probe_sent = false;
        send_append(r, pr, true);
        return;
    }
    bool updated = false;
    if (m->index > pr->match) {
        pr->match = m->index;
        updated = true;
    }
    if (pr->next < m->index + 1)
        pr->next = m->index + 1;
    switch (pr->state) {
    case RAFT_PROGRESS_PROBE:
        if (m->index >= pr->match)
            progress_become_replicate(pr);
        break;
    case RAFT_PROGRESS_SNAPSHOT:
        if (pr->match >= pr->snap_index)
            progress_become_probe(pr);
        break;
    case RAFT_PROGRESS_REPLICATE:
        inflight_free_to(r, pr, m->index);
        break;
    }
    if (updated && maybe_commit(r)) {
        if (r->role != RAFT_LEADER)
            return;
        broadcast_append(r);
    } else {
        /* more entries if the window allows; an empty append if all it
         * lacks is the commit index */
        send_append_fill(r, pr, pr->sent_commit < r->commit);
    }
    if (r->transfer_target == pr->id && pr->match == raft__log_last(r))
        send_timeout_now(r, pr->id);
}

static void handle_heartbeat_resp(struct raft *r, struct raft__progress *pr,
                                  const struct raft_message *m)
{
    pr->probe_sent = false;
    if (pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(r, pr))
        inflight_free_first(r, pr);
    if (pr->state == RAFT_PROGRESS_SNAPSHOT)
        pr->snap_chunk_sent = false; /* resend a chunk that may be lost */
    if (pr->match < raft__log_last(r) || pr->state == RAFT_PROGRESS_SNAPSHOT)
        send_append(r, pr, true);
    /* Only an echo of a round we sent confirms anything (I12): a claimed
     * future round would confirm reads that peer never heard of. */
    if (m->context > pr->read_ack && m->context <= r->read_round) {
        pr->read_ack = m->context;
        reads_advance(r);
    }
}

static void handle_snapshot_resp(struct raft *r, struct raft__progress *pr,
                                 const struct raft_message *m)
{
    if (pr->state != RAFT_PROGRESS_SNAPSHOT || m->index != pr->snap_index)
        return;
    if (m->offset > pr->snap_size)
        return;
    pr->snap_offset = m->offset;
    pr->snap_chunk_sent = false;
    send_snapshot_chunk(r, pr);
}

/* ---- raft_step ---- */

static bool entry_type_valid(enum raft_entry_type t)
{
    return t == RAFT_ENTRY_NORMAL || t == RAFT_ENTRY_EMPTY || t == RAFT_ENTRY_CONFIG;
}

static int config_validate(const struct raft_config *c)
{
    uint8_t buf[RAFT_CONFIG_ENCODED_BYTES_MAX];
    return raft_config_encode(c, buf) < 0 ? EHR_EPROTO : 0;
}

/* Everything a peer sends is checked here before the core looks at it. */
static int validate_message(const struct raft *r, const struct raft_message *m)
{
    if (m->type <= 0 || m->type >= RAFT_MSG_TYPE_LAST_)
        return EHR_EPROTO;
    if (m->to != r->id || m->from == 0 || m->from == r->id)
        return EHR_EPROTO;
    if (m->term > RAFT_TERM_MAX)
        return EHR_EPROTO; /* adopting it, our next campaign would wrap the term */
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP:
    case RAFT_MSG_PREVOTE_RESP:
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_HEARTBEAT_RESP:
    case RAFT_MSG_SNAPSHOT_RESP:
        break; /* a brand-new node answers at term 0 */
    default:
        if (m->term == 0)
            return EHR_EPROTO;
    }
    if (m->type != RAFT_MSG_APPEND && (m->entry_count != 0 || m->entries != NULL))
        return EHR_EPROTO;
    if (m->type != RAFT_MSG_SNAPSHOT && (m->snapshot != NULL || m->data != NULL || m->size != 0))
        return EHR_EPROTO;
    if (m->type == RAFT_MSG_APPEND) {
        if (m->log_term > m->term || m->entry_count > RAFT_APPEND_ENTRIES_MAX)
            return EHR_EPROTO;
        if (m->entry_count > 0 && m->entries == NULL)
            return EHR_EPROTO;
        if (m->index > UINT64_MAX - RAFT_APPEND_ENTRIES_MAX - 1)
            return EHR_EPROTO;
        uint64_t prev_term = m->log_term;
        uint64_t bytes = 0;
        for (uint32_t i = 0; i < m->entry_count; i++) {
            const struct raft_entry *e = &m->entries[i];
            if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term)
                return EHR_EPROTO;
            if (!entry_type_valid(e->type) || e->size > RAFT_PROPOSAL_BYTES_MAX)
                return EHR_EPROTO;
            if (e->size > 0 && e->data == NULL)
                return EHR_EPROTO;
            if (e->type == RAFT_ENTRY_EMPTY && e->size != 0)
                return EHR_EPROTO;
            if (e->type == RAFT_ENTRY_CONFIG) {
                struct raft_config c;
                if (raft_config_decode(e->data, e->size, &c) != 0)
                    return EHR_EPROTO;
            }
            bytes += e->size;
            if (bytes > RAFT_APPEND_BYTES_MAX)
                return EHR_EPROTO;
            prev_term = e->term;
        }
    }
    if ((m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) && m->log_term > m->term)
        return EHR_EPROTO;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        const struct raft_snapshot_meta *s = m->snapshot;
        if (s == NULL || s->index == 0 || s->index != m->index || s->term == 0 || s->term > m->term)
            return EHR_EPROTO;
        if (config_validate(&s->config) != 0)
            return EHR_EPROTO;
        if (m->size > RAFT_SNAPSHOT_CHUNK_BYTES_MAX || (m->size > 0 && m->data == NULL))
            return EHR_EPROTO;
        if (m->offset > UINT64_MAX - m->size)
            return EHR_EPROTO;
    }
    return 0;
}

/* A follower's share of raft_step (terms already settled). Returns 0 or
 * EHR_EPROTO. */
static int follower_step(struct raft *r, const struct raft_message *m)
{
    EHR_ASSERT(r->role == RAFT_FOLLOWER);
    /* terms are settled: only a granted pre-vote carries the next one */
    EHR_ASSERT(m->term == r->term || m->type == RAFT_MSG_PREVOTE_RESP);
    switch (m->type) {
    case RAFT_MSG_APPEND:
        r->leader = m->from;
        r->election_elapsed = 0;
        return handle_append(r, m);
    case RAFT_MSG_HEARTBEAT:
        r->leader = m->from;
        r->election_elapsed = 0;
        handle_heartbeat(r, m);
        return 0;
    case RAFT_MSG_SNAPSHOT:
        r->leader = m->from;
        r->election_elapsed = 0;
        handle_snapshot(r, m);
        return 0;
    case RAFT_MSG_TIMEOUT_NOW:
        campaign(r, CAMPAIGN_TRANSFER); /* only this term's leader sends it */
        return 0;
    default:
        return 0; /* stale responses */
    }
}

static int check_callable(const struct raft *r)
{
    if (r->halted != 0)
        return r->halted;
    if (r->ready_out)
        return EHR_EINVAL;
    return 0;
}

int raft_step(struct raft *r, const struct raft_message *m)
{
    int err = check_callable(r);
    if (err != 0)
        return err;
    if (m == NULL || validate_message(r, m) != 0)
        return EHR_EPROTO;
    bool from_leader =
        m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAPSHOT;
    bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
    /* A leader never tells a follower to commit past what it acknowledged
     * (send_heartbeat): such a claim means a broken peer, or a lost log
     * here. Refuse it rather than commit entries we do not hold. */
    if (m->type == RAFT_MSG_HEARTBEAT && m->term >= r->term && m->commit > raft__log_last(r))
        return EHR_EPROTO;

    if (m->term > r->term) {
        /* A leader is alive: do not let a disruptive node in. With
         * check-quorum, no candidate (a leader that loses its quorum steps
         * down, so the lease ends). Without it, only a server outside our
         * configuration: one removed while it was down never learns of its
         * removal and would depose every leader, for ever (Raft section 6);
         * a member is still heard, lest a leader that can send but not hear
         * pin its followers. */
        if (vote_req && !m->transfer && in_lease(r) &&
            (r->opt.check_quorum || !config_is_member(&r->conf, m->from)))
            return 0;
        bool keep_term =
            m->type == RAFT_MSG_PREVOTE || (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject);
        if (!keep_term)
            become_follower(r, m->term, from_leader ? m->from : 0);
    } else if (m->term < r->term) {
        if ((r->opt.check_quorum || r->opt.pre_vote || r->restore_term != 0) &&
            (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
            /* Tell a stale leader about the newer term, so it steps down. A
             * restored node (I14) always does: it may not campaign, and
             * only a leader of its term or a later one lets it catch up. */
            struct raft_message resp = {
                .type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term};
            send(r, &resp, false);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            /* Answer, so a node stuck on a lower term learns ours and can
             * win later: otherwise pre-vote and check-quorum can together
             * leave a healed cluster without a leader. */
            struct raft_message resp = {
                .type = RAFT_MSG_PREVOTE_RESP, .to = m->from, .term = r->term, .reject = true};
            send(r, &resp, false);
        }
        return 0;
    }

    if (vote_req) {
        handle_vote(r, m);
        return r->halted;
    }

    switch (r->role) {
    case RAFT_LEADER: {
        if (from_leader)
            return EHR_EPROTO; /* another leader in our term: never (I2) */
        struct raft__progress *pr = progress_find(r, m->from);
        if (pr == NULL)
            return 0;
        if (m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index > raft__log_last(r))
            return EHR_EPROTO; /* nobody holds what we never had */
        pr->recent_active = true;
        if (m->type == RAFT_MSG_APPEND_RESP)
            handle_append_resp(r, pr, m);
        else if (m->type == RAFT_MSG_HEARTBEAT_RESP)
            handle_heartbeat_resp(r, pr, m);
        else if (m->type == RAFT_MSG_SNAPSHOT_RESP)
            handle_snapshot_resp(r, pr, m);
        break;
    }
    case RAFT_PRE_CANDIDATE:
    case RAFT_CANDIDATE:
        if (m->type == RAFT_MSG_PREVOTE_RESP || m->type == RAFT_MSG_VOTE_RESP) {
            handle_vote_resp(r, m);
        } else if (from_leader) {
            become_follower(r, m->term, m->from); /* someone won this term */
            err = follower_step(r, m);
        }
        break;
    case RAFT_FOLLOWER:
        err = follower_step(r, m);
        break;
    }
    return r->halted != 0 ? r->halted : err;
}

/* ---- raft_tick ---- */

static bool quorum_active(struct raft *r)
{
    uint32_t active = 0;
    for (uint32_t i = 0; i < r->progress_count; i++) {
        struct raft__progress *pr = &r->progress[i];
        if (pr->id == r->id) {
            if (pr->voter)
                active++;
            continue;
        }
        if (pr->voter && pr->recent_active)
            active++;
        pr->recent_active = false;
    }
    return active >= quorum(r);
}

int raft_tick(struct raft *r)
{
    int err = check_callable(r);
    if (err != 0)
        return err;
    if (r->role != RAFT_LEADER) {
        r->election_elapsed++;
        if (promotable(r) && r->election_elapsed >= r->election_timeout)
            campaign(r, r->opt.pre_vote ? CAMPAIGN_PRE : CAMPAIGN_REAL);
        return r->halted;
    }
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->transfer_target != 0 && ++r->transfer_elapsed >= r->opt.election_ticks) {
        r->transfer_target = 0; /* the target did not take over in time */
        r->transfer_elapsed = 0;
        r->stats.transfers_aborted++;
    }
    if (r->election_elapsed >= r->opt.election_ticks) {
        r->election_elapsed = 0;
        if (r->opt.check_quorum && !quorum_active(r)) {
            /* I12: a leader cut off from a quorum stops acting as one. */
            r->stats.quorum_lost++;
            become_follower(r, r->term, 0);
            return r->halted;
        }
    }
    if (r->heartbeat_elapsed >= r->opt.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        broadcast_heartbeat(r);
    }
    return r->halted;
}

/* ---- proposals ---- */

static int leader_ready_for_proposal(const struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return EHR_ENOTLEADER;
    if (r->transfer_target != 0)
        return EHR_EAGAIN;
    return 0;
}

static uint64_t uncommitted_bytes(const struct raft *r)
{
    return r->proposed_total - r->committed_total;
}

static void leader_append(struct raft *r, enum raft_entry_type type, const uint8_t *data,
                          uint32_t size)
{
    struct raft_entry e = {
        .term = r->term, .index = raft__log_last(r) + 1, .type = type, .size = size, .data = data};
    log_append(r, &e, 1);
    r->proposed_total += (uint64_t)size + RAFT_ENTRY_OVERHEAD_BYTES;
    r->flush_needed = true;
}

int raft_propose(struct raft *r, const uint8_t *data, uint32_t size)
{
    int err = check_callable(r);
    if (err != 0)
        return err;
    if (size > r->opt.proposal_bytes_max)
        return EHR_ETOOBIG; /* never acceptable: say so before anything else */
    if (size > 0 && data == NULL)
        return EHR_EINVAL;
    if ((err = leader_ready_for_proposal(r)) != 0)
        return err;
    uint64_t cost = (uint64_t)size + RAFT_ENTRY_OVERHEAD_BYTES;
    uint64_t pending = uncommitted_bytes(r);
    if (pending > 0 && pending + cost > r->opt.uncommitted_bytes_max)
        return EHR_EAGAIN; /* back-pressure: let the followers catch up */
    leader_append(r, RAFT_ENTRY_NORMAL, data, size);
    return 0;
}

int raft_propose_config(struct raft *r, enum raft_config_op op, raft_id id)
{
    int err = check_callable(r);
    if (err != 0)
        return err;
    if ((err = leader_ready_for_proposal(r)) != 0)
        return err;
    if (id == 0)
        return EHR_EINVAL;
    /* One change at a time, and only once this term has committed an entry
     * (so that the previous configuration is known committed: I10). */
    if (r->conf_index > r->commit || r->commit < r->term_start_index)
        return EHR_EAGAIN;
    struct raft_config c = r->conf;
    switch (op) {
    case RAFT_CONFIG_ADD_LEARNER:
        if (config_is_member(&c, id))
            return EHR_EINVAL;
        if (c.voter_count + c.learner_count >= RAFT_MEMBERS_MAX)
            return EHR_EFULL;
        c.learners[c.learner_count++] = id;
        break;
    case RAFT_CONFIG_PROMOTE: {
        if (!raft_config_is_learner(&c, id))
            return EHR_EINVAL;
        const struct raft__progress *pr = progress_find(r, id);
        /* match <= last: the difference cannot wrap, a sum could */
        if (pr == NULL || raft__log_last(r) - pr->match > r->opt.promote_lag_max)
            return EHR_EAGAIN; /* not caught up yet */
        uint32_t k = 0;
        for (uint32_t i = 0; i < c.learner_count; i++)
            if (c.learners[i] != id)
                c.learners[k++] = c.learners[i];
        c.learner_count = k;
        c.voters[c.voter_count++] = id;
        break;
    }
    case RAFT_CONFIG_REMOVE: {
        if (raft_config_is_voter(&c, id)) {
            if (c.voter_count == 1)
                return EHR_EINVAL;
            uint32_t k = 0;
            for (uint32_t i = 0; i < c.voter_count; i++)
                if (c.voters[i] != id)
                    c.voters[k++] = c.voters[i];
            c.voter_count = k;
        } else if (raft_config_is_learner(&c, id)) {
            uint32_t k = 0;
            for (uint32_t i = 0; i < c.learner_count; i++)
                if (c.learners[i] != id)
                    c.learners[k++] = c.learners[i];
            c.learner_count = k;
        } else {
            return EHR_EINVAL;
        }
        break;
    }
    default:
        return EHR_EINVAL;
    }
    uint8_t buf[RAFT_CONFIG_ENCODED_BYTES_MAX];
    int size = raft_config_encode(&c, buf);
    if (size < 0)
        return size;
    leader_append(r, RAFT_ENTRY_CONFIG, buf, (uint32_t)size);
    /* A leader that removed itself no longer counts; commit may now move. */
    maybe_commit(r);
    return 0;
}

int raft_transfer_leadership(struct raft *r, raft_id target)
{
    int err = check_callable(r);
    if (err != 0)
        return err;
    if (r->role != RAFT_LEADER)
        return EHR_ENOTLEADER;
    if (target == r->id || !raft_config_is_voter(&r->conf, target))
        return EHR_EINVAL;
    if (r->transfer_target != 0)
        return EHR_EAGAIN;
    r->transfer_target = target;
    r->transfer_elapsed = 0;
    struct raft__progress *pr = progress_find(r, target);
    EHR_ASSERT(pr != NULL);
    if (pr->match == raft__log_last(r))
        send_timeout_now(r, target);
    else
        send_append_fill(r, pr, true);
    return 0;
}

int raft_read_index(struct raft *r, uint64_t request)
{
    int err = check_callable(r);
    if (err != 0)
        return err;
    if ((err = leader_ready_for_proposal(r)) != 0)
        return err;
    if (r->reads_count >= r->opt.reads_pending_max)
        return EHR_EAGAIN;
    if (r->reads == NULL)
        r->reads = ehr_calloc(r->opt.reads_pending_max, sizeof *r->reads);
    struct raft__pending_read *p =
        &r->reads[(r->reads_start + r->reads_count) % r->opt.reads_pending_max];
    *p = (struct raft__pending_read){.request = request};
    r->reads_count++;
    if (r->commit >= r->term_start_index) {
        p->index = r->commit;
        p->round = ++r->read_round;
        reads_advance(r);
        if (r->reads_count > 0)
            broadcast_heartbeat(r);
    }
    return 0;
}

/* ---- the ready batch ---- */

static bool hard_state_changed(const struct raft *r)
{
    return r->term != r->hs_handed.term || r->vote != r->hs_handed.vote ||
           r->commit != r->hs_handed.commit || r->restore_term != r->hs_handed.restore_term;
}

static uint64_t apply_limit(const struct raft *r)
{
    uint64_t last = raft__log_last(r);
    return r->commit < last ? r->commit : last;
}

bool raft_ready_pending(const struct raft *r)
{
    if (r->halted != 0 || r->ready_out)
        return false;
    return hard_state_changed(r) || r->u.count > 0 || r->u.snap_pending || r->chunk_pending ||
           r->out_now.count > 0 || r->out_after.count > 0 || r->read_result_count > 0 ||
           r->flush_needed || apply_limit(r) > r->applied;
}

static void collect_committed(struct raft *r, struct raft_ready *rd)
{
    r->handed_apply_to = r->applied;
    r->conf_applying_set = false;
    if (r->chunk.install)
        return; /* the application loads the snapshot first */
    uint64_t hi = apply_limit(r);
    if (hi <= r->applied)
        return;
    uint64_t lo = r->applied + 1;
    uint64_t want = hi - lo + 1;
    if (want > RAFT_APPEND_ENTRIES_MAX)
        want = RAFT_APPEND_ENTRIES_MAX;
    if (r->committed_cap < want) {
        r->committed_cap = (size_t)want;
        r->committed_buf =
            ehr_realloc(r->committed_buf, r->committed_cap * sizeof(struct raft_entry));
    }
    size_t count = 0;
    uint64_t bytes_left = r->opt.apply_bytes_max;
    while (count < want) {
        size_t got = 0;
        int err = raft__log_entries(r, lo + count, lo + want, bytes_left, r->committed_buf + count,
                                    (size_t)want - count, &got);
        RAFT_ASSERT(err != EHR_ENOTFOUND); /* applied >= snapshot index (I7) */
        if (err != 0 || got == 0)
            break;
        for (size_t i = 0; i < got; i++) {
            uint64_t sz = r->committed_buf[count + i].size;
            bytes_left = sz < bytes_left ? bytes_left - sz : 0;
        }
        count += got;
        if (bytes_left == 0)
            break;
    }
    for (size_t i = 0; i < count; i++) {
        const struct raft_entry *e = &r->committed_buf[i];
        if (e->type == RAFT_ENTRY_CONFIG &&
            raft_config_decode(e->data, e->size, &r->conf_applying) == 0)
            r->conf_applying_set = true;
    }
    rd->committed = r->committed_buf;
    rd->committed_count = count;
    if (count > 0)
        r->handed_apply_to = r->committed_buf[count - 1].index;
}

int raft_ready_get(struct raft *r, struct raft_ready *rd)
{
    memset(rd, 0, sizeof *rd);
    if (r->halted != 0)
        return r->halted;
    if (r->ready_out)
        return EHR_EINVAL;
    if (r->role == RAFT_LEADER && r->flush_needed) {
        broadcast_append(r);
        r->flush_needed = false;
        if (r->proposed_total > r->committed_total) {
            uint64_t last = raft__log_last(r);
            if (r->marks_count == RAFT__UNCOMMITTED_MARKS) {
                /* Full: widen the newest mark (conservative). */
                uint32_t newest = (r->marks_start + r->marks_count - 1) % RAFT__UNCOMMITTED_MARKS;
                r->marks[newest] = (struct raft__uncommitted_mark){
                    .last_index = last, .proposed_total = r->proposed_total};
            } else {
                uint32_t slot = (r->marks_start + r->marks_count) % RAFT__UNCOMMITTED_MARKS;
                r->marks[slot] = (struct raft__uncommitted_mark){
                    .last_index = last, .proposed_total = r->proposed_total};
                r->marks_count++;
            }
        }
    }
    if (r->halted != 0)
        return r->halted;
    if (hard_state_changed(r)) {
        rd->hard_state_changed = true;
        rd->hard_state = hard_state_now(r);
    }
    if (r->chunk_pending)
        rd->snapshot = &r->chunk;
    rd->entries = r->u.count > 0 ? r->u.entries : NULL;
    rd->entry_count = r->u.count;
    r->handed_entry_count = r->u.count;
    r->handed_install = r->chunk_pending && r->chunk.install;
    collect_committed(r, rd);
    if (r->halted != 0)
        return r->halted;
    /* Messages last: collecting may have queued none, but entries pointers are final now. */
    rd->messages = r->out_now.msgs;
    rd->message_count = r->out_now.count;
    rd->messages_after_persist = r->out_after.msgs;
    rd->message_after_persist_count = r->out_after.count;
    rd->reads = r->read_results;
    rd->read_count = r->read_result_count;
    rd->role = r->role;
    rd->leader = r->leader;
    r->ready_out = true;
    return 0;
}

int raft_ready_advance(struct raft *r)
{
    if (!r->ready_out)
        return EHR_EINVAL;
    r->ready_out = false;
    if (r->halted != 0)
        return r->halted;
    struct raft__unstable *u = &r->u;
    if (r->handed_install) {
        struct raft_snapshot_meta meta;
        uint64_t size = 0;
        int err = r->st.snapshot_meta(r->st.ctx, &meta, &size);
        /* The persistence contract: the snapshot is installed (I5). */
        RAFT_ASSERT(err == 0 && meta.index == u->snap.index && meta.term == u->snap.term);
        RAFT_ASSERT(r->st.last_index(r->st.ctx) == u->snap.index || r->handed_entry_count > 0);
        u->snap_pending = false;
        r->applied = u->snap.index;
        r->conf_applied = u->snap.config;
    }
    EHR_ASSERT(r->handed_entry_count == u->count); /* no input between get and advance */
    if (u->count > 0) {
        const struct raft_entry *last = &u->entries[u->count - 1];
        uint64_t stored_term = 0;
        /* The persistence contract: the storage holds what we handed out (I5). */
        RAFT_ASSERT(r->st.last_index(r->st.ctx) == last->index);
        RAFT_ASSERT(r->st.term(r->st.ctx, last->index, &stored_term) == 0 &&
                    stored_term == last->term);
        u->offset = last->index + 1;
        u->count = 0;
    } else if (!u->snap_pending) {
        u->offset = r->st.last_index(r->st.ctx) + 1;
    }
    raft__arena_reset(&u->arena);
    r->handed_entry_count = 0;
    r->handed_install = false;
    if (r->handed_apply_to > r->applied) {
        RAFT_ASSERT(r->handed_apply_to <= r->commit); /* only committed entries apply */
        r->applied = r->handed_apply_to;
    }
    if (r->conf_applying_set) {
        r->conf_applied = r->conf_applying;
        r->conf_applying_set = false;
    }
    r->hs_handed = hard_state_now(r);
    r->chunk_pending = false;
    memset(&r->chunk, 0, sizeof r->chunk);
    r->out_now.count = 0;
    r->out_after.count = 0;
    r->read_result_count = 0;
    raft__arena_reset(&r->ready_arena);
    if (r->role == RAFT_LEADER) {
        struct raft__progress *self = progress_find(r, r->id);
        if (self != NULL)
            self->match = raft__log_persisted_last(r);
        if (maybe_commit(r) && r->role == RAFT_LEADER)
            broadcast_append(r);
    }
    return r->halted;
}

/* ---- life cycle ---- */

/* Rebuild the configuration from the snapshot and the log's config entries. */
static int load_config(struct raft *r, const struct raft_snapshot_meta *snap)
{
    r->conf = snap->config;
    r->conf_index = snap->index;
    r->conf_prev = snap->config;
    r->conf_prev_index = snap->index;
    r->conf_applied = snap->config;
    uint64_t lo = snap->index + 1; /* entries before it are in the snapshot's config */
    uint64_t last = raft__log_last(r);
    enum { BATCH = 1024 };
    struct raft_entry *buf = ehr_malloc(BATCH * sizeof *buf);
    int err = 0;
    while (lo <= last && err == 0) {
        uint64_t hi = last + 1 - lo > BATCH ? lo + BATCH : last + 1;
        size_t got = 0;
        err = r->st.entries(r->st.ctx, lo, hi, UINT64_MAX, buf, BATCH, &got);
        if (err == 0 && got == 0)
            err = EHR_ECORRUPT;
        for (size_t i = 0; i < got && err == 0; i++) {
            if (buf[i].index != lo + i) {
                err = EHR_ECORRUPT;
                break;
            }
            if (buf[i].type != RAFT_ENTRY_CONFIG)
                continue;
            struct raft_config c;
            if (raft_config_decode(buf[i].data, buf[i].size, &c) != 0) {
                err = EHR_ECORRUPT;
                break;
            }
            config_entered(r, &c, buf[i].index);
            if (buf[i].index <= r->applied)
                r->conf_applied = c;
        }
        lo += got;
    }
    ehr_free(buf);
    return err;
}

int raft_create(struct raft **out, const struct raft_options *opt, const struct raft_storage *st)
{
    *out = NULL;
    int err = raft_options_validate(opt);
    if (err != 0)
        return err;
    if (st == NULL || st->hard_state == NULL || st->snapshot_meta == NULL ||
        st->snapshot_read == NULL || st->first_index == NULL || st->last_index == NULL ||
        st->term == NULL || st->entries == NULL)
        return EHR_EINVAL;
    struct raft *r = ehr_calloc(1, sizeof *r);
    r->opt = *opt;
    r->st = *st;
    r->id = opt->id;
    r->rng = opt->seed ^ (opt->id * 0x9e3779b97f4a7c15ULL);
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++) {
        r->progress[i].inflight_index = ehr_calloc(opt->inflight_max, sizeof(uint64_t));
        r->progress[i].inflight_bytes = ehr_calloc(opt->inflight_max, sizeof(uint64_t));
    }
    struct raft_hard_state hs;
    struct raft_snapshot_meta snap;
    uint64_t snap_size = 0;
    err = st->hard_state(st->ctx, &hs);
    if (err == 0)
        err = st->snapshot_meta(st->ctx, &snap, &snap_size);
    if (err != 0) {
        raft_destroy(r);
        return err;
    }
    r->u.offset = st->last_index(st->ctx) + 1;
    uint64_t first = st->first_index(st->ctx);
    uint64_t last = st->last_index(st->ctx);
    /* The storage must agree with itself before we trust it. */
    if (first == 0 || last + 1 < first || snap.index + 1 < first || snap.index > last ||
        (snap.index > 0 && snap.term == 0)) {
        raft_destroy(r);
        return EHR_ECORRUPT;
    }
    if (hs.commit < snap.index)
        hs.commit = snap.index; /* the snapshot holds only committed entries */
    if (hs.commit > last || (hs.vote != 0 && hs.term == 0) || hs.term > RAFT_TERM_MAX ||
        hs.restore_term > hs.term) {
        raft_destroy(r);
        return EHR_ECORRUPT;
    }
    /*
     * I1 against the log: our term is never below the term of an entry or
     * snapshot we hold. On disk it can be: the entries (or snapshot) of a
     * batch that raised the term are written before its hard state, and a
     * crash between them keeps the one and loses the other. Take the log's
     * term then, with no vote: that hard state was never durable, so nothing
     * of its term left this node (I5) and no vote of it was ever seen.
     * Restarted at the older term instead, the node would campaign below
     * its own last entry's term (a request every peer refuses). The
     * bootstrap entry (index 1, term 1) is the one exception: founding
     * members hold it at term 0, before any election.
     */
    uint64_t last_term = 0;
    err = st->term(st->ctx, last, &last_term);
    if (err != 0) {
        raft_destroy(r);
        return err;
    }
    if (last_term > RAFT_TERM_MAX) {
        raft_destroy(r);
        return EHR_ECORRUPT;
    }
    if (last > 1 && last_term > hs.term) {
        r->term = last_term; /* handed out in the first batch: hs_handed is older */
        r->vote = 0;
    } else {
        r->term = hs.term;
        r->vote = hs.vote;
    }
    r->commit = hs.commit;
    r->restore_term = hs.restore_term;
    r->hs_handed = hs;
    r->applied = opt->applied > snap.index ? opt->applied : snap.index;
    if (r->applied > r->commit) {
        raft_destroy(r);
        return EHR_EINVAL;
    }
    err = load_config(r, &snap);
    if (err != 0) {
        raft_destroy(r);
        return err;
    }
    r->role = RAFT_FOLLOWER;
    randomize_timeout(r);
    *out = r;
    return 0;
}

void raft_destroy(struct raft *r)
{
    if (r == NULL)
        return;
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++) {
        ehr_free(r->progress[i].inflight_index);
        ehr_free(r->progress[i].inflight_bytes);
    }
    raft__unstable_free(&r->u);
    raft__arena_free(&r->ready_arena);
    ehr_free(r->out_now.msgs);
    ehr_free(r->out_after.msgs);
    ehr_free(r->read_results);
    ehr_free(r->reads);
    ehr_free(r->committed_buf);
    ehr_free(r);
}

int raft_bootstrap_entry(const struct raft_config *config, uint8_t *buf, struct raft_entry *out)
{
    int size = raft_config_encode(config, buf);
    if (size < 0)
        return size;
    *out = (struct raft_entry){
        .term = 1, .index = 1, .type = RAFT_ENTRY_CONFIG, .size = (uint32_t)size, .data = buf};
    return 0;
}

/* ---- introspection ---- */

void raft_status_get(const struct raft *r, struct raft_status *out)
{
    memset(out, 0, sizeof *out);
    out->id = r->id;
    out->role = r->role;
    out->leader = r->leader;
    out->hard_state = hard_state_now(r);
    out->applied = r->applied;
    out->first_index = raft__log_first(r);
    out->last_index = raft__log_last(r);
    if (r->u.snap_pending) {
        out->snapshot_index = r->u.snap.index;
        out->snapshot_term = r->u.snap.term;
    } else {
        struct raft_snapshot_meta meta;
        uint64_t size = 0;
        if (r->st.snapshot_meta(r->st.ctx, &meta, &size) == 0) {
            out->snapshot_index = meta.index;
            out->snapshot_term = meta.term;
        }
    }
    out->config_index = r->conf_index;
    out->config = r->conf;
    out->transfer_target = r->transfer_target;
    out->reads_pending = r->reads_count;
    out->uncommitted_bytes = r->role == RAFT_LEADER ? uncommitted_bytes(r) : 0;
    out->halted = r->halted;
}

int raft_term_at(struct raft *r, uint64_t index, uint64_t *term)
{
    if (index > raft__log_last(r))
        return EHR_ENOTFOUND;
    return raft__log_term(r, index, term);
}

int raft_progress_get(const struct raft *r, raft_id id, struct raft_progress_info *out)
{
    if (r->role != RAFT_LEADER)
        return EHR_ENOTLEADER;
    for (uint32_t i = 0; i < r->progress_count; i++) {
        const struct raft__progress *pr = &r->progress[i];
        if (pr->id != id)
            continue;
        *out = (struct raft_progress_info){.match = pr->match,
                                           .next = pr->next,
                                           .state = pr->state,
                                           .inflight_count = pr->inflight_count,
                                           .inflight_bytes = pr->inflight_bytes_total,
                                           .voter = pr->voter};
        return 0;
    }
    return EHR_ENOTFOUND;
}

int raft_snapshot_meta_applied(struct raft *r, struct raft_snapshot_meta *out)
{
    if (r->applied == 0)
        return EHR_ENOTFOUND;
    memset(out, 0, sizeof *out);
    out->index = r->applied;
    int err = raft__log_term(r, r->applied, &out->term);
    if (err != 0)
        return err;
    out->config = r->conf_applied;
    return 0;
}

void raft_stats_get(const struct raft *r, struct raft_stats *out)
{
    *out = r->stats;
}
