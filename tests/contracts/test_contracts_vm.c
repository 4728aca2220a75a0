/*
 * Tests of the consent VM (contracts/vm.h): the verifier's refusals, one
 * per rule, each with the offset it names; the interpreter's semantics for
 * every instruction and both value types; gas at its edges; the limits at
 * their edges; and determinism. Programs are written with a small assembler
 * below, so a test shows the bytes it runs. Invariants V1-V6 are vm.c's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm.h"

/* ---- a tiny assembler ---- */

struct prog {
    uint8_t b[2 * CONTRACTS_POLICY_BYTES_MAX];
    size_t n;
};

static void p_init(struct prog *p)
{
    memset(p, 0, sizeof *p);
    p->b[0] = CONTRACTS_VM_VERSION;
    p->n = 1;
}

static void p_byte(struct prog *p, uint8_t byte)
{
    assert_true(p->n < sizeof p->b);
    p->b[p->n++] = byte;
}

static void p_op(struct prog *p, uint8_t op)
{
    p_byte(p, op);
}

static void p_i64(struct prog *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p_byte(p, (uint8_t)(u >> (8 * i)));
}

static void p_int(struct prog *p, int64_t v)
{
    p_op(p, CONTRACTS_OP_PUSH_INT);
    p_i64(p, v);
}

static void p_bytes(struct prog *p, const void *data, size_t len)
{
    p_op(p, CONTRACTS_OP_PUSH_BYTES);
    p_byte(p, (uint8_t)len);
    for (size_t i = 0; i < len; i++)
        p_byte(p, ((const uint8_t *)data)[i]);
}

static void p_load(struct prog *p, uint8_t attr)
{
    p_op(p, CONTRACTS_OP_LOAD);
    p_byte(p, attr);
}

static void p_jump(struct prog *p, uint8_t op, uint16_t d)
{
    p_op(p, op);
    p_byte(p, (uint8_t)d);
    p_byte(p, (uint8_t)(d >> 8));
}

static void p_in_int(struct prog *p, size_t count, const int64_t *values)
{
    p_op(p, CONTRACTS_OP_IN_INT);
    p_byte(p, (uint8_t)count);
    for (size_t i = 0; i < count; i++)
        p_i64(p, values[i]);
}

/* COUNT strings, each its length then its bytes, from STRINGS (NUL-terminated). */
static void p_in_bytes(struct prog *p, size_t count, const char *const *strings)
{
    p_op(p, CONTRACTS_OP_IN_BYTES);
    p_byte(p, (uint8_t)count);
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(strings[i]);
        p_byte(p, (uint8_t)len);
        for (size_t k = 0; k < len; k++)
            p_byte(p, (uint8_t)strings[i][k]);
    }
}

/* The tail every condition ends with: jmpf +1; permit. Then the end denies. */
static void p_permit_if(struct prog *p)
{
    p_jump(p, CONTRACTS_OP_JMPF, 1);
    p_op(p, CONTRACTS_OP_PERMIT);
}

/* ---- running ---- */

static struct contracts_vm_request sample_request(void)
{
    struct contracts_vm_request r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < CONTRACTS_VM_KEY_BYTES; i++) {
        r.requester_key[i] = (uint8_t)(0x10 + i);
        r.requester_institution[i] = (uint8_t)(0x40 + i);
        r.record_custodian[i] = (uint8_t)(0x80 + i);
    }
    r.requester_role = CONTRACTS_ROLE_INSURER;
    r.requester_practitioner = true;
    r.record_type = CONTRACTS_RECORD_CLAIM;
    r.record_age_days = 12;
    r.consent_purpose = CONTRACTS_PURPOSE_PAYMENT;
    r.request_purpose = CONTRACTS_PURPOSE_TREATMENT;
    r.consent_from_ms = 1790000000000ull;
    r.consent_until_ms = 1830000000000ull;
    r.block_time_ms = 1800000000000ull;
    return r;
}

static struct contracts_vm_result eval_gas(const struct prog *p, uint64_t gas)
{
    struct contracts_vm_request r = sample_request();
    struct contracts_vm_result res;
    assert_int_equal(contracts_vm_eval(p->b, p->n, &r, gas, &res), 0);
    return res;
}

static struct contracts_vm_result eval(const struct prog *p)
{
    return eval_gas(p, CONTRACTS_VM_GAS_DEFAULT);
}

/* The program verifies, and permits (true) or runs off the end (false). */
static void assert_decides(const struct prog *p, bool permit)
{
    ehr_diag diag;
    int rc = contracts_vm_verify(p->b, p->n, &diag);
    if (rc != 0)
        fail_msg("does not verify: %s", diag.msg);
    struct contracts_vm_result res = eval(p);
    assert_int_equal(res.decision, permit ? CONTRACTS_VM_PERMIT : CONTRACTS_VM_DENY);
    assert_int_equal(res.reason, permit ? CONTRACTS_VM_REASON_PERMIT : CONTRACTS_VM_REASON_END);
}

/* The verifier refuses P with RC and a reason starting with PREFIX. */
static void assert_refused(const struct prog *p, int rc, const char *prefix)
{
    ehr_diag diag;
    int got = contracts_vm_verify(p->b, p->n, &diag);
    if (got != rc)
        fail_msg("verify returned %d, not %d (%s)", got, rc, got == 0 ? "accepted" : diag.msg);
    if (strncmp(diag.msg, prefix, strlen(prefix)) != 0)
        fail_msg("reason \"%s\" does not start with \"%s\"", diag.msg, prefix);
    assert_null(strchr(diag.msg, '\n'));
}

/* ---- the verifier: each rule ---- */

static void test_verify_refuses_empty_and_wrong_version(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    p.n = 0;
    assert_refused(&p, EHR_EINVAL, "offset 0: empty program");
    p_init(&p);
    p.b[0] = CONTRACTS_VM_VERSION + 1;
    assert_refused(&p, EHR_EINVAL, "offset 0: unknown version 2");
    p_init(&p); /* the version byte alone: no rule, runs off the end */
    assert_decides(&p, false);
}

static void test_verify_size_limit_at_its_edge(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    while (p.n + 5 <= CONTRACTS_POLICY_BYTES_MAX - 3) {
        p_op(&p, CONTRACTS_OP_PUSH_FALSE);
        p_permit_if(&p);
    }
    while (p.n < CONTRACTS_POLICY_BYTES_MAX)
        p_op(&p, p.n == CONTRACTS_POLICY_BYTES_MAX - 3 ? CONTRACTS_OP_PUSH_TRUE : CONTRACTS_OP_NOT);
    assert_int_equal(p.n, CONTRACTS_POLICY_BYTES_MAX);
    assert_decides(&p, false);
    p_op(&p, CONTRACTS_OP_NOT);
    assert_refused(&p, EHR_ETOOBIG, "offset 1024: a program of 1025 bytes passes the limit");
    /* eval refuses to run it too, whatever it holds */
    struct contracts_vm_result res = eval(&p);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);
}

static void test_verify_refuses_unknown_opcodes(void **state)
{
    (void)state;
    static const uint8_t unknown[] = {0x00, 0x06, 0x0f, 0x16, 0x17, 0x1b, 0x22,
                                      0x2f, 0x32, 0x3f, 0x42, 0x80, 0xff};
    for (size_t i = 0; i < sizeof unknown; i++) {
        struct prog p;
        p_init(&p);
        p_op(&p, CONTRACTS_OP_PUSH_TRUE);
        p_op(&p, unknown[i]);
        assert_refused(&p, EHR_EINVAL, "offset 2: unknown opcode");
        assert_null(contracts_vm_op_name(unknown[i]));
        assert_int_equal(contracts_vm_gas_cost(unknown[i], 0), 0);
    }
}

static void test_verify_refuses_operands_past_the_end(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    p_int(&p, 7);
    p.n -= 1; /* 7 of the 8 bytes */
    assert_refused(&p, EHR_EINVAL, "offset 1: operand past the end");
    p_init(&p);
    p_bytes(&p, "abc", 3);
    p.n -= 1;
    assert_refused(&p, EHR_EINVAL, "offset 1: operand past the end");
    p_init(&p);
    p_op(&p, CONTRACTS_OP_PUSH_BYTES); /* no length byte */
    assert_refused(&p, EHR_EINVAL, "offset 1: operand past the end");
    p_init(&p);
    p_op(&p, CONTRACTS_OP_LOAD);
    assert_refused(&p, EHR_EINVAL, "offset 1: operand past the end");
    p_init(&p);
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    p_jump(&p, CONTRACTS_OP_JMPF, 0);
    p.n -= 1;
    assert_refused(&p, EHR_EINVAL, "offset 2: operand past the end");
    int64_t values[2] = {1, 2};
    p_init(&p);
    p_int(&p, 1);
    p_in_int(&p, 2, values);
    p.n -= 1;
    assert_refused(&p, EHR_EINVAL, "offset 10: operand past the end");
    const char *strings[2] = {"ab", "cd"};
    p_init(&p);
    p_bytes(&p, "ab", 2);
    p_in_bytes(&p, 2, strings);
    p.n -= 1; /* the last element's last byte */
    assert_refused(&p, EHR_EINVAL, "offset 5: operand past the end");
    p.n -= 2; /* the last element's length byte too: the element is missing */
    assert_refused(&p, EHR_EINVAL, "offset 5: operand past the end");
}

static void test_verify_refuses_bad_operand_values(void **state)
{
    (void)state;
    uint8_t big[CONTRACTS_VM_BYTES_MAX + 1];
    memset(big, 0xab, sizeof big);
    struct prog p;
    p_init(&p); /* a byte string of 32 bytes is the most */
    p_bytes(&p, big, CONTRACTS_VM_BYTES_MAX);
    p_bytes(&p, big, CONTRACTS_VM_BYTES_MAX);
    p_op(&p, CONTRACTS_OP_EQ);
    p_permit_if(&p);
    assert_decides(&p, true);
    p_init(&p);
    p_bytes(&p, big, CONTRACTS_VM_BYTES_MAX + 1);
    assert_refused(&p, EHR_EINVAL, "offset 1: byte string longer than 32 bytes");

    p_init(&p);
    p_load(&p, 0);
    assert_refused(&p, EHR_EINVAL, "offset 1: unknown attribute id");
    p_init(&p);
    p_load(&p, CONTRACTS_ATTR_LAST_ + 1);
    assert_refused(&p, EHR_EINVAL, "offset 1: unknown attribute id");

    int64_t values[CONTRACTS_VM_SET_COUNT_MAX + 1] = {0};
    p_init(&p);
    p_int(&p, 5);
    p_in_int(&p, 0, values);
    assert_refused(&p, EHR_EINVAL, "offset 10: set count outside 1..64");
    for (int i = 0; i <= CONTRACTS_VM_SET_COUNT_MAX; i++)
        values[i] = i;
    p_init(&p);
    p_int(&p, CONTRACTS_VM_SET_COUNT_MAX - 1); /* the last of 64 */
    p_in_int(&p, CONTRACTS_VM_SET_COUNT_MAX, values);
    p_permit_if(&p);
    assert_decides(&p, true);
    p_init(&p);
    p_int(&p, 5);
    p_in_int(&p, CONTRACTS_VM_SET_COUNT_MAX + 1, values);
    assert_refused(&p, EHR_EINVAL, "offset 10: set count outside 1..64");

    char long_string[CONTRACTS_VM_BYTES_MAX + 2];
    memset(long_string, 'x', sizeof long_string - 1);
    long_string[CONTRACTS_VM_BYTES_MAX + 1] = '\0';
    const char *strings[2] = {"a", long_string};
    p_init(&p);
    p_bytes(&p, "a", 1);
    p_in_bytes(&p, 2, strings);
    assert_refused(&p, EHR_EINVAL, "offset 4: set element longer than 32 bytes");
    long_string[CONTRACTS_VM_BYTES_MAX] = '\0'; /* 32 bytes: accepted, and found */
    p_init(&p);
    p_bytes(&p, long_string, CONTRACTS_VM_BYTES_MAX);
    p_in_bytes(&p, 2, strings);
    p_permit_if(&p);
    assert_decides(&p, true);
}

static void test_verify_refuses_bad_jump_targets(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p); /* exactly at the end: fine */
    p_jump(&p, CONTRACTS_OP_JMP, 0);
    assert_decides(&p, false);
    p_init(&p); /* a conditional jump exactly to the end */
    p_op(&p, CONTRACTS_OP_PUSH_FALSE);
    p_permit_if(&p);
    assert_decides(&p, false);

    p_init(&p); /* one past the end */
    p_jump(&p, CONTRACTS_OP_JMP, 1);
    assert_refused(&p, EHR_EINVAL, "offset 1: jump target 5 past the end of the program (4 bytes)");
    p_init(&p); /* the largest offset: never backwards, only far past the end */
    p_jump(&p, CONTRACTS_OP_JMP, 0xffff);
    assert_refused(&p, EHR_EINVAL, "offset 1: jump target 65539 past the end");

    p_init(&p); /* into the middle of push_int's operand */
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    p_jump(&p, CONTRACTS_OP_JMPF, 2);
    p_int(&p, 1);
    assert_refused(&p, EHR_EINVAL, "offset 2: jump target 7 is inside the instruction at offset 5");
}

static void test_verify_refuses_unreachable_code(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    p_op(&p, CONTRACTS_OP_PERMIT);
    p_op(&p, CONTRACTS_OP_DENY);
    assert_refused(&p, EHR_EINVAL, "offset 2: unreachable instruction");
    p_init(&p);
    p_jump(&p, CONTRACTS_OP_JMP, 1);
    p_op(&p, CONTRACTS_OP_PERMIT); /* skipped by the jump: nothing reaches it */
    p_op(&p, CONTRACTS_OP_DENY);
    assert_refused(&p, EHR_EINVAL, "offset 4: unreachable instruction");
}

static void test_verify_refuses_stacks_that_differ_where_paths_meet(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p); /* falls through with one value, jumps in with none */
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    p_jump(&p, CONTRACTS_OP_JMPF, 1);
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    p_op(&p, CONTRACTS_OP_PERMIT);
    assert_refused(&p, EHR_EINVAL,
                   "offset 6: paths meet with different stacks: depth 1 falling through, 0 "
                   "from the jump at offset 2");

    p_init(&p); /* the same depth, other types: an int jumps, a bool falls through */
    const int64_t five = 5;
    p_int(&p, 5);                      /* 1 */
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);  /* 10 */
    p_jump(&p, CONTRACTS_OP_JMPF, 10); /* 11: to 24 with [int] */
    p_in_int(&p, 1, &five);            /* 14: [bool] */
    p_op(&p, CONTRACTS_OP_PERMIT);     /* 24 */
    assert_refused(&p, EHR_EINVAL,
                   "offset 24: paths meet with different stacks: depth 1 falling through, 1 "
                   "from the jump at offset 11");
    ehr_diag diag;
    assert_int_equal(contracts_vm_verify(p.b, p.n, &diag), EHR_EINVAL);
    assert_non_null(strstr(diag.msg, "(of other types)"));

    p_init(&p);
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);  /* 1 */
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);  /* 2 */
    p_jump(&p, CONTRACTS_OP_JMPF, 5);  /* 3: to 11 with 1 value */
    p_op(&p, CONTRACTS_OP_PUSH_FALSE); /* 6 */
    p_op(&p, CONTRACTS_OP_PUSH_FALSE); /* 7 */
    p_jump(&p, CONTRACTS_OP_JMPF, 0);  /* 8: to 11 with 2 values */
    p_op(&p, CONTRACTS_OP_PERMIT);     /* 11 */
    assert_refused(&p, EHR_EINVAL,
                   "offset 8: jump to 11 with stack depth 2; the jump at offset 3 brings depth "
                   "1 there");

    p_init(&p); /* at the end: one value from the jump, two falling through */
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    p_jump(&p, CONTRACTS_OP_JMPF, 1);
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    assert_refused(&p, EHR_EINVAL,
                   "offset 7: paths meet at the end with different stacks: depth 2 falling "
                   "through, 1 from the jump at offset 3");
}

static void test_verify_stack_depth_at_its_edges(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    p_op(&p, CONTRACTS_OP_EQ);
    assert_refused(&p, EHR_EINVAL, "offset 1: stack underflow: eq takes 2, the stack holds 0");
    p_init(&p);
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    p_op(&p, CONTRACTS_OP_AND);
    assert_refused(&p, EHR_EINVAL, "offset 2: stack underflow: and takes 2, the stack holds 1");
    p_init(&p);
    p_op(&p, CONTRACTS_OP_NOT);
    assert_refused(&p, EHR_EINVAL, "offset 1: stack underflow: not takes 1");
    p_init(&p);
    p_jump(&p, CONTRACTS_OP_JMPF, 0);
    assert_refused(&p, EHR_EINVAL, "offset 1: stack underflow: jmpf takes 1");
    int64_t one = 1;
    p_init(&p);
    p_in_int(&p, 1, &one);
    assert_refused(&p, EHR_EINVAL, "offset 1: stack underflow: in_int takes 1");

    p_init(&p); /* 32 values: the most; then reduce them with and */
    for (int i = 0; i < CONTRACTS_VM_STACK_MAX; i++)
        p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    for (int i = 1; i < CONTRACTS_VM_STACK_MAX; i++)
        p_op(&p, CONTRACTS_OP_AND);
    p_permit_if(&p);
    assert_decides(&p, true);
    p_init(&p);
    for (int i = 0; i <= CONTRACTS_VM_STACK_MAX; i++)
        p_load(&p, CONTRACTS_ATTR_RECORD_TYPE);
    assert_refused(&p, EHR_EINVAL, "offset 65: stack overflow: load would make 33 values, over 32");
    /* eval of the same unverified bytes stops at the same place */
    struct contracts_vm_result res = eval(&p);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);
    assert_int_equal(res.offset, 65);
    assert_int_equal(res.gas_used, 32);
}

static void test_verify_checks_operand_types(void **state)
{
    (void)state;
    static const struct {
        uint8_t push_a, push_b; /* 0x01 int, 0x02 bytes, 0x03 bool */
        uint8_t op;
        const char *why;
    } cases[] = {
        {0x01, 0x02, CONTRACTS_OP_EQ, "eq compares a value of type int with one of type bytes"},
        {0x02, 0x01, CONTRACTS_OP_NE, "ne compares a value of type bytes with one of type int"},
        {0x03, 0x01, CONTRACTS_OP_EQ, "eq compares a value of type bool with one of type int"},
        {0x02, 0x02, CONTRACTS_OP_LT, "lt needs int operands, found bytes"},
        {0x03, 0x03, CONTRACTS_OP_GE, "ge needs int operands, found bool"},
        {0x01, 0x03, CONTRACTS_OP_GT, "gt needs int operands, found bool"},
        {0x01, 0x01, CONTRACTS_OP_AND, "and needs bool operands, found int"},
        {0x02, 0x02, CONTRACTS_OP_OR, "or needs bool operands, found bytes"},
        {0x03, 0x02, CONTRACTS_OP_AND, "and needs bool operands, found bytes"},
        {0, 0x01, CONTRACTS_OP_NOT, "not needs bool operands, found int"},
        {0, 0x02, CONTRACTS_OP_IN_INT, "in_int needs int operands, found bytes"},
        {0, 0x03, CONTRACTS_OP_IN_INT, "in_int needs int operands, found bool"},
        {0, 0x01, CONTRACTS_OP_IN_BYTES, "in_bytes needs bytes operands, found int"},
        {0, 0x01, CONTRACTS_OP_JMPF, "jmpf needs bool operands, found int"},
        {0, 0x02, CONTRACTS_OP_JMPF, "jmpf needs bool operands, found bytes"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        struct prog p;
        p_init(&p);
        uint8_t pushes[2] = {cases[i].push_a, cases[i].push_b};
        for (int k = 0; k < 2; k++) {
            if (pushes[k] == 0x01)
                p_int(&p, 1);
            else if (pushes[k] == 0x02)
                p_bytes(&p, "k", 1);
            else if (pushes[k] == 0x03)
                p_op(&p, CONTRACTS_OP_PUSH_TRUE);
        }
        size_t at = p.n;
        if (cases[i].op == CONTRACTS_OP_IN_INT) {
            int64_t one = 1;
            p_in_int(&p, 1, &one);
        } else if (cases[i].op == CONTRACTS_OP_IN_BYTES) {
            const char *k = "k";
            p_in_bytes(&p, 1, &k);
        } else if (cases[i].op == CONTRACTS_OP_JMPF) {
            p_jump(&p, CONTRACTS_OP_JMPF, 0);
        } else {
            p_op(&p, cases[i].op);
        }
        char prefix[EHR_DIAG_BYTES_MAX];
        snprintf(prefix, sizeof prefix, "offset %zu: %s", at, cases[i].why);
        assert_refused(&p, EHR_EINVAL, prefix);
        /* unverified, eval meets the same fault at the same offset */
        struct contracts_vm_result res = eval(&p);
        assert_int_equal(res.decision, CONTRACTS_VM_DENY);
        assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);
        assert_int_equal(res.offset, at);
    }
}

/*
 * A reason is one line that fits ehr_diag whole: the longest kind (paths
 * that meet with stacks of other types), with four-digit offsets, is under
 * half of EHR_DIAG_BYTES_MAX. DIAG may be NULL, and success writes nothing.
 */
static void test_verify_reason_fits_and_diag_may_be_null(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    p_op(&p, 0xff);
    assert_int_equal(contracts_vm_verify(p.b, p.n, NULL), EHR_EINVAL);

    p_init(&p);
    for (int i = 0; i < 198; i++) { /* 1..990: rules that leave the stack empty */
        p_op(&p, CONTRACTS_OP_PUSH_TRUE);
        p_permit_if(&p);
    }
    const int64_t five = 5;
    p_int(&p, 5);                      /* 991 */
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);  /* 1000 */
    p_jump(&p, CONTRACTS_OP_JMPF, 10); /* 1001: to 1014 with [int] */
    p_in_int(&p, 1, &five);            /* 1004: [bool] */
    p_op(&p, CONTRACTS_OP_PERMIT);     /* 1014 */
    ehr_diag diag;
    assert_int_equal(contracts_vm_verify(p.b, p.n, &diag), EHR_EINVAL);
    assert_string_equal(diag.msg, "offset 1014: paths meet with different stacks: depth 1 falling "
                                  "through, 1 from the jump at offset 1001 (of other types)");
    assert_true(strlen(diag.msg) < EHR_DIAG_BYTES_MAX / 2);

    memset(diag.msg, 'x', sizeof diag.msg);
    p_init(&p);
    assert_int_equal(contracts_vm_verify(p.b, p.n, &diag), 0);
    for (size_t i = 0; i < sizeof diag.msg; i++)
        assert_int_equal(diag.msg[i], 'x'); /* not written on success */
}

/* ---- the interpreter: every instruction, both types ---- */

/* a OP b, both integers, as a permit (true) or the end (false). */
static void assert_int_op(uint8_t op, int64_t a, int64_t b, bool expected)
{
    struct prog p;
    p_init(&p);
    p_int(&p, a);
    p_int(&p, b);
    p_op(&p, op);
    p_permit_if(&p);
    assert_decides(&p, expected);
}

static void test_eval_integer_comparisons(void **state)
{
    (void)state;
    const int64_t lo = INT64_MIN, hi = INT64_MAX;
    assert_int_op(CONTRACTS_OP_EQ, 5, 5, true);
    assert_int_op(CONTRACTS_OP_EQ, 5, 6, false);
    assert_int_op(CONTRACTS_OP_EQ, lo, lo, true);
    assert_int_op(CONTRACTS_OP_NE, 5, 6, true);
    assert_int_op(CONTRACTS_OP_NE, hi, hi, false);
    assert_int_op(CONTRACTS_OP_LT, 1, 2, true);
    assert_int_op(CONTRACTS_OP_LT, 2, 2, false);
    assert_int_op(CONTRACTS_OP_LT, -1, 0, true);
    assert_int_op(CONTRACTS_OP_LT, lo, hi, true);
    assert_int_op(CONTRACTS_OP_LE, 2, 2, true);
    assert_int_op(CONTRACTS_OP_LE, 3, 2, false);
    assert_int_op(CONTRACTS_OP_GT, 3, 2, true);
    assert_int_op(CONTRACTS_OP_GT, 2, 2, false);
    assert_int_op(CONTRACTS_OP_GT, hi, lo, true);
    assert_int_op(CONTRACTS_OP_GE, 2, 2, true);
    assert_int_op(CONTRACTS_OP_GE, 1, 2, false);
    assert_int_op(CONTRACTS_OP_GE, -5, -6, true);
}

static void assert_bytes_op(uint8_t op, const char *a, const char *b, bool expected)
{
    struct prog p;
    p_init(&p);
    p_bytes(&p, a, strlen(a));
    p_bytes(&p, b, strlen(b));
    p_op(&p, op);
    p_permit_if(&p);
    assert_decides(&p, expected);
}

static void test_eval_byte_string_equality(void **state)
{
    (void)state;
    assert_bytes_op(CONTRACTS_OP_EQ, "abc", "abc", true);
    assert_bytes_op(CONTRACTS_OP_EQ, "abc", "abd", false);
    assert_bytes_op(CONTRACTS_OP_EQ, "abc", "ab", false); /* a prefix is not equal */
    assert_bytes_op(CONTRACTS_OP_EQ, "", "", true);
    assert_bytes_op(CONTRACTS_OP_EQ, "", "a", false);
    assert_bytes_op(CONTRACTS_OP_NE, "abc", "abd", true);
    assert_bytes_op(CONTRACTS_OP_NE, "abc", "abc", false);
    assert_bytes_op(CONTRACTS_OP_NE, "a", "", true);
}

static void assert_bool_op(uint8_t op, bool a, bool b, bool expected)
{
    struct prog p;
    p_init(&p);
    p_op(&p, a ? CONTRACTS_OP_PUSH_TRUE : CONTRACTS_OP_PUSH_FALSE);
    p_op(&p, b ? CONTRACTS_OP_PUSH_TRUE : CONTRACTS_OP_PUSH_FALSE);
    p_op(&p, op);
    p_permit_if(&p);
    assert_decides(&p, expected);
}

static void test_eval_boolean_logic(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++) {
        for (int b = 0; b < 2; b++) {
            assert_bool_op(CONTRACTS_OP_AND, a, b, a && b);
            assert_bool_op(CONTRACTS_OP_OR, a, b, a || b);
            assert_bool_op(CONTRACTS_OP_EQ, a, b, a == b);
            assert_bool_op(CONTRACTS_OP_NE, a, b, a != b);
        }
        struct prog p;
        p_init(&p);
        p_op(&p, a ? CONTRACTS_OP_PUSH_TRUE : CONTRACTS_OP_PUSH_FALSE);
        p_op(&p, CONTRACTS_OP_NOT);
        p_permit_if(&p);
        assert_decides(&p, !a);
        p_init(&p); /* not not: back to the value, still a 0/1 bool (V4) */
        p_op(&p, a ? CONTRACTS_OP_PUSH_TRUE : CONTRACTS_OP_PUSH_FALSE);
        p_op(&p, CONTRACTS_OP_NOT);
        p_op(&p, CONTRACTS_OP_NOT);
        p_op(&p, CONTRACTS_OP_PUSH_TRUE);
        p_op(&p, CONTRACTS_OP_EQ);
        p_permit_if(&p);
        assert_decides(&p, a);
    }
}

static void test_eval_set_membership(void **state)
{
    (void)state;
    const int64_t values[3] = {INT64_MIN, 7, INT64_MAX};
    const int64_t probes[5] = {INT64_MIN, 7, INT64_MAX, 8, 0};
    for (size_t i = 0; i < 5; i++) {
        struct prog p;
        p_init(&p);
        p_int(&p, probes[i]);
        p_in_int(&p, 3, values);
        p_permit_if(&p);
        assert_decides(&p, i < 3);
    }
    const char *strings[3] = {"", "ab", "abc"};
    const char *byte_probes[5] = {"", "ab", "abc", "a", "abcd"};
    for (size_t i = 0; i < 5; i++) {
        struct prog p;
        p_init(&p);
        p_bytes(&p, byte_probes[i], strlen(byte_probes[i]));
        p_in_bytes(&p, 3, strings);
        p_permit_if(&p);
        assert_decides(&p, i < 3);
    }
}

/* Each attribute loads its field of the sample request, with its type. */
static void test_eval_loads_every_attribute(void **state)
{
    (void)state;
    struct contracts_vm_request r = sample_request();
    for (uint8_t attr = 1; attr <= CONTRACTS_ATTR_LAST_; attr++) {
        struct prog p;
        p_init(&p);
        p_load(&p, attr);
        int type = contracts_vm_attr_type(attr);
        switch (attr) {
        case CONTRACTS_ATTR_REQUESTER_KEY:
            p_bytes(&p, r.requester_key, CONTRACTS_VM_KEY_BYTES);
            break;
        case CONTRACTS_ATTR_REQUESTER_INSTITUTION:
            p_bytes(&p, r.requester_institution, CONTRACTS_VM_KEY_BYTES);
            break;
        case CONTRACTS_ATTR_RECORD_CUSTODIAN:
            p_bytes(&p, r.record_custodian, CONTRACTS_VM_KEY_BYTES);
            break;
        case CONTRACTS_ATTR_REQUESTER_PRACTITIONER:
            p_op(&p, CONTRACTS_OP_PUSH_TRUE);
            break;
        case CONTRACTS_ATTR_REQUESTER_ROLE:
            p_int(&p, r.requester_role);
            break;
        case CONTRACTS_ATTR_RECORD_TYPE:
            p_int(&p, r.record_type);
            break;
        case CONTRACTS_ATTR_RECORD_AGE_DAYS:
            p_int(&p, (int64_t)r.record_age_days);
            break;
        case CONTRACTS_ATTR_CONSENT_PURPOSE:
            p_int(&p, r.consent_purpose);
            break;
        case CONTRACTS_ATTR_REQUEST_PURPOSE:
            p_int(&p, r.request_purpose);
            break;
        case CONTRACTS_ATTR_CONSENT_FROM:
            p_int(&p, (int64_t)r.consent_from_ms);
            break;
        case CONTRACTS_ATTR_CONSENT_UNTIL:
            p_int(&p, (int64_t)r.consent_until_ms);
            break;
        case CONTRACTS_ATTR_BLOCK_TIME:
            p_int(&p, (int64_t)r.block_time_ms);
            break;
        default:
            fail_msg("attribute %u has no case", attr);
        }
        p_op(&p, CONTRACTS_OP_EQ);
        p_permit_if(&p);
        assert_non_null(contracts_vm_attr_name(attr));
        assert_true(type == CONTRACTS_VM_INT || type == CONTRACTS_VM_BOOL ||
                    type == CONTRACTS_VM_BYTES);
        assert_decides(&p, true);
    }
    assert_null(contracts_vm_attr_name(0));
    assert_null(contracts_vm_attr_name(CONTRACTS_ATTR_LAST_ + 1));
    assert_int_equal(contracts_vm_attr_type(0), 0);
}

static void test_eval_practitioner_false_and_keys_differ(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    p_load(&p, CONTRACTS_ATTR_REQUESTER_PRACTITIONER);
    p_op(&p, CONTRACTS_OP_NOT);
    p_permit_if(&p);
    assert_decides(&p, false); /* the sample's practitioner is true */
    p_init(&p);
    p_load(&p, CONTRACTS_ATTR_REQUESTER_INSTITUTION);
    p_load(&p, CONTRACTS_ATTR_RECORD_CUSTODIAN);
    p_op(&p, CONTRACTS_OP_NE);
    p_permit_if(&p);
    assert_decides(&p, true);
}

static void test_eval_large_u64_attributes_load_as_int64_max(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    p_load(&p, CONTRACTS_ATTR_BLOCK_TIME);
    p_int(&p, INT64_MAX);
    p_op(&p, CONTRACTS_OP_EQ);
    p_permit_if(&p);
    struct contracts_vm_request r = sample_request();
    struct contracts_vm_result res;
    r.block_time_ms = UINT64_MAX;
    assert_int_equal(contracts_vm_eval(p.b, p.n, &r, 100, &res), 0);
    assert_int_equal(res.decision, CONTRACTS_VM_PERMIT);
    r.block_time_ms = (uint64_t)INT64_MAX + 1;
    assert_int_equal(contracts_vm_eval(p.b, p.n, &r, 100, &res), 0);
    assert_int_equal(res.decision, CONTRACTS_VM_PERMIT);
    r.block_time_ms = (uint64_t)INT64_MAX - 1;
    assert_int_equal(contracts_vm_eval(p.b, p.n, &r, 100, &res), 0);
    assert_int_equal(res.decision, CONTRACTS_VM_DENY);
}

static void test_eval_jumps_and_decisions(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p); /* jmp over a permit to a deny */
    p_jump(&p, CONTRACTS_OP_JMP, 1);
    p_op(&p, CONTRACTS_OP_PERMIT);
    p_op(&p, CONTRACTS_OP_DENY);
    assert_int_equal(contracts_vm_verify(p.b, p.n, NULL), EHR_EINVAL); /* permit unreachable */
    struct contracts_vm_result res = eval(&p);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_DENY);
    assert_int_equal(res.offset, 5);
    assert_int_equal(res.gas_used, 2);

    p_init(&p); /* jmpf taken on false, falls through on true */
    p_op(&p, CONTRACTS_OP_PUSH_FALSE);
    p_jump(&p, CONTRACTS_OP_JMPF, 1);
    p_op(&p, CONTRACTS_OP_PERMIT);
    p_op(&p, CONTRACTS_OP_DENY);
    res = eval(&p);
    assert_int_equal(res.decision, CONTRACTS_VM_DENY);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_DENY);
    assert_int_equal(res.offset, 6);
    p.b[1] = CONTRACTS_OP_PUSH_TRUE;
    res = eval(&p);
    assert_int_equal(res.decision, CONTRACTS_VM_PERMIT);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_PERMIT);
    assert_int_equal(res.offset, 5);
    assert_int_equal(res.gas_used, 3);

    p_init(&p); /* a jump to the end: the end, no rule matched */
    p_jump(&p, CONTRACTS_OP_JMP, 1);
    p_op(&p, CONTRACTS_OP_PERMIT);
    res = eval(&p);
    assert_int_equal(res.decision, CONTRACTS_VM_DENY);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_END);
    assert_int_equal(res.offset, p.n);
}

static void test_eval_is_safe_on_unverified_bytes(void **state)
{
    (void)state;
    struct contracts_vm_request r = sample_request();
    struct contracts_vm_result res;
    /* no version byte, another version, an empty program */
    static const uint8_t other[] = {2, CONTRACTS_OP_PERMIT};
    assert_int_equal(contracts_vm_eval(other, sizeof other, &r, 10, &res), 0);
    assert_int_equal(res.decision, CONTRACTS_VM_DENY);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);
    assert_int_equal(res.offset, 0);
    assert_int_equal(contracts_vm_eval(NULL, 0, &r, 10, &res), 0);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);

    struct prog p;
    p_init(&p); /* an unknown opcode */
    p_op(&p, 0xee);
    res = eval(&p);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);
    assert_int_equal(res.offset, 1);
    p_init(&p); /* a truncated operand at the very end */
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    p_op(&p, CONTRACTS_OP_PUSH_INT);
    p_byte(&p, 1);
    res = eval(&p);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);
    assert_int_equal(res.offset, 2);
    assert_int_equal(res.gas_used, 1);
    p_init(&p); /* a jump past the end */
    p_jump(&p, CONTRACTS_OP_JMP, 9);
    res = eval(&p);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);
    assert_int_equal(res.offset, 1);
    p_init(&p); /* jmpf on an empty stack */
    p_jump(&p, CONTRACTS_OP_JMPF, 0);
    res = eval(&p);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);
    p_init(&p); /* into the middle of an instruction: decoded as whatever is there */
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    p_jump(&p, CONTRACTS_OP_JMPF, 2);
    p_op(&p, CONTRACTS_OP_PUSH_BYTES);
    p_byte(&p, 1);
    p_byte(&p, CONTRACTS_OP_PERMIT); /* the string's byte, and the jump target */
    assert_int_equal(contracts_vm_verify(p.b, p.n, NULL), EHR_EINVAL);
    res = eval(&p); /* true: falls through, pushes the string, ends */
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_END);
    p.b[1] = CONTRACTS_OP_PUSH_FALSE; /* false: lands on the byte 0x40, permit */
    res = eval(&p);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_PERMIT);
    /* a decision before a fault: what is never reached is never judged */
    p_init(&p);
    p_op(&p, CONTRACTS_OP_DENY);
    p_op(&p, 0xff);
    res = eval(&p);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_DENY);
}

/* Every byte string of 1 to 3 bytes after the version, run: no fault, V2, V3. */
static void test_eval_every_short_program(void **state)
{
    (void)state;
    struct contracts_vm_request r = sample_request();
    uint8_t code[4] = {CONTRACTS_VM_VERSION};
    size_t verified = 0;
    for (uint32_t x = 0; x < (1u << 24); x += 7) { /* a stride through all 3-byte tails */
        code[1] = (uint8_t)x;
        code[2] = (uint8_t)(x >> 8);
        code[3] = (uint8_t)(x >> 16);
        for (size_t len = 2; len <= 4; len++) {
            struct contracts_vm_result res;
            assert_int_equal(contracts_vm_eval(code, len, &r, 100, &res), 0);
            assert_true(res.gas_used <= len - 1);
            assert_true(res.offset <= len);
            bool ok = contracts_vm_verify(code, len, NULL) == 0;
            verified += ok;
            if (ok)
                assert_int_not_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED); /* V1 */
            if (res.decision == CONTRACTS_VM_PERMIT)
                assert_int_equal(res.reason, CONTRACTS_VM_REASON_PERMIT);
        }
    }
    assert_true(verified > 0);
}

/* ---- gas ---- */

static void test_gas_table(void **state)
{
    (void)state;
    for (int op = 0; op < 256; op++) {
        const char *name = contracts_vm_op_name((uint8_t)op);
        uint32_t cost = contracts_vm_gas_cost((uint8_t)op, 3);
        if (name == NULL) {
            assert_int_equal(cost, 0);
            continue;
        }
        bool set = op == CONTRACTS_OP_IN_INT || op == CONTRACTS_OP_IN_BYTES;
        assert_int_equal(cost, set ? 4 : 1);
    }
    assert_int_equal(contracts_vm_gas_cost(CONTRACTS_OP_IN_INT, CONTRACTS_VM_SET_COUNT_MAX),
                     1 + CONTRACTS_VM_SET_COUNT_MAX);
}

static void test_gas_exactly_enough_and_one_less(void **state)
{
    (void)state;
    const int64_t values[3] = {1, 2, 3};
    struct prog p;
    p_init(&p);
    p_int(&p, 3);            /* 1 */
    p_in_int(&p, 3, values); /* 1 + 3 */
    p_permit_if(&p);         /* jmpf 1, permit 1 */
    const uint64_t cost = 7;
    struct contracts_vm_result res = eval_gas(&p, cost);
    assert_int_equal(res.decision, CONTRACTS_VM_PERMIT);
    assert_int_equal(res.gas_used, cost);
    res = eval_gas(&p, cost - 1); /* the permit is not covered */
    assert_int_equal(res.decision, CONTRACTS_VM_DENY);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_GAS);
    assert_int_equal(res.gas_used, cost - 1);
    assert_int_equal(res.offset, p.n - 1);
    res = eval_gas(&p, 4); /* the set's 4 are not covered after push_int's 1 */
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_GAS);
    assert_int_equal(res.gas_used, 4);
    assert_int_equal(res.offset, 10);
    res = eval_gas(&p, 5);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_GAS);
    assert_int_equal(res.offset, 36); /* the jmpf */
    res = eval_gas(&p, 0);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_GAS);
    assert_int_equal(res.gas_used, 0);
    assert_int_equal(res.offset, 1);

    p_init(&p); /* running off the end costs nothing: gas 0 is enough for no rule */
    res = eval_gas(&p, 0);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_END);
    assert_int_equal(res.gas_used, 0);
}

static void test_gas_limit_at_its_edge(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    p_op(&p, CONTRACTS_OP_PERMIT);
    struct contracts_vm_request r = sample_request();
    struct contracts_vm_result res;
    assert_int_equal(contracts_vm_eval(p.b, p.n, &r, CONTRACTS_VM_GAS_MAX, &res), 0);
    assert_int_equal(res.decision, CONTRACTS_VM_PERMIT);
    assert_int_equal(res.gas_used, 1);
    assert_int_equal(contracts_vm_eval(p.b, p.n, &r, CONTRACTS_VM_GAS_MAX + 1, &res), EHR_EINVAL);
    assert_int_equal(res.decision, CONTRACTS_VM_DENY);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_MALFORMED);
    assert_int_equal(res.gas_used, 0);
}

/* V3: a verified program of the largest size never needs more than its length. */
static void test_gas_default_covers_the_largest_program(void **state)
{
    (void)state;
    struct prog p;
    p_init(&p);
    p_op(&p, CONTRACTS_OP_PUSH_TRUE);
    while (p.n < CONTRACTS_POLICY_BYTES_MAX - 1)
        p_op(&p, CONTRACTS_OP_NOT);
    p_op(&p, CONTRACTS_OP_DENY);
    assert_int_equal(p.n, CONTRACTS_POLICY_BYTES_MAX);
    assert_int_equal(contracts_vm_verify(p.b, p.n, NULL), 0);
    struct contracts_vm_result res = eval_gas(&p, CONTRACTS_VM_GAS_DEFAULT);
    assert_int_equal(res.reason, CONTRACTS_VM_REASON_DENY);
    assert_int_equal(res.gas_used, CONTRACTS_POLICY_BYTES_MAX - 1);
}

/* ---- determinism (V6) ---- */

static void test_same_input_same_result(void **state)
{
    (void)state;
    const char *strings[2] = {"x", "yz"};
    struct prog p;
    p_init(&p);
    p_load(&p, CONTRACTS_ATTR_RECORD_AGE_DAYS);
    p_int(&p, 30);
    p_op(&p, CONTRACTS_OP_LT);
    p_bytes(&p, "yz", 2);
    p_in_bytes(&p, 2, strings);
    p_op(&p, CONTRACTS_OP_AND);
    p_permit_if(&p);
    struct contracts_vm_result a, b;
    struct contracts_vm_request r = sample_request();
    for (uint64_t gas = 0; gas < 12; gas++) {
        memset(&a, 0xa5, sizeof a);
        memset(&b, 0x5a, sizeof b);
        assert_int_equal(contracts_vm_eval(p.b, p.n, &r, gas, &a), 0);
        assert_int_equal(contracts_vm_eval(p.b, p.n, &r, gas, &b), 0);
        assert_int_equal(a.decision, b.decision);
        assert_int_equal(a.reason, b.reason);
        assert_int_equal(a.gas_used, b.gas_used);
        assert_int_equal(a.offset, b.offset);
    }
    assert_int_equal(a.decision, CONTRACTS_VM_PERMIT);
    ehr_diag diag_a, diag_b;
    p.b[p.n - 1] = 0x77;
    assert_int_equal(contracts_vm_verify(p.b, p.n, &diag_a), EHR_EINVAL);
    assert_int_equal(contracts_vm_verify(p.b, p.n, &diag_b), EHR_EINVAL);
    assert_string_equal(diag_a.msg, diag_b.msg);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(contracts_vm_decision_name(CONTRACTS_VM_PERMIT), "permit");
    assert_string_equal(contracts_vm_decision_name(CONTRACTS_VM_DENY), "deny");
    assert_string_equal(contracts_vm_reason_name(CONTRACTS_VM_REASON_END), "end");
    assert_string_equal(contracts_vm_reason_name(CONTRACTS_VM_REASON_GAS), "gas");
    assert_string_equal(contracts_vm_reason_name(CONTRACTS_VM_REASON_MALFORMED), "malformed");
    assert_string_equal(contracts_vm_reason_name((enum contracts_vm_reason)99), "?");
    assert_string_equal(contracts_vm_op_name(CONTRACTS_OP_JMPF), "jmpf");
    assert_string_equal(contracts_vm_attr_name(CONTRACTS_ATTR_BLOCK_TIME), "block.time");
    for (int reason = CONTRACTS_VM_REASON_PERMIT; reason <= CONTRACTS_VM_REASON_MALFORMED; reason++)
        assert_string_not_equal(contracts_vm_reason_text((enum contracts_vm_reason)reason), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_refuses_empty_and_wrong_version),
        cmocka_unit_test(test_verify_size_limit_at_its_edge),
        cmocka_unit_test(test_verify_refuses_unknown_opcodes),
        cmocka_unit_test(test_verify_refuses_operands_past_the_end),
        cmocka_unit_test(test_verify_refuses_bad_operand_values),
        cmocka_unit_test(test_verify_refuses_bad_jump_targets),
        cmocka_unit_test(test_verify_refuses_unreachable_code),
        cmocka_unit_test(test_verify_refuses_stacks_that_differ_where_paths_meet),
        cmocka_unit_test(test_verify_stack_depth_at_its_edges),
        cmocka_unit_test(test_verify_checks_operand_types),
        cmocka_unit_test(test_verify_reason_fits_and_diag_may_be_null),
        cmocka_unit_test(test_eval_integer_comparisons),
        cmocka_unit_test(test_eval_byte_string_equality),
        cmocka_unit_test(test_eval_boolean_logic),
        cmocka_unit_test(test_eval_set_membership),
        cmocka_unit_test(test_eval_loads_every_attribute),
        cmocka_unit_test(test_eval_practitioner_false_and_keys_differ),
        cmocka_unit_test(test_eval_large_u64_attributes_load_as_int64_max),
        cmocka_unit_test(test_eval_jumps_and_decisions),
        cmocka_unit_test(test_eval_is_safe_on_unverified_bytes),
        cmocka_unit_test(test_eval_every_short_program),
        cmocka_unit_test(test_gas_table),
        cmocka_unit_test(test_gas_exactly_enough_and_one_less),
        cmocka_unit_test(test_gas_limit_at_its_edge),
        cmocka_unit_test(test_gas_default_covers_the_largest_program),
        cmocka_unit_test(test_same_input_same_result),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
