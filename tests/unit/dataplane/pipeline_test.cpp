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

namespace {
// An ICMPv6 neighbour discovery message (RFC 4861 §4): type, code 0, checksum (not verified
// here), 4 reserved/flag bytes and a target address.
std::vector<std::uint8_t> nd_message(std::uint8_t type) {
    std::vector<std::uint8_t> m{type, 0, 0, 0, 0, 0, 0, 0};
    const auto t = *IpAddress::parse("2001:db8::1");
    m.insert(m.end(), t.bytes().begin(), t.bytes().end());
    return m;
}
Decision parse_and_decide(Pipeline& p, const FrameSpec& s) {
    auto f = build_frame(s);
    auto parsed = parse_one(f);
    p.decide(std::span<const PacketMeta>(&parsed.meta, 1), std::span<Decision>(&parsed.decision, 1),
             0);
    return parsed.decision;
}
FrameSpec nd_frame(std::uint8_t type, const std::string& src, const std::string& dst) {
    FrameSpec s;
    s.v6 = true;
    s.proto = 58;
    s.src = src;
    s.dst = dst;
    s.hop_limit = 255;
    s.payload = nd_message(type);
    return s;
}
}  // namespace

TEST_CASE("IPv6 neighbour discovery for our addresses goes to the kernel") {
    auto cfg = PipelineConfig::defaults();
    cfg.local_addresses = {*IpAddress::parse("2001:db8::1"), *IpAddress::parse("203.0.113.1")};
    Pipeline p(cfg);
    const std::string peer = "fe80::2";
    // Neighbour solicitation to the solicited-node group of 2001:db8::1 (RFC 4291 §2.7.1).
    CHECK(parse_and_decide(p, nd_frame(135, peer, "ff02::1:ff00:1")).action == Action::to_kernel);
    // ... and unicast to it (reachability confirmation).
    CHECK(parse_and_decide(p, nd_frame(135, peer, "2001:db8::1")).action == Action::to_kernel);
    // Unsolicited neighbour and router advertisements to all nodes.
    CHECK(parse_and_decide(p, nd_frame(136, peer, "ff02::1")).action == Action::to_kernel);
    CHECK(parse_and_decide(p, nd_frame(134, peer, "ff02::1")).action == Action::to_kernel);
    // A solicited advertisement answers the host's own link-local address.
    CHECK(parse_and_decide(p, nd_frame(136, peer, "fe80::1")).action == Action::to_kernel);
    // Duplicate address detection: a solicitation from the unspecified address (RFC 4862 §5.4.2).
    CHECK(parse_and_decide(p, nd_frame(135, "::", "ff02::1:ff00:1")).action == Action::to_kernel);
    CHECK(p.counters().events[PipelineEvent::to_kernel] == 6);

    SECTION("ND for someone else's solicited-node group is not ours") {
        auto d = parse_and_decide(p, nd_frame(135, peer, "ff02::1:ff00:2"));
        CHECK(d.action == Action::drop);
        CHECK(d.reason == DropReason::no_service);
    }
    SECTION("A hop limit below 255 means the sender is off-link (RFC 4861 §7.1.1)") {
        auto s = nd_frame(135, peer, "ff02::1:ff00:1");
        s.hop_limit = 254;
        CHECK(parse_and_decide(p, s).reason == DropReason::no_service);
    }
    SECTION("Other ICMPv6 to multicast is not neighbour discovery") {
        CHECK(parse_and_decide(p, nd_frame(128, peer, "ff02::1")).reason == DropReason::no_service);
        auto s = nd_frame(135, peer, "ff02::1:ff00:1");
        s.payload[1] = 1;  // code must be 0
        CHECK(parse_and_decide(p, s).reason == DropReason::no_service);
    }
    SECTION("The unspecified source is accepted for DAD solicitations only") {
        CHECK(parse_and_decide(p, nd_frame(136, "::", "ff02::1")).reason == DropReason::bad_source);
        CHECK(parse_and_decide(p, nd_frame(135, "::", "2001:db8::1")).reason ==
              DropReason::bad_source);
        FrameSpec u;
        u.v6 = true;
        u.src = "::";
        u.dst = "2001:db8::1";
        u.dport = 5060;
        u.payload = text("OPTIONS sip:x SIP/2.0\r\n");
        CHECK(parse_and_decide(p, u).reason == DropReason::bad_source);
    }
}
