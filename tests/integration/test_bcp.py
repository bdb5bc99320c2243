"""Integration tests of dual-site BCP on a real 2+2+1 cluster: the site table and bcp status,
a planned invoke under load with no failed write, revoke with failback, an automatic invoke when
the leader's whole site is killed (measuring the write gap), and a drill whose report says
rpo_writes 0. The measured gaps are printed as "MEASURED ..." lines."""

import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bcp_load import Load, bcp_status, roles, site_names, site_of  # noqa: E402
from cluster import Cluster, run_tests, wait_until  # noqa: E402

TAKEOVER_TIMEOUT_S = 20
AUTO_INVOKE_SLACK_S = 15  # site_down_after_ms plus an election plus the controller's steps
LOAD_SETTLE_S = 1.5


def leader_site(c, via):
    status = c.status(via)
    return status["leader"] and c.nodes[status["leader"]["name"]]["site"]


def wait_site_state(c, via, site, state, timeout=TAKEOVER_TIMEOUT_S):
    return wait_until(lambda: site_of(bcp_status(c, via), site)["state"] == state and
                      bcp_status(c, via), timeout, "site %s %s" % (site, state))


def make_leader_site(c, site):
    """Prefers site for leadership and waits until the controller moved leadership there."""
    c.ctl("bcp", "prefer", site)
    wait_until(lambda: leader_site(c, c.names[0]) == site, TAKEOVER_TIMEOUT_S,
               "leadership on %s" % site)


def test_status_lists_sites_and_nodes():
    with Cluster(topology="2+2+1") as c:
        leader = c.leader()
        def registered():
            status = bcp_status(c, leader)
            homes = all(n["home_role"] != "unknown" for s in status["sites"] for n in s["nodes"])
            return len(status["sites"]) == 3 and homes and status
        status = wait_until(registered, 10, "three registered sites and the home roles")
        for site in ("east", "west", "witness"):
            s = site_of(status, site)
            assert s["state"] == "active" and s["epoch"] == 1, s
            assert s["witness"] == (site == "witness"), s
            assert sorted(n["name"] for n in s["nodes"]) == sorted(site_names(c, site)), s
            assert all(n["role"] == "voter" and n["home_role"] == "voter" for n in s["nodes"]), s
            assert isinstance(s["lag_entries"], int) and isinstance(s["lag_ms"], int), s
        assert status["leader"]["name"] == leader
        assert [d["action"] for d in status["decisions"]][:3] == ["register"] * 3, status
        out = c.ctl("-o", "json", "bcp", "status").stdout
        assert {s["name"] for s in json.loads(out)["sites"]} == {"east", "west", "witness"}
        table = c.ctl("bcp", "status").stdout
        assert "witness  active (witness)" in table, table
        assert c.ctl("bcp", "invoke", "witness", check=False).returncode == 1
        assert c.ctl("bcp", "invoke", "nowhere", check=False).returncode == 1
        assert c.ctl("bcp", "revoke", "east", check=False).returncode == 1  # not invoked
        assert site_of(bcp_status(c, leader), "east")["state"] == "active"


def test_planned_invoke_under_load_then_revoke_with_failback():
    with Cluster(topology="2+2+1") as c:
        make_leader_site(c, "east")
        load = Load([c.nodes[n]["api"] for n in c.names], "planned").start()
        time.sleep(LOAD_SETTLE_S)
        started = time.monotonic()
        out = json.loads(c.ctl("-o", "json", "bcp", "invoke", "east", "--reason", "test").stdout)
        took = time.monotonic() - started
        assert out["complete"] is True, out
        assert out["site"]["state"] == "invoked" and out["site"]["epoch"] == 2, out
        assert c.nodes[out["leader"]["name"]]["site"] == "west", out
        time.sleep(LOAD_SETTLE_S)
        invoke_gap = load.max_gap_ms()
        status = bcp_status(c, "west-1")
        assert set(roles(status, "east").values()) == {"standby"}, status
        assert set(roles(status, "west").values()) == {"voter"}, status
        actions = [(d["action"], d["member"]) for d in status["decisions"]]
        assert ("invoke", "") in actions and ("demote", "east-1") in actions, actions
        assert any(a == "transfer" for a, _ in actions), actions
        # Revoke with failback: the east nodes vote again, leadership returns to east.
        started = time.monotonic()
        out = json.loads(c.ctl("-o", "json", "bcp", "revoke", "east", "--failback").stdout)
        failback_s = time.monotonic() - started
        assert out["complete"] is True and out["site"]["state"] == "active", out
        assert out["site"]["epoch"] == 3 and c.nodes[out["leader"]["name"]]["site"] == "east"
        time.sleep(LOAD_SETTLE_S)
        load.stop()
        summary = load.summary()
        print("MEASURED planned invoke: ctl %.0f ms, max write gap %d ms; revoke+failback %.0f"
              " ms; load %s" % (took * 1000, invoke_gap, failback_s * 1000, summary), flush=True)
        assert summary["failed"] == 0, (summary, load.failed[:5])
        assert summary["acked"] > 500, summary
        status = bcp_status(c, "east-1")
        assert set(roles(status, "east").values()) == {"voter"}, status
        applied, _ = c.wait_converged()
        for key, _ in load.acked[::50]:
            assert c.kv_get("west-2", key, local=True) is not None, key
        assert len(set(d["state_digest"] for d in c.converged_digests().values())) == 1


def test_site_kill_with_leader_auto_invokes():
    with Cluster(topology="2+2+1") as c:
        make_leader_site(c, "east")
        survivors = [n for n in c.names if c.nodes[n]["site"] != "east"]
        load = Load([c.nodes[n]["api"] for n in survivors], "kill").start()
        time.sleep(LOAD_SETTLE_S)
        killed_at = time.monotonic()
        for name in site_names(c, "east"):
            c.kill(name)
        status = wait_site_state(c, "west-1", "east", "invoked",
                                 timeout=AUTO_INVOKE_SLACK_S)
        invoked_s = time.monotonic() - killed_at
        east = site_of(status, "east")
        assert east["reason"] == "site unreachable" and east["by"].startswith("auto:"), east
        wait_until(lambda: set(roles(bcp_status(c, "west-1"), "east").values()) == {"standby"},
                   TAKEOVER_TIMEOUT_S, "east voters demoted")
        time.sleep(LOAD_SETTLE_S)
        gap = load.max_gap_ms(since=killed_at - 1)
        load.stop()
        summary = load.summary()
        print("MEASURED site kill (leader in east): max write gap %d ms, auto-invoke after %.1f s;"
              " load %s" % (gap, invoked_s, summary), flush=True)
        assert summary["failed"] == 0, (summary, load.failed[:5])
        assert gap < 10000, gap
        assert c.nodes[c.leader(among=survivors)]["site"] == "west"
        # The east nodes come back as standbys of an invoked site, then revoke brings them back.
        for name in site_names(c, "east"):
            c.start(name)
        out = json.loads(c.ctl("-o", "json", "bcp", "revoke", "east").stdout)
        assert out["site"]["state"] in ("recovering", "active"), out
        status = wait_site_state(c, "west-1", "east", "active")
        wait_until(lambda: set(roles(bcp_status(c, "west-1"), "east").values()) == {"voter"},
                   TAKEOVER_TIMEOUT_S, "east voters back")
        c.wait_converged()
        for key, _ in load.acked[::40]:
            assert c.kv_get("east-1", key, local=True) is not None, key


def test_drill_reports_rpo_zero_and_dry_run_changes_nothing():
    with Cluster(topology="2+2+1") as c:
        leader = c.leader()
        wait_until(lambda: all(n["home_role"] == "voter" for s in bcp_status(c, leader)["sites"]
                               for n in s["nodes"]), 10, "sites and home roles recorded")
        for job_id in ("DW1", "DW2"):
            body = json.dumps({"id": job_id, "client": "acme", "kind": "scan", "site": "west",
                               "effort": 3}).encode()
            status, _, answer = c.api(leader, "POST", "/v1/jobs", body)
            assert status in (200, 201), (status, answer)
        c.wait_converged()
        before = bcp_status(c, leader)
        dry = json.loads(c.ctl("-o", "json", "-e", c.nodes[leader]["api"], "bcp", "drill", "west",
                               "--dry-run").stdout)
        assert dry["dry_run"] is True, dry
        assert {(x["member"], x["to"]) for x in dry["role_changes"]} == \
            {("west-1", "standby"), ("west-2", "standby")}, dry
        assert dry["jobs_moved"] == 2 and sorted(dry["jobs"]) == ["DW1", "DW2"], dry
        after = bcp_status(c, leader)
        assert [s["epoch"] for s in after["sites"]] == [s["epoch"] for s in before["sites"]]
        assert after["decisions"] == before["decisions"]
        report = json.loads(c.ctl("-o", "json", "bcp", "drill", "west", timeout=180).stdout)
        print("MEASURED drill of west: rto_ms %d, takeover %d ms, failback %d ms, probe %s" %
              (report["rto_ms"], report["takeover_ms"], report["failback_ms"], report["probe"]),
              flush=True)
        assert report["ok"] is True, report
        assert report["rpo_writes"] == 0 and report["digests_equal"] is True, report
        assert report["probe"]["acked"] > 50 and report["probe"]["verified"] == \
            report["probe"]["acked"], report
        assert report["jobs_moved"] == 2 and report["jobs_returned"] == 2, report
        events = [e["event"] for e in report["timeline"]]
        assert any(e.startswith("takeover complete") for e in events), events
        assert any(e.startswith("failback complete") for e in events), events
        drills = json.loads(c.ctl("-o", "json", "bcp", "drills").stdout)["drills"]
        assert drills[0]["id"] == report["id"] and drills[0]["rpo_writes"] == 0, drills
        assert drills[0]["report"]["timeline"] == report["timeline"], drills[0]
        west = site_of(bcp_status(c, "east-1"), "west")
        assert west["state"] == "active" and west["epoch"] == 3, west
        assert "d" in c.ctl("bcp", "drills").stdout


if __name__ == "__main__":
    run_tests()
