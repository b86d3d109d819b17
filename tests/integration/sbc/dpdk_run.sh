#!/usr/bin/env bash
# `sbc run` on the DPDK backend between two network namespaces joined by a veth pair:
#   peer namespace: the callers, 203.0.113.20 (SIP client, RTP leg a), .21 (RTP leg b), .44
#                   (an IRSF dialer) and .66 (a flooder), on one end of the veth;
#   sbc namespace:  `sbc run` with the veth's other end as its data port (net_af_packet) and a
#                   net_tap exception port that sbc itself gives 203.0.113.10/24.
# SIP requests from the peer are answered by the front door through the exception port, a
# flood from one source is rate limited and banned in the fast path, the fraud engine's ban of
# an IRSF dialer and `sbc ctl ban` reach the worker, and RTP is relayed on the worker lcore through
# streams added with `sbc ctl media add`; then a call through the B2BUA with its RTP relayed by
# the worker.
# Exits 77 (skipped) only when the namespaces or the veth pair cannot be created.
#   dpdk_run.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 5060
need sipp sip-tester
need python3 python3
need ethtool ethtool
tag=$(($$ % 100000))
NS_PEER=sbcrp$tag NS_SBC=sbcrh$tag VETH=sbcrv$tag VPEER=sbcrq$tag TAP=sbcrt$tag
cleanup() {
  local p
  for p in "${PEER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$SBC_PID" ] && kill "$SBC_PID" 2>/dev/null
  wait 2>/dev/null || true
  ip netns del "$NS_PEER" 2>/dev/null || true
  ip netns del "$NS_SBC" 2>/dev/null || true
  rm -rf "$WORK"
}
peer() { ip netns exec "$NS_PEER" "$@"; }

if ! { ip netns add "$NS_PEER" && ip netns add "$NS_SBC" &&
  ip link add "$VETH" type veth peer name "$VPEER"; } 2>"$WORK/netns.err"; then
  echo "SKIP: cannot create network namespaces and a veth pair: $(cat "$WORK/netns.err")"
  exit 77
fi
ip link set "$VETH" netns "$NS_SBC" && ip link set "$VPEER" netns "$NS_PEER" ||
  fail "cannot move the veth ends into their namespaces"
ip netns exec "$NS_SBC" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip netns exec "$NS_SBC" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
ip netns exec "$NS_SBC" ip link set lo up
ip netns exec "$NS_SBC" ip link set "$VETH" up
# The veth end is the data port's wire: like a NIC bound to DPDK, it is not the host stack's.
# Without this the namespace's kernel would answer ARP on it and take SIP from it (a host
# accepts a packet for any of its addresses on any interface), around the fast path.
ip netns exec "$NS_SBC" sysctl -qw "net.ipv4.conf.$VETH.arp_ignore=8"
ip netns exec "$NS_SBC" ip rule add pref 10 table local
ip netns exec "$NS_SBC" ip rule del pref 0
ip netns exec "$NS_SBC" ip rule add pref 5 iif "$VETH" blackhole
peer sysctl -qw net.ipv6.conf.all.disable_ipv6=1
peer ip link set lo up
for a in 20 21 44 66; do peer ip addr add "203.0.113.$a/24" dev "$VPEER"; done
peer ip link set "$VPEER" up
# A veth hands AF_PACKET frames whose UDP checksum the kernel has not filled in yet (checksum
# offload); a NIC's wire never carries those.
peer ethtool -K "$VPEER" tx off >/dev/null

cat >"$WORK/sbc.toml" <<EOF
[node]
name = "sbc-dpdk-test"

[[listeners]]
realm = "external"
address = "203.0.113.10"
port = 5060
transport = "udp"

[media]
port_min = 30000
port_max = 30999
external_address = "203.0.113.10"
internal_address = "203.0.113.10"

[dataplane]
backend = "dpdk"
burst_size = 32

[dataplane.dpdk]
eal_args = ["-l", "0,1", "--no-huge", "--no-pci", "-m", "256", "--no-shconf",
            "--file-prefix=sbcrun$tag", "--log-level=*:warning"]
ports = ["net_af_packet0,iface=$VETH", "net_tap0,iface=$TAP"]
tap_addresses = ["203.0.113.10/24"]

[control]
socket = "$WORK/control.sock"

[policy]
files = ["$ROOT/policy/examples/callcenter.toml"]
EOF
"$SBC" run --check --config "$WORK/sbc.toml" >"$WORK/check.out" 2>&1 ||
  { cat "$WORK/check.out"; fail "config refused"; }

# A port the EAL cannot bring up stops the start with the step named (and a non-zero exit).
sed 's|^ports = .*|ports = ["net_nosuchdriver0"]|; s|^tap_addresses = .*||' "$WORK/sbc.toml" >"$WORK/bad.toml"
if ip netns exec "$NS_SBC" timeout 30 "$SBC" run --config "$WORK/bad.toml" >"$WORK/bad.log" 2>&1; then
  fail "sbc run started with a port that does not exist"
fi
grep -q "DPDK backend: .*net_nosuchdriver0" "$WORK/bad.log" ||
  { cat "$WORK/bad.log"; fail "no clear error for a bad DPDK port"; }
[ -S "$WORK/control.sock" ] && fail "control socket opened by a failed start"

ip netns exec "$NS_SBC" "$SBC" run --config "$WORK/sbc.toml" >"$WORK/sbc.log" 2>&1 &
SBC_PID=$!
for _ in $(seq 100); do
  [ -S "$WORK/control.sock" ] && break
  kill -0 "$SBC_PID" 2>/dev/null || fail "sbc run exited at start"
  sleep 0.1
done
[ -S "$WORK/control.sock" ] || fail "control socket never appeared"
grep -q "dataplane backend: dpdk" "$WORK/sbc.log" || fail "not on the DPDK backend"
grep -q "SIP listener udp 203.0.113.10:5060 open" "$WORK/sbc.log" || fail "listener not open"
[ "$(stat dataplane.backend)" = dpdk ] || fail "stats: $(ctl stats)"
ip netns exec "$NS_SBC" ip -4 addr show dev "$TAP" | grep -q 'inet 203.0.113.10/24' ||
  fail "exception interface $TAP has not got 203.0.113.10/24"

sipp_run() {  # sipp_run NAME ARGS... (bounded: -m and -timeout)
  local name=$1; shift
  (cd "$WORK" && peer timeout 30 sipp 203.0.113.10:5060 -nostdin -default_behaviors all,-abortunexp \
    -timeout 15s -recv_timeout 2000 -trace_stat -stf "$name.csv" "$@" >"$WORK/$name.out" 2>&1)
}
calls() {  # calls NAME -> "successful failed"
  python3 - "$WORK/$1.csv" <<'PY'
import csv, sys
last = list(csv.DictReader(open(sys.argv[1]), delimiter=';'))[-1]
print(last["SuccessfulCall(C)"], last["FailedCall(C)"])
PY
}

# 1. A legitimate client: every REGISTER and OPTIONS is answered, from the listener's address.
sipp_run legit -sf "$HERE/scenarios/register_options.xml" -i 203.0.113.20 -p 45362 -r 3 -m 6 ||
  { cat "$WORK/legit.out"; fail "the SIP client did not get every answer"; }
[ "$(calls legit)" = "6 0" ] || fail "sipp statistics (successful failed): $(calls legit)"
[ "$(stat sip.method.REGISTER)" -ge 6 ] || fail "REGISTER count: $(ctl stats)"
[ "$(stat dpdk.to_kernel)" -ge 12 ] || fail "SIP did not pass the exception port: $(ctl stats)"
[ "$(stat dpdk.from_kernel)" -ge 12 ] || fail "answers did not leave by the data port: $(ctl stats)"
echo "sip: 6 calls (REGISTER + OPTIONS) answered through the exception port"

# 2. A flood from 203.0.113.66 (policy: 10/s, burst 15, ban after 5 denials) is rate limited,
#    then banned, by the worker: the dropped requests never reach the kernel.
to_kernel=$(stat dpdk.to_kernel)
sipp_run flood -sf "$HERE/scenarios/options.xml" -i 203.0.113.66 -p 45361 -r 400 -m 800 || true
limited=$(stat drop.rate_limited)
banned=$(stat drop.banned)
[ "${limited:-0}" -gt 0 ] || fail "flood not rate limited: $(ctl stats)"
[ "${banned:-0}" -gt 0 ] || fail "flood not dropped by a ban: $(ctl stats)"
bans=$(ctl bans)
grep -q '^203.0.113.66/32 origin=rate_limit ' <<<"$bans" || fail "flooder not banned: $bans"
passed=$(($(stat dpdk.to_kernel) - to_kernel))
[ "$passed" -lt 200 ] || fail "$passed of 800 flood requests reached the kernel"
grep -q '^203.0.113.20/' <<<"$bans" && fail "legitimate client banned: $bans"
[ "$(stat sip.datagrams)" -le "$(stat dpdk.to_kernel)" ] ||
  fail "the front door got datagrams around the fast path: $(ctl stats)"
echo "flood: 800 OPTIONS, rate_limited=$limited banned_drops=$banned, $passed reached the kernel"

# 2b. An IRSF burst from 203.0.113.44 (account 5550 dialing +88216001...): the fraud engine on
#     the signaling thread bans it, and the ban lands in the worker's ban table.
{ echo SEQUENTIAL; for i in $(seq -w 1 25); do echo "+8821600100$i;"; done; } >"$WORK/numbers.csv"
# 2 per second: the policy's per-account INVITE limit (rate 2, burst 6) admits every one.
(cd "$WORK" && peer timeout 45 sipp 203.0.113.10:5060 -nostdin -default_behaviors all,-abortunexp \
  -sf "$HERE/scenarios/irsf_invite.xml" -inf "$WORK/numbers.csv" -i 203.0.113.44 -p 45363 \
  -r 2 -m 25 -timeout 30s -recv_timeout 1000 >"$WORK/irsf.out" 2>&1) || true
bans=$(ctl bans)
grep -q '^203.0.113.44/32 origin=fraud offenses=[0-9]* remaining_s=[0-9]* dropped=[1-9]' <<<"$bans" ||
  fail "IRSF dialer not banned in the fast path: $bans"
[ "$(stat fraud.verdict.ban)" -ge 1 ] || fail "no ban verdict: $(ctl stats)"
echo "irsf: $(stat sip.answered_403) INVITEs answered 403, then banned: $(grep '^203.0.113.44/' <<<"$bans")"

# 3. RTP relayed on the worker lcore through a stream added with `sbc ctl media add`.
out=$(ctl media add 30000 203.0.113.20:4000 30002 203.0.113.21:6000)
[ "$out" = "ok media 1 a=203.0.113.10:30000 b=203.0.113.10:30002" ] || fail "media add: $out"
relayed=$(stat dpdk.relayed)
peer python3 "$HERE/rtp_pair.py" 203.0.113.20:4000 203.0.113.10:30000 203.0.113.21:6000 \
  203.0.113.10:30002 --count 50 || fail "RTP through stream 1"
[ $(($(stat dpdk.relayed) - relayed)) -ge 100 ] || fail "relayed by the worker: $(ctl stats)"
list=$(ctl media list)
echo "$list"
grep -q ' a.latched=203.0.113.20:4000 a.packets=50 ' <<<"$list" || fail "leg a stats: $list"
grep -q ' b.latched=203.0.113.21:6000 b.packets=50 ' <<<"$list" || fail "leg b stats: $list"
[ "$(stat media.streams)" = 1 ] || fail "media.streams: $(ctl stats)"

# 4. `sbc ctl ban` reaches the fast path: leg b's peer banned, its RTP dropped; unban restores.
[ "$(ctl ban 203.0.113.21 60)" = "ok banned 203.0.113.21/32" ] || fail "ctl ban"
grep -q '^203.0.113.21/32 origin=control ' <<<"$(ctl bans)" || fail "control ban not listed"
banned=$(stat drop.banned)
peer python3 "$HERE/rtp_pair.py" 203.0.113.20:4002 203.0.113.10:30000 203.0.113.21:6000 \
  203.0.113.10:30002 --count 3 >/dev/null && fail "RTP from a banned peer relayed"
[ "$(stat drop.banned)" -gt "$banned" ] || fail "ban not applied in the fast path: $(ctl stats)"
[ "$(ctl unban 203.0.113.21)" = "ok unbanned 203.0.113.21/32" ] || fail "ctl unban"
[ "$(ctl media del 1)" = "ok media 1 removed" ] || fail "media del"
[ "$(stat media.streams)" = 0 ] || fail "media.streams after del: $(ctl stats)"

# 5. A policy reload reaches the worker (reconfigure) and keeps the bans.
ctl reload | grep -q '^ok' || fail "reload"
sleep 0.2
grep -q '^203.0.113.66/32 ' <<<"$(ctl bans)" || fail "ban lost on reload"
[ "$(stat dpdk.commands_failed)" = 0 ] || fail "commands failed: $(ctl stats)"

ctl stats | grep -E '^(dpdk\.(rx|relayed|to_kernel|from_kernel)|drop\.(rate_limited|banned))='
stop_sbc
grep -q "DPDK worker stopped on lcore 1" "$WORK/sbc.log" || fail "worker did not run on lcore 1"

# 6. Calls on the DPDK backend: the node config gains the internal realm (a listener on the
#    exception interface's address, a next hop at 203.0.113.21 in the peer namespace). A sipp
#    call with RTP from 203.0.113.20 goes through the B2BUA to a sipp UAS that echoes its RTP;
#    the call core opens the call's relay streams on the worker, which relays the RTP both ways.
python3 - "$WORK/sbc.toml" >"$WORK/calls.toml" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("[media]", '''[[listeners]]
realm = "internal"
address = "203.0.113.10"
port = 5070
transport = "udp"

[[next_hops]]
name = "uas"
address = "203.0.113.21"
port = 5080
transport = "udp"

[health_check]
enabled = true
interval = "1s"
timeout = "500ms"
failures_before_down = 3
successes_before_up = 1

[media]''', 1)
print(s, end="")
PY
"$SBC" run --check --config "$WORK/calls.toml" >"$WORK/check2.out" 2>&1 ||
  { cat "$WORK/check2.out"; fail "calls config refused"; }
mkdir -p "$WORK/pcap"
ln -sf /usr/share/sip-tester/g711a.pcap /usr/share/sip-tester/dtmf_2833_1.pcap "$WORK/pcap/"
(cd "$WORK" && exec ip netns exec "$NS_PEER" timeout 60 sipp -nostdin \
  -sf "$HERE/scenarios/uas_call.xml" -i 203.0.113.21 -p 5080 -mi 203.0.113.21 -mp 6100 \
  -rtp_echo -timeout 50s >"$WORK/uas.out" 2>&1) &
PEER_PIDS+=($!)
ip netns exec "$NS_SBC" "$SBC" run --config "$WORK/calls.toml" >"$WORK/sbc2.log" 2>&1 &
SBC_PID=$!
for _ in $(seq 100); do
  [ -S "$WORK/control.sock" ] && break
  kill -0 "$SBC_PID" 2>/dev/null || { cat "$WORK/sbc2.log"; fail "sbc run (calls) exited at start"; }
  sleep 0.1
done
grep -q "calls: external -> internal next hops" "$WORK/sbc2.log" ||
  { cat "$WORK/sbc2.log"; fail "calls not forwarded on DPDK"; }
for _ in $(seq 100); do [ "$(stat calls.hops_up)" = 1 ] && break; sleep 0.1; done
[ "$(stat calls.hops_up)" = 1 ] || { cat "$WORK/sbc2.log"; fail "next hop never up: $(ctl stats | grep ^calls)"; }
relayed=$(stat dpdk.relayed)
(cd "$WORK" && peer timeout 40 sipp 203.0.113.10:5060 -nostdin -sn uac_pcap -s 7001 \
  -i 203.0.113.20 -p 45364 -mi 203.0.113.20 -mp 6200 -m 1 -timeout 30s -recv_timeout 10000 \
  -default_behaviors all,-abortunexp -trace_stat -stf dcall.csv >"$WORK/dcall.out" 2>&1) ||
  { cat "$WORK/dcall.out"; fail "the call through the SBC on DPDK failed (exit $?)"; }
[ "$(calls dcall)" = "1 0" ] || fail "sipp statistics (successful failed): $(calls dcall)"
sent=$(python3 - "$WORK/pcap/g711a.pcap" "$WORK/pcap/dtmf_2833_1.pcap" <<'PY'
import struct, sys
n = 0
for path in sys.argv[1:]:
    d = open(path, "rb").read()
    off = 24
    while off + 16 <= len(d):
        off += 16 + struct.unpack("<I", d[off + 8:off + 12])[0]
        n += 1
print(n)
PY
)
for _ in $(seq 50); do [ "$(stat calls.active)" = 0 ] && break; sleep 0.1; done
carried=$(($(stat dpdk.relayed) - relayed))
echo "dpdk call: the caller sent $sent RTP packets, the worker relayed $carried (both directions)"
[ "$carried" -ge $((sent * 2 * 99 / 100)) ] || fail "the worker relayed $carried of $((sent * 2))"
[ "$(stat calls.calls_answered)" = 1 ] || fail "answered: $(ctl stats | grep ^calls)"
[ "$(stat calls.active)" = 0 ] || fail "call still active: $(ctl stats | grep ^calls)"
[ "$(stat media.streams)" = 0 ] || fail "streams not freed: $(ctl stats | grep ^media)"
[ "$(stat dpdk.commands_failed)" = 0 ] || fail "commands failed: $(ctl stats)"
stop_sbc
echo "sbc run on dpdk ok"
