# What the SIP benches (scripts/bench.d/cps, cps-tls, call-memory, registrations) share: the
# node config and policy they run the SBC with, sipp's step statistics and the stepped-rate
# loop. Sourced after scripts/lib/peers.sh, from the repository root.

# bench_policy DIR NAME CIDR...: the example policies copied to DIR/policy, with the CIDRs
# added as a trusted block NAME to callcenter.toml (a carrier's or an office's traffic comes
# from one address, which the per-source limits meant for strangers would stop; trusted
# INVITEs are still scored).
bench_policy() {
  local dir=$1 name=$2
  shift 2
  cp -r policy/examples "$dir/policy"
  python3 - "$dir/policy/callcenter.toml" "$name" "$@" <<'PY'
import sys
p, name, cidrs = sys.argv[1], sys.argv[2], sys.argv[3:]
s = open(p).read()
anchor = 'cidrs = ["198.51.100.10/32", "198.51.100.11/32"]\n'
assert anchor in s, "callcenter.toml: trusted block not found"
block = '\n[[access.trusted]]\nname = "%s"\ncidrs = [%s]\n' % (name, ", ".join('"%s"' % c for c in cidrs))
s = s.replace(anchor, anchor + block, 1)
open(p, "w").write(s)
PY
}

# bench_node_config DIR [hop=PORT] [external=PORT] [internal=PORT] [media=MIN-MAX]: the
# default node config as DIR/sbc.toml with its control socket in DIR, the policies of
# DIR/policy, log level warn, and the ports given: the next hop's, the external UDP and TCP
# listeners', the internal listener's, the relay's media range. Fails when a rewrite missed.
bench_node_config() {
  local dir=$1
  shift
  sed "s|^socket = .*|socket = \"$dir/control.sock\"|; s|\.\./policy/examples|$dir/policy|" \
    config/sbc.toml >"$dir/sbc.toml"
  python3 - "$dir/sbc.toml" "$@" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
def sub(old, new, count=1):
    global s
    if old not in s:
        sys.exit("bench: node config: %r not found" % old)
    s = s.replace(old, new, count)
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    if k == "hop":
        s, n = re.subn(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + v, s, count=1, flags=re.S)
        if n != 1:
            sys.exit("bench: node config: no next hop port")
    elif k == "external":
        sub('port = 5060\ntransport = "udp"', 'port = %s\ntransport = "udp"' % v)
        sub('port = 5060\ntransport = "tcp"', 'port = %s\ntransport = "tcp"' % v)
    elif k == "internal":
        sub('port = 5070', 'port = ' + v, count=-1)
    elif k == "media":
        lo, hi = v.split("-")
        sub('port_min = 20000', 'port_min = ' + lo)
        sub('port_max = 29999', 'port_max = ' + hi)
    else:
        sys.exit("bench: node config: unknown setting " + k)
sub('level = "info"', 'level = "warn"')
open(p, "w").write(s)
PY
}

# sipp_step_stats DIR: "created successful p50_ms p99_ms" of a sipp run started in DIR with
# -trace_stat -stf stat.csv -trace_rtt (the response time sipp measured: INVITE or first
# REGISTER to its final 200); -1 for the latencies when none was recorded.
sipp_step_stats() {
  python3 - "$1" <<'PY'
import csv, glob, sys
d = sys.argv[1]
created = ok = 0
try:
    rows = list(csv.DictReader(open(d + "/stat.csv"), delimiter=";"))
    created = int(rows[-1]["TotalCallCreated"]); ok = int(rows[-1]["SuccessfulCall(C)"])
except (OSError, IndexError, KeyError, ValueError):
    pass
lat = []
for f in glob.glob(d + "/*_rtt.csv"):
    for row in csv.reader(open(f), delimiter=";"):
        try:
            lat.append(float(row[1]))
        except (IndexError, ValueError):
            pass
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else -1
print(created, ok, "%.1f" % q(0.50), "%.1f" % q(0.99))
PY
}

# bench_steps NOUN LATENCY_PREFIX: the stepped-rate comparison. For each rate of $rates and
# each side of ${SIDES:-ours theirs} not yet over its limit: start_SIDE (sets `target`; a
# failure ends that side), `step SIDE TARGET RATE` (prints what sipp_step_stats prints),
# `step_extra SIDE` (more figures for the step line, from the running system), then every peer
# stopped. A side is done after its first step with 0.1% or more of rate x $secs failed.
# Leaves best[SIDE] (the highest rate passed), p50[SIDE], p99[SIDE] and done_[SIDE] (1 when
# its limit was reached).
bench_steps() {
  local noun=$1 lat=$2 r side created ok l50 l99 extra expected failed pct
  declare -gA best=([ours]=0 [theirs]=0) p50=([ours]=- [theirs]=-) p99=([ours]=- [theirs]=-)
  declare -gA done_=([ours]=0 [theirs]=0)
  for r in $rates; do
    for side in ${SIDES:-ours theirs}; do
      [ "${done_[$side]}" = 1 ] && continue
      "start_$side" || { peer_stop_all; done_[$side]=1; continue; }
      read -r created ok l50 l99 < <(step "$side" "$target" "$r")
      extra=$(step_extra "$side")
      peer_stop_all
      expected=$((r * secs))
      failed=$((expected - ok))
      pct=$(python3 -c "print(f'{100.0 * $failed / $expected:.2f}')")
      echo "step: $side rate=$r $noun=$expected created=$created successful=$ok failed=$failed (${pct}%) ${lat}p50_ms=$l50 ${lat}p99_ms=$l99$extra"
      if [ $((failed * 1000)) -lt "$expected" ]; then
        best[$side]=$r; p50[$side]=$l50; p99[$side]=$l99
      else
        done_[$side]=1
      fi
    done
    [ "${done_[ours]}" = 1 ] && [ "${done_[theirs]}" = 1 ] && break
  done
  return 0
}

# bench_sbc: builds the daemon in $B (configured first if it is not) and sets SBC to its
# absolute path; SBC_BINARY=path measures a binary built elsewhere instead (no build here).
bench_sbc() {
  if [ -n "${SBC_BINARY:-}" ]; then
    SBC=$(realpath "$SBC_BINARY")
    return 0
  fi
  [ -f "$B/CMakeCache.txt" ] || cmake -S . -B "$B" -G Ninja >/dev/null
  cmake --build "$B" --target sbc >/dev/null
  SBC=$(cd "$(dirname "$B/sbc/sbc")" && pwd)/sbc
}

# bench_workdir CASE TAG [netns]: W, a fresh work directory (/tmp/sbc-bench-TAG.XXXXXX) for
# the peers' configs and logs, removed on exit (kept with KEEP_WORK=1), and every peer stopped
# on exit. With netns, the run gets a network namespace of its own (sbc-TAG-PID, needs root;
# its loopback has every address and port, so nothing collides with other tests): the peers
# run in it (PEER_NETNS), and it is removed on exit.
bench_workdir() {
  local case=$1 tag=$2
  W=$(mktemp -d "/tmp/sbc-bench-$tag.XXXXXX")
  PEER_DIR=$W
  PEER_PIDS=()
  PEER_NETNS=
  BENCH_NS=
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  [ "${3:-}" = netns ] || return 0
  BENCH_NS=sbc-$tag-$$
  ip netns add "$BENCH_NS" || { BENCH_NS=; echo "$case: needs root to create a network namespace" >&2; exit 1; }
  ip -n "$BENCH_NS" link set lo up
  PEER_NETNS=$BENCH_NS
}
bench_cleanup() {
  peer_stop_all
  [ -n "${BENCH_NS:-}" ] && ip netns del "$BENCH_NS" 2>/dev/null
  if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $W"; else rm -rf "$W"; fi
}
