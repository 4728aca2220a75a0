/*
 * snapshot.c - the node's snapshots of its ledger: taking one in a worker
 * thread every snapshot_entries applied entries and compacting the Raft log
 * (node__snapshot_maybe_start, node__on_snapshot_done), receiving the
 * leader's in chunks (node__snapshot_chunk) and installing it crash-safely
 * in place of the ledger, and the file copier they share.
 *
 * Not here: the snapshot file format and its create/inspect/install
 * (ledger/snapshot.c), serving chunks to a follower (raft_store.c reads the
 * file for the core).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node_internal.h"

/* ---- snapshots ---- */

static void *snapshot_thread(void *arg)
{
    struct node *n = arg;
    n->snap.err.msg[0] = '\0';
    n->snap.rc = ledger_snapshot_create(n->ledger, n->snap.creating, &n->snap.info, &n->snap.err);
    uv_async_send(&n->snap.async);
    return NULL;
}

/* Take a snapshot in a worker thread when enough was applied since the last. */
void node__snapshot_maybe_start(struct node *n)
{
    if (n->snap.running || n->stopping || n->cons.applied_index == 0)
        return;
    uint64_t since = n->cons.applied_index - n->cons.store.snap_meta.index;
    if (!n->snap.wanted && since < n->cfg.limits.snapshot_entries)
        return;
    if (n->snap.retry_at != 0 && uv_now(n->loop) < n->snap.retry_at)
        return;
    n->snap.running = true;
    int rc = pthread_create(&n->snap.thread, NULL, snapshot_thread, n);
    if (rc != 0) {
        n->snap.running = false;
        n->snap.retry_at = uv_now(n->loop) + NODE_SNAPSHOT_RETRY_MS;
        ehr_log(EHR_LOG_WARN, "cannot start a snapshot thread", "err=%d", rc);
    }
}

void node__snapshot_join(struct node *n)
{
    if (!n->snap.running)
        return;
    pthread_join(n->snap.thread, NULL);
    n->snap.running = false;
}

/* The worker finished: record the snapshot and compact the log. */
void node__on_snapshot_done(uv_async_t *h)
{
    struct node *n = h->data;
    if (!n->snap.running)
        return; /* joined already (an install or a stop) */
    node__snapshot_join(n);
    if (n->stopping)
        return;
    if (n->snap.rc != 0) {
        ehr_log(EHR_LOG_WARN, "snapshot failed", "err=%s why=\"%s\"", ehr_errname(n->snap.rc),
                n->snap.err.msg);
        n->snap.retry_at = uv_now(n->loop) + NODE_SNAPSHOT_RETRY_MS;
        return;
    }
    n->snap.retry_at = 0;
    struct raft_snapshot_meta meta = {.index = n->snap.info.tip.applied_index};
    struct raft_storage st;
    node_raft_store_interface(&n->cons.store, &st);
    if (meta.index <= n->cons.store.snap_meta.index ||
        st.term(st.ctx, meta.index, &meta.term) != 0) {
        unlink(n->snap.creating); /* overtaken by an installed snapshot */
        return;
    }
    /* Membership changes are not offered yet, so the configuration in
     * force at any index is the one the core runs with. */
    struct raft_status rs;
    raft_status_get(n->cons.raft, &rs);
    meta.config = rs.config;
    char path[NODE_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "%s/snap-%020" PRIu64 ".mdb", n->snap.dir, meta.index);
    if (rename(n->snap.creating, path) != 0) {
        ehr_log(EHR_LOG_WARN, "snapshot failed", "why=\"rename: %s\"", strerror(errno));
        n->snap.retry_at = uv_now(n->loop) + NODE_SNAPSHOT_RETRY_MS;
        return;
    }
    uint64_t keep = n->cfg.limits.snapshot_entries / 2;
    if (keep > NODE_SNAPSHOT_KEEP_ENTRIES_MAX)
        keep = NODE_SNAPSHOT_KEEP_ENTRIES_MAX;
    uint64_t compact = meta.index + 1 > keep ? meta.index + 1 - keep : 0;
    if (compact <= n->cons.store.first)
        compact = 0;
    ehr_diag why;
    int rc = node_raft_store_snapshot_set(&n->cons.store, &meta, path, compact, &why);
    if (rc != 0) {
        ehr_log(EHR_LOG_WARN, "snapshot not recorded", "err=%s why=\"%s\"", ehr_errname(rc),
                why.msg);
        unlink(path);
        n->snap.retry_at = uv_now(n->loop) + NODE_SNAPSHOT_RETRY_MS;
        return;
    }
    if (n->snap.path[0] != '\0' && strcmp(n->snap.path, path) != 0)
        unlink(n->snap.path);
    snprintf(n->snap.path, sizeof n->snap.path, "%s", path);
    n->snap.wanted = false;
    ehr_log(EHR_LOG_INFO, "snapshot taken",
            "index=%" PRIu64 " height=%" PRIu64 " bytes=%" PRIu64 " log_first=%" PRIu64, meta.index,
            n->snap.info.tip.height, n->snap.info.file_bytes, n->cons.store.first);
}

/* Copy the file FROM to TO (created, fsync'd). */
static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        int err = -errno;
        close(in);
        return err;
    }
    int rc = 0;
    uint8_t *buf = ehr_malloc(1u << 20);
    uint64_t at = 0;
    for (;;) {
        ssize_t r = pread(in, buf, 1u << 20, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? -errno : 0;
            break;
        }
        if ((rc = ehr_pwrite_all(out, buf, (size_t)r, at)) != 0)
            break;
        at += (uint64_t)r;
    }
    ehr_free(buf);
    if (rc == 0 && fsync(out) != 0)
        rc = -errno;
    close(in);
    close(out);
    if (rc != 0)
        unlink(to);
    return rc;
}

/* Replace the ledger by the staged snapshot of META. */
static int snapshot_install(struct node *n, const struct raft_snapshot_meta *meta)
{
    node__snapshot_join(n); /* the ledger handle is about to close */
    /* Keep a copy to serve on: this node may lead before its own next
     * snapshot, and a follower may need one. */
    char keep[NODE_PATH_BYTES_MAX];
    snprintf(keep, sizeof keep, "%s/snap-%020" PRIu64 ".mdb", n->snap.dir, meta->index);
    int rc = copy_file(n->snap.stage_path, keep);
    if (rc != 0) {
        ehr_log(EHR_LOG_ERROR, "cannot keep a copy of the received snapshot", "err=%s",
                ehr_errname(rc));
        return rc;
    }
    uint8_t brec[RAFT_ENTRY_RECORD_HEADER_BYTES + RAFT_RECORD_CRC_BYTES];
    uint8_t mrec[RAFT_SNAPSHOT_META_RECORD_BYTES];
    int mn = raft_snapshot_meta_record_encode(meta, mrec, sizeof mrec);
    if (mn < 0)
        return mn;
    ledger_raft_batch reset = {
        .compact_index = meta->index + 1,
        .boundary = {brec, node_raft_store_boundary_encode(meta->index, meta->term, brec)},
        .snapshot_meta = {mrec, (size_t)mn}};
    ledger_snapshot_expect expect = {.chain_id = n->chain.chain_id, .applied_index = meta->index};
    memcpy(expect.genesis_hash, n->chain.genesis_hash, EHR_HASH_BYTES);
    ledger_snapshot_info info;
    ehr_diag diag = {{0}};
    ledger_close(n->ledger);
    n->ledger = NULL;
    rc =
        ledger_snapshot_install(n->cfg.data_dir, n->snap.stage_path, &reset, &expect, &info, &diag);
    int rc2 = ledger_open(n->cfg.data_dir, NULL, &n->ledger, NULL);
    if (rc != 0 || rc2 != 0) {
        ehr_log(EHR_LOG_ERROR, "snapshot install failed", "err=%s why=\"%s\" reopen=%s",
                ehr_errname(rc), diag.msg, ehr_errname(rc2));
        unlink(keep);
        if (rc2 != 0)
            n->ledger = NULL;
        return rc != 0 ? rc : rc2;
    }
    rc = node_raft_store_reload(&n->cons.store, n->ledger, keep, NULL);
    if (rc == 0)
        rc = ledger_tip_get(n->ledger, &n->tip, NULL);
    if (rc != 0)
        return rc;
    n->cons.applied_index = meta->index;
    if (n->snap.path[0] != '\0' && strcmp(n->snap.path, keep) != 0)
        unlink(n->snap.path);
    snprintf(n->snap.path, sizeof n->snap.path, "%s", keep);
    /* Transactions the snapshot committed are no longer the pool's: start
     * it afresh (what was in it was admitted here, never acknowledged as
     * committed). */
    mempool_config mc = {.chain_id = n->chain.chain_id,
                         .tx_count_max = (uint32_t)n->cfg.limits.mempool_tx_count,
                         .bytes_max = n->cfg.limits.mempool_bytes,
                         .ledger_lookup = mempool_ledger_lookup,
                         .ledger_lookup_ctx = n->ledger};
    mempool_destroy(&n->pool);
    rc = mempool_init(&n->pool, &mc);
    if (rc != 0)
        return rc;
    ehr_log(EHR_LOG_INFO, "snapshot installed",
            "index=%" PRIu64 " height=%" PRIu64 " txs=%" PRIu64 " bytes=%" PRIu64, meta->index,
            info.tip.height, info.tip.tx_count, info.file_bytes);
    node__metrics_snapshot_installed(n);
    node__members_changed(n); /* a new state, maybe new members (members.c) */
    node__members_join_check(n);
    node__blob_erase_rescan(n); /* and maybe records erased meanwhile */
    return 0;
}

int node__snapshot_chunk(struct node *n, const struct raft_snapshot_chunk *c)
{
    int rc = 0;
    if (c->offset == 0) {
        if (n->snap.stage_fd >= 0)
            close(n->snap.stage_fd);
        n->snap.stage_fd = open(n->snap.stage_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (n->snap.stage_fd < 0)
            rc = -errno;
    } else if (n->snap.stage_fd < 0) {
        rc = EHR_EINVAL; /* the core hands chunks in order from 0 */
    }
    if (rc == 0 && c->size > 0)
        rc = ehr_pwrite_all(n->snap.stage_fd, c->data, c->size, c->offset);
    if (rc == 0 && c->done) {
        if (c->install && fsync(n->snap.stage_fd) != 0)
            rc = -errno;
        close(n->snap.stage_fd);
        n->snap.stage_fd = -1;
        if (rc == 0 && c->install)
            rc = snapshot_install(n, &c->meta);
        unlink(n->snap.stage_path);
    }
    if (rc != 0)
        node__fatal(n, NODE_EXIT_FAILURE, "cannot take in a snapshot", "index=%" PRIu64 " err=%s",
                    c->meta.index, ehr_errname(rc));
    return rc;
}
