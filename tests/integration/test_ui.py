#!/usr/bin/env python3
"""The web console's routes on a TLS 2+2+1 cluster (issue 15 item 1), as a browser without a
client certificate meets them: the files under /ui/ with their security headers and ETags, the
login that puts the token into an HttpOnly; Secure; SameSite=Strict cookie (through a follower
too: the leader's Set-Cookie is relayed), the cookie accepted like a bearer token (and a client
certificate as before), every node's own view in bcp status, a cookie write
without X-Tandem-UI: 1 refused (CSRF), a wrong password refused and audited, a viewer refused the
bcp-admin and auditor routes, logout clearing the cookie, and `tandemctl bcp drill SITE --report
FILE` writing the standalone report with the drill's latency series embedded.
"""

import json
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, run_tests, wait_until  # noqa: E402

PASSWORD = "console-pass1"
TOKEN_TTL_MINUTES = 60


def anonymous(c):
    return c.tls_context(user=None)


def ui_get(c, node, path, headers=None):
    return c.api(node, "GET", path, headers=headers, context=anonymous(c))


def check_assets(c, node):
    status, headers, body = ui_get(c, node, "/ui/")
    assert status == 200 and b"/ui/app.js" in body, (status, body[:200])
    assert headers["Content-Type"] == "text/html; charset=utf-8", headers["Content-Type"]
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp, csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, csp
    assert headers["X-Content-Type-Options"] == "nosniff", headers
    assert headers["X-Frame-Options"] == "DENY", headers
    assert headers["Cache-Control"] == "no-cache", headers
    etag = headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{16}"', etag), etag
    status, headers, body = ui_get(c, node, "/ui/", {"If-None-Match": etag})
    assert status == 304 and body == b"" and headers["ETag"] == etag, (status, body)
    types = {"/ui/app.js": "text/javascript; charset=utf-8",
             "/ui/report.js": "text/javascript; charset=utf-8",
             "/ui/i18n.js": "text/javascript; charset=utf-8",
             "/ui/app.css": "text/css; charset=utf-8",
             "/ui/login": "text/html; charset=utf-8"}
    for path, content_type in types.items():
        status, headers, body = ui_get(c, node, path)
        assert status == 200 and headers["Content-Type"] == content_type, (path, status, headers)
        assert headers["X-Frame-Options"] == "DENY" and "script-src 'self'" in \
            headers["Content-Security-Policy"], (path, headers)
    status, headers, _ = ui_get(c, node, "/ui")
    assert status == 308 and headers["Location"] == "/ui/", (status, headers)
    for path in ("/ui/nope.js", "/ui/%2e%2e%2fetc%2fpasswd", "/ui/.hidden", "/ui/embed.cmake"):
        status, _, body = ui_get(c, node, path)
        assert status == 404 and b"no such console file" in body, (path, status, body)
    # The files are public; the data is not.
    status, _, _ = ui_get(c, node, "/v1/status")
    assert status == 401, status


def login(c, node, user, password, cookie=True):
    path = "/v1/auth/login" + ("?cookie=1" if cookie else "")
    return c.api(node, "POST", path, body={"user": user, "password": password},
                 headers={"X-Tandem-UI": "1"}, context=anonymous(c), timeout=20)


def cookie_of(c, node, user):
    status, headers, body = login(c, node, user, PASSWORD)
    assert status == 200, (status, body)
    answer = json.loads(body)
    assert "token" not in answer and answer["user"] == user, answer  # HttpOnly: never in the body
    set_cookie = headers["Set-Cookie"]
    parts = [p.strip() for p in set_cookie.split(";")]
    name, _, token = parts[0].partition("=")
    assert name == "tandem_token" and len(token) > 40, set_cookie
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/",
                      "Max-Age=%d" % (TOKEN_TTL_MINUTES * 60)):
        assert attribute in parts, (attribute, set_cookie)
    return "tandem_token=" + token


def as_cookie(c, node, method, path, cookie, body=None, ui=True):
    headers = {"Cookie": "theme=dark; " + cookie}
    if ui:
        headers["X-Tandem-UI"] = "1"
    status, _, text = c.api(node, method, path, body=body, headers=headers,
                            context=anonymous(c), timeout=20)
    return status, (json.loads(text) if text else None)


def audit_records(c, leader):
    status, _, body = c.api(leader, "GET", "/v1/audit?limit=1000", timeout=20)
    assert status == 200, body
    return json.loads(body)["records"]


def test_console_routes_cookie_and_csrf():
    with Cluster(topology="2+2+1", settings={"token_ttl_minutes": TOKEN_TTL_MINUTES}) as c:
        leader = c.settled_leader()
        follower = next(n for n in c.names if n != leader and not n.startswith("witness"))
        check_assets(c, follower)
        c.add_user("vera", roles="viewer", password=PASSWORD)
        c.add_user("bea", roles="bcp-admin,auditor", site="west", password=PASSWORD)

        # Through a follower: the leader answers the login and its Set-Cookie is relayed.
        viewer = cookie_of(c, follower, "vera")
        # The cluster's first login creates its token key: the follower that forwarded it holds
        # the answer until it has applied the key, so the cookie works there at once.
        status, session = as_cookie(c, follower, "GET", "/v1/auth/session", viewer)
        assert status == 200 and session["user"] == "vera" and session["via"] == "cookie", session
        assert session["roles"] == ["viewer"], session
        status, answer = as_cookie(c, follower, "GET", "/v1/bcp/status", viewer)
        assert status == 200 and answer["sites"], answer
        for method, path, body in (("POST", "/v1/bcp/invoke", {"site": "west", "reason": "x"}),
                                   ("GET", "/v1/audit/verify", None),
                                   ("GET", "/v1/rebalance/plan", None)):
            status, answer = as_cookie(c, follower, method, path, viewer, body=body)
            assert status == 403 and "permission" in answer["error"], (path, status, answer)

        check_node_views(c, follower, viewer)
        # A client certificate works as well (the bootstrap admin's here).
        status, _, text = c.api(follower, "GET", "/v1/auth/session")
        session = json.loads(text)
        assert status == 200 and session["user"] == "admin" and session["via"] == "certificate", \
            session
        assert {"bcp-admin", "auditor", "planner", "viewer"} <= set(session["roles"]), session
        admin = cookie_of(c, leader, "bea")
        dry = {"site": "west", "dry_run": True}
        status, answer = as_cookie(c, follower, "POST", "/v1/bcp/drill", admin, dry, ui=False)
        assert status == 403 and "X-Tandem-UI: 1" in answer["error"], (status, answer)
        status, _, text = c.api(follower, "POST", "/v1/bcp/drill", body=dry,
                                headers={"Cookie": admin, "X-Tandem-UI": "0"},
                                context=anonymous(c))
        assert status == 403 and b"cross-site" in text, (status, text)
        status, answer = as_cookie(c, follower, "POST", "/v1/bcp/drill", admin, dry)
        assert status == 200 and answer["dry_run"] is True, (status, answer)
        status, answer = as_cookie(c, follower, "GET", "/v1/audit/verify", admin)
        assert status == 200 and answer["ok"] is True, (status, answer)
        # A bearer token is no cookie: no X-Tandem-UI needed (tandemctl's way).
        status, _, text = login(c, leader, "bea", PASSWORD, cookie=False)
        token = json.loads(text)["token"]
        status, _, text = c.api(follower, "POST", "/v1/bcp/drill", body=dry,
                                headers={"Authorization": "Bearer " + token},
                                context=anonymous(c))
        assert status == 200, (status, text)

        # Login CSRF: a foreign page cannot log the browser in (no X-Tandem-UI: 1).
        status, headers, text = c.api(follower, "POST", "/v1/auth/login?cookie=1",
                                      body={"user": "vera", "password": PASSWORD},
                                      context=anonymous(c))
        assert status == 403 and headers["Set-Cookie"] is None and b"cross-site" in text, \
            (status, text)
        status, _, text = login(c, follower, "vera", "wrong-pass1")
        assert status == 401 and b"wrong user or password" in text, (status, text)
        status, answer = as_cookie(c, follower, "GET", "/v1/status", "tandem_token=forged.value")
        assert status == 401, (status, answer)

        status, headers, _ = c.api(follower, "POST", "/v1/auth/logout", body={},
                                   headers={"Cookie": viewer, "X-Tandem-UI": "1"},
                                   context=anonymous(c))
        cleared = headers["Set-Cookie"]
        assert status == 200 and cleared.startswith("tandem_token=;") and "Max-Age=0" in cleared, \
            (status, cleared)

        last = {}

        def audited():
            records = audit_records(c, leader)
            last["records"] = [r for r in records if r["action"] in
                               ("login", "login_failed", "bcp_drill")]
            seen = {(r["action"], r["object"], r["status"], str(r["detail"])) for r in records}
            cookie_writes = {(r["actor"], r["status"]) for r in records
                             if r["action"] == "bcp_drill" and r["via"] == "cookie"}
            return (("login", "vera", 200, "token issued") in seen
                    and ("login", "bea", 200, "token issued") in seen
                    and ("login_failed", "vera", 401, "wrong password") in seen
                    and {("bea", 403), ("bea", 200)} <= cookie_writes)
        try:
            wait_until(audited, 20, "the logins, the failed login and the cookie writes audited")
        except Exception:
            print(json.dumps(last.get("records"), indent=1))
            raise
        check_drill_report_file(c)


def check_node_views(c, node, cookie):
    """Every node's row of bcp status carries what it says of itself (the console's Overview):
    the leader's from its probes, the answering leader's own at once."""
    def views():
        status, answer = as_cookie(c, node, "GET", "/v1/bcp/status", cookie)
        assert status == 200, answer
        return {n["name"]: n.get("view") for s in answer["sites"] for n in s["nodes"]}
    wait_until(lambda: all(views().values()), 20, "a view of every node")
    for name, view in views().items():
        assert view["state"] in ("leader", "follower"), (name, view)
        assert view["term"] >= 1 and view["applied_index"] >= 1, (name, view)
        assert view["commit_index"] >= view["applied_index"] - 1, (name, view)
        assert 300 <= view["cert_days_left"] <= 400, (name, view)  # certs.sh's 365 days
        assert view["disk_free_bytes"] > 0 and view["age_ms"] >= 0, (name, view)
        # Every voter has written its log: a bucket bound of the fsync histogram, 50 us..1.6 s.
        assert 0.05 <= view["fsync_p99_ms"] <= 1638.4, (name, view)
        assert view["fenced"] is False and view["quarantined"] is False, (name, view)


def check_drill_report_file(c):
    path = os.path.join(c.dir, "drill-report.html")
    p = c.ctl("bcp", "drill", "west", "--dry-run", "--report", path, check=False)
    assert p.returncode == 2 and "a dry run has no report" in p.stderr, p
    assert not os.path.exists(path)
    p = c.ctl("bcp", "drill", "west", "--reason", "audit </script> sample", "--report", path,
              timeout=120)
    assert "report written to " + path in p.stdout, p.stdout
    with open(path, encoding="utf-8") as f:
        html = f.read()
    assert "<script src=" not in html and "<link" not in html, "not standalone"
    assert "TandemReport.standalone();" in html and "svg.chart" in html
    data = re.search(r'<script type="application/json" id="drill-data" data-generated="\d+">'
                     r'(.*?)</script>', html, re.S)
    report = json.loads(data.group(1))
    assert report["site"] == "west" and report["ok"] is True, report
    assert report["reason"] == "audit </script> sample", report["reason"]  # escaped as \u003c
    decisions = c.get_json(c.leader(), "/v1/bcp/status")["decisions"]
    assert any(d["reason"] == "drill %s: audit </script> sample" % report["id"]
               for d in decisions), decisions[-4:]
    points = report["probe_latency"]["points"]
    assert len(points) > 10 and sum(p[2] for p in points) == report["probe"]["acked"], points
    assert [d["after"] for d in report["digests"]] == ["invoke", "revoke"], report["digests"]
    assert all(d["equal"] and len(d["nodes"]) == 5 for d in report["digests"]), report["digests"]


if __name__ == "__main__":
    run_tests()
