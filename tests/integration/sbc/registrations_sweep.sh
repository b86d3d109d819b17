#!/usr/bin/env bash
# Scanners and password guessers against registrations through `sbc run`, Kamailio (digest
# auth, 404 for unknown users) as the registrar behind it. Checks: an extension sweep (with a
# desk-phone User-Agent and with none) sees the same answer for existing and missing users
# (status, reason, header set, challenge shape; asserted on the captured responses) and is
# silenced within 20 requests; password guessing (both User-Agents) is silenced within 20
# requests; two agents behind one address, one mistyping twice, are not blocked; a legitimate
# phone from another address registers meanwhile.
#   registrations_sweep.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45830
need sipp sip-tester
need kamailio kamailio
REG=127.0.0.3
REG_PORT=45832
INT_PORT=45831
write_config
# The call-center policy with rate limits out of the way (the fraud engine, not the per-source
# REGISTER limit, must stop these) and brute force and sweeps banning.
cp -r "$ROOT/policy/examples" "$WORK/policy"
python3 - "$WORK/sbc.toml" "$REG_PORT" "$INT_PORT" "$WORK/policy/callcenter.toml" <<'PY'
import re, sys
path, reg, internal, pol = sys.argv[1:5]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + reg, s, flags=re.S)
s = re.sub(r'(realm = "internal"[^\[]*?port = )\d+', r'\g<1>' + internal, s, flags=re.S)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 34100').replace('port_max = 29999', 'port_max = 34199')
s = re.sub(r'files = \[.*\]', 'files = ["' + pol + '"]', s)
s = s.replace('[media]', '[registrations]\nkeepalive = "none"\n\n[media]')
open(path, "w").write(s)
p = open(pol).read()
p = p.replace('per_source = { rate = 2, burst = 10 }', 'per_source = { rate = 100, burst = 200 }')
p = p.replace('per_account = { rate = 1, burst = 5 }', 'per_account = { rate = 100, burst = 200 }')
p = p.replace('per_prefix = { rate = 20, burst = 100 }', 'per_prefix = { rate = 1000, burst = 2000 }')
p = re.sub(r'(id = "brute-force"[^\[]*?threshold = )10(\s*weight = )60', r'\g<1>6\g<2>90', p, flags=re.S)
p = re.sub(r'(id = "user-sweep"[^\[]*?threshold = )20(\s*weight = )60', r'\g<1>8\g<2>90', p, flags=re.S)
open(pol, "w").write(p)
PY
grep -q 'threshold = 6' "$WORK/policy/callcenter.toml" || fail "brute-force rule not rewritten"
grep -q 'threshold = 8' "$WORK/policy/callcenter.toml" || fail "user-sweep rule not rewritten"

! ss -uln | grep -q "$REG:$REG_PORT " || fail "port $REG:$REG_PORT is taken"
kamailio -DD -E -f "$HERE/registrar/kamailio.cfg" -A "LISTEN=udp:$REG:$REG_PORT" -n 2 -m 64 -M 8 \
  -Y "$WORK" -w "$WORK" >"$WORK/kamailio.log" 2>&1 &
PEER_PIDS+=($!)
start_sbc
for _ in $(seq 100); do
  [ "$(stat calls.hops_up)" -ge 1 ] && break
  sleep 0.1
done
[ "$(stat calls.hops_up)" -ge 1 ] || { cat "$WORK/kamailio.log"; fail "registrar never came up"; }

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
answered() { grep -c '^SIP/2.0 ' "$WORK/$1.msg" || true; }
sed '/User-Agent/d' "$HERE/registrar/sweep.xml" >"$WORK/sweep_noua.xml"
sed '/User-Agent/d' "$HERE/registrar/guess.xml" >"$WORK/guess_noua.xml"

# 1. Two agents behind one office NAT (127.0.0.20): one mistypes twice, then both register.
run mistype 127.0.0.20 45840 "$HERE/registrar/guess.xml" -s 1003 -au 1003 -ap wrong -m 2 -r 1
[ "$(counts mistype)" = "2 0" ] || fail "mistyping agent: $(counts mistype)"
run agent3 127.0.0.20 45840 "$HERE/registrar/register.xml" -s 1003 -au 1003 -ap pw1003 -set expires 600 -m 1
run agent4 127.0.0.20 45841 "$HERE/registrar/register.xml" -s 1004 -au 1004 -ap pw1004 -set expires 600 -m 1
[ "$(counts agent3)" = "1 0" ] || fail "agent 1003 blocked after two typos"
[ "$(counts agent4)" = "1 0" ] || fail "agent 1004 behind the same address blocked"
echo "office NAT: one agent mistyped twice, both registered"

# 2. Extension sweeps: existing (1001-1004) and missing users interleaved, 40 REGISTERs at 20/s.
python3 - "$WORK/users.csv" <<'PY'
import sys
users = []
for i in range(40):
    users.append(str(1001 + i % 4) if i % 3 == 0 else str(1900 + i))
open(sys.argv[1], "w").write("SEQUENTIAL\n" + "".join(u + "\n" for u in users))
PY
run sweep_ua 127.0.0.21 45842 "$HERE/registrar/sweep.xml" -inf "$WORK/users.csv" -m 40 -r 20
run sweep_noua 127.0.0.22 45843 "$WORK/sweep_noua.xml" -inf "$WORK/users.csv" -m 40 -r 20
for s in sweep_ua sweep_noua; do
  n=$(answered $s)
  [ "$n" -le 20 ] || fail "$s: $n requests answered (more than 20)"
  [ "$n" -ge 3 ] || fail "$s: only $n answered (the test needs a few)"
  python3 - "$WORK/$s.msg" <<'PY' || fail "$s: answers differ between existing and missing users"
import re, sys
text = open(sys.argv[1], errors="replace").read()
shapes = {}
for block in re.split(r"\n(?=-{5,})", text):
    m = re.search(r"^SIP/2\.0 .*?(?:\r?\n\r?\n|\Z)", block, re.S | re.M)
    if not m:
        continue
    msg = m.group(0)
    to = re.search(r"^To: <sip:(\d+)@", msg, re.M).group(1)
    kind = "existing" if to in ("1001", "1002", "1003", "1004") else "missing"
    lines = [l for l in msg.splitlines() if l]
    status = lines[0]
    names = tuple(l.split(":", 1)[0] for l in lines[1:])
    chal = next((l for l in lines if l.startswith("WWW-Authenticate")), "")
    def cls(v):  # the alphabet a value is drawn from
        if re.fullmatch(r"[0-9a-f]*", v):
            return "hex"
        if re.fullmatch(r"[A-Za-z0-9+/=]*", v):
            return "base64"
        return "other"
    shape = re.sub(r'(nonce|opaque)="([^"]*)"', lambda x: '%s=<%d:%s>' % (x.group(1), len(x.group(2)), cls(x.group(2))), chal)
    shapes.setdefault(kind, set()).add((status, names, shape))
assert "existing" in shapes and "missing" in shapes, "both kinds must be answered"
assert len(shapes["existing"]) == 1 and shapes["existing"] == shapes["missing"], shapes
PY
  echo "$s: $n of 40 answered, all alike for existing and missing users, then silence"
done

# 3. Password guessing on 1002, 30 attempts at 10/s (two REGISTERs each), with and without a
# User-Agent.
run guess_ua 127.0.0.23 45844 "$HERE/registrar/guess.xml" -s 1002 -au 1002 -ap guess -m 30 -r 10
run guess_noua 127.0.0.24 45845 "$WORK/guess_noua.xml" -s 1002 -au 1002 -ap guess -m 30 -r 10
for s in guess_ua guess_noua; do
  n=$(answered $s)
  [ "$n" -le 20 ] || fail "$s: $n requests answered (more than 20)"
  echo "$s: $n of 60 REGISTERs answered, then silence"
done
[ "$(stat fraud.verdict.ban)" -ge 4 ] || fail "bans: $(ctl stats | grep -E '^(fraud|drop)')"
[ "$(stat drop.banned)" -ge 1 ] || fail "nothing dropped by the ban table"

# 4. Meanwhile a legitimate phone from another address registers.
run legit 127.0.0.25 45846 "$HERE/registrar/register.xml" -s 1001 -au 1001 -ap pw1001 -set expires 600 -m 1
[ "$(counts legit)" = "1 0" ] || fail "legitimate phone refused"
echo "legitimate phone from another address: registered"
ctl stats | grep -E '^(registrations\.(registers|forwarded|challenges_relayed|uniform_refusals|registered)|fraud\.verdict|drop\.banned|sip\.fraud_auth_events)='
stop_sbc
echo "PASS"
