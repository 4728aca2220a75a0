/*
 * raft_wire.c - ehr.v1.RaftMessage (proto/ehr/v1/raft.proto) by hand: a
 * size pass and a write pass for encoding, a checking parser for decoding,
 * both on the wire primitives of common/pbwire.h. See raft_wire.h for the
 * contract and the limits.
 *
 * Not here: protobuf-c. Its unpacker would allocate per entry and per
 * unknown field before we could bound them, and copy every byte string; this
 * parser bounds everything first and points into the input. The tests check
 * that protobuf-c reads what we write and that we read what it writes.
 */
#include "raft_wire.h"

#include <errno.h>
#include <string.h>

#include "p2p.h"
#include "pbwire.h"

_Static_assert(NODE_RAFT_WIRE_BYTES_MAX + NODE_RAFT_WIRE_ENVELOPE_BYTES_MAX <=
                   P2P_MESSAGE_BYTES_MAX,
               "a RaftMessage in its PeerMessage envelope fits one p2p message");
_Static_assert(NODE_RAFT_WIRE_BYTES_MAX < (1 << 21), "every length fits 3 varint bytes");
_Static_assert((int)NODE_RAFT_WIRE_ENTRY_OVERHEAD_BYTES_MAX <= (int)RAFT_ENTRY_OVERHEAD_BYTES,
               "the core's per-entry accounting covers the wire's");
_Static_assert((int)NODE_RAFT_WIRE_APPEND_ENTRIES_MAX <= (int)RAFT_APPEND_ENTRIES_MAX,
               "within the core");
_Static_assert(NODE_RAFT_WIRE_APPEND_BYTES_MAX > 0, "room for data");

/* Field numbers (raft.proto). */
enum {
    F_TYPE = 1,
    F_FROM,
    F_TO,
    F_TERM,
    F_INDEX,
    F_LOG_TERM,
    F_COMMIT,
    F_HINT_INDEX,
    F_HINT_TERM,
    F_CONTEXT,
    F_REJECT,
    F_TRANSFER,
    F_ENTRIES,
    F_SNAPSHOT,
    F_OFFSET,
    F_DONE,
    F_DATA,
    F_LAST_
};
enum { FE_TERM = 1, FE_INDEX, FE_TYPE, FE_DATA };
enum { FS_INDEX = 1, FS_TERM, FS_CONFIGURATION };
enum { WT_VARINT = EHR_PB_WIRE_VARINT, WT_LEN = EHR_PB_WIRE_LEN };
enum { PEER_FIELD_RAFT = 1 };

/* Read as protobuf's own parsers do: padded varints, keys and lengths are
 * accepted, a value past 64 bits is not, nor a key or a length past 5 bytes
 * (protobuf-c refuses those, and what we accept a peer written with
 * protobuf-c must accept too). The primitives are common/pbwire.h's; the
 * message rules (known fields only, each singular field once, wire types,
 * enum and bool ranges) are below. */
static const enum ehr_pb_rule PB_RULE = EHR_PB_PADDED;

/* Header bound (raft_wire.h): type 2, nine u64 fields 11 each, two bools 2
 * each, snapshot 1 + 2 + (11 + 11 + 1 + 1 + config), offset 11, done 3,
 * data key 2 + length 3. */
_Static_assert(2 + 9 * 11 + 2 * 2 + (1 + 2 + 11 + 11 + 1 + 1 + RAFT_CONFIG_ENCODED_BYTES_MAX) + 11 +
                       3 + 5 <=
                   NODE_RAFT_WIRE_HEADER_BYTES_MAX,
               "header bound");
/* Entry bound: key 1 + length 3 + term 11 + index 11 + type 2 + data key 1
 * + length 3. */
_Static_assert(1 + 3 + 11 + 11 + 2 + 1 + 3 <= NODE_RAFT_WIRE_ENTRY_OVERHEAD_BYTES_MAX,
               "entry bound");

void node_raft_wire_options_fit(struct raft_options *opt)
{
    EHR_ASSERT(opt != NULL);
    if (opt->append_entries_max > NODE_RAFT_WIRE_APPEND_ENTRIES_MAX)
        opt->append_entries_max = NODE_RAFT_WIRE_APPEND_ENTRIES_MAX;
    if (opt->append_bytes_max > NODE_RAFT_WIRE_APPEND_BYTES_MAX)
        opt->append_bytes_max = NODE_RAFT_WIRE_APPEND_BYTES_MAX;
    if (opt->proposal_bytes_max > NODE_RAFT_WIRE_PROPOSAL_BYTES_MAX)
        opt->proposal_bytes_max = NODE_RAFT_WIRE_PROPOSAL_BYTES_MAX;
    if (opt->snapshot_chunk_bytes > NODE_RAFT_WIRE_CHUNK_BYTES_MAX)
        opt->snapshot_chunk_bytes = NODE_RAFT_WIRE_CHUNK_BYTES_MAX;
    EHR_ASSERT(opt->snapshot_chunk_bytes <= NODE_RAFT_WIRE_CHUNK_BYTES_MAX);
}

/* ---- encoding ---- */

static bool message_type_valid(uint64_t t)
{
    return t >= RAFT_MSG_APPEND && t < RAFT_MSG_TYPE_LAST_;
}

static bool entry_type_valid(uint64_t t)
{
    return t == RAFT_ENTRY_NORMAL || t == RAFT_ENTRY_EMPTY || t == RAFT_ENTRY_CONFIG;
}

/* A varint field's size; zero values are left out. */
static size_t varint_field_size(unsigned field, uint64_t v)
{
    return v == 0 ? 0 : ehr_pb_key_size(field) + ehr_pb_varint_size(v);
}

/* A length-delimited field's size (always present). */
static uint64_t len_field_size(unsigned field, uint64_t len)
{
    return ehr_pb_len_header_size(field, len) + len;
}

static uint64_t entry_body_size(const struct raft_entry *e)
{
    return varint_field_size(FE_TERM, e->term) + varint_field_size(FE_INDEX, e->index) +
           varint_field_size(FE_TYPE, (uint64_t)e->type) +
           (e->size == 0 ? 0 : len_field_size(FE_DATA, e->size));
}

static uint64_t snapshot_body_size(const struct raft_snapshot_meta *s, size_t config_size)
{
    return varint_field_size(FS_INDEX, s->index) + varint_field_size(FS_TERM, s->term) +
           len_field_size(FS_CONFIGURATION, config_size);
}

/* The checks of node_raft_wire_encoded_size that do not need sizes. */
static int encode_check(const struct raft_message *m, uint8_t *config, size_t *config_size)
{
    if (!message_type_valid((uint64_t)m->type))
        return EHR_EINVAL;
    if (m->type != RAFT_MSG_APPEND && (m->entry_count != 0 || m->entries != NULL))
        return EHR_EINVAL;
    if (m->entry_count > RAFT_APPEND_ENTRIES_MAX)
        return EHR_ETOOBIG;
    if (m->entry_count > 0 && m->entries == NULL)
        return EHR_EINVAL;
    bool snapshot_type = m->type == RAFT_MSG_SNAPSHOT;
    if (!snapshot_type && (m->snapshot != NULL || m->done || m->data != NULL || m->size != 0))
        return EHR_EINVAL;
    if (snapshot_type && m->snapshot == NULL)
        return EHR_EINVAL;
    if (m->size > 0 && m->data == NULL)
        return EHR_EINVAL;
    for (uint32_t i = 0; i < m->entry_count; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (!entry_type_valid((uint64_t)e->type) || (e->size > 0 && e->data == NULL))
            return EHR_EINVAL;
        if (e->type == RAFT_ENTRY_EMPTY && e->size != 0)
            return EHR_EINVAL;
    }
    *config_size = 0;
    if (snapshot_type) {
        int n = raft_config_encode(&m->snapshot->config, config);
        if (n < 0)
            return EHR_EINVAL;
        *config_size = (size_t)n;
    }
    return 0;
}

/* Checks m and computes its size (and the encoded configuration). */
static int encode_measure(const struct raft_message *m, uint8_t *config, size_t *config_size,
                          size_t *size)
{
    int err = encode_check(m, config, config_size);
    if (err != 0)
        return err;
    uint64_t n =
        varint_field_size(F_TYPE, (uint64_t)m->type) + varint_field_size(F_FROM, m->from) +
        varint_field_size(F_TO, m->to) + varint_field_size(F_TERM, m->term) +
        varint_field_size(F_INDEX, m->index) + varint_field_size(F_LOG_TERM, m->log_term) +
        varint_field_size(F_COMMIT, m->commit) + varint_field_size(F_HINT_INDEX, m->hint_index) +
        varint_field_size(F_HINT_TERM, m->hint_term) + varint_field_size(F_CONTEXT, m->context) +
        varint_field_size(F_REJECT, m->reject) + varint_field_size(F_TRANSFER, m->transfer) +
        varint_field_size(F_OFFSET, m->offset) + varint_field_size(F_DONE, m->done);
    if (m->snapshot != NULL)
        n += len_field_size(F_SNAPSHOT, snapshot_body_size(m->snapshot, *config_size));
    if (m->size > 0)
        n += len_field_size(F_DATA, m->size);
    for (uint32_t i = 0; i < m->entry_count && n <= NODE_RAFT_WIRE_BYTES_MAX; i++)
        n += len_field_size(F_ENTRIES, entry_body_size(&m->entries[i]));
    if (n > NODE_RAFT_WIRE_BYTES_MAX)
        return EHR_ETOOBIG;
    *size = (size_t)n;
    return 0;
}

int node_raft_wire_encoded_size(const struct raft_message *m, size_t *size)
{
    EHR_ASSERT(m != NULL && size != NULL);
    uint8_t config[RAFT_CONFIG_ENCODED_BYTES_MAX];
    size_t config_size = 0;
    return encode_measure(m, config, &config_size, size);
}

static uint8_t *put_varint_field(uint8_t *p, unsigned field, uint64_t v)
{
    if (v == 0)
        return p;
    p = ehr_pb_key_write(p, field, EHR_PB_WIRE_VARINT);
    return ehr_pb_varint_write(p, v);
}

static uint8_t *put_len_field(uint8_t *p, unsigned field, const uint8_t *data, uint64_t len)
{
    p = ehr_pb_len_header_write(p, field, len);
    if (len > 0)
        memcpy(p, data, (size_t)len);
    return p + len;
}

/* Writes the already measured m; returns the end. */
static uint8_t *encode_write(uint8_t *p, const struct raft_message *m, const uint8_t *config,
                             size_t config_size)
{
    p = put_varint_field(p, F_TYPE, (uint64_t)m->type);
    p = put_varint_field(p, F_FROM, m->from);
    p = put_varint_field(p, F_TO, m->to);
    p = put_varint_field(p, F_TERM, m->term);
    p = put_varint_field(p, F_INDEX, m->index);
    p = put_varint_field(p, F_LOG_TERM, m->log_term);
    p = put_varint_field(p, F_COMMIT, m->commit);
    p = put_varint_field(p, F_HINT_INDEX, m->hint_index);
    p = put_varint_field(p, F_HINT_TERM, m->hint_term);
    p = put_varint_field(p, F_CONTEXT, m->context);
    p = put_varint_field(p, F_REJECT, m->reject);
    p = put_varint_field(p, F_TRANSFER, m->transfer);
    for (uint32_t i = 0; i < m->entry_count; i++) {
        const struct raft_entry *e = &m->entries[i];
        p = ehr_pb_len_header_write(p, F_ENTRIES, entry_body_size(e));
        p = put_varint_field(p, FE_TERM, e->term);
        p = put_varint_field(p, FE_INDEX, e->index);
        p = put_varint_field(p, FE_TYPE, (uint64_t)e->type);
        if (e->size > 0)
            p = put_len_field(p, FE_DATA, e->data, e->size);
    }
    if (m->snapshot != NULL) {
        p = ehr_pb_len_header_write(p, F_SNAPSHOT, snapshot_body_size(m->snapshot, config_size));
        p = put_varint_field(p, FS_INDEX, m->snapshot->index);
        p = put_varint_field(p, FS_TERM, m->snapshot->term);
        p = put_len_field(p, FS_CONFIGURATION, config, config_size);
    }
    p = put_varint_field(p, F_OFFSET, m->offset);
    p = put_varint_field(p, F_DONE, m->done);
    if (m->size > 0)
        p = put_len_field(p, F_DATA, m->data, m->size);
    return p;
}

int node_raft_wire_encode(const struct raft_message *m, uint8_t *buf, size_t cap, size_t *written)
{
    EHR_ASSERT(m != NULL && written != NULL);
    uint8_t config[RAFT_CONFIG_ENCODED_BYTES_MAX];
    size_t config_size = 0;
    size_t size = 0;
    int err = encode_measure(m, config, &config_size, &size);
    if (err != 0)
        return err;
    if (cap < size)
        return EHR_ETOOBIG;
    uint8_t *end = encode_write(buf, m, config, config_size);
    EHR_ASSERT((size_t)(end - buf) == size); /* the size pass and the write pass agree */
    *written = size;
    return 0;
}

int node_raft_wire_peer_encode(const struct raft_message *m, uint8_t *buf, size_t cap,
                               size_t *written)
{
    EHR_ASSERT(m != NULL && written != NULL);
    uint8_t config[RAFT_CONFIG_ENCODED_BYTES_MAX];
    size_t config_size = 0;
    size_t size = 0;
    int err = encode_measure(m, config, &config_size, &size);
    if (err != 0)
        return err;
    size_t head = ehr_pb_len_header_size(PEER_FIELD_RAFT, size);
    EHR_ASSERT(head <= NODE_RAFT_WIRE_ENVELOPE_BYTES_MAX);
    if (cap < head + size)
        return EHR_ETOOBIG;
    uint8_t *p = ehr_pb_len_header_write(buf, PEER_FIELD_RAFT, size);
    uint8_t *end = encode_write(p, m, config, config_size);
    EHR_ASSERT((size_t)(end - buf) == head + size);
    *written = head + size;
    return 0;
}

/* ---- decoding ---- */

static int read_varint(ehr_pb_reader *r, uint64_t *out)
{
    return ehr_pb_varint_read(r, PB_RULE, out);
}

static int read_key(ehr_pb_reader *r, unsigned *field, unsigned *wire_type)
{
    uint32_t number = 0;
    int err = ehr_pb_key_read(r, PB_RULE, &number, wire_type);
    *field = number;
    return err;
}

/* The payload of a length-delimited field; the length is checked first. */
static int read_len(ehr_pb_reader *r, ehr_pb_reader *body)
{
    return ehr_pb_len_read(r, PB_RULE, body);
}

/* Marks field f seen; EHR_EINVAL if it was already (f < 32). */
static int see_once(uint32_t *seen, unsigned f)
{
    if (*seen & (UINT32_C(1) << f))
        return EHR_EINVAL;
    *seen |= UINT32_C(1) << f;
    return 0;
}

static int read_bool(ehr_pb_reader *r, bool *out)
{
    uint64_t v = 0;
    int err = read_varint(r, &v);
    if (err == 0 && v > 1)
        err = EHR_EINVAL;
    if (err == 0)
        *out = v == 1;
    return err;
}

static int parse_entry(ehr_pb_reader r, struct raft_entry *e)
{
    uint32_t seen = 0;
    memset(e, 0, sizeof *e);
    while (r.pos < r.len) {
        unsigned field = 0, wt = 0;
        int err = read_key(&r, &field, &wt);
        if (err == 0 && field >= 1 && field <= FE_DATA)
            err = see_once(&seen, field);
        if (err != 0)
            return err;
        uint64_t v = 0;
        ehr_pb_reader body;
        switch (field) {
        case FE_TERM:
        case FE_INDEX:
        case FE_TYPE:
            if (wt != WT_VARINT)
                return EHR_EINVAL;
            if ((err = read_varint(&r, &v)) != 0)
                return err;
            if (field == FE_TERM)
                e->term = v;
            else if (field == FE_INDEX)
                e->index = v;
            else if (!entry_type_valid(v))
                return EHR_EINVAL;
            else
                e->type = (enum raft_entry_type)v;
            break;
        case FE_DATA:
            if (wt != WT_LEN)
                return EHR_EINVAL;
            if ((err = read_len(&r, &body)) != 0)
                return err;
            e->data = body.len > 0 ? body.data : NULL;
            e->size = (uint32_t)body.len;
            break;
        default:
            return EHR_EINVAL; /* unknown field */
        }
    }
    if (!(seen & (UINT32_C(1) << FE_TYPE)))
        return EHR_EINVAL;
    if (e->type == RAFT_ENTRY_EMPTY && e->size != 0)
        return EHR_EINVAL;
    return 0;
}

static int parse_snapshot(ehr_pb_reader r, struct raft_snapshot_meta *s)
{
    uint32_t seen = 0;
    ehr_pb_reader config = {.data = NULL, .len = 0};
    memset(s, 0, sizeof *s);
    while (r.pos < r.len) {
        unsigned field = 0, wt = 0;
        int err = read_key(&r, &field, &wt);
        if (err == 0 && field >= 1 && field <= FS_CONFIGURATION)
            err = see_once(&seen, field);
        if (err != 0)
            return err;
        switch (field) {
        case FS_INDEX:
        case FS_TERM:
            if (wt != WT_VARINT)
                return EHR_EINVAL;
            if ((err = read_varint(&r, field == FS_INDEX ? &s->index : &s->term)) != 0)
                return err;
            break;
        case FS_CONFIGURATION:
            if (wt != WT_LEN)
                return EHR_EINVAL;
            if ((err = read_len(&r, &config)) != 0)
                return err;
            break;
        default:
            return EHR_EINVAL;
        }
    }
    if (config.len > RAFT_CONFIG_ENCODED_BYTES_MAX)
        return EHR_EINVAL;
    if (!(seen & (UINT32_C(1) << FS_CONFIGURATION)))
        return EHR_EINVAL;
    return raft_config_decode(config.data, config.len, &s->config) == 0 ? 0 : EHR_EINVAL;
}

static int parse_scalar(ehr_pb_reader *r, unsigned field, struct raft_message *m)
{
    uint64_t v = 0;
    int err = 0;
    switch (field) {
    case F_REJECT:
        return read_bool(r, &m->reject);
    case F_TRANSFER:
        return read_bool(r, &m->transfer);
    case F_DONE:
        return read_bool(r, &m->done);
    default:
        break;
    }
    if ((err = read_varint(r, &v)) != 0)
        return err;
    uint64_t *dst[F_LAST_] = {[F_FROM] = &m->from,
                              [F_TO] = &m->to,
                              [F_TERM] = &m->term,
                              [F_INDEX] = &m->index,
                              [F_LOG_TERM] = &m->log_term,
                              [F_COMMIT] = &m->commit,
                              [F_HINT_INDEX] = &m->hint_index,
                              [F_HINT_TERM] = &m->hint_term,
                              [F_CONTEXT] = &m->context,
                              [F_OFFSET] = &m->offset};
    if (field == F_TYPE) {
        if (!message_type_valid(v))
            return EHR_EINVAL;
        m->type = (enum raft_message_type)v;
        return 0;
    }
    EHR_ASSERT(field < F_LAST_ && dst[field] != NULL);
    *dst[field] = v;
    return 0;
}

/*
 * Parse a whole RaftMessage into *out. With entries NULL the entries are
 * checked and counted only; otherwise entries[0..*count) is filled (the
 * caller counted them on a first pass).
 */
static int parse_message(const uint8_t *bytes, size_t size, struct node_raft_wire_message *out,
                         struct raft_entry *entries, uint32_t *count)
{
    ehr_pb_reader r = {.data = bytes, .len = size};
    struct raft_message *m = &out->message;
    uint32_t seen = 0;
    uint32_t n = 0;
    memset(m, 0, sizeof *m);
    while (r.pos < r.len) {
        unsigned field = 0, wt = 0;
        int err = read_key(&r, &field, &wt);
        if (err != 0)
            return err;
        if (field == 0 || field >= F_LAST_)
            return EHR_EINVAL; /* unknown field */
        if (field != F_ENTRIES && (err = see_once(&seen, field)) != 0)
            return err;
        bool len_field = field == F_ENTRIES || field == F_SNAPSHOT || field == F_DATA;
        if (wt != (len_field ? WT_LEN : WT_VARINT))
            return EHR_EINVAL;
        if (!len_field) {
            if ((err = parse_scalar(&r, field, m)) != 0)
                return err;
            continue;
        }
        ehr_pb_reader body;
        if ((err = read_len(&r, &body)) != 0)
            return err;
        if (field == F_ENTRIES) {
            if (n == RAFT_APPEND_ENTRIES_MAX)
                return EHR_ETOOBIG;
            struct raft_entry scratch;
            err = parse_entry(body, entries != NULL ? &entries[n] : &scratch);
            n++;
        } else if (field == F_SNAPSHOT) {
            err = parse_snapshot(body, &out->snapshot);
            m->snapshot = &out->snapshot;
        } else {
            m->data = body.len > 0 ? body.data : NULL;
            m->size = (uint32_t)body.len;
        }
        if (err != 0)
            return err;
    }
    if (!(seen & (UINT32_C(1) << F_TYPE)))
        return EHR_EINVAL;
    if (m->type != RAFT_MSG_APPEND && n != 0)
        return EHR_EINVAL;
    bool snapshot_type = m->type == RAFT_MSG_SNAPSHOT;
    uint32_t snapshot_only =
        UINT32_C(1) << F_SNAPSHOT | UINT32_C(1) << F_DONE | UINT32_C(1) << F_DATA;
    if (!snapshot_type && (seen & snapshot_only) != 0)
        return EHR_EINVAL;
    if (snapshot_type && m->snapshot == NULL)
        return EHR_EINVAL;
    *count = n;
    return 0;
}

int node_raft_wire_decode(const uint8_t *bytes, size_t size, struct node_raft_wire_message *out)
{
    EHR_ASSERT(out != NULL);
    EHR_ASSERT(bytes != NULL || size == 0);
    memset(out, 0, sizeof *out);
    if (size > NODE_RAFT_WIRE_BYTES_MAX)
        return EHR_ETOOBIG;
    uint32_t count = 0;
    int err = parse_message(bytes, size, out, NULL, &count);
    if (err != 0) {
        memset(out, 0, sizeof *out);
        return err;
    }
    if (count == 0)
        return 0;
    struct raft_entry *entries = ehr_try_malloc((size_t)count * sizeof *entries);
    if (entries == NULL) {
        memset(out, 0, sizeof *out);
        return -ENOMEM;
    }
    uint32_t again = 0;
    err = parse_message(bytes, size, out, entries, &again);
    EHR_ASSERT(err == 0 && again == count); /* the same bytes parse the same way */
    out->entries = entries;
    out->message.entries = entries;
    out->message.entry_count = count;
    return 0;
}

int node_raft_wire_peer_decode(const uint8_t *bytes, size_t size,
                               struct node_raft_wire_message *out)
{
    EHR_ASSERT(out != NULL);
    EHR_ASSERT(bytes != NULL || size == 0);
    ehr_pb_reader r = {.data = bytes, .len = size};
    unsigned field = 0, wt = 0;
    int err = read_key(&r, &field, &wt);
    if (err != 0)
        return err == EHR_ETRUNCATED && size == 0 ? EHR_EINVAL : err;
    if (field != PEER_FIELD_RAFT)
        return EHR_ENOTFOUND;
    if (wt != WT_LEN)
        return EHR_EINVAL;
    ehr_pb_reader body;
    if ((err = read_len(&r, &body)) != 0)
        return err;
    if (r.pos != r.len)
        return EHR_EINVAL; /* more than the one field */
    return node_raft_wire_decode(body.data, body.len, out);
}

void node_raft_wire_release(struct node_raft_wire_message *out)
{
    if (out == NULL)
        return;
    ehr_free(out->entries);
    memset(out, 0, sizeof *out);
}
