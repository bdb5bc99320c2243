"""The API and node-to-node HTTP over TLS in real tandemd processes (issue 12): SIGHUP swaps a
certificate while writes continue (an open kept-alive connection keeps working, new connections get
the new certificate, /v1/status shows it), a plaintext client is refused, tandemd refuses to start
with a missing or mismatched key (one stderr line, non-zero exit), and --insecure says so at warn.

The nodes are started here directly with certificates made by the openssl CLI (the recipe of
deploy/certs.sh: a P-256 CA, node certificates with EKU serverAuth+clientAuth and SAN DNS:<name>,
IP:127.0.0.1, a user certificate with clientAuth), each stopped by its PID.
"""

import http.client as httpclient
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BIN_DIR, ClusterError, run_tests, wait_until  # noqa: E402

NODES = [("east-1", "east"), ("west-1", "west"), ("witness-1", "witness")]
UP_TIMEOUT_S = 30
WRITES = 300            # the bounded write loop; the swap happens half-way
WRITE_LOOP_S = 90       # and it ends by then whatever happens
START_FAIL_TIMEOUT_S = 10


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_ca(d):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=tandem-test-ca", "-days", "800",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d, name, out, node=True, days=400):
    """Signs <out>.pem/<out>.key for name with the CA in d; returns the serial (hex, upper)."""
    ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    if node:
        ext += "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:%s,IP:127.0.0.1\n" % name
    else:
        ext += "extendedKeyUsage=clientAuth\n"
    with open(os.path.join(d, out + ".ext"), "w") as f:
        f.write(ext)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", out + ".key", "-out", out + ".csr", "-subj", "/CN=" + name, cwd=d)
    openssl("x509", "-req", "-in", out + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", str(days), "-extfile", out + ".ext", "-out", out + ".pem",
            cwd=d)
    serial = subprocess.run(["openssl", "x509", "-in", out + ".pem", "-noout", "-serial"], cwd=d,
                            check=True, capture_output=True, text=True).stdout
    return serial.strip().split("=", 1)[1].upper()


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class TlsCluster:
    """Three tandemd processes with TLS on the API, in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tandem-tls-")
        self.tls = os.path.join(self.dir, "tls")
        os.mkdir(self.tls)
        make_ca(self.tls)
        for name, _ in NODES:
            make_leaf(self.tls, name, name)
        make_leaf(self.tls, "admin", "admin", node=False)
        ports = free_ports(2 * len(NODES))
        self.api = {}
        self.procs = {}
        members = []
        for i, (name, site) in enumerate(NODES):
            self.api[name] = ports[2 * i + 1]
            members.append("member = %s,%s,127.0.0.1:%d,https://127.0.0.1:%d,voter"
                           % (name, site, ports[2 * i], ports[2 * i + 1]))
        for i, (name, site) in enumerate(NODES):
            self.write_conf(name, site, ports[2 * i], ports[2 * i + 1], members)

    def conf(self, name):
        return os.path.join(self.dir, name, "tandem.conf")

    def write_conf(self, name, site, raft_port, api_port, members):
        node_dir = os.path.join(self.dir, name)
        os.makedirs(os.path.join(node_dir, "data"))
        lines = ["[tandem]", "name = " + name, "site = " + site, "cluster_id = tls-test",
                 "data_dir = " + os.path.join(node_dir, "data"),
                 "raft_address = 127.0.0.1:%d" % raft_port,
                 "api_address = 127.0.0.1:%d" % api_port,
                 "api_url = https://127.0.0.1:%d" % api_port, "join = false", "log_level = info",
                 "tls_ca = " + os.path.join(self.tls, "ca.pem"),
                 "tls_cert = " + os.path.join(self.tls, name + ".pem"),
                 "tls_key = " + os.path.join(self.tls, name + ".key")] + members
        with open(self.conf(name), "w") as f:
            f.write("\n".join(lines) + "\n")

    def log(self, name):
        return os.path.join(self.dir, name, "tandemd.log")

    def start(self):
        for name, _ in NODES:
            log = open(self.log(name), "ab")
            self.procs[name] = subprocess.Popen(
                [os.path.join(BIN_DIR, "tandemd"), "--config", self.conf(name)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()
        return self

    def stop(self, failed):
        for name, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if failed:
            for name, _ in NODES:
                with open(self.log(name), errors="replace") as f:
                    print("---- %s" % name + "".join(f.readlines()[-30:]))
            print("files kept in %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop(exc_type is not None)
        return False

    def context(self):
        ctx = ssl.create_default_context(cafile=os.path.join(self.tls, "ca.pem"))
        ctx.load_cert_chain(os.path.join(self.tls, "admin.pem"), os.path.join(self.tls, "admin.key"))
        return ctx

    def connect(self, name, timeout=5):
        return httpclient.HTTPSConnection("127.0.0.1", self.api[name], timeout=timeout,
                                          context=self.context())

    def request(self, conn, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def get_json(self, name, path):
        conn = self.connect(name, timeout=2)
        try:
            status, body = self.request(conn, "GET", path)
        finally:
            conn.close()
        if status != 200:
            raise ClusterError("%s GET %s: %d %s" % (name, path, status, body[:200]))
        return json.loads(body)

    def leader(self):
        def agreed():
            names = {self.get_json(n, "/v1/status")["leader"]["name"]
                     if self.get_json(n, "/v1/status")["leader"] else None for n, _ in NODES}
            if len(names) == 1 and None not in names:
                return names.pop()
            return None
        return wait_until(agreed, UP_TIMEOUT_S, "a leader all nodes agree on")

    def rotate(self, name, days):
        """A new certificate (new key, new serial) for name, in place of its files."""
        return make_leaf(self.tls, name, name, days=days)


def test_sighup_swaps_certificate_while_writes_continue():
    with TlsCluster() as c:
        leader = c.leader()
        follower = next(n for n, _ in NODES if n != leader and n != "witness-1")
        old = c.get_json(leader, "/v1/status")["tls"]
        assert old["enabled"] and old["cert"]["name"] == leader, old
        assert old["reloads"] == 0 and old["cert"]["days_left"] >= 398, old
        # Writes through a follower travel to the leader over node-to-node TLS.
        conn = c.connect(follower, timeout=10)
        serials = {}
        deadline = time.monotonic() + WRITE_LOOP_S
        for i in range(WRITES):
            assert time.monotonic() < deadline, "write loop took over %ds" % WRITE_LOOP_S
            if i == WRITES // 2:
                for name, _ in NODES:  # every node at once, while writes go on
                    serials[name] = c.rotate(name, days=200)
                    c.procs[name].send_signal(signal.SIGHUP)
            status, body = c.request(conn, "PUT", "/v1/kv/tls-%d" % i, json.dumps(i))
            assert status == 200, (i, status, body[:200])
        conn.close()
        for name, _ in NODES:
            def reloaded():
                return c.get_json(name, "/v1/status")["tls"]["reloads"] == 1
            wait_until(reloaded, 10, "%s reloaded" % name)
            tls = c.get_json(name, "/v1/status")["tls"]
            assert tls["cert"]["name"] == name and 198 <= tls["cert"]["days_left"] <= 200, tls
            assert tls["cert"]["not_after"] < old["cert"]["not_after"], tls
            fresh = c.connect(name)
            fresh.connect()
            seen = fresh.sock.getpeercert()["serialNumber"].upper()
            fresh.close()
            assert seen == serials[name], (name, seen, serials[name])
        with open(c.log(leader), errors="replace") as f:
            assert "SIGHUP: certificates reloaded" in f.read()
        # The writes are all there, through the new certificates.
        conn = c.connect(follower)
        status, body = c.request(conn, "GET", "/v1/kv/tls-%d" % (WRITES - 1))
        conn.close()
        assert status == 200 and json.loads(body) == WRITES - 1, (status, body[:200])


def test_plaintext_refused_and_counted():
    with TlsCluster() as c:
        leader = c.leader()
        conn = httpclient.HTTPConnection("127.0.0.1", c.api[leader], timeout=5)
        try:
            conn.request("GET", "/healthz")
            answer = conn.getresponse().status
        except (OSError, httpclient.HTTPException):
            answer = None
        finally:
            conn.close()
        assert answer is None, "a plaintext request got HTTP %s" % answer
        conn = c.connect(leader)
        status, body = c.request(conn, "GET", "/metrics")
        conn.close()
        assert status == 200, status
        text = body.decode()
        refused = [line for line in text.splitlines() if line.startswith(
            'tandem_connections_refused_total{listener="api",reason="tls"} ')]
        assert refused and int(refused[0].split()[-1]) >= 1, refused
        assert 'tandem_tls_cert_expiry_seconds{cert="node"} ' in text
        assert 'tandem_tls_cert_expiry_seconds{cert="ca"} ' in text
        assert "tandem_tls_reloads_total 0" in text


def start_fails(c, name, extra=()):
    """Starts node name with extra flags; returns (exit code, stderr lines) of its failure."""
    p = subprocess.run([os.path.join(BIN_DIR, "tandemd"), "--config", c.conf(name)] + list(extra),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=START_FAIL_TIMEOUT_S)
    return p.returncode, p.stderr.splitlines()


def test_refuses_to_start_with_bad_key():
    c = TlsCluster()  # configured, never started
    try:
        wrong = os.path.join(c.tls, "west-1.key")
        code, lines = start_fails(c, "east-1", ["--tls_key", wrong])
        assert code != 0 and len(lines) == 1 and wrong in lines[0], (code, lines)
        missing = os.path.join(c.tls, "nowhere.pem")
        code, lines = start_fails(c, "east-1", ["--tls_cert", missing])
        assert code != 0 and len(lines) == 1 and missing in lines[0], (code, lines)
    finally:
        c.stop(failed=False)


def test_insecure_warns_at_every_start():
    c = TlsCluster()
    try:
        for attempt in range(2):
            log = open(c.log("east-1"), "ab")
            proc = subprocess.Popen([os.path.join(BIN_DIR, "tandemd"), "--config",
                                     c.conf("east-1"), "--insecure"],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()
            c.procs["east-1"] = proc

            def warned():
                with open(c.log("east-1"), errors="replace") as f:
                    return f.read().count("insecure: TLS and authentication are off") == attempt + 1
            wait_until(warned, 10, "the insecure warning")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    finally:
        c.stop(failed=False)


if __name__ == "__main__":
    run_tests()
