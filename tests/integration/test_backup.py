"""Backups (issue 14, items 1-3): a backup taken while a writer runs holds every acknowledged
write before its index and restores to the manifest's digest; a flipped byte is caught at level
1, a structurally damaged state at level 2, level 3 starts a node on it; restore refuses a
non-empty directory; a restored node under a new cluster id is refused by the old cluster's
transport and cannot start under the old id; a restored node runs as a cluster of its own; a
download streams from disk: tandemd's anonymous memory does not grow with the file, a reader that
pauses is waited for, one that leaves frees everything and removes the file taken for it, a
follower redirects to the leader, and tandemctl leaves no FILE (nor FILE.part) when the transfer
is cut or the disk refuses it."""

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import (BIN_DIR, Cluster, http, pid_alive, run_tests, tls_socket,  # noqa: E402
                     wait_until)
from sanitizers import asan_build  # noqa: E402
from test_foundation import free_port  # noqa: E402

WRITES_MAX = 5000          # bound on the writer's puts
WRITER_SECONDS_MAX = 60    # and on its time
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
HEADER_BYTES = 120
LMDB_META_BYTES = 8192     # LMDB's two meta pages (4 KiB pages)


class Writer(threading.Thread):
    """Puts w-<i> = v<i> through the leader until stopped; records (i, mod_index, acked at)."""

    def __init__(self, c, leader):
        super().__init__(daemon=True)
        self.c, self.leader = c, leader
        self.acked = []
        self.stop_flag = threading.Event()
        self.error = None

    def run(self):
        deadline = time.monotonic() + WRITER_SECONDS_MAX
        try:
            for i in range(WRITES_MAX):
                if self.stop_flag.is_set() or time.monotonic() > deadline:
                    break
                index = self.c.kv_put(self.leader, "w-%05d" % i, b"v%d" % i)
                self.acked.append((i, index, time.monotonic()))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


class RestoredNode:
    """tandemd started here on a restored data directory, with the config of a cluster node
    (TLS files of the cluster's CA and its personal-data key) under its own name, site, ports and
    cluster id; stopped by PID. join: an empty node that waits for `member add` (data_dir then
    holds nothing), listed in no member line."""

    def __init__(self, c, name, data_dir, cluster_id, extra_members=(), site="east", join=False):
        self.c, self.name, self.site, self.dir = c, name, site, os.path.dirname(data_dir)
        self.conf = os.path.join(self.dir, name + ".conf")
        self.log = os.path.join(self.dir, name + ".log")
        self.raft = "127.0.0.1:%d" % free_port()
        port = free_port()
        self.api = "%s://127.0.0.1:%d" % (c.scheme, port)
        own = {"name": name, "site": site, "data_dir": data_dir, "raft_address": self.raft,
               "api_address": "127.0.0.1:%d" % port, "api_url": self.api,
               "cluster_id": cluster_id, "join": "true" if join else "false"}
        own.update(c.node_tls_settings(name))
        c.trust(self.api)
        template = os.path.join(c.nodes[c.names[0]]["dir"], "tandem.conf")
        lines = []
        with open(template) as f:
            for line in f:
                key = line.split("=", 1)[0].strip()
                if key in ("member", "join"):
                    continue
                if key in own:
                    line = "%s = %s\n" % (key, own.pop(key))
                lines.append(line)
        lines += ["%s = %s\n" % kv for kv in own.items()]
        if not join:
            lines.append("member = %s\n" % self.member())
        lines += ["member = %s\n" % m for m in extra_members]
        with open(self.conf, "w") as f:
            f.writelines(lines)
        self.proc = None

    def member(self):
        """Its member line: NAME,SITE,RAFT,API,voter."""
        return "%s,%s,%s,%s,voter" % (self.name, self.site, self.raft, self.api)

    def start(self, wait=True):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [os.path.join(self.c.bin_dir, "tandemd"), "--config", self.conf],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        if wait:
            wait_until(lambda: self.alive() and self.get("/healthz")[0] == 200,
                       START_TIMEOUT_S, "%s to answer /healthz" % self.name)

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError("%s exited with %s:\n%s" % (self.name, self.proc.returncode,
                                                             self.log_tail()))
        return True

    def get(self, path):
        try:
            return http("GET", self.api + path, timeout=2)
        except OSError:
            return 0, {}, b""

    def stop(self):
        """SIGTERM by PID; SIGKILL when it is still there STOP_TIMEOUT_S later."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)

    def log_tail(self, lines=30):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return "(no log: %s)" % e


def refused_cluster(c, name):
    """tandem_transport_refused_total{reason="cluster"} of node name."""
    status, _, body = c.api(name, "GET", "/metrics")
    assert status == 200, body
    for line in body.decode().splitlines():
        if line.startswith('tandem_transport_refused_total{reason="cluster"}'):
            return int(line.split()[-1])
    raise AssertionError("no cluster refusal counter in /metrics")


def backup_create(c, path):
    p = c.ctl("-o", "json", "backup", "create", "--out", path, timeout=120)
    return json.loads(p.stdout)


def damage_state_rehash(src, dst):
    """Copies src to dst with the state's LMDB meta pages zeroed and every checksum recomputed:
    level 1 passes, the state is no LMDB file any more."""
    with open(src, "rb") as f:
        raw = bytearray(f.read())
    manifest_len, state_len = struct.unpack_from("<QQ", raw, 40)
    state_at = HEADER_BYTES + manifest_len
    raw[state_at:state_at + LMDB_META_BYTES] = bytes(LMDB_META_BYTES)
    manifest = json.loads(bytes(raw[HEADER_BYTES:state_at]))
    manifest["state_sha256"] = hashlib.sha256(raw[state_at:state_at + state_len]).hexdigest()
    text = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
    assert len(text) <= manifest_len
    raw[HEADER_BYTES:state_at] = text + b" " * (manifest_len - len(text))
    raw[56:88] = hashlib.sha256(raw[HEADER_BYTES:state_at]).digest()
    raw[88:120] = hashlib.sha256(raw[:88]).digest()
    raw[-32:] = hashlib.sha256(raw[:-32]).digest()
    with open(dst, "wb") as f:
        f.write(raw)


def verify(c, path, level, check=True):
    return c.ctl("backup", "verify", path, "--level", str(level), check=check, timeout=120)


def test_backup_under_writer_restores_and_checks():
    with Cluster(topology="3") as c:
        leader = c.leader()
        work = os.path.join(c.dir, "backups")
        os.makedirs(work)
        writer = Writer(c, leader)
        writer.start()
        wait_until(lambda: len(writer.acked) >= 200 or writer.error, 30, "200 writes")
        asked_at = time.monotonic()
        path = os.path.join(work, "b1.tbk")
        answer = backup_create(c, path)
        after = len(writer.acked)
        wait_until(lambda: len(writer.acked) > after + 20 or writer.error, 30,
                   "writes after the backup")
        writer.stop_flag.set()
        writer.join(30)
        assert writer.error is None, writer.error
        m = answer["manifest"]
        index = m["applied_index"]
        before = [w for w in writer.acked if w[2] < asked_at]
        assert before and all(w[1] <= index for w in before), (index, before[-1])
        assert any(w[1] > index for w in writer.acked), "the writer went on during the backup"
        assert m["cluster_id"] == c.status(leader)["node"]["cluster_id"]
        assert m["counts"]["keys"] == sum(1 for w in writer.acked if w[1] <= index)

        # Levels 1, 2 and 3 pass on the intact file.
        for level in (1, 2, 3):
            p = verify(c, path, level)
            assert "level %d passed" % level in p.stdout, p.stdout

        # A flipped byte: level 1 names the part.
        size = os.path.getsize(path)
        for at, part in ((12, "header"), (HEADER_BYTES + 30, "manifest"),
                         (size // 2, "state"), (size - 1, "trailer")):
            bad = os.path.join(work, "flip-%d.tbk" % at)
            shutil.copy(path, bad)
            with open(bad, "r+b") as f:
                f.seek(at)
                byte = f.read(1)
                f.seek(at)
                f.write(bytes([byte[0] ^ 0x01]))
            p = verify(c, bad, 1, check=False)
            assert p.returncode == 1, (p.returncode, p.stderr)
            assert "%s damaged" % part in p.stderr, p.stderr

        # A structurally damaged state with consistent checksums: level 1 passes, 2 names it.
        broken = os.path.join(work, "broken.tbk")
        damage_state_rehash(path, broken)
        verify(c, broken, 1)
        p = verify(c, broken, 2, check=False)
        assert p.returncode == 1 and "state damaged" in p.stderr, (p.returncode, p.stderr)

        # Restore into a non-empty directory is refused and changes nothing.
        busy = os.path.join(work, "busy")
        os.makedirs(busy)
        with open(os.path.join(busy, "keep"), "w") as f:
            f.write("x")
        p = c.ctl("backup", "restore", path, "--data-dir", busy, "--name", "r1", check=False)
        assert p.returncode == 2 and "not empty" in p.stderr, (p.returncode, p.stderr)
        assert os.listdir(busy) == ["keep"]

        # Restore under a new cluster id (the default): the node starts at the manifest's index
        # and digest. Its configuration names the old east-1 as a second voter, so it keeps
        # asking the old cluster for votes; the old cluster's transport refuses every handshake
        # (cluster id), and it never leads, so nothing changes its state while it is compared.
        data = os.path.join(work, "r1", "data")
        p = c.ctl("-o", "json", "backup", "restore", path, "--data-dir", data, "--name", "r1")
        restored = json.loads(p.stdout)
        assert restored["cluster_id"] != m["cluster_id"], restored
        old = c.names[0]
        refused_before = refused_cluster(c, old)
        east1 = c.nodes[old]
        node = RestoredNode(c, "r1", data, restored["cluster_id"],
                            extra_members=["%s,%s,%s,%s,voter" % (old, east1["site"],
                                                                 east1["raft"], east1["api"])])
        try:
            node.start()
            digest = json.loads(node.get("/v1/digest")[2])
            assert digest["applied_index"] == index, (digest, index)
            assert digest["state_digest"] == m["state_digest"], (digest, m)
            assert digest["counts"] == m["counts"], (digest, m)
            for i, w_index, _ in writer.acked:
                key = "w-%05d" % i
                got = node.get("/v1/kv/%s?consistency=local" % key)
                if w_index <= index:
                    assert got[0] == 200 and got[2] == b"v%d" % i, (key, got[0])
                else:
                    assert got[0] == 404, (key, got[0])
            wait_until(lambda: refused_cluster(c, old) > refused_before, 20,
                       "the old cluster to refuse the restored node")
            assert sorted(x["name"] for x in c.status(old)["members"]) == sorted(c.names)
            c.kv_put(leader, "after-restore", b"ok")  # the old cluster goes on undisturbed
        finally:
            node.stop()

        # The restored directory refuses to start under the old cluster id.
        with open(node.conf) as f:
            conf = f.read()
        with open(node.conf, "w") as f:
            f.write(conf.replace("cluster_id = %s" % restored["cluster_id"],
                                 "cluster_id = %s" % m["cluster_id"]))
        node.start(wait=False)
        try:
            node.proc.wait(START_TIMEOUT_S)
        finally:
            node.stop()
        assert node.proc.returncode != 0
        assert "belongs to cluster" in node.log_tail(), node.log_tail()


def test_restored_node_runs_alone():
    """A restore seeds raft at the backup's index: a single restored voter leads, applies new
    writes after that index, and keeps the old state."""
    with Cluster(topology="3") as c:
        leader = c.leader()
        for i in range(50):
            c.kv_put(leader, "k-%02d" % i, b"x%d" % i)
        work = os.path.join(c.dir, "backups")
        os.makedirs(work)
        path = os.path.join(work, "b.tbk")
        m = backup_create(c, path)["manifest"]
        data = os.path.join(work, "solo", "data")
        c.ctl("backup", "restore", path, "--data-dir", data, "--name", "solo",
              "--new-cluster-id", "solo-cluster")
        node = RestoredNode(c, "solo", data, "solo-cluster")
        try:
            node.start()
            wait_until(lambda: node.get("/readyz")[0] == 200, START_TIMEOUT_S, "solo to lead")
            status, _, body = http("PUT", node.api + "/v1/kv/new", b"fresh", timeout=5)
            assert status == 200, body
            assert json.loads(body)["mod_index"] > m["applied_index"]
            assert http("GET", node.api + "/v1/kv/k-07", timeout=5)[2] == b"x7"
            assert not os.path.exists(os.path.join(data, "restored")), "the marker stays"
        finally:
            node.stop()


def test_sealed_backup_needs_its_key():
    """With backup_key_file the state is sealed (AES-256-GCM, highest id): level 1 passes without
    the key (the manifest stays readable), level 2 and a restore need it, the file does not hold
    the state in clear."""
    keys_dir = tempfile.mkdtemp(prefix="tandem-backup-keys-")
    key_file = os.path.join(keys_dir, "backup.keys")
    with open(key_file, "w") as f:
        f.write("1 %s\n2 %s\n" % ("ab" * 32, "cd" * 32))
    os.chmod(key_file, 0o600)
    try:
        with Cluster(topology="3", settings={"backup_key_file": key_file}) as c:
            leader = c.leader()
            c.kv_put(leader, "secret-looking-key", b"clear-text-marker-0123456789")
            work = os.path.join(c.dir, "backups")
            os.makedirs(work)
            path = os.path.join(work, "sealed.tbk")
            m = backup_create(c, path)["manifest"]
            assert m["encrypted"] is True and m["key_id"] == 2, m
            with open(path, "rb") as f:
                assert b"clear-text-marker-0123456789" not in f.read()
            verify(c, path, 1)
            p = verify(c, path, 2, check=False)
            assert p.returncode == 2 and "key 2" in p.stderr, (p.returncode, p.stderr)
            p = c.ctl("backup", "verify", path, "--level", "2", "--key-file", key_file)
            assert "level 2 passed" in p.stdout, p.stdout
            data = os.path.join(work, "r", "data")
            p = c.ctl("backup", "restore", path, "--data-dir", data, "--name", "r",
                      check=False)
            assert p.returncode == 2 and not os.path.exists(data), (p.returncode, p.stderr)
            c.ctl("backup", "restore", path, "--data-dir", data, "--name", "r", "--key-file",
                  key_file)
    finally:
        shutil.rmtree(keys_dir, ignore_errors=True)


# ---- streamed downloads ----------------------------------------------------------------------

BIG_VALUES = 40                # values of BIG_VALUE_BYTES: a state of about 36 MiB
BIG_VALUE_BYTES = 900 * 1024   # under the 1 MiB request body bound
STREAM_CHUNK_BYTES = 256 * 1024  # TANDEM_BACKUP_STREAM_CHUNK_BYTES: the file crosses ~140
DOWNLOAD_PATH = "/v1/backups/download"
CUT_AFTER_BYTES = 2 * 1024 * 1024  # the cutting proxy's bound on what reaches tandemctl
FSIZE_LIMIT_BYTES = 1024 * 1024    # tandemctl's file size bound in the "disk full" case
DOWNLOADS_MAX = 8                  # TANDEM_BACKUP_DOWNLOADS_MAX
STALL_TIMEOUT_S = 10               # backup_timeout_s: a reader taking nothing this long is cut


def rss_anon_kib(pid):
    """RssAnon of pid (KiB): the heap and anonymous maps, not LMDB's file-backed pages."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/%d/status" % pid)


class RssSampler(threading.Thread):
    """Samples RssAnon of pid every 20 ms until stopped (bounded by SAMPLES_MAX); peak in KiB."""
    SAMPLES_MAX = 30000

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak = pid, rss_anon_kib(pid)
        self.stop_flag = threading.Event()

    def run(self):
        for _ in range(self.SAMPLES_MAX):
            if self.stop_flag.wait(0.02):
                break
            self.peak = max(self.peak, rss_anon_kib(self.pid))


def fill_big(c, leader):
    for i in range(BIG_VALUES):
        c.kv_put(leader, "big-%02d" % i, os.urandom(BIG_VALUE_BYTES), timeout=30)


def download_dir(c, name):
    return os.path.join(c.nodes[name]["dir"], "data", "backups", "download")


def download_dir_files(c, name):
    d = download_dir(c, name)
    assert os.path.isdir(d), d
    return os.listdir(d)


def metric(c, name, line_start):
    status, _, body = c.api(name, "GET", "/metrics")
    assert status == 200, body
    for line in body.decode().splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    raise AssertionError("no %s in /metrics" % line_start)


def raw_download(c, name, path=None):
    """Sends POST /v1/backups/download (or GET path) on a raw (TLS) socket and reads the head;
    returns (socket, status, headers dict (lower-case names), first body bytes)."""
    sock = tls_socket(c.url(name), timeout=60)
    host = c.url(name).split("://", 1)[1]
    if path is None:
        sock.sendall(("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: 2\r\n\r\n{}" % (DOWNLOAD_PATH, host)).encode())
    else:
        sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, "closed before the head: %r" % data[:200]
        data += more
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return sock, int(lines[0].split()[1]), headers, body


def recv_exactly(sock, have, total):
    chunks, got = [have], len(have)
    while got < total:
        more = sock.recv(min(1 << 20, total - got))
        assert more, "closed after %d of %d bytes" % (got, total)
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def ctl_environment(c, endpoints):
    """The environment c.ctl gives tandemctl: the cluster's TLS settings and these endpoints."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TANDEM_CACERT", "TANDEM_CERT", "TANDEM_KEY")}
    env.update(c.ctl_env(), TANDEM_ENDPOINTS=",".join(endpoints))
    return env


def ctl_limited(c, args, endpoints, fsize_bytes):
    """tandemctl with the cluster's TLS settings under RLIMIT_FSIZE (SIGXFSZ ignored: a write past
    it fails with EFBIG, as a full disk fails with ENOSPC)."""
    env = ctl_environment(c, endpoints)

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_bytes, fsize_bytes))

    return subprocess.run([os.path.join(c.bin_dir, "tandemctl")] + args, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                          preexec_fn=limit)


class CuttingProxy(threading.Thread):
    """Relays TCP connections (TLS passes through untouched) from a local port to target_port,
    closing a connection once more than cut_after bytes came back from the target (stall: holding
    it open, relaying nothing more, until stopped)."""

    def __init__(self, target_port, cut_after, stall=False):
        super().__init__(daemon=True)
        self.target_port, self.cut_after, self.stall = target_port, cut_after, stall
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stop_flag = threading.Event()
        self.cuts = 0

    def pipe(self, src, dst, bound):
        moved = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if bound is not None and moved + len(data) > bound:
                    self.cuts += 1
                    if self.stall:
                        self.stop_flag.wait(120)
                    break
                dst.sendall(data)
                moved += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run(self):
        while not self.stop_flag.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=60)
            client.settimeout(60)
            threading.Thread(target=self.pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self.pipe, args=(server, client, self.cut_after),
                             daemon=True).start()
        self.listener.close()


def without_asan_quarantine():
    """The environment's ASAN_OPTIONS with ASan's quarantine off, for an ASan tandemd: freed
    memory otherwise stays resident (up to 256 MiB), so the memory a download needs could not be
    told from what it freed. Unchanged for other builds."""
    options = os.environ.get("ASAN_OPTIONS", "")
    if not asan_build(os.path.join(BIN_DIR, "tandemd")):
        return options
    return (options + ":" if options else "") + "quarantine_size_mb=0"


def test_download_streamed():
    """One cluster holding ~36 MiB of values (well over the stream's 1 MiB queue; ~140 read
    chunks) for every streamed-download case below."""
    saved = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = without_asan_quarantine()  # inherited by the cluster's nodes
    try:
        downloads_streamed()
    finally:
        if saved is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = saved


def downloads_streamed():
    with Cluster(topology="3", settings={"backup_timeout_s": STALL_TIMEOUT_S}) as c:
        leader = c.settled_leader()
        fill_big(c, leader)
        work = os.path.join(c.dir, "backups")
        os.makedirs(work)
        download_in_bounded_memory(c, leader, work)
        download_reader_pauses_and_leaves(c, leader, work)
        download_after_a_503(c, c.settled_leader(), work)
        download_cut_or_refused_leaves_nothing(c, leader, work)


def download_in_bounded_memory(c, leader, work):
    """The backup goes from the leader to tandemctl, asked through a follower (307 to the
    leader): it verifies at level 2, tandemd's anonymous memory grows by far less than the file,
    the file taken for it is gone from the leader. GET /v1/backups/<name> streams a kept backup
    with the same headers."""
    follower = next(n for n in c.names if n != leader)
    status, headers, body = c.api(follower, "POST", DOWNLOAD_PATH, body={})
    assert status == 307, (status, body)
    assert headers["Location"] == c.url(leader) + DOWNLOAD_PATH, headers["Location"]

    pid = c.nodes[leader]["pid"]
    sampler = RssSampler(pid)
    before = sampler.peak
    sampler.start()
    path = os.path.join(work, "big.tbk")
    p = c.ctl("-o", "json", "backup", "create", "--out", path, timeout=120,
              endpoints=[c.url(follower)])
    sampler.stop_flag.set()
    sampler.join(10)
    answer = json.loads(p.stdout)
    size = os.path.getsize(path)
    assert size > BIG_VALUES * BIG_VALUE_BYTES and size > 100 * STREAM_CHUNK_BYTES, size
    assert answer["bytes"] == size and answer["node"] == leader, answer
    assert not os.path.exists(path + ".part")
    grown_kib = sampler.peak - before
    assert grown_kib * 1024 < size // 2, (grown_kib, size)
    print("download of %d bytes: tandemd RssAnon grew by %d KiB at most" % (size, grown_kib))
    p = verify(c, path, 2)
    assert "level 2 passed" in p.stdout, p.stdout
    assert answer["manifest"]["counts"]["keys"] == BIG_VALUES, answer["manifest"]["counts"]
    wait_until(lambda: download_dir_files(c, leader) == [], 10, "the file taken removed")
    assert metric(c, leader, 'tandem_backup_downloads_total{result="complete"}') == 1

    # A kept backup (POST /v1/backups) through GET: the same bytes its trailer announces.
    kept = json.loads(c.api(leader, "POST", "/v1/backups", body={}, timeout=60)[2])
    status, headers, body = c.api(leader, "GET", "/v1/backups/" + kept["name"], timeout=60)
    assert status == 200 and len(body) == kept["bytes"], (status, len(body))
    assert headers["X-Tandem-Backup-Sha256"] == body[-32:].hex()
    assert hashlib.sha256(body[:-32]).hexdigest() == body[-32:].hex()
    # HEAD: the head with the file's length, and no byte after it before the close.
    sock = tls_socket(c.url(leader), timeout=30)
    sock.sendall(("HEAD /v1/backups/%s HTTP/1.1\r\nHost: x\r\n\r\n" % kept["name"]).encode())
    raw = b""
    for _ in range(10000):
        more = sock.recv(65536)
        if not more:
            break
        raw += more
    sock.close()
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"\r\n\r\n"), raw[:300]
    assert ("Content-Length: %d\r\n" % kept["bytes"]).encode() in raw, raw[:300]
    # At most 8 downloads at once per node (readers that do not read hold theirs): 503 beyond.
    held = [raw_download(c, leader, "/v1/backups/" + kept["name"]) for _ in range(DOWNLOADS_MAX)]
    assert all(h[1] == 200 for h in held), [h[1] for h in held]
    status, headers, body = c.api(leader, "GET", "/v1/backups/" + kept["name"])
    assert status == 503 and headers["Retry-After"] and b"at once" in body, (status, body)
    for h in held:
        h[0].close()
    wait_until(lambda: metric(c, leader, "tandem_backup_downloads_open ") == 0, 10, "all closed")
    status, _, body = c.api(leader, "GET", "/v1/backups/" + kept["name"], timeout=60)
    assert status == 200 and len(body) == kept["bytes"], (status, len(body))
    status, _, body = c.api(leader, "GET", "/v1/backups/nope-1.tbk")
    assert status == 404 and b"error" in body, (status, body)


def download_reader_pauses_and_leaves(c, leader, work):
    """A reader that stops reading is waited for (the node reads no further than its queue's
    bound; nothing is dropped) up to backup_timeout_s; a reader that leaves mid-way frees the
    stream and the file taken for it, and the node goes on serving."""
    pid = c.nodes[leader]["pid"]

    # Pausing for 2 s after the first MiB: the rest still arrives, whole.
    sock, status, headers, body = raw_download(c, leader)
    assert status == 200, (status, headers, body[:200])
    total = int(headers["content-length"])
    first = recv_exactly(sock, body, 1 << 20)
    before = rss_anon_kib(pid)
    time.sleep(2)
    paused_growth_kib = rss_anon_kib(pid) - before
    assert paused_growth_kib * 1024 < total // 4, (paused_growth_kib, total)
    data = recv_exactly(sock, first, total)
    sock.close()
    assert headers["x-tandem-backup-sha256"] == data[-32:].hex()
    assert hashlib.sha256(data[:-32]).hexdigest() == data[-32:].hex()
    assert int(headers["x-tandem-backup-index"]) > 0
    wait_until(lambda: download_dir_files(c, leader) == [], 10, "the paused one's file gone")

    # Leaving after 512 KiB: the stream is freed, its file removed.
    cut_before = metric(c, leader, 'tandem_backup_downloads_total{result="cut"}')
    sock, status, headers, body = raw_download(c, leader)
    assert status == 200
    recv_exactly(sock, body, 512 * 1024)
    assert download_dir_files(c, leader) != [], "the file is there while it is sent"
    sock.close()
    wait_until(lambda: download_dir_files(c, leader) == [], 10, "the cut one's file gone")
    wait_until(lambda: metric(c, leader, "tandem_backup_downloads_open ") == 0, 10,
               "no download open")
    assert metric(c, leader, 'tandem_backup_downloads_total{result="cut"}') == cut_before + 1
    assert c.status(leader)["node"]["name"] == leader

    # Connected but taking nothing for backup_timeout_s: closed by the node, its file removed.
    sock, status, headers, body = raw_download(c, leader)
    assert status == 200
    try:
        wait_until(lambda: metric(c, leader, 'tandem_backup_downloads_total{result="cut"}')
                   == cut_before + 2, STALL_TIMEOUT_S + 20, "the silent reader cut")
    finally:
        sock.close()
    wait_until(lambda: download_dir_files(c, leader) == [], 10, "the silent one's file gone")


class FalseLeader(threading.Thread):
    """An HTTPS endpoint with node name's certificate that names itself the leader in GET
    /v1/status and answers everything else 503 (a node that lost its leader right after), counting
    those; stopped with stop_flag."""

    def __init__(self, c, name):
        super().__init__(daemon=True)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(c.tls_path(name + ".pem"), c.tls_path(name + ".key"))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.stop_flag = threading.Event()
        self.refused = 0

    def answer(self, tls):
        tls.settimeout(5)
        request = tls.recv(65536)
        if request.startswith(b"GET /v1/status"):
            status, body = b"200 OK", json.dumps({"leader": {"api": self.url}}).encode()
        else:
            status, body = b"503 Service Unavailable", b'{"error":"no leader"}'
            self.refused += 1
        tls.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n%s" % (status, len(body), body))

    def run(self):
        while not self.stop_flag.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.answer(tls)
            except OSError:
                pass
        self.listener.close()


def download_after_a_503(c, leader, work):
    """The endpoint asked first answers the download 503 (it lost its leader): the download the
    next endpoint sends still goes to FILE."""
    busy = FalseLeader(c, leader)
    busy.start()
    path = os.path.join(work, "after-503.tbk")
    try:
        p = c.ctl("-o", "json", "backup", "create", "--out", path, timeout=120,
                  endpoints=[busy.url, c.url(leader)])
    finally:
        busy.stop_flag.set()
        busy.join(5)
    assert busy.refused >= 1
    assert json.loads(p.stdout)["bytes"] == os.path.getsize(path), p.stdout
    verify(c, path, 1)
    assert not os.path.exists(path + ".part")


def download_cut_or_refused_leaves_nothing(c, leader, work):
    """A transfer cut on its way to tandemctl or refused by its disk exits non-zero with one
    line and leaves neither FILE nor FILE.part; the node then serves a whole download."""
    # Cut on its way to tandemctl: exit non-zero, one line, no FILE, no FILE.part.
    proxy = CuttingProxy(int(c.url(leader).rsplit(":", 1)[1]), CUT_AFTER_BYTES)
    proxy.start()
    try:
        path = os.path.join(work, "cut.tbk")
        p = c.ctl("backup", "create", "--out", path, check=False, timeout=120,
                  endpoints=["%s://127.0.0.1:%d" % (c.scheme, proxy.port)])
    finally:
        proxy.stop_flag.set()
        proxy.join(5)
    assert proxy.cuts >= 1
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, (p.returncode,
                                                                           p.stderr)
    assert "cut" in p.stderr, p.stderr
    assert not os.path.exists(path) and not os.path.exists(path + ".part")
    wait_until(lambda: download_dir_files(c, leader) == [], 10, "the proxied one's file gone")

    # Interrupted (SIGINT) while the transfer stalls: one line, no FILE, no FILE.part.
    proxy = CuttingProxy(int(c.url(leader).rsplit(":", 1)[1]), CUT_AFTER_BYTES, stall=True)
    proxy.start()
    path = os.path.join(work, "interrupted.tbk")
    env = ctl_environment(c, ["%s://127.0.0.1:%d" % (c.scheme, proxy.port)])
    ctl = subprocess.Popen([os.path.join(c.bin_dir, "tandemctl"), "backup", "create", "--out",
                            path], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        wait_until(lambda: proxy.cuts >= 1, 60, "the transfer to stall")
        ctl.send_signal(signal.SIGINT)
        _, stderr = ctl.communicate(timeout=30)
    finally:
        if ctl.poll() is None:
            ctl.kill()
            ctl.wait(10)
        proxy.stop_flag.set()
        proxy.join(5)
    assert ctl.returncode != 0 and stderr.strip().endswith("interrupted; nothing saved"), (
        ctl.returncode, stderr)
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not os.path.exists(path) and not os.path.exists(path + ".part")
    wait_until(lambda: download_dir_files(c, leader) == [], 10, "the stalled one's file gone")

    # The disk refuses more than 1 MiB: the error says so, nothing is left.
    path = os.path.join(work, "full.tbk")
    p = ctl_limited(c, ["backup", "create", "--out", path], c.endpoints, FSIZE_LIMIT_BYTES)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, (p.returncode,
                                                                           p.stderr)
    assert "File too large" in p.stderr and "full.tbk.part" in p.stderr, p.stderr
    assert not os.path.exists(path) and not os.path.exists(path + ".part")

    # And the node still serves a whole download.
    path = os.path.join(work, "after.tbk")
    c.ctl("backup", "create", "--out", path, timeout=120)
    verify(c, path, 1)
    wait_until(lambda: download_dir_files(c, leader) == [], 10, "the last file gone")

    # Stopped (SIGTERM) while a download is open: it exits, and the stop itself removed the file.
    pid = c.nodes[leader]["pid"]
    sock, status, _, _ = raw_download(c, leader)
    assert status == 200 and download_dir_files(c, leader) != []
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: not pid_alive(pid), STOP_TIMEOUT_S, "the leader to stop")
    finally:
        sock.close()
    c.nodes[leader]["pid"] = None
    assert download_dir_files(c, leader) == []


if __name__ == "__main__":
    run_tests()
