/*
 * echo_server_main.c - rpc_echo_server: the Echo test service on a real
 * port, for the interoperability test (a stock gRPC client in Python calls
 * it). Prints "port N" on stdout once listening; SIGTERM or SIGINT close it
 * gracefully. Usage: rpc_echo_server [--message-bytes-max N] [--tls-cert FILE
 * --tls-key FILE [--tls-client-ca FILE]]. Test-only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "echo_service.h"

static struct rpc_server *server;
static uv_signal_t sigterm, sigint;

static void closed(struct rpc_server *s, void *data)
{
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
}

static void on_signal(uv_signal_t *signal, int signum)
{
    if (server != NULL) {
        rpc_server_close(server, closed, NULL);
        server = NULL;
    }
}

int main(int argc, char **argv)
{
    struct rpc_server_config config = {0};
    struct rpc_tls_server_files tls_files = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--message-bytes-max") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || v == 0 || v > RPC_MESSAGE_BYTES_MAX) {
                fprintf(stderr, "rpc_echo_server: bad --message-bytes-max\n");
                return 2;
            }
            config.message_bytes_max = (size_t)v;
        } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
            tls_files.cert_file = argv[++i];
        } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
            tls_files.key_file = argv[++i];
        } else if (strcmp(argv[i], "--tls-client-ca") == 0 && i + 1 < argc) {
            tls_files.client_ca_file = argv[++i];
        } else {
            fprintf(stderr, "usage: rpc_echo_server [--message-bytes-max N] [--tls-cert FILE "
                            "--tls-key FILE [--tls-client-ca FILE]]\n");
            return 2;
        }
    }
    uv_loop_t *loop = uv_default_loop();
    static struct echo_service service;
    int rv = rpc_server_new(loop, &config, &server);
    if (rv == 0)
        rv = echo_service_register(&service, loop, server);
    struct rpc_tls *tls = NULL;
    if (rv == 0 && tls_files.cert_file != NULL) {
        ehr_diag why;
        if (rpc_tls_server_new(&tls_files, &tls, &why) != 0) {
            fprintf(stderr, "rpc_echo_server: %s\n", why.msg);
            return 1;
        }
        rpc_server_use_tls(server, tls);
    }
    if (rv == 0)
        rv = rpc_server_listen(server, "127.0.0.1", 0);
    if (rv != 0) {
        fprintf(stderr, "rpc_echo_server: %s\n", ehr_strerror(rv));
        return 1;
    }
    uv_signal_init(loop, &sigterm);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    printf("port %u\n", rpc_server_port(server));
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    rpc_tls_free(tls);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
