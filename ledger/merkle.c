/*
 * merkle.c - Merkle trees over a block's transaction hashes, in the shape of
 * RFC 6962 (Certificate Transparency): domain-separated leaf and inner
 * hashes, so a leaf can never pass for an inner node, and audit paths
 * (inclusion proofs) that a light client can check against a header.
 *
 * The root is computed bottom-up: pair neighbours level by level and carry
 * an odd last node up unchanged. That gives the same tree as RFC 6962's
 * recursive definition (split at the largest power of two below n); the
 * tests check the two against each other.
 */
#include "ledger_format_internal.h"

#include <string.h>

static void leaf_hash(uint8_t out[EHR_HASH_BYTES], const uint8_t tx_hash[EHR_HASH_BYTES])
{
    uint8_t buf[1 + EHR_HASH_BYTES];
    buf[0] = 0x00;
    memcpy(buf + 1, tx_hash, EHR_HASH_BYTES);
    ehr_sha256(out, buf, sizeof buf);
}

static void node_hash(uint8_t out[EHR_HASH_BYTES], const uint8_t left[EHR_HASH_BYTES],
                      const uint8_t right[EHR_HASH_BYTES])
{
    uint8_t buf[1 + 2 * EHR_HASH_BYTES];
    buf[0] = 0x01;
    memcpy(buf + 1, left, EHR_HASH_BYTES);
    memcpy(buf + 1 + EHR_HASH_BYTES, right, EHR_HASH_BYTES);
    ehr_sha256(out, buf, sizeof buf);
}

/* Root of the COUNT leaves starting at HASHES, using SCRATCH (COUNT hashes). */
static void root_of(const uint8_t (*hashes)[EHR_HASH_BYTES], size_t count,
                    uint8_t (*scratch)[EHR_HASH_BYTES], uint8_t root[EHR_HASH_BYTES])
{
    EHR_ASSERT(count > 0);
    for (size_t i = 0; i < count; i++)
        leaf_hash(scratch[i], hashes[i]);
    size_t n = count;
    while (n > 1) {
        size_t next = 0;
        for (size_t i = 0; i + 1 < n; i += 2)
            node_hash(scratch[next++], scratch[i], scratch[i + 1]);
        if (n % 2 == 1)
            memmove(scratch[next++], scratch[n - 1], EHR_HASH_BYTES);
        EHR_ASSERT(next == (n + 1) / 2);
        n = next;
    }
    memcpy(root, scratch[0], EHR_HASH_BYTES);
}

void ledger_merkle_root(const uint8_t (*hashes)[EHR_HASH_BYTES], size_t count,
                        uint8_t root[EHR_HASH_BYTES])
{
    EHR_ASSERT(count <= EHR_BLOCK_TX_COUNT_MAX);
    if (count == 0) {
        ehr_sha256(root, "", 0);
        return;
    }
    uint8_t(*scratch)[EHR_HASH_BYTES] = ehr_malloc(count * EHR_HASH_BYTES);
    root_of(hashes, count, scratch, root);
    ehr_free(scratch);
}

/* The largest power of two strictly below N (N >= 2). */
static size_t split_point(size_t n)
{
    EHR_ASSERT(n >= 2);
    size_t k = 1;
    while (k * 2 < n)
        k *= 2;
    return k;
}

/* RFC 6962 PATH(index, hashes[0:count]), appended leaf-first to PROOF. */
static void path_of(const uint8_t (*hashes)[EHR_HASH_BYTES], size_t count, size_t index,
                    uint8_t (*scratch)[EHR_HASH_BYTES],
                    uint8_t proof[EHR_MERKLE_PROOF_HASHES_MAX][EHR_HASH_BYTES], size_t *depth)
{
    if (count <= 1)
        return;
    size_t k = split_point(count);
    uint8_t sibling[EHR_HASH_BYTES];
    if (index < k) {
        path_of(hashes, k, index, scratch, proof, depth);
        root_of(hashes + k, count - k, scratch, sibling);
    } else {
        path_of(hashes + k, count - k, index - k, scratch, proof, depth);
        root_of(hashes, k, scratch, sibling);
    }
    EHR_ASSERT(*depth < EHR_MERKLE_PROOF_HASHES_MAX);
    memcpy(proof[(*depth)++], sibling, EHR_HASH_BYTES);
}

int ledger_merkle_proof(const uint8_t (*hashes)[EHR_HASH_BYTES], size_t count, size_t index,
                        uint8_t proof[EHR_MERKLE_PROOF_HASHES_MAX][EHR_HASH_BYTES],
                        size_t *proof_count)
{
    if (count > EHR_BLOCK_TX_COUNT_MAX || index >= count)
        return EHR_EINVAL;
    uint8_t(*scratch)[EHR_HASH_BYTES] = ehr_malloc(count * EHR_HASH_BYTES);
    size_t depth = 0;
    path_of(hashes, count, index, scratch, proof, &depth);
    ehr_free(scratch);
    *proof_count = depth;
    return 0;
}

int ledger_merkle_proof_check(const uint8_t leaf[EHR_HASH_BYTES], size_t index, size_t count,
                              const uint8_t (*proof)[EHR_HASH_BYTES], size_t proof_count,
                              const uint8_t root[EHR_HASH_BYTES])
{
    if (count == 0 || count > EHR_BLOCK_TX_COUNT_MAX || index >= count ||
        proof_count > EHR_MERKLE_PROOF_HASHES_MAX)
        return EHR_EINVAL;
    /* RFC 9162, 2.1.3.2: walk up from the leaf; FN is the node's index at
     * its level, SN the last index at that level. */
    size_t fn = index, sn = count - 1;
    uint8_t r[EHR_HASH_BYTES];
    leaf_hash(r, leaf);
    for (size_t i = 0; i < proof_count; i++) {
        if (sn == 0)
            return EHR_EINVAL; /* more hashes than levels */
        if ((fn & 1) == 1 || fn == sn) {
            node_hash(r, proof[i], r);
            /* A right-edge node with no sibling was carried up unchanged. */
            while ((fn & 1) == 0 && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            node_hash(r, r, proof[i]);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return EHR_EINVAL; /* fewer hashes than levels */
    return memcmp(r, root, EHR_HASH_BYTES) == 0 ? 0 : EHR_ECORRUPT;
}
