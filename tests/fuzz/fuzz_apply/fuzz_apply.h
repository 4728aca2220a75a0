/*
 * fuzz_apply.h - the program format of fuzz_apply's inputs, shared by the
 * target (fuzz_apply.c) and the program that writes its seeds
 * (apply_seeds.c). Not a wire format: it changes with the target, and the
 * seeds are written again when it does.
 *
 * An input is a program over a fixed cast of FUZZ_APPLY_PARTY_COUNT parties
 * (keys from party_make, the same in every run):
 *
 *   byte 0      flags: FUZZ_APPLY_FLAG_NO_EMERGENCY (the chain's genesis
 *               lets no role use emergency access; else hospitals and labs)
 *   then steps, at most FUZZ_APPLY_STEPS_MAX, each an op byte (op %
 *   FUZZ_APPLY_OP_COUNT) and its operands, one byte each unless said:
 *
 *   BLOCK              hours     the next block, HOURS later (255: 4,000 days
 *                                later, past every transaction's expiry)
 *   ENROLL             signer patient
 *   PRACTITIONER_ADD   signer practitioner
 *   PRACTITIONER_REMOVE signer practitioner
 *   ANCHOR             signer patient type supersedes (0: none, else a
 *                                record id picked by supersedes - 1)
 *   GRANT              signer grantee n_types type... n_ids id... purpose
 *                      from_days (signed, from the block time) length_days
 *                      policy (FUZZ_APPLY_POLICY_*, then its operands)
 *                      fragment_count fragment_size (254: the largest, 255:
 *                      one past it)
 *   REVOKE             signer consent
 *   ACCESS             signer record purpose
 *   EMERGENCY          signer record reason (FUZZ_APPLY_REASON_*; the last
 *                                kind takes a length and that many bytes)
 *   PROPOSE_ADMIT      signer newcomer role expires_hours (signed)
 *   PROPOSE_REMOVE     signer member expires_hours (signed)
 *   APPROVE            signer proposal
 *   ERASE              signer record ground (modulo 7: one past the last)
 *
 * and every operation but BLOCK ends with a mode byte: its low two bits say
 * what the caller knows of the signature (FUZZ_APPLY_SIG_*), and
 * FUZZ_APPLY_FLIP adds three bytes: a big-endian position in the envelope
 * and a mask to XOR into the byte there.
 *
 * A party operand is an index modulo FUZZ_APPLY_PARTY_COUNT (FUZZ_APPLY_*
 * below). A record, consent or proposal operand picks among the ids of the
 * last FUZZ_APPLY_SEEN_MAX transactions of that kind (whatever their
 * result): with K of them, the operand modulo K + 1, where K means an id
 * that names nothing. A missing byte reads as 0.
 */
#ifndef EHR_TESTS_FUZZ_APPLY_H
#define EHR_TESTS_FUZZ_APPLY_H

enum fuzz_apply_op {
    FUZZ_APPLY_OP_BLOCK,
    FUZZ_APPLY_OP_ENROLL,
    FUZZ_APPLY_OP_PRACTITIONER_ADD,
    FUZZ_APPLY_OP_PRACTITIONER_REMOVE,
    FUZZ_APPLY_OP_ANCHOR,
    FUZZ_APPLY_OP_GRANT,
    FUZZ_APPLY_OP_REVOKE,
    FUZZ_APPLY_OP_ACCESS,
    FUZZ_APPLY_OP_EMERGENCY,
    FUZZ_APPLY_OP_PROPOSE_ADMIT,
    FUZZ_APPLY_OP_PROPOSE_REMOVE,
    FUZZ_APPLY_OP_APPROVE,
    FUZZ_APPLY_OP_ERASE,
    FUZZ_APPLY_OP_COUNT
};

/* The cast: members (written at genesis), then parties that start as no one. */
enum fuzz_apply_party {
    FUZZ_APPLY_HOSPITAL,
    FUZZ_APPLY_LAB,
    FUZZ_APPLY_INSURER,
    FUZZ_APPLY_PHARMACY,
    FUZZ_APPLY_PRACTITIONER_1,
    FUZZ_APPLY_PRACTITIONER_2,
    FUZZ_APPLY_PATIENT_1,
    FUZZ_APPLY_PATIENT_2,
    FUZZ_APPLY_PATIENT_3,
    FUZZ_APPLY_NEWCOMER_1,
    FUZZ_APPLY_NEWCOMER_2,
    FUZZ_APPLY_STRANGER,
    FUZZ_APPLY_PARTY_COUNT,
    FUZZ_APPLY_MEMBER_COUNT = FUZZ_APPLY_PRACTITIONER_1
};

enum {
    FUZZ_APPLY_STEPS_MAX = 40, /* keeps an input at a few milliseconds */
    FUZZ_APPLY_SEEN_MAX = 8,
    FUZZ_APPLY_FLAG_NO_EMERGENCY = 1,
    /* the mode byte */
    FUZZ_APPLY_SIG_VALID = 0,
    FUZZ_APPLY_SIG_UNCHECKED = 1,
    FUZZ_APPLY_SIG_INVALID = 2,
    FUZZ_APPLY_FLIP = 4,
};

/* A grant's policy operand (modulo FUZZ_APPLY_POLICY_COUNT). */
enum fuzz_apply_policy {
    FUZZ_APPLY_POLICY_NONE,
    FUZZ_APPLY_POLICY_COMPILED, /* then an index into the compiled policies */
    FUZZ_APPLY_POLICY_RAW,      /* then a length (modulo 64) and that many bytes */
    FUZZ_APPLY_POLICY_VERSIONED /* the same after the VM's version byte */,
    FUZZ_APPLY_POLICY_COUNT
};

/* The compiled policies, in order (fuzz_apply.c holds their sources). */
enum fuzz_apply_compiled {
    FUZZ_APPLY_COMPILED_PERMIT,       /* permit if true */
    FUZZ_APPLY_COMPILED_HOSPITALS,    /* permit if requester.role == hospital */
    FUZZ_APPLY_COMPILED_NOT_LAB,      /* deny lab results, permit the rest */
    FUZZ_APPLY_COMPILED_RECENT,       /* treatment, records under 30 days old */
    FUZZ_APPLY_COMPILED_PRACTITIONER, /* practitioners only */
    FUZZ_APPLY_COMPILED_CUSTODIAN,    /* the record's custodian only */
    FUZZ_APPLY_COMPILED_GAS_BURNER,   /* needs more than the request's gas */
    FUZZ_APPLY_COMPILED_COUNT
};

/* An emergency access's reason operand (modulo FUZZ_APPLY_REASON_COUNT). */
enum fuzz_apply_reason {
    FUZZ_APPLY_REASON_OK,       /* "unconscious, brought in by ambulance" */
    FUZZ_APPLY_REASON_EMPTY,    /* refused */
    FUZZ_APPLY_REASON_LONGEST,  /* the longest allowed, a multi-byte character at the cut */
    FUZZ_APPLY_REASON_TOO_LONG, /* one byte over */
    FUZZ_APPLY_REASON_BAD_UTF8, /* a cut UTF-8 sequence */
    FUZZ_APPLY_REASON_CONTROL,  /* a control character */
    FUZZ_APPLY_REASON_FROM_INPUT /* then a length (modulo 64) and that many bytes */,
    FUZZ_APPLY_REASON_COUNT
};

#endif /* EHR_TESTS_FUZZ_APPLY_H */
