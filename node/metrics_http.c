/*
 * metrics_http.c - the HTTP side of the metrics endpoint: GET /metrics
 * served by libmicrohttpd from its own thread (metrics.h, "Threads").
 *
 * libmicrohttpd's caveats, where they bite:
 *   - MHD_USE_INTERNAL_POLLING_THREAD runs every connection on one thread
 *     of its own, which calls on_request: that function touches only the
 *     server's published snapshot (under `lock`) and its own copy. It must
 *     never reach the node: the node's loop is not thread-safe.
 *   - We bind the listening socket ourselves and hand it over
 *     (MHD_OPTION_LISTEN_SOCKET), so a bind failure is our -errno with a
 *     message, and the port is known before the daemon starts;
 *     MHD_stop_daemon closes it.
 *   - The bounds (connections, per address, idle timeout, request memory)
 *     are the daemon's options: a connection past the per-address limit
 *     is closed at accept; at the server-wide limit the daemon stops
 *     accepting, so more wait in the listen backlog (of the same size)
 *     until one closes; an idle one is closed after the timeout; a
 *     request whose headers pass the memory limit is answered with an
 *     error by the library.
 *   - A response's buffer is freed by the library after it is sent
 *     (MHD_create_response_from_buffer_with_free_callback, our free).
 *
 * Not here: rendering (metrics.c), the values (metrics_node.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "metrics.h"

#define METRICS_PATH "/metrics"
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct node_metrics_server {
    struct MHD_Daemon *daemon;
    uint16_t port;
    pthread_mutex_t lock; /* guards `published` and `snapshot` alone */
    bool published;
    struct node_metrics_snapshot snapshot;
};

static void free_page(void *p)
{
    ehr_free(p);
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned int code, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    struct node_metrics_server *s = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (strcmp(url, METRICS_PATH) != 0)
        return answer(c, MHD_HTTP_NOT_FOUND, "not found: the metrics are at " METRICS_PATH "\n");
    /* The copy: what the HTTP thread renders is its own. */
    struct node_metrics_snapshot *snap = ehr_malloc(sizeof *snap);
    pthread_mutex_lock(&s->lock);
    bool published = s->published;
    if (published)
        memcpy(snap, &s->snapshot, sizeof *snap);
    pthread_mutex_unlock(&s->lock);
    if (!published) {
        ehr_free(snap);
        return answer(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the node has not published yet\n");
    }
    struct node_metrics_process proc;
    node_metrics_process_read(&proc);
    struct node_metrics_text t = {.buf = ehr_malloc(NODE_METRICS_TEXT_BYTES_MAX),
                                  .cap = NODE_METRICS_TEXT_BYTES_MAX};
    (void)node_metrics_render(&t, snap, &proc); /* a cut page still ends at a whole family */
    ehr_free(snap);
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(t.len, t.buf, free_page);
    if (r == NULL) {
        ehr_free(t.buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_CONTENT_TYPE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* ADDRESS ("IPv4:PORT" or "[IPv6]:PORT") into SA. Returns 0 or EHR_EINVAL. */
static int parse_listen(const char *address, struct sockaddr_storage *sa, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address)
        return EHR_EINVAL;
    const char *h = address;
    size_t hlen = (size_t)(colon - address);
    if (h[0] == '[') {
        if (hlen < 2 || h[hlen - 1] != ']')
            return EHR_EINVAL;
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof host)
        return EHR_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0 || res == NULL)
        return EHR_EINVAL;
    EHR_ASSERT(res->ai_addrlen <= sizeof *sa);
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int node_metrics_server_start(const char *address, struct node_metrics_server **out, ehr_diag *diag)
{
    EHR_ASSERT(address != NULL);
    EHR_ASSERT(out != NULL);
    struct sockaddr_storage sa;
    socklen_t sa_len = 0;
    if (parse_listen(address, &sa, &sa_len) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: not an IP address and a port", address);
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ehr_diag_fail(diag, -errno, "%s: socket: %s", address, strerror(errno));
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sa_len) != 0 ||
        listen(fd, NODE_METRICS_CONNECTIONS_MAX) != 0) {
        int e = errno;
        close(fd);
        return ehr_diag_fail(diag, -e, "%s: %s", address, strerror(e));
    }
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    int grc = getsockname(fd, (struct sockaddr *)&bound, &bound_len);
    EHR_ASSERT(grc == 0); /* a bound socket of ours */
    struct node_metrics_server *s = ehr_calloc(1, sizeof *s);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    pthread_mutex_init(&s->lock, NULL);
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)NODE_METRICS_CONNECTIONS_MAX,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)NODE_METRICS_CONNECTIONS_PER_ADDRESS_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)NODE_METRICS_CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)NODE_METRICS_CONNECTION_MEMORY_BYTES,
        MHD_OPTION_END);
    if (s->daemon == NULL) {
        close(fd);
        pthread_mutex_destroy(&s->lock);
        ehr_free(s);
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: the HTTP server (libmicrohttpd) did not start",
                             address);
    }
    *out = s;
    return 0;
}

uint16_t node_metrics_server_port(const struct node_metrics_server *s)
{
    return s->port;
}

void node_metrics_server_publish(struct node_metrics_server *s,
                                 const struct node_metrics_snapshot *snap)
{
    EHR_ASSERT(snap->peer_count <= NODE_METRICS_PEERS_MAX);
    pthread_mutex_lock(&s->lock);
    memcpy(&s->snapshot, snap, sizeof *snap);
    s->published = true;
    pthread_mutex_unlock(&s->lock);
}

void node_metrics_server_stop(struct node_metrics_server *s)
{
    if (s == NULL)
        return;
    MHD_stop_daemon(s->daemon); /* joins its thread, closes the socket */
    pthread_mutex_destroy(&s->lock);
    ehr_free(s);
}
