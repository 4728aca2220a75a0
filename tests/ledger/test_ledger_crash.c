/*
 * Crash test of the ledger: a child process appends blocks in a loop
 * (durable sync) and reports each height through a pipe once its append
 * has returned; the parent kills it with SIGKILL at a random moment, reopens
 * the ledger and checks that it holds a consistent prefix (ledger_verify:
 * every block 0..tip present and sound, every transaction indexed, nothing
 * past the tip) that contains every block the child reported. Repeated for
 * several rounds on the same ledger, so each round also starts from a
 * ledger that was killed mid-write.
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
    ROUNDS = 8,
    TXS_PER_BLOCK = 60,
    CHILD_BLOCKS_MAX = 100000,
    REPORTS_BEFORE_KILL_MAX = 6,
    KILL_DELAY_US_MAX = 20000,
};

/* The child: append until killed, reporting each committed height. */
static _Noreturn void child_run(const char *dir, int report_fd, const ehr_signing_key *key)
{
    ledger *l;
    if (ledger_open(dir, NULL, &l) != 0)
        _exit(2);
    for (int i = 0; i < CHILD_BLOCKS_MAX; i++) {
        uint64_t height;
        if (tu_append(l, key, TXS_PER_BLOCK, &height) != 0)
            _exit(3);
        if (write(report_fd, &height, sizeof height) != (ssize_t)sizeof height)
            _exit(4);
    }
    _exit(0);
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
    assert_int_equal(ledger_open(dir, NULL, &l), 0);
    assert_int_equal(ledger_genesis_init(l, g, g_len), 0);
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
            child_run(dir, fds[1], &key);
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

        assert_int_equal(ledger_open(dir, NULL, &l), 0);
        ledger_tip tip;
        assert_int_equal(ledger_tip_get(l, &tip), 0);
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
        assert_int_equal(ledger_stats_get(l, &stats), 0);
        assert_true(stats.blocks == tip.height + 1);
        assert_true(stats.tx_index_rows == tip.tx_count);
        /* One state write per transaction, plus the founding member. */
        assert_true(stats.state_keys == tip.tx_count + 1);
        printf("# round %d: acknowledged %llu, tip %llu\n", round, (unsigned long long)acknowledged,
               (unsigned long long)tip.height);
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
