/*
 * cmd_patient.c - enrolling a patient: `ehrctl patient enroll` (a member
 * enrols a patient; the patient co-signs) and `ehrctl patient
 * consent-to-enroll` (the patient's co-signature alone, made on the
 * patient's own device for a member who enrols them later).
 *
 * The co-signature (contracts.h, contracts_enroll_message) is a BIP-340
 * signature by the patient's key over SHA-256 of a tag, the chain id, the
 * enrolling member's node key and the patient's two public keys: it binds
 * the chain and the member, so it cannot be replayed on another chain or by
 * another member. Every node checks it when the enrolment is applied, and
 * the leader checks it at submission (a bad one is FAILED_PRECONDITION).
 *
 * Two ways to enrol:
 *   - one place holds both key files: `patient enroll --patient P.key --key
 *     MEMBER.key` opens both (each with its own passphrase source), signs
 *     both parts and submits;
 *   - two devices: the patient runs `patient consent-to-enroll --patient
 *     P.key --enroller MEMBER --chain-id ID` and hands the printed signature
 *     (and their public keys) to the member, who runs `patient enroll
 *     --patient-public HEX --patient-kx HEX --patient-signature HEX --key
 *     MEMBER.key`. The patient's secret key never leaves the patient.
 *
 * Not here: the transaction's other parts and the submission (submit.c).
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cli_internal.h"
#include "contracts.h"
#include "ledger.h"

enum {
    KEY_HEX_BYTES = 2 * EHR_SCHNORR_PUBLIC_BYTES + 1,
    SIG_HEX_BYTES = 2 * EHR_SCHNORR_SIG_BYTES + 1
};

#define PATIENT_PASSPHRASE_FLAG "--patient-passphrase-file"
#define PATIENT_PASSPHRASE_ENV "EHR_PATIENT_PASSPHRASE"

/* The patient's part of an enrolment: public keys and co-signature. */
struct patient_part {
    uint8_t key[EHR_SCHNORR_PUBLIC_BYTES];
    uint8_t kx[EHR_KX_PUBLIC_BYTES];
    uint8_t signature[EHR_SCHNORR_SIG_BYTES];
};

/* Sign the enrolment message for CHAIN_ID and ENROLLER with PATIENT's key into PART. */
static int patient_sign(const ehr_identity *patient, const char *chain_id,
                        const uint8_t enroller[EHR_SCHNORR_PUBLIC_BYTES], struct patient_part *part)
{
    memcpy(part->key, patient->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES);
    memcpy(part->kx, patient->kx.public_key, EHR_KX_PUBLIC_BYTES);
    uint8_t msg[EHR_HASH_BYTES];
    contracts_enroll_message(chain_id, enroller, part->key, part->kx, msg);
    int rc = ehr_schnorr_sign(&patient->signing, msg, part->signature);
    if (rc != 0)
        return cli__fail(ehr_strerror(rc), "sign the enrolment with the patient's key");
    return 0;
}

/* Whether PART's signature is the patient's for CHAIN_ID and ENROLLER. */
static bool patient_part_verifies(const struct patient_part *part, const char *chain_id,
                                  const uint8_t enroller[EHR_SCHNORR_PUBLIC_BYTES])
{
    uint8_t msg[EHR_HASH_BYTES];
    contracts_enroll_message(chain_id, enroller, part->key, part->kx, msg);
    ehr_public_key key;
    return ehr_public_key_parse(&key, part->key) == 0 &&
           ehr_schnorr_verify(&key, msg, part->signature) == 0;
}

/* ---- patient enroll ---- */

struct enroll_args {
    const char *patient_path, *patient_passphrase_file;
    const char *public_hex, *kx_hex, *signature_hex;
    struct cli__signed_tx tx;  /* the enrolling member's key, submit and node options */
    struct patient_part given; /* the two-device form: parsed from the hex options */
};

/* Parse the two-device form's hex options into A->given. Returns 0 or CLI_EXIT_USAGE. */
static int enroll_given_parse(struct cli__ctx *ctx, struct enroll_args *a)
{
    struct patient_part *p = &a->given;
    ehr_public_key key;
    if (strlen(a->public_hex) != 2 * EHR_SCHNORR_PUBLIC_BYTES ||
        ehr_hex_decode(p->key, sizeof p->key, a->public_hex) != 0)
        return cli__usage_error(ctx, "--patient-public wants 64 hex digits (%zu given)",
                                strlen(a->public_hex));
    if (ehr_public_key_parse(&key, p->key) != 0)
        return cli__usage_error(ctx, "--patient-public: not a public key (not a point on the "
                                     "curve)");
    if (strlen(a->kx_hex) != 2 * EHR_KX_PUBLIC_BYTES ||
        ehr_hex_decode(p->kx, sizeof p->kx, a->kx_hex) != 0)
        return cli__usage_error(ctx, "--patient-kx wants 64 hex digits (%zu given)",
                                strlen(a->kx_hex));
    if (ehr_kx_public_key_check(p->kx) != 0)
        return cli__usage_error(ctx, "--patient-kx: not a usable X25519 key");
    if (strlen(a->signature_hex) != 2 * EHR_SCHNORR_SIG_BYTES ||
        ehr_hex_decode(p->signature, sizeof p->signature, a->signature_hex) != 0)
        return cli__usage_error(ctx, "--patient-signature wants 128 hex digits (%zu given)",
                                strlen(a->signature_hex));
    return 0;
}

static int enroll_parse(struct cli__ctx *ctx, int argc, char **argv, struct enroll_args *a)
{
    static const struct option options[] = {
        {"patient", required_argument, NULL, 'P'},
        {"patient-passphrase-file", required_argument, NULL, 'Q'},
        {"patient-public", required_argument, NULL, 'u'},
        {"patient-kx", required_argument, NULL, 'X'},
        {"patient-signature", required_argument, NULL, 'S'},
        CLI_SIGNED_TX_OPTIONS,
        CLI_COMMON_OPTIONS};
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'P':
            a->patient_path = optarg;
            break;
        case 'Q':
            a->patient_passphrase_file = optarg;
            break;
        case 'u':
            a->public_hex = optarg;
            break;
        case 'X':
            a->kx_hex = optarg;
            break;
        case 'S':
            a->signature_hex = optarg;
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
    bool given = a->public_hex != NULL || a->kx_hex != NULL || a->signature_hex != NULL;
    if ((a->patient_path != NULL) == given)
        return cli__usage_error(ctx, "give the patient's key file (--patient FILE), or their "
                                     "public keys and co-signature (--patient-public, "
                                     "--patient-kx, --patient-signature)");
    if (given && (a->public_hex == NULL || a->kx_hex == NULL || a->signature_hex == NULL))
        return cli__usage_error(ctx, "--patient-public, --patient-kx and --patient-signature go "
                                     "together (patient consent-to-enroll prints them)");
    if (given && a->patient_passphrase_file != NULL)
        return cli__usage_error(ctx, "--patient-passphrase-file goes with --patient FILE");
    if (a->tx.key_path == NULL)
        return cli__usage_error(ctx, "--key FILE, the enrolling member's key, is required");
    if (given) {
        int exit_code = enroll_given_parse(ctx, a);
        if (exit_code != 0)
            return exit_code;
    }
    if (a->tx.submit.expiry_s == 0)
        a->tx.submit.expiry_s = CLI_EXPIRY_S_DEFAULT;
    return cli__node_options_finish(ctx, &a->tx.node);
}

int cli__cmd_patient_enroll(struct cli__ctx *ctx, int argc, char **argv)
{
    struct enroll_args a = {0};
    int exit_code = enroll_parse(ctx, argc, argv, &a);
    if (exit_code != 0)
        return exit_code;
    ehr_identity *member = NULL, *patient = NULL;
    ehr_keyfile_info info;
    struct patient_part part = a.given;
    if (a.patient_path != NULL)
        exit_code = cli__identity_load_from(a.patient_path, a.patient_passphrase_file,
                                            PATIENT_PASSPHRASE_FLAG, PATIENT_PASSPHRASE_ENV,
                                            &patient, &info);
    if (exit_code == 0)
        exit_code = cli__identity_load(a.tx.key_path, a.tx.passphrase_file, &member, &info);
    if (exit_code == 0 && patient != NULL &&
        memcmp(patient->signing.public_key, member->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES) ==
            0)
        exit_code = cli__usage_error(ctx, "--patient and --key are the same key: a member's node "
                                          "key cannot be a patient's");
    struct cli__node node = {0};
    char chain_id[EHR_CHAIN_ID_BYTES_MAX + 1] = "";
    if (exit_code == 0)
        exit_code = cli__node_open(&node, &a.tx.node, "patient enroll");
    if (exit_code == 0)
        exit_code = cli__submit_chain_id(&node, &a.tx.submit, "patient enroll", chain_id);
    if (exit_code == 0 && patient != NULL)
        exit_code = patient_sign(patient, chain_id, member->signing.public_key, &part);
    if (exit_code == 0 && patient == NULL &&
        !patient_part_verifies(&part, chain_id, member->signing.public_key)) {
        /* Sent all the same: the rules decide, and the node's answer is the
         * one that counts. This says what to look at. */
        char enroller[KEY_HEX_BYTES];
        ehr_hex_encode(enroller, member->signing.public_key, EHR_SCHNORR_PUBLIC_BYTES);
        fprintf(stderr,
                "ehrctl: warning: the patient's signature is not one for chain \"%s\" and "
                "enroller %.16s...: was it made with `ehrctl patient consent-to-enroll "
                "--chain-id %s --enroller %s`?\n",
                chain_id, enroller, chain_id, enroller);
    }
    uint8_t *envelope = NULL;
    size_t envelope_len = 0;
    uint8_t hash[EHR_HASH_BYTES];
    if (exit_code == 0) {
        Ehr__V1__PatientEnroll enroll = EHR__V1__PATIENT_ENROLL__INIT;
        enroll.patient_key = (ProtobufCBinaryData){EHR_SCHNORR_PUBLIC_BYTES, part.key};
        enroll.patient_kx_key = (ProtobufCBinaryData){EHR_KX_PUBLIC_BYTES, part.kx};
        enroll.patient_signature = (ProtobufCBinaryData){EHR_SCHNORR_SIG_BYTES, part.signature};
        Ehr__V1__TxBody body = EHR__V1__TX_BODY__INIT;
        body.payload_case = EHR__V1__TX_BODY__PAYLOAD_PATIENT_ENROLL;
        body.patient_enroll = &enroll;
        exit_code = cli__tx_sign(ctx, &body, chain_id, a.tx.submit.expiry_s, &member->signing,
                                 &envelope, &envelope_len, hash);
    }
    if (patient != NULL)
        sodium_free(patient);
    if (member != NULL)
        sodium_free(member);
    if (exit_code == 0) {
        char key_hex[KEY_HEX_BYTES], kx_hex[KEY_HEX_BYTES];
        ehr_hex_encode(key_hex, part.key, EHR_SCHNORR_PUBLIC_BYTES);
        ehr_hex_encode(kx_hex, part.kx, EHR_KX_PUBLIC_BYTES);
        /* Fields before the transaction's: by their proto names in JSON. */
        json_t *extra =
            ctx->json ? json_pack("{s:s, s:s}", "patient_key", key_hex, "patient_kx_key", kx_hex)
                      : json_pack("{s:s, s:s}", "patient", key_hex, "patient kx", kx_hex);
        if (extra == NULL)
            ehr_panic("out of memory building JSON");
        exit_code = cli__tx_send(ctx, &node, envelope, envelope_len, hash, a.tx.submit.wait, extra);
    }
    ehr_free(envelope);
    if (node.sync != NULL)
        cli__node_close(&node);
    return exit_code;
}

/* ---- patient consent-to-enroll ---- */

int cli__cmd_patient_consent(struct cli__ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {{"patient", required_argument, NULL, 'P'},
                                            {"passphrase-file", required_argument, NULL, 'p'},
                                            {"enroller", required_argument, NULL, 'e'},
                                            {"chain-id", required_argument, NULL, 'c'},
                                            CLI_COMMON_OPTIONS};
    const char *patient_path = NULL, *passphrase_file = NULL, *enroller_arg = NULL;
    const char *chain_id = NULL;
    int c;
    while ((c = cli__getopt(ctx, argc, argv, options)) >= 0) {
        switch (c) {
        case 'P':
            patient_path = optarg;
            break;
        case 'p':
            passphrase_file = optarg;
            break;
        case 'e':
            enroller_arg = optarg;
            break;
        case 'c':
            chain_id = optarg;
            break;
        default:
            EHR_ASSERT(0 && "option in the table but not handled");
        }
    }
    if (c == CLI_OPT_EXIT)
        return ctx->exit_code;
    if (optind < argc)
        return cli__usage_error(ctx, "unexpected argument \"%s\"", argv[optind]);
    if (patient_path == NULL || enroller_arg == NULL || chain_id == NULL)
        return cli__usage_error(ctx, "--patient FILE, --enroller KEY and --chain-id ID are "
                                     "required");
    ehr_diag why;
    if (ledger_chain_id_check(chain_id, &why) != 0)
        return cli__usage_error(ctx, "--chain-id: %s", why.msg);
    uint8_t enroller[EHR_SCHNORR_PUBLIC_BYTES];
    if (cli__public_key_arg(enroller_arg, enroller, NULL, &why) != 0)
        return cli__usage_error(ctx, "--enroller: %s", why.msg);
    ehr_identity *patient = NULL;
    ehr_keyfile_info info;
    int exit_code = cli__identity_load(patient_path, passphrase_file, &patient, &info);
    if (exit_code != 0)
        return exit_code;
    struct patient_part part;
    exit_code = patient_sign(patient, chain_id, enroller, &part);
    sodium_free(patient);
    if (exit_code != 0)
        return exit_code;
    char key_hex[KEY_HEX_BYTES], kx_hex[KEY_HEX_BYTES], enroller_hex[KEY_HEX_BYTES];
    char sig_hex[SIG_HEX_BYTES];
    ehr_hex_encode(key_hex, part.key, EHR_SCHNORR_PUBLIC_BYTES);
    ehr_hex_encode(kx_hex, part.kx, EHR_KX_PUBLIC_BYTES);
    ehr_hex_encode(enroller_hex, enroller, EHR_SCHNORR_PUBLIC_BYTES);
    ehr_hex_encode(sig_hex, part.signature, EHR_SCHNORR_SIG_BYTES);
    if (ctx->json) {
        json_t *root = json_pack("{s:s, s:s, s:s, s:o, s:s}", "patient_key", key_hex,
                                 "patient_kx_key", kx_hex, "enroller", enroller_hex, "chain_id",
                                 cli__json_text(chain_id), "patient_signature", sig_hex);
        if (root == NULL)
            ehr_panic("out of memory building JSON");
        return cli__json_print(root);
    }
    /* The signature alone on stdout, for `sig=$(...)`. */
    printf("%s\n", sig_hex);
    return CLI_EXIT_OK;
}
