/*
 * state.c - the world state's key layout and the small reads the rules
 * share (contracts_internal.h), and the encoding of a transaction's result.
 */
#include <string.h>

#include <sodium.h>

#include "contracts_internal.h"

size_t contracts_key(uint8_t *out, const char *prefix, const uint8_t *k1, const uint8_t *k2,
                     const uint8_t *k3)
{
    size_t n = strlen(prefix);
    EHR_ASSERT(n > 0);
    EHR_ASSERT(n <= 32);
    memcpy(out, prefix, n);
    const uint8_t *parts[3] = {k1, k2, k3};
    for (int i = 0; i < 3 && parts[i] != NULL; i++) {
        memcpy(out + n, parts[i], CONTRACTS_KEY_PART_BYTES);
        n += CONTRACTS_KEY_PART_BYTES;
    }
    return n;
}

size_t contracts_key_append(uint8_t *out, size_t key_len, const uint8_t *suffix, size_t len)
{
    EHR_ASSERT(key_len + len <= CONTRACTS_KEY_BYTES_MAX);
    memcpy(out + key_len, suffix, len);
    return key_len + len;
}

void contracts_be32(uint8_t out[4], uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

void contracts_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

void contracts_enroll_message(const char *chain_id,
                              const uint8_t enroller[EHR_SCHNORR_PUBLIC_BYTES],
                              const uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES],
                              const uint8_t patient_kx[EHR_KX_PUBLIC_BYTES],
                              uint8_t out[EHR_HASH_BYTES])
{
    static const char tag[] = "ehrchain/v1/patient-enroll";
    size_t id_len = strlen(chain_id);
    EHR_ASSERT(id_len <= EHR_CHAIN_ID_BYTES_MAX);
    _Static_assert(EHR_CHAIN_ID_BYTES_MAX <= 255, "the chain id's length is one byte");
    uint8_t len_byte = (uint8_t)id_len;
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    crypto_hash_sha256_update(&h, (const uint8_t *)tag, sizeof tag - 1);
    crypto_hash_sha256_update(&h, &len_byte, 1);
    crypto_hash_sha256_update(&h, (const uint8_t *)chain_id, id_len);
    crypto_hash_sha256_update(&h, enroller, EHR_SCHNORR_PUBLIC_BYTES);
    crypto_hash_sha256_update(&h, patient, EHR_SCHNORR_PUBLIC_BYTES);
    crypto_hash_sha256_update(&h, patient_kx, EHR_KX_PUBLIC_BYTES);
    crypto_hash_sha256_final(&h, out);
}

int contracts_emergency_allowed(contracts_block *b, Ehr__V1__MemberRole role, bool *allowed,
                                uint8_t *scratch)
{
    *allowed = false;
    size_t len = 0;
    int rc = contracts_block_get(b, (const uint8_t *)LEDGER_EMERGENCY_KEY,
                                 sizeof LEDGER_EMERGENCY_KEY - 1, scratch, &len);
    if (rc == EHR_ENOTFOUND)
        return EHR_ECORRUPT;
    if (rc != 0)
        return rc;
    Ehr__V1__EmergencyPolicy *p = ehr__v1__emergency_policy__unpack(NULL, len, scratch);
    if (p == NULL)
        return EHR_ECORRUPT;
    for (size_t i = 0; i < p->n_roles; i++)
        *allowed |= p->roles[i] == role;
    ehr__v1__emergency_policy__free_unpacked(p, NULL);
    return 0;
}

void contracts_text_cut(char *text)
{
    size_t n = strlen(text);
    /* Find the start of the last character; keep it only if it is whole. */
    size_t start = n;
    while (start > 0 && ((uint8_t)text[start - 1] & 0xc0) == 0x80)
        start--;
    if (start == 0)
        return;
    uint8_t lead = (uint8_t)text[start - 1];
    size_t need = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (n - (start - 1) < need)
        text[start - 1] = '\0';
}

static int count_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                     size_t value_len)
{
    (void)key, (void)key_len, (void)value, (void)value_len;
    ++*(size_t *)ctx;
    return 0;
}

int contracts_members_count(contracts_block *b, size_t *count)
{
    *count = 0;
    return contracts_block_scan(b, (const uint8_t *)CONTRACTS_PREFIX_MEMBER,
                                sizeof CONTRACTS_PREFIX_MEMBER - 1, count_one, count);
}

int contracts_member_check(const Ehr__V1__Member *member, ehr_diag *diag)
{
    ehr_diag why;
    int rc = ledger_genesis_member_check(member, &why);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s", why.msg);
    return 0;
}

size_t contracts_tx_result_encode(const struct contracts_tx_result *result, uint8_t *out)
{
    Ehr__V1__TxResult r = EHR__V1__TX_RESULT__INIT;
    r.code = result->code;
    r.reason = (char *)result->reason;
    r.decision = result->decision;
    if (result->has_consent)
        r.consent_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)result->consent_id};
    r.gas_used = result->gas_used;
    size_t n = ehr__v1__tx_result__get_packed_size(&r);
    EHR_ASSERT(n <= CONTRACTS_RESULT_BYTES_MAX);
    return ehr__v1__tx_result__pack(&r, out);
}
