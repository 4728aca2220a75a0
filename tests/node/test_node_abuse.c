/*
 * test_node_abuse.c - the node's API under abuse (issue "The API under
 * abuse"): probes that need nothing but a connection to a node's gRPC port,
 * run against three real ehrd processes on loopback (cluster.h), checking
 * that consensus keeps its pace and leader, and that the per-client limits
 * hold at their edges.
 *
 * The loop's pace is read from GetStatus (loop_turn_max_us: the longest
 * busy turn of the node's event loop in the last 10 to 20 s).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster.h"
#include "h2raw.h"
#include "node_internal.h"

#ifndef EHRD_PATH
#error "EHRD_PATH must name the ehrd binary"
#endif
#ifndef EHRCTL_PATH
#error "EHRCTL_PATH must name the ehrctl binary"
#endif

enum {
    LEADER_WAIT_MS = 15000,
    /* The ledger the streams read: blocks of BLOCK_TXS enrolments, enough
     * of them that each stream from height 0 has more than its queue
     * (RPC_STREAM_QUEUE_BYTES_MAX) to send. */
    LEDGER_TXS = 6000,
    BLOCK_TXS = 4,
    /* The flood: connections × streams each, from height 0, never read;
     * together exactly NODE_BLOCK_STREAMS_MAX. */
    FLOOD_CONNECTIONS = NODE_BLOCK_STREAMS_MAX / NODE_BLOCK_STREAMS_PER_CONNECTION_MAX,
    /* How long the flood is watched, and the honest load submitted meanwhile. */
    FLOOD_WATCH_MS = 6000,
    HONEST_TXS = 400,
    /* The longest loop turn allowed under the flood: half the shortest
     * election timeout (10 ticks of 50 ms), so no follower comes near to
     * starting an election. The loop's own fsyncs and a shared machine's
     * scheduling take up to about 170 ms of it with no client at all;
     * the flood served without a budget took 1 to 2.3 s. */
    LOOP_TURN_BOUND_US = 250000,
};
_Static_assert(FLOOD_CONNECTIONS *NODE_BLOCK_STREAMS_PER_CONNECTION_MAX == NODE_BLOCK_STREAMS_MAX,
               "the flood fills the node's streams exactly");

#define STREAM_BLOCKS "/ehr.v1.Node/StreamBlocks"

static struct cluster cluster;
static size_t leader = SIZE_MAX;
/* A StreamBlocksRequest from height 0 (the empty message), framed. */
static uint8_t from_zero[5];

/* ---- set-up: a cluster with a ledger of many blocks ---- */

static int cluster_up(void **state)
{
    (void)state;
    struct cluster_limits limits = {.block_tx_count = BLOCK_TXS};
    cluster_create(&cluster, 3, EHRD_PATH, EHRCTL_PATH, &limits);
    for (size_t i = 0; i < 3; i++)
        cluster_start(&cluster, i);
    leader = cluster_wait_leader(&cluster, LEADER_WAIT_MS);
    if (leader == SIZE_MAX)
        return -1;
    struct cluster_tx *txs = cluster_txs_make(&cluster, LEDGER_TXS);
    size_t committed = cluster_load(&cluster, txs, LEDGER_TXS, 256, 300000, NULL, NULL);
    cluster_txs_free(txs, LEDGER_TXS);
    if (committed != LEDGER_TXS)
        return -1;
    struct cluster_status s;
    if (cluster_status(&cluster, leader, &s) != 0)
        return -1;
    printf("# ledger: %" PRIu64 " blocks of up to %d enrolments\n", s.tip_height, BLOCK_TXS);
    h2raw_grpc_frame(from_zero, 0, NULL, 0);
    return 0;
}

static int cluster_down(void **state)
{
    (void)state;
    cluster_destroy(&cluster, getenv("EHR_TEST_KEEP") != NULL);
    return 0;
}

/* ---- block streams ---- */

/* Open COUNT StreamBlocks from height 0 on H and send them, reading
 * nothing back beyond what the send loop takes in. */
static void streams_open(struct h2raw *h, size_t count, struct h2raw_stream **out)
{
    for (size_t i = 0; i < count; i++) {
        out[i] = h2raw_request(h, STREAM_BLOCKS, NULL, from_zero, sizeof from_zero, true);
        assert_non_null(out[i]);
    }
    h2raw_wait(h, NULL, 1);
}

struct watch {
    uint64_t term[3];
    uint64_t turn_max_us; /* the leader's longest turn seen */
    size_t leader_changes;
    uint64_t last_us;
};

/* Sample every node's status: a term that moved is a leader change. */
static void watch_sample(struct watch *w)
{
    for (size_t i = 0; i < 3; i++) {
        struct cluster_status s;
        if (cluster_status(&cluster, i, &s) != 0)
            continue; /* a slow answer is not a change of leader */
        if (s.term != w->term[i])
            w->leader_changes++;
        w->term[i] = s.term;
        if (i == leader && s.loop_turn_max_us > w->turn_max_us)
            w->turn_max_us = s.loop_turn_max_us;
    }
    w->last_us = cluster_now_us();
}

static void watch_tick(void *ctx, struct cluster *c, const struct cluster_tx *txs, size_t count,
                       uint64_t now_us)
{
    (void)c, (void)txs, (void)count;
    struct watch *w = ctx;
    if (now_us - w->last_us >= 200000)
        watch_sample(w);
}

/*
 * The consensus loop never waits on a client (docs/DESIGN.md): the most
 * StreamBlocks a node takes, all from height 0 on a ledger larger than
 * their queues, held open by clients that read nothing, while an honest
 * load commits. The leader's longest loop turn stays under
 * LOOP_TURN_BOUND_US and no node's term moves.
 */
static void test_a_stream_flood_neither_stalls_the_leader_nor_costs_its_leadership(void **state)
{
    (void)state;
    struct watch w = {0};
    watch_sample(&w);
    w.leader_changes = 0;
    w.turn_max_us = 0;
    struct h2raw *flood = calloc(FLOOD_CONNECTIONS, sizeof *flood);
    assert_non_null(flood);
    struct h2raw_stream *streams[NODE_BLOCK_STREAMS_PER_CONNECTION_MAX];
    uint64_t t0 = cluster_now_us();
    for (size_t i = 0; i < FLOOD_CONNECTIONS; i++) {
        assert_int_equal(h2raw_connect(&flood[i], cluster.nodes[leader].rpc_port), 0);
        streams_open(&flood[i], NODE_BLOCK_STREAMS_PER_CONNECTION_MAX, streams);
    }
    /* One more stream, on a connection of its own: past the node's limit. */
    struct h2raw extra;
    assert_int_equal(h2raw_connect(&extra, cluster.nodes[leader].rpc_port), 0);
    struct h2raw_stream *over;
    streams_open(&extra, 1, &over);
    assert_true(h2raw_wait(&extra, over, 5000));
    assert_int_equal(over->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    h2raw_close(&extra);

    struct cluster_tx *txs = cluster_txs_make(&cluster, HONEST_TXS);
    size_t committed = cluster_load(&cluster, txs, HONEST_TXS, 32, 60000, watch_tick, &w);
    cluster_txs_free(txs, HONEST_TXS);
    while (cluster_now_us() - t0 < FLOOD_WATCH_MS * 1000ull) {
        usleep(200000);
        watch_sample(&w);
    }
    printf("# %d StreamBlocks from height 0 on %d connections: the leader's longest loop turn "
           "%.1f ms, %zu leader changes, %zu of %d honest transactions committed\n",
           NODE_BLOCK_STREAMS_MAX, FLOOD_CONNECTIONS, (double)w.turn_max_us / 1000,
           w.leader_changes, committed, HONEST_TXS);
    for (size_t i = 0; i < FLOOD_CONNECTIONS; i++)
        h2raw_close(&flood[i]);
    free(flood);
    assert_int_equal(committed, HONEST_TXS);
    assert_int_equal(w.leader_changes, 0);
    assert_true(w.turn_max_us < LOOP_TURN_BOUND_US);
}

/* NODE_BLOCK_STREAMS_PER_CONNECTION_MAX streams on one connection are
 * served; one more on it is refused; a stream on another connection is
 * served again (the limit is per connection). */
static void test_block_streams_are_limited_per_connection(void **state)
{
    (void)state;
    size_t follower = (leader + 1) % 3;
    struct h2raw h;
    assert_int_equal(h2raw_connect(&h, cluster.nodes[follower].rpc_port), 0);
    struct h2raw_stream *s[NODE_BLOCK_STREAMS_PER_CONNECTION_MAX + 1];
    streams_open(&h, NODE_BLOCK_STREAMS_PER_CONNECTION_MAX + 1, s);
    struct h2raw_stream *over = s[NODE_BLOCK_STREAMS_PER_CONNECTION_MAX];
    assert_true(h2raw_wait(&h, over, 5000));
    assert_int_equal(over->grpc_status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(over->grpc_message, "on this connection"));
    h2raw_wait(&h, NULL, 1000); /* the served streams' first blocks */
    for (size_t i = 0; i < NODE_BLOCK_STREAMS_PER_CONNECTION_MAX; i++) {
        assert_false(s[i]->closed);
        assert_true(s[i]->data_len > 0); /* blocks arrived */
    }
    struct h2raw other;
    assert_int_equal(h2raw_connect(&other, cluster.nodes[follower].rpc_port), 0);
    struct h2raw_stream *served;
    streams_open(&other, 1, &served);
    h2raw_wait(&other, served, 1000);
    assert_false(served->closed);
    assert_true(served->data_len > 0);
    h2raw_close(&other);
    h2raw_close(&h);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    assert_int_equal(ehr_crypto_init(), 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_stream_flood_neither_stalls_the_leader_nor_costs_its_leadership),
        cmocka_unit_test(test_block_streams_are_limited_per_connection),
    };
    return cmocka_run_group_tests(tests, cluster_up, cluster_down);
}
