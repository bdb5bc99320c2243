"""Integration tests of /metrics on a live 2+2+1 cluster (issue 15 item 2): every scrape passes
`promtool check metrics` (text format 0.0.4, HELP and TYPE for every family, counters named
_total, units in names); every metric deploy/prometheus/tandem-alerts.yml reads is one tandemd
exports (an alert on a metric that does not exist never fires); the series alerts use carry
real values (leader known, leader changes, the raft log write and LMDB commit histograms,
per-site members reached, certificate expiry, the audit chain's verdict); a killed leader shows as a leader
change and a member less reached; and a record tampered with in a stopped node's store shows,
once it restarts, as tandem_audit_chain_ok 0 naming that record (TandemAuditChainBroken)."""

import datetime
import json
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "alerts"))
import check_alerts  # noqa: E402
from cluster import Cluster, run_tests, wait_until  # noqa: E402
from test_audit import audit_records, heads, tamper  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
WRITES = 30
SYNC_WAIT_S = 15  # the store syncs about once a second after a commit
TAMPER_KEY = "metrics-tamper-5c1e"  # unique bytes to find the audit record by in the LMDB file
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


class Scrape:
    """One /metrics answer: families {name: type}, helps {name: text}, samples
    {"name{labels}": value} and the text."""

    def __init__(self, text):
        self.text = text
        self.families, self.helps, self.samples = {}, {}, {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                assert name not in self.families, "TYPE twice for %s" % name
                self.families[name] = kind
            elif line.startswith("# HELP "):
                name, help_text = line[len("# HELP "):].split(" ", 1)
                assert name not in self.helps, "HELP twice for %s" % name
                self.helps[name] = help_text
            elif line:
                m = SAMPLE.match(line)
                assert m, "not a sample line: %r" % line
                self.samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))

    def family_of(self, name):
        """The family a sample or metric name belongs to (a histogram's _bucket, _sum, _count)."""
        if name in self.families:
            return name
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        return base if self.families.get(base) == "histogram" else None

    def histogram(self, name, labels=""):
        """([(le, cumulative count)], sum, count) of histogram name."""
        buckets = []
        for key, value in self.samples.items():
            m = re.match(r'^%s_bucket\{%sle="([^"]+)"\}$' % (re.escape(name), re.escape(labels)),
                         key)
            if m:
                buckets.append((float(m.group(1)), value))
        buckets.sort()
        suffix = "{%s}" % labels.rstrip(",") if labels else ""
        return buckets, self.samples[name + "_sum" + suffix], self.samples[name + "_count" + suffix]


def scrape(c, name):
    status, headers, body = c.api(name, "GET", "/metrics")
    assert status == 200, (status, body[:200])
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), dict(headers)
    return Scrape(body.decode())


def promtool_lint(text):
    """promtool check metrics on a scrape: (exit code, what it reported)."""
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).strip()


def check_format(s, name):
    rc, out = promtool_lint(s.text)
    assert rc == 0 and out == "", "%s: promtool check metrics: %s" % (name, out)
    for family, kind in s.families.items():
        assert family in s.helps, "%s: no HELP for %s" % (name, family)
        assert kind in ("gauge", "counter", "histogram"), (family, kind)
        assert (kind == "counter") == family.endswith("_total"), (family, kind)
    for key in s.samples:
        assert s.family_of(key.split("{")[0]) is not None, "%s: %s has no TYPE" % (name, key)


def check_histogram(s, name, labels=""):
    buckets, total, count = s.histogram(name, labels)
    assert len(buckets) >= 10 and buckets[-1][0] == float("inf"), buckets
    counts = [n for _, n in buckets]
    assert counts == sorted(counts), "%s buckets are not cumulative: %s" % (name, buckets)
    assert counts[-1] == count and count > 0 and total > 0, (name, buckets, total, count)
    return count


def thread_nices(pid):
    """{tid: nice} of every thread of pid (/proc/PID/task/TID/stat field 19); the main thread
    (tid == pid) runs tandemd's event loop."""
    nices = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        nices[int(tid)] = int(fields[16])  # field 19 of stat; fields[0] is field 3
    return nices


def rfc3339_s(text):
    t = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def test_scrapes_lint_and_export_what_the_alerts_read():
    rules = check_alerts.load(os.path.join(ROOT, check_alerts.RULES))
    used = check_alerts.rule_metric_names(rules)
    assert len(used) >= 10, used
    with Cluster(topology="2+2+1") as c:
        leader = c.settled_leader()
        for i in range(WRITES):
            c.kv_put(leader, "metrics/%d" % i, b"x")
        follower = next(n for n in c.names if n != leader and c.nodes[n]["site"] != "witness")
        for name in (leader, follower):  # the writes' commits synced, within about a second
            wait_until(lambda: c.metric(name, "tandem_lmdb_syncs_total") >= 1, SYNC_WAIT_S,
                       "%s synced its state store" % name)
        for name in (leader, follower):
            started = time.monotonic()
            s = scrape(c, name)
            print("MEASURED %s: one scrape %.1f ms, %d families, %d samples, %d bytes" %
                  (name, (time.monotonic() - started) * 1000, len(s.families), len(s.samples),
                   len(s.text)), flush=True)
            check_format(s, name)
            missing = sorted(m for m in used if s.family_of(m) is None)
            assert not missing, "%s: the alert rules read metrics tandemd does not export: %s" % (
                name, missing)
            # The leadership series the no-leader and leader-change alerts read.
            assert s.samples["tandem_raft_has_leader"] == 1, name
            assert s.samples["tandem_raft_leader"] == (1 if name == leader else 0), name
            assert s.samples["tandem_raft_leader_changes_total"] >= 1, name
            # Every node writes the log (followers too): real observations, cumulative buckets.
            assert check_histogram(s, "tandem_raft_log_append_duration_seconds") >= 1
            assert check_histogram(s, "tandem_apply_duration_seconds") >= WRITES
            assert check_histogram(s, "tandem_lmdb_commit_duration_seconds") >= 1
            # The store's commits are synced on the thread pool (waited for above).
            syncs = check_histogram(s, "tandem_lmdb_sync_duration_seconds")
            assert syncs == s.samples["tandem_lmdb_syncs_total"] >= 1, (name, syncs)
            assert s.samples["tandem_state_rebuilt"] == 0, name
            # Nothing this small is snapshotted here; the gauge is there, 0 or 1.
            assert s.samples["tandem_snapshot_taking"] in (0, 1), name
            # That sync ran on a pool thread at the background priority (pool_nice, 10 by
            # default), which it gave back afterwards: between pieces of work the pool threads
            # are at the loop's, the process's own (the runner's, inherited; tests run as root).
            assert s.samples["tandem_pool_work_lowered_total"] >= 1, name
            assert s.samples["tandem_pool_nice_failures_total"] == 0, name
            assert s.samples["tandem_pool_threads_stuck_low"] == 0, name
            pid = c.nodes[name]["pid"]
            nices = thread_nices(pid)
            loop_nice = nices.pop(pid)
            assert loop_nice == os.nice(0), (name, loop_nice)
            # Low only while a piece of bulk work runs (a thread kept low would hold the pool's
            # locks at that priority, and the loop would wait behind it).
            wait_until(lambda: set(thread_nices(pid).values()) == {loop_nice}, 10,
                       "every thread of %s back at nice %d" % (name, loop_nice))
            # The loop-lag timer ticks every 10 ms from the start: many observations, and the
            # longest one lies between their mean and their sum.
            lag_count = check_histogram(s, "tandem_loop_lag_seconds")
            assert lag_count >= 10, (name, lag_count)
            lag_sum = s.samples["tandem_loop_lag_seconds_sum"]
            lag_max = s.samples["tandem_loop_lag_max_seconds"]
            assert s.families["tandem_loop_lag_max_seconds"] == "gauge"
            assert lag_sum / lag_count <= lag_max + 1e-9 <= lag_sum + 2e-9, (name, lag_max)
            # The loop thread's wait for a CPU (schedstat): some, on a machine running 5 nodes.
            assert s.families["tandem_loop_cpu_wait_seconds_total"] == "counter"
            assert 0 < s.samples["tandem_loop_cpu_wait_seconds_total"] < 3600, name
            # What the loop held itself is part of the lag: at most the longest gap.
            assert s.families["tandem_loop_held_max_seconds"] == "gauge"
            assert 0 <= s.samples["tandem_loop_held_max_seconds"] <= lag_max, name
            # Per site: members and members reached (all of them, on a healthy cluster).
            for site, members in (("east", 2), ("west", 2), ("witness", 1)):
                assert s.samples['tandem_site_nodes{site="%s"}' % site] == members, (name, site)
                assert s.samples['tandem_site_nodes_reachable{site="%s"}' % site] == members
            assert s.samples["tandem_fenced"] == 0 and s.samples["tandem_quarantined"] == 0
            # Backup families are there before any backup exists (their alerts need the names).
            for family in ("tandem_backup_age_seconds", "tandem_backups",
                           "tandem_backup_verification_failures_total",
                           "tandem_backups_lost_reported_total"):
                assert family in s.families, (name, family)
            # This node's certificate: seconds until its notAfter, as /v1/status dates it.
            not_after = rfc3339_s(c.status(name)["tls"]["cert"]["not_after"])
            expiry = s.samples['tandem_tls_cert_expiry_seconds{cert="node"}']
            assert abs(expiry - (not_after - time.time())) < 30, (name, expiry, not_after)

        # The audit chain: the walk at start gives a verdict; a verify on demand becomes it.
        wait_until(lambda: scrape(c, follower).samples.get("tandem_audit_chain_ok") == 1, 30,
                   "the first audit chain walk on %s" % follower)
        status, _, body = c.api(follower, "GET", "/v1/audit/verify?consistency=local")
        assert status == 200, (status, body)
        verdict = json.loads(body)
        assert verdict["ok"] is True and verdict["records"] >= 1, verdict
        s = scrape(c, follower)
        assert s.samples["tandem_audit_chain_ok"] == 1, s.samples
        assert s.samples["tandem_audit_chain_records"] == verdict["records"], (verdict, s.samples)
        assert 0 <= s.samples["tandem_audit_chain_verified_age_seconds"] < 10, s.samples
        assert s.samples["tandem_audit_chain_broken_at"] == 0


def test_a_killed_leader_is_a_leader_change_and_a_member_less_reached():
    with Cluster(topology="2+2+1") as c:
        old = c.settled_leader()
        site = c.nodes[old]["site"]
        survivor = next(n for n in c.names if c.nodes[n]["site"] not in (site, "witness"))
        before = scrape(c, survivor).samples
        assert before['tandem_site_nodes_reachable{site="%s"}' % site] == 2, before
        c.kill(old)
        new = c.leader(timeout=30)
        assert new != old

        def seen():
            s = scrape(c, new).samples
            return (s['tandem_site_nodes_reachable{site="%s"}' % site] == 1 and
                    s['tandem_peer_reachable{peer="%s",via="raft"}' % old] == 0 and s) or None
        after = wait_until(seen, 30, "the new leader %s to see %s unreachable" % (new, old))
        # (The site controller may move leadership on to the dead leader's site partner.)
        assert after["tandem_raft_has_leader"] == 1, after
        assert after['tandem_site_nodes{site="%s"}' % site] == 2, after  # still a member
        # The survivor saw the leader change from old to the new one.
        changes = scrape(c, survivor).samples["tandem_raft_leader_changes_total"]
        assert changes >= before["tandem_raft_leader_changes_total"] + 1, (before, changes)
        # One east voter of five is gone: four reached, three make a quorum.
        assert after["tandem_failure_tolerance"] == 1, after


def test_a_tampered_audit_record_shows_as_a_broken_chain():
    with Cluster(topology="3") as c:
        leader = c.settled_leader()
        follower = next(n for n in c.names if n != leader)
        c.kv_put(leader, TAMPER_KEY, b"x")
        c.kv_put(leader, "metrics-after", b"y")
        wait_until(lambda: len({json.dumps(h, sort_keys=True) for h in heads(c).values()}) == 1,
                   30, "every node to hold the same audit head")
        tampered = next(r["seq"] for r in audit_records(c, leader)
                        if r["object"] == "/v1/kv/" + TAMPER_KEY)
        c.stop(follower)
        tamper(os.path.join(c.nodes[follower]["dir"], "data", "state", "data.mdb"),
               "/v1/kv/" + TAMPER_KEY)
        c.start(follower)

        def broken():
            s = scrape(c, follower).samples
            return s.get("tandem_audit_chain_ok") == 0 and s or None
        s = wait_until(broken, 30, "the walk at start on %s to find the tampered record" %
                       follower)
        assert s["tandem_audit_chain_broken_at"] == tampered, (s, tampered)
        assert scrape(c, leader).samples["tandem_audit_chain_ok"] == 1  # the leader's is intact


if __name__ == "__main__":
    run_tests()
