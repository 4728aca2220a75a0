/*
 * ledger_internal.h - what the store's source files share and the tests may
 * use, but nothing else: the stored-record codecs, the overlay, the names of
 * the LMDB databases, the store's shared functions. (What the formats'
 * files share is in ledger_format_internal.h, included here.)
 *
 * Not a public interface: every name here has the `ledger__` prefix and may
 * change with the module.
 */
#ifndef EHR_LEDGER_INTERNAL_H
#define EHR_LEDGER_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include <lmdb.h>
#include <sodium.h>
#include <protobuf-c/protobuf-c.h>

#include "ledger.h"
#include "ledger_format_internal.h"

/* ---- Stored records (proto/ehr/v1/ledger.proto) ---- */

enum {
    /* 2: the tx index and world state moved to the derived environment,
     * the write log joined the main one. 3: transaction payloads of the
     * consent contract (tx.proto: codes for record types and purposes,
     * governance proposals, practitioners). 4: each transaction's result
     * (TxResult) in its block's write-log record and in its tx-index row. */
    LEDGER__FORMAT_VERSION = 4,
    LEDGER__CHECKSUM_BYTES = 32,
    /* StoredBlock framing before the block bytes: tag, 32, checksum, tag,
     * block length (at most 4 bytes below EHR_BLOCK_BYTES_MAX). */
    LEDGER__STORED_BLOCK_PREFIX_MAX = 1 + 1 + LEDGER__CHECKSUM_BYTES + 1 + 4,
    /* TxLocation: four tagged varints and the result (tag, a 2-byte
     * length, at most EHR_TX_RESULT_BYTES_MAX bytes). */
    LEDGER__TX_LOCATION_BYTES_MAX =
        4 * (1 + LEDGER__VARINT_BYTES_MAX) + 1 + 2 + EHR_TX_RESULT_BYTES_MAX,
};

/* Names of the LMDB databases inside the main environment (DIR/data.mdb). */
#define LEDGER__DB_BLOCKS "blocks"
#define LEDGER__DB_WRITES "writes"
#define LEDGER__DB_META "meta"
/* The derived environment (DIR/derived.mdb, see derived.c): the tx index,
 * the world state and the checkpoint record. */
#define LEDGER__DERIVED_FILE "derived.mdb"
#define LEDGER__DB_TXS "txs"
#define LEDGER__DB_STATE "state"
#define LEDGER__DB_DERIVED_META "derived_meta"
#define LEDGER__META_CHECKPOINT "checkpoint"
#define LEDGER__META_CHAIN "chain"
#define LEDGER__META_TIP "tip"
/* The Raft log (raftlog.c): entries keyed by index (8 bytes big-endian);
 * its metadata in "meta". */
#define LEDGER__DB_RAFT_LOG "raft_log"
#define LEDGER__META_RAFT_HARD_STATE "raft/hard_state"
#define LEDGER__META_RAFT_SNAPSHOT "raft/snapshot_meta"
/* 8-byte big-endian first index, then the boundary record. */
#define LEDGER__META_RAFT_FIRST "raft/first"

/* The 8-byte big-endian key of a height (so keys sort as numbers). */
void ledger__height_key(uint8_t out[8], uint64_t height);

/* The stored checksum of BLOCK at HEIGHT (BLAKE2b-256). */
void ledger__block_checksum(uint8_t out[LEDGER__CHECKSUM_BYTES], uint64_t height,
                            const uint8_t *block, size_t block_len);

/* Size of the StoredBlock framing in front of a block of BLOCK_LEN bytes. */
size_t ledger__stored_block_prefix_size(size_t block_len);

/* Write the StoredBlock framing (checksum included) for BLOCK at HEIGHT to
 * OUT, which holds ledger__stored_block_prefix_size(block_len) bytes. The
 * block bytes follow it. Returns the framing size. */
size_t ledger__stored_block_prefix_write(uint8_t *out, uint64_t height, const uint8_t *block,
                                         size_t block_len);

/*
 * Locate the block inside a StoredBlock record without checking the
 * checksum (*BLOCK points into RECORD). Returns 0 or EHR_ECORRUPT.
 */
int ledger__stored_block_locate(const uint8_t *record, size_t record_len, const uint8_t **block,
                                size_t *block_len, const uint8_t **checksum);

/* As ledger__stored_block_locate, and check the checksum against HEIGHT. */
int ledger__stored_block_open(const uint8_t *record, size_t record_len, uint64_t height,
                              const uint8_t **block, size_t *block_len);

/* Encode LOC and RESULT (0..EHR_TX_RESULT_BYTES_MAX bytes) as a canonical
 * TxLocation; returns the bytes written to OUT. */
size_t ledger__tx_location_write(uint8_t out[LEDGER__TX_LOCATION_BYTES_MAX],
                                 const ledger_tx_location *loc, ledger_bytes result);
/* Decode a canonical TxLocation; *RESULT (may be NULL) points into DATA
 * (data NULL for an empty result). Returns 0 or EHR_ECORRUPT. */
int ledger__tx_location_read(const uint8_t *data, size_t len, ledger_tx_location *loc,
                             ledger_bytes *result);

/*
 * The write log: StoredWrites records (ledger.proto), one per block: its
 * state writes and its transactions' results. Encoding reads the arrays of
 * a ledger__write_log; decoding fills one whose arrays are one ehr_malloc'd
 * block (MEM, released by ledger__write_log_release) and whose bytes point
 * into the record.
 */
typedef struct ledger__write_log {
    const ledger_state_write *writes;
    size_t write_count;
    const ledger_bytes *results; /* each 0..EHR_TX_RESULT_BYTES_MAX bytes */
    size_t result_count;         /* the block's tx_count */
    void *mem;                   /* decoded: the arrays' allocation, or NULL */
} ledger__write_log;

/* The encoded size of LOG's record. */
size_t ledger__writes_record_size(const ledger__write_log *log);
/* Encode LOG, checksum included, into OUT (exactly SIZE bytes, from
 * ledger__writes_record_size); returns SIZE. */
size_t ledger__writes_record_write(uint8_t *out, size_t size, uint64_t height,
                                   const ledger__write_log *log);
/* Check RECORD's checksum against HEIGHT and decode the canonical record
 * (writes, then results, each within its limit) into *LOG. Returns 0;
 * EHR_ECORRUPT (checksum, framing); EHR_ETOOBIG (a result over
 * EHR_TX_RESULT_BYTES_MAX, or more than EHR_BLOCK_TX_COUNT_MAX of them);
 * *LOG is then empty, nothing to release. The caller checks the result
 * count against the block's tx_count. */
int ledger__writes_record_open(const uint8_t *record, size_t record_len, uint64_t height,
                               ledger__write_log *log);
/* Free what ledger__writes_record_open allocated; LOG is then empty. */
void ledger__write_log_release(ledger__write_log *log);

/* ---- The overlay (overlay.c): blocks above the checkpoint, in memory ---- */

enum { LEDGER__OV_LEVELS_MAX = 24 };

/* One tx-index row of an overlay block, chained in the hash table. */
typedef struct ledger__ov_tx {
    uint8_t hash[EHR_HASH_BYTES];
    ledger_tx_location loc;
    ledger_bytes result; /* inside the block's allocation; data NULL if empty */
    struct ledger__ov_tx *next;
} ledger__ov_tx;

/* One block's rows: one allocation, immutable once made (except the links
 * `next` and txs[].next, which the overlay owns under its lock). */
typedef struct ledger__ov_block {
    uint64_t height;
    uint32_t tx_count;
    size_t write_count;
    size_t bytes; /* what it counts against LEDGER_OVERLAY_BYTES_MAX */
    ledger__ov_tx *txs;
    ledger_state_write *writes; /* in block order; bytes inside this allocation */
    struct ledger__ov_block *next;
} ledger__ov_block;

/* A state key's newest write in the overlay (a removal is a tombstone). */
typedef struct ledger__ov_node {
    const ledger_state_write *write;
    uint64_t height;
    uint32_t level;
    struct ledger__ov_node *next[];
} ledger__ov_node;

typedef struct ledger__overlay {
    ledger__ov_block *first, *last; /* ascending heights */
    uint64_t block_count;
    uint64_t bytes;
    ledger__ov_tx **buckets;
    size_t bucket_count; /* a power of two */
    size_t tx_count;
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    ledger__ov_node *head;
    uint32_t level;
    size_t key_count;
    uint64_t rng;
} ledger__overlay;

/* LMDB's default key order: bytes, then the shorter key first. */
int ledger__key_cmp(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);

/* The memory a block with these rows takes in the overlay (LOG: its write
 * log, LOG->result_count its transactions). */
size_t ledger__ov_block_bytes(const ledger__write_log *log);
/* A new block (ehr_malloc'd; the overlay frees it once added) holding the
 * rows of LOG->result_count transactions (HASHES, envelope SPANS, a copy of
 * each result) and a copy of LOG's writes. HASHES and SPANS may be NULL
 * only without results (verify's replay builds state-only blocks). */
ledger__ov_block *ledger__ov_block_make(uint64_t height, const uint8_t (*hashes)[EHR_HASH_BYTES],
                                        const ledger_span *spans, const ledger__write_log *log);
void ledger__overlay_init(ledger__overlay *ov);
void ledger__overlay_free(ledger__overlay *ov);
/* Add B (the block after the last one), taking ownership. */
void ledger__overlay_add(ledger__overlay *ov, ledger__ov_block *b);
/* Drop and free the blocks at or below HEIGHT; returns how many. */
size_t ledger__overlay_drop_through(ledger__overlay *ov, uint64_t height);
/* The row of HASH, or NULL. */
const ledger__ov_tx *ledger__overlay_tx(const ledger__overlay *ov,
                                        const uint8_t hash[EHR_HASH_BYTES]);
/* KEY's node, or NULL; the first node at or after KEY (NULL at the end);
 * the next node is node->next[0]. */
const ledger__ov_node *ledger__overlay_state(const ledger__overlay *ov, const uint8_t *key,
                                             size_t key_len);
const ledger__ov_node *ledger__overlay_seek(const ledger__overlay *ov, const uint8_t *key,
                                            size_t key_len);

/* ---- The store (store.c, derived.c), shared with verify.c ---- */

struct ledger {
    MDB_env *env;
    MDB_dbi db_blocks;     /* height (8 bytes big-endian) -> StoredBlock */
    MDB_dbi db_writes;     /* height (8 bytes big-endian) -> StoredWrites */
    MDB_dbi db_meta;       /* "chain" -> ChainInfo, "tip" -> ChainTip, "raft/..." */
    MDB_dbi db_raft_log;   /* index (8 bytes big-endian) -> opaque entry record */
    bool raft_log_present; /* false only read-only on a ledger made before it */
    ledger_options options;
    char *dir;
    /* The derived environment and the overlay (derived.c). */
    MDB_env *derived_env;
    MDB_dbi db_txs;          /* tx hash (32 bytes) -> TxLocation */
    MDB_dbi db_state;        /* key -> value */
    MDB_dbi db_derived_meta; /* "checkpoint" -> Checkpoint */
    uint8_t genesis_block_hash[EHR_HASH_BYTES];
    bool chain_known;
    /* The overlay's contents; readers share it, adding and dropping blocks
     * take it exclusively. Readers may nest (a scan callback that reads). */
    pthread_rwlock_t overlay_lock;
    _Atomic unsigned publishers_waiting; /* the checkpoint's drops yield to them */
    ledger__overlay overlay;
    /* The checkpoint's bookkeeping, under checkpoint_mu. */
    pthread_mutex_t checkpoint_mu;
    pthread_mutex_t refresh_mu;     /* read-only: one overlay refresh at a time */
    pthread_cond_t checkpoint_wake; /* the checkpointer: work or stop */
    pthread_cond_t checkpoint_done; /* appends waiting for room, checkpoint waiters */
    pthread_t checkpoint_thread;
    bool checkpoint_running; /* the thread exists */
    bool checkpoint_stop;
    bool checkpoint_paused;       /* tests: start no checkpoint */
    uint64_t checkpoint_next;     /* the derived tables hold heights below it */
    uint64_t checkpoint_tx_count; /* ... and these transactions */
    uint64_t published_next;      /* the overlay holds heights below it */
    uint64_t reserved_blocks;     /* overlay blocks, plus one being appended */
    uint64_t reserved_bytes;      /* their bytes */
    uint64_t checkpoint_want;     /* ledger_checkpoint asks for heights below it */
    uint64_t overlay_blocks_max;  /* LEDGER_OVERLAY_*_MAX, lower in tests */
    uint64_t overlay_bytes_max;
    uint64_t append_waits;     /* appends that waited for room (tests) */
    uint32_t appends_waiting;  /* now */
    uint64_t checkpoints_done; /* tests, stats */
    uint64_t oldest_ns;        /* when the oldest overlay block was published */
    int checkpoint_error;      /* sticky: the last checkpoint failed */
    char checkpoint_error_msg[EHR_DIAG_BYTES_MAX];
    /* Append scratch, reused from block to block (one writer at a time). */
    uint8_t (*hashes)[EHR_HASH_BYTES];
    uint32_t *tx_order;
    size_t tx_capacity;
    uint32_t *write_order;
    size_t write_capacity;
};

/*
 * Messages. Every function of the store that can fail takes the caller's
 * optional ehr_diag as its last argument and hands it down, so the one line
 * written on failure is the innermost one that knows what went wrong
 * (ehr_diag_fail); a function that adds context formats into a local
 * ehr_diag first. The checkpoint thread has no caller: it keeps its
 * message in checkpoint_error_msg for the appends that fail after it.
 */

/* Map an LMDB return code to ours, with a message about WHAT in DIAG (may be
 * NULL); 0 stays 0. L gives the map size and reader count for the message. */
int ledger__lmdb_error(const ledger *l, int rc, const char *what, ehr_diag *diag);

/* Begin a read-only transaction (in the main environment). */
int ledger__read_begin(ledger *l, MDB_txn **txn, ehr_diag *diag);

/* The main environment's write-log record at HEIGHT inside TXN, decoded
 * into *LOG (see ledger__writes_record_open; release it, also after an
 * error). EHR_ENOTFOUND, EHR_ECORRUPT, EHR_ETOOBIG (results over their
 * limits), with a message. */
int ledger__writes_read(ledger *l, MDB_txn *txn, uint64_t height, ledger__write_log *log,
                        ehr_diag *diag);

/* ---- The derived environment (derived.c) ---- */

/* Open (create if writable) DIR/derived.mdb, bring it and the overlay up to
 * the main environment's tip (checkpointing as needed when writable), and
 * start the checkpointer (writable). Called by ledger_open after the main
 * environment is open. Returns 0 or an error with a message. */
int ledger__derived_open(ledger *l, ehr_diag *diag);
/* Final checkpoint (writable), stop the checkpointer, free the overlay,
 * close the environment. Safe on a partly opened ledger. */
void ledger__derived_close(ledger *l);
/* Wait until the overlay has room for a block of BYTES (back-pressure),
 * then reserve it. Returns 0, or the checkpoint's error. */
int ledger__derived_reserve(ledger *l, size_t bytes, ehr_diag *diag);
/* Give back a reservation that was not published. */
void ledger__derived_unreserve(ledger *l, size_t bytes);
/* Add B (its block committed in the main environment) to the overlay. */
void ledger__derived_publish(ledger *l, ledger__ov_block *b);

/* A read view over the overlay and a derived read transaction: begin takes
 * the overlay lock shared (and, read-only, catches the overlay up with
 * the files first); end releases both. */
typedef struct ledger__view {
    ledger *ledger;
    MDB_txn *txn;             /* derived */
    uint64_t checkpoint_next; /* of TXN's snapshot */
} ledger__view;
int ledger__view_begin(ledger *l, ledger__view *v, ehr_diag *diag);
void ledger__view_end(ledger__view *v);
/* HASH's location in the view, and (RESULT not NULL) its result, borrowed
 * until view end: 0, EHR_ENOTFOUND, EHR_ECORRUPT (bad row). */
int ledger__view_tx(ledger__view *v, const uint8_t hash[EHR_HASH_BYTES], ledger_tx_location *loc,
                    ledger_bytes *result, ehr_diag *diag);
/* KEY's value in the view, borrowed until view end: 0, EHR_ENOTFOUND. */
int ledger__view_state(ledger__view *v, const uint8_t *key, size_t key_len, const uint8_t **value,
                       size_t *value_len, ehr_diag *diag);

/* A cursor over the state in key order: the overlay merged with the
 * derived table (the overlay wins on equal keys; removals hide keys). */
typedef struct ledger__state_cursor {
    ledger__view *view;
    MDB_cursor *cur;
    const ledger__ov_node *node;
    MDB_val key, value; /* the derived cursor's current row */
    bool derived_end;
} ledger__state_cursor;
/* Position at the first key >= START (START_LEN 0: the first key). */
int ledger__state_cursor_open(ledger__view *v, const uint8_t *start, size_t start_len,
                              ledger__state_cursor *c, ehr_diag *diag);
/* The next visible key: 0 with KEY/VALUE borrowed, 1 at the end, or an
 * error. */
int ledger__state_cursor_next(ledger__state_cursor *c, const uint8_t **key, size_t *key_len,
                              const uint8_t **value, size_t *value_len, ehr_diag *diag);
void ledger__state_cursor_close(ledger__state_cursor *c);

/* The derived tables' checkpoint inside TXN (a derived transaction): the
 * heights below *NEXT and their *TX_COUNT transactions (0, 0 if none yet).
 * Returns 0 or EHR_ECORRUPT. */
int ledger__checkpoint_get(ledger *l, MDB_txn *txn, uint64_t *next, uint64_t *tx_count,
                           ehr_diag *diag);

/* The tx-index rows, state keys and overlay figures of OUT, in one view. */
int ledger__derived_stats(ledger *l, ledger_stats *out, ehr_diag *diag);

/* Apply the rows of BLOCKS[0..COUNT) (ascending heights) to TXS (may be 0:
 * no tx rows) and STATE in TXN, in sorted batches. Returns 0 or an LMDB
 * error (positive or MDB_*). Shared by the checkpoint and verify's replay. */
int ledger__rows_apply(MDB_txn *txn, MDB_dbi txs, MDB_dbi state, ledger__ov_block *const *blocks,
                       size_t count);

/* Tests only. Stop (or allow again) the automatic checkpoints; an explicit
 * ledger_checkpoint still runs one, and ledger_close then skips the last
 * one (so the next open replays the overlay). */
void ledger__checkpoint_pause(ledger *l, bool paused);
/* Tests only: how many appends have waited for room so far. */
uint64_t ledger__append_waits(ledger *l);
/* Tests only: lower the overlay's limits (1..the LEDGER_OVERLAY_*_MAX). */
void ledger__overlay_limits_set(ledger *l, uint64_t blocks_max, uint64_t bytes_max);

/* Block 0's state writes derived from the genesis G (ledger_genesis_init
 * stores them; ledger_verify checks the stored ones against them): the
 * emergency policy, then each founding member. Release with
 * ledger__genesis_writes_release. */
typedef struct ledger__genesis_writes {
    ledger_state_write *writes;
    size_t count;
    uint8_t (*keys)[LEDGER_MEMBER_KEY_BYTES]; /* the members' keys the writes point to */
} ledger__genesis_writes;
void ledger__genesis_writes_make(const Ehr__V1__Genesis *g, ledger__genesis_writes *out);
void ledger__genesis_writes_release(ledger__genesis_writes *gw);

/* Read the tip / chain info inside TXN. EHR_ENOTFOUND before genesis,
 * EHR_ECORRUPT if the record does not decode. */
int ledger__tip_read(ledger *l, MDB_txn *txn, ledger_tip *out, ehr_diag *diag);
int ledger__chain_read(ledger *l, MDB_txn *txn, ledger_chain *out, ehr_diag *diag);

/* ---- Snapshots (snapshot.c) ---- */

/* The steps of ledger_snapshot_install, in order. */
enum ledger__install_step {
    LEDGER__INSTALL_LOCKED = 1,   /* lock.mdb locked, nothing changed yet */
    LEDGER__INSTALL_RAFT_CLEARED, /* the sender's Raft records removed from the file */
    LEDGER__INSTALL_RAFT_RESET,   /* RAFT_RESET written to the file */
    LEDGER__INSTALL_SYNCED,       /* the file is on disk */
    LEDGER__INSTALL_RENAMED,      /* the file is DIR/data.mdb */
    LEDGER__INSTALL_DIR_SYNCED,   /* the rename is on disk */
    LEDGER__INSTALL_LOCK_EMPTIED, /* lock.mdb emptied (still locked) */
    LEDGER__INSTALL_STEP_COUNT = LEDGER__INSTALL_LOCK_EMPTIED,
};

/* Fault injection for the crash test: if not NULL, called after each step
 * of ledger_snapshot_install (the test kills the process there). */
extern void (*ledger__snapshot_install_hook)(enum ledger__install_step step);

/* The size check of ledger_snapshot_inspect, for the edge test. Returns 0
 * or EHR_ETOOBIG (over LEDGER_SNAPSHOT_BYTES_MAX), with a sentence. */
int ledger__snapshot_size_check(uint64_t file_bytes, ehr_diag *diag);

#endif /* EHR_LEDGER_INTERNAL_H */
