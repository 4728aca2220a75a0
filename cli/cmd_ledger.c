/*
 * cmd_ledger.c - ehrctl's commands on a node's ledger directory: ledger init
 * (block 0 from a genesis file), ledger verify (walk and re-check the whole
 * chain), ledger status, block show HEIGHT, tx show HASH.
 *
 * Each is a thin layer over ledger.h (ledger/README.md, "For the CLI"): the
 * checks and their messages are the ledger's; this file picks the directory
 * (--data, else $EHR_DATA), opens the ledger (read-only for everything but
 * init) and prints (show.c prints transactions and blocks). These read the
 * files directly, which LMDB allows while the node appends; `tx show` and
 * `block show` also take --node, and then ask the node instead (cmd_node.c).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli_internal.h"
#include "ledger.h"

enum {
    HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    LINE_BYTES = 128,
    /* The progress line of verify: shown only once a walk has taken this
     * long, and redrawn at most this often. */
    PROGRESS_AFTER_MS = 1000,
    PROGRESS_EVERY_MS = 250,
};

/* The data directory: --data, else $EHR_DATA; NULL after a usage error. */
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

/* Why ledger_open failed, in words (it has no handle to keep a message in). */
static const char *open_error_text(int rc)
{
    switch (rc) {
    case EHR_ENOTFOUND:
        return "no ledger there (ehrctl ledger init creates one)";
    case EHR_EVERSION:
        return "the ledger has a format version this ehrctl does not know";
    case EHR_ECORRUPT:
        return "the ledger's chain record is corrupt";
    default:
        return rc < 0 && rc > -4096 ? strerror(-rc) : ehr_strerror(rc);
    }
}

int cli__ledger_open(const char *dir, bool read_only, ledger **out)
{
    int rc = ledger_open(dir, &(ledger_options){.read_only = read_only}, out, NULL);
    if (rc != 0)
        return cli__fail(open_error_text(rc), "open ledger %s", dir);
    return 0;
}

static void hex32(char out[HASH_HEX_BYTES], const uint8_t bytes[EHR_HASH_BYTES])
{
    ehr_hex_encode(out, bytes, EHR_HASH_BYTES);
}

static json_t *json_checked(json_t *v)
{
    if (v == NULL)
        ehr_panic("out of memory building JSON");
    return v;
}

/* Options shared by the ledger commands: --data and the common ones. */
#define DATA_OPTION                                                                                \
    {                                                                                              \
        "data", required_argument, NULL, 'd'                                                       \
    }

/*
 * Parse options that are only --data (and, with THREADS not NULL,
 * --threads N) and one positional argument named WHAT (none if WHAT is
 * NULL; it is then argv[optind]). Returns 0 with *DIR set, or the exit code
 * to return.
 */
static int parse_data_options(struct cli__ctx *ctx, int argc, char **argv, const char *what,
                              const char **dir, uint32_t *threads)
{
    static const struct option with_threads[] = {
        DATA_OPTION, {"threads", required_argument, NULL, 't'}, CLI_COMMON_OPTIONS};
    static const struct option plain[] = {DATA_OPTION, CLI_COMMON_OPTIONS};
    const char *given = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, threads != NULL ? with_threads : plain)) >= 0) {
        uint64_t n;
        switch (c) {
        case 'd':
            given = optarg;
            break;
        case 't':
            if (cli__parse_u64(optarg, LEDGER_VERIFY_THREADS_MAX, &n) != 0)
                return cli__usage_error(ctx, "--threads wants 0 (one per CPU) to %d",
                                        LEDGER_VERIFY_THREADS_MAX);
            *threads = (uint32_t)n;
            break;
        default:
            EHR_ASSERT(0 && "option in the table but not handled");
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (what == NULL && optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if (what != NULL && argc - optind != 1)
        return cli__usage_error(ctx, "expected exactly one %s", what);
    *dir = data_dir(ctx, given);
    return *dir != NULL ? 0 : CLI_EXIT_USAGE;
}

/* ---- ledger init ---- */

/*
 * Refuse a DIR that exists and holds files but no ledger (a typo for a home
 * directory, say), and a path that is not a directory. Returns 0 or
 * CLI_EXIT_FAIL after saying why.
 */
static int init_dir_check(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return errno == ENOENT ? 0 : cli__fail(strerror(errno), "ledger directory %s", dir);
    if (!S_ISDIR(st.st_mode))
        return cli__fail("not a directory", "ledger directory %s", dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return cli__fail(strerror(errno), "ledger directory %s", dir);
    bool ledger_file = false, other = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strcmp(e->d_name, "data.mdb") == 0)
            ledger_file = true;
        else if (strcmp(e->d_name, "lock.mdb") != 0)
            other = true;
    }
    closedir(d);
    if (!ledger_file && other)
        return cli__fail("not empty and holds no ledger; give a new or empty directory",
                         "ledger directory %s", dir);
    return 0;
}

int cli__cmd_ledger_init(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"genesis", required_argument, NULL, 'g'}, DATA_OPTION, CLI_COMMON_OPTIONS};
    const char *genesis_path = NULL, *given = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'g')
            genesis_path = optarg;
        else if (c == 'd')
            given = optarg;
        else
            EHR_ASSERT(0 && "option in the table but not handled");
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if (genesis_path == NULL)
        return cli__usage_error(ctx, "--genesis FILE is required");
    const char *dir = data_dir(ctx, given);
    if (dir == NULL)
        return CLI_EXIT_USAGE;

    struct cli__genesis_file file;
    if (cli__genesis_read(genesis_path, &file) != 0)
        return CLI_EXIT_FAIL;
    ledger *l = NULL;
    int exit_code = init_dir_check(dir);
    if (exit_code == 0)
        exit_code = cli__ledger_open(dir, false, &l);
    bool created = false;
    ledger_chain chain;
    if (exit_code == 0) {
        ehr_diag why;
        int rc = ledger_chain_get(l, &chain, &why);
        if (rc == EHR_ENOTFOUND) {
            rc = ledger_genesis_init(l, file.bytes, file.len, &why);
            created = rc == 0;
            if (rc == EHR_EEXIST) /* another process initialised it meanwhile */
                rc = 0;
            if (rc == 0)
                rc = ledger_chain_get(l, &chain, &why);
        }
        if (rc != 0)
            exit_code = cli__fail(why.msg, "initialise ledger %s", dir);
    }
    char want_hex[HASH_HEX_BYTES], have_hex[HASH_HEX_BYTES], block_hex[HASH_HEX_BYTES];
    if (exit_code == 0) {
        hex32(want_hex, file.hash);
        hex32(have_hex, chain.genesis_hash);
        hex32(block_hex, chain.genesis_block_hash);
        if (memcmp(chain.genesis_hash, file.hash, EHR_HASH_BYTES) != 0) {
            char why[320];
            snprintf(why, sizeof why,
                     "it already holds chain \"%s\" (genesis %.16s...), not %s's chain \"%s\" "
                     "(genesis %.16s...)",
                     chain.chain_id, have_hex, genesis_path, file.genesis->chain_id, want_hex);
            exit_code = cli__fail(why, "initialise ledger %s", dir);
        }
    }
    if (exit_code == 0 && ctx->json) {
        exit_code = cli__json_print(json_checked(
            json_pack("{s:s, s:b, s:s, s:s, s:s, s:I}", "data", dir, "created", created, "chain_id",
                      chain.chain_id, "genesis_hash", have_hex, "block0_hash", block_hex, "members",
                      (json_int_t)file.genesis->n_members)));
    } else if (exit_code == 0) {
        printf("%s %s\n", created ? "ledger initialised in" : "ledger already initialised in", dir);
        cli__print_field("chain id", chain.chain_id);
        cli__print_field("genesis hash", have_hex);
        cli__print_field("block 0 hash", block_hex);
        char line[LINE_BYTES];
        snprintf(line, sizeof line, "%zu", file.genesis->n_members);
        cli__print_field("members", line);
    }
    ledger_close(l);
    cli__genesis_file_free(&file);
    return exit_code;
}

/* ---- ledger verify ---- */

struct progress {
    uint64_t start_ms;
    uint64_t last_ms;
    bool shown;
};

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ledger_verify's progress callback: a line on stderr (a terminal), redrawn. */
static void progress_show(void *ctx, uint64_t height, uint64_t tip)
{
    struct progress *p = ctx;
    uint64_t now = monotonic_ms();
    if (now - p->start_ms < PROGRESS_AFTER_MS || now - p->last_ms < PROGRESS_EVERY_MS)
        return;
    p->last_ms = now;
    p->shown = true;
    fprintf(stderr, "\rverifying: block %llu of %llu (%llu%%)", (unsigned long long)height,
            (unsigned long long)tip, (unsigned long long)(tip > 0 ? height * 100 / tip : 100));
    fflush(stderr);
}

/* The hash of block HEIGHT into OUT_HEX ("?" if it cannot be read). */
static void block_hash_hex(ledger *l, uint64_t height, char out_hex[HASH_HEX_BYTES])
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    ledger_block_view view;
    memcpy(out_hex, "?", 2);
    if (ledger_block_get(l, height, &bytes, &len, NULL) == 0 &&
        ledger_block_parse(bytes, len, &view, NULL) == 0) {
        hex32(out_hex, view.hash);
        ledger_block_view_release(&view);
    }
    ehr_free(bytes);
}

int cli__cmd_ledger_verify(struct cli__ctx *ctx, int argc, char **argv)
{
    const char *dir = NULL;
    uint32_t threads = 0;
    int exit_code = parse_data_options(ctx, argc, argv, NULL, &dir, &threads);
    if (exit_code != 0)
        return exit_code;
    ledger *l;
    if (cli__ledger_open(dir, true, &l) != 0)
        return CLI_EXIT_FAIL;
    struct progress progress = {.start_ms = monotonic_ms()};
    ledger_verify_options options = {.threads = threads, .replay = cli__ledger_replay};
    if (isatty(STDERR_FILENO)) {
        options.progress = progress_show;
        options.progress_ctx = &progress;
    }
    ledger_verify_report report;
    int rc = ledger_verify(l, &options, &report);
    if (progress.shown)
        fputs("\r\033[K", stderr);
    if (rc != 0 && report.fault == LEDGER_FAULT_NONE) { /* not a finding: could not verify */
        ledger_close(l);
        return cli__fail(report.msg, "verify ledger %s", dir);
    }
    bool ok = rc == 0;
    EHR_ASSERT(ok == (report.fault == LEDGER_FAULT_NONE));
    char tip_hex[HASH_HEX_BYTES] = "";
    uint64_t tip_height = report.blocks_checked > 0 ? report.blocks_checked - 1 : 0;
    if (ok)
        block_hash_hex(l, tip_height, tip_hex);
    ledger_close(l);
    if (ctx->json) {
        json_t *root = json_checked(
            json_pack("{s:b, s:s, s:o, s:o, s:s, s:I, s:I}", "ok", ok, "fault",
                      ledger_fault_name(report.fault), "height",
                      ok ? json_null() : json_integer((json_int_t)report.height), "tx_index",
                      ok || report.tx_index < 0 ? json_null() : json_integer(report.tx_index),
                      "message", report.msg, "blocks_checked", (json_int_t)report.blocks_checked,
                      "txs_checked", (json_int_t)report.txs_checked));
        if (ok) {
            json_object_set_new(root, "tip_height", json_integer((json_int_t)tip_height));
            json_object_set_new(root, "tip_hash", json_checked(json_string(tip_hex)));
        }
        exit_code = cli__json_print(root);
    } else if (ok) {
        printf("ledger ok: %llu block%s, %llu transaction%s, tip %llu %s\n",
               (unsigned long long)report.blocks_checked, report.blocks_checked == 1 ? "" : "s",
               (unsigned long long)report.txs_checked, report.txs_checked == 1 ? "" : "s",
               (unsigned long long)tip_height, tip_hex);
    } else {
        printf("ledger FAULT: %s\n", report.msg);
    }
    return ok && exit_code == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

/* ---- ledger status ---- */

int cli__cmd_ledger_status(struct cli__ctx *ctx, int argc, char **argv)
{
    const char *dir = NULL;
    int exit_code = parse_data_options(ctx, argc, argv, NULL, &dir, NULL);
    if (exit_code != 0)
        return exit_code;
    ledger *l;
    if (cli__ledger_open(dir, true, &l) != 0)
        return CLI_EXIT_FAIL;
    ledger_chain chain;
    ledger_tip tip;
    ledger_stats stats;
    ehr_diag why;
    int rc = ledger_chain_get(l, &chain, &why);
    if (rc == 0)
        rc = ledger_tip_get(l, &tip, &why);
    if (rc == 0)
        rc = ledger_stats_get(l, &stats, &why);
    if (rc != 0) {
        exit_code = cli__fail(rc == EHR_ENOTFOUND ? "no genesis yet (ehrctl ledger init)" : why.msg,
                              "ledger status %s", dir);
        ledger_close(l);
        return exit_code;
    }
    ledger_close(l);
    char genesis_hex[HASH_HEX_BYTES], block0_hex[HASH_HEX_BYTES], tip_hex[HASH_HEX_BYTES];
    hex32(genesis_hex, chain.genesis_hash);
    hex32(block0_hex, chain.genesis_block_hash);
    hex32(tip_hex, tip.hash);
    if (ctx->json)
        return cli__json_print(json_checked(json_pack(
            "{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "data", dir, "chain_id",
            chain.chain_id, "genesis_hash", genesis_hex, "block0_hash", block0_hex, "tip_height",
            (json_int_t)tip.height, "tip_hash", tip_hex, "tip_time_ms", (json_int_t)tip.time_ms,
            "tx_count", (json_int_t)tip.tx_count, "applied_index", (json_int_t)tip.applied_index,
            "format_version", (json_int_t)chain.format_version, "state_keys",
            (json_int_t)stats.state_keys, "file_bytes", (json_int_t)stats.file_bytes)));
    char line[LINE_BYTES];
    cli__print_field("data", dir);
    cli__print_field("chain id", chain.chain_id);
    cli__print_field("genesis hash", genesis_hex);
    cli__print_field("block 0 hash", block0_hex);
    snprintf(line, sizeof line, "%llu", (unsigned long long)tip.height);
    cli__print_field("tip height", line);
    cli__print_field("tip hash", tip_hex);
    cli__time_text(tip.time_ms, line, sizeof line);
    cli__print_field("tip time", line);
    snprintf(line, sizeof line, "%llu", (unsigned long long)tip.tx_count);
    cli__print_field("transactions", line);
    snprintf(line, sizeof line, "%llu", (unsigned long long)tip.applied_index);
    cli__print_field("applied index", line);
    snprintf(line, sizeof line, "%llu keys", (unsigned long long)stats.state_keys);
    cli__print_field("world state", line);
    snprintf(line, sizeof line, "%llu bytes", (unsigned long long)stats.file_bytes);
    cli__print_field("data file", line);
    return CLI_EXIT_OK;
}

/* ---- tx show, block show: offline here, online in cmd_node.c ---- */

/*
 * Options of the two show commands: --data DIR (offline) or --node HOST:PORT
 * (online), never both, and one positional argument WHAT. Without either,
 * $EHR_DATA, else $EHR_NODE. Returns 0 with *DIR set (offline) or NULL and
 * NODE filled (online), or the exit code to return.
 */
static int parse_show_options(struct cli__ctx *ctx, int argc, char **argv, const char *what,
                              const char **dir, struct cli__node_options *node)
{
    static const struct option options[] = {DATA_OPTION, CLI_NODE_OPTIONS, CLI_COMMON_OPTIONS};
    const char *given = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'd')
            given = optarg;
        else if (c == 'N' || c == 'T') {
            if (cli__node_option(ctx, c, optarg, node) != 0)
                return CLI_EXIT_USAGE;
        } else
            EHR_ASSERT(0 && "option in the table but not handled");
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "expected exactly one %s", what);
    if (given != NULL && node->given)
        return cli__usage_error(ctx, "give --data DIR (read the files) or --node HOST:PORT "
                                     "(ask a node), not both");
    const char *env_data = getenv("EHR_DATA"), *env_node = getenv("EHR_NODE");
    bool online = node->given || node->timeout_ms_given ||
                  (given == NULL && (env_data == NULL || env_data[0] == '\0') && env_node != NULL &&
                   env_node[0] != '\0');
    *dir = NULL;
    if (online)
        return cli__node_options_finish(ctx, node);
    if (given == NULL)
        given = env_data;
    if (given == NULL || given[0] == '\0')
        return cli__usage_error(ctx, "--data DIR or --node HOST:PORT is required (or set "
                                     "$EHR_DATA or $EHR_NODE)");
    *dir = given;
    return 0;
}

int cli__cmd_tx_show(struct cli__ctx *ctx, int argc, char **argv)
{
    const char *dir = NULL;
    struct cli__node_options node = {0};
    int exit_code = parse_show_options(ctx, argc, argv, "HASH", &dir, &node);
    if (exit_code != 0)
        return exit_code;
    const char *hash_arg = argv[optind];
    uint8_t hash[EHR_HASH_BYTES];
    if (strlen(hash_arg) != 2 * EHR_HASH_BYTES || ehr_hex_decode(hash, sizeof hash, hash_arg) != 0)
        return cli__usage_error(ctx, "HASH must be 64 hex digits, not \"%.80s\"", hash_arg);
    if (dir == NULL)
        return cli__tx_show_online(ctx, &node, hash, hash_arg);
    ledger *l;
    if (cli__ledger_open(dir, true, &l) != 0)
        return CLI_EXIT_FAIL;
    ledger_tx_location loc;
    uint8_t *envelope = NULL, *block = NULL, *result_bytes = NULL;
    size_t envelope_len = 0, block_len = 0, result_len = 0;
    Ehr__V1__TxResult *result = NULL;
    ledger_chain chain;
    ehr_diag why;
    int rc =
        ledger_tx_get(l, hash, &loc, &envelope, &envelope_len, &result_bytes, &result_len, &why);
    if (rc == EHR_ENOTFOUND) {
        exit_code = cli__fail("not on this ledger", "tx %s", hash_arg);
        goto done;
    }
    if (rc == 0)
        rc = ledger_chain_get(l, &chain, &why);
    if (rc == 0)
        rc = ledger_block_get(l, loc.height, &block, &block_len, &why);
    if (rc != 0) {
        exit_code = cli__fail(why.msg, "tx %s", hash_arg);
        goto done;
    }
    /* The result as stored with the block's write log (the ledger checked
     * its size, not its contents). */
    result = ehr__v1__tx_result__unpack(NULL, result_len, result_bytes);
    const char *bad =
        result == NULL ? "the stored result does not decode" : cli__result_check(result);
    if (bad != NULL) {
        exit_code = cli__fail(bad, "tx %s", hash_arg);
        goto done;
    }
    ehr_diag diag;
    ledger_block_view view;
    if (ledger_block_parse(block, block_len, &view, &diag) != 0) {
        exit_code =
            cli__fail(diag.msg, "tx %s: block %llu", hash_arg, (unsigned long long)loc.height);
        goto done;
    }
    struct cli__tx_shown shown = {.envelope = envelope,
                                  .envelope_len = envelope_len,
                                  .height = loc.height,
                                  .index = loc.index,
                                  .chain_id = chain.chain_id,
                                  .block_time_ms = view.header.time_ms,
                                  .result = result};
    ledger_block_view_release(&view);
    exit_code = cli__tx_print(ctx, hash, hash_arg, &shown);
done:
    if (result != NULL)
        ehr__v1__tx_result__free_unpacked(result, NULL);
    ehr_free(result_bytes);
    ehr_free(block);
    ehr_free(envelope);
    ledger_close(l);
    return exit_code;
}

int cli__cmd_block_show(struct cli__ctx *ctx, int argc, char **argv)
{
    const char *dir = NULL;
    struct cli__node_options node = {0};
    int exit_code = parse_show_options(ctx, argc, argv, "HEIGHT", &dir, &node);
    if (exit_code != 0)
        return exit_code;
    uint64_t height;
    if (cli__parse_u64(argv[optind], UINT64_MAX, &height) != 0)
        return cli__usage_error(ctx, "HEIGHT must be a block height (0, 1, ...), not \"%.40s\"",
                                argv[optind]);
    if (dir == NULL)
        return cli__block_show_online(ctx, &node, height);
    ledger *l;
    if (cli__ledger_open(dir, true, &l) != 0)
        return CLI_EXIT_FAIL;
    uint8_t *bytes = NULL;
    size_t len = 0;
    ehr_diag diag;
    int rc = ledger_block_get(l, height, &bytes, &len, &diag);
    if (rc != 0) {
        ledger_tip tip;
        char why[EHR_DIAG_BYTES_MAX];
        if (rc == EHR_ENOTFOUND && ledger_tip_get(l, &tip, NULL) == 0)
            snprintf(why, sizeof why, "no block at height %llu (tip is %llu)",
                     (unsigned long long)height, (unsigned long long)tip.height);
        else if (rc == EHR_ENOTFOUND)
            snprintf(why, sizeof why, "no block at height %llu (the ledger has no genesis yet)",
                     (unsigned long long)height);
        else
            snprintf(why, sizeof why, "%s", diag.msg);
        ledger_close(l);
        return cli__fail(why, "block show");
    }
    ledger_close(l);
    exit_code = cli__block_print(ctx, bytes, len, height);
    ehr_free(bytes);
    return exit_code;
}
