#!/usr/bin/env bash
# Scanners and password guessers against `sbc run`, Kamailio (digest auth, 404 for unknown
# users, 407 for known ones) as the registrar and proxy behind it, the shipped call-center
# policy's sweep and brute-force rules (rate limits of REGISTER and INVITE out of the way: the
# fraud engine, not a per-source limit, must stop these). Checks:
# - two agents behind one address, one mistyping twice, are not blocked;
# - extension sweeps with REGISTER, INVITE, OPTIONS and MESSAGE (a desk-phone User-Agent and
#   none) see the same answer for existing and missing users (status, reason, header set,
#   challenge shape; asserted on the captured responses) and are silenced within 20 requests,
#   while a legitimate phone from another address completes calls;
# - password guessing (both User-Agents) is silenced within 20 requests (banned);
# - host discovery: a trusted peer's OPTIONS are all answered, a stranger's burst is silenced
#   within 20 requests, and no answer names a product.
#   registrations_sweep.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11030
need sipp sip-tester
need kamailio kamailio
REG=127.0.0.3
REG_PORT=11032
INT_PORT=11031
TRUSTED=127.0.0.40
write_config
cp -r "$ROOT/policy/examples" "$WORK/policy"
python3 - "$WORK/sbc.toml" "$REG_PORT" "$INT_PORT" "$WORK/policy/callcenter.toml" "$TRUSTED" <<'PY'
import re, sys
path, reg, internal, pol, trusted = sys.argv[1:6]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + reg, s, flags=re.S)
s = re.sub(r'(realm = "internal"[^\[]*?port = )\d+', r'\g<1>' + internal, s, flags=re.S)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 20200').replace('port_max = 29999', 'port_max = 20299')
s = re.sub(r'files = \[.*\]', 'files = ["' + pol + '"]', s)
s = s.replace('[media]', '[registrations]\nkeepalive = "none"\nnat_expires = "0s"  # the callee phone stays bound through the whole test\n\n[media]')
open(path, "w").write(s)
p = open(pol).read()
for cls in ("register", "invite"):
    p = re.sub(r'(\[rate_limits\.%s\]\n)per_source = \{[^}]*\}\nper_prefix = \{[^}]*\}\nper_account = \{[^}]*\}' % cls,
               r'\g<1>per_source = { rate = 100, burst = 200 }\nper_prefix = { rate = 1000, burst = 2000 }\nper_account = { rate = 100, burst = 200 }', p)
# The trunk peer, and the registrar inside: its answers to the sweeps (hundreds a second in a
# real sweep) must not meet the per-source limit of strangers' OPTIONS and responses.
p = p.replace('cidrs = ["198.51.100.10/32", "198.51.100.11/32"]', 'cidrs = ["%s/32", "127.0.0.3/32"]' % trusted)
open(pol, "w").write(p)
PY
[ "$(grep -c 'per_source = { rate = 100, burst = 200 }' "$WORK/policy/callcenter.toml")" = 2 ] ||
  fail "rate limits not rewritten"
grep -q "$TRUSTED/32" "$WORK/policy/callcenter.toml" || fail "trusted peer not set"

start_kamailio "$HERE/registrar/kamailio.cfg" udp "$REG" "$REG_PORT" -A "LISTEN=udp:$REG:$REG_PORT" \
  -n 2 -Y "$WORK" -w "$WORK"
start_sbc
wait_hops_up registrar

run() {  # run NAME ADDR PORT SCENARIO [sipp args...]: exit status ignored, messages kept
  local name=$1 addr=$2 port=$3 sc=$4
  shift 4
  (cd "$WORK" && timeout 60 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$sc" -i "$addr" -p "$port" \
    -timeout 40s -recv_timeout 1500 -trace_msg -message_file "$name.msg" -trace_stat \
    -stf "$name.csv" "$@" >"$WORK/$name.out" 2>&1) || true
}
counts() {  # successful failed calls of a run
  python3 - "$WORK/$1.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter=';'))
print(rows[-1]["SuccessfulCall(C)"], rows[-1]["FailedCall(C)"])
PY
}
# Requests (Call-ID and CSeq) of a run that got a final answer (a retransmitted answer, e.g. a
# 407 whose ACK the ban dropped, counts once).
answered() {
  python3 - "$WORK/$1.msg" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
ids = set()
for block in re.split(r"\n(?=-{5,})", text):
    m = re.search(r"^SIP/2\.0 [2-6].*?(?:\r?\n\r?\n|\Z)", block, re.S | re.M)
    if m:
        c = re.search(r"^(?:Call-ID|i):\s*(\S+)", m.group(0), re.M | re.I)
        q = re.search(r"^CSeq:\s*(\d+)", m.group(0), re.M | re.I)
        ids.add((c.group(1) if c else m.group(0), q.group(1) if q else ""))
print(len(ids))
PY
}
# The answers of a sweep, existing users against missing ones: one shape for all.
alike() {  # alike RUN
  python3 - "$WORK/$1.msg" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
shapes = {}
for block in re.split(r"\n(?=-{5,})", text):
    m = re.search(r"^SIP/2\.0 [2-6].*?(?:\r?\n\r?\n|\Z)", block, re.S | re.M)
    if not m:
        continue
    msg = m.group(0)
    to = re.search(r"^To: <sip:(\d+)@", msg, re.M).group(1)
    kind = "existing" if to in ("1001", "1002", "1003", "1004") else "missing"
    lines = [l for l in msg.splitlines() if l]
    status = lines[0]
    names = tuple(l.split(":", 1)[0] for l in lines[1:])
    for l in lines[1:]:
        name = l.split(":", 1)[0].lower()
        assert name not in ("server", "user-agent"), "an answer names a product: " + l
    chal = next((l for l in lines if l.startswith(("WWW-Authenticate", "Proxy-Authenticate"))), "")
    def cls(v):  # the alphabet a value is drawn from
        if re.fullmatch(r"[0-9a-f]*", v):
            return "hex"
        if re.fullmatch(r"[A-Za-z0-9+/=]*", v):
            return "base64"
        return "other"
    shape = re.sub(r'(nonce|opaque)="([^"]*)"', lambda x: '%s=<%d:%s>' % (x.group(1), len(x.group(2)), cls(x.group(2))), chal)
    shapes.setdefault(kind, set()).add((status, names, shape))
assert "existing" in shapes and "missing" in shapes, "both kinds must be answered: %s" % shapes
assert len(shapes["existing"]) == 1 and shapes["existing"] == shapes["missing"], shapes
print(sorted(shapes["existing"])[0][0])
PY
}
for sc in sweep sweep_invite sweep_options sweep_message guess; do
  sed '/^ *User-Agent:/d' "$HERE/registrar/$sc.xml" >"$WORK/${sc}_noua.xml"
done

# 1. Two agents behind one office NAT (127.0.0.20): one mistypes twice, then both register.
run mistype 127.0.0.20 11040 "$HERE/registrar/guess.xml" -s 1003 -au 1003 -ap wrong -m 2 -r 1
[ "$(counts mistype)" = "2 0" ] || fail "mistyping agent: $(counts mistype)"
run agent3 127.0.0.20 11040 "$HERE/registrar/register.xml" -s 1003 -au 1003 -ap pw1003 -set expires 600 -m 1
run agent4 127.0.0.20 11041 "$HERE/registrar/register.xml" -s 1004 -au 1004 -ap pw1004 -set expires 600 -m 1
[ "$(counts agent3)" = "1 0" ] || fail "agent 1003 blocked after two typos"
[ "$(counts agent4)" = "1 0" ] || fail "agent 1004 behind the same address blocked"
echo "office NAT: one agent mistyped twice, both registered"

# 2. A legitimate phone (1002, from 127.0.0.26) registers and takes calls from a colleague
# outside (1001, from 127.0.0.25), who authenticates with the proxy inside: its first call also
# shows the SBC a real INVITE challenge.
run legit_reg 127.0.0.26 11046 "$HERE/registrar/register.xml" -s 1002 -au 1002 -ap pw1002 -set expires 600 -m 1
[ "$(counts legit_reg)" = "1 0" ] || fail "legitimate phone 1002 not registered"
(cd "$WORK" && exec timeout 240 sipp -nostdin -sf "$HERE/registrar/phone_uas.xml" -s 1002 \
  -i 127.0.0.26 -p 11046 -m 6 -timeout 230s -trace_msg -message_file callee.msg \
  >"$WORK/callee.out" 2>&1) &
CALLEE=$!
PEER_PIDS+=($CALLEE)
sleep 0.3
legit_call() {  # legit_call NAME: one authenticated call 1001 -> 1002
  run "$1" 127.0.0.25 11045 "$HERE/registrar/call_auth.xml" -s 1002 -au 1001 -ap pw1001 \
    -set caller 1001 -mi 127.0.0.25 -mp 20290 -m 1 -recv_timeout 8000
}
legit_call legit1
[ "$(counts legit1)" = "1 0" ] || { cat "$WORK/legit1.msg"; fail "legitimate call refused"; }
echo "legitimate call from outside: challenged, authenticated, answered"

# 3. Extension sweeps: existing (1001-1004) and missing users interleaved, 40 requests at
# 10/s per sweep, each method with a desk-phone User-Agent and with none, from its own address.
# A legitimate call goes through meanwhile.
python3 - "$WORK/users.csv" <<'PY'
import sys
users = []
for i in range(40):
    users.append(str(1001 + i % 4) if i % 3 == 0 else str(1900 + i))
open(sys.argv[1], "w").write("SEQUENTIAL\n" + "".join(u + "\n" for u in users))
PY
n=0
pids=()
for sc in sweep sweep_invite sweep_options sweep_message; do
  for ua in ua noua; do
    file="$HERE/registrar/$sc.xml"
    [ $ua = noua ] && file="$WORK/${sc}_noua.xml"
    run "${sc}_$ua" "127.0.0.$((50 + n))" $((11050 + n)) "$file" -inf "$WORK/users.csv" -m 40 -r 10 &
    pids+=($!)
    n=$((n + 1))
  done
done
sleep 1
legit_call legit2
for p in "${pids[@]}"; do wait "$p" || true; done
[ "$(counts legit2)" = "1 0" ] || { cat "$WORK/legit2.msg"; fail "legitimate call during the sweeps refused"; }
echo "legitimate call during the sweeps: answered"
for sc in sweep sweep_invite sweep_options sweep_message; do
  for ua in ua noua; do
    s="${sc}_$ua"
    k=$(answered "$s")
    [ "$k" -le 20 ] || fail "$s: $k requests answered (more than 20)"
    [ "$k" -ge 3 ] || fail "$s: only $k answered (the test needs a few)"
    status=$(alike "$s") || fail "$s: answers differ between existing and missing users"
    echo "$s: $k of 40 answered, all '$status' for existing and missing users, then silence"
  done
done

# 4. Password guessing on 1002, 30 attempts at 10/s (two REGISTERs each), with and without a
# User-Agent.
run guess_ua 127.0.0.23 11043 "$HERE/registrar/guess.xml" -s 1002 -au 1002 -ap guess -m 30 -r 10
run guess_noua 127.0.0.24 11044 "$WORK/guess_noua.xml" -s 1002 -au 1002 -ap guess -m 30 -r 10
for s in guess_ua guess_noua; do
  k=$(answered $s)
  [ "$k" -le 20 ] || fail "$s: $k requests answered (more than 20)"
  echo "$s: $k of 60 REGISTERs answered, then silence"
done
[ "$(stat fraud.verdict.ban)" -ge 10 ] || fail "bans: $(ctl stats | grep -E '^(fraud|drop)')"
[ "$(stat drop.banned)" -ge 1 ] || fail "nothing dropped by the ban table"

# 5. Host discovery: a trusted peer's OPTIONS (trunk keep-alives) are all answered; a
# stranger's burst to one target is silenced within 20.
printf 'SEQUENTIAL\n' >"$WORK/one.csv"
for _ in $(seq 40); do echo 100 >>"$WORK/one.csv"; done
run trunk $TRUSTED 11047 "$HERE/registrar/sweep_options.xml" -inf "$WORK/one.csv" -m 40 -r 100
[ "$(answered trunk)" = 40 ] || fail "trusted peer: $(answered trunk) of 40 OPTIONS answered"
run probe 127.0.0.27 11048 "$WORK/sweep_options_noua.xml" -inf "$WORK/one.csv" -m 40 -r 100
k=$(answered probe)
[ "$k" -le 20 ] || fail "a stranger's OPTIONS burst: $k of 40 answered"
if grep -iE '^(Server|User-Agent):' "$WORK/trunk.msg" "$WORK/probe.msg" | grep -v Yealink | grep -q .; then
  fail "an OPTIONS answer names a product"
fi
echo "host discovery: trusted peer 40 of 40 answered; a stranger's burst $k of 40, no product named"

# 6. Meanwhile a legitimate phone from another address registers and calls.
run legit 127.0.0.25 11049 "$HERE/registrar/register.xml" -s 1001 -au 1001 -ap pw1001 -set expires 600 -m 1
[ "$(counts legit)" = "1 0" ] || fail "legitimate phone refused"
legit_call legit3
[ "$(counts legit3)" = "1 0" ] || { cat "$WORK/legit3.msg"; ctl stats | grep -E "^(registrations\.|calls\.)"; fail "legitimate call after the attacks refused"; }
echo "legitimate phone from another address: registered and called"
ctl stats | grep -E '^(registrations\.(registers|forwarded|challenges_relayed|uniform_refusals|registered)|calls\.uniform_answers|sip\.refused_uniform|fraud\.verdict|drop\.(banned|rate_limited.*)|sip\.fraud_auth_events)='
stop_sbc
echo "PASS"
