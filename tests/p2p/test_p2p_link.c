/*
 * Tests of p2p links over loopback TCP, several nodes on one libuv loop:
 * message exchange with per-link order, back-pressure, member set changes,
 * the tie-break when both nodes dial, keep-alives and dead peers, and every
 * refusal (a non-member, another chain, a forged signature, a replayed
 * handshake, a tampered, replayed or oversized frame, a silent peer, garbage,
 * too many handshakes), each checked by its log line and by the absence of a
 * link. Every wait is bounded by a deadline that fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "p2p_test_util.h"

static const char CHAIN[] = "test-chain";

enum { WAIT_MS = 10000 };

typedef struct world {
    uv_loop_t loop;
    tnode nodes[TNODE_PEERS_MAX];
    size_t count;
} world;

static int world_setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    assert_int_equal(uv_loop_init(&w->loop), 0);
    tlog_capture();
    *state = w;
    return 0;
}

static int world_teardown(void **state)
{
    world *w = *state;
    for (size_t i = 0; i < TNODE_PEERS_MAX; i++)
        tnode_stop(&w->nodes[i]);
    trun_for(&w->loop, 10);
    int rc = uv_loop_close(&w->loop);
    free(w);
    ehr_log_set_sink(NULL, NULL);
    /* Every handle was closed: nothing leaked on the loop. */
    assert_int_equal(rc, 0);
    return 0;
}

/* Start N nodes with the default test config, full mesh membership. */
static void world_start(world *w, size_t n)
{
    w->count = n;
    for (size_t i = 0; i < n; i++) {
        p2p_config config;
        tnode_config(&w->nodes[i], &config, CHAIN);
        tnode_start(&w->nodes[i], &w->loop, NULL, &config);
    }
    tnode *all[TNODE_PEERS_MAX];
    for (size_t i = 0; i < n; i++)
        all[i] = &w->nodes[i];
    for (size_t i = 0; i < n; i++)
        tnode_set_members(&w->nodes[i], all, n);
}

static bool pred_all_links_up(void *ctx)
{
    world *w = ctx;
    for (size_t i = 0; i < w->count; i++)
        for (size_t j = 0; j < w->count; j++)
            if (i != j && !tnode_link_up(&w->nodes[i], &w->nodes[j]))
                return false;
    return true;
}

typedef struct expect_count {
    world *w;
    uint64_t per_node;
} expect_count;

static bool pred_received_at_least(void *ctx)
{
    expect_count *e = ctx;
    for (size_t i = 0; i < e->w->count; i++) {
        if (e->w->nodes[i].order_broken)
            return true;
        if (e->w->nodes[i].received_count < e->per_node)
            return false;
    }
    return true;
}

static void raw_peer_for(rawpeer *rp, const ehr_signing_key *key, const tnode *target);
static bool pred_received_one(void *ctx);
static bool pred_a_down(void *ctx);
static void start_single_node(world *w);

/* ---- exchange and ordering ---- */

/* Each node sends COUNT messages to every other; sizes vary, one is maximal. */
static void send_rounds(world *w, uint64_t count)
{
    static uint8_t buf[P2P_MESSAGE_BYTES_MAX];
    uint64_t seq[TNODE_PEERS_MAX][TNODE_PEERS_MAX] = {{0}};
    for (uint64_t k = 0; k < count; k++) {
        for (size_t i = 0; i < w->count; i++) {
            for (size_t j = 0; j < w->count; j++) {
                if (i == j)
                    continue;
                /* Every sender numbers its messages per receiver from 0. */
                size_t len = k == count / 2 ? P2P_MESSAGE_BYTES_MAX : 12 + (k * 53 + i) % 3000;
                tmsg_make(buf, len, (uint32_t)i, seq[i][j]++);
                int rc = p2p_send(w->nodes[i].p, w->nodes[j].key.public_key, buf, len);
                assert_int_equal(rc, 0);
            }
        }
    }
}

static void test_two_nodes_exchange_messages_in_order_both_ways(void **state)
{
    world *w = *state;
    world_start(w, 2);
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    assert_int_equal(w->nodes[0].link_up_count, 1);
    assert_int_equal(w->nodes[1].link_up_count, 1);
    send_rounds(w, 500);
    expect_count e = {w, 500};
    trun_until(&w->loop, pred_received_at_least, &e, WAIT_MS);
    for (size_t i = 0; i < 2; i++) {
        assert_false(w->nodes[i].order_broken);
        assert_int_equal(w->nodes[i].received_count, 500);
        assert_int_equal(w->nodes[i].next_seq[1 - i], 500);
    }
    p2p_link_info info;
    assert_int_equal(p2p_link_info_get(w->nodes[0].p, w->nodes[1].key.public_key, &info), 0);
    assert_true(info.up);
    assert_int_equal(info.messages_sent, 500);
    assert_int_equal(info.messages_received, 500);
    assert_int_equal(info.connection_count, 1);
    assert_int_equal(w->nodes[0].link_down_count, 0);
}

static void test_three_nodes_exchange_messages_in_order_on_every_link(void **state)
{
    world *w = *state;
    world_start(w, 3);
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    send_rounds(w, 300);
    expect_count e = {w, 600};
    trun_until(&w->loop, pred_received_at_least, &e, WAIT_MS);
    for (size_t i = 0; i < 3; i++) {
        assert_false(w->nodes[i].order_broken);
        assert_int_equal(w->nodes[i].received_count, 600);
        for (size_t j = 0; j < 3; j++)
            assert_int_equal(w->nodes[i].next_seq[j], i == j ? 0 : 300);
    }
}

static void test_send_reports_missing_link_member_and_size(void **state)
{
    world *w = *state;
    w->count = 2;
    for (size_t i = 0; i < 2; i++) {
        p2p_config config;
        tnode_config(&w->nodes[i], &config, CHAIN);
        tnode_start(&w->nodes[i], &w->loop, NULL, &config);
    }
    tnode *a = &w->nodes[0], *b = &w->nodes[1];
    uint8_t msg[16] = {0};
    /* Not a member yet. */
    assert_int_equal(p2p_send(a->p, b->key.public_key, msg, sizeof msg), EHR_ENOTFOUND);
    /* A member, but B does not know A: no link can come up. */
    p2p_member m = tnode_member(b);
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
    assert_int_equal(p2p_send(a->p, b->key.public_key, msg, sizeof msg), EHR_ECLOSED);
    static uint8_t big[P2P_MESSAGE_BYTES_MAX + 1];
    assert_int_equal(p2p_send(a->p, b->key.public_key, big, sizeof big), EHR_ETOOBIG);
    /* Once the link is up, the maximal message is accepted. */
    tnode *both[2] = {a, b};
    tnode_set_members(b, both, 2);
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    assert_int_equal(p2p_send(a->p, b->key.public_key, big, P2P_MESSAGE_BYTES_MAX), 0);
    assert_int_equal(p2p_send(a->p, b->key.public_key, big, sizeof big), EHR_ETOOBIG);
}

static void test_set_members_validates_before_changing_anything(void **state)
{
    world *w = *state;
    world_start(w, 2);
    tnode *a = &w->nodes[0], *b = &w->nodes[1];
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    p2p_member bad[2] = {tnode_member(b), tnode_member(b)};
    assert_int_equal(p2p_set_members(a->p, bad, 2), EHR_EINVAL); /* a key twice */
    snprintf(bad[1].address, sizeof bad[1].address, "127.0.0.1:99999");
    ehr_signing_key other;
    assert_int_equal(ehr_signing_key_generate(&other), 0);
    memcpy(bad[1].node_key, other.public_key, P2P_KEY_BYTES);
    assert_int_equal(p2p_set_members(a->p, bad, 2), EHR_EINVAL); /* port out of range */
    snprintf(bad[1].address, sizeof bad[1].address, "host_name.example:80");
    assert_int_equal(p2p_set_members(a->p, bad, 2), EHR_EINVAL); /* '_' is not in a host name */
    snprintf(bad[1].address, sizeof bad[1].address, "node.example:0");
    assert_int_equal(p2p_set_members(a->p, bad, 2), EHR_EINVAL); /* a name needs a real port */
    memset(bad[1].address, 'x', sizeof bad[1].address);
    assert_int_equal(p2p_set_members(a->p, bad, 2), EHR_EINVAL); /* no NUL */
    /* The longest address: P2P_ADDRESS_BYTES_MAX - 1 bytes and its NUL. */
    memset(bad[1].address, 'a', sizeof bad[1].address);
    memcpy(bad[1].address + sizeof bad[1].address - 6, ":7000", 6);
    assert_int_equal(strlen(bad[1].address), P2P_ADDRESS_BYTES_MAX - 1);
    static p2p_member many[P2P_MEMBERS_MAX + 1];
    assert_int_equal(p2p_set_members(a->p, many, P2P_MEMBERS_MAX + 1), EHR_ETOOBIG);
    /* Nothing changed: the link is still up. */
    trun_for(&w->loop, 50);
    assert_true(tnode_link_up(a, b));
    assert_int_equal(a->link_down_count, 0);
    assert_int_equal(p2p_set_members(a->p, bad, 2), 0); /* the longest address is taken */
    /* A key that is not a curve point. */
    snprintf(bad[1].address, sizeof bad[1].address, "[::1]:7000");
    memset(bad[1].node_key, 0xff, P2P_KEY_BYTES);
    assert_int_equal(p2p_set_members(a->p, bad, 2), EHR_EINVAL);
    /* IPv6 literals parse, and an empty address means "never dial". */
    memcpy(bad[1].node_key, other.public_key, P2P_KEY_BYTES);
    assert_int_equal(p2p_set_members(a->p, bad, 2), 0);
    bad[1].address[0] = '\0';
    assert_int_equal(p2p_set_members(a->p, bad, 2), 0);
    assert_true(tnode_link_up(a, b));
}

/* Member addresses may be host names: looked up before each dial. */
static void test_member_address_may_be_a_host_name(void **state)
{
    world *w = *state;
    world_start(w, 2);
    tnode *a = &w->nodes[0], *b = &w->nodes[1];
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    /* A names B as localhost:PORT: once B's link is cut, A finds B again. */
    p2p_member members[2] = {tnode_member(a), tnode_member(b)};
    snprintf(members[1].address, sizeof members[1].address, "localhost:%u", (unsigned)b->port);
    assert_int_equal(p2p_set_members(a->p, members, 2), 0);
    tnode *only_b[1] = {b};
    tnode_set_members(b, only_b, 1); /* B drops A: the link goes down on both sides */
    trun_until(&w->loop, pred_a_down, w, WAIT_MS);
    tnode *both[2] = {a, b};
    tnode_set_members(b, both, 2);
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    assert_int_equal(a->link_up_count, 2);
    uint8_t msg[16] = {0};
    assert_int_equal(p2p_send(a->p, b->key.public_key, msg, sizeof msg), 0);
}

static void test_unresolvable_host_name_is_retried_and_close_waits_for_lookups(void **state)
{
    world *w = *state;
    start_single_node(w);
    tnode *a = &w->nodes[0];
    ehr_signing_key k;
    assert_int_equal(ehr_signing_key_generate(&k), 0);
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, k.public_key, P2P_KEY_BYTES);
    snprintf(m.address, sizeof m.address,
             "no-such-host.invalid:7000"); /* RFC 6761: never resolves */
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
    trun_for(&w->loop, 300);
    assert_true(tlog_contains("cannot resolve"));
    assert_int_equal(a->link_up_count, 0);
    uint8_t msg[8] = {0};
    assert_int_equal(p2p_send(a->p, k.public_key, msg, sizeof msg), EHR_ECLOSED);
    /* Closing while a lookup may be under way: the teardown's loop close checks
     * that nothing is left behind. */
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
}

/* ---- back-pressure ---- */

typedef struct pressure {
    world *w;
    uint64_t sent;
    uint64_t target;
    int eagain_count;
    size_t queued_max_seen;
} pressure;

enum { PRESSURE_MESSAGE_BYTES = 64 << 10 };

/* Send until the target or EHR_EAGAIN. */
static void pressure_pump(pressure *pr)
{
    static uint8_t buf[PRESSURE_MESSAGE_BYTES];
    tnode *a = &pr->w->nodes[0], *b = &pr->w->nodes[1];
    while (pr->sent < pr->target) {
        tmsg_make(buf, sizeof buf, 0, pr->sent);
        int rc = p2p_send(a->p, b->key.public_key, buf, sizeof buf);
        p2p_link_info info;
        assert_int_equal(p2p_link_info_get(a->p, b->key.public_key, &info), 0);
        if (info.queued_bytes > pr->queued_max_seen)
            pr->queued_max_seen = info.queued_bytes;
        if (rc == EHR_EAGAIN) {
            pr->eagain_count++;
            return;
        }
        assert_int_equal(rc, 0);
        pr->sent++;
    }
}

static bool pred_pressure_done(void *ctx)
{
    pressure *pr = ctx;
    static int writable_seen;
    tnode *a = &pr->w->nodes[0];
    if (a->writable_count != writable_seen) {
        writable_seen = a->writable_count;
        pressure_pump(pr);
    }
    return pr->w->nodes[1].received_count == pr->target || pr->w->nodes[1].order_broken;
}

static void test_full_queue_says_eagain_and_writable_resumes(void **state)
{
    world *w = *state;
    w->count = 2;
    for (size_t i = 0; i < 2; i++) {
        p2p_config config;
        tnode_config(&w->nodes[i], &config, CHAIN);
        config.queue_bytes_max = P2P_QUEUE_BYTES_MIN;
        tnode_start(&w->nodes[i], &w->loop, NULL, &config);
    }
    tnode *all[2] = {&w->nodes[0], &w->nodes[1]};
    tnode_set_members(&w->nodes[0], all, 2);
    tnode_set_members(&w->nodes[1], all, 2);
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    pressure pr = {.w = w, .target = 400};
    pressure_pump(&pr);
    /* Nothing is written within one callback, so the bound is hit at once. */
    assert_int_equal(pr.eagain_count, 1);
    assert_true(pr.sent >= 2 && pr.sent * PRESSURE_MESSAGE_BYTES <= P2P_QUEUE_BYTES_MIN);
    /* One loop turn starts the write; bytes in flight still count (L4). */
    uv_run(&w->loop, UV_RUN_NOWAIT);
    pressure_pump(&pr);
    assert_int_equal(pr.eagain_count, 2);
    assert_true(pr.queued_max_seen <= P2P_QUEUE_BYTES_MIN);
    trun_until(&w->loop, pred_pressure_done, &pr, WAIT_MS);
    assert_false(w->nodes[1].order_broken);
    assert_int_equal(w->nodes[1].received_count, 400);
    assert_true(w->nodes[0].writable_count >= 1);
    assert_true(pr.eagain_count >= 3);
    assert_true(pr.queued_max_seen <= P2P_QUEUE_BYTES_MIN);
    assert_int_equal(w->nodes[0].link_down_count, 0);
}

/* ---- member set changes ---- */

static bool pred_a_down(void *ctx)
{
    world *w = ctx;
    return w->nodes[0].link_down_count >= 1 && w->nodes[1].link_down_count >= 1;
}

static void test_removing_a_member_closes_its_link_and_adding_reopens(void **state)
{
    world *w = *state;
    world_start(w, 2);
    tnode *a = &w->nodes[0], *b = &w->nodes[1];
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    tlog_clear();
    /* A drops B: A's link goes down at once, with EHR_EDENIED. */
    tnode *only_a[1] = {a};
    tnode_set_members(a, only_a, 1);
    assert_int_equal(a->link_down_count, 1);
    assert_int_equal(a->last_down_reason, EHR_EDENIED);
    trun_until(&w->loop, pred_a_down, w, WAIT_MS);
    uint8_t msg[16] = {0};
    assert_int_equal(p2p_send(a->p, b->key.public_key, msg, sizeof msg), EHR_ENOTFOUND);
    /* B keeps dialling A and A keeps refusing it. */
    trun_for(&w->loop, 300);
    assert_false(tnode_link_up(b, a));
    assert_true(tlog_contains("reason=\"key not in member set\""));
    assert_int_equal(a->link_up_count, 1);
    /* A takes B back: the link returns without anything else done. */
    tnode *both[2] = {a, b};
    tnode_set_members(a, both, 2);
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    /* Exactly once more, even if both sides redial at the same moment: the
     * tie-break is settled before the link is reported up (L2). */
    assert_int_equal(a->link_up_count, 2);
    assert_true(tnode_link_up(a, b));
    assert_int_equal(p2p_send(a->p, b->key.public_key, msg, sizeof msg), 0);
}

/* ---- tie-break ---- */

static bool pred_single_connection_each(void *ctx)
{
    world *w = ctx;
    tnode *a = &w->nodes[0], *b = &w->nodes[1];
    p2p_link_info ia, ib;
    if (p2p_link_info_get(a->p, b->key.public_key, &ia) != 0 ||
        p2p_link_info_get(b->p, a->key.public_key, &ib) != 0)
        return false;
    return ia.up && ib.up && ia.connection_count == 1 && ib.connection_count == 1;
}

enum { TIE_ROUNDS = 20, TIE_MESSAGES = 20 };

/* At link up, send TIE_MESSAGES numbered messages to the peer at once: the
 * tie-break must not lose any of them (L2). hook_ctx holds the sender index. */
static void tie_send_on_link_up(tnode *n, const uint8_t *peer)
{
    uint8_t buf[100];
    uint32_t sender = (uint32_t)(uintptr_t)n->hook_ctx;
    for (uint64_t k = 0; k < TIE_MESSAGES; k++) {
        tmsg_make(buf, sizeof buf, sender, k);
        assert_int_equal(p2p_send(n->p, peer, buf, sizeof buf), 0);
    }
}

static bool pred_tie_settled(void *ctx)
{
    world *w = ctx;
    return pred_single_connection_each(w) && w->nodes[0].received_count >= TIE_MESSAGES &&
           w->nodes[1].received_count >= TIE_MESSAGES;
}

static void test_both_nodes_dialling_agree_before_link_up(void **state)
{
    /* Both nodes dial at the same instant, TIE_ROUNDS times with fresh keys.
     * Each side must see exactly one link up and no link down (the survivor
     * is agreed before either side is told), both must hold the same
     * connection, and what each sent from its on_link_up must all arrive. */
    world *w = *state;
    w->count = 2;
    for (int round = 0; round < TIE_ROUNDS; round++) {
        for (size_t i = 0; i < 2; i++) {
            tnode_stop(&w->nodes[i]);
            memset(&w->nodes[i], 0, sizeof w->nodes[i]);
            p2p_config config;
            tnode_config(&w->nodes[i], &config, CHAIN);
            config.dial_yield_ms = P2P_DIAL_YIELD_NONE; /* both dial at once */
            tnode_start(&w->nodes[i], &w->loop, NULL, &config);
            w->nodes[i].on_link_up_hook = tie_send_on_link_up;
            w->nodes[i].hook_ctx = (void *)(uintptr_t)i;
        }
        tnode *a = &w->nodes[0], *b = &w->nodes[1];
        tnode *all[2] = {a, b};
        tnode_set_members(a, all, 2);
        tnode_set_members(b, all, 2);
        trun_until(&w->loop, pred_tie_settled, w, WAIT_MS);
        trun_for(&w->loop, 50); /* let any late duplicate be refused */
        assert_true(pred_single_connection_each(w));
        for (size_t i = 0; i < 2; i++) {
            assert_int_equal(w->nodes[i].link_up_count, 1);
            assert_int_equal(w->nodes[i].link_down_count, 0);
            assert_int_equal(w->nodes[i].received_count, TIE_MESSAGES);
            assert_false(w->nodes[i].order_broken);
        }
        /* One connection: opened by one side, accepted by the other. */
        p2p_link_info ia, ib;
        assert_int_equal(p2p_link_info_get(a->p, b->key.public_key, &ia), 0);
        assert_int_equal(p2p_link_info_get(b->p, a->key.public_key, &ib), 0);
        assert_int_not_equal(ia.initiator, ib.initiator);
    }
}

/* Generate KEY so that it sorts below (LOWER) or above the key of N. */
static void key_ordered(ehr_signing_key *key, const tnode *n, bool lower)
{
    do
        assert_int_equal(ehr_signing_key_generate(key), 0);
    while ((memcmp(key->public_key, n->key.public_key, P2P_KEY_BYTES) < 0) != lower);
}

static void start_single_node(world *w)
{
    p2p_config config;
    tnode_config(&w->nodes[0], &config, CHAIN);
    tnode_start(&w->nodes[0], &w->loop, NULL, &config);
    w->count = 1;
}

static bool pred_first_link_up(void *ctx)
{
    return ((tnode *)ctx)->link_up_count >= 1;
}

static void test_second_connection_against_live_link_is_closed(void **state)
{
    /* A dials R (a raw peer that listens); A's key is the lower, so A
     * decides and its connection is the link. R then dials A as well: A must
     * keep its link, close R's connection and probe the link (L2). */
    world *w = *state;
    start_single_node(w);
    tnode *a = &w->nodes[0];
    ehr_signing_key r_key;
    key_ordered(&r_key, a, false);
    rawpeer listener;
    memset(&listener, 0, sizeof listener);
    listener.handshake = true;
    listener.key = &r_key;
    listener.chain_id = CHAIN;
    rawpeer_listen(&listener, &w->loop);
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, r_key.public_key, P2P_KEY_BYTES);
    snprintf(m.address, sizeof m.address, "127.0.0.1:%u", (unsigned)listener.port);
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
    trun_until(&w->loop, pred_first_link_up, a, WAIT_MS);
    p2p_link_info info;
    assert_int_equal(p2p_link_info_get(a->p, r_key.public_key, &info), 0);
    assert_true(info.initiator);

    rawpeer dup;
    raw_peer_for(&dup, &r_key, a);
    rawpeer_connect(&dup, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_eof, &dup, WAIT_MS);
    assert_true(dup.done); /* the handshake itself succeeded */
    assert_true(tlog_contains("duplicate connection; the live link stays"));
    assert_int_equal(a->link_up_count, 1);
    assert_int_equal(a->link_down_count, 0);
    assert_int_equal(p2p_link_info_get(a->p, r_key.public_key, &info), 0);
    assert_true(info.up && info.initiator);
    assert_false(listener.eof);
    rawpeer_close(&dup);
    rawpeer_close(&listener);
}

static void test_newer_connection_replaces_stale_link(void **state)
{
    /* R (lower key, so R decides) connects and confirms, then connects
     * again and confirms as a restarted node would while A still holds the
     * first connection: the confirmed new one replaces it (L2). */
    world *w = *state;
    start_single_node(w);
    tnode *a = &w->nodes[0];
    ehr_signing_key r_key;
    key_ordered(&r_key, a, true);
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, r_key.public_key, P2P_KEY_BYTES);
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
    rawpeer first, second;
    raw_peer_for(&first, &r_key, a);
    rawpeer_connect(&first, &w->loop, a->port);
    trun_until(&w->loop, pred_first_link_up, a, WAIT_MS);
    raw_peer_for(&second, &r_key, a);
    rawpeer_connect(&second, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_eof, &first, WAIT_MS);
    assert_true(second.done);
    assert_false(second.eof);
    assert_int_equal(a->link_up_count, 2);
    assert_int_equal(a->link_down_count, 1);
    assert_int_equal(a->last_down_reason, EHR_EEXIST);
    assert_true(tlog_contains("replaced by the connection the peer confirmed"));
    /* Frames on the new connection arrive. */
    const uint8_t *one[1] = {(const uint8_t *)"fresh"};
    size_t one_len[1] = {5}, len = 0;
    uint8_t *frame = rawpeer_frame(&second, one, one_len, 1, &len);
    rawpeer_write(&second, frame, len);
    trun_until(&w->loop, pred_received_one, a, WAIT_MS);
    assert_memory_equal(a->last_message, "fresh", 5);
    free(frame);
    rawpeer_close(&first);
    rawpeer_close(&second);
}

/* ---- keep-alives and dead peers ---- */

static void test_idle_link_stays_up_on_keepalives(void **state)
{
    world *w = *state;
    w->count = 2;
    for (size_t i = 0; i < 2; i++) {
        p2p_config config;
        tnode_config(&w->nodes[i], &config, CHAIN);
        config.keepalive_interval_ms = 40;
        config.dead_after_ms = 300;
        tnode_start(&w->nodes[i], &w->loop, NULL, &config);
    }
    tnode *all[2] = {&w->nodes[0], &w->nodes[1]};
    tnode_set_members(&w->nodes[0], all, 2);
    tnode_set_members(&w->nodes[1], all, 2);
    trun_until(&w->loop, pred_all_links_up, w, WAIT_MS);
    trun_for(&w->loop, 1200); /* four times the dead-peer timeout, with no traffic */
    assert_int_equal(w->nodes[0].link_down_count, 0);
    assert_int_equal(w->nodes[1].link_down_count, 0);
    /* Keep-alives are not messages. */
    assert_int_equal(w->nodes[0].received_count, 0);
    assert_int_equal(w->nodes[1].received_count, 0);
}

/* A node with short timeouts whose only member is KEY (a raw peer). */
static void start_node_for_raw_peer(world *w, const ehr_signing_key *raw_key,
                                    uint32_t handshake_timeout_ms, uint32_t dead_after_ms)
{
    p2p_config config;
    tnode *a = &w->nodes[0];
    tnode_config(a, &config, CHAIN);
    if (handshake_timeout_ms != 0)
        config.handshake_timeout_ms = handshake_timeout_ms;
    if (dead_after_ms != 0) {
        config.dead_after_ms = dead_after_ms;
        config.keepalive_interval_ms = dead_after_ms / 4;
    }
    tnode_start(a, &w->loop, NULL, &config);
    w->count = 1;
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, raw_key->public_key, P2P_KEY_BYTES); /* no address: never dialled */
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
}

static void raw_peer_for(rawpeer *rp, const ehr_signing_key *key, const tnode *target)
{
    memset(rp, 0, sizeof *rp);
    rp->handshake = true;
    rp->key = key;
    rp->chain_id = CHAIN;
    rp->expected_peer = target->key.public_key;
}

static bool pred_first_link_down(void *ctx)
{
    return ((tnode *)ctx)->link_down_count >= 1;
}

static bool pred_auth_held(void *ctx)
{
    return ((rawpeer *)ctx)->held_len > 0;
}

static void test_silent_member_is_dropped_as_dead(void **state)
{
    world *w = *state;
    ehr_signing_key raw_key;
    assert_int_equal(ehr_signing_key_generate(&raw_key), 0);
    start_node_for_raw_peer(w, &raw_key, 0, 300);
    tnode *a = &w->nodes[0];
    rawpeer rp;
    raw_peer_for(&rp, &raw_key, a);
    rawpeer_connect(&rp, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_done, &rp, WAIT_MS);
    /* The raw peer completes the handshake, then never sends a frame. */
    trun_until(&w->loop, pred_first_link_down, a, WAIT_MS);
    assert_int_equal(a->link_up_count, 1);
    assert_int_equal(a->last_down_reason, EHR_ETIMEDOUT);
    assert_true(tlog_contains("reason=\"peer silent\""));
    trun_until(&w->loop, tpred_rawpeer_eof, &rp, WAIT_MS);
    rawpeer_close(&rp);
}

/* ---- refusals ---- */

/* A raw peer and a node; run until the node closes the connection. Returns
 * after checking that no link ever came up. */
static void expect_refused(world *w, rawpeer *rp, const char *reason)
{
    tnode *a = &w->nodes[0];
    trun_until(&w->loop, tpred_rawpeer_eof, rp, WAIT_MS);
    assert_int_equal(a->link_up_count, 0);
    assert_int_equal(a->received_count, 0);
    char needle[128];
    snprintf(needle, sizeof needle, "reason=\"%s\"", reason);
    if (!tlog_contains(needle)) {
        tlog_dump();
        fail_msg("no log line with %s", needle);
    }
}

static void test_refuses_key_outside_member_set(void **state)
{
    world *w = *state;
    ehr_signing_key member_key, outsider_key;
    assert_int_equal(ehr_signing_key_generate(&member_key), 0);
    assert_int_equal(ehr_signing_key_generate(&outsider_key), 0);
    start_node_for_raw_peer(w, &member_key, 0, 0);
    rawpeer rp;
    raw_peer_for(&rp, &outsider_key, &w->nodes[0]);
    rawpeer_connect(&rp, &w->loop, w->nodes[0].port);
    expect_refused(w, &rp, "key not in member set");
    assert_false(rp.done);
    rawpeer_close(&rp);
}

static void test_refuses_a_real_node_outside_member_set(void **state)
{
    /* The same through a second p2p node that believes it belongs. */
    world *w = *state;
    w->count = 2;
    for (size_t i = 0; i < 2; i++) {
        p2p_config config;
        tnode_config(&w->nodes[i], &config, CHAIN);
        tnode_start(&w->nodes[i], &w->loop, NULL, &config);
    }
    tnode *a = &w->nodes[0], *c = &w->nodes[1];
    tnode *only_a[1] = {a};
    tnode *both[2] = {a, c};
    tnode_set_members(a, only_a, 1);
    tnode_set_members(c, both, 2);
    trun_for(&w->loop, 400);
    assert_int_equal(a->link_up_count, 0);
    assert_int_equal(c->link_up_count, 0);
    assert_true(tlog_contains("reason=\"key not in member set\""));
}

static void test_refuses_wrong_chain_id(void **state)
{
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 0, 0);
    rawpeer rp;
    raw_peer_for(&rp, &key, &w->nodes[0]);
    rp.chain_id = "another-chain";
    rawpeer_connect(&rp, &w->loop, w->nodes[0].port);
    expect_refused(w, &rp, "wrong chain id");
    rawpeer_close(&rp);
}

static void test_refuses_bad_transcript_signature(void **state)
{
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 0, 0);
    rawpeer rp;
    raw_peer_for(&rp, &key, &w->nodes[0]);
    rp.corrupt_auth = true;
    rawpeer_connect(&rp, &w->loop, w->nodes[0].port);
    expect_refused(w, &rp, "bad transcript signature");
    rawpeer_close(&rp);
}

static void test_refuses_replayed_handshake(void **state)
{
    world *w = *state;
    ehr_signing_key raw_key;
    assert_int_equal(ehr_signing_key_generate(&raw_key), 0);
    start_node_for_raw_peer(w, &raw_key, 0, 0);
    tnode *a = &w->nodes[0];
    ehr_signing_key node_key = a->key;
    /* Record a real, successful handshake. */
    rawpeer first;
    raw_peer_for(&first, &raw_key, a);
    rawpeer_connect(&first, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_done, &first, WAIT_MS);
    uint8_t recorded[RAWPEER_SENT_BYTES_MAX];
    size_t recorded_len = first.sent_len;
    memcpy(recorded, first.sent, recorded_len);
    rawpeer_close(&first);
    /* A fresh node with the same identity gets those bytes again, blindly. */
    tnode_stop(a);
    memset(a, 0, sizeof *a);
    p2p_config config;
    tnode_config(a, &config, CHAIN);
    tnode_start(a, &w->loop, &node_key, &config);
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, raw_key.public_key, P2P_KEY_BYTES);
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
    tlog_clear();
    rawpeer replay;
    memset(&replay, 0, sizeof replay);
    rawpeer_connect(&replay, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_connected, &replay, WAIT_MS);
    rawpeer_write(&replay, recorded, recorded_len);
    expect_refused(w, &replay, "bad transcript signature");
    rawpeer_close(&replay);
}

/* After the handshake, send FRAMES (concatenated) and expect REASON. */
typedef struct frame_script {
    uint8_t *bytes;
    size_t len;
    bool reset_alloc_stats;
} frame_script;

static void script_on_done(rawpeer *rp)
{
    frame_script *s = rp->ctx;
    if (s->reset_alloc_stats)
        ehr_alloc_stats_reset();
    rawpeer_write(rp, s->bytes, s->len);
}

static bool pred_received_one(void *ctx)
{
    return ((tnode *)ctx)->received_count >= 1;
}

static void test_refuses_frame_with_flipped_bit(void **state)
{
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 0, 0);
    tnode *a = &w->nodes[0];
    rawpeer rp;
    raw_peer_for(&rp, &key, a);
    rawpeer_connect(&rp, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_done, &rp, WAIT_MS);
    /* A good frame, then one with a bit flipped in its ciphertext. */
    const uint8_t *one[1] = {(const uint8_t *)"first"};
    const uint8_t *two[1] = {(const uint8_t *)"second"};
    size_t one_len[1] = {5}, two_len[1] = {6};
    size_t good_len = 0, bad_len = 0;
    uint8_t *good = rawpeer_frame(&rp, one, one_len, 1, &good_len);
    uint8_t *bad = rawpeer_frame(&rp, two, two_len, 1, &bad_len);
    bad[P2P__LENGTH_BYTES + 3] ^= 0x04;
    rawpeer_write(&rp, good, good_len);
    trun_until(&w->loop, pred_received_one, a, WAIT_MS);
    assert_int_equal(a->last_message_len, 5);
    assert_memory_equal(a->last_message, "first", 5);
    rawpeer_write(&rp, bad, bad_len);
    trun_until(&w->loop, tpred_rawpeer_eof, &rp, WAIT_MS);
    assert_int_equal(a->received_count, 1); /* "second" never surfaced */
    assert_int_equal(a->link_down_count, 1);
    assert_int_equal(a->last_down_reason, EHR_EPROTO);
    assert_true(tlog_contains("reason=\"frame failed authentication\""));
    free(good);
    free(bad);
    rawpeer_close(&rp);
}

static void test_refuses_replayed_frame(void **state)
{
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 0, 0);
    tnode *a = &w->nodes[0];
    rawpeer rp;
    raw_peer_for(&rp, &key, a);
    rawpeer_connect(&rp, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_done, &rp, WAIT_MS);
    const uint8_t *one[1] = {(const uint8_t *)"pay once"};
    size_t one_len[1] = {8};
    size_t len = 0;
    uint8_t *frame = rawpeer_frame(&rp, one, one_len, 1, &len);
    rawpeer_write(&rp, frame, len);
    rawpeer_write(&rp, frame, len);
    trun_until(&w->loop, tpred_rawpeer_eof, &rp, WAIT_MS);
    assert_int_equal(a->received_count, 1);
    assert_true(tlog_contains("reason=\"frame failed authentication\""));
    free(frame);
    rawpeer_close(&rp);
}

static void test_refuses_frame_over_limit_without_allocating_it(void **state)
{
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 0, 0);
    tnode *a = &w->nodes[0];
    uint8_t header[64];
    memset(header, 0xee, sizeof header);
    uint32_t over = P2P_FRAME_BYTES_MAX + 1;
    header[0] = (uint8_t)(over >> 24);
    header[1] = (uint8_t)(over >> 16);
    header[2] = (uint8_t)(over >> 8);
    header[3] = (uint8_t)over;
    frame_script script = {.bytes = header, .len = sizeof header, .reset_alloc_stats = true};
    rawpeer rp;
    raw_peer_for(&rp, &key, a);
    rp.on_done = script_on_done;
    rp.ctx = &script;
    rawpeer_connect(&rp, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_eof, &rp, WAIT_MS);
    assert_int_equal(a->link_up_count, 1);
    assert_int_equal(a->last_down_reason, EHR_ETOOBIG);
    assert_true(tlog_contains("reason=\"frame over the size limit\""));
    /* No allocation anywhere near the claimed size happened. */
    assert_true(ehr_alloc_largest_bytes() < P2P_FRAME_BYTES_MAX / 2);
    rawpeer_close(&rp);
}

static void test_accepts_frame_at_the_size_limit(void **state)
{
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 0, 0);
    tnode *a = &w->nodes[0];
    rawpeer rp;
    raw_peer_for(&rp, &key, a);
    rawpeer_connect(&rp, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_done, &rp, WAIT_MS);
    /* One maximal message, padded with an unknown field to the frame limit. */
    size_t wire_len = P2P__LENGTH_BYTES + P2P_FRAME_BYTES_MAX;
    uint8_t *frame = calloc(1, wire_len);
    assert_non_null(frame);
    uint8_t *body = frame + P2P__LENGTH_BYTES;
    size_t pos = p2p__record_header_write(body, P2P_MESSAGE_BYTES_MAX);
    memset(body + pos, 0x61, P2P_MESSAGE_BYTES_MAX);
    pos += P2P_MESSAGE_BYTES_MAX;
    size_t rest = P2P__FRAME_PLAIN_BYTES_MAX - pos;
    body[pos++] = (uint8_t)(15 << 3 | P2P__PB_BYTES);
    body[pos++] = (uint8_t)(rest - 2);
    assert_int_equal(p2p__frame_seal(&rp.tx, frame, P2P__FRAME_PLAIN_BYTES_MAX), 0);
    rawpeer_write(&rp, frame, wire_len);
    trun_until(&w->loop, pred_received_one, a, WAIT_MS);
    assert_int_equal(a->last_message_len, P2P_MESSAGE_BYTES_MAX);
    assert_int_equal(a->last_message[0], 0x61);
    assert_int_equal(a->link_down_count, 0);
    free(frame);
    rawpeer_close(&rp);
}

static void test_refuses_peer_that_connects_and_says_nothing(void **state)
{
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 200, 0);
    rawpeer rp;
    memset(&rp, 0, sizeof rp);
    rawpeer_connect(&rp, &w->loop, w->nodes[0].port);
    expect_refused(w, &rp, "handshake timeout");
    rawpeer_close(&rp);
}

static void test_unconfirmed_connection_never_goes_live(void **state)
{
    /* R's key is the lower, so R decides (L2); it completes the handshake
     * but never sends the confirming first frame. A must not report a link,
     * and must close the connection at the handshake timeout. */
    world *w = *state;
    ehr_signing_key r_key, a_key;
    assert_int_equal(ehr_signing_key_generate(&r_key), 0);
    do
        assert_int_equal(ehr_signing_key_generate(&a_key), 0);
    while (memcmp(r_key.public_key, a_key.public_key, P2P_KEY_BYTES) > 0);
    p2p_config config;
    tnode *a = &w->nodes[0];
    tnode_config(a, &config, CHAIN);
    config.handshake_timeout_ms = 300;
    tnode_start(a, &w->loop, &a_key, &config);
    w->count = 1;
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, r_key.public_key, P2P_KEY_BYTES);
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
    rawpeer rp;
    raw_peer_for(&rp, &r_key, a);
    rp.no_confirm = true;
    rawpeer_connect(&rp, &w->loop, a->port);
    trun_until(&w->loop, tpred_rawpeer_done, &rp, WAIT_MS);
    trun_for(&w->loop, 100);
    p2p_link_info info;
    assert_int_equal(p2p_link_info_get(a->p, r_key.public_key, &info), 0);
    assert_false(info.up);
    assert_int_equal(info.connection_count, 1);
    uint8_t msg[8] = {0};
    assert_int_equal(p2p_send(a->p, r_key.public_key, msg, sizeof msg), EHR_ECLOSED);
    expect_refused(w, &rp, "confirmation timeout");
    assert_int_equal(a->link_down_count, 0);
    rawpeer_close(&rp);
}

static void test_refuses_garbage_before_handshake(void **state)
{
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 0, 0);
    /* Text: its first bytes read as a huge length. */
    rawpeer rp;
    memset(&rp, 0, sizeof rp);
    rawpeer_connect(&rp, &w->loop, w->nodes[0].port);
    trun_until(&w->loop, tpred_rawpeer_connected, &rp, WAIT_MS);
    const char http[] = "GET / HTTP/1.1\r\nHost: node\r\n\r\n";
    rawpeer_write(&rp, http, sizeof http - 1);
    expect_refused(w, &rp, "handshake message over the size limit");
    rawpeer_close(&rp);
    /* Binary junk within the length limit: a malformed hello. */
    rawpeer junk;
    memset(&junk, 0, sizeof junk);
    rawpeer_connect(&junk, &w->loop, w->nodes[0].port);
    trun_until(&w->loop, tpred_rawpeer_connected, &junk, WAIT_MS);
    uint8_t bytes[4 + 40] = {0, 0, 0, 40};
    memset(bytes + 4, 0xff, 40);
    rawpeer_write(&junk, bytes, sizeof bytes);
    expect_refused(w, &junk, "malformed hello");
    rawpeer_close(&junk);
}

static void test_too_many_pending_handshakes_are_refused_at_once(void **state)
{
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 0, 0);
    static rawpeer silent[P2P_HANDSHAKES_MAX + 1];
    memset(silent, 0, sizeof silent);
    /* Exactly the limit: all held open (in handshake). */
    for (size_t i = 0; i < P2P_HANDSHAKES_MAX; i++)
        rawpeer_connect(&silent[i], &w->loop, w->nodes[0].port);
    for (size_t i = 0; i < P2P_HANDSHAKES_MAX; i++)
        trun_until(&w->loop, tpred_rawpeer_connected, &silent[i], WAIT_MS);
    trun_for(&w->loop, 100);
    for (size_t i = 0; i < P2P_HANDSHAKES_MAX; i++)
        assert_false(silent[i].eof);
    /* One more: closed at once. */
    rawpeer_connect(&silent[P2P_HANDSHAKES_MAX], &w->loop, w->nodes[0].port);
    trun_until(&w->loop, tpred_rawpeer_eof, &silent[P2P_HANDSHAKES_MAX], WAIT_MS);
    assert_true(tlog_contains("reason=\"too many connections in handshake\""));
    for (size_t i = 0; i <= P2P_HANDSHAKES_MAX; i++)
        rawpeer_close(&silent[i]);
}

static void stop_reading(rawpeer *rp)
{
    uv_read_stop((uv_stream_t *)&rp->tcp);
}

static void test_queue_bound_counts_bytes_stuck_in_flight(void **state)
{
    /* The receiver stops reading, so writes stall in the kernel and stay in
     * flight: the bound must hold over both buffers together (L4). */
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    p2p_config config;
    tnode *a = &w->nodes[0];
    tnode_config(a, &config, CHAIN);
    config.queue_bytes_max = P2P_QUEUE_BYTES_MIN;
    tnode_start(a, &w->loop, NULL, &config);
    w->count = 1;
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, key.public_key, P2P_KEY_BYTES);
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
    rawpeer rp;
    raw_peer_for(&rp, &key, a);
    rp.on_done = stop_reading;
    rawpeer_connect(&rp, &w->loop, a->port);
    trun_until(&w->loop, pred_first_link_up, a, WAIT_MS);
    static uint8_t buf[PRESSURE_MESSAGE_BYTES];
    size_t queued_max = 0;
    uint64_t sent = 0, sent_before = UINT64_MAX;
    int stalled_rounds = 0;
    /* Send until the kernel buffers are full and the queue stops draining. */
    for (int round = 0; round < 1000 && stalled_rounds < 3; round++) {
        int rc;
        do {
            tmsg_make(buf, sizeof buf, 0, sent);
            rc = p2p_send(a->p, key.public_key, buf, sizeof buf);
            p2p_link_info info;
            assert_int_equal(p2p_link_info_get(a->p, key.public_key, &info), 0);
            if (info.queued_bytes > queued_max)
                queued_max = info.queued_bytes;
            if (rc == 0)
                sent++;
        } while (rc == 0);
        assert_int_equal(rc, EHR_EAGAIN);
        stalled_rounds = sent == sent_before ? stalled_rounds + 1 : 0;
        sent_before = sent;
        trun_for(&w->loop, 20);
    }
    assert_int_equal(stalled_rounds, 3);
    assert_true(queued_max <= P2P_QUEUE_BYTES_MIN);
    p2p_link_info info;
    assert_int_equal(p2p_link_info_get(a->p, key.public_key, &info), 0);
    assert_true(info.queued_bytes > P2P_QUEUE_BYTES_MIN / 2); /* really stuck */
    assert_int_equal(a->link_down_count, 0);
    rawpeer_close(&rp);
    /* Closing drops the unsent messages, and says how many. */
    trun_until(&w->loop, pred_first_link_down, a, WAIT_MS);
    assert_true(a->last_down_unsent > 0);
    assert_true(a->last_down_unsent <= P2P_QUEUE_BYTES_MIN / PRESSURE_MESSAGE_BYTES);
}

static void test_member_removed_during_handshake_is_refused(void **state)
{
    /* The member check passes at the hello; the member is removed before the
     * auth arrives: the completed handshake must not become a link. */
    world *w = *state;
    ehr_signing_key key;
    assert_int_equal(ehr_signing_key_generate(&key), 0);
    start_node_for_raw_peer(w, &key, 0, 0);
    tnode *a = &w->nodes[0];
    rawpeer rp;
    raw_peer_for(&rp, &key, a);
    rp.hold_auth = true;
    rawpeer_connect(&rp, &w->loop, a->port);
    trun_until(&w->loop, pred_auth_held, &rp, WAIT_MS);
    assert_int_equal(p2p_set_members(a->p, NULL, 0), 0);
    rawpeer_write(&rp, rp.held, rp.held_len);
    trun_until(&w->loop, tpred_rawpeer_eof, &rp, WAIT_MS);
    assert_int_equal(a->link_up_count, 0);
    assert_true(tlog_contains("reason=\"key not in member set\""));
    rawpeer_close(&rp);
}

static void test_failed_dials_back_off(void **state)
{
    /* A member whose address refuses connections: with a 20 ms base doubling
     * to 400 ms, one second holds about six attempts; without back-off it
     * would hold fifty. Bounds are wide on purpose (a loaded machine only
     * lowers the count). */
    world *w = *state;
    start_single_node(w);
    tnode *a = &w->nodes[0];
    uv_tcp_t probe; /* find a port nobody listens on */
    assert_int_equal(uv_tcp_init(&w->loop, &probe), 0);
    struct sockaddr_in addr;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0), 0);
    struct sockaddr_storage bound;
    int len = (int)sizeof bound;
    assert_int_equal(uv_tcp_getsockname(&probe, (struct sockaddr *)&bound, &len), 0);
    uv_close((uv_handle_t *)&probe, NULL);
    trun_for(&w->loop, 5);
    ehr_signing_key other;
    key_ordered(&other, a, false); /* we are lower: no dial yield */
    p2p_member m;
    memset(&m, 0, sizeof m);
    memcpy(m.node_key, other.public_key, P2P_KEY_BYTES);
    snprintf(m.address, sizeof m.address, "127.0.0.1:%u",
             (unsigned)ntohs(((struct sockaddr_in *)&bound)->sin_port));
    tlog_clear();
    assert_int_equal(p2p_set_members(a->p, &m, 1), 0);
    trun_for(&w->loop, 1000);
    size_t attempts = tlog_count("msg=\"p2p dial failed\"");
    assert_true(attempts >= 3);
    assert_true(attempts <= 12);
    assert_int_equal(a->link_up_count, 0);
}

static void test_create_rejects_bad_config(void **state)
{
    world *w = *state;
    tnode n;
    memset(&n, 0, sizeof n);
    assert_int_equal(ehr_signing_key_generate(&n.key), 0);
    p2p_config config;
    p2p *p = NULL;
    tnode_config(&n, &config, CHAIN);
    config.queue_bytes_max = P2P_QUEUE_BYTES_MIN - 1;
    assert_int_equal(p2p_create(&w->loop, &config, &p), EHR_EINVAL);
    tnode_config(&n, &config, CHAIN);
    config.dead_after_ms = config.keepalive_interval_ms;
    assert_int_equal(p2p_create(&w->loop, &config, &p), EHR_EINVAL);
    tnode_config(&n, &config, "");
    assert_int_equal(p2p_create(&w->loop, &config, &p), EHR_EINVAL);
    tnode_config(&n, &config, CHAIN);
    config.callbacks.on_message = NULL;
    assert_int_equal(p2p_create(&w->loop, &config, &p), EHR_EINVAL);
    tnode_config(&n, &config, CHAIN);
    config.queue_bytes_max = P2P_QUEUE_BYTES_MIN;
    signal(SIGPIPE, SIG_DFL);
    assert_int_equal(p2p_create(&w->loop, &config, &p), EHR_EINVAL);
    assert_true(tlog_contains("p2p needs SIGPIPE ignored"));
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(p2p_create(&w->loop, &config, &p), 0);
    assert_int_equal(p2p_listen(p, "not-an-address"), EHR_EINVAL);
    assert_int_equal(p2p_listen(p, "127.0.0.1:0"), 0);
    assert_int_equal(p2p_listen(p, "127.0.0.1:0"), EHR_EEXIST);
    n.p = p;
    n.loop = &w->loop;
    tnode_stop(&n);
}

int main(void)
{
    if (ehr_crypto_init() != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
#define T(name) cmocka_unit_test_setup_teardown(name, world_setup, world_teardown)
    const struct CMUnitTest tests[] = {
        T(test_two_nodes_exchange_messages_in_order_both_ways),
        T(test_three_nodes_exchange_messages_in_order_on_every_link),
        T(test_send_reports_missing_link_member_and_size),
        T(test_set_members_validates_before_changing_anything),
        T(test_member_address_may_be_a_host_name),
        T(test_unresolvable_host_name_is_retried_and_close_waits_for_lookups),
        T(test_full_queue_says_eagain_and_writable_resumes),
        T(test_removing_a_member_closes_its_link_and_adding_reopens),
        T(test_both_nodes_dialling_agree_before_link_up),
        T(test_second_connection_against_live_link_is_closed),
        T(test_newer_connection_replaces_stale_link),
        T(test_idle_link_stays_up_on_keepalives),
        T(test_silent_member_is_dropped_as_dead),
        T(test_refuses_key_outside_member_set),
        T(test_refuses_a_real_node_outside_member_set),
        T(test_refuses_wrong_chain_id),
        T(test_refuses_bad_transcript_signature),
        T(test_refuses_replayed_handshake),
        T(test_refuses_frame_with_flipped_bit),
        T(test_refuses_replayed_frame),
        T(test_refuses_frame_over_limit_without_allocating_it),
        T(test_accepts_frame_at_the_size_limit),
        T(test_refuses_peer_that_connects_and_says_nothing),
        T(test_unconfirmed_connection_never_goes_live),
        T(test_refuses_garbage_before_handshake),
        T(test_too_many_pending_handshakes_are_refused_at_once),
        T(test_queue_bound_counts_bytes_stuck_in_flight),
        T(test_member_removed_during_handshake_is_refused),
        T(test_failed_dials_back_off),
        T(test_create_rejects_bad_config),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
