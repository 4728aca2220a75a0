/*
 * fuzz_blob_chunk.c - libFuzzer target for what a node reads of a peer's
 * blob messages (node/replication.c): any bytes as a PeerMessage, decoded
 * by protobuf-c as node.c decodes every peer message, and a BlobChunk put
 * through node__blob_chunk_check against a fixed request
 * (fuzz_blob_chunk.h), then against the request its own fields make.
 * Oracles, each an abort: a check returns one of its four codes; a piece
 * it takes (0) is for the record, blob and offset asked, of the size
 * asked, never over NODE_BLOB_REPLICA_CHUNK_BYTES, and never runs past the
 * blob's end; "missing" is taken as ENOTFOUND only without data, for the
 * offset asked; "busy" as EAGAIN only without data, without "missing",
 * for the record, blob and offset asked.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob_replica.h"
#include "ehr/v1/p2p.pb-c.h"
#include "fuzz_blob_chunk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void judge(const struct node__blob_want *w, const Ehr__V1__BlobChunk *c)
{
    ehr_diag why;
    int rc = node__blob_chunk_check(w, c, &why);
    check(rc == 0 || rc == EHR_EINVAL || rc == EHR_ETOOBIG || rc == EHR_ENOTFOUND ||
          rc == EHR_EAGAIN);
    if (rc == EHR_ENOTFOUND) {
        check(c->missing && c->data.len == 0);
        check(!c->busy);
        check(c->offset == w->offset);
    }
    if (rc == EHR_EAGAIN) {
        check(c->busy && c->data.len == 0);
        check(!c->missing);
        check(c->record_id.len == sizeof w->record_id);
        check(memcmp(c->record_id.data, w->record_id, sizeof w->record_id) == 0);
        check(c->blob_id.len == sizeof w->blob_id);
        check(memcmp(c->blob_id.data, w->blob_id, sizeof w->blob_id) == 0);
        check(c->offset == w->offset);
    }
    if (rc != 0)
        return;
    check(!c->missing);
    check(!c->busy);
    check(c->record_id.len == sizeof w->record_id);
    check(memcmp(c->record_id.data, w->record_id, sizeof w->record_id) == 0);
    check(c->blob_id.len == sizeof w->blob_id);
    check(memcmp(c->blob_id.data, w->blob_id, sizeof w->blob_id) == 0);
    check(c->offset == w->offset);
    check(c->total_bytes == w->total_bytes);
    check(c->data.len <= NODE_BLOB_REPLICA_CHUNK_BYTES);
    check(c->data.len <= w->total_bytes - w->offset);
    check(c->data.len == NODE_BLOB_REPLICA_CHUNK_BYTES ||
          c->offset + c->data.len == w->total_bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Ehr__V1__PeerMessage *pm = ehr__v1__peer_message__unpack(NULL, size, data);
    if (pm == NULL)
        return 0;
    if (pm->kind_case == EHR__V1__PEER_MESSAGE__KIND_BLOB_CHUNK) {
        const Ehr__V1__BlobChunk *c = pm->blob_chunk;
        struct node__blob_want w;
        fuzz_blob_want(&w);
        judge(&w, c);
        /* The request its own fields would match, where they make one. */
        if (c->record_id.len == sizeof w.record_id && c->blob_id.len == sizeof w.blob_id &&
            c->offset <= c->total_bytes) {
            memcpy(w.record_id, c->record_id.data, sizeof w.record_id);
            memcpy(w.blob_id, c->blob_id.data, sizeof w.blob_id);
            w.offset = c->offset;
            w.total_bytes = c->total_bytes;
            judge(&w, c);
        }
    }
    ehr__v1__peer_message__free_unpacked(pm, NULL);
    return 0;
}
