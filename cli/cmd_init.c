/*
 * cmd_init.c - `ehrctl init`: create a node's data directory from the
 * genesis file and the node's key file: the ledger initialised with block 0,
 * a copy of the key file, and the node's config file (node/config.h).
 *
 * Not here: joining an existing chain as a new member (the key must be a
 * founding member of the genesis), starting the node.
 *
 * Everything that can be checked is checked before anything is written:
 * the addresses, the genesis, the directory (refused if it already holds
 * anything, unless --force), the config file's path, and the key (opened
 * with its passphrase and looked up among the genesis's members).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_internal.h"
#include "config.h"
#include "datadir.h"
#include "ehr/v1/block.pb-c.h"
#include "ledger.h"

#define NODE_KEY_NAME "node.key"
#define CONFIG_NAME "ehrd.json"

/* What the command was asked to do. */
struct init_args {
    const char *genesis, *key, *data, *peer_listen, *rpc_listen, *config, *passphrase_file;
    bool force;
};

/* Does DIR exist, and does it hold any entry? Returns 0, EHR_EINVAL (not a directory), -errno. */
static int dir_state(const char *dir, bool *exists, bool *empty)
{
    *exists = false;
    *empty = true;
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : errno == ENOTDIR ? EHR_EINVAL : -errno;
    *exists = true;
    struct dirent *e;
    while (*empty && (e = readdir(d)) != NULL)
        *empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return 0;
}

/* Is NODE_KEY one of GENESIS's members? */
static bool genesis_has_member(const Ehr__V1__Genesis *genesis,
                               const uint8_t node_key[EHR_SCHNORR_PUBLIC_BYTES])
{
    for (size_t i = 0; i < genesis->n_members; i++) {
        ProtobufCBinaryData k = genesis->members[i]->node_key;
        if (k.len == EHR_SCHNORR_PUBLIC_BYTES &&
            memcmp(k.data, node_key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            return true;
    }
    return false;
}

/* Create DIR's ledger from GENESIS, or (with FORCE) keep one of the same chain. */
static int ledger_create(const struct init_args *a, const uint8_t *genesis, size_t len)
{
    ledger *l = NULL;
    if (cli__ledger_open(a->data, false, &l) != 0)
        return CLI_EXIT_FAIL;
    ehr_diag why = {""};
    int rc = ledger_genesis_init(l, genesis, len, &why);
    ledger_close(l);
    if (rc == EHR_EEXIST && a->force) {
        /* Re-initialising: the ledger stays only if it is this chain's. */
        ehr_diag err;
        if (node_datadir_check_genesis(a->data, genesis, len, &err) != 0)
            return cli__fail(err.msg, "keep the existing ledger (remove it by hand to start over)");
        return CLI_EXIT_OK;
    }
    if (rc != 0)
        return cli__fail(why.msg[0] != '\0' ? why.msg : ehr_strerror(rc),
                         "initialise the ledger in %s", a->data);
    return CLI_EXIT_OK;
}

/* Copy the key file's bytes to DIR/node.key (0600). */
static int key_copy(const struct init_args *a, const char *to)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = ehr_file_read_alloc(a->key, EHR_KEYFILE_BYTES, &bytes, &len);
    if (rc != 0)
        return cli__fail(ehr_strerror(rc), "read key file %s", a->key);
    rc = ehr_file_write_atomic(to, bytes, len, 0600, a->force);
    sodium_memzero(bytes, len);
    ehr_free(bytes);
    if (rc != 0)
        return cli__fail(ehr_strerror(rc), "write %s", to);
    return CLI_EXIT_OK;
}

/* Write the node's config file at CONFIG_PATH for the directory REAL_DIR. */
static int config_create(const struct init_args *a, const char *config_path, const char *real_dir,
                         const char *key_path)
{
    struct node_config cfg;
    node_config_defaults(&cfg);
    char passphrase_real[PATH_MAX];
    if (a->passphrase_file != NULL) {
        if (realpath(a->passphrase_file, passphrase_real) == NULL)
            return cli__fail(ehr_strerror(-errno), "resolve %s", a->passphrase_file);
        cfg.passphrase_file = passphrase_real;
    }
    cfg.data_dir = (char *)real_dir;
    cfg.key_file = (char *)key_path;
    cfg.peer_listen = (char *)a->peer_listen;
    cfg.rpc_listen = (char *)a->rpc_listen;
    ehr_diag err;
    if (node_config_write(config_path, &cfg, a->force, &err) != 0)
        return cli__fail(err.msg, "write the config file");
    return CLI_EXIT_OK;
}

static int init_print(struct cli__ctx *ctx, const struct init_args *a, const char *real_dir,
                      const char *key_path, const char *config_path, const Ehr__V1__Genesis *g,
                      const uint8_t genesis_hash[32], const uint8_t node_key[32])
{
    char start[PATH_MAX + 32];
    snprintf(start, sizeof start, "ehrd --config %s", config_path);
    if (ctx->json) {
        json_t *root = json_object();
        json_object_set_new(root, "data_dir", cli__json_text(real_dir));
        json_object_set_new(root, "key_file", cli__json_text(key_path));
        json_object_set_new(root, "config", cli__json_text(config_path));
        json_object_set_new(root, "chain_id", cli__json_text(g->chain_id));
        json_object_set_new(root, "genesis_hash", cli__json_hex(genesis_hash, 32));
        json_object_set_new(root, "node_key", cli__json_hex(node_key, 32));
        json_object_set_new(root, "peer_listen", cli__json_text(a->peer_listen));
        json_object_set_new(root, "rpc_listen", cli__json_text(a->rpc_listen));
        json_object_set_new(root, "start_command", cli__json_text(start));
        return cli__json_print(root);
    }
    char hex[65];
    printf("initialised the data directory %s\n", real_dir);
    cli__print_field("chain id", g->chain_id);
    ehr_hex_encode(hex, genesis_hash, 32);
    cli__print_field("genesis hash", hex);
    ehr_hex_encode(hex, node_key, 32);
    cli__print_field("node key", hex);
    cli__print_field("ledger", "block 0 written from the genesis");
    cli__print_field("key file", key_path);
    cli__print_field("config", config_path);
    cli__print_field("peer listen", a->peer_listen);
    cli__print_field("rpc listen", a->rpc_listen);
    printf("\nstart the node with:\n  %s\n", start);
    return CLI_EXIT_OK;
}

/* Everything after the arguments parsed: the checks, then the writes. */
static int init_run(struct cli__ctx *ctx, const struct init_args *a, const uint8_t *genesis,
                    size_t genesis_len, const Ehr__V1__Genesis *g)
{
    bool exists, empty;
    int rc = dir_state(a->data, &exists, &empty);
    if (rc != 0)
        return cli__fail(rc == EHR_EINVAL ? "not a directory" : ehr_strerror(rc),
                         "use data directory %s", a->data);
    if (!empty && !a->force)
        return cli__fail("not empty: already initialised? (--force rewrites the key copy and "
                         "the config, keeping a ledger of the same chain)",
                         "initialise %s", a->data);
    char config_path[PATH_MAX];
    if (a->config != NULL)
        snprintf(config_path, sizeof config_path, "%s", a->config);
    else
        snprintf(config_path, sizeof config_path, "%s/%s", a->data, CONFIG_NAME);
    if (!a->force && access(config_path, F_OK) == 0)
        return cli__fail("exists (--force replaces it)", "write config %s", config_path);

    ehr_identity *id = NULL;
    ehr_keyfile_info info;
    if (cli__identity_load(a->key, a->passphrase_file, &id, &info) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    uint8_t node_key[EHR_SCHNORR_PUBLIC_BYTES];
    memcpy(node_key, id->signing.public_key, sizeof node_key);
    sodium_free(id); /* wipes the secrets: only the public key is needed */
    if (!genesis_has_member(g, node_key)) {
        char why[EHR_CHAIN_ID_BYTES_MAX + 128];
        snprintf(why, sizeof why,
                 "this key is not a founding member of chain \"%s\" (joining an existing chain "
                 "is not supported)",
                 g->chain_id);
        return cli__fail(why, "initialise %s with key %s", a->data, a->key);
    }

    /* The writes. */
    if (!exists && mkdir(a->data, 0700) != 0)
        return cli__fail(ehr_strerror(-errno), "create %s", a->data);
    char real_dir[PATH_MAX];
    if (realpath(a->data, real_dir) == NULL)
        return cli__fail(ehr_strerror(-errno), "resolve %s", a->data);
    struct node_datadir_lock lock;
    ehr_diag err;
    if (node_datadir_lock(real_dir, &lock, &err) != 0)
        return cli__fail(err.msg, "lock %s", a->data);
    char key_path[PATH_MAX + 16];
    snprintf(key_path, sizeof key_path, "%s/%s", real_dir, NODE_KEY_NAME);
    int exit_code = ledger_create(a, genesis, genesis_len);
    if (exit_code == CLI_EXIT_OK)
        exit_code = key_copy(a, key_path);
    if (exit_code == CLI_EXIT_OK)
        exit_code = config_create(a, config_path, real_dir, key_path);
    node_datadir_unlock(&lock);
    if (exit_code != CLI_EXIT_OK)
        return exit_code;
    char real_config[PATH_MAX];
    if (realpath(config_path, real_config) == NULL)
        return cli__fail(ehr_strerror(-errno), "resolve %s", config_path);
    uint8_t genesis_hash[32];
    ehr_sha256(genesis_hash, genesis, genesis_len);
    if (a->passphrase_file == NULL && (info.flags & EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE) == 0)
        fprintf(stderr,
                "ehrctl: warning: %s names no passphrase file, and the key is "
                "passphrase-protected: start ehrd with $EHR_PASSPHRASE set, or add "
                "\"passphrase_file\" to the config (--passphrase-file records one)\n",
                real_config);
    return init_print(ctx, a, real_dir, key_path, real_config, g, genesis_hash, node_key);
}

int cli__cmd_init(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"genesis", required_argument, NULL, 'g'},
        {"key", required_argument, NULL, 'k'},
        {"data", required_argument, NULL, 'd'},
        {"peer-listen", required_argument, NULL, 'p'},
        {"rpc-listen", required_argument, NULL, 'r'},
        {"config", required_argument, NULL, 'c'},
        {"passphrase-file", required_argument, NULL, 'P'},
        {"force", no_argument, NULL, 'f'},
        CLI_COMMON_OPTIONS,
    };
    struct init_args a = {0};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'g':
            a.genesis = optarg;
            break;
        case 'k':
            a.key = optarg;
            break;
        case 'd':
            a.data = optarg;
            break;
        case 'p':
            a.peer_listen = optarg;
            break;
        case 'r':
            a.rpc_listen = optarg;
            break;
        case 'c':
            a.config = optarg;
            break;
        case 'P':
            a.passphrase_file = optarg;
            break;
        case 'f':
            a.force = true;
            break;
        default:
            EHR_ASSERT(0 && "option in the table but not handled");
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if (a.genesis == NULL || a.key == NULL || a.data == NULL || a.peer_listen == NULL ||
        a.rpc_listen == NULL)
        return cli__usage_error(ctx, "--genesis, --key, --data, --peer-listen and --rpc-listen are "
                                     "required");
    ehr_diag why;
    if (node_config_address_check(a.peer_listen, &why) != 0)
        return cli__usage_error(ctx, "--peer-listen: %s", why.msg);
    if (node_config_address_check(a.rpc_listen, &why) != 0)
        return cli__usage_error(ctx, "--rpc-listen: %s", why.msg);
    if (strlen(a.data) == 0 || strlen(a.data) > NODE_DATADIR_PATH_BYTES_MAX)
        return cli__usage_error(ctx, "--data: a path of 1 to %d bytes",
                                NODE_DATADIR_PATH_BYTES_MAX);
    if (a.config != NULL &&
        (strlen(a.config) == 0 || strlen(a.config) > NODE_CONFIG_PATH_BYTES_MAX))
        return cli__usage_error(ctx, "--config: a path of 1 to %d bytes",
                                NODE_CONFIG_PATH_BYTES_MAX);

    uint8_t *genesis = NULL;
    size_t len = 0;
    int rc = ehr_file_read_alloc(a.genesis, EHR_GENESIS_BYTES_MAX, &genesis, &len);
    if (rc != 0)
        return cli__fail(rc == EHR_ETOOBIG ? "larger than 1 MiB" : ehr_strerror(rc),
                         "read genesis %s", a.genesis);
    Ehr__V1__Genesis *g = NULL;
    ehr_diag diag;
    rc = ledger_genesis_parse(genesis, len, &g, &diag);
    int exit_code;
    if (rc != 0)
        exit_code = cli__fail(diag.msg, "check genesis %s", a.genesis);
    else
        exit_code = init_run(ctx, &a, genesis, len, g);
    if (g != NULL)
        ehr__v1__genesis__free_unpacked(g, NULL);
    ehr_free(genesis);
    return exit_code;
}
