#!/usr/bin/env bash
# A spoofed INVITE flood against legitimate, digest-authenticated calls. In a network namespace
# of its own (its loopback is nobody else's): `sbc run` with the default config on 127.0.0.1,
# a sipp UAS on 127.0.0.3 (the next hop) that challenges every INVITE with 401 and answers
# the authenticated one, and a sipp UAC that places calls with RTP, answering each challenge.
# While the calls run, sbc-sip-flood sends INVITEs from FLOOD_SOURCES distinct spoofed sources
# (127.16.0.0 up) as fast as it can. Checks: at least 99% of the legitimate calls complete;
# the relay carried their RTP; the daemon's RSS after the flood is within 5% of before it
# (strangers that never complete a transaction leave no long-lived state); the flood's drops
# are counted. Prints the rates (sent, handled) and the RSS.
#   flood_spoofed.sh SBC_BINARY REPO_ROOT [GENERATOR]
# Environment: FLOOD_SOURCES (200000), FLOOD_SECONDS (bound on the flood, 10), CALLS (16),
# CALL_RATE (calls/s, 2: two INVITEs a call stay under the policy's 5/s per source), RESULT_CASE (print RESULT lines for `scripts/bench` under this case).
source "$(dirname "$0")/lib.sh" "$1" "$2" 11300
GEN=${3:-$(cd "$(dirname "$1")/.." && pwd)/tests/bench/sbc/sbc-sip-flood}
FLOOD_SOURCES=${FLOOD_SOURCES:-200000}
FLOOD_SECONDS=${FLOOD_SECONDS:-10}
CALLS=${CALLS:-16}
CALL_RATE=${CALL_RATE:-2}
need sipp sip-tester
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

UAS_PORT=11302
write_config
python3 - "$WORK/sbc.toml" "$UAS_PORT" <<'PY'
import re, sys
path, uas = sys.argv[1], sys.argv[2]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + uas, s, flags=re.S)
s = re.sub(r'(realm = "internal"\n[^\[]*?port = )\d+', r'\g<1>11301', s, flags=re.S)
s = s.replace('interval = "5s"', 'interval = "2s"').replace('timeout = "2s"', 'timeout = "1500ms"')
# Relay ports 22000-22799; the sipp peers' RTP on 22800 and 22900, outside them.
s = s.replace('port_min = 20000', 'port_min = 22000').replace('port_max = 29999', 'port_max = 22799')
open(path, "w").write(s)
PY
grep -q "port = $UAS_PORT" "$WORK/sbc.toml" || fail "next hop port not rewritten"
grep -q "port_min = 22000" "$WORK/sbc.toml" || fail "media ports not rewritten"

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

# Callers: 100 accounts (in no account group of the policy) in turn (each stays far under the policy's per-account INVITE rate).
{ echo SEQUENTIAL; for i in $(seq 3000 3099); do echo "$i;"; done; } >"$WORK/users.csv"
mkdir -p "$WORK/pcap"
ln -s /usr/share/sip-tester/g711a.pcap "$WORK/pcap/"
uac() {  # uac NAME CALLS: bounded by -m, -timeout and timeout(1)
  (cd "$WORK" && ns timeout 240 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$HERE/scenarios/auth_uac_rtp.xml" \
    -inf "$WORK/users.csv" -s 4402 -i 127.0.0.1 -p 11310 -mi 127.0.0.1 -mp 22900 -r "$CALL_RATE" \
    -m "$2" -d 1000 -timeout 200s -recv_timeout 20000 -default_behaviors all,-abortunexp \
    -trace_stat -stf "$1.csv" -trace_err -error_file "$1.err" >"$WORK/$1.out" 2>&1)
}
calls_result() {
  python3 - "$WORK/$1.csv" <<'PY'
import csv, sys
r = list(csv.DictReader(open(sys.argv[1]), delimiter=';'))[-1]
print(r["SuccessfulCall(C)"], r["FailedCall(C)"])
PY
}

# 1. A few calls before the flood: the path works, and the caller is a known source.
uac warmup 4 || fail "warm-up calls failed: $(cat "$WORK/warmup.out" "$WORK/warmup.err" 2>/dev/null | tail -20)"
[ "$(calls_result warmup)" = "4 0" ] || fail "warm-up calls: $(calls_result warmup)"
echo "warm-up: 4 authenticated calls completed"

# 2. The flood, and the legitimate calls during it.
sleep 1
before=$(rss)
ctl stats >"$WORK/stats0.txt"
# The flood cycles through its sources until FLOOD_SECONDS have passed; the calls start a
# second into it and are placed within it.
ns "$GEN" --target "127.0.0.1:$SIP_PORT" --sources "$FLOOD_SOURCES" --source-base 127.16.0.0 \
  --count 1000000000 --seconds "$FLOOD_SECONDS" >"$WORK/gen.out" 2>&1 &
gen_pid=$!
sleep 1
uac legit "$CALLS" || echo "sipp UAC exit $? (counted below)"
wait "$gen_pid" || fail "generator: $(cat "$WORK/gen.out")"
cat "$WORK/gen.out"
ctl stats >"$WORK/stats1.txt"
read -r ok failed <<<"$(calls_result legit)"
echo "legitimate calls during the flood: $ok completed, $failed failed of $CALLS"

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
echo "  reached the front door: $(d sip.requests) requests, $(d calls.calls_offered) INVITEs offered to calls"
echo "legitimate calls: $ok of $CALLS completed ($pct%), RTP relayed: $(d pipeline.relayed) packets"
echo "rss: $((before >> 20)) MiB before, $((rss_flood >> 20)) MiB at the end of the flood, $((after >> 20)) MiB ${settle}s after (+$growth%)"
echo "call state pool: $(stat calls.call_memory_bytes) bytes held for the next calls"
if [ -n "${RESULT_CASE:-}" ]; then
  echo "RESULT case=$RESULT_CASE metric=flood_sent_per_s ours=$rate_sent"
  echo "RESULT case=$RESULT_CASE metric=flood_handled_per_s ours=$rate_handled"
  echo "RESULT case=$RESULT_CASE metric=legit_completed_pct ours=$pct"
  echo "RESULT case=$RESULT_CASE metric=rss_before_mib ours=$((before >> 20))"
  echo "RESULT case=$RESULT_CASE metric=rss_after_mib ours=$((after >> 20))"
fi
[ "$sent" -ge "$FLOOD_SOURCES" ] || fail "the generator sent $sent, fewer than one INVITE per source"
python3 -c "import sys; sys.exit(0 if $ok * 100 >= 99 * $CALLS else 1)" ||
  fail "only $ok of $CALLS legitimate calls completed during the flood ($(tail -c 600 "$WORK/legit.err" 2>/dev/null))"
# Each call holds 1 s while its caller plays G.711 (50 packets/s) and the far end echoes it.
[ "$(d pipeline.relayed)" -ge $((ok * 40)) ] || fail "RTP relayed: $(d pipeline.relayed) packets for $ok calls"
dropped=$(($(d drop.rate_limited) + $(d drop.banned) + $(d calls.calls_refused_strangers)))
[ "$dropped" -ge $((rx / 2)) ] || fail "drops counted: $dropped of $rx datagrams read"
python3 -c "import sys; sys.exit(0 if $after <= $before * 1.05 else 1)" ||
  fail "resident memory grew $growth% (over 5%) with the flood"
stop_sbc
echo "PASS"
