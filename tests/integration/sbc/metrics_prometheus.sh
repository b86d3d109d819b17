#!/usr/bin/env bash
# The Prometheus endpoint of `sbc run`, live on loopback:
# - a scrape passes `promtool check metrics`;
# - a real Prometheus server (1 s scrape interval) scrapes the SBC through five sipp calls and an
#   OPTIONS flood, and its query API shows the counters moved as they should (calls answered,
#   setup latency observed, INVITEs by realm, responses sent, rate-limit drops by class, a ban by
#   origin, relay legs measured);
# - every query of the Grafana dashboard (ops/grafana/sbc.json) names a metric of that scrape;
# - a node whose [metrics] listener cannot bind refuses to start.
#   metrics_prometheus.sh SBC_BINARY REPO_ROOT
source "$(dirname "$0")/lib.sh" "$1" "$2" 45700
need sipp sip-tester
need promtool prometheus
need prometheus prometheus
need python3 python3
need curl curl
INTERNAL_PORT=45701
UAS_PORT=45702
PROM_PORT=45705
METRICS_PORT=45706
write_config
python3 - "$WORK/sbc.toml" "$UAS_PORT" "$INTERNAL_PORT" "$METRICS_PORT" <<'PY'
import re, sys
path, uas, internal, metrics = sys.argv[1:]
s = open(path).read()
s = re.sub(r'(\[\[next_hops\]\][^\[]*?port = )\d+', r'\g<1>' + uas, s, flags=re.S)
s = re.sub(r'(address = "127.0.0.2"\nport = )\d+', r'\g<1>' + internal, s)
s = s.replace('interval = "5s"', 'interval = "1s"').replace('timeout = "2s"', 'timeout = "500ms"')
s = s.replace('port_min = 20000', 'port_min = 45750').replace('port_max = 29999', 'port_max = 45799')
s = s.replace('[metrics]\nenabled = false', '[metrics]\nenabled = true')
s = s.replace('port = 9090', 'port = ' + metrics)
open(path, "w").write(s)
PY
grep -q "^port = $METRICS_PORT" "$WORK/sbc.toml" || fail "metrics port not rewritten"
grep -q "^port = $INTERNAL_PORT" "$WORK/sbc.toml" || fail "internal port not rewritten"
URL="http://127.0.0.1:$METRICS_PORT/metrics"

# 0. [metrics] is enforced: no notice for it in run --check.
"$SBC" run --config "$WORK/sbc.toml" --check >/dev/null 2>"$WORK/check.err" || fail "run --check: $(cat "$WORK/check.err")"
grep -q "'metrics\." "$WORK/check.err" && fail "[metrics] still reported: $(cat "$WORK/check.err")"

start_sbc
for _ in $(seq 100); do curl -sf "$URL" >"$WORK/scrape0.txt" 2>/dev/null && break; sleep 0.1; done
[ -s "$WORK/scrape0.txt" ] || fail "no /metrics on $URL"

# 1. The exposition format: promtool finds no error (nor lint problem).
promtool check metrics <"$WORK/scrape0.txt" >"$WORK/promtool.out" 2>&1 ||
  fail "promtool check metrics: $(head -20 "$WORK/promtool.out")"
echo "promtool: $(grep -c '^# TYPE' "$WORK/scrape0.txt") metric families, no problem"
curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/other" | grep -q 404 ||
  fail "unknown path not 404"

# 2. A Prometheus server scraping the SBC every second.
cat >"$WORK/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sbc
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
YML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PEER_PIDS+=($!)
PROM="http://127.0.0.1:$PROM_PORT"
for _ in $(seq 150); do curl -sf "$PROM/-/ready" >/dev/null 2>&1 && break; sleep 0.2; done
curl -sf "$PROM/-/ready" >/dev/null || { cat "$WORK/prometheus.log"; fail "prometheus not ready"; }

# query EXPR: prints the first sample's value ("" when there is none).
query() {
  curl -sfG "$PROM/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")'
}
# wait_for EXPR MIN WHAT: bounded wait (30 s) until the query's value reaches MIN.
wait_for() {
  local v=
  for _ in $(seq 60); do
    v=$(query "$1")
    [ -n "$v" ] && python3 -c "import sys; sys.exit(0 if float('$v') >= $2 else 1)" && {
      echo "prometheus: $1 = $v ($3)"
      return 0
    }
    sleep 0.5
  done
  curl -s "$URL" | grep -v '^#' | grep -E "$(echo "$1" | grep -oE 'sbc_[a-z_]+' | head -1)" | head -20
  fail "$3: '$1' = '$v', expected >= $2"
}
wait_for 'up{job="sbc"}' 1 "Prometheus scrapes the SBC"
wait_for 'sbc_policy_version' 1 "policy version"
wait_for 'sbc_policy_last_reload_success' 1 "policy loaded"

# 3. The inside answers; five calls through the B2BUA.
(cd "$WORK" && exec timeout 60 sipp -nostdin -sf "$HERE/scenarios/uas_call.xml" -i 127.0.0.3 \
  -p "$UAS_PORT" -mi 127.0.0.3 -mp 45720 -rtp_echo -timeout 50s >"$WORK/uas.out" 2>&1) &
PEER_PIDS+=($!)
wait_for 'sbc_b2bua_hops_up_total' 1 "next hop up (OPTIONS probes)"
mkdir -p "$WORK/pcap"
ln -s /usr/share/sip-tester/g711a.pcap /usr/share/sip-tester/dtmf_2833_1.pcap "$WORK/pcap/"
(cd "$WORK" && timeout 40 sipp "127.0.0.1:$SIP_PORT" -nostdin -sn uac_pcap -s 4701 -i 127.0.0.1 \
  -p 45703 -mi 127.0.0.1 -mp 45730 -r 5 -m 5 -timeout 30s -recv_timeout 10000 \
  -default_behaviors all,-abortunexp >"$WORK/uac.out" 2>&1) || { cat "$WORK/uac.out"; fail "sipp UAC failed"; }
wait_for 'sbc_b2bua_calls_answered_total' 5 "calls answered"
wait_for 'sbc_b2bua_calls_ended_total' 5 "calls ended"
wait_for 'sbc_call_setup_seconds_count' 5 "setup latency observed per answered call"
wait_for 'sbc_sip_requests_total{realm="external",method="INVITE"}' 5 "INVITEs from outside"
wait_for 'sbc_sip_responses_total{realm="external",direction="sent",class="2xx"}' 5 "200s sent out"
wait_for 'sbc_sip_responses_total{realm="internal",direction="received",class="2xx"}' 5 "200s from inside"
wait_for 'sbc_relay_legs_measured_total' 5 "relay legs measured at stream close"
wait_for 'sbc_dataplane_relayed_total{backend="socket"}' 500 "RTP relayed"
wait_for 'sbc_fraud_verdicts_total{action="allow"}' 5 "fraud verdicts"
[ "$(query 'sbc_calls_active')" = "0" ] || fail "calls still active"
p50=$(query 'histogram_quantile(0.5, sbc_call_setup_seconds_bucket)')
echo "call setup p50 (Prometheus histogram_quantile): ${p50}s"

# 4. An OPTIONS flood from another source: over its bucket (10/s, burst 15), then banned.
before=$(query 'sbc_dataplane_rate_limited_total{class="sip_other"}')
(cd "$WORK" && timeout 20 sipp "127.0.0.1:$SIP_PORT" -nostdin -sf "$HERE/scenarios/options.xml" \
  -i 127.0.0.5 -p 45704 -r 300 -m 600 -timeout 6s -recv_timeout 300 >"$WORK/flood.out" 2>&1) || true
# [bans] violations = 5: five denials by the limiter, then the source is banned and the rest
# of the flood is dropped as banned.
wait_for "sbc_dataplane_rate_limited_total{class=\"sip_other\"} - ${before:-0}" 5 "flood rate-limited"
wait_for 'sbc_dataplane_drops_total{reason="rate_limited",backend="socket"}' 5 "drops by reason"
wait_for 'sbc_dataplane_drops_total{reason="banned",backend="socket"}' 100 "flood dropped as banned"
wait_for 'sbc_dataplane_bans_issued_total{origin="rate_limit"}' 1 "flood banned"
wait_for 'sbc_dataplane_bans_active{origin="rate_limit"}' 1 "ban in force"
wait_for 'sbc_sip_requests_total{realm="external",method="OPTIONS"}' 15 "OPTIONS admitted before the limit"
wait_for 'rate(sbc_metrics_scrapes_total[10s])' 0.5 "scraped about every second"

# 5. The Grafana dashboard only queries metrics the SBC exports.
curl -sf "$URL" >"$WORK/scrape1.txt" || fail "second scrape"
promtool check metrics <"$WORK/scrape1.txt" >"$WORK/promtool1.out" 2>&1 ||
  fail "promtool after traffic: $(head -20 "$WORK/promtool1.out")"
python3 "$HERE/dashboard_metrics.py" "$ROOT/ops/grafana/sbc.json" "$WORK/scrape1.txt" ||
  fail "the dashboard queries a metric the SBC does not export"
# The check itself catches a query on a metric that does not exist.
sed 's/sbc_calls_active/sbc_calls_activ/' "$ROOT/ops/grafana/sbc.json" >"$WORK/bad.json"
if python3 "$HERE/dashboard_metrics.py" "$WORK/bad.json" "$WORK/scrape1.txt" >"$WORK/bad.out"; then
  fail "the dashboard check accepts a metric that is not exported"
fi
grep -q "not exported: sbc_calls_activ " "$WORK/bad.out" || fail "dashboard check: $(cat "$WORK/bad.out")"

# 6. A [metrics] listener that cannot bind: the node refuses to start.
stop_sbc
sed "s|^socket = .*|socket = \"$WORK/control2.sock\"|; s|^port = $METRICS_PORT|port = $PROM_PORT|" \
  "$WORK/sbc.toml" >"$WORK/busy.toml"
if timeout 20 "$SBC" run --config "$WORK/busy.toml" >"$WORK/busy.log" 2>&1; then
  fail "started with its metrics port in use"
fi
grep -q "\[metrics\] cannot listen on 127.0.0.1:$PROM_PORT" "$WORK/busy.log" || fail "no error: $(cat "$WORK/busy.log")"
echo "metrics port in use: refused to start"
echo "PASS"
