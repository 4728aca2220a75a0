#!/usr/bin/python3
"""A stock gRPC client against a running ehrd: Debian's protoc and
grpc_python_plugin generate Python stubs from proto/ehr/v1 into a temporary
directory (never committed), and Debian's python3-grpcio calls the node with
them: status, a submitted transaction (already signed, read from a file)
waited on until committed, the block and the transaction read back, a block
stream, and two refusals with their status codes.

Run by test_cluster (tests/node/test_cluster.c), which starts the nodes.
Exits 77 (skipped) only if grpcio, protobuf, protoc or the plugin is
missing; any other failure exits non-zero.
"""
import argparse
import glob
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


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
    args = ap.parse_args()
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
                check(e.code() == grpc.StatusCode.ALREADY_EXISTS,
                      f"a duplicate is ALREADY_EXISTS ({e.details()})")
    print("interop ok")


if __name__ == "__main__":
    main()
