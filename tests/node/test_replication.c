/*
 * test_replication - the pure parts of blob replication (node/replication.c):
 *   - the replica set: deterministic, whatever the order the members are
 *     listed in; the custodian first; NODE_BLOB_COPIES at its edge (one
 *     member more and one less than the copies); fewer members than
 *     copies; a custodian no longer a member; every member chosen for
 *     some records;
 *   - a received piece (R2): taken only for the record, blob, offset and
 *     size asked, of exactly the length due, at most
 *     NODE_BLOB_REPLICA_CHUNK_BYTES; "missing" is its own answer;
 *   - the fetch queue: NODE_BLOB_QUEUE_MAX at its edge, no duplicates, FIFO.
 * The multi-process path (fetch, repair, record get from a replica) is
 * tests/cli/test_cli_replication.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "node_internal.h"

enum { KEYS_MAX = NODE_MEMBERS_MAX };

static void key_fill(uint8_t key[32], unsigned i)
{
    uint8_t seed[4] = {(uint8_t)i, (uint8_t)(i >> 8), 0x5a, 0xa5};
    ehr_sha256(key, seed, sizeof seed);
}

static size_t replicas(const uint8_t record[32], const uint8_t custodian[32], uint8_t (*keys)[32],
                       size_t count, size_t copies, size_t *out)
{
    return node__blob_replicas(record, custodian, (const uint8_t(*)[32])keys, count, copies, out);
}

/* Same set, same order, whatever order the members come in; custodian first. */
static void test_replicas_deterministic_custodian_first(void **state)
{
    (void)state;
    uint8_t keys[8][32], reversed[8][32];
    for (unsigned i = 0; i < 8; i++)
        key_fill(keys[i], i);
    for (unsigned i = 0; i < 8; i++)
        memcpy(reversed[i], keys[7 - i], 32);
    for (unsigned r = 0; r < 200; r++) {
        uint8_t record[32];
        uint8_t seed[2] = {(uint8_t)r, 0x77};
        ehr_sha256(record, seed, sizeof seed);
        const uint8_t *custodian = keys[r % 8];
        size_t a[8], b[8], c[8];
        size_t na = replicas(record, custodian, keys, 8, NODE_BLOB_COPIES, a);
        size_t nb = replicas(record, custodian, keys, 8, NODE_BLOB_COPIES, b);
        size_t nc = replicas(record, custodian, reversed, 8, NODE_BLOB_COPIES, c);
        assert_int_equal(na, NODE_BLOB_COPIES);
        assert_int_equal(nb, na);
        assert_int_equal(nc, na);
        assert_memory_equal(keys[a[0]], custodian, 32);
        for (size_t i = 0; i < na; i++) {
            assert_int_equal(a[i], b[i]);
            assert_memory_equal(keys[a[i]], reversed[c[i]], 32);
            for (size_t j = 0; j < i; j++)
                assert_int_not_equal(a[i], a[j]);
        }
    }
}

/* NODE_BLOB_COPIES at its edge: one member more gives the copies, exactly
 * the copies give every member, fewer give every member. */
static void test_replicas_copies_edge(void **state)
{
    (void)state;
    uint8_t keys[KEYS_MAX][32];
    for (unsigned i = 0; i < KEYS_MAX; i++)
        key_fill(keys[i], i);
    uint8_t record[32];
    ehr_sha256(record, (const uint8_t *)"r", 1);
    size_t out[KEYS_MAX];
    for (size_t count = 1; count <= KEYS_MAX; count++) {
        size_t n = replicas(record, keys[0], keys, count, NODE_BLOB_COPIES, out);
        size_t want = count < NODE_BLOB_COPIES ? count : NODE_BLOB_COPIES;
        assert_int_equal(n, want);
        assert_int_equal(out[0], 0);
    }
    assert_int_equal(replicas(record, keys[0], keys, NODE_BLOB_COPIES + 1, NODE_BLOB_COPIES, out),
                     NODE_BLOB_COPIES);
    assert_int_equal(replicas(record, keys[0], keys, NODE_BLOB_COPIES, NODE_BLOB_COPIES, out),
                     NODE_BLOB_COPIES);
    assert_int_equal(replicas(record, keys[0], keys, NODE_BLOB_COPIES - 1, NODE_BLOB_COPIES, out),
                     NODE_BLOB_COPIES - 1);
    /* Every member, in order, when asked for all of them (the fetch's sources). */
    assert_int_equal(replicas(record, keys[3], keys, 10, 10, out), 10);
    assert_int_equal(out[0], 3);
}

/* A custodian that is no longer a member: the copies from the others. */
static void test_replicas_custodian_gone(void **state)
{
    (void)state;
    uint8_t keys[5][32], gone[32];
    for (unsigned i = 0; i < 5; i++)
        key_fill(keys[i], i);
    key_fill(gone, 99);
    uint8_t record[32];
    ehr_sha256(record, (const uint8_t *)"gone", 4);
    size_t out[5];
    assert_int_equal(replicas(record, gone, keys, 5, NODE_BLOB_COPIES, out), NODE_BLOB_COPIES);
    assert_int_equal(replicas(record, gone, keys, 0, NODE_BLOB_COPIES, out), 0);
}

/* Over many records every member of eight holds some, none holds all. */
static void test_replicas_spread(void **state)
{
    (void)state;
    uint8_t keys[8][32];
    for (unsigned i = 0; i < 8; i++)
        key_fill(keys[i], i);
    unsigned held[8] = {0};
    const unsigned records = 800;
    for (unsigned r = 0; r < records; r++) {
        uint8_t record[32];
        uint8_t seed[3] = {(uint8_t)r, (uint8_t)(r >> 8), 1};
        ehr_sha256(record, seed, sizeof seed);
        size_t out[8];
        size_t n = replicas(record, keys[0], keys, 8, NODE_BLOB_COPIES, out);
        for (size_t i = 0; i < n; i++)
            held[out[i]]++;
    }
    assert_int_equal(held[0], records); /* the custodian holds all of its own */
    for (unsigned i = 1; i < 8; i++) {
        /* (COPIES - 1) / 7 of the records each: ~229; a wide margin */
        assert_in_range(held[i], records * (NODE_BLOB_COPIES - 1) / 7 / 2,
                        records * (NODE_BLOB_COPIES - 1) / 7 * 2);
    }
}

/* ---- pieces ---- */

static uint8_t piece[NODE_BLOB_REPLICA_CHUNK_BYTES + 1];

static void want_fill(struct node__blob_want *w)
{
    memset(w, 0, sizeof *w);
    memset(w->record_id, 0x11, 32);
    memset(w->blob_id, 0x22, 32);
    w->total_bytes = 2 * NODE_BLOB_REPLICA_CHUNK_BYTES + 10;
}

static Ehr__V1__BlobChunk chunk_of(struct node__blob_want *w, uint64_t offset, size_t len)
{
    Ehr__V1__BlobChunk c = EHR__V1__BLOB_CHUNK__INIT;
    c.record_id = (ProtobufCBinaryData){32, w->record_id};
    c.blob_id = (ProtobufCBinaryData){32, w->blob_id};
    c.offset = offset;
    c.total_bytes = w->total_bytes;
    c.data = (ProtobufCBinaryData){len, piece};
    return c;
}

static void test_chunk_taken_only_as_asked(void **state)
{
    (void)state;
    struct node__blob_want w;
    want_fill(&w);
    ehr_diag why;
    Ehr__V1__BlobChunk c = chunk_of(&w, 0, NODE_BLOB_REPLICA_CHUNK_BYTES);
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), 0);
    /* The last piece: exactly what is left. */
    w.offset = 2 * NODE_BLOB_REPLICA_CHUNK_BYTES;
    c = chunk_of(&w, w.offset, 10);
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), 0);
    c = chunk_of(&w, w.offset, 9);
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    c = chunk_of(&w, w.offset, 11);
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    /* A piece not at the end must be whole. */
    w.offset = 0;
    c = chunk_of(&w, 0, NODE_BLOB_REPLICA_CHUNK_BYTES - 1);
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    /* Over the limit, whatever is due. */
    c = chunk_of(&w, 0, NODE_BLOB_REPLICA_CHUNK_BYTES + 1);
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_ETOOBIG);
    assert_non_null(strstr(why.msg, "over the limit"));
    /* A wrong offset, size, record or blob. */
    c = chunk_of(&w, NODE_BLOB_REPLICA_CHUNK_BYTES, NODE_BLOB_REPLICA_CHUNK_BYTES);
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "offset"));
    c = chunk_of(&w, 0, NODE_BLOB_REPLICA_CHUNK_BYTES);
    c.total_bytes++;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    uint8_t other[32];
    memset(other, 0x33, 32);
    c = chunk_of(&w, 0, NODE_BLOB_REPLICA_CHUNK_BYTES);
    c.record_id.data = other;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    c = chunk_of(&w, 0, NODE_BLOB_REPLICA_CHUNK_BYTES);
    c.blob_id.data = other;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    c = chunk_of(&w, 0, NODE_BLOB_REPLICA_CHUNK_BYTES);
    c.blob_id.len = 31;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    /* "Missing": ask another; with data it is refused. */
    c = chunk_of(&w, 0, 0);
    c.missing = true;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_ENOTFOUND);
    c = chunk_of(&w, 0, 1);
    c.missing = true;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    c = chunk_of(&w, NODE_BLOB_REPLICA_CHUNK_BYTES, 0); /* for another offset */
    c.missing = true;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "missing at offset"));
    /* R7: "busy" at the offset asked: ask again later, whatever its
     * total_bytes (the sender did not look it up); with data, at another
     * offset, of another record or blob, or with "missing" too, refused. */
    w.offset = NODE_BLOB_REPLICA_CHUNK_BYTES;
    c = chunk_of(&w, w.offset, 0);
    c.busy = true;
    c.total_bytes = 0;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EAGAIN);
    c.data.len = 1;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    c.data.len = 0;
    c.offset = 0;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    assert_non_null(strstr(why.msg, "offset"));
    c.offset = w.offset;
    c.missing = true;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    c.missing = false;
    c.record_id.data = other;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    c.record_id.data = w.record_id;
    c.blob_id.data = other;
    assert_int_equal(node__blob_chunk_check(&w, &c, &why), EHR_EINVAL);
    /* A late answer (an earlier offset of the same record and blob) is
     * told apart, to be dropped; the offset asked, a later one, or another
     * record or blob is not late. */
    c = chunk_of(&w, 0, NODE_BLOB_REPLICA_CHUNK_BYTES);
    assert_true(node__blob_chunk_is_late(&w, &c));
    c.offset = w.offset;
    assert_false(node__blob_chunk_is_late(&w, &c));
    c.offset = w.offset + NODE_BLOB_REPLICA_CHUNK_BYTES;
    assert_false(node__blob_chunk_is_late(&w, &c));
    c.offset = 0;
    c.blob_id.data = other;
    assert_false(node__blob_chunk_is_late(&w, &c));
    c.blob_id.data = w.blob_id;
    c.record_id.data = other;
    assert_false(node__blob_chunk_is_late(&w, &c));
}

/* ---- the token bucket of BlobFetches ---- */

/* Full at first (BURST), one token per take, refilled at RATE a second up
 * to BURST and no further, never refilled at rate 0, a clock standing
 * still refills nothing. */
static void test_token_bucket_edges(void **state)
{
    (void)state;
    struct node__token_bucket b = {0};
    for (int i = 0; i < 4; i++)
        assert_true(node__token_take(&b, 1000, 100, 4));
    assert_false(node__token_take(&b, 1000, 100, 4)); /* the burst spent */
    assert_false(node__token_take(&b, 1009, 100, 4)); /* 0.9 of a token */
    assert_true(node__token_take(&b, 1010, 100, 4));  /* 1.0: 100/s is one per 10 ms */
    assert_false(node__token_take(&b, 1010, 100, 4));
    assert_true(node__token_take(&b, 1000000, 100, 4)); /* long idle: full, not more */
    for (int i = 0; i < 3; i++)
        assert_true(node__token_take(&b, 1000000, 100, 4));
    assert_false(node__token_take(&b, 1000000, 100, 4));
    assert_false(node__token_take(&b, 999000, 100, 4)); /* a clock going back adds nothing */
    struct node__token_bucket z = {0};
    assert_true(node__token_take(&z, 5, 0, 1));
    assert_false(node__token_take(&z, UINT64_MAX, 0, 1)); /* rate 0: never refilled */
    struct node__token_bucket big = {0};
    assert_true(node__token_take(&big, 0, UINT64_MAX / 1000, UINT64_MAX / 1000));
    assert_true(node__token_take(&big, UINT64_MAX, UINT64_MAX / 1000, UINT64_MAX / 1000));
}

/* ---- the queue ---- */

static void test_queue_edge(void **state)
{
    (void)state;
    static struct node__blob_queue q;
    memset(&q, 0, sizeof q);
    uint8_t id[32];
    assert_int_equal(node__blob_queue_pop(&q, id), EHR_ENOTFOUND);
    for (unsigned i = 0; i < NODE_BLOB_QUEUE_MAX; i++) {
        key_fill(id, i);
        assert_int_equal(node__blob_queue_push(&q, id), 0);
    }
    key_fill(id, 0);
    assert_int_equal(node__blob_queue_push(&q, id), EHR_EEXIST);
    key_fill(id, NODE_BLOB_QUEUE_MAX);
    assert_int_equal(node__blob_queue_push(&q, id), EHR_EFULL);
    assert_int_equal(q.count, NODE_BLOB_QUEUE_MAX);
    uint8_t got[32];
    assert_int_equal(node__blob_queue_pop(&q, got), 0);
    key_fill(id, 0);
    assert_memory_equal(got, id, 32); /* FIFO */
    key_fill(id, NODE_BLOB_QUEUE_MAX);
    assert_int_equal(node__blob_queue_push(&q, id), 0); /* room again, wrapping */
    for (unsigned i = 1; i <= NODE_BLOB_QUEUE_MAX; i++) {
        assert_int_equal(node__blob_queue_pop(&q, got), 0);
        key_fill(id, i);
        assert_memory_equal(got, id, 32);
    }
    assert_int_equal(node__blob_queue_pop(&q, got), EHR_ENOTFOUND);
}

int main(void)
{
    if (ehr_crypto_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicas_deterministic_custodian_first),
        cmocka_unit_test(test_replicas_copies_edge),
        cmocka_unit_test(test_replicas_custodian_gone),
        cmocka_unit_test(test_replicas_spread),
        cmocka_unit_test(test_chunk_taken_only_as_asked),
        cmocka_unit_test(test_token_bucket_edges),
        cmocka_unit_test(test_queue_edge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
