#!/usr/bin/env bash
# `sbc ctl media add` on a running `sbc run`: two UDP endpoints exchange real RTP through the
# SBC both ways (plain and rtcp-mux), `media list` counts it, `media del` frees the ports.
#   media_relay.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45270
need python3 python3
write_config
start_sbc

out=$(ctl media add 27000 127.0.0.5:47000 27010 127.0.0.6:47010)
[ "$out" = "ok media 1 a=127.0.0.1:27000 b=127.0.0.2:27010" ] || fail "media add: $out"
python3 "$HERE/rtp_pair.py" 127.0.0.5:47000 127.0.0.1:27000 127.0.0.6:47010 127.0.0.2:27010 \
  --count 50 || fail "RTP through stream 1"
list=$(ctl media list)
echo "$list"
grep -q '^streams=1$' <<<"$list" || fail "media list: $list"
grep -q ' a.latched=127.0.0.5:47000 a.packets=50 a.bytes=[1-9][0-9]* ' <<<"$list" || fail "leg a stats: $list"
grep -q ' b.latched=127.0.0.6:47010 b.packets=50 b.bytes=[1-9][0-9]* ' <<<"$list" || fail "leg b stats: $list"
[ "$(stat pipeline.relayed)" = 100 ] || fail "relayed counter: $(ctl stats)"

out=$(ctl media add 27020 127.0.0.5:47020 27030 127.0.0.6:47030 rtcp-mux)
grep -q '^ok media 2 ' <<<"$out" || fail "media add rtcp-mux: $out"
python3 "$HERE/rtp_pair.py" 127.0.0.5:47020 127.0.0.1:27020 127.0.0.6:47030 127.0.0.2:27030 \
  --count 10 || fail "RTP through stream 2"
grep -q '^2 rtcp-mux .* a.packets=10 .* b.packets=10 ' <<<"$(ctl media list)" || fail "stream 2 stats"

# Errors are replies, not crashes.
grep -q '^error: usage' <<<"$(ctl media add 1 2)" || fail "bad media add accepted"
grep -q '^error: ' <<<"$(ctl media add 27000 127.0.0.5:47000 27040 127.0.0.6:47040)" ||
  fail "media add on a port in use accepted"
[ "$(ctl media del 1)" = "ok media 1 removed" ] || fail "media del"
grep -q '^error: no media stream 1' <<<"$(ctl media del 1)" || fail "media del twice"
grep -q '^streams=1$' <<<"$(ctl media list)" || fail "list after del"
# The ports of a deleted stream can be used again.
grep -q '^ok media 3 ' <<<"$(ctl media add 27000 127.0.0.5:47000 27010 127.0.0.6:47010)" ||
  fail "ports not freed by media del"
stop_sbc
echo "media relay ok"
