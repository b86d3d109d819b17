#!/usr/bin/env bash
# Calls in `sbc ctl`, drain, SIGTERM, SIGHUP and the control socket's permissions, on loopback
# with sipp: a UAC outside (127.0.0.1) calls through the SBC to a sipp UAS on 127.0.0.3.
#  1. `calls` lists the calls in progress, `call show` gives each leg's real addresses, `call
#     hangup` sends BYE on both legs (the caller and the callee each answer 200).
#  2. `drain` during a 10-s call: a new call gets 503 with the configured Retry-After, the call in progress
#     finishes (the caller's BYE), then the daemon exits 0 on its own.
#  3. SIGHUP reloads the policy; SIGTERM drains: the call left is hung up at drain_timeout and
#     the daemon exits 0.
#  4. Permissions: a second user is refused by SO_PEERCRED when the mode lets it connect, cannot
#     connect under mode 0660 outside the group, and is served once in the group.
#   ops_calls_drain.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45900
need sipp sip-tester
need runuser util-linux
need useradd passwd
UAS_PORT=45901
write_config
python3 - "$WORK/sbc.toml" "$UAS_PORT" <<'PY'
import re, sys
path, uas = sys.argv[1], sys.argv[2]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + uas, s, flags=re.S)
s = s.replace('port = 46900', 'port = 45950')  # the internal listener, in our port range
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 40000').replace('port_max = 29999', 'port_max = 40399')
s = re.sub(r'(?m)^mode = .*$', 'mode = 0o660', s)
s = re.sub(r'(?m)^drain_timeout = .*$', 'drain_timeout = "3s"', s)
s = re.sub(r'(?m)^drain_retry_after = .*$', 'drain_retry_after = 17', s)
open(path, "w").write(s)
PY
grep -q "port = 45950" "$WORK/sbc.toml" || fail "internal port not rewritten"
grep -q "drain_retry_after = 17" "$WORK/sbc.toml" || fail "[control] not rewritten"

start_uas() {
  (cd "$WORK" && exec timeout 90 sipp -nostdin -sf "$HERE/scenarios/uas_call.xml" -i 127.0.0.3 \
    -p "$UAS_PORT" -mi 127.0.0.3 -mp 40800 -timeout 80s >"$WORK/uas.out" 2>&1) &
  PEER_PIDS+=($!)
}
wait_hop_up() {
  for _ in $(seq 100); do
    [ "$(stat calls.hops_up)" -ge 1 ] && return 0
    sleep 0.1
  done
  fail "next hop never came up: $(ctl stats)"
}
wait_calls() {  # wait_calls N: until N calls are answered (bounded)
  for _ in $(seq 150); do
    [ "$(ctl calls | grep -c 'state=answered')" -ge "$1" ] && return 0
    sleep 0.1
  done
  fail "expected $1 answered calls: $(ctl calls)"
}
wait_exit() {  # wait_exit SECONDS: the daemon ends by itself with status 0
  for _ in $(seq $(($1 * 10))); do
    kill -0 "$SBC_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$SBC_PID" 2>/dev/null && fail "daemon still running after $1 s"
  local rc=0
  wait "$SBC_PID" || rc=$?
  SBC_PID=
  [ "$rc" = 0 ] || fail "daemon exited with $rc"
}
sipp_ok() {  # sipp_ok CSV SUCCESSFUL FAILED
  local r
  r=$(python3 - "$1" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter=';'))
print(rows[-1]["SuccessfulCall(C)"], rows[-1]["FailedCall(C)"])
PY
)
  [ "$r" = "$2 $3" ] || fail "sipp $1 (successful failed): $r, expected $2 $3"
}

start_uas
start_sbc
wait_hop_up

# 1. Two calls held until the SBC hangs them up.
(cd "$WORK" && exec timeout 60 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$HERE/scenarios/uac_wait_bye.xml" \
  -s 5001 -i 127.0.0.1 -p 45902 -mi 127.0.0.1 -mp 40600 -r 10 -m 2 -timeout 50s \
  -trace_stat -stf hold.csv -trace_msg -message_file hold.msg >"$WORK/hold.out" 2>&1) &
UAC=$!
wait_calls 2
ctl calls >"$WORK/calls.txt"
cat "$WORK/calls.txt"
grep -q '^calls=2$' "$WORK/calls.txt" || fail "calls list: $(cat "$WORK/calls.txt")"
ids=$(sed -n 's/^call=\([0-9]*\) .*/\1/p' "$WORK/calls.txt")
[ "$(echo "$ids" | wc -w)" = 2 ] || fail "call ids: $ids"
first=$(echo "$ids" | head -1)
ctl call show "$first" >"$WORK/show.txt" || fail "call show: $(cat "$WORK/show.txt")"
cat "$WORK/show.txt"
grep -q '^state=answered$' "$WORK/show.txt" || fail "show: not answered"
grep -q '^callee=5001$' "$WORK/show.txt" || fail "show: callee"
grep -q '^leg0.remote=127.0.0.1:45902$' "$WORK/show.txt" || fail "show: caller's address"
grep -q "^leg1.remote=127.0.0.3:$UAS_PORT$" "$WORK/show.txt" || fail "show: callee's address"
grep -q "^leg0.local=127.0.0.1:$SIP_PORT$" "$WORK/show.txt" || fail "show: external listener"
grep -q '^leg1.local=127.0.0.2:45950$' "$WORK/show.txt" || fail "show: internal listener"
grep -q '^media_streams=1$' "$WORK/show.txt" || fail "show: media"
ctl call show 999999 >/dev/null && fail "show of an unknown call succeeded"
ctl call bogus 1 >/dev/null && fail "a bad call command succeeded"
for id in $ids; do ctl call hangup "$id" | grep -q "^ok call=$id ended" || fail "hangup $id"; done
ctl call hangup "$first" >/dev/null && fail "hangup of an ended call succeeded"
wait "$UAC" || { cat "$WORK/hold.out"; fail "sipp UAC (hangup) exit $?"; }
sipp_ok "$WORK/hold.csv" 2 0
[ "$(grep -c '^BYE ' "$WORK/hold.msg")" -ge 2 ] || fail "the caller got no BYE"
for _ in $(seq 50); do [ "$(stat calls.active)" = 0 ] && break; sleep 0.1; done
[ "$(stat calls.active)" = 0 ] || fail "calls left after hangup: $(ctl calls)"
[ "$(stat calls.calls_ended)" = 2 ] || fail "calls ended: $(stat calls.calls_ended)"
echo "calls: listed, shown, hung up (BYE both legs, 200 from both parties)"

# 2. Drain: one 10-second call in progress, a new call refused, then the daemon leaves.
(cd "$WORK" && exec timeout 60 sipp "127.0.0.1:$SIP_PORT" -nostdin -sn uac -s 5002 -i 127.0.0.1 \
  -p 45903 -mi 127.0.0.1 -mp 40620 -m 1 -d 10000 -timeout 50s -default_behaviors all,-abortunexp \
  -trace_stat -stf long.csv >"$WORK/long.out" 2>&1) &
UAC=$!
wait_calls 1
ctl drain 30 >"$WORK/drain.txt"
grep -q '^ok draining calls=1 ' "$WORK/drain.txt" || fail "drain: $(cat "$WORK/drain.txt")"
ctl status | grep -q '^state=draining$' || fail "status during drain: $(ctl status)"
(cd "$WORK" && timeout 20 sipp "127.0.0.1:$SIP_PORT" -nostdin -sn uac -s 5003 -i 127.0.0.1 \
  -p 45904 -m 1 -timeout 10s -recv_timeout 5000 -trace_msg -message_file refused.msg \
  >"$WORK/refused.out" 2>&1) || true
grep -q "SIP/2.0 503" "$WORK/refused.msg" || fail "no 503 during drain"
grep -q "Retry-After: 17" "$WORK/refused.msg" || fail "no Retry-After: 17 on the 503"
[ "$(stat sip.refused_draining)" -ge 1 ] || fail "refused_draining not counted"
wait "$UAC" || { cat "$WORK/long.out"; fail "the call in progress did not finish (exit $?)"; }
sipp_ok "$WORK/long.csv" 1 0
wait_exit 10
grep -q "drained: no call in progress" "$WORK/sbc.log" || fail "no drain end in the log"
echo "drain: new call 503 (Retry-After 17), the call in progress finished, daemon exited 0"

# 3. SIGHUP reloads; SIGTERM drains, the call left is hung up after drain_timeout (3 s).
start_sbc
wait_hop_up
before=$(ctl status | sed -n 's/^reloads_ok=//p')
kill -HUP "$SBC_PID"
for _ in $(seq 50); do
  [ "$(ctl status | sed -n 's/^reloads_ok=//p')" -gt "$before" ] && break
  sleep 0.1
done
[ "$(ctl status | sed -n 's/^reloads_ok=//p')" -gt "$before" ] || fail "SIGHUP did not reload"
(cd "$WORK" && exec timeout 60 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$HERE/scenarios/uac_wait_bye.xml" \
  -s 5004 -i 127.0.0.1 -p 45905 -mi 127.0.0.1 -mp 40640 -m 1 -timeout 50s \
  -trace_stat -stf term.csv >"$WORK/term.out" 2>&1) &
UAC=$!
wait_calls 1
t0=$(date +%s%N)
kill -TERM "$SBC_PID"
wait_exit 20
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
wait "$UAC" || { cat "$WORK/term.out"; fail "sipp UAC (SIGTERM) exit $?"; }
sipp_ok "$WORK/term.csv" 1 0
[ "$elapsed_ms" -ge 2500 ] || fail "SIGTERM did not wait for the call ($elapsed_ms ms)"
grep -q "drain timeout: 1 call(s) still in progress hung up" "$WORK/sbc.log" || fail "no drain timeout in the log"
echo "SIGHUP: reloaded; SIGTERM: drained for $elapsed_ms ms, the call left hung up, exit 0"

# 4. Permissions, with a user of our own (removed on exit).
TUSER="sbcctl$$"
TGROUP="sbcops$$"
useradd --system --no-create-home --shell /usr/sbin/nologin "$TUSER" || fail "useradd"
groupadd --system "$TGROUP" || { userdel "$TUSER"; fail "groupadd"; }
cleanup_users() { userdel "$TUSER" 2>/dev/null || true; groupdel "$TGROUP" 2>/dev/null || true; }
trap 'cleanup_users; cleanup' EXIT
chmod 755 "$WORK"
as_user() { runuser -u "$TUSER" -- "$SBC" ctl --socket "$WORK/control.sock" "$@"; }
# 4a. Mode 0666, no group: the user connects, the daemon refuses it (SO_PEERCRED).
sed -i 's/^mode = 0o660$/mode = 0o666/' "$WORK/sbc.toml"
start_sbc
[ "$(command stat -c %a "$WORK/control.sock")" = 666 ] || fail "socket mode $(command stat -c %a "$WORK/control.sock")"
out=$(as_user status 2>&1) && fail "an outside user was served: $out"
echo "$out" | grep -q "permission denied" || fail "no refusal: $out"
grep -q "control socket: refused a command from uid $(id -u "$TUSER")" "$WORK/sbc.log" || fail "refusal not logged"
ctl status >/dev/null || fail "root refused"
stop_sbc
# 4b. Mode 0660 with our group: outside the group, no connection at all.
sed -i "s/^mode = 0o666$/mode = 0o660\ngroup = \"$TGROUP\"/" "$WORK/sbc.toml"
start_sbc
[ "$(command stat -c '%a %G' "$WORK/control.sock")" = "660 $TGROUP" ] || fail "socket: $(command stat -c '%a %G' "$WORK/control.sock")"
out=$(as_user status 2>&1) && fail "a user outside the group was served: $out"
echo "$out" | grep -qi "permission denied" || fail "no EACCES: $out"
# 4c. In the group (a supplementary one): served.
usermod -a -G "$TGROUP" "$TUSER"
as_user status | grep -q '^state=running$' || fail "a member of the group was refused: $(as_user status 2>&1)"
stop_sbc
# 4d. An unknown group stops the start with a clear error.
sed -i "s/^group = .*/group = \"nosuchgroup$$\"/" "$WORK/sbc.toml"
"$SBC" run --check --config "$WORK/sbc.toml" >"$WORK/check.out" 2>&1 && fail "an unknown group was accepted"
grep -q "no such group" "$WORK/check.out" || fail "unknown group: $(cat "$WORK/check.out")"
echo "permissions: refused by SO_PEERCRED, by mode 0660 outside the group, served in the group"
echo "PASS"
