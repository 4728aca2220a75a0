/*
 * ledger_internal.h - what the ledger's source files share and the tests may
 * use, but nothing else: the canonical protobuf wire reader/writer, the
 * stored-record codecs and the names of the LMDB databases.
 *
 * Not a public interface: every name here has the `ledger__` prefix and may
 * change with the module.
 */
#ifndef EHR_LEDGER_INTERNAL_H
#define EHR_LEDGER_INTERNAL_H

#include <stdarg.h>

#include <lmdb.h>
#include <protobuf-c/protobuf-c.h>

#include "ledger.h"

/* ---- Canonical protobuf wire format ----
 * The framing parsers (envelope, block, stored records) accept only the
 * canonical encoding: fields in field-number order, minimal varints, no
 * unknown fields. A reader keeps a position in a bounded buffer; every read
 * checks the length first.
 */
enum {
    LEDGER__WIRE_VARINT = 0,
    LEDGER__WIRE_LEN = 2,
    LEDGER__VARINT_BYTES_MAX = 10,
};

typedef struct ledger__reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
} ledger__reader;

/* Read a minimal varint. Returns 0; EHR_ETRUNCATED; EHR_EINVAL (overlong,
 * over 64 bits, or not minimal). */
int ledger__varint_read(ledger__reader *r, uint64_t *out);

/* Peek whether the next bytes are the one-byte tag of FIELD with WIRE type
 * (all our fields are numbered below 16, so every tag is one byte). */
bool ledger__tag_next(const ledger__reader *r, unsigned field, unsigned wire);

/*
 * Read a length-delimited field FIELD whose tag is next: its bytes must be
 * LEN_MIN..LEN_MAX long. *OUT gets the offset of the content from
 * r->data. Returns 0; EHR_ETRUNCATED; EHR_EINVAL; EHR_ETOOBIG.
 */
int ledger__len_field_read(ledger__reader *r, unsigned field, size_t len_min, size_t len_max,
                           ledger_span *out);

/* Encoded size of V as a varint (1..10). */
size_t ledger__varint_size(uint64_t v);
/* Write V as a varint at P; returns the bytes written. */
size_t ledger__varint_write(uint8_t *p, uint64_t v);

/*
 * Check that DATA is the canonical encoding of MSG (which was unpacked from
 * it): no unknown field in MSG or any message inside it, and packing MSG
 * again gives DATA byte for byte. Allocates nothing.
 * Returns true if canonical.
 */
bool ledger__proto_canonical(const ProtobufCMessage *msg, const uint8_t *data, size_t len);

/* Format a message into DIAG (which may be NULL). Returns ERR, so callers
 * can `return ledger__fail(diag, EHR_EINVAL, "...", ...)`. */
int ledger__fail(ledger_diag *diag, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- Transactions ---- */

/* The last signer key parsed, kept by a caller that checks many
 * transactions in a row (one per thread). Zero-initialise. */
typedef struct ledger__key_cache {
    ehr_public_key key;
    bool valid;
} ledger__key_cache;

/*
 * ledger_tx_check for callers that already hold the transaction's hash
 * (KNOWN_HASH, not NULL: it must be SHA-256 of the body) and/or a KEYS
 * cache (may be NULL). Same results and errors as ledger_tx_check.
 */
int ledger__tx_check(const uint8_t *bytes, size_t len, const ledger_tx_rules *rules,
                     const uint8_t known_hash[EHR_HASH_BYTES], ledger__key_cache *keys,
                     ledger_tx *out, ledger_diag *diag);

/* ---- Stored records (proto/ehr/v1/ledger.proto) ---- */

enum {
    LEDGER__FORMAT_VERSION = 1,
    LEDGER__CHECKSUM_BYTES = 32,
    /* StoredBlock framing before the block bytes: tag, 32, checksum, tag,
     * block length (at most 4 bytes below EHR_BLOCK_BYTES_MAX). */
    LEDGER__STORED_BLOCK_PREFIX_MAX = 1 + 1 + LEDGER__CHECKSUM_BYTES + 1 + 4,
    /* TxLocation: four tagged varints. */
    LEDGER__TX_LOCATION_BYTES_MAX = 4 * (1 + LEDGER__VARINT_BYTES_MAX),
};

/* Names of the LMDB databases inside the environment. */
#define LEDGER__DB_BLOCKS "blocks"
#define LEDGER__DB_TXS "txs"
#define LEDGER__DB_STATE "state"
#define LEDGER__DB_META "meta"
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

/* Encode LOC (canonical TxLocation); returns the bytes written to OUT. */
size_t ledger__tx_location_write(uint8_t out[LEDGER__TX_LOCATION_BYTES_MAX],
                                 const ledger_tx_location *loc);
/* Decode a canonical TxLocation. Returns 0 or EHR_ECORRUPT. */
int ledger__tx_location_read(const uint8_t *data, size_t len, ledger_tx_location *loc);

/* ---- The store (store.c), shared with verify.c ---- */

struct ledger {
    MDB_env *env;
    MDB_dbi db_blocks;     /* height (8 bytes big-endian) -> StoredBlock */
    MDB_dbi db_txs;        /* tx hash (32 bytes) -> TxLocation */
    MDB_dbi db_state;      /* key -> value */
    MDB_dbi db_meta;       /* "chain" -> ChainInfo, "tip" -> ChainTip, "raft/..." */
    MDB_dbi db_raft_log;   /* index (8 bytes big-endian) -> opaque entry record */
    bool raft_log_present; /* false only read-only on a ledger made before it */
    ledger_options options;
    char *dir;
    /* Append scratch, reused from block to block (one writer at a time). */
    uint8_t (*hashes)[EHR_HASH_BYTES];
    uint32_t *tx_order;
    size_t tx_capacity;
    uint32_t *write_order;
    size_t write_capacity;
};

/* Record a message as this thread's last ledger error and return ERR. */
int ledger__error(ledger *l, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Map an LMDB return code to ours (recording a message); 0 stays 0. */
int ledger__lmdb_error(ledger *l, int rc, const char *what);

/* Begin a read-only transaction. */
int ledger__read_begin(ledger *l, MDB_txn **txn);

/* Read the tip / chain info inside TXN. EHR_ENOTFOUND before genesis,
 * EHR_ECORRUPT if the record does not decode. */
int ledger__tip_read(ledger *l, MDB_txn *txn, ledger_tip *out);
int ledger__chain_read(ledger *l, MDB_txn *txn, ledger_chain *out);

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
int ledger__snapshot_size_check(uint64_t file_bytes, ledger_diag *diag);

#endif /* EHR_LEDGER_INTERNAL_H */
