/*
 * reflection.c - the standard gRPC server reflection service on the node's
 * RPC server, in both of its versions: grpc.reflection.v1.ServerReflection
 * (proto/grpc/reflection/v1/reflection.proto), which grpcurl, Postman,
 * grpcui and grpcio-reflection ask for first, and grpc.reflection.v1alpha
 * .ServerReflection (proto/grpc/reflection/v1alpha/reflection.proto), which
 * older clients know alone. So stock tools list the node's services and
 * describe their methods and messages without the .proto files, and build
 * requests from what they learn.
 *
 * The two versions differ in their package only: every message is the same
 * on the wire, field for field. Both paths are one handler over the
 * v1alpha code (reflection_index.c), and their streams are one kind: a
 * stream of either version counts against the same limits below.
 *
 * What it describes is what protoc wrote at build time: the
 * FileDescriptorSet of the files that define the node's services, with
 * their imports (proto/CMakeLists.txt), embedded in ehrd
 * (ehr_proto_services_set). It is indexed once at start
 * (reflection_index.c); answers carry its files' bytes as they are.
 *
 * ServerReflectionInfo is bidirectional (rpc_server_add_bidi): each
 * request gets one answer, in order, while the client keeps the stream
 * open. What one client can make the node do is bounded: a request is at
 * most NODE_REFLECTION_REQUEST_BYTES_MAX, an answer at most
 * NODE_REFLECTION_ANSWER_BYTES_MAX, a stream makes at most
 * NODE_REFLECTION_REQUESTS_PER_STREAM_MAX requests, and the streams open
 * are bounded on the node, per connection and per address (stream_set.c).
 * The consensus loop never waits on it (docs/DESIGN.md): an answer is a
 * lookup in the index and one copy of at most the whole set (15 KB
 * today); when a stream's queue is full, its requests are paused
 * (rpc_upload_pause) until the client reads, so a client that pipelines
 * requests and never reads gets at most a queue's worth of answers made.
 *
 * Not here: the index and the answers (reflection_index.c).
 */
#include <stdio.h>
#include <string.h>

#include "ehr_proto_services_set.h"
#include "node_internal.h"
#include "reflection.h"

/* The method's path in each version, newest first. */
static const char *const reflection_paths[] = {
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
};

/* A request echo and an error's message beside the whole set: every
 * answer the node can give fits the limit, so none is cut. */
_Static_assert(EHR_PROTO_SERVICES_SET_BYTES + NODE_REFLECTION_REQUEST_BYTES_MAX +
                       RPC_STATUS_MESSAGE_BYTES_MAX + 64 <=
                   NODE_REFLECTION_ANSWER_BYTES_MAX,
               "the node's whole descriptor set fits one answer");
_Static_assert(NODE_REFLECTION_ANSWER_BYTES_MAX <= RPC_MESSAGE_BYTES_MAX,
               "an answer fits one gRPC message");

/* One ServerReflectionInfo call, of either version. */
struct node__reflection_stream {
    struct node *node;
    struct rpc_upload *upload;
    struct rpc_stream *stream;     /* the same call, its answer side */
    struct node__stream_slot slot; /* in node.reflection.streams */
    uint32_t request_count;
    uint8_t *pending; /* an answer the queue had no room for (requests paused) */
    size_t pending_len;
    bool client_done; /* the client half-closed: finish once pending is out */
};

static void stream_end(struct node__reflection_stream *s, enum rpc_status status,
                       const char *message)
{
    node__stream_set_remove(&s->node->reflection.streams, &s->slot);
    rpc_stream_finish(s->stream, status, message);
    ehr_free(s->pending);
    ehr_free(s);
}

static void on_cancel(void *data, enum rpc_status why)
{
    stream_end(data, why, NULL);
}

/* Queue ANSWER (taken: freed here or kept as pending). Returns false if
 * the stream ended (and S is freed). */
static bool answer_send(struct node__reflection_stream *s, uint8_t *answer, size_t len)
{
    int rc = rpc_stream_send(s->stream, answer, len);
    if (rc == EHR_EAGAIN) {
        /* The client does not read: hold this answer and take no more
         * requests until it does (on_writable). */
        EHR_ASSERT(s->pending == NULL);
        s->pending = answer;
        s->pending_len = len;
        rpc_upload_pause(s->upload);
        return true;
    }
    ehr_free(answer);
    if (rc != 0) {
        stream_end(s, RPC_STATUS_UNAVAILABLE, NULL);
        return false;
    }
    return true;
}

static void on_writable(struct rpc_stream *stream, void *data)
{
    (void)stream;
    struct node__reflection_stream *s = data;
    if (s->pending == NULL)
        return;
    uint8_t *answer = s->pending;
    s->pending = NULL;
    if (!answer_send(s, answer, s->pending_len) || s->pending != NULL)
        return;
    if (s->client_done)
        stream_end(s, RPC_STATUS_OK, NULL);
    else
        rpc_upload_resume(s->upload);
}

static void on_message(struct rpc_upload *upload, const uint8_t *message, size_t len, void *data)
{
    (void)upload;
    struct node__reflection_stream *s = data;
    EHR_ASSERT(s->pending == NULL); /* paused while one is held */
    char text[RPC_STATUS_MESSAGE_BYTES_MAX];
    if (s->request_count == NODE_REFLECTION_REQUESTS_PER_STREAM_MAX) {
        snprintf(text, sizeof text,
                 "this stream made %d reflection requests, the limit: open a new one",
                 NODE_REFLECTION_REQUESTS_PER_STREAM_MAX);
        stream_end(s, RPC_STATUS_RESOURCE_EXHAUSTED, text);
        return;
    }
    s->request_count++;
    uint8_t *answer;
    size_t answer_len;
    ehr_diag why;
    int rc = reflection_answer(s->node->reflection.index, message, len,
                               NODE_REFLECTION_ANSWER_BYTES_MAX, &answer, &answer_len, &why);
    if (rc != 0) {
        stream_end(s,
                   rc == EHR_ETOOBIG ? RPC_STATUS_RESOURCE_EXHAUSTED : RPC_STATUS_INVALID_ARGUMENT,
                   why.msg);
        return;
    }
    answer_send(s, answer, answer_len);
}

static void on_end(struct rpc_upload *upload, void *data)
{
    (void)upload;
    struct node__reflection_stream *s = data;
    if (s->pending != NULL) {
        s->client_done = true; /* finished once the last answer is queued */
        return;
    }
    stream_end(s, RPC_STATUS_OK, NULL);
}

static void server_reflection_info(struct rpc_upload *upload, void *data)
{
    struct node *n = data;
    struct rpc_stream *stream = rpc_upload_stream(upload);
    struct node__reflection_stream *s = ehr_calloc(1, sizeof *s);
    if (node__stream_set_admit(&n->reflection.streams, stream, &s->slot) != 0) {
        ehr_free(s);
        return; /* finished with the refusal */
    }
    s->node = n;
    s->upload = upload;
    s->stream = stream;
    rpc_stream_on_cancel(stream, on_cancel, s);
    rpc_stream_on_writable(stream, on_writable, s);
    rpc_upload_on_message(upload, on_message, on_end, s);
}

int node__reflection_add(struct node *n, ehr_diag *diag)
{
    ehr_diag why;
    int rc = reflection_index_new(ehr_proto_services_set, EHR_PROTO_SERVICES_SET_BYTES,
                                  &n->reflection.index, &why);
    if (rc != 0) /* the build embedded a broken set: not the operator's doing */
        return ehr_diag_fail(diag, rc, "the embedded descriptor set of the API: %s", why.msg);
    node__stream_set_init(&n->reflection.streams, "reflection streams", NODE_REFLECTION_STREAMS_MAX,
                          NODE_REFLECTION_STREAMS_PER_CONNECTION_MAX,
                          NODE_REFLECTION_STREAMS_PER_ADDRESS_MAX);
    /* One handler and one stream set for both versions: the limits are
     * the node's, not each version's. */
    for (size_t i = 0; i < EHR_ARRAY_COUNT(reflection_paths); i++) {
        rc = rpc_server_add_bidi(n->rpc, reflection_paths[i], server_reflection_info, n);
        EHR_ASSERT(rc == 0); /* a valid path, registered once, within RPC_METHODS_MAX */
    }
    return 0;
}

void node__reflection_drain(struct node *n)
{
    struct node__link *all = &n->reflection.streams.slots;
    if (all->next == NULL)
        return; /* the API never started */
    while (!node__link_alone(all))
        stream_end(NODE__CONTAINER(all->next, struct node__reflection_stream, slot.link),
                   RPC_STATUS_UNAVAILABLE, "the node is shutting down");
}

void node__reflection_free(struct node *n)
{
    reflection_index_free(n->reflection.index);
    n->reflection.index = NULL;
}
