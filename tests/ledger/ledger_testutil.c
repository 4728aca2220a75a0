/*
 * ledger_testutil.c - builders for the ledger's tests and benchmark (see
 * ledger_testutil.h). Test code: any failure aborts with a message.
 */
#include "ledger_testutil.h"

#include "ledger_internal.h"

#include <dirent.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TU_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ehr_panic("test builder failed: %s (%s:%d)", #cond, __FILE__, __LINE__);               \
    } while (0)

void tu_key(ehr_signing_key *key, uint32_t seed)
{
    uint8_t secret[EHR_SCHNORR_SECRET_BYTES];
    memset(secret, 0x11, sizeof secret);
    memcpy(secret, &seed, sizeof seed);
    secret[31] = 0x01;
    TU_CHECK(ehr_signing_key_from_secret(key, secret) == 0);
}

void tu_genesis(const ehr_signing_key *keys, size_t count, uint8_t **out, size_t *out_len)
{
    TU_CHECK(count <= 64);
    Ehr__V1__Member members[64];
    Ehr__V1__Member *ptrs[64];
    uint8_t kx[64][EHR_KX_PUBLIC_BYTES];
    char names[64][32], addrs[64][32];
    for (size_t i = 0; i < count; i++) {
        Ehr__V1__Member m = EHR__V1__MEMBER__INIT;
        snprintf(names[i], sizeof names[i], "Institution %zu", i);
        snprintf(addrs[i], sizeof addrs[i], "10.0.0.%zu:7400", i + 1);
        memset(kx[i], (int)(0x40 + i), EHR_KX_PUBLIC_BYTES);
        m.name = names[i];
        m.role = (Ehr__V1__MemberRole)(1 + i % 5);
        m.node_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)keys[i].public_key};
        m.kx_key = (ProtobufCBinaryData){EHR_KX_PUBLIC_BYTES, kx[i]};
        m.peer_address = addrs[i];
        members[i] = m;
        ptrs[i] = &members[i];
    }
    Ehr__V1__Genesis g = EHR__V1__GENESIS__INIT;
    g.chain_id = TU_CHAIN_ID;
    g.time_ms = TU_GENESIS_TIME_MS;
    g.n_members = count;
    g.members = ptrs;
    ehr_diag diag;
    int rc = ledger_genesis_encode(&g, out, out_len, &diag);
    if (rc != 0)
        ehr_panic("tu_genesis: %s", diag.msg);
}

void tu_tx_body(const ehr_signing_key *signer, const char *chain_id, uint64_t expiry_ms, size_t pad,
                uint8_t **out, size_t *out_len)
{
    uint8_t nonce[EHR_TX_NONCE_BYTES], patient[32], ct_hash[32];
    ehr_random_bytes(nonce, sizeof nonce);
    ehr_random_bytes(patient, sizeof patient);
    ehr_random_bytes(ct_hash, sizeof ct_hash);
    uint8_t *pointer = ehr_malloc(pad + 1);
    ehr_random_bytes(pointer, pad + 1);
    Ehr__V1__RecordAnchor ra = EHR__V1__RECORD_ANCHOR__INIT;
    ra.patient_key = (ProtobufCBinaryData){sizeof patient, patient};
    ra.record_type = EHR__V1__RECORD_TYPE__RECORD_TYPE_LAB_RESULT;
    ra.encrypted_pointer = (ProtobufCBinaryData){pad + 1, pointer};
    ra.ciphertext_hash = (ProtobufCBinaryData){sizeof ct_hash, ct_hash};
    ra.ciphertext_bytes = 48213;
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.chain_id = (char *)chain_id;
    body.signer = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)signer->public_key};
    body.nonce = (ProtobufCBinaryData){sizeof nonce, nonce};
    body.expiry_ms = expiry_ms;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
    body.record_anchor = &ra;
    size_t n = ehr__v1__tx_body__get_packed_size(&body);
    uint8_t *p = ehr_malloc(n);
    TU_CHECK(ehr__v1__tx_body__pack(&body, p) == n);
    ehr_free(pointer);
    *out = p;
    *out_len = n;
}

void tu_tx(const ehr_signing_key *signer, const char *chain_id, uint64_t expiry_ms, size_t pad,
           uint8_t **out, size_t *out_len, uint8_t hash[EHR_HASH_BYTES])
{
    uint8_t *body;
    size_t body_len;
    tu_tx_body(signer, chain_id, expiry_ms, pad, &body, &body_len);
    TU_CHECK(ledger_tx_envelope_build(body, body_len, signer, out, out_len) == 0);
    if (hash != NULL)
        ledger_tx_hash(body, body_len, hash);
    ehr_free(body);
}

void tu_batch_make(tu_batch *b, const ehr_signing_key *signer, size_t count, size_t pad)
{
    memset(b, 0, sizeof *b);
    b->count = count;
    b->envelopes = ehr_calloc(count + 1, sizeof *b->envelopes);
    b->hashes = ehr_calloc(count + 1, EHR_HASH_BYTES);
    b->writes = ehr_calloc(count + 1, sizeof *b->writes);
    b->keys = ehr_calloc(count + 1, sizeof *b->keys);
    b->results = ehr_calloc(count + 1, sizeof *b->results);
    b->result_bytes = ehr_calloc(count + 1, sizeof *b->result_bytes);
    memset(b->value, 0x5a, sizeof b->value);
    for (size_t i = 0; i < count; i++) {
        uint8_t *env;
        size_t len;
        tu_tx(signer, TU_CHAIN_ID, TU_GENESIS_TIME_MS + 365ull * 86400 * 1000, pad, &env, &len,
              b->hashes[i]);
        b->envelopes[i] = (ledger_bytes){env, len};
        memcpy(b->keys[i], "rec/", 4);
        memcpy(b->keys[i] + 4, b->hashes[i], EHR_HASH_BYTES);
        b->writes[i] = (ledger_state_write){.key = b->keys[i],
                                            .key_len = sizeof b->keys[i],
                                            .value = b->value,
                                            .value_len = sizeof b->value};
    }
}

void tu_batch_free(tu_batch *b)
{
    for (size_t i = 0; i < b->count; i++)
        ehr_free((void *)b->envelopes[i].data);
    ehr_free(b->envelopes);
    ehr_free(b->hashes);
    ehr_free(b->writes);
    ehr_free(b->keys);
    ehr_free(b->results);
    ehr_free(b->result_bytes);
    memset(b, 0, sizeof *b);
}

size_t tu_result(uint8_t out[EHR_TX_RESULT_BYTES_MAX], size_t index, uint32_t salt)
{
    if (index % 3 == 0)
        return 0;
    char reason[64];
    snprintf(reason, sizeof reason, "result of tx %zu (%u)", index, (unsigned)salt);
    Ehr__V1__TxResult r = EHR__V1__TX_RESULT__INIT;
    r.code = (Ehr__V1__TxResultCode)(1 + index % 6);
    r.reason = reason;
    r.gas_used = 1000 + index;
    size_t n = ehr__v1__tx_result__get_packed_size(&r);
    TU_CHECK(n <= EHR_TX_RESULT_BYTES_MAX);
    return ehr__v1__tx_result__pack(&r, out);
}

void tu_batch_results(tu_batch *b, uint32_t salt)
{
    for (size_t i = 0; i < b->count; i++) {
        size_t n = tu_result(b->result_bytes[i], i, salt);
        b->results[i] = (ledger_bytes){n > 0 ? b->result_bytes[i] : NULL, n};
    }
}

void tu_block_next(const ledger_tip *tip, const tu_batch *b, const ehr_signing_key *proposer,
                   uint8_t **out, size_t *out_len)
{
    ledger_block_params p = {.height = tip->height + 1,
                             .time_ms = tip->time_ms + 1000,
                             .raft_term = 1,
                             .raft_index = tip->height + 1};
    memcpy(p.prev_hash, tip->hash, EHR_HASH_BYTES);
    ehr_diag diag;
    int rc =
        ledger_block_build(&p, b->envelopes, b->count, (const uint8_t(*)[EHR_HASH_BYTES])b->hashes,
                           proposer, out, out_len, NULL, &diag);
    if (rc != 0)
        ehr_panic("tu_block_next: %s", diag.msg);
}

int tu_append(ledger *l, const ehr_signing_key *proposer, size_t count, uint64_t *height,
              ehr_diag *diag)
{
    ledger_tip tip;
    TU_CHECK(ledger_tip_get(l, &tip, NULL) == 0);
    tu_batch b;
    tu_batch_make(&b, proposer, count, 16);
    tu_batch_results(&b, (uint32_t)(tip.height + 1));
    uint8_t *block;
    size_t len;
    tu_block_next(&tip, &b, proposer, &block, &len);
    ledger_append req = {.block = block,
                         .block_len = len,
                         .tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])b.hashes,
                         .writes = b.writes,
                         .write_count = b.count,
                         .results = b.results,
                         .result_count = b.count,
                         .applied_index = tip.height + 1};
    int rc = ledger_append_block(l, &req, diag);
    if (height != NULL)
        *height = tip.height + 1;
    ehr_free(block);
    tu_batch_free(&b);
    return rc;
}

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/ehr-ledger-XXXXXX", base != NULL ? base : "/tmp");
    TU_CHECK(mkdtemp(tmpl) != NULL);
    return ehr_strdup(tmpl);
}

void tu_rmdir(char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
    ehr_free(dir);
}

/* Open DIR's environment that holds DB (the derived one for the tx index,
 * the world state and the checkpoint) for one write transaction. */
static int raw_begin(const char *dir, const char *db, MDB_env **env, MDB_txn **txn, MDB_dbi *dbi)
{
    int rc = mdb_env_create(env);
    if (rc != 0)
        return rc;
    mdb_env_set_maxdbs(*env, 8);
    bool derived = strcmp(db, LEDGER__DB_TXS) == 0 || strcmp(db, LEDGER__DB_STATE) == 0 ||
                   strcmp(db, LEDGER__DB_DERIVED_META) == 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, LEDGER__DERIVED_FILE);
    rc = derived ? mdb_env_open(*env, path, MDB_NOTLS | MDB_NOSUBDIR, 0600)
                 : mdb_env_open(*env, dir, MDB_NOTLS, 0600);
    if (rc == 0)
        rc = mdb_txn_begin(*env, NULL, 0, txn);
    if (rc == 0) {
        rc = mdb_dbi_open(*txn, db, 0, dbi);
        if (rc != 0)
            mdb_txn_abort(*txn);
    }
    if (rc != 0)
        mdb_env_close(*env);
    return rc;
}

static int raw_end(MDB_env *env, MDB_txn *txn, int rc)
{
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}

int tu_raw_edit(const char *dir, const char *db, const void *key, size_t key_len,
                void (*edit)(uint8_t *value, size_t *len, void *ctx), void *ctx)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = raw_begin(dir, db, &env, &txn, &dbi);
    if (rc != 0)
        return rc;
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key}, v;
    rc = mdb_get(txn, dbi, &k, &v);
    if (rc == 0) {
        size_t len = v.mv_size;
        uint8_t *copy = ehr_malloc(len + 4096);
        memcpy(copy, v.mv_data, len);
        edit(copy, &len, ctx);
        MDB_val nv = {.mv_size = len, .mv_data = copy};
        rc = mdb_put(txn, dbi, &k, &nv, 0);
        ehr_free(copy);
    }
    return raw_end(env, txn, rc);
}

int tu_raw_put(const char *dir, const char *db, const void *key, size_t key_len, const void *value,
               size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = raw_begin(dir, db, &env, &txn, &dbi);
    if (rc != 0)
        return rc;
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key};
    MDB_val v = {.mv_size = len, .mv_data = (void *)value};
    rc = mdb_put(txn, dbi, &k, &v, 0);
    return raw_end(env, txn, rc);
}
