/*
 * vm.c - the consent VM: the verifier, the gas table and the interpreter
 * (see vm.h for the contract, contracts/README.md for the bytecode).
 *
 * Not here: the policy language (policy.c), deciding who may request at all
 * (the transaction rules), and any I/O: this file reads its arguments only.
 *
 * Design notes
 *
 * Invariants (tests/contracts/test_contracts_vm.c names the one it guards):
 *   V1. A program contracts_vm_verify accepts never ends MALFORMED, for any
 *       request and gas: every check the interpreter makes at run time is
 *       one the verifier made for every path (opcodes and operands by the
 *       shared decoder, stack depth and types by the abstract stack).
 *   V2. The program counter only grows: every instruction is at least one
 *       byte and a jump's offset is unsigned from the next instruction. An
 *       evaluation runs at most LEN instructions, each at most once, and so
 *       always ends; no loop in the interpreter depends on anything else.
 *   V3. An instruction costs no more gas than its size in bytes, so a run
 *       uses at most LEN - 1 units (the version byte is free); gas_used
 *       never passes the limit, and equals it when the reason is GAS.
 *   V4. The stack holds 0..CONTRACTS_VM_STACK_MAX values; a bool value is
 *       0 or 1 (only push_true/false, comparisons, and/or/not, in_* and the
 *       practitioner attribute make one).
 *   V5. Nothing outside CODE[0..LEN) and the request is read: the decoder
 *       bounds every operand by LEN, byte-string values point into the code
 *       or the request.
 *   V6. The result is a function of (code, request, gas limit): no clock,
 *       float, allocation, static state or hash order.
 *
 * The states of one evaluation (contracts_vm_eval moves between them):
 *   running --permit--> PERMIT        running --deny--> DENY
 *   running --pc reaches LEN--> END   running --cost over what is left--> GAS
 *   running --decode, stack or type fault--> MALFORMED (unverified code only, V1)
 * Every state but running is final; every final state but PERMIT denies.
 *
 * The verifier walks the program once, in offset order. Jumps go forward,
 * so by the time it reaches an instruction it has seen every path into it:
 * the fall-through from the instruction before (unless that one was jmp,
 * permit or deny) and the jumps recorded for this offset. The abstract
 * stack is a depth and 2 bits of type per value (32 values fit a uint64).
 */
#include <string.h>

#include "vm_internal.h"

/* ---- names ---- */

static const char *const attr_names[CONTRACTS_ATTR_LAST_ + 1] = {
    [CONTRACTS_ATTR_REQUESTER_KEY] = "requester.key",
    [CONTRACTS_ATTR_REQUESTER_ROLE] = "requester.role",
    [CONTRACTS_ATTR_REQUESTER_INSTITUTION] = "requester.institution",
    [CONTRACTS_ATTR_REQUESTER_PRACTITIONER] = "requester.practitioner",
    [CONTRACTS_ATTR_RECORD_TYPE] = "record.type",
    [CONTRACTS_ATTR_RECORD_CUSTODIAN] = "record.custodian",
    [CONTRACTS_ATTR_RECORD_AGE_DAYS] = "record.age_days",
    [CONTRACTS_ATTR_CONSENT_PURPOSE] = "consent.purpose",
    [CONTRACTS_ATTR_REQUEST_PURPOSE] = "request.purpose",
    [CONTRACTS_ATTR_CONSENT_FROM] = "consent.from",
    [CONTRACTS_ATTR_CONSENT_UNTIL] = "consent.until",
    [CONTRACTS_ATTR_BLOCK_TIME] = "block.time",
};

static const uint8_t attr_types[CONTRACTS_ATTR_LAST_ + 1] = {
    [CONTRACTS_ATTR_REQUESTER_KEY] = CONTRACTS_VM_BYTES,
    [CONTRACTS_ATTR_REQUESTER_ROLE] = CONTRACTS_VM_INT,
    [CONTRACTS_ATTR_REQUESTER_INSTITUTION] = CONTRACTS_VM_BYTES,
    [CONTRACTS_ATTR_REQUESTER_PRACTITIONER] = CONTRACTS_VM_BOOL,
    [CONTRACTS_ATTR_RECORD_TYPE] = CONTRACTS_VM_INT,
    [CONTRACTS_ATTR_RECORD_CUSTODIAN] = CONTRACTS_VM_BYTES,
    [CONTRACTS_ATTR_RECORD_AGE_DAYS] = CONTRACTS_VM_INT,
    [CONTRACTS_ATTR_CONSENT_PURPOSE] = CONTRACTS_VM_INT,
    [CONTRACTS_ATTR_REQUEST_PURPOSE] = CONTRACTS_VM_INT,
    [CONTRACTS_ATTR_CONSENT_FROM] = CONTRACTS_VM_INT,
    [CONTRACTS_ATTR_CONSENT_UNTIL] = CONTRACTS_VM_INT,
    [CONTRACTS_ATTR_BLOCK_TIME] = CONTRACTS_VM_INT,
};

const char *contracts_vm_attr_name(uint32_t attr)
{
    return attr >= 1 && attr <= CONTRACTS_ATTR_LAST_ ? attr_names[attr] : NULL;
}

int contracts_vm_attr_type(uint32_t attr)
{
    return attr >= 1 && attr <= CONTRACTS_ATTR_LAST_ ? attr_types[attr] : 0;
}

const char *contracts_vm_op_name(uint8_t op)
{
    switch (op) {
    case CONTRACTS_OP_PUSH_INT:
        return "push_int";
    case CONTRACTS_OP_PUSH_BYTES:
        return "push_bytes";
    case CONTRACTS_OP_PUSH_TRUE:
        return "push_true";
    case CONTRACTS_OP_PUSH_FALSE:
        return "push_false";
    case CONTRACTS_OP_LOAD:
        return "load";
    case CONTRACTS_OP_EQ:
        return "eq";
    case CONTRACTS_OP_NE:
        return "ne";
    case CONTRACTS_OP_LT:
        return "lt";
    case CONTRACTS_OP_LE:
        return "le";
    case CONTRACTS_OP_GT:
        return "gt";
    case CONTRACTS_OP_GE:
        return "ge";
    case CONTRACTS_OP_AND:
        return "and";
    case CONTRACTS_OP_OR:
        return "or";
    case CONTRACTS_OP_NOT:
        return "not";
    case CONTRACTS_OP_IN_INT:
        return "in_int";
    case CONTRACTS_OP_IN_BYTES:
        return "in_bytes";
    case CONTRACTS_OP_JMP:
        return "jmp";
    case CONTRACTS_OP_JMPF:
        return "jmpf";
    case CONTRACTS_OP_PERMIT:
        return "permit";
    case CONTRACTS_OP_DENY:
        return "deny";
    default:
        return NULL;
    }
}

const char *contracts_vm_decision_name(enum contracts_vm_decision decision)
{
    return decision == CONTRACTS_VM_PERMIT ? "permit" : "deny";
}

const char *contracts_vm_reason_name(enum contracts_vm_reason reason)
{
    switch (reason) {
    case CONTRACTS_VM_REASON_PERMIT:
        return "permit";
    case CONTRACTS_VM_REASON_DENY:
        return "deny";
    case CONTRACTS_VM_REASON_END:
        return "end";
    case CONTRACTS_VM_REASON_GAS:
        return "gas";
    case CONTRACTS_VM_REASON_MALFORMED:
        return "malformed";
    }
    return "?";
}

const char *contracts_vm_reason_text(enum contracts_vm_reason reason)
{
    switch (reason) {
    case CONTRACTS_VM_REASON_PERMIT:
        return "a permit rule matched";
    case CONTRACTS_VM_REASON_DENY:
        return "a deny rule matched";
    case CONTRACTS_VM_REASON_END:
        return "no rule matched (ran off the end)";
    case CONTRACTS_VM_REASON_GAS:
        return "out of gas";
    case CONTRACTS_VM_REASON_MALFORMED:
        return "the program is malformed";
    }
    return "?";
}

static const char *type_name(unsigned type)
{
    switch (type) {
    case CONTRACTS_VM_INT:
        return "int";
    case CONTRACTS_VM_BOOL:
        return "bool";
    case CONTRACTS_VM_BYTES:
        return "bytes";
    default:
        return "?";
    }
}

/* ---- gas ---- */

uint32_t contracts_vm_gas_cost(uint8_t op, uint32_t count)
{
    return contracts_vm_op_name(op) != NULL ? contracts__gas_cost(op, count) : 0;
}

/* ---- verification ---- */

/* The abstract stack: DEPTH values, value i's type in bits 2i..2i+1. */
struct vstack {
    uint32_t depth;
    uint64_t types;
};

static unsigned vstack_type(const struct vstack *s, uint32_t from_top)
{
    return (unsigned)(s->types >> (2 * (s->depth - 1 - from_top))) & 3u;
}

static void vstack_pop(struct vstack *s, uint32_t n)
{
    EHR_ASSERT(n <= s->depth);
    s->depth -= n;
    s->types &= s->depth == 0 ? 0 : ~(uint64_t)0 >> (64 - 2 * s->depth);
}

static void vstack_push(struct vstack *s, unsigned type)
{
    EHR_ASSERT(s->depth < CONTRACTS_VM_STACK_MAX);
    s->types |= (uint64_t)type << (2 * s->depth);
    s->depth++;
}

static bool vstack_same(const struct vstack *a, const struct vstack *b)
{
    return a->depth == b->depth && a->types == b->types;
}

/* What the verifier knows of each offset: the stack a jump brings there. */
struct vpoint {
    uint64_t types;
    uint16_t jump_from; /* the first jump to this offset; 0: none (offset 0 is the version) */
    uint8_t depth;
};

/* Record a jump from FROM to TARGET with stack S. Returns 0 or EHR_EINVAL. */
static int verify_jump(struct vpoint *points, size_t len, size_t from, size_t target,
                       const struct vstack *s, ehr_diag *diag)
{
    if (target > len)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "offset %zu: jump target %zu past the end of the program (%zu bytes)",
                             from, target, len);
    struct vpoint *p = &points[target];
    if (p->jump_from == 0) {
        p->jump_from = (uint16_t)from;
        p->depth = (uint8_t)s->depth;
        p->types = s->types;
        return 0;
    }
    struct vstack there = {p->depth, p->types};
    if (!vstack_same(&there, s))
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "offset %zu: jump to %zu with stack depth %u; the jump at offset %u "
                             "brings depth %u there%s",
                             from, target, s->depth, (unsigned)p->jump_from, there.depth,
                             there.depth == s->depth ? " (of other types)" : "");
    return 0;
}

/* Check that the top N values have type TYPE (0: both the same type, N == 2). */
static int verify_operands(const struct vstack *s, size_t pc, uint8_t op, uint32_t n, unsigned type,
                           ehr_diag *diag)
{
    if (s->depth < n)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "offset %zu: stack underflow: %s takes %u, the stack holds %u", pc,
                             contracts_vm_op_name(op), n, s->depth);
    if (type == 0) {
        unsigned a = vstack_type(s, 1), b = vstack_type(s, 0);
        if (a != b)
            return ehr_diag_fail(diag, EHR_EINVAL,
                                 "offset %zu: %s compares a value of type %s with one of type %s",
                                 pc, contracts_vm_op_name(op), type_name(a), type_name(b));
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        unsigned t = vstack_type(s, i);
        if (t != type)
            return ehr_diag_fail(diag, EHR_EINVAL, "offset %zu: %s needs %s operands, found %s", pc,
                                 contracts_vm_op_name(op), type_name(type), type_name(t));
    }
    return 0;
}

static int verify_push(struct vstack *s, size_t pc, uint8_t op, unsigned type, ehr_diag *diag)
{
    if (s->depth >= CONTRACTS_VM_STACK_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "offset %zu: stack overflow: %s would make %u values, over %d", pc,
                             contracts_vm_op_name(op), s->depth + 1, CONTRACTS_VM_STACK_MAX);
    vstack_push(s, type);
    return 0;
}

int contracts_vm_verify(const uint8_t *code, size_t len, ehr_diag *diag)
{
    if (len > CONTRACTS_POLICY_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG,
                             "offset %d: a program of %zu bytes passes the limit of %d bytes",
                             CONTRACTS_POLICY_BYTES_MAX, len, CONTRACTS_POLICY_BYTES_MAX);
    if (len == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "offset 0: empty program (no version byte)");
    EHR_ASSERT(code != NULL);
    if (code[0] != CONTRACTS_VM_VERSION)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "offset 0: unknown version %u (this VM runs version %d)", code[0],
                             CONTRACTS_VM_VERSION);

    struct vpoint points[CONTRACTS_POLICY_BYTES_MAX + 1];
    memset(points, 0, (len + 1) * sizeof points[0]);
    struct vstack s = {0, 0};
    bool live = true; /* the previous instruction falls through to pc */
    size_t pc = 1;
    int rc;
    while (pc < len) {
        const struct vpoint *p = &points[pc];
        if (p->jump_from != 0) {
            struct vstack there = {p->depth, p->types};
            if (live && !vstack_same(&s, &there))
                return ehr_diag_fail(diag, EHR_EINVAL,
                                     "offset %zu: paths meet with different stacks: depth %u "
                                     "falling through, %u from the jump at offset %u%s",
                                     pc, s.depth, there.depth, (unsigned)p->jump_from,
                                     s.depth == there.depth ? " (of other types)" : "");
            s = there;
            live = true;
        }
        if (!live)
            return ehr_diag_fail(diag, EHR_EINVAL,
                                 "offset %zu: unreachable instruction (no path leads here)", pc);
        struct contracts__vm_insn insn;
        const char *what = NULL;
        if (contracts__vm_decode(code, len, pc, &insn, &what) != 0)
            return ehr_diag_fail(diag, EHR_EINVAL, "offset %zu: %s (0x%02x)", pc, what, code[pc]);
        EHR_ASSERT(insn.size >= 1);
        EHR_ASSERT(insn.size <= len - pc);
        for (size_t t = pc + 1; t < pc + insn.size; t++)
            if (points[t].jump_from != 0)
                return ehr_diag_fail(diag, EHR_EINVAL,
                                     "offset %u: jump target %zu is inside the instruction at "
                                     "offset %zu",
                                     (unsigned)points[t].jump_from, t, pc);
        size_t next = pc + insn.size;
        uint8_t op = insn.op;
        switch (op) {
        case CONTRACTS_OP_PUSH_INT:
            rc = verify_push(&s, pc, op, CONTRACTS_VM_INT, diag);
            break;
        case CONTRACTS_OP_PUSH_BYTES:
            rc = verify_push(&s, pc, op, CONTRACTS_VM_BYTES, diag);
            break;
        case CONTRACTS_OP_PUSH_TRUE:
        case CONTRACTS_OP_PUSH_FALSE:
            rc = verify_push(&s, pc, op, CONTRACTS_VM_BOOL, diag);
            break;
        case CONTRACTS_OP_LOAD:
            rc = verify_push(&s, pc, op, (unsigned)contracts_vm_attr_type(insn.attr), diag);
            break;
        case CONTRACTS_OP_EQ:
        case CONTRACTS_OP_NE:
        case CONTRACTS_OP_LT:
        case CONTRACTS_OP_LE:
        case CONTRACTS_OP_GT:
        case CONTRACTS_OP_GE:
        case CONTRACTS_OP_AND:
        case CONTRACTS_OP_OR: {
            unsigned need = op == CONTRACTS_OP_EQ || op == CONTRACTS_OP_NE    ? 0
                            : op == CONTRACTS_OP_AND || op == CONTRACTS_OP_OR ? CONTRACTS_VM_BOOL
                                                                              : CONTRACTS_VM_INT;
            rc = verify_operands(&s, pc, op, 2, need, diag);
            if (rc == 0) {
                vstack_pop(&s, 2);
                vstack_push(&s, CONTRACTS_VM_BOOL);
            }
            break;
        }
        case CONTRACTS_OP_NOT:
        case CONTRACTS_OP_IN_INT:
        case CONTRACTS_OP_IN_BYTES: {
            unsigned need = op == CONTRACTS_OP_NOT      ? CONTRACTS_VM_BOOL
                            : op == CONTRACTS_OP_IN_INT ? CONTRACTS_VM_INT
                                                        : CONTRACTS_VM_BYTES;
            rc = verify_operands(&s, pc, op, 1, need, diag);
            if (rc == 0) {
                vstack_pop(&s, 1);
                vstack_push(&s, CONTRACTS_VM_BOOL);
            }
            break;
        }
        case CONTRACTS_OP_JMP:
            rc = verify_jump(points, len, pc, next + insn.jump, &s, diag);
            live = false;
            break;
        case CONTRACTS_OP_JMPF:
            rc = verify_operands(&s, pc, op, 1, CONTRACTS_VM_BOOL, diag);
            if (rc == 0) {
                vstack_pop(&s, 1);
                rc = verify_jump(points, len, pc, next + insn.jump, &s, diag);
            }
            break;
        case CONTRACTS_OP_PERMIT:
        case CONTRACTS_OP_DENY:
            rc = 0;
            live = false;
            break;
        default:
            EHR_ASSERT(0 && "the decoder accepted an opcode the verifier does not know");
        }
        if (rc != 0)
            return rc;
        EHR_ASSERT(s.depth <= CONTRACTS_VM_STACK_MAX);
        pc = next;
    }
    EHR_ASSERT(pc == len);
    const struct vpoint *end = &points[len];
    if (live && end->jump_from != 0) {
        struct vstack there = {end->depth, end->types};
        if (!vstack_same(&s, &there))
            return ehr_diag_fail(diag, EHR_EINVAL,
                                 "offset %zu: paths meet at the end with different stacks: depth "
                                 "%u falling through, %u from the jump at offset %u",
                                 len, s.depth, there.depth, (unsigned)end->jump_from);
    }
    return 0;
}

/* ---- evaluation ---- */

/* One value: an integer (int, bool) or bytes pointing into the code or the request (V5). */
struct slot {
    int64_t i;
    const uint8_t *p;
    uint32_t len;
    uint32_t type;
};

static int64_t clamp_u64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

static void load_attr(const struct contracts_vm_request *r, uint32_t attr, struct slot *v)
{
    v->type = CONTRACTS_VM_INT;
    switch (attr) {
    case CONTRACTS_ATTR_REQUESTER_KEY:
        v->type = CONTRACTS_VM_BYTES;
        v->p = r->requester_key;
        v->len = CONTRACTS_VM_KEY_BYTES;
        return;
    case CONTRACTS_ATTR_REQUESTER_ROLE:
        v->i = r->requester_role;
        return;
    case CONTRACTS_ATTR_REQUESTER_INSTITUTION:
        v->type = CONTRACTS_VM_BYTES;
        v->p = r->requester_institution;
        v->len = CONTRACTS_VM_KEY_BYTES;
        return;
    case CONTRACTS_ATTR_REQUESTER_PRACTITIONER:
        v->type = CONTRACTS_VM_BOOL;
        v->i = r->requester_practitioner ? 1 : 0;
        return;
    case CONTRACTS_ATTR_RECORD_TYPE:
        v->i = r->record_type;
        return;
    case CONTRACTS_ATTR_RECORD_CUSTODIAN:
        v->type = CONTRACTS_VM_BYTES;
        v->p = r->record_custodian;
        v->len = CONTRACTS_VM_KEY_BYTES;
        return;
    case CONTRACTS_ATTR_RECORD_AGE_DAYS:
        v->i = clamp_u64(r->record_age_days);
        return;
    case CONTRACTS_ATTR_CONSENT_PURPOSE:
        v->i = r->consent_purpose;
        return;
    case CONTRACTS_ATTR_REQUEST_PURPOSE:
        v->i = r->request_purpose;
        return;
    case CONTRACTS_ATTR_CONSENT_FROM:
        v->i = clamp_u64(r->consent_from_ms);
        return;
    case CONTRACTS_ATTR_CONSENT_UNTIL:
        v->i = clamp_u64(r->consent_until_ms);
        return;
    case CONTRACTS_ATTR_BLOCK_TIME:
        v->i = clamp_u64(r->block_time_ms);
        return;
    default:
        EHR_ASSERT(0 && "the decoder accepted an unknown attribute");
    }
}

static bool slot_equal(const struct slot *a, const struct slot *b)
{
    if (a->type == CONTRACTS_VM_BYTES)
        return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
    return a->i == b->i;
}

static bool in_set(const struct contracts__vm_insn *insn, const struct slot *v)
{
    const uint8_t *e = insn->bytes;
    for (uint32_t k = 0; k < insn->count; k++) {
        if (insn->op == CONTRACTS_OP_IN_INT) {
            if (contracts__read_i64(e) == v->i)
                return true;
            e += CONTRACTS__INT_BYTES;
        } else {
            if (e[0] == v->len && (v->len == 0 || memcmp(e + 1, v->p, v->len) == 0))
                return true;
            e += 1 + e[0];
        }
    }
    return false;
}

static void finish(struct contracts_vm_result *out, enum contracts_vm_reason reason, uint64_t gas,
                   size_t offset)
{
    out->decision = reason == CONTRACTS_VM_REASON_PERMIT ? CONTRACTS_VM_PERMIT : CONTRACTS_VM_DENY;
    out->reason = reason;
    out->gas_used = gas;
    out->offset = (uint32_t)offset;
}

int contracts_vm_eval(const uint8_t *code, size_t len, const struct contracts_vm_request *request,
                      uint64_t gas_limit, struct contracts_vm_result *out)
{
    EHR_ASSERT(request != NULL);
    EHR_ASSERT(out != NULL);
    EHR_ASSERT(code != NULL || len == 0);
    finish(out, CONTRACTS_VM_REASON_MALFORMED, 0, 0);
    if (gas_limit > CONTRACTS_VM_GAS_MAX)
        return EHR_EINVAL;
    if (len == 0 || len > CONTRACTS_POLICY_BYTES_MAX || code[0] != CONTRACTS_VM_VERSION)
        return 0;

    struct slot stack[CONTRACTS_VM_STACK_MAX];
    uint32_t depth = 0;
    uint64_t gas = 0;
    size_t pc = 1;
    while (pc < len) {
        struct contracts__vm_insn insn;
        const char *what;
        if (contracts__vm_decode(code, len, pc, &insn, &what) != 0)
            break;
        uint64_t cost = contracts__gas_cost(insn.op, insn.count);
        EHR_ASSERT(cost <= insn.size); /* V3 */
        if (cost > gas_limit - gas) {  /* the instruction is not run: V3 */
            finish(out, CONTRACTS_VM_REASON_GAS, gas_limit, pc);
            return 0;
        }
        gas += cost;
        size_t next = pc + insn.size;
        struct slot *top = depth > 0 ? &stack[depth - 1] : NULL;
        switch (insn.op) {
        case CONTRACTS_OP_PUSH_INT:
        case CONTRACTS_OP_PUSH_BYTES:
        case CONTRACTS_OP_PUSH_TRUE:
        case CONTRACTS_OP_PUSH_FALSE:
        case CONTRACTS_OP_LOAD: {
            if (depth >= CONTRACTS_VM_STACK_MAX)
                goto malformed;
            struct slot *v = &stack[depth++];
            if (insn.op == CONTRACTS_OP_PUSH_INT) {
                v->type = CONTRACTS_VM_INT;
                v->i = insn.value;
            } else if (insn.op == CONTRACTS_OP_PUSH_BYTES) {
                v->type = CONTRACTS_VM_BYTES;
                v->p = insn.bytes;
                v->len = insn.bytes_len;
            } else if (insn.op == CONTRACTS_OP_LOAD) {
                load_attr(request, insn.attr, v);
            } else {
                v->type = CONTRACTS_VM_BOOL;
                v->i = insn.op == CONTRACTS_OP_PUSH_TRUE;
            }
            break;
        }
        case CONTRACTS_OP_EQ:
        case CONTRACTS_OP_NE:
        case CONTRACTS_OP_LT:
        case CONTRACTS_OP_LE:
        case CONTRACTS_OP_GT:
        case CONTRACTS_OP_GE:
        case CONTRACTS_OP_AND:
        case CONTRACTS_OP_OR: {
            if (depth < 2)
                goto malformed;
            struct slot *a = &stack[depth - 2], *b = top;
            if (a->type != b->type)
                goto malformed;
            bool r;
            switch (insn.op) {
            case CONTRACTS_OP_EQ:
                r = slot_equal(a, b);
                break;
            case CONTRACTS_OP_NE:
                r = !slot_equal(a, b);
                break;
            case CONTRACTS_OP_AND:
            case CONTRACTS_OP_OR:
                if (a->type != CONTRACTS_VM_BOOL)
                    goto malformed;
                r = insn.op == CONTRACTS_OP_AND ? (a->i & b->i) != 0 : (a->i | b->i) != 0;
                break;
            default:
                if (a->type != CONTRACTS_VM_INT)
                    goto malformed;
                r = insn.op == CONTRACTS_OP_LT   ? a->i < b->i
                    : insn.op == CONTRACTS_OP_LE ? a->i <= b->i
                    : insn.op == CONTRACTS_OP_GT ? a->i > b->i
                                                 : a->i >= b->i;
            }
            depth--;
            a->type = CONTRACTS_VM_BOOL;
            a->i = r;
            break;
        }
        case CONTRACTS_OP_NOT:
            if (top == NULL || top->type != CONTRACTS_VM_BOOL)
                goto malformed;
            top->i = !top->i;
            break;
        case CONTRACTS_OP_IN_INT:
        case CONTRACTS_OP_IN_BYTES:
            if (top == NULL || top->type != (insn.op == CONTRACTS_OP_IN_INT ? CONTRACTS_VM_INT
                                                                            : CONTRACTS_VM_BYTES))
                goto malformed;
            top->i = in_set(&insn, top);
            top->type = CONTRACTS_VM_BOOL;
            break;
        case CONTRACTS_OP_JMP:
        case CONTRACTS_OP_JMPF:
            if (insn.jump > len - next)
                goto malformed;
            if (insn.op == CONTRACTS_OP_JMPF) {
                if (top == NULL || top->type != CONTRACTS_VM_BOOL)
                    goto malformed;
                depth--;
                if (top->i != 0)
                    break;
            }
            next += insn.jump;
            break;
        case CONTRACTS_OP_PERMIT:
            finish(out, CONTRACTS_VM_REASON_PERMIT, gas, pc);
            return 0;
        case CONTRACTS_OP_DENY:
            finish(out, CONTRACTS_VM_REASON_DENY, gas, pc);
            return 0;
        default:
            EHR_ASSERT(0 && "the decoder accepted an opcode the interpreter does not know");
        }
        EHR_ASSERT(next > pc); /* V2 */
        pc = next;
        continue;
    malformed: /* the faulting instruction did not run: its gas is not counted */
        finish(out, CONTRACTS_VM_REASON_MALFORMED, gas - cost, pc);
        return 0;
    }
    if (pc < len) { /* the decoder refused the instruction at pc */
        finish(out, CONTRACTS_VM_REASON_MALFORMED, gas, pc);
        return 0;
    }
    EHR_ASSERT(gas <= gas_limit); /* V3 */
    finish(out, CONTRACTS_VM_REASON_END, gas, len);
    return 0;
}
