/*
 * policy_disasm.c - the consent VM's disassembler: a listing of any bytes
 * for a person reviewing a consent's program (`ehrctl policy show`).
 *
 * It decodes with the VM's own decoder (vm_internal.h) and never verifies:
 * a listing shows what the bytes say, contracts_vm_verify whether they are
 * sound. Names of codes and dates of times are hints found by adjacency (a
 * constant next to the load of an attribute it is compared with, as the
 * compiler emits them), written after a `;` like a comment.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "vm_internal.h"

enum {
    LINE_BYTES_MAX = 8192, /* the longest line: an in_* of 64 values with their names */
    MNEMONIC_COLUMN = 12,
};

struct listing {
    char *out;
    size_t size;
    size_t used;
    bool full; /* a line did not fit: the listing ends before it */
};

/* Append the line LINE (with its newline) if it fits whole with the NUL. */
static void put_line(struct listing *l, const char *line)
{
    size_t n = strlen(line);
    if (l->full || n + 1 >= l->size - l->used) {
        l->full = true;
        return;
    }
    memcpy(l->out + l->used, line, n);
    l->out[l->used + n] = '\n';
    l->used += n + 1;
    l->out[l->used] = '\0';
}

struct line {
    char text[LINE_BYTES_MAX];
    size_t used;
};

__attribute__((format(printf, 2, 3))) static void add(struct line *b, const char *fmt, ...)
{
    if (b->used >= sizeof b->text - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->text + b->used, sizeof b->text - b->used, fmt, ap);
    va_end(ap);
    if (n > 0)
        b->used += (size_t)n < sizeof b->text - b->used ? (size_t)n : sizeof b->text - b->used - 1;
}

static void add_hex(struct line *b, const uint8_t *bytes, size_t len)
{
    if (len == 0) {
        add(b, "(empty)");
        return;
    }
    for (size_t i = 0; i < len; i++)
        add(b, "%02x", bytes[i]);
}

/* The name or date of VALUE as an attribute of KIND would mean it, or NULL. */
static const char *value_hint(int kind, int64_t value, char date[11])
{
    if (kind == CONTRACTS_KIND_TIME)
        return contracts_policy_date_text(value, date) == 0 ? date : NULL;
    if (kind < CONTRACTS_KIND_ROLE || kind > CONTRACTS_KIND_PURPOSE)
        return NULL;
    if (value < 0 || value > UINT32_MAX)
        return "?";
    const char *name = contracts_policy_code_name(kind, (uint32_t)value);
    return name != NULL ? name : "?";
}

/* The kind of the attribute loaded just before or just after the instruction at PC. */
static int neighbour_kind(const uint8_t *code, size_t len, uint32_t prev_attr, size_t next_pc)
{
    if (prev_attr != 0)
        return contracts_policy_attr_kind(prev_attr);
    struct contracts__vm_insn next;
    const char *what;
    if (next_pc < len && contracts__vm_decode(code, len, next_pc, &next, &what) == 0 &&
        next.op == CONTRACTS_OP_LOAD)
        return contracts_policy_attr_kind(next.attr);
    return 0;
}

static void format_insn(struct line *b, const uint8_t *code, size_t len, size_t pc,
                        const struct contracts__vm_insn *insn, uint32_t prev_attr)
{
    add(b, "%04zu  %-*s", pc, MNEMONIC_COLUMN - 1, contracts_vm_op_name(insn->op));
    int kind = 0;
    char date[11];
    switch (insn->op) {
    case CONTRACTS_OP_PUSH_INT: {
        add(b, "%lld", (long long)insn->value);
        kind = neighbour_kind(code, len, prev_attr, pc + insn->size);
        const char *hint = value_hint(kind, insn->value, date);
        if (hint != NULL)
            add(b, "  ; %s", hint);
        break;
    }
    case CONTRACTS_OP_PUSH_BYTES:
        add_hex(b, insn->bytes, insn->bytes_len);
        break;
    case CONTRACTS_OP_LOAD:
        add(b, "%s", contracts_vm_attr_name(insn->attr));
        break;
    case CONTRACTS_OP_IN_INT: {
        kind = neighbour_kind(code, len, prev_attr, len); /* the value is loaded before */
        bool hints = false;
        for (uint32_t i = 0; i < insn->count; i++) {
            int64_t v = contracts__read_i64(insn->bytes + CONTRACTS__INT_BYTES * i);
            add(b, "%s%lld", i > 0 ? ", " : "", (long long)v);
            hints = hints || value_hint(kind, v, date) != NULL;
        }
        if (!hints)
            break;
        add(b, "  ;");
        for (uint32_t i = 0; i < insn->count; i++) {
            int64_t v = contracts__read_i64(insn->bytes + CONTRACTS__INT_BYTES * i);
            const char *hint = value_hint(kind, v, date);
            add(b, "%s %s", i > 0 ? "," : "", hint != NULL ? hint : "?");
        }
        break;
    }
    case CONTRACTS_OP_IN_BYTES: {
        const uint8_t *e = insn->bytes;
        for (uint32_t i = 0; i < insn->count; i++) {
            add(b, "%s", i > 0 ? ", " : "");
            add_hex(b, e + 1, e[0]);
            e += 1 + e[0];
        }
        break;
    }
    case CONTRACTS_OP_JMP:
    case CONTRACTS_OP_JMPF:
        add(b, "+%u  ; to %04zu", insn->jump, pc + insn->size + insn->jump);
        break;
    default:
        break;
    }
    while (b->used > 0 && b->text[b->used - 1] == ' ')
        b->text[--b->used] = '\0';
}

int contracts_policy_disassemble(const uint8_t *code, size_t len, char *out, size_t out_size)
{
    EHR_ASSERT(out != NULL);
    EHR_ASSERT(out_size > 0);
    EHR_ASSERT(code != NULL || len == 0);
    struct listing l = {out, out_size, 0, false};
    out[0] = '\0';
    struct line b;
    b.used = 0;
    if (len > CONTRACTS_POLICY_BYTES_MAX) {
        add(&b, "; a program of %zu bytes passes the limit of %d bytes", len,
            CONTRACTS_POLICY_BYTES_MAX);
        put_line(&l, b.text);
        return EHR_ETOOBIG;
    }
    if (len == 0) {
        put_line(&l, "; an empty program (no version byte)");
        return l.full ? EHR_ETOOBIG : EHR_EINVAL;
    }
    add(&b, "; consent VM program, version %u, %zu bytes", code[0], len);
    put_line(&l, b.text);
    if (code[0] != CONTRACTS_VM_VERSION) {
        b.used = 0;
        add(&b, "0000  ??  unknown version %u (this VM runs version %d)", code[0],
            CONTRACTS_VM_VERSION);
        put_line(&l, b.text);
        return l.full ? EHR_ETOOBIG : EHR_EINVAL;
    }
    size_t pc = 1;
    uint32_t prev_attr = 0;
    while (pc < len) {
        struct contracts__vm_insn insn;
        const char *what;
        b.used = 0;
        b.text[0] = '\0';
        if (contracts__vm_decode(code, len, pc, &insn, &what) != 0) {
            add(&b, "%04zu  ??  %s (0x%02x)", pc, what, code[pc]);
            put_line(&l, b.text);
            return l.full ? EHR_ETOOBIG : EHR_EINVAL;
        }
        format_insn(&b, code, len, pc, &insn, prev_attr);
        put_line(&l, b.text);
        prev_attr = insn.op == CONTRACTS_OP_LOAD ? insn.attr : 0;
        pc += insn.size;
    }
    b.used = 0;
    add(&b, "%04zu  end", len);
    put_line(&l, b.text);
    return l.full ? EHR_ETOOBIG : 0;
}
