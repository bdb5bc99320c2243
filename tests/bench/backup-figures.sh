#!/usr/bin/env bash
# The figures of issue 14's note: time and size of a backup, of verify at each level and of a
# restore for JOBS jobs, 2 x JOBS boxes and about 10 x JOBS trace events (micro_backup, then
# tandemctl on the file it keeps), and the write throughput and p99 of a 3-node cluster with and
# without backups being taken (tandem-bench, POST /v1/backups in a loop), and a point-in-time
# restore carrying a backup taken before those runs through a follower's raft log to its end.
#
# usage: tests/bench/backup-figures.sh [--jobs N] [--keys N] [--seconds S]
#   --jobs N      micro_backup's jobs (default 100000: 200000 boxes, ~1000000 trace events)
#   --keys N      keys preloaded into the cluster before the throughput runs (default 200000)
#   --seconds S   each tandem-bench run (default 20)
# Binaries: ${TANDEM_BIN_DIR:-<repo>/build} (a RelWithDebInfo build for meaningful numbers).
# Everything runs on 127.0.0.1; the cluster is stopped on exit, Ctrl-C included.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${TANDEM_BIN_DIR:-$REPO_DIR/build}
JOBS=100000
KEYS=200000
SECONDS_RUN=20
BACKUP_LOOPS_MAX=1000 # bound on backups taken during one run
while (($# > 0)); do
    case $1 in
        --jobs) JOBS=$2; shift 2 ;;
        --keys) KEYS=$2; shift 2 ;;
        --seconds) SECONDS_RUN=$2; shift 2 ;;
        *) echo "usage: $0 [--jobs N] [--keys N] [--seconds S]" >&2; exit 2 ;;
    esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-backup-figures-XXXXXX")
CLUSTER=$WORK/cluster
cleanup() {
    "$REPO_DIR/deploy/local-cluster.sh" down "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ms() { date +%s%3N; }

echo "== files: $JOBS jobs, $((2 * JOBS)) boxes, ~$((10 * JOBS)) trace events (micro_backup)"
"$BIN_DIR/micro_backup" "$JOBS" "$WORK/b.tbk"
echo "   file $(du -m "$WORK/b.tbk" | cut -f1) MiB"
for level in 1 2 3; do
    t=$(ms)
    "$BIN_DIR/tandemctl" backup verify "$WORK/b.tbk" --level "$level" >/dev/null
    echo "   tandemctl backup verify --level $level: $(($(ms) - t)) ms"
done
t=$(ms)
"$BIN_DIR/tandemctl" backup restore "$WORK/b.tbk" --data-dir "$WORK/restored" --name r1 >/dev/null
echo "   tandemctl backup restore: $(($(ms) - t)) ms ($(du -sm "$WORK/restored" | cut -f1) MiB)"

echo "== throughput: 3 nodes, insecure, $KEYS keys preloaded, ${SECONDS_RUN}s per run"
"$REPO_DIR/deploy/local-cluster.sh" up "$CLUSTER" --topology 3 --insecure \
    --set rate_limit_rps=0 >/dev/null
LEADER=$(python3 - "$CLUSTER" <<'PY'
import json, sys, urllib.request, glob, os
for conf in sorted(glob.glob(os.path.join(sys.argv[1], "*", "tandem.conf"))):
    url = [l.split("=", 1)[1].strip() for l in open(conf) if l.startswith("api_url")][0]
    try:
        s = json.load(urllib.request.urlopen(url + "/v1/status", timeout=2))
    except OSError:
        continue
    if s["leader"]:
        print(s["leader"]["api"]); break
PY
)
bench() {
    "$BIN_DIR/tandem-bench" --target tandem --endpoints "$LEADER" --connections 32 "$@"
}
bench --keys "$KEYS" --key-order sequential --ops "$KEYS" >/dev/null
report() { python3 -c 'import json,sys; r=json.load(sys.stdin); print("%9.0f writes/s  p50 %6.2f ms  p99 %6.2f ms  errors %d" % (r["ops_per_s"], r["latency_us"]["p50"]/1e3, r["latency_us"]["p99"]/1e3, r["errors"]["total"]))'; }
"$BIN_DIR/tandemctl" -e "$LEADER" -o json backup create --out "$WORK/pitr.tbk" >"$WORK/pitr.json"
echo -n "   without a backup: "
bench --keys "$KEYS" --duration "$SECONDS_RUN" -o json | report
(
    for ((i = 0; i < BACKUP_LOOPS_MAX; i++)); do
        [[ -e $WORK/stop ]] && break
        t=$(ms)
        curl -sf -X POST "$LEADER/v1/backups" -o "$WORK/last-backup.json" || break
        echo "$(($(ms) - t))" >>"$WORK/backup-ms"
        rm -f "$CLUSTER"/*/data/backups/*.tbk
    done
) &
LOOP=$!
echo -n "   with backups:     "
bench --keys "$KEYS" --duration "$SECONDS_RUN" -o json | report
touch "$WORK/stop"
wait "$LOOP" || true
python3 - "$WORK/backup-ms" "$WORK/last-backup.json" <<'PY'
import json, sys
times = [int(x) for x in open(sys.argv[1])]
m = json.load(open(sys.argv[2]))
print("   backups taken meanwhile: %d, %d..%d ms each, %.1f MiB at index %d" % (
    len(times), min(times), max(times), m["bytes"] / 1048576.0, m["manifest"]["applied_index"]))
PY

echo "== point in time: the backup taken before the runs, carried through a follower's log"
FOLLOWER_DIR=$(awk -v leader="$LEADER" '$4 != leader {print $1; exit}' "$CLUSTER/nodes")
LOG_DIR=$CLUSTER/$FOLLOWER_DIR/data
TO_INDEX=$(curl -sf "$(awk -v n="$FOLLOWER_DIR" '$1 == n {print $4}' "$CLUSTER/nodes")/v1/status" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["applied_index"])')
t=$(ms)
"$BIN_DIR/tandemctl" -o json backup restore "$WORK/pitr.tbk" --data-dir "$WORK/pitr" --name p1 \
    --to-index "$TO_INDEX" --log-dir "$LOG_DIR" >"$WORK/pitr-restore.json"
elapsed=$(($(ms) - t))
python3 - "$WORK/pitr-restore.json" "$elapsed" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["point_in_time"]
print("   tandemctl backup restore --to-index %d: %s ms, backup at index %d, %d entries replayed"
      " (%d keys at the end)" % (r["to_index"], sys.argv[2], r["backup_index"],
                                 r["entries_applied"], r["counts"]["keys"]))
PY
