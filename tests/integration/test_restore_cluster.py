"""Restoring a whole cluster from one backup (issue 14 item 3): a TLS 2+2+1 cluster with keys,
jobs (personal data included) and boxes is backed up, and the backup seeds five new data
directories under one new cluster id (local-cluster.sh up --restore, the README's steps) that
start as one cluster: it elects a leader, every node answers the manifest's digests and counts
before any new write, personal data opens with the old cluster's key file (and a restore checked
against any other key file is refused), new writes reach all five, the BCP site table and epoch
came through. The other operator path, one restored seed node that the others join empty, works
too; a directory restored under another cluster id refuses to start in the new cluster, one whose
state is not the manifest's refuses to start at all, and directories restored without one
common id, started as one cluster each under its own id, refuse each other and elect nobody. (A
restored node under a new cluster id is refused by the old cluster's transport: test_backup.)"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, ClusterError, run_tests, wait_until  # noqa: E402
from test_backup import START_TIMEOUT_S, RestoredNode, backup_create  # noqa: E402
from test_personal_data import NUMBER, add_users, create_job, job_as  # noqa: E402

NEW_CLUSTER_ID = "restored-it-5"
KEYS = 40
JOBS = 10        # each with personal data
BOXES = 30
REPLICATE_TIMEOUT_S = 30
JOIN_TIMEOUT_S = 60


def populate(c):
    """Users (operator without personal-data, clerk with it), keys, jobs with personal data and
    boxes, written through every node; returns the job ids."""
    add_users(c)
    for i in range(KEYS):
        c.kv_put(c.names[i % len(c.names)], "k-%02d" % i, b"v%d" % i)
    jobs = ["PD-%02d" % i for i in range(JOBS)]
    for i, job in enumerate(jobs):
        create_job(c, c.names[i % len(c.names)], job)
    rows = [{"id": "B-%03d" % i, "ledger": "L-1", "client": "acme", "site": "east"}
            for i in range(BOXES)]
    status, _, body = c.api(c.names[0], "POST", "/v1/boxes", {"boxes": rows}, timeout=20)
    assert status == 201 and json.loads(body)["checked_in"] == BOXES, (status, body[:200])
    return jobs


def sites(c, name):
    """The BCP site table as (site, state, epoch) rows, from the leader's view."""
    return sorted((s["name"], s["state"], s["epoch"])
                  for s in c.get_json(name, "/v1/bcp/status")["sites"])


def restore_json(c, path, data_dir, name, *extra, check=True):
    p = c.ctl("-o", "json", "backup", "restore", path, "--data-dir", data_dir, "--name", name,
              *extra, check=check)
    return p if not check else json.loads(p.stdout)


def check_key_files(c, path, sealed):
    """A restore checked against the old cluster's key file opens every value; against one that
    does not open them it is refused and leaves nothing; without a key file it says how many
    values need the old cluster's key."""
    work = os.path.dirname(path)
    checked = restore_json(c, path, os.path.join(work, "checked", "data"), "east-1",
                           "--data-key-file", c.tls_path("data.key"))
    assert checked["personal_data"] == {"sealed": sealed, "opened": sealed, "checked": True,
                                        "key_ids": [1]}, checked
    wrong = os.path.join(work, "wrong.key")
    with open(wrong, "w") as f:
        f.write("1 %s\n" % ("ef" * 32))
    os.chmod(wrong, 0o600)
    data = os.path.join(work, "wrong", "data")
    p = restore_json(c, path, data, "east-1", "--data-key-file", wrong, check=False)
    assert p.returncode == 1 and "opens 0 of the backup's %d" % sealed in p.stderr, (
        p.returncode, p.stderr)
    assert not os.path.exists(data), os.listdir(os.path.dirname(data))
    unchecked = restore_json(c, path, os.path.join(work, "plain", "data"), "east-1")
    assert unchecked["personal_data"] == {"sealed": sealed, "opened": 0, "checked": False,
                                          "key_ids": [1]}, unchecked
    # local-cluster.sh up --restore without the old key file (a new cluster's own, random) is
    # refused before any node starts, and the directory can never be started half-restored.
    fresh = os.path.join(work, "fresh")
    try:
        c.script("up", fresh, "--restore", path)
        raise AssertionError("a cluster was restored without the personal-data key")
    except ClusterError as e:
        assert "opens 0 of the backup's %d" % sealed in str(e), e
    assert not os.path.exists(os.path.join(fresh, "nodes")), os.listdir(fresh)
    shutil.rmtree(fresh)


def seed_line(c, name):
    """The line node name logged when it seeded raft from its restored directory."""
    with open(os.path.join(c.nodes[name]["dir"], "tandemd.log"), errors="replace") as f:
        lines = [line for line in f if "restored from backup" in line]
    assert len(lines) == 1, (name, lines)
    return lines[0]


def check_restored_state(c, m):
    """Every node started on exactly the backup's state, and holds it still but for what the
    site controller may have recorded on its own (a leadership transfer off the witness is a
    replicated decision) before any client wrote."""
    for name in c.names:
        line = seed_line(c, name)
        assert ("raft seeded at index %d, term %d, with 5 member(s) under cluster id %s; "
                "state_digest %s (the backup manifest's)" % (
                    m["applied_index"], m["term"], NEW_CLUSTER_ID, m["state_digest"])) in line, (
            name, line, m)
        assert c.status(name)["node"]["cluster_id"] == NEW_CLUSTER_ID != m["cluster_id"]
    digests = c.converged_digests(c.names)
    d = digests[c.names[0]]
    assert d["counts"] == m["counts"], (d["counts"], m["counts"])
    if d["applied_index"] == m["applied_index"]:
        assert d["state_digest"] == m["state_digest"], (d, m)
        assert d["data_digest"] == m["data_digest"], (d, m)
        print("every node at the backup's index %d with its digests" % d["applied_index"])
        return
    decisions = [x for x in c.get_json(c.leader(), "/v1/bcp/status")["decisions"]
                 if x["index"] > m["applied_index"]]
    assert decisions and all(x["by"].startswith("controller:") for x in decisions), decisions
    print("every node seeded with the backup's digest, then moved on to %d by the site "
          "controller: %s" % (d["applied_index"], [x["action"] for x in decisions]))


def test_whole_cluster_from_one_backup():
    with Cluster(topology="2+2+1") as old:
        leader = old.settled_leader()
        jobs = populate(old)
        work = os.path.join(old.dir, "backups")
        os.makedirs(work)
        path = os.path.join(work, "whole.tbk")
        m = backup_create(old, path)["manifest"]
        assert m["counts"]["jobs"] == JOBS and m["counts"]["boxes"] == BOXES, m["counts"]
        old_sites = sites(old, leader)
        check_key_files(old, path, JOBS)

        started = time.monotonic()
        with Cluster(topology="2+2+1", restore=path, cluster_id=NEW_CLUSTER_ID,
                     tls_from=old.tls_path("")) as new:
            print("restore of 5 nodes, start and election: %.1f s"
                  % (time.monotonic() - started), flush=True)
            new.leader()
            check_restored_state(new, m)
            new_leader = new.settled_leader()
            assert sites(new, new_leader) == old_sites, (sites(new, new_leader), old_sites)
            # Personal data opens with the old cluster's key file, on every node.
            for name in new.names:
                assert job_as(new, name, jobs[-1], "clerk")["individual_number"] == NUMBER
                assert job_as(new, name, jobs[0], "operator")["individual_number"] == "***"
            # New writes commit after the backup's index and reach all five.
            index = new.kv_put(new_leader, "after-restore", b"new")
            assert index > m["applied_index"], (index, m["applied_index"])
            for name in new.names:
                wait_until(lambda: new.kv_get(name, "after-restore", local=True) == b"new",
                           REPLICATE_TIMEOUT_S, "the new write on %s" % name)
                assert new.kv_get(name, "k-07", local=True) == b"v7"
            new.converged_digests(new.names)
        old.kv_put(leader, "old-goes-on", b"yes")  # the old cluster was never disturbed
        assert sorted(x["name"] for x in old.status(leader)["members"]) == sorted(old.names)


def test_seed_node_then_empty_members_join():
    """One restored seed node started alone, two empty nodes started with join = true under the
    same new cluster id and added with member add: they receive the backup's state as a
    snapshot. With snapshot_inline_mib = 0 the seed's snapshot is a snapshot file and raft holds
    its reference: the joiners fetch the file from the seed. A directory restored under another
    cluster id refuses to start in this cluster, and one whose state is not the manifest's refuses
    to start at all."""
    with Cluster(topology="3", settings={"snapshot_inline_mib": 0}) as old:
        leader = old.settled_leader()
        for i in range(KEYS):
            old.kv_put(leader, "k-%02d" % i, b"v%d" % i)
        work = os.path.join(old.dir, "backups")
        os.makedirs(work)
        path = os.path.join(work, "seed.tbk")
        m = backup_create(old, path)["manifest"]
        cluster_id = "restored-seed"
        seed_data = os.path.join(work, "east-1", "data")
        restore_json(old, path, seed_data, "east-1", "--new-cluster-id", cluster_id)
        seed = RestoredNode(old, "east-1", seed_data, cluster_id)
        joiners = []
        for name, site in (("west-1", "west"), ("witness-1", "witness")):
            os.makedirs(os.path.join(work, name, "data"))
            joiners.append(RestoredNode(old, name, os.path.join(work, name, "data"), cluster_id,
                                        site=site, join=True))
        # A node restored without the cluster's id (a random one) does not start in it.
        stray_data = os.path.join(work, "stray", "data")
        stray_id = restore_json(old, path, stray_data, "west-2")["cluster_id"]
        assert stray_id != cluster_id and stray_id.startswith("restored-"), stray_id
        stray = RestoredNode(old, "west-2", stray_data, cluster_id, site="west")
        # A restored state that is not the manifest's (here: the marker's digest changed) is
        # refused at the first start, before raft is seeded.
        tampered_data = os.path.join(work, "tampered", "data")
        restore_json(old, path, tampered_data, "west-2", "--new-cluster-id", cluster_id)
        marker = os.path.join(tampered_data, "restored")
        with open(marker) as f:
            text = f.read()
        assert "state_digest %s\n" % m["state_digest"] in text, text
        with open(marker, "w") as f:
            f.write(text.replace(m["state_digest"], "0" * 64))
        tampered = RestoredNode(old, "west-2", tampered_data, cluster_id, site="west")
        try:
            seed.start()
            wait_until(lambda: seed.get("/readyz")[0] == 200, START_TIMEOUT_S, "the seed to lead")
            for node in joiners:
                node.start()
                old.ctl("member", "add", node.name, node.site, node.raft, node.api, "--role",
                        "voter", endpoints=[seed.api], timeout=JOIN_TIMEOUT_S)
            status, _, body = old.http("PUT", seed.api + "/v1/kv/after-join", b"all")
            assert status == 200, body
            for node in joiners:
                wait_until(lambda: node.get("/v1/kv/after-join?consistency=local")[2] == b"all",
                           REPLICATE_TIMEOUT_S, "the new write on %s" % node.name)
                assert node.get("/v1/kv/k-07?consistency=local")[2] == b"v7"
                fetched = re.search(rb"^tandem_snapshot_files_fetched_total (\S+)$",
                                    node.get("/metrics")[2], re.M)
                assert fetched and float(fetched.group(1)) >= 1, node.name
            assert [f for f in os.listdir(os.path.join(seed_data, "snapshots"))
                    if f.endswith(".snap")], "the seed's snapshot is no file"
            members = json.loads(seed.get("/v1/status")[2])["members"]
            assert sorted(x["name"] for x in members) == ["east-1", "west-1", "witness-1"]
            stray.start(wait=False)
            try:
                stray.proc.wait(START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise AssertionError("a node restored under %s started in %s"
                                     % (stray_id, cluster_id))
            assert stray.proc.returncode != 0
            assert "belongs to cluster '%s'" % stray_id in stray.log_tail(), stray.log_tail()
            tampered.start(wait=False)
            tampered.proc.wait(START_TIMEOUT_S)
            assert tampered.proc.returncode != 0
            assert "is not the backup manifest's %s" % ("0" * 64) in tampered.log_tail(), \
                tampered.log_tail()
            assert not os.path.exists(os.path.join(tampered_data, "raft"))
        finally:
            for node in [tampered, stray] + joiners + [seed]:
                node.stop()


def refused_for_cluster(node):
    """tandem_transport_refused_total{reason="cluster"} of a RestoredNode."""
    status, _, body = node.get("/metrics")
    assert status == 200, body
    for line in body.decode().splitlines():
        if line.startswith('tandem_transport_refused_total{reason="cluster"}'):
            return int(line.split()[-1])
    raise AssertionError("no cluster refusal counter in /metrics")


def test_restores_without_one_cluster_id_form_no_cluster():
    """Three directories restored without --new-cluster-id (each a random id of its own) and
    configured as one cluster, each with its own id: they refuse each other's handshakes, stay
    in start-up quarantine and elect nobody, rather than running as separate clusters."""
    with Cluster(topology="3") as old:
        leader = old.settled_leader()
        old.kv_put(leader, "k", b"v")
        work = os.path.join(old.dir, "backups")
        os.makedirs(work)
        path = os.path.join(work, "mixed.tbk")
        backup_create(old, path)
        nodes = []
        for name, site in (("east-1", "east"), ("west-1", "west"), ("witness-1", "witness")):
            data = os.path.join(work, name, "data")
            cluster_id = restore_json(old, path, data, name)["cluster_id"]
            nodes.append(RestoredNode(old, name, data, cluster_id, site=site))
        assert len({n.conf for n in nodes}) == 3
        for node in nodes:
            with open(node.conf, "a") as f:
                f.writelines("member = %s\n" % o.member() for o in nodes if o is not node)
        try:
            for node in nodes:
                node.start()
            for node in nodes:
                wait_until(lambda: refused_for_cluster(node) > 0, START_TIMEOUT_S,
                           "%s to refuse the other restored directories" % node.name)
            for node in nodes:
                st = json.loads(node.get("/v1/status")[2])
                assert st["node"]["quarantined"] is True and st["leader"] is None, st
                assert st["node"]["state"] != "leader", st
                assert node.get("/readyz")[0] == 503
        finally:
            for node in nodes:
                node.stop()


if __name__ == "__main__":
    run_tests()
