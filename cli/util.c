/*
 * util.c - ehrctl's shared plumbing: option parsing, usage and failure
 * messages, JSON and human output, number parsing, the memory layout of a
 * protobuf-c repeated field. Nothing here knows about a particular command.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_internal.h"
#include "policy.h"

enum { FIELD_COLUMN = 16 };

int cli__getopt(struct cli__ctx *ctx, int argc, char **argv, const struct option *options)
{
    EHR_ASSERT(ctx->command != NULL);
    for (;;) {
        int c = getopt_long(argc, argv, ":h", options, NULL);
        switch (c) {
        case -1:
            return CLI_OPT_END;
        case 'J':
            ctx->json = true;
            continue;
        case CLI_OPT_TLS_CA:
            ctx->tls_ca = optarg;
            continue;
        case CLI_OPT_TLS_CERT:
            ctx->tls_cert = optarg;
            continue;
        case CLI_OPT_TLS_KEY:
            ctx->tls_key = optarg;
            continue;
        case 'h':
            cli__command_help(ctx->command);
            ctx->exit_code = CLI_EXIT_HELP_SHOWN;
            return CLI_OPT_EXIT;
        case ':':
            ctx->exit_code = cli__usage_error(ctx, "%s needs a value", argv[optind - 1]);
            return CLI_OPT_EXIT;
        case '?':
            ctx->exit_code = cli__usage_error(ctx, "unknown option %s", argv[optind - 1]);
            return CLI_OPT_EXIT;
        default:
            EHR_ASSERT(c > 0);
            return c;
        }
    }
}

void cli__command_help(const struct cli__command *command)
{
    printf("usage: ehrctl %s %s\n\n%s\n", command->name, command->synopsis, command->summary);
    if (command->details != NULL && command->details[0] != '\0')
        printf("\n%s", command->details);
    printf("\ncommon options:\n  --json        machine-readable output on stdout\n"
           "  --help, -h    this help\n");
}

int cli__usage_error(struct cli__ctx *ctx, const char *fmt, ...)
{
    EHR_ASSERT(ctx->command != NULL);
    fprintf(stderr, "ehrctl: %s: ", ctx->command->name);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: ehrctl %s %s\n(ehrctl %s --help for more)\n", ctx->command->name,
            ctx->command->synopsis, ctx->command->name);
    return CLI_EXIT_USAGE;
}

int cli__fail(const char *why, const char *what_fmt, ...)
{
    EHR_ASSERT(why != NULL);
    fputs("ehrctl: ", stderr);
    va_list ap;
    va_start(ap, what_fmt);
    vfprintf(stderr, what_fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", why);
    return CLI_EXIT_FAIL;
}

int cli__json_print(json_t *root)
{
    EHR_ASSERT(root != NULL);
    /* Reals with 15 significant digits: every figure we print has fewer, so
     * a rounded one prints as rounded, not as its nearest double's 17. */
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    json_decref(root);
    if (rc != 0 || fputc('\n', stdout) == EOF)
        return cli__fail(strerror(errno), "write JSON to stdout");
    return CLI_EXIT_OK;
}

json_t *cli__json_text(const char *text)
{
    EHR_ASSERT(text != NULL);
    json_t *s = json_string(text); /* NULL for text that is not UTF-8 (or no memory) */
    if (s == NULL) {
        char *shown = ehr_strdup(text);
        for (char *p = shown; *p != '\0'; p++) {
            if ((unsigned char)*p > 0x7f)
                *p = '?';
        }
        s = json_string(shown);
        ehr_free(shown);
    }
    if (s == NULL)
        ehr_panic("out of memory building JSON");
    return s;
}

json_t *cli__json_hex(const uint8_t *data, size_t len)
{
    char *hex = ehr_malloc(2 * len + 1);
    ehr_hex_encode(hex, data, len);
    json_t *s = json_string(hex);
    ehr_free(hex);
    if (s == NULL)
        ehr_panic("out of memory building JSON");
    return s;
}

int cli__parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    if (text == NULL || text[0] < '0' || text[0] > '9')
        return EHR_EINVAL; /* strtoull would accept spaces, signs and "-1" */
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return EHR_EINVAL;
    *out = v;
    return 0;
}

void cli__print_field(const char *key, const char *value)
{
    printf("%-*s%s\n", FIELD_COLUMN, key, value);
}

void cli__time_text(uint64_t time_ms, char *out, size_t size)
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

void cli__text_shown(const char *text, char *out, size_t out_size)
{
    EHR_ASSERT(out_size > 0);
    size_t n = strlen(text);
    if (n >= out_size) {
        n = out_size - 1;
        while (n > 0 && ((uint8_t)text[n] & 0xc0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)text[i];
        bool c1 =
            c == 0xc2 && i + 1 < n && (uint8_t)text[i + 1] >= 0x80 && (uint8_t)text[i + 1] <= 0x9f;
        out[i] = c < 0x20 || c == 0x7f || c1 ? '?' : (char)c;
        if (c1)
            out[++i] = '?';
    }
    out[n] = '\0';
}

size_t cli__repeated_element_bytes(const ProtobufCFieldDescriptor *fd)
{
    EHR_ASSERT(fd->label == PROTOBUF_C_LABEL_REPEATED);
    switch (fd->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4; /* int32, uint32, fixed32, float, enum */
    }
}

/* ---- protobuf enums by name ---- */

/* Length of the prefix every value name of ED shares, up to its last '_'
 * ("RECORD_TYPE_" of RECORD_TYPE_IMAGING, RECORD_TYPE_CLAIM, ...). */
size_t cli__enum_prefix_len(const ProtobufCEnumDescriptor *ed)
{
    const char *first = ed->values[0].name;
    size_t len = strlen(first);
    for (unsigned i = 1; i < ed->n_values; i++) {
        const char *name = ed->values[i].name;
        size_t n = 0;
        while (n < len && first[n] == name[n])
            n++;
        len = n;
    }
    while (len > 0 && first[len - 1] != '_')
        len--;
    return len;
}

/* The value of ED named TEXT: its full name ("RECORD_TYPE_LAB_RESULT"), or
 * its short name in lower case ("lab_result"). NULL if none. */
const ProtobufCEnumValue *cli__enum_value(const ProtobufCEnumDescriptor *ed, const char *text)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, text);
    if (ev != NULL)
        return ev;
    size_t prefix = cli__enum_prefix_len(ed);
    for (unsigned i = 0; i < ed->n_values; i++) {
        const char *short_name = ed->values[i].name + prefix;
        size_t n = strlen(short_name);
        if (strlen(text) != n)
            continue;
        size_t j = 0;
        while (j < n && text[j] == (char)tolower((unsigned char)short_name[j]))
            j++;
        if (j == n)
            return &ed->values[i];
    }
    return NULL;
}

json_t *cli__json_enum(const ProtobufCEnumDescriptor *ed, int value)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, value);
    if (ev == NULL)
        return json_integer(value);
    const char *short_name = ev->name + cli__enum_prefix_len(ed);
    char text[128];
    size_t n = strlen(short_name);
    if (n >= sizeof text)
        return json_string(ev->name);
    for (size_t i = 0; i <= n; i++)
        text[i] = (char)tolower((unsigned char)short_name[i]);
    return json_string(text);
}

const char *cli__enum_short(const ProtobufCEnumDescriptor *ed, int value, char *out, size_t size)
{
    json_t *j = cli__json_enum(ed, value);
    if (json_is_string(j))
        snprintf(out, size, "%s", json_string_value(j));
    else
        snprintf(out, size, "%d", value);
    json_decref(j);
    return out;
}

json_t *cli__json_u64(uint64_t v)
{
    json_t *j;
    if (v > INT64_MAX) {
        char text[24];
        snprintf(text, sizeof text, "%llu", (unsigned long long)v);
        j = json_string(text);
    } else {
        j = json_integer((json_int_t)v);
    }
    if (j == NULL)
        ehr_panic("out of memory building JSON");
    return j;
}

void cli__time_iso(uint64_t time_ms, char *out, size_t size)
{
    time_t secs = (time_t)(time_ms / 1000);
    struct tm tm;
    if (time_ms / 1000 > (uint64_t)INT32_MAX * 1000 || gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, size, "%llums", (unsigned long long)time_ms);
        return;
    }
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(time_ms % 1000));
}

uint64_t cli__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- public keys on the command line ---- */

/* TEXT is nothing but hex digits. */
static bool all_hex(const char *text)
{
    if (text[0] == '\0')
        return false;
    for (const char *p = text; *p != '\0'; p++) {
        if (!isxdigit((unsigned char)*p))
            return false;
    }
    return true;
}

int cli__public_key_arg(const char *text, uint8_t key[EHR_SCHNORR_PUBLIC_BYTES],
                        uint8_t kx[EHR_KX_PUBLIC_BYTES], ehr_diag *diag)
{
    EHR_ASSERT(text != NULL && key != NULL);
    size_t len = strlen(text);
    ehr_public_key parsed;
    if (len == 2 * EHR_SCHNORR_PUBLIC_BYTES && all_hex(text)) {
        int rc = ehr_hex_decode(key, EHR_SCHNORR_PUBLIC_BYTES, text);
        EHR_ASSERT(rc == 0);
        if (kx != NULL)
            memset(kx, 0, EHR_KX_PUBLIC_BYTES);
        if (ehr_public_key_parse(&parsed, key) != 0)
            return ehr_diag_fail(diag, EHR_EINVAL,
                                 "%.16s...: not a public key (not a point on "
                                 "the curve)",
                                 text);
        return 0;
    }
    ehr_keyfile_info info;
    ehr_diag why;
    int rc = ehr_keyfile_read_info(text, &info, &why);
    if (rc == -ENOENT && all_hex(text))
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "%zu hex digits (%zu bytes%s): a key is 64 hex digits (32 bytes), "
                             "or a key file",
                             len, len / 2, len % 2 != 0 ? " and a half" : "");
    if (rc == -ENOENT)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "\"%.80s\" is neither 64 hex digits nor a key file (no such file)",
                             text);
    if (rc != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "key file %.200s: %s", text, why.msg);
    memcpy(key, info.signing_public_key, EHR_SCHNORR_PUBLIC_BYTES);
    if (kx != NULL)
        memcpy(kx, info.kx_public_key, EHR_KX_PUBLIC_BYTES);
    return 0;
}

/* ---- values given on the command line ---- */

int cli__hex_arg(const char *text, uint8_t *out, size_t len, ehr_diag *diag)
{
    EHR_ASSERT(len > 0);
    size_t given = strlen(text);
    if (given != 2 * len)
        return ehr_diag_fail(diag, EHR_EINVAL, "wants %zu hex digits (%zu given)", 2 * len, given);
    if (!all_hex(text))
        return ehr_diag_fail(diag, EHR_EINVAL, "wants %zu hex digits: \"%.80s\" is not hex",
                             2 * len, text);
    int rc = ehr_hex_decode(out, len, text);
    EHR_ASSERT(rc == 0);
    return 0;
}

int cli__one_hash_arg(struct cli__ctx *ctx, int argc, char **argv, const char *name,
                      const char *hint, uint8_t out[EHR_HASH_BYTES])
{
    if (argc - optind != 1)
        return cli__usage_error(ctx, "give one %s (%s)", name, hint);
    ehr_diag why;
    if (cli__hex_arg(argv[optind], out, EHR_HASH_BYTES, &why) != 0)
        return cli__usage_error(ctx, "%s %s", name, why.msg);
    return 0;
}

void cli__enum_names(const ProtobufCEnumDescriptor *ed, char *out, size_t size)
{
    EHR_ASSERT(size > 0);
    size_t prefix = cli__enum_prefix_len(ed);
    size_t at = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < ed->n_values && at < size; i++) {
        if (ed->values[i].value == 0) /* UNSPECIFIED: never a value one chooses */
            continue;
        int n =
            snprintf(out + at, size - at, "%s%s", at > 0 ? ", " : "", ed->values[i].name + prefix);
        EHR_ASSERT(n > 0);
        for (size_t j = at; j < size - 1 && out[j] != '\0'; j++)
            out[j] = (char)tolower((unsigned char)out[j]);
        at += (size_t)n;
    }
}

int cli__enum_arg(const ProtobufCEnumDescriptor *ed, const char *text, int *value)
{
    const ProtobufCEnumValue *ev = cli__enum_value(ed, text);
    if (ev == NULL || ev->value == 0)
        return EHR_EINVAL;
    *value = ev->value;
    return 0;
}

int cli__date_arg(const char *text, uint64_t *ms)
{
    size_t len = strlen(text);
    bool digits = len > 0;
    for (size_t i = 0; i < len; i++)
        digits &= isdigit((unsigned char)text[i]) != 0;
    if (digits) /* ms since the epoch; a date has dashes */
        return cli__parse_u64(text, UINT64_MAX, ms);
    int64_t parsed;
    if (contracts_policy_date_parse(text, len, &parsed) != 0)
        return EHR_EINVAL;
    EHR_ASSERT(parsed >= 0);
    *ms = (uint64_t)parsed;
    return 0;
}

int cli__key_choice(struct cli__ctx *ctx, const char *file_option, const char *file_arg,
                    const char *hex_option, const char *hex_arg,
                    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES])
{
    if ((file_arg != NULL) == (hex_arg != NULL))
        return cli__usage_error(ctx,
                                "give %s FILE (a key file) or %s HEX (64 hex digits), one "
                                "of them",
                                file_option, hex_option);
    ehr_diag why;
    if (hex_arg != NULL && cli__hex_arg(hex_arg, key, EHR_SCHNORR_PUBLIC_BYTES, &why) != 0)
        return cli__usage_error(ctx, "%s %s", hex_option, why.msg);
    /* Hex or file, the key is checked to be a point on the curve the one way
     * keys on the command line are. */
    const char *arg = hex_arg != NULL ? hex_arg : file_arg;
    if (cli__public_key_arg(arg, key, NULL, &why) != 0)
        return cli__usage_error(ctx, "%s: %s", hex_arg != NULL ? hex_option : file_option, why.msg);
    return 0;
}
