#!/usr/bin/env bash
# The Debian package's test (issue 16): builds it with deploy/package.sh (dpkg-buildpackage,
# lintian without errors), installs it on this machine with dpkg -i without starting anything,
# checks what it installed (tandemd --version, tandemctl --help, the unit and systemd-analyze
# verify of it, the tandem user, /var/lib/tandem, man pages, bash completion, the example
# config), then removes and purges it: nothing of it is left but the tandem user (Debian keeps
# system users). Needs root; refuses to run where tandem is installed already.
# Usage: tests/package.sh [OUT_DIR]
#        tests/package.sh --deb FILE   (test a package deploy/package.sh has built already: .ci/run
#                                       builds it in the background while tests/run.sh runs)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fail() { echo "tests/package.sh: $*" >&2; exit 1; }
deb=
if [[ ${1:-} == --deb ]]; then
    (($# == 2)) || fail "usage: tests/package.sh --deb FILE"
    deb=$2
    [[ -f $deb ]] || fail "no package file $deb"
else
    out=${1:-$root/build-package}
fi
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i)"
if dpkg-query -W -f='${Status}' tandem 2>/dev/null | grep -q "installed"; then
    fail "tandem is installed on this machine already: not touching it"
fi

start=$SECONDS
if [[ -z $deb ]]; then
    deb=$("$root/deploy/package.sh" "$out" | tail -n 1)
    echo "tests/package.sh: package and lintian in $((SECONDS - start)) s"
fi
version=$(dpkg-deb -f "$deb" Version)

# No service starts during the install (invoke-rc.d and deb-systemd-invoke ask policy-rc.d), and
# the package never stays installed after this script.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# tests/package.sh: no service starts during this test\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=1
fi
cleanup() {
    if dpkg-query -W -f='${Status}' tandem 2>/dev/null | grep -q "installed\|config-files"; then
        dpkg -P tandem >/dev/null 2>&1 || true
    fi
    [ "$own_policy" -eq 0 ] || rm -f "$policy"
}
trap cleanup EXIT
user_existed=0
getent passwd tandem >/dev/null && user_existed=1

dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"
files=$(dpkg -L tandem)
[ "$(tandemd --version)" = "tandemd $version" ] || fail "tandemd --version: $(tandemd --version)"
grep -q '^usage: tandemctl ' <<<"$(tandemctl --help)" || fail "tandemctl --help printed no usage"
tandem-bench --help >/dev/null 2>&1 || fail "tandem-bench --help failed"
unit=/lib/systemd/system/tandemd@.service
[ -f "$unit" ] && cmp -s "$unit" "$root/deploy/systemd/tandemd@.service" || fail "$unit is not deploy's"
man=--man=yes
command -v man >/dev/null || man=--man=no # a machine without man-db: the pages are checked below
systemd-analyze verify "$man" "$unit" || fail "systemd-analyze verify $unit"
grep -q ':/var/lib/tandem:/usr/sbin/nologin$' <<<"$(getent passwd tandem)" || fail "no tandem system user"
[ "$(stat -c '%a %U' /var/lib/tandem)" = "700 tandem" ] || fail "/var/lib/tandem: $(stat -c '%a %U' /var/lib/tandem)"
for page in /usr/share/man/man8/tandemd.8.gz /usr/share/man/man1/tandemctl.1.gz \
    /usr/share/man/man1/tandem-bench.1.gz; do
    grep -q '^\.TH ' <<<"$(zcat "$page")" || fail "$page is not a man page"
done
grep -q 'election_timeout_ms' <<<"$(zcat /usr/share/man/man8/tandemd.8.gz)" || fail "tandemd(8) lacks the options"
grep -q 'transfer-leader' <<<"$(zcat /usr/share/man/man1/tandemctl.1.gz)" || fail "tandemctl(1) lacks the commands"
completion=/usr/share/bash-completion/completions/tandemctl
complete_words() { # complete_words WORD...: what completing the last word offers
    bash -c 'source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _tandemctl; echo "${COMPREPLY[*]}"' \
        "$completion" "$@"
}
[[ " $(complete_words tandemctl kv '') " == *" put "*" cas "* ]] || fail "completion of 'kv': $(complete_words tandemctl kv '')"
[[ " $(complete_words tandemctl kv list --l) " == *" --limit "* ]] || fail "completion of 'kv list --l'"
[[ " $(complete_words tandemctl -o '') " == " table json " ]] || fail "completion of '-o'"
tandemd --config /usr/share/doc/tandem/examples/example.conf --insecure=true --tls_ca= --tls_cert= \
    --tls_key= --tls_crl= --key_file= --print-config >/dev/null || fail "the example config is refused"
echo "tests/package.sh: installed tandem $version: programs, unit (verified), user, state dir, man pages, completion, example"

dpkg -r tandem >/dev/null || fail "dpkg -r failed"
[ ! -e /usr/bin/tandemd ] && [ ! -e "$unit" ] || fail "dpkg -r left the programs or the unit"
dpkg -P tandem >/dev/null || fail "dpkg -P failed"
! dpkg-query -W -f='${Status}' tandem 2>/dev/null | grep -q . || fail "dpkg still knows tandem after purge"
left=()
while IFS= read -r f; do
    if [ -e "$f" ] && { [ ! -d "$f" ] || [[ $f == */tandem* ]]; }; then
        left+=("$f")
    fi
done <<<"$files"
[ ! -e /var/lib/tandem ] || left+=(/var/lib/tandem)
[ ${#left[@]} -eq 0 ] || fail "left after purge: ${left[*]}"
[ "$user_existed" -eq 1 ] || getent passwd tandem >/dev/null || fail "the tandem user went (Debian keeps it)"
echo "tests/package.sh: removed and purged: nothing left but the tandem user; $((SECONDS - start)) s in all"
