/*
 * raft_store.c - the consensus core's storage over the ledger's Raft log
 * (see raft_store.h). Not here: snapshot contents, message encoding.
 */
#include "raft_store.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

enum { BOUNDARY_BYTES = RAFT_ENTRY_RECORD_HEADER_BYTES + RAFT_RECORD_CRC_BYTES };

/* Make room for the terms of [first - 1, last]. */
static void terms_reserve(struct node_raft_store *s, size_t n)
{
    if (n <= s->terms_cap)
        return;
    size_t cap = s->terms_cap ? s->terms_cap : 1024;
    while (cap < n)
        cap *= 2;
    s->terms = ehr_realloc(s->terms, cap * sizeof *s->terms);
    s->terms_cap = cap;
}

size_t node_raft_store_boundary_encode(uint64_t index, uint64_t term, uint8_t *buf)
{
    struct raft_entry e = {.term = term, .index = index, .type = RAFT_ENTRY_EMPTY};
    int n = raft_entry_record_encode(&e, buf, BOUNDARY_BYTES);
    EHR_ASSERT(n == BOUNDARY_BYTES);
    return (size_t)n;
}

struct load_ctx {
    struct node_raft_store *s;
    uint64_t expect;
    int err;
};

static int load_term(void *ctx, uint64_t index, const uint8_t *bytes, size_t len)
{
    struct load_ctx *c = ctx;
    struct raft_entry e;
    int rc = raft_entry_record_decode(bytes, len, &e);
    if (rc == 0 && (e.index != index || index != c->expect))
        rc = EHR_ECORRUPT;
    if (rc != 0) {
        c->err = rc;
        return rc;
    }
    c->s->terms[index - (c->s->first - 1)] = e.term;
    c->expect++;
    return 0;
}

static int load(struct node_raft_store *s, ehr_diag *diag)
{
    int rc = ledger_raft_bounds(s->l, &s->first, &s->last, diag);
    if (rc != 0)
        return rc;
    terms_reserve(s, (size_t)(s->last - s->first + 2));
    s->terms[0] = 0;
    if (s->first > 1) {
        uint8_t buf[BOUNDARY_BYTES];
        size_t len;
        struct raft_entry e;
        rc = ledger_raft_boundary_get(s->l, buf, sizeof buf, &len, diag);
        if (rc != 0)
            return rc;
        rc = raft_entry_record_decode(buf, len, &e);
        if (rc == 0 && e.index != s->first - 1)
            rc = EHR_ECORRUPT;
        if (rc != 0)
            return ehr_diag_fail(diag, rc, "the consensus log's boundary record is not entry %llu",
                                 (unsigned long long)s->first - 1);
        s->terms[0] = e.term;
    }
    struct load_ctx c = {.s = s, .expect = s->first};
    while (c.expect <= s->last) {
        long n =
            ledger_raft_entries_read(s->l, c.expect, s->last + 1, 64u << 20, load_term, &c, diag);
        if (n < 0 && c.err != 0)
            return ehr_diag_fail(diag, c.err,
                                 "consensus log entry %llu does not decode or is out of sequence",
                                 (unsigned long long)c.expect);
        if (n < 0)
            return (int)n;
    }
    uint8_t mbuf[RAFT_SNAPSHOT_META_RECORD_BYTES];
    size_t mlen;
    memset(&s->snap_meta, 0, sizeof s->snap_meta);
    ehr_diag why; /* no snapshot yet is no failure */
    rc = ledger_raft_snapshot_meta_get(s->l, mbuf, sizeof mbuf, &mlen, &why);
    if (rc == EHR_ENOTFOUND)
        return 0;
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s", why.msg);
    rc = raft_snapshot_meta_record_decode(mbuf, mlen, &s->snap_meta);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "the consensus snapshot meta record does not decode");
    return 0;
}

int node_raft_store_open(struct node_raft_store *s, ledger *l, ehr_diag *diag)
{
    memset(s, 0, sizeof *s);
    s->l = l;
    s->snap_fd = -1;
    s->offsets = ehr_calloc(NODE_RAFT_STORE_READ_ENTRIES_MAX, sizeof *s->offsets);
    return load(s, diag);
}

void node_raft_store_close(struct node_raft_store *s)
{
    if (s->snap_fd >= 0)
        close(s->snap_fd);
    ehr_free(s->terms);
    ehr_free(s->buf);
    ehr_free(s->offsets);
    ehr_free(s->out);
    ehr_free(s->out_entries);
    memset(s, 0, sizeof *s);
    s->snap_fd = -1;
}

int node_raft_store_hard_state(struct node_raft_store *s, struct raft_hard_state *out,
                               ehr_diag *diag)
{
    uint8_t buf[RAFT_HARD_STATE_RECORD_BYTES];
    size_t len;
    ehr_diag why; /* none yet: a new node */
    int rc = ledger_raft_hard_state_get(s->l, buf, sizeof buf, &len, &why);
    if (rc == EHR_ENOTFOUND) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s", why.msg);
    rc = raft_hard_state_record_decode(buf, len, out);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "the consensus hard state record does not decode");
    return 0;
}

/* ---- the read interface ---- */

static int st_hard_state(void *ctx, struct raft_hard_state *out)
{
    return node_raft_store_hard_state(ctx, out, NULL);
}

static int st_snapshot_meta(void *ctx, struct raft_snapshot_meta *out, uint64_t *size)
{
    struct node_raft_store *s = ctx;
    *out = s->snap_meta;
    *size = s->snap_meta.index != 0 ? s->snap_size : 0;
    return 0;
}

static int st_snapshot_read(void *ctx, uint64_t offset, uint8_t *buf, size_t cap, size_t *read)
{
    struct node_raft_store *s = ctx;
    if (s->snap_fd < 0 || s->snap_meta.index == 0)
        return EHR_ENOTFOUND;
    if (offset > s->snap_size)
        return EHR_EINVAL;
    size_t want = (size_t)(s->snap_size - offset < cap ? s->snap_size - offset : cap);
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(s->snap_fd, buf + got, want - got, (off_t)(offset + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return EHR_ECORRUPT; /* the file shrank under us */
        got += (size_t)n;
    }
    *read = got;
    return 0;
}

static uint64_t st_first_index(void *ctx)
{
    return ((struct node_raft_store *)ctx)->first;
}

static uint64_t st_last_index(void *ctx)
{
    return ((struct node_raft_store *)ctx)->last;
}

static int st_term(void *ctx, uint64_t index, uint64_t *term)
{
    struct node_raft_store *s = ctx;
    if (index + 1 < s->first || index > s->last)
        return EHR_ENOTFOUND;
    *term = s->terms[index - (s->first - 1)];
    return 0;
}

static int collect(void *ctx, uint64_t index, const uint8_t *bytes, size_t len)
{
    (void)index;
    struct node_raft_store *s = ctx;
    if (s->buf_len + len > s->buf_cap) {
        size_t cap = s->buf_cap ? s->buf_cap : 1u << 20;
        while (cap < s->buf_len + len)
            cap *= 2;
        s->buf = ehr_realloc(s->buf, cap);
        s->buf_cap = cap;
    }
    memcpy(s->buf + s->buf_len, bytes, len);
    s->offsets[s->count++] = s->buf_len;
    s->buf_len += len;
    return s->count == s->want ? 1 : 0;
}

static int st_entries(void *ctx, uint64_t lo, uint64_t hi, uint64_t bytes_max,
                      struct raft_entry *out, size_t cap, size_t *count)
{
    struct node_raft_store *s = ctx;
    s->buf_len = 0;
    s->count = 0;
    s->want = cap < NODE_RAFT_STORE_READ_ENTRIES_MAX ? cap : NODE_RAFT_STORE_READ_ENTRIES_MAX;
    /* A record is larger than its data, so the ledger's byte budget stops no
     * later than the core's would. */
    long n = ledger_raft_entries_read(s->l, lo, hi, bytes_max, collect, s, NULL);
    if (n < 0)
        return (int)n;
    for (size_t i = 0; i < s->count; i++) {
        size_t end = i + 1 < s->count ? s->offsets[i + 1] : s->buf_len;
        int rc = raft_entry_record_decode(s->buf + s->offsets[i], end - s->offsets[i], &out[i]);
        if (rc != 0)
            return rc;
        if (out[i].index != lo + i)
            return EHR_ECORRUPT;
    }
    *count = s->count;
    return 0;
}

void node_raft_store_interface(struct node_raft_store *s, struct raft_storage *out)
{
    *out = (struct raft_storage){.ctx = s,
                                 .hard_state = st_hard_state,
                                 .snapshot_meta = st_snapshot_meta,
                                 .snapshot_read = st_snapshot_read,
                                 .first_index = st_first_index,
                                 .last_index = st_last_index,
                                 .term = st_term,
                                 .entries = st_entries,
                                 .stable_pointers = false};
}

/* ---- writes ---- */

/* Encode ENTRIES into s->out / s->out_entries. Returns 0 or an encode error. */
static int encode_entries(struct node_raft_store *s, const struct raft_entry *entries, size_t count)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += RAFT_ENTRY_RECORD_HEADER_BYTES + entries[i].size + RAFT_RECORD_CRC_BYTES;
    if (total > s->out_cap) {
        ehr_free(s->out);
        s->out_cap = total > (1u << 20) ? total : (1u << 20);
        s->out = ehr_malloc(s->out_cap);
    }
    if (count > s->out_entries_cap) {
        ehr_free(s->out_entries);
        s->out_entries_cap = count > 1024 ? count : 1024;
        s->out_entries = ehr_calloc(s->out_entries_cap, sizeof *s->out_entries);
    }
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        int n = raft_entry_record_encode(&entries[i], s->out + at, total - at);
        if (n < 0)
            return n;
        s->out_entries[i] = (ledger_bytes){s->out + at, (size_t)n};
        at += (size_t)n;
    }
    return 0;
}

/* The log now ends with ENTRIES (which replaced whatever was at their indexes). */
static void note_appended(struct node_raft_store *s, const struct raft_entry *entries, size_t count)
{
    if (count == 0)
        return;
    uint64_t lo = entries[0].index;
    EHR_ASSERT(lo >= s->first && lo <= s->last + 1);
    s->last = entries[count - 1].index;
    terms_reserve(s, (size_t)(s->last - s->first + 2));
    for (size_t i = 0; i < count; i++)
        s->terms[entries[i].index - (s->first - 1)] = entries[i].term;
}

int node_raft_store_persist(struct node_raft_store *s, const struct raft_ready *rd, ehr_diag *diag)
{
    if (rd->entry_count == 0 && !rd->hard_state_changed)
        return 0;
    int rc = encode_entries(s, rd->entries, rd->entry_count);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "a consensus entry does not encode");
    ledger_raft_batch b = {.entries = s->out_entries, .entry_count = rd->entry_count};
    if (rd->entry_count > 0)
        b.append_index = rd->entries[0].index;
    uint8_t hs[RAFT_HARD_STATE_RECORD_BYTES];
    if (rd->hard_state_changed) {
        int n = raft_hard_state_record_encode(&rd->hard_state, hs, sizeof hs);
        if (n < 0)
            return ehr_diag_fail(diag, n, "the consensus hard state does not encode");
        b.hard_state = (ledger_bytes){hs, (size_t)n};
    }
    rc = ledger_raft_write(s->l, &b, diag);
    if (rc != 0)
        return rc;
    note_appended(s, rd->entries, rd->entry_count);
    return 0;
}

int node_raft_store_bootstrap(struct node_raft_store *s, const struct raft_entry *entry,
                              ehr_diag *diag)
{
    if (s->last != 0 || s->first != 1)
        return ehr_diag_fail(diag, EHR_EEXIST, "the consensus log is not empty");
    int rc = encode_entries(s, entry, 1);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "the bootstrap entry does not encode");
    ledger_raft_batch b = {.append_index = 1, .entries = s->out_entries, .entry_count = 1};
    rc = ledger_raft_write(s->l, &b, diag);
    if (rc == 0)
        note_appended(s, entry, 1);
    return rc;
}

/*
 * Open PATH for snapshot reads. Returns 0 with *FD_OUT (the caller's to
 * close) and *SIZE, or -errno with *FD_OUT -1 and *SIZE 0. The outputs are
 * set on every path, so a caller never reads them uninitialised, not even
 * on the path the compiler cannot rule out (open failing with errno 0, so
 * that -errno reads as success).
 */
static int snap_file_open(const char *path, int *fd_out, uint64_t *size)
{
    *fd_out = -1;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return 0;
}

int node_raft_store_snapshot_set(struct node_raft_store *s, const struct raft_snapshot_meta *meta,
                                 const char *path, uint64_t compact_index, ehr_diag *diag)
{
    if (meta->index == 0 || meta->index < s->snap_meta.index || meta->index > s->last ||
        meta->index + 1 < s->first || compact_index > meta->index + 1 ||
        (compact_index != 0 && compact_index < s->first))
        return ehr_diag_fail(
            diag, EHR_EINVAL,
            "snapshot at %llu (compacting to %llu) does not fit the log %llu..%llu",
            (unsigned long long)meta->index, (unsigned long long)compact_index,
            (unsigned long long)s->first, (unsigned long long)s->last);
    uint64_t term;
    if (st_term(s, meta->index, &term) != 0 || term != meta->term)
        return ehr_diag_fail(diag, EHR_EINVAL, "snapshot at %llu: term %llu is not the log's",
                             (unsigned long long)meta->index, (unsigned long long)meta->term);
    int fd;
    uint64_t size;
    int rc = snap_file_open(path, &fd, &size);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "opening %s: %s", path, ehr_strerror(rc));
    uint8_t mrec[RAFT_SNAPSHOT_META_RECORD_BYTES];
    int mn = raft_snapshot_meta_record_encode(meta, mrec, sizeof mrec);
    if (mn < 0) {
        close(fd);
        return ehr_diag_fail(diag, mn, "the snapshot meta does not encode");
    }
    uint8_t brec[BOUNDARY_BYTES];
    ledger_raft_batch b = {.snapshot_meta = {mrec, (size_t)mn}};
    uint64_t bterm = 0;
    if (compact_index > s->first) {
        st_term(s, compact_index - 1, &bterm);
        b.compact_index = compact_index;
        b.boundary =
            (ledger_bytes){brec, node_raft_store_boundary_encode(compact_index - 1, bterm, brec)};
    }
    rc = ledger_raft_write(s->l, &b, diag);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    if (b.compact_index != 0) {
        uint64_t drop = b.compact_index - s->first;
        memmove(s->terms, s->terms + drop,
                (size_t)(s->last - s->first + 2 - drop) * sizeof *s->terms);
        s->first = b.compact_index;
    }
    if (s->snap_fd >= 0)
        close(s->snap_fd);
    s->snap_fd = fd;
    s->snap_size = size;
    s->snap_meta = *meta;
    return 0;
}

int node_raft_store_snapshot_file(struct node_raft_store *s, const char *path)
{
    int fd;
    uint64_t size;
    int rc = snap_file_open(path, &fd, &size);
    if (rc != 0)
        return rc;
    if (s->snap_fd >= 0)
        close(s->snap_fd);
    s->snap_fd = fd;
    s->snap_size = size;
    return 0;
}

int node_raft_store_reload(struct node_raft_store *s, ledger *l, const char *path, ehr_diag *diag)
{
    if (s->snap_fd >= 0)
        close(s->snap_fd);
    s->snap_fd = -1;
    s->snap_size = 0;
    s->l = l;
    int rc = load(s, diag);
    if (rc == 0 && path != NULL && s->snap_meta.index != 0) {
        rc = snap_file_open(path, &s->snap_fd, &s->snap_size);
        if (rc != 0)
            return ehr_diag_fail(diag, rc, "opening %s: %s", path, ehr_strerror(rc));
    }
    return rc;
}
