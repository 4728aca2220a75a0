#!/usr/bin/python3
"""The integrator API schema (proto/ehr/v1/node.proto) works with a stock
gRPC toolchain: Debian's protoc and grpc_python_plugin generate Python stubs
from every file under proto/ehr/v1 into a temporary directory (never
committed), and they import with Debian's python3-grpcio and
python3-protobuf.

Checks that service ehr.v1.Node has each method with the right streaming
shape and that the messages round-trip their fields. Not a test of a server:
ehrd does not exist yet.

Exits 77 (CTest: skipped) only if grpcio, protobuf, protoc or the plugin is
missing; any other failure exits non-zero.
"""
import argparse
import importlib
import sys
import tempfile

import grpc_stubs

SKIP = 77


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(SKIP)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok   {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto-root", required=True, help="the directory holding ehr/v1/*.proto")
    args = ap.parse_args()

    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
    except ImportError as e:
        skip(f"python3-grpcio or python3-protobuf missing ({e})")
    with tempfile.TemporaryDirectory() as out:
        files = grpc_stubs.ehr_v1(args.proto_root, out)
        check(any(f.endswith("node.proto") for f in files), "node.proto is among the schema files")
        sys.path.insert(0, out)
        pb = importlib.import_module("ehr.v1.node_pb2")
        pb_grpc = importlib.import_module("ehr.v1.node_pb2_grpc")

        service = pb.DESCRIPTOR.services_by_name["Node"]
        check(service.full_name == "ehr.v1.Node", "the service is ehr.v1.Node")
        shapes = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
        want = {
            "SubmitTransaction": (False, False),
            "GetTransaction": (False, False),
            "GetBlock": (False, False),
            "GetStatus": (False, False),
            "StreamBlocks": (False, True),
            "GetAuditTrail": (False, False),
            "ListRecords": (False, False),
            "ListConsents": (False, False),
            "GetRecord": (False, False),
            "ListMembers": (False, False),
            "PutBlob": (True, False),
            "GetBlob": (False, True),
            "GetCapsuleFragment": (False, False),
        }
        check(shapes == want, f"methods and streaming shapes: {shapes}")
        for name in want:
            check(hasattr(pb_grpc.NodeServicer, name), f"NodeServicer has {name}")

        req = pb.SubmitTransactionRequest(envelope=b"\x0a\x01x", wait_for_commit=True)
        back = pb.SubmitTransactionRequest.FromString(req.SerializeToString())
        check(back.envelope == b"\x0a\x01x" and back.wait_for_commit,
              "SubmitTransactionRequest round-trips")
        st = pb.GetStatusResponse(role=pb.NODE_ROLE_LEADER, term=7, tip_height=3,
                                  peers=[pb.PeerStatus(node_id=b"\x01" * 32,
                                                       link_state=pb.LINK_STATE_CONNECTED)])
        back = pb.GetStatusResponse.FromString(st.SerializeToString())
        check(back.role == pb.NODE_ROLE_LEADER and back.term == 7 and
              back.peers[0].link_state == pb.LINK_STATE_CONNECTED,
              "GetStatusResponse round-trips role, term and peers")
        roles = {v.name for v in pb.DESCRIPTOR.enum_types_by_name["NodeRole"].values}
        check({"NODE_ROLE_FOLLOWER", "NODE_ROLE_CANDIDATE", "NODE_ROLE_LEADER",
               "NODE_ROLE_LEARNER"} <= roles, "NodeRole names all four roles")

        # A channel to nowhere builds the stub's callables without a server.
        import grpc
        channel = grpc.insecure_channel("127.0.0.1:1")
        stub = pb_grpc.NodeStub(channel)
        for name in want:
            check(callable(getattr(stub, name)), f"NodeStub.{name} is callable")
        channel.close()
    print("all node.proto stub checks passed")


if __name__ == "__main__":
    main()
