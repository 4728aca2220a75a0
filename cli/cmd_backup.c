/*
 * cmd_backup.c - ehrctl backup (a consistent copy of a node's ledger into
 * one file, while the node runs), backup inspect (check one without
 * restoring it) and restore (into a stopped node's data directory).
 *
 * A thin layer over node/backup.h, whose checks and messages these are:
 * this file parses the options, opens the ledger read-only for a backup (as
 * `ledger status` does: LMDB readers in another process are fine while the
 * node appends, and the data directory's lock is not needed), and prints.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backup.h"
#include "cli_internal.h"
#include "ledger.h"

enum {
    HEX_HASH_BYTES = 2 * EHR_HASH_BYTES + 1,
    LINE_BYTES = 160,
};

/* What a backup does not hold, in one sentence for people. */
#define BACKUP_EXCLUDES                                                                            \
    "the tx index and world state (brought to the restored blocks at start), the node's key "      \
    "file and passphrase (back them up separately), the config file, the blob store "              \
    "(replicated by the members)"

static json_t *checked(json_t *v)
{
    if (v == NULL)
        ehr_panic("out of memory building JSON");
    return v;
}

/* --data, else $EHR_DATA; NULL after a usage error. */
/* Whether FILE's directory is DIR itself (the same inode, however named). */
static bool in_directory(const char *file, const char *dir)
{
    char parent[4096];
    const char *slash = strrchr(file, '/');
    if (slash == NULL)
        snprintf(parent, sizeof parent, ".");
    else if (slash == file)
        snprintf(parent, sizeof parent, "/");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - file), file);
    struct stat a, b;
    return stat(parent, &a) == 0 && stat(dir, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static const char *data_dir(struct cli__ctx *ctx, const char *given)
{
    if (given == NULL)
        given = getenv("EHR_DATA");
    if (given == NULL || given[0] == '\0') {
        cli__usage_error(ctx, "--data DIR is required (or set $EHR_DATA)");
        return NULL;
    }
    return given;
}

/* INFO as JSON fields (FILE: the backup's path). */
static json_t *info_json(const char *file, const struct node_backup_info *info)
{
    char tip[HEX_HASH_BYTES], genesis[HEX_HASH_BYTES], sum[2 * NODE_BACKUP_CHECKSUM_BYTES + 1];
    ehr_hex_encode(tip, info->tip.hash, EHR_HASH_BYTES);
    ehr_hex_encode(genesis, info->chain.genesis_hash, EHR_HASH_BYTES);
    ehr_hex_encode(sum, info->checksum, NODE_BACKUP_CHECKSUM_BYTES);
    json_t *o =
        checked(json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b}", "file", file, "chain_id",
                          info->chain.chain_id, "genesis_hash", genesis, "tip_hash", tip,
                          "checksum", sum, "includes_derived_tables", 0, "includes_key", 0));
    json_object_set_new(o, "tip_height", cli__json_u64(info->tip.height));
    json_object_set_new(o, "tip_time_ms", cli__json_u64(info->tip.time_ms));
    json_object_set_new(o, "applied_index", cli__json_u64(info->tip.applied_index));
    json_object_set_new(o, "tx_count", cli__json_u64(info->tip.tx_count));
    json_object_set_new(o, "created_ms", cli__json_u64(info->created_ms));
    json_object_set_new(o, "bytes", cli__json_u64(info->file_bytes));
    json_object_set_new(o, "ledger_bytes", cli__json_u64(info->snapshot_bytes));
    json_object_set_new(o, "format_version", cli__json_u64(info->format_version));
    return o;
}

static void info_print(const struct node_backup_info *info)
{
    char line[LINE_BYTES], hex[HEX_HASH_BYTES];
    cli__print_field("chain id", info->chain.chain_id);
    ehr_hex_encode(hex, info->chain.genesis_hash, EHR_HASH_BYTES);
    cli__print_field("genesis hash", hex);
    snprintf(line, sizeof line, "%llu", (unsigned long long)info->tip.height);
    cli__print_field("tip height", line);
    ehr_hex_encode(hex, info->tip.hash, EHR_HASH_BYTES);
    cli__print_field("tip hash", hex);
    cli__time_text(info->tip.time_ms, line, sizeof line);
    cli__print_field("tip time", line);
    snprintf(line, sizeof line, "%llu", (unsigned long long)info->tip.applied_index);
    cli__print_field("applied index", line);
    snprintf(line, sizeof line, "%llu", (unsigned long long)info->tip.tx_count);
    cli__print_field("transactions", line);
    cli__time_text(info->created_ms, line, sizeof line);
    cli__print_field("written", line);
    snprintf(line, sizeof line, "%llu (ledger copy %llu, header %d)",
             (unsigned long long)info->file_bytes, (unsigned long long)info->snapshot_bytes,
             NODE_BACKUP_HEADER_BYTES);
    cli__print_field("bytes", line);
}

/*
 * The options backup and restore share: --data DIR (else $EHR_DATA), the
 * backup file under option FILE_OPTION (required), --force. Returns 0 with
 * *FILE, *DIR and *FORCE set, ctx->exit_code after --help, or
 * CLI_EXIT_USAGE having said why.
 */
static int file_dir_force_parse(struct cli__ctx *ctx, int argc, char **argv,
                                const char *file_option, const char **file, const char **dir,
                                bool *force)
{
    const struct option options[] = {{"data", required_argument, NULL, 'd'},
                                     {file_option, required_argument, NULL, 'F'},
                                     {"force", no_argument, NULL, 'f'},
                                     CLI_COMMON_OPTIONS};
    const char *given = NULL;
    *file = NULL;
    *force = false;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'd')
            given = optarg;
        else if (c == 'F')
            *file = optarg;
        else if (c == 'f')
            *force = true;
        else
            EHR_ASSERT(0 && "option in the table but not handled");
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if (*file == NULL || (*file)[0] == '\0')
        return cli__usage_error(ctx, "--%s FILE is required", file_option);
    *dir = data_dir(ctx, given);
    return *dir == NULL ? CLI_EXIT_USAGE : 0;
}

/* ---- backup ---- */

int cli__cmd_backup(struct cli__ctx *ctx, int argc, char **argv)
{
    const char *out, *dir;
    bool force;
    int parsed = file_dir_force_parse(ctx, argc, argv, "out", &out, &dir, &force);
    if (parsed != 0)
        return parsed;
    if (in_directory(out, dir))
        return cli__usage_error(ctx,
                                "--out %s is in the data directory %s: keep a backup "
                                "elsewhere (there, --force could replace the ledger itself)",
                                out, dir);
    ledger *l;
    if (cli__ledger_open(dir, true, &l) != 0)
        return CLI_EXIT_FAIL;
    struct node_backup_info info;
    ehr_diag why;
    int rc = node_backup_create(l, out, force, &info, &why);
    ledger_close(l);
    if (rc != 0)
        return cli__fail(why.msg, "backup %s", dir);
    if (ctx->json) {
        json_t *o = info_json(out, &info);
        json_object_set_new(o, "data", checked(json_string(dir)));
        return cli__json_print(o);
    }
    printf("backup of %s written to %s\n", dir, out);
    info_print(&info);
    cli__print_field("not included", BACKUP_EXCLUDES);
    return CLI_EXIT_OK;
}

/* ---- backup inspect ---- */

int cli__cmd_backup_inspect(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0)
        EHR_ASSERT(0 && "option in the table but not handled");
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "expected exactly one backup FILE");
    const char *file = argv[optind];
    struct node_backup_info info;
    ehr_diag why;
    int rc = node_backup_check(file, &info, &why);
    if (rc != 0)
        return cli__fail(why.msg, "backup inspect");
    if (ctx->json) {
        json_t *o = info_json(file, &info);
        json_object_set_new(o, "ok", json_true());
        return cli__json_print(o);
    }
    printf("backup ok: %s (every byte matches its checksum)\n", file);
    info_print(&info);
    return CLI_EXIT_OK;
}

/* ---- restore ---- */

int cli__cmd_restore(struct cli__ctx *ctx, int argc, char **argv)
{
    const char *from, *dir;
    bool force;
    int parsed = file_dir_force_parse(ctx, argc, argv, "from", &from, &dir, &force);
    if (parsed != 0)
        return parsed;
    struct node_backup_restore_options opt = {.force = force};
    struct node_backup_restore_report report;
    ehr_diag why;
    int rc = node_backup_restore(from, dir, &opt, &report, &why);
    if (rc != 0)
        return cli__fail(why.msg, "restore %s into %s", from, dir);
    const struct node_backup_info *b = &report.backup;
    char hex[HEX_HASH_BYTES], line[LINE_BYTES];
    ehr_hex_encode(hex, b->tip.hash, EHR_HASH_BYTES);
    if (ctx->json) {
        json_t *o =
            checked(json_pack("{s:s, s:s, s:s, s:s, s:s}", "data", dir, "from", from, "chain_id",
                              b->chain.chain_id, "tip_hash", hex, "term_from", report.term_from));
        json_object_set_new(o, "tip_height", cli__json_u64(b->tip.height));
        json_object_set_new(o, "applied_index", cli__json_u64(b->tip.applied_index));
        json_object_set_new(o, "replaced_height", cli__json_u64(report.replaced.height));
        json_object_set_new(o, "directory_term", cli__json_u64(report.directory_term));
        json_object_set_new(o, "term", cli__json_u64(report.term));
        json_object_set_new(o, "restore_term", cli__json_u64(report.restore_term));
        json_object_set_new(o, "snapshot_files_removed",
                            cli__json_u64(report.snapshot_files_removed));
        return cli__json_print(o);
    }
    printf("restored %s into %s\n", from, dir);
    cli__print_field("chain id", b->chain.chain_id);
    snprintf(line, sizeof line, "%llu", (unsigned long long)b->tip.height);
    cli__print_field("tip height", line);
    cli__print_field("tip hash", hex);
    snprintf(line, sizeof line, "%llu", (unsigned long long)b->tip.applied_index);
    cli__print_field("applied index", line);
    snprintf(line, sizeof line, "a ledger at height %llu",
             (unsigned long long)report.replaced.height);
    cli__print_field("replaced", line);
    snprintf(line, sizeof line, "%llu, no vote (one above the %s's term; the directory's was %llu)",
             (unsigned long long)report.term,
             strcmp(report.term_from, "log") == 0 ? "backup's applied entry" : report.term_from,
             (unsigned long long)report.directory_term);
    cli__print_field("raft term", line);
    snprintf(line, sizeof line, "%llu: no vote, no campaign until a committed entry of that term",
             (unsigned long long)report.restore_term);
    cli__print_field("restore term", line);
    cli__print_field("kept", "the key file, the config and every other file in the directory");
    printf("Start ehrd: it brings the tx index and world state to the restored ledger, then "
           "catches up from its "
           "peers; `ehrctl status` shows \"restoring\" until it votes again. Restore one node "
           "at a time.\n");
    return CLI_EXIT_OK;
}
