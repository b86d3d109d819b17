// Pipeline::relay_fast against the generic pipeline (parse_frames -> decide -> rewrite_frame):
// the same input through both must give byte-identical frames, the same decisions, the same
// statistics, counters and media events.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <random>

#include "dataplane/rtp_stats.hpp"
#include "frame_builder.hpp"

using namespace sbc::dataplane;
using namespace sbc::dataplane::test;
using sbc::base::Endpoint;
using sbc::base::IpAddress;
using sbc::base::millis;
using sbc::base::Nanos;
using sbc::base::seconds;

namespace {
const char* kLocal = "203.0.113.1";

Endpoint ep(const char* a, std::uint16_t p) {
    return Endpoint{*IpAddress::parse(a), p};
}

// Stream k: leg a on 30000 + 8k (callers 198.51.100.k:4000), leg b on 30000 + 8k + 4
// (callees 192.0.2.k:6000); odd streams use rtcp-mux.
StreamSpec stream(unsigned k) {
    StreamSpec s;
    s.call_id = k;
    s.a.local = ep(kLocal, static_cast<std::uint16_t>(30000 + 8 * k));
    s.a.remote = Endpoint{*IpAddress::parse("198.51.100." + std::to_string(k + 1)), 4000};
    s.b.local = ep(kLocal, static_cast<std::uint16_t>(30004 + 8 * k));
    s.b.remote = Endpoint{*IpAddress::parse("192.0.2." + std::to_string(k + 1)), 6000};
    s.rtcp_mux = k % 2 == 1;
    return s;
}

PipelineConfig config() {
    auto c = PipelineConfig::defaults();
    c.local_addresses = {*IpAddress::parse(kLocal)};
    c.sip_udp_ports = {5060, 30040};  // 30040: stream 5's leg a port is SIP
    return c;
}

std::vector<std::uint8_t> rtcp_payload() {
    std::vector<std::uint8_t> p(28, 0);
    p[0] = 0x80;
    p[1] = 200;  // SR
    p[3] = 6;
    return p;
}

const std::uint8_t kOurMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x10};
const std::uint8_t kNextHop[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x99};

// What the DPDK worker does to a frame the generic pipeline relays (rewrite_l2).
void rewrite_l2(std::uint8_t* eth, const std::uint8_t* next_hop) {
    std::memcpy(eth, next_hop != nullptr ? next_hop : eth + 6, 6);
    std::memcpy(eth + 6, kOurMac, 6);
}

struct Output {
    std::vector<std::vector<std::uint8_t>> frames;  // after the pipeline (rewritten if relayed)
    std::vector<Action> actions;
    std::size_t fast = 0;
};

// The generic pipeline only, as every backend ran it before the fast path.
Output run_generic(Pipeline& p, std::vector<std::vector<std::uint8_t>> in, Nanos now,
                   const std::uint8_t* next_hop, bool ethernet = true,
                   const ParseOptions& options = {}) {
    const std::size_t n = in.size();
    std::vector<Frame> frames(n);
    for (std::size_t i = 0; i < n; ++i)
        frames[i] = Frame{in[i].data(), static_cast<std::uint32_t>(in[i].size()),
                          static_cast<std::uint32_t>(in[i].size()), 0, 0};
    std::vector<PacketMeta> meta(n);
    std::vector<Decision> d(n);
    parse_frames(frames, meta, d, options);
    p.decide(meta, d, now);
    Output out;
    for (std::size_t i = 0; i < n; ++i) {
        if (d[i].action == Action::relay) {
            if (Pipeline::rewrite_frame(frames[i], meta[i], p.forward_of(d[i]))) {
                if (ethernet) rewrite_l2(frames[i].data, next_hop);
            } else
                d[i].action = Action::drop;
        }
        out.actions.push_back(d[i].action);
    }
    out.frames = std::move(in);
    return out;
}

// The fast path first, then the generic pipeline on what it left, in order (the DPDK worker).
// `ethernet` false: the caller rewrites the Ethernet header itself (RelayL2 empty).
// `options`: as the DPDK worker passes them (UDP checksums verified, or not when the NIC did).
Output run_fast(Pipeline& p, std::vector<std::vector<std::uint8_t>> in, Nanos now,
                const std::uint8_t* next_hop = nullptr, bool ethernet = true,
                const ParseOptions& options = {}) {
    const std::size_t n = in.size();
    std::vector<Frame> frames(n);
    for (std::size_t i = 0; i < n; ++i)
        frames[i] = Frame{in[i].data(), static_cast<std::uint32_t>(in[i].size()),
                          static_cast<std::uint32_t>(in[i].size()), 0, 0};
    std::vector<std::uint8_t> relayed(n, 0xee);
    Output out;
    out.fast = p.relay_fast(frames, relayed, now, options,
                            ethernet ? RelayL2{kOurMac, next_hop} : RelayL2{});
    std::vector<Frame> rest;
    std::vector<std::size_t> at;
    for (std::size_t i = 0; i < n; ++i) {
        REQUIRE(relayed[i] <= 1);
        if (!relayed[i]) {
            rest.push_back(frames[i]);
            at.push_back(i);
        }
    }
    std::vector<PacketMeta> meta(rest.size());
    std::vector<Decision> d(rest.size());
    parse_frames(rest, meta, d, options);
    p.decide(meta, d, now);
    out.actions.assign(n, Action::relay);
    for (std::size_t k = 0; k < rest.size(); ++k) {
        if (d[k].action == Action::relay) {
            if (Pipeline::rewrite_frame(rest[k], meta[k], p.forward_of(d[k]))) {
                if (ethernet) rewrite_l2(rest[k].data, next_hop);
            } else
                d[k].action = Action::drop;
        }
        out.actions[at[k]] = d[k].action;
    }
    out.frames = std::move(in);
    return out;
}

void check_same_state(Pipeline& g, Pipeline& f, const std::vector<StreamId>& ids) {
    for (auto id : ids) {
        auto a = g.media().stats(id);
        auto b = f.media().stats(id);
        REQUIRE(a);
        REQUIRE(b);
        CHECK(a->last_packet == b->last_packet);
        for (int leg = 0; leg < 2; ++leg) {
            const LegStats& x = leg ? a->b : a->a;
            const LegStats& y = leg ? b->b : b->a;
            INFO("stream " << id.slot << " leg " << leg);
            CHECK(x.packets == y.packets);
            CHECK(x.bytes == y.bytes);
            CHECK(x.rtcp_packets == y.rtcp_packets);
            CHECK(x.lost == y.lost);
            CHECK(x.expected == y.expected);
            CHECK(x.jitter == y.jitter);
            CHECK(x.latched_rtp == y.latched_rtp);
            CHECK(x.latched_rtcp == y.latched_rtcp);
        }
    }
    for (std::size_t e = 0; e < kPipelineEventCount; ++e)
        CHECK(g.counters().events[static_cast<PipelineEvent>(e)] ==
              f.counters().events[static_cast<PipelineEvent>(e)]);
    for (std::size_t r = 0; r < kDropReasonCount; ++r)
        CHECK(g.counters().drops[static_cast<DropReason>(r)] ==
              f.counters().drops[static_cast<DropReason>(r)]);
    MediaEvent eg[64], ef[64];
    const auto ng = g.media().drain_events(eg);
    REQUIRE(ng == f.media().drain_events(ef));
    for (std::size_t k = 0; k < ng; ++k) {
        CHECK(eg[k].kind == ef[k].kind);
        CHECK(eg[k].id == ef[k].id);
        CHECK(eg[k].leg == ef[k].leg);
        CHECK(eg[k].source == ef[k].source);
    }
}
}  // namespace

TEST_CASE("The fast path relays exactly what the generic pipeline relays, byte for byte") {
    Pipeline generic(config()), fast(config());
    std::vector<StreamId> ids;
    constexpr unsigned kStreams = 8;
    for (unsigned k = 0; k < kStreams; ++k) {
        auto s = stream(k);
        if (k == 6) s.b.remote = Endpoint{};  // answer not yet known: peer_unknown
        auto a = generic.media().create(s, 0);
        auto b = fast.media().create(s, 0);
        REQUIRE(a);
        REQUIRE(b);
        REQUIRE(*a == *b);
        ids.push_back(*a);
    }
    // An IPv6 stream on the same pipeline: never fast, always equal.
    StreamSpec v6;
    v6.a.local = ep("2001:db8::1", 31000);
    v6.a.remote = ep("2001:db8::10", 4000);
    v6.b.local = ep("2001:db8::1", 31004);
    v6.b.remote = ep("2001:db8::20", 6000);
    {
        auto c = config();
        c.local_addresses.push_back(*IpAddress::parse("2001:db8::1"));
        generic.apply_config(c);
        fast.apply_config(c);
        auto a = generic.media().create(v6, 0);
        REQUIRE(a);
        REQUIRE(fast.media().create(v6, 0));
        ids.push_back(*a);
    }

    std::mt19937 rng(1234);
    std::array<std::uint16_t, kStreams * 2> seq{};
    std::array<std::uint32_t, kStreams * 2> ts{};
    std::size_t total_fast = 0, total_relayed = 0, skipped = 0;
    Nanos now = millis(1);
    for (int burst = 0; burst < 400; ++burst) {
        // Time: mostly 1-30 ms per burst, now and then a silence long enough to re-latch.
        now += burst % 97 == 96 ? seconds(2) : millis(1 + rng() % 30);
        if (burst == 200) {  // a ban on one caller, added to both pipelines
            const auto pfx = *sbc::base::Prefix::parse("198.51.100.3");
            REQUIRE(generic.bans().ban(pfx, seconds(3600), BanOrigin::control, now));
            REQUIRE(fast.bans().ban(pfx, seconds(3600), BanOrigin::control, now));
        }
        std::vector<std::vector<std::uint8_t>> frames;
        const unsigned n = 1 + rng() % 40;
        for (unsigned i = 0; i < n; ++i) {
            const unsigned k = rng() % kStreams;
            const unsigned leg = rng() % 2;
            const auto s = stream(k);
            const LegSpec& l = leg ? s.b : s.a;
            FrameSpec fs;
            fs.src = l.remote.addr.to_string();
            fs.sport = l.remote.port;
            fs.dst = kLocal;
            fs.dport = l.local.port;
            auto& q = seq[k * 2 + leg];
            auto& t = ts[k * 2 + leg];
            const unsigned kind = rng() % 100;
            q = static_cast<std::uint16_t>(q + (kind < 3 ? 2000 + rng() % 60000 : 1));
            t += 160;
            fs.payload = rtp_payload(q, t, 20 + rng() % 200);
            if (kind < 70) {
                // plain RTP from the signaled (then latched) source
            } else if (kind < 76) {
                fs.payload = rtcp_payload();  // RTCP: port + 1, or the RTP port with mux
                if (!s.rtcp_mux) fs.dport = static_cast<std::uint16_t>(fs.dport + 1);
            } else if (kind < 80) {
                fs.sport = static_cast<std::uint16_t>(fs.sport + 1 + rng() % 3);  // NAT/hijack
            } else if (kind < 82) {
                fs.vlans = {100};
            } else if (kind < 84) {
                fs.ip_options = {1, 1, 1, 0};  // NOPs + EOL
            } else if (kind < 86) {
                fs.udp_checksum = false;
            } else if (kind < 88) {
                fs.frag_field = 0x4000;  // DF: still the fast case
            } else if (kind < 90) {
                fs.frag_field = 0x2000;  // MF: a fragment, never relayed
            } else if (kind < 92) {
                fs.dport = 5060;
                fs.payload = text("OPTIONS sip:x SIP/2.0\r\n\r\n");
            } else if (kind < 94) {
                fs.v6 = true;
                fs.src = "2001:db8::10";
                fs.dst = "2001:db8::1";
                fs.sport = 4000;
                fs.dport = static_cast<std::uint16_t>(31000 + 4 * leg);
            } else if (kind < 96) {
                fs.dport = static_cast<std::uint16_t>(30000 + 8 * kStreams + 2);  // no stream
            } else if (kind < 97) {
                fs.src = "127.0.0.1";  // bad source
            }
            auto bytes = build_frame(fs);
            if (kind == 97) bytes[14 + 10] ^= 0x5a;  // IPv4 header checksum broken
            if (kind == 69 && !fs.v6 && fs.vlans.empty() && fs.ip_options.empty())
                bytes[14 + 20 + 6] ^= 0x21;                  // RTP with its UDP checksum broken
            if (kind == 98) bytes.resize(bytes.size() - 3);  // truncated datagram
            if (kind == 99) bytes.insert(bytes.end(), {0, 0, 0, 0, 0, 0});  // Ethernet padding
            frames.push_back(std::move(bytes));
        }
        // L2: back to the sender, or (odd bursts) to a configured next hop; every fifth
        // burst left to the caller (no Ethernet rewrite by either).
        const std::uint8_t* next_hop = burst % 2 ? kNextHop : nullptr;
        const bool ethernet = burst % 5 != 4;
        // Every third burst with UDP checksums not verified (a NIC did it): both paths then
        // relay a frame whose UDP checksum is wrong, and update it alike.
        ParseOptions options;
        options.verify_udp_checksum = burst % 3 != 2;
        auto g = run_generic(generic, frames, now, next_hop, ethernet, options);
        auto f = run_fast(fast, frames, now, next_hop, ethernet, options);
        INFO("burst " << burst);
        // The generic pipeline rewrites a burst after deciding all of it, so its frames take
        // the forward as it stands at the end of the burst; the fast path takes it as it is
        // when the frame comes. They differ only for the frames of a stream whose leg latched
        // or re-latched later in the same burst: those are compared by decision only.
        MediaEvent eg[64], ef[64];
        const auto ng = generic.media().drain_events(eg);
        REQUIRE(ng == fast.media().drain_events(ef));
        std::vector<std::uint64_t> latched_now;
        for (std::size_t k = 0; k < ng; ++k) {
            CHECK(eg[k].kind == ef[k].kind);
            CHECK(eg[k].id == ef[k].id);
            CHECK(eg[k].leg == ef[k].leg);
            CHECK(eg[k].source == ef[k].source);
            latched_now.push_back(eg[k].call_id);
        }
        for (std::size_t i = 0; i < frames.size(); ++i) {
            INFO("frame " << i << " of " << frames.size());
            REQUIRE(name(g.actions[i]) == name(f.actions[i]));
            const auto m = parse_one(frames[i]).meta;
            const std::uint64_t call = (m.dst_port - 30000u) / 8;
            if (std::find(latched_now.begin(), latched_now.end(), call) == latched_now.end())
                REQUIRE(g.frames[i] == f.frames[i]);
            else
                ++skipped;
        }
        total_fast += f.fast;
        for (auto a : g.actions) total_relayed += a == Action::relay;
        if (burst % 50 == 49) check_same_state(generic, fast, ids);
        fast.media().poll(now, 1u << 20);
        generic.media().poll(now, 1u << 20);
    }
    check_same_state(generic, fast, ids);
    // The comparison means something only if most relayed frames took the fast path.
    CHECK(total_fast > total_relayed / 2);
    CHECK(total_fast < total_relayed);
    CHECK(skipped < total_relayed / 20);
}

TEST_CASE("The fast path leaves unlatched legs, banned sources and RTCP on mux to the pipeline") {
    Pipeline p(config());
    auto id = p.media().create(stream(1), 0);  // rtcp-mux
    REQUIRE(id);
    auto rtp_frame = [](std::uint16_t seq, const char* src = "198.51.100.2") {
        FrameSpec fs;
        fs.src = src;
        fs.sport = 4000;
        fs.dst = kLocal;
        fs.dport = 30008;
        fs.payload = rtp_payload(seq, seq * 160u);
        return build_frame(fs);
    };
    auto send = [&](std::vector<std::uint8_t> bytes, Nanos now) {
        return run_fast(p, {std::move(bytes)}, now);
    };
    // The first packet latches: the generic pipeline's job.
    auto o = send(rtp_frame(1), millis(1));
    CHECK(o.fast == 0);
    CHECK(o.actions[0] == Action::relay);
    // Latched: fast.
    o = send(rtp_frame(2), millis(2));
    CHECK(o.fast == 1);
    // RTCP on the mux port: generic (it latches RTCP separately).
    FrameSpec rtcp;
    rtcp.src = "198.51.100.2";
    rtcp.sport = 4000;
    rtcp.dst = kLocal;
    rtcp.dport = 30008;
    rtcp.payload = rtcp_payload();
    o = send(build_frame(rtcp), millis(3));
    CHECK(o.fast == 0);
    CHECK(o.actions[0] == Action::relay);
    // Another source: generic, rejected (the latched one is not silent).
    o = send(rtp_frame(3, "198.51.100.99"), millis(4));
    CHECK(o.fast == 0);
    CHECK(o.actions[0] == Action::drop);
    // A banned source: generic, dropped as banned; bans still come first.
    REQUIRE(p.bans().ban(*sbc::base::Prefix::parse("198.51.100.0/24"), seconds(60),
                         BanOrigin::control, millis(5)));
    o = send(rtp_frame(4), millis(6));
    CHECK(o.fast == 0);
    CHECK(o.actions[0] == Action::drop);
    CHECK(p.counters().drops[DropReason::banned] == 1);
    REQUIRE(p.bans().unban(*sbc::base::Prefix::parse("198.51.100.0/24")));
    o = send(rtp_frame(5), millis(7));
    CHECK(o.fast == 1);
    // A reload that makes the local address foreign turns the fast path off for it.
    auto c = config();
    c.local_addresses = {*IpAddress::parse("203.0.113.99")};
    p.apply_config(c);
    o = send(rtp_frame(6), millis(8));
    CHECK(o.fast == 0);
    CHECK(o.actions[0] == Action::drop);
    auto st = p.media().stats(*id);
    REQUIRE(st);
    CHECK(st->a.packets == 4);  // 1, 2, RTCP, 5
    CHECK(st->a.rtcp_packets == 1);
}

TEST_CASE("The ban filter clears sources quickly and never misses a ban") {
    BanTable t(8192);
    auto word = [](const char* a) {
        const auto ip = *IpAddress::parse(a);
        std::uint32_t w;
        std::memcpy(&w, ip.bytes().data() + 12, 4);
        return w;
    };
    CHECK_FALSE(t.may_be_banned_v4(word("198.51.100.7")));
    REQUIRE(t.ban(*sbc::base::Prefix::parse("198.51.100.7"), seconds(60), BanOrigin::control, 0));
    REQUIRE(t.ban(*sbc::base::Prefix::parse("192.0.2.0/24"), seconds(60), BanOrigin::control, 0));
    CHECK(t.may_be_banned_v4(word("198.51.100.7")));
    CHECK(t.may_be_banned_v4(word("192.0.2.200")));
    CHECK_FALSE(t.may_be_banned_v4(word("203.0.113.5")));
    CHECK_FALSE(t.may_be_banned_v4(word("10.1.2.3")));
    // Every banned address is "maybe" with many bans in the table.
    std::mt19937 rng(7);
    std::vector<std::uint32_t> banned;
    for (int i = 0; i < 500; ++i) {
        const std::uint32_t a = (rng() | 0x01000000u) & 0xdfffffffu;
        REQUIRE(t.ban(sbc::base::Prefix(IpAddress::v4(a), 32), seconds(60), BanOrigin::control, 0));
        banned.push_back(a);
    }
    for (auto a : banned) {
        const auto ip = IpAddress::v4(a);
        std::uint32_t w;
        std::memcpy(&w, ip.bytes().data() + 12, 4);
        CHECK(t.may_be_banned_v4(w));
        CHECK(t.is_banned(ip, 1));
    }
    // Removals (with rebuilds of the filter) keep the others covered.
    for (std::size_t i = 0; i < banned.size(); i += 2)
        REQUIRE(t.unban(sbc::base::Prefix(IpAddress::v4(banned[i]), 32)));
    for (std::size_t i = 1; i < banned.size(); i += 2) {
        std::uint32_t w;
        std::memcpy(&w, IpAddress::v4(banned[i]).bytes().data() + 12, 4);
        CHECK(t.may_be_banned_v4(w));
    }
    // A ban shorter than /16 makes every IPv4 source "maybe".
    REQUIRE(t.ban(*sbc::base::Prefix::parse("10.0.0.0/8"), seconds(60), BanOrigin::control, 0));
    CHECK(t.may_be_banned_v4(word("10.200.1.1")));
}

TEST_CASE("The fast path relays nothing without a media port range") {
    auto c = config();
    c.media_port_min = 40000;
    c.media_port_max = 30000;
    Pipeline p(c);
    for (std::uint16_t port : {20000, 29999, 30000, 35000, 40000, 65535}) {
        FrameSpec fs;
        fs.src = "198.51.100.2";
        fs.sport = 4000;
        fs.dst = kLocal;
        fs.dport = port;
        fs.payload = rtp_payload(1, 160);
        auto o = run_fast(p, {build_frame(fs), build_frame(fs)}, millis(1));
        CHECK(o.fast == 0);
        CHECK(o.actions[0] == Action::drop);
    }
}

TEST_CASE("The RTP sequence update's shortcuts agree with the full RFC 3550 A.1 update") {
    struct SeqState {
        std::uint16_t max_seq = 0, base_seq = 0, cycles = 0;
        std::uint8_t probation = 0, rtp_state = 0;
        std::uint32_t bad_seq = 0, received = 0;
    };
    std::mt19937 rng(99);
    for (int run = 0; run < 50; ++run) {
        SeqState quick, full;
        std::uint16_t seq = static_cast<std::uint16_t>(rng());
        for (int i = 0; i < 2000; ++i) {
            // In order mostly; repeats and late packets (also while in probation, as a source
            // repeating its sequence number keeps it), jumps, and the packet after a jump (a
            // restarted source).
            const unsigned kind = rng() % 100;
            if (kind < 60)
                ++seq;
            else if (kind < 70)
                ;  // repeated
            else if (kind < 80)
                seq = static_cast<std::uint16_t>(seq - 1 - rng() % 150);
            else if (kind < 90)
                seq = static_cast<std::uint16_t>(seq + 2000 + rng() % 60000);
            else if (kind < 95)
                seq = static_cast<std::uint16_t>(full.bad_seq);
            else
                seq = static_cast<std::uint16_t>(seq + 2 + rng() % 10);
            sbc::dataplane::rtp_stats::update_seq(quick, seq);
            sbc::dataplane::rtp_stats::update_seq_full(full, seq);
            INFO("run " << run << " packet " << i << " seq " << seq);
            REQUIRE(quick.max_seq == full.max_seq);
            REQUIRE(quick.base_seq == full.base_seq);
            REQUIRE(quick.cycles == full.cycles);
            REQUIRE(quick.probation == full.probation);
            REQUIRE(quick.rtp_state == full.rtp_state);
            REQUIRE(quick.bad_seq == full.bad_seq);
            REQUIRE(quick.received == full.received);
        }
    }
}
