/*
 * Unit tests for common/file.c: atomic writes (mode, no overwrite unless
 * asked, no temporary left behind) and bounded whole-file reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

struct fixture {
    char dir[64];
    char path[PATH_MAX];
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    memcpy(f->dir, "/tmp/ehr-test-file-XXXXXX", sizeof "/tmp/ehr-test-file-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/data", f->dir);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char p[PATH_MAX];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

static int dir_entry_count(const char *dir)
{
    DIR *d = opendir(dir);
    int count = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        count += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d != NULL)
        closedir(d);
    return count;
}

static void test_write_atomic_sets_mode_and_reads_back(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(ehr_file_write_atomic(f->path, "hello", 5, 0600, false), 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char buf[16];
    size_t len = 0;
    assert_int_equal(ehr_file_read(f->path, buf, sizeof buf, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(dir_entry_count(f->dir), 1); /* no temporary file left */
}

static void test_write_atomic_mode_is_exact_whatever_the_umask(void **state)
{
    struct fixture *f = *state;
    mode_t old = umask(0077);
    assert_int_equal(ehr_file_write_atomic(f->path, "pub", 3, 0644, false), 0);
    umask(old);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
}

static void test_write_atomic_refuses_overwrite_unless_asked(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(ehr_file_write_atomic(f->path, "first", 5, 0600, false), 0);
    assert_int_equal(ehr_file_write_atomic(f->path, "second", 6, 0600, false), EHR_EEXIST);
    char buf[16];
    size_t len = 0;
    assert_int_equal(ehr_file_read(f->path, buf, sizeof buf, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "first", 5);
    assert_int_equal(dir_entry_count(f->dir), 1);
    assert_int_equal(ehr_file_write_atomic(f->path, "second", 6, 0600, true), 0);
    assert_int_equal(ehr_file_read(f->path, buf, sizeof buf, &len), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "second", 6);
}

static void test_write_atomic_missing_directory_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/no/such/dir", f->dir);
    assert_int_equal(ehr_file_write_atomic(path, "x", 1, 0600, false), -ENOENT);
    assert_int_equal(ehr_file_write_atomic("", "x", 1, 0600, false), -EINVAL);
    assert_int_equal(dir_entry_count(f->dir), 0);
}

static void test_read_bounds_the_size(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(ehr_file_write_atomic(f->path, "0123456789", 10, 0600, false), 0);
    char buf[10];
    size_t len = 0;
    /* exactly at the limit: fine; one byte under: too big */
    assert_int_equal(ehr_file_read(f->path, buf, 10, &len), 0);
    assert_int_equal(len, 10);
    assert_int_equal(ehr_file_read(f->path, buf, 9, &len), EHR_ETOOBIG);
    uint8_t *data = NULL;
    assert_int_equal(ehr_file_read_alloc(f->path, 9, &data, &len), EHR_ETOOBIG);
    assert_null(data);
    ehr_alloc_stats_reset();
    assert_int_equal(ehr_file_read_alloc(f->path, 1 << 20, &data, &len), 0);
    assert_int_equal(len, 10);
    assert_memory_equal(data, "0123456789", 10);
    assert_true(ehr_alloc_largest_bytes() <= 10); /* sized by the file, not by the limit */
    ehr_free(data);
}

static void test_read_rejects_directories_and_missing_files(void **state)
{
    struct fixture *f = *state;
    char buf[4];
    size_t len;
    assert_int_equal(ehr_file_read(f->dir, buf, sizeof buf, &len), -EISDIR);
    assert_int_equal(ehr_file_read(f->path, buf, sizeof buf, &len), -ENOENT);
}

/*
 * A FIFO (or any other non-regular file) is refused without blocking: opening
 * a FIFO for reading waits for a writer, so the check must not depend on
 * open() returning. Run in a child with an alarm so a regression fails the
 * test instead of hanging the suite.
 */
static void test_read_refuses_a_fifo_without_waiting_for_a_writer(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mkfifo(f->path, 0600), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10); /* only a guard against hanging; the expected result is immediate */
        char buf[4];
        size_t len;
        uint8_t *data = NULL;
        int rc = ehr_file_read(f->path, buf, sizeof buf, &len);
        int rc_alloc = ehr_file_read_alloc(f->path, 16, &data, &len);
        _exit(rc == EHR_EINVAL && rc_alloc == EHR_EINVAL ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        fail_msg("reading a FIFO blocked (child killed by signal %d)", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_atomic_sets_mode_and_reads_back, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_write_atomic_mode_is_exact_whatever_the_umask,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_write_atomic_refuses_overwrite_unless_asked,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_write_atomic_missing_directory_fails_cleanly,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_read_bounds_the_size, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_read_rejects_directories_and_missing_files,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_read_refuses_a_fifo_without_waiting_for_a_writer,
                                        fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
