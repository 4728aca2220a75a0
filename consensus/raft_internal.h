/*
 * raft_internal.h - what the consensus core's source files share: the
 * instance struct, the arena, the unstable log and the log view. Not part of
 * the public interface (raft.h); nothing outside consensus/ includes it.
 */
#ifndef EHR_RAFT_INTERNAL_H
#define EHR_RAFT_INTERNAL_H

#include "raft.h"

/*
 * Safety assertions. They stay on in release builds (EHR_ASSERT). In the
 * test-only builds with a deliberate bug (RAFT_TEST_BUGS), a failed assertion
 * is counted instead of aborting, so that the simulator can report it with
 * its seed and trace; see raft_test_soft_assert_count.
 */
#ifdef RAFT_TEST_BUGS
void raft__soft_assert_fail(const char *what, const char *file, int line);
#define RAFT_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            raft__soft_assert_fail(#cond, __FILE__, __LINE__);                                     \
    } while (0)
#else
#define RAFT_ASSERT(cond) EHR_ASSERT(cond)
#endif

/* ---- arena: bump allocation in blocks that never move, reset per batch ---- */

enum { RAFT__ARENA_BLOCK_BYTES = 256 * 1024, RAFT__ARENA_BLOCKS_KEPT = 8 };

struct raft__arena_block {
    struct raft__arena_block *next;
    size_t cap;
    size_t used;
    _Alignas(16) uint8_t data[];
};

struct raft__arena {
    struct raft__arena_block *first;
    struct raft__arena_block *cur;
};

/* Aligned (16) memory for `size` bytes, stable until raft__arena_reset. Never NULL. */
void *raft__arena_alloc(struct raft__arena *a, size_t size);
/* Forget every allocation; keep up to RAFT__ARENA_BLOCKS_KEPT standard blocks. */
void raft__arena_reset(struct raft__arena *a);
void raft__arena_free(struct raft__arena *a);

/* ---- the unstable log: entries not yet persisted ---- */

struct raft__unstable {
    uint64_t offset; /* index of entries[0]; storage entries >= offset are to be replaced */
    struct raft_entry *entries;
    size_t count;
    size_t cap;
    struct raft__arena arena; /* entry data */
    bool snap_pending;        /* a received snapshot replaces the whole persisted log */
    struct raft_snapshot_meta snap;
};

/* ---- per-member replication progress (leader only) ---- */

struct raft__progress {
    raft_id id;
    bool voter;
    enum raft_progress_state state;
    uint64_t match;
    uint64_t next;
    bool probe_sent;      /* PROBE: one append out, wait for its answer */
    bool recent_active;   /* heard from it since the last check-quorum round */
    uint64_t read_ack;    /* highest read-index round it confirmed */
    uint64_t sent_commit; /* commit index it can have learned from our appends */
    /* in-flight appends (REPLICATE): ring of last index and bytes */
    uint64_t *inflight_index;
    uint64_t *inflight_bytes;
    uint32_t inflight_start;
    uint32_t inflight_count;
    uint64_t inflight_bytes_total;
    /* SNAPSHOT state */
    uint64_t snap_index;
    uint64_t snap_term;
    uint64_t snap_size;
    uint64_t snap_offset; /* next byte the follower expects */
    bool snap_chunk_sent;
};

struct raft__pending_read {
    uint64_t request;
    uint64_t index;
    uint64_t round; /* 0 until this term's first entry commits */
};

struct raft__uncommitted_mark {
    uint64_t last_index;
    uint64_t proposed_total;
};

enum { RAFT__UNCOMMITTED_MARKS = 64 };

/* A growable array of messages (bounded by RAFT_OUTBOX_MAX). */
struct raft__outbox {
    struct raft_message *msgs;
    size_t count;
    size_t cap;
};

struct raft {
    struct raft_options opt;
    struct raft_storage st;
    raft_id id;
    int halted;

    /* persistent state (mirrors what is, or is about to be, durable) */
    uint64_t term;
    raft_id vote;
    uint64_t commit;
    uint64_t restore_term;            /* I14: non-zero while a restored node catches up */
    struct raft_hard_state hs_handed; /* last hard state handed to the caller */

    /* volatile */
    enum raft_role role;
    raft_id leader;
    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t election_timeout; /* randomized in [election_ticks, 2 * election_ticks) */
    uint64_t rng;
    uint64_t applied;

    /* configuration: the latest in the log and the one before it (committed) */
    struct raft_config conf;
    uint64_t conf_index;
    struct raft_config conf_prev;
    uint64_t conf_prev_index;
    struct raft_config conf_applied; /* as of `applied` */
    struct raft_config conf_applying;
    bool conf_applying_set;

    /* elections */
    raft_id votes_from[RAFT_MEMBERS_MAX];
    bool votes_granted[RAFT_MEMBERS_MAX];
    uint32_t votes_count;

    /* leader */
    struct raft__progress progress[RAFT_MEMBERS_MAX];
    uint32_t progress_count;
    uint64_t term_start_index; /* index of this term's empty entry */
    bool flush_needed;         /* proposals appended but not yet sent */
    uint64_t proposed_total;
    uint64_t committed_total;
    struct raft__uncommitted_mark marks[RAFT__UNCOMMITTED_MARKS];
    uint32_t marks_start;
    uint32_t marks_count;
    raft_id transfer_target;
    uint32_t transfer_elapsed;
    struct raft__pending_read *reads;
    uint32_t reads_start;
    uint32_t reads_count;
    uint64_t read_round;

    /* follower: snapshot being received */
    bool recv_active;
    struct raft_snapshot_meta recv_meta;
    uint64_t recv_offset;

    /* the log */
    struct raft__unstable u;

    /* the batch being built / handed out */
    struct raft__arena ready_arena;
    struct raft__outbox out_now;
    struct raft__outbox out_after;
    struct raft_snapshot_chunk chunk;
    bool chunk_pending;
    struct raft_read_result *read_results;
    size_t read_result_count;
    size_t read_result_cap;
    bool ready_out;
    size_t handed_entry_count;
    uint64_t handed_apply_to;
    bool handed_install;
    struct raft_entry *committed_buf;
    size_t committed_cap;

    struct raft_stats stats;
};

/* ---- log view (raft_log.c): storage plus the unstable suffix ---- */

uint64_t raft__log_first(const struct raft *r);
uint64_t raft__log_last(const struct raft *r);
uint64_t raft__log_last_term(struct raft *r);
/* Index of the last entry known durable (the leader counts only these). */
uint64_t raft__log_persisted_last(const struct raft *r);
/* 0 and *term; EHR_ENOTFOUND if compacted or beyond the end; a storage error. */
int raft__log_term(struct raft *r, uint64_t index, uint64_t *term);
/* True if the log holds `index` with `term`. */
bool raft__log_match(struct raft *r, uint64_t index, uint64_t term);
/*
 * Entries [lo, hi) of the view into out (capacity cap), bytes bounded as in
 * struct raft_storage. Data from storage is copied into the ready arena
 * unless the storage keeps pointers stable. Returns 0, EHR_ENOTFOUND
 * (compacted) or a storage error.
 */
int raft__log_entries(struct raft *r, uint64_t lo, uint64_t hi, uint64_t bytes_max,
                      struct raft_entry *out, size_t cap, size_t *count);
/* Append to the unstable log (data copied), replacing from entries[0].index on. */
void raft__log_append(struct raft *r, const struct raft_entry *entries, size_t count);
/* Largest index <= index whose term is <= term, and that term (0 if unknown). */
void raft__log_find_conflict_by_term(struct raft *r, uint64_t index, uint64_t term,
                                     uint64_t *out_index, uint64_t *out_term);
void raft__unstable_free(struct raft__unstable *u);

/* Stop the instance for good: a storage error it cannot recover from. */
void raft__halt(struct raft *r, int err);

#endif /* EHR_RAFT_INTERNAL_H */
