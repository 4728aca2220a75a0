/*
 * libFuzzer target for the key-file decoder: ehr_keyfile_parse on any bytes,
 * and ehr_keyfile_open (argon2id, then XChaCha20-Poly1305) whenever the
 * header asks for cheap costs, so mutated ciphertexts and tags are exercised
 * without a fuzz input costing a gigabyte. Checks the decoder's promises:
 * only documented errors, a success only for a file of exactly the format's
 * size with bounded costs and a printable label, an identity that matches the
 * header on success and is all zeros on failure, and a re-seal that opens.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ehr_crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { CHEAP_OPSLIMIT_MAX = 2, CHEAP_MEMLIMIT_BYTES_MAX = 64 * 1024 };

static const char FUZZ_PASS[] = "fuzz"; /* the seeds' passphrase */

static void check(bool ok)
{
    if (!ok)
        abort();
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

static void open_and_reseal(const uint8_t *data, size_t size, const ehr_keyfile_info *info)
{
    bool empty = (info->flags & EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE) != 0;
    const char *pass = empty ? "" : FUZZ_PASS;
    size_t pass_len = empty ? 0 : sizeof FUZZ_PASS - 1;
    ehr_identity id;
    ehr_diag why;
    int rc = ehr_keyfile_open(&id, NULL, data, size, pass, pass_len, &why);
    if (rc != 0) {
        check(rc == EHR_EPASSPHRASE || rc == EHR_ECORRUPT);
        check(all_zero(&id, sizeof id));
        return;
    }
    check(memcmp(id.signing.public_key, info->signing_public_key, 32) == 0);
    check(memcmp(id.kx.public_key, info->kx_public_key, 32) == 0);
    check(strcmp(id.label, info->label) == 0);
    uint8_t sealed[EHR_KEYFILE_BYTES];
    check(ehr_keyfile_seal(sealed, &id, pass, pass_len, ehr_kdf_profile_params(EHR_KDF_MIN)) == 0);
    ehr_identity again;
    check(ehr_keyfile_open(&again, NULL, sealed, sizeof sealed, pass, pass_len, NULL) == 0);
    check(memcmp(again.signing.secret, id.signing.secret, 32) == 0);
    check(memcmp(again.kx.secret, id.kx.secret, 32) == 0);
    ehr_identity_wipe(&again);
    ehr_identity_wipe(&id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        check(ehr_crypto_init() == 0);
        ready = true;
    }
    ehr_keyfile_info info;
    ehr_diag why = {""};
    int rc = ehr_keyfile_parse(&info, data, size, &why);
    if (rc != 0) {
        check(rc == EHR_ETRUNCATED || rc == EHR_ECORRUPT || rc == EHR_EVERSION ||
              rc == EHR_ETOOBIG);
        check(why.msg[0] != '\0');
        check(rc != EHR_ETRUNCATED || size < EHR_KEYFILE_BYTES);
        return 0;
    }
    check(size == EHR_KEYFILE_BYTES);
    check(info.kdf.opslimit >= EHR_KEYFILE_OPSLIMIT_MIN);
    check(info.kdf.opslimit <= EHR_KEYFILE_OPSLIMIT_MAX);
    check(info.kdf.memlimit_bytes >= EHR_KEYFILE_MEMLIMIT_BYTES_MIN);
    check(info.kdf.memlimit_bytes <= EHR_KEYFILE_MEMLIMIT_BYTES_MAX);
    check(ehr_identity_label_check(info.label) == 0);
    if (info.kdf.opslimit <= CHEAP_OPSLIMIT_MAX &&
        info.kdf.memlimit_bytes <= CHEAP_MEMLIMIT_BYTES_MAX)
        open_and_reseal(data, size, &info);
    return 0;
}
