#!/usr/bin/env python3
"""Benchmark of growth (issue 17 item 4): a 2+2+1 cluster (insecure: a benchmark) preloaded with
N keys (tandem-bench, sequential keys, 256 B values unless --value-size) and M jobs with trace events (POST /v1/jobs with
ids of our own, every other job advanced once: 1.5 events a job), then the figures the issue
asks for. A figure, not a test: nothing here asserts a time. Run it through tests/bench/scale.sh.

    TANDEM_BIN_DIR=build-rel python3 tests/bench/scale.py [--keys N] [--jobs N] [--value-size B]
        [--set K=V]...

Figures: preload rates; disk per node (raft log and LMDB state apart) and RSS; snapshots taken
per node, the newest snapshot file's size, and the time micro_snapshot takes to serialise the
leader's state (what a snapshot runs on the thread pool); the longest loop stall
(tandem_loop_lag_max_seconds when the build has it, else n/a) and the longest part of a stall the
loop held itself, not waiting for a CPU (tandem_loop_held_max_seconds); leader changes during the preload
(raft term and tandem_raft_leader_changes_total); GET /v1/rebalance/plan and /v1/digest times and
the slowest /healthz answer while plans run (the loop's responsiveness); the restart-to-ready time
of one node; the time a wiped node takes to rejoin by snapshot (stopped, its data directory wiped,
started again with its configuration: the leader sends it a snapshot); and write p99 in 2 s
windows of a small open-loop load: windows in which the leader, or only other nodes, were taking
a snapshot (tandem_snapshot_taking, looked at every WATCH_S), windows in which none was, until
there are --windows-each of both or --windows in all, and windows while the wiped node was being
sent one.
Every loop is bounded in count and time.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from cluster import Cluster, wait_until  # noqa: E402

# Snapshots often enough to be measured during the preload, and a log short enough that a wiped
# node is sent a snapshot (with the defaults, 65536/131072 entries, a 1M-key preload of ~40,000
# entries would never snapshot). --set overrides them.
DEFAULT_SETTINGS = {"snapshot_threshold": "8192", "snapshot_trailing": "16384"}
PRELOAD_CONNECTIONS = 128
JOB_WORKERS = 96
JOB_REQUEST_TIMEOUT_S = 30
JOB_ATTEMPTS = 30          # per request, on 503/429/connection errors (an election: seconds)
WINDOW_S = 2               # one p99 window
WINDOW_RATE = 500          # writes/s of the small load
WINDOWS_MAX = 90           # windows of the snapshot phase at most
WINDOWS_EACH = 10          # it stops once it has this many with a snapshot and without
WATCH_S = 0.25             # how often the snapshot phase looks for snapshots being taken
REJOIN_TIMEOUT_S = 900
READY_TIMEOUT_S = 300
PLAN_CLIENTS = 4
HEALTH_POLL_S = 0.01
SAMPLE_S = 0.5
CLIENTS = ["acme", "globex", "initech", "umbrella"]
STAGES = ["scan", "index", "qa"]


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def metric(text, name):
    """Sum of every sample of metric name (labels ignored); None when absent."""
    total, seen = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^%s(\{[^}]*\})? ([0-9.eE+-]+)$" % re.escape(name), line)
        if m:
            total += float(m.group(2))
            seen = True
    return total if seen else None


class Node:
    """Plain HTTP (the cluster is insecure) to one node."""

    def __init__(self, c, name):
        self.c, self.name = c, name

    def get(self, path, timeout=10):
        u = urllib.parse.urlsplit(self.c.nodes[self.name]["api"])
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def metrics(self):
        try:
            status, body = self.get("/metrics", timeout=5)
            return body.decode() if status == 200 else ""
        except OSError:
            return ""

    def status(self):
        try:
            status, body = self.get("/v1/status", timeout=5)
            return json.loads(body) if status == 200 else None
        except (OSError, ValueError):
            return None


class Sampler(threading.Thread):
    """Every SAMPLE_S: the highest raft term and loop stall seen on any node, and the most raft
    log each node's directory held."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.nodes, self.stop_event = nodes, threading.Event()
        self.term_max, self.lag_max, self.lag_known = 0, 0.0, False
        self.own_max = None  # tandem_loop_held_max_seconds, when the build has it
        self.log_max, self.held_max = {}, {}

    def run(self):
        while not self.stop_event.wait(SAMPLE_S):
            for n in self.nodes:
                s = n.status()
                if s:
                    self.term_max = max(self.term_max, s["node"]["term"])
                text = n.metrics()
                lag = metric(text, "tandem_loop_lag_max_seconds")
                held = metric(text, "tandem_raft_log_held_bytes")
                if held is not None:
                    self.held_max[n.name] = max(self.held_max.get(n.name, 0), held)
                if lag is not None:
                    self.lag_known = True
                    self.lag_max = max(self.lag_max, lag)
                own = metric(text, "tandem_loop_held_max_seconds")
                if own is not None:
                    self.own_max = max(self.own_max or 0.0, own)
                raft = os.path.join(n.c.nodes[n.name]["dir"], "data", "raft")
                try:
                    log_bytes = raft_dir_bytes(raft)[0]
                except OSError:
                    continue
                self.log_max[n.name] = max(self.log_max.get(n.name, 0), log_bytes)


def bench(bin_dir, endpoint, *args, timeout):
    argv = [os.path.join(bin_dir, "tandem-bench"), "--target", "tandem", "--endpoints", endpoint,
            "-o", "json"] + [str(a) for a in args]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("tandem-bench %s: %s" % (" ".join(argv[3:]), p.stderr.strip()))
    return json.loads(p.stdout)


STALL_LOGGED_MS = 200  # node/metrics.h TANDEM_LOOP_LAG_WARN_MS
HELD_LOGGED_MS = 50    # node/metrics.h TANDEM_LOOP_HELD_WARN_MS
STALL_LINE = re.compile(r"event loop stalled (\d+) ms; meanwhile (.*); the loop thread ran (\d+) ms"
                        r"(?:,? (?:and )?waited (\d+) ms for a CPU)?"
                        r"(?: and read (\d+) pages from the disk)?(?: \(held (\d+) ms\))?")


def logged_stalls(path):
    """(stall ms, loop thread CPU ms, CPU wait ms or None, held ms or None, what ran meanwhile,
    pages the loop thread read from the disk or None) of each stall tandemd logged."""
    try:
        with open(path, errors="replace") as f:
            found = [STALL_LINE.search(line) for line in f]
    except OSError:
        return []
    def num(m, i):
        return None if m.group(i) is None else int(m.group(i))
    return [(int(m.group(1)), int(m.group(3)), num(m, 4), num(m, 6), m.group(2), num(m, 5))
            for m in found if m]


def p99_ms(report):
    us = report.get("latency_us", {}).get("p99")
    return None if us is None else us / 1000.0


def jobs_preload(c, leader, count):
    """POST /v1/jobs for count jobs, then advance every other one; returns (seconds, requests)."""
    u = urllib.parse.urlsplit(c.nodes[leader]["api"])
    failures = []
    started = time.monotonic()

    def send(conn, path, body):
        data = json.dumps(body).encode() if body is not None else b""
        for attempt in range(JOB_ATTEMPTS):
            try:
                conn.request("POST", path, data, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                text = resp.read()
                if resp.status in (200, 201) or (attempt > 0 and resp.status == 409):
                    return conn  # 409 after a retry: the first attempt was applied after all
                if resp.status != 503 and resp.status != 429:
                    failures.append("%s: %d %s" % (path, resp.status, text[:200]))
                    return conn
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=JOB_REQUEST_TIMEOUT_S)
            time.sleep(min(2.0, 0.2 * (attempt + 1)))
        failures.append("%s: gave up" % path)
        return conn

    def worker(first):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=JOB_REQUEST_TIMEOUT_S)
        for j in range(first, count, JOB_WORKERS):
            if len(failures) > 100:
                return
            body = {"id": "S%07d" % j, "client": CLIENTS[j % 4], "kind": "scan",
                    "site": ["east", "west"][j % 2], "stages": STAGES, "effort": 1 + j % 7,
                    "priority": j % 3, "due": "2030-01-%02dT09:00:00Z" % (1 + j % 28)}
            conn = send(conn, "/v1/jobs", body)
            if j % 2 == 0:
                conn = send(conn, "/v1/jobs/S%07d/advance" % j, None)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(JOB_WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError("jobs preload: %d failures, first: %s" % (len(failures), failures[0]))
    return time.monotonic() - started, count + (count + 1) // 2


def du_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def raft_dir_bytes(raft_dir):
    """(log segment bytes, snapshot bytes) of a node's raft directory and the snapshot files
    beside it (data/snapshots: a state past snapshot_inline_mib): the log is what the byte budget
    bounds; raft_uv keeps the last two snapshots (or their references) beside it."""
    log = snaps = 0
    files = os.path.join(os.path.dirname(raft_dir), "snapshots")
    for f in os.listdir(files) if os.path.isdir(files) else []:
        if f.endswith(".snap"):
            try:
                snaps += os.lstat(os.path.join(files, f)).st_size
            except OSError:
                pass
    for f in os.listdir(raft_dir):
        try:
            size = os.lstat(os.path.join(raft_dir, f)).st_size
        except OSError:
            continue
        if f.startswith("snapshot-"):
            snaps += size
        else:
            log += size
    return log, snaps


def budget_text(c):
    """The raft log's byte budget the cluster runs with (snapshot_log_mib + trailing_log_mib)."""
    snap = int(c.settings.get("snapshot_log_mib", 64))
    trail = int(c.settings.get("trailing_log_mib", 128))
    return "%d + %d MiB" % (snap, trail)


def histogram_tail(text, name, bound):
    """(samples above bound seconds, samples, the smallest bucket bound holding every sample) of
    histogram name; None when absent."""
    buckets, count = [], None
    for line in text.splitlines():
        m = re.match(r'^%s_bucket\{le="([^"]+)"\} ([0-9.eE+-]+)$' % re.escape(name), line)
        if m:
            buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)),
                            float(m.group(2))))
        m = re.match(r"^%s_count ([0-9.eE+-]+)$" % re.escape(name), line)
        if m:
            count = float(m.group(1))
    if count is None or not buckets:
        return None
    within = max((c for le, c in buckets if le <= bound), default=0.0)
    top = min((le for le, c in buckets if c >= count), default=float("inf"))
    return int(count - within), int(count), top


def rss_bytes(pid, field="VmRSS"):
    """A process's resident set (field VmHWM: its peak) in bytes, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, TypeError):
        pass
    return None


def mib(n):
    return "n/a" if n is None else "%.0f MiB" % (n / 1048576.0)


def newest_snapshot_bytes(raft_dir):
    """The newest snapshot's bytes: its file in data/snapshots when raft holds a reference."""
    files = os.path.join(os.path.dirname(raft_dir), "snapshots")
    named = sorted(f for f in os.listdir(files) if f.endswith(".snap")) if os.path.isdir(
        files) else []
    if named:
        return os.stat(os.path.join(files, named[-1])).st_size  # names sort by index
    snaps = [f for f in os.listdir(raft_dir) if f.startswith("snapshot-") and
             not f.endswith(".meta")]
    if not snaps:
        return None
    newest = max(snaps, key=lambda f: os.stat(os.path.join(raft_dir, f)).st_mtime)
    return os.stat(os.path.join(raft_dir, newest)).st_size


def timed_get(node, path, timeout=600):
    started = time.monotonic()
    status, body = node.get(path, timeout=timeout)
    return time.monotonic() - started, status, body


def plans_vs_health(leader_node):
    """PLAN_CLIENTS concurrent plans while /healthz is polled; returns (plan s, worst health s)."""
    done, worst, plan_times = threading.Event(), [0.0], []

    def poll():
        while not done.is_set():
            try:
                took, _, _ = timed_get(leader_node, "/healthz", timeout=30)
                worst[0] = max(worst[0], took)
            except OSError:
                pass
            time.sleep(HEALTH_POLL_S)

    def plan():
        took, status, _ = timed_get(leader_node, "/v1/rebalance/plan?max_moves=100")
        plan_times.append((took, status))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    planners = [threading.Thread(target=plan) for _ in range(PLAN_CLIENTS)]
    for t in planners:
        t.start()
    for t in planners:
        t.join()
    done.set()
    poller.join()
    return plan_times, worst[0]


class SnapshotWatch(threading.Thread):
    """Every WATCH_S, which nodes are taking a snapshot (tandem_snapshot_taking; a build without
    it: whose tandem_snapshots_taken_total moved since the last look). label(t0, t1) names a
    window by what it saw between t0 and t1: "leader" when the leader took one, "follower" when
    only another node did, "quiet" when none did."""

    def __init__(self, nodes, leader):
        super().__init__(daemon=True)
        self.nodes, self.leader, self.stop_event = nodes, leader, threading.Event()
        self.seen = []  # (monotonic time, names of the nodes taking one)
        self.taken = {}

    def look(self):
        taking = set()
        for n in self.nodes:
            text = n.metrics()
            now = metric(text, "tandem_snapshot_taking")
            if now is None:  # an older build: a snapshot ended since the last look
                count = metric(text, "tandem_snapshots_taken_total") or 0
                if self.taken.get(n.name, count) != count:
                    taking.add(n.name)
                self.taken[n.name] = count
            elif now > 0:
                taking.add(n.name)
        return taking

    def run(self):
        while not self.stop_event.is_set():
            taking = self.look()
            self.seen.append((time.monotonic(), taking))
            self.stop_event.wait(WATCH_S)

    def label(self, t0, t1):
        taking = set()
        for t, names in self.seen:
            if t0 <= t <= t1 + WATCH_S:
                taking |= names
        if self.leader in taking:
            return "leader"
        return "follower" if taking else "quiet"


def window_p99(bin_dir, endpoint):
    """One window: WINDOW_S of WINDOW_RATE writes/s to endpoint; its p99 in ms (None: no
    sample). Raises as bench does."""
    r = bench(bin_dir, endpoint, "--rate", WINDOW_RATE, "--duration", WINDOW_S,
              "--connections", 8, "--keys", 100000, timeout=WINDOW_S + 60)
    return p99_ms(r)


def windows(bin_dir, endpoint, stop, classify, out, limit):
    """2 s windows of WINDOW_RATE writes/s until stop(out) or limit windows; classify(t0, t1)
    labels each window by its start and end."""
    for _ in range(limit):
        if stop(out):
            return
        t0 = time.monotonic()
        try:
            p99 = window_p99(bin_dir, endpoint)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log("window: %s" % e)
            continue
        out.append((classify(t0, time.monotonic()), p99))


def median(values):
    """The median of values, sorted."""
    return values[len(values) // 2]


def p99_values(samples, labels):
    return sorted(v for k, v in samples if k in labels and v is not None)


def p99_summary(samples, labels):
    values = p99_values(samples, labels)
    if not values:
        return "n/a (no window)"
    return "%.1f ms worst, %.1f ms median of %d windows" % (values[-1], median(values),
                                                           len(values))


def p99_ratio(samples, during, without):
    """p99 during / without, of the worst and of the median windows."""
    a, b = p99_values(samples, during), p99_values(samples, without)
    if not a or not b:
        return "n/a"
    return "%.1fx worst, %.1fx median" % (a[-1] / b[-1], median(a) / median(b))


def rejoin_wiped(c, name, leader, bin_dir):
    """Stops name, wipes its data directory and starts it with its configuration unchanged (as a
    replaced disk would): it starts empty, and the leader, whose log no longer reaches back to
    the start, sends it a snapshot. Returns seconds from the start until name's applied index
    reached the leader's commit index at the start, the p99 windows run meanwhile, and name's
    tandem_snapshots_restored_total."""
    node = c.nodes[name]
    c.stop(name)
    shutil.rmtree(os.path.join(node["dir"], "data"))
    os.makedirs(os.path.join(node["dir"], "data"))
    target = Node(c, leader).status()["node"]["commit_index"]
    samples, finished = [], threading.Event()
    load = threading.Thread(target=windows, args=(
        bin_dir, c.nodes[leader]["api"], lambda _: finished.is_set(), lambda t0, t1: "sending",
        samples, REJOIN_TIMEOUT_S // WINDOW_S))
    started = time.monotonic()
    load.start()
    c.start(name)
    me = Node(c, name)

    def caught_up():
        s = me.status()
        return s is not None and s["node"]["applied_index"] >= target

    wait_until(caught_up, REJOIN_TIMEOUT_S, "%s to catch up" % name, interval=0.1)
    took = time.monotonic() - started
    finished.set()
    load.join()
    text = me.metrics()
    restored = "%s, snapshot files fetched %s (%s), peak RSS %s" % (
        metric(text, "tandem_snapshots_restored_total"),
        metric(text, "tandem_snapshot_files_fetched_total"),
        mib(metric(text, "tandem_snapshot_fetch_bytes_total")),
        mib(rss_bytes(c.nodes[name]["pid"], "VmHWM")))
    return took, samples, restored


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--jobs", type=int, default=100000)
    ap.add_argument("--value-size", type=int, default=256,
                    help="bytes of each preloaded key's value (default 256)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--windows", type=int, default=WINDOWS_MAX,
                    help="p99 windows of the snapshot phase at most (default %d)" % WINDOWS_MAX)
    ap.add_argument("--windows-each", type=int, default=WINDOWS_EACH,
                    help="the snapshot phase stops once it has this many windows with a snapshot "
                    "being taken and as many without (default %d)" % WINDOWS_EACH)
    args = ap.parse_args()
    bin_dir = os.environ.get("TANDEM_BIN_DIR")
    settings = dict(DEFAULT_SETTINGS)
    settings.update(kv.split("=", 1) for kv in args.set)
    out = []

    def say(line):
        out.append(line)
        print(line, flush=True)

    say("scale: %d keys of %d B + %d jobs (1.5 trace events a job), 2+2+1 insecure, %s"
        % (args.keys, args.value_size, args.jobs, " ".join("%s=%s" % kv for kv in sorted(settings.items()))))
    with Cluster("2+2+1", settings=settings, insecure=True, bin_dir=bin_dir) as c:
        nodes = [Node(c, n) for n in c.names]
        leader = c.settled_leader()
        lnode = Node(c, leader)
        term0 = max(n.status()["node"]["term"] for n in nodes)
        changes0 = sum(metric(n.metrics(), "tandem_raft_leader_changes_total") or 0
                       for n in nodes)
        sampler = Sampler(nodes)
        sampler.start()
        log("preloading %d keys through %s" % (args.keys, leader))
        r = bench(bin_dir, c.nodes[leader]["api"], "--connections", PRELOAD_CONNECTIONS,
                  "--ops", args.keys, "--keys", args.keys, "--key-order", "sequential",
                  "--value-size", args.value_size, "--timeout-ms", 30000, timeout=7200)
        say("preload keys: %d in %.1f s, %.0f ops/s, p99 %.1f ms, errors %s, sent again after "
            "a 503 (a full raft log) %d" % (
                r["ops"], r["duration_s"], r["ops_per_s"], p99_ms(r), json.dumps(r["errors"]),
                r.get("busy_retries", 0)))
        log("preloading %d jobs" % args.jobs)
        took, requests = jobs_preload(c, leader, args.jobs)
        say("preload jobs: %d requests in %.1f s (%.0f/s)" % (requests, took, requests / took))
        sampler.stop_event.set()
        sampler.join()
        term1 = max(n.status()["node"]["term"] for n in nodes)
        changes1 = sum(metric(n.metrics(), "tandem_raft_leader_changes_total") or 0
                       for n in nodes)
        say("leader changes during the preload: term %d -> %d (highest seen %d), "
            "tandem_raft_leader_changes_total summed over nodes +%d"
            % (term0, term1, sampler.term_max, changes1 - changes0))
        say("longest loop stall: %s; of a stall, longest not spent waiting for a CPU: %s" % (
            "%.3f s" % sampler.lag_max if sampler.lag_known
            else "n/a (no tandem_loop_lag_max_seconds in this build)",
            "n/a" if sampler.own_max is None else "%.3f s" % sampler.own_max))
        c.wait_converged(timeout=600)
        for name in c.names:
            data = os.path.join(c.nodes[name]["dir"], "data")
            text = Node(c, name).metrics()
            taken = metric(text, "tandem_snapshots_taken_total")
            log_bytes = raft_dir_bytes(os.path.join(data, "raft"))[0]
            deferred = metric(text, "tandem_raft_shield_ticks_deferred_total")
            say("%-9s raft log %s (most seen in the preload %s on disk, %s of entries; budget %s), "
                "state %s, RSS %s "
                "(peak %s), snapshots taken %s, newest snapshot %s, client writes refused for a "
                "full log %s (of them for another member's log %s), late raft ticks run after "
                "a poll %s" % (
                    name, mib(log_bytes), mib(sampler.log_max.get(name, 0)),
                    mib(sampler.held_max.get(name, 0)), budget_text(c),
                    mib(du_bytes(os.path.join(data, "state"))),
                    mib(rss_bytes(c.nodes[name]["pid"])),
                    mib(rss_bytes(c.nodes[name]["pid"], "VmHWM")),
                    "n/a" if taken is None else "%d" % taken,
                    mib(newest_snapshot_bytes(os.path.join(data, "raft"))),
                    "%d" % (metric(text, "tandem_writes_refused_log_full_total") or 0),
                    "%d" % (metric(text, "tandem_writes_refused_member_log_full_total") or 0),
                    "n/a" if deferred is None else "%d" % deferred))
            lag = metric(text, "tandem_loop_lag_max_seconds")
            wait = metric(text, "tandem_loop_cpu_wait_seconds_total")
            own = metric(text, "tandem_loop_held_max_seconds")
            commits = histogram_tail(text, "tandem_lmdb_commit_duration_seconds", 0.1)
            syncs = histogram_tail(text, "tandem_lmdb_sync_duration_seconds", 0.1)
            appends = histogram_tail(text, "tandem_raft_log_append_duration_seconds", 0.1)
            say("%-9s longest loop stall %s (not waiting for a CPU: at most %s; the loop thread "
                "waited %s for a CPU in all); LMDB "
                "commits over 100 ms: %s; LMDB syncs (thread pool) over 100 ms: %s; raft log "
                "writes over 100 ms: %s" % (
                    name, "n/a" if lag is None else "%.3f s" % lag,
                    "n/a" if own is None else "%.3f s" % own,
                    "n/a" if wait is None else "%.1f s" % wait,
                    "n/a" if commits is None else "%d of %d (all within %g s)" % commits,
                    "n/a" if syncs is None else "%d of %d (all within %g s)" % syncs,
                    "n/a" if appends is None else "%d of %d (all within %g s)" % appends))
            stalls = logged_stalls(os.path.join(c.nodes[name]["dir"], "tandemd.log"))
            if stalls:
                worst = max(stalls, key=lambda t: t[0])
                say("%-9s stalls logged (over %d ms, or over %d ms not waiting for a CPU): %d; "
                    "worst %d ms, in which the loop thread ran %d ms and waited %s ms for a CPU"
                    % (name, STALL_LOGGED_MS, HELD_LOGGED_MS, len(stalls), worst[0], worst[1],
                       "?" if worst[2] is None else worst[2]))
                held = [t for t in stalls if t[3] is not None]
                if held:
                    most = max(held, key=lambda t: t[3])
                    say("%-9s longest held %d ms (a %d ms stall; the loop thread ran %d ms and "
                        "read %s pages from the disk; meanwhile %s)" % (
                            name, most[3], most[0], most[1], "?" if most[5] is None else most[5],
                            most[4]))
                    faulted = sum(t[5] for t in stalls if t[5] is not None)
                    say("%-9s pages the loop thread read from the disk in its logged stalls: %d"
                        % (name, faulted))
        micro = os.path.join(bin_dir, "micro_snapshot")
        if os.path.exists(micro):
            p = subprocess.run([micro, os.path.join(c.nodes[leader]["dir"], "data", "state"),
                                os.path.join(c.dir, "micro-snapshot.tmp")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=1800)
            say("snapshot serialisation of the leader's state (micro_snapshot): %s"
                % (p.stdout.strip() or p.stderr.strip()))
        took, status, body = timed_get(lnode, "/v1/digest")
        say("GET /v1/digest: %.2f s (%d) %s" % (took, status, body.decode()[:200]))
        plan_times, worst = plans_vs_health(lnode)
        say("GET /v1/rebalance/plan x%d at once: %s; slowest /healthz meanwhile %.3f s" % (
            PLAN_CLIENTS, ", ".join("%.2f s (%d)" % t for t in plan_times), worst))
        follower = next(n for n in c.names if n != leader and not n.startswith("witness"))
        c.stop(follower)
        started = time.monotonic()
        c.start(follower)
        wait_until(lambda: Node(c, follower).get("/readyz", timeout=5)[0] == 200,
                   READY_TIMEOUT_S, "%s ready" % follower, interval=0.05)
        say("restart to ready (%s): %.2f s" % (follower, time.monotonic() - started))
        samples = []
        watch = SnapshotWatch(nodes, leader)
        watch.start()

        def enough(out):
            kinds = [k for k, v in out if v is not None]
            return (kinds.count("quiet") >= args.windows_each and
                    len(kinds) - kinds.count("quiet") >= args.windows_each)

        windows(bin_dir, c.nodes[leader]["api"], enough, watch.label, samples, args.windows)
        watch.stop_event.set()
        watch.join()
        say("write p99 (%d/s, %d s windows, up to %d windows until %d of each kind) while the "
            "leader took a snapshot: %s" % (WINDOW_RATE, WINDOW_S, args.windows, args.windows_each,
                                             p99_summary(samples, ["leader"])))
        say("write p99 while only followers took one: %s" % p99_summary(samples, ["follower"]))
        say("write p99 while any node took one: %s" % p99_summary(samples, ["leader", "follower"]))
        say("write p99 while no node took one: %s" % p99_summary(samples, ["quiet"]))
        say("write p99 while a snapshot was taken / without: %s (the leader's: %s)" % (
            p99_ratio(samples, ["leader", "follower"], ["quiet"]),
            p99_ratio(samples, ["leader"], ["quiet"])))
        wiped = next(n for n in reversed(c.names) if n != leader and n != follower
                     and not n.startswith("witness"))
        others = [Node(c, n) for n in c.names if n != wiped]
        term0 = max(n.status()["node"]["term"] for n in others)
        took, sent, restored = rejoin_wiped(c, wiped, leader, bin_dir)
        term1 = max(n.status()["node"]["term"] for n in others)
        say("wiped %s rejoined in %.1f s (snapshots restored: %s)" % (wiped, took, restored))
        # Started under its old name, the node reports less than the leader's stale match index:
        # the leader hands leadership on (consensus/raft_shield.h, 8).
        say("during the rejoin: term %d -> %d, lost logs seen by %s: %s"
            % (term0, term1, leader, metric(Node(c, leader).metrics(),
                                            "tandem_raft_shield_lost_logs_total")))
        say("write p99 while the snapshot was sent: %s" % p99_summary(sent, ["sending"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
