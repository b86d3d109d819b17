#!/usr/bin/env bash
# Registrations over TLS through `sbc run`, with the registrar reached over TCP: a sipp phone
# (Debian's sipp has no TLS: stunnel4 in client mode in front of it, verifying the SBC's
# certificate) registers with Kamailio (digest auth) over one TLS connection to the SBC's
# external TLS listener; the SBC relays the REGISTERs to Kamailio over TCP (the internal next
# hop says `transport = "tcp"`; Kamailio listens on TCP only, and a capture of its port shows
# the REGISTERs, their Via and Contact naming the SBC's internal TCP listener). A call from
# inside (a sipp UAC over TCP to Kamailio, Kamailio over TCP to the SBC) reaches the phone over
# THAT TLS connection (the phone sees the INVITE with a TLS Via; one TLS connection, the one
# stunnel opened); once the phone goes (stunnel closes the TLS connection), its binding goes at
# once and the next call from inside gets 480 without waiting for a timeout.
#   registrations_tls.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11700
need sipp sip-tester
need kamailio kamailio
need stunnel4 stunnel4
need openssl openssl
need tshark tshark
need ss iproute2
INT_PORT=11701     # the SBC inside, UDP
INT_TCP=11702      # the SBC inside, TCP (Kamailio's calls to the bindings come here)
TLS_PORT=11703     # the SBC outside, TLS
REG=127.0.0.3
REG_PORT=11710     # Kamailio, TCP only
STUNNEL_PORT=11720 # the phone's side of stunnel
PHONE=127.0.0.31
PHONE_PORT=11713

cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
  -out ca.pem -days 2 -subj "/CN=test-ca" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout sbc.key \
  -out sbc.csr -subj "/CN=sbc.test" 2>/dev/null
printf 'subjectAltName=DNS:sbc.test\n' >sbc.ext
openssl x509 -req -in sbc.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out sbc.pem -days 2 \
  -extfile sbc.ext 2>/dev/null
cd - >/dev/null

# CRLF keep-alives on the connection are covered by the unit tests; keep them out of sipp's way.
registrar_config "$REG_PORT" "$INT_PORT" 25000 25099 'keepalive_interval = "120s"'
python3 - "$WORK" "$TLS_PORT" "$INT_TCP" <<'PY'
import re, sys
work, tls, int_tcp = sys.argv[1:]
path = work + "/sbc.toml"
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?transport = )"udp"', r'\g<1>"tcp"', s, flags=re.S)
s = s.replace('[tls]\nmin_version = "1.2"\n', f'''[[listeners]]
realm = "external"
address = "127.0.0.1"
port = {tls}
transport = "tls"

[[listeners]]
realm = "internal"
address = "127.0.0.2"
port = {int_tcp}
transport = "tcp"

[tls]
min_version = "1.2"
certificate_chain = "{work}/sbc.pem"
private_key = "{work}/sbc.key"
''')
open(path, "w").write(s)
PY
grep -q "certificate_chain = \"$WORK/sbc.pem\"" "$WORK/sbc.toml" || fail "TLS listener not added"
python3 - "$WORK/sbc.toml" <<'PY' || fail "the registrar next hop is not over TCP"
import re, sys
hop = re.search(r'\[\[next_hops\]\][^\[]*', open(sys.argv[1]).read()).group(0)
sys.exit(0 if 'transport = "tcp"' in hop else 1)
PY
! ss -tln | grep -q "$REG:$REG_PORT " || fail "port $REG:$REG_PORT (tcp) is taken"
! ss -tln | grep -q "127.0.0.1:$TLS_PORT " || fail "port 127.0.0.1:$TLS_PORT (tcp) is taken"

tshark -i lo -q -w "$WORK/inside.pcap" -f "tcp port $REG_PORT or tcp port $INT_TCP" >"$WORK/tshark.log" 2>&1 &
TSHARK_PID=$!
PEER_PIDS+=($TSHARK_PID)
for _ in $(seq 100); do grep -q "Capturing on" "$WORK/tshark.log" && break; sleep 0.1; done

start_kamailio "$HERE/registrar/kamailio.cfg" tcp "$REG" "$REG_PORT" -A "LISTEN=tcp:$REG:$REG_PORT" \
  -n 2 -Y "$WORK" -w "$WORK"
start_sbc
wait_hops_up "registrar (TCP)"
grep -q "SIP listener tls 127.0.0.1:$TLS_PORT open (external)" "$WORK/sbc.log" || fail "no TLS listener"

start_stunnel "127.0.0.1:$STUNNEL_PORT" <<EOF
[phone]
client = yes
accept = 127.0.0.1:$STUNNEL_PORT
connect = 127.0.0.1:$TLS_PORT
CAfile = $WORK/ca.pem
verifyChain = yes
checkHost = sbc.test
EOF

# 1. The phone registers over TLS, then stays on its connection; the INVITE from inside
# (another Call-ID) is taken by the out-of-call scenario, on the same socket.
sed -e 's|<recv response="200" />|<recv response="200" />\n  <pause milliseconds="12000" />|' \
  "$HERE/registrar/register.xml" >"$WORK/register_stay.xml"
handshakes0=$(stat streams.handshakes)
(cd "$WORK" && exec timeout 40 sipp "127.0.0.1:$STUNNEL_PORT" -t t1 -nostdin \
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
  { cat "$WORK/phone.msg" "$WORK/stunnel.log" 2>/dev/null; fail "no binding over TLS: $(ctl stats | grep ^registrations)"; }
[ "$(stat streams.handshakes)" -gt "$handshakes0" ] || fail "no TLS handshake for the phone"
list=$(ctl registrations)
echo "$list" | grep -q '^aor=1001@pbx.example token=[0-9a-z]\{24\} transport=tls remote=127.0.0.1:' ||
  fail "binding not on a TLS flow: $list"
echo "register over TLS: bound ($(echo "$list" | head -1 | cut -d' ' -f3-5))"

# The registrar got the REGISTERs over TCP, from the SBC's internal TCP listener.
regs_tcp=$(tshark -r "$WORK/inside.pcap" -Y 'sip.Method == "REGISTER"' -T fields -e sip.Via -e sip.Contact 2>/dev/null || true)
[ -n "$regs_tcp" ] || fail "no REGISTER over TCP to the registrar in the capture"
echo "$regs_tcp" | grep -q "SIP/2.0/TCP 127.0.0.2:$INT_TCP" || fail "REGISTER Via inside: $regs_tcp"
echo "$regs_tcp" | grep -q "@127.0.0.2:$INT_TCP;transport=tcp" || fail "REGISTER Contact inside: $regs_tcp"
! echo "$regs_tcp" | grep -q "192.168.1.5" || fail "the phone's address reached the registrar"
echo "registrar: $(echo "$regs_tcp" | wc -l) REGISTERs over TCP (Via and Contact on 127.0.0.2:$INT_TCP)"

# 2. A call from inside reaches the phone over its TLS connection.
(cd "$WORK" && timeout 20 sipp "$REG:$REG_PORT" -t t1 -nostdin -sn uac -s 1001 -i 127.0.0.4 \
  -p 11721 -mi 127.0.0.4 -mp 25090 -m 1 -d 500 -timeout 15s -recv_timeout 8000 \
  -default_behaviors all,-abortunexp -trace_msg -message_file inside.msg >"$WORK/inside.out" 2>&1) ||
  { cat "$WORK/inside.msg" "$WORK/phone.msg"; fail "call from inside failed"; }
[ "$(stat registrations.inbound_routed)" = 1 ] || fail "inbound_routed: $(ctl stats | grep ^registrations)"
grep -q "^INVITE sip:1001@192.168.1.5:5060" "$WORK/phone.msg" || fail "the phone got no INVITE"
grep -A2 "^INVITE sip:1001@192.168.1.5" "$WORK/phone.msg" | grep -q "^Via: SIP/2.0/TLS" ||
  { grep -A3 "^INVITE sip:1001" "$WORK/phone.msg"; fail "the INVITE's Via does not say TLS"; }
# One TLS connection to the SBC: the one stunnel opened for the phone.
conns=$(ss -tnH state established "( sport = :$TLS_PORT )" | wc -l)
[ "$conns" = 1 ] || { ss -tn state established; fail "$conns TLS connections to the SBC (want 1)"; }
tshark -r "$WORK/inside.pcap" -Y 'sip.Method == "INVITE"' -T fields -e ip.dst -e tcp.dstport 2>/dev/null |
  grep -q "127.0.0.2	$INT_TCP" || fail "the INVITE from Kamailio did not come over TCP to the SBC"
echo "call from inside: over TCP to the SBC, then over the phone's own TLS connection"

# 3. The phone goes away (stunnel closes the TLS connection): the binding goes at once, the
# next call from inside gets 480 at once.
wait "$PHONE_PID" 2>/dev/null || true
for _ in $(seq 50); do
  [ "$(stat registrations.flows_closed)" = 1 ] && break
  sleep 0.1
done
[ "$(stat registrations.flows_closed)" = 1 ] || fail "closed connection not seen: $(ctl stats | grep ^registrations)"
[ "$(stat registrations.bindings)" = 0 ] || fail "binding left on a closed connection"
start=$(date +%s%N)
(cd "$WORK" && timeout 20 sipp "$REG:$REG_PORT" -t t1 -nostdin -sn uac -s 1001 -i 127.0.0.4 \
  -p 11722 -m 1 -timeout 10s -recv_timeout 8000 -trace_msg -message_file gone.msg \
  >"$WORK/gone.out" 2>&1) || true
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
grep -q "SIP/2.0 480" "$WORK/gone.msg" || { cat "$WORK/gone.msg"; fail "no 480 after the connection closed"; }
[ "$elapsed_ms" -lt 5000 ] || fail "480 took $elapsed_ms ms"
[ "$(stat registrations.inbound_gone)" -ge 1 ] || fail "inbound_gone not counted"
echo "TLS connection closed: binding removed, the next call got 480 in $elapsed_ms ms"
ctl stats | grep -E '^registrations\.' | grep -v '=0$'
stop_sbc
echo "PASS"
