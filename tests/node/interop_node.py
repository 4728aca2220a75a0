#!/usr/bin/python3
"""A stock gRPC client against a running ehrd: Debian's protoc and
grpc_python_plugin generate Python stubs from proto/ehr/v1 into a temporary
directory (never committed), and Debian's python3-grpcio calls every method
of ehr.v1.Node with them, built from proto/ and its comments alone.

First status, a submitted transaction (already signed, read from a file)
waited on until committed, the block and the transaction read back, a block
stream whose hashes chain, and refusals with their status codes. Then a
patient's story in transactions built here from tx.proto's instructions
(canonical body, a BIP-340 signature made by the few lines below, checked
first against an official test vector): a member enrols a patient, who
co-signs; as custodian it anchors three records, one superseding another;
the patient grants another member (the grantee) the lab results for
payment; the grantee's access requests come back PERMIT or DENY in the
result of SubmitTransaction; the patient revokes, and the grantee is denied.
Blobs: PutBlob stores 3 MiB by the custodian, GetBlob gives the patient,
the custodian and a grantee with a committed permit the exact bytes back;
PutBlob's refusals (short, long, a wrong hash, over the size and chunk
limits, a non-member, unsigned) and GetBlob's (no standing, another blob,
another record's permit, a denied request as permit, a blob not held);
uploads held open at the per-connection and per-address limits, one more
refused at each.
Every signed read (GetAuditTrail, ListRecords, ListConsents by patient and
by grantee, GetRecord) is made with a ReadAuth built here from node.proto's
"Signed reads", its answer checked against what was submitted, paging
included; each is refused unsigned, signed by a stranger, changed after
signing and past its window, and the node's count of refused reads matches.
ListMembers is checked against the genesis block.

Run by test_cluster (tests/node/test_cluster.c), which starts the nodes.
Exits 77 (skipped) only if grpcio, protobuf, protoc or the plugin is
missing; any other failure exits non-zero.
"""
import argparse
import hashlib
import importlib
import os
import sys
import tempfile

import grpc_stubs
import time

SKIP = 77

# ---- BIP-340 signing, as the BIP specifies it (secp256k1, x-only keys) ----

FIELD = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
GEN = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
       0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def point_add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and a[1] != b[1]:
        return None
    if a == b:
        slope = 3 * a[0] * a[0] * pow(2 * a[1], FIELD - 2, FIELD) % FIELD
    else:
        slope = (b[1] - a[1]) * pow(b[0] - a[0], FIELD - 2, FIELD) % FIELD
    x = (slope * slope - a[0] - b[0]) % FIELD
    return (x, (slope * (a[0] - x) - a[1]) % FIELD)


def point_mul(point, scalar):
    result = None
    for i in range(256):
        if (scalar >> i) & 1:
            result = point_add(result, point)
        point = point_add(point, point)
    return result


def tagged_hash(tag, data):
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


def x_bytes(point):
    return point[0].to_bytes(32, "big")


def bip340_public(secret):
    return x_bytes(point_mul(GEN, int.from_bytes(secret, "big")))


def bip340_sign(secret, msg, aux):
    d0 = int.from_bytes(secret, "big")
    assert 1 <= d0 < ORDER
    pub = point_mul(GEN, d0)
    d = d0 if pub[1] % 2 == 0 else ORDER - d0
    masked = bytes(a ^ b for a, b in zip(d.to_bytes(32, "big"), tagged_hash("BIP0340/aux", aux)))
    k0 = int.from_bytes(tagged_hash("BIP0340/nonce", masked + x_bytes(pub) + msg), "big") % ORDER
    assert k0 != 0
    r = point_mul(GEN, k0)
    k = k0 if r[1] % 2 == 0 else ORDER - k0
    e = int.from_bytes(tagged_hash("BIP0340/challenge", x_bytes(r) + x_bytes(pub) + msg),
                       "big") % ORDER
    return x_bytes(r) + ((k + e * d) % ORDER).to_bytes(32, "big")


def merkle_root(hashes):
    """block.proto's tx_root: RFC 6962 over the transaction hashes."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashlib.sha256(b"\x00" + hashes[0]).digest()
    split = 1
    while split * 2 < len(hashes):
        split *= 2
    return hashlib.sha256(b"\x01" + merkle_root(hashes[:split])
                          + merkle_root(hashes[split:])).digest()


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok   {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto-root", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--envelope", required=True, help="a signed TxEnvelope file")
    ap.add_argument("--chain-id", required=True)
    ap.add_argument("--vectors", required=True, help="the BIP-340 test vectors (CSV)")
    ap.add_argument("--member-secret", required=True,
                    help="a file holding a member node's BIP-340 secret key in hex")
    ap.add_argument("--grantee-secret", required=True,
                    help="the same for another member, with the role insurer (the grantee)")
    args = ap.parse_args()
    # Our signer against the official vector 1 before it signs anything.
    row = open(args.vectors).read().splitlines()[2].split(",")
    check(bip340_public(bytes.fromhex(row[1])) == bytes.fromhex(row[2])
          and bip340_sign(bytes.fromhex(row[1]), bytes.fromhex(row[4]),
                          bytes.fromhex(row[3])) == bytes.fromhex(row[5]),
          "the BIP-340 signer here reproduces official vector 1")
    try:
        import grpc
    except ImportError as e:
        print(f"SKIPPED: python3-grpcio missing ({e})")
        sys.exit(SKIP)
    with tempfile.TemporaryDirectory() as out:
        grpc_stubs.ehr_v1(args.proto_root, out)
        sys.path.insert(0, out)
        pb = importlib.import_module("ehr.v1.node_pb2")
        rpc = importlib.import_module("ehr.v1.node_pb2_grpc")
        blockpb = importlib.import_module("ehr.v1.block_pb2")
        txpb = importlib.import_module("ehr.v1.tx_pb2")
        stpb = importlib.import_module("ehr.v1.state_pb2")
        envelope = open(args.envelope, "rb").read()

        with grpc.insecure_channel(f"127.0.0.1:{args.port}") as ch:
            stub = rpc.NodeStub(ch)
            st = stub.GetStatus(pb.GetStatusRequest(), timeout=10)
            check(st.chain_id == args.chain_id, f"GetStatus names the chain ({st.chain_id})")
            check(len(st.node_id) == 32 and len(st.peers) == 2, "GetStatus: node id and two peers")
            check(len(st.leader_id) == 32, "GetStatus names a leader")

            r = stub.SubmitTransaction(
                pb.SubmitTransactionRequest(envelope=envelope, wait_for_commit=True), timeout=30)
            check(r.committed and r.height >= 1 and len(r.tx_hash) == 32,
                  f"SubmitTransaction waited for the commit (height {r.height})")

            b = stub.GetBlock(pb.GetBlockRequest(height=r.height), timeout=10)
            block = blockpb.Block()
            block.ParseFromString(b.block)
            check(block.txs[r.position].SerializeToString() == envelope,
                  "GetBlock holds the envelope at its position")
            check(len(b.block_hash) == 32, "GetBlock gives a 32-byte hash")

            t = stub.GetTransaction(pb.GetTransactionRequest(tx_hash=r.tx_hash), timeout=10)
            check(t.envelope == envelope and t.height == r.height and t.block_hash == b.block_hash,
                  "GetTransaction returns the envelope, its height and block hash")

            stream = stub.StreamBlocks(pb.StreamBlocksRequest(from_height=0), timeout=10)
            heights, chained, prev = [], True, bytes(32)
            for msg in stream:
                heights.append(msg.height)
                streamed = blockpb.Block()
                streamed.ParseFromString(msg.block)
                header = blockpb.BlockHeader()
                header.ParseFromString(streamed.header)
                chained = (chained and msg.block_hash == hashlib.sha256(streamed.header).digest()
                           and header.height == msg.height and header.prev_hash == prev)
                prev = msg.block_hash
                if msg.height == r.height:
                    break
            stream.cancel()
            check(heights == list(range(r.height + 1)), "StreamBlocks sends blocks 0.. in order")
            check(chained and prev == b.block_hash,
                  "StreamBlocks: each block's hash checks out here and chains to the previous")

            try:
                stub.GetTransaction(pb.GetTransactionRequest(tx_hash=b"short"), timeout=10)
                check(False, "a 5-byte hash is refused")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
                      f"a 5-byte hash is INVALID_ARGUMENT ({e.details()})")
            try:
                stub.GetBlock(pb.GetBlockRequest(height=10**12), timeout=10)
                check(False, "a block above the tip is refused")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.NOT_FOUND,
                      f"a block above the tip is NOT_FOUND ({e.details()})")
            try:
                stub.SubmitTransaction(pb.SubmitTransactionRequest(envelope=envelope), timeout=10)
                check(False, "a duplicate is refused")
            except grpc.RpcError as e:
                where = f"at height {r.height}, position {r.position}"
                check(e.code() == grpc.StatusCode.ALREADY_EXISTS and where in e.details(),
                      f"a duplicate is ALREADY_EXISTS naming its place ({e.details()})")
            again = stub.SubmitTransaction(
                pb.SubmitTransactionRequest(envelope=envelope, wait_for_commit=True), timeout=30)
            check(again.committed and again.height == r.height and again.position == r.position
                  and again.tx_hash == r.tx_hash,
                  "resubmitted with wait_for_commit, it is answered with its place")

            # A transaction built from tx.proto's instructions alone: a
            # member enrols a patient, who co-signs (PatientEnroll).
            secret = bytes.fromhex(open(args.member_secret).read().strip())
            signer = bip340_public(secret)
            patient_secret = os.urandom(32)
            patient = bip340_public(patient_secret)
            patient_kx = os.urandom(32)
            chain = st.chain_id.encode()
            consent = hashlib.sha256(b"ehrchain/v1/patient-enroll" + bytes([len(chain)]) + chain +
                                     signer + patient + patient_kx).digest()
            body = txpb.TxBody(chain_id=st.chain_id, signer=signer, nonce=os.urandom(16),
                               expiry_ms=int(time.time() * 1000) + 300000,
                               patient_enroll=txpb.PatientEnroll(
                                   patient_key=patient, patient_kx_key=patient_kx,
                                   patient_signature=bip340_sign(patient_secret, consent,
                                                                 os.urandom(32)))
                               ).SerializeToString()
            sig = bip340_sign(secret, hashlib.sha256(body).digest(), os.urandom(32))
            mine = txpb.TxEnvelope(body=body, signature=sig).SerializeToString()
            m = stub.SubmitTransaction(
                pb.SubmitTransactionRequest(envelope=mine, wait_for_commit=True), timeout=30)
            check(m.committed and m.tx_hash == hashlib.sha256(body).digest(),
                  f"a transaction built and signed here commits (height {m.height})")
            check(m.result.code == txpb.TX_RESULT_OK,
                  f"every node applied it: its result is OK ({m.result})")
            grantee_secret = bytes.fromhex(open(args.grantee_secret).read().strip())
            grantee = bip340_public(grantee_secret)
            stranger_secret = os.urandom(32)
            refused_before = stub.GetStatus(pb.GetStatusRequest(), timeout=10).reads_refused
            refusals = 0  # signed reads refused here (UNAUTHENTICATED, PERMISSION_DENIED)

            def submit(signer_secret, **payload):
                """Build, sign and submit one transaction; wait for its commit."""
                body = txpb.TxBody(chain_id=st.chain_id, signer=bip340_public(signer_secret),
                                   nonce=os.urandom(16),
                                   expiry_ms=int(time.time() * 1000) + 300000,
                                   **payload).SerializeToString()
                env = txpb.TxEnvelope(body=body, signature=bip340_sign(
                    signer_secret, hashlib.sha256(body).digest(), os.urandom(32)))
                env = env.SerializeToString()
                for attempt in range(5):
                    try:
                        res = stub.SubmitTransaction(
                            pb.SubmitTransactionRequest(envelope=env, wait_for_commit=True),
                            timeout=30)
                        break
                    except grpc.RpcError as e:
                        # node.proto's retry advice: on a leadership change,
                        # the SAME envelope again (never committed twice).
                        if attempt == 4 or e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                                            grpc.StatusCode.DEADLINE_EXCEEDED):
                            raise
                        print(f"note resubmitting after {e.code().name} ({e.details()})")
                        time.sleep(0.5)
                assert res.committed and res.tx_hash == hashlib.sha256(body).digest(), res
                return res, env

            # A signed read, built from node.proto's "Signed reads" alone.
            def read_auth(method, request, secret, window_ms=60000, start_ms=None,
                          chain_bytes=None):
                request.ClearField("auth")
                now = int(time.time() * 1000) if start_ms is None else start_ms
                key = bip340_public(secret)
                c = chain if chain_bytes is None else chain_bytes
                msg = (b"ehr.v1.read\x00" + bytes([len(c)]) + c
                       + bytes([len(method)]) + method.encode()
                       + hashlib.sha256(request.SerializeToString()).digest() + key
                       + now.to_bytes(8, "big") + (now + window_ms).to_bytes(8, "big"))
                request.auth.CopyFrom(pb.ReadAuth(
                    requester_key=key, not_before_ms=now, not_after_ms=now + window_ms,
                    signature=bip340_sign(secret, hashlib.sha256(msg).digest(), os.urandom(32))))
                return request

            def signed(method, request, secret, **kw):
                """Call METHOD with REQUEST signed by SECRET."""
                q = read_auth(f"/ehr.v1.Node/{method}", request, secret, **kw)
                return getattr(stub, method)(q, timeout=10)

            def refused(call, code, what, words=""):
                """CALL fails with CODE (and a message holding WORDS)."""
                nonlocal refusals
                try:
                    call()
                except grpc.RpcError as e:
                    check(e.code() == code and words in e.details(),
                          f"{what} is {code.name} ({e.details()})")
                    if code in (grpc.StatusCode.UNAUTHENTICATED,
                                grpc.StatusCode.PERMISSION_DENIED):
                        refusals += 1
                    return
                check(False, f"{what} is refused")

            def trail_of(secret, **fields):
                return signed("GetAuditTrail", pb.GetAuditTrailRequest(patient_key=patient,
                                                                        **fields), secret)

            # The patient's first read: the audit trail holds the enrolment.
            trail = trail_of(patient_secret)
            check(len(trail.events) == 1 and trail.events[0].kind == stpb.AUDIT_KIND_ENROLL
                  and trail.events[0].place.tx_hash == m.tx_hash
                  and trail.events[0].actor == signer and not trail.next_page_token,
                  "a read the patient signed here: the audit trail holds the enrolment")

            # The patient's story as transactions built here. Member 1 (the
            # enrolling member) is the custodian of three records: a lab
            # result, a corrected one superseding it, and an imaging study.
            def anchor(rtype, supersedes=b""):
                blob = os.urandom(200)
                return submit(secret, record_anchor=txpb.RecordAnchor(
                    patient_key=patient, record_type=rtype, encrypted_pointer=os.urandom(48),
                    ciphertext_hash=hashlib.sha256(blob).digest(), ciphertext_bytes=len(blob),
                    key_capsule=os.urandom(64), supersedes=supersedes))

            lab1, _ = anchor(txpb.RECORD_TYPE_LAB_RESULT)
            lab2, lab2_env = anchor(txpb.RECORD_TYPE_LAB_RESULT, supersedes=lab1.tx_hash)
            scan, _ = anchor(txpb.RECORD_TYPE_IMAGING)
            check(all(x.result.code == txpb.TX_RESULT_OK for x in (lab1, lab2, scan)),
                  "three record anchors signed here by the custodian commit OK "
                  "(one supersedes another)")
            # The patient grants member 2 their lab results, for payment.
            now = int(time.time() * 1000)
            grant, _ = submit(patient_secret, consent_grant=txpb.ConsentGrant(
                grantee_key=grantee, record_types=[txpb.RECORD_TYPE_LAB_RESULT],
                purpose=txpb.PURPOSE_PAYMENT, valid_from_ms=now - 60000,
                valid_until_ms=now + 3600000))
            check(grant.result.code == txpb.TX_RESULT_OK,
                  "a consent grant the patient signed here commits OK")

            # Access requests by the grantee: the decision comes back in the
            # result of SubmitTransaction with wait_for_commit.
            def access(record, purpose):
                return submit(grantee_secret, access_request=txpb.AccessRequest(
                    record_id=record, purpose=purpose, requester_kx_key=os.urandom(32)))[0]

            permit = access(lab2.tx_hash, txpb.PURPOSE_PAYMENT)
            check(permit.result.code == txpb.TX_RESULT_OK
                  and permit.result.decision == txpb.ACCESS_DECISION_PERMIT
                  and permit.result.consent_id == grant.tx_hash,
                  "an access request in the consent's scope: PERMIT, naming the consent used")
            other = access(scan.tx_hash, txpb.PURPOSE_PAYMENT)
            check(other.result.code == txpb.TX_RESULT_OK
                  and other.result.decision == txpb.ACCESS_DECISION_DENY
                  and not other.result.consent_id and "cover" in other.result.reason,
                  f"an access request for a record type not granted: DENY "
                  f"({other.result.reason})")
            purpose = access(lab2.tx_hash, txpb.PURPOSE_TREATMENT)
            check(purpose.result.decision == txpb.ACCESS_DECISION_DENY
                  and "purpose" in purpose.result.reason,
                  f"an access request for another purpose: DENY ({purpose.result.reason})")

            t = stub.GetTransaction(pb.GetTransactionRequest(tx_hash=permit.tx_hash), timeout=10)
            check(t.height == permit.height and t.position == permit.position
                  and t.result == permit.result,
                  "GetTransaction gives the access request's result: PERMIT and its consent")
            b = stub.GetBlock(pb.GetBlockRequest(height=permit.height), timeout=10)
            block = blockpb.Block()
            block.ParseFromString(b.block)
            header = blockpb.BlockHeader()
            header.ParseFromString(block.header)
            check(b.block_hash == hashlib.sha256(block.header).digest()
                  and header.height == permit.height
                  and header.tx_root == merkle_root(
                      [hashlib.sha256(tx.body).digest() for tx in block.txs])
                  and block.txs[permit.position].SerializeToString() == t.envelope,
                  "GetBlock: its hash, height and tx_root check out here, "
                  "the access request at its position")

            # Records, read by the patient: by type, then anchoring order.
            recs = signed("ListRecords", pb.ListRecordsRequest(patient_key=patient),
                          patient_secret)
            by_id = {r.record_id: r.record for r in recs.records}
            check([r.record_id for r in recs.records] == [scan.tx_hash, lab1.tx_hash,
                                                          lab2.tx_hash]
                  and by_id[lab1.tx_hash].superseded_by == lab2.tx_hash
                  and by_id[lab2.tx_hash].supersedes == lab1.tx_hash
                  and all(r.record.patient_key == patient and r.record.custodian == signer
                          for r in recs.records)
                  and by_id[scan.tx_hash].anchored.tx_hash == scan.tx_hash,
                  "ListRecords (the patient): three records by type, with the supersede chain")
            page1 = signed("ListRecords", pb.ListRecordsRequest(
                patient_key=patient, record_type=txpb.RECORD_TYPE_LAB_RESULT, limit=1),
                patient_secret)
            page2 = signed("ListRecords", pb.ListRecordsRequest(
                patient_key=patient, record_type=txpb.RECORD_TYPE_LAB_RESULT, limit=1,
                page_token=page1.next_page_token), patient_secret)
            check([r.record_id for r in page1.records] == [lab1.tx_hash] and page1.next_page_token
                  and [r.record_id for r in page2.records] == [lab2.tx_hash]
                  and not page2.next_page_token,
                  "ListRecords by type, one a page: the page token signed with the request")
            recs = signed("ListRecords", pb.ListRecordsRequest(patient_key=patient), secret)
            check(len(recs.records) == 3, "ListRecords (the custodian): its three records")
            recs = signed("ListRecords", pb.ListRecordsRequest(patient_key=patient),
                          grantee_secret)
            check([r.record_id for r in recs.records] == [lab1.tx_hash, lab2.tx_hash],
                  "ListRecords (the grantee): the lab results its consent covers, not the scan")

            got = signed("GetRecord", pb.GetRecordRequest(record_id=lab2.tx_hash),
                         patient_secret)
            anchored = txpb.TxEnvelope()
            anchored.ParseFromString(got.anchor_envelope)
            check(got.anchor_envelope == lab2_env
                  and hashlib.sha256(anchored.body).digest() == lab2.tx_hash
                  and got.record.record_id == lab2.tx_hash
                  and got.record.record.supersedes == lab1.tx_hash
                  and got.record.record.record_type == txpb.RECORD_TYPE_LAB_RESULT
                  and got.record.record.anchored.height == lab2.height,
                  "GetRecord (the patient): the entry and the anchor envelope as submitted")
            got = signed("GetRecord", pb.GetRecordRequest(record_id=lab1.tx_hash),
                         grantee_secret)
            check(got.record.record.superseded_by == lab2.tx_hash,
                  "GetRecord (the grantee): a record its consent covers")
            got = signed("GetRecord", pb.GetRecordRequest(record_id=scan.tx_hash), secret)
            check(got.record.record_id == scan.tx_hash, "GetRecord (the custodian): its record")
            refused(lambda: signed("GetRecord", pb.GetRecordRequest(record_id=scan.tx_hash),
                                   grantee_secret),
                    grpc.StatusCode.PERMISSION_DENIED, "GetRecord by the grantee out of scope")
            refused(lambda: signed("GetRecord", pb.GetRecordRequest(record_id=os.urandom(32)),
                                   patient_secret),
                    grpc.StatusCode.NOT_FOUND, "GetRecord of an unknown id (signed by the patient)")

            cons = signed("ListConsents", pb.ListConsentsRequest(patient_key=patient),
                          patient_secret)
            check(len(cons.consents) == 1 and cons.consents[0].consent_id == grant.tx_hash
                  and cons.consents[0].consent.grantee_key == grantee
                  and cons.consents[0].consent.purpose == txpb.PURPOSE_PAYMENT
                  and list(cons.consents[0].consent.record_types) == [
                      txpb.RECORD_TYPE_LAB_RESULT]
                  and cons.consents[0].consent.granted.tx_hash == grant.tx_hash
                  and not cons.consents[0].consent.revoked,
                  "ListConsents by patient (the patient): the grant as signed")
            held = signed("ListConsents", pb.ListConsentsRequest(grantee_key=grantee),
                          grantee_secret)
            check([c.consent_id for c in held.consents] == [grant.tx_hash]
                  and held.consents[0].consent.patient_key == patient,
                  "ListConsents by grantee (the grantee): the consent it holds")
            refused(lambda: signed("ListConsents", pb.ListConsentsRequest(grantee_key=grantee),
                                   patient_secret),
                    grpc.StatusCode.PERMISSION_DENIED,
                    "ListConsents by grantee signed by the patient")
            refused(lambda: signed("ListConsents", pb.ListConsentsRequest(
                        patient_key=patient, grantee_key=grantee), patient_secret),
                    grpc.StatusCode.INVALID_ARGUMENT, "ListConsents by patient and grantee at once")
            refused(lambda: trail_of(grantee_secret), grpc.StatusCode.PERMISSION_DENIED,
                    "GetAuditTrail signed by a grantee that is no regulator")

            # The patient revokes; the grantee is then denied, and loses its reads.
            revoke, _ = submit(patient_secret,
                               consent_revoke=txpb.ConsentRevoke(grant_id=grant.tx_hash))
            check(revoke.result.code == txpb.TX_RESULT_OK, "a revoke the patient signed commits OK")
            after = access(lab2.tx_hash, txpb.PURPOSE_PAYMENT)
            check(after.result.decision == txpb.ACCESS_DECISION_DENY
                  and "revoked" in after.result.reason,
                  f"the same access request after the revoke: DENY ({after.result.reason})")
            cons = signed("ListConsents", pb.ListConsentsRequest(patient_key=patient),
                          patient_secret)
            check(cons.consents[0].consent.revoked
                  and cons.consents[0].consent.revoked_at.tx_hash == revoke.tx_hash,
                  "ListConsents: the consent revoked, naming where")
            refused(lambda: signed("ListRecords", pb.ListRecordsRequest(patient_key=patient),
                                   grantee_secret),
                    grpc.StatusCode.PERMISSION_DENIED, "ListRecords by the revoked grantee")
            refused(lambda: signed("GetRecord", pb.GetRecordRequest(record_id=lab2.tx_hash),
                                   grantee_secret),
                    grpc.StatusCode.PERMISSION_DENIED, "GetRecord by the revoked grantee")

            # The audit trail: every step, in chain order, and paged.
            A = stpb  # AuditKind
            story = [(m, A.AUDIT_KIND_ENROLL), (lab1, A.AUDIT_KIND_ANCHOR),
                     (lab2, A.AUDIT_KIND_ANCHOR), (scan, A.AUDIT_KIND_ANCHOR),
                     (grant, A.AUDIT_KIND_GRANT), (permit, A.AUDIT_KIND_ACCESS),
                     (other, A.AUDIT_KIND_ACCESS), (purpose, A.AUDIT_KIND_ACCESS),
                     (revoke, A.AUDIT_KIND_REVOKE), (after, A.AUDIT_KIND_ACCESS)]
            trail = trail_of(patient_secret)
            check([(e.place.tx_hash, e.kind) for e in trail.events]
                  == [(x.tx_hash, kind) for x, kind in story]
                  and [(e.place.height, e.place.position) for e in trail.events]
                  == [(x.height, x.position) for x, _ in story]
                  and not trail.next_page_token,
                  f"GetAuditTrail: {len(story)} events, their kinds and places in chain order")
            acc = [e for e in trail.events if e.kind == A.AUDIT_KIND_ACCESS]
            check([e.decision for e in acc] == [txpb.ACCESS_DECISION_PERMIT] +
                  [txpb.ACCESS_DECISION_DENY] * 3
                  and all(e.actor == grantee and e.institution == grantee for e in acc)
                  and acc[0].consent_id == grant.tx_hash and acc[0].record_id == lab2.tx_hash
                  and acc[2].purpose == txpb.PURPOSE_TREATMENT
                  and trail.events[8].consent_id == grant.tx_hash,
                  "GetAuditTrail: each access's decision, requester, record and consent")
            paged, token = [], b""
            for _ in range(len(story)):
                page = trail_of(patient_secret, limit=4, page_token=token)
                paged += page.events
                token = page.next_page_token
                if not token:
                    break
            check([e.SerializeToString() for e in paged]
                  == [e.SerializeToString() for e in trail.events],
                  "GetAuditTrail four a page gives the same trail")
            check(len(trail_of(patient_secret, emergency_only=True).events) == 0,
                  "GetAuditTrail, emergency accesses only: none")
            again = pb.GetAuditTrailRequest(patient_key=patient, limit=3)
            read_auth("/ehr.v1.Node/GetAuditTrail", again, patient_secret)
            first = stub.GetAuditTrail(again, timeout=10)
            check(len(first.events) == 3 and first == stub.GetAuditTrail(again, timeout=10),
                  "a signed read sent twice within its window answers the same")

            # Refusals, for every signed method.
            reads = [("GetAuditTrail", lambda: pb.GetAuditTrailRequest(patient_key=patient),
                      "limit", 5),
                     ("ListRecords", lambda: pb.ListRecordsRequest(patient_key=patient),
                      "record_type", txpb.RECORD_TYPE_IMAGING),
                     ("ListConsents", lambda: pb.ListConsentsRequest(patient_key=patient),
                      "limit", 1),
                     ("GetRecord", lambda: pb.GetRecordRequest(record_id=lab2.tx_hash),
                      "record_id", scan.tx_hash)]
            U, P = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
            for method, make, field, value in reads:
                call = getattr(stub, method)
                refused(lambda: call(make(), timeout=10), U, f"an unsigned {method}")
                refused(lambda: signed(method, make(), stranger_secret), P,
                        f"{method} signed by a stranger")
                q = read_auth(f"/ehr.v1.Node/{method}", make(), patient_secret)
                setattr(q, field, value)
                refused(lambda: call(q, timeout=10), U,
                        f"{method} whose {field} changed after signing", "does not verify")
                past = int(time.time() * 1000) - 120000
                refused(lambda: signed(method, make(), patient_secret, start_ms=past), U,
                        f"{method} past its window (ended 60 s ago)", "expired")
            soon = int(time.time() * 1000) + 120000
            refused(lambda: signed("GetAuditTrail", pb.GetAuditTrailRequest(patient_key=patient),
                                   patient_secret, start_ms=soon),
                    U, "GetAuditTrail whose window starts in 2 minutes", "not valid yet")
            refused(lambda: signed("GetAuditTrail", pb.GetAuditTrailRequest(patient_key=patient),
                                   patient_secret, window_ms=300001), U,
                    "GetAuditTrail with a window over 5 minutes", "over the limit")
            q = read_auth("/ehr.v1.Node/ListRecords", pb.GetAuditTrailRequest(patient_key=patient),
                          patient_secret)
            refused(lambda: stub.GetAuditTrail(q, timeout=10), U,
                    "GetAuditTrail signed for another method", "does not verify")
            refused(lambda: signed("GetAuditTrail", pb.GetAuditTrailRequest(patient_key=patient),
                                   patient_secret, chain_bytes=b"another-chain"), U,
                    "GetAuditTrail signed for another chain", "does not verify")
            st = stub.GetStatus(pb.GetStatusRequest(), timeout=10)
            check(st.reads_refused - refused_before == refusals,
                  f"GetStatus counts the {refusals} signed reads refused here")

            # Blobs (node.proto, "Blobs"): the custodian stores a record's
            # ciphertext with PutBlob (client-streaming), the patient and a
            # permitted grantee read it with GetBlob (server-streaming).
            def put_blob(signer_secret, blob_id, size, chunks, sign=True):
                header = pb.PutBlobRequest(blob_id=blob_id, size_bytes=size)
                if sign:
                    header = read_auth("/ehr.v1.Node/PutBlob", header, signer_secret)
                msgs = [header] + [pb.PutBlobRequest(chunk=c) for c in chunks]
                return stub.PutBlob(iter(msgs), timeout=20)

            def get_blob(reader_secret, record, blob_id, permit=b""):
                q = read_auth("/ehr.v1.Node/GetBlob", pb.GetBlobRequest(
                    record_id=record, blob_id=blob_id, permit_tx=permit), reader_secret)
                parts = list(stub.GetBlob(q, timeout=20))
                check(parts and parts[0].size_bytes == sum(len(p.chunk) for p in parts[1:]),
                      "GetBlob: the first message gives the size the chunks add up to")
                return b"".join(p.chunk for p in parts[1:])

            cipher = os.urandom(3 * 1024 * 1024 + 5)
            blob_id = hashlib.sha256(cipher).digest()
            stored, _ = submit(secret, record_anchor=txpb.RecordAnchor(
                patient_key=patient, record_type=txpb.RECORD_TYPE_LAB_RESULT,
                encrypted_pointer=os.urandom(48), ciphertext_hash=blob_id,
                ciphertext_bytes=len(cipher), key_capsule=os.urandom(96)))
            pieces = [cipher[i:i + 1000000] for i in range(0, len(cipher), 1000000)]
            r = put_blob(secret, blob_id, len(cipher), pieces)
            check(r.blob_id == blob_id and r.size_bytes == len(cipher),
                  "PutBlob: 3 MiB in 1 MB chunks stored under its SHA-256")
            check(get_blob(patient_secret, stored.tx_hash, blob_id) == cipher,
                  "GetBlob: the patient reads the exact bytes")
            check(get_blob(secret, stored.tx_hash, blob_id) == cipher,
                  "GetBlob: the custodian reads them too")
            I, D, R = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
                       grpc.StatusCode.RESOURCE_EXHAUSTED)
            wrong = bytearray(cipher)
            wrong[12345] ^= 1
            other_id = hashlib.sha256(b"other").digest()
            refused(lambda: put_blob(secret, other_id, len(wrong), [bytes(wrong)[:1000000]]), I,
                    "PutBlob with fewer bytes than its header claims", "ended after")
            # Another id than the content's: its last byte flipped (a fixed
            # byte would be the content's own one time in 256).
            not_its_id = blob_id[:31] + bytes([blob_id[31] ^ 1])
            refused(lambda: put_blob(secret, not_its_id, len(cipher), pieces), I,
                    "PutBlob whose content does not hash to its id", "not the claimed blob id")
            refused(lambda: put_blob(secret, blob_id, 10, [b"x" * 11]), I,
                    "PutBlob with more bytes than its header claims", "more bytes than")
            refused(lambda: put_blob(secret, blob_id, 8 << 30 | 1, []), R,
                    "PutBlob over BLOB_BYTES_MAX (8 GiB)", "over the limit")
            refused(lambda: put_blob(secret, blob_id, 1024 * 1024 + 1,
                                     [b"y" * (1024 * 1024 + 1)]), R,
                    "a chunk over BLOB_CHUNK_BYTES_MAX (1 MiB)", "over the limit of 1048576")
            check(put_blob(secret, hashlib.sha256(b"z" * 1048576).digest(), 1048576,
                           [b"z" * 1048576]).size_bytes == 1048576,
                  "a chunk of exactly BLOB_CHUNK_BYTES_MAX is taken")
            refused(lambda: put_blob(patient_secret, blob_id, len(cipher), pieces), D,
                    "PutBlob signed by a patient (not a member)", "member")
            refused(lambda: put_blob(secret, blob_id, len(cipher), pieces, sign=False),
                    grpc.StatusCode.UNAUTHENTICATED, "PutBlob unsigned")
            refused(lambda: get_blob(grantee_secret, stored.tx_hash, blob_id), D,
                    "GetBlob by a member with no standing", "permit")
            # (The first consent is revoked by now: the patient grants again.)
            now = int(time.time() * 1000)
            submit(patient_secret, consent_grant=txpb.ConsentGrant(
                grantee_key=grantee, record_types=[txpb.RECORD_TYPE_LAB_RESULT],
                purpose=txpb.PURPOSE_PAYMENT, valid_from_ms=now - 60000,
                valid_until_ms=now + 3600000))
            permit2 = access(stored.tx_hash, txpb.PURPOSE_PAYMENT)
            check(permit2.result.decision == txpb.ACCESS_DECISION_PERMIT
                  and get_blob(grantee_secret, stored.tx_hash, blob_id,
                               permit=permit2.tx_hash) == cipher,
                  "GetBlob: the grantee, with its committed PERMIT for the record, reads it")
            refused(lambda: get_blob(patient_secret, stored.tx_hash, blob_id,
                                     permit=permit2.tx_hash) and get_blob(
                        secret, stored.tx_hash, blob_id, permit=b"short"), I,
                    "GetBlob with a permit_tx not 32 bytes", "32 bytes")
            refused(lambda: get_blob(patient_secret, stored.tx_hash, other_id), I,
                    "GetBlob naming a blob that is not the record's", "ciphertext_hash")
            refused(lambda: get_blob(grantee_secret, stored.tx_hash, blob_id,
                                     permit=permit.tx_hash), D,
                    "GetBlob with a permit for another record", "permit_tx")
            # lab2 is the record the grantee's permit is for; its blob was
            # never stored here.
            lab2_anchor = txpb.TxBody()
            lab2_anchor.ParseFromString(txpb.TxEnvelope.FromString(lab2_env).body)
            lab2_id = lab2_anchor.record_anchor.ciphertext_hash
            refused(lambda: get_blob(grantee_secret, lab2.tx_hash, lab2_id,
                                     permit=permit.tx_hash), grpc.StatusCode.NOT_FOUND,
                    "GetBlob with a permit, of a blob this node does not hold", "no blob")
            refused(lambda: get_blob(grantee_secret, lab2.tx_hash, lab2_id,
                                     permit=purpose.tx_hash), D,
                    "GetBlob with a denied access request as permit", "permit_tx")

            # Uploads open at once: BLOB_UPLOADS_PER_CONNECTION_MAX = 2 on
            # one connection (a channel), BLOB_UPLOADS_PER_ADDRESS_MAX = 8
            # from one address. Each held upload has sent its header and
            # waits; the one past a limit is refused at once.
            import threading
            small = b"held upload"
            small_id = hashlib.sha256(small).digest()
            release = threading.Event()

            def held_messages():
                yield read_auth("/ehr.v1.Node/PutBlob",
                                pb.PutBlobRequest(blob_id=small_id, size_bytes=len(small)), secret)
                release.wait(30)
                yield pb.PutBlobRequest(chunk=small)

            # A local subchannel pool each: one TCP connection per channel.
            channels = [grpc.insecure_channel(f"127.0.0.1:{args.port}",
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                        for _ in range(5)]
            stubs = [rpc.NodeStub(c) for c in channels]
            held = []

            def hold(i):
                held.append(stubs[i].PutBlob.future(held_messages(), timeout=40))
                time.sleep(0.3)  # the header reaches the node first

            def refused_now(i, words):
                f = stubs[i].PutBlob.future(held_messages(), timeout=40)
                try:
                    f.result(timeout=10)
                    check(False, f"an upload past the limit is refused ({words})")
                except grpc.RpcError as e:
                    check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and words in e.details(),
                          f"an upload past the limit is RESOURCE_EXHAUSTED ({e.details()})")

            hold(0)
            hold(0)
            refused_now(0, "on this connection (the limit is 2)")
            for i in (1, 2, 3):
                hold(i)
                hold(i)
            refused_now(4, "from your address (the limit is 8)")
            release.set()
            check(all(f.result(timeout=30).blob_id == small_id for f in held),
                  "the 8 uploads held at the limits complete once let go")
            for c in channels:
                c.close()

            # Members: those of the genesis, in node-key order, paged.
            g0 = blockpb.Block()
            g0.ParseFromString(stub.GetBlock(pb.GetBlockRequest(height=0), timeout=10).block)
            genesis = blockpb.Genesis()
            genesis.ParseFromString(g0.genesis)
            want = sorted((x.SerializeToString() for x in genesis.members),
                          key=lambda raw: txpb.Member.FromString(raw).node_key)
            members = stub.ListMembers(pb.ListMembersRequest(), timeout=10)
            check([x.SerializeToString() for x in members.members] == want
                  and not members.next_page_token and genesis.chain_id == st.chain_id,
                  f"ListMembers: the genesis's {len(want)} members, in node-key order")
            roles = {x.node_key: x.role for x in members.members}
            check(roles.get(signer) == txpb.MEMBER_ROLE_LAB
                  and roles.get(grantee) == txpb.MEMBER_ROLE_INSURER
                  and st.node_id in roles
                  and {p.node_id for p in st.peers} | {st.node_id} == set(roles),
                  "ListMembers: the signers' roles, and this node and its peers are the members")
            paged, token = [], b""
            for _ in range(len(want) + 1):
                page = stub.ListMembers(pb.ListMembersRequest(limit=1, page_token=token),
                                        timeout=10)
                paged += page.members
                token = page.next_page_token
                if not token:
                    break
            check([x.SerializeToString() for x in paged] == want,
                  "ListMembers one a page gives the same list")
            refused(lambda: stub.ListMembers(pb.ListMembersRequest(page_token=b"bogus"),
                                             timeout=10),
                    grpc.StatusCode.INVALID_ARGUMENT, "ListMembers with a made-up page token")
            fresh = txpb.TxBody()
            fresh.ParseFromString(body)
            fresh.nonce = os.urandom(16)
            fresh = fresh.SerializeToString()
            bad = bytearray(bip340_sign(secret, hashlib.sha256(fresh).digest(), os.urandom(32)))
            bad[40] ^= 1
            forged = txpb.TxEnvelope(body=fresh, signature=bytes(bad)).SerializeToString()
            try:
                stub.SubmitTransaction(pb.SubmitTransactionRequest(envelope=forged), timeout=10)
                check(False, "a bad signature is refused")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and "signature" in e.details(),
                      f"a flipped signature bit is INVALID_ARGUMENT ({e.details()})")
    print("interop ok")


if __name__ == "__main__":
    main()
