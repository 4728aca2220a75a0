/*
 * Tests for ehrctl's policy commands (cli/cmd_policy.c): compile, show and
 * eval run as subprocesses in a fresh temporary directory with an empty
 * environment, as test_cli.c runs the others. The checks: the bytes written
 * are the library's for the same source, errors are one line
 * FILE:LINE:COLUMN, eval exits 0 exactly when the program permits, and a
 * request file is read strictly.
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

#include "cli_check.h"
#include "policy.h"
#include "proc.h"

#define EHRCTL EHR_BINARY_DIR "/cli/ehrctl"

#define EXAMPLE                                                                                    \
    "permit if requester.role == insurer and record.type in [invoice, claim] and block.time < "    \
    "2027-06-30\n"

#define EXAMPLE_HEX                                                                                \
    "01050201040000000000000010050520020700000000000000080000000000000018050c010084846da601000012" \
    "1831010040"

#define KEY_A "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define KEY_B "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"

struct fixture {
    char *dir;
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->dir = proc_dir_make("test-cli-policy");
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    proc_dir_remove(f->dir);
    free(f);
    return 0;
}

static const char *path_in(const struct fixture *f, const char *name)
{
    return proc_path(f->dir, name);
}

static struct proc_result run_args(const struct fixture *f, const char *const *args)
{
    return proc_run(
        &(struct proc_spec){.path = EHRCTL, .argv0 = "ehrctl", .args = args, .cwd = f->dir});
}

#define run(f, ...) run_args(f, PROC_ARGS(__VA_ARGS__, (const char *)NULL))

static void assert_one_line(const char *text, const char *expected_start)
{
    if (strncmp(text, expected_start, strlen(expected_start)) != 0)
        fail_msg("\"%s\" does not start with \"%s\"", text, expected_start);
    const char *nl = strchr(text, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], '\0');
}

/* A request file: the base request with KEY set to VALUE (raw JSON) when KEY is given. */
static void request_write(const struct fixture *f, const char *name, const char *key,
                          const char *value)
{
    static const char *const keys[] = {
        "requester.key",   "requester.role",   "requester.institution", "requester.practitioner",
        "record.type",     "record.custodian", "record.age_days",       "consent.purpose",
        "request.purpose", "consent.from",     "consent.until",         "block.time",
    };
    static const char *const values[] = {
        "\"" KEY_A "\"",
        "\"insurer\"",
        "\"" KEY_B "\"",
        "false",
        "\"claim\"",
        "\"" KEY_B "\"",
        "40",
        "\"payment\"",
        "\"payment\"",
        "\"2027-01-01\"",
        "\"2028-01-01\"",
        "1803859200000", /* 2027-03-01 */
    };
    char text[2048];
    size_t used = (size_t)snprintf(text, sizeof text, "{");
    bool replaced = false;
    for (size_t i = 0; i < EHR_ARRAY_COUNT(keys); i++) {
        const char *v = values[i];
        if (key != NULL && strcmp(key, keys[i]) == 0) {
            replaced = true;
            if (value == NULL)
                continue; /* left out */
            v = value;
        }
        used += (size_t)snprintf(text + used, sizeof text - used, "%s\"%s\": %s",
                                 used > 1 ? ", " : "", keys[i], v);
    }
    if (key != NULL && !replaced) /* a key of its own */
        used += (size_t)snprintf(text + used, sizeof text - used, ", \"%s\": %s", key, value);
    snprintf(text + used, sizeof text - used, "}\n");
    proc_text_write(path_in(f, name), text);
}

/* ---- policy compile ---- */

static void test_compile_writes_the_librarys_bytes(void **state)
{
    struct fixture *f = *state;
    proc_text_write(path_in(f, "p.txt"), EXAMPLE);
    struct proc_result r = run(f, "policy", "compile", "p.txt", "--out", "p.bin");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "bytes           51\n"));
    assert_non_null(strstr(r.out, "hex             " EXAMPLE_HEX "\n"));
    proc_result_free(&r);

    uint8_t expected[CONTRACTS_POLICY_BYTES_MAX];
    size_t expected_len;
    assert_int_equal(contracts_policy_compile(EXAMPLE, strlen(EXAMPLE), expected, sizeof expected,
                                              &expected_len, NULL),
                     0);
    FILE *in = fopen(path_in(f, "p.bin"), "rb");
    assert_non_null(in);
    uint8_t got[2 * CONTRACTS_POLICY_BYTES_MAX];
    size_t got_len = fread(got, 1, sizeof got, in);
    fclose(in);
    assert_int_equal(got_len, expected_len);
    assert_memory_equal(got, expected, expected_len);

    /* never replaced without --force */
    r = run(f, "policy", "compile", "p.txt", "--out", "p.bin");
    assert_int_equal(r.status, 1);
    assert_one_line(r.err, "ehrctl: write p.bin: it exists (--force replaces it)");
    proc_result_free(&r);
    r = run(f, "policy", "compile", "p.txt", "--out", "p.bin", "--force", "--json");
    assert_int_equal(r.status, 0);
    json_t *root = cli_parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(root, "bytes")), 51);
    assert_string_equal(json_string_value(json_object_get(root, "hex")), EXAMPLE_HEX);
    assert_string_equal(json_string_value(json_object_get(root, "out")), "p.bin");
    json_decref(root);
    proc_result_free(&r);

    /* without --out nothing is written */
    r = run(f, "policy", "compile", "p.txt", "--json");
    assert_int_equal(r.status, 0);
    root = cli_parse_json(r.out);
    assert_true(json_is_null(json_object_get(root, "out")));
    json_decref(root);
    proc_result_free(&r);
}

static void test_compile_error_is_file_line_column(void **state)
{
    struct fixture *f = *state;
    proc_text_write(path_in(f, "bad.txt"), "# first a good rule\npermit if true\n"
                                           "permit if record.type == insurer\n");
    struct proc_result r = run(f, "policy", "compile", "bad.txt", "--out", "bad.bin");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "bad.txt:3:23: cannot compare `record.type` (a record type) with "
                               "`insurer` (a role)\n");
    assert_string_equal(r.out, "");
    assert_int_equal(access(path_in(f, "bad.bin"), F_OK), -1);
    proc_result_free(&r);

    /* a bound: the nesting limit */
    proc_text_write(path_in(f, "deep.txt"), "permit if ((((((((((true))))))))))\n");
    r = run(f, "policy", "compile", "deep.txt");
    assert_int_equal(r.status, 1);
    assert_one_line(r.err, "deep.txt:1:19: nested deeper than 8");
    proc_result_free(&r);

    /* a compiled program is not compiled again */
    proc_text_write(path_in(f, "p.txt"), EXAMPLE);
    r = run(f, "policy", "compile", "p.txt", "--out", "p.bin");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    r = run(f, "policy", "compile", "p.bin");
    assert_int_equal(r.status, 1);
    assert_one_line(r.err, "ehrctl: compile p.bin: a compiled program already");
    proc_result_free(&r);

    r = run(f, "policy", "compile", "missing.txt");
    assert_int_equal(r.status, 1);
    assert_one_line(r.err, "ehrctl: read policy missing.txt: ");
    proc_result_free(&r);
    r = run(f, "policy", "compile");
    assert_int_equal(r.status, 2);
    proc_result_free(&r);
}

static void test_compile_refuses_a_source_over_the_limit(void **state)
{
    struct fixture *f = *state;
    char *big = malloc(CONTRACTS_POLICY_SOURCE_BYTES_MAX + 2);
    assert_non_null(big);
    memset(big, '#', CONTRACTS_POLICY_SOURCE_BYTES_MAX + 1);
    big[CONTRACTS_POLICY_SOURCE_BYTES_MAX + 1] = '\0';
    proc_text_write(path_in(f, "big.txt"), big);
    free(big);
    struct proc_result r = run(f, "policy", "compile", "big.txt");
    assert_int_equal(r.status, 1);
    assert_one_line(r.err, "ehrctl: read policy big.txt: over 16384 bytes");
    proc_result_free(&r);
}

/* ---- policy show ---- */

static void test_show_lists_source_and_compiled_alike(void **state)
{
    struct fixture *f = *state;
    proc_text_write(path_in(f, "p.txt"), EXAMPLE);
    struct proc_result r = run(f, "policy", "compile", "p.txt", "--out", "p.bin");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);

    struct proc_result a = run(f, "policy", "show", "p.txt");
    struct proc_result b = run(f, "policy", "show", "p.bin");
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, 0);
    assert_non_null(strstr(a.out, "(policy source, compiled)"));
    assert_non_null(strstr(b.out, "(compiled program)"));
    assert_non_null(strstr(b.out, "verify          ok\n"));
    const char *listing_a = strstr(a.out, "; consent VM program");
    const char *listing_b = strstr(b.out, "; consent VM program");
    assert_non_null(listing_a);
    assert_non_null(listing_b);
    assert_string_equal(listing_a, listing_b);
    assert_non_null(strstr(listing_b, "0015  in_int     7, 8  ; invoice, claim\n"));
    assert_non_null(strstr(listing_b, "0036  push_int   1814313600000  ; 2027-06-30\n"));
    proc_result_free(&a);
    proc_result_free(&b);

    r = run(f, "policy", "show", "p.bin", "--json");
    assert_int_equal(r.status, 0);
    json_t *root = cli_parse_json(r.out);
    assert_true(json_is_true(json_object_get(root, "verified")));
    assert_true(json_is_false(json_object_get(root, "source")));
    json_t *lines = json_object_get(root, "listing");
    assert_int_equal(json_array_size(lines), 14);
    assert_string_equal(json_string_value(json_array_get(lines, 13)), "0051  end");
    json_decref(root);
    proc_result_free(&r);
}

static void test_show_flags_a_program_that_does_not_verify(void **state)
{
    struct fixture *f = *state;
    /* version, push_true, permit, then a deny nothing reaches */
    FILE *out = fopen(path_in(f, "dead.bin"), "wb");
    assert_non_null(out);
    const uint8_t code[] = {CONTRACTS_VM_VERSION, CONTRACTS_OP_PUSH_TRUE, CONTRACTS_OP_PERMIT,
                            CONTRACTS_OP_DENY};
    assert_int_equal(fwrite(code, 1, sizeof code, out), sizeof code);
    fclose(out);
    struct proc_result r = run(f, "policy", "show", "dead.bin");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "verify          FAILED: offset 3: unreachable instruction"));
    assert_non_null(strstr(r.out, "0003  deny\n0004  end\n"));
    proc_result_free(&r);
    r = run(f, "policy", "show", "dead.bin", "--json");
    assert_int_equal(r.status, 1);
    json_t *root = cli_parse_json(r.out);
    assert_true(json_is_false(json_object_get(root, "verified")));
    assert_non_null(strstr(json_string_value(json_object_get(root, "why")), "offset 3"));
    json_decref(root);
    proc_result_free(&r);
    /* eval refuses it as a node would */
    request_write(f, "req.json", NULL, NULL);
    r = run(f, "policy", "eval", "dead.bin", "--request", "req.json");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.out, "");
    assert_one_line(r.err, "ehrctl: dead.bin does not verify (a node would refuse it): offset 3");
    proc_result_free(&r);
}

/* ---- policy eval ---- */

static void test_eval_exit_status_is_the_decision(void **state)
{
    struct fixture *f = *state;
    proc_text_write(path_in(f, "p.txt"), EXAMPLE "deny if requester.role == lab\n");
    request_write(f, "insurer.json", NULL, NULL);
    request_write(f, "lab.json", "requester.role", "\"lab\"");
    request_write(f, "hospital.json", "requester.role", "1"); /* a code works too */
    request_write(f, "late.json", "block.time", "\"2027-06-30\"");

    struct proc_result r = run(f, "policy", "eval", "p.txt", "--request", "insurer.json");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "decision        permit\n"));
    assert_non_null(strstr(r.out, "gas             14 of 1024\n"));
    proc_result_free(&r);

    r = run(f, "policy", "eval", "p.txt", "--request", "lab.json", "--json");
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "");
    json_t *root = cli_parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(root, "decision")), "deny");
    assert_string_equal(json_string_value(json_object_get(root, "reason")), "deny");
    assert_int_equal(json_integer_value(json_object_get(root, "offset")), 66);
    json_decref(root);
    proc_result_free(&r);

    r = run(f, "policy", "eval", "p.txt", "--request", "hospital.json", "--json");
    assert_int_equal(r.status, 1);
    root = cli_parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(root, "reason")), "end");
    json_decref(root);
    proc_result_free(&r);

    r = run(f, "policy", "eval", "p.txt", "--request", "late.json"); /* block.time < 2027-06-30 */
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "decision        deny\n"));
    assert_non_null(strstr(r.out, "no rule matched"));
    proc_result_free(&r);
}

static void test_eval_gas_at_its_edge(void **state)
{
    struct fixture *f = *state;
    proc_text_write(path_in(f, "p.txt"), EXAMPLE);
    request_write(f, "req.json", NULL, NULL);
    struct proc_result r =
        run(f, "policy", "eval", "p.txt", "--request", "req.json", "--gas", "14");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    r = run(f, "policy", "eval", "p.txt", "--request", "req.json", "--gas", "13", "--json");
    assert_int_equal(r.status, 1);
    json_t *root = cli_parse_json(r.out);
    assert_string_equal(json_string_value(json_object_get(root, "reason")), "gas");
    assert_int_equal(json_integer_value(json_object_get(root, "gas_used")), 13);
    json_decref(root);
    proc_result_free(&r);
    r = run(f, "policy", "eval", "p.txt", "--request", "req.json", "--gas", "1048576");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
    r = run(f, "policy", "eval", "p.txt", "--request", "req.json", "--gas", "1048577");
    assert_int_equal(r.status, 2);
    assert_string_equal(r.out, "");
    proc_result_free(&r);
    r = run(f, "policy", "eval", "p.txt");
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--request REQUEST.json is required"));
    proc_result_free(&r);
}

static void test_eval_reads_requests_strictly(void **state)
{
    struct fixture *f = *state;
    proc_text_write(path_in(f, "p.txt"), EXAMPLE);
    static const struct {
        const char *key, *value; /* value NULL: the key left out */
        const char *why;
    } cases[] = {
        {"patient.age", "3", "\"patient.age\": unknown key"},
        {"block.time", NULL, "\"block.time\": missing"},
        {"block.time", "\"2027-02-30\"", "\"block.time\": expected a date YYYY-MM-DD"},
        {"block.time", "-1", "\"block.time\": expected a date"},
        {"consent.from", "1.5", "\"consent.from\": expected a date"},
        {"requester.key", "\"abcd\"", "\"requester.key\": expected a key: 64 hex digits"},
        {"requester.role", "\"claim\"",
         "\"requester.role\": unknown name; expected one of "
         "hospital, lab, pharmacy, insurer, regulator"},
        {"record.type", "true", "\"record.type\": expected a name"},
        {"requester.practitioner", "1", "\"requester.practitioner\": expected true or false"},
        {"record.age_days", "\"40\"", "\"record.age_days\": expected an integer >= 0"},
        {"request.purpose", "4294967296", "\"request.purpose\": expected a name"},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        request_write(f, "req.json", cases[i].key, cases[i].value);
        struct proc_result r = run(f, "policy", "eval", "p.txt", "--request", "req.json");
        if (r.status != 1 || r.out[0] != '\0')
            fail_msg("case %zu: exit %d, stdout \"%s\"", i, r.status, r.out);
        char expected[256];
        snprintf(expected, sizeof expected, "ehrctl: read request req.json: %s", cases[i].why);
        assert_one_line(r.err, expected);
        proc_result_free(&r);
    }
    proc_text_write(path_in(f, "req.json"), "{\"record.type\": \"claim\", \"record.type\": 8}");
    struct proc_result r = run(f, "policy", "eval", "p.txt", "--request", "req.json");
    assert_int_equal(r.status, 1);
    assert_one_line(r.err, "ehrctl: read request req.json: not JSON");
    proc_result_free(&r);
    proc_text_write(path_in(f, "req.json"), "[1, 2]");
    r = run(f, "policy", "eval", "p.txt", "--request", "req.json");
    assert_int_equal(r.status, 1);
    assert_one_line(r.err, "ehrctl: read request req.json: expected a JSON object");
    proc_result_free(&r);
    /* a request that names everything as codes and ms is as good as names and dates */
    request_write(f, "req.json", "consent.purpose", "2");
    r = run(f, "policy", "eval", "p.txt", "--request", "req.json");
    assert_int_equal(r.status, 0);
    proc_result_free(&r);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_compile_writes_the_librarys_bytes),
        T(test_compile_error_is_file_line_column),
        T(test_compile_refuses_a_source_over_the_limit),
        T(test_show_lists_source_and_compiled_alike),
        T(test_show_flags_a_program_that_does_not_verify),
        T(test_eval_exit_status_is_the_decision),
        T(test_eval_gas_at_its_edge),
        T(test_eval_reads_requests_strictly),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
