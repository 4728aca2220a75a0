/*
 * cmd_member.c - governed membership through ehrctl: `member list` (the
 * members as the world state holds them, ListMembers), `member propose`
 * (a member proposes admitting an institution or removing a member,
 * tx.proto MemberProposal) and `member approve` (another member approves
 * it, MemberApproval). The change is made by the approval that brings a
 * majority of the current members (contracts/README.md, "Who may sign
 * what"); the proposer's own approval counts.
 *
 * An admission names the new member by its entry, the JSON object
 * `ehrctl genesis member` prints for the institution's key file, checked
 * here as the ledger checks a member (cli__member_from_json); a removal by
 * the member's node key. Every value is checked before any passphrase is
 * asked: bad input is exit 2 and nothing is sent.
 *
 * What is not done here, nor by the node yet: an admitted member's node
 * joining the peers and Raft. Admission changes the world state (the
 * member may sign, be granted consents, read as a member); its ehrd is not
 * yet a peer of the running ones.
 *
 * Not here: signing and submitting (submit.c, cli__signed_tx_submit).
 */
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"

enum {
    KEY_HEX_BYTES = 2 * EHR_SCHNORR_PUBLIC_BYTES + 1,
    /* An entry file: one member's JSON, a few hundred bytes. */
    MEMBER_ENTRY_BYTES_MAX = 64 * 1024,
    /* ListMembers pages: the node's NODE_QUERY_LIMIT_MAX entries each. */
    MEMBER_PAGE_LIMIT = 1000,
    /* A chain holds at most EHR_GENESIS_MEMBERS_MAX members: a node that
     * pages on past this many is cut off. */
    MEMBER_PAGES_MAX = EHR_GENESIS_MEMBERS_MAX / MEMBER_PAGE_LIMIT + 2,
    MEMBER_TOKEN_BYTES_MAX = 1024,
    NAME_SHOWN_BYTES = 64,
    /* How long a proposal collects approvals, in days of block time. */
    PROPOSAL_EXPIRES_DAYS_DEFAULT = 7,
    PROPOSAL_EXPIRES_DAYS_MAX = 365,
};
#define DAY_MS (24ull * 3600 * 1000)

/* ---- member list ---- */

/* A member as the node answered it: keys of their sizes, a role. */
static const char *member_check(const Ehr__V1__Member *m)
{
    if (m->node_key.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "a member's node_key is not 32 bytes";
    if (m->kx_key.len != EHR_SCHNORR_PUBLIC_BYTES)
        return "a member's kx_key is not 32 bytes";
    if (cli__member_role_name(m->role) == NULL)
        return "a member without a known role";
    return NULL;
}

static void member_print(const Ehr__V1__Member *m)
{
    char node_hex[KEY_HEX_BYTES], name[NAME_SHOWN_BYTES], address[NAME_SHOWN_BYTES];
    ehr_hex_encode(node_hex, m->node_key.data, EHR_SCHNORR_PUBLIC_BYTES);
    cli__text_shown(m->name, name, sizeof name);
    cli__text_shown(m->peer_address, address, sizeof address);
    printf("%s  %-9s  %s  %s\n", node_hex, cli__member_role_name(m->role), address, name);
}

/* The entry's JSON: the fields `genesis member` prints, so a line of
 * `member list --json` is an entry another command reads. */
static json_t *member_json(const Ehr__V1__Member *m)
{
    json_t *j = json_pack("{s:o, s:s, s:o, s:o, s:o}", "name", cli__json_text(m->name), "role",
                          cli__member_role_name(m->role), "node_key",
                          cli__json_hex(m->node_key.data, m->node_key.len), "kx_key",
                          cli__json_hex(m->kx_key.data, m->kx_key.len), "address",
                          cli__json_text(m->peer_address));
    if (j == NULL)
        ehr_panic("out of memory building JSON");
    return j;
}

int cli__members_each(struct cli__node *node, const char *what, cli__member_fn fn, void *ctx,
                      size_t *count)
{
    uint8_t token[MEMBER_TOKEN_BYTES_MAX];
    size_t token_len = 0;
    *count = 0;
    for (size_t pages = 0;; pages++) {
        if (pages == MEMBER_PAGES_MAX)
            return cli__node_bad_answer(node, what, "more pages than a chain has members");
        Ehr__V1__ListMembersRequest request = EHR__V1__LIST_MEMBERS_REQUEST__INIT;
        request.limit = MEMBER_PAGE_LIMIT;
        request.page_token = (ProtobufCBinaryData){token_len, token_len > 0 ? token : NULL};
        struct rpc_result result;
        enum rpc_status status = cli__node_call(node, "ListMembers", &request.base, 0, &result);
        if (status != RPC_STATUS_OK) {
            int exit_code = cli__node_fail(node, &result, "%s", what);
            rpc_result_clear(&result);
            return exit_code;
        }
        Ehr__V1__ListMembersResponse *r =
            ehr__v1__list_members_response__unpack(NULL, result.response_len, result.response);
        rpc_result_clear(&result);
        const char *bad = r == NULL ? "the answer does not decode" : NULL;
        for (size_t i = 0; bad == NULL && i < r->n_members; i++)
            bad = member_check(r->members[i]);
        if (bad == NULL && r->n_members > MEMBER_PAGE_LIMIT)
            bad = "more members than the limit asked for";
        if (bad == NULL && r->next_page_token.len > sizeof token)
            bad = "a next_page_token over 1024 bytes";
        if (bad == NULL && r->next_page_token.len > 0 && r->next_page_token.len == token_len &&
            memcmp(r->next_page_token.data, token, token_len) == 0)
            bad = "the next page is this page again";
        if (bad != NULL) {
            if (r != NULL)
                ehr__v1__list_members_response__free_unpacked(r, NULL);
            return cli__node_bad_answer(node, what, bad);
        }
        int exit_code = 0;
        for (size_t i = 0; exit_code == 0 && i < r->n_members; i++)
            exit_code = fn(ctx, r->members[i]);
        *count += r->n_members;
        token_len = r->next_page_token.len;
        if (token_len > 0) /* an empty bytes field may be NULL */
            memcpy(token, r->next_page_token.data, token_len);
        ehr__v1__list_members_response__free_unpacked(r, NULL);
        if (exit_code != 0)
            return exit_code;
        if (token_len == 0)
            return 0;
    }
}

struct list_show {
    struct cli__ctx *ctx;
    json_t *list;
};

static int member_show(void *ctx, const Ehr__V1__Member *m)
{
    struct list_show *ls = ctx;
    if (ls->ctx->json)
        json_array_append_new(ls->list, member_json(m));
    else
        member_print(m);
    return 0;
}

/* Every page of ListMembers, each member checked and shown (into LIST in
 * JSON). Returns 0 with *COUNT, or an exit status after saying why. */
static int members_fetch(struct cli__ctx *ctx, struct cli__node *node, json_t *list, size_t *count)
{
    struct list_show ls = {ctx, list};
    return cli__members_each(node, "member list", member_show, &ls, count);
}

int cli__cmd_member_list(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_NODE_OPTIONS, CLI_COMMON_OPTIONS};
    struct cli__node_options o = {0};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (cli__node_option(ctx, c, optarg, &o) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    int exit_code = cli__node_options_finish(ctx, &o);
    if (exit_code != 0)
        return exit_code;
    struct cli__node node;
    exit_code = cli__node_open(&node, &o, "member list");
    if (exit_code != 0)
        return exit_code;
    json_t *list = json_array();
    if (list == NULL)
        ehr_panic("out of memory building JSON");
    if (!ctx->json)
        printf("members (node key, role, peer address, name)\n");
    size_t count;
    exit_code = members_fetch(ctx, &node, list, &count);
    cli__node_close(&node);
    if (exit_code != 0) {
        json_decref(list);
        return exit_code;
    }
    if (ctx->json) {
        json_t *root = json_pack("{s:o}", "members", list);
        if (root == NULL)
            ehr_panic("out of memory building JSON");
        return cli__json_print(root);
    }
    json_decref(list);
    printf("(%zu member%s)\n", count, count == 1 ? "" : "s");
    return CLI_EXIT_OK;
}

/* ---- member propose ---- */

struct propose_args {
    const char *admit_path, *remove_arg, *expires_arg;
    struct cli__signed_tx tx;
    /* parsed */
    json_t *entry; /* the --admit file's JSON (M points into it) */
    Ehr__V1__Member member;
    uint8_t member_keys[2][32];
    uint8_t remove[EHR_SCHNORR_PUBLIC_BYTES];
    uint64_t expires_days;
};

/* Read and check the --admit entry file into A. Returns 0, or an exit
 * status after saying why: a file that cannot be read exits 1, one that is
 * not a valid entry is bad input (exit 2). */
static int admit_entry_read(struct cli__ctx *ctx, struct propose_args *a)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = ehr_file_read_alloc(a->admit_path, MEMBER_ENTRY_BYTES_MAX, &bytes, &len);
    if (rc == EHR_ETOOBIG)
        return cli__usage_error(ctx,
                                "--admit %s: over %d bytes: one member's entry, as `ehrctl "
                                "genesis member` prints it",
                                a->admit_path, MEMBER_ENTRY_BYTES_MAX);
    if (rc != 0)
        return cli__fail(rc < 0 && rc > -4096 ? strerror(-rc) : ehr_strerror(rc),
                         "member propose: read %s", a->admit_path);
    json_error_t error;
    a->entry = json_loadb((const char *)bytes, len, JSON_REJECT_DUPLICATES, &error);
    ehr_free(bytes);
    if (a->entry == NULL)
        return cli__usage_error(ctx, "--admit %s: not JSON: line %d: %s", a->admit_path, error.line,
                                error.text);
    ehr_diag why;
    if (cli__member_from_json(a->entry, &a->member, a->member_keys, &why) != 0)
        return cli__usage_error(ctx,
                                "--admit %s: not a member entry as `ehrctl genesis member` "
                                "prints it: %s",
                                a->admit_path, why.msg);
    return 0;
}

static int propose_parse(struct cli__ctx *ctx, int argc, char **argv, struct propose_args *a)
{
    static const struct option options[] = {{"admit", required_argument, NULL, 'A'},
                                            {"remove", required_argument, NULL, 'R'},
                                            {"expires-days", required_argument, NULL, 'E'},
                                            CLI_SIGNED_TX_OPTIONS,
                                            CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (c == 'A')
            a->admit_path = optarg;
        else if (c == 'R')
            a->remove_arg = optarg;
        else if (c == 'E')
            a->expires_arg = optarg;
        else if (cli__signed_tx_option(ctx, c, optarg, &a->tx) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if ((a->admit_path != NULL) == (a->remove_arg != NULL))
        return cli__usage_error(ctx, "give --admit ENTRY.json (a member to admit) or --remove "
                                     "NODE_KEY (a member to remove), one of them");
    a->expires_days = PROPOSAL_EXPIRES_DAYS_DEFAULT;
    if (a->expires_arg != NULL &&
        (cli__parse_u64(a->expires_arg, PROPOSAL_EXPIRES_DAYS_MAX, &a->expires_days) != 0 ||
         a->expires_days == 0))
        return cli__usage_error(ctx, "--expires-days wants 1 to %d days",
                                PROPOSAL_EXPIRES_DAYS_MAX);
    int exit_code = 0;
    if (a->remove_arg != NULL) {
        ehr_diag why;
        if (cli__public_key_arg(a->remove_arg, a->remove, NULL, &why) != 0)
            return cli__usage_error(ctx, "--remove (a member's node key): %s", why.msg);
    } else {
        exit_code = admit_entry_read(ctx, a);
    }
    if (exit_code != 0)
        return exit_code;
    return cli__signed_tx_finish(ctx, &a->tx);
}

int cli__cmd_member_propose(struct cli__ctx *ctx, int argc, char **argv)
{
    struct propose_args *a = ehr_calloc(1, sizeof *a);
    int exit_code = propose_parse(ctx, argc, argv, a);
    if (exit_code != 0) {
        json_decref(a->entry);
        ehr_free(a);
        return exit_code;
    }
    Ehr__V1__MemberProposal proposal = EHR__V1__MEMBER_PROPOSAL__INIT;
    /* Block time, which the wall clock approximates: the proposal lapses
     * for approvals in blocks after it. */
    proposal.expires_ms = cli__wall_ms() + a->expires_days * DAY_MS;
    char key_hex[KEY_HEX_BYTES];
    if (a->entry != NULL) {
        proposal.change_case = EHR__V1__MEMBER_PROPOSAL__CHANGE_ADMIT;
        proposal.admit = &a->member;
        ehr_hex_encode(key_hex, a->member.node_key.data, EHR_SCHNORR_PUBLIC_BYTES);
    } else {
        proposal.change_case = EHR__V1__MEMBER_PROPOSAL__CHANGE_REMOVE;
        proposal.remove = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, a->remove};
        ehr_hex_encode(key_hex, a->remove, EHR_SCHNORR_PUBLIC_BYTES);
    }
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_MEMBER_PROPOSAL;
    body.member_proposal = &proposal;
    char expires[40];
    cli__time_iso(proposal.expires_ms, expires, sizeof expires);
    json_t *extra;
    if (ctx->json)
        extra = json_pack("{s:s, s:s, s:o, s:o}", "change", a->entry != NULL ? "admit" : "remove",
                          "node_key", key_hex, "name",
                          a->entry != NULL ? cli__json_text(a->member.name) : json_null(),
                          "expires_ms", cli__json_u64(proposal.expires_ms));
    else if (a->entry != NULL)
        extra = json_pack("{s:o, s:s, s:s}", "admit", cli__json_text(a->member.name), "node key",
                          key_hex, "expires", expires);
    else
        extra = json_pack("{s:s, s:s}", "remove", key_hex, "expires", expires);
    if (extra == NULL)
        ehr_panic("out of memory building JSON");
    exit_code = cli__signed_tx_submit(ctx, &a->tx, NULL, &body, "proposal", extra);
    json_decref(a->entry);
    ehr_free(a);
    return exit_code;
}

/* ---- member remove: member propose --remove, NODE_KEY first ---- */

int cli__cmd_member_remove(struct cli__ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return cli__cmd_member_propose(ctx, argc, argv); /* --help, or the usage error */
    char **args = ehr_calloc((size_t)argc + 2, sizeof *args);
    args[0] = argv[0];
    args[1] = "--remove";
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    int exit_code = cli__cmd_member_propose(ctx, argc + 1, args);
    ehr_free(args);
    return exit_code;
}

/* ---- member approve ---- */

int cli__cmd_member_approve(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_SIGNED_TX_OPTIONS, CLI_COMMON_OPTIONS};
    struct cli__signed_tx tx = {0};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        if (cli__signed_tx_option(ctx, c, optarg, &tx) != 0)
            return CLI_EXIT_USAGE;
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    uint8_t id[EHR_HASH_BYTES];
    if (cli__one_hash_arg(ctx, argc, argv, "PROPOSAL_ID",
                          "the proposal's transaction hash, as member propose prints it", id) != 0)
        return CLI_EXIT_USAGE;
    int exit_code = cli__signed_tx_finish(ctx, &tx);
    if (exit_code != 0)
        return exit_code;
    Ehr__V1__MemberApproval approval = EHR__V1__MEMBER_APPROVAL__INIT;
    approval.proposal_id = (ProtobufCBinaryData){EHR_HASH_BYTES, id};
    Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
    body.payload_case = EHR__V1__TX_BODY__PAYLOAD_MEMBER_APPROVAL;
    body.member_approval = &approval;
    char id_hex[2 * EHR_HASH_BYTES + 1];
    ehr_hex_encode(id_hex, id, EHR_HASH_BYTES);
    json_t *extra = json_pack("{s:s}", ctx->json ? "proposal_id" : "approves", id_hex);
    if (extra == NULL)
        ehr_panic("out of memory building JSON");
    return cli__signed_tx_submit(ctx, &tx, NULL, &body, NULL, extra);
}
