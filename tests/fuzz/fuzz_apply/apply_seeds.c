/*
 * apply_seeds - writes fuzz_apply's seed corpus (tests/fuzz/corpus/fuzz_apply)
 * into the directory given as the only argument: short programs
 * (fuzz_apply.h) that reach each transaction type's accepted and refused
 * paths, access decisions (a permit under a consent, under a policy, by
 * emergency; denies for each reason), governance carried by a majority,
 * same-block revocation, and signatures checked, failed or flipped. Run a
 * seed with FUZZ_APPLY_TRACE=1 to see each step's result.
 *
 * Usage: apply_seeds DIR   (rerun when fuzz_apply.h changes)
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_apply.h"

enum {
    PROGRAM_BYTES_MAX = 1024,
    /* codes of tx.proto's enums the programs name */
    IMAGING = 1,
    LAB_RESULT = 2,
    PRESCRIPTION = 3,
    TREATMENT = 1,
    PAYMENT = 2,
    ROLE_LAB = 2,
    /* a signed byte's operand */
    MINUS_ONE = 0xff,
};

enum {
    H = FUZZ_APPLY_HOSPITAL,
    LAB = FUZZ_APPLY_LAB,
    INS = FUZZ_APPLY_INSURER,
    PHARM = FUZZ_APPLY_PHARMACY,
    PRAC1 = FUZZ_APPLY_PRACTITIONER_1,
    PRAC2 = FUZZ_APPLY_PRACTITIONER_2,
    PAT1 = FUZZ_APPLY_PATIENT_1,
    PAT2 = FUZZ_APPLY_PATIENT_2,
    PAT3 = FUZZ_APPLY_PATIENT_3,
    NEW1 = FUZZ_APPLY_NEWCOMER_1,
    NEW2 = FUZZ_APPLY_NEWCOMER_2,
    STRANGER = FUZZ_APPLY_STRANGER,
};

struct program {
    uint8_t bytes[PROGRAM_BYTES_MAX];
    size_t len;
};

/* Append COUNT bytes. */
static void emit(struct program *p, int count, ...)
{
    va_list ap;
    va_start(ap, count);
    for (int i = 0; i < count; i++) {
        if (p->len == PROGRAM_BYTES_MAX) {
            fprintf(stderr, "apply_seeds: a program is over %d bytes\n", PROGRAM_BYTES_MAX);
            exit(1);
        }
        p->bytes[p->len++] = (uint8_t)va_arg(ap, int);
    }
    va_end(ap);
}

/* The operations, each with the mode byte FUZZ_APPLY_SIG_VALID unless said. */
static void block(struct program *p, int hours)
{
    emit(p, 2, FUZZ_APPLY_OP_BLOCK, hours);
}

static void enroll(struct program *p, int by, int patient)
{
    emit(p, 4, FUZZ_APPLY_OP_ENROLL, by, patient, FUZZ_APPLY_SIG_VALID);
}

static void practitioner(struct program *p, int by, int who, int add)
{
    emit(p, 4, add ? FUZZ_APPLY_OP_PRACTITIONER_ADD : FUZZ_APPLY_OP_PRACTITIONER_REMOVE, by, who,
         FUZZ_APPLY_SIG_VALID);
}

/* SUPERSEDES: 0 for none, else 1 + the record operand. */
static void anchor_mode(struct program *p, int by, int patient, int type, int supersedes, int mode)
{
    emit(p, 6, FUZZ_APPLY_OP_ANCHOR, by, patient, type, supersedes, mode);
}

static void anchor(struct program *p, int by, int patient, int type, int supersedes)
{
    anchor_mode(p, by, patient, type, supersedes, FUZZ_APPLY_SIG_VALID);
}

/* A grant of one record type for 30 days from a day before the block, with
 * two 32-byte key fragments; POLICY and its operand (one byte: a compiled
 * policy's index, or one raw byte). */
static void grant(struct program *p, int by, int grantee, int type, int purpose, int policy,
                  int operand)
{
    emit(p, 7, FUZZ_APPLY_OP_GRANT, by, grantee, 1, type, 0, purpose);
    emit(p, 3, MINUS_ONE, 30, policy);
    if (policy == FUZZ_APPLY_POLICY_COMPILED)
        emit(p, 1, operand);
    else if (policy == FUZZ_APPLY_POLICY_RAW || policy == FUZZ_APPLY_POLICY_VERSIONED)
        emit(p, 2, 1, operand);
    emit(p, 3, 2, 32, FUZZ_APPLY_SIG_VALID);
}

static void revoke(struct program *p, int by, int consent)
{
    emit(p, 4, FUZZ_APPLY_OP_REVOKE, by, consent, FUZZ_APPLY_SIG_VALID);
}

static void erase(struct program *p, int by, int record, int ground)
{
    emit(p, 5, FUZZ_APPLY_OP_ERASE, by, record, ground, FUZZ_APPLY_SIG_VALID);
}

static void access(struct program *p, int by, int record, int purpose)
{
    emit(p, 5, FUZZ_APPLY_OP_ACCESS, by, record, purpose, FUZZ_APPLY_SIG_VALID);
}

static void emergency(struct program *p, int by, int record, int reason)
{
    emit(p, 5, FUZZ_APPLY_OP_EMERGENCY, by, record, reason, FUZZ_APPLY_SIG_VALID);
}

static void propose_admit(struct program *p, int by, int newcomer, int role, int hours)
{
    emit(p, 6, FUZZ_APPLY_OP_PROPOSE_ADMIT, by, newcomer, role, hours, FUZZ_APPLY_SIG_VALID);
}

static void propose_remove(struct program *p, int by, int member, int hours)
{
    emit(p, 5, FUZZ_APPLY_OP_PROPOSE_REMOVE, by, member, hours, FUZZ_APPLY_SIG_VALID);
}

static void approve(struct program *p, int by, int proposal)
{
    emit(p, 4, FUZZ_APPLY_OP_APPROVE, by, proposal, FUZZ_APPLY_SIG_VALID);
}

static const char *dir;
static int failures;

static void put(const char *name, const struct program *p)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p->bytes, 1, p->len, f) != p->len || fclose(f) != 0) {
        perror(path);
        failures++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: apply_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    struct program p;

    /* A consent permits its grantee, denies another member; emergency
     * access permits by the chain's rules; a revoke ends the consent. */
    p = (struct program){0};
    emit(&p, 1, 0);
    enroll(&p, H, PAT1);
    anchor(&p, H, PAT1, LAB_RESULT, 0);
    block(&p, 1);
    grant(&p, PAT1, H, LAB_RESULT, TREATMENT, FUZZ_APPLY_POLICY_NONE, 0);
    block(&p, 1);
    access(&p, H, 0, TREATMENT);
    access(&p, LAB, 0, TREATMENT);
    access(&p, H, 0, PAYMENT);
    emergency(&p, LAB, 0, FUZZ_APPLY_REASON_OK);
    revoke(&p, PAT1, 0);
    access(&p, H, 0, TREATMENT);
    put("permit-deny-revoke", &p);

    /* The same within one block: grant, permit, revoke, deny. */
    p = (struct program){0};
    emit(&p, 1, 0);
    enroll(&p, LAB, PAT2);
    anchor(&p, LAB, PAT2, IMAGING, 0);
    grant(&p, PAT2, LAB, IMAGING, TREATMENT, FUZZ_APPLY_POLICY_NONE, 0);
    access(&p, LAB, 0, TREATMENT);
    revoke(&p, PAT2, 0);
    access(&p, LAB, 0, TREATMENT);
    revoke(&p, PAT2, 0);
    put("same-block", &p);

    /* Erasure: a permit, then others may not erase, the patient does (once),
     * and every later access, emergency included, is denied; within one
     * block and across blocks. */
    p = (struct program){0};
    emit(&p, 1, 0);
    enroll(&p, H, PAT1);
    anchor(&p, H, PAT1, LAB_RESULT, 0);
    block(&p, 1);
    grant(&p, PAT1, H, LAB_RESULT, TREATMENT, FUZZ_APPLY_POLICY_NONE, 0);
    access(&p, H, 0, TREATMENT);
    erase(&p, H, 0, 1);
    erase(&p, PAT2, 0, 1);
    erase(&p, PAT1, 0, 1);
    access(&p, H, 0, TREATMENT);
    erase(&p, PAT1, 0, 2);
    block(&p, 1);
    access(&p, H, 0, TREATMENT);
    emergency(&p, LAB, 0, FUZZ_APPLY_REASON_OK);
    anchor(&p, H, PAT1, LAB_RESULT, 1);
    put("erase", &p);

    /* Policies: a practitioner permitted by its member's consent and role;
     * out of gas; a policy that denies lab results; programs that do not
     * verify. */
    p = (struct program){0};
    emit(&p, 1, 0);
    enroll(&p, H, PAT1);
    practitioner(&p, H, PRAC1, 1);
    anchor(&p, H, PAT1, LAB_RESULT, 0);
    anchor(&p, LAB, PAT1, IMAGING, 0);
    block(&p, 2);
    grant(&p, PAT1, H, LAB_RESULT, TREATMENT, FUZZ_APPLY_POLICY_COMPILED,
          FUZZ_APPLY_COMPILED_HOSPITALS);
    grant(&p, PAT1, INS, LAB_RESULT, TREATMENT, FUZZ_APPLY_POLICY_COMPILED,
          FUZZ_APPLY_COMPILED_GAS_BURNER);
    grant(&p, PAT1, LAB, IMAGING, TREATMENT, FUZZ_APPLY_POLICY_COMPILED,
          FUZZ_APPLY_COMPILED_NOT_LAB);
    grant(&p, PAT1, PRAC1, IMAGING, TREATMENT, FUZZ_APPLY_POLICY_COMPILED,
          FUZZ_APPLY_COMPILED_PRACTITIONER);
    grant(&p, PAT1, H, LAB_RESULT, TREATMENT, FUZZ_APPLY_POLICY_RAW, 0x02);
    grant(&p, PAT1, H, LAB_RESULT, TREATMENT, FUZZ_APPLY_POLICY_VERSIONED, 0x99);
    block(&p, 24);
    access(&p, PRAC1, 0, TREATMENT);
    access(&p, INS, 0, TREATMENT);
    access(&p, LAB, 1, TREATMENT);
    access(&p, PRAC1, 1, TREATMENT);
    put("policies", &p);

    /* Governance: an admission carried by 3 of 4, a removal by 3 of 5, a
     * late approval of an expired proposal, refusals. */
    p = (struct program){0};
    emit(&p, 1, 0);
    propose_admit(&p, H, NEW1, ROLE_LAB, 48);
    approve(&p, H, 0);
    approve(&p, LAB, 0);
    approve(&p, INS, 0);
    approve(&p, PHARM, 0);
    block(&p, 1);
    propose_remove(&p, NEW1, INS, 48);
    approve(&p, H, 1);
    approve(&p, PHARM, 1);
    propose_admit(&p, INS, NEW2, ROLE_LAB, 48);
    propose_remove(&p, H, STRANGER, 48);
    propose_admit(&p, H, LAB, ROLE_LAB, 48);
    propose_admit(&p, H, NEW2, 0, 48);
    propose_admit(&p, H, NEW2, ROLE_LAB, MINUS_ONE);
    propose_admit(&p, LAB, NEW2, ROLE_LAB, 1);
    block(&p, 2);
    approve(&p, H, 7);
    put("governance", &p);

    /* Enrolment, practitioners and anchors, accepted and refused. */
    p = (struct program){0};
    emit(&p, 1, 0);
    enroll(&p, PRAC1, PAT1);
    enroll(&p, H, LAB);
    enroll(&p, H, PAT2);
    enroll(&p, LAB, PAT2);
    anchor(&p, H, PAT2, PRESCRIPTION, 0);
    anchor(&p, H, PAT2, PRESCRIPTION, 1);
    anchor(&p, H, PAT2, PRESCRIPTION, 1);
    anchor(&p, LAB, PAT2, PRESCRIPTION, 2);
    anchor(&p, H, PAT3, PRESCRIPTION, 0);
    anchor(&p, H, PAT2, 10, 0);
    anchor(&p, PAT2, PAT2, PRESCRIPTION, 0);
    practitioner(&p, H, PRAC2, 1);
    practitioner(&p, LAB, PRAC2, 0);
    practitioner(&p, H, LAB, 1);
    practitioner(&p, H, PRAC2, 0);
    practitioner(&p, H, PRAC2, 0);
    put("enroll-anchor-practitioner", &p);

    /* Emergency access: every kind of reason, a role the chain allows and
     * one it does not, a practitioner of a hospital. */
    p = (struct program){0};
    emit(&p, 1, 0);
    enroll(&p, PHARM, PAT3);
    anchor(&p, PHARM, PAT3, PRESCRIPTION, 0);
    practitioner(&p, H, PRAC2, 1);
    block(&p, 0);
    for (int kind = 0; kind < FUZZ_APPLY_REASON_FROM_INPUT; kind++)
        emergency(&p, H, 0, kind);
    emit(&p, 4, FUZZ_APPLY_OP_EMERGENCY, LAB, 0, FUZZ_APPLY_REASON_FROM_INPUT);
    emit(&p, 7, 6, 's', 't', 'r', 'o', 'k', 'e');
    emit(&p, 1, FUZZ_APPLY_SIG_VALID);
    emergency(&p, INS, 0, FUZZ_APPLY_REASON_OK);
    emergency(&p, PRAC2, 0, FUZZ_APPLY_REASON_OK);
    emergency(&p, STRANGER, 0, FUZZ_APPLY_REASON_OK);
    emergency(&p, H, 1, FUZZ_APPLY_REASON_OK);
    put("emergency", &p);

    /* A chain whose genesis allows no emergency access. */
    p = (struct program){0};
    emit(&p, 1, FUZZ_APPLY_FLAG_NO_EMERGENCY);
    enroll(&p, H, PAT1);
    anchor(&p, H, PAT1, IMAGING, 0);
    emergency(&p, H, 0, FUZZ_APPLY_REASON_OK);
    put("emergency-none", &p);

    /* Signatures verified here, failed already, flipped bytes; then a
     * block past every transaction's expiry. */
    p = (struct program){0};
    emit(&p, 1, 0);
    emit(&p, 4, FUZZ_APPLY_OP_ENROLL, H, PAT1, FUZZ_APPLY_SIG_UNCHECKED);
    anchor_mode(&p, H, PAT1, LAB_RESULT, 0, FUZZ_APPLY_SIG_INVALID);
    anchor_mode(&p, H, PAT1, LAB_RESULT, 0, FUZZ_APPLY_SIG_UNCHECKED);
    anchor_mode(&p, H, PAT1, LAB_RESULT, 0, FUZZ_APPLY_SIG_UNCHECKED | FUZZ_APPLY_FLIP);
    emit(&p, 3, 0, 20, 0x01); /* a byte of the body */
    anchor_mode(&p, H, PAT1, LAB_RESULT, 0, FUZZ_APPLY_SIG_VALID | FUZZ_APPLY_FLIP);
    emit(&p, 3, 0, 0, 0x80); /* the envelope's first tag */
    anchor_mode(&p, H, PAT1, LAB_RESULT, 0, FUZZ_APPLY_SIG_UNCHECKED | FUZZ_APPLY_FLIP);
    emit(&p, 3, 0xff, 0xf0, 0x04); /* the signature, from the end */
    block(&p, 255);
    anchor(&p, H, PAT1, LAB_RESULT, 0);
    put("signatures-expiry", &p);

    return failures == 0 ? 0 : 1;
}
