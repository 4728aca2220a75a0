/*
 * fuzz_raft_wire.c - libFuzzer target for the consensus message decoder
 * (node/raft_wire.h). Arbitrary bytes go to node_raft_wire_decode and
 * node_raft_wire_peer_decode; whatever decodes must re-encode, decode again
 * to the same fields, re-encode to the same bytes (the encoding is
 * canonical), and be accepted by protobuf-c too, envelope included (ours
 * is the stricter reader). Not a test of the core's semantics
 * (fuzz_raft_step is).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ehr/v1/p2p.pb-c.h"
#include "ehr/v1/raft.pb-c.h"
#include "raft_wire.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void same_message(const struct raft_message *a, const struct raft_message *b)
{
    CHECK(a->type == b->type && a->from == b->from && a->to == b->to && a->term == b->term);
    CHECK(a->index == b->index && a->log_term == b->log_term && a->commit == b->commit);
    CHECK(a->hint_index == b->hint_index && a->hint_term == b->hint_term);
    CHECK(a->context == b->context && a->reject == b->reject && a->transfer == b->transfer);
    CHECK(a->entry_count == b->entry_count);
    for (uint32_t i = 0; i < a->entry_count; i++) {
        const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
        CHECK(x->term == y->term && x->index == y->index && x->type == y->type);
        CHECK(x->size == y->size && (x->size == 0 || memcmp(x->data, y->data, x->size) == 0));
    }
    CHECK((a->snapshot == NULL) == (b->snapshot == NULL));
    if (a->snapshot != NULL) {
        CHECK(a->snapshot->index == b->snapshot->index);
        CHECK(a->snapshot->term == b->snapshot->term);
        CHECK(memcmp(&a->snapshot->config, &b->snapshot->config, sizeof a->snapshot->config) == 0);
    }
    CHECK(a->offset == b->offset && a->done == b->done && a->size == b->size);
    CHECK(a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}

static void check_decoded(const uint8_t *data, size_t size, const struct raft_message *m)
{
    size_t n = 0, written = 0;
    CHECK(node_raft_wire_encoded_size(m, &n) == 0);
    CHECK(n <= size); /* canonical form: never longer than what was accepted */
    uint8_t *buf = malloc(n > 0 ? n : 1);
    CHECK(buf != NULL);
    CHECK(node_raft_wire_encode(m, buf, n, &written) == 0 && written == n);
    struct node_raft_wire_message again;
    CHECK(node_raft_wire_decode(buf, n, &again) == 0);
    same_message(m, &again.message);
    uint8_t *buf2 = malloc(n > 0 ? n : 1);
    CHECK(buf2 != NULL);
    CHECK(node_raft_wire_encode(&again.message, buf2, n, &written) == 0 && written == n);
    CHECK(memcmp(buf, buf2, n) == 0);
    node_raft_wire_release(&again);
    free(buf2);
    free(buf);
    (void)data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct node_raft_wire_message d;
    if (node_raft_wire_decode(data, size, &d) == 0) {
        check_decoded(data, size, &d.message);
        /* what we accept, a standard reader accepts too */
        Ehr__V1__RaftMessage *p = ehr__v1__raft_message__unpack(NULL, size, data);
        CHECK(p != NULL);
        CHECK(p->n_entries == d.message.entry_count && p->term == d.message.term);
        ehr__v1__raft_message__free_unpacked(p, NULL);
        node_raft_wire_release(&d);
    }
    if (node_raft_wire_peer_decode(data, size, &d) == 0) {
        CHECK(size >= 2);
        check_decoded(data, size, &d.message);
        /* the envelope too: a standard reader accepts it, as the raft kind */
        Ehr__V1__PeerMessage *p = ehr__v1__peer_message__unpack(NULL, size, data);
        CHECK(p != NULL);
        CHECK(p->kind_case == EHR__V1__PEER_MESSAGE__KIND_RAFT);
        CHECK(p->raft->n_entries == d.message.entry_count && p->raft->term == d.message.term);
        ehr__v1__peer_message__free_unpacked(p, NULL);
        node_raft_wire_release(&d);
    }
    return 0;
}
