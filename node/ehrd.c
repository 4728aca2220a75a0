/*
 * ehrd.c - the node daemon: `ehrd --config FILE`. Reads the config, opens
 * the key file, locks the data directory, checks the ledger (and, when
 * given, that it belongs to a genesis file), then runs the node (node.h) in
 * the foreground until SIGINT or SIGTERM, logging structured lines to
 * stderr (SIGHUP reloads the API's TLS certificate). Under systemd
 * (packaging/ehrd.service, Type=notify) it tells the service manager
 * READY=1 once both listeners are bound and STOPPING=1 when a signal starts
 * the stop; built without libsystemd (EHR_SYSTEMD=OFF) it tells nothing
 * and the unit is installed with Type=simple.
 *
 * Not here: anything the node does (node.c, service.c).
 */
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef EHR_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "config.h"
#include "datadir.h"
#include "ehr_crypto.h"
#include "ehrd_malloc.h"
#include "node.h"
#ifdef EHR_TEST_HOOKS
#include "ehrd_test_hooks.h" /* tests/node/: compiled into ehrd-test only */
#endif

/* glibc's malloc settings and the periodic trim: ehrd_malloc.h. */

static const char usage[] =
    "usage: ehrd --config FILE [--genesis FILE]\n"
    "       ehrd --version\n"
    "\n"
    "Run an ehrchain node in the foreground until SIGINT or SIGTERM.\n"
    "\n"
    "  --config FILE   the node's config file (ehrctl init writes one)\n"
    "  --genesis FILE  refuse to start unless the ledger belongs to this genesis\n"
    "  --help          this text\n"
    "  --version       the release and the commit this binary was built from\n"
    "\n"
    "The key file's passphrase comes from the config's passphrase_file (one line),\n"
    "else from $EHR_PASSPHRASE; a key file written with --no-passphrase needs none.\n"
    "While it runs, DATA_DIR/ehrd.pid holds its pid (removed when it exits).\n"
    "SIGHUP reads the API's TLS certificate, key and client CA files again.\n"
    "Exit status: 0 after a clean stop, 1 when the node cannot start or hits a\n"
    "storage or system error, 2 for a bad command line, 3 when this node's state\n"
    "diverged from the cluster's.\n";

/*
 * Tell the service manager STATE ("READY=1", "STOPPING=1"). sd_notify does
 * nothing and returns 0 when $NOTIFY_SOCKET is unset (not run by systemd),
 * so this is safe in every setting; a failure to send is logged, not fatal:
 * the node serves either way and systemd's start timeout reports the rest.
 */
static void service_notify(const char *state)
{
#ifdef EHR_SYSTEMD
    int rc = sd_notify(0, state);
    if (rc < 0)
        ehr_log(EHR_LOG_WARN, "cannot notify the service manager", "state=%s error=\"%s\"", state,
                strerror(-rc));
#else
    (void)state;
#endif
}

struct daemon {
    struct node *node;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t trim_timer; /* returns the heaps' free pages (EHRD_MALLOC_TRIM_PERIOD_MS) */
    uv_work_t trim_work;   /* malloc_trim, off the loop */
    bool trimming;         /* trim_work is queued or running */
    int exit_code;
    int signals;
};

/*
 * Open CFG's key file into ID (sodium_malloc'd), with its passphrase from
 * the config's passphrase_file, else $EHR_PASSPHRASE (ehr_passphrase_read,
 * as ehrctl reads them); a key file written with --no-passphrase needs
 * neither. Returns 0, or -1 after one line on stderr that says what was
 * missing or wrong and where ehrd looked.
 */
static int identity_open(const struct node_config *cfg, const char *config_path, ehr_identity *id)
{
    ehr_diag why = {""};
    ehr_keyfile_info info;
    int rc = ehr_keyfile_read_info(cfg->key_file, &info, &why);
    if (rc != 0) {
        fprintf(stderr, "ehrd: cannot open the key file %s: %s\n", cfg->key_file,
                why.msg[0] ? why.msg : ehr_strerror(rc));
        return -1;
    }
    char *pass = sodium_malloc(EHR_PASSPHRASE_BUFFER_BYTES);
    if (pass == NULL) {
        fprintf(stderr, "ehrd: out of secure memory\n");
        return -1;
    }
    size_t len = 0;
    const char *source = "no passphrase (the key file is unprotected)";
    ehr_diag pwhy = {""};
    rc = 0;
    if ((info.flags & EHR_KEYFILE_FLAG_EMPTY_PASSPHRASE) == 0) {
        rc = ehr_passphrase_read(cfg->passphrase_file, "EHR_PASSPHRASE", pass, &len, &pwhy);
        source = cfg->passphrase_file != NULL ? "the config's passphrase_file" : "$EHR_PASSPHRASE";
        if (rc == EHR_ENOTFOUND)
            fprintf(stderr,
                    "ehrd: the key file %s is passphrase-protected and no passphrase was given: "
                    "set \"passphrase_file\" in %s, or $EHR_PASSPHRASE\n",
                    cfg->key_file, config_path);
        else if (rc != 0)
            fprintf(stderr, "ehrd: %s\n", pwhy.msg);
    }
    if (rc == 0) {
        rc = ehr_keyfile_load(cfg->key_file, id, NULL, pass, len, &why);
        if (rc != 0)
            fprintf(stderr, "ehrd: cannot open the key file %s: %s (passphrase from %s)\n",
                    cfg->key_file, why.msg[0] ? why.msg : ehr_strerror(rc), source);
    }
    sodium_memzero(pass, EHR_PASSPHRASE_BUFFER_BYTES);
    sodium_free(pass);
    return rc == 0 ? 0 : -1;
}

static void on_stopped(void *user, int exit_code)
{
    struct daemon *d = user;
    d->exit_code = exit_code;
    d->node = NULL;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->trim_timer, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
}

static void trim_run(uv_work_t *w)
{
    (void)w;
    malloc_trim(0);
}

static void trim_done(uv_work_t *w, int status)
{
    (void)status;
    struct daemon *d = w->data;
    EHR_ASSERT(d->trimming);
    d->trimming = false;
}

static void on_trim_timer(uv_timer_t *h)
{
    struct daemon *d = h->data;
    if (d->trimming)
        return;
    struct mallinfo2 mi = mallinfo2();
    if (!ehrd_malloc_trim_wanted(mi.fordblks))
        return;
    ehr_log(EHR_LOG_DEBUG, "malloc trim", "free_bytes=%zu", mi.fordblks);
    d->trim_work.data = d;
    if (uv_queue_work(h->loop, &d->trim_work, trim_run, trim_done) == 0)
        d->trimming = true;
}

/* SIGHUP: the API's TLS certificate, key and client CA are read again from
 * the files the config names; a bad file keeps the old ones (said why). */
static void on_sighup(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    (void)signum;
    if (d->node == NULL)
        return;
    ehr_diag why;
    int rc = node_tls_reload(d->node, &why);
    if (rc == 0)
        ehr_log(EHR_LOG_INFO, "TLS certificate reloaded: new connections use it", "%s",
                "signal=SIGHUP");
    else
        ehr_log(EHR_LOG_WARN, "TLS certificate not reloaded: the old one stays",
                "signal=SIGHUP reason=\"%s\"", why.msg);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (++d->signals > 1) {
        fprintf(stderr, "ehrd: second signal, exiting at once\n");
        _exit(1);
    }
    ehr_log(EHR_LOG_INFO, "signal received: stopping", "signal=%s", strsignal(signum));
    service_notify("STOPPING=1");
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
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("ehrd %s\n", ehr_version());
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
    mallopt(M_MMAP_THRESHOLD, EHRD_MALLOC_MMAP_THRESHOLD_BYTES);
    mallopt(M_TRIM_THRESHOLD, EHRD_MALLOC_TRIM_THRESHOLD_BYTES);

    struct node_config cfg;
    ehr_diag err;
    if (node_config_load(config_path, &cfg, &err) != 0) {
        fprintf(stderr, "ehrd: %s\n", err.msg);
        node_config_free(&cfg);
        return NODE_EXIT_FAILURE;
    }
    ehr_log_set_level(cfg.log_level);

    int code = NODE_EXIT_FAILURE;
    struct node_datadir_lock lock = {.fd = -1};
    if (node_datadir_lock(cfg.data_dir, &lock, &err) != 0) {
        fprintf(stderr, "ehrd: %s\n", err.msg);
        node_config_free(&cfg);
        return NODE_EXIT_FAILURE;
    }
    /* DIR/ehrd.pid while this process runs the node, removed on every exit
     * but a kill; trust it only while DIR/LOCK is held (datadir.h). */
    char pid_path[NODE_DATADIR_PATH_BYTES_MAX + sizeof "/" NODE_DATADIR_PID_NAME];
    snprintf(pid_path, sizeof pid_path, "%s/%s", cfg.data_dir, NODE_DATADIR_PID_NAME);
    char pid_text[32];
    int pid_len = snprintf(pid_text, sizeof pid_text, "%ld\n", (long)getpid());
    int prc = ehr_file_write_atomic(pid_path, pid_text, (size_t)pid_len, 0644, true);
    if (prc != 0) {
        fprintf(stderr, "ehrd: cannot write %s: %s\n", pid_path, ehr_strerror(prc));
        node_datadir_unlock(&lock);
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
        rc = node_datadir_check_genesis(cfg.data_dir, g, glen, &err);
        ehr_free(g);
        if (rc != 0) {
            fprintf(stderr, "ehrd: %s\n", err.msg);
            goto out;
        }
    }

    ehr_identity *id = sodium_malloc(sizeof *id);
    if (id == NULL) {
        fprintf(stderr, "ehrd: out of secure memory\n");
        goto out;
    }
    if (identity_open(&cfg, config_path, id) != 0) {
        ehr_identity_wipe(id);
        sodium_free(id);
        goto out;
    }
    int rc;

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct daemon d = {.exit_code = NODE_EXIT_FAILURE};
    rc = node_start(&loop, &cfg, id, on_stopped, &d, &d.node, &err);
    ehr_identity_wipe(id);
    sodium_free(id);
    if (rc != 0) {
        fprintf(stderr, "ehrd: %s\n", err.msg);
        uv_loop_close(&loop);
        goto out;
    }
#ifdef EHR_TEST_HOOKS
    struct node_test_faults faults = {0};
    ehrd_test_faults_read(&faults);
    node_test_faults_set(d.node, &faults);
#endif
    uv_signal_init(&loop, &d.sigint);
    uv_signal_init(&loop, &d.sigterm);
    uv_signal_init(&loop, &d.sighup);
    d.sigint.data = d.sigterm.data = d.sighup.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_timer_init(&loop, &d.trim_timer);
    d.trim_timer.data = &d;
    uv_timer_start(&d.trim_timer, on_trim_timer, EHRD_MALLOC_TRIM_PERIOD_MS,
                   EHRD_MALLOC_TRIM_PERIOD_MS);
    uv_unref((uv_handle_t *)&d.trim_timer); /* the node's own handles keep the loop alive */
    uv_signal_start(&d.sighup, on_sighup, SIGHUP);
    /* node_start returned with the peer and RPC listeners bound: the node
     * serves from here (clients are answered UNAVAILABLE until a leader is
     * known, which is the cluster's state, not this process's). */
    service_notify("READY=1");
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    code = d.exit_code;
out:
    unlink(pid_path);
    node_datadir_unlock(&lock);
    node_config_free(&cfg);
    return code;
}
