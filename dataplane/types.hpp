#pragma once
// dataplane/: counters, packets and decisions, and the pipeline configuration: the vocabulary every
// dataplane component and backend shares.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/base.hpp"

namespace sbc::dataplane {

// ---------------------------------------------------------------------------------------
// Counters: every drop reason and pipeline event, declared once.
// ---------------------------------------------------------------------------------------
#define SBC_DATAPLANE_DROP_REASONS(X)                                                     \
    X(none, "not dropped")                                                                \
    X(truncated, "frame shorter than its headers or captured partially (snaplen)")        \
    X(not_ip, "Ethernet payload is neither IPv4 nor IPv6")                                \
    X(bad_ip_header, "IPv4/IPv6 header malformed (version, header length, ext. headers)") \
    X(bad_ip_length, "IP total/payload length inconsistent with the frame")               \
    X(bad_source, "source address is multicast, broadcast, unspecified or loopback")      \
    X(bad_l4_header, "UDP/TCP header malformed or length inconsistent")                   \
    X(bad_checksum, "IPv4 header or UDP checksum wrong (or zero UDP checksum over IPv6)") \
    X(fragment, "IP fragment not accepted by configuration")                              \
    X(unsupported_l4, "transport protocol other than UDP/TCP/ICMP")                       \
    X(banned, "source is banned")                                                         \
    X(rate_limited, "source, prefix or class over its token-bucket limit")                \
    X(no_service, "no SIP/media service on the destination port")                         \
    X(no_session, "media port not allocated to any stream")                               \
    X(latch_rejected, "media from an unexpected source (anti-hijacking latch rule)")      \
    X(peer_unknown, "media for a leg whose peer address is not known yet")                \
    X(family_mismatch, "frame backend cannot translate between IPv4 and IPv6")            \
    X(tx_failed, "send failed or no socket for the egress port")
SBC_DECLARE_COUNTER_LIST(DropReason, SBC_DATAPLANE_DROP_REASONS)

#define SBC_DATAPLANE_EVENTS(X)                                                            \
    X(rx, "packets entering the pipeline")                                                 \
    X(relayed, "media packets relayed")                                                    \
    X(to_signaling, "SIP packets handed to signaling")                                     \
    X(to_kernel, "packets handed to the host stack (TCP SIP, ICMP, fragments)")            \
    X(dropped, "packets dropped (see drop reasons)")                                       \
    X(latched, "media legs latched to their first source")                                 \
    X(relatched, "media legs re-latched after a NAT rebinding")                            \
    X(bans_added, "bans added (automatic escalation, signaling, control)")                 \
    X(bans_escalated, "automatic bans from sustained excess")                              \
    X(limiter_untracked, "limiter lookups with no slot (set full of established sources)") \
    X(events_dropped, "media events lost because the event queue was full")
SBC_DECLARE_COUNTER_LIST(PipelineEvent, SBC_DATAPLANE_EVENTS)

// Rate-limit traffic classes. SIP requests are classed by their method token only (a
// cheap peek at the UDP payload, not a SIP parse: dataplane does not depend on sip/).
#define SBC_DATAPLANE_TRAFFIC_CLASSES(X)                                \
    X(sip_register, "SIP REGISTER requests")                            \
    X(sip_invite, "SIP INVITE requests")                                \
    X(sip_other, "other SIP requests (OPTIONS, ...) and responses")     \
    X(tcp_connect, "TCP connection attempts (SYN) to SIP ports")        \
    X(media_unallocated, "UDP to media ports with no allocated stream") \
    X(other, "fragments and everything else admitted to the host")
SBC_DECLARE_COUNTER_LIST(TrafficClass, SBC_DATAPLANE_TRAFFIC_CLASSES)

struct Counters {
    base::CounterSet<DropReason> drops;
    base::CounterSet<PipelineEvent> events;
    base::CounterSet<TrafficClass> rate_limited;    // drops (rate_limited) by class
    std::array<std::uint64_t, 4> bans_by_origin{};  // bans_added by BanOrigin
};

// ---------------------------------------------------------------------------------------
// Packets and decisions
// ---------------------------------------------------------------------------------------
enum PacketFlags : std::uint8_t {
    kFlagFragment = 1,       // IPv4 MF/offset or IPv6 fragment header
    kFlagLaterFragment = 2,  // fragment offset != 0: no L4 header in this packet
    kFlagVlan = 4,           // at least one 802.1Q / 802.1ad tag
    kFlagQinQ = 8,           // two tags
    kFlagV6 = 16,
    kFlagIpOptions = 32,  // IPv4 options or IPv6 extension headers present
    // Arrived on a protected signaling peer's connected socket (SocketRelay::
    // protect_signaling_peer): signaling vouched for this exact source address and port.
    kFlagKnownPeer = 64,
};

// One received packet as the pipeline sees it. Frame backends (dpdk, pcap) fill `Frame` and
// let parse_frames() fill this; the socket backend fills it directly from recvmmsg (the
// kernel already stripped L2-L4: offsets stay 0 and `payload` points at the datagram).
struct PacketMeta {
    base::IpAddress src, dst;
    std::uint16_t src_port = 0, dst_port = 0;
    std::uint8_t l4_proto = 0;   // 17 UDP, 6 TCP, 1/58 ICMP
    std::uint8_t tcp_flags = 0;  // SYN detection for tcp_connect limits
    std::uint8_t hop_limit = 0;  // IPv4 TTL / IPv6 hop limit (ND requires 255)
    std::uint16_t l3_offset = 0, l4_offset = 0, payload_offset = 0, payload_len = 0;
    std::uint16_t vlan_tci_outer = 0, vlan_tci_inner = 0;
    std::uint8_t flags = 0;                 // PacketFlags
    const std::uint8_t* payload = nullptr;  // L4 payload (SIP method peek, RTP header)
};

struct Frame {
    std::uint8_t* data = nullptr;
    std::uint32_t len = 0;       // bytes present in data
    std::uint32_t capacity = 0;  // bytes available at data
    std::uint16_t port = 0;      // backend's port id
    std::uint32_t wire_len = 0;  // original length if the capture cut it (0: same as len)
};

enum class Action : std::uint8_t {
    undecided,     // parse_frames/socket backend: the pipeline has to decide
    relay,         // media: forward per Pipeline::forward_of()
    to_signaling,  // UDP SIP for the signaling layer
    to_kernel,     // host stack: TCP to SIP ports, ICMP, non-IP (ARP/ND), fragments
    drop,
};
std::string_view name(Action a);

struct Decision {
    Action action = Action::undecided;
    DropReason reason = DropReason::none;
    std::uint32_t stream_slot = 0;  // for relay: opaque handle for forward_of()
    TrafficClass traffic_class = TrafficClass::other;
};

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------
struct RateLimit {
    double rate_per_s = 0;  // 0: unlimited
    double burst = 0;       // bucket depth in packets (>= 1 when rate > 0)
    bool unlimited() const { return rate_per_s <= 0; }
};

struct ClassLimits {
    RateLimit per_source;   // per source address
    RateLimit per_prefix;   // per covering /24 (IPv4) or /64 (IPv6)
    RateLimit new_sources;  // shared by all sources not (yet) established: caps spoofed floods
};

struct BanPolicy {
    bool enabled = true;
    // A source denied this many times within `window` is banned.
    std::uint32_t violations_to_ban = 100;
    base::Nanos window = base::seconds(10);
    // The n-th ban of a source lasts durations[min(n, size-1)].
    std::vector<base::Nanos> durations{base::seconds(60), base::seconds(600), base::seconds(3600)};
    // A ban record is remembered this long after it expires (for escalation).
    base::Nanos forget_after = base::seconds(86400);
};

struct MediaDefaults {
    // Latching (symmetric RTP, RFC 4961 style): a leg learns its peer's real address from its
    // first packets within `latch_window` after the offer/answer (create/update).
    base::Nanos latch_window = base::seconds(30);
    // Re-latching to a new source is allowed only once the latched source has been silent this
    // long (NAT rebinding), never while it is still sending (stops hijacking of a live stream).
    base::Nanos relatch_silence = base::millis(1000);
    // Accept a latch source only if its address equals the signaled one (port may differ).
    bool strict_source = false;
    base::Nanos inactivity_timeout = base::seconds(60);
};

struct PipelineConfig {
    std::vector<base::IpAddress> local_addresses;  // empty: any destination is ours
    std::uint16_t media_port_min = 30000, media_port_max = 39999;
    std::vector<std::uint16_t> sip_udp_ports{5060};
    std::vector<std::uint16_t> sip_tcp_ports{5060, 5061};
    std::vector<base::Prefix> trusted;  // bypass rate limits (not bans)
    std::array<ClassLimits, kTrafficClassCount> limits{};
    std::uint8_t v4_prefix_len = 24, v6_prefix_len = 64;
    BanPolicy ban_policy;
    MediaDefaults media;
    // Capacities (fixed at construction; a reload keeps them).
    std::uint32_t limiter_capacity = 1u << 16;  // entries (sources + prefixes)
    std::uint32_t ban_capacity = 1u << 14;
    std::uint32_t stream_capacity = 10000;
    std::uint32_t event_capacity = 4096;
    // Limiter entry life cycle: a new key is on probation until seen again after
    // `establish_after`; established entries are evicted only after `idle_evict_after` silence.
    base::Nanos establish_after = base::seconds(1);
    base::Nanos idle_evict_after = base::seconds(300);
    bool fragments_to_kernel = true;  // else drop (fragment)
    bool other_to_kernel = false;     // traffic to non-SIP, non-media ports: else drop

    // Sensible defaults for an edge SBC (REGISTER 5/s per source, INVITE 10/s, ...).
    static PipelineConfig defaults();
};

}  // namespace sbc::dataplane
