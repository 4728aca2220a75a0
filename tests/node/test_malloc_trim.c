/*
 * test_malloc_trim - ehrd's two malloc trim constants at their edges
 * (node/ehrd_malloc.h):
 *
 *   - EHRD_MALLOC_TRIM_THRESHOLD_BYTES, which ehrd gives glibc
 *     (mallopt M_TRIM_THRESHOLD): with ehrd's settings, a free that leaves
 *     the main heap's top chunk one allocation granule (16 bytes) below it
 *     keeps the top, and one that leaves it exactly at it gives it back.
 *     The top's size is mallinfo2's keepcost; the test carves the top to
 *     the size it wants from a large free one, so it depends on nothing
 *     but glibc's documented rule (trim when the top reaches the
 *     threshold, checked when a free of 64 KiB or more merges into it).
 *   - EHRD_MALLOC_TRIM_FREE_BYTES_MIN, ehrd's own rule for its periodic
 *     malloc_trim: one byte below it, no trim; at it, a trim.
 *
 * Single-threaded on purpose: everything happens in the main arena. Not
 * under AddressSanitizer, whose allocator ignores mallopt.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "ehrd_malloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

enum {
    /* glibc's chunk sizes are multiples of this (64-bit). */
    GRANULE = 16,
    /* A chunk's header before the pointer malloc returns. */
    CHUNK_HEADER = 8,
    /* A free of at least this much (merged) makes glibc check the top
     * against the trim threshold (FASTBIN_CONSOLIDATION_THRESHOLD). */
    TRIM_CHECK_FREE_BYTES = 64 * 1024,
    /* The blocks the test carves with: below the mmap threshold, so they
     * come from the heap. */
    BLOCK = 128 * 1024,
    BLOCK_COUNT = 24,
};
_Static_assert(BLOCK >= TRIM_CHECK_FREE_BYTES, "a freed block makes glibc check the top");
_Static_assert(BLOCK < EHRD_MALLOC_MMAP_THRESHOLD_BYTES, "the blocks come from the heap");
_Static_assert((size_t)BLOCK *BLOCK_COUNT > 2u * EHRD_MALLOC_TRIM_THRESHOLD_BYTES,
               "the blocks make a top larger than the threshold");
_Static_assert(EHRD_MALLOC_TRIM_THRESHOLD_BYTES % GRANULE == 0, "the edge is a chunk size");

#ifndef UNDER_ASAN /* the heap measures below are glibc's own: not under ASan */
/* The main heap's top chunk, in bytes. */
static size_t top_bytes(void)
{
    return mallinfo2().keepcost;
}

/* A block whose chunk takes exactly CHUNK bytes (a multiple of GRANULE)
 * off the top; the test fails if it came from anywhere else. */
static void *carve(size_t chunk)
{
    size_t before = top_bytes();
    void *p = malloc(chunk - CHUNK_HEADER);
    assert_non_null(p);
    assert_int_equal(malloc_usable_size(p) + CHUNK_HEADER, chunk);
    if (top_bytes() != before - chunk)
        fail_msg("the block did not come from the top (%zu -> %zu, chunk %zu)", before, top_bytes(),
                 chunk);
    return p;
}

/*
 * Leave the top at TOP - BLOCK with a block of BLOCK above the rest, then,
 * with ehrd's settings, free that block: the top becomes TOP unless glibc
 * trims it. Returns the top after the free. What was carved below is
 * given back after, with the threshold out of the way.
 */
static size_t free_to_top(size_t top)
{
    /* A top well above TOP, kept (no threshold yet): blocks carved and
     * given back, each merging into the top. */
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    void *blocks[BLOCK_COUNT];
    for (int i = 0; i < BLOCK_COUNT; i++) {
        blocks[i] = malloc(BLOCK);
        assert_non_null(blocks[i]);
    }
    for (int i = BLOCK_COUNT - 1; i >= 0; i--)
        free(blocks[i]);
    size_t big = top_bytes();
    assert_true(big >= top + BLOCK);
    /* Carve the difference, in pieces of at least 64 KiB (small requests
     * may come from a bin) and below the mmap threshold. */
    size_t left = big - top;
    size_t pieces = 0;
    void *piece[64];
    while (left >= 2 * TRIM_CHECK_FREE_BYTES + BLOCK) {
        assert_true(pieces < 64);
        piece[pieces++] = carve(BLOCK);
        left -= BLOCK;
    }
    assert_true(left >= TRIM_CHECK_FREE_BYTES);
    assert_true(left % GRANULE == 0);
    assert_true(pieces < 64);
    piece[pieces++] = carve(left);
    assert_int_equal(top_bytes(), top);
    void *last = carve(BLOCK);
    /* ehrd's settings, then the free that decides. */
    mallopt(M_MMAP_THRESHOLD, EHRD_MALLOC_MMAP_THRESHOLD_BYTES);
    mallopt(M_TRIM_THRESHOLD, EHRD_MALLOC_TRIM_THRESHOLD_BYTES);
    free(last);
    size_t after = top_bytes();
    /* Give the pieces back without a trim in the way of the next case. */
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    for (size_t i = 0; i < pieces; i++)
        free(piece[i]);
    return after;
}
#endif

static void test_the_heap_top_is_given_back_at_the_trim_threshold(void **state)
{
    (void)state;
#ifdef UNDER_ASAN
    skip();
#else
    mallopt(M_MMAP_THRESHOLD, EHRD_MALLOC_MMAP_THRESHOLD_BYTES);
    /* One granule below: kept whole. */
    size_t below = EHRD_MALLOC_TRIM_THRESHOLD_BYTES - GRANULE;
    assert_int_equal(free_to_top(below), below);
    /* At the threshold: given back (glibc keeps only its top pad). */
    size_t at = EHRD_MALLOC_TRIM_THRESHOLD_BYTES;
    size_t after = free_to_top(at);
    printf("a top of %zu bytes: %zu kept; of %zu bytes: %zu kept\n", below, below, at, after);
    assert_true(after < at / 2);
    malloc_trim(0);
#endif
}

static void test_the_periodic_trim_runs_from_its_free_bytes_min(void **state)
{
    (void)state;
    assert_false(ehrd_malloc_trim_wanted(0));
    assert_false(ehrd_malloc_trim_wanted(EHRD_MALLOC_TRIM_FREE_BYTES_MIN - 1));
    assert_true(ehrd_malloc_trim_wanted(EHRD_MALLOC_TRIM_FREE_BYTES_MIN));
    assert_true(ehrd_malloc_trim_wanted(SIZE_MAX));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_heap_top_is_given_back_at_the_trim_threshold),
        cmocka_unit_test(test_the_periodic_trim_runs_from_its_free_bytes_min),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
