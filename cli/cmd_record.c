/*
 * cmd_record.c - `ehrctl record anchor` and `record erase`. Erase: the
 * patient (whose key signs) erases one of their records (tx.proto
 * RecordErase): the anchor stays as a tombstone, every node refuses the
 * record's blob, capsule fragments and new access from the erase's block
 * on, and deletes its copy of the ciphertext. Anchor: a custodian (the
 * member whose key signs) anchors an already-encrypted record kept off the ledger
 * (tx.proto RecordAnchor): the patient, the record type, the encrypted
 * pointer to the ciphertext, the ciphertext's SHA-256 and size, and what it
 * supersedes. The record's id is the transaction's hash, printed first.
 *
 * The ciphertext's hash and size come from --hash HEX [--size N], or from
 * the ciphertext itself with --file FILE (read once, streamed: a record may
 * be an imaging study of gigabytes). Nothing here encrypts: the pointer and
 * the file are taken as already sealed by whoever made them (record
 * encryption, when it is built, adds `record add` on top of this).
 *
 * Not here: signing and submitting (submit.c, cli__signed_tx_submit);
 * listing a patient's records and showing one (`records`, `record show`,
 * cmd_records.c).
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"
#include "contracts.h"

enum {
    HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    FILE_CHUNK_BYTES = 64 * 1024, /* read buffer while hashing a ciphertext */
    TYPE_NAMES_BYTES = 256,       /* the record types' names, for a message */
};

struct anchor_args {
    const char *patient_file, *patient_hex;
    const char *type_arg;
    const char *pointer_hex, *pointer_text;
    const char *hash_hex, *size_arg, *file;
    const char *supersedes_hex;
    struct cli__signed_tx tx;
    /* parsed */
    uint8_t patient[EHR_SCHNORR_PUBLIC_BYTES];
    int type;
    uint8_t pointer[CONTRACTS_POINTER_BYTES_MAX];
    size_t pointer_len;
    uint8_t hash[EHR_HASH_BYTES];
    uint64_t size;
    uint8_t supersedes[EHR_HASH_BYTES];
};

/* SHA-256 and size of the file PATH, read once. Returns 0, or CLI_EXIT_FAIL
 * after saying why. */
static int file_hash(const char *path, uint8_t hash[EHR_HASH_BYTES], uint64_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return cli__fail(strerror(errno), "read record file %s", path);
    crypto_hash_sha256_state state;
    crypto_hash_sha256_init(&state);
    uint8_t *chunk = ehr_malloc(FILE_CHUNK_BYTES);
    uint64_t total = 0;
    size_t n;
    while ((n = fread(chunk, 1, FILE_CHUNK_BYTES, f)) > 0) {
        crypto_hash_sha256_update(&state, chunk, n);
        total += n;
    }
    int failed = ferror(f);
    int saved = errno;
    ehr_free(chunk);
    fclose(f);
    if (failed)
        return cli__fail(strerror(saved), "read record file %s", path);
    crypto_hash_sha256_final(&state, hash);
    *size = total;
    return 0;
}

static int anchor_values(struct cli__ctx *ctx, struct anchor_args *a)
{
    int exit_code = cli__key_choice(ctx, "--patient", a->patient_file, "--patient-public",
                                    a->patient_hex, a->patient);
    if (exit_code != 0)
        return exit_code;
    if (a->type_arg == NULL)
        return cli__usage_error(ctx, "--type TYPE, the record's type, is required");
    if (cli__enum_arg(&ehr__v1__record_type__descriptor, a->type_arg, &a->type) != 0) {
        char names[TYPE_NAMES_BYTES];
        cli__enum_names(&ehr__v1__record_type__descriptor, names, sizeof names);
        return cli__usage_error(ctx, "--type \"%.40s\" is not a record type: %s", a->type_arg,
                                names);
    }
    if ((a->pointer_hex != NULL) == (a->pointer_text != NULL))
        return cli__usage_error(ctx, "give the encrypted pointer as --pointer HEX or "
                                     "--pointer-text STR, one of them");
    if (a->pointer_hex != NULL) {
        size_t digits = strlen(a->pointer_hex);
        ehr_diag why;
        if (digits == 0 || digits % 2 != 0 || digits / 2 > CONTRACTS_POINTER_BYTES_MAX)
            return cli__usage_error(ctx,
                                    "--pointer wants 1 to %d bytes as hex, an even count of "
                                    "digits (%zu given)",
                                    CONTRACTS_POINTER_BYTES_MAX, digits);
        a->pointer_len = digits / 2;
        if (cli__hex_arg(a->pointer_hex, a->pointer, a->pointer_len, &why) != 0)
            return cli__usage_error(ctx, "--pointer %s", why.msg);
    } else {
        a->pointer_len = strlen(a->pointer_text);
        if (a->pointer_len == 0 || a->pointer_len > CONTRACTS_POINTER_BYTES_MAX)
            return cli__usage_error(ctx, "--pointer-text wants 1 to %d bytes (%zu given)",
                                    CONTRACTS_POINTER_BYTES_MAX, a->pointer_len);
        memcpy(a->pointer, a->pointer_text, a->pointer_len);
    }
    if ((a->hash_hex != NULL) == (a->file != NULL))
        return cli__usage_error(ctx, "give the ciphertext's SHA-256 as --hash HEX, or the "
                                     "encrypted file to take it from as --file FILE, one of them");
    if (a->file != NULL && a->size_arg != NULL)
        return cli__usage_error(ctx, "--size goes with --hash: --file measures the file");
    if (a->hash_hex != NULL) {
        ehr_diag why;
        if (cli__hex_arg(a->hash_hex, a->hash, sizeof a->hash, &why) != 0)
            return cli__usage_error(ctx, "--hash %s", why.msg);
    }
    if (a->size_arg != NULL && cli__parse_u64(a->size_arg, UINT64_MAX, &a->size) != 0)
        return cli__usage_error(ctx, "--size wants the ciphertext's size in bytes, a decimal "
                                     "number");
    if (a->supersedes_hex != NULL) {
        ehr_diag why;
        if (cli__hex_arg(a->supersedes_hex, a->supersedes, sizeof a->supersedes, &why) != 0)
            return cli__usage_error(ctx, "--supersedes (a record id) %s", why.msg);
    }
    return cli__signed_tx_finish(ctx, &a->tx);
}

static int anchor_parse(struct cli__ctx *ctx, int argc, char **argv, struct anchor_args *a)
{
    static const struct option options[] = {{"patient", required_argument, NULL, 'P'},
                                            {"patient-public", required_argument, NULL, 'u'},
                                            {"type", required_argument, NULL, 'y'},
                                            {"pointer", required_argument, NULL, 'o'},
                                            {"pointer-text", required_argument, NULL, 'O'},
                                            {"hash", required_argument, NULL, 'H'},
                                            {"size", required_argument, NULL, 'z'},
                                            {"file", required_argument, NULL, 'f'},
                                            {"supersedes", required_argument, NULL, 's'},
                                            CLI_SIGNED_TX_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'P':
            a->patient_file = optarg;
            break;
        case 'u':
            a->patient_hex = optarg;
            break;
        case 'y':
            a->type_arg = optarg;
            break;
        case 'o':
            a->pointer_hex = optarg;
            break;
        case 'O':
            a->pointer_text = optarg;
            break;
        case 'H':
            a->hash_hex = optarg;
            break;
        case 'z':
            a->size_arg = optarg;
            break;
        case 'f':
            a->file = optarg;
            break;
        case 's':
            a->supersedes_hex = optarg;
            break;
        default:
            if (cli__signed_tx_option(ctx, c, optarg, &a->tx) != 0)
                return CLI_EXIT_USAGE;
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    return anchor_values(ctx, a);
}

int cli__cmd_record_anchor(struct cli__ctx *ctx, int argc, char **argv)
{
    struct anchor_args a = {0};
    int exit_code = anchor_parse(ctx, argc, argv, &a);
    if (exit_code != 0)
        return exit_code;
    /* The file before any passphrase: a wrong path costs nothing. */
    if (a.file != NULL && (exit_code = file_hash(a.file, a.hash, &a.size)) != 0)
        return exit_code;
    Ehr__V1__RecordAnchor anchor = EHR__V1__RECORD_ANCHOR__INIT;
    anchor.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, a.patient};
    anchor.record_type = (Ehr__V1__RecordType)a.type;
    anchor.encrypted_pointer = (ProtobufCBinaryData){a.pointer_len, a.pointer};
    anchor.ciphertext_hash = (ProtobufCBinaryData){EHR_HASH_BYTES, a.hash};
    anchor.ciphertext_bytes = a.size;
    if (a.supersedes_hex != NULL)
        anchor.supersedes = (ProtobufCBinaryData){EHR_HASH_BYTES, a.supersedes};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ANCHOR;
    body.record_anchor = &anchor;
    char patient_hex[2 * EHR_SCHNORR_PUBLIC_BYTES + 1], hash_hex[HASH_HEX_BYTES];
    ehr_hex_encode(patient_hex, a.patient, EHR_SCHNORR_PUBLIC_BYTES);
    ehr_hex_encode(hash_hex, a.hash, EHR_HASH_BYTES);
    char ciphertext[HASH_HEX_BYTES + 48];
    snprintf(ciphertext, sizeof ciphertext, "%s, %llu bytes", hash_hex, (unsigned long long)a.size);
    json_t *extra =
        ctx->json
            ? json_pack("{s:s, s:o, s:s, s:o}", "patient_key", patient_hex, "record_type",
                        cli__json_enum(&ehr__v1__record_type__descriptor, a.type),
                        "ciphertext_hash", hash_hex, "ciphertext_bytes", cli__json_u64(a.size))
            : json_pack("{s:s, s:o, s:s}", "patient", patient_hex, "type",
                        cli__json_enum(&ehr__v1__record_type__descriptor, a.type), "ciphertext",
                        ciphertext);
    if (extra == NULL)
        ehr_panic("out of memory building JSON");
    return cli__signed_tx_submit(ctx, &a.tx, NULL, &body, "record", extra);
}

int cli__cmd_record_erase(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"ground", required_argument, NULL, 'g'}, CLI_SIGNED_TX_OPTIONS, CLI_COMMON_OPTIONS};
    struct cli__signed_tx tx = {0};
    const char *ground_arg = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'g')
            ground_arg = optarg;
        else if (cli__signed_tx_option(ctx, c, optarg, &tx) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    uint8_t record_id[EHR_HASH_BYTES];
    if (cli__one_hash_arg(ctx, argc, argv, "RECORD_ID", CLI_RECORD_ID_HINT, record_id) != 0)
        return CLI_EXIT_USAGE;
    int ground = EHR__V1__ERASE_GROUND__ERASE_GROUND_UNSPECIFIED;
    if (ground_arg != NULL &&
        cli__enum_arg(&ehr__v1__erase_ground__descriptor, ground_arg, &ground) != 0) {
        char names[TYPE_NAMES_BYTES];
        cli__enum_names(&ehr__v1__erase_ground__descriptor, names, sizeof names);
        return cli__usage_error(ctx, "--ground \"%.40s\" is not an erasure ground: %s", ground_arg,
                                names);
    }
    int exit_code = cli__signed_tx_finish(ctx, &tx);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__RecordErase erase = EHR__V1__RECORD_ERASE__INIT;
    erase.record_id = (ProtobufCBinaryData){EHR_HASH_BYTES, record_id};
    erase.ground = (Ehr__V1__EraseGround)ground;
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_RECORD_ERASE;
    body.record_erase = &erase;
    char record_hex[HASH_HEX_BYTES];
    ehr_hex_encode(record_hex, record_id, EHR_HASH_BYTES);
    json_t *extra =
        ctx->json
            ? json_pack("{s:s, s:o}", "record_id", record_hex, "ground",
                        cli__json_enum(&ehr__v1__erase_ground__descriptor, ground))
            : json_pack("{s:s, s:s}", "erases", record_hex, "then",
                        "once committed, every node refuses the record's ciphertext, key "
                        "fragments and new access, and deletes its copy of the ciphertext; the "
                        "anchor and the audit trail stay");
    if (extra == NULL)
        ehr_panic("out of memory building JSON");
    return cli__signed_tx_submit(ctx, &tx, NULL, &body, NULL, extra);
}
