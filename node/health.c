/*
 * health.c - the standard gRPC health service (grpc.health.v1.Health,
 * proto/grpc/health/v1/health.proto) on the node's RPC server, so that a
 * load balancer or an orchestrator's probe can tell whether to send
 * clients to this node: Check (the status now) and Watch (the status at
 * once, then each change).
 *
 * What SERVING means is node__health_judge's rule (node_internal.h,
 * "Health"; node/README.md). Services known: "" (the whole server) and
 * "ehr.v1.Node"; any other name is NOT_FOUND to Check and SERVICE_UNKNOWN
 * to Watch, as the gRPC health protocol asks.
 *
 * The consensus loop never waits on a client (docs/DESIGN.md): the health
 * is judged once per tick (node__health_update, from the API's sweep), and
 * a change is sent to at most NODE_HEALTH_WATCH_SENDS_PER_TICK_MAX watches
 * per tick, in turn; a watch whose queue is full is skipped until it
 * drains (it then gets the status of that moment: a watcher sees the
 * latest status, not every flap). Watches are bounded on the node, per
 * connection and per client address with the block streams' mechanism
 * (stream_set.c).
 *
 * Not here: the facts themselves (consensus, apply: node.c, apply.c).
 */
#include <inttypes.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "node_internal.h"

#define HEALTH_PATH_PREFIX "/grpc.health.v1.Health/"
/* The service names a client may ask about: the whole server, and the API. */
#define HEALTH_SERVICE_SERVER ""
#define HEALTH_SERVICE_NODE "ehr.v1.Node"

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus serving_status;

/* ---- the rule ---- */

enum node__health_reason node__health_judge(const struct node__health_facts *f)
{
    if (f->diverged)
        return NODE_HEALTH_DIVERGED;
    if (f->stopping)
        return NODE_HEALTH_STOPPING;
    if (!f->leader_known)
        return NODE_HEALTH_NO_LEADER;
    /* Applied may pass the commit index a node knows (a snapshot installed
     * ahead of it, a restart): that is no lag. */
    if (f->commit_index > f->applied_index &&
        f->commit_index - f->applied_index > NODE_HEALTH_APPLY_LAG_MAX)
        return NODE_HEALTH_CATCHING_UP;
    return NODE_HEALTH_OK;
}

const char *node__health_reason_name(enum node__health_reason reason)
{
    switch (reason) {
    case NODE_HEALTH_OK:
        return "ok";
    case NODE_HEALTH_DIVERGED:
        return "diverged";
    case NODE_HEALTH_STOPPING:
        return "stopping";
    case NODE_HEALTH_NO_LEADER:
        return "no-leader";
    case NODE_HEALTH_CATCHING_UP:
        return "catching-up";
    }
    return "?";
}

struct node__health_facts node__health_facts_of(const struct node *n)
{
    return (struct node__health_facts){.stopping = n->stopping,
                                       .diverged = n->exit_code == NODE_EXIT_DIVERGED,
                                       .leader_known = n->cons.leader != 0,
                                       .commit_index = n->cons.commit_index,
                                       .applied_index = n->cons.applied_index};
}

static serving_status status_of(enum node__health_reason reason)
{
    return reason == NODE_HEALTH_OK
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static bool service_known(const char *name)
{
    return strcmp(name, HEALTH_SERVICE_SERVER) == 0 || strcmp(name, HEALTH_SERVICE_NODE) == 0;
}

/* The packed HealthCheckResponse of STATUS: a few bytes, into BUF. */
enum { RESPONSE_BYTES_MAX = 8 };
static size_t response_pack(serving_status status, uint8_t buf[RESPONSE_BYTES_MAX])
{
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = status;
    size_t len = grpc__health__v1__health_check_response__get_packed_size(&r);
    EHR_ASSERT(len <= RESPONSE_BYTES_MAX);
    return grpc__health__v1__health_check_response__pack(&r, buf);
}

/* ---- Check ---- */

static void check(struct rpc_call *call, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Grpc__Health__V1__HealthCheckRequest *r =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_call_fail(call, RPC_STATUS_INVALID_ARGUMENT,
                      "malformed request: not a HealthCheckRequest");
        return;
    }
    bool known = service_known(r->service);
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
    if (!known) {
        rpc_call_fail(call, RPC_STATUS_NOT_FOUND,
                      "unknown service: this node serves \"\" (the whole server) and "
                      "\"" HEALTH_SERVICE_NODE "\"");
        return;
    }
    /* Judged now, not at the last tick: a probe right after a change sees it. */
    struct node__health_facts f = node__health_facts_of(n);
    uint8_t buf[RESPONSE_BYTES_MAX];
    size_t plen = response_pack(status_of(node__health_judge(&f)), buf);
    rpc_call_reply(call, buf, plen);
}

/* ---- Watch ---- */

static serving_status watch_status(const struct node__health_watch *w)
{
    if (!w->service_known)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    return status_of(w->node->health.reason);
}

static void watch_end(struct node__health_watch *w, enum rpc_status st, const char *msg)
{
    struct node *n = w->node;
    node__stream_set_remove(&n->health.watches, &w->slot);
    node__link_remove(&w->due);
    rpc_stream_finish(w->stream, st, msg);
    ehr_free(w);
}

/* W has a status to send that it has not: put it in the turn. */
static void watch_wake(struct node__health_watch *w)
{
    if (w->blocked || (int)watch_status(w) == w->sent || !node__link_alone(&w->due))
        return;
    node__link_push(&w->node->health.due, &w->due);
}

/* Queue W's status. Returns false if W ended (and is freed). */
static bool watch_send(struct node__health_watch *w)
{
    serving_status status = watch_status(w);
    uint8_t buf[RESPONSE_BYTES_MAX];
    size_t plen = response_pack(status, buf);
    node__link_remove(&w->due);
    int rc = rpc_stream_send(w->stream, buf, plen);
    if (rc == EHR_EAGAIN) {
        w->blocked = true; /* on_watch_writable wakes it */
        return true;
    }
    if (rc != 0) {
        watch_end(w, RPC_STATUS_UNAVAILABLE, NULL);
        return false;
    }
    w->sent = (int)status;
    return true;
}

static void on_watch_cancel(void *data, enum rpc_status why)
{
    watch_end(data, why, NULL);
}

static void on_watch_writable(struct rpc_stream *stream, void *data)
{
    (void)stream;
    struct node__health_watch *w = data;
    w->blocked = false;
    watch_wake(w);
}

static void watch(struct rpc_stream *stream, const uint8_t *req, size_t len, void *data)
{
    struct node *n = data;
    Grpc__Health__V1__HealthCheckRequest *r =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (r == NULL) {
        rpc_stream_finish(stream, RPC_STATUS_INVALID_ARGUMENT,
                          "malformed request: not a HealthCheckRequest");
        return;
    }
    bool known = service_known(r->service);
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
    struct node__health_watch *w = ehr_calloc(1, sizeof *w);
    if (node__stream_set_admit(&n->health.watches, stream, &w->slot) != 0) {
        ehr_free(w);
        return;
    }
    w->node = n;
    w->stream = stream;
    w->service_known = known;
    w->sent = -1;
    node__link_init(&w->due);
    rpc_stream_on_cancel(stream, on_watch_cancel, w);
    rpc_stream_on_writable(stream, on_watch_writable, w);
    /* The first status at once (the protocol's rule): one small message,
     * this call's own work. Before the first tick it is judged here. */
    if (!n->health.judged) {
        struct node__health_facts f = node__health_facts_of(n);
        n->health.reason = node__health_judge(&f);
    }
    watch_send(w);
}

/* ---- the node's side ---- */

void node__health_add(struct node *n)
{
    node__stream_set_init(&n->health.watches, "health watches", NODE_HEALTH_WATCHES_MAX,
                          NODE_HEALTH_WATCHES_PER_CONNECTION_MAX,
                          NODE_HEALTH_WATCHES_PER_ADDRESS_MAX);
    node__link_init(&n->health.due);
    rpc_server_add_unary(n->rpc, HEALTH_PATH_PREFIX "Check", check, n);
    rpc_server_add_stream(n->rpc, HEALTH_PATH_PREFIX "Watch", watch, n);
}

void node__health_update(struct node *n)
{
    struct node__health *h = &n->health;
    struct node__health_facts f = node__health_facts_of(n);
    enum node__health_reason reason = node__health_judge(&f);
    if (!h->judged || reason != h->reason) {
        /* A warning when it stops serving; starting up NOT_SERVING is no news. */
        bool lost = h->judged && h->reason == NODE_HEALTH_OK;
        ehr_log(lost ? EHR_LOG_WARN : EHR_LOG_INFO, "health",
                "status=%s reason=%s commit=%" PRIu64 " applied=%" PRIu64,
                reason == NODE_HEALTH_OK ? "SERVING" : "NOT_SERVING",
                node__health_reason_name(reason), f.commit_index, f.applied_index);
        bool serving_changed = !h->judged || status_of(reason) != status_of(h->reason);
        h->reason = reason;
        h->judged = true;
        if (serving_changed) {
            struct node__link *all = &h->watches.slots;
            for (struct node__link *l = all->next; l != all; l = l->next)
                watch_wake(NODE__CONTAINER(l, struct node__health_watch, slot.link));
        }
    }
    for (uint32_t sends = 0;
         sends < NODE_HEALTH_WATCH_SENDS_PER_TICK_MAX && !node__link_alone(&h->due); sends++)
        watch_send(NODE__CONTAINER(h->due.next, struct node__health_watch, due));
}

void node__health_drain(struct node *n)
{
    struct node__health *h = &n->health;
    if (h->watches.slots.next == NULL)
        return; /* the API never started */
    h->reason = NODE_HEALTH_STOPPING;
    struct node__link *all = &h->watches.slots;
    while (!node__link_alone(all)) {
        struct node__health_watch *w =
            NODE__CONTAINER(all->next, struct node__health_watch, slot.link);
        if (!w->blocked && (int)watch_status(w) != w->sent && !watch_send(w))
            continue; /* ended by the send */
        watch_end(w, RPC_STATUS_UNAVAILABLE, "the node is shutting down");
    }
}
