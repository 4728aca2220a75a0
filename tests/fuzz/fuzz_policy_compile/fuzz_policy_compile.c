/*
 * fuzz_policy_compile - libFuzzer target for the policy compiler
 * (contracts/policy.h): the input is a policy source, any bytes.
 *
 * Oracles beyond "no crash": an error is EHR_EINVAL or EHR_ETOOBIG with a
 * one-line "LINE:COLUMN: message" and no program; a program that compiles
 * verifies (the compiler also asserts it: P1), lists without error, runs on
 * a request without a fault within the default gas, and compiles again to
 * the same bytes (P5).
 */
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* DIAG's message starts with "LINE:COLUMN: " (both at least 1), is one line and fits whole. */
static bool well_formed_error(const ehr_diag *diag)
{
    if (strlen(diag->msg) >= EHR_DIAG_BYTES_MAX - 1)
        return false;
    const char *p = diag->msg;
    if (!is_digit(*p) || *p == '0')
        return false;
    while (is_digit(*p))
        p++;
    if (*p++ != ':' || !is_digit(*p) || *p == '0')
        return false;
    while (is_digit(*p))
        p++;
    return p[0] == ':' && p[1] == ' ' && strchr(diag->msg, '\n') == NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char listing[CONTRACTS_POLICY_LISTING_BYTES_MAX];
    const char *src = (const char *)data;
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX], again[CONTRACTS_POLICY_BYTES_MAX];
    size_t len = 1, again_len = 1;
    ehr_diag diag;
    int rc = contracts_policy_compile(src, size, code, sizeof code, &len, &diag);
    if (rc != 0) {
        if (rc != EHR_EINVAL && rc != EHR_ETOOBIG)
            abort();
        if (len != 0 || !well_formed_error(&diag))
            abort();
        return 0;
    }
    if (len < 1 || len > CONTRACTS_POLICY_BYTES_MAX)
        abort();
    if (contracts_vm_verify(code, len, NULL) != 0)
        abort();
    if (contracts_policy_disassemble(code, len, listing, sizeof listing) != 0)
        abort();
    struct contracts_vm_request request;
    memset(&request, 0, sizeof request);
    request.requester_role = CONTRACTS_ROLE_HOSPITAL;
    request.block_time_ms = 1803859200000ull;
    struct contracts_vm_result res;
    if (contracts_vm_eval(code, len, &request, CONTRACTS_VM_GAS_DEFAULT, &res) != 0)
        abort();
    if (res.reason == CONTRACTS_VM_REASON_MALFORMED || res.reason == CONTRACTS_VM_REASON_GAS)
        abort();
    if (contracts_policy_compile(src, size, again, sizeof again, &again_len, NULL) != 0)
        abort();
    if (again_len != len || memcmp(again, code, len) != 0)
        abort();
    return 0;
}
