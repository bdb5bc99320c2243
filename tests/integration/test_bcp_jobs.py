#!/usr/bin/env python3
"""BCP moves work: invoking a site moves its queued and in-progress jobs to the site taking
over (in-progress ones restart at their stage, without their operator), leaves finished and
held work alone, and a revoke with failback brings back what is still queued. The dry run lists
the jobs an invoke would move and changes nothing."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, run_tests, wait_until  # noqa: E402

TIMEOUT_S = 20
DRY_RUNS_MAX = 5


def job(c, via, job_id):
    status, _, body = c.api(via, "GET", "/v1/jobs/" + job_id)
    assert status == 200, (status, body)
    return json.loads(body)


def trace_actions(c, via, job_id):
    status, _, body = c.api(via, "GET", "/v1/trace/job/" + job_id)
    assert status == 200, (status, body)
    return [e["action"] for e in json.loads(body)["events"]]


def create(c, via, job_id, site):
    body = json.dumps({"id": job_id, "client": "acme", "kind": "scan", "site": site,
                       "effort": 5, "operator": "tanaka"}).encode()
    status, _, answer = c.api(via, "POST", "/v1/jobs", body)
    assert status in (200, 201), (status, answer)


def action(c, via, job_id, verb):
    status, _, answer = c.api(via, "POST", "/v1/jobs/%s/%s" % (job_id, verb), b"{}")
    assert status == 200, (job_id, verb, status, answer)


def dry_run_changes_nothing(c, via, args, jobs, key):
    """tandemctl ARGS (a dry run) lists exactly jobs under key and leaves via's data as it was:
    the same data digest (everything but the audit trail, which records the dry-run request
    itself and so moves the applied index every time). A site-controller decision applied during
    a dry run changes the data (then the dry run goes again, a bounded number of times); a dry
    run that wrote anything itself would change it every time and fail. Returns the answer."""
    seen = []
    for _ in range(DRY_RUNS_MAX):
        before = c.get_json(via, "/v1/digest")
        dry = json.loads(c.ctl("-o", "json", *args).stdout)
        assert dry["dry_run"] is True and sorted(dry["jobs"]) == sorted(jobs), dry
        assert dry[key] == len(jobs), dry
        after = c.get_json(via, "/v1/digest")
        if after["data_digest"] == before["data_digest"]:
            return dry
        seen.append((before["applied_index"], after["applied_index"]))
    raise AssertionError("the data of %s changed across each of %d dry runs (applied indexes %s)"
                         % (via, DRY_RUNS_MAX, seen))


def test_invoke_moves_open_work_and_failback_returns_queued():
    with Cluster(topology="2+2+1") as c:
        via = "west-1"
        wait_until(lambda: c.status(via)["leader"] is not None, TIMEOUT_S, "a leader")
        for i in range(6):
            create(c, via, "E%d" % i, "east")
        create(c, via, "W0", "west")
        action(c, via, "E2", "advance")    # in progress
        action(c, via, "E3", "advance")    # in progress
        action(c, via, "E4", "hold")       # on hold: stays
        action(c, via, "E5", "cancel")     # cancelled: stays
        c.wait_converged()  # the dry run reads the answering node's own state
        east_open = ["E0", "E1", "E2", "E3"]
        dry_run_changes_nothing(c, via, ("bcp", "drill", "east", "--dry-run"), east_open,
                                "jobs_moved")
        dry = dry_run_changes_nothing(c, via, ("bcp", "invoke", "east", "--dry-run"), east_open,
                                      "jobs_moved")
        assert dry["action"] == "invoke" and dry["site"] == "east", dry
        assert any(x["site"] == "east" for x in dry["role_changes"]), dry
        # Refused as the change itself would be, and a forced invoke has no dry run.
        p = c.ctl("bcp", "revoke", "east", "--dry-run", check=False)
        assert p.returncode != 0 and "is active: cannot revoke it" in p.stderr, p.stderr
        p = c.ctl("bcp", "invoke", "east", "--force", "--dry-run", check=False)
        assert p.returncode != 0 and "is for planned invokes" in p.stderr, p.stderr

        out = json.loads(c.ctl("-o", "json", "bcp", "invoke", "east", "--reason", "drill").stdout)
        assert out["jobs_moved"] == 4, out
        for j in ("E0", "E1"):
            record = job(c, via, j)
            assert record["site"] == "west" and record["status"] == "queued", record
            assert trace_actions(c, via, j).count("bcp_move") == 1
        for j in ("E2", "E3"):
            record = job(c, via, j)
            assert record["site"] == "west" and record["status"] == "in_progress", record
            assert record["stage"] == "scan" and record["operator"] in (None, ""), record
        for j, status in (("E4", "on_hold"), ("E5", "cancelled")):
            record = job(c, via, j)
            assert record["site"] == "east" and record["status"] == status, record
        assert job(c, via, "W0")["site"] == "west"

        action(c, via, "E2", "cancel")     # closed at west while east was away
        c.wait_converged()
        dry = dry_run_changes_nothing(c, via, ("bcp", "revoke", "east", "--failback",
                                               "--dry-run"), ["E0", "E1"], "jobs_returned")
        assert dry["action"] == "revoke" and dry["leadership_moves"] is True, dry
        assert any(x["site"] == "east" and x["to"] == "voter" for x in dry["role_changes"]), dry
        dry_run_changes_nothing(c, via, ("bcp", "revoke", "east", "--dry-run"), [],
                                "jobs_returned")
        out = json.loads(c.ctl("-o", "json", "bcp", "revoke", "east", "--failback").stdout)
        assert out["jobs_returned"] == 2, out  # E0 and E1: still queued; E3 is being worked on
        assert "jobs_moved" not in out, out
        assert job(c, via, "E3")["site"] == "west"
        for j in ("E0", "E1"):
            record = job(c, via, j)
            assert record["site"] == "east" and record["status"] == "queued", record
            assert "bcp_failback" in trace_actions(c, via, j)
        assert job(c, via, "E2")["site"] == "west"
        c.wait_converged()
        assert len(set(d["state_digest"] for d in c.converged_digests().values())) == 1


if __name__ == "__main__":
    run_tests(globals())
