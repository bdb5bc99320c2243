#!/usr/bin/env bash
# Benchmarks tandem against etcd side by side on this machine and prints one comparison table.
#
#   tests/bench/compare-etcd.sh [--tls] [--seconds S] [--json FILE] [--dir DIR] [--keep]
#
#   --tls         both systems with TLS 1.3 and client certificates on the client API and
#                 between members (the default is plaintext for both)
#   --seconds S   measured seconds per workload and system (default 10), after a 2 s warmup
#   --json FILE   also write the table, with every tandem-bench report, as JSON to FILE
#   --dir DIR     where the data of both clusters goes (default: a new directory in $TMPDIR or
#                 /tmp); both clusters always share one disk
#   --keep        keep the data directory and logs (kept anyway when the script fails)
#
# What runs: a 3-member etcd cluster (Debian's etcd-server, installed when `etcd` is missing) and
# a 3-member tandem cluster (deploy/local-cluster.sh up --topology 3 --insecure), all on
# 127.0.0.1. With --tls, one CA from deploy/certs.sh signs a node certificate per etcd member
# and a user certificate for tandem-bench; etcd runs with --cert-file/--key-file/
# --client-cert-auth/--trusted-ca-file and the --peer-* equivalents, tandem with its default TLS
# (local-cluster.sh up without --insecure: its own CA in DIR/tls, mutual TLS on raft and the
# API, tandem-bench as user admin). tandem's per-credential rate limit is off in both modes
# (rate_limit_rps=0): etcd has none. Both keep their default durable settings: etcd fsyncs its WAL (no
# --unsafe-no-fsync), tandem fsyncs its raft log and never opens LMDB with MDB_NOSYNC.
# Workloads, in order, each run against tandem and then against etcd before the next one starts,
# so slow drift of the machine (page cache, CPU heat, compaction) hits both alike:
#   write c=1, write c=64, write c=256   PUT of 256-byte values on 10000 random keys
#   read c=64                            linearizable GET of those keys, preloaded first
# Fairness rule, the same for both systems: every connection goes to the current leader, found
# again before each run (tandem: leader.api of GET /v1/status; etcd: the member whose
# /v3/maintenance/status names itself leader). A follower would forward tandem writes over HTTP
# and etcd writes over its peer gRPC, which measures forwarding, not replication.
# Both speak HTTP/1.1 JSON to the same client (tandem-bench): tandem its KV API, etcd its v3
# gRPC gateway (/v3/kv/put, /v3/kv/range), which costs etcd a JSON<->gRPC translation that its
# native gRPC clients don't pay; the table says so.
#
# Binaries come from ${TANDEM_BIN_DIR:-<repo>/build}; when tandemd or tandem-bench is missing
# there, a RelWithDebInfo build is made first. Everything the script starts (etcd by PID, the
# tandem cluster by local-cluster.sh down) is stopped on exit, Ctrl-C included.
set -euo pipefail
# No job control: background jobs stay in our process group, and $! is etcd itself.
set +m

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
BIN_DIR=${TANDEM_BIN_DIR:-$REPO_DIR/build}
LOCAL_CLUSTER=$REPO_DIR/deploy/local-cluster.sh

MEASURE_S=10
WARMUP_S=2
KEYS=10000
VALUE_SIZE=256
READ_CONNECTIONS=64
PRELOAD_CONNECTIONS=64
ETCD_MEMBERS=3
# etcd refuses writes (NOSPACE alarm) past its backend quota; 8 GiB is its documented maximum
# recommendation and far above what these runs write.
ETCD_QUOTA_BYTES=$((8 * 1024 * 1024 * 1024))
ETCD_START_TIMEOUT_S=30
STOP_TIMEOUT_S=15
# A tandem-bench run ends by itself; this bounds a hung one (seconds beyond warmup + measure).
BENCH_SLACK_S=60
SETTLE_S=1 # pause between runs so one system's background work does not land in the other's

JSON_OUT=""
TLS=0
BASE_DIR=""
KEEP=0
WORK=""
ETCD_PIDS=()
TANDEM_UP=0

die() {
    echo "compare-etcd: $*" >&2
    exit 1
}

usage() {
    sed -n '3,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

parse_args() {
    while (($# > 0)); do
        case $1 in
            --seconds)
                [[ ${2:-} =~ ^[0-9]+$ && $2 -ge 1 ]] || die "--seconds needs whole seconds >= 1"
                MEASURE_S=$2
                shift
                ;;
            --json)
                [[ -n ${2:-} ]] || die "--json needs a file name"
                JSON_OUT=$2
                shift
                ;;
            --dir)
                [[ -d ${2:-} ]] || die "--dir needs an existing directory"
                BASE_DIR=$2
                shift
                ;;
            --keep) KEEP=1 ;;
            --tls) TLS=1 ;;
            -h | --help) usage ;;
            *) die "unknown argument '$1' (see --help)" ;;
        esac
        shift
    done
}

# Debian's postinst would start a system etcd on the default ports; a policy-rc.d that forbids
# service starts (removed again right after) keeps the install from starting anything.
ensure_etcd() {
    command -v etcd >/dev/null && return 0
    command -v apt-get >/dev/null || die "etcd is not installed and there is no apt-get"
    echo "compare-etcd: installing etcd-server from Debian" >&2
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >&2 || rc=$?
    if ((rc != 0)); then
        apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >&2 ||
            rc=$?
    fi
    ((made_policy)) && rm -f "$policy"
    command -v etcd >/dev/null || die "installing etcd-server failed"
}

ensure_binaries() {
    if [[ ! -x $BIN_DIR/tandemd || ! -x $BIN_DIR/tandem-bench ]]; then
        echo "compare-etcd: no tandemd/tandem-bench in $BIN_DIR: building (RelWithDebInfo)" >&2
        cmake -S "$REPO_DIR" -B "$BIN_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
        cmake --build "$BIN_DIR" -j"$(nproc)" --target tandemd tandemctl tandem-bench >&2
    fi
    local cache=$BIN_DIR/CMakeCache.txt
    if [[ -f $cache ]] && grep -Eq '^(TANDEM_SANITIZE:STRING=.+|CMAKE_BUILD_TYPE:STRING=Debug)$' "$cache"; then
        echo "compare-etcd: WARNING: $BIN_DIR is a Debug or sanitizer build; its numbers" \
            "understate tandem (use TANDEM_BIN_DIR with a RelWithDebInfo build)" >&2
    fi
}

# Prints COUNT free TCP ports on 127.0.0.1, outside the ephemeral range (where outgoing
# connections of the benchmark itself would otherwise race for them), each probed by binding.
free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
count = int(sys.argv[1])
low, high = 32768, 60999
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
except (OSError, ValueError):
    pass
pool = [p for p in range(10000, 65000) if not low <= p <= high]
random.shuffle(pool)
chosen = []
for port in pool:
    if len(chosen) == count:
        break
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
        chosen.append(port)
    except OSError:
        pass
    finally:
        s.close()
if len(chosen) < count:
    sys.exit("compare-etcd: no free ports on 127.0.0.1")
print(" ".join(map(str, chosen)))
PY
}

# Prints the value at a dotted path of the JSON document on stdin (empty when absent).
json_get() {
    python3 -c '
import json, sys
try:
    value = json.load(sys.stdin)
except ValueError:
    sys.exit(1)
for part in sys.argv[1].split("."):
    value = value.get(part) if isinstance(value, dict) else None
print("" if value is None else value)
' "$1"
}

# True while PID is an etcd of ours: alive, not a zombie, running with our data directory.
etcd_is_ours() {
    local pid=$1 state cmdline
    state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *etcd* && $cmdline == *"$WORK/etcd/"* ]]
}

# --tls: one CA, a node certificate per etcd member (serverAuth+clientAuth, SAN 127.0.0.1) and
# a user certificate for tandem-bench and curl; ETCD_CURL/ETCD_BENCH hold the client options.
make_etcd_certs() {
    ETCD_CURL=()
    ETCD_BENCH=()
    ((TLS)) || return 0
    local certs=$WORK/etcd-certs nodes="" i
    for ((i = 0; i < ETCD_MEMBERS; i++)); do nodes+=${nodes:+,}etcd-$i; done
    bash "$REPO_DIR/deploy/certs.sh" "$certs" --nodes "$nodes" --users bench >/dev/null
    ETCD_CURL=(--cacert "$certs/ca.pem" --cert "$certs/bench.pem" --key "$certs/bench.key")
    ETCD_BENCH=("${ETCD_CURL[@]}")
}

# The TLS options of etcd member NAME (none without --tls).
etcd_tls_flags() {
    ((TLS)) || return 0
    local certs=$WORK/etcd-certs
    printf '%s\n' --cert-file "$certs/$1.pem" --key-file "$certs/$1.key" --client-cert-auth \
        --trusted-ca-file "$certs/ca.pem" --peer-cert-file "$certs/$1.pem" \
        --peer-key-file "$certs/$1.key" --peer-client-cert-auth \
        --peer-trusted-ca-file "$certs/ca.pem"
}

start_etcd() {
    local ports i name cluster="" peer client scheme=http
    local -a p tls_flags
    ((TLS)) && scheme=https
    make_etcd_certs
    ports=$(free_ports $((2 * ETCD_MEMBERS)))
    read -r -a p <<<"$ports"
    ETCD_URLS=()
    for ((i = 0; i < ETCD_MEMBERS; i++)); do
        cluster+=${cluster:+,}etcd-$i=$scheme://127.0.0.1:${p[2 * i + 1]}
        ETCD_URLS+=("$scheme://127.0.0.1:${p[2 * i]}")
    done
    mkdir -p "$WORK/etcd"
    for ((i = 0; i < ETCD_MEMBERS; i++)); do
        name=etcd-$i
        client=${ETCD_URLS[i]}
        peer=$scheme://127.0.0.1:${p[2 * i + 1]}
        mapfile -t tls_flags < <(etcd_tls_flags "$name")
        etcd --name "$name" --data-dir "$WORK/etcd/$name" "${tls_flags[@]}" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "compare-$$" --quota-backend-bytes "$ETCD_QUOTA_BYTES" \
            --logger zap --log-level warn >"$WORK/etcd/$name.log" 2>&1 </dev/null &
        ETCD_PIDS+=($!)
    done
    wait_etcd_healthy
}

wait_etcd_healthy() {
    local deadline=$((SECONDS + ETCD_START_TIMEOUT_S)) i healthy pid
    while ((SECONDS < deadline)); do
        for i in "${!ETCD_PIDS[@]}"; do
            pid=${ETCD_PIDS[i]}
            if ! etcd_is_ours "$pid"; then
                tail -n 20 "$WORK/etcd/etcd-$i.log" >&2 || true
                die "etcd-$i (pid $pid) exited during start-up"
            fi
        done
        healthy=0
        for i in "${!ETCD_URLS[@]}"; do
            if curl -sf --max-time 2 "${ETCD_CURL[@]}" "${ETCD_URLS[i]}/health" |
                grep -q '"health":"true"'; then
                healthy=$((healthy + 1))
            fi
        done
        ((healthy == ETCD_MEMBERS)) && return 0
        sleep 0.2
    done
    die "etcd did not report healthy within ${ETCD_START_TIMEOUT_S}s (logs: $WORK/etcd/)"
}

# tandem-bench speaks /v3/kv/*, which etcd serves from 3.4 on (3.3 had /v3beta): check it
# answers a put and a range with the base64 JSON tandem-bench sends before trusting any number.
check_etcd_gateway() {
    local url=${ETCD_URLS[0]} answer
    answer=$(curl -sf --max-time 5 "${ETCD_CURL[@]}" -X POST "$url/v3/kv/put" \
        -d '{"key":"Y29tcGFyZS1wcm9iZQ==","value":"MQ=="}') ||
        die "etcd $url does not serve POST /v3/kv/put (etcd $(etcd --version | head -n1)): needs >= 3.4"
    [[ $answer == *'"header"'* ]] || die "unexpected answer from $url/v3/kv/put: $answer"
    answer=$(curl -sf --max-time 5 "${ETCD_CURL[@]}" -X POST "$url/v3/kv/range" \
        -d '{"key":"Y29tcGFyZS1wcm9iZQ=="}')
    [[ $answer == *'"value":"MQ=="'* ]] || die "unexpected answer from $url/v3/kv/range: $answer"
}

etcd_leader_url() {
    local url json member leader
    for url in "${ETCD_URLS[@]}"; do
        json=$(curl -sf --max-time 2 "${ETCD_CURL[@]}" -X POST "$url/v3/maintenance/status" \
            -d '{}') || continue
        member=$(json_get header.member_id <<<"$json") || continue
        leader=$(json_get leader <<<"$json") || continue
        if [[ -n $member && $member == "$leader" ]]; then
            echo "$url"
            return 0
        fi
    done
    return 1
}

tandem_leader_url() {
    local url json api
    for url in $(tr ',' ' ' <"$WORK/tandem/endpoints"); do
        json=$(curl -sf --max-time 2 "${TANDEM_CURL[@]}" "$url/v1/status") || continue
        api=$(json_get leader.api <<<"$json") || continue
        if [[ -n $api ]]; then
            echo "$api"
            return 0
        fi
    done
    return 1
}

# Plaintext with --insecure; with --tls the cluster's own CA (DIR/tls) and user admin for
# tandem-bench and curl (TANDEM_CURL/TANDEM_BENCH).
start_tandem() {
    local -a mode=(--insecure)
    local tls=$WORK/tandem/tls
    TANDEM_CURL=()
    TANDEM_BENCH=()
    if ((TLS)); then
        mode=()
        TANDEM_CURL=(--cacert "$tls/ca.pem" --cert "$tls/admin.pem" --key "$tls/admin.key")
        TANDEM_BENCH=("${TANDEM_CURL[@]}")
    fi
    TANDEM_UP=1
    TANDEM_BIN_DIR=$BIN_DIR bash "$LOCAL_CLUSTER" up "$WORK/tandem" --topology 3 "${mode[@]}" \
        --set rate_limit_rps=0 >&2
}

stop_everything() {
    local status=$? i pid deadline
    trap - EXIT INT TERM
    if ((TANDEM_UP)) && [[ -f $WORK/tandem/nodes ]]; then
        TANDEM_BIN_DIR=$BIN_DIR bash "$LOCAL_CLUSTER" down "$WORK/tandem" >&2 || status=1
    fi
    for pid in "${ETCD_PIDS[@]}"; do
        if etcd_is_ours "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    deadline=$((SECONDS + STOP_TIMEOUT_S))
    for i in "${!ETCD_PIDS[@]}"; do
        pid=${ETCD_PIDS[i]}
        while etcd_is_ours "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if etcd_is_ours "$pid"; then
            echo "compare-etcd: etcd-$i (pid $pid) ignored SIGTERM; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $WORK ]]; then
        if ((status == 0 && KEEP == 0)); then
            rm -rf "$WORK"
        else
            echo "compare-etcd: data and logs kept in $WORK" >&2
        fi
    fi
    exit "$status"
}

# bench SYSTEM NAME ARGS...: one tandem-bench run against SYSTEM's leader, its JSON report saved
# as $WORK/results/NAME-SYSTEM.json. A failed run is recorded (and shown in the table) and the
# comparison goes on.
bench() {
    local system=$1 name=$2 url out limit rc=0
    local -a tls
    shift 2
    out=$WORK/results/$name-$system.json
    if [[ $system == tandem ]]; then
        url=$(tandem_leader_url) || { echo '{"failed":"no tandem leader"}' >"$out"; return 0; }
        tls=("${TANDEM_BENCH[@]}")
    else
        url=$(etcd_leader_url) || { echo '{"failed":"no etcd leader"}' >"$out"; return 0; }
        tls=("${ETCD_BENCH[@]}")
    fi
    limit=$((WARMUP_S + MEASURE_S + BENCH_SLACK_S))
    timeout --signal=INT --kill-after=10 "$limit" "$BIN_DIR/tandem-bench" --target "$system" \
        --endpoints "$url" "${tls[@]}" -o json "$@" >"$out" 2>"$out.err" || rc=$?
    if ((rc != 0)); then
        python3 -c 'import json, sys; print(json.dumps({"failed": "tandem-bench exited %s: %s"
            % (sys.argv[1], open(sys.argv[2], errors="replace").read()[:200].strip())}))' \
            "$rc" "$out.err" >"$out"
    fi
    summarize "$system" "$name" "$out" >&2
    sleep "$SETTLE_S"
}

summarize() {
    python3 - "$@" <<'PY'
import json, sys
system, name, path = sys.argv[1:]
r = json.load(open(path))
if "failed" in r:
    print("  %-10s %-6s FAILED: %s" % (name, system, r["failed"]))
    sys.exit(0)
e = r["errors"]
print("  %-10s %-6s %9.0f ops/s  p99 %7.2f ms  errors %d %s" % (
    name, system, r["ops_per_s"], r["latency_us"]["p99"] / 1000.0, e["total"],
    json.dumps(e["samples"]) if e["total"] else ""))
PY
}

# both NAME ARGS...: the same run against tandem, then etcd.
both() {
    local name=$1
    shift
    bench tandem "$name" "$@"
    bench etcd "$name" "$@"
}

run_workloads() {
    local common=(--duration "$MEASURE_S" --warmup "$WARMUP_S" --keys "$KEYS"
        --value-size "$VALUE_SIZE")
    mkdir -p "$WORK/results"
    echo "compare-etcd: ${MEASURE_S}s per run after ${WARMUP_S}s warmup" >&2
    both write-c1 "${common[@]}" --connections 1 --read-ratio 0
    both write-c64 "${common[@]}" --connections 64 --read-ratio 0
    both write-c256 "${common[@]}" --connections 256 --read-ratio 0
    # Every key exists before reads, so a read never measures a miss.
    local system
    for system in tandem etcd; do
        bench "$system" preload --ops "$KEYS" --key-order sequential --keys "$KEYS" \
            --value-size "$VALUE_SIZE" --connections "$PRELOAD_CONNECTIONS"
    done
    both read-c64 "${common[@]}" --connections "$READ_CONNECTIONS" --read-ratio 1 \
        --consistency linearizable
}

# Prints the table (and writes --json): one row per workload, ratio = tandem/etcd ops/s.
report() {
    python3 - "$WORK/results" "$JSON_OUT" "$MEASURE_S" "$WARMUP_S" "$1" "$TLS" <<'PY'
import json, os, sys
results, json_out, measure_s, warmup_s, header, tls = sys.argv[1:]
rows = [("write-c1", "write c=1"), ("write-c64", "write c=64"), ("write-c256", "write c=256"),
        ("read-c64", "linearizable read c=64")]
def load(name, system):
    try:
        with open(os.path.join(results, "%s-%s.json" % (name, system))) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"failed": str(e)}
def cell(r, what):
    if "failed" in r:
        return "failed"
    if what == "ops":
        return "%.0f" % r["ops_per_s"]
    return "%.2f" % (r["latency_us"]["p99"] / 1000.0)
print(header)
fmt = "%-24s %13s %14s %11s %12s %7s"
print(fmt % ("workload", "tandem ops/s", "tandem p99 ms", "etcd ops/s", "etcd p99 ms", "ratio"))
doc = {"header": header.splitlines(), "seconds": int(measure_s), "warmup_s": int(warmup_s),
       "tls": tls == "1", "workloads": []}
notes = []
for name, label in rows:
    t, e = load(name, "tandem"), load(name, "etcd")
    ratio = None
    if "failed" not in t and "failed" not in e and e["ops_per_s"] > 0:
        ratio = t["ops_per_s"] / e["ops_per_s"]
    print(fmt % (label, cell(t, "ops"), cell(t, "p99"), cell(e, "ops"), cell(e, "p99"),
                 "%.2f" % ratio if ratio is not None else "-"))
    for system, r in (("tandem", t), ("etcd", e)):
        if "failed" in r:
            notes.append("%s %s: %s" % (label, system, r["failed"]))
        elif r["errors"]["total"]:
            notes.append("%s %s: %d errors %s" % (label, system, r["errors"]["total"],
                                                  json.dumps(r["errors"]["samples"])))
    doc["workloads"].append({"name": name, "tandem": t, "etcd": e, "ratio": ratio})
for note in notes:
    print("  ! " + note)
print("ratio = tandem ops/s / etcd ops/s; all connections to each system's leader; etcd through "
      "its v3 JSON gateway (HTTP/1.1), tandem through its HTTP API; 256-byte values.")
print("channel: " + ("TLS 1.3 with client certificates on the API and between members, for both"
                     if tls == "1" else "plaintext for both (etcd http://, tandem --insecure)"))
if json_out:
    with open(json_out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
PY
}

main() {
    parse_args "$@"
    command -v curl >/dev/null || die "curl is required"
    command -v python3 >/dev/null || die "python3 is required"
    ensure_etcd
    ensure_binaries
    WORK=$(mktemp -d "${BASE_DIR:-${TMPDIR:-/tmp}}/tandem-vs-etcd.XXXXXX")
    trap stop_everything EXIT
    trap 'exit 130' INT TERM
    start_etcd
    check_etcd_gateway
    start_tandem
    local header commit
    commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
    header="tandem vs etcd, $(date '+%F %T %Z'), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
etcd $(etcd --version | head -n1 | awk '{print $3}'), tandem $commit ($BIN_DIR), data on $(df -P "$WORK" | awk 'NR==2 {print $1}')"
    run_workloads
    report "$header"
}

main "$@"
