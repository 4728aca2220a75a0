/*
 * main.c - ehrctl, the operator's command-line tool: the command table, the
 * dispatcher and `ehrctl help`.
 *
 * A command is a row in `commands` below and a function in a cmd_*.c file;
 * adding one means adding both, nothing else.
 * The dispatcher picks the row whose words match the most leading
 * arguments, so "genesis" and "genesis show" can coexist.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"

static int cmd_help(struct cli__ctx *ctx, int argc, char **argv);

/* Help shared by the commands that talk to a node. */
#define NODE_OPTIONS_HELP                                                                          \
    "  --node HOST:PORT        the node's gRPC address (default $EHR_NODE, else\n"                 \
    "                          " CLI_NODE_DEFAULT ")\n"                                            \
    "  --timeout-ms N          deadline in ms to connect and for each call (default 10000)\n"      \
    "  --tls-ca FILE           speak TLS; the node's certificate must chain to this CA\n"          \
    "                          (PEM) and match the host of --node (default $EHR_TLS_CA)\n"         \
    "  --tls-cert FILE         with --tls-key: a client certificate (PEM) for a node that\n"       \
    "                          asks for one (default $EHR_TLS_CERT)\n"                             \
    "  --tls-key FILE          its key, PEM without a passphrase (default $EHR_TLS_KEY)\n"
#define NODE_EXIT_HELP                                                                             \
    "\nexit status: 0 ok; 1 failed; 2 usage error; and by the node's gRPC status:\n"               \
    "  3 INVALID_ARGUMENT    the node refused it (the line says which rule)\n"                     \
    "  4 ALREADY_EXISTS      the transaction is in the mempool or on the ledger already\n"         \
    "  5 RESOURCE_EXHAUSTED  the mempool is full: retry later\n"                                   \
    "  6 UNAVAILABLE         unreachable, no leader yet, or not the leader: the line names\n"      \
    "                        the leader when the node does (retry there with --node)\n"            \
    "  7 DEADLINE_EXCEEDED   no answer within --timeout-ms\n"                                      \
    "  8 PERMISSION_DENIED   the signer may not do this (the consent contract's rules,\n"          \
    "                        run by the leader at submission; for a read, who may read\n"          \
    "                        what); also UNAUTHENTICATED: a read's signature refused\n"            \
    "  9 NOT_FOUND           what it names does not exist (a patient not enrolled, a\n"            \
    "                        record, a consent; a block above the tip)\n"                          \
    " 10 FAILED_PRECONDITION a rule of the transaction does not hold (done already, the\n"         \
    "                        patient's co-signature, a policy that does not verify)\n"             \
    "Other statuses exit 1. Failures print one line on stderr with the status's name and\n"        \
    "the node's message (for 8-10, the rule's reason).\n"
/* Help for the listings' paging. */
#define QUERY_OPTIONS_HELP                                                                         \
    "  --limit N               entries per page (1-1000, default 100)\n"                           \
    "  --all                   every page (default: the first; the last line then gives\n"         \
    "                          the token of the next)\n"                                           \
    "  --page-token HEX        start at the page this token names\n"                               \
    "  --key FILE              the reader's key file, which signs the request (default:\n"         \
    "                          the patient's, or the grantee's, when given as a key file)\n"       \
    "  --passphrase-file FILE  its passphrase (else $EHR_PASSPHRASE, else a prompt)\n"
/* --fhir, for WHAT ("Consent", "AuditEvent"). */
#define FHIR_OPTION_HELP(WHAT)                                                                     \
    "  --fhir                  every page as one FHIR R4 Bundle (type collection) of " WHAT "\n"   \
    "                          resources, JSON on stdout (not with --json or --page-token);\n"     \
    "                          the mapping is in cli/README.md, \"FHIR R4 export\"\n"
/* Help for the commands that submit a transaction and may wait for it. */
#define SUBMIT_OPTIONS_HELP                                                                        \
    "  --chain-id ID           the chain (default: the node's, from GetStatus)\n"                  \
    "  --expiry-s N            the transaction expires N s from now (default 300, max\n"           \
    "                          604800)\n"                                                          \
    "  --wait                  answer once the transaction is in a committed block, with\n"        \
    "                          its height, position and result (within --timeout-ms)\n"
#define SUBMIT_RESULT_HELP                                                                         \
    "\nWith --wait the result the consent contract's rules gave when the block was\n"              \
    "applied is printed: OK, or a refusal code and its reason; for an access request\n"            \
    "the decision (permit or deny, why), the consent that permitted it and the policy\n"           \
    "gas. A deny is an OK result (exit 0: check the decision). A refusal exits 11 with\n"          \
    "one line on stderr: the transaction is on the ledger and changed nothing.\n"

/* Help for the commands that sign their transaction with one key file. */
#define SIGNER_OPTIONS_HELP(WHO)                                                                   \
    "  --key FILE              " WHO "'s key file (its signing key signs)\n"                       \
    "  --passphrase-file FILE  its passphrase (else $EHR_PASSPHRASE, else a prompt)\n"
#define BUILT_TX_EXIT_HELP                                                                         \
    SUBMIT_RESULT_HELP NODE_EXIT_HELP                                                              \
        "Exit 11: the transaction committed, but its result is a refusal. Bad input (a\n"          \
        "missing option, bad hex, an unknown name) is exit 2 before anything is sent.\n"
/* One text for `records` and its alias `record list`, `consents` and `consent list`. */
#define RECORDS_SYNOPSIS                                                                           \
    "PATIENT [--type TYPE] [--key FILE] [--limit N] [--all] [--page-token HEX] [--node HOST:PORT]"
#define RECORDS_DETAILS                                                                            \
    "PATIENT: 64 hex digits or a key file. A signed read: the patient sees every record, a\n"      \
    "member (or its practitioner) those it is custodian of or a current consent it holds\n"        \
    "covers. One line per record, by type then anchoring\n"                                        \
    "order: the record id (for an access request), type, height/position and time of its\n"        \
    "anchor, the custodian, and what it supersedes or is superseded by (ListRecords).\n\n"         \
    "options:\n"                                                                                   \
    "  --type TYPE             only this record type (lab_result, imaging, ...)\n"                 \
    "" QUERY_OPTIONS_HELP NODE_OPTIONS_HELP NODE_EXIT_HELP
#define CONSENTS_SYNOPSIS                                                                          \
    "(--patient KEY | --grantee KEY) [--fhir] [--key FILE] [--limit N] [--all] "                   \
    "[--page-token HEX] [--node HOST:PORT]"
#define CONSENTS_DETAILS                                                                           \
    "KEY: 64 hex digits or a key file. A signed read: by the patient (--patient), or by\n"         \
    "the grantee (--grantee). One line per consent: its id (for a revoke), the\n"                  \
    "patient, the grantee, purpose, scope (record types, record ids), period, policy\n"            \
    "size, where granted and, once revoked, where (ListConsents).\n\n"                             \
    "options:\n"                                                                                   \
    "  --patient KEY           the consents this patient granted\n"                                \
    "  --grantee KEY           the consents held by a member or a practitioner\n"                  \
    "" FHIR_OPTION_HELP("Consent") QUERY_OPTIONS_HELP NODE_OPTIONS_HELP NODE_EXIT_HELP

static const struct cli__command commands[] = {
    {"keygen",
     "--out FILE [--label TEXT] [--passphrase-file FILE | --no-passphrase] [--kdf PROFILE] "
     "[--force]",
     "Create an identity (signing + X25519 key) in a new key file.",
     "options:\n"
     "  --out FILE              the key file to write; never replaced unless --force\n"
     "  --label TEXT            a short printable-ASCII label stored in clear (max 64 bytes)\n"
     "  --passphrase-file FILE  read the passphrase from the first line of FILE; without it\n"
     "                          $EHR_PASSPHRASE, else a prompt (twice) on the terminal\n"
     "  --no-passphrase         store the secrets under the empty passphrase (test networks;\n"
     "                          the file's mode is then its only protection)\n"
     "  --kdf PROFILE           argon2id cost: interactive (default), moderate, sensitive\n"
     "  --force                 replace an existing FILE\n",
     cli__cmd_keygen},
    {"patient keygen",
     "--out FILE [--label TEXT] [--passphrase-file FILE | --no-passphrase] [--kdf PROFILE] "
     "[--force]",
     "A patient's signing and X25519 keys in one new passphrase-protected key file.",
     "The same file as `keygen` makes, on the patient's device: its signing key signs the\n"
     "patient's consents and reads, its secret derives the delegating key of each record\n"
     "type. Options as `keygen`.\n",
     cli__cmd_keygen},
    {"key show", "FILE", "Show a key file's label and public keys (no passphrase).", NULL,
     cli__cmd_key_show},
    {"key receiving-key", "FILE [--passphrase-file FILE]",
     "Print the key a patient's grant re-encrypts to (consent grant --receiving-key).",
     "A grantee (a member's node key file or a practitioner's) hands this public key to\n"
     "the patients who grant it access: the key fragments of a grant re-encrypt record\n"
     "keys to it. Derived one-way from the key file's X25519 secret (crypto/PRE.md,\n"
     "\"Receiving keys\"), so it needs the passphrase. JSON: receiving_key.\n\n"
     "options:\n"
     "  --passphrase-file FILE  the passphrase (else $EHR_PASSPHRASE, else a prompt)\n",
     cli__cmd_key_receiving_key},
    {"key passwd",
     "FILE [--passphrase-file FILE] [--new-passphrase-file FILE | --no-passphrase] [--kdf "
     "PROFILE]",
     "Re-encrypt a key file under a new passphrase.",
     "options:\n"
     "  --passphrase-file FILE      the current passphrase (else $EHR_PASSPHRASE, else a prompt)\n"
     "  --new-passphrase-file FILE  the new passphrase (else $EHR_NEW_PASSPHRASE, else a\n"
     "                              prompt, twice)\n"
     "  --no-passphrase             the new passphrase is empty (test networks only)\n"
     "  --kdf PROFILE               argon2id cost for the new file: interactive (default),\n"
     "                              moderate, sensitive\n",
     cli__cmd_key_passwd},
    {"genesis",
     "(--members FILE.json | --member FILE...) --chain-id ID --out FILE [--time-ms MS] "
     "[--emergency-roles LIST] [--force]",
     "Write a genesis file from the founding members' entries.",
     "options:\n"
     "  --member FILE        one member's entry, as `ehrctl genesis member` prints it;\n"
     "                       repeat it for each founding member, in order\n"
     "  --members FILE.json  instead, all of them in one file: {\"members\": [{\"name\",\n"
     "                       \"role\", \"node_key\", \"kx_key\", \"address\"}, ...]}; role is\n"
     "                       hospital, lab, pharmacy, insurer or regulator; keys are 64 hex\n"
     "                       digits; address is HOST:PORT (a host name or an IP address)\n"
     "  --chain-id ID        1-64 characters from A-Z a-z 0-9 . _ -\n"
     "  --out FILE           the genesis file to write; never replaced unless --force\n"
     "  --time-ms MS         genesis time in ms since the Unix epoch (default: now)\n"
     "  --emergency-roles LIST\n"
     "                       the member roles that may use emergency (\"break-glass\")\n"
     "                       access, comma-separated: clinical roles only (hospital, lab,\n"
     "                       pharmacy); default none: nobody may on this chain\n"
     "  --force              replace an existing FILE\n",
     cli__cmd_genesis_create},
    {"genesis show", "FILE", "Check a genesis file and show its contents.", NULL,
     cli__cmd_genesis_show},
    {"genesis member", "--key FILE --name NAME --role ROLE --address HOST:PORT",
     "Print a genesis member entry (JSON) for a key file.", NULL, cli__cmd_genesis_member},
    {"ledger init", "--genesis FILE --data DIR",
     "Create a node's ledger (block 0) from a genesis file.",
     "options:\n"
     "  --genesis FILE  the genesis file (ehrctl genesis writes one)\n"
     "  --data DIR      the node's data directory (default $EHR_DATA); created with mode\n"
     "                  0700 if missing. Running it again with the same genesis changes\n"
     "                  nothing; a directory holding another chain is refused.\n",
     cli__cmd_ledger_init},
    {"ledger verify", "--data DIR [--threads N]",
     "Re-check the whole chain: hash links, Merkle roots, every signature.",
     "options:\n"
     "  --data DIR     the node's data directory (default $EHR_DATA), opened read-only\n"
     "  --threads N    threads checking signatures: 0 (default) one per CPU, else 1-16\n"
     "\nPrints one line, \"ledger ok: ...\" (exit 0) or \"ledger FAULT: <what, where>\"\n"
     "(exit 1), on stdout; it stops at the first fault.\n",
     cli__cmd_ledger_verify},
    {"ledger status", "--data DIR", "Show a ledger's chain, tip and counts.",
     "options:\n"
     "  --data DIR     the node's data directory (default $EHR_DATA), opened read-only\n",
     cli__cmd_ledger_status},
    {"backup", "--data DIR --out FILE [--force]",
     "Write a consistent copy of a node's ledger into one file, while the node runs.",
     "options:\n"
     "  --data DIR     the node's data directory (default $EHR_DATA), opened read-only:\n"
     "                 the node may keep running and appending meanwhile\n"
     "  --out FILE     the backup to write (a temporary file next to it, fsync'd, then\n"
     "                 renamed); never replaced unless --force\n"
     "  --force        replace an existing FILE\n"
     "\nThe backup holds the ledger's main store as of one committed write: blocks,\n"
     "write log, chain info and tip, the Raft log; a header records the chain, the tip\n"
     "and a checksum of every byte. Not in it: the tx index and world state (brought\n"
     "to the restored blocks at start), the node's key file and passphrase (back them up\n"
     "separately), the config file, the blob store (record ciphertext: the members\n"
     "replicate it and a node fetches back what it lacks). Needs free space for twice\n"
     "the ledger meanwhile.\n",
     cli__cmd_backup},
    {"backup inspect", "FILE", "Check a backup file and show its chain, tip and size.",
     "Reads the whole file and checks every byte against the header's checksum; changes\n"
     "nothing. Exit 0 when it is whole, 1 with the reason when it is not.\n",
     cli__cmd_backup_inspect},
    {"restore", "--from FILE --data DIR [--force]",
     "Restore a backup into a stopped node's data directory.",
     "options:\n"
     "  --from FILE     the backup (ehrctl backup writes one)\n"
     "  --data DIR      the node's data directory (default $EHR_DATA); ehrd must not be\n"
     "                  running there (its lock is taken for the whole restore)\n"
     "  --force         replace a ledger that is ahead of the backup\n"
     "\nRefused: a directory without a readable Raft hard state (a lost or wiped disk:\n"
     "that node rejoins as a new member, docs/OPERATIONS.md), a backup that fails its\n"
     "checksum, of another chain, or older than the ledger in DIR (unless --force; both\n"
     "applied indexes are named). The swap is crash-safe: DIR holds the old ledger or the\n"
     "restored one, whole. The Raft hard state written has a term R above every term the\n"
     "node knew, no vote, and restore term R: the node votes and campaigns again only\n"
     "once it holds a committed entry of term R (ehrctl status shows \"restoring\").\n"
     "The key file and the config are kept. Restore one node at a time: until it catches\n"
     "up, a restored voter counts as lost. When ehrd starts it brings the tx index and\n"
     "world state to the restored ledger (remove derived.mdb too, after damage to them,\n"
     "and they are rebuilt whole) and catches up from its peers. Not for a data.mdb an\n"
     "older copy replaced: its Raft term is older than the node's; rejoin as a new member.\n",
     cli__cmd_restore},
    {"block show", "HEIGHT (--data DIR | --node HOST:PORT)",
     "Show a block's header and its transactions.",
     "From a ledger directory (--data) or from a running node (--node, GetBlock); the\n"
     "output is the same. Without either: $EHR_DATA, else $EHR_NODE.\n\n"
     "options:\n"
     "  --data DIR              the node's data directory, opened read-only\n" NODE_OPTIONS_HELP
         NODE_EXIT_HELP,
     cli__cmd_block_show},
    {"tx show", "HASH (--data DIR | --node HOST:PORT)",
     "Show a transaction: where it is and what it says.",
     "HASH is the transaction's id, 64 hex digits. From a ledger directory (--data) or\n"
     "from a running node (--node: GetTransaction, and the block it names, checked to\n"
     "hold it); the output is the same. Without either: $EHR_DATA, else $EHR_NODE.\n\n"
     "options:\n"
     "  --data DIR              the node's data directory, opened read-only\n" NODE_OPTIONS_HELP
         NODE_EXIT_HELP,
     cli__cmd_tx_show},
    {"init",
     "--genesis FILE --key FILE --data DIR --peer-listen HOST:PORT --rpc-listen HOST:PORT "
     "[--join NODE] [--config OUT] [--passphrase-file FILE] [--force]",
     "Create a node's data directory: ledger, key copy, config file (--join: a new member).",
     "options:\n"
     "  --genesis FILE          the chain's genesis file (ehrctl genesis writes it)\n"
     "  --key FILE              this node's key file; its signing key must be a founding\n"
     "                          member of the genesis (or, with --join, a member now);\n"
     "                          copied to DIR/node.key (mode 0600)\n"
     "  --join NODE             join the running chain: HOST:PORT of a running node's API;\n"
     "                          its block 0 must be this genesis's; the chain's members\n"
     "                          and tip are read from it into DIR/join.pb, and the node\n"
     "                          catches up from the leader when it starts\n"
     "  --timeout-ms MS         deadline of each call to NODE (default 10000)\n"
     "  --data DIR              the data directory, created with mode 0700; must be absent\n"
     "                          or empty unless --force\n"
     "  --peer-listen HOST:PORT where the node listens for its peers\n"
     "  --rpc-listen HOST:PORT  where the node serves the gRPC API\n"
     "  --config OUT            the node's config file (default DIR/ehrd.json)\n"
     "  --passphrase-file FILE  the key's passphrase (else $EHR_PASSPHRASE, else a prompt);\n"
     "                          recorded in the config for the node\n"
     "  --force                 re-run on an initialised DIR: rewrite node.key and the\n"
     "                          config, keep the ledger if it is this genesis's chain\n",
     cli__cmd_init},
    {"status", "[--wait-leader S] [--node HOST:PORT]",
     "Show a running node's view of itself and the cluster.",
     "Node id and name, Raft role, term and leader, commit and applied index, tip height\n"
     "and hash, chain id, mempool, CPU time, and each peer with its link state and\n"
     "match index (GetStatus).\n\n"
     "options:\n"
     "  --wait-leader S         first wait up to S seconds (1-600) for the node to answer\n"
     "                          and name a leader (a node just started, an election);\n"
     "                          exit 6 if it does not\n" NODE_OPTIONS_HELP NODE_EXIT_HELP,
     cli__cmd_status},
    {"tx submit",
     "(--payload FILE.json --key FILE | --envelope FILE) [--chain-id ID] [--expiry-s N] "
     "[--wait] [--node HOST:PORT]",
     "Sign a transaction and submit it to a node; prints its hash (and result).",
     "options:\n"
     "  --payload FILE.json     one payload of tx.proto's oneof by its field name, e.g.\n"
     "                          {\"consent_revoke\": {\"grant_id\": \"<64 hex>\"}}; bytes in hex,\n"
     "                          strings as strings, integers as numbers, enums by name;\n"
     "                          unknown keys are refused (exit 2, nothing sent)\n"
     "  --key FILE              the key file to sign with (its signing key is the signer)\n"
     "  --passphrase-file FILE  the key's passphrase (else $EHR_PASSPHRASE, else a\n"
     "                          prompt)\n" SUBMIT_OPTIONS_HELP
     "  --envelope FILE         submit this serialized, signed TxEnvelope as is instead\n"
     "" NODE_OPTIONS_HELP
     "\nA random 16-byte nonce makes each submission a new transaction. The checks a node\n"
     "makes on admission (size, chain id, expiry, signature) are made first; what fails\n"
     "them is not sent. A patient enrolment needs the patient's co-signature: ehrctl\n"
     "patient enroll builds it.\n" SUBMIT_RESULT_HELP NODE_EXIT_HELP
     "Exit 11: the transaction committed, but its result is a refusal.\n",
     cli__cmd_tx_submit},
    {"patient enroll",
     "(--patient FILE | --patient-public HEX --patient-kx HEX --patient-signature HEX) "
     "--key FILE [--wait] [--node HOST:PORT]",
     "Enrol a patient: the member's transaction with the patient's co-signature.",
     "The enrolling member signs with --key; the patient co-signs the enrolment for this\n"
     "chain and this member (contracts/README.md, \"Who may sign what\"). Either the\n"
     "patient's key file is here (--patient), or the patient signed on their own device\n"
     "with `ehrctl patient consent-to-enroll` and gave the three values it prints.\n\n"
     "options:\n"
     "  --patient FILE          the patient's key file\n"
     "  --patient-passphrase-file FILE\n"
     "                          its passphrase (else $EHR_PATIENT_PASSPHRASE, else a prompt)\n"
     "  --patient-public HEX    the patient's signing key (64 hex digits)\n"
     "  --patient-kx HEX        the patient's X25519 key (64 hex digits)\n"
     "  --patient-signature HEX the patient's co-signature (128 hex digits)\n"
     "  --key FILE              the enrolling member's key file (its node key)\n"
     "  --passphrase-file FILE  its passphrase (else $EHR_PASSPHRASE, else a\n"
     "                          prompt)\n" SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP SUBMIT_RESULT_HELP
         NODE_EXIT_HELP "Exit 11: the transaction committed, but its result is a refusal.\n",
     cli__cmd_patient_enroll},
    {"patient consent-to-enroll", "--patient FILE --enroller KEY --chain-id ID",
     "Co-sign a patient's enrolment by a member, on the patient's device.",
     "Prints the patient's co-signature (128 hex digits; --json adds the patient's public\n"
     "keys) for `ehrctl patient enroll --patient-public ... --patient-kx ...\n"
     "--patient-signature ...` run by the member. It binds the chain and the member: it\n"
     "is good for no other. Nothing is sent anywhere.\n\n"
     "options:\n"
     "  --patient FILE          the patient's key file\n"
     "  --passphrase-file FILE  its passphrase (else $EHR_PASSPHRASE, else a prompt)\n"
     "  --enroller KEY          the enrolling member's node key: 64 hex digits, or its key\n"
     "                          file (only the public part is read)\n"
     "  --chain-id ID           the chain the member enrols on (ehrctl status shows it)\n",
     cli__cmd_patient_consent},
    {"blocks follow", "[--from HEIGHT] [--count N] [--node HOST:PORT]",
     "Print each block as the node commits it, one line per block.",
     "Each line: height, hash, transaction count, time, proposer; --json prints one JSON\n"
     "object per line. Runs until interrupted (^C: exit 0) or the node ends the stream.\n\n"
     "options:\n"
     "  --from HEIGHT           the first block (default: the node's tip + 1, new blocks\n"
     "                          only; 0 replays the chain)\n"
     "  --count N               stop after N blocks\n" NODE_OPTIONS_HELP
     "                          (--timeout-ms bounds connecting only)\n" NODE_EXIT_HELP,
     cli__cmd_blocks_follow},
    {"audit",
     "PATIENT [--emergency] [--fhir] [--key FILE] [--limit N] [--all] [--page-token HEX] "
     "[--node HOST:PORT]",
     "A patient's audit trail: every enrolment, anchor, grant, revoke and access.",
     "PATIENT is the patient's key: 64 hex digits, or a key file. A signed read, by the\n"
     "patient or a regulator (--key; by default the patient's key file). One line per\n"
     "event, in chain order: height/position, time (UTC), kind, who acted\n"
     "(a member by name, from the node's status; \"patient\"; a practitioner and\n"
     "its member), then the record, consent, purpose, decision and reason that apply.\n"
     "An emergency access is marked with ! at the start of its line (GetAuditTrail).\n\n"
     "options:\n"
     "  --emergency             only the emergency accesses\n" FHIR_OPTION_HELP("AuditEvent")
         QUERY_OPTIONS_HELP NODE_OPTIONS_HELP NODE_EXIT_HELP,
     cli__cmd_audit},
    {"records", RECORDS_SYNOPSIS, "A patient's records: id, type, custodian, where anchored.",
     RECORDS_DETAILS, cli__cmd_records},
    {"record list", RECORDS_SYNOPSIS, "The same as `records`.", RECORDS_DETAILS, cli__cmd_records},
    {"consents", CONSENTS_SYNOPSIS, "Consents a patient granted, or consents a grantee holds.",
     CONSENTS_DETAILS, cli__cmd_consents},
    {"consent list", CONSENTS_SYNOPSIS, "The same as `consents`.", CONSENTS_DETAILS,
     cli__cmd_consents},
    {"practitioner add",
     "(--practitioner FILE | --practitioner-public HEX) --key FILE [--wait] [--node HOST:PORT]",
     "Register a practitioner's key as acting for the signing member.",
     "The member (--key, its node key) registers the practitioner's key: the practitioner\n"
     "then acts for the member, with the member's institution and role (there is no role\n"
     "of its own to give). Only the public key is needed: --practitioner reads it from the\n"
     "practitioner's key file without a passphrase.\n\n"
     "options:\n"
     "  --practitioner FILE     the practitioner's key file (or 64 hex digits)\n"
     "  --practitioner-public HEX\n"
     "                          the practitioner's signing key, 64 hex digits\n"
     "" SIGNER_OPTIONS_HELP("the member") SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_practitioner_add},
    {"practitioner remove",
     "(--practitioner FILE | --practitioner-public HEX) --key FILE [--wait] [--node HOST:PORT]",
     "Remove a practitioner the signing member registered.",
     "Only the member that registered the practitioner removes it.\n\n"
     "options:\n"
     "  --practitioner FILE     the practitioner's key file (or 64 hex digits)\n"
     "  --practitioner-public HEX\n"
     "                          the practitioner's signing key, 64 hex digits\n"
     "" SIGNER_OPTIONS_HELP("the member") SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_practitioner_remove},
    {"record anchor",
     "(--patient FILE | --patient-public HEX) --type TYPE (--pointer HEX | --pointer-text STR) "
     "(--hash HEX [--size N] | --file FILE) [--supersedes RECORD_ID] --key FILE [--wait] "
     "[--node HOST:PORT]",
     "Anchor an encrypted record kept off the ledger; prints its record id.",
     "The custodian (--key, a member's node key) anchors a record of an enrolled patient:\n"
     "its type, an encrypted pointer to the ciphertext, and the ciphertext's SHA-256 and\n"
     "size. The record id is the transaction's hash (printed first; JSON record_id): an\n"
     "access request and a consent name it. Nothing is encrypted here: the pointer and\n"
     "the file are taken as already sealed, and go on the ledger as given.\n\n"
     "options:\n"
     "  --patient FILE          the patient's key file (public part only; or 64 hex digits)\n"
     "  --patient-public HEX    the patient's signing key, 64 hex digits\n"
     "  --type TYPE             imaging, lab_result, prescription, discharge_summary,\n"
     "                          clinical_note, immunization, invoice, claim, genomic\n"
     "  --pointer HEX           the encrypted pointer (blob id, URL, CID, sealed), 1-1024\n"
     "                          bytes as hex\n"
     "  --pointer-text STR      the same given as text (its bytes as they are: an opaque\n"
     "                          reference, never a plain location of a patient's data)\n"
     "  --hash HEX              SHA-256 of the ciphertext, 64 hex digits\n"
     "  --size N                the ciphertext's size in bytes (with --hash; default 0)\n"
     "  --file FILE             the encrypted file: its SHA-256 and size are computed\n"
     "  --supersedes RECORD_ID  the earlier record (same custodian and patient) this one\n"
     "                          amends\n"
     "" SIGNER_OPTIONS_HELP("the custodian member")
         SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_record_anchor},
    {"consent grant",
     "(--grantee HEX | --grantee-key FILE) --purpose P [--type T]... [--record ID]... "
     "[--from DATE] [--until DATE] [--policy FILE] [--receiving-key HEX [--threshold T]] "
     "--key PATIENT.key [--wait] [--node HOST:PORT]",
     "The patient grants a member or practitioner access; prints the consent id.",
     "Signed by the patient (--key, the patient's key file). The consent covers the record\n"
     "types and/or the records named (at least one; up to 64 of each), for one purpose,\n"
     "in the period [--from, --until) of block time. The consent id is the transaction's\n"
     "hash (printed first; JSON consent_id): consent revoke names it.\n\n"
     "options:\n"
     "  --grantee HEX           the grantee's signing key: a member's node key (covering its\n"
     "                          practitioners) or a practitioner's, 64 hex digits\n"
     "  --grantee-key FILE      the same from the grantee's key file (public part only)\n"
     "  --purpose P             treatment, payment, operations, research, public_health,\n"
     "                          emergency\n"
     "  --type T                a record type covered (repeat for more)\n"
     "  --record ID             a record covered, by its id (repeat for more)\n"
     "  --from DATE             the start: YYYY-MM-DD (UTC midnight) or ms since the epoch\n"
     "                          (default: no start)\n"
     "  --until DATE            the end, excluded (default 9999-12-31: no end)\n"
     "  --policy FILE           a policy that must also permit each access: source, compiled\n"
     "                          here (a compile error is FILE:LINE:COLUMN: message, exit 2),\n"
     "                          or a program `policy compile --out` wrote\n"
     "  --receiving-key HEX     the grantee's receiving key (ehrctl key receiving-key): the\n"
     "                          grant carries key fragments of the one --type's delegating\n"
     "                          key for it, one per member, each sealed to the member's node\n"
     "  --threshold T           nodes needed to open a record (default: a majority of the\n"
     "                          members; 1 to the members' count)\n"
     "" SIGNER_OPTIONS_HELP("the patient") SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_consent_grant},
    {"consent revoke", "CONSENT_ID --key PATIENT.key [--wait] [--node HOST:PORT]",
     "The patient revokes a consent they granted.",
     "Signed by the patient who granted it; an access request ordered after the revoke is\n"
     "decided without the consent.\n\n"
     "options:\n"
     "" SIGNER_OPTIONS_HELP("the patient") SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_consent_revoke},
    {"record erase", "RECORD_ID [--ground G] --key PATIENT.key [--wait] [--node HOST:PORT]",
     "The patient erases one of their records (crypto-shredding).",
     "Signed by the record's patient (--key, the patient's key file). Once the erase\n"
     "commits, every node refuses the record's ciphertext (GetBlob), its capsule\n"
     "fragments and any new access request (a DENY, audited), and deletes its copy of\n"
     "the ciphertext; `records` and `record show` mark it ERASED and `record get` fails.\n"
     "The anchor and the audit trail stay on the ledger, and so do the copies a grantee\n"
     "already opened (docs/DESIGN.md, \"Erasure\", says what erasure does and does not\n"
     "achieve). Once per record.\n\n"
     "options:\n"
     "  --ground G              why, a code (never free text, the ledger keeps it):\n"
     "                          no_longer_needed, consent_withdrawn, objection, unlawful,\n"
     "                          legal_obligation (default: not stated)\n"
     "" SIGNER_OPTIONS_HELP("the patient") SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_record_erase},
    {"access request", "RECORD_ID --purpose P --key FILE [--node HOST:PORT]",
     "Ask to open a record; prints the decision (permit or deny, why).",
     "Signed by a member's node key or a registered practitioner's key; the requester's\n"
     "X25519 key (what the record key is re-encrypted to) is taken from the same key file.\n"
     "Waits for the commit (--wait is implied) and prints the decision: permit, with the\n"
     "consent that permitted it and the policy's gas, or deny, with why. A deny is a\n"
     "decided outcome: exit 0.\n\n"
     "options:\n"
     "  --purpose P             treatment, payment, operations, research, public_health,\n"
     "                          emergency: a consent for this purpose is needed\n"
     "" SIGNER_OPTIONS_HELP("the requester")
         SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_access_request},
    {"access emergency", "RECORD_ID --reason TEXT --key FILE [--node HOST:PORT]",
     "Break-glass access to a record, with a stated reason; prints the decision.",
     "Decided by the chain's genesis policy alone (the roles it names; clinical roles\n"
     "only), not by consents; always recorded, flagged, and listed first in the patient's\n"
     "audit trail. Waits for the commit (--wait is implied) and prints the decision.\n\n"
     "options:\n"
     "  --reason TEXT           why (required): 1-256 bytes of text, shown in the trail\n"
     "" SIGNER_OPTIONS_HELP("the requester")
         SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_access_emergency},
    {"record add", "FILE --patient PUBLIC_KEYS --type TYPE --key FILE [--wait] [--node HOST:PORT]",
     "Encrypt a file, store it in the node's blob store and anchor it; prints its record id.",
     "The custodian (--key, a member's node key) adds a record of an enrolled patient: the\n"
     "file is encrypted with a fresh record key (libsodium's secretstream,\n"
     "XChaCha20-Poly1305, in 64 KiB pieces: constant memory), the ciphertext's SHA-256 is\n"
     "its blob id, the ciphertext is uploaded to the node (PutBlob), and the anchor\n"
     "carries the record key encapsulated to the patient's delegating key for TYPE, the\n"
     "pointer (node, blob id) encrypted under the record key, and the ciphertext's hash\n"
     "and size. Progress on a terminal. The patient opens it (record get), and so does a\n"
     "grantee the patient's consent carries key fragments for.\n\n"
     "options:\n"
     "  --patient FILE          the patient's public keys (ehrctl patient public-keys --out)\n"
     "  --type TYPE             the record's type (its delegating key is the type's)\n"
     "" SIGNER_OPTIONS_HELP("the custodian")
         SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_record_add},
    {"record get",
     "RECORD_ID --key FILE --out FILE [--purpose P | --permit TX] [--fragment-node HOST:PORT]... "
     "[--blob-node HOST:PORT] [--node HOST:PORT]",
     "The patient or a permitted grantee opens a record: the file back, checked.",
     "A signed GetRecord gives the anchor. The patient's delegating key for the record's\n"
     "type (derived from --key) opens the record key. A grantee (a key that is not the\n"
     "patient's) asks for access (--purpose, the consent's; or names a permit it holds,\n"
     "--permit), then asks each --fragment-node (default: --node) for its capsule\n"
     "fragment, checks each proof, discards the bad ones and opens the key from a\n"
     "threshold of them. The key opens the pointer, which names the node the blob was\n"
     "uploaded to; a signed GetBlob (with the permit, for a grantee) asks it, and when it\n"
     "lacks the blob or cannot be reached, --node, then every peer --node knows (the\n"
     "members' nodes replicate blobs); --blob-node asks that node alone. It streams the\n"
     "ciphertext, whose SHA-256 and size must be the anchor's, into\n"
     "FILE.part, which becomes FILE only once all of it decrypted and checked (else it is\n"
     "removed). A deny is exit 8.\n\n"
     "options:\n"
     "  --key FILE              the patient's or the grantee's key file (required)\n"
     "  --passphrase-file FILE  its passphrase (else $EHR_PASSPHRASE, else a prompt)\n"
     "  --out FILE              where the record goes (required)\n"
     "  --purpose P             a grantee: submit an access request for P and wait for it\n"
     "  --permit TX             a grantee: the hash of a permitted access request of yours\n"
     "  --fragment-node HOST:PORT  a node to ask for a capsule fragment; repeat, up to 16\n"
     "  --blob-node HOST:PORT   fetch the blob from this node alone, not the pointer's or\n"
     "                          a replica\n"
     "" NODE_OPTIONS_HELP NODE_EXIT_HELP,
     cli__cmd_record_get},
    {"patient public-keys", "--patient FILE [--out FILE]",
     "What a custodian needs to add a patient's records: their public keys.",
     "Prints (or writes to --out) a JSON document: the patient's signing key and their\n"
     "delegating key for each record type, derived one-way from the key file's secret\n"
     "(crypto/PRE.md, \"Delegating keys\"). Public: hand it to custodians.\n\n"
     "options:\n"
     "  --patient FILE          the patient's key file (required)\n"
     "  --passphrase-file FILE  its passphrase (else $EHR_PASSPHRASE, else a prompt)\n"
     "  --out FILE              write the document here\n",
     cli__cmd_patient_public_keys},
    {"record show", "RECORD_ID --key FILE [--node HOST:PORT]",
     "One record's anchor: patient, custodian, type, pointer, ciphertext hash.",
     "RECORD_ID is the record's id (its anchor's transaction hash), 64 hex digits. A\n"
     "signed read (GetRecord), allowed as `records` allows each record it lists: the\n"
     "patient, the record's custodian (or its practitioner), or the holder of a current\n"
     "consent of the patient that covers the record. The anchoring transaction comes\n"
     "with it and is checked before anything is shown: its hash is the record id and\n"
     "the custodian signed it. Shown: the record's entry (type, custodian, where\n"
     "anchored, what it supersedes or is superseded by), the encrypted pointer, the\n"
     "ciphertext's SHA-256 and size, and the key capsule's size.\n\n"
     "options:\n"
     "  --key FILE              the reader's key file, which signs the request (required)\n"
     "  --passphrase-file FILE  its passphrase (else $EHR_PASSPHRASE, else a prompt)\n"
     "" NODE_OPTIONS_HELP NODE_EXIT_HELP,
     cli__cmd_record_show},
    {"member list", "[--node HOST:PORT]",
     "The members as the world state holds them: key, role, address, name.",
     "One line per member, in node-key order: node key, role, peer address, name; --json\n"
     "prints each as the entry `genesis member` prints (name, role, node_key, kx_key,\n"
     "address). The genesis's members, then as governance admitted and removed them\n"
     "(ListMembers, not a signed read: nothing here is a patient's).\n\n"
     "options:\n" NODE_OPTIONS_HELP NODE_EXIT_HELP,
     cli__cmd_member_list},
    {"member propose",
     "(--admit ENTRY.json | --remove NODE_KEY) --key MEMBER.key [--expires-days N] [--wait] "
     "[--node HOST:PORT]",
     "A member proposes admitting an institution or removing a member.",
     "Signed by a current member (--key, its node key); its own approval counts. The\n"
     "change is made by the approval (`member approve`) that brings approvals from more\n"
     "than half of the current members; until then nothing changes. The proposal id is\n"
     "the transaction's hash (printed first; JSON proposal_id): the others approve it.\n"
     "An admitted member is in the world state (it signs, is granted consents, reads as\n"
     "a member), every node links with it, and the leader adds its node to consensus,\n"
     "which it joins with `ehrctl init --join`; a removed member leaves consensus and\n"
     "every node refuses its links. At most 16 members.\n\n"
     "options:\n"
     "  --admit ENTRY.json      the institution to admit: its entry, as `ehrctl genesis\n"
     "                          member --key FILE --name NAME --role ROLE --address\n"
     "                          HOST:PORT` prints it\n"
     "  --remove NODE_KEY       the member to remove: its node key, 64 hex digits (or its\n"
     "                          key file); never the last member\n"
     "  --expires-days N        approvals count until N days from now, in block time\n"
     "                          (1-365, default 7)\n"
     "" SIGNER_OPTIONS_HELP("the proposing member")
         SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_member_propose},
    {"member remove", "NODE_KEY --key MEMBER.key [--expires-days N] [--wait] [--node HOST:PORT]",
     "A member proposes removing a member (as `member propose --remove NODE_KEY`).",
     "The proposal `member propose --remove` makes, NODE_KEY first: the others approve it\n"
     "with `member approve`; the approval that brings more than half of the current\n"
     "members removes it. Options as `member propose`.\n",
     cli__cmd_member_remove},
    {"member approve", "PROPOSAL_ID --key MEMBER.key [--wait] [--node HOST:PORT]",
     "A member approves a membership proposal; a majority makes the change.",
     "Signed by a current member other than those that approved already. The approval\n"
     "that brings approvals from more than half of the current members admits or removes\n"
     "the member (`member list` then shows it); an approval after the proposal expired,\n"
     "or once it was carried, is refused (exit 10, or 11 with --wait).\n\n"
     "options:\n"
     "" SIGNER_OPTIONS_HELP("the approving member")
         SUBMIT_OPTIONS_HELP NODE_OPTIONS_HELP BUILT_TX_EXIT_HELP,
     cli__cmd_member_approve},
    {"bench",
     "--key FILE... [--node HOST:PORT]... [--workload domain|anchors|both] [--txs N] "
     "[--inflight K] [--rate R] [--warmup-s S] [--timeout-ms N] [--tls-ca FILE]",
     "Measure a cluster: committed transactions per second, latency, CPU per node.",
     "First a setup, not measured: fresh patients (one per 100 transactions, 16 to 4096)\n"
     "enrolled by the members whose keys are given, then a record anchored and a consent\n"
     "granted for each. Then each workload: N transactions signed before the clock\n"
     "starts, submitted with wait_for_commit over one HTTP/2 connection per node,\n"
     "round-robin over the nodes, K in flight:\n"
     "  domain   40% record anchors, 10% consent grants, 25% access requests the rules\n"
     "           permit (the consent's grantee, for treatment) and 25% they deny (for\n"
     "           research, which no consent covers)\n"
     "  anchors  record anchors only, ~280-byte envelopes: the earlier benchmark's load\n"
     "Every committed transaction's result is checked against what the rules must give;\n"
     "a refusal or another decision is counted and named, and exits 1. A transaction\n"
     "answered UNAVAILABLE (no leader, leader changed) or throttled (RESOURCE_EXHAUSTED\n"
     "with a retry hint: the node's per-client rate) is sent again after a short pause;\n"
     "retries are counted apart and a transaction is counted once, by its final outcome.\n\n"
     "options:\n"
     "  --key FILE              a member's key file (its node key signs enrolments, anchors\n"
     "                          and access requests); repeat for more members, up to 16\n"
     "  --passphrase-file FILE  their passphrase (else $EHR_PASSPHRASE, else a prompt each)\n"
     "  --node HOST:PORT        a node to submit to; repeat for more (default $EHR_NODE,\n"
     "                          else " CLI_NODE_DEFAULT ")\n"
     "  --workload W            domain, anchors or both (default both, domain first)\n"
     "  --txs N                 transactions per workload (default 10000, max 1000000)\n"
     "  --inflight K            submissions in flight (default 64, max 4096)\n"
     "  --rate R                open loop: start at most R tx/s (default: as fast as the\n"
     "                          in-flight limit allows); latency then counts from each\n"
     "                          transaction's scheduled start, so client queueing shows\n"
     "  --warmup-s S            leave the first S seconds of each workload out of its\n"
     "                          measured window (default 0)\n"
     "  --timeout-ms N          deadline of each submission (default 30000)\n"
     "  --tls-ca FILE           every connection over TLS, the nodes' certificates checked\n"
     "                          against this CA (default $EHR_TLS_CA); --tls-cert FILE and\n"
     "                          --tls-key FILE for nodes that ask for a client certificate\n"
     "\nReport, per workload: submitted, committed, failed by status, retries, results\n"
     "(as expected, refused, decided otherwise), committed tx/s over the measured window\n"
     "(from the end of the warm-up to the last answer), commit latency p50/p99/max in ms\n"
     "(send to committed answer), and each node's CPU over the window from GetStatus's\n"
     "cpu_user_ms + cpu_system_ms: % of one core, and us per committed transaction.\n"
     "Exit 0 when every transaction committed with its expected result, 1 otherwise\n"
     "(the setup failing stops the bench there).\n",
     cli__cmd_bench},
    {"policy compile", "FILE [--out FILE] [--force]",
     "Compile a consent policy to VM bytecode; print its size and hex.",
     "FILE holds rules, one per line, tried in order; the first whose condition holds\n"
     "decides, and none denies:\n"
     "  # insurers see invoices and claims until mid-2027\n"
     "  permit if requester.role == insurer and record.type in [invoice, claim] and\n"
     "      block.time < 2027-06-30      (one line in the file)\n"
     "  deny if record.type == genomic\n"
     "The grammar, attributes, names and limits: contracts/README.md.\n\n"
     "options:\n"
     "  --out FILE    write the bytecode to FILE (mode 0644); never replaced unless --force\n"
     "  --force       replace an existing --out FILE\n"
     "\nA compile error is one line `FILE:LINE:COLUMN: message` on stderr, exit 1; nothing\n"
     "is written.\n",
     cli__cmd_policy_compile},
    {"policy show", "FILE", "List a consent policy's bytecode and check it with the verifier.",
     "FILE is a compiled program (as `policy compile --out` writes it) or a policy source,\n"
     "compiled first. Prints the size, the verifier's verdict and the listing: offsets,\n"
     "mnemonics, attribute names, codes and times annotated with their names and dates,\n"
     "jump targets. Exit 0 when the program verifies, 1 when it does not (the verdict\n"
     "names the offset).\n",
     cli__cmd_policy_show},
    {"policy eval", "FILE --request REQUEST.json [--gas N]",
     "Run a consent policy on a described request: the decision, the reason, the gas.",
     "FILE is a compiled program or a policy source (compiled first); it must verify.\n"
     "REQUEST.json gives every attribute of the request by its policy name, nothing else:\n"
     "  {\"requester.key\": \"<64 hex>\", \"requester.role\": \"insurer\",\n"
     "   \"requester.institution\": \"<64 hex>\", \"requester.practitioner\": false,\n"
     "   \"record.type\": \"claim\", \"record.custodian\": \"<64 hex>\",\n"
     "   \"record.age_days\": 40, \"consent.purpose\": \"payment\",\n"
     "   \"request.purpose\": \"payment\", \"consent.from\": \"2027-01-01\",\n"
     "   \"consent.until\": \"2028-01-01\", \"block.time\": 1803859200000}\n"
     "Roles, record types and purposes by name or code; times as YYYY-MM-DD (UTC\n"
     "midnight) or ms since the epoch.\n\n"
     "options:\n"
     "  --request FILE  the request (required)\n"
     "  --gas N         the gas limit (default 1024, enough for any program; max 1048576)\n"
     "\nexit status: 0 if and only if the program permits; 1 when it denies (the decision\n"
     "on stdout: a deny rule, no rule matched, out of gas) or on a failure (one line on\n"
     "stderr, nothing on stdout); 2 usage error.\n",
     cli__cmd_policy_eval},
    {"help", "[COMMAND]", "Show the commands, or one command's help.", NULL, cmd_help},
};

/* How many leading words of ARGV match NAME's words; 0 if not all of them do. */
static int command_match(const char *name, int argc, char **argv)
{
    int words = 0;
    const char *p = name;
    while (*p != '\0') {
        size_t len = strcspn(p, " ");
        if (words >= argc || strlen(argv[words]) != len || memcmp(argv[words], p, len) != 0)
            return 0;
        words++;
        p += len;
        p += *p == ' ';
    }
    return words;
}

/* The command matching the most leading words of ARGV, with their count in *WORDS. */
static const struct cli__command *command_find(int argc, char **argv, int *words)
{
    const struct cli__command *best = NULL;
    *words = 0;
    for (size_t i = 0; i < EHR_ARRAY_COUNT(commands); i++) {
        int n = command_match(commands[i].name, argc, argv);
        if (n > *words) {
            best = &commands[i];
            *words = n;
        }
    }
    return best;
}

/* The longest command name, for the overview's column. */
static int name_column(void)
{
    size_t longest = 0;
    for (size_t i = 0; i < EHR_ARRAY_COUNT(commands); i++) {
        size_t len = strlen(commands[i].name);
        longest = len > longest ? len : longest;
    }
    return (int)longest;
}

static void print_overview(FILE *out)
{
    fprintf(out, "usage: ehrctl COMMAND [ARGS...] [--json]\n       ehrctl --version\n\n"
                 "Operate an ehrchain network: identities and key files, the genesis file, a\n"
                 "node's ledger and data directory, and running nodes over their gRPC API.\n\n"
                 "commands:\n");
    for (size_t i = 0; i < EHR_ARRAY_COUNT(commands); i++)
        fprintf(out, "  %-*s  %s\n", name_column(), commands[i].name, commands[i].summary);
    fprintf(out, "\n`ehrctl COMMAND --help` shows a command's options. Human output by default,\n"
                 "--json for scripts. Exit status: 0 success, 1 the operation failed (reason on\n"
                 "stderr), 2 usage error; commands that talk to a node exit 3-10 for the gRPC\n"
                 "statuses a caller acts on, and 11 for a transaction committed with a refusal\n"
                 "(see their --help).\n");
}

static int cmd_help(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0)
        EHR_ASSERT(0 && "help takes no options of its own");
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind >= argc) {
        print_overview(stdout);
        return CLI_EXIT_OK;
    }
    int words;
    const struct cli__command *command = command_find(argc - optind, argv + optind, &words);
    if (command == NULL || optind + words != argc)
        return cli__usage_error(ctx, "no command \"%s\"", argv[optind]);
    cli__command_help(command);
    return CLI_EXIT_OK;
}

/* Name the commands that start with ARGV[0], for `ehrctl key` and similar. */
static bool print_group(const char *group)
{
    bool any = false;
    size_t len = strlen(group);
    for (size_t i = 0; i < EHR_ARRAY_COUNT(commands); i++) {
        if (strncmp(commands[i].name, group, len) == 0 && commands[i].name[len] == ' ') {
            if (!any)
                fprintf(stderr, "ehrctl: \"%s\" needs one of:\n", group);
            fprintf(stderr, "  ehrctl %-*s  %s\n", name_column(), commands[i].name,
                    commands[i].summary);
            any = true;
        }
    }
    return any;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "ehrctl: no command given\n");
        print_overview(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_overview(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("ehrctl %s\n", ehr_version());
        return CLI_EXIT_OK;
    }
    int words;
    const struct cli__command *command = command_find(argc - 1, argv + 1, &words);
    if (command == NULL) {
        if (!print_group(argv[1]))
            fprintf(stderr, "ehrctl: no command \"%s\"%s (ehrctl help lists them)\n", argv[1],
                    argv[1][0] == '-' ? "; options go after the command" : "");
        return CLI_EXIT_USAGE;
    }
    if (ehr_crypto_init() != 0) {
        fprintf(stderr, "ehrctl: cannot initialise the crypto libraries\n");
        return CLI_EXIT_FAIL;
    }
    /* A node that closes the connection while we write must give an error
     * we can report, not kill us silently (libuv writes with write(2)). A
     * reader of our stdout that goes away (`| head`) ends the command too:
     * the failed write is noticed and the command stops quietly. */
    signal(SIGPIPE, SIG_IGN);
    struct cli__ctx ctx = {.command = command};
    /* The command sees its own name as argv[0] and its arguments after it. */
    int sub_argc = argc - words;
    char **sub_argv = argv + words;
    sub_argv[0] = (char *)command->name;
    optind = 0; /* glibc: a full getopt reset */
    int rc = command->run(&ctx, sub_argc, sub_argv);
    if (rc == CLI_EXIT_HELP_SHOWN)
        rc = CLI_EXIT_OK;
    EHR_ASSERT(rc >= 0);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno != EPIPE) /* a reader that left needs no message */
            fprintf(stderr, "ehrctl: write to stdout failed: %s\n", strerror(errno));
        return CLI_EXIT_FAIL;
    }
    return rc;
}
