"""Integration test of the reads that grow with the state and run on the thread pool
(node/pool_read.h) on a 3-node cluster of real tandemd processes: rebalance plans and full-state
digests pipelined on one connection beyond the bound (2 running, 32 waiting) are answered, in
order, with correct results up to the bound and 503 with Retry-After and a JSON body past it; a
client that sends slow reads and leaves before the answers leaves the node serving; the node
stops cleanly with such reads in flight; and the digest of every member at one index
(GET /v1/digest?at=N, a BCP drill's parity check) agrees while writes go on, where digests asked
at the same moment rarely stand at the same index."""

import json
import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bcp_load import Load  # noqa: E402
from cluster import Cluster, pid_alive, run_tests, tls_socket, wait_until  # noqa: E402

BOUND = 2 + 32            # TANDEM_POOL_READS_RUNNING_MAX + TANDEM_POOL_READS_WAITING_MAX
VALUE_BYTES = 512 * 1024  # values that make a digest slow enough to keep the queue full
VALUES = 32               # 16 MiB of state: a digest takes tens of milliseconds or more
JOBS = 20
PLANS_FIRST = 8           # before the digests: accepted, answered with the plan
DIGESTS = 60              # more than the bound: the queue fills up
PLANS_LAST = 8            # after them: refused while the digests wait
ANSWER_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 30
WRITE_ATTEMPTS = 60       # 503s ridden out by the preload, 0.5 s apart
AT_ROUNDS = 10            # digest rounds at an index under load, and as many at once
AT_MARGIN = 30            # entries past the leader's applied index the round asks for
AT_WAIT_MS = 10000
LOAD_LIMIT_S = 120        # the writers' own bound


def write(c, method, path, body, ok):
    """A write through whoever leads, again after a 503 (an election on a loaded machine); a 409
    after a retry means the first attempt was applied after all."""
    for attempt in range(WRITE_ATTEMPTS):
        status, _, answer = c.api(c.leader(), method, path, body, timeout=REQUEST_TIMEOUT_S)
        if status == ok or (attempt > 0 and status == 409):
            return
        assert status == 503, (path, status, answer)
        time.sleep(0.5)
    raise AssertionError("%s %s: 503 %d times" % (method, path, WRITE_ATTEMPTS))


def preload(c):
    value = os.urandom(VALUE_BYTES // 2).hex().encode()
    for i in range(VALUES):
        write(c, "PUT", "/v1/kv/big-%03d" % i, value, 200)
    for i in range(JOBS):
        job = {"id": "P%02d" % i, "client": "acme", "kind": "scan", "site": "east", "effort": 5}
        write(c, "POST", "/v1/jobs", job, 201)
    for site, capacity in (("east", 10), ("west", 50)):
        c.ctl("site", "set-capacity", site, capacity)


def request(path):
    return ("GET %s HTTP/1.1\r\nHost: tandem\r\n\r\n" % path).encode()


def read_answers(sock, count):
    """count HTTP/1.1 answers from sock: [(status, headers dict lower-cased, body bytes)]."""
    buf, answers = b"", []
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while len(answers) < count:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = buf[:head_end].decode().split("\r\n")
            headers = dict((k.strip().lower(), v.strip())
                           for k, v in (line.split(":", 1) for line in lines[1:]))
            length = int(headers.get("content-length", "0"))
            if len(buf) >= head_end + 4 + length:
                body = buf[head_end + 4:head_end + 4 + length]
                answers.append((int(lines[0].split()[1]), headers, body))
                buf = buf[head_end + 4 + length:]
                continue
        assert time.monotonic() < deadline, "%d of %d answers" % (len(answers), count)
        chunk = sock.recv(65536)
        assert chunk, "connection closed after %d of %d answers" % (len(answers), count)
        buf += chunk
    return answers


def assert_refusal(status, headers, body):
    assert status == 503, (status, body)
    assert headers.get("retry-after") == "1", headers
    error = json.loads(body)["error"]
    assert "reads of the whole state" in error and "retry later" in error, error


def burst_past_the_bound(c, leader):
    """Plans, digests, plans pipelined on one connection: the first plans and digests up to the
    bound are answered with results, the rest refused."""
    want_digest = c.get_json(leader, "/v1/digest", timeout=REQUEST_TIMEOUT_S)["data_digest"]
    done_before = c.metric(leader, "tandem_pool_reads_total")
    refused_before = c.metric(leader, "tandem_pool_reads_refused_total")
    plan = "/v1/rebalance/plan?consistency=local"
    burst = ([request(plan)] * PLANS_FIRST + [request("/v1/digest")] * DIGESTS +
             [request(plan)] * PLANS_LAST)
    sock = tls_socket(c.url(leader), timeout=ANSWER_TIMEOUT_S)
    try:
        sock.sendall(b"".join(burst))  # pipelined: handed to the node in one or few reads
        answers = read_answers(sock, len(burst))
    finally:
        sock.close()
    plans, digests = answers[:PLANS_FIRST], answers[PLANS_FIRST:PLANS_FIRST + DIGESTS]
    late_plans = answers[PLANS_FIRST + DIGESTS:]
    ids = set()
    for status, _, body in plans:
        assert status == 200, (status, body)
        got = json.loads(body)
        assert got["moves"], got  # east is overloaded: the plan moves work to west
        ids.add(got["id"])
    assert len(ids) == 1, ids  # the same state, the same plan
    refused = 0
    for status, headers, body in digests:
        if status == 200:
            assert json.loads(body)["data_digest"] == want_digest, body
        else:
            assert_refusal(status, headers, body)
            refused += 1
    accepted = PLANS_FIRST + DIGESTS - refused
    print("%d reads accepted, %d refused" % (accepted, refused + len(late_plans)))
    assert accepted >= BOUND and refused >= 1, (accepted, refused)
    for status, headers, body in late_plans:  # the digests still fill the queue
        assert_refusal(status, headers, body)
    # /metrics counts them; nothing runs or waits once all are answered.
    assert c.metric(leader, "tandem_pool_reads_refused_total") - refused_before == \
        refused + len(late_plans)
    assert c.metric(leader, "tandem_pool_reads_total") - done_before >= accepted
    assert c.metric(leader, "tandem_pool_reads_running") == 0
    assert c.metric(leader, "tandem_pool_reads_waiting") == 0
    # Served afterwards as usual.
    status, _, body = c.api(leader, "GET", plan, timeout=REQUEST_TIMEOUT_S)
    assert status == 200 and json.loads(body)["id"] in ids, (status, body)


def client_leaving_then_stop(c, leader):
    """A client that sends slow reads and leaves; then a stop with reads queued."""
    pid = c.nodes[leader]["pid"]
    sock = tls_socket(c.url(leader), timeout=REQUEST_TIMEOUT_S)
    sock.sendall(request("/v1/digest") * 20)
    sock.close()  # gone before any answer
    time.sleep(0.2)
    status, _, body = c.api(leader, "GET", "/v1/digest", timeout=REQUEST_TIMEOUT_S)
    assert status == 200 and json.loads(body)["data_digest"], (status, body)
    assert pid_alive(pid)
    # A stop with reads queued: the store closes after the last one, the node says stopped.
    sock = tls_socket(c.url(leader), timeout=REQUEST_TIMEOUT_S)
    sock.sendall(request("/v1/digest") * 20)
    time.sleep(0.05)
    c.stop(leader)
    sock.close()
    wait_until(lambda: not pid_alive(pid), 30, "%s to exit" % leader)
    tail = c.log_tail(leader, 5)
    assert "%s: stopped" % leader in tail and "fatal" not in tail, tail


def digests_of_all(c, path):
    """GET path from every member at once: {name: (status, answer)}."""
    answers = {}

    def ask(name):
        status, _, body = c.api(name, "GET", path, timeout=AT_WAIT_MS / 1000 + 10)
        answers[name] = (status, json.loads(body))
    threads = [threading.Thread(target=ask, args=(n,)) for n in c.names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_digests_at_an_index_agree_under_writes():
    with Cluster(topology="2+2+1") as c:
        leader = c.settled_leader()
        urls = [c.nodes[n]["api"] for n in c.names if c.nodes[n]["site"] != "witness"]
        load = Load(urls, "at", writers_per_url=2, limit_s=LOAD_LIMIT_S).start()
        try:
            wait_until(lambda: len(load.acked) >= 200, 60, "the writers under way")
            agreed = at_once_same = 0
            for _ in range(AT_ROUNDS):
                at = c.status(leader)["node"]["applied_index"] + AT_MARGIN
                answers = digests_of_all(c, "/v1/digest?at=%d&wait_ms=%d" % (at, AT_WAIT_MS))
                if any(status == 409 for status, _ in answers.values()):
                    continue  # one had passed it already: the round proves nothing either way
                assert all(status == 200 for status, _ in answers.values()), answers
                indexes = {a["applied_index"] for _, a in answers.values()}
                digests = {a["state_digest"] for _, a in answers.values()}
                assert len(indexes) == 1 and min(indexes) >= at, (at, answers)
                assert len(digests) == 1, (at, answers)
                agreed += 1
                plain = digests_of_all(c, "/v1/digest")
                at_once_same += len({a["applied_index"] for _, a in plain.values()}) == 1
            print("MEASURED under %d writers: %d of %d rounds at an index agreed; asked at once, "
                  "the members stood at one index in %d of %d" % (
                      2 * len(urls), agreed, AT_ROUNDS, at_once_same, agreed), flush=True)
            assert agreed >= AT_ROUNDS // 2, (agreed, AT_ROUNDS)

            # Refusals: a bad index or wait, an index already passed, one not reached in time.
            for path, want, words in (("/v1/digest?at=x", 400, "at must be"),
                                      ("/v1/digest?at=0", 400, "at must be"),
                                      ("/v1/digest?at=5&wait_ms=99999999", 400, "wait_ms must be"),
                                      ("/v1/digest?at=1", 409, "is past 1"),
                                      ("/v1/digest?at=999999999&wait_ms=200", 503,
                                       "did not reach 999999999")):
                status, headers, body = c.api(leader, "GET", path)
                assert status == want, (path, status, body)
                assert words in json.loads(body)["error"], (path, body)
                if status == 503:
                    assert headers["Retry-After"] == "1", dict(headers)
        finally:
            load.stop()
        assert load.summary()["failed"] == 0, load.failed[:5]
        # A node stopping with a digest waiting for an index answers it (503), then exits.
        waiting = {}
        follower = next(n for n in c.names if n != leader)

        def ask_far():
            waiting["answer"] = c.api(follower, "GET", "/v1/digest?at=999999999&wait_ms=30000",
                                      timeout=60)
        t = threading.Thread(target=ask_far)
        t.start()
        time.sleep(0.5)
        c.stop(follower)
        t.join(60)
        status, _, body = waiting["answer"]
        assert status == 503 and "shutting down" in json.loads(body)["error"], (status, body)


def test_reads_past_the_bound_a_client_leaving_and_a_stop():
    with Cluster(topology="3") as c:
        preload(c)
        leader = c.leader()
        burst_past_the_bound(c, leader)
        client_leaving_then_stop(c, leader)


if __name__ == "__main__":
    run_tests()
