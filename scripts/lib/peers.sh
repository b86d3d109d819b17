# The peers that run beside the SBC, started, awaited and stopped one way for the integration
# tests (tests/integration/sbc/lib.sh) and the benches (scripts/bench.d/*): Kamailio, rtpengine
# and stunnel (the TLS side of sipp, which Debian builds without TLS). Sourced, not run.
# The caller sets:
#   PEER_DIR     the directory for the peers' configs and logs (<name>.log)
#   PEER_PIDS    an array; every peer's PID is appended, peer_stop_all stops them
#   PEER_NETNS   optional: a network namespace the peers run in (created by the caller)
# A peer that does not come up makes its function print why on stderr and return 1; nothing
# here exits, so each caller fails its own way. Every wait is bounded.

# Command prefix for the namespace, if any ($! of `"${pre[@]}" prog &` is then prog's PID:
# ip netns exec executes it in place).
peer_prefix() {
  PEER_PREFIX=()
  [ -n "${PEER_NETNS:-}" ] && PEER_PREFIX=(ip netns exec "$PEER_NETNS")
  return 0
}

# peer_listening u|t ADDR PORT: something listens on ADDR:PORT (UDP or TCP).
peer_listening() {
  peer_prefix
  "${PEER_PREFIX[@]}" ss -Hln"$1" "src $2:$3" 2>/dev/null | grep -q .
}

# peer_wait_listening PID u|t ADDR PORT [TENTHS=100]: until ADDR:PORT listens; fails when PID
# exits first or after TENTHS tenths of a second.
peer_wait_listening() {
  local pid=$1 proto=$2 addr=$3 port=$4 tenths=${5:-100}
  for _ in $(seq "$tenths"); do
    peer_listening "$proto" "$addr" "$port" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# peer_kamailio CFG u|t ADDR PORT SHM_MB PKG_MB [KAMAILIO_ARGS...]: Kamailio 5.6 with CFG and
# KAMAILIO_ARGS (checked first with `kamailio -c`), in the foreground (-DD -E) with SHM_MB of
# shared and PKG_MB of private memory per process, logging to $PEER_DIR/kamailio.log; returns
# once it listens on ADDR:PORT (UDP or TCP). Its main process's PID is in PEER_KAMAILIO_PID.
peer_kamailio() {
  local cfg=$1 proto=$2 addr=$3 port=$4 shm=$5 pkg=$6
  shift 6
  peer_prefix
  if peer_listening "$proto" "$addr" "$port"; then
    echo "kamailio: port $addr:$port ($proto) is taken" >&2
    return 1
  fi
  if ! "${PEER_PREFIX[@]}" kamailio -c -f "$cfg" "$@" >"$PEER_DIR/kamailio-check.log" 2>&1; then
    cat "$PEER_DIR/kamailio-check.log" >&2
    echo "kamailio refuses its configuration ($cfg)" >&2
    return 1
  fi
  "${PEER_PREFIX[@]}" kamailio -DD -E -f "$cfg" -m "$shm" -M "$pkg" "$@" >"$PEER_DIR/kamailio.log" 2>&1 &
  PEER_KAMAILIO_PID=$!
  PEER_PIDS+=("$PEER_KAMAILIO_PID")
  peer_wait_listening "$PEER_KAMAILIO_PID" "$proto" "$addr" "$port" && return 0
  tail -30 "$PEER_DIR/kamailio.log" >&2
  echo "kamailio never listened on $addr:$port ($proto)" >&2
  return 1
}

# peer_rtpengine ADDR NG_PORT PORT_MIN PORT_MAX [RTPENGINE_ARGS...]: rtpengine (Debian's
# rtpengine-daemon) in userspace (--table=-1, no config file, sessions deleted at once), media
# on ADDR PORT_MIN-PORT_MAX, its ng control protocol on udp ADDR:NG_PORT, logging to
# $PEER_DIR/rtpengine.log (level 3), its PID in $PEER_DIR/rtpengine.pid and PEER_RTPENGINE_PID;
# returns once the ng port is open.
peer_rtpengine() {
  local addr=$1 ng=$2 pmin=$3 pmax=$4
  shift 4
  peer_prefix
  "${PEER_PREFIX[@]}" rtpengine --config-file=none --table=-1 --interface="$addr" \
    --listen-ng="$addr:$ng" --port-min="$pmin" --port-max="$pmax" --delete-delay=0 \
    --foreground --log-stderr --log-level=3 --pidfile="$PEER_DIR/rtpengine.pid" "$@" \
    >"$PEER_DIR/rtpengine.log" 2>&1 &
  PEER_RTPENGINE_PID=$!
  PEER_PIDS+=("$PEER_RTPENGINE_PID")
  peer_wait_listening "$PEER_RTPENGINE_PID" u "$addr" "$ng" && return 0
  tail -20 "$PEER_DIR/rtpengine.log" >&2
  echo "rtpengine never opened its ng port $addr:$ng" >&2
  return 1
}

# peer_stunnel NAME ADDR:PORT... <<EOF (services, and global options before them) EOF:
# stunnel4 in the foreground with no PID file and the configuration read from stdin (written
# to $PEER_DIR/NAME.conf, logging to $PEER_DIR/NAME.log); returns once every ADDR:PORT given
# (its `accept` addresses) listens.
peer_stunnel() {
  local name=$1 a
  shift
  peer_prefix
  { printf 'foreground = yes\npid =\n'; cat; } >"$PEER_DIR/$name.conf"
  "${PEER_PREFIX[@]}" stunnel4 "$PEER_DIR/$name.conf" >"$PEER_DIR/$name.log" 2>&1 &
  PEER_STUNNEL_PID=$!
  PEER_PIDS+=("$PEER_STUNNEL_PID")
  for a in "$@"; do
    peer_wait_listening "$PEER_STUNNEL_PID" t "${a%:*}" "${a##*:}" && continue
    cat "$PEER_DIR/$name.log" >&2
    echo "stunnel ($name) never listened on $a" >&2
    return 1
  done
}

# peer_stop_all: TERM to every PID in PEER_PIDS, KILL to any still there after 10 s, then (in
# a namespace) KILL to whatever else runs in it (Kamailio's workers): the namespace is the
# caller's own. PEER_PIDS is emptied.
peer_stop_all() {
  local p
  for p in "${PEER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PEER_PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  PEER_PIDS=()
  if [ -n "${PEER_NETNS:-}" ]; then
    for p in $(ip netns pids "$PEER_NETNS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  fi
  return 0
}
