/*
 * test_backup.c - `ehrctl backup`, `backup inspect` and `restore` against
 * real ehrd processes (cluster.h): a backup taken from a running node under
 * load, the node stopped, the backup restored over its newer ledger, and the
 * node catching up from its peers to the same chain; and the refusals: a
 * damaged backup (one byte flipped, in the header or in the ledger copy; cut
 * short), a restore while the node runs, a backup of another chain, one
 * older than the directory's ledger, a directory without a readable Raft
 * hard state (no ledger; a ledger the node never ran on).
 *
 * The restored node (consensus/README.md, I14) reports its restore term R
 * in GetStatus while it has not caught up: it is started while the other
 * two are stopped, so nobody can bring it a committed entry of term R and
 * the check does not race; once they run again it catches up and reports 0.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "backup.h"
#include "cluster.h"
#include "ehr/v1/node.pb-c.h"
#include "ehr_crypto.h"
#include "proc.h"

#ifndef EHRD_PATH
#error "EHRD_PATH must name the ehrd binary"
#endif
#ifndef EHRCTL_PATH
#error "EHRCTL_PATH must name the ehrctl binary"
#endif

enum {
    LEADER_WAIT_MS = 15000,
    LOAD_TXS = 1200,
    LOAD_INFLIGHT = 32,
    LOAD_TIMEOUT_MS = 60000,
    /* The backup is taken once this many transactions have committed, so
     * that it is taken while the rest still flow. */
    BACKUP_AFTER_COMMITTED = 300,
    LATER_TXS = 300,
    CONVERGE_MS = 30000,
    STATUS_WAIT_MS = 15000,
    /* A restored node alone: long enough for several election timeouts,
     * in which it must neither campaign nor leave its restore term. */
    ALONE_MS = 1500,
};

static struct proc_result ehrctl(const char *const *args)
{
    struct proc_spec spec = {.path = EHRCTL_PATH, .args = args, .env_inherit = true};
    return proc_run(&spec);
}

/* ehrctl ARGS must exit 1 with WORDS in its one line on stderr. */
static void assert_refused(const char *const *args, const char *words)
{
    struct proc_result r = ehrctl(args);
    if (r.status != 1 || strstr(r.err, words) == NULL)
        fail_msg("expected exit 1 saying \"%s\"; got exit %d, stderr: %s", words, r.status, r.err);
    proc_result_free(&r);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Copy the first BYTES bytes of FROM to TO. */
/* The whole of PATH (fails the test if it cannot be read). */
static uint8_t *file_read_all(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        assert_true(k > 0);
        got += (size_t)k;
    }
    close(fd);
    *len = got;
    return buf;
}

static void copy_prefix(const char *from, const char *to, uint64_t bytes)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    int ch;
    for (uint64_t at = 0; at < bytes && (ch = fgetc(in)) != EOF; at++)
        assert_int_not_equal(fputc(ch, out), EOF);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* GetStatus of node I, retried until it answers, within STATUS_WAIT_MS. */
static void status_of(struct cluster *c, size_t i, struct cluster_status *out)
{
    uint64_t end = cluster_now_us() + (uint64_t)STATUS_WAIT_MS * 1000;
    while (cluster_status(c, i, out) != 0) {
        if (cluster_now_us() > end)
            fail_msg("node %zu does not answer GetStatus", i);
        usleep(20000);
    }
}

/* Copy FROM to TO with the byte at OFFSET flipped. */
static void copy_flipped(const char *from, const char *to, uint64_t offset)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    uint64_t at = 0;
    int ch;
    while ((ch = fgetc(in)) != EOF) {
        if (at++ == offset)
            ch ^= 0x01;
        assert_int_not_equal(fputc(ch, out), EOF);
    }
    assert_true(at > offset);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* The backup taken from inside the load. */
struct backup_under_load {
    struct cluster *c;
    size_t node;
    const char *path;
    bool taken;
    size_t committed_when_taken;
    struct proc_result result;
};

static void take_backup(void *ctx, struct cluster *c, const struct cluster_tx *txs, size_t count,
                        uint64_t now_us)
{
    struct backup_under_load *b = ctx;
    (void)now_us;
    if (b->taken)
        return;
    size_t committed = 0;
    for (size_t i = 0; i < count; i++)
        committed += txs[i].committed;
    if (committed < BACKUP_AFTER_COMMITTED)
        return;
    b->taken = true;
    b->committed_when_taken = committed;
    b->result = ehrctl(
        PROC_ARGS("backup", "--data", c->nodes[b->node].dir, "--out", b->path, "--json", NULL));
}

/* A one-member chain of its own, started until it has applied an entry, and a backup of it. */
static void other_chain_backup(const char *path)
{
    struct cluster other;
    cluster_create(&other, 1, EHRD_PATH, EHRCTL_PATH, NULL);
    cluster_start(&other, 0);
    assert_int_not_equal(cluster_wait_leader(&other, LEADER_WAIT_MS), SIZE_MAX);
    struct proc_result r =
        ehrctl(PROC_ARGS("backup", "--data", other.nodes[0].dir, "--out", path, NULL));
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    assert_int_equal(cluster_stop(&other, 0), 0);
    cluster_destroy(&other, false);
}

static void test_a_node_restored_from_a_backup_taken_under_load_catches_up(void **state)
{
    (void)state;
    struct cluster c;
    struct cluster_limits lim = {.block_tx_count = 50, .block_flush_ms = 5};
    cluster_create(&c, 3, EHRD_PATH, EHRCTL_PATH, &lim);
    for (size_t i = 0; i < 3; i++)
        cluster_start(&c, i);
    size_t leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(leader, SIZE_MAX);
    size_t n = (leader + 1) % 3; /* the node backed up, wiped and restored */
    const char *dir = c.nodes[n].dir;
    char path[CLUSTER_PATH_BYTES + 32], genesis[CLUSTER_PATH_BYTES + 32],
        other[CLUSTER_PATH_BYTES + 32], bad_body[CLUSTER_PATH_BYTES + 32],
        bad_header[CLUSTER_PATH_BYTES + 32], file[CLUSTER_PATH_BYTES + 96];
    snprintf(path, sizeof path, "%s/node.backup", c.root);
    snprintf(genesis, sizeof genesis, "%s/genesis.pb", c.root);
    snprintf(other, sizeof other, "%s/other.backup", c.root);
    snprintf(bad_body, sizeof bad_body, "%s/bad-body.backup", c.root);
    snprintf(bad_header, sizeof bad_header, "%s/bad-header.backup", c.root);

    /* 1. The backup, taken while transactions commit. */
    struct cluster_tx *txs = cluster_txs_make(&c, LOAD_TXS);
    struct backup_under_load b = {.c = &c, .node = n, .path = path};
    assert_int_equal(
        cluster_load(&c, txs, LOAD_TXS, LOAD_INFLIGHT, LOAD_TIMEOUT_MS, take_backup, &b), LOAD_TXS);
    assert_true(b.taken);
    if (b.result.status != 0)
        fail_msg("backup under load: exit %d, stderr: %s", b.result.status, b.result.err);
    json_t *shown = json_loads(b.result.out, 0, NULL);
    assert_non_null(shown);
    uint64_t backup_height = (uint64_t)json_integer_value(json_object_get(shown, "tip_height"));
    assert_true(backup_height > 0);
    assert_false(json_is_true(json_object_get(shown, "includes_key")));
    /* ... and indeed: no 32-byte run of the key file's sealed secrets is
     * in it (its header holds the public keys, which the chain names). */
    char key_path[CLUSTER_PATH_BYTES + 32];
    snprintf(key_path, sizeof key_path, "%s/node.key", dir);
    size_t key_len = 0, backup_len = 0;
    uint8_t *key = file_read_all(key_path, &key_len);
    uint8_t *whole = file_read_all(path, &backup_len);
    assert_true(key_len >= EHR_KEYFILE_HEADER_BYTES + 32);
    for (size_t at = EHR_KEYFILE_HEADER_BYTES; at + 32 <= key_len; at += 16)
        assert_null(memmem(whole, backup_len, key + at, 32));
    free(key);
    free(whole);
    assert_int_equal(json_integer_value(json_object_get(shown, "bytes")),
                     json_integer_value(json_object_get(shown, "ledger_bytes")) +
                         NODE_BACKUP_HEADER_BYTES);
    json_decref(shown);
    proc_result_free(&b.result);
    uint64_t tip = cluster_wait_converged(&c, CONVERGE_MS);
    assert_true(tip != UINT64_MAX);
    assert_true(tip > backup_height); /* the load went on after the backup */

    /* 2. Inspect: whole; and written without replacing an existing file. */
    struct proc_result r = ehrctl(PROC_ARGS("backup", "inspect", path, NULL));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "backup ok"));
    proc_result_free(&r);
    assert_refused(PROC_ARGS("backup", "--data", dir, "--out", path, NULL), "exists");
    /* Never into the data directory, however named (--force there could
     * replace the ledger itself): a usage error, nothing written. */
    snprintf(file, sizeof file, "%s/./data.mdb", dir);
    r = ehrctl(PROC_ARGS("backup", "--data", dir, "--out", file, "--force", NULL));
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "is in the data directory"));
    proc_result_free(&r);

    /* 3. One byte flipped, in the ledger copy or in the header: refused;
     * a file cut short, inside the header or after it: refused, saying so. */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    copy_flipped(path, bad_body, NODE_BACKUP_HEADER_BYTES + (uint64_t)st.st_size / 2);
    copy_flipped(path, bad_header, 40);
    assert_refused(PROC_ARGS("backup", "inspect", bad_body, NULL), "damaged");
    assert_refused(PROC_ARGS("backup", "inspect", bad_header, NULL), "damaged");
    snprintf(file, sizeof file, "%s/short.backup", c.root);
    copy_prefix(path, file, (uint64_t)st.st_size - 1);
    assert_refused(PROC_ARGS("backup", "inspect", file, NULL), "is cut short");
    copy_prefix(path, file, NODE_BACKUP_HEADER_BYTES / 2);
    assert_refused(PROC_ARGS("backup", "inspect", file, NULL), "shorter than a header");
    /* A FIFO (nobody writing) is refused at once, not waited on. */
    snprintf(file, sizeof file, "%s/fifo.backup", c.root);
    assert_int_equal(mkfifo(file, 0600), 0);
    assert_refused(PROC_ARGS("backup", "inspect", file, NULL), "not a regular file");

    /* 4. Restore while the node runs: refused, nothing touched. */
    assert_refused(PROC_ARGS("restore", "--from", path, "--data", dir, NULL), "stop ehrd");

    /* 5. The node stopped: another chain's backup, an older one, a damaged one. */
    struct cluster_status cs;
    status_of(&c, n, &cs);
    uint64_t term_before = cs.term;
    assert_int_equal(cs.restore_term, 0);
    assert_int_equal(cluster_stop(&c, n), 0);
    other_chain_backup(other);
    assert_refused(PROC_ARGS("restore", "--from", other, "--data", dir, NULL),
                   "not the directory's chain");
    assert_refused(PROC_ARGS("restore", "--from", path, "--data", dir, NULL), "is older than");
    assert_refused(PROC_ARGS("restore", "--from", bad_header, "--data", dir, NULL), "damaged");
    assert_refused(PROC_ARGS("restore", "--from", bad_body, "--data", dir, "--force", NULL),
                   "damaged");
    assert_refused(PROC_ARGS("restore", "--from", file, "--data", dir, "--force", NULL),
                   "not a regular file"); /* the FIFO */

    /* 6. No readable Raft hard state (I14 needs the node's own terms): a
     * directory without a ledger (a lost disk), one whose ledger the node
     * never ran on; refused even with --force, and left untouched. */
    char empty[CLUSTER_PATH_BYTES + 32], fresh[CLUSTER_PATH_BYTES + 32];
    snprintf(empty, sizeof empty, "%s/empty", c.root);
    snprintf(fresh, sizeof fresh, "%s/fresh", c.root);
    assert_int_equal(mkdir(empty, 0700), 0);
    assert_refused(PROC_ARGS("restore", "--from", path, "--data", empty, "--force", NULL),
                   "holds no readable Raft hard state (it holds no ledger)");
    assert_refused(PROC_ARGS("restore", "--from", path, "--data", empty, NULL),
                   "must rejoin the network as a new member");
    snprintf(file, sizeof file, "%s/data.mdb", empty);
    assert_false(file_exists(file));
    snprintf(file, sizeof file, "%s/%s", empty, NODE_BACKUP_STAGE_NAME);
    assert_false(file_exists(file));
    r = ehrctl(PROC_ARGS("ledger", "init", "--genesis", genesis, "--data", fresh, NULL));
    if (r.status != 0)
        fail_msg("ledger init: exit %d, stderr: %s", r.status, r.err);
    proc_result_free(&r);
    assert_refused(PROC_ARGS("restore", "--from", path, "--data", fresh, "--force", NULL),
                   "holds no Raft hard state");
    r = ehrctl(PROC_ARGS("ledger", "status", "--data", fresh, "--json", NULL));
    assert_int_equal(r.status, 0);
    shown = json_loads(r.out, 0, NULL);
    assert_non_null(shown);
    assert_int_equal(json_integer_value(json_object_get(shown, "tip_height")), 0);
    json_decref(shown);
    proc_result_free(&r);

    /* 7. Restored over its newer ledger (--force): term R above every term
     * the node knew, no vote, restore term R. */
    r = ehrctl(PROC_ARGS("restore", "--from", path, "--data", dir, "--force", "--json", NULL));
    if (r.status != 0)
        fail_msg("restore: exit %d, stderr: %s", r.status, r.err);
    shown = json_loads(r.out, 0, NULL);
    assert_non_null(shown);
    assert_int_equal(json_integer_value(json_object_get(shown, "tip_height")), backup_height);
    assert_true((uint64_t)json_integer_value(json_object_get(shown, "replaced_height")) >
                backup_height);
    uint64_t directory_term =
        (uint64_t)json_integer_value(json_object_get(shown, "directory_term"));
    uint64_t restore_term = (uint64_t)json_integer_value(json_object_get(shown, "restore_term"));
    assert_true(directory_term >= term_before);
    assert_true(restore_term > directory_term);
    assert_int_equal(json_integer_value(json_object_get(shown, "term")), restore_term);
    json_decref(shown);
    proc_result_free(&r);
    snprintf(file, sizeof file, "%s/node.key", dir);
    assert_true(file_exists(file));

    /* 8. Started alone (the others stopped): it reports its restore term,
     * and neither campaigns nor leaves it. */
    size_t others[2] = {(n + 1) % 3, (n + 2) % 3};
    for (size_t k = 0; k < 2; k++)
        assert_int_equal(cluster_stop(&c, others[k]), 0);
    cluster_start(&c, n);
    status_of(&c, n, &cs);
    assert_int_equal(cs.restore_term, restore_term);
    assert_int_equal(cs.term, restore_term);
    assert_int_equal(cs.tip_height, backup_height);
    char rpc[32];
    snprintf(rpc, sizeof rpc, "127.0.0.1:%u", c.nodes[n].rpc_port);
    r = ehrctl(PROC_ARGS("status", "--node", rpc, NULL));
    assert_int_equal(r.status, 0);
    char want[96];
    snprintf(want, sizeof want, "until a committed entry of term %" PRIu64, restore_term);
    if (strstr(r.out, want) == NULL)
        fail_msg("ehrctl status does not say \"%s\":\n%s", want, r.out);
    proc_result_free(&r);
    usleep(ALONE_MS * 1000);
    status_of(&c, n, &cs);
    assert_int_equal(cs.restore_term, restore_term);
    assert_int_equal(cs.term, restore_term); /* no campaign */
    assert_int_not_equal(cs.role, EHR__V1__NODE_ROLE__NODE_ROLE_LEADER);
    assert_int_not_equal(cs.role, EHR__V1__NODE_ROLE__NODE_ROLE_CANDIDATE);

    /* 9. The others back: it catches up, votes again (restore term 0), and
     * holds the others' chain. */
    for (size_t k = 0; k < 2; k++)
        cluster_start(&c, others[k]);
    assert_int_not_equal(cluster_wait_leader(&c, LEADER_WAIT_MS), SIZE_MAX);
    struct cluster_tx *later = cluster_txs_make(&c, LATER_TXS);
    assert_int_equal(cluster_load(&c, later, LATER_TXS, LOAD_INFLIGHT, LOAD_TIMEOUT_MS, NULL, NULL),
                     LATER_TXS);
    tip = cluster_wait_converged(&c, CONVERGE_MS);
    assert_true(tip != UINT64_MAX);
    uint64_t end = cluster_now_us() + (uint64_t)STATUS_WAIT_MS * 1000;
    for (status_of(&c, n, &cs); cs.restore_term != 0 && cluster_now_us() < end;
         status_of(&c, n, &cs))
        usleep(20000);
    assert_int_equal(cs.restore_term, 0);
    assert_true(cs.term >= restore_term);
    leader = cluster_wait_leader(&c, LEADER_WAIT_MS);
    assert_int_not_equal(leader, SIZE_MAX);
    for (uint64_t h = 0; h <= tip; h++) {
        uint8_t want_hash[EHR_HASH_BYTES], got[EHR_HASH_BYTES];
        assert_int_equal(cluster_block(&c, leader, h, want_hash, NULL), 0);
        assert_int_equal(cluster_block(&c, n, h, got, NULL), 0);
        assert_memory_equal(want_hash, got, EHR_HASH_BYTES);
    }
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(cluster_stop(&c, i), 0);
    for (size_t i = 0; i < 3; i++) {
        r = ehrctl(PROC_ARGS("ledger", "verify", "--data", c.nodes[i].dir, NULL));
        if (r.status != 0)
            fail_msg("ledger verify on node %zu: exit %d: %s%s", i, r.status, r.out, r.err);
        proc_result_free(&r);
    }
    cluster_txs_free(later, LATER_TXS);
    cluster_txs_free(txs, LOAD_TXS);
    cluster_destroy(&c, getenv("EHR_TEST_KEEP") != NULL);
}

static int kill_leftovers(void **state)
{
    (void)state;
    cluster_kill_all();
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    assert_int_equal(ehr_crypto_init(), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_a_node_restored_from_a_backup_taken_under_load_catches_up,
                                  kill_leftovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
