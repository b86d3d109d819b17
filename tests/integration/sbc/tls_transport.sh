#!/usr/bin/env bash
# TCP and TLS through `sbc run` on loopback: calls from a sipp UAC over TCP and, through
# stunnel (Debian's sipp has no TLS), over TLS to a sipp UAS inside; `openssl s_client` for the
# TLS versions (1.2 and 1.3 accepted, 1.0 and 1.1 refused) and a trunk listener that verifies
# client certificates (none, another CA's and a wrong name refused; the right one accepted); a
# certificate reload seen by new connections while an established one keeps working, and a
# broken certificate refused with the old one kept; CRLF keep-alives; garbage TLS records,
# half-open and idle connections, oversized messages, the per-source connection limit and the
# dataplane's tcp_connect limit: each a counted refusal.
#   tls_transport.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45500
need sipp sip-tester
need openssl openssl
need stunnel4 stunnel4
TLS_PORT=45502
TRUNK_PORT=45503
UAS_PORT=45504
INTERNAL_PORT=45501
STUNNEL_PORT=45520

# Certificates: a server CA with two server certificates (A, then B after the reload), a
# clients CA with a trunk certificate and one with another name, and a foreign CA.
cd "$WORK"
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1" 2>/dev/null; }
leaf() {  # NAME CN CA
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext" 2>/dev/null
}
ca server-ca
ca clients-ca
ca foreign-ca
leaf server-a sbc-a.test server-ca
leaf server-b sbc-b.test server-ca
leaf trunk trunk.example.net clients-ca
leaf other other.example.net clients-ca
leaf foreign trunk.example.net foreign-ca
cp server-a.pem server.pem
cp server-a.key server.key
cd - >/dev/null

write_config
cp -r "$ROOT/policy/examples" "$WORK/policy"
python3 - "$WORK" "$UAS_PORT" "$INTERNAL_PORT" "$TLS_PORT" "$TRUNK_PORT" <<'PY'
import re, sys
work, uas, internal, tls, trunk = sys.argv[1:]
path = work + "/sbc.toml"
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + uas, s, flags=re.S)
s = re.sub(r'(realm = "internal"\naddress = "127.0.0.2"\nport = )\d+', r'\g<1>' + internal, s)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 31000').replace('port_max = 29999', 'port_max = 31499')
s = s.replace('[tls]\nmin_version = "1.2"\n', f'''[[listeners]]
realm = "external"
address = "127.0.0.1"
port = {tls}
transport = "tls"

# A trunk realm: only the carrier's certificate.
[[listeners]]
realm = "external"
address = "127.0.0.1"
port = {trunk}
transport = "tls"
client_ca = "{work}/clients-ca.pem"
require_client_certificate = true
client_names = ["trunk.example.net"]

[tls]
min_version = "1.2"
certificate_chain = "{work}/server.pem"
private_key = "{work}/server.key"
''')
s = s.replace('max_per_source = 32', 'max_per_source = 8')
s = s.replace('handshake_timeout = "5s"', 'handshake_timeout = "2s"')
s = s.replace('idle_timeout = "300s"', 'idle_timeout = "6s"')
# A policy of our own: a tcp_connect budget the test can exhaust from one address.
pol = open(re.search(r'files = \["([^"]+)"\]', s).group(1)).read()
pol = pol.replace('[rate_limits.tcp_connect]\nper_source = { rate = 5, burst = 20 }',
                  '[rate_limits.tcp_connect]\nper_source = { rate = 5, burst = 30 }')
open(work + "/policy/callcenter.toml", "w").write(pol)
s = re.sub(r'files = \["[^"]+"\]', f'files = ["{work}/policy/callcenter.toml"]', s)
open(path, "w").write(s)
PY
grep -q "burst = 30" "$WORK/policy/callcenter.toml" || fail "policy not rewritten"
grep -q 'idle_timeout = "6s"' "$WORK/sbc.toml" || fail "connections not rewritten"
grep -q "port = $INTERNAL_PORT" "$WORK/sbc.toml" || fail "internal port not rewritten"
start_sbc
for _ in $(seq 50); do grep -q "tls 127.0.0.1:$TRUNK_PORT open" "$WORK/sbc.log" && break; sleep 0.1; done
grep -q "SIP listener tcp 127.0.0.1:$SIP_PORT open (external)" "$WORK/sbc.log" || fail "no TCP listener"
grep -q "SIP listener tls 127.0.0.1:$TLS_PORT open (external)" "$WORK/sbc.log" || fail "no TLS listener"

(cd "$WORK" && exec timeout 90 sipp -nostdin -sf "$HERE/scenarios/uas_call.xml" -i 127.0.0.3 \
  -p "$UAS_PORT" -mi 127.0.0.3 -mp 31600 -rtp_echo -timeout 85s >"$WORK/uas.out" 2>&1) &
PEER_PIDS+=($!)
for _ in $(seq 100); do
  [ "$(stat calls.hops_up)" -ge 1 ] && break
  sleep 0.1
done
[ "$(stat calls.hops_up)" -ge 1 ] || fail "next hop never came up: $(ctl stats)"

calls() {  # NAME PORT SIPP_LOCAL_PORT MEDIA_PORT N: sipp UAC over TCP, N calls must complete
  (cd "$WORK" && timeout 60 sipp "127.0.0.1:$2" -nostdin -t t1 -sn uac -s 4402 -i 127.0.0.1 \
    -p "$3" -mi 127.0.0.1 -mp "$4" -r 5 -m "$5" -d 500 -timeout 50s -recv_timeout 10000 \
    -default_behaviors all,-abortunexp -trace_msg -message_file "$1.msg" -trace_stat \
    -stf "$1.csv" >"$WORK/$1.out" 2>&1) || { cat "$WORK/$1.out"; fail "sipp $1 failed"; }
  local r
  r=$(python3 -c 'import csv,sys; r=list(csv.DictReader(open(sys.argv[1]),delimiter=";"))[-1]; print(r["SuccessfulCall(C)"], r["FailedCall(C)"])' "$WORK/$1.csv")
  [ "$r" = "$5 0" ] || fail "$1 calls (successful failed): $r"
}

# 1. Calls over TCP: requests and responses on the UAC's connection.
calls tcp "$SIP_PORT" 45510 31700 5
[ "$(stat streams.messages)" -ge 15 ] || fail "TCP messages: $(ctl stats | grep ^streams)"
grep -q "SIP/2.0/TCP" "$WORK/tcp.msg" || fail "sipp did not use TCP"
echo "tcp: 5 calls through the SBC over TCP"
# UDP on the same address and port as the TCP listener is still answered from the UDP socket.
python3 - "$SIP_PORT" <<'PY' || fail "UDP beside TCP on port $SIP_PORT not answered"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 45530))
s.settimeout(5)
s.sendto(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:45530;branch=z9hG4bKudp1\r\n"
         b"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
         b"Call-ID: udp-beside-tcp\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
         ("127.0.0.1", int(sys.argv[1])))
data, src = s.recvfrom(4096)
assert data.startswith(b"SIP/2.0 ") and src == ("127.0.0.1", int(sys.argv[1])), (data[:40], src)
PY

# 2. TLS versions with openssl s_client: a CRLFCRLF keep-alive must come back as CRLF.
ping_tls() {  # PORT ARGS... -> the hex bytes answered
  (printf '\r\n\r\n'; sleep 2) | timeout 8 openssl s_client -brief -connect "127.0.0.1:$1" \
    "${@:2}" 2>>"$WORK/s_client.err" | od -An -tx1 | tr -d ' \n'
}
[ "$(ping_tls $TLS_PORT -tls1_3)" = "0d0a" ] || fail "TLS 1.3 refused: $(tail -5 "$WORK/s_client.err")"
[ "$(ping_tls $TLS_PORT -tls1_2)" = "0d0a" ] || fail "TLS 1.2 refused: $(tail -5 "$WORK/s_client.err")"
failed0=$(stat streams.handshake_failed)
[ -z "$(ping_tls $TLS_PORT -tls1_1 -cipher DEFAULT@SECLEVEL=0)" ] || fail "TLS 1.1 accepted"
[ -z "$(ping_tls $TLS_PORT -tls1 -cipher DEFAULT@SECLEVEL=0)" ] || fail "TLS 1.0 accepted"
sleep 0.3
[ "$(stat streams.handshake_failed)" -ge $((failed0 + 2)) ] || fail "old versions not counted"
echo "tls versions: 1.3 and 1.2 accepted, 1.1 and 1.0 refused"

# 3. The trunk listener verifies client certificates.
[ -z "$(ping_tls $TRUNK_PORT)" ] || fail "trunk: accepted without a certificate"
[ -z "$(ping_tls $TRUNK_PORT -cert "$WORK/foreign.pem" -key "$WORK/foreign.key")" ] ||
  fail "trunk: accepted another CA's certificate"
[ -z "$(ping_tls $TRUNK_PORT -cert "$WORK/other.pem" -key "$WORK/other.key")" ] ||
  fail "trunk: accepted a certificate with another name"
[ "$(ping_tls $TRUNK_PORT -cert "$WORK/trunk.pem" -key "$WORK/trunk.key")" = "0d0a" ] ||
  fail "trunk: refused its own certificate: $(tail -5 "$WORK/s_client.err")"
sleep 0.3
[ "$(stat streams.client_cert_refused)" -ge 2 ] || fail "client certs: $(ctl stats | grep ^streams)"
[ "$(stat streams.client_name_refused)" -ge 1 ] || fail "client names: $(ctl stats | grep ^streams)"
echo "client certificates: none, foreign CA and wrong name refused; the trunk's accepted"

# 4. Calls over TLS: sipp over TCP to stunnel, stunnel over TLS to the SBC.
start_stunnel "127.0.0.1:$STUNNEL_PORT" <<EOF
[sip]
client = yes
accept = 127.0.0.1:$STUNNEL_PORT
connect = 127.0.0.1:$TLS_PORT
EOF
handshakes0=$(stat streams.handshakes)
calls tls "$STUNNEL_PORT" 45511 31800 3
[ "$(stat streams.handshakes)" -gt "$handshakes0" ] || fail "no TLS handshake for the calls"
echo "tls: 3 calls through stunnel and the SBC over TLS"

# 5. Certificate reload: an established connection keeps working, new ones see the new one.
python3 - "$TLS_PORT" "$WORK" >"$WORK/held.out" 2>&1 <<'PY' &
import os, socket, ssl, sys, time
port, work = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 5))
def ping():
    s.sendall(b"\r\n\r\n")
    return s.recv(16) == b"\r\n"
print("first", ping(), flush=True)
for _ in range(300):  # keep-alive every 0.1 s until told
    if os.path.exists(work + "/go"):
        break
    time.sleep(0.1)
    ping()
print("after", ping(), flush=True)
PY
held=$!
PEER_PIDS+=($held)
for _ in $(seq 50); do grep -q first "$WORK/held.out" && break; sleep 0.1; done
grep -q "first True" "$WORK/held.out" || fail "held connection: $(cat "$WORK/held.out")"
cp "$WORK/server-b.pem" "$WORK/server.pem"
cp "$WORK/server-b.key" "$WORK/server.key"
ctl reload | grep -q "^ok" || fail "reload with a new certificate: $(ctl status)"
ping_tls $TLS_PORT >/dev/null
grep "Peer certificate" "$WORK/s_client.err" | tail -1 | grep -q "sbc-b.test" ||
  fail "new connections do not see the new certificate: $(tail -3 "$WORK/s_client.err")"
touch "$WORK/go"
wait "$held" || true
grep -q "after True" "$WORK/held.out" || fail "held connection dropped by the reload: $(cat "$WORK/held.out")"
# A broken certificate: the reload is refused, the running one stays.
echo "not a certificate" >"$WORK/server.pem"
reply=$(ctl reload || true)
echo "$reply" | grep -q "tls_certificates" || fail "broken certificate not refused: $reply"
ping_tls $TLS_PORT >/dev/null
grep "Peer certificate" "$WORK/s_client.err" | tail -1 | grep -q "sbc-b.test" ||
  fail "the certificate in use changed after a refused reload"
cp "$WORK/server-b.pem" "$WORK/server.pem"
echo "reload: new connections got the new certificate, the established one kept working; a broken one was refused"

# 6. Hygiene, each refusal counted.
python3 - "$SIP_PORT" "$TLS_PORT" <<'PY' || fail "hygiene probes failed"
import os, socket, sys, time
tcp, tls = int(sys.argv[1]), int(sys.argv[2])
def closed_within(s, seconds):
    s.settimeout(seconds)
    try:
        while s.recv(4096):
            pass
        return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True
# CRLF keep-alive over TCP (RFC 5626 §3.5.1).
s = socket.create_connection(("127.0.0.1", tcp), 5)
s.sendall(b"\r\n\r\n")
s.settimeout(5)
assert s.recv(16) == b"\r\n", "no pong over TCP"
# Idle: closed after idle_timeout (6 s); half-open TLS (no ClientHello): after 2 s.
idle = s
half = socket.create_connection(("127.0.0.1", tls), 5)
t0 = time.monotonic()
assert closed_within(half, 10), "half-open TLS connection not closed"
assert time.monotonic() - t0 < 6, "half-open closed too late"
# Garbage TLS records.
g = socket.create_connection(("127.0.0.1", tls), 5)
g.sendall(b"\x16\x03\x01\x00\x10" + os.urandom(16) + b"GET / HTTP/1.0\r\n\r\n")
assert closed_within(g, 5), "garbage TLS not closed"
# Oversized message (Content-Length beyond max_message_bytes).
o = socket.create_connection(("127.0.0.1", tcp), 5)
o.sendall(b"OPTIONS sip:sbc SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKx\r\n"
          b"Content-Length: 100000\r\n\r\n" + b"x" * 1000)
assert closed_within(o, 5), "oversized message not closed"
assert closed_within(idle, 10), "idle TCP connection not closed"
# Per-source limit (8): from 127.0.0.9, the 9th and 10th connections are closed at once.
held = []
for _ in range(10):
    c = socket.socket()
    c.bind(("127.0.0.9", 0))
    c.connect(("127.0.0.1", tcp))
    held.append(c)
closed = sum(closed_within(c, 1.5) for c in held[8:])
assert closed == 2, f"per-source limit: {closed} of 2 closed"
for c in held:
    c.close()
# tcp_connect budget (burst 30, 5/s) from 127.0.0.7: later connects are refused.
for _ in range(60):
    c = socket.socket()
    c.bind(("127.0.0.7", 0))
    c.connect(("127.0.0.1", tcp))
    time.sleep(0.02)
    c.close()
print("probes ok")
PY
sleep 0.5
ctl stats >"$WORK/stats.txt"
for k in handshake_timeout idle_timeout oversized refused_per_source refused_dataplane keepalives_answered; do
  v=$(sed -n "s/^streams.$k=//p" "$WORK/stats.txt")
  [ "${v:-0}" -ge 1 ] || fail "streams.$k not counted: $(grep ^streams "$WORK/stats.txt")"
done
[ "$(sed -n 's/^streams.handshake_failed=//p' "$WORK/stats.txt")" -ge $((failed0 + 3)) ] ||
  fail "garbage TLS not counted: $(grep ^streams "$WORK/stats.txt")"
[ "$(sed -n 's/^streams.refused_per_source=//p' "$WORK/stats.txt")" -ge 2 ] || fail "per source"
[ "$(sed -n 's/^streams.refused_dataplane=//p' "$WORK/stats.txt")" -ge 10 ] ||
  fail "tcp_connect limit: $(grep -E '^(streams.refused|drop.rate_limited|drop.banned)' "$WORK/stats.txt")"
grep -E '^streams\.' "$WORK/stats.txt" | grep -v '=0$'
grep -q '^calls.active=0$' "$WORK/stats.txt" || fail "calls left: $(grep ^calls "$WORK/stats.txt")"
stop_sbc
echo "PASS"
