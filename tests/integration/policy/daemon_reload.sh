#!/usr/bin/env bash
# usage: daemon_reload.sh SBC_BINARY POLICY_TEST_DATA_DIR
set -euo pipefail
SBC=$1
DATA=$2
work=$(mktemp -d /tmp/sbc-reload.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- daemon log"; cat "$work/daemon.log" || true; exit 1; }

install_policy() { cp "$DATA/reload/$1" "$work/policy.tmp" && mv "$work/policy.tmp" "$work/policy.toml"; }
status() { "$SBC" ctl --socket "$work/ctl.sock" status; }
field() { status | sed -n "s/^$1=//p" | head -1; }
wait_for() {  # wait_for FIELD VALUE: bounded poll of the status
  for _ in $(seq 1 50); do
    [ "$(field "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  fail "status $1 never became '$2' (is '$(field "$1")')"
}

install_policy good_a.toml
cat > "$work/sbc.toml" <<CFG
[node]
name = "reload-test"
[control]
socket = "ctl.sock"
[policy]
files = ["policy.toml"]
CFG

"$SBC" run --config "$work/sbc.toml" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 50); do [ -S "$work/ctl.sock" ] && break; sleep 0.1; done
[ -S "$work/ctl.sock" ] || fail "control socket never appeared"

[ "$(field policy_version)" = 1 ] || fail "initial version"
[ "$(field last_reload_result)" = ok ] || fail "initial result"
hash_a=$(field policy_hash)
[ -n "$hash_a" ] || fail "no hash"
[ "$("$SBC" ctl --socket "$work/ctl.sock" version)" = "sbc 0.1.0" ] || fail "version command"

# 1. A good edit, reloaded by SIGHUP.
install_policy good_b.toml
kill -HUP "$pid"
wait_for policy_version 2
hash_b=$(field policy_hash)
[ "$hash_b" != "$hash_a" ] || fail "hash did not change"
[ "$(field last_reload_result)" = ok ] || fail "result after good SIGHUP"

# 2. A broken edit through the control socket: refused, version 2 stays in force.
install_policy broken.toml
if out=$("$SBC" ctl --socket "$work/ctl.sock" reload); then fail "broken reload reported success: $out"; fi
echo "$out" | grep -q "^failed version=2 errors=2" || fail "reload reply: $out"
echo "$out" | grep -q "policy.toml:6:" || fail "reload reply lacks file:line: $out"
[ "$(field policy_version)" = 2 ] || fail "version changed after a broken reload"
[ "$(field policy_hash)" = "$hash_b" ] || fail "hash changed after a broken reload"
[ "$(field last_reload_result)" = "failed (2 errors)" ] || fail "last result after broken reload"
status | grep -q "^last_reload_error=.*policy.toml:8:" || fail "status lacks the errors"

# 3. A broken edit through SIGHUP: also refused, the daemon keeps running.
kill -HUP "$pid"
wait_for reloads_failed 2
kill -0 "$pid" || fail "daemon died"
[ "$(field policy_version)" = 2 ] || fail "version changed after broken SIGHUP"

# 4. Fixed again through the control socket: version 3, same content hash as A.
install_policy good_a.toml
out=$("$SBC" ctl --socket "$work/ctl.sock" reload) || fail "good reload failed: $out"
[ "$out" = "ok version=3" ] || fail "reload reply: $out"
[ "$(field policy_hash)" = "$hash_a" ] || fail "hash is not the content hash"
[ "$(field last_reload_result)" = ok ] || fail "result after recovery"
[ "$(field reloads_ok)" = 3 ] || fail "reloads_ok"
grep -q "policy reload failed with 2 error(s)" "$work/daemon.log" || fail "failed reload not logged"

# 5. Clean stop on SIGTERM.
kill -TERM "$pid"
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then fail "daemon ignored SIGTERM"; fi
wait "$pid" || fail "daemon exit code $?"
pid=""
[ ! -e "$work/ctl.sock" ] || fail "control socket left behind"
echo "PASS: SIGHUP and ctl reloads (good and broken) change version/hash/result as expected"
