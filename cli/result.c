/*
 * result.c - a transaction's result (TxResult, proto/ehr/v1/tx.proto) in
 * words and in JSON: what every command that reports one prints, so that a
 * refusal or an access decision reads the same everywhere.
 *
 * A result is what the consent contract's rules concluded when the
 * transaction's block was applied: OK, or a refusal code with a reason; for
 * an access request or an emergency access, also the decision (permit or
 * deny), the consent that permitted it and the policy gas spent. A deny is
 * an OK result: the request was decided, and the decision is the answer.
 *
 * Not here: asking a node for a result (submit.c, the commands), or what a
 * command's exit status is for it (the caller decides: tx submit exits
 * CLI_EXIT_TX_REFUSED for a code other than OK).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"
#include "contracts.h"

enum { LINE_BYTES = CONTRACTS_REASON_BYTES_MAX + 128 };

const char *cli__result_check(const Ehr__V1__TxResult *r)
{
    if (r->consent_id.len != 0 && r->consent_id.len != EHR_HASH_BYTES)
        return "the result's consent_id is neither empty nor 32 bytes";
    if (strlen(r->reason) > CONTRACTS_REASON_BYTES_MAX)
        return "the result's reason is over 160 bytes";
    return NULL;
}

void cli__result_code_name(int code, char *out, size_t size)
{
    const ProtobufCEnumDescriptor *ed = &ehr__v1__tx_result_code__descriptor;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, code);
    if (ev == NULL) {
        snprintf(out, size, "code %d", code);
        return;
    }
    snprintf(out, size, "%s", ev->name + cli__enum_prefix_len(ed));
}

const char *cli__result_decision_name(int decision)
{
    switch (decision) {
    case EHR__V1__ACCESS_DECISION__ACCESS_DECISION_PERMIT:
        return "permit";
    case EHR__V1__ACCESS_DECISION__ACCESS_DECISION_DENY:
        return "deny";
    default:
        return NULL;
    }
}

void cli__result_print(const Ehr__V1__TxResult *r)
{
    char line[LINE_BYTES], code[32], reason[CONTRACTS_REASON_BYTES_MAX + 1];
    if (r == NULL) {
        cli__print_field("result", "not given by the node");
        return;
    }
    EHR_ASSERT(cli__result_check(r) == NULL);
    cli__result_code_name(r->code, code, sizeof code);
    cli__text_shown(r->reason, reason, sizeof reason);
    const char *decision = cli__result_decision_name(r->decision);
    if (r->code != EHR__V1__TX_RESULT_CODE__TX_RESULT_OK || (decision == NULL && reason[0]))
        snprintf(line, sizeof line, "%s: %s", code, reason[0] ? reason : "-");
    else
        snprintf(line, sizeof line, "%s", code);
    cli__print_field("result", line);
    if (decision == NULL)
        return;
    snprintf(line, sizeof line, "%s%s%s", decision, reason[0] ? ": " : "", reason);
    cli__print_field("decision", line);
    if (r->consent_id.len == EHR_HASH_BYTES) {
        char hex[2 * EHR_HASH_BYTES + 1];
        ehr_hex_encode(hex, r->consent_id.data, EHR_HASH_BYTES);
        cli__print_field("consent", hex);
    }
    snprintf(line, sizeof line, "%llu", (unsigned long long)r->gas_used);
    cli__print_field("policy gas", line);
}

json_t *cli__result_json(const Ehr__V1__TxResult *r)
{
    if (r == NULL)
        return json_null();
    EHR_ASSERT(cli__result_check(r) == NULL);
    const char *decision = cli__result_decision_name(r->decision);
    json_t *root = json_pack(
        "{s:o, s:b, s:o, s:o, s:o, s:o}", "code",
        cli__json_enum(&ehr__v1__tx_result_code__descriptor, r->code), "ok",
        r->code == EHR__V1__TX_RESULT_CODE__TX_RESULT_OK, "reason", cli__json_text(r->reason),
        "decision", decision != NULL ? json_string(decision) : json_null(), "consent_id",
        r->consent_id.len == EHR_HASH_BYTES ? cli__json_hex(r->consent_id.data, EHR_HASH_BYTES)
                                            : json_null(),
        "gas_used", cli__json_u64(r->gas_used));
    if (root == NULL)
        ehr_panic("out of memory building JSON");
    return root;
}
