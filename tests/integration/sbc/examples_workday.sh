#!/usr/bin/env bash
# Every shipped example policy on a generated working day of a 100-agent call center
# (scripts/gen-calls --day --attacks): no legitimate event is flagged, blocked or banned, not
# even in observe mode's "would" verdict; with the call-center example every attack mixed in
# is stopped. No daemon and no network: `sbc policy test` on the day's events.
#   examples_workday.sh SBC_BINARY REPO_ROOT
set -euo pipefail
SBC=$1
ROOT=$2
command -v python3 >/dev/null ||
  { echo "FAIL: python3 is missing: install it with 'apt-get install -y python3'"; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The call center dials national numbers under its French [numbering]; under the other
# examples' numbering plans (the carrier's is British) the same day is written in E.164.
"$ROOT/scripts/gen-calls" --day --attacks --seed 3 >"$WORK/day.jsonl"
"$ROOT/scripts/gen-calls" --day --attacks --seed 3 --e164 >"$WORK/day-e164.jsonl"
status=0
for example in callcenter carrier-trunk lab scanners; do
  day="$WORK/day.jsonl"
  [ "$example" = callcenter ] || day="$WORK/day-e164.jsonl"
  "$SBC" policy test "$ROOT/policy/examples/$example.toml" --calls "$day" --json \
    >"$WORK/$example.jsonl" 2>"$WORK/$example.err" || {
    echo "FAIL: $example: sbc policy test exited $? ($(head -3 "$WORK/$example.err"))"
    status=1
    continue
  }
  python3 - "$example" "$day" "$WORK/$example.jsonl" <<'PY' || status=1
import json, sys
example, events_file, verdicts_file = sys.argv[1:]
events = {i + 1: json.loads(l) for i, l in enumerate(open(events_file))}
out = [json.loads(l) for l in open(verdicts_file)]
summary = out.pop()
assert summary["event"] == "summary", summary
problems = [v for v in out if v.get("event") in ("rejected", "warning")]
if problems:
    print("FAIL: %s: %d input lines rejected or warned, first: %s" % (example, len(problems), problems[0]))
    sys.exit(1)
tags = {}
for v in out:
    # Joined to the input by line and id, not by order.
    e = events[v["line"]]
    assert e["id"] == v["id"], (e, v)
    tag = e["id"].rsplit("-", 1)[0]
    t = tags.setdefault(tag, {"events": 0, "stopped": 0, "not_allowed": []})
    t["events"] += 1
    if v["action"] in ("block", "ban"):
        t["stopped"] += 1
    if v["action"] != "allow" or v["shadow_action"] != "allow":
        t["not_allowed"].append(v)
legit = tags.pop("legit")
ok = True
print("%s: %d legitimate events scored, %d not allowed; attacks: %s" % (
    example, legit["events"], len(legit["not_allowed"]),
    ", ".join("%s %d/%d stopped" % (k, t["stopped"], t["events"]) for k, t in sorted(tags.items()))))
for v in legit["not_allowed"][:5]:
    print("  legit line %d %s: %s (would %s) %s" % (v["line"], v["id"], v["action"], v["shadow_action"],
          [r["rule"] for r in v.get("reasons", [])]))
if legit["not_allowed"]:
    print("FAIL: %s: legitimate traffic was flagged or blocked" % example)
    ok = False
if example == "callcenter":
    expected = {"scanner", "brute-force", "user-sweep", "irsf", "stolen-supervisor"}
    missed = sorted(k for k in expected if tags.get(k, {"stopped": 0})["stopped"] == 0)
    if missed:
        print("FAIL: callcenter: attacks not stopped: " + ", ".join(missed))
        ok = False
    # The offices' shared addresses are never banned.
    office = [b for b in summary["bans"] if b["src"].startswith("192.0.2.")]
    if office:
        print("FAIL: callcenter: an office NAT address was banned: %s" % office)
        ok = False
sys.exit(0 if ok else 1)
PY
done
exit $status
