#!/usr/bin/env bash
# Registrations through `sbc run` to a real registrar: Kamailio (usrloc, digest auth, 404 for
# unknown users) on 127.0.0.3 behind the SBC, sipp phones outside "behind NAT" (Via, Contact and
# SDP name 192.168.1.5; packets come from 127.0.0.x). Checks: register (challenge relayed, the
# registrar never sees the phone's address), refresh answered from the SBC's cache, a call from
# inside delivered over the registered flow, re-registration from a new address moves the
# binding, unregister, a flow that stops answering keep-alives loses its binding and a call to
# it fails at once (480), forged tokens and bad REGISTERs counted.
#   registrations_kamailio.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45800
need sipp sip-tester
need kamailio kamailio
need tcpdump tcpdump
REG=127.0.0.3
REG_PORT=45802
INT_PORT=45801
registrar_config "$REG_PORT" "$INT_PORT" 34000 34999 'nat_expires = "60s"
keepalive = "options"
keepalive_interval = "8s"
keepalive_timeout = "1s"
keepalive_failures = 2'

start_kamailio "$HERE/registrar/kamailio.cfg" udp "$REG" "$REG_PORT" -A "LISTEN=udp:$REG:$REG_PORT" \
  -n 2 -Y "$WORK" -w "$WORK"
# Everything the registrar receives, to check it never sees a phone's address.
tcpdump -i lo -n -U -w "$WORK/inside.pcap" "udp and host $REG and port $REG_PORT" \
  >"$WORK/tcpdump.log" 2>&1 &
TCPDUMP_PID=$!
PEER_PIDS+=($TCPDUMP_PID)
start_sbc
wait_hops_up registrar

phone() {  # phone NAME ADDR PORT SCENARIO [sipp args...]
  local name=$1 addr=$2 port=$3 sc=$4
  shift 4
  (cd "$WORK" && timeout 20 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$HERE/registrar/$sc" \
    -i "$addr" -p "$port" -m 1 -timeout 15s -recv_timeout 5000 -trace_msg \
    -message_file "$name.msg" "$@" >"$WORK/$name.out" 2>&1)
}

# 1. Register behind NAT.
phone reg1 127.0.0.10 45810 register.xml -s 1001 -au 1001 -ap pw1001 -set expires 3600 \
  -cid_str nat1001 || { cat "$WORK/reg1.out" "$WORK/reg1.msg"; fail "registration failed"; }
[ "$(stat registrations.bindings)" = 1 ] || fail "bindings: $(ctl stats | grep ^registrations)"
[ "$(stat registrations.challenges_relayed)" = 1 ] || fail "challenge not relayed"
grep -q 'expires=60' "$WORK/reg1.msg" || fail "the phone was not given the NAT expiry (60 s)"
echo "register: challenge relayed, 200 with expires=60 (registrar: 3600)"

# 2. Refresh from the same flow: answered from the cache, the registrar is not asked.
fwd=$(stat registrations.forwarded)
phone ref1 127.0.0.10 45810 refresh.xml -s 1001 -cid_str nat1001 || fail "refresh failed"
[ "$(stat registrations.answered_from_cache)" = 1 ] || fail "refresh not answered from cache"
[ "$(stat registrations.forwarded)" = "$fwd" ] || fail "refresh reached the registrar"
echo "refresh: answered from the SBC's cache"

# 3. A call from inside (a sipp UAC calling 1001 through Kamailio) reaches the phone on the
# address and port it registered from.
(cd "$WORK" && exec timeout 30 sipp -nostdin -sf "$HERE/registrar/phone_uas.xml" -s 1001 \
  -i 127.0.0.10 -p 45810 -timeout 25s -trace_msg -message_file phone.msg >"$WORK/phone.out" 2>&1) &
PHONE=$!
PEER_PIDS+=($PHONE)
sleep 0.3
(cd "$WORK" && timeout 20 sipp "$REG:$REG_PORT" -nostdin -sn uac -s 1001 -i 127.0.0.4 -p 45820 \
  -mi 127.0.0.4 -mp 34900 -m 1 -d 500 -timeout 15s -recv_timeout 8000 \
  -default_behaviors all,-abortunexp -trace_msg -message_file inside.msg >"$WORK/inside.out" 2>&1) ||
  { cat "$WORK/inside.msg" "$WORK/phone.msg"; fail "call from inside failed"; }
[ "$(stat registrations.inbound_routed)" = 1 ] || fail "inbound_routed: $(ctl stats | grep ^registrations)"
grep -q "^INVITE sip:1001@192.168.1.5:5060" "$WORK/phone.msg" || fail "the phone got no INVITE"
kill "$PHONE" 2>/dev/null || true
wait "$PHONE" 2>/dev/null || true
echo "call from inside: delivered over the registered flow, answered and ended"

# 4. The phone moves (Wi-Fi to 4G): it registers the same Contact from another address.
phone reg2 127.0.0.11 45811 register.xml -s 1001 -au 1001 -ap pw1001 -set expires 3600 \
  -cid_str nat1001b || { cat "$WORK/reg2.out"; fail "re-registration failed"; }
[ "$(stat registrations.moved)" = 1 ] || fail "binding not moved: $(ctl stats | grep ^registrations)"
[ "$(stat registrations.bindings)" = 1 ] || fail "bindings after the move: $(stat registrations.bindings)"
echo "re-register from a new address: the binding moved"

# 5. Unregister (Expires 0).
phone unreg 127.0.0.11 45811 register.xml -s 1001 -au 1001 -ap pw1001 -set expires 0 \
  -cid_str nat1001b || { cat "$WORK/unreg.out"; fail "unregister failed"; }
[ "$(stat registrations.bindings)" = 0 ] || fail "binding left after Expires 0"
[ "$(stat registrations.unregistered)" -ge 1 ] || fail "unregistered not counted"
echo "unregister: binding removed"

# 6. A phone that goes silent: two unanswered OPTIONS (8 s apart, 1 s timeout) remove it; a
# call to it then fails at once with 480.
phone reg3 127.0.0.12 45812 register.xml -s 1002 -au 1002 -ap pw1002 -set expires 3600 \
  -cid_str nat1002 || { cat "$WORK/reg3.out"; fail "registration of 1002 failed"; }
[ "$(stat registrations.bindings)" = 1 ] || fail "1002 not bound"
for _ in $(seq 400); do
  [ "$(stat registrations.flows_dead)" -ge 1 ] && break
  sleep 0.1
done
[ "$(stat registrations.flows_dead)" = 1 ] || fail "dead flow not removed: $(ctl stats | grep ^registrations)"
[ "$(stat registrations.bindings)" = 0 ] || fail "binding of the dead flow left"
start=$(date +%s%N)
(cd "$WORK" && timeout 20 sipp "$REG:$REG_PORT" -nostdin -sn uac -s 1002 -i 127.0.0.4 -p 45821 \
  -m 1 -timeout 10s -recv_timeout 8000 -trace_msg -message_file gone.msg >"$WORK/gone.out" 2>&1) || true
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
grep -q "SIP/2.0 480" "$WORK/gone.msg" || { cat "$WORK/gone.msg"; fail "no 480 for a dead flow"; }
[ "$elapsed_ms" -lt 5000 ] || fail "480 took $elapsed_ms ms"
[ "$(stat registrations.inbound_gone)" -ge 1 ] || fail "inbound_gone not counted"
echo "dead flow: removed by keep-alives; a call to it got 480 in $elapsed_ms ms"

# 7. A forged token from inside: 480, counted.
gone=$(stat registrations.inbound_gone)
cat >"$WORK/forged.xml" <<XML
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="forged token">
  <send retrans="500"><![CDATA[

      INVITE sip:abcdefghijklmnopqrstuvwx@127.0.0.2:$INT_PORT SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:2000@pbx.example>;tag=[pid]forged
      To: <sip:1001@pbx.example>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:2000@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="100" optional="true" />
  <recv response="480" />
  <send><![CDATA[

      ACK sip:abcdefghijklmnopqrstuvwx@127.0.0.2:$INT_PORT SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
</scenario>
XML
(cd "$WORK" && timeout 20 sipp "127.0.0.2:$INT_PORT" -nostdin -sf forged.xml -i 127.0.0.2 -p 45822 \
  -m 1 -timeout 10s -recv_timeout 5000 >"$WORK/forged.out" 2>&1) || { cat "$WORK/forged.out"; fail "forged token not answered 480"; }
[ "$(stat registrations.inbound_gone)" = $((gone + 1)) ] || fail "forged token not counted"
echo "forged token: 480, counted"

# 8. What the registrar saw: never a phone's address, Call-ID or product.
kill "$TCPDUMP_PID" 2>/dev/null || true
sleep 0.5
tcpdump -r "$WORK/inside.pcap" -A -n 2>/dev/null >"$WORK/inside.txt"
grep -q "REGISTER sip:pbx.example" "$WORK/inside.txt" || fail "capture of the inside is empty"
for leak in 192.168.1.5 127.0.0.10 127.0.0.11 127.0.0.12 nat1001 Yealink; do
  if grep -q -- "$leak" "$WORK/inside.txt"; then
    grep -n -- "$leak" "$WORK/inside.txt" | head -3
    fail "the registrar saw '$leak'"
  fi
done
echo "inside: none of 192.168.1.5, the phones' addresses, their Call-IDs or User-Agent"
ctl stats | grep -E '^registrations\.' | grep -v '=0$'
stop_sbc
echo "PASS"
