/*
 * tls.c - TLS 1.3 with ALPN "h2" under the HTTP/2 connection of conn.c,
 * with OpenSSL over a pair of memory BIOs: ciphertext read from the libuv
 * stream goes into the read BIO and comes out of SSL_read as the plaintext
 * nghttp2 is fed; the plaintext nghttp2 gathers in the connection's output
 * buffer goes through SSL_write, and the write BIO's ciphertext is written
 * from the other half of the double buffer. OpenSSL never touches a
 * socket, so nothing here blocks the loop and the connection keeps its
 * bounds (output_bytes_max, the first-request deadline, the per-address
 * limits) as in cleartext.
 *
 * Not here: when to read, write or close (the owners: server.c and
 * client.c), what a failed handshake costs in the log (server.c counts it
 * with the other refusals).
 *
 * Design notes
 *
 * A TLS connection (struct rpc__tls_conn) is in one of three states:
 *   handshaking --rpc__tls_recv (SSL_do_handshake says done, ALPN is h2;
 *     the owner's open callback told, and it did not refuse)--> open
 *   handshaking / open --rpc__tls_recv (an alert, a bad record, a refused
 *     certificate, no ALPN h2)--> failed
 * Invariants:
 *   1. No application data leaves before the handshake is complete: the
 *      plaintext nghttp2 produces meanwhile waits in the connection's
 *      output buffer (bounded; nghttp2 is told WOULDBLOCK beyond it), so an
 *      unauthenticated client (mutual TLS) never gets a byte of HTTP/2.
 *   2. Ciphertext leaves in the order OpenSSL produced it: the write BIO is
 *      drained whole into the buffer that is written, and is drained again
 *      only once that write completed.
 *   3. A failed connection sends nothing more but what OpenSSL queued
 *      (its alert) and reads nothing more; its owner closes it.
 *   4. The memory a connection holds in OpenSSL is bounded by one record
 *      in the read BIO (we decrypt everything we are given at once) and
 *      one output buffer's worth in the write BIO.
 *   5. The owner hears of a complete handshake (its open callback) once,
 *      before any plaintext of the connection reaches it, so it can judge
 *      the peer (a server counts its client's certificate) before it reads
 *      a byte of HTTP/2.
 *
 * OpenSSL caveats (where they bite):
 *   - Its error queue is per thread and sticky: every SSL_* call here is
 *     preceded by ERR_clear_error(), and a failure's reason is taken from
 *     the queue (or the verify result) right after it.
 *   - An SSL object holds a reference to its SSL_CTX, so a reload may free
 *     the old context while connections made with it live on.
 *   - A key file with a passphrase would make OpenSSL prompt on the
 *     terminal: the passphrase callback refuses instead.
 *   - In TLS 1.3 a client's handshake completes before the server has
 *     checked the client's certificate: a refusal reaches the client as an
 *     alert on its first read, which rpc__tls_recv reports like any other
 *     failure.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "rpc_internal.h"

/* The TLS 1.3 suites a server accepts, in its order of preference. */
#define TLS_CIPHERSUITES                                                                           \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* The one protocol we speak, in ALPN's wire form. */
static const unsigned char alpn_h2[] = {2, 'h', '2'};

struct rpc_tls {
    SSL_CTX *ctx; /* replaced by a reload; connections keep theirs */
    bool server;
};

struct rpc__tls_conn {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer (owned by ssl) */
    BIO *wbio; /* ciphertext to the peer (owned by ssl) */
    bool open;
    bool failed;
};

/* ---- errors ---- */

/* The reason OpenSSL gives for the last failure, or FALLBACK. */
static void tls_reason(char *out, size_t out_size, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0) {
        snprintf(out, out_size, "%s", fallback);
        return;
    }
    const char *reason = ERR_reason_error_string(e);
    if (reason != NULL)
        snprintf(out, out_size, "%s", reason);
    else
        ERR_error_string_n(e, out, out_size);
}

/* Fail with what OpenSSL says about WHAT (a file's role and path). */
static int tls_file_fail(ehr_diag *diag, const char *what, const char *path)
{
    char reason[160];
    tls_reason(reason, sizeof reason, "unreadable");
    ERR_clear_error();
    return ehr_diag_fail(diag, EHR_EINVAL, "%s %s: %s", what, path, reason);
}

/* A key file is never decrypted with a passphrase typed on a terminal. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *data)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)data;
    return -1;
}

/* ---- contexts ---- */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *out_len,
                       const unsigned char *in, unsigned int in_len, void *data)
{
    (void)ssl;
    (void)data;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, out_len, alpn_h2, sizeof alpn_h2, in, in_len) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

/* A context for TLS 1.3 only, that never prompts for a passphrase. */
static SSL_CTX *tls_ctx_base(bool server)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    EHR_ASSERT(ctx != NULL); /* only out of memory */
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/* Certificate chain and key (which must match) into CTX. */
static int tls_ctx_identity(SSL_CTX *ctx, const char *cert_file, const char *key_file,
                            ehr_diag *diag)
{
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        return tls_file_fail(diag, "TLS certificate", cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH)
            return tls_file_fail(diag, "TLS key", key_file);
        ERR_clear_error();
        return ehr_diag_fail(diag, EHR_EINVAL, "TLS key %s is not the key of the certificate %s",
                             key_file, cert_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        return ehr_diag_fail(diag, EHR_EINVAL, "TLS key %s is not the key of the certificate %s",
                             key_file, cert_file);
    }
    return 0;
}

static int tls_server_ctx(const struct rpc_tls_server_files *files, SSL_CTX **out, ehr_diag *diag)
{
    if (files == NULL || files->cert_file == NULL || files->key_file == NULL)
        return ehr_diag_fail(diag, EHR_EINVAL, "TLS needs a certificate file and a key file");
    SSL_CTX *ctx = tls_ctx_base(true);
    int rc = tls_ctx_identity(ctx, files->cert_file, files->key_file, diag);
    if (rc == 0 && files->client_ca_file != NULL) {
        ERR_clear_error();
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(files->client_ca_file);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, files->client_ca_file, NULL) != 1) {
            if (names != NULL)
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            rc = tls_file_fail(diag, "TLS client CA", files->client_ca_file);
        } else {
            SSL_CTX_set_client_CA_list(ctx, names); /* takes NAMES */
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    }
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return rc;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    /* AES-128-GCM first (the fastest with AES-NI, as strong as the
     * transport needs), then OpenSSL's others; ours decides. */
    EHR_ASSERT(SSL_CTX_set_ciphersuites(ctx, TLS_CIPHERSUITES) == 1);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* No resumption: integrators hold long connections, and tickets would
     * cost a write per handshake for nothing. */
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    *out = ctx;
    return 0;
}

int rpc_tls_server_new(const struct rpc_tls_server_files *files, struct rpc_tls **out,
                       ehr_diag *diag)
{
    EHR_ASSERT(out != NULL);
    SSL_CTX *ctx = NULL;
    int rc = tls_server_ctx(files, &ctx, diag);
    if (rc != 0)
        return rc;
    struct rpc_tls *tls = ehr_calloc(1, sizeof *tls);
    tls->ctx = ctx;
    tls->server = true;
    *out = tls;
    return 0;
}

int rpc_tls_server_reload(struct rpc_tls *tls, const struct rpc_tls_server_files *files,
                          ehr_diag *diag)
{
    EHR_ASSERT(tls != NULL);
    EHR_ASSERT(tls->server);
    SSL_CTX *ctx = NULL;
    int rc = tls_server_ctx(files, &ctx, diag);
    if (rc != 0)
        return rc;          /* the old context stays */
    SSL_CTX_free(tls->ctx); /* open connections hold their own reference */
    tls->ctx = ctx;
    return 0;
}

int rpc_tls_client_new(const struct rpc_tls_client_files *files, struct rpc_tls **out,
                       ehr_diag *diag)
{
    EHR_ASSERT(files != NULL);
    EHR_ASSERT(out != NULL);
    if ((files->cert_file == NULL) != (files->key_file == NULL))
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "a TLS client certificate needs its key, and a key its certificate");
    SSL_CTX *ctx = tls_ctx_base(false);
    int rc = 0;
    ERR_clear_error();
    if (files->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, files->ca_file, NULL) != 1)
            rc = tls_file_fail(diag, "TLS CA", files->ca_file);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        rc = tls_file_fail(diag, "the system's TLS CA store", "");
    }
    if (rc == 0 && files->cert_file != NULL)
        rc = tls_ctx_identity(ctx, files->cert_file, files->key_file, diag);
    if (rc == 0 && SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof alpn_h2) != 0)
        rc = ehr_diag_fail(diag, EHR_EINVAL, "cannot offer ALPN h2");
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return rc;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    struct rpc_tls *tls = ehr_calloc(1, sizeof *tls);
    tls->ctx = ctx;
    *out = tls;
    return 0;
}

void rpc_tls_free(struct rpc_tls *tls)
{
    if (tls == NULL)
        return;
    SSL_CTX_free(tls->ctx);
    ehr_free(tls);
}

/* ---- connections ---- */

/* Is TEXT an IPv4 or IPv6 literal (checked against the certificate's IP
 * addresses, not its DNS names, and never sent as SNI)? */
static bool host_is_ip(const char *text)
{
    struct sockaddr_storage addr;
    return rpc__addr_parse(text, 1, &addr) == 0;
}

int rpc__tls_conn_new(struct rpc__conn *conn, struct rpc_tls *tls, const char *host, ehr_diag *diag)
{
    EHR_ASSERT(conn->tls == NULL);
    EHR_ASSERT(tls->server == (host == NULL));
    struct rpc__tls_conn *t = ehr_calloc(1, sizeof *t);
    ERR_clear_error();
    t->ssl = SSL_new(tls->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    EHR_ASSERT(t->ssl != NULL && t->rbio != NULL && t->wbio != NULL); /* only out of memory */
    /* An empty read BIO says "retry", not "end of file". */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    conn->tls = t;
    if (tls->server) {
        SSL_set_accept_state(t->ssl);
        return 0;
    }
    SSL_set_connect_state(t->ssl);
    int ok = host_is_ip(host)
                 ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host)
                 : SSL_set_tlsext_host_name(t->ssl, host) == 1 && SSL_set1_host(t->ssl, host) == 1;
    if (!ok) {
        ERR_clear_error();
        t->failed = true;
        return ehr_diag_fail(diag, EHR_EINVAL, "cannot verify the host name %s", host);
    }
    /* The ClientHello, into the write BIO for the owner's next flush. */
    int rv = SSL_do_handshake(t->ssl);
    EHR_ASSERT(rv != 1);
    if (SSL_get_error(t->ssl, rv) != SSL_ERROR_WANT_READ) {
        t->failed = true;
        char reason[160];
        tls_reason(reason, sizeof reason, "cannot start the handshake");
        ERR_clear_error();
        return ehr_diag_fail(diag, EHR_EPROTO, "TLS: %s", reason);
    }
    return 0;
}

void rpc__tls_conn_free(struct rpc__conn *conn)
{
    struct rpc__tls_conn *t = conn->tls;
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* frees both BIOs, and cleanses the session's keys */
    ehr_free(t);
    conn->tls = NULL;
}

bool rpc__tls_open(const struct rpc__conn *conn)
{
    return conn->tls != NULL && conn->tls->open;
}

/* The connection failed after RV from an SSL call: say why (invariant 3). */
static int tls_conn_fail(struct rpc__tls_conn *t, int rv, ehr_diag *diag)
{
    t->failed = true;
    int e = SSL_get_error(t->ssl, rv);
    char reason[200];
    long verify = SSL_get_verify_result(t->ssl);
    if (verify != X509_V_OK &&
        ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_CERTIFICATE_VERIFY_FAILED)
        snprintf(reason, sizeof reason, "certificate verify failed: %s",
                 X509_verify_cert_error_string(verify));
    else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
        snprintf(reason, sizeof reason, "the peer ended the connection");
    else
        tls_reason(reason, sizeof reason, "protocol error");
    ERR_clear_error();
    return ehr_diag_fail(diag, EHR_EPROTO, "%s", reason);
}

int rpc__tls_peer_fingerprint(const struct rpc__conn *conn, uint8_t out[RPC__TLS_FINGERPRINT_BYTES])
{
    EHR_ASSERT(conn->tls != NULL);
    EHR_ASSERT(conn->tls->open);
    X509 *peer = SSL_get0_peer_certificate(conn->tls->ssl);
    if (peer == NULL)
        return EHR_ENOTFOUND;
    unsigned int len = 0;
    ERR_clear_error();
    /* The digest of the certificate's DER encoding, as `openssl x509
     * -fingerprint -sha256` prints it. */
    int ok = X509_digest(peer, EVP_sha256(), out, &len);
    EHR_ASSERT(ok == 1); /* only out of memory */
    EHR_ASSERT(len == RPC__TLS_FINGERPRINT_BYTES);
    return 0;
}

int rpc__tls_recv(struct rpc__conn *conn, const uint8_t *data, size_t len, rpc__tls_open_fn on_open,
                  rpc__tls_deliver_fn deliver, ehr_diag *diag)
{
    struct rpc__tls_conn *t = conn->tls;
    EHR_ASSERT(t != NULL);
    EHR_ASSERT(len <= INT32_MAX);
    if (t->failed) /* told once already (invariant 3) */
        return ehr_diag_fail(diag, EHR_ECLOSED, "the TLS connection failed already");
    rpc__tls_stash(conn, data, len);
    if (!t->open) {
        ERR_clear_error();
        int rv = SSL_do_handshake(t->ssl);
        if (rv != 1) {
            int e = SSL_get_error(t->ssl, rv);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0; /* more of the handshake to come; ours is in the write BIO */
            rv = tls_conn_fail(t, rv, diag);
            if (SSL_is_server(t->ssl) && BIO_ctrl_pending(t->wbio) == 0) {
                /* OpenSSL answers bytes that are not TLS at all (a
                 * cleartext client) with silence: send a fatal
                 * protocol_version alert, so that client can tell it met
                 * TLS rather than a closed door. */
                static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46};
                BIO_write(t->wbio, alert, (int)sizeof alert);
            }
            return rv;
        }
        const unsigned char *proto = NULL;
        unsigned int proto_len = 0;
        SSL_get0_alpn_selected(t->ssl, &proto, &proto_len);
        if (proto_len != 2 || memcmp(proto, "h2", 2) != 0) {
            t->failed = true;
            return ehr_diag_fail(diag, EHR_EPROTO, "the peer did not agree on ALPN h2");
        }
        t->open = true;
        if (on_open != NULL && on_open(conn) != 0)
            return 0; /* refused (invariant 5): the owner is closing */
    }
    uint8_t plain[RPC__TLS_RECORD_BYTES_MAX];
    for (;;) {
        ERR_clear_error();
        int got = SSL_read(t->ssl, plain, (int)sizeof plain);
        if (got > 0) {
            if (deliver(conn, plain, (size_t)got) != 0)
                return 0; /* the owner stopped: it is closing */
            continue;
        }
        int e = SSL_get_error(t->ssl, got);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN) {
            t->failed = true;
            return ehr_diag_fail(diag, EHR_ECLOSED, "the peer closed the TLS session");
        }
        return tls_conn_fail(t, got, diag);
    }
}

void rpc__tls_stash(struct rpc__conn *conn, const uint8_t *data, size_t len)
{
    EHR_ASSERT(len <= INT32_MAX);
    if (len == 0)
        return;
    int n = BIO_write(conn->tls->rbio, data, (int)len);
    EHR_ASSERT(n == (int)len); /* a memory BIO takes everything */
}

int rpc__tls_start_write(struct rpc__conn *conn)
{
    struct rpc__tls_conn *t = conn->tls;
    EHR_ASSERT(t != NULL);
    if (conn->writing)
        return 0; /* invariant 2: the rest follows when this write completes */
    struct rpc__buf *plain = &conn->out[conn->fill_index];
    struct rpc__buf *cipher = &conn->out[conn->fill_index ^ 1];
    EHR_ASSERT(cipher->len == 0);
    if (t->failed)
        plain->len = 0;              /* never sent (invariant 3): only the alert leaves */
    if (plain->len > 0 && t->open) { /* invariant 1 */
        EHR_ASSERT(plain->len <= INT32_MAX);
        ERR_clear_error();
        int n = SSL_write(t->ssl, plain->data, (int)plain->len);
        if (n <= 0) {
            ehr_diag why;
            return tls_conn_fail(t, n, &why);
        }
        EHR_ASSERT((size_t)n == plain->len); /* a memory BIO never blocks a write */
        plain->len = 0;
    }
    size_t pending = BIO_ctrl_pending(t->wbio);
    if (pending == 0)
        return 0;
    EHR_ASSERT(pending <= INT32_MAX);
    uint8_t *p = rpc__buf_reserve(cipher, pending);
    int got = BIO_read(t->wbio, p, (int)pending);
    EHR_ASSERT(got == (int)pending);
    cipher->len = pending;
    return rpc__conn_write_other(conn);
}
