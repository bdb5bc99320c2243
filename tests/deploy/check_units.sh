#!/usr/bin/env bash
# Checks deploy/systemd offline (systemd need not be PID 1): systemd-analyze verify of
# tandemd@.service, its sandboxing's exposure score, and sysusers.d/tmpfiles.d applied to a
# scratch root (the tandem user, /var/lib/tandem mode 0700).
# Usage: tests/deploy/check_units.sh SOURCE_DIR BIN_DIR
set -euo pipefail
src=${1:?usage: check_units.sh SOURCE_DIR BIN_DIR}
bin=${2:?usage: check_units.sh SOURCE_DIR BIN_DIR}
units=$src/deploy/systemd
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "check_units: $*" >&2; exit 1; }

# verify needs ExecStart's binary on this machine: the unit as shipped but for that path (the
# installed unit itself, with its man page, is verified by tests/package.sh).
grep -q '^ExecStart=/usr/bin/tandemd ' "$units/tandemd@.service" || fail "ExecStart is not /usr/bin/tandemd"
sed "s|^ExecStart=/usr/bin/tandemd |ExecStart=$bin/tandemd |" "$units/tandemd@.service" \
    >"$work/tandemd@.service"
out=$(systemd-analyze verify --man=no "$work/tandemd@.service" 2>&1) || fail "verify: $out"
[ -z "$out" ] || fail "verify warns: $out"
echo "systemd-analyze verify: tandemd@.service clean"

# The sandboxing a reviewer asks for is there, and systemd scores the whole at most 2.0 ("OK").
for want in Type=notify WatchdogSec= Restart=on-failure User=tandem ProtectSystem=strict \
    'ReadWritePaths=/var/lib/tandem/%i' NoNewPrivileges=yes PrivateTmp=yes ProtectHome=yes \
    'CapabilityBoundingSet=$' 'SystemCallFilter=@system-service' \
    'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' 'ExecReload=/bin/kill -HUP $MAINPID'; do
    grep -q "^${want//\$MAINPID/\\\$MAINPID}" "$units/tandemd@.service" || fail "tandemd@.service lacks $want"
done
mkdir -p "$work/root/etc/systemd/system"
cp "$work/tandemd@.service" "$work/root/etc/systemd/system/"
score=$(systemd-analyze security --offline=yes --root="$work/root" --threshold=20 \
    tandemd@check.service 2>&1 | grep -o 'exposure level for tandemd@check.service: [0-9.]*') \
    || fail "systemd-analyze security: exposure above 2.0 or not scored"
echo "systemd-analyze security: $score"

# sysusers.d and tmpfiles.d, applied to a scratch root.
mkdir -p "$work/sys/etc"
systemd-sysusers --root="$work/sys" "$units/tandem.sysusers" >/dev/null 2>&1 || fail "sysusers failed"
grep -q '^tandem:x:[0-9]*:[0-9]*:[^:]*:/var/lib/tandem:/usr/sbin/nologin$' "$work/sys/etc/passwd" \
    || fail "sysusers made no tandem system user: $(cat "$work/sys/etc/passwd")"
systemd-tmpfiles --root="$work/sys" --create "$units/tandem.tmpfiles" || fail "tmpfiles failed"
uid=$(awk -F: '$1 == "tandem" {print $3}' "$work/sys/etc/passwd")
[ "$(stat -c '%a %u' "$work/sys/var/lib/tandem")" = "700 $uid" ] \
    || fail "/var/lib/tandem is $(stat -c '%a %u' "$work/sys/var/lib/tandem"), not 700 $uid"
echo "sysusers/tmpfiles: user tandem ($uid), /var/lib/tandem 0700"
