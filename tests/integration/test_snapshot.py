#!/usr/bin/env python3
"""Snapshot integration tests on real tandemd clusters with tiny snapshot thresholds: a node
restarted (SIGTERM, kill -9) after snapshots and log truncation rejoins with the same state, a
follower paused (SIGSTOP) while the leader truncates past it catches up by snapshot install
without crashing (libraft 0.22.1's takeSnapshotCb NULL dereference lives on this path), and with
snapshot files (snapshot_inline_mib=0) a wiped node comes back by fetching the leader's file, which
only node certificates may read."""

import base64
import json
import os
import re
import shutil
import sys
import threading
import time
import urllib.parse
import http.client as httpclient

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import (BIN_DIR, SUBREAPER, Cluster, ClusterError, exit_code,  # noqa: E402
                     http_connection, pid_alive, run_tests, wait_until)

# Snapshots every 64 entries keeping 128 behind; 64 KiB segments so that truncation removes whole
# segment files (a batch must fit in a segment, and a body in a batch). max_inflight_entries is
# the default, spelled out: a paused follower may find that many entries queued for it on resume.
# A snapshot here is a few MB on loopback: a send that went astray is retried after 5 s, not 30.
MAX_INFLIGHT = 1024
SETTINGS = {"snapshot_threshold": 64, "snapshot_trailing": 128, "segment_size_kib": 64,
            "batch_bytes_max_kib": 32, "body_bytes_max_kib": 32,
            "max_inflight_entries": MAX_INFLIGHT, "install_snapshot_timeout_ms": 5000}
VALUE_BYTES = 600            # ~100 entries per 64 KiB segment
PREFILL_WRITES = 400         # sequential, one raft entry each: several snapshots on every node
WRITES_WHILE_DOWN = 40       # fewer than snapshot_trailing: the restart itself is under test
LOAD_THREADS = 4
LOAD_MAX_S = 30              # bound on one load phase
FAILED_WRITE_PAUSE_S = 0.01  # a load thread whose write failed waits this long before the next
LOAD_AFTER_RESUME_S = 1.5    # the load goes on this long after SIGCONT
PAUSE_CYCLES = 2             # pause/resume rounds in one cluster
REQUEST_TIMEOUT_S = 5
RETRY_FOR_S = 10             # a sequential write answered 503 (Retry-After) is retried this long
RETRY_PAUSE_S = 0.05
SETTLE_TIMEOUT_S = 20        # the site controller moves leadership off the witness within this
# 2+2+1: a node that stops or pauses for seconds leaves a partner in its site, so the site never
# counts as down (site_down_after_ms) and the site controller leaves the roles alone.
TOPOLOGY = "2+2+1"
CONVERGE_TIMEOUT_S = 60
LIST_PAGE = 10000
LIST_PAGES_MAX = 20
CRASH_MARKERS = re.compile(r"AddressSanitizer|runtime error|Segmentation|FATAL|fatal:|ABORTING")
SEGMENT_NAME = re.compile(r"^(\d{16})-(\d{16})$")


class Conn:
    """One kept-alive HTTP/1.1 connection to a node's API, reopened after any failure."""

    def __init__(self, api, timeout=REQUEST_TIMEOUT_S):
        self.api, self.timeout = api, timeout
        self.conn = None

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http_connection(self.api, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, httpclient.HTTPException):
            self.close()
            raise
        if resp.will_close:
            self.close()
        return resp.status, resp.headers, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def kv_path(key):
    return "/v1/kv/" + urllib.parse.quote(key, safe="")


def value_for(key):
    return (key.encode() + b"|") * (VALUE_BYTES // (len(key) + 1))


def put_retrying(conn, key):
    """PUT key, repeated while the answer is 503 (no leader for a moment) or the connection
    fails, for at most RETRY_FOR_S; returns (status, body)."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            status, _, body = conn.request("PUT", kv_path(key), value_for(key))
            if status != 503:
                return status, body
        except (OSError, httpclient.HTTPException) as e:
            status, body = None, repr(e).encode()
        if time.monotonic() >= deadline:
            return status, body
        time.sleep(RETRY_PAUSE_S)


def sequential_writes(c, name, prefix, count):
    """count PUTs one after the other on one connection: each its own raft entry. Returns
    key -> value."""
    conn, written = Conn(c.nodes[name]["api"]), {}
    for i in range(count):
        key = "%s%05d" % (prefix, i)
        status, body = put_retrying(conn, key)
        assert status == 200, (name, key, status, body)
        written[key] = value_for(key)
    conn.close()
    return written


def settled_leader(c):
    """The agreed leader once it is in a non-witness site (the site controller moves leadership
    off a witness that won an election)."""
    return wait_until(lambda: (lambda n: c.nodes[n]["site"] != "witness" and n)(c.leader()),
                      SETTLE_TIMEOUT_S, "a leader outside the witness site")


def non_witness_followers(c, leader):
    return [n for n in c.live() if n != leader and c.nodes[n]["site"] != "witness"]


class Load:
    """LOAD_THREADS threads writing unique keys through the given nodes until stopped (bounded by
    LOAD_MAX_S); acknowledged writes are kept, failed ones (unknown outcome) counted."""

    def __init__(self, c, names, prefix):
        self.c, self.names, self.prefix = c, names, prefix
        self.acked, self.failed = {}, 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.deadline = time.monotonic() + LOAD_MAX_S
        self.threads = [threading.Thread(target=self.run, args=(t,)) for t in range(LOAD_THREADS)]
        for th in self.threads:
            th.start()

    def run(self, t):
        conns = [Conn(self.c.nodes[n]["api"]) for n in self.names]
        seq = 0
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            key = "%s%d/%06d" % (self.prefix, t, seq)
            conn = conns[seq % len(conns)]
            seq += 1
            try:
                status, _, _ = conn.request("PUT", kv_path(key), value_for(key))
            except (OSError, httpclient.HTTPException):
                status = None
            with self.lock:
                if status == 200:
                    self.acked[key] = value_for(key)
                else:
                    self.failed += 1
            if status != 200:
                time.sleep(FAILED_WRITE_PAUSE_S)
        for conn in conns:
            conn.close()

    def finish(self):
        self.stop.set()
        for th in self.threads:
            th.join(REQUEST_TIMEOUT_S + 5)
        assert not any(th.is_alive() for th in self.threads), "load threads did not stop"
        return dict(self.acked)


def list_local(c, name, prefix):
    """key -> value bytes of every key under prefix in node name's own state (paged)."""
    out, after = {}, ""
    for _ in range(LIST_PAGES_MAX):
        query = {"prefix": prefix, "limit": LIST_PAGE, "consistency": "local"}
        if after:
            query["after"] = after
        status, _, body = c.api(name, "GET", "/v1/kv?" + urllib.parse.urlencode(query))
        assert status == 200, (name, status, body[:200])
        page = json.loads(body)
        out.update({kv["key"]: base64.b64decode(kv["value"]) for kv in page["kvs"]})
        if not page["more"]:
            return out
        after = page["kvs"][-1]["key"]
    raise AssertionError("%s: more than %d pages under %s" % (name, LIST_PAGES_MAX, prefix))


def check_has(c, name, expected, prefix):
    seen = list_local(c, name, prefix)
    missing = [k for k in expected if seen.get(k) != expected[k]]
    assert not missing, "%s lacks or differs on %d of %d keys, e.g. %s" % (
        name, len(missing), len(expected), missing[:5])


def log_segments(c, name):
    """(first, last) index of every closed raft segment of node name."""
    raft_dir = os.path.join(c.nodes[name]["dir"], "data", "raft")
    return sorted((int(m.group(1)), int(m.group(2)))
                  for m in map(SEGMENT_NAME.match, os.listdir(raft_dir)) if m)


def first_log_index(c, name):
    segments = log_segments(c, name)
    return segments[0][0] if segments else None


def check_no_crash(c, name):
    pid = c.nodes[name]["pid"]
    tail = c.log_tail(name, 60)
    if not pid_alive(pid) or CRASH_MARKERS.search(tail):
        raise AssertionError("%s (pid %s) crashed or logged a fatal error; exit code %s; log "
                             "tail:\n%s" % (name, pid, exit_code(pid), tail))


def converge_watching(c, names, watch):
    """Waits until names report the same applied_index and apply_digest, failing at once (with
    its log tail) when node watch dies or logs a crash, then compares /v1/digest too."""
    seen = {}

    def same():
        check_no_crash(c, watch)
        for n in names:
            node = c.status(n, timeout=2)["node"]
            seen[n] = (node["applied_index"], node["apply_digest"])
        return len(set(seen.values())) == 1

    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while not same():
        if time.monotonic() >= deadline:
            raise AssertionError("no convergence in %d s: %s" % (CONVERGE_TIMEOUT_S, seen))
        time.sleep(0.1)
    digests = c.converged_digests(names)
    assert len({(d["applied_index"], d["state_digest"]) for d in digests.values()}) == 1, digests
    return seen[names[0]]


def check_snapshotted_and_truncated(c, name):
    taken = c.metric(name, "tandem_snapshots_taken_total")
    assert taken > 0, "%s took no snapshot" % name
    taking = c.metric(name, "tandem_snapshot_taking")
    assert taking in (0, 1), "%s: tandem_snapshot_taking %r" % (name, taking)
    first = first_log_index(c, name)
    assert first is not None and first > 1, "%s's log was not truncated: segments %s" % (
        name, log_segments(c, name))
    return taken, first


# ---- restart after snapshots -------------------------------------------------------------------


def test_restart_after_snapshot_sigterm():
    with Cluster(TOPOLOGY, settings=SETTINGS) as c:
        leader = settled_leader(c)
        node = non_witness_followers(c, leader)[0]
        written = sequential_writes(c, leader, "a/", PREFILL_WRITES // 2)
        written.update(sequential_writes(c, node, "b/", PREFILL_WRITES // 2))  # forwarded
        converge_watching(c, c.names, node)
        taken, first = check_snapshotted_and_truncated(c, node)
        print("%s: %d snapshots, log starts at %d" % (node, taken, first), flush=True)

        pid = c.nodes[node]["pid"]
        c.stop(node)
        assert not SUBREAPER or exit_code(pid) == 0, "SIGTERM: exit code %s" % exit_code(pid)
        written.update(sequential_writes(c, leader, "c/", WRITES_WHILE_DOWN))
        c.start(node)
        converge_watching(c, c.names, node)
        for prefix in ("a/", "b/", "c/"):
            check_has(c, node, {k: v for k, v in written.items() if k.startswith(prefix)}, prefix)
        # The restarted node keeps snapshotting and truncating from where it was.
        written.update(sequential_writes(c, node, "d/", 2 * SETTINGS["snapshot_threshold"]))
        converge_watching(c, c.names, node)
        check_snapshotted_and_truncated(c, node)
        check_has(c, node, {k: v for k, v in written.items() if k.startswith("d/")}, "d/")


def test_restart_after_snapshot_kill9_under_load():
    with Cluster(TOPOLOGY, settings=SETTINGS) as c:
        old = settled_leader(c)
        written = sequential_writes(c, old, "a/", PREFILL_WRITES)
        check_snapshotted_and_truncated(c, old)
        # kill -9 the leader while writes (and so snapshots) are in full swing.
        load = Load(c, c.names, "load/")
        time.sleep(1.0)
        c.kill(old)
        time.sleep(0.5)
        acked = load.finish()
        assert acked, "nothing acknowledged under load"
        new = c.leader()
        assert new != old, new  # maybe the witness for a moment: the writes below retry
        written.update(sequential_writes(c, new, "c/", WRITES_WHILE_DOWN))
        c.start(old)
        converge_watching(c, c.names, old)
        for name in c.names:
            check_has(c, name, acked, "load/")
        for prefix in ("a/", "c/"):
            check_has(c, old, {k: v for k, v in written.items() if k.startswith(prefix)}, prefix)
        print("%d writes acknowledged under load, %d failed around the kill" % (
            len(acked), load.failed), flush=True)


# ---- a paused follower catches up by snapshot install ------------------------------------------


def test_paused_follower_catches_up_by_snapshot():
    with Cluster(TOPOLOGY, settings=SETTINGS) as c:
        leader = settled_leader(c)
        followers = non_witness_followers(c, leader)
        acked = sequential_writes(c, leader, "a/", 100)
        converge_watching(c, c.names, followers[0])
        for cycle in range(PAUSE_CYCLES):
            paused = followers[cycle % len(followers)]
            other = next(n for n in followers if n != paused)
            restored_before = c.metric(paused, "tandem_snapshots_restored_total")
            behind = c.status(paused)["node"]["last_index"]
            c.pause(paused)
            load = Load(c, [leader, other], "p%d/" % cycle)
            try:
                # The leader runs ahead and drops from its log entries the paused node lacks,
                # beyond what it may have sent before noticing (max_inflight_entries): only a
                # snapshot can bring the node back.
                def truncated_past():
                    st = c.status(leader, timeout=2)["node"]
                    first = first_log_index(c, leader)
                    return (first is not None and first > behind + MAX_INFLIGHT + 1
                            and (st["applied_index"], first))
                applied, first = wait_until(truncated_past, LOAD_MAX_S,
                                            "the leader to truncate its log past the paused node")
                print("cycle %d: %s paused at last_index %d; leader applied %d, log from %d" % (
                    cycle, paused, behind, applied, first), flush=True)
                c.resume(paused)
                time.sleep(LOAD_AFTER_RESUME_S)
            finally:
                c.resume(paused)
                acked.update(load.finish())
            started = time.monotonic()
            converge_watching(c, c.names, paused)
            print("cycle %d: %s converged %.1f s after the load stopped" % (
                cycle, paused, time.monotonic() - started), flush=True)
            check_no_crash(c, paused)
            restored = c.metric(paused, "tandem_snapshots_restored_total")
            assert restored > restored_before, "%s caught up without a snapshot install (%d)" % (
                paused, restored)
            # The state the install replaced went to the thread pool to be removed (storage/
            # store.h, trash_later): none of it stays beside the live store.
            data_dir = os.path.join(c.nodes[paused]["dir"], "data")
            wait_until(lambda: not [e for e in os.listdir(data_dir)
                                    if e.startswith("state.") and e != "state"], 30,
                       "the replaced state removed from %s" % data_dir)
            # The raft_io shields are installed in tandemd and count what they did.
            for name in (leader, paused):
                assert c.metric(name, "tandem_raft_shield_terms_fixed_total") >= 0
                assert c.metric(name, "tandem_raft_shield_appends_cut_total") >= 0
            check_has(c, paused, {k: v for k, v in acked.items() if k.startswith("p%d/" % cycle)},
                      "p%d/" % cycle)
        for name in c.names:
            check_has(c, name, {k: v for k, v in acked.items() if k.startswith("a/")}, "a/")
            check_no_crash(c, name)


SNAPSHOT_NAME = re.compile(r"^snapshot-(\d+)-(\d+)-\d+$")  # raft_uv's: term, index, time


def newest_snapshot_index(c, name):
    raft_dir = os.path.join(c.nodes[name]["dir"], "data", "raft")
    found = [int(m.group(2)) for m in map(SNAPSHOT_NAME.match, os.listdir(raft_dir)) if m]
    return max(found) if found else 0


def test_wiped_node_whose_acknowledged_index_is_past_the_snapshot():
    """A node that lost its data directory and starts again under its old name had acknowledged
    entries the leader's newest snapshot does not reach. libraft 0.22.1's leader keeps the match
    index the node had (it never lowers one), so once the node has installed the snapshot the
    leader finds fewer entries in flight than none (an unsigned underflow in
    src/replication.c sendAppendEntries) and sends only heartbeats: the node stays at the
    snapshot's index until the leader's log no longer reaches it. Nothing is written after the
    restart, so only a fix brings the node back."""
    with Cluster(TOPOLOGY, settings=SETTINGS) as c:
        leader = settled_leader(c)
        wiped = non_witness_followers(c, leader)[0]
        written = sequential_writes(c, leader, "a/", PREFILL_WRITES)
        applied, _ = converge_watching(c, c.names, wiped)
        snap = newest_snapshot_index(c, leader)
        if applied - snap < 8:  # the wiped node must have acknowledged well past the snapshot
            written.update(sequential_writes(c, leader, "p/", 8))
            applied, _ = converge_watching(c, c.names, wiped)
            snap = newest_snapshot_index(c, leader)
        assert 0 < snap < applied, (snap, applied)
        print("leader %s snapshot at %d, %s acknowledged %d" % (leader, snap, wiped, applied),
              flush=True)

        others = [n for n in c.names if n != wiped]
        term = max(c.status(n)["node"]["term"] for n in others)
        c.stop(wiped)
        data = os.path.join(c.nodes[wiped]["dir"], "data")
        shutil.rmtree(data)
        os.makedirs(data)
        c.start(wiped)
        converge_watching(c, c.names, wiped)
        for prefix in ("a/", "p/"):
            check_has(c, wiped, {k: v for k, v in written.items() if k.startswith(prefix)}, prefix)
        assert c.metric(wiped, "tandem_snapshots_restored_total") >= 1
        # The leader saw the loss and handed leadership on (consensus/raft_shield.h, 8). On a
        # loaded machine an election may have started afresh first; then nobody saw a loss.
        seen = [n for n in others if c.metric(n, "tandem_raft_shield_lost_logs_total") >= 1]
        term_after = max(c.status(n)["node"]["term"] for n in others)
        assert term_after > term, (term, term_after)
        if seen:
            assert "%s lost entries it had acknowledged" % wiped in c.log_tail(seen[0], 400)
        else:
            print("an election came first (term %d -> %d): the shield had nothing to see"
                  % (term, term_after), flush=True)
        # And it goes on following.
        written.update(sequential_writes(c, leader, "c/", 20))
        converge_watching(c, c.names, wiped)
        check_has(c, wiped, {k: v for k, v in written.items() if k.startswith("c/")}, "c/")
        for name in c.names:
            check_no_crash(c, name)


# ---- snapshots as files (snapshot_inline_mib) -------------------------------------------------

FILE_SETTINGS = dict(SETTINGS, snapshot_inline_mib=0)  # every snapshot a file, raft a reference
REF_BYTES_MAX = 4096  # raft_uv's file of a 64-byte reference, with its own header


def snapshot_dir_files(c, name):
    """(snapshot files, leftovers) in node name's data/snapshots."""
    names = os.listdir(os.path.join(c.nodes[name]["dir"], "data", "snapshots"))
    return ([n for n in names if n.endswith(".snap")],
            [n for n in names if n.endswith((".tmp", ".part"))])


def check_references_only(c, name):
    """Node name's raft keeps references, not states: its snapshot files are tiny, and it keeps
    the state files of at most its two newest."""
    raft_dir = os.path.join(c.nodes[name]["dir"], "data", "raft")
    sizes = [os.path.getsize(os.path.join(raft_dir, n)) for n in os.listdir(raft_dir)
             if n.startswith("snapshot-") and not n.endswith(".meta")]
    assert sizes and max(sizes) <= REF_BYTES_MAX, (name, sizes)
    files, _ = snapshot_dir_files(c, name)
    assert 1 <= len(files) <= 2, (name, files)
    return files


def test_snapshot_files_bring_a_wiped_node_back():
    with Cluster(TOPOLOGY, settings=FILE_SETTINGS) as c:
        leader = settled_leader(c)
        wiped = non_witness_followers(c, leader)[0]
        written = sequential_writes(c, leader, "a/", PREFILL_WRITES)
        converge_watching(c, c.names, wiped)
        for name in c.names:
            check_snapshotted_and_truncated(c, name)
            assert c.metric(name, "tandem_snapshot_files_written_total") > 0, name
            check_references_only(c, name)

        # A replaced disk: the node starts empty and the leader's log no longer reaches back.
        c.stop(wiped)
        data = os.path.join(c.nodes[wiped]["dir"], "data")
        shutil.rmtree(data)
        os.makedirs(data)
        written.update(sequential_writes(c, leader, "b/", WRITES_WHILE_DOWN))
        c.start(wiped)
        converge_watching(c, c.names, wiped)
        for prefix in ("a/", "b/"):
            check_has(c, wiped, {k: v for k, v in written.items() if k.startswith(prefix)}, prefix)
        assert c.metric(wiped, "tandem_snapshot_files_fetched_total") >= 1
        assert c.metric(wiped, "tandem_snapshot_fetch_bytes_total") > 0
        assert c.metric(wiped, "tandem_snapshots_restored_total") >= 1
        files = check_references_only(c, wiped)
        print("%s rejoined from %s" % (wiped, files), flush=True)

        # It goes on taking file snapshots of its own and serving them.
        written.update(sequential_writes(c, wiped, "c/", 2 * SETTINGS["snapshot_threshold"]))
        converge_watching(c, c.names, wiped)
        wait_until(lambda: c.metric(wiped, "tandem_snapshot_files_written_total") >= 1,
                   CONVERGE_TIMEOUT_S, "a snapshot file of the rejoined node")
        for name in c.names:
            check_no_crash(c, name)
            check_has(c, name, {k: v for k, v in written.items() if k.startswith("c/")}, "c/")
            assert not snapshot_dir_files(c, name)[1], name


def test_snapshot_file_route_refusals():
    with Cluster(TOPOLOGY, settings=FILE_SETTINGS) as c:
        leader = settled_leader(c)
        sequential_writes(c, leader, "a/", PREFILL_WRITES // 2)
        wait_until(lambda: snapshot_dir_files(c, leader)[0], CONVERGE_TIMEOUT_S,
                   "a snapshot file on the leader")
        name = snapshot_dir_files(c, leader)[0][0]
        path = "/v1/node/snapshots/" + name
        node_ctx = c.tls_context(next(n for n in c.names if n != leader))
        size = os.path.getsize(os.path.join(c.nodes[leader]["dir"], "data", "snapshots", name))
        # A node certificate gets the file, whole.
        status, _, body = c.api(leader, "GET", path, context=node_ctx, timeout=30)
        assert status == 200 and len(body) == size, (status, len(body), size)
        assert body[:8] == b"TANDEMSS", body[:8]
        # The sender's log names the transfer for what it is, not a backup.
        sent = "snapshot file download %s: %d of %d bytes sent" % (
            os.path.join(c.nodes[leader]["dir"], "data", "snapshots", name), size, size)
        log_path = os.path.join(c.nodes[leader]["dir"], "tandemd.log")
        wait_until(lambda: sent in open(log_path, errors="replace").read(), CONVERGE_TIMEOUT_S,
                   "the leader's log of the file sent")
        assert "backup download" not in open(log_path, errors="replace").read()
        # A person's certificate, even the administrator's, does not: states hold personal data.
        status, _, body = c.api(leader, "GET", path)
        assert status == 403, (status, body[:200])
        status, _, body = c.api(leader, "GET", path, context=c.tls_context(None))
        assert status == 401, (status, body[:200])
        # Names that are not a snapshot file's, and files that are not there.
        for bad in ("..%2Fraft%2Fmetadata1", "state-1.snap", name + ".part", "x"):
            status, _, body = c.api(leader, "GET", "/v1/node/snapshots/" + bad, context=node_ctx)
            assert status == 400, (bad, status, body[:200])
            assert b"not a snapshot file name" in body, body
        missing = "state-%020d-%s.snap" % (1, "0" * 16)
        status, _, body = c.api(leader, "GET", "/v1/node/snapshots/" + missing, context=node_ctx)
        assert status == 404, (status, body[:200])
        json.loads(body)
        check_no_crash(c, leader)


def test_snapshot_file_nobody_has_stops_the_installer_cleanly():
    """A reference whose file no member can give (here removed on every member): the installer
    tries until snapshot_fetch_timeout_s, then stops with exit status 70 before raft stores the
    install, so that its next start catches up afresh, and it does once a file is there again."""
    settings = dict(FILE_SETTINGS, snapshot_fetch_timeout_s=3)
    with Cluster(TOPOLOGY, settings=settings) as c:
        leader = settled_leader(c)
        wiped = non_witness_followers(c, leader)[0]
        written = sequential_writes(c, leader, "a/", PREFILL_WRITES)
        converge_watching(c, c.names, wiped)
        c.stop(wiped)
        data = os.path.join(c.nodes[wiped]["dir"], "data")
        shutil.rmtree(data)
        os.makedirs(data)
        for name in c.live():
            for f in snapshot_dir_files(c, name)[0]:
                os.unlink(os.path.join(c.nodes[name]["dir"], "data", "snapshots", f))
        try:
            c.start(wiped)
        except ClusterError:
            pass  # it may stop before the start script looks
        pid = c.nodes[wiped]["pid"] or int(open(os.path.join(
            c.nodes[wiped]["dir"], "tandemd.pid")).read())
        wait_until(lambda: not pid_alive(pid), 60, "%s to give up the install" % wiped)
        assert not SUBREAPER or exit_code(pid) == 70, exit_code(pid)
        tail = c.log_tail(wiped, 200)
        assert "cannot install the snapshot raft received" in tail, tail
        assert "not fetched from any member" in tail, tail
        assert "AddressSanitizer" not in tail and "runtime error" not in tail, tail
        # The leader snapshots again (a file it has); the node's next start installs it.
        written.update(sequential_writes(c, leader, "b/", 2 * SETTINGS["snapshot_threshold"]))
        wait_until(lambda: snapshot_dir_files(c, leader)[0], CONVERGE_TIMEOUT_S,
                   "a new snapshot file on the leader")
        c.start(wiped)
        converge_watching(c, c.names, leader)  # the wiped node's log holds its first fatal line
        assert pid_alive(c.nodes[wiped]["pid"]), c.log_tail(wiped)
        for prefix in ("a/", "b/"):
            check_has(c, wiped, {k: v for k, v in written.items() if k.startswith(prefix)}, prefix)


if __name__ == "__main__":
    print("tandemd from %s" % BIN_DIR, flush=True)
    run_tests()
