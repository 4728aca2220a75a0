/*
 * make_seeds - writes the key-file seed corpus (tests/fuzz/corpus/fuzz_keyfile)
 * into the directory given as the only argument: valid files sealed with the
 * minimum argon2id costs under the passphrase "fuzz" (or the empty one), and
 * one file per way of being invalid. Each file's name starts with the result
 * ehr_keyfile_open must give ("ok" or an error name); test_keyfile checks
 * the committed files against their names, so the corpus doubles as a record
 * of the version-1 format.
 *
 * Usage: make_seeds DIR   (rerun only when the format changes)
 */
#include <stdio.h>
#include <string.h>

#include "ehr_crypto.h"

enum { AT_VERSION = 6, AT_FLAGS = 7, AT_OPSLIMIT = 8, AT_MEMLIMIT = 16, AT_LABEL = 129 };

static const char *dir;
static int failures;

static void put(const char *name, const uint8_t *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = ehr_file_write_atomic(path, data, len, 0644, true);
    if (rc != 0) {
        fprintf(stderr, "make_seeds: %s: %s\n", path, ehr_strerror(rc));
        failures++;
    }
}

static void seal(uint8_t out[EHR_KEYFILE_BYTES], const char *label, const char *pass)
{
    ehr_identity id;
    if (ehr_identity_generate(&id, label) != 0 ||
        ehr_keyfile_seal(out, &id, pass, strlen(pass), ehr_kdf_profile_params(EHR_KDF_MIN)) != 0) {
        fprintf(stderr, "make_seeds: sealing failed\n");
        failures++;
    }
    ehr_identity_wipe(&id);
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int main(int argc, char **argv)
{
    if (argc != 2 || ehr_crypto_init() != 0) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    uint8_t good[EHR_KEYFILE_BYTES], f[EHR_KEYFILE_BYTES + 1];
    seal(good, "seed-node", "fuzz");
    put("ok-min-costs.key", good, sizeof good);

    char long_label[EHR_KEYFILE_LABEL_BYTES_MAX + 1];
    memset(long_label, 'L', EHR_KEYFILE_LABEL_BYTES_MAX);
    long_label[EHR_KEYFILE_LABEL_BYTES_MAX] = '\0';
    seal(f, long_label, "fuzz");
    put("ok-longest-label.key", f, EHR_KEYFILE_BYTES);
    seal(f, "", "");
    put("ok-empty-passphrase.key", f, EHR_KEYFILE_BYTES);

    seal(f, "other", "not the seed passphrase");
    put("EHR_EPASSPHRASE-other-passphrase.key", f, EHR_KEYFILE_BYTES);
    memcpy(f, good, sizeof good);
    f[EHR_KEYFILE_BYTES - 1] ^= 0x01;
    put("EHR_EPASSPHRASE-tag-flipped.key", f, EHR_KEYFILE_BYTES);
    memcpy(f, good, sizeof good);
    f[AT_LABEL] ^= 0x01; /* 's' -> 'r': still printable, but the header is authenticated */
    put("EHR_EPASSPHRASE-label-changed.key", f, EHR_KEYFILE_BYTES);

    put("EHR_ETRUNCATED-empty.key", good, 0);
    put("EHR_ETRUNCATED-header-only.key", good, EHR_KEYFILE_HEADER_BYTES);
    put("EHR_ETRUNCATED-one-short.key", good, EHR_KEYFILE_BYTES - 1);

    memcpy(f, good, sizeof good);
    f[EHR_KEYFILE_BYTES] = 0;
    put("EHR_ECORRUPT-one-extra.key", f, EHR_KEYFILE_BYTES + 1);
    memcpy(f, good, sizeof good);
    f[0] = 'X';
    put("EHR_ECORRUPT-bad-magic.key", f, EHR_KEYFILE_BYTES);
    memcpy(f, good, sizeof good);
    f[AT_FLAGS] = 0x80;
    put("EHR_ECORRUPT-unknown-flag.key", f, EHR_KEYFILE_BYTES);
    memcpy(f, good, sizeof good);
    f[AT_LABEL + EHR_KEYFILE_LABEL_BYTES_MAX - 1] = 'x';
    put("EHR_ECORRUPT-label-padding.key", f, EHR_KEYFILE_BYTES);
    memcpy(f, good, sizeof good);
    put_u64le(f + AT_OPSLIMIT, 0);
    put("EHR_ECORRUPT-zero-passes.key", f, EHR_KEYFILE_BYTES);

    memcpy(f, good, sizeof good);
    f[AT_VERSION] = 2;
    put("EHR_EVERSION-version-2.key", f, EHR_KEYFILE_BYTES);
    memcpy(f, good, sizeof good);
    put_u64le(f + AT_OPSLIMIT, EHR_KEYFILE_OPSLIMIT_MAX + 1);
    put("EHR_ETOOBIG-passes.key", f, EHR_KEYFILE_BYTES);
    memcpy(f, good, sizeof good);
    put_u64le(f + AT_MEMLIMIT, EHR_KEYFILE_MEMLIMIT_BYTES_MAX + 1);
    put("EHR_ETOOBIG-memory.key", f, EHR_KEYFILE_BYTES);
    return failures == 0 ? 0 : 1;
}
