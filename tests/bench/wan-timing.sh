#!/usr/bin/env bash
# WAN timing in the three-place lab (issue 16 item 4): runs tests/bench/wan-timing.py, which
# starts a lab cluster (deploy/lab.sh, needs root) per heartbeat/election setting and prints the
# write gaps after a leader kill, during a planned invoke and after a whole-site loss, and the
# leader changes during a steady load. Figures go to tests/bench/wan-timing.txt by hand.
#
#   tests/bench/wan-timing.sh BUILD_DIR [--settings 75/750,50/400] [--rtt-ms east-west=8,witness=20]
#                             [--kills N] [--invokes N] [--steady-s S]
set -euo pipefail
(($# >= 1)) || { sed -n '7,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$(cd "$1" && pwd) || { echo "wan-timing: no build directory $1" >&2; exit 1; }
shift
[[ -x $BUILD/tandemd && -x $BUILD/tandem-wan ]] || { echo "wan-timing: build tandemd and tandem-wan in $BUILD first" >&2; exit 1; }
TANDEM_BIN_DIR=$BUILD TANDEM_SOURCE_DIR=$(cd "$HERE/../.." && pwd) exec python3 "$HERE/wan-timing.py" "$@"
