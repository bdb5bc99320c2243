#!/usr/bin/env bash
# The one test command: installs dependencies, builds with ASan+UBSan and -Werror, checks
# formatting, then runs every test (unit, sim, integration) through ctest.
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

step "tests"
export TANDEM_BIN_DIR="$root/$build"
# Leaks are checked in the unit tests; daemons killed by SIGKILL in integration tests cannot
# release their memory, so leak reports there would be noise.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
ctest --output-on-failure --timeout 900 "$@"
