#!/usr/bin/env python3
"""Per-person users on a TLS cluster (issue 13 items 1 and 3), acting as the bootstrap admin
certificate: create, list (never a hash), the password rule and the reuse of the last 5 refused
with 400 naming the rule, login answering a token, the lockout after lockout_failures failures
on a mix of nodes (agreed by every node: the outcome is replicated), disable and delete, and an
expired password (password_max_age_days = 0) that only the password route accepts.
"""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import http.client as httpclient  # noqa: E402
import urllib.parse  # noqa: E402
from cluster import Cluster, run_tests, tls_context_for, wait_until  # noqa: E402

LOCKOUT_FAILURES = 5
PASSWORD = "first-pass1"


def call(c, name, method, path, body=None):
    status, _, text = c.api(name, method, path,
                            body=None if body is None else json.dumps(body).encode(),
                            timeout=20)
    return status, json.loads(text) if text else None


def expect(c, name, method, path, body, status, contains=None):
    got, answer = call(c, name, method, path, body)
    assert got == status, (method, path, got, answer)
    if contains is not None:
        assert contains in json.dumps(answer), (contains, answer)
    return answer


def create(c, node, user, password=PASSWORD, roles="viewer", site="east"):
    return expect(c, node, "POST", "/v1/users",
                  {"name": user, "roles": roles, "site": site, "password": password}, 201)


def login(c, node, user, password):
    return call(c, node, "POST", "/v1/auth/login", {"user": user, "password": password})


def login_audited(c, node, user):
    """Whether the audit trail holds a successful login, failed ones and a refused locked one
    of user."""
    status, answer = call(c, node, "GET", "/v1/audit?limit=1000")
    assert status == 200, answer
    seen = {(r.get("action"), r.get("status"), r.get("detail")) for r in answer["records"]
            if r.get("object") == user}
    return (("login", 200, "token issued") in seen
            and ("login_failed", 401, "wrong password") in seen
            and ("login_failed", 401, "wrong password: user locked") in seen
            and ("login_failed", 403, "user locked") in seen)


CLIENT_ADDRESS = "127.0.0.99"  # a loopback address no node uses: the client's own


def login_from(c, node, user, password, address):
    """A login through node from a socket bound to address; returns the status."""
    url = c.url(node)
    parts = urllib.parse.urlsplit(url)
    conn = httpclient.HTTPSConnection(parts.hostname, parts.port, timeout=10,
                                      context=tls_context_for(url), source_address=(address, 0))
    try:
        conn.request("POST", "/v1/auth/login", body=json.dumps(
            {"user": user, "password": password}), headers={"Content-Type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def failed_login_sources(c, node, user):
    status, answer = call(c, node, "GET", "/v1/audit?limit=1000")
    assert status == 200, answer
    return {r.get("source") for r in answer["records"]
            if r.get("object") == user and r.get("action") == "login_failed"}


def ctl_login(c, user, password):
    """tandemctl login keeps the token in $XDG_CONFIG_HOME/tandem/token: file 0600, dir 0700."""
    config_home = os.path.join(c.dir, "xdg")
    os.environ["XDG_CONFIG_HOME"] = config_home
    try:
        p = c.ctl("login", "--user", user, "--password-stdin", stdin=password + "\n")
        assert "logged in as %s until " % user in p.stdout, p
        p = c.ctl("login", "--user", user, check=False)
        assert p.returncode == 2 and "--password-stdin" in p.stderr, p
    finally:
        del os.environ["XDG_CONFIG_HOME"]
    folder = os.path.join(config_home, "tandem")
    path = os.path.join(folder, "token")
    assert os.stat(folder).st_mode & 0o777 == 0o700, oct(os.stat(folder).st_mode)
    assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
    with open(path) as f:
        token = f.read().strip()
    assert token.count(".") == 1 and len(token) > 40, token


def test_users_and_policy():
    with Cluster(topology="2+2+1") as c:
        nodes = [n for n in c.names if not n.startswith("witness")] or c.names
        first, other = nodes[0], nodes[-1]
        answer = create(c, first, "alice", roles="viewer,operator")
        assert answer["roles"] == ["viewer", "operator"], answer
        expect(c, other, "POST", "/v1/users",
               {"name": "alice", "roles": "viewer", "site": "east", "password": PASSWORD}, 409)
        expect(c, first, "POST", "/v1/users",
               {"name": "admin", "roles": "viewer", "site": "east", "password": PASSWORD}, 400,
               "bootstrap")
        expect(c, first, "POST", "/v1/users",
               {"name": "bob", "roles": "viewer", "site": "mars", "password": PASSWORD}, 400,
               "no such site")
        expect(c, first, "POST", "/v1/users",
               {"name": "bob", "roles": "wizard", "site": "east", "password": PASSWORD}, 400)
        expect(c, first, "POST", "/v1/users",
               {"name": "bob", "roles": "viewer", "site": "east", "password": "short1"}, 400,
               "password rule")
        expect(c, first, "POST", "/v1/users",
               {"name": "bob", "roles": "viewer", "site": "east", "password": "lettersonly"},
               400, "letter and one digit")
        expect(c, first, "POST", "/v1/users",
               {"name": "bob", "roles": "viewer", "site": "east", "password": PASSWORD,
                "extra": 1}, 400, "unknown field")
        listing = expect(c, other, "GET", "/v1/users", None, 200)
        assert [u["name"] for u in listing["users"]] == ["alice"], listing
        assert "scrypt" not in json.dumps(listing), listing

        status, answer = login(c, other, "alice", PASSWORD)
        assert status == 200 and answer["token"] and answer["expires"].endswith("Z"), answer
        status, answer = login(c, first, "alice", "wrong-pass1")
        assert status == 401, answer
        # A failed login through a follower is audited by the leader with the client's address,
        # not the follower's (which forwarded it from 127.0.0.1).
        follower = next(n for n in nodes if n != c.leader())
        assert login_from(c, follower, "mallory-probe", "wrong-pass1", CLIENT_ADDRESS) == 401
        wait_until(lambda: CLIENT_ADDRESS in failed_login_sources(c, first, "mallory-probe"), 30,
                   "the failed login audited with the client's address")
        assert failed_login_sources(c, first, "mallory-probe") == {CLIENT_ADDRESS}
        # An unknown name gets the very same answer (after the same scrypt: test_users.c).
        assert login(c, first, "nobody-here", "wrong-pass1") == (status, answer)

        # Reuse: the current password and the 4 before it are refused, the 6th back is fine.
        passwords = [PASSWORD] + ["second-pass%d" % i for i in range(2, 7)]
        for p in passwords[1:]:
            expect(c, first, "POST", "/v1/users/alice/password", {"new_password": p}, 200)
        for p in passwords[-5:]:
            expect(c, other, "POST", "/v1/users/alice/password", {"new_password": p}, 400,
                   "may not repeat")
        expect(c, first, "POST", "/v1/users/alice/password", {"new_password": passwords[0]},
               200)
        expect(c, first, "POST", "/v1/users/alice/password", {"new_password": "nodigits!"},
               400, "password rule")

        # Lockout: failures on alternating nodes count together.
        for i in range(LOCKOUT_FAILURES):
            status, answer = login(c, nodes[i % len(nodes)], "alice", "wrong-pass1")
            assert status == 401, (i, answer)
        for node in nodes:
            status, answer = login(c, node, "alice", passwords[0])
            assert status == 403 and "locked until" in answer["error"], (node, answer)
        wait_until(lambda: login_audited(c, first, "alice"), 30, "login outcomes audited")
        listed = expect(c, other, "GET", "/v1/users", None, 200)["users"][0]
        assert "locked_until" in listed, listed
        # A reset by a security admin unlocks.
        expect(c, first, "POST", "/v1/users/alice/password", {"new_password": "reset-pass9"},
               200)
        assert login(c, other, "alice", "reset-pass9")[0] == 200
        ctl_login(c, "alice", "reset-pass9")

        expect(c, first, "POST", "/v1/users/alice/roles", {"roles": "auditor"}, 200,
               "auditor")
        expect(c, first, "POST", "/v1/users/alice/disable", None, 200)
        for node in nodes:
            status, answer = login(c, node, "alice", "reset-pass9")
            assert status == 403 and "disabled" in answer["error"], (node, answer)
        expect(c, first, "DELETE", "/v1/users/alice", None, 200)
        expect(c, other, "DELETE", "/v1/users/alice", None, 404)
        assert login(c, other, "alice", "reset-pass9")[0] == 401


def test_expired_password():
    with Cluster(topology="2+2+1", settings={"password_max_age_days": 0}) as c:
        node = c.names[0]
        create(c, node, "carol")
        status, answer = login(c, node, "carol", PASSWORD)
        assert status == 403, answer
        assert answer["error"] == ("password expired: change it with POST "
                                   "/v1/users/carol/password"), answer
        expect(c, node, "POST", "/v1/users/carol/password", {"new_password": "fresh-pass2"},
               200)
        # tandemctl: the password only ever on stdin.
        c.ctl("user", "add", "dave", "--roles", "viewer,auditor", "--site", "west",
              "--password-stdin", stdin="dave-pass1\n")
        listing = c.ctl("user", "list").stdout
        assert "dave" in listing and "viewer,auditor" in listing, listing
        p = c.ctl("user", "add", "erin", "--roles", "viewer", "--site", "west", check=False)
        assert p.returncode == 2 and "--password-stdin" in p.stderr, p
        p = c.ctl("user", "passwd", "dave", "--password-stdin", stdin="dave-pass1\n",
                  check=False)
        assert p.returncode == 1 and "may not repeat" in p.stderr, p
        c.ctl("user", "passwd", "dave", "--password-stdin", stdin="dave-pass2\n")
        assert login(c, node, "dave", "dave-pass2")[0] == 403  # expired at once here
        c.ctl("user", "roles", "dave", "operator")
        c.ctl("user", "disable", "dave")
        assert "disabled" in c.ctl("user", "list").stdout
        c.ctl("user", "delete", "dave")
        assert "dave" not in c.ctl("user", "list").stdout


if __name__ == "__main__":
    run_tests()
