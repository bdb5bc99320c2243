"""The domain workload: at each site, clients create jobs, check boxes in, pick stored boxes for
open jobs, advance and complete jobs, return boxes and shelve them again, through the nodes of
their site (now and then another node). The clients of one site share what they know of its
jobs and boxes, so they race for the same boxes: the cluster must still pick a box for at most
one open job. Every request is an operation in the history; the checker replays each object's
trace against the objects read at the end."""

import itertools
import threading

from client import request
from worker import Worker

STAGES = ["receive", "scan", "ship"]
OPEN_JOBS_MAX = 3
STORED_BOXES_MIN = 4
OWN_SITE_SHARE = 0.8    # of the requests sent through a node of the client's own site
OPEN = ("queued", "in_progress")
ACTION_WEIGHTS = {"job_create": 1, "box_checkin": 1, "box_pick": 3, "job_advance": 2,
                  "job_complete": 1, "box_return": 2, "box_move": 1}


class SiteModel:
    """What the clients of one site believe about their jobs and boxes (answers they got)."""

    def __init__(self, site):
        self.site = site
        self.lock = threading.Lock()
        self.jobs = {}
        self.boxes = {}
        self.stale = set()          # "job/ID" or "box/ID" to read again before trusting
        self.touched = set()        # every object any operation named
        self._ids = itertools.count(1)

    def new_id(self, kind):
        with self.lock:
            return "%s-%s-%d" % (kind, self.site, next(self._ids))

    def learn(self, obj_ref, doc):
        """Stores an object as the cluster returned it (None: it does not exist)."""
        kind, oid = obj_ref.split("/", 1)
        table = self.jobs if kind == "job" else self.boxes
        with self.lock:
            self.stale.discard(obj_ref)
            if doc is None:
                table.pop(oid, None)
            else:
                table[oid] = doc

    def doubt(self, obj_ref):
        with self.lock:
            self.stale.add(obj_ref)

    def candidates(self):
        """action -> [(object ref, extra)]: the choices the model says are legal now."""
        with self.lock:
            jobs = [j for j in self.jobs.values() if j.get("status") in OPEN]
            boxes = list(self.boxes.values())
        stored = [b for b in boxes if b.get("status") == "stored"]
        out = {a: [] for a in ACTION_WEIGHTS}
        if len(jobs) < OPEN_JOBS_MAX:
            out["job_create"].append((None, None))
        if len(stored) < STORED_BOXES_MIN:
            out["box_checkin"].append((None, None))
        out["box_pick"] = [("box/" + b["id"], j["id"]) for b in stored for j in jobs]
        for job in jobs:
            last = job.get("stage") == (job.get("stages") or STAGES)[-1]
            out["job_complete" if last else "job_advance"].append(("job/" + job["id"], None))
        for box in boxes:
            if box.get("status") in ("picked", "in_process"):
                out["box_return"].append(("box/" + box["id"], None))
            elif box.get("status") == "returned":
                out["box_move"].append(("box/" + box["id"], None))
        return {a: c for a, c in out.items() if c}


class DomainWorker(Worker):
    model = None  # set by the harness: the SiteModel of this worker's site

    def step(self):
        with self.model.lock:
            stale = sorted(self.model.stale)
        if stale:
            self.refresh(self.rng.choice(stale))
            return
        choices = self.model.candidates()
        actions = sorted(choices)
        action = self.rng.choices(actions, [ACTION_WEIGHTS[a] for a in actions])[0]
        obj_ref, extra = self.rng.choice(choices[action])
        self.act(action, obj_ref, extra)

    def site_node(self):
        site = self.model.site
        own = [n for n in self.cluster.names if self.cluster.nodes[n]["site"] == site]
        return self.node(own if self.rng.random() < OWN_SITE_SHARE else None)

    def request_for(self, action, obj_ref, extra):
        """(object ref, method, path, body, args) of one action."""
        site = self.model.site
        if action == "job_create":
            oid = self.model.new_id("J")
            body = {"id": oid, "client": "client-" + site, "kind": "scan", "site": site,
                    "stages": STAGES, "effort": self.rng.randint(1, 9)}
            return "job/" + oid, "POST", "/v1/jobs", body, body
        if action == "box_checkin":
            oid = self.model.new_id("B")
            body = {"id": oid, "ledger": "L-" + site, "client": "client-" + site, "site": site,
                    "shelf": "S-%02d" % self.rng.randint(1, 20)}
            return "box/" + oid, "POST", "/v1/boxes", body, body
        kind, oid = obj_ref.split("/", 1)
        base = "/v1/%s/%s/" % ("jobs" if kind == "job" else "boxes", oid)
        verb = action.split("_", 1)[1]
        body = None
        if action == "box_pick":
            body = {"job": extra}
        elif action == "box_move":
            body = {"site": site, "shelf": "S-%02d" % self.rng.randint(1, 20)}
        return obj_ref, "POST", base + verb, body, body or {}

    def act(self, action, obj_ref, extra):
        obj_ref, method, path, body, args = self.request_for(action, obj_ref, extra)
        node = self.site_node()
        with self.model.lock:
            self.model.touched.add(obj_ref)
        op = self.invoke("domain", action, node, object=obj_ref, args=args)
        answer = request(self.url(node), method, path, body=body)
        doc = answer.json() if answer.outcome == "ok" else None
        if answer.outcome != "ok" or not isinstance(doc, dict):
            self.complete(op, answer.outcome if answer.outcome != "ok" else "info",
                          error=answer.describe())
            self.model.doubt(obj_ref)
            return
        fields = {"job": doc.get("job")} if action == "box_pick" else {}
        self.complete(op, "ok", **fields)
        self.model.learn(obj_ref, doc)

    def refresh(self, obj_ref):
        """Reads an object the model doubts (linearizably); not an operation of the history."""
        self.ops += 1
        kind, oid = obj_ref.split("/", 1)
        path = "/v1/%s/%s" % ("jobs" if kind == "job" else "boxes", oid)
        answer = request(self.url(self.site_node()), "GET", path)
        if answer.status == 404:
            self.model.learn(obj_ref, None)
        elif answer.outcome == "ok" and isinstance(answer.json(), dict):
            self.model.learn(obj_ref, answer.json())
