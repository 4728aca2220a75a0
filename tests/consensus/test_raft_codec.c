/*
 * test_raft_codec.c - the stored forms (CRC32C, entry / hard state /
 * snapshot meta records, configuration encoding) and raft_mem_storage:
 * round trips, every single-bit flip detected, limits at their edges, and
 * raft_create refusing a storage that contradicts itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "raft.h"

/* Bit-at-a-time CRC32C, the definition itself. */
static uint32_t crc32c_reference(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xffffffffU;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78U & (0U - (crc & 1U)));
    }
    return ~crc;
}

static void test_crc32c_matches_the_definition(void **state)
{
    const uint8_t check[] = "123456789";
    assert_int_equal(raft_crc32c(0, check, 9), 0xE3069283U); /* the standard check value */
    uint8_t buf[1031];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t n = 0; n < sizeof buf; n += 97)
        assert_int_equal(raft_crc32c(0, buf, n), crc32c_reference(buf, n));
    uint32_t part = raft_crc32c(0, buf, 500);
    assert_int_equal(raft_crc32c(part, buf + 500, sizeof buf - 500),
                     crc32c_reference(buf, sizeof buf));
}

/* Decoding must fail for every single-bit flip of an encoded record. */
static void assert_every_flip_detected(uint8_t *rec, size_t len,
                                       int (*decode)(const uint8_t *, size_t, void *))
{
    for (size_t bit = 0; bit < len * 8; bit++) {
        rec[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        uint8_t out[sizeof(struct raft_snapshot_meta)];
        assert_int_not_equal(decode(rec, len, out), 0);
        rec[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
}

static int decode_entry(const uint8_t *b, size_t n, void *out)
{
    return raft_entry_record_decode(b, n, out);
}

static int decode_hs(const uint8_t *b, size_t n, void *out)
{
    return raft_hard_state_record_decode(b, n, out);
}

static int decode_meta(const uint8_t *b, size_t n, void *out)
{
    return raft_snapshot_meta_record_decode(b, n, out);
}

static void test_entry_record_round_trips_and_detects_corruption(void **state)
{
    const uint8_t data[] = "a block proposal";
    struct raft_entry e = {
        .term = 7, .index = 1234567, .type = RAFT_ENTRY_NORMAL, .size = sizeof data, .data = data};
    uint8_t rec[RAFT_ENTRY_RECORD_HEADER_BYTES + sizeof data + RAFT_RECORD_CRC_BYTES];
    assert_int_equal(raft_entry_record_encode(&e, rec, sizeof rec - 1), EHR_ETOOBIG);
    assert_int_equal(raft_entry_record_encode(&e, rec, sizeof rec), (int)sizeof rec);
    struct raft_entry d;
    assert_int_equal(raft_entry_record_decode(rec, sizeof rec, &d), 0);
    assert_int_equal(d.term, 7);
    assert_int_equal(d.index, 1234567);
    assert_int_equal(d.type, RAFT_ENTRY_NORMAL);
    assert_int_equal(d.size, sizeof data);
    assert_memory_equal(d.data, data, sizeof data);
    assert_int_equal(raft_entry_record_decode(rec, sizeof rec - 1, &d), EHR_ETRUNCATED);
    assert_int_equal(raft_entry_record_decode(rec, 3, &d), EHR_ETRUNCATED);
    assert_every_flip_detected(rec, sizeof rec, decode_entry);

    struct raft_entry empty = {.term = 1, .index = 2, .type = RAFT_ENTRY_EMPTY};
    uint8_t small[RAFT_ENTRY_RECORD_HEADER_BYTES + RAFT_RECORD_CRC_BYTES];
    assert_int_equal(raft_entry_record_encode(&empty, small, sizeof small), (int)sizeof small);
    assert_int_equal(raft_entry_record_decode(small, sizeof small, &d), 0);
    assert_null(d.data);
    assert_every_flip_detected(small, sizeof small, decode_entry);

    struct raft_entry big = {.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL, .data = data};
    big.size = RAFT_PROPOSAL_BYTES_MAX + 1;
    assert_int_equal(raft_entry_record_encode(&big, small, sizeof small), EHR_EINVAL);
}

static void test_hard_state_record_round_trips_and_detects_corruption(void **state)
{
    /* A node never restored writes the form every version reads: version
     * 1, term, vote, commit (little-endian), CRC32C of what precedes. */
    enum { PLAIN = RAFT_HARD_STATE_RECORD_BYTES - 8 };
    struct raft_hard_state hs = {.term = 9, .vote = 3, .commit = 77}, d;
    uint8_t rec[RAFT_HARD_STATE_RECORD_BYTES];
    assert_int_equal(raft_hard_state_record_encode(&hs, rec, PLAIN - 1), EHR_ETOOBIG);
    assert_int_equal(raft_hard_state_record_encode(&hs, rec, PLAIN), PLAIN);
    uint8_t want[PLAIN] = {1, 9, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 77};
    uint32_t crc = raft_crc32c(0, want, PLAIN - 4);
    for (int i = 0; i < 4; i++)
        want[PLAIN - 4 + i] = (uint8_t)(crc >> (8 * i));
    assert_memory_equal(rec, want, PLAIN);
    assert_int_equal(raft_hard_state_record_decode(rec, PLAIN, &d), 0);
    assert_memory_equal(&d, &hs, sizeof hs);
    assert_int_equal(raft_hard_state_record_decode(rec, PLAIN - 1, &d), EHR_ETRUNCATED);
    assert_every_flip_detected(rec, PLAIN, decode_hs);

    /* A restored node's (I14): version 2, restore_term after commit. */
    struct raft_hard_state restored = {.term = 12, .commit = 40, .restore_term = 12};
    assert_int_equal(raft_hard_state_record_encode(&restored, rec, sizeof rec - 1), EHR_ETOOBIG);
    assert_int_equal(raft_hard_state_record_encode(&restored, rec, sizeof rec), (int)sizeof rec);
    assert_int_equal(rec[0], 2);
    assert_int_equal(raft_hard_state_record_decode(rec, sizeof rec, &d), 0);
    assert_memory_equal(&d, &restored, sizeof restored);
    assert_every_flip_detected(rec, sizeof rec, decode_hs);
    uint8_t longer[RAFT_HARD_STATE_RECORD_BYTES + 1] = {0};
    assert_int_equal(raft_hard_state_record_decode(longer, sizeof longer, &d), EHR_EINVAL);

    /* Each version has its one length, and the restored form a term. */
    uint8_t forged[RAFT_HARD_STATE_RECORD_BYTES];
    memcpy(forged, want, PLAIN - 4);
    memset(forged + PLAIN - 4, 0, 8);
    forged[0] = 1; /* version 1 with 8 bytes more */
    crc = raft_crc32c(0, forged, sizeof forged - 4);
    for (int i = 0; i < 4; i++)
        forged[sizeof forged - 4 + i] = (uint8_t)(crc >> (8 * i));
    assert_int_equal(raft_hard_state_record_decode(forged, sizeof forged, &d), EHR_EINVAL);
    forged[0] = 2; /* version 2 whose restore_term is 0 */
    crc = raft_crc32c(0, forged, sizeof forged - 4);
    for (int i = 0; i < 4; i++)
        forged[sizeof forged - 4 + i] = (uint8_t)(crc >> (8 * i));
    assert_int_equal(raft_hard_state_record_decode(forged, sizeof forged, &d), EHR_EINVAL);
}

static void test_snapshot_meta_record_round_trips_and_detects_corruption(void **state)
{
    struct raft_snapshot_meta m = {.index = 500, .term = 4};
    m.config.voter_count = 3;
    m.config.voters[0] = 1;
    m.config.voters[1] = 2;
    m.config.voters[2] = 3;
    m.config.learner_count = 1;
    m.config.learners[0] = 9;
    uint8_t rec[RAFT_SNAPSHOT_META_RECORD_BYTES];
    int n = raft_snapshot_meta_record_encode(&m, rec, sizeof rec);
    assert_true(n > 0);
    struct raft_snapshot_meta d;
    assert_int_equal(raft_snapshot_meta_record_decode(rec, (size_t)n, &d), 0);
    assert_memory_equal(&d, &m, sizeof m);
    assert_every_flip_detected(rec, (size_t)n, decode_meta);
}

static void test_config_encoding_at_its_edges(void **state)
{
    uint8_t buf[RAFT_CONFIG_ENCODED_BYTES_MAX];
    struct raft_config c = {.voter_count = RAFT_MEMBERS_MAX}, d;
    for (uint32_t i = 0; i < RAFT_MEMBERS_MAX; i++)
        c.voters[i] = 100 + i;
    int n = raft_config_encode(&c, buf);
    assert_int_equal(n, RAFT_CONFIG_ENCODED_BYTES_MAX);
    assert_int_equal(raft_config_decode(buf, (size_t)n, &d), 0);
    assert_memory_equal(&d, &c, sizeof c);
    struct raft_config over = c;
    over.learner_count = 1;
    over.learners[0] = 999;
    assert_int_equal(raft_config_encode(&over, buf), EHR_EINVAL); /* 17 members */
    struct raft_config dup = {.voter_count = 2, .voters = {5, 5}};
    assert_int_equal(raft_config_encode(&dup, buf), EHR_EINVAL);
    struct raft_config dup2 = {
        .voter_count = 1, .voters = {5}, .learner_count = 1, .learners = {5}};
    assert_int_equal(raft_config_encode(&dup2, buf), EHR_EINVAL);
    struct raft_config zero = {.voter_count = 1, .voters = {0}};
    assert_int_equal(raft_config_encode(&zero, buf), EHR_EINVAL);
    struct raft_config none = {.learner_count = 1, .learners = {4}};
    assert_int_equal(raft_config_encode(&none, buf), EHR_EINVAL); /* no voter */
    struct raft_config one = {.voter_count = 1, .voters = {1}};
    n = raft_config_encode(&one, buf);
    assert_int_equal(n, 12);
    assert_int_equal(raft_config_decode(buf, (size_t)n - 1, &d), EHR_EINVAL);
    buf[0] = 2;
    assert_int_equal(raft_config_decode(buf, (size_t)n, &d), EHR_EVERSION);
}

static struct raft_entry mk(uint64_t index, uint64_t term, const char *text)
{
    return (struct raft_entry){.index = index,
                               .term = term,
                               .type = RAFT_ENTRY_NORMAL,
                               .size = (uint32_t)strlen(text),
                               .data = (const uint8_t *)text};
}

static void test_mem_storage_appends_truncates_and_compacts(void **state)
{
    struct raft_mem_storage *ms = raft_mem_storage_create(true);
    struct raft_storage st;
    raft_mem_storage_interface(ms, &st);
    assert_int_equal(st.first_index(st.ctx), 1);
    assert_int_equal(st.last_index(st.ctx), 0);
    struct raft_entry es[10];
    for (uint64_t i = 0; i < 10; i++)
        es[i] = mk(i + 1, i < 5 ? 1 : 2, "0123456789");
    assert_int_equal(raft_mem_storage_append(ms, es, 10), 0);
    assert_int_equal(st.last_index(st.ctx), 10);
    struct raft_entry out[10];
    size_t got = 0;
    assert_int_equal(st.entries(st.ctx, 2, 11, 25, out, 10, &got), 0);
    assert_int_equal(got, 2); /* 10 + 10 bytes fit in 25, a third would not */
    assert_int_equal(st.entries(st.ctx, 2, 11, 1, out, 10, &got), 0);
    assert_int_equal(got, 1); /* always at least one */
    const uint8_t *old7 = NULL;
    assert_int_equal(st.entries(st.ctx, 7, 8, 100, out, 1, &got), 0);
    old7 = out[0].data;

    /* replace from 6 on: a gap or a write below the log is refused */
    struct raft_entry gap = mk(12, 3, "x");
    assert_int_equal(raft_mem_storage_append(ms, &gap, 1), EHR_EINVAL);
    struct raft_entry repl[2] = {mk(6, 3, "new six"), mk(7, 3, "new seven")};
    assert_int_equal(raft_mem_storage_append(ms, repl, 2), 0);
    assert_int_equal(st.last_index(st.ctx), 7);
    uint64_t t = 0;
    assert_int_equal(st.term(st.ctx, 7, &t), 0);
    assert_int_equal(t, 3);
    assert_memory_equal(old7, "0123456789", 10); /* stable pointers survive truncation */

    struct raft_snapshot_meta meta = {.index = 5, .term = 1};
    meta.config.voter_count = 1;
    meta.config.voters[0] = 1;
    assert_int_equal(raft_mem_storage_snapshot(ms, &meta, (const uint8_t *)"state", 5, 3), 0);
    assert_int_equal(st.first_index(st.ctx), 4); /* kept two entries before the snapshot */
    assert_int_equal(st.term(st.ctx, 3, &t), 0);
    assert_int_equal(t, 1);
    assert_int_equal(st.term(st.ctx, 2, &t), EHR_ENOTFOUND);
    struct raft_snapshot_meta got_meta;
    uint64_t size = 0;
    assert_int_equal(st.snapshot_meta(st.ctx, &got_meta, &size), 0);
    assert_int_equal(got_meta.index, 5);
    assert_int_equal(size, 5);
    uint8_t buf[8];
    size_t n = 0;
    assert_int_equal(st.snapshot_read(st.ctx, 2, buf, sizeof buf, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(buf, "ate", 3);
    struct raft_snapshot_meta bad = meta;
    bad.term = 2; /* not the term of entry 5 */
    assert_int_equal(raft_mem_storage_snapshot(ms, &bad, NULL, 0, 5), EHR_EINVAL);

    /* a received snapshot replaces the whole log */
    assert_int_equal(raft_mem_storage_stage_chunk(ms, 0, (const uint8_t *)"abc", 3), 0);
    assert_int_equal(raft_mem_storage_stage_chunk(ms, 5, (const uint8_t *)"x", 1), EHR_EINVAL);
    assert_int_equal(raft_mem_storage_stage_chunk(ms, 3, (const uint8_t *)"def", 3), 0);
    struct raft_snapshot_meta far = {.index = 40, .term = 6, .config = meta.config};
    assert_int_equal(raft_mem_storage_install_staged(ms, &far), 0);
    assert_int_equal(st.first_index(st.ctx), 41);
    assert_int_equal(st.last_index(st.ctx), 40);
    assert_int_equal(st.term(st.ctx, 40, &t), 0);
    assert_int_equal(t, 6);
    const uint8_t *data = raft_mem_storage_snapshot_data(ms, &size);
    assert_int_equal(size, 6);
    assert_memory_equal(data, "abcdef", 6);
    raft_mem_storage_destroy(ms);
}

/* raft_create trusts nothing: a storage that contradicts itself is refused. */
static void test_create_refuses_inconsistent_storage(void **state)
{
    struct raft_options opt;
    raft_options_default(&opt);
    opt.id = 1;
    struct raft *r = NULL;
    struct raft_mem_storage *ms = raft_mem_storage_create(false);
    struct raft_storage st;
    raft_mem_storage_interface(ms, &st);
    uint8_t cbuf[RAFT_CONFIG_ENCODED_BYTES_MAX];
    struct raft_config conf = {.voter_count = 1, .voters = {1}};
    struct raft_entry boot;
    assert_int_equal(raft_bootstrap_entry(&conf, cbuf, &boot), 0);
    assert_int_equal(raft_mem_storage_append(ms, &boot, 1), 0);
    struct raft_hard_state hs = {.term = 1, .commit = 2}; /* commit beyond the log */
    raft_mem_storage_set_hard_state(ms, &hs);
    assert_int_equal(raft_create(&r, &opt, &st), EHR_ECORRUPT);
    assert_null(r);
    hs.commit = 1;
    raft_mem_storage_set_hard_state(ms, &hs);
    opt.applied = 2; /* the application claims more than is committed */
    assert_int_equal(raft_create(&r, &opt, &st), EHR_EINVAL);
    opt.applied = 0;
    struct raft_entry junk = {.term = 1,
                              .index = 2,
                              .type = RAFT_ENTRY_CONFIG,
                              .size = 3,
                              .data = (const uint8_t *)"bad"};
    assert_int_equal(raft_mem_storage_append(ms, &junk, 1), 0);
    assert_int_equal(raft_create(&r, &opt, &st), EHR_ECORRUPT);
    /* a single-voter cluster elects itself and commits alone */
    struct raft_entry fine = {.term = 1, .index = 2, .type = RAFT_ENTRY_EMPTY};
    assert_int_equal(raft_mem_storage_append(ms, &fine, 1), 0);
    assert_int_equal(raft_create(&r, &opt, &st), 0);
    for (int i = 0; i < 2 * (int)opt.election_ticks; i++) {
        assert_int_equal(raft_tick(r), 0);
        while (raft_ready_pending(r)) {
            struct raft_ready rd;
            assert_int_equal(raft_ready_get(r, &rd), 0);
            assert_int_equal(raft_mem_storage_persist(ms, &rd), 0);
            assert_int_equal(raft_ready_advance(r), 0);
        }
    }
    struct raft_status s;
    raft_status_get(r, &s);
    assert_int_equal(s.role, RAFT_LEADER);
    assert_int_equal(s.hard_state.commit, s.last_index);
    raft_destroy(r);
    raft_mem_storage_destroy(ms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_matches_the_definition),
        cmocka_unit_test(test_entry_record_round_trips_and_detects_corruption),
        cmocka_unit_test(test_hard_state_record_round_trips_and_detects_corruption),
        cmocka_unit_test(test_snapshot_meta_record_round_trips_and_detects_corruption),
        cmocka_unit_test(test_config_encoding_at_its_edges),
        cmocka_unit_test(test_mem_storage_appends_truncates_and_compacts),
        cmocka_unit_test(test_create_refuses_inconsistent_storage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
