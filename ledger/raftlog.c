/*
 * raftlog.c - the node's Raft log in the ledger's LMDB environment: entries
 * in the "raft_log" database keyed by index, the hard state, snapshot meta
 * and first index (with the boundary record) in "meta"; one write
 * transaction per ledger_raft_write, reads in short read transactions.
 *
 * Not here: what the records mean. They are opaque: the node encodes them
 * with consensus/'s checksummed codec, so this file neither decodes nor
 * checksums them; it keeps the log one contiguous run of indices.
 *
 * LMDB caveats, as they apply here (see also store.c):
 * - One write transaction at a time per environment, shared with
 *   ledger_append_block: the node serialises both on its loop thread. A
 *   second writer would block in mdb_txn_begin, not fail.
 * - Pointers LMDB returns are valid only inside their transaction: reads
 *   copy out (ledger_raft_entry_get) or call back inside the snapshot
 *   (ledger_raft_entries_read); nothing returned outlives the call.
 * - MDB_APPEND requires the key to sort after every key in the database.
 *   Truncation runs first, so an append's keys always do; LMDB would answer
 *   MDB_KEYEXIST otherwise, which here would be a bug (asserted).
 * - LMDB does not checksum pages: the node's records carry their own CRC32C.
 *   What the ledger can check cheaply it checks on every read: the run of
 *   keys starts at first and has last - first + 1 entries (mdb_stat count).
 */
#include "ledger_internal.h"

#include <string.h>

static MDB_val val_of(const void *data, size_t len)
{
    return (MDB_val){.mv_size = len, .mv_data = (void *)data};
}

static uint64_t index_of_key(const MDB_val *k)
{
    EHR_ASSERT(k->mv_size == 8);
    const uint8_t *p = k->mv_data;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static MDB_val meta_key(const char *name)
{
    return val_of(name, strlen(name));
}

/* The log's bounds inside TXN, checked against the stored keys. */
static int bounds_read(ledger *l, MDB_txn *txn, uint64_t *first_out, uint64_t *last_out,
                       ehr_diag *diag)
{
    uint64_t first = 1;
    MDB_val k = meta_key(LEDGER__META_RAFT_FIRST), v;
    int rc = mdb_get(txn, l->db_meta, &k, &v);
    if (rc == 0) {
        if (v.mv_size < 8 || v.mv_size > 8 + LEDGER_RAFT_META_BYTES_MAX)
            return ehr_diag_fail(diag, EHR_ECORRUPT, "the raft first-index record is %zu bytes",
                                 v.mv_size);
        MDB_val head = val_of(v.mv_data, 8);
        first = index_of_key(&head);
        if (first == 0)
            return ehr_diag_fail(diag, EHR_ECORRUPT, "the raft first index is 0");
    } else if (rc != MDB_NOTFOUND) {
        return ledger__lmdb_error(l, rc, "reading the raft first index", diag);
    }
    uint64_t last = first - 1;
    if (l->raft_log_present) {
        MDB_stat st;
        rc = mdb_stat(txn, l->db_raft_log, &st);
        if (rc != 0)
            return ledger__lmdb_error(l, rc, "counting the raft log", diag);
        if (st.ms_entries > 0) {
            MDB_cursor *c;
            rc = mdb_cursor_open(txn, l->db_raft_log, &c);
            if (rc != 0)
                return ledger__lmdb_error(l, rc, "reading the raft log", diag);
            MDB_val lo, hi, d;
            rc = mdb_cursor_get(c, &lo, &d, MDB_FIRST);
            if (rc == 0)
                rc = mdb_cursor_get(c, &hi, &d, MDB_LAST);
            mdb_cursor_close(c);
            if (rc != 0)
                return ledger__lmdb_error(l, rc, "reading the raft log", diag);
            if (lo.mv_size != 8 || hi.mv_size != 8)
                return ehr_diag_fail(diag, EHR_ECORRUPT, "a raft log key is not 8 bytes");
            uint64_t lo_index = index_of_key(&lo);
            last = index_of_key(&hi);
            if (lo_index != first || last - first + 1 != st.ms_entries)
                return ehr_diag_fail(diag, EHR_ECORRUPT,
                                     "the raft log is not one run: first %llu, keys %llu..%llu, "
                                     "%llu entries",
                                     (unsigned long long)first, (unsigned long long)lo_index,
                                     (unsigned long long)last, (unsigned long long)st.ms_entries);
        }
    }
    *first_out = first;
    *last_out = last;
    return 0;
}

/* ---- Writes ---- */

static int meta_bytes_check(const ledger_bytes *b, const char *what, ehr_diag *diag)
{
    if (b->data == NULL)
        return 0;
    if (b->len == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "the %s record is empty", what);
    if (b->len > LEDGER_RAFT_META_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "the %s record is %zu bytes, over the limit of %d",
                             what, b->len, LEDGER_RAFT_META_BYTES_MAX);
    return 0;
}

/* The checks that need no transaction: sizes and presence. */
static int write_shape_check(ledger *l, const ledger_raft_batch *w, ehr_diag *diag)
{
    if (l->options.read_only)
        return ehr_diag_fail(diag, EHR_EINVAL, "the ledger is open read-only");
    if (w->truncate_from == 0 && w->compact_index == 0 && w->entry_count == 0 &&
        w->hard_state.data == NULL && w->snapshot_meta.data == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "the raft write changes nothing");
    if (w->entry_count > LEDGER_RAFT_WRITE_ENTRIES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG,
                             "%zu entries in one raft write, over the limit of %d", w->entry_count,
                             LEDGER_RAFT_WRITE_ENTRIES_MAX);
    if (w->entry_count > 0 && (w->entries == NULL || w->append_index == 0))
        return ehr_diag_fail(diag, EHR_EINVAL, "raft entries without an array or a start index");
    if (w->entry_count > 0 && w->append_index > UINT64_MAX - w->entry_count)
        return ehr_diag_fail(diag, EHR_EINVAL, "raft entry indices overflow");
    for (size_t i = 0; i < w->entry_count; i++) {
        if (w->entries[i].data == NULL || w->entries[i].len == 0)
            return ehr_diag_fail(diag, EHR_EINVAL, "raft entry %zu is empty", i);
        if (w->entries[i].len > LEDGER_RAFT_ENTRY_BYTES_MAX)
            return ehr_diag_fail(diag, EHR_ETOOBIG,
                                 "raft entry %zu is %zu bytes, over the limit of %d", i,
                                 w->entries[i].len, LEDGER_RAFT_ENTRY_BYTES_MAX);
    }
    if (w->compact_index != 0 && w->boundary.data == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "compaction without a boundary record");
    if (w->compact_index == 0 && w->boundary.data != NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "a boundary record without compaction");
    int rc = meta_bytes_check(&w->boundary, "boundary", diag);
    if (rc == 0)
        rc = meta_bytes_check(&w->hard_state, "hard state", diag);
    if (rc == 0)
        rc = meta_bytes_check(&w->snapshot_meta, "snapshot meta", diag);
    return rc;
}

/* The checks against the log as it is: the indices of each step. */
static int write_range_check(const ledger_raft_batch *w, uint64_t first, uint64_t last,
                             ehr_diag *diag)
{
    if (w->truncate_from != 0) {
        if (w->truncate_from < first || w->truncate_from > last + 1)
            return ehr_diag_fail(diag, EHR_EINVAL,
                                 "truncating from %llu, outside the log's %llu..%llu + 1",
                                 (unsigned long long)w->truncate_from, (unsigned long long)first,
                                 (unsigned long long)last);
        last = w->truncate_from - 1;
    }
    if (w->compact_index != 0) {
        if (w->compact_index < first)
            return ehr_diag_fail(diag, EHR_EINVAL, "compacting to %llu, below the first index %llu",
                                 (unsigned long long)w->compact_index, (unsigned long long)first);
        first = w->compact_index;
        if (last < first - 1)
            last = first - 1;
    }
    if (w->entry_count > 0 && (w->append_index < first || w->append_index > last + 1))
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "appending at %llu: not contiguous with the log %llu..%llu",
                             (unsigned long long)w->append_index, (unsigned long long)first,
                             (unsigned long long)last);
    return 0;
}

/* Delete the entries LO..HI (inclusive), each of which must be there.
 * By key rather than by cursor: deleting the last item leaves an LMDB
 * cursor without a position, and the ranges are known anyway. */
static int entries_delete(ledger *l, MDB_txn *txn, uint64_t lo, uint64_t hi, ehr_diag *diag)
{
    EHR_ASSERT(lo >= 1);
    for (uint64_t index = lo; index <= hi; index++) {
        uint8_t key[8];
        ledger__height_key(key, index);
        MDB_val k = val_of(key, sizeof key);
        int rc = mdb_del(txn, l->db_raft_log, &k, NULL);
        if (rc == MDB_NOTFOUND)
            return ehr_diag_fail(diag, EHR_ECORRUPT, "raft entry %llu is missing inside the log",
                                 (unsigned long long)index);
        if (rc != 0)
            return ledger__lmdb_error(l, rc, "deleting raft entries", diag);
    }
    return 0;
}

static int meta_put(ledger *l, MDB_txn *txn, const char *name, const uint8_t *head, size_t head_len,
                    const ledger_bytes *b, ehr_diag *diag)
{
    MDB_val k = meta_key(name), v = val_of(NULL, head_len + b->len);
    int rc = mdb_put(txn, l->db_meta, &k, &v, MDB_RESERVE);
    if (rc != 0)
        return ledger__lmdb_error(l, rc, "writing raft metadata", diag);
    if (head_len > 0)
        memcpy(v.mv_data, head, head_len);
    memcpy((uint8_t *)v.mv_data + head_len, b->data, b->len);
    return 0;
}

int ledger_raft_write(ledger *l, const ledger_raft_batch *w, ehr_diag *diag)
{
    EHR_ASSERT(l != NULL && w != NULL);
    int rc = write_shape_check(l, w, diag);
    if (rc != 0)
        return rc;
    MDB_txn *txn;
    rc = ledger__lmdb_error(l, mdb_txn_begin(l->env, NULL, 0, &txn),
                            "starting a raft write transaction", diag);
    if (rc != 0)
        return rc;
    uint64_t first, last;
    rc = bounds_read(l, txn, &first, &last, diag);
    if (rc == 0)
        rc = write_range_check(w, first, last, diag);
    if (rc == 0 && w->truncate_from != 0 && w->truncate_from <= last) {
        rc = entries_delete(l, txn, w->truncate_from, last, diag);
        last = w->truncate_from - 1;
    }
    if (rc == 0 && w->compact_index != 0) {
        uint64_t drop_to = w->compact_index - 1 < last ? w->compact_index - 1 : last;
        rc = entries_delete(l, txn, first, drop_to, diag);
        first = w->compact_index;
        if (last < first - 1)
            last = first - 1;
        uint8_t head[8];
        ledger__height_key(head, first);
        if (rc == 0)
            rc = meta_put(l, txn, LEDGER__META_RAFT_FIRST, head, sizeof head, &w->boundary, diag);
    }
    if (rc == 0 && w->entry_count > 0) {
        if (w->append_index <= last)
            rc = entries_delete(l, txn, w->append_index, last, diag);
        for (size_t i = 0; rc == 0 && i < w->entry_count; i++) {
            uint8_t key[8];
            ledger__height_key(key, w->append_index + i);
            MDB_val k = val_of(key, sizeof key), v = val_of(w->entries[i].data, w->entries[i].len);
            /* MDB_APPEND: indices only grow past what truncation left, so
             * LMDB fills pages in order without searching or splitting. */
            rc = mdb_put(txn, l->db_raft_log, &k, &v, MDB_APPEND);
            EHR_ASSERT(rc != MDB_KEYEXIST); /* truncation cleared every later key */
            rc = ledger__lmdb_error(l, rc, "appending a raft entry", diag);
        }
        last = w->append_index + w->entry_count - 1;
    }
    if (rc == 0 && w->hard_state.data != NULL)
        rc = meta_put(l, txn, LEDGER__META_RAFT_HARD_STATE, NULL, 0, &w->hard_state, diag);
    if (rc == 0 && w->snapshot_meta.data != NULL)
        rc = meta_put(l, txn, LEDGER__META_RAFT_SNAPSHOT, NULL, 0, &w->snapshot_meta, diag);
    if (rc == 0) {
        /* Check the result on the write path too: one run [first, last]. */
        uint64_t first_after, last_after;
        rc = bounds_read(l, txn, &first_after, &last_after, diag);
        EHR_ASSERT(rc != 0 || (first_after == first && last_after == last));
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return ledger__lmdb_error(l, mdb_txn_commit(txn), "committing a raft write", diag);
}

/* ---- Reads ---- */

int ledger_raft_bounds(ledger *l, uint64_t *first, uint64_t *last, ehr_diag *diag)
{
    EHR_ASSERT(l != NULL);
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    uint64_t f, t;
    rc = bounds_read(l, txn, &f, &t, diag);
    mdb_txn_abort(txn);
    if (rc != 0)
        return rc;
    EHR_ASSERT(f >= 1 && t >= f - 1);
    if (first != NULL)
        *first = f;
    if (last != NULL)
        *last = t;
    return 0;
}

int ledger_raft_first_index(ledger *l, uint64_t *out, ehr_diag *diag)
{
    EHR_ASSERT(out != NULL);
    return ledger_raft_bounds(l, out, NULL, diag);
}

int ledger_raft_last_index(ledger *l, uint64_t *out, ehr_diag *diag)
{
    EHR_ASSERT(out != NULL);
    return ledger_raft_bounds(l, NULL, out, diag);
}

/* Copy V into BUF if it fits (the size goes to *LEN either way). */
static int copy_out(const MDB_val *v, uint8_t *buf, size_t cap, size_t *len, ehr_diag *diag)
{
    *len = v->mv_size;
    if (v->mv_size > cap)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "the record is %zu bytes; the buffer holds %zu",
                             v->mv_size, cap);
    if (v->mv_size > 0)
        memcpy(buf, v->mv_data, v->mv_size);
    return 0;
}

int ledger_raft_entry_get(ledger *l, uint64_t index, uint8_t *buf, size_t cap, size_t *len,
                          ehr_diag *diag)
{
    EHR_ASSERT(l != NULL && len != NULL);
    EHR_ASSERT(buf != NULL || cap == 0);
    *len = 0;
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    uint64_t first, last;
    rc = bounds_read(l, txn, &first, &last, diag);
    if (rc == 0 && (index < first || index > last))
        rc = ehr_diag_fail(diag, EHR_ENOTFOUND, "raft entry %llu is outside the log %llu..%llu",
                           (unsigned long long)index, (unsigned long long)first,
                           (unsigned long long)last);
    if (rc == 0) {
        uint8_t key[8];
        ledger__height_key(key, index);
        MDB_val k = val_of(key, sizeof key), v;
        rc = mdb_get(txn, l->db_raft_log, &k, &v);
        if (rc == MDB_NOTFOUND)
            rc = ehr_diag_fail(diag, EHR_ECORRUPT, "raft entry %llu is missing inside the log",
                               (unsigned long long)index);
        else if (rc != 0)
            rc = ledger__lmdb_error(l, rc, "reading a raft entry", diag);
        else
            rc = copy_out(&v, buf, cap, len, diag);
    }
    mdb_txn_abort(txn);
    return rc;
}

long ledger_raft_entries_read(ledger *l, uint64_t lo, uint64_t hi, uint64_t bytes_max,
                              ledger_raft_entry_fn fn, void *ctx, ehr_diag *diag)
{
    EHR_ASSERT(l != NULL && fn != NULL);
    if (lo >= hi)
        return ehr_diag_fail(diag, EHR_EINVAL, "empty raft entry range %llu..%llu",
                             (unsigned long long)lo, (unsigned long long)hi);
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    uint64_t first, last;
    rc = bounds_read(l, txn, &first, &last, diag);
    if (rc == 0 && (lo < first || hi - 1 > last))
        rc = ehr_diag_fail(diag, EHR_ENOTFOUND,
                           "raft entries %llu..%llu are outside the log %llu..%llu",
                           (unsigned long long)lo, (unsigned long long)hi - 1,
                           (unsigned long long)first, (unsigned long long)last);
    MDB_cursor *c = NULL;
    if (rc == 0)
        rc = ledger__lmdb_error(l, mdb_cursor_open(txn, l->db_raft_log, &c),
                                "opening a raft log cursor", diag);
    long count = 0;
    uint64_t bytes = 0;
    uint8_t key[8];
    ledger__height_key(key, lo);
    MDB_val k = val_of(key, sizeof key), v;
    MDB_cursor_op op = MDB_SET_KEY;
    for (uint64_t index = lo; rc == 0 && index < hi; index++, op = MDB_NEXT) {
        int mrc = mdb_cursor_get(c, &k, &v, op);
        if (mrc == MDB_NOTFOUND || (mrc == 0 && (k.mv_size != 8 || index_of_key(&k) != index))) {
            rc = ehr_diag_fail(diag, EHR_ECORRUPT, "raft entry %llu is missing inside the log",
                               (unsigned long long)index);
            break;
        }
        if (mrc != 0) {
            rc = ledger__lmdb_error(l, mrc, "reading raft entries", diag);
            break;
        }
        if (count > 0 && bytes + v.mv_size > bytes_max)
            break;
        bytes += v.mv_size;
        int frc = fn(ctx, index, v.mv_data, v.mv_size);
        if (frc < 0) {
            rc = frc;
            break;
        }
        count++;
        if (frc > 0)
            break;
    }
    if (c != NULL)
        mdb_cursor_close(c);
    mdb_txn_abort(txn);
    EHR_ASSERT(rc != 0 || count >= 1);
    return rc != 0 ? rc : count;
}

/* Read the meta record NAME, skipping SKIP leading bytes. */
static int meta_get(ledger *l, const char *name, size_t skip, uint8_t *buf, size_t cap, size_t *len,
                    ehr_diag *diag)
{
    EHR_ASSERT(l != NULL && len != NULL);
    EHR_ASSERT(buf != NULL || cap == 0);
    *len = 0;
    MDB_txn *txn;
    int rc = ledger__read_begin(l, &txn, diag);
    if (rc != 0)
        return rc;
    MDB_val k = meta_key(name), v;
    rc = mdb_get(txn, l->db_meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        rc = ehr_diag_fail(diag, EHR_ENOTFOUND, "no %s record", name);
    else if (rc != 0)
        rc = ledger__lmdb_error(l, rc, "reading raft metadata", diag);
    else if (v.mv_size <= skip || v.mv_size - skip > LEDGER_RAFT_META_BYTES_MAX)
        rc = ehr_diag_fail(diag, EHR_ECORRUPT, "the %s record is %zu bytes", name, v.mv_size);
    else {
        MDB_val body = val_of((uint8_t *)v.mv_data + skip, v.mv_size - skip);
        rc = copy_out(&body, buf, cap, len, diag);
    }
    mdb_txn_abort(txn);
    return rc;
}

int ledger_raft_hard_state_get(ledger *l, uint8_t *buf, size_t cap, size_t *len, ehr_diag *diag)
{
    return meta_get(l, LEDGER__META_RAFT_HARD_STATE, 0, buf, cap, len, diag);
}

int ledger_raft_snapshot_meta_get(ledger *l, uint8_t *buf, size_t cap, size_t *len, ehr_diag *diag)
{
    return meta_get(l, LEDGER__META_RAFT_SNAPSHOT, 0, buf, cap, len, diag);
}

int ledger_raft_boundary_get(ledger *l, uint8_t *buf, size_t cap, size_t *len, ehr_diag *diag)
{
    return meta_get(l, LEDGER__META_RAFT_FIRST, 8, buf, cap, len, diag);
}
