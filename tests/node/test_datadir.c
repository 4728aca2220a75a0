/*
 * test_datadir - the data directory (node/datadir.h): the lock is exclusive
 * across processes and names its holder's pid, the kernel releases it when
 * the holder dies (even by SIGKILL), a missing directory is reported as
 * such, and the genesis check accepts the ledger's own genesis and refuses
 * another chain's with both hashes in the message.
 *
 * Forked children report through their exit status (cmocka's asserts
 * belong to the parent).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datadir.h"
#include "ledger_testutil.h"

struct fixture {
    char *tmp;
    char dir[PATH_MAX];
    ehr_diag err;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || ehr_crypto_init() != 0)
        return -1;
    f->tmp = tu_tmpdir();
    snprintf(f->dir, sizeof f->dir, "%s/data", f->tmp);
    if (mkdir(f->dir, 0700) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tu_rmdir(ehr_strdup(f->dir));
    tu_rmdir(f->tmp);
    free(f);
    return 0;
}

/* Wait for CHILD; its exit status, or -1 if a signal ended it. */
static int child_status(pid_t child)
{
    int status;
    while (waitpid(child, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* In a child: try the lock on DIR, expecting EHR_EAGAIN naming HOLDER. */
static _Noreturn void child_expect_busy(const char *dir, pid_t holder)
{
    ehr_diag err;
    char want[64];
    struct node_datadir_lock lock;
    int rc = node_datadir_lock(dir, &lock, &err);
    snprintf(want, sizeof want, "in use by process %ld", (long)holder);
    if (rc != EHR_EAGAIN)
        _exit(1);
    if (strstr(err.msg, want) == NULL || strstr(err.msg, dir) == NULL)
        _exit(2);
    if (lock.fd != -1)
        _exit(3);
    _exit(0);
}

static void test_lock_is_exclusive_across_processes_and_names_the_holder(void **state)
{
    struct fixture *f = *state;
    struct node_datadir_lock lock;
    assert_int_equal(node_datadir_lock(f->dir, &lock, &f->err), 0);
    assert_true(lock.fd >= 0);

    /* The file: mode 0600, holding our pid. */
    char path[PATH_MAX + 8], text[32], want[32];
    snprintf(path, sizeof path, "%s/LOCK", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    size_t len;
    assert_int_equal(ehr_file_read(path, text, sizeof text - 1, &len), 0);
    text[len] = '\0';
    snprintf(want, sizeof want, "%ld\n", (long)getpid());
    assert_string_equal(text, want);

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        child_expect_busy(f->dir, getppid());
    assert_int_equal(child_status(child), 0);

    /* Once released, another process can take it. */
    node_datadir_unlock(&lock);
    assert_int_equal(lock.fd, -1);
    node_datadir_unlock(&lock); /* safe twice */
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct node_datadir_lock other;
        ehr_diag err;
        _exit(node_datadir_lock(f->dir, &other, &err) == 0 ? 0 : 1);
    }
    assert_int_equal(child_status(child), 0);
}

static void test_lock_is_released_when_its_holder_is_killed(void **state)
{
    struct fixture *f = *state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct node_datadir_lock lock;
        ehr_diag err;
        if (node_datadir_lock(f->dir, &lock, &err) != 0)
            _exit(1);
        char one = 1;
        if (write(ready[1], &one, 1) != 1)
            _exit(2);
        for (;;)
            pause();
    }
    close(ready[1]);
    char one = 0;
    assert_int_equal(read(ready[0], &one, 1), 1);
    close(ready[0]);

    /* Held by the child: refused, naming it. (The child is killed before
     * any assertion, so a failure leaves no process behind.) */
    struct node_datadir_lock lock;
    int busy = node_datadir_lock(f->dir, &lock, &f->err);
    int killed = kill(child, SIGKILL); /* no chance to clean up: the kernel drops the lock */
    int status = child_status(child);
    assert_int_equal(busy, EHR_EAGAIN);
    char want[64];
    snprintf(want, sizeof want, "in use by process %ld", (long)child);
    assert_non_null(strstr(f->err.msg, want));
    assert_int_equal(lock.fd, -1);
    assert_int_equal(killed, 0);
    assert_int_equal(status, -1);
    assert_int_equal(node_datadir_lock(f->dir, &lock, &f->err), 0);
    node_datadir_unlock(&lock);
}

static void test_lock_refuses_a_missing_or_wrong_directory(void **state)
{
    struct fixture *f = *state;
    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof missing, "%s/nope", f->tmp);
    struct node_datadir_lock lock;
    assert_int_equal(node_datadir_lock(missing, &lock, &f->err), -ENOENT);
    assert_non_null(strstr(f->err.msg, "does not exist"));
    assert_non_null(strstr(f->err.msg, missing));
    assert_int_equal(lock.fd, -1);
    assert_int_equal(access(missing, F_OK), -1); /* not created */

    /* A regular file is not a data directory. */
    char file[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/LOCK", f->dir);
    assert_int_equal(ehr_file_write_atomic(file, "x", 1, 0600, false), 0);
    assert_int_equal(node_datadir_lock(file, &lock, &f->err), EHR_EINVAL);
    assert_non_null(strstr(f->err.msg, "not a directory"));

    /* The path length limit, at its edge. */
    static char long_dir[NODE_DATADIR_PATH_BYTES_MAX + 2];
    size_t len = (size_t)snprintf(long_dir, sizeof long_dir, "%s/nope", f->tmp);
    for (; len < NODE_DATADIR_PATH_BYTES_MAX; len++)
        long_dir[len] = len % 2 == 0 ? '/' : 'a';
    long_dir[len] = '\0';
    assert_int_equal(strlen(long_dir), NODE_DATADIR_PATH_BYTES_MAX);
    assert_int_equal(node_datadir_lock(long_dir, &lock, &f->err), -ENOENT);
    long_dir[len] = 'a';
    long_dir[len + 1] = '\0';
    assert_int_equal(node_datadir_lock(long_dir, &lock, &f->err), EHR_EINVAL);
    assert_non_null(strstr(f->err.msg, "1 to 4000 bytes"));
}

/* A ledger in DIR initialised from GENESIS. */
static void ledger_make(const char *dir, const uint8_t *genesis, size_t len)
{
    ledger_options options = {.sync = LEDGER_SYNC_NONE};
    ledger *l;
    assert_int_equal(ledger_open(dir, &options, &l, NULL), 0);
    assert_int_equal(ledger_genesis_init(l, genesis, len, NULL), 0);
    ledger_close(l);
}

/* GENESIS re-encoded under another chain id (*OUT ehr_malloc'd). */
static void genesis_rechain(const uint8_t *genesis, size_t len, const char *chain_id, uint8_t **out,
                            size_t *out_len)
{
    Ehr__V1__Genesis *doc;
    ehr_diag diag;
    assert_int_equal(ledger_genesis_parse(genesis, len, &doc, &diag), 0);
    char *old = doc->chain_id;
    doc->chain_id = (char *)chain_id;
    assert_int_equal(ledger_genesis_encode(doc, out, out_len, &diag), 0);
    doc->chain_id = old;
    ehr__v1__genesis__free_unpacked(doc, NULL);
}

static void test_genesis_check_accepts_its_own_and_refuses_another_chain(void **state)
{
    struct fixture *f = *state;
    ehr_signing_key keys[3];
    for (uint32_t i = 0; i < 3; i++)
        tu_key(&keys[i], i + 1);
    uint8_t *mine, *other, *renamed;
    size_t mine_len, other_len, renamed_len;
    tu_genesis(keys, 2, &mine, &mine_len);
    tu_genesis(keys + 1, 2, &other, &other_len);
    genesis_rechain(mine, mine_len, "another-chain", &renamed, &renamed_len);

    /* No ledger yet. */
    assert_int_equal(node_datadir_check_genesis(f->dir, mine, mine_len, &f->err), EHR_ENOTFOUND);
    assert_non_null(strstr(f->err.msg, "holds no ledger"));

    ledger_make(f->dir, mine, mine_len);
    assert_int_equal(node_datadir_check_genesis(f->dir, mine, mine_len, &f->err), 0);

    /* Same chain id, other members: the hashes differ, both are named. */
    char mine_hex[65], other_hex[65];
    uint8_t hash[EHR_HASH_BYTES];
    ehr_sha256(hash, mine, mine_len);
    ehr_hex_encode(mine_hex, hash, EHR_HASH_BYTES);
    ehr_sha256(hash, other, other_len);
    ehr_hex_encode(other_hex, hash, EHR_HASH_BYTES);
    assert_int_equal(node_datadir_check_genesis(f->dir, other, other_len, &f->err), EHR_ECHAIN);
    assert_non_null(strstr(f->err.msg, mine_hex));
    assert_non_null(strstr(f->err.msg, other_hex));

    /* Another chain id: both ids are named. */
    assert_int_equal(node_datadir_check_genesis(f->dir, renamed, renamed_len, &f->err), EHR_ECHAIN);
    assert_non_null(strstr(f->err.msg, "\"" TU_CHAIN_ID "\""));
    assert_non_null(strstr(f->err.msg, "\"another-chain\""));

    /* Not a genesis at all. */
    const uint8_t junk[] = {0xff, 0xff, 0xff};
    assert_true(node_datadir_check_genesis(f->dir, junk, sizeof junk, &f->err) < 0);
    assert_non_null(strstr(f->err.msg, "not a valid genesis file"));

    /* The check works while the directory is locked (the node checks after locking). */
    struct node_datadir_lock lock;
    assert_int_equal(node_datadir_lock(f->dir, &lock, &f->err), 0);
    assert_int_equal(node_datadir_check_genesis(f->dir, mine, mine_len, &f->err), 0);
    node_datadir_unlock(&lock);

    ehr_free(mine);
    ehr_free(other);
    ehr_free(renamed);
}

static void test_genesis_check_refuses_a_missing_directory(void **state)
{
    struct fixture *f = *state;
    ehr_signing_key key;
    tu_key(&key, 1);
    uint8_t *genesis;
    size_t len;
    tu_genesis(&key, 1, &genesis, &len);
    char missing[PATH_MAX + 16];
    snprintf(missing, sizeof missing, "%s/nope", f->tmp);
    assert_int_equal(node_datadir_check_genesis(missing, genesis, len, &f->err), -ENOENT);
    assert_non_null(strstr(f->err.msg, "does not exist"));
    assert_int_equal(access(missing, F_OK), -1);
    ehr_free(genesis);
}

/* ---- the join file ---- */

struct join_fx {
    Ehr__V1__JoinInfo info;
    Ehr__V1__Member members[NODE_DATADIR_JOIN_MEMBERS_MAX + 1];
    Ehr__V1__Member *ptrs[NODE_DATADIR_JOIN_MEMBERS_MAX + 1];
    uint8_t keys[NODE_DATADIR_JOIN_MEMBERS_MAX + 1][32];
    uint8_t hash[32];
};

/* A valid join file of COUNT members (up to one past the bound). */
static void join_make(struct join_fx *j, size_t count)
{
    assert_true(count <= NODE_DATADIR_JOIN_MEMBERS_MAX + 1);
    ehr__v1__join_info__init(&j->info);
    for (size_t i = 0; i < count; i++) {
        ehr__v1__member__init(&j->members[i]);
        memset(j->keys[i], (int)(i + 1), 32);
        j->members[i].node_key = (ProtobufCBinaryData){32, j->keys[i]};
        j->members[i].name = "Member";
        j->members[i].peer_address = "127.0.0.1:7100";
        j->ptrs[i] = &j->members[i];
    }
    memset(j->hash, 0xab, sizeof j->hash);
    j->info.chain_id = "ehr-test";
    j->info.height = 42;
    j->info.block_hash = (ProtobufCBinaryData){32, j->hash};
    j->info.n_members = count;
    j->info.members = j->ptrs;
    j->info.source = "127.0.0.1:7201";
}

static void test_join_file_round_trips_at_its_bounds(void **state)
{
    struct fixture *f = *state;
    struct join_fx *j = calloc(1, sizeof *j);
    assert_non_null(j);
    Ehr__V1__JoinInfo *got = NULL;
    /* none yet: -ENOENT, no message needed */
    assert_int_equal(node_datadir_join_read(f->dir, &got, NULL), -ENOENT);
    /* 16 members: written and read back */
    join_make(j, NODE_DATADIR_JOIN_MEMBERS_MAX);
    assert_int_equal(node_datadir_join_write(f->dir, &j->info, &f->err), 0);
    assert_int_equal(node_datadir_join_read(f->dir, &got, &f->err), 0);
    assert_int_equal(got->n_members, NODE_DATADIR_JOIN_MEMBERS_MAX);
    assert_int_equal(got->height, 42);
    assert_memory_equal(got->members[15]->node_key.data, j->keys[15], 32);
    ehr__v1__join_info__free_unpacked(got, NULL);
    /* 17: refused, and the file there is kept */
    join_make(j, NODE_DATADIR_JOIN_MEMBERS_MAX + 1);
    assert_int_equal(node_datadir_join_write(f->dir, &j->info, &f->err), EHR_EINVAL);
    assert_non_null(strstr(f->err.msg, "not 1 to 16 members"));
    assert_int_equal(node_datadir_join_read(f->dir, &got, &f->err), 0);
    assert_int_equal(got->n_members, NODE_DATADIR_JOIN_MEMBERS_MAX);
    ehr__v1__join_info__free_unpacked(got, NULL);
    /* a member twice, a short key, a short hash, no chain: refused */
    join_make(j, 2);
    j->members[1].node_key.data = j->keys[0];
    assert_int_equal(node_datadir_join_write(f->dir, &j->info, &f->err), EHR_EINVAL);
    assert_non_null(strstr(f->err.msg, "listed twice"));
    join_make(j, 2);
    j->members[0].node_key.len = 31;
    assert_int_equal(node_datadir_join_write(f->dir, &j->info, &f->err), EHR_EINVAL);
    join_make(j, 2);
    j->info.block_hash.len = 31;
    assert_int_equal(node_datadir_join_write(f->dir, &j->info, &f->err), EHR_EINVAL);
    join_make(j, 2);
    j->info.chain_id = "";
    assert_int_equal(node_datadir_join_write(f->dir, &j->info, &f->err), EHR_EINVAL);
    /* removed: gone, and durable */
    assert_int_equal(node_datadir_join_remove(f->dir), 0);
    assert_int_equal(node_datadir_join_read(f->dir, &got, NULL), -ENOENT);
    assert_int_equal(node_datadir_join_remove(f->dir), -ENOENT);
    free(j);
}

static void test_join_file_refuses_a_corrupt_or_oversized_file(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/%s", f->dir, NODE_DATADIR_JOIN_NAME);
    Ehr__V1__JoinInfo *got = NULL;
    /* not protobuf */
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("\xff\xff\xff garbage", fp);
    fclose(fp);
    assert_int_equal(node_datadir_join_read(f->dir, &got, &f->err), EHR_ECORRUPT);
    assert_null(got);
    /* decodes, but no members */
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("\x0a\x01x", fp); /* chain_id "x" */
    fclose(fp);
    assert_int_equal(node_datadir_join_read(f->dir, &got, &f->err), EHR_ECORRUPT);
    assert_non_null(strstr(f->err.msg, "block hash"));
    /* one byte over the bound: refused before it is read */
    fp = fopen(path, "w");
    assert_non_null(fp);
    for (size_t i = 0; i < NODE_DATADIR_JOIN_BYTES_MAX + 1; i++)
        fputc(0, fp);
    fclose(fp);
    assert_int_equal(node_datadir_join_read(f->dir, &got, &f->err), EHR_ECORRUPT);
    assert_non_null(strstr(f->err.msg, "over"));
    unlink(path);
}

/* A join file with a field this version does not write is refused, not
 * carried along: protobuf-c keeps an unknown field, even one numbered 0 in
 * a two-byte varint, and writes it back in a form it then refuses (found by
 * fuzz_join_file). */
static void test_join_file_refuses_unknown_fields(void **state)
{
    (void)state;
    struct join_fx *j = calloc(1, sizeof *j);
    assert_non_null(j);
    join_make(j, 2);
    size_t len = ehr__v1__join_info__get_packed_size(&j->info);
    uint8_t *buf = malloc(len + 4);
    assert_non_null(buf);
    ehr__v1__join_info__pack(&j->info, buf);
    Ehr__V1__JoinInfo *got = NULL;
    ehr_diag why;
    assert_int_equal(node_datadir_join_decode(buf, len, &got, &why), 0); /* as written */
    ehr__v1__join_info__free_unpacked(got, NULL);
    got = NULL;
    static const uint8_t unknown[][3] = {{0x78, 0x01}, {0x80, 0x00, 0x01}}; /* 15 = 1; 0 = 1 */
    static const size_t unknown_len[] = {2, 3};
    for (size_t k = 0; k < 2; k++) {
        memcpy(buf + len, unknown[k], unknown_len[k]);
        assert_int_equal(node_datadir_join_decode(buf, len + unknown_len[k], &got, &why),
                         EHR_ECORRUPT);
        assert_null(got);
        assert_non_null(strstr(why.msg, "does not write"));
    }
    free(buf);
    free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_lock_is_exclusive_across_processes_and_names_the_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_is_released_when_its_holder_is_killed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lock_refuses_a_missing_or_wrong_directory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_genesis_check_accepts_its_own_and_refuses_another_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_genesis_check_refuses_a_missing_directory, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_join_file_round_trips_at_its_bounds, setup, teardown),
        cmocka_unit_test(test_join_file_refuses_unknown_fields),
        cmocka_unit_test_setup_teardown(test_join_file_refuses_a_corrupt_or_oversized_file, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
