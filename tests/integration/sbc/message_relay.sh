#!/usr/bin/env bash
# Out-of-dialog MESSAGE (RFC 3428) through `sbc run`: relayed through the B2BUA as a
# non-INVITE transaction of the SBC's own, with topology hiding.
#  1. Outside -> inside: a sipp UAC (a stranger) sends MESSAGEs to the SBC; the internal next
#     hop (a SIP answerer) gets each with the SBC's Via only, a new Call-ID, the body intact,
#     and answers 202; the sender gets 202 with nothing of the inside (no Server, no host).
#     A MESSAGE to a user the inside answers 404 gets the uniform challenge instead (the
#     enumeration resistance of docs/registrations.md), like an INVITE.
#  2. Inside -> outside: a sipp UAC inside sends a MESSAGE to a Request-URI outside; the party
#     outside gets it from the SBC (From host, Via, Call-ID of the SBC; Max-Forwards 70; no
#     User-Agent naming an inside host) and its 200 comes back.
#   message_relay.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11930
need sipp sip-tester
EXT=127.0.0.1     # the SBC outside: UDP 11930
IN=127.0.0.2      # the SBC inside: UDP 11931
PROXY=127.0.0.3   # the internal next hop: 11932
OUT=127.0.0.9     # a party outside: 11935
SENDER=127.0.0.8  # the sipp UAC outside
INSIDE_UAC=127.0.0.7

write_config
python3 - "$WORK/sbc.toml" <<'PY'
import re, sys
path = sys.argv[1]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?address = )"[^"]*"', r'\g<1>"127.0.0.3"', s, flags=re.S)
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>11932', s, flags=re.S)
s = re.sub(r'(realm = "internal"\naddress = "127.0.0.2"\nport = )\d+', r'\g<1>11931', s)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 26200').replace('port_max = 29999', 'port_max = 26299')
open(path, "w").write(s)
PY
grep -q 'port = 11932' "$WORK/sbc.toml" || fail "config not rewritten"

python3 "$HERE/sip_udp_answerer.py" $PROXY 11932 "$WORK/inside.log" 100 nobody=404 alice=202 &
PEER_PIDS+=($!)
python3 "$HERE/sip_udp_answerer.py" $OUT 11935 "$WORK/outside.log" 100 &
PEER_PIDS+=($!)
start_sbc
for _ in $(seq 150); do [ "$(stat calls.hops_up)" -ge 1 ] && break; sleep 0.1; done
[ "$(stat calls.hops_up)" -ge 1 ] || fail "the internal next hop never came up"

message() {  # NAME TARGET USER SOURCE SOURCE_PORT COUNT
  (cd "$WORK" && timeout 30 sipp "$2" -nostdin -sf "$HERE/scenarios/uac_message.xml" -s "$3" \
    -i "$4" -p "$5" -m "$6" -r 5 -timeout 25s -trace_msg -message_file "$WORK/$1.msg" \
    >"$WORK/$1.out" 2>&1) || { cat "$WORK/$1.out"; fail "sipp $1 failed"; }
}
# The final responses the sender received, one status per line.
finals() { grep -E '^SIP/2.0 [2-6][0-9][0-9]' "$WORK/$1.msg" | awk '{print $2}'; }

# 1. Outside -> inside.
message out_in "$EXT:11930" "alice@$EXT:11930" $SENDER 11940 5
[ "$(finals out_in | sort | uniq -c | awk '{print $1":"$2}')" = "5:202" ] ||
  fail "outside -> inside: finals $(finals out_in | tr '\n' ' ') (5 x 202 expected)"
python3 - "$WORK/inside.log" "$WORK/out_in.msg" <<'PY' || fail "what the inside got"
import re, sys
reqs = [r for r in open(sys.argv[1], newline="").read().split("=" * 20 + "\n") if r.startswith("MESSAGE ")]
sent = open(sys.argv[2]).read()
sent_ids = set(re.findall(r"^Call-ID:\s*(\S+)", sent, re.M))
bad = []
if len(reqs) < 5:
    bad.append("%d MESSAGEs inside, 5 expected" % len(reqs))
for r in reqs:
    head, _, body = r.partition("\r\n\r\n")
    vias = re.findall(r"^(?:Via|v)\s*:(.*)$", head, re.M | re.I)
    cid = re.search(r"^(?:Call-ID|i)\s*:\s*(\S+)", head, re.M | re.I).group(1)
    if len(vias) != 1 or "127.0.0.2:11931" not in vias[0]:
        bad.append("Via %s" % vias)
    if cid in sent_ids:
        bad.append("the caller's Call-ID went inside")
    if not r.startswith("MESSAGE sip:alice@127.0.0.3:11932 "):
        bad.append("Request-URI: " + r.split("\r\n")[0])
    if "hello alice@" not in body:
        bad.append("body lost: %r" % body[:60])
    if not re.search(r"^Max-Forwards:\s*69\s*$", head, re.M | re.I):
        bad.append("Max-Forwards not decremented")
if bad and reqs: print(reqs[0])
for b in bad[:10]:
    print("BAD", b)
print("inside got %d MESSAGEs from the SBC" % len(reqs))
sys.exit(1 if bad else 0)
PY
grep -qiE 'inside\.lan|InternalPBX|127\.0\.0\.3|inside77' "$WORK/out_in.msg" &&
  fail "the outside saw the inside: $(grep -iE 'inside\.lan|InternalPBX|127\.0\.0\.3|inside77' "$WORK/out_in.msg" | head -3)"
# A user the inside does not have: the stranger reads the same challenge as for any user.
message out_nobody "$EXT:11930" "nobody@$EXT:11930" $SENDER 11941 2
[ "$(finals out_nobody | sort -u)" = "407" ] ||
  fail "a stranger's MESSAGE to a missing user: $(finals out_nobody | tr '\n' ' ') (407 expected)"
grep -q '^Proxy-Authenticate: Digest' "$WORK/out_nobody.msg" || fail "no challenge in the 407"

# 2. Inside -> outside (no trunk: the Request-URI's address).
message in_out "$IN:11931" "bob@$OUT:11935" $INSIDE_UAC 11942 3
[ "$(finals in_out | sort | uniq -c | awk '{print $1":"$2}')" = "3:200" ] ||
  fail "inside -> outside: finals $(finals in_out | tr '\n' ' ') (3 x 200 expected)"
python3 - "$WORK/outside.log" "$WORK/in_out.msg" <<'PY' || fail "what the outside got"
import re, sys
reqs = [r for r in open(sys.argv[1], newline="").read().split("=" * 20 + "\n") if r.startswith("MESSAGE ")]
sent_ids = set(re.findall(r"^Call-ID:\s*(\S+)", open(sys.argv[2]).read(), re.M))
bad = []
if len(reqs) < 3:
    bad.append("%d MESSAGEs outside, 3 expected" % len(reqs))
for r in reqs:
    head, _, body = r.partition("\r\n\r\n")
    vias = re.findall(r"^(?:Via|v)\s*:(.*)$", head, re.M | re.I)
    if len(vias) != 1 or "127.0.0.1:11930" not in vias[0]:
        bad.append("Via %s" % vias)
    cid = re.search(r"^(?:Call-ID|i)\s*:\s*(\S+)", head, re.M | re.I).group(1)
    if cid in sent_ids:
        bad.append("the inside's Call-ID went out")
    frm = re.search(r"^(?:From|f)\s*:(.*)$", head, re.M | re.I).group(1)
    if "@127.0.0.1>" not in frm:
        bad.append("From: " + frm)
    if re.search(r"branch\.lan|inside\.lan|DeskPhone|127\.0\.0\.[27]", head):
        bad.append("inside detail in: " + head.replace("\r\n", " | ")[:300])
    if not re.search(r"^Max-Forwards:\s*70\s*$", head, re.M | re.I):
        bad.append("Max-Forwards not reset")
    if "hello bob@" not in body:
        bad.append("body lost")
if bad and reqs: print(reqs[0])
for b in bad[:10]:
    print("BAD", b)
print("outside got %d MESSAGEs from the SBC" % len(reqs))
sys.exit(1 if bad else 0)
PY
ctl stats >"$WORK/stats.txt"
grep -E '^calls\.messages_' "$WORK/stats.txt"
[ "$(sed -n 's/^calls.messages_relayed=//p' "$WORK/stats.txt")" -ge 10 ] || fail "messages_relayed below 10"
grep -q '^transactions.active=' "$WORK/stats.txt" || fail "no transaction count"
stop_sbc
echo "PASS"
