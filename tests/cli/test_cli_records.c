/*
 * test_cli_records - records with their data against real ehrd processes:
 * `patient public-keys`, `record add` (encrypt, PutBlob, anchor) and
 * `record get` (GetRecord, open the capsule and the pointer, GetBlob,
 * check, decrypt). A multi-megabyte file and an empty one come back byte
 * for byte, the custodian's loop keeping its pace meanwhile; the blob on
 * the custodian's disk is the ciphertext the anchor names; a blob altered on disk is refused and
 * leaves no output file; a key that is not the patient's is refused; an upload cut off half-way
 * (the client killed) leaves nothing, and one whose node was killed leaves a temporary file that
 * the node's restart sweeps.
 *
 * The network: two founding members on loopback (tests/node/cluster.h),
 * "Member 0" the custodian. ehrctl runs as a subprocess in the cluster's
 * directory with an empty environment and stdin from /dev/null.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_net.h"
#include "ehr_crypto.h"

#define EHRD EHR_BINARY_DIR "/node/ehrd"

enum { KEY_HEX = CLI_NET_HEX_BYTES, LEADER_WAIT_MS = 30000, LOOP_TURN_BOUND_US = 250000 };

static int net_setup(void **state)
{
    *state = cli_net_start(2, EHRD, NULL, LEADER_WAIT_MS);
    return *state != NULL ? 0 : -1;
}

static int net_teardown(void **state)
{
    return cli_net_stop(*state);
}

/* A new patient (key file FILE, no passphrase) enrolled by member 0, and
 * its public keys written to PUB. */
static void patient_enrolled(struct cli_net *n, char file[32], char pub[32])
{
    unsigned k = ++n->name_count;
    snprintf(file, 32, "patient%u.key", k);
    snprintf(pub, 32, "patient%u.pub.json", k);
    cli_net_patient_enroll(n, file, pub, n->node[0]);
}

/* Write LEN pseudo-random bytes (SEED) to NAME in the cluster's directory. */
static uint8_t *data_file(struct cli_net *n, const char *name, size_t len, uint32_t seed)
{
    uint8_t *data = malloc(len + 1);
    assert_non_null(data);
    uint32_t x = seed | 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (uint8_t)x;
    }
    cli_file_put(proc_path(n->c.root, name), data, len);
    return data;
}

/* record add NAME for the patient PUB as TYPE by member 0: the record and
 * blob ids. */
static void record_add(struct cli_net *n, const char *name, const char *pub, const char *type,
                       char record[KEY_HEX], char blob[KEY_HEX], uint64_t *cipher_bytes)
{
    struct proc_result r = cli_run(n, "record", "add", name, "--patient", pub, "--type", type,
                                   "--key", "node0.key", "--node", n->node[0], "--wait", "--json");
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    snprintf(record, KEY_HEX, "%s", json_string_value(json_object_get(out, "record_id")));
    snprintf(blob, KEY_HEX, "%s", json_string_value(json_object_get(out, "blob_id")));
    *cipher_bytes = (uint64_t)json_integer_value(json_object_get(out, "ciphertext_bytes"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(out, "result"), "code")),
                        "ok");
    json_decref(out);
    proc_result_free(&r);
    assert_int_equal(strlen(record), 64);
    assert_int_equal(strlen(blob), 64);
}

/*
 * A 5 MiB file (and a piece over: not a whole number of 64 KiB pieces) is
 * added by the custodian and got back by the patient byte for byte, through
 * the other node for the anchor; the custodian's blob is the ciphertext the
 * anchor names (its SHA-256, its size: the file plus 24 + 17 per piece).
 * An empty file round-trips too.
 */
static void test_record_add_then_patient_gets_the_exact_bytes(void **state)
{
    struct cli_net *n = *state;
    char key[32], pub[32], record[KEY_HEX], blob[KEY_HEX];
    patient_enrolled(n, key, pub);
    const size_t len = 5 * 1024 * 1024 + 12345;
    uint8_t *data = data_file(n, "study.dcm", len, 7);
    uint64_t cipher_bytes = 0;
    record_add(n, "study.dcm", pub, "imaging", record, blob, &cipher_bytes);
    size_t pieces = len / 65536 + 1;
    assert_int_equal(cipher_bytes, len + 24 + 17 * pieces);
    size_t stored_len;
    uint8_t *stored = cli_file_bytes(cli_net_blob_path(n, 0, blob), &stored_len);
    assert_int_equal(stored_len, cipher_bytes);
    uint8_t hash[32];
    char hex[KEY_HEX];
    ehr_sha256(hash, stored, stored_len);
    ehr_hex_encode(hex, hash, 32);
    assert_string_equal(hex, blob);
    assert_true(memmem(stored, stored_len, data, 64) == NULL); /* not the plaintext */
    free(stored);
    /* The upload's file work ran on the worker pool: the custodian node's
     * loop kept its pace (the bound test_node_abuse holds a flood to). A
     * turn is measured in wall time, which a loaded machine stretches on
     * every node alike: the floor is the other node's longest turn over
     * the same time (it took the replica, also off its loop), and the
     * custodian fails only past the bound and twice that floor. */
    struct cluster_status status, other;
    assert_int_equal(cluster_status(&n->c, 0, &status), 0);
    assert_int_equal(cluster_status(&n->c, 1, &other), 0);
    print_message("longest loop turn around the 5 MiB upload: custodian %llu us, the other "
                  "node %llu us\n",
                  (unsigned long long)status.loop_turn_max_us,
                  (unsigned long long)other.loop_turn_max_us);
    if (status.loop_turn_max_us >= LOOP_TURN_BOUND_US &&
        status.loop_turn_max_us >= 2 * other.loop_turn_max_us)
        fail_msg("the loop's longest turn was %llu us during the upload (the other node's: %llu)",
                 (unsigned long long)status.loop_turn_max_us,
                 (unsigned long long)other.loop_turn_max_us);
    struct proc_result r = cli_run(n, "record", "get", record, "--key", key, "--out", "back.dcm",
                                   "--node", n->node[1]);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, blob));
    proc_result_free(&r);
    size_t back_len;
    uint8_t *back = cli_file_bytes(proc_path(n->c.root, "back.dcm"), &back_len);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, data, len);
    free(back);
    free(data);

    free(data_file(n, "empty.txt", 0, 1));
    record_add(n, "empty.txt", pub, "clinical_note", record, blob, &cipher_bytes);
    assert_int_equal(cipher_bytes, 24 + 17);
    r = cli_run(n, "record", "get", record, "--key", key, "--out", "empty.back", "--node",
                n->node[0]);
    cli_assert_ok(&r);
    proc_result_free(&r);
    struct stat st;
    assert_int_equal(stat(proc_path(n->c.root, "empty.back"), &st), 0);
    assert_int_equal(st.st_size, 0);
}

/*
 * A blob altered on the custodian's disk is refused by the reader (its
 * SHA-256 is not the anchor's; or a piece does not decrypt), and no output
 * file is left, not even a partial one; another member is refused the
 * anchor by the node, and the custodian (who may read the anchor) holds
 * no key to open it and is refused before anything is fetched.
 */
static void test_record_get_refuses_an_altered_blob_and_another_key(void **state)
{
    struct cli_net *n = *state;
    char key[32], pub[32], record[KEY_HEX], blob[KEY_HEX];
    patient_enrolled(n, key, pub);
    free(data_file(n, "report.pdf", 300000, 9));
    uint64_t cipher_bytes = 0;
    record_add(n, "report.pdf", pub, "lab_result", record, blob, &cipher_bytes);
    /* Another member: the node refuses the anchor (exit 8, PERMISSION_DENIED). */
    struct proc_result r = cli_run(n, "record", "get", record, "--key", "node1.key", "--out",
                                   "stolen.pdf", "--node", n->node[0]);
    assert_int_equal(r.status, 8);
    assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
    proc_result_free(&r);
    /* The custodian reads the anchor, but holds no delegating key: without
     * a permit to ask with (--purpose, --permit: the grantee's path,
     * test_cli_grantee) it is told so before any blob is fetched. */
    r = cli_run(n, "record", "get", record, "--key", "node0.key", "--out", "stolen.pdf", "--node",
                n->node[0]);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "not the record's patient"));
    proc_result_free(&r);
    struct stat st;
    assert_int_not_equal(stat(proc_path(n->c.root, "stolen.pdf"), &st), 0);
    /* One byte flipped in the middle of the stored ciphertext. */
    FILE *f = fopen(cli_net_blob_path(n, 0, blob), "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, 150000, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, 150000, SEEK_SET), 0);
    fputc(c ^ 0x01, f);
    assert_int_equal(fclose(f), 0);
    r = cli_run(n, "record", "get", record, "--key", key, "--out", "report.back", "--node",
                n->node[0]);
    assert_int_equal(r.status, 1);
    assert_true(strstr(r.err, "does not decrypt") != NULL ||
                strstr(r.err, "not the anchor's ciphertext_hash") != NULL);
    proc_result_free(&r);
    assert_int_not_equal(stat(proc_path(n->c.root, "report.back"), &st), 0);
    assert_int_not_equal(stat(proc_path(n->c.root, "report.back.part"), &st), 0);
}

/* Wait up to TIMEOUT_MS until node I holds WANT temporary files (or, with
 * AT_LEAST, at least WANT); true if it did. */
static bool wait_tmp(const struct cli_net *n, size_t i, unsigned want, bool at_least,
                     uint64_t timeout_ms)
{
    uint64_t end = cli_mono_ms() + timeout_ms;
    do {
        unsigned got = cli_net_blob_files(n, i, ".tmp-");
        if (got == want || (at_least && got >= want))
            return true;
        usleep(2000);
    } while (cli_mono_ms() < end);
    return false;
}

/* Start `record add BIG` for the patient PUB by member 0, output dropped. */
static void add_spawn(struct cli_net *n, const char *pub, struct proc_child *child)
{
    struct proc_spec spec = {.path = CLI_NET_EHRCTL,
                             .argv0 = "ehrctl",
                             .args = PROC_ARGS("record", "add", "big.bin", "--patient", pub,
                                               "--type", "imaging", "--key", "node0.key", "--node",
                                               n->node[0], (const char *)NULL),
                             .cwd = n->c.root,
                             .out = {PROC_TO_NULL, NULL},
                             .err = {PROC_TO_NULL, NULL}};
    proc_spawn(&spec, child);
}

/*
 * Cut off half-way: ehrctl killed while its upload is in the node's blob
 * store (a temporary file there): the node sees the connection go, aborts
 * the write, and nothing is left, neither the temporary file nor a blob.
 * The node killed mid-upload leaves its temporary file; the node's restart
 * sweeps it.
 */
static void test_record_add_cut_off_half_way_leaves_nothing(void **state)
{
    struct cli_net *n = *state;
    char key[32], pub[32];
    patient_enrolled(n, key, pub);
    free(data_file(n, "big.bin", 160u * 1024 * 1024, 11));
    sync(); /* so the node's own fsyncs below do not wait for these 160 MiB */
    unsigned before = cli_net_blob_files(n, 0, "");
    struct proc_child child;
    add_spawn(n, pub, &child);
    assert_true(wait_tmp(n, 0, 1, true, 60000)); /* the upload is under way */
    proc_end(child.pid, SIGKILL);
    assert_true(wait_tmp(n, 0, 0, false, 10000));
    assert_int_equal(cli_net_blob_files(n, 0, ""), before);

    /* The node killed mid-upload: its temporary file stays ... */
    add_spawn(n, pub, &child);
    assert_true(wait_tmp(n, 0, 1, true, 60000));
    cluster_kill(&n->c, 0);
    proc_end(child.pid, SIGKILL);
    assert_true(cli_net_blob_files(n, 0, ".tmp-") >= 1);
    /* ... until it starts again and sweeps it. */
    cluster_start(&n->c, 0);
    assert_true(wait_tmp(n, 0, 0, false, 30000));
    assert_int_equal(cli_net_blob_files(n, 0, ""), before);
    /* Started (serving its API) before the teardown stops it. */
    struct cluster_status st;
    uint64_t end = cli_mono_ms() + LEADER_WAIT_MS;
    while (cluster_status(&n->c, 0, &st) != 0 && cli_mono_ms() < end)
        usleep(50000);
    assert_int_equal(cluster_status(&n->c, 0, &st), 0);
    assert_int_not_equal(cluster_wait_leader(&n->c, LEADER_WAIT_MS), SIZE_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_add_then_patient_gets_the_exact_bytes),
        cmocka_unit_test(test_record_get_refuses_an_altered_blob_and_another_key),
        cmocka_unit_test(test_record_add_cut_off_half_way_leaves_nothing),
    };
    return cmocka_run_group_tests_name("records with their data", tests, net_setup, net_teardown);
}
