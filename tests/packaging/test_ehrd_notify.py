#!/usr/bin/env python3
"""test_ehrd_notify.py EHRD EHRCTL - ehrd speaks the sd_notify protocol as
packaging/ehrd.service (Type=notify) relies on: READY=1 once its peer and
RPC ports are bound (a client connects to the RPC port when READY=1 has
come), STOPPING=1 on SIGTERM, then exit 0. The test plays systemd: a
datagram socket named by $NOTIFY_SOCKET, and a one-member network made with
ehrctl in a scratch directory."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def receive(sock, want, deadline_s):
    """Datagrams until one holds the line WANT; returns them all."""
    got = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(msg)
        if want in msg.split("\n"):
            return got
    sys.exit(f"FAIL: no {want} within {deadline_s} s (received {got!r})")


def main():
    ehrd, ehrctl = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as d:
        key = os.path.join(d, "node.key")
        peer, rpc = free_port(), free_port()
        run(ehrctl, "keygen", "--out", key, "--no-passphrase")
        member = subprocess.run([ehrctl, "genesis", "member", "--key", key, "--name", "N",
                                 "--role", "hospital", "--address", f"127.0.0.1:{peer}"],
                                check=True, capture_output=True).stdout
        with open(os.path.join(d, "member.json"), "wb") as f:
            f.write(member)
        run(ehrctl, "genesis", "--member", os.path.join(d, "member.json"), "--chain-id",
            "notify-1", "--out", os.path.join(d, "genesis.pb"))
        data = os.path.join(d, "data")
        run(ehrctl, "init", "--genesis", os.path.join(d, "genesis.pb"), "--key", key, "--data",
            data, "--peer-listen", f"127.0.0.1:{peer}", "--rpc-listen", f"127.0.0.1:{rpc}")

        sock_path = os.path.join(d, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        log = open(os.path.join(d, "ehrd.log"), "w")
        node = subprocess.Popen([ehrd, "--config", os.path.join(data, "ehrd.json")], env=env,
                                stderr=log)
        try:
            receive(sock, "READY=1", 30)
            # Ready means serving: the RPC port takes a connection now.
            socket.create_connection(("127.0.0.1", rpc), timeout=5).close()
            node.send_signal(signal.SIGTERM)
            receive(sock, "STOPPING=1", 30)
            code = node.wait(timeout=30)
        except SystemExit:
            log.flush()
            with open(log.name) as f:
                sys.stderr.write("ehrd's log:\n" + f.read())
            raise
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
            log.close()
        if code != 0:
            sys.exit(f"FAIL: ehrd exited {code} after SIGTERM")
        print("ok: READY=1 with the RPC port open, STOPPING=1 on SIGTERM, exit 0")


if __name__ == "__main__":
    main()
