#include <catch2/catch.hpp>

#include "frame_builder.hpp"

using namespace sbc::dataplane;
using namespace sbc::dataplane::test;
using sbc::base::IpAddress;
using sbc::base::millis;
using sbc::base::Prefix;
using sbc::base::seconds;

namespace {
Decision decide_one(Pipeline& p, const PacketMeta& m, sbc::base::Nanos now) {
    Decision d;
    p.decide(std::span<const PacketMeta>(&m, 1), std::span<Decision>(&d, 1), now);
    return d;
}
}  // namespace

TEST_CASE("SIP over UDP goes to signaling, classed by method") {
    Pipeline p(PipelineConfig::defaults());
    auto reg = text("REGISTER sip:example.com SIP/2.0\r\n");
    auto d = decide_one(p, udp_meta("198.51.100.7", 5060, "203.0.113.1", 5060, &reg), 0);
    CHECK(d.action == Action::to_signaling);
    CHECK(d.traffic_class == TrafficClass::sip_register);
    CHECK(p.counters().events[PipelineEvent::to_signaling] == 1);
}

TEST_CASE("Ban check comes first and is silent") {
    Pipeline p(PipelineConfig::defaults());
    REQUIRE(p.bans().ban(*Prefix::parse("198.51.100.0/24"), seconds(60), BanOrigin::fraud, 0));
    auto opt = text("OPTIONS sip:x SIP/2.0\r\n");
    auto d = decide_one(p, udp_meta("198.51.100.7", 5060, "203.0.113.1", 5060, &opt), 1);
    CHECK(d.action == Action::drop);
    CHECK(d.reason == DropReason::banned);
    // Even traffic for a live media stream is dropped once banned.
    StreamSpec s;
    s.a.local = {*IpAddress::parse("203.0.113.1"), 30000};
    s.a.remote = {*IpAddress::parse("198.51.100.7"), 4000};
    s.b.local = {*IpAddress::parse("203.0.113.1"), 30002};
    s.b.remote = {*IpAddress::parse("192.0.2.2"), 4000};
    REQUIRE(p.media().create(s, 0));
    auto rtp = rtp_payload(1, 1);
    CHECK(decide_one(p, udp_meta("198.51.100.7", 4000, "203.0.113.1", 30000, &rtp), 2).reason ==
          DropReason::banned);
    CHECK(p.counters().drops[DropReason::banned] == 2);
}

TEST_CASE("A REGISTER flood is limited, then banned, with escalation") {
    auto cfg = PipelineConfig::defaults();
    cfg.ban_policy.violations_to_ban = 50;
    cfg.ban_policy.durations = {seconds(30), seconds(300)};
    Pipeline p(cfg);
    auto reg = text("REGISTER sip:example.com SIP/2.0\r\n");
    const auto m = udp_meta("198.51.100.7", 5060, "203.0.113.1", 5060, &reg);
    int to_sig = 0, limited = 0, banned = 0;
    for (int i = 0; i < 1000; ++i) {
        auto d = decide_one(p, m, millis(i));
        to_sig += d.action == Action::to_signaling;
        limited += d.reason == DropReason::rate_limited;
        banned += d.reason == DropReason::banned;
    }
    CHECK(to_sig >= 20);  // the burst
    CHECK(to_sig <= 30);
    CHECK(limited == 50);
    CHECK(banned == 1000 - to_sig - 50);
    CHECK(p.counters().events[PipelineEvent::bans_escalated] == 1);
    auto bans = p.bans().active(seconds(1));
    REQUIRE(bans.size() == 1);
    CHECK(bans[0].origin == BanOrigin::rate_limit);
    CHECK(bans[0].expires > seconds(30));
    // After the ban, a well-behaved rate passes again.
    CHECK(decide_one(p, m, seconds(40)).action == Action::to_signaling);
}

TEST_CASE("Trusted sources bypass rate limits, not bans") {
    auto cfg = PipelineConfig::defaults();
    cfg.trusted = {*Prefix::parse("10.0.0.0/8")};
    Pipeline p(cfg);
    auto inv = text("INVITE sip:x SIP/2.0\r\n");
    const auto m = udp_meta("10.1.2.3", 5060, "203.0.113.1", 5060, &inv);
    for (int i = 0; i < 500; ++i) REQUIRE(decide_one(p, m, i).action == Action::to_signaling);
    REQUIRE(p.bans().ban(*Prefix::parse("10.1.2.3"), seconds(5), BanOrigin::control, 0));
    CHECK(decide_one(p, m, 1000).reason == DropReason::banned);
}

TEST_CASE("TCP SYNs to SIP ports are limited; established TCP goes to the kernel") {
    auto cfg = PipelineConfig::defaults();
    cfg.ban_policy.enabled = false;
    Pipeline p(cfg);
    PacketMeta m = udp_meta("198.51.100.7", 40000, "203.0.113.1", 5061);
    m.l4_proto = 6;
    m.tcp_flags = 0x02;
    int kernel = 0;
    for (int i = 0; i < 100; ++i) kernel += decide_one(p, m, i).action == Action::to_kernel;
    CHECK(kernel == 20);
    m.tcp_flags = 0x10;  // ACK
    CHECK(decide_one(p, m, 200).action == Action::to_kernel);
}

TEST_CASE("Other ports, unallocated media ports, foreign destinations") {
    auto cfg = PipelineConfig::defaults();
    cfg.local_addresses = {*IpAddress::parse("203.0.113.1")};
    Pipeline p(cfg);
    CHECK(decide_one(p, udp_meta("198.51.100.7", 1, "203.0.113.1", 53), 0).reason ==
          DropReason::no_service);
    CHECK(decide_one(p, udp_meta("198.51.100.7", 1, "203.0.113.9", 5060), 0).reason ==
          DropReason::no_service);
    auto rtp = rtp_payload(1, 1);
    CHECK(decide_one(p, udp_meta("198.51.100.7", 1, "203.0.113.1", 31000, &rtp), 0).reason ==
          DropReason::no_session);
}

TEST_CASE("Fragments go to the kernel or are dropped by configuration") {
    auto cfg = PipelineConfig::defaults();
    PacketMeta m = udp_meta("198.51.100.7", 5060, "203.0.113.1", 5060);
    m.flags |= kFlagFragment;
    {
        Pipeline p(cfg);
        CHECK(decide_one(p, m, 0).action == Action::to_kernel);
    }
    cfg.fragments_to_kernel = false;
    Pipeline p(cfg);
    CHECK(decide_one(p, m, 0).reason == DropReason::fragment);
}

TEST_CASE("A parsed burst flows through parse_frames and decide with counters") {
    Pipeline p(PipelineConfig::defaults());
    std::vector<std::vector<std::uint8_t>> bytes;
    FrameSpec s;
    s.payload = text("OPTIONS sip:x SIP/2.0\r\n");
    bytes.push_back(build_frame(s));
    bytes.push_back(build_frame(s));
    bytes[1][24] ^= 0xff;  // bad IPv4 checksum
    bytes.push_back(std::vector<std::uint8_t>(10, 0));
    std::vector<Frame> frames;
    for (auto& b : bytes)
        frames.push_back(Frame{b.data(), static_cast<std::uint32_t>(b.size()),
                               static_cast<std::uint32_t>(b.size()), 0, 0});
    std::vector<PacketMeta> meta(frames.size());
    std::vector<Decision> out(frames.size());
    parse_frames(frames, meta, out);
    p.decide(meta, out, 0);
    CHECK(out[0].action == Action::to_signaling);
    CHECK(out[1].reason == DropReason::bad_checksum);
    CHECK(out[2].reason == DropReason::truncated);
    CHECK(p.counters().events[PipelineEvent::rx] == 3);
    CHECK(p.counters().events[PipelineEvent::dropped] == 2);
    CHECK(p.counters().drops[DropReason::bad_checksum] == 1);
}

TEST_CASE("Reload changes limits and keeps streams") {
    Pipeline p(PipelineConfig::defaults());
    StreamSpec s;
    s.a.local = {*IpAddress::parse("203.0.113.1"), 30000};
    s.a.remote = {*IpAddress::parse("198.51.100.7"), 4000};
    s.b.local = {*IpAddress::parse("203.0.113.1"), 30002};
    s.b.remote = {*IpAddress::parse("192.0.2.2"), 4000};
    auto id = p.media().create(s, 0);
    REQUIRE(id);
    auto cfg = PipelineConfig::defaults();
    cfg.sip_udp_ports = {5080};
    p.apply_config(cfg);
    auto opt = text("OPTIONS sip:x SIP/2.0\r\n");
    CHECK(decide_one(p, udp_meta("198.51.100.7", 5060, "203.0.113.1", 5080, &opt), 0).action ==
          Action::to_signaling);
    CHECK(decide_one(p, udp_meta("198.51.100.7", 5060, "203.0.113.1", 5060, &opt), 0).reason ==
          DropReason::no_service);
    CHECK(p.media().spec(*id) != nullptr);
}

TEST_CASE("A SIP port inside the media range stays SIP") {
    auto cfg = PipelineConfig::defaults();
    cfg.sip_udp_ports = {30500};
    Pipeline p(cfg);
    auto opt = text("OPTIONS sip:x SIP/2.0\r\n");
    CHECK(decide_one(p, udp_meta("198.51.100.7", 5060, "203.0.113.1", 30500, &opt), 0).action ==
          Action::to_signaling);
}
