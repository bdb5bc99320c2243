"""Integration test of the process-management and warehouse state on a 2+2+1 cluster of real
tandemd processes: a bulk check-in of 500 boxes (tandemctl, from a CSV ledger), 200 jobs, boxes
picked, processed, returned and disposed while the leader is killed with SIGKILL mid-way; then
every node's state digest is equal and each box's trace shows each step exactly once. Also the
API's error contract (400/404/409 naming the rule) and the tandemctl views."""

import concurrent.futures
import http.client as httpclient
import json
import os
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, ClusterError, run_tests, wait_until  # noqa: E402

BOXES = 500
JOBS = 200
CLIENTS = 4
STAGES = ["receive", "scan", "ship"]
WORKERS = 8               # jobs worked on at once
KILL_AFTER_JOBS = 60      # jobs finished before the leader is killed
ATTEMPTS = 40             # tries of one operation across elections and dead nodes
RETRY_PAUSE_S = 0.25
REQUEST_TIMEOUT_S = 10
WORK_TIMEOUT_S = 300      # the whole workflow
CONVERGE_TIMEOUT_S = 60
BOX_STEPS = ["checkin", "pick", "process", "return", "dispose"]


def box_id(b):
    return "B%03d" % b


def job_id(j):
    return "J%03d" % j


def client_of_job(j):
    return "client-%d" % (j % CLIENTS)


def boxes_of_job(j):
    return [b for b in range(BOXES) if b % JOBS == j]


class Driver:
    """Sends each operation through the live nodes in turn and retries it across the leader's
    death. Before a retry it reads the state (linearizable) and stops if the earlier attempt took
    effect, so no operation is applied twice."""

    def __init__(self, c):
        self.c = c
        self.down = set()
        self.turn = 0
        self.lock = threading.Lock()
        self.retries = 0

    def node(self):
        with self.lock:
            live = [n for n in self.c.names if n not in self.down]
            self.turn += 1
            return live[self.turn % len(live)]

    def call(self, method, path, body=None, node=None):
        status, _, data = self.c.api(node or self.node(), method, path, body=body,
                                     timeout=REQUEST_TIMEOUT_S)
        return status, json.loads(data) if data else {}

    def read(self, path):
        """GET path (linearizable) through any live node; None for 404."""
        for _ in range(ATTEMPTS):
            try:
                status, out = self.call("GET", path)
            except (OSError, httpclient.HTTPException):
                status, out = 0, {}
            if status == 200:
                return out
            if status == 404:
                return None
            time.sleep(RETRY_PAUSE_S)
        raise ClusterError("GET %s kept failing" % path)

    def ensure(self, path, body, done):
        """POSTs until it succeeds or done() says an earlier attempt already took effect."""
        for attempt in range(ATTEMPTS):
            if attempt > 0:
                with self.lock:
                    self.retries += 1
                if done():
                    return
            try:
                status, out = self.call("POST", path, body)
            except (OSError, httpclient.HTTPException):
                time.sleep(RETRY_PAUSE_S)
                continue
            if status in (200, 201):
                return
            if status in (429, 503):
                time.sleep(RETRY_PAUSE_S)
                continue
            if status == 409 and attempt > 0 and done():
                return
            raise AssertionError("POST %s %s: %d %s" % (path, body, status, out))
        raise ClusterError("POST %s did not get through in %d attempts" % (path, ATTEMPTS))

    # The operations, each with its "already happened" check.

    def box(self, b):
        return self.read("/v1/boxes/" + box_id(b))

    def job(self, j):
        return self.read("/v1/jobs/" + job_id(j))

    def pick(self, b, j):
        self.ensure("/v1/boxes/%s/pick" % box_id(b), {"job": job_id(j)},
                    lambda: self.box(b)["status"] != "stored")

    def box_step(self, b, verb, reached):
        self.ensure("/v1/boxes/%s/%s" % (box_id(b), verb), None,
                    lambda: self.box(b)["status"] in reached)

    def advance(self, j, stage):
        self.ensure("/v1/jobs/%s/advance" % job_id(j), None,
                    lambda: STAGES.index(self.job(j)["stage"]) >= stage)

    def complete(self, j):
        self.ensure("/v1/jobs/%s/complete" % job_id(j), None,
                    lambda: self.job(j)["status"] == "done")

    def create(self, j):
        body = {"id": job_id(j), "client": client_of_job(j), "kind": "scan",
                "site": ["east", "west"][j % 2], "stages": STAGES, "effort": 1 + j % 7,
                "priority": j % 3, "due": "2030-01-%02dT09:00:00+09:00" % (1 + j % 28)}
        self.ensure("/v1/jobs", body, lambda: self.job(j) is not None)

    def work(self, j):
        """One job's whole life with its boxes."""
        for b in boxes_of_job(j):
            self.pick(b, j)
        self.advance(j, 1)  # the picked boxes go into process
        for b in boxes_of_job(j):
            self.box_step(b, "return", ("returned", "disposed"))
        self.advance(j, 2)
        self.complete(j)
        for b in boxes_of_job(j):
            self.box_step(b, "dispose", ("disposed",))


def ledger_csv(path, first, count, extra=""):
    with open(path, "w") as f:
        f.write("id,ledger,client,site,shelf,volumes,retain_until\n")
        for b in range(first, first + count):
            j = b % JOBS
            f.write('%s,L-%02d,%s,%s,"S-%d",V%d-1;V%d-2,\n' % (
                box_id(b), b // 50, client_of_job(j), ["east", "west"][b % 2], b % 9, b, b))
        f.write(extra)


def trace_actions(c, node, kind, entity):
    status, _, data = c.api(node, "GET", "/v1/trace/%s/%s?consistency=local" % (kind, entity))
    assert status == 200, (kind, entity, status, data)
    return [e["action"] for e in json.loads(data)["events"]]


def check_error_contract(c, d):
    """400, 404 and 409 answers carry {"error"} naming the problem, and change nothing."""
    status, out = d.call("POST", "/v1/jobs", {"client": "x", "kind": "k", "site": "east",
                                              "due": "next tuesday"})
    assert status == 400 and "RFC 3339" in out["error"], (status, out)
    status, out = d.call("POST", "/v1/jobs", {"client": "x", "kind": "k", "site": "east",
                                              "colour": "red"})
    assert status == 400 and "unknown field" in out["error"], (status, out)
    status, out = d.call("GET", "/v1/jobs/NOPE")
    assert status == 404 and out["error"] == "job not found: NOPE", (status, out)
    status, out = d.call("POST", "/v1/boxes/%s/return" % box_id(0))
    assert status == 409, (status, out)
    assert out["error"] == ("illegal box transition: return from stored "
                            "(allowed from stored: pick, move, dispose)"), out
    status, out = d.call("POST", "/v1/boxes/%s/fly" % box_id(0))
    assert status == 404, (status, out)
    status, out = d.call("GET", "/v1/jobs?status=sleeping")
    assert status == 400, (status, out)
    status, out = d.call("POST", "/v1/boxes", {"id": box_id(0), "ledger": "L", "client": "c",
                                               "site": "east"})
    assert status == 409 and "already exists" in out["error"], (status, out)


def check_bulk_refusal(c, d, tmp):
    """A ledger with one bad row is refused whole: exit 1, the row's line named, nothing in."""
    path = os.path.join(tmp, "bad.csv")
    ledger_csv(path, BOXES, 5, extra="%s,L-99,client-0,east,S-1,,\n" % box_id(BOXES + 2))
    p = c.ctl("box", "checkin", "--file", path, check=False)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "line 7: box %s appears again (first in row 2)" % box_id(BOXES + 2) in p.stderr, \
        p.stderr
    assert "nothing was checked in" in p.stderr, p.stderr
    assert d.read("/v1/boxes/" + box_id(BOXES)) is None


def run_workflow(c, d):
    """Works every job on WORKERS threads; kills the leader after KILL_AFTER_JOBS; returns the
    killed node's name."""
    finished = []
    errors = []

    def one(j):
        try:
            d.work(j)
            finished.append(j)
        except Exception as e:  # reported below, with the job
            errors.append((j, repr(e)))

    old = c.leader()
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = [pool.submit(one, j) for j in range(JOBS)]
        wait_until(lambda: len(finished) >= KILL_AFTER_JOBS or errors, WORK_TIMEOUT_S,
                   "%d jobs finished" % KILL_AFTER_JOBS)
        assert not errors, errors[:3]
        with d.lock:
            d.down.add(old)
        c.kill(old)
        print("killed leader %s after %d jobs" % (old, len(finished)), flush=True)
        done, pending = concurrent.futures.wait(futures, timeout=WORK_TIMEOUT_S)
        assert not pending, "%d jobs did not finish" % len(pending)
    assert not errors, errors[:3]
    assert len(finished) == JOBS
    new = c.leader()
    assert new != old, (old, new)
    print("new leader %s; %d operations were retried" % (new, d.retries), flush=True)
    return old


def check_final_state(c, d):
    """Every job done, every box disposed, listings agree, one disposal record per box."""
    for j in range(JOBS):
        job = d.job(j)
        assert job["status"] == "done" and job["stage"] == "ship", job
        assert job["boxes"] == [box_id(b) for b in boxes_of_job(j)], job
    total, after = 0, None
    for _ in range(BOXES):  # pages of 100: bounded well above the 5 needed
        path = "/v1/boxes?status=disposed&limit=100" + ("&after=" + after if after else "")
        page = d.read(path)
        total += len(page["boxes"])
        after = page["next"]
        if after is None:
            break
    assert total == BOXES, total
    assert d.read("/v1/boxes?status=stored")["boxes"] == []
    disposals = d.read("/v1/disposals?limit=1000")["disposals"]
    assert sorted(x["box"] for x in disposals if x["kind"] == "box") == \
        [box_id(b) for b in range(BOXES)]


def check_traces(c):
    """Each box shows each step exactly once, in order; each job its own life, on every node."""
    nodes = c.names
    for b in range(BOXES):
        actions = trace_actions(c, nodes[b % len(nodes)], "box", box_id(b))
        assert actions == BOX_STEPS, (box_id(b), actions)
    for j in range(JOBS):
        actions = trace_actions(c, nodes[j % len(nodes)], "job", job_id(j))
        want = ["create"] + ["link_box"] * len(boxes_of_job(j)) + ["advance", "advance",
                                                                    "complete"]
        assert actions == want, (job_id(j), actions)


def check_ctl_views(c):
    p = c.ctl("box", "trace", box_id(7))
    lines = p.stdout.strip().splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "ACTION", "ACTOR", "SITE", "DETAILS"], p.stdout
    assert [line.split()[2] for line in lines[1:]] == BOX_STEPS, p.stdout
    p = c.ctl("-o", "json", "job", "list", "--status", "done", "--client", "client-1")
    jobs = json.loads(p.stdout)["jobs"]
    assert len(jobs) == JOBS // CLIENTS and all(x["client"] == "client-1" for x in jobs), jobs[:2]
    p = c.ctl("job", "list", "--site", "west", "--limit", "5")
    assert len(p.stdout.strip().splitlines()) == 6, p.stdout
    p = c.ctl("job", "advance", job_id(0), check=False)
    assert p.returncode == 1 and "illegal job transition: advance from done" in p.stderr, p.stderr


def test_domain_workflow_with_leader_kill_2_2_1():
    with Cluster("2+2+1") as c, tempfile.TemporaryDirectory() as tmp:
        d = Driver(c)
        path = os.path.join(tmp, "ledger.csv")
        ledger_csv(path, 0, BOXES)
        p = c.ctl("box", "checkin", "--file", path)
        assert p.stdout.strip() == "checked in %d boxes" % BOXES, p.stdout
        check_bulk_refusal(c, d, tmp)
        check_error_contract(c, d)
        with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(d.create, range(JOBS)))
        assert d.read("/v1/jobs?status=queued&limit=1000")["next"] is None

        old = run_workflow(c, d)
        check_final_state(c, d)

        # The killed leader restarts from its data and catches up; then all five agree.
        c.start(old)
        c.wait_converged(c.names, timeout=CONVERGE_TIMEOUT_S)
        digests = c.converged_digests(c.names)
        assert len({x["state_digest"] for x in digests.values()}) == 1, digests
        assert len({x["applied_index"] for x in digests.values()}) == 1, digests
        print("state digest on all %d nodes: %s" % (len(digests),
                                                    digests[old]["state_digest"][:16]))
        check_traces(c)
        check_ctl_views(c)


def test_purge_leaves_a_disposal_record_3():
    with Cluster("3", settings={"retention_days": 1}) as c:
        d = Driver(c)
        d.create(0)
        status, out = d.call("POST", "/v1/retention/purge", {"events_max": 10})
        assert status == 200, (status, out)
        record = out["disposal"]
        # Nothing is a day old yet: the record says so, and the trace is untouched.
        assert record["kind"] == "trace_purge" and record["retention_days"] == 1, record
        assert record["events_purged"] == 0 and record["more"] is False, record
        assert trace_actions(c, c.leader(), "job", job_id(0)) == ["create"]
        p = c.ctl("trace", "purge")
        assert p.stdout.startswith("purged 0 trace events older than "), p.stdout
        kinds = [x["kind"] for x in d.read("/v1/disposals")["disposals"]]
        assert kinds == ["trace_purge", "trace_purge"], kinds
        status, out = d.call("POST", "/v1/retention/purge", {"events_max": 0})
        assert status == 400, (status, out)


if __name__ == "__main__":
    run_tests()
