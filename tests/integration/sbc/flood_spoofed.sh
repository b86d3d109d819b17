#!/usr/bin/env bash
# A spoofed INVITE flood against legitimate, digest-authenticated calls. In a network namespace
# of its own (its loopback is nobody else's): `sbc run` with the default config on 127.0.0.1,
# a sipp UAS on 127.0.0.3 (the next hop) that challenges every INVITE with 401 and answers
# the authenticated one, and UACS sipp UACs (127.0.0.1, 127.0.0.4, ...) that place calls with
# RTP, answering each challenge. While the calls run, sbc-sip-flood sends INVITEs from
# FLOOD_SOURCES distinct spoofed sources (127.16.0.0 up) as fast as it can. Checks: at least 99%
# of the legitimate calls complete; the relay carried their RTP; the daemon's RSS after the
# flood is within 5% of before it (strangers that never complete a transaction leave no
# long-lived state); the flood's drops are counted; the SBC is no amplifier: what it sends to
# the flood's addresses (counted by an iptables rule in the namespace) is at most one datagram
# per request it read, plus three per INVITE that became a call (100 Trying, the inside's 401
# and its two retransmissions, where Timer G alone would send ten).
# Prints the rates (sent, handled), the datagrams to the flood's sources and the RSS.
#   flood_spoofed.sh SBC_BINARY REPO_ROOT [GENERATOR]
# Environment: FLOOD_SOURCES (200000), FLOOD_SECONDS (bound on the flood, 60), CALLS (100),
# UACS (5 callers, each with its own address and accounts, placing CALLS/UACS calls),
# CALL_RATE (calls/s per caller, 2: two INVITEs a call stay under the policy's 5/s per source),
# FLOOD_FULL (1: the flood runs all of FLOOD_SECONDS; else it stops when the calls are done),
# FLOOD_RATE (INVITEs/s; 0, the default: the generator's maximum),
# RESULT_CASE (print RESULT lines for `scripts/bench` under this case).
source "$(dirname "$0")/lib.sh" "$1" "$2" 11300
GEN=${3:-$(cd "$(dirname "$1")/.." && pwd)/tests/bench/sbc/sbc-sip-flood}
FLOOD_SOURCES=${FLOOD_SOURCES:-200000}
FLOOD_SECONDS=${FLOOD_SECONDS:-60}
CALLS=${CALLS:-100}
UACS=${UACS:-5}
CALL_RATE=${CALL_RATE:-2}
FLOOD_FULL=${FLOOD_FULL:-}
# At the generator's maximum the socket backend reads nearly all of the flood, and known callers
# (an answered call) have receive queues of their own and are vouched for in the rate limiter
# (docs/signaling.md, "Strangers and spoofed floods"): the flood runs unpaced by default.
FLOOD_RATE=${FLOOD_RATE:-0}
[ "$UACS" -ge 1 ] && [ "$UACS" -le 8 ] && [ $((CALLS % UACS)) = 0 ] ||
  fail "UACS must be 1..8 and divide CALLS"
need sipp sip-tester
need iptables iptables
[ -x "$GEN" ] || fail "generator $GEN missing: cmake --build build --target sbc_sip_flood"
NS=sbcflood$$
ns() { ip netns exec "$NS" "$@"; }
flood_cleanup() {
  if [ -n "${FLOOD_KEEP:-}" ]; then cp -r "$WORK" "$FLOOD_KEEP" 2>/dev/null || true; fi
  cleanup
  ip netns del "$NS" 2>/dev/null || true
}
trap flood_cleanup EXIT
if ! ip netns add "$NS" 2>/dev/null; then
  echo "SKIP: network namespaces need root (ip netns add)"
  exit 77
fi
ns ip link set lo up
# Datagrams from the SBC's SIP port to the flood's sources (127.16.0.0/12 holds 1M of them).
ns iptables -w -A OUTPUT -p udp -s 127.0.0.1 --sport "$SIP_PORT" -d 127.16.0.0/12 -j ACCEPT ||
  fail "iptables in the namespace"
# Datagrams the namespace's kernel dropped for a full socket receive buffer (the SBC did not
# read them in time): under a flood, the legitimate callers' messages share that fate.
udp_drops() { ns awk '/^Udp:/ { if (h) print $6; h = 1 }' /proc/net/snmp; }
to_flood() { ns iptables -w -L OUTPUT -v -x -n | awk '$3 == "ACCEPT" && $9 == "127.16.0.0/12" {print $1}'; }

UAS_PORT=11302
write_config
# Every call authenticates as the one digest user the sipp UAS verifies, and the policy's
# per-account INVITE limit (2/s, burst 6) keys on that username: five callers at 2 calls/s
# would be one account placing 10 calls a second (refused, as the policy says). A copy of the
# policy gives that shared account room; every other limit stays.
cp -r "$ROOT/policy/examples" "$WORK/policy"
python3 - "$WORK/sbc.toml" "$UAS_PORT" "$WORK/policy/callcenter.toml" <<'PY'
import re, sys
path, uas, pol = sys.argv[1], sys.argv[2], sys.argv[3]
p = open(pol).read()
p = p.replace('per_account = { rate = 2, burst = 6 }', 'per_account = { rate = 100, burst = 200 }')
open(pol, "w").write(p)
s = open(path).read()
s = re.sub(r'files = \[.*\]', 'files = ["' + pol + '"]', s)
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + uas, s, flags=re.S)
s = re.sub(r'(realm = "internal"\n[^\[]*?port = )\d+', r'\g<1>11301', s, flags=re.S)
s = s.replace('interval = "5s"', 'interval = "2s"').replace('timeout = "2s"', 'timeout = "1500ms"')
# Relay ports 22000-22799; the sipp peers' RTP on 22800 and 22900, outside them.
s = s.replace('port_min = 20000', 'port_min = 22000').replace('port_max = 29999', 'port_max = 22799')
open(path, "w").write(s)
PY
grep -q "port = $UAS_PORT" "$WORK/sbc.toml" || fail "next hop port not rewritten"
grep -q "port_min = 22000" "$WORK/sbc.toml" || fail "media ports not rewritten"
grep -q "$WORK/policy/callcenter.toml" "$WORK/sbc.toml" || fail "policy not rewritten"
grep -q "per_account = { rate = 100, burst = 200 }" "$WORK/policy/callcenter.toml" ||
  fail "per-account INVITE limit not rewritten"

ip netns exec "$NS" "$SBC" run --config "$WORK/sbc.toml" >"$WORK/sbc.log" 2>&1 &
SBC_PID=$!
for _ in $(seq 600); do
  ctl status >/dev/null 2>&1 && break
  kill -0 "$SBC_PID" 2>/dev/null || fail "sbc run exited"
  sleep 0.1
done
ctl status >/dev/null 2>&1 || fail "control socket never answered"
rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$SBC_PID/status"; }

(cd "$WORK" && exec ip netns exec "$NS" timeout 300 sipp -nostdin -sf "$HERE/scenarios/auth_uas.xml" -i 127.0.0.3 \
  -p "$UAS_PORT" -mi 127.0.0.3 -mp 22800 -rtp_echo -timeout 280s -max_socket 4096 \
  >"$WORK/uas.out" 2>&1) &
PEER_PIDS+=($!)
for _ in $(seq 100); do
  [ "$(stat calls.hops_up)" = 1 ] && break
  sleep 0.1
done
[ "$(stat calls.hops_up)" = 1 ] || fail "next hop never came up: $(ctl stats | grep ^calls)"

# Callers: caller k (address 127.0.0.1 for k = 0, else 127.0.0.(3+k)) calls from 100 users of
# its own, 3000+100k up (in no account group of the policy), in turn; each source stays under
# the policy's per-source INVITE rate.
mkdir -p "$WORK/pcap"
ln -s /usr/share/sip-tester/g711a.pcap "$WORK/pcap/"
uac_addr() { if [ "$1" = 0 ]; then echo 127.0.0.1; else echo "127.0.0.$((3 + $1))"; fi; }
for k in $(seq 0 $((UACS - 1))); do
  { echo SEQUENTIAL; for i in $(seq $((3000 + 100 * k)) $((3099 + 100 * k))); do echo "$i;"; done; } >"$WORK/users$k.csv"
done
uac() {  # uac K NAME CALLS: bounded by -m, -timeout and timeout(1)
  local a
  a=$(uac_addr "$1")
  (cd "$WORK" && ns timeout 240 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$HERE/scenarios/auth_uac_rtp.xml" \
    -inf "$WORK/users$1.csv" -s 4402 -i "$a" -p $((11310 + $1)) -mi "$a" -mp $((22900 + 10 * $1)) -r "$CALL_RATE" \
    -m "$3" -d 1000 -timeout 200s -recv_timeout 20000 -default_behaviors all,-abortunexp \
    -trace_stat -stf "$2.csv" -trace_err -error_file "$2.err" >"$WORK/$2.out" 2>&1)
}
calls_result() {  # calls_result NAME...: completed and failed calls, summed
  python3 - "${@/#/$WORK/}" <<'PY'
import csv, sys
ok = failed = 0
for name in sys.argv[1:]:
    r = list(csv.DictReader(open(name + ".csv"), delimiter=';'))[-1]
    ok += int(r["SuccessfulCall(C)"])
    failed += int(r["FailedCall(C)"])
print(ok, failed)
PY
}

# 1. A few calls from each caller before the flood: the path works, and the callers are known
# sources (one of their calls was answered).
for k in $(seq 0 $((UACS - 1))); do
  uac "$k" "warmup$k" 2 || fail "warm-up calls failed: $(cat "$WORK/warmup$k.out" "$WORK/warmup$k.err" 2>/dev/null | tail -20)"
  [ "$(calls_result "warmup$k")" = "2 0" ] || fail "warm-up calls of caller $k: $(calls_result "warmup$k")"
done
echo "warm-up: 2 authenticated calls from each of $UACS callers completed"

# 2. The flood, and the legitimate calls during it.
sleep 1
before=$(rss)
ctl stats >"$WORK/stats0.txt"
flood_out0=$(to_flood)
udp0=$(udp_drops)
# The flood cycles through its sources until FLOOD_SECONDS have passed, or (without
# FLOOD_FULL) until the calls are done; the calls start a second into it.
# (ip netns exec execs the generator: $! is its PID.)
ip netns exec "$NS" "$GEN" --target "127.0.0.1:$SIP_PORT" --sources "$FLOOD_SOURCES" \
  --source-base 127.16.0.0 --count 1000000000 --seconds "$FLOOD_SECONDS" --rate "$FLOOD_RATE" \
  >"$WORK/gen.out" 2>&1 &
gen_pid=$!
sleep 1
uac_pids=()
for k in $(seq 0 $((UACS - 1))); do
  uac "$k" "legit$k" $((CALLS / UACS)) &
  uac_pids+=($!)
done
for p in "${uac_pids[@]}"; do wait "$p" || echo "a sipp UAC exited $? (counted below)"; done
flood_lasted=0
kill -0 "$gen_pid" 2>/dev/null && flood_lasted=1
[ -n "$FLOOD_FULL" ] || kill -TERM "$gen_pid" 2>/dev/null || true
wait "$gen_pid" || fail "generator: $(cat "$WORK/gen.out")"
# The counters once the flood has stopped and its queued datagrams are read: what the SBC sent
# to the flood's addresses is then bounded by requests it had counted (at full rate, the few
# milliseconds between a snapshot and the generator's end hold hundreds of INVITEs).
for _ in $(seq 20); do
  a=$(stat pipeline.rx)
  sleep 0.1
  [ "$(stat pipeline.rx)" = "$a" ] && break
done
ctl stats >"$WORK/stats1.txt"
udp1=$(udp_drops)
cat "$WORK/gen.out"
legit=()
for k in $(seq 0 $((UACS - 1))); do legit+=("legit$k"); done
read -r ok failed <<<"$(calls_result "${legit[@]}")"
echo "legitimate calls during the flood: $ok completed, $failed failed of $CALLS"
[ "$flood_lasted" = 1 ] || echo "WARNING: the flood ended before the calls (raise FLOOD_SECONDS)"

# 3. Memory once the strangers' state has ended: the B2BUA's server transactions (a 401
# relayed to a spoofed address waits for its ACK for Timer H, 32 s), the fraud observer's
# INVITE transactions (32 s), and the front door's malloc_trim (every 30 s) that gives the freed
# heap back. Bounded wait: until the resident size is back within 5%, at most 75 s.
rss_flood=$(rss)
settle=0
for i in $(seq 75); do
  [ -n "${FLOOD_TRACE:-}" ] && echo "  +${i}s rss $(($(rss) >> 20)) MiB $(ctl stats | grep -E '^(transactions\.active|calls\.active)=' | tr '\n' ' ')"
  settle=$i
  [ "$(stat calls.active)" = 0 ] && [ "$(rss)" -le $((before * 105 / 100)) ] && break
  sleep 1
done
after=$(rss)
ctl stats >"$WORK/stats2.txt"
flood_out=$(($(to_flood) - flood_out0))
python3 - "$WORK/stats0.txt" "$WORK/stats1.txt" >"$WORK/delta.txt" <<'PY'
import sys
def load(p):
    d = {}
    for l in open(p):
        k, _, v = l.strip().partition("=")
        if v.lstrip("-").isdigit():
            d[k] = int(v)
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in b:
    if b[k] != a.get(k, 0):
        print("%s=%d" % (k, b[k] - a.get(k, 0)))
PY
d() { sed -n "s/^$1=//p" "$WORK/delta.txt" | grep . || echo 0; }
sent=$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$WORK/gen.out")
secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$WORK/gen.out")
rx=$(d pipeline.rx)
rate_sent=$(python3 -c "print(round($sent / $secs))")
rate_handled=$(python3 -c "print(round($rx / $secs))")
pct=$(python3 -c "print(f'{100.0 * $ok / $CALLS:.1f}')")
growth=$(python3 -c "print(f'{100.0 * ($after - $before) / $before:.1f}')")
echo "flood: $sent INVITEs from $FLOOD_SOURCES sources in ${secs}s ($rate_sent/s sent), $rx read by the SBC ($rate_handled/s handled)"
echo "  dropped: rate_limited=$(d drop.rate_limited) banned=$(d drop.banned) bans_added=$(d pipeline.bans_added)" \
  "strangers_refused=$(d calls.calls_refused_strangers) sdp_refused=$(d calls.sdp_refused) no_next_hop=$(d calls.no_next_hop)"
echo "  dropped by the kernel (receive buffer full): $((udp1 - udp0)) datagrams"
echo "  reached the front door: $(d sip.requests) requests, $(d calls.calls_offered) INVITEs offered to calls"
echo "legitimate calls: $ok of $CALLS completed ($pct%), RTP relayed: $(d pipeline.relayed) packets"
echo "known callers with a receive queue of their own: $(stat signaling_peers)," \
  "listener receive buffer: $(stat signaling_rcvbuf_bytes) bytes"
# The SIP the SBC read during the flood, the callers' included (a few per call): what it sent
# to the flood's sources is bounded by one per request plus three per INVITE offered to calls.
requests=$(d sip.requests)
offered=$(d calls.calls_offered)
amp_bound=$((requests + 3 * offered))
ratio_sent=$(python3 -c "print(f'{$flood_out / max($sent, 1):.3f}')")
ratio_read=$(python3 -c "print(f'{$flood_out / max($requests, 1):.3f}')")
echo "to the flood's sources: $flood_out datagrams ($ratio_sent per INVITE sent, $ratio_read per request read; bound $amp_bound)," \
  "finals at their retransmission bound: $(d transactions.finals_capped), transactions refused at capacity: $(d transactions.overloaded)"
echo "rss: $((before >> 20)) MiB before, $((rss_flood >> 20)) MiB at the end of the flood, $((after >> 20)) MiB ${settle}s after (+$growth%)"
echo "call state pool: $(stat calls.call_memory_bytes) bytes held for the next calls"
if [ -n "${RESULT_CASE:-}" ]; then
  echo "RESULT case=$RESULT_CASE metric=flood_sent_per_s ours=$rate_sent"
  echo "RESULT case=$RESULT_CASE metric=flood_handled_per_s ours=$rate_handled"
  echo "RESULT case=$RESULT_CASE metric=legit_completed_pct ours=$pct"
  echo "RESULT case=$RESULT_CASE metric=datagrams_to_flood_per_invite_sent ours=$ratio_sent"
  echo "RESULT case=$RESULT_CASE metric=kernel_receive_drops_pct ours=$(python3 -c "print(f'{100.0 * ($udp1 - $udp0) / max($sent, 1):.1f}')")"
  echo "RESULT case=$RESULT_CASE metric=rss_before_mib ours=$((before >> 20))"
  echo "RESULT case=$RESULT_CASE metric=rss_after_mib ours=$((after >> 20))"
fi
[ "$flood_lasted" = 1 ] || fail "the flood ended before the calls: raise FLOOD_SECONDS"
[ "$sent" -ge "$FLOOD_SOURCES" ] || fail "the generator sent $sent, fewer than one INVITE per source"
python3 -c "import sys; sys.exit(0 if $ok * 100 >= 99 * $CALLS else 1)" ||
  fail "only $ok of $CALLS legitimate calls completed during the flood ($(tail -c 600 "$WORK/legit.err" 2>/dev/null))"
# Each call holds 1 s while its caller plays G.711 (50 packets/s) and the far end echoes it.
[ "$(d pipeline.relayed)" -ge $((ok * 40)) ] || fail "RTP relayed: $(d pipeline.relayed) packets for $ok calls"
dropped=$(($(d drop.rate_limited) + $(d drop.banned) + $(d calls.calls_refused_strangers)))
[ "$dropped" -ge $((rx / 2)) ] || fail "drops counted: $dropped of $rx datagrams read"
[ "$flood_out" -le "$amp_bound" ] ||
  fail "amplification: $flood_out datagrams to the flood's sources, over $amp_bound ($requests requests read, $offered INVITEs offered)"
python3 -c "import sys; sys.exit(0 if $after <= $before * 1.05 else 1)" ||
  fail "resident memory grew $growth% (over 5%) with the flood"
stop_sbc
echo "PASS"
