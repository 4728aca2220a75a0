/*
 * Tests of the node's blob store (node/blobs.h): ids that cannot be paths,
 * atomic writes of content that hashes to its id, refusals that leave
 * nothing behind (a wrong hash, over the size limit, cut off), the sweep of
 * unfinished writes at open, and reads in chunks. Each test names the
 * invariant of blobs.h it guards.
 */
#define _XOPEN_SOURCE 700
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blobs.h"
#include "common.h"
#include "ehr_crypto.h"

struct fixture {
    char dir[256];
    struct node_blobs store;
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || ehr_crypto_init() != 0)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/ehr-blobs-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    node_blobs_close(&f->store);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Files under the store's sub-directories whose names begin with PREFIX
 * ("" for every file). */
static unsigned count_files(const struct fixture *f, const char *prefix)
{
    char blobs[512];
    snprintf(blobs, sizeof blobs, "%s/blobs", f->dir);
    unsigned count = 0;
    DIR *top = opendir(blobs);
    assert_non_null(top);
    struct dirent *d;
    while ((d = readdir(top)) != NULL) {
        if (d->d_name[0] == '.')
            continue;
        char sub[768];
        snprintf(sub, sizeof sub, "%s/%s", blobs, d->d_name);
        DIR *s = opendir(sub);
        if (s == NULL)
            continue;
        struct dirent *e;
        while ((e = readdir(s)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                strncmp(e->d_name, prefix, strlen(prefix)) == 0)
                count++;
        closedir(s);
    }
    closedir(top);
    return count;
}

static uint8_t *pattern(size_t len, uint32_t seed)
{
    uint8_t *p = malloc(len + 1);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
    return p;
}

/* Write DATA (LEN) in pieces of PIECE claiming ID; returns commit's code
 * (or the first write's failure, after an abort). */
static int put(struct fixture *f, const uint8_t id[32], const uint8_t *data, size_t len,
               size_t piece, ehr_diag *why)
{
    struct node_blob_writer w;
    int rc = node_blob_write_begin(&f->store, id, &w, why);
    if (rc != 0)
        return rc;
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        rc = node_blob_write(&w, data + off, n, why);
        if (rc != 0) {
            node_blob_write_abort(&w);
            return rc;
        }
    }
    return node_blob_write_commit(&w, why);
}

/* Invariant 1: only 64 lowercase hex digits are an id. */
static void test_blob_id_refuses_anything_but_lowercase_hex(void **state)
{
    (void)state;
    uint8_t id[32];
    const char *good = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    assert_int_equal(node_blob_id_parse(good, id), 0);
    char back[65];
    node_blob_id_hex(back, id);
    assert_string_equal(back, good);
    const char *bad[] = {
        "",
        "../../../../etc/passwd",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef",   /* 63 */
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0", /* 65 */
        "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",  /* upper */
        "00/12233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "..112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddee f",
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad); i++)
        assert_int_equal(node_blob_id_parse(bad[i], id), EHR_EINVAL);
    assert_int_equal(node_blob_id_parse(NULL, id), EHR_EINVAL);
}

/* Invariant 2: a committed blob is there whole under its id's path, and
 * reads back in chunks; nothing temporary is left. */
static void test_blob_written_atomically_reads_back(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(node_blobs_open(&f->store, f->dir, NODE_BLOB_BYTES_MAX, NULL, NULL), 0);
    size_t len = 3 * 1024 * 1024 + 17;
    uint8_t *data = pattern(len, 1), id[32];
    ehr_sha256(id, data, len);
    ehr_diag why = {{0}};
    assert_int_equal(put(f, id, data, len, 65536 + 3, &why), 0);
    uint64_t size = 0;
    assert_int_equal(node_blobs_stat(&f->store, id, &size), 0);
    assert_int_equal(size, len);
    char hex[65], path[512];
    node_blob_id_hex(hex, id);
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", f->dir, hex, hex + 2);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(count_files(f, NODE_BLOB_TMP_PREFIX), 0);
    struct node_blob_reader r;
    assert_int_equal(node_blob_read_open(&f->store, id, &r, NULL), 0);
    assert_int_equal(r.size, len);
    uint8_t *back = malloc(len);
    size_t got = 0;
    for (;;) {
        long k = node_blob_read(&r, back + got, 100000, NULL);
        assert_true(k >= 0);
        if (k == 0)
            break;
        got += (size_t)k;
    }
    node_blob_read_close(&r);
    assert_int_equal(got, len);
    assert_memory_equal(back, data, len);
    /* The same content again is fine (content-addressed). */
    assert_int_equal(put(f, id, data, len, len, NULL), 0);
    assert_int_equal(count_files(f, ""), 1);
    free(back);
    free(data);
}

/* Invariant 3: content that does not hash to its claimed id is refused and
 * leaves nothing. */
static void test_blob_bad_hash_refused_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(node_blobs_open(&f->store, f->dir, NODE_BLOB_BYTES_MAX, NULL, NULL), 0);
    uint8_t *data = pattern(100000, 2), id[32];
    ehr_sha256(id, data, 100000);
    data[5000] ^= 1; /* one bit off */
    ehr_diag why = {{0}};
    assert_int_equal(put(f, id, data, 100000, 4096, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "not the claimed blob id"));
    assert_int_equal(count_files(f, ""), 0);
    assert_int_equal(node_blobs_stat(&f->store, id, NULL), EHR_ENOTFOUND);
    struct node_blob_reader r;
    assert_int_equal(node_blob_read_open(&f->store, id, &r, NULL), EHR_ENOTFOUND);
    free(data);
}

/* Invariant 3 at the size limit's edge: exactly the limit is stored; one
 * byte more stops the write there and leaves nothing. */
static void test_blob_size_limit_edge_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    enum { LIMIT = 65536 };
    assert_int_equal(node_blobs_open(&f->store, f->dir, LIMIT, NULL, NULL), 0);
    uint8_t *data = pattern(LIMIT + 1, 3), id[32];
    ehr_sha256(id, data, LIMIT);
    assert_int_equal(put(f, id, data, LIMIT, 1000, NULL), 0);
    ehr_sha256(id, data, LIMIT + 1);
    ehr_diag why = {{0}};
    struct node_blob_writer w;
    assert_int_equal(node_blob_write_begin(&f->store, id, &w, NULL), 0);
    assert_int_equal(node_blob_write(&w, data, LIMIT, NULL), 0);
    assert_int_equal(node_blob_write(&w, data + LIMIT, 1, &why), EHR_ETOOBIG);
    assert_non_null(strstr(why.msg, "over the limit of 65536"));
    assert_int_equal(w.bytes, LIMIT); /* nothing of the refused piece went in */
    node_blob_write_abort(&w);
    node_blob_write_abort(&w); /* twice is safe */
    assert_int_equal(count_files(f, NODE_BLOB_TMP_PREFIX), 0);
    assert_int_equal(count_files(f, ""), 1); /* the one at the limit */
    assert_int_equal(node_blobs_stat(&f->store, id, NULL), EHR_ENOTFOUND);
    free(data);
}

/* Invariant 3: a write cut off half-way (abandoned) leaves nothing, and
 * one whose process died (its temporary file left) is swept at the next
 * open, while stored blobs stay. */
static void test_blob_cut_off_and_restart_sweep(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(node_blobs_open(&f->store, f->dir, NODE_BLOB_BYTES_MAX, NULL, NULL), 0);
    uint8_t *data = pattern(200000, 4), id[32], kept_id[32];
    ehr_sha256(kept_id, data, 1000);
    assert_int_equal(put(f, kept_id, data, 1000, 1000, NULL), 0);
    ehr_sha256(id, data, 200000);
    struct node_blob_writer w;
    assert_int_equal(node_blob_write_begin(&f->store, id, &w, NULL), 0);
    assert_int_equal(node_blob_write(&w, data, 100000, NULL), 0);
    node_blob_write_abort(&w); /* the client went away */
    assert_int_equal(count_files(f, NODE_BLOB_TMP_PREFIX), 0);
    /* A crash mid-write: two temporary files stay behind ... */
    struct node_blob_writer a, b;
    assert_int_equal(node_blob_write_begin(&f->store, id, &a, NULL), 0);
    assert_int_equal(node_blob_write(&a, data, 100000, NULL), 0);
    assert_int_equal(node_blob_write_begin(&f->store, kept_id, &b, NULL), 0);
    close(a.fd);
    close(b.fd);
    ehr_content_hash_clear(&a.hash);
    ehr_content_hash_clear(&b.hash);
    assert_int_equal(count_files(f, NODE_BLOB_TMP_PREFIX), 2);
    node_blobs_close(&f->store);
    /* ... and the next open removes them, and only them. */
    uint64_t swept = 0;
    assert_int_equal(node_blobs_open(&f->store, f->dir, NODE_BLOB_BYTES_MAX, &swept, NULL), 0);
    assert_int_equal(swept, 2);
    assert_int_equal(count_files(f, NODE_BLOB_TMP_PREFIX), 0);
    assert_int_equal(node_blobs_stat(&f->store, kept_id, NULL), 0);
    assert_int_equal(node_blobs_stat(&f->store, id, NULL), EHR_ENOTFOUND);
    free(data);
}

/* An empty blob is a blob (the SHA-256 of nothing). */
/* A blob of an erased record is deleted, once: removing it again (or one
 * never stored) is EHR_ENOTFOUND, and the other blobs stay. */
static void test_blob_removed_idempotently(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(node_blobs_open(&f->store, f->dir, NODE_BLOB_BYTES_MAX, NULL, NULL), 0);
    uint8_t *a = pattern(1000, 7), *b = pattern(2000, 8), id_a[32], id_b[32];
    ehr_sha256(id_a, a, 1000);
    ehr_sha256(id_b, b, 2000);
    assert_int_equal(put(f, id_a, a, 1000, 1000, NULL), 0);
    assert_int_equal(put(f, id_b, b, 2000, 2000, NULL), 0);
    assert_int_equal(count_files(f, ""), 2);
    ehr_diag why = {{0}};
    assert_int_equal(node_blobs_remove(&f->store, id_a, &why), 0);
    assert_int_equal(node_blobs_stat(&f->store, id_a, NULL), EHR_ENOTFOUND);
    assert_int_equal(node_blobs_stat(&f->store, id_b, NULL), 0);
    assert_int_equal(count_files(f, ""), 1);
    assert_int_equal(node_blobs_remove(&f->store, id_a, &why), EHR_ENOTFOUND);
    struct node_blob_reader r;
    assert_int_equal(node_blob_read_open(&f->store, id_a, &r, NULL), EHR_ENOTFOUND);
    free(a);
    free(b);
}

static void test_blob_empty(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(node_blobs_open(&f->store, f->dir, 1, NULL, NULL), 0);
    uint8_t id[32];
    ehr_sha256(id, "", 0);
    assert_int_equal(put(f, id, (const uint8_t *)"", 0, 1, NULL), 0);
    uint64_t size = 99;
    assert_int_equal(node_blobs_stat(&f->store, id, &size), 0);
    assert_int_equal(size, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_blob_id_refuses_anything_but_lowercase_hex, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_blob_written_atomically_reads_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_bad_hash_refused_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_size_limit_edge_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_cut_off_and_restart_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_removed_idempotently, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_empty, setup, teardown),
    };
    return cmocka_run_group_tests_name("blob store", tests, NULL, NULL);
}
