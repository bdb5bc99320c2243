"""Network partitions between the nodes of a local test cluster, with nftables.

Every node of a Cluster(isolate=True) runs in a cgroup v2 of its own from its first instruction
(deploy/local-cluster.sh, TANDEM_CGROUP_ROOT), so every socket it opens, inbound or outbound,
belongs to that cgroup. A cut adds rules to a table of our own in the output hook: packets that a
node of one group sends to a listening port (raft, API or both) of a node of the other group are
dropped, in both directions. Nothing answers a dropped packet: connections stall and time out as
they would when a link between two sites fails, and connections that were open stall too.
The test runner itself is in no node's cgroup, so it keeps reaching every node.

    with Cluster(topology="2+2+1", isolate=True) as c, NetCut(c) as net:
        net.cut(["east-1", "east-2"], ["west-1", "west-2"], ports="raft")
        ...
        net.heal()

The table is deleted when the block ends, however it ends. Needs root and nft (nftables).
"""

import itertools
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import ClusterError, cgroup2_mount  # noqa: E402

# nft resolves "socket cgroupv2" paths under this directory, whatever the mount point is.
NFT_CGROUP_BASE = "/sys/fs/cgroup"
NFT_TIMEOUT_S = 20
PORT_KINDS = ("raft", "api", "all")

_tables = itertools.count()


def _port(address):
    """The port of "host:port" or of "http://host:port"."""
    return int(address.rstrip("/").rsplit(":", 1)[1])


class NetCut:
    """Cuts and heals the traffic between groups of a Cluster(isolate=True)'s nodes."""

    def __init__(self, cluster):
        if cluster.cgroup_root is None:
            raise ClusterError("NetCut needs a Cluster(isolate=True)")
        self.cluster = cluster
        self.table = "tandem_it_%d_%d" % (os.getpid(), next(_tables))
        self.created = False
        self.cuts = []

    def _nft(self, *args):
        p = subprocess.run(["nft"] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=NFT_TIMEOUT_S)
        if p.returncode != 0:
            raise ClusterError("nft %s: %s" % (" ".join(args), p.stdout.strip()))
        return p.stdout

    def __enter__(self):
        self._nft("add", "table", "inet", self.table)
        self.created = True
        self._nft("add", "chain", "inet", self.table, "out",
                  "{ type filter hook output priority 0; policy accept; }")
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.created:
            self._nft("delete", "table", "inet", self.table)
            self.created = False
        return False

    def _match(self, name):
        """The nft expression that matches the sockets of node name, by its cgroup."""
        path = self.cluster.cgroup_dir(name)
        level = len(os.path.relpath(path, cgroup2_mount()).split(os.sep))
        rel = os.path.relpath(path, NFT_CGROUP_BASE)
        if rel.startswith(".."):
            raise ClusterError("cgroup %s is outside %s, where nft looks" % (path, NFT_CGROUP_BASE))
        return 'socket cgroupv2 level %d "%s"' % (level, rel)

    def _ports(self, name, ports):
        node = self.cluster.nodes[name]
        chosen = []
        if ports in ("raft", "all"):
            chosen.append(_port(node["raft"]))
        if ports in ("api", "all"):
            chosen.append(_port(node["api"]))
        return chosen

    def _drop(self, src, dst, ports):
        for port in self._ports(dst, ports):
            self._nft("add", "rule", "inet", self.table, "out",
                      "%s tcp dport %d drop" % (self._match(src), port))

    def cut(self, group_a, group_b, ports="all"):
        """Drops what nodes of group_a send to group_b's listening ports and the reverse;
        ports: "raft" (the raft transport only), "api" (the HTTP API only) or "all"."""
        if ports not in PORT_KINDS:
            raise ValueError("ports must be one of %s" % (PORT_KINDS,))
        for a in group_a:
            for b in group_b:
                if a == b:
                    raise ValueError("%s is in both groups" % a)
                self._drop(a, b, ports)
                self._drop(b, a, ports)
        self.cuts.append((list(group_a), list(group_b), ports))

    def heal(self):
        """Removes every cut; connections that stalled resume or time out and are redialled."""
        self._nft("flush", "chain", "inet", self.table, "out")
        self.cuts = []

    def rules(self):
        """The table as nft lists it (for diagnostics)."""
        return self._nft("list", "table", "inet", self.table)


def run_in_node_cgroup(cluster, name, argv, timeout):
    """Runs argv inside node name's cgroup, so its traffic is cut like the node's; returns the
    CompletedProcess (stdout and stderr together)."""
    procs = os.path.join(cluster.cgroup_dir(name), "cgroup.procs")

    def join():
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    return subprocess.run(argv, preexec_fn=join, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
