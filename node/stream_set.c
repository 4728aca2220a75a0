/*
 * stream_set.c - the limits on streaming calls of one kind (StreamBlocks,
 * Health.Watch, GetBlob, and PutBlob's uploads): how many may be open on the node, on one
 * connection and from one client address, checked when a call opens, with
 * the refusal a client can act on. One mechanism for every kind, so that
 * a new streaming method gets the same three bounds.
 *
 * Not here: what a stream sends, and its budget per loop turn (service.c,
 * health.c).
 */
#include <stdio.h>
#include <string.h>

#include "node_internal.h"

enum { REFUSAL_BYTES_MAX = 192 };

void node__stream_set_init(struct node__stream_set *set, const char *what, size_t max,
                           size_t per_connection_max, size_t per_address_max)
{
    EHR_ASSERT(per_connection_max <= per_address_max);
    EHR_ASSERT(per_address_max < max);
    set->what = what;
    set->max = max;
    set->per_connection_max = per_connection_max;
    set->per_address_max = per_address_max;
    node__link_init(&set->slots);
    set->count = 0;
    memset(set->refused_total, 0, sizeof set->refused_total);
}

int node__stream_set_take(struct node__stream_set *set, uint64_t connection_id,
                          struct rpc_peer_address address, struct node__stream_slot *slot,
                          char *msg, size_t msg_size)
{
    if (set->count >= set->max) {
        snprintf(msg, msg_size, "too many %s open on this node (the limit is %zu); retry later",
                 set->what, set->max);
        set->refused_total[NODE_STREAM_LIMIT_NODE]++;
        return EHR_EFULL;
    }
    size_t on_connection = 0, from_address = 0;
    for (const struct node__link *l = set->slots.next; l != &set->slots; l = l->next) {
        const struct node__stream_slot *s = NODE__CONTAINER(l, struct node__stream_slot, link);
        on_connection += s->connection_id == connection_id;
        from_address += memcmp(&s->address, &address, sizeof address) == 0;
    }
    if (on_connection >= set->per_connection_max) {
        snprintf(msg, msg_size,
                 "too many %s open on this connection (the limit is %zu); close one first",
                 set->what, set->per_connection_max);
        set->refused_total[NODE_STREAM_LIMIT_CONNECTION]++;
        return EHR_EFULL;
    }
    if (from_address >= set->per_address_max) {
        snprintf(msg, msg_size,
                 "too many %s open from your address (the limit is %zu); close one first",
                 set->what, set->per_address_max);
        set->refused_total[NODE_STREAM_LIMIT_ADDRESS]++;
        return EHR_EFULL;
    }
    slot->connection_id = connection_id;
    slot->address = address;
    node__link_init(&slot->link);
    node__link_push(&set->slots, &slot->link);
    set->count++;
    EHR_ASSERT(set->count <= set->max);
    return 0;
}

int node__stream_set_admit(struct node__stream_set *set, struct rpc_stream *stream,
                           struct node__stream_slot *slot)
{
    char msg[REFUSAL_BYTES_MAX];
    int rc = node__stream_set_take(set, rpc_stream_connection_id(stream),
                                   rpc_stream_peer_address(stream), slot, msg, sizeof msg);
    if (rc != 0)
        rpc_stream_finish(stream, RPC_STATUS_RESOURCE_EXHAUSTED, msg);
    return rc;
}

void node__stream_set_remove(struct node__stream_set *set, struct node__stream_slot *slot)
{
    EHR_ASSERT(set->count > 0);
    EHR_ASSERT(!node__link_alone(&slot->link));
    node__link_remove(&slot->link);
    set->count--;
}
