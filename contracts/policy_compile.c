/*
 * policy_compile.c - the policy language's compiler: a hand-written lexer
 * and a recursive-descent parser that emits consent VM bytecode as it goes
 * (one pass, no tree, no allocation). The grammar is contracts/README.md's.
 *
 * Not here: the names and dates (policy_names.c), the listing
 * (policy_disasm.c), running a program (vm.c).
 *
 * Design notes
 *
 * Invariants:
 *   P1. What compiles verifies: contracts_policy_compile asserts
 *       contracts_vm_verify on its output before returning it.
 *   P2. The VM stack the emitted code uses is tracked (compiler.depth) and
 *       stays within CONTRACTS_VM_STACK_MAX: each nesting level leaves at
 *       most 3 values pending (policy.h's _Static_assert), and the nesting
 *       is bounded by CONTRACTS_POLICY_DEPTH_MAX, which also bounds the
 *       parser's recursion.
 *   P3. Every rule starts and ends with an empty stack: its condition
 *       leaves one bool, jmpf takes it.
 *   P4. The first error stops the compiler: each function returns non-zero
 *       at once and DIAG keeps the first message.
 *   P5. Same source, same bytes: nothing depends on anything but SRC.
 *
 * A rule compiles to
 *     <condition>          leaves one bool
 *     jmpf +1              false: skip the next instruction
 *     permit | deny
 * and the program after the last rule is the end (no rule matched: deny).
 * `a or b` and `a and b` evaluate both sides (there are no side effects to
 * skip), then or / and. `x in [...]` is one in_int / in_bytes instruction.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "vm_internal.h"

enum tok_type {
    TOK_EOF,
    TOK_NEWLINE,
    TOK_WORD, /* a keyword, an attribute (with a dot) or a name */
    TOK_INT,
    TOK_DATE,
    TOK_KEY,
    TOK_LPAREN,
    TOK_RPAREN,
    TOK_LBRACKET,
    TOK_RBRACKET,
    TOK_COMMA,
    TOK_EQ,
    TOK_NE,
    TOK_LT,
    TOK_LE,
    TOK_GT,
    TOK_GE,
};

struct token {
    enum tok_type type;
    const char *text; /* into the source */
    size_t len;
    uint32_t line, col;
    int64_t value;                       /* TOK_INT, TOK_DATE */
    uint8_t key[CONTRACTS_VM_KEY_BYTES]; /* TOK_KEY */
};

/* A value the parser has emitted code for: what it is, for type checks and messages. */
struct operand {
    int kind;            /* enum contracts_policy_kind */
    bool number_literal; /* a decimal integer: also compares with times (ms) */
    uint32_t line, col;  /* where it starts */
    const char *text;    /* its token, for messages... */
    size_t len;
    const char *what; /* ...or what it is when it is not one token ("the comparison") */
};

/* A literal's value, for a push or a list element. */
struct literal {
    int kind;
    bool number_literal;
    int64_t value;
    uint8_t key[CONTRACTS_VM_KEY_BYTES];
};

struct compiler {
    const char *src;
    size_t len;
    size_t pos;
    uint32_t line;
    size_t line_start;
    uint32_t brackets; /* ( and [ open: newlines inside them do not end a rule */
    struct token tok;  /* the current token */
    uint8_t *out;
    size_t cap; /* min(out_cap, CONTRACTS_POLICY_BYTES_MAX) */
    size_t n;
    uint32_t depth;   /* VM stack values the emitted code leaves (P2) */
    uint32_t nesting; /* parentheses and `not` open */
    uint32_t rule_line, rule_col;
    ehr_diag *diag; /* the caller's; may be NULL */
};

/* Say what is wrong at LINE:COL into the caller's diag (P4). Returns RC. */
__attribute__((format(printf, 5, 6))) static int fail_at(struct compiler *c, int rc, uint32_t line,
                                                         uint32_t col, const char *fmt, ...)
{
    char msg[EHR_DIAG_BYTES_MAX] = "";
    if (c->diag != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    return ehr_diag_fail(c->diag, rc, "%u:%u: %s", line, col, msg);
}

/* ---- characters (ASCII only: no locale) ---- */

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool is_hex(char ch)
{
    return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static bool is_word_char(char ch)
{
    return is_alpha(ch) || is_digit(ch) || ch == '.' || ch == '-';
}

static bool word_is(const struct token *t, const char *word)
{
    return t->type == TOK_WORD && strlen(word) == t->len && memcmp(t->text, word, t->len) == 0;
}

/* TEXT[0..LEN) quoted for a message, cut to CONTRACTS_POLICY_TOKEN_SHOWN_MAX characters. */
static const char *quote(const char *text, size_t len, char *buf, size_t size)
{
    size_t shown = len > CONTRACTS_POLICY_TOKEN_SHOWN_MAX ? CONTRACTS_POLICY_TOKEN_SHOWN_MAX : len;
    snprintf(buf, size, "`%.*s%s`", (int)shown, text, shown < len ? "..." : "");
    return buf;
}

static const char *token_shown(const struct token *t, char *buf, size_t size)
{
    if (t->type == TOK_EOF)
        return "the end of the policy";
    if (t->type == TOK_NEWLINE)
        return "the end of the line";
    return quote(t->text, t->len, buf, size);
}

enum { SHOWN_BYTES = CONTRACTS_POLICY_TOKEN_SHOWN_MAX + 8 };

/* ---- lexer ---- */

static uint32_t column(const struct compiler *c, size_t pos)
{
    return (uint32_t)(pos - c->line_start + 1);
}

static void newline(struct compiler *c)
{
    c->pos++;
    c->line++;
    c->line_start = c->pos;
}

/* Classify the word T (a run of letters, digits, _ . -). */
static int classify_word(struct compiler *c, struct token *t)
{
    const char *p = t->text;
    size_t n = t->len;
    bool all_hex = true, all_digits = true;
    for (size_t i = 0; i < n; i++) {
        all_hex = all_hex && is_hex(p[i]);
        all_digits = all_digits && is_digit(p[i]);
    }
    char buf[SHOWN_BYTES];
    if (all_hex && n == 2 * CONTRACTS_VM_KEY_BYTES) {
        char hex[2 * CONTRACTS_VM_KEY_BYTES + 1];
        memcpy(hex, p, n);
        hex[n] = '\0';
        int hex_rc = ehr_hex_decode(t->key, CONTRACTS_VM_KEY_BYTES, hex);
        EHR_ASSERT(hex_rc == 0);
        t->type = TOK_KEY;
        return 0;
    }
    if (all_hex && n >= CONTRACTS_VM_KEY_BYTES)
        return fail_at(c, EHR_EINVAL, t->line, t->col, "a key is 64 hex digits; %s has %zu",
                       quote(p, n, buf, sizeof buf), n);
    if (all_digits) {
        if (n > 1 && p[0] == '0')
            return fail_at(c, EHR_EINVAL, t->line, t->col,
                           "%s: a number does not start with 0 (dates are YYYY-MM-DD)",
                           quote(p, n, buf, sizeof buf));
        int64_t v = 0;
        for (size_t i = 0; i < n; i++) {
            int digit = p[i] - '0';
            if (v > (INT64_MAX - digit) / 10)
                return fail_at(c, EHR_EINVAL, t->line, t->col,
                               "%s is too large (at most 9223372036854775807)",
                               quote(p, n, buf, sizeof buf));
            v = v * 10 + digit;
        }
        t->type = TOK_INT;
        t->value = v;
        return 0;
    }
    if (n == 10 && is_digit(p[0]) && p[4] == '-' && p[7] == '-') {
        if (contracts_policy_date_parse(p, n, &t->value) != 0)
            return fail_at(c, EHR_EINVAL, t->line, t->col,
                           "%s is not a date (YYYY-MM-DD, a real day, years %d-%d)",
                           quote(p, n, buf, sizeof buf), CONTRACTS_POLICY_DATE_YEAR_MIN,
                           CONTRACTS_POLICY_DATE_YEAR_MAX);
        t->type = TOK_DATE;
        return 0;
    }
    if (is_alpha(p[0]) && memchr(p, '-', n) == NULL) {
        t->type = TOK_WORD;
        return 0;
    }
    return fail_at(c, EHR_EINVAL, t->line, t->col,
                   "%s is not a number, a date (YYYY-MM-DD), a key or a name",
                   quote(p, n, buf, sizeof buf));
}

/* Read the next token into c->tok. Returns 0 or an error. */
static int next(struct compiler *c)
{
    for (;;) {
        while (c->pos < c->len &&
               (c->src[c->pos] == ' ' || c->src[c->pos] == '\t' || c->src[c->pos] == '\r'))
            c->pos++;
        if (c->pos < c->len && c->src[c->pos] == '#') {
            while (c->pos < c->len && c->src[c->pos] != '\n')
                c->pos++;
        }
        if (c->pos < c->len && c->src[c->pos] == '\n' && c->brackets > 0) {
            newline(c);
            continue;
        }
        break;
    }
    struct token *t = &c->tok;
    t->text = c->src + c->pos;
    t->len = 1;
    t->line = c->line;
    t->col = column(c, c->pos);
    if (c->pos == c->len) {
        t->type = TOK_EOF;
        t->len = 0;
        return 0;
    }
    char ch = c->src[c->pos];
    char after = c->pos + 1 < c->len ? c->src[c->pos + 1] : '\0';
    switch (ch) {
    case '\n':
        t->type = TOK_NEWLINE;
        newline(c);
        return 0;
    case '(':
    case '[':
        t->type = ch == '(' ? TOK_LPAREN : TOK_LBRACKET;
        c->brackets++;
        break;
    case ')':
    case ']':
        t->type = ch == ')' ? TOK_RPAREN : TOK_RBRACKET;
        c->brackets -= c->brackets > 0;
        break;
    case ',':
        t->type = TOK_COMMA;
        break;
    case '=':
        if (after != '=')
            return fail_at(c, EHR_EINVAL, t->line, t->col, "a single `=`: compare with `==`");
        t->type = TOK_EQ;
        t->len = 2;
        break;
    case '!':
        if (after != '=')
            return fail_at(c, EHR_EINVAL, t->line, t->col,
                           "`!` alone: compare with `!=`, negate with `not`");
        t->type = TOK_NE;
        t->len = 2;
        break;
    case '<':
    case '>':
        t->type = ch == '<' ? (after == '=' ? TOK_LE : TOK_LT) : (after == '=' ? TOK_GE : TOK_GT);
        t->len = after == '=' ? 2 : 1;
        break;
    default:
        if (is_alpha(ch) || is_digit(ch)) {
            size_t end = c->pos;
            while (end < c->len && is_word_char(c->src[end]))
                end++;
            t->len = end - c->pos;
            c->pos = end;
            return classify_word(c, t);
        }
        if (ch >= 0x21 && ch < 0x7f)
            return fail_at(c, EHR_EINVAL, t->line, t->col, "unexpected character `%c`%s", ch,
                           ch == '-' ? " (numbers are never negative)" : "");
        return fail_at(c, EHR_EINVAL, t->line, t->col,
                       "unexpected byte 0x%02x (a policy is ASCII text)", (unsigned)(uint8_t)ch);
    }
    c->pos += t->len;
    return 0;
}

/* ---- code ---- */

static int emit(struct compiler *c, const uint8_t *bytes, size_t n)
{
    if (n > c->cap - c->n)
        return fail_at(c, EHR_ETOOBIG, c->rule_line, c->rule_col,
                       "the program passes %zu bytes in this rule (the limit of a policy "
                       "program)",
                       c->cap);
    memcpy(c->out + c->n, bytes, n);
    c->n += n;
    return 0;
}

/* Emit a one-byte instruction that takes POPS values and pushes PUSHES. */
static int emit_op(struct compiler *c, uint8_t op, uint32_t pops, uint32_t pushes)
{
    EHR_ASSERT(c->depth >= pops);
    c->depth = c->depth - pops + pushes;
    EHR_ASSERT(c->depth <= CONTRACTS_VM_STACK_MAX); /* P2 */
    return emit(c, &op, 1);
}

static int emit_push(struct compiler *c, const struct literal *lit)
{
    uint8_t code[2 + CONTRACTS_VM_KEY_BYTES];
    size_t n;
    if (lit->kind == CONTRACTS_KIND_BOOL) {
        code[0] = lit->value != 0 ? CONTRACTS_OP_PUSH_TRUE : CONTRACTS_OP_PUSH_FALSE;
        n = 1;
    } else if (lit->kind == CONTRACTS_KIND_KEY) {
        code[0] = CONTRACTS_OP_PUSH_BYTES;
        code[1] = CONTRACTS_VM_KEY_BYTES;
        memcpy(code + 2, lit->key, CONTRACTS_VM_KEY_BYTES);
        n = 2 + CONTRACTS_VM_KEY_BYTES;
    } else {
        code[0] = CONTRACTS_OP_PUSH_INT;
        contracts__write_i64(code + 1, lit->value);
        n = 1 + CONTRACTS__INT_BYTES;
    }
    c->depth++;
    EHR_ASSERT(c->depth <= CONTRACTS_VM_STACK_MAX); /* P2 */
    return emit(c, code, n);
}

/* ---- types ---- */

static const char *kind_name(int kind)
{
    switch (kind) {
    case CONTRACTS_KIND_NUMBER:
        return "a number";
    case CONTRACTS_KIND_TIME:
        return "a time";
    case CONTRACTS_KIND_ROLE:
        return "a role";
    case CONTRACTS_KIND_RECORD_TYPE:
        return "a record type";
    case CONTRACTS_KIND_PURPOSE:
        return "a purpose";
    case CONTRACTS_KIND_BOOL:
        return "a condition";
    case CONTRACTS_KIND_KEY:
        return "a key";
    default:
        return "?";
    }
}

/* May A and B be compared? The same kind, or a decimal number with a time (ms). */
static bool compatible(int a_kind, bool a_number, int b_kind, bool b_number)
{
    if (a_kind == b_kind)
        return true;
    return (a_number && b_kind == CONTRACTS_KIND_TIME) ||
           (b_number && a_kind == CONTRACTS_KIND_TIME);
}

/* How O is named in a message: its token quoted, or what it is. Built only for an error. */
static const char *describe(const struct operand *o, char *buf, size_t size)
{
    return o->what != NULL ? o->what : quote(o->text, o->len, buf, size);
}

static int mismatch(struct compiler *c, uint32_t line, uint32_t col, const struct operand *a,
                    const char *b_desc, int b_kind, bool b_number)
{
    char a_desc[SHOWN_BYTES];
    int named = CONTRACTS_KIND_ROLE <= a->kind && a->kind <= CONTRACTS_KIND_PURPOSE ? a->kind
                : CONTRACTS_KIND_ROLE <= b_kind && b_kind <= CONTRACTS_KIND_PURPOSE ? b_kind
                                                                                    : 0;
    bool number = a->number_literal || b_number;
    return fail_at(c, EHR_EINVAL, line, col, "cannot compare %s (%s) with %s (%s)%s%s",
                   describe(a, a_desc, sizeof a_desc), kind_name(a->kind), b_desc,
                   kind_name(b_kind), named != 0 && number ? ": use a name: " : "",
                   named != 0 && number ? contracts_policy_kind_names(named) : "");
}

static void operand_at(struct operand *o, const struct token *t, int kind)
{
    o->kind = kind;
    o->number_literal = false;
    o->line = t->line;
    o->col = t->col;
    o->text = t->text;
    o->len = t->len;
    o->what = NULL;
}

static int need_condition(struct compiler *c, const struct operand *o, const char *what)
{
    if (o->kind == CONTRACTS_KIND_BOOL)
        return 0;
    char desc[SHOWN_BYTES];
    return fail_at(c, EHR_EINVAL, o->line, o->col, "%s needs a condition; %s is %s", what,
                   describe(o, desc, sizeof desc), kind_name(o->kind));
}

/* ---- parser ---- */

static int parse_or(struct compiler *c, struct operand *o);

static int nest(struct compiler *c, const struct token *t)
{
    if (c->nesting >= CONTRACTS_POLICY_DEPTH_MAX)
        return fail_at(c, EHR_ETOOBIG, t->line, t->col,
                       "nested deeper than %d (parentheses and `not` together)",
                       CONTRACTS_POLICY_DEPTH_MAX);
    c->nesting++;
    return 0;
}

/* The value of the literal token T: 0, or 1 when T is not a literal (nothing said). */
static int literal_of(const struct token *t, struct literal *lit)
{
    memset(lit, 0, sizeof *lit);
    switch (t->type) {
    case TOK_INT:
        lit->kind = CONTRACTS_KIND_NUMBER;
        lit->number_literal = true;
        lit->value = t->value;
        return 0;
    case TOK_DATE:
        lit->kind = CONTRACTS_KIND_TIME;
        lit->value = t->value;
        return 0;
    case TOK_KEY:
        lit->kind = CONTRACTS_KIND_KEY;
        memcpy(lit->key, t->key, sizeof lit->key);
        return 0;
    case TOK_WORD:
        if (word_is(t, "true") || word_is(t, "false")) {
            lit->kind = CONTRACTS_KIND_BOOL;
            lit->value = word_is(t, "true");
            return 0;
        }
        for (int kind = CONTRACTS_KIND_ROLE; kind <= CONTRACTS_KIND_PURPOSE; kind++) {
            uint32_t code;
            if (contracts_policy_name_code(kind, t->text, t->len, &code) == 0) {
                lit->kind = kind;
                lit->value = code;
                return 0;
            }
        }
        return 1;
    default:
        return 1;
    }
}

static bool is_keyword(const struct token *t)
{
    static const char *const keywords[] = {"permit", "deny", "if", "and", "or", "not", "in"};
    for (size_t i = 0; i < EHR_ARRAY_COUNT(keywords); i++)
        if (word_is(t, keywords[i]))
            return true;
    return false;
}

/* Say that T is no attribute, naming those with the same prefix ("record."). */
static int unknown_attribute(struct compiler *c, const struct token *t)
{
    char buf[SHOWN_BYTES], known[EHR_DIAG_BYTES_MAX];
    size_t prefix = (size_t)((const char *)memchr(t->text, '.', t->len) - t->text) + 1;
    size_t used = 0;
    known[0] = '\0';
    for (uint32_t a = 1; a <= CONTRACTS_ATTR_LAST_; a++) {
        const char *name = contracts_vm_attr_name(a);
        if (strncmp(name, t->text, prefix) != 0 || strlen(name) < prefix)
            continue;
        int n = snprintf(known + used, sizeof known - used, "%s%s", used > 0 ? ", " : "", name);
        if (n < 0 || (size_t)n >= sizeof known - used)
            break;
        used += (size_t)n;
    }
    if (used == 0)
        return fail_at(c, EHR_EINVAL, t->line, t->col,
                       "unknown attribute %s (attributes start with requester., record., "
                       "consent., request. or block.)",
                       quote(t->text, t->len, buf, sizeof buf));
    return fail_at(c, EHR_EINVAL, t->line, t->col, "unknown attribute %s (did you mean one of %s?)",
                   quote(t->text, t->len, buf, sizeof buf), known);
}

/* primary = attribute | literal | "(" expr ")" */
static int parse_primary(struct compiler *c, struct operand *o)
{
    struct token t = c->tok;
    char buf[SHOWN_BYTES];
    int rc;
    if (t.type == TOK_LPAREN) {
        if ((rc = nest(c, &t)) != 0 || (rc = next(c)) != 0 || (rc = parse_or(c, o)) != 0)
            return rc;
        if (c->tok.type != TOK_RPAREN)
            return fail_at(c, EHR_EINVAL, c->tok.line, c->tok.col,
                           "expected `)` to close the `(` at %u:%u, found %s", t.line, t.col,
                           token_shown(&c->tok, buf, sizeof buf));
        c->nesting--;
        o->line = t.line;
        o->col = t.col;
        o->what = "the expression in parentheses";
        return next(c);
    }
    if (t.type == TOK_WORD && memchr(t.text, '.', t.len) != NULL) {
        uint32_t attr = contracts_policy_attr_find(t.text, t.len);
        if (attr == 0)
            return unknown_attribute(c, &t);
        operand_at(o, &t, contracts_policy_attr_kind(attr));
        uint8_t code[2] = {CONTRACTS_OP_LOAD, (uint8_t)attr};
        c->depth++;
        EHR_ASSERT(c->depth <= CONTRACTS_VM_STACK_MAX); /* P2 */
        if ((rc = emit(c, code, sizeof code)) != 0)
            return rc;
        return next(c);
    }
    struct literal lit;
    if (literal_of(&t, &lit) != 0) {
        if (t.type == TOK_WORD && !is_keyword(&t))
            return fail_at(c, EHR_EINVAL, t.line, t.col,
                           "unknown name %s (not a role, record type or purpose)",
                           quote(t.text, t.len, buf, sizeof buf));
        return fail_at(c, EHR_EINVAL, t.line, t.col, "expected a value, found %s",
                       token_shown(&t, buf, sizeof buf));
    }
    operand_at(o, &t, lit.kind);
    o->number_literal = lit.number_literal;
    if ((rc = emit_push(c, &lit)) != 0)
        return rc;
    return next(c);
}

static bool is_relop(enum tok_type type)
{
    return type == TOK_EQ || type == TOK_NE || type == TOK_LT || type == TOK_LE || type == TOK_GT ||
           type == TOK_GE;
}

/* "in" "[" literal { "," literal } "]", after the value L. */
static int parse_list(struct compiler *c, struct operand *l)
{
    struct token in = c->tok;
    char buf[SHOWN_BYTES];
    int rc;
    if (l->kind == CONTRACTS_KIND_BOOL)
        return fail_at(c, EHR_EINVAL, in.line, in.col,
                       "`in` looks up a value, and %s is a condition (use == true or == false)",
                       describe(l, buf, sizeof buf));
    if ((rc = next(c)) != 0)
        return rc;
    if (c->tok.type != TOK_LBRACKET)
        return fail_at(c, EHR_EINVAL, c->tok.line, c->tok.col, "expected `[` after `in`, found %s",
                       token_shown(&c->tok, buf, sizeof buf));
    struct token open = c->tok;
    if ((rc = next(c)) != 0)
        return rc;
    if (c->tok.type == TOK_RBRACKET)
        return fail_at(c, EHR_EINVAL, open.line, open.col, "an empty list (nothing is in it)");
    struct literal items[CONTRACTS_POLICY_LIST_MAX];
    uint32_t count = 0;
    for (;;) {
        const struct token *t = &c->tok;
        if (count == CONTRACTS_POLICY_LIST_MAX)
            return fail_at(c, EHR_ETOOBIG, t->line, t->col, "a list of more than %d values",
                           CONTRACTS_POLICY_LIST_MAX);
        struct literal *lit = &items[count];
        if (literal_of(t, lit) != 0)
            return fail_at(c, EHR_EINVAL, t->line, t->col,
                           "a list holds numbers, dates, names or keys; found %s",
                           token_shown(t, buf, sizeof buf));
        if (!compatible(l->kind, l->number_literal, lit->kind, lit->number_literal))
            return mismatch(c, t->line, t->col, l, quote(t->text, t->len, buf, sizeof buf),
                            lit->kind, lit->number_literal);
        for (uint32_t i = 0; i < count; i++)
            if (items[i].value == lit->value &&
                memcmp(items[i].key, lit->key, sizeof lit->key) == 0)
                return fail_at(c, EHR_EINVAL, t->line, t->col, "%s is in the list twice",
                               quote(t->text, t->len, buf, sizeof buf));
        count++;
        if ((rc = next(c)) != 0)
            return rc;
        if (c->tok.type == TOK_COMMA) {
            if ((rc = next(c)) != 0)
                return rc;
            continue;
        }
        if (c->tok.type == TOK_RBRACKET)
            break;
        return fail_at(c, EHR_EINVAL, c->tok.line, c->tok.col,
                       "expected `,` or `]` in the list opened at %u:%u, found %s", open.line,
                       open.col, token_shown(&c->tok, buf, sizeof buf));
    }
    bool keys = l->kind == CONTRACTS_KIND_KEY;
    uint8_t head[2] = {keys ? CONTRACTS_OP_IN_BYTES : CONTRACTS_OP_IN_INT, (uint8_t)count};
    if ((rc = emit(c, head, sizeof head)) != 0)
        return rc;
    for (uint32_t i = 0; i < count; i++) {
        uint8_t element[1 + CONTRACTS_VM_KEY_BYTES];
        size_t n;
        if (keys) {
            element[0] = CONTRACTS_VM_KEY_BYTES;
            memcpy(element + 1, items[i].key, CONTRACTS_VM_KEY_BYTES);
            n = 1 + CONTRACTS_VM_KEY_BYTES;
        } else {
            contracts__write_i64(element, items[i].value);
            n = CONTRACTS__INT_BYTES;
        }
        if ((rc = emit(c, element, n)) != 0)
            return rc;
    }
    l->kind = CONTRACTS_KIND_BOOL; /* the value is replaced by the answer */
    l->number_literal = false;
    l->what = "the `in` test";
    return next(c);
}

/* cmp = primary [ relop primary | "in" list ] */
static int parse_cmp(struct compiler *c, struct operand *o)
{
    int rc;
    char buf[SHOWN_BYTES], desc[SHOWN_BYTES];
    if ((rc = parse_primary(c, o)) != 0)
        return rc;
    if (word_is(&c->tok, "in"))
        return parse_list(c, o);
    if (!is_relop(c->tok.type))
        return 0;
    struct token op = c->tok;
    struct operand r;
    if ((rc = next(c)) != 0 || (rc = parse_primary(c, &r)) != 0)
        return rc;
    if (!compatible(o->kind, o->number_literal, r.kind, r.number_literal))
        return mismatch(c, op.line, op.col, o, describe(&r, buf, sizeof buf), r.kind,
                        r.number_literal);
    bool ordered = op.type != TOK_EQ && op.type != TOK_NE;
    int kind = o->kind == CONTRACTS_KIND_TIME || r.kind == CONTRACTS_KIND_TIME ? CONTRACTS_KIND_TIME
                                                                               : o->kind;
    if (ordered && kind != CONTRACTS_KIND_NUMBER && kind != CONTRACTS_KIND_TIME)
        return fail_at(c, EHR_EINVAL, op.line, op.col,
                       "%s orders numbers and times; %s is %s (use == or in)",
                       quote(op.text, op.len, buf, sizeof buf), describe(o, desc, sizeof desc),
                       kind_name(o->kind));
    static const uint8_t ops[] = {
        [TOK_EQ] = CONTRACTS_OP_EQ, [TOK_NE] = CONTRACTS_OP_NE, [TOK_LT] = CONTRACTS_OP_LT,
        [TOK_LE] = CONTRACTS_OP_LE, [TOK_GT] = CONTRACTS_OP_GT, [TOK_GE] = CONTRACTS_OP_GE,
    };
    if ((rc = emit_op(c, ops[op.type], 2, 1)) != 0)
        return rc;
    o->kind = CONTRACTS_KIND_BOOL;
    o->number_literal = false;
    o->what = "the comparison";
    if (is_relop(c->tok.type))
        return fail_at(c, EHR_EINVAL, c->tok.line, c->tok.col,
                       "comparisons do not chain: join them with `and`");
    return 0;
}

/* not = "not" not | cmp */
static int parse_not(struct compiler *c, struct operand *o)
{
    if (!word_is(&c->tok, "not"))
        return parse_cmp(c, o);
    struct token not_tok = c->tok;
    int rc;
    if ((rc = nest(c, &not_tok)) != 0 || (rc = next(c)) != 0 || (rc = parse_not(c, o)) != 0)
        return rc;
    if ((rc = need_condition(c, o, "`not`")) != 0 || (rc = emit_op(c, CONTRACTS_OP_NOT, 1, 1)) != 0)
        return rc;
    c->nesting--;
    operand_at(o, &not_tok, CONTRACTS_KIND_BOOL);
    o->what = "the `not`";
    return 0;
}

/* and = not { "and" not };  or = and { "or" and } */
static int parse_chain(struct compiler *c, struct operand *o, bool is_or)
{
    int rc = is_or ? parse_chain(c, o, false) : parse_not(c, o);
    const char *word = is_or ? "or" : "and";
    const char *what = is_or ? "`or`" : "`and`";
    while (rc == 0 && word_is(&c->tok, word)) {
        struct operand r;
        if ((rc = need_condition(c, o, what)) != 0 || (rc = next(c)) != 0)
            return rc;
        if ((rc = is_or ? parse_chain(c, &r, false) : parse_not(c, &r)) != 0)
            return rc;
        if ((rc = need_condition(c, &r, what)) != 0)
            return rc;
        rc = emit_op(c, is_or ? CONTRACTS_OP_OR : CONTRACTS_OP_AND, 2, 1);
    }
    return rc;
}

static int parse_or(struct compiler *c, struct operand *o)
{
    return parse_chain(c, o, true);
}

/* rule = ( "permit" | "deny" ) "if" expr, then the end of the line */
static int parse_rule(struct compiler *c)
{
    char buf[SHOWN_BYTES];
    struct token head = c->tok;
    bool permit = word_is(&head, "permit");
    if (!permit && !word_is(&head, "deny"))
        return fail_at(c, EHR_EINVAL, head.line, head.col,
                       "a rule starts with `permit` or `deny`, found %s",
                       token_shown(&head, buf, sizeof buf));
    c->rule_line = head.line;
    c->rule_col = head.col;
    int rc;
    if ((rc = next(c)) != 0)
        return rc;
    if (!word_is(&c->tok, "if"))
        return fail_at(c, EHR_EINVAL, c->tok.line, c->tok.col, "expected `if` after %s, found %s",
                       permit ? "`permit`" : "`deny`", token_shown(&c->tok, buf, sizeof buf));
    struct operand cond;
    if ((rc = next(c)) != 0 || (rc = parse_or(c, &cond)) != 0)
        return rc;
    if ((rc = need_condition(c, &cond, "a rule")) != 0)
        return rc;
    EHR_ASSERT(c->depth == 1); /* P3 */
    EHR_ASSERT(c->nesting == 0);
    const uint8_t tail[] = {CONTRACTS_OP_JMPF, 1, 0,
                            permit ? CONTRACTS_OP_PERMIT : CONTRACTS_OP_DENY};
    c->depth = 0;
    if ((rc = emit(c, tail, sizeof tail)) != 0)
        return rc;
    if (c->tok.type != TOK_NEWLINE && c->tok.type != TOK_EOF)
        return fail_at(c, EHR_EINVAL, c->tok.line, c->tok.col,
                       "expected the end of the rule, found %s",
                       token_shown(&c->tok, buf, sizeof buf));
    return 0;
}

int contracts_policy_compile(const char *src, size_t len, uint8_t *out, size_t out_cap,
                             size_t *out_len, ehr_diag *diag)
{
    EHR_ASSERT(src != NULL || len == 0);
    EHR_ASSERT(out != NULL);
    EHR_ASSERT(out_len != NULL);
    *out_len = 0;
    struct compiler c = {
        .src = src,
        .len = len,
        .line = 1,
        .out = out,
        .cap = out_cap < CONTRACTS_POLICY_BYTES_MAX ? out_cap : CONTRACTS_POLICY_BYTES_MAX,
        .rule_line = 1,
        .rule_col = 1,
        .diag = diag,
    };
    if (len > CONTRACTS_POLICY_SOURCE_BYTES_MAX)
        return fail_at(&c, EHR_ETOOBIG, 1, 1, "the policy is %zu bytes, over the limit of %d", len,
                       CONTRACTS_POLICY_SOURCE_BYTES_MAX);
    const uint8_t version = CONTRACTS_VM_VERSION;
    int rc = emit(&c, &version, 1);
    unsigned rules = 0;
    if (rc == 0)
        rc = next(&c);
    while (rc == 0 && c.tok.type != TOK_EOF) {
        if (c.tok.type == TOK_NEWLINE) {
            rc = next(&c);
            continue;
        }
        rc = parse_rule(&c);
        rules++;
    }
    if (rc == 0 && rules == 0)
        rc = fail_at(&c, EHR_EINVAL, c.tok.line, c.tok.col,
                     "a policy needs at least one rule (`permit if ...` or `deny if ...`)");
    if (rc != 0)
        return rc;
    ehr_diag verify_diag;
    if (contracts_vm_verify(out, c.n, &verify_diag) != 0) /* P1 */
        ehr_panic("policy compiler: its program does not verify: %s", verify_diag.msg);
    *out_len = c.n;
    return 0;
}
