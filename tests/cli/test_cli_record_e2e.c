/*
 * test_cli_record_e2e - records end to end with real files on a network of
 * three real ehrd processes (a hospital, the custodian; a lab; an insurer;
 * cli_net.h). The files are what hospitals exchange:
 *   - a multi-megabyte DICOM file: a generated 24-bit picture (a BMP the
 *     test writes) converted by dcmtk's img2dcm, checked with dcmftest;
 *   - a report-sized PDF: a PostScript report the test writes, turned into
 *     PDF by ghostscript's ps2pdf and read back by ghostscript.
 * The steps, in order, each a function below:
 *   1. the hospital adds both with `record add` (the study as imaging, the
 *      report as a lab result); the patient gets each back byte for byte;
 *   2. the patient grants the lab each type with key fragments (2 of 3);
 *      the lab's `record get --purpose treatment` submits its access
 *      request, collects a capsule fragment from each node and gets each
 *      file back byte for byte;
 *   3. the insurer, with no consent, is denied by the rules, and every node
 *      answers its GetCapsuleFragment, with its own deny or with the lab's
 *      permit, PERMISSION_DENIED and no fragment; its `record get` is
 *      refused (exit 8) and writes nothing;
 *   4. with the insurer's node down (t = 2 of 3), the lab still gets both
 *      files from the two other nodes' fragments, warned about the third;
 *   5. the custodian's copy of the study's blob deleted from its disk: the
 *      lab and the patient still get it byte for byte, from the lab's
 *      node's replica; the custodian's node, restarted, repairs its copy
 *      (the blob id's SHA-256 again at its path);
 *   6. once the patient revokes both consents, the lab is refused (exit 8,
 *      no file) and every running node refuses its capsule fragments.
 * Byte for byte means the SHA-256 and size of the whole file recovered are
 * the original's.
 *
 * The tools come from Debian's dcmtk and ghostscript (scripts/setup); CMake
 * finds them, and without them the test fails saying so.
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
#include <unistd.h>

#include <sodium.h>

#include "cli_net.h"
#include "ehr_crypto.h"

#define EHRD EHR_BINARY_DIR "/node/ehrd"

enum { NODES = 3, HOSPITAL = 0, LAB = 1, INSURER = 2, LEADER_WAIT_MS = 30000 };
/* record_get's WHO for the patient (not a member). */
#define PATIENT SIZE_MAX
enum { KEY_HEX = CLI_NET_HEX_BYTES, RECORDS = 2, STUDY = 0, REPORT = 1 };
/* The picture behind the DICOM file: 24-bit, 2048 x 1536, so ~9 MB of
 * pixel data (a few hundred of the record's 64 KiB pieces). */
enum { PICTURE_WIDTH = 2048, PICTURE_HEIGHT = 1536, PICTURE_BYTES_MIN = 8 * 1024 * 1024 };
/* The report: pages of text, a PDF of a few to a few hundred KiB. */
enum { REPORT_PAGES = 6, REPORT_LINES = 48, REPORT_BYTES_MIN = 2048, REPORT_BYTES_MAX = 1 << 20 };
/* Polls of a node that is catching up with a revoke. */
enum { REVOKE_TRIES = 100, REVOKE_POLL_US = 100 * 1000 };
/* How long a replica or a repair may take to arrive (a 9 MB blob in 256 KiB
 * pieces, a restart), and how often to look. */
enum { REPLICA_WAIT_MS = 30000, REPLICA_POLL_MS = 100 };

struct record {
    const char *file, *type;
    char id[KEY_HEX];
    uint8_t id_bytes[EHR_HASH_BYTES];
    char consent[KEY_HEX];
    char blob[KEY_HEX]; /* its ciphertext's SHA-256, the blob id */
};

struct e2e {
    struct cli_net *n;
    struct record records[RECORDS];
    uint8_t lab_permit[RECORDS][EHR_HASH_BYTES];
};

static int net_setup(void **state)
{
    struct e2e *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -1;
    e->n = cli_net_start(NODES, EHRD, NULL, LEADER_WAIT_MS);
    if (e->n == NULL) {
        free(e);
        return -1;
    }
    e->records[STUDY] = (struct record){.file = "study.dcm", .type = "imaging"};
    e->records[REPORT] = (struct record){.file = "report.pdf", .type = "lab_result"};
    *state = e;
    return 0;
}

static int net_teardown(void **state)
{
    struct e2e *e = *state;
    if (e == NULL)
        return 0;
    int rc = cli_net_stop(e->n);
    free(e);
    return rc;
}

/* A tool (its path, as CMake found it) run in the cluster's directory with
 * this process's environment (ps2pdf is a script that finds gs on PATH). */
static struct proc_result tool_run(const struct cli_net *n, const char *path,
                                   const char *const *args)
{
    if (path[0] == '\0')
        fail_msg("a tool this test needs is missing: install dcmtk and ghostscript "
                 "(scripts/setup), then reconfigure");
    struct proc_spec spec = {.path = path, .args = args, .env_inherit = true, .cwd = n->c.root};
    return proc_run(&spec);
}

#define tool(n, path, ...) tool_run(n, path, PROC_ARGS(__VA_ARGS__, (const char *)NULL))

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    put_u16(p, (uint16_t)v);
    put_u16(p + 2, (uint16_t)(v >> 16));
}

/* NAME: a 24-bit BMP of PICTURE_WIDTH x PICTURE_HEIGHT, gradients with
 * noise (so no two rows are alike and it does not compress to nothing). */
static void picture_write(const struct cli_net *n, const char *name)
{
    enum { FILE_HEADER = 14, INFO_HEADER = 40, ROW = (PICTURE_WIDTH * 3 + 3) & ~3 };
    uint8_t header[FILE_HEADER + INFO_HEADER] = {'B', 'M'};
    uint32_t pixels = (uint32_t)ROW * PICTURE_HEIGHT;
    put_u32(header + 2, FILE_HEADER + INFO_HEADER + pixels);
    put_u32(header + 10, FILE_HEADER + INFO_HEADER);
    put_u32(header + 14, INFO_HEADER);
    put_u32(header + 18, PICTURE_WIDTH);
    put_u32(header + 22, PICTURE_HEIGHT);
    put_u16(header + 26, 1);  /* planes */
    put_u16(header + 28, 24); /* bits per pixel; no compression */
    put_u32(header + 34, pixels);
    FILE *f = fopen(proc_path(n->c.root, name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(header, 1, sizeof header, f), sizeof header);
    uint8_t *row = calloc(1, ROW);
    assert_non_null(row);
    uint32_t x = 0x9e3779b9u;
    for (uint32_t y = 0; y < PICTURE_HEIGHT; y++) {
        for (uint32_t i = 0; i < PICTURE_WIDTH; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            row[3 * i] = (uint8_t)(i + y);
            row[3 * i + 1] = (uint8_t)((i * y) >> 4);
            row[3 * i + 2] = (uint8_t)(x & 0x3f);
        }
        assert_int_equal(fwrite(row, 1, ROW, f), (size_t)ROW);
    }
    free(row);
    assert_int_equal(fclose(f), 0);
}

/* study.dcm: the picture converted by img2dcm, checked by dcmftest. */
static void study_make(struct e2e *e)
{
    struct cli_net *n = e->n;
    picture_write(n, "study.bmp");
    struct proc_result r = tool(n, EHR_IMG2DCM, "-i", "BMP", "-k", "PatientName=Doe^Jane", "-k",
                                "Modality=OT", "study.bmp", "study.dcm");
    cli_assert_ok(&r);
    proc_result_free(&r);
    r = tool(n, EHR_DCMFTEST, "study.dcm");
    cli_assert_ok(&r);
    if (strncmp(r.out, "yes:", 4) != 0)
        fail_msg("dcmftest does not take study.dcm for a DICOM file: %s", r.out);
    proc_result_free(&r);
    uint8_t hash[EHR_SHA256_BYTES];
    uint64_t size;
    cli_net_file_sha256(n, "study.dcm", hash, &size);
    assert_true(size >= PICTURE_BYTES_MIN);
}

/* report.pdf: a PostScript report made into PDF by ps2pdf, then read
 * through by ghostscript (a PDF it cannot read fails). */
static void report_make(struct e2e *e)
{
    struct cli_net *n = e->n;
    FILE *f = fopen(proc_path(n->c.root, "report.ps"), "w");
    assert_non_null(f);
    fputs("%!PS-Adobe-3.0\n/Helvetica findfont 10 scalefont setfont\n", f);
    for (int page = 1; page <= REPORT_PAGES; page++) {
        fprintf(f, "72 760 moveto (St Mary's laboratory report, page %d of %d) show\n", page,
                REPORT_PAGES);
        for (int line = 0; line < REPORT_LINES; line++)
            fprintf(f,
                    "72 %d moveto (%02d.%02d  potassium %d.%d mmol/L  sodium %d mmol/L  "
                    "creatinine %d umol/L) show\n",
                    740 - 14 * line, page, line, 3 + line % 3, line % 10, 135 + line % 10,
                    60 + page * line % 50);
        fputs("showpage\n", f);
    }
    assert_int_equal(fclose(f), 0);
    struct proc_result r = tool(n, EHR_PS2PDF, "report.ps", "report.pdf");
    cli_assert_ok(&r);
    proc_result_free(&r);
    r = tool(n, EHR_GHOSTSCRIPT, "-q", "-dSAFER", "-dBATCH", "-dNOPAUSE", "-sDEVICE=nullpage",
             "report.pdf");
    cli_assert_ok(&r);
    if (r.err[0] != '\0')
        fail_msg("ghostscript complains reading report.pdf: %s", r.err);
    proc_result_free(&r);
    char *text = proc_slurp(proc_path(n->c.root, "report.pdf"), REPORT_BYTES_MAX);
    assert_non_null(text);
    assert_memory_equal(text, "%PDF-", 5);
    ehr_free(text);
    uint8_t hash[EHR_SHA256_BYTES];
    uint64_t size;
    cli_net_file_sha256(n, "report.pdf", hash, &size);
    assert_true(size >= REPORT_BYTES_MIN);
}

/* `record get` of REC by WHO (PATIENT, or a member through its own node)
 * into OUT; a grantee names every node for fragments and passes A1 A2
 * (--purpose P or --permit TX). Its result. */
static struct proc_result record_get(struct e2e *e, const struct record *rec, size_t who,
                                     const char *out, const char *a1, const char *a2)
{
    struct cli_net *n = e->n;
    if (who == PATIENT)
        return cli_run(n, "record", "get", rec->id, "--key", "patient.key", "--node",
                       n->node[HOSPITAL], "--out", out, "--json");
    char key[32];
    snprintf(key, sizeof key, "node%zu.key", who);
    return cli_run(n, "record", "get", rec->id, "--key", key, "--node", n->node[who], "--out", out,
                   "--json", "--fragment-node", n->node[0], "--fragment-node", n->node[1],
                   "--fragment-node", n->node[2], a1, a2);
}

/* Step 1: the hospital adds both; the patient gets both back. */
static void step_add_and_patient_gets(struct e2e *e)
{
    struct cli_net *n = e->n;
    cli_net_patient_enroll(n, "patient.key", "patient.pub.json", n->node[HOSPITAL]);
    struct proc_result r;
    for (size_t i = 0; i < RECORDS; i++) {
        struct record *rec = &e->records[i];
        r = cli_run(n, "record", "add", rec->file, "--patient", "patient.pub.json", "--type",
                    rec->type, "--key", "node0.key", "--node", n->node[HOSPITAL], "--wait",
                    "--json");
        cli_assert_ok(&r);
        json_t *out = cli_parse_json(r.out);
        snprintf(rec->id, sizeof rec->id, "%s",
                 json_string_value(json_object_get(out, "record_id")));
        snprintf(rec->blob, sizeof rec->blob, "%s",
                 json_string_value(json_object_get(out, "blob_id")));
        assert_int_equal(strlen(rec->blob), 2 * EHR_HASH_BYTES);
        uint8_t hash[EHR_SHA256_BYTES];
        uint64_t size;
        cli_net_file_sha256(n, rec->file, hash, &size);
        assert_int_equal(json_integer_value(json_object_get(out, "plaintext_bytes")), size);
        json_decref(out);
        proc_result_free(&r);
        cli_hex_decode(rec->id_bytes, rec->id, EHR_HASH_BYTES);
        char got[64];
        snprintf(got, sizeof got, "patient-%s", rec->file);
        r = record_get(e, rec, PATIENT, got, NULL, NULL);
        cli_assert_ok(&r);
        proc_result_free(&r);
        cli_net_assert_same_file(n, got, rec->file);
    }
}

/* Step 2: a consent per type with key fragments; the lab gets both. */
static void step_lab_gets(struct e2e *e)
{
    struct cli_net *n = e->n;
    char receiving[KEY_HEX];
    cli_net_receiving_key(n, "node1.key", receiving);
    struct proc_result r;
    json_t *out;
    for (size_t i = 0; i < RECORDS; i++) {
        struct record *rec = &e->records[i];
        r = cli_run(n, "consent", "grant", "--grantee-key", "node1.key", "--purpose", "treatment",
                    "--type", rec->type, "--receiving-key", receiving, "--key", "patient.key",
                    "--node", n->node[HOSPITAL], "--wait", "--json");
        cli_assert_ok(&r);
        out = cli_parse_json(r.out);
        assert_string_equal(json_string_value(json_object_get(out, "key_fragments")),
                            "2 of 3 members");
        snprintf(rec->consent, sizeof rec->consent, "%s",
                 json_string_value(json_object_get(out, "consent_id")));
        json_decref(out);
        proc_result_free(&r);
        char got[64];
        snprintf(got, sizeof got, "lab-%s", rec->file);
        r = record_get(e, rec, LAB, got, "--purpose", "treatment");
        cli_assert_ok(&r);
        out = cli_parse_json(r.out);
        assert_int_equal(json_integer_value(json_object_get(out, "capsule_fragments")), NODES);
        cli_hex_decode(e->lab_permit[i], json_string_value(json_object_get(out, "permit_tx")),
                       EHR_HASH_BYTES);
        json_decref(out);
        proc_result_free(&r);
        cli_net_assert_same_file(n, got, rec->file);
    }
}

/* Step 3: the insurer is denied, gets no fragment and no file. */
static void step_insurer_denied(struct e2e *e)
{
    struct cli_net *n = e->n;
    for (size_t i = 0; i < RECORDS; i++) {
        const struct record *rec = &e->records[i];
        struct proc_result r = cli_run(n, "access", "request", rec->id, "--purpose", "treatment",
                                       "--key", "node2.key", "--node", n->node[HOSPITAL], "--json");
        char hash[KEY_HEX], decision[32];
        cli_submitted(&r, hash, decision, sizeof decision);
        assert_string_equal(decision, "deny");
        uint8_t denied[EHR_HASH_BYTES];
        cli_hex_decode(denied, hash, EHR_HASH_BYTES);
        for (size_t node = 0; node < NODES; node++) {
            ehr_pre_cfrag none;
            uint8_t named[EHR_PRE_PUBLIC_BYTES];
            assert_int_equal(
                cli_net_cfrag_get(n, node, INSURER, rec->id_bytes, denied, &none, named),
                RPC_STATUS_PERMISSION_DENIED);
            assert_int_equal(
                cli_net_cfrag_get(n, node, INSURER, rec->id_bytes, e->lab_permit[i], &none, named),
                RPC_STATUS_PERMISSION_DENIED);
        }
        r = record_get(e, rec, INSURER, "insurer.out", "--purpose", "treatment");
        assert_int_equal(r.status, 8);
        proc_result_free(&r);
        assert_false(cli_net_file_exists(n, "insurer.out"));
        assert_false(cli_net_file_exists(n, "insurer.out.part"));
    }
}

/* Step 4: the insurer's node down; 2 of 3 fragments still open both. */
static void step_one_node_down(struct e2e *e)
{
    struct cli_net *n = e->n;
    assert_int_equal(cluster_stop(&n->c, INSURER), 0);
    assert_int_not_equal(cluster_wait_leader(&n->c, LEADER_WAIT_MS), SIZE_MAX);
    for (size_t i = 0; i < RECORDS; i++) {
        const struct record *rec = &e->records[i];
        char got[64];
        snprintf(got, sizeof got, "lab-down-%s", rec->file);
        struct proc_result r = record_get(e, rec, LAB, got, "--purpose", "treatment");
        cli_assert_ok(&r);
        if (strstr(r.err, n->node[INSURER]) == NULL)
            fail_msg("no warning names the node that is down (%s): %s", n->node[INSURER], r.err);
        json_t *out = cli_parse_json(r.out);
        assert_int_equal(json_integer_value(json_object_get(out, "capsule_fragments")), NODES - 1);
        json_decref(out);
        proc_result_free(&r);
        cli_net_assert_same_file(n, got, rec->file);
    }
}

/* Where node I keeps the blob BLOB (node/README.md, "Blob store"). */
static void blob_path(const struct cli_net *n, size_t i, const char *blob, char *out, size_t size)
{
    snprintf(out, size, "%s/blobs/%.2s/%s", n->c.nodes[i].dir, blob, blob + 2);
}

/* Whether the file at PATH exists and its SHA-256 is the blob id BLOB. */
static bool blob_intact(const char *path, const char *blob)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        crypto_hash_sha256_update(&st, buf, got);
    fclose(f);
    uint8_t hash[EHR_HASH_BYTES];
    crypto_hash_sha256_final(&st, hash);
    char hex[KEY_HEX];
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    return strcmp(hex, blob) == 0;
}

/* Wait up to REPLICA_WAIT_MS for BLOB to be intact at PATH. */
static bool blob_wait(const char *path, const char *blob)
{
    for (int waited = 0; waited < REPLICA_WAIT_MS; waited += REPLICA_POLL_MS) {
        if (blob_intact(path, blob))
            return true;
        usleep(REPLICA_POLL_MS * 1000);
    }
    return blob_intact(path, blob);
}

/* Step 5: the custodian's copy of the study deleted from its disk; the lab
 * and the patient still get it, from a replica; the custodian, back from a
 * restart, repairs its copy from the lab's node. */
static void step_from_replica(struct e2e *e)
{
    struct cli_net *n = e->n;
    const struct record *rec = &e->records[STUDY];
    char custodian[1024], replica[1024];
    blob_path(n, HOSPITAL, rec->blob, custodian, sizeof custodian);
    blob_path(n, LAB, rec->blob, replica, sizeof replica);
    /* Three members, three copies: the lab's node holds one by now. */
    assert_true(blob_wait(replica, rec->blob));
    assert_true(blob_intact(custodian, rec->blob));
    assert_int_equal(unlink(custodian), 0);
    char got[64];
    snprintf(got, sizeof got, "lab-replica-%s", rec->file);
    struct proc_result r = record_get(e, rec, LAB, got, "--purpose", "treatment");
    cli_assert_ok(&r);
    proc_result_free(&r);
    cli_net_assert_same_file(n, got, rec->file);
    snprintf(got, sizeof got, "patient-replica-%s", rec->file);
    r = record_get(e, rec, PATIENT, got, NULL, NULL);
    cli_assert_ok(&r);
    proc_result_free(&r);
    cli_net_assert_same_file(n, got, rec->file);
    assert_false(blob_intact(custodian, rec->blob)); /* nothing put it back yet */
    assert_int_equal(cluster_stop(&n->c, HOSPITAL), 0);
    cluster_start(&n->c, HOSPITAL);
    assert_int_not_equal(cluster_wait_leader(&n->c, LEADER_WAIT_MS), SIZE_MAX);
    assert_true(blob_wait(custodian, rec->blob));
}

/* Step 6: both consents revoked; the lab is refused everywhere. */
static void step_revoked(struct e2e *e)
{
    struct cli_net *n = e->n;
    char permit_hex[KEY_HEX];
    for (size_t i = 0; i < RECORDS; i++) {
        const struct record *rec = &e->records[i];
        struct proc_result r = cli_run(n, "consent", "revoke", rec->consent, "--key", "patient.key",
                                       "--node", n->node[HOSPITAL], "--wait", "--json");
        char hash[KEY_HEX];
        cli_submitted(&r, hash, NULL, 0);
        sodium_bin2hex(permit_hex, sizeof permit_hex, e->lab_permit[i], EHR_HASH_BYTES);
        r = record_get(e, rec, LAB, "revoked.out", "--permit", permit_hex);
        assert_int_equal(r.status, 8); /* no current consent: not even the anchor is read */
        proc_result_free(&r);
        assert_false(cli_net_file_exists(n, "revoked.out"));
        for (size_t node = 0; node < NODES; node++) {
            if (n->c.nodes[node].pid == 0)
                continue;
            int status = RPC_STATUS_UNAVAILABLE;
            for (int tries = 0; tries < REVOKE_TRIES && status != RPC_STATUS_PERMISSION_DENIED;
                 tries++) {
                ehr_pre_cfrag none;
                uint8_t named[EHR_PRE_PUBLIC_BYTES];
                status =
                    cli_net_cfrag_get(n, node, LAB, rec->id_bytes, e->lab_permit[i], &none, named);
                if (status != RPC_STATUS_PERMISSION_DENIED) /* catching up with the revoke */
                    usleep(REVOKE_POLL_US);
            }
            assert_int_equal(status, RPC_STATUS_PERMISSION_DENIED);
        }
    }
}

static void test_record_end_to_end(void **state)
{
    struct e2e *e = *state;
    study_make(e);
    report_make(e);
    step_add_and_patient_gets(e);
    step_lab_gets(e);
    step_insurer_denied(e);
    step_one_node_down(e);
    step_from_replica(e);
    step_revoked(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_end_to_end),
    };
    return cmocka_run_group_tests(tests, net_setup, net_teardown);
}
