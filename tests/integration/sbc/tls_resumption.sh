#!/usr/bin/env bash
# TLS session resumption on the SBC's outgoing connections: a next hop over TLS behind stunnel4
# (server mode, its certificate from the test CA) that closes idle connections after a second,
# so that every OPTIONS probe (each 2 s) opens a new connection. The first makes a full
# handshake; the following ones offer the session the server gave and are resumed
# (`streams.resumed_outgoing`). Run twice: a server limited to TLS 1.2 (session ticket / id)
# and one on TLS 1.3 (post-handshake tickets).
#   tls_resumption.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11950
need openssl openssl
need stunnel4 stunnel4
IN=127.0.0.2       # the SBC inside: UDP 11951, TLS 11952
PEER=127.0.0.3     # the SIP answerer behind stunnel: 11960
TLS12=127.0.0.4    # stunnel, TLS 1.2 at most: 11961
TLS13=127.0.0.5    # stunnel, TLS 1.3: 11962

cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout test-ca.key -out test-ca.pem -days 2 -subj "/CN=test-ca" 2>/dev/null
for n in sbc:sbc.test uas:uas.test; do
  f=${n%%:*} dns=${n#*:}
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$f.key" \
    -out "$f.csr" -subj "/CN=$dns" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$dns" >"$f.ext"
  openssl x509 -req -in "$f.csr" -CA test-ca.pem -CAkey test-ca.key -CAcreateserial \
    -out "$f.pem" -days 2 -extfile "$f.ext" 2>/dev/null
done
cd - >/dev/null

python3 "$HERE/sip_answerer.py" $PEER 11960 "$WORK/answered.txt" 110 &
PEER_PIDS+=($!)
start_stunnel "$TLS12:11961" "$TLS13:11962" <<EOF2
TIMEOUTidle = 1
[tls12]
accept = $TLS12:11961
connect = $PEER:11960
cert = $WORK/uas.pem
key = $WORK/uas.key
sslVersionMax = TLSv1.2
[tls13]
accept = $TLS13:11962
connect = $PEER:11960
cert = $WORK/uas.pem
key = $WORK/uas.key
sslVersionMin = TLSv1.3
EOF2

configure() {  # ADDRESS PORT: one internal next hop over TLS
  write_config
  python3 - "$WORK" "$1" "$2" <<'PY'
import re, sys
work, addr, port = sys.argv[1:]
path = work + "/sbc.toml"
s = open(path).read()
s = re.sub(r'\[\[next_hops\]\].*?(?=\n\[health_check\])', f'''[[next_hops]]
name = "tls-hop"
address = "{addr}"
port = {port}
transport = "tls"
server_name = "uas.test"
''', s, flags=re.S)
s = re.sub(r'(realm = "internal"\naddress = "127.0.0.2"\nport = )\d+', r'\g<1>11951', s)
s = s.replace('[tls]\nmin_version = "1.2"\n', f'''[[listeners]]
realm = "internal"
address = "127.0.0.2"
port = 11952
transport = "tls"

[tls]
min_version = "1.2"
certificate_chain = "{work}/sbc.pem"
private_key = "{work}/sbc.key"
server_ca = "{work}/test-ca.pem"
''')
s = s.replace('interval = "5s"', 'interval = "2s"').replace('timeout = "2s"', 'timeout = "1s"')
s = s.replace('port_min = 20000', 'port_min = 26000').replace('port_max = 29999', 'port_max = 26099')
open(path, "w").write(s)
PY
  grep -q 'port = 11952' "$WORK/sbc.toml" || fail "config not rewritten"
}

# run NAME ADDRESS PORT: at least 3 probes, each on a new connection; prints "connects resumed"
run() {
  configure "$2" "$3"
  start_sbc
  local connects=0
  for _ in $(seq 200); do
    connects=$(stat streams.connects)
    [ "$connects" -ge 3 ] && [ "$(stat streams.outgoing_open)" = 0 ] && break
    sleep 0.1
  done
  ctl stats >"$WORK/stats-$1.txt"
  stop_sbc
  local answered resumed connected
  answered=$(sed -n 's/^calls.probes_answered=//p' "$WORK/stats-$1.txt")
  resumed=$(sed -n 's/^streams.resumed_outgoing=//p' "$WORK/stats-$1.txt")
  connected=$(sed -n 's/^streams.connected=//p' "$WORK/stats-$1.txt")
  [ "$connects" -ge 3 ] || fail "$1: $connects outgoing connections (3 expected: stunnel closes idle ones)"
  [ "$answered" -ge 3 ] || fail "$1: $answered probes answered over TLS"
  [ "$connected" -ge 3 ] || fail "$1: $connected handshakes completed"
  echo "$1: $connects connections, $connected handshakes, $resumed resumed, $answered probes answered"
  RESUMED=$resumed CONNECTED=$connected
}

run tls12 $TLS12 11961
[ "$RESUMED" -ge $((CONNECTED - 1)) ] || fail "TLS 1.2: $RESUMED of $CONNECTED handshakes resumed (all but the first expected)"
run tls13 $TLS13 11962
[ "$RESUMED" -ge $((CONNECTED - 1)) ] || fail "TLS 1.3: $RESUMED of $CONNECTED handshakes resumed (all but the first expected)"
echo "PASS"
