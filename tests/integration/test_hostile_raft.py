#!/usr/bin/env python3
"""Hostile raft frames against real tandemd nodes (the channel-security review's cases): after a
valid hello (its cluster id and epoch are public in GET /v1/status), an AppendEntries claiming
0xffffffff entries, 4 KiB of random bytes, a RequestVote with the disrupt-leader flag and a term
of 2^64-2, an InstallSnapshot announcing more data than any snapshot, and a configuration entry
libraft would read past. On main each of the first three crashed a node or pinned every term at
2^64-1. Now the transport checks every frame before libraft decodes it: every node stays up, the
term stays where it was, the cluster keeps a leader and takes writes, and the refusals are
counted (tandem_transport_refused_total{reason="frame"} in /metrics)."""

import os
import random
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, pid_alive, run_tests, wait_until  # noqa: E402

HELLO_SIZE = 400
ACK_SIZE = 32
SOCKET_TIMEOUT_S = 5
TERM_SANE_MAX = 1000  # a test cluster's term stays far below this
RAFT_APPEND_ENTRIES, RAFT_REQUEST_VOTE, RAFT_INSTALL_SNAPSHOT = 1, 3, 5
RAFT_COMMAND, RAFT_CHANGE = 1, 3


def hello(cluster_id, epoch, raft_id, address):
    """The transport's hello (consensus/transport.c, protocol version 2)."""
    a = address.encode()
    out = b"TNDMHELO" + struct.pack("<IIQQQ", 2, len(a), epoch, raft_id, 0)
    out += cluster_id.encode().ljust(64, b"\0") + a.ljust(296, b"\0")
    assert len(out) == HELLO_SIZE
    return out


def preamble(msg_type, version, header_len):
    return struct.pack("<QQ", msg_type | version << 16, header_len)


def append_entries(term, entries, payload):
    """entries: [(term, type, size)]; libraft 0.22.1 src/uv_encoding.c layout."""
    header = struct.pack("<QQQQQ", term, 5, term, 4, len(entries))
    for entry_term, entry_type, size in entries:
        header += struct.pack("<QBBBBI", entry_term, entry_type, 0, 0, 0, size)
    header += struct.pack("<Q", 0)
    return preamble(RAFT_APPEND_ENTRIES, 0, len(header)) + header + payload


def hostile_frames():
    rng = random.Random(11)
    huge_count = bytearray(append_entries(5, [(5, RAFT_COMMAND, 8)], b"x" * 8))
    struct.pack_into("<Q", huge_count, 16 + 32, 0xffffffff)
    vote = struct.pack("<QQQQQ", 2 ** 64 - 2, 99, 10 ** 6, 2 ** 64 - 3, 1)  # disrupt-leader
    conf = b"\x01" + struct.pack("<Q", 3) + struct.pack("<Q", 1) + b"127.0.0.1:1\0\x01"
    conf += b"\0" * ((8 - len(conf) % 8) % 8)  # claims 3 servers, holds 1
    snapshot = struct.pack("<QQQQQ", 5, 100, 5, 90, len(conf)) + conf
    snapshot += struct.pack("<QQ", 2 ** 62, 0)
    return [
        ("AppendEntries claiming 0xffffffff entries", bytes(huge_count)),
        ("4 KiB of random bytes", bytes(rng.getrandbits(8) for _ in range(4096))),
        ("RequestVote, disrupt-leader, term 2^64-2", preamble(RAFT_REQUEST_VOTE, 2, 40) + vote),
        ("InstallSnapshot of 2^62 bytes", preamble(RAFT_INSTALL_SNAPSHOT, 0, len(snapshot))
         + snapshot),
        ("configuration entry claiming 3 servers, holding 1",
         append_entries(5, [(5, RAFT_CHANGE, len(conf))], conf)),
    ]


def send_hostile(c, target, frame):
    """Connects to target's raft port as a stranger, passes the handshake, sends frame; returns
    once the node has dropped the connection (or after SOCKET_TIMEOUT_S)."""
    st = c.status(target)
    host, port = c.nodes[target]["raft"].rsplit(":", 1)
    address = "evil-1|east|127.0.0.1:1|http://127.0.0.1:1"
    s = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S)
    try:
        s.sendall(hello(st["node"]["cluster_id"], st["node"]["epoch"], 424242, address))
        ack = b""
        while len(ack) < ACK_SIZE:
            chunk = s.recv(ACK_SIZE - len(ack))
            assert chunk, "no ack from %s" % target
            ack += chunk
        assert ack[:8] == b"TNDMACK!" and struct.unpack_from("<I", ack, 12)[0] == 0, ack
        s.sendall(frame)
        deadline = time.monotonic() + SOCKET_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if not s.recv(4096):
                    return True
            except socket.timeout:
                break
            except ConnectionResetError:
                return True
        return False
    finally:
        s.close()


def member_id(name):
    """consensus/member.c tandem_member_id: FNV-1a 64 of the name, top bit cleared."""
    h = 1469598103934665603
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) % 2 ** 64
    h &= 0x7fffffffffffffff
    return h or 1


def claim_epoch(c, target, raft_id, address, epoch, source="127.0.0.1"):
    """A hello claiming epoch from source; returns the ack's status (1 = epoch mismatch)."""
    st = c.status(target)
    host, port = c.nodes[target]["raft"].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S,
                                 source_address=(source, 0))
    try:
        s.sendall(hello(st["node"]["cluster_id"], epoch, raft_id, address))
        ack = b""
        while len(ack) < ACK_SIZE:
            chunk = s.recv(ACK_SIZE - len(ack))
            assert chunk, "no ack from %s" % target
            ack += chunk
        return struct.unpack_from("<I", ack, 12)[0]
    finally:
        s.close()


def test_newer_epoch_from_a_stranger_fences_nobody():
    """The review fenced a node for good with one hello claiming epoch 2^64-1. A newer epoch is
    learnt only from a member of the node's configuration, at its address, from its host."""
    with Cluster("3") as c:
        leader = c.leader()
        target = next(n for n in c.names if n != leader)
        other = next(n for n in c.names if n not in (leader, target))
        member_address = "|".join([other, c.nodes[other]["site"], c.nodes[other]["raft"],
                                   c.nodes[other]["api"]])
        claims = [
            ("a stranger", member_id("evil-1"), "evil-1|east|127.0.0.1:1|http://127.0.0.1:1",
             "127.0.0.1"),
            ("a member's id and address from another host", member_id(other), member_address,
             "127.0.0.2"),
            ("a member's id at another address", member_id(other),
             "%s|%s|127.0.0.1:1|http://127.0.0.1:1" % (other, c.nodes[other]["site"]),
             "127.0.0.1"),
        ]
        for what, raft_id, address, source in claims:
            assert claim_epoch(c, target, raft_id, address, 2 ** 64 - 1, source) == 2, what
        time.sleep(3)  # the node's BCP tick reads the transport's newest epoch every 100 ms
        for name in c.names:
            st = c.status(name)["node"]
            assert not st["fenced"] and st["epoch"] == 1, (name, st)
        c.kv_put(c.leader(), "still-writable", b"1")


def refused_count(c, name):
    _, _, body = c.api(name, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith('tandem_transport_refused_total{reason="frame"}'):
            return int(float(line.split()[-1]))
    raise AssertionError("no frame refusals in /metrics of %s" % name)


def test_hostile_frames_change_nothing():
    with Cluster("3") as c:
        leader = c.leader()
        c.kv_put(leader, "before", b"1")
        c.wait_converged()
        terms = {n: c.status(n)["node"]["term"] for n in c.names}
        for what, frame in hostile_frames():
            for target in c.names:
                dropped = send_hostile(c, target, frame)
                assert dropped, "%s: %s kept the connection open" % (what, target)
                for name in c.names:
                    pid = c.nodes[name]["pid"]
                    assert pid is not None and pid_alive(pid), "%s killed %s" % (what, name)
        for name in c.names:
            st = c.status(name)["node"]
            assert 0 < st["term"] < TERM_SANE_MAX and st["term"] <= terms[name] + 2, (name, st)
            assert not st["fenced"], (name, st)
            assert refused_count(c, name) >= 4, name
        leader = c.leader()
        c.kv_put(leader, "after", b"2")
        assert c.kv_get(leader, "before") == b"1"
        c.wait_converged()
        # The node that led keeps leading through all of it: no frame disrupted it.
        wait_until(lambda: all(c.status(n)["leader"] is not None for n in c.names), 10,
                   "every node knows the leader")


if __name__ == "__main__":
    run_tests(globals())
