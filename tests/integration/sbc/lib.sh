# Shared by the live `sbc run` tests: a work directory, a node config on loopback with
# non-standard ports, the daemon started and stopped by PID, and peers that must be installed.
#   source lib.sh SBC_BINARY REPO_ROOT SIP_PORT
set -euo pipefail
SBC=$1
ROOT=$2
SIP_PORT=$3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d)
SBC_PID=
PEER_PIDS=()
cleanup() {
  local p
  for p in "${PEER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$SBC_PID" ] && kill "$SBC_PID" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  echo "--- daemon log"
  cat "$WORK/sbc.log" 2>/dev/null || true
  exit 1
}

need() {  # need TOOL DEBIAN_PACKAGE
  command -v "$1" >/dev/null ||
    fail "$1 is missing: install it with 'apt-get install -y $2' (scripts/setup does)"
}

# The default node config with our control socket, absolute policy paths and SIP_PORT for
# every listener (the TCP and internal ones are not opened by the UDP front door).
write_config() {
  sed "s|^socket = .*|socket = \"$WORK/control.sock\"|; s|\.\./policy/examples|$ROOT/policy/examples|; s|^port = 5060$|port = $SIP_PORT|; s|^port = 5070$|port = $((SIP_PORT + 1000))|" \
    "$ROOT/config/sbc.toml" >"$WORK/sbc.toml"
}

start_sbc() {
  "$SBC" run --config "$WORK/sbc.toml" >"$WORK/sbc.log" 2>&1 &
  SBC_PID=$!
  # Start-up commits the fraud tables (hundreds of MiB with the default policy): seconds on a
  # loaded machine.
  for _ in $(seq 300); do [ -S "$WORK/control.sock" ] && return 0; sleep 0.1; done
  fail "control socket never appeared"
}

stop_sbc() {
  kill -TERM "$SBC_PID"
  wait "$SBC_PID" || fail "sbc run exited with $?"
  SBC_PID=
}

ctl() { "$SBC" ctl --socket "$WORK/control.sock" "$@"; }
stat() { ctl stats | sed -n "s/^$1=//p"; }
