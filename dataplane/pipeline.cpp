// The pipeline's decision for a burst: ban check, classify, rate limit, relay lookup/latching.
#include <algorithm>
#include <cstring>

#include "dataplane/media_layout.hpp"
#include "dataplane/pipeline.hpp"

namespace sbc::dataplane {

PipelineConfig PipelineConfig::defaults() {
    PipelineConfig c;
    auto set = [&c](TrafficClass t, RateLimit src, RateLimit pfx, RateLimit fresh) {
        c.limits[static_cast<std::size_t>(t)] = ClassLimits{src, pfx, fresh};
    };
    // Per source, per /24 (/64), and shared by sources not yet established.
    set(TrafficClass::sip_register, {5, 20}, {50, 200}, {500, 1000});
    set(TrafficClass::sip_invite, {10, 30}, {100, 300}, {500, 1000});
    set(TrafficClass::sip_other, {20, 50}, {200, 500}, {2000, 4000});
    set(TrafficClass::tcp_connect, {5, 20}, {50, 100}, {1000, 2000});
    set(TrafficClass::media_unallocated, {50, 100}, {500, 1000}, {20000, 40000});
    set(TrafficClass::other, {20, 40}, {200, 400}, {2000, 4000});
    return c;
}

namespace {
void set_bits(std::array<std::uint8_t, 65536 / 8>& bm, const std::vector<std::uint16_t>& ports) {
    bm.fill(0);
    for (auto p : ports) bm[p >> 3] |= static_cast<std::uint8_t>(1u << (p & 7));
}
inline bool has_bit(const std::array<std::uint8_t, 65536 / 8>& bm, std::uint16_t p) {
    return bm[p >> 3] & (1u << (p & 7));
}
}  // namespace

Pipeline::Pipeline(const PipelineConfig& config)
    : config_(config),
      limiter_(config.limiter_capacity, config),
      bans_(config.ban_capacity),
      media_(config.stream_capacity, config.event_capacity, config.media, config.media_port_min,
             config.media_port_max) {
    apply_config(config);
}

const Pipeline::Forward& Pipeline::forward_of(const Decision& d) const {
    return media_.streams_[d.stream_slot >> 2].forwards[d.stream_slot & 3];
}

void Pipeline::apply_config(const PipelineConfig& c) {
    // Capacities and the media port range are fixed for the life of the tables.
    const auto keep_caps = config_;
    config_ = c;
    config_.limiter_capacity = keep_caps.limiter_capacity;
    config_.ban_capacity = keep_caps.ban_capacity;
    config_.stream_capacity = keep_caps.stream_capacity;
    config_.event_capacity = keep_caps.event_capacity;
    config_.media_port_min = keep_caps.media_port_min;
    config_.media_port_max = keep_caps.media_port_max;
    limiter_.apply_config(config_);
    media_.set_defaults(config_.media);
    media_.set_fast_path_scope(config_.local_addresses, config_.sip_udp_ports);
    set_bits(sip_udp_, config_.sip_udp_ports);
    set_bits(sip_tcp_, config_.sip_tcp_ports);
}

inline bool Pipeline::may_be_banned(const base::IpAddress& a) const {
    if (!a.is_v4()) return true;
    std::uint32_t w;
    std::memcpy(&w, a.bytes().data() + 12, 4);
    return bans_.may_be_banned_v4(w);
}

bool Pipeline::is_trusted(const base::IpAddress& a) const {
    for (const auto& p : config_.trusted)
        if (p.contains(a)) return true;
    return false;
}

inline bool Pipeline::is_local(const base::IpAddress& a) const {
    if (config_.local_addresses.empty()) return true;
    return std::find(config_.local_addresses.begin(), config_.local_addresses.end(), a) !=
           config_.local_addresses.end();
}

// IPv6 neighbour discovery (RFC 4861 §4: router solicitation/advertisement, neighbour
// solicitation/advertisement, redirect: types 133-137) addressed to the host: to one of its
// addresses (checked by the caller), to all nodes (ff02::1), to the solicited-node group of one of
// its addresses (RFC 4291 §2.7.1: ff02::1:ff plus the low 24 bits), or to a link-local unicast
// address (the host's own fe80:: address is not in the configuration). Hop limit 255 proves the
// sender is on the link (RFC 4861 §7.1.1); anything else is not ND the kernel would accept.
bool Pipeline::is_neighbour_discovery_for_us(const PacketMeta& m) const {
    if (m.l4_proto != 58 || !(m.flags & kFlagV6) || (m.flags & kFlagFragment)) return false;
    if (m.hop_limit != 255 || m.payload_len < 4 || m.payload == nullptr) return false;
    if (m.payload[0] < 133 || m.payload[0] > 137 || m.payload[1] != 0) return false;
    const auto& a = m.dst.bytes();
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return true;  // fe80::/10
    static constexpr std::uint8_t kAllNodes[16] = {0xff, 2, 0, 0, 0, 0, 0, 0,
                                                   0,    0, 0, 0, 0, 0, 0, 1};
    if (std::memcmp(a.data(), kAllNodes, 16) == 0) return true;
    static constexpr std::uint8_t kSolicited[13] = {0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff};
    if (std::memcmp(a.data(), kSolicited, 13) != 0) return false;
    for (const auto& l : config_.local_addresses) {
        const auto& b = l.bytes();
        if (l.is_v6() && b[13] == a[13] && b[14] == a[14] && b[15] == a[15]) return true;
    }
    return false;
}

void Pipeline::finish(Decision& d, Action a, DropReason r) {
    d.action = a;
    d.reason = r;
    switch (a) {
        case Action::relay:
            counters_.events.add(PipelineEvent::relayed);
            break;
        case Action::to_signaling:
            counters_.events.add(PipelineEvent::to_signaling);
            break;
        case Action::to_kernel:
            counters_.events.add(PipelineEvent::to_kernel);
            break;
        case Action::drop:
            counters_.events.add(PipelineEvent::dropped);
            counters_.drops.add(r);
            break;
        case Action::undecided:
            break;
    }
}

void Pipeline::decide(std::span<const PacketMeta> meta, std::span<Decision> out, base::Nanos now) {
    const std::size_t n = std::min(meta.size(), out.size());
    counters_.events.add(PipelineEvent::rx, n);
    // Admission through the limiter; sustained excess escalates to a ban.
    auto admit = [&](const PacketMeta& m, TrafficClass cls) {
        if (!config_.trusted.empty() && is_trusted(m.src)) return true;
        const auto v = limiter_.admit(m.src, cls, now, (m.flags & kFlagKnownPeer) != 0);
        if (v == RateLimiter::Verdict::admit) return true;
        counters_.rate_limited.add(cls);
        if (v == RateLimiter::Verdict::deny_ban && config_.ban_policy.enabled) {
            if (bans_.ban_escalating(m.src, config_.ban_policy, BanOrigin::rate_limit, now)) {
                counters_.events.add(PipelineEvent::bans_added);
                ++counters_.bans_by_origin[static_cast<std::size_t>(BanOrigin::rate_limit)];
                counters_.events.add(PipelineEvent::bans_escalated);
            }
        }
        return false;
    };
    // Media state is spread over tables larger than the cache: fetch what the burst's relay
    // candidates will touch in two passes (bindings, then streams) so the misses overlap.
    auto media_candidate = [&](std::size_t i) {
        return out[i].action == Action::undecided && meta[i].l4_proto == 17 &&
               meta[i].dst_port >= config_.media_port_min &&
               meta[i].dst_port <= config_.media_port_max;
    };
    // The same for the tables every SIP datagram reads (a flood's new sources miss in both):
    // the ban set and the rate limiter's sets for the source and its prefix.
    for (std::size_t i = 0; i < n; ++i) {
        const PacketMeta& m = meta[i];
        if (out[i].action != Action::undecided || m.l4_proto != 17 ||
            !has_bit(sip_udp_, m.dst_port))
            continue;
        bans_.prefetch(m.src);
        limiter_.prefetch(m.src, sip_method_class(m.payload, m.payload_len));
    }
    for (std::size_t i = 0; i < n; ++i)
        if (media_candidate(i)) media_.prefetch_binding(meta[i]);
    for (std::size_t i = 0; i < n; ++i)
        if (media_candidate(i)) media_.prefetch_stream(meta[i]);
    for (std::size_t i = 0; i < n; ++i) {
        const PacketMeta& m = meta[i];
        Decision& d = out[i];
        if (d.action == Action::drop) {  // malformed: parse_frames already named the reason
            finish(d, Action::drop, d.reason);
            continue;
        }
        if (d.action == Action::to_kernel && d.reason == DropReason::not_ip) {
            finish(d, Action::to_kernel, DropReason::none);
            continue;
        }
        if (d.action != Action::undecided && d.action != Action::to_kernel) continue;
        // 1. Bans first: a banned source costs one lookup and a silent drop.
        // (For IPv4, the ban table's bitmap filter answers "certainly not" for most sources
        // without a probe of the table.)
        if (may_be_banned(m.src) && bans_.is_banned(m.src, now)) {
            finish(d, Action::drop, DropReason::banned);
            continue;
        }
        // 2. Not for us.
        if (!is_local(m.dst) && !is_neighbour_discovery_for_us(m)) {
            finish(d, Action::drop, DropReason::no_service);
            continue;
        }
        // 3. ICMP and fragments go to the host stack (reassembly is bounded there), limited.
        if (d.action == Action::to_kernel || (m.flags & kFlagFragment)) {
            d.traffic_class = TrafficClass::other;
            if ((m.flags & kFlagFragment) && !config_.fragments_to_kernel) {
                finish(d, Action::drop, DropReason::fragment);
            } else if (!admit(m, TrafficClass::other)) {
                finish(d, Action::drop, DropReason::rate_limited);
            } else {
                finish(d, Action::to_kernel, DropReason::none);
            }
            continue;
        }
        // 4. Classify by destination port.
        if (m.l4_proto == 17) {
            // SIP ports first: a SIP port inside the media range stays SIP.
            if (has_bit(sip_udp_, m.dst_port)) {
                d.traffic_class = sip_method_class(m.payload, m.payload_len);
                if (admit(m, d.traffic_class))
                    finish(d, Action::to_signaling, DropReason::none);
                else
                    finish(d, Action::drop, DropReason::rate_limited);
                continue;
            }
            if (m.dst_port >= config_.media_port_min && m.dst_port <= config_.media_port_max) {
                const DropReason r = media_.on_packet(m, d, now, counters_);
                if (r == DropReason::none) {
                    finish(d, Action::relay, r);
                } else {
                    if (r == DropReason::no_session || r == DropReason::latch_rejected) {
                        // Port scans and injection attempts count towards a ban.
                        d.traffic_class = TrafficClass::media_unallocated;
                        admit(m, TrafficClass::media_unallocated);
                    }
                    finish(d, Action::drop, r);
                }
                continue;
            }
        } else if (m.l4_proto == 6 && has_bit(sip_tcp_, m.dst_port)) {
            // Only connection attempts are limited here; the kernel owns TCP state.
            const bool syn = (m.tcp_flags & 0x02) && !(m.tcp_flags & 0x10);
            d.traffic_class = TrafficClass::tcp_connect;
            if (syn && !admit(m, TrafficClass::tcp_connect))
                finish(d, Action::drop, DropReason::rate_limited);
            else
                finish(d, Action::to_kernel, DropReason::none);
            continue;
        }
        d.traffic_class = TrafficClass::other;
        if (!config_.other_to_kernel) {
            finish(d, Action::drop, DropReason::no_service);
        } else if (!admit(m, TrafficClass::other)) {
            finish(d, Action::drop, DropReason::rate_limited);
        } else {
            finish(d, Action::to_kernel, DropReason::none);
        }
    }
}

}  // namespace sbc::dataplane
