/*
 * ehrd_malloc.h - how ehrd sets glibc's malloc up so that memory a burst of
 * clients took comes back (node/README.md, "Memory after a burst"): the
 * constants ehrd.c passes to mallopt and uses for its periodic
 * malloc_trim, and that trim's decision, apart so that a test checks each
 * at its edge (tests/node/test_malloc_trim.c). Nothing here calls malloc's
 * functions; ehrd.c does.
 */
#ifndef EHR_NODE_EHRD_MALLOC_H
#define EHR_NODE_EHRD_MALLOC_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Set at start (mallopt): blocks from this size up are mmapped and
 * returned to the kernel when freed. Setting it fixes the threshold, which
 * glibc otherwise raises to the largest block freed (up to 32 MiB), after
 * which 1 MiB stream queues and 4 MiB requests come from the heap, where
 * small long-lived blocks pin them: 718 MB stayed resident after a 720 MB
 * burst in a test program, 2 MB with this. Free memory at the top of the
 * main heap is returned as soon as it reaches the trim threshold (glibc
 * checks when a free of 64 KiB or more merges into the top).
 */
#define EHRD_MALLOC_MMAP_THRESHOLD_BYTES (256 * 1024)
#define EHRD_MALLOC_TRIM_THRESHOLD_BYTES (1024 * 1024)
/*
 * What the two settings above cannot return: free chunks below the top of
 * a heap, held there by live blocks above them. After a series of client
 * floods the leader's main heap stayed at 26.7 MB resident of which
 * malloc_trim(0) gave back 23.5 MB (node/README.md, "Memory"). So every
 * period, when the arenas hold at least EHRD_MALLOC_TRIM_FREE_BYTES_MIN
 * free (mallinfo2), ehrd calls malloc_trim(0) on a worker thread (libuv's
 * pool): it madvises every free page of every arena, about 0.5 ms per MB
 * returned in a test program (28 ms for 60 MB), too long for the
 * consensus loop, which only waits if it allocates from the main arena
 * while that arena is being trimmed.
 */
#define EHRD_MALLOC_TRIM_PERIOD_MS 10000u
#define EHRD_MALLOC_TRIM_FREE_BYTES_MIN (4u * 1024 * 1024)

/* Whether the periodic trim runs when the arenas hold FREE_BYTES free
 * (mallinfo2's fordblks): from EHRD_MALLOC_TRIM_FREE_BYTES_MIN up. */
static inline bool ehrd_malloc_trim_wanted(size_t free_bytes)
{
    return free_bytes >= EHRD_MALLOC_TRIM_FREE_BYTES_MIN;
}

#endif /* EHR_NODE_EHRD_MALLOC_H */
