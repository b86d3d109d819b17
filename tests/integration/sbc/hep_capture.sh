#!/usr/bin/env bash
# HEPv3 export of both legs of calls through `sbc run`: a sipp UAC outside (127.0.0.1) calls a
# sipp UAS inside (127.0.0.3); the SBC sends every SIP message it receives and sends to a HEP
# collector on 127.0.0.1 (a python receiver that decodes HEP), while tshark captures the same
# packets on lo and dissects them as HEP (hep.lua: Debian 12's tshark has no HEP dissector)
# with Wireshark's own SIP dissector for the payload. Checks: each call's two legs carry their
# real addresses and are tied by one correlation id (the caller's Call-ID); a request the front
# door answers itself (a scanner's OPTIONS, 403) is captured with its answer; nothing is dropped.
#   hep_capture.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45920
need sipp sip-tester
need tshark tshark
UAS_PORT=45921
UAC_PORT=45922
HEP_PORT=45990
write_config
python3 - "$WORK/sbc.toml" "$UAS_PORT" "$HEP_PORT" <<'PY'
import re, sys
path, uas, hep = sys.argv[1], sys.argv[2], sys.argv[3]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + uas, s, flags=re.S)
s = s.replace('port = 46920', 'port = 45960')  # the internal listener, in our port range
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 40400').replace('port_max = 29999', 'port_max = 40599')
s += '\n[hep]\nenabled = true\naddress = "127.0.0.1"\nport = %s\ncapture_id = 2026\n' % hep
open(path, "w").write(s)
PY
grep -q "port = 45960" "$WORK/sbc.toml" || fail "internal port not rewritten"

python3 "$HERE/hep_receiver.py" 127.0.0.1 "$HEP_PORT" 90 "$WORK/hep.jsonl" &
RECEIVER=$!
PEER_PIDS+=($RECEIVER)
tshark -i lo -f "udp dst port $HEP_PORT" -w "$WORK/hep.pcapng" -q 2>"$WORK/tshark.err" &
TSHARK=$!
PEER_PIDS+=($TSHARK)
for _ in $(seq 100); do grep -q "Capturing on" "$WORK/tshark.err" && break; sleep 0.1; done
grep -q "Capturing on" "$WORK/tshark.err" || fail "tshark did not start: $(cat "$WORK/tshark.err")"

(cd "$WORK" && exec timeout 60 sipp -nostdin -sf "$HERE/scenarios/uas_call.xml" -i 127.0.0.3 \
  -p "$UAS_PORT" -mi 127.0.0.3 -mp 40900 -timeout 50s >"$WORK/uas.out" 2>&1) &
PEER_PIDS+=($!)
t_start=$(date +%s)
start_sbc
for _ in $(seq 100); do [ "$(stat calls.hops_up)" -ge 1 ] && break; sleep 0.1; done
[ "$(stat calls.hops_up)" -ge 1 ] || fail "next hop never came up: $(ctl stats)"
(cd "$WORK" && timeout 40 sipp "127.0.0.1:$SIP_PORT" -nostdin -sn uac -s 6001 -i 127.0.0.1 \
  -p "$UAC_PORT" -mi 127.0.0.1 -mp 40920 -r 5 -m 3 -d 500 -timeout 30s -recv_timeout 10000 \
  -default_behaviors all,-abortunexp -trace_stat -stf uac.csv >"$WORK/uac.out" 2>&1) ||
  { cat "$WORK/uac.out"; fail "sipp UAC failed (exit $?)"; }
for _ in $(seq 50); do [ "$(stat calls.active)" = 0 ] && break; sleep 0.1; done
# A request the front door answers itself (a scanner's OPTIONS: 403, and a ban): captured too,
# with its answer.
python3 - "$SIP_PORT" <<'PY' || fail "no 403 for the scanner's OPTIONS"
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.7", 45923))
s.settimeout(5)
msg = ("OPTIONS sip:100@127.0.0.1:%d SIP/2.0\r\n"
       "Via: SIP/2.0/UDP 127.0.0.7:45923;branch=z9hG4bK-scan-1;rport\r\n"
       "From: <sip:100@127.0.0.7>;tag=scan1\r\nTo: <sip:100@127.0.0.1>\r\n"
       "Call-ID: hep-scan-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
       "User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n") % port
s.sendto(msg.encode(), ("127.0.0.1", port))
data, _ = s.recvfrom(65535)
assert data.startswith(b"SIP/2.0 403"), data[:80]
PY
for _ in $(seq 50); do [ "$(stat hep.sent)" = "$(stat hep.captured)" ] && break; sleep 0.1; done
ctl stats | grep '^hep\.' | tee "$WORK/hep_stats.txt"
grep -q '^hep.dropped_queue_full=0$' "$WORK/hep_stats.txt" || fail "HEP messages dropped"
grep -q '^hep.send_failed=0$' "$WORK/hep_stats.txt" || fail "HEP sends failed"
sent=$(sed -n 's/^hep.sent=//p' "$WORK/hep_stats.txt")
[ "$sent" -ge 30 ] || fail "hep.sent=$sent: 3 calls are at least 30 messages"
stop_sbc  # the exporter sends what is queued before the daemon exits
t_end=$(date +%s)
sleep 1
kill "$TSHARK" "$RECEIVER"
wait "$TSHARK" "$RECEIVER" 2>/dev/null || true

python3 - "$WORK/hep.jsonl" "$SIP_PORT" "$UAS_PORT" "$UAC_PORT" "$t_start" "$t_end" <<'PY' || fail "HEP content"
import json, sys, collections
path, sip_port, uas_port, uac_port, t0, t1 = sys.argv[1], *map(int, sys.argv[2:])
pk = [json.loads(l) for l in open(path)]
assert pk, "no HEP packet received"
bad = [p for p in pk if "error" in p]
assert not bad, bad[:3]
outside = {("127.0.0.1", sip_port), ("127.0.0.1", uac_port)}
inside = {("127.0.0.2", 45960), ("127.0.0.3", uas_port)}
calls = collections.defaultdict(lambda: {"ext": [], "int": [], "ext_ids": set(), "int_ids": set()})
scan = []
for p in pk:
    assert p["family"] == 2 and p["proto"] == 17 and p["proto_type"] == 1, p
    assert p["capture_id"] == 2026, p
    assert t0 - 1 <= p["time_sec"] <= t1 + 1 and 0 <= p["time_usec"] < 1000000, p
    ends = {(p["src_ip"], p["src_port"]), (p["dst_ip"], p["dst_port"])}
    lines = p["payload"].split("\r\n")
    first = lines[0]
    hdr = {}
    for l in lines[1:]:
        if not l:
            break
        name, _, value = l.partition(":")
        hdr.setdefault({"i": "call-id"}.get(name.strip().lower(), name.strip().lower()), value.strip())
    call_id = hdr["call-id"]
    if call_id == "hep-scan-1":
        assert ends == {("127.0.0.7", 45923), ("127.0.0.1", sip_port)}, p
        assert p["correlation_id"] == call_id, p
        scan.append(first)
        continue
    if hdr["cseq"].split()[-1] == "OPTIONS":
        assert ends == inside, p  # health probes of the next hop
        continue
    c = calls[p["correlation_id"]]
    if ends == outside:
        c["ext"].append(first); c["ext_ids"].add(call_id)
    elif ends == inside:
        c["int"].append(first); c["int_ids"].add(call_id)
    else:
        raise AssertionError("a message between unexpected ends: %s" % (ends,))
assert len(calls) == 3, "calls by correlation id: %d" % len(calls)
assert sorted(scan) == ["OPTIONS sip:100@127.0.0.1:%d SIP/2.0" % sip_port, "SIP/2.0 403 Forbidden"], scan
for corr, c in calls.items():
    # Leg by leg: the caller's Call-ID outside (the correlation id), another one inside.
    assert c["ext_ids"] == {corr}, (corr, c["ext_ids"])
    assert len(c["int_ids"]) == 1 and corr not in c["int_ids"], (corr, c["int_ids"])
    for leg in ("ext", "int"):
        lines = c[leg]
        for want in ("INVITE ", "ACK ", "BYE ", "SIP/2.0 200", "SIP/2.0 180"):
            assert any(l.startswith(want) for l in lines), (corr, leg, want, lines)
print("hep: %d packets, 3 calls, each with both legs under one correlation id; the front door's own 403 with its request" % len(pk))
PY
received=$(wc -l <"$WORK/hep.jsonl")
[ "$received" -ge "$sent" ] || fail "the collector got $received of $sent HEP packets"

# tshark: the same packets as HEP, SIP inside decoded by Wireshark's SIP dissector.
tshark -r "$WORK/hep.pcapng" -X lua_script:"$HERE/hep.lua" -d "udp.port==$HEP_PORT,hep" \
  -T fields -E separator=';' -e hep.correlation_id -e hep.src_ip -e hep.src_port -e hep.dst_ip \
  -e hep.dst_port -e hep.capture_id -e sip.Method -e sip.Status-Code -e sip.Call-ID \
  >"$WORK/tshark.txt" 2>"$WORK/tshark2.err" || fail "tshark -r: $(cat "$WORK/tshark2.err")"
python3 - "$WORK/tshark.txt" "$received" <<'PY' || fail "tshark's view"
import sys, collections
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
assert len(rows) == int(sys.argv[2]), "tshark saw %d HEP packets, the receiver %s" % (len(rows), sys.argv[2])
by = collections.defaultdict(set)
for corr, src, sport, dst, dport, capid, method, status, callid in rows:
    assert capid == "2026", capid
    assert method or status, "SIP not dissected inside HEP"
    if method == "OPTIONS" or not corr:
        continue
    by[corr].add((src, callid, method or status))
calls = {c: v for c, v in by.items() if any(m == "INVITE" for _, _, m in v)}
assert len(calls) == 3, calls.keys()
for corr, v in calls.items():
    ids = {cid for _, cid, _ in v}
    assert len(ids) == 2 and corr in ids, (corr, ids)          # both legs, one correlation id
    assert {"127.0.0.1", "127.0.0.2", "127.0.0.3"} <= {s for s, _, _ in v}, v
print("tshark: %d HEP packets dissected, SIP inside, 3 calls with both legs correlated" % len(rows))
PY
echo "hep: the collector received $received packets (sbc counted $sent sent before stopping)"
echo "PASS"
