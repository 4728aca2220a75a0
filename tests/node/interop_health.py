#!/usr/bin/python3
"""A stock gRPC health client against a running ehrd: Debian's protoc and
grpc_python_plugin generate Python stubs from the standard
proto/grpc/health/v1/health.proto into a temporary directory (never
committed; Debian's python3-grpcio has no health module), and Debian's
python3-grpcio calls grpc.health.v1.Health with them.

Run by test_cluster (tests/node/test_cluster.c), which starts three nodes
and points this script at one of them. In turn:

1. Check says SERVING for "" and "ehr.v1.Node"; another name is NOT_FOUND;
   Watch on another name answers SERVICE_UNKNOWN and stays open.
2. The limits on Watch calls at their edges: NODE_HEALTH_WATCHES_PER_
   CONNECTION_MAX (4) on one connection, the next refused; NODE_HEALTH_
   WATCHES_PER_ADDRESS_MAX (32) from this address, the next refused.
3. A Watch on "" answers SERVING at once; the script prints "WATCHING" and
   the test stops the two other nodes. The Watch then says NOT_SERVING
   (the node lost its leader), and so does Check; the script prints
   "NOT_SERVING SEEN" and the test starts the two nodes again. The same
   Watch says SERVING again, and so does Check.

Exits 77 (skipped) only if grpcio, protobuf, protoc or the plugin is
missing; any other failure exits non-zero.
"""
import argparse
import importlib
import sys
import tempfile

import grpc_stubs
import time

SKIP = 77
# The node's limits (node/node_internal.h).
WATCHES_PER_CONNECTION_MAX = 4
WATCHES_PER_ADDRESS_MAX = 32
# How long a status may take to change after the cluster did (an election
# timeout, a tick, and the restarted nodes' start-up), in seconds.
CHANGE_WAIT_S = 25


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto-root", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    try:
        import grpc
    except ImportError as e:
        print(f"SKIPPED: python3-grpcio missing ({e})")
        sys.exit(SKIP)
    with tempfile.TemporaryDirectory() as out:
        grpc_stubs.standalone(args.proto_root, "grpc/health/v1/health.proto", out, "health_stub")
        sys.path.insert(0, out)
        pb = importlib.import_module("health_stub.health_pb2")
        rpc = importlib.import_module("health_stub.health_pb2_grpc")
        Status = pb.HealthCheckResponse
        target = f"127.0.0.1:{args.port}"

        def channel():
            # Its own connection: channels to one target otherwise share one.
            return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])

        def check_status(stub, service):
            return stub.Check(pb.HealthCheckRequest(service=service), timeout=10).status

        def watch_first(stub, service):
            """A Watch call and its first answer (None if the call failed)."""
            call = stub.Watch(pb.HealthCheckRequest(service=service), timeout=120)
            try:
                return call, next(call).status
            except grpc.RpcError as e:
                return call, e

        main_ch = channel()
        stub = rpc.HealthStub(main_ch)

        # 1. Check and Watch by service name.
        check(check_status(stub, "") == Status.SERVING, "Check(\"\"): SERVING")
        check(check_status(stub, "ehr.v1.Node") == Status.SERVING, "Check(ehr.v1.Node): SERVING")
        try:
            stub.Check(pb.HealthCheckRequest(service="no.such.Service"), timeout=10)
            check(False, "Check of an unknown service fails")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND,
                  f"Check of an unknown service: NOT_FOUND ({e.code()}, {e.details()})")
        unknown, first = watch_first(stub, "no.such.Service")
        check(first == Status.SERVICE_UNKNOWN, "Watch of an unknown service: SERVICE_UNKNOWN")
        check(unknown.is_active(), "... and the call stays open")
        unknown.cancel()
        time.sleep(0.5)  # the node sees the cancel before the limits below count

        # 2. The limits on Watch calls, at their edges.
        channels, calls = [], []
        ch = channel()
        channels.append(ch)
        for _ in range(WATCHES_PER_CONNECTION_MAX):
            call, first = watch_first(rpc.HealthStub(ch), "")
            check(first == Status.SERVING, "a Watch within the connection's limit: SERVING")
            calls.append(call)
        _, refused = watch_first(rpc.HealthStub(ch), "")
        check(isinstance(refused, grpc.RpcError)
              and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
              and "this connection" in refused.details(),
              f"one Watch past {WATCHES_PER_CONNECTION_MAX} on a connection: RESOURCE_EXHAUSTED")
        while len(calls) < WATCHES_PER_ADDRESS_MAX:
            if len(calls) % WATCHES_PER_CONNECTION_MAX == 0:
                channels.append(channel())
            call, first = watch_first(rpc.HealthStub(channels[-1]), "")
            if first != Status.SERVING:
                check(False, f"Watch {len(calls) + 1} within the address's limit ({first})")
            calls.append(call)
        check(True, f"{WATCHES_PER_ADDRESS_MAX} Watch calls from one address are served")
        channels.append(channel())
        _, refused = watch_first(rpc.HealthStub(channels[-1]), "")
        check(isinstance(refused, grpc.RpcError)
              and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
              and "your address" in refused.details(),
              f"one Watch past {WATCHES_PER_ADDRESS_MAX} from an address: RESOURCE_EXHAUSTED")
        for call in calls:
            call.cancel()
        for ch in channels:
            ch.close()
        time.sleep(0.5)  # the node sees the cancels before the next Watch counts

        # 3. A Watch across the loss of the leader and its return.
        watch = stub.Watch(pb.HealthCheckRequest(service=""), timeout=3 * CHANGE_WAIT_S + 30)
        check(next(watch).status == Status.SERVING, "Watch(\"\"): SERVING at once")
        print("WATCHING", flush=True)
        t0 = time.monotonic()
        status = next(watch).status
        check(status == Status.NOT_SERVING,
              f"Watch: NOT_SERVING once the other nodes stopped "
              f"({time.monotonic() - t0:.1f} s after WATCHING)")
        check(check_status(stub, "") == Status.NOT_SERVING, "Check(\"\"): NOT_SERVING")
        check(check_status(stub, "ehr.v1.Node") == Status.NOT_SERVING,
              "Check(ehr.v1.Node): NOT_SERVING")
        print("NOT_SERVING SEEN", flush=True)
        t0 = time.monotonic()
        status = next(watch).status
        check(status == Status.SERVING,
              f"Watch: SERVING again once the nodes are back "
              f"({time.monotonic() - t0:.1f} s after NOT_SERVING SEEN)")
        check(check_status(stub, "") == Status.SERVING, "Check(\"\"): SERVING again")
        watch.cancel()
        main_ch.close()
    print("interop_health: all checks passed", flush=True)


if __name__ == "__main__":
    main()
