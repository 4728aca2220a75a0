/*
 * cli_check.h - the checks every ehrctl test makes on what a run of ehrctl
 * printed (struct proc_result, tests/proc.h): it exited 0, its stdout is
 * JSON, a key holds a string, a failure is one line naming the problem.
 *
 * Test code only: the checks are cmocka assertions that fail the running
 * test. Compiled into each test that uses it (tests/cli/CMakeLists.txt),
 * with no library beyond jansson and cmocka, so the tests without a
 * network use it too. Not here: running ehrctl (each test has its own
 * fixture; cli_net.h has the network's).
 */
#ifndef EHR_TEST_CLI_CHECK_H
#define EHR_TEST_CLI_CHECK_H

#include <jansson.h>

#include "proc.h"

/* Fail the test, with what ehrctl printed, unless R exited 0. */
void cli_assert_ok(const struct proc_result *r);
/* A failure: exit STATUS, one line `ehrctl: ...` on stderr holding
 * FRAGMENT, nothing on stdout; or fail the test saying which. */
void cli_assert_failure(const struct proc_result *r, int status, const char *fragment);
/* TEXT parsed as JSON (json_decref it), or fail. */
json_t *cli_parse_json(const char *text);
/* The string KEY of OBJ (owned by OBJ), or fail. */
const char *cli_json_str(json_t *obj, const char *key);

#endif /* EHR_TEST_CLI_CHECK_H */
