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

# registrar_config REG_PORT INT_PORT PORT_MIN PORT_MAX REGISTRATIONS_TOML: the default node
# config in front of a registrar next hop on 127.0.0.3:REG_PORT (internal listener on INT_PORT,
# fast health checks, media ports PORT_MIN-PORT_MAX, a [registrations] section), and a copy of
# the example policies with the per-account REGISTER limit out of the way (a test's phones
# register, move and unregister within seconds).
registrar_config() {
  write_config
  cp -r "$ROOT/policy/examples" "$WORK/policy"
  python3 - "$WORK/sbc.toml" "$1" "$2" "$WORK/policy/callcenter.toml" "$3" "$4" "$5" <<'PY'
import re, sys
path, reg, internal, pol, pmin, pmax, regs = sys.argv[1:8]
p = open(pol).read()
p = p.replace('per_account = { rate = 1, burst = 5 }', 'per_account = { rate = 100, burst = 200 }')
open(pol, "w").write(p)
s = open(path).read()
s = re.sub(r'files = \[.*\]', 'files = ["' + pol + '"]', s)
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + reg, s, flags=re.S)
s = re.sub(r'(realm = "internal"[^\[]*?port = )\d+', r'\g<1>' + internal, s, flags=re.S)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = ' + pmin).replace('port_max = 29999', 'port_max = ' + pmax)
s = s.replace('[media]', '[registrations]\n' + regs + '\n\n[media]')
open(path, "w").write(s)
PY
  grep -q "port = $2" "$WORK/sbc.toml" || fail "internal port not rewritten"
}

# The peers (Kamailio, rtpengine, stunnel) start, and are awaited, as the benches start them:
# logs in $WORK, PIDs in PEER_PIDS (stopped by cleanup).
source "$HERE/../../../scripts/lib/peers.sh"
PEER_DIR=$WORK

# start_kamailio CFG udp|tcp ADDR PORT [KAMAILIO_ARGS...]: Kamailio with CFG (checked first
# with -c), listening on ADDR:PORT, logging to $WORK/kamailio.log, stopped by PID in cleanup.
# Fails when the port is taken, the configuration is refused, or the port is not open within
# 10 s.
start_kamailio() {
  local cfg=$1 proto=$2 addr=$3 port=$4
  shift 4
  peer_kamailio "$cfg" "${proto:0:1}" "$addr" "$port" 64 8 "$@" 2>&1 ||
    fail "kamailio did not start (above)"
}

# start_stunnel ADDR:PORT... <<EOF (services) EOF: stunnel4 with that configuration (in the
# foreground, no PID file; $WORK/stunnel.conf, $WORK/stunnel.log), stopped in cleanup; returns
# once it listens on every ADDR:PORT given (its accept addresses).
start_stunnel() {
  peer_stunnel stunnel "$@" 2>&1 || fail "stunnel did not start (above)"
}

# wait_hops_up WHAT: until the daemon has a next hop up (a health probe answered), 10 s at
# most; fails saying WHAT never came up (with Kamailio's log when there is one).
wait_hops_up() {
  for _ in $(seq 100); do
    [ "$(stat calls.hops_up)" -ge 1 ] 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$WORK/kamailio.log" 2>/dev/null || true
  fail "$1 never came up: $(ctl stats | grep ^calls)"
}
