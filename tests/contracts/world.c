/*
 * world.c - see world.h. A sorted array of owned (key, value) pairs; reads
 * by binary search; a block's writes merged in after it, in one pass.
 * Built for clarity first: the tests' worlds hold a few thousand keys, the
 * benchmark's a few hundred thousand.
 */
#include "world.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "contracts_internal.h"
#include "ledger_format.h"

struct entry {
    uint8_t *key;
    size_t key_len;
    uint8_t *value;
    size_t value_len;
};

struct world {
    struct entry *e;
    size_t n, cap;
    uint64_t height;
    uint64_t nonce;
    struct contracts_state view; /* the open block's (it borrows it) */
    bool block_open;
};

void party_make(struct party *p, uint32_t seed)
{
    uint8_t secret[32];
    crypto_generichash(secret, sizeof secret, (const uint8_t *)&seed, sizeof seed,
                       (const uint8_t *)"world-party-sig", 15);
    EHR_ASSERT(ehr_signing_key_from_secret(&p->sig, secret) == 0);
    crypto_generichash(secret, sizeof secret, (const uint8_t *)&seed, sizeof seed,
                       (const uint8_t *)"world-party-kx", 14);
    EHR_ASSERT(ehr_kx_key_from_secret(&p->kx, secret) == 0);
    sodium_memzero(secret, sizeof secret);
}

/* ---- the map ---- */

static int cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0)
        return c;
    return an < bn ? -1 : an > bn ? 1 : 0;
}

/* The first index whose key is >= KEY. */
static size_t lower_bound(const struct world *w, const uint8_t *key, size_t key_len)
{
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp(w->e[mid].key, w->e[mid].key_len, key, key_len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool found_at(const struct world *w, size_t i, const uint8_t *key, size_t key_len)
{
    return i < w->n && cmp(w->e[i].key, w->e[i].key_len, key, key_len) == 0;
}

static uint8_t *dup(const uint8_t *p, size_t n)
{
    uint8_t *q = ehr_malloc(n > 0 ? n : 1);
    if (n > 0)
        memcpy(q, p, n);
    return q;
}

static void map_put(struct world *w, const uint8_t *key, size_t key_len, const uint8_t *value,
                    size_t value_len)
{
    size_t i = lower_bound(w, key, key_len);
    if (found_at(w, i, key, key_len)) {
        ehr_free(w->e[i].value);
        w->e[i].value = dup(value, value_len);
        w->e[i].value_len = value_len;
        return;
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->e = ehr_realloc(w->e, w->cap * sizeof *w->e);
    }
    memmove(&w->e[i + 1], &w->e[i], (w->n - i) * sizeof *w->e);
    w->e[i] = (struct entry){dup(key, key_len), key_len, dup(value, value_len), value_len};
    w->n++;
}

static int view_get(void *ctx, const uint8_t *key, size_t key_len, uint8_t *value, size_t *len)
{
    struct world *w = ctx;
    size_t i = lower_bound(w, key, key_len);
    if (!found_at(w, i, key, key_len))
        return EHR_ENOTFOUND;
    memcpy(value, w->e[i].value, w->e[i].value_len);
    *len = w->e[i].value_len;
    return 0;
}

static int view_scan(void *ctx, const uint8_t *prefix, size_t prefix_len, contracts_scan_fn fn,
                     void *fn_ctx)
{
    struct world *w = ctx;
    for (size_t i = lower_bound(w, prefix, prefix_len); i < w->n; i++) {
        const struct entry *e = &w->e[i];
        if (e->key_len < prefix_len || memcmp(e->key, prefix, prefix_len) != 0)
            break;
        int rc = fn(fn_ctx, e->key, e->key_len, e->value, e->value_len);
        if (rc != 0)
            return rc;
    }
    return 0;
}

struct contracts_state world_view(struct world *w)
{
    return (struct contracts_state){.ctx = w, .get = view_get, .scan = view_scan};
}

struct world *world_new(const Ehr__V1__MemberRole *emergency_roles, size_t count)
{
    struct world *w = ehr_calloc(1, sizeof *w);
    Ehr__V1__EmergencyPolicy p = EHR__V1__EMERGENCY_POLICY__INIT;
    p.n_roles = count;
    p.roles = (Ehr__V1__MemberRole *)emergency_roles;
    uint8_t buf[64];
    EHR_ASSERT(ehr__v1__emergency_policy__get_packed_size(&p) <= sizeof buf);
    size_t n = ehr__v1__emergency_policy__pack(&p, buf);
    map_put(w, (const uint8_t *)LEDGER_EMERGENCY_KEY, strlen(LEDGER_EMERGENCY_KEY), buf, n);
    return w;
}

void world_free(struct world *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++) {
        ehr_free(w->e[i].key);
        ehr_free(w->e[i].value);
    }
    ehr_free(w->e);
    ehr_free(w);
}

uint64_t world_height(const struct world *w)
{
    return w->height;
}

size_t world_size(const struct world *w)
{
    return w->n;
}

void world_member_add(struct world *w, const struct party *p, Ehr__V1__MemberRole role)
{
    Ehr__V1__Member m = EHR__V1__MEMBER__INIT;
    char name[32], address[32];
    snprintf(name, sizeof name, "Member %02x%02x", p->sig.public_key[0], p->sig.public_key[1]);
    snprintf(address, sizeof address, "m%02x%02x.example:7400", p->sig.public_key[0],
             p->sig.public_key[1]);
    m.name = name;
    m.role = role;
    m.node_key = (ProtobufCBinaryData){32, (uint8_t *)p->sig.public_key};
    m.kx_key = (ProtobufCBinaryData){32, (uint8_t *)p->kx.public_key};
    m.peer_address = address;
    uint8_t buf[256];
    EHR_ASSERT(ehr__v1__member__get_packed_size(&m) <= sizeof buf);
    size_t n = ehr__v1__member__pack(&m, buf);
    uint8_t key[LEDGER_MEMBER_KEY_BYTES];
    ledger_member_key(key, p->sig.public_key);
    map_put(w, key, sizeof key, buf, n);
}

/* ---- transactions ---- */

void tx_free(struct tx *t)
{
    ehr_free(t->envelope);
    memset(t, 0, sizeof *t);
}

void tx_sign(struct world *w, const struct party *signer, Ehr__V1__TxBody *body, struct tx *out)
{
    uint8_t nonce[EHR_TX_NONCE_BYTES] = {0};
    w->nonce++;
    memcpy(nonce, &w->nonce, sizeof w->nonce);
    body->chain_id = WORLD_CHAIN_ID;
    body->signer = (ProtobufCBinaryData){32, (uint8_t *)signer->sig.public_key};
    body->nonce = (ProtobufCBinaryData){sizeof nonce, nonce};
    body->expiry_ms = WORLD_GENESIS_MS + 3650 * WORLD_DAY_MS;
    size_t n = ehr__v1__tx_body__get_packed_size(body);
    uint8_t *bytes = ehr_malloc(n);
    ehr__v1__tx_body__pack(body, bytes);
    ledger_tx_hash(bytes, n, out->hash);
    /* Fixed auxiliary randomness, so the same transactions have the same
     * bytes in every run, signature included (ledger_tx_envelope_build
     * draws fresh randomness): a program of transactions with a byte
     * flipped in the envelope then reads the same on two worlds. */
    static const uint8_t aux[32] = {0};
    uint8_t sig[EHR_SCHNORR_SIG_BYTES];
    EHR_ASSERT(ehr_schnorr_sign_aux(&signer->sig, out->hash, aux, sig) == 0);
    Ehr__V1__TxEnvelope env = EHR__V1__TX_ENVELOPE__INIT;
    env.body = (ProtobufCBinaryData){n, bytes};
    env.signature = (ProtobufCBinaryData){sizeof sig, sig};
    out->len = ehr__v1__tx_envelope__get_packed_size(&env);
    out->envelope = ehr_malloc(out->len);
    ehr__v1__tx_envelope__pack(&env, out->envelope);
    ledger_tx_view view;
    EHR_ASSERT(ledger_tx_envelope_parse(out->envelope, out->len, &view, NULL) == 0); /* canonical */
    ehr_free(bytes);
}

void tx_enroll(struct world *w, const struct party *member, const struct party *patient,
               struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__PatientEnroll p = EHR__V1__PATIENT_ENROLL__INIT;
    uint8_t msg[EHR_HASH_BYTES], sig[EHR_SCHNORR_SIG_BYTES];
    contracts_enroll_message(WORLD_CHAIN_ID, member->sig.public_key, patient->sig.public_key,
                             patient->kx.public_key, msg);
    /* Fixed auxiliary randomness: the signature is in the body, so the
     * transaction's id is the same in every run. */
    static const uint8_t aux[32] = {0};
    EHR_ASSERT(ehr_schnorr_sign_aux(&patient->sig, msg, aux, sig) == 0);
    p.patient_key = (ProtobufCBinaryData){32, (uint8_t *)patient->sig.public_key};
    p.patient_kx_key = (ProtobufCBinaryData){32, (uint8_t *)patient->kx.public_key};
    p.patient_signature = (ProtobufCBinaryData){sizeof sig, sig};
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_PATIENT_ENROLL;
    b.patient_enroll = &p;
    tx_sign(w, member, &b, out);
}

void tx_practitioner(struct world *w, const struct party *member, const struct party *practitioner,
                     bool add, struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__PractitionerRegister r = EHR__V1__PRACTITIONER_REGISTER__INIT;
    Ehr__V1__PractitionerRemove d = EHR__V1__PRACTITIONER_REMOVE__INIT;
    ProtobufCBinaryData key = {32, (uint8_t *)practitioner->sig.public_key};
    if (add) {
        r.practitioner_key = key;
        b.payload_case = EHR__V1__TX_BODY__PAYLOAD_PRACTITIONER_REGISTER;
        b.practitioner_register = &r;
    } else {
        d.practitioner_key = key;
        b.payload_case = EHR__V1__TX_BODY__PAYLOAD_PRACTITIONER_REMOVE;
        b.practitioner_remove = &d;
    }
    tx_sign(w, member, &b, out);
}

void tx_anchor(struct world *w, const struct party *member, const struct party *patient,
               Ehr__V1__RecordType type, const uint8_t *supersedes, struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__RecordAnchor a = EHR__V1__RECORD_ANCHOR__INIT;
    uint8_t pointer[48], hash[32];
    memset(pointer, 0xa5, sizeof pointer);
    memcpy(pointer, &w->nonce, sizeof w->nonce);
    ehr_sha256(hash, pointer, sizeof pointer);
    a.patient_key = (ProtobufCBinaryData){32, (uint8_t *)patient->sig.public_key};
    a.record_type = type;
    a.encrypted_pointer = (ProtobufCBinaryData){sizeof pointer, pointer};
    a.ciphertext_hash = (ProtobufCBinaryData){sizeof hash, hash};
    a.ciphertext_bytes = 4096;
    if (supersedes != NULL)
        a.supersedes = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)supersedes};
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
    b.record_anchor = &a;
    tx_sign(w, member, &b, out);
}

void tx_grant(struct world *w, const struct party *patient, const struct grant *g, struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__ConsentGrant c = EHR__V1__CONSENT_GRANT__INIT;
    c.grantee_key = (ProtobufCBinaryData){32, (uint8_t *)g->grantee};
    c.n_record_types = g->n_types;
    c.record_types = (Ehr__V1__RecordType *)g->types;
    ProtobufCBinaryData *ids = ehr_calloc(g->n_ids + 1, sizeof *ids);
    for (size_t i = 0; i < g->n_ids; i++)
        ids[i] = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)g->ids[i]};
    c.n_record_ids = g->n_ids;
    c.record_ids = ids;
    c.purpose = g->purpose;
    c.valid_from_ms = g->from_ms;
    c.valid_until_ms = g->until_ms;
    c.policy_program = (ProtobufCBinaryData){g->policy_len, (uint8_t *)g->policy};
    ProtobufCBinaryData *frags = ehr_calloc(g->n_fragments + 1, sizeof *frags);
    uint8_t *frag_bytes = ehr_calloc(g->fragment_len + 1, 1);
    memset(frag_bytes, 0x5a, g->fragment_len);
    for (size_t i = 0; i < g->n_fragments; i++)
        frags[i] = (ProtobufCBinaryData){g->fragment_len, frag_bytes};
    c.n_key_fragments = g->n_fragments;
    c.key_fragments = frags;
    /* A valid delegating key: a point from a hash; an invalid one: bytes
     * that encode no ristretto255 point (a non-canonical encoding). */
    uint8_t delegating[crypto_core_ristretto255_BYTES];
    uint8_t seed[crypto_core_ristretto255_HASHBYTES] = {7};
    crypto_core_ristretto255_from_hash(delegating, seed);
    int mode = g->delegating;
    if (mode == GRANT_DELEGATING_DEFAULT)
        mode = g->n_fragments > 0 ? GRANT_DELEGATING_VALID : GRANT_DELEGATING_NONE;
    if (mode == GRANT_DELEGATING_INVALID)
        memset(delegating, 0xff, sizeof delegating);
    if (mode != GRANT_DELEGATING_NONE)
        c.delegating_key = (ProtobufCBinaryData){
            mode == GRANT_DELEGATING_SHORT ? sizeof delegating - 1 : sizeof delegating, delegating};
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_GRANT;
    b.consent_grant = &c;
    tx_sign(w, patient, &b, out);
    ehr_free(ids);
    ehr_free(frags);
    ehr_free(frag_bytes);
}

void tx_revoke(struct world *w, const struct party *patient, const uint8_t grant_id[EHR_HASH_BYTES],
               struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__ConsentRevoke r = EHR__V1__CONSENT_REVOKE__INIT;
    r.grant_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)grant_id};
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_CONSENT_REVOKE;
    b.consent_revoke = &r;
    tx_sign(w, patient, &b, out);
}

void tx_erase(struct world *w, const struct party *signer, const uint8_t *record_id,
              size_t record_id_len, Ehr__V1__EraseGround ground, struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__RecordErase e = EHR__V1__RECORD_ERASE__INIT;
    e.record_id = (ProtobufCBinaryData){record_id_len, (uint8_t *)record_id};
    e.ground = ground;
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ERASE;
    b.record_erase = &e;
    tx_sign(w, signer, &b, out);
}

void tx_access(struct world *w, const struct party *requester,
               const uint8_t record_id[EHR_HASH_BYTES], Ehr__V1__Purpose purpose, struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__AccessRequest r = EHR__V1__ACCESS_REQUEST__INIT;
    r.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)record_id};
    r.purpose = purpose;
    r.requester_kx_key = (ProtobufCBinaryData){32, (uint8_t *)requester->kx.public_key};
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_ACCESS_REQUEST;
    b.access_request = &r;
    tx_sign(w, requester, &b, out);
}

void tx_emergency(struct world *w, const struct party *requester,
                  const uint8_t record_id[EHR_HASH_BYTES], const char *reason, struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__EmergencyAccess e = EHR__V1__EMERGENCY_ACCESS__INIT;
    e.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)record_id};
    e.reason = (char *)reason;
    e.requester_kx_key = (ProtobufCBinaryData){32, (uint8_t *)requester->kx.public_key};
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_EMERGENCY_ACCESS;
    b.emergency_access = &e;
    tx_sign(w, requester, &b, out);
}

void tx_propose_admit(struct world *w, const struct party *member, const struct party *newcomer,
                      Ehr__V1__MemberRole role, uint64_t expires_ms, struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__MemberProposal p = EHR__V1__MEMBER_PROPOSAL__INIT;
    Ehr__V1__Member m = EHR__V1__MEMBER__INIT;
    char name[32], address[32];
    snprintf(name, sizeof name, "Member %02x%02x", newcomer->sig.public_key[0],
             newcomer->sig.public_key[1]);
    snprintf(address, sizeof address, "m%02x%02x.example:7400", newcomer->sig.public_key[0],
             newcomer->sig.public_key[1]);
    m.name = name;
    m.role = role;
    m.node_key = (ProtobufCBinaryData){32, (uint8_t *)newcomer->sig.public_key};
    m.kx_key = (ProtobufCBinaryData){32, (uint8_t *)newcomer->kx.public_key};
    m.peer_address = address;
    p.change_case = EHR__V1__MEMBER_PROPOSAL__CHANGE_ADMIT;
    p.admit = &m;
    p.expires_ms = expires_ms;
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_MEMBER_PROPOSAL;
    b.member_proposal = &p;
    tx_sign(w, member, &b, out);
}

void tx_propose_remove(struct world *w, const struct party *member, const uint8_t *node_key,
                       uint64_t expires_ms, struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__MemberProposal p = EHR__V1__MEMBER_PROPOSAL__INIT;
    p.change_case = EHR__V1__MEMBER_PROPOSAL__CHANGE_REMOVE;
    p.remove = (ProtobufCBinaryData){32, (uint8_t *)node_key};
    p.expires_ms = expires_ms;
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_MEMBER_PROPOSAL;
    b.member_proposal = &p;
    tx_sign(w, member, &b, out);
}

void tx_approve(struct world *w, const struct party *member,
                const uint8_t proposal_id[EHR_HASH_BYTES], struct tx *out)
{
    Ehr__V1__TxBody b = EHR__V1__TX_BODY__INIT;
    Ehr__V1__MemberApproval a = EHR__V1__MEMBER_APPROVAL__INIT;
    a.proposal_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)proposal_id};
    b.payload_case = EHR__V1__TX_BODY__PAYLOAD_MEMBER_APPROVAL;
    b.member_approval = &a;
    tx_sign(w, member, &b, out);
}

/* ---- blocks ---- */

contracts_block *world_block_open(struct world *w, uint64_t time_ms)
{
    EHR_ASSERT(!w->block_open);
    w->view = world_view(w);
    struct contracts_block_ctx ctx = {.height = w->height + 1, .time_ms = time_ms};
    snprintf(ctx.chain_id, sizeof ctx.chain_id, "%s", WORLD_CHAIN_ID);
    contracts_block *b;
    EHR_ASSERT(contracts_block_begin(&w->view, &ctx, &b) == 0);
    w->block_open = true;
    return b;
}

/* Fold COUNT writes, sorted by key, into the map in one merge pass (a put
 * per write would move the tail of the map each time: quadratic in the
 * benchmark's worlds of a few hundred thousand keys). */
static void map_fold(struct world *w, const ledger_state_write *writes, size_t count)
{
    size_t puts = 0;
    for (size_t j = 0; j < count; j++)
        puts += !writes[j].remove;
    size_t cap = w->n + puts > 0 ? w->n + puts : 1;
    struct entry *out = ehr_malloc(cap * sizeof *out);
    size_t i = 0, j = 0, k = 0;
    while (i < w->n || j < count) {
        int c = i == w->n    ? 1
                : j == count ? -1
                             : cmp(w->e[i].key, w->e[i].key_len, writes[j].key, writes[j].key_len);
        if (c < 0) {
            out[k++] = w->e[i++];
            continue;
        }
        const ledger_state_write *wr = &writes[j++];
        EHR_ASSERT(j == count || cmp(wr->key, wr->key_len, writes[j].key, writes[j].key_len) < 0);
        if (c == 0) {
            struct entry old = w->e[i++];
            ehr_free(old.value);
            if (wr->remove) {
                ehr_free(old.key);
                continue;
            }
            out[k++] =
                (struct entry){old.key, old.key_len, dup(wr->value, wr->value_len), wr->value_len};
        } else if (!wr->remove) {
            out[k++] = (struct entry){dup(wr->key, wr->key_len), wr->key_len,
                                      dup(wr->value, wr->value_len), wr->value_len};
        }
    }
    ehr_free(w->e);
    w->e = out;
    w->n = k;
    w->cap = cap;
}

void world_block_close(struct world *w, contracts_block *b)
{
    EHR_ASSERT(w->block_open);
    const ledger_state_write *writes;
    size_t n = contracts_block_writes(b, &writes);
    map_fold(w, writes, n);
    contracts_block_end(b);
    w->block_open = false;
    w->height++;
}

int world_block(struct world *w, uint64_t time_ms, const struct tx *txs, size_t count,
                const enum contracts_sig *sigs, struct contracts_tx_result *results)
{
    contracts_block *b = world_block_open(w, time_ms);
    for (size_t i = 0; i < count; i++) {
        struct contracts_tx t = {.envelope = txs[i].envelope,
                                 .len = txs[i].len,
                                 .hash = txs[i].hash,
                                 .position = (uint32_t)i,
                                 .sig = sigs != NULL ? sigs[i] : CONTRACTS_SIG_UNCHECKED};
        int rc = contracts_apply_tx(b, &t, &results[i]);
        if (rc != 0) {
            contracts_block_end(b);
            w->block_open = false;
            return rc;
        }
    }
    world_block_close(w, b);
    return 0;
}

int world_one(struct world *w, uint64_t time_ms, const struct tx *t, struct contracts_tx_result *r)
{
    struct contracts_tx_result local;
    if (r == NULL)
        r = &local;
    EHR_ASSERT(world_block(w, time_ms, t, 1, NULL, r) == 0);
    return r->code;
}

const uint8_t *world_get(struct world *w, const uint8_t *key, size_t key_len, size_t *len)
{
    size_t i = lower_bound(w, key, key_len);
    if (!found_at(w, i, key, key_len))
        return NULL;
    *len = w->e[i].value_len;
    return w->e[i].value;
}

size_t world_scan(struct world *w, const uint8_t *prefix, size_t prefix_len,
                  void (*fn)(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                             size_t value_len),
                  void *ctx)
{
    size_t seen = 0;
    for (size_t i = lower_bound(w, prefix, prefix_len); i < w->n; i++, seen++) {
        const struct entry *e = &w->e[i];
        if (e->key_len < prefix_len || memcmp(e->key, prefix, prefix_len) != 0)
            break;
        if (fn != NULL)
            fn(ctx, e->key, e->key_len, e->value, e->value_len);
    }
    return seen;
}

struct audit_collect {
    Ehr__V1__AuditEvent **list;
    size_t n;
};

static void audit_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                      size_t value_len)
{
    (void)key, (void)key_len;
    struct audit_collect *c = ctx;
    Ehr__V1__AuditEvent *ev = ehr__v1__audit_event__unpack(NULL, value_len, value);
    EHR_ASSERT(ev != NULL);
    c->list = ehr_realloc(c->list, (c->n + 1) * sizeof *c->list);
    c->list[c->n++] = ev;
}

size_t world_audit(struct world *w, const uint8_t patient[32], bool emergency_only,
                   Ehr__V1__AuditEvent ***out)
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX];
    size_t n =
        contracts_key(k, emergency_only ? CONTRACTS_PREFIX_AUDIT_EMERGENCY : CONTRACTS_PREFIX_AUDIT,
                      patient, NULL, NULL);
    struct audit_collect c = {0};
    world_scan(w, k, n, audit_one, &c);
    *out = c.list;
    return c.n;
}

void world_digest(struct world *w, uint8_t out[EHR_HASH_BYTES])
{
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    for (size_t i = 0; i < w->n; i++) {
        uint8_t lens[16];
        contracts_be64(lens, w->e[i].key_len);
        contracts_be64(lens + 8, w->e[i].value_len);
        crypto_hash_sha256_update(&h, lens, sizeof lens);
        crypto_hash_sha256_update(&h, w->e[i].key, w->e[i].key_len);
        crypto_hash_sha256_update(&h, w->e[i].value, w->e[i].value_len);
    }
    crypto_hash_sha256_final(&h, out);
}
