/*
 * fuzz_vm - libFuzzer target for the consent VM (contracts/vm.h): the
 * input is a program, any bytes.
 *
 * Oracles beyond "no crash, no out-of-bounds read" (libFuzzer hands the
 * input in a buffer of its exact size, so AddressSanitizer sees a read one
 * byte past it):
 *   - verify returns 0, EHR_EINVAL or EHR_ETOOBIG (only over the size
 *     limit), with a one-line reason naming an offset;
 *   - eval, verified or not, twice with the same request and gas gives the
 *     same result (V6); gas_used <= the limit and <= LEN - 1 (V3), equal to
 *     the limit when out of gas; offset <= LEN; permit only by a permit;
 *   - a verified program never ends malformed (V1), and never runs out of
 *     CONTRACTS_VM_GAS_DEFAULT;
 *   - the disassembler lists any program within the size limit in
 *     CONTRACTS_POLICY_LISTING_BYTES_MAX and says 0 exactly when every
 *     instruction decodes (so 0 whenever it verifies).
 */
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct contracts_vm_request requests[3];

static void requests_init(void)
{
    /* [0] all zero; [1] a typical insurer's request; [2] every field at its largest */
    struct contracts_vm_request *r = &requests[1];
    memset(r->requester_key, 0xa1, sizeof r->requester_key);
    memset(r->requester_institution, 0xb2, sizeof r->requester_institution);
    memset(r->record_custodian, 0xb2, sizeof r->record_custodian);
    r->requester_role = CONTRACTS_ROLE_INSURER;
    r->record_type = CONTRACTS_RECORD_CLAIM;
    r->record_age_days = 40;
    r->consent_purpose = r->request_purpose = CONTRACTS_PURPOSE_PAYMENT;
    r->consent_from_ms = 1798761600000ull;
    r->consent_until_ms = 1830297600000ull;
    r->block_time_ms = 1803859200000ull;
    r = &requests[2];
    memset(r, 0xff, sizeof *r);
    r->requester_practitioner = true;
}

static void check_result(const struct contracts_vm_result *a, const struct contracts_vm_result *b,
                         uint64_t gas, size_t size, bool verified)
{
    if (a->decision != b->decision || a->reason != b->reason || a->gas_used != b->gas_used ||
        a->offset != b->offset)
        abort(); /* V6 */
    if (a->gas_used > gas || a->gas_used > size - 1)
        abort(); /* V3 */
    if (a->reason == CONTRACTS_VM_REASON_GAS && a->gas_used != gas)
        abort();
    if (a->offset > size)
        abort();
    if ((a->decision == CONTRACTS_VM_PERMIT) != (a->reason == CONTRACTS_VM_REASON_PERMIT))
        abort();
    if (verified && a->reason == CONTRACTS_VM_REASON_MALFORMED)
        abort(); /* V1 */
    if (verified && gas == CONTRACTS_VM_GAS_DEFAULT && a->reason == CONTRACTS_VM_REASON_GAS)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    static char listing[CONTRACTS_POLICY_LISTING_BYTES_MAX];
    if (!ready) {
        requests_init();
        ready = true;
    }
    ehr_diag diag;
    int rc = contracts_vm_verify(data, size, &diag);
    if (rc != 0 && rc != EHR_EINVAL && rc != EHR_ETOOBIG)
        abort();
    if ((rc == EHR_ETOOBIG) != (size > CONTRACTS_POLICY_BYTES_MAX))
        abort();
    if (rc != 0 && (strncmp(diag.msg, "offset ", 7) != 0 || strchr(diag.msg, '\n') != NULL))
        abort();
    if (rc != 0 && strlen(diag.msg) >= EHR_DIAG_BYTES_MAX - 1)
        abort(); /* a reason always fits whole */
    bool verified = rc == 0;

    const uint64_t gases[2] = {CONTRACTS_VM_GAS_DEFAULT, size % 23};
    for (size_t i = 0; i < 3; i++) {
        for (size_t g = 0; g < 2; g++) {
            struct contracts_vm_result a, b;
            memset(&a, 0x11, sizeof a);
            memset(&b, 0x22, sizeof b);
            if (contracts_vm_eval(data, size, &requests[i], gases[g], &a) != 0 ||
                contracts_vm_eval(data, size, &requests[i], gases[g], &b) != 0)
                abort();
            if (size == 0) {
                if (a.reason != CONTRACTS_VM_REASON_MALFORMED)
                    abort();
                continue;
            }
            check_result(&a, &b, gases[g], size, verified);
        }
    }

    rc = contracts_policy_disassemble(data, size, listing, sizeof listing);
    if (size <= CONTRACTS_POLICY_BYTES_MAX && rc == EHR_ETOOBIG)
        abort();
    if (verified && rc != 0)
        abort();
    if (strlen(listing) >= sizeof listing)
        abort();
    return 0;
}
