#!/usr/bin/env bash
# Replay of the SBC's own traffic: calls placed through `sbc run` on loopback (a sipp UAC
# outside, a sipp UAS as the inside next hop, as in calls_sipp.sh) are captured with tcpdump on
# lo (only this test's SIP ports), then `sbc replay` runs on that capture with the same node
# configuration and policy. Checks: the report has exactly the calls the UAC placed (its Call-IDs)
# and the SBC's own legs toward the next hop, each answered and completed with the 1 s
# duration sipp held it and verdict allow; no security event, no verdict other than allow, no
# malformed record; a second replay gives a byte-identical JSON. The UAC is on 127.0.0.4, apart
# from the SBC's addresses, so that replay tells the directions apart as it does by address.
#   calls_replay.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45310
need sipp sip-tester
need tcpdump tcpdump
UAS_PORT=45311
INTERNAL_PORT=$((SIP_PORT + 1000))
CALLS=4
write_config
python3 - "$WORK/sbc.toml" "$UAS_PORT" <<'PY'
import re, sys
path, uas = sys.argv[1], sys.argv[2]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + uas, s, flags=re.S)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
open(path, "w").write(s)
PY
grep -q "port = $UAS_PORT" "$WORK/sbc.toml" || fail "next hop port not rewritten"
POLICY=$(python3 - "$WORK/sbc.toml" <<'PY'
import re, sys
m = re.search(r'^\[policy\]\s*\nfiles = \["([^"]+)"\]', open(sys.argv[1]).read(), re.M)
print(m.group(1) if m else "")
PY
)
[ -f "$POLICY" ] || fail "no policy file in the node configuration ($POLICY)"

# The capture: both legs (outside <-> the external listener, the internal listener <-> inside).
tcpdump -i lo -n -U --immediate-mode -w "$WORK/calls.pcap" \
  "udp and (port $SIP_PORT or port $INTERNAL_PORT)" 2>"$WORK/tcpdump.err" &
TCPDUMP_PID=$!
PEER_PIDS+=("$TCPDUMP_PID")
for _ in $(seq 50); do
  grep -q "listening on" "$WORK/tcpdump.err" && break
  sleep 0.1
done
grep -q "listening on" "$WORK/tcpdump.err" || fail "tcpdump did not start: $(cat "$WORK/tcpdump.err")"

(cd "$WORK" && exec timeout 60 sipp -nostdin -sf "$HERE/scenarios/uas_call.xml" -i 127.0.0.3 \
  -p "$UAS_PORT" -mi 127.0.0.3 -mp 46200 -timeout 50s >"$WORK/uas.out" 2>&1) &
PEER_PIDS+=($!)
start_sbc
for _ in $(seq 50); do
  [ "$(stat calls.hops_up)" -ge 1 ] && break
  sleep 0.1
done
[ "$(stat calls.hops_up)" -ge 1 ] || fail "next hop never came up: $(ctl stats)"

# Calls of 1 s each at 4/s, BYE from the caller.
(cd "$WORK" && timeout 40 sipp "127.0.0.1:$SIP_PORT" -nostdin -sn uac -s 4402 -i 127.0.0.4 \
  -p 45313 -mi 127.0.0.4 -mp 47200 -r 4 -m "$CALLS" -d 1000 -timeout 30s -recv_timeout 10000 \
  -default_behaviors all,-abortunexp -trace_msg -message_file uac.msg -trace_stat -stf uac.csv \
  >"$WORK/uac.out" 2>&1) || { cat "$WORK/uac.out"; fail "sipp UAC failed (exit $?)"; }
answered=$(stat calls.calls_answered)
ended=$(stat calls.calls_ended)
[ "$answered" = "$CALLS" ] && [ "$ended" = "$CALLS" ] ||
  fail "the SBC answered $answered and ended $ended of $CALLS calls"
stop_sbc
# tcpdump hands each packet over at once (--immediate-mode) and writes it (-U); SIGINT closes
# the file.
kill -INT "$TCPDUMP_PID"
wait "$TCPDUMP_PID" || true
n=$(tcpdump -r "$WORK/calls.pcap" -nn 2>/dev/null | wc -l)
[ "$n" -ge $((CALLS * 10)) ] || fail "capture has only $n packets"
echo "captured $n packets of $CALLS calls"

# The UAC's Call-IDs, as sipp sent them.
grep -i '^Call-ID:' "$WORK/uac.msg" | sed 's/^[^:]*:[[:space:]]*//; s/\r$//' | sort -u \
  >"$WORK/uac_callids.txt"
[ "$(wc -l <"$WORK/uac_callids.txt")" -eq "$CALLS" ] || fail "UAC Call-IDs: $(cat "$WORK/uac_callids.txt")"

replay() {
  "$SBC" replay "$WORK/calls.pcap" --policy "$POLICY" --config "$WORK/sbc.toml" --no-progress \
    --json "$1" >"$1.txt" 2>&1 || { cat "$1.txt"; fail "sbc replay failed"; }
}
replay "$WORK/1.json"
replay "$WORK/2.json"
cmp "$WORK/1.json" "$WORK/2.json" || fail "the JSON differs between two replays"
echo "two replays: byte-identical JSON"

python3 - "$WORK/1.json" "$WORK/uac_callids.txt" "$CALLS" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
uac = set(open(sys.argv[2]).read().split())
n = int(sys.argv[3])
def need(cond, what):
    if not cond:
        print(json.dumps({k: j["summary"][k] for k in ("replay", "capture", "observer", "verdicts")
                          if k in j["summary"]}, indent=1)[:3000])
        print(json.dumps(j["calls"], indent=1)[:3000])
        sys.exit("FAIL: " + what)
outside = [c for c in j["calls"] if c["call_id"] in uac]
# The SBC's own dialogs toward the next hop, from its internal address (one per call).
inside = [c for c in j["calls"] if c["source"].startswith("127.0.0.2:")]
need(len(outside) == n, "report has %d of the UAC's %d calls" % (len(outside), n))
need(len(inside) == n, "report has %d inside legs for %d calls" % (len(inside), n))
need(len(j["calls"]) == 2 * n, "report has %d calls, expected %d" % (len(j["calls"]), 2 * n))
for c in outside + inside:
    if c in outside:
        need(c["source"].startswith("127.0.0.4:"), "call %s from %s" % (c["call_id"], c["source"]))
    need(c["answered"] and c["ended"], "call %s not answered and ended" % c["call_id"])
    need(c["outcome"] == "completed" and c["end"] == "answered",
         "call %s outcome %s end %s" % (c["call_id"], c["outcome"], c["end"]))
    # sipp holds each call 1 s before its BYE.
    need(c["duration_s"] is not None and 0.9 <= c["duration_s"] < 10,
         "call %s duration %s" % (c["call_id"], c["duration_s"]))
    need(c["verdict"] == "allow", "call %s verdict %s" % (c["call_id"], c["verdict"]))
need(all(c["verdict"] == "allow" for c in j["calls"]), "a call with a verdict other than allow")
verdicts = {k: v for k, v in j["summary"]["verdicts"].items() if v and k != "allow"}
need(not verdicts, "verdicts other than allow: %s" % verdicts)
need(not j["events"], "security events: %s" % j["events"][:3])
need(not j["summary"]["malformed"], "malformed records: %s" % j["summary"]["malformed"])
print("report: %d calls (%d from the UAC, %d inside legs), all completed, allowed, durations %s s"
      % (len(j["calls"]), len(outside), len(inside), sorted(c["duration_s"] for c in outside)))
PY
echo "PASS"
