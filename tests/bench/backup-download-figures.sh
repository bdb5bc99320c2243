#!/usr/bin/env bash
# The figures of a streamed backup download: the time of `tandemctl backup create` (the take
# alone) and of `tandemctl backup create --out` (take and download), and
# tandemd's memory (RssAnon before and at its peak, VmHWM) for a state of JOBS jobs, 2 x JOBS
# boxes and ~10 x JOBS trace events (micro_backup's file, restored into a single-voter node).
#
# usage: tests/bench/backup-download-figures.sh [--jobs N] [--runs N]
#   --jobs N   micro_backup's jobs (default 100000: a file of about 276 MiB)
#   --runs N   downloads measured one after another (default 3)
# Binaries: ${TANDEM_BIN_DIR:-<repo>/build} (a RelWithDebInfo build for meaningful numbers).
# Plaintext on 127.0.0.1 (--insecure, a benchmark); the node is stopped by its PID on exit.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${TANDEM_BIN_DIR:-$REPO_DIR/build}
JOBS=100000
RUNS=3
RUNS_MAX=20
SAMPLES_MAX=200000 # bound on memory samples of one download (every 20 ms: over an hour)
while (($# > 0)); do
    case $1 in
        --jobs) JOBS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        *) echo "usage: $0 [--jobs N] [--runs N]" >&2; exit 2 ;;
    esac
done
((RUNS >= 1 && RUNS <= RUNS_MAX)) || { echo "--runs must be 1..$RUNS_MAX" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-download-figures-XXXXXX")
PID=
cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID"
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

ms() { date +%s%3N; }
field() { grep "^$1:" "/proc/$PID/status" | awk '{print $2}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== state: $JOBS jobs, $((2 * JOBS)) boxes, ~$((10 * JOBS)) trace events (micro_backup)"
"$BIN_DIR/micro_backup" "$JOBS" "$WORK/seed.tbk" >/dev/null
SITE=$("$BIN_DIR/tandemctl" -o json backup verify "$WORK/seed.tbk" --level 1 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["manifest"]["site"])')
"$BIN_DIR/tandemctl" backup restore "$WORK/seed.tbk" --data-dir "$WORK/node/data" --name b1 \
    --new-cluster-id bench >/dev/null
rm -f "$WORK/seed.tbk"
RAFT=127.0.0.1:$(free_port)
API=127.0.0.1:$(free_port)
"$BIN_DIR/tandemd" --name b1 --site "$SITE" --cluster_id bench --data_dir "$WORK/node/data" \
    --raft_address "$RAFT" --api_address "$API" --insecure --log_level warn \
    --member "b1,$SITE,$RAFT,http://$API,voter" >"$WORK/node/tandemd.log" 2>&1 &
PID=$!
for ((i = 0; i < 600; i++)); do
    curl -sf "http://$API/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://$API/readyz" >/dev/null || { echo "tandemd did not become ready" >&2; exit 1; }

echo "== the take alone: tandemctl backup create (POST /v1/backups, the file kept on the node)"
t=$(ms)
NAME=$("$BIN_DIR/tandemctl" -e "http://$API" -o json backup create |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
echo "   $(($(ms) - t)) ms"
echo "== the stream alone: curl GET /v1/backups/NAME of that file to /dev/null"
curl -sf -o /dev/null -w '   %{size_download} bytes in %{time_total} s\n' "http://$API/v1/backups/$NAME"
rm -f "$WORK"/node/data/backups/*.tbk

echo "== tandemctl backup create --out (POST /v1/backups/download), $RUNS runs"
for ((run = 1; run <= RUNS; run++)); do
    before=$(field RssAnon)
    peak=$before
    rm -f "$WORK/out.tbk"
    t=$(ms)
    "$BIN_DIR/tandemctl" -e "http://$API" backup create --out "$WORK/out.tbk" >/dev/null &
    ctl=$!
    for ((s = 0; s < SAMPLES_MAX; s++)); do
        kill -0 "$ctl" 2>/dev/null || break
        now=$(field RssAnon)
        ((now > peak)) && peak=$now
        sleep 0.02
    done
    wait "$ctl"
    took=$(($(ms) - t))
    size=$(stat -c %s "$WORK/out.tbk")
    echo "   run $run: $((size / 1048576)) MiB in $took ms ($((size / 1048576 * 1000 / (took + 1))) MiB/s)," \
        "tandemd RssAnon $((before / 1024)) -> peak $((peak / 1024)) MiB (+$(((peak - before) / 1024)) MiB)," \
        "VmHWM $(($(field VmHWM) / 1024)) MiB"
done
