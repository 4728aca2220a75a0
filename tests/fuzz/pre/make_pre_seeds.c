/*
 * make_pre_seeds - writes the seed corpora of the proxy re-encryption fuzz
 * targets into DIR/fuzz_pre_capsule, DIR/fuzz_pre_kfrag and
 * DIR/fuzz_pre_cfrag (which must exist): the fixture's objects (fixture.h,
 * the encodings test_pre pins) named "ok", and one seed per way of being
 * refused, named after the error the decoder must give.
 *
 * Usage: make_pre_seeds DIR   (rerun only when an encoding changes)
 */
#include <stdio.h>
#include <string.h>

#include "fixture.h"

static const char *dir;
static int failures;

static void put(const char *target, const char *name, const uint8_t *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", dir, target, name);
    int rc = ehr_file_write_atomic(path, data, len, 0644, true);
    if (rc != 0) {
        fprintf(stderr, "make_pre_seeds: %s: %s\n", path, ehr_strerror(rc));
        failures++;
    }
}

/* The seeds of one decoder: ENC (SIZE bytes) and its refused variants. */
static void put_all(const char *target, const uint8_t *enc, size_t size, size_t point_offset,
                    size_t scalar_offset)
{
    uint8_t copy[EHR_PRE_CFRAG_BYTES + 1] = {0};
    memcpy(copy, enc, size);
    put(target, "ok", copy, size);
    put(target, "EHR_ETRUNCATED-one-short", copy, size - 1);
    put(target, "EHR_EINVAL-one-extra", copy, size + 1);
    memset(copy + point_offset, 0, 32);
    put(target, "EHR_EINVAL-identity-point", copy, size);
    memcpy(copy, enc, size);
    memset(copy + scalar_offset, 0xff, 32);
    put(target, "EHR_EINVAL-scalar-over-order", copy, size);
    memcpy(copy, enc, size);
    copy[point_offset] ^= 0x01; /* a negative field element: no canonical point */
    put(target, "EHR_EINVAL-odd-point", copy, size);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_pre_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    pre_fixture f;
    pre_fixture_make(&f);
    uint8_t capsule[EHR_PRE_CAPSULE_BYTES], kfrag[EHR_PRE_KFRAG_BYTES], cfrag[EHR_PRE_CFRAG_BYTES];
    ehr_pre_capsule_encode(&f.capsule, capsule);
    ehr_pre_kfrag_encode(&f.kfrags[0], kfrag);
    ehr_pre_cfrag_encode(&f.cfrag, cfrag);
    put_all("fuzz_pre_capsule", capsule, sizeof capsule, 0, 64);
    capsule[64] ^= 0x01; /* s still canonical, the capsule equation fails */
    put("fuzz_pre_capsule", "EHR_EBADSIG-s-changed", capsule, sizeof capsule);
    put_all("fuzz_pre_kfrag", kfrag, sizeof kfrag, 96, 224);
    kfrag[32] ^= 0x01; /* the share still canonical, no longer matching its commitment */
    put("fuzz_pre_kfrag", "EHR_EBADSIG-share-changed", kfrag, sizeof kfrag);
    put_all("fuzz_pre_cfrag", cfrag, sizeof cfrag, 0, 256);
    ehr_pre_cfrag other;
    if (ehr_pre_reencapsulate(&f.kfrags[1], &f.capsule, &other) != 0)
        failures++;
    ehr_pre_cfrag_encode(&other, cfrag);
    put("fuzz_pre_cfrag", "ok-second-kfrag", cfrag, sizeof cfrag);
    /* Sealed kfrags: one that opens (the seal is randomised: a new one each
     * run), one sealed to another key, one altered, one cut short. */
    uint8_t sealed[EHR_PRE_SEALED_KFRAG_BYTES];
    if (ehr_pre_kfrag_seal(&f.kfrags[1], f.node.public_key, sealed) != 0)
        failures++;
    put("fuzz_pre_sealed", "ok-node", sealed, sizeof sealed);
    put("fuzz_pre_sealed", "EHR_ETRUNCATED-short", sealed, sizeof sealed - 1);
    sealed[100] ^= 0x01;
    put("fuzz_pre_sealed", "EHR_EBADSIG-altered", sealed, sizeof sealed);
    ehr_kx_key elsewhere;
    ehr_kx_key_generate(&elsewhere);
    if (ehr_pre_kfrag_seal(&f.kfrags[1], elsewhere.public_key, sealed) != 0)
        failures++;
    put("fuzz_pre_sealed", "EHR_ENOTFOUND-other-node", sealed, sizeof sealed);
    return failures == 0 ? 0 : 1;
}
