/*
 * audit_workload.h - a ledger of patients' audit trails, for bench_audit:
 * blocks of signed transactions, each transaction one audit event, with the
 * state writes the consent contract makes for that kind of event
 * (contracts/rules.c: the patient entry; records and their patient-records
 * index; consents and their two indexes; a revoke rewriting its consent;
 * the audit event itself, an emergency access also under
 * "audit-emergency/"), keys and values built as the rules build them,
 * appended with ledger_append_block with each transaction's result (OK; an
 * access's decision, consent and reason) encoded by
 * contracts_tx_result_encode.
 *
 * Not the rules themselves: no transaction here is checked or applied (the
 * ledger does not interpret them), so the transactions are record anchors
 * by one signer and the writes are made to match what applying the events
 * would write. Test code only: everything aborts on failure.
 */
#ifndef EHR_AUDIT_WORKLOAD_H
#define EHR_AUDIT_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "contracts.h"
#include "ehr/v1/state.pb-c.h"
#include "ledger.h"

enum {
    AUDIT_WORKLOAD_MEMBER_COUNT = 16,
    AUDIT_WORKLOAD_PRACTITIONER_COUNT = 512,
    AUDIT_WORKLOAD_PARTY_COUNT = AUDIT_WORKLOAD_MEMBER_COUNT + AUDIT_WORKLOAD_PRACTITIONER_COUNT,
    AUDIT_WORKLOAD_EVENTS_MAX = 100000000,
    AUDIT_WORKLOAD_KIND_COUNT = EHR__V1__AUDIT_KIND__AUDIT_KIND_EMERGENCY + 1,
};

typedef struct audit_workload_options {
    uint64_t events;    /* 1..AUDIT_WORKLOAD_EVENTS_MAX */
    uint64_t patients;  /* 1..events: every patient is enrolled */
    uint64_t block_txs; /* 1..EHR_BLOCK_TX_COUNT_MAX */
    uint64_t seed;      /* the same seed, the same patients and events */
} audit_workload_options;

/* The patient's last consent, for a revoke (which rewrites it). */
typedef struct audit_consent {
    bool live; /* granted and not revoked */
    uint8_t id[EHR_HASH_BYTES];
    uint32_t grantee; /* index into the parties */
    Ehr__V1__RecordType record_type;
    Ehr__V1__Purpose purpose;
    bool policy;
    uint64_t height, time_ms;
    uint32_t position;
} audit_consent;

typedef struct audit_patient {
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES];
    uint32_t events; /* the length of its trail (all of its events, once appended) */
    bool enrolled;
    bool has_record;
    uint8_t record_id[EHR_HASH_BYTES]; /* its last record */
    audit_consent consent;
} audit_patient;

/* Members (the founding members' node keys), then practitioners (each acts
 * for a member). */
typedef struct audit_party {
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES];
    uint32_t member; /* the member it is or acts for */
} audit_party;

/* Where an appended event's audit key is. */
typedef struct audit_place {
    uint32_t patient;
    uint32_t height;
    uint32_t position;
} audit_place;

typedef struct audit_workload {
    audit_workload_options options;
    uint64_t rng;
    audit_patient *patients; /* options.patients */
    uint32_t *order;         /* the patient of each event, in block order */
    uint32_t trail_max;      /* the longest trail */
    audit_party parties[AUDIT_WORKLOAD_PARTY_COUNT];
    ehr_signing_key members[AUDIT_WORKLOAD_MEMBER_COUNT]; /* members[0] proposes */
    ehr_signing_key signer;                               /* signs the transactions */
    audit_place *places;                                  /* one per appended event */
    uint64_t place_count;
    uint64_t kind_count[AUDIT_WORKLOAD_KIND_COUNT]; /* appended events by AuditKind */
    double sign_s, append_s; /* time spent building blocks, in ledger_append_block */
} audit_workload;

/*
 * Make the patients, their trails and the order of all events. Trail
 * lengths are log-normal (sigma 0.7: for a mean of 50, a median near 39 and
 * a few hundred for the longest), at least 1 each, summing to
 * options->events; the events are shuffled, so each block holds events of
 * many patients. Free with audit_workload_free.
 */
void audit_workload_init(audit_workload *w, const audit_workload_options *options);
void audit_workload_free(audit_workload *w);

/* The genesis document: the members, for ledger_genesis_init (ehr_free it). */
void audit_workload_genesis(const audit_workload *w, uint8_t **out, size_t *out_len);

/*
 * Append the blocks holding events [FROM, TO) on top of L's tip
 * (options.block_txs per block, the last one shorter; block 1 also
 * registers the practitioners). Events must be appended in order, once.
 * OVERLAY_BYTES_MAX (0: no check): abort before an append that would take
 * the overlay past this many bytes or past LEDGER_OVERLAY_BLOCKS_MAX, by the
 * ledger's own estimate, counting the blocks of this call only (for a
 * caller that has paused the checkpoints, so an append that waited for
 * room would wait forever).
 */
void audit_workload_append(audit_workload *w, ledger *l, uint64_t from, uint64_t to,
                           uint64_t overlay_bytes_max);

/* The audit key of an appended event: "audit/" + patient + height + position
 * (CONTRACTS_KEY_BYTES_MAX bytes of room). Returns its length. */
size_t audit_workload_key(const audit_workload *w, const audit_place *e, uint8_t *key);

#endif /* EHR_AUDIT_WORKLOAD_H */
