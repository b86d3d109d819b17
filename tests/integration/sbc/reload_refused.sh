#!/usr/bin/env bash
# A reload is all or nothing: a policy that loads (valid TOML, valid policy) but that the fraud
# engine refuses is reloaded into a running `sbc run`. The reply says refused, by whom and why
# (file:line:column of the rule); the status keeps the old version and reports the refusal; the
# old rules still act (the call-center policy's deny-north-korea blocks an INVITE to +850,
# which the refused policy no longer denies). A last reload of the same edit without the
# offending rule is accepted and the new rules act, so the check above can tell them apart.
#   reload_refused.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45290
need python3 python3
cp -r "$ROOT/policy/examples" "$WORK/policy"
write_config
# This test reads the fraud block's own answer (403): uniform answers toward strangers
# (docs/registrations.md, "Enumeration resistance") would make it the challenge.
sed -i 's/^realm = "external"$/realm = "external"\nenumeration_resistance = false/' "$WORK/sbc.toml"
sed -i "s|$ROOT/policy/examples/|$WORK/policy/|" "$WORK/sbc.toml"
grep -q "$WORK/policy/callcenter.toml" "$WORK/sbc.toml" || fail "policy path not rewritten"
POLICY=$WORK/policy/callcenter.toml
start_sbc

field() { ctl status | sed -n "s/^$1=//p" | head -1; }
# One INVITE from 127.0.0.6 to NUMBER; prints the status code of the final answer (bounded).
invite() {
  python3 - "$SIP_PORT" "$1" "$2" <<'PY'
import socket, sys
port, number, n = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.6", 0))
s.settimeout(2.0)
lport = s.getsockname()[1]
msg = (f"INVITE sip:{number}@127.0.0.1:{port} SIP/2.0\r\n"
       f"Via: SIP/2.0/UDP 127.0.0.6:{lport};branch=z9hG4bK-refused-{n};rport\r\n"
       f"From: \"5551\" <sip:5551@127.0.0.1>;tag=t{n}\r\n"
       f"To: <sip:{number}@127.0.0.1>\r\n"
       f"Call-ID: refused-{n}@127.0.0.6\r\nCSeq: 1 INVITE\r\n"
       f"Contact: <sip:5551@127.0.0.6:{lport}>\r\nMax-Forwards: 70\r\n"
       f"Content-Length: 0\r\n\r\n")
s.sendto(msg.encode(), ("127.0.0.1", port))
for _ in range(5):  # skip provisional answers
    try:
        data = s.recv(65535).decode(errors="replace")
    except socket.timeout:
        print("timeout")
        sys.exit(0)
    code = data.split(" ", 2)[1]
    if not code.startswith("1"):
        print(code)
        sys.exit(0)
print("no-final")
PY
}

[ "$(field policy_version)" = 1 ] || fail "initial version"
hash1=$(field policy_hash)
[ "$(invite +8502123456 1)" = 403 ] || fail "the deny rule does not block +850 at start"
blocks=$(stat fraud.verdict.block)

# The edit: deny-north-korea now denies CU instead of KP, and a new rule counts more distinct
# destination countries than the engine can (TOML and policy are valid; the engine refuses it).
sed -i '/^id = "deny-north-korea"/,/^action/ s/^countries = \["KP"\]$/countries = ["CU"]/' "$POLICY"
grep -q '^countries = \["CU"\]$' "$POLICY" || fail "deny rule not edited"
cp "$POLICY" "$WORK/accepted.toml"
cat >>"$POLICY" <<'TOML'

[[fraud.rules]]
id = "too-many-countries"
feature = "distinct_destination_countries"
key = "account"
window = "1h"
op = ">="
threshold = 500
weight = 10
TOML
rule_line=$(grep -n '^id = "too-many-countries"' "$POLICY" | cut -d: -f1)
rule_line=$((rule_line - 1))
"$SBC" policy check "$POLICY" >/dev/null && fail "sbc policy check accepts the refused policy"

set +e
out=$(ctl reload)
rc=$?
set -e
echo "reload reply: $out"
[ "$rc" = 1 ] || fail "ctl reload exit code $rc on a refused reload"
echo "$out" | head -1 | grep -q "^refused version=1 errors=1 by=fraud_engine$" || fail "reload reply: $out"
echo "$out" | grep -q "^$POLICY:$rule_line:1: fraud engine: .*distinct-count thresholds above 127" ||
  fail "reload reply lacks the rule's position and the reason: $out"
[ "$(field policy_version)" = 1 ] || fail "version changed by a refused reload"
[ "$(field policy_hash)" = "$hash1" ] || fail "hash changed by a refused reload"
[ "$(field last_reload_result)" = "refused by fraud_engine (1 error)" ] ||
  fail "last result: $(field last_reload_result)"
ctl status | grep -q "^last_reload_error=$POLICY:$rule_line:1: fraud engine: " ||
  fail "status lacks the reason: $(ctl status)"
grep -q "policy reload refused by fraud_engine" "$WORK/sbc.log" || fail "refusal not logged"
# The old rules still act.
[ "$(invite +8502123457 2)" = 403 ] || fail "+850 no longer blocked after a refused reload"
[ "$(stat fraud.verdict.block)" -gt "$blocks" ] || fail "the block was not the fraud engine's"

# Same through SIGHUP: refused as well, the daemon keeps running.
kill -HUP "$SBC_PID"
for _ in $(seq 50); do [ "$(field reloads_failed)" = 2 ] && break; sleep 0.1; done
[ "$(field reloads_failed)" = 2 ] || fail "SIGHUP reload not counted as failed"
[ "$(field policy_version)" = 1 ] || fail "version changed by a refused SIGHUP reload"
kill -0 "$SBC_PID" || fail "daemon died"

# Without the offending rule the same edit is accepted: version 2, +850 is no longer denied.
cp "$WORK/accepted.toml" "$POLICY"
out=$(ctl reload) || fail "accepted reload: $out"
[ "$out" = "ok version=2" ] || fail "reload reply: $out"
[ "$(field last_reload_result)" = ok ] || fail "last result after the accepted reload"
code=$(invite +8502123458 3)
[ "$code" != 403 ] || fail "the accepted policy's rules do not act (+850 still blocked)"
echo "after the accepted reload +850 is answered $code"
stop_sbc
echo "PASS: a reload the fraud engine refuses changes nothing and says so"
