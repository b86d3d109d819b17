#!/usr/bin/env bash
# A policy that loads but exceeds a fraud engine limit fails `sbc policy check` (text and
# --json) and `sbc run --check`, at the file:line:column of the offending rule.
# usage: check_engine_limits.sh SBC_BINARY POLICY_TEST_DATA_DIR
set -euo pipefail
SBC=$1
DATA=$2
POLICY=$DATA/engine_limit.toml
work=$(mktemp -d /tmp/sbc-check-limits.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
line=$(grep -n '^  \[\[fraud.rules\]\]$' "$POLICY" | cut -d: -f1)
[ -n "$line" ] || fail "test data lacks the indented rule"
want="$POLICY:$line:3: fraud engine: rule 'too-many-destinations': distinct-count thresholds above 127"

set +e
"$SBC" policy check "$POLICY" >"$work/check.out" 2>&1
rc=$?
set -e
cat "$work/check.out"
[ "$rc" = 1 ] || fail "sbc policy check exit code $rc"
grep -qF "$want" "$work/check.out" || fail "no '$want'"
grep -q "^1 error$" "$work/check.out" || fail "error count"

set +e
"$SBC" policy check --json "$POLICY" >"$work/check.json"
rc=$?
set -e
[ "$rc" = 1 ] || fail "sbc policy check --json exit code $rc"
python3 - "$work/check.json" "$line" <<'PY' || fail "json: $(cat "$work/check.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["ok"] is False
e = doc["results"][0]["errors"]
assert len(e) == 1 and e[0]["line"] == int(sys.argv[2]) and e[0]["column"] == 3, e
assert "distinct-count" in e[0]["message"], e
PY

cat >"$work/sbc.toml" <<CFG
[node]
name = "limits"
[control]
socket = "$work/ctl.sock"
[policy]
files = ["$POLICY"]
CFG
set +e
"$SBC" run --config "$work/sbc.toml" --check >"$work/run.out" 2>&1
rc=$?
set -e
cat "$work/run.out"
[ "$rc" = 1 ] || fail "sbc run --check exit code $rc"
grep -qF "$want" "$work/run.out" || fail "sbc run --check lacks '$want'"
[ ! -e "$work/ctl.sock" ] || fail "control socket opened"

# Within the limit the same policy passes.
sed 's/threshold = 1000/threshold = 127/' "$POLICY" >"$work/within.toml"
"$SBC" policy check "$work/within.toml" >/dev/null || fail "a policy within the limits fails"
echo "PASS: engine limits refused at check time with file:line:column"
