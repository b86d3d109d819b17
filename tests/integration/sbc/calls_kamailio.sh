#!/usr/bin/env bash
# Calls through `sbc run` with Debian's Kamailio as the internal proxy, every call flow, and a
# leak check of everything the SBC sent to the outside.
#
#   sipp UAC 127.0.0.10 -> SBC external 127.0.0.1:45600 | SBC internal 127.0.0.50:45601
#     -> Kamailio 127.0.0.51:45602 (record_route, loose_route, alias proxy.inside.lan)
#     -> sipp UAS 127.0.0.52:45603
# The node's first next hop, 127.0.0.53:45604, is dead: calls fail over to Kamailio.
# Flows: basic call with RTP both ways (counted at the far ends), re-INVITE (hold, resume) and
# UPDATE (new port) from each side, INFO, MESSAGE, REFER/NOTIFY, BYE from each side, early
# media with PRACK (100rel), CANCEL, CANCEL crossing a 200, 486, 503, 302 (mapped, Contact not
# leaked), a forged in-dialog BYE (481); then, on a second run, calls ended by the SBC on relay
# inactivity and on a fraud ban of the caller's source. Every process is started and stopped
# here.
#   calls_kamailio.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45600
need sipp sip-tester
need tshark tshark
if ! command -v kamailio >/dev/null; then
  [ -n "${CI:-}" ] && fail "kamailio is missing: install it with 'apt-get install -y kamailio' (scripts/setup does)"
  echo "SKIP: kamailio is not installed ('apt-get install -y kamailio', scripts/setup does)"
  exit 77
fi
SBC_IN=127.0.0.50
SBC_IN_PORT=45601
KAM=127.0.0.51
KAM_PORT=45602
UAS=127.0.0.52
UAS_PORT=45603
DEAD=127.0.0.53
DEAD_PORT=45604
UAC=127.0.0.10
UAS_MEDIA=32700
UAC_MEDIA=32600

for p in $SIP_PORT $SBC_IN_PORT $KAM_PORT $UAS_PORT; do
  if ss -Hlun "sport = :$p" | grep -q .; then fail "UDP port $p is already in use"; fi
done

write_config
# This test reads the fraud block's own answer (403): uniform answers toward strangers
# (docs/registrations.md, "Enumeration resistance") would make it the challenge.
sed -i 's/^realm = "external"$/realm = "external"\nenumeration_resistance = false/' "$WORK/sbc.toml"
python3 - "$WORK/sbc.toml" "$SBC_IN" "$SBC_IN_PORT" "$DEAD" "$DEAD_PORT" "$KAM" "$KAM_PORT" <<'PY'
import re, sys
path, sin, sinp, dead, deadp, kam, kamp = sys.argv[1:]
s = open(path).read()
s = s.replace('address = "127.0.0.2"', f'address = "{sin}"')
s = re.sub(r'(realm = "internal"\naddress = "[^"]+"\nport = )\d+', r'\g<1>' + sinp, s)
hops = (f'[[next_hops]]\nname = "dead"\naddress = "{dead}"\nport = {deadp}\ntransport = "udp"\n\n'
        f'[[next_hops]]\nname = "kamailio"\naddress = "{kam}"\nport = {kamp}\ntransport = "udp"\n')
s = re.sub(r'\[\[next_hops\]\].*?transport = "udp"\n', hops, s, count=1, flags=re.S)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 32000').replace('port_max = 29999', 'port_max = 32499')
s = s.replace('internal_address = "127.0.0.2"', f'internal_address = "{sin}"')
open(path, "w").write(s)
PY
grep -q "port = $KAM_PORT" "$WORK/sbc.toml" || fail "next hops not rewritten"
grep -q "port = $SBC_IN_PORT" "$WORK/sbc.toml" || fail "internal listener not rewritten"

# The internal proxy: stateful, record-routing, with a host name of its own that must never
# reach the outside (in its Server/User-Agent and a header it adds to every request).
cat >"$WORK/kamailio.cfg" <<KCFG
#!KAMAILIO
debug=2
log_stderror=yes
# One UDP worker (here and -n 1 on the command line, which overrides it): messages are relayed
# in the order they arrive (with several, an ACK and the BYE right behind it can overtake each
# other and a far end scripted as ACK-then-BYE fails).
children=1
disable_tcp=yes
auto_aliases=no
listen=udp:$KAM:$KAM_PORT
alias="proxy.inside.lan"
server_header="Server: Kamailio (proxy.inside.lan)"
user_agent_header="User-Agent: Kamailio (proxy.inside.lan)"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "pv.so"
request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (is_method("OPTIONS") && uri == myself && \$rU == \$null) { sl_send_reply("200", "OK"); exit; }
  if (has_totag()) {
    if (loose_route()) { append_hf("X-Inside-Host: proxy.inside.lan\r\n"); t_relay(); exit; }
    if (is_method("ACK")) { if (t_check_trans()) t_relay(); exit; }
    sl_send_reply("404", "Not here");
    exit;
  }
  if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }
  t_check_trans();
  remove_hf("Route");
  if (is_method("INVITE|SUBSCRIBE|REFER")) record_route();
  append_hf("X-Inside-Host: proxy.inside.lan\r\n");
  if (uri == myself) \$du = "sip:$UAS:$UAS_PORT";
  t_relay();
}
KCFG

# Everything on loopback between our addresses and ports, for the leak check and RTP counts.
tshark -i lo -q -w "$WORK/all.pcap" -f "udp and (portrange 45600-45699 or portrange 32000-32999)" \
  >"$WORK/tshark.log" 2>&1 &
TSHARK_PID=$!
PEER_PIDS+=($TSHARK_PID)
for _ in $(seq 100); do grep -q "Capturing on" "$WORK/tshark.log" && break; sleep 0.1; done
grep -q "Capturing on" "$WORK/tshark.log" || fail "tshark did not start: $(cat "$WORK/tshark.log")"

start_kamailio "$WORK/kamailio.cfg" udp "$KAM" "$KAM_PORT" -n 1
start_sbc
wait_hops_up Kamailio
[ "$(stat calls.hops_up)" -eq 1 ] || fail "the dead hop came up"

SC="$HERE/scenarios"
UAS_PID=
N=0
# uas SCENARIO [sipp args]: the far end for the next call, in the background.
uas() {
  local scen=$1
  shift
  case "$scen" in /*) ;; *) scen="$SC/$scen" ;; esac
  (cd "$WORK" && exec timeout 60 sipp -nostdin -sf "$scen" -i $UAS -p $UAS_PORT -mi $UAS \
    -mp $UAS_MEDIA -m 1 -timeout 50s -trace_msg -message_file "uas-$N.msg" "$@" \
    >"$WORK/uas-$N.out" 2>&1) &
  UAS_PID=$!
}
# uac NAME SCENARIO [sipp args]: places one call and waits for both ends.
uac() {
  local name=$1 scen=()
  case "$2" in
    "") ;;
    /*) scen=(-sf "$2") ;;
    *) scen=(-sf "$SC/$2") ;;
  esac
  shift 2
  (cd "$WORK" && timeout 60 sipp "127.0.0.1:$SIP_PORT" -nostdin "${scen[@]}" -i $UAC \
    -p $((45610 + N)) -mi $UAC -mp $UAC_MEDIA -m 1 -timeout 40s -recv_timeout 10000 \
    -default_behaviors all,-abortunexp -trace_msg -message_file "uac-$N.msg" "$@" \
    >"$WORK/uac-$N.out" 2>&1) || {
    cat "$WORK/uac-$N.out" "$WORK/uac-$N.msg" "$WORK/uas-$N.msg" 2>/dev/null | tail -80
    ctl stats | grep -v '=0$' || true
    fail "$name: the caller's scenario failed"
  }
  if [ -n "$UAS_PID" ]; then
    wait "$UAS_PID" || {
      cat "$WORK/uas-$N.out" "$WORK/uas-$N.msg" | tail -60
      ctl stats | grep -v '=0$' || true
      fail "$name: the far end's scenario failed"
    }
  fi
  UAS_PID=
  echo "flow: $name ok"
  N=$((N + 1))
}

# 1. A basic call with RTP both ways: the caller plays a G.711 recording and DTMF, the far end
# echoes every packet; what each end receives is counted in the capture.
mkdir -p "$WORK/pcap"
ln -s /usr/share/sip-tester/g711a.pcap /usr/share/sip-tester/dtmf_2833_1.pcap "$WORK/pcap/"
uas kam_uas_basic.xml -rtp_echo
uac "basic call with RTP" "" -sn uac_pcap

# 2. Mid-call requests both ways: hold (re-INVITE), new port (UPDATE), INFO, MESSAGE, REFER and
# NOTIFY, resume (re-INVITE from inside), UPDATE and INFO from inside; BYE from the caller.
uas kam_uas_midcall.xml
uac "re-INVITE, UPDATE, INFO, MESSAGE, REFER/NOTIFY both ways" kam_uac_midcall.xml

# 3. Early media (183 with SDP) sent reliably: PRACK (its RAck renumbered for the inside
# dialog), answer, then BYE from the far end.
uas kam_uas_prack.xml
uac "early media, PRACK (100rel), BYE from the callee" kam_uac_prack.xml

# 4. CANCEL while ringing; then CANCEL with a 200 crossing it inside (ACKed and ended with BYE).
uas kam_uas_cancel.xml
uac "CANCEL" kam_uac_cancel.xml
uas kam_uas_cancel_crossing.xml
uac "CANCEL crossing a 200" kam_uac_cancel.xml
[ "$(stat calls.calls_answered)" -eq 3 ] || fail "answered calls: $(ctl stats | grep ^calls)"

# 5. Final refusals from inside: 486 goes out as such; a 503 reaches the SBC as 500 (Kamailio,
# as a proxy must, RFC 3261 §16.7) and goes out so; a 302 goes out as 480 (the node's redirect
# status) without its inside Contact.
refuse() {  # refuse INSIDE_STATUS REASON OUTSIDE_STATUS
  sed "s/STATUS/$3/" "$SC/kam_uac_refuse.xml" >"$WORK/uac_refuse_$3.xml"
  sed "s/STATUS REASON/$1 $2/" "$SC/kam_uas_refuse.xml" >"$WORK/uas_refuse_$1.xml"
  uas "$WORK/uas_refuse_$1.xml"
  uac "$1 from inside ($3 outside)" "$WORK/uac_refuse_$3.xml"
}
refuse 486 "Busy Here" 486
refuse 503 "Service Unavailable" 500
refuse 302 "Moved Temporarily" 480

# 6. A forged BYE for a dialog that does not exist: 481, counted, nothing goes inside.
cat >"$WORK/forged.xml" <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="forged BYE">
  <send>
    <![CDATA[

      BYE sip:nobody@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:1001@[local_ip]>;tag=forged1
      To: <sip:2000@[remote_ip]>;tag=guessedtag
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="481"/>
</scenario>
XML
uac "forged in-dialog BYE (481)" "$WORK/forged.xml"
[ "$(stat calls.unknown_dialog)" -ge 1 ] || fail "unknown_dialog not counted"

# Failover: the first next hop never answered its probes, so no call went there; all went to
# Kamailio. Every call and stream is gone again.
ctl stats >"$WORK/stats.txt"
grep -q '^calls.hops_up=1$' "$WORK/stats.txt" || fail "hops up: $(grep ^calls "$WORK/stats.txt")"
grep -q '^calls.calls_answered=3$' "$WORK/stats.txt" || fail "answered: $(grep ^calls "$WORK/stats.txt")"
grep -q '^calls.calls_failed=3$' "$WORK/stats.txt" || fail "failed: $(grep ^calls "$WORK/stats.txt")"
for _ in $(seq 50); do
  ctl stats | grep -q '^calls.active=0$' && break
  sleep 0.1
done
ctl stats >"$WORK/stats.txt"
grep -q '^calls.active=0$' "$WORK/stats.txt" || fail "calls left: $(grep ^calls "$WORK/stats.txt")"
grep -q '^media.calls_anchored=0$' "$WORK/stats.txt" || fail "media left: $(grep ^media "$WORK/stats.txt")"
if tshark -r "$WORK/all.pcap" -Y "ip.dst==$DEAD && sip.Method == \"INVITE\"" 2>/dev/null | grep -q .; then
  fail "an INVITE went to the dead next hop"
fi
echo "failover: the dead first hop never taken, $(sed -n 's/^calls.probes_failed=//p' "$WORK/stats.txt") probes of it failed"

# The capture is complete once tshark has flushed it.
kill -INT $TSHARK_PID
wait $TSHARK_PID 2>/dev/null || true

# RTP of call 1 counted where it arrived: the far end got what the caller sent, the caller got
# the far end's echo, both through the relay.
rtp() { tshark -r "$WORK/all.pcap" -Y "$1" 2>/dev/null | wc -l; }
sent=$(rtp "ip.src==$UAC && udp.srcport==$UAC_MEDIA && udp.dstport>=32000 && udp.dstport<=32499")
far=$(rtp "ip.src==$SBC_IN && ip.dst==$UAS && udp.dstport==$UAS_MEDIA")
echoed=$(rtp "ip.src==$UAS && udp.srcport==$UAS_MEDIA && ip.dst==$SBC_IN")
back=$(rtp "ip.src==127.0.0.1 && ip.dst==$UAC && udp.dstport==$UAC_MEDIA")
echo "rtp: caller sent $sent, far end received $far and echoed $echoed, caller received $back"
[ "$sent" -ge 200 ] || fail "too few RTP packets sent: $sent"
[ "$far" -ge $((sent * 99 / 100)) ] || fail "the far end received $far of $sent RTP packets"
[ "$back" -ge $((echoed * 99 / 100)) ] && [ "$echoed" -ge $((far * 99 / 100)) ] ||
  fail "the caller received $back of $echoed echoed RTP packets"

# 7. Nothing of the inside in anything the SBC sent to the outside.
python3 "$HERE/leak_check.py" "$WORK/all.pcap" --sbc 127.0.0.1 --outside $UAC \
  --inside "ip.addr==$KAM || ip.addr==$UAS" \
  --forbid $SBC_IN --forbid $KAM --forbid $UAS --forbid $DEAD --forbid $UAS_PORT --forbid $KAM_PORT \
  --forbid inside.lan --forbid InternalPBX --forbid Kamailio --forbid "Inside Corp" \
  --forbid SIPpTag01 --forbid redirect@ \
  --strip Server --strip User-Agent --strip Organization --strip Warning --strip X-Inside-Host \
  --strip P-Asserted-Identity --strip X-Asterisk-Info --min-messages 30 ||
  fail "the outside saw the inside"
stop_sbc

# 8. Call ends the SBC decides, on a second run of the daemon: relay inactivity (3 s here) and
# a fraud ban of the caller's source while its call runs ([fraud] end_calls_on_ban, a deny
# rule that bans). Both legs get a BYE; the streams are freed.
cp -r "$ROOT/policy/examples/." "$WORK/"  # the policy with its includes and lists
python3 - "$ROOT/policy/examples/callcenter.toml" "$WORK/policy.toml" <<'PY2'
import sys
s = open(sys.argv[1]).read()
s = s.replace("[fraud]\n", "[fraud]\nend_calls_on_ban = true\n", 1)
old = 'countries = ["KP"]\naction = "block"'
assert old in s
s = s.replace(old, 'countries = ["KP"]\naction = "ban"')
open(sys.argv[2], "w").write(s)
PY2
sed -i "s|^files = .*|files = [\"$WORK/policy.toml\"]|; s|^internal_address = .*|&\ninactivity_timeout = \"3s\"|" "$WORK/sbc.toml"
grep -q 'inactivity_timeout = "3s"' "$WORK/sbc.toml" || fail "inactivity_timeout not set"
start_sbc
wait_hops_up "Kamailio (second run)"
uas kam_uas_ended.xml
uac "call ended on media inactivity" kam_uac_ended.xml
[ "$(stat calls.ended_inactive)" -eq 1 ] || fail "ended_inactive: $(ctl stats | grep ^calls)"

# The caller's call runs; the same source dials a denied destination (North Korea): 403, a
# ban, and the running call ends.
uas kam_uas_ended.xml
(cd "$WORK" && timeout 60 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$SC/kam_uac_ended.xml" -i $UAC \
  -p 45630 -mi $UAC -mp $UAC_MEDIA -m 1 -timeout 40s -recv_timeout 10000 \
  -default_behaviors all,-abortunexp -trace_msg -message_file "uac-banned.msg" \
  >"$WORK/uac-banned.out" 2>&1) &
BANNED_UAC=$!
for _ in $(seq 100); do
  [ "$(stat calls.calls_answered)" -ge 2 ] && break
  sleep 0.1
done
[ "$(stat calls.calls_answered)" -ge 2 ] || fail "the call to be banned was not answered"
sed "s/STATUS/403/" "$SC/kam_uac_refuse.xml" >"$WORK/uac_refuse_403.xml"
(cd "$WORK" && timeout 30 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$WORK/uac_refuse_403.xml" \
  -s 00850212345678 -i $UAC -p 45631 -m 1 -timeout 20s -recv_timeout 10000 \
  >"$WORK/uac-deny.out" 2>&1) || { cat "$WORK/uac-deny.out"; fail "no 403 for the denied call"; }
wait $BANNED_UAC || { cat "$WORK/uac-banned.out"; fail "the banned source's call got no BYE"; }
wait "$UAS_PID" || { cat "$WORK/uas-$N.out"; fail "the far end of the banned call got no BYE"; }
UAS_PID=
[ "$(stat calls.ended_banned)" -eq 1 ] || fail "ended_banned: $(ctl stats | grep ^calls)"
for _ in $(seq 50); do
  ctl stats | grep -q '^media.calls_anchored=0$' && break
  sleep 0.1
done
ctl stats | grep -q '^media.calls_anchored=0$' || fail "media left: $(ctl stats | grep ^media)"
echo "call ends: media inactivity and a fraud ban each ended a running call, BYE on both legs"
stop_sbc
echo "PASS"
