/*
 * store.c - the ledger's main LMDB environment: opening it, block 0,
 * appending blocks with their write-log record and tip in one durable write
 * transaction, and the lookups (through the read views of derived.c).
 *
 * Not here: the derived tables, the overlay and the checkpoints
 * (derived.c, overlay.c), the offline walk over the whole chain (verify.c)
 * and the formats themselves (tx.c, block.c, records.c).
 *
 * LMDB caveats, as they apply here:
 * - One write transaction at a time per environment (LMDB serialises
 *   writers with a lock shared between processes). The append scratch in
 *   struct ledger assumes one writing thread; callers serialise appends.
 * - MDB_NOTLS: a read transaction is not tied to its thread, so readers on
 *   several threads (and a scan callback that reads again) each get their
 *   own reader slot. Read transactions here live for one call only: a
 *   long-lived reader stops LMDB from reusing freed pages and the file grows.
 * - No use after fork(): a child must open the ledger again, never use the
 *   parent's MDB_env (its lock and map belong to the parent).
 * - mdb_env_set_mapsize only before mdb_env_open here (or later with no
 *   transaction active in the process, which we never do). The map is
 *   address space, not disk: the file grows with the data. When it is used
 *   up, LMDB returns MDB_MAP_FULL and we return EHR_EFULL with the size.
 * - Stale reader slots of a killed process are cleared at open
 *   (mdb_reader_check); LMDB does not checksum pages, so blocks carry
 *   their own checksum (records.c).
 * - MDB_WRITEMAP is not used: measured here, msync of the map made durable
 *   appends several times slower than LMDB's default pwrite + fdatasync.
 */
#include "ledger_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ehr/v1/ledger.pb-c.h"

int ledger__lmdb_error(const ledger *l, int rc, const char *what, ehr_diag *diag)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_MAP_FULL:
        return ehr_diag_fail(diag, EHR_EFULL,
                             "%s: the ledger's map of %llu bytes is full; reopen it with a "
                             "larger map size",
                             what, (unsigned long long)l->options.map_bytes);
    case MDB_NOTFOUND:
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "%s: not found", what);
    case MDB_KEYEXIST:
        return ehr_diag_fail(diag, EHR_EEXIST, "%s: already present", what);
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
        return ehr_diag_fail(diag, EHR_ECORRUPT, "%s: the LMDB environment is damaged (%s)", what,
                             mdb_strerror(rc));
    case MDB_VERSION_MISMATCH:
        return ehr_diag_fail(diag, EHR_EVERSION, "%s: %s", what, mdb_strerror(rc));
    case MDB_READERS_FULL:
        return ehr_diag_fail(diag, EHR_EAGAIN, "%s: all %u reader slots are in use", what,
                             (unsigned)l->options.readers_max);
    case MDB_MAP_RESIZED:
        return ehr_diag_fail(diag, EHR_EAGAIN,
                             "%s: another process grew the map; reopen the ledger", what);
    default:
        if (rc > 0)
            return ehr_diag_fail(diag, -rc, "%s: %s", what, strerror(rc));
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: %s", what, mdb_strerror(rc));
    }
}

int ledger__read_begin(ledger *l, MDB_txn **txn, ehr_diag *diag)
{
    return ledger__lmdb_error(l, mdb_txn_begin(l->env, NULL, MDB_RDONLY, txn),
                              "starting a read transaction", diag);
}

static MDB_val val_of(const void *data, size_t len)
{
    return (MDB_val){.mv_size = len, .mv_data = (void *)data};
}

int ledger__tip_read(ledger *l, MDB_txn *txn, ledger_tip *out, ehr_diag *diag)
{
    MDB_val k = val_of(LEDGER__META_TIP, sizeof LEDGER__META_TIP - 1), v;
    int rc = mdb_get(txn, l->db_meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "the ledger has no chain yet (no genesis)");
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "reading the tip", diag);
    Ehr__V1__ChainTip *t = ehr__v1__chain_tip__unpack(NULL, v.mv_size, v.mv_data);
    if (t == NULL || t->hash.len != EHR_HASH_BYTES) {
        if (t != NULL)
            ehr__v1__chain_tip__free_unpacked(t, NULL);
        return ehr_diag_fail(diag, EHR_ECORRUPT, "the tip record does not decode");
    }
    out->height = t->height;
    memcpy(out->hash, t->hash.data, EHR_HASH_BYTES);
    out->time_ms = t->time_ms;
    out->applied_index = t->applied_index;
    out->tx_count = t->tx_count;
    ehr__v1__chain_tip__free_unpacked(t, NULL);
    return 0;
}

static int tip_write(ledger *l, MDB_txn *txn, const ledger_tip *tip, ehr_diag *diag)
{
    Ehr__V1__ChainTip t = EHR__V1__CHAIN_TIP__INIT;
    t.height = tip->height;
    t.hash = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)tip->hash};
    t.time_ms = tip->time_ms;
    t.applied_index = tip->applied_index;
    t.tx_count = tip->tx_count;
    uint8_t buf[128];
    size_t n = ehr__v1__chain_tip__get_packed_size(&t);
    EHR_ASSERT(n <= sizeof buf);
    ehr__v1__chain_tip__pack(&t, buf);
    MDB_val k = val_of(LEDGER__META_TIP, sizeof LEDGER__META_TIP - 1), v = val_of(buf, n);
    return ledger__lmdb_error(l, mdb_put(txn, l->db_meta, &k, &v, 0), "writing the tip", diag);
}

int ledger__chain_read(ledger *l, MDB_txn *txn, ledger_chain *out, ehr_diag *diag)
{
    MDB_val k = val_of(LEDGER__META_CHAIN, sizeof LEDGER__META_CHAIN - 1), v;
    int rc = mdb_get(txn, l->db_meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "the ledger has no chain yet (no genesis)");
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "reading the chain info", diag);
    Ehr__V1__ChainInfo *c = ehr__v1__chain_info__unpack(NULL, v.mv_size, v.mv_data);
    rc = 0;
    if (c == NULL || c->genesis_hash.len != EHR_HASH_BYTES ||
        c->genesis_block_hash.len != EHR_HASH_BYTES || strlen(c->chain_id) == 0 ||
        strlen(c->chain_id) > EHR_CHAIN_ID_BYTES_MAX) {
        rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the chain info record does not decode");
        goto out;
    }
    if (c->format_version != LEDGER__FORMAT_VERSION) {
        rc = ehr_diag_fail(diag, EHR_EVERSION,
                           "the ledger's format version is %u; this build reads version %d",
                           (unsigned)c->format_version, LEDGER__FORMAT_VERSION);
        goto out;
    }
    memset(out, 0, sizeof *out);
    out->format_version = c->format_version;
    memcpy(out->chain_id, c->chain_id, strlen(c->chain_id));
    memcpy(out->genesis_hash, c->genesis_hash.data, EHR_HASH_BYTES);
    memcpy(out->genesis_block_hash, c->genesis_block_hash.data, EHR_HASH_BYTES);
out:
    if (c != NULL)
        ehr__v1__chain_info__free_unpacked(c, NULL);
    return rc;
}

/* ---- Open and close ---- */

static int options_resolve(const ledger_options *in, ledger_options *out, ehr_diag *diag)
{
    *out = in != NULL ? *in : (ledger_options){0};
    if (out->map_bytes == LEDGER_MAP_BYTES_DEFAULT)
        out->map_bytes = LEDGER_MAP_BYTES_DEFAULT_VALUE;
    if (out->map_bytes < LEDGER_MAP_BYTES_MIN || out->map_bytes > LEDGER_MAP_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "a map of %llu bytes is outside %llu..%llu",
                             (unsigned long long)out->map_bytes,
                             (unsigned long long)LEDGER_MAP_BYTES_MIN,
                             (unsigned long long)LEDGER_MAP_BYTES_MAX);
    long page = sysconf(_SC_PAGESIZE);
    EHR_ASSERT(page > 0);
    out->map_bytes = (out->map_bytes + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
    if (out->readers_max == 0)
        out->readers_max = LEDGER_READERS_MAX_DEFAULT;
    if (out->readers_max > LEDGER_READERS_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "%u readers, over the limit of %d",
                             (unsigned)out->readers_max, LEDGER_READERS_MAX);
    if (out->sync != LEDGER_SYNC_DURABLE && out->sync != LEDGER_SYNC_NONE)
        return ehr_diag_fail(diag, EHR_EINVAL, "unknown sync mode %d", (int)out->sync);
    return 0;
}

/* Open (or, writable, create) the four databases in one transaction. */
static int dbs_open(ledger *l, ehr_diag *diag)
{
    bool ro = l->options.read_only;
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env, NULL, ro ? MDB_RDONLY : 0, &txn);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "opening the databases", diag);
    unsigned flags = ro ? 0 : MDB_CREATE;
    /* The chain info first: a ledger of another format is refused before
     * anything is created in it (the transaction is then aborted). */
    rc = mdb_dbi_open(txn, LEDGER__DB_META, flags, &l->db_meta);
    if (rc == 0) {
        ledger_chain chain;
        ehr_diag why; /* no chain yet is no failure here */
        rc = ledger__chain_read(l, txn, &chain, &why);
        if (rc != 0 && rc != EHR_ENOTFOUND) {
            mdb_txn_abort(txn);
            return ehr_diag_fail(diag, rc, "%s", why.msg);
        }
        rc = 0;
    }
    if (rc == MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "no ledger in %s", l->dir);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return ledger__lmdb_error(l, rc, "opening the databases", diag);
    }
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{LEDGER__DB_BLOCKS, &l->db_blocks}, {LEDGER__DB_WRITES, &l->db_writes}};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(dbs); i++) {
        rc = mdb_dbi_open(txn, dbs[i].name, flags, dbs[i].dbi);
        if (rc == MDB_NOTFOUND) {
            mdb_txn_abort(txn);
            return ehr_diag_fail(diag, EHR_ENOTFOUND, "no ledger in %s", l->dir);
        }
        if (rc != 0) {
            mdb_txn_abort(txn);
            return ledger__lmdb_error(l, rc, "opening the databases", diag);
        }
    }
    /* A ledger written before the Raft log existed has no raft_log database;
     * read-only, it reads as an empty log (writable, it is created). */
    rc = mdb_dbi_open(txn, LEDGER__DB_RAFT_LOG, flags, &l->db_raft_log);
    if (rc != 0 && !(rc == MDB_NOTFOUND && ro)) {
        mdb_txn_abort(txn);
        return ledger__lmdb_error(l, rc, "opening the raft log database", diag);
    }
    l->raft_log_present = rc == 0;
    /* Commit (not abort) so the database handles stay open. */
    return ledger__lmdb_error(l, mdb_txn_commit(txn), "opening the databases", diag);
}

int ledger_open(const char *dir, const ledger_options *options, ledger **out, ehr_diag *diag)
{
    EHR_ASSERT(dir != NULL && out != NULL);
    *out = NULL;
    ledger_options opts;
    int rc = options_resolve(options, &opts, diag);
    if (rc != 0)
        return rc;
    if (!opts.read_only && mkdir(dir, 0700) != 0 && errno != EEXIST)
        return ehr_diag_fail(diag, -errno, "creating %s: %s", dir, strerror(errno));
    ledger *l = ehr_calloc(1, sizeof *l);
    l->options = opts;
    l->dir = ehr_strdup(dir);
    rc = mdb_env_create(&l->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(l->env, 5);
    if (rc == 0)
        rc = mdb_env_set_mapsize(l->env, (size_t)opts.map_bytes);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(l->env, opts.readers_max);
    if (rc != 0) {
        rc = ledger__lmdb_error(l, rc, "creating the LMDB environment", diag);
        goto fail;
    }
    unsigned flags = MDB_NOTLS;
    if (opts.sync == LEDGER_SYNC_NONE)
        flags |= MDB_NOSYNC;
    if (opts.read_only)
        flags |= MDB_RDONLY;
    rc = mdb_env_open(l->env, dir, flags, 0600);
    if (rc == ENOENT) {
        rc = ehr_diag_fail(diag, EHR_ENOTFOUND, "no ledger in %s", dir);
        goto fail;
    }
    if (rc != 0) {
        rc = ledger__lmdb_error(l, rc, "opening the LMDB environment", diag);
        goto fail;
    }
    /* A process killed while reading leaves its reader slot behind. */
    int dead = 0;
    (void)mdb_reader_check(l->env, &dead);
    rc = dbs_open(l, diag);
    if (rc == 0)
        rc = ledger__derived_open(l, diag);
    if (rc != 0)
        goto fail;
    *out = l;
    return 0;
fail:
    ledger_close(l);
    return rc;
}

void ledger_close(ledger *l)
{
    if (l == NULL)
        return;
    ledger__derived_close(l); /* the last checkpoint, then the thread stops */
    if (l->env != NULL)
        mdb_env_close(l->env);
    ehr_free(l->dir);
    ehr_free(l->hashes);
    ehr_free(l->tx_order);
    ehr_free(l);
}

/* ---- Writes ---- */

static int write_begin(ledger *l, MDB_txn **txn, ehr_diag *diag)
{
    if (l->options.read_only)
        return ehr_diag_fail(diag, EHR_EINVAL, "the ledger is open read-only");
    return ledger__lmdb_error(l, mdb_txn_begin(l->env, NULL, 0, txn),
                              "starting a write transaction", diag);
}

/* Store BLOCK under HEIGHT (the next height): framing and block bytes are
 * written straight into the page LMDB reserves. */
static int block_store(ledger *l, MDB_txn *txn, uint64_t height, const uint8_t *block,
                       size_t block_len, ehr_diag *diag)
{
    uint8_t key[8];
    ledger__height_key(key, height);
    size_t prefix = ledger__stored_block_prefix_size(block_len);
    MDB_val k = val_of(key, sizeof key), v = val_of(NULL, prefix + block_len);
    /* MDB_APPEND: heights only grow, so LMDB fills pages in order instead of
     * searching and splitting. */
    int rc = mdb_put(txn, l->db_blocks, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "storing the block", diag);
    uint8_t *dst = v.mv_data;
    ledger__stored_block_prefix_write(dst, height, block, block_len);
    memcpy(dst + prefix, block, block_len);
    return 0;
}

/* Store the write-log record of HEIGHT (the next height), encoded straight
 * into the page LMDB reserves. */
static int writes_store(ledger *l, MDB_txn *txn, uint64_t height, const ledger__write_log *log,
                        ehr_diag *diag)
{
    uint8_t key[8];
    ledger__height_key(key, height);
    size_t size = ledger__writes_record_size(log);
    MDB_val k = val_of(key, sizeof key), v = val_of(NULL, size);
    int rc = mdb_put(txn, l->db_writes, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "storing the write log", diag);
    ledger__writes_record_write(v.mv_data, size, height, log);
    return 0;
}

int ledger__writes_read(ledger *l, MDB_txn *txn, uint64_t height, ledger__write_log *log,
                        ehr_diag *diag)
{
    memset(log, 0, sizeof *log);
    uint8_t key[8];
    ledger__height_key(key, height);
    MDB_val k = val_of(key, sizeof key), v;
    int rc = mdb_get(txn, l->db_writes, &k, &v);
    if (rc == MDB_NOTFOUND)
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "no write-log record at height %llu",
                             (unsigned long long)height);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "reading the write log", diag);
    rc = ledger__writes_record_open(v.mv_data, v.mv_size, height, log);
    if (rc == EHR_ETOOBIG)
        return ehr_diag_fail(diag, rc,
                             "the write-log record at height %llu holds a result over the limit "
                             "of %d bytes, or more than %d results",
                             (unsigned long long)height, EHR_TX_RESULT_BYTES_MAX,
                             EHR_BLOCK_TX_COUNT_MAX);
    if (rc != 0)
        return ehr_diag_fail(diag, EHR_ECORRUPT,
                             "the write-log record at height %llu fails its checksum or format",
                             (unsigned long long)height);
    return 0;
}

void ledger__genesis_writes_make(const Ehr__V1__Genesis *g, ledger__genesis_writes *out)
{
    /* In key order: the emergency policy (empty when the genesis names
     * none: nobody may use emergency access), then the founding members. */
    size_t count = 1 + g->n_members;
    ledger_state_write *writes = ehr_calloc(count, sizeof *writes);
    uint8_t(*keys)[LEDGER_MEMBER_KEY_BYTES] = ehr_calloc(g->n_members + 1, sizeof *keys);
    Ehr__V1__EmergencyPolicy none = EHR__V1__EMERGENCY_POLICY__INIT;
    const Ehr__V1__EmergencyPolicy *policy = g->emergency != NULL ? g->emergency : &none;
    uint8_t *policy_bytes = ehr_malloc(ehr__v1__emergency_policy__get_packed_size(policy) + 1);
    writes[0] =
        (ledger_state_write){.key = (const uint8_t *)LEDGER_EMERGENCY_KEY,
                             .key_len = sizeof LEDGER_EMERGENCY_KEY - 1,
                             .value = policy_bytes,
                             .value_len = ehr__v1__emergency_policy__pack(policy, policy_bytes)};
    EHR_ASSERT(memcmp(LEDGER_EMERGENCY_KEY, LEDGER_MEMBER_KEY_PREFIX, 1) < 0);
    for (size_t i = 0; i < g->n_members; i++) {
        const Ehr__V1__Member *m = g->members[i];
        ledger_member_key(keys[i], m->node_key.data);
        uint8_t *value = ehr_malloc(ehr__v1__member__get_packed_size(m) + 1);
        writes[1 + i] = (ledger_state_write){.key = keys[i],
                                             .key_len = LEDGER_MEMBER_KEY_BYTES,
                                             .value = value,
                                             .value_len = ehr__v1__member__pack(m, value)};
    }
    *out = (ledger__genesis_writes){.writes = writes, .count = count, .keys = keys};
}

void ledger__genesis_writes_release(ledger__genesis_writes *gw)
{
    for (size_t i = 0; i < gw->count; i++)
        ehr_free((void *)gw->writes[i].value);
    ehr_free(gw->writes);
    ehr_free(gw->keys);
    *gw = (ledger__genesis_writes){0};
}

int ledger_genesis_init(ledger *l, const uint8_t *genesis, size_t len, ehr_diag *diag)
{
    uint8_t *block;
    size_t block_len;
    int rc = ledger_genesis_block_build(genesis, len, &block, &block_len, diag);
    if (rc != 0)
        return rc;
    ledger_block_view view;
    rc = ledger_block_parse(block, block_len, &view, NULL);
    EHR_ASSERT(rc == 0); /* what we derive, we accept */
    Ehr__V1__Genesis *g;
    rc = ledger_genesis_parse(genesis, len, &g, NULL);
    EHR_ASSERT(rc == 0);
    ledger__genesis_writes gw;
    ledger__genesis_writes_make(g, &gw);
    /* Block 0 has no transactions, so no results. */
    const ledger__write_log log = {.writes = gw.writes, .write_count = gw.count};
    ledger__ov_block *ov = ledger__ov_block_make(0, NULL, NULL, &log);
    bool reserved = false;
    MDB_txn *txn = NULL;
    rc = write_begin(l, &txn, diag);
    if (rc == 0) {
        rc = ledger__derived_reserve(l, ov->bytes, diag);
        reserved = rc == 0;
    }
    if (rc != 0)
        goto out;
    ledger_chain existing;
    ehr_diag why; /* no chain yet is what we want */
    rc = ledger__chain_read(l, txn, &existing, &why);
    if (rc == 0) {
        rc = ehr_diag_fail(diag, EHR_EEXIST, "the ledger already holds chain \"%s\"",
                           existing.chain_id);
        goto out;
    }
    if (rc != EHR_ENOTFOUND) {
        rc = ehr_diag_fail(diag, rc, "%s", why.msg);
        goto out;
    }
    rc = block_store(l, txn, 0, block, block_len, diag);
    if (rc == 0)
        rc = writes_store(l, txn, 0, &log, diag);
    if (rc == 0) {
        Ehr__V1__ChainInfo c = EHR__V1__CHAIN_INFO__INIT;
        c.format_version = LEDGER__FORMAT_VERSION;
        c.chain_id = g->chain_id;
        c.genesis_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, view.header.genesis_hash};
        c.genesis_block_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, view.hash};
        uint8_t buf[256];
        size_t n = ehr__v1__chain_info__get_packed_size(&c);
        EHR_ASSERT(n <= sizeof buf);
        ehr__v1__chain_info__pack(&c, buf);
        MDB_val k = val_of(LEDGER__META_CHAIN, sizeof LEDGER__META_CHAIN - 1), v = val_of(buf, n);
        rc = ledger__lmdb_error(l, mdb_put(txn, l->db_meta, &k, &v, 0), "writing the chain info",
                                diag);
    }
    if (rc == 0) {
        ledger_tip tip = {.height = 0, .time_ms = view.header.time_ms};
        memcpy(tip.hash, view.hash, EHR_HASH_BYTES);
        rc = tip_write(l, txn, &tip, diag);
    }
    if (rc == 0) {
        rc = ledger__lmdb_error(l, mdb_txn_commit(txn), "committing block 0", diag);
        txn = NULL;
    }
    if (rc == 0) {
        pthread_mutex_lock(&l->checkpoint_mu);
        memcpy(l->genesis_block_hash, view.hash, EHR_HASH_BYTES);
        l->chain_known = true;
        pthread_mutex_unlock(&l->checkpoint_mu);
        ledger__derived_publish(l, ov);
        ov = NULL;
    }
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (ov != NULL && reserved)
        ledger__derived_unreserve(l, ov->bytes);
    ehr_free(ov);
    ledger__genesis_writes_release(&gw);
    ehr__v1__genesis__free_unpacked(g, NULL);
    ledger_block_view_release(&view);
    ehr_free(block);
    return rc;
}

/* Grow the append scratch to COUNT transactions. */
static void scratch_reserve(ledger *l, size_t count)
{
    if (count > l->tx_capacity) {
        l->hashes = ehr_realloc(l->hashes, count * EHR_HASH_BYTES);
        l->tx_order = ehr_realloc(l->tx_order, count * sizeof *l->tx_order);
        l->tx_capacity = count;
    }
}

/* Sort context: qsort has none, and one writer at a time appends. */
static _Thread_local const uint8_t (*sort_hashes)[EHR_HASH_BYTES];

static int tx_order_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return memcmp(sort_hashes[x], sort_hashes[y], EHR_HASH_BYTES);
}

/* Check the request's state writes against the limits. */
static int writes_check(const ledger_append *req, ehr_diag *diag)
{
    if (req->write_count > EHR_BLOCK_STATE_WRITES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "%zu state writes, over the limit of %d per block",
                             req->write_count, EHR_BLOCK_STATE_WRITES_MAX);
    if (req->write_count > 0 && req->writes == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "state writes missing");
    size_t total = 0;
    for (size_t i = 0; i < req->write_count; i++) {
        const ledger_state_write *w = &req->writes[i];
        if (w->key == NULL || w->key_len == 0 || w->key_len > EHR_STATE_KEY_BYTES_MAX)
            return ehr_diag_fail(
                diag, w->key_len > EHR_STATE_KEY_BYTES_MAX ? EHR_ETOOBIG : EHR_EINVAL,
                "state write %zu: key must be 1..%d bytes", i, EHR_STATE_KEY_BYTES_MAX);
        if (!w->remove && w->value_len > EHR_STATE_VALUE_BYTES_MAX)
            return ehr_diag_fail(diag, EHR_ETOOBIG,
                                 "state write %zu: value is %zu bytes, over the limit of %d", i,
                                 w->value_len, EHR_STATE_VALUE_BYTES_MAX);
        if (!w->remove && w->value_len > 0 && w->value == NULL)
            return ehr_diag_fail(diag, EHR_EINVAL, "state write %zu: value missing", i);
        total += w->key_len + (w->remove ? 0 : w->value_len);
        if (total > EHR_BLOCK_STATE_BYTES_MAX)
            return ehr_diag_fail(diag, EHR_ETOOBIG, "state writes over the limit of %d bytes",
                                 EHR_BLOCK_STATE_BYTES_MAX);
    }
    return 0;
}

/* Check the request's results: one per transaction, each within the limit. */
static int results_check(const ledger_append *req, const ledger_block_header *h, ehr_diag *diag)
{
    if (req->result_count != h->tx_count)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "block %llu: %zu results for %u transactions (one result per "
                             "transaction, in block order)",
                             (unsigned long long)h->height, req->result_count,
                             (unsigned)h->tx_count);
    if (req->result_count > 0 && req->results == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "block %llu: results missing",
                             (unsigned long long)h->height);
    for (size_t i = 0; i < req->result_count; i++) {
        const ledger_bytes *r = &req->results[i];
        if (r->len > EHR_TX_RESULT_BYTES_MAX)
            return ehr_diag_fail(diag, EHR_ETOOBIG,
                                 "block %llu tx %zu: the result is %zu bytes, over the limit of %d",
                                 (unsigned long long)h->height, i, r->len, EHR_TX_RESULT_BYTES_MAX);
        if (r->len > 0 && r->data == NULL)
            return ehr_diag_fail(diag, EHR_EINVAL, "block %llu tx %zu: result bytes missing",
                                 (unsigned long long)h->height, i);
    }
    return 0;
}

/* Everything that can be checked without the database, before the write
 * transaction (which holds LMDB's writer lock) starts. */
static int append_precheck(ledger *l, const ledger_append *req, const ledger_block_view *view,
                           ehr_diag *diag)
{
    const ledger_block_header *h = &view->header;
    if (h->height == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "block 0 is written by ledger_genesis_init only");
    int rc = writes_check(req, diag);
    if (rc == 0)
        rc = results_check(req, h, diag);
    if (rc != 0)
        return rc;
    uint32_t n = h->tx_count;
    scratch_reserve(l, n);
    if (req->tx_hashes != NULL && n > 0) {
        memcpy(l->hashes, req->tx_hashes, (size_t)n * EHR_HASH_BYTES);
#ifndef NDEBUG
        for (uint32_t i = 0; i < n; i++) {
            ledger_tx_view tx;
            EHR_ASSERT(ledger_tx_envelope_parse(view->bytes + view->txs[i].offset,
                                                view->txs[i].length, &tx, NULL) == 0);
            uint8_t hash[EHR_HASH_BYTES];
            ledger_tx_hash(tx.body, tx.body_len, hash);
            EHR_ASSERT(memcmp(hash, l->hashes[i], EHR_HASH_BYTES) == 0);
        }
#endif
    } else {
        for (uint32_t i = 0; i < n; i++) {
            ledger_tx_view tx;
            rc = ledger_tx_envelope_parse(view->bytes + view->txs[i].offset, view->txs[i].length,
                                          &tx, NULL);
            EHR_ASSERT(rc == 0); /* ledger_block_parse checked the framing */
            ledger_tx_hash(tx.body, tx.body_len, l->hashes[i]);
        }
    }
    uint8_t root[EHR_HASH_BYTES];
    ledger_merkle_root((const uint8_t(*)[EHR_HASH_BYTES])l->hashes, n, root);
    if (memcmp(root, h->tx_root, EHR_HASH_BYTES) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "block %llu: tx_root does not match its transactions",
                             (unsigned long long)h->height);
    ehr_public_key proposer;
    if (ehr_public_key_parse(&proposer, h->proposer) != 0 ||
        ehr_schnorr_verify(&proposer, view->hash, view->signature) != 0)
        return ehr_diag_fail(diag, EHR_EBADSIG,
                             "block %llu: the proposer's header signature does not verify",
                             (unsigned long long)h->height);
    /* Sorting puts a transaction that is in the block twice next to
     * itself (and the lookups against the index walk it in order). */
    for (uint32_t i = 0; i < n; i++)
        l->tx_order[i] = i;
    sort_hashes = (const uint8_t(*)[EHR_HASH_BYTES])l->hashes;
    if (n > 1)
        qsort(l->tx_order, n, sizeof *l->tx_order, tx_order_cmp);
    for (uint32_t i = 1; i < n; i++)
        if (memcmp(l->hashes[l->tx_order[i]], l->hashes[l->tx_order[i - 1]], EHR_HASH_BYTES) == 0)
            return ehr_diag_fail(diag, EHR_EEXIST, "block %llu holds transactions %u and %u twice",
                                 (unsigned long long)h->height, (unsigned)l->tx_order[i - 1],
                                 (unsigned)l->tx_order[i]);
    return 0;
}

/* The checks against the tip, inside the write transaction. */
static int append_link_check(ledger *l, MDB_txn *txn, const ledger_append *req,
                             const ledger_block_view *view, ledger_tip *tip, ehr_diag *diag)
{
    const ledger_block_header *h = &view->header;
    int rc = ledger__tip_read(l, txn, tip, diag);
    if (rc != 0)
        return rc;
    if (h->height != tip->height + 1)
        return ehr_diag_fail(diag, EHR_ELINK, "block height %llu does not follow the tip at %llu",
                             (unsigned long long)h->height, (unsigned long long)tip->height);
    if (memcmp(h->prev_hash, tip->hash, EHR_HASH_BYTES) != 0)
        return ehr_diag_fail(diag, EHR_ELINK, "block %llu: prev_hash is not the hash of block %llu",
                             (unsigned long long)h->height, (unsigned long long)tip->height);
    if (h->time_ms < tip->time_ms)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "block %llu: time %llu ms is before the tip's %llu ms",
                             (unsigned long long)h->height, (unsigned long long)h->time_ms,
                             (unsigned long long)tip->time_ms);
    if (req->applied_index < tip->applied_index)
        return ehr_diag_fail(diag, EHR_EINVAL, "applied index %llu is below the current %llu",
                             (unsigned long long)req->applied_index,
                             (unsigned long long)tip->applied_index);
    return 0;
}

/* The checks against the tx index and the world state (overlay, then the
 * derived tables): the proposer is a member, no transaction is already on
 * the ledger. */
static int append_index_check(ledger *l, const ledger_block_view *view, ehr_diag *diag)
{
    const ledger_block_header *h = &view->header;
    ledger__view v;
    int rc = ledger__view_begin(l, &v, diag);
    if (rc != 0)
        return rc;
    uint8_t key[LEDGER_MEMBER_KEY_BYTES];
    ledger_member_key(key, h->proposer);
    const uint8_t *value;
    size_t value_len;
    rc = ledger__view_state(&v, key, sizeof key, &value, &value_len, diag);
    if (rc == EHR_ENOTFOUND)
        rc = ehr_diag_fail(diag, EHR_EDENIED, "block %llu: the proposer is not a member",
                           (unsigned long long)h->height);
    for (uint32_t j = 0; rc == 0 && j < h->tx_count; j++) {
        uint32_t i = l->tx_order[j];
        ledger_tx_location loc;
        int found = ledger__view_tx(&v, l->hashes[i], &loc, NULL, diag);
        if (found == 0 || found == EHR_ECORRUPT) {
            char hex[2 * EHR_HASH_BYTES + 1];
            ehr_hex_encode(hex, l->hashes[i], EHR_HASH_BYTES);
            rc = ehr_diag_fail(diag, EHR_EEXIST, "block %llu tx %u (%s) is already on the ledger",
                               (unsigned long long)h->height, (unsigned)i, hex);
        } else if (found != EHR_ENOTFOUND) {
            rc = found;
        }
    }
    ledger__view_end(&v);
    return rc;
}

int ledger_append_block(ledger *l, const ledger_append *req, ehr_diag *diag)
{
    EHR_ASSERT(req != NULL);
    if (l->options.read_only)
        return ehr_diag_fail(diag, EHR_EINVAL, "the ledger is open read-only");
    ledger_block_view parsed;
    const ledger_block_view *v = req->view;
    int rc = 0;
    if (v == NULL) {
        rc = ledger_block_parse(req->block, req->block_len, &parsed, diag);
        if (rc != 0)
            return rc;
        v = &parsed;
    } else {
        EHR_ASSERT(v->bytes == req->block); /* the view of these very bytes */
        EHR_ASSERT(v->len == req->block_len);
    }
    const ledger_block_view view = *v; /* read-only copy; the spans stay the owner's */
    MDB_txn *txn = NULL;
    ledger__ov_block *ov = NULL;
    rc = append_precheck(l, req, &view, diag);
    if (rc != 0)
        goto out;
    /* The block's write-log record: its state writes and its results. */
    const ledger__write_log log = {.writes = req->writes,
                                   .write_count = req->write_count,
                                   .results = req->results,
                                   .result_count = req->result_count};
    /* The overlay's copy of the rows, made before any lock is taken. */
    ov = ledger__ov_block_make(view.header.height, (const uint8_t(*)[EHR_HASH_BYTES])l->hashes,
                               view.txs, &log);
    /* Back-pressure: wait for the checkpoint to make room (invariant 3 of
     * derived.c), before taking LMDB's writer lock. */
    rc = ledger__derived_reserve(l, ov->bytes, diag);
    if (rc != 0) {
        ehr_free(ov);
        ov = NULL;
        goto out;
    }
    rc = write_begin(l, &txn, diag);
    ledger_tip tip;
    if (rc == 0)
        rc = append_link_check(l, txn, req, &view, &tip, diag);
    if (rc == 0)
        rc = append_index_check(l, &view, diag);
    /* Only sequential keys on the durable path: the block, its write-log
     * record (both MDB_APPEND by height) and the tip. */
    if (rc == 0)
        rc = block_store(l, txn, view.header.height, req->block, req->block_len, diag);
    if (rc == 0)
        rc = writes_store(l, txn, view.header.height, &log, diag);
    if (rc == 0) {
        ledger_tip next = {.height = view.header.height,
                           .time_ms = view.header.time_ms,
                           .applied_index = req->applied_index,
                           .tx_count = tip.tx_count + view.header.tx_count};
        memcpy(next.hash, view.hash, EHR_HASH_BYTES);
        rc = tip_write(l, txn, &next, diag);
    }
    if (rc == 0) {
        /* The commit is the one point where the block becomes durable; it
         * is visible to lookups once its rows are in the overlay. On error
         * LMDB has freed TXN. */
        rc = ledger__lmdb_error(l, mdb_txn_commit(txn), "committing the block", diag);
        txn = NULL;
    }
    if (rc == 0) {
        ledger__derived_publish(l, ov);
        ov = NULL;
    } else {
        ledger__derived_unreserve(l, ov->bytes);
    }
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    ehr_free(ov);
    if (v == &parsed)
        ledger_block_view_release(&parsed);
    return rc;
}

int ledger_applied_index_set(ledger *l, uint64_t index, ehr_diag *diag)
{
    MDB_txn *txn;
    int rc = write_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    ledger_tip tip;
    rc = ledger__tip_read(l, txn, &tip, diag);
    if (rc == 0 && index < tip.applied_index)
        rc = ehr_diag_fail(diag, EHR_EINVAL, "applied index %llu is below the current %llu",
                           (unsigned long long)index, (unsigned long long)tip.applied_index);
    if (rc == 0) {
        tip.applied_index = index;
        rc = tip_write(l, txn, &tip, diag);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return ledger__lmdb_error(l, mdb_txn_commit(txn), "committing the applied index", diag);
}

/* ---- Reads ---- */

int ledger_tip_get(ledger *l, ledger_tip *out, ehr_diag *diag)
{
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    rc = ledger__tip_read(l, txn, out, diag);
    mdb_txn_abort(txn);
    return rc;
}

int ledger_chain_get(ledger *l, ledger_chain *out, ehr_diag *diag)
{
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    rc = ledger__chain_read(l, txn, out, diag);
    mdb_txn_abort(txn);
    return rc;
}

static uint8_t *copy_out(const void *data, size_t len)
{
    if (len == 0)
        return NULL;
    uint8_t *p = ehr_malloc(len);
    memcpy(p, data, len);
    return p;
}

int ledger_block_get(ledger *l, uint64_t height, uint8_t **bytes, size_t *len, ehr_diag *diag)
{
    EHR_ASSERT(bytes != NULL && len != NULL);
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    uint8_t key[8];
    ledger__height_key(key, height);
    MDB_val k = val_of(key, sizeof key), v;
    rc = mdb_get(txn, l->db_blocks, &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = ehr_diag_fail(diag, EHR_ENOTFOUND, "no block at height %llu",
                           (unsigned long long)height);
    } else if (rc != 0) {
        rc = ledger__lmdb_error(l, rc, "reading a block", diag);
    } else {
        const uint8_t *block;
        size_t block_len;
        rc = ledger__stored_block_open(v.mv_data, v.mv_size, height, &block, &block_len);
        if (rc != 0)
            rc =
                ehr_diag_fail(diag, rc, "block %llu is corrupt: its stored checksum does not match",
                              (unsigned long long)height);
        else {
            *bytes = copy_out(block, block_len);
            *len = block_len;
        }
    }
    mdb_txn_abort(txn);
    return rc;
}

int ledger_tx_get(ledger *l, const uint8_t hash[EHR_HASH_BYTES], ledger_tx_location *location,
                  uint8_t **envelope, size_t *envelope_len, uint8_t **result, size_t *result_len,
                  ehr_diag *diag)
{
    EHR_ASSERT(hash != NULL);
    EHR_ASSERT(location != NULL);
    EHR_ASSERT(envelope == NULL || envelope_len != NULL);
    EHR_ASSERT(result == NULL || result_len != NULL);
    ledger__view view;
    int rc = ledger__view_begin(l, &view, diag);
    if (rc != 0)
        return rc;
    /* The result is borrowed from the overlay or the derived snapshot:
     * copied before the view ends. */
    ledger_bytes stored = {NULL, 0};
    rc = ledger__view_tx(&view, hash, location, &stored, diag);
    uint8_t *result_copy = rc == 0 && result != NULL ? copy_out(stored.data, stored.len) : NULL;
    ledger__view_end(&view);
    if (rc == EHR_ENOTFOUND)
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "no such transaction on the ledger");
    if (rc != 0)
        return rc;
    EHR_ASSERT(stored.len <= EHR_TX_RESULT_BYTES_MAX);
    /* Blocks never change once written: the main environment is read after
     * the view, in its own snapshot (which holds the block: it committed
     * before its row was published). */
    MDB_txn *txn;
    rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0) {
        ehr_free(result_copy);
        return rc;
    }
    uint8_t key[8];
    ledger__height_key(key, location->height);
    MDB_val k = val_of(key, sizeof key), v;
    rc = mdb_get(txn, l->db_blocks, &k, &v);
    if (rc != 0) {
        rc = rc == MDB_NOTFOUND
                 ? ehr_diag_fail(diag, EHR_ECORRUPT, "the tx index points at missing block %llu",
                                 (unsigned long long)location->height)
                 : ledger__lmdb_error(l, rc, "reading a block", diag);
        goto out;
    }
    /* Read the envelope in place; its body hash is its check (the block's
     * checksum covers 100s of KiB, too much for one lookup). */
    const uint8_t *block;
    size_t block_len;
    ledger_tx_view tx;
    uint8_t body_hash[EHR_HASH_BYTES];
    if (ledger__stored_block_locate(v.mv_data, v.mv_size, &block, &block_len, NULL) != 0 ||
        location->offset > block_len || location->length > block_len - location->offset ||
        ledger_tx_envelope_parse(block + location->offset, location->length, &tx, NULL) != 0 ||
        (ledger_tx_hash(tx.body, tx.body_len, body_hash),
         memcmp(body_hash, hash, EHR_HASH_BYTES) != 0)) {
        rc = ehr_diag_fail(diag, EHR_ECORRUPT,
                           "the transaction stored at block %llu position %u does not match "
                           "its hash",
                           (unsigned long long)location->height, (unsigned)location->index);
        goto out;
    }
    if (envelope != NULL) {
        *envelope = copy_out(block + location->offset, location->length);
        *envelope_len = location->length;
    }
    if (result != NULL) {
        *result = result_copy;
        *result_len = stored.len;
        result_copy = NULL;
    }
out:
    mdb_txn_abort(txn);
    ehr_free(result_copy);
    return rc;
}

int ledger_state_get(ledger *l, const uint8_t *key, size_t key_len, uint8_t **value,
                     size_t *value_len, ehr_diag *diag)
{
    EHR_ASSERT(value != NULL && value_len != NULL);
    if (key == NULL || key_len == 0 || key_len > EHR_STATE_KEY_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "a state key is 1..%d bytes",
                             EHR_STATE_KEY_BYTES_MAX);
    ledger__view view;
    int rc = ledger__view_begin(l, &view, diag);
    if (rc != 0)
        return rc;
    const uint8_t *data;
    size_t len;
    rc = ledger__view_state(&view, key, key_len, &data, &len, diag);
    if (rc == EHR_ENOTFOUND)
        rc = ehr_diag_fail(diag, EHR_ENOTFOUND, "no such state key");
    else if (rc == 0) {
        *value = copy_out(data, len);
        *value_len = len;
    }
    ledger__view_end(&view);
    return rc;
}

long ledger_state_scan(ledger *l, const uint8_t *prefix, size_t prefix_len, const uint8_t *after,
                       size_t after_len, size_t count_max, ledger_scan_fn fn, void *ctx,
                       ehr_diag *diag)
{
    EHR_ASSERT(fn != NULL);
    if (count_max == 0 || count_max > LEDGER_SCAN_COUNT_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "a scan visits 1..%d keys", LEDGER_SCAN_COUNT_MAX);
    if (prefix_len > EHR_STATE_KEY_BYTES_MAX || after_len > EHR_STATE_KEY_BYTES_MAX ||
        (prefix == NULL && prefix_len > 0) || (after == NULL && after_len > 0))
        return ehr_diag_fail(diag, EHR_EINVAL, "scan prefix or start key over %d bytes",
                             EHR_STATE_KEY_BYTES_MAX);
    /* Start at the prefix, or after AFTER if that lies beyond it. */
    bool skip_equal = after != NULL && ledger__key_cmp(after, after_len, prefix, prefix_len) >= 0;
    const uint8_t *start = skip_equal ? after : prefix;
    size_t start_len = skip_equal ? after_len : prefix_len;
    /* The callback runs inside the view (the overlay held shared and one
     * derived snapshot), so it may read the ledger again. */
    ledger__view view;
    int rc = ledger__view_begin(l, &view, diag);
    if (rc != 0)
        return rc;
    ledger__state_cursor cur;
    rc = ledger__state_cursor_open(&view, start, start_len, &cur, diag);
    long visited = 0;
    const uint8_t *k, *v;
    size_t k_len, v_len;
    while (rc == 0 && (rc = ledger__state_cursor_next(&cur, &k, &k_len, &v, &v_len, diag)) == 0) {
        if (k_len < prefix_len || (prefix_len > 0 && memcmp(k, prefix, prefix_len) != 0)) {
            rc = 1;
            break;
        }
        if (skip_equal && ledger__key_cmp(k, k_len, after, after_len) == 0)
            continue;
        int cb = fn(ctx, k, k_len, v, v_len);
        visited++;
        if (cb < 0)
            rc = cb;
        else if (cb > 0 || (size_t)visited == count_max)
            rc = 1;
    }
    ledger__state_cursor_close(&cur);
    ledger__view_end(&view);
    return rc < 0 ? rc : visited;
}

int ledger_stats_get(ledger *l, ledger_stats *out, ehr_diag *diag)
{
    memset(out, 0, sizeof *out);
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    MDB_stat st;
    if (mdb_stat(txn, l->db_blocks, &st) == 0)
        out->blocks = st.ms_entries;
    if (l->raft_log_present && mdb_stat(txn, l->db_raft_log, &st) == 0)
        out->raft_entries = st.ms_entries;
    mdb_txn_abort(txn);
    rc = ledger__derived_stats(l, out, diag);
    if (rc != 0)
        return rc;
    MDB_envinfo info;
    mdb_env_info(l->env, &info);
    out->map_bytes = info.me_mapsize;
    const char *files[] = {"data.mdb", LEDGER__DERIVED_FILE};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(files); i++) {
        char path[4096];
        struct stat fs;
        int n = snprintf(path, sizeof path, "%s/%s", l->dir, files[i]);
        if (n > 0 && (size_t)n < sizeof path && stat(path, &fs) == 0)
            out->file_bytes += (uint64_t)fs.st_blocks * 512;
    }
    return 0;
}
