#!/usr/bin/env bash
# Issue 17's stall figures: a 3-node cluster with frequent snapshots is preloaded with KEYS keys
# of 256 bytes by tandem-bench, then every node reports its longest event-loop stall
# (tandem_loop_lag_max_seconds), the loop-lag histogram's share of ticks late by more than 100 ms,
# its raft term and leader changes, snapshots taken / installed / deferred, its RSS and raft log
# on disk, and the stall warnings of its log, which say what ran on the loop meanwhile and how
# much of the stall the loop thread actually ran (the rest it waited: CPU, disk).
#
# usage: tests/bench/snapshot-stall.sh [--keys N] [--threshold N] [--trailing N] [--connections N]
#   --keys N         keys preloaded, sequentially (default 1000000)
#   --threshold N    snapshot_threshold (default 2000)
#   --trailing N     snapshot_trailing (default 2000)
#   --connections N  tandem-bench connections (default 128)
#   --set K=V        any other tandemd option (repeatable)
# Binaries: ${TANDEM_BIN_DIR:-<repo>/build} (a Release build for meaningful numbers).
# Everything runs on 127.0.0.1, insecure (a benchmark); the cluster is stopped on exit.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${TANDEM_BIN_DIR:-$REPO_DIR/build}
KEYS=1000000
THRESHOLD=2000
TRAILING=2000
CONNECTIONS=128
SETS=()
while (($# > 0)); do
    case $1 in
        --keys) KEYS=$2; shift 2 ;;
        --threshold) THRESHOLD=$2; shift 2 ;;
        --trailing) TRAILING=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --set) SETS+=(--set "$2"); shift 2 ;;
        *) echo "usage: $0 [--keys N] [--threshold N] [--trailing N] [--connections N] [--set K=V]" >&2
           exit 2 ;;
    esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-stall-XXXXXX")
CLUSTER=$WORK/cluster
cleanup() {
    TANDEM_BIN_DIR=$BIN_DIR "$REPO_DIR/deploy/local-cluster.sh" down "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

TANDEM_BIN_DIR=$BIN_DIR "$REPO_DIR/deploy/local-cluster.sh" up "$CLUSTER" --topology 3 --insecure \
    --set rate_limit_rps=0 --set snapshot_threshold="$THRESHOLD" \
    --set snapshot_trailing="$TRAILING" "${SETS[@]}" >/dev/null
URLS=$(awk '{print $4}' "$CLUSTER/nodes" | paste -sd,)
LEADER=$(python3 - "$URLS" <<'PY'
import json, sys, urllib.request
for url in sys.argv[1].split(","):
    try:
        s = json.load(urllib.request.urlopen(url + "/v1/status", timeout=2))
    except OSError:
        continue
    if s["leader"]:
        print(s["leader"]["api"]); break
PY
)
echo "== preload: $KEYS keys of 256 B, $CONNECTIONS connections, snapshot_threshold=$THRESHOLD" \
    "snapshot_trailing=$TRAILING ${SETS[*]}"
"$BIN_DIR/tandem-bench" --target tandem --endpoints "$LEADER" --connections "$CONNECTIONS" \
    --keys "$KEYS" --key-order sequential --ops "$KEYS" -o json >"$WORK/bench.json"
sleep 3 # followers finish applying; snapshots in flight complete
python3 - "$URLS" "$WORK/bench.json" "$CLUSTER" <<'PY'
import json, os, re, sys, urllib.request
urls, bench, cluster = sys.argv[1].split(","), json.load(open(sys.argv[2])), sys.argv[3]
print("   %.0f writes/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms, errors %d" % (
    bench["ops_per_s"], bench["latency_us"]["p50"] / 1e3, bench["latency_us"]["p99"] / 1e3,
    bench["latency_us"].get("max", 0) / 1e3, bench["errors"]["total"]))
names = {l.split()[3]: l.split()[0] for l in open(os.path.join(cluster, "nodes"))}
for url in urls:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    m = dict((k, float(v)) for k, v in re.findall(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M))
    status = json.load(urllib.request.urlopen(url + "/v1/status", timeout=5))
    count = m["tandem_loop_lag_seconds_count"]
    over = count - m['tandem_loop_lag_seconds_bucket{le="0.102400"}']
    log = open(os.path.join(cluster, names[url], "tandemd.log")).read()
    stalls = [l for l in log.splitlines() if "event loop stalled" in l]
    pid = open(os.path.join(cluster, names[url], "tandemd.pid")).read().strip()
    rss = [l.split()[1] for l in open("/proc/%s/status" % pid) if l.startswith("VmRSS:")][0]
    raft_dir = os.path.join(cluster, names[url], "data", "raft")
    log_mib = sum(os.path.getsize(os.path.join(raft_dir, f)) for f in os.listdir(raft_dir)
                  if not f.startswith("snapshot") and f != "metadata1" and f != "metadata2") / 2**20
    print("   %s: RSS %d MiB, raft log on disk %.0f MiB" % (names[url], int(rss) // 1024, log_mib))
    print("   %s: longest stall %.0f ms, %d of %d ticks >102 ms late, term %s, leader changes %d,"
          " snapshots taken %d installed %d deferred %d, %d stall warnings" % (
              names[url], m["tandem_loop_lag_max_seconds"] * 1e3, over, count,
              status["node"]["term"], m["tandem_raft_leader_changes_total"],
              m["tandem_snapshots_taken_total"], m["tandem_snapshots_restored_total"],
              m["tandem_snapshots_deferred_total"], len(stalls)))
    for line in sorted(stalls, key=lambda l: -int(re.search(r"stalled (\d+)", l).group(1)))[:3]:
        print("      " + line.split("]", 1)[-1].strip())
PY
