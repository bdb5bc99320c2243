#!/usr/bin/env python3
"""tandemd and its open-files limit: it raises the soft limit to the hard one at start, and it
refuses to start (exit 1, one line naming the option and the limit, nothing in the data
directory touched) when the hard limit cannot cover connections_max API connections plus what
raft and the peers need. (Before, a leader whose descriptors ran out under idle API connections
failed raft's appends, then crashed on a double free.)"""

import os
import resource
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, pid_alive, run_tests, wait_until  # noqa: E402

EXIT_TIMEOUT_S = 20
SOFT, HARD = 1000, 2000


def limited():
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


def raft_files(raft_dir):
    return sorted((name, os.path.getsize(os.path.join(raft_dir, name)))
                  for name in os.listdir(raft_dir))


def soft_limit_of(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open files line in /proc/%d/limits" % pid)


def test_refuses_what_it_cannot_honour_and_raises_the_soft_limit():
    with Cluster(topology="3") as c:
        leader = c.leader()
        victim = next(n for n in c.names if n != leader)
        for i in range(50):
            c.kv_put(leader, "fd/%d" % i, "value-%d" % i)
        c.wait_converged()
        c.stop(victim)
        raft_dir = os.path.join(c.nodes[victim]["dir"], "data", "raft")
        before = raft_files(raft_dir)
        conf = os.path.join(c.nodes[victim]["dir"], "tandem.conf")
        binary = os.path.join(c.bin_dir, "tandemd")
        # The default connections_max (4096) does not fit under a hard limit of 2000.
        run = subprocess.run([binary, "--config", conf], capture_output=True, text=True,
                             preexec_fn=limited, timeout=EXIT_TIMEOUT_S)
        assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
        errors = [line for line in run.stderr.splitlines() if " error " in line]
        assert len(errors) == 1, run.stderr[-2000:]
        assert "connections_max" in errors[0] and "hard limit is %d" % HARD in errors[0], errors
        assert raft_files(raft_dir) == before
        print("refused: %s" % errors[0], flush=True)
        # One that fits starts, with its soft limit raised to the hard one, and catches up.
        with open(conf, "a") as f:
            f.write("connections_max = %d\n" % (HARD - 1024))
        log = open(os.path.join(c.nodes[victim]["dir"], "tandemd.log"), "a")
        proc = subprocess.Popen([binary, "--config", conf], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, preexec_fn=limited)
        try:
            wait_until(lambda: c.status(victim)["node"]["applied_index"] >=
                       c.status(leader)["node"]["applied_index"], 30, "%s to catch up" % victim)
            assert soft_limit_of(proc.pid) == HARD
            c.kv_put(leader, "fd/after", "x")
            c.wait_converged()
            assert c.kv_get(victim, "fd/after", local=True) == b"x"
        finally:
            proc.terminate()
            proc.wait(timeout=EXIT_TIMEOUT_S)
            log.close()
        assert not pid_alive(proc.pid)


if __name__ == "__main__":
    run_tests()
