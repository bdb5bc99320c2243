#!/usr/bin/env python3
"""The tamper-evident audit trail (issue 13 item 5) on a TLS cluster: writes through the leader
and a follower and a refused request become audit records that every node holds alike (same
head in /v1/status, the chain verifies on each node); then a byte flipped inside one record of a
stopped node's LMDB file, in a copy, makes `tandemd --audit-verify` name that record's seq.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BIN_DIR, Cluster, run_tests, wait_until  # noqa: E402

CONVERGE_TIMEOUT_S = 30
TAMPER_KEY = "audit-tamper-7f3a"  # unique bytes to find the record by in the LMDB file


def audit_records(c, name):
    body = c.get_json(name, "/v1/audit?consistency=local&limit=1000")
    return body["records"]


def heads(c):
    return {n: c.status(n)["audit"] for n in c.names}


def tamper(path, text):
    """Flips one bit of text in the audit record holding it, in the LMDB file at path (a stopped
    node's, or a copy): every copy of the page, as LMDB keeps old ones until they are reused."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    needle = text.encode()
    at = data.find(needle)
    assert at >= 0, "the record's bytes are in the LMDB file"
    while at >= 0:
        data[at + len(needle) - 1] ^= 0x01
        at = data.find(needle, at + 1)
    with open(path, "wb") as f:
        f.write(data)


def verify_dir(data_dir):
    run = subprocess.run([os.path.join(BIN_DIR, "tandemd"), "--audit-verify", data_dir],
                         capture_output=True, text=True, timeout=60)
    return run.returncode, run.stdout, run.stderr


def check_cli_and_bad_input(c, leader, seq, denied):
    """tandemctl audit verify|tail|show|failures, and the routes' 400/404 answers."""
    out = c.ctl("audit", "verify").stdout
    assert out.startswith("ok: ") and "records" in out, out
    tail = c.ctl("audit", "tail", "--limit", "2").stdout.strip().splitlines()
    assert tail[0].split()[:2] == ["SEQ", "TIME"] and len(tail) == 3, tail
    shown = json.loads(c.ctl("audit", "show", seq).stdout)
    assert shown["seq"] == seq and shown["object"] == "/v1/kv/" + TAMPER_KEY, shown
    failures = json.loads(c.ctl("-o", "json", "audit", "failures", "--since", "1h").stdout)
    groups = failures["failures"]
    assert len(groups) == 1 and groups[0]["count"] == 1, failures
    assert groups[0]["actions"] == {denied["action"]: 1}, failures
    bad = c.ctl("audit", "failures", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr, bad
    for path, status in (("/v1/audit?since=yesterday", 400), ("/v1/audit?limit=0", 400),
                         ("/v1/audit/records/abc", 400), ("/v1/audit/records/999999", 404)):
        got, _, body = c.api(leader, "GET", path)
        assert got == status and b"error" in body, (path, got, body)
    got, _, _ = c.api(leader, "GET", "/v1/audit", context=c.tls_context("operator"))
    assert got in (401, 403), got


def test_records_agree_and_tampering_is_named():
    with Cluster(topology="3") as c:
        leader = c.settled_leader()
        follower = next(n for n in c.names if n != leader)
        c.kv_put(leader, "audit-1", b"one")
        c.kv_put(follower, TAMPER_KEY, b"two")  # forwarded: the leader records it
        c.kv_put(leader, "audit-3", b"three")
        status, _, _ = c.api(follower, "POST", "/v1/retention/purge", body={"days": 1},
                             context=c.tls_context("operator"))
        assert status in (401, 403), status

        def agreed():
            h = heads(c)
            return len({json.dumps(v, sort_keys=True) for v in h.values()}) == 1 and \
                h[leader]["seq"] >= 4
        wait_until(agreed, CONVERGE_TIMEOUT_S, "every node holds the same audit head")
        head = c.status(leader)["audit"]
        for name in c.names:
            records = audit_records(c, name)
            assert [r["seq"] for r in records] == list(range(1, head["seq"] + 1)), records
            assert records[-1]["hash"] == head["hash"]
            for prev, record in zip(records, records[1:]):
                assert record["prev_hash"] == prev["hash"], (prev, record)
            verdict = c.get_json(name, "/v1/audit/verify?consistency=local")
            assert verdict["ok"] is True and verdict["records"] == head["seq"], verdict
        records = audit_records(c, leader)
        puts = [r for r in records if r["action"] == "kv_put"]
        assert [r["object"] for r in puts] == ["/v1/kv/audit-1", "/v1/kv/" + TAMPER_KEY,
                                               "/v1/kv/audit-3"], puts
        assert all(r["actor"] == "admin" and r["status"] == 200 for r in puts), puts
        assert puts[0]["time"].endswith("Z") and "T" in puts[0]["time"], puts[0]
        denied = [r for r in records if r["object"] == "/v1/retention/purge"]
        assert len(denied) == 1 and denied[0]["status"] == status, records
        tampered = puts[1]["seq"]
        check_cli_and_bad_input(c, leader, tampered, denied[0])

        c.stop(follower)
        original = os.path.join(c.nodes[follower]["dir"], "data")
        copy = tempfile.mkdtemp(prefix="tandem-audit-")
        try:
            shutil.copytree(os.path.join(original, "state"), os.path.join(copy, "state"))
            rc, out, err = verify_dir(copy)
            assert rc == 0 and json.loads(out)["ok"] is True, (rc, out, err)
            tamper(os.path.join(copy, "state", "data.mdb"), "/v1/kv/" + TAMPER_KEY)
            rc, out, err = verify_dir(copy)
            verdict = json.loads(out)
            assert rc == 1 and verdict["ok"] is False, (rc, out, err)
            assert verdict["broken_at"] == tampered, (verdict, tampered)
            assert verdict["reason"] == "hash mismatch", verdict
            rc, out, err = verify_dir(os.path.join(copy, "missing"))
            assert rc == 2 and "no state store" in err, (rc, out, err)
        finally:
            shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    run_tests()
