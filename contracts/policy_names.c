/*
 * policy_names.c - the names of the policy language: attributes and their
 * kinds, the role, record type and purpose names with their codes (the
 * numbers of vm.h, shared with proto/ehr/v1/tx.proto), and dates.
 *
 * Used by the compiler, the disassembler and ehrctl's request files, so all
 * three spell a name one way. Dates are civil-calendar arithmetic on
 * integers (Howard Hinnant's days_from_civil), never the C library's time
 * functions: no locale, no time zone, the same answer on every machine.
 */
#include <string.h>

#include "ehr/v1/tx.pb-c.h"
#include "policy.h"

/* vm.h's codes are tx.proto's: a program compiled against one and run
 * against the other must mean the same record, role and purpose. */
#define SAME_CODE(ours, proto) _Static_assert((int)(ours) == (int)(proto), #ours " is " #proto)
SAME_CODE(CONTRACTS_ROLE_HOSPITAL, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL);
SAME_CODE(CONTRACTS_ROLE_LAB, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB);
SAME_CODE(CONTRACTS_ROLE_PHARMACY, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_PHARMACY);
SAME_CODE(CONTRACTS_ROLE_INSURER, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_INSURER);
SAME_CODE(CONTRACTS_ROLE_REGULATOR, EHR__V1__MEMBER_ROLE__MEMBER_ROLE_REGULATOR);
SAME_CODE(CONTRACTS_RECORD_IMAGING, EHR__V1__RECORD_TYPE__RECORD_TYPE_IMAGING);
SAME_CODE(CONTRACTS_RECORD_LAB_RESULT, EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT);
SAME_CODE(CONTRACTS_RECORD_PRESCRIPTION, EHR__V1__RECORD_TYPE__RECORD_TYPE_PRESCRIPTION);
SAME_CODE(CONTRACTS_RECORD_DISCHARGE_SUMMARY, EHR__V1__RECORD_TYPE__RECORD_TYPE_DISCHARGE_SUMMARY);
SAME_CODE(CONTRACTS_RECORD_CLINICAL_NOTE, EHR__V1__RECORD_TYPE__RECORD_TYPE_CLINICAL_NOTE);
SAME_CODE(CONTRACTS_RECORD_IMMUNIZATION, EHR__V1__RECORD_TYPE__RECORD_TYPE_IMMUNIZATION);
SAME_CODE(CONTRACTS_RECORD_INVOICE, EHR__V1__RECORD_TYPE__RECORD_TYPE_INVOICE);
SAME_CODE(CONTRACTS_RECORD_CLAIM, EHR__V1__RECORD_TYPE__RECORD_TYPE_CLAIM);
SAME_CODE(CONTRACTS_RECORD_GENOMIC, EHR__V1__RECORD_TYPE__RECORD_TYPE_GENOMIC);
SAME_CODE(CONTRACTS_PURPOSE_TREATMENT, EHR__V1__PURPOSE__PURPOSE_TREATMENT);
SAME_CODE(CONTRACTS_PURPOSE_PAYMENT, EHR__V1__PURPOSE__PURPOSE_PAYMENT);
SAME_CODE(CONTRACTS_PURPOSE_OPERATIONS, EHR__V1__PURPOSE__PURPOSE_OPERATIONS);
SAME_CODE(CONTRACTS_PURPOSE_RESEARCH, EHR__V1__PURPOSE__PURPOSE_RESEARCH);
SAME_CODE(CONTRACTS_PURPOSE_PUBLIC_HEALTH, EHR__V1__PURPOSE__PURPOSE_PUBLIC_HEALTH);
SAME_CODE(CONTRACTS_PURPOSE_EMERGENCY, EHR__V1__PURPOSE__PURPOSE_EMERGENCY);

struct name {
    const char *text;
    uint32_t code;
};

static const struct name role_names[] = {
    {"hospital", CONTRACTS_ROLE_HOSPITAL},   {"lab", CONTRACTS_ROLE_LAB},
    {"pharmacy", CONTRACTS_ROLE_PHARMACY},   {"insurer", CONTRACTS_ROLE_INSURER},
    {"regulator", CONTRACTS_ROLE_REGULATOR},
};

static const struct name record_type_names[] = {
    {"imaging", CONTRACTS_RECORD_IMAGING},
    {"lab_result", CONTRACTS_RECORD_LAB_RESULT},
    {"prescription", CONTRACTS_RECORD_PRESCRIPTION},
    {"discharge_summary", CONTRACTS_RECORD_DISCHARGE_SUMMARY},
    {"clinical_note", CONTRACTS_RECORD_CLINICAL_NOTE},
    {"immunization", CONTRACTS_RECORD_IMMUNIZATION},
    {"invoice", CONTRACTS_RECORD_INVOICE},
    {"claim", CONTRACTS_RECORD_CLAIM},
    {"genomic", CONTRACTS_RECORD_GENOMIC},
};

static const struct name purpose_names[] = {
    {"treatment", CONTRACTS_PURPOSE_TREATMENT},         {"payment", CONTRACTS_PURPOSE_PAYMENT},
    {"operations", CONTRACTS_PURPOSE_OPERATIONS},       {"research", CONTRACTS_PURPOSE_RESEARCH},
    {"public_health", CONTRACTS_PURPOSE_PUBLIC_HEALTH}, {"emergency", CONTRACTS_PURPOSE_EMERGENCY},
};

static const uint8_t attr_kinds[CONTRACTS_ATTR_LAST_ + 1] = {
    [CONTRACTS_ATTR_REQUESTER_KEY] = CONTRACTS_KIND_KEY,
    [CONTRACTS_ATTR_REQUESTER_ROLE] = CONTRACTS_KIND_ROLE,
    [CONTRACTS_ATTR_REQUESTER_INSTITUTION] = CONTRACTS_KIND_KEY,
    [CONTRACTS_ATTR_REQUESTER_PRACTITIONER] = CONTRACTS_KIND_BOOL,
    [CONTRACTS_ATTR_RECORD_TYPE] = CONTRACTS_KIND_RECORD_TYPE,
    [CONTRACTS_ATTR_RECORD_CUSTODIAN] = CONTRACTS_KIND_KEY,
    [CONTRACTS_ATTR_RECORD_AGE_DAYS] = CONTRACTS_KIND_NUMBER,
    [CONTRACTS_ATTR_CONSENT_PURPOSE] = CONTRACTS_KIND_PURPOSE,
    [CONTRACTS_ATTR_REQUEST_PURPOSE] = CONTRACTS_KIND_PURPOSE,
    [CONTRACTS_ATTR_CONSENT_FROM] = CONTRACTS_KIND_TIME,
    [CONTRACTS_ATTR_CONSENT_UNTIL] = CONTRACTS_KIND_TIME,
    [CONTRACTS_ATTR_BLOCK_TIME] = CONTRACTS_KIND_TIME,
};

static const struct name *names_of(enum contracts_policy_kind kind, size_t *count)
{
    switch (kind) {
    case CONTRACTS_KIND_ROLE:
        *count = EHR_ARRAY_COUNT(role_names);
        return role_names;
    case CONTRACTS_KIND_RECORD_TYPE:
        *count = EHR_ARRAY_COUNT(record_type_names);
        return record_type_names;
    case CONTRACTS_KIND_PURPOSE:
        *count = EHR_ARRAY_COUNT(purpose_names);
        return purpose_names;
    default:
        *count = 0;
        return NULL;
    }
}

uint32_t contracts_policy_attr_find(const char *name, size_t len)
{
    for (uint32_t a = 1; a <= CONTRACTS_ATTR_LAST_; a++) {
        const char *n = contracts_vm_attr_name(a);
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return a;
    }
    return 0;
}

int contracts_policy_attr_kind(uint32_t attr)
{
    return attr >= 1 && attr <= CONTRACTS_ATTR_LAST_ ? attr_kinds[attr] : 0;
}

const char *contracts_policy_code_name(enum contracts_policy_kind kind, uint32_t code)
{
    size_t count;
    const struct name *names = names_of(kind, &count);
    for (size_t i = 0; i < count; i++)
        if (names[i].code == code)
            return names[i].text;
    return NULL;
}

int contracts_policy_name_code(enum contracts_policy_kind kind, const char *name, size_t len,
                               uint32_t *code)
{
    size_t count;
    const struct name *names = names_of(kind, &count);
    for (size_t i = 0; i < count; i++) {
        if (strlen(names[i].text) == len && memcmp(names[i].text, name, len) == 0) {
            *code = names[i].code;
            return 0;
        }
    }
    return EHR_ENOTFOUND;
}

const char *contracts_policy_kind_names(enum contracts_policy_kind kind)
{
    switch (kind) {
    case CONTRACTS_KIND_ROLE:
        return "hospital, lab, pharmacy, insurer, regulator";
    case CONTRACTS_KIND_RECORD_TYPE:
        return "imaging, lab_result, prescription, discharge_summary, clinical_note, "
               "immunization, invoice, claim, genomic";
    case CONTRACTS_KIND_PURPOSE:
        return "treatment, payment, operations, research, public_health, emergency";
    default:
        return "";
    }
}

/* ---- dates ---- */

enum { DAY_MS = 86400000 };

static bool leap_year(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int64_t m)
{
    static const uint8_t days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap_year(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to Y-M-D (proleptic Gregorian; Y >= 1970 here). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = y / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    z += 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

static bool digits(const char *p, size_t n, int64_t *value)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *value = v;
    return true;
}

int contracts_policy_date_parse(const char *text, size_t len, int64_t *ms)
{
    int64_t y, m, d;
    if (len != 10 || text[4] != '-' || text[7] != '-' || !digits(text, 4, &y) ||
        !digits(text + 5, 2, &m) || !digits(text + 8, 2, &d))
        return EHR_EINVAL;
    if (y < CONTRACTS_POLICY_DATE_YEAR_MIN || y > CONTRACTS_POLICY_DATE_YEAR_MAX)
        return EHR_EINVAL;
    if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return EHR_EINVAL;
    int64_t days = days_from_civil(y, m, d);
    EHR_ASSERT(days >= 0);
    *ms = days * DAY_MS;
    return 0;
}

int contracts_policy_date_text(int64_t ms, char out[11])
{
    out[0] = '\0';
    if (ms < 0 || ms % DAY_MS != 0)
        return EHR_EINVAL;
    int64_t y, m, d;
    civil_from_days(ms / DAY_MS, &y, &m, &d);
    if (y > CONTRACTS_POLICY_DATE_YEAR_MAX)
        return EHR_EINVAL;
    for (int i = 3; i >= 0; i--, y /= 10)
        out[i] = (char)('0' + y % 10);
    out[4] = '-';
    out[5] = (char)('0' + m / 10);
    out[6] = (char)('0' + m % 10);
    out[7] = '-';
    out[8] = (char)('0' + d / 10);
    out[9] = (char)('0' + d % 10);
    out[10] = '\0';
    return 0;
}
