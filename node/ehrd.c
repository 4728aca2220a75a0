/*
 * ehrd.c - the node daemon: `ehrd --config FILE`. Reads the config, opens
 * the key file, locks the data directory, checks the ledger (and, when
 * given, that it belongs to a genesis file), then runs the node (node.h) in
 * the foreground until SIGINT or SIGTERM, logging structured lines to
 * stderr.
 *
 * Not here: anything the node does (node.c, service.c).
 */
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "datadir.h"
#include "ehr_crypto.h"
#include "node.h"

enum { PASSPHRASE_FILE_BYTES_MAX = EHR_PASSPHRASE_BYTES_MAX + 2 };

static const char usage[] =
    "usage: ehrd --config FILE [--genesis FILE]\n"
    "\n"
    "Run an ehrchain node in the foreground until SIGINT or SIGTERM.\n"
    "\n"
    "  --config FILE   the node's config file (ehrctl init writes one)\n"
    "  --genesis FILE  refuse to start unless the ledger belongs to this genesis\n"
    "  --help          this text\n"
    "\n"
    "The key file's passphrase comes from the config's passphrase_file, else from\n"
    "$EHR_PASSPHRASE, else it is empty (a key file written with --no-passphrase).\n"
    "Exit status: 0 after a clean stop, 1 when the node cannot start or hits a\n"
    "storage or system error, 2 for a bad command line, 3 when this node's state\n"
    "diverged from the cluster's.\n";

struct daemon {
    struct node *node;
    uv_signal_t sigint, sigterm;
    int exit_code;
    int signals;
};

/* The passphrase for the key file into PASS (sodium_malloc'd, PASS_CAP
 * bytes). Returns its length, or -1 with a message on stderr. */
static long passphrase_read(const struct node_config *cfg, char *pass, size_t cap)
{
    const char *src = NULL;
    size_t len = 0;
    if (cfg->passphrase_file != NULL) {
        int rc = ehr_file_read(cfg->passphrase_file, pass, cap - 1, &len);
        if (rc != 0) {
            fprintf(stderr, "ehrd: cannot read the passphrase file %s: %s\n", cfg->passphrase_file,
                    ehr_strerror(rc));
            return -1;
        }
        pass[len] = '\0';
        char *nl = memchr(pass, '\n', len);
        if (nl != NULL)
            len = (size_t)(nl - pass);
        if (len > 0 && pass[len - 1] == '\r')
            len--;
        return (long)len;
    }
    src = getenv("EHR_PASSPHRASE");
    if (src == NULL)
        return 0;
    len = strlen(src);
    if (len >= cap) {
        fprintf(stderr, "ehrd: $EHR_PASSPHRASE is longer than %d bytes\n",
                EHR_PASSPHRASE_BYTES_MAX);
        return -1;
    }
    memcpy(pass, src, len);
    return (long)len;
}

static void on_stopped(void *user, int exit_code)
{
    struct daemon *d = user;
    d->exit_code = exit_code;
    d->node = NULL;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (++d->signals > 1) {
        fprintf(stderr, "ehrd: second signal, exiting at once\n");
        _exit(1);
    }
    ehr_log(EHR_LOG_INFO, "signal received: stopping", "signal=%s", strsignal(signum));
    if (d->node != NULL)
        node_stop(d->node);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *genesis_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--genesis") == 0 && i + 1 < argc) {
            genesis_path = argv[++i];
        } else {
            fprintf(stderr, "ehrd: unknown or incomplete argument: %s\n%s", argv[i], usage);
            return NODE_EXIT_USAGE;
        }
    }
    if (config_path == NULL) {
        fprintf(stderr, "ehrd: --config FILE is required\n%s", usage);
        return NODE_EXIT_USAGE;
    }
    if (ehr_crypto_init() != 0) {
        fprintf(stderr, "ehrd: cannot initialise the crypto library\n");
        return NODE_EXIT_FAILURE;
    }
    signal(SIGPIPE, SIG_IGN);

    struct node_config cfg;
    char err[NODE_CONFIG_ERROR_BYTES_MAX];
    if (node_config_load(config_path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "ehrd: %s\n", err);
        node_config_free(&cfg);
        return NODE_EXIT_FAILURE;
    }
    ehr_log_set_level(cfg.log_level);

    int code = NODE_EXIT_FAILURE;
    struct node_datadir_lock lock = {.fd = -1};
    char lerr[NODE_DATADIR_ERROR_BYTES_MAX];
    if (node_datadir_lock(cfg.data_dir, &lock, lerr, sizeof lerr) != 0) {
        fprintf(stderr, "ehrd: %s\n", lerr);
        node_config_free(&cfg);
        return NODE_EXIT_FAILURE;
    }
    if (genesis_path != NULL) {
        uint8_t *g = NULL;
        size_t glen = 0;
        int rc = ehr_file_read_alloc(genesis_path, EHR_GENESIS_BYTES_MAX, &g, &glen);
        if (rc != 0) {
            fprintf(stderr, "ehrd: cannot read the genesis file %s: %s\n", genesis_path,
                    ehr_strerror(rc));
            goto out;
        }
        rc = node_datadir_check_genesis(cfg.data_dir, g, glen, lerr, sizeof lerr);
        ehr_free(g);
        if (rc != 0) {
            fprintf(stderr, "ehrd: %s\n", lerr);
            goto out;
        }
    }

    ehr_identity *id = sodium_malloc(sizeof *id);
    char *pass = sodium_malloc(PASSPHRASE_FILE_BYTES_MAX + 1);
    if (id == NULL || pass == NULL) {
        fprintf(stderr, "ehrd: out of secure memory\n");
        sodium_free(id);
        sodium_free(pass);
        goto out;
    }
    long plen = passphrase_read(&cfg, pass, PASSPHRASE_FILE_BYTES_MAX + 1);
    char why[EHR_KEYFILE_MESSAGE_BYTES] = "";
    int rc =
        plen < 0 ? EHR_EINVAL : ehr_keyfile_load(cfg.key_file, id, NULL, pass, (size_t)plen, why);
    sodium_memzero(pass, PASSPHRASE_FILE_BYTES_MAX + 1);
    sodium_free(pass);
    if (rc != 0) {
        if (plen >= 0)
            fprintf(stderr, "ehrd: cannot open the key file %s: %s%s%s\n", cfg.key_file,
                    why[0] ? why : ehr_strerror(rc),
                    rc == EHR_EPASSPHRASE ? " (set passphrase_file in the config or "
                                            "$EHR_PASSPHRASE)"
                                          : "",
                    "");
        ehr_identity_wipe(id);
        sodium_free(id);
        goto out;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct daemon d = {.exit_code = NODE_EXIT_FAILURE};
    rc = node_start(&loop, &cfg, id, on_stopped, &d, &d.node, err, sizeof err);
    ehr_identity_wipe(id);
    sodium_free(id);
    if (rc != 0) {
        fprintf(stderr, "ehrd: %s\n", err);
        uv_loop_close(&loop);
        goto out;
    }
    uv_signal_init(&loop, &d.sigint);
    uv_signal_init(&loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    code = d.exit_code;
out:
    node_datadir_unlock(&lock);
    node_config_free(&cfg);
    return code;
}
