/*
 * Tests of record encryption (crypto/record.h): the ciphertext sealed
 * piece by piece opens back from pieces of any size (one byte, uneven,
 * whole) with the right hash; an empty record and one of exactly whole
 * pieces; two passes from one sealer give the same bytes; a flipped byte,
 * a cut-off, a missing final piece, bytes after it and another key are
 * refused, with the hash on this thread and on a second one; the pointer
 * round-trips, refuses another key, a bad length and an address out of
 * bounds (its limit at the edge); the hash pipe (ehr_hash_pipe) hashes
 * and sinks every byte in order and reports its sink's failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ehr_crypto.h"
#include "record.h"

struct sink {
    uint8_t *data;
    size_t len, cap;
};

static int sink_write(void *ctx, const uint8_t *plain, size_t len)
{
    struct sink *s = ctx;
    if (s->len + len > s->cap)
        return -1;
    memcpy(s->data + s->len, plain, len);
    s->len += len;
    return 0;
}

/* Seal PLAIN (LEN) with KEY into a new buffer (*OUT_LEN). */
static uint8_t *seal(const uint8_t key[32], const uint8_t *plain, size_t len, size_t *out_len)
{
    struct ehr_record_sealer s;
    ehr_record_sealer_init(&s, key);
    size_t total = (size_t)ehr_record_sealed_bytes(len);
    uint8_t *out = malloc(total + 1);
    assert_non_null(out);
    memcpy(out, s.header, EHR_RECORD_HEADER_BYTES);
    size_t off = EHR_RECORD_HEADER_BYTES, done = 0;
    crypto_secretstream_xchacha20poly1305_state st = s.start;
    for (;;) {
        size_t n = len - done < EHR_RECORD_PIECE_BYTES ? len - done : EHR_RECORD_PIECE_BYTES;
        bool last = done + n == len; /* a record of whole pieces ends with a full FINAL one */
        ehr_record_seal_piece(&st, plain + done, n, last, out + off);
        off += n + EHR_RECORD_ABYTES;
        done += n;
        if (last)
            break;
    }
    ehr_record_sealer_wipe(&s);
    *out_len = off;
    return out;
}

/* Open CIPHER (LEN) with KEY in pieces of STEP, hashing on a second
 * thread when PIPELINED; 0 and the plaintext in SINK, or the error. */
static int open_all(const uint8_t key[32], const uint8_t *cipher, size_t len, size_t step,
                    struct sink *sink, uint8_t hash[32], bool pipelined)
{
    struct ehr_record_opener o;
    if (pipelined)
        assert_int_equal(ehr_record_opener_init_pipelined(&o, key, sink_write, sink), 0);
    else
        ehr_record_opener_init(&o, key, sink_write, sink);
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += step)
        rc = ehr_record_opener_feed(&o, cipher + off, len - off < step ? len - off : step, NULL);
    if (rc == 0)
        rc = ehr_record_opener_finish(&o, hash, NULL);
    ehr_record_opener_clear(&o);
    return rc;
}

static void test_record_round_trips_in_any_pieces(void **state)
{
    (void)state;
    uint8_t key[32];
    randombytes_buf(key, sizeof key);
    const size_t lens[] = {0,
                           1,
                           EHR_RECORD_PIECE_BYTES - 1,
                           EHR_RECORD_PIECE_BYTES,
                           2 * EHR_RECORD_PIECE_BYTES,
                           3 * EHR_RECORD_PIECE_BYTES + 777};
    const size_t steps[] = {1, 7, 4096, 65553, 1 << 20};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(lens); i++) {
        uint8_t *plain = malloc(lens[i] + 1);
        randombytes_buf(plain, lens[i]);
        size_t clen;
        uint8_t *cipher = seal(key, plain, lens[i], &clen);
        assert_int_equal(clen, ehr_record_sealed_bytes(lens[i]));
        uint8_t want[32];
        ehr_sha256(want, cipher, clen);
        for (size_t j = 0; j < 2 * EHR_ARRAY_COUNT(steps); j++) {
            size_t step = steps[j / 2];
            bool pipelined = j % 2 == 1;
            if (step == 1 && lens[i] > 70000)
                continue; /* a byte at a time is slow; the small ones cover it */
            struct sink sink = {.data = malloc(lens[i] + 1), .cap = lens[i]};
            uint8_t got[32];
            assert_int_equal(open_all(key, cipher, clen, step, &sink, got, pipelined), 0);
            assert_int_equal(sink.len, lens[i]);
            assert_memory_equal(sink.data, plain, lens[i]);
            assert_memory_equal(got, want, 32);
            free(sink.data);
        }
        free(cipher);
        free(plain);
    }
}

/* Any change is refused: a flipped byte anywhere, the last byte cut off, a
 * whole piece cut off, a byte appended, another key. */
static void refuses_every_alteration(bool pipelined)
{
    uint8_t key[32], other[32];
    randombytes_buf(key, sizeof key);
    randombytes_buf(other, sizeof other);
    size_t len = 2 * EHR_RECORD_PIECE_BYTES + 100, clen;
    uint8_t *plain = malloc(len);
    randombytes_buf(plain, len);
    uint8_t *cipher = seal(key, plain, len, &clen);
    uint8_t hash[32];
    struct sink sink = {.data = malloc(len + 1), .cap = len};
    const size_t flips[] = {0, 23, 24, 1000, EHR_RECORD_SEALED_PIECE_BYTES + 30, clen - 1};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(flips); i++) {
        cipher[flips[i]] ^= 0x40;
        sink.len = 0;
        assert_int_equal(open_all(key, cipher, clen, 4096, &sink, hash, pipelined), EHR_ECORRUPT);
        cipher[flips[i]] ^= 0x40;
    }
    sink.len = 0;
    assert_int_equal(open_all(key, cipher, clen - 1, 4096, &sink, hash, pipelined), EHR_ECORRUPT);
    sink.len = 0;
    assert_int_equal(open_all(key, cipher, EHR_RECORD_HEADER_BYTES + EHR_RECORD_SEALED_PIECE_BYTES,
                              4096, &sink, hash, pipelined),
                     EHR_ECORRUPT); /* no final piece */
    sink.len = 0;
    assert_int_equal(open_all(key, cipher, 10, 4096, &sink, hash, pipelined), EHR_ECORRUPT);
    uint8_t *longer = malloc(clen + 1);
    memcpy(longer, cipher, clen);
    longer[clen] = 0;
    sink.len = 0;
    assert_int_equal(open_all(key, longer, clen + 1, 4096, &sink, hash, pipelined), EHR_ECORRUPT);
    sink.len = 0;
    assert_int_equal(open_all(other, cipher, clen, 4096, &sink, hash, pipelined), EHR_ECORRUPT);
    /* A write that fails stops the opener with its error. */
    struct sink tiny = {.data = malloc(10), .cap = 10};
    assert_int_equal(open_all(key, cipher, clen, 4096, &tiny, hash, pipelined), -1);
    free(tiny.data);
    free(longer);
    free(sink.data);
    free(cipher);
    free(plain);
}

static void test_record_refuses_every_alteration(void **state)
{
    (void)state;
    refuses_every_alteration(false);
    refuses_every_alteration(true); /* the hash on a second thread */
}

/* A hash pipe's sink: the bytes it is handed, in order; fails once
 * FAIL_AFTER bytes have come (0: never). */
struct pipe_sink {
    uint8_t *data;
    size_t len, cap, fail_after;
    unsigned calls;
};

static int pipe_sink_write(void *ctx, const uint8_t *data, size_t len)
{
    struct pipe_sink *s = ctx;
    s->calls++;
    if (s->fail_after != 0 && s->len + len > s->fail_after)
        return -ENOSPC;
    assert_true(s->len + len <= s->cap);
    memcpy(s->data + s->len, data, len);
    s->len += len;
    return 0;
}

/*
 * ehr_hash_pipe: the SHA-256 of every byte pushed, in order, whatever the
 * slots' fill (full, partial, empty, copied in by _write across slots), and
 * the sink handed the same bytes; many more slots than the ring holds (the
 * producer waits for the thread); the sink's first error from _error and
 * _finish, after which it is not called again; _free with a slot taken.
 */
static void test_hash_pipe(void **state)
{
    (void)state;
    enum { SLOT = 1000, TOTAL = 50 * EHR_HASH_PIPE_SLOTS * SLOT };
    uint8_t *data = malloc(TOTAL);
    assert_non_null(data);
    randombytes_buf(data, TOTAL);
    uint8_t want[32], got[32];
    ehr_sha256(want, data, TOTAL);
    struct pipe_sink sink = {.data = malloc(TOTAL), .cap = TOTAL};
    struct ehr_hash_pipe *p;
    assert_int_equal(ehr_hash_pipe_start(&p, SLOT, pipe_sink_write, &sink), 0);
    size_t off = 0;
    for (size_t i = 0; off < TOTAL; i++) {
        size_t n = i % 3 == 0 ? SLOT : i % 3 == 1 ? SLOT / 3 : 0;
        n = n < TOTAL - off ? n : TOTAL - off;
        uint8_t *slot = ehr_hash_pipe_slot(p);
        memcpy(slot, data + off, n);
        ehr_hash_pipe_push(p, n);
        off += n;
    }
    assert_int_equal(ehr_hash_pipe_error(p), 0);
    assert_int_equal(ehr_hash_pipe_finish(p, got), 0);
    assert_memory_equal(got, want, 32);
    assert_int_equal(sink.len, TOTAL);
    assert_memory_equal(sink.data, data, TOTAL);

    /* _write across slots, no sink. */
    assert_int_equal(ehr_hash_pipe_start(&p, SLOT, NULL, NULL), 0);
    ehr_hash_pipe_write(p, data, 1);
    ehr_hash_pipe_write(p, data + 1, TOTAL - 1);
    assert_int_equal(ehr_hash_pipe_finish(p, got), 0);
    assert_memory_equal(got, want, 32);

    /* Nothing pushed: the hash of nothing. */
    assert_int_equal(ehr_hash_pipe_start(&p, SLOT, NULL, NULL), 0);
    assert_int_equal(ehr_hash_pipe_finish(p, got), 0);
    ehr_sha256(want, data, 0);
    assert_memory_equal(got, want, 32);

    /* The sink fails: reported, and not called again. */
    struct pipe_sink failing = {.data = malloc(TOTAL), .cap = TOTAL, .fail_after = 5 * SLOT};
    assert_int_equal(ehr_hash_pipe_start(&p, SLOT, pipe_sink_write, &failing), 0);
    ehr_hash_pipe_write(p, data, TOTAL);
    memset(got, 0xaa, sizeof got);
    assert_int_equal(ehr_hash_pipe_error(p), -ENOSPC); /* a full ring's wait ago */
    assert_int_equal(ehr_hash_pipe_finish(p, got), -ENOSPC);
    assert_int_equal(failing.calls, 6);
    assert_int_equal(failing.len, 5 * SLOT);
    assert_int_equal(got[0], 0xaa); /* no hash after a failure */

    /* Released with a slot taken and never pushed. */
    assert_int_equal(ehr_hash_pipe_start(&p, SLOT, NULL, NULL), 0);
    ehr_hash_pipe_write(p, data, 3 * SLOT);
    (void)ehr_hash_pipe_slot(p);
    ehr_hash_pipe_free(p);
    ehr_hash_pipe_free(NULL);
    free(failing.data);
    free(sink.data);
    free(data);
}

static void test_record_pointer_round_trip_and_limits(void **state)
{
    (void)state;
    uint8_t rk[32], sk[32], pk[32], sk2[32], pk2[32];
    randombytes_buf(rk, sizeof rk);
    ehr_record_subkeys(rk, sk, pk);
    assert_memory_not_equal(sk, pk, 32);
    rk[0] ^= 1;
    ehr_record_subkeys(rk, sk2, pk2);
    assert_memory_not_equal(pk, pk2, 32);
    uint8_t id[32], back[32], out[EHR_RECORD_POINTER_BYTES_MAX];
    char address[EHR_RECORD_POINTER_ADDRESS_BYTES_MAX + 1];
    randombytes_buf(id, sizeof id);
    size_t n = ehr_record_pointer_seal(pk, id, "127.0.0.1:7001", out);
    assert_true(n > 0);
    assert_int_equal(ehr_record_pointer_open(pk, out, n, back, address, NULL), 0);
    assert_memory_equal(back, id, 32);
    assert_string_equal(address, "127.0.0.1:7001");
    ehr_diag why;
    assert_int_equal(ehr_record_pointer_open(pk2, out, n, back, address, &why), EHR_EINVAL);
    out[n - 1] ^= 1;
    assert_int_equal(ehr_record_pointer_open(pk, out, n, back, address, NULL), EHR_EINVAL);
    assert_int_equal(ehr_record_pointer_open(pk, out, 10, back, address, NULL), EHR_EINVAL);
    /* The address limit at its edge. */
    char longest[EHR_RECORD_POINTER_ADDRESS_BYTES_MAX + 2];
    memset(longest, 'a', sizeof longest);
    longest[EHR_RECORD_POINTER_ADDRESS_BYTES_MAX] = '\0';
    n = ehr_record_pointer_seal(pk, id, longest, out);
    assert_int_equal(n, EHR_RECORD_POINTER_BYTES_MAX);
    assert_int_equal(ehr_record_pointer_open(pk, out, n, back, address, NULL), 0);
    assert_string_equal(address, longest);
    longest[EHR_RECORD_POINTER_ADDRESS_BYTES_MAX] = 'a';
    longest[EHR_RECORD_POINTER_ADDRESS_BYTES_MAX + 1] = '\0';
    assert_int_equal(ehr_record_pointer_seal(pk, id, longest, out), 0);
    assert_int_equal(ehr_record_pointer_seal(pk, id, "", out), 0);
    assert_int_equal(ehr_record_pointer_seal(pk, id, "a b", out), 0);
}

int main(void)
{
    if (ehr_crypto_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_round_trips_in_any_pieces),
        cmocka_unit_test(test_record_refuses_every_alteration),
        cmocka_unit_test(test_record_pointer_round_trip_and_limits),
        cmocka_unit_test(test_hash_pipe),
    };
    return cmocka_run_group_tests_name("record encryption", tests, NULL, NULL);
}
