/*
 * ehrd_test_hooks.c - fault switches of ehrd-test (ehrd_test_hooks.h).
 * Test code: a malformed value aborts rather than run a test without its
 * fault.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ehrd_test_hooks.h"

/* The height in the variable NAME (unset: 0); a malformed one aborts. */
static uint64_t height_read(const char *name)
{
    const char *text = getenv(name);
    if (text == NULL)
        return 0;
    char *end = NULL;
    unsigned long long h = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || h == 0) {
        fprintf(stderr, "ehrd-test: %s must be a height above 0\n", name);
        abort();
    }
    return h;
}

void ehrd_test_faults_read(struct node_test_faults *faults)
{
    faults->digest_fault_height = height_read("EHR_TEST_DIGEST_FAULT_HEIGHT");
    if (faults->digest_fault_height != 0)
        fprintf(stderr, "ehrd-test: a wrong state digest will be published at height %llu\n",
                (unsigned long long)faults->digest_fault_height);
    faults->capsule_delay_ms = height_read("EHR_TEST_CAPSULE_DELAY_MS");
    if (faults->capsule_delay_ms != 0)
        fprintf(stderr, "ehrd-test: each capsule fragment job will take %llu ms more\n",
                (unsigned long long)faults->capsule_delay_ms);
    faults->blob_serve_delay_ms = height_read("EHR_TEST_BLOB_SERVE_DELAY_MS");
    if (faults->blob_serve_delay_ms != 0)
        fprintf(stderr, "ehrd-test: each blob piece served to a peer will take %llu ms more\n",
                (unsigned long long)faults->blob_serve_delay_ms);
    faults->blob_serves_max = height_read("EHR_TEST_BLOB_SERVES_MAX");
    if (faults->blob_serves_max != 0)
        fprintf(stderr, "ehrd-test: at most %llu blob pieces will be served to peers at once\n",
                (unsigned long long)faults->blob_serves_max);
    faults->blob_fetch_no_refill = height_read("EHR_TEST_BLOB_FETCH_NO_REFILL");
    if (faults->blob_fetch_no_refill != 0)
        fprintf(stderr, "ehrd-test: no member's BlobFetches will be refilled past the burst\n");
    faults->forge_height = height_read("EHR_TEST_FORGE_HEIGHT");
    if (faults->forge_height != 0)
        fprintf(stderr,
                "ehrd-test: as leader, the block at height %llu will carry a forged signature\n",
                (unsigned long long)faults->forge_height);
}
