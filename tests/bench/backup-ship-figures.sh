#!/usr/bin/env bash
# The scheduled mutual backup's figures (issue 14 item 4): on a 2+2+1 TLS cluster preloaded with
# KEYS keys of VALUE bytes, how long one scheduled backup of each site takes from the leader's
# request to its committed record (take on a caught-up node, SHA-256, ship to both nodes of the
# other site in chunks, level-1 check there, manifest to the witness), and how large it is.
#
# usage: tests/bench/backup-ship-figures.sh [--keys N] [--value-size BYTES] [--interval S]
#   --keys N          keys preloaded (default 50000)
#   --value-size B    bytes per value (default 1024)
#   --interval S      backup_interval_s (default 60): the backups measured are the first ones
#                     taken after the preload
# Binaries: ${TANDEM_BIN_DIR:-<repo>/build}. Everything runs on 127.0.0.1; the cluster is
# stopped on exit, Ctrl-C included.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN_DIR=${TANDEM_BIN_DIR:-$REPO_DIR/build}
KEYS=50000
VALUE=1024
INTERVAL=60
WAIT_ROUNDS_MAX=600 # half-seconds waiting for the measured backups
while (($# > 0)); do
    case $1 in
        --keys) KEYS=$2; shift 2 ;;
        --value-size) VALUE=$2; shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        *) echo "usage: $0 [--keys N] [--value-size BYTES] [--interval S]" >&2; exit 2 ;;
    esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tandem-backup-ship-XXXXXX")
CLUSTER=$WORK/cluster
cleanup() {
    "$REPO_DIR/deploy/local-cluster.sh" down "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

TANDEM_BIN_DIR=$BIN_DIR "$REPO_DIR/deploy/local-cluster.sh" up "$CLUSTER" --topology 2+2+1 \
    --set backup_interval_s="$INTERVAL" --set backup_verify_interval_s=0 >/dev/null
# shellcheck disable=SC1091
source "$CLUSTER/env"
leader_api=$("$BIN_DIR/tandemctl" -o json status | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(next(m["api"] for m in s["members"] if m.get("leader")))')
started=$(date +%s)
echo "== preload: $KEYS keys of $VALUE bytes at $leader_api"
"$BIN_DIR/tandem-bench" --target tandem --endpoints "$leader_api" --ops "$KEYS" --keys "$KEYS" \
    --key-order sequential --value-size "$VALUE" --connections 16 | tail -3
loaded=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
echo "== preload took $(($(date +%s) - started)) s; waiting for the next backup of each site"
for ((round = 0; round < WAIT_ROUNDS_MAX; round++)); do
    n=$("$BIN_DIR/tandemctl" -o json backup list | python3 -c "
import json, sys
print(sum(1 for b in json.load(sys.stdin)['backups'] if b['created'] > '$loaded'))")
    [[ $n -ge 2 ]] && break
    sleep 0.5
done
echo "== backups (tandemctl backup list)"
"$BIN_DIR/tandemctl" backup list
echo "== request to record, per backup (the leader's log)"
python3 - "$CLUSTER" "$loaded" <<'EOF'
import datetime, glob, re, sys
cluster, loaded = sys.argv[1], sys.argv[2]
def t(line):
    return datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
started, recorded = {}, {}
for log in glob.glob(cluster + "/*/tandemd.log"):
    for line in open(log, errors="replace"):
        m = re.search(r"backup (\S+): taken by ([^,\s]+)", line)
        if m:
            started[m.group(1)] = (t(line), m.group(2))
        m = re.search(r"backup (\S+) of \S+ recorded \(index (\d+), (\d+) bytes", line)
        if m and line[:23] >= loaded[:23]:
            recorded[m.group(1)] = (t(line), int(m.group(2)), int(m.group(3)))
for bid, (end, index, size) in sorted(recorded.items()):
    if bid in started:
        begin, taker = started[bid]
        ms = (end - begin).total_seconds() * 1000
        print("%-24s taker %-8s index %-8d %8.1f MiB  %8.0f ms request to record" %
              (bid, taker, index, size / 1048576.0, ms))
EOF
