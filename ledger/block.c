/*
 * block.c - blocks and the genesis document: canonical parsing of a Block
 * (without copying its transactions), the header rules of block.proto, the
 * Merkle and signature checks, building and signing a block, and deriving
 * block 0 from a genesis document.
 *
 * Not here: whether a block links to the ledger's tip or whether its
 * proposer is a member (store.c knows the tip and the state).
 */
#include "ledger_format_internal.h"

#include <string.h>

/* ---- Parsing ---- */

static bool all_zero(const uint8_t *p, size_t len)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= p[i];
    return acc == 0;
}

/* Decode the header bytes canonically and apply block.proto's rules. */
static int header_decode(const uint8_t *bytes, size_t len, ledger_block_header *out, ehr_diag *diag)
{
    Ehr__V1__BlockHeader *h = ehr__v1__block_header__unpack(NULL, len, bytes);
    if (h == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "block header does not decode");
    int rc = 0;
    if (!ledger__proto_canonical(&h->base, bytes, len)) {
        rc = ehr_diag_fail(diag, EHR_EINVAL, "block header is not in canonical form");
        goto out;
    }
    if (h->prev_hash.len != EHR_HASH_BYTES || h->tx_root.len != EHR_HASH_BYTES) {
        rc = ehr_diag_fail(diag, EHR_EINVAL, "block header: prev_hash and tx_root must be %d bytes",
                           EHR_HASH_BYTES);
        goto out;
    }
    if (h->tx_count > EHR_BLOCK_TX_COUNT_MAX) {
        rc = ehr_diag_fail(diag, EHR_ETOOBIG, "block holds %u transactions, over the limit of %d",
                           (unsigned)h->tx_count, EHR_BLOCK_TX_COUNT_MAX);
        goto out;
    }
    memset(out, 0, sizeof *out);
    if (h->height == 0) {
        if (!all_zero(h->prev_hash.data, EHR_HASH_BYTES) || h->proposer.len != 0 ||
            h->raft_term != 0 || h->raft_index != 0 || h->tx_count != 0 ||
            h->genesis_hash.len != EHR_HASH_BYTES) {
            rc = ehr_diag_fail(diag, EHR_EINVAL,
                               "block 0 must have a zero prev_hash, no proposer, no Raft "
                               "position, no transactions and a genesis hash");
            goto out;
        }
        memcpy(out->genesis_hash, h->genesis_hash.data, EHR_HASH_BYTES);
    } else {
        if (h->proposer.len != EHR_SCHNORR_PUBLIC_BYTES || h->genesis_hash.len != 0) {
            rc = ehr_diag_fail(diag, EHR_EINVAL,
                               "block %llu must have a %d-byte proposer and no genesis hash",
                               (unsigned long long)h->height, EHR_SCHNORR_PUBLIC_BYTES);
            goto out;
        }
        memcpy(out->proposer, h->proposer.data, EHR_SCHNORR_PUBLIC_BYTES);
    }
    out->height = h->height;
    memcpy(out->prev_hash, h->prev_hash.data, EHR_HASH_BYTES);
    memcpy(out->tx_root, h->tx_root.data, EHR_HASH_BYTES);
    out->time_ms = h->time_ms;
    out->raft_term = h->raft_term;
    out->raft_index = h->raft_index;
    out->tx_count = h->tx_count;
out:
    ehr__v1__block_header__free_unpacked(h, NULL);
    return rc;
}

void ledger_block_view_release(ledger_block_view *view)
{
    if (view == NULL)
        return;
    ehr_free(view->txs);
    view->txs = NULL;
}

int ledger_block_parse(const uint8_t *bytes, size_t len, ledger_block_view *out, ehr_diag *diag)
{
    EHR_ASSERT(out != NULL);
    memset(out, 0, sizeof *out);
    if (len > EHR_BLOCK_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "block is %zu bytes, over the limit of %d", len,
                             EHR_BLOCK_BYTES_MAX);
    if (bytes == NULL && len > 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "block bytes missing");
    ledger__reader r = {.data = bytes, .len = len};
    if (!ledger__tag_next(&r, 1, LEDGER__WIRE_LEN))
        return ehr_diag_fail(diag, len == 0 ? EHR_ETRUNCATED : EHR_EINVAL,
                             "block does not start with its header (field 1)");
    int rc = ledger__len_field_read(&r, 1, 1, EHR_BLOCK_HEADER_BYTES_MAX, &out->header_span);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "block header field is %s",
                             rc == EHR_ETOOBIG      ? "over its size limit"
                             : rc == EHR_ETRUNCATED ? "truncated"
                                                    : "malformed");
    rc =
        header_decode(bytes + out->header_span.offset, out->header_span.length, &out->header, diag);
    if (rc != 0)
        return rc;
    ledger_block_header *h = &out->header;
    ehr_sha256(out->hash, bytes + out->header_span.offset, out->header_span.length);

    if (ledger__tag_next(&r, 2, LEDGER__WIRE_LEN)) {
        ledger_span sig;
        rc = ledger__len_field_read(&r, 2, EHR_SCHNORR_SIG_BYTES, EHR_SCHNORR_SIG_BYTES, &sig);
        if (rc != 0)
            return ehr_diag_fail(diag, rc == EHR_ETRUNCATED ? rc : EHR_EINVAL,
                                 "block signature is not exactly %d bytes", EHR_SCHNORR_SIG_BYTES);
        out->signature = bytes + sig.offset;
    }
    if ((h->height == 0) != (out->signature == NULL))
        return ehr_diag_fail(diag, EHR_EINVAL, "block %llu %s a signature",
                             (unsigned long long)h->height,
                             h->height == 0 ? "must not carry" : "lacks");

    out->txs = ehr_malloc((h->tx_count > 0 ? h->tx_count : 1) * sizeof *out->txs);
    uint32_t count = 0;
    while (ledger__tag_next(&r, 3, LEDGER__WIRE_LEN)) {
        if (count == h->tx_count) {
            rc = ehr_diag_fail(diag, EHR_EINVAL, "block holds more transactions than tx_count %u",
                               (unsigned)h->tx_count);
            goto fail;
        }
        ledger_span *span = &out->txs[count];
        rc = ledger__len_field_read(&r, 3, 1, EHR_TX_BYTES_MAX, span);
        if (rc != 0) {
            ehr_diag_fail(diag, rc, "block transaction %u is %s", (unsigned)count,
                          rc == EHR_ETOOBIG      ? "over the size limit"
                          : rc == EHR_ETRUNCATED ? "truncated"
                                                 : "malformed");
            goto fail;
        }
        ledger_tx_view tx;
        ehr_diag tx_diag;
        rc = ledger_tx_envelope_parse(bytes + span->offset, span->length, &tx, &tx_diag);
        if (rc != 0) {
            ehr_diag_fail(diag, rc, "block transaction %u: %s", (unsigned)count, tx_diag.msg);
            goto fail;
        }
        count++;
    }
    if (count != h->tx_count) {
        rc = ehr_diag_fail(diag, EHR_EINVAL, "block holds %u transactions, header says %u",
                           (unsigned)count, (unsigned)h->tx_count);
        goto fail;
    }
    if (ledger__tag_next(&r, 4, LEDGER__WIRE_LEN)) {
        rc = ledger__len_field_read(&r, 4, 1, EHR_GENESIS_BYTES_MAX, &out->genesis);
        if (rc != 0) {
            ehr_diag_fail(diag, rc, "block genesis field is malformed, truncated or too big");
            goto fail;
        }
    }
    if (r.pos != len) {
        rc = ehr_diag_fail(diag, EHR_EINVAL,
                           "block has %zu bytes of unknown, repeated or misordered fields",
                           len - r.pos);
        goto fail;
    }
    if (h->height == 0) {
        if (out->genesis.length == 0) {
            rc = ehr_diag_fail(diag, EHR_EINVAL, "block 0 lacks the genesis document");
            goto fail;
        }
        const uint8_t *g = bytes + out->genesis.offset;
        uint8_t g_hash[EHR_HASH_BYTES];
        ehr_sha256(g_hash, g, out->genesis.length);
        if (memcmp(g_hash, h->genesis_hash, EHR_HASH_BYTES) != 0) {
            rc = ehr_diag_fail(diag, EHR_EINVAL, "block 0: genesis_hash is not the document's");
            goto fail;
        }
        ehr_diag why;
        rc = ledger_genesis_parse(g, out->genesis.length, NULL, &why);
        if (rc != 0) {
            ehr_diag_fail(diag, rc, "block 0: genesis document: %s", why.msg);
            goto fail;
        }
    } else if (out->genesis.length != 0) {
        rc = ehr_diag_fail(diag, EHR_EINVAL, "only block 0 carries a genesis document");
        goto fail;
    }
    out->bytes = bytes;
    out->len = len;
    return 0;
fail:
    ledger_block_view_release(out);
    return rc;
}

/* ---- Checking ---- */

/* Hash every transaction body of VIEW into HASHES. */
static void block_tx_hashes(const ledger_block_view *view, uint8_t (*hashes)[EHR_HASH_BYTES])
{
    for (uint32_t i = 0; i < view->header.tx_count; i++) {
        ledger_tx_view tx;
        int rc = ledger_tx_envelope_parse(view->bytes + view->txs[i].offset, view->txs[i].length,
                                          &tx, NULL);
        EHR_ASSERT(rc == 0); /* ledger_block_parse checked every envelope */
        ledger_tx_hash(tx.body, tx.body_len, hashes[i]);
    }
}

int ledger_block_check(const ledger_block_view *view, unsigned flags, const char *chain_id,
                       uint8_t (*tx_hashes)[EHR_HASH_BYTES], long *failed_tx, ehr_diag *diag)
{
    EHR_ASSERT(view != NULL && view->bytes != NULL);
    EHR_ASSERT((flags & LEDGER_CHECK_TXS) == 0 || chain_id != NULL);
    if (failed_tx != NULL)
        *failed_tx = -1;
    const ledger_block_header *h = &view->header;
    uint8_t(*hashes)[EHR_HASH_BYTES] = tx_hashes;
    bool need_hashes = (flags & (LEDGER_CHECK_MERKLE | LEDGER_CHECK_TXS)) != 0;
    if (need_hashes && hashes == NULL && h->tx_count > 0)
        hashes = ehr_malloc(h->tx_count * EHR_HASH_BYTES);
    int rc = 0;
    if (need_hashes)
        block_tx_hashes(view, hashes);
    if ((flags & LEDGER_CHECK_MERKLE) != 0) {
        uint8_t root[EHR_HASH_BYTES];
        ledger_merkle_root((const uint8_t(*)[EHR_HASH_BYTES])hashes, h->tx_count, root);
        if (memcmp(root, h->tx_root, EHR_HASH_BYTES) != 0) {
            rc = ehr_diag_fail(diag, EHR_ECORRUPT,
                               "block %llu: tx_root does not match its transactions",
                               (unsigned long long)h->height);
            goto out;
        }
    }
    if ((flags & LEDGER_CHECK_HEADER_SIG) != 0 && h->height > 0) {
        ehr_public_key proposer;
        if (ehr_public_key_parse(&proposer, h->proposer) != 0 ||
            ehr_schnorr_verify(&proposer, view->hash, view->signature) != 0) {
            rc = ehr_diag_fail(diag, EHR_EBADSIG,
                               "block %llu: the proposer's header signature does not verify",
                               (unsigned long long)h->height);
            goto out;
        }
    }
    if ((flags & LEDGER_CHECK_TXS) != 0) {
        ledger_tx_rules rules = {.chain_id = chain_id, .now_ms = h->time_ms};
        ledger__key_cache keys = {0};
        for (uint32_t i = 0; i < h->tx_count; i++) {
            ehr_diag tx_diag;
            rc = ledger__tx_check(view->bytes + view->txs[i].offset, view->txs[i].length, &rules,
                                  hashes[i], &keys, NULL, &tx_diag);
            if (rc != 0) {
                if (failed_tx != NULL)
                    *failed_tx = (long)i;
                ehr_diag_fail(diag, rc, "block %llu tx %u: %s", (unsigned long long)h->height,
                              (unsigned)i, tx_diag.msg);
                goto out;
            }
        }
    }
out:
    if (hashes != tx_hashes)
        ehr_free(hashes);
    return rc;
}

/* ---- Building ---- */

/* Pack HEADER into a fresh buffer; returns it and its length in *LEN. */
static uint8_t *header_pack(const Ehr__V1__BlockHeader *header, size_t *len)
{
    size_t n = ehr__v1__block_header__get_packed_size(header);
    EHR_ASSERT(n > 0 && n <= EHR_BLOCK_HEADER_BYTES_MAX);
    uint8_t *p = ehr_malloc(n);
    size_t packed = ehr__v1__block_header__pack(header, p);
    EHR_ASSERT(packed == n);
    *len = n;
    return p;
}

static size_t len_field_size(size_t content_len)
{
    return 1 + ledger__varint_size(content_len) + content_len;
}

static size_t len_field_write(uint8_t *p, unsigned field, const uint8_t *content, size_t len)
{
    size_t n = 0;
    p[n++] = (uint8_t)((field << 3) | LEDGER__WIRE_LEN);
    n += ledger__varint_write(p + n, len);
    memcpy(p + n, content, len);
    return n + len;
}

int ledger_block_build(const ledger_block_params *params, const ledger_bytes *envelopes,
                       size_t count, const uint8_t (*tx_hashes)[EHR_HASH_BYTES],
                       const ehr_signing_key *proposer, uint8_t **out, size_t *out_len,
                       uint8_t out_hash[EHR_HASH_BYTES], ehr_diag *diag)
{
    EHR_ASSERT(params != NULL && proposer != NULL && out != NULL && out_len != NULL);
    if (params->height == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "block 0 comes from the genesis document only");
    if (count > EHR_BLOCK_TX_COUNT_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "%zu transactions, over the limit of %d", count,
                             EHR_BLOCK_TX_COUNT_MAX);
    size_t txs_bytes = 0;
    for (size_t i = 0; i < count; i++) {
        ledger_tx_view tx;
        ehr_diag tx_diag;
        int rc = ledger_tx_envelope_parse(envelopes[i].data, envelopes[i].len, &tx, &tx_diag);
        if (rc != 0)
            return ehr_diag_fail(diag, rc, "transaction %zu: %s", i, tx_diag.msg);
        txs_bytes += len_field_size(envelopes[i].len);
        if (txs_bytes > EHR_BLOCK_BYTES_MAX)
            return ehr_diag_fail(diag, EHR_ETOOBIG, "transactions over the block limit of %d bytes",
                                 EHR_BLOCK_BYTES_MAX);
    }
    uint8_t(*hashes)[EHR_HASH_BYTES] = NULL;
    if (tx_hashes == NULL && count > 0) {
        hashes = ehr_malloc(count * EHR_HASH_BYTES);
        for (size_t i = 0; i < count; i++) {
            ledger_tx_view tx;
            (void)ledger_tx_envelope_parse(envelopes[i].data, envelopes[i].len, &tx, NULL);
            ledger_tx_hash(tx.body, tx.body_len, hashes[i]);
        }
        tx_hashes = (const uint8_t(*)[EHR_HASH_BYTES])hashes;
    }
    uint8_t root[EHR_HASH_BYTES];
    ledger_merkle_root(tx_hashes, count, root);
    ehr_free(hashes);

    Ehr__V1__BlockHeader header = EHR__V1__BLOCK_HEADER__INIT;
    header.height = params->height;
    header.prev_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, (uint8_t *)params->prev_hash};
    header.tx_root = (ProtobufCBinaryData){EHR_HASH_BYTES, root};
    header.time_ms = params->time_ms;
    header.proposer =
        (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, (uint8_t *)proposer->public_key};
    header.raft_term = params->raft_term;
    header.raft_index = params->raft_index;
    header.tx_count = (uint32_t)count;
    size_t header_len;
    uint8_t *header_bytes = header_pack(&header, &header_len);
    uint8_t block_hash[EHR_HASH_BYTES], sig[EHR_SCHNORR_SIG_BYTES];
    ehr_sha256(block_hash, header_bytes, header_len);
    int rc = ehr_schnorr_sign(proposer, block_hash, sig);
    if (rc != 0) {
        ehr_free(header_bytes);
        return ehr_diag_fail(diag, rc, "signing the block header failed");
    }
    size_t total = len_field_size(header_len) + len_field_size(EHR_SCHNORR_SIG_BYTES) + txs_bytes;
    if (total > EHR_BLOCK_BYTES_MAX) {
        ehr_free(header_bytes);
        return ehr_diag_fail(diag, EHR_ETOOBIG, "block would be %zu bytes, over the limit of %d",
                             total, EHR_BLOCK_BYTES_MAX);
    }
    uint8_t *p = ehr_malloc(total);
    size_t n = len_field_write(p, 1, header_bytes, header_len);
    n += len_field_write(p + n, 2, sig, EHR_SCHNORR_SIG_BYTES);
    for (size_t i = 0; i < count; i++)
        n += len_field_write(p + n, 3, envelopes[i].data, envelopes[i].len);
    EHR_ASSERT(n == total);
    ehr_free(header_bytes);
    *out = p;
    *out_len = total;
    if (out_hash != NULL)
        memcpy(out_hash, block_hash, EHR_HASH_BYTES);
    return 0;
}

/* ---- Genesis ---- */

void ledger_member_key(uint8_t out[LEDGER_MEMBER_KEY_BYTES],
                       const uint8_t node_key[EHR_SCHNORR_PUBLIC_BYTES])
{
    _Static_assert(sizeof LEDGER_MEMBER_KEY_PREFIX - 1 + EHR_SCHNORR_PUBLIC_BYTES ==
                       LEDGER_MEMBER_KEY_BYTES,
                   "member key layout");
    memcpy(out, LEDGER_MEMBER_KEY_PREFIX, sizeof LEDGER_MEMBER_KEY_PREFIX - 1);
    memcpy(out + sizeof LEDGER_MEMBER_KEY_PREFIX - 1, node_key, EHR_SCHNORR_PUBLIC_BYTES);
}

static bool chain_id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

int ledger_chain_id_check(const char *chain_id, ehr_diag *diag)
{
    EHR_ASSERT(chain_id != NULL);
    size_t len = strlen(chain_id);
    if (len == 0 || len > EHR_CHAIN_ID_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "chain id must be 1 to %d characters",
                             EHR_CHAIN_ID_BYTES_MAX);
    for (size_t i = 0; i < len; i++)
        if (!chain_id_char(chain_id[i]))
            return ehr_diag_fail(diag, EHR_EINVAL, "chain id may use only A-Z a-z 0-9 . _ -");
    return 0;
}

bool ledger_text_ok(const char *s, size_t max)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n;) {
        uint8_t b = p[i];
        size_t more;
        uint32_t cp, min;
        if (b < 0x80) {
            more = 0, cp = b, min = 0;
        } else if (b >= 0xc2 && b <= 0xdf) {
            more = 1, cp = b & 0x1fu, min = 0x80;
        } else if (b >= 0xe0 && b <= 0xef) {
            more = 2, cp = b & 0x0fu, min = 0x800;
        } else if (b >= 0xf0 && b <= 0xf4) {
            more = 3, cp = b & 0x07u, min = 0x10000;
        } else {
            return false;
        }
        if (more >= n - i)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return false;
        i += more + 1;
    }
    return true;
}

/* A character of a host name or IPv4 address; inside [brackets] (IPv6) ':' too. */
static bool host_char(char c, bool bracketed)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || (bracketed && c == ':');
}

/* Printable ASCII only: a signer's bytes safe to quote in a message (cut
 * anywhere, still text; no control character reaches a terminal). */
static bool printable_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s < 0x20 || *s > 0x7e)
            return false;
    return true;
}

/* HOST:PORT in 1..EHR_PEER_ADDRESS_BYTES_MAX bytes: HOST a DNS name or IPv4
 * address ([A-Za-z0-9.-]) or [IPv6] ([A-Za-z0-9.:-] inside brackets), PORT
 * 1..65535 in decimal without a leading zero. Returns 0 or EHR_EINVAL with
 * the reason in DIAG. */
static int peer_address_check(const char *s, ehr_diag *diag)
{
    size_t n = strlen(s);
    if (n == 0 || n > EHR_PEER_ADDRESS_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "address: must be HOST:PORT of 1 to %d bytes",
                             EHR_PEER_ADDRESS_BYTES_MAX);
    const char *colon = strrchr(s, ':');
    const char *digits = colon != NULL ? colon + 1 : "";
    size_t count = strlen(digits);
    bool port_ok = count >= 1 && count <= 5 && digits[0] != '0';
    uint32_t port = 0;
    for (size_t i = 0; port_ok && i < count; i++) {
        port_ok = digits[i] >= '0' && digits[i] <= '9';
        port = port * 10 + (uint32_t)(digits[i] - '0');
    }
    /* The address is quoted only when it is printable: a transaction's
     * result carries this message (a member proposal), and a result's
     * reason must be text. */
    if ((!port_ok || port > 65535) && !printable_ascii(s))
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "address: not HOST:PORT with a port from 1 to 65535 (and not "
                             "printable ASCII)");
    if (!port_ok || port > 65535)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "address: \"%.64s\" is not HOST:PORT with a port from 1 to 65535", s);
    size_t host_len = (size_t)(colon - s);
    bool bracketed = host_len >= 2 && s[0] == '[' && s[host_len - 1] == ']';
    size_t from = bracketed ? 1 : 0, to = bracketed ? host_len - 1 : host_len;
    if (from == to)
        return ehr_diag_fail(diag, EHR_EINVAL, "address: \"%.64s\" has no host", s);
    for (size_t i = from; i < to; i++)
        if (!host_char(s[i], bracketed))
            return ehr_diag_fail(diag, EHR_EINVAL,
                                 "address: the host holds a character other than A-Z a-z 0-9 . - "
                                 "(and : inside [brackets])");
    return 0;
}

int ledger_genesis_member_check(const Ehr__V1__Member *m, ehr_diag *diag)
{
    EHR_ASSERT(m != NULL);
    if (!ledger_text_ok(m->name, EHR_MEMBER_NAME_BYTES_MAX))
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "name: must be 1 to %d bytes of UTF-8 text without control characters",
                             EHR_MEMBER_NAME_BYTES_MAX);
    if (m->role < EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL ||
        m->role > EHR__V1__MEMBER_ROLE__MEMBER_ROLE_REGULATOR)
        return ehr_diag_fail(diag, EHR_EINVAL, "role: %d is not a known role", (int)m->role);
    ehr_public_key key;
    if (m->node_key.len != EHR_SCHNORR_PUBLIC_BYTES ||
        ehr_public_key_parse(&key, m->node_key.data) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "node_key: not a valid BIP-340 x-only public key (%d bytes)",
                             EHR_SCHNORR_PUBLIC_BYTES);
    /* ehr_kx_public_key_check refuses zero and the other points of small
     * order, whose shared secrets an attacker could predict. */
    if (m->kx_key.len != EHR_KX_PUBLIC_BYTES || ehr_kx_public_key_check(m->kx_key.data) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "kx_key: not a valid X25519 public key (%d bytes)",
                             EHR_KX_PUBLIC_BYTES);
    return peer_address_check(m->peer_address, diag);
}

static bool bytes_equal(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
    return a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
}

/* The field in which checked members A and B collide, or NULL. */
static const char *member_collision(const Ehr__V1__Member *a, const Ehr__V1__Member *b)
{
    if (strcmp(a->name, b->name) == 0)
        return "name";
    if (bytes_equal(a->node_key, b->node_key))
        return "node_key";
    if (bytes_equal(a->kx_key, b->kx_key))
        return "kx_key";
    if (strcmp(a->peer_address, b->peer_address) == 0)
        return "address";
    return NULL;
}

/* How many bytes of the valid UTF-8 NAME fit in MAX without splitting a character. */
static int name_cut(const char *name, size_t max)
{
    size_t n = strlen(name);
    if (n <= max)
        return (int)n;
    while (max > 0 && ((uint8_t)name[max] & 0xc0) == 0x80)
        max--;
    return (int)max;
}

/* Emergency access is for clinical roles only, each named once. */
static int emergency_check(const Ehr__V1__EmergencyPolicy *p, ehr_diag *diag)
{
    if (p == NULL)
        return 0;
    uint32_t seen = 0;
    for (size_t i = 0; i < p->n_roles; i++) {
        Ehr__V1__MemberRole r = p->roles[i];
        bool clinical = r == EHR__V1__MEMBER_ROLE__MEMBER_ROLE_HOSPITAL ||
                        r == EHR__V1__MEMBER_ROLE__MEMBER_ROLE_LAB ||
                        r == EHR__V1__MEMBER_ROLE__MEMBER_ROLE_PHARMACY;
        if (!clinical)
            return ehr_diag_fail(diag, EHR_EINVAL,
                                 "emergency.roles[%zu]: role %d is not a clinical role (hospital, "
                                 "lab, pharmacy): only those may use emergency access",
                                 i, (int)r);
        if (seen & (1u << r))
            return ehr_diag_fail(diag, EHR_EINVAL, "emergency.roles[%zu]: role %d named twice", i,
                                 (int)r);
        seen |= 1u << r;
    }
    return 0;
}

static int genesis_check(const Ehr__V1__Genesis *g, ehr_diag *diag)
{
    int rc = ledger_chain_id_check(g->chain_id, diag);
    if (rc != 0)
        return rc;
    if (g->time_ms == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "genesis time is missing");
    if (g->time_ms > EHR_GENESIS_TIME_MS_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "genesis time %llu ms is over the maximum %llu",
                             (unsigned long long)g->time_ms,
                             (unsigned long long)EHR_GENESIS_TIME_MS_MAX);
    if (g->n_members == 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "no members: a chain needs at least one");
    if (g->n_members > EHR_GENESIS_MEMBERS_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "%zu members, over the maximum %d", g->n_members,
                             EHR_GENESIS_MEMBERS_MAX);
    /* Members are named by position from 1 and, once the name is known to
     * be printable, by name: "member 2 (\"Lab\"): kx_key: ...". */
    for (size_t i = 0; i < g->n_members; i++) {
        const Ehr__V1__Member *m = g->members[i];
        ehr_diag why;
        if (ledger_genesis_member_check(m, &why) != 0) {
            if (!ledger_text_ok(m->name, EHR_MEMBER_NAME_BYTES_MAX))
                return ehr_diag_fail(diag, EHR_EINVAL, "member %zu: %s", i + 1, why.msg);
            return ehr_diag_fail(diag, EHR_EINVAL, "member %zu (\"%.*s\"): %s", i + 1,
                                 name_cut(m->name, 48), m->name, why.msg);
        }
        for (size_t j = 0; j < i; j++) {
            const char *field = member_collision(g->members[j], m);
            if (field != NULL)
                return ehr_diag_fail(diag, EHR_EINVAL,
                                     "member %zu (\"%.*s\"): %s: same as member %zu", i + 1,
                                     name_cut(m->name, 48), m->name, field, j + 1);
        }
    }
    return emergency_check(g->emergency, diag);
}

int ledger_genesis_parse(const uint8_t *bytes, size_t len, Ehr__V1__Genesis **out, ehr_diag *diag)
{
    if (out != NULL)
        *out = NULL;
    if (len > EHR_GENESIS_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "genesis is %zu bytes, over the limit of %d", len,
                             EHR_GENESIS_BYTES_MAX);
    if (bytes == NULL && len > 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "genesis bytes missing");
    Ehr__V1__Genesis *g = ehr__v1__genesis__unpack(NULL, len, bytes);
    if (g == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "genesis does not decode as an ehr.v1.Genesis");
    int rc = 0;
    if (!ledger__proto_canonical(&g->base, bytes, len))
        rc = ehr_diag_fail(diag, EHR_EINVAL, "genesis is not in canonical form");
    else
        rc = genesis_check(g, diag);
    if (rc != 0 || out == NULL)
        ehr__v1__genesis__free_unpacked(g, NULL);
    else
        *out = g;
    return rc;
}

int ledger_genesis_encode(const Ehr__V1__Genesis *genesis, uint8_t **out, size_t *out_len,
                          ehr_diag *diag)
{
    EHR_ASSERT(genesis != NULL && out != NULL && out_len != NULL);
    size_t n = ehr__v1__genesis__get_packed_size(genesis);
    if (n > EHR_GENESIS_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_ETOOBIG, "genesis would be %zu bytes, over the limit of %d",
                             n, EHR_GENESIS_BYTES_MAX);
    uint8_t *p = ehr_malloc(n > 0 ? n : 1);
    size_t packed = ehr__v1__genesis__pack(genesis, p);
    EHR_ASSERT(packed == n);
    /* Check what was written, as a reader will see it. */
    int rc = ledger_genesis_parse(p, n, NULL, diag);
    if (rc != 0) {
        ehr_free(p);
        return rc;
    }
    *out = p;
    *out_len = n;
    return 0;
}

int ledger_genesis_block_build(const uint8_t *genesis, size_t len, uint8_t **out, size_t *out_len,
                               ehr_diag *diag)
{
    EHR_ASSERT(out != NULL && out_len != NULL);
    Ehr__V1__Genesis *g;
    int rc = ledger_genesis_parse(genesis, len, &g, diag);
    if (rc != 0)
        return rc;
    uint8_t zero[EHR_HASH_BYTES] = {0}, empty_root[EHR_HASH_BYTES], genesis_hash[EHR_HASH_BYTES];
    ledger_merkle_root(NULL, 0, empty_root);
    ehr_sha256(genesis_hash, genesis, len);

    Ehr__V1__BlockHeader header = EHR__V1__BLOCK_HEADER__INIT;
    header.height = 0;
    header.prev_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, zero};
    header.tx_root = (ProtobufCBinaryData){EHR_HASH_BYTES, empty_root};
    header.time_ms = g->time_ms;
    header.genesis_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, genesis_hash};
    ehr__v1__genesis__free_unpacked(g, NULL);
    size_t header_len;
    uint8_t *header_bytes = header_pack(&header, &header_len);

    Ehr__V1__Block block = EHR__V1__BLOCK__INIT;
    block.header = (ProtobufCBinaryData){header_len, header_bytes};
    block.genesis = (ProtobufCBinaryData){len, (uint8_t *)genesis};
    size_t n = ehr__v1__block__get_packed_size(&block);
    EHR_ASSERT(n <= EHR_BLOCK_BYTES_MAX);
    uint8_t *p = ehr_malloc(n);
    size_t packed = ehr__v1__block__pack(&block, p);
    EHR_ASSERT(packed == n);
    ehr_free(header_bytes);
    *out = p;
    *out_len = n;
    return 0;
}
