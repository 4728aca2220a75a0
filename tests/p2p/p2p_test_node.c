/*
 * p2p_test_node - a one-peer p2p node in its own process, for the reconnect
 * test: it listens, prints "port N" on stdout, links with the one peer it is
 * given and echoes every message back to it. It dies with its parent and
 * after a lifetime bound, so a failed test leaves nothing running.
 *
 * Usage: p2p_test_node SECRET_HEX CHAIN_ID LISTEN_ADDR PEER_KEY_HEX PEER_ADDR
 * Not a general-purpose node (that is node/).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include "p2p.h"

enum { LIFETIME_MS = 60000 };

struct node {
    p2p *p;
    uint8_t peer[P2P_KEY_BYTES];
};

static void on_message(void *user, const uint8_t peer[P2P_KEY_BYTES], const uint8_t *data,
                       size_t len)
{
    struct node *n = user;
    int rc = p2p_send(n->p, peer, data, len);
    if (rc != 0)
        fprintf(stderr, "p2p_test_node: echo failed: %s\n", ehr_errname(rc));
}

static void on_lifetime_over(uv_timer_t *timer)
{
    fprintf(stderr, "p2p_test_node: lifetime over\n");
    _exit(2);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s SECRET_HEX CHAIN_ID LISTEN_ADDR PEER_KEY_HEX PEER_ADDR\n",
                argv[0]);
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_IGN);
    if (ehr_crypto_init() != 0)
        return 1;
    ehr_log_set_level(EHR_LOG_WARN);
    uint8_t secret[EHR_SCHNORR_SECRET_BYTES];
    ehr_signing_key key;
    struct node n = {0};
    if (ehr_hex_decode(secret, sizeof secret, argv[1]) != 0 ||
        ehr_signing_key_from_secret(&key, secret) != 0 ||
        ehr_hex_decode(n.peer, sizeof n.peer, argv[4]) != 0) {
        fprintf(stderr, "p2p_test_node: bad key\n");
        return 2;
    }
    explicit_bzero(secret, sizeof secret);
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_config config = {
        .node_key = &key,
        .chain_id = argv[2],
        .handshake_timeout_ms = 2000,
        .keepalive_interval_ms = 100,
        .dead_after_ms = 1500,
        .reconnect_base_ms = 20,
        .reconnect_max_ms = 200,
        .callbacks = {.on_message = on_message},
        .user = &n,
    };
    int rc = p2p_create(&loop, &config, &n.p);
    if (rc == 0)
        rc = p2p_listen(n.p, argv[3]);
    uint16_t port = 0;
    if (rc == 0)
        rc = p2p_listen_port(n.p, &port);
    p2p_member members[2];
    memset(members, 0, sizeof members);
    memcpy(members[0].node_key, key.public_key, P2P_KEY_BYTES);
    memcpy(members[1].node_key, n.peer, P2P_KEY_BYTES);
    snprintf(members[1].address, sizeof members[1].address, "%s", argv[5]);
    if (rc == 0)
        rc = p2p_set_members(n.p, members, 2);
    if (rc != 0) {
        fprintf(stderr, "p2p_test_node: %s\n", ehr_errname(rc));
        return 1;
    }
    printf("port %u\n", (unsigned)port);
    fflush(stdout);
    uv_timer_t lifetime;
    uv_timer_init(&loop, &lifetime);
    uv_timer_start(&lifetime, on_lifetime_over, LIFETIME_MS, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 0;
}
