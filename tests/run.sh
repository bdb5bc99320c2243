#!/usr/bin/env bash
# The one test command: installs dependencies, builds with ASan+UBSan and -Werror, checks
# formatting, then runs every test (unit, sim, integration) through ctest, and fuzzes each
# tests/fuzz target for a bounded time (a clang build of its own).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${TANDEM_TEST_BUILD_DIR:-build-test}

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
deploy/install-deps.sh

step "format (clang-format --dry-run)"
mapfile -t sources < <(git ls-files '*.c' '*.h' 2>/dev/null || find node consensus storage replication tests -name '*.[ch]')
unformatted=()
for f in "${sources[@]}"; do
    [ -f "$f" ] || continue
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
done
if [ ${#unformatted[@]} -gt 0 ]; then
    echo "tests/run.sh: not clang-formatted: ${unformatted[*]} (run clang-format -i on them)" >&2
    exit 1
fi
echo "${#sources[@]} files formatted"

step "layering (storage <- consensus <- replication <- node, no include loops)"
python3 tests/layering/check_layers.py

step "build (ASan+UBSan, -Werror)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DTANDEM_WERROR=ON \
    -DTANDEM_SANITIZE=address,undefined >"$build.cmake.log" 2>&1 || { cat "$build.cmake.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" 2>&1 | tail -n 20

# The 10,000 simulated seeds run unsanitized (under ASan a seed costs about 8 times as much: the
# allocator), in a build of the two simulations of their own, in the background at the lowest
# CPU priority and in the idle I/O class while the sanitized tests run in the foreground: those
# mostly wait on timers, disks and real processes, so the seeds take what is idle. tests/sim/test_bcp.c and
# test_fixture.c say what a seed costs.
sim_pid=""
if [ $# -eq 0 ]; then
    step "build of the simulations (unsanitized, -Werror) for 10,000 seeds"
    cmake -S . -B "$build-sim" -DCMAKE_BUILD_TYPE=Debug -DTANDEM_WERROR=ON \
        >"$build-sim.cmake.log" 2>&1 || { cat "$build-sim.cmake.log"; exit 1; }
    cmake --build "$build-sim" -j"$(nproc)" --target sim_test_bcp sim_test_fixture 2>&1 | tail -n 5
    # Their LMDB stores go to shared memory when there is some: no disk syncs beside the tests.
    sim_tmp=${TMPDIR:-/tmp}
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then sim_tmp=/dev/shm; fi
    (cd "$build-sim" && TMPDIR=$sim_tmp exec nice -n 19 ionice -c 3 ctest --output-on-failure \
        --timeout 1800 \
        -R '^sim_test_(bcp|fixture)$') >"$build-sim.log" 2>&1 &
    sim_pid=$!
    trap '[ -z "$sim_pid" ] || kill "$sim_pid" 2>/dev/null || true' EXIT
    echo "sim_test_bcp (8,000 seeds) and sim_test_fixture (2,000) started in the background" \
        "(pid $sim_pid, log $build-sim.log)"
fi

# Fuzzing (tests/fuzz): a clang build of the libFuzzer targets, then each target replays its kept
# reproducers and seeds and fuzzes for TANDEM_FUZZ_SECONDS (20) from a temporary copy of its
# corpus, one at a time, in the background below the foreground tests' priority (most of those
# wait on timers and processes). A crash fails the run and prints the reproducer.
fuzz_pid=""
if [ $# -eq 0 ]; then
    step "fuzzing: libFuzzer build (clang) and ${TANDEM_FUZZ_SECONDS:-20} s per target, in the background"
    (
        CC=${TANDEM_FUZZ_CC:-clang} cmake -S . -B "$build-fuzz" -DTANDEM_FUZZ=ON \
            -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build-fuzz.cmake.log" 2>&1 \
            || { cat "$build-fuzz.cmake.log"; exit 1; }
        nice -n 10 cmake --build "$build-fuzz" -j"$(nproc)" --target fuzz_targets 2>&1 | tail -n 3
        start=$SECONDS fuzz_status=0
        nice -n 10 tests/fuzz/run.sh "$build-fuzz" "${TANDEM_FUZZ_SECONDS:-20}" || fuzz_status=$?
        echo "fuzzing took $((SECONDS - start)) s after its build"
        exit "$fuzz_status"
    ) >"$build-fuzz.log" 2>&1 &
    fuzz_pid=$!
    trap '[ -z "$sim_pid" ] || kill "$sim_pid" 2>/dev/null || true
          [ -z "$fuzz_pid" ] || kill "$fuzz_pid" 2>/dev/null || true' EXIT
    echo "fuzz targets building and running in the background (pid $fuzz_pid, log $build-fuzz.log)"
fi

step "tests"
export TANDEM_BIN_DIR="$root/$build"
# Leaks are checked in the unit tests; daemons killed by SIGKILL in integration tests cannot
# release their memory, so leak reports there would be noise.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
# The sanitized build runs a sample of the seeds (the 10,000 run in the background, above).
export TANDEM_SIM_BCP_SEEDS=${TANDEM_SIM_BCP_SEEDS:-200} TANDEM_SIM_SEEDS=${TANDEM_SIM_SEEDS:-50}
if [ $# -gt 0 ]; then
    exec ctest --output-on-failure --timeout 900 "$@" # a chosen subset: no 10,000-seed run
fi
# The unit tests two at a time (each is short and on its own), then the rest one at a time:
# integration tests each start a cluster, and the sanitized simulations stay in the foreground
# (beside the integration tests their CPU cost more time than it saved, and a leader).
ctest --output-on-failure --timeout 900 -j"$(nproc)" -L '^(unit|layering|fuzz)$'
ctest --output-on-failure --timeout 900 -LE '^(unit|layering|fuzz)$'

step "simulations: 10,000 seeds (sim_test_bcp 8,000 + sim_test_fixture 2,000), unsanitized"
status=0
wait "$sim_pid" || status=$?
sim_pid=""
cat "$root/$build-sim.log"

step "fuzzing (tests/fuzz/run.sh)"
fuzz_status=0
wait "$fuzz_pid" || fuzz_status=$?
fuzz_pid=""
cat "$root/$build-fuzz.log"
[ "$fuzz_status" -eq 0 ] || status=$fuzz_status
exit "$status"
