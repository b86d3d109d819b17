#!/usr/bin/env bash
# The Debian package: built with CPack from the build directory, then checked the way Debian
# checks packages. `lintian` reports no error; `systemd-analyze verify` accepts the unit (on the
# package's own file tree); the package holds the binary, conffiles for /etc/sbc, the unit and
# maintainer scripts that create the "sbc" user; and the packaged configuration loads with the
# packaged binary and policies.
#   package_deb.sh BUILD_DIR REPO_ROOT
set -euo pipefail
BUILD=$1
ROOT=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for t in cpack:cmake dpkg-deb:dpkg lintian:lintian systemd-analyze:systemd fakeroot:fakeroot; do
  command -v "${t%%:*}" >/dev/null ||
    fail "${t%%:*} is missing: install it with 'apt-get install -y ${t##*:}' (scripts/setup does)"
done
[ -x "$BUILD/sbc/sbc" ] || fail "build sbc first (cmake --build $BUILD --target sbc)"

(cd "$WORK" && cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$WORK/out" >"$WORK/cpack.log" 2>&1) ||
  { cat "$WORK/cpack.log"; fail "cpack -G DEB"; }
deb=$(ls "$WORK"/out/sbc_*.deb)
echo "package: $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

dpkg-deb -I "$deb" >"$WORK/info.txt"
dpkg-deb -c "$deb" >"$WORK/contents.txt"
for f in ./usr/bin/sbc ./etc/sbc/sbc.toml ./etc/sbc/policy/callcenter.toml ./etc/sbc/policy/lists/irsf.txt \
  ./lib/systemd/system/sbc.service ./usr/share/doc/sbc/copyright ./usr/share/doc/sbc/changelog.Debian.gz; do
  grep -q " $f$" "$WORK/contents.txt" || fail "the package lacks $f"
done
grep -q '^ Depends: .*adduser' "$WORK/info.txt" || fail "no dependency on adduser: $(grep Depends "$WORK/info.txt")"
grep -q '^ Depends: .*libc6' "$WORK/info.txt" || fail "no shared-library dependencies"
dpkg-deb -e "$deb" "$WORK/control"
grep -qx /etc/sbc/sbc.toml "$WORK/control/conffiles" || fail "sbc.toml is not a conffile"
grep -q 'adduser --system' "$WORK/control/postinst" || fail "postinst does not create the user"
[ "$(stat -c %a "$WORK/control/postinst")" = 755 ] || fail "postinst mode"

# lintian: no error (warnings and infos are listed).
lintian --fail-on error --tag-display-limit 0 "$deb" >"$WORK/lintian.txt" 2>&1 ||
  { cat "$WORK/lintian.txt"; fail "lintian reports errors"; }
echo "lintian: no error ($(grep -c '^W:' "$WORK/lintian.txt" || true) warnings, $(grep -c '^I:' "$WORK/lintian.txt" || true) infos)"
sed 's/^/  /' "$WORK/lintian.txt"

# systemd-analyze verify on the packaged unit. The package is not installed here: the unit is
# verified with its ExecStart pointing at the packaged binary in the extracted tree, every other
# line as shipped.
dpkg-deb -x "$deb" "$WORK/root"
mkdir "$WORK/unit"
sed "s|/usr/bin/sbc|$WORK/root/usr/bin/sbc|g" "$WORK/root/lib/systemd/system/sbc.service" \
  >"$WORK/unit/sbc.service"
systemd-analyze verify --man=no "$WORK/unit/sbc.service" >"$WORK/verify.txt" 2>&1 ||
  { cat "$WORK/verify.txt"; fail "systemd-analyze verify"; }
[ -s "$WORK/verify.txt" ] && { cat "$WORK/verify.txt"; fail "systemd-analyze verify printed warnings"; }
echo "systemd-analyze verify: clean"
grep -q '^ProtectSystem=strict$' "$WORK/root/lib/systemd/system/sbc.service" || fail "unit not hardened"
grep -q '^User=sbc$' "$WORK/root/lib/systemd/system/sbc.service" || fail "unit runs as root"

# The packaged binary loads the packaged configuration and policies (group "sbc" does not exist
# on a build machine: root's group stands in for it).
sed 's/^group = "sbc"$/group = "root"/; s|^files = \["policy/|files = ["'"$WORK"'/root/etc/sbc/policy/|' \
  "$WORK/root/etc/sbc/sbc.toml" >"$WORK/sbc.toml"
"$WORK/root/usr/bin/sbc" run --check --config "$WORK/sbc.toml" >"$WORK/check.txt" 2>&1 ||
  { cat "$WORK/check.txt"; fail "the packaged configuration does not load"; }
echo "packaged configuration: loads"
echo "PASS"
