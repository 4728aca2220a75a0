/*
 * vm.h - the consent VM: a small stack machine that decides whether one
 * access request may obtain the key to a patient's record, by running the
 * optional policy program of the consent the request names.
 *
 * A caller does:
 *
 *   1. when a consent grant carrying a program is submitted:
 *      contracts_vm_verify(code, len, &diag); a program that does not
 *      verify is refused with diag.msg ("offset N: ..."), never stored;
 *   2. for an access request under that consent: fill a struct
 *      contracts_vm_request from the request, the record, the consent and
 *      the block (nothing node-local: the block's time is the only clock);
 *   3. contracts_vm_eval(code, len, &request, gas_limit, &result) and act on
 *      result.decision; result.reason and result.gas_used go into the audit
 *      event.
 *
 * What the VM guarantees (see vm.c's design notes for the invariants):
 *   - eval is a function of (code, request, gas_limit) only: no clock, no
 *     float, no allocation, no global state; every node decides alike;
 *   - eval is safe on any bytes: it never reads outside CODE[0..LEN) and the
 *     request, and a program it cannot run is a DENY with reason MALFORMED;
 *   - a verified program never ends MALFORMED, and runs at most one
 *     instruction per byte (jumps go forward only), so it ends within
 *     CONTRACTS_POLICY_BYTES_MAX units of gas;
 *   - anything but an explicit permit instruction reached within the gas is
 *     a DENY (fail closed).
 *
 * Not here: who may grant, revoke or request (the transaction rules, which
 * call this), the policy language (policy.h compiles it to this bytecode and
 * disassembles it), storage of programs (they travel in ConsentGrant's
 * policy_program field). The bytecode format is contracts/README.md's
 * "Instruction set"; the codes below are shared with proto/ehr/v1/tx.proto.
 *
 * Ownership: the caller owns CODE, the request and the result; nothing is
 * kept after a call returns. Thread-safe: no shared state.
 */
#ifndef EHR_CONTRACTS_VM_H
#define EHR_CONTRACTS_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* ---- limits ---- */

enum {
    CONTRACTS_POLICY_BYTES_MAX = 1024, /* a program, version byte included */
    CONTRACTS_VM_STACK_MAX = 32,       /* values on the stack at any instruction */
    CONTRACTS_VM_BYTES_MAX = 32,       /* one byte-string value */
    CONTRACTS_VM_SET_COUNT_MAX = 64,   /* elements of one inline set (in_int, in_bytes) */
    CONTRACTS_VM_KEY_BYTES = 32,       /* a key attribute: BIP-340 x-only public key */
};

/* The most gas a caller may give one evaluation. A verified program uses at
 * most one unit per byte of code, so CONTRACTS_POLICY_BYTES_MAX units always
 * suffice (CONTRACTS_VM_GAS_DEFAULT); the maximum leaves room for costlier
 * instruction sets in later versions without changing callers. */
#define CONTRACTS_VM_GAS_MAX ((uint64_t)1 << 20)
#define CONTRACTS_VM_GAS_DEFAULT ((uint64_t)CONTRACTS_POLICY_BYTES_MAX)

/* The version byte every program starts with. */
enum { CONTRACTS_VM_VERSION = 1 };

_Static_assert(CONTRACTS_VM_STACK_MAX * 2 <= 64, "the verifier's stack types fit 64 bits");
_Static_assert(CONTRACTS_VM_KEY_BYTES <= CONTRACTS_VM_BYTES_MAX, "a key is a byte-string value");
_Static_assert(CONTRACTS_VM_GAS_DEFAULT <= CONTRACTS_VM_GAS_MAX, "the default gas is allowed");
_Static_assert(CONTRACTS_POLICY_BYTES_MAX < 65536, "jump offsets are 16 bits");
_Static_assert(CONTRACTS_VM_SET_COUNT_MAX <= 255, "a set's count is one byte");

/* ---- codes shared with proto/ehr/v1/tx.proto (same numbers) ---- */

/* MemberRole: the requester's institution's role. */
enum contracts_role {
    CONTRACTS_ROLE_HOSPITAL = 1,
    CONTRACTS_ROLE_LAB = 2,
    CONTRACTS_ROLE_PHARMACY = 3,
    CONTRACTS_ROLE_INSURER = 4,
    CONTRACTS_ROLE_REGULATOR = 5,
};

/* RecordType: what kind of record is asked for. */
enum contracts_record_type {
    CONTRACTS_RECORD_IMAGING = 1, /* a DICOM study */
    CONTRACTS_RECORD_LAB_RESULT = 2,
    CONTRACTS_RECORD_PRESCRIPTION = 3,
    CONTRACTS_RECORD_DISCHARGE_SUMMARY = 4,
    CONTRACTS_RECORD_CLINICAL_NOTE = 5,
    CONTRACTS_RECORD_IMMUNIZATION = 6,
    CONTRACTS_RECORD_INVOICE = 7,
    CONTRACTS_RECORD_CLAIM = 8,
    CONTRACTS_RECORD_GENOMIC = 9,
};

/* Purpose: of a consent, and stated by a request. */
enum contracts_purpose {
    CONTRACTS_PURPOSE_TREATMENT = 1,
    CONTRACTS_PURPOSE_PAYMENT = 2,
    CONTRACTS_PURPOSE_OPERATIONS = 3,
    CONTRACTS_PURPOSE_RESEARCH = 4,
    CONTRACTS_PURPOSE_PUBLIC_HEALTH = 5,
    CONTRACTS_PURPOSE_EMERGENCY = 6,
};

/* ---- the request a program judges ---- */

/* Filled by the caller; the VM reads nothing else. */
struct contracts_vm_request {
    uint8_t requester_key[CONTRACTS_VM_KEY_BYTES];         /* the access request's signer */
    uint32_t requester_role;                               /* enum contracts_role */
    uint8_t requester_institution[CONTRACTS_VM_KEY_BYTES]; /* node key of the member the
                                                              requester is or acts for */
    bool requester_practitioner; /* a practitioner registered by that member, not its node key */
    uint32_t record_type;        /* enum contracts_record_type */
    uint8_t record_custodian[CONTRACTS_VM_KEY_BYTES]; /* node key of the record's custodian */
    uint64_t record_age_days; /* whole days from the record's anchor block time to block_time_ms */
    uint32_t consent_purpose; /* enum contracts_purpose */
    uint32_t request_purpose; /* enum contracts_purpose */
    uint64_t consent_from_ms, consent_until_ms; /* the consent's period, block time */
    uint64_t block_time_ms;                     /* the block's time: the only clock */
};

/* Attribute ids: the operand of the load instruction. A uint64 attribute
 * above INT64_MAX loads as INT64_MAX (no real time or age comes near). */
enum contracts_vm_attr {
    CONTRACTS_ATTR_REQUESTER_KEY = 1,          /* bytes */
    CONTRACTS_ATTR_REQUESTER_ROLE = 2,         /* int: enum contracts_role */
    CONTRACTS_ATTR_REQUESTER_INSTITUTION = 3,  /* bytes */
    CONTRACTS_ATTR_REQUESTER_PRACTITIONER = 4, /* bool */
    CONTRACTS_ATTR_RECORD_TYPE = 5,            /* int: enum contracts_record_type */
    CONTRACTS_ATTR_RECORD_CUSTODIAN = 6,       /* bytes */
    CONTRACTS_ATTR_RECORD_AGE_DAYS = 7,        /* int */
    CONTRACTS_ATTR_CONSENT_PURPOSE = 8,        /* int: enum contracts_purpose */
    CONTRACTS_ATTR_REQUEST_PURPOSE = 9,        /* int: enum contracts_purpose */
    CONTRACTS_ATTR_CONSENT_FROM = 10,          /* int: ms */
    CONTRACTS_ATTR_CONSENT_UNTIL = 11,         /* int: ms */
    CONTRACTS_ATTR_BLOCK_TIME = 12,            /* int: ms */
    CONTRACTS_ATTR_LAST_ = CONTRACTS_ATTR_BLOCK_TIME,
};

/* ---- values and instructions ---- */

/* A value's type, as the verifier tracks it. A bool is an integer 0 or 1 at
 * run time, but the verifier keeps it apart so that `and` on a number or a
 * jump on a number is refused. */
enum contracts_vm_type {
    CONTRACTS_VM_INT = 1,   /* int64 */
    CONTRACTS_VM_BOOL = 2,  /* int64, 0 or 1 */
    CONTRACTS_VM_BYTES = 3, /* 0..CONTRACTS_VM_BYTES_MAX bytes */
};

/*
 * Opcodes: one byte, then the operands (integers little-endian). Stack
 * effects and gas in contracts/README.md; 0x00 and every unlisted byte is
 * refused.
 */
enum contracts_vm_op {
    CONTRACTS_OP_PUSH_INT = 0x01,   /* i64 value                     -> int */
    CONTRACTS_OP_PUSH_BYTES = 0x02, /* u8 n, n bytes (n <= 32)       -> bytes */
    CONTRACTS_OP_PUSH_TRUE = 0x03,  /*                               -> bool 1 */
    CONTRACTS_OP_PUSH_FALSE = 0x04, /*                               -> bool 0 */
    CONTRACTS_OP_LOAD = 0x05,       /* u8 attribute id               -> its type */
    CONTRACTS_OP_EQ = 0x10,         /* a b (same type)               -> bool */
    CONTRACTS_OP_NE = 0x11,         /* a b (same type)               -> bool */
    CONTRACTS_OP_LT = 0x12,         /* a b (ints)                    -> bool */
    CONTRACTS_OP_LE = 0x13,         /* */
    CONTRACTS_OP_GT = 0x14,         /* */
    CONTRACTS_OP_GE = 0x15,         /* */
    CONTRACTS_OP_AND = 0x18,        /* a b (bools)                   -> bool */
    CONTRACTS_OP_OR = 0x19,         /* a b (bools)                   -> bool */
    CONTRACTS_OP_NOT = 0x1a,        /* a (bool)                      -> bool */
    CONTRACTS_OP_IN_INT = 0x20,     /* u8 n (1..64), n x i64; a (int) -> bool */
    CONTRACTS_OP_IN_BYTES = 0x21,   /* u8 n (1..64), n x (u8 len, len bytes); a (bytes) -> bool */
    CONTRACTS_OP_JMP = 0x30,        /* u16 d: continue at the next instruction + d */
    CONTRACTS_OP_JMPF = 0x31,       /* u16 d; a (bool): jump as jmp when a is false */
    CONTRACTS_OP_PERMIT = 0x40,     /* stop: permit */
    CONTRACTS_OP_DENY = 0x41,       /* stop: deny */
};

/* ---- verification ---- */

/*
 * Check that CODE[0..LEN) is a program every evaluation can run to a
 * decision without a fault: the version byte, known opcodes and attribute
 * ids, operands inside the program, byte strings and sets within bounds,
 * every instruction reachable, jump targets forward, at an instruction's
 * start or exactly at the end, the same stack depth and types on every path
 * to each instruction (and to the end), depth within 0..CONTRACTS_VM_STACK_MAX,
 * and every operand of the type its instruction needs.
 *
 * Returns 0; EHR_ETOOBIG when LEN passes CONTRACTS_POLICY_BYTES_MAX;
 * EHR_EINVAL for anything else. On error DIAG (may be NULL) gets one line,
 * "offset N: what is wrong", which always fits whole; on success DIAG is
 * not written. Allocates nothing (about 16 KiB of stack).
 */
int contracts_vm_verify(const uint8_t *code, size_t len, ehr_diag *diag);

/* ---- evaluation ---- */

enum contracts_vm_decision {
    CONTRACTS_VM_DENY = 0, /* the zero value denies */
    CONTRACTS_VM_PERMIT = 1,
};

enum contracts_vm_reason {
    CONTRACTS_VM_REASON_PERMIT = 1,    /* a permit instruction ran */
    CONTRACTS_VM_REASON_DENY = 2,      /* a deny instruction ran */
    CONTRACTS_VM_REASON_END = 3,       /* ran off the end: no rule matched */
    CONTRACTS_VM_REASON_GAS = 4,       /* out of gas */
    CONTRACTS_VM_REASON_MALFORMED = 5, /* not a runnable program (never after verify) */
};

struct contracts_vm_result {
    enum contracts_vm_decision decision; /* PERMIT only with reason PERMIT */
    enum contracts_vm_reason reason;
    uint64_t gas_used; /* <= the limit; == the limit when reason is GAS */
    /* The offset of the instruction that decided (permit, deny, the one gas
     * did not cover, the fault), or LEN when the program ran off its end. */
    uint32_t offset;
};

/* Gas of the instruction OP (for in_int and in_bytes, with COUNT elements),
 * as contracts/README.md's table; 0 for an unknown opcode. */
uint32_t contracts_vm_gas_cost(uint8_t op, uint32_t count);

/*
 * Run CODE[0..LEN) on REQUEST with at most GAS_LIMIT units of gas, and fill
 * *OUT. CODE need not be verified: whatever it holds, eval stops within LEN
 * instructions and reads only CODE[0..LEN) and REQUEST. Allocates nothing.
 *
 * Returns 0 with *OUT filled (a deny of any reason is a result, not an
 * error); EHR_EINVAL, with *OUT a MALFORMED deny, when GAS_LIMIT passes
 * CONTRACTS_VM_GAS_MAX. Preconditions: REQUEST and OUT are not NULL, CODE is
 * not NULL unless LEN is 0.
 */
int contracts_vm_eval(const uint8_t *code, size_t len, const struct contracts_vm_request *request,
                      uint64_t gas_limit, struct contracts_vm_result *out);

/* ---- names (for listings, audit lines and ehrctl) ---- */

/* "permit" / "deny". */
const char *contracts_vm_decision_name(enum contracts_vm_decision decision);
/* "permit", "deny", "end", "gas", "malformed"; "?" for others. */
const char *contracts_vm_reason_name(enum contracts_vm_reason reason);
/* What REASON means, a phrase without "denied" that reads alone or after "the policy denied:",
 * e.g. "no rule matched (ran off the end)". */
const char *contracts_vm_reason_text(enum contracts_vm_reason reason);
/* The mnemonic of OP ("push_int", "jmpf", ...), or NULL for an unknown opcode. */
const char *contracts_vm_op_name(uint8_t op);
/* The attribute's name in the policy language ("record.type"), or NULL. */
const char *contracts_vm_attr_name(uint32_t attr);
/* The attribute's type (enum contracts_vm_type), or 0 for an unknown id. */
int contracts_vm_attr_type(uint32_t attr);

#endif /* EHR_CONTRACTS_VM_H */
