#pragma once
// Test helpers for the DPDK backend: Ethernet/IPv4/UDP/TCP/ARP/ICMP frame builders with their
// own checksum code (independent of dataplane/, so the tests check it rather than agree with
// it), and a minimal reader/writer of classic pcap files (the format net_pcap reads/writes).
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sbc::dpdk_test {

using Bytes = std::vector<std::uint8_t>;
using Mac = std::array<std::uint8_t, 6>;
using Ip4 = std::array<std::uint8_t, 4>;

inline void put16(Bytes& b, std::size_t at, std::uint16_t v) {
    b[at] = static_cast<std::uint8_t>(v >> 8);
    b[at + 1] = static_cast<std::uint8_t>(v);
}
inline std::uint16_t get16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t get32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           p[3];
}

// RFC 1071 one's complement sum, written plainly (one 16-bit word at a time).
inline std::uint32_t sum16(const std::uint8_t* p, std::size_t len, std::uint32_t sum = 0) {
    for (std::size_t i = 0; i + 1 < len; i += 2) sum += get16(p + i);
    if (len & 1) sum += std::uint32_t{p[len - 1]} << 8;
    return sum;
}
inline std::uint16_t fold(std::uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(sum);
}

inline Bytes ethernet(const Mac& dst, const Mac& src, std::uint16_t type) {
    Bytes b(14);
    std::memcpy(b.data(), dst.data(), 6);
    std::memcpy(b.data() + 6, src.data(), 6);
    put16(b, 12, type);
    return b;
}

// Ethernet + IPv4 (no options) + an L4 segment whose checksum field is at `csum_at` (relative
// to the L4 header; negative: none) and is computed over the pseudo header (RFC 768/9293).
inline Bytes ipv4_frame(const Mac& dst_mac, const Mac& src_mac, const Ip4& src, const Ip4& dst,
                        std::uint8_t proto, Bytes l4, int csum_at, std::uint16_t ip_id = 1) {
    Bytes f = ethernet(dst_mac, src_mac, 0x0800);
    const std::size_t ip = f.size();
    f.resize(ip + 20);
    f[ip] = 0x45;
    put16(f, ip + 2, static_cast<std::uint16_t>(20 + l4.size()));
    put16(f, ip + 4, ip_id);
    put16(f, ip + 6, 0x4000);  // DF
    f[ip + 8] = 64;
    f[ip + 9] = proto;
    std::memcpy(&f[ip + 12], src.data(), 4);
    std::memcpy(&f[ip + 16], dst.data(), 4);
    put16(f, ip + 10, static_cast<std::uint16_t>(~fold(sum16(&f[ip], 20))));
    if (csum_at >= 0) {
        std::uint32_t s = sum16(src.data(), 4) + sum16(dst.data(), 4) + proto +
                          static_cast<std::uint32_t>(l4.size());
        std::uint16_t c = static_cast<std::uint16_t>(~fold(sum16(l4.data(), l4.size(), s)));
        if (proto == 17 && c == 0) c = 0xffff;
        put16(l4, static_cast<std::size_t>(csum_at), c);
    }
    f.insert(f.end(), l4.begin(), l4.end());
    return f;
}

inline Bytes udp4(const Mac& dst_mac, const Mac& src_mac, const Ip4& src, std::uint16_t sport,
                  const Ip4& dst, std::uint16_t dport, const Bytes& payload) {
    Bytes u(8);
    put16(u, 0, sport);
    put16(u, 2, dport);
    put16(u, 4, static_cast<std::uint16_t>(8 + payload.size()));
    u.insert(u.end(), payload.begin(), payload.end());
    return ipv4_frame(dst_mac, src_mac, src, dst, 17, std::move(u), 6);
}

inline Bytes tcp4_syn(const Mac& dst_mac, const Mac& src_mac, const Ip4& src, std::uint16_t sport,
                      const Ip4& dst, std::uint16_t dport) {
    Bytes t(20);
    put16(t, 0, sport);
    put16(t, 2, dport);
    t[7] = 1;        // sequence number
    t[12] = 5 << 4;  // data offset: 5 words
    t[13] = 0x02;    // SYN
    put16(t, 14, 64240);
    return ipv4_frame(dst_mac, src_mac, src, dst, 6, std::move(t), 16);
}

inline Bytes icmp4_echo(const Mac& dst_mac, const Mac& src_mac, const Ip4& src, const Ip4& dst) {
    Bytes e(16, 0x61);
    e[0] = 8;  // echo request (RFC 792)
    e[1] = 0;
    e[2] = e[3] = 0;
    put16(e, 4, 0x1234);
    put16(e, 6, 1);
    put16(e, 2, static_cast<std::uint16_t>(~fold(sum16(e.data(), e.size()))));
    return ipv4_frame(dst_mac, src_mac, src, dst, 1, std::move(e), -1);
}

using Ip6 = std::array<std::uint8_t, 16>;

// Ethernet + IPv6 (no extension headers) + UDP with its mandatory checksum (RFC 8200 §8.1).
inline Bytes udp6(const Mac& dst_mac, const Mac& src_mac, const Ip6& src, std::uint16_t sport,
                  const Ip6& dst, std::uint16_t dport, const Bytes& payload) {
    Bytes f = ethernet(dst_mac, src_mac, 0x86DD);
    const std::size_t ip = f.size();
    const auto ulen = static_cast<std::uint16_t>(8 + payload.size());
    f.resize(ip + 40);
    f[ip] = 0x60;
    put16(f, ip + 4, ulen);
    f[ip + 6] = 17;
    f[ip + 7] = 64;
    std::memcpy(&f[ip + 8], src.data(), 16);
    std::memcpy(&f[ip + 24], dst.data(), 16);
    Bytes u(8);
    put16(u, 0, sport);
    put16(u, 2, dport);
    put16(u, 4, ulen);
    u.insert(u.end(), payload.begin(), payload.end());
    const std::uint32_t pseudo = sum16(src.data(), 16) + sum16(dst.data(), 16) + 17 + ulen;
    std::uint16_t c = static_cast<std::uint16_t>(~fold(sum16(u.data(), u.size(), pseudo)));
    put16(u, 6, c == 0 ? 0xffff : c);
    f.insert(f.end(), u.begin(), u.end());
    return f;
}

// Ethernet + IPv6 + an ICMPv6 neighbour discovery message (RFC 4861 §4.3/§4.4: type 135
// solicitation or 136 advertisement for `target`), hop limit 255, to an IPv6 multicast group
// (RFC 2464 §7: MAC 33:33 plus the group's low 32 bits) or a unicast MAC.
inline Bytes icmp6_nd(const Mac& dst_mac, const Mac& src_mac, const Ip6& src, const Ip6& dst,
                      std::uint8_t type, const Ip6& target) {
    Mac mac = dst_mac;
    if (dst[0] == 0xff) mac = Mac{0x33, 0x33, dst[12], dst[13], dst[14], dst[15]};
    Bytes f = ethernet(mac, src_mac, 0x86DD);
    const std::size_t ip = f.size();
    Bytes icmp(8, 0);
    icmp[0] = type;
    if (type == 136) icmp[4] = 0x20;  // override flag
    icmp.insert(icmp.end(), target.begin(), target.end());
    const auto len = static_cast<std::uint16_t>(icmp.size());
    f.resize(ip + 40);
    f[ip] = 0x60;
    put16(f, ip + 4, len);
    f[ip + 6] = 58;
    f[ip + 7] = 255;  // RFC 4861 §7.1.1
    std::memcpy(&f[ip + 8], src.data(), 16);
    std::memcpy(&f[ip + 24], dst.data(), 16);
    const std::uint32_t pseudo = sum16(src.data(), 16) + sum16(dst.data(), 16) + 58 + len;
    put16(icmp, 2, static_cast<std::uint16_t>(~fold(sum16(icmp.data(), icmp.size(), pseudo))));
    f.insert(f.end(), icmp.begin(), icmp.end());
    return f;
}

// Inserts an 802.1Q tag (RFC-less: IEEE 802.1Q) after the MAC addresses.
inline Bytes vlan_tagged(Bytes f, std::uint16_t vid) {
    const std::uint8_t tag[4] = {0x81, 0x00, static_cast<std::uint8_t>(vid >> 8),
                                 static_cast<std::uint8_t>(vid)};
    f.insert(f.begin() + 12, tag, tag + 4);
    return f;
}

// RFC 826 request: who has `target`? tell `sender`.
inline Bytes arp_request(const Mac& src_mac, const Ip4& sender, const Ip4& target) {
    Bytes f = ethernet(Mac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src_mac, 0x0806);
    const std::size_t a = f.size();
    f.resize(a + 28);
    put16(f, a, 1);  // Ethernet
    put16(f, a + 2, 0x0800);
    f[a + 4] = 6;
    f[a + 5] = 4;
    put16(f, a + 6, 1);  // request
    std::memcpy(&f[a + 8], src_mac.data(), 6);
    std::memcpy(&f[a + 14], sender.data(), 4);
    std::memcpy(&f[a + 24], target.data(), 4);
    return f;
}

// RFC 3550 §5.1 fixed header + payload bytes.
inline Bytes rtp(std::uint32_t ssrc, std::uint16_t seq, std::uint32_t ts, std::size_t payload_len,
                 std::uint8_t pt = 0) {
    Bytes r(12 + payload_len, 0xd5);
    r[0] = 0x80;
    r[1] = pt;
    put16(r, 2, seq);
    r[4] = static_cast<std::uint8_t>(ts >> 24);
    r[5] = static_cast<std::uint8_t>(ts >> 16);
    r[6] = static_cast<std::uint8_t>(ts >> 8);
    r[7] = static_cast<std::uint8_t>(ts);
    r[8] = static_cast<std::uint8_t>(ssrc >> 24);
    r[9] = static_cast<std::uint8_t>(ssrc >> 16);
    r[10] = static_cast<std::uint8_t>(ssrc >> 8);
    r[11] = static_cast<std::uint8_t>(ssrc);
    return r;
}

// RFC 3550 §6.4.1 sender report without report blocks (28 bytes).
inline Bytes rtcp_sr(std::uint32_t ssrc) {
    Bytes r(28, 0);
    r[0] = 0x80;
    r[1] = 200;
    put16(r, 2, 6);
    r[4] = static_cast<std::uint8_t>(ssrc >> 24);
    r[5] = static_cast<std::uint8_t>(ssrc >> 16);
    r[6] = static_cast<std::uint8_t>(ssrc >> 8);
    r[7] = static_cast<std::uint8_t>(ssrc);
    return r;
}

inline Bytes text(const std::string& s) {
    return Bytes(s.begin(), s.end());
}

// A decoded Ethernet/IPv4/UDP frame, with both checksums verified from scratch.
struct Udp4View {
    Ip4 src{}, dst{};
    std::uint16_t sport = 0, dport = 0;
    Mac dst_mac{}, src_mac{};
    bool ip_checksum_ok = false, udp_checksum_ok = false;
    Bytes payload;
};
inline std::optional<Udp4View> decode_udp4(const Bytes& f) {
    if (f.size() < 42 || get16(&f[12]) != 0x0800 || f[14] != 0x45 || f[23] != 17)
        return std::nullopt;
    Udp4View v;
    std::memcpy(v.dst_mac.data(), &f[0], 6);
    std::memcpy(v.src_mac.data(), &f[6], 6);
    std::memcpy(v.src.data(), &f[26], 4);
    std::memcpy(v.dst.data(), &f[30], 4);
    v.ip_checksum_ok = fold(sum16(&f[14], 20)) == 0xffff;
    const std::uint16_t ulen = get16(&f[38]);
    if (ulen < 8 || 34u + ulen > f.size()) return std::nullopt;
    v.sport = get16(&f[34]);
    v.dport = get16(&f[36]);
    const std::uint32_t pseudo = sum16(v.src.data(), 4) + sum16(v.dst.data(), 4) + 17 + ulen;
    v.udp_checksum_ok = get16(&f[40]) != 0 && fold(sum16(&f[34], ulen, pseudo)) == 0xffff;
    v.payload.assign(f.begin() + 42, f.begin() + 34 + ulen);
    return v;
}

struct Udp6View {
    Ip6 src{}, dst{};
    std::uint16_t sport = 0, dport = 0;
    bool udp_checksum_ok = false;
    Bytes payload;
};
inline std::optional<Udp6View> decode_udp6(const Bytes& f) {
    if (f.size() < 62 || get16(&f[12]) != 0x86DD || f[20] != 17) return std::nullopt;
    Udp6View v;
    std::memcpy(v.src.data(), &f[22], 16);
    std::memcpy(v.dst.data(), &f[38], 16);
    const std::uint16_t ulen = get16(&f[58]);
    if (ulen < 8 || 54u + ulen > f.size()) return std::nullopt;
    v.sport = get16(&f[54]);
    v.dport = get16(&f[56]);
    const std::uint32_t pseudo = sum16(v.src.data(), 16) + sum16(v.dst.data(), 16) + 17 + ulen;
    v.udp_checksum_ok = get16(&f[60]) != 0 && fold(sum16(&f[54], ulen, pseudo)) == 0xffff;
    v.payload.assign(f.begin() + 62, f.begin() + 54 + ulen);
    return v;
}

// Classic pcap (not pcapng): 24-byte global header, 16-byte record headers, Ethernet.
inline void write_pcap(const std::string& path, const std::vector<Bytes>& frames) {
    std::FILE* fp = std::fopen(path.c_str(), "wb");
    if (!fp) throw std::runtime_error("cannot write " + path);
    const std::uint32_t gh[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
    std::fwrite(gh, sizeof gh, 1, fp);
    std::uint32_t usec = 0;
    for (const auto& f : frames) {
        const std::uint32_t rh[4] = {1'700'000'000u, usec, static_cast<std::uint32_t>(f.size()),
                                     static_cast<std::uint32_t>(f.size())};
        usec = (usec + 20) % 1'000'000;
        std::fwrite(rh, sizeof rh, 1, fp);
        std::fwrite(f.data(), 1, f.size(), fp);
    }
    std::fclose(fp);
}

inline std::vector<Bytes> read_pcap(const std::string& path) {
    std::vector<Bytes> out;
    std::FILE* fp = std::fopen(path.c_str(), "rb");
    if (!fp) throw std::runtime_error("cannot read " + path);
    std::uint32_t gh[6];
    if (std::fread(gh, sizeof gh, 1, fp) != 1) {
        std::fclose(fp);
        throw std::runtime_error(path + ": no pcap header");
    }
    const bool nsec = gh[0] == 0xa1b23c4d;
    if (gh[0] != 0xa1b2c3d4 && !nsec) {
        std::fclose(fp);
        throw std::runtime_error(path + ": not a little-endian classic pcap");
    }
    std::uint32_t rh[4];
    while (std::fread(rh, sizeof rh, 1, fp) == 1) {
        Bytes f(rh[2]);
        if (rh[2] && std::fread(f.data(), 1, rh[2], fp) != rh[2]) break;
        out.push_back(std::move(f));
    }
    std::fclose(fp);
    return out;
}

}  // namespace sbc::dpdk_test
