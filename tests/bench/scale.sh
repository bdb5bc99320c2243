#!/usr/bin/env bash
# The benchmark of growth (issue 17 item 4): tests/bench/scale.sh BUILD_DIR [--keys N] [--jobs N]
# [--value-size B] [--set KEY=VALUE]... runs tests/bench/scale.py against BUILD_DIR's tandemd, tandemctl,
# tandem-bench and micro_snapshot (a Release build: cmake -DCMAKE_BUILD_TYPE=Release) and prints
# its figures, then the command and the machine's load. Defaults: 1,000,000 keys, 100,000 jobs.
set -euo pipefail
[[ $# -ge 1 && -d $1 ]] || {
    echo "usage: tests/bench/scale.sh BUILD_DIR [--keys N] [--jobs N] [--value-size B] [--set KEY=VALUE]..." >&2
    exit 2
}
BUILD_DIR=$(cd "$1" && pwd)
shift
for binary in tandemd tandemctl tandem-bench; do
    [[ -x $BUILD_DIR/$binary ]] || {
        echo "scale.sh: $BUILD_DIR/$binary missing: build it first" >&2
        exit 1
    }
done
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
started=$(date +%s)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores, $(date -u +%FT%TZ)"
TANDEM_BIN_DIR=$BUILD_DIR timeout 7200 python3 "$HERE/scale.py" "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg), $(($(date +%s) - started)) s in all"
echo "command: tests/bench/scale.sh $BUILD_DIR $*"
