#!/usr/bin/env python3
"""Who may call what, and the per-client bounds, on a TLS cluster (issue 12): an anonymous
request to every route of node/api/ gets 401 (read from the route tables in the sources, so a
new route is covered without touching this file) except GET /healthz and /readyz and the web
console's files, login and logout (ANONYMOUS_ROUTES); /v1/node/*
refuses a user certificate and answers a node's; a forwarded identity is refused from a user
certificate and taken from a node's (and a write through a follower carries its user); the
metrics_address listener serves GET /metrics only; the rate limit per credential answers 429 with
Retry-After; a source outside api_allow is closed before TLS; connections per source are capped.
"""

import json
import os
import re
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_routes import api_routes  # noqa: E402
from cluster import Cluster, http, run_tests, wait_until  # noqa: E402

ANONYMOUS = "authentication required: present a client certificate of the cluster CA"
# Health, and the web console's files, login and logout (issue 15): no data without a credential.
ANONYMOUS_ROUTES = ("healthz", "readyz", "ui_root", "ui_index", "ui_login", "ui_asset",
                    "auth_login", "auth_logout")
NOT_A_NODE = "forwarded identity from a peer that is not a node"
FORWARDED = {"X-Tandem-Forwarded-User": "admin", "X-Tandem-Forwarded-Kind": "user"}
RATE_RPS, RATE_BURST = 1, 60  # the burst covers the cluster's own start-up calls as admin
RATE_REQUESTS_MAX = 150   # operator's requests until the 429, bounded
PER_SOURCE_MAX = 100  # nodes share 127.0.0.1 with each other: the test uses another source
REFUSED_TIMEOUT_S = 5     # a refused connection is closed at once; this bounds the wait
OUTSIDE, INSIDE = "127.0.0.2", "127.0.0.3"  # loopback sources outside and inside api_allow

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_from(source, url):
    """A TCP connection to url's address from the loopback address source."""
    host, port = url.split("//")[1].split(":")
    sock = socket.socket()
    sock.settimeout(REFUSED_TIMEOUT_S)
    sock.bind((source, 0))
    sock.connect((host, int(port)))
    return sock


def closed_without_server_hello(sock, ctx):
    """Sends a TLS ClientHello on sock and reads: True when the server closed the connection
    without a byte of answer (no ServerHello)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    try:
        sock.sendall(outgoing.read())
        return sock.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        sock.close()


def refused_count(c, name, listener, reason):
    status, _, body = c.api(name, "GET", "/metrics")
    assert status == 200, (status, body)
    line = 'tandem_connections_refused_total{listener="%s",reason="%s"} ' % (listener, reason)
    for text in body.decode().splitlines():
        if text.startswith(line):
            return int(text[len(line):])
    raise AssertionError("no %s in /metrics" % line)


def check_anonymous_every_route(c, name):
    nobody = c.tls_context(None)
    refused = 0
    for route, method, path, _ in api_routes():
        status, headers, body = c.api(name, method, path, body={}, context=nobody)
        if route in ANONYMOUS_ROUTES:
            assert status != 401, (route, status)
            assert headers["X-Tandem-Applied-Index"] is None, (route, dict(headers))
            continue
        assert status == 401, "%s %s (%s) answered %d without a credential: %r" % (
            method, path, route, status, body[:200])
        assert json.loads(body) == {"error": ANONYMOUS}, body
        assert headers["WWW-Authenticate"], (route, dict(headers))
        assert headers["X-Tandem-Applied-Index"] is None, (route, dict(headers))
        refused += 1
    status, _, body = c.api(name, "GET", "/healthz", context=nobody)
    assert status == 200 and json.loads(body) == {"ok": True}, (status, body)
    status, _, body = c.api(name, "GET", "/readyz", context=nobody)
    assert set(json.loads(body)) <= {"ready", "reason"}, body  # health, nothing more
    status, _, _ = c.api(name, "GET", "/no/such/route", context=nobody)
    assert status == 401  # not 404: nothing about the routes is told
    print("%d routes refused without a credential" % refused)


def check_node_routes(c, name):
    for method, path in (("GET", "/v1/node/epoch"), ("GET", "/v1/node/divergence"),
                         ("POST", "/v1/node/reseed"), ("POST", "/v1/node/recover"),
                         ("POST", "/v1/node/release")):
        status, _, body = c.api(name, method, path, body={"epoch": 99})
        assert status == 403, (method, path, status, body)
        assert json.loads(body)["error"] == \
            "/v1/node/* answers only node certificates, not user admin", body
    as_node = c.tls_context(c.names[1])
    status, _, body = c.api(name, "GET", "/v1/node/epoch", context=as_node)
    assert status == 200 and "epoch" in json.loads(body), (status, body)
    # A node reaches the route's own checks: unknown fields are named (strict input).
    status, _, body = c.api(name, "POST", "/v1/node/reseed", body={"epoch": 99, "x": 1},
                            context=as_node)
    assert status == 400 and json.loads(body)["error"] == 'unknown field "x"', (status, body)
    status, _, body = c.api(name, "POST", "/v1/node/recover", body={"epoch": 99},
                            context=as_node)
    assert status == 400 and 'missing field "site"' in json.loads(body)["error"], body


def check_forwarded_identity(c, leader, follower):
    for headers in (FORWARDED, {"X-Tandem-Forwarded-Kind": "node"},
                    {"X-Tandem-Forwarded-By": follower}):
        status, _, body = c.api(leader, "PUT", "/v1/kv/forged", body="x", headers=headers)
        assert status == 403 and json.loads(body) == {"error": NOT_A_NODE}, (status, body)
    status, _, body = c.api(leader, "GET", "/v1/kv/forged")
    assert status == 404, (status, body)  # nothing was written
    as_node = c.tls_context(follower)
    status, _, body = c.api(leader, "GET", "/v1/status", headers=FORWARDED, context=as_node)
    assert status == 200, (status, body)
    status, _, body = c.api(leader, "GET", "/v1/status", context=as_node,
                            headers={"X-Tandem-Forwarded-User": "admin",
                                     "X-Tandem-Forwarded-Kind": "root"})
    assert status == 400 and "X-Tandem-Forwarded-Kind" in json.loads(body)["error"], body
    # The real thing: a user's write through a follower is forwarded with its identity.
    status, _, body = c.api(follower, "PUT", "/v1/kv/through-follower", body="v")
    assert status == 200, (status, body)
    assert c.kv_get(leader, "through-follower") == b"v"


def test_who_may_call_what():
    with Cluster("3") as c:
        leader = c.leader()
        follower = next(n for n in c.names if n != leader)
        check_anonymous_every_route(c, follower)
        check_node_routes(c, leader)
        check_forwarded_identity(c, leader, follower)
        make_operator_record(c, leader)
        # /metrics on the API needs a credential, any user's.
        status, _, _ = c.api(leader, "GET", "/metrics", context=c.tls_context(None))
        assert status == 401
        status, _, body = c.api(leader, "GET", "/metrics", context=c.tls_context("operator"))
        assert status == 200 and b"tandem_raft_term" in body, status


def make_operator_record(c, node):
    """The operator certificate acts as its user record (issue 13): a viewer's."""
    status, _, body = c.api(node, "POST", "/v1/users", json.dumps(
        {"name": "operator", "roles": "viewer", "site": "east",
         "password": "operator-pass1"}).encode(), timeout=20)
    assert status == 201, (status, body)
    # Each node resolves the certificate on its own records: wait for node to apply it.
    # (asked as admin, not to spend the operator's rate-limit tokens).
    wait_until(lambda: b'"operator"' in c.api(node, "GET", "/v1/users?consistency=local")[2],
               10, "the operator record on %s" % node)


def check_metrics_listener(c, name, metrics_url):
    status, _, body = http("GET", metrics_url + "/metrics")
    assert status == 200 and b"tandem_connections_refused_total" in body, status
    # Valid exposition: each family's TYPE once; the refusals of every listener in one block.
    families = re.findall(r"^# TYPE (\S+) ", body.decode(), re.M)
    assert len(families) == len(set(families)), sorted(f for f in families
                                                       if families.count(f) > 1)
    lines = body.decode().splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith("tandem_connections_refused_total{")]
    assert at == list(range(at[0], at[0] + len(at))), at  # one block
    assert lines[at[0] - 1] == "# TYPE tandem_connections_refused_total counter", lines[at[0] - 1]
    refused = [lines[i] for i in at]
    assert {"raft", "api", "metrics"} <= {re.search(r'listener="(\w+)"', line).group(1)
                                          for line in refused}, refused
    status, _, _ = http("HEAD", metrics_url + "/metrics")
    assert status == 200
    for method, path, expected in (("GET", "/v1/status", 404), ("GET", "/healthz", 404),
                                   ("PUT", "/v1/kv/x", 404), ("POST", "/metrics", 405),
                                   ("GET", "/v1/node/epoch", 404)):
        status, _, body = http(method, metrics_url + path, body="x" if method != "GET" else None)
        assert status == expected, (method, path, status, body)
        assert json.loads(body)["error"] == "this listener serves only GET /metrics", body
    # api_allow guards it too.
    before = refused_count(c, name, "metrics", "allow")
    sock = connect_from(OUTSIDE, metrics_url)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert sock.recv(4096) == b""
    except ConnectionResetError:
        pass
    sock.close()
    assert refused_count(c, name, "metrics", "allow") == before + 1


def check_rate_limit(c, name):
    operator = c.tls_context("operator")
    for i in range(RATE_REQUESTS_MAX):
        status, headers, body = c.api(name, "GET", "/v1/status", context=operator)
        if status == 429:
            break
        assert status == 200, (status, body)
    assert status == 429, "no 429 after %d requests" % RATE_REQUESTS_MAX
    assert i >= RATE_BURST - 1, i  # the burst first
    assert int(headers["Retry-After"]) >= 1, dict(headers)
    assert json.loads(body) == {
        "error": "rate limit: %d requests per second for operator" % RATE_RPS}, body
    # The limit is the user's, whatever the credential: the operator's bearer token (no
    # certificate) draws on the bucket the certificate emptied.
    status, _, body = c.api(name, "POST", "/v1/auth/login", context=c.tls_context(None),
                            body={"user": "operator", "password": "operator-pass1"}, timeout=20)
    assert status == 200, (status, body)
    bearer = {"Authorization": "Bearer " + json.loads(body)["token"]}
    for i in range(RATE_REQUESTS_MAX):
        status, _, body = c.api(name, "GET", "/v1/status", headers=bearer,
                                context=c.tls_context(None))
        if status == 429:
            break
        assert status == 200, (status, body)
    assert status == 429 and i < RATE_BURST, (status, i)  # no burst of its own
    status, _, body = c.api(name, "GET", "/metrics")  # admin: a bucket of its own
    assert status == 200, status
    limited = re.search(rb"^tandem_http_rate_limited_total (\d+)$", body, re.M)
    assert limited and int(limited.group(1)) >= 1, body[-500:]
    # Health checks carry no credential: never limited.
    for _ in range(10):
        status, _, _ = c.api(name, "GET", "/healthz", context=c.tls_context(None))
        assert status == 200


def check_allow_list(c, name):
    url = c.url(name)
    before = refused_count(c, name, "api", "allow")
    assert closed_without_server_hello(connect_from(OUTSIDE, url), c.tls_context())
    assert refused_count(c, name, "api", "allow") == before + 1
    # Told once a minute per source: a second refusal is only counted.
    assert closed_without_server_hello(connect_from(OUTSIDE, url), c.tls_context())
    assert refused_count(c, name, "api", "allow") == before + 2
    line = "connection from %s refused before TLS: not in the allow-list" % OUTSIDE
    assert c.log_tail(name, 1000).count(line) == 1, c.log_tail(name, 20)
    # From inside the list the same handshake is answered.
    with c.tls_context().wrap_socket(connect_from(INSIDE, url), server_hostname="127.0.0.1"):
        pass


def check_per_source(c, name):
    url = c.url(name)
    ctx = c.tls_context()
    before = refused_count(c, name, "api", "per_source")
    held = [ctx.wrap_socket(connect_from(INSIDE, url), server_hostname="127.0.0.1")
            for _ in range(PER_SOURCE_MAX)]
    try:
        assert closed_without_server_hello(connect_from(INSIDE, url), ctx)
        assert refused_count(c, name, "api", "per_source") == before + 1
        held.pop().close()

        def room_again():
            try:
                ctx.wrap_socket(connect_from(INSIDE, url), server_hostname="127.0.0.1").close()
                return True
            except (OSError, ssl.SSLError):
                return False
        wait_until(room_again, REFUSED_TIMEOUT_S, "a connection from %s again" % INSIDE)
    finally:
        for sock in held:
            sock.close()


def test_bounds_per_client():
    metrics_port = free_port()
    settings = {"rate_limit_rps": RATE_RPS, "rate_limit_burst": RATE_BURST,
                "api_allow": "127.0.0.1/32, %s/32, ::1" % INSIDE,
                "connections_per_source_max": PER_SOURCE_MAX}
    with Cluster("3", settings=settings) as c:
        name = c.names[0]
        # metrics_address is one node's own: given to name alone, by a restart.
        c.stop(name)
        with open(c._conf(name), "a") as f:
            f.write("metrics_address = 127.0.0.1:%d\n" % metrics_port)
        c.start(name)
        wait_until(lambda: c.api(name, "GET", "/readyz", context=c.tls_context(None))[0] == 200,
                   30, "%s ready again" % name)
        check_allow_list(c, name)
        check_per_source(c, name)
        check_metrics_listener(c, name, "http://127.0.0.1:%d" % metrics_port)
        make_operator_record(c, name)
        check_rate_limit(c, name)


if __name__ == "__main__":
    run_tests()
