#!/usr/bin/python3
"""Interoperability of our gRPC server with a stock client.

Runs rpc_echo_server (tests/rpc/echo_server_main.c) and calls it with
Debian's python3-grpcio, using stubs generated from echo.proto by protoc and
grpc_python_plugin into a temporary directory (never committed). Checks
unary, server-streaming, client-streaming and bidirectional calls, status codes and messages, deadlines,
cancellation, oversize and malformed messages, and a graceful shutdown.

Run by CTest with Debian's /usr/bin/python3 (the python3 on PATH may be a
separate build without Debian's packages). Exits 77 (CTest: skipped) only if
grpcio, protobuf, protoc or the plugin is missing.
"""
import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(SKIP)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok   {what}")


def expect_error(fn, code, what, details_part=None):
    import grpc

    try:
        fn()
    except grpc.RpcError as e:
        check(e.code() == code, f"{what}: status {e.code()} == {code}")
        if details_part is not None:
            check(details_part in (e.details() or ""),
                  f"{what}: message {e.details()!r} contains {details_part!r}")
        return e
    raise AssertionError(f"{what}: expected {code}, the call succeeded")


def start_server(path, *args):
    proc = subprocess.Popen([path, *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "port":
        proc.kill()
        raise AssertionError(f"rpc_echo_server did not report its port: {line}")
    return proc, int(line[1])


def stop_server(proc):
    proc.terminate()
    try:
        rc = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("rpc_echo_server did not shut down within 15 s")
    check(rc == 0, f"server shut down gracefully (exit {rc})")


def run(args, tmp):
    import grpc

    proto_dir = os.path.dirname(os.path.abspath(args.proto))
    subprocess.run(
        ["protoc", "-I", proto_dir, f"--python_out={tmp}", f"--grpc_out={tmp}",
         "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", os.path.abspath(args.proto)],
        check=True)
    sys.path.insert(0, tmp)
    import echo_pb2
    import echo_pb2_grpc

    proc, port = start_server(args.server, "--message-bytes-max", "65536")
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = echo_pb2_grpc.EchoStub(channel)

        reply = stub.Say(echo_pb2.EchoRequest(text="hello", payload=b"x" * 1000), timeout=5)
        check(reply.text == "hello" and reply.payload == b"x" * 1000, "unary Say echoes")

        reply = stub.Say(echo_pb2.EchoRequest(text="later", delay_ms=30), timeout=5)
        check(reply.text == "later", "unary Say answered asynchronously")

        message = "no block at height 7 \u2014 100% sure"
        expect_error(lambda: stub.Say(echo_pb2.EchoRequest(
            fail_code=grpc.StatusCode.NOT_FOUND.value[0], fail_message=message), timeout=5),
            grpc.StatusCode.NOT_FOUND, "handler status", message)

        replies = list(stub.Count(echo_pb2.CountRequest(count=1000, payload_bytes=100), timeout=10))
        check([r.index for r in replies] == list(range(1000)), "stream of 1000 messages in order")

        big = list(stub.Count(echo_pb2.CountRequest(count=200, payload_bytes=60000), timeout=20))
        check(len(big) == 200 and all(len(r.payload) == 60000 for r in big),
              "stream of 12 MB through the bounded queue")

        got = []

        def partial_stream():
            for r in stub.Count(echo_pb2.CountRequest(
                    count=3, fail_code=grpc.StatusCode.FAILED_PRECONDITION.value[0]), timeout=5):
                got.append(r.index)
        expect_error(partial_stream, grpc.StatusCode.FAILED_PRECONDITION, "stream ends with status",
                     "failed as asked")
        check(got == [0, 1, 2], "messages before the final status arrive")

        expect_error(lambda: stub.Hang(echo_pb2.EchoRequest(), timeout=0.2),
                     grpc.StatusCode.DEADLINE_EXCEEDED, "deadline")

        expect_error(lambda: channel.unary_unary("/ehr.test.Echo/Nope")(b"", timeout=5),
                     grpc.StatusCode.UNIMPLEMENTED, "unknown method", "/ehr.test.Echo/Nope")

        expect_error(lambda: channel.unary_unary("/ehr.test.Echo/Say")(b"\xff\xff\xff", timeout=5),
                     grpc.StatusCode.INVALID_ARGUMENT, "malformed protobuf", "malformed")

        expect_error(lambda: stub.Say(echo_pb2.EchoRequest(payload=b"y" * 70000), timeout=5),
                     grpc.StatusCode.RESOURCE_EXHAUSTED, "oversize request", "over the limit")
        at_limit = echo_pb2.EchoRequest(payload=b"z" * (65536 - 4))
        check(at_limit.ByteSize() == 65536, "request of exactly the limit built")
        check(len(stub.Say(at_limit, timeout=5).payload) == 65536 - 4, "request at the limit served")

        stream = stub.Count(echo_pb2.CountRequest(count=5, hang=True), timeout=10)
        first = [next(stream).index for _ in range(5)]
        stream.cancel()
        check(first == list(range(5)), "client cancels a hanging stream")
        expect_error(lambda: next(stream), grpc.StatusCode.CANCELLED, "cancelled stream")

        summed = stub.Sum((echo_pb2.CountReply(index=i, payload=b"s" * 60000)
                           for i in range(300)), timeout=20)
        check(summed.messages == 300 and summed.bytes == 300 * 60000 and summed.in_order,
              "client stream of 18 MB through the handler's window")
        check(stub.Sum(iter(()), timeout=5).messages == 0, "client stream of no message")
        expect_error(lambda: stub.Sum((echo_pb2.CountReply(index=i if i != 3 else 2**32 - 1)
                                       for i in range(1000)), timeout=5),
                     grpc.StatusCode.INVALID_ARGUMENT, "client stream refused half-way",
                     "failed as asked")

        # Bidirectional: each answer comes while the request stream is still
        # open (the next message is sent only once it came), then a large
        # pipelined stream through back-pressure, then a refusal half-way.
        outbox = queue.Queue()

        def chat_requests():
            while True:
                item = outbox.get()
                if item is None:
                    return
                yield item

        chat = stub.Chat(chat_requests(), timeout=20)
        echoed = []
        for i in range(50):
            outbox.put(echo_pb2.CountReply(index=i, payload=b"c" * i))
            echoed.append(next(chat).index)
        outbox.put(None)
        check(echoed == list(range(50)) and list(chat) == [] and chat.code() == grpc.StatusCode.OK,
              "bidirectional stream answered message by message, then OK")
        got = [r.index for r in stub.Chat((echo_pb2.CountReply(index=i, payload=b"b" * 60000)
                                           for i in range(300)), timeout=30)]
        check(got == list(range(300)), "bidirectional stream of 18 MB each way, in order")
        expect_error(lambda: list(stub.Chat((echo_pb2.CountReply(index=i if i != 3 else 2**32 - 1)
                                             for i in range(10)), timeout=5)),
                     grpc.StatusCode.INVALID_ARGUMENT, "bidirectional stream refused half-way",
                     "failed as asked")

        futures = [stub.Say.future(echo_pb2.EchoRequest(text=str(i)), timeout=10)
                   for i in range(300)]
        check(all(f.result().text == str(i) for i, f in enumerate(futures)),
              "300 concurrent calls on one channel")

        channel.close()
    finally:
        if proc.poll() is None:
            stop_server(proc)
    if args.tls_certs_script:
        run_tls(args, tmp, echo_pb2, echo_pb2_grpc)


def run_tls(args, tmp, echo_pb2, echo_pb2_grpc):
    """The same server over TLS 1.3 (and mutual TLS), called by grpcio with
    grpc.ssl_channel_credentials: certificates made now by make_tls_certs.sh."""
    import grpc

    certs = os.path.join(tmp, "certs")
    subprocess.run(["sh", args.tls_certs_script, certs], check=True)

    def read(name):
        with open(os.path.join(certs, name), "rb") as f:
            return f.read()

    proc, port = start_server(args.server, "--tls-cert", os.path.join(certs, "server.pem"),
                              "--tls-key", os.path.join(certs, "server.key"))
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=read("ca.pem"))
        with grpc.secure_channel(f"localhost:{port}", creds) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            reply = stub.Say(echo_pb2.EchoRequest(text="sealed", payload=b"t" * 5000), timeout=10)
            check(reply.text == "sealed" and len(reply.payload) == 5000, "unary Say over TLS")
            replies = list(stub.Count(echo_pb2.CountRequest(count=100, payload_bytes=1000),
                                      timeout=10))
            check(len(replies) == 100, "stream of 100 messages over TLS")
        other = grpc.ssl_channel_credentials(root_certificates=read("other-ca.pem"))
        with grpc.secure_channel(f"localhost:{port}", other) as channel:
            expect_error(lambda: echo_pb2_grpc.EchoStub(channel).Say(
                echo_pb2.EchoRequest(text="x"), timeout=5),
                grpc.StatusCode.UNAVAILABLE, "a client without our CA is refused")
    finally:
        if proc.poll() is None:
            stop_server(proc)

    proc, port = start_server(args.server, "--tls-cert", os.path.join(certs, "server.pem"),
                              "--tls-key", os.path.join(certs, "server.key"),
                              "--tls-client-ca", os.path.join(certs, "ca.pem"))
    try:
        mutual = grpc.ssl_channel_credentials(root_certificates=read("ca.pem"),
                                              private_key=read("client.key"),
                                              certificate_chain=read("client.pem"))
        with grpc.secure_channel(f"localhost:{port}", mutual) as channel:
            reply = echo_pb2_grpc.EchoStub(channel).Say(echo_pb2.EchoRequest(text="both"),
                                                        timeout=10)
            check(reply.text == "both", "unary Say over mutual TLS")
        plain = grpc.ssl_channel_credentials(root_certificates=read("ca.pem"))
        with grpc.secure_channel(f"localhost:{port}", plain) as channel:
            expect_error(lambda: echo_pb2_grpc.EchoStub(channel).Say(
                echo_pb2.EchoRequest(text="x"), timeout=5),
                grpc.StatusCode.UNAVAILABLE, "mutual TLS refuses a client without a certificate")
    finally:
        if proc.poll() is None:
            stop_server(proc)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--proto", required=True)
    parser.add_argument("--tls-certs-script", help="make_tls_certs.sh: also check TLS")
    args = parser.parse_args()
    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
    except ImportError as e:
        skip(f"{sys.executable} lacks grpcio/protobuf ({e}); install python3-grpcio python3-protobuf")
    if shutil.which("protoc") is None or not os.path.exists("/usr/bin/grpc_python_plugin"):
        skip("protoc or /usr/bin/grpc_python_plugin missing; install protobuf-compiler-grpc")
    tmp = tempfile.mkdtemp(prefix="rpc-interop-")
    try:
        run(args, tmp)
    except AssertionError as e:
        print(f"FAIL {e}")
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
