/*
 * policy.h - the consent policy language: a compiler from a few lines of
 * rules to consent VM bytecode (vm.h), and a disassembler back to a listing
 * a person can review. The node and ehrctl share both, so a policy compiles
 * to the same bytes wherever it is compiled.
 *
 *   # insurers see invoices and claims until mid-2027
 *   permit if requester.role == insurer and record.type in [invoice, claim]
 *          and block.time < 2027-06-30      <- (one line in a real file)
 *   deny if record.type == genomic
 *
 * Rules are tried in order; the first whose condition holds decides; when
 * none does the program runs off its end, which denies. The grammar, the
 * names and the limits are in contracts/README.md ("The policy language").
 *
 * A caller does: contracts_policy_compile into a buffer of
 * CONTRACTS_POLICY_BYTES_MAX bytes; on error show diag.msg ("LINE:COLUMN:
 * message", prefixed by the file name in ehrctl); on success the program
 * already passes contracts_vm_verify (the compiler asserts it) and is what a
 * consent grant carries. contracts_policy_disassemble lists any bytes.
 *
 * Deterministic: the same source gives the same bytes on every machine (no
 * locale, float, clock or allocation). Allocates nothing; the caller owns
 * every buffer. Thread-safe.
 */
#ifndef EHR_CONTRACTS_POLICY_H
#define EHR_CONTRACTS_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "vm.h"

/* ---- limits ---- */

enum {
    CONTRACTS_POLICY_SOURCE_BYTES_MAX = 16 * 1024,          /* a policy's source text */
    CONTRACTS_POLICY_DEPTH_MAX = 8,                         /* parentheses and `not`, nested */
    CONTRACTS_POLICY_LIST_MAX = CONTRACTS_VM_SET_COUNT_MAX, /* values in one `in [...]` list */
    CONTRACTS_POLICY_LISTING_BYTES_MAX = 64 * 1024,         /* room for any program's listing */
    CONTRACTS_POLICY_TOKEN_SHOWN_MAX = 40,                  /* characters of a token quoted */
    CONTRACTS_POLICY_DATE_YEAR_MIN = 1970,                  /* dates: the epoch's year... */
    CONTRACTS_POLICY_DATE_YEAR_MAX = 9999,                  /* ...to four digits */
};

/* Each nesting level holds at most 3 values on the VM stack while the level
 * inside it runs (an `or` and an `and` partial result and a comparison's
 * left side), and the innermost comparison 4: the compiler's programs stay
 * within the VM's stack. */
_Static_assert(3 * (int)CONTRACTS_POLICY_DEPTH_MAX + 4 <= (int)CONTRACTS_VM_STACK_MAX,
               "a policy nested to the limit fits the VM stack");
_Static_assert((int)CONTRACTS_POLICY_LIST_MAX <= (int)CONTRACTS_VM_SET_COUNT_MAX,
               "a list is one in_int / in_bytes instruction");

/* ---- compile and disassemble ---- */

/*
 * Compile SRC[0..LEN) (ASCII text; it need not be NUL-terminated) into OUT,
 * which has room for OUT_CAP bytes; the program may take at most
 * min(OUT_CAP, CONTRACTS_POLICY_BYTES_MAX) bytes. Returns 0 with *OUT_LEN
 * set; EHR_EINVAL for a syntax, name or type error; EHR_ETOOBIG when a limit
 * is passed (source size, nesting, list length, program size). On error
 * DIAG (may be NULL) gets one line "LINE:COLUMN: message" (both from 1, the
 * column in bytes), which always fits whole, OUT's contents are unspecified
 * and *OUT_LEN is 0; on success DIAG is not written.
 */
int contracts_policy_compile(const char *src, size_t len, uint8_t *out, size_t out_cap,
                             size_t *out_len, ehr_diag *diag);

/*
 * A listing of CODE[0..LEN) into OUT (OUT_SIZE bytes, NUL-terminated; any
 * program of at most CONTRACTS_POLICY_BYTES_MAX bytes fits in
 * CONTRACTS_POLICY_LISTING_BYTES_MAX): a header line, then one line per
 * instruction, "OFFSET  MNEMONIC  OPERANDS", attribute ids as their names,
 * codes and times compared with an attribute annotated with their names and
 * dates, jump targets as offsets, and the end's offset. It decodes, it does
 * not verify (contracts_vm_verify says whether the program is sound).
 * Returns 0; EHR_EINVAL when an instruction does not decode (the listing
 * ends with a line saying why) or the version byte is wrong; EHR_ETOOBIG
 * when LEN passes CONTRACTS_POLICY_BYTES_MAX or the listing does not fit
 * (it is cut at a line's end).
 */
int contracts_policy_disassemble(const uint8_t *code, size_t len, char *out, size_t out_size);

/* ---- names, shared with ehrctl's request files ---- */

/* What an attribute or a literal stands for: the compiler's type system. */
enum contracts_policy_kind {
    CONTRACTS_KIND_NUMBER = 1,  /* a plain integer (record.age_days, 42) */
    CONTRACTS_KIND_TIME,        /* ms since the epoch (block.time, 2027-06-30) */
    CONTRACTS_KIND_ROLE,        /* enum contracts_role */
    CONTRACTS_KIND_RECORD_TYPE, /* enum contracts_record_type */
    CONTRACTS_KIND_PURPOSE,     /* enum contracts_purpose */
    CONTRACTS_KIND_BOOL,        /* true, false, requester.practitioner, a condition */
    CONTRACTS_KIND_KEY,         /* 32 bytes, 64 hex digits */
};

/* The attribute id named NAME[0..LEN) ("record.type"), or 0. */
uint32_t contracts_policy_attr_find(const char *name, size_t len);

/* The kind of attribute ATTR, or 0 for an unknown id. */
int contracts_policy_attr_kind(uint32_t attr);

/* The name of CODE among KIND's names (ROLE, RECORD_TYPE or PURPOSE), or NULL. */
const char *contracts_policy_code_name(enum contracts_policy_kind kind, uint32_t code);

/* The code of NAME[0..LEN) among KIND's names. Returns 0 or EHR_ENOTFOUND. */
int contracts_policy_name_code(enum contracts_policy_kind kind, const char *name, size_t len,
                               uint32_t *code);

/* KIND's names, ", "-separated, for messages ("hospital, lab, ..."); "" for other kinds. */
const char *contracts_policy_kind_names(enum contracts_policy_kind kind);

/*
 * Parse the date TEXT[0..LEN), "YYYY-MM-DD" (a real day of the Gregorian
 * calendar, years CONTRACTS_POLICY_DATE_YEAR_MIN..MAX), into *MS: its UTC
 * midnight in ms since the epoch. Returns 0 or EHR_EINVAL.
 */
int contracts_policy_date_parse(const char *text, size_t len, int64_t *ms);

/* MS as "YYYY-MM-DD" into OUT (11 bytes) when it is a UTC midnight within the
 * date range; returns 0, or EHR_EINVAL (OUT then empty). */
int contracts_policy_date_text(int64_t ms, char out[11]);

#endif /* EHR_CONTRACTS_POLICY_H */
