#!/usr/bin/env bash
# Calls through `sbc run` on loopback: a sipp UAC outside (127.0.0.1) places calls to the SBC's
# external listener; the SBC forwards them as its own dialogs to the next hop, a sipp UAS on
# 127.0.0.3 that answers with SDP and echoes Record-Route as an internal proxy does. Checks:
# every call completes (INVITE, 180, 200, ACK, BYE both ways); the outside never sees an inside
# address, host name, product or Record-Route; the SDP the UAC gets points at the SBC's relay;
# media streams are anchored and freed with the calls; a call with no next hop up gets 503.
#   calls_sipp.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45400
need sipp sip-tester
UAS_PORT=45401
write_config
python3 - "$WORK/sbc.toml" "$UAS_PORT" <<'PY'
import re, sys
path, uas = sys.argv[1], sys.argv[2]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + uas, s, flags=re.S)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
# Relay ports of its own, apart from other tests' daemons.
s = s.replace('port_min = 20000', 'port_min = 30000').replace('port_max = 29999', 'port_max = 30999')
open(path, "w").write(s)
PY
grep -q "port = $UAS_PORT" "$WORK/sbc.toml" || fail "next hop port not rewritten"

# 1. No next hop up yet (nothing listens on 127.0.0.3): a call gets 503 at once.
start_sbc
(cd "$WORK" && timeout 20 sipp "127.0.0.1:$SIP_PORT" -nostdin -sn uac -s 4401 -i 127.0.0.1 \
  -p 45402 -m 1 -timeout 10s -recv_timeout 5000 -trace_msg -message_file nohop.msg \
  >"$WORK/nohop.out" 2>&1) || true
grep -q "SIP/2.0 503" "$WORK/nohop.msg" || { cat "$WORK/nohop.out"; fail "no 503 without a next hop"; }
[ "$(stat calls.no_next_hop)" -ge 1 ] || fail "calls.no_next_hop: $(ctl stats)"

# 2. The inside comes up: the SBC's probes find it within a second or two.
(cd "$WORK" && exec timeout 60 sipp -nostdin -sf "$HERE/scenarios/uas_call.xml" -i 127.0.0.3 \
  -p "$UAS_PORT" -mi 127.0.0.3 -mp 44400 -rtp_echo -timeout 50s >"$WORK/uas.out" 2>&1) &
PEER_PIDS+=($!)
for _ in $(seq 50); do
  [ "$(stat calls.hops_up)" -ge 1 ] && break
  sleep 0.1
done
[ "$(stat calls.hops_up)" -ge 1 ] || fail "next hop never came up: $(ctl stats)"

# 3. Ten calls at 3/s, 1 s each, BYE from the caller (one untrusted source: its ACKs and BYEs
# stay within the shipped policy's per-source budget for requests other than INVITE/REGISTER,
# 10/s with a burst of 15).
(cd "$WORK" && timeout 40 sipp "127.0.0.1:$SIP_PORT" -nostdin -sn uac -s 4402 -i 127.0.0.1 \
  -p 45403 -mi 127.0.0.1 -mp 44500 -r 3 -m 10 -d 1000 -timeout 30s -recv_timeout 10000 \
  -default_behaviors all,-abortunexp -trace_msg -message_file uac.msg -trace_stat -stf uac.csv \
  >"$WORK/uac.out" 2>&1) || { cat "$WORK/uac.out"; fail "sipp UAC failed (exit $?)"; }
result=$(python3 - "$WORK/uac.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter=';'))
print(rows[-1]["SuccessfulCall(C)"], rows[-1]["FailedCall(C)"])
PY
)
[ "$result" = "10 0" ] || fail "calls (successful failed): $result"
echo "calls: 10 placed, 10 completed through the SBC"

# What the outside saw: nothing of the inside.
for leak in 127.0.0.2 127.0.0.3 inside.lan InternalPBX Record-Route SIPpTag01 "$UAS_PORT"; do
  if grep -q -- "$leak" "$WORK/uac.msg"; then
    grep -n -- "$leak" "$WORK/uac.msg" | head -5
    fail "the outside saw '$leak'"
  fi
done
grep -q "c=IN IP4 127.0.0.1" "$WORK/uac.msg" || fail "the UAC's SDP does not point at the relay"
echo "leaks: none of 127.0.0.2, 127.0.0.3, inside.lan, InternalPBX, Record-Route, inside tags"

ctl stats >"$WORK/stats.txt"
grep -q '^calls.calls_answered=10$' "$WORK/stats.txt" || fail "answered: $(grep ^calls "$WORK/stats.txt")"
grep -q '^calls.calls_ended=10$' "$WORK/stats.txt" || fail "ended: $(grep ^calls "$WORK/stats.txt")"
grep -q '^calls.active=0$' "$WORK/stats.txt" || fail "calls left: $(grep ^calls "$WORK/stats.txt")"
grep -q '^media.calls_anchored=0$' "$WORK/stats.txt" || fail "media left: $(grep ^media "$WORK/stats.txt")"
[ "$(sed -n 's/^calls.sdp_rewritten=//p' "$WORK/stats.txt")" -ge 20 ] || fail "SDP not anchored"
grep -E '^(calls\.(calls_offered|calls_answered|calls_ended|sdp_rewritten|probes_answered)|transactions\.(server_transactions|client_transactions))=' "$WORK/stats.txt"

# 4. RTP both ways through the relay: two calls play a G.711 recording (236 packets) at the
# far end, which echoes every packet back; the relay must carry each packet both ways.
mkdir -p "$WORK/pcap"
ln -s /usr/share/sip-tester/g711a.pcap /usr/share/sip-tester/dtmf_2833_1.pcap "$WORK/pcap/"
relayed_before=$(stat pipeline.relayed)
(cd "$WORK" && timeout 40 sipp "127.0.0.1:$SIP_PORT" -nostdin -sn uac_pcap -s 4403 -i 127.0.0.1 \
  -p 45405 -mi 127.0.0.1 -mp 44600 -r 2 -m 2 -timeout 30s -recv_timeout 10000 \
  -default_behaviors all,-abortunexp -trace_stat -stf rtp.csv >"$WORK/rtp.out" 2>&1) ||
  { cat "$WORK/rtp.out"; fail "sipp RTP calls failed (exit $?)"; }
# What the two callers sent: every packet of the two recordings each call plays.
sent=$(python3 - "$WORK/pcap/g711a.pcap" "$WORK/pcap/dtmf_2833_1.pcap" <<'PY'
import struct, sys
n = 0
for path in sys.argv[1:]:
    d = open(path, "rb").read()
    off = 24
    while off + 16 <= len(d):
        off += 16 + struct.unpack("<I", d[off + 8:off + 12])[0]
        n += 1
print(2 * n)
PY
)
relayed=$(( $(stat pipeline.relayed) - relayed_before ))
echo "rtp: the caller sent $sent packets, the relay carried $relayed (both directions)"
[ "${sent:-0}" -ge 400 ] || fail "too few RTP packets sent: $sent"
[ "$relayed" -ge $(( sent * 2 * 99 / 100 )) ] || fail "relay carried $relayed of $((sent * 2)) RTP packets"

# 5. A forged BYE for a dialog that does not exist: 481, nothing goes inside.
before=$(stat transactions.client_transactions)
cat >"$WORK/forged.xml" <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="forged BYE">
  <send>
    <![CDATA[

      BYE sip:nobody@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:x@[local_ip]>;tag=forged1
      To: <sip:y@[remote_ip]>;tag=guessedtag
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="481"/>
</scenario>
XML
(cd "$WORK" && timeout 20 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$WORK/forged.xml" -i 127.0.0.1 \
  -p 45404 -m 1 -timeout 10s >"$WORK/forged.out" 2>&1) || { cat "$WORK/forged.out"; fail "no 481"; }
[ "$(stat calls.unknown_dialog)" -ge 1 ] || fail "unknown_dialog not counted"
# Only probes may have gone inside since.
echo "forged BYE: 481, counted"
stop_sbc
echo "PASS"
