#!/usr/bin/env bash
# Runs the libFuzzer targets of a TANDEM_FUZZ build, one after the other: first every kept crash
# reproducer (tests/fuzz/regressions/<target>/) and seed once, then fuzzing for a bounded time
# from a temporary copy of the seeds (the repository is never written). A crash fails the run
# and prints the reproducer: keep it as tests/fuzz/regressions/<target>/<name> with the fix.
# Usage: run.sh BUILD_DIR [SECONDS_PER_TARGET [TARGET...]]
set -euo pipefail

build=$(cd "${1:?usage: run.sh BUILD_DIR [SECONDS_PER_TARGET [TARGET...]]}" && pwd)
seconds=${2:-20}
shift $(($# >= 2 ? 2 : $#))
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd "$here" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')
fi
# In shared memory when there is some: the targets' LMDB stores sync there for nothing.
tmp=${TMPDIR:-/tmp}
if [ -d /dev/shm ] && [ -w /dev/shm ]; then tmp=/dev/shm; fi
work=$(mktemp -d "$tmp/tandem-fuzz-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
export TANDEM_FUZZ_TMPDIR=$work # the targets' own directories, left there by a crash
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for target in "${targets[@]}"; do
    binary="$build/tests/fuzz/fuzz_$target"
    [ -x "$binary" ] || { echo "fuzz: $binary is not built" >&2; exit 1; }
    mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
    cp "$here/corpus/$target/"* "$work/$target/corpus/"
    log="$work/$target/log"
    replay=("$here/corpus/$target")
    [ -d "$here/regressions/$target" ] && replay+=("$here/regressions/$target")
    if ! (cd "$work/$target" && "$binary" -runs=0 "${replay[@]}") >"$log" 2>&1; then
        echo "fuzz_$target: a seed or kept reproducer fails:" >&2
        tail -n 60 "$log" >&2
        status=1
        continue
    fi
    if (cd "$work/$target" && "$binary" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$work/$target/artifacts/" \
        "$work/$target/corpus") >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz_$target: ${runs:-?} executions in ${seconds} s, no crash"
    else
        echo "fuzz_$target: CRASH" >&2
        grep -v '^INFO:\|^#[0-9]' "$log" | tail -n 80 >&2
        for artifact in "$work/$target/artifacts/"*; do
            [ -f "$artifact" ] || continue
            echo "reproducer $(basename "$artifact") (base64; keep it in" \
                "tests/fuzz/regressions/$target/):" >&2
            base64 -w 0 "$artifact" >&2
            echo >&2
        done
        status=1
    fi
done
exit "$status"
