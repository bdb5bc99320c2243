#!/usr/bin/env python3
"""tandemctl against fake tandemd nodes (python http.server on 127.0.0.1): failover, exit
codes, one-line errors, exact value bytes, txn bodies and output formats."""

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPO = os.environ.get("TANDEM_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("TANDEM_BIN_DIR") or os.path.join(REPO, "build")
CTL = os.path.join(BIN_DIR, "tandemctl")
RUN_TIMEOUT_S = 30  # bound on every tandemctl run
PAGE_CAP = 2  # the fake answers at most this many keys per list page, to force paging
PARK_S = 0.3  # how long a fake node without a leader holds a request before its 503


class Cluster:
    """State shared by the fake nodes: one KV map, members and every request received."""

    def __init__(self):
        self.lock = threading.Lock()
        self.kv = {}  # bytes key -> [value bytes, mod_index, create_index]
        self.index = 10
        self.members = []
        self.requests = []  # dicts: node, method, path (raw), body, headers
        self.leader = None  # the leader Node

    def bump(self):
        self.index += 1
        return self.index

    def received(self, method=None, prefix=""):
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r["method"] == method) and r["path"].startswith(prefix)]


class TLSServer(ThreadingHTTPServer):
    """An https server for test_ctl_tls.py that handshakes in the request's thread; a refused
    handshake sends its alert, then waits for the client to close, so that the client reads the
    alert instead of a reset."""

    tls = None  # the server-side ssl.SSLContext
    HANDSHAKE_TIMEOUT_S = 5

    def finish_request(self, request, client_address):
        conn = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        try:
            conn.settimeout(self.HANDSHAKE_TIMEOUT_S)
            try:
                conn.do_handshake()
            except (ssl.SSLError, OSError):
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(4096):
                    pass
                return
            conn.settimeout(None)
            self.RequestHandlerClass(conn, client_address, self)
        except OSError:
            pass
        finally:
            conn.close()


class Node:
    """One fake tandemd: answers a slice of the v1 API from the shared Cluster."""

    def __init__(self, cluster, name, site, state="follower", lag=0, tls=None):
        """tls: an ssl.SSLContext (server side) to serve https:// instead (test_ctl_tls.py)."""
        self.cluster = cluster
        self.name = name
        self.site = site
        self.state = state
        self.lag = lag  # how far this node's applied index trails the cluster's
        self.commit_lag = 0  # how far its commit index trails (a node cut off from the others)
        self.unavailable = 0  # answer this many requests with 503 "no leader" first
        self.warnings = []  # its status's "warnings" (a certificate near its expiry)
        server_class = ThreadingHTTPServer
        if tls is not None:
            server_class = type("NodeTLSServer", (TLSServer,), {"tls": tls})
        self.server = server_class(("127.0.0.1", 0), self.handler_class(tls))
        self.server.daemon_threads = True
        self.peers = []  # subject CNs of the client certificates of TLS connections
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http",
                                          self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def member(self, role="voter"):
        port = self.server.server_address[1]
        return {"name": self.name, "site": self.site, "role": role,
                "raft": "127.0.0.1:%d" % (port + 1000), "api": self.url, "match_index": None}

    def status(self):
        c = self.cluster
        leader = c.leader
        members = []
        for m in c.members:
            m = dict(m)
            if self.state == "leader":
                m["match_index"] = c.index - 1
            members.append(m)
        return {"node": {"name": self.name, "site": self.site, "role": "voter",
                         "state": self.state, "term": 7, "commit_index": c.index - self.commit_lag,
                         "applied_index": c.index - self.lag, "apply_digest": "00" * 32,
                         "fenced": False, "epoch": 1, "cluster_id": "fake-cluster"},
                "leader": {"name": leader.name, "api": leader.url} if leader else None,
                "members": members, "warnings": self.warnings}

    def handler_class(self, tls=None):
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, status, body, headers=None):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("X-Tandem-Node", node.name)
                self.send_header("Content-Length", str(len(data)))
                ctype = "application/octet-stream" if isinstance(body, bytes) else \
                    "application/json"
                self.send_header("Content-Type", ctype)
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self):
                cert = self.connection.getpeercert() if tls is not None else None
                if cert:
                    node.peers.append(dict(x[0] for x in cert["subject"])["commonName"])
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with node.cluster.lock:
                    node.cluster.requests.append({
                        "node": node.name, "method": self.command, "path": self.path,
                        "body": body, "headers": dict(self.headers)})
                    if node.unavailable > 0:
                        node.unavailable -= 1
                        self.answer(503, {"error": "no leader", "leader": None},
                                    {"Retry-After": 1})
                        return
                    route(self, node, body)

            do_GET = do_PUT = do_POST = do_DELETE = handle_any

        return Handler


def route(h, node, body):
    c = node.cluster
    url = urllib.parse.urlsplit(h.path)
    query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    path = url.path
    if path == "/v1/status" and h.command == "GET":
        return h.answer(200, node.status())
    if path == "/v1/bcp/status" and h.command == "GET":
        return bcp_status(h, node, query)
    if path == "/v1/members" and h.command == "GET":
        return h.answer(200, {"members": c.members})
    if path == "/v1/members" and h.command == "POST":
        m = json.loads(body)
        if any(x["name"] == m["name"] for x in c.members):
            return h.answer(409, {"error": "member exists: " + m["name"]})
        m["match_index"] = None
        c.members.append(m)
        return h.answer(200, {"member": m})
    if path.startswith("/v1/members/") and h.command == "DELETE":
        name = urllib.parse.unquote(path[len("/v1/members/"):])
        if not any(x["name"] == name for x in c.members):
            return h.answer(404, {"error": "unknown member: " + name})
        c.members = [x for x in c.members if x["name"] != name]
        return h.answer(200, {"removed": name})
    if path == "/v1/leader/transfer" and h.command == "POST":
        return h.answer(200, {"leader": json.loads(body)["name"]})
    if path == "/v1/txn" and h.command == "POST":
        return txn(h, c, json.loads(body))
    if path == "/v1/kv" and h.command == "GET":
        return kv_list(h, c, query)
    if path.startswith("/v1/kv/"):
        return kv_one(h, c, urllib.parse.unquote_to_bytes(path[len("/v1/kv/"):]), body, query)
    return h.answer(404, {"error": "no route: " + path})


def bcp_status(h, node, query):
    """The leader's view through any node while there is a leader; without one, a 503 after a
    park (as tandemd parks a request for a leader), or the node's own view when asked."""
    view = {"sites": [{"name": "east", "state": "active", "epoch": 1, "since": 1700000000250,
                       "nodes": [{"name": "east-1", "role": "voter", "reachable": True}]}],
            "leader": None, "preferred_site": "", "auto_bcp": True, "epoch": 1,
            "decisions": [], "node": node.name}
    if query.get("consistency") == "local":
        view.update({"local": True, "as_of": "2023-11-14T22:13:21.000Z", "node_state": "candidate",
                     "term": 7, "applied_index": 831, "commit_index": 831, "leader_known": False,
                     "last_leader": {"name": "west-2", "seen": "2023-11-14T22:13:09.000Z",
                                     "age_ms": 12000}})
        return h.answer(200, view)
    if node.cluster.leader is None:
        time.sleep(PARK_S)
        return h.answer(503, {"error": "no leader", "leader": None}, {"Retry-After": 1})
    return h.answer(200, view)


def kv_one(h, c, key, body, query):
    if h.command == "PUT":
        index = c.bump()
        create = c.kv[key][2] if key in c.kv else index
        c.kv[key] = [body, index, create]
        return h.answer(200, {"mod_index": index})
    if h.command == "GET":
        if key not in c.kv:
            return h.answer(404, {"error": "key not found: " + key.decode(errors="replace")})
        value, mod, create = c.kv[key]
        return h.answer(200, value, {"X-Tandem-Mod-Index": mod, "X-Tandem-Create-Index": create,
                                     "X-Tandem-Applied-Index": c.index})
    if h.command == "DELETE":
        existed = c.kv.pop(key, None) is not None
        return h.answer(200, {"deleted": existed, "mod_index": c.bump() if existed else c.index})
    return h.answer(405, {"error": "method not allowed"})


def kv_list(h, c, query):
    limit = int(query.get("limit", "100"))
    if not 1 <= limit <= 10000:
        return h.answer(400, {"error": "limit out of range"})
    prefix = query.get("prefix", "").encode()
    after = query["after"].encode() if "after" in query else None
    keys = sorted(k for k in c.kv if k.startswith(prefix) and (after is None or k > after))
    page = keys[:min(limit, PAGE_CAP)]
    kvs = [{"key": k.decode(), "value": base64.b64encode(c.kv[k][0]).decode(),
            "mod_index": c.kv[k][1], "create_index": c.kv[k][2]} for k in page]
    return h.answer(200, {"kvs": kvs, "more": len(keys) > len(page)})


def txn(h, c, req):
    def holds(cmp):
        cur = c.kv.get(cmp["key"].encode())
        if cmp["target"] == "value":
            equal = cur is not None and cur[0] == base64.b64decode(cmp["value"])
            return equal if cmp["op"] == "==" else not equal
        raise ValueError("fake supports value compares only")
    ok = all(holds(x) for x in req["compare"])
    results = []
    for op in req["success" if ok else "failure"]:
        if op["op"] == "put":
            index = c.bump()
            c.kv[op["key"].encode()] = [base64.b64decode(op["value"]), index, index]
            results.append({"op": "put", "mod_index": index})
    return h.answer(200, {"succeeded": ok, "mod_index": c.index, "results": results})


def closed_port():
    """A bound socket that never listens: connecting to it is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, "http://127.0.0.1:%d" % s.getsockname()[1]


def blackhole():
    """A listening socket nobody accepts on: connections complete, answers never come."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s, "http://127.0.0.1:%d" % s.getsockname()[1]


def ctl(*args, stdin=b"", env_endpoints=None):
    env = {k: v for k, v in os.environ.items() if k != "TANDEM_ENDPOINTS"}
    if env_endpoints is not None:
        env["TANDEM_ENDPOINTS"] = env_endpoints
    p = subprocess.run([CTL] + list(args), input=stdin, capture_output=True, env=env,
                       timeout=RUN_TIMEOUT_S)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def assert_one_line_error(rc, err, want_rc, *fragments):
    assert rc == want_rc, "exit %d, want %d; stderr %r" % (rc, want_rc, err)
    assert err.startswith("tandemctl: ") and err.endswith("\n") and err.count("\n") == 1, \
        "stderr not one line: %r" % err
    for f in fragments:
        assert f in err, "%r not in stderr %r" % (f, err)


class Fixture:
    def __init__(self):
        self.cluster = Cluster()
        self.leader = Node(self.cluster, "east-1", "east", state="leader")
        self.follower = Node(self.cluster, "west-1", "west", lag=2)
        self.closed_sock, self.closed = closed_port()
        self.cluster.leader = self.leader
        self.cluster.members = [self.leader.member(), self.follower.member(),
                                {"name": "witness-1", "site": "witness", "role": "voter",
                                 "raft": "127.0.0.1:1", "api": self.closed,
                                 "match_index": None}]

    def stop(self):
        self.leader.stop()
        self.follower.stop()
        self.closed_sock.close()


# ---- tests: each takes the fixture ----

def test_no_endpoints(f):
    rc, out, err = ctl("kv", "get", "k")
    assert_one_line_error(rc, err, 2, "no endpoints: use -e URL,... or set TANDEM_ENDPOINTS")
    assert out == b""


def test_usage_errors(f):
    for args, fragment in [(["frobnicate"], "unknown command 'frobnicate'"),
                           (["kv", "frob"], "unknown command 'kv frob'"),
                           (["kv", "put", "onlykey"], "missing arguments"),
                           (["kv", "get", "a", "b"], "too many arguments"),
                           (["kv"], "missing subcommand"),
                           (["-o", "yaml", "status"], "table or json"),
                           (["kv", "list", "--bogus"], "unknown option '--bogus'")]:
        rc, out, err = ctl("-e", f.leader.url, *args)
        assert_one_line_error(rc, err, 2, fragment, "--help")
        assert out == b""
    # A file that cannot be read: one line naming it (this freed an uninitialised pointer).
    for path in ("/nonexistent/ledger.csv", "/nonexistent/ledger.json"):
        rc, out, err = ctl("-e", f.leader.url, "box", "checkin", "--file", path)
        assert_one_line_error(rc, err, 2, path, "No such file or directory")
        assert out == b""
    assert f.cluster.received() == [], "usage errors must not reach the server"


def test_help(f):
    rc, out, err = ctl("--help")
    assert rc == 0 and err == "" and b"kv put" in out and b"member add" in out
    rc, out, err = ctl("kv", "put", "--help")
    assert rc == 0 and out.startswith(b"usage: tandemctl [options] kv put KEY VALUE")


def test_failover_from_closed_port(f):
    rc, out, err = ctl("-e", f.closed + "," + f.follower.url, "kv", "put", "fo", "bar")
    assert rc == 0, err
    assert out.startswith(b"ok mod_index "), out
    assert f.cluster.kv[b"fo"][0] == b"bar"
    # The endpoint list also comes from the environment.
    rc, out, err = ctl("kv", "get", "fo", env_endpoints=f.closed + "," + f.leader.url)
    assert rc == 0 and out == b"bar", (rc, out, err)


def test_all_endpoints_down(f):
    s2, closed2 = closed_port()
    try:
        rc, out, err = ctl("-e", f.closed + "," + closed2, "kv", "get", "k")
    finally:
        s2.close()
    assert_one_line_error(rc, err, 3, "kv get k", "no endpoint reachable")


def test_not_found_is_refused(f):
    rc, out, err = ctl("-e", f.leader.url, "kv", "get", "missing-key")
    assert_one_line_error(rc, err, 1, "kv get missing-key: ", "key not found", "404")
    assert out == b""


def test_put_exact_bytes_and_encoded_key(f):
    key = "dir/sub key?&%é"
    value = bytes(range(256)) * 3
    with tempfile.NamedTemporaryFile(delete=False) as tmp:
        tmp.write(value)
    try:
        rc, out, err = ctl("-e", f.leader.url, "kv", "put", key, "@" + tmp.name)
    finally:
        os.unlink(tmp.name)
    assert rc == 0, err
    put = f.cluster.received("PUT")[-1]
    assert put["path"] == "/v1/kv/dir%2Fsub%20key%3F%26%25%C3%A9", put["path"]
    assert put["body"] == value
    assert put["headers"].get("Content-Type") == "application/octet-stream"
    assert f.cluster.kv[key.encode()][0] == value
    # get prints exactly the stored bytes, nothing added.
    rc, out, err = ctl("-e", f.leader.url, "kv", "get", key)
    assert rc == 0 and out == value, (rc, len(out), err)
    rc, out, err = ctl("-e", f.leader.url, "-o", "json", "kv", "get", key)
    doc = json.loads(out)
    assert doc["key"] == key and base64.b64decode(doc["value_b64"]) == value
    assert doc["mod_index"] == f.cluster.kv[key.encode()][1] and "value" not in doc
    # Tables show binary values escaped and cut, on one line.
    rc, out, err = ctl("-e", f.leader.url, "kv", "list", "dir/")
    row = out.decode().splitlines()[1]
    assert row.startswith("dir/sub key?&%\\xc3\\xa9 ") and "\\x00\\x01\\x02" in row, row
    assert row.endswith("..."), row


def test_put_from_stdin_and_get_json(f):
    rc, out, err = ctl("-e", f.leader.url, "kv", "put", "stdin-key", "-", stdin=b"line1\nline2")
    assert rc == 0, err
    assert f.cluster.kv[b"stdin-key"][0] == b"line1\nline2"
    rc, out, err = ctl("-e", f.leader.url, "kv", "get", "stdin-key", "--local")
    assert rc == 0 and out == b"line1\nline2"
    assert f.cluster.received("GET")[-1]["path"] == "/v1/kv/stdin-key?consistency=local"
    # "--" ends options, so a value may start with '-'.
    rc, out, err = ctl("-e", f.leader.url, "kv", "put", "dash", "--", "-5")
    assert rc == 0 and f.cluster.kv[b"dash"][0] == b"-5", err
    rc, out, err = ctl("-e", f.leader.url, "kv", "get", "stdin-key", "-o", "json")
    doc = json.loads(out)
    assert doc["value"] == "line1\nline2" and doc["key"] == "stdin-key"


def test_del(f):
    f.cluster.kv[b"gone"] = [b"x", 1, 1]
    rc, out, err = ctl("-e", f.leader.url, "kv", "del", "gone")
    assert rc == 0 and out.startswith(b"ok deleted"), (out, err)
    assert b"gone" not in f.cluster.kv
    rc, out, err = ctl("-e", f.leader.url, "-o", "json", "kv", "del", "gone")
    assert rc == 0 and json.loads(out)["deleted"] is False


def test_cas(f):
    f.cluster.kv[b"cas/k"] = [b"old", 5, 5]
    rc, out, err = ctl("-e", f.leader.url, "kv", "cas", "cas/k", "old", "new")
    assert rc == 0, err
    body = json.loads(f.cluster.received("POST", "/v1/txn")[-1]["body"])
    assert body == {
        "compare": [{"key": "cas/k", "target": "value", "op": "==",
                     "value": base64.b64encode(b"old").decode()}],
        "success": [{"op": "put", "key": "cas/k", "value": base64.b64encode(b"new").decode()}],
        "failure": []}, body
    assert f.cluster.kv[b"cas/k"][0] == b"new"
    assert out == b"ok mod_index %d\n" % f.cluster.kv[b"cas/k"][1], out
    rc, out, err = ctl("-e", f.leader.url, "kv", "cas", "cas/k", "old", "newer")
    assert_one_line_error(rc, err, 1)
    assert err == "tandemctl: kv cas cas/k: compare failed (current value differs)\n", err
    assert f.cluster.kv[b"cas/k"][0] == b"new"


def test_list_pages(f):
    for i in range(5):
        f.cluster.kv[b"list/%d" % i] = [b"v\x01%d" % i, 20 + i, 20 + i]
    f.cluster.kv[b"other"] = [b"x", 1, 1]
    before = len(f.cluster.received("GET", "/v1/kv?"))
    rc, out, err = ctl("-e", f.leader.url, "kv", "list", "list/")
    assert rc == 0, err
    lines = out.decode().splitlines()
    assert lines[0].split() == ["KEY", "MOD_INDEX", "VALUE"], lines
    assert [l.split()[0] for l in lines[1:]] == ["list/%d" % i for i in range(5)], lines
    assert "v\\x010" in lines[1], lines[1]
    pages = f.cluster.received("GET", "/v1/kv?")[before:]
    assert len(pages) == 3, [p["path"] for p in pages]
    assert "after=list%2F1" in pages[1]["path"], pages[1]["path"]
    rc, out, err = ctl("-e", f.leader.url, "-o", "json", "kv", "list", "list/", "--limit", "3")
    doc = json.loads(out)
    assert [x["key"] for x in doc["kvs"]] == ["list/0", "list/1", "list/2"] and doc["more"]
    assert doc["kvs"][0]["value"] == "v\x010"


def test_no_leader_moves_on_and_retries(f):
    f.follower.unavailable = 1000
    try:
        rc, out, err = ctl("-e", f.follower.url + "," + f.leader.url, "kv", "put", "nl", "1")
        assert rc == 0, err
        assert f.cluster.kv[b"nl"][0] == b"1"
        # A single node that finds its leader after two refusals: later rounds succeed.
        f.follower.unavailable = 2
        rc, out, err = ctl("-e", f.follower.url, "kv", "put", "nl", "2")
        assert rc == 0, err
        assert f.cluster.kv[b"nl"][0] == b"2"
        # Never a leader: bounded rounds, then the 503 is reported.
        f.follower.unavailable = 1000
        before = len(f.cluster.received("PUT", "/v1/kv/nl"))
        t0 = time.monotonic()
        rc, out, err = ctl("-e", f.follower.url, "kv", "put", "nl", "3")
        assert_one_line_error(rc, err, 1, "no leader", "503")
        assert len(f.cluster.received("PUT", "/v1/kv/nl")) - before == 3
        assert time.monotonic() - t0 < 10
    finally:
        f.follower.unavailable = 0


def test_timeout_fails_over_reads_not_posts(f):
    sock, hole = blackhole()
    try:
        f.cluster.kv[b"t"] = [b"tv", 1, 1]
        rc, out, err = ctl("--timeout", "0.5", "-e", hole + "," + f.leader.url, "kv", "get", "t")
        assert rc == 0 and out == b"tv", (rc, out, err)
        before = len(f.cluster.received("POST", "/v1/txn"))
        rc, out, err = ctl("--timeout", "0.5", "-e", hole + "," + f.leader.url,
                           "kv", "cas", "t", "tv", "x")
        assert_one_line_error(rc, err, 3, "outcome unknown")
        assert len(f.cluster.received("POST", "/v1/txn")) == before
        assert f.cluster.kv[b"t"][0] == b"tv"
        # A refused connection never delivered anything, so a POST may move on.
        rc, out, err = ctl("-e", f.closed + "," + f.leader.url, "kv", "cas", "t", "tv", "y")
        assert rc == 0 and f.cluster.kv[b"t"][0] == b"y", err
    finally:
        sock.close()


def test_status_table(f):
    rc, out, err = ctl("-e", f.follower.url, "status")
    assert rc == 0, err
    text = out.decode()
    lines = text.splitlines()
    assert lines[0].startswith("cluster fake-cluster  leader east-1  term 7"), lines[0]
    header = lines[1].split()
    assert header == ["MEMBER", "SITE", "ROLE", "STATE", "APPLIED", "LAG"], header
    rows = {l.split()[-6] if l.startswith("*") else l.split()[0]: l for l in lines[2:]}
    assert set(rows) == {"east-1", "west-1", "witness-1"}, rows
    assert rows["east-1"].startswith("*") and not rows["west-1"].startswith("*")
    assert rows["east-1"].split()[4:] == ["leader", str(f.cluster.index), "0"], rows["east-1"]
    assert rows["west-1"].split()[3:] == ["follower", str(f.cluster.index - 2), "2"]
    # witness is down: state "down", lag from the leader's match index.
    assert rows["witness-1"].split()[3:] == ["down", "-", "1"], rows["witness-1"]
    # Columns line up: every row's STATE starts where the header's does.
    col = lines[1].index("STATE")
    assert all(l[col:].split()[0] in ("leader", "follower", "down") for l in lines[2:])


def test_status_warnings(f):
    """Each member's own warnings (a TLS certificate within 30 days of expiry) show in status."""
    text = ("TLS certificate west-1 expires at 2027-01-01T00:00:00.000Z, in 12 days: renew it "
            "and send SIGHUP")
    f.follower.warnings = [text]
    try:
        rc, out, err = ctl("-e", f.leader.url, "status")
        assert rc == 0, err
        lines = out.decode().splitlines()
        assert lines[1] == "warning: west-1: " + text, lines[:3]
        rc, out, err = ctl("-e", f.leader.url, "-o", "json", "status")
        assert rc == 0 and json.loads(out)["warnings"] == ["west-1: " + text], out
    finally:
        f.follower.warnings = []
    rc, out, err = ctl("-e", f.leader.url, "status")
    assert rc == 0 and b"warning:" not in out, out


def test_status_lag_without_a_leader(f):
    """No leader: a node that stopped at 831 while another applied 5,119 is 4,288 behind, not 0
    (each node's lag used to be counted against its own commit index)."""
    f.cluster.leader = None
    f.cluster.index = 5119
    f.leader.state = "candidate"
    f.follower.state = "candidate"
    f.follower.lag = f.follower.commit_lag = 5119 - 831
    rc, out, err = ctl("-e", f.follower.url, "status")
    assert rc == 0, err
    lines = out.decode().splitlines()
    assert lines[0].startswith("cluster fake-cluster  leader none"), lines[0]
    assert "highest index any node reported (5119)" in lines[1], lines[1]
    rows = {l.split()[0]: l.split() for l in lines[3:]}
    assert rows["west-1"][3:] == ["candidate", "831", "4288"], rows["west-1"]
    assert rows["east-1"][3:] == ["candidate", "5119", "0"], rows["east-1"]
    assert rows["witness-1"][3:] == ["down", "-", "-"], rows["witness-1"]
    rc, out, err = ctl("-e", f.follower.url, "-o", "json", "status")
    doc = json.loads(out)
    assert doc["lag_against"] == {"index": 5119, "leader": False}, doc["lag_against"]
    assert {m["name"]: m["lag"] for m in doc["members"]} == \
        {"east-1": 0, "west-1": 4288, "witness-1": None}, doc["members"]


def test_bcp_status_without_a_leader_falls_back_to_a_local_view(f):
    """A stalled node first in the list and no leader: bcp status still answers within --timeout,
    from the first node that answers, marked local and dated; it asks that node first."""
    f.cluster.leader = None
    sock, hole = blackhole()
    try:
        rc, out, err = ctl("--timeout", "3", "-e", ",".join([hole, f.follower.url, f.leader.url]),
                           "bcp", "status")
    finally:
        sock.close()
    assert rc == 0, (rc, out, err)
    lines = out.decode().splitlines()
    asked = [r for r in f.cluster.received("GET", "/v1/bcp/status?") if "local" in r["path"]]
    assert len(asked) == 1 and asked[0]["node"] in ("west-1", "east-1"), asked
    assert lines[0] == ("LOCAL VIEW of %s, not the leader's: as of 2023-11-14T22:13:21.000Z, "
                        "candidate, term 7, applied index 831, commit index 831"
                        % asked[0]["node"]), lines[0]
    assert lines[1] == ("last leader known here: west-2, seen 2023-11-14T22:13:09.000Z "
                        "(12.0 s before)"), lines[1]
    assert lines[2].startswith("why local: ") and "(HTTP 503)" in lines[2], lines[2]
    assert lines[3].startswith("leader none"), lines[3]
    assert "2023-11-14T22:13:20.250Z" in out.decode(), out  # SINCE, never raw milliseconds
    paths = [r["path"] for r in f.cluster.received("GET", "/v1/bcp/status")]
    # One pass for the leader's view (a 503 from each answering node, no repeated rounds),
    # then the local view from a node that had answered, not the stalled one first.
    assert paths == ["/v1/bcp/status", "/v1/bcp/status",
                     "/v1/bcp/status?consistency=local"], paths
    # --local never asks for the leader's view.
    rc, out, err = ctl("-e", f.leader.url, "-o", "json", "bcp", "status", "--local")
    doc = json.loads(out)
    assert rc == 0 and doc["local"] is True and "fallback_reason" not in doc, (rc, doc, err)
    assert f.cluster.received("GET", "/v1/bcp/status")[-1]["path"].endswith("consistency=local")


def test_status_json(f):
    rc, out, err = ctl("-e", f.leader.url, "-o", "json", "status")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["leader"]["name"] == "east-1"
    by = {m["name"]: m for m in doc["members"]}
    assert by["east-1"]["state"] == "leader" and by["east-1"]["reachable"] is True
    assert by["west-1"]["applied_index"] == f.cluster.index - 2 and by["west-1"]["lag"] == 2
    assert by["witness-1"]["reachable"] is False and by["witness-1"]["state"] == "down"
    assert out.startswith(b"{\n  \""), "pretty-printed with 2 spaces"


def test_members(f):
    rc, out, err = ctl("-e", f.leader.url, "member", "list")
    assert rc == 0 and b"witness-1" in out and out.split(b"\n")[0].split()[0] == b"NAME"
    rc, out, err = ctl("-e", f.leader.url, "member", "add", "west-2", "west", "127.0.0.1:9302",
                       "http://127.0.0.1:9402", "--role", "standby")
    assert rc == 0, err
    body = json.loads(f.cluster.received("POST", "/v1/members")[-1]["body"])
    assert body == {"name": "west-2", "site": "west", "raft": "127.0.0.1:9302",
                    "api": "http://127.0.0.1:9402", "role": "standby"}, body
    rc, out, err = ctl("-e", f.leader.url, "member", "add", "west-2", "west", "h:1", "u")
    assert_one_line_error(rc, err, 1, "member exists", "409")
    rc, out, err = ctl("-e", f.leader.url, "member", "add", "x", "y", "h:1", "u", "--role=boss")
    assert_one_line_error(rc, err, 2, "--role")
    rc, out, err = ctl("-e", f.leader.url, "member", "remove", "west-2")
    assert rc == 0 and out == b"removed west-2\n"
    rc, out, err = ctl("-e", f.leader.url, "member", "remove", "west-2")
    assert_one_line_error(rc, err, 1, "unknown member: west-2", "404")
    rc, out, err = ctl("-e", f.leader.url, "-o", "json", "member", "transfer-leader", "west-1")
    assert rc == 0 and json.loads(out) == {"leader": "west-1"}
    assert json.loads(f.cluster.received("POST", "/v1/leader/transfer")[-1]["body"]) == \
        {"name": "west-1"}


TESTS = [v for k, v in list(globals().items()) if k.startswith("test_")]


def run_all(tests, make_fixture):
    """Runs each test with a fresh fixture (make_fixture(test)); prints one line per test and
    `N passed, M failed`; returns the exit code."""
    if not os.access(CTL, os.X_OK):
        print("tandemctl not found at %s (set TANDEM_BIN_DIR)" % CTL)
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    for test in tests:
        f = make_fixture(test)
        try:
            test(f)
            passed += 1
            print("ok   %s" % test.__name__)
        except Exception:
            failed += 1
            print("FAIL %s" % test.__name__)
            traceback.print_exc(file=sys.stdout)
        finally:
            f.stop()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def main():
    return run_all(TESTS, lambda test: Fixture())


if __name__ == "__main__":
    sys.exit(main())
