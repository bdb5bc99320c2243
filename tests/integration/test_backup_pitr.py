"""Point-in-time restore (issue 14, item 3): a backup carried on through the raft log a node of
its cluster keeps (`backup restore --to-index N --log-dir DATA_DIR`) restores the state at any
index between the backup and what that node applied: at the next backup's index it equals that
backup's manifest; in between it holds exactly the writes at or before N. A log of another
history, an index outside the log's committed range and half-given options are refused and
leave nothing behind."""

import json
import os
import shutil
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, http, run_tests  # noqa: E402
from test_backup import RestoredNode, backup_create  # noqa: E402

KEYS_PER_ROUND = 40


def put_round(c, leader, prefix):
    """Puts prefix-00.. through the leader; returns [(key, value, mod_index)]."""
    out = []
    for i in range(KEYS_PER_ROUND):
        key, value = "%s-%02d" % (prefix, i), b"%s%d" % (prefix.encode(), i)
        out.append((key, value, c.kv_put(leader, key, value)))
    return out


def restore(c, path, data, name, *extra, check=True):
    p = c.ctl("-o", "json", "backup", "restore", path, "--data-dir", data, "--name", name,
              *extra, check=check, timeout=120)
    return json.loads(p.stdout) if check else p


def started(c, name, data, cluster_id):
    node = RestoredNode(c, name, data, cluster_id)
    node.start()
    return node


def digest_of(node):
    status, _, body = node.get("/v1/digest")
    assert status == 200, body
    return json.loads(body)


def seed_line(node):
    """The line a restored node logged when it seeded raft from its directory."""
    with open(node.log, errors="replace") as f:
        lines = [line for line in f if "restored from backup" in line]
    assert len(lines) == 1, lines
    return lines[0]


def follower_data_dir(c, leader, index):
    """The data directory of a running follower that has applied index."""
    name = next(n for n in c.names if n != leader)
    c.wait_applied([name], index)
    return os.path.join(c.nodes[name]["dir"], "data")


def test_point_in_time_between_backups():
    with Cluster(topology="3") as c:
        leader = c.leader()
        work = os.path.join(c.dir, "pitr")
        os.makedirs(work)
        first = put_round(c, leader, "a")
        b1 = os.path.join(work, "b1.tbk")
        m1 = backup_create(c, b1)["manifest"]
        second = put_round(c, leader, "b")
        b2 = os.path.join(work, "b2.tbk")
        m2 = backup_create(c, b2)["manifest"]
        third = put_round(c, leader, "c")
        assert m1["applied_index"] < m2["applied_index"] < third[0][2]
        log_dir = follower_data_dir(c, leader, third[-1][2])

        # Carried from the first backup to the second's index: the second's very state.
        data = os.path.join(work, "at-b2", "data")
        answer = restore(c, b1, data, "p1", "--to-index", str(m2["applied_index"]),
                         "--log-dir", log_dir)
        pit = answer["point_in_time"]
        assert pit["backup_index"] == m1["applied_index"], pit
        assert pit["state_index"] == m2["applied_index"] == answer["applied_index"], pit
        assert pit["state_digest"] == m2["state_digest"], (pit, m2)
        assert pit["data_digest"] == m2["data_digest"], (pit, m2)
        assert pit["counts"] == m2["counts"], (pit, m2)
        assert pit["entries_applied"] > 0
        node = started(c, "p1", data, answer["cluster_id"])
        fork = os.path.join(work, "fork")
        try:
            # It proves at its first start that it holds that state (the site controller may
            # record a decision of its own right after, so /v1/digest may have moved on).
            line = seed_line(node)
            assert "raft seeded at index %d," % m2["applied_index"] in line, line
            assert "state_digest %s" % m2["state_digest"] in line, line
            d = digest_of(node)
            assert d["applied_index"] >= m2["applied_index"] and d["counts"] == m2["counts"], d
            # A write of its own: from here on p1's history is a fork of the old cluster's.
            status, _, body = http("PUT", node.api + "/v1/kv/fork", b"f", timeout=5)
            assert status == 200, body
        finally:
            node.stop()
        os.makedirs(fork)
        shutil.copytree(os.path.join(data, "state"), os.path.join(fork, "state"))

        # Between the two backups: exactly the writes at or before the index.
        middle = second[KEYS_PER_ROUND // 2][2]
        data = os.path.join(work, "middle", "data")
        answer = restore(c, b1, data, "p2", "--to-index", str(middle), "--log-dir", log_dir)
        assert answer["applied_index"] <= middle, answer
        node = started(c, "p2", data, answer["cluster_id"])
        try:
            for key, value, index in first + second + third:
                got = node.get("/v1/kv/%s?consistency=local" % key)
                if index <= middle:
                    assert got[0] == 200 and got[2] == value, (key, index, middle, got[0])
                else:
                    assert got[0] == 404, (key, index, middle, got[0])
        finally:
            node.stop()

        refusals(c, work, b1, m1, log_dir, os.path.join(work, "at-b2", "data"))

        # The old cluster's log beside the forked state (no cluster-id file to tell them apart):
        # the apply digest chain refuses it, before anything is applied.
        follower = os.path.basename(os.path.dirname(log_dir))
        c.stop(follower)
        shutil.copytree(os.path.join(log_dir, "raft"), os.path.join(fork, "raft"))
        data = os.path.join(work, "forked", "data")
        p = restore(c, b1, data, "f1", "--to-index", str(m2["applied_index"]), "--log-dir", fork,
                    check=False)
        assert p.returncode == 1 and "not this backup's history" in p.stderr, (p.returncode,
                                                                                p.stderr)
        assert not os.path.exists(data), os.listdir(data)


def refusals(c, work, b1, m1, log_dir, other_history):
    """Each refused restore exits non-zero with one line and leaves no data directory."""
    applied = max(c.status(n)["node"]["applied_index"] for n in c.names)
    cases = [
        (("--to-index", str(m1["applied_index"] - 1), "--log-dir", log_dir), 2,
         "before the backup's index"),
        (("--to-index", str(applied + 1000), "--log-dir", log_dir), 2, "may not be committed"),
        (("--to-index", str(m1["applied_index"] + 1)), 2, "go together"),
        (("--to-index", "12x", "--log-dir", log_dir), 2, "expected a raft index"),
        (("--to-index", str(m1["applied_index"] + 1), "--log-dir", work), 2, "no raft/ and state/"),
        # A restored directory of the same backup: another cluster id, another history.
        (("--to-index", str(m1["applied_index"] + 1), "--log-dir", other_history), 2,
         "belongs to cluster"),
    ]
    for i, (extra, code, words) in enumerate(cases):
        data = os.path.join(work, "refused-%d" % i, "data")
        p = restore(c, b1, data, "r%d" % i, *extra, check=False)
        assert p.returncode == code, (extra, p.returncode, p.stderr)
        assert words in p.stderr and len(p.stderr.strip().splitlines()) == 1, (extra, p.stderr)
        assert not os.path.exists(data), (extra, os.listdir(data))


if __name__ == "__main__":
    run_tests(globals())
