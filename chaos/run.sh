#!/usr/bin/env bash
# Runs one seeded chaos run against a local 2+2+1 cluster of real tandemd processes (on loopback,
# or in the three-place lab with --lab) and judges it with chaos/check.py; the arguments are
# chaos/harness.py's (--help lists them).
#   chaos/run.sh --seconds 60 --seed 7 [--faults LIST] [--out DIR] [--bin-dir DIR] [--keep]
#                [--lab [--rtt-ms east-west=8,witness=20] [--loss PCT]]   (the three-place lab, root)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec python3 "$here/harness.py" "$@"
