/*
 * cli_check.c - the checks on what ehrctl printed that the ehrctl tests
 * share (cli_check.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cli_check.h"

void cli_assert_ok(const struct proc_result *r)
{
    if (r->status != 0)
        fail_msg("exit %d; stdout: %s; stderr: %s", r->status, r->out, r->err);
}

void cli_assert_failure(const struct proc_result *r, int status, const char *fragment)
{
    if (r->status != status)
        fail_msg("exit %d, want %d; stderr: %s", r->status, status, r->err);
    assert_int_equal(strncmp(r->err, "ehrctl: ", 8), 0);
    const char *nl = strchr(r->err, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], '\0');
    if (strstr(r->err, fragment) == NULL)
        fail_msg("stderr lacks \"%s\": %s", fragment, r->err);
    assert_string_equal(r->out, "");
}

json_t *cli_parse_json(const char *text)
{
    json_error_t error;
    json_t *root = json_loads(text, 0, &error);
    if (root == NULL)
        fail_msg("output is not JSON (%s): %s", error.text, text);
    return root;
}

const char *cli_json_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("no string \"%s\"", key);
    return json_string_value(v);
}
