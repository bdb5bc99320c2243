#!/usr/bin/env python3
"""Hostile raft peers against real tandemd nodes on a mutual-TLS cluster (the channel-security
review's cases). Strangers do not get as far as a hello: plaintext, a TLS client without a
certificate, a user's certificate, another CA's certificate and a member's certificate claiming
another member are refused and counted (tandem_transport_refused_total{reason="tls"|"identity"}).
What is left is a compromised member: with a valid node certificate and a valid hello (cluster id
and epoch are in GET /v1/status) it sends an AppendEntries claiming 0xffffffff entries, 4 KiB of
random bytes, a RequestVote with the disrupt-leader flag and a term of 2^64-2, an InstallSnapshot
announcing more data than any snapshot, and a configuration entry libraft would read past. On
c5a8a2b each of the first three crashed a node or pinned every term at 2^64-1. The transport
checks every frame before libraft decodes it: every node stays up, the term stays where it was,
the cluster keeps a leader and takes writes, and the refusals are counted
(tandem_transport_refused_total{reason="frame"}). A newer epoch is learnt only from a member."""

import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import SOURCE_DIR, Cluster, pid_alive, run_tests, wait_until  # noqa: E402

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


def member_id(name):
    """consensus/member.c tandem_member_id: FNV-1a 64 of the name, top bit cleared."""
    h = 1469598103934665603
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) % 2 ** 64
    h &= 0x7fffffffffffffff
    return h or 1


def member_address(c, name):
    return "|".join([name, c.nodes[name]["site"], c.nodes[name]["raft"], c.nodes[name]["api"]])


def raft_socket(c, target, cert="", source="127.0.0.1", context=None):
    """A connection to target's raft port from source: plaintext when cert is "" (and no
    context), else TLS presenting cert's certificate from the cluster's tls directory (a node's
    or a user's; None: no certificate), or the client context given."""
    host, port = c.nodes[target]["raft"].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S,
                                 source_address=(source, 0))
    if context is None and cert == "":
        return s
    try:
        ctx = context or c.tls_context(user=cert)
        return ctx.wrap_socket(s, server_hostname=target)
    except BaseException:
        s.close()
        raise


def handshake(s, cluster_id, epoch, raft_id, address):
    """Sends a hello; returns the ack's status, or None when the node closed without one."""
    try:
        s.sendall(hello(cluster_id, epoch, raft_id, address))
        ack = b""
        while len(ack) < ACK_SIZE:
            chunk = s.recv(ACK_SIZE - len(ack))
            if not chunk:
                return None
            ack += chunk
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return None
    assert ack[:8] == b"TNDMACK!", ack
    return struct.unpack_from("<I", ack, 12)[0]


def dropped(s):
    """Whether the node closes s within SOCKET_TIMEOUT_S."""
    deadline = time.monotonic() + SOCKET_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if not s.recv(4096):
                return True
        except socket.timeout:
            break
        except (ConnectionResetError, ssl.SSLError):
            return True
    return False


def send_hostile(c, target, frame):
    """Connects to target's raft port as a compromised member (another member's certificate and
    its true hello), passes the handshake, sends frame; returns whether the node then dropped the
    connection (within SOCKET_TIMEOUT_S)."""
    st = c.status(target)
    attacker = next(n for n in c.names if n != target)
    s = raft_socket(c, target, cert=attacker)
    try:
        status = handshake(s, st["node"]["cluster_id"], st["node"]["epoch"], member_id(attacker),
                           member_address(c, attacker))
        assert status == 0, "%s refused %s's hello: %s" % (target, attacker, status)
        s.sendall(frame)
        return dropped(s)
    finally:
        s.close()


def claim_epoch(c, target, cert, raft_id, address, epoch, source="127.0.0.1"):
    """A hello claiming epoch from source with cert's node certificate; returns the ack's status
    (2 = epoch mismatch)."""
    st = c.status(target)
    s = raft_socket(c, target, cert=cert, source=source)
    try:
        status = handshake(s, st["node"]["cluster_id"], epoch, raft_id, address)
        assert status is not None, "no ack from %s" % target
        return status
    finally:
        s.close()


def test_newer_epoch_from_a_stranger_fences_nobody():
    """The review fenced a node for good with one hello claiming epoch 2^64-1. A newer epoch is
    learnt only from a member of the node's configuration, at its address, from its host: not
    from a valid node certificate of the CA that is no member, nor from a member's certificate
    connecting from elsewhere or claiming another address."""
    with Cluster("3", cert_cache=False) as c:
        leader = c.leader()
        target = next(n for n in c.names if n != leader)
        other = next(n for n in c.names if n not in (leader, target))
        c.node_tls_settings("evil-1")  # a node certificate of the CA, for no member
        claims = [
            ("a node that is no member", "evil-1", member_id("evil-1"),
             "evil-1|east|127.0.0.1:1|https://127.0.0.1:1", "127.0.0.1"),
            ("a member's id and address from another host", other, member_id(other),
             member_address(c, other), "127.0.0.2"),
            ("a member's id at another address", other, member_id(other),
             "%s|%s|127.0.0.1:1|https://127.0.0.1:1" % (other, c.nodes[other]["site"]),
             "127.0.0.1"),
        ]
        for what, cert, raft_id, address, source in claims:
            assert claim_epoch(c, target, cert, raft_id, address, 2 ** 64 - 1, source) == 2, what
        time.sleep(3)  # the node's BCP tick reads the transport's newest epoch every 100 ms
        for name in c.names:
            st = c.status(name)["node"]
            assert not st["fenced"] and st["epoch"] == 1, (name, st)
        c.kv_put(c.leader(), "still-writable", b"1")


def refused_count(c, name, reason="frame"):
    return c.metric(name, 'tandem_transport_refused_total{reason="%s"}' % reason)


def rogue_context(c, name):
    """A client context presenting a node certificate for name from another CA (deploy/certs.sh
    in a directory of its own), trusting the cluster's CA."""
    rogue_dir = tempfile.mkdtemp(prefix="rogue-ca-", dir=c.dir)
    certs = os.path.join(SOURCE_DIR, "deploy", "certs.sh")
    subprocess.run(["bash", certs, rogue_dir, "--nodes", name], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    ctx = c.tls_context(user=None)
    ctx.load_cert_chain(os.path.join(rogue_dir, name + ".pem"),
                        os.path.join(rogue_dir, name + ".key"))
    return ctx


def refused_before_hello(c, target, cluster_id, epoch, claimed, **how):
    """Connects as how says (raft_socket's arguments) and sends claimed's true hello; asserts
    that target answers no ack and closes."""
    try:
        s = raft_socket(c, target, **how)
    except (ssl.SSLError, ConnectionResetError):
        return  # refused within the TLS handshake
    try:
        status = handshake(s, cluster_id, epoch, member_id(claimed), member_address(c, claimed))
        assert status is None, "%s acked %r with status %s" % (target, how, status)
    finally:
        s.close()


def test_strangers_refused_before_the_hello():
    """Plaintext, no certificate, a user's certificate, another CA's and a member's certificate
    claiming another member: no ack, nothing reaches raft, each refusal is counted; the cluster
    goes on. A source outside raft_allow is closed before TLS, even with a member's certificate."""
    allowed = 'tandem_connections_refused_total{listener="raft",reason="allow"}'
    with Cluster("3", settings={"raft_allow": "127.0.0.1/32"}) as c:
        target, other, third = c.names[0], c.names[1], c.names[2]
        st = c.status(target)["node"]
        tls_before = refused_count(c, target, "tls")
        identity_before = refused_count(c, target, "identity")
        cases = [
            dict(cert=""),  # plaintext
            dict(cert=None),  # TLS without a client certificate
            dict(context=rogue_context(c, other)),  # another CA's certificate for a member
            dict(cert="admin"),  # a user's certificate
        ]
        for how in cases:
            refused_before_hello(c, target, st["cluster_id"], st["epoch"], other, **how)
        # A valid member certificate naming another member than the hello claims.
        refused_before_hello(c, target, st["cluster_id"], st["epoch"], third, cert=other)
        assert c.metric(target, allowed) == 0
        refused_before_hello(c, target, st["cluster_id"], st["epoch"], other, cert=other,
                             source="127.0.0.2")
        wait_until(lambda: c.metric(target, allowed) == 1, 10, "the outside source counted")
        wait_until(lambda: refused_count(c, target, "tls") >= tls_before + 3, 10,
                   "three TLS refusals counted")
        wait_until(lambda: refused_count(c, target, "identity") >= identity_before + 2, 10,
                   "two identity refusals counted")
        assert not c.status(target)["node"]["fenced"]
        c.kv_put(c.leader(), "after-strangers", b"1")
        c.wait_converged()


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
