/*
 * Crash test of the ledger: a child process appends blocks in a loop
 * (durable sync) and reports each height through a pipe once its append
 * has returned; the parent kills it with SIGKILL at a random moment, reopens
 * the ledger and checks that it holds a consistent prefix (ledger_verify:
 * every block 0..tip present and sound, every transaction indexed, the world
 * state equal to the write log replayed, nothing past the tip) that
 * contains every block the child reported, and that every transaction of
 * every block answers its lookup (with its result) and its state read,
 * first through a
 * read-only open (its own overlay rebuilt from the files), then writable.
 * Repeated for several rounds on the same ledger, so each round also starts
 * from a ledger that was killed mid-write. In odd rounds the child forces a
 * checkpoint after every block, so kills land inside checkpoint commits of
 * the derived environment too (even rounds: the background checkpoints).
 *
 * LMDB and fork: the parent never has the ledger open while it forks; the
 * child opens its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger_testutil.h"

enum {
    ROUNDS = 12,
    TXS_PER_BLOCK = 60,
    CHILD_BLOCKS_MAX = 100000,
    REPORTS_BEFORE_KILL_MAX = 6,
    KILL_DELAY_US_MAX = 20000,
};

/* The child: append until killed, reporting each committed height (and,
 * with CHECKPOINT_EACH, checkpointing after each block). */
static _Noreturn void child_run(const char *dir, int report_fd, const ehr_signing_key *key,
                                bool checkpoint_each)
{
    ledger *l;
    if (ledger_open(dir, NULL, &l, NULL) != 0)
        _exit(2);
    for (int i = 0; i < CHILD_BLOCKS_MAX; i++) {
        uint64_t height;
        if (tu_append(l, key, TXS_PER_BLOCK, &height, NULL) != 0)
            _exit(3);
        if (write(report_fd, &height, sizeof height) != (ssize_t)sizeof height)
            _exit(4);
        if (checkpoint_each && ledger_checkpoint(l, NULL) != 0)
            _exit(5);
    }
    _exit(0);
}

/* Every transaction of blocks 1..TIP: its lookup names its place and
 * returns the result tu_append stored, and its state key ("rec/" + hash)
 * holds the value tu_batch_make writes. */
static void check_every_lookup(ledger *l, uint64_t tip, int round)
{
    tu_batch model;
    tu_batch_make(&model, NULL, 0, 0); /* only for the value */
    for (uint64_t h = 1; h <= tip; h++) {
        uint8_t *bytes;
        size_t len;
        assert_int_equal(ledger_block_get(l, h, &bytes, &len, NULL), 0);
        ledger_block_view view;
        assert_int_equal(ledger_block_parse(bytes, len, &view, NULL), 0);
        for (uint32_t i = 0; i < view.header.tx_count; i++) {
            ledger_tx_view tx;
            assert_int_equal(
                ledger_tx_envelope_parse(bytes + view.txs[i].offset, view.txs[i].length, &tx, NULL),
                0);
            uint8_t key[4 + EHR_HASH_BYTES];
            memcpy(key, "rec/", 4);
            ledger_tx_hash(tx.body, tx.body_len, key + 4);
            ledger_tx_location loc;
            uint8_t *result = NULL;
            size_t result_len = 0;
            int rc = ledger_tx_get(l, key + 4, &loc, NULL, NULL, &result, &result_len, NULL);
            if (rc != 0 || loc.height != h || loc.index != i)
                fail_msg("round %d: block %llu tx %u: lookup %d at %llu/%u", round,
                         (unsigned long long)h, (unsigned)i, rc, (unsigned long long)loc.height,
                         (unsigned)loc.index);
            uint8_t want[EHR_TX_RESULT_BYTES_MAX];
            size_t want_len = tu_result(want, i, (uint32_t)h);
            if (result_len != want_len || (want_len > 0 && memcmp(result, want, want_len) != 0))
                fail_msg("round %d: block %llu tx %u: result of %zu bytes, %zu expected", round,
                         (unsigned long long)h, (unsigned)i, result_len, want_len);
            ehr_free(result);
            uint8_t *value;
            size_t value_len;
            rc = ledger_state_get(l, key, sizeof key, &value, &value_len, NULL);
            if (rc != 0)
                fail_msg("round %d: block %llu tx %u: state read %d", round, (unsigned long long)h,
                         (unsigned)i, rc);
            assert_int_equal(value_len, sizeof model.value);
            assert_memory_equal(value, model.value, value_len);
            ehr_free(value);
        }
        ledger_block_view_release(&view);
        ehr_free(bytes);
    }
    tu_batch_free(&model);
}

/* Read one report; returns false at end of stream. */
static bool report_read(int fd, uint64_t *height)
{
    size_t got = 0;
    while (got < sizeof *height) {
        ssize_t n = read(fd, (uint8_t *)height + got, sizeof *height - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

static void test_killed_appender_leaves_consistent_prefix_with_acknowledged_blocks(void **state)
{
    ehr_signing_key key;
    tu_key(&key, 300);
    uint8_t *g;
    size_t g_len;
    tu_genesis(&key, 1, &g, &g_len);
    char *dir = tu_tmpdir();
    ledger *l;
    assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
    assert_int_equal(ledger_genesis_init(l, g, g_len, NULL), 0);
    ledger_close(l);
    ehr_free(g);

    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    printf("# crash test seed %u\n", seed);
    srand(seed);
    uint64_t acknowledged = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_run(dir, fds[1], &key, round % 2 == 1);
        }
        close(fds[1]);
        int wait_reports = 1 + rand() % REPORTS_BEFORE_KILL_MAX;
        uint64_t height;
        for (int i = 0; i < wait_reports && report_read(fds[0], &height); i++)
            acknowledged = height > acknowledged ? height : acknowledged;
        usleep((useconds_t)(rand() % KILL_DELAY_US_MAX));
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* Reports written before the kill are still in the pipe. */
        while (report_read(fds[0], &height))
            acknowledged = height > acknowledged ? height : acknowledged;
        close(fds[0]);

        /* Read-only first: its overlay is rebuilt from the files as the
         * crash left them, before any writable open catches them up. */
        ledger_options ro = {.read_only = true};
        assert_int_equal(ledger_open(dir, &ro, &l, NULL), 0);
        ledger_tip ro_tip;
        assert_int_equal(ledger_tip_get(l, &ro_tip, NULL), 0);
        check_every_lookup(l, ro_tip.height, round);
        ledger_close(l);

        assert_int_equal(ledger_open(dir, NULL, &l, NULL), 0);
        ledger_tip tip;
        assert_int_equal(ledger_tip_get(l, &tip, NULL), 0);
        if (tip.height < acknowledged)
            fail_msg("round %d: tip %llu is below acknowledged block %llu", round,
                     (unsigned long long)tip.height, (unsigned long long)acknowledged);
        ledger_verify_report rep;
        int rc = ledger_verify(l, NULL, &rep);
        if (rc != 0)
            fail_msg("round %d: %s", round, rep.msg);
        assert_true(rep.blocks_checked == tip.height + 1);
        assert_true(rep.txs_checked == tip.height * TXS_PER_BLOCK);
        ledger_stats stats;
        assert_int_equal(ledger_stats_get(l, &stats, NULL), 0);
        assert_true(stats.blocks == tip.height + 1);
        assert_true(stats.tx_index_rows == tip.tx_count);
        /* One state write per transaction, plus block 0's two (the
         * emergency policy, the founding member). */
        assert_true(stats.state_keys == tip.tx_count + 2);
        check_every_lookup(l, tip.height, round);
        printf("# round %d: acknowledged %llu, tip %llu, checkpoint %llu\n", round,
               (unsigned long long)acknowledged, (unsigned long long)tip.height,
               (unsigned long long)stats.checkpoint_height);
        ledger_close(l);
    }
    assert_true(acknowledged >= ROUNDS);
    tu_rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed_appender_leaves_consistent_prefix_with_acknowledged_blocks),
    };
    if (ehr_crypto_init() != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
