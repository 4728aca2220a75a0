/*
 * cmd_policy.c - ehrctl policy compile, policy show, policy eval: the
 * consent policy language and VM (contracts/policy.h, contracts/vm.h) on
 * the operator's machine, with the very compiler, verifier and interpreter
 * the node runs, so what a policy does here is what it does on the ledger.
 *
 * A policy FILE is either source text or a compiled program: a compiled
 * program starts with the VM's version byte (0x01), which no policy text
 * can (text is printable ASCII). `show` and `eval` take either and compile
 * source first; `compile` takes source only.
 *
 * Output conventions beyond cli_internal.h's:
 *   - a compile error is one line `FILE:LINE:COLUMN: message` on stderr
 *     (the form editors and CI annotate), exit 1;
 *   - `policy eval` exits 0 if and only if the program permits: 1 is a deny
 *     (the decision on stdout) or a failure (nothing on stdout, one line on
 *     stderr). A script that treats non-zero as "no access" fails closed;
 *   - `policy show` prints the verifier's verdict with the listing and
 *     exits 1 when the program does not verify.
 *
 * Not here: submitting a consent that carries a program (tx submit with a
 * consent_grant payload), or anything that talks to a node.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"
#include "policy.h"

enum {
    REQUEST_FILE_BYTES_MAX = 64 * 1024, /* a request description: 12 short values */
    WHY_BYTES = 256,
    REQUEST_WHY_BYTES = 448, /* a request file's fault: a long quoted key and a list of names */
};

_Static_assert(sizeof(((struct cli__policy_program *)0)->code) == CONTRACTS_POLICY_BYTES_MAX,
               "cli_internal.h's program buffer is the VM's program limit");

static bool is_compiled(const uint8_t *bytes, size_t len)
{
    return len > 0 && bytes[0] == CONTRACTS_VM_VERSION;
}

/* Print a compile error as FILE:LINE:COLUMN: message (DIAG holds LINE:COLUMN: message).
 * Returns CLI_EXIT_FAIL. */
static int compile_error(const char *path, const ehr_diag *diag)
{
    fprintf(stderr, "%s:%s\n", path, diag->msg);
    return CLI_EXIT_FAIL;
}

/* Read PATH (at most the source limit) into *OUT (ehr_free). Returns 0, or a
 * code with DIAG saying why. */
static int policy_file_read(const char *path, uint8_t **out, size_t *len, ehr_diag *diag)
{
    int rc = ehr_file_read_alloc(path, CONTRACTS_POLICY_SOURCE_BYTES_MAX, out, len);
    if (rc == EHR_ETOOBIG)
        return ehr_diag_fail(diag, rc, "read policy %s: over %d bytes (the limit of a policy)",
                             path, CONTRACTS_POLICY_SOURCE_BYTES_MAX);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "read policy %s: %s", path, ehr_strerror(rc));
    return 0;
}

int cli__policy_program_load(const char *path, struct cli__policy_program *p, ehr_diag *diag)
{
    uint8_t *bytes;
    size_t len;
    int rc = policy_file_read(path, &bytes, &len, diag);
    /* EHR_EINVAL is kept for "does not compile"; the file read gives it
     * for "not a regular file", which becomes the system's -EINVAL. */
    if (rc != 0)
        return rc == EHR_EINVAL ? -EINVAL : rc;
    memset(p, 0, sizeof *p);
    if (is_compiled(bytes, len)) {
        if (len > CONTRACTS_POLICY_BYTES_MAX) {
            ehr_free(bytes);
            return ehr_diag_fail(diag, EHR_ETOOBIG,
                                 "read program %s: a program of %zu bytes passes the limit of %d",
                                 path, len, CONTRACTS_POLICY_BYTES_MAX);
        }
        memcpy(p->code, bytes, len);
        p->len = len;
        ehr_free(bytes);
        return 0;
    }
    rc = contracts_policy_compile((const char *)bytes, len, p->code, sizeof p->code, &p->len, diag);
    ehr_free(bytes);
    if (rc != 0)
        return EHR_EINVAL;
    p->from_source = true;
    return 0;
}

/* cli__policy_program_load, its failures said the way the policy commands
 * say them. Returns 0 or CLI_EXIT_FAIL. */
static int program_load(const char *path, struct cli__policy_program *p)
{
    ehr_diag diag;
    int rc = cli__policy_program_load(path, p, &diag);
    if (rc == EHR_EINVAL)
        return compile_error(path, &diag);
    if (rc != 0) {
        fprintf(stderr, "ehrctl: %s\n", diag.msg);
        return CLI_EXIT_FAIL;
    }
    return 0;
}

/* ---- policy compile ---- */

int cli__cmd_policy_compile(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"out", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        CLI_COMMON_OPTIONS,
    };
    const char *out = NULL;
    bool force = false;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'o')
            out = optarg;
        else if (c == 'f')
            force = true;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind + 1 != argc)
        return cli__usage_error(ctx, "give one policy FILE");
    const char *path = argv[optind];

    uint8_t *bytes;
    size_t len;
    ehr_diag why;
    int rc = policy_file_read(path, &bytes, &len, &why);
    if (rc != 0) {
        fprintf(stderr, "ehrctl: %s\n", why.msg);
        return CLI_EXIT_FAIL;
    }
    if (is_compiled(bytes, len)) {
        ehr_free(bytes);
        return cli__fail("a compiled program already (ehrctl policy show lists it)", "compile %s",
                         path);
    }
    uint8_t code[CONTRACTS_POLICY_BYTES_MAX];
    size_t code_len;
    ehr_diag diag;
    rc = contracts_policy_compile((const char *)bytes, len, code, sizeof code, &code_len, &diag);
    ehr_free(bytes);
    if (rc != 0)
        return compile_error(path, &diag);

    if (out != NULL) {
        rc = ehr_file_write_atomic(out, code, code_len, 0644, force);
        if (rc == EHR_EEXIST)
            return cli__fail("it exists (--force replaces it)", "write %s", out);
        if (rc != 0)
            return cli__fail(ehr_strerror(rc), "write %s", out);
    }
    char hex[2 * CONTRACTS_POLICY_BYTES_MAX + 1];
    ehr_hex_encode(hex, code, code_len);
    if (ctx->json) {
        json_t *root = json_pack("{s:o, s:I, s:s, s:o}", "file", cli__json_text(path), "bytes",
                                 (json_int_t)code_len, "hex", hex, "out",
                                 out != NULL ? cli__json_text(out) : json_null());
        if (root == NULL)
            ehr_panic("out of memory building JSON");
        return cli__json_print(root);
    }
    char line[64];
    cli__print_field("policy", path);
    snprintf(line, sizeof line, "%zu", code_len);
    cli__print_field("bytes", line);
    cli__print_field("hex", hex);
    cli__print_field("written to", out != NULL ? out : "(nothing: no --out)");
    return CLI_EXIT_OK;
}

/* ---- policy show ---- */

int cli__cmd_policy_show(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0)
        EHR_ASSERT(0 && "policy show takes no options of its own");
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind + 1 != argc)
        return cli__usage_error(ctx, "give one policy FILE (source or compiled)");
    const char *path = argv[optind];
    struct cli__policy_program p;
    int rc = program_load(path, &p);
    if (rc != 0)
        return rc;

    ehr_diag diag;
    bool verified = contracts_vm_verify(p.code, p.len, &diag) == 0;
    static char listing[CONTRACTS_POLICY_LISTING_BYTES_MAX];
    rc = contracts_policy_disassemble(p.code, p.len, listing, sizeof listing);
    EHR_ASSERT(rc != EHR_ETOOBIG); /* any program within the limit fits the listing */
    char hex[2 * CONTRACTS_POLICY_BYTES_MAX + 1];
    ehr_hex_encode(hex, p.code, p.len);
    int exit_code = verified ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    if (ctx->json) {
        json_t *lines = json_array();
        for (char *line = listing; *line != '\0';) {
            char *end = strchr(line, '\n');
            EHR_ASSERT(end != NULL);
            *end = '\0';
            json_array_append_new(lines, json_string(line));
            line = end + 1;
        }
        json_t *root =
            json_pack("{s:o, s:b, s:I, s:s, s:b, s:o, s:o}", "file", cli__json_text(path), "source",
                      p.from_source, "bytes", (json_int_t)p.len, "hex", hex, "verified", verified,
                      "why", verified ? json_null() : json_string(diag.msg), "listing", lines);
        if (root == NULL)
            ehr_panic("out of memory building JSON");
        int print_rc = cli__json_print(root);
        return print_rc != 0 ? print_rc : exit_code;
    }
    char line[WHY_BYTES];
    snprintf(line, sizeof line, "%s (%s)", path,
             p.from_source ? "policy source, compiled" : "compiled program");
    cli__print_field("policy", line);
    snprintf(line, sizeof line, "%zu", p.len);
    cli__print_field("bytes", line);
    char verdict[sizeof "FAILED: " + EHR_DIAG_BYTES_MAX];
    snprintf(verdict, sizeof verdict, "%s%s",
             verified ? "ok" : "FAILED: ", verified ? "" : diag.msg);
    cli__print_field("verify", verdict);
    printf("\n%s", listing);
    return exit_code;
}

/* ---- policy eval ---- */

/* Say why the request's KEY is refused. Returns EHR_EINVAL. */
__attribute__((format(printf, 4, 5))) static int request_fail(char *why, size_t why_size,
                                                              const char *key, const char *fmt, ...)
{
    int used = snprintf(why, why_size, "\"%s\": ", key);
    if (used > 0 && (size_t)used < why_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why + used, why_size - (size_t)used, fmt, ap);
        va_end(ap);
    }
    return EHR_EINVAL;
}

/* A JSON integer in 0..MAX. */
static bool json_u64(json_t *v, uint64_t max, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Set attribute ATTR of R from V, by the attribute's kind. Returns 0 or EHR_EINVAL (WHY). */
static int request_set(struct contracts_vm_request *r, uint32_t attr, json_t *v, char *why,
                       size_t why_size)
{
    const char *key = contracts_vm_attr_name(attr);
    int kind = contracts_policy_attr_kind(attr);
    uint64_t u = 0;
    uint32_t code = 0;
    switch (kind) {
    case CONTRACTS_KIND_KEY: {
        uint8_t *dst = attr == CONTRACTS_ATTR_REQUESTER_KEY           ? r->requester_key
                       : attr == CONTRACTS_ATTR_REQUESTER_INSTITUTION ? r->requester_institution
                                                                      : r->record_custodian;
        if (!json_is_string(v) ||
            ehr_hex_decode(dst, CONTRACTS_VM_KEY_BYTES, json_string_value(v)) != 0)
            return request_fail(why, why_size, key, "expected a key: 64 hex digits");
        return 0;
    }
    case CONTRACTS_KIND_BOOL:
        if (!json_is_boolean(v))
            return request_fail(why, why_size, key, "expected true or false");
        r->requester_practitioner = json_is_true(v);
        return 0;
    case CONTRACTS_KIND_NUMBER:
        if (!json_u64(v, UINT64_MAX, &u))
            return request_fail(why, why_size, key, "expected an integer >= 0");
        r->record_age_days = u;
        return 0;
    case CONTRACTS_KIND_TIME: {
        int64_t ms;
        if (json_is_string(v) &&
            contracts_policy_date_parse(json_string_value(v), json_string_length(v), &ms) == 0)
            u = (uint64_t)ms;
        else if (!json_u64(v, UINT64_MAX, &u))
            return request_fail(why, why_size, key,
                                "expected a date YYYY-MM-DD (UTC midnight) or ms since the epoch");
        uint64_t *dst = attr == CONTRACTS_ATTR_CONSENT_FROM    ? &r->consent_from_ms
                        : attr == CONTRACTS_ATTR_CONSENT_UNTIL ? &r->consent_until_ms
                                                               : &r->block_time_ms;
        *dst = u;
        return 0;
    }
    default: { /* a role, record type or purpose: its name or its code */
        if (json_is_string(v)) {
            if (contracts_policy_name_code(kind, json_string_value(v), json_string_length(v),
                                           &code) != 0)
                return request_fail(why, why_size, key, "unknown name; expected one of %s",
                                    contracts_policy_kind_names(kind));
        } else if (json_u64(v, UINT32_MAX, &u)) {
            code = (uint32_t)u;
        } else {
            return request_fail(why, why_size, key, "expected a name (%s) or a code",
                                contracts_policy_kind_names(kind));
        }
        uint32_t *dst = attr == CONTRACTS_ATTR_REQUESTER_ROLE    ? &r->requester_role
                        : attr == CONTRACTS_ATTR_RECORD_TYPE     ? &r->record_type
                        : attr == CONTRACTS_ATTR_CONSENT_PURPOSE ? &r->consent_purpose
                                                                 : &r->request_purpose;
        *dst = code;
        return 0;
    }
    }
}

/*
 * The request described by ROOT: an object with every attribute, by its
 * policy name, and nothing else. Returns 0 or EHR_EINVAL (WHY).
 */
static int request_from_json(json_t *root, struct contracts_vm_request *r, char *why,
                             size_t why_size)
{
    memset(r, 0, sizeof *r);
    if (!json_is_object(root)) {
        snprintf(why, why_size, "expected a JSON object of the request's attributes");
        return EHR_EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (contracts_policy_attr_find(key, strlen(key)) == 0)
            return request_fail(why, why_size, key,
                                "unknown key (the keys are the policy language's attributes, "
                                "e.g. \"record.type\")");
    }
    for (uint32_t attr = 1; attr <= CONTRACTS_ATTR_LAST_; attr++) {
        const char *name = contracts_vm_attr_name(attr);
        v = json_object_get(root, name);
        if (v == NULL)
            return request_fail(why, why_size, name, "missing (every attribute is required)");
        int rc = request_set(r, attr, v, why, why_size);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int request_load(const char *path, struct contracts_vm_request *r)
{
    uint8_t *bytes;
    size_t len;
    int rc = ehr_file_read_alloc(path, REQUEST_FILE_BYTES_MAX, &bytes, &len);
    if (rc != 0)
        return cli__fail(rc == EHR_ETOOBIG ? "over 64 KiB" : ehr_strerror(rc), "read request %s",
                         path);
    json_error_t error;
    json_t *root = json_loadb((const char *)bytes, len, JSON_REJECT_DUPLICATES, &error);
    ehr_free(bytes);
    char why[REQUEST_WHY_BYTES];
    if (root == NULL) {
        snprintf(why, sizeof why, "not JSON: line %d column %d: %s", error.line, error.column,
                 error.text);
        return cli__fail(why, "read request %s", path);
    }
    rc = request_from_json(root, r, why, sizeof why);
    json_decref(root);
    if (rc != 0)
        return cli__fail(why, "read request %s", path);
    return 0;
}

int cli__cmd_policy_eval(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"request", required_argument, NULL, 'r'},
        {"gas", required_argument, NULL, 'g'},
        CLI_COMMON_OPTIONS,
    };
    const char *request_path = NULL;
    uint64_t gas = CONTRACTS_VM_GAS_DEFAULT;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'r') {
            request_path = optarg;
        } else if (c == 'g') {
            if (cli__parse_u64(optarg, CONTRACTS_VM_GAS_MAX, &gas) != 0)
                return cli__usage_error(ctx, "--gas must be 0-%llu",
                                        (unsigned long long)CONTRACTS_VM_GAS_MAX);
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind + 1 != argc)
        return cli__usage_error(ctx, "give one policy FILE (source or compiled)");
    if (request_path == NULL)
        return cli__usage_error(ctx, "--request REQUEST.json is required");
    const char *path = argv[optind];
    struct cli__policy_program p;
    int rc = program_load(path, &p);
    if (rc != 0)
        return rc;
    ehr_diag diag;
    if (contracts_vm_verify(p.code, p.len, &diag) != 0)
        return cli__fail(diag.msg, "%s does not verify (a node would refuse it)", path);
    struct contracts_vm_request request;
    if ((rc = request_load(request_path, &request)) != 0)
        return rc;

    struct contracts_vm_result res;
    rc = contracts_vm_eval(p.code, p.len, &request, gas, &res);
    EHR_ASSERT(rc == 0);                                     /* the gas is within the limit */
    EHR_ASSERT(res.reason != CONTRACTS_VM_REASON_MALFORMED); /* verified: V1 */
    int exit_code = res.decision == CONTRACTS_VM_PERMIT ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    if (ctx->json) {
        json_t *root =
            json_pack("{s:o, s:s, s:s, s:s, s:I, s:I, s:I}", "file", cli__json_text(path),
                      "decision", contracts_vm_decision_name(res.decision), "reason",
                      contracts_vm_reason_name(res.reason), "reason_text",
                      contracts_vm_reason_text(res.reason), "offset", (json_int_t)res.offset,
                      "gas_used", (json_int_t)res.gas_used, "gas_limit", (json_int_t)gas);
        if (root == NULL)
            ehr_panic("out of memory building JSON");
        int print_rc = cli__json_print(root);
        return print_rc != 0 ? print_rc : exit_code;
    }
    char line[WHY_BYTES];
    cli__print_field("decision", contracts_vm_decision_name(res.decision));
    snprintf(line, sizeof line, "%s (%s, offset %u)", contracts_vm_reason_text(res.reason),
             contracts_vm_reason_name(res.reason), res.offset);
    cli__print_field("reason", line);
    snprintf(line, sizeof line, "%llu of %llu", (unsigned long long)res.gas_used,
             (unsigned long long)gas);
    cli__print_field("gas", line);
    return exit_code;
}
