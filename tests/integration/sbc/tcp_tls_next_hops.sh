#!/usr/bin/env bash
# Outgoing TCP and TLS through `sbc run` on loopback: a sipp UAC over TCP outside -> the SBC ->
# a next hop over TCP (a sipp UAS with -t t1), then over TLS (the same UAS behind stunnel4 in
# server mode, its certificate verified against the test CA with SNI = its name). The SBC opens
# the connections itself and reuses them; a TLS next hop whose certificate another CA signed
# is refused (counted) and the call fails over to the good one at once. tshark checks that the
# SBC's Via and Contact on each leg name that leg's transport and listener, and the leak check
# passes on the outside leg.
#   tcp_tls_next_hops.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11200
need sipp sip-tester
need openssl openssl
need stunnel4 stunnel4
need tshark tshark
EXT=127.0.0.1          # the SBC outside: UDP and TCP on 11200
IN=127.0.0.2           # the SBC inside: UDP 11201, TCP 11202, TLS 11203
UAS=127.0.0.3          # sipp UAS over TCP: 11210 (direct), 11211 (behind stunnel)
GOOD=127.0.0.4         # stunnel server, certificate of uas.test from the test CA
BAD=127.0.0.5          # stunnel server, certificate of uas.test from a foreign CA
UAC=127.0.0.6          # sipp UAC over TCP
IN_UDP=11201 IN_TCP=11202 IN_TLS=11203
UAS_DIRECT=11210 UAS_TLS_SIDE=11211
GOOD_PORT=11220 BAD_PORT=11221

cd "$WORK"
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1" 2>/dev/null; }
leaf() {  # NAME DNS CA
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext" 2>/dev/null
}
ca test-ca
ca foreign-ca
leaf sbc sbc.test test-ca
leaf uas uas.test test-ca
leaf fake uas.test foreign-ca
cd - >/dev/null

# config: $1 = the [[next_hops]] entries; health checks as $2 says.
configure() {
  write_config
  python3 - "$WORK" "$1" "$2" <<'PY'
import re, sys
work, hops, health = sys.argv[1:]
path = work + "/sbc.toml"
s = open(path).read()
s = re.sub(r'\[\[next_hops\]\].*?(?=\n\[health_check\])', hops.replace('\\', r'\\'), s, flags=re.S)
s = re.sub(r'(realm = "internal"\naddress = "127.0.0.2"\nport = )\d+', r'\g<1>11201', s)
s = s.replace('[tls]\nmin_version = "1.2"\n', f'''[[listeners]]
realm = "internal"
address = "127.0.0.2"
port = 11202
transport = "tcp"

[[listeners]]
realm = "internal"
address = "127.0.0.2"
port = 11203
transport = "tls"

[tls]
min_version = "1.2"
certificate_chain = "{work}/sbc.pem"
private_key = "{work}/sbc.key"
server_ca = "{work}/test-ca.pem"
''')
s = s.replace('[health_check]\nenabled = true', '[health_check]\nenabled = ' + health)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 21400').replace('port_max = 29999', 'port_max = 21999')
open(path, "w").write(s)
PY
  grep -q 'server_ca' "$WORK/sbc.toml" || fail "config not rewritten"
  grep -q "port = $IN_UDP" "$WORK/sbc.toml" || fail "internal port not rewritten"
}

tshark -i lo -q -w "$WORK/all.pcap" -f "tcp and portrange 11200-11299" >"$WORK/tshark.log" 2>&1 &
TSHARK_PID=$!
PEER_PIDS+=($TSHARK_PID)
for _ in $(seq 100); do grep -q "Capturing on" "$WORK/tshark.log" && break; sleep 0.1; done

uas() {  # PORT SCENARIO MEDIA_PORT
  (cd "$WORK" && exec timeout 120 sipp -nostdin -t t1 -sf "$2" -i $UAS -p "$1" -mi $UAS \
    -mp "$3" -rtp_echo -timeout 115s >"$WORK/uas-$1.out" 2>&1) &
  PEER_PIDS+=($!)
}

calls() {  # NAME LOCAL_PORT MEDIA_PORT N: sipp UAC over TCP, N calls must complete
  (cd "$WORK" && timeout 60 sipp "$EXT:$SIP_PORT" -nostdin -t t1 -sn uac -s 4402 -i $UAC \
    -p "$2" -mi $UAC -mp "$3" -r 5 -m "$4" -d 300 -timeout 50s -recv_timeout 10000 \
    -default_behaviors all,-abortunexp -trace_stat -stf "$1.csv" >"$WORK/$1.out" 2>&1) ||
    { cat "$WORK/$1.out"; fail "sipp $1 failed"; }
  local r
  r=$(python3 -c 'import csv,sys; r=list(csv.DictReader(open(sys.argv[1]),delimiter=";"))[-1]; print(r["SuccessfulCall(C)"], r["FailedCall(C)"])' "$WORK/$1.csv")
  [ "$r" = "$4 0" ] || fail "$1 calls (successful failed): $r"
}

# 1. A next hop over TCP, probed by OPTIONS over TCP: the SBC connects to it and reuses the
# connection for the probes, the INVITEs, ACKs and BYEs.
configure "[[next_hops]]
name = \"uas-tcp\"
address = \"$UAS\"
port = $UAS_DIRECT
transport = \"tcp\"
" true
uas $UAS_DIRECT "$HERE/scenarios/uas_call.xml" 21200
start_sbc
for _ in $(seq 150); do [ "$(stat calls.hops_up)" -ge 1 ] && break; sleep 0.1; done
[ "$(stat calls.hops_up)" -ge 1 ] || fail "TCP next hop never came up: $(ctl stats | grep -E '^(calls|streams)')"
calls tcp 11230 21000 5
ctl stats >"$WORK/stats1.txt"
conn=$(sed -n 's/^streams.connects=//p' "$WORK/stats1.txt")
[ "$conn" -ge 1 ] && [ "$conn" -le 2 ] || fail "TCP next hop: $conn connections opened (one expected, reused)"
[ "$(sed -n 's/^streams.reused=//p' "$WORK/stats1.txt")" -ge 15 ] || fail "the TCP connection was not reused"
grep -q '^calls.active=0$' "$WORK/stats1.txt" || fail "calls left after the TCP run"
echo "tcp next hop: 5 calls, $conn outgoing connection, $(sed -n 's/^streams.reused=//p' "$WORK/stats1.txt") messages on it reused"
stop_sbc

# 2. Next hops over TLS behind stunnel (server mode): a foreign-CA one (weight 1000, so nearly
# always tried first; health checks off so that it is tried) and the good one. Every call
# fails over from the first at once (its handshake fails), and completes over TLS.
start_stunnel "$GOOD:$GOOD_PORT" "$BAD:$BAD_PORT" <<EOF
[good]
accept = $GOOD:$GOOD_PORT
connect = $UAS:$UAS_TLS_SIDE
cert = $WORK/uas.pem
key = $WORK/uas.key
[bad]
accept = $BAD:$BAD_PORT
connect = $UAS:$UAS_TLS_SIDE
cert = $WORK/fake.pem
key = $WORK/fake.key
EOF
# The UAS behind stunnel names stunnel's TLS address in its Record-Route and Contact, as a TLS
# server would name itself.
sed "s|<sip:\[local_ip\]:\[local_port\];lr>|<sip:$GOOD:$GOOD_PORT;transport=tls;lr>|; s|<sip:uas@\[local_ip\]:\[local_port\]>|<sip:uas@$GOOD:$GOOD_PORT;transport=tls>|" \
  "$HERE/scenarios/uas_call.xml" >"$WORK/uas_tls.xml"
grep -q "transport=tls;lr" "$WORK/uas_tls.xml" || fail "TLS scenario not written"
uas $UAS_TLS_SIDE "$WORK/uas_tls.xml" 21300
configure "[[next_hops]]
name = \"uas-foreign-ca\"
address = \"$BAD\"
port = $BAD_PORT
transport = \"tls\"
server_name = \"uas.test\"
weight = 1000

[[next_hops]]
name = \"uas-tls\"
address = \"$GOOD\"
port = $GOOD_PORT
transport = \"tls\"
server_name = \"uas.test\"
weight = 1
" false
start_sbc
calls tls 11231 21100 4
ctl stats >"$WORK/stats2.txt"
refused=$(sed -n 's/^streams.server_cert_refused=//p' "$WORK/stats2.txt")
failovers=$(sed -n 's/^calls.failovers=//p' "$WORK/stats2.txt")
[ "$refused" -ge 1 ] || fail "the foreign-CA next hop was not refused: $(grep ^streams "$WORK/stats2.txt")"
[ "$failovers" -ge 1 ] || fail "no failover from the refused next hop"
[ "$(sed -n 's/^streams.connected=//p' "$WORK/stats2.txt")" -ge 1 ] || fail "no TLS connection established"
grep -q '^calls.active=0$' "$WORK/stats2.txt" || fail "calls left after the TLS run"
echo "tls next hop: 4 calls over TLS; the foreign-CA hop refused $refused times, $failovers failovers"
stop_sbc

kill -INT $TSHARK_PID
wait $TSHARK_PID 2>/dev/null || true

# 3. What each side saw: the SBC's Via and Contact name the transport and listener of that leg.
python3 - "$WORK/all.pcap" <<PY || fail "Via/Contact check"
import re, subprocess, sys
out = subprocess.run(["tshark", "-r", sys.argv[1], "-Y", "tcp.len > 0", "-T", "fields", "-E",
                      "separator=\t", "-e", "tcp.stream", "-e", "ip.src", "-e", "tcp.srcport",
                      "-e", "ip.dst", "-e", "tcp.dstport", "-e", "tcp.payload"],
                     check=True, capture_output=True, text=True).stdout
streams = {}
for line in out.splitlines():
    st, src, sp, dst, dp, payload = (line.split("\t") + [""] * 6)[:6]
    if not payload:
        continue
    key = (st, src, sp, dst, dp)
    streams[key] = streams.get(key, b"") + bytes.fromhex(payload.replace(":", ""))
msgs = []  # (src, dst, dport, text)
for (st, src, sp, dst, dp), data in streams.items():
    while data:
        data = data.lstrip(b"\r\n")
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        m = re.search(rb"\r\n(?:Content-Length|l)\s*:\s*(\d+)", head, re.I)
        n = int(m.group(1)) if m else 0
        msgs.append((src, dst, int(dp), (head + b"\r\n\r\n" + rest[:n]).decode("utf-8", "replace")))
        data = rest[n:]
def hdr(m, name):
    return [l.split(":", 1)[1].strip() for l in m.split("\r\n")[1:] if l.split(":", 1)[0].strip().lower() == name]
bad = []
def expect(what, sel, via_re, contact_re, minimum):
    found = [m for m in msgs if sel(m)]
    if len(found) < minimum:
        bad.append("%s: %d messages, at least %d expected" % (what, len(found), minimum))
    for src, dst, dp, t in found:
        first = t.split("\r\n", 1)[0]
        if via_re and not (len(hdr(t, "via")) == 1 and re.fullmatch(via_re, hdr(t, "via")[0].split(";")[0])):
            bad.append("%s: %s: Via %s" % (what, first, hdr(t, "via")))
        if contact_re and not any(re.search(contact_re, c) for c in hdr(t, "contact")):
            bad.append("%s: %s: Contact %s" % (what, first, hdr(t, "contact")))
    print("%s: %d messages checked" % (what, len(found)))
is_req = lambda t, meth: t.startswith(meth + " ")
# Inside over TCP: the SBC's requests to the UAS.
expect("inside tcp INVITE", lambda m: m[0] == "$IN" and m[2] == $UAS_DIRECT and is_req(m[3], "INVITE"),
       r"SIP/2\.0/TCP $IN:$IN_TCP", r"<sip:[0-9a-z]+@$IN:$IN_TCP;transport=tcp>", 5)
expect("inside tcp ACK/BYE", lambda m: m[0] == "$IN" and m[2] == $UAS_DIRECT and (is_req(m[3], "ACK") or is_req(m[3], "BYE")),
       r"SIP/2\.0/TCP $IN:$IN_TCP", None, 10)
expect("inside tcp OPTIONS", lambda m: m[0] == "$IN" and m[2] == $UAS_DIRECT and is_req(m[3], "OPTIONS"),
       r"SIP/2\.0/TCP $IN:$IN_TCP", None, 1)
# Inside over TLS: what stunnel hands the UAS in clear.
expect("inside tls INVITE", lambda m: m[2] == $UAS_TLS_SIDE and is_req(m[3], "INVITE"),
       r"SIP/2\.0/TLS $IN:$IN_TLS", r"<sip:[0-9a-z]+@$IN:$IN_TLS;transport=tls>", 4)
expect("inside tls ACK/BYE", lambda m: m[2] == $UAS_TLS_SIDE and (is_req(m[3], "ACK") or is_req(m[3], "BYE")),
       r"SIP/2\.0/TLS $IN:$IN_TLS", None, 8)
# Outside over TCP: the SBC's answers to the UAC name its external TCP listener.
expect("outside tcp 200 INVITE", lambda m: m[0] == "$EXT" and m[1] == "$UAC" and m[3].startswith("SIP/2.0 200") and "INVITE" in hdr(m[3], "cseq")[0],
       None, r"<sip:[0-9a-z]+@$EXT:$SIP_PORT;transport=tcp>", 9)
# Nothing went to the next hops over UDP (the capture is TCP; no UDP port of theirs is open),
# and the SBC's outgoing connections come from its internal address.
if any(m[0] != "$IN" and m[2] == $UAS_DIRECT for m in msgs):
    bad.append("a connection to the TCP next hop from another address than $IN")
for b in bad[:30]:
    print("BAD", b)
sys.exit(1 if bad else 0)
PY

# 4. Nothing of the inside on the outside leg (TCP).
python3 "$HERE/leak_check.py" "$WORK/all.pcap" --sbc $EXT --outside $UAC \
  --inside "ip.addr==$UAS || ip.addr==$GOOD || ip.addr==$BAD" \
  --forbid $IN --forbid $UAS --forbid $GOOD --forbid $BAD --forbid inside.lan \
  --forbid InternalPBX --forbid SIPpTag01 \
  --strip Server --strip User-Agent --strip Organization --strip Warning --min-messages 30 ||
  fail "the outside saw the inside"
echo "PASS"
