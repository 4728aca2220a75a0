/*
 * test_cli_domain - ehrctl's commands for the consent contract's domain
 * against real ehrd processes: patient enroll (both key files here, and the
 * two-device flow with patient consent-to-enroll), tx submit --wait with the
 * transaction's result and the rules' refusals at submission, the listings
 * (audit, records, consents) with their paging, and the bench's domain
 * workload.
 *
 * One network for the whole group (tests/node/cluster.h): two founding
 * members on loopback, "Member 0" a hospital and "Member 1" a lab (key files
 * node0.key and node1.key, no passphrase, in the cluster's directory), a
 * genesis that lets hospitals use emergency access. Each test makes its own
 * patients, so the tests do not depend on one another's transactions.
 * ehrctl runs as a subprocess in the cluster's directory with an empty
 * environment (plus what a case gives) and stdin from /dev/null.
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

#include "cli_net.h"
#include "ehr_crypto.h"

#define EHRD EHR_BINARY_DIR "/node/ehrd"

enum { KEY_HEX = CLI_NET_HEX_BYTES, LEADER_WAIT_MS = 30000 };

/* ------------------------------------------------------ checks on ehrctl */

/* A failure: exit STATUS, FRAGMENT in the last line of stderr, nothing on stdout. */
static void assert_failure(const struct proc_result *r, int status, const char *fragment)
{
    if (r->status != status || strstr(r->err, fragment) == NULL)
        fail_msg("exit %d, want %d with \"%s\"; stdout: %s; stderr: %s", r->status, status,
                 fragment, r->out, r->err);
    assert_int_equal(strncmp(r->err, "ehrctl", 6), 0);
    assert_string_equal(r->out, "");
}

/* ------------------------------------------------------------ the network */

static int net_setup(void **state)
{
    struct cluster_limits lim = {.emergency_roles = "hospital"};
    *state = cli_net_start(2, EHRD, &lim, LEADER_WAIT_MS);
    return *state != NULL ? 0 : -1;
}

static int net_teardown(void **state)
{
    return cli_net_stop(*state);
}

/* A new patient key file (PASS: its passphrase, NULL: none); its name into
 * FILE and its signing key into HEX (may be NULL). */
static void patient_key(struct cli_net *n, const char *pass, char file[32], char hex[KEY_HEX])
{
    snprintf(file, 32, "patient%u.key", ++n->name_count);
    struct proc_result r;
    if (pass != NULL) {
        proc_text_write(proc_path(n->c.root, "patient.pass"), pass);
        r = cli_run(n, "keygen", "--out", file, "--passphrase-file", "patient.pass");
    } else {
        r = cli_run(n, "keygen", "--out", file, "--no-passphrase");
    }
    cli_assert_ok(&r);
    proc_result_free(&r);
    if (hex != NULL)
        cli_net_key_hex(n, file, hex);
}

/* A patient enrolled by member 0 through node 0: its key file and key. */
static void patient_enrolled(struct cli_net *n, char file[32], char hex[KEY_HEX])
{
    patient_key(n, NULL, file, hex);
    struct proc_result r = cli_run(n, "patient", "enroll", "--patient", file, "--key", "node0.key",
                                   "--node", n->node[0], "--wait");
    cli_assert_ok(&r);
    proc_result_free(&r);
}

/* Write PAYLOAD to a file and submit it signed with KEY through node NODE,
 * waiting; returns the result (free it). */
static struct proc_result submit(struct cli_net *n, int node, const char *key, const char *payload,
                                 bool json)
{
    proc_text_write(proc_path(n->c.root, "payload.json"), payload);
    return cli_run(n, "tx", "submit", "--key", key, "--payload", "payload.json", "--node",
                   n->node[node], "--wait", json ? "--json" : "--wait");
}

/* Anchor a record of TYPE for PATIENT_HEX by member M; its id into ID. */
static void anchor(struct cli_net *n, int m, const char *patient_hex, const char *type,
                   char id[KEY_HEX])
{
    static int anchored; /* each record its own ciphertext (the rules) */
    char payload[512], key[16];
    snprintf(payload, sizeof payload,
             "{\"record_anchor\": {\"patient_key\": \"%s\", \"record_type\": \"%s\", "
             "\"encrypted_pointer\": \"0102030405060708\", \"ciphertext_hash\": \"%064d\", "
             "\"ciphertext_bytes\": 4096}}",
             patient_hex, type, ++anchored);
    snprintf(key, sizeof key, "node%d.key", m);
    struct proc_result r = submit(n, m, key, payload, true);
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "code"), "ok");
    snprintf(id, KEY_HEX, "%s", cli_json_str(out, "hash"));
    json_decref(out);
    proc_result_free(&r);
}

/* The patient in FILE grants member M a treatment consent for TYPE records
 * (POLICY_HEX: a program, or ""); its id into ID. */
static void grant(struct cli_net *n, const char *file, int m, const char *type,
                  const char *policy_hex, char id[KEY_HEX])
{
    char payload[4096];
    snprintf(payload, sizeof payload,
             "{\"consent_grant\": {\"grantee_key\": \"%s\", \"record_types\": [\"%s\"], "
             "\"purpose\": \"treatment\", \"valid_until_ms\": 4102444800000%s%s%s}}",
             n->hex[m], type, policy_hex[0] ? ", \"policy_program\": \"" : "", policy_hex,
             policy_hex[0] ? "\"" : "");
    struct proc_result r = submit(n, 0, file, payload, true);
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    snprintf(id, KEY_HEX, "%s", cli_json_str(out, "hash"));
    json_decref(out);
    proc_result_free(&r);
}

/* ------------------------------------------------------- patient enroll */

/*
 * Both key files here: the member's key signs, the patient's co-signs, each
 * with its own passphrase source (--patient-passphrase-file, then
 * $EHR_PATIENT_PASSPHRASE); the patient is enrolled (result OK). Enrolling
 * again is refused at submission (exit 10, the rule's reason); a wrong
 * passphrase sends nothing; the same key for both is a usage error.
 */
static void test_patient_enroll_with_both_key_files(void **state)
{
    struct cli_net *n = *state;
    char file[32], hex[KEY_HEX];
    patient_key(n, "patient secret", file, hex);
    struct proc_result r =
        cli_run(n, "patient", "enroll", "--patient", file, "--patient-passphrase-file",
                "patient.pass", "--key", "node0.key", "--node", n->node[0], "--wait", "--json");
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(out, "patient_key"), hex);
    assert_true(json_is_true(json_object_get(out, "committed")));
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "code"), "ok");
    json_decref(out);
    proc_result_free(&r);

    /* again: the leader's rules refuse it at submission */
    r = cli_run(n, "patient", "enroll", "--patient", file, "--patient-passphrase-file",
                "patient.pass", "--key", "node1.key", "--node", n->node[1], "--wait");
    assert_failure(&r, 10, "FAILED_PRECONDITION");
    assert_non_null(strstr(r.err, "the patient is enrolled already"));
    assert_int_equal(strncmp(r.err, "ehrctl: patient enroll ", 23), 0);
    proc_result_free(&r);

    /* the patient's passphrase from its own variable, the member's key by the lab, text */
    char file2[32], hex2[KEY_HEX];
    patient_key(n, "another secret", file2, hex2);
    static const char *const env[] = {"EHR_PATIENT_PASSPHRASE=another secret", NULL};
    r = cli_run_env(n, env, "patient", "enroll", "--patient", file2, "--key", "node1.key", "--node",
                    n->node[0], "--wait");
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, hex2));
    assert_non_null(strstr(r.out, "\nresult          OK\n"));
    proc_result_free(&r);

    /* a wrong patient passphrase: exit 1, nothing sent (the member's key is fine) */
    char file3[32];
    patient_key(n, "third secret", file3, NULL);
    static const char *const wrong[] = {"EHR_PATIENT_PASSPHRASE=not it", NULL};
    r = cli_run_env(n, wrong, "patient", "enroll", "--patient", file3, "--key", "node0.key",
                    "--node", n->node[0], "--wait");
    assert_failure(&r, 1, "open key file patient");
    proc_result_free(&r);
    /* no passphrase anywhere, no terminal: said which option and variable */
    r = cli_run(n, "patient", "enroll", "--patient", file3, "--key", "node0.key", "--node",
                n->node[0]);
    assert_failure(&r, 1, "--patient-passphrase-file");
    assert_non_null(strstr(r.err, "EHR_PATIENT_PASSPHRASE"));
    proc_result_free(&r);

    /* usage errors: exit 2, nothing done */
    const char *const cases[][12] = {
        {"patient", "enroll", "--key", "node0.key", NULL},
        {"patient", "enroll", "--patient", file3, NULL},
        {"patient", "enroll", "--patient", "node0.key", "--key", "node0.key", NULL},
        {"patient", "enroll", "--patient", file3, "--patient-public", hex, "--key", "node0.key",
         NULL},
        {"patient", "enroll", "--patient-public", hex, "--key", "node0.key", NULL},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        r = cli_net_run_args(n, cases[i]);
        if (r.status != 2)
            fail_msg("case %zu: exit %d, stderr %s", i, r.status, r.err);
        assert_string_equal(r.out, "");
        proc_result_free(&r);
    }
}

/*
 * The two-device flow: the patient co-signs with consent-to-enroll (the
 * signature alone on stdout; --json with the public keys), the member
 * enrols with the three values. A co-signature for another chain, or for
 * another enroller, is refused at submission with FAILED_PRECONDITION and the
 * rule's reason (ehrctl warns first that it does not verify). Bad hex is a
 * usage error before anything is sent.
 */
static void test_patient_enroll_two_devices(void **state)
{
    struct cli_net *n = *state;
    char file[32], hex[KEY_HEX];
    patient_key(n, NULL, file, hex);
    /* --enroller as a key file; the member enrols */
    struct proc_result r =
        cli_run(n, "patient", "consent-to-enroll", "--patient", file, "--enroller", "node0.key",
                "--chain-id", n->c.chain_id, "--json");
    cli_assert_ok(&r);
    json_t *consent = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(consent, "patient_key"), hex);
    assert_string_equal(cli_json_str(consent, "enroller"), n->hex[0]);
    assert_string_equal(cli_json_str(consent, "chain_id"), n->c.chain_id);
    char kx[KEY_HEX], sig[129];
    snprintf(kx, sizeof kx, "%s", cli_json_str(consent, "patient_kx_key"));
    snprintf(sig, sizeof sig, "%s", cli_json_str(consent, "patient_signature"));
    json_decref(consent);
    proc_result_free(&r);
    r = cli_run(n, "patient", "enroll", "--patient-public", hex, "--patient-kx", kx,
                "--patient-signature", sig, "--key", "node0.key", "--node", n->node[1], "--wait",
                "--json");
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "code"), "ok");
    json_decref(out);
    assert_string_equal(r.err, "");
    proc_result_free(&r);

    /* text: the signature alone; --enroller as hex; made for another chain */
    char file2[32], hex2[KEY_HEX], kx2[KEY_HEX];
    patient_key(n, NULL, file2, hex2);
    ehr_keyfile_info info;
    assert_int_equal(ehr_keyfile_read_info(proc_path(n->c.root, file2), &info, NULL), 0);
    ehr_hex_encode(kx2, info.kx_public_key, EHR_KX_PUBLIC_BYTES);
    r = cli_run(n, "patient", "consent-to-enroll", "--patient", file2, "--enroller", n->hex[0],
                "--chain-id", "another-chain");
    cli_assert_ok(&r);
    assert_int_equal(strlen(r.out), 129);
    snprintf(sig, sizeof sig, "%.128s", r.out);
    proc_result_free(&r);
    r = cli_run(n, "patient", "enroll", "--patient-public", hex2, "--patient-kx", kx2,
                "--patient-signature", sig, "--key", "node0.key", "--node", n->node[0], "--wait");
    if (r.status != 10 || strstr(r.err, "FAILED_PRECONDITION") == NULL ||
        strstr(r.err, "the patient's signature on the enrolment does not verify") == NULL)
        fail_msg("exit %d; stderr: %s", r.status, r.err);
    assert_non_null(strstr(r.err, "warning: the patient's signature is not one for chain"));
    assert_string_equal(r.out, "");
    proc_result_free(&r);
    /* a co-signature for member 0 used by member 1: the same refusal */
    r = cli_run(n, "patient", "consent-to-enroll", "--patient", file2, "--enroller", "node0.key",
                "--chain-id", n->c.chain_id);
    cli_assert_ok(&r);
    snprintf(sig, sizeof sig, "%.128s", r.out);
    proc_result_free(&r);
    r = cli_run(n, "patient", "enroll", "--patient-public", hex2, "--patient-kx", kx2,
                "--patient-signature", sig, "--key", "node1.key", "--node", n->node[0], "--wait");
    if (r.status != 10 || strstr(r.err, "does not verify") == NULL)
        fail_msg("exit %d; stderr: %s", r.status, r.err);
    proc_result_free(&r);
    /* by member 0, whom the patient named, it goes through */
    r = cli_run(n, "patient", "enroll", "--patient-public", hex2, "--patient-kx", kx2,
                "--patient-signature", sig, "--key", "node0.key", "--node", n->node[0], "--wait");
    cli_assert_ok(&r);
    proc_result_free(&r);

    /* bad input: exit 2, nothing sent, the value's fault named */
    char short_hex[KEY_HEX];
    snprintf(short_hex, sizeof short_hex, "%.62s", hex);
    struct {
        const char *public_hex, *kx_hex, *sig_hex, *fragment;
    } bad[] = {
        {short_hex, kx, sig, "--patient-public wants 64 hex digits (62 given)"},
        {hex, "zz", sig, "--patient-kx wants 64 hex digits"},
        {hex, kx, "00", "--patient-signature wants 128 hex digits (2 given)"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(bad); i++) {
        r = cli_run(n, "patient", "enroll", "--patient-public", bad[i].public_hex, "--patient-kx",
                    bad[i].kx_hex, "--patient-signature", bad[i].sig_hex, "--key", "node0.key",
                    "--node", n->node[0], "--wait");
        if (r.status != 2 || strstr(r.err, bad[i].fragment) == NULL)
            fail_msg("case %zu: exit %d; stderr: %s", i, r.status, r.err);
        proc_result_free(&r);
    }
    r = cli_run(n, "patient", "consent-to-enroll", "--patient", file2, "--enroller", short_hex,
                "--chain-id", n->c.chain_id);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "62 hex digits (31 bytes)"));
    proc_result_free(&r);
}

/* ------------------------------------------------------------ tx submit */

/*
 * What the rules say comes back: an anchor for a patient nobody enrolled is
 * NOT_FOUND at submission (exit 9), a revoke by someone other than the
 * patient PERMISSION_DENIED (exit 8), a second revoke FAILED_PRECONDITION
 * (exit 10), each with the rule's reason; an access request is an OK result
 * with its decision (permit with the consent and the policy's gas, deny with
 * why), exit 0 either way.
 */
static void test_tx_submit_results_and_refusals(void **state)
{
    struct cli_net *n = *state;
    char file[32], hex[KEY_HEX], record[KEY_HEX], consent[KEY_HEX], payload[1024];
    patient_enrolled(n, file, hex);
    anchor(n, 1, hex, "lab_result", record);

    /* a patient nobody enrolled */
    char stranger[KEY_HEX];
    patient_key(n, NULL, (char[32]){0}, stranger);
    snprintf(payload, sizeof payload,
             "{\"record_anchor\": {\"patient_key\": \"%s\", \"record_type\": \"imaging\", "
             "\"encrypted_pointer\": \"01\", \"ciphertext_hash\": \"%064d\"}}",
             stranger, 0);
    struct proc_result r = submit(n, 0, "node0.key", payload, false);
    assert_failure(&r, 9, "NOT_FOUND");
    assert_non_null(strstr(r.err, "the patient is not enrolled"));
    proc_result_free(&r);

    /* a consent with a policy: lab results under a year old */
    proc_text_write(proc_path(n->c.root, "policy.txt"),
                    "permit if record.type == lab_result and record.age_days < 365\n");
    r = cli_run(n, "policy", "compile", "policy.txt", "--json");
    cli_assert_ok(&r);
    json_t *compiled = cli_parse_json(r.out);
    char policy[2100];
    snprintf(policy, sizeof policy, "%s", cli_json_str(compiled, "hex"));
    json_decref(compiled);
    proc_result_free(&r);
    grant(n, file, 0, "lab_result", policy, consent);

    /* the hospital's request: permitted by that consent, its policy's gas spent */
    char kx0[KEY_HEX];
    ehr_keyfile_info info;
    assert_int_equal(ehr_keyfile_read_info(proc_path(n->c.root, "node0.key"), &info, NULL), 0);
    ehr_hex_encode(kx0, info.kx_public_key, EHR_KX_PUBLIC_BYTES);
    snprintf(payload, sizeof payload,
             "{\"access_request\": {\"record_id\": \"%s\", \"purpose\": \"treatment\", "
             "\"requester_kx_key\": \"%s\"}}",
             record, kx0);
    r = submit(n, 0, "node0.key", payload, true);
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    json_t *res = json_object_get(out, "result");
    assert_string_equal(cli_json_str(res, "code"), "ok");
    assert_string_equal(cli_json_str(res, "decision"), "permit");
    assert_string_equal(cli_json_str(res, "consent_id"), consent);
    assert_true(json_integer_value(json_object_get(res, "gas_used")) > 0);
    json_decref(out);
    proc_result_free(&r);
    /* for research, which no consent covers: denied, exit 0, the reason printed */
    snprintf(payload, sizeof payload,
             "{\"access_request\": {\"record_id\": \"%s\", \"purpose\": \"research\", "
             "\"requester_kx_key\": \"%s\"}}",
             record, kx0);
    r = submit(n, 1, "node0.key", payload, false);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "\ndecision        deny: the consent is for another purpose"));
    proc_result_free(&r);

    /* a revoke by the hospital, not the patient */
    snprintf(payload, sizeof payload, "{\"consent_revoke\": {\"grant_id\": \"%s\"}}", consent);
    r = submit(n, 0, "node0.key", payload, false);
    assert_failure(&r, 8, "PERMISSION_DENIED");
    assert_non_null(strstr(r.err, "only the patient who granted it revokes a consent"));
    proc_result_free(&r);
    /* by the patient; then again */
    r = submit(n, 0, file, payload, false);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "\nresult          OK\n"));
    proc_result_free(&r);
    r = submit(n, 0, file, payload, false);
    assert_failure(&r, 10, "FAILED_PRECONDITION");
    assert_non_null(strstr(r.err, "the consent is revoked already"));
    proc_result_free(&r);
    /* the hospital's next request is denied */
    snprintf(payload, sizeof payload,
             "{\"access_request\": {\"record_id\": \"%s\", \"purpose\": \"treatment\", "
             "\"requester_kx_key\": \"%s\"}}",
             record, kx0);
    r = submit(n, 0, "node0.key", payload, true);
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    char denied[KEY_HEX];
    snprintf(denied, sizeof denied, "%s", cli_json_str(out, "hash"));
    json_decref(out);
    proc_result_free(&r);
    /* tx show prints the stored result, from the node that answered the wait
     * (it has applied the block) and from its data directory */
    r = cli_run(n, "tx", "show", denied, "--node", n->node[0]);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "\ndecision        deny: the consent was revoked\n"));
    proc_result_free(&r);
    r = cli_run(n, "tx", "show", denied, "--data", n->c.nodes[0].dir, "--json");
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    res = json_object_get(out, "result");
    assert_string_equal(cli_json_str(res, "code"), "ok");
    assert_string_equal(cli_json_str(res, "decision"), "deny");
    assert_string_equal(cli_json_str(res, "reason"), "the consent was revoked");
    json_decref(out);
    proc_result_free(&r);
}

/* ------------------------------------------------------------- listings */

/* The lines of TEXT that start with PREFIX. */
static int lines_starting(const char *text, const char *prefix)
{
    int count = 0;
    for (const char *p = text; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
        count += strncmp(p, prefix, strlen(prefix)) == 0;
    return count;
}

/* Submit PAYLOAD as member M's node key (access requests), expecting exit 0. */
static void request_access(struct cli_net *n, int m, const char *payload)
{
    char key[16];
    snprintf(key, sizeof key, "node%d.key", m);
    struct proc_result r = submit(n, m, key, payload, false);
    cli_assert_ok(&r);
    proc_result_free(&r);
}

/*
 * audit, records and consents of a patient with nine audit events, three
 * records and two consents: text (one line per entry, members by name,
 * emergency accesses marked "!"), --json, and paging: --limit 2 prints one
 * page and the token of the next, --page-token continues from it, --all
 * fetches every page.
 */
static void test_listings_page_through_a_patients_data(void **state)
{
    struct cli_net *n = *state;
    char file[32], hex[KEY_HEX], lab1[KEY_HEX], lab2[KEY_HEX], scan[KEY_HEX];
    char consent0[KEY_HEX], consent1[KEY_HEX], payload[1024], kx[2][KEY_HEX];
    for (int m = 0; m < 2; m++) {
        char key[16];
        ehr_keyfile_info info;
        snprintf(key, sizeof key, "node%d.key", m);
        assert_int_equal(ehr_keyfile_read_info(proc_path(n->c.root, key), &info, NULL), 0);
        ehr_hex_encode(kx[m], info.kx_public_key, EHR_KX_PUBLIC_BYTES);
    }
    patient_enrolled(n, file, hex);                /* 1: enroll */
    anchor(n, 1, hex, "lab_result", lab1);         /* 2: anchor */
    anchor(n, 1, hex, "lab_result", lab2);         /* 3: anchor */
    anchor(n, 0, hex, "imaging", scan);            /* 4: anchor */
    grant(n, file, 0, "lab_result", "", consent0); /* 5: grant */
    grant(n, file, 1, "imaging", "", consent1);    /* 6: grant */
    snprintf(payload, sizeof payload,              /* 7: access, permitted */
             "{\"access_request\": {\"record_id\": \"%s\", \"purpose\": \"treatment\", "
             "\"requester_kx_key\": \"%s\"}}",
             lab2, kx[0]);
    request_access(n, 0, payload);
    for (int m = 0; m < 2; m++) { /* 8, 9: emergency, the hospital's permitted, the lab's not */
        snprintf(payload, sizeof payload,
                 "{\"emergency_access\": {\"record_id\": \"%s\", \"reason\": \"unconscious "
                 "in the ER\", \"requester_kx_key\": \"%s\"}}",
                 scan, kx[m]);
        request_access(n, m, payload);
    }

    /* one page of two, and the token of the next */
    struct proc_result r =
        cli_run(n, "audit", hex, "--key", file, "--limit", "2", "--node", n->node[0]);
    cli_assert_ok(&r);
    assert_int_equal(lines_starting(r.out, "  "), 2);
    assert_non_null(strstr(r.out, " enroll     Member 0 ("));
    assert_non_null(strstr(r.out, " anchor     Member 1 ("));
    const char *more = strstr(r.out, "(2 shown; more: --all, or --page-token ");
    assert_non_null(more);
    char token[512];
    assert_int_equal(sscanf(more, "(2 shown; more: --all, or --page-token %511[0-9a-f])", token),
                     1);
    proc_result_free(&r);
    r = cli_run(n, "audit", hex, "--key", file, "--limit", "2", "--page-token", token, "--node",
                n->node[1]);
    cli_assert_ok(&r);
    assert_int_equal(lines_starting(r.out, "  "), 2);
    assert_null(strstr(r.out, " enroll "));
    assert_non_null(strstr(r.out, " anchor "));
    proc_result_free(&r);

    /* every page, from a key file; the emergency accesses marked */
    r = cli_run(n, "audit", file, "--limit", "2", "--all", "--node", n->node[1]);
    cli_assert_ok(&r);
    assert_int_equal(lines_starting(r.out, "  "), 7);
    assert_int_equal(lines_starting(r.out, "! "), 2);
    assert_non_null(strstr(r.out, "(9 entries)\n"));
    assert_non_null(strstr(r.out, " grant      patient  consent "));
    assert_non_null(strstr(r.out, "for treatment  permit"));
    assert_non_null(strstr(r.out, "for emergency  permit  \"unconscious in the ER\""));
    assert_non_null(strstr(r.out, "for emergency  deny  \"unconscious in the ER\""));
    proc_result_free(&r);
    r = cli_run(n, "audit", hex, "--key", file, "--limit", "2", "--all", "--json", "--node",
                n->node[0]);
    cli_assert_ok(&r);
    json_t *out = cli_parse_json(r.out);
    assert_string_equal(cli_json_str(out, "patient"), hex);
    assert_true(json_is_null(json_object_get(out, "next_page_token")));
    json_t *events = json_object_get(out, "events");
    assert_int_equal(json_array_size(events), 9);
    const char *kinds[] = {"enroll", "anchor", "anchor",    "anchor",   "grant",
                           "grant",  "access", "emergency", "emergency"};
    for (size_t i = 0; i < 9; i++) {
        json_t *e = json_array_get(events, i);
        assert_string_equal(cli_json_str(e, "kind"), kinds[i]);
        assert_int_equal(json_is_true(json_object_get(e, "emergency")), i >= 7);
        json_t *place = json_object_get(e, "place");
        assert_int_equal(strlen(cli_json_str(place, "tx_hash")), 64);
        assert_int_equal(strlen(cli_json_str(place, "time")), 24);
    }
    json_t *e0 = json_array_get(events, 0);
    assert_string_equal(cli_json_str(e0, "actor"), n->hex[0]);
    assert_string_equal(cli_json_str(e0, "actor_name"), "Member 0");
    json_t *e4 = json_array_get(events, 4);
    assert_string_equal(cli_json_str(e4, "actor"), hex);
    assert_true(json_is_null(json_object_get(e4, "actor_name")));
    assert_string_equal(cli_json_str(e4, "consent_id"), consent0);
    assert_string_equal(cli_json_str(e4, "purpose"), "treatment");
    json_t *e6 = json_array_get(events, 6);
    assert_string_equal(cli_json_str(e6, "decision"), "permit");
    assert_string_equal(cli_json_str(e6, "record_id"), lab2);
    assert_string_equal(cli_json_str(e6, "consent_id"), consent0);
    json_decref(out);
    proc_result_free(&r);
    r = cli_run(n, "audit", file, "--emergency", "--json", "--node", n->node[0]);
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    events = json_object_get(out, "events");
    assert_int_equal(json_array_size(events), 2);
    assert_string_equal(cli_json_str(json_array_get(events, 0), "decision"), "permit");
    assert_string_equal(cli_json_str(json_array_get(events, 0), "actor_name"), "Member 0");
    assert_string_equal(cli_json_str(json_array_get(events, 1), "decision"), "deny");
    assert_string_equal(cli_json_str(json_array_get(events, 1), "reason"), "unconscious in the ER");
    assert_true(json_is_true(json_object_get(out, "emergency_only")));
    json_decref(out);
    proc_result_free(&r);

    /* records: by type then order; --type */
    r = cli_run(n, "records", file, "--limit", "2", "--all", "--json", "--node", n->node[1]);
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    json_t *records = json_object_get(out, "records");
    assert_int_equal(json_array_size(records), 3);
    assert_string_equal(cli_json_str(json_array_get(records, 0), "record_id"),
                        scan); /* imaging: 1 */
    assert_string_equal(cli_json_str(json_array_get(records, 0), "custodian_name"), "Member 0");
    assert_string_equal(cli_json_str(json_array_get(records, 1), "record_id"), lab1);
    assert_string_equal(cli_json_str(json_array_get(records, 2), "record_id"), lab2);
    assert_string_equal(cli_json_str(json_array_get(records, 2), "record_type"), "lab_result");
    assert_string_equal(cli_json_str(json_array_get(records, 2), "custodian"), n->hex[1]);
    json_decref(out);
    proc_result_free(&r);
    r = cli_run(n, "records", file, "--type", "lab_result", "--node", n->node[0]);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, lab1));
    assert_non_null(strstr(r.out, lab2));
    assert_null(strstr(r.out, scan));
    assert_non_null(strstr(r.out, "custodian Member 1 ("));
    assert_non_null(strstr(r.out, "(2 entries)\n"));
    proc_result_free(&r);

    /* consents: the patient's two; the hospital holds one of them */
    r = cli_run(n, "consents", "--patient", hex, "--key", file, "--json", "--node", n->node[0]);
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    json_t *consents = json_object_get(out, "consents");
    assert_int_equal(json_array_size(consents), 2);
    bool seen[2] = {false, false};
    for (size_t i = 0; i < 2; i++) {
        json_t *c = json_array_get(consents, i);
        const char *id = cli_json_str(c, "consent_id");
        seen[0] |= strcmp(id, consent0) == 0;
        seen[1] |= strcmp(id, consent1) == 0;
        assert_string_equal(cli_json_str(c, "patient_key"), hex);
        assert_string_equal(cli_json_str(c, "purpose"), "treatment");
        assert_false(json_is_true(json_object_get(c, "revoked")));
    }
    assert_true(seen[0] && seen[1]);
    json_decref(out);
    proc_result_free(&r);
    r = cli_run(n, "consents", "--grantee", "node0.key", "--all", "--limit", "1", "--node",
                n->node[1]);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, consent0));
    assert_null(strstr(r.out, consent1));
    assert_non_null(strstr(r.out, "grantee Member 0 ("));
    proc_result_free(&r);
    r = cli_run(n, "consents", "--patient", file, "--limit", "1", "--node", n->node[1]);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "(1 shown; more: --all, or --page-token "));
    proc_result_free(&r);

    /* Signed reads (tests/node/test_reads.c has the whole matrix): the lab
     * reads its two lab results as their custodian and the imaging study
     * through the consent it holds; a member that is no regulator may not
     * read the audit trail, nor the patient's consents: PERMISSION_DENIED,
     * exit 8, nothing on stdout. */
    r = cli_run(n, "records", hex, "--key", "node1.key", "--json", "--node", n->node[0]);
    cli_assert_ok(&r);
    out = cli_parse_json(r.out);
    records = json_object_get(out, "records");
    assert_int_equal(json_array_size(records), 3);
    assert_string_equal(cli_json_str(json_array_get(records, 0), "record_id"), scan);
    assert_string_equal(cli_json_str(json_array_get(records, 1), "record_id"), lab1);
    assert_string_equal(cli_json_str(json_array_get(records, 2), "record_id"), lab2);
    json_decref(out);
    proc_result_free(&r);
    r = cli_run(n, "audit", hex, "--key", "node1.key", "--node", n->node[1]);
    assert_failure(&r, 8, "PERMISSION_DENIED");
    assert_non_null(strstr(r.err, "only the patient and a regulator read"));
    proc_result_free(&r);
    r = cli_run(n, "consents", "--patient", hex, "--key", "node0.key", "--node", n->node[1]);
    assert_failure(&r, 8, "PERMISSION_DENIED");
    proc_result_free(&r);
}

/*
 * Bad input is refused before anything is sent (the node given is one
 * nobody listens on: a call would be exit 6): a key of 31 bytes, a file
 * that does not exist, both or neither of --patient and --grantee, a limit
 * out of range, a token that is not hex, an unknown record type, a patient
 * given as hex without --key (a read is signed by its reader). A token
 * the node did not give is the node's INVALID_ARGUMENT (exit 3).
 */
static void test_listings_refuse_bad_input(void **state)
{
    struct cli_net *n = *state;
    char short_hex[63], hex_key[KEY_HEX];
    memset(short_hex, 'a', 62);
    short_hex[62] = '\0';
    snprintf(hex_key, sizeof hex_key, "%s", n->hex[0]);
    struct {
        const char *args[8];
        const char *fragment;
    } cases[] = {
        {{"audit", short_hex}, "PATIENT: 62 hex digits (31 bytes): a key is 64 hex digits"},
        {{"audit", "no-such.key"}, "neither 64 hex digits nor a key file"},
        {{"audit"}, "give one PATIENT"},
        {{"audit", "node0.key", "--limit", "0"}, "--limit wants 1 to 1000"},
        {{"audit", "node0.key", "--limit", "1001"}, "--limit wants 1 to 1000"},
        {{"audit", "node0.key", "--page-token", "xyz"}, "--page-token wants"},
        {{"records", short_hex}, "31 bytes"},
        {{"records", "node0.key", "--type", "x-ray"}, "--type wants a record type"},
        {{"consents"}, "give --patient KEY or --grantee KEY"},
        {{"consents", "--patient", "node0.key", "--grantee", "node1.key"}, "one of them"},
        {{"consents", "--grantee", short_hex}, "--grantee: 62 hex digits"},
        /* a read is signed: a patient given as hex needs --key */
        {{"audit", hex_key}, "is signed by its reader: give --key FILE"},
        {{"consents", "--patient", hex_key}, "is signed by its reader"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        const char *args[12];
        size_t k = 0;
        for (; cases[i].args[k] != NULL; k++)
            args[k] = cases[i].args[k];
        args[k++] = "--node";
        args[k++] = "127.0.0.1:1";
        args[k] = NULL;
        struct proc_result r = cli_net_run_args(n, args);
        if (r.status != 2 || strstr(r.err, cases[i].fragment) == NULL)
            fail_msg("case %zu (%s): exit %d; stderr: %s", i, cases[i].args[0], r.status, r.err);
        assert_string_equal(r.out, "");
        proc_result_free(&r);
    }
    struct proc_result r =
        cli_run(n, "audit", "node0.key", "--page-token", "00ff", "--node", n->node[0]);
    assert_failure(&r, 3, "INVALID_ARGUMENT");
    assert_non_null(strstr(r.err, "page_token is not one this listing gave"));
    proc_result_free(&r);
}

/* ---------------------------------------------------------------- bench */

/*
 * The bench's domain workload against the real rules: set up, then both
 * workloads through both nodes with both members' keys; every transaction
 * commits with the result its kind must have (the access requests half
 * permitted, half denied), and each node's CPU is reported per transaction.
 */
static void test_bench_domain_and_anchors_commit_as_the_rules_say(void **state)
{
    struct cli_net *n = *state;
    struct proc_result r =
        cli_run(n, "bench", "--node", n->node[0], "--node", n->node[1], "--key", "node0.key",
                "--key", "node1.key", "--txs", "200", "--inflight", "32", "--json");
    cli_assert_ok(&r);
    json_t *root = cli_parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(root, "members")), 2);
    json_t *workloads = json_object_get(root, "workloads");
    const char *names[] = {"domain", "anchors"};
    for (size_t w = 0; w < 2; w++) {
        json_t *rep = json_object_get(workloads, names[w]);
        assert_non_null(rep);
        assert_int_equal(json_integer_value(json_object_get(rep, "committed")), 200);
        json_t *results = json_object_get(rep, "results");
        assert_int_equal(json_integer_value(json_object_get(results, "as_expected")), 200);
        assert_int_equal(json_integer_value(json_object_get(results, "refused")), 0);
        assert_int_equal(json_integer_value(json_object_get(results, "unexpected")), 0);
        json_t *nodes = json_object_get(rep, "nodes");
        assert_int_equal(json_array_size(nodes), 2);
        for (size_t i = 0; i < 2; i++) {
            json_t *node = json_array_get(nodes, i);
            assert_true(json_is_real(json_object_get(node, "cpu_percent")));
            assert_true(json_real_value(json_object_get(node, "cpu_us_per_tx")) > 0);
        }
    }
    json_t *by_kind = json_object_get(
        json_object_get(json_object_get(workloads, "domain"), "results"), "by_kind");
    assert_int_equal(json_integer_value(json_object_get(by_kind, "permit")), 50);
    assert_int_equal(json_integer_value(json_object_get(by_kind, "deny")), 50);
    assert_int_equal(json_integer_value(json_object_get(by_kind, "anchor")), 80);
    assert_int_equal(json_integer_value(json_object_get(by_kind, "grant")), 20);
    json_decref(root);
    proc_result_free(&r);
    /* text, one member, the domain mix only */
    r = cli_run(n, "bench", "--node", n->node[1], "--key", "node1.key", "--txs", "40", "--workload",
                "domain");
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "workload domain: 16 record anchors, 4 consent grants, 10 "
                                  "access requests to permit, 10 access requests to deny"));
    assert_non_null(strstr(r.out, "40 as expected (10 permitted, 10 denied), 0 refused"));
    assert_null(strstr(r.out, "workload anchors"));
    proc_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patient_enroll_with_both_key_files),
        cmocka_unit_test(test_patient_enroll_two_devices),
        cmocka_unit_test(test_tx_submit_results_and_refusals),
        cmocka_unit_test(test_listings_page_through_a_patients_data),
        cmocka_unit_test(test_listings_refuse_bad_input),
        cmocka_unit_test(test_bench_domain_and_anchors_commit_as_the_rules_say),
    };
    int failed = cmocka_run_group_tests(tests, net_setup, net_teardown);
    cluster_kill_all();
    return failed;
}
