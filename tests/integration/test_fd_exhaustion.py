#!/usr/bin/env python3
"""A node whose file descriptors run out while it serves writes and linearizable reads: its soft
RLIMIT_NOFILE is lowered (prlimit, from outside) to one above what it has open, so accepting a
connection, connecting to a peer, opening a raft segment or snapshot file fail with EMFILE in
turn. Every error path that frees memory owned by libuv, libraft or LMDB runs: the node must
stay up and answer every request (a failure is an HTTP error, not a hang or a crash), or, when
raft's log write failed after libraft took an entry (libraft 0.22.1 cannot append after that:
replication/proposer.c), stop at once with exit status 70 and a "tandem: fatal:" line, never a
signal; no node may show a sanitizer report (ASan builds: leak detection on), and once the limit
is back (or the stopped node restarted) the cluster converges with equal digests. (On main before issue 11 this load ended in a double
free of an entry buffer; libraft's raft_barrier still frees its own twice on such a failure,
absorbed by consensus/raft_heap.c.)"""

import os
import resource
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, ClusterError, exit_code, pid_alive, run_tests  # noqa: E402
from sanitizers import asan_build, log_since_last_start, sanitizer_report, sigterm  # noqa: E402

SETTINGS = {"snapshot_threshold": 64, "snapshot_trailing": 64, "segment_size_kib": 256,
            "batch_bytes_max_kib": 32, "body_bytes_max_kib": 32}
REQUESTS = 300            # writes, each followed by a linearizable read, under the low limit
SPARE_FDS = 1             # descriptors left free under the lowered limit
VALUE = "y" * 3000
FATAL_EXIT_STATUS = 70    # storage/assert.h TANDEM_FATAL_EXIT_STATUS
FD_SAMPLE_S = 2.0         # how long the node's descriptor count is watched before the limit
FD_SAMPLE_INTERVAL_S = 0.005


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def held_fds(pid):
    """The descriptors pid holds for good: the fewest open over FD_SAMPLE_S. A single count is
    not that: even an idle leader's count moves by two or three every few hundred milliseconds
    (the transport's probe handshakes from and to its peers, consensus/transport.c; the last
    client's socket not yet closed), and a limit set from a high moment leaves the node spare descriptors enough that
    the load may never meet EMFILE. Descriptors take the lowest free number, so a limit of
    held + SPARE_FDS leaves SPARE_FDS numbers free once the short-lived ones are closed."""
    fewest = open_fds(pid)
    deadline = time.monotonic() + FD_SAMPLE_S
    while time.monotonic() < deadline:
        time.sleep(FD_SAMPLE_INTERVAL_S)
        fewest = min(fewest, open_fds(pid))
    return fewest


def test_descriptors_run_out_under_load():
    binary = os.path.join(os.environ.get("TANDEM_BIN_DIR", ""), "tandemd")
    checked = asan_build(binary)
    if checked:
        os.environ["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    else:
        print("SKIP the sanitizer assertions: %s is not an ASan build" % binary, flush=True)
    with Cluster(topology="3", settings=SETTINGS) as c:
        node = c.leader()
        pid = c.nodes[node]["pid"]
        for i in range(20):
            c.kv_put(node, "pre/%d" % i, VALUE)
        limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (held_fds(pid) + SPARE_FDS, limits[1]))
        ok = failed = 0
        stopped = False
        deadline = time.monotonic() + 240
        for i in range(REQUESTS):
            if time.monotonic() > deadline:
                break
            for call in (lambda: c.kv_put(node, "k/%d" % (i % 30), VALUE, timeout=5),
                         lambda: c.kv_get(node, "k/%d" % (i % 30), timeout=5)):
                try:
                    call()
                    ok += 1
                except (ClusterError, OSError):
                    failed += 1  # an error answer or a refused connection: allowed, not a crash
            if not pid_alive(pid):
                log = log_since_last_start(c, node)
                assert exit_code(pid) in (FATAL_EXIT_STATUS, None) and "tandem: fatal:" in log, (
                    "%s died with its descriptors exhausted (request %d, exit %s)"
                    % (node, i, exit_code(pid)))
                assert sanitizer_report(c, node) is None, sanitizer_report(c, node)
                print(log[log.index("tandem: fatal:"):].splitlines()[0], flush=True)
                stopped = True
                break
        # The limit bit: the node met EMFILE (its transport logs the refused connections; a
        # fail-stop's fatal line names raft's reason, "eventfd: too many open files" say).
        assert "too many open files" in log_since_last_start(c, node), "no EMFILE met"
        if stopped:
            c.start(node)  # a supervisor's restart: it reads its raft log from disk
        else:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
        print("%s under %d spare descriptors: %d answered, %d failed%s" % (
            node, SPARE_FDS, ok, failed, ", then stopped (fail-stop) and restarted"
            if stopped else ""), flush=True)
        c.kv_put(c.leader(), "after", "x")
        c.wait_converged(timeout=60)
        digests = c.converged_digests()
        assert len({d["state_digest"] for d in digests.values()}) == 1, digests
        for name in c.names:
            sigterm(c, name)
        if checked:
            bad = {n: r for n, r in ((n, sanitizer_report(c, n)) for n in c.names) if r}
            assert not bad, "sanitizer reports:\n%s" % "\n".join(
                "---- %s\n%s" % (n, r) for n, r in bad.items())


if __name__ == "__main__":
    run_tests()
