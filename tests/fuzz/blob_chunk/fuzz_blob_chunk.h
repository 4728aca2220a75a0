/*
 * fuzz_blob_chunk.h - the request the blob-chunk fuzz target checks every
 * input against, shared with the program that writes its seeds: a blob of
 * two whole pieces and 10 bytes, its second piece asked for.
 */
#ifndef EHR_FUZZ_BLOB_CHUNK_H
#define EHR_FUZZ_BLOB_CHUNK_H

#include <string.h>

#include "blob_replica.h"

static inline void fuzz_blob_want(struct node__blob_want *w)
{
    memset(w, 0, sizeof *w);
    memset(w->record_id, 0x11, sizeof w->record_id);
    memset(w->blob_id, 0x22, sizeof w->blob_id);
    w->total_bytes = 2 * (uint64_t)NODE_BLOB_REPLICA_CHUNK_BYTES + 10;
    w->offset = NODE_BLOB_REPLICA_CHUNK_BYTES;
}

#endif /* EHR_FUZZ_BLOB_CHUNK_H */
