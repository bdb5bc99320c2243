"""Integration test of capacity planning on a 3-node cluster (east-1, west-1, witness-1) of real
tandemd processes: site capacities and their history, the sites' load, a rebalance plan applied
through tandemctl that brings the larger backlog within one job of the optimum, planning again
proposing nothing, a stale plan refused with 409 (tandemctl exits non-zero) leaving every job
where it was, the exclusion rules, and failover/failback plans around a BCP invoke and revoke."""

import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, ClusterError, run_tests, wait_until  # noqa: E402

EAST_CAPACITY = 100          # effort units per hour
WEST_CAPACITY = 50
JOBS = 60
EFFORT = 5
OPTIMUM_HOURS = 2.0          # 300 units over 150 units/h
ONE_JOB_HOURS = EFFORT / WEST_CAPACITY  # the slowest site's hours for one job: 0.1 h
EXTRA_JOBS = 15              # queued at east later, to make a plan the stale test can break
BCP_TIMEOUT_S = 60           # invoke, revoke and the site returning to active
REQUEST_TIMEOUT_S = 30


def job_body(job_id, site, effort=EFFORT, **extra):
    body = {"id": job_id, "client": "acme", "kind": "scan", "site": site, "effort": effort}
    body.update(extra)
    return body


def create_jobs(c, node, ids, site, **extra):
    for job_id in ids:
        status, _, body = c.api(node, "POST", "/v1/jobs", job_body(job_id, site, **extra),
                                timeout=REQUEST_TIMEOUT_S)
        assert status == 201, (job_id, status, body)


def sites(c, node):
    return {s["name"]: s for s in c.get_json(node, "/v1/sites", timeout=REQUEST_TIMEOUT_S)["sites"]}


def plan_json(c, *flags):
    return json.loads(c.ctl("-o", "json", "rebalance", "plan", *flags).stdout)


def job(c, node, job_id):
    return c.get_json(node, "/v1/jobs/" + job_id, timeout=REQUEST_TIMEOUT_S)


def largest_hours(view):
    return max(s["backlog_hours"] for s in view.values() if s["capacity"] > 0)


def test_plan_apply_replan_stale():
    with Cluster(topology="3") as c:
        leader = c.leader()
        # Capacities, set through tandemctl, with their history.
        out = c.ctl("site", "set-capacity", "east", 80).stdout
        assert "east: capacity unset -> 80 units/h" in out, out
        c.ctl("site", "set-capacity", "east", EAST_CAPACITY)
        c.ctl("site", "set-capacity", "west", WEST_CAPACITY)
        history = json.loads(c.ctl("-o", "json", "site", "capacity-history", "east").stdout)
        assert [(h["old"], h["new"]) for h in history["history"]] == [(80, 100), (None, 80)], \
            history
        assert c.ctl("site", "set-capacity", "witness", 10, check=False).returncode == 1

        create_jobs(c, leader, ["R%02d" % i for i in range(JOBS)], "east")
        view = sites(c, leader)
        assert view["east"]["backlog_units"] == JOBS * EFFORT, view
        assert view["east"]["backlog_hours"] == 3.0 and view["west"]["backlog_hours"] == 0, view
        assert view["east"]["jobs_queued"] == JOBS and view["witness"]["capacity"] == 0, view
        table = c.ctl("site", "list").stdout
        assert "east" in table and "3.00" in table, table

        # Plan and apply: the larger backlog ends within one job of the optimum.
        plan = plan_json(c)
        assert plan["moves"], plan
        assert all(m["from"] == "east" and m["to"] == "west" and m["effort"] == EFFORT
                   for m in plan["moves"]), plan["moves"]
        human = c.ctl("rebalance", "plan").stdout
        assert "[" in human and "\u2192" in human and plan["id"] in human, human
        applied = c.ctl("rebalance", "apply", plan["id"])
        assert "jobs moved" in applied.stdout, applied.stdout
        view = sites(c, leader)
        hours = largest_hours(view)
        assert OPTIMUM_HOURS <= hours <= OPTIMUM_HOURS + ONE_JOB_HOURS + 1e-9, view
        moved = plan["moves"][0]["job"]
        assert job(c, leader, moved)["site"] == "west"
        events = c.get_json(leader, "/v1/trace/job/" + moved)["events"]
        rebalance = [e for e in events if e["action"] == "rebalance"]
        assert len(rebalance) == 1, events
        assert rebalance[0]["details"] == {"from": "east", "to": "west", "plan": plan["id"],
                                           "objective": "makespan"}, rebalance
        assert rebalance[0]["actor"] == ("anonymous" if c.insecure else "admin"), rebalance

        # Planning again proposes nothing; the same state and instant give the same bytes.
        again = plan_json(c)
        assert again["moves"] == [], again
        path = "/v1/rebalance/plan?at=2030-01-01T00:00:00Z"
        first, second = (c.api(leader, "GET", path)[2] for _ in range(2))
        assert first == second, (first, second)

        # A plan computed before one of its jobs was put on hold is refused, and nothing moves.
        create_jobs(c, leader, ["S%02d" % i for i in range(EXTRA_JOBS)], "east")
        stale = plan_json(c)
        assert len(stale["moves"]) >= 2, stale
        held = stale["moves"][-1]["job"]
        status, _, body = c.api(leader, "POST", "/v1/jobs/%s/hold" % held)
        assert status == 200, body
        refused = c.ctl("rebalance", "apply", stale["id"], check=False)
        assert refused.returncode == 1, (refused.stdout, refused.stderr)
        expected = "plan is stale: job %s changed since index %d; compute a new plan" % (
            held, stale["index"])
        assert expected in refused.stderr, refused.stderr
        status, _, body = c.api(leader, "POST", "/v1/rebalance/apply", stale)
        assert status == 409 and json.loads(body)["error"] == expected, (status, body)
        for m in stale["moves"]:
            assert job(c, leader, m["job"])["site"] == "east", m

        # A changed plan does not pass for the one that was computed.
        forged = dict(stale, moves=stale["moves"][:1])
        status, _, body = c.api(leader, "POST", "/v1/rebalance/apply", forged)
        assert status == 400 and b"does not match" in body, (status, body)
        status, _, body = c.api(leader, "POST", "/v1/rebalance/apply", {"id": "0" * 32})
        assert status == 404, (status, body)

        # A fresh plan (through a follower) applies, with the held job left alone.
        follower = next(n for n in c.names if n != leader)
        fresh = json.loads(c.ctl("-o", "json", "rebalance", "plan",
                                 endpoints=[c.url(follower)]).stdout)
        assert held not in [m["job"] for m in fresh["moves"]], fresh
        c.ctl("rebalance", "apply", fresh["id"])
        assert plan_json(c)["moves"] == []
        c.wait_converged()
        digests = c.converged_digests()
        assert len({d["state_digest"] for d in digests.values()}) == 1, digests


def test_exclusions():
    with Cluster(topology="3") as c:
        leader = c.leader()
        c.ctl("site", "set-capacity", "east", EAST_CAPACITY)
        c.ctl("site", "set-capacity", "west", WEST_CAPACITY)
        create_jobs(c, leader, ["P%02d" % i for i in range(10)], "east", pinned=True)
        create_jobs(c, leader, ["F%02d" % i for i in range(10)], "east")
        # A box picked for a job at east stays with the job: the job may not go west.
        status, _, body = c.api(leader, "POST", "/v1/boxes",
                                {"id": "BX1", "ledger": "L1", "client": "acme", "site": "east",
                                 "shelf": "A1"})
        assert status in (200, 201), body
        status, _, body = c.api(leader, "POST", "/v1/boxes/BX1/pick", {"job": "F00"})
        assert status == 200, body
        # In-progress work counts in the backlog but never moves.
        status, _, body = c.api(leader, "POST", "/v1/jobs/F09/advance")
        assert status == 200, body
        plan = plan_json(c)
        moved = {m["job"] for m in plan["moves"]}
        assert moved and not moved & {"F00", "F09"} and not any(j.startswith("P") for j in moved)
        rules = {e["job"]: e["rule"] for e in plan["excluded"]}
        assert rules["F00"] == "boxes_at_site" and rules["P03"] == "pinned", plan["excluded"]
        assert plan["excluded_total"] == 11, plan
        assert "pinned" in c.ctl("rebalance", "plan").stdout
        status, _, body = c.api(leader, "GET", "/v1/rebalance/plan?objective=fastest")
        assert status == 400, body
        status, _, body = c.api(leader, "GET", "/v1/rebalance/plan?max_moves=-1")
        assert status == 400, body


def wait_site_state(c, node, site, state):
    return wait_until(lambda: sites(c, node)[site]["state"] == state, BCP_TIMEOUT_S,
                      "site %s %s" % (site, state))


def test_failover_and_failback_plans():
    with Cluster(topology="3") as c:
        leader = c.leader()
        c.ctl("site", "set-capacity", "east", EAST_CAPACITY)
        c.ctl("site", "set-capacity", "west", WEST_CAPACITY)
        create_jobs(c, leader, ["W%02d" % i for i in range(20)], "west")
        create_jobs(c, leader, ["E%02d" % i for i in range(40)], "east")
        assert plan_json(c)["moves"] == []  # 2.0 h at both sites already

        status, _, body = c.api(leader, "POST", "/v1/bcp/invoke",
                                {"site": "west", "reason": "rebalance test"},
                                timeout=BCP_TIMEOUT_S)
        assert status == 200, (status, body)
        leader = c.leader()
        wait_site_state(c, leader, "west", "invoked")
        view = sites(c, leader)
        assert view["west"]["capacity"] == 0 and view["west"]["capacity_configured"] == 50, view
        # Whatever work is still queued at the invoked site is stranded: the plan moves it east.
        failover = plan_json(c)
        west_left = view["west"]["jobs_queued"]
        assert len(failover["moves"]) == west_left, (view, failover)
        assert all(m["to"] == "east" and m["reason"] == "no_capacity"
                   for m in failover["moves"]), failover
        if failover["moves"]:
            c.ctl("rebalance", "apply", failover["id"])
        assert sites(c, leader)["west"]["jobs_queued"] == 0

        status, _, body = c.api(leader, "POST", "/v1/bcp/revoke", {"site": "west"},
                                timeout=BCP_TIMEOUT_S)
        assert status == 200, (status, body)
        wait_site_state(c, c.leader(), "west", "active")
        failback = plan_json(c)
        assert failback["moves"] and all(m["from"] == "east" and m["to"] == "west"
                                         for m in failback["moves"]), failback
        c.ctl("rebalance", "apply", failback["id"])
        view = sites(c, c.leader())
        assert OPTIMUM_HOURS <= largest_hours(view) <= OPTIMUM_HOURS + ONE_JOB_HOURS + 1e-9, view


if __name__ == "__main__":
    run_tests()
