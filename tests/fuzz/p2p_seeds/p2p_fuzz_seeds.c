/*
 * p2p_fuzz_seeds - write the seed corpora of the p2p fuzz targets:
 * recorded handshakes between the fixture's keys (each role), followed by
 * frames under the resulting session keys, plus frames under the fixture's
 * frame key and frame bodies. Re-run it when the formats change:
 *
 *   build-fuzz/tests/fuzz/p2p_seeds/p2p_fuzz_seeds tests/fuzz/corpus
 *
 * Not a test; the seeds it writes are committed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "p2p_fuzz_fixture.h"

enum { SEED_BYTES_MAX = 1 << 20 };

typedef struct seed {
    uint8_t bytes[SEED_BYTES_MAX];
    size_t len;
} seed;

static void seed_put(seed *s, const void *data, size_t len)
{
    EHR_ASSERT(s->len + len <= sizeof s->bytes);
    memcpy(s->bytes + s->len, data, len);
    s->len += len;
}

static void seed_write(const seed *s, const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(s->bytes, 1, s->len, f) != s->len || fclose(f) != 0) {
        fprintf(stderr, "p2p_fuzz_seeds: cannot write %s\n", path);
        exit(1);
    }
}

static int allow_all(void *ctx, const uint8_t key[P2P_KEY_BYTES])
{
    return 0;
}

/* Append sealed frames (three messages, a keep-alive, many small messages). */
static void put_frames(seed *s, p2p__cipher *tx)
{
    p2p__outbuf ob;
    memset(&ob, 0, sizeof ob);
    static const uint8_t filler[300] = {0};
    EHR_ASSERT(p2p__outbuf_append(&ob, tx, (const uint8_t *)"raft", 4, 1 << 24) == 0);
    EHR_ASSERT(p2p__outbuf_append(&ob, tx, NULL, 0, 1 << 24) == 0);
    EHR_ASSERT(p2p__outbuf_append(&ob, tx, filler, sizeof filler, 1 << 24) == 0);
    EHR_ASSERT(p2p__outbuf_keepalive(&ob, tx, 1 << 24) == 0);
    for (int i = 0; i < 200; i++)
        EHR_ASSERT(p2p__outbuf_append(&ob, tx, filler, (size_t)i, 1 << 24) == 0);
    p2p__outbuf_seal(&ob, tx);
    seed_put(s, ob.data, ob.len);
    p2p__outbuf_free(&ob);
}

/* A handshake between the fixture's keys; the bytes each side sent, in
 * INIT_WIRE / RESP_WIRE, and the session ciphers. */
static void fixture_handshake(const char *init_chain, seed *init_wire, seed *resp_wire,
                              p2p__cipher *init_tx, p2p__cipher *resp_tx)
{
    ehr_signing_key ik, rk;
    ehr_kx_key ie, re;
    p2p_fuzz_node_key(&ik, P2P_FUZZ_INITIATOR_NODE);
    p2p_fuzz_node_key(&rk, P2P_FUZZ_RESPONDER_NODE);
    p2p_fuzz_ephemeral(&ie, P2P_FUZZ_INITIATOR_EPHEMERAL);
    p2p_fuzz_ephemeral(&re, P2P_FUZZ_RESPONDER_EPHEMERAL);
    p2p__hs_params ip = {.initiator = true,
                         .node_key = &ik,
                         .chain_id = init_chain,
                         .member_check = allow_all,
                         .ephemeral_for_test = &ie};
    p2p__hs_params rp = {.initiator = false,
                         .node_key = &rk,
                         .chain_id = P2P_FUZZ_CHAIN,
                         .member_check = allow_all,
                         .ephemeral_for_test = &re};
    static p2p__handshake i, r;
    EHR_ASSERT(p2p__hs_start(&i, &ip) == 0);
    EHR_ASSERT(p2p__hs_start(&r, &rp) == 0);
    for (int round = 0; round < 2; round++) {
        uint8_t i_out[P2P__HS_OUT_BYTES_MAX], r_out[P2P__HS_OUT_BYTES_MAX];
        size_t i_len = i.out_len, r_len = r.out_len, consumed = 0;
        memcpy(i_out, i.out, i_len);
        memcpy(r_out, r.out, r_len);
        i.out_len = r.out_len = 0;
        seed_put(init_wire, i_out, i_len);
        seed_put(resp_wire, r_out, r_len);
        if (i_len > 0 && (int)r.state == P2P__HS_AWAIT_HELLO + round)
            p2p__hs_feed(&r, i_out, i_len, &consumed);
        if (r_len > 0 && (int)i.state == P2P__HS_AWAIT_HELLO + round)
            p2p__hs_feed(&i, r_out, r_len, &consumed);
    }
    if (init_tx != NULL) {
        EHR_ASSERT(i.state == P2P__HS_DONE && r.state == P2P__HS_DONE);
        *init_tx = i.tx;
        *resp_tx = r.tx;
    }
    p2p__hs_wipe(&i);
    p2p__hs_wipe(&r);
}

static void make_dir(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "p2p_fuzz_seeds: cannot create %s\n", path);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_ROOT (e.g. tests/fuzz/corpus)\n", argv[0]);
        return 2;
    }
    if (ehr_crypto_init() != 0)
        return 1;
    char hs_dir[900], frame_dir[900];
    snprintf(hs_dir, sizeof hs_dir, "%s/p2p_handshake", argv[1]);
    snprintf(frame_dir, sizeof frame_dir, "%s/p2p_frame", argv[1]);
    make_dir(argv[1]);
    make_dir(hs_dir);
    make_dir(frame_dir);
    static seed a, b, s;

    /* Handshakes that complete, then frames. */
    p2p__cipher init_tx, resp_tx;
    a.len = b.len = 0;
    fixture_handshake(P2P_FUZZ_CHAIN, &a, &b, &init_tx, &resp_tx);
    s.len = 0;
    seed_put(&s, "\x00\xff", 2); /* we respond; the initiator's bytes follow */
    seed_put(&s, a.bytes, a.len);
    put_frames(&s, &init_tx);
    seed_write(&s, hs_dir, "respond-complete-frames");
    s.bytes[1] = 0; /* the same, one byte per chunk */
    seed_write(&s, hs_dir, "respond-complete-bytewise");
    s.len = 0;
    seed_put(&s, "\x01\x10", 2); /* we initiate; the responder's bytes follow */
    seed_put(&s, b.bytes, b.len);
    put_frames(&s, &resp_tx);
    seed_write(&s, hs_dir, "initiate-complete-frames");
    /* Only the hello. */
    s.len = 0;
    seed_put(&s, "\x00\xff", 2);
    seed_put(&s, a.bytes, a.len - (P2P__LENGTH_BYTES + 2 + EHR_SCHNORR_SIG_BYTES));
    seed_write(&s, hs_dir, "respond-hello-only");
    /* Another chain. */
    a.len = b.len = 0;
    fixture_handshake("other-chain", &a, &b, NULL, NULL);
    s.len = 0;
    seed_put(&s, "\x00\xff", 2);
    seed_put(&s, a.bytes, a.len);
    seed_write(&s, hs_dir, "respond-other-chain");
    /* Text. */
    s.len = 0;
    seed_put(&s, "\x00\x07GET / HTTP/1.1\r\nHost: node\r\n\r\n", 32);
    seed_write(&s, hs_dir, "respond-http");

    /* Frame streams under the fixture's frame key. */
    p2p__cipher tx;
    p2p_fuzz_frame_cipher(&tx);
    s.len = 0;
    seed_put(&s, "\x00\x03", 2);
    put_frames(&s, &tx);
    seed_write(&s, frame_dir, "stream-frames");
    s.len = 0;
    seed_put(&s, "\x00\xff", 2);
    uint8_t over[4] = {0x00, 0x10, 0x00, 0x51}; /* just over P2P_FRAME_BYTES_MAX */
    seed_put(&s, over, sizeof over);
    seed_write(&s, frame_dir, "stream-over-limit");
    /* Frame bodies. */
    s.len = 0;
    static const uint8_t body[] = {0x01, 0x0a, 0x02, 'h', 'i',  0x10, 0x96, 0x01, 0x19,
                                   1,    2,    3,    4,   5,    6,    7,    8,    0x25,
                                   1,    2,    3,    4,   0x2a, 0x01, 'x',  0x0a, 0x00};
    seed_put(&s, body, sizeof body);
    seed_write(&s, frame_dir, "body-mixed-fields");
    s.len = 0;
    seed_put(&s, "\x01", 1);
    seed_write(&s, frame_dir, "body-empty");
    printf("p2p_fuzz_seeds: wrote %s and %s\n", hs_dir, frame_dir);
    return 0;
}
