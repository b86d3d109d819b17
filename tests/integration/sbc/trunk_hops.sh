#!/usr/bin/env bash
# Trunk next hops (realm = "external"): calls from a sipp UAC inside go out to the trunks,
# which are health-checked by OPTIONS as [health_check] says and weighted like the internal
# next hops.
#  1. Three trunks: one alive but answering every INVITE 503 (weight 1000: nearly always tried
#     first), one dead (nothing listens: its probes fail, it is down and never sent a call), one
#     good. Every call fails over from the 503 one and completes on the good one; `sbc ctl
#     status` shows the dead trunk down and the other two up. Then both live trunks stop: once
#     the probes mark them down, a new call gets 503 with Retry-After at once.
#  2. Two good trunks with weights 1 and 3: 40 calls split about a quarter / three quarters.
# Calls go at 4/s: under the example policy's per-source INVITE limit (5/s) for the caller.
#   trunk_hops.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11900
need sipp sip-tester
IN=127.0.0.2      # the SBC inside: UDP 11901
UAC=127.0.0.7     # the caller inside
T503=127.0.0.4 TDEAD=127.0.0.5 TGOOD=127.0.0.6

configure() {  # TRUNKS_TOML
  write_config
  python3 - "$WORK" "$1" <<'PY'
import re, sys
work, trunks = sys.argv[1:]
path = work + "/sbc.toml"
s = open(path).read()
# The internal next hop is not used by calls from inside (nothing listens there).
s = re.sub(r'\[\[next_hops\]\].*?(?=\n\[health_check\])', '''[[next_hops]]
name = "proxy"
address = "127.0.0.3"
port = 11902
transport = "udp"

''' + trunks, s, flags=re.S)
s = re.sub(r'(realm = "internal"\naddress = "127.0.0.2"\nport = )\d+', r'\g<1>11901', s)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 26100').replace('port_max = 29999', 'port_max = 26499')
open(path, "w").write(s)
PY
  grep -q 'port = 11901' "$WORK/sbc.toml" || fail "config not rewritten"
}

trunk() {  # NAME ADDRESS PORT SCENARIO MEDIA_PORT
  (cd "$WORK" && exec timeout 200 sipp -nostdin -sf "$4" -i "$2" -p "$3" -mi "$2" -mp "$5" \
    -rtp_echo -timeout 190s -trace_msg -message_file "$WORK/$1.msg" >"$WORK/$1.out" 2>&1) &
  PEER_PIDS+=($!)
  eval "${1}_PID=$!"
}
invites() {  # NAME: distinct calls (Call-IDs) whose INVITE the trunk received
  python3 - "$WORK/$1.msg" <<'PY'
import re, sys
try:
    text = open(sys.argv[1], errors="replace").read()
except OSError:
    text = ""
ids = set()
for m in re.finditer(r"^INVITE sip:.*?(?:\r?\n\r?\n|\Z)", text, re.M | re.S):
    c = re.search(r"^(?:Call-ID|i)\s*:\s*(\S+)", m.group(0), re.M | re.I)
    if c:
        ids.add(c.group(1))
print(len(ids))
PY
}

calls() {  # NAME LOCAL_PORT MEDIA_PORT N: N calls from inside, all must complete
  (cd "$WORK" && timeout 120 sipp "$IN:11901" -nostdin -sf "$HERE/scenarios/uac_outbound.xml" -s 0044207946000 -i $UAC \
    -p "$2" -mi $UAC -mp "$3" -r 4 -m "$4" -timeout 110s -recv_timeout 10000 \
    -trace_stat -stf "$1.csv" -trace_err -error_file "$WORK/$1.err" >"$WORK/$1.out" 2>&1) ||
    { grep -m3 -i "abort\|unexpected\|timeout" "$WORK/$1.err" | cut -c1-300; tail -5 "$WORK/$1.csv" | cut -d";" -f1-20; ctl stats | grep -E "^calls\.|^next_hop"; fail "sipp $1 failed"; }
  local r
  r=$(python3 -c 'import csv,sys; r=list(csv.DictReader(open(sys.argv[1]),delimiter=";"))[-1]; print(r["SuccessfulCall(C)"], r["FailedCall(C)"])' "$WORK/$1.csv")
  [ "$r" = "$4 0" ] || fail "$1 calls (successful failed): $r"
}

hop_state() { ctl status | sed -n "s/^next_hop\.$1=\([a-z]*\) .*/\1/p"; }
wait_state() {  # NAME STATE
  for _ in $(seq 150); do [ "$(hop_state "$1")" = "$2" ] && return 0; sleep 0.1; done
  ctl status; fail "trunk $1 never $2"
}

# 1. Failover on 503, a dead trunk never used, 503 with Retry-After when none is up.
trunk t503 $T503 11910 "$HERE/scenarios/uas_503.xml" 26010
trunk tgood $TGOOD 11912 "$HERE/scenarios/uas_call.xml" 26020
configure "[[next_hops]]
name = \"busy\"
realm = \"external\"
address = \"$T503\"
port = 11910
weight = 1000

[[next_hops]]
name = \"dead\"
realm = \"external\"
address = \"$TDEAD\"
port = 11911
weight = 1000

[[next_hops]]
name = \"good\"
realm = \"external\"
address = \"$TGOOD\"
port = 11912
weight = 1
"
start_sbc
wait_state busy up
wait_state good up
wait_state dead down
ctl status | grep '^next_hop\.' | tee "$WORK/status1.txt"
grep -q '^next_hop.dead=down realm=external address=127.0.0.5:11911 transport=UDP weight=1000' \
  "$WORK/status1.txt" || fail "status does not show the dead trunk as expected"
calls failover 11920 26030 10
ctl stats >"$WORK/stats1.txt"
failovers=$(sed -n 's/^calls.failovers=//p' "$WORK/stats1.txt")
busy=$(invites t503) good=$(invites tgood)
echo "failover: 10 calls completed; INVITEs: busy trunk $busy, good trunk $good; failovers $failovers"
[ "$good" = 10 ] || fail "the good trunk took $good calls, 10 expected"
[ "$busy" -ge 8 ] || fail "the busy trunk (weight 1000) was tried $busy times"
[ "$failovers" -ge "$busy" ] || fail "$failovers failovers for $busy 503s"
grep -q '^calls.active=0$' "$WORK/stats1.txt" || fail "calls left after the failover run"

# None up: both live trunks stop; once their probes fail, a call gets 503 + Retry-After at once.
kill "$t503_PID" "$tgood_PID" 2>/dev/null || true
wait_state busy down
wait_state good down
python3 - $UAC 11921 $IN 11901 <<'PY' || fail "no immediate 503 with Retry-After"
import socket, sys, time
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, sport))
s.settimeout(0.2)
msg = ("INVITE sip:0044207946001@carrier.example SIP/2.0\r\n"
       "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-none-up-1;rport\r\n"
       "Max-Forwards: 70\r\nFrom: <sip:agent@%s>;tag=a1\r\nTo: <sip:0044207946001@%s>\r\n"
       "Call-ID: none-up-1@%s\r\nCSeq: 1 INVITE\r\nContact: <sip:agent@%s:%d>\r\n"
       "Content-Length: 0\r\n\r\n") % (src, sport, src, dst, src, src, sport)
start = time.time()
s.sendto(msg.encode(), (dst, dport))
final = None
while time.time() - start < 3:
    try:
        data = s.recv(65535).decode()
    except socket.timeout:
        continue
    if not data.startswith("SIP/2.0 1"):
        final = data
        break
elapsed = time.time() - start
print("none up: %s in %.3f s" % (final.split("\r\n")[0] if final else None, elapsed))
sys.exit(0 if final and final.startswith("SIP/2.0 503") and "\r\nRetry-After:" in final
         and elapsed < 1.0 else 1)
PY
stop_sbc

# 2. Weights 1 and 3 among two good trunks: 40 calls.
trunk tw1 $T503 11913 "$HERE/scenarios/uas_call.xml" 26040
trunk tw3 $TGOOD 11914 "$HERE/scenarios/uas_call.xml" 26050
configure "[[next_hops]]
name = \"light\"
realm = \"external\"
address = \"$T503\"
port = 11913
weight = 1

[[next_hops]]
name = \"heavy\"
realm = \"external\"
address = \"$TGOOD\"
port = 11914
weight = 3
"
start_sbc
wait_state light up
wait_state heavy up
calls weighted 11922 26060 40
light=$(invites tw1) heavy=$(invites tw3)
echo "weights 1:3 over 40 calls: light $light, heavy $heavy"
[ $((light + heavy)) = 40 ] || fail "$light + $heavy INVITEs for 40 calls"
# Binomial(40, 0.75): mean 30, sd 2.7; 21..38 is beyond 3 sd on each side.
[ "$heavy" -ge 21 ] && [ "$heavy" -le 38 ] || fail "weight 3 took $heavy of 40 calls"
stop_sbc
echo "PASS"
