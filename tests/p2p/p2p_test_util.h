/*
 * p2p_test_util.h - helpers shared by the p2p tests: a captured log, a loop
 * runner with a deadline that fails the test, test nodes that record what
 * they receive, and a "raw peer": a plain TCP client on the same loop that
 * speaks the handshake through the pure layer, so a test can send exactly the
 * bytes it wants (garbage, a forged signature, a replayed handshake, a
 * tampered or oversized frame).
 *
 * Not a test by itself; tests link it in.
 */
#ifndef EHR_P2P_TEST_UTIL_H
#define EHR_P2P_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "p2p.h"
#include "p2p_internal.h"

/* ---- log capture ---- */

/* Route ehr_log into a buffer (and to stderr if P2P_TEST_VERBOSE is set). */
void tlog_capture(void);
/* Forget captured lines. */
void tlog_clear(void);
/* Whether a captured line contains TEXT. */
bool tlog_contains(const char *text);
/* How many times TEXT occurs in the captured log. */
size_t tlog_count(const char *text);
/* Print the captured lines to stderr (for a failing test). */
void tlog_dump(void);

/* ---- running the loop ---- */

typedef bool (*tpred_fn)(void *ctx);

/* Run LOOP until PRED(CTX) holds; fail the test after TIMEOUT_MS. */
void trun_until(uv_loop_t *loop, tpred_fn pred, void *ctx, uint64_t timeout_ms);
/* Run LOOP until PRED(CTX) holds or TIMEOUT_MS pass; whether it held. */
bool trun_try(uv_loop_t *loop, tpred_fn pred, void *ctx, uint64_t timeout_ms);
/* Run LOOP for DURATION_MS. */
void trun_for(uv_loop_t *loop, uint64_t duration_ms);

/* ---- test nodes ---- */

enum { TNODE_RECEIVED_MAX = 200000, TNODE_PEERS_MAX = 4 };

typedef struct tnode {
    uv_loop_t *loop;
    p2p *p;
    ehr_signing_key key;
    uint16_t port;
    char address[P2P_ADDRESS_BYTES_MAX];
    bool closed;
    /* What the callbacks saw. */
    int link_up_count;
    int link_down_count;
    int last_down_reason;
    uint64_t last_down_unsent;
    int writable_count;
    uint64_t received_count;
    /* Per-peer order check: messages carry (sender index, sequence). */
    uint64_t next_seq[TNODE_PEERS_MAX];
    bool order_broken;
    uint8_t last_message[256];
    size_t last_message_len;
    /* Set by tests that want on_message or on_link_up to do more. */
    void (*on_message_hook)(struct tnode *n, const uint8_t *peer, const uint8_t *data, size_t len);
    void (*on_link_up_hook)(struct tnode *n, const uint8_t *peer);
    void *hook_ctx;
} tnode;

/* Fill CONFIG with fast test timings and N's callbacks. */
void tnode_config(tnode *n, p2p_config *config, const char *chain_id);
/* Create N on LOOP with CONFIG (from tnode_config, maybe edited), listening
 * on 127.0.0.1 with a kernel-chosen port. KEY: NULL for a fresh one. */
void tnode_start(tnode *n, uv_loop_t *loop, const ehr_signing_key *key, p2p_config *config);
/* Close N and run the loop until it is gone. */
void tnode_stop(tnode *n);
/* A member entry for N (its key and address). */
p2p_member tnode_member(const tnode *n);
/* Set N's members to NODES[0..COUNT) (N itself may be among them). */
void tnode_set_members(tnode *n, tnode *const *nodes, size_t count);
/* Whether N's link to PEER is up. */
bool tnode_link_up(const tnode *n, const tnode *peer);

/* A test message: sender index, sequence, then LEN-12 filler bytes derived
 * from both. LEN >= 12. Returns LEN. */
size_t tmsg_make(uint8_t *out, size_t len, uint32_t sender, uint64_t seq);

/* ---- raw peer ---- */

enum { RAWPEER_IN_BYTES_MAX = 4096, RAWPEER_SENT_BYTES_MAX = 4096 };

typedef struct rawpeer {
    uv_loop_t *loop;
    uv_tcp_t server; /* for rawpeer_listen */
    bool listening;
    bool accepted;
    uint16_t port;
    uv_tcp_t tcp;
    bool tcp_open;
    uv_connect_t connect_req;
    bool connected;
    bool eof; /* the other side closed */
    bool closed;
    /* Handshake through the pure layer (if handshake is true). */
    bool handshake;
    bool corrupt_auth; /* flip a bit of our signature before sending it */
    bool hold_auth;    /* keep our PeerAuth in held[] instead of sending it */
    uint8_t held[P2P__HS_OUT_BYTES_MAX];
    size_t held_len;
    const ehr_signing_key *key;
    const char *chain_id;
    const uint8_t *expected_peer;
    p2p__handshake hs;
    bool done;
    /* When our key is the lower, we decide which connection is the link
     * (p2p/README.md, L2) and confirm it with a first frame once the
     * handshake is done, as a node does; no_confirm holds that frame back. */
    bool no_confirm;
    bool confirmed; /* the confirmation frame was sent */
    p2p__cipher tx;
    /* Bytes received before the handshake completed. */
    uint8_t in[RAWPEER_IN_BYTES_MAX];
    size_t in_len;
    /* Every byte this peer sent (up to the bound), for replays. */
    uint8_t sent[RAWPEER_SENT_BYTES_MAX];
    size_t sent_len;
    void (*on_done)(struct rawpeer *rp);
    void *ctx;
} rawpeer;

/* Connect RP to 127.0.0.1:PORT on LOOP. Set the handshake fields first. */
void rawpeer_connect(rawpeer *rp, uv_loop_t *loop, uint16_t port);
/* Listen on 127.0.0.1 (kernel-chosen port, in rp->port) for one
 * connection, and answer its handshake as the responder. */
void rawpeer_listen(rawpeer *rp, uv_loop_t *loop);
/* Write DATA[0..LEN) (copied). */
void rawpeer_write(rawpeer *rp, const void *data, size_t len);
/* Seal a frame holding MESSAGES[0..COUNT) with rp->tx and return it in a
 * malloc'd buffer (*LEN bytes). */
uint8_t *rawpeer_frame(rawpeer *rp, const uint8_t *const *messages, const size_t *lens,
                       size_t count, size_t *len);
/* Close RP. */
void rawpeer_close(rawpeer *rp);

bool tpred_rawpeer_eof(void *rp);
bool tpred_rawpeer_done(void *rp);
bool tpred_rawpeer_connected(void *rp);

#endif /* EHR_P2P_TEST_UTIL_H */
