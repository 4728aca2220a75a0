/*
 * bench_wire - what the hand-written protobuf codecs cost on their hot
 * paths, each in a tight loop over bytes already in memory (no I/O, no
 * crypto beyond what the parser itself does):
 *
 *   - p2p: cutting a 64 KiB PeerFrame body of 256-byte messages into
 *     messages (p2p__body_next), as a link does for every frame it opens;
 *   - raft: node_raft_wire_encode and node_raft_wire_decode of a heartbeat
 *     and of appends of 64 and 1024 entries of 64 bytes;
 *   - ledger: the canonical framing parsers: a transaction envelope, a block
 *     of 256 transactions (which also unpacks the header with protobuf-c and
 *     hashes it), a stored tx location and a write-log record of 64 writes
 *     (which also checks its checksum).
 *
 * Usage: bench_wire [--rounds R] [--ms MS] [--calls N] [--only TEXT]
 * Each figure is the best of R rounds of about MS milliseconds each, so load
 * from other processes shows as spread, not as a slower best. Prints figures
 * only; nothing here judges them. Written to compare a codec change before
 * and after on one machine: run both binaries alternately.
 *
 * --calls N makes every round exactly N calls (no calibration) and --only
 * runs the cases whose name contains TEXT: together they give a fixed
 * amount of work, for an instruction count under
 * `valgrind --tool=cachegrind`, which a shared machine does not disturb.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ledger_internal.h"
#include "p2p_internal.h"
#include "raft_wire.h"

enum {
    ROUNDS_MAX = 1000,
    ROUND_MS_MAX = 10000,
    CALLS_MAX = 1000000000,
    P2P_MESSAGE_BYTES = 256,
    RAFT_PAYLOAD_BYTES = 64,
    RAFT_ENTRIES_MAX = 1024,
    BLOCK_TXS = 256,
    TX_BODY_BYTES = 300,
    WRITES = 64,
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_wire: %s: %s\n", what, ehr_errname(err));
    exit(1);
}

static volatile uint64_t sink; /* keeps results alive */

/* ---- p2p ---- */

static uint8_t p2p_body[P2P__FRAME_BATCH_BYTES];
static size_t p2p_body_len;
static size_t p2p_body_messages;

static void p2p_setup(void)
{
    uint8_t msg[P2P_MESSAGE_BYTES];
    memset(msg, 0x42, sizeof msg);
    size_t record = p2p__record_header_bytes(sizeof msg) + sizeof msg;
    while (p2p_body_len + record <= sizeof p2p_body) {
        p2p_body_len += p2p__record_header_write(p2p_body + p2p_body_len, sizeof msg);
        memcpy(p2p_body + p2p_body_len, msg, sizeof msg);
        p2p_body_len += sizeof msg;
        p2p_body_messages++;
    }
}

static void p2p_body_parse(void)
{
    size_t pos = 0, len = 0, count = 0;
    const uint8_t *m = NULL;
    int rc;
    while ((rc = p2p__body_next(p2p_body, p2p_body_len, &pos, &m, &len)) == 1)
        count += len;
    if (rc != 0)
        die("p2p__body_next", rc);
    sink += count;
}

/* ---- raft ---- */

static uint8_t raft_payload[RAFT_PAYLOAD_BYTES];
static struct raft_entry raft_entries[RAFT_ENTRIES_MAX];
static struct raft_message raft_heartbeat, raft_append64, raft_append1024;
static uint8_t raft_buf[NODE_RAFT_WIRE_BYTES_MAX];
static uint8_t raft_heartbeat_bytes[64], raft_append64_bytes[64 * 128],
    raft_append1024_bytes[1024 * 128];
static size_t raft_heartbeat_len, raft_append64_len, raft_append1024_len;

static void raft_setup(void)
{
    memset(raft_payload, 0x17, sizeof raft_payload);
    for (uint32_t i = 0; i < RAFT_ENTRIES_MAX; i++)
        raft_entries[i] = (struct raft_entry){.term = 7,
                                              .index = 1000000 + i,
                                              .type = RAFT_ENTRY_NORMAL,
                                              .size = sizeof raft_payload,
                                              .data = raft_payload};
    raft_heartbeat = (struct raft_message){
        .type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 7, .commit = 999999, .context = 42};
    raft_append64 = (struct raft_message){.type = RAFT_MSG_APPEND,
                                          .from = 1,
                                          .to = 2,
                                          .term = 7,
                                          .index = 999999,
                                          .log_term = 7,
                                          .commit = 999990,
                                          .entry_count = 64,
                                          .entries = raft_entries};
    raft_append1024 = raft_append64;
    raft_append1024.entry_count = 1024;
    struct {
        const struct raft_message *m;
        uint8_t *out;
        size_t cap;
        size_t *len;
    } all[] = {
        {&raft_heartbeat, raft_heartbeat_bytes, sizeof raft_heartbeat_bytes, &raft_heartbeat_len},
        {&raft_append64, raft_append64_bytes, sizeof raft_append64_bytes, &raft_append64_len},
        {&raft_append1024, raft_append1024_bytes, sizeof raft_append1024_bytes,
         &raft_append1024_len},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(all); i++) {
        int rc = node_raft_wire_encode(all[i].m, all[i].out, all[i].cap, all[i].len);
        if (rc != 0)
            die("node_raft_wire_encode", rc);
    }
}

static void raft_encode(const struct raft_message *m)
{
    size_t written = 0;
    int rc = node_raft_wire_encode(m, raft_buf, sizeof raft_buf, &written);
    if (rc != 0)
        die("node_raft_wire_encode", rc);
    sink += raft_buf[written - 1];
}

static void raft_decode(const uint8_t *bytes, size_t len)
{
    struct node_raft_wire_message d;
    int rc = node_raft_wire_decode(bytes, len, &d);
    if (rc != 0)
        die("node_raft_wire_decode", rc);
    sink += d.message.entry_count + d.message.commit;
    node_raft_wire_release(&d);
}

static void raft_encode_heartbeat(void)
{
    raft_encode(&raft_heartbeat);
}

static void raft_encode_append64(void)
{
    raft_encode(&raft_append64);
}

static void raft_encode_append1024(void)
{
    raft_encode(&raft_append1024);
}

static void raft_decode_heartbeat(void)
{
    raft_decode(raft_heartbeat_bytes, raft_heartbeat_len);
}

static void raft_decode_append64(void)
{
    raft_decode(raft_append64_bytes, raft_append64_len);
}

static void raft_decode_append1024(void)
{
    raft_decode(raft_append1024_bytes, raft_append1024_len);
}

/* ---- ledger ---- */

static uint8_t tx_envelope[TX_BODY_BYTES + 80];
static size_t tx_envelope_len;
static uint8_t *block_bytes;
static size_t block_bytes_len;
static uint8_t tx_location[LEDGER__TX_LOCATION_BYTES_MAX];
static size_t tx_location_len;
static uint8_t *writes_record;
static size_t writes_record_len;

/* Append field FIELD (length-delimited) holding DATA[0..LEN) at OUT + *POS. */
static void put_len_field(uint8_t *out, size_t *pos, unsigned field, const void *data, size_t len)
{
    out[(*pos)++] = (uint8_t)(field << 3 | LEDGER__WIRE_LEN);
    *pos += ledger__varint_write(out + *pos, len);
    memcpy(out + *pos, data, len);
    *pos += len;
}

static void ledger_setup(void)
{
    uint8_t body[TX_BODY_BYTES], sig[EHR_SCHNORR_SIG_BYTES];
    memset(body, 0x61, sizeof body);
    memset(sig, 0x62, sizeof sig);
    put_len_field(tx_envelope, &tx_envelope_len, 1, body, sizeof body);
    put_len_field(tx_envelope, &tx_envelope_len, 2, sig, sizeof sig);

    uint8_t hash[EHR_HASH_BYTES], proposer[EHR_SCHNORR_PUBLIC_BYTES];
    memset(hash, 0x63, sizeof hash);
    memset(proposer, 0x64, sizeof proposer);
    Ehr__V1__BlockHeader h = EHR__V1__BLOCK_HEADER__INIT;
    h.height = 12345;
    h.prev_hash = (ProtobufCBinaryData){sizeof hash, hash};
    h.tx_root = (ProtobufCBinaryData){sizeof hash, hash};
    h.time_ms = 1700000000000;
    h.proposer = (ProtobufCBinaryData){sizeof proposer, proposer};
    h.raft_term = 7;
    h.raft_index = 1000000;
    h.tx_count = BLOCK_TXS;
    uint8_t header[256];
    size_t header_len = ehr__v1__block_header__get_packed_size(&h);
    if (header_len > sizeof header)
        die("block header", EHR_ETOOBIG);
    ehr__v1__block_header__pack(&h, header);
    block_bytes = ehr_malloc(header_len + 128 + BLOCK_TXS * (tx_envelope_len + 8));
    put_len_field(block_bytes, &block_bytes_len, 1, header, header_len);
    put_len_field(block_bytes, &block_bytes_len, 2, sig, sizeof sig);
    for (int i = 0; i < BLOCK_TXS; i++)
        put_len_field(block_bytes, &block_bytes_len, 3, tx_envelope, tx_envelope_len);

    ledger_tx_location loc = {.height = 1234567, .index = 255, .offset = 80000, .length = 420};
    tx_location_len = ledger__tx_location_write(tx_location, &loc, (ledger_bytes){NULL, 0});

    static uint8_t keys[WRITES][32], values[WRITES][100];
    ledger_state_write writes[WRITES];
    for (int i = 0; i < WRITES; i++) {
        memset(keys[i], 0x30 + i, sizeof keys[i]);
        memset(values[i], 0x70 + i, sizeof values[i]);
        writes[i] = (ledger_state_write){.key = keys[i],
                                         .key_len = sizeof keys[i],
                                         .value = values[i],
                                         .value_len = sizeof values[i]};
    }
    static const ledger_bytes ok_results[BLOCK_TXS]; /* the empty result: OK */
    ledger__write_log log = {.writes = writes,
                             .write_count = WRITES,
                             .results = ok_results,
                             .result_count = BLOCK_TXS};
    writes_record_len = ledger__writes_record_size(&log);
    writes_record = ehr_malloc(writes_record_len);
    ledger__writes_record_write(writes_record, writes_record_len, 12345, &log);
}

static void ledger_envelope_parse(void)
{
    ledger_tx_view v;
    int rc = ledger_tx_envelope_parse(tx_envelope, tx_envelope_len, &v, NULL);
    if (rc != 0)
        die("ledger_tx_envelope_parse", rc);
    sink += v.body_len;
}

static void ledger_block_parse_256(void)
{
    ledger_block_view v;
    ehr_diag diag;
    int rc = ledger_block_parse(block_bytes, block_bytes_len, &v, &diag);
    if (rc != 0) {
        fprintf(stderr, "%s\n", diag.msg);
        die("ledger_block_parse", rc);
    }
    sink += v.header.tx_count;
    ledger_block_view_release(&v);
}

static void ledger_location_read(void)
{
    ledger_tx_location loc;
    int rc = ledger__tx_location_read(tx_location, tx_location_len, &loc, NULL);
    if (rc != 0)
        die("ledger__tx_location_read", rc);
    sink += loc.offset;
}

static void ledger_writes_open(void)
{
    ledger__write_log log;
    int rc = ledger__writes_record_open(writes_record, writes_record_len, 12345, &log);
    if (rc != 0)
        die("ledger__writes_record_open", rc);
    sink += log.write_count;
    ledger__write_log_release(&log);
}

/* ---- driver ---- */

typedef struct bench_case {
    const char *name;
    void (*run)(void);
    const size_t *items; /* per operation, for a per-item figure; NULL if one */
    const char *item_name;
} bench_case;

static const size_t raft_64 = 64, raft_1024 = 1024, block_txs = BLOCK_TXS, writes_count = WRITES;

static const bench_case cases[] = {
    {"p2p body parse (64 KiB, 256-byte messages)", p2p_body_parse, &p2p_body_messages, "message"},
    {"raft encode heartbeat", raft_encode_heartbeat, NULL, NULL},
    {"raft decode heartbeat", raft_decode_heartbeat, NULL, NULL},
    {"raft encode append 64 x 64 B", raft_encode_append64, &raft_64, "entry"},
    {"raft decode append 64 x 64 B", raft_decode_append64, &raft_64, "entry"},
    {"raft encode append 1024 x 64 B", raft_encode_append1024, &raft_1024, "entry"},
    {"raft decode append 1024 x 64 B", raft_decode_append1024, &raft_1024, "entry"},
    {"ledger tx envelope parse (300 B body)", ledger_envelope_parse, NULL, NULL},
    {"ledger block parse (256 txs)", ledger_block_parse_256, &block_txs, "tx"},
    {"ledger tx location read", ledger_location_read, NULL, NULL},
    {"ledger write-log record open (64 writes)", ledger_writes_open, &writes_count, "write"},
};

/* Nanoseconds per call of RUN: the best of ROUNDS rounds of ~ROUND_MS, or
 * of exactly FIXED_CALLS calls each if that is not 0. */
static double measure(void (*run)(void), long rounds, long round_ms, long fixed_calls)
{
    /* Calibrate: how many calls fill one round. */
    uint64_t calls = 1;
    for (; fixed_calls == 0;) {
        double t0 = now_seconds();
        for (uint64_t i = 0; i < calls; i++)
            run();
        double dt = now_seconds() - t0;
        if (dt * 1000.0 >= (double)round_ms / 4 || calls >= (UINT64_C(1) << 40))
            break;
        calls *= 2;
    }
    calls = fixed_calls != 0 ? (uint64_t)fixed_calls : calls * 4;
    double best = 0;
    for (long r = 0; r < rounds; r++) {
        double t0 = now_seconds();
        for (uint64_t i = 0; i < calls; i++)
            run();
        double ns = (now_seconds() - t0) * 1e9 / (double)calls;
        if (r == 0 || ns < best)
            best = ns;
    }
    return best;
}

static long parse_long(const char *name, const char *text, long min, long max)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "bench_wire: %s must be %ld..%ld\n", name, min, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long rounds = 7, round_ms = 200, fixed_calls = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = parse_long("--rounds", argv[++i], 1, ROUNDS_MAX);
        else if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc)
            round_ms = parse_long("--ms", argv[++i], 1, ROUND_MS_MAX);
        else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc)
            fixed_calls = parse_long("--calls", argv[++i], 1, CALLS_MAX);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_wire [--rounds R] [--ms MS] [--calls N] [--only TEXT]\n");
            return 2;
        }
    }
    p2p_setup();
    raft_setup();
    ledger_setup();
    printf("best of %ld rounds of ~%ld ms each\n", rounds, round_ms);
    for (size_t i = 0; i < EHR_ARRAY_COUNT(cases); i++) {
        const bench_case *c = &cases[i];
        if (only != NULL && strstr(c->name, only) == NULL)
            continue;
        double ns = measure(c->run, rounds, round_ms, fixed_calls);
        if (c->items != NULL)
            printf("%-44s %10.1f ns/op %8.2f ns/%s\n", c->name, ns, ns / (double)*c->items,
                   c->item_name);
        else
            printf("%-44s %10.1f ns/op\n", c->name, ns);
    }
    ehr_free(block_bytes);
    ehr_free(writes_record);
    return 0;
}
