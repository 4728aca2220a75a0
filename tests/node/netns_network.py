#!/usr/bin/python3
"""Three members on three "machines": each ehrd in its own network namespace,
joined by a bridge in a fourth, as separate hosts on one LAN would be. The
network is built with the commands docs/OPERATIONS.md writes (keygen,
genesis member, genesis, init), each node's API on its LAN address with TLS,
and checked from the namespaces as an operator or integrator would:

1. TLS on the API (node/README.md, "TLS on the API"): a client that speaks
   cleartext, and one that trusts another CA, are refused; a client with the
   CA submits (patient enroll --wait, through one node) and reads (tx show,
   through another). Node 0 asks for client certificates (mutual TLS, a CA of
   the integrators' own): a client without a certificate is refused, one
   with a certificate from that CA is served.
2. Health (node/health.c, standard grpc.health.v1 client with stubs
   generated from proto/grpc/health/v1/health.proto): SERVING on every
   node; with node 2's link to the bridge down, NOT_SERVING on node 2 while
   the two others serve again (a leader among them) and commit a
   transaction without it; link up, node 2 SERVING again, and it has
   applied that transaction.

Needs root (it makes namespaces and links), `ip`, `openssl`, protoc and
grpc_python_plugin, python3-grpcio. Exits 77 (CTest: skipped) only when one
of those is missing; any other failure exits non-zero. Every namespace and
process it made is removed on exit, whatever happened.
"""
import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import grpc_stubs
import time

SKIP = 77
NODES = 3
PEER_PORT = 7000
RPC_PORT = 7001
# A private /24 that lives only inside this test's namespaces.
SUBNET = "10.213.77"
# How long a node may take to see a leader, lose one, or serve again after
# its link comes back: election timeouts, pre-votes and a catch-up, with room
# for a loaded machine.
CHANGE_WAIT_S = 60
CALL_TIMEOUT_MS = "10000"


def log(msg):
    print(msg, flush=True)


def check(cond, what):
    if not cond:
        log(f"FAIL: {what}")
        raise SystemExit(1)
    log(f"ok: {what}")


def skip(why):
    log(f"SKIPPED: {why}")
    sys.exit(SKIP)


def run(cmd, ok=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if ok and r.returncode != 0:
        log(f"FAIL: {' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        raise SystemExit(1)
    return r


class Lan:
    """The namespaces, the bridge and the links; names unique to this run
    (interface names: at most 15 bytes)."""

    def __init__(self, tag):
        self.tag = tag
        self.hub = f"ehr{tag}hub"
        self.ns = [f"ehr{tag}n{i}" for i in range(NODES)]
        self.made = []

    def addr(self, i):
        return f"{SUBNET}.{i + 1}"

    def hub_end(self, i):
        return f"e{self.tag}h{i}"

    def up(self):
        run(["ip", "netns", "add", self.hub])
        self.made.append(self.hub)
        run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
        for i, ns in enumerate(self.ns):
            run(["ip", "netns", "add", ns])
            self.made.append(ns)
            host_end = f"e{self.tag}n{i}"
            run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", self.hub_end(i)])
            run(["ip", "link", "set", host_end, "netns", ns])
            run(["ip", "link", "set", self.hub_end(i), "netns", self.hub])
            run(["ip", "-n", ns, "link", "set", host_end, "name", "eth0"])
            run(["ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", self.hub, "link", "set", self.hub_end(i), "master", "br0"])
            run(["ip", "-n", self.hub, "link", "set", self.hub_end(i), "up"])

    def cut(self, i, down):
        run(["ip", "-n", self.hub, "link", "set", self.hub_end(i), "down" if down else "up"])

    def remove(self):
        # Deleting a namespace deletes its ends of the links, and with them
        # the other ends.
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def make_certs(d, lan):
    """A CA for the nodes' API certificates (one per node, its LAN address
    as the subject's IP), another for the integrators' client certificates
    (node 0's mutual TLS), and an unrelated CA a client wrongly trusts."""
    def key(path):
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path])

    def ca(name):
        key(f"{d}/{name}.key")
        run(["openssl", "req", "-x509", "-new", "-key", f"{d}/{name}.key", "-days", "2",
             "-subj", f"/CN={name}", "-out", f"{d}/{name}.pem"])

    def leaf(name, ca_name, ext):
        key(f"{d}/{name}.key")
        run(["openssl", "req", "-new", "-key", f"{d}/{name}.key", "-subj", f"/CN={name}",
             "-out", f"{d}/{name}.csr"])
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(ext)
        run(["openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/{ca_name}.pem",
             "-CAkey", f"{d}/{ca_name}.key", "-CAcreateserial", "-days", "2",
             "-extfile", f"{d}/{name}.ext", "-out", f"{d}/{name}.pem"])

    for name in ("api-ca", "integrators-ca", "stranger-ca"):
        ca(name)
    for i in range(NODES):
        leaf(f"api{i}", "api-ca",
             f"subjectAltName=IP:{lan.addr(i)}\nextendedKeyUsage=serverAuth\n")
    leaf("engine", "integrators-ca", "extendedKeyUsage=clientAuth\n")


def health_stubs(proto_root, out):
    """Stubs for the standard health service, generated here (Debian's
    python3-grpcio has no health module), importable as health_stub.*"""
    grpc_stubs.standalone(proto_root, "grpc/health/v1/health.proto", out, "health_stub")


def health_probe(args):
    """One Check of "" over TLS, from inside a namespace (the test runs this
    script again under `ip netns exec`): prints the status name, or ERROR."""
    import grpc
    sys.path.insert(0, args.stubs)
    pb = importlib.import_module("health_stub.health_pb2")
    rpc = importlib.import_module("health_stub.health_pb2_grpc")
    def read(path):
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key) if args.key else None,
        certificate_chain=read(args.cert) if args.cert else None)
    with grpc.secure_channel(args.target, creds) as ch:
        try:
            resp = rpc.HealthStub(ch).Check(pb.HealthCheckRequest(service=""), timeout=5)
            print(pb.HealthCheckResponse.ServingStatus.Name(resp.status))
        except grpc.RpcError as e:
            print(f"ERROR {e.code()}")


class Network:
    def __init__(self, args, lan, d):
        self.args, self.lan, self.d = args, lan, d
        self.procs = {}

    def ctl(self, ns_index, *argv, ok=True):
        """ehrctl run inside namespace ns_index, as on that member's host."""
        cmd = ["ip", "netns", "exec", self.lan.ns[ns_index], self.args.ehrctl, *argv]
        return run(cmd, ok=ok, cwd=self.d)

    def node(self, i):
        return f"{self.lan.addr(i)}:{RPC_PORT}"

    def tls(self, i):
        """What a client of node i passes: the API CA, and for node 0 (mutual
        TLS) the integration engine's certificate."""
        flags = ["--tls-ca", "api-ca.pem", "--timeout-ms", CALL_TIMEOUT_MS]
        if i == 0:
            flags += ["--tls-cert", "engine.pem", "--tls-key", "engine.key"]
        return flags

    def build(self):
        """The genesis ceremony and each member's init, as the guide writes
        them (docs/OPERATIONS.md, section 1), keys without passphrases."""
        entries = []
        for i in range(NODES):
            self.ctl(i, "keygen", "--out", f"m{i}.key", "--label", f"member-{i}",
                     "--no-passphrase")
            entry = self.ctl(i, "genesis", "member", "--key", f"m{i}.key", "--name",
                             f"Member {i}", "--role", ["hospital", "lab", "insurer"][i],
                             "--address", f"{self.lan.addr(i)}:{PEER_PORT}").stdout
            with open(f"{self.d}/m{i}.json", "w") as f:
                f.write(entry)
            entries += ["--member", f"m{i}.json"]
        self.ctl(0, "genesis", *entries, "--chain-id", "ehr-netns-1", "--emergency-roles",
                 "hospital", "--out", "genesis.pb")
        for i in range(NODES):
            self.ctl(i, "init", "--genesis", "genesis.pb", "--key", f"m{i}.key", "--data",
                     f"data{i}", "--peer-listen", f"{self.lan.addr(i)}:{PEER_PORT}",
                     "--rpc-listen", self.node(i))
            # TLS on the API (docs/OPERATIONS.md, section 2): the node would
            # refuse a LAN address in cleartext.
            path = f"{self.d}/data{i}/ehrd.json"
            with open(path) as f:
                cfg = json.load(f)
            cfg["tls_cert_file"] = f"{self.d}/api{i}.pem"
            cfg["tls_key_file"] = f"{self.d}/api{i}.key"
            if i == 0:
                cfg["tls_client_ca_file"] = f"{self.d}/integrators-ca.pem"
            with open(path, "w") as f:
                json.dump(cfg, f, indent=2)

    def start(self, i):
        out = open(f"{self.d}/ehrd{i}.log", "w")
        self.procs[i] = subprocess.Popen(
            ["ip", "netns", "exec", self.lan.ns[i], self.args.ehrd, "--config",
             f"{self.d}/data{i}/ehrd.json", "--genesis", f"{self.d}/genesis.pb"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.d)
        out.close()

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def health(self, i):
        cmd = ["ip", "netns", "exec", self.lan.ns[i], sys.executable, os.path.abspath(__file__),
               "probe", "--stubs", f"{self.d}/stubs", "--ca", f"{self.d}/api-ca.pem",
               "--target", self.node(i)]
        if i == 0:  # mutual TLS: the integration engine's certificate
            cmd += ["--cert", f"{self.d}/engine.pem", "--key", f"{self.d}/engine.key"]
        r = run(cmd, ok=False)
        return r.stdout.strip() or f"ERROR {r.stderr.strip()}"

    def wait_health(self, i, want):
        deadline = time.monotonic() + CHANGE_WAIT_S
        seen = None
        while time.monotonic() < deadline:
            seen = self.health(i)
            if seen == want:
                return True
            time.sleep(0.5)
        log(f"node {i}: health {seen!r}, not {want} after {CHANGE_WAIT_S} s")
        return False

    def status(self, i):
        r = self.ctl(i, "status", "--node", self.node(i), *self.tls(i), "--json")
        return json.loads(r.stdout)

    def tail_logs(self):
        for i in range(NODES):
            try:
                with open(f"{self.d}/ehrd{i}.log") as f:
                    lines = f.readlines()[-15:]
                log(f"--- ehrd{i}.log (last lines)\n{''.join(lines)}")
            except OSError:
                pass


def enroll(net, via, name):
    """A patient enrolled by the member of node `via`, over TLS; the
    transaction's hash."""
    net.ctl(via, "patient", "keygen", "--out", f"{name}.key", "--no-passphrase")
    r = net.ctl(via, "patient", "enroll", "--patient", f"{name}.key", "--key", f"m{via}.key",
                "--node", net.node(via), *net.tls(via), "--wait", "--json")
    out = json.loads(r.stdout)
    tx = out.get("tx_hash") or out.get("hash") or out.get("tx")
    check(isinstance(tx, str) and len(tx) == 64, f"{name} enrolled through node {via} ({tx})")
    return tx


def scenario(net, lan):
    for i in range(NODES):
        net.start(i)
    for i in range(NODES):
        r = net.ctl(i, "status", "--node", net.node(i), *net.tls(i), "--wait-leader",
                    str(CHANGE_WAIT_S), ok=False)
        check(r.returncode == 0, f"node {i} sees a leader over the bridge (TLS API)")

    # 1. Who TLS lets in.
    r = net.ctl(1, "status", "--node", net.node(1), "--timeout-ms", "3000", ok=False)
    check(r.returncode != 0, "a cleartext client is refused by a TLS node")
    r = net.ctl(1, "status", "--node", net.node(1), "--tls-ca", "stranger-ca.pem",
                "--timeout-ms", "3000", ok=False)
    check(r.returncode != 0, "a client trusting another CA refuses the node's certificate")
    r = net.ctl(2, "status", "--node", net.node(1), "--tls-ca", "api-ca.pem", ok=False)
    check(r.returncode == 0, "a client with the CA, on another host, is served")
    r = net.ctl(1, "status", "--node", net.node(0), "--tls-ca", "api-ca.pem",
                "--timeout-ms", "3000", ok=False)
    check(r.returncode != 0, "mutual TLS: a client without a certificate is refused")
    r = net.ctl(1, "status", "--node", net.node(0), *net.tls(0), ok=False)
    check(r.returncode == 0, "mutual TLS: the integration engine's certificate is served")
    tx = enroll(net, 1, "patient1")
    r = net.ctl(2, "tx", "show", tx, "--node", net.node(2), *net.tls(2), ok=False)
    check(r.returncode == 0 and tx in r.stdout,
          "the enrolment submitted through node 1 reads back through node 2")

    # 2. Health as the network changes.
    for i in range(NODES):
        check(net.wait_health(i, "SERVING"), f"node {i}: SERVING")
    lan.cut(2, True)
    check(net.wait_health(2, "NOT_SERVING"), "node 2 cut off (its link down): NOT_SERVING")
    for i in (0, 1):
        check(net.wait_health(i, "SERVING"), f"node {i}: SERVING without node 2")
    tx2 = enroll(net, 0, "patient2")
    applied_without = net.status(0)["applied_index"]
    lan.cut(2, False)
    check(net.wait_health(2, "SERVING"), "node 2, its link back: SERVING again")
    r = net.ctl(2, "tx", "show", tx2, "--node", net.node(2), *net.tls(2), ok=False)
    check(r.returncode == 0 and tx2 in r.stdout,
          "node 2 caught up: it serves the enrolment committed while it was cut off")
    applied2 = net.status(2)["applied_index"]
    check(applied2 >= applied_without,
          f"node 2 applied {applied2}, at least node 0's {applied_without} before the link came back")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        ap = argparse.ArgumentParser()
        ap.add_argument("mode")
        ap.add_argument("--stubs", required=True)
        ap.add_argument("--ca", required=True)
        ap.add_argument("--target", required=True)
        ap.add_argument("--cert")
        ap.add_argument("--key")
        health_probe(ap.parse_args())
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--ehrd", required=True)
    ap.add_argument("--ehrctl", required=True)
    ap.add_argument("--proto-root", required=True)
    args = ap.parse_args()
    # The commands run in other directories (the test's own, under `ip netns exec`).
    args.ehrd, args.ehrctl = os.path.abspath(args.ehrd), os.path.abspath(args.ehrctl)
    if os.geteuid() != 0:
        skip("needs root to make network namespaces")
    for tool in ("ip", "openssl"):
        if shutil.which(tool) is None:
            skip(f"{tool} missing")
    try:
        import grpc  # noqa: F401
    except ImportError as e:
        skip(f"python3-grpcio missing ({e})")
    probe = subprocess.run(["ip", "netns", "add", f"ehr{os.getpid()}probe"], capture_output=True)
    if probe.returncode != 0:
        skip(f"cannot make a network namespace: {probe.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", f"ehr{os.getpid()}probe"], capture_output=True)

    lan = Lan(f"{os.getpid() % 100000}")
    d = tempfile.mkdtemp(prefix="ehr-netns-")
    net = Network(args, lan, d)
    failed = True
    try:
        lan.up()
        make_certs(d, lan)
        health_stubs(args.proto_root, f"{d}/stubs")
        net.build()
        scenario(net, lan)
        failed = False
    finally:
        net.stop_all()
        if failed:
            net.tail_logs()
        lan.remove()
        shutil.rmtree(d, ignore_errors=True)
    log("netns network: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
