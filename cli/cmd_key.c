/*
 * cmd_key.c - ehrctl keygen, key show, key passwd, and the identity loader
 * other commands use to open a key file.
 *
 * Secrets (identities, passphrases) live only in sodium_malloc'd memory,
 * freed (and so wiped) before the command returns. Nothing secret is ever
 * printed: output carries public keys, the label and the key file's costs.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_internal.h"
#include "pre_seal.h"

enum { PROMPT_BYTES = PATH_MAX + 64 };

/* Parse a --kdf value; "min" is for tests and fuzzing, not offered here. */
static int kdf_option(struct cli__ctx *ctx, const char *name, ehr_kdf_params *out)
{
    enum ehr_kdf_profile profile;
    if (ehr_kdf_profile_parse(name, &profile) != 0 || profile == EHR_KDF_MIN)
        return cli__usage_error(ctx, "--kdf must be interactive, moderate or sensitive");
    *out = ehr_kdf_profile_params(profile);
    return CLI_EXIT_OK;
}

static const char *mode_text(const char *path, char buf[8])
{
    struct stat st;
    if (stat(path, &st) != 0)
        return "?";
    snprintf(buf, 8, "%04o", (unsigned)(st.st_mode & 07777));
    return buf;
}

static bool mode_too_open(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && (st.st_mode & 077) != 0;
}

/* Print a key file's public facts, human or JSON. Returns an exit code. */
static int print_keyfile(struct cli__ctx *ctx, const char *path, const ehr_keyfile_info *info)
{
    char sign_hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1], kx_hex[2 * EHR_KX_PUBLIC_BYTES + 1], mode[8];
    ehr_hex_encode(sign_hex, info->signing_public_key, EHR_SCHNORR_PUBLIC_BYTES);
    ehr_hex_encode(kx_hex, info->kx_public_key, EHR_KX_PUBLIC_BYTES);
    bool protected = (info->flags & EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE) == 0;
    if (ctx->json) {
        json_t *root = json_pack(
            "{s:o, s:i, s:s, s:s, s:s, s:b, s:{s:s, s:I, s:I}, s:s}", "file", cli__json_text(path),
            "version", (int)info->version, "label", info->label, "signing_key", sign_hex, "kx_key",
            kx_hex, "passphrase", protected, "kdf", "algorithm", "argon2id", "opslimit",
            (json_int_t)info->kdf.opslimit, "memlimit_bytes", (json_int_t)info->kdf.memlimit_bytes,
            "mode", mode_text(path, mode));
        if (root == NULL)
            ehr_panic("out of memory building JSON");
        return cli__json_print(root);
    }
    char line[128];
    cli__print_field("key file", path);
    cli__print_field("label", info->label[0] != '\0' ? info->label : "(none)");
    cli__print_field("signing key", sign_hex);
    cli__print_field("kx key", kx_hex);
    if (protected)
        snprintf(line, sizeof line, "passphrase (argon2id, %llu passes, %llu MiB)",
                 (unsigned long long)info->kdf.opslimit,
                 (unsigned long long)(info->kdf.memlimit_bytes >> 20));
    else
        snprintf(line, sizeof line, "none: empty passphrase, the file mode is the only guard");
    cli__print_field("protection", line);
    snprintf(line, sizeof line, "%s%s", mode_text(path, mode),
             mode_too_open(path) ? " (readable by others: chmod 600 it)" : "");
    cli__print_field("mode", line);
    return CLI_EXIT_OK;
}

/* Get a new passphrase (asked twice on a terminal); the empty one only if ALLOW_EMPTY. */
static int new_passphrase(struct cli__passphrase *p, const struct cli__passphrase_source *source,
                          bool allow_empty, const char *what)
{
    ehr_diag why;
    if (allow_empty) {
        p->bytes = NULL;
        p->len = 0;
        return CLI_EXIT_OK;
    }
    if (cli__passphrase_get(p, source, &why) != 0)
        return cli__fail(why.msg, "%s", what);
    if (p->len == 0) {
        cli__passphrase_free(p);
        return cli__fail("empty passphrase refused (--no-passphrase stores the key unprotected)",
                         "%s", what);
    }
    return CLI_EXIT_OK;
}

int cli__identity_load(const char *path, const char *passphrase_file, ehr_identity **out,
                       ehr_keyfile_info *info)
{
    return cli__identity_load_from(path, passphrase_file, "--passphrase-file", "EHR_PASSPHRASE",
                                   out, info);
}

int cli__identity_load_from(const char *path, const char *passphrase_file, const char *flag_name,
                            const char *env_name, ehr_identity **out, ehr_keyfile_info *info)
{
    ehr_diag why;
    *out = NULL;
    /* Read the clear header first: a bad file is reported before any prompt. */
    int rc = ehr_keyfile_read_info(path, info, &why);
    if (rc != 0)
        return cli__fail(why.msg, "open key file %s", path);
    struct cli__passphrase pass = {NULL, 0};
    if ((info->flags & EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE) == 0) {
        char prompt[PROMPT_BYTES];
        snprintf(prompt, sizeof prompt, "passphrase for %s: ", path);
        struct cli__passphrase_source source = {passphrase_file, flag_name, env_name, prompt,
                                                false};
        if (cli__passphrase_get(&pass, &source, &why) != 0)
            return cli__fail(why.msg, "open key file %s", path);
    }
    ehr_identity *id = sodium_malloc(sizeof *id);
    if (id == NULL) {
        cli__passphrase_free(&pass);
        return cli__fail("cannot allocate locked memory", "open key file %s", path);
    }
    rc = ehr_keyfile_load(path, id, info, pass.bytes, pass.len, &why);
    cli__passphrase_free(&pass);
    if (rc != 0) {
        sodium_free(id);
        return cli__fail(why.msg, "open key file %s", path);
    }
    if (mode_too_open(path))
        fprintf(stderr, "ehrctl: warning: key file %s is readable by others (chmod 600 it)\n",
                path);
    *out = id;
    return CLI_EXIT_OK;
}

int cli__cmd_keygen(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"out", required_argument, NULL, 'o'},
        {"label", required_argument, NULL, 'l'},
        {"passphrase-file", required_argument, NULL, 'p'},
        {"no-passphrase", no_argument, NULL, 'n'},
        {"kdf", required_argument, NULL, 'k'},
        {"force", no_argument, NULL, 'f'},
        CLI_COMMON_OPTIONS,
    };
    const char *out = NULL, *label = "", *passphrase_file = NULL;
    bool no_passphrase = false, force = false;
    ehr_kdf_params kdf = ehr_kdf_profile_params(EHR_KDF_INTERACTIVE);
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'l':
            label = optarg;
            break;
        case 'p':
            passphrase_file = optarg;
            break;
        case 'n':
            no_passphrase = true;
            break;
        case 'k':
            if (kdf_option(ctx, optarg, &kdf) != CLI_EXIT_OK)
                return CLI_EXIT_USAGE;
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
    if (out == NULL)
        return cli__usage_error(ctx, "--out FILE is required");
    if (no_passphrase && passphrase_file != NULL)
        return cli__usage_error(ctx, "--no-passphrase and --passphrase-file exclude each other");
    int rc = ehr_identity_label_check(label);
    if (rc != 0)
        return cli__usage_error(ctx, "--label must be at most %d bytes of printable ASCII",
                                EHR_KEYFILE_LABEL_BYTES_MAX);
    if (!force && access(out, F_OK) == 0) /* say so before asking for a passphrase */
        return cli__fail("already exists (--force replaces it)", "write key file %s", out);

    char prompt[PROMPT_BYTES];
    snprintf(prompt, sizeof prompt, "new passphrase for %s: ", out);
    struct cli__passphrase_source source = {passphrase_file, "--passphrase-file", "EHR_PASSPHRASE",
                                            prompt, true};
    struct cli__passphrase pass;
    char what[PROMPT_BYTES];
    snprintf(what, sizeof what, "write key file %s", out);
    if (new_passphrase(&pass, &source, no_passphrase, what) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;

    ehr_identity *id = sodium_malloc(sizeof *id);
    if (id == NULL) {
        cli__passphrase_free(&pass);
        return cli__fail("cannot allocate locked memory", "%s", what);
    }
    rc = ehr_identity_generate(id, label);
    EHR_ASSERT(rc == 0); /* the label was checked above */
    rc = ehr_keyfile_save(out, id, pass.bytes, pass.len, kdf, force);
    cli__passphrase_free(&pass);
    sodium_free(id);
    if (rc != 0)
        return cli__fail(rc == EHR_EEXIST ? "already exists (--force replaces it)"
                                          : ehr_strerror(rc),
                         "%s", what);
    ehr_keyfile_info info;
    ehr_diag why;
    rc = ehr_keyfile_read_info(out, &info, &why); /* report what is on disk */
    if (rc != 0)
        return cli__fail(why.msg, "read back key file %s", out);
    return print_keyfile(ctx, out, &info);
}

int cli__cmd_key_show(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0)
        EHR_ASSERT(0 && "key show has no options of its own");
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "expected exactly one FILE");
    const char *path = argv[optind];
    ehr_keyfile_info info;
    ehr_diag why;
    if (ehr_keyfile_read_info(path, &info, &why) != 0)
        return cli__fail(why.msg, "read key file %s", path);
    return print_keyfile(ctx, path, &info);
}

/*
 * `key receiving-key FILE`: the public half of the key file's receiving key
 * (crypto/PRE.md, "Receiving keys"), which a patient names in a grant
 * (consent grant --receiving-key) so that its key fragments re-encrypt to
 * this key file's owner. Needs the passphrase: the key is derived from the
 * X25519 secret.
 */
int cli__cmd_key_receiving_key(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"passphrase-file", required_argument, NULL, 'p'},
                                            CLI_COMMON_OPTIONS};
    const char *passphrase_file = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        EHR_ASSERT(c == 'p');
        passphrase_file = optarg;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "expected exactly one FILE");
    const char *path = argv[optind];
    ehr_identity *id = NULL;
    ehr_keyfile_info info;
    int exit_code = cli__identity_load(path, passphrase_file, &id, &info);
    if (exit_code != 0)
        return exit_code;
    ehr_pre_key receiving;
    int rc = ehr_pre_receiving_key_derive(&receiving, id->kx.secret);
    sodium_free(id);
    if (rc != 0)
        return cli__fail("the receiving key is zero (never in practice)", "receiving-key");
    char hex[2 * EHR_PRE_PUBLIC_BYTES + 1];
    ehr_hex_encode(hex, receiving.public_key, EHR_PRE_PUBLIC_BYTES);
    ehr_pre_key_wipe(&receiving);
    if (ctx->json) {
        json_t *root = json_pack("{s:s}", "receiving_key", hex);
        if (root == NULL)
            ehr_panic("out of memory building JSON");
        return cli__json_print(root);
    }
    cli__print_field("receiving key", hex);
    return CLI_EXIT_OK;
}

int cli__cmd_key_passwd(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"passphrase-file", required_argument, NULL, 'p'},
        {"new-passphrase-file", required_argument, NULL, 'N'},
        {"no-passphrase", no_argument, NULL, 'n'},
        {"kdf", required_argument, NULL, 'k'},
        CLI_COMMON_OPTIONS,
    };
    const char *passphrase_file = NULL, *new_file = NULL;
    bool no_passphrase = false, kdf_given = false;
    ehr_kdf_params kdf;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'p':
            passphrase_file = optarg;
            break;
        case 'N':
            new_file = optarg;
            break;
        case 'n':
            no_passphrase = true;
            break;
        case 'k':
            if (kdf_option(ctx, optarg, &kdf) != CLI_EXIT_OK)
                return CLI_EXIT_USAGE;
            kdf_given = true;
            break;
        default:
            EHR_ASSERT(0 && "option in the table but not handled");
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "expected exactly one FILE");
    if (no_passphrase && new_file != NULL)
        return cli__usage_error(ctx,
                                "--no-passphrase and --new-passphrase-file exclude each other");
    const char *path = argv[optind];

    ehr_identity *id;
    ehr_keyfile_info info;
    if (cli__identity_load(path, passphrase_file, &id, &info) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    if (!kdf_given)
        kdf = info.kdf; /* keep the file's costs unless asked otherwise */

    char prompt[PROMPT_BYTES], what[PROMPT_BYTES];
    snprintf(prompt, sizeof prompt, "new passphrase for %s: ", path);
    snprintf(what, sizeof what, "re-encrypt key file %s", path);
    struct cli__passphrase_source source = {new_file, "--new-passphrase-file", "EHR_NEW_PASSPHRASE",
                                            prompt, true};
    struct cli__passphrase pass;
    if (new_passphrase(&pass, &source, no_passphrase, what) != CLI_EXIT_OK) {
        sodium_free(id);
        return CLI_EXIT_FAIL;
    }
    int rc = ehr_keyfile_save(path, id, pass.bytes, pass.len, kdf, true);
    cli__passphrase_free(&pass);
    sodium_free(id);
    if (rc != 0)
        return cli__fail(ehr_strerror(rc), "%s", what);
    ehr_diag why;
    if (ehr_keyfile_read_info(path, &info, &why) != 0)
        return cli__fail(why.msg, "read back key file %s", path);
    return print_keyfile(ctx, path, &info);
}
