"""Integration test of tandem-wan (chaos/wan/wan.c), the lab's WAN link emulator, on 127.0.0.1
against an echo server: the link's RTT is added to a round trip, "loss" adds retransmission-like
stalls, hold blackholes the link until it is up again (then the held bytes flow), reset resets
the link's connections, and bad input is refused. Delays are checked as lower bounds only."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import BIN_DIR, run_tests, wait_until  # noqa: E402

WAN = os.path.join(BIN_DIR, "tandem-wan")
IO_TIMEOUT_S = 5
LOSS_STALL_S = 0.2  # wan.c's LOSS_STALL_MS


def echo_server():
    """A listening socket on 127.0.0.1 whose connections echo what they read (threads)."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve(conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Wan:
    """tandem-wan forwarding 127.0.0.1:port to the echo server through link a-b."""

    def __init__(self, link="a-b 200 0 0 up"):
        self.dir = tempfile.mkdtemp(prefix="tandem-wan-")
        self.srv = echo_server()
        self.port = free_port()
        self.links = os.path.join(self.dir, "links")
        self.set(link)
        with open(os.path.join(self.dir, "routes"), "w") as f:
            f.write("listen 127.0.0.1:%d 127.0.0.1:%d a-b\n"
                    % (self.port, self.srv.getsockname()[1]))
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.proc = subprocess.Popen([WAN, os.path.join(self.dir, "routes"), self.links,
                                      "--seed", "7"], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: "ready" in open(self.log.name).read(), IO_TIMEOUT_S, "tandem-wan ready")

    def set(self, link, signal_it=False):
        with open(self.links, "w") as f:
            f.write("link " + link + "\n")
        if signal_it:
            seen = open(self.log.name).read().count("link a-b")
            self.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: open(self.log.name).read().count("link a-b") > seen,
                       IO_TIMEOUT_S, "the links re-read")

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=IO_TIMEOUT_S)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(IO_TIMEOUT_S) == 0
        self.srv.close()
        self.log.close()
        if exc[0] is None:
            shutil.rmtree(self.dir)  # kept when the test failed: its links file and log
        return False


def round_trip(sock, payload=b"ping"):
    started = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        got += chunk
    assert got == payload
    return time.monotonic() - started


def test_rtt_is_added_and_slow_changes_it():
    with Wan("a-b 200 0 0 up") as wan, wan.connect() as s:
        assert round_trip(s) >= 0.2
        wan.set("a-b 0 0 0 up", signal_it=True)
        round_trip(s)  # still forwards after the change
        wan.set("a-b 400 0 0 up", signal_it=True)
        assert round_trip(s) >= 0.4


def test_loss_adds_retransmission_stalls():
    with Wan("a-b 0 0 100 up") as wan, wan.connect() as s:
        # Every chunk is held LOSS_STALL_S, on the way out and back.
        assert round_trip(s) >= 2 * LOSS_STALL_S


def test_hold_blackholes_until_up_then_delivers():
    with Wan("a-b 0 0 0 up") as wan, wan.connect() as s:
        round_trip(s)
        wan.set("a-b 0 0 0 hold", signal_it=True)
        s.sendall(b"held")
        s.settimeout(0.5)
        try:
            data = s.recv(16)
        except socket.timeout:
            data = None
        assert data is None, data
        with wan.connect() as fresh:  # a new connection is accepted but not forwarded either
            fresh.settimeout(0.3)
            fresh.sendall(b"x")
            try:
                assert fresh.recv(1) is None
            except socket.timeout:
                pass
            wan.set("a-b 0 0 0 up", signal_it=True)
            fresh.settimeout(IO_TIMEOUT_S)
            assert fresh.recv(1) == b"x"
        s.settimeout(IO_TIMEOUT_S)
        assert s.recv(16) == b"held"


def test_reset_resets_the_links_connections():
    with Wan("a-b 0 0 0 up") as wan, wan.connect() as s:
        round_trip(s)
        wan.set("a-b 0 0 0 reset", signal_it=True)
        try:
            data = s.recv(16)
        except ConnectionResetError:
            data = b""
        assert data == b""
        # A new connection is reset too (the RST may even reach connect()).
        try:
            with wan.connect() as fresh:
                fresh.sendall(b"x")
                data = fresh.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        assert data == b""


def test_bad_input_is_refused():
    p = subprocess.run([WAN], capture_output=True, text=True, timeout=IO_TIMEOUT_S)
    assert p.returncode == 2 and "usage" in p.stderr
    with tempfile.TemporaryDirectory() as d:
        links, routes = os.path.join(d, "links"), os.path.join(d, "routes")
        with open(links, "w") as f:
            f.write("link a-b 10 0 0 sideways\n")
        open(routes, "w").close()
        p = subprocess.run([WAN, routes, links], capture_output=True, text=True,
                           timeout=IO_TIMEOUT_S)
        assert p.returncode == 1 and "bad line" in p.stderr, p.stderr
        with open(links, "w") as f:
            f.write("link a-b 10 0 0 up\n")
        with open(routes, "w") as f:
            f.write("listen 127.0.0.1:1 127.0.0.1:2 c-d\n")  # no such link
        p = subprocess.run([WAN, routes, links], capture_output=True, text=True,
                           timeout=IO_TIMEOUT_S)
        assert p.returncode == 1 and "bad line" in p.stderr, p.stderr


if __name__ == "__main__":
    run_tests()
