#include "sbc/metrics.hpp"

#include <catch2/catch.hpp>

#include "fraud/fraud.hpp"
#include "sbc/signaling/b2bua.hpp"

using namespace sbc;

#define METRICS_TEST_EVENTS(X)         \
    X(datagrams, "datagrams admitted") \
    X(dropped, "datagrams dropped, \\ with a backslash")
SBC_DECLARE_COUNTER_LIST(MetricsTestEvent, METRICS_TEST_EVENTS)

TEST_CASE("metrics: a counter list exported one counter per entry, help from the list") {
    base::CounterSet<MetricsTestEvent> set;
    set.add(MetricsTestEvent::datagrams, 7);
    MetricsWriter w;
    w.each("unit", set, kMetricsTestEventNames, kMetricsTestEventDescriptions);
    CHECK(w.text() ==
          "# HELP sbc_unit_datagrams_total datagrams admitted\n"
          "# TYPE sbc_unit_datagrams_total counter\n"
          "sbc_unit_datagrams_total 7\n"
          "# HELP sbc_unit_dropped_total datagrams dropped, \\\\ with a backslash\n"
          "# TYPE sbc_unit_dropped_total counter\n"
          "sbc_unit_dropped_total 0\n");
}

TEST_CASE("metrics: a counter list as the label of one family, label values escaped") {
    base::CounterSet<MetricsTestEvent> set;
    set.add(MetricsTestEvent::dropped, 3);
    MetricsWriter w;
    w.by_label("sbc_unit_events_total", "events by kind", "kind", set, kMetricsTestEventNames,
               {{"backend", "a\"b\\c\nd"}});
    CHECK(w.text() ==
          "# HELP sbc_unit_events_total events by kind\n"
          "# TYPE sbc_unit_events_total counter\n"
          "sbc_unit_events_total{backend=\"a\\\"b\\\\c\\nd\",kind=\"datagrams\"} 0\n"
          "sbc_unit_events_total{backend=\"a\\\"b\\\\c\\nd\",kind=\"dropped\"} 3\n");
}

TEST_CASE("metrics: histogram buckets are cumulative and end with +Inf") {
    Histogram h({0.1, 1});
    h.observe(0.05);
    h.observe(0.1);  // le is inclusive
    h.observe(0.5);
    h.observe(7);
    MetricsWriter w;
    w.family("sbc_unit_seconds", "histogram", "a latency");
    w.histogram("sbc_unit_seconds", {{"realm", "external"}}, h);
    CHECK(w.text() ==
          "# HELP sbc_unit_seconds a latency\n"
          "# TYPE sbc_unit_seconds histogram\n"
          "sbc_unit_seconds_bucket{realm=\"external\",le=\"0.1\"} 2\n"
          "sbc_unit_seconds_bucket{realm=\"external\",le=\"1\"} 3\n"
          "sbc_unit_seconds_bucket{realm=\"external\",le=\"+Inf\"} 4\n"
          "sbc_unit_seconds_sum{realm=\"external\"} 7.65\n"
          "sbc_unit_seconds_count{realm=\"external\"} 4\n");
}

TEST_CASE("metrics: responses counted by realm, direction and class from the bytes sent") {
    SignalingMetrics m;
    m.sent(0, "SIP/2.0 503 Service Unavailable\r\n");
    m.sent(0, "SIP/2.0 200 OK\r\n");
    m.sent(1, "INVITE sip:a@b SIP/2.0\r\n");  // a request: not a response
    m.sent(1, "SIP/2.0 2x0 OK\r\n");          // not a status code
    m.response(1, false, 180);
    m.response(1, false, 99);  // out of range: ignored
    CHECK(m.responses[0][1][4] == 1);
    CHECK(m.responses[0][1][1] == 1);
    CHECK(m.responses[1][1] == std::array<std::uint64_t, 6>{});
    CHECK(m.responses[1][0][0] == 1);
}

TEST_CASE("metrics: setup latency from the call's start and answer times") {
    SignalingMetrics m;
    signaling::CallInfo c;
    c.started = 1'000'000'000;
    c.answered = 1'030'000'000;  // 30 ms
    m.answered(c);
    signaling::CallInfo never;  // not started: not observed
    m.answered(never);
    REQUIRE(m.setup_latency.count() == 1);
    CHECK(m.setup_latency.buckets()[3] == 1);  // (0.025, 0.05]
}

TEST_CASE("metrics: fraud rule hits by rule id, bounded") {
    SignalingMetrics m;
    fraud::Verdict v;
    v.reason_count = 2;
    v.reasons[0].rule_id = "irsf";
    v.reasons[1].rule_id = "burst";
    m.verdict(v);
    m.verdict(v);
    REQUIRE(m.verdict_rules.size() == 2);
    CHECK(m.verdict_rules[0] == std::pair<std::string, std::uint64_t>{"irsf", 2});
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < SignalingMetrics::kMaxRules + 10; ++i)
        ids.push_back("r" + std::to_string(i));
    for (const auto& id : ids) {
        fraud::Verdict one;
        one.reason_count = 1;
        one.reasons[0].rule_id = id;
        m.verdict(one);
    }
    CHECK(m.verdict_rules.size() == SignalingMetrics::kMaxRules);
    CHECK(m.verdict_rules.back().first == "other");
}

TEST_CASE("metrics: relay quality observes each leg with RTP when its stream closes") {
    RelayQuality q;
    dataplane::StreamStats s;
    s.a.packets = 100;
    s.a.expected = 100;
    s.a.lost = 2;     // 2 %
    s.a.jitter = 80;  // 10 ms at 8 kHz
    s.b.packets = 0;  // no RTP back: not measured
    q.observe(s);
    CHECK(q.legs == 1);
    CHECK(q.loss_ratio.count() == 1);
    CHECK(q.loss_ratio.buckets()[4] == 1);      // (0.01, 0.02]
    CHECK(q.jitter_seconds.buckets()[3] == 1);  // (0.005, 0.01]
}

TEST_CASE("metrics: the board serves the last page published") {
    MetricsBoard b;
    CHECK(b.current() == nullptr);
    b.publish("a 1\n", 5);
    auto first = b.current();
    b.publish("a 2\n", 6);
    CHECK(first->text == "a 1\n");  // a reader keeps its page
    CHECK(b.current()->text == "a 2\n");
    CHECK(b.current()->sequence == 2);
    CHECK(b.current()->built_at == 6);
}
