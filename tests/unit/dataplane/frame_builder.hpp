#pragma once
// Builds test frames byte by byte: Ethernet (+802.1Q tags), IPv4 (+options, fragments) or
// IPv6 (+extension headers), UDP or TCP, with correct checksums unless told otherwise.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/base.hpp"
#include "dataplane/dataplane.hpp"

namespace sbc::dataplane::test {

inline std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t s = 0) {
    for (std::size_t i = 0; i + 1 < n; i += 2) s += (p[i] << 8) | p[i + 1];
    if (n & 1) s += p[n - 1] << 8;
    return s;
}
inline std::uint16_t fold(std::uint32_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<std::uint16_t>(s);
}

struct FrameSpec {
    std::vector<std::uint16_t> vlans;  // tags, outer first
    std::uint16_t vlan_tpid_outer = 0x8100;
    bool v6 = false;
    std::string src = "198.51.100.7", dst = "203.0.113.1";
    std::uint8_t proto = 17;
    std::uint16_t sport = 40000, dport = 5060;
    std::vector<std::uint8_t> payload;
    std::vector<std::uint8_t> ip_options;   // IPv4 options (multiple of 4)
    std::vector<std::uint8_t> ext_headers;  // IPv6: raw extension header bytes
    int first_next_header = -1;             // IPv6: next header after the fixed header (-1: proto)
    std::uint16_t frag_field = 0;           // IPv4 flags+offset
    std::uint8_t tcp_flags = 0x02;
    bool udp_checksum = true;
    std::uint8_t hop_limit = 64;  // IPv4 TTL / IPv6 hop limit
};

inline void put16(std::vector<std::uint8_t>& v, std::uint16_t x) {
    v.push_back(static_cast<std::uint8_t>(x >> 8));
    v.push_back(static_cast<std::uint8_t>(x));
}

inline std::vector<std::uint8_t> rtp_payload(std::uint16_t seq, std::uint32_t ts,
                                             std::size_t len = 172, std::uint8_t fill = 0xab) {
    std::vector<std::uint8_t> p(len, fill);
    p[0] = 0x80;
    p[1] = 0;  // PCMU
    p[2] = static_cast<std::uint8_t>(seq >> 8);
    p[3] = static_cast<std::uint8_t>(seq);
    p[4] = static_cast<std::uint8_t>(ts >> 24);
    p[5] = static_cast<std::uint8_t>(ts >> 16);
    p[6] = static_cast<std::uint8_t>(ts >> 8);
    p[7] = static_cast<std::uint8_t>(ts);
    p[8] = 0x12;
    p[9] = 0x34;
    p[10] = 0x56;
    p[11] = 0x78;  // SSRC
    return p;
}

inline std::vector<std::uint8_t> text(const std::string& s) {
    return {s.begin(), s.end()};
}

// L4 header + payload with checksum computed over the pseudo-header.
inline std::vector<std::uint8_t> l4_bytes(const FrameSpec& s, const std::uint8_t* src,
                                          const std::uint8_t* dst, std::size_t alen) {
    std::vector<std::uint8_t> l4;
    if (s.proto == 17) {
        put16(l4, s.sport);
        put16(l4, s.dport);
        put16(l4, static_cast<std::uint16_t>(8 + s.payload.size()));
        put16(l4, 0);
    } else if (s.proto == 6) {
        put16(l4, s.sport);
        put16(l4, s.dport);
        for (int i = 0; i < 8; ++i) l4.push_back(0);
        l4.push_back(0x50);
        l4.push_back(s.tcp_flags);
        put16(l4, 65535);
        put16(l4, 0);
        put16(l4, 0);
    }
    l4.insert(l4.end(), s.payload.begin(), s.payload.end());
    if ((s.proto == 17 && s.udp_checksum) || s.proto == 6) {
        std::uint32_t sum = sum16(src, alen);
        sum = sum16(dst, alen, sum);
        sum += s.proto + static_cast<std::uint32_t>(l4.size());
        sum = sum16(l4.data(), l4.size(), sum);
        std::uint16_t c = static_cast<std::uint16_t>(~fold(sum));
        if (c == 0 && s.proto == 17) c = 0xffff;
        const std::size_t at = s.proto == 17 ? 6 : 16;
        l4[at] = static_cast<std::uint8_t>(c >> 8);
        l4[at + 1] = static_cast<std::uint8_t>(c);
    }
    return l4;
}

inline std::vector<std::uint8_t> build_ip(const FrameSpec& s) {
    std::vector<std::uint8_t> ip;
    const auto src = *base::IpAddress::parse(s.src);
    const auto dst = *base::IpAddress::parse(s.dst);
    if (!s.v6) {
        const std::uint8_t* sa = src.bytes().data() + 12;
        const std::uint8_t* da = dst.bytes().data() + 12;
        auto l4 = l4_bytes(s, sa, da, 4);
        const std::size_t ihl = 20 + s.ip_options.size();
        ip.push_back(static_cast<std::uint8_t>(0x40 | (ihl / 4)));
        ip.push_back(0);
        put16(ip, static_cast<std::uint16_t>(ihl + l4.size()));
        put16(ip, 0x1234);
        put16(ip, s.frag_field);
        ip.push_back(s.hop_limit);
        ip.push_back(s.proto);
        put16(ip, 0);
        ip.insert(ip.end(), sa, sa + 4);
        ip.insert(ip.end(), da, da + 4);
        ip.insert(ip.end(), s.ip_options.begin(), s.ip_options.end());
        const std::uint16_t c = static_cast<std::uint16_t>(~fold(sum16(ip.data(), ihl)));
        ip[10] = static_cast<std::uint8_t>(c >> 8);
        ip[11] = static_cast<std::uint8_t>(c);
        ip.insert(ip.end(), l4.begin(), l4.end());
    } else {
        auto l4 = l4_bytes(s, src.bytes().data(), dst.bytes().data(), 16);
        ip.push_back(0x60);
        ip.push_back(0);
        put16(ip, 0);
        put16(ip, static_cast<std::uint16_t>(s.ext_headers.size() + l4.size()));
        ip.push_back(s.first_next_header >= 0 ? static_cast<std::uint8_t>(s.first_next_header)
                                              : s.proto);
        ip.push_back(s.hop_limit);
        ip.insert(ip.end(), src.bytes().begin(), src.bytes().end());
        ip.insert(ip.end(), dst.bytes().begin(), dst.bytes().end());
        ip.insert(ip.end(), s.ext_headers.begin(), s.ext_headers.end());
        ip.insert(ip.end(), l4.begin(), l4.end());
    }
    return ip;
}

inline std::vector<std::uint8_t> build_frame(const FrameSpec& s) {
    std::vector<std::uint8_t> f = {0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2};
    for (std::size_t i = 0; i < s.vlans.size(); ++i) {
        put16(f, i == 0 ? s.vlan_tpid_outer : 0x8100);
        put16(f, s.vlans[i]);
    }
    put16(f, s.v6 ? 0x86DD : 0x0800);
    auto ip = build_ip(s);
    f.insert(f.end(), ip.begin(), ip.end());
    return f;
}

// Parses one frame held in `bytes`.
struct Parsed {
    PacketMeta meta;
    Decision decision;
};
inline Parsed parse_one(std::vector<std::uint8_t>& bytes, std::uint32_t wire_len = 0) {
    Frame f{bytes.data(), static_cast<std::uint32_t>(bytes.size()),
            static_cast<std::uint32_t>(bytes.size()), 0, wire_len};
    Parsed p;
    parse_frames(std::span<const Frame>(&f, 1), std::span<PacketMeta>(&p.meta, 1),
                 std::span<Decision>(&p.decision, 1));
    return p;
}

// Verifies the IPv4 header checksum and the UDP checksum of a frame from scratch.
inline bool checksums_ok(const std::vector<std::uint8_t>& f, const PacketMeta& m) {
    const std::uint8_t* ip = f.data() + m.l3_offset;
    const std::uint8_t* udp = f.data() + m.l4_offset;
    const bool v6 = m.flags & kFlagV6;
    if (!v6 && fold(sum16(ip, (ip[0] & 0xf) * 4u)) != 0xffff) return false;
    const std::size_t ulen = (udp[4] << 8) | udp[5];
    if (!v6 && udp[6] == 0 && udp[7] == 0) return true;
    std::uint32_t sum = v6 ? sum16(ip + 8, 32) : sum16(ip + 12, 8);
    sum += 17 + static_cast<std::uint32_t>(ulen);
    sum = sum16(udp, ulen, sum);
    return fold(sum) == 0xffff;
}

inline PacketMeta udp_meta(const std::string& src, std::uint16_t sport, const std::string& dst,
                           std::uint16_t dport,
                           const std::vector<std::uint8_t>* payload = nullptr) {
    PacketMeta m;
    m.src = *base::IpAddress::parse(src);
    m.dst = *base::IpAddress::parse(dst);
    m.src_port = sport;
    m.dst_port = dport;
    m.l4_proto = 17;
    if (m.src.is_v6()) m.flags |= kFlagV6;
    if (payload) {
        m.payload = payload->data();
        m.payload_len = static_cast<std::uint16_t>(payload->size());
    }
    return m;
}

}  // namespace sbc::dataplane::test
