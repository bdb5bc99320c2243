#!/usr/bin/env python3
"""The operator's own-site rule (issue 13 item 2) on a two-site TLS cluster: an east operator
creates and advances east jobs; on a west job (an action, or a job or box created at west) it
gets 403 whose body names the rule and both sites, through the leader and through a west
follower, and the state is unchanged; after `tandemctl bcp invoke west` moved west's open work to
east, the same request succeeds. The rule is checked at apply (the job's site at that moment);
the bootstrap admin is not bound by it."""

import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import SCRIPT_TIMEOUT_S, SOURCE_DIR, Cluster, run_tests, wait_until  # noqa: E402

OPERATOR = "op-east"
REQUEST_TIMEOUT_S = 20
CONVERGE_TIMEOUT_S = 30
RULE = "operator-own-site"


def make_operator(c, leader):
    subprocess.run(["bash", os.path.join(SOURCE_DIR, "deploy", "certs.sh"), c.tls_path(""),
                    "--users", OPERATOR], stdin=subprocess.DEVNULL, capture_output=True,
                   check=True, timeout=SCRIPT_TIMEOUT_S)
    status, _, body = c.api(leader, "POST", "/v1/users", json.dumps(
        {"name": OPERATOR, "roles": "operator", "site": "east",
         "password": "op-east-pass1"}).encode(), timeout=REQUEST_TIMEOUT_S)
    assert status == 201, (status, body)
    for name in c.live():
        wait_until(lambda: OPERATOR.encode() in
                   c.api(name, "GET", "/v1/users?consistency=local")[2],
                   CONVERGE_TIMEOUT_S, "the operator's record on %s" % name)


def as_operator(c, via, path, body):
    status, _, answer = c.api(via, "POST", path, json.dumps(body).encode(),
                              context=c.tls_context(OPERATOR), timeout=REQUEST_TIMEOUT_S)
    return status, json.loads(answer)


def job_body(job_id, site):
    return {"id": job_id, "client": "acme", "kind": "scan", "site": site, "effort": 1,
            "stages": ["scan", "check"]}


def assert_refused(status, answer, what):
    assert status == 403, (what, status, answer)
    assert answer["rule"] == RULE and answer["user_site"] == "east", (what, answer)
    assert answer["site"] == "west", (what, answer)
    assert RULE in answer["error"] and "west" in answer["error"], (what, answer)


def job(c, via, job_id):
    return c.get_json(via, "/v1/jobs/%s?consistency=local" % job_id)


def test_operator_acts_at_own_site_until_bcp_moves_the_work():
    with Cluster(topology="2+2+1") as c:
        leader = c.settled_leader()
        east = next(n for n in c.live() if c.nodes[n]["site"] == "east" and n != leader)
        west = next(n for n in c.live() if c.nodes[n]["site"] == "west" and n != leader)
        make_operator(c, leader)
        # At the operator's own site: allowed.
        status, answer = as_operator(c, east, "/v1/jobs", job_body("E1", "east"))
        assert status == 201, (status, answer)
        status, answer = as_operator(c, east, "/v1/jobs/E1/advance", {})
        assert status == 200 and answer["stage"] == "check", (status, answer)
        # The bootstrap admin is not site-bound: it makes the west job.
        status, _, answer = c.api(leader, "POST", "/v1/jobs",
                                  json.dumps(job_body("W1", "west")).encode(),
                                  timeout=REQUEST_TIMEOUT_S)
        assert status == 201, (status, answer)
        box = {"id": "BOX-E1", "ledger": "L-1", "client": "acme", "site": "east", "shelf": "A-1"}
        status, answer = as_operator(c, east, "/v1/boxes", box)
        assert status == 201, (status, answer)
        c.wait_converged()
        before = c.get_json(leader, "/v1/digest")["data_digest"]
        # Another site's job: refused at apply, through the leader and a forwarding follower.
        for via in (leader, west):
            assert_refused(*as_operator(c, via, "/v1/jobs/W1/advance", {}), "advance via " + via)
        assert_refused(*as_operator(c, leader, "/v1/jobs", job_body("W2", "west")), "create")
        assert_refused(*as_operator(c, leader, "/v1/boxes", dict(box, id="BOX-W1", site="west")),
                       "box check-in")
        # The east box picked for the west job would change that job: refused too.
        status, answer = as_operator(c, east, "/v1/boxes/BOX-E1/pick", {"job": "W1"})
        assert status == 403 and answer["error"].startswith(RULE + " rule"), (status, answer)
        c.wait_converged()
        assert c.get_json(leader, "/v1/digest")["data_digest"] == before
        record = job(c, leader, "W1")
        assert record["site"] == "west" and record["stage"] == "scan", record
        status, _, _ = c.api(leader, "GET", "/v1/jobs/W2")
        assert status == 404, status
        # BCP invoked for west moves its open work to east: now the operator's own site.
        out = json.loads(c.ctl("-o", "json", "bcp", "invoke", "west", "--reason",
                               "own-site test").stdout)
        assert out["jobs_moved"] >= 1, out
        assert job(c, leader, "W1")["site"] == "east"
        status, answer = as_operator(c, east, "/v1/jobs/W1/advance", {})
        assert status == 200 and answer["stage"] == "check", (status, answer)
        assert answer["site"] == "east", answer


if __name__ == "__main__":
    run_tests(globals())
