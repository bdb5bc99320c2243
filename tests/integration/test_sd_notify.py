"""systemd notifications from a real tandemd (node/sd_notify.c): with NOTIFY_SOCKET naming a
datagram socket this test owns, READY=1 comes only once the node has a leader (not while it waits
alone for its quorum), WATCHDOG=1 keeps coming at half of WATCHDOG_USEC, SIGHUP is announced with
RELOADING=1 then READY=1, and a stop with STOPPING=1."""

import os
import signal
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, run_tests  # noqa: E402

WATCHDOG_USEC = 300000  # WATCHDOG=1 every 150 ms
ALONE_S = 3.0           # how long the node waits alone, without a quorum
READY_TIMEOUT_S = 30


class NotifySocket:
    """The socket systemd would own: every datagram tandemd sends, with when it came."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tandem-sd-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def collect(self, seconds, until=None):
        """Reads for at most seconds; stops early at the first message for which until is true
        and returns it (None when none came)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            self.messages.append(data)
            if until is not None and until(data):
                return data
        return None

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def lines(messages, prefix):
    return [l for m in messages for l in m.split("\n") if l.startswith(prefix)]


def test_ready_only_with_a_leader_watchdog_reload_stop():
    with Cluster(topology="3") as c:
        for name in c.names:
            c.stop(name)
        ns = NotifySocket()
        try:
            env = {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
            c.start("east-1", env=env)
            # Alone, one voter of three: no leader, so never ready; the watchdog is fed anyway.
            ns.collect(ALONE_S)
            assert lines(ns.messages, "READY=1") == [], ns.messages
            # (A restarted node is quarantined until it reaches its epoch's leader: not ready.)
            statuses = lines(ns.messages, "STATUS=")
            assert statuses and all(s.startswith("STATUS=waiting: ") for s in statuses), statuses
            status, _, body = c.api("east-1", "GET", "/readyz")
            assert status == 503, (status, body)
            watchdogs = len(lines(ns.messages, "WATCHDOG=1"))
            assert watchdogs >= 3, "%d WATCHDOG=1 in %.1f s: %s" % (watchdogs, ALONE_S, ns.messages)

            # A second voter makes a quorum: READY=1 follows, and /readyz agrees.
            c.start("west-1")
            ready = ns.collect(READY_TIMEOUT_S, until=lambda m: "READY=1" in m.split("\n"))
            assert ready is not None, "no READY=1 after the quorum came back: %s" % ns.messages[-5:]
            assert "STATUS=ready: " in ready, ready
            status, _, body = c.api("east-1", "GET", "/readyz")
            assert status == 200, (status, body)

            # SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1 once the files are re-read.
            del ns.messages[:]
            os.kill(c.nodes["east-1"]["pid"], signal.SIGHUP)
            ns.collect(10, until=lambda m: m == "READY=1")
            reload_lines = [l for l in lines(ns.messages, "") if not l.startswith(
                ("WATCHDOG=", "STATUS="))]
            assert reload_lines[:3][0] == "RELOADING=1", ns.messages
            assert reload_lines[1].startswith("MONOTONIC_USEC="), ns.messages
            assert reload_lines[2] == "READY=1", ns.messages

            # A stop says so before the process goes.
            del ns.messages[:]
            c.stop("east-1")
            ns.collect(0.5)
            assert "STOPPING=1" in lines(ns.messages, "STOPPING="), ns.messages
            assert lines(ns.messages, "READY=1") == [], ns.messages
        finally:
            ns.close()


if __name__ == "__main__":
    run_tests()
