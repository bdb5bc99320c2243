#!/usr/bin/env bash
# Builds tandem_VERSION_amd64.deb with dpkg-buildpackage from deploy/debian/ (the units from
# deploy/systemd/), then runs lintian on it: any error fails. The version is TANDEM_VERSION
# (node/config.h). The sources are the working tree's files that git knows or would add.
# Usage: deploy/package.sh [OUT_DIR]   (default: build-package; the .deb, lintian.txt, build.log)
# Prints the .deb's path on stdout, its progress on stderr.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(mkdir -p "${1:-$root/build-package}" && cd "${1:-$root/build-package}" && pwd)
die() { echo "package: $*" >&2; exit 1; }

version=$(sed -n 's/^#define TANDEM_VERSION "\(.*\)"$/\1/p' "$root/node/config.h")
[[ $version =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || die "no TANDEM_VERSION in node/config.h"
for tool in dpkg-buildpackage dh lintian go-md2man git; do
    command -v "$tool" >/dev/null || die "$tool is missing: run deploy/install-deps.sh"
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
src=$stage/tandem-$version
mkdir -p "$src"
# Tracked and new files of the working tree (not build directories or other ignored files).
(cd "$root" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf -) | tar -xf - -C "$src"
rm -rf "$src/debian"
cp -r "$root/deploy/debian" "$src/debian"
cp "$root/deploy/systemd/tandemd@.service" "$src/debian/tandem.tandemd@.service"
cp "$root/deploy/systemd/tandem.sysusers" "$src/debian/tandem.sysusers"
cp "$root/deploy/systemd/tandem.tmpfiles" "$src/debian/tandem.tmpfiles"
commit=$(git -C "$root" rev-parse --short HEAD)
dirty=$(git -C "$root" status --porcelain --untracked-files=no | grep -q . && echo " with local changes" || true)
cat >"$src/debian/changelog" <<CHANGELOG
tandem ($version) bookworm; urgency=medium

  * Built by deploy/package.sh from commit $commit$dirty.

 -- tandem maintainers <tandem@example.org>  $(git -C "$root" log -1 --format=%aD)
CHANGELOG

start=$SECONDS
echo "package: dpkg-buildpackage of tandem $version (log: $out/build.log)" >&2
if ! (cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
    dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1; then
    tail -n 40 "$out/build.log" >&2
    die "dpkg-buildpackage failed (log: $out/build.log)"
fi
echo "package: built in $((SECONDS - start)) s" >&2
rm -f "$out"/tandem_*.deb "$out"/tandem-dbgsym_*.deb "$out"/tandem_*.changes "$out"/tandem_*.buildinfo
mv "$stage"/*.deb "$stage"/*.changes "$stage"/*.buildinfo "$out"/
deb=$out/tandem_${version}_amd64.deb
[ -f "$deb" ] || die "dpkg-buildpackage made no $(basename "$deb")"

# lintian: errors fail the build; warnings and the rest are shown.
lintian --fail-on error --display-info "$out/tandem_${version}_amd64.changes" >"$out/lintian.txt" 2>&1 \
    || { cat "$out/lintian.txt" >&2; die "lintian reports errors ($out/lintian.txt)"; }
echo "package: lintian: $(grep -c '^E:' "$out/lintian.txt" || true) errors," \
    "$(grep -c '^W:' "$out/lintian.txt" || true) warnings ($out/lintian.txt)" >&2
echo "$deb"
