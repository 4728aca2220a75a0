/*
 * test_cli_verbs - ehrctl's commands that build a domain transaction from
 * their flags (practitioner add and remove, record anchor, consent grant
 * and revoke, access request and emergency, the aliases record list and
 * consent list, record show, and member list, propose and approve) against
 * real ehrd processes: a patient's story told through
 * them, with each result checked, and bad input to each refused with exit 2
 * and a clear message before anything is sent.
 *
 * The network is test_cli_domain's (tests/node/cluster.h): two founding
 * members on loopback, "Member 0" a hospital and "Member 1" a lab (key files
 * node0.key and node1.key, no passphrase, in the cluster's directory), a
 * genesis that lets hospitals use emergency access. ehrctl runs as a
 * subprocess in the cluster's directory with an empty environment and stdin
 * from /dev/null.
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
/* A node nobody listens on: a command that got as far as sending would exit
 * 6 (UNAVAILABLE), so exit 2 there shows nothing was sent. */
#define NOBODY "127.0.0.1:1"

enum { KEY_HEX = CLI_NET_HEX_BYTES, LEADER_WAIT_MS = 30000, CIPHERTEXT_BYTES = 70000 };

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

/* Case I of a table of bad input: CASE_ARGS (NULL-terminated within
 * CASE_ARGS_COUNT) with --node NOBODY is refused with exit 2, FRAGMENT and
 * the usage on stderr and nothing on stdout, before anything is sent. */
static void refused_before_sending(struct cli_net *n, size_t i, const char *const *case_args,
                                   size_t case_args_count, const char *fragment)
{
    enum { ARGS_MAX = 24 };
    assert_true(case_args_count + 3 <= ARGS_MAX);
    const char *args[ARGS_MAX];
    size_t k = 0;
    for (; k < case_args_count && case_args[k] != NULL; k++)
        args[k] = case_args[k];
    assert_true(k < case_args_count); /* the case's list ended with NULL */
    args[k++] = "--node";
    args[k++] = NOBODY;
    args[k] = NULL;
    struct proc_result r = cli_net_run_args(n, args);
    if (r.status != 2 || strstr(r.err, fragment) == NULL ||
        strstr(r.err, "\nusage: ehrctl ") == NULL)
        fail_msg("case %zu (%s %s): exit %d; stderr: %s", i, args[0], args[1], r.status, r.err);
    assert_string_equal(r.out, "");
    proc_result_free(&r);
}

/* A new key file without a passphrase: its name into FILE, its signing key into HEX. */
static void new_key(struct cli_net *n, const char *stem, char file[32], char hex[KEY_HEX])
{
    snprintf(file, 32, "%s%u.key", stem, ++n->name_count);
    struct proc_result r = cli_run(n, "keygen", "--out", file, "--no-passphrase");
    cli_assert_ok(&r);
    proc_result_free(&r);
    cli_net_key_hex(n, file, hex);
}

/* A patient enrolled by member 0 through node 0. */
static void patient_enrolled(struct cli_net *n, char file[32], char hex[KEY_HEX])
{
    new_key(n, "patient", file, hex);
    struct proc_result r = cli_run(n, "patient", "enroll", "--patient", file, "--key", "node0.key",
                                   "--node", n->node[0], "--wait");
    cli_assert_ok(&r);
    proc_result_free(&r);
}

/* The decision of an access command's --json answer, checked to be an OK
 * result that committed; its reason into REASON (may be NULL). */
static void assert_decision(json_t *out, const char *decision, const char *reason)
{
    assert_true(json_is_true(json_object_get(out, "committed")));
    json_t *res = json_object_get(out, "result");
    assert_string_equal(cli_json_str(res, "code"), "ok");
    assert_string_equal(cli_json_str(res, "decision"), decision);
    if (reason != NULL && strstr(cli_json_str(res, "reason"), reason) == NULL)
        fail_msg("reason \"%s\", want \"%s\"", cli_json_str(res, "reason"), reason);
}

/* ------------------------------------------------------------ the story */

/*
 * A patient's story through the new commands alone: enrolled; two records
 * anchored (the lab's from its encrypted file, hash and size computed; the
 * hospital's from a given hash); a practitioner registered by the hospital;
 * a consent to the hospital for treatment, with a policy compiled on the
 * fly (lab results only); the hospital's request permitted (by that
 * consent), denied for research (another purpose) and for the imaging study
 * (the policy); the consent revoked, and the next request denied; an
 * emergency access by the hospital permitted and flagged with its reason,
 * and the lab's denied (not an emergency role). Each deny is exit 0.
 */
static void test_patient_story_through_the_new_commands(void **state)
{
    struct cli_net *n = *state;
    char patient[32], patient_hex[KEY_HEX];
    patient_enrolled(n, patient, patient_hex);

    /* the lab anchors a lab result from its encrypted file */
    char *bytes = malloc(CIPHERTEXT_BYTES + 1);
    assert_non_null(bytes);
    for (size_t i = 0; i < CIPHERTEXT_BYTES; i++)
        bytes[i] = (char)('a' + i % 26);
    bytes[CIPHERTEXT_BYTES] = '\0';
    proc_text_write(proc_path(n->c.root, "result.enc"), bytes);
    uint8_t digest[EHR_HASH_BYTES];
    ehr_sha256(digest, bytes, CIPHERTEXT_BYTES);
    free(bytes);
    char digest_hex[KEY_HEX];
    ehr_hex_encode(digest_hex, digest, EHR_HASH_BYTES);
    json_t *out =
        cli_net_run_json(n, NULL,
                         PROC_ARGS("record", "anchor", "--key", "node1.key", "--patient", patient,
                                   "--type", "lab_result", "--pointer", "0a0b0c0d", "--file",
                                   "result.enc", "--node", n->node[1], "--wait", "--json", NULL));
    char lab[KEY_HEX];
    snprintf(lab, sizeof lab, "%s", cli_json_str(out, "record_id"));
    assert_string_equal(cli_json_str(out, "hash"), lab); /* the record id is the tx hash */
    assert_string_equal(cli_json_str(out, "patient_key"), patient_hex);
    assert_string_equal(cli_json_str(out, "record_type"), "lab_result");
    assert_string_equal(cli_json_str(out, "ciphertext_hash"), digest_hex);
    assert_int_equal(json_integer_value(json_object_get(out, "ciphertext_bytes")),
                     CIPHERTEXT_BYTES);
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "code"), "ok");
    json_decref(out);

    /* a ciphertext belongs to one record: the lab's again is refused */
    struct proc_result r =
        cli_run(n, "record", "anchor", "--key", "node0.key", "--patient-public", patient_hex,
                "--type", "RECORD_TYPE_IMAGING", "--pointer-text", "blob:7f3a9c", "--hash",
                digest_hex, "--size", "52311", "--node", n->node[0], "--wait");
    assert_int_equal(r.status, 10);
    assert_non_null(strstr(r.err, "another record names this ciphertext_hash"));
    proc_result_free(&r);
    /* the hospital anchors an imaging study from a given hash; human output */
    uint8_t study[EHR_HASH_BYTES];
    ehr_sha256(study, "an imaging study", 16);
    char study_hex[KEY_HEX];
    ehr_hex_encode(study_hex, study, EHR_HASH_BYTES);
    r = cli_run(n, "record", "anchor", "--key", "node0.key", "--patient-public", patient_hex,
                "--type", "RECORD_TYPE_IMAGING", "--pointer-text", "blob:7f3a9c", "--hash",
                study_hex, "--size", "52311", "--node", n->node[0], "--wait");
    cli_assert_ok(&r);
    assert_int_equal(strncmp(r.out, "record id       ", 16), 0);
    char scan[KEY_HEX];
    snprintf(scan, sizeof scan, "%.64s", r.out + 16);
    assert_non_null(strstr(r.out, "\ntype            imaging\n"));
    assert_non_null(strstr(r.out, ", 52311 bytes\n"));
    assert_non_null(strstr(r.out, "\nresult          OK\n"));
    proc_result_free(&r);

    /* record list is records */
    out = cli_net_run_json(
        n, NULL, PROC_ARGS("record", "list", patient, "--node", n->node[0], "--json", NULL));
    json_t *records = json_object_get(out, "records");
    assert_int_equal(json_array_size(records), 2);
    assert_string_equal(cli_json_str(json_array_get(records, 0), "record_id"), scan);
    assert_string_equal(cli_json_str(json_array_get(records, 1), "record_id"), lab);
    json_decref(out);

    /* the hospital registers a practitioner (by key file), who then asks, and removes it */
    char pract[32], pract_hex[KEY_HEX];
    new_key(n, "practitioner", pract, pract_hex);
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("practitioner", "add", "--key", "node0.key", "--practitioner",
                                     pract, "--node", n->node[0], "--wait", "--json", NULL));
    assert_string_equal(cli_json_str(out, "practitioner_key"), pract_hex);
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "code"), "ok");
    json_decref(out);

    /* the patient grants the hospital, for treatment, under a policy compiled here */
    proc_text_write(proc_path(n->c.root, "labs-only.policy"),
                    "# the hospital sees lab results, nothing else\n"
                    "permit if record.type == lab_result\n");
    out = cli_net_run_json(
        n, NULL,
        PROC_ARGS("consent", "grant", "--key", patient, "--grantee-key", "node0.key", "--purpose",
                  "treatment", "--type", "lab_result", "--type", "imaging", "--until", "2099-01-01",
                  "--policy", "labs-only.policy", "--node", n->node[1], "--wait", "--json", NULL));
    char consent[KEY_HEX];
    snprintf(consent, sizeof consent, "%s", cli_json_str(out, "consent_id"));
    assert_string_equal(cli_json_str(out, "hash"), consent);
    assert_string_equal(cli_json_str(out, "grantee_key"), n->hex[0]);
    assert_string_equal(cli_json_str(out, "purpose"), "treatment");
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "code"), "ok");
    json_decref(out);
    /* consent list is consents: the policy and the period are on the ledger */
    out = cli_net_run_json(
        n, NULL,
        PROC_ARGS("consent", "list", "--patient", patient, "--node", n->node[0], "--json", NULL));
    json_t *consents = json_object_get(out, "consents");
    assert_int_equal(json_array_size(consents), 1);
    json_t *c0 = json_array_get(consents, 0);
    assert_string_equal(cli_json_str(c0, "consent_id"), consent);
    assert_int_equal(json_integer_value(json_object_get(c0, "valid_until_ms")), 4070908800000);
    assert_true(strlen(cli_json_str(c0, "policy_program")) > 2);
    json_decref(out);

    /* permitted: the lab result, for treatment, by that consent (the practitioner's
     * member holds it) */
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("access", "request", lab, "--purpose", "treatment", "--key",
                                     "node0.key", "--node", n->node[0], "--json", NULL));
    assert_decision(out, "permit", NULL);
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "consent_id"), consent);
    assert_string_equal(cli_json_str(out, "record_id"), lab);
    json_decref(out);
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("access", "request", lab, "--purpose", "treatment", "--key",
                                     pract, "--node", n->node[1], "--json", NULL));
    assert_decision(out, "permit", NULL);
    json_decref(out);
    /* denied, exit 0, the reason printed: another purpose; the policy */
    r = cli_run(n, "access", "request", lab, "--purpose", "research", "--key", "node0.key",
                "--node", n->node[1]);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "\ndecision        deny: the consent is for another purpose"));
    proc_result_free(&r);
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("access", "request", scan, "--purpose", "treatment", "--key",
                                     "node0.key", "--node", n->node[0], "--json", NULL));
    assert_decision(out, "deny", NULL);
    json_decref(out);

    /* the practitioner removed; the patient revokes; the hospital is denied */
    r = cli_run(n, "practitioner", "remove", "--key", "node0.key", "--practitioner-public",
                pract_hex, "--node", n->node[0], "--wait");
    cli_assert_ok(&r);
    proc_result_free(&r);
    r = cli_run(n, "consent", "revoke", consent, "--key", patient, "--node", n->node[0], "--wait");
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "\nresult          OK\n"));
    proc_result_free(&r);
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("access", "request", lab, "--purpose", "treatment", "--key",
                                     "node0.key", "--node", n->node[1], "--json", NULL));
    assert_decision(out, "deny", "the consent was revoked");
    json_decref(out);
    /* revoked twice: the rules' refusal at submission (exit 10) */
    r = cli_run(n, "consent", "revoke", consent, "--key", patient, "--node", n->node[0], "--wait");
    if (r.status != 10 || strstr(r.err, "the consent is revoked already") == NULL)
        fail_msg("exit %d; stderr: %s", r.status, r.err);
    proc_result_free(&r);

    /* emergency: the hospital's permitted and flagged with its reason; the lab's denied */
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("access", "emergency", scan, "--reason",
                                     "unconscious on arrival", "--key", "node0.key", "--node",
                                     n->node[0], "--json", NULL));
    assert_decision(out, "permit", NULL);
    assert_string_equal(cli_json_str(out, "reason"), "unconscious on arrival");
    json_decref(out);
    r = cli_run(n, "access", "emergency", scan, "--reason", "a lab in a hurry", "--key",
                "node1.key", "--node", n->node[1]);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "\ndecision        deny: emergency access is not allowed to "
                                  "this role"));
    proc_result_free(&r);
    out = cli_net_run_json(
        n, NULL, PROC_ARGS("audit", patient, "--emergency", "--node", n->node[1], "--json", NULL));
    json_t *events = json_object_get(out, "events");
    assert_int_equal(json_array_size(events), 2);
    json_t *e0 = json_array_get(events, 0);
    assert_true(json_is_true(json_object_get(e0, "emergency")));
    assert_string_equal(cli_json_str(e0, "decision"), "permit");
    assert_string_equal(cli_json_str(e0, "reason"), "unconscious on arrival");
    assert_string_equal(cli_json_str(e0, "actor"), n->hex[0]);
    json_decref(out);
    /* the whole trail: enrol, 2 anchors, grant, 5 accesses, revoke, 2 emergencies; the
     * same, read through every node once both hold the last block */
    out = cli_net_run_json(
        n, NULL, PROC_ARGS("audit", patient, "--all", "--node", n->node[0], "--json", NULL));
    assert_int_equal(json_array_size(json_object_get(out, "events")), 12);
    assert_int_not_equal(cluster_wait_converged(&n->c, 30000), UINT64_MAX);
    json_t *other = cli_net_run_json(
        n, NULL, PROC_ARGS("audit", patient, "--all", "--node", n->node[1], "--json", NULL));
    assert_true(json_equal(json_object_get(out, "events"), json_object_get(other, "events")));
    json_decref(other);
    json_decref(out);
}

/* ------------------------------------------------------------ bad input */

/*
 * Bad input to each command: exit 2, the fault named on stderr with the
 * usage, nothing on stdout, nothing sent (the node is one nobody listens
 * on). Then a policy that does not compile, given to the real network: the
 * compiler's LINE:COLUMN in the message and no consent on the ledger.
 */
static void test_new_commands_refuse_bad_input(void **state)
{
    struct cli_net *n = *state;
    char patient[32], patient_hex[KEY_HEX];
    patient_enrolled(n, patient, patient_hex);
    char short_hex[KEY_HEX], record[KEY_HEX], bad_hex[KEY_HEX];
    snprintf(short_hex, sizeof short_hex, "%.62s", patient_hex);
    memset(record, 'a', 64);
    record[64] = '\0';
    snprintf(bad_hex, sizeof bad_hex, "%.63sx", patient_hex);
    char long_reason[300];
    memset(long_reason, 'r', 257);
    long_reason[257] = '\0';
    proc_text_write(proc_path(n->c.root, "ok.policy"), "permit if record.type == lab_result\n");
    struct {
        const char *args[20];
        const char *fragment;
    } cases[] = {
        /* practitioner add */
        {{"practitioner", "add", "--key", "node0.key"}, "give --practitioner FILE"},
        {{"practitioner", "add", "--key", "node0.key", "--practitioner-public", short_hex},
         "--practitioner-public wants 64 hex digits (62 given)"},
        {{"practitioner", "add", "--practitioner", "no-such.key", "--key", "node0.key"},
         "--practitioner: \"no-such.key\" is neither 64 hex digits nor a key file"},
        {{"practitioner", "add", "--practitioner-public", patient_hex}, "--key FILE"},
        /* record anchor */
        {{"record", "anchor", "--key", "node0.key", "--type", "lab_result", "--pointer", "01",
          "--hash", record},
         "give --patient FILE (a key file) or --patient-public HEX"},
        {{"record", "anchor", "--key", "node0.key", "--patient", patient, "--type", "x-ray",
          "--pointer", "01", "--hash", record},
         "--type \"x-ray\" is not a record type: imaging, lab_result, prescription"},
        {{"record", "anchor", "--key", "node0.key", "--patient", patient, "--pointer", "01",
          "--hash", record},
         "--type TYPE, the record's type, is required"},
        {{"record", "anchor", "--key", "node0.key", "--patient", patient, "--type", "imaging",
          "--pointer", "0g", "--hash", record},
         "--pointer wants 2 hex digits: \"0g\" is not hex"},
        {{"record", "anchor", "--key", "node0.key", "--patient", patient, "--type", "imaging",
          "--pointer", "012", "--hash", record},
         "an even count of digits (3 given)"},
        {{"record", "anchor", "--key", "node0.key", "--patient", patient, "--type", "imaging",
          "--pointer", "01", "--hash", bad_hex},
         "--hash wants 64 hex digits"},
        {{"record", "anchor", "--key", "node0.key", "--patient", patient, "--type", "imaging",
          "--pointer", "01"},
         "--hash HEX, or the encrypted file"},
        {{"record", "anchor", "--key", "node0.key", "--patient", patient, "--type", "imaging",
          "--pointer", "01", "--hash", record, "--supersedes", short_hex},
         "--supersedes (a record id) wants 64 hex digits (62 given)"},
        /* consent grant */
        {{"consent", "grant", "--key", patient, "--purpose", "treatment", "--type", "imaging"},
         "give --grantee-key FILE (a key file) or --grantee HEX"},
        {{"consent", "grant", "--key", patient, "--grantee", bad_hex, "--purpose", "treatment",
          "--type", "imaging"},
         "--grantee wants 64 hex digits: "},
        {{"consent", "grant", "--key", patient, "--grantee-key", "node0.key", "--purpose", "fun",
          "--type", "imaging"},
         "--purpose \"fun\" is not a purpose: treatment, payment, operations"},
        {{"consent", "grant", "--key", patient, "--grantee-key", "node0.key", "--type", "imaging"},
         "--purpose P, what the consent is for, is required"},
        {{"consent", "grant", "--key", patient, "--grantee-key", "node0.key", "--purpose",
          "treatment"},
         "give at least one"},
        {{"consent", "grant", "--key", patient, "--grantee-key", "node0.key", "--purpose",
          "treatment", "--type", "x-ray"},
         "--type \"x-ray\" is not a record type"},
        {{"consent", "grant", "--key", patient, "--grantee-key", "node0.key", "--purpose",
          "treatment", "--record", short_hex},
         "--record (a record id) wants 64 hex digits (62 given)"},
        {{"consent", "grant", "--key", patient, "--grantee-key", "node0.key", "--purpose",
          "treatment", "--type", "imaging", "--until", "2026-02-30"},
         "--until wants a date"},
        {{"consent", "grant", "--key", patient, "--grantee-key", "node0.key", "--purpose",
          "treatment", "--type", "imaging", "--from", "2030-01-01", "--until", "2029-01-01"},
         "the period ends (--until) before or when it starts"},
        {{"consent", "grant", "--grantee-key", "node0.key", "--purpose", "treatment", "--type",
          "imaging", "--policy", "ok.policy"},
         "--key FILE"},
        /* consent revoke */
        {{"consent", "revoke", "--key", patient}, "give one CONSENT_ID"},
        {{"consent", "revoke", short_hex, "--key", patient},
         "CONSENT_ID wants 64 hex digits (62 given)"},
        /* access request, access emergency */
        {{"access", "request", record, "--key", "node0.key"}, "--purpose P"},
        {{"access", "request", record, "--purpose", "curiosity", "--key", "node0.key"},
         "--purpose \"curiosity\" is not a purpose"},
        {{"access", "request", bad_hex, "--purpose", "treatment", "--key", "node0.key"},
         "RECORD_ID wants 64 hex digits: "},
        {{"access", "request", "--purpose", "treatment", "--key", "node0.key"},
         "give one RECORD_ID"},
        {{"access", "emergency", record, "--key", "node0.key"}, "--reason TEXT is required"},
        {{"access", "emergency", record, "--reason", "", "--key", "node0.key"},
         "--reason TEXT is required"},
        {{"access", "emergency", record, "--reason", long_reason, "--key", "node0.key"},
         "--reason wants 1 to 256 bytes of UTF-8 text without control characters (257 bytes "
         "given)"},
        {{"access", "emergency", record, "--reason", "bell\a", "--key", "node0.key"},
         "without control characters"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++)
        refused_before_sending(n, i, cases[i].args, EHR_ARRAY_COUNT(cases[i].args),
                               cases[i].fragment);

    /* A policy with an error on line 2, column 31, to the real network: exit 2,
     * the file, line and column named, and no consent made. */
    proc_text_write(proc_path(n->c.root, "bad.policy"),
                    "# two rules, the second wrong\n"
                    "permit if record.type == lab_result and requester.role == invoice\n");
    struct proc_result r = cli_run(n, "consent", "grant", "--key", patient, "--grantee-key",
                                   "node0.key", "--purpose", "treatment", "--type", "lab_result",
                                   "--policy", "bad.policy", "--node", n->node[0], "--wait");
    if (r.status != 2 || strstr(r.err, "ehrctl: consent grant: --policy bad.policy:2:") == NULL)
        fail_msg("exit %d; stderr: %s", r.status, r.err);
    assert_string_equal(r.out, "");
    proc_result_free(&r);
    json_t *out = cli_net_run_json(
        n, NULL, PROC_ARGS("consents", "--patient", patient, "--node", n->node[1], "--json", NULL));
    assert_int_equal(json_array_size(json_object_get(out, "consents")), 0);
    json_decref(out);
    /* and the patient's trail holds the enrolment alone */
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("audit", patient, "--node", n->node[0], "--json", NULL));
    assert_int_equal(json_array_size(json_object_get(out, "events")), 1);
    json_decref(out);
}

/* ------------------------------------------------------- record show */

/*
 * One record through `record show` (GetRecord): the patient and the
 * custodian see it, with the pointer, the ciphertext's hash and size and
 * the custodian's signature checked; the other member (no consent) is
 * refused (exit 8, PERMISSION_DENIED); a record nobody anchored is exit 9.
 */
static void test_record_show(void **state)
{
    struct cli_net *n = *state;
    char patient[32], patient_hex[KEY_HEX];
    patient_enrolled(n, patient, patient_hex);
    char hash[KEY_HEX];
    memset(hash, 'c', 64);
    hash[64] = '\0';
    json_t *out = cli_net_run_json(n, NULL,
                                   PROC_ARGS("record", "anchor", "--key", "node1.key", "--patient",
                                             patient, "--type", "lab_result", "--pointer",
                                             "0a0b0c0d", "--hash", hash, "--size", "4096", "--node",
                                             n->node[1], "--wait", "--json", NULL));
    char id[KEY_HEX];
    snprintf(id, sizeof id, "%s", cli_json_str(out, "record_id"));
    json_decref(out);

    /* the patient, human output: every field */
    struct proc_result r = cli_run(n, "record", "show", id, "--key", patient, "--node", n->node[1]);
    cli_assert_ok(&r);
    assert_int_equal(strncmp(r.out, "record id       ", 16), 0);
    assert_non_null(strstr(r.out, id));
    assert_non_null(strstr(r.out, "\ntype            lab_result\n"));
    assert_non_null(strstr(r.out, "\ncustodian       Member 1 ("));
    assert_non_null(strstr(r.out, "\npointer         0a0b0c0d (4 bytes, encrypted)\n"));
    assert_non_null(strstr(r.out, ", 4096 bytes\n"));
    assert_non_null(strstr(r.out, "\nsignature       verified: the custodian's\n"));
    proc_result_free(&r);
    /* the custodian, JSON */
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("record", "show", id, "--key", "node1.key", "--node",
                                     n->node[1], "--json", NULL));
    assert_string_equal(cli_json_str(out, "record_id"), id);
    assert_string_equal(cli_json_str(out, "patient_key"), patient_hex);
    assert_string_equal(cli_json_str(out, "custodian"), n->hex[1]);
    assert_string_equal(cli_json_str(out, "ciphertext_hash"), hash);
    assert_string_equal(cli_json_str(out, "encrypted_pointer"), "0a0b0c0d");
    assert_int_equal(json_integer_value(json_object_get(out, "ciphertext_bytes")), 4096);
    assert_true(json_is_true(json_object_get(out, "signature_verified")));
    json_decref(out);
    /* the hospital holds no consent of this patient: refused */
    r = cli_run(n, "record", "show", id, "--key", "node0.key", "--node", n->node[1]);
    if (r.status != 8 || strstr(r.err, "PERMISSION_DENIED") == NULL)
        fail_msg("exit %d; stderr: %s", r.status, r.err);
    assert_string_equal(r.out, "");
    proc_result_free(&r);
    /* a record nobody anchored */
    r = cli_run(n, "record", "show", hash, "--key", patient, "--node", n->node[1]);
    if (r.status != 9 || strstr(r.err, "no record has this id") == NULL)
        fail_msg("exit %d; stderr: %s", r.status, r.err);
    proc_result_free(&r);
}

/* ------------------------------------------------------------ membership */

/* The members `member list --json` shows through node I: their count, and
 * whether the node key HEX is one of them (with role ROLE). */
static size_t members_listed(struct cli_net *n, size_t i, const char *hex, const char *role,
                             bool *found)
{
    json_t *out = cli_net_run_json(
        n, NULL, PROC_ARGS("member", "list", "--node", n->node[i], "--json", NULL));
    json_t *list = json_object_get(out, "members");
    size_t count = json_array_size(list);
    *found = false;
    for (size_t k = 0; k < count; k++) {
        json_t *m = json_array_get(list, k);
        if (strcmp(cli_json_str(m, "node_key"), hex) == 0) {
            *found = true;
            assert_string_equal(cli_json_str(m, "role"), role);
        }
    }
    json_decref(out);
    return count;
}

/* A proposal or approval (ARGS, with --wait --json): committed, OK; the
 * proposal id into ID when it is not NULL. */
static void governance_ok(struct cli_net *n, const char *const *args, char id[KEY_HEX])
{
    json_t *out = cli_net_run_json(n, NULL, args);
    assert_true(json_is_true(json_object_get(out, "committed")));
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "code"), "ok");
    if (id != NULL)
        snprintf(id, KEY_HEX, "%s", cli_json_str(out, "proposal_id"));
    json_decref(out);
}

/*
 * Governance through ehrctl on the two-member network, where a majority is
 * both members: the hospital proposes admitting a pharmacy (its entry as
 * `genesis member` prints it), which alone changes nothing (member list
 * unchanged); the lab's approval admits it (member list shows it, with its
 * role); a second approval of a carried proposal is refused. Then the
 * pharmacy's removal: proposed by the lab, one of three approvals, nothing
 * changes; the hospital's approval, two of three, removes it. The admitted
 * member's node is never started: joining Raft is not built.
 */
static void test_membership_through_member_commands(void **state)
{
    struct cli_net *n = *state;
    bool found;
    assert_int_equal(members_listed(n, 0, n->hex[0], "hospital", &found), 2);
    assert_true(found);
    char pharmacy[32], pharmacy_hex[KEY_HEX];
    new_key(n, "pharmacy", pharmacy, pharmacy_hex);
    struct proc_result r =
        cli_run(n, "genesis", "member", "--key", pharmacy, "--name", "Corner Pharmacy", "--role",
                "pharmacy", "--address", "127.0.0.1:9");
    cli_assert_ok(&r);
    proc_text_write(proc_path(n->c.root, "pharmacy.json"), r.out);
    proc_result_free(&r);

    /* proposed: one approval of two is not a majority */
    char admit[KEY_HEX];
    governance_ok(n,
                  PROC_ARGS("member", "propose", "--key", "node0.key", "--admit", "pharmacy.json",
                            "--node", n->node[0], "--wait", "--json", NULL),
                  admit);
    assert_int_equal(members_listed(n, 0, pharmacy_hex, "pharmacy", &found), 2);
    assert_false(found);
    /* approved by the lab: two of two, admitted */
    r = cli_run(n, "member", "approve", admit, "--key", "node1.key", "--node", n->node[1],
                "--wait");
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "\nresult          OK\n"));
    proc_result_free(&r);
    assert_int_equal(members_listed(n, 1, pharmacy_hex, "pharmacy", &found), 3);
    assert_true(found);
    r = cli_run(n, "member", "list", "--node", n->node[1]);
    cli_assert_ok(&r);
    assert_non_null(strstr(r.out, "  pharmacy   127.0.0.1:9  Corner Pharmacy\n"));
    assert_non_null(strstr(r.out, "\n(3 members)\n"));
    proc_result_free(&r);
    /* carried already: the rules refuse another approval at submission */
    r = cli_run(n, "member", "approve", admit, "--key", "node0.key", "--node", n->node[0],
                "--wait");
    if (r.status != 10 || strstr(r.err, "carried already") == NULL)
        fail_msg("exit %d; stderr: %s", r.status, r.err);
    proc_result_free(&r);

    /* removal: one approval of three changes nothing, two remove it */
    char remove[KEY_HEX];
    governance_ok(n,
                  PROC_ARGS("member", "propose", "--key", "node1.key", "--remove", pharmacy_hex,
                            "--node", n->node[1], "--wait", "--json", NULL),
                  remove);
    assert_int_equal(members_listed(n, 1, pharmacy_hex, "pharmacy", &found), 3);
    assert_true(found);
    governance_ok(n,
                  PROC_ARGS("member", "approve", remove, "--key", "node0.key", "--node", n->node[0],
                            "--wait", "--json", NULL),
                  NULL);
    assert_int_equal(members_listed(n, 0, pharmacy_hex, "pharmacy", &found), 2);
    assert_false(found);
}

/*
 * Bad input to the member commands and record show: exit 2, the fault
 * named with the usage, nothing on stdout, nothing sent (the node nobody
 * listens on).
 */
static void test_member_commands_refuse_bad_input(void **state)
{
    struct cli_net *n = *state;
    char short_hex[KEY_HEX], good[KEY_HEX];
    memset(good, 'a', 64);
    good[64] = '\0';
    snprintf(short_hex, sizeof short_hex, "%.62s", n->hex[1]);
    proc_text_write(proc_path(n->c.root, "not-json.json"), "{\"name\": ");
    proc_text_write(proc_path(n->c.root, "clinic.json"),
                    "{\"name\": \"A Clinic\", \"role\": \"clinic\", \"node_key\": "
                    "\"0000000000000000000000000000000000000000000000000000000000000000\", "
                    "\"kx_key\": "
                    "\"0000000000000000000000000000000000000000000000000000000000000000\", "
                    "\"address\": \"127.0.0.1:9\"}\n");
    struct {
        const char *args[12];
        const char *fragment;
    } cases[] = {
        {{"member", "propose", "--key", "node0.key"}, "give --admit ENTRY.json"},
        {{"member", "propose", "--key", "node0.key", "--admit", "clinic.json", "--remove",
          n->hex[1]},
         "one of them"},
        {{"member", "propose", "--key", "node0.key", "--remove", short_hex},
         "--remove (a member's node key): "},
        {{"member", "propose", "--key", "node0.key", "--admit", "not-json.json"},
         "--admit not-json.json: not JSON"},
        {{"member", "propose", "--key", "node0.key", "--admit", "clinic.json"},
         "role: \"clinic\" is not hospital, lab, pharmacy, insurer or regulator"},
        {{"member", "propose", "--key", "node0.key", "--remove", n->hex[1], "--expires-days", "0"},
         "--expires-days wants 1 to 365 days"},
        {{"member", "propose", "--remove", n->hex[1]}, "--key FILE"},
        {{"member", "approve", "--key", "node0.key"}, "give one PROPOSAL_ID"},
        {{"member", "approve", short_hex, "--key", "node0.key"},
         "PROPOSAL_ID wants 64 hex digits (62 given)"},
        {{"member", "list", "extra"}, "unexpected argument \"extra\""},
        {{"record", "show", "--key", "node0.key"}, "give one RECORD_ID"},
        {{"record", "show", short_hex, "--key", "node0.key"},
         "RECORD_ID wants 64 hex digits (62 given)"},
        {{"record", "show", good}, "give --key FILE"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++)
        refused_before_sending(n, i, cases[i].args, EHR_ARRAY_COUNT(cases[i].args),
                               cases[i].fragment);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patient_story_through_the_new_commands),
        cmocka_unit_test(test_new_commands_refuse_bad_input),
        cmocka_unit_test(test_record_show),
        cmocka_unit_test(test_membership_through_member_commands),
        cmocka_unit_test(test_member_commands_refuse_bad_input),
    };
    int failed = cmocka_run_group_tests(tests, net_setup, net_teardown);
    cluster_kill_all();
    return failed;
}
