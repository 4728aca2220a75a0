/*
 * blob_chunk_seeds.c - writes the seed corpus of fuzz_blob_chunk into DIR
 * (tests/fuzz/corpus/fuzz_blob_chunk): PeerMessages holding the last
 * piece of the fixed request's blob, which it takes, "missing", "busy"
 * (with its near misses: another offset, data, "missing" too), and one
 * near miss of each check (another record, another blob, a wrong offset,
 * a wrong size, a piece a byte short or long), and a BlobFetch. Usage:
 * blob_chunk_seeds DIR.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ehr/v1/p2p.pb-c.h"
#include "fuzz_blob_chunk.h"

static uint8_t piece[16];

static void put(const char *dir, const char *name, const Ehr__V1__PeerMessage *pm)
{
    size_t len = ehr__v1__peer_message__get_packed_size(pm);
    uint8_t *buf = malloc(len + 1);
    if (buf == NULL)
        exit(1);
    ehr__v1__peer_message__pack(pm, buf);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "blob_chunk_seeds: cannot write %s\n", path);
        exit(1);
    }
    free(buf);
}

static void chunk_of(const char *dir, const char *name, struct node__blob_want *w, uint64_t offset,
                     uint64_t total, size_t len, bool missing, bool busy)
{
    Ehr__V1__BlobChunk c = EHR__V1__BLOB_CHUNK__INIT;
    c.record_id = (ProtobufCBinaryData){sizeof w->record_id, w->record_id};
    c.blob_id = (ProtobufCBinaryData){sizeof w->blob_id, w->blob_id};
    c.offset = offset;
    c.total_bytes = total;
    c.data = (ProtobufCBinaryData){len, piece};
    c.missing = missing;
    c.busy = busy;
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_CHUNK;
    pm.blob_chunk = &c;
    put(dir, name, &pm);
}

static void chunk(const char *dir, const char *name, struct node__blob_want *w, uint64_t offset,
                  uint64_t total, size_t len, bool missing)
{
    chunk_of(dir, name, w, offset, total, len, missing, false);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: blob_chunk_seeds DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    memset(piece, 0x5c, sizeof piece);
    struct node__blob_want w;
    fuzz_blob_want(&w);
    const uint64_t k = NODE_BLOB_REPLICA_CHUNK_BYTES, t = w.total_bytes;
    /* The last piece (10 bytes) rather than a whole one, to keep the
     * checked-in seeds small; the whole-piece paths are tested by
     * tests/node/test_replication.c. */
    w.offset = 2 * k;
    chunk(dir, "taken_last", &w, 2 * k, t, 10, false);
    chunk(dir, "missing", &w, 0, 0, 0, true);
    chunk(dir, "missing_with_data", &w, 0, 0, 1, true);
    /* "Busy" at the fixed request's offset (k), and near misses. */
    chunk_of(dir, "busy", &w, k, 0, 0, false, true);
    chunk_of(dir, "busy_offset", &w, 2 * k, 0, 0, false, true);
    chunk_of(dir, "busy_with_data", &w, k, 0, 1, false, true);
    chunk_of(dir, "busy_and_missing", &w, k, 0, 0, true, true);
    chunk(dir, "offset", &w, k, t, 10, false);
    chunk(dir, "total", &w, 2 * k, t + 1, 10, false);
    chunk(dir, "short", &w, 2 * k, t, 9, false);
    chunk(dir, "long", &w, 2 * k, t, 11, false);
    struct node__blob_want other = w;
    other.record_id[0] ^= 1;
    chunk(dir, "record", &other, 2 * k, t, 10, false);
    other = w;
    other.blob_id[31] ^= 1;
    chunk(dir, "blob", &other, 2 * k, t, 10, false);
    Ehr__V1__BlobFetch q = EHR__V1__BLOB_FETCH__INIT;
    q.record_id = (ProtobufCBinaryData){sizeof w.record_id, w.record_id};
    q.blob_id = (ProtobufCBinaryData){sizeof w.blob_id, w.blob_id};
    q.offset = k;
    Ehr__V1__PeerMessage pm = EHR__V1__PEER_MESSAGE__INIT;
    pm.kind_case = EHR__V1__PEER_MESSAGE__KIND_BLOB_FETCH;
    pm.blob_fetch = &q;
    put(dir, "fetch", &pm);
    return 0;
}
