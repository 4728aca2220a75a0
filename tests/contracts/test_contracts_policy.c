/*
 * Tests of the policy language (contracts/policy.h): policies and the
 * decisions they give for several requests (table-driven, through the VM),
 * every compile error with its line and column, the bytes the example
 * compiles to, determinism, each limit at its edge, dates and names, and
 * the disassembler's listings. Invariants P1-P5 are policy_compile.c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#define EXAMPLE                                                                                    \
    "permit if requester.role == insurer and record.type in [invoice, claim] and block.time < "    \
    "2027-06-30"

#define KEY_A "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define KEY_B "B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2"

enum { DAY_MS = 86400000 };
static const int64_t ms_2027_06_30 = 1814313600000; /* python: datetime(2027,6,30,tzinfo=utc) */

struct compiled {
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX];
    size_t len;
    ehr_diag diag;
    int rc;
};

static struct compiled compile(const char *src)
{
    struct compiled c;
    memset(&c, 0, sizeof c);
    c.rc = contracts_policy_compile(src, strlen(src), c.code, sizeof c.code, &c.len, &c.diag);
    return c;
}

static void assert_compiles(const struct compiled *c, const char *src)
{
    if (c->rc != 0)
        fail_msg("\"%s\" does not compile: %s", src, c->diag.msg);
    assert_int_equal(contracts_vm_verify(c->code, c->len, NULL), 0); /* P1 */
}

/* ---- requests ---- */

static void key_of(uint8_t out[CONTRACTS_VM_KEY_BYTES], const char *hex)
{
    assert_int_equal(ehr_hex_decode(out, CONTRACTS_VM_KEY_BYTES, hex), 0);
}

/* An insurer's claim, a year into a consent for payment, on 2027-03-01. */
static struct contracts_vm_request base_request(void)
{
    struct contracts_vm_request r;
    memset(&r, 0, sizeof r);
    key_of(r.requester_key, KEY_A);
    key_of(r.requester_institution, KEY_B);
    key_of(r.record_custodian, KEY_B);
    r.requester_role = CONTRACTS_ROLE_INSURER;
    r.requester_practitioner = false;
    r.record_type = CONTRACTS_RECORD_CLAIM;
    r.record_age_days = 40;
    r.consent_purpose = CONTRACTS_PURPOSE_PAYMENT;
    r.request_purpose = CONTRACTS_PURPOSE_PAYMENT;
    assert_int_equal(contracts_policy_date_parse("2027-01-01", 10, (int64_t *)&r.consent_from_ms),
                     0);
    assert_int_equal(contracts_policy_date_parse("2028-01-01", 10, (int64_t *)&r.consent_until_ms),
                     0);
    assert_int_equal(contracts_policy_date_parse("2027-03-01", 10, (int64_t *)&r.block_time_ms), 0);
    return r;
}

/* Changes to the base request, by name. */
enum change {
    BASE,
    LAB,
    HOSPITAL,
    IMAGING,
    GENOMIC,
    INVOICE,
    AFTER_DATE, /* block time 2027-07-01 */
    AT_DATE,    /* block time 2027-06-30 exactly */
    PRACTITIONER,
    OTHER_CUSTODIAN,
    RESEARCH_REQUEST,
    EMERGENCY_REQUEST,
    OLD_RECORD, /* 400 days */
    BEFORE_CONSENT,
    OTHER_KEY,
};

static struct contracts_vm_request request_with(enum change change)
{
    struct contracts_vm_request r = base_request();
    int64_t ms;
    switch (change) {
    case BASE:
        break;
    case LAB:
        r.requester_role = CONTRACTS_ROLE_LAB;
        break;
    case HOSPITAL:
        r.requester_role = CONTRACTS_ROLE_HOSPITAL;
        break;
    case IMAGING:
        r.record_type = CONTRACTS_RECORD_IMAGING;
        break;
    case GENOMIC:
        r.record_type = CONTRACTS_RECORD_GENOMIC;
        break;
    case INVOICE:
        r.record_type = CONTRACTS_RECORD_INVOICE;
        break;
    case AFTER_DATE:
        assert_int_equal(contracts_policy_date_parse("2027-07-01", 10, &ms), 0);
        r.block_time_ms = (uint64_t)ms;
        break;
    case AT_DATE:
        r.block_time_ms = (uint64_t)ms_2027_06_30;
        break;
    case PRACTITIONER:
        r.requester_practitioner = true;
        break;
    case OTHER_CUSTODIAN:
        key_of(r.record_custodian, KEY_A);
        break;
    case RESEARCH_REQUEST:
        r.request_purpose = CONTRACTS_PURPOSE_RESEARCH;
        break;
    case EMERGENCY_REQUEST:
        r.request_purpose = CONTRACTS_PURPOSE_EMERGENCY;
        break;
    case OLD_RECORD:
        r.record_age_days = 400;
        break;
    case BEFORE_CONSENT:
        r.block_time_ms = r.consent_from_ms - 1;
        break;
    case OTHER_KEY:
        key_of(r.requester_key, KEY_B);
        break;
    }
    return r;
}

/* ---- policies and their decisions ---- */

enum outcome { P, D, E }; /* permit, a deny rule, the end */

struct expectation {
    enum change change;
    enum outcome outcome;
};

static const struct {
    const char *src;
    struct expectation expect[8];
    size_t count;
} policies[] = {
    {EXAMPLE "\n",
     {{BASE, P}, {INVOICE, P}, {LAB, E}, {IMAGING, E}, {AFTER_DATE, E}, {AT_DATE, E}},
     6},
    {"# deny rules first: the first rule that holds decides\n"
     "deny if record.type == genomic\n"
     "permit if requester.role in [hospital, insurer] # a comment after a rule\n",
     {{BASE, P}, {GENOMIC, D}, {HOSPITAL, P}, {LAB, E}},
     4},
    {"permit if consent.purpose == request.purpose and block.time >= consent.from and "
     "block.time < consent.until",
     {{BASE, P}, {RESEARCH_REQUEST, E}, {BEFORE_CONSENT, E}},
     3},
    {"permit if requester.practitioner and requester.institution == record.custodian",
     {{BASE, E}, {PRACTITIONER, P}, {OTHER_CUSTODIAN, E}},
     3},
    {"permit if requester.key in [" KEY_B ", " KEY_A "]\n", {{BASE, P}, {OTHER_KEY, P}}, 2},
    {"permit if requester.key == " KEY_B, {{BASE, E}, {OTHER_KEY, P}}, 2},
    {"permit if not (record.age_days > 365) or request.purpose == emergency",
     {{BASE, P}, {OLD_RECORD, E}, {EMERGENCY_REQUEST, P}},
     3},
    {"permit if block.time >= 1800000000000", {{BASE, P}, {BEFORE_CONSENT, E}}, 2},
    {"permit if requester.practitioner == false\n", {{BASE, P}, {PRACTITIONER, E}}, 2},
    {"permit if true", {{BASE, P}}, 1},
    {"deny if false", {{BASE, E}}, 1},
    {"deny if true\npermit if true", {{BASE, D}}, 1},
    /* `and` binds tighter than `or`; `not` tighter than both */
    {"permit if true or false and false", {{BASE, P}}, 1},
    {"permit if not false and false", {{BASE, E}}, 1},
    {"permit if (true or false) and false", {{BASE, E}}, 1},
    {"permit if record.type != claim or record.age_days <= 40", {{BASE, P}, {OLD_RECORD, E}}, 2},
    {"permit if 2027-03-01 == block.time and insurer == requester.role", {{BASE, P}, {LAB, E}}, 2},
    {"permit if record.type in [claim,\n  invoice]  # a list may span lines\n"
     "deny if (\n  true\n)\n",
     {{BASE, P}, {IMAGING, D}},
     2},
    {"\r\n  permit if record.age_days < 41\r\n", {{BASE, P}, {OLD_RECORD, E}}, 2},
};

static void test_policies_decide(void **state)
{
    (void)state;
    for (size_t i = 0; i < EHR_ARRAY_COUNT(policies); i++) {
        struct compiled c = compile(policies[i].src);
        assert_compiles(&c, policies[i].src);
        for (size_t k = 0; k < policies[i].count; k++) {
            struct contracts_vm_request r = request_with(policies[i].expect[k].change);
            struct contracts_vm_result res;
            assert_int_equal(contracts_vm_eval(c.code, c.len, &r, CONTRACTS_VM_GAS_DEFAULT, &res),
                             0);
            enum contracts_vm_reason want =
                policies[i].expect[k].outcome == P   ? CONTRACTS_VM_REASON_PERMIT
                : policies[i].expect[k].outcome == D ? CONTRACTS_VM_REASON_DENY
                                                     : CONTRACTS_VM_REASON_END;
            if (res.reason != want)
                fail_msg("policy %zu (%s), request %u: %s, expected %s", i, policies[i].src,
                         (unsigned)policies[i].expect[k].change,
                         contracts_vm_reason_name(res.reason), contracts_vm_reason_name(want));
            assert_true(res.gas_used <= c.len - 1);
        }
    }
}

/* The example compiles to these bytes: the encoding is a stored format. */
static void test_example_bytes(void **state)
{
    (void)state;
    struct compiled c = compile(EXAMPLE);
    assert_compiles(&c, EXAMPLE);
    const uint8_t expected[] = {
        0x01,                                              /* version */
        0x05, 0x02,                                        /* load requester.role */
        0x01, 0x04, 0,    0,    0,    0,    0,    0,    0, /* push_int 4 (insurer) */
        0x10,                                              /* eq */
        0x05, 0x05,                                        /* load record.type */
        0x20, 0x02, 0x07, 0,    0,    0,    0,    0,    0,    0, 0x08, 0, 0, 0, /* in_int [7, 8] */
        0,    0,    0,    0,                                                    /* */
        0x18,                                                                   /* and */
        0x05, 0x0c,                                           /* load block.time */
        0x01, 0x00, 0x84, 0x84, 0x6d, 0xa6, 0x01, 0x00, 0x00, /* push_int 1814313600000 */
        0x12,                                                 /* lt */
        0x18,                                                 /* and */
        0x31, 0x01, 0x00,                                     /* jmpf +1 */
        0x40,                                                 /* permit */
    };
    assert_int_equal(c.len, sizeof expected);
    assert_memory_equal(c.code, expected, sizeof expected);
}

/* P5: the same source twice gives the same bytes; so do errors. */
static void test_compile_is_deterministic(void **state)
{
    (void)state;
    for (size_t i = 0; i < EHR_ARRAY_COUNT(policies); i++) {
        struct compiled a = compile(policies[i].src);
        struct compiled b = compile(policies[i].src);
        assert_int_equal(a.rc, 0);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.code, b.code, a.len);
    }
    struct compiled a = compile("permit if record.type == insurer");
    struct compiled b = compile("permit if record.type == insurer");
    assert_string_equal(a.diag.msg, b.diag.msg);
}

/* ---- errors: each with its line and column ---- */

static const struct {
    const char *src;
    int rc;
    const char *why; /* the message starts with this */
} errors[] = {
    {"", EHR_EINVAL, "1:1: a policy needs at least one rule"},
    {"# only a comment\n", EHR_EINVAL, "2:1: a policy needs at least one rule"},
    {"allow if true", EHR_EINVAL, "1:1: a rule starts with `permit` or `deny`, found `allow`"},
    {"permit record.type == claim", EHR_EINVAL,
     "1:8: expected `if` after `permit`, found `record.type`"},
    {"deny\n", EHR_EINVAL, "1:5: expected `if` after `deny`, found the end of the line"},
    {"permit if\n", EHR_EINVAL, "1:10: expected a value, found the end of the line"},
    {"permit if and", EHR_EINVAL, "1:11: expected a value, found `and`"},
    {"permit if record.typ == claim", EHR_EINVAL,
     "1:11: unknown attribute `record.typ` (did you mean one of record.type, record.custodian, "
     "record.age_days?)"},
    {"permit if patient.age > 3", EHR_EINVAL,
     "1:11: unknown attribute `patient.age` (attributes start with"},
    {"permit if foo", EHR_EINVAL, "1:11: unknown name `foo` (not a role, record type or purpose)"},
    {"permit if record.type == insurer", EHR_EINVAL,
     "1:23: cannot compare `record.type` (a record type) with `insurer` (a role)"},
    {"permit if requester.role == 4", EHR_EINVAL,
     "1:26: cannot compare `requester.role` (a role) with `4` (a number): use a name: hospital, "
     "lab, pharmacy, insurer, regulator"},
    {"permit if record.age_days < 2027-01-01", EHR_EINVAL,
     "1:27: cannot compare `record.age_days` (a number) with `2027-01-01` (a time)"},
    {"permit if record.type == true", EHR_EINVAL,
     "1:23: cannot compare `record.type` (a record type) with `true` (a condition)"},
    {"permit if requester.key == 5", EHR_EINVAL,
     "1:25: cannot compare `requester.key` (a key) with `5` (a number)"},
    {"permit if requester.role < insurer", EHR_EINVAL,
     "1:26: `<` orders numbers and times; `requester.role` is a role"},
    {"permit if requester.key >= " KEY_A, EHR_EINVAL,
     "1:25: `>=` orders numbers and times; `requester.key` is a key"},
    {"permit if true > false", EHR_EINVAL, "1:16: `>` orders numbers and times"},
    {"permit if record.type", EHR_EINVAL,
     "1:11: a rule needs a condition; `record.type` is a record type"},
    {"permit if record.type and true", EHR_EINVAL,
     "1:11: `and` needs a condition; `record.type` is a record type"},
    {"permit if true and record.type", EHR_EINVAL,
     "1:20: `and` needs a condition; `record.type` is a record type"},
    {"permit if true or 5", EHR_EINVAL, "1:19: `or` needs a condition; `5` is a number"},
    {"permit if not record.type", EHR_EINVAL,
     "1:15: `not` needs a condition; `record.type` is a record type"},
    {"permit if record.type == claim == true", EHR_EINVAL,
     "1:32: comparisons do not chain: join them with `and`"},
    {"permit if record.type = claim", EHR_EINVAL, "1:23: a single `=`: compare with `==`"},
    {"permit if ! true", EHR_EINVAL, "1:11: `!` alone: compare with `!=`, negate with `not`"},
    {"permit if block.time < 2027-02-30", EHR_EINVAL,
     "1:24: `2027-02-30` is not a date (YYYY-MM-DD, a real day, years 1970-9999)"},
    {"permit if block.time < 2027-02-29", EHR_EINVAL, "1:24: `2027-02-29` is not a date"},
    {"permit if block.time < 2027-13-01", EHR_EINVAL, "1:24: `2027-13-01` is not a date"},
    {"permit if block.time < 1969-12-31", EHR_EINVAL, "1:24: `1969-12-31` is not a date"},
    {"permit if block.time < 2027-6-30", EHR_EINVAL,
     "1:24: `2027-6-30` is not a number, a date (YYYY-MM-DD), a key or a name"},
    {"permit if record.age_days < 9223372036854775808", EHR_EINVAL,
     "1:29: `9223372036854775808` is too large"},
    {"permit if record.age_days < 007", EHR_EINVAL, "1:29: `007`: a number does not start with 0"},
    {"permit if record.age_days < 12ab", EHR_EINVAL,
     "1:29: `12ab` is not a number, a date (YYYY-MM-DD), a key or a name"},
    {"permit if requester.key == a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a",
     EHR_EINVAL, "1:28: a key is 64 hex digits; `a1a1"},
    {"permit if record.type in []", EHR_EINVAL, "1:26: an empty list (nothing is in it)"},
    {"permit if record.type in [claim, claim]", EHR_EINVAL, "1:34: `claim` is in the list twice"},
    {"permit if record.type in [claim, insurer]", EHR_EINVAL,
     "1:34: cannot compare `record.type` (a record type) with `insurer` (a role)"},
    {"permit if record.type in [claim", EHR_EINVAL,
     "1:32: expected `,` or `]` in the list opened at 1:26, found the end of the policy"},
    {"permit if record.type in claim", EHR_EINVAL, "1:26: expected `[` after `in`, found `claim`"},
    {"permit if record.type in [claim,]", EHR_EINVAL,
     "1:33: a list holds numbers, dates, names or keys; found `]`"},
    {"permit if record.type in [record.type]", EHR_EINVAL,
     "1:27: a list holds numbers, dates, names or keys; found `record.type`"},
    {"permit if requester.practitioner in [true]", EHR_EINVAL,
     "1:34: `in` looks up a value, and `requester.practitioner` is a condition"},
    {"permit if (true", EHR_EINVAL,
     "1:16: expected `)` to close the `(` at 1:11, found the end of the policy"},
    {"permit if true)", EHR_EINVAL, "1:15: expected the end of the rule, found `)`"},
    {"permit if true deny if false", EHR_EINVAL,
     "1:16: expected the end of the rule, found `deny`"},
    {"permit if @", EHR_EINVAL, "1:11: unexpected character `@`"},
    {"permit if -5 < record.age_days", EHR_EINVAL,
     "1:11: unexpected character `-` (numbers are never negative)"},
    {"permit if \xc3\xa9", EHR_EINVAL, "1:11: unexpected byte 0xc3 (a policy is ASCII text)"},
    {"\tpermit if x", EHR_EINVAL, "1:12: unknown name `x`"}, /* a tab is one column */
    {"permit if true\n\ndeny if record.type == lab\n", EHR_EINVAL,
     "3:21: cannot compare `record.type` (a record type) with `lab` (a role)"},
    {"permit if record.type in [claim,\n  insurer]", EHR_EINVAL,
     "2:3: cannot compare `record.type` (a record type) with `insurer` (a role)"},
    {"permit if record.type in [claim, " KEY_A "]", EHR_EINVAL,
     "1:34: cannot compare `record.type` (a record type) with "
     "`a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a"
     "1a1...` (a key)"},
};

static void test_compile_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < EHR_ARRAY_COUNT(errors); i++) {
        struct compiled c = compile(errors[i].src);
        if (c.rc != errors[i].rc)
            fail_msg("\"%s\": returned %d, not %d (%s)", errors[i].src, c.rc, errors[i].rc,
                     c.rc == 0 ? "compiled" : c.diag.msg);
        if (strncmp(c.diag.msg, errors[i].why, strlen(errors[i].why)) != 0)
            fail_msg("\"%s\":\n  got      \"%s\"\n  expected \"%s...\"", errors[i].src, c.diag.msg,
                     errors[i].why);
        assert_null(strchr(c.diag.msg, '\n'));
        assert_int_equal(c.len, 0);
    }
}

/*
 * A message is one line that fits ehr_diag whole, the longest kind too (a
 * number compared with a record type lists every name) at a five-digit line
 * and a four-digit column. DIAG may be NULL, and success writes nothing.
 */
static void test_compile_error_fits_and_diag_may_be_null(void **state)
{
    (void)state;
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX];
    size_t len = 99;
    const char *src = "permit if record.type == insurer";
    assert_int_equal(contracts_policy_compile(src, strlen(src), code, sizeof code, &len, NULL),
                     EHR_EINVAL);
    assert_int_equal(len, 0);

    /* the longest quoted tokens */
    struct compiled c =
        compile("permit if requester.institution == "
                "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a12");
    assert_int_equal(c.rc, EHR_EINVAL);
    assert_true(strlen(c.diag.msg) < EHR_DIAG_BYTES_MAX - 1);

    /* the longest list of names, at line 10000 column 6022 */
    enum { NEWLINES = 9999, SPACES = 6000, TAIL = 64 };
    char *far = malloc(NEWLINES + SPACES + 2 * TAIL);
    assert_non_null(far);
    memset(far, '\n', NEWLINES);
    size_t used = NEWLINES + (size_t)snprintf(far + NEWLINES, TAIL, "permit if record.type");
    memset(far + used, ' ', SPACES);
    used += SPACES;
    snprintf(far + used, TAIL, "== 9223372036854775807");
    c = compile(far);
    free(far);
    assert_int_equal(c.rc, EHR_EINVAL);
    assert_string_equal(c.diag.msg,
                        "10000:6022: cannot compare `record.type` (a record type) with "
                        "`9223372036854775807` (a number): use a name: imaging, lab_result, "
                        "prescription, discharge_summary, clinical_note, immunization, invoice, "
                        "claim, genomic");

    ehr_diag diag;
    memset(diag.msg, 'x', sizeof diag.msg);
    src = "permit if true";
    assert_int_equal(contracts_policy_compile(src, strlen(src), code, sizeof code, &len, &diag), 0);
    for (size_t i = 0; i < sizeof diag.msg; i++)
        assert_int_equal(diag.msg[i], 'x'); /* not written on success */
}

/* ---- limits at their edges ---- */

static char *repeat(const char *head, const char *unit, size_t times, const char *tail)
{
    size_t n = strlen(head) + strlen(unit) * times + strlen(tail) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    size_t used = (size_t)snprintf(s, n, "%s", head);
    for (size_t i = 0; i < times; i++)
        used += (size_t)snprintf(s + used, n - used, "%s", unit);
    snprintf(s + used, n - used, "%s", tail);
    return s;
}

static void test_source_size_limit(void **state)
{
    (void)state;
    char *src = malloc(CONTRACTS_POLICY_SOURCE_BYTES_MAX + 2);
    assert_non_null(src);
    memset(src, ' ', CONTRACTS_POLICY_SOURCE_BYTES_MAX + 1);
    memcpy(src, "permit if true #", 16); /* then spaces: a long comment */
    src[CONTRACTS_POLICY_SOURCE_BYTES_MAX] = '\0';
    struct compiled c = compile(src);
    assert_compiles(&c, "16 KiB");
    src[CONTRACTS_POLICY_SOURCE_BYTES_MAX] = ' ';
    src[CONTRACTS_POLICY_SOURCE_BYTES_MAX + 1] = '\0';
    c = compile(src);
    assert_int_equal(c.rc, EHR_ETOOBIG);
    assert_string_equal(c.diag.msg, "1:1: the policy is 16385 bytes, over the limit of 16384");
    free(src);
}

static void test_nesting_limit(void **state)
{
    (void)state;
    char *src = repeat("permit if ", "(", CONTRACTS_POLICY_DEPTH_MAX, "true");
    char *full = repeat(src, ")", CONTRACTS_POLICY_DEPTH_MAX, "");
    struct compiled c = compile(full);
    assert_compiles(&c, full);
    free(src);
    free(full);
    src = repeat("permit if ", "(", CONTRACTS_POLICY_DEPTH_MAX + 1, "true");
    full = repeat(src, ")", CONTRACTS_POLICY_DEPTH_MAX + 1, "");
    c = compile(full);
    assert_int_equal(c.rc, EHR_ETOOBIG);
    assert_string_equal(c.diag.msg, "1:19: nested deeper than 8 (parentheses and `not` together)");
    free(src);
    free(full);

    src = repeat("permit if ", "not ", CONTRACTS_POLICY_DEPTH_MAX, "false");
    c = compile(src);
    assert_compiles(&c, src);
    free(src);
    src = repeat("permit if ", "not ", CONTRACTS_POLICY_DEPTH_MAX + 1, "false");
    c = compile(src);
    assert_int_equal(c.rc, EHR_ETOOBIG);
    assert_string_equal(c.diag.msg, "1:43: nested deeper than 8 (parentheses and `not` together)");
    free(src);

    src = repeat("permit if ", "not (", CONTRACTS_POLICY_DEPTH_MAX / 2, "false");
    full = repeat(src, ")", CONTRACTS_POLICY_DEPTH_MAX / 2, "");
    c = compile(full);
    assert_compiles(&c, full);
    free(src);
    free(full);
}

/* P2: the most values a policy can leave pending, at the deepest nesting, fit the stack. */
static void test_deepest_policy_fits_the_vm_stack(void **state)
{
    (void)state;
    /* each level: an or, an and and a comparison's left side wait for the level inside */
    char *src = repeat("permit if ", "true or true and true == (", CONTRACTS_POLICY_DEPTH_MAX,
                       "true or true and true == true");
    char *full = repeat(src, ")", CONTRACTS_POLICY_DEPTH_MAX, "");
    struct compiled c = compile(full);
    assert_compiles(&c, full);
    free(src);
    free(full);
}

static void test_list_limit(void **state)
{
    (void)state;
    char item[32];
    char *src = malloc(4096);
    assert_non_null(src);
    for (int count = CONTRACTS_POLICY_LIST_MAX; count <= CONTRACTS_POLICY_LIST_MAX + 1; count++) {
        size_t used = (size_t)snprintf(src, 4096, "permit if record.age_days in [");
        for (int i = 0; i < count; i++) {
            snprintf(item, sizeof item, "%s%d", i > 0 ? ", " : "", 1000 + i);
            used += (size_t)snprintf(src + used, 4096 - used, "%s", item);
        }
        snprintf(src + used, 4096 - used, "]");
        struct compiled c = compile(src);
        if (count == CONTRACTS_POLICY_LIST_MAX) {
            assert_compiles(&c, src);
            struct contracts_vm_request r = base_request();
            r.record_age_days = 1000 + CONTRACTS_POLICY_LIST_MAX - 1; /* the last one */
            struct contracts_vm_result res;
            assert_int_equal(contracts_vm_eval(c.code, c.len, &r, CONTRACTS_VM_GAS_DEFAULT, &res),
                             0);
            assert_int_equal(res.decision, CONTRACTS_VM_PERMIT);
        } else {
            assert_int_equal(c.rc, EHR_ETOOBIG);
            /* at the 65th value: 30 + 64 values of 4 digits and ", " */
            assert_string_equal(c.diag.msg, "1:415: a list of more than 64 values");
        }
    }
    free(src);
}

/* 3 rules of 16 bytes and 195 of 5 after the version byte: exactly 1024. */
static void test_program_size_limit(void **state)
{
    (void)state;
    char *head = repeat("", "permit if record.age_days < 5\n", 3, "");
    char *src = repeat(head, "deny if false\n", 195, "");
    struct compiled c = compile(src);
    assert_compiles(&c, "the largest program");
    assert_int_equal(c.len, CONTRACTS_POLICY_BYTES_MAX);
    free(src);
    src = repeat(head, "deny if false\n", 196, "");
    c = compile(src);
    assert_int_equal(c.rc, EHR_ETOOBIG);
    assert_string_equal(c.diag.msg,
                        "199:1: the program passes 1024 bytes in this rule (the limit of a "
                        "policy program)");
    free(src);
    free(head);

    /* a smaller buffer is a smaller limit */
    uint8_t small[16];
    size_t len;
    ehr_diag diag;
    assert_int_equal(
        contracts_policy_compile(EXAMPLE, strlen(EXAMPLE), small, sizeof small, &len, &diag),
        EHR_ETOOBIG);
    assert_string_equal(diag.msg,
                        "1:1: the program passes 16 bytes in this rule (the limit of a policy "
                        "program)");
    const char *tiny = "permit if true";
    assert_int_equal(contracts_policy_compile(tiny, strlen(tiny), small, 5, &len, &diag),
                     EHR_ETOOBIG);
    assert_int_equal(contracts_policy_compile(tiny, strlen(tiny), small, 6, &len, &diag), 0);
    assert_int_equal(len, 6);
}

/* ---- dates and names ---- */

static void test_dates(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(contracts_policy_date_parse("1970-01-01", 10, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(contracts_policy_date_parse("2027-06-30", 10, &ms), 0);
    assert_int_equal(ms, ms_2027_06_30);
    assert_int_equal(contracts_policy_date_parse("2028-02-29", 10, &ms), 0); /* leap */
    assert_int_equal(contracts_policy_date_parse("2000-02-29", 10, &ms), 0); /* 400 */
    assert_int_equal(ms, 951782400000);
    assert_int_equal(contracts_policy_date_parse("2100-02-29", 10, &ms), EHR_EINVAL); /* 100 */
    assert_int_equal(contracts_policy_date_parse("2027-02-29", 10, &ms), EHR_EINVAL);
    assert_int_equal(contracts_policy_date_parse("2027-04-31", 10, &ms), EHR_EINVAL);
    assert_int_equal(contracts_policy_date_parse("2027-00-10", 10, &ms), EHR_EINVAL);
    assert_int_equal(contracts_policy_date_parse("2027-01-00", 10, &ms), EHR_EINVAL);
    assert_int_equal(contracts_policy_date_parse("1969-12-31", 10, &ms), EHR_EINVAL);
    assert_int_equal(contracts_policy_date_parse("9999-12-31", 10, &ms), 0);
    assert_int_equal(ms, 253402214400000);
    assert_int_equal(contracts_policy_date_parse("2027-06-3", 9, &ms), EHR_EINVAL);
    assert_int_equal(contracts_policy_date_parse("2027/06/30", 10, &ms), EHR_EINVAL);
    assert_int_equal(contracts_policy_date_parse("2027-06-3x", 10, &ms), EHR_EINVAL);

    char text[11];
    for (int64_t day = 0; day < 2932897; day += 97) { /* 1970-01-01 to 9999-12-31 */
        assert_int_equal(contracts_policy_date_text(day * DAY_MS, text), 0);
        assert_int_equal(contracts_policy_date_parse(text, 10, &ms), 0);
        assert_int_equal(ms, day * DAY_MS);
    }
    assert_int_equal(contracts_policy_date_text(ms_2027_06_30, text), 0);
    assert_string_equal(text, "2027-06-30");
    assert_int_equal(contracts_policy_date_text(ms_2027_06_30 + 1, text), EHR_EINVAL);
    assert_string_equal(text, "");
    assert_int_equal(contracts_policy_date_text(-DAY_MS, text), EHR_EINVAL);
    assert_int_equal(contracts_policy_date_text(253402300800000, text), EHR_EINVAL); /* 10000 */
}

static void test_names(void **state)
{
    (void)state;
    uint32_t code;
    assert_int_equal(contracts_policy_name_code(CONTRACTS_KIND_ROLE, "insurer", 7, &code), 0);
    assert_int_equal(code, CONTRACTS_ROLE_INSURER);
    assert_int_equal(contracts_policy_name_code(CONTRACTS_KIND_ROLE, "claim", 5, &code),
                     EHR_ENOTFOUND);
    assert_int_equal(contracts_policy_name_code(CONTRACTS_KIND_RECORD_TYPE, "genomic", 7, &code),
                     0);
    assert_int_equal(code, CONTRACTS_RECORD_GENOMIC);
    assert_int_equal(contracts_policy_name_code(CONTRACTS_KIND_PURPOSE, "public_health", 13, &code),
                     0);
    assert_int_equal(code, CONTRACTS_PURPOSE_PUBLIC_HEALTH);
    assert_int_equal(contracts_policy_name_code(CONTRACTS_KIND_NUMBER, "x", 1, &code),
                     EHR_ENOTFOUND);
    /* every code of every kind has its name, and back */
    static const struct {
        int kind;
        uint32_t last;
    } kinds[] = {
        {CONTRACTS_KIND_ROLE, 5}, {CONTRACTS_KIND_RECORD_TYPE, 9}, {CONTRACTS_KIND_PURPOSE, 6}};
    for (size_t k = 0; k < EHR_ARRAY_COUNT(kinds); k++) {
        assert_null(contracts_policy_code_name(kinds[k].kind, 0));
        assert_null(contracts_policy_code_name(kinds[k].kind, kinds[k].last + 1));
        for (uint32_t v = 1; v <= kinds[k].last; v++) {
            const char *name = contracts_policy_code_name(kinds[k].kind, v);
            assert_non_null(name);
            assert_non_null(strstr(contracts_policy_kind_names(kinds[k].kind), name));
            assert_int_equal(contracts_policy_name_code(kinds[k].kind, name, strlen(name), &code),
                             0);
            assert_int_equal(code, v);
        }
    }
    for (uint32_t a = 1; a <= CONTRACTS_ATTR_LAST_; a++) {
        const char *name = contracts_vm_attr_name(a);
        assert_int_equal(contracts_policy_attr_find(name, strlen(name)), a);
        assert_int_not_equal(contracts_policy_attr_kind(a), 0);
    }
    assert_int_equal(contracts_policy_attr_find("record.typ", 10), 0);
    assert_int_equal(contracts_policy_attr_find("record.type", 10), 0); /* the length counts */
    assert_int_equal(contracts_policy_attr_kind(0), 0);
}

/* ---- the disassembler ---- */

static void test_listing_of_the_example(void **state)
{
    (void)state;
    struct compiled c = compile(EXAMPLE);
    assert_compiles(&c, EXAMPLE);
    char out[CONTRACTS_POLICY_LISTING_BYTES_MAX];
    assert_int_equal(contracts_policy_disassemble(c.code, c.len, out, sizeof out), 0);
    assert_string_equal(out, "; consent VM program, version 1, 51 bytes\n"
                             "0001  load       requester.role\n"
                             "0003  push_int   4  ; insurer\n"
                             "0012  eq\n"
                             "0013  load       record.type\n"
                             "0015  in_int     7, 8  ; invoice, claim\n"
                             "0033  and\n"
                             "0034  load       block.time\n"
                             "0036  push_int   1814313600000  ; 2027-06-30\n"
                             "0045  lt\n"
                             "0046  and\n"
                             "0047  jmpf       +1  ; to 0051\n"
                             "0050  permit\n"
                             "0051  end\n");
    char again[CONTRACTS_POLICY_LISTING_BYTES_MAX];
    assert_int_equal(contracts_policy_disassemble(c.code, c.len, again, sizeof again), 0);
    assert_string_equal(out, again);
}

static void test_listing_names_keys_and_constants_on_the_left(void **state)
{
    (void)state;
    const char *src = "deny if requester.key in [" KEY_A "] or lab == requester.role\n"
                      "permit if consent.purpose in [treatment, emergency] and record.age_days < "
                      "30 and block.time < 1800000000001";
    struct compiled c = compile(src);
    assert_compiles(&c, src);
    char out[CONTRACTS_POLICY_LISTING_BYTES_MAX];
    assert_int_equal(contracts_policy_disassemble(c.code, c.len, out, sizeof out), 0);
    assert_non_null(strstr(out, "in_bytes   " KEY_A "\n"));
    assert_non_null(strstr(out, "push_int   2  ; lab\n0"));
    assert_non_null(strstr(out, "in_int     1, 6  ; treatment, emergency\n"));
    assert_non_null(strstr(out, "push_int   30\n"));            /* a plain number: no hint */
    assert_non_null(strstr(out, "push_int   1800000000001\n")); /* not a midnight: no date */
    assert_non_null(strstr(out, "  deny\n"));
}

static void test_listing_of_bad_bytes(void **state)
{
    (void)state;
    char out[512];
    const uint8_t bad_op[] = {1, CONTRACTS_OP_PUSH_TRUE, 0xff, CONTRACTS_OP_PERMIT};
    assert_int_equal(contracts_policy_disassemble(bad_op, sizeof bad_op, out, sizeof out),
                     EHR_EINVAL);
    assert_string_equal(out, "; consent VM program, version 1, 4 bytes\n"
                             "0001  push_true\n"
                             "0002  ??  unknown opcode (0xff)\n");
    const uint8_t version[] = {7, CONTRACTS_OP_PERMIT};
    assert_int_equal(contracts_policy_disassemble(version, sizeof version, out, sizeof out),
                     EHR_EINVAL);
    assert_non_null(strstr(out, "0000  ??  unknown version 7"));
    assert_int_equal(contracts_policy_disassemble(NULL, 0, out, sizeof out), EHR_EINVAL);
    const uint8_t cut[] = {1, CONTRACTS_OP_PUSH_BYTES, 5, 'a'};
    assert_int_equal(contracts_policy_disassemble(cut, sizeof cut, out, sizeof out), EHR_EINVAL);
    assert_non_null(strstr(out, "0001  ??  operand past the end of the program (0x02)\n"));
    /* unverified but decodable: listed in full (verify judges it) */
    const uint8_t unsound[] = {1, CONTRACTS_OP_AND,  CONTRACTS_OP_PUSH_BYTES,
                               0, CONTRACTS_OP_LOAD, 1};
    assert_int_equal(contracts_policy_disassemble(unsound, sizeof unsound, out, sizeof out), 0);
    assert_non_null(strstr(out, "0002  push_bytes (empty)\n0004  load       requester.key\n"));
}

static void test_listing_bounds(void **state)
{
    (void)state;
    struct compiled c = compile(EXAMPLE);
    char out[64];
    /* too small: cut at a line's end */
    assert_int_equal(contracts_policy_disassemble(c.code, c.len, out, sizeof out), EHR_ETOOBIG);
    assert_string_equal(out, "; consent VM program, version 1, 51 bytes\n");
    char one[1];
    assert_int_equal(contracts_policy_disassemble(c.code, c.len, one, sizeof one), EHR_ETOOBIG);
    assert_string_equal(one, "");
    /* a program over the limit is not listed */
    uint8_t big[CONTRACTS_POLICY_BYTES_MAX + 1];
    memset(big, CONTRACTS_OP_PUSH_FALSE, sizeof big);
    big[0] = CONTRACTS_VM_VERSION;
    char *listing = malloc(CONTRACTS_POLICY_LISTING_BYTES_MAX);
    assert_non_null(listing);
    assert_int_equal(
        contracts_policy_disassemble(big, sizeof big, listing, CONTRACTS_POLICY_LISTING_BYTES_MAX),
        EHR_ETOOBIG);
    /* the densest listing, one line per byte, fits CONTRACTS_POLICY_LISTING_BYTES_MAX */
    assert_int_equal(contracts_policy_disassemble(big, CONTRACTS_POLICY_BYTES_MAX, listing,
                                                  CONTRACTS_POLICY_LISTING_BYTES_MAX),
                     0);
    assert_true(strlen(listing) > 16 * (CONTRACTS_POLICY_BYTES_MAX - 1));
    free(listing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policies_decide),
        cmocka_unit_test(test_example_bytes),
        cmocka_unit_test(test_compile_is_deterministic),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_compile_error_fits_and_diag_may_be_null),
        cmocka_unit_test(test_source_size_limit),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_deepest_policy_fits_the_vm_stack),
        cmocka_unit_test(test_list_limit),
        cmocka_unit_test(test_program_size_limit),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_listing_of_the_example),
        cmocka_unit_test(test_listing_names_keys_and_constants_on_the_left),
        cmocka_unit_test(test_listing_of_bad_bytes),
        cmocka_unit_test(test_listing_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
