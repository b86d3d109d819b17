// L2-L4 parsing of frames and the rewrite of relayed frames. Everything here is a function
// over bytes: no allocation, no state.
#include <algorithm>
#include <cstring>

#include "dataplane/checksum.hpp"
#include "dataplane/parse.hpp"
#include "dataplane/pipeline.hpp"

namespace sbc::dataplane {

namespace {

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;
constexpr std::uint16_t kEtherVlan = 0x8100;      // IEEE 802.1Q
constexpr std::uint16_t kEtherQinQ = 0x88A8;      // IEEE 802.1ad
constexpr std::uint16_t kEtherQinQ9100 = 0x9100;  // pre-standard QinQ, still seen

inline void set(Decision& d, Action a, DropReason r) {
    d.action = a;
    d.reason = r;
}

// RFC 791 §3.1 / RFC 1071: the one's complement sum over the header is all ones. Summed in
// 32-bit host-order words (the sum is byte-order independent; ihl is a multiple of 4).
inline bool ipv4_header_checksum_ok(const std::uint8_t* ip, std::uint32_t ihl) {
    std::uint64_t s = 0;
    for (std::uint32_t k = 0; k < ihl; k += 4) {
        std::uint32_t w;
        std::memcpy(&w, ip + k, 4);
        s += w;
    }
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return s == 0xffff;
}

// Sources that can never be the sender of a real packet (RFC 1122 §3.2.1.3, RFC 4291 §2.7).
bool bad_source_v4(const std::uint8_t* a) {
    if (a[0] == 0 || a[0] == 127 || a[0] >= 224) return true;  // this-net, loopback, mcast, bcast
    return false;
}
bool is_unspecified_v6(const std::uint8_t* a) {
    static constexpr std::uint8_t kZero[16] = {};
    return std::memcmp(a, kZero, 16) == 0;
}
bool bad_source_v6(const std::uint8_t* a) {
    if (a[0] == 0xff) return true;  // multicast
    static constexpr std::uint8_t kZero[15] = {};
    if (std::memcmp(a, kZero, 15) == 0 && (a[15] == 0 || a[15] == 1)) return true;
    return false;
}
bool is_loopback_v6(const std::uint8_t* a) {
    static constexpr std::uint8_t kZero[15] = {};
    return std::memcmp(a, kZero, 15) == 0 && a[15] == 1;
}
// RFC 4291 §2.7.1: the solicited-node multicast prefix ff02::1:ff00:0/104.
bool is_solicited_node_v6(const std::uint8_t* a) {
    static constexpr std::uint8_t kPrefix[13] = {0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff};
    return std::memcmp(a, kPrefix, 13) == 0;
}

[[gnu::always_inline]] inline void parse_l4(const std::uint8_t* base, std::uint32_t l4_off,
                                            std::uint32_t l4_len, PacketMeta& m, Decision& d,
                                            const ParseOptions& opt, std::uint32_t pseudo_sum) {
    const std::uint8_t* l4 = base + l4_off;
    m.l4_offset = static_cast<std::uint16_t>(l4_off);
    if (m.flags & kFlagLaterFragment) {
        // No transport header in this fragment: ports unknown.
        m.payload_offset = static_cast<std::uint16_t>(l4_off);
        m.payload_len = static_cast<std::uint16_t>(l4_len);
        m.payload = l4;
        return;
    }
    const bool fragment = m.flags & kFlagFragment;
    switch (m.l4_proto) {
        case 17: {  // RFC 768
            if (l4_len < 8) return set(d, Action::drop, DropReason::bad_l4_header);
            m.src_port = rd16(l4);
            m.dst_port = rd16(l4 + 2);
            const std::uint32_t ulen = rd16(l4 + 4);
            if (ulen < 8) return set(d, Action::drop, DropReason::bad_l4_header);
            if (!fragment && ulen != l4_len) return set(d, Action::drop, DropReason::bad_l4_header);
            const std::uint32_t data_len = fragment ? l4_len : ulen;
            m.payload_offset = static_cast<std::uint16_t>(l4_off + 8);
            m.payload_len = static_cast<std::uint16_t>(data_len - 8);
            m.payload = l4 + 8;
            const std::uint16_t csum = rd16(l4 + 6);
            if (csum == 0) {
                // RFC 8200 §8.1: a zero UDP checksum is not allowed over IPv6.
                if (m.flags & kFlagV6) return set(d, Action::drop, DropReason::bad_checksum);
            } else if (opt.verify_udp_checksum && !fragment) {
                std::uint32_t sum = pseudo_sum + 17 + ulen;
                sum = checksum_add(sum, l4, ulen);
                if (checksum_fold(sum) != 0xffff)
                    return set(d, Action::drop, DropReason::bad_checksum);
            }
            return;
        }
        case 6: {  // RFC 9293 §3.1
            if (l4_len < 20) return set(d, Action::drop, DropReason::bad_l4_header);
            m.src_port = rd16(l4);
            m.dst_port = rd16(l4 + 2);
            const std::uint32_t doff = (l4[12] >> 4) * 4u;
            if (doff < 20 || doff > l4_len) return set(d, Action::drop, DropReason::bad_l4_header);
            m.tcp_flags = l4[13];
            m.payload_offset = static_cast<std::uint16_t>(l4_off + doff);
            m.payload_len = static_cast<std::uint16_t>(l4_len - doff);
            m.payload = l4 + doff;
            return;
        }
        case 1:
        case 58:  // ICMP, ICMPv6: the host needs them (PMTU discovery, ND)
            m.payload_offset = static_cast<std::uint16_t>(l4_off);
            m.payload_len = static_cast<std::uint16_t>(l4_len);
            m.payload = l4;
            return set(d, Action::to_kernel, DropReason::none);
        default:
            return set(d, Action::drop, DropReason::unsupported_l4);
    }
}

[[gnu::always_inline]] inline void parse_ipv4(const std::uint8_t* base, std::uint32_t off,
                                              std::uint32_t avail, PacketMeta& m, Decision& d,
                                              const ParseOptions& opt) {
    if (avail < 20) return set(d, Action::drop, DropReason::truncated);
    const std::uint8_t* ip = base + off;
    if ((ip[0] >> 4) != 4) return set(d, Action::drop, DropReason::bad_ip_header);
    const std::uint32_t ihl = (ip[0] & 0x0f) * 4u;
    if (ihl < 20) return set(d, Action::drop, DropReason::bad_ip_header);
    if (ihl > avail) return set(d, Action::drop, DropReason::truncated);
    const std::uint32_t total = rd16(ip + 2);
    if (total < ihl) return set(d, Action::drop, DropReason::bad_ip_length);
    if (total > avail) return set(d, Action::drop, DropReason::truncated);
    // RFC 791 §3.1: the header checksum covers the header (with options) only: cheap.
    if (!ipv4_header_checksum_ok(ip, ihl)) return set(d, Action::drop, DropReason::bad_checksum);
    if (ihl > 20) m.flags |= kFlagIpOptions;
    const std::uint16_t frag = rd16(ip + 6);
    if (frag & 0x8000) return set(d, Action::drop, DropReason::bad_ip_header);  // reserved bit
    const std::uint16_t frag_off = frag & 0x1fff;
    if ((frag & 0x2000) || frag_off) m.flags |= kFlagFragment;
    if (frag_off) m.flags |= kFlagLaterFragment;
    m.src = base::IpAddress::v4_bytes(ip + 12);
    m.dst = base::IpAddress::v4_bytes(ip + 16);
    m.l3_offset = static_cast<std::uint16_t>(off);
    m.l4_proto = ip[9];
    m.hop_limit = ip[8];
    if (bad_source_v4(ip + 12) && !(opt.loopback_within_host && ip[12] == 127 && ip[16] == 127))
        return set(d, Action::drop, DropReason::bad_source);
    const std::uint32_t pseudo = checksum_add(0, ip + 12, 8);
    parse_l4(base, off + ihl, total - ihl, m, d, opt, pseudo);
}

// RFC 8200 §4: walk the extension header chain to the upper-layer header.
void parse_ipv6(const std::uint8_t* base, std::uint32_t off, std::uint32_t avail, PacketMeta& m,
                Decision& d, const ParseOptions& opt) {
    if (avail < 40) return set(d, Action::drop, DropReason::truncated);
    const std::uint8_t* ip = base + off;
    if ((ip[0] >> 4) != 6) return set(d, Action::drop, DropReason::bad_ip_header);
    m.flags |= kFlagV6;
    const std::uint32_t plen = rd16(ip + 4);
    if (plen == 0) return set(d, Action::drop, DropReason::bad_ip_length);  // jumbograms
    if (40 + plen > avail) return set(d, Action::drop, DropReason::truncated);
    m.src = base::IpAddress::v6(ip + 8);
    m.dst = base::IpAddress::v6(ip + 24);
    m.l3_offset = static_cast<std::uint16_t>(off);
    m.hop_limit = ip[7];
    // RFC 4862 §5.4.2: duplicate address detection sends neighbour solicitations from the
    // unspecified address to a solicited-node group; that is the one use of :: accepted.
    const bool unspecified_src = is_unspecified_v6(ip + 8);
    if (!unspecified_src && bad_source_v6(ip + 8) &&
        !(opt.loopback_within_host && is_loopback_v6(ip + 8) && is_loopback_v6(ip + 24)))
        return set(d, Action::drop, DropReason::bad_source);
    std::uint8_t next = ip[6];
    std::uint32_t pos = off + 40;
    const std::uint32_t end = off + 40 + plen;
    for (int n = 0; n < 8; ++n) {
        switch (next) {
            case 0:  // hop-by-hop: only directly after the IPv6 header (RFC 8200 §4.1)
                if (n != 0) return set(d, Action::drop, DropReason::bad_ip_header);
                [[fallthrough]];
            case 43:  // routing
            case 60:  // destination options
            {
                if (end - pos < 8) return set(d, Action::drop, DropReason::bad_ip_header);
                const std::uint32_t len = (base[pos + 1] + 1u) * 8u;
                if (len > end - pos) return set(d, Action::drop, DropReason::bad_ip_header);
                m.flags |= kFlagIpOptions;
                next = base[pos];
                pos += len;
                continue;
            }
            case 44: {  // fragment (RFC 8200 §4.5)
                if (end - pos < 8) return set(d, Action::drop, DropReason::bad_ip_header);
                const std::uint16_t fo = rd16(base + pos + 2);
                m.flags |= kFlagFragment;
                if (fo & 0xfff8) m.flags |= kFlagLaterFragment;
                next = base[pos];
                pos += 8;
                continue;
            }
            case 51: {  // AH: length in 4-octet units minus 2 (RFC 4302 §2.2)
                if (end - pos < 8) return set(d, Action::drop, DropReason::bad_ip_header);
                const std::uint32_t len = (base[pos + 1] + 2u) * 4u;
                if (len > end - pos) return set(d, Action::drop, DropReason::bad_ip_header);
                next = base[pos];
                pos += len;
                continue;
            }
            default:
                break;
        }
        break;
    }
    if (next == 0 || next == 43 || next == 60 || next == 44 || next == 51)
        return set(d, Action::drop, DropReason::bad_ip_header);  // chain too long
    m.l4_proto = next;
    const std::uint32_t pseudo = checksum_add(0, ip + 8, 32);
    parse_l4(base, pos, end - pos, m, d, opt, pseudo);
    if (unspecified_src && d.action != Action::drop) {
        const bool dad = next == 58 && !(m.flags & kFlagFragment) && m.payload_len >= 4 &&
                         m.payload[0] == 135 && is_solicited_node_v6(ip + 24);
        if (!dad) set(d, Action::drop, DropReason::bad_source);
    }
}

}  // namespace

std::string_view name(Action a) {
    switch (a) {
        case Action::undecided:
            return "undecided";
        case Action::relay:
            return "relay";
        case Action::to_signaling:
            return "to_signaling";
        case Action::to_kernel:
            return "to_kernel";
        case Action::drop:
            return "drop";
    }
    return "?";
}

void parse_ip_packet(const Frame& f, PacketMeta& m, Decision& d, const ParseOptions& opt) {
    m = PacketMeta{};
    d = Decision{};
    if (f.wire_len > f.len) return set(d, Action::drop, DropReason::truncated);
    const std::uint32_t flen = std::min<std::uint32_t>(f.len, 0xffff);
    if (flen < 1) return set(d, Action::drop, DropReason::truncated);
    const std::uint8_t v = f.data[0] >> 4;
    if (v == 4) return parse_ipv4(f.data, 0, flen, m, d, opt);
    if (v == 6) return parse_ipv6(f.data, 0, flen, m, d, opt);
    set(d, Action::drop, DropReason::bad_ip_header);
}

void parse_frames(std::span<const Frame> frames, std::span<PacketMeta> meta,
                  std::span<Decision> out, const ParseOptions& opt) {
    const std::size_t n = frames.size();
    for (std::size_t i = 0; i < n; ++i) {
        const Frame& f = frames[i];
        PacketMeta& m = meta[i];
        Decision& d = out[i];
        m = PacketMeta{};
        d = Decision{};
        if (i + 1 < n) __builtin_prefetch(frames[i + 1].data);
        // A capture cut by its snaplen cannot be validated (lengths, checksums) nor relayed.
        if (f.wire_len > f.len) {
            set(d, Action::drop, DropReason::truncated);
            continue;
        }
        // Offsets are 16-bit: larger (jumbo) frames are cut here and end up truncated.
        const std::uint32_t flen = std::min<std::uint32_t>(f.len, 0xffff);
        if (flen < 14) {
            set(d, Action::drop, DropReason::truncated);
            continue;
        }
        std::uint32_t off = 12;
        std::uint16_t type = rd16(f.data + off);
        int tags = 0;
        bool bad = false;
        while (type == kEtherVlan || type == kEtherQinQ || type == kEtherQinQ9100) {
            if (tags == 2 || flen < off + 6) {
                bad = true;
                break;
            }
            const std::uint16_t tci = rd16(f.data + off + 2);
            if (tags == 0) {
                m.vlan_tci_outer = tci;
                m.flags |= kFlagVlan;
            } else {
                m.vlan_tci_inner = tci;
                m.flags |= kFlagQinQ;
            }
            ++tags;
            off += 4;
            type = rd16(f.data + off);
        }
        if (bad) {
            set(d, tags == 2 ? Action::drop : Action::drop,
                tags == 2 ? DropReason::not_ip : DropReason::truncated);
            continue;
        }
        off += 2;
        if (type == kEtherIpv4) {
            parse_ipv4(f.data, off, flen - off, m, d, opt);
        } else if (type == kEtherIpv6) {
            parse_ipv6(f.data, off, flen - off, m, d, opt);
        } else {
            // ARP, LLDP, ...: the host stack's business.
            set(d, Action::to_kernel, DropReason::not_ip);
        }
    }
}

TrafficClass sip_method_class(const std::uint8_t* p, std::size_t len) {
    // RFC 3261 §7.1: Request-Line = Method SP Request-URI SP SIP-Version. Only the method token
    // is looked at; everything else (responses, unknown methods) is "other".
    if (len >= 9 && std::memcmp(p, "REGISTER ", 9) == 0) return TrafficClass::sip_register;
    if (len >= 7 && std::memcmp(p, "INVITE ", 7) == 0) return TrafficClass::sip_invite;
    return TrafficClass::sip_other;
}

namespace {
// One's complement arithmetic is independent of byte order (RFC 1071 §2(B)): the changed
// fields and the checksums are loaded and stored in host order, with no byte swaps.
// Folds a 64-bit sum of 32-bit words to the 16-bit one's complement sum.
inline std::uint16_t fold64(std::uint64_t s) {
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return static_cast<std::uint16_t>(s);
}
// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), where `delta` already holds sum(~m) + sum(m').
inline std::uint16_t apply_delta(std::uint16_t hc, std::uint64_t delta) {
    return static_cast<std::uint16_t>(~fold64(delta + static_cast<std::uint16_t>(~hc)));
}
}  // namespace

bool Pipeline::rewrite_frame(Frame& f, const PacketMeta& m, const Forward& fwd) {
    const bool v6 = m.flags & kFlagV6;
    if (fwd.from_local.addr.is_v4() == v6 || fwd.to_peer.addr.is_v4() == v6) return false;
    if (m.l4_proto != 17 || (m.flags & kFlagFragment)) return false;
    std::uint8_t* ip = f.data + m.l3_offset;
    std::uint8_t* udp = f.data + m.l4_offset;
    const std::uint8_t* sb = fwd.from_local.addr.bytes().data();
    const std::uint8_t* db = fwd.to_peer.addr.bytes().data();
    // The ports, in network order, as one 32-bit word of the UDP header.
    const std::uint8_t port_bytes[4] = {static_cast<std::uint8_t>(fwd.from_local.port >> 8),
                                        static_cast<std::uint8_t>(fwd.from_local.port),
                                        static_cast<std::uint8_t>(fwd.to_peer.port >> 8),
                                        static_cast<std::uint8_t>(fwd.to_peer.port)};
    const std::uint32_t new_ports = ld32(port_bytes);
    const std::uint32_t old_ports = ld32(udp);
    // Every old word is read before anything is written: no load waits on a pending store.
    std::uint64_t addr_delta;
    if (!v6) {
        const std::uint32_t os = ld32(ip + 12), od = ld32(ip + 16);
        const std::uint32_t ns = ld32(sb + 12), nd = ld32(db + 12);
        addr_delta = std::uint64_t{~os} + ~od + ns + nd;
        std::memcpy(ip + 12, &ns, 4);
        std::memcpy(ip + 16, &nd, 4);
        st16(ip + 10, apply_delta(ld16(ip + 10), addr_delta));
    } else {
        std::uint64_t o[4], n[4];
        std::memcpy(o, ip + 8, 32);
        std::memcpy(n, sb, 16);
        std::memcpy(n + 2, db, 16);
        addr_delta = 0;
        for (int k = 0; k < 4; ++k) {
            // Each 64-bit word as two 32-bit halves, so that the sum cannot overflow.
            addr_delta +=
                (~o[k] & 0xffffffffu) + (~o[k] >> 32) + (n[k] & 0xffffffffu) + (n[k] >> 32);
        }
        std::memcpy(ip + 8, n, 32);
    }
    std::memcpy(udp, &new_ports, 4);
    std::uint16_t uc = ld16(udp + 6);
    if (uc != 0) {  // IPv4 UDP without checksum stays without (RFC 768)
        uc = apply_delta(uc, addr_delta + std::uint64_t{~old_ports} + new_ports);
        if (uc == 0) uc = 0xffff;  // RFC 768: a computed zero is sent as all ones
        st16(udp + 6, uc);
    }
    return true;
}

}  // namespace sbc::dataplane
