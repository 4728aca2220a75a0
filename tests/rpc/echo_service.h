/*
 * echo_service.h - the test-only Echo service (echo.proto) on top of the rpc
 * server: what the in-process tests, the interoperability test's server and
 * the fuzz target call. It records what the transport told it (cancels,
 * late finishes) so tests can check the lifetime rules. Not for production.
 */
#ifndef EHR_TEST_ECHO_SERVICE_H
#define EHR_TEST_ECHO_SERVICE_H

#include <stdatomic.h>

#include "rpc.h"

#define ECHO_SAY "/ehr.test.Echo/Say"
#define ECHO_HANG "/ehr.test.Echo/Hang"
#define ECHO_COUNT "/ehr.test.Echo/Count"
#define ECHO_SUM "/ehr.test.Echo/Sum"
#define ECHO_CHAT "/ehr.test.Echo/Chat"
/* A Sum message with this index makes Sum fail with INVALID_ARGUMENT. */
#define ECHO_SUM_FAIL_INDEX UINT32_MAX

/* Counters, atomic because tests read them from another thread. */
struct echo_stats {
    atomic_uint calls;                      /* handler invocations */
    atomic_uint cancels[RPC_STATUS_COUNT_]; /* cancel callbacks, by reason */
    atomic_uint late_closed;                /* finishes that returned EHR_ECLOSED */
    atomic_uint late_timedout;              /* finishes that returned EHR_ETIMEDOUT */
    atomic_uint eagain;                     /* rpc_stream_send said EHR_EAGAIN */
    atomic_uint writable;                   /* writable callbacks */
    atomic_uint decode_errors;              /* requests that were not valid protobuf */
    atomic_uint sum_messages;               /* Sum messages delivered to the handler */
    atomic_uint sum_ends;                   /* Sum requests seen whole */
};

struct echo_service {
    uv_loop_t *loop;
    struct echo_stats stats;
    /* Sum: when set (tests on the server's thread), a Sum pauses at its
     * start, before any message; echo_service_sum_resume lets it go on. */
    bool sum_hold;
    struct rpc_upload *sum_held; /* the Sum held, or NULL */
};

/* Resume the held Sum, if any. */
void echo_service_sum_resume(struct echo_service *service);

/* Register Say, Hang, Count and Sum on SERVER. Returns 0 or the first error. */
int echo_service_register(struct echo_service *service, uv_loop_t *loop, struct rpc_server *server);

#endif
