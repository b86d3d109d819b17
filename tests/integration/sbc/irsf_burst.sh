#!/usr/bin/env bash
# An IRSF burst against `sbc run`: 25 INVITEs from account 5550 on 127.0.0.4 to +88216...
# (the call-center policy's irsf list). The first are answered 503, then the fraud score
# blocks them (403) and finally bans the source in the dataplane; the verdicts are JSON lines
# in the daemon log. tshark on lo checks what the SBC put on the wire.
#   irsf_burst.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45280
need sipp sip-tester
need tshark tshark
need python3 python3
write_config
# This test reads the fraud block's own answer (403): uniform answers toward strangers
# (docs/registrations.md, "Enumeration resistance") would make it the challenge.
sed -i 's/^realm = "external"$/realm = "external"\nenumeration_resistance = false/' "$WORK/sbc.toml"
start_sbc

tshark -i lo -f "udp port $SIP_PORT" -a duration:50 -w "$WORK/wire.pcapng" >"$WORK/tshark.log" 2>&1 &
TSHARK_PID=$!
PEER_PIDS+=("$TSHARK_PID")
for _ in $(seq 100); do grep -q "Capturing on" "$WORK/tshark.log" 2>/dev/null && break; sleep 0.1; done
grep -q "Capturing on" "$WORK/tshark.log" || fail "tshark did not start: $(cat "$WORK/tshark.log")"

# The dialed numbers walk the range one by one (sipp's injection file, one field per line).
# 2 per second: the policy's per-account INVITE limit (rate 2, burst 6) admits every one, so
# each is scored (faster, the front door refuses the excess with 403 before scoring).
{ echo SEQUENTIAL; for i in $(seq -w 1 25); do echo "+8821600100$i;"; done; } >"$WORK/numbers.csv"
(cd "$WORK" && timeout 45 sipp "127.0.0.1:$SIP_PORT" -nostdin -default_behaviors all,-abortunexp \
  -sf "$HERE/scenarios/irsf_invite.xml" -inf "$WORK/numbers.csv" -i 127.0.0.4 -p 45281 -r 2 -m 25 -timeout 30s \
  -recv_timeout 1000 -trace_stat -stf irsf.csv >"$WORK/sipp.out" 2>&1) || true
sleep 0.5
kill -INT "$TSHARK_PID"
wait "$TSHARK_PID" 2>/dev/null || true

bans=$(ctl bans)
echo "$bans"
grep -q '^127.0.0.4/32 origin=fraud ' <<<"$bans" || fail "IRSF source not banned: $bans"
[ "$(stat fraud.verdict.ban)" -ge 1 ] || fail "no ban verdict: $(ctl stats)"
[ "$(stat drop.banned)" -ge 1 ] || fail "nothing dropped after the ban: $(ctl stats)"

# The verdicts in the daemon log: JSON lines, the blocks name the irsf rule, one ban.
python3 - "$WORK/sbc.log" <<'PY' || fail "fraud events in the log"
import json, sys
events = [json.loads(l[l.index('{"'):]) for l in open(sys.argv[1]) if '{"event"' in l]
assert events, "no JSON event lines"
actions = [e["action"] for e in events]
print("fraud events:", " ".join(actions))
assert all(e["src"].startswith("127.0.0.4:") and e["account"] == "5550" for e in events)
assert all(e["to"].startswith("88216") for e in events), "callee not normalized to E.164"
assert "block" in actions and actions[-1] == "ban", actions
assert any(r["rule"] == "irsf-burst" for e in events for r in e["reasons"])
PY

# On the wire: every response comes from the listener, 503s first (no next hop is up), then
# 403s; never a 2xx;
# no response names an internal address (internal listener, media, next hop).
tshark -r "$WORK/wire.pcapng" -Y "sip.Status-Code" -T fields -E separator=' ' \
  -e ip.src -e udp.srcport -e ip.dst -e sip.Status-Code >"$WORK/responses.txt"
codes=$(awk '{print $4}' "$WORK/responses.txt" | tr '\n' ' ')
echo "responses on the wire: $codes"
awk '$1 != "127.0.0.1" || $2 != "'"$SIP_PORT"'" || $3 != "127.0.0.4" {bad=1} END {exit bad}' \
  "$WORK/responses.txt" || fail "response from or to an unexpected endpoint: $(cat "$WORK/responses.txt")"
python3 - "$codes" <<'PY' || fail "response sequence: $codes"
import sys
# 100 Trying comes from the transaction layer for every INVITE that reaches the B2BUA.
codes = [int(c) for c in sys.argv[1].split() if int(c) >= 200]
assert codes and codes[0] == 503, codes
assert 403 in codes, codes
first403 = codes.index(403)
assert all(c == 503 for c in codes[:first403]) and all(c == 403 for c in codes[first403:]), codes
assert not any(200 <= c < 300 for c in codes)
PY
tshark -r "$WORK/wire.pcapng" -Y "sip.Status-Code" -T fields -e sip.msg_hdr >"$WORK/headers.txt"
grep -q "Via: SIP/2.0/UDP 127.0.0.4:45281" "$WORK/headers.txt" || fail "no response headers decoded"
if grep -E '127\.0\.0\.(2|3)[^0-9]' "$WORK/headers.txt"; then fail "internal address in a response"; fi
invites=$(tshark -r "$WORK/wire.pcapng" -Y 'sip.Method == "INVITE"' | wc -l)
echo "INVITEs sent: $invites, answered: $(wc -l <"$WORK/responses.txt")"
stop_sbc
echo "irsf burst ok"
