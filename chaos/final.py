"""The end of a chaos run: once every fault is healed, reads the final state the checker judges
the history against (each append key's list, read linearizably; every node's digest at one
applied index; every job, box and trace the domain workload touched)."""

import json
import time

from append import keys, parse_list
from client import quote, request
from cluster import ClusterError, wait_until

FINAL_TIMEOUT_S = 60
TRACE_PAGE = 1000
TRACE_PAGES_MAX = 100


def read_ok(cluster, path, what, timeout=FINAL_TIMEOUT_S, absent_ok=False):
    """GET path through the nodes in turn until one answers 200 (or 404 when absent_ok):
    returns the answer; ClusterError after timeout."""
    turn = [0]

    def attempt():
        node = cluster.names[turn[0] % len(cluster.names)]
        turn[0] += 1
        answer = request(cluster.nodes[node]["api"], "GET", path)
        if answer.status == 200 or (absent_ok and answer.status == 404):
            return answer
        return None
    return wait_until(attempt, timeout, what, interval=0.2)


def final_keys(cluster):
    out = {}
    for key in keys():
        answer = read_ok(cluster, "/v1/kv/" + quote(key), "final read of " + key, absent_ok=True)
        out[key] = [] if answer.status == 404 else parse_list(answer.body)
    return out


def final_digests(cluster, timeout=FINAL_TIMEOUT_S):
    """GET /v1/digest of every node, taken when every node has applied the same index (and
    again until the digests themselves name one index: a write may land in between)."""
    def same_index():
        applied = {n: cluster.status(n, timeout=2)["node"]["applied_index"] for n in cluster.names}
        if len(set(applied.values())) != 1:
            return None
        digests = {n: cluster.get_json(n, "/v1/digest") for n in cluster.names}
        indexes = {d["applied_index"] for d in digests.values()}
        return digests if len(indexes) == 1 else None
    digests = wait_until(same_index, timeout, "every node at one applied index", interval=0.2)
    return {n: {"applied_index": d["applied_index"], "state_digest": d["state_digest"]}
            for n, d in digests.items()}


def final_trace(cluster, obj_ref):
    events, after = [], None
    for _ in range(TRACE_PAGES_MAX):
        path = "/v1/trace/%s?limit=%d" % (obj_ref, TRACE_PAGE)
        if after is not None:
            path += "&after=%d" % after
        page = json.loads(read_ok(cluster, path, "trace of " + obj_ref).body)
        events += page["events"]
        after = page.get("next")
        if after is None:
            return events
    raise ClusterError("trace of %s longer than %d pages" % (obj_ref, TRACE_PAGES_MAX))


def final_objects(cluster, refs):
    """(jobs, boxes, traces) of the objects named by refs ("job/ID", "box/ID"); objects whose
    creation never took effect are absent from jobs and boxes (and have no trace)."""
    jobs, boxes, traces = [], [], {}
    for ref in sorted(refs):
        kind, oid = ref.split("/", 1)
        path = "/v1/%s/%s" % ("jobs" if kind == "job" else "boxes", quote(oid))
        answer = read_ok(cluster, path, "final read of " + ref, absent_ok=True)
        if answer.status == 404:
            continue
        (jobs if kind == "job" else boxes).append(json.loads(answer.body))
        traces[ref] = final_trace(cluster, ref)
    return jobs, boxes, traces


def snapshot_counts(cluster):
    """node -> {"taken", "deferred", "restored"} from each node's /metrics: whether the run's
    snapshot settings made snapshots (and installs) happen."""
    out = {}
    for name in cluster.names:
        answer = request(cluster.nodes[name]["api"], "GET", "/metrics")
        counts = {}
        for line in answer.body.decode(errors="replace").splitlines():
            for what in ("taken", "deferred", "restored"):
                if line.startswith("tandem_snapshots_%s_total " % what):
                    counts[what] = int(float(line.split()[1]))
        out[name] = counts
    return out


def collect(cluster, refs, errors):
    """The final.json fields read from the cluster; problems go to errors, not exceptions."""
    out = {"keys": {}, "digests": {}, "jobs": [], "boxes": [], "traces": {}, "snapshots": {}}
    started = time.monotonic()
    steps = (("keys", lambda: final_keys(cluster)),
             ("digests", lambda: final_digests(cluster)),
             ("objects", lambda: final_objects(cluster, refs)),
             ("snapshots", lambda: snapshot_counts(cluster)))
    for name, step in steps:
        try:
            value = step()
        except (ClusterError, OSError, ValueError, KeyError) as e:
            errors.append("final %s: %s: %s" % (name, type(e).__name__, e))
            continue
        if name == "objects":
            out["jobs"], out["boxes"], out["traces"] = value
        else:
            out[name] = value
    out["collect_s"] = round(time.monotonic() - started, 1)
    return out
