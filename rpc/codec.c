/*
 * codec.c - the small codecs of gRPC over HTTP/2: status names and the
 * mapping from ehrchain error codes, grpc-timeout, percent-encoded
 * grpc-message, the 5-byte message prefix and the incremental message
 * reader; plus the growable byte buffer both sides use.
 *
 * No I/O and no nghttp2 here: everything is a pure function of its input,
 * which is what the unit tests and the fuzz target lean on.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rpc_internal.h"

/* ---- buffers ---- */

uint8_t *rpc__buf_reserve(struct rpc__buf *buf, size_t extra)
{
    EHR_ASSERT(buf->len <= buf->cap);
    if (buf->cap - buf->len < extra) {
        size_t need = buf->len + extra;
        EHR_ASSERT(need >= buf->len); /* no overflow: callers bound EXTRA */
        size_t cap = buf->cap ? buf->cap : 256;
        while (cap < need)
            cap *= 2;
        buf->data = ehr_realloc(buf->data, cap);
        buf->cap = cap;
    }
    return buf->data + buf->len;
}

void rpc__buf_recycle(struct rpc__buf *buf)
{
    buf->len = 0;
    if (buf->cap > RPC__POOLED_BUFFER_BYTES_MAX)
        rpc__buf_free(buf);
}

void rpc__buf_free(struct rpc__buf *buf)
{
    ehr_free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

/* ---- status ---- */

static const char *const status_names[RPC_STATUS_COUNT_] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

static const char *const status_texts[RPC_STATUS_COUNT_] = {
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
};

const char *rpc_status_name(int status)
{
    if (status < 0 || status >= RPC_STATUS_COUNT_)
        return "UNKNOWN_STATUS";
    return status_names[status];
}

const char *rpc__status_text(enum rpc_status status)
{
    EHR_ASSERT((unsigned)status < RPC_STATUS_COUNT_);
    return status_texts[status];
}

enum rpc_status rpc__status_parse(const uint8_t *text, size_t text_len)
{
    if (text_len == 0 || text_len > 2)
        return RPC_STATUS_UNKNOWN;
    unsigned value = 0;
    for (size_t i = 0; i < text_len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return RPC_STATUS_UNKNOWN;
        value = value * 10 + (unsigned)(text[i] - '0');
    }
    return value < RPC_STATUS_COUNT_ ? (enum rpc_status)value : RPC_STATUS_UNKNOWN;
}

enum rpc_status rpc_status_from_err(int err)
{
    switch (err) {
    case 0:
        return RPC_STATUS_OK;
    case EHR_EINVAL:
    case EHR_ETOOBIG:
    case EHR_ETRUNCATED:
    case EHR_EBADSIG:
    case EHR_EVERSION:
    case EHR_EEXPIRED:
    case EHR_ECHAIN:
        return RPC_STATUS_INVALID_ARGUMENT;
    case EHR_ENOTFOUND:
        return RPC_STATUS_NOT_FOUND;
    case EHR_EEXIST:
        return RPC_STATUS_ALREADY_EXISTS;
    case EHR_EFULL:
    case EHR_EAGAIN:
        return RPC_STATUS_RESOURCE_EXHAUSTED;
    case EHR_ENOTLEADER:
    case EHR_ECLOSED:
    case EHR_EDIVERGED:
        return RPC_STATUS_UNAVAILABLE;
    case EHR_ETIMEDOUT:
        return RPC_STATUS_DEADLINE_EXCEEDED;
    case EHR_EDENIED:
        return RPC_STATUS_PERMISSION_DENIED;
    case EHR_EREFUSED:
        return RPC_STATUS_FAILED_PRECONDITION;
    case EHR_EPASSPHRASE:
        return RPC_STATUS_UNAUTHENTICATED;
    case EHR_ECORRUPT:
    case EHR_ELINK:
        return RPC_STATUS_DATA_LOSS;
    case EHR_EPROTO:
        return RPC_STATUS_INTERNAL;
    case -ENOMEM:
        return RPC_STATUS_RESOURCE_EXHAUSTED;
    default:
        break;
    }
    if (err < 0 && err > -4096)
        return RPC_STATUS_INTERNAL; /* a system error on our side */
    return RPC_STATUS_UNKNOWN;
}

/* ---- grpc-timeout ---- */

int rpc__timeout_parse(const uint8_t *text, size_t text_len, uint64_t *out_ms)
{
    /* TimeoutValue is 1..8 ASCII digits, TimeoutUnit one letter. */
    if (text_len < 2 || text_len > 9)
        return EHR_EINVAL;
    uint64_t value = 0;
    for (size_t i = 0; i + 1 < text_len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return EHR_EINVAL;
        value = value * 10 + (uint64_t)(text[i] - '0');
    }
    /* value < 10^8, so every product below fits in 64 bits. */
    uint64_t ms;
    switch (text[text_len - 1]) {
    case 'H':
        ms = value * 3600 * 1000;
        break;
    case 'M':
        ms = value * 60 * 1000;
        break;
    case 'S':
        ms = value * 1000;
        break;
    case 'm':
        ms = value;
        break;
    case 'u':
        ms = (value + 999) / 1000;
        break;
    case 'n':
        ms = (value + 999999) / 1000000;
        break;
    default:
        return EHR_EINVAL;
    }
    *out_ms = ms > RPC_TIMEOUT_MS_MAX ? RPC_TIMEOUT_MS_MAX : ms;
    return 0;
}

void rpc__timeout_format(uint64_t ms, char *out)
{
    EHR_ASSERT(ms > 0);
    const uint64_t digits_max = 99999999; /* the value has at most 8 digits */
    uint64_t value = ms;
    char unit = 'm';
    if (value > digits_max) {
        value = (ms + 999) / 1000;
        unit = 'S';
    }
    if (value > digits_max) {
        value = (value + 3599) / 3600;
        unit = 'H';
    }
    if (value > digits_max)
        value = digits_max;
    /* By hand rather than snprintf: this runs once per call. */
    char digits[8];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    EHR_ASSERT(n <= 8 && n + 1 <= RPC__TIMEOUT_TEXT_BYTES_MAX);
    for (size_t i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    out[n] = unit;
    out[n + 1] = '\0';
}

/* ---- grpc-message ---- */

size_t rpc__percent_encode(const char *text, char *out, size_t out_bytes)
{
    static const char hex[] = "0123456789ABCDEF";
    EHR_ASSERT(out_bytes > 0);
    size_t n = 0;
    size_t text_len = text ? strnlen(text, RPC_STATUS_MESSAGE_BYTES_MAX) : 0;
    for (size_t i = 0; i < text_len; i++) {
        uint8_t c = (uint8_t)text[i];
        bool plain = c >= 0x20 && c <= 0x7e && c != '%';
        size_t need = plain ? 1 : 3;
        if (n + need >= out_bytes)
            break;
        if (plain) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
    return n;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void rpc__percent_decode(const uint8_t *in, size_t in_len, char *out, size_t out_bytes)
{
    EHR_ASSERT(out_bytes > 0);
    size_t n = 0;
    for (size_t i = 0; i < in_len && n + 1 < out_bytes; i++) {
        if (in[i] == '%' && i + 2 < in_len && hex_value(in[i + 1]) >= 0 &&
            hex_value(in[i + 2]) >= 0) {
            out[n++] = (char)(hex_value(in[i + 1]) << 4 | hex_value(in[i + 2]));
            i += 2;
        } else {
            out[n++] = (char)in[i];
        }
    }
    out[n] = '\0';
}

/* ---- messages ---- */

void rpc__prefix_write(uint8_t *out, uint32_t len)
{
    out[0] = 0; /* not compressed */
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

enum rpc_status rpc__status_fail(ehr_diag *diag, enum rpc_status status, const char *fmt, ...)
{
    EHR_ASSERT(status != RPC_STATUS_OK);
    if (diag != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* BUDGET refused a charge for being short of KIND: tell its owner. */
static void budget_refused(const struct rpc__budget *budget, enum rpc__budget_kind kind)
{
    if (budget->refused != NULL)
        budget->refused(budget->refused_ctx, kind);
}

enum rpc_status rpc__budget_take(const struct rpc__budget *budget, size_t n, ehr_diag *diag)
{
    if (*budget->connection_bytes < n) {
        budget_refused(budget, RPC__BUDGET_CONNECTION);
        return rpc__status_fail(diag, RPC_STATUS_RESOURCE_EXHAUSTED,
                                "message of %zu bytes does not fit the connection's buffer", n);
    }
    if (budget->address_bytes != NULL && *budget->address_bytes < n) {
        budget_refused(budget, RPC__BUDGET_ADDRESS);
        return rpc__status_fail(diag, RPC_STATUS_RESOURCE_EXHAUSTED,
                                "message of %zu bytes does not fit what your address may buffer "
                                "over all its connections",
                                n);
    }
    if (budget->certificate_bytes != NULL && *budget->certificate_bytes < n) {
        budget_refused(budget, RPC__BUDGET_CERTIFICATE);
        return rpc__status_fail(diag, RPC_STATUS_RESOURCE_EXHAUSTED,
                                "message of %zu bytes does not fit what your certificate may "
                                "buffer over all its connections",
                                n);
    }
    if (budget->server_bytes != NULL && *budget->server_bytes < n) {
        budget_refused(budget, RPC__BUDGET_SERVER);
        return rpc__status_fail(diag, RPC_STATUS_RESOURCE_EXHAUSTED,
                                "message of %zu bytes does not fit what the server may buffer "
                                "for unfinished requests now; retry later",
                                n);
    }
    *budget->connection_bytes -= n;
    if (budget->address_bytes != NULL)
        *budget->address_bytes -= n;
    if (budget->certificate_bytes != NULL)
        *budget->certificate_bytes -= n;
    if (budget->server_bytes != NULL)
        *budget->server_bytes -= n;
    return RPC_STATUS_OK;
}

void rpc__budget_give(const struct rpc__budget *budget, size_t n)
{
    *budget->connection_bytes += n;
    if (budget->address_bytes != NULL)
        *budget->address_bytes += n;
    if (budget->certificate_bytes != NULL)
        *budget->certificate_bytes += n;
    if (budget->server_bytes != NULL)
        *budget->server_bytes += n;
}

enum rpc_status rpc__reader_feed(struct rpc__reader *reader, const uint8_t *data, size_t len,
                                 size_t message_bytes_max, const struct rpc__budget *budget,
                                 rpc__message_fn on_message, void *ctx, ehr_diag *diag)
{
    while (len > 0) {
        if (!reader->in_body) {
            size_t take = RPC__PREFIX_BYTES - reader->prefix_len;
            if (take > len)
                take = len;
            memcpy(reader->prefix + reader->prefix_len, data, take);
            reader->prefix_len += (uint32_t)take;
            data += take;
            len -= take;
            if (reader->prefix_len < RPC__PREFIX_BYTES)
                break;
            reader->prefix_len = 0;
            uint8_t flag = reader->prefix[0];
            uint32_t body_len = (uint32_t)reader->prefix[1] << 24 |
                                (uint32_t)reader->prefix[2] << 16 |
                                (uint32_t)reader->prefix[3] << 8 | reader->prefix[4];
            if (flag == 1) {
                return rpc__status_fail(diag, RPC_STATUS_INTERNAL,
                                        "compressed message, but no compression was negotiated");
            }
            if (flag != 0) {
                return rpc__status_fail(diag, RPC_STATUS_INTERNAL, "invalid message flag 0x%02x",
                                        flag);
            }
            if (reader->messages_max != 0 && reader->message_count >= reader->messages_max) {
                return rpc__status_fail(diag, RPC_STATUS_INTERNAL,
                                        "more than %u message(s) on a call that takes %u",
                                        reader->messages_max, reader->messages_max);
            }
            if (body_len > message_bytes_max) {
                return rpc__status_fail(diag, RPC_STATUS_RESOURCE_EXHAUSTED,
                                        "message of %u bytes is over the limit of %zu bytes",
                                        body_len, message_bytes_max);
            }
            if (body_len <= len) {
                /* The whole body is in this chunk: hand it over without a copy. */
                reader->message_count++;
                enum rpc_status st = on_message(ctx, data, body_len, diag);
                if (st != RPC_STATUS_OK)
                    return st;
                data += body_len;
                len -= body_len;
                continue;
            }
            if (budget != NULL) {
                enum rpc_status st = rpc__budget_take(budget, body_len, diag);
                if (st != RPC_STATUS_OK)
                    return st;
            }
            reader->body_len = body_len;
            reader->body.len = 0;
            reader->in_body = true;
            continue; /* the body may start in a later chunk */
        }
        size_t take = reader->body_len - reader->body.len;
        if (take > len)
            take = len;
        /* Grow with the data that actually arrived, never to the announced size at once. */
        memcpy(rpc__buf_reserve(&reader->body, take), data, take);
        reader->body.len += take;
        data += take;
        len -= take;
        if (reader->body.len == reader->body_len) {
            reader->in_body = false;
            if (budget != NULL)
                rpc__budget_give(budget, reader->body_len);
            reader->message_count++;
            enum rpc_status st = on_message(ctx, reader->body.data, reader->body.len, diag);
            reader->body.len = 0;
            reader->body_len = 0;
            if (st != RPC_STATUS_OK)
                return st;
        }
    }
    return RPC_STATUS_OK;
}

bool rpc__reader_idle(const struct rpc__reader *reader)
{
    return !reader->in_body && reader->prefix_len == 0;
}

void rpc__reader_release(struct rpc__reader *reader, const struct rpc__budget *budget)
{
    if (reader->in_body && budget != NULL)
        rpc__budget_give(budget, reader->body_len);
    reader->in_body = false;
    reader->prefix_len = 0;
    reader->body_len = 0;
    reader->message_count = 0;
    rpc__buf_recycle(&reader->body);
}

/* ---- custom trailing metadata ---- */

bool rpc__trailer_name_ok(const char *name, size_t name_len)
{
    if (name_len == 0 || name_len > RPC_TRAILER_NAME_BYTES_MAX)
        return false;
    if (name_len >= 5 && memcmp(name, "grpc-", 5) == 0)
        return false; /* gRPC's own */
    if (name_len == 12 && memcmp(name, "content-type", 12) == 0)
        return false;
    for (size_t i = 0; i < name_len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false; /* ':' (pseudo-headers) and upper case among them */
    }
    return true;
}

bool rpc__trailer_value_ok(const char *value, size_t value_len)
{
    if (value_len > RPC_TRAILER_VALUE_BYTES_MAX)
        return false;
    for (size_t i = 0; i < value_len; i++) {
        if (value[i] < 0x20 || value[i] > 0x7e)
            return false;
    }
    return true;
}

const char *rpc__trailer_find(const struct rpc_trailer *trailers, uint32_t count, const char *name)
{
    for (uint32_t i = 0; i < count; i++) {
        if (strcmp(trailers[i].name, name) == 0)
            return trailers[i].value;
    }
    return NULL;
}
