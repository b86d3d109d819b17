#!/usr/bin/env bash
# `sbc ctl registrations`, `registration show` and `registration remove` on phones registered
# through `sbc run` with Kamailio (digest auth) as the registrar: the listing names each AOR,
# its contact token, its flow (transport, observed address and port) and both expiries, the AOR
# filter keeps one phone, `show` gives the binding's fields, `remove` takes it away at once (a
# call from inside then gets 480) and is counted; bad commands answer an error.
#   registrations_ctl.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 11080
need sipp sip-tester
need kamailio kamailio
REG=127.0.0.3
REG_PORT=11082
INT_PORT=11081
registrar_config "$REG_PORT" "$INT_PORT" 20500 20599 'keepalive = "none"
nat_expires = "60s"'
start_kamailio "$HERE/registrar/kamailio.cfg" udp "$REG" "$REG_PORT" -A "LISTEN=udp:$REG:$REG_PORT" \
  -n 2 -Y "$WORK" -w "$WORK"
start_sbc
wait_hops_up registrar

# A refused command answers "error: ..." and `sbc ctl` exits 1.
refused() { ! ctl "$@" || echo "exit status 0"; }
phone() {  # phone NAME ADDR PORT USER
  (cd "$WORK" && timeout 20 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$HERE/registrar/register.xml" \
    -i "$2" -p "$3" -m 1 -timeout 15s -recv_timeout 5000 -s "$4" -au "$4" -ap "pw$4" \
    -set expires 3600 >"$WORK/$1.out" 2>&1) || { cat "$WORK/$1.out"; fail "$1 did not register"; }
}
phone p1 127.0.0.70 11085 1001
phone p2 127.0.0.71 11086 1002

# The listing: both phones, sorted by AOR, with their flows and expiries.
list=$(ctl registrations)
echo "$list"
[ "$(echo "$list" | tail -1)" = "registrations=2" ] || fail "listing: $list"
line1=$(echo "$list" | sed -n 1p)
line2=$(echo "$list" | sed -n 2p)
echo "$line1" | grep -q '^aor=1001@pbx.example token=[0-9a-z]\{24\} transport=udp remote=127.0.0.70:11085 connection=0 ' ||
  fail "first line: $line1"
echo "$line2" | grep -q '^aor=1002@pbx.example .* remote=127.0.0.71:11086 ' || fail "second line: $line2"
echo "$line1" | grep -q ' contact=sip:1001@192.168.1.5:5060$' || fail "client contact: $line1"
# NATed phone: 60 s toward it, the registrar's 3600 s toward the registrar.
ce=$(echo "$line1" | sed 's/.*client_expires_s=\([0-9]*\).*/\1/')
re_=$(echo "$line1" | sed 's/.*registrar_expires_s=\([0-9]*\).*/\1/')
[ "$ce" -ge 50 ] && [ "$ce" -le 60 ] || fail "client expiry $ce (want about 60)"
[ "$re_" -ge 3500 ] && [ "$re_" -le 3600 ] || fail "registrar expiry $re_ (want about 3600)"
token=$(echo "$line1" | sed 's/.* token=\([0-9a-z]*\) .*/\1/')
echo "registrations: both phones listed with token, flow and both expiries"

# The AOR filter.
only=$(ctl registrations 1002@pbx.example)
[ "$(echo "$only" | wc -l)" = 2 ] && echo "$only" | grep -q '^aor=1002@pbx.example ' &&
  [ "$(echo "$only" | tail -1)" = "registrations=1" ] || fail "filter: $only"
[ "$(ctl registrations 1999@pbx.example)" = "registrations=0" ] || fail "filter on an unknown AOR"
echo "registrations AOR: filtered"

# show.
show=$(ctl registration show "$token")
echo "$show"
for kv in "token=$token" "aor=1001@pbx.example" "contact=sip:1001@192.168.1.5:5060" \
  "transport=udp" "remote=127.0.0.70:11085" "connection=0"; do
  echo "$show" | grep -qx "$kv" || fail "show lacks $kv"
done
echo "$show" | grep -q '^client_expires_s=[0-9]' || fail "show lacks client_expires_s"
echo "$show" | grep -q '^registrar_expires_s=[0-9]' || fail "show lacks registrar_expires_s"
refused registration show nosuchtoken | grep -q '^error: no binding' || fail "show of an unknown token"
refused registration frobnicate x | grep -q '^error: usage' || fail "bad verb not refused"
echo "registration show: the binding's fields"

# remove: the binding goes at once; a call from inside to it gets 480.
[ "$(ctl registration remove "$token")" = "ok removed=1" ] || fail "remove by token"
[ "$(stat registrations.bindings)" = 1 ] || fail "bindings after remove: $(stat registrations.bindings)"
[ "$(stat registrations.removed_by_operator)" = 1 ] || fail "removal not counted"
(cd "$WORK" && timeout 20 sipp "$REG:$REG_PORT" -nostdin -sn uac -s 1001 -i 127.0.0.4 -p 11087 \
  -m 1 -timeout 10s -recv_timeout 8000 -trace_msg -message_file gone.msg >"$WORK/gone.out" 2>&1) || true
grep -q "SIP/2.0 480" "$WORK/gone.msg" || { cat "$WORK/gone.msg"; fail "no 480 after remove"; }
[ "$(ctl registration remove 1002@pbx.example)" = "ok removed=1" ] || fail "remove by AOR"
[ "$(ctl registrations)" = "registrations=0" ] || fail "bindings left: $(ctl registrations)"
refused registration remove "$token" | grep -q '^error: no binding' || fail "second remove not refused"
echo "registration remove: by token and by AOR, counted, calls to it get 480"
stop_sbc
echo "PASS"
