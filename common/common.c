/*
 * common.c - error names, the allocation wrapper, hex and the logger.
 * Not thread-safe configuration: set log level/sink before starting threads.
 */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct err_info {
    int code;
    const char *name;
    const char *text;
};

static const struct err_info err_table[] = {
    {EHR_EINVAL, "EHR_EINVAL", "malformed input or invalid argument"},
    {EHR_ETOOBIG, "EHR_ETOOBIG", "over the size limit"},
    {EHR_ETRUNCATED, "EHR_ETRUNCATED", "truncated input"},
    {EHR_ECORRUPT, "EHR_ECORRUPT", "corrupt data (checksum or format mismatch)"},
    {EHR_EBADSIG, "EHR_EBADSIG", "signature does not verify"},
    {EHR_EPASSPHRASE, "EHR_EPASSPHRASE", "wrong passphrase or tampered key file"},
    {EHR_EVERSION, "EHR_EVERSION", "unsupported format or protocol version"},
    {EHR_ENOTFOUND, "EHR_ENOTFOUND", "not found"},
    {EHR_EEXIST, "EHR_EEXIST", "already exists"},
    {EHR_EFULL, "EHR_EFULL", "full"},
    {EHR_ELINK, "EHR_ELINK", "broken chain link"},
    {EHR_EEXPIRED, "EHR_EEXPIRED", "expired"},
    {EHR_ECHAIN, "EHR_ECHAIN", "wrong chain id"},
    {EHR_ENOTLEADER, "EHR_ENOTLEADER", "not the leader"},
    {EHR_ECLOSED, "EHR_ECLOSED", "closed"},
    {EHR_EAGAIN, "EHR_EAGAIN", "resource temporarily unavailable"},
    {EHR_ETIMEDOUT, "EHR_ETIMEDOUT", "timed out"},
    {EHR_EPROTO, "EHR_EPROTO", "protocol violation"},
    {EHR_EDENIED, "EHR_EDENIED", "not permitted"},
    {EHR_EDIVERGED, "EHR_EDIVERGED", "state diverged from the cluster"},
    {EHR_EREFUSED, "EHR_EREFUSED", "refused by a rule"},
};

_Static_assert(EHR_ARRAY_COUNT(err_table) == (size_t)(EHR_ERR_LAST_ - EHR_EINVAL),
               "every error code has a table row");

/* System errors are -errno; Linux errno values stay below 4096. */
enum { ERRNO_MAX = 4095 };

static bool is_errno(int err)
{
    return err < 0 && err >= -ERRNO_MAX;
}

static const struct err_info *err_lookup(int err)
{
    if (err < EHR_EINVAL || err >= EHR_ERR_LAST_)
        return NULL;
    return &err_table[err - EHR_EINVAL];
}

const char *ehr_strerror(int err)
{
    if (err == 0)
        return "success";
    const struct err_info *info = err_lookup(err);
    if (info != NULL)
        return info->text;
    if (is_errno(err))
        return strerror(-err);
    return "unknown error";
}

const char *ehr_errname(int err)
{
    if (err == 0)
        return "OK";
    const struct err_info *info = err_lookup(err);
    if (info != NULL)
        return info->name;
    if (is_errno(err)) {
        const char *name = strerrorname_np(-err);
        return name != NULL ? name : "ERRNO";
    }
    return "UNKNOWN";
}

/* ---- allocation ---- */

static long alloc_fail_countdown = -1;
static size_t alloc_largest_bytes;

static void alloc_note(size_t size)
{
    if (size > alloc_largest_bytes)
        alloc_largest_bytes = size;
}

static _Noreturn void alloc_oom(size_t size)
{
    fprintf(stderr, "ehrchain: out of memory allocating %zu bytes\n", size);
    abort();
}

void *ehr_malloc(size_t size)
{
    alloc_note(size);
    void *p = malloc(size == 0 ? 1 : size);
    if (p == NULL)
        alloc_oom(size);
    return p;
}

void *ehr_calloc(size_t count, size_t size)
{
    if (size != 0 && count > SIZE_MAX / size)
        alloc_oom(SIZE_MAX);
    alloc_note(count * size);
    void *p = calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
    if (p == NULL)
        alloc_oom(count * size);
    return p;
}

void *ehr_realloc(void *ptr, size_t size)
{
    alloc_note(size);
    void *p = realloc(ptr, size == 0 ? 1 : size);
    if (p == NULL)
        alloc_oom(size);
    return p;
}

char *ehr_strdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *copy = ehr_malloc(len);
    memcpy(copy, s, len);
    return copy;
}

void ehr_free(void *ptr)
{
    free(ptr);
}

void *ehr_try_malloc(size_t size)
{
    if (alloc_fail_countdown == 0)
        return NULL;
    if (alloc_fail_countdown > 0)
        alloc_fail_countdown--;
    alloc_note(size);
    return malloc(size == 0 ? 1 : size);
}

void ehr_alloc_fail_after(long n)
{
    alloc_fail_countdown = n < 0 ? -1 : n;
}

size_t ehr_alloc_largest_bytes(void)
{
    return alloc_largest_bytes;
}

void ehr_alloc_stats_reset(void)
{
    alloc_largest_bytes = 0;
}

/* ---- hex ---- */

void ehr_hex_encode(char *out, const uint8_t *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ehr_hex_decode(uint8_t *out, size_t out_len, const char *hex)
{
    if (hex == NULL || strlen(hex) != 2 * out_len)
        return EHR_EINVAL;
    for (size_t i = 0; i < out_len; i++) {
        int hi = hex_digit(hex[2 * i]);
        int lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return EHR_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* ---- logging ---- */

enum { LOG_LINE_BYTES_MAX = 2048 };

static enum ehr_log_level log_level = EHR_LOG_INFO;
static ehr_log_sink log_sink;
static void *log_sink_ctx;

static const char *const log_level_names[] = {"debug", "info", "warn", "error", "off"};

void ehr_log_set_level(enum ehr_log_level level)
{
    log_level = level;
}

enum ehr_log_level ehr_log_get_level(void)
{
    return log_level;
}

int ehr_log_level_parse(const char *name, enum ehr_log_level *out)
{
    for (size_t i = 0; i < EHR_ARRAY_COUNT(log_level_names); i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *out = (enum ehr_log_level)i;
            return 0;
        }
    }
    return EHR_EINVAL;
}

void ehr_log_set_sink(ehr_log_sink sink, void *ctx)
{
    log_sink = sink;
    log_sink_ctx = ctx;
}

void ehr_log(enum ehr_log_level level, const char *msg, const char *kv_fmt, ...)
{
    if (level < log_level || level >= EHR_LOG_OFF)
        return;
    char line[LOG_LINE_BYTES_MAX];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    int used =
        snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=\"%s\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 now.tv_nsec / 1000000L, log_level_names[level], msg);
    if (used < 0)
        return;
    if (kv_fmt != NULL && kv_fmt[0] != '\0' && (size_t)used + 1 < sizeof line) {
        line[used++] = ' ';
        va_list ap;
        va_start(ap, kv_fmt);
        int more = vsnprintf(line + used, sizeof line - (size_t)used, kv_fmt, ap);
        va_end(ap);
        if (more < 0)
            line[used] = '\0';
    }
    if (log_sink != NULL)
        log_sink(log_sink_ctx, level, line);
    else
        fprintf(stderr, "%s\n", line);
}

static uint64_t log_limit_interval(const struct ehr_log_limit *limit)
{
    return limit->interval_ms != 0 ? limit->interval_ms : EHR_LOG_LIMIT_INTERVAL_MS;
}

/* Report the held events as one line at NOW_MS. */
static bool log_limit_release(struct ehr_log_limit *limit, uint64_t now_ms, uint64_t *count)
{
    *count = limit->held;
    limit->held = 0;
    limit->started = true;
    limit->next_ms = now_ms + log_limit_interval(limit);
    return true;
}

bool ehr_log_limit_hit(struct ehr_log_limit *limit, uint64_t now_ms, uint64_t *count)
{
    EHR_ASSERT(count != NULL);
    limit->held++;
    if (limit->started && now_ms < limit->next_ms)
        return false;
    return log_limit_release(limit, now_ms, count);
}

bool ehr_log_limit_flush(struct ehr_log_limit *limit, uint64_t now_ms, uint64_t *count)
{
    EHR_ASSERT(count != NULL);
    if (limit->held == 0 || now_ms < limit->next_ms)
        return false;
    return log_limit_release(limit, now_ms, count);
}

uint64_t ehr_log_limit_due_ms(const struct ehr_log_limit *limit)
{
    return limit->held == 0 ? 0 : limit->next_ms;
}

_Noreturn void ehr_assert_fail(const char *what, const char *file, int line, const char *func)
{
    fprintf(stderr, "ehrchain: invariant violated: %s (%s:%d in %s)\n", what, file, line, func);
    abort();
}

_Noreturn void ehr_panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ehrchain: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

int ehr_diag_fail(ehr_diag *diag, int err, const char *fmt, ...)
{
    EHR_ASSERT(err < 0);
    if (diag != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
        va_end(ap);
    }
    return err;
}
