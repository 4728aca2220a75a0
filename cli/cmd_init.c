/*
 * cmd_init.c - `ehrctl init`: create a node's data directory from the
 * genesis file and the node's key file: the ledger initialised with block 0,
 * a copy of the key file, and the node's config file (node/config.h).
 *
 * With --join NODE, the node joins a running chain instead: the key must
 * be a member of the chain now (admitted by the members' votes), and the
 * chain's members and tip are read from the running node NODE into the
 * join file (node/datadir.h), after checking that NODE is on this
 * genesis's chain. The node itself catches up from the leader when it
 * starts (node/README.md, "Membership on a live network").
 *
 * Not here: starting the node.
 *
 * Everything that can be checked is checked before anything is written:
 * the addresses, the genesis, the directory (refused if it already holds
 * anything, unless --force), the config file's path, and the key (opened
 * with its passphrase and looked up among the genesis's members).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
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
    struct cli__node_options join; /* join.given: --join NODE */
};

/* One member as a running node listed it, kept past its page. */
struct join_member {
    Ehr__V1__Member m;
    char name[EHR_MEMBER_NAME_BYTES_MAX + 1];
    char address[EHR_PEER_ADDRESS_BYTES_MAX + 1];
    uint8_t node_key[EHR_SCHNORR_PUBLIC_BYTES], kx_key[EHR_SCHNORR_PUBLIC_BYTES];
};

/* What --join read from the running node. */
struct join_fetch {
    const char *address;
    struct join_member members[NODE_DATADIR_JOIN_MEMBERS_MAX];
    Ehr__V1__Member *member_ptrs[NODE_DATADIR_JOIN_MEMBERS_MAX];
    size_t count;
    uint64_t height;
    uint8_t hash[EHR_HASH_BYTES];
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1];
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
                      const uint8_t genesis_hash[32], const uint8_t node_key[32], size_t join_count,
                      uint64_t join_height)
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
        if (a->join.given) {
            json_object_set_new(root, "joined_through", cli__json_text(a->join.address));
            json_object_set_new(root, "join_members", json_integer((json_int_t)join_count));
            json_object_set_new(root, "join_height", json_integer((json_int_t)join_height));
        }
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
    if (a->join.given) {
        char joined[CLI_HOST_BYTES_MAX + 96];
        snprintf(joined, sizeof joined,
                 "%zu members from %s at height %" PRIu64
                 " (it catches up from the leader when it starts)",
                 join_count, a->join.address, join_height);
        cli__print_field("joining", joined);
    }
    printf("\nstart the node with:\n  %s\n", start);
    return CLI_EXIT_OK;
}

/* Keep one listed member (checked as a genesis checks one). */
static int join_member_take(void *ctx, const Ehr__V1__Member *m)
{
    struct join_fetch *f = ctx;
    ehr_diag why;
    if (ledger_genesis_member_check(m, &why) != 0)
        return cli__fail(why.msg, "init --join: a member %s lists", f->address);
    if (f->count == NODE_DATADIR_JOIN_MEMBERS_MAX)
        return cli__fail("more than 16 members, the most a network runs with",
                         "init --join: the members %s lists", f->address);
    struct join_member *jm = &f->members[f->count];
    ehr__v1__member__init(&jm->m);
    snprintf(jm->name, sizeof jm->name, "%s", m->name);
    snprintf(jm->address, sizeof jm->address, "%s", m->peer_address);
    memcpy(jm->node_key, m->node_key.data, sizeof jm->node_key);
    memcpy(jm->kx_key, m->kx_key.data, sizeof jm->kx_key);
    jm->m.name = jm->name;
    jm->m.peer_address = jm->address;
    jm->m.role = m->role;
    jm->m.node_key = (ProtobufCBinaryData){sizeof jm->node_key, jm->node_key};
    jm->m.kx_key = (ProtobufCBinaryData){sizeof jm->kx_key, jm->kx_key};
    f->member_ptrs[f->count++] = &jm->m;
    return 0;
}

/*
 * Read the running chain from the node --join names: it must serve this
 * genesis's chain (its chain id, and its block 0 made from this genesis),
 * and list NODE_KEY among its members. Its tip is read before its
 * members, so that the tip's block is on any ledger that holds them.
 */
static int join_fetch(const struct init_args *a, const Ehr__V1__Genesis *g,
                      const uint8_t genesis_hash[EHR_HASH_BYTES],
                      const uint8_t node_key[EHR_SCHNORR_PUBLIC_BYTES], struct join_fetch *f)
{
    memset(f, 0, sizeof *f);
    f->address = a->join.address;
    struct cli__node node;
    int exit_code = cli__node_open(&node, &a->join, "init --join");
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__GetStatusResponse *st = NULL;
    exit_code = cli__node_get_status(&node, "init --join", &st);
    if (exit_code == 0) {
        if (strcmp(st->chain_id, g->chain_id) != 0) {
            char why[2 * EHR_CHAIN_ID_BYTES_MAX + 64];
            snprintf(why, sizeof why, "it serves chain \"%s\", the genesis is chain \"%s\"",
                     st->chain_id, g->chain_id);
            exit_code = cli__fail(why, "init --join %s", f->address);
        } else {
            f->height = st->tip_height;
            memcpy(f->hash, st->tip_hash.data, EHR_HASH_BYTES);
            snprintf(f->chain_id, sizeof f->chain_id, "%s", st->chain_id);
        }
        ehr__v1__get_status_response__free_unpacked(st, NULL);
    }
    if (exit_code == 0) {
        uint8_t *block = NULL;
        size_t len = 0;
        ledger_block_view v;
        exit_code = cli__block_fetch(&node, 0, "init --join", &block, &len, &v, NULL);
        if (exit_code == 0) {
            if (memcmp(v.header.genesis_hash, genesis_hash, EHR_HASH_BYTES) != 0)
                exit_code = cli__fail("its block 0 was not made from this genesis file",
                                      "init --join %s", f->address);
            ledger_block_view_release(&v);
            ehr_free(block);
        }
    }
    size_t count = 0;
    if (exit_code == 0)
        exit_code = cli__members_each(&node, "init --join", join_member_take, f, &count);
    cli__node_close(&node);
    if (exit_code != 0)
        return exit_code;
    for (size_t i = 0; i < f->count; i++)
        if (memcmp(f->members[i].node_key, node_key, EHR_SCHNORR_PUBLIC_BYTES) == 0)
            return 0;
    char why[EHR_CHAIN_ID_BYTES_MAX + 160];
    snprintf(why, sizeof why,
             "this key is not a member of chain \"%s\" yet: the members admit it first "
             "(ehrctl member propose --admit ENTRY.json, then approvals)",
             g->chain_id);
    return cli__fail(why, "init --join %s", f->address);
}

/* Write the join file into REAL_DIR from F. */
static int join_write(const char *real_dir, struct join_fetch *f)
{
    Ehr__V1__JoinInfo info = EHR__V1__JOIN_INFO__INIT;
    info.chain_id = f->chain_id;
    info.height = f->height;
    info.block_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, f->hash};
    info.n_members = f->count;
    info.members = f->member_ptrs;
    info.source = (char *)f->address;
    ehr_diag err;
    if (node_datadir_join_write(real_dir, &info, &err) != 0)
        return cli__fail(err.msg, "write the join file");
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
    uint8_t genesis_hash[32];
    ehr_sha256(genesis_hash, genesis, genesis_len);
    struct join_fetch *join = NULL;
    if (a->join.given) {
        join = ehr_calloc(1, sizeof *join);
        int exit_code = join_fetch(a, g, genesis_hash, node_key, join);
        if (exit_code != 0) {
            ehr_free(join);
            return exit_code;
        }
    } else if (!genesis_has_member(g, node_key)) {
        char why[EHR_CHAIN_ID_BYTES_MAX + 160];
        snprintf(why, sizeof why,
                 "this key is not a founding member of chain \"%s\" (a member admitted "
                 "since joins the running chain: --join NODE)",
                 g->chain_id);
        return cli__fail(why, "initialise %s with key %s", a->data, a->key);
    }

    /* The writes. */
    char real_dir[PATH_MAX];
    struct node_datadir_lock lock;
    ehr_diag err;
    int exit_code = CLI_EXIT_OK;
    if (!exists && mkdir(a->data, 0700) != 0)
        exit_code = cli__fail(ehr_strerror(-errno), "create %s", a->data);
    else if (realpath(a->data, real_dir) == NULL)
        exit_code = cli__fail(ehr_strerror(-errno), "resolve %s", a->data);
    else if (node_datadir_lock(real_dir, &lock, &err) != 0)
        exit_code = cli__fail(err.msg, "lock %s", a->data);
    if (exit_code != CLI_EXIT_OK) {
        ehr_free(join);
        return exit_code;
    }
    char key_path[PATH_MAX + 16];
    snprintf(key_path, sizeof key_path, "%s/%s", real_dir, NODE_KEY_NAME);
    exit_code = ledger_create(a, genesis, genesis_len);
    if (exit_code == CLI_EXIT_OK)
        exit_code = key_copy(a, key_path);
    if (exit_code == CLI_EXIT_OK)
        exit_code = config_create(a, config_path, real_dir, key_path);
    if (exit_code == CLI_EXIT_OK && join != NULL)
        exit_code = join_write(real_dir, join);
    node_datadir_unlock(&lock);
    size_t join_count = join != NULL ? join->count : 0;
    uint64_t join_height = join != NULL ? join->height : 0;
    ehr_free(join);
    if (exit_code != CLI_EXIT_OK)
        return exit_code;
    char real_config[PATH_MAX];
    if (realpath(config_path, real_config) == NULL)
        return cli__fail(ehr_strerror(-errno), "resolve %s", config_path);
    if (a->passphrase_file == NULL && (info.flags & EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE) == 0)
        fprintf(stderr,
                "ehrctl: warning: %s names no passphrase file, and the key is "
                "passphrase-protected: start ehrd with $EHR_PASSPHRASE set, or add "
                "\"passphrase_file\" to the config (--passphrase-file records one)\n",
                real_config);
    return init_print(ctx, a, real_dir, key_path, real_config, g, genesis_hash, node_key,
                      join_count, join_height);
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
        {"join", required_argument, NULL, 'j'},
        {"timeout-ms", required_argument, NULL, 'T'},
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
        case 'j': {
            char host[CLI_HOST_BYTES_MAX + 1];
            uint16_t port;
            if (cli__address_parse(optarg, host, &port) != 0)
                return cli__usage_error(ctx,
                                        "--join wants the HOST:PORT of a running node's API, "
                                        "not \"%.80s\"",
                                        optarg);
            a.join.address = optarg;
            a.join.given = true;
            break;
        }
        case 'T':
            if (cli__node_option(ctx, 'T', optarg, &a.join) != 0)
                return CLI_EXIT_USAGE;
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
    if (a.join.given && cli__node_options_finish(ctx, &a.join) != 0)
        return CLI_EXIT_USAGE;
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
