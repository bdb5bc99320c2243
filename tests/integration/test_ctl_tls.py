#!/usr/bin/env python3
"""tandemctl over TLS against fake tandemd nodes (python http.server behind ssl on 127.0.0.1):
--cacert/--cert/--key and TANDEM_CACERT/TANDEM_CERT/TANDEM_KEY (flags win), the client
certificate presented, TLS 1.3 only, and one clear stderr line for each TLS failure."""

import os
import shutil
import ssl
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_ctl_cli as cli  # noqa: E402

CERTS = os.path.join(cli.REPO, "deploy", "certs.sh")
TLS_ENV = ("TANDEM_CACERT", "TANDEM_CERT", "TANDEM_KEY", "TANDEM_ENDPOINTS")


def make_certs(d, users):
    p = subprocess.run(["bash", CERTS, d, "--nodes", "east-1", "--users", users],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def server_context(d, require_client=True, tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "east-1.pem"), os.path.join(d, "east-1.key"))
    ctx.load_verify_locations(os.path.join(d, "ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def ctl(*args, env=None):
    clean = {k: v for k, v in os.environ.items() if k not in TLS_ENV}
    clean.update(env or {})
    p = subprocess.run([cli.CTL] + list(args), capture_output=True, env=clean,
                       timeout=cli.RUN_TIMEOUT_S)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


class Fixture:
    """A CA with a node and two users, a second CA, and fake nodes: one wanting a client
    certificate, one with optional client certificates, one TLS 1.2 only, one plaintext."""

    def __init__(self, root):
        self.ca = os.path.join(root, "ca")
        self.other = os.path.join(root, "other")
        make_certs(self.ca, "admin,operator")
        make_certs(self.other, "admin")
        self.cluster = cli.Cluster()
        self.node = cli.Node(self.cluster, "east-1", "east", state="leader",
                             tls=server_context(self.ca))
        self.optional = cli.Node(self.cluster, "east-2", "east", tls=server_context(
            self.ca, require_client=False))
        self.old = cli.Node(self.cluster, "east-3", "east", tls=server_context(self.ca, tls12=True))
        self.plain = cli.Node(self.cluster, "west-1", "west")
        self.cluster.leader = self.node
        self.cluster.kv[b"k"] = [b"v", 11, 11]

    def flags(self, d=None, user="admin"):
        d = d or self.ca
        return ["--cacert", os.path.join(d, "ca.pem"), "--cert", os.path.join(d, user + ".pem"),
                "--key", os.path.join(d, user + ".key")]

    def env(self, d=None, user="admin"):
        d = d or self.ca
        return {"TANDEM_CACERT": os.path.join(d, "ca.pem"),
                "TANDEM_CERT": os.path.join(d, user + ".pem"),
                "TANDEM_KEY": os.path.join(d, user + ".key")}

    def stop(self):
        for n in (self.node, self.optional, self.old, self.plain):
            n.stop()


def test_flags_present_the_client_certificate(f):
    rc, out, err = ctl("-e", f.node.url, *f.flags(user="operator"), "kv", "get", "k")
    assert rc == 0 and out == b"v", (rc, out, err)
    assert f.node.peers == ["operator"], f.node.peers


def test_environment_and_flags_win(f):
    rc, out, err = ctl("-e", f.node.url, "kv", "get", "k", env=f.env())
    assert rc == 0 and out == b"v", (rc, out, err)
    assert f.node.peers == ["admin"], f.node.peers
    # A flag replaces its variable: the environment's files may even be missing.
    env = dict(f.env(), TANDEM_CERT="/nonexistent/admin.pem", TANDEM_KEY="/nonexistent/k")
    rc, out, err = ctl("-e", f.node.url, "--cert", os.path.join(f.ca, "operator.pem"),
                       "--key=" + os.path.join(f.ca, "operator.key"), "kv", "get", "k", env=env)
    assert rc == 0 and out == b"v", (rc, out, err)
    assert f.node.peers == ["admin", "operator"], f.node.peers


def test_plain_http_endpoints_still_work_with_tls_settings(f):
    rc, out, err = ctl("-e", f.plain.url, "kv", "get", "k", env=f.env())
    assert rc == 0 and out == b"v", (rc, out, err)


def test_untrusted_server(f):
    rc, out, err = ctl("-e", f.node.url, "--cert", os.path.join(f.ca, "admin.pem"),
                       "--key", os.path.join(f.ca, "admin.key"), "kv", "get", "k")
    cli.assert_one_line_error(rc, err, 3, f.node.url, "not trusted", "--cacert")
    rc, out, err = ctl("-e", f.node.url, "--cacert", os.path.join(f.other, "ca.pem"),
                       "kv", "get", "k", env=f.env())
    cli.assert_one_line_error(rc, err, 3, "does not verify against --cacert")
    assert out == b"" and f.node.peers == []


def test_client_certificate_refused(f):
    rc, out, err = ctl("-e", f.node.url, "--cacert", os.path.join(f.ca, "ca.pem"),
                       "kv", "get", "k")
    cli.assert_one_line_error(rc, err, 3, "refused the TLS handshake",
                              "wants a client certificate")
    env = dict(f.env(), TANDEM_CERT=os.path.join(f.other, "admin.pem"),
               TANDEM_KEY=os.path.join(f.other, "admin.key"))
    rc, out, err = ctl("-e", f.node.url, "kv", "get", "k", env=env)
    cli.assert_one_line_error(rc, err, 3, "refused the TLS handshake", "signed by the cluster CA")
    assert f.node.peers == [] and f.cluster.received() == []
    # A server that does not insist still answers, without a peer name.
    rc, out, err = ctl("-e", f.optional.url, "--cacert", os.path.join(f.ca, "ca.pem"),
                       "kv", "get", "k")
    assert rc == 0 and out == b"v", (rc, out, err)


def test_tls_1_2_is_refused(f):
    rc, out, err = ctl("-e", f.old.url, "kv", "get", "k", env=f.env())
    cli.assert_one_line_error(rc, err, 3, f.old.url, "does not speak TLS 1.3")
    assert f.cluster.received() == []


def test_scheme_mismatch(f):
    plain_as_tls = "https://" + f.plain.url[len("http://"):]
    rc, out, err = ctl("-e", plain_as_tls, "kv", "get", "k", env=f.env())
    cli.assert_one_line_error(rc, err, 3, "does not speak TLS", "http://")
    tls_as_plain = "http://" + f.node.url[len("https://"):]
    rc, out, err = ctl("-e", tls_as_plain, "kv", "get", "k", env=f.env())
    cli.assert_one_line_error(rc, err, 3, "use an https:// endpoint")


def test_bad_files(f):
    for args, fragment in [
            (["--cacert", "/nonexistent/ca.pem"], "--cacert (TANDEM_CACERT): cannot read "
                                                  "'/nonexistent/ca.pem': No such file"),
            (["--cert", os.path.join(f.ca, "admin.pem")], "--cert (TANDEM_CERT) without --key"),
            (["--key", os.path.join(f.ca, "admin.key")], "--key (TANDEM_KEY) without --cert"),
            (["--cacert"], "--cacert: missing value")]:
        rc, out, err = ctl("-e", f.node.url, "kv", "get", "k", *args)
        cli.assert_one_line_error(rc, err, 2, fragment)
    rc, out, err = ctl("-e", f.node.url, "kv", "get", "k",
                       env=dict(f.env(), TANDEM_KEY="/nonexistent/admin.key"))
    cli.assert_one_line_error(rc, err, 2, "--key (TANDEM_KEY): cannot read")
    # Files that exist but hold no certificate: curl's complaint, explained.
    rc, out, err = ctl("-e", f.node.url, *f.flags(), "--cacert", os.path.join(f.ca, "admin.key"),
                       "kv", "get", "k")
    cli.assert_one_line_error(rc, err, 3, "--cacert")
    rc, out, err = ctl("-e", f.node.url, *f.flags(), "--key", os.path.join(f.ca, "east-1.key"),
                       "kv", "get", "k")
    cli.assert_one_line_error(rc, err, 3, "client certificate or key")
    assert f.cluster.received() == []


TESTS = [v for k, v in list(globals().items()) if k.startswith("test_")]


def main():
    root = tempfile.mkdtemp(prefix="tandem-ctl-tls-")
    try:
        return cli.run_all(TESTS, lambda test: Fixture(os.path.join(root, test.__name__)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
