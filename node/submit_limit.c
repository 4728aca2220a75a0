/*
 * submit_limit.c - submissions per second per client address: the token
 * buckets SubmitTransaction takes one token from before it reads anything
 * of the request (docs/DESIGN.md, "Clients and the consensus loop"), so a
 * client flooding the node with submissions, valid or not, gets at most
 * limits.submit_rate_per_s of them checked (bursts of limits.submit_burst)
 * and the others a RESOURCE_EXHAUSTED that costs a table lookup; and the
 * count and rate-limited log of the refusals.
 *
 * Not here: the answer the client is given (service.c), the signature check
 * (node.c, on the worker pool). Forwarded submissions reach the leader over
 * the peer links, not from a client, and are not counted again there: the
 * follower that took them from the client counted them.
 *
 * Tokens are counted in thousandths, so RATE tokens a second are RATE
 * thousandths a millisecond and the arithmetic stays in integers.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "node_internal.h"

_Static_assert((NODE_SUBMIT_BUCKETS & (NODE_SUBMIT_BUCKETS - 1)) == 0, "a power of two");
_Static_assert(NODE_SUBMIT_BUCKET_PROBES <= NODE_SUBMIT_BUCKETS, "probes stay in the table");
/* burst × 1000 + elapsed × rate must not overflow (node_config's ranges). */
_Static_assert(NODE_CONFIG_SUBMIT_BURST_MAX <= UINT32_MAX, "burst in thousandths fits");
_Static_assert(NODE_CONFIG_SUBMIT_RATE_PER_S_MAX <= UINT32_MAX, "rate fits");

enum { MILLI = 1000 };

void node__submit_limit_init(struct node__submit_limit *l, uint64_t rate_per_s, uint64_t burst)
{
    EHR_ASSERT(rate_per_s >= 1);
    EHR_ASSERT(burst >= 1);
    memset(l, 0, sizeof *l);
    l->rate_per_s = rate_per_s;
    l->burst = burst;
    /* Not a secret: it only spreads addresses that differ little (a
     * subnet) over the table. */
    l->seed = uv_hrtime() | 1;
}

/* The bucket's tokens (thousandths) at NOW_MS, refilled since it was last
 * touched and capped at the burst. */
static uint64_t bucket_level(const struct node__submit_limit *l,
                             const struct node__submit_bucket *b, uint64_t now_ms)
{
    uint64_t full = l->burst * MILLI;
    uint64_t elapsed = now_ms > b->at_ms ? now_ms - b->at_ms : 0;
    if (elapsed >= full / l->rate_per_s + 1)
        return full; /* refilled whatever it held (and no overflow below) */
    uint64_t level = b->milli_tokens + elapsed * l->rate_per_s;
    return level < full ? level : full;
}

/* The client A counts as: an IPv6 address's /64 (its other bytes zeroed),
 * an IPv4-mapped IPv6 address's IPv4 address, else A itself. */
static struct rpc_peer_address client_key(const struct rpc_peer_address *a)
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    struct rpc_peer_address k = *a;
    if (a->family != AF_INET6)
        return k;
    if (memcmp(a->bytes, v4_mapped, sizeof v4_mapped) == 0) {
        memset(&k, 0, sizeof k);
        k.family = AF_INET;
        memcpy(k.bytes, a->bytes + sizeof v4_mapped, 4);
        return k;
    }
    memset(k.bytes + NODE_SUBMIT_IPV6_PREFIX_BYTES, 0,
           sizeof k.bytes - NODE_SUBMIT_IPV6_PREFIX_BYTES);
    return k;
}

static size_t address_slot(const struct node__submit_limit *l, const struct rpc_peer_address *a)
{
    uint64_t h = 14695981039346656037ull ^ l->seed; /* FNV-1a */
    h = (h ^ a->family) * 1099511628211ull;
    for (size_t i = 0; i < sizeof a->bytes; i++)
        h = (h ^ a->bytes[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32)) & (NODE_SUBMIT_BUCKETS - 1);
}

/* A's bucket: its own, else a new one (full) in an unused slot, a full
 * one's, or the fullest of its probes'. Never NULL. */
static struct node__submit_bucket *bucket_find(struct node__submit_limit *l,
                                               const struct rpc_peer_address *a, uint64_t now_ms)
{
    size_t start = address_slot(l, a);
    struct node__submit_bucket *reuse = NULL;
    uint64_t reuse_level = 0;
    for (size_t p = 0; p < NODE_SUBMIT_BUCKET_PROBES; p++) {
        struct node__submit_bucket *b = &l->slots[(start + p) & (NODE_SUBMIT_BUCKETS - 1)];
        if (b->used && memcmp(&b->address, a, sizeof *a) == 0)
            return b;
        uint64_t level = b->used ? bucket_level(l, b, now_ms) : UINT64_MAX;
        if (reuse == NULL || level > reuse_level) {
            reuse = b;
            reuse_level = level;
        }
    }
    EHR_ASSERT(reuse != NULL);
    reuse->address = *a;
    reuse->used = true;
    reuse->milli_tokens = l->burst * MILLI;
    reuse->at_ms = now_ms;
    return reuse;
}

static void refused_log(const struct node__submit_limit *l, uint64_t count)
{
    char host[INET6_ADDRSTRLEN] = "unknown";
    if (l->last_refused.family == AF_INET || l->last_refused.family == AF_INET6)
        inet_ntop(l->last_refused.family == AF_INET ? AF_INET : AF_INET6, l->last_refused.bytes,
                  host, sizeof host);
    ehr_log(EHR_LOG_WARN, "submissions refused",
            "limit=submit_rate_per_s count=%" PRIu64 " rate_per_s=%" PRIu64 " burst=%" PRIu64
            " last_address=%s retry_after_ms=%" PRIu64,
            count, l->rate_per_s, l->burst, host, l->last_wait_ms);
}

uint64_t node__submit_limit_take(struct node__submit_limit *l, const struct rpc_peer_address *a,
                                 uint64_t now_ms)
{
    EHR_ASSERT(l->rate_per_s >= 1); /* initialised */
    struct rpc_peer_address key = client_key(a);
    struct node__submit_bucket *b = bucket_find(l, &key, now_ms);
    uint64_t level = bucket_level(l, b, now_ms);
    b->at_ms = now_ms > b->at_ms ? now_ms : b->at_ms;
    if (level >= MILLI) {
        b->milli_tokens = level - MILLI;
        return 0;
    }
    b->milli_tokens = level;
    uint64_t wait_ms = (MILLI - level + l->rate_per_s - 1) / l->rate_per_s;
    EHR_ASSERT(wait_ms >= 1);
    l->refused_count++;
    l->last_refused = *a;
    l->last_wait_ms = wait_ms;
    uint64_t count;
    if (ehr_log_limit_hit(&l->log, now_ms, &count))
        refused_log(l, count);
    return wait_ms;
}

void node__submit_limit_sweep(struct node__submit_limit *l, uint64_t now_ms)
{
    uint64_t count;
    if (ehr_log_limit_flush(&l->log, now_ms, &count))
        refused_log(l, count);
}
