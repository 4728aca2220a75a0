/*
 * raft_wire.h - the wire form of consensus messages: a consensus/ `struct
 * raft_message` to and from the bytes of ehr.v1.RaftMessage
 * (proto/ehr/v1/raft.proto), alone or inside the ehr.v1.PeerMessage
 * envelope that p2p/ carries.
 *
 * Not here: sending and receiving (p2p/), what a message means and its
 * semantic checks (raft_step validates every message again: log order,
 * terms, recipient), persistence forms (raft_codec.c).
 *
 * Both directions are written by hand, without protobuf-c: encoding writes
 * into a caller buffer with no allocation; decoding allocates one array for
 * the entries and points every byte string (entry data, chunk data) into the
 * received bytes, so nothing is copied. The bytes are standard protobuf; the
 * decoder is stricter than protobuf (raft.proto lists what it refuses), and
 * every length is checked before it is read.
 *
 * Limits and how they relate:
 *   P2P_MESSAGE_BYTES_MAX (1 MiB)  the largest message p2p carries: the
 *                                  PeerMessage envelope and the RaftMessage;
 *   NODE_RAFT_WIRE_BYTES_MAX       that minus the envelope (4 bytes): the
 *                                  largest RaftMessage;
 *   EHR_BLOCK_BYTES_MAX (8 MiB)    the ledger's largest block. It does NOT fit
 *                                  one consensus message today: a block
 *                                  travels as one NORMAL entry, so blocks
 *                                  proposed through consensus are bounded by
 *                                  NODE_RAFT_WIRE_PROPOSAL_BYTES_MAX (below
 *                                  1 MiB) until p2p carries larger messages.
 * node_raft_wire_options_fit lowers the core's options so that every message
 * the core can emit encodes within NODE_RAFT_WIRE_BYTES_MAX.
 */
#ifndef EHR_NODE_RAFT_WIRE_H
#define EHR_NODE_RAFT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "raft.h"

enum {
    /* The PeerMessage envelope around a RaftMessage: one key byte and a
     * length of at most 3 varint bytes (the length is below 2^21). */
    NODE_RAFT_WIRE_ENVELOPE_BYTES_MAX = 4,
    /* The largest encoded RaftMessage: the largest p2p message (1 MiB, see
     * p2p.h; checked at compile time in raft_wire.c) minus the envelope. */
    NODE_RAFT_WIRE_BYTES_MAX = (1 << 20) - NODE_RAFT_WIRE_ENVELOPE_BYTES_MAX,
    /* Upper bound of a message without entries and data bytes: every scalar
     * field at its widest, a snapshot meta with the largest configuration,
     * and the key and length of `data`. */
    NODE_RAFT_WIRE_HEADER_BYTES_MAX = 288,
    /* Upper bound of what one entry adds beyond its data bytes (key, length,
     * term, index, type, data key and length). At most
     * RAFT_ENTRY_OVERHEAD_BYTES, the core's own per-entry accounting. */
    NODE_RAFT_WIRE_ENTRY_OVERHEAD_BYTES_MAX = 32,
    /* Entries per append after node_raft_wire_options_fit: their overhead
     * (64 KiB) leaves most of a message to data. */
    NODE_RAFT_WIRE_APPEND_ENTRIES_MAX = 2048,
    /* Data bytes per append (and per proposal) after options_fit: a maximal
     * append, overhead included, then fills NODE_RAFT_WIRE_BYTES_MAX. */
    NODE_RAFT_WIRE_APPEND_BYTES_MAX =
        NODE_RAFT_WIRE_BYTES_MAX - NODE_RAFT_WIRE_HEADER_BYTES_MAX -
        NODE_RAFT_WIRE_APPEND_ENTRIES_MAX * NODE_RAFT_WIRE_ENTRY_OVERHEAD_BYTES_MAX,
    NODE_RAFT_WIRE_PROPOSAL_BYTES_MAX = NODE_RAFT_WIRE_APPEND_BYTES_MAX,
    /* Snapshot chunk bytes after options_fit. */
    NODE_RAFT_WIRE_CHUNK_BYTES_MAX = NODE_RAFT_WIRE_BYTES_MAX - NODE_RAFT_WIRE_HEADER_BYTES_MAX
};

/*
 * Lower opt's append_entries_max, append_bytes_max, proposal_bytes_max and
 * snapshot_chunk_bytes to at most the NODE_RAFT_WIRE_* bounds above, so that
 * every message a core with these options emits encodes within
 * NODE_RAFT_WIRE_BYTES_MAX (other options are untouched; values already
 * below stay). Call before raft_create. A valid `opt` stays valid.
 */
void node_raft_wire_options_fit(struct raft_options *opt);

/*
 * The encoded size of m in bytes into *size. Returns 0, EHR_EINVAL (a type
 * out of range, entries on a type other than APPEND or with a NULL array or
 * a bad entry type, snapshot/done/data on a type other than SNAPSHOT, a
 * SNAPSHOT without snapshot meta, a configuration raft_config_encode
 * refuses, data NULL with a size) or EHR_ETOOBIG (more than
 * RAFT_APPEND_ENTRIES_MAX entries, more than NODE_RAFT_WIRE_BYTES_MAX bytes).
 */
int node_raft_wire_encoded_size(const struct raft_message *m, size_t *size);

/*
 * Encode m into buf[0..cap) and its size into *written. Fields that are zero
 * are left out (proto3). Returns 0, the errors of node_raft_wire_encoded_size,
 * or EHR_ETOOBIG when cap is smaller than the encoded size (nothing useful is
 * in buf then). No allocation; m is only read.
 */
int node_raft_wire_encode(const struct raft_message *m, uint8_t *buf, size_t cap, size_t *written);

/*
 * The same, wrapped in an ehr.v1.PeerMessage whose kind is `raft`: ready for
 * p2p_send. A buffer of NODE_RAFT_WIRE_ENVELOPE_BYTES_MAX + the encoded size
 * always suffices.
 */
int node_raft_wire_peer_encode(const struct raft_message *m, uint8_t *buf, size_t cap,
                               size_t *written);

/*
 * A decoded message. `message` is what raft_step takes; its pointers lead to
 * `snapshot`, to `entries` and into the bytes that were decoded. It stays
 * valid while both this struct and those bytes live, until
 * node_raft_wire_release.
 */
struct node_raft_wire_message {
    struct raft_message message;
    struct raft_snapshot_meta snapshot; /* message.snapshot points here (SNAPSHOT) */
    struct raft_entry *entries;         /* owned (ehr_try_malloc), NULL if none */
};

/*
 * Decode bytes[0..size) into *out. On success the entry data and chunk data
 * in out->message point into `bytes` (borrowed: keep them alive and
 * unchanged until node_raft_wire_release(out)). Returns 0, or on failure
 * (with *out holding nothing to release, nothing leaked):
 *   EHR_ETOOBIG     size over NODE_RAFT_WIRE_BYTES_MAX, or more than
 *                   RAFT_APPEND_ENTRIES_MAX entries;
 *   EHR_ETRUNCATED  a field, a varint or a length reaches past the end;
 *   EHR_EINVAL      anything else raft.proto refuses: unknown field, wrong
 *                   wire type, a field twice, enum or bool out of range,
 *                   fields on a type that does not use them, a missing
 *                   type or snapshot, a configuration that does not decode;
 *   -ENOMEM         the entries array could not be allocated.
 */
int node_raft_wire_decode(const uint8_t *bytes, size_t size, struct node_raft_wire_message *out);

/*
 * Decode an ehr.v1.PeerMessage as received from p2p. Returns 0 with *out as
 * node_raft_wire_decode fills it when the message is of the `raft` kind,
 * EHR_ENOTFOUND when it is another kind (*out untouched: hand the bytes to
 * whoever owns that kind), or the errors of node_raft_wire_decode (an
 * envelope that is not exactly one field is EHR_EINVAL).
 */
int node_raft_wire_peer_decode(const uint8_t *bytes, size_t size,
                               struct node_raft_wire_message *out);

/* Free what a successful decode allocated; out->message is no longer valid.
 * Safe on a zeroed struct and twice in a row. */
void node_raft_wire_release(struct node_raft_wire_message *out);

#endif /* EHR_NODE_RAFT_WIRE_H */
