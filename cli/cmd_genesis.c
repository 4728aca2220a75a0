/*
 * cmd_genesis.c - ehrctl genesis (write a genesis file from a JSON list of
 * founding members), genesis show (check and print one), genesis member
 * (print one member entry from a key file).
 *
 * The genesis file is a serialized ehr.v1.Genesis (proto/ehr/v1/block.proto).
 * Block 0 records SHA-256 of these exact bytes, so every node given the same
 * file derives the same block 0; members keep the order of the JSON list.
 * Not here: building block 0 or opening a ledger (the ledger module does).
 *
 * The rules are the ledger's (ledger_chain_id_check,
 * ledger_genesis_member_check, ledger_genesis_encode / _parse): a file this
 * command writes is one every node accepts, and `genesis show` refuses
 * exactly what a node would. This file adds only the JSON side: the shape of
 * the members file, role names, hex keys, and the names of the roles that may
 * use emergency access (Genesis.emergency; the ledger refuses a role that is
 * not clinical, or one named twice). Every field is checked before
 * anything is written, and each complaint names the member (by position and
 * name) and the field.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli_internal.h"
#include "ehr/v1/block.pb-c.h"
#include "ledger.h"

enum {
    GENESIS_JSON_BYTES_MAX = 1 << 20, /* the members JSON file */
    KEY_HEX_BYTES = 2 * 32 + 1,
    NAME_SHOWN_BYTES_MAX = 48, /* of a member's name, in a message */
};

static const struct {
    const char *name;
    Ehr__V1__MemberRole role;
} roles[] = {
    {"hospital", EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL},
    {"lab", EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB},
    {"pharmacy", EHR__V1__MEMBER_ROLE__MEMBER_ROLE_PHARMACY},
    {"insurer", EHR__V1__MEMBER_ROLE__MEMBER_ROLE_INSURER},
    {"regulator", EHR__V1__MEMBER_ROLE__MEMBER_ROLE_REGULATOR},
};

static const char *const member_fields[] = {"name", "role", "node_key", "kx_key", "address"};

const char *cli__member_role_name(int role)
{
    for (size_t i = 0; i < EHR_ARRAY_COUNT(roles); i++) {
        if ((int)roles[i].role == role)
            return roles[i].name;
    }
    return NULL;
}

static int role_parse(const char *name, Ehr__V1__MemberRole *out)
{
    for (size_t i = 0; i < EHR_ARRAY_COUNT(roles); i++) {
        if (strcmp(roles[i].name, name) == 0) {
            *out = roles[i].role;
            return 0;
        }
    }
    return EHR_EINVAL;
}

/*
 * Parse --emergency-roles LIST: role names separated by commas ("hospital,lab"),
 * or "none", into ROLES (at most EHR_ARRAY_COUNT(roles) of them; the ledger
 * checks that they are clinical and named once). Returns their count, or -1
 * with a reason in DIAG for a name that is not a role.
 */
static int emergency_roles_parse(const char *list, Ehr__V1__MemberRole out[], size_t out_max,
                                 ehr_diag *diag)
{
    if (strcmp(list, "none") == 0)
        return 0;
    size_t count = 0;
    for (const char *p = list;; p++) {
        size_t len = strcspn(p, ",");
        char name[16] = "";
        if (len < sizeof name)
            memcpy(name, p, len);
        if (len >= sizeof name || role_parse(name, &out[count]) != 0) {
            ehr_diag_fail(diag, EHR_EINVAL,
                          "\"%.*s\" is not a role: name clinical roles (hospital, lab, pharmacy) "
                          "separated by commas, or none",
                          (int)(len < 32 ? len : 32), p);
            return -1;
        }
        count++;
        p += len;
        if (*p == '\0')
            return (int)count;
        if (count == out_max) {
            ehr_diag_fail(diag, EHR_EINVAL, "more than %zu roles", out_max);
            return -1;
        }
    }
}

static json_t *emergency_json(const Ehr__V1__Genesis *g)
{
    json_t *list = json_array();
    if (list == NULL)
        ehr_panic("out of memory building JSON");
    for (size_t i = 0; g->emergency != NULL && i < g->emergency->n_roles; i++) {
        const char *name = cli__member_role_name(g->emergency->roles[i]);
        json_array_append_new(list, name != NULL ? json_string(name)
                                                 : json_integer(g->emergency->roles[i]));
    }
    return list;
}

/* Members built from JSON: protobuf structs pointing into the JSON and into KEYS. */
struct draft {
    Ehr__V1__Genesis genesis;
    Ehr__V1__Member *members;
    Ehr__V1__Member **member_ptrs;
    uint8_t (*keys)[2][32];
};

static void draft_free(struct draft *d)
{
    ehr_free(d->members);
    ehr_free(d->member_ptrs);
    ehr_free(d->keys);
}

/* The string FIELD of OBJ into *OUT (pointing into OBJ). Returns 0, or
 * EHR_EINVAL with DIAG and *OUT NULL: set on every path, so a caller's
 * compiler need not see that an error is never 0. */
static int json_string_field(json_t *obj, const char *field, const char **out, ehr_diag *diag)
{
    *out = NULL;
    json_t *v = json_object_get(obj, field);
    if (v == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "missing field \"%s\"", field);
    if (!json_is_string(v))
        return ehr_diag_fail(diag, EHR_EINVAL, "\"%s\" must be a string", field);
    *out = json_string_value(v);
    return 0;
}

int cli__member_from_json(json_t *obj, Ehr__V1__Member *m, uint8_t keys[2][32], ehr_diag *diag)
{
    if (!json_is_object(obj))
        return ehr_diag_fail(diag, EHR_EINVAL, "must be an object");
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        bool known = false;
        for (size_t i = 0; i < EHR_ARRAY_COUNT(member_fields); i++)
            known |= strcmp(key, member_fields[i]) == 0;
        if (!known)
            return ehr_diag_fail(diag, EHR_EINVAL, "unknown field \"%.64s\"", key);
    }
    const char *name, *role, *node_key, *kx_key, *address;
    int rc;
    if ((rc = json_string_field(obj, "name", &name, diag)) != 0 ||
        (rc = json_string_field(obj, "role", &role, diag)) != 0 ||
        (rc = json_string_field(obj, "node_key", &node_key, diag)) != 0 ||
        (rc = json_string_field(obj, "kx_key", &kx_key, diag)) != 0 ||
        (rc = json_string_field(obj, "address", &address, diag)) != 0)
        return rc;
    ehr__v1__member__init(m);
    m->name = (char *)name;
    m->peer_address = (char *)address;
    if (role_parse(role, &m->role) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "role: \"%.32s\" is not hospital, lab, pharmacy, insurer or regulator",
                             role);
    if (ehr_hex_decode(keys[0], 32, node_key) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "node_key: not 64 hex digits");
    if (ehr_hex_decode(keys[1], 32, kx_key) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "kx_key: not 64 hex digits");
    m->node_key = (ProtobufCBinaryData){32, keys[0]};
    m->kx_key = (ProtobufCBinaryData){32, keys[1]};
    return ledger_genesis_member_check(m, diag);
}

/* Build D from the members JSON ROOT. On error DIAG names the member and field. */
static int draft_from_json(struct draft *d, json_t *root, ehr_diag *diag)
{
    memset(d, 0, sizeof *d);
    ehr__v1__genesis__init(&d->genesis);
    json_t *list = json_is_object(root) ? json_object_get(root, "members") : NULL;
    if (list == NULL || !json_is_array(list) || json_object_size(root) != 1)
        return ehr_diag_fail(diag, EHR_EINVAL, "expected {\"members\": [...]} and nothing else");
    size_t count = json_array_size(list);
    if (count == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "no members: a chain needs at least one");
    if (count > EHR_GENESIS_MEMBERS_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "%zu members, over the maximum %d", count,
                             EHR_GENESIS_MEMBERS_MAX);
    d->members = ehr_calloc(count, sizeof *d->members);
    d->member_ptrs = ehr_calloc(count, sizeof *d->member_ptrs);
    d->keys = ehr_calloc(count, sizeof *d->keys);
    for (size_t i = 0; i < count; i++) {
        ehr_diag member_why;
        json_t *obj = json_array_get(list, i);
        if (cli__member_from_json(obj, &d->members[i], d->keys[i], &member_why) != 0) {
            json_t *name = json_is_object(obj) ? json_object_get(obj, "name") : NULL;
            char shown[NAME_SHOWN_BYTES_MAX + 1];
            if (json_is_string(name)) {
                cli__text_shown(json_string_value(name), shown, sizeof shown);
                return ehr_diag_fail(diag, EHR_EINVAL, "member %zu (\"%s\"): %s", i + 1, shown,
                                     member_why.msg);
            }
            return ehr_diag_fail(diag, EHR_EINVAL, "member %zu: %s", i + 1, member_why.msg);
        }
        d->member_ptrs[i] = &d->members[i];
    }
    d->genesis.n_members = count;
    d->genesis.members = d->member_ptrs;
    return 0;
}

static json_t *member_to_json(const Ehr__V1__Member *m)
{
    json_t *obj = json_pack(
        "{s:s, s:s, s:o, s:o, s:s}", "name", m->name, "role", cli__member_role_name(m->role),
        "node_key", cli__json_hex(m->node_key.data, m->node_key.len), "kx_key",
        cli__json_hex(m->kx_key.data, m->kx_key.len), "address", m->peer_address);
    if (obj == NULL)
        ehr_panic("out of memory building JSON");
    return obj;
}

/* Print a checked genesis, human or JSON. FILE_HASH is SHA-256 of its bytes. */
static int genesis_print(struct cli__ctx *ctx, const char *path, const Ehr__V1__Genesis *g,
                         const uint8_t file_hash[32], bool with_members)
{
    if (ctx->json) {
        json_t *root =
            json_pack("{s:o, s:s, s:I, s:o, s:I}", "file", cli__json_text(path), "chain_id",
                      g->chain_id, "time_ms", (json_int_t)g->time_ms, "genesis_hash",
                      cli__json_hex(file_hash, 32), "member_count", (json_int_t)g->n_members);
        if (root == NULL)
            ehr_panic("out of memory building JSON");
        json_object_set_new(root, "emergency_roles", emergency_json(g));
        if (with_members) {
            json_t *list = json_array();
            for (size_t i = 0; i < g->n_members; i++)
                json_array_append_new(list, member_to_json(g->members[i]));
            json_object_set_new(root, "members", list);
        }
        return cli__json_print(root);
    }
    char line[128], hash_hex[KEY_HEX_BYTES];
    cli__print_field("genesis file", path);
    cli__print_field("chain id", g->chain_id);
    cli__time_text(g->time_ms, line, sizeof line);
    cli__print_field("time", line);
    ehr_hex_encode(hash_hex, file_hash, 32);
    cli__print_field("genesis hash", hash_hex);
    size_t at = 0;
    for (size_t i = 0; g->emergency != NULL && i < g->emergency->n_roles && at < sizeof line; i++) {
        const char *name = cli__member_role_name(g->emergency->roles[i]);
        at += (size_t)snprintf(line + at, sizeof line - at, "%s%s", i > 0 ? ", " : "",
                               name != NULL ? name : "?");
    }
    if (at == 0)
        snprintf(line, sizeof line, "none (no role may use emergency access)");
    cli__print_field("emergency", line);
    snprintf(line, sizeof line, "%zu", g->n_members);
    cli__print_field("members", line);
    for (size_t i = 0; with_members && i < g->n_members; i++) {
        const Ehr__V1__Member *m = g->members[i];
        char node_hex[KEY_HEX_BYTES], kx_hex[KEY_HEX_BYTES];
        ehr_hex_encode(node_hex, m->node_key.data, m->node_key.len);
        ehr_hex_encode(kx_hex, m->kx_key.data, m->kx_key.len);
        printf("\n  %zu. %s (%s)\n     node key  %s\n     kx key    %s\n     address   %s\n", i + 1,
               m->name, cli__member_role_name(m->role), node_hex, kx_hex, m->peer_address);
    }
    return CLI_EXIT_OK;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int cli__genesis_read(const char *path, struct cli__genesis_file *out)
{
    memset(out, 0, sizeof *out);
    int rc = ehr_file_read_alloc(path, EHR_GENESIS_BYTES_MAX, &out->bytes, &out->len);
    if (rc != 0) {
        char why[64];
        if (rc == EHR_ETOOBIG)
            snprintf(why, sizeof why, "larger than the limit of %d bytes", EHR_GENESIS_BYTES_MAX);
        return cli__fail(rc == EHR_ETOOBIG ? why : ehr_strerror(rc), "read genesis %s", path);
    }
    ehr_diag diag;
    if (ledger_genesis_parse(out->bytes, out->len, &out->genesis, &diag) != 0) {
        cli__genesis_file_free(out);
        return cli__fail(diag.msg, "check genesis %s", path);
    }
    ehr_sha256(out->hash, out->bytes, out->len);
    return 0;
}

void cli__genesis_file_free(struct cli__genesis_file *file)
{
    if (file->genesis != NULL)
        ehr__v1__genesis__free_unpacked(file->genesis, NULL);
    ehr_free(file->bytes);
    memset(file, 0, sizeof *file);
}

/* Read and parse the JSON file PATH into *OUT. Returns 0, or 1 after a one-line failure. */
static int json_file_load(const char *path, json_t **out)
{
    uint8_t *text = NULL;
    size_t text_len = 0;
    int rc = ehr_file_read_alloc(path, GENESIS_JSON_BYTES_MAX, &text, &text_len);
    if (rc != 0)
        return cli__fail(rc == EHR_ETOOBIG ? "larger than 1 MiB" : ehr_strerror(rc),
                         "read members %s", path);
    json_error_t error;
    *out = json_loadb((const char *)text, text_len, JSON_REJECT_DUPLICATES, &error);
    ehr_free(text);
    if (*out == NULL) {
        char why[EHR_DIAG_BYTES_MAX];
        snprintf(why, sizeof why, "line %d column %d: %s", error.line, error.column, error.text);
        return cli__fail(why, "parse members %s", path);
    }
    return 0;
}

int cli__cmd_genesis_create(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"members", required_argument, NULL, 'm'},
        {"member", required_argument, NULL, 'M'},
        {"chain-id", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"time-ms", required_argument, NULL, 't'},
        {"emergency-roles", required_argument, NULL, 'E'},
        {"force", no_argument, NULL, 'f'},
        CLI_COMMON_OPTIONS,
    };
    const char *members_path = NULL, *chain_id = NULL, *out = NULL, *emergency_list = NULL;
    Ehr__V1__MemberRole emergency_roles[EHR_ARRAY_COUNT(roles)];
    int emergency_count = 0;
    const char *member_paths[EHR_GENESIS_MEMBERS_MAX];
    size_t member_count = 0;
    uint64_t time_ms = 0;
    bool time_given = false, force = false;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'm':
            members_path = optarg;
            break;
        case 'M':
            if (member_count == EHR_GENESIS_MEMBERS_MAX)
                return cli__usage_error(ctx, "more than %d --member files",
                                        EHR_GENESIS_MEMBERS_MAX);
            member_paths[member_count++] = optarg;
            break;
        case 'c':
            chain_id = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 't':
            if (cli__parse_u64(optarg, EHR_GENESIS_TIME_MS_MAX, &time_ms) != 0 || time_ms == 0)
                return cli__usage_error(ctx,
                                        "--time-ms wants milliseconds since the epoch, "
                                        "from 1 to %llu",
                                        (unsigned long long)EHR_GENESIS_TIME_MS_MAX);
            time_given = true;
            break;
        case 'E': {
            ehr_diag why;
            emergency_list = optarg;
            emergency_count = emergency_roles_parse(optarg, emergency_roles,
                                                    EHR_ARRAY_COUNT(emergency_roles), &why);
            if (emergency_count < 0)
                return cli__usage_error(ctx, "--emergency-roles: %s", why.msg);
            break;
        }
        case 'f':
            force = true;
            break;
        default:
            EHR_ASSERT(0 && "option in the table but not handled");
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if ((members_path == NULL) == (member_count == 0) || chain_id == NULL || out == NULL)
        return cli__usage_error(ctx, "--members FILE (or --member FILE, repeated), --chain-id "
                                     "and --out are required");
    ehr_diag diag;
    if (ledger_chain_id_check(chain_id, &diag) != 0)
        return cli__usage_error(ctx, "--chain-id: %s", diag.msg);

    json_t *root = NULL;
    if (members_path != NULL) {
        if (json_file_load(members_path, &root) != 0)
            return CLI_EXIT_FAIL;
    } else {
        /* One entry per file, as `genesis member` prints it, in the order given. */
        json_t *list = json_array();
        for (size_t i = 0; i < member_count; i++) {
            json_t *entry = NULL;
            if (json_file_load(member_paths[i], &entry) != 0) {
                json_decref(list);
                return CLI_EXIT_FAIL;
            }
            if (!json_is_object(entry) || json_object_get(entry, "members") != NULL) {
                json_decref(entry);
                json_decref(list);
                return cli__fail("expected one member entry, as `ehrctl genesis member` prints "
                                 "(a list goes to --members)",
                                 "read member %s", member_paths[i]);
            }
            json_array_append_new(list, entry);
        }
        root = json_pack("{s:o}", "members", list);
        if (root == NULL)
            ehr_panic("out of memory building JSON");
        members_path = "the --member files";
    }
    struct draft d;
    uint8_t *packed = NULL;
    size_t packed_len = 0;
    int rc = draft_from_json(&d, root, &diag);
    if (rc == 0) {
        d.genesis.chain_id = (char *)chain_id;
        d.genesis.time_ms = time_given ? time_ms : now_ms();
        /* The ledger's own check, as every node will make it (members that
         * collide are found here). */
        rc = ledger_genesis_encode(&d.genesis, &packed, &packed_len, &diag);
    }
    if (rc != 0) {
        draft_free(&d);
        json_decref(root);
        return cli__fail(diag.msg, "genesis from %s", members_path);
    }
    Ehr__V1__EmergencyPolicy emergency = EHR__V1__EMERGENCY_POLICY__INIT;
    if (emergency_count > 0) {
        /* Checked again with the policy: what fails now is the policy, and
         * the ledger's message says why (a role that is not clinical, or
         * named twice). Absent when no role is named: nobody may. */
        emergency.n_roles = (size_t)emergency_count;
        emergency.roles = emergency_roles;
        d.genesis.emergency = &emergency;
        ehr_free(packed);
        packed = NULL;
        rc = ledger_genesis_encode(&d.genesis, &packed, &packed_len, &diag);
        if (rc != 0) {
            draft_free(&d);
            json_decref(root);
            return cli__usage_error(ctx, "--emergency-roles %s: %s", emergency_list, diag.msg);
        }
    }
    uint8_t hash[32];
    ehr_sha256(hash, packed, packed_len);
    rc = ehr_file_write_atomic(out, packed, packed_len, 0644, force);
    int exit_code = CLI_EXIT_OK;
    if (rc != 0)
        exit_code =
            cli__fail(rc == EHR_EEXIST ? "already exists (--force replaces it)" : ehr_strerror(rc),
                      "write genesis %s", out);
    else
        exit_code = genesis_print(ctx, out, &d.genesis, hash, false);
    ehr_free(packed);
    draft_free(&d);
    json_decref(root);
    return exit_code;
}

int cli__cmd_genesis_show(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0)
        EHR_ASSERT(0 && "genesis show has no options of its own");
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "expected exactly one FILE");
    const char *path = argv[optind];
    struct cli__genesis_file file;
    if (cli__genesis_read(path, &file) != 0)
        return CLI_EXIT_FAIL;
    int exit_code = genesis_print(ctx, path, file.genesis, file.hash, true);
    cli__genesis_file_free(&file);
    return exit_code;
}

int cli__cmd_genesis_member(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"key", required_argument, NULL, 'k'},
        {"name", required_argument, NULL, 'n'},
        {"role", required_argument, NULL, 'r'},
        {"address", required_argument, NULL, 'a'},
        CLI_COMMON_OPTIONS,
    };
    const char *key_path = NULL, *name = NULL, *role = NULL, *address = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'k':
            key_path = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'r':
            role = optarg;
            break;
        case 'a':
            address = optarg;
            break;
        default:
            EHR_ASSERT(0 && "option in the table but not handled");
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if (key_path == NULL || name == NULL || role == NULL || address == NULL)
        return cli__usage_error(ctx, "--key, --name, --role and --address are required");
    Ehr__V1__Member m;
    ehr__v1__member__init(&m);
    m.name = (char *)name;
    m.peer_address = (char *)address;
    if (role_parse(role, &m.role) != 0)
        return cli__usage_error(ctx,
                                "--role must be hospital, lab, pharmacy, insurer or regulator");
    ehr_keyfile_info info;
    ehr_diag key_why;
    if (ehr_keyfile_read_info(key_path, &info, &key_why) != 0)
        return cli__fail(key_why.msg, "read key file %s", key_path);
    m.node_key = (ProtobufCBinaryData){32, info.signing_public_key};
    m.kx_key = (ProtobufCBinaryData){32, info.kx_public_key};
    ehr_diag diag;
    if (ledger_genesis_member_check(&m, &diag) != 0)
        return cli__usage_error(ctx, "%s", diag.msg);
    /* Always JSON: the output is an entry for the --members file. */
    return cli__json_print(member_to_json(&m));
}
