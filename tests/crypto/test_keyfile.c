/*
 * Unit tests for crypto/keyfile.c: identities and passphrase-protected key
 * files. Round trips in memory and on disk, wrong passphrase, every
 * truncation, every single-bit flip, versions, argon2id cost bounds at their
 * edges, label and passphrase limits, file mode and refusal to overwrite.
 * Everything seals with the minimum argon2id costs so the suite stays fast.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ehr_crypto.h"

/* Field offsets of the version-1 layout, restated from ehr_crypto.h's table on purpose:
 * if the code's layout drifts from the documented one, these tests notice. */
enum {
    AT_VERSION = 6,
    AT_FLAGS = 7,
    AT_OPSLIMIT = 8,
    AT_MEMLIMIT = 16,
    AT_SALT = 24,
    AT_NONCE = 40,
    AT_SIGNING_PUBLIC = 64,
    AT_KX_PUBLIC = 96,
    AT_LABEL_LEN = 128,
    AT_LABEL = 129,
    AT_CIPHERTEXT = 193,
    FILE_BYTES = 273,
};

static const char PASS[] = "correct horse battery staple";
#define PASS_LEN (sizeof PASS - 1)
#define LABEL "st-mary-node-1"

struct fixture {
    ehr_identity id;
    uint8_t sealed[EHR_KEYFILE_BYTES];
    char dir[64];
    char path[PATH_MAX];
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || ehr_crypto_init() != 0)
        return -1;
    if (ehr_identity_generate(&f->id, LABEL) != 0)
        return -1;
    if (ehr_keyfile_seal(f->sealed, &f->id, PASS, PASS_LEN, ehr_kdf_profile_params(EHR_KDF_MIN)))
        return -1;
    memcpy(f->dir, "/tmp/ehr-test-keyfile-XXXXXX", sizeof "/tmp/ehr-test-keyfile-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/node.key", f->dir);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    ehr_identity_wipe(&f->id);
    free(f);
    return 0;
}

static bool all_zero(const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++) {
        if (b[i] != 0)
            return false;
    }
    return true;
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int open_copy(const uint8_t *data, size_t len, ehr_identity *out)
{
    ehr_diag why = {""};
    int rc = ehr_keyfile_open(out, NULL, data, len, PASS, PASS_LEN, &why);
    if (rc != 0) /* every failure comes with a message */
        assert_true(strlen(why.msg) > 0);
    return rc;
}

static void assert_same_identity(const ehr_identity *a, const ehr_identity *b)
{
    assert_memory_equal(a->signing.secret, b->signing.secret, EHR_SCHNORR_SECRET_BYTES);
    assert_memory_equal(a->signing.public_key, b->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES);
    assert_memory_equal(a->kx.secret, b->kx.secret, EHR_KX_SECRET_BYTES);
    assert_memory_equal(a->kx.public_key, b->kx.public_key, EHR_KX_PUBLIC_BYTES);
    assert_string_equal(a->label, b->label);
}

static void test_seal_open_round_trip_restores_the_identity(void **state)
{
    struct fixture *f = *state;
    ehr_identity got;
    ehr_keyfile_info info;
    ehr_diag why;
    assert_int_equal(
        ehr_keyfile_open(&got, &info, f->sealed, sizeof f->sealed, PASS, PASS_LEN, &why), 0);
    assert_same_identity(&got, &f->id);
    assert_int_equal(info.version, EHR_KEYFILE_VERSION);
    assert_int_equal(info.flags, 0);
    assert_int_equal(info.kdf.opslimit, EHR_KEYFILE_OPSLIMIT_MIN);
    assert_int_equal(info.kdf.memlimit_bytes, EHR_KEYFILE_MEMLIMIT_BYTES_MIN);
    assert_memory_equal(info.signing_public_key, f->id.signing.public_key, 32);
    assert_memory_equal(info.kx_public_key, f->id.kx.public_key, 32);
    assert_string_equal(info.label, LABEL);
    /* the restored signing key signs what the original verifies */
    uint8_t msg[32], sig[64];
    ehr_sha256(msg, "x", 1);
    assert_int_equal(ehr_schnorr_sign(&got.signing, msg, sig), 0);
    assert_int_equal(ehr_schnorr_verify_bytes(f->id.signing.public_key, msg, sig), 0);
    ehr_identity_wipe(&got);
    assert_true(all_zero(&got, sizeof got));
}

static void test_secrets_are_not_in_the_clear(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sizeof f->sealed, FILE_BYTES);
    assert_null(memmem(f->sealed, sizeof f->sealed, f->id.signing.secret, 8));
    assert_null(memmem(f->sealed, sizeof f->sealed, f->id.kx.secret, 8));
    /* a second seal draws a fresh salt and nonce */
    uint8_t again[EHR_KEYFILE_BYTES];
    assert_int_equal(
        ehr_keyfile_seal(again, &f->id, PASS, PASS_LEN, ehr_kdf_profile_params(EHR_KDF_MIN)), 0);
    assert_memory_not_equal(again + AT_SALT, f->sealed + AT_SALT, 16);
    assert_memory_not_equal(again + AT_NONCE, f->sealed + AT_NONCE, 24);
}

static void test_wrong_passphrase_is_rejected_and_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    ehr_identity got;
    memset(&got, 0xa5, sizeof got);
    ehr_diag why = {""};
    assert_int_equal(ehr_keyfile_open(&got, NULL, f->sealed, sizeof f->sealed, "wrong", 5, &why),
                     EHR_EPASSPHRASE);
    assert_non_null(strstr(why.msg, "wrong passphrase"));
    assert_true(all_zero(&got, sizeof got));
    /* the passphrase differs by one trailing byte */
    assert_int_equal(
        ehr_keyfile_open(&got, NULL, f->sealed, sizeof f->sealed, PASS, PASS_LEN - 1, NULL),
        EHR_EPASSPHRASE);
    assert_int_equal(ehr_keyfile_open(&got, NULL, f->sealed, sizeof f->sealed, "", 0, NULL),
                     EHR_EPASSPHRASE);
}

static void test_every_truncation_is_reported_as_truncated(void **state)
{
    struct fixture *f = *state;
    for (size_t len = 0; len < EHR_KEYFILE_BYTES; len++) {
        ehr_identity got;
        ehr_keyfile_info info;
        ehr_diag why = {""};
        assert_int_equal(ehr_keyfile_parse(&info, f->sealed, len, &why), EHR_ETRUNCATED);
        assert_non_null(strstr(why.msg, "truncated"));
        assert_int_equal(open_copy(f->sealed, len, &got), EHR_ETRUNCATED);
        assert_true(all_zero(&got, sizeof got));
    }
    ehr_keyfile_info info;
    assert_int_equal(ehr_keyfile_parse(&info, NULL, 0, NULL), EHR_ETRUNCATED);
}

static void test_trailing_bytes_are_corrupt(void **state)
{
    struct fixture *f = *state;
    uint8_t longer[EHR_KEYFILE_BYTES + 1];
    memcpy(longer, f->sealed, EHR_KEYFILE_BYTES);
    longer[EHR_KEYFILE_BYTES] = 0;
    ehr_identity got;
    assert_int_equal(open_copy(longer, sizeof longer, &got), EHR_ECORRUPT);
}

/* The error every single-bit flip in the byte at OFFSET must produce (0: depends on the bit). */
static int flip_expectation(size_t offset, int bit, const uint8_t *sealed)
{
    if (offset < AT_VERSION)
        return EHR_ECORRUPT; /* magic */
    if (offset == AT_VERSION)
        return EHR_EVERSION;
    if (offset == AT_FLAGS)
        return bit == 0 ? EHR_EPASSPHRASE : EHR_ECORRUPT; /* bit 0 is known, bound as AAD */
    if (offset == AT_OPSLIMIT && bit == 0)
        return EHR_ECORRUPT; /* 1 -> 0 passes: under the minimum */
    if (offset < AT_SALT)
        return 0; /* costs: a different valid cost, over the maximum or under the minimum */
    if (offset < AT_SIGNING_PUBLIC)
        return EHR_EPASSPHRASE; /* salt, nonce: a different key, a different stream */
    if (offset < AT_LABEL_LEN)
        return 0; /* public keys: invalid point, or a valid one the AAD does not match */
    if (offset == AT_LABEL_LEN)
        return EHR_ECORRUPT; /* shorter: padding not zero; longer: NUL in the label */
    if (offset < AT_CIPHERTEXT) {
        size_t label_len = sealed[AT_LABEL_LEN];
        if (offset >= AT_LABEL + label_len)
            return EHR_ECORRUPT; /* padding */
        uint8_t c = sealed[offset] ^ (uint8_t)(1u << bit);
        return c >= 0x20 && c <= 0x7e ? EHR_EPASSPHRASE : EHR_ECORRUPT;
    }
    return EHR_EPASSPHRASE; /* ciphertext and tag */
}

static void test_every_bit_flip_is_rejected_with_its_reason(void **state)
{
    struct fixture *f = *state;
    uint8_t copy[EHR_KEYFILE_BYTES];
    int passphrase_count = 0, corrupt_count = 0;
    for (size_t offset = 0; offset < EHR_KEYFILE_BYTES; offset++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, f->sealed, sizeof copy);
            copy[offset] ^= (uint8_t)(1u << bit);
            ehr_identity got;
            int rc = open_copy(copy, sizeof copy, &got);
            int expect = flip_expectation(offset, bit, f->sealed);
            if (expect != 0) {
                if (rc != expect)
                    fail_msg("flip of bit %d at offset %zu: got %s, expected %s", bit, offset,
                             ehr_errname(rc), ehr_errname(expect));
            } else {
                assert_true(rc == EHR_EPASSPHRASE || rc == EHR_ECORRUPT || rc == EHR_ETOOBIG);
            }
            assert_true(all_zero(&got, sizeof got));
            passphrase_count += rc == EHR_EPASSPHRASE;
            corrupt_count += rc == EHR_ECORRUPT;
        }
    }
    assert_true(passphrase_count > 0);
    assert_true(corrupt_count > 0);
}

static void test_unknown_versions_are_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t copy[EHR_KEYFILE_BYTES];
    const uint8_t versions[] = {0, 2, 255};
    for (size_t i = 0; i < sizeof versions; i++) {
        memcpy(copy, f->sealed, sizeof copy);
        copy[AT_VERSION] = versions[i];
        ehr_keyfile_info info;
        ehr_diag why;
        assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, &why), EHR_EVERSION);
        assert_non_null(strstr(why.msg, "version"));
        /* a future version may be longer or shorter: the version is judged first */
        assert_int_equal(ehr_keyfile_parse(&info, copy, AT_VERSION + 1, NULL), EHR_EVERSION);
    }
}

static void test_argon2_costs_are_bounded_at_their_edges(void **state)
{
    struct fixture *f = *state;
    uint8_t copy[EHR_KEYFILE_BYTES];
    ehr_keyfile_info info;
    ehr_diag why;

    memcpy(copy, f->sealed, sizeof copy);
    put_u64le(copy + AT_OPSLIMIT, EHR_KEYFILE_OPSLIMIT_MAX);
    assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, NULL), 0);
    put_u64le(copy + AT_OPSLIMIT, EHR_KEYFILE_OPSLIMIT_MAX + 1);
    assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, &why), EHR_ETOOBIG);
    assert_non_null(strstr(why.msg, "passes"));
    put_u64le(copy + AT_OPSLIMIT, UINT64_MAX);
    assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, NULL), EHR_ETOOBIG);
    put_u64le(copy + AT_OPSLIMIT, EHR_KEYFILE_OPSLIMIT_MIN - 1);
    assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, NULL), EHR_ECORRUPT);

    memcpy(copy, f->sealed, sizeof copy);
    put_u64le(copy + AT_MEMLIMIT, EHR_KEYFILE_MEMLIMIT_BYTES_MAX);
    assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, NULL), 0);
    assert_int_equal(info.kdf.memlimit_bytes, EHR_KEYFILE_MEMLIMIT_BYTES_MAX);
    put_u64le(copy + AT_MEMLIMIT, EHR_KEYFILE_MEMLIMIT_BYTES_MAX + 1);
    assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, &why), EHR_ETOOBIG);
    assert_non_null(strstr(why.msg, "memory"));
    ehr_identity got;
    assert_int_equal(open_copy(copy, sizeof copy, &got), EHR_ETOOBIG); /* before any work */
    put_u64le(copy + AT_MEMLIMIT, UINT64_MAX);
    assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, NULL), EHR_ETOOBIG);
    put_u64le(copy + AT_MEMLIMIT, EHR_KEYFILE_MEMLIMIT_BYTES_MIN - 1);
    assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, NULL), EHR_ECORRUPT);

    /* sealing refuses costs out of bounds too */
    uint8_t out[EHR_KEYFILE_BYTES];
    ehr_kdf_params over = {EHR_KEYFILE_OPSLIMIT_MAX + 1, EHR_KEYFILE_MEMLIMIT_BYTES_MIN};
    assert_int_equal(ehr_keyfile_seal(out, &f->id, PASS, PASS_LEN, over), EHR_EINVAL);
    ehr_kdf_params under = {EHR_KEYFILE_OPSLIMIT_MIN, EHR_KEYFILE_MEMLIMIT_BYTES_MIN - 1};
    assert_int_equal(ehr_keyfile_seal(out, &f->id, PASS, PASS_LEN, under), EHR_EINVAL);
}

static void test_opslimit_at_max_still_opens(void **state)
{
    struct fixture *f = *state;
    uint8_t out[EHR_KEYFILE_BYTES];
    ehr_kdf_params at_max = {EHR_KEYFILE_OPSLIMIT_MAX, EHR_KEYFILE_MEMLIMIT_BYTES_MIN};
    assert_int_equal(ehr_keyfile_seal(out, &f->id, PASS, PASS_LEN, at_max), 0);
    ehr_identity got;
    assert_int_equal(open_copy(out, sizeof out, &got), 0);
    assert_same_identity(&got, &f->id);
    ehr_identity_wipe(&got);
}

static void test_labels_are_bounded_and_printable(void **state)
{
    struct fixture *f = *state;
    char label[EHR_KEYFILE_LABEL_BYTES_MAX + 2];
    memset(label, 'a', sizeof label);
    label[EHR_KEYFILE_LABEL_BYTES_MAX] = '\0';
    assert_int_equal(ehr_identity_label_check(label), 0);
    label[EHR_KEYFILE_LABEL_BYTES_MAX] = 'a';
    label[EHR_KEYFILE_LABEL_BYTES_MAX + 1] = '\0';
    assert_int_equal(ehr_identity_label_check(label), EHR_ETOOBIG);
    assert_int_equal(ehr_identity_label_check("esc\x1b[2J"), EHR_EINVAL);
    assert_int_equal(ehr_identity_label_check("tab\there"), EHR_EINVAL);
    assert_int_equal(ehr_identity_label_check("h\xc3\xb4pital"), EHR_EINVAL);
    assert_int_equal(ehr_identity_label_check(""), 0);

    ehr_identity id;
    assert_int_equal(ehr_identity_generate(&id, label), EHR_ETOOBIG);
    assert_true(all_zero(&id, sizeof id));

    /* a label of exactly the maximum survives a round trip */
    label[EHR_KEYFILE_LABEL_BYTES_MAX] = '\0';
    memcpy(id.label, label, sizeof id.label);
    memcpy(&id.signing, &f->id.signing, sizeof id.signing);
    memcpy(&id.kx, &f->id.kx, sizeof id.kx);
    uint8_t out[EHR_KEYFILE_BYTES];
    assert_int_equal(
        ehr_keyfile_seal(out, &id, PASS, PASS_LEN, ehr_kdf_profile_params(EHR_KDF_MIN)), 0);
    ehr_identity got;
    assert_int_equal(open_copy(out, sizeof out, &got), 0);
    assert_string_equal(got.label, label);
    ehr_identity_wipe(&got);
    ehr_identity_wipe(&id);
}

static void test_passphrase_length_limit_edges(void **state)
{
    struct fixture *f = *state;
    static char long_pass[EHR_PASSPHRASE_BYTES_MAX + 1];
    memset(long_pass, 'p', sizeof long_pass);
    uint8_t out[EHR_KEYFILE_BYTES];
    ehr_kdf_params min = ehr_kdf_profile_params(EHR_KDF_MIN);
    assert_int_equal(ehr_keyfile_seal(out, &f->id, long_pass, EHR_PASSPHRASE_BYTES_MAX + 1, min),
                     EHR_ETOOBIG);
    assert_int_equal(ehr_keyfile_seal(out, &f->id, long_pass, EHR_PASSPHRASE_BYTES_MAX, min), 0);
    ehr_identity got;
    assert_int_equal(
        ehr_keyfile_open(&got, NULL, out, sizeof out, long_pass, EHR_PASSPHRASE_BYTES_MAX, NULL),
        0);
    assert_int_equal(ehr_keyfile_open(&got, NULL, out, sizeof out, long_pass,
                                      EHR_PASSPHRASE_BYTES_MAX + 1, NULL),
                     EHR_ETOOBIG);
    assert_true(all_zero(&got, sizeof got));
}

static void test_empty_passphrase_is_flagged_and_opens(void **state)
{
    struct fixture *f = *state;
    uint8_t out[EHR_KEYFILE_BYTES];
    assert_int_equal(ehr_keyfile_seal(out, &f->id, NULL, 0, ehr_kdf_profile_params(EHR_KDF_MIN)),
                     0);
    ehr_keyfile_info info;
    assert_int_equal(ehr_keyfile_parse(&info, out, sizeof out, NULL), 0);
    assert_int_equal(info.flags, EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE);
    ehr_identity got;
    assert_int_equal(ehr_keyfile_open(&got, NULL, out, sizeof out, "", 0, NULL), 0);
    assert_same_identity(&got, &f->id);
    assert_int_equal(ehr_keyfile_open(&got, NULL, out, sizeof out, "x", 1, NULL), EHR_EPASSPHRASE);
    /* clearing the flag is tampering: the header is authenticated */
    out[AT_FLAGS] = 0;
    assert_int_equal(ehr_keyfile_open(&got, NULL, out, sizeof out, "", 0, NULL), EHR_EPASSPHRASE);
}

static void test_secrets_must_match_the_public_keys(void **state)
{
    struct fixture *f = *state;
    ehr_identity other, forged;
    assert_int_equal(ehr_identity_generate(&other, "other"), 0);
    /* a writer that put someone else's public keys in front of these secrets */
    memcpy(&forged, &f->id, sizeof forged);
    memcpy(forged.signing.public_key, other.signing.public_key, 32);
    uint8_t out[EHR_KEYFILE_BYTES];
    assert_int_equal(
        ehr_keyfile_seal(out, &forged, PASS, PASS_LEN, ehr_kdf_profile_params(EHR_KDF_MIN)), 0);
    ehr_identity got;
    ehr_diag why;
    assert_int_equal(ehr_keyfile_open(&got, NULL, out, sizeof out, PASS, PASS_LEN, &why),
                     EHR_ECORRUPT);
    assert_non_null(strstr(why.msg, "do not match"));
    assert_true(all_zero(&got, sizeof got));
    memcpy(&forged, &f->id, sizeof forged);
    memcpy(forged.kx.public_key, other.kx.public_key, 32);
    assert_int_equal(
        ehr_keyfile_seal(out, &forged, PASS, PASS_LEN, ehr_kdf_profile_params(EHR_KDF_MIN)), 0);
    assert_int_equal(ehr_keyfile_open(&got, NULL, out, sizeof out, PASS, PASS_LEN, NULL),
                     EHR_ECORRUPT);
    ehr_identity_wipe(&other);
    ehr_identity_wipe(&forged);
}

static void test_low_order_kx_keys_are_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t point[32] = {0};
    assert_int_equal(ehr_kx_public_key_check(point), EHR_EINVAL); /* u = 0 */
    point[0] = 1;
    assert_int_equal(ehr_kx_public_key_check(point), EHR_EINVAL); /* u = 1 */
    assert_int_equal(ehr_kx_public_key_check(f->id.kx.public_key), 0);
    /* a key file carrying one is corrupt */
    uint8_t copy[EHR_KEYFILE_BYTES];
    memcpy(copy, f->sealed, sizeof copy);
    memset(copy + AT_KX_PUBLIC, 0, 32);
    ehr_keyfile_info info;
    assert_int_equal(ehr_keyfile_parse(&info, copy, sizeof copy, NULL), EHR_ECORRUPT);
}

static void test_save_writes_mode_0600_and_refuses_to_overwrite(void **state)
{
    struct fixture *f = *state;
    ehr_kdf_params min = ehr_kdf_profile_params(EHR_KDF_MIN);
    mode_t old = umask(0);
    int rc = ehr_keyfile_save(f->path, &f->id, PASS, PASS_LEN, min, false);
    umask(old);
    assert_int_equal(rc, 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, EHR_KEYFILE_BYTES);

    ehr_identity got;
    ehr_keyfile_info info;
    ehr_diag why;
    assert_int_equal(ehr_keyfile_load(f->path, &got, &info, PASS, PASS_LEN, &why), 0);
    assert_same_identity(&got, &f->id);

    ehr_identity other;
    assert_int_equal(ehr_identity_generate(&other, "other"), 0);
    assert_int_equal(ehr_keyfile_save(f->path, &other, PASS, PASS_LEN, min, false), EHR_EEXIST);
    assert_int_equal(ehr_keyfile_read_info(f->path, &info, &why), 0);
    assert_memory_equal(info.signing_public_key, f->id.signing.public_key, 32); /* unchanged */
    assert_int_equal(ehr_keyfile_save(f->path, &other, PASS, PASS_LEN, min, true), 0);
    assert_int_equal(ehr_keyfile_read_info(f->path, &info, &why), 0);
    assert_memory_equal(info.signing_public_key, other.signing.public_key, 32);
    assert_string_equal(info.label, "other");
    ehr_identity_wipe(&other);
    ehr_identity_wipe(&got);
}

static void test_load_reports_file_problems(void **state)
{
    struct fixture *f = *state;
    ehr_identity got;
    ehr_keyfile_info info;
    ehr_diag why;
    assert_int_equal(ehr_keyfile_load(f->path, &got, NULL, PASS, PASS_LEN, &why), -ENOENT);
    assert_int_equal(ehr_keyfile_read_info(f->dir, &info, &why), -EISDIR);
    /* a longer file is refused without reading all of it */
    uint8_t big[EHR_KEYFILE_BYTES * 2] = {0};
    memcpy(big, f->sealed, EHR_KEYFILE_BYTES);
    assert_int_equal(ehr_file_write_atomic(f->path, big, sizeof big, 0600, false), 0);
    assert_int_equal(ehr_keyfile_read_info(f->path, &info, &why), EHR_ECORRUPT);
    assert_non_null(strstr(why.msg, "larger"));
    assert_int_equal(ehr_file_write_atomic(f->path, f->sealed, 100, 0600, true), 0);
    assert_int_equal(ehr_keyfile_load(f->path, &got, NULL, PASS, PASS_LEN, &why), EHR_ETRUNCATED);
}

static void test_kdf_profiles_parse(void **state)
{
    enum ehr_kdf_profile p;
    assert_int_equal(ehr_kdf_profile_parse("interactive", &p), 0);
    assert_int_equal(p, EHR_KDF_INTERACTIVE);
    assert_int_equal(ehr_kdf_profile_parse("sensitive", &p), 0);
    assert_int_equal(p, EHR_KDF_SENSITIVE);
    assert_int_equal(ehr_kdf_profile_parse("fast", &p), EHR_EINVAL);
    /* every profile is within the bounds a key file may ask for */
    for (int i = EHR_KDF_MIN; i <= EHR_KDF_SENSITIVE; i++) {
        ehr_kdf_params k = ehr_kdf_profile_params((enum ehr_kdf_profile)i);
        assert_in_range(k.opslimit, EHR_KEYFILE_OPSLIMIT_MIN, EHR_KEYFILE_OPSLIMIT_MAX);
        assert_in_range(k.memlimit_bytes, EHR_KEYFILE_MEMLIMIT_BYTES_MIN,
                        EHR_KEYFILE_MEMLIMIT_BYTES_MAX);
    }
}

/*
 * The committed fuzz seeds (tests/fuzz/keyfile/make_seeds.c) are named after
 * the result opening them must give: files written by an earlier build that
 * must keep opening, or keep failing the same way, in this one.
 */
static void test_committed_seed_files_give_the_result_their_name_says(void **state)
{
    const char *dir = EHR_TEST_DATA_DIR "/fuzz/corpus/fuzz_keyfile";
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int ok_count = 0, error_count = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ehr_keyfile_info info;
        ehr_diag why = {""};
        int rc = ehr_keyfile_read_info(path, &info, &why);
        if (rc == 0) {
            bool empty = (info.flags & EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE) != 0;
            ehr_identity got;
            rc = ehr_keyfile_load(path, &got, NULL, empty ? "" : "fuzz", empty ? 0 : 4, &why);
            ehr_identity_wipe(&got);
        }
        const char *expect = strncmp(e->d_name, "ok-", 3) == 0 ? "OK" : e->d_name;
        size_t expect_len = strcmp(expect, "OK") == 0 ? 2 : strcspn(e->d_name, "-");
        if (strlen(ehr_errname(rc)) != expect_len ||
            strncmp(ehr_errname(rc), expect, expect_len) != 0)
            fail_msg("%s: got %s (%s)", e->d_name, ehr_errname(rc), why.msg);
        ok_count += rc == 0;
        error_count += rc != 0;
    }
    closedir(d);
    assert_true(ok_count >= 3);
    assert_true(error_count >= 10);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_seal_open_round_trip_restores_the_identity),
        T(test_secrets_are_not_in_the_clear),
        T(test_wrong_passphrase_is_rejected_and_leaves_nothing),
        T(test_every_truncation_is_reported_as_truncated),
        T(test_trailing_bytes_are_corrupt),
        T(test_every_bit_flip_is_rejected_with_its_reason),
        T(test_unknown_versions_are_refused),
        T(test_argon2_costs_are_bounded_at_their_edges),
        T(test_opslimit_at_max_still_opens),
        T(test_labels_are_bounded_and_printable),
        T(test_passphrase_length_limit_edges),
        T(test_empty_passphrase_is_flagged_and_opens),
        T(test_secrets_must_match_the_public_keys),
        T(test_low_order_kx_keys_are_refused),
        T(test_save_writes_mode_0600_and_refuses_to_overwrite),
        T(test_load_reports_file_problems),
        T(test_kdf_profiles_parse),
        T(test_committed_seed_files_give_the_result_their_name_says),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
