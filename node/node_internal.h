/*
 * node_internal.h - what node.c (the runtime: consensus, peers, apply,
 * proposals) and service.c (the ehr.v1.Node handlers) share. Not a public
 * interface: names carry the node__ prefix and may change with the module.
 */
#ifndef EHR_NODE_INTERNAL_H
#define EHR_NODE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "blob_replica.h"
#include "blobs.h"
#include "config.h"
#include "contracts.h"
#include "ehr/v1/p2p.pb-c.h"
#include "ehr/v1/state.pb-c.h"
#include "ehr_crypto.h"
#include "ledger.h"
#include "mempool.h"
#include "metrics.h"
#include "node.h"
#include "p2p.h"
#include "raft.h"
#include "raft_store.h"
#include "raft_wire.h"
#include "read_auth.h"
#include "rpc.h"
#include "sigverify.h"

enum {
    /* Founding members a node runs with: the consensus core's bound. */
    NODE_MEMBERS_MAX = RAFT_MEMBERS_MAX,
    /* Block proposals the leader keeps in flight (proposed, not applied). */
    NODE_PROPOSALS_INFLIGHT_MAX = 8,
    /* Buckets of the tables of waiting calls (a power of two). */
    NODE_WAIT_BUCKETS = 4096,
    /* SubmitTransaction calls waiting (for a commit or a leader's verdict)
     * at once; more are refused with RESOURCE_EXHAUSTED. */
    NODE_WAITERS_MAX = 65536,
    /* StreamBlocks calls open at once, on the node, on one connection and
     * from one client address (which could otherwise hold every one of the
     * node's through its 128 connections); more are refused with
     * RESOURCE_EXHAUSTED. */
    NODE_BLOCK_STREAMS_MAX = 256,
    NODE_BLOCK_STREAMS_PER_CONNECTION_MAX = 4,
    NODE_BLOCK_STREAMS_PER_ADDRESS_MAX = 32,
    /* The work every block stream together may do in one turn of the loop
     * (service.c, "Block streams"): blocks read, packed and queued, and
     * their bytes. A turn stops at the first bound reached; one block is
     * always sent whole, so a turn may pass the bytes by one block. */
    NODE_STREAM_TURN_BLOCKS_MAX = 64,
    NODE_STREAM_TURN_BYTES_MAX = 256 * 1024,
    /* Entries one listing query (GetAuditTrail, ListRecords, ListConsents,
     * ListMembers) answers: the default and the most a client may ask (node.proto). The
     * bound keeps one call's work on the loop small. */
    NODE_QUERY_LIMIT_DEFAULT = 100,
    NODE_QUERY_LIMIT_MAX = 1000,
    /* A reader's current consents from one patient that a ListRecords
     * looks at (per grantee: the requester, then a practitioner's member),
     * as the access rule's CONTRACTS_ACCESS_CONSENTS_MAX. */
    NODE_READ_CONSENTS_MAX = 32,
    /* Index entries one filtered ListRecords call looks through (a reader
     * that is not the patient sees some records only): a page ends there. */
    NODE_READ_FILTER_SCAN_MAX = 10000,
    /* A learner is promoted to voter once it holds all but this many of
     * the entries known committed (members.c, M2): a few pipelines of
     * proposals, so that a load does not keep it a learner for ever. */
    NODE_PROMOTE_LAG_MAX = 4 * NODE_PROPOSALS_INFLIGHT_MAX,
    /* Heights whose state digests are kept for comparison. */
    NODE_DIGEST_WINDOW = 1024,
    /* Transactions a follower hands over to a new leader per tick. */
    NODE_HANDOVER_PER_TICK = 4096,
    /* Entries kept in the consensus log below a snapshot (at most half of
     * snapshot_entries), so a follower only slightly behind gets entries,
     * not a whole snapshot. */
    NODE_SNAPSHOT_KEEP_ENTRIES_MAX = 1000,
    /* Submissions of one loop iteration from which their signature checks
     * are split over two worker-pool jobs (fewer go as one). */
    NODE_VERIFY_SPLIT_MIN = 16,
    /* Paths under the data directory. */
    NODE_PATH_BYTES_MAX = 4096,
    /* Submissions per second per client address (submit_limit.c): the
     * token buckets kept (a power of two), and the slots one address may
     * take, looked at per submission. */
    NODE_SUBMIT_BUCKETS = 4096,
    NODE_SUBMIT_BUCKET_PROBES = 8,
    /* An IPv6 client is one client per /64: a host is given a whole /64
     * and may send from any of its 2^64 addresses, each of which would
     * otherwise get a fresh burst. IPv4-mapped addresses (::ffff:a.b.c.d)
     * are keyed as the IPv4 address they carry. */
    NODE_SUBMIT_IPV6_PREFIX_BYTES = 8,
    /* Health (health.c): the entries a node may have committed and not yet
     * applied and still be SERVING. A healthy node under full load is up to
     * a pipeline of proposals behind for a moment, so the bound is a few
     * pipelines, not 0 (which would flap under load). */
    NODE_HEALTH_APPLY_LAG_MAX = 32,
    /* Health.Watch calls open at once, on the node, on one connection and
     * from one client address (as the block streams'); more are refused
     * with RESOURCE_EXHAUSTED. */
    NODE_HEALTH_WATCHES_MAX = 256,
    NODE_HEALTH_WATCHES_PER_CONNECTION_MAX = 4,
    NODE_HEALTH_WATCHES_PER_ADDRESS_MAX = 32,
    /* Watch messages sent per tick at most, for all watches together: a
     * change reaches every watch within NODE_HEALTH_WATCHES_MAX / this
     * ticks, and a tick's share of the work stays small. */
    NODE_HEALTH_WATCH_SENDS_PER_TICK_MAX = 64,
};

_Static_assert(NODE_HEALTH_APPLY_LAG_MAX >= NODE_PROPOSALS_INFLIGHT_MAX,
               "a node one pipeline behind is not catching up");
_Static_assert(NODE_HEALTH_WATCHES_PER_CONNECTION_MAX <= NODE_HEALTH_WATCHES_PER_ADDRESS_MAX,
               "one connection may open its share");
_Static_assert(NODE_HEALTH_WATCHES_PER_ADDRESS_MAX < NODE_HEALTH_WATCHES_MAX,
               "one address cannot take every watch");

_Static_assert(NODE_BLOCK_STREAMS_PER_CONNECTION_MAX <= NODE_BLOCK_STREAMS_PER_ADDRESS_MAX,
               "one connection may open its share");
_Static_assert(NODE_BLOCK_STREAMS_PER_ADDRESS_MAX < NODE_BLOCK_STREAMS_MAX,
               "one address cannot take every block stream");

/* A failed snapshot is tried again after this long. */
#define NODE_SNAPSHOT_RETRY_MS 10000u

/* Refused reads are logged at most once per this interval, with their count. */
#define NODE_READ_REFUSED_LOG_INTERVAL_MS 10000u

/* A StreamBlocks call whose client does not read (its queue stays full,
 * never draining to half) is ended after this long (the rpc server's
 * stream_stall_timeout_ms: RST_STREAM(ENHANCE_YOUR_CALM), which gRPC
 * clients report as RESOURCE_EXHAUSTED), its queued blocks freed. */
#define NODE_STREAM_STALL_TIMEOUT_MS 30000u

/* A commit wait without a client deadline ends after this long. */
#define NODE_COMMIT_WAIT_MS_MAX 60000u
/* A forwarded transaction whose verdict does not come back in time fails UNAVAILABLE. */
#define NODE_FORWARD_TIMEOUT_MS 10000u

struct node_member {
    raft_id id;
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES];
    char name[EHR_MEMBER_NAME_BYTES_MAX + 1];
    char peer_address[P2P_ADDRESS_BYTES_MAX];
    char rpc_address[NODE_CONFIG_ADDRESS_BYTES_MAX + 1]; /* learnt from its NodeInfo */
    bool self;
    bool link_up;
    /* No longer a member of the applied state, but still in the consensus
     * configuration in force: linked until the configuration drops it
     * (members.c, M1). */
    bool leaving;
    uint64_t link_ups; /* times the link came up (metrics) */
    /* Its BlobFetches still answered now (NODE_BLOB_FETCH_REQUESTS_*). */
    struct node__token_bucket blob_fetches;
};

/* A list link: the FIFO lists below are doubly linked through these. A
 * link alone (init, or removed) points at itself. */
struct node__link {
    struct node__link *prev, *next;
};

static inline void node__link_init(struct node__link *l)
{
    l->prev = l->next = l;
}

/* Put L at the back of the list HEAD. */
static inline void node__link_push(struct node__link *head, struct node__link *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

/* Take L out of its list (harmless if it is in none). */
static inline void node__link_remove(struct node__link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    node__link_init(l);
}

static inline bool node__link_alone(const struct node__link *l)
{
    return l->next == l;
}

/* The struct of TYPE whose MEMBER (a node__link, maybe nested) PTR is. */
#define NODE__CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/*
 * The server-streaming calls of one kind (StreamBlocks, Health.Watch), with
 * the limits on how many may be open at once: on the node, on one
 * connection, and from one client address (which could otherwise hold all
 * of the node's through its many connections). Each call holds a slot in
 * its set while it is open (stream_set.c).
 */
struct node__stream_slot {
    uint64_t connection_id;          /* rpc_stream_connection_id */
    struct rpc_peer_address address; /* rpc_stream_peer_address */
    struct node__link link;          /* in its set's list */
};
/* The limit that refused a stream (node__stream_set.refused_total). */
enum node__stream_limit {
    NODE_STREAM_LIMIT_NODE,
    NODE_STREAM_LIMIT_CONNECTION,
    NODE_STREAM_LIMIT_ADDRESS,
    NODE_STREAM_LIMIT_COUNT_,
};
struct node__stream_set {
    const char *what; /* "block streams": named in the refusals */
    size_t max, per_connection_max, per_address_max;
    struct node__link slots;
    size_t count;
    uint64_t refused_total[NODE_STREAM_LIMIT_COUNT_]; /* since start, by limit (metrics) */
};

/* Start SET empty, for calls named WHAT, with its three limits. */
void node__stream_set_init(struct node__stream_set *set, const char *what, size_t max,
                           size_t per_connection_max, size_t per_address_max);
/*
 * Admit STREAM to SET: 0 with SLOT filled and in the set; or, past one of
 * the limits, EHR_EFULL after finishing STREAM with RESOURCE_EXHAUSTED and
 * a message naming the limit (STREAM is then invalid). A scan of at most
 * SET->max slots.
 */
int node__stream_set_admit(struct node__stream_set *set, struct rpc_stream *stream,
                           struct node__stream_slot *slot);
/* The same check for any call by its connection id and client address
 * (an upload's): 0 with SLOT in the set, or EHR_EFULL with the refusal's
 * message in MSG (MSG_SIZE bytes) and nothing else done. */
int node__stream_set_take(struct node__stream_set *set, uint64_t connection_id,
                          struct rpc_peer_address address, struct node__stream_slot *slot,
                          char *msg, size_t msg_size);
/* Take SLOT, admitted, out of SET. */
void node__stream_set_remove(struct node__stream_set *set, struct node__stream_slot *slot);

enum {
    /* Blob ids of erased records waiting for deletion; past it the ids are
     * dropped and the catch-up scan finds them again once the ring drains. */
    NODE_BLOB_ERASE_QUEUE_MAX = 4096,
    /* Blobs one job deletes (each an unlink and a directory fsync). */
    NODE_BLOB_ERASE_BATCH_MAX = 32,
    /* Erased records one step of the catch-up scan reads on the loop (each
     * an anchor read), so a long list never holds the loop for long. */
    NODE_BLOB_ERASE_SCAN_STEP_MAX = 64,
};
_Static_assert(NODE_BLOB_ERASE_SCAN_STEP_MAX <= NODE_BLOB_ERASE_QUEUE_MAX,
               "a scan step fits the ring");

/* Blob ids of erased records waiting for deletion, and the one deletion
 * job on the worker pool (blob_erase.c). */
struct node__blob_erasure {
    struct node *node;
    uint8_t (*queue)[NODE_BLOB_ID_BYTES]; /* a ring of NODE_BLOB_ERASE_QUEUE_MAX */
    size_t head;                          /* index of the oldest */
    size_t count;                         /* ids waiting */
    /* The scan of "erased-records/" that catches up (at start, after a
     * snapshot, after the ring overflowed): not finished while SCANNING,
     * and goes on after the key SCAN_AFTER (SCAN_AFTER_LEN 0: from the
     * start). */
    bool scanning;
    uint8_t scan_after[EHR_STATE_KEY_BYTES_MAX];
    size_t scan_after_len;
    bool started; /* the node is up: jobs may run */
    bool working; /* the job is on the worker pool */
    uv_work_t work;
    uint8_t batch[NODE_BLOB_ERASE_BATCH_MAX][NODE_BLOB_ID_BYTES]; /* the job's ids */
    int batch_rc[NODE_BLOB_ERASE_BATCH_MAX];
    size_t batch_count;
    ehr_diag batch_diag;    /* the job's last failure */
    uint64_t deleted_count; /* blobs deleted since start */
};

/* The blob store and its open calls (blob_service.c). */
struct node__blob_api {
    struct node_blobs store;
    bool store_open;
    struct node__stream_set uploads;
    struct node__stream_set downloads;
    struct node__blob_erasure erase;
};

/* ---- replication.c, replication_serve.c: record ciphertext copied to other members' nodes ---- */

/* The pure parts (the replica set, a received piece, the queue) are in
 * blob_replica.h. */
enum {
    /* Blobs being fetched at once, each with one BlobFetch outstanding, so
     * at most NODE_BLOB_FETCHES_MAX pieces are in flight towards this node
     * on links that also carry consensus. */
    NODE_BLOB_FETCHES_MAX = 4,
    /* Pieces being read for peers at once (worker-pool jobs, a piece's
     * buffer each); past it a BlobFetch is answered "busy". */
    NODE_BLOB_SERVES_MAX = 16,
    /* Pieces being read for one asking member at once, counted by its key
     * (struct node__blob_serving); past it the member's BlobFetch is
     * answered "busy". An honest fetcher has at most NODE_BLOB_FETCHES_MAX
     * BlobFetches out (one per blob), so this many serves all of them at
     * once, and one member, honest or not, takes a quarter of
     * NODE_BLOB_SERVES_MAX: the other members' repair goes on. */
    NODE_BLOB_SERVES_PER_MEMBER_MAX = 4,
    /* BlobFetches of one member answered per second, and at once: each
     * costs ledger reads on the loop (the record, its anchor, the replica
     * set) before any limit of pieces, and one answered "missing" takes no
     * slot. An honest fetcher sends one per piece it receives, at most
     * NODE_BLOB_FETCHES_MAX at a time: 256 a second is 64 MiB/s of pieces.
     * Past it: "busy" (replication_serve.c, node__token_take). */
    NODE_BLOB_FETCH_REQUESTS_PER_S = 256,
    NODE_BLOB_FETCH_REQUESTS_BURST = 32,
    /* Times in a row a fetch asks a member that answered "busy" again, for
     * the same offset, NODE_BLOB_BUSY_RETRY_MS apart; one more "busy" and
     * it asks the next member. */
    NODE_BLOB_BUSY_RETRIES_MAX = 3,
    /* Records the repair scan looks at per tick. */
    NODE_BLOB_SCAN_PER_TICK_MAX = 64,
};
/* A repair pass over every committed record starts this long after the
 * last one ended (and at start). */
#define NODE_BLOB_REPAIR_INTERVAL_MS 60000u
/* A fetch that gave up while some member it could not reach (no live
 * link) might have the blob, and no member said it has none, makes the
 * next pass start this long after the current one, not
 * NODE_BLOB_REPAIR_INTERVAL_MS: the node has just started, or a link is
 * coming back. */
#define NODE_BLOB_RETRY_MS 5000u
/* A BlobFetch not answered in this long is asked of the next member. */
#define NODE_BLOB_FETCH_TIMEOUT_MS 10000u
/* A member that answered "busy" is asked again this long after: a piece
 * takes a few milliseconds to read, so a slot is free by then unless the
 * member is loaded, and NODE_BLOB_BUSY_RETRIES_MAX retries wait 1.5 s in
 * all before the fetch moves on. */
#define NODE_BLOB_BUSY_RETRY_MS 500u
#define NODE_BLOB_FETCH_BYTES_INFLIGHT_MAX                                                         \
    ((uint64_t)NODE_BLOB_FETCHES_MAX * NODE_BLOB_REPLICA_CHUNK_BYTES)
_Static_assert(NODE_BLOB_REPLICA_CHUNK_BYTES + 256 <= P2P_MESSAGE_BYTES_MAX,
               "a BlobChunk with its envelope fits one p2p message");
_Static_assert(NODE_BLOB_FETCH_BYTES_INFLIGHT_MAX <= P2P_QUEUE_BYTES_DEFAULT / 4,
               "pieces in flight take at most a quarter of a link's queue");
_Static_assert((int)NODE_MEMBERS_MAX <= (int)NODE_BLOB_REPLICA_MEMBERS_MAX,
               "the replica choice ranks every member");
_Static_assert(NODE_BLOB_SERVES_PER_MEMBER_MAX >= NODE_BLOB_FETCHES_MAX,
               "an honest fetcher is never answered busy by a node with room");
_Static_assert(NODE_BLOB_SERVES_PER_MEMBER_MAX < NODE_BLOB_SERVES_MAX,
               "one member alone cannot take every piece being served");
_Static_assert(NODE_BLOB_FETCH_TIMEOUT_MS / NODE_BLOB_BUSY_RETRY_MS > NODE_BLOB_BUSY_RETRIES_MAX,
               "a busy member is given up on sooner than a silent one");

/* One blob being fetched from peers (replication.c). */
struct node__blob_fetch {
    bool used;
    bool working;     /* a job is on the worker pool */
    bool writer_open; /* a temporary file exists */
    bool waiting;     /* a BlobFetch is outstanding to sources[source] */
    bool present;     /* the job found the blob stored already */
    bool resting;     /* sources[source] answered "busy": asked again at deadline_ms */
    struct node__blob_want want;
    uint8_t sources[NODE_MEMBERS_MAX][EHR_SCHNORR_PUBLIC_BYTES];
    size_t source_count;
    size_t source;            /* the member asked now */
    size_t asked_count;       /* members asked so far */
    size_t skipped_count;     /* members passed over for want of a live link */
    size_t missing_count;     /* members that said they have none */
    size_t busy_count;        /* "busy" answers in a row from sources[source] */
    size_t busy_passed_count; /* members passed over after too many "busy" */
    uint64_t deadline_ms;     /* of the outstanding BlobFetch, or when resting ends */
    struct node_blob_writer writer;
    uint8_t *chunk; /* NODE_BLOB_REPLICA_CHUNK_BYTES */
    size_t chunk_len;
    int job;
    int job_rc;
    ehr_diag job_diag;
    struct node *node;
    uv_work_t work;
};

/* Pieces being read for one asking member (replication_serve.c): a slot is
 * free when COUNT is 0. Keyed by the member's key, not struct node_member,
 * so a serve that ends after its member left still finds its count. */
struct node__blob_serving {
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES];
    unsigned count; /* at most NODE_BLOB_SERVES_PER_MEMBER_MAX */
};

struct node__replication {
    bool started;
    struct node__blob_queue queue;
    struct node__blob_fetch fetches[NODE_BLOB_FETCHES_MAX];
    unsigned serves_inflight; /* at most NODE_BLOB_SERVES_MAX */
    unsigned jobs_inflight;   /* fetch and serve jobs on the worker pool */
    bool scanning;            /* a repair pass is under way */
    bool retry_soon;          /* a fetch found no one to ask: NODE_BLOB_RETRY_MS */
    bool pass_due;            /* start another pass as soon as this one ends */
    uint64_t next_pass_ms;    /* when the next pass starts */
    uint8_t cursor[64];       /* the last key the pass looked at */
    size_t cursor_len;
    uint64_t replicated_count;    /* blobs stored from a peer */
    uint64_t repair_fetch_count;  /* fetches started (apply or repair) */
    uint64_t hash_mismatch_count; /* fetched blobs that did not hash to their id */
    uint64_t refused_chunk_count; /* BlobChunks refused */
    uint64_t served_count;        /* pieces sent to peers */
    uint64_t late_answer_count;   /* answers to an earlier offset, dropped */
    uint64_t busy_sent_count;     /* BlobFetches answered "busy" */
    uint64_t busy_received_count; /* "busy" answers taken from peers */
    struct ehr_log_limit refused_log;
    struct ehr_log_limit gave_up_log; /* fetches that found no member serving */
    /* Pieces being read per asking member; every serve in flight holds one
     * count, so NODE_BLOB_SERVES_MAX slots always suffice. */
    struct node__blob_serving serving[NODE_BLOB_SERVES_MAX];
};

/* Should this node hold record RECORD_ID's ciphertext (its entry E)? Only
 * for a committed record, when this node is in its replica set among the
 * current members. The one place that decides it. */
bool node__blob_should_hold(const struct node *n, const uint8_t record_id[EHR_HASH_BYTES],
                            const Ehr__V1__RecordEntry *e);
/* Is the member KEY in the replica set of record RECORD_ID (its entry E)
 * among the current members? */
bool node__blob_replica_of(const struct node *n, const uint8_t record_id[EHR_HASH_BYTES],
                           const Ehr__V1__RecordEntry *e,
                           const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES]);
/* Record RECORD_ID's committed entry (unpacked: the caller frees it), or
 * NULL. Reads the ledger (on the loop). */
Ehr__V1__RecordEntry *node__blob_record_entry(ledger *l, const uint8_t record_id[EHR_HASH_BYTES]);
/* The blob id and size record RECORD_ID's committed anchor names. Returns
 * 0, EHR_ENOTFOUND, or EHR_ECORRUPT (not an anchor). */
int node__blob_record_blob(ledger *l, const uint8_t record_id[EHR_HASH_BYTES],
                           uint8_t blob_id[NODE_BLOB_ID_BYTES], uint64_t *total_bytes);
/* The member whose key is KEY (current or leaving), or NULL. */
struct node_member *node__member_by_key(struct node *n,
                                        const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES]);
/* A blob message from FROM refused (WHY): counted, logged at most once per
 * interval. */
void node__blob_refused(struct node *n, const struct node_member *from, const char *why);
/* After the blob store opened: start the first repair pass at once. */
void node__replication_start(struct node *n);
/* A block wrote the record entry RECORD_ID (apply.c): fetch its blob if
 * this node should hold it and lacks it. */
void node__replication_record_written(struct node *n, const uint8_t record_id[EHR_HASH_BYTES]);
/* The members changed (members.c): a repair pass over every record soon,
 * since the replica sets moved with them. */
void node__replication_members_changed(struct node *n);
/* Every tick: timeouts, the repair scan's next step, fetches to start. */
void node__replication_tick(struct node *n);
/* A BlobFetch or BlobChunk from member FROM. */
void node__replication_fetch_received(struct node *n, const struct node_member *from,
                                      const Ehr__V1__BlobFetch *f);
void node__replication_chunk_received(struct node *n, const struct node_member *from,
                                      const Ehr__V1__BlobChunk *c);
/* The link to M went down: its fetches ask the next member. */
void node__replication_link_down(struct node *n, const struct node_member *m);
/* The node stops: abandon every fetch (their temporary files removed on
 * the worker pool); jobs still out finish with nothing more done. */
void node__replication_stop(struct node *n);
/* True while replication has jobs on the worker pool (the node waits). */
bool node__replication_busy(const struct node *n);

/* GetCapsuleFragment (capsule_service.c): jobs on the worker pool. */
struct node__capsule_api {
    unsigned inflight_count; /* at most NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX */
    uint64_t answered_count; /* capsule fragments sent */
};

/*
 * A SubmitTransaction call the node still holds: waiting for the leader's
 * verdict on a forward (request_id != 0), or for its transaction's block.
 */
struct node__waiter {
    struct node *node;
    struct rpc_call *call;
    uint8_t hash[EHR_HASH_BYTES];
    uint64_t request_id; /* a forward's, 0 once waiting for the commit */
    raft_id forwarded_to;
    /* A forward keeps its envelope (ehr_malloc'd) until the verdict, so that
     * a node that becomes leader meanwhile admits it itself. */
    uint8_t *envelope;
    size_t envelope_len;
    bool wait_commit;
    uint64_t expires_at;        /* loop ms */
    struct node__waiter *hnext; /* bucket chain */
    struct node__link fifo;     /* in node.forwards or node.commit_waits */
};

/* One StreamBlocks call. */
struct node__stream {
    struct node *node;
    struct rpc_stream *stream;
    struct node__stream_slot slot; /* in node.waits.streams */
    uint64_t next_height;
    bool blocked;            /* the last send said EAGAIN: wait for the writable callback */
    struct node__link ready; /* in node.waits.streams_ready while it has a block to send */
};

struct node__digest_slot {
    uint64_t height; /* 0: unused */
    bool own_set;
    bool judged;
    uint8_t own[EHR_HASH_BYTES];
    bool peer_set[NODE_MEMBERS_MAX];
    uint8_t peer[NODE_MEMBERS_MAX][EHR_HASH_BYTES];
};

struct admit;
struct node;

/*
 * What the node tells its API about (service.c fills these in
 * node__service_start; every one is set while the node runs).
 */
struct node__api_hooks {
    /* A block was applied at HEIGHT with HASHES (COUNT) and their encoded
     * RESULTS (TxResult): answer the calls waiting for these transactions
     * and feed the block streams. */
    void (*block_applied)(struct node *n, uint64_t height, const uint8_t (*hashes)[EHR_HASH_BYTES],
                          const ledger_bytes *results, size_t count);
    /* This node has just become leader: admit the submissions it forwarded
     * to the old leader and holds without a verdict. */
    void (*became_leader)(struct node *n);
    /* The leader's verdict on a forward (HASH may be NULL). */
    void (*forward_result)(struct node *n, uint64_t request_id, int error, const char *reason,
                           const uint8_t *hash);
    /* The link to PEER went down: fail the forwards that went to it. */
    void (*link_down)(struct node *n, raft_id peer);
    /* Expire waits past their time (every tick). */
    void (*sweep)(struct node *n);
    /* Fail every call the node holds (the node is stopping). */
    void (*drain)(struct node *n);
};

/* The peers: every member of the chain, this node among them, and the
 * links (members.c has the rules, M1-M5). */
struct node__peers {
    struct node_member members[NODE_MEMBERS_MAX]; /* in node-key order */
    size_t count;
    size_t self_index;
    /* This node's applied state does not (yet) hold it as a member: a
     * node joining a running chain, linked with its join file's members. */
    bool joining;
    /* This node's member was removed from the chain; its slot stays. */
    bool self_removed;
    size_t leaving; /* members flagged leaving */
    /* The join file's block, checked once the ledger holds it (0: none). */
    uint64_t join_height;
    uint8_t join_hash[EHR_HASH_BYTES];
    struct ehr_log_limit reconcile_log; /* refused configuration changes */
    p2p *p2p;
    uint8_t *wire_buf; /* one encoded peer message */
    size_t wire_cap;
};

/* Consensus: the Raft core, its storage over the ledger, and what the last
 * ready batch said of it. */
struct node__consensus {
    struct node_raft_store store;
    struct raft *raft;
    enum raft_role role;
    raft_id leader;
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
};

/* The leader's block proposals (node.c). */
struct node__proposals {
    bool open;                 /* every entry before this term's first is applied */
    uint64_t term_start_index; /* the index of this term's first entry */
    uint64_t height;           /* the last block proposed (or the tip) */
    uint8_t hash[EHR_HASH_BYTES];
    uint64_t time_ms;
    uint64_t last_index; /* Raft index of the last proposal in flight */
    uint32_t inflight;
    bool rebase;    /* a proposal was refused at apply: rebuild on the tip */
    bool flush_due; /* the flush timer fired: propose a partial block */
    ledger_bytes *batch_envelopes;
    uint8_t (*batch_hashes)[EHR_HASH_BYTES];
    size_t batch_cap;
};

/* Submissions queued for, or under, signature checks on the worker pool. */
struct node__admission {
    size_t inflight;
    struct admit *head, *tail; /* queued this loop iteration */
    size_t queued;
};

/* Applying committed blocks, and the state digests (apply.c). */
struct node__applying {
    uint8_t (*hashes)[EHR_HASH_BYTES]; /* scratch: a block's tx hashes */
    struct sigverify_item *items;      /* scratch: a block's transactions */
    enum contracts_sig *verdicts;      /* scratch: their signatures' verdicts */
    uint8_t *results;           /* scratch: encoded results, CONTRACTS_RESULT_BYTES_MAX each */
    ledger_bytes *result_views; /* scratch: views of them */
    struct sigverify *sigv;     /* signature verdicts and their threads */
    struct node_test_faults test_faults; /* all zero but in a test's ehrd-test */
    struct node__digest_slot *digests;   /* NODE_DIGEST_WINDOW */
};

/*
 * The consent contract's rules run on one submitted transaction (signature
 * already verified) against the committed state, as if it were the first of
 * the next block: 0 if it would be OK; EHR_EINVAL (malformed), EHR_EDENIED
 * (not authorized), EHR_ENOTFOUND, EHR_EREFUSED (conflict or a rule) with
 * the rule's reason in DIAG; or a state error (apply.c).
 */
int node__contracts_check(struct node *n, const uint8_t *envelope, size_t len,
                          const uint8_t hash[EHR_HASH_BYTES], ehr_diag *diag);

/* The world state as contracts/ sees it, over the ledger (state_view.c). */
struct node__state_view {
    ledger *ledger;
    ehr_diag diag; /* why the last read failed */
};
struct contracts_state node__state_view(struct node__state_view *v, ledger *l);

/*
 * Was the record RECORD_ID erased by its patient, as of the committed
 * state (the tip)? The one question a node asks before it serves or keeps
 * anything of a record (GetBlob, GetCapsuleFragment, which blobs it
 * holds). Returns 0 with *ERASED (false for a record that does not
 * exist), or a ledger error.
 */
int node__state_record_erased(ledger *l, const uint8_t record_id[EHR_HASH_BYTES], bool *erased);

/* The calls the API holds (service.c). */
struct node__waits {
    struct node__waiter *commit_table[NODE_WAIT_BUCKETS];
    struct node__waiter *forward_table[NODE_WAIT_BUCKETS];
    struct node__link commit_waits; /* FIFO by expiry */
    struct node__link forwards;     /* FIFO by expiry */
    size_t count;
    uint64_t next_request_id;
    struct node__stream_set streams; /* StreamBlocks calls */
    /* Streams with a block to send and room to queue it, served round-robin
     * by stream_turn (an idle handle: it runs once per loop turn while the
     * list is not empty, and the loop polls without sleeping meanwhile). */
    struct node__link streams_ready;
    uv_idle_t stream_turn;
};

/*
 * Health (health.c): what SERVING means, judged on a few facts of the node
 * at one moment. The node is SERVING when it is not stopping, its state
 * has not diverged from a quorum's, it knows a leader (itself or another)
 * and it has applied everything up to the commit index it knows of, less
 * at most NODE_HEALTH_APPLY_LAG_MAX entries; NOT_SERVING otherwise.
 */
struct node__health_facts {
    bool stopping;
    bool diverged;
    bool leader_known;
    uint64_t commit_index; /* as this node knows it */
    uint64_t applied_index;
};
/* Why a node is not serving; NODE_HEALTH_OK when it is. */
enum node__health_reason {
    NODE_HEALTH_OK = 0,
    NODE_HEALTH_DIVERGED,
    NODE_HEALTH_STOPPING,
    NODE_HEALTH_NO_LEADER,
    NODE_HEALTH_CATCHING_UP,
};

/* One Health.Watch call. */
struct node__health_watch {
    struct node *node;
    struct rpc_stream *stream;
    struct node__stream_slot slot; /* in node.health.watches */
    bool service_known;            /* "" or "ehr.v1.Node"; else SERVICE_UNKNOWN, once */
    int sent;                      /* the ServingStatus last queued, -1 before the first */
    bool blocked;                  /* the last send said EAGAIN: wait for the writable callback */
    struct node__link due;         /* in node.health.due while it has a new status to send */
};

struct node__health {
    enum node__health_reason reason; /* as last judged (every tick) */
    bool judged;                     /* once the first tick has judged */
    struct node__stream_set watches;
    struct node__link due; /* watches with a status to send, served in turn */
};

/* Server reflection (reflection.c): the index of the embedded descriptor
 * set and the ServerReflectionInfo streams open. */
struct reflection_index;
struct node__reflection {
    struct reflection_index *index; /* NULL until the API starts */
    struct node__stream_set streams;
};

/* A turn of the loop is its busy time from one prepare to the next, less
 * the time it slept waiting for events (uv_metrics_idle_time). The longest
 * is kept per window of NODE_LOOP_TURN_WINDOW_MS, the current and the one
 * before, so GetStatus says the longest turn of the last one to two
 * windows. That is wall-clock time: on a machine with more runnable
 * processes than CPUs it includes the time the scheduler gave others. So
 * the loop's thread's CPU time per turn (CLOCK_THREAD_CPUTIME_ID) is kept
 * the same way: the work the loop did, whatever the machine's load (and
 * without the time it waited on a disk). */
#define NODE_LOOP_TURN_WINDOW_MS 10000u
struct node__loop_meter {
    uint64_t last_ns;      /* uv_hrtime() at the last prepare (0: none yet) */
    uint64_t last_idle_ns; /* uv_metrics_idle_time() then */
    uint64_t last_cpu_ns;  /* the loop thread's CPU time then */
    uint64_t window_end_ms;
    uint64_t max_us;          /* the longest turn of this window */
    uint64_t prev_max_us;     /* and of the window before */
    uint64_t cpu_max_us;      /* the most CPU time a turn of this window took */
    uint64_t prev_cpu_max_us; /* and of the window before */
};

/* Snapshots (snapshot.c): one created at a time, in `thread`; completion
 * comes back to the loop through `async`. */
struct node__snapshots {
    char dir[NODE_PATH_BYTES_MAX - 64];   /* DATA/snapshots (room for the names in it) */
    char path[NODE_PATH_BYTES_MAX];       /* the current snapshot file ("" if none) */
    char creating[NODE_PATH_BYTES_MAX];   /* where the thread writes */
    char stage_path[NODE_PATH_BYTES_MAX]; /* a snapshot being received */
    int stage_fd;
    pthread_t thread;
    bool running;
    bool wanted;       /* take one as soon as possible (after an install) */
    uint64_t retry_at; /* loop ms; 0: no failure pending */
    uv_async_t async;
    int rc;
    ledger_snapshot_info info;
    ehr_diag err; /* why the snapshot failed (rc != 0) */
};

/* Signed reads refused (reads.c): the count, and what the next log line
 * sums up. */
struct node__reads {
    uint64_t refused_count;   /* since the node started (GetStatus) */
    struct ehr_log_limit log; /* one line per interval for the refusals */
    char last_method[32];
    char last_status[24];
    char last_requester[17]; /* 8 hex digits of a key, never a whole one */
    char last_subject[17];
};

/*
 * Submissions per second per client address (submit_limit.c): a token
 * bucket per address (per /64 for IPv6: NODE_SUBMIT_IPV6_PREFIX_BYTES), limits.submit_rate_per_s
 * tokens a second up to limits.submit_burst, one token per SubmitTransaction, taken before anything
 * of the request is read (so a flood of bad signatures costs a lookup each, not a verification).
 * Buckets live in a table of NODE_SUBMIT_BUCKETS slots; an address may sit in
 * NODE_SUBMIT_BUCKET_PROBES of them. A full bucket is a fresh one, so it is reused at no loss; only
 * when every slot an address may take holds a bucket still refilling (more
 * than that many addresses of one set active within burst / rate seconds)
 * is the fullest of them given up, and its address starts again full.
 */
struct node__submit_bucket {
    struct rpc_peer_address address;
    bool used;
    uint64_t milli_tokens; /* tokens × 1000, at at_ms */
    uint64_t at_ms;
};
struct node__submit_limit {
    uint64_t rate_per_s;
    uint64_t burst;
    uint64_t seed; /* of the slots' hash */
    struct node__submit_bucket slots[NODE_SUBMIT_BUCKETS];
    uint64_t refused_count;   /* since the node started */
    struct ehr_log_limit log; /* one line per interval for the refusals */
    struct rpc_peer_address last_refused;
    uint64_t last_wait_ms;
};

/*
 * The metrics endpoint (metrics_node.c; metrics.h, "Threads"): the loop's
 * own copy of the values, counters and histograms updated as events happen
 * on the loop and gauges filled in once per tick, when the copy is
 * published to the HTTP server (NULL without metrics_listen). Proposals
 * are timed from raft_propose to their application, in a small table
 * keyed by Raft index.
 */
enum { NODE_METRICS_PROPOSALS_TIMED = 2 * NODE_PROPOSALS_INFLIGHT_MAX };
struct node__metrics {
    struct node_metrics_server *server;
    struct node_metrics_snapshot values;
    struct {
        uint64_t index; /* 0: free */
        uint64_t term;  /* the term it was proposed in */
        uint64_t at_ns; /* uv_hrtime() at the proposal */
    } proposed[NODE_METRICS_PROPOSALS_TIMED];
};

struct node {
    uv_loop_t *loop;
    struct node_config cfg; /* owned copy */
    ehr_identity *id;       /* sodium_malloc'd */
    void (*on_stopped)(void *user, int exit_code);
    void *user;

    ledger *ledger;
    ledger_chain chain;
    ledger_tip tip; /* the ledger's tip, kept in step with every apply */
    mempool pool;

    struct node__peers peers;
    struct node__consensus cons;
    struct node__proposals prop;
    struct node__admission adm;
    struct node__applying applying;
    struct node__snapshots snap;

    struct rpc_server *rpc;
    struct rpc_tls *rpc_tls;    /* NULL: the API speaks cleartext (tls_cert_file unset) */
    struct node__api_hooks api; /* set by node__service_start */
    struct node__waits waits;
    struct node__health health;
    struct node__reflection reflection;
    struct node__blob_api blobs;
    struct node__capsule_api capsules;
    struct node__replication replication;
    struct node__loop_meter meter;
    struct node__reads reads;
    struct node__submit_limit submit_limit;
    struct node__metrics metrics;

    uv_timer_t tick_timer;
    uv_timer_t flush_timer;
    uv_prepare_t prepare;

    uint64_t started_ms;
    int closing; /* handles still closing */
    bool stopping;
    int exit_code;
};

/* ---- node.c, for the node's other files ---- */

/* Stop the node because it must not go on: log MSG with KV_FMT's fields,
 * then a normal stop that reports EXIT_CODE. */
void node__fatal(struct node *n, int exit_code, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Free the node if it is stopping and nothing holds it any more (a job
 * that came back from the worker pool after the stop). */
void node__maybe_free(struct node *n);
/* Pack PM and send it to M, or to every peer when M is NULL. */
void node__send_kind(struct node *n, const struct node_member *m, const Ehr__V1__PeerMessage *pm);
/* A consensus id as 16 hex digits, for logs. */
void node__hex8(char out[17], raft_id id);
/* The leader's bookkeeping of its proposals once entry INDEX is applied
 * (REFUSED: the ledger refused its block, so the pipeline is rebuilt). */
void node__proposals_applied(struct node *n, uint64_t index, bool refused);

/* ---- apply.c ---- */

/* Apply the committed ENTRIES in order, skipping those already applied.
 * Returns 0, or the error after which the node stopped (node__fatal). */
int node__apply_committed(struct node *n, const struct raft_entry *entries, size_t count);
/* A peer's state digest for a height (MEMBER: its index in n->members). */
void node__digest_received(struct node *n, size_t member, const Ehr__V1__StateDigest *sd);
/* The link to M has just come up: send M our digest of every height still
 * in the window. A digest goes out once, to the links up when its block is
 * applied, so what we applied while the link was down (M started after
 * us, or the link failed and is back) would never reach M, and M, if its
 * digest of such a height differs, would never see a quorum against it and
 * never stop. At most NODE_DIGEST_WINDOW small messages per link-up. */
void node__digests_link_up(struct node *n, const struct node_member *m);

/* ---- members.c ---- */

/* A member's consensus id: the first 8 bytes of its node key, big-endian. */
raft_id node__member_id(const uint8_t key[EHR_SCHNORR_PUBLIC_BYTES]);
/* At start: the members of the ledger's state, or of the join file when
 * the state does not hold this node (M4). Returns 0, or an error with why
 * in DIAG (this node is not a member and has no join file, a bad file). */
int node__members_load(struct node *n, ehr_diag *diag);
/* Hand MEMBERS (COUNT) to the peer links (p2p_set_members). */
int node__members_publish(struct node *n, const struct node_member *members, size_t count);
/* The applied state's members may have changed (a block wrote under the
 * member prefix, or a snapshot replaced the state): read them again,
 * re-link (M1) and move the digests (M5). Stops the node on a storage error. */
void node__members_changed(struct node *n);
/* Members of the applied state, this node among them unless it was removed. */
size_t node__members_current(const struct node *n);
/* Every tick: drop the links of leaving members the configuration no
 * longer holds (M1); and, on the leader, one step towards a configuration
 * of the current members (M2, M3): at most one proposal per call. */
void node__members_reconcile(struct node *n);
/* Check the join file's block once the ledger holds it (M4). */
void node__members_join_check(struct node *n);

/* ---- snapshot.c ---- */

/* Take a snapshot in a worker thread when enough was applied since the last. */
void node__snapshot_maybe_start(struct node *n);
/* Wait for a snapshot thread still running (before the ledger closes). */
void node__snapshot_join(struct node *n);
/* The worker finished (uv_async callback): record it and compact the log. */
void node__on_snapshot_done(uv_async_t *h);
/* Stage a chunk of the leader's snapshot; install it on the last one.
 * Returns 0, or the error after which the node stopped. */
int node__snapshot_chunk(struct node *n, const struct raft_snapshot_chunk *c);

/* ---- node.c, for service.c ---- */

uint64_t node__now_ms(void);
/* The longest turn of the loop in the last one to two NODE_LOOP_TURN_WINDOW_MS, in µs. */
uint64_t node__loop_turn_max_us(const struct node *n);
/* The most CPU time a turn of the loop took in the same windows, in µs. */
uint64_t node__loop_turn_cpu_max_us(const struct node *n);

const struct node_member *node__member_by_id(const struct node *n, raft_id id);

/*
 * Admit ENVELOPE (copied) at the leader: the mempool's cheap checks now,
 * the signature on libuv's worker pool, the insertion back on the loop
 * (mempool_admit_begin / mempool_tx_verify / mempool_admit_finish), then
 * the flush timer. CB(N, CTX, RC, RESULT) runs exactly once: at once if a
 * cheap check refuses, else from the loop when the check is done (also
 * while the node stops: RC is then EHR_ECLOSED unless it was admitted).
 */
typedef void (*node__admit_cb)(struct node *n, void *ctx, int rc,
                               const mempool_admit_result *result);
void node__admit(struct node *n, const uint8_t *envelope, size_t len, node__admit_cb cb, void *ctx);

/* Send a TxForward to the leader. Returns 0, EHR_ENOTLEADER (none known),
 * EHR_ECLOSED (no link to it), EHR_EAGAIN (its queue is full). */
int node__forward(struct node *n, uint64_t request_id, const uint8_t *envelope, size_t len);

/*
 * The leader to name to a client: the member this node knows leads, if it is
 * not this node, with the RPC address it advertised (NodeInfo; "" until it
 * has). NULL when there is none to name. Never a peer port, never itself.
 */
const struct node_member *node__leader_hint(const struct node *n);

/* Fill MSG with why this node cannot take a submission now (no leader, or no
 * link to it), naming the leader as node.proto asks (node__leader_hint). */
void node__unavailable_message(const struct node *n, char *msg, size_t size);

/* ---- listings.c: queries answered from the world state alone ---- */

/* A query's answer apart from its call: the packed response, or the status
 * and message the call fails with. */
typedef struct node__answer {
    enum rpc_status status; /* RPC_STATUS_OK: BYTES holds the response */
    uint8_t *bytes;         /* ehr_malloc'd (NULL on failure): ehr_free it */
    size_t len;
    char msg[EHR_DIAG_BYTES_MAX];
} node__answer;

/*
 * GetAuditTrail once the read is allowed (node__read_check): Q answered
 * from L, as the API's handler answers it (it sends *A as is): a page of
 * the patient's audit events ("audit/" or "audit-emergency/" + patient,
 * contracts.h) after the page token, each stored value unpacked into the
 * response, the response packed.
 */
void node__audit_trail(ledger *l, const Ehr__V1__GetAuditTrailRequest *q, node__answer *a);

/* Register the listings (GetAuditTrail, ListRecords, ListConsents,
 * GetRecord, ListMembers) on N's RPC server (node__service_start). */
void node__listings_add(struct node *n);

/* ---- reads.c: who may read what (node.proto, "Signed reads") ---- */

enum node__read_kind {
    NODE_READ_AUDIT,               /* GetAuditTrail: the patient, a regulator */
    NODE_READ_RECORDS,             /* ListRecords: the patient, custodians, grantees */
    NODE_READ_CONSENTS_BY_PATIENT, /* ListConsents by patient: the patient */
    NODE_READ_CONSENTS_BY_GRANTEE, /* ListConsents by grantee: the grantee */
};

/* A requester allowed to read, and what it may see. */
struct node__reader {
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES];
    bool patient;         /* the subject itself: sees everything */
    bool has_institution; /* a member, or a practitioner of one */
    bool practitioner;
    uint8_t institution[EHR_SCHNORR_PUBLIC_BYTES]; /* the member it is or acts for */
    int role;                                      /* that member's MemberRole */
    /* ListRecords: the current consents from the patient it (or its member)
     * holds, unpacked (node__reader_release frees them). */
    Ehr__V1__ConsentEntry *consents[2 * NODE_READ_CONSENTS_MAX];
    size_t consent_count;
};

/*
 * Check a patient-scoped read before anything of the patient's is read:
 * REQUEST's ReadAuth (*AUTH_FIELD) for METHOD ("GetAuditTrail", ...) on
 * this chain at the node's clock, then the requester's standing for KIND
 * against the committed world state, SUBJECT being the patient (or the
 * grantee, by grantee; 32 bytes, checked by the caller). Returns 0 with R
 * filled (release it with node__reader_release), or -1 with *A failed:
 * INVALID_ARGUMENT (a ReadAuth field of the wrong size), UNAUTHENTICATED
 * (no auth, its window, its signature), PERMISSION_DENIED, INTERNAL (the
 * state unreadable). The refusals (UNAUTHENTICATED, PERMISSION_DENIED) are
 * counted and logged.
 */
int node__read_check(struct node *n, const char *method, ProtobufCMessage *request,
                     Ehr__V1__ReadAuth **auth_field, enum node__read_kind kind,
                     ProtobufCBinaryData subject, struct node__reader *r, node__answer *a);
/*
 * node__read_check in its two steps, for a read whose patient is known only
 * once something is looked up (GetRecord: the record's entry names it).
 * node__read_authenticate checks the ReadAuth alone, as node__read_check
 * does first (SUBJECT, 32 bytes, only names the read in the refusal log),
 * and fills R's key; node__read_standing then checks R's standing for KIND
 * on SUBJECT, the patient. Each returns 0, or -1 with *A failed and the
 * refusal counted; after node__read_standing returns 0, release R.
 */
int node__read_authenticate(struct node *n, const char *method, ProtobufCMessage *request,
                            Ehr__V1__ReadAuth **auth_field, ProtobufCBinaryData subject,
                            struct node__reader *r, node__answer *a);
int node__read_standing(struct node *n, const char *method, enum node__read_kind kind,
                        ProtobufCBinaryData subject, struct node__reader *r, node__answer *a);
void node__reader_release(struct node__reader *r);
/* After node__read_authenticate: the member R's key is or acts for (R's
 * institution and role filled). Returns 0, or -1 with *A failed:
 * PERMISSION_DENIED with REFUSAL (counted and logged, SUBJECT, 32 bytes,
 * naming the read) for a key that is neither a member nor a practitioner of
 * one; INTERNAL if the state cannot be read. Nothing to release. */
int node__read_institution(struct node *n, const char *method, ProtobufCBinaryData subject,
                           struct node__reader *r, node__answer *a, const char *refusal);
/* May R see the record RECORD_ID (its entry E)? The patient every one; a
 * member or practitioner those whose custodian it is or acts for, and those
 * a consent in R covers, by type or by id. */
bool node__reader_sees_record(const struct node__reader *r, const uint8_t record_id[32],
                              const Ehr__V1__RecordEntry *e);
/* Count one refused read of METHOD (STATUS) by REQUESTER (may be NULL) of
 * SUBJECT and log it, at most once per NODE_READ_REFUSED_LOG_INTERVAL_MS. */
void node__reads_refused(struct node *n, const char *method, enum rpc_status status,
                         const ProtobufCBinaryData *requester, const ProtobufCBinaryData *subject);
/* Log the refusals an interval held back, once it has passed (every tick). */
void node__reads_sweep(struct node *n);

/* ---- blob_service.c: PutBlob and GetBlob over the blob store (blobs.h) ---- */

/* A PutBlob chunk (node.proto, "Blobs"), and what GetBlob sends per message
 * (less if rpc_message_bytes is smaller). */
#define NODE_BLOB_CHUNK_BYTES_MAX (1024u * 1024)
#define NODE_BLOB_SEND_BYTES (256u * 1024)
enum {
    /* Uploads and downloads open, each: on the node, one connection, one
     * client address (stream_set.c). */
    NODE_BLOB_UPLOADS_MAX = 64,
    NODE_BLOB_UPLOADS_PER_CONNECTION_MAX = 2,
    NODE_BLOB_UPLOADS_PER_ADDRESS_MAX = 8,
    NODE_BLOB_DOWNLOADS_MAX = 64,
    NODE_BLOB_DOWNLOADS_PER_CONNECTION_MAX = 2,
    NODE_BLOB_DOWNLOADS_PER_ADDRESS_MAX = 8,
};

/* Open the blob store under the data directory (sweeping what unfinished
 * writes left) and register PutBlob and GetBlob (node__service_start).
 * Returns 0 or the store's error, with DIAG. */
int node__blob_service_start(struct node *n, ehr_diag *diag);
/* Close the store (free_node: every call is finished by then). */
void node__blob_service_close(struct node *n);

/* The record's anchor's ciphertext_hash (its blob id) into OUT. Returns 0,
 * EHR_ECORRUPT (the anchor is missing or not an anchor: the record's entry
 * names it), or a ledger error. */
int node__anchor_blob_id(ledger *l, const uint8_t record_id[EHR_HASH_BYTES],
                         uint8_t out[NODE_BLOB_ID_BYTES]);

/* ---- blob_erase.c: deleting the blobs of erased records ---- */

/*
 * Start deleting: the catch-up scan of every erased record (a node that
 * was down, or lost its queue, deletes what it still holds), then the
 * erasures each block brings. Called once the node is up, so that no job
 * is out on a start that fails.
 */
void node__blob_erase_start(struct node *n);
/* A block was appended with these state WRITES: queue the blob of every
 * record it erased (an "erased-records/" key written). */
void node__blob_erase_block(struct node *n, const ledger_state_write *writes, size_t count);
/* The state was replaced (a snapshot installed): scan again. */
void node__blob_erase_rescan(struct node *n);
/* Free the ring (free_node: no job is out by then). */
void node__blob_erase_close(struct node *n);
/* A job of the node's came back from the worker pool while it stops: free
 * the node if nothing else is left (node.c). */
void node__work_returned(struct node *n);

/* ---- capsule_service.c: GetCapsuleFragment ---- */

enum {
    /* Capsule fragments being made at once (each a job on the worker
     * pool); past it a request is RESOURCE_EXHAUSTED. */
    NODE_CAPSULE_FRAGMENTS_INFLIGHT_MAX = 16,
};

/* Register GetCapsuleFragment on N's RPC server (node__service_start). */
void node__capsule_service_add(struct node *n);

/* ---- submit_limit.c: submissions per second per client address ---- */

/* Start L empty: RATE_PER_S tokens a second (>= 1) up to BURST (>= 1). */
void node__submit_limit_init(struct node__submit_limit *l, uint64_t rate_per_s, uint64_t burst);
/*
 * Take one token from the bucket of address A at NOW_MS (a clock that
 * does not go back). Returns 0 when the submission may go on; otherwise
 * the milliseconds until a token will be there (>= 1), and the refusal is
 * counted and logged (at most one line per EHR_LOG_LIMIT_INTERVAL_MS).
 */
uint64_t node__submit_limit_take(struct node__submit_limit *l, const struct rpc_peer_address *a,
                                 uint64_t now_ms);
/* Log the refusals an interval held back, once it has passed (every sweep). */
void node__submit_limit_sweep(struct node__submit_limit *l, uint64_t now_ms);

/* ---- health.c: the standard grpc.health.v1.Health service ---- */

/* Judge F: NODE_HEALTH_OK (SERVING), or the first reason it is not, in the
 * enum's order. A pure function of F. */
enum node__health_reason node__health_judge(const struct node__health_facts *f);
/* The reason as a log and README word: "ok", "no-leader", ... */
const char *node__health_reason_name(enum node__health_reason reason);
/* N's facts now. */
struct node__health_facts node__health_facts_of(const struct node *n);
/* Register Health's Check and Watch on N's RPC server and start the
 * watches' set (node__service_start). */
void node__health_add(struct node *n);
/* Judge N's health again; on a change log it and tell the watches, at most
 * NODE_HEALTH_WATCH_SENDS_PER_TICK_MAX of them per call (every tick). */
void node__health_update(struct node *n);
/* The node is stopping: send NOT_SERVING to every watch that can take it
 * and end them all UNAVAILABLE. */
void node__health_drain(struct node *n);

/* ---- reflection.c: the standard grpc.reflection service, v1 and v1alpha ---- */

/* Index the descriptor set embedded at build time and register
 * ServerReflectionInfo of both versions on N's RPC server
 * (node__service_start). Returns 0,
 * or the index's error with why in DIAG (a broken build). */
int node__reflection_add(struct node *n, ehr_diag *diag);
/* The node is stopping: end every reflection stream UNAVAILABLE. */
void node__reflection_drain(struct node *n);
/* Free the index, once the RPC server is gone. */
void node__reflection_free(struct node *n);

/* ---- metrics_node.c: the values of the metrics endpoint ---- */

/* Start the metrics endpoint on cfg.metrics_listen, if set. Returns 0 or
 * the error with why in DIAG (a bad address, a port in use). */
int node__metrics_start(struct node *n, ehr_diag *diag);
/* Stop it (joins its thread). Safe when it never started. */
void node__metrics_stop(struct node *n);
/* Fill in the gauges from N and publish the values (every tick). */
void node__metrics_publish(struct node *n);
/* A submission's admission at this node ended: RC 0 admitted, else
 * refused for RESULT's verdict (or, without one, the rules or a stop). */
void node__metrics_admission(struct node *n, int rc, const mempool_admit_result *result);
/* The leader proposed a block at Raft index INDEX in TERM (timed until applied). */
void node__metrics_proposed(struct node *n, uint64_t term, uint64_t index);
/* The block of the entry at INDEX of TERM, with TX_COUNT transactions, was applied. */
void node__metrics_block_applied(struct node *n, uint64_t term, uint64_t index, uint32_t tx_count);
/* A durable write took NS nanoseconds: the Raft log's, or a block's (BLOCK). */
void node__metrics_sync_write(struct node *n, bool block, uint64_t ns);
/* A snapshot received from the leader was installed in place of the ledger. */
void node__metrics_snapshot_installed(struct node *n);

/* ---- service.c, for node.c ---- */

/*
 * Start the API (service ehr.v1.Node on the RPC server, listening) and
 * register its hooks in N->api. The one call from the node into the API:
 * node_start makes it; from then on the node tells the API about events
 * only through N->api, and the API calls the node directly (one direction).
 */
int node__service_start(struct node *n, ehr_diag *diag);

#endif /* EHR_NODE_INTERNAL_H */
