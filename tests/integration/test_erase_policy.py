#!/usr/bin/env python3
"""Erasure after retention without an operator (issue 13 item 7): the leader's pass every
erase_interval_s erases the personal-data fields of jobs done or cancelled more than
personal_data_retention_days ago, with a deletion record "by policy", and no API call asks for
it. Retention is counted in days (1 at least), so the nodes are restarted under
tests/shims/clockshift.c with their wall clock two days ahead: the cancelled job is then past
retention, the open one is not."""

import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BIN_DIR, Cluster, run_tests, wait_until  # noqa: E402

NUMBER = "246813579135"
SETTINGS = {"erase_interval_s": 1, "personal_data_retention_days": 1}
SHIFT_S = 2 * 86400  # past the one day of retention
PASSES_S = 3         # a few passes of the 1 s interval: inside retention nothing goes
REQUEST_TIMEOUT_S = 10
ERASE_TIMEOUT_S = 30


def create(c, job_id):
    body = json.dumps({"id": job_id, "client": "acme", "kind": "scan", "site": "east",
                       "individual_number": NUMBER}).encode()
    status, _, answer = c.api(c.leader(), "POST", "/v1/jobs", body, timeout=REQUEST_TIMEOUT_S)
    assert status == 201, (status, answer)


def number(c, name, job_id):
    return c.get_json(name, "/v1/jobs/%s?consistency=local" % job_id)["individual_number"]


def shifted_env():
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {"LD_PRELOAD": os.path.join(BIN_DIR, "libtandem_clockshift.so"),
            "TANDEM_CLOCKSHIFT_S": str(SHIFT_S),
            "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}


def test_jobs_past_retention_lose_personal_data_by_policy():
    with Cluster(topology="3", settings=SETTINGS) as c:
        create(c, "PD-DONE")
        create(c, "PD-OPEN")
        status, _, answer = c.api(c.leader(), "POST", "/v1/jobs/PD-DONE/cancel", b"{}",
                                  timeout=REQUEST_TIMEOUT_S)
        assert status == 200, (status, answer)
        time.sleep(PASSES_S)  # the passes run, but nothing is past retention yet
        assert number(c, c.leader(), "PD-DONE") == NUMBER
        for name in list(c.names):  # every clock two days ahead, whoever leads next
            c.stop(name)
            c.start(name, env=shifted_env())
        c.leader()
        for name in c.names:
            wait_until(lambda: number(c, name, "PD-DONE") is None, ERASE_TIMEOUT_S,
                       "%s shows PD-DONE erased by policy" % name)
            assert number(c, name, "PD-OPEN") == NUMBER  # open: its retention has not begun
        disposals = c.get_json(c.leader(), "/v1/disposals")["disposals"]
        erased = [d for d in disposals if d["kind"] == "personal_data_erase"]
        assert [d["job"] for d in erased] == ["PD-DONE"], disposals
        record = erased[0]
        assert record["by"] == "policy" and record["fields"] == ["individual_number"], record
        assert record["actor"] in c.names and record["retention_days"] == 1, record


if __name__ == "__main__":
    run_tests(globals())
