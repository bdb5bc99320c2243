#!/usr/bin/env python3
"""BCP notifications and incident reports: GET /v1/events followed through a site kill (auto
invoke and site down events, replicated seqs equal across nodes), resuming with Last-Event-ID,
the gap event after a ring overflow, the stream limit, bcp_event_command (its stdin, and a hung
one killed after its timeout while the node stays healthy), and the replicated incident report
of an auto invoke on every node, a planned one reported by the old leader, a forced one, and a
drill's result event."""

import http.client as httpclient
import json
import os
import re
import shutil
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bcp_load import Load, bcp_status, site_names  # noqa: E402
from cluster import Cluster, http_connection, run_tests, wait_until  # noqa: E402

EVENT_TIMEOUT_S = 30     # site_down_after_ms plus an election plus the controller's steps
INCIDENT_TIMEOUT_S = 45  # the report waits for the first write after the invoke, then settles
STREAM_READ_TIMEOUT_S = 30  # heartbeats come every 5 s: a silent stream is a broken one
LOAD_SETTLE_S = 1.5
PREFERS_MAX = 24         # planned decisions made to overflow a ring of 16
PREFER_TRIES_MAX = 20    # answers of 503 (a leadership transfer under way) a preference waits out
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")


class EventReader:
    """Follows GET /v1/events on one node in a thread; events are dicts {"id", "event", "data"}
    in arrival order (id is None for events without one, like "gap")."""

    def __init__(self, base_url, last_id=None, query=""):
        self.conn = http_connection(base_url, timeout=STREAM_READ_TIMEOUT_S)
        headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
        self.conn.request("GET", "/v1/events" + query, headers=headers)
        self.sock = self.conn.sock  # the response keeps it after the connection lets go
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.content_type = self.resp.getheader("Content-Type", "")
        self.events = []
        self.comments = 0
        self.closed = False
        self.lock = threading.Lock()
        self.body = b""
        if self.status == 200:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        else:
            self.body = self.resp.read()
            self.closed = True

    def _run(self):
        block = {}
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line == "":
                    if "data" in block:
                        event = {"id": block.get("id"), "event": block.get("event"),
                                 "data": json.loads(block["data"])}
                        with self.lock:
                            self.events.append(event)
                    block = {}
                else:
                    name, _, value = line.partition(": ")
                    block[name] = value
        except (OSError, ValueError, AttributeError):
            pass  # closed by close(), or by the server
        self.closed = True

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def wait_for(self, what, predicate, timeout=EVENT_TIMEOUT_S):
        wait_until(lambda: any(predicate(e) for e in self.snapshot()), timeout, what)
        return next(e for e in self.snapshot() if predicate(e))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.resp.close()
        self.conn.close()


def of_type(kind, site=None):
    return lambda e: e["data"]["type"] == kind and (site is None or e["data"].get("site") == site)


def events_json(c, name, since=None):
    query = "?format=json" + ("" if since is None else "&since=%d" % since)
    return c.get_json(name, "/v1/events" + query)


def check_event_fields(event, node):
    data = event["data"]
    assert event["id"] is not None and int(event["id"]) == data["seq"], event
    assert event["event"] == data["type"], event
    assert RFC3339.match(data["time"]), data
    assert data["node"] == node and isinstance(data["epoch"], int) and data["message"], data


def steady_leader(c, settle_s=2.0):
    """The leader, once it is outside the witness and the same for settle_s with the site
    controller idle (after a drill, leadership may still be on its way back); else None."""
    first = c.leader()
    time.sleep(settle_s)
    status = c.get_json(first, "/v1/bcp/status")
    if c.leader() != first or c.nodes[first]["site"] == "witness" or \
            status["controller"]["state"] != "idle":
        return None
    return first


def survivors_and_victim(c):
    """The site to kill: the non-witness site without the (steady) leader, so writes keep
    landing and the leader that decides the invoke knows the victim's lag."""
    leader = wait_until(lambda: steady_leader(c), 30, "a steady leader off the witness")
    victim = "west" if c.nodes[leader]["site"] == "east" else "east"
    survivors = [n for n in c.names if c.nodes[n]["site"] != victim]
    return victim, survivors


def incident_of(c, name, site, kind="auto"):
    body = c.get_json(name, "/v1/bcp/incidents?full=1&consistency=local")
    found = [i for i in body["incidents"] if i["site"] == site and i["kind"] == kind]
    return found[0] if found else None


def check_incident(incident, victim):
    report = incident["report"]
    timeline = report["timeline"]
    for point in ("detected", "decided", "config_committed", "leader_moved",
                  "first_write_accepted"):
        assert timeline[point] is not None and RFC3339.match(timeline[point]), (point, report)
    assert report["complete"] is True, report
    assert incident["decided"] == timeline["decided"], incident
    lag = report["lag_at_invoke"]
    assert isinstance(lag["entries"], int) and lag["entries"] >= 0, report
    assert isinstance(lag["ms"], int) and lag["ms"] >= 0, report
    assert isinstance(incident["longest_write_gap_ms"], int), incident
    assert incident["longest_write_gap_ms"] >= 1, incident
    assert report["site"] == victim and report["by"].startswith("auto:"), report
    assert report["leader_was_in_site"] is False, report  # the victim never held the leader
    assert isinstance(incident["jobs_moved"], int), incident


def test_site_kill_events_resume_command_and_incident():
    sink_dir = tempfile.mkdtemp(prefix="tandem-events-")
    sink = os.path.join(sink_dir, "events.jsonl")
    settings = {"bcp_event_command": "/bin/sh -c 'cat >> %s'" % sink}
    try:
        with Cluster(topology="2+2+1", settings=settings) as c:
            victim, survivors = survivors_and_victim(c)
            watch = next(n for n in survivors if c.nodes[n]["site"] != "witness")
            other = next(n for n in survivors if n != watch)
            reader = EventReader(c.url(watch))
            assert reader.status == 200, reader.body
            assert reader.content_type.startswith("text/event-stream"), reader.content_type
            writers = [c.nodes[n]["api"] for n in survivors if c.nodes[n]["site"] != "witness"]
            load = Load(writers, "events").start()
            time.sleep(LOAD_SETTLE_S)
            for name in site_names(c, victim):
                c.kill(name)
            down = reader.wait_for("site down event", of_type("site_down", victim))
            invoke = reader.wait_for("auto invoke event", of_type("auto_invoke", victim))
            check_event_fields(down, watch)
            check_event_fields(invoke, watch)
            assert invoke["data"]["local"] is False and down["data"]["local"] is True
            assert invoke["data"]["by"].startswith("auto:"), invoke
            # Replicated events carry the same seq on every node.
            wait_until(lambda: any(e["type"] == "auto_invoke"
                                   for e in events_json(c, other)["events"]), 10, "on " + other)
            there = [e for e in events_json(c, other)["events"] if e["type"] == "auto_invoke"]
            assert there[0]["seq"] == invoke["data"]["seq"] and there[0]["node"] == other, there

            # Resuming after an event gives exactly the ones after it, in order, no gap.
            seen = reader.snapshot()
            k = min(i for i, e in enumerate(seen) if e["id"] in (down["id"], invoke["id"]))
            missed = [e["id"] for e in seen[k + 1:]]
            assert missed, seen
            again = EventReader(c.url(watch), last_id=seen[k]["id"])
            wait_until(lambda: len(again.snapshot()) >= len(missed), 10, "resumed events")
            got = [e["id"] for e in again.snapshot()][:len(missed)]
            assert got == missed, (got, missed)
            assert not any(e["event"] == "gap" for e in again.snapshot())
            again.close()

            # The incident report: on every live node, with its timeline, lag and write gap.
            for name in survivors:
                wait_until(lambda: incident_of(c, name, victim) is not None, INCIDENT_TIMEOUT_S,
                           "incident report on " + name)
                check_incident(incident_of(c, name, victim), victim)
            load.stop()
            reader.close()
            incident = incident_of(c, watch, victim)
            # The node that led when the invoke was decided wrote it, and says so in its events.
            reporter = incident["report"]["reported_by"]
            assert reporter in survivors, incident
            wait_until(lambda: any(e["type"] == "incident_reported" and e.get("site") == victim
                                   for e in events_json(c, reporter)["events"]), 10,
                       "incident event on " + reporter)
            print("MEASURED auto invoke incident: longest write gap %s ms, lag %s, timeline %s"
                  % (incident["longest_write_gap_ms"], incident["report"]["lag_at_invoke"],
                     incident["report"]["timeline"]["after_decided_ms"]), flush=True)

            # bcp_event_command got each event as one JSON line on its stdin.
            def sink_events():
                with open(sink) as f:
                    return [json.loads(line) for line in f if line.strip()]
            wait_until(lambda: any(e["type"] == "auto_invoke" and e["node"] == watch
                                   for e in sink_events()), 10, "the command's output")
            mine = [e for e in sink_events() if e["node"] == watch]
            assert any(e["seq"] == invoke["data"]["seq"] for e in mine), mine

            # tandemctl: JSON lines after a seq, a table, and the incident reports.
            # The site_down this node saw by its own probes may come before or after the
            # leader's auto invoke: start just before the earlier of the two.
            since = min(int(down["id"]), int(invoke["id"])) - 1
            out = c.ctl("-o", "json", "bcp", "events", "--since", str(since),
                        endpoints=c.url(watch)).stdout
            lines = [json.loads(line) for line in out.splitlines() if line.strip()]
            assert lines and all(e["seq"] > since for e in lines), out
            assert any(e["type"] == "auto_invoke" for e in lines), out
            table = c.ctl("bcp", "events").stdout
            assert table.splitlines()[0].split()[:3] == ["SEQ", "TIME", "TYPE"], table
            assert "auto_invoke" in table, table
            listing = json.loads(c.ctl("-o", "json", "bcp", "incidents").stdout)
            assert any(i["site"] == victim for i in listing["incidents"]), listing
            text = c.ctl("bcp", "incidents").stdout
            assert "auto invoke of site %s" % victim in text and "first_write_accepted" in text
    finally:
        shutil.rmtree(sink_dir, ignore_errors=True)


def killed_pids(log):
    return [int(p) for p in re.findall(r"bcp_event_command \(pid (\d+)\) still running", log)]


def pid_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split()[2] == "Z"  # exited, waiting for its parent to reap it


def prefer(c, name, site):
    """POST /v1/bcp/prefer through name. Each preference moves leadership to its site, so the
    next one may meet that transfer: a 503 (leadership lost, outcome unknown, or no leader yet)
    is asked again, a bounded number of times; setting a preference twice is harmless."""
    for _ in range(PREFER_TRIES_MAX):
        status, _, body = c.api(name, "POST", "/v1/bcp/prefer",
                                json.dumps({"site": site}).encode(), timeout=10)
        if status != 503:
            break
        time.sleep(0.2)
    assert status == 200, body


def test_ring_overflow_gap_stream_limit_and_hung_command():
    settings = {"bcp_events_kept": 16, "bcp_event_streams_max": 2,
                "bcp_event_command": "sleep 10", "bcp_event_command_timeout_ms": 300}
    with Cluster(topology="2+2+1", settings=settings) as c:
        name = "east-1"
        # Bad input is refused and changes nothing.
        for path, headers in (("/v1/events?since=abc", {}), ("/v1/events?format=xml", {}),
                              ("/v1/events", {"Last-Event-ID": "x"})):
            status, _, body = c.api(name, "GET", path, headers=headers)
            assert status == 400 and "error" in json.loads(body), (path, status, body)
        bad = c.ctl("bcp", "events", "--since", "abc", check=False)
        assert bad.returncode != 0 and "--since" in bad.stderr, bad

        # Planned decisions until the ring of 16 has dropped the first events.
        for i in range(PREFERS_MAX):
            prefer(c, name, "east" if i % 2 == 0 else "west")
        wait_until(lambda: events_json(c, name)["oldest_seq"] > 65536, 20, "ring overflow")
        kept = events_json(c, name)
        assert len(kept["events"]) == 16 and kept["kept"] == 16, kept
        assert events_json(c, name, since=65536)["gap"] is True

        first = EventReader(c.url(name), last_id=65536)
        assert first.status == 200, first.body
        wait_until(lambda: len(first.snapshot()) >= 2, 10, "gap then events")
        gap = first.snapshot()[0]
        assert gap["event"] == "gap" and gap["id"] is None, gap
        assert gap["data"]["since"] == 65536 and gap["data"]["oldest_kept"] > 65536, gap
        assert first.snapshot()[1]["data"]["seq"] == gap["data"]["oldest_kept"]

        # tandemctl --follow prints new events as JSON lines, resuming after --since.
        since = events_json(c, name)["last_seq"]
        follow = subprocess.Popen(
            [os.path.join(c.bin_dir, "tandemctl"), "-o", "json", "bcp", "events", "--follow",
             "--since", str(since)],
            env=dict(os.environ, TANDEM_ENDPOINTS=c.url(name), **c.ctl_env()),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: events_json(c, name)["streams"] == 2, 10, "tandemctl following")
            status, _, body = c.api(name, "POST", "/v1/bcp/prefer",
                                    json.dumps({"site": "east"}).encode(), timeout=10)
            assert status == 200, body
            # Every line is an event after since, in order, up to the new preference (a
            # leadership transfer of an earlier one may come first).
            seqs, deadline = [since], time.monotonic() + EVENT_TIMEOUT_S
            while time.monotonic() < deadline:
                ready, _, _ = select.select([follow.stdout], [], [], 1)
                line = follow.stdout.readline() if ready else ""
                event = json.loads(line) if line else None
                if event is None:
                    continue
                assert event["seq"] > seqs[-1], (seqs, line)
                seqs.append(event["seq"])
                if event["type"] == "preferred_site":
                    break
            assert len(seqs) > 1 and event is not None and event["type"] == "preferred_site", seqs
        finally:
            follow.kill()  # the process this test started, by its pid
            follow.communicate(timeout=10)
        wait_until(lambda: events_json(c, name)["streams"] == 1, 10, "tandemctl gone")

        # Two streams at most: the third is refused with a JSON answer.
        second = EventReader(c.url(name))
        assert second.status == 200
        third = EventReader(c.url(name))
        assert third.status == 503 and "bcp_event_streams_max" in json.loads(third.body)["error"]
        first.close()
        second.close()
        wait_until(lambda: events_json(c, name)["streams"] == 0, 10, "streams closed")
        assert EventReader(c.url(name)).status == 200

        # The hung command was killed after its timeout, by its pid; the node stays healthy.
        wait_until(lambda: events_json(c, name)["command"]["timeouts"] >= 2, 20, "kills")
        pids = killed_pids(c.log_tail(name, 400))
        assert pids, c.log_tail(name, 40)
        for pid in pids:
            wait_until(lambda: pid_gone(pid), 5, "killed command %d gone" % pid)
        assert c.status(name)["node"]["name"] == name
        status, _, body = c.api(name, "PUT", "/v1/kv/after-hung-command", b"ok", timeout=10)
        assert status == 200, body
        assert c.kv_get(name, "after-hung-command") is not None


def test_drill_result_event_and_planned_invoke_incident():
    with Cluster(topology="2+2+1") as c:
        # A drill tells its result on the node that ran it, and makes no incident report.
        status, _, body = c.api("east-1", "POST", "/v1/bcp/drill",
                                json.dumps({"site": "west"}).encode(), timeout=120)
        assert status == 200 and json.loads(body)["ok"] is True, body
        results = [e for e in events_json(c, "east-1")["events"] if e["type"] == "drill_result"]
        assert results and results[-1]["site"] == "west" and "passed" in results[-1]["message"]
        assert results[-1]["local"] is True, results
        types = [e["type"] for e in events_json(c, "west-1")["events"]]
        assert "drill_invoke" in types and "drill_revoke" in types, types
        assert c.get_json("east-1", "/v1/bcp/incidents")["incidents"] == []

        # A planned invoke of the leader's site: the old leader reports it after leadership left.
        # Leadership kept in east by preference, so it cannot move away before the invoke.
        site, other = "east", "west"
        status, _, body = c.api("east-1", "POST", "/v1/bcp/prefer",
                                json.dumps({"site": site}).encode(), timeout=10)
        assert status == 200, body
        leader = wait_until(lambda: c.nodes[steady_leader(c) or "witness-1"]["site"] == site and
                            c.leader(), 30, "a steady leader in " + site)
        load = Load([c.nodes[n]["api"] for n in site_names(c, other)], "planned").start()
        time.sleep(LOAD_SETTLE_S)
        out = json.loads(c.ctl("-o", "json", "bcp", "invoke", site, "--reason", "test").stdout)
        assert out["site"]["state"] == "invoked", out
        for name in c.names:
            wait_until(lambda: incident_of(c, name, site, "planned") is not None,
                       INCIDENT_TIMEOUT_S, "planned incident on " + name)
        load.stop()
        incident = incident_of(c, "witness-1", site, "planned")
        report = incident["report"]
        assert report["leader_was_in_site"] is True and report["leader_before"] == leader, report
        assert report["reported_by"] == leader and report["leader_after"] != leader, report
        assert report["complete"] is True and isinstance(report["lag_at_invoke"]["entries"], int)
        assert all(report["timeline"][p] is not None for p in ("config_committed", "leader_moved",
                                                               "first_write_accepted")), report
        print("MEASURED planned invoke incident: longest write gap %s ms, timeline %s"
              % (incident["longest_write_gap_ms"], report["timeline"]["after_decided_ms"]),
              flush=True)


def test_forced_invoke_incident_and_event():
    """Quorum lost (async mode, primary site killed): the forced invoke is an event on the
    survivors and gets its incident report, with the lag honestly unknown."""
    with Cluster(topology="2+2-async") as c:
        c.leader()
        west, east = site_names(c, "west"), site_names(c, "east")
        wait_until(lambda: all(n["home_role"] != "unknown" for s in bcp_status(c, west[0])["sites"]
                               for n in s["nodes"]), 10, "home roles recorded")
        c.script("stop-site", c.dir, "east", "--kill")
        for name in east:
            c.nodes[name]["pid"] = None
        c.ctl("bcp", "invoke", "east", "--force", endpoints=[c.url(west[0])])
        c.leader(among=west, timeout=30)
        load = Load([c.url(w) for w in west], "forced").start()
        for name in west:
            wait_until(lambda: incident_of(c, name, "east", "forced") is not None,
                       INCIDENT_TIMEOUT_S, "forced incident on " + name)
        load.stop()
        report = incident_of(c, west[1], "east", "forced")["report"]
        assert report["by"].startswith("forced:") and report["complete"] is True, report
        assert report["lag_at_invoke"]["entries"] is None, report  # the old leader's view is gone
        assert all(report["timeline"][p] is not None for p in ("decided", "config_committed",
                                                               "first_write_accepted")), report
        for name in west:
            types = [e["type"] for e in events_json(c, name)["events"]]
            assert "forced_invoke" in types, (name, types)


if __name__ == "__main__":
    run_tests()
