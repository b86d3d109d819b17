#!/usr/bin/env bash
# sbc replay end to end on generated captures (scripts/gen-capture): attacks are found, the
# report is byte-identical across runs and between pcap and pcapng, several files merge,
# --pcap-out is a readable capture of what passed (banned sources gone), --compare lists
# verdict changes, bad input is counted and never crashes, and the HTML report renders in
# headless Chromium with its chart and tables.
set -euo pipefail
SBC=$1
SRC=$2
POLICY=$SRC/tests/data/fraud/scenarios.toml
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

python3 "$SRC/scripts/gen-capture" "$work/a.pcap" --agents 100 --minutes 8 --rtp-ms 500 2>/dev/null
python3 "$SRC/scripts/gen-capture" "$work/a.pcapng" --agents 100 --minutes 8 --rtp-ms 500 2>/dev/null

"$SBC" replay "$work/a.pcap" --policy "$POLICY" --json "$work/1.json" --html "$work/r.html" \
  --pcap-out "$work/out.pcap" > "$work/summary.txt"
cat "$work/summary.txt"
"$SBC" replay "$work/a.pcap" --policy "$POLICY" --json "$work/2.json" --html "$work/r2.html" >/dev/null
cmp "$work/1.json" "$work/2.json" || fail "JSON differs between two runs"
cmp "$work/r.html" "$work/r2.html" || fail "HTML differs between two runs"
"$SBC" replay "$work/a.pcapng" --policy "$POLICY" --json "$work/ng.json" >/dev/null
diff <(grep -v '"path"' "$work/1.json") <(grep -v '"path"' "$work/ng.json") \
  || fail "pcapng report differs from pcap"

python3 - "$work/1.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
s = j["summary"]
def need(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)
need(s["rules_fired"].get("scanner-ua", 0) >= 1, "scanner not detected")
need(s["rules_fired"].get("brute-force", 0) >= 1, "registration brute force not detected")
need(s["rules_fired"].get("irsf-first", 0) >= 1, "IRSF calls not detected")
need("192.0.2.88" in s["blocked_sources"], "toll fraud source not blocked")
need(s["replay"].get("sip_over_tcp", 0) > 0, "no SIP framed from TCP")
need(s["capture"].get("reassembled", 0) > 0, "no fragments reassembled")
need(s["capture"].get("tcp_out_of_order", 0) > 0 and s["capture"].get("tcp_retransmitted", 0) > 0,
     "TCP reordering/retransmission not seen")
calls = {c["call_id"]: c for c in j["calls"]}
good = [c for c in j["calls"] if c["account"].startswith("10") and c["source"].startswith("198.51.100.")]
need(len(good) > 100, "too few normal calls tracked: %d" % len(good))
need(all(c["verdict"] == "allow" for c in good), "a normal agent's call was not allowed")
outcomes = {c["outcome"] for c in good}
need({"completed", "failed", "cancelled"} <= outcomes, "outcomes missing: %s" % outcomes)
need(any(c["duration_s"] and c["duration_s"] > 10 for c in good), "no call duration")
fraud = [c for c in j["calls"] if c["source"].startswith("192.0.2.88")]
need(fraud and fraud[0]["reasons"], "fraud call without reasons")
need(any(e.get("action") in ("block", "ban") for e in j["events"]), "no block/ban security event")
v6 = [c for c in j["calls"] if c["source"].startswith("[2001:db8") and c["verdict"] == "allow"]
need(v6, "no IPv6 call")
print("json checks ok: %d calls, %d events" % (len(j["calls"]), len(j["events"])))
PY

# --pcap-out: readable, and nothing from the banned toll-fraud source after its ban.
n_in=$(tcpdump -r "$work/a.pcap" -nn 2>/dev/null | wc -l)
n_out=$(tcpdump -r "$work/out.pcap" -nn 2>/dev/null | wc -l)
[ "$n_out" -gt 0 ] && [ "$n_out" -lt "$n_in" ] || fail "pcap-out has $n_out of $n_in packets"
scanner_in=$(tcpdump -r "$work/a.pcap" -nn 'src host 192.0.2.66' 2>/dev/null | wc -l)
scanner_out=$(tcpdump -r "$work/out.pcap" -nn 'src host 192.0.2.66' 2>/dev/null | wc -l)
[ "$scanner_out" -lt 5 ] && [ "$scanner_in" -gt 100 ] || fail "scanner packets passed: $scanner_out of $scanner_in"

# Several files merge by timestamp: the capture split in two (odd/even packets) gives the
# same calls and verdicts.
editcap -r "$work/a.pcap" "$work/early.pcap" 1-20000 2>/dev/null
editcap -r "$work/a.pcap" "$work/late.pcap" 20001-9999999 2>/dev/null
"$SBC" replay "$work/late.pcap" "$work/early.pcap" --policy "$POLICY" --json "$work/m.json" >/dev/null
python3 - "$work/1.json" "$work/m.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
va = [(c["call_id"], c["verdict"], c["outcome"]) for c in a["calls"]]
vb = [(c["call_id"], c["verdict"], c["outcome"]) for c in b["calls"]]
if va != vb:
    sys.exit("FAIL: merged files give other calls/verdicts")
print("merge ok")
PY

# --compare: a policy with higher block/ban thresholds changes the toll-fraud calls only.
sed 's/^block_threshold = 60/block_threshold = 99/; s/^ban_threshold = 90/ban_threshold = 100/' \
  "$POLICY" > "$work/lenient.toml"
"$SBC" replay "$work/a.pcap" --policy "$POLICY" --compare "$work/lenient.toml" \
  --json "$work/cmp.json" > "$work/cmp.txt"
python3 - "$work/cmp.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["comparison"]
d = c["differing_calls"]
if not d or any("192.0.2.88" not in x["call_id"] for x in d):
    sys.exit("FAIL: compare: %r" % d[:3])
if not c["rule_changes"]:
    sys.exit("FAIL: no rule changes")
print("compare ok: %d calls differ" % len(d))
PY

# Bad input: truncated file, garbage, unknown link type, absurd lengths; never a crash.
head -c 100000 "$work/a.pcap" > "$work/trunc.pcap"
"$SBC" replay "$work/trunc.pcap" --policy "$POLICY" --json "$work/t.json" >/dev/null \
  || fail "truncated capture not replayed"
grep -q '"error": "' "$work/t.json" || true
python3 - "$work" <<'PY'
import os, random, struct, sys
w = sys.argv[1]
r = random.Random(7)
data = open(os.path.join(w, "a.pcap"), "rb").read(200000)
b = bytearray(data)
for _ in range(400):
    b[r.randrange(24, len(b))] = r.randrange(256)
open(os.path.join(w, "corrupt.pcap"), "wb").write(b)
# unknown link type (DLT 147, user) and a record claiming 4 GB
hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147)
open(os.path.join(w, "linktype.pcap"), "wb").write(hdr + struct.pack("<IIII", 1, 0, 4, 4) + b"abcd")
hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
open(os.path.join(w, "absurd.pcap"), "wb").write(hdr + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 0xFFFFFFF0) + b"x" * 64)
open(os.path.join(w, "garbage.pcap"), "wb").write(bytes(r.randrange(256) for _ in range(5000)))
PY
for f in corrupt linktype absurd; do
  rc=0; timeout 20 "$SBC" replay "$work/$f.pcap" --policy "$POLICY" > "$work/$f.txt" 2>&1 || rc=$?
  [ $rc -le 1 ] || fail "$f.pcap: exit $rc"; echo "$f: exit $rc"
done
grep -q unknown_link_type "$work/linktype.txt" || fail "unknown link type not reported"
rc=0; "$SBC" replay "$work/garbage.pcap" --policy "$POLICY" >/dev/null 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "garbage file: exit $rc (want a clear error, 1)"

# HTML: self-contained, renders in headless Chromium with the chart and tables.
grep -qE 'src="http|href="http' "$work/r.html" && fail "HTML refers to the network"
if ! command -v chromium >/dev/null; then
  fail "chromium missing: apt-get install chromium"
fi
timeout 60 chromium --headless --no-sandbox --disable-gpu --dump-dom "file://$work/r.html" \
  > "$work/dom.html" 2>/dev/null
for id in 'id="timeline"' 'class="bar attempts"' 'id="top-sources"' 'id="flagged-accounts"' 'id="calls"'; do
  grep -q "$id" "$work/dom.html" || fail "rendered HTML lacks $id"
done
timeout 60 chromium --headless --no-sandbox --disable-gpu --window-size=1280,900 \
  --screenshot="$work/shot.png" "file://$work/r.html" >/dev/null 2>&1
[ -s "$work/shot.png" ] || fail "no screenshot"
[ -n "${SBC_REPLAY_SCREENSHOT:-}" ] && cp "$work/shot.png" "$SBC_REPLAY_SCREENSHOT"
echo "replay: all checks passed"
