#!/usr/bin/env bash
# Installs tandem's build and test dependencies from Debian (libraft >= 0.22 from bookworm-backports).
# Idempotent: when every package is already present at an acceptable version it returns at once.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config clang-format
    libraft-dev libuv1-dev liblmdb-dev libssl-dev libcmocka-dev libhttp-parser-dev
    libjansson-dev libinih-dev libprotobuf-c-dev protobuf-c-compiler libcurl4-openssl-dev
    libsystemd-dev # sd_notify: readiness, watchdog, reload and stop under systemd
    systemd # tests/deploy: systemd-analyze verify of deploy/systemd (PID 1 need not be systemd)
    debhelper lintian go-md2man # deploy/package.sh: the .deb, its check, man pages from Markdown
    curl openssl iproute2 nftables procps python3
    jq # deploy/local-cluster.sh: its waits read the nodes' JSON many times a second
    prometheus python3-yaml # tests/alerts: promtool check/test rules, the rules read as YAML
    clang libclang-rt-14-dev # tests/fuzz: clang's libFuzzer (libclang_rt.fuzzer) and sanitizers
    chromium chromium-driver # tests/integration/test_ui_browser.py: the console in headless Chromium
    fonts-ipafont-gothic # ... and its Japanese page legible in the test's screenshots
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

raft_ok() {
    local v
    v=$(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null) || return 1
    dpkg --compare-versions "$v" ge 0.22
}

if [ ${#missing[@]} -eq 0 ] && raft_ok; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages (${missing[*]:-libraft-dev>=0.22}); run as root" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
backports=/etc/apt/sources.list.d/tandem-bookworm-backports.sources
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Reuse the mirror the machine already uses for bookworm.
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 || true)
    mirror=${mirror% }
    mirror=${mirror:-http://deb.debian.org/debian}
    cat >"$backports" <<SRC
Types: deb
URIs: ${mirror%/}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

# prometheus is wanted for promtool alone: its postinst would start (and enable) the server.
# A policy-rc.d that denies every start, for this install only, keeps it stopped (invoke-rc.d
# and deb-systemd-invoke both ask it); the unit is then disabled so no boot starts it either.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# tandem install-deps.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable prometheus.service >/dev/null 2>&1 || true
fi
apt-get install -y -qq --no-install-recommends -t bookworm-backports libraft-dev libraft0 >/dev/null 2>&1 \
    || apt-get install -y -qq --no-install-recommends -t bookworm-backports libraft-dev >/dev/null

if ! raft_ok; then
    echo "install-deps: libraft-dev >= 0.22 is not available (have: $(dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null || echo none))" >&2
    exit 1
fi
