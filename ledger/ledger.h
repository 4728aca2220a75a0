/*
 * ledger.h - the node's ledger store, in LMDB: two environments per data
 * directory. The main one holds the blocks, the write log (each block's
 * world-state writes), the chain info and tip, and the Raft log with its
 * hard state and snapshot meta (raftlog.c: records this module stores but
 * does not interpret). The derived one holds the tx index and the world
 * state, brought up to date by background checkpoints, with an in-memory
 * overlay answering for the blocks above the checkpoint. Also: lookups by
 * height, hash, key and prefix; ledger_verify over a whole ledger; snapshots
 * of the store (create, inspect, install).
 *
 * The formats it stores (transactions, blocks, genesis, limits) are in
 * ledger_format.h, a library of their own without LMDB.
 *
 * Not here: what a transaction means (contracts/ applies it and produces
 * the state writes this module stores), consensus (consensus/ decides which
 * block comes next).
 *
 * Errors: 0 on success, a negative EHR_E* code (common.h) or -errno. Every
 * function that can fail takes an optional last argument `ehr_diag *diag`
 * (NULL: no message wanted): on failure it writes one line there saying
 * what failed, and nothing on success (docs/DESIGN.md, "Errors").
 * ledger_verify says what it found in its report instead. Nothing here
 * prints: the caller decides what a person sees.
 *
 * Memory: functions that return bytes return an ehr_malloc'd copy the caller
 * frees with ehr_free.
 */
#ifndef EHR_LEDGER_H
#define EHR_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "ledger_format.h"

/* ---- The store ---- */

typedef struct ledger ledger;

enum ledger_sync_mode {
    /* Every append is on disk when it returns (LMDB's default: data, then
     * meta page, each followed by fdatasync). */
    LEDGER_SYNC_DURABLE = 0,
    /* No fdatasync (MDB_NOSYNC): survives a process crash, but an OS crash
     * or power loss may lose recent appends or corrupt the environment. Only
     * for throwaway ledgers (tests, bulk imports re-done on failure). */
    LEDGER_SYNC_NONE = 1,
};

enum {
    LEDGER_MAP_BYTES_DEFAULT = 0, /* see ledger_options.map_bytes */
    LEDGER_READERS_MAX_DEFAULT = 126,
    LEDGER_READERS_MAX = 4096,
    LEDGER_SCAN_COUNT_MAX = 10000,
    /* The overlay: blocks on the ledger whose tx-index rows and state
     * writes are not yet in the derived tables (see "The write path" in
     * README.md). An append waits (back-pressure) while the overlay holds
     * LEDGER_OVERLAY_BLOCKS_MAX blocks or a block would take it over
     * LEDGER_OVERLAY_BYTES_MAX bytes of memory; one block always fits. */
    LEDGER_OVERLAY_BLOCKS_MAX = 1024,
    LEDGER_OVERLAY_BYTES_MAX = 256 * 1024 * 1024,
    /* A checkpoint starts once this many blocks wait, or the oldest has
     * waited LEDGER_CHECKPOINT_DELAY_MS, or an append waits for room. */
    LEDGER_CHECKPOINT_BLOCKS_MIN = 64,
    LEDGER_CHECKPOINT_DELAY_MS = 500,
};
/* The default map: address space reserved, not disk used (the file grows
 * with the data). 64 GiB holds hundreds of millions of transactions. */
#define LEDGER_MAP_BYTES_DEFAULT_VALUE (64ull << 30)
#define LEDGER_MAP_BYTES_MIN (256ull << 10)
#define LEDGER_MAP_BYTES_MAX (1ull << 44)

typedef struct ledger_options {
    uint64_t map_bytes; /* 0: LEDGER_MAP_BYTES_DEFAULT_VALUE; else MIN..MAX */
    enum ledger_sync_mode sync;
    uint32_t readers_max; /* 0: LEDGER_READERS_MAX_DEFAULT; else 1..LEDGER_READERS_MAX */
    bool read_only;       /* open an existing ledger for reading only */
} ledger_options;

/*
 * Open (creating DIR with mode 0700 and an empty ledger in it if needed,
 * unless read-only) the ledger in DIR: the main environment (data.mdb) and
 * the derived one (derived.mdb: tx index, world state). The overlay is
 * rebuilt from the blocks and write log above the derived tables'
 * checkpoint (at most LEDGER_OVERLAY_BLOCKS_MAX blocks; writable, a longer
 * gap is checkpointed in steps, and derived tables that are missing, of
 * another chain or ahead of the blocks are rebuilt). Writable, a checkpoint
 * thread starts. Read-only, each read first catches the overlay up with the
 * files, so answers follow a writer in another process, a little behind it
 * at most (a block whose commit is racing the read may not be seen yet).
 * OPTIONS may be NULL for the defaults
 * (durable). *OUT is owned by the caller: ledger_close it. Do not use a
 * ledger across fork(): open it again in the child. Open a directory once
 * per process at a time (an LMDB rule); share the handle between threads.
 * Returns 0; EHR_EINVAL (bad option), EHR_EVERSION (another format),
 * EHR_ECORRUPT, EHR_ENOTFOUND (read-only and no ledger, or no derived
 * tables), EHR_EAGAIN (read-only and the derived tables too far behind;
 * writable and another process has the ledger open writable),
 * -errno.
 */
int ledger_open(const char *dir, const ledger_options *options, ledger **out, ehr_diag *diag);

/* Writable: bring the derived tables up to the tip (ledger_checkpoint;
 * a failure is logged, and the next open replays), stop the checkpoint
 * thread. Then close both environments. */
void ledger_close(ledger *l);

/*
 * Write block 0 derived from GENESIS (see ledger_genesis_block_build), the
 * chain info, and block 0's state writes: the emergency-access policy
 * (LEDGER_EMERGENCY_KEY) and the founding members (LEDGER_MEMBER_KEY_PREFIX
 * keys), in one write transaction. Returns 0; EHR_EEXIST if the ledger already has a
 * chain; a ledger_genesis_parse error; EHR_EFULL.
 */
int ledger_genesis_init(ledger *l, const uint8_t *genesis, size_t len, ehr_diag *diag);

typedef struct ledger_tip {
    uint64_t height;
    uint8_t hash[EHR_HASH_BYTES];
    uint64_t time_ms;
    uint64_t applied_index;
    uint64_t tx_count; /* transactions in blocks 0..height */
} ledger_tip;

/* The last block. Returns 0, or EHR_ENOTFOUND before ledger_genesis_init. */
int ledger_tip_get(ledger *l, ledger_tip *out, ehr_diag *diag);

typedef struct ledger_chain {
    uint32_t format_version;
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1];
    uint8_t genesis_hash[EHR_HASH_BYTES];
    uint8_t genesis_block_hash[EHR_HASH_BYTES];
} ledger_chain;

/* Which chain this is. Returns 0, or EHR_ENOTFOUND before genesis. */
int ledger_chain_get(ledger *l, ledger_chain *out, ehr_diag *diag);

/* An append request: everything that becomes durable with one block. */
typedef struct ledger_append {
    const uint8_t *block;
    size_t block_len;
    /* NULL, or BLOCK already parsed by ledger_block_parse from these very
     * bytes (the caller keeps and releases it): not parsed again. */
    const ledger_block_view *view;
    /* NULL, or the block's tx_count transaction hashes in order, computed
     * when the transactions were admitted (so they are not hashed again).
     * They must be the SHA-256 of each body: debug builds check it;
     * ledger_verify recomputes them. */
    const uint8_t (*tx_hashes)[EHR_HASH_BYTES];
    /* The world-state writes of the block's transactions, applied in order
     * (a later write to the same key wins). */
    const ledger_state_write *writes;
    size_t write_count;
    /* Each transaction's result, in block order: result_count must be the
     * block's tx_count, each a serialized TxResult (tx.proto) of 0..
     * EHR_TX_RESULT_BYTES_MAX bytes (0 bytes: OK with nothing else). The
     * ledger stores them as they are (contracts/ computes and interprets
     * them) in the block's write-log record and its tx-index rows. */
    const ledger_bytes *results;
    size_t result_count;
    /* The Raft index this block's entry was applied at: never below the
     * current applied index. */
    uint64_t applied_index;
} ledger_append;

/*
 * Append one block with its state writes and results (its write-log
 * record), the new tip and applied index, in one LMDB write transaction: all of it is on the
 * ledger (durably, in the default sync mode) when this returns 0, and every
 * lookup in this process sees it (its tx-index rows and state writes are in
 * the overlay until a background checkpoint moves them to the derived
 * tables); none of it when it returns an error. May wait for a checkpoint
 * first when the overlay is full (LEDGER_OVERLAY_BLOCKS_MAX/_BYTES_MAX).
 * Checks: the block parses (ledger_block_parse), the
 * height is tip + 1 and prev_hash the tip's hash (EHR_ELINK), the time is
 * not before the tip's, the Merkle root matches the transactions, the
 * proposer is a member (EHR_EDENIED) and signed the header (EHR_EBADSIG), no
 * transaction is already on the ledger or twice in the block (EHR_EEXIST),
 * one result per transaction (EHR_EINVAL) each within
 * EHR_TX_RESULT_BYTES_MAX (EHR_ETOOBIG).
 * Transaction signatures and contents are not checked here: the node admits
 * only checked transactions, and ledger_verify re-checks them all.
 * Returns 0 or those errors; EHR_EFULL when the map is full; EHR_EINVAL
 * (also: read-only); the checkpoint's error when the overlay is full and the
 * checkpoint has failed (ledger_checkpoint). One writer at a time: callers
 * serialise appends.
 */
int ledger_append_block(ledger *l, const ledger_append *request, ehr_diag *diag);

/* Record that Raft entries up to INDEX are applied when no block came with
 * them (e.g. a membership change). INDEX below the current one: EHR_EINVAL. */
int ledger_applied_index_set(ledger *l, uint64_t index, ehr_diag *diag);

/*
 * The block at HEIGHT, its stored checksum verified. *BYTES is an
 * ehr_malloc'd copy. Returns 0; EHR_ENOTFOUND; EHR_ECORRUPT.
 */
int ledger_block_get(ledger *l, uint64_t height, uint8_t **bytes, size_t *len, ehr_diag *diag);

typedef struct ledger_tx_location {
    uint64_t height;
    uint32_t index;
    uint32_t offset; /* of the envelope inside the block bytes */
    uint32_t length;
} ledger_tx_location;

/*
 * The transaction with HASH: its location; if ENVELOPE is not NULL, an
 * ehr_malloc'd copy of its envelope, read without decoding the block (the
 * body is checked to hash to HASH); if RESULT is not NULL, an ehr_malloc'd
 * copy of its result (a serialized TxResult of *RESULT_LEN bytes, at most
 * EHR_TX_RESULT_BYTES_MAX; NULL with *RESULT_LEN 0 for the empty one, OK).
 * The caller frees both with ehr_free; on error neither is set. A
 * transaction is found with its result as soon as ledger_append_block
 * returns. Returns 0; EHR_ENOTFOUND; EHR_ECORRUPT.
 */
int ledger_tx_get(ledger *l, const uint8_t hash[EHR_HASH_BYTES], ledger_tx_location *location,
                  uint8_t **envelope, size_t *envelope_len, uint8_t **result, size_t *result_len,
                  ehr_diag *diag);

/* The value of KEY: an ehr_malloc'd copy (NULL with *LEN 0 for an empty
 * value). Returns 0; EHR_ENOTFOUND; EHR_EINVAL (key length). */
int ledger_state_get(ledger *l, const uint8_t *key, size_t key_len, uint8_t **value,
                     size_t *value_len, ehr_diag *diag);

/* Called per key: return 0 to go on, 1 to stop, a negative error to abort
 * (returned by the scan). The bytes are valid during the call only. */
typedef int (*ledger_scan_fn)(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                              size_t value_len);

/*
 * Call FN for the keys starting with PREFIX (may be empty), in byte order,
 * beginning after AFTER (NULL to start at the prefix: pass the last key seen
 * to continue a scan), at most COUNT_MAX (1..LEDGER_SCAN_COUNT_MAX) keys.
 * FN runs inside a read snapshot; it may read the ledger but not append.
 * Returns the number of keys visited (>= 0), or a negative error (FN's own
 * is returned as it is, DIAG untouched: FN's caller knows what it meant).
 */
long ledger_state_scan(ledger *l, const uint8_t *prefix, size_t prefix_len, const uint8_t *after,
                       size_t after_len, size_t count_max, ledger_scan_fn fn, void *ctx,
                       ehr_diag *diag);

/* What ledger_verify found. */
enum ledger_fault {
    LEDGER_FAULT_NONE = 0,
    LEDGER_FAULT_NO_CHAIN,      /* no genesis, or the chain info is unreadable */
    LEDGER_FAULT_CORRUPT,       /* a stored record fails its checksum */
    LEDGER_FAULT_DECODE,        /* a stored block does not parse */
    LEDGER_FAULT_HEIGHT,        /* a block's height is not its position */
    LEDGER_FAULT_HASH_LINK,     /* prev_hash is not the previous block's hash */
    LEDGER_FAULT_TIME,          /* block time went backwards */
    LEDGER_FAULT_GENESIS,       /* block 0 does not match the chain info */
    LEDGER_FAULT_MERKLE,        /* tx_root does not match the transactions */
    LEDGER_FAULT_HEADER_SIG,    /* the proposer's signature does not verify */
    LEDGER_FAULT_TX,            /* stored as OK: malformed, expired or for another chain */
    LEDGER_FAULT_TX_SIG,        /* stored as OK: its signature does not verify */
    LEDGER_FAULT_TX_INDEX,      /* the tx index disagrees with the blocks */
    LEDGER_FAULT_TIP,           /* the tip record disagrees with the blocks */
    LEDGER_FAULT_STATE,         /* the world state disagrees with the write log */
    LEDGER_FAULT_RESULTS,       /* a write-log record's results do not fit its block */
    LEDGER_FAULT_PROPOSER,      /* a block's proposer was not a member at its height */
    LEDGER_FAULT_REPLAY_RESULT, /* replayed, a transaction's result is not the stored one */
    LEDGER_FAULT_REPLAY_STATE,  /* replayed, a block's state writes are not the stored ones */
};

typedef struct ledger_verify_report {
    enum ledger_fault fault;
    uint64_t height; /* where the fault is */
    long tx_index;   /* the transaction's position, or -1 */
    uint64_t blocks_checked;
    uint64_t txs_checked;
    char msg[EHR_DIAG_BYTES_MAX]; /* one line: the verdict */
} ledger_verify_report;

/* The name of FAULT ("hash-link", ...), for --json. Never NULL. */
const char *ledger_fault_name(enum ledger_fault fault);

enum { LEDGER_VERIFY_THREADS_MAX = 16 };

/*
 * The world state as of the block before the one being replayed, for a
 * replay callback: the same two functions as contracts/'s struct
 * contracts_state (so the replay hands them on as they are), defined here
 * so that the ledger does not depend on contracts/.
 */
typedef struct ledger_state_view {
    void *ctx;
    /* Copy the value of KEY into VALUE (room for EHR_STATE_VALUE_BYTES_MAX
     * bytes) and its length into *LEN. Returns 0, EHR_ENOTFOUND, or a
     * storage error. */
    int (*get)(void *ctx, const uint8_t *key, size_t key_len, uint8_t *value, size_t *len);
    /* Call FN for every key starting with PREFIX (may be empty), in
     * ascending byte order; FN's non-zero value stops the scan and is
     * returned. Returns 0, FN's value, or a storage error. */
    int (*scan)(void *ctx, const uint8_t *prefix, size_t prefix_len, ledger_scan_fn fn,
                void *fn_ctx);
} ledger_state_view;

/* What verify found of a transaction's signature, judged as a node judges
 * it before applying the block (alone: framing, canonical body, chain and
 * signer, not expiry). The values are contracts/'s enum contracts_sig. */
enum ledger_tx_sig {
    LEDGER_TX_SIG_UNCHECKED = 0, /* another check failed first: the rules refuse it */
    LEDGER_TX_SIG_VALID = 1,
    LEDGER_TX_SIG_INVALID = 2,
};

/* One block for a replay callback. Everything is borrowed for the call. */
typedef struct ledger_replay_block {
    const char *chain_id;
    const ledger_block_view *view;              /* the block, parsed and checked */
    const uint8_t (*tx_hashes)[EHR_HASH_BYTES]; /* view->header.tx_count of them */
    const enum ledger_tx_sig *sigs;             /* each transaction's verdict */
    const ledger_state_view *state;             /* the world state before the block */
    /* What the write log stores for the block: its state writes in the
     * order they were appended, one result per transaction. */
    const ledger_state_write *writes;
    size_t write_count;
    const ledger_bytes *results;
} ledger_replay_block;

/* Where a replay differs from the stored block: FAULT is
 * LEDGER_FAULT_REPLAY_RESULT (TX_INDEX: which transaction) or
 * LEDGER_FAULT_REPLAY_STATE (TX_INDEX -1). */
typedef struct ledger_replay_finding {
    enum ledger_fault fault;
    long tx_index;
} ledger_replay_finding;

/*
 * Re-apply BLOCK's transactions to BLOCK->state and compare the results and
 * state writes with the stored ones. Returns 0 when they are the same;
 * EHR_ECORRUPT with FINDING filled and one line in DIAG when they differ;
 * another error (FINDING left NONE) when the block cannot be replayed (the
 * state cannot be read, or holds a value the rules cannot decode), DIAG
 * saying why.
 */
typedef int (*ledger_replay_fn)(void *ctx, const ledger_replay_block *block,
                                ledger_replay_finding *finding, ehr_diag *diag);

typedef struct ledger_verify_options {
    /* Threads checking transaction signatures: 0 for one per online CPU,
     * else 1..LEDGER_VERIFY_THREADS_MAX (1: all on the calling thread). */
    uint32_t threads;
    /* If not NULL, called now and then with the height reached and the tip
     * being walked to (for a progress line). */
    void (*progress)(void *ctx, uint64_t height, uint64_t tip);
    void *progress_ctx;
    /* If not NULL, called for each block above 0, in height order, on the
     * calling thread, once the block's own checks pass (ehrctl passes the
     * consent contract's replay; the ledger does not interpret
     * transactions). */
    ledger_replay_fn replay;
    void *replay_ctx;
} ledger_verify_options;

/*
 * First the derived tables against the write log, in one snapshot of them
 * (at checkpoint C): the world state must equal the write log of blocks
 * 0..C-1 replayed (in a scratch LMDB environment under $TMPDIR, removed
 * afterwards; each write-log record's checksum checked), the tx index must
 * hold the rows its checkpoint counts. Then walk every block from 0 to the
 * tip (as of the call; further if the checkpoint is past it): stored
 * checksum, parse, height sequence, hash chain, time order, block 0 against
 * the chain info and its state writes against its genesis, Merkle root,
 * header signature, the block's write-log record (one result per
 * transaction, each within EHR_TX_RESULT_BYTES_MAX: fault RESULTS), every
 * transaction's verdict (canonical, chain id, signature, not expired at
 * block time; spread over OPTIONS->threads) against its stored result, then
 * each transaction's tx-index row (overlay or derived tables, as every
 * lookup sees it: location, and a result equal to the write log's); then,
 * against the world state as of the block before (rebuilt from the write
 * log in step with the walk), that the proposer was a member (fault
 * PROPOSER) and, if OPTIONS->replay is set, the replay of the block's
 * transactions (faults REPLAY_RESULT, REPLAY_STATE); the tip record and the
 * checkpoint's transaction count where the walk passes them.
 *
 * A transaction that fails its checks is not a fault in itself (the node
 * keeps it in its block with a refusal result); one stored as OK is (faults
 * TX_SIG, TX), with a replay or without. Block 0 has no transactions to
 * replay: its state writes are checked against the ones its genesis makes
 * (fault GENESIS). Stops at the first fault (within a block, the first
 * failing transaction). OPTIONS may be NULL for the defaults.
 *
 * Returns 0 with REPORT->fault NONE; otherwise the fault's error
 * (EHR_ECORRUPT for a checksum or a replay that differs, EHR_ELINK for a
 * hash link or height, EHR_EBADSIG for a signature, EHR_EDENIED for a
 * proposer, ...) with REPORT saying where; EHR_EINVAL for bad OPTIONS (no
 * fault, a message in REPORT). Safe while another process appends.
 */
int ledger_verify(ledger *l, const ledger_verify_options *options, ledger_verify_report *report);

/* ---- The Raft log (raftlog.c) ----
 *
 * The node's Raft log and its metadata live in the ledger's LMDB
 * environment, as records this module does not interpret: the node encodes
 * entries, hard state and snapshot meta with consensus/'s record codec
 * (checksummed) and hands the bytes over; the ledger keeps them in index
 * order, enforces that the log stays one contiguous run [first, last], and
 * makes each ledger_raft_write durable and atomic. So the ledger does not
 * depend on consensus/.
 *
 * Indices start at 1. The log holds [first, last]; an empty log has
 * last == first - 1. first starts at 1 and only moves up (compaction).
 * One write transaction at a time per environment: the node issues raft
 * writes and block appends from its one loop thread, never concurrently.
 */

enum {
    /* One stored entry: a block proposal of up to EHR_BLOCK_BYTES_MAX plus
     * the proposal's own framing and the record codec's header and CRC. */
    LEDGER_RAFT_ENTRY_OVERHEAD_BYTES = 4096,
    LEDGER_RAFT_ENTRY_BYTES_MAX = EHR_BLOCK_BYTES_MAX + LEDGER_RAFT_ENTRY_OVERHEAD_BYTES,
    /* Entries appended by one ledger_raft_write (the core's largest append
     * message carries 65536). */
    LEDGER_RAFT_WRITE_ENTRIES_MAX = 65536,
    /* A hard state, snapshot meta or boundary record. */
    LEDGER_RAFT_META_BYTES_MAX = 1024,
};
_Static_assert((long)LEDGER_RAFT_ENTRY_BYTES_MAX > (long)EHR_BLOCK_BYTES_MAX,
               "a stored entry holds the largest block proposal");

/*
 * One atomic, durable change to the Raft log, applied in this order:
 *  1. truncate_from (0: none): drop the entries at and after it;
 *     first <= truncate_from <= last + 1.
 *  2. compact_index (0: none): drop the entries below it; first becomes
 *     compact_index (>= first; it may pass last + 1, which leaves an empty
 *     log starting there, as installing a snapshot does). BOUNDARY is then
 *     required: the record the node keeps about entry compact_index - 1
 *     (its term, which the core asks for), 1..LEDGER_RAFT_META_BYTES_MAX.
 *  3. entries[0..entry_count) at append_index, append_index + 1, ...: an
 *     entry already in the log at append_index is replaced together with
 *     every entry after it; first <= append_index <= last + 1 (as left by
 *     steps 1 and 2). Each entry is 1..LEDGER_RAFT_ENTRY_BYTES_MAX bytes,
 *     at most LEDGER_RAFT_WRITE_ENTRIES_MAX entries.
 *  4. hard_state (data NULL: unchanged), 1..LEDGER_RAFT_META_BYTES_MAX.
 *  5. snapshot_meta (data NULL: unchanged), 1..LEDGER_RAFT_META_BYTES_MAX.
 * The bytes are borrowed for the call.
 */
typedef struct ledger_raft_batch {
    uint64_t truncate_from;
    uint64_t compact_index;
    ledger_bytes boundary;
    uint64_t append_index;
    const ledger_bytes *entries;
    size_t entry_count;
    ledger_bytes hard_state;
    ledger_bytes snapshot_meta;
} ledger_raft_batch;

/*
 * Apply BATCH in one LMDB write transaction: when this returns 0 all of it
 * is on disk (in LEDGER_SYNC_DURABLE mode: fdatasync'd before the return),
 * when it returns an error none of it is. Entries and the hard state that
 * refers to them land in the same commit, so a crash never leaves a hard
 * state whose commit index is beyond the log.
 * Returns 0; EHR_EINVAL (nothing to do, a gap, an index outside the ranges
 * above, a missing boundary, read-only ledger); EHR_ETOOBIG (an entry, a
 * record or the entry count over its limit); EHR_EFULL (the map is full);
 * EHR_ECORRUPT (the stored log is not contiguous); -errno. Refusals write
 * nothing; DIAG says why.
 * One writer at a time (with ledger_append_block too): callers serialise.
 */
int ledger_raft_write(ledger *l, const ledger_raft_batch *batch, ehr_diag *diag);

/* The first / last index of the log (an empty log: last == first - 1; a
 * new ledger: first 1, last 0), read in one snapshot. Either pointer may be
 * NULL. Returns 0; EHR_ECORRUPT (the stored log is not one run starting at
 * first). */
int ledger_raft_bounds(ledger *l, uint64_t *first, uint64_t *last, ehr_diag *diag);
int ledger_raft_first_index(ledger *l, uint64_t *out, ehr_diag *diag);
int ledger_raft_last_index(ledger *l, uint64_t *out, ehr_diag *diag);

/* Called per entry with its bytes, valid during the call only (they point
 * into LMDB's map, inside a read transaction). Return 0 to go on, 1 to stop
 * after this entry, a negative error to abort (returned by the read). */
typedef int (*ledger_raft_entry_fn)(void *ctx, uint64_t index, const uint8_t *bytes, size_t len);

/*
 * The entry at INDEX, copied into BUF (CAP bytes); *LEN gets its size.
 * Returns 0; EHR_ENOTFOUND (outside [first, last], e.g. compacted);
 * EHR_ETOOBIG (CAP too small: *LEN says how much is needed, BUF untouched).
 */
int ledger_raft_entry_get(ledger *l, uint64_t index, uint8_t *buf, size_t cap, size_t *len,
                          ehr_diag *diag);

/*
 * Call FN for the entries [LO, HI) in order, in one read snapshot, stopping
 * before the bytes passed to FN would exceed BYTES_MAX (but always at least
 * one entry) or when FN says so. Nothing is copied: FN decodes or copies
 * what it keeps (this is what the node's raft_storage.entries uses).
 * Returns the number of entries FN was called for (>= 1); EHR_EINVAL
 * (LO >= HI); EHR_ENOTFOUND (LO below first or HI beyond last + 1);
 * EHR_ECORRUPT (an entry missing inside the range); FN's error (returned as
 * it is, DIAG untouched).
 */
long ledger_raft_entries_read(ledger *l, uint64_t lo, uint64_t hi, uint64_t bytes_max,
                              ledger_raft_entry_fn fn, void *ctx, ehr_diag *diag);

/*
 * The last stored hard state / snapshot meta / boundary record (see
 * ledger_raft_write), copied into BUF (CAP bytes); *LEN gets its size.
 * Returns 0; EHR_ENOTFOUND (never written); EHR_ETOOBIG (CAP too small,
 * *LEN says how much is needed); EHR_ECORRUPT (over the limit on disk).
 */
int ledger_raft_hard_state_get(ledger *l, uint8_t *buf, size_t cap, size_t *len, ehr_diag *diag);
int ledger_raft_snapshot_meta_get(ledger *l, uint8_t *buf, size_t cap, size_t *len, ehr_diag *diag);
int ledger_raft_boundary_get(ledger *l, uint8_t *buf, size_t cap, size_t *len, ehr_diag *diag);

typedef struct ledger_stats {
    uint64_t blocks;        /* entries in the blocks database */
    uint64_t tx_index_rows; /* rows in the tx index (derived tables + overlay) */
    uint64_t state_keys;    /* keys in the world state (derived tables + overlay) */
    uint64_t raft_entries;  /* entries in the Raft log */
    uint64_t file_bytes;    /* disk used by both data files (allocated blocks) */
    uint64_t map_bytes;     /* the map size in use (of each environment) */
    /* The write path: blocks below checkpoint_height are in the derived
     * tables; the overlay holds overlay_blocks blocks above it in
     * overlay_bytes of memory. */
    uint64_t checkpoint_height;
    uint64_t overlay_blocks;
    uint64_t overlay_bytes;
    uint64_t checkpoints; /* checkpoints committed since open (0 read-only) */
} ledger_stats;

/* Counts in one read view (the state key count looks each overlay key up
 * in the derived tables: O(overlay keys), for tools, not a hot path).
 * Returns 0 or an LMDB error. */
int ledger_stats_get(ledger *l, ledger_stats *out, ehr_diag *diag);

/* ---- Snapshots (snapshot.c) ----
 *
 * A snapshot is the whole ledger (blocks, tx index, world state, chain info,
 * tip and applied index) as of one Raft applied index, in one file: a
 * compacted copy of the ledger's LMDB environment (an LMDB data file, opened
 * with MDB_NOSUBDIR). The node creates one in a worker thread, serves it in
 * chunks (pread) through raft_storage.snapshot_read, and a receiver stages
 * the chunks into a file, then installs it in place of its own ledger.
 *
 * The file also carries the sender's Raft records (log, hard state,
 * boundary, snapshot meta): installing replaces them with the receiver's.
 * LMDB does not checksum pages and does not defend against hostile files:
 * snapshots come only from authenticated members, and inspection checks
 * what it can cheaply (the LMDB header against the file size, the format
 * version, the chain, the tip record against the last block and its stored
 * checksum, block 0 against the chain info). ledger_verify checks the rest.
 */

enum {
    /* A snapshot or ledger path, in bytes without the NUL (the temporary
     * names made next to it add a few bytes, within PATH_MAX). */
    LEDGER_SNAPSHOT_PATH_BYTES_MAX = 1024,
};
/* A snapshot file's size: inspection refuses a larger file before reading
 * it. 4 TiB, at 100 MB/s a transfer of about 12 hours. */
#define LEDGER_SNAPSHOT_BYTES_MAX (1ull << 42)
_Static_assert(LEDGER_SNAPSHOT_BYTES_MAX <= LEDGER_MAP_BYTES_MAX,
               "a snapshot fits the largest map");

/* What a snapshot file holds, read from the file itself. */
typedef struct ledger_snapshot_info {
    ledger_chain chain;
    ledger_tip tip;      /* tip.applied_index: the Raft index it is a snapshot at */
    uint64_t file_bytes; /* the file's size */
} ledger_snapshot_info;

/*
 * Write a consistent, compacted copy of L's environment to the file PATH
 * (1..LEDGER_SNAPSHOT_PATH_BYTES_MAX bytes; its directory must exist):
 * LMDB copies inside its own read transaction into a temporary file next
 * to PATH, which is fsync'd, inspected (as ledger_snapshot_inspect), renamed
 * over PATH, and the directory fsync'd. PATH is never half-written: it is
 * either untouched or the whole new snapshot; a failed call removes the
 * temporary file.
 * Safe from a worker thread while the owner thread keeps appending blocks
 * and writing the Raft log through the same handle: the copy is the ledger
 * as of one committed transaction. Which one is not known in advance, so
 * INFO (required) gets what the copy holds, read back from it: its
 * tip.applied_index is the index to build the Raft snapshot meta for.
 * Costs: O(ledger size) in reads and writes; the copy's read transaction
 * holds old pages for its whole duration, so the ledger file may grow by
 * what is written meanwhile.
 * Returns 0; EHR_EINVAL (bad path; the ledger has applied no Raft entry
 * yet); EHR_ETOOBIG (path or copy over its limit); EHR_ENOTFOUND (no
 * chain); a ledger_snapshot_inspect error for a copy that fails its
 * checks; -errno; with a sentence in DIAG.
 */
int ledger_snapshot_create(ledger *l, const char *path, ledger_snapshot_info *info, ehr_diag *diag);

/*
 * Check that the file PATH is a snapshot: a regular file of at most
 * LEDGER_SNAPSHOT_BYTES_MAX bytes with a valid LMDB header whose pages lie
 * inside the file, the ledger's databases, this build's format version, a
 * chain, a tip whose block is the last one stored, passes its stored
 * checksum and hashes to the tip's hash, block 0 matching the chain info,
 * block and tx-index counts matching the tip, and an applied index >= 1.
 * Opens the file read-only without a lock file and changes nothing. INFO
 * (required) gets what it holds. DIAG (may be NULL) gets a sentence.
 * Returns 0; EHR_EINVAL (bad path, not a regular file, not an LMDB file or
 * not a ledger, applied index 0); EHR_ETOOBIG; EHR_ETRUNCATED (shorter
 * than its header says); EHR_EVERSION (another LMDB or ledger format);
 * EHR_ENOTFOUND (no such file, or no chain); EHR_ECORRUPT; -errno.
 */
int ledger_snapshot_inspect(const char *path, ledger_snapshot_info *info, ehr_diag *diag);

/* What the receiver expects of a snapshot (from the Raft snapshot meta and
 * its own chain). */
typedef struct ledger_snapshot_expect {
    const char *chain_id;                 /* required */
    uint8_t genesis_hash[EHR_HASH_BYTES]; /* required */
    uint64_t applied_index;               /* the Raft snapshot's index, >= 1 */
    /* false (the node's case): a current ledger that has applied beyond
     * the snapshot is refused. true: it is replaced all the same (an
     * operator's restore of an older backup, asked for with --force). */
    bool replace_newer;
} ledger_snapshot_expect;

/*
 * Replace the ledger in LEDGER_DIR with the snapshot file SNAPSHOT_PATH.
 * Preconditions: nothing has LEDGER_DIR's ledger open, in this process or
 * another (the node closes its handle first, and reopens it with
 * ledger_open after a return of 0); SNAPSHOT_PATH is on the same file
 * system as LEDGER_DIR (stage it inside LEDGER_DIR, e.g. DIR/snapshot.mdb)
 * and is not used by anything else.
 * Steps: inspect the snapshot; its chain id and genesis hash must be
 * EXPECT's (EHR_ECHAIN) and its applied index EXPECT->applied_index
 * (EHR_EINVAL). Take an exclusive lock on LEDGER_DIR/lock.mdb, the byte
 * LMDB's own openers lock, so that a ledger open anywhere is refused
 * (EHR_EAGAIN) and an open that races the install waits for it. The
 * current ledger, if any, must be of the same chain and must not have
 * applied beyond the snapshot (EHR_EINVAL: that would move the applied
 * state back), unless EXPECT->replace_newer (an operator's restore).
 * Then, on the snapshot file itself: remove the sender's Raft
 * log, hard state, boundary and snapshot meta; apply RAFT_RESET with
 * ledger_raft_write's own code; sync. RAFT_RESET must compact to
 * applied_index + 1 with the boundary record for applied_index, set the
 * snapshot meta, and may append entries from applied_index + 1; it must
 * not truncate. Its hard_state is written if given; if not, the current
 * ledger's hard state record is carried over, so term and vote never move
 * back (the node passes the hard state it last persisted, or a newer one).
 * Last, rename the file over LEDGER_DIR/data.mdb, fsync LEDGER_DIR, and
 * empty lock.mdb, so the next ledger_open rebuilds LMDB's reader table and
 * transaction counter from the new file (a stale table never applies).
 * Crash safety: up to the rename, LEDGER_DIR holds the old ledger,
 * untouched; after it, the new one, whole. SNAPSHOT_PATH is gone after a
 * return of 0; after an error it may have been changed: discard it. An
 * error after the rename (syncing the directory, emptying lock.mdb: -errno)
 * leaves the new ledger in place, INFO filled: after any error, reopen the
 * ledger and read its tip to know which one it holds.
 * INFO (may be NULL) gets what the installed ledger holds; DIAG (may be
 * NULL) a sentence. Returns 0; the ledger_snapshot_inspect errors;
 * EHR_ECHAIN; EHR_EINVAL (EXPECT or RAFT_RESET malformed, applied index
 * mismatch, or one that would move back); EHR_EAGAIN (the ledger is open);
 * EHR_ENOTFOUND (no LEDGER_DIR); a ledger_raft_write error; -errno
 * (-EXDEV: another file system).
 */
int ledger_snapshot_install(const char *ledger_dir, const char *snapshot_path,
                            const ledger_raft_batch *raft_reset,
                            const ledger_snapshot_expect *expect, ledger_snapshot_info *info,
                            ehr_diag *diag);

/* The Raft records a ledger data file holds (see ledger_raft_write), each
 * copied out; a record's length is 0 when the file has none. */
typedef struct ledger_snapshot_raft {
    uint64_t first, last; /* the log holds [first, last] (empty: last == first - 1) */
    uint8_t hard_state[LEDGER_RAFT_META_BYTES_MAX];
    size_t hard_state_len;
    uint8_t snapshot_meta[LEDGER_RAFT_META_BYTES_MAX];
    size_t snapshot_meta_len;
    uint8_t boundary[LEDGER_RAFT_META_BYTES_MAX];
    size_t boundary_len;
} ledger_snapshot_raft;

/*
 * Read the Raft records of the LMDB data file PATH without a ledger handle:
 * a snapshot file, or the data.mdb of a ledger that nothing writes
 * meanwhile (its node stopped; opened without a lock file, as inspect
 * does). OUT (required) gets the log's bounds and the hard state, snapshot
 * meta and boundary records; then FN (may be NULL) is called for the stored
 * entries in [LO, HI) that the log holds, in order, as ledger_raft_entries_read
 * calls it (the bytes valid during the call only). Changes nothing.
 * Returns 0; the ledger_snapshot_inspect file errors (EHR_ENOTFOUND,
 * EHR_EINVAL, EHR_ETRUNCATED, EHR_EVERSION, EHR_ETOOBIG); EHR_ECORRUPT (a
 * record over its limit, a log that is not one run); FN's error; -errno;
 * with a sentence in DIAG naming the file.
 */
int ledger_snapshot_raft_read(const char *path, uint64_t lo, uint64_t hi, ledger_raft_entry_fn fn,
                              void *ctx, ledger_snapshot_raft *out, ehr_diag *diag);

/*
 * Bring the derived tables (tx index, world state) up to the tip now and
 * wait for it: ledger_close does this too; a node may call it before
 * copying the ledger's files. Appends may go on meanwhile (they are not
 * waited for). Returns 0; EHR_EINVAL (read-only); the error of a failed
 * checkpoint (EHR_EFULL: the derived map is full; -errno), which is sticky
 * until the ledger is reopened. Not from inside a ledger_state_scan
 * callback (the checkpoint waits for the scan's view to end).
 */
int ledger_checkpoint(ledger *l, ehr_diag *diag);

#endif /* EHR_LEDGER_H */
