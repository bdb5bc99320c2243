"""Smoke test of tandem-bench (tests/bench/): against a real 3-node tandem cluster it preloads
keys that really land, runs closed-loop writes and reads and an open-loop run at a fixed rate
with -o json, and reports errors by kind against dead and silent servers; https:// endpoints
with client certificates against a TLS 1.3 test server, and the refusals on either side; against
a one-member etcd when etcd is installed (compare-etcd.sh installs it; CI may not have it)."""

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BIN_DIR, SOURCE_DIR, Cluster, http, run_tests, wait_until  # noqa: E402

BENCH = os.path.join(BIN_DIR, "tandem-bench")
BENCH_TIMEOUT_S = 60  # any single tandem-bench run here asks for at most a few seconds
PRELOAD_KEYS = 200
VALUE_SIZE = 32
ERROR_KINDS = ("connect", "io", "timeout", "http_4xx", "http_5xx", "not_found", "parse",
               "dropped")
ETCD_START_TIMEOUT_S = 30


def bench(*args, expect_rc=0):
    """Runs tandem-bench -o json with args; returns the decoded report."""
    argv = [BENCH, "-o", "json"] + [str(a) for a in args]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=BENCH_TIMEOUT_S)
    assert p.returncode == expect_rc, (argv, p.returncode, p.stdout, p.stderr)
    if expect_rc != 0:
        return p.stderr
    report = json.loads(p.stdout)
    print("  %s -> %.0f ops/s, p99 %d us, errors %s"
          % (" ".join(argv[3:]), report["ops_per_s"], report["latency_us"]["p99"],
             report["errors"]["total"]), flush=True)
    return report


def check_report(r, target, connections):
    """Every field a script reads is there, and the numbers are consistent with each other."""
    for key in ("target", "endpoints", "connections", "mode", "rate", "read_ratio",
                "consistency", "value_size", "keys", "warmup_s", "duration_s", "connects", "ops",
                "writes", "reads", "ops_per_s", "latency_us", "errors"):
        assert key in r, (key, r)
    for key in ("p50", "p90", "p99", "p99_9", "max", "mean"):
        assert key in r["latency_us"], (key, r)
    for key in ERROR_KINDS + ("total", "samples"):
        assert key in r["errors"], (key, r)
    assert r["target"] == target and r["connections"] == connections, r
    assert r["ops"] == r["writes"] + r["reads"], r
    assert r["errors"]["total"] == sum(r["errors"][k] for k in ERROR_KINDS), r
    lat = r["latency_us"]
    if r["ops"] > 0:
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"], lat
        assert r["duration_s"] > 0, r
        assert abs(r["ops_per_s"] - r["ops"] / r["duration_s"]) < 1.0, r


def check_clean(r):
    assert r["ops"] > 0, r
    assert r["errors"]["total"] == 0, r["errors"]


def test_tandem_target():
    # Plaintext: benchmarks are what --insecure is for (the TLS mode is compare-etcd.sh's).
    with Cluster(topology="3", insecure=True) as c:
        leader_api = c.nodes[c.leader()]["api"]
        preload = bench("--target", "tandem", "--endpoints", leader_api, "--connections", 8,
                        "--ops", PRELOAD_KEYS, "--keys", PRELOAD_KEYS, "--key-order",
                        "sequential", "--value-size", VALUE_SIZE)
        check_report(preload, "tandem", 8)
        check_clean(preload)
        assert preload["ops"] == PRELOAD_KEYS and preload["writes"] == PRELOAD_KEYS, preload
        # The writes really landed: every key, with a value of the asked size.
        status, _, body = c.api(c.leader(), "GET", "/v1/kv?prefix=bench-&limit=1000")
        assert status == 200, body
        kvs = json.loads(body)["kvs"]
        assert sorted(kv["key"] for kv in kvs) == sorted(
            "bench-%d" % i for i in range(PRELOAD_KEYS)), [kv["key"] for kv in kvs][:10]
        assert all(len(base64.b64decode(kv["value"])) == VALUE_SIZE for kv in kvs), kvs[0]

        writes = bench("--target", "tandem", "--endpoints", leader_api, "--connections", 4,
                       "--duration", 2, "--keys", PRELOAD_KEYS, "--value-size", VALUE_SIZE)
        check_report(writes, "tandem", 4)
        check_clean(writes)
        assert writes["reads"] == 0 and writes["mode"] == "closed", writes
        assert 1.9 <= writes["duration_s"] <= 3.0, writes

        everyone = ",".join(c.endpoints)
        for consistency in ("linearizable", "local"):
            reads = bench("--target", "tandem", "--endpoints", everyone, "--connections", 6,
                          "--duration", 2, "--warmup", 0.5, "--keys", PRELOAD_KEYS,
                          "--read-ratio", 1, "--consistency", consistency)
            check_report(reads, "tandem", 6)
            check_clean(reads)
            assert reads["writes"] == 0 and reads["consistency"] == consistency, reads
            assert len(reads["endpoints"]) == 3, reads

        # Open loop holds its rate when the cluster keeps up: 150 ops/s for 2 s.
        paced = bench("--target", "tandem", "--endpoints", leader_api, "--connections", 3,
                      "--rate", 150, "--duration", 2, "--keys", PRELOAD_KEYS, "--read-ratio",
                      0.5, "--value-size", VALUE_SIZE)
        check_report(paced, "tandem", 3)
        check_clean(paced)
        assert paced["mode"] == "open", paced
        assert 240 <= paced["ops"] <= 330, paced
        assert paced["reads"] > 0 and paced["writes"] > 0, paced

        # Reads of keys never written count as not_found, not as successes.
        missing = bench("--target", "tandem", "--endpoints", leader_api, "--connections", 2,
                        "--ops", 20, "--keys", 1000000, "--read-ratio", 1)
        check_report(missing, "tandem", 2)
        assert missing["errors"]["not_found"] >= 19, missing
        assert "404" in missing["errors"]["samples"]["not_found"], missing


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_errors_by_kind():
    # Nobody listens: every attempt is a connect error, and the run still ends on time.
    dead = "http://127.0.0.1:%d" % free_port()
    started = time.monotonic()
    r = bench("--target", "tandem", "--endpoints", dead, "--connections", 2, "--duration", 1)
    assert time.monotonic() - started < 10
    check_report(r, "tandem", 2)
    assert r["ops"] == 0 and r["errors"]["connect"] > 0, r
    assert r["errors"]["total"] == r["errors"]["connect"], r

    # A server that accepts and never answers: timeouts, bounded by --timeout-ms.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        r = bench("--target", "etcd", "--endpoints", url, "--connections", 2, "--ops", 4,
                  "--timeout-ms", 300)
        check_report(r, "etcd", 2)
        assert r["errors"]["timeout"] == 4 and r["ops"] == 0, r
    finally:
        silent.close()

    # A server that answers garbage: parse errors.
    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen(16)
    stop = threading.Event()

    def serve():
        garbage.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = garbage.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(b"NOT HTTP\r\n\r\n")
                except OSError:
                    pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        url = "http://127.0.0.1:%d" % garbage.getsockname()[1]
        r = bench("--target", "tandem", "--endpoints", url, "--connections", 1, "--ops", 3)
        check_report(r, "tandem", 1)
        assert r["errors"]["parse"] == 3, r
    finally:
        stop.set()
        t.join(5)
        garbage.close()


def test_a_503_is_sent_again():
    """A 503 (tandem: its raft log is full until a snapshot ends, or a busy pool) asks for the
    same request again: tandem-bench sends it again after a pause, counts it in busy_retries,
    and the operation counts once, as ok, when it is taken."""
    import http.server

    answered = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_PUT(self):  # noqa: N802 - the http.server API
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            n = answered[self.path] = answered.get(self.path, 0) + 1
            status, body = (503, b'{"error":"the raft log is full"}') if n <= 2 else \
                (200, b'{"index":1}')
            self.send_response(status)
            if status == 503:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = "http://127.0.0.1:%d" % server.server_address[1]
        r = bench("--target", "tandem", "--endpoints", url, "--connections", 1, "--ops", 3,
                  "--key-order", "sequential", "--warmup", 0)
        check_report(r, "tandem", 1)
        check_clean(r)
        assert r["ops"] == 3 and r["writes"] == 3 and r["busy_retries"] == 6, r
        assert sorted(answered.values()) == [3, 3, 3], answered
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


def test_usage_errors():
    for args in (["--endpoints", "http://127.0.0.1:1"],
                 ["--target", "tandem"],
                 ["--target", "consul", "--endpoints", "http://127.0.0.1:1"],
                 ["--target", "tandem", "--endpoints", "http://127.0.0.1:1", "--ops", 5,
                  "--duration", 1],
                 ["--target", "tandem", "--endpoints", "http://127.0.0.1:1", "--read-ratio",
                  "1.5"]):
        err = bench(*args, expect_rc=2)
        assert "tandem-bench:" in err, err
    err = bench("--target", "tandem", "--endpoints", "ftp://127.0.0.1:1", expect_rc=1)
    assert "http://" in err, err


class TlsHttpServer:
    """A TLS 1.3 HTTP/1.1 server on 127.0.0.1 that wants a client certificate of ca and answers
    every request 200 {} on a kept-alive connection; it records the client CNs it saw."""

    def __init__(self, certs, ca, name):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(os.path.join(certs, ca))
        self.context.load_cert_chain(os.path.join(certs, name + ".pem"),
                                     os.path.join(certs, name + ".key"))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.url = "https://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.client_names = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.accept, daemon=True)]
        self.threads[0].start()

    def accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            t = threading.Thread(target=self.serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def serve(self, conn):
        conn.settimeout(5)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                subject = dict(x[0] for x in tls.getpeercert()["subject"])
                self.client_names.append(subject["commonName"])
                pending = b""
                while not self.stop.is_set():
                    while b"\r\n\r\n" not in pending:
                        chunk = tls.recv(65536)
                        if not chunk:
                            return
                        pending += chunk
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    while len(pending) < length:
                        pending += tls.recv(65536)
                    pending = pending[length:]
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        except (OSError, ssl.SSLError, ValueError):
            pass  # a refused handshake or a client gone

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        self.listener.close()


def test_https_endpoints():
    work = tempfile.mkdtemp(prefix="tandem-bench-tls-")
    certs, other = os.path.join(work, "certs"), os.path.join(work, "other")
    script = os.path.join(SOURCE_DIR, "deploy", "certs.sh")
    for d in (certs, other):
        subprocess.run(["bash", script, d, "--nodes", "node-1", "--users", "admin"], check=True,
                       stdout=subprocess.DEVNULL, timeout=60)
    ca, admin, admin_key = (os.path.join(certs, f) for f in ("ca.pem", "admin.pem", "admin.key"))
    good = TlsHttpServer(certs, "ca.pem", "node-1")
    user_server = TlsHttpServer(certs, "ca.pem", "admin")  # a user certificate as a server
    try:
        tls = ("--cacert", ca, "--cert", admin, "--key", admin_key)
        r = bench("--target", "tandem", "--endpoints", good.url, "--connections", 2, "--ops",
                  20, "--value-size", VALUE_SIZE, *tls)
        check_report(r, "tandem", 2)
        check_clean(r)
        assert r["connects"] == 2, r  # kept alive over TLS
        assert good.client_names == ["admin", "admin"], good.client_names

        # The server must be a node certificate of our CA.
        r = bench("--target", "tandem", "--endpoints", user_server.url, "--ops", 2, *tls)
        assert r["errors"]["connect"] == 2, r
        assert "peer is not a node certificate" in r["errors"]["samples"]["connect"], r
        other_tls = ("--cert", os.path.join(other, "admin.pem"), "--key",
                     os.path.join(other, "admin.key"))
        r = bench("--target", "tandem", "--endpoints", good.url, "--ops", 2, "--cacert",
                  os.path.join(other, "ca.pem"), *other_tls)
        assert r["errors"]["connect"] == 2, r
        assert "certificate verify failed" in r["errors"]["samples"]["connect"], r
        # A client certificate of another CA (this client trusts both CAs): the server refuses
        # it, which TLS 1.3 tells the client after its handshake, so the request fails.
        both_cas = os.path.join(work, "both-cas.pem")
        with open(both_cas, "w") as f:
            for d in (certs, other):
                f.write(open(os.path.join(d, "ca.pem")).read())
        r = bench("--target", "tandem", "--endpoints", good.url, "--ops", 2, "--cacert",
                  both_cas, *other_tls)
        assert r["errors"]["total"] == 2 and r["ops"] == 0, r
        # The request races the server's alert: the client reads the alert, or its write meets
        # the closed socket first.
        assert r["errors"]["io"] == 2, r
        sample = r["errors"]["samples"]["io"]
        assert "alert" in sample or "broken pipe" in sample or "reset" in sample, r

        # Flags: all three or none; an https endpoint needs them; files must load.
        err = bench("--target", "tandem", "--endpoints", good.url, "--cacert", ca, expect_rc=1)
        assert "go together" in err, err
        err = bench("--target", "tandem", "--endpoints", good.url, expect_rc=1)
        assert "needs --cacert, --cert and --key" in err, err
        err = bench("--target", "tandem", "--endpoints", good.url, "--cacert", ca, "--cert",
                    admin, "--key", os.path.join(certs, "node-1.key"), expect_rc=1)
        assert "does not match" in err, err
    finally:
        good.close()
        user_server.close()
        shutil.rmtree(work, ignore_errors=True)


def test_etcd_target():
    etcd = shutil.which("etcd")
    if etcd is None:
        print("etcd is not installed: only the tandem target was exercised against a server")
        return
    work = tempfile.mkdtemp(prefix="tandem-bench-etcd-")
    client, peer = "http://127.0.0.1:%d" % free_port(), "http://127.0.0.1:%d" % free_port()
    log = open(os.path.join(work, "etcd.log"), "w")
    proc = subprocess.Popen(
        [etcd, "--name", "e0", "--data-dir", os.path.join(work, "data"),
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", "e0=" + peer, "--logger", "zap", "--log-level", "warn"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is None and b'"true"' in http("GET", client + "/health")[2],
                   ETCD_START_TIMEOUT_S, "etcd to be healthy")
        preload = bench("--target", "etcd", "--endpoints", client, "--connections", 4, "--ops",
                        50, "--keys", 50, "--key-order", "sequential", "--value-size", VALUE_SIZE)
        check_report(preload, "etcd", 4)
        check_clean(preload)
        status, _, body = http("POST", client + "/v3/kv/range",
                               {"key": base64.b64encode(b"bench-49").decode()})
        kvs = json.loads(body).get("kvs", [])
        assert status == 200 and len(kvs) == 1, body
        assert len(base64.b64decode(kvs[0]["value"])) == VALUE_SIZE, body
        reads = bench("--target", "etcd", "--endpoints", client, "--connections", 4,
                      "--duration", 1, "--keys", 50, "--read-ratio", 1)
        check_report(reads, "etcd", 4)
        check_clean(reads)
        missing = bench("--target", "etcd", "--endpoints", client, "--connections", 1, "--ops",
                        5, "--keys", 1000000, "--read-ratio", 1, "--consistency", "local")
        assert missing["errors"]["not_found"] >= 4, missing
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_tests()
