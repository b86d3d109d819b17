#!/usr/bin/env bash
# Registrations over TCP through `sbc run`: a sipp phone registers with Kamailio (digest auth)
# over one TCP connection to the SBC's external TCP listener; a call from inside reaches it
# over THAT connection (the phone sees the INVITE, `ss` shows one connection from the phone,
# and the SBC never opens one towards it); once the phone closes the connection, its binding
# goes at once and the next call from inside gets 480 without waiting for a timeout.
#   registrations_tcp.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11010
need sipp sip-tester
need kamailio kamailio
need ss iproute2
REG=127.0.0.3
REG_PORT=11012
INT_PORT=11011
PHONE=127.0.0.30
PHONE_PORT=11013
# CRLF keep-alives on the connection are covered by the unit tests; keep them out of sipp's way.
registrar_config "$REG_PORT" "$INT_PORT" 20100 20199 'keepalive_interval = "120s"'
grep -q 'transport = "tcp"' "$WORK/sbc.toml" || fail "no TCP listener in the config"
! ss -tln | grep -q "127.0.0.1:$SIP_PORT " || fail "port 127.0.0.1:$SIP_PORT (tcp) is taken"

start_kamailio "$HERE/registrar/kamailio.cfg" udp "$REG" "$REG_PORT" -A "LISTEN=udp:$REG:$REG_PORT" \
  -n 2 -Y "$WORK" -w "$WORK"
start_sbc
wait_hops_up registrar

# The phone: registers over TCP, then stays on its connection; the INVITE from inside (another
# Call-ID) is taken by the out-of-call scenario, on the same socket.
sed -e 's|<recv response="200" />|<recv response="200" />\n  <pause milliseconds="12000" />|' \
  "$HERE/registrar/register.xml" >"$WORK/register_stay.xml"
(cd "$WORK" && exec timeout 40 sipp "127.0.0.1:$SIP_PORT" -t t1 -nostdin \
  -sf "$WORK/register_stay.xml" -oocsf "$HERE/registrar/phone_uas.xml" -s 1001 -au 1001 \
  -ap pw1001 -set expires 3600 -i $PHONE -p $PHONE_PORT -m 1 -timeout 30s -recv_timeout 20000 \
  -trace_msg -message_file phone.msg -trace_err -error_file phone.err >"$WORK/phone.out" 2>&1) &
PHONE_PID=$!
PEER_PIDS+=($PHONE_PID)
for _ in $(seq 150); do
  [ "$(stat registrations.bindings)" = 1 ] && break
  sleep 0.1
done
[ "$(stat registrations.bindings)" = 1 ] ||
  { cat "$WORK/phone.msg" 2>/dev/null; fail "no binding over TCP: $(ctl stats | grep ^registrations)"; }
echo "register over TCP: bound"

# 2. A call from inside reaches the phone over its TCP connection.
(cd "$WORK" && timeout 20 sipp "$REG:$REG_PORT" -nostdin -sn uac -s 1001 -i 127.0.0.4 -p 11020 \
  -mi 127.0.0.4 -mp 20190 -m 1 -d 500 -timeout 15s -recv_timeout 8000 \
  -default_behaviors all,-abortunexp -trace_msg -message_file inside.msg >"$WORK/inside.out" 2>&1) ||
  { cat "$WORK/inside.msg" "$WORK/phone.msg"; fail "call from inside failed"; }
[ "$(stat registrations.inbound_routed)" = 1 ] || fail "inbound_routed: $(ctl stats | grep ^registrations)"
grep -q "^INVITE sip:1001@192.168.1.5:5060" "$WORK/phone.msg" || fail "the phone got no INVITE"
grep -A2 "^INVITE sip:1001@192.168.1.5" "$WORK/phone.msg" | grep -q "^Via: SIP/2.0/TCP" ||
  { grep -A3 "^INVITE sip:1001" "$WORK/phone.msg"; fail "the INVITE's Via does not say TCP"; }
# One connection between the phone and the SBC, the one the phone opened (its source port).
conns=$(ss -tnH state established "( sport = :$SIP_PORT )" | grep -c "$PHONE:" || true)
[ "$conns" = 1 ] || { ss -tn state established; fail "$conns connections from the phone (want 1)"; }
ss -tnH state established "( sport = :$SIP_PORT )" | grep -q "$PHONE:$PHONE_PORT" ||
  { ss -tn state established; fail "the connection is not the phone's ($PHONE:$PHONE_PORT)"; }
# The SBC never listened on or connected to the phone's listening port with a second socket.
! ss -tnH state established "( dport = :$PHONE_PORT )" | grep -v "127.0.0.1:$SIP_PORT" | grep -q . ||
  { ss -tn state established; fail "another connection towards the phone"; }
echo "call from inside: over the phone's own TCP connection (one connection)"

# 3. The phone goes away (its connection closes): the binding goes at once, the next call from
# inside gets 480 at once.
wait "$PHONE_PID" 2>/dev/null || true
for _ in $(seq 50); do
  [ "$(stat registrations.flows_closed)" = 1 ] && break
  sleep 0.1
done
[ "$(stat registrations.flows_closed)" = 1 ] || fail "closed connection not seen: $(ctl stats | grep ^registrations)"
[ "$(stat registrations.bindings)" = 0 ] || fail "binding left on a closed connection"
start=$(date +%s%N)
(cd "$WORK" && timeout 20 sipp "$REG:$REG_PORT" -nostdin -sn uac -s 1001 -i 127.0.0.4 -p 11021 \
  -m 1 -timeout 10s -recv_timeout 8000 -trace_msg -message_file gone.msg >"$WORK/gone.out" 2>&1) || true
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
grep -q "SIP/2.0 480" "$WORK/gone.msg" || { cat "$WORK/gone.msg"; fail "no 480 after the connection closed"; }
[ "$elapsed_ms" -lt 5000 ] || fail "480 took $elapsed_ms ms"
[ "$(stat registrations.inbound_gone)" -ge 1 ] || fail "inbound_gone not counted"
echo "connection closed: binding removed, the next call got 480 in $elapsed_ms ms"
ctl stats | grep -E '^registrations\.' | grep -v '=0$'
stop_sbc
echo "PASS"
