#!/usr/bin/python3
"""A stock gRPC client against a running ehrd: Debian's protoc and
grpc_python_plugin generate Python stubs from proto/ehr/v1 into a temporary
directory (never committed), and Debian's python3-grpcio calls the node with
them: status, a submitted transaction (already signed, read from a file)
waited on until committed, the block and the transaction read back, a block
stream, and refusals with their status codes. Then a transaction built here
from tx.proto's instructions alone (canonical body, a BIP-340 signature made
by the few lines below, checked first against an official test vector) is
accepted and committed, and resubmitting it is answered with its place.
The patient's audit trail is then read with a ReadAuth built here from
node.proto's "Signed reads" alone; an unsigned read, a stranger's and a
request changed after signing are refused.

Run by test_cluster (tests/node/test_cluster.c), which starts the nodes.
Exits 77 (skipped) only if grpcio, protobuf, protoc or the plugin is
missing; any other failure exits non-zero.
"""
import argparse
import glob
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
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
    protoc = shutil.which("protoc")
    plugin = "/usr/bin/grpc_python_plugin"
    if protoc is None or not os.path.exists(plugin):
        print("SKIPPED: protoc or grpc_python_plugin missing")
        sys.exit(SKIP)
    files = sorted(glob.glob(os.path.join(args.proto_root, "ehr", "v1", "*.proto")))
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([protoc, "-I", args.proto_root, f"--python_out={out}",
                        f"--grpc_out={out}", f"--plugin=protoc-gen-grpc={plugin}", *files],
                       check=True)
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
            heights = []
            for msg in stream:
                heights.append(msg.height)
                if msg.height == r.height:
                    break
            stream.cancel()
            check(heights == list(range(r.height + 1)), "StreamBlocks sends blocks 0.. in order")

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
            # A signed read, built from node.proto's "Signed reads" alone:
            # the patient signs for their own audit trail.
            def read_auth(method, request, secret, window_ms=60000):
                request.ClearField("auth")
                now = int(time.time() * 1000)
                key = bip340_public(secret)
                msg = (b"ehr.v1.read\x00" + bytes([len(chain)]) + chain
                       + bytes([len(method)]) + method.encode()
                       + hashlib.sha256(request.SerializeToString()).digest() + key
                       + now.to_bytes(8, "big") + (now + window_ms).to_bytes(8, "big"))
                request.auth.CopyFrom(pb.ReadAuth(
                    requester_key=key, not_before_ms=now, not_after_ms=now + window_ms,
                    signature=bip340_sign(secret, hashlib.sha256(msg).digest(), os.urandom(32))))
                return request

            q = read_auth("/ehr.v1.Node/GetAuditTrail", pb.GetAuditTrailRequest(patient_key=patient),
                          patient_secret)
            trail = stub.GetAuditTrail(q, timeout=10)
            check(len(trail.events) == 1 and trail.events[0].kind == stpb.AUDIT_KIND_ENROLL
                  and trail.events[0].place.tx_hash == m.tx_hash,
                  "a read the patient signed here: the audit trail holds the enrolment")
            try:
                stub.GetAuditTrail(pb.GetAuditTrailRequest(patient_key=patient), timeout=10)
                check(False, "an unsigned read is refused")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.UNAUTHENTICATED,
                      f"an unsigned read is UNAUTHENTICATED ({e.details()})")
            q = read_auth("/ehr.v1.Node/GetAuditTrail", pb.GetAuditTrailRequest(patient_key=patient),
                          os.urandom(32))
            try:
                stub.GetAuditTrail(q, timeout=10)
                check(False, "a stranger's signed read is refused")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.PERMISSION_DENIED,
                      f"a stranger's signed read is PERMISSION_DENIED ({e.details()})")
            q = read_auth("/ehr.v1.Node/GetAuditTrail", pb.GetAuditTrailRequest(patient_key=patient),
                          patient_secret)
            q.limit = 5
            try:
                stub.GetAuditTrail(q, timeout=10)
                check(False, "a read changed after signing is refused")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.UNAUTHENTICATED,
                      f"a read whose limit changed after signing is UNAUTHENTICATED "
                      f"({e.details()})")
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
