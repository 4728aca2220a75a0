/*
 * cmd_record_data.c - records with their data: `ehrctl record add` (a
 * custodian encrypts a file, stores the ciphertext in its node's blob store
 * and anchors the record), `ehrctl record get` (the patient opens it back),
 * and `ehrctl patient public-keys` (what a custodian needs of a patient to
 * encrypt for them).
 *
 * A record (cli/README.md, "Records and their data"):
 *   - the record key k comes from ehr_pre_encapsulate to the patient's
 *     delegating key for the record's type; the capsule goes in the anchor;
 *   - two subkeys, keyed BLAKE2b-256 of k over a tag each: the stream key
 *     ("ehr.v1.record.stream") and the pointer key ("ehr.v1.record.pointer");
 *   - the ciphertext is libsodium's secretstream (XChaCha20-Poly1305): its
 *     24-byte header, then the file in EHR_RECORD_PIECE_BYTES pieces, the
 *     last tagged FINAL (an empty file is one empty FINAL piece); constant
 *     memory whatever the file's size;
 *   - the ciphertext's SHA-256 (ehr_content_hash) is the blob id and the
 *     anchor's ciphertext_hash. The id must be known before the upload
 *     starts (PutBlob's header), so the file is read and encrypted once,
 *     here, while a second thread (ehr_hash_pipe) hashes the ciphertext and
 *     writes it to an unlinked temporary file in $TMPDIR (else /tmp); the
 *     upload then sends that file. Encryption and hash run on two cores at
 *     once, and the file is read once, so it cannot change between a hash
 *     and an upload. `record get` likewise decrypts here while the hash of
 *     what arrived runs on a second thread;
 *   - the pointer is "EHRP", a version byte, the blob id and the RPC
 *     address of the node that stores it, sealed with the pointer key
 *     (XChaCha20-Poly1305, random nonce first, the tag as associated data).
 *
 * A grantee's `record get` differs in one step, the record key: from the
 * nodes' capsule fragments (record_grantee.c) instead of the patient's
 * delegating key, and GetBlob carries the permit.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_internal.h"
#include "contracts.h"
#include "pre.h"
#include "read_auth.h"
#include "record.h"
#include "record_grantee.h"

enum {
    RECORD_UPLOAD_CHUNK_BYTES = 256 * 1024, /* ciphertext per PutBlob message */
    READ_WINDOW_MS = 60000,
    HEX32 = 2 * 32 + 1,
    TYPE_NAMES_BYTES = 256,
    SPOOL_PATH_BYTES_MAX = 4096, /* $TMPDIR and the temporary file's name */
};
_Static_assert((int)RECORD_UPLOAD_CHUNK_BYTES <= (int)EHR_HASH_PIPE_SLOT_BYTES_MAX,
               "an upload message's worth of ciphertext fits a hash pipe slot");
_Static_assert((int)EHR_RECORD_POINTER_BYTES_MAX <= (int)CONTRACTS_POINTER_BYTES_MAX,
               "a pointer fits the anchor");
_Static_assert((int)EHR_RECORD_POINTER_ADDRESS_BYTES_MAX >= (int)CLI_HOST_BYTES_MAX + 7,
               "a pointer holds any HOST:PORT ehrctl takes");
_Static_assert(RECORD_UPLOAD_CHUNK_BYTES >= EHR_RECORD_HEADER_BYTES + EHR_RECORD_SEALED_PIECE_BYTES,
               "an upload message holds at least one piece");
_Static_assert(READ_WINDOW_MS <= NODE_READ_AUTH_WINDOW_MS_MAX, "the node takes the window");

/* Progress on a terminal (stderr), at most once per percent. */
struct progress {
    const char *what;
    uint64_t total, done;
    int shown; /* the last percentage printed, -1: none */
    bool on;
};

static void progress_start(struct progress *p, const char *what, uint64_t total, bool json)
{
    p->what = what;
    p->total = total;
    p->done = 0;
    p->shown = -1;
    p->on = !json && isatty(STDERR_FILENO);
}

static void progress_add(struct progress *p, uint64_t n)
{
    p->done += n;
    if (!p->on)
        return;
    int pct = p->total == 0 ? 100 : (int)(p->done * 100 / p->total);
    if (pct == p->shown)
        return;
    p->shown = pct;
    fprintf(stderr, "\r%s: %3d%% (%.1f of %.1f MiB)", p->what, pct, p->done / 1048576.0,
            p->total / 1048576.0);
    fflush(stderr);
}

static void progress_end(struct progress *p)
{
    if (p->on && p->shown >= 0)
        fputc('\n', stderr);
}

/* ---- the encrypting reader ---- */

/* The file's ciphertext, produced piece by piece from a secretstream state
 * copied from the one the header was made with. */
struct sealer {
    FILE *file;
    const char *path;
    crypto_secretstream_xchacha20poly1305_state state;
    uint8_t header[EHR_RECORD_HEADER_BYTES];
    bool header_out;
    bool done;      /* the FINAL piece is out */
    int read_errno; /* a read failed */
    uint8_t *plain; /* EHR_RECORD_PIECE_BYTES */
    uint64_t plain_bytes;
    struct progress *progress;
};

/* Append pieces to OUT (capacity CAP) while one more fits; returns the length. */
static size_t sealer_fill(struct sealer *s, uint8_t *out, size_t cap)
{
    size_t len = 0;
    if (!s->header_out) {
        memcpy(out, s->header, EHR_RECORD_HEADER_BYTES);
        len = EHR_RECORD_HEADER_BYTES;
        s->header_out = true;
    }
    while (!s->done && s->read_errno == 0 && cap - len >= EHR_RECORD_SEALED_PIECE_BYTES) {
        size_t n = fread(s->plain, 1, EHR_RECORD_PIECE_BYTES, s->file);
        if (ferror(s->file)) {
            s->read_errno = errno ? errno : EIO;
            break;
        }
        bool last = n < EHR_RECORD_PIECE_BYTES;
        if (!last) {
            int c = getc(s->file); /* is there more? */
            if (c == EOF)
                last = !ferror(s->file);
            else
                ungetc(c, s->file);
        }
        ehr_record_seal_piece(&s->state, s->plain, n, last, out + len);
        len += n + EHR_RECORD_ABYTES;
        s->plain_bytes += n;
        if (s->progress != NULL)
            progress_add(s->progress, n);
        s->done = last;
    }
    return len;
}

/* ---- patient public-keys ---- */

int cli__cmd_patient_public_keys(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"patient", required_argument, NULL, 'P'},
                                            {"passphrase-file", required_argument, NULL, 'p'},
                                            {"out", required_argument, NULL, 'o'},
                                            CLI_COMMON_OPTIONS};
    const char *patient = NULL, *passphrase_file = NULL, *out = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'P')
            patient = optarg;
        else if (c == 'p')
            passphrase_file = optarg;
        else if (c == 'o')
            out = optarg;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if (patient == NULL)
        return cli__usage_error(ctx, "--patient FILE, the patient's key file, is required");
    ehr_identity *id = NULL;
    ehr_keyfile_info info;
    int exit_code = cli__identity_load(patient, passphrase_file, &id, &info);
    if (exit_code != 0)
        return exit_code;
    json_t *keys = json_object();
    const ProtobufCEnumDescriptor *ed = &ehr__v1__record_type__descriptor;
    for (unsigned i = 0; i < ed->n_values; i++) {
        int type = ed->values[i].value;
        if (type == 0)
            continue;
        ehr_pre_key k;
        if (ehr_pre_delegating_key_derive(&k, id->signing.secret, (uint32_t)type) != 0) {
            sodium_free(id);
            json_decref(keys);
            return cli__fail("a delegating key is zero (never in practice)", "public-keys");
        }
        json_t *name = cli__json_enum(ed, type);
        json_object_set_new(keys, json_string_value(name),
                            cli__json_hex(k.public_key, EHR_PRE_PUBLIC_BYTES));
        json_decref(name);
        ehr_pre_key_wipe(&k);
    }
    json_t *root = json_pack("{s:o, s:o}", "patient_key",
                             cli__json_hex(id->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES),
                             "delegating_keys", keys);
    sodium_free(id);
    if (root == NULL)
        ehr_panic("out of memory building JSON");
    if (out == NULL)
        return cli__json_print(root);
    int rc = json_dump_file(root, out, JSON_INDENT(2));
    json_decref(root);
    if (rc != 0)
        return cli__fail(strerror(errno), "write %s", out);
    if (!ctx->json)
        printf("wrote %s\n", out);
    return 0;
}

/* The patient's signing key and the delegating key for TYPE from a file
 * `patient public-keys` wrote. Returns 0 or CLI_EXIT_FAIL (said why). */
static int patient_keys_read(const char *path, int type, uint8_t patient[32],
                             uint8_t delegating[EHR_PRE_PUBLIC_BYTES])
{
    json_error_t err;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL)
        return cli__fail(err.text, "read the patient's public keys %s", path);
    const char *why = NULL;
    const char *patient_hex = json_string_value(json_object_get(root, "patient_key"));
    json_t *keys = json_object_get(root, "delegating_keys");
    const char *key;
    json_t *value;
    const char *found = NULL;
    json_object_foreach(keys, key, value)
    {
        int t;
        if (cli__enum_arg(&ehr__v1__record_type__descriptor, key, &t) == 0 && t == type)
            found = json_string_value(value);
    }
    ehr_diag d;
    if (patient_hex == NULL || cli__hex_arg(patient_hex, patient, 32, &d) != 0)
        why = "patient_key is not 64 hex digits";
    else if (found == NULL)
        why = "no delegating key for this record type";
    else if (cli__hex_arg(found, delegating, EHR_PRE_PUBLIC_BYTES, &d) != 0 ||
             ehr_pre_public_key_check(delegating) != 0)
        why = "the delegating key for this record type is not a valid key";
    json_decref(root);
    if (why != NULL)
        return cli__fail(why,
                         "read the patient's public keys %s (ehrctl patient public-keys "
                         "writes them)",
                         path);
    return 0;
}

/* ---- record add ---- */

/* The ciphertext while it is made: written to an unlinked temporary file
 * on the hash pipe's thread (record.h, ehr_hash_pipe), its size counted. */
struct spool {
    int fd;
    uint64_t bytes;
};

static int spool_write(void *ctx, const uint8_t *data, size_t len)
{
    struct spool *sp = ctx;
    while (len > 0) {
        ssize_t n = write(sp->fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        data += n;
        len -= (size_t)n;
        sp->bytes += (uint64_t)n;
    }
    return 0;
}

/* A new temporary file in $TMPDIR (else /tmp), unlinked at once so that
 * nothing is left behind whatever happens: its descriptor, or -errno. */
static int spool_open(void)
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
    char path[SPOOL_PATH_BYTES_MAX];
    if (snprintf(path, sizeof path, "%s/ehrctl-record-XXXXXX", dir) >= (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = mkstemp(path);
    if (fd < 0)
        return -errno;
    unlink(path);
    return fd;
}

/* PutBlob's messages: the header, then the spooled ciphertext. */
struct upload_source {
    int fd;
    Ehr__V1__PutBlobRequest header; /* sent first */
    bool header_sent;
    int read_errno; /* a read of the spool failed */
    uint64_t sent_bytes;
    struct progress *progress;
    uint8_t *piece; /* RECORD_UPLOAD_CHUNK_BYTES */
    uint8_t *message;
    size_t message_cap;
};

static int upload_next(void *data, const uint8_t **message, size_t *message_len)
{
    struct upload_source *u = data;
    if (!u->header_sent) {
        u->header_sent = true;
        *message_len = ehr__v1__put_blob_request__pack(&u->header, u->message);
        *message = u->message;
        return 1;
    }
    ssize_t n;
    do
        n = read(u->fd, u->piece, RECORD_UPLOAD_CHUNK_BYTES);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        u->read_errno = errno;
        return -errno;
    }
    if (n == 0)
        return 0;
    u->sent_bytes += (uint64_t)n;
    progress_add(u->progress, (uint64_t)n);
    Ehr__V1__PutBlobRequest r = EHR__V1__PUT_BLOB_REQUEST__INIT;
    r.chunk = (ProtobufCBinaryData){(size_t)n, u->piece};
    EHR_ASSERT(ehr__v1__put_blob_request__get_packed_size(&r) <= u->message_cap);
    *message_len = ehr__v1__put_blob_request__pack(&r, u->message);
    *message = u->message;
    return 1;
}

struct add_args {
    const char *file, *patient, *type_arg;
    int type;
    struct cli__signed_tx tx;
};

static int add_parse(struct cli__ctx *ctx, int argc, char **argv, struct add_args *a)
{
    static const struct option options[] = {{"patient", required_argument, NULL, 'P'},
                                            {"type", required_argument, NULL, 'y'},
                                            CLI_SIGNED_TX_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'P')
            a->patient = optarg;
        else if (c == 'y')
            a->type_arg = optarg;
        else if (cli__signed_tx_option(ctx, c, optarg, &a->tx) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (argc - optind != 1)
        return cli__usage_error(ctx, "give one FILE, the record to encrypt and add");
    a->file = argv[optind];
    if (a->patient == NULL)
        return cli__usage_error(ctx, "--patient FILE, the patient's public keys (ehrctl patient "
                                     "public-keys writes them), is required");
    if (a->type_arg == NULL)
        return cli__usage_error(ctx, "--type TYPE, the record's type, is required");
    if (cli__enum_arg(&ehr__v1__record_type__descriptor, a->type_arg, &a->type) != 0) {
        char names[TYPE_NAMES_BYTES];
        cli__enum_names(&ehr__v1__record_type__descriptor, names, sizeof names);
        return cli__usage_error(ctx, "--type \"%.40s\" is not a record type: %s", a->type_arg,
                                names);
    }
    return cli__signed_tx_finish(ctx, &a->tx);
}

int cli__cmd_record_add(struct cli__ctx *ctx, int argc, char **argv)
{
    struct add_args a = {0};
    int exit_code = add_parse(ctx, argc, argv, &a);
    if (exit_code != 0)
        return exit_code;
    uint8_t patient[32], delegating[EHR_PRE_PUBLIC_BYTES];
    if ((exit_code = patient_keys_read(a.patient, a.type, patient, delegating)) != 0)
        return exit_code;
    FILE *file = fopen(a.file, "rb");
    if (file == NULL)
        return cli__fail(strerror(errno), "read record file %s", a.file);
    struct stat file_stat;
    uint64_t file_bytes = fstat(fileno(file), &file_stat) == 0 ? (uint64_t)file_stat.st_size : 0;
    struct spool spool = {.fd = spool_open()};
    if (spool.fd < 0) {
        fclose(file);
        return cli__fail(strerror(-spool.fd), "record add: a temporary file for the ciphertext");
    }
    ehr_identity *id = NULL;
    ehr_keyfile_info info;
    exit_code = cli__identity_load(a.tx.key_path, a.tx.passphrase_file, &id, &info);
    if (exit_code != 0) {
        close(spool.fd);
        fclose(file);
        return exit_code;
    }
    /* The record key, its subkeys, the stream's header and first state. */
    ehr_pre_capsule capsule;
    uint8_t k[EHR_PRE_KEY_BYTES], stream_key[32], pointer_key[32];
    if (ehr_pre_encapsulate(delegating, &capsule, k) != 0) {
        close(spool.fd);
        fclose(file);
        sodium_free(id);
        return cli__fail("the patient's delegating key is not valid", "record add");
    }
    ehr_record_subkeys(k, stream_key, pointer_key);
    sodium_memzero(k, sizeof k);
    struct sealer s = {.file = file, .path = a.file};
    struct ehr_record_sealer sealer;
    ehr_record_sealer_init(&sealer, stream_key);
    sodium_memzero(stream_key, sizeof stream_key);
    memcpy(&s.state, &sealer.start, sizeof s.state);
    memcpy(s.header, sealer.header, sizeof s.header);
    ehr_record_sealer_wipe(&sealer);
    s.plain = ehr_malloc(EHR_RECORD_PIECE_BYTES);
    uint8_t *piece = ehr_malloc(RECORD_UPLOAD_CHUNK_BYTES);
    size_t message_cap = RECORD_UPLOAD_CHUNK_BYTES + 64;
    uint8_t *message = ehr_malloc(message_cap);
    struct cli__node node = {0};
    bool node_open = false;
    struct progress progress;
    /* One pass: the file read and encrypted here, the ciphertext hashed
     * and spooled on the pipe's thread. */
    struct ehr_hash_pipe *pipe = NULL;
    int rc = ehr_hash_pipe_start(&pipe, RECORD_UPLOAD_CHUNK_BYTES, spool_write, &spool);
    if (rc != 0) {
        exit_code = cli__fail(strerror(-rc), "record add: a thread for the content hash");
        goto out;
    }
    progress_start(&progress, "encrypting", file_bytes, ctx->json);
    s.progress = &progress;
    for (;;) {
        size_t n = sealer_fill(&s, ehr_hash_pipe_slot(pipe), RECORD_UPLOAD_CHUNK_BYTES);
        ehr_hash_pipe_push(pipe, n);
        if (n == 0 || s.read_errno != 0 || ehr_hash_pipe_error(pipe) != 0)
            break;
    }
    progress_end(&progress);
    uint8_t blob_id[32];
    rc = ehr_hash_pipe_finish(pipe, blob_id);
    if (s.read_errno != 0) {
        exit_code = cli__fail(strerror(s.read_errno), "read record file %s", a.file);
        goto out;
    }
    if (rc != 0) {
        exit_code = cli__fail(strerror(-rc), "record add: write the ciphertext to a temporary "
                                             "file ($TMPDIR, else /tmp)");
        goto out;
    }
    EHR_ASSERT(s.done);
    uint64_t plain_bytes = s.plain_bytes;
    uint64_t cipher_bytes = spool.bytes;
    EHR_ASSERT(cipher_bytes == ehr_record_sealed_bytes(plain_bytes));
    /* The upload: the spooled ciphertext, as it was hashed. */
    if ((exit_code = cli__node_open(&node, &a.tx.node, "record add")) != 0)
        goto out;
    node_open = true;
    Ehr__V1__GetStatusResponse *status = NULL;
    if ((exit_code = cli__node_get_status(&node, "record add", &status)) != 0)
        goto out;
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1];
    snprintf(chain_id, sizeof chain_id, "%s", status->chain_id);
    ehr__v1__get_status_response__free_unpacked(status, NULL);
    if (lseek(spool.fd, 0, SEEK_SET) != 0) {
        exit_code = cli__fail(strerror(errno), "record add: read the temporary file back");
        goto out;
    }
    struct upload_source u = {.fd = spool.fd,
                              .progress = &progress,
                              .piece = piece,
                              .message = message,
                              .message_cap = message_cap};
    Ehr__V1__PutBlobRequest *hdr = &u.header;
    ehr__v1__put_blob_request__init(hdr);
    hdr->blob_id = (ProtobufCBinaryData){32, blob_id};
    hdr->size_bytes = cipher_bytes;
    uint64_t now = cli__wall_ms();
    struct node_read_auth_signed auth;
    if (node_read_auth_sign(&auth, &hdr->base, &hdr->auth, chain_id, "/ehr.v1.Node/PutBlob",
                            &id->signing, now, now + READ_WINDOW_MS) != 0) {
        exit_code = cli__fail("cannot sign the upload", "record add: %s", a.tx.key_path);
        goto out;
    }
    progress_start(&progress, "uploading", cipher_bytes, ctx->json);
    struct rpc_result result;
    enum rpc_status st =
        rpc_sync_upload(node.sync, "/ehr.v1.Node/PutBlob", 0, upload_next, &u, &result);
    progress_end(&progress);
    hdr->auth = NULL;
    sodium_memzero(&auth, sizeof auth);
    if (st != RPC_STATUS_OK) {
        exit_code = u.read_errno != 0
                        ? cli__fail(strerror(u.read_errno), "record add: read the temporary file")
                        : cli__node_fail(&node, &result,
                                         "record add: store the "
                                         "ciphertext");
        rpc_result_clear(&result);
        goto out;
    }
    rpc_result_clear(&result);
    EHR_ASSERT(u.sent_bytes == cipher_bytes); /* the node took the size the header named */
    /* The anchor: the pointer sealed, the capsule, the hash and size. */
    uint8_t pointer[EHR_RECORD_POINTER_BYTES_MAX], capsule_bytes[EHR_PRE_CAPSULE_BYTES];
    size_t pointer_len = ehr_record_pointer_seal(pointer_key, blob_id, node.address, pointer);
    EHR_ASSERT(pointer_len > 0); /* --node was parsed: printable, within CLI_HOST_BYTES_MAX */
    ehr_pre_capsule_encode(&capsule, capsule_bytes);
    Ehr__V1__RecordAnchor anchor = EHR__V1__RECORD_ANCHOR__INIT;
    anchor.patient_key = (ProtobufCBinaryData){32, patient};
    anchor.record_type = (Ehr__V1__RecordType)a.type;
    anchor.encrypted_pointer = (ProtobufCBinaryData){pointer_len, pointer};
    anchor.ciphertext_hash = (ProtobufCBinaryData){32, blob_id};
    anchor.ciphertext_bytes = cipher_bytes;
    anchor.key_capsule = (ProtobufCBinaryData){EHR_PRE_CAPSULE_BYTES, capsule_bytes};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
    body.record_anchor = &anchor;
    char blob_hex[HEX32], patient_hex[HEX32];
    ehr_hex_encode(blob_hex, blob_id, 32);
    ehr_hex_encode(patient_hex, patient, 32);
    json_t *extra = json_pack("{s:s, s:s, s:o, s:o}", "patient_key", patient_hex, "blob_id",
                              blob_hex, "ciphertext_bytes", cli__json_u64(cipher_bytes),
                              "plaintext_bytes", cli__json_u64(plain_bytes));
    if (extra == NULL)
        ehr_panic("out of memory building JSON");
    cli__node_close(&node);
    node_open = false;
    exit_code = cli__signed_tx_submit(ctx, &a.tx, id, &body, "record", extra);
out:
    if (node_open)
        cli__node_close(&node);
    sodium_memzero(pointer_key, sizeof pointer_key);
    sodium_memzero(&s.state, sizeof s.state);
    sodium_memzero(s.plain, EHR_RECORD_PIECE_BYTES);
    ehr_free(s.plain);
    ehr_free(piece);
    ehr_free(message);
    close(spool.fd);
    fclose(file);
    sodium_free(id);
    return exit_code;
}

/* ---- record get ---- */

/* The blob as it streams in: its size first, then the ciphertext to the
 * opener (record.h), the plaintext into OUT. */
struct download {
    struct ehr_record_opener opener;
    bool got_size;
    uint64_t size_bytes;
    uint64_t received;
    FILE *out;
    int err; /* the first failure; nothing more is done after it */
    ehr_diag why;
    struct progress progress;
};

static int download_write(void *ctx, const uint8_t *plain, size_t len)
{
    struct download *d = ctx;
    return fwrite(plain, 1, len, d->out) == len ? 0 : -EIO;
}

static void get_message(void *data, const uint8_t *message, size_t message_len)
{
    struct download *d = data;
    if (d->err != 0)
        return;
    Ehr__V1__GetBlobResponse *r = ehr__v1__get_blob_response__unpack(NULL, message_len, message);
    if (r == NULL) {
        d->err = ehr_diag_fail(&d->why, EHR_EPROTO, "a GetBlob message does not decode");
        return;
    }
    if (!d->got_size) {
        d->got_size = true;
        d->size_bytes = r->size_bytes;
        d->progress.total = r->size_bytes;
    } else if (d->received + r->chunk.len > d->size_bytes) {
        d->err = ehr_diag_fail(&d->why, EHR_EPROTO, "more bytes than the blob's size");
    } else {
        d->received += r->chunk.len;
        progress_add(&d->progress, r->chunk.len);
        d->err = ehr_record_opener_feed(&d->opener, r->chunk.data, r->chunk.len, &d->why);
    }
    ehr__v1__get_blob_response__free_unpacked(r, NULL);
}

/* The record's anchor from GetRecord's answer, checked to be RECORD_ID's;
 * *ERASED_HEIGHT the height its patient erased it at (0: not erased). */
static const char *anchor_from(const struct rpc_result *result, const uint8_t record_id[32],
                               Ehr__V1__TxBody **out, uint64_t *erased_height)
{
    *erased_height = 0;
    Ehr__V1__GetRecordResponse *r =
        ehr__v1__get_record_response__unpack(NULL, result->response_len, result->response);
    if (r == NULL)
        return "the answer does not decode";
    const char *bad = NULL;
    ledger_tx_view v;
    uint8_t hash[32];
    if (ledger_tx_envelope_parse(r->anchor_envelope.data, r->anchor_envelope.len, &v, NULL) != 0)
        bad = "the anchor is not a transaction envelope";
    if (bad == NULL) {
        ledger_tx_hash(v.body, v.body_len, hash);
        if (memcmp(hash, record_id, 32) != 0)
            bad = "the anchor does not hash to the record id";
    }
    if (bad == NULL) {
        *out = ehr__v1__tx_body__unpack(NULL, v.body_len, v.body);
        if (*out == NULL || (*out)->payload_case != EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR)
            bad = "the anchor is not a record anchor";
    }
    if (bad == NULL && r->record != NULL && r->record->record != NULL &&
        r->record->record->erased) {
        if (r->record->record->erased_at == NULL || r->record->record->erased_at->height == 0)
            bad = "an erased record without the place of its erasure";
        else
            *erased_height = r->record->record->erased_at->height;
    }
    ehr__v1__get_record_response__free_unpacked(r, NULL);
    return bad;
}

/*
 * Where record get asks for the blob, in order: --blob-node alone when it is
 * given; else the node the pointer names (the custodian's, where it was
 * uploaded), then --node, then every peer whose API address --node learnt
 * over their link (GetStatus): the members' nodes that replicate it
 * (node/README.md, "Blob replication"). Each address once.
 */
enum { BLOB_SOURCES_MAX = CLI_FRAGMENT_NODES_MAX + 2 };
struct blob_sources {
    char text[BLOB_SOURCES_MAX][CLI_HOST_BYTES_MAX + 8];
    size_t count;
};

static void sources_add(struct blob_sources *s, const char *address)
{
    char host[CLI_HOST_BYTES_MAX + 1];
    uint16_t port;
    if (address == NULL || address[0] == '\0' || s->count == BLOB_SOURCES_MAX ||
        strlen(address) >= sizeof s->text[0] || cli__address_parse(address, host, &port) != 0)
        return;
    for (size_t i = 0; i < s->count; i++)
        if (strcmp(s->text[i], address) == 0)
            return;
    snprintf(s->text[s->count++], sizeof s->text[0], "%s", address);
}

/* Is a failure to get the blob from one node one that another node may
 * not have: it lacks the blob or cannot be reached? A blob that arrives
 * and does not check out is not retried elsewhere: it is reported. */
static bool blob_try_next(enum rpc_status st)
{
    return st == RPC_STATUS_NOT_FOUND || st == RPC_STATUS_UNAVAILABLE ||
           st == RPC_STATUS_DEADLINE_EXCEEDED;
}

/* Start D over for another node: the output file emptied, the opener new. */
static int download_restart(struct download *d, const uint8_t stream_key[32])
{
    ehr_record_opener_clear(&d->opener);
    ehr_record_opener_init(&d->opener, stream_key, download_write, d);
    d->got_size = false;
    d->size_bytes = 0;
    d->received = 0;
    d->err = 0;
    d->progress.done = 0;
    if (fflush(d->out) != 0 || ftruncate(fileno(d->out), 0) != 0 || fseek(d->out, 0, SEEK_SET) != 0)
        return -EIO;
    return 0;
}

int cli__cmd_record_get(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"key", required_argument, NULL, 'k'},
                                            {"passphrase-file", required_argument, NULL, 'p'},
                                            {"out", required_argument, NULL, 'o'},
                                            {"blob-node", required_argument, NULL, 'b'},
                                            {"permit", required_argument, NULL, 'P'},
                                            {"purpose", required_argument, NULL, 'u'},
                                            {"fragment-node", required_argument, NULL, 'F'},
                                            CLI_NODE_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    const char *key_path = NULL, *passphrase_file = NULL, *out_path = NULL, *blob_node = NULL;
    const char *permit_arg = NULL, *purpose_arg = NULL;
    struct cli__node_options node_options = {0};
    struct cli__record_grantee grantee = {0};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'P')
            permit_arg = optarg;
        else if (c == 'u')
            purpose_arg = optarg;
        else if (c == 'F') {
            if (grantee.fragment_node_count == CLI_FRAGMENT_NODES_MAX)
                return cli__usage_error(ctx, "--fragment-node: at most %d nodes",
                                        CLI_FRAGMENT_NODES_MAX);
            char host[CLI_HOST_BYTES_MAX + 1];
            uint16_t port;
            if (cli__address_parse(optarg, host, &port) != 0)
                return cli__usage_error(ctx, "--fragment-node wants HOST:PORT, not \"%.80s\"",
                                        optarg);
            grantee.fragment_nodes[grantee.fragment_node_count++] = optarg;
        } else if (c == 'k')
            key_path = optarg;
        else if (c == 'p')
            passphrase_file = optarg;
        else if (c == 'o')
            out_path = optarg;
        else if (c == 'b')
            blob_node = optarg;
        else if (cli__node_option(ctx, c, optarg, &node_options) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    uint8_t record_id[EHR_HASH_BYTES];
    if (cli__one_hash_arg(ctx, argc, argv, "RECORD_ID", CLI_RECORD_ID_HINT, record_id) != 0)
        return CLI_EXIT_USAGE;
    if (key_path == NULL)
        return cli__usage_error(ctx, "--key FILE, the patient's key file, is required");
    if (out_path == NULL)
        return cli__usage_error(ctx, "--out FILE, where the record goes, is required");
    if (permit_arg != NULL && purpose_arg != NULL)
        return cli__usage_error(ctx, "--permit TX names a permit you hold, --purpose P asks for "
                                     "one now: give one of them");
    ehr_diag why;
    if (permit_arg != NULL) {
        if (cli__hex_arg(permit_arg, grantee.permit, EHR_HASH_BYTES, &why) != 0)
            return cli__usage_error(ctx, "--permit (an access request's hash) %s", why.msg);
        grantee.permit_given = true;
    }
    if (purpose_arg != NULL &&
        cli__enum_arg(&ehr__v1__purpose__descriptor, purpose_arg, &grantee.purpose) != 0) {
        char names[TYPE_NAMES_BYTES];
        cli__enum_names(&ehr__v1__purpose__descriptor, names, sizeof names);
        return cli__usage_error(ctx, "--purpose \"%.40s\" is not a purpose: %s", purpose_arg,
                                names);
    }
    memcpy(grantee.record_id, record_id, sizeof record_id);
    int exit_code = cli__node_options_finish(ctx, &node_options);
    if (exit_code != 0)
        return exit_code;
    ehr_identity *id = NULL;
    ehr_keyfile_info info;
    if ((exit_code = cli__identity_load(key_path, passphrase_file, &id, &info)) != 0)
        return exit_code;
    struct cli__node node = {0};
    bool node_open = false;
    Ehr__V1__TxBody *body = NULL;
    struct download d = {0};
    bool opener_open = false;
    uint8_t stream_key[32] = {0};
    char tmp_path[4096] = "";
    uint8_t pointer_key[32] = {0};
    if ((exit_code = cli__node_open(&node, &node_options, "record get")) != 0)
        goto out;
    node_open = true;
    Ehr__V1__GetStatusResponse *status = NULL;
    if ((exit_code = cli__node_get_status(&node, "record get", &status)) != 0)
        goto out;
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1];
    snprintf(chain_id, sizeof chain_id, "%s", status->chain_id);
    struct blob_sources others = {0}; /* --node, then its peers: replicas */
    sources_add(&others, node_options.address);
    for (size_t i = 0; i < status->n_peers; i++)
        sources_add(&others, status->peers[i]->rpc_address);
    ehr__v1__get_status_response__free_unpacked(status, NULL);
    /* The anchor (a signed GetRecord). */
    Ehr__V1__GetRecordRequest rq = EHR__V1__GET_RECORD_REQUEST__INIT;
    rq.record_id = (ProtobufCBinaryData){32, record_id};
    uint64_t now = cli__wall_ms();
    struct node_read_auth_signed auth;
    if (node_read_auth_sign(&auth, &rq.base, &rq.auth, chain_id, "/ehr.v1.Node/GetRecord",
                            &id->signing, now, now + READ_WINDOW_MS) != 0) {
        exit_code = cli__fail("cannot sign the request", "record get: %s", key_path);
        goto out;
    }
    struct rpc_result result;
    enum rpc_status st = cli__node_call(&node, "GetRecord", &rq.base, 0, &result);
    rq.auth = NULL;
    if (st != RPC_STATUS_OK) {
        exit_code = cli__node_fail(&node, &result, "record get");
        rpc_result_clear(&result);
        goto out;
    }
    uint64_t erased_height = 0;
    const char *bad = anchor_from(&result, record_id, &body, &erased_height);
    rpc_result_clear(&result);
    if (bad != NULL) {
        exit_code = cli__node_bad_answer(&node, "record get", bad);
        goto out;
    }
    if (erased_height != 0) {
        char erased[160];
        snprintf(erased, sizeof erased,
                 "the record was erased by its patient at height %llu: no node serves its "
                 "ciphertext or makes a key fragment for it",
                 (unsigned long long)erased_height);
        exit_code = cli__fail(erased, "record get");
        goto out;
    }
    const Ehr__V1__RecordAnchor *an = body->record_anchor;
    bool patient =
        an->patient_key.len == 32 && memcmp(an->patient_key.data, id->signing.public_key, 32) == 0;
    if (!patient && !grantee.permit_given && purpose_arg == NULL) {
        exit_code = cli__usage_error(ctx, "this key is not the record's patient: as a grantee, "
                                          "give --purpose P (the consent's) to ask for access "
                                          "now, or --permit TX for a permit you hold");
        goto out;
    }
    ehr_pre_capsule capsule;
    uint8_t k[EHR_PRE_KEY_BYTES];
    if (an->ciphertext_hash.len != 32 ||
        ehr_pre_capsule_decode(&capsule, an->key_capsule.data, an->key_capsule.len, NULL) != 0) {
        exit_code =
            cli__fail("the anchor has no valid key capsule (not made by record add)", "record get");
        goto out;
    }
    if (patient) {
        /* The record key: the patient's delegating key for the type opens the capsule. */
        ehr_pre_key dk;
        if (ehr_pre_delegating_key_derive(&dk, id->signing.secret, (uint32_t)an->record_type) !=
                0 ||
            ehr_pre_decapsulate(&dk, &capsule, k) != 0) {
            ehr_pre_key_wipe(&dk);
            exit_code = cli__fail("the key capsule does not open", "record get");
            goto out;
        }
        ehr_pre_key_wipe(&dk);
    } else {
        /* A grantee: the permit, then the nodes' capsule fragments. */
        grantee.chain_id = chain_id;
        exit_code =
            cli__record_key_as_grantee(ctx, &node, &node_options, id, &capsule, &grantee, k);
        if (exit_code != 0)
            goto out;
    }
    ehr_record_subkeys(k, stream_key, pointer_key);
    sodium_memzero(k, sizeof k);
    uint8_t blob_id[32];
    char address[EHR_RECORD_POINTER_ADDRESS_BYTES_MAX + 1];
    if (ehr_record_pointer_open(pointer_key, an->encrypted_pointer.data, an->encrypted_pointer.len,
                                blob_id, address, &why) != 0) {
        exit_code = cli__fail(why.msg, "record get");
        goto out;
    }
    if (memcmp(blob_id, an->ciphertext_hash.data, 32) != 0) {
        exit_code = cli__fail("the pointer names another blob than the anchor's ciphertext_hash",
                              "record get");
        goto out;
    }
    /* The blob: from the node the pointer names, else a replica (or only
     * --blob-node). */
    struct blob_sources sources = {0};
    sources_add(&sources, blob_node != NULL ? blob_node : address);
    for (size_t i = 0; blob_node == NULL && i < others.count; i++)
        sources_add(&sources, others.text[i]);
    cli__node_close(&node);
    node_open = false;
    Ehr__V1__GetBlobRequest gq = EHR__V1__GET_BLOB_REQUEST__INIT;
    gq.record_id = (ProtobufCBinaryData){32, record_id};
    gq.blob_id = (ProtobufCBinaryData){32, blob_id};
    if (!patient)
        gq.permit_tx = (ProtobufCBinaryData){EHR_HASH_BYTES, grantee.permit};
    now = cli__wall_ms();
    if (node_read_auth_sign(&auth, &gq.base, &gq.auth, chain_id, "/ehr.v1.Node/GetBlob",
                            &id->signing, now, now + READ_WINDOW_MS) != 0) {
        exit_code = cli__fail("cannot sign the request", "record get: %s", key_path);
        goto out;
    }
    snprintf(tmp_path, sizeof tmp_path, "%s.part", out_path);
    d.out = fopen(tmp_path, "wb");
    if (d.out == NULL) {
        exit_code = cli__fail(strerror(errno), "write %s", tmp_path);
        tmp_path[0] = '\0';
        goto out;
    }
    int rc = ehr_record_opener_init_pipelined(&d.opener, stream_key, download_write, &d);
    if (rc != 0) {
        exit_code = cli__fail(strerror(-rc), "record get: a thread for the content hash");
        goto out;
    }
    opener_open = true;
    progress_start(&d.progress, "downloading", an->ciphertext_bytes, ctx->json);
    size_t packed = ehr__v1__get_blob_request__get_packed_size(&gq);
    uint8_t *req = ehr_malloc(packed);
    ehr__v1__get_blob_request__pack(&gq, req);
    gq.auth = NULL;
    st = RPC_STATUS_UNAVAILABLE;
    for (size_t i = 0; i < sources.count; i++) {
        bool last = i + 1 == sources.count;
        if (i > 0 && download_restart(&d, stream_key) != 0) {
            exit_code = cli__fail("cannot write the output file", "write %s", tmp_path);
            break;
        }
        struct cli__node_options blob_options = node_options;
        blob_options.address = sources.text[i];
        ehr_diag why_connect;
        if (cli__node_connect(&node, &blob_options, &why_connect) != 0) {
            char unreachable[sizeof why_connect.msg + 64];
            snprintf(unreachable, sizeof unreachable, "%s (UNAVAILABLE)", why_connect.msg);
            if (last)
                cli__fail(unreachable, "record get: the blob's node %s", sources.text[i]);
            else
                fprintf(stderr, "ehrctl: record get: warning: %s: %s; trying the next node\n",
                        sources.text[i], unreachable);
            exit_code = CLI_EXIT_UNAVAILABLE;
            continue;
        }
        node_open = true;
        st = rpc_sync_stream(node.sync, "/ehr.v1.Node/GetBlob", req, packed, 0, get_message, &d,
                             &result);
        if (st == RPC_STATUS_OK) {
            exit_code = 0;
            rpc_result_clear(&result);
            break;
        }
        if (!blob_try_next(st) || last) {
            exit_code = cli__node_fail(&node, &result, "record get: the blob");
            rpc_result_clear(&result);
            break;
        }
        char msg[160];
        cli__text_shown(result.message, msg, sizeof msg);
        fprintf(stderr, "ehrctl: record get: warning: %s: no blob (%s): %s; trying the next node\n",
                sources.text[i], rpc_status_name(st), msg);
        rpc_result_clear(&result);
        cli__node_close(&node);
        node_open = false;
    }
    ehr_free(req);
    progress_end(&d.progress);
    if (st != RPC_STATUS_OK) {
        if (exit_code == 0)
            exit_code = CLI_EXIT_UNAVAILABLE;
        goto out;
    }
    uint8_t got[32];
    if (d.err == 0)
        d.err = ehr_record_opener_finish(&d.opener, got, &d.why);
    if (d.err == 0 && (d.received != an->ciphertext_bytes || d.received != d.size_bytes))
        d.err = ehr_diag_fail(&d.why, EHR_ECORRUPT,
                              "the blob's size is not the anchor's ciphertext_bytes");
    if (d.err == 0 && memcmp(got, an->ciphertext_hash.data, 32) != 0)
        d.err = ehr_diag_fail(&d.why, EHR_ECORRUPT,
                              "the blob's SHA-256 is not the anchor's ciphertext_hash");
    if (d.err == 0 && (fflush(d.out) != 0 || fsync(fileno(d.out)) != 0))
        d.err = ehr_diag_fail(&d.why, -EIO, "cannot write the output file");
    if (d.err != 0) {
        exit_code = cli__fail(d.why.msg, "record get");
        goto out;
    }
    fclose(d.out);
    d.out = NULL;
    if (rename(tmp_path, out_path) != 0) {
        exit_code = cli__fail(strerror(errno), "write %s", out_path);
        goto out;
    }
    tmp_path[0] = '\0';
    char blob_hex[HEX32];
    ehr_hex_encode(blob_hex, blob_id, 32);
    char permit_hex[HEX32] = "";
    if (!patient)
        ehr_hex_encode(permit_hex, grantee.permit, 32);
    if (ctx->json) {
        json_t *root = json_pack("{s:s, s:s, s:o}", "out", out_path, "blob_id", blob_hex,
                                 "ciphertext_bytes", cli__json_u64(d.received));
        if (root != NULL && !patient) {
            json_object_set_new(root, "permit_tx", json_string(permit_hex));
            json_object_set_new(root, "capsule_fragments", cli__json_u64(grantee.fragments_used));
        }
        exit_code = cli__json_print(root);
    } else {
        cli__print_field("record", argv[optind]);
        if (!patient)
            cli__print_field("permit", permit_hex);
        cli__print_field("blob", blob_hex);
        cli__print_field("wrote", out_path);
    }
out:
    if (d.out != NULL)
        fclose(d.out);
    if (tmp_path[0] != '\0')
        unlink(tmp_path); /* nothing half-written is left */
    if (opener_open)
        ehr_record_opener_clear(&d.opener);
    sodium_memzero(stream_key, sizeof stream_key);
    sodium_memzero(pointer_key, sizeof pointer_key);
    if (body != NULL)
        ehr__v1__tx_body__free_unpacked(body, NULL);
    if (node_open)
        cli__node_close(&node);
    sodium_free(id);
    return exit_code;
}
