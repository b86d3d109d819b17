#!/usr/bin/env bash
# `sbc run` on loopback with sipp: a flood from 127.0.0.2 is rate limited and banned by the
# dataplane, and a legitimate low-rate client on 127.0.0.3 gets a final response (503 until
# signaling exists) for every REGISTER and OPTIONS and is not banned.
#   live_sipp.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45260
need sipp sip-tester
write_config
# The policy from a copy the test edits (with the files it includes), for the reloads at the
# end.
cp -r "$ROOT/policy/examples" "$WORK/policy"
sed -i "s|$ROOT/policy/examples/|$WORK/policy/|" "$WORK/sbc.toml"
grep -q "$WORK/policy/callcenter.toml" "$WORK/sbc.toml" || fail "policy path not rewritten"
start_sbc
grep -q "SIP listener udp 127.0.0.1:$SIP_PORT open" "$WORK/sbc.log" || fail "listener not open"

sipp_run() {  # sipp_run NAME ARGS... (bounded: -m and -timeout)
  local name=$1; shift
  (cd "$WORK" && timeout 30 sipp "127.0.0.1:$SIP_PORT" -nostdin -default_behaviors all,-abortunexp \
    -timeout 15s -recv_timeout 1000 -trace_stat -stf "$name.csv" "$@" >"$WORK/$name.out" 2>&1)
}

# 1. Flood: 600 OPTIONS at 300/s from one source (policy: 10/s, burst 15, ban after 5 denials).
sipp_run flood -sf "$HERE/scenarios/options.xml" -i 127.0.0.2 -p 45261 -r 300 -m 600 || true
limited=$(stat drop.rate_limited)
banned=$(stat drop.banned)
[ "${limited:-0}" -gt 0 ] || fail "flood not rate limited: $(ctl stats)"
bans=$(ctl bans)
grep -q '^127.0.0.2/32 origin=rate_limit ' <<<"$bans" || fail "flood source not banned: $bans"
echo "flood: rate_limited=$limited banned_drops=$banned"

# 2. A legitimate client at 1 call/s (REGISTER + OPTIONS each): every request answered (the
# policy's per-account REGISTER limit is 1/s, burst 5).
sipp_run legit -sf "$HERE/scenarios/register_options.xml" -i 127.0.0.3 -p 45262 -r 1 -m 9 ||
  { cat "$WORK/legit.out"; fail "legitimate client did not get every answer (sipp exit $?)"; }
bans=$(ctl bans)
grep -q '^127.0.0.3/' <<<"$bans" && fail "legitimate client banned: $bans"
[ "$(stat sip.method.REGISTER)" -ge 9 ] || fail "REGISTER count: $(ctl stats)"
ok=$(python3 - "$WORK/legit.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter=';'))
last = rows[-1]
print(last["SuccessfulCall(C)"], last["FailedCall(C)"])
PY
)
[ "$ok" = "9 0" ] || fail "sipp statistics (successful failed): $ok"
echo "legit: 9 calls, 18 requests, every one answered; stats:"
ctl stats | grep -E '^(pipeline.to_signaling|drop.rate_limited|drop.banned|sip.method.(OPTIONS|REGISTER)|sip.answered)='
# A reload with the same fraud rules keeps the engine and its state; the bans stay.
ctl reload | grep -q '^ok' || fail "reload"
sleep 0.1
[ "$(stat sip.engine_rebuilt)" = 0 ] || fail "fraud engine rebuilt by an unchanged reload"
grep -q '^127.0.0.2/32 ' <<<"$(ctl bans)" || fail "ban lost on reload"

# 3. Retuning a threshold keeps the engine's state. Two calls of account 5550 to IRSF
# numbers stay under irsf-burst (>= 3 in 10m); with the threshold lowered to 2 in place, the
# third call fires it with all three counted (a rebuilt engine would count 1: allowed).
irsf_calls() {  # irsf_calls NAME FIRST COUNT
  { echo SEQUENTIAL; for i in $(seq "$2" $(($2 + $3 - 1))); do echo "+8821600200$i;"; done; } \
    >"$WORK/$1.csv"
  (cd "$WORK" && timeout 30 sipp "127.0.0.1:$SIP_PORT" -nostdin -default_behaviors all,-abortunexp \
    -sf "$HERE/scenarios/irsf_invite.xml" -inf "$WORK/$1.csv" -i 127.0.0.5 -p 45263 -r 5 -m "$3" \
    -timeout 15s -recv_timeout 1000 >"$WORK/$1.out" 2>&1) || true
}
irsf_events() {  # JSON event lines naming irsf-burst, as "action:value" words
  python3 - "$WORK/sbc.log" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if '{"event"' not in l:
        continue
    e = json.loads(l[l.index('{"'):])
    for r in e["reasons"]:
        if r["rule"] == "irsf-burst":
            print("%s:%g" % (e["action"], r["value"]))
PY
}
irsf_calls irsf-before 1 2
[ "$(stat sip.method.INVITE)" -ge 2 ] || fail "IRSF INVITEs not received: $(ctl stats)"
[ -z "$(irsf_events)" ] || fail "irsf-burst fired before the reload: $(irsf_events)"
sed -i '/^id = "irsf-burst"/,/^weight/ s/^threshold = 3$/threshold = 2/' "$WORK/policy/callcenter.toml"
grep -q '^threshold = 2$' "$WORK/policy/callcenter.toml" || fail "threshold not edited"
ctl reload | grep -q '^ok' || fail "reload with a new threshold"
sleep 0.1
[ "$(stat sip.engine_reconfigured)" = 1 ] || fail "threshold change not applied in place: $(ctl stats)"
[ "$(stat sip.engine_rebuilt)" = 0 ] || fail "fraud engine rebuilt for a threshold change"
grep -q "fraud rules updated in place, state kept" "$WORK/sbc.log" || fail "no log line for the in-place update"
irsf_calls irsf-after 3 1
events=$(irsf_events)
echo "irsf-burst after the threshold reload: $events"
[ "$events" = "flag:3" ] || [ "$events" = "block:3" ] ||
  fail "the third IRSF call was not scored with the two before the reload: '$events'"
grep -q '^127.0.0.2/32 ' <<<"$(ctl bans)" || fail "ban lost on the threshold reload"
stop_sbc
echo "live sipp ok"
