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
 * Every field is checked before anything is written, and each complaint
 * names the member (by position and name) and the field.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli_internal.h"
#include "ehr/v1/block.pb-c.h"

enum {
    GENESIS_MEMBERS_MAX = 128,        /* founding members in one genesis */
    GENESIS_NAME_BYTES_MAX = 128,     /* a member's name, UTF-8 */
    GENESIS_ADDRESS_BYTES_MAX = 255,  /* HOST:PORT */
    GENESIS_CHAIN_ID_BYTES_MAX = 64,  /* chain id, [A-Za-z0-9._-] */
    GENESIS_JSON_BYTES_MAX = 1 << 20, /* the members JSON file */
    GENESIS_FILE_BYTES_MAX = 1 << 20, /* a genesis file */
    WHY_BYTES = 320,
    KEY_HEX_BYTES = 2 * 32 + 1,
};

/* Genesis time in ms: within JSON's (and json_int_t's) signed 64-bit range. */
static const uint64_t GENESIS_TIME_MS_MAX = INT64_MAX;

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

static const char *role_name(Ehr__V1__MemberRole role)
{
    for (size_t i = 0; i < EHR_ARRAY_COUNT(roles); i++) {
        if (roles[i].role == role)
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

__attribute__((format(printf, 3, 4))) static int say(char *why, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, WHY_BYTES, fmt, ap);
    va_end(ap);
    return rc;
}

/* Valid UTF-8 without control characters (C0, DEL, C1): safe to print and to put in JSON. */
static bool text_ok(const char *s, size_t len)
{
    static const uint32_t min_for_extra[] = {0, 0x80, 0x800, 0x10000};
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        uint8_t lead = p[i];
        size_t extra = lead < 0x80 ? 0 : lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 4;
        if (extra == 4 || lead > 0xf4 || extra >= len - i)
            return false; /* a continuation byte first, a bad lead, or cut short */
        uint32_t cp = extra == 0 ? lead : lead & (0x7fu >> (extra + 1));
        for (size_t k = 1; k <= extra; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if (cp < min_for_extra[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false; /* overlong, out of range, surrogate */
        if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
            return false;
        i += extra + 1;
    }
    return true;
}

static int chain_id_check(const char *id, char *why)
{
    size_t len = strlen(id);
    if (len == 0 || len > GENESIS_CHAIN_ID_BYTES_MAX)
        return say(why, EHR_EINVAL, "chain id must be 1 to %d characters",
                   GENESIS_CHAIN_ID_BYTES_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return say(why, EHR_EINVAL, "chain id may use only A-Z a-z 0-9 . _ -");
    }
    return 0;
}

/* HOST:PORT, HOST a DNS name or IPv4 address, or [IPv6]; PORT 1..65535. */
static int address_check(const char *address, char *why)
{
    size_t len = strlen(address);
    if (len == 0 || len > GENESIS_ADDRESS_BYTES_MAX)
        return say(why, EHR_EINVAL, "must be HOST:PORT of at most %d bytes",
                   GENESIS_ADDRESS_BYTES_MAX);
    const char *colon = strrchr(address, ':');
    uint64_t port;
    if (colon == NULL || cli__parse_u64(colon + 1, 65535, &port) != 0 || port == 0)
        return say(why, EHR_EINVAL, "\"%s\" is not HOST:PORT with a port from 1 to 65535", address);
    size_t host_len = (size_t)(colon - address);
    bool bracketed = host_len >= 2 && address[0] == '[' && address[host_len - 1] == ']';
    size_t from = bracketed ? 1 : 0, to = bracketed ? host_len - 1 : host_len;
    if (from == to)
        return say(why, EHR_EINVAL, "\"%s\" has no host", address);
    for (size_t i = from; i < to; i++) {
        char c = address[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || (bracketed && c == ':');
        if (!ok)
            return say(why, EHR_EINVAL, "\"%s\": the host has a character not allowed there",
                       address);
    }
    return 0;
}

/* Check one member's fields (not its uniqueness). */
static int member_check(const Ehr__V1__Member *m, char *why)
{
    size_t name_len = strlen(m->name);
    if (name_len == 0 || name_len > GENESIS_NAME_BYTES_MAX)
        return say(why, EHR_EINVAL, "name: must be 1 to %d bytes", GENESIS_NAME_BYTES_MAX);
    if (!text_ok(m->name, name_len))
        return say(why, EHR_EINVAL, "name: not UTF-8 text without control characters");
    if (role_name(m->role) == NULL)
        return say(why, EHR_EINVAL, "role: unknown role %d", (int)m->role);
    ehr_public_key parsed;
    if (m->node_key.len != EHR_SCHNORR_PUBLIC_BYTES ||
        ehr_public_key_parse(&parsed, m->node_key.data) != 0)
        return say(why, EHR_EINVAL, "node_key: not a valid BIP-340 x-only public key");
    if (m->kx_key.len != EHR_KX_PUBLIC_BYTES || ehr_kx_public_key_check(m->kx_key.data) != 0)
        return say(why, EHR_EINVAL, "kx_key: not a valid X25519 public key");
    char address_why[WHY_BYTES];
    if (address_check(m->peer_address, address_why) != 0)
        return say(why, EHR_EINVAL, "address: %s", address_why);
    return 0;
}

static bool bytes_equal(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
    return a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
}

/* The first field in which members A and B collide, or NULL. */
static const char *member_collision(const Ehr__V1__Member *a, const Ehr__V1__Member *b)
{
    if (strcmp(a->name, b->name) == 0)
        return "name";
    if (bytes_equal(a->node_key, b->node_key) || bytes_equal(a->node_key, b->kx_key) ||
        bytes_equal(a->kx_key, b->node_key))
        return "node_key";
    if (bytes_equal(a->kx_key, b->kx_key))
        return "kx_key";
    if (strcmp(a->peer_address, b->peer_address) == 0)
        return "address";
    return NULL;
}

/* Check a whole genesis: chain id, member count, each member, no two alike. */
static int genesis_check(const Ehr__V1__Genesis *g, char *why)
{
    int rc = chain_id_check(g->chain_id, why);
    if (rc != 0)
        return rc;
    if (g->time_ms > GENESIS_TIME_MS_MAX)
        return say(why, EHR_EINVAL, "time %llu ms is over the maximum %llu",
                   (unsigned long long)g->time_ms, (unsigned long long)GENESIS_TIME_MS_MAX);
    if (g->n_members == 0)
        return say(why, EHR_EINVAL, "no members: a chain needs at least one");
    if (g->n_members > GENESIS_MEMBERS_MAX)
        return say(why, EHR_ETOOBIG, "%zu members, over the maximum %d", g->n_members,
                   GENESIS_MEMBERS_MAX);
    for (size_t i = 0; i < g->n_members; i++) {
        const Ehr__V1__Member *m = g->members[i];
        char member_why[WHY_BYTES];
        if (member_check(m, member_why) != 0)
            return say(why, EHR_EINVAL, "member %zu (\"%.64s\"): %s", i + 1, m->name, member_why);
        for (size_t j = 0; j < i; j++) {
            const char *field = member_collision(g->members[j], m);
            if (field != NULL)
                return say(why, EHR_EEXIST, "member %zu (\"%.64s\"): %s: same as member %zu", i + 1,
                           m->name, field, j + 1);
        }
    }
    return 0;
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

static int json_string_field(json_t *obj, const char *field, const char **out, char *why)
{
    json_t *v = json_object_get(obj, field);
    if (v == NULL)
        return say(why, EHR_EINVAL, "missing field \"%s\"", field);
    if (!json_is_string(v))
        return say(why, EHR_EINVAL, "\"%s\" must be a string", field);
    *out = json_string_value(v);
    return 0;
}

/* Fill M (keys into KEYS) from the JSON object OBJ, checking every field. */
static int member_from_json(json_t *obj, Ehr__V1__Member *m, uint8_t keys[2][32], char *why)
{
    if (!json_is_object(obj))
        return say(why, EHR_EINVAL, "must be an object");
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        bool known = false;
        for (size_t i = 0; i < EHR_ARRAY_COUNT(member_fields); i++)
            known |= strcmp(key, member_fields[i]) == 0;
        if (!known)
            return say(why, EHR_EINVAL, "unknown field \"%.64s\"", key);
    }
    const char *name, *role, *node_key, *kx_key, *address;
    int rc;
    if ((rc = json_string_field(obj, "name", &name, why)) != 0 ||
        (rc = json_string_field(obj, "role", &role, why)) != 0 ||
        (rc = json_string_field(obj, "node_key", &node_key, why)) != 0 ||
        (rc = json_string_field(obj, "kx_key", &kx_key, why)) != 0 ||
        (rc = json_string_field(obj, "address", &address, why)) != 0)
        return rc;
    ehr__v1__member__init(m);
    m->name = (char *)name;
    m->peer_address = (char *)address;
    if (role_parse(role, &m->role) != 0)
        return say(why, EHR_EINVAL,
                   "role: \"%.32s\" is not hospital, lab, pharmacy, insurer or regulator", role);
    if (ehr_hex_decode(keys[0], 32, node_key) != 0)
        return say(why, EHR_EINVAL, "node_key: not 64 hex digits");
    if (ehr_hex_decode(keys[1], 32, kx_key) != 0)
        return say(why, EHR_EINVAL, "kx_key: not 64 hex digits");
    m->node_key = (ProtobufCBinaryData){32, keys[0]};
    m->kx_key = (ProtobufCBinaryData){32, keys[1]};
    return member_check(m, why);
}

/* Build D from the members JSON ROOT. On error WHY names the member and field. */
static int draft_from_json(struct draft *d, json_t *root, char *why)
{
    memset(d, 0, sizeof *d);
    ehr__v1__genesis__init(&d->genesis);
    json_t *list = json_is_object(root) ? json_object_get(root, "members") : NULL;
    if (list == NULL || !json_is_array(list) || json_object_size(root) != 1)
        return say(why, EHR_EINVAL, "expected {\"members\": [...]} and nothing else");
    size_t count = json_array_size(list);
    if (count == 0)
        return say(why, EHR_EINVAL, "no members: a chain needs at least one");
    if (count > GENESIS_MEMBERS_MAX)
        return say(why, EHR_ETOOBIG, "%zu members, over the maximum %d", count,
                   GENESIS_MEMBERS_MAX);
    d->members = ehr_calloc(count, sizeof *d->members);
    d->member_ptrs = ehr_calloc(count, sizeof *d->member_ptrs);
    d->keys = ehr_calloc(count, sizeof *d->keys);
    for (size_t i = 0; i < count; i++) {
        char member_why[WHY_BYTES];
        json_t *obj = json_array_get(list, i);
        if (member_from_json(obj, &d->members[i], d->keys[i], member_why) != 0) {
            json_t *name = json_is_object(obj) ? json_object_get(obj, "name") : NULL;
            if (json_is_string(name))
                return say(why, EHR_EINVAL, "member %zu (\"%.64s\"): %s", i + 1,
                           json_string_value(name), member_why);
            return say(why, EHR_EINVAL, "member %zu: %s", i + 1, member_why);
        }
        d->member_ptrs[i] = &d->members[i];
    }
    d->genesis.n_members = count;
    d->genesis.members = d->member_ptrs;
    return 0;
}

static json_t *member_to_json(const Ehr__V1__Member *m)
{
    json_t *obj =
        json_pack("{s:s, s:s, s:o, s:o, s:s}", "name", m->name, "role", role_name(m->role),
                  "node_key", cli__json_hex(m->node_key.data, m->node_key.len), "kx_key",
                  cli__json_hex(m->kx_key.data, m->kx_key.len), "address", m->peer_address);
    if (obj == NULL)
        ehr_panic("out of memory building JSON");
    return obj;
}

static void time_text(uint64_t time_ms, char *out, size_t size)
{
    time_t secs = (time_t)(time_ms / 1000);
    struct tm tm;
    if (time_ms / 1000 > (uint64_t)INT32_MAX * 1000 || gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, size, "%llu ms", (unsigned long long)time_ms);
        return;
    }
    snprintf(out, size, "%llu ms (%04d-%02d-%02dT%02d:%02d:%02d.%03uZ)",
             (unsigned long long)time_ms, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (unsigned)(time_ms % 1000));
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
    time_text(g->time_ms, line, sizeof line);
    cli__print_field("time", line);
    ehr_hex_encode(hash_hex, file_hash, 32);
    cli__print_field("genesis hash", hash_hex);
    snprintf(line, sizeof line, "%zu", g->n_members);
    cli__print_field("members", line);
    for (size_t i = 0; with_members && i < g->n_members; i++) {
        const Ehr__V1__Member *m = g->members[i];
        char node_hex[KEY_HEX_BYTES], kx_hex[KEY_HEX_BYTES];
        ehr_hex_encode(node_hex, m->node_key.data, m->node_key.len);
        ehr_hex_encode(kx_hex, m->kx_key.data, m->kx_key.len);
        printf("\n  %zu. %s (%s)\n     node key  %s\n     kx key    %s\n     address   %s\n", i + 1,
               m->name, role_name(m->role), node_hex, kx_hex, m->peer_address);
    }
    return CLI_EXIT_OK;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int cli__cmd_genesis_create(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"members", required_argument, NULL, 'm'}, {"chain-id", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},     {"time-ms", required_argument, NULL, 't'},
        {"force", no_argument, NULL, 'f'},         CLI_COMMON_OPTIONS,
    };
    const char *members_path = NULL, *chain_id = NULL, *out = NULL;
    uint64_t time_ms = 0;
    bool time_given = false, force = false;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'm':
            members_path = optarg;
            break;
        case 'c':
            chain_id = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 't':
            if (cli__parse_u64(optarg, GENESIS_TIME_MS_MAX, &time_ms) != 0)
                return cli__usage_error(ctx,
                                        "--time-ms wants milliseconds since the epoch, "
                                        "at most %llu",
                                        (unsigned long long)GENESIS_TIME_MS_MAX);
            time_given = true;
            break;
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
    if (members_path == NULL || chain_id == NULL || out == NULL)
        return cli__usage_error(ctx, "--members, --chain-id and --out are required");
    char why[WHY_BYTES];
    if (chain_id_check(chain_id, why) != 0)
        return cli__usage_error(ctx, "--chain-id: %s", why);

    uint8_t *text = NULL;
    size_t text_len = 0;
    int rc = ehr_file_read_alloc(members_path, GENESIS_JSON_BYTES_MAX, &text, &text_len);
    if (rc != 0)
        return cli__fail(rc == EHR_ETOOBIG ? "larger than 1 MiB" : ehr_strerror(rc),
                         "read members %s", members_path);
    json_error_t error;
    json_t *root = json_loadb((const char *)text, text_len, JSON_REJECT_DUPLICATES, &error);
    ehr_free(text);
    if (root == NULL) {
        snprintf(why, sizeof why, "line %d column %d: %s", error.line, error.column, error.text);
        return cli__fail(why, "parse members %s", members_path);
    }
    struct draft d;
    rc = draft_from_json(&d, root, why);
    if (rc == 0) {
        d.genesis.chain_id = (char *)chain_id;
        d.genesis.time_ms = time_given ? time_ms : now_ms();
        rc = genesis_check(&d.genesis, why); /* the same check `genesis show` makes */
    }
    if (rc != 0) {
        draft_free(&d);
        json_decref(root);
        return cli__fail(why, "genesis from %s", members_path);
    }
    size_t size = ehr__v1__genesis__get_packed_size(&d.genesis);
    uint8_t *packed = ehr_malloc(size);
    size_t packed_len = ehr__v1__genesis__pack(&d.genesis, packed);
    EHR_ASSERT(packed_len == size);
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

/*
 * Whether DATA (LEN bytes) is exactly the encoding of G that ehrctl genesis
 * writes. Protobuf decoding accepts more: unknown fields (skipped), repeated
 * scalar fields (the last wins), fields in another order, padded varints,
 * strings cut at an embedded NUL. Such a file decodes to what we show yet
 * hashes differently, so block 0 would commit to bytes nobody reviewed;
 * re-encoding and comparing refuses all of them at once.
 */
static bool genesis_is_canonical(const Ehr__V1__Genesis *g, const uint8_t *data, size_t len)
{
    /* protobuf-c keeps unknown fields and packs them again: refuse them first. */
    if (g->base.n_unknown_fields != 0)
        return false;
    for (size_t i = 0; i < g->n_members; i++) {
        if (g->members[i]->base.n_unknown_fields != 0)
            return false;
    }
    size_t size = ehr__v1__genesis__get_packed_size(g);
    if (size != len)
        return false;
    uint8_t *packed = ehr_malloc(size);
    size_t packed_len = ehr__v1__genesis__pack(g, packed);
    EHR_ASSERT(packed_len == size);
    bool same = memcmp(packed, data, len) == 0;
    ehr_free(packed);
    return same;
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
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = ehr_file_read_alloc(path, GENESIS_FILE_BYTES_MAX, &data, &len);
    if (rc != 0)
        return cli__fail(rc == EHR_ETOOBIG ? "larger than 1 MiB" : ehr_strerror(rc),
                         "read genesis %s", path);
    Ehr__V1__Genesis *g = ehr__v1__genesis__unpack(NULL, len, data);
    uint8_t hash[32];
    ehr_sha256(hash, data, len);
    if (g == NULL) {
        ehr_free(data);
        return cli__fail("not a genesis file (protobuf decoding failed)", "read genesis %s", path);
    }
    char why[WHY_BYTES];
    int exit_code;
    if (genesis_check(g, why) != 0)
        exit_code = cli__fail(why, "check genesis %s", path);
    else if (!genesis_is_canonical(g, data, len))
        exit_code = cli__fail("not in the form ehrctl writes (unknown, repeated or reordered "
                              "fields, padded numbers or text with NUL bytes): the hash would "
                              "cover more than is shown",
                              "check genesis %s", path);
    else
        exit_code = genesis_print(ctx, path, g, hash, true);
    ehr_free(data);
    ehr__v1__genesis__free_unpacked(g, NULL);
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
    char key_why[EHR_KEYFILE_MESSAGE_BYTES], why[WHY_BYTES];
    if (ehr_keyfile_read_info(key_path, &info, key_why) != 0)
        return cli__fail(key_why, "read key file %s", key_path);
    m.node_key = (ProtobufCBinaryData){32, info.signing_public_key};
    m.kx_key = (ProtobufCBinaryData){32, info.kx_public_key};
    if (member_check(&m, why) != 0)
        return cli__usage_error(ctx, "%s", why);
    /* Always JSON: the output is an entry for the --members file. */
    return cli__json_print(member_to_json(&m));
}
