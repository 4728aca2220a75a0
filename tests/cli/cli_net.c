/*
 * cli_net.c - the shared fixture and checks of the ehrctl tests on a real
 * network of several members (cli_net.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli_net.h"
#include "ehr/v1/node.pb-c.h"
#include "ehr_crypto.h"
#include "ledger_format.h"
#include "read_auth.h"

struct cli_net *cli_net_start(size_t count, const char *ehrd, const struct cluster_limits *limits,
                              uint64_t leader_wait_ms)
{
    if (ehr_crypto_init() != 0)
        return NULL;
    struct cli_net *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    cluster_create(&n->c, count, ehrd, CLI_NET_EHRCTL, limits);
    if (cluster_start_all(&n->c, n->node, n->hex, leader_wait_ms) != 0) {
        cluster_destroy(&n->c, true);
        free(n);
        return NULL;
    }
    return n;
}

int cli_net_stop(struct cli_net *n)
{
    if (n == NULL)
        return 0;
    int failed = 0;
    for (size_t i = 0; i < n->c.count; i++)
        if (n->c.nodes[i].pid != 0 && cluster_stop(&n->c, i) != 0) {
            print_error("node %zu did not stop cleanly (log: %s)\n", i, n->c.nodes[i].log);
            failed = -1;
        }
    cluster_destroy(&n->c, failed != 0);
    free(n);
    return failed;
}

struct proc_result cli_net_run_env(const struct cli_net *n, const char *const *env,
                                   const char *const *args)
{
    struct proc_spec spec = {
        .path = CLI_NET_EHRCTL, .argv0 = "ehrctl", .args = args, .env = env, .cwd = n->c.root};
    return proc_run(&spec);
}

struct proc_result cli_net_run_args(const struct cli_net *n, const char *const *args)
{
    return cli_net_run_env(n, NULL, args);
}

json_t *cli_net_run_json(const struct cli_net *n, const char *save, const char *const *args)
{
    struct proc_result r = cli_net_run_args(n, args);
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    if (save != NULL)
        proc_text_write(proc_path(n->c.root, save), r.out);
    proc_result_free(&r);
    return out;
}

void cli_hex_decode(uint8_t *out, const char *hex, size_t len)
{
    assert_non_null(hex);
    assert_int_equal(strlen(hex), 2 * len);
    size_t got = 0;
    assert_int_equal(sodium_hex2bin(out, len, hex, 2 * len, NULL, &got, NULL), 0);
    assert_int_equal(got, len);
}

void cli_submitted(struct proc_result *r, char hash[CLI_NET_HEX_BYTES], char *decision, size_t size)
{
    cli_assert_ok(r);
    json_t *out = cli_parse_json(r->out);
    snprintf(hash, CLI_NET_HEX_BYTES, "%s", json_string_value(json_object_get(out, "hash")));
    json_t *result = json_object_get(out, "result");
    assert_string_equal(json_string_value(json_object_get(result, "code")), "ok");
    if (decision != NULL)
        snprintf(decision, size, "%s", json_string_value(json_object_get(result, "decision")));
    json_decref(out);
    proc_result_free(r);
    assert_int_equal(strlen(hash), 2 * EHR_HASH_BYTES);
}

void cli_net_key_hex(const struct cli_net *n, const char *name, char hex[CLI_NET_HEX_BYTES])
{
    ehr_keyfile_info info;
    assert_int_equal(ehr_keyfile_read_info(proc_path(n->c.root, name), &info, NULL), 0);
    ehr_hex_encode(hex, info.signing_public_key, EHR_SCHNORR_PUBLIC_BYTES);
}

void cli_net_patient_enroll(const struct cli_net *n, const char *key, const char *pub,
                            const char *node)
{
    struct proc_result r = cli_run(n, "keygen", "--out", key, "--no-passphrase");
    cli_assert_ok(&r);
    proc_result_free(&r);
    r = cli_run(n, "patient", "enroll", "--patient", key, "--key", "node0.key", "--node", node,
                "--wait");
    cli_assert_ok(&r);
    proc_result_free(&r);
    if (pub == NULL)
        return;
    r = cli_run(n, "patient", "public-keys", "--patient", key, "--out", pub);
    cli_assert_ok(&r);
    proc_result_free(&r);
}

void cli_net_receiving_key(const struct cli_net *n, const char *key, char hex[CLI_NET_HEX_BYTES])
{
    struct proc_result r = cli_run(n, "key", "receiving-key", key, "--json");
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    snprintf(hex, CLI_NET_HEX_BYTES, "%s", cli_json_str(out, "receiving_key"));
    json_decref(out);
    proc_result_free(&r);
    assert_int_equal(strlen(hex), 2 * EHR_PRE_PUBLIC_BYTES);
}

const char *cli_net_any_node(const struct cli_net *n)
{
    for (size_t i = 0; i < n->c.count; i++)
        if (n->c.nodes[i].pid != 0)
            return n->node[i];
    fail_msg("no node runs");
    return NULL;
}

bool cli_net_file_exists(const struct cli_net *n, const char *name)
{
    return access(proc_path(n->c.root, name), F_OK) == 0;
}

void cli_net_file_sha256(const struct cli_net *n, const char *name, uint8_t hash[EHR_SHA256_BYTES],
                         uint64_t *size)
{
    enum { READ_BYTES = 1 << 20 };
    FILE *f = fopen(proc_path(n->c.root, name), "rb");
    if (f == NULL)
        fail_msg("cannot open %s", name);
    uint8_t *buf = malloc(READ_BYTES);
    assert_non_null(buf);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    uint64_t total = 0;
    size_t got;
    while ((got = fread(buf, 1, READ_BYTES, f)) > 0) {
        crypto_hash_sha256_update(&st, buf, got);
        total += got;
    }
    assert_int_equal(ferror(f), 0);
    fclose(f);
    free(buf);
    crypto_hash_sha256_final(&st, hash);
    *size = total;
}

void cli_net_assert_same_file(const struct cli_net *n, const char *a, const char *b)
{
    uint8_t ha[EHR_SHA256_BYTES], hb[EHR_SHA256_BYTES];
    uint64_t la, lb;
    cli_net_file_sha256(n, a, ha, &la);
    cli_net_file_sha256(n, b, hb, &lb);
    if (la != lb || memcmp(ha, hb, sizeof ha) != 0)
        fail_msg("%s (%llu bytes) and %s (%llu bytes) differ", a, (unsigned long long)la, b,
                 (unsigned long long)lb);
}

const char *cli_net_blob_path(const struct cli_net *n, size_t i, const char *blob)
{
    static char path[600];
    assert_int_equal(strlen(blob), 2 * EHR_HASH_BYTES);
    snprintf(path, sizeof path, "%s/blobs/%.2s/%s", n->c.nodes[i].dir, blob, blob + 2);
    return path;
}

unsigned cli_net_blob_files(const struct cli_net *n, size_t i, const char *prefix)
{
    char top[600];
    snprintf(top, sizeof top, "%s/blobs", n->c.nodes[i].dir);
    DIR *d = opendir(top);
    if (d == NULL)
        return 0;
    unsigned count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[900];
        snprintf(sub, sizeof sub, "%s/%s", top, e->d_name);
        DIR *s = opendir(sub);
        if (s == NULL)
            continue;
        struct dirent *f;
        while ((f = readdir(s)) != NULL)
            if (strcmp(f->d_name, ".") != 0 && strcmp(f->d_name, "..") != 0 &&
                strncmp(f->d_name, prefix, strlen(prefix)) == 0)
                count++;
        closedir(s);
    }
    closedir(d);
    return count;
}

uint64_t cli_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint8_t *cli_file_bytes_or_null(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    uint8_t *b = malloc((size_t)size + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return b;
}

uint8_t *cli_file_bytes(const char *path, size_t *len)
{
    uint8_t *b = cli_file_bytes_or_null(path, len);
    if (b == NULL)
        fail_msg("cannot open %s", path);
    return b;
}

void cli_file_put(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        fail_msg("cannot write %s", path);
    assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

Ehr__V1__TxBody *cli_net_tx_body(struct cli_net *n, size_t i, const uint8_t hash[EHR_HASH_BYTES])
{
    Ehr__V1__GetTransactionRequest q = EHR__V1__GET_TRANSACTION_REQUEST__INIT;
    q.tx_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)hash};
    uint8_t buf[64];
    size_t len = ehr__v1__get_transaction_request__pack(&q, buf);
    struct rpc_result res;
    assert_int_equal(cluster_call(&n->c, i, "GetTransaction", buf, len, CLI_NET_CALL_MS, &res), 0);
    Ehr__V1__GetTransactionResponse *r =
        ehr__v1__get_transaction_response__unpack(NULL, res.response_len, res.response);
    assert_non_null(r);
    ledger_tx_view v;
    assert_int_equal(ledger_tx_envelope_parse(r->envelope.data, r->envelope.len, &v, NULL), 0);
    Ehr__V1__TxBody *b = ehr__v1__tx_body__unpack(NULL, v.body_len, v.body);
    assert_non_null(b);
    ehr__v1__get_transaction_response__free_unpacked(r, NULL);
    rpc_result_clear(&res);
    return b;
}

size_t cli_net_cfrag_request(struct cli_net *n, size_t signer, const uint8_t record[EHR_HASH_BYTES],
                             const uint8_t permit[EHR_HASH_BYTES],
                             uint8_t buf[CLI_NET_CFRAG_REQUEST_BYTES_MAX])
{
    Ehr__V1__GetCapsuleFragmentRequest q = EHR__V1__GET_CAPSULE_FRAGMENT_REQUEST__INIT;
    q.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)record};
    q.permit_tx = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)permit};
    struct node_read_auth_signed auth;
    uint64_t now = (uint64_t)time(NULL) * 1000;
    assert_int_equal(node_read_auth_sign(
                         &auth, &q.base, &q.auth, n->c.chain_id, "/ehr.v1.Node/GetCapsuleFragment",
                         &n->c.nodes[signer].identity->signing, now - 1000, now + 60000),
                     0);
    assert_true(ehr__v1__get_capsule_fragment_request__get_packed_size(&q) <=
                CLI_NET_CFRAG_REQUEST_BYTES_MAX);
    return ehr__v1__get_capsule_fragment_request__pack(&q, buf);
}

int cli_net_cfrag_get(struct cli_net *n, size_t i, size_t signer,
                      const uint8_t record[EHR_HASH_BYTES], const uint8_t permit[EHR_HASH_BYTES],
                      ehr_pre_cfrag *cfrag, uint8_t delegating[EHR_PRE_PUBLIC_BYTES])
{
    uint8_t buf[CLI_NET_CFRAG_REQUEST_BYTES_MAX];
    size_t len = cli_net_cfrag_request(n, signer, record, permit, buf);
    struct rpc_result res;
    int status = cluster_call(&n->c, i, "GetCapsuleFragment", buf, len, CLI_NET_CALL_MS, &res);
    if (status == 0) {
        Ehr__V1__GetCapsuleFragmentResponse *r =
            ehr__v1__get_capsule_fragment_response__unpack(NULL, res.response_len, res.response);
        assert_non_null(r);
        assert_int_equal(r->delegating_key.len, EHR_PRE_PUBLIC_BYTES);
        memcpy(delegating, r->delegating_key.data, EHR_PRE_PUBLIC_BYTES);
        assert_int_equal(ehr_pre_cfrag_decode(cfrag, r->cfrag.data, r->cfrag.len, NULL), 0);
        ehr__v1__get_capsule_fragment_response__free_unpacked(r, NULL);
    } else {
        assert_int_equal(res.response_len, 0);
    }
    rpc_result_clear(&res);
    return status;
}
