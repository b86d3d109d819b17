#!/usr/bin/env bash
# Policy and node keys in `sbc run`, live on loopback with sipp:
# - keys accepted but not enforced yet are reported with file:line:column (policy check,
#   --json, run --check, the daemon log);
# - `sbc sip hide --policy` applies the [topology] options;
# - `[rate_limits.register] per_account`: one account over its bucket gets 403 (counted
#   sip.refused_account_limit, not scored), another account from the same source does not;
# - `[scanners] action`: "block" answers 403 without a ban; after a reload to "ban" the
#   scanner's source is banned in the dataplane (origin=signaling) and then dropped.
#   policy_keys.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45300
need sipp sip-tester
need python3 python3
write_config
# This test reads the fraud block's own answer (403): uniform answers toward strangers
# (docs/registrations.md, "Enumeration resistance") would make it the challenge.
sed -i 's/^realm = "external"$/realm = "external"\nenumeration_resistance = false/' "$WORK/sbc.toml"
cat >"$WORK/keys.toml" <<'TOML'
[policy]
name = "keys-live"

[rate_limits.register]
per_account = { rate = 0.2, burst = 3 }

[scanners]
user_agents = ["friendly-scanner"]
action = "block"

[topology]
hide_topology = false
TOML
sed -i "s|^files = .*|files = [\"$WORK/keys.toml\"]|" "$WORK/sbc.toml"

# 1. Reported, not refused: policy check (text and JSON) and run --check.
"$SBC" policy check "$WORK/keys.toml" >"$WORK/check.out" || fail "policy check refused: $(cat "$WORK/check.out")"
grep -q "^$WORK/keys.toml:12:1: warning: 'topology.hide_topology' = false is accepted but not enforced yet" \
  "$WORK/check.out" || fail "policy check: no notice: $(cat "$WORK/check.out")"
grep -q "warning: 'rate_limits\|warning: 'scanners" "$WORK/check.out" && fail "an enforced key reported: $(cat "$WORK/check.out")"
"$SBC" policy check --json "$WORK/keys.toml" >"$WORK/check.json" || fail "policy check --json"
python3 - "$WORK/check.json" <<'PY' || fail "policy check --json notices: $(cat "$WORK/check.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ok"], r
n = r["results"][0]["notices"]
assert len(n) == 1 and n[0]["line"] == 12 and n[0]["column"] == 1, n
assert "'topology.hide_topology' = false is accepted but not enforced yet" in n[0]["message"], n
PY
"$SBC" run --config "$WORK/sbc.toml" --check >"$WORK/runcheck.out" 2>"$WORK/runcheck.err" ||
  fail "run --check refused: $(cat "$WORK/runcheck.err")"
grep -q "'metrics\." "$WORK/runcheck.err" && fail "[metrics] (enforced) reported: $(cat "$WORK/runcheck.err")"
for key in "'topology.hide_topology' = false"; do
  grep -q "warning: $key.* is accepted but not enforced yet" "$WORK/runcheck.err" ||
    fail "run --check does not report $key: $(cat "$WORK/runcheck.err")"
done
# TCP/TLS listeners and [tls] are enforced now: no notice for them.
grep -q "warning: 'tls\.\|warning: 'listeners\[1\].transport'" "$WORK/runcheck.err" &&
  fail "an enforced tls/listener key reported: $(cat "$WORK/runcheck.err")"
grep -q "^policy_version=1" "$WORK/runcheck.out" || fail "run --check status: $(cat "$WORK/runcheck.out")"
echo "notices: $(grep -c warning "$WORK/runcheck.err") in run --check"

# 2. The [topology] options offline: `sbc sip hide --policy` applies them (the same file that
# `sbc run` reports them from).
cat >"$WORK/topo.toml" <<'TOML'
[topology]
replace_call_id = true
strip_headers = ["Allow*"]
server_header = "edge"
reason_phrases = { 200 = "Fine" }
TOML
IN=$ROOT/tests/data/sip/topology/ok_200_internal.in.sip
hide() { "$SBC" sip hide "$IN" --external-ip 203.0.113.10 --relay-ip 203.0.113.20 --relay-port 40000 "$@" | tr -d '\r'; }
hide >"$WORK/plain.sip" || fail "sip hide"
hide --policy "$WORK/topo.toml" >"$WORK/topo.sip" || fail "sip hide --policy"
grep -q '^SIP/2.0 200 OK$' "$WORK/plain.sip" || fail "plain hide changed the reason: $(head -1 "$WORK/plain.sip")"
grep -q '^SIP/2.0 200 Fine$' "$WORK/topo.sip" || fail "reason_phrases not applied: $(cat "$WORK/topo.sip")"
grep -q '^Server: edge$' "$WORK/topo.sip" || fail "server_header not applied: $(cat "$WORK/topo.sip")"
grep -q '^Allow:' "$WORK/plain.sip" || fail "plain hide stripped Allow"
grep -q '^Allow:' "$WORK/topo.sip" && fail "strip_headers not applied: $(cat "$WORK/topo.sip")"
grep -q '^Call-ID: 0f3a4b5c6d7e@' "$WORK/plain.sip" || fail "plain hide replaced the Call-ID"
grep -q '^Call-ID: 0f3a4b5c6d7e' "$WORK/topo.sip" && fail "replace_call_id not applied: $(grep Call-ID "$WORK/topo.sip")"
grep -q '^Call-ID: [0-9a-f]\{16\}@203.0.113.10$' "$WORK/topo.sip" || fail "Call-ID form: $(grep Call-ID "$WORK/topo.sip")"
printf '[topology]\nreplace_call_id = "yes"\n' >"$WORK/bad.toml"
hide --policy "$WORK/bad.toml" >/dev/null 2>"$WORK/bad.err" && fail "sip hide took a bad policy"
grep -q "bad.toml:2:" "$WORK/bad.err" || fail "bad policy error position: $(cat "$WORK/bad.err")"

start_sbc
grep -q "warning: 'topology.hide_topology' = false is accepted but not enforced yet" "$WORK/sbc.log" ||
  fail "daemon log has no notice for the policy"
grep -q "warning: 'metrics\." "$WORK/sbc.log" && fail "daemon log reports [metrics] (enforced)"

requests() {  # requests NAME SOURCE_IP COUNT RATE "METHOD;ACCOUNT;UA"
  # sipp takes no keyword for the method: one scenario per method.
  local method=${5%%;*}
  sed "s/REGISTER/$method/g" "$HERE/scenarios/keyed_request.xml" >"$WORK/$1.xml"
  { echo SEQUENTIAL; for _ in $(seq "$3"); do echo "${5#*;};"; done; } >"$WORK/$1.csv"
  (cd "$WORK" && timeout 30 sipp "127.0.0.1:$SIP_PORT" -nostdin -default_behaviors all,-abortunexp \
    -sf "$WORK/$1.xml" -inf "$WORK/$1.csv" -i "$2" -p 45301 -r "$4" -m "$3" \
    -timeout 15s -recv_timeout 1000 >"$WORK/$1.out" 2>&1)
}

# 3. Per-account limit: 8 REGISTERs of account 2001 at 40/s: the burst of 3 passes (503),
# the rest is refused (403) and not scored. Account 2002 from the same source still passes.
requests acct1 127.0.0.6 8 40 "REGISTER;2001;live-test" || fail "sipp acct1: $(tail -5 "$WORK/acct1.out")"
refused=$(stat sip.refused_account_limit)
scored=$(stat sip.fraud_events)
echo "account 2001: refused=$refused scored=$scored"
[ "$refused" = 5 ] || fail "per-account refusals: $refused (want 5): $(ctl stats)"
[ "$scored" = 3 ] || fail "refused requests were scored: fraud_events=$scored"
[ "$(stat sip.answered_403)" = 5 ] || fail "403 count: $(ctl stats)"
requests acct2 127.0.0.6 2 40 "REGISTER;2002;live-test" || fail "sipp acct2"
[ "$(stat sip.refused_account_limit)" = 5 ] || fail "another account was refused: $(ctl stats)"
# OPTIONS has no per-account limit in this policy.
requests opts 127.0.0.6 6 40 "OPTIONS;2001;live-test" || fail "sipp opts"
[ "$(stat sip.refused_account_limit)" = 5 ] || fail "OPTIONS refused per account: $(ctl stats)"
grep -q '^account_limits.used=2$' <<<"$(ctl stats)" || fail "account table: $(ctl stats | grep account_limits)"

# 4. Scanner, action "block": 403, counted, no ban.
requests scan1 127.0.0.7 2 10 "OPTIONS;100;friendly-scanner" || fail "sipp scan1"
[ "$(stat sip.refused_scanner)" = 2 ] || fail "scanner not refused: $(ctl stats)"
[ "$(stat sip.scanner_bans_posted)" = 0 ] || fail "scanner banned with action block"
grep -q '^127.0.0.7/' <<<"$(ctl bans)" && fail "scanner banned with action block: $(ctl bans)"

# 5. Reload with action "ban": the next scanner request is refused and its source banned;
# what it sends afterwards is dropped by the dataplane.
sed -i 's/^action = "block"$/action = "ban"/' "$WORK/keys.toml"
ctl reload | grep -q '^ok' || fail "reload"
sleep 0.2
requests scan2 127.0.0.8 1 10 "OPTIONS;100;friendly-scanner" || fail "sipp scan2"
[ "$(stat sip.scanner_bans_posted)" = 1 ] || fail "scanner ban not posted: $(ctl stats)"
sleep 0.1
grep -q '^127.0.0.8/32 origin=signaling ' <<<"$(ctl bans)" || fail "scanner source not banned: $(ctl bans)"
grep -q "scanner ban: 127.0.0.8/32" "$WORK/sbc.log" || fail "no log line for the scanner ban"
before=$(stat drop.banned)
requests scan3 127.0.0.8 1 10 "OPTIONS;100;live-test" && fail "a banned source got an answer"
[ "$(stat drop.banned)" -gt "$before" ] || fail "banned source not dropped: $(ctl stats)"
stop_sbc
echo "policy keys live ok"
