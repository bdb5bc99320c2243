"""Integration test of deploy/certs.sh: the CA, node and user certificates it makes verify with
the names, key usages and file modes tandem expects; a second run reuses the CA; renew and revoke
(with the CRL) work; bad arguments fail with one line on stderr."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import SOURCE_DIR, run_tests  # noqa: E402

CERTS = os.path.join(SOURCE_DIR, "deploy", "certs.sh")
OPENSSL_TIMEOUT_S = 60


def certs(*args, check=True):
    p = subprocess.run(["bash", CERTS] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=OPENSSL_TIMEOUT_S)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def openssl(*args):
    return subprocess.run(["openssl"] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=OPENSSL_TIMEOUT_S)


def text(path):
    p = openssl("x509", "-in", path, "-noout", "-text")
    assert p.returncode == 0, p.stdout
    return p.stdout


def extension(cert_text, name):
    """The line after an extension's title in `openssl x509 -text` ('' when absent)."""
    lines = cert_text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(name):
            return lines[i + 1].strip()
    return ""


def verify(d, *paths, crl=False):
    args = ["verify", "-CAfile", os.path.join(d, "ca.pem")]
    if crl:
        args += ["-crl_check", "-CRLfile", os.path.join(d, "crl.pem")]
    return openssl(*(args + list(paths)))


def in_tmp(fn):
    def wrapper():
        d = tempfile.mkdtemp(prefix="tandem-certs-")
        try:
            fn(os.path.join(d, "tls"))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    wrapper.__name__ = fn.__name__
    return wrapper


@in_tmp
def test_makes_ca_nodes_and_users(d):
    certs(d, "--nodes", "east-1,west-1", "--users", "admin,operator",
          "--addresses", "east-1=10.1.2.3,east-1=east-1.example.net,west-1=::1")
    ca = text(os.path.join(d, "ca.pem"))
    assert "CA:TRUE" in extension(ca, "X509v3 Basic Constraints: critical"), ca
    assert extension(ca, "X509v3 Key Usage: critical") == "Certificate Sign, CRL Sign", ca
    assert "ASN1 OID: prime256v1" in ca, ca
    names = ["east-1", "west-1", "admin", "operator"]
    p = verify(d, *[os.path.join(d, n + ".pem") for n in names])
    assert p.returncode == 0 and p.stdout.count(": OK") == 4, p.stdout
    for name in ["ca"] + names:
        mode = stat.S_IMODE(os.stat(os.path.join(d, name + ".key")).st_mode)
        assert mode == 0o600, (name, oct(mode))
    east = text(os.path.join(d, "east-1.pem"))
    assert "Subject: CN = east-1" in east, east
    assert extension(east, "X509v3 Subject Alternative Name") == (
        "DNS:east-1, DNS:localhost, IP Address:127.0.0.1, IP Address:10.1.2.3, "
        "DNS:east-1.example.net"), east
    assert extension(east, "X509v3 Extended Key Usage") == (
        "TLS Web Server Authentication, TLS Web Client Authentication"), east
    assert extension(east, "X509v3 Key Usage: critical") == "Digital Signature", east
    assert "IP Address:0:0:0:0:0:0:0:1" in text(os.path.join(d, "west-1.pem"))
    admin = text(os.path.join(d, "admin.pem"))
    assert "Subject: CN = admin" in admin, admin
    assert extension(admin, "X509v3 Extended Key Usage") == "TLS Web Client Authentication"
    assert extension(admin, "X509v3 Subject Alternative Name") == "", admin
    # A user certificate is refused where a server is expected; a node's is accepted.
    p = openssl("verify", "-purpose", "sslserver", "-CAfile", os.path.join(d, "ca.pem"),
                os.path.join(d, "admin.pem"))
    assert p.returncode != 0, p.stdout
    p = openssl("verify", "-purpose", "sslserver", "-CAfile", os.path.join(d, "ca.pem"),
                os.path.join(d, "east-1.pem"))
    assert p.returncode == 0, p.stdout


@in_tmp
def test_second_run_reuses_the_ca_and_keeps_certificates(d):
    certs(d, "--nodes", "east-1", "--users", "admin")
    before = {n: open(os.path.join(d, n + ".pem")).read() for n in ("ca", "east-1", "admin")}
    p = certs(d, "--nodes", "east-1,east-2", "--users", "admin,auditor")
    assert "kept" in p.stdout, p.stdout
    for name, pem in before.items():
        assert open(os.path.join(d, name + ".pem")).read() == pem, name
    p = verify(d, os.path.join(d, "east-2.pem"), os.path.join(d, "auditor.pem"))
    assert p.returncode == 0, p.stdout
    certs(d, "--nodes", "east-1", "--force")
    assert open(os.path.join(d, "east-1.pem")).read() != before["east-1"]
    assert open(os.path.join(d, "ca.pem")).read() == before["ca"]


@in_tmp
def test_revoke_writes_a_crl_and_renew_issues_a_valid_certificate(d):
    certs(d, "--nodes", "east-1", "--users", "admin,operator")
    p = certs("revoke", d, "operator")
    assert "revoked operator" in p.stdout, p.stdout
    operator, admin = os.path.join(d, "operator.pem"), os.path.join(d, "admin.pem")
    p = verify(d, operator, crl=True)
    assert p.returncode != 0 and "certificate revoked" in p.stdout, p.stdout
    p = verify(d, admin, os.path.join(d, "east-1.pem"), crl=True)
    assert p.returncode == 0, p.stdout
    # Revoking again changes nothing; the CRL can be re-issued.
    certs("revoke", d, "operator")
    certs("crl", d)
    assert verify(d, operator, crl=True).returncode != 0
    old = open(operator).read()
    certs("renew", d, "operator")
    assert open(operator).read() != old
    p = verify(d, operator, crl=True)
    assert p.returncode == 0, p.stdout
    assert "Subject: CN = operator" in text(operator)
    mode = stat.S_IMODE(os.stat(os.path.join(d, "operator.key")).st_mode)
    assert mode == 0o600, oct(mode)
    renewed = text(os.path.join(d, "east-1.pem"))
    certs("renew", d, "east-1", "--days", "30")
    again = text(os.path.join(d, "east-1.pem"))
    assert renewed != again
    assert extension(again, "X509v3 Subject Alternative Name").startswith("DNS:east-1,"), again


@in_tmp
def test_bad_arguments_fail_with_one_line(d):
    certs(d, "--nodes", "east-1")
    cases = [
        [],
        [d],
        [d, "--nodes"],
        [d, "--nodes", "a,,b"],
        [d, "--nodes", "bad/name"],
        [d, "--nodes", "ca"],
        [d, "--nodes", "x", "--users", "x"],
        [d, "--nodes", "x", "--days", "0"],
        [d, "--nodes", "x", "--addresses", "y=10.0.0.1"],
        [d, "--nodes", "x", "--addresses", "x=bad address"],
        [d, "--nodes", "x", "--bogus"],
        ["renew", d],
        ["renew", d, "nobody"],
        ["revoke", d, "nobody"],
        ["revoke", d + "-missing", "east-1"],
        ["crl", d + "-missing"],
    ]
    for args in cases:
        p = certs(*args, check=False)
        assert p.returncode != 0, (args, p.stdout)
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("certs.sh: "), (args, p.stderr)
    assert not os.path.exists(os.path.join(d, "x.pem"))


if __name__ == "__main__":
    run_tests()
