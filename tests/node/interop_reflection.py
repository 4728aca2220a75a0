#!/usr/bin/python3
"""A stock gRPC reflection client against a running ehrd, doing what
grpcurl does: Debian's protoc and grpc_python_plugin generate Python stubs
from the standard proto/grpc/reflection/v1/reflection.proto and
proto/grpc/reflection/v1alpha/reflection.proto into a temporary directory
(never committed; Debian packages neither grpcurl nor Python's
grpc_reflection), and Debian's python3-grpcio and python3-protobuf talk to
ServerReflectionInfo of each version with them. Current grpcurl, Postman,
grpcui and grpcio-reflection ask for v1; older clients know v1alpha alone.

No stub of the node's own API is generated: the client learns the
ehr.v1.Node service from the node, builds its message classes from the
returned FileDescriptorProtos (descriptor_pool, message_factory) and calls
GetStatus with them, as grpcurl does.

Run by test_cluster (tests/node/test_cluster.c), which starts a node and
points this script at it. Checks, in turn (1 and 3 with each version):

1. One stream, one request at a time (each answered before the next is
   sent, the stream kept open, as grpcurl's client does): list_services
   names ehr.v1.Node, grpc.health.v1.Health and both reflection services;
   file_containing_symbol of ehr.v1.Node and of a method answers
   node.proto first, then every file it imports; an unknown symbol or
   file, an extension and the extension numbers of a type answer an
   error_response NOT_FOUND, and the stream goes on; the reflection
   service of the version asked answers its own file.
2. GetStatus called with classes built from those descriptors says the
   chain the test gave; Health.Check likewise says SERVING.
3. A stream that sends its requests and half-closes gets every answer and
   OK.
4. The limits at their edges: a request of NODE_REFLECTION_REQUEST_BYTES_MAX
   bytes is answered, one byte more ends the stream RESOURCE_EXHAUSTED;
   NODE_REFLECTION_REQUESTS_PER_STREAM_MAX requests are answered, the next
   ends the stream RESOURCE_EXHAUSTED (v1alpha for the first, v1 for the
   second); NODE_REFLECTION_STREAMS_PER_CONNECTION_MAX streams open on a
   connection, half of each version, and the next of either version
   refused: the versions share their limits.

Exits 77 (skipped) only if grpcio, protobuf, protoc or the plugin is
missing; any other failure exits non-zero.
"""
import argparse
import importlib
import queue
import sys
import tempfile

import grpc_stubs
import time

try:  # missing, the script skips (main)
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    MISSING = None
except ImportError as e:
    MISSING = e

SKIP = 77
# The node's limits (node/reflection.h).
REQUEST_BYTES_MAX = 1024
REQUESTS_PER_STREAM_MAX = 256
STREAMS_PER_CONNECTION_MAX = 4
VERSIONS = ("v1", "v1alpha")
NOT_FOUND = 5
TIMEOUT_S = 30


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


class Session:
    """One ServerReflectionInfo stream driven one request at a time: the
    request iterator blocks until the test hands it the next request, so
    each answer must come while the stream is still open."""

    def __init__(self, stub):
        self.requests = queue.Queue()
        self.answers = stub.ServerReflectionInfo(self._iterate(), timeout=TIMEOUT_S * 4)

    def _iterate(self):
        while True:
            req = self.requests.get()
            if req is None:
                return
            yield req

    def ask(self, req):
        self.requests.put(req)
        return next(self.answers)

    def close(self):
        self.requests.put(None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto-root", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--chain-id", required=True)
    args = ap.parse_args()
    if MISSING is not None:
        print(f"SKIPPED: python3-grpcio or python3-protobuf missing ({MISSING})")
        sys.exit(SKIP)
    with tempfile.TemporaryDirectory() as out:
        pbs, rpcs = {}, {}
        for version in VERSIONS:
            grpc_stubs.standalone(args.proto_root, f"grpc/reflection/{version}/reflection.proto",
                                  out, f"reflection_{version}")
        sys.path.insert(0, out)
        for version in VERSIONS:
            pbs[version] = importlib.import_module(f"reflection_{version}.reflection_pb2")
            rpcs[version] = importlib.import_module(f"reflection_{version}.reflection_pb2_grpc")
            check(pbs[version].DESCRIPTOR.package == f"grpc.reflection.{version}",
                  f"the {version} stubs are of package grpc.reflection.{version}")
        target = f"127.0.0.1:{args.port}"

        def channel():
            return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])

        ch = channel()
        for version in VERSIONS:
            node_files, health_files = describe(pbs[version], rpcs[version].ServerReflectionStub(ch),
                                                version)
        call_reflected(ch, node_files, health_files, args.chain_id)
        for version in VERSIONS:
            half_close(pbs[version], rpcs[version].ServerReflectionStub(ch), version)
        limits(pbs, rpcs, ch, channel)
        ch.close()
    print("ALL OK", flush=True)


def describe(pb, stub, version):
    """1. One request at a time on one open stream, of VERSION. Returns the
    files of ehr.v1.Node and of grpc.health.v1.Health, imports included."""
    Req = pb.ServerReflectionRequest

    def vcheck(cond, what):
        check(cond, f"{version}: {what}")

    s = Session(stub)
    a = s.ask(Req(list_services=""))
    vcheck(a.WhichOneof("message_response") == "list_services_response",
           "list_services answers a list")
    names = [x.name for x in a.list_services_response.service]
    for want in ("ehr.v1.Node", "grpc.health.v1.Health",
                 "grpc.reflection.v1.ServerReflection",
                 "grpc.reflection.v1alpha.ServerReflection"):
        vcheck(want in names, f"list_services names {want} ({names})")
    vcheck(a.original_request.WhichOneof("message_request") == "list_services",
           "the answer echoes its request")

    def files_of(answer, what):
        vcheck(answer.WhichOneof("message_response") == "file_descriptor_response",
               f"{what}: file descriptors")
        return [descriptor_pb2.FileDescriptorProto.FromString(b)
                for b in answer.file_descriptor_response.file_descriptor_proto]

    node_files = files_of(s.ask(Req(file_containing_symbol="ehr.v1.Node")),
                          "file_containing_symbol ehr.v1.Node")
    file_names = [f.name for f in node_files]
    vcheck(file_names[0] == "ehr/v1/node.proto", f"node.proto first ({file_names})")
    vcheck(set(node_files[0].dependency) <= set(file_names),
           f"every import of node.proto is in the answer ({list(node_files[0].dependency)})")
    vcheck(len(set(file_names)) == len(file_names), "each file once")
    method_files = files_of(s.ask(Req(file_containing_symbol="ehr.v1.Node.GetStatus")),
                            "file_containing_symbol of a method")
    vcheck(method_files[0].name == "ehr/v1/node.proto", "a method's file is its service's")
    msg_files = files_of(s.ask(Req(file_containing_symbol="ehr.v1.GetStatusResponse")),
                         "file_containing_symbol of a message")
    vcheck(msg_files[0].name == "ehr/v1/node.proto", "a message's file")
    by_name = files_of(s.ask(Req(file_by_filename="ehr/v1/tx.proto")), "file_by_filename")
    vcheck(by_name[0].name == "ehr/v1/tx.proto", "file_by_filename answers that file first")

    def not_found(answer, what):
        vcheck(answer.WhichOneof("message_response") == "error_response"
               and answer.error_response.error_code == NOT_FOUND,
               f"{what}: NOT_FOUND ({answer.error_response.error_message!r})")

    not_found(s.ask(Req(file_containing_symbol="ehr.v1.NoSuchService")), "an unknown symbol")
    not_found(s.ask(Req(file_by_filename="ehr/v1/nothing.proto")), "an unknown file")
    not_found(s.ask(Req(file_containing_extension=pb.ExtensionRequest(
        containing_type="ehr.v1.GetStatusRequest", extension_number=100))), "an extension")
    not_found(s.ask(Req(all_extension_numbers_of_type="ehr.v1.GetStatusRequest")),
              "the extension numbers of a type")
    health_files = files_of(s.ask(Req(file_containing_symbol="grpc.health.v1.Health")),
                            "file_containing_symbol grpc.health.v1.Health")
    refl_files = files_of(s.ask(Req(
        file_containing_symbol=f"grpc.reflection.{version}.ServerReflection")),
        "file_containing_symbol of the reflection service")
    vcheck(refl_files[0].package == f"grpc.reflection.{version}",
           f"the reflection service's file ({refl_files[0].name})")
    s.close()
    return node_files, health_files


def call_reflected(ch, node_files, health_files, chain_id):
    """2. Call methods with classes built from the descriptors alone."""
    pool = descriptor_pool.DescriptorPool()
    pending = {f.name: f for f in node_files + health_files}
    while pending:  # imports before the files that import them
        ready = [f for f in pending.values()
                 if all(d not in pending for d in f.dependency)]
        check(ready, "the files' imports are all answered")
        for f in ready:
            pool.Add(f)
            del pending[f.name]

    def message_class(desc):
        get = getattr(message_factory, "GetMessageClass", None)
        return get(desc) if get else message_factory.MessageFactory(pool).GetPrototype(desc)

    method = pool.FindServiceByName("ehr.v1.Node").methods_by_name["GetStatus"]
    ReqCls, RespCls = message_class(method.input_type), message_class(method.output_type)
    get_status = ch.unary_unary("/ehr.v1.Node/GetStatus",
                                request_serializer=ReqCls.SerializeToString,
                                response_deserializer=RespCls.FromString)
    status = get_status(ReqCls(), timeout=TIMEOUT_S)
    check(status.chain_id == chain_id,
          f"GetStatus through reflected classes: chain {status.chain_id!r}")
    check(status.commit_index >= 1, f"... and its commit index ({status.commit_index})")
    method = pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Check"]
    ReqCls, RespCls = message_class(method.input_type), message_class(method.output_type)
    health = ch.unary_unary("/grpc.health.v1.Health/Check",
                            request_serializer=ReqCls.SerializeToString,
                            response_deserializer=RespCls.FromString)
    serving = method.output_type.fields_by_name["status"].enum_type.values_by_name["SERVING"]
    check(health(ReqCls(service=""), timeout=TIMEOUT_S).status == serving.number,
          "Health.Check through reflected classes: SERVING")


def half_close(pb, stub, version):
    """3. Requests then a half-close: every answer, then OK."""
    Req = pb.ServerReflectionRequest
    asked = [Req(list_services=""), Req(file_by_filename="ehr/v1/tx.proto"),
             Req(file_containing_symbol="no.Such")]
    call = stub.ServerReflectionInfo(iter(asked), timeout=TIMEOUT_S)
    kinds = [x.WhichOneof("message_response") for x in call]
    check(kinds == ["list_services_response", "file_descriptor_response", "error_response"],
          f"{version}: a half-closed stream gets every answer in order ({kinds})")
    check(call.code() == grpc.StatusCode.OK, "... and OK")


def limits(pbs, rpcs, ch, channel):
    """4. The limits at their edges, shared by both versions."""
    Req = pbs["v1alpha"].ServerReflectionRequest
    stub = rpcs["v1alpha"].ServerReflectionStub(ch)

    def host_for(size):
        host = ""
        while Req(host=host, list_services="").ByteSize() < size:
            host += "h"
        check(Req(host=host, list_services="").ByteSize() == size, f"a request of {size}")
        return host

    s = Session(stub)
    a = s.ask(Req(host=host_for(REQUEST_BYTES_MAX), list_services=""))
    check(a.WhichOneof("message_response") == "list_services_response",
          f"a request of {REQUEST_BYTES_MAX} bytes is answered")
    try:
        s.ask(Req(host=host_for(REQUEST_BYTES_MAX + 1), list_services=""))
        check(False, "a request one byte over the limit is refused")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "1025" in e.details(),
              f"a request one byte over the limit: RESOURCE_EXHAUSTED ({e.details()})")
    s.close()

    Req = pbs["v1"].ServerReflectionRequest
    s = Session(rpcs["v1"].ServerReflectionStub(ch))
    for i in range(REQUESTS_PER_STREAM_MAX):
        a = s.ask(Req(list_services=""))
        if a.WhichOneof("message_response") != "list_services_response":
            check(False, f"request {i + 1} of a stream is answered")
    check(True, f"{REQUESTS_PER_STREAM_MAX} requests on one stream are answered")
    try:
        s.ask(Req(list_services=""))
        check(False, "one request more is refused")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"request {REQUESTS_PER_STREAM_MAX + 1}: RESOURCE_EXHAUSTED ({e.details()})")
    s.close()
    time.sleep(0.5)  # the node sees the ends before the streams below count

    conn = channel()
    held = []
    for i in range(STREAMS_PER_CONNECTION_MAX):
        version = VERSIONS[i % len(VERSIONS)]
        h = Session(rpcs[version].ServerReflectionStub(conn))
        a = h.ask(pbs[version].ServerReflectionRequest(list_services=""))
        check(a.WhichOneof("message_response") == "list_services_response",
              f"a {version} stream within the connection's limit is served")
        held.append(h)
    for version in VERSIONS:
        extra = Session(rpcs[version].ServerReflectionStub(conn))
        try:
            extra.ask(pbs[version].ServerReflectionRequest(list_services=""))
            check(False, f"a {version} stream past {STREAMS_PER_CONNECTION_MAX} "
                  "of both versions on a connection is refused")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                  and "this connection" in e.details(),
                  f"a {version} stream past {STREAMS_PER_CONNECTION_MAX} of both versions "
                  f"on a connection: RESOURCE_EXHAUSTED ({e.details()})")
        extra.close()
    for h in held:
        h.close()
    conn.close()


if __name__ == "__main__":
    main()
