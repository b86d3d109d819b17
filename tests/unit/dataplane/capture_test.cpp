// Capture decoding for replay: link types, HEP, IP fragments, TCP streams, TLS, bad input.
#include "dataplane/capture.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "frame_builder.hpp"

using namespace sbc::dataplane;
using sbc::dataplane::test::build_frame;
using sbc::dataplane::test::build_ip;
using sbc::dataplane::test::FrameSpec;
using sbc::dataplane::test::text;

namespace {

CaptureRecord record(const std::vector<std::uint8_t>& b, std::uint32_t link = 1,
                     sbc::base::Nanos t = 1000) {
    return CaptureRecord{t, link, b.data(), static_cast<std::uint32_t>(b.size()),
                         static_cast<std::uint32_t>(b.size())};
}

std::vector<std::uint8_t> prepend(std::vector<std::uint8_t> head,
                                  const std::vector<std::uint8_t>& b) {
    const std::size_t n = head.size();
    head.resize(n + b.size());
    if (!b.empty()) std::memcpy(head.data() + n, b.data(), b.size());
    return head;
}

// An IPv4 fragment of `udp` (UDP header + payload) at byte `offset`, `more` set or not.
std::vector<std::uint8_t> v4_fragment(const std::vector<std::uint8_t>& l4, std::size_t offset,
                                      std::size_t len, bool more, std::uint16_t id = 7) {
    std::vector<std::uint8_t> ip = {0x45,
                                    0,
                                    0,
                                    0,
                                    static_cast<std::uint8_t>(id >> 8),
                                    static_cast<std::uint8_t>(id),
                                    0,
                                    0,
                                    64,
                                    17,
                                    0,
                                    0,
                                    198,
                                    51,
                                    100,
                                    7,
                                    203,
                                    0,
                                    113,
                                    1};
    const std::uint16_t total = static_cast<std::uint16_t>(20 + len);
    ip[2] = static_cast<std::uint8_t>(total >> 8);
    ip[3] = static_cast<std::uint8_t>(total);
    const std::uint16_t fo = static_cast<std::uint16_t>((more ? 0x2000 : 0) | (offset / 8));
    ip[6] = static_cast<std::uint8_t>(fo >> 8);
    ip[7] = static_cast<std::uint8_t>(fo);
    const std::uint16_t c = static_cast<std::uint16_t>(~test::fold(test::sum16(ip.data(), 20)));
    ip[10] = static_cast<std::uint8_t>(c >> 8);
    ip[11] = static_cast<std::uint8_t>(c);
    // resize + memcpy rather than insert: GCC 12 at -O3 reports a false -Warray-bounds for a
    // vector range insert here.
    const std::size_t head = ip.size();
    ip.resize(head + len);
    std::memcpy(ip.data() + head, l4.data() + offset, len);
    return ip;
}

std::vector<std::uint8_t> udp_l4(const std::string& payload, std::uint16_t sport = 40000,
                                 std::uint16_t dport = 5060) {
    std::vector<std::uint8_t> u;
    test::put16(u, sport);
    test::put16(u, dport);
    test::put16(u, static_cast<std::uint16_t>(8 + payload.size()));
    test::put16(u, 0);  // no checksum (allowed over IPv4)
    u.insert(u.end(), payload.begin(), payload.end());
    return u;
}

std::vector<std::uint8_t> tcp_frame(std::uint32_t seq, const std::string& payload,
                                    std::uint8_t flags = 0x18, std::uint16_t dport = 5060) {
    FrameSpec s;
    s.proto = 6;
    s.dport = dport;
    s.tcp_flags = flags;
    s.payload = text(payload);
    auto f = build_frame(s);
    const std::size_t l4 = 14 + 20;
    f[l4 + 4] = static_cast<std::uint8_t>(seq >> 24);
    f[l4 + 5] = static_cast<std::uint8_t>(seq >> 16);
    f[l4 + 6] = static_cast<std::uint8_t>(seq >> 8);
    f[l4 + 7] = static_cast<std::uint8_t>(seq);
    return f;
}

std::string chunks_text(const std::vector<StreamChunk>& v, bool* gap = nullptr) {
    std::string s;
    for (const auto& c : v) {
        if (c.gap_before && gap) *gap = true;
        s.append(c.bytes);
    }
    return s;
}

}  // namespace

TEST_CASE("capture: link types carry IP to the same parse") {
    FrameSpec s;
    s.payload = text("OPTIONS sip:x SIP/2.0\r\n\r\n");
    const auto ip = build_ip(s);
    CaptureDecoder d;
    // Ethernet with a VLAN tag
    s.vlans = {42};
    auto eth = build_frame(s);
    auto p = d.decode(record(eth));
    REQUIRE(p.ok);
    CHECK(p.meta.flags & kFlagVlan);
    CHECK(p.meta.dst_port == 5060);
    // Linux cooked v1 (protocol at 14) and v2 (protocol at 0)
    std::vector<std::uint8_t> sll(16, 0);
    sll[14] = 0x08;
    p = d.decode(record(prepend(sll, ip), 113));
    CHECK(p.ok);
    std::vector<std::uint8_t> sll2(20, 0);
    sll2[0] = 0x08;
    p = d.decode(record(prepend(sll2, ip), 276));
    CHECK(p.ok);
    sll2[0] = 0x08;
    sll2[1] = 0x06;  // ARP
    p = d.decode(record(prepend(sll2, ip), 276));
    CHECK_FALSE(p.ok);
    CHECK(d.counters()[CaptureEvent::not_ip] == 1);
    // BSD loopback: AF_INET in host order
    p = d.decode(record(prepend({2, 0, 0, 0}, ip), 0));
    CHECK(p.ok);
    // Raw IP
    p = d.decode(record(ip, 101));
    CHECK(p.ok);
    CHECK(std::string(reinterpret_cast<const char*>(p.meta.payload), p.meta.payload_len) ==
          "OPTIONS sip:x SIP/2.0\r\n\r\n");
    // Unknown link type, cut link headers, snaplen-cut records
    p = d.decode(record(ip, 147));
    CHECK_FALSE(p.ok);
    CHECK(d.counters()[CaptureEvent::unknown_link_type] == 1);
    p = d.decode(record(std::vector<std::uint8_t>(5, 0), 113));
    CHECK(d.counters()[CaptureEvent::bad_link_header] == 1);
    auto cut = record(eth);
    cut.caplen = 30;
    p = d.decode(cut);
    CHECK_FALSE(p.ok);
    CHECK(d.counters()[CaptureEvent::snaplen_cut] == 1);
    CHECK(d.malformed()[DropReason::truncated] == 1);
}

TEST_CASE("capture: IPv4 fragments reassemble in any order; overlaps drop the datagram") {
    const std::string sip = "INVITE sip:1@x SIP/2.0\r\n" + std::string(3000, 'a');
    const auto l4 = udp_l4(sip);
    CaptureDecoder d;
    std::vector<std::vector<std::uint8_t>> frags = {v4_fragment(l4, 1480, 1480, true),
                                                    v4_fragment(l4, 0, 1480, true),
                                                    v4_fragment(l4, 2960, l4.size() - 2960, false)};
    Datagram got;
    for (auto& f : frags) {
        auto rec = record(f, 101);
        auto p = d.decode(rec);
        REQUIRE(p.ok);
        CHECK(p.meta.flags & kFlagFragment);
        got = d.reassemble(p, rec);
    }
    REQUIRE(got.ok);
    CHECK(got.meta.dst_port == 5060);
    CHECK(std::string(reinterpret_cast<const char*>(got.meta.payload), got.meta.payload_len) ==
          sip);
    CHECK(d.counters()[CaptureEvent::reassembled] == 1);
    CHECK(d.fragment_datagrams() == 0);

    // Overlap
    auto a = v4_fragment(l4, 0, 1480, true, 9), b = v4_fragment(l4, 1400, 1480, true, 9);
    auto ra = record(a, 101), rb = record(b, 101);
    CHECK_FALSE(d.reassemble(d.decode(ra), ra).ok);
    CHECK_FALSE(d.reassemble(d.decode(rb), rb).ok);
    CHECK(d.counters()[CaptureEvent::fragments_overlapping] == 1);

    // Incomplete datagrams expire; the table is bounded
    CaptureLimits lim;
    lim.max_fragment_datagrams = 2;
    CaptureDecoder small(lim);
    for (std::uint16_t id = 1; id <= 5; ++id) {
        auto f = v4_fragment(l4, 0, 1480, true, id);
        auto r = record(f, 101);
        CHECK_FALSE(small.reassemble(small.decode(r), r).ok);
    }
    CHECK(small.fragment_datagrams() == 2);
    CHECK(small.counters()[CaptureEvent::fragments_evicted] == 3);
    small.expire(sbc::base::seconds(60));
    CHECK(small.fragment_datagrams() == 0);
    CHECK(small.counters()[CaptureEvent::fragments_expired] == 2);
}

TEST_CASE("capture: IPv6 fragments reassemble") {
    const std::string sip = "REGISTER sip:x SIP/2.0\r\n" + std::string(2000, 'b');
    const auto l4 = udp_l4(sip);
    CaptureDecoder d;
    const auto src = *sbc::base::IpAddress::parse("2001:db8::7");
    const auto dst = *sbc::base::IpAddress::parse("2001:db8::1");
    auto frag = [&](std::size_t off, std::size_t len, bool more) {
        std::vector<std::uint8_t> ip = {0x60, 0, 0, 0};
        test::put16(ip, static_cast<std::uint16_t>(8 + len));
        ip.push_back(44);
        ip.push_back(64);
        ip.insert(ip.end(), src.bytes().begin(), src.bytes().end());
        ip.insert(ip.end(), dst.bytes().begin(), dst.bytes().end());
        ip.push_back(17);
        ip.push_back(0);
        test::put16(ip, static_cast<std::uint16_t>(off | (more ? 1 : 0)));
        ip.insert(ip.end(), {0, 0, 0, 5});
        ip.insert(ip.end(), l4.begin() + static_cast<long>(off),
                  l4.begin() + static_cast<long>(off + len));
        return ip;
    };
    auto f2 = frag(1232, l4.size() - 1232, false), f1 = frag(0, 1232, true);
    auto r2 = record(f2, 229), r1 = record(f1, 229);
    auto p2 = d.decode(r2);
    REQUIRE(p2.ok);
    CHECK_FALSE(d.reassemble(p2, r2).ok);
    auto got = d.reassemble(d.decode(r1), r1);
    REQUIRE(got.ok);
    CHECK(got.meta.src == src);
    CHECK(std::string(reinterpret_cast<const char*>(got.meta.payload), got.meta.payload_len) ==
          sip);
}

TEST_CASE("capture: TCP streams are reassembled across retransmissions, reordering and gaps") {
    CaptureDecoder d;
    // Chunks are views valid until the next call: copied out after each segment.
    std::string got;
    bool gap = false;
    auto feed = [&](std::vector<std::uint8_t> f) {
        auto rec = record(f);
        auto p = d.decode(rec);
        REQUIRE(p.ok);
        std::vector<StreamChunk> out;
        d.tcp_segment(p, out);
        got += chunks_text(out, &gap);
    };
    feed(tcp_frame(99, "", 0x02));  // SYN
    feed(tcp_frame(100, "AAAA"));
    feed(tcp_frame(108, "CCCC"));  // early
    CHECK(got == "AAAA");
    feed(tcp_frame(100, "AAAA"));    // retransmission
    feed(tcp_frame(102, "AABBBB"));  // overlapping retransmission with new bytes
    CHECK(got == "AAAABBBBCCCC");
    CHECK_FALSE(gap);
    CHECK(d.counters()[CaptureEvent::tcp_retransmitted] == 2);
    CHECK(d.counters()[CaptureEvent::tcp_out_of_order] == 1);
    // A gap that never fills: released when the hold buffer cannot wait any longer (FIN).
    got.clear();
    feed(tcp_frame(200, "ZZ"));
    CHECK(got.empty());
    feed(tcp_frame(202, "", 0x11));  // FIN
    CHECK(got == "ZZ");
    CHECK(gap);
    CHECK(d.counters()[CaptureEvent::tcp_gaps] == 1);
    CHECK(d.take_closed_flows().size() == 1);
    CHECK(d.tcp_flows() == 0);
}

TEST_CASE("capture: TLS streams are counted, not decoded") {
    CaptureDecoder d;
    std::vector<StreamChunk> out;
    auto f = tcp_frame(1, "\x16\x03\x01\x00\x05hello", 0x18, 5061);
    auto rec = record(f);
    d.tcp_segment(d.decode(rec), out);
    auto g = tcp_frame(1, std::string("\x17\x03\x03\x00\x02xx", 7), 0x18, 443);
    auto rg = record(g);
    d.tcp_segment(d.decode(rg), out);
    CHECK(out.empty());
    CHECK(d.counters()[CaptureEvent::tls_segments] == 2);
}

TEST_CASE("capture: HEPv3 and HEPv2 give the inner SIP with its own addresses and time") {
    CaptureDecoder d;
    const std::string sip = "OPTIONS sip:x SIP/2.0\r\n\r\n";
    std::vector<std::uint8_t> hep = {'H', 'E', 'P', '3', 0, 0};
    auto chunk = [&](std::uint16_t type, std::vector<std::uint8_t> v) {
        test::put16(hep, 0);
        test::put16(hep, type);
        test::put16(hep, static_cast<std::uint16_t>(6 + v.size()));
        hep.insert(hep.end(), v.begin(), v.end());
    };
    chunk(1, {2});
    chunk(2, {17});
    chunk(3, {192, 0, 2, 10});
    chunk(4, {203, 0, 113, 1});
    chunk(7, {0x13, 0xc4});
    chunk(8, {0x13, 0xc4});
    chunk(9, {0x65, 0, 0, 0});
    chunk(10, {0, 0, 0, 5});
    chunk(11, {1});
    chunk(15, text(sip));
    hep[4] = static_cast<std::uint8_t>(hep.size() >> 8);
    hep[5] = static_cast<std::uint8_t>(hep.size());
    FrameSpec s;
    s.dport = 9060;
    s.payload = hep;
    auto f = build_frame(s);
    auto p = d.decode(record(f));
    REQUIRE(p.ok);
    REQUIRE(d.is_hep(p.meta));
    HepMessage m;
    REQUIRE(d.unwrap_hep(p.meta, p.time, m));
    CHECK(m.meta.src == *sbc::base::IpAddress::parse("192.0.2.10"));
    CHECK(m.meta.src_port == 5060);
    CHECK(m.time == 0x65000000LL * 1'000'000'000 + 5000);
    CHECK(std::string(reinterpret_cast<const char*>(m.meta.payload), m.meta.payload_len) == sip);

    // HEPv2, IPv4
    std::vector<std::uint8_t> v2 = {2,   16, 2, 17, 0x13, 0xc4, 0x13, 0xc5, 192, 0, 2, 11, 203, 0,
                                    113, 1,  1, 0,  0,    0,    0,    0,    0,   0, 0, 0,  0,   0};
    v2.insert(v2.end(), sip.begin(), sip.end());
    s.payload = v2;
    f = build_frame(s);
    p = d.decode(record(f));
    REQUIRE(d.unwrap_hep(p.meta, p.time, m));
    CHECK(m.meta.dst_port == 5061);
    CHECK(m.time == 1'000'000'000);
    // Truncated and lying lengths are refused and counted.
    for (std::size_t cut = 1; cut < hep.size(); cut += 7) {
        s.payload.assign(hep.begin(), hep.begin() + static_cast<long>(cut));
        f = build_frame(s);
        p = d.decode(record(f));
        CHECK_FALSE(d.unwrap_hep(p.meta, p.time, m));
    }
    CHECK(d.counters()[CaptureEvent::hep_malformed] > 0);
}
