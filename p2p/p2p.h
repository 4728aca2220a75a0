/*
 * p2p.h - authenticated, encrypted, bounded message links between the member
 * nodes of one chain, on a libuv loop that the caller owns.
 *
 * One p2p object per node. Given the node's signing key, the chain id and the
 * current member set, it listens, dials the members, runs the handshake
 * (ephemeral X25519, both sides sign the transcript with their node keys),
 * refuses anyone who is not a member, and then carries messages over
 * XChaCha20-Poly1305 frames with per-direction counters. It reconnects with
 * back-off, sends keep-alives, detects dead peers and keeps one bounded write
 * queue per link. p2p/README.md has the threat model, the handshake state
 * machine, the frame format and the limits.
 *
 * Not here: what the messages mean (node/ encodes ehr.v1.PeerMessage into the
 * bytes it sends), retransmission (a message accepted by p2p_send may still be
 * lost if the link fails; consensus copes), host name resolution (member
 * addresses are IP literals).
 *
 * Threading: everything runs on the caller's loop thread; no function may be
 * called from another thread. No global state: several p2p objects may share
 * one loop or live on different loops. ehr_crypto_init() must have been called
 * once before p2p_create, and SIGPIPE must not be at its default disposition
 * (ignore it: a peer that closes while we write would otherwise kill the
 * process; p2p_create refuses to start if it is).
 */
#ifndef EHR_P2P_H
#define EHR_P2P_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"
#include "ehr_crypto.h"

enum {
    P2P_PROTOCOL_VERSION = 1,
    P2P_KEY_BYTES = EHR_SCHNORR_PUBLIC_BYTES,
    /* Largest message p2p_send accepts and a peer may send. */
    P2P_MESSAGE_BYTES_MAX = 1 << 20,
    /* Largest frame on the wire after the 4-byte length: one maximal message,
     * its field header, and the 16-byte authentication tag. A length above
     * this is refused before anything of that size is allocated. */
    P2P_FRAME_BYTES_MAX = P2P_MESSAGE_BYTES_MAX + 64 + 16,
    /* Largest handshake message (after its 4-byte length). */
    P2P_HANDSHAKE_MESSAGE_BYTES_MAX = 256,
    P2P_CHAIN_ID_BYTES_MAX = 64,
    /* A member's "host.name:port", "IPv4:port" or "[IPv6]:port" (at most 256
     * bytes, as a genesis allows), with its NUL. */
    P2P_ADDRESS_BYTES_MAX = 257,
    /* Members in one set (the node itself included). */
    P2P_MEMBERS_MAX = 256,
    /* Connections accepted but not yet authenticated; more are closed at once. */
    P2P_HANDSHAKES_MAX = 64,
    /* Per-link write queue bound, unless the config says otherwise. */
    P2P_QUEUE_BYTES_DEFAULT = 8 << 20,
    /* The smallest queue bound the config may ask for: two maximal frames. */
    P2P_QUEUE_BYTES_MIN = 2 * (4 + P2P_FRAME_BYTES_MAX),
    /* Largest queue bound the config may ask for. */
    P2P_QUEUE_BYTES_MAX = 256 << 20,
    P2P_HANDSHAKE_TIMEOUT_MS_DEFAULT = 5000,
    P2P_KEEPALIVE_INTERVAL_MS_DEFAULT = 1000,
    P2P_DEAD_AFTER_MS_DEFAULT = 5000,
    P2P_RECONNECT_BASE_MS_DEFAULT = 100,
    P2P_RECONNECT_MAX_MS_DEFAULT = 10000,
    /* Upper bound for every timing setting, so sums and shifts cannot overflow. */
    P2P_TIMING_MS_MAX = 24 * 3600 * 1000,
};

typedef struct p2p p2p;

/* One member of the chain: its node key and where it listens. An empty
 * address means "accept its connections but never dial it". A host name is
 * looked up (getaddrinfo, on libuv's worker pool) before every dial, so a
 * member that moves its node to a new address is found on the next one. */
typedef struct p2p_member {
    uint8_t node_key[P2P_KEY_BYTES];
    char address[P2P_ADDRESS_BYTES_MAX];
} p2p_member;

/*
 * Callbacks, all called on the loop thread. PEER is the peer's node key; it
 * and DATA are valid only during the call. A callback may call any p2p
 * function, including p2p_close (after which no further callback fires but
 * the close callback).
 */
typedef struct p2p_callbacks {
    /* A message arrived. Messages from one peer arrive in the order it sent
     * them, with no gap or duplicate within one link. */
    void (*on_message)(void *user, const uint8_t peer[P2P_KEY_BYTES], const uint8_t *data,
                       size_t len);
    /* A link to PEER is up: p2p_send to it now queues. Both nodes agree on
     * the link before either is told (README.md, L2): one call per link. */
    void (*on_link_up)(void *user, const uint8_t peer[P2P_KEY_BYTES]);
    /* The link to PEER went down for REASON (a negative code). UNSENT_COUNT
     * messages accepted by p2p_send were still queued (not yet confirmed
     * written to the kernel) and are dropped, though the first of them may
     * have reached the peer; earlier messages may or may not have arrived. */
    void (*on_link_down)(void *user, const uint8_t peer[P2P_KEY_BYTES], int reason,
                         uint64_t unsent_count);
    /* p2p_send to PEER returned EHR_EAGAIN earlier and its queue has drained
     * to half its bound: sending may resume. Optional. */
    void (*on_writable)(void *user, const uint8_t peer[P2P_KEY_BYTES]);
} p2p_callbacks;

typedef struct p2p_config {
    /* Borrowed; must outlive the p2p object. */
    const ehr_signing_key *node_key;
    /* Copied; 1..P2P_CHAIN_ID_BYTES_MAX bytes. */
    const char *chain_id;
    /* Zero means the *_DEFAULT value. */
    uint32_t handshake_timeout_ms;
    uint32_t keepalive_interval_ms; /* send a keep-alive after this long without sending */
    uint32_t dead_after_ms;         /* drop a link after this long without receiving */
    uint32_t reconnect_base_ms;     /* first reconnect delay; doubles per failure */
    uint32_t reconnect_max_ms;      /* ceiling of the reconnect delay */
    /* When both nodes of a pair may dial, the one with the higher key waits
     * this long more before each dial, so that both rarely dial at once (a
     * wasted handshake; correctness does not depend on it, README.md L2).
     * Zero means reconnect_base_ms; P2P_DIAL_YIELD_NONE means no wait. */
    uint32_t dial_yield_ms;
    /* Per-link write queue bound in bytes; zero means P2P_QUEUE_BYTES_DEFAULT.
     * Must lie in [P2P_QUEUE_BYTES_MIN, P2P_QUEUE_BYTES_MAX]. */
    size_t queue_bytes_max;
    p2p_callbacks callbacks;
    void *user;
} p2p_config;

#define P2P_DIAL_YIELD_NONE UINT32_MAX

/*
 * Create a p2p object on LOOP (borrowed; must outlive it). It does nothing
 * until p2p_listen / p2p_set_members. Returns 0 and *OUT (freed by p2p_close),
 * or EHR_EINVAL for a bad config (missing key or callback, chain id empty or
 * too long, timing or queue bound out of range) or SIGPIPE not ignored.
 */
int p2p_create(uv_loop_t *loop, const p2p_config *config, p2p **out);

/*
 * Listen for members on ADDRESS ("IP:port"; port 0 lets the kernel choose).
 * Returns 0, EHR_EINVAL for an unparsable address, EHR_EEXIST if already
 * listening, or a libuv error (e.g. UV_EADDRINUSE).
 */
int p2p_listen(p2p *p, const char *address);

/* The port p2p_listen bound, in *PORT. Returns 0, or EHR_ECLOSED if not listening. */
int p2p_listen_port(const p2p *p, uint16_t *port);

/*
 * Replace the member set with MEMBERS[0..COUNT) (copied). Links to members no
 * longer in the set are closed (on_link_down fires, with EHR_EDENIED, before
 * this returns); new members are dialled. The node's own key may be in the
 * set and is skipped. Returns 0, EHR_ETOOBIG if COUNT > P2P_MEMBERS_MAX,
 * EHR_EINVAL for an unparsable address, an address without its NUL, an
 * invalid key or a key listed twice; on error nothing changes.
 */
int p2p_set_members(p2p *p, const p2p_member *members, size_t count);

/*
 * Queue DATA[0..LEN) (copied) for PEER. A return of 0 means only that the
 * message is queued on a live link, behind every message queued before it:
 * it will be written in order unless the link fails first (then on_link_down
 * counts it in UNSENT_COUNT if it was never written). It does not mean
 * delivered. Errors: EHR_ETOOBIG (LEN > P2P_MESSAGE_BYTES_MAX),
 * EHR_ENOTFOUND (PEER is not a member), EHR_ECLOSED (a member without a live
 * link: nothing queued), EHR_EAGAIN (the link's queue is full: nothing
 * queued; on_writable fires when it drains).
 */
int p2p_send(p2p *p, const uint8_t peer[P2P_KEY_BYTES], const uint8_t *data, size_t len);

/* What p2p_link_info reports about one member's link. */
typedef struct p2p_link_info {
    bool up;
    bool initiator;         /* this node opened the live connection */
    size_t queued_bytes;    /* bytes waiting to be written (queue occupancy) */
    uint64_t messages_sent; /* accepted by p2p_send over this link's life */
    uint64_t messages_received;
    uint32_t connection_count; /* connections to this peer, live or not yet */
} p2p_link_info;

/* Fill *INFO for member PEER. Returns 0 or EHR_ENOTFOUND. */
int p2p_link_info_get(const p2p *p, const uint8_t peer[P2P_KEY_BYTES], p2p_link_info *info);

/*
 * Close everything: links (without on_link_down), the listener, timers. When
 * the last handle has closed, ON_CLOSED(USER) is called (if not NULL) and the
 * object is freed; run the loop until then. No other callback fires after
 * p2p_close returns.
 */
void p2p_close(p2p *p, void (*on_closed)(void *user));

#endif /* EHR_P2P_H */
