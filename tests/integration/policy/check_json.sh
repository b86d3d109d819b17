#!/usr/bin/env bash
# `sbc policy check --json` for CI: exit code and structure, on a broken and a good policy.
# usage: check_json.sh SBC_BINARY POLICY_TEST_DATA_DIR EXAMPLES_DIR
set -euo pipefail
SBC=$1
DATA=$2
EXAMPLES=$3
command -v python3 >/dev/null || { echo "FAIL: python3 missing (apt-get install python3)"; exit 1; }
work=$(mktemp -d /tmp/sbc-check-json.XXXXXX)
trap 'rm -rf "$work"' EXIT
set +e
"$SBC" policy check --json "$DATA/errors.toml" >"$work/bad.json"
rc=$?
set -e
[ "$rc" = 1 ] || { echo "FAIL: exit code $rc on a broken policy"; exit 1; }
expected=$(grep -o "ERR " "$DATA/errors.toml" | wc -l)
python3 - "$expected" "$work/bad.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[2]))
assert doc["ok"] is False, doc
res = doc["results"][0]
assert res["ok"] is False
errs = res["errors"]
assert len(errs) == int(sys.argv[1]), (len(errs), sys.argv[1])
for e in errs:
    assert e["file"].endswith("errors.toml") and e["line"] > 0 and e["column"] > 0 and e["message"], e
PY
"$SBC" policy check --json --separately "$EXAMPLES/callcenter.toml" "$EXAMPLES/lab.toml" \
  >"$work/good.json"
python3 - "$work/good.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["ok"] is True, doc
assert [r["ok"] for r in doc["results"]] == [True, True]
cc = doc["results"][0]["summary"]
assert cc["prefix_lists"] == 3 and cc["fraud_rules"] == 14, cc
PY
echo "PASS: --json reports every error with file/line/column and exits 1; good policies exit 0"
