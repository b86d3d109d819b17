#include <catch2/catch.hpp>

#include "frame_builder.hpp"

using namespace sbc::dataplane;
using namespace sbc::dataplane::test;
using sbc::base::Endpoint;
using sbc::base::IpAddress;
using sbc::base::millis;
using sbc::base::seconds;

namespace {
const char* kLocal = "203.0.113.1";

Endpoint ep(const char* a, std::uint16_t p) {
    return Endpoint{*IpAddress::parse(a), p};
}

StreamSpec call(bool mux = false) {
    StreamSpec s;
    s.call_id = 42;
    s.stream_index = 0;
    s.a.local = ep(kLocal, 30000);
    s.a.remote = ep("198.51.100.10", 4000);
    s.b.local = ep(kLocal, 30002);
    s.b.remote = ep("192.0.2.20", 6000);
    s.rtcp_mux = mux;
    return s;
}

struct Rig {
    PipelineConfig cfg;
    std::unique_ptr<Pipeline> p;
    explicit Rig(MediaDefaults md = {}) {
        cfg = PipelineConfig::defaults();
        cfg.media = md;
        p = std::make_unique<Pipeline>(cfg);
    }
    Decision send(const PacketMeta& m, sbc::base::Nanos now) {
        Decision d;
        p->decide(std::span<const PacketMeta>(&m, 1), std::span<Decision>(&d, 1), now);
        return d;
    }
    Decision rtp(const char* src, std::uint16_t sport, std::uint16_t dport, std::uint16_t seq,
                 std::uint32_t ts, sbc::base::Nanos now) {
        static std::vector<std::uint8_t> payload;
        payload = rtp_payload(seq, ts);
        return send(udp_meta(src, sport, kLocal, dport, &payload), now);
    }
};
}  // namespace

TEST_CASE("Streams are created, conflict-checked and removed") {
    Rig r;
    auto& mc = r.p->media();
    auto id = mc.create(call(), 0);
    REQUIRE(id);
    CHECK(mc.active() == 1);
    auto clash = call();
    clash.a.local.port = 30001;  // RTCP port of leg a
    clash.b.local.port = 30010;
    CHECK_FALSE(mc.create(clash, 0));
    auto out_of_range = call();
    out_of_range.a.local.port = 1000;
    CHECK_FALSE(mc.create(out_of_range, 0));
    REQUIRE(mc.remove(*id));
    CHECK(mc.active() == 0);
    CHECK_FALSE(mc.remove(*id));  // stale id (generation)
    CHECK(mc.create(clash, 0));
}

TEST_CASE("RTP is relayed both ways with latching to the real source") {
    Rig r;
    auto id = r.p->media().create(call(), 0);
    REQUIRE(id);
    // Caller is behind a NAT: it sends from another address than signaled.
    auto d = r.rtp("198.51.100.99", 5555, 30000, 1, 160, millis(10));
    REQUIRE(d.action == Action::relay);
    auto fwd = r.p->forward_of(d);
    CHECK(fwd.from_local == ep(kLocal, 30002));
    CHECK(fwd.to_peer == ep("192.0.2.20", 6000));
    // Callee answers; it goes to the latched caller address, not the signaled one.
    d = r.rtp("192.0.2.20", 6000, 30002, 100, 1000, millis(20));
    REQUIRE(d.action == Action::relay);
    fwd = r.p->forward_of(d);
    CHECK(fwd.from_local == ep(kLocal, 30000));
    CHECK(fwd.to_peer == ep("198.51.100.99", 5555));
    // A third party cannot take over a live leg.
    d = r.rtp("6.6.6.6", 1234, 30000, 2, 320, millis(30));
    CHECK(d.action == Action::drop);
    CHECK(d.reason == DropReason::latch_rejected);
    MediaEvent ev[8];
    const auto n = r.p->media().drain_events(ev);
    REQUIRE(n == 2);
    CHECK(ev[0].kind == MediaEventKind::latched);
    CHECK(ev[0].leg == 0);
    CHECK(ev[0].source == ep("198.51.100.99", 5555));
    CHECK(r.p->counters().drops[DropReason::latch_rejected] == 1);
}

TEST_CASE("Re-latching after a NAT rebinding needs the old source silent") {
    MediaDefaults md;
    md.relatch_silence = millis(500);
    Rig r(md);
    REQUIRE(r.p->media().create(call(), 0));
    REQUIRE(r.rtp("198.51.100.10", 4000, 30000, 1, 160, millis(10)).action == Action::relay);
    // New NAT mapping while the old one still sends: refused.
    CHECK(r.rtp("198.51.100.10", 4444, 30000, 2, 320, millis(100)).reason ==
          DropReason::latch_rejected);
    CHECK(r.rtp("198.51.100.10", 4000, 30000, 3, 480, millis(200)).action == Action::relay);
    // The old source has been silent 500 ms: the new one takes over.
    auto d = r.rtp("198.51.100.10", 4444, 30000, 4, 640, millis(700));
    REQUIRE(d.action == Action::relay);
    d = r.rtp("192.0.2.20", 6000, 30002, 1, 160, millis(710));
    CHECK(r.p->forward_of(d).to_peer == ep("198.51.100.10", 4444));
    CHECK(r.p->counters().events[PipelineEvent::relatched] == 1);
    // And now the old mapping is the stranger.
    CHECK(r.rtp("198.51.100.10", 4000, 30000, 5, 800, millis(720)).reason ==
          DropReason::latch_rejected);
}

TEST_CASE("Strict source and the latch window stop hijacking") {
    MediaDefaults md;
    md.strict_source = true;
    md.latch_window = seconds(5);
    Rig r(md);
    REQUIRE(r.p->media().create(call(), 0));
    CHECK(r.rtp("6.6.6.6", 4000, 30000, 1, 160, millis(1)).reason == DropReason::latch_rejected);
    // Same address, other port (NAT): accepted.
    CHECK(r.rtp("198.51.100.10", 4010, 30000, 1, 160, millis(2)).action == Action::relay);
    // Leg b: nothing during the window; after it, only the signaled endpoint latches.
    CHECK(r.rtp("192.0.2.20", 6010, 30002, 1, 160, seconds(6)).reason ==
          DropReason::latch_rejected);
    CHECK(r.rtp("192.0.2.20", 6000, 30002, 1, 160, seconds(6)).action == Action::relay);
}

TEST_CASE("RTCP on port+1 and with rtcp-mux") {
    Rig r;
    REQUIRE(r.p->media().create(call(false), 0));
    std::vector<std::uint8_t> rr = {0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78};  // RTCP RR
    auto d = r.send(udp_meta("198.51.100.10", 4001, kLocal, 30001, &rr), millis(1));
    REQUIRE(d.action == Action::relay);
    CHECK(r.p->forward_of(d).from_local == ep(kLocal, 30003));
    CHECK(r.p->forward_of(d).to_peer == ep("192.0.2.20", 6001));

    Rig m;
    auto spec = call(true);
    REQUIRE(m.p->media().create(spec, 0));
    d = m.send(udp_meta("198.51.100.10", 4000, kLocal, 30000, &rr), millis(1));
    REQUIRE(d.action == Action::relay);
    CHECK(m.p->forward_of(d).from_local == ep(kLocal, 30002));
    CHECK(m.p->forward_of(d).to_peer == ep("192.0.2.20", 6000));
    auto id = StreamId{0, 1};
    auto st = m.p->media().stats(id);
    REQUIRE(st);
    CHECK(st->a.rtcp_packets == 1);
    // With mux, port+1 is not ours.
    CHECK(m.send(udp_meta("198.51.100.10", 4000, kLocal, 30001, &rr), millis(2)).reason ==
          DropReason::no_session);
}

TEST_CASE("Loss and jitter per RFC 3550") {
    Rig r;
    auto id = r.p->media().create(call(), 0);
    REQUIRE(id);
    // 100 packets, 20 ms apart, seq 1..100 with 5 missing; 8 kHz clock, constant transit.
    int sent = 0;
    for (std::uint16_t seq = 1; seq <= 100; ++seq) {
        if (seq % 20 == 0) continue;
        r.rtp("198.51.100.10", 4000, 30000, seq, seq * 160u, millis(20) * seq);
        ++sent;
    }
    auto st = r.p->media().stats(*id);
    REQUIRE(st);
    CHECK(st->a.packets == static_cast<std::uint64_t>(sent));
    // Seq 100 is not known lost yet (max_seq is 99); the first packet is the probation one.
    CHECK(st->a.lost == 4);
    CHECK(st->a.expected == 98);
    CHECK(st->a.jitter < 0.5);
    // Now every other packet arrives 10 ms late: jitter converges towards 80 units (10 ms).
    for (std::uint16_t seq = 101; seq <= 400; ++seq)
        r.rtp("198.51.100.10", 4000, 30000, seq, seq * 160u,
              millis(20) * seq + (seq % 2 ? millis(10) : 0));
    st = r.p->media().stats(*id);
    CHECK(st->a.lost == 5);
    CHECK(st->a.jitter > 60);
    CHECK(st->a.jitter < 81);
    CHECK(st->a.jitter_ms() == Approx(st->a.jitter / 8.0));
}

TEST_CASE("Inactive streams are reported once through the event queue") {
    MediaDefaults md;
    md.inactivity_timeout = seconds(10);
    Rig r(md);
    auto id = r.p->media().create(call(), 0);
    REQUIRE(id);
    r.rtp("198.51.100.10", 4000, 30000, 1, 160, seconds(1));
    MediaEvent ev[4];
    r.p->media().drain_events(ev);
    r.p->media().poll(seconds(10), 1u << 20);
    CHECK(r.p->media().drain_events(ev) == 0);
    r.p->media().poll(seconds(11), 1u << 20);
    REQUIRE(r.p->media().drain_events(ev) == 1);
    CHECK(ev[0].kind == MediaEventKind::inactive);
    CHECK(ev[0].call_id == 42);
    CHECK(ev[0].id == *id);
    r.p->media().poll(seconds(20), 1u << 20);
    CHECK(r.p->media().drain_events(ev) == 0);
}

TEST_CASE("The event queue is bounded and counts what it drops") {
    PipelineConfig cfg;
    cfg.event_capacity = 2;
    cfg.media.inactivity_timeout = seconds(1);
    Pipeline p(cfg);
    for (std::uint16_t i = 0; i < 4; ++i) {
        auto s = call();
        s.a.local.port = static_cast<std::uint16_t>(30100 + i * 4);
        s.b.local.port = static_cast<std::uint16_t>(30102 + i * 4);
        REQUIRE(p.media().create(s, 0));
    }
    p.media().poll(seconds(5), 1u << 20);
    MediaEvent ev[8];
    CHECK(p.media().drain_events(ev) == 2);
    CHECK(p.media().events_dropped() == 2);
}

TEST_CASE("Media towards a leg whose peer is not known yet is held back without penalty") {
    Rig r;
    auto spec = call();
    spec.b.remote = Endpoint{};  // the answer has not arrived
    auto id = r.p->media().create(spec, 0);
    REQUIRE(id);
    for (std::uint16_t seq = 1; seq <= 500; ++seq)
        CHECK(r.rtp("198.51.100.10", 4000, 30000, seq, seq * 160u, millis(seq)).reason ==
              DropReason::peer_unknown);
    CHECK(r.p->bans().active(seconds(1)).empty());
    // The answer arrives: relaying starts, to the signaled callee.
    spec.b.remote = ep("192.0.2.20", 6000);
    REQUIRE(r.p->media().update(*id, spec, seconds(1)));
    auto d = r.rtp("198.51.100.10", 4000, 30000, 501, 80160, seconds(1));
    REQUIRE(d.action == Action::relay);
    CHECK(r.p->forward_of(d).to_peer == ep("192.0.2.20", 6000));
}

TEST_CASE("No loss is reported while the RTP source is on probation") {
    Rig r;
    auto id = r.p->media().create(call(), 0);
    REQUIRE(id);
    r.rtp("198.51.100.10", 4000, 30000, 7, 160, millis(1));
    auto st = r.p->media().stats(*id);
    CHECK(st->a.packets == 1);
    CHECK(st->a.lost == 0);
    CHECK(st->a.expected == 0);
    r.rtp("198.51.100.10", 4000, 30000, 8, 320, millis(21));
    r.rtp("198.51.100.10", 4000, 30000, 10, 640, millis(61));
    st = r.p->media().stats(*id);
    CHECK(st->a.lost == 1);
}
