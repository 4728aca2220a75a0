/*
 * show.c - how ehrctl prints a committed transaction (`tx show`) and a block
 * (`block show`), whether the bytes came from a ledger directory (--data)
 * or from a node (--node): one printer for both, so the two forms print the
 * same thing for the same data. Payloads are printed from the protobuf
 * descriptors, so every payload type shows in full without code of its own.
 *
 * Not here: fetching the bytes (cmd_ledger.c reads the ledger, cmd_node.c
 * asks a node).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_internal.h"
#include "ledger.h"

enum {
    HASH_HEX_BYTES = 2 * EHR_HASH_BYTES + 1,
    LINE_BYTES = 128,
};

static void hex32(char out[HASH_HEX_BYTES], const uint8_t bytes[EHR_HASH_BYTES])
{
    ehr_hex_encode(out, bytes, EHR_HASH_BYTES);
}

static json_t *json_checked(json_t *v)
{
    if (v == NULL)
        ehr_panic("out of memory building JSON");
    return v;
}

/* ---- Transactions: the payload, whatever its type ---- */

/* A JSON string for LEN bytes of text: as is if UTF-8, else escaped (\xNN). */
static json_t *json_text(const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    if (v != NULL)
        return v;
    char *escaped = ehr_malloc(4 * len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            escaped[n++] = (char)c;
        else
            n += (size_t)snprintf(escaped + n, 5, "\\x%02x", c);
    }
    escaped[n] = '\0';
    v = json_checked(json_string(escaped));
    ehr_free(escaped);
    return v;
}

static json_t *message_to_json(const ProtobufCMessage *msg);

/* One value of field FD stored at P, as JSON: bytes as hex, enums by name. */
static json_t *value_to_json(const ProtobufCFieldDescriptor *fd, const void *p)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        /* json_int_t is signed: a value past INT64_MAX goes out as text. */
        if (*(const uint64_t *)p > INT64_MAX) {
            char text[24];
            snprintf(text, sizeof text, "%llu", (unsigned long long)*(const uint64_t *)p);
            return json_string(text);
        }
        return json_integer((json_int_t) * (const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        return cli__json_enum(fd->descriptor, *(const int *)p);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_text(s != NULL ? s : "", s != NULL ? strlen(s) : 0);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        return cli__json_hex(b->data, b->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m != NULL ? message_to_json(m) : json_null();
    }
    }
    EHR_ASSERT(0 && "a protobuf-c field type not handled");
    return NULL;
}

/*
 * Every field of MSG as a JSON object, in field order, driven by its
 * descriptor: so each payload type (and any added later) shows without code
 * of its own. Of a oneof, only the member that is set.
 */
static json_t *message_to_json(const ProtobufCMessage *msg)
{
    EHR_ASSERT(msg != NULL);
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    EHR_ASSERT(desc->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    json_t *obj = json_checked(json_object());
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &desc->fields[i];
        const uint8_t *base = (const uint8_t *)msg;
        json_t *v;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t count = *(const size_t *)(base + fd->quantifier_offset);
            const uint8_t *items = *(const uint8_t *const *)(base + fd->offset);
            v = json_checked(json_array());
            for (size_t k = 0; k < count; k++)
                json_array_append_new(v, json_checked(value_to_json(
                                             fd, items + k * cli__repeated_element_bytes(fd))));
        } else {
            if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0 &&
                *(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
                continue;
            v = json_checked(value_to_json(fd, base + fd->offset));
        }
        json_object_set_new(obj, fd->name, v);
    }
    return obj;
}

/* The name of BODY's payload field ("record_anchor"), or "none". */
static const char *payload_name(const Ehr__V1__TxBody *body)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
        &ehr__v1__tx_body__descriptor, (unsigned)body->payload_case);
    return fd != NULL ? fd->name : "none";
}

/* The set payload message of BODY, or NULL. */
static const ProtobufCMessage *payload_of(const Ehr__V1__TxBody *body)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
        &ehr__v1__tx_body__descriptor, (unsigned)body->payload_case);
    if (fd == NULL || fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    return *(ProtobufCMessage *const *)((const uint8_t *)body + fd->offset);
}

/* Print the JSON object OBJ as indented `key  value` lines. */
static void print_object(json_t *obj, int indent)
{
    EHR_ASSERT(json_is_object(obj));
    EHR_ASSERT(indent >= 0);
    size_t width = 0;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (strlen(key) > width)
            width = strlen(key);
    }
    json_object_foreach(obj, key, v)
    {
        char text[LINE_BYTES * 8];
        if (json_is_object(v)) {
            printf("%*s%s:\n", indent, "", key);
            print_object(v, indent + 2);
            continue;
        }
        if (json_is_array(v)) {
            printf("%*s%-*s  %s\n", indent, "", (int)width, key,
                   json_array_size(v) == 0 ? "(none)" : "");
            size_t k;
            json_t *item;
            json_array_foreach(v, k, item)
            {
                if (json_is_object(item)) {
                    printf("%*s- %zu:\n", indent + 2, "", k + 1);
                    print_object(item, indent + 4);
                } else {
                    char *dumped = json_dumps(item, JSON_ENCODE_ANY);
                    cli__text_shown(json_is_string(item) ? json_string_value(item) : dumped, text,
                                    sizeof text);
                    printf("%*s- %s\n", indent + 2, "", text);
                    free(dumped);
                }
            }
            continue;
        }
        char *dumped = json_dumps(v, JSON_ENCODE_ANY);
        cli__text_shown(json_is_string(v) ? json_string_value(v) : dumped, text, sizeof text);
        printf("%*s%-*s  %s\n", indent, "", (int)width, key, text);
        free(dumped);
    }
}

/* ---- tx show ---- */

int cli__tx_print(struct cli__ctx *ctx, const uint8_t hash[EHR_HASH_BYTES], const char *hash_arg,
                  const struct cli__tx_shown *tx)
{
    EHR_ASSERT(tx->envelope != NULL && tx->chain_id != NULL);
    /* The body as committed, checked to hash to HASH (the ledger checks it
     * too, a node's answer is checked here), and the admission check as of
     * the block's time, which verify also makes. */
    const uint8_t *envelope = tx->envelope;
    size_t envelope_len = tx->envelope_len;
    ehr_diag diag;
    ledger_tx_view tx_view;
    Ehr__V1__TxBody *body = NULL;
    if (ledger_tx_envelope_parse(envelope, envelope_len, &tx_view, &diag) == 0)
        body = ehr__v1__tx_body__unpack(NULL, tx_view.body_len, tx_view.body);
    if (body == NULL)
        return cli__fail("the stored transaction does not decode", "tx %s", hash_arg);
    uint8_t body_hash[EHR_HASH_BYTES];
    ledger_tx_hash(tx_view.body, tx_view.body_len, body_hash);
    if (memcmp(body_hash, hash, EHR_HASH_BYTES) != 0) {
        ehr__v1__tx_body__free_unpacked(body, NULL);
        return cli__fail("the stored transaction has another hash", "tx %s", hash_arg);
    }
    int exit_code = CLI_EXIT_OK;
    ledger_tx_rules rules = {.chain_id = tx->chain_id, .now_ms = tx->block_time_ms};
    bool valid = ledger_tx_check(envelope, envelope_len, &rules, NULL, &diag) == 0;
    char hash_hex[HASH_HEX_BYTES];
    hex32(hash_hex, hash);
    json_t *payload =
        payload_of(body) != NULL ? message_to_json(payload_of(body)) : json_checked(json_object());
    json_t *root = json_checked(
        json_pack("{s:s, s:I, s:I, s:s, s:o, s:o, s:I, s:s, s:o, s:b, s:s, s:I}", "hash", hash_hex,
                  "height", (json_int_t)tx->height, "index", (json_int_t)tx->index, "chain_id",
                  body->chain_id, "signer", cli__json_hex(body->signer.data, body->signer.len),
                  "nonce", cli__json_hex(body->nonce.data, body->nonce.len), "expiry_ms",
                  (json_int_t)body->expiry_ms, "type", payload_name(body), "signature",
                  cli__json_hex(tx_view.signature, EHR_SCHNORR_SIG_BYTES), "valid", valid, "check",
                  valid ? "signature and contents valid at the block's time" : diag.msg, "bytes",
                  (json_int_t)envelope_len));
    if (ctx->json) {
        json_object_set_new(root, "result", cli__result_json(tx->result));
        json_object_set_new(root, "payload", payload);
        exit_code = cli__json_print(root);
    } else {
        char line[LINE_BYTES];
        cli__print_field("tx", hash_hex);
        snprintf(line, sizeof line, "%llu, index %u", (unsigned long long)tx->height, tx->index);
        cli__print_field("block", line);
        cli__text_shown(body->chain_id, line, sizeof line);
        cli__print_field("chain id", line);
        cli__print_field("signer", json_string_value(json_object_get(root, "signer")));
        cli__print_field("nonce", json_string_value(json_object_get(root, "nonce")));
        cli__time_text(body->expiry_ms, line, sizeof line);
        cli__print_field("expiry", line);
        snprintf(line, sizeof line, "%zu bytes", envelope_len);
        cli__print_field("size", line);
        cli__print_field("check", valid ? "valid (signature and contents at the block's time)"
                                        : json_string_value(json_object_get(root, "check")));
        cli__result_print(tx->result);
        printf("%s:\n", payload_name(body));
        print_object(payload, 2);
        json_decref(payload);
        json_decref(root);
    }
    ehr__v1__tx_body__free_unpacked(body, NULL);
    return exit_code;
}

/* ---- block show ---- */

/* The tx hash and payload type of envelope SPAN of VIEW. */
static void block_tx_describe(const ledger_block_view *view, ledger_span span,
                              uint8_t hash[EHR_HASH_BYTES], const char **type)
{
    EHR_ASSERT(span.offset <= view->len && span.length <= view->len - span.offset);
    ledger_tx_view tx;
    *type = "malformed";
    memset(hash, 0, EHR_HASH_BYTES);
    if (ledger_tx_envelope_parse(view->bytes + span.offset, span.length, &tx, NULL) != 0)
        return;
    ledger_tx_hash(tx.body, tx.body_len, hash);
    Ehr__V1__TxBody *body = ehr__v1__tx_body__unpack(NULL, tx.body_len, tx.body);
    if (body == NULL)
        return;
    *type = payload_name(body); /* a static string in the descriptor */
    ehr__v1__tx_body__free_unpacked(body, NULL);
}

int cli__block_print(struct cli__ctx *ctx, const uint8_t *bytes, size_t len, uint64_t height)
{
    EHR_ASSERT(bytes != NULL || len == 0);
    ledger_block_view view;
    ehr_diag diag;
    if (ledger_block_parse(bytes, len, &view, &diag) != 0)
        return cli__fail(diag.msg, "block %llu", (unsigned long long)height);
    if (view.header.height != height) {
        ledger_block_view_release(&view);
        return cli__fail("it holds another height", "block %llu", (unsigned long long)height);
    }
    int exit_code = CLI_EXIT_OK;
    const ledger_block_header *h = &view.header;
    char hash_hex[HASH_HEX_BYTES], prev_hex[HASH_HEX_BYTES], root_hex[HASH_HEX_BYTES];
    char proposer_hex[HASH_HEX_BYTES], genesis_hex[HASH_HEX_BYTES];
    hex32(hash_hex, view.hash);
    hex32(prev_hex, h->prev_hash);
    hex32(root_hex, h->tx_root);
    hex32(proposer_hex, h->proposer);
    hex32(genesis_hex, h->genesis_hash);
    bool first = h->height == 0;
    if (ctx->json) {
        json_t *txs = json_checked(json_array());
        for (uint32_t i = 0; i < h->tx_count; i++) {
            uint8_t tx_hash[EHR_HASH_BYTES];
            const char *type;
            block_tx_describe(&view, view.txs[i], tx_hash, &type);
            json_array_append_new(
                txs, json_checked(json_pack("{s:I, s:o, s:s, s:I}", "index", (json_int_t)i, "hash",
                                            cli__json_hex(tx_hash, EHR_HASH_BYTES), "type", type,
                                            "bytes", (json_int_t)view.txs[i].length)));
        }
        json_t *root = json_checked(json_pack(
            "{s:I, s:s, s:s, s:s, s:I, s:o, s:I, s:I, s:I, s:o, s:o, s:I, s:o}", "height",
            (json_int_t)h->height, "hash", hash_hex, "prev_hash", prev_hex, "tx_root", root_hex,
            "time_ms", (json_int_t)h->time_ms, "proposer",
            first ? json_null() : json_string(proposer_hex), "raft_term", (json_int_t)h->raft_term,
            "raft_index", (json_int_t)h->raft_index, "tx_count", (json_int_t)h->tx_count,
            "genesis_hash", first ? json_string(genesis_hex) : json_null(), "signature",
            first ? json_null() : cli__json_hex(view.signature, EHR_SCHNORR_SIG_BYTES), "bytes",
            (json_int_t)len, "txs", txs));
        exit_code = cli__json_print(root);
    } else {
        char line[LINE_BYTES];
        snprintf(line, sizeof line, "%llu", (unsigned long long)h->height);
        cli__print_field("height", line);
        cli__print_field("hash", hash_hex);
        cli__print_field("prev hash", prev_hex);
        cli__print_field("tx root", root_hex);
        cli__time_text(h->time_ms, line, sizeof line);
        cli__print_field("time", line);
        cli__print_field("proposer",
                         first ? "none (block 0 comes from the genesis)" : proposer_hex);
        snprintf(line, sizeof line, "term %llu, index %llu", (unsigned long long)h->raft_term,
                 (unsigned long long)h->raft_index);
        cli__print_field("raft", line);
        if (first)
            cli__print_field("genesis hash", genesis_hex);
        snprintf(line, sizeof line, "%zu bytes", len);
        cli__print_field("size", line);
        snprintf(line, sizeof line, "%u", h->tx_count);
        cli__print_field("transactions", line);
        for (uint32_t i = 0; i < h->tx_count; i++) {
            uint8_t tx_hash[EHR_HASH_BYTES];
            const char *type;
            char tx_hex[HASH_HEX_BYTES];
            block_tx_describe(&view, view.txs[i], tx_hash, &type);
            hex32(tx_hex, tx_hash);
            printf("  %5u  %s  %s\n", i, tx_hex, type);
        }
    }
    ledger_block_view_release(&view);
    return exit_code;
}
