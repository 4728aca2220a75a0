/*
 * ehrd_test_hooks.c - fault switches of ehrd-test (ehrd_test_hooks.h).
 * Test code: a malformed value aborts rather than run a test without its
 * fault.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ehrd_test_hooks.h"

void ehrd_test_faults_read(struct node_test_faults *faults)
{
    const char *height = getenv("EHR_TEST_DIGEST_FAULT_HEIGHT");
    if (height == NULL)
        return;
    char *end = NULL;
    unsigned long long h = strtoull(height, &end, 10);
    if (end == height || *end != '\0' || h == 0) {
        fprintf(stderr, "ehrd-test: EHR_TEST_DIGEST_FAULT_HEIGHT must be a height above 0\n");
        abort();
    }
    faults->digest_fault_height = h;
    fprintf(stderr, "ehrd-test: a wrong state digest will be published at height %llu\n", h);
}
