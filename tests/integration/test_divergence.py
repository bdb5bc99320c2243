"""Integration test of `member rejoin` keeping a fenced node's data: on a real 2+2 cluster the
east leader accepts writes the west nodes never get (west is down, so nothing can commit), east
is then lost, west comes back and is recovered by a forced invoke. When east returns fenced,
`member rejoin` moves each east node's data into DATA_DIR/fenced-1-<time>/ (raft log, LMDB
store, markers) instead of wiping it, with a divergence.json that names the fork point and the
keys, the job and the box written only on the lost side (never a value or personal data); `member divergence` shows it, the rejoin is a recorded
decision, and every write acknowledged to a client survives."""

import json
import os
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bcp_load import bcp_status, site_names  # noqa: E402
from cluster import Cluster, ClusterError, run_tests, wait_until  # noqa: E402

RECOVER_TIMEOUT_S = 30
ACKED_WRITES = 20
LOST_WRITES = 5
LOST_PUT_TIMEOUT_S = 3  # a write that cannot commit is abandoned by the client after this


def data_dir(c, name):
    return os.path.join(c.nodes[name]["dir"], "data")


def fenced_folders(c, name):
    return sorted(d for d in os.listdir(data_dir(c, name)) if d.startswith("fenced-"))


LOST_REQUESTS = [("PUT", "/v1/kv/lost-%d" % i, b"only-east") for i in range(LOST_WRITES)] + [
    ("POST", "/v1/jobs", {"id": "JOB-LOST", "client": "acme", "kind": "scan", "site": "east",
                          "individual_number": "123456789012"}),
    ("POST", "/v1/boxes", {"id": "BOX-LOST", "ledger": "L-9", "client": "acme", "site": "east"}),
]


def write_without_quorum(c, name, method, path, body):
    """A write the leader appends but cannot commit: the client never gets an ok."""
    try:
        status, _, answer = c.api(name, method, path, body=body, timeout=LOST_PUT_TIMEOUT_S)
    except OSError:
        return  # timed out waiting: not acknowledged
    assert status not in (200, 201), (path, status, answer)


def lose_writes_on_east(c, leader, west):
    """Stops west, sends writes to the east leader (appended, never committed), then kills
    east: the writes exist only in east's logs. (Pausing west with SIGSTOP is not enough: the
    leader's appends wait in west's socket buffers and arrive when it resumes.)"""
    for name in west:
        c.stop(name)
    threads = [threading.Thread(target=write_without_quorum, args=(c, leader) + r)
               for r in LOST_REQUESTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LOST_PUT_TIMEOUT_S + 5)
    assert not any(t.is_alive() for t in threads)


# The lost writes must reach the east leader's log before it steps down for want of a quorum,
# one election timeout after west stops: a wide margin over the default's 400 ms on a loaded
# machine (CI once lost JOB-LOST to a leader already stepped down).
LOST_WRITES_SETTINGS = {"election_timeout_ms": 2000}


def test_rejoin_keeps_the_data_and_reports_the_divergence():
    with Cluster(topology="2+2", settings=LOST_WRITES_SETTINGS) as c:
        leader = c.leader()
        east, west = site_names(c, "east"), site_names(c, "west")
        wait_until(lambda: all(n["home_role"] != "unknown" for s in bcp_status(c, leader)["sites"]
                               for n in s["nodes"]), 10, "home roles recorded")
        if leader not in east:
            c.ctl("member", "transfer-leader", east[0])
            leader = c.leader(among=c.names)
        assert leader in east, leader
        acked = ["acked-%d" % i for i in range(ACKED_WRITES)]
        for key in acked:
            c.kv_put(leader, key, key.encode())
        lose_writes_on_east(c, leader, west)
        for name in east:
            c.kill(name)
        for name in west:
            c.start(name)
        wait_until(lambda: all(c.status(n)["leader"] is None for n in west), 10, "no leader")
        report = json.loads(c.ctl("-o", "json", "bcp", "invoke", "east", "--force",
                                  endpoints=[c.url(west[0])]).stdout)
        assert report["epoch"] == 2, report
        new_leader = c.leader(among=west, timeout=RECOVER_TIMEOUT_S)
        c.kv_put(new_leader, "after-force", b"y")
        acked.append("after-force")
        # The forced record carries the seed's history (used below for the fork point).
        wait_until(lambda: bcp_status(c, new_leader)["sites"] and
                   any(s["name"] == "east" and s["state"] == "invoked"
                       for s in bcp_status(c, new_leader)["sites"]),
                   RECOVER_TIMEOUT_S, "the forced invoke recorded")

        for name in east:
            c.start(name)
        for name in east:
            wait_until(lambda n=name: c.status(n)["node"]["fenced"], 15, "%s fenced" % name)
            assert fenced_folders(c, name) == [], fenced_folders(c, name)
            # Before any re-seed the node has no report: a 404 that names it.
            status, _, body = c.api(name, "GET", "/v1/node/divergence",
                                    context=c.tls_context(name))  # /v1/node/: node certificates
            assert status == 404 and name.encode() in body, (status, body)

        # One rejoin answered as JSON, the other as the table people read.
        # Who asked is the certificate's user (admin here), recorded in the decision.
        out = json.loads(c.ctl("-o", "json", "member", "rejoin", east[0],
                               endpoints=[c.url(w) for w in west]).stdout)
        assert out["member"]["role"] == "standby" and out["decision_recorded"] is True, out
        assert out["data_kept_at"].startswith(
            os.path.realpath(data_dir(c, east[0])) + "/fenced-1-"), out
        assert out["divergence"]["entries_after_fork"] >= 1, out
        assert out["divergence"]["fork"]["certainty"] == "exact", out
        assert out["divergence"]["keys"] >= 1 and out["divergence"]["bytes_kept"] > 0, out
        p = c.ctl("member", "rejoin", east[1], endpoints=[c.url(w) for w in west])
        print(p.stdout, flush=True)
        assert "never deleted automatically" in p.stdout, p.stdout
        assert os.path.realpath(data_dir(c, east[1])) + "/fenced-1-" in p.stdout, p.stdout
        assert "entries after the fork at index" in p.stdout, p.stdout

        for name in east:
            folders = fenced_folders(c, name)
            assert len(folders) == 1, folders
            folder = os.path.join(data_dir(c, name), folders[0])
            for item in ("raft", "state", "fenced", "divergence.json"):
                assert os.path.exists(os.path.join(folder, item)), (folder, os.listdir(folder))
            with open(os.path.join(folder, "fenced")) as f:
                assert f.read().strip() == "2"  # the fenced marker, exactly as it was
            assert not os.path.exists(os.path.join(folder, "epoch"))  # none at epoch 1: none kept
            with open(os.path.join(folder, "divergence.json")) as f:
                d = json.load(f)
            print("MEASURED %s divergence: fork %s, %d entries after it, keys %s" %
                  (name, d["fork"], d["entries_after_fork"], d["touched"]["keys"]), flush=True)
            assert d["node"] == name and d["old_epoch"] == 1 and d["cluster_epoch"] == 2, d
            assert d["fork"]["certainty"] == "exact" and d["fork"]["index"] > ACKED_WRITES, d
            assert d["fork"]["compared_with"]["epoch"] == 2, d
            lost = set(k for k in d["touched"]["keys"])
            assert lost and all(k.startswith("lost-") for k in lost), d["touched"]
            assert not lost & set(acked), d["touched"]
            assert d["touched"]["jobs"] == ["JOB-LOST"], d["touched"]
            assert d["touched"]["boxes"] == ["BOX-LOST"], d["touched"]
            with open(os.path.join(folder, "divergence.json"), "rb") as f:
                text = f.read()  # identifiers only: no value, no personal data
            assert b"only-east" not in text and b"123456789012" not in text
            # The lost keys really are only on the kept side.
            for key in lost:
                assert c.kv_get(new_leader, key) is None, key

            assert d["bytes_kept"] > 0, d
            table = c.ctl("member", "divergence", name, endpoints=[c.url(name)], user=name).stdout
            print(table, flush=True)
            assert folder in table and "exact" in table, table
            assert all(k in table for k in lost) and "JOB-LOST" in table, table
            via_cluster = json.loads(c.ctl("-o", "json", "member", "divergence", name,
                                           endpoints=[c.url(w) for w in west], user=name).stdout)
            assert via_cluster["node"] == name, via_cluster
            assert via_cluster["reports"][0]["folder"] == folder, via_cluster

        decisions = bcp_status(c, new_leader)["decisions"]
        rejoins = [d for d in decisions if d["action"] == "rejoin"]
        assert sorted(d["member"] for d in rejoins) == sorted(east), decisions
        assert {d["member"]: d["by"] for d in rejoins} == {east[0]: "admin",
                                                           east[1]: "admin"}, rejoins
        assert all("fenced-1-" in d["reason"] and "entries after the fork" in d["reason"]
                   for d in rejoins), rejoins

        c.wait_converged(names=c.names, timeout=RECOVER_TIMEOUT_S)
        for key in acked:
            expected = b"y" if key == "after-force" else key.encode()
            assert c.kv_get(new_leader, key) == expected, key
            assert c.kv_get(east[0], key, local=True) == expected, key
        # A later restart neither moves nor reads the kept folder.
        c.stop(east[0])
        c.start(east[0])
        wait_until(lambda: c.status(east[0])["node"]["applied_index"] > 0, 15, "east restarted")
        assert len(fenced_folders(c, east[0])) == 1


def test_unknown_nodes_and_bad_input_fail_clearly_and_change_nothing():
    with Cluster(topology="2+2") as c:
        c.leader()
        p = c.ctl("member", "divergence", "nobody", check=False)
        assert p.returncode == 3 and "nobody did not answer" in p.stderr, p.stderr
        name = c.names[0]
        p = c.ctl("member", "divergence", name, check=False, user=name)
        assert p.returncode == 1 and "no divergence reports" in p.stderr, p.stderr
        assert name in p.stderr
        # Bad input to the re-seed and the rejoin is refused and changes nothing.
        epoch = c.status(name)["node"]["epoch"]
        for body in ({"epoch": epoch + 1, "forced": "all of them"},
                     {"epoch": epoch + 1, "by": "x" * 200},
                     {"epoch": epoch + 1, "forced": [{}] * 17}):
            status, _, answer = c.api(name, "POST", "/v1/node/reseed", body=body,
                                      context=c.tls_context(name))
            assert status == 400 and b"forced" in answer, (status, answer)
        assert not os.path.exists(os.path.join(data_dir(c, name), "reseed"))
        status, _, answer = c.api(name, "POST", "/v1/members/%s/rejoin" % c.names[1],
                                  body={"by": "y" * 200})
        assert status == 400 and b"by" in answer, (status, answer)
        assert c.status(name)["node"]["epoch"] == epoch and not c.status(name)["node"]["fenced"]


def test_a_crash_half_way_through_the_move_is_finished_at_the_next_start():
    """A re-seed that crashed after moving raft/ but before state/: the next start finishes the
    move and starts empty; it never runs on the half-moved directory."""
    with Cluster(topology="2+2+1") as c:
        c.leader()
        c.kv_put(c.leader(), "kept", b"v")
        target = [n for n in site_names(c, "west") if n != c.leader()][0]
        c.wait_converged(names=c.names)
        c.stop(target)
        d = data_dir(c, target)
        folder = "fenced-1-20261205T061500Z"
        with open(os.path.join(d, "reseed"), "w") as f:
            f.write("1\naside %s\n" % folder)  # named first, as the re-seed route does
        os.mkdir(os.path.join(d, folder))
        os.rename(os.path.join(d, "raft"), os.path.join(d, folder, "raft"))  # then the crash
        c.start(target)
        wait_until(lambda: c.status(target)["node"]["last_index"] == 0, 15, "%s empty" % target)
        assert sorted(os.listdir(os.path.join(d, folder))) == [
            "divergence.json", "raft", "state"], os.listdir(os.path.join(d, folder))
        assert "reseed" not in os.listdir(d) and os.path.exists(os.path.join(d, "join"))
        with open(os.path.join(d, folder, "divergence.json")) as f:
            report = json.load(f)
        assert report["log"]["last_index"] > 0 and report["fork"]["certainty"] == "unknown"
        assert "without" in report["fork"]["reason"], report["fork"]
        # raft takes an emptied member's rejections for stale ones: a rejoin brings it back.
        # It is empty already, so only its boot id tells the process that accepts the re-seed
        # from the one after the restart: re-added before that restart, it would acknowledge
        # entries its successor no longer has (and libraft then ignores the successor's
        # rejections for stale ones: it never catches up).
        boot = c.status(target)["node"]["boot_id"]
        c.ctl("member", "rejoin", target)
        assert c.status(target)["node"]["boot_id"] != boot, "re-added before its restart"
        wait_until(lambda: c.kv_get(target, "kept", local=True) == b"v", 30,
                   "%s caught up after the rejoin" % target)


if __name__ == "__main__":
    run_tests()
