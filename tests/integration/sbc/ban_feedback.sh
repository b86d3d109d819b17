#!/usr/bin/env bash
# Prefix bans and the fast path's drop counts, live: INVITEs from 20 addresses of one /24
# (127.0.5.0/24) reach a source_prefix rule (20 attempts in 5 s) and the prefix is banned in
# the dataplane for 8 s. The attack goes on at ~25 INVITEs/s through the ban; the fast path drops
# it before the fraud engine sees it, and the front door hands the ban's drop counts to the
# engine once a second (sip.fraud_ban_drops_fed). So when the ban lapses the prefix's window
# still holds the attack and the first INVITE after it is banned again at once: no attempt of
# the prefix is allowed after the first ban. Without the feedback the 5 s window would be
# empty after 8 s of silence and 19 more attempts would go through before the rule re-armed.
#   ban_feedback.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11510
need python3 python3
write_config
cat >"$WORK/policy.toml" <<'TOML'
[policy]
name = "ban-feedback"

[rate_limits.invite]
per_source = { rate = 1000, burst = 1000 }
per_prefix = { rate = 1000, burst = 1000 }
per_account = { rate = 1000, burst = 1000 }

[bans]
base = "8s"
factor = 1
max = "8s"

[fraud]
ban_duration = "8s"
max_tracked_keys = 10000

[[fraud.rules]]
id = "prefix-flood"
description = "INVITEs from one /24"
feature = "attempts"
key = "source_prefix"
window = "5s"
op = ">="
threshold = 20
weight = 100
TOML
python3 - "$WORK/sbc.toml" "$WORK/policy.toml" "$SIP_PORT" <<'PY'
import re, sys
path, pol, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = open(path).read()
# Every port of the node in this test's range: the internal listener, the next hop (down).
s = re.sub(r'(realm = "internal"[^\[]*?port = )\d+', r'\g<1>%d' % (port + 1), s, flags=re.S)
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>%d' % (port + 2), s, flags=re.S)
s = s.replace('port_min = 20000', 'port_min = 24100').replace('port_max = 29999', 'port_max = 24199')
s = re.sub(r'files = \[.*\]', 'files = ["' + pol + '"]', s)
open(path, "w").write(s)
PY
start_sbc

cat >"$WORK/flood.py" <<'PY'
# flood.py PORT SECONDS RATE FIRST_HOST: INVITEs from 127.0.5.FIRST_HOST, .FIRST_HOST+1, ...
# (a new address each, wrapping within the /24), RATE per second for SECONDS. Bounded.
import socket, sys, time
port, seconds, rate, host = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
end = time.monotonic() + seconds
n = 0
while time.monotonic() < end and n < 10000:
    h = 1 + (host + n - 1) % 250
    src = "127.0.5.%d" % h
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    lport = s.getsockname()[1]
    cid = "bf-%d-%d@%s" % (host, n, src)
    msg = ("INVITE sip:0140000%03d@127.0.0.1 SIP/2.0\r\n"
           "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-bf%d-%d;rport\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:7%03d@example.com>;tag=t%d\r\n"
           "To: <sip:0140000%03d@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"
           "Contact: <sip:7%03d@%s:%d>\r\nContent-Length: 0\r\n\r\n") % (
        n % 1000, src, lport, host, n, h, n, n % 1000, cid, h, src, lport)
    s.sendto(msg.encode(), ("127.0.0.1", port))
    s.close()
    n += 1
    time.sleep(1.0 / rate)
print(n)
PY

# 1. 20 addresses, one INVITE each: the 20th bans the /24.
python3 "$WORK/flood.py" "$SIP_PORT" 20 25 1 >/dev/null &
FLOOD=$!
PEER_PIDS+=("$FLOOD")
for _ in $(seq 300); do
  ctl bans | grep -q '^127.0.5.0/24 origin=fraud ' && break
  sleep 0.1
done
ctl bans | grep -q '^127.0.5.0/24 origin=fraud ' || fail "the /24 was not banned: $(ctl bans) $(ctl stats | grep fraud)"
allowed=$(stat fraud.verdict.allow)
banned_at=$(date +%s.%N)
echo "prefix banned after $allowed allowed attempts; the attack goes on through the ban"
[ "$allowed" -le 20 ] || fail "$allowed attempts allowed before the ban (rule threshold 20)"

# 2. The flood goes on (20 s in all): through the ban, past its end (8 s), and on.
wait "$FLOOD" || true
drops_fed=$(stat sip.fraud_ban_drops_fed)
echo "ban drops fed to the engine: $drops_fed; dropped: $(stat drop.banned)"
ctl bans
echo "verdicts: allow=$(stat fraud.verdict.allow) ban=$(stat fraud.verdict.ban) block=$(stat fraud.verdict.block)"
[ "$drops_fed" -ge 25 ] || fail "drop counts not fed back to the engine ($drops_fed)"
[ "$(stat fraud.verdict.ban)" -ge 2 ] || fail "the prefix was not banned again when its ban lapsed"
# Nothing of the prefix was allowed once it had been banned: its window never decayed.
[ "$(stat fraud.verdict.allow)" = "$allowed" ] ||
  fail "attempts allowed after the ban lapsed: $(stat fraud.verdict.allow) (at the ban: $allowed)"
elapsed=$(python3 -c "import time,sys; print(round(time.time()-float(sys.argv[1]),1))" "$banned_at")
echo "watched ${elapsed}s after the first ban"
stop_sbc
echo "ban feedback ok"
