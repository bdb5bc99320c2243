#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): small valid and
nearly valid inputs from which libFuzzer mutates. Run from anywhere; protoc-c encodes the
command seeds; the TLS ClientHellos differ on every run (their random fields). The files are
committed; rerun after a format changes.
Usage: make_seeds.py [CORPUS_DIR]"""
import os
import ssl
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")

# libraft message types (raft.h) and entry types
REQUEST_VOTE, REQUEST_VOTE_RESULT, APPEND_ENTRIES, APPEND_ENTRIES_RESULT = 1, 2, 3, 4
INSTALL_SNAPSHOT, TIMEOUT_NOW = 5, 6
COMMAND, BARRIER, CHANGE = 1, 2, 3


def write(target, name, data):
    directory = os.path.join(OUT, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def u64(*values):
    return b"".join(struct.pack("<Q", v) for v in values)


def preamble(kind, version, header_len):
    return u64(kind | version << 16, header_len)


def conf(n):
    body = bytes([1]) + u64(n)
    for i in range(n):
        body += u64(i + 1) + b"127.0.0.1:900%d\0" % i + bytes([1])
    return body + b"\0" * (-len(body) % 8)


def request_vote(term=1, last_term=0, flags=0):
    return preamble(REQUEST_VOTE, 2, 40) + u64(term, 7, 10, last_term, flags)


def append_entries(term, entries):
    """entries: list of (type, payload bytes)."""
    header = u64(term, 5, term, 4, len(entries))
    for kind, payload in entries:
        header += u64(term) + bytes([kind, 0, 0, 0]) + struct.pack("<I", len(payload))
    header += u64(0)
    return preamble(APPEND_ENTRIES, 0, len(header)) + header + b"".join(p for _, p in entries)


def install_snapshot(term, servers, data):
    c = conf(servers)
    header = u64(term, 100, term, 90, len(c)) + c + u64(len(data), 0)
    return preamble(INSTALL_SNAPSHOT, 0, len(header)) + header + data


def frames():
    yield "request_vote", request_vote()
    yield "request_vote_disrupt", request_vote(5, 4, 3)
    yield "request_vote_result", preamble(REQUEST_VOTE_RESULT, 2, 24) + u64(1, 1, 0)
    yield "append_result", preamble(APPEND_ENTRIES_RESULT, 1, 32) + u64(1, 0, 10, 0)
    yield "timeout_now", preamble(TIMEOUT_NOW, 0, 24) + u64(3, 10, 2)
    yield "heartbeat", append_entries(2, [])
    yield "append_entries", append_entries(2, [(COMMAND, b"\xab" * 24), (BARRIER, b"\0" * 8),
                                               (CHANGE, conf(2))])
    yield "install_snapshot", install_snapshot(3, 3, b"\xcd" * 32)
    yield "two_frames", request_vote() + append_entries(1, [(COMMAND, b"x" * 8)])


def hello(cluster=b"prod", address=b"raw-1|west|127.0.0.1:1|http://127.0.0.1:1", epoch=1,
          raft_id=42, flags=0):
    out = b"TNDMHELO" + struct.pack("<II", 2, len(address)) + u64(epoch, raft_id, flags)
    out += cluster.ljust(64, b"\0") + address.ljust(296, b"\0")
    assert len(out) == 400
    return out


def transport():
    # The target's first byte: 0 = the input is the whole stream; else a valid hello goes first.
    yield "hello_only", b"\0" + hello()
    yield "hello_probe", b"\0" + hello(flags=1)
    yield "hello_other_cluster", b"\0" + hello(cluster=b"other")
    yield "hello_newer_epoch", b"\0" + hello(epoch=7)
    yield "hello_version_1", b"\0" + hello()[:8] + struct.pack("<I", 1) + hello()[12:392]
    for name, frame in frames():
        yield "after_hello_" + name, b"\1" + frame


def protoc_encode(text):
    proto = os.path.join(ROOT, "replication", "tandem.proto")
    return subprocess.run(["protoc-c", "--proto_path=" + os.path.dirname(proto),
                           "--encode=tandem.Batch", proto], input=text.encode(),
                          stdout=subprocess.PIPE, check=True).stdout


ACTOR = 'actor { user: "alice" site: "east" }'
COMMANDS = {
    "kv_put": 'commands { kv_put { key: "k" value: "v" } }',
    "kv_put_delete": 'commands { kv_put { key: "k" value: "v" } } '
                     'commands { kv_delete { key: "k" } }',
    "txn": 'commands { kv_put { key: "a" value: "1" } } commands { txn { '
           'compare { key: "a" target: VALUE op: EQ value: "1" } '
           'compare { key: "b" target: EXISTS exists: false } '
           'success { kind: PUT key: "b" value: "2" } success { kind: GET key: "a" } '
           'failure { kind: DELETE key: "a" } } }',
    "job_create_actions": 'commands { job_create { %s job { id: "J-1" client: "acme" '
                          'kind: "scan" stages: "intake" stages: "scan" stages: "qa" site: "east" '
                          'effort: 5 has_due: true due_ms: 1767225600000 priority: 2 '
                          'individual_number: "123456789012" } } } '
                          'commands { job_action { %s id: "J-1" action: 1 } } '
                          'commands { job_action { %s id: "J-1" action: 2 operator: "bob" } }'
                          % (ACTOR, ACTOR, ACTOR),
    "boxes": 'commands { box_checkin { %s bulk: true boxes { id: "B-1" ledger: "L-1" '
             'client: "acme" volumes: "v1" site: "east" shelf: "A-1" has_retain_until: true '
             'retain_until_ms: 1767225600000 } '
             'boxes { id: "B-2" ledger: "L-2" client: "acme" site: "west" } } } '
             'commands { box_action { %s id: "B-1" action: 1 job: "J-1" } } '
             'commands { box_action { %s id: "B-2" action: 2 site: "east" shelf: "B-2" } }'
             % (ACTOR, ACTOR, ACTOR),
    "purge": 'commands { retention_purge { %s cutoff_ms: 1700000000000 retention_days: 90 '
             'events_max: 100 } }' % ACTOR,
    "capacity_rebalance": 'commands { capacity_set { %s site: "east" capacity: 10 } } '
                          'commands { rebalance_apply { %s plan_id: "p1" index: 1 '
                          'objective: "balance" moves { job: "J-1" from: "east" to: "west" '
                          'effort: 5 } } }' % (ACTOR, ACTOR),
    "sites": 'commands { site_update { action: REGISTER site: "east" by: "config" } } '
             'commands { site_update { action: REGISTER site: "west" by: "config" } } '
             'commands { site_update { action: REGISTER site: "witness" witness: true } } '
             'commands { site_update { action: PREFER site: "east" by: "admin" } } '
             'commands { site_update { action: INVOKE site: "west" reason: "drill" by: "admin" } } '
             'commands { site_update { action: REVOKE site: "west" by: "admin" failback: true } } '
             'commands { site_update { action: RECOVERED site: "west" by: "admin" } }',
    "forced": 'commands { site_update { action: REGISTER site: "east" } } '
              'commands { site_update { action: INVOKE site: "east" force: true by: "admin" '
              'lost_members: "east-1" history { epoch: 2 seed: "west-1" first_index: 1 '
              'last_index: 10 last_term: 3 start_terms: 1 start_terms: 3 start_indexes: 1 '
              'start_indexes: 5 } } }',
    "records": 'commands { site_decision { action: "demote" member: "east-2" site: "east" '
               'from_role: "voter" to_role: "standby" reason: "down" by: "controller" } } '
               'commands { member_home_set { members { name: "east-1" site: "east" '
               'address: "east-1|east|127.0.0.1:7001|http://127.0.0.1:8001" role: 0 } '
               'members { name: "gone" forget: true } } } '
               'commands { drill_store { record { id: "d1" site: "east" started_ms: 1 '
               'finished_ms: 2 ok: true rto_ms: 1 report_json: "{}" } } } '
               'commands { incident_store { record { decision_seq: 1 site: "east" '
               'kind: "auto" decided_ms: 1 longest_write_gap_ms: -1 report_json: "{}" } } }',
}


def commands():
    for name, body in COMMANDS.items():
        yield name, protoc_encode("proposer_id: 1 serial: 1 now_ms: 1767225600000 " + body)


def configs():
    ini = ("[identity]\nname = east-1\nsite = east\ncluster_id = prod\n"
           "data_dir = /var/lib/tandem\nraft_address = 127.0.0.1:7001\n"
           "api_address = 127.0.0.1:8001\ninsecure = true\n"
           "member = east-1,east,127.0.0.1:7001,http://127.0.0.1:8001\n"
           "member = west-1,west,127.0.0.1:7002,http://127.0.0.1:8002\n"
           "member = w-1,witness,127.0.0.1:7003,http://127.0.0.1:8003,voter\n"
           "[raft]\nheartbeat_ms = 75\nelection_timeout_ms = 750\n"
           "[bcp]\nbcp_event_command = /bin/sh -c 'cat >/dev/null'\nmode = sync\n")
    yield "file_only", ini
    yield "flags_and_file", "--name=west-1\n--site\nwest\n--log_level=debug\n\0" + ini
    yield "flags_only", ("--name=east-1\n--site=east\n--cluster_id=prod\n--data_dir=/tmp/x\n"
                         "--raft_address=127.0.0.1:7001\n--api_address=[::1]:8001\n--insecure\n"
                         "--member=east-1,east,127.0.0.1:7001,http://127.0.0.1:8001\n\0")
    yield "bad_line", "[x]\nname = a\n  indented = 1\nnot an option line\n"
    yield "print_config", "--print-config\n\0" + ini


HTTP_REQUESTS = {
    "get": "GET /v1/kv/a%20b?consistency=local&x=1+2 HTTP/1.1\r\nHost: n\r\n\r\n",
    "pipelined": "GET / HTTP/1.1\r\n\r\nPOST /later?q=%41 HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
                 "hello" "HEAD /x HTTP/1.1\r\nConnection: close\r\n\r\n",
    "chunked": "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "continue": "PUT /v1/kv/k HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    "http10": "GET /stream HTTP/1.0\r\nX-Tandem-User: bob\r\n\r\n",
    "error": "GET /error/%E2%82%AC%ff?q=%zz HTTP/1.1\r\nX-Tandem-User: \xff\r\n\r\n",
    "bad_version": "GET / HTTP/9.9\r\n\r\n",
    "bad_field": "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
    "many_fields": "GET / HTTP/1.1\r\n" + "".join("F%d: v\r\n" % i for i in range(70)) + "\r\n",
}

# One API request a line: name, method, target, then the body (the rest of the line, if any).
API_TEXT = r"""
kv_put PUT /v1/kv/k v
kv_get GET /v1/kv/k?consistency=local
kv_delete DELETE /v1/kv/k
kv_list GET /v1/kv?prefix=a&after=b&limit=10
txn POST /v1/txn {"compare":[{"key":"YQ==","target":"value","op":"==","value":"MQ=="},{"key":"Yg==","target":"exists","op":"==","exists":false},{"key":"YQ==","target":"mod_index","op":"<","mod_index":5}],"success":[{"op":"put","key":"Yg==","value":"Mg=="},{"op":"get","key":"YQ=="}],"failure":[{"op":"delete","key":"YQ=="}]}
job_create POST /v1/jobs {"id":"J-1","client":"acme","kind":"scan","stages":["intake","scan"],"site":"east","effort":5,"due":"2026-12-31T00:00:00.000Z","priority":2,"individual_number":"123"}
job_advance POST /v1/jobs/J-1/advance {}
job_operator POST /v1/jobs/J-1/operator {"operator":"bob"}
job_get GET /v1/jobs/J-1
jobs_list GET /v1/jobs?status=queued&site=east&limit=5&consistency=local
boxes POST /v1/boxes {"boxes":[{"id":"B-1","ledger":"L","client":"acme","volumes":["v1"],"site":"east","shelf":"A-1","retain_until":"2030-01-01T00:00:00.000Z"}]}
box_pick POST /v1/boxes/B-1/pick {"job":"J-1"}
box_move POST /v1/boxes/B-1/move {"site":"west","shelf":"B-2"}
boxes_list GET /v1/boxes?after=A&limit=3
trace GET /v1/trace/job/J-1?after=0&limit=5
disposals GET /v1/disposals?limit=2
purge POST /v1/retention/purge {"events_max":100}
bcp_invoke POST /v1/bcp/invoke {"site":"west","reason":"drill","force":false,"wait_ms":100,"confirm_lost":["west-1"]}
bcp_invoke_planned POST /v1/bcp/invoke {"site":"west","reason":"planned move"}
bcp_revoke POST /v1/bcp/revoke {"site":"west","failback":true,"return_jobs":true}
bcp_prefer POST /v1/bcp/prefer {"site":"east","by":"admin"}
bcp_drill POST /v1/bcp/drill {"site":"west"}
bcp_drills_store POST /v1/bcp/drills {"id":"d1","site":"west","started":1,"finished":2,"ok":true,"rto_ms":1,"rpo_writes":0,"digests_equal":true,"jobs_moved":3}
bcp_status GET /v1/bcp/status
bcp_decision POST /v1/bcp/decisions {"action":"quarantine release","member":"east-2","site":"east","reason":"checked","by":"admin"}
bcp_incident POST /v1/bcp/incidents {"decision_seq":1,"site":"east","kind":"auto","decided":1,"longest_write_gap_ms":-1,"report":{}}
members_add POST /v1/members {"name":"east-3","site":"east","raft":"127.0.0.1:7009","api":"http://127.0.0.1:8009","role":"voter"}
members_remove DELETE /v1/members/east-3
member_rejoin POST /v1/members/east-3/rejoin {"by":"admin"}
leader_transfer POST /v1/leader/transfer {"name":"west-1"}
node_release POST /v1/node/release {"reason":"checked"}
node_epoch GET /v1/node/epoch
sites GET /v1/sites/east
capacity POST /v1/sites/east/capacity {"capacity":10}
rebalance_plan GET /v1/rebalance/plan?objective=makespan
rebalance_apply POST /v1/rebalance/apply {"id":"p1"}
status GET /v1/status
digest GET /v1/digest
"""
API_REQUESTS = {}
for row in API_TEXT.strip().splitlines():
    name, method, target, *body = row.split(" ", 3)
    API_REQUESTS[name] = (method, target, body[0] if body else "")

SEQUENCES = {
    "jobs": ["job_create", "job_advance", "job_operator", "job_get", "jobs_list", "trace"],
    "boxes": ["job_create", "boxes", "box_pick", "box_move", "boxes_list", "purge", "disposals"],
    "kv": ["kv_put", "txn", "kv_get", "kv_list", "kv_delete"],
    "bcp": ["job_create", "bcp_invoke_planned", "bcp_status", "bcp_revoke", "bcp_prefer",
            "bcp_drills_store", "bcp_incident"],
    "capacity": ["capacity", "job_create", "rebalance_plan", "rebalance_apply", "sites"],
}


def http_request(method, target, body):
    head = "%s %s HTTP/1.1\r\nHost: n\r\nX-Tandem-User: alice\r\n" % (method, target)
    if body:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return head + "\r\n" + body


def client_hello(maximum=ssl.TLSVersion.TLSv1_3, minimum=ssl.TLSVersion.TLSv1_2):
    """The first flight of a TLS client, taken from Python's ssl through memory BIOs."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version, context.maximum_version = minimum, maximum
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    session = context.wrap_bio(incoming, outgoing, server_hostname="node-1")
    try:
        session.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def tls():
    # The target's first byte: mode (mod 3) and the raw write size (div 3); see fuzz_tls.c.
    yield "raw_client_hello_tls13", b"\0" + client_hello()
    yield "raw_client_hello_in_5_byte_writes", bytes([15]) + client_hello()
    yield "raw_client_hello_tls12_only", b"\0" + client_hello(ssl.TLSVersion.TLSv1_2,
                                                               ssl.TLSVersion.TLSv1_2)
    yield "raw_alert", b"\0" + bytes([0x15, 3, 3, 0, 2, 2, 40])
    yield "raw_http", b"\0" + b"GET / HTTP/1.1\r\n\r\n"
    yield "plaintext_small", b"\1" + b"hello"
    yield "plaintext_empty", b"\1"
    yield "plaintext_past_a_record", b"\1" + bytes(range(256)) * 65  # 16,640 > 16 KiB
    yield "raw_after_handshake_appdata", b"\2" + bytes([0x17, 3, 3, 0, 16]) + b"\xaa" * 16
    yield "raw_after_handshake_alert", b"\2" + bytes([0x15, 3, 3, 0, 2, 1, 0])
    yield "raw_after_handshake_ccs", b"\2" + bytes([0x14, 3, 3, 0, 1, 1])
    yield "raw_after_handshake_huge_length", b"\2" + bytes([0x17, 3, 3, 0xff, 0xff]) + b"x" * 64


def main():
    for name, data in frames():
        write("frame", name, data)
    for name, data in transport():
        write("transport", name, data)
    for name, data in commands():
        write("command", name, data)
    for name, data in tls():
        write("tls", name, data)
    for name, data in configs():
        write("config", name, data)
    # The HTTP and API targets' first byte: the chunk size the client writes (0: all at once).
    for name, data in HTTP_REQUESTS.items():
        write("http", name, "\0" + data)
    write("http", "pipelined_in_7_byte_chunks", "\7" + HTTP_REQUESTS["pipelined"])
    write("http", "chunked_in_3_byte_chunks", "\3" + HTTP_REQUESTS["chunked"])
    for name, (method, target, body) in API_REQUESTS.items():
        write("api", name, "\0" + http_request(method, target, body))
    # Requests that build on one another, on one connection: the store is fresh per input.
    for name, names in SEQUENCES.items():
        write("api", "sequence_" + name,
              "\0" + "".join(http_request(*API_REQUESTS[n]) for n in names))


if __name__ == "__main__":
    main()
