"""Self-test of the partition support the BCP tests rely on (cluster.py's isolate=True and
netcut.py): each node runs in its own cgroup, a cut drops exactly the traffic between the two
groups on the chosen ports, other pairs and the test runner are untouched, heal restores it,
and the nftables table and the cgroups are gone afterwards."""

import os
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, run_tests  # noqa: E402
from netcut import NetCut, run_in_node_cgroup  # noqa: E402

PROBE_TIMEOUT_S = 2
# Connects to host:port from inside a node's cgroup; exit 0 when the TCP handshake completes.
PROBE = ("import socket, sys; h, p = sys.argv[1].rsplit(':', 1); "
         "socket.create_connection((h, int(p)), timeout=%d).close()" % PROBE_TIMEOUT_S)


def hostport(address):
    return address.split("//", 1)[-1].rstrip("/")


def reaches(c, src, dst, kind):
    address = c.nodes[dst]["raft"] if kind == "raft" else hostport(c.nodes[dst]["api"])
    p = run_in_node_cgroup(c, src, [sys.executable, "-c", PROBE, address],
                           timeout=PROBE_TIMEOUT_S + 10)
    return p.returncode == 0


def nft_tables():
    return subprocess.run(["nft", "list", "tables"], stdout=subprocess.PIPE, text=True,
                          check=True).stdout


def test_cut_and_heal():
    with Cluster(topology="3", isolate=True) as c:
        a, b, third = c.names
        for name in c.names:
            with open(os.path.join(c.cgroup_dir(name), "cgroup.procs")) as f:
                pids = [int(line) for line in f if line.strip()]
            assert c.nodes[name]["pid"] in pids, (name, pids)
        with NetCut(c) as net:
            net.cut([a], [b], ports="raft")
            assert not reaches(c, a, b, "raft") and not reaches(c, b, a, "raft"), net.rules()
            assert reaches(c, a, b, "api") and reaches(c, b, a, "api"), net.rules()
            assert reaches(c, a, third, "raft") and reaches(c, third, b, "raft"), net.rules()
            net.cut([a], [third], ports="api")
            assert not reaches(c, third, a, "api") and reaches(c, third, a, "raft"), net.rules()
            # The test runner is in no node's cgroup: it still reaches everyone.
            assert all(c.status(name)["node"]["name"] == name for name in c.names)
            net.heal()
            assert reaches(c, a, b, "raft") and reaches(c, third, a, "api"), net.rules()
            table = net.table
            net.cut([a], [b, third])
            assert table in nft_tables()
        assert table not in nft_tables()
        root = c.cgroup_root
    assert not os.path.exists(root), root


if __name__ == "__main__":
    run_tests()
