#!/usr/bin/env bash
# `sbc run` with the dataplane: ban, bans and unban on the control socket reach the pipeline.
#   control_test.sh SBC_BINARY REPO_ROOT
set -euo pipefail
sbc=$1
root=$2
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
sed "s|^socket = .*|socket = \"$work/control.sock\"|; s|\.\./policy/examples|$root/policy/examples|; s|^port = 5060$|port = 45160|" \
  "$root/config/sbc.toml" >"$work/sbc.toml"
"$sbc" run --config "$work/sbc.toml" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$work/control.sock" ] && break; sleep 0.1; done
ctl() { "$sbc" ctl --socket "$work/control.sock" "$@"; }
fail() { echo "FAIL: $*"; cat "$work/log"; exit 1; }
[ "$(ctl ban 192.0.2.7 60)" = "ok banned 192.0.2.7/32" ] || fail "ban address"
[ "$(ctl ban 198.51.100.0/24)" = "ok banned 198.51.100.0/24" ] || fail "ban prefix"
out=$(ctl bans)
grep -q '^bans=2$' <<<"$out" || fail "bans count: $out"
grep -q '^192.0.2.7/32 origin=control offenses=1 remaining_s=60 ' <<<"$out" || fail "bans entry: $out"
[ "$(ctl unban 192.0.2.7)" = "ok unbanned 192.0.2.7/32" ] || fail "unban"
{ ctl unban 192.0.2.7 || true; } | grep -q "is not banned" || fail "unban twice"
{ ctl ban not-an-address || true; } | grep -q "^error: usage" || fail "bad ban"
ctl reload | grep -q "^ok" || fail "reload"
grep -q '^bans=1$' <<<"$(ctl bans)" || fail "bans survive reload"
kill -TERM "$pid"
wait "$pid" || fail "exit code"
pid=
echo "control commands ok"
