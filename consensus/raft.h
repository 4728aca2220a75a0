/*
 * raft.h - the consensus core: a Raft state machine with no I/O, no clock and
 * no randomness of its own.
 *
 * The caller feeds it inputs (raft_tick, raft_step with a received message,
 * raft_propose, raft_read_index, raft_propose_config, raft_transfer_leadership)
 * and collects a batch of work with raft_ready_get: hard state and entries to
 * persist, messages to send, committed entries to apply, a snapshot chunk to
 * stage or install, read-index results. It acknowledges the batch with
 * raft_ready_advance once it has done all of it, in this order:
 *
 *   1. send ready.messages (these may go out before or while persisting);
 *   2. persist ready.snapshot (stage the chunk; install it when `install`),
 *      then ready.entries (an entry whose index is already in the log
 *      replaces it and everything after it), then ready.hard_state (if
 *      changed): in one atomic write, or in this order so that a torn write
 *      never leaves a commit index beyond the log; durably (fsync) before
 *      step 3. (In this order a torn write may keep entries or a snapshot
 *      of a term whose hard state it lost: raft_create takes that term);
 *   3. send ready.messages_after_persist (votes and acknowledgements: sending
 *      one before its cause is durable can elect two leaders in one term or
 *      lose a committed entry);
 *   4. apply ready.committed in order, answer ready.reads;
 *   5. raft_ready_advance.
 * No other raft_* input may be called between raft_ready_get and
 * raft_ready_advance.
 *
 * The core reads the log through struct raft_storage (read-only for the
 * core); the caller writes the storage in step 2. raft_mem_storage is the
 * in-memory implementation; the node's LMDB one lives with the node.
 *
 * Not here: encoding of messages on the wire (the node does that), timers
 * (the caller calls raft_tick at a fixed period), threads (an instance is
 * used by one thread at a time; many instances may live in one process).
 * See README.md in this folder for the state machine and its invariants.
 */
#ifndef EHR_RAFT_H
#define EHR_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef uint64_t raft_id; /* a member's id; 0 means "none" */

/* ---- limits (hard bounds; the options below must lie within them) ---- */

enum {
    RAFT_MEMBERS_MAX = 16,             /* voters + learners in one configuration */
    RAFT_ELECTION_TICKS_MIN = 3,       /* base election timeout, in ticks */
    RAFT_ELECTION_TICKS_MAX = 100000,  /* */
    RAFT_APPEND_ENTRIES_MAX = 65536,   /* entries in one append message */
    RAFT_INFLIGHT_MAX = 4096,          /* unacknowledged appends per follower */
    RAFT_READS_PENDING_MAX = 65536,    /* read-index requests waiting */
    RAFT_OUTBOX_MAX = 65536,           /* messages held for one ready batch */
    RAFT_ENTRY_OVERHEAD_BYTES = 64,    /* what one entry costs beyond its data */
    RAFT_SNAPSHOT_CHUNK_BYTES_MIN = 16 /* */
};

#define RAFT_PROPOSAL_BYTES_MAX ((uint32_t)64 << 20)       /* one entry's data */
#define RAFT_APPEND_BYTES_MAX ((uint64_t)256 << 20)        /* one append message */
#define RAFT_INFLIGHT_BYTES_MAX ((uint64_t)4 << 30)        /* per follower */
#define RAFT_UNCOMMITTED_BYTES_MAX ((uint64_t)16 << 30)    /* leader's pending log */
#define RAFT_SNAPSHOT_CHUNK_BYTES_MAX ((uint32_t)64 << 20) /* one snapshot chunk */
#define RAFT_APPLY_BYTES_MAX ((uint64_t)1 << 30)           /* committed data per ready */
#define RAFT_CONFIG_ENCODED_BYTES_MAX (4 + 8 * RAFT_MEMBERS_MAX)
/* Highest term: a message claiming more is refused, a node there no longer
 * campaigns, so a term never wraps (2^62 elections are never reached). */
#define RAFT_TERM_MAX ((uint64_t)1 << 62)

/* ---- log entries, hard state, configuration ---- */

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 1, /* opaque application bytes (a block proposal) */
    RAFT_ENTRY_EMPTY = 2,  /* appended by every new leader; no data */
    RAFT_ENTRY_CONFIG = 3  /* data: a raft_config_encode()d configuration */
};

/* One log entry. `data` is borrowed: see each function for how long it lives. */
struct raft_entry {
    uint64_t term;
    uint64_t index;
    enum raft_entry_type type;
    uint32_t size;
    const uint8_t *data;
};

/* What must survive a crash besides the log: written in ready step 2. */
struct raft_hard_state {
    uint64_t term;   /* current term, never decreases */
    raft_id vote;    /* whom this node voted for in `term`, 0 if nobody */
    uint64_t commit; /* highest index known committed, never decreases */
    /*
     * 0, or the node was restored from a backup (I14, README.md): it has
     * forgotten entries it once acknowledged, so it neither votes nor
     * campaigns until it holds, committed, an entry of this term or a later
     * one. Set only by whoever restores the node's storage (a term above
     * every term the node knew, and its `term` at least this); the core
     * clears it, never sets it.
     */
    uint64_t restore_term;
};

/* A cluster configuration: voters decide, learners only receive the committed log (I13). */
struct raft_config {
    uint32_t voter_count;
    uint32_t learner_count;
    raft_id voters[RAFT_MEMBERS_MAX];
    raft_id learners[RAFT_MEMBERS_MAX];
};

/* A snapshot: the application's state after applying every entry up to index. */
struct raft_snapshot_meta {
    uint64_t index; /* 0: no snapshot */
    uint64_t term;
    struct raft_config config; /* the configuration in force at index */
};

/* ---- storage: how the core reads the persisted log ---- */

/*
 * The log as persisted, read-only for the core. The log holds the entries
 * [first_index, last_index]; the term of entry first_index-1 is known too
 * (it was compacted away). The latest snapshot's index lies in
 * [first_index-1, last_index]. An empty log has last_index == first_index-1. Every function returns
 * 0 or a negative error; a storage error other than the documented ones makes the core halt (every
 * later call returns that error): a node that cannot read its log must stop.
 */
struct raft_storage {
    void *ctx;
    /* The persisted hard state (all zero for a new node). */
    int (*hard_state)(void *ctx, struct raft_hard_state *out);
    /* The latest snapshot's meta (index 0 if none) and its data size in bytes. */
    int (*snapshot_meta)(void *ctx, struct raft_snapshot_meta *out, uint64_t *size);
    /* Up to `cap` bytes of the latest snapshot's data from `offset` into buf. */
    int (*snapshot_read)(void *ctx, uint64_t offset, uint8_t *buf, size_t cap, size_t *read);
    uint64_t (*first_index)(void *ctx);
    uint64_t (*last_index)(void *ctx);
    /* Term of entry `index` for index in [first_index-1, last_index];
     * EHR_ENOTFOUND outside it. */
    int (*term)(void *ctx, uint64_t index, uint64_t *term);
    /*
     * Entries [lo, hi) into out[0..cap), stopping before the total data size
     * would pass bytes_max (but always at least one entry). lo >= first_index,
     * hi <= last_index + 1, lo < hi. Data pointers stay valid until the next
     * call that changes the storage, or, when stable_pointers is true, until
     * the entry is compacted away.
     */
    int (*entries)(void *ctx, uint64_t lo, uint64_t hi, uint64_t bytes_max, struct raft_entry *out,
                   size_t cap, size_t *count);
    bool stable_pointers;
};

/* ---- messages ---- */

enum raft_message_type {
    RAFT_MSG_APPEND = 1,     /* leader -> follower: entries after (index, log_term) */
    RAFT_MSG_APPEND_RESP,    /* match up to index, or reject with a hint */
    RAFT_MSG_PREVOTE,        /* would you vote for me in `term`? (term not adopted) */
    RAFT_MSG_PREVOTE_RESP,   /* */
    RAFT_MSG_VOTE,           /* vote for me in `term` */
    RAFT_MSG_VOTE_RESP,      /* */
    RAFT_MSG_HEARTBEAT,      /* leader -> follower: commit, read-index round */
    RAFT_MSG_HEARTBEAT_RESP, /* echoes the read-index round */
    RAFT_MSG_SNAPSHOT,       /* leader -> follower: one snapshot chunk */
    RAFT_MSG_SNAPSHOT_RESP,  /* next offset the follower expects */
    RAFT_MSG_TIMEOUT_NOW,    /* leader -> transfer target: campaign now */
    RAFT_MSG_TYPE_LAST_      /* not a type */
};

/*
 * One message. Fields that a type does not use are zero. Pointers are
 * borrowed: in a ready batch they live until raft_ready_advance; in raft_step
 * they need only live for the call (the core copies what it keeps).
 */
struct raft_message {
    enum raft_message_type type;
    raft_id from;
    raft_id to;
    uint64_t term;
    /* APPEND: index of the entry before `entries`; APPEND_RESP: last index
     * now matching (accepted) or the APPEND's index (rejected); (PRE)VOTE:
     * candidate's last index; SNAPSHOT(_RESP): the snapshot's index. */
    uint64_t index;
    uint64_t log_term;    /* APPEND: term at index; (PRE)VOTE: candidate's last term */
    uint64_t commit;      /* APPEND, HEARTBEAT: leader's commit index for this follower */
    uint64_t hint_index;  /* APPEND_RESP rejected: follower's best guess of a match */
    uint64_t hint_term;   /* APPEND_RESP rejected: term at hint_index */
    uint64_t context;     /* HEARTBEAT(_RESP): read-index round */
    bool reject;          /* *_RESP */
    bool transfer;        /* VOTE: campaign started by a leadership transfer */
    uint32_t entry_count; /* APPEND: up to RAFT_APPEND_ENTRIES_MAX */
    const struct raft_entry *entries;
    /* SNAPSHOT: the chunk [offset, offset+size) of the snapshot `snapshot`,
     * done on the last one; SNAPSHOT_RESP: offset = next byte expected. */
    const struct raft_snapshot_meta *snapshot;
    uint64_t offset;
    uint32_t size;
    bool done;
    const uint8_t *data;
};

/* ---- options ---- */

struct raft_options {
    raft_id id;
    uint64_t seed;                  /* for election timeouts; differ per node */
    uint32_t election_ticks;        /* base timeout T: elections start after [T, 2T) */
    uint32_t heartbeat_ticks;       /* 1 <= heartbeat_ticks < election_ticks */
    bool pre_vote;                  /* ask before disturbing the cluster */
    bool check_quorum;              /* leader steps down without a quorum's contact */
    uint32_t append_entries_max;    /* 1..RAFT_APPEND_ENTRIES_MAX per message */
    uint64_t append_bytes_max;      /* 1..RAFT_APPEND_BYTES_MAX per message */
    uint32_t inflight_max;          /* 1..RAFT_INFLIGHT_MAX appends per follower */
    uint64_t inflight_bytes_max;    /* 1..RAFT_INFLIGHT_BYTES_MAX per follower */
    uint32_t proposal_bytes_max;    /* 0..RAFT_PROPOSAL_BYTES_MAX per proposal */
    uint64_t uncommitted_bytes_max; /* 1..RAFT_UNCOMMITTED_BYTES_MAX */
    uint32_t snapshot_chunk_bytes;  /* RAFT_SNAPSHOT_CHUNK_BYTES_MIN..._MAX */
    uint32_t reads_pending_max;     /* 1..RAFT_READS_PENDING_MAX */
    uint64_t apply_bytes_max;       /* 1..RAFT_APPLY_BYTES_MAX committed bytes per ready */
    uint64_t promote_lag_max;       /* a learner this close to the leader may be promoted */
    uint64_t applied;               /* index the application has applied (at restart) */
};

/* Fill `opt` with production defaults (id and seed zero: the caller sets them). */
void raft_options_default(struct raft_options *opt);

/* 0 if every option lies in its range, EHR_EINVAL otherwise. */
int raft_options_validate(const struct raft_options *opt);

/* ---- life cycle ---- */

struct raft;

/*
 * Create an instance from the persisted state in `storage` (copied; its ctx
 * must outlive the instance). If the log's last entry (or the snapshot)
 * has a term above the hard state's, a crash kept the log of a batch but
 * not its hard state: the instance starts at that term with no vote, and
 * hands that hard state out in its first batch. Returns 0 and *out, or
 * EHR_EINVAL (bad options), EHR_ECORRUPT (the storage contradicts itself:
 * commit beyond the log, a term past RAFT_TERM_MAX, a configuration entry
 * that does not decode) or a storage error.
 * The instance is owned by the caller; free it with raft_destroy.
 */
int raft_create(struct raft **out, const struct raft_options *opt, const struct raft_storage *st);
void raft_destroy(struct raft *r);

/*
 * Bootstrap: the first entry of a new cluster's log, identical on every
 * founding member: a configuration entry at index 1, term 1. `buf` must hold
 * RAFT_CONFIG_ENCODED_BYTES_MAX bytes and outlive *out. Returns 0 or
 * EHR_EINVAL (an invalid configuration).
 */
int raft_bootstrap_entry(const struct raft_config *config, uint8_t *buf, struct raft_entry *out);

/* ---- inputs ---- */

/* One unit of time has passed. Returns 0 or the halting error. */
int raft_tick(struct raft *r);

/*
 * A message received from a peer. Returns 0 (also when the message is stale
 * and ignored); EHR_EPROTO when it is malformed (wrong recipient, bad
 * lengths, entries out of order, over a limit: nothing changes) or asks what
 * no correct peer asks (commit past our log, drop a configuration known
 * committed: the message is ignored, after any newer term in it was taken);
 * or the halting error. The instance halts with EHR_EDIVERGED when a leader
 * contradicts an entry it knows committed: its state and the cluster's
 * differ, and the node must stop rather than serve either.
 */
int raft_step(struct raft *r, const struct raft_message *m);

/*
 * Propose `size` bytes (copied) as a normal entry. Returns 0 when appended to
 * the leader's log (not yet committed: watch ready.committed), EHR_ENOTLEADER,
 * EHR_ETOOBIG (over proposal_bytes_max), EHR_EAGAIN (the uncommitted log is
 * over uncommitted_bytes_max, or a leadership transfer is under way).
 */
int raft_propose(struct raft *r, const uint8_t *data, uint32_t size);

enum raft_config_op {
    RAFT_CONFIG_ADD_LEARNER = 1, /* a new node starts as a learner */
    RAFT_CONFIG_PROMOTE,         /* a caught-up learner becomes a voter */
    RAFT_CONFIG_REMOVE           /* a voter (the leader too) or learner leaves */
};

/*
 * Propose one membership change. Returns 0, EHR_ENOTLEADER, EHR_EAGAIN (a
 * change is still uncommitted, this term's first entry is not committed yet,
 * a transfer is under way, or the learner to promote has not caught up),
 * EHR_EINVAL (the change does not fit the configuration: unknown or
 * duplicate id, last voter), EHR_EFULL (RAFT_MEMBERS_MAX reached).
 */
int raft_propose_config(struct raft *r, enum raft_config_op op, raft_id id);

/*
 * Hand leadership to voter `target`: once its log matches the leader's, it is
 * told to campaign at once. Proposals are refused meanwhile; after
 * election_ticks without success the transfer is abandoned. Returns 0,
 * EHR_ENOTLEADER, EHR_EINVAL (not a voter, or this node), EHR_EAGAIN (another
 * transfer is under way).
 */
int raft_transfer_leadership(struct raft *r, raft_id target);

/*
 * Linearizable read: once a quorum confirms this node still leads, a
 * raft_read_result {request, index} appears in a ready batch; the caller may
 * serve the read once it has applied `index`. Returns 0, EHR_ENOTLEADER,
 * EHR_EAGAIN (reads_pending_max requests waiting, or a transfer). A pending
 * read whose leader steps down comes back with err = EHR_ENOTLEADER.
 */
int raft_read_index(struct raft *r, uint64_t request);

/* ---- the ready batch ---- */

/* A received snapshot chunk to stage; install the staged snapshot if `install`. */
struct raft_snapshot_chunk {
    struct raft_snapshot_meta meta;
    uint64_t offset;
    uint32_t size;
    bool done;    /* last chunk: the staged snapshot is complete */
    bool install; /* done, and the log must be replaced by it (else discard it) */
    const uint8_t *data;
};

struct raft_read_result {
    uint64_t request;
    uint64_t index; /* serve once applied >= index */
    int err;        /* 0 or EHR_ENOTLEADER */
};

enum raft_role { RAFT_FOLLOWER = 0, RAFT_PRE_CANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

/* All pointers live until raft_ready_advance. See the order at the top. */
struct raft_ready {
    bool hard_state_changed;
    struct raft_hard_state hard_state;
    const struct raft_snapshot_chunk *snapshot; /* NULL or one chunk */
    const struct raft_entry *entries;           /* to persist, consecutive */
    size_t entry_count;
    const struct raft_message *messages; /* may be sent before persisting */
    size_t message_count;
    const struct raft_message *messages_after_persist; /* only after persisting */
    size_t message_after_persist_count;
    const struct raft_entry *committed; /* to apply, consecutive, in order */
    size_t committed_count;
    const struct raft_read_result *reads;
    size_t read_count;
    enum raft_role role; /* current role and leader, for the application */
    raft_id leader;
};

/* True if raft_ready_get would return any work. */
bool raft_ready_pending(const struct raft *r);

/*
 * Collect the pending work into *rd (cleared first; possibly empty). Returns
 * 0, EHR_EINVAL if a batch is already out, or the halting error.
 */
int raft_ready_get(struct raft *r, struct raft_ready *rd);

/*
 * The caller has done everything the last batch asked (see the top). Checks
 * that the storage now holds what was to be persisted (EHR_ASSERT: a caller
 * that skips persisting must not run). Returns 0 or EHR_EINVAL (no batch out).
 */
int raft_ready_advance(struct raft *r);

/* ---- introspection (for the node's status, tests and the simulator) ---- */

struct raft_status {
    raft_id id;
    enum raft_role role;
    raft_id leader;
    struct raft_hard_state hard_state;
    uint64_t applied;
    uint64_t first_index; /* including entries not yet persisted */
    uint64_t last_index;
    uint64_t snapshot_index; /* the latest snapshot (the log may reach below it) */
    uint64_t snapshot_term;
    uint64_t config_index; /* index of the configuration in force (0: bootstrap/snapshot) */
    struct raft_config config;
    raft_id transfer_target; /* 0: no transfer under way */
    uint32_t reads_pending;
    uint64_t uncommitted_bytes;
    int halted; /* 0 or the error that stopped the instance */
};

void raft_status_get(const struct raft *r, struct raft_status *out);

/* Term of the entry at `index` in this node's log (persisted or not).
 * Returns 0, EHR_ENOTFOUND (compacted or beyond the end) or a storage error. */
int raft_term_at(struct raft *r, uint64_t index, uint64_t *term);

enum raft_progress_state {
    RAFT_PROGRESS_PROBE = 0,
    RAFT_PROGRESS_REPLICATE,
    RAFT_PROGRESS_SNAPSHOT
};

struct raft_progress_info {
    uint64_t match;
    uint64_t next;
    enum raft_progress_state state;
    uint32_t inflight_count;
    uint64_t inflight_bytes;
    bool voter;
};

/* The leader's view of member `id`. Returns 0, EHR_ENOTLEADER or EHR_ENOTFOUND. */
int raft_progress_get(const struct raft *r, raft_id id, struct raft_progress_info *out);

/* The meta a snapshot taken now (at the applied index) must carry. Returns 0,
 * or EHR_ENOTFOUND if nothing has been applied yet. */
int raft_snapshot_meta_applied(struct raft *r, struct raft_snapshot_meta *out);

/* Counters since creation, for metrics. */
struct raft_stats {
    uint64_t elections;        /* campaigns started (pre-vote rounds excluded) */
    uint64_t leaderships;      /* times this node became leader */
    uint64_t messages_dropped; /* outbox full */
    uint64_t appends_rejected; /* appends this node refused (log mismatch) */
    uint64_t snapshots_sent;   /* snapshot transfers started */
    uint64_t snapshots_installed;
    uint64_t transfers_aborted;  /* leadership transfers that timed out */
    uint64_t quorum_lost;        /* check-quorum step-downs */
    uint64_t restores_completed; /* I14: restore_term cleared, this node votes again */
};

void raft_stats_get(const struct raft *r, struct raft_stats *out);

const char *raft_role_name(enum raft_role role);
const char *raft_message_type_name(enum raft_message_type type);

/* ---- configuration helpers ---- */

bool raft_config_is_voter(const struct raft_config *c, raft_id id);
bool raft_config_is_learner(const struct raft_config *c, raft_id id);

/*
 * Encoded configuration (the data of a RAFT_ENTRY_CONFIG entry):
 * [version u8 = 1][voter_count u8][learner_count u8][reserved u8]
 * [voters u64 LE...][learners u64 LE...]. Encode returns the size written
 * (buf holds RAFT_CONFIG_ENCODED_BYTES_MAX) or EHR_EINVAL for an invalid
 * configuration (ids zero or repeated, no voter, over RAFT_MEMBERS_MAX).
 * Decode returns 0, EHR_EVERSION or EHR_EINVAL.
 */
int raft_config_encode(const struct raft_config *c, uint8_t *buf);
int raft_config_decode(const uint8_t *buf, size_t size, struct raft_config *out);

/* ---- persisted record forms with checksums (raft_codec.c) ---- */

/* CRC32C (Castagnoli), continuing from `crc` (0 to start). */
uint32_t raft_crc32c(uint32_t crc, const uint8_t *data, size_t size);

enum {
    RAFT_ENTRY_RECORD_HEADER_BYTES = 1 + 1 + 8 + 8 + 4, /* version type term index size */
    RAFT_RECORD_CRC_BYTES = 4,
    /* at most: a hard state without restore_term is written in the older,
     * shorter form (1 + 8 + 8 + 8 + 4), which every version reads */
    RAFT_HARD_STATE_RECORD_BYTES = 1 + 8 + 8 + 8 + 8 + 4,
    RAFT_SNAPSHOT_META_RECORD_BYTES = 1 + 8 + 8 + RAFT_CONFIG_ENCODED_BYTES_MAX + 4
};

/*
 * Stored forms, each ending in a CRC32C of everything before it, so that a
 * storage layer can tell a flipped bit from good data. Sizes: an entry takes
 * RAFT_ENTRY_RECORD_HEADER_BYTES + size + RAFT_RECORD_CRC_BYTES. Encoders
 * return the size written or EHR_ETOOBIG (cap too small) / EHR_EINVAL.
 * Decoders return 0, EHR_ETRUNCATED, EHR_ECORRUPT (checksum), EHR_EVERSION
 * or EHR_EINVAL; a decoded entry's data points into buf.
 */
int raft_entry_record_encode(const struct raft_entry *e, uint8_t *buf, size_t cap);
int raft_entry_record_decode(const uint8_t *buf, size_t size, struct raft_entry *out);
int raft_hard_state_record_encode(const struct raft_hard_state *hs, uint8_t *buf, size_t cap);
int raft_hard_state_record_decode(const uint8_t *buf, size_t size, struct raft_hard_state *out);
int raft_snapshot_meta_record_encode(const struct raft_snapshot_meta *m, uint8_t *buf, size_t cap);
int raft_snapshot_meta_record_decode(const uint8_t *buf, size_t size,
                                     struct raft_snapshot_meta *out);

/* ---- the in-memory storage (raft_mem_storage.c) ---- */

struct raft_mem_storage;

/* A new, empty storage. stable_pointers: see struct raft_storage. Never fails. */
struct raft_mem_storage *raft_mem_storage_create(bool stable_pointers);
void raft_mem_storage_destroy(struct raft_mem_storage *ms);

/* The read interface for raft_create (ctx = ms). */
void raft_mem_storage_interface(struct raft_mem_storage *ms, struct raft_storage *out);

void raft_mem_storage_set_hard_state(struct raft_mem_storage *ms, const struct raft_hard_state *hs);

/*
 * Append entries[0..count) (copied), replacing the entry at entries[0].index
 * and all after it. Returns 0 or EHR_EINVAL (not consecutive, a gap after the
 * log, or below first_index).
 */
int raft_mem_storage_append(struct raft_mem_storage *ms, const struct raft_entry *entries,
                            size_t count);

/* Stage a received snapshot chunk (offset 0 starts over). EHR_EINVAL: out of order. */
int raft_mem_storage_stage_chunk(struct raft_mem_storage *ms, uint64_t offset, const uint8_t *data,
                                 uint32_t size);

/* Install the staged snapshot: the log becomes empty after meta->index. */
int raft_mem_storage_install_staged(struct raft_mem_storage *ms,
                                    const struct raft_snapshot_meta *meta);

/*
 * Record a snapshot the application took at meta->index (in the log, not
 * below the current snapshot) and drop the log up to compact_index (<=
 * meta->index; keeping a few entries before the snapshot spares a slightly
 * lagging follower a whole snapshot). Returns 0 or EHR_EINVAL.
 */
int raft_mem_storage_snapshot(struct raft_mem_storage *ms, const struct raft_snapshot_meta *meta,
                              const uint8_t *data, uint64_t size, uint64_t compact_index);

/* The latest snapshot's data (borrowed until the next change) and its size. */
const uint8_t *raft_mem_storage_snapshot_data(const struct raft_mem_storage *ms, uint64_t *size);

/*
 * Step 2 of the ready protocol against this storage: stage (and install)
 * the snapshot chunk, append the entries, set the hard state. Returns 0 or
 * the first error (nothing after it is done).
 */
int raft_mem_storage_persist(struct raft_mem_storage *ms, const struct raft_ready *rd);

#ifdef RAFT_TEST_BUGS
/*
 * Test-only builds with a deliberate bug: safety assertions are counted here
 * instead of aborting. Returns the count and the first failed condition.
 */
unsigned long raft_test_soft_assert_count(const char **first);
#endif

#endif /* EHR_RAFT_H */
