/*
 * config.c - the node's configuration file (config.h): strict parsing with
 * jansson, defaults, range checks naming the key, relative path
 * resolution, and writing a complete indented file.
 *
 * Not here: acting on the configuration (ehrd does), the data directory's
 * contents (datadir.c).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(NODE_CONFIG_RPC_MESSAGE_BYTES_MIN < NODE_CONFIG_RPC_MESSAGE_BYTES_MAX,
               "an RPC message can carry the largest transaction");
_Static_assert(NODE_CONFIG_BLOCK_BYTES_MIN < NODE_CONFIG_BLOCK_BYTES_MAX,
               "a block can carry the largest transaction");
_Static_assert(NODE_CONFIG_BLOCK_BYTES_MAX <= (uint64_t)EHR_BLOCK_BYTES_MAX,
               "a configured block is a valid ledger block");
_Static_assert(NODE_CONFIG_PATH_BYTES_MAX < PATH_MAX, "a resolved path fits PATH_MAX");

/* One key of "limits": where it lives, its default and its range. */
struct limit_spec {
    const char *name;
    size_t offset; /* in struct node_config_limits */
    uint64_t value_default, min, max;
};

#define LIMIT(field, def, lo, hi)                                                                  \
    {                                                                                              \
#field, offsetof(struct node_config_limits, field), def, lo, hi                            \
    }

static const struct limit_spec limit_specs[] = {
    LIMIT(mempool_tx_count, NODE_CONFIG_MEMPOOL_TX_COUNT_DEFAULT, NODE_CONFIG_MEMPOOL_TX_COUNT_MIN,
          NODE_CONFIG_MEMPOOL_TX_COUNT_MAX),
    LIMIT(mempool_bytes, NODE_CONFIG_MEMPOOL_BYTES_DEFAULT, NODE_CONFIG_MEMPOOL_BYTES_MIN,
          NODE_CONFIG_MEMPOOL_BYTES_MAX),
    LIMIT(block_tx_count, NODE_CONFIG_BLOCK_TX_COUNT_DEFAULT, NODE_CONFIG_BLOCK_TX_COUNT_MIN,
          NODE_CONFIG_BLOCK_TX_COUNT_MAX),
    LIMIT(block_bytes, NODE_CONFIG_BLOCK_BYTES_DEFAULT, NODE_CONFIG_BLOCK_BYTES_MIN,
          NODE_CONFIG_BLOCK_BYTES_MAX),
    LIMIT(block_flush_ms, NODE_CONFIG_BLOCK_FLUSH_MS_DEFAULT, NODE_CONFIG_BLOCK_FLUSH_MS_MIN,
          NODE_CONFIG_BLOCK_FLUSH_MS_MAX),
    LIMIT(rpc_message_bytes, NODE_CONFIG_RPC_MESSAGE_BYTES_DEFAULT,
          NODE_CONFIG_RPC_MESSAGE_BYTES_MIN, NODE_CONFIG_RPC_MESSAGE_BYTES_MAX),
    LIMIT(raft_tick_ms, NODE_CONFIG_RAFT_TICK_MS_DEFAULT, NODE_CONFIG_RAFT_TICK_MS_MIN,
          NODE_CONFIG_RAFT_TICK_MS_MAX),
    LIMIT(election_ticks, NODE_CONFIG_ELECTION_TICKS_DEFAULT, NODE_CONFIG_ELECTION_TICKS_MIN,
          NODE_CONFIG_ELECTION_TICKS_MAX),
    /* Also below election_ticks: checked in limits_check. */
    LIMIT(heartbeat_ticks, NODE_CONFIG_HEARTBEAT_TICKS_DEFAULT, NODE_CONFIG_HEARTBEAT_TICKS_MIN,
          NODE_CONFIG_ELECTION_TICKS_MAX - 1),
    LIMIT(snapshot_entries, NODE_CONFIG_SNAPSHOT_ENTRIES_DEFAULT, NODE_CONFIG_SNAPSHOT_ENTRIES_MIN,
          NODE_CONFIG_SNAPSHOT_ENTRIES_MAX),
    LIMIT(submit_rate_per_s, NODE_CONFIG_SUBMIT_RATE_PER_S_DEFAULT,
          NODE_CONFIG_SUBMIT_RATE_PER_S_MIN, NODE_CONFIG_SUBMIT_RATE_PER_S_MAX),
    LIMIT(submit_burst, NODE_CONFIG_SUBMIT_BURST_DEFAULT, NODE_CONFIG_SUBMIT_BURST_MIN,
          NODE_CONFIG_SUBMIT_BURST_MAX),
};

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};
_Static_assert(EHR_LOG_DEBUG == 0 && EHR_LOG_ERROR == 3, "log_level_names follows the enum");

static uint64_t *limit_field(struct node_config_limits *limits, const struct limit_spec *spec)
{
    return (uint64_t *)((char *)limits + spec->offset);
}

static uint64_t limit_get(const struct node_config_limits *limits, const struct limit_spec *spec)
{
    return *(const uint64_t *)((const char *)limits + spec->offset);
}

void node_config_defaults(struct node_config *cfg)
{
    EHR_ASSERT(cfg != NULL);
    memset(cfg, 0, sizeof *cfg);
    cfg->log_level = EHR_LOG_INFO;
    for (size_t i = 0; i < EHR_ARRAY_COUNT(limit_specs); i++)
        *limit_field(&cfg->limits, &limit_specs[i]) = limit_specs[i].value_default;
}

void node_config_free(struct node_config *cfg)
{
    if (cfg == NULL)
        return;
    ehr_free(cfg->data_dir);
    ehr_free(cfg->key_file);
    ehr_free(cfg->passphrase_file);
    ehr_free(cfg->peer_listen);
    ehr_free(cfg->rpc_listen);
    ehr_free(cfg->metrics_listen);
    ehr_free(cfg->tls_cert_file);
    ehr_free(cfg->tls_key_file);
    ehr_free(cfg->tls_client_ca_file);
    node_config_defaults(cfg);
}

int node_config_listen_resolve(const char *address, char *out, size_t out_size, ehr_diag *diag)
{
    EHR_ASSERT(address != NULL);
    EHR_ASSERT(out != NULL && out_size > 0);
    const char *colon = strrchr(address, ':');
    EHR_ASSERT(colon != NULL); /* node_config_address_check passed */
    size_t host_len = (size_t)(colon - address);
    char host[NODE_CONFIG_ADDRESS_BYTES_MAX + 1];
    EHR_ASSERT(host_len < sizeof host);
    memcpy(host, address, host_len);
    host[host_len] = '\0';
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        memmove(host, host + 1, host_len - 2);
        host[host_len - 2] = '\0';
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || res == NULL)
        return ehr_diag_fail(diag, EHR_ENOTFOUND, "cannot resolve \"%s\": %s", host,
                             rc != 0 ? gai_strerror(rc) : "no address");
    char ip[INET6_ADDRSTRLEN] = "";
    if (res->ai_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)res->ai_addr;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, out_size, "[%s]:%s", ip, colon + 1);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)res->ai_addr;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, out_size, "%s:%s", ip, colon + 1);
    }
    freeaddrinfo(res);
    return 0;
}

bool node_config_address_is_loopback(const char *resolved)
{
    EHR_ASSERT(resolved != NULL);
    const char *colon = strrchr(resolved, ':');
    if (colon == NULL)
        return false;
    char host[NODE_CONFIG_ADDRESS_BYTES_MAX + 1];
    size_t host_len = (size_t)(colon - resolved);
    if (host_len >= sizeof host)
        return false;
    memcpy(host, resolved, host_len);
    host[host_len] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host[host_len - 1] = '\0';
        struct in6_addr v6;
        return inet_pton(AF_INET6, host + 1, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
    }
    return false;
}

int node_config_rpc_exposure_check(const struct node_config *cfg, const char *resolved,
                                   bool *insecure, ehr_diag *diag)
{
    EHR_ASSERT(cfg != NULL);
    EHR_ASSERT(resolved != NULL);
    bool exposed = !node_config_address_is_loopback(resolved);
    if (insecure != NULL)
        *insecure = exposed && cfg->tls_cert_file == NULL;
    if (!exposed || cfg->tls_cert_file != NULL || cfg->insecure_rpc)
        return 0;
    return ehr_diag_fail(diag, EHR_EINVAL,
                         "rpc_listen %s (%s) is not a loopback address and TLS is not configured: "
                         "set tls_cert_file and tls_key_file, or \"insecure_rpc\": true to serve "
                         "the API in cleartext anyway",
                         cfg->rpc_listen, resolved);
}

int node_config_address_check(const char *address, ehr_diag *diag)
{
    EHR_ASSERT(address != NULL);
    size_t len = strlen(address);
    if (len == 0 || len > NODE_CONFIG_ADDRESS_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "must be HOST:PORT of 1 to %d bytes",
                             NODE_CONFIG_ADDRESS_BYTES_MAX);
    const char *colon = strrchr(address, ':');
    if (colon == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "\"%s\" is not HOST:PORT", address);
    const char *digits = colon + 1;
    size_t digits_len = strlen(digits);
    uint32_t port = 0;
    bool port_ok = digits_len >= 1 && digits_len <= 5 && digits[0] != '0';
    for (size_t i = 0; port_ok && i < digits_len; i++) {
        port_ok = digits[i] >= '0' && digits[i] <= '9';
        port = port * 10 + (uint32_t)(digits[i] - '0');
    }
    if (!port_ok || port > 65535)
        return ehr_diag_fail(diag, EHR_EINVAL, "\"%s\" does not end in a port from 1 to 65535",
                             address);
    size_t host_len = (size_t)(colon - address);
    bool bracketed = host_len >= 2 && address[0] == '[' && address[host_len - 1] == ']';
    size_t from = bracketed ? 1 : 0, to = bracketed ? host_len - 1 : host_len;
    if (from == to)
        return ehr_diag_fail(diag, EHR_EINVAL, "\"%s\" has no host", address);
    for (size_t i = from; i < to; i++) {
        char c = address[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || (bracketed && c == ':');
        if (!ok)
            return ehr_diag_fail(diag, EHR_EINVAL, "\"%s\": the host has a character not allowed",
                                 address);
    }
    return 0;
}

/* Every limit in range and heartbeat_ticks < election_ticks. */
static int limits_check(const struct node_config_limits *limits, ehr_diag *diag)
{
    for (size_t i = 0; i < EHR_ARRAY_COUNT(limit_specs); i++) {
        const struct limit_spec *spec = &limit_specs[i];
        uint64_t v = limit_get(limits, spec);
        if (v < spec->min)
            return ehr_diag_fail(diag, EHR_EINVAL, "limits.%s: %llu is below the minimum %llu",
                                 spec->name, (unsigned long long)v, (unsigned long long)spec->min);
        if (v > spec->max)
            return ehr_diag_fail(diag, EHR_EINVAL, "limits.%s: %llu is above the maximum %llu",
                                 spec->name, (unsigned long long)v, (unsigned long long)spec->max);
    }
    if (limits->heartbeat_ticks >= limits->election_ticks)
        return ehr_diag_fail(
            diag, EHR_EINVAL,
            "limits.heartbeat_ticks: %llu must be below limits.election_ticks (%llu)",
            (unsigned long long)limits->heartbeat_ticks,
            (unsigned long long)limits->election_ticks);
    return 0;
}

static int path_check(const char *key, const char *path, bool required, ehr_diag *diag)
{
    if (path == NULL)
        return required ? ehr_diag_fail(diag, EHR_EINVAL, "%s: required", key) : 0;
    size_t len = strlen(path);
    if (len == 0 || len > NODE_CONFIG_PATH_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: must be a path of 1 to %d bytes", key,
                             NODE_CONFIG_PATH_BYTES_MAX);
    return 0;
}

static int address_field_check(const char *key, const char *address, ehr_diag *diag)
{
    if (address == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: required", key);
    ehr_diag why;
    if (node_config_address_check(address, &why) != 0)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: %s", key, why.msg);
    return 0;
}

/* The TLS keys go together: a certificate with its key, a client CA with both. */
static int tls_fields_check(const struct node_config *cfg, ehr_diag *diag)
{
    if (cfg->tls_cert_file != NULL && cfg->tls_key_file == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "tls_cert_file: needs tls_key_file too");
    if (cfg->tls_key_file != NULL && cfg->tls_cert_file == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "tls_key_file: needs tls_cert_file too");
    if (cfg->tls_client_ca_file != NULL && cfg->tls_cert_file == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "tls_client_ca_file: needs tls_cert_file and tls_key_file (mutual "
                             "TLS is TLS first)");
    return 0;
}

int node_config_check(const struct node_config *cfg, ehr_diag *diag)
{
    EHR_ASSERT(cfg != NULL);
    int rc;
    if ((rc = path_check("data_dir", cfg->data_dir, true, diag)) != 0 ||
        (rc = path_check("key_file", cfg->key_file, false, diag)) != 0 ||
        (rc = path_check("passphrase_file", cfg->passphrase_file, false, diag)) != 0 ||
        (rc = address_field_check("peer_listen", cfg->peer_listen, diag)) != 0 ||
        (rc = address_field_check("rpc_listen", cfg->rpc_listen, diag)) != 0)
        return rc;
    if (cfg->metrics_listen != NULL &&
        (rc = address_field_check("metrics_listen", cfg->metrics_listen, diag)) != 0)
        return rc;
    if ((rc = path_check("tls_cert_file", cfg->tls_cert_file, false, diag)) != 0 ||
        (rc = path_check("tls_key_file", cfg->tls_key_file, false, diag)) != 0 ||
        (rc = path_check("tls_client_ca_file", cfg->tls_client_ca_file, false, diag)) != 0 ||
        (rc = tls_fields_check(cfg, diag)) != 0)
        return rc;
    if (cfg->log_level < EHR_LOG_DEBUG || cfg->log_level > EHR_LOG_ERROR)
        return ehr_diag_fail(diag, EHR_EINVAL, "log_level: must be debug, info, warn or error");
    return limits_check(&cfg->limits, diag);
}

/* ---- Loading ---- */

/* What one load needs besides the result. */
struct loader {
    const char *path;   /* the config file, for messages */
    char dir[PATH_MAX]; /* its directory, absolute */
    ehr_diag *diag;
};

/* An error about KEY in the file: "PATH: KEY: WHAT". */
static int key_error(const struct loader *ld, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int key_error(const struct loader *ld, const char *key, const char *fmt, ...)
{
    char what[EHR_DIAG_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ehr_diag_fail(ld->diag, EHR_EINVAL, "%s: %s: %s", ld->path, key, what);
}

/* VALUE as a non-empty string of at most MAX bytes (a pointer into VALUE). */
static int string_get(const struct loader *ld, const char *key, json_t *value, size_t max,
                      const char **out)
{
    if (!json_is_string(value))
        return key_error(ld, key, "must be a string");
    size_t len = json_string_length(value);
    if (len == 0 || len > max)
        return key_error(ld, key, "must be 1 to %zu bytes, not %zu", max, len);
    *out = json_string_value(value);
    return 0;
}

/* A path from the file, made absolute against the config file's directory. */
static int path_get(const struct loader *ld, const char *key, json_t *value, char **out)
{
    const char *text = NULL;
    int rc = string_get(ld, key, value, NODE_CONFIG_PATH_BYTES_MAX, &text);
    if (rc != 0)
        return rc;
    char joined[PATH_MAX];
    int n = text[0] == '/' ? snprintf(joined, sizeof joined, "%s", text)
                           : snprintf(joined, sizeof joined, "%s/%s", ld->dir, text);
    if (n < 0 || (size_t)n > NODE_CONFIG_PATH_BYTES_MAX)
        return key_error(ld, key, "longer than %d bytes once resolved against %s",
                         NODE_CONFIG_PATH_BYTES_MAX, ld->dir);
    ehr_free(*out); /* duplicate keys are refused by the parser; this is belt and braces */
    *out = ehr_strdup(joined);
    return 0;
}

static int address_get(const struct loader *ld, const char *key, json_t *value, char **out)
{
    const char *text = NULL;
    int rc = string_get(ld, key, value, NODE_CONFIG_ADDRESS_BYTES_MAX, &text);
    if (rc != 0)
        return rc;
    ehr_diag why;
    if (node_config_address_check(text, &why) != 0)
        return key_error(ld, key, "%s", why.msg);
    ehr_free(*out);
    *out = ehr_strdup(text);
    return 0;
}

static int limits_get(const struct loader *ld, json_t *value, struct node_config_limits *limits)
{
    if (!json_is_object(value))
        return key_error(ld, "limits", "must be an object");
    const char *key;
    json_t *item;
    json_object_foreach(value, key, item)
    {
        const struct limit_spec *spec = NULL;
        for (size_t i = 0; i < EHR_ARRAY_COUNT(limit_specs) && spec == NULL; i++)
            if (strcmp(limit_specs[i].name, key) == 0)
                spec = &limit_specs[i];
        char name[128];
        snprintf(name, sizeof name, "limits.%s", key);
        if (spec == NULL)
            return key_error(ld, name, "unknown key");
        if (!json_is_integer(item))
            return key_error(ld, name, "must be an integer from %llu to %llu",
                             (unsigned long long)spec->min, (unsigned long long)spec->max);
        json_int_t v = json_integer_value(item);
        if (v < 0 || (uint64_t)v < spec->min)
            return key_error(ld, name, "%lld is below the minimum %llu", (long long)v,
                             (unsigned long long)spec->min);
        if ((uint64_t)v > spec->max)
            return key_error(ld, name, "%lld is above the maximum %llu", (long long)v,
                             (unsigned long long)spec->max);
        *limit_field(limits, spec) = (uint64_t)v;
    }
    return 0;
}

static int log_level_get(const struct loader *ld, json_t *value, enum ehr_log_level *out)
{
    if (json_is_string(value)) {
        for (size_t i = 0; i < EHR_ARRAY_COUNT(log_level_names); i++) {
            if (strcmp(json_string_value(value), log_level_names[i]) == 0)
                return ehr_log_level_parse(log_level_names[i], out);
        }
    }
    return key_error(ld, "log_level", "must be one of \"debug\", \"info\", \"warn\", \"error\"");
}

static int bool_get(const struct loader *ld, const char *key, json_t *value, bool *out)
{
    if (!json_is_boolean(value))
        return key_error(ld, key, "must be true or false");
    *out = json_is_true(value);
    return 0;
}

/* Fill CFG from the parsed object ROOT. */
static int config_from_json(const struct loader *ld, json_t *root, struct node_config *cfg)
{
    const char *key;
    json_t *value;
    int rc = 0;
    json_object_foreach(root, key, value)
    {
        if (strcmp(key, "data_dir") == 0)
            rc = path_get(ld, key, value, &cfg->data_dir);
        else if (strcmp(key, "key_file") == 0)
            rc = path_get(ld, key, value, &cfg->key_file);
        else if (strcmp(key, "passphrase_file") == 0)
            rc = path_get(ld, key, value, &cfg->passphrase_file);
        else if (strcmp(key, "peer_listen") == 0)
            rc = address_get(ld, key, value, &cfg->peer_listen);
        else if (strcmp(key, "rpc_listen") == 0)
            rc = address_get(ld, key, value, &cfg->rpc_listen);
        else if (strcmp(key, "metrics_listen") == 0)
            rc = address_get(ld, key, value, &cfg->metrics_listen);
        else if (strcmp(key, "tls_cert_file") == 0)
            rc = path_get(ld, key, value, &cfg->tls_cert_file);
        else if (strcmp(key, "tls_key_file") == 0)
            rc = path_get(ld, key, value, &cfg->tls_key_file);
        else if (strcmp(key, "tls_client_ca_file") == 0)
            rc = path_get(ld, key, value, &cfg->tls_client_ca_file);
        else if (strcmp(key, "insecure_rpc") == 0)
            rc = bool_get(ld, key, value, &cfg->insecure_rpc);
        else if (strcmp(key, "log_level") == 0)
            rc = log_level_get(ld, value, &cfg->log_level);
        else if (strcmp(key, "limits") == 0)
            rc = limits_get(ld, value, &cfg->limits);
        else
            rc = key_error(ld, key,
                           "unknown key (known: data_dir, key_file, passphrase_file, peer_listen, "
                           "rpc_listen, metrics_listen, tls_cert_file, tls_key_file, "
                           "tls_client_ca_file, insecure_rpc, log_level, limits)");
        if (rc != 0)
            return rc;
    }
    if (cfg->data_dir == NULL)
        return key_error(ld, "data_dir", "required");
    if (cfg->peer_listen == NULL)
        return key_error(ld, "peer_listen", "required");
    if (cfg->rpc_listen == NULL)
        return key_error(ld, "rpc_listen", "required");
    if (cfg->key_file == NULL) {
        char joined[PATH_MAX];
        int n = snprintf(joined, sizeof joined, "%s/node.key", cfg->data_dir);
        if (n < 0 || (size_t)n > NODE_CONFIG_PATH_BYTES_MAX)
            return key_error(ld, "key_file", "the default DATA_DIR/node.key is too long");
        cfg->key_file = ehr_strdup(joined);
    }
    ehr_diag why;
    if (limits_check(&cfg->limits, &why) != 0 || tls_fields_check(cfg, &why) != 0)
        return ehr_diag_fail(ld->diag, EHR_EINVAL, "%s: %s", ld->path, why.msg);
    return 0;
}

/* The absolute directory of the file PATH into LD->dir. */
static int loader_dir(struct loader *ld, const char *path)
{
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(parent, sizeof parent, ".");
    else if (slash == path)
        snprintf(parent, sizeof parent, "/");
    else
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
    if (realpath(parent, ld->dir) == NULL) {
        int rc = -errno;
        return ehr_diag_fail(ld->diag, rc, "%s: cannot resolve its directory: %s", path,
                             ehr_strerror(rc));
    }
    return 0;
}

int node_config_load(const char *path, struct node_config *cfg, ehr_diag *diag)
{
    EHR_ASSERT(path != NULL);
    EHR_ASSERT(cfg != NULL);
    node_config_defaults(cfg);
    if (strlen(path) > NODE_CONFIG_PATH_BYTES_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL, "config file path longer than %d bytes",
                             NODE_CONFIG_PATH_BYTES_MAX);
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = ehr_file_read_alloc(path, NODE_CONFIG_FILE_BYTES_MAX, &data, &len);
    if (rc == EHR_ETOOBIG)
        return ehr_diag_fail(diag, rc, "%s: larger than %d bytes; not a config file", path,
                             NODE_CONFIG_FILE_BYTES_MAX);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s: cannot read: %s", path, ehr_strerror(rc));
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    ehr_free(data);
    if (root == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "%s: line %d, column %d: %s", path, jerr.line,
                             jerr.column, jerr.text);
    struct loader ld = {.path = path, .diag = diag};
    if (!json_is_object(root))
        rc = ehr_diag_fail(diag, EHR_EINVAL, "%s: must be one JSON object", path);
    else if ((rc = loader_dir(&ld, path)) == 0)
        rc = config_from_json(&ld, root, cfg);
    json_decref(root);
    if (rc != 0) {
        node_config_free(cfg);
        return rc;
    }
    EHR_ASSERT(node_config_check(cfg, NULL) == 0);
    return 0;
}

/* ---- Writing ---- */

int node_config_write(const char *path, const struct node_config *cfg, bool overwrite,
                      ehr_diag *diag)
{
    EHR_ASSERT(path != NULL);
    int rc = node_config_check(cfg, diag);
    if (rc != 0)
        return rc;
    json_t *root = json_object();
    json_t *limits = json_object();
    EHR_ASSERT(root != NULL && limits != NULL);
    const char *const strings[][2] = {
        {"data_dir", cfg->data_dir},
        {"key_file", cfg->key_file},
        {"passphrase_file", cfg->passphrase_file},
        {"peer_listen", cfg->peer_listen},
        {"rpc_listen", cfg->rpc_listen},
        {"metrics_listen", cfg->metrics_listen},
        {"tls_cert_file", cfg->tls_cert_file},
        {"tls_key_file", cfg->tls_key_file},
        {"tls_client_ca_file", cfg->tls_client_ca_file},
        {"log_level", log_level_names[cfg->log_level]},
    };
    for (size_t i = 0; i < EHR_ARRAY_COUNT(strings); i++) {
        if (strings[i][1] == NULL)
            continue; /* optional and absent */
        json_t *s = json_string(strings[i][1]);
        if (s == NULL) {
            json_decref(root);
            json_decref(limits);
            return ehr_diag_fail(diag, EHR_EINVAL, "%s: not valid UTF-8", strings[i][0]);
        }
        json_object_set_new(root, strings[i][0], s);
    }
    if (cfg->insecure_rpc)
        json_object_set_new(root, "insecure_rpc", json_true());
    for (size_t i = 0; i < EHR_ARRAY_COUNT(limit_specs); i++)
        json_object_set_new(limits, limit_specs[i].name,
                            json_integer((json_int_t)limit_get(&cfg->limits, &limit_specs[i])));
    json_object_set_new(root, "limits", limits);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    EHR_ASSERT(text != NULL); /* every string is UTF-8: only out of memory fails */
    size_t len = strlen(text);
    char *file = ehr_malloc(len + 2);
    memcpy(file, text, len);
    file[len] = '\n';
    file[len + 1] = '\0';
    free(text);
    EHR_ASSERT(len + 1 <= NODE_CONFIG_FILE_BYTES_MAX);
    rc = ehr_file_write_atomic(path, file, len + 1, 0600, overwrite);
    ehr_free(file);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "%s: cannot write: %s", path, ehr_strerror(rc));
    return 0;
}
