#!/usr/bin/env bash
# Structured logs and security events of `sbc run`, live on loopback:
# - the daemon log: text on stderr, JSON lines in [logging] file;
# - security events (a scanner hit and its ban, a ban and unban from the control socket, a
#   flood's rate-limit ban, policy reloads) as JSON lines in [events] file, rotated at
#   max_bytes, and POSTed to a webhook receiver started here;
# - a slow receiver: the bounded queue drops (counted) and SIP is still answered at once;
# - a receiver that is down: each event retried with backoff, then counted as failed.
#   security_events.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45710
need sipp sip-tester
need python3 python3
need curl curl
METRICS_PORT=45711
HOOK_PORT=45712
SLOW_PORT=45713
DOWN_PORT=45714   # nothing listens there
write_config
# base config: no next hop traffic needed; internal listener and media in our range.
python3 - "$WORK/sbc.toml" "$METRICS_PORT" <<'PY'
import re, sys
path, metrics = sys.argv[1:]
s = open(path).read()
s = re.sub(r'(address = "127.0.0.2"\nport = )\d+', r'\g<1>45715', s)
s = s.replace('port_min = 20000', 'port_min = 45780').replace('port_max = 29999', 'port_max = 45799')
s = s.replace('[metrics]\nenabled = false', '[metrics]\nenabled = true').replace('port = 9090', 'port = ' + metrics)
open(path, "w").write(s)
PY
cp "$WORK/sbc.toml" "$WORK/base.toml"
URL="http://127.0.0.1:$METRICS_PORT/metrics"
metric() { curl -sf "$URL" | awk -v m="$1" '$1 == m { print $2 }'; }
# wait_metric NAME MIN: bounded wait (20 s).
wait_metric() {
  local v=
  for _ in $(seq 100); do
    v=$(metric "$1")
    [ -n "$v" ] && [ "${v%.*}" -ge "$2" ] && return 0
    sleep 0.2
  done
  fail "$1 = '$v', expected >= $2"
}
# with_events TOML_LINES: the base config plus an [events] table and a JSON log file.
with_events() {
  cp "$WORK/base.toml" "$WORK/sbc.toml"
  sed -i 's|^level = "info"|level = "info"\nfile = "'"$WORK"'/sbc.jsonl"|' "$WORK/sbc.toml"
  printf '\n[events]\n%s\n' "$1" >>"$WORK/sbc.toml"
}
wait_metrics_up() {
  for _ in $(seq 100); do curl -sf "$URL" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "no /metrics"
}
scanner_hit() {  # one OPTIONS with a scanner User-Agent from 127.0.0.6
  python3 - "$SIP_PORT" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.6", 0))
p = s.getsockname()[1]
msg = (f"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.6:{p};branch=z9hG4bKscan1\r\n"
       f"From: <sip:100@127.0.0.6>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: scan-1\r\n"
       "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n")
s.sendto(msg.encode(), ("127.0.0.1", int(sys.argv[1])))
PY
}

# 1. A receiver that answers: every event in the file and at the receiver.
python3 "$HERE/webhook_receiver.py" "$HOOK_PORT" "$WORK/hook.jsonl" &
PEER_PIDS+=($!)
with_events "file = \"$WORK/events.jsonl\"
max_bytes = 4096
max_files = 3
webhook_url = \"http://127.0.0.1:$HOOK_PORT/sbc/events\""
start_sbc
wait_metrics_up
scanner_hit
ctl ban 192.0.2.7 60 >/dev/null
wait_metric 'sbc_security_events_total{kind="ban"}' 2
ctl unban 192.0.2.7 >/dev/null
wait_metric 'sbc_security_events_total{kind="unban"}' 1
for _ in $(seq 30); do ctl reload >/dev/null; done
(cd "$WORK" && timeout 20 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$HERE/scenarios/options.xml" \
  -i 127.0.0.5 -p 45716 -r 300 -m 600 -timeout 6s -recv_timeout 300 >"$WORK/flood.out" 2>&1) || true
wait_metric 'sbc_security_events_total{kind="ban"}' 3
wait_metric sbc_events_webhook_delivered_total 35
stop_sbc
python3 - "$WORK" <<'PY' || fail "events file / webhook"
import glob, json, os, sys
work = sys.argv[1]
files = sorted(glob.glob(work + "/events*.jsonl"))
assert len(files) >= 2, f"no rotation: {files}"
assert len(files) <= 3, f"more files than max_files: {files}"
for f in files:
    assert os.path.getsize(f) <= 4096 + 1024, (f, os.path.getsize(f))
events = [json.loads(l) for f in files for l in open(f)]
kinds = {}
for e in events:
    assert e["node"] == "sbc-demo" and e["ts"].endswith("Z"), e
    kinds.setdefault(e["kind"], []).append(e)
scan = kinds["scanner"][0]
assert scan["source"] == "127.0.0.6" and scan["signature"] == "friendly-scanner" and scan["action"] == "ban", scan
origins = {(b["prefix"], b["origin"]) for b in kinds["ban"]}
assert ("127.0.0.6/32", "signaling") in origins, origins
assert ("192.0.2.7/32", "control") in origins, origins
assert ("127.0.0.5/32", "rate_limit") in origins, origins
assert any(u["prefix"] == "192.0.2.7/32" for u in kinds["unban"]), kinds["unban"]
reloads = kinds["policy_reload"]
assert all(r["result"] == "ok" and r["version"] >= 2 for r in reloads), reloads[:2]
hook = [json.loads(l) for l in open(work + "/hook.jsonl")]
hk = {}
for e in hook:
    hk[e["kind"]] = hk.get(e["kind"], 0) + 1
assert hk.get("scanner") == 1 and hk.get("unban", 0) >= 1 and hk.get("policy_reload") == 30, hk
assert hk.get("ban", 0) >= 3, hk
log = [json.loads(l) for l in open(work + "/sbc.jsonl")]
assert any("policy reloaded" in l["msg"] for l in log), log[-3:]
assert all(l["level"] in ("trace", "debug", "info", "warning", "error", "critical") for l in log)
print(f"events: {len(events)} in {len(files)} rotated files, kinds {sorted(kinds)}; webhook got {len(hook)}; JSON log {len(log)} lines")
PY
grep -q "policy reloaded" "$WORK/sbc.log" || fail "no text log on stderr"
grep -q '^{"ts"' "$WORK/sbc.log" && fail "JSON on the terminal"

# 2. A slow receiver (2 s per event) and a queue of 2: events beyond it are dropped and
# counted; SIP is answered at once all along.
python3 "$HERE/webhook_receiver.py" "$SLOW_PORT" "$WORK/slow.jsonl" 2 &
PEER_PIDS+=($!)
rm -f "$WORK"/events*.jsonl
with_events "file = \"$WORK/events.jsonl\"
webhook_url = \"http://127.0.0.1:$SLOW_PORT/\"
webhook_queue = 2
webhook_timeout = \"5s\""
start_sbc
wait_metrics_up
for _ in $(seq 10); do ctl reload >/dev/null; done
wait_metric sbc_events_webhook_dropped_queue_full_total 6
t0=$(date +%s%N)
(cd "$WORK" && timeout 10 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$HERE/scenarios/options.xml" \
  -i 127.0.0.1 -p 45717 -m 1 -timeout 5s -recv_timeout 2000 >"$WORK/opt.out" 2>&1) ||
  { cat "$WORK/opt.out"; fail "OPTIONS not answered while the webhook is slow"; }
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "slow webhook: $(metric sbc_events_webhook_dropped_queue_full_total) of 10 dropped (queue 2), OPTIONS answered in ${ms} ms"
[ "$(wc -l <"$WORK/events.jsonl")" -ge 10 ] || fail "events file lost events behind the slow webhook"
stop_sbc

# 3. A receiver that is down: 2 retries with backoff, then failed; the file has everything.
rm -f "$WORK"/events*.jsonl
with_events "file = \"$WORK/events.jsonl\"
webhook_url = \"http://127.0.0.1:$DOWN_PORT/\"
webhook_retries = 2
webhook_backoff = \"50ms\"
webhook_timeout = \"200ms\""
start_sbc
wait_metrics_up
for _ in $(seq 3); do ctl reload >/dev/null; done
wait_metric sbc_events_webhook_failed_total 3
[ "$(metric sbc_events_webhook_retries_total)" = "6" ] || fail "retries: $(metric sbc_events_webhook_retries_total)"
[ "$(metric sbc_events_webhook_delivered_total)" = "0" ] || fail "delivered to nobody?"
[ "$(wc -l <"$WORK/events.jsonl")" -eq 3 ] || fail "events file: $(cat "$WORK/events.jsonl")"
echo "down webhook: 3 events failed after 2 retries each; all 3 in the file"
stop_sbc
echo "PASS"
