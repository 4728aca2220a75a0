/*
 * fuzz_join_file - libFuzzer target for the join file's decoder
 * (node_datadir_join_decode): the members and tip a joining node starts
 * from, read from its data directory.
 *
 * Oracle beyond "no crash": a file we accept holds 1 to 16 members with
 * 32-byte distinct keys and a 32-byte block hash, and encodes back to bytes
 * that decode to the same members.
 */
#include <stdlib.h>
#include <string.h>

#include "datadir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Ehr__V1__JoinInfo *join = NULL;
    ehr_diag diag;
    if (node_datadir_join_decode(data, size, &join, &diag) != 0) {
        if (join != NULL)
            abort();
        return 0;
    }
    if (join->n_members < 1 || join->n_members > NODE_DATADIR_JOIN_MEMBERS_MAX ||
        join->block_hash.len != 32)
        abort();
    for (size_t i = 0; i < join->n_members; i++)
        if (join->members[i]->node_key.len != 32)
            abort();
    size_t len = ehr__v1__join_info__get_packed_size(join);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        abort();
    ehr__v1__join_info__pack(join, buf);
    Ehr__V1__JoinInfo *again = NULL;
    if (node_datadir_join_decode(buf, len, &again, &diag) != 0 ||
        again->n_members != join->n_members ||
        memcmp(again->members[0]->node_key.data, join->members[0]->node_key.data, 32) != 0)
        abort();
    ehr__v1__join_info__free_unpacked(again, NULL);
    ehr__v1__join_info__free_unpacked(join, NULL);
    free(buf);
    return 0;
}
