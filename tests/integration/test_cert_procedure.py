"""The README's certificate procedure on a running cluster: a node certificate renewed with
deploy/certs.sh and loaded on SIGHUP while writes continue, without a restart; a user
certificate revoked (certs.sh revoke, the CRL every node names, SIGHUP) and refused from then
on; a user added later gets in."""

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import SOURCE_DIR, Cluster, ClusterError, run_tests, wait_until  # noqa: E402

CERTS = os.path.join(SOURCE_DIR, "deploy", "certs.sh")
RELOAD_TIMEOUT_S = 15   # a SIGHUP'd node serving the new certificate
WRITES_MAX = 2000       # the background writer stops after this many, or when told
WRITE_TIMEOUT_S = 10


def certs(*args):
    p = subprocess.run(["bash", CERTS] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise ClusterError("certs.sh %s: %s" % (" ".join(args), p.stderr.strip()))
    return p.stdout


def served_certificate(c, name):
    """DER of the certificate node name's API presents on a new connection."""
    parts = urllib.parse.urlsplit(c.nodes[name]["api"])
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as raw:
        with c.tls_context().wrap_socket(raw, server_hostname=parts.hostname) as s:
            return s.getpeercert(binary_form=True)


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class Writer:
    """Writes keys through one node in a thread until stopped (or WRITES_MAX); every answer is
    recorded, so a failure during a reload shows."""

    def __init__(self, c, name):
        self.c, self.name = c, name
        self.stop = threading.Event()
        self.done, self.failures = 0, []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        for i in range(WRITES_MAX):
            if self.stop.is_set():
                break
            try:
                self.c.kv_put(self.name, "rotate/%d" % i, b"v", timeout=WRITE_TIMEOUT_S)
                self.done += 1
            except (OSError, ClusterError) as e:
                self.failures.append("%d: %s" % (i, e))

    def finish(self):
        self.stop.set()
        self.thread.join(WRITE_TIMEOUT_S * 2)
        return self.done, self.failures


def refused(c, name, user):
    try:
        status, _, _ = c.api(name, "GET", "/v1/status", context=c.tls_context(user))
    except OSError:
        return True
    return status in (401, 403)


def test_renew_and_sighup_while_writing():
    with Cluster("3", cert_cache=False) as c:
        leader = c.leader()
        target = next(n for n in c.names if n != leader)
        pid = c.nodes[target]["pid"]
        old = served_certificate(c, target)
        assert old == der(c.tls_path(target + ".pem"))
        writer = Writer(c, target)  # through the node that reloads: its API and forwarding
        wait_until(lambda: writer.done >= 20, 30, "writes before the renewal")
        certs("renew", c.tls_path(""), target)
        new = der(c.tls_path(target + ".pem"))
        assert new != old
        os.kill(pid, signal.SIGHUP)
        wait_until(lambda: served_certificate(c, target) == new, RELOAD_TIMEOUT_S,
                   "%s serving its renewed certificate" % target)
        before = writer.done
        wait_until(lambda: writer.done >= before + 20, 30, "writes after the reload")
        done, failures = writer.finish()
        assert failures == [], failures[:5]
        assert c.nodes[target]["pid"] == pid and target in c.live(), "the node restarted"
        # Raft still runs over the renewed identity: a leader change to the node works.
        c.ctl("member", "transfer-leader", target)
        assert c.leader() == target
        c.wait_converged()
        print("%d writes through %s across the certificate reload, none failed" % (done, target))


def test_revoke_a_user_and_add_one():
    with Cluster("3", cert_cache=False) as c:
        name = c.leader()
        c.add_user("operator")  # a certificate's user acts only with a user record (issue 13)
        assert not refused(c, name, "operator")
        out = certs("revoke", c.tls_path(""), "operator")
        assert "revoked operator" in out, out
        for n in c.names:
            os.kill(c.nodes[n]["pid"], signal.SIGHUP)
        for n in c.names:
            wait_until(lambda: refused(c, n, "operator"), RELOAD_TIMEOUT_S,
                       "%s refusing the revoked operator certificate" % n)
            assert not refused(c, n, "admin"), n
        # tandemctl as the revoked user fails with one line; a user added later gets in.
        p = c.ctl("status", user="operator", check=False)
        assert p.returncode != 0 and p.stderr.count("\n") == 1, (p.returncode, p.stderr)
        certs(c.tls_path(""), "--users", "auditor")
        c.add_user("auditor", roles="viewer,auditor")
        assert not refused(c, name, "auditor")
        assert "leader" in c.ctl("status", user="auditor").stdout
        assert c.live() == c.names


if __name__ == "__main__":
    run_tests()
