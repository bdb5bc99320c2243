#!/usr/bin/env python3
"""Reads of personal data are answered only after their audit record is committed (issue 13
item 5): right after a reader with personal-data got a job's individual_number from one node, a
linearizable GET /v1/audit on ANOTHER node (neither the one asked nor the one that answered)
already holds that read's record (who, which job, the
result); a reader without personal-data sees "***" and leaves no personal-data read record (a
read that reveals nothing is not one; non-mutating requests are not audited)."""

import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import SCRIPT_TIMEOUT_S, SOURCE_DIR, Cluster, run_tests, wait_until  # noqa: E402

NUMBER = "987654321098"
JOB = "PD-AUDIT"
READS = 3  # each read its own record
REQUEST_TIMEOUT_S = 20
CONVERGE_TIMEOUT_S = 30
USERS = (("clerk", "viewer,personal-data"), ("looker", "viewer"))


def add_users(c, leader):
    subprocess.run(["bash", os.path.join(SOURCE_DIR, "deploy", "certs.sh"), c.tls_path(""),
                    "--users", ",".join(name for name, _ in USERS)], stdin=subprocess.DEVNULL,
                   capture_output=True, check=True, timeout=SCRIPT_TIMEOUT_S)
    for name, roles in USERS:
        status, _, body = c.api(leader, "POST", "/v1/users", json.dumps(
            {"name": name, "roles": roles, "site": "east",
             "password": "Reader-pw-2026"}).encode(), timeout=REQUEST_TIMEOUT_S)
        assert status == 201, (name, status, body)
    for node in c.names:
        for name, _ in USERS:
            wait_until(lambda: name.encode() in c.api(node, "GET",
                                                      "/v1/users?consistency=local")[2],
                       CONVERGE_TIMEOUT_S, "%s's record on %s" % (name, node))


def read_job(c, node, user, local=False):
    path = "/v1/jobs/" + JOB + ("?consistency=local" if local else "")
    status, _, body = c.api(node, "GET", path, context=c.tls_context(user),
                            timeout=REQUEST_TIMEOUT_S)
    assert status == 200, (user, status, body)
    return json.loads(body)


def pdata_reads(c, node):
    """The personal-data read records of JOB, read linearizably (no consistency=local)."""
    records = c.get_json(node, "/v1/audit?limit=1000", timeout=REQUEST_TIMEOUT_S)["records"]
    return [r for r in records if r["action"] == "personal_data_read" and r["object"] == JOB]


def test_personal_data_read_is_on_record_before_its_answer():
    with Cluster(topology="3") as c:
        # A forwarded read's record names the leader: not a witness about to hand over.
        leader = c.settled_leader()
        reader, other = [n for n in c.names if n != leader][:2]
        add_users(c, leader)
        body = json.dumps({"id": JOB, "client": "acme", "kind": "scan", "site": "east",
                           "individual_number": NUMBER}).encode()
        status, _, answer = c.api(leader, "POST", "/v1/jobs", body, timeout=REQUEST_TIMEOUT_S)
        assert status == 201, (status, answer)
        for i in range(READS):
            # A linearizable read is forwarded to the leader, which answers; a local one is
            # answered by the follower itself: either waits for its record's commit.
            local = i % 2 == 1
            assert read_job(c, reader, "clerk", local)["individual_number"] == NUMBER
            # The answer came after the commit: another node's linearizable read has it.
            records = pdata_reads(c, other)
            assert len(records) == i + 1, (i, records)
            record = records[-1]
            assert record["actor"] == "clerk" and record["actor_kind"] == "user", record
            assert record["node"] == (reader if local else leader), (local, record)
            assert record["status"] == 200, record
            assert record["time"].endswith("Z"), record
            assert NUMBER not in json.dumps(record), record
        # Without personal-data: "***", and no personal-data read on record.
        assert read_job(c, reader, "looker")["individual_number"] == "***"
        assert read_job(c, reader, "admin")["individual_number"] == NUMBER  # bootstrap: all roles
        records = pdata_reads(c, other)
        assert [r["actor"] for r in records] == ["clerk"] * READS + ["admin"], records


if __name__ == "__main__":
    run_tests(globals())
