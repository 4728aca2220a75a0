/*
 * Unit tests for common/pbwire.h at its edges: every varint length 1..10,
 * the 64-bit bound, padded (non-minimal) varints under each rule,
 * truncation at every byte, keys with field numbers up to 2^29 - 1 and each
 * wire type, and length headers that run past the end. The codecs built on
 * it keep their own byte-for-byte tests against protobuf-c
 * (test_ledger_format, test_p2p_codec, test_raft_wire).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "pbwire.h"

static const enum ehr_pb_rule rules[] = {EHR_PB_MINIMAL, EHR_PB_PADDED, EHR_PB_PROTOBUF_C};

/* The smallest value that takes N varint bytes (N = 1..10). */
static uint64_t varint_value_min(size_t n)
{
    return n == 1 ? 0 : UINT64_C(1) << (7 * (n - 1));
}

/* The largest value that takes N varint bytes (N = 1..10). */
static uint64_t varint_value_max(size_t n)
{
    return n == EHR_PB_VARINT_BYTES_MAX ? UINT64_MAX : (UINT64_C(1) << (7 * n)) - 1;
}

static int read_varint(const uint8_t *bytes, size_t len, enum ehr_pb_rule rule, uint64_t *value,
                       size_t *pos)
{
    ehr_pb_reader r = {.data = bytes, .len = len};
    int rc = ehr_pb_varint_read(&r, rule, value);
    *pos = r.pos;
    return rc;
}

static void test_varint_every_length_round_trips_under_every_rule(void **state)
{
    for (size_t n = 1; n <= EHR_PB_VARINT_BYTES_MAX; n++) {
        const uint64_t values[] = {varint_value_min(n), varint_value_min(n) + 1,
                                   varint_value_max(n) - 1, varint_value_max(n)};
        for (size_t i = 0; i < EHR_ARRAY_COUNT(values); i++) {
            uint8_t buf[EHR_PB_VARINT_BYTES_MAX + 1];
            memset(buf, 0xee, sizeof buf);
            assert_int_equal(ehr_pb_varint_size(values[i]), n);
            assert_ptr_equal(ehr_pb_varint_write(buf, values[i]), buf + n);
            assert_int_equal(buf[n], 0xee); /* nothing past the size */
            for (size_t b = 0; b + 1 < n; b++)
                assert_true(buf[b] & 0x80);
            assert_false(buf[n - 1] & 0x80);
            for (size_t k = 0; k < EHR_ARRAY_COUNT(rules); k++) {
                uint64_t v = 0;
                size_t pos = 0;
                /* a trailing byte after the varint is left unread */
                assert_int_equal(read_varint(buf, n + 1, rules[k], &v, &pos), 0);
                assert_int_equal(pos, n);
                assert_int_equal(v, values[i]);
            }
        }
    }
}

static void test_varint_known_bytes(void **state)
{
    struct {
        uint64_t value;
        uint8_t bytes[EHR_PB_VARINT_BYTES_MAX];
        size_t len;
    } known[] = {
        {0, {0x00}, 1},
        {1, {0x01}, 1},
        {127, {0x7f}, 1},
        {128, {0x80, 0x01}, 2},
        {150, {0x96, 0x01}, 2},
        {300, {0xac, 0x02}, 2},
        {16384, {0x80, 0x80, 0x01}, 3},
        {UINT32_MAX, {0xff, 0xff, 0xff, 0xff, 0x0f}, 5},
        {UINT64_C(1) << 63, {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 10},
        {UINT64_MAX, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(known); i++) {
        uint8_t buf[EHR_PB_VARINT_BYTES_MAX];
        assert_ptr_equal(ehr_pb_varint_write(buf, known[i].value), buf + known[i].len);
        assert_memory_equal(buf, known[i].bytes, known[i].len);
    }
}

static void test_varint_truncated_at_every_byte(void **state)
{
    for (size_t n = 1; n <= EHR_PB_VARINT_BYTES_MAX; n++) {
        uint8_t buf[EHR_PB_VARINT_BYTES_MAX];
        ehr_pb_varint_write(buf, varint_value_max(n));
        for (size_t cut = 0; cut < n; cut++) {
            for (size_t k = 0; k < EHR_ARRAY_COUNT(rules); k++) {
                uint64_t v = 12345;
                size_t pos = 99;
                assert_int_equal(read_varint(buf, cut, rules[k], &v, &pos), EHR_ETRUNCATED);
                assert_int_equal(pos, 0); /* an error moves nothing */
                assert_int_equal(v, 12345);
            }
        }
    }
    /* An empty reader over no bytes at all. */
    ehr_pb_reader r = {.data = NULL, .len = 0};
    uint64_t v = 0;
    assert_int_equal(ehr_pb_varint_read(&r, EHR_PB_PADDED, &v), EHR_ETRUNCATED);
    assert_int_equal(ehr_pb_skip(&r, 0), 0);
    assert_int_equal(ehr_pb_skip(&r, 1), EHR_ETRUNCATED);
}

static void test_varint_64_bit_bound(void **state)
{
    uint8_t buf[11];
    memset(buf, 0xff, 9);
    uint64_t v = 0;
    size_t pos = 0;
    /* 10th byte 0x01: bit 63, the largest value; every rule takes it. */
    buf[9] = 0x01;
    for (size_t k = 0; k < EHR_ARRAY_COUNT(rules); k++) {
        assert_int_equal(read_varint(buf, 10, rules[k], &v, &pos), 0);
        assert_int_equal(v, UINT64_MAX);
    }
    /* 10th byte 0x02..0x7f: past 64 bits. Refused, except that protobuf-c
     * drops the excess bits and so does EHR_PB_PROTOBUF_C. */
    for (unsigned last = 0x02; last <= 0x7f; last++) {
        buf[9] = (uint8_t)last;
        assert_int_equal(read_varint(buf, 10, EHR_PB_MINIMAL, &v, &pos), EHR_EINVAL);
        assert_int_equal(pos, 0);
        assert_int_equal(read_varint(buf, 10, EHR_PB_PADDED, &v, &pos), EHR_EINVAL);
        assert_int_equal(read_varint(buf, 10, EHR_PB_PROTOBUF_C, &v, &pos), 0);
        assert_int_equal(pos, 10);
        assert_int_equal(v, last & 1 ? UINT64_MAX : UINT64_MAX >> 1);
    }
    /* An 11th byte: no rule reads more than 10. */
    buf[9] = 0x81;
    buf[10] = 0x00;
    for (size_t k = 0; k < EHR_ARRAY_COUNT(rules); k++) {
        assert_int_equal(read_varint(buf, 11, rules[k], &v, &pos), EHR_EINVAL);
        assert_int_equal(pos, 0);
    }
}

static void test_varint_padding_refused_only_when_minimal(void **state)
{
    struct {
        uint8_t bytes[EHR_PB_VARINT_BYTES_MAX];
        size_t len;
        uint64_t value;
    } padded[] = {
        {{0x80, 0x00}, 2, 0},
        {{0xff, 0x00}, 2, 127},
        {{0x81, 0x80, 0x00}, 3, 1},
        {{0x80, 0x81, 0x80, 0x00}, 4, 128},
        {{0xff, 0xff, 0xff, 0xff, 0x8f, 0x00}, 6, UINT32_MAX},
        {{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 10, 0},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(padded); i++) {
        uint64_t v = 0;
        size_t pos = 0;
        assert_int_equal(read_varint(padded[i].bytes, padded[i].len, EHR_PB_MINIMAL, &v, &pos),
                         EHR_EINVAL);
        assert_int_equal(pos, 0);
        assert_int_equal(read_varint(padded[i].bytes, padded[i].len, EHR_PB_PADDED, &v, &pos), 0);
        assert_int_equal(v, padded[i].value);
        assert_int_equal(pos, padded[i].len);
        assert_int_equal(read_varint(padded[i].bytes, padded[i].len, EHR_PB_PROTOBUF_C, &v, &pos),
                         0);
        assert_int_equal(v, padded[i].value);
        assert_int_equal(pos, padded[i].len);
    }
}

/* Whatever a stricter rule reads, a laxer one reads the same way. */
static void test_varint_rules_nest(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15u;
    size_t accepted[3] = {0, 0, 0};
    for (int round = 0; round < 200000; round++) {
        uint8_t buf[12];
        for (size_t i = 0; i < sizeof buf; i++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            buf[i] = (uint8_t)(seed >> 56);
        }
        /* Shape the bytes: mostly continuation bytes, an end somewhere. */
        size_t end = (size_t)(seed >> 8) % sizeof buf;
        for (size_t i = 0; i < end; i++)
            buf[i] |= 0x80;
        if ((seed >> 20) & 1)
            buf[end] &= 0x7f;
        size_t len = (size_t)(seed >> 32) % (sizeof buf + 1);
        uint64_t v[3] = {0, 0, 0};
        size_t pos[3] = {0, 0, 0};
        int rc[3];
        for (size_t k = 0; k < 3; k++)
            rc[k] = read_varint(buf, len, rules[k], &v[k], &pos[k]);
        for (size_t k = 0; k + 1 < 3; k++) {
            if (rc[k] != 0)
                continue;
            assert_int_equal(rc[k + 1], 0);
            assert_int_equal(v[k + 1], v[k]);
            assert_int_equal(pos[k + 1], pos[k]);
        }
        for (size_t k = 0; k < 3; k++) {
            if (rc[k] != 0) {
                assert_int_equal(pos[k], 0); /* an error moves nothing */
                continue;
            }
            assert_true(pos[k] >= 1);
            assert_true(pos[k] <= len);
            accepted[k]++;
        }
        if (rc[0] == 0) /* minimal: exactly the bytes the writer would use */
            assert_int_equal(pos[0], ehr_pb_varint_size(v[0]));
    }
    /* The inputs reach both outcomes, and each rule is laxer than the last. */
    print_message("accepted of 200000: minimal %zu, padded %zu, protobuf-c %zu\n", accepted[0],
                  accepted[1], accepted[2]);
    assert_true(accepted[0] > 1000);
    assert_true(accepted[1] > accepted[0]);
    assert_true(accepted[2] > accepted[1]);
    assert_true(accepted[2] < 200000);
}

/* Read a key from R under RULE and expect FIELD with WIRE_TYPE. */
static void expect_key(ehr_pb_reader *r, enum ehr_pb_rule rule, uint32_t field, unsigned wire_type)
{
    uint32_t got_field = 0;
    unsigned got_wire_type = 99;
    assert_int_equal(ehr_pb_key_read(r, rule, &got_field, &got_wire_type), 0);
    assert_int_equal(got_field, field);
    assert_int_equal(got_wire_type, wire_type);
}

static void test_key_every_size_and_wire_type(void **state)
{
    const uint32_t fields[] = {1,
                               2,
                               15,
                               16,
                               2047,
                               2048,
                               (1u << 18) - 1,
                               1u << 18,
                               (1u << 25) - 1,
                               1u << 25,
                               EHR_PB_FIELD_NUMBER_MAX - 1,
                               EHR_PB_FIELD_NUMBER_MAX};
    const size_t sizes[] = {1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5};
    _Static_assert(EHR_ARRAY_COUNT(fields) == EHR_ARRAY_COUNT(sizes), "one size per field");
    for (size_t i = 0; i < EHR_ARRAY_COUNT(fields); i++) {
        assert_int_equal(ehr_pb_key_size(fields[i]), sizes[i]);
        for (unsigned wire = EHR_PB_WIRE_VARINT; wire <= EHR_PB_WIRE_FIXED32; wire++) {
            uint8_t buf[EHR_PB_KEY_BYTES_MAX];
            size_t n =
                (size_t)(ehr_pb_key_write(buf, fields[i], (enum ehr_pb_wire_type)wire) - buf);
            assert_int_equal(n, sizes[i]);
            assert_int_equal(ehr_pb_key(fields[i], (enum ehr_pb_wire_type)wire),
                             (uint64_t)fields[i] << 3 | wire);
            for (size_t k = 0; k < EHR_ARRAY_COUNT(rules); k++) {
                ehr_pb_reader r = {.data = buf, .len = n};
                expect_key(&r, rules[k], fields[i], wire);
                assert_int_equal(r.pos, n);
                /* cut at every byte */
                for (size_t cut = 0; cut < n; cut++) {
                    r = (ehr_pb_reader){.data = buf, .len = cut};
                    uint32_t field = 0;
                    unsigned wire_type = 0;
                    assert_int_equal(ehr_pb_key_read(&r, rules[k], &field, &wire_type),
                                     EHR_ETRUNCATED);
                    assert_int_equal(r.pos, 0);
                }
            }
        }
    }
    assert_int_equal(ehr_pb_key(1, EHR_PB_WIRE_LEN), 0x0a);
    assert_int_equal(ehr_pb_key(2, EHR_PB_WIRE_LEN), 0x12);
}

static int read_key(const uint8_t *bytes, size_t len, enum ehr_pb_rule rule, uint32_t *field,
                    unsigned *wire_type)
{
    ehr_pb_reader r = {.data = bytes, .len = len};
    int rc = ehr_pb_key_read(&r, rule, field, wire_type);
    assert_int_equal(r.pos, rc == 0 ? len : 0);
    return rc;
}

static void test_key_refusals(void **state)
{
    uint32_t field = 0;
    unsigned wire = 0;
    for (size_t k = 0; k < EHR_ARRAY_COUNT(rules); k++) {
        enum ehr_pb_rule rule = rules[k];
        /* field number 0, with each wire type */
        for (uint8_t b = 0; b < 8; b++)
            assert_int_equal(read_key(&b, 1, rule, &field, &wire), EHR_EINVAL);
        /* the largest key: field 2^29 - 1, wire type 7 (the caller's to refuse) */
        const uint8_t top[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
        assert_int_equal(read_key(top, sizeof top, rule, &field, &wire), 0);
        assert_int_equal(field, EHR_PB_FIELD_NUMBER_MAX);
        assert_int_equal(wire, 7);
        /* one past: a key over 32 bits (protobuf-c would wrap it) */
        const uint8_t over[] = {0x80, 0x80, 0x80, 0x80, 0x10};
        assert_int_equal(read_key(over, sizeof over, rule, &field, &wire), EHR_EINVAL);
        const uint8_t over_max[] = {0xff, 0xff, 0xff, 0xff, 0x7f};
        assert_int_equal(read_key(over_max, sizeof over_max, rule, &field, &wire), EHR_EINVAL);
    }
    /* A padded key (field 1, varint): 2 and 5 bytes, protobuf-c's limit; 6
     * and 10 bytes, which protobuf-c refuses and so does every rule. */
    const uint8_t pad2[] = {0x88, 0x00};
    const uint8_t pad5[] = {0x88, 0x80, 0x80, 0x80, 0x00};
    const uint8_t pad6[] = {0x88, 0x80, 0x80, 0x80, 0x80, 0x00};
    const uint8_t pad10[] = {0x88, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(read_key(pad2, sizeof pad2, EHR_PB_MINIMAL, &field, &wire), EHR_EINVAL);
    assert_int_equal(read_key(pad2, sizeof pad2, EHR_PB_PADDED, &field, &wire), 0);
    assert_int_equal(field, 1);
    assert_int_equal(read_key(pad5, sizeof pad5, EHR_PB_PROTOBUF_C, &field, &wire), 0);
    assert_int_equal(field, 1);
    assert_int_equal(read_key(pad5, sizeof pad5, EHR_PB_PADDED, &field, &wire), 0);
    assert_int_equal(field, 1);
    for (size_t k = 0; k < EHR_ARRAY_COUNT(rules); k++) {
        assert_int_equal(read_key(pad6, sizeof pad6, rules[k], &field, &wire), EHR_EINVAL);
        assert_int_equal(read_key(pad10, sizeof pad10, rules[k], &field, &wire), EHR_EINVAL);
    }
    /* A 5-byte key cut short is truncated, not invalid. */
    assert_int_equal(read_key(pad5, 4, EHR_PB_PROTOBUF_C, &field, &wire), EHR_ETRUNCATED);
    assert_int_equal(read_key(pad5, 4, EHR_PB_PADDED, &field, &wire), EHR_ETRUNCATED);
}

static void test_len_header_round_trip(void **state)
{
    const uint64_t lens[] = {0, 1, 127, 128, 16383, 16384, (1u << 21) - 1, 1u << 21};
    const uint32_t fields[] = {1, 15, 16, EHR_PB_FIELD_NUMBER_MAX};
    static uint8_t buf[EHR_PB_LEN_HEADER_BYTES_MAX + (1u << 21) + 1];
    for (size_t f = 0; f < EHR_ARRAY_COUNT(fields); f++) {
        for (size_t i = 0; i < EHR_ARRAY_COUNT(lens); i++) {
            size_t head = (size_t)(ehr_pb_len_header_write(buf, fields[f], lens[i]) - buf);
            assert_int_equal(head, ehr_pb_len_header_size(fields[f], lens[i]));
            assert_int_equal(head, ehr_pb_key_size(fields[f]) + ehr_pb_varint_size(lens[i]));
            assert_true(head <= EHR_PB_LEN_HEADER_BYTES_MAX);
            memset(buf + head, 0x5a, (size_t)lens[i] + 1);
            for (size_t k = 0; k < EHR_ARRAY_COUNT(rules); k++) {
                /* the content exactly, then one byte more than there is */
                for (size_t extra = 0; extra <= 1; extra++) {
                    size_t total = head + (size_t)lens[i] + extra;
                    ehr_pb_reader r = {.data = buf, .len = total};
                    expect_key(&r, rules[k], fields[f], EHR_PB_WIRE_LEN);
                    ehr_pb_reader content = {NULL, 99, 99};
                    assert_int_equal(ehr_pb_len_read(&r, rules[k], &content), 0);
                    assert_ptr_equal(content.data, buf + head);
                    assert_int_equal(content.len, lens[i]);
                    assert_int_equal(content.pos, 0);
                    assert_int_equal(r.pos, head + lens[i]);
                }
                /* one byte short of the content: the length runs past the end */
                if (lens[i] > 0) {
                    ehr_pb_reader r = {.data = buf, .len = head + (size_t)lens[i] - 1};
                    r.pos = ehr_pb_key_size(fields[f]);
                    ehr_pb_reader content = {NULL, 99, 99};
                    assert_int_equal(ehr_pb_len_read(&r, rules[k], &content), EHR_ETRUNCATED);
                    assert_int_equal(r.pos, ehr_pb_key_size(fields[f]));
                    assert_int_equal(content.len, 99);
                }
            }
        }
    }
}

static int read_len(const uint8_t *bytes, size_t len, enum ehr_pb_rule rule, size_t *content_len)
{
    ehr_pb_reader r = {.data = bytes, .len = len};
    ehr_pb_reader content = {0};
    int rc = ehr_pb_len_read(&r, rule, &content);
    assert_int_equal(r.pos, rc == 0 ? len : 0);
    *content_len = content.len;
    return rc;
}

static void test_len_past_the_end_and_refusals(void **state)
{
    size_t n = 0;
    for (size_t k = 0; k < EHR_ARRAY_COUNT(rules); k++) {
        enum ehr_pb_rule rule = rules[k];
        /* no length at all; a length cut short; a length with no content */
        assert_int_equal(read_len(NULL, 0, rule, &n), EHR_ETRUNCATED);
        const uint8_t cut[] = {0x80};
        assert_int_equal(read_len(cut, sizeof cut, rule, &n), EHR_ETRUNCATED);
        const uint8_t one[] = {0x01};
        assert_int_equal(read_len(one, sizeof one, rule, &n), EHR_ETRUNCATED);
        /* lengths near 2^32 and 2^64 over a few bytes */
        const uint8_t u32[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 'a', 'b'};
        assert_int_equal(read_len(u32, sizeof u32, rule, &n), EHR_ETRUNCATED);
        const uint8_t u64[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'};
        /* past 5 bytes or 32 bits: only a minimal length may be that wide
         * (and then it runs past the end); protobuf-c refuses both */
        assert_int_equal(read_len(u64, sizeof u64, rule, &n),
                         rule == EHR_PB_MINIMAL ? EHR_ETRUNCATED : EHR_EINVAL);
        const uint8_t two_to_32[] = {0x80, 0x80, 0x80, 0x80, 0x10, 'a'};
        assert_int_equal(read_len(two_to_32, sizeof two_to_32, rule, &n),
                         rule == EHR_PB_MINIMAL ? EHR_ETRUNCATED : EHR_EINVAL);
    }
    /* A padded length (2 bytes of content): refused when minimal; 5 bytes
     * are protobuf-c's limit, 6..10 bytes past it, under both lax rules. */
    const uint8_t pad2[] = {0x82, 0x00, 'h', 'i'};
    assert_int_equal(read_len(pad2, sizeof pad2, EHR_PB_MINIMAL, &n), EHR_EINVAL);
    assert_int_equal(read_len(pad2, sizeof pad2, EHR_PB_PADDED, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(read_len(pad2, sizeof pad2, EHR_PB_PROTOBUF_C, &n), 0);
    assert_int_equal(n, 2);
    const uint8_t pad5[] = {0x82, 0x80, 0x80, 0x80, 0x00, 'h', 'i'};
    assert_int_equal(read_len(pad5, sizeof pad5, EHR_PB_PADDED, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(read_len(pad5, sizeof pad5, EHR_PB_PROTOBUF_C, &n), 0);
    assert_int_equal(n, 2);
    const uint8_t pad6[] = {0x82, 0x80, 0x80, 0x80, 0x80, 0x00, 'h', 'i'};
    assert_int_equal(read_len(pad6, sizeof pad6, EHR_PB_PROTOBUF_C, &n), EHR_EINVAL);
    assert_int_equal(read_len(pad6, sizeof pad6, EHR_PB_PADDED, &n), EHR_EINVAL);
    const uint8_t pad10[] = {0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 'h', 'i'};
    assert_int_equal(read_len(pad10, sizeof pad10, EHR_PB_PADDED, &n), EHR_EINVAL);
    /* A 5-byte length cut short is truncated, not invalid. */
    assert_int_equal(read_len(pad5, 4, EHR_PB_PADDED, &n), EHR_ETRUNCATED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_every_length_round_trips_under_every_rule),
        cmocka_unit_test(test_varint_known_bytes),
        cmocka_unit_test(test_varint_truncated_at_every_byte),
        cmocka_unit_test(test_varint_64_bit_bound),
        cmocka_unit_test(test_varint_padding_refused_only_when_minimal),
        cmocka_unit_test(test_varint_rules_nest),
        cmocka_unit_test(test_key_every_size_and_wire_type),
        cmocka_unit_test(test_key_refusals),
        cmocka_unit_test(test_len_header_round_trip),
        cmocka_unit_test(test_len_past_the_end_and_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
