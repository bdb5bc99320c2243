#!/usr/bin/env python3
"""Personal data on a real TLS cluster (issue 13 item 6): individual_number is sealed before it is
proposed, so after jobs are created through several nodes, snapshots are taken and a node is
restarted, a byte search of every file under the cluster directory (every node's data directory
- raft segments, snapshots, LMDB - its config and its log) finds neither the number nor its
base64 or hex form; a reader with personal-data sees the value, one without sees "***", and
listings never show it."""

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import SCRIPT_TIMEOUT_S, SOURCE_DIR, Cluster, ClusterError, run_tests, wait_until  # noqa: E402,E501

NUMBER = "123456789012"
MARKER = "client-marker-7f3a"  # stored in clear: shows the search reaches every kind of file
JOBS_PER_NODE = 3
# Snapshots every 32 entries keeping 32 behind: the KV writes below take several on every node.
SETTINGS = {"snapshot_threshold": 32, "snapshot_trailing": 32}
FILLER_WRITES = 120
REQUEST_TIMEOUT_S = 10
SEARCH_FILE_BYTES_MAX = 512 * 1024 * 1024  # a file larger than this is a defect of its own
CONVERGE_TIMEOUT_S = 30
SEGMENT = re.compile(r"^\d{16}-\d{16}$|^open-\d+$")


def forms(value):
    raw = value.encode()
    return {"clear": raw, "base64": base64.b64encode(raw),
            "base64url": base64.urlsafe_b64encode(raw), "hex": raw.hex().encode(),
            "HEX": raw.hex().upper().encode()}


def byte_search(root, needles):
    """(path, form) of every file under root holding one of needles' byte strings."""
    found = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            size = os.path.getsize(path)
            assert size <= SEARCH_FILE_BYTES_MAX, (path, size)
            with open(path, "rb") as f:
                data = f.read()
            found += [(path, form) for form, needle in needles.items() if needle in data]
    return found


def create_job(c, name, job_id, number=NUMBER):
    body = json.dumps({"id": job_id, "client": MARKER, "kind": "scan", "site": "east",
                       "individual_number": number})
    status, _, answer = c.api(name, "POST", "/v1/jobs", body=body, timeout=REQUEST_TIMEOUT_S)
    if status not in (200, 201):
        raise ClusterError("%s POST /v1/jobs %s: %d %s" % (name, job_id, status, answer[:200]))
    assert NUMBER.encode() not in answer, answer  # the write's answer does not echo it


def add_users(c):
    """Gives the operator certificate a user record without personal-data, and makes a "clerk"
    (certificate and user record) with it: the two readers of these tests besides the bootstrap
    admin."""
    subprocess.run(["bash", os.path.join(SOURCE_DIR, "deploy", "certs.sh"), c.tls_path(""),
                    "--users", "clerk"], check=True, capture_output=True, timeout=SCRIPT_TIMEOUT_S)
    for name, roles in (("operator", "operator"), ("clerk", "viewer,personal-data")):
        body = json.dumps({"name": name, "roles": roles, "site": "east",
                           "password": "Initial-pw-2026"})
        status, _, answer = c.api(c.names[0], "POST", "/v1/users", body=body,
                                  timeout=REQUEST_TIMEOUT_S)
        assert status in (200, 201), (name, status, answer[:200])


def job_as(c, name, job_id, user):
    status, _, answer = c.api(name, "GET", "/v1/jobs/" + job_id, timeout=REQUEST_TIMEOUT_S,
                              context=c.tls_context(user=user))
    assert status == 200, (status, answer[:200])
    return json.loads(answer)


def test_no_clear_value_anywhere_and_readers():
    with Cluster(topology="2+2+1", settings=SETTINGS) as c:
        add_users(c)
        ids = []
        for name in c.names:
            for i in range(JOBS_PER_NODE):
                ids.append("PD-%s-%d" % (name, i))
                create_job(c, name, ids[-1])
        for i in range(FILLER_WRITES):
            c.kv_put(c.names[i % len(c.names)], "filler-%d" % i, b"x" * 64)
        for name in c.names:  # these stay in the raft log (behind the last snapshot)
            ids.append("PD-%s-late" % name)
            create_job(c, name, ids[-1])
        restarted = c.names[1]
        c.stop(restarted)
        c.start(restarted)
        wait_until(lambda: c.api(restarted, "GET", "/v1/jobs/" + ids[0])[0] == 200,
                   CONVERGE_TIMEOUT_S, "%s serves the jobs after its restart" % restarted)
        status, _, listing = c.api(c.names[0], "GET", "/v1/jobs?limit=1000",
                                   timeout=REQUEST_TIMEOUT_S)
        assert status == 200 and NUMBER.encode() not in listing, (status, listing[:200])
        c.stop(restarted)  # its files closed, all flushed
        found = byte_search(c.dir, forms(NUMBER))
        assert found == [], found
        # the search does read raft segments, snapshots and LMDB files: the clear marker is there
        seen = {os.path.basename(p) for p, _ in byte_search(c.dir, {"m": MARKER.encode()})}
        assert "data.mdb" in seen, seen
        assert any(n.startswith("snapshot-") for n in seen), seen
        assert any(SEGMENT.match(n) for n in seen), seen
        c.start(restarted)
        # a reader without personal-data sees ***, one with it the value, on every node
        for name in c.names:
            assert job_as(c, name, ids[-1], "operator")["individual_number"] == "***"
            assert job_as(c, name, ids[-1], "admin")["individual_number"] == NUMBER
            assert job_as(c, name, ids[0], "clerk")["individual_number"] == NUMBER


def test_a_value_opens_only_with_its_record():
    """The job id is the associated data: the sealed bytes of one job do not open as another's,
    and an over-long value is refused with 400 naming the field and storing nothing."""
    with Cluster(topology="3") as c:
        leader = c.leader()
        too_long = json.dumps({"id": "PD-LONG", "client": "acme", "kind": "scan", "site": "east",
                               "individual_number": "9" * 65})
        status, _, answer = c.api(leader, "POST", "/v1/jobs", body=too_long)
        assert status == 400 and b"individual_number" in answer, (status, answer)
        assert b"9" * 65 not in answer
        status, _, _ = c.api(leader, "GET", "/v1/jobs/PD-LONG")
        assert status == 404, status
        # without an id the API names the job itself (the id is sealed into the value)
        body = json.dumps({"client": "acme", "kind": "scan", "site": "east",
                           "individual_number": NUMBER})
        status, _, answer = c.api(leader, "POST", "/v1/jobs", body=body)
        assert status in (200, 201), (status, answer)
        job_id = json.loads(answer)["id"]
        assert job_id.startswith("JP-"), job_id
        assert job_as(c, leader, job_id, "admin")["individual_number"] == NUMBER


def erase(c, name, body, user="admin"):
    status, _, answer = c.api(name, "POST", "/v1/retention/erase", body=json.dumps(body),
                              timeout=REQUEST_TIMEOUT_S, context=c.tls_context(user=user))
    return status, json.loads(answer)


def test_erasure_with_its_deletion_record():
    """POST /v1/retention/erase: by policy nothing inside personal_data_retention_days goes; a job
    named on demand loses its personal data on every node, with a disposal record saying what,
    when and by whom; only the retention permission may ask; bad bodies change nothing."""
    with Cluster(topology="3") as c:
        leader = c.leader()
        add_users(c)
        create_job(c, leader, "PD-ERASE")
        status, answer = c.api(leader, "POST", "/v1/jobs/PD-ERASE/cancel")[:2]
        assert status == 200, status
        status, answer = erase(c, leader, {})
        assert status == 200 and answer["erased"] == 0, (status, answer)  # inside retention
        for bad in ({"jobs": []}, {"jobs": ["bad id"]}, {"jobs": "PD-ERASE"}, {"job": "x"}):
            status, answer = erase(c, leader, bad)
            assert status == 400, (bad, status, answer)
        status, answer = erase(c, leader, {"jobs": ["PD-ERASE"]}, user="operator")
        assert status == 403, (status, answer)
        assert job_as(c, leader, "PD-ERASE", "admin")["individual_number"] == NUMBER
        status, answer = erase(c, c.names[1], {"jobs": ["PD-ERASE", "PD-NONE"]})
        assert status == 200 and answer["erased"] == 1, (status, answer)
        record = answer["disposals"][0]
        assert record["kind"] == "personal_data_erase" and record["job"] == "PD-ERASE", record
        assert record["fields"] == ["individual_number"] and record["by"] == "actor", record
        assert record["actor"] == "admin" and record["time"].endswith("Z"), record
        for name in c.names:
            wait_until(lambda: job_as(c, name, "PD-ERASE", "admin")["individual_number"] is None,
                       CONVERGE_TIMEOUT_S, "%s shows the job erased" % name)
        disposals = c.get_json(leader, "/v1/disposals")["disposals"]
        assert [d["job"] for d in disposals if d["kind"] == "personal_data_erase"] == \
            ["PD-ERASE"], disposals
        status, answer = erase(c, leader, {"jobs": ["PD-ERASE"]})  # nothing left: no new record
        assert status == 200 and answer["erased"] == 0, (status, answer)


ROTATE_JOBS = 40
LOAD_OPS_MAX = 200      # the write load during the rotation: bounded in count...
LOAD_MAX_S = 30         # ...and in time
ROTATE_PASSES_MAX = 200


def keys_status(c, name):
    return c.get_json(name, "/v1/keys/status")


def reload_keys(c, key_file, text, current):
    with open(key_file, "w") as f:
        f.write(text)
    for name in c.names:
        c._signal(name, signal.SIGHUP)
    for name in c.names:
        wait_until(lambda: keys_status(c, name)["current"] == current, CONVERGE_TIMEOUT_S,
                   "%s reloads key_file" % name)


def rotate_until_done(c, name):
    for _ in range(ROTATE_PASSES_MAX):
        status, _, answer = c.api(name, "POST", "/v1/keys/rotate", timeout=REQUEST_TIMEOUT_S)
        assert status == 200, (status, answer)
        if json.loads(answer)["resealed"] == 0:
            return
    raise AssertionError("rotation did not finish in %d passes" % ROTATE_PASSES_MAX)


def write_load(c, stop, made):
    """Creates jobs with personal data and cancels older ones until stop is set (bounded)."""
    started = time.monotonic()
    for i in range(LOAD_OPS_MAX):
        if stop.is_set() or time.monotonic() - started > LOAD_MAX_S:
            return
        name = c.names[i % len(c.names)]
        if i % 2 == 0:
            made.append("PD-LOAD-%d" % i)
            create_job(c, name, made[-1])
        else:
            c.api(name, "POST", "/v1/jobs/PD-ROT-%d/cancel" % (i % ROTATE_JOBS),
                  timeout=REQUEST_TIMEOUT_S)


def test_rotation_under_load():
    """A second key added to key_file (SIGHUP) becomes current; POST /v1/keys/rotate re-seals
    every value under it in bounded batches while jobs are created and cancelled; afterwards
    every value is under the new key on every node, and stays readable once the old key is
    removed from key_file."""
    with Cluster(topology="3") as c:
        leader = c.leader()
        key_file = c.tls_path("data.key")
        with open(key_file) as f:
            first = f.read()
        ids = ["PD-ROT-%d" % i for i in range(ROTATE_JOBS)]
        for i, job_id in enumerate(ids):
            create_job(c, c.names[i % len(c.names)], job_id)
        assert keys_status(c, leader) == {"current": 1, "keys": 1, "pending": 0,
                                          "done": ROTATE_JOBS}
        second = "2 %s\n" % secrets.token_hex(32)
        reload_keys(c, key_file, first + second, 2)
        assert keys_status(c, leader)["pending"] == ROTATE_JOBS
        stop, made = threading.Event(), []
        load = threading.Thread(target=write_load, args=(c, stop, made))
        load.start()
        try:
            rotate_until_done(c, c.names[1])
        finally:
            stop.set()
            load.join(LOAD_MAX_S + REQUEST_TIMEOUT_S)
        out = c.ctl("key", "rotate").stdout  # tandemctl drives the same route to the end
        assert out.startswith("re-sealed "), out
        total = ROTATE_JOBS + len(made)
        for name in c.names:
            wait_until(lambda: keys_status(c, name)["done"] == total, CONVERGE_TIMEOUT_S,
                       "%s: every value under key 2" % name)
            assert keys_status(c, name)["pending"] == 0
        out = c.ctl("key", "status").stdout
        assert "current key 2" in out and " 0 pending" in out, out
        reload_keys(c, key_file, second, 2)  # key 1 gone: nothing may need it any more
        for job_id in ids + made:
            assert job_as(c, c.names[2], job_id, "admin")["individual_number"] == NUMBER, job_id
        status, _, answer = c.api(leader, "POST", "/v1/keys/rotate",
                                  context=c.tls_context(user="operator"))
        assert status == 403, (status, answer)  # before add_users: no record is also a refusal


if __name__ == "__main__":
    run_tests()
