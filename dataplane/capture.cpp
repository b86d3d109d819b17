// Capture decoding for replay: link headers, HEP, IP fragment reassembly and TCP stream
// reassembly. Pure functions over record bytes and capture time; bounded tables.
#include "dataplane/capture.hpp"

#include <algorithm>
#include <cstring>
#include <list>
#include <map>
#include <unordered_map>

#include "dataplane/checksum.hpp"

namespace sbc::dataplane {

bool link_type_supported(std::uint32_t t) {
    switch (t) {
        case 0:    // NULL (BSD loopback)
        case 1:    // Ethernet
        case 12:   // DLT_RAW (OpenBSD numbering)
        case 14:   // DLT_RAW (BSD/OS)
        case 101:  // LINKTYPE_RAW
        case 108:  // LINKTYPE_LOOP (OpenBSD loopback, network byte order family)
        case 113:  // Linux cooked v1
        case 228:  // raw IPv4
        case 229:  // raw IPv6
        case 276:  // Linux cooked v2
            return true;
        default:
            return false;
    }
}

namespace {

inline std::uint32_t rd32(const std::uint8_t* p) {
    return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}
inline std::uint32_t rd32le(const std::uint8_t* p) {
    return std::uint32_t{p[3]} << 24 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[1]} << 8 | p[0];
}

// Sequence arithmetic (RFC 9293 §3.4): a - b as a signed distance.
inline std::int32_t seq_diff(std::uint32_t a, std::uint32_t b) {
    return static_cast<std::int32_t>(a - b);
}

struct FragKey {
    base::IpAddress src, dst;
    std::uint32_t id = 0;
    std::uint8_t proto = 0;
    bool operator<(const FragKey& o) const {
        if (src != o.src) return src < o.src;
        if (dst != o.dst) return dst < o.dst;
        if (id != o.id) return id < o.id;
        return proto < o.proto;
    }
};

struct FragEntry {
    std::vector<std::uint8_t> data;                             // the fragmentable part, by offset
    std::vector<std::pair<std::uint32_t, std::uint32_t>> have;  // received [begin, end)
    std::uint32_t total = 0;                                    // 0: last fragment not seen
    base::Nanos first = 0;
    PacketMeta meta;  // addresses of the first fragment seen
    std::list<FragKey>::iterator order;
};

struct FlowKey {
    base::IpAddress src, dst;
    std::uint16_t sport = 0, dport = 0;
    bool operator==(const FlowKey&) const = default;
};
struct FlowKeyHash {
    std::size_t operator()(const FlowKey& k) const {
        return k.src.hash() * 31 ^ k.dst.hash() ^ (std::size_t{k.sport} << 16 | k.dport);
    }
};

struct Flow {
    std::uint64_t id = 0;
    bool have_seq = false;
    bool tls = false;
    std::uint32_t next = 0;
    std::map<std::uint32_t, std::string> held;  // by distance from `next` at insertion: seq
    std::uint32_t held_bytes = 0;
    std::uint64_t delivered = 0;
    base::Nanos last = 0;
    PacketMeta meta;
    std::list<FlowKey>::iterator lru;
};

constexpr std::size_t kMaxHeldSegments = 256;  // per flow: bounds the in-order search

bool port_in(const std::vector<std::uint16_t>& v, std::uint16_t p) {
    return std::find(v.begin(), v.end(), p) != v.end();
}

// A TLS record header (RFC 8446 §5.1): content type 20-23, legacy version 3.x.
bool looks_like_tls(const std::uint8_t* p, std::size_t n) {
    return n >= 5 && p[0] >= 20 && p[0] <= 23 && p[1] == 3 && p[2] <= 4;
}

}  // namespace

struct CaptureDecoder::Impl {
    CaptureLimits limits;
    ParseOptions parse;
    std::map<FragKey, FragEntry> frags;
    std::list<FragKey> frag_order;  // insertion order (eviction)
    void erase_frag(std::map<FragKey, FragEntry>::iterator it) {
        frag_order.erase(it->second.order);
        frags.erase(it);
    }
    std::vector<std::uint8_t> datagram;  // the last datagram reassembled
    std::unordered_map<FlowKey, Flow, FlowKeyHash> flows;
    std::list<FlowKey> lru;  // least recently active first
    std::uint64_t next_flow_id = 1;
    std::vector<std::uint64_t> closed;
    std::string chunk_storage;  // released bytes of the current call
    std::vector<std::pair<std::size_t, std::size_t>> chunk_spans;
};

CaptureDecoder::CaptureDecoder(const CaptureLimits& limits, const ParseOptions& parse)
    : impl_(std::make_unique<Impl>()) {
    impl_->limits = limits;
    impl_->parse = parse;
}
CaptureDecoder::~CaptureDecoder() = default;

std::size_t CaptureDecoder::fragment_datagrams() const {
    return impl_->frags.size();
}
std::size_t CaptureDecoder::tcp_flows() const {
    return impl_->flows.size();
}
std::vector<std::uint64_t> CaptureDecoder::take_closed_flows() {
    std::vector<std::uint64_t> out;
    out.swap(impl_->closed);
    return out;
}

DecodedPacket CaptureDecoder::decode(const CaptureRecord& r) {
    DecodedPacket p;
    p.time = r.time;
    counters_.add(CaptureEvent::records);
    if (r.wire_len > r.caplen) counters_.add(CaptureEvent::snaplen_cut);
    const std::uint8_t* d = r.data;
    std::uint32_t n = r.data ? r.caplen : 0;
    std::uint32_t wire = std::max(r.wire_len, n);
    bool ethernet = false;
    auto strip = [&](std::uint32_t len) {
        d += len;
        n -= len;
        wire -= len;
    };
    switch (r.link_type) {
        case 1:
            ethernet = true;
            break;
        case 12:
        case 14:
        case 101:
        case 228:
        case 229:
            break;
        case 0:
        case 108: {
            if (n < 4) {
                counters_.add(CaptureEvent::bad_link_header);
                return p;
            }
            // The family is in the capturing host's byte order (LOOP: network order): accept
            // AF_INET (2) and the AF_INET6 values of Linux and the BSDs in either order.
            const std::uint32_t be = rd32(d), le = rd32le(d);
            auto ip_family = [](std::uint32_t f) {
                return f == 2 || f == 10 || f == 24 || f == 28 || f == 30;
            };
            if (!ip_family(be) && !ip_family(le)) {
                counters_.add(CaptureEvent::not_ip);
                return p;
            }
            strip(4);
            break;
        }
        case 113:
        case 276: {
            const std::uint32_t hl = r.link_type == 113 ? 16 : 20;
            if (n < hl) {
                counters_.add(CaptureEvent::bad_link_header);
                return p;
            }
            const std::uint16_t proto = r.link_type == 113 ? rd16(d + 14) : rd16(d);
            if (proto != 0x0800 && proto != 0x86DD) {
                counters_.add(CaptureEvent::not_ip);
                return p;
            }
            strip(hl);
            break;
        }
        default:
            counters_.add(CaptureEvent::unknown_link_type);
            return p;
    }
    // Offsets in PacketMeta are 16-bit: a larger record is cut (and reported truncated).
    Frame f{const_cast<std::uint8_t*>(d), std::min<std::uint32_t>(n, 0xffff), 0, 0, 0};
    f.capacity = f.len;
    if (wire > f.len) f.wire_len = wire;
    if (ethernet) {
        parse_frames({&f, 1}, {&p.meta, 1}, {&p.decision, 1}, impl_->parse);
        if (p.decision.action == Action::to_kernel && p.decision.reason == DropReason::not_ip) {
            counters_.add(CaptureEvent::not_ip);
            return p;
        }
    } else {
        parse_ip_packet(f, p.meta, p.decision, impl_->parse);
    }
    p.frame = d;
    p.frame_len = f.len;
    if (p.decision.action == Action::drop) {
        counters_.add(CaptureEvent::malformed);
        malformed_.add(p.decision.reason);
        return p;
    }
    if (p.meta.flags & kFlagFragment) counters_.add(CaptureEvent::fragments);
    p.ok = true;
    return p;
}

bool CaptureDecoder::is_hep(const PacketMeta& m) const {
    if (m.l4_proto != 17 || (m.flags & kFlagFragment) || !m.payload) return false;
    if (port_in(impl_->limits.hep_ports, m.dst_port)) return true;
    return m.payload_len >= 4 && std::memcmp(m.payload, base::hep::kMagic, 4) == 0;
}

bool CaptureDecoder::unwrap_hep(const PacketMeta& outer, base::Nanos time, HepMessage& out) {
    out = HepMessage{};
    out.time = time;
    const std::uint8_t* p = outer.payload;
    const std::size_t n = p ? outer.payload_len : 0;
    auto bad = [this] {
        counters_.add(CaptureEvent::hep_malformed);
        return false;
    };
    PacketMeta& m = out.meta;
    if (n >= base::hep::kHeaderSize && std::memcmp(p, base::hep::kMagic, 4) == 0) {
        const std::size_t total = rd16(p + 4);
        if (total < base::hep::kHeaderSize || total > n) return bad();
        bool have_src = false, have_dst = false, sip = true;
        std::uint32_t sec = 0, usec = 0;
        bool have_time = false;
        for (std::size_t off = base::hep::kHeaderSize; off < total;) {
            if (total - off < base::hep::kChunkHeaderSize) return bad();
            const std::uint16_t type = rd16(p + off + 2);
            const std::size_t len = rd16(p + off + 4);
            if (len < base::hep::kChunkHeaderSize || len > total - off) return bad();
            const std::uint8_t* v = p + off + base::hep::kChunkHeaderSize;
            const std::size_t vl = len - base::hep::kChunkHeaderSize;
            // HEPv3 generic chunk types 1-16 (vendor 0).
            using namespace base::hep;
            switch (type) {
                case kIpProtocol:
                    if (vl == 1) out.tcp = v[0] == 6;
                    break;
                case kIpv4Src:
                    if (vl != 4) return bad();
                    m.src = base::IpAddress::v4_bytes(v);
                    have_src = true;
                    break;
                case kIpv4Dst:
                    if (vl != 4) return bad();
                    m.dst = base::IpAddress::v4_bytes(v);
                    have_dst = true;
                    break;
                case kIpv6Src:
                    if (vl != 16) return bad();
                    m.src = base::IpAddress::v6(v);
                    m.flags |= kFlagV6;
                    have_src = true;
                    break;
                case kIpv6Dst:
                    if (vl != 16) return bad();
                    m.dst = base::IpAddress::v6(v);
                    have_dst = true;
                    break;
                case kSrcPort:
                    if (vl != 2) return bad();
                    m.src_port = rd16(v);
                    break;
                case kDstPort:
                    if (vl != 2) return bad();
                    m.dst_port = rd16(v);
                    break;
                case kTimeSec:
                    if (vl != 4) return bad();
                    sec = rd32(v);
                    have_time = true;
                    break;
                case kTimeUsec:
                    if (vl != 4) return bad();
                    usec = rd32(v);
                    break;
                case kProtoType:
                    if (vl == 1) sip = v[0] == kProtoSip;
                    break;
                case kPayload:
                    m.payload = v;
                    m.payload_len = static_cast<std::uint16_t>(std::min<std::size_t>(vl, 0xffff));
                    break;
                case kCompressed:
                    counters_.add(CaptureEvent::hep_compressed);
                    return false;
                default:
                    break;
            }
            off += len;
        }
        if (!have_src || !have_dst || !sip || !m.payload || m.payload_len == 0) return bad();
        if (have_time && usec < 1'000'000)
            out.time = static_cast<base::Nanos>(sec) * base::kNanosPerSecond +
                       static_cast<base::Nanos>(usec) * 1000;
    } else if (n >= 8 && (p[0] == 1 || p[0] == 2)) {
        // HEPv1/v2: version, header length, family, protocol, ports (network order), the two
        // addresses; v2 adds seconds, microseconds (host order, little-endian in practice) and
        // a capture id, padded to 12 bytes.
        const std::size_t hl = p[1];
        const bool v6 = p[2] == 10;
        if (!v6 && p[2] != 2) return bad();
        const std::size_t addr_len = v6 ? 32 : 8;
        if (hl != 8 + addr_len || n < hl) return bad();
        std::size_t off = hl;
        out.tcp = p[3] == 6;
        m.src_port = rd16(p + 4);
        m.dst_port = rd16(p + 6);
        if (v6) {
            m.src = base::IpAddress::v6(p + 8);
            m.dst = base::IpAddress::v6(p + 24);
            m.flags |= kFlagV6;
        } else {
            m.src = base::IpAddress::v4_bytes(p + 8);
            m.dst = base::IpAddress::v4_bytes(p + 12);
        }
        if (p[0] == 2) {
            if (n < off + 12) return bad();
            const std::uint32_t sec = rd32le(p + off), usec = rd32le(p + off + 4);
            if (usec < 1'000'000)
                out.time = static_cast<base::Nanos>(sec) * base::kNanosPerSecond +
                           static_cast<base::Nanos>(usec) * 1000;
            off += 12;
        }
        if (n <= off) return bad();
        m.payload = p + off;
        m.payload_len = static_cast<std::uint16_t>(std::min<std::size_t>(n - off, 0xffff));
    } else {
        return bad();
    }
    m.l4_proto = out.tcp ? 6 : 17;
    counters_.add(CaptureEvent::hep_packets);
    return true;
}

Datagram CaptureDecoder::reassemble(const DecodedPacket& pk, const CaptureRecord&) {
    Datagram out;
    Impl& im = *impl_;
    const PacketMeta& m = pk.meta;
    if (!(m.flags & kFlagFragment) || !pk.frame) return out;
    const std::uint8_t* ip = pk.frame + m.l3_offset;
    const std::uint32_t avail = pk.frame_len - m.l3_offset;
    FragKey key{m.src, m.dst, 0, m.l4_proto};
    std::uint32_t offset = 0;
    bool more = false;
    const std::uint8_t* data = nullptr;
    std::uint32_t len = 0;
    if (!(m.flags & kFlagV6)) {
        if (avail < 20) return out;
        const std::uint32_t ihl = (ip[0] & 0x0f) * 4u;
        const std::uint32_t total = rd16(ip + 2);
        if (ihl < 20 || total < ihl || total > avail) return out;
        key.id = rd16(ip + 4);
        const std::uint16_t fo = rd16(ip + 6);
        more = fo & 0x2000;
        offset = (fo & 0x1fffu) * 8u;
        data = ip + ihl;
        len = total - ihl;
    } else {
        // Walk the extension headers to the fragment header (RFC 8200 §4.5).
        if (avail < 40) return out;
        const std::uint32_t end = 40u + rd16(ip + 4);
        if (end > avail) return out;
        std::uint8_t nh = ip[6];
        std::uint32_t off = 40;
        bool found = false;
        for (int guard = 0; guard < 16 && off + 8 <= end; ++guard) {
            if (nh == 44) {
                key.proto = ip[off];
                const std::uint16_t fo = rd16(ip + off + 2);
                offset = (fo >> 3) * 8u;
                more = fo & 1;
                key.id = rd32(ip + off + 4);
                off += 8;
                found = true;
                break;
            }
            if (nh == 0 || nh == 43 || nh == 60) {
                const std::uint32_t l = (ip[off + 1] + 1u) * 8u;
                nh = ip[off];
                off += l;
            } else if (nh == 51) {
                const std::uint32_t l = (ip[off + 1] + 2u) * 4u;
                nh = ip[off];
                off += l;
            } else {
                break;
            }
        }
        if (!found || off > end) return out;
        data = ip + off;
        len = end - off;
    }
    if (offset + len > 65535) {
        counters_.add(CaptureEvent::fragments_too_large);
        return out;
    }
    if (!more && offset == 0) return out;  // an atomic fragment: not ours to rebuild
    auto it = im.frags.find(key);
    if (it == im.frags.end()) {
        while (im.frags.size() >= im.limits.max_fragment_datagrams && !im.frag_order.empty()) {
            im.erase_frag(im.frags.find(im.frag_order.front()));
            counters_.add(CaptureEvent::fragments_evicted);
        }
        if (im.limits.max_fragment_datagrams == 0) return out;
        FragEntry e;
        e.first = pk.time;
        e.meta = m;
        it = im.frags.emplace(key, std::move(e)).first;
        im.frag_order.push_back(key);
        it->second.order = std::prev(im.frag_order.end());
    }
    FragEntry& e = it->second;
    const std::uint32_t b = offset, en = offset + len;
    for (const auto& [hb, he] : e.have) {
        if (hb == b && he == en) return out;  // a duplicate: already held
        if (b < he && hb < en) {              // RFC 5722: overlapping fragments drop the lot
            counters_.add(CaptureEvent::fragments_overlapping);
            im.erase_frag(it);
            return out;
        }
    }
    if (!more) {
        if (e.total != 0 || en < e.data.size()) {
            counters_.add(CaptureEvent::fragments_overlapping);
            im.erase_frag(it);
            return out;
        }
        e.total = en;
    } else if (e.total != 0 && en > e.total) {
        counters_.add(CaptureEvent::fragments_overlapping);
        im.erase_frag(it);
        return out;
    }
    if (e.data.size() < en) e.data.resize(en);
    std::memcpy(e.data.data() + b, data, len);
    e.have.emplace_back(b, en);
    if (offset == 0) e.meta = m;  // the first fragment carries the ports
    if (e.total == 0) return out;
    std::uint64_t covered = 0;
    for (const auto& [hb, he] : e.have) covered += he - hb;
    if (covered != e.total) return out;
    // Complete.
    im.datagram.swap(e.data);
    const PacketMeta first = e.meta;
    const std::uint8_t proto = key.proto;
    im.erase_frag(it);
    counters_.add(CaptureEvent::reassembled);
    out.meta = first;
    out.meta.flags &= static_cast<std::uint8_t>(~(kFlagFragment | kFlagLaterFragment));
    out.meta.l4_proto = proto;
    out.meta.l3_offset = out.meta.l4_offset = out.meta.payload_offset = 0;
    if (proto != 17 || im.datagram.size() < 8) {
        counters_.add(CaptureEvent::malformed);
        malformed_.add(DropReason::bad_l4_header);
        return out;
    }
    const std::uint8_t* u = im.datagram.data();
    const std::uint32_t ulen = rd16(u + 4);
    if (ulen < 8 || ulen > im.datagram.size()) {
        counters_.add(CaptureEvent::malformed);
        malformed_.add(DropReason::bad_l4_header);
        return out;
    }
    out.meta.src_port = rd16(u);
    out.meta.dst_port = rd16(u + 2);
    out.meta.payload = u + 8;
    out.meta.payload_len = static_cast<std::uint16_t>(ulen - 8);
    out.ok = true;
    return out;
}

void CaptureDecoder::tcp_segment(const DecodedPacket& pk, std::vector<StreamChunk>& out) {
    Impl& im = *impl_;
    const PacketMeta& m = pk.meta;
    if (m.l4_proto != 6 || (m.flags & kFlagFragment) || !pk.frame) return;
    if (std::uint32_t{m.l4_offset} + 20 > pk.frame_len) return;
    const std::uint8_t* tcp = pk.frame + m.l4_offset;
    const std::uint32_t seq = rd32(tcp + 4);
    const std::uint8_t flags = tcp[13];
    const bool syn = flags & 0x02, fin = flags & 0x01, rst = flags & 0x04;
    const std::uint32_t len = m.payload ? m.payload_len : 0;
    FlowKey key{m.src, m.dst, m.src_port, m.dst_port};
    auto it = im.flows.find(key);
    if (it == im.flows.end()) {
        if (len == 0 && !syn) return;  // pure ACKs of untracked flows
        while (im.flows.size() >= im.limits.max_tcp_flows && !im.lru.empty()) {
            auto victim = im.flows.find(im.lru.front());
            im.closed.push_back(victim->second.id);
            im.lru.pop_front();
            im.flows.erase(victim);
            counters_.add(CaptureEvent::tcp_flows_evicted);
        }
        if (im.limits.max_tcp_flows == 0) return;
        Flow f;
        f.id = im.next_flow_id++;
        f.meta = m;
        f.meta.payload = nullptr;
        f.meta.payload_len = 0;
        f.tls =
            port_in(im.limits.tls_ports, m.dst_port) || port_in(im.limits.tls_ports, m.src_port);
        im.lru.push_back(key);
        f.lru = std::prev(im.lru.end());
        it = im.flows.emplace(key, std::move(f)).first;
        counters_.add(CaptureEvent::tcp_flows);
    } else {
        im.lru.splice(im.lru.end(), im.lru, it->second.lru);
    }
    Flow& f = it->second;
    f.last = pk.time;
    im.chunk_storage.clear();
    im.chunk_spans.clear();
    std::vector<bool> gaps;
    auto release = [&](const std::uint8_t* p, std::size_t n, bool gap) {
        im.chunk_spans.emplace_back(im.chunk_storage.size(), n);
        im.chunk_storage.append(reinterpret_cast<const char*>(p), n);
        gaps.push_back(gap);
        f.delivered += n;
    };
    auto drain_held = [&](bool force_gap) {
        // Releases held segments that are now in order; with force_gap, jumps to the first.
        while (!f.held.empty()) {
            auto h = f.held.begin();
            // The smallest distance from next first (the map orders raw sequence numbers).
            for (auto k = f.held.begin(); k != f.held.end(); ++k)
                if (seq_diff(k->first, f.next) < seq_diff(h->first, f.next)) h = k;
            std::int32_t d = seq_diff(h->first, f.next);
            bool gap = false;
            if (d > 0) {
                if (!force_gap) break;
                counters_.add(CaptureEvent::tcp_gaps);
                f.next = h->first;
                d = 0;
                gap = true;
                force_gap = false;
            }
            const std::string& s = h->second;
            const std::uint32_t skip = static_cast<std::uint32_t>(-d);
            if (skip < s.size()) {
                release(reinterpret_cast<const std::uint8_t*>(s.data()) + skip, s.size() - skip,
                        gap);
                f.next += static_cast<std::uint32_t>(s.size() - skip);
            }
            f.held_bytes -= static_cast<std::uint32_t>(s.size());
            f.held.erase(h);
        }
    };
    if (syn) {
        f.next = seq + 1;
        f.have_seq = true;
    }
    if (len > 0) {
        counters_.add(CaptureEvent::tcp_segments);
        const std::uint8_t* data = m.payload;
        // A stream whose first bytes are a TLS record is TLS (on any port).
        if (!f.tls && f.delivered == 0 && f.held.empty() && looks_like_tls(data, len)) f.tls = true;
        if (f.tls) {
            counters_.add(CaptureEvent::tls_segments);
        } else {
            const std::uint32_t sseq = syn ? seq + 1 : seq;
            if (!f.have_seq) {
                // Joined mid-stream: the stream starts here.
                f.next = sseq;
                f.have_seq = true;
            }
            std::int32_t d = seq_diff(sseq, f.next);
            if (d + static_cast<std::int64_t>(len) <= 0) {
                counters_.add(CaptureEvent::tcp_retransmitted);
            } else if (d <= 0) {
                if (d < 0) counters_.add(CaptureEvent::tcp_retransmitted);
                const std::uint32_t skip = static_cast<std::uint32_t>(-d);
                release(data + skip, len - skip, false);
                f.next += len - skip;
                drain_held(false);
            } else {
                counters_.add(CaptureEvent::tcp_out_of_order);
                if (f.held_bytes + len > im.limits.max_tcp_hold_bytes ||
                    f.held.size() >= kMaxHeldSegments) {
                    // Cannot wait any longer for the missing bytes: resume after the gap.
                    drain_held(true);
                    if (f.held_bytes + len > im.limits.max_tcp_hold_bytes ||
                        f.held.size() >= kMaxHeldSegments) {
                        counters_.add(CaptureEvent::tcp_held_dropped);
                    } else if (!f.held.count(sseq)) {
                        f.held.emplace(sseq, std::string(reinterpret_cast<const char*>(data), len));
                        f.held_bytes += len;
                    }
                } else if (!f.held.count(sseq)) {
                    f.held.emplace(sseq, std::string(reinterpret_cast<const char*>(data), len));
                    f.held_bytes += len;
                }
                drain_held(false);
            }
        }
    }
    if (fin || rst) {
        if (!f.tls) drain_held(true);
        im.closed.push_back(f.id);
        im.lru.erase(f.lru);
        const std::uint64_t id = f.id;
        const PacketMeta meta = f.meta;
        const bool tls = f.tls;
        im.flows.erase(it);
        for (std::size_t i = 0; i < im.chunk_spans.size(); ++i) {
            StreamChunk c;
            c.flow = id;
            c.meta = meta;
            c.tls = tls;
            c.gap_before = gaps[i];
            c.bytes = std::string_view(im.chunk_storage)
                          .substr(im.chunk_spans[i].first, im.chunk_spans[i].second);
            out.push_back(c);
        }
        return;
    }
    for (std::size_t i = 0; i < im.chunk_spans.size(); ++i) {
        StreamChunk c;
        c.flow = f.id;
        c.meta = f.meta;
        c.tls = f.tls;
        c.gap_before = gaps[i];
        c.bytes = std::string_view(im.chunk_storage)
                      .substr(im.chunk_spans[i].first, im.chunk_spans[i].second);
        out.push_back(c);
    }
}

void CaptureDecoder::expire(base::Nanos now) {
    Impl& im = *impl_;
    for (auto it = im.frags.begin(); it != im.frags.end();) {
        if (now - it->second.first > im.limits.fragment_timeout) {
            counters_.add(CaptureEvent::fragments_expired);
            im.frag_order.erase(it->second.order);
            it = im.frags.erase(it);
        } else {
            ++it;
        }
    }
    while (!im.lru.empty()) {
        auto it = im.flows.find(im.lru.front());
        if (now - it->second.last <= im.limits.tcp_idle_timeout) break;
        im.closed.push_back(it->second.id);
        im.lru.pop_front();
        im.flows.erase(it);
    }
}

}  // namespace sbc::dataplane
