#!/usr/bin/env bash
# The node's memory is fixed at start: the fraud engine's state tables (sized by the policy's
# max_tracked_keys) are committed before the first packet, so a burst of new INVITEs from
# thousands of sources (each a new address, /24 prefix, account and Call-ID in the engine)
# leaves the resident size within a few % of what it was right after start, and `sbc ctl
# status` reports the footprint. Without the commit the same burst took the node from ~35 MB
# to ~400 MB.
#   memory_footprint.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 46010
write_config
sed -i 's/port_min = 20000/port_min = 35000/; s/port_max = 29999/port_max = 35099/' "$WORK/sbc.toml"
grep -q 'port_min = 35000' "$WORK/sbc.toml" || fail "media ports not rewritten"
start_sbc
rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$SBC_PID/status"; }
ctl status >"$WORK/status.txt"
field() { sed -n "s/^$1=//p" "$WORK/status.txt"; }
table=$(field fraud_table_bytes)
committed=$(field fraud_table_committed_bytes)
at_start=$(field memory_rss_at_start_bytes)
echo "status: fraud_table_bytes=$table committed=$committed rss_at_start=$at_start keys=$(field fraud_max_tracked_keys)"
[ "${table:-0}" -gt $((100 << 20)) ] || fail "fraud tables of the default policy: '$table' bytes"
[ "$committed" = "$table" ] || fail "committed $committed of $table fraud table bytes"
[ "${at_start:-0}" -ge "$table" ] || fail "rss at start $at_start below the fraud tables $table"
before=$(rss)
[ "$before" -ge "$table" ] || fail "resident $before below the committed tables $table"
# 4000 new sources, 10 per /24 (under the per-prefix limits), each with its own account.
python3 "$ROOT/tests/bench/sbc/invite_burst.py" 127.0.0.1 "$SIP_PORT" 4000 --subnet 79 \
  --rate 2000 --wait 3 >"$WORK/burst.out" || fail "burst: $(cat "$WORK/burst.out")"
cat "$WORK/burst.out"
events=$(stat sip.fraud_events)
[ "${events:-0}" -ge 1000 ] || fail "only ${events:-0} INVITEs reached the fraud engine"
after=$(rss)
growth=$(python3 -c "print(f'{100.0 * ($after - $before) / $before:.1f}')")
echo "rss: $((before >> 20)) MiB after start, $((after >> 20)) MiB after the burst (+$growth%), $events INVITEs scored"
python3 -c "import sys; sys.exit(0 if $after <= $before * 1.05 else 1)" ||
  fail "resident memory grew $growth% (over 5%) with the burst"
stop_sbc
echo "PASS"
