#!/usr/bin/env python3
"""Bad input against a real 3-node tandemd cluster: every refused request gets its documented
status and a JSON {"error": ...} body, through the leader and through a follower, and changes
nothing (state digest and a witness key's value and indexes compared before and after);
malformed HTTP on a raw socket gets 400 and a closed connection; tandemctl's usage and
unreachable-cluster exit codes."""

import base64
import json
import os
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BIN_DIR, Cluster, run_tests, tls_socket  # noqa: E402

BODY_MAX_KIB = 8  # body_bytes_max_kib for the cluster: 413 tests stay small
BODY_MAX = BODY_MAX_KIB * 1024
HEADER_TIMEOUT_MS = 2000  # header_timeout_ms for the cluster: the slowloris test stays short
SETTINGS = {"body_bytes_max_kib": BODY_MAX_KIB, "header_timeout_ms": HEADER_TIMEOUT_MS}
KEY_MAX = 511
TXN_MAX = 64           # compares, and operations per branch
LIST_LIMIT_MAX = 10000
RAW_TIMEOUT_S = 5      # a raw-socket exchange must end (answer and close) within this
RAW_READ_MAX = 1 << 20  # bytes read from one raw connection at most
CTL_TIMEOUT_S = 30
SETTLE_TIMEOUT_S = 20   # the site controller's start-up steps are done within this
QUIET_S = 1.0           # no change of state for this long (10 site controller ticks) = settled
WITNESS_KEY = "witness"
WITNESS_VALUE = b"original value"


def b64(data):
    return base64.b64encode(data).decode()


def kv(key):
    return "/v1/kv/" + key  # key already percent-encoded by the caller


def txn(compare=None, success=None, failure=None):
    body = {}
    if compare is not None:
        body["compare"] = compare
    if success is not None:
        body["success"] = success
    if failure is not None:
        body["failure"] = failure
    return json.dumps(body)


PUT_NEW = {"op": "put", "key": WITNESS_KEY, "value": b64(b"CHANGED")}
EXISTS = {"key": WITNESS_KEY, "target": "exists", "op": "==", "exists": True}
LONG_KEY = "a" * (KEY_MAX + 1)
# A drill report as node/bcp/drill.c posts it (the forged ones below differ by one field).
DRILL_REPORT = {"id": "d-1", "site": "east", "started": 1, "finished": 2, "ok": True, "rto_ms": 1,
                "rpo_writes": 0, "digests_equal": True}


def member(name, raft, api, role="voter"):
    return json.dumps({"name": name, "site": "east", "raft": raft, "api": api, "role": role})


def bad_requests(c):
    """(what, method, path, body, status) of every refused request; each must change nothing."""
    first = c.nodes[c.names[0]]
    return [
        # keys
        ("key of 512 bytes (PUT)", "PUT", kv(LONG_KEY), b"x", 400),
        ("key of 512 bytes (GET)", "GET", kv(LONG_KEY), None, 400),
        ("key of 512 bytes (local GET)", "GET", kv(LONG_KEY) + "?consistency=local", None, 400),
        ("key of 512 bytes (DELETE)", "DELETE", kv(LONG_KEY), None, 400),
        ("invalid UTF-8 key %FF (PUT)", "PUT", kv("%FF"), b"x", 400),
        ("invalid UTF-8 key %FF (GET)", "GET", kv("%FF"), None, 400),
        ("invalid UTF-8 key %FF (DELETE)", "DELETE", kv("%FF"), None, 400),
        ("invalid UTF-8 key %C3%28", "PUT", kv("%C3%28"), b"x", 400),
        ("NUL in key", "PUT", kv("a%00b"), b"x", 400),
        ("malformed percent-encoding", "PUT", kv("a%G1"), b"x", 400),
        ("truncated percent-encoding", "PUT", kv("a%F"), b"x", 400),
        ("body over body_bytes_max", "PUT", kv(WITNESS_KEY), b"y" * (BODY_MAX + 1), 413),
        ("missing key (GET)", "GET", kv("no-such-key"), None, 404),
        ("missing key (local GET)", "GET", kv("no-such-key") + "?consistency=local", None, 404),
        # kv list parameters
        ("list limit=0", "GET", "/v1/kv?limit=0", None, 400),
        ("list limit=10001", "GET", "/v1/kv?limit=%d" % (LIST_LIMIT_MAX + 1), None, 400),
        ("list limit=-1", "GET", "/v1/kv?limit=-1", None, 400),
        ("list limit=abc", "GET", "/v1/kv?limit=abc", None, 400),
        ("list limit=1.5", "GET", "/v1/kv?limit=1.5", None, 400),
        ("list limit empty", "GET", "/v1/kv?limit=", None, 400),
        ("list limit=0 local", "GET", "/v1/kv?limit=0&consistency=local", None, 400),
        ("list after too long", "GET", "/v1/kv?after=" + "a" * (KEY_MAX + 1), None, 400),
        # transactions
        ("txn malformed JSON", "POST", "/v1/txn", "{\"compare\": [", 400),
        ("txn body not an object", "POST", "/v1/txn", "[1, 2]", 400),
        ("txn empty body", "POST", "/v1/txn", "", 400),
        ("txn bad base64 put value", "POST", "/v1/txn",
         txn(success=[{"op": "put", "key": WITNESS_KEY, "value": "!!not base64!!"}]), 400),
        ("txn bad base64 compare value", "POST", "/v1/txn",
         txn(compare=[{"key": WITNESS_KEY, "target": "value", "op": "==", "value": "@@@"}],
             success=[PUT_NEW]), 400),
        ("txn value not a string", "POST", "/v1/txn",
         txn(success=[{"op": "put", "key": WITNESS_KEY, "value": 12}]), 400),
        ("txn 65 compares", "POST", "/v1/txn",
         txn(compare=[EXISTS] * (TXN_MAX + 1), success=[PUT_NEW]), 400),
        ("txn 65 success operations", "POST", "/v1/txn", txn(success=[PUT_NEW] * (TXN_MAX + 1)),
         400),
        ("txn 65 failure operations", "POST", "/v1/txn",
         txn(compare=[dict(EXISTS, exists=False)], failure=[PUT_NEW] * (TXN_MAX + 1)), 400),
        ("txn unknown compare target", "POST", "/v1/txn",
         txn(compare=[{"key": WITNESS_KEY, "target": "size", "op": "==", "value": "MQ=="}],
             success=[PUT_NEW]), 400),
        ("txn missing compare target", "POST", "/v1/txn",
         txn(compare=[{"key": WITNESS_KEY, "op": "==", "value": "MQ=="}], success=[PUT_NEW]), 400),
        ("txn unknown compare op", "POST", "/v1/txn",
         txn(compare=[{"key": WITNESS_KEY, "target": "mod_index", "op": "<=", "mod_index": 1}],
             success=[PUT_NEW]), 400),
        ("txn exists compare with <", "POST", "/v1/txn",
         txn(compare=[dict(EXISTS, op="<")], success=[PUT_NEW]), 400),
        ("txn exists not a boolean", "POST", "/v1/txn",
         txn(compare=[dict(EXISTS, exists="yes")], success=[PUT_NEW]), 400),
        ("txn negative mod_index", "POST", "/v1/txn",
         txn(compare=[{"key": WITNESS_KEY, "target": "mod_index", "op": ">", "mod_index": -1}],
             success=[PUT_NEW]), 400),
        ("txn compare not an object", "POST", "/v1/txn", txn(compare=["k"], success=[PUT_NEW]),
         400),
        ("txn compare not an array", "POST", "/v1/txn", txn(compare=EXISTS, success=[PUT_NEW]),
         400),
        ("txn unknown operation", "POST", "/v1/txn",
         txn(success=[{"op": "incr", "key": WITNESS_KEY}]), 400),
        ("txn operation without key", "POST", "/v1/txn", txn(success=[{"op": "delete"}]), 400),
        ("txn key not a string", "POST", "/v1/txn", txn(success=[{"op": "delete", "key": 7}]),
         400),
        ("txn key of 512 bytes", "POST", "/v1/txn",
         txn(success=[{"op": "put", "key": LONG_KEY, "value": "MQ=="}]), 400),
        # A valid put before a bad operation must not be applied on its own.
        ("txn valid put then bad operation", "POST", "/v1/txn",
         txn(success=[PUT_NEW, {"op": "bogus", "key": WITNESS_KEY}]), 400),
        ("txn valid compare then bad compare", "POST", "/v1/txn",
         txn(compare=[EXISTS, {"key": WITNESS_KEY, "target": "nope", "op": "=="}],
             success=[PUT_NEW]), 400),
        # strict input (issue 12): unknown fields, operands of another target, empty txn, base64
        ("txn unknown top-level field", "POST", "/v1/txn",
         json.dumps({"success": [PUT_NEW], "x": 1}), 400),
        ("txn only an unknown field", "POST", "/v1/txn", json.dumps({"x": 1}), 400),
        ("txn with no operation", "POST", "/v1/txn", "{}", 400),
        ("txn compare-only", "POST", "/v1/txn", txn(compare=[EXISTS]), 400),
        ("txn unknown compare field", "POST", "/v1/txn",
         txn(compare=[dict(EXISTS, extra=1)], success=[PUT_NEW]), 400),
        ("txn compare with another target's operand", "POST", "/v1/txn",
         txn(compare=[dict(EXISTS, mod_index=3)], success=[PUT_NEW]), 400),
        ("txn unknown operation field", "POST", "/v1/txn",
         txn(success=[dict(PUT_NEW, lease=5)]), 400),
        ("txn delete with a value", "POST", "/v1/txn",
         txn(success=[{"op": "delete", "key": WITNESS_KEY, "value": "MQ=="}]), 400),
        ("txn base64 a=== (was stored empty)", "POST", "/v1/txn",
         txn(success=[{"op": "put", "key": WITNESS_KEY, "value": "a==="}]), 400),
        ("txn base64 unpadded bmV (was stored as ne)", "POST", "/v1/txn",
         txn(success=[{"op": "put", "key": WITNESS_KEY, "value": "bmV"}]), 400),
        ("txn base64 non-canonical Zh==", "POST", "/v1/txn",
         txn(success=[{"op": "put", "key": WITNESS_KEY, "value": "Zh=="}]), 400),
        ("consistency=bogus on a key", "GET", kv(WITNESS_KEY) + "?consistency=bogus", None, 400),
        ("consistency=bogus on status", "GET", "/v1/status?consistency=bogus", None, 400),
        ("consistency=bogus on jobs", "GET", "/v1/jobs?consistency=bogus", None, 400),
        ("job action with an unknown field", "POST", "/v1/jobs/J-none/advance",
         json.dumps({"x": 1}), 400),
        ("job cancel with an unknown field", "POST", "/v1/jobs/J-none/cancel",
         json.dumps({"x": 1}), 400),
        ("box return with an unknown field", "POST", "/v1/boxes/B-none/return",
         json.dumps({"x": 1}), 400),
        # strict input on the BCP, member and rebalance routes (issue 12): unknown, missing and
        # mistyped fields are 400 before anything is relayed or proposed
        ("bcp invoke with an unknown field", "POST", "/v1/bcp/invoke",
         json.dumps({"site": "east", "x": 1}), 400),
        ("bcp invoke without site", "POST", "/v1/bcp/invoke", json.dumps({"reason": "r"}), 400),
        ("bcp invoke force not a boolean", "POST", "/v1/bcp/invoke",
         json.dumps({"site": "east", "force": "yes"}), 400),
        ("bcp revoke with a misspelt field", "POST", "/v1/bcp/revoke",
         json.dumps({"site": "east", "failbak": True}), 400),
        ("bcp prefer with an unknown field", "POST", "/v1/bcp/prefer",
         json.dumps({"site": "", "x": 1}), 400),
        ("bcp drill with an unknown field", "POST", "/v1/bcp/drill",
         json.dumps({"site": "east", "dry_run": True, "x": 1}), 400),
        ("bcp drill report with an unknown field", "POST", "/v1/bcp/drills",
         json.dumps(dict(DRILL_REPORT, forged=True)), 400),
        ("bcp drill report without rto_ms", "POST", "/v1/bcp/drills",
         json.dumps({k: v for k, v in DRILL_REPORT.items() if k != "rto_ms"}), 400),
        ("bcp drills ?full=bogus", "GET", "/v1/bcp/drills?full=bogus", None, 400),
        ("bcp decision with an unknown field", "POST", "/v1/bcp/decisions",
         json.dumps({"action": "release", "member": "east-1", "site": "east", "reason": "r",
                     "by": "me", "x": 1}), 400),
        ("member rejoin with an unknown field", "POST", "/v1/members/east-1/rejoin",
         json.dumps({"x": 1}), 400),
        ("members add with an unknown field", "POST", "/v1/members",
         json.dumps({"name": "east-9", "site": "east", "raft": "127.0.0.1:1",
                     "api": "http://127.0.0.1:2", "x": 1}), 400),
        ("transfer with an unknown field", "POST", "/v1/leader/transfer",
         json.dumps({"name": "no-such-node", "x": 1}), 400),
        ("capacity with an unknown field", "POST", "/v1/sites/east/capacity",
         json.dumps({"capacity": 1, "x": 1}), 400),
        ("rebalance apply with an unknown field", "POST", "/v1/rebalance/apply",
         json.dumps({"id": "0" * 32, "x": 1}), 400),
        ("rebalance apply plan with an unknown field", "POST", "/v1/rebalance/apply",
         json.dumps({"id": "0" * 32, "index": 1, "objective": "makespan", "moves": [], "x": 1}),
         400),
        ("job id .. in the path", "POST", "/v1/jobs/../advance", "{}", 400),
        ("job id . in the path", "POST", "/v1/jobs/./advance", "{}", 400),
        ("job read of id ..", "GET", "/v1/jobs/..", None, 400),
        ("job create with id ..", "POST", "/v1/jobs",
         json.dumps({"id": "..", "client": "acme", "kind": "scan", "site": "east"}), 400),
        ("box checkin with id .", "POST", "/v1/boxes",
         json.dumps({"boxes": [{"id": ".", "ledger": "L1", "client": "acme", "site": "east",
                                "shelf": "S1"}]}), 400),
        ("txn over body_bytes_max", "POST", "/v1/txn",
         txn(success=[{"op": "put", "key": WITNESS_KEY, "value": b64(b"z" * BODY_MAX)}]), 413),
        # membership and leadership
        ("members add missing fields", "POST", "/v1/members", json.dumps({"name": "east-9"}), 400),
        ("members add fields not strings", "POST", "/v1/members",
         json.dumps({"name": "east-9", "site": "east", "raft": 5, "api": "http://127.0.0.1:1"}),
         400),
        ("members add malformed JSON", "POST", "/v1/members", "{name", 400),
        ("members add unknown role", "POST", "/v1/members",
         member("east-9", "127.0.0.1:1", "http://127.0.0.1:2", role="boss"), 400),
        ("members add bad raft address", "POST", "/v1/members",
         member("east-9", "no-port", "http://127.0.0.1:2"), 400),
        ("members add duplicate name", "POST", "/v1/members",
         member(c.names[0], "127.0.0.1:1", "http://127.0.0.1:2"), 409),
        ("members add duplicate raft address", "POST", "/v1/members",
         member("east-9", first["raft"], "http://127.0.0.1:2"), 409),
        ("members remove unknown", "DELETE", "/v1/members/no-such-node", None, 404),
        ("transfer to unknown member", "POST", "/v1/leader/transfer",
         json.dumps({"name": "no-such-node"}), 404),
        ("transfer without name", "POST", "/v1/leader/transfer", json.dumps({"nom": "x"}), 400),
        # the site controller would move leadership off the witness at once: refused, not a 200
        # undone a tick later
        ("transfer to the witness", "POST", "/v1/leader/transfer",
         json.dumps({"name": "witness-1"}), 409),
        ("transfer malformed JSON", "POST", "/v1/leader/transfer", "not json", 400),
        # routes and methods
        ("unknown route", "GET", "/v1/nope", None, 404),
        ("unknown version", "GET", "/v2/kv/" + WITNESS_KEY, None, 404),
        ("root", "GET", "/", None, 404),
        ("POST on a key", "POST", kv(WITNESS_KEY), b"x", 405),
        ("PATCH on a key", "PATCH", kv(WITNESS_KEY), b"x", 405),
        ("GET on txn", "GET", "/v1/txn", None, 405),
        ("POST on status", "POST", "/v1/status", "{}", 405),
        ("DELETE on digest", "DELETE", "/v1/digest", None, 405),
        ("PUT on members", "PUT", "/v1/members", "{}", 405),
        ("DELETE on members without a name", "DELETE", "/v1/members", None, 405),
        ("GET on leader transfer", "GET", "/v1/leader/transfer", None, 405),
        ("PUT on healthz", "PUT", "/healthz", b"x", 405),
    ]


def observe(c, name):
    """What must not change: node name's state digest and the witness key's value and indexes."""
    # The audit trail records refused requests too: everything else must stay as it was.
    digest = c.get_json(name, "/v1/digest")["data_digest"]
    status, headers, body = c.api(name, "GET", kv(WITNESS_KEY) + "?consistency=local")
    assert status == 200, (name, status, body)
    return {"state_digest": digest, "value": body,
            "mod_index": headers["X-Tandem-Mod-Index"],
            "create_index": headers["X-Tandem-Create-Index"]}


def settle(c):
    """The leader once the site controller is done with its start-up steps (they are recorded in
    the state): leadership off the witness site and the state digest unchanged for QUIET_S."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        leader = c.leader(timeout=max(1, deadline - time.monotonic()))
        digest = c.get_json(leader, "/v1/digest")["data_digest"]
        if (leader, digest) != last:
            last, since = (leader, digest), time.monotonic()
        elif c.nodes[leader]["site"] != "witness" and time.monotonic() - since >= QUIET_S:
            return leader
        time.sleep(0.1)
    raise AssertionError("no settled leader and state within %d s (last %s)" % (
        SETTLE_TIMEOUT_S, last))


def check_error(what, via, status, headers, body, expected):
    context = "%s via %s: got %d %r" % (what, via, status, body[:300])
    assert status == expected, "%s, expected %d" % (context, expected)
    assert (headers["Content-Type"] or "").startswith("application/json"), (
        context, headers["Content-Type"])
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError("%s: body is not JSON" % context)
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], context
    return doc


def setup_boundaries(c, leader):
    """Requests just inside every limit are accepted (so the refusals below are about the limit):
    done before the baseline is taken."""
    c.kv_put(leader, WITNESS_KEY, WITNESS_VALUE)
    c.kv_put(leader, "b" * KEY_MAX, b"longest key")
    c.kv_put(leader, "é-ключ-鍵", b"utf-8 key")
    status, _, body = c.api(leader, "PUT", kv("body-max"), b"m" * BODY_MAX)
    assert status == 200, (status, body)
    status, _, body = c.api(leader, "POST", "/v1/txn",
                            txn(compare=[EXISTS] * TXN_MAX,
                                success=[{"op": "get", "key": WITNESS_KEY}] * TXN_MAX))
    assert status == 200 and json.loads(body)["succeeded"] is True, (status, body)
    for limit in (1, LIST_LIMIT_MAX):
        status, _, body = c.api(leader, "GET", "/v1/kv?limit=%d" % limit)
        assert status == 200, (limit, status, body)


def test_bad_requests_refused_and_change_nothing():
    with Cluster("3", settings=SETTINGS) as c:
        leader = settle(c)
        follower = next(n for n in c.names if n != leader)
        setup_boundaries(c, leader)
        c.wait_converged()
        baseline = observe(c, leader)
        cases = bad_requests(c)
        for via in (leader, follower):  # a follower forwards writes and linearizable reads
            for what, method, path, body, expected in cases:
                status, headers, answer = c.api(via, method, path, body=body)
                doc = check_error(what, via, status, headers, answer, expected)
                if what.startswith("missing key"):
                    assert doc["error"] == "key not found: no-such-key", doc
                now = observe(c, leader)
                assert now == baseline, "%s via %s changed the state: %s -> %s" % (
                    what, via, baseline, now)
        # Every node still holds exactly the baseline state.
        index, _ = c.wait_converged()
        for name, d in c.converged_digests().items():
            assert d["data_digest"] == baseline["state_digest"], (name, d, baseline)
            assert observe(c, name) == baseline, name
        print("%d bad requests x 2 nodes refused; applied index %d" % (len(cases), index))


# ---- malformed HTTP on a raw socket -------------------------------------------------------------


def raw_exchange(c, name, data):
    """Sends data on a fresh connection and reads until the server closes it (bounded in time
    and bytes). Returns (bytes read, closed by the server)."""
    s = tls_socket(c.nodes[name]["api"], timeout=RAW_TIMEOUT_S)
    try:
        s.sendall(data)
        return read_until_closed(s, RAW_TIMEOUT_S)
    finally:
        s.close()


def parse_responses(data):
    """Splits raw HTTP/1.1 responses (Content-Length framed): [(status, headers dict, body)]."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, "incomplete response head: %r" % data[:200]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


MALFORMED_HTTP = [
    ("garbage request line", b"GARBAGE\r\n\r\n", 400),
    ("header without colon", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
    ("non-numeric Content-Length",
     b"PUT /v1/kv/witness HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ("bad chunk size",
     b"PUT /v1/kv/witness HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("Content-Length over body_bytes_max, body never sent",
     b"PUT /v1/kv/witness HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (BODY_MAX + 1),
     413),
    ("HTTP/9.9", b"GET /v1/status HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    ("HTTP/1.2", b"GET /v1/status HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    ("a header name with a space", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
     400),
    ("a header name with a separator",
     b"GET /v1/status HTTP/1.1\r\nHost: x\r\nBad(Name): v\r\n\r\n", 400),
    ("chunked body over body_bytes_max",
     b"PUT /v1/kv/witness HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     + (b"%x\r\n" % (BODY_MAX + 1)) + b"c" * (BODY_MAX + 1) + b"\r\n0\r\n\r\n", 413),
]


def test_malformed_http_gets_400_and_close():
    with Cluster("3", settings=SETTINGS) as c:
        leader = settle(c)
        c.kv_put(leader, WITNESS_KEY, WITNESS_VALUE)
        c.wait_converged()
        baseline = observe(c, leader)
        for via in c.names:
            for what, data, expected in MALFORMED_HTTP:
                got, closed = raw_exchange(c, via, data)
                responses = parse_responses(got)
                assert len(responses) == 1, (what, via, got[:500])
                status, headers, body = responses[0]
                context = "%s via %s: %r" % (what, via, got[:300])
                assert status == expected, context
                assert headers.get("content-type", "").startswith("application/json"), context
                assert isinstance(json.loads(body).get("error"), str), context
                assert closed, "%s: the connection stayed open" % context
            # A good request pipelined before garbage is answered first, in order, then 400.
            got, closed = raw_exchange(
                c, via, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nBOGUS / HTTP/9\r\n\r\n")
            statuses = [r[0] for r in parse_responses(got)]
            assert statuses == [200, 400] and closed, (via, got[:500])
        assert observe(c, leader) == baseline
        c.wait_converged()
        for name in c.names:
            assert observe(c, name) == baseline, name


def read_until_closed(s, limit_s):
    """Reads until the server closes the connection or limit_s passes: (bytes, closed)."""
    got, deadline = b"", time.monotonic() + limit_s
    while time.monotonic() < deadline and len(got) < RAW_READ_MAX:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, ssl.SSLError):  # a TLS close without close_notify
            return got, True
        if not chunk:
            return got, True
        got += chunk
    return got, False


def test_slow_request_heads_get_408():
    """Slowloris: a head trickled a byte at a time, or never sent, is answered 408 and closed
    once header_timeout_ms has passed; a kept-alive connection idle between requests is not."""
    limit_s = HEADER_TIMEOUT_MS / 1000.0
    with Cluster("3", settings=SETTINGS) as c:
        settle(c)
        api = c.nodes[c.names[0]]["api"]
        trickle = tls_socket(api, timeout=RAW_TIMEOUT_S)
        silent = tls_socket(api, timeout=RAW_TIMEOUT_S)
        started = time.monotonic()
        try:
            trickle.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
            closed = False
            for byte in b"X-Slow: " + b"z" * 40:  # 40 x 0.2 s: well past the deadline
                try:
                    trickle.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    closed = True
                    break
                time.sleep(0.2)
            got, closed_now = read_until_closed(trickle, RAW_TIMEOUT_S)
            (status, headers, body), = parse_responses(got)
            assert status == 408 and (closed or closed_now), got[:300]
            assert "request head not received" in json.loads(body)["error"], body
            got, closed = read_until_closed(silent, RAW_TIMEOUT_S)
            (status, _, _), = parse_responses(got)
            assert status == 408 and closed, got[:300]
            assert time.monotonic() - started >= limit_s * 0.9
        finally:
            trickle.close()
            silent.close()
        kept = tls_socket(api, timeout=RAW_TIMEOUT_S)
        try:
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            for _ in range(2):
                kept.sendall(request)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = kept.recv(4096)
                    assert chunk, "the kept-alive connection was closed between requests"
                    head += chunk
                assert head.startswith(b"HTTP/1.1 200"), head[:200]
                time.sleep(limit_s * 1.5)
        finally:
            kept.close()


def test_every_answer_names_the_node():
    """api.md: every response from a node carries X-Tandem-Node, refusals included: routed errors
    and those the HTTP layer itself gives (400 malformed request, 413)."""
    with Cluster("3", settings=SETTINGS) as c:
        leader = settle(c)
        follower = next(n for n in c.names if n != leader)
        for via in (leader, follower):
            for method, path, body in (("GET", "/v1/nope", None), ("POST", "/v1/status", "{}"),
                                       ("GET", kv("no-such-key"), None),
                                       ("PUT", kv("%FF"), b"x"),
                                       ("POST", "/v1/txn", "{"),
                                       ("PUT", kv(WITNESS_KEY), b"y" * (BODY_MAX + 1))):
                status, headers, _ = c.api(via, method, path, body=body)
                assert headers["X-Tandem-Node"] in c.names, (
                    via, method, path, status, dict(headers))
            for what, data, expected in MALFORMED_HTTP[:1] + MALFORMED_HTTP[4:5]:
                got, _ = raw_exchange(c, via, data)
                (status, headers, _), = parse_responses(got)
                assert status == expected and headers.get("x-tandem-node") == via, (
                    "%s via %s: no X-Tandem-Node header: %r" % (what, via, got[:300]))


# ---- tandemctl ----------------------------------------------------------------------------------


def closed_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


def check_one_line(p, code, context):
    assert p.returncode == code, "%s: exit %d, expected %d; stderr %r" % (
        context, p.returncode, code, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip() and p.stderr.endswith("\n"), (
        "%s: stderr must be one line: %r" % (context, p.stderr))
    assert p.stdout == "", "%s: stdout %r" % (context, p.stdout)


CTL_USAGE_ERRORS = [
    [], ["kv"], ["kv", "put", "only-key"], ["kv", "get", "a", "b"], ["frobnicate"],
    ["--bogus", "status"], ["-o", "yaml", "status"], ["--timeout", "abc", "status"],
    ["member", "add", "x"], ["member", "add", "n", "s", "127.0.0.1:1", "http://127.0.0.1:2",
                             "--role", "boss"],
    ["kv", "list", "--limit", "abc"], ["member", "transfer-leader"],
]


def test_tandemctl_exit_codes():
    with Cluster("3") as c:
        leader = settle(c)
        c.kv_put(leader, WITNESS_KEY, WITNESS_VALUE)
        c.wait_converged()
        baseline = observe(c, leader)
        for args in CTL_USAGE_ERRORS:
            p = c.ctl(*args, check=False, timeout=CTL_TIMEOUT_S)
            check_one_line(p, 2, "tandemctl %s" % " ".join(args))
        # The server refuses: exit 1, its error on one line.
        for args in (["kv", "get", "no-such-key"], ["member", "remove", "no-such-node"],
                     ["member", "transfer-leader", "no-such-node"],
                     ["member", "add", c.names[0], "east", "127.0.0.1:1", "http://127.0.0.1:2"]):
            p = c.ctl(*args, check=False, timeout=CTL_TIMEOUT_S)
            check_one_line(p, 1, "tandemctl %s" % " ".join(args))
        # No endpoint reachable: exit 3, one line, reads and writes alike.
        down = ["http://127.0.0.1:%d" % closed_port() for _ in range(2)]
        for args in (["status"], ["kv", "get", WITNESS_KEY], ["kv", "put", WITNESS_KEY, "new"],
                     ["member", "list"]):
            started = time.monotonic()
            p = c.ctl(*args, check=False, timeout=CTL_TIMEOUT_S, endpoints=down)
            check_one_line(p, 3, "tandemctl %s against closed ports" % " ".join(args))
            assert time.monotonic() - started < CTL_TIMEOUT_S / 2, args
        assert observe(c, leader) == baseline
        c.wait_converged()
        for name in c.names:
            assert observe(c, name) == baseline, name


if __name__ == "__main__":
    print("tandemd from %s" % BIN_DIR, flush=True)
    run_tests()
