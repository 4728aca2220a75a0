/*
 * vm_internal.h - the consent VM's instruction decoder, shared by the
 * verifier, the interpreter (vm.c) and the disassembler (policy.c) so that
 * all three read the bytecode one way. Not part of contracts/'s API: nothing
 * outside contracts/ (and its tests) includes it.
 *
 * The decoder checks everything one instruction's bytes can get wrong (the
 * opcode, operands inside the program, string and set bounds, the attribute
 * id); what needs more than one instruction (jump targets, the stack, types)
 * is the verifier's.
 */
#ifndef EHR_CONTRACTS_VM_INTERNAL_H
#define EHR_CONTRACTS_VM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vm.h"

/* One decoded instruction. Fields its opcode does not use are zero. */
struct contracts__vm_insn {
    uint8_t op;           /* enum contracts_vm_op */
    uint32_t size;        /* its bytes, opcode included: >= 1 */
    int64_t value;        /* push_int */
    const uint8_t *bytes; /* push_bytes: the string; in_int, in_bytes: the first element */
    uint32_t bytes_len;   /* push_bytes: 0..CONTRACTS_VM_BYTES_MAX */
    uint32_t attr;        /* load: 1..CONTRACTS_ATTR_LAST_ */
    uint32_t count;       /* in_int, in_bytes: 1..CONTRACTS_VM_SET_COUNT_MAX */
    uint32_t jump;        /* jmp, jmpf: the target minus the next instruction's offset */
};

/* Bytes of an instruction before its operands, and of the fixed operands. */
enum {
    CONTRACTS__OP_BYTES = 1,
    CONTRACTS__INT_BYTES = 8,
    CONTRACTS__JUMP_BYTES = 2,
};

/* The little-endian two's complement int64 at P (defined for every bit pattern). */
static inline int64_t contracts__read_i64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = (u << 8) | p[i];
    if (u <= (uint64_t)INT64_MAX)
        return (int64_t)u;
    return -(int64_t)(~u) - 1;
}

static inline void contracts__write_i64(uint8_t *p, int64_t v)
{
    uint64_t u = v >= 0 ? (uint64_t)v : ~(uint64_t)(-(v + 1));
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

/* Gas of the instruction OP with COUNT set elements (contracts/README.md's table): every
 * instruction 1, in_int and in_bytes 1 + COUNT. Never more than the instruction's size (V3). */
static inline uint32_t contracts__gas_cost(uint8_t op, uint32_t count)
{
    return op == CONTRACTS_OP_IN_INT || op == CONTRACTS_OP_IN_BYTES ? 1 + count : 1;
}

/*
 * Decode the instruction at CODE[OFFSET] (OFFSET < LEN) into *INSN. Reads
 * only CODE[OFFSET..LEN). Returns 0, or EHR_EINVAL with *WHAT a static
 * phrase ("unknown opcode", "operand past the end", ...).
 */
static inline int contracts__vm_decode(const uint8_t *code, size_t len, size_t offset,
                                       struct contracts__vm_insn *insn, const char **what)
{
    size_t left = len - offset - 1; /* operand bytes available */
    const uint8_t *p = code + offset + 1;
    *insn = (struct contracts__vm_insn){.op = code[offset]};
    switch (insn->op) {
    case CONTRACTS_OP_PUSH_INT:
        if (left < CONTRACTS__INT_BYTES)
            goto past_end;
        insn->value = contracts__read_i64(p);
        insn->size = 1 + CONTRACTS__INT_BYTES;
        return 0;
    case CONTRACTS_OP_PUSH_BYTES:
        if (left < 1 || left - 1 < p[0])
            goto past_end;
        if (p[0] > CONTRACTS_VM_BYTES_MAX) {
            *what = "byte string longer than 32 bytes";
            return EHR_EINVAL;
        }
        insn->bytes_len = p[0];
        insn->bytes = p + 1;
        insn->size = 2 + (uint32_t)p[0];
        return 0;
    case CONTRACTS_OP_LOAD:
        if (left < 1)
            goto past_end;
        if (p[0] < 1 || p[0] > CONTRACTS_ATTR_LAST_) {
            *what = "unknown attribute id";
            return EHR_EINVAL;
        }
        insn->attr = p[0];
        insn->size = 2;
        return 0;
    case CONTRACTS_OP_IN_INT:
    case CONTRACTS_OP_IN_BYTES: {
        if (left < 1)
            goto past_end;
        if (p[0] < 1 || p[0] > CONTRACTS_VM_SET_COUNT_MAX) {
            *what = "set count outside 1..64";
            return EHR_EINVAL;
        }
        insn->count = p[0];
        insn->bytes = p + 1;
        size_t used = 1;
        if (insn->op == CONTRACTS_OP_IN_INT) {
            used += (size_t)insn->count * CONTRACTS__INT_BYTES;
            if (used > left)
                goto past_end;
        } else {
            for (uint32_t i = 0; i < insn->count; i++) {
                if (used >= left || left - used - 1 < p[used])
                    goto past_end;
                if (p[used] > CONTRACTS_VM_BYTES_MAX) {
                    *what = "set element longer than 32 bytes";
                    return EHR_EINVAL;
                }
                used += 1 + (size_t)p[used];
            }
        }
        insn->size = (uint32_t)(1 + used);
        return 0;
    }
    case CONTRACTS_OP_JMP:
    case CONTRACTS_OP_JMPF:
        if (left < CONTRACTS__JUMP_BYTES)
            goto past_end;
        insn->jump = (uint32_t)p[0] | (uint32_t)p[1] << 8;
        insn->size = 1 + CONTRACTS__JUMP_BYTES;
        return 0;
    case CONTRACTS_OP_PUSH_TRUE:
    case CONTRACTS_OP_PUSH_FALSE:
    case CONTRACTS_OP_EQ:
    case CONTRACTS_OP_NE:
    case CONTRACTS_OP_LT:
    case CONTRACTS_OP_LE:
    case CONTRACTS_OP_GT:
    case CONTRACTS_OP_GE:
    case CONTRACTS_OP_AND:
    case CONTRACTS_OP_OR:
    case CONTRACTS_OP_NOT:
    case CONTRACTS_OP_PERMIT:
    case CONTRACTS_OP_DENY:
        insn->size = 1;
        return 0;
    default:
        *what = "unknown opcode";
        return EHR_EINVAL;
    }
past_end:
    *what = "operand past the end of the program";
    return EHR_EINVAL;
}

#endif /* EHR_CONTRACTS_VM_INTERNAL_H */
