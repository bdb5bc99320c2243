"""Checks the chaos harness's lab switch (chaos/run.sh --lab) without root or a cluster: its
options, the network faults done with the lab's link cuts (chaos/labnet.py: whole sites only,
raft and API alike), and the fault kind a lab run leaves out, saying why.

A whole lab run needs root and about two minutes (chaos/README.md gives one); this test keeps the
wiring from breaking unnoticed.
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cluster import BIN_DIR, SOURCE_DIR, run_tests  # noqa: E402

CHAOS = os.path.join(SOURCE_DIR, "chaos")
sys.path.insert(0, CHAOS)
import harness  # noqa: E402
from faults import Nemesis  # noqa: E402
from history import History  # noqa: E402
from labnet import LabNet  # noqa: E402

NODES = {"east-1": "east", "east-2": "east", "west-1": "west", "west-2": "west",
         "witness-1": "witness"}


class FakeLab:
    """What LabNet and Nemesis ask of a lab Cluster; records the lab.sh calls instead."""

    def __init__(self):
        self.names = list(NODES)
        self.nodes = {n: {"site": s} for n, s in NODES.items()}
        self.calls = []
        self.bin_dir = BIN_DIR

    def lab_cut(self, site_a, site_b, reset=False):
        self.calls.append(("cut", site_a, site_b))

    def lab_heal(self):
        self.calls.append(("heal",))


def test_labnet_cuts_whole_sites():
    c = FakeLab()
    with LabNet(c) as net:
        net.cut(["east-1", "east-2"], ["west-2", "west-1"], ports="all")
        assert net.cuts == [("east", "west")], net.cuts
        net.heal()
        assert net.cuts == [] and c.calls == [("cut", "east", "west"), ("heal",)], c.calls
        net.cut(["witness-1"], ["west-1", "west-2"])
    # Leaving with a cut still open heals it.
    assert c.calls[-2:] == [("cut", "witness", "west"), ("heal",)], c.calls


def test_labnet_refuses_what_the_lab_cannot_cut():
    c = FakeLab()
    net = LabNet(c)
    for a, b, ports in ((["east-1"], ["east-2", "west-1", "west-2", "witness-1"], "all"),
                        (["east-1"], ["west-1", "west-2"], "all"),
                        (["east-1", "west-1"], ["witness-1"], "all"),
                        (["east-1", "east-2"], ["west-1", "west-2"], "raft")):
        try:
            net.cut(a, b, ports=ports)
        except ValueError as e:
            assert "lab" in str(e), e
        else:
            raise AssertionError("LabNet cut %s from %s (ports %s)" % (a, b, ports))
    assert c.calls == [] and net.cuts == [], (c.calls, net.cuts)


def run_harness(*args):
    return subprocess.run([sys.executable, os.path.join(CHAOS, "harness.py")] + list(args),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def test_lab_options():
    p = run_harness("--seconds", "5", "--seed", "1", "--rtt-ms", "east-west=8",
                    "--bin-dir", BIN_DIR)
    assert p.returncode == 2 and "add --lab" in p.stderr, (p.returncode, p.stderr)
    p = run_harness("--seconds", "5", "--seed", "1", "--loss", "1", "--bin-dir", BIN_DIR)
    assert p.returncode == 2 and "add --lab" in p.stderr, (p.returncode, p.stderr)
    args = harness.parse_args(["--seconds", "5", "--seed", "1", "--lab", "--rtt-ms",
                               "east-west=4,witness=10", "--loss", "0.5", "--bin-dir", BIN_DIR]
                              ) if os.geteuid() == 0 else None
    if args is not None:
        assert args.lab and args.rtt_ms == "east-west=4,witness=10" and args.loss == "0.5", args
    else:
        p = run_harness("--seconds", "5", "--seed", "1", "--lab", "--bin-dir", BIN_DIR)
        assert p.returncode == 2 and "--lab needs root" in p.stderr, (p.returncode, p.stderr)


def test_lab_leaves_partition_node_out_and_says_why():
    work = tempfile.mkdtemp(prefix="tandem-chaos-lab-test-")
    history = History(os.path.join(work, "history.jsonl"))
    try:
        kinds = ["kill", "partition_node", "partition_sites", "site_loss"]
        unavailable = {k: v for k, v in harness.LAB_UNAVAILABLE.items() if k in kinds}
        assert list(unavailable) == ["partition_node"], unavailable
        n = Nemesis(FakeLab(), LabNet(FakeLab()), history, 1, kinds, 0, None, work, unavailable)
        assert "partition_node" not in n.kinds and "partition_sites" in n.kinds, n.kinds
        assert n.unavailable == unavailable, n.unavailable
        history.close()
        with open(os.path.join(work, "history.jsonl")) as f:
            notes = f.read()
        assert "fault partition_node unavailable, never injected: the lab cuts" in notes, notes
    finally:
        history.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run_tests()
