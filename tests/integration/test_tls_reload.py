"""The API and node-to-node HTTP over TLS in real tandemd processes (issue 12): SIGHUP swaps every
node's certificate while a bounded write loop runs through one kept-alive connection to a
follower (its writes are forwarded to the leader over node-to-node TLS): every write succeeds, new
connections get the new certificate and /v1/status shows it; a plaintext client is refused and
counted; tandemd refuses to start with a mismatched key or a missing certificate (one stderr
line, non-zero exit); --insecure says so at warn on every start."""

import http.client as httpclient
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import (BIN_DIR, SOURCE_DIR, Cluster, http_connection, run_tests,  # noqa: E402
                     tls_socket, wait_until)

CERTS = os.path.join(SOURCE_DIR, "deploy", "certs.sh")
WRITES = 300            # the bounded write loop; the swap happens half-way
WRITE_LOOP_S = 90       # and it ends by then whatever happens
RELOAD_TIMEOUT_S = 10   # a SIGHUP'd node showing its new certificate
START_TIMEOUT_S = 10    # tandemd refusing to start, or logging its start


def renew(c, name, days):
    """A new key and certificate for node name (deploy/certs.sh renew); returns its serial."""
    subprocess.run(["bash", CERTS, "renew", c.tls_path(""), name, "--days", str(days)],
                   stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=60)
    out = subprocess.run(["openssl", "x509", "-in", c.tls_path(name + ".pem"), "-noout",
                          "-serial"], capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1].upper()


def served_serial(c, name):
    """Serial of the certificate node name's API presents on a new connection."""
    with tls_socket(c.url(name)) as s:
        return s.getpeercert()["serialNumber"].upper()


def tandemd(c, name, *flags):
    """Runs node name's tandemd with extra flags; returns the process (stdout and stderr to
    pipes)."""
    return subprocess.Popen([os.path.join(BIN_DIR, "tandemd"), "--config", c._conf(name)]
                            + list(flags), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sighup_swaps_certificates_while_writes_continue():
    """Also the plaintext refusal, the metrics and the start checks: one cluster for all of it,
    as starting one costs seconds of CI."""
    with Cluster("3", cert_cache=False) as c:
        leader = c.leader()
        follower = next(n for n in c.names if n != leader and not n.startswith("witness"))
        old = c.status(leader)["tls"]
        assert old["enabled"] and old["cert"]["name"] == leader and old["reloads"] == 0, old
        conn = http_connection(c.url(follower), timeout=10)  # kept alive across the swap
        serials = {}
        deadline = time.monotonic() + WRITE_LOOP_S
        for i in range(WRITES):
            assert time.monotonic() < deadline, "the write loop took over %ds" % WRITE_LOOP_S
            if i == WRITES // 2:
                for name in c.names:  # every node, while the writes go on
                    serials[name] = renew(c, name, days=200)
                    os.kill(c.nodes[name]["pid"], signal.SIGHUP)
            conn.request("PUT", "/v1/kv/tls-%d" % i, body=json.dumps(i))
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (i, resp.status, body[:200])
        conn.close()
        for name in c.names:
            wait_until(lambda: c.status(name)["tls"]["reloads"] == 1, RELOAD_TIMEOUT_S,
                       "%s reloaded" % name)
            tls = c.status(name)["tls"]
            assert tls["cert"]["name"] == name and 198 <= tls["cert"]["days_left"] <= 200, tls
            assert served_serial(c, name) == serials[name], name
        assert "SIGHUP: certificates reloaded" in c.log_tail(leader, 200)
        assert json.loads(c.kv_get(follower, "tls-%d" % (WRITES - 1))) == WRITES - 1
        # A plaintext client gets no HTTP answer, and the refusal is counted.
        try:
            plain = http_connection("http://" + c.url(leader).split("://", 1)[1], timeout=5)
            plain.request("GET", "/healthz")
            answer = plain.getresponse().status
        except (OSError, httpclient.HTTPException):
            answer = None
        assert answer is None, "a plaintext request got HTTP %s" % answer
        status, _, body = c.api(leader, "GET", "/metrics")
        assert status == 200, status
        lines = body.decode().splitlines()
        refused = [l for l in lines if l.startswith(
            'tandem_connections_refused_total{listener="api",reason="tls"} ')]
        assert refused and int(refused[0].split()[-1]) >= 1, refused
        assert "tandem_tls_reloads_total 1" in lines
        assert any(l.startswith('tandem_tls_cert_expiry_seconds{cert="node"} ') for l in lines)
        check_start_refusals_and_the_insecure_warning(c)


def check_start_refusals_and_the_insecure_warning(c):
    """On a stopped node of c: a bad key or a missing certificate, then --insecure twice."""
    name = c.names[-1]
    c.stop(name)
    for flag, path in (("--tls_key", c.tls_path(c.names[0] + ".key")),
                       ("--tls_cert", c.tls_path("nowhere.pem"))):
        p = tandemd(c, name, flag, path)
        out, err = p.communicate(timeout=START_TIMEOUT_S)
        lines = err.splitlines()
        assert p.returncode != 0 and len(lines) == 1 and path in lines[0], (p.returncode, err)
    for attempt in range(2):  # on every start
        p = tandemd(c, name, "--insecure")
        watchdog = threading.Timer(START_TIMEOUT_S, p.kill)  # bounds the reads below
        watchdog.start()
        try:
            line = p.stderr.readline()
            while line and "insecure:" not in line:
                line = p.stderr.readline()
            assert " warn " in line and "TLS and authentication are off" in line, line
        finally:
            watchdog.cancel()
            p.send_signal(signal.SIGTERM)
            p.communicate(timeout=START_TIMEOUT_S)


if __name__ == "__main__":
    run_tests()
