#pragma once
// Internal to dataplane/ (the relay and its backends): the media relay's record layout, which
// MediaControl's public header only declares.
#include <array>
#include <cstdint>

#include "dataplane/media.hpp"

namespace sbc::dataplane {

// Per-leg receive statistics (RTP and RTCP of the leg), one cache line each in an array
// of their own: the only line the relay writes per packet. RFC 3550 A.1 sequence state
// and A.8 integer jitter; `cycles` counts wraps (the RFC's cycles is wraps << 16, which
// a 32-bit field holds modulo 2^32 just the same).
struct alignas(64) MediaControl::LegCounters {
    std::uint64_t packets = 0, bytes = 0, rtcp_packets = 0;
    base::Nanos last_rx_rtp = 0, last_rx_rtcp = 0;
    std::uint16_t max_seq = 0, base_seq = 0, cycles = 0;
    std::uint8_t probation = 0;
    std::uint8_t rtp_state = 0;  // dataplane/rtp_stats.hpp: initialized, have transit
    std::uint32_t bad_seq = 0, received = 0;
    std::uint32_t last_transit = 0;
    std::uint32_t jitter_q4 = 0;  // RFC 3550 A.8 integer form: jitter * 16
};
// The relay record of one local port (a leg's RTP port, or its RTCP port without
// rtcp-mux), indexed by port - port_min: the port is unique across local addresses
// (bind_ports), so the table is a flat array with one probe. One cache line holds all the
// fast path reads: the identity of the packets it may forward without the generic
// pipeline (local address, latched source and ports as the header carries them), and the
// precomputed rewrite (new words and RFC 1624 checksum deltas), rebuilt whenever the
// stream is created, updated or latched, or the configuration changes.
struct alignas(64) MediaControl::RelayRecord {
    std::uint32_t slot_plus_1 = 0;  // 0: unbound
    std::uint8_t leg = 0;
    std::uint8_t rtcp = 0;   // the leg's RTCP port (not rtcp-mux)
    std::uint8_t flags = 0;  // kRecordFast | kRecordMux
    std::uint8_t pad = 0;
    // What the fast path accepts, as loaded from the header (network byte order words), in
    // the header's order (IPv4 bytes 12-19, UDP bytes 0-3): compared in two loads.
    std::uint32_t source = 0;    // IPv4 source: the latched one
    std::uint32_t local = 0;     // IPv4 destination
    std::uint32_t ports_in = 0;  // UDP source and destination ports
    // The rewrite: new source/destination address and ports; the folded one's
    // complement deltas of RFC 1624 eqn. 3 (sum of ~old and new) for the IPv4 header
    // checksum and the UDP checksum.
    std::uint32_t new_src = 0, new_dst = 0, new_ports = 0;
    std::uint32_t ip_delta = 0, udp_delta = 0;
    std::uint32_t stats_index = 0;  // into stats_: slot * 2 + leg
    std::uint64_t rate_q64 = 0;     // the stream's RTP clock in 0.64 units per ns
};
struct MediaControl::LegLatch {
    base::Endpoint latched_rtp, latched_rtcp;  // port 0: not latched
};
struct MediaControl::Stream {
    StreamSpec spec;
    // RTP timestamp units per nanosecond in 0.64 fixed point (clock_rate * 2^64 / 1e9):
    // the arrival time of RFC 3550 A.8 with one multiplication instead of a division.
    std::uint64_t rate_q64 = 0;
    std::uint32_t generation = 0;
    bool in_use = false;
    bool inactive_reported = false;
    base::Nanos created = 0, offer_at = 0;
    base::Nanos reported_last = 0;  // last packet time when inactivity was reported
    std::array<LegLatch, 2> legs;
    std::array<Forward, 4> forwards;  // [to_leg*2 + rtcp]
};

inline MediaControl::RelayRecord* MediaControl::record(std::uint16_t port) {
    return port >= port_min_ && port <= port_max_ ? &relay_[port - port_min_] : nullptr;
}
// Brings the relay record, then the leg's statistics line, into the cache: called for a
// whole burst ahead of on_packet so that the misses overlap.
inline void MediaControl::prefetch_binding(const PacketMeta& m) const {
    if (m.dst_port >= port_min_ && m.dst_port <= port_max_)
        __builtin_prefetch(&relay_[m.dst_port - port_min_]);
}
inline void MediaControl::prefetch_stream(const PacketMeta& m) const {
    if (m.dst_port < port_min_ || m.dst_port > port_max_) return;
    const RelayRecord& r = relay_[m.dst_port - port_min_];
    if (r.slot_plus_1 == 0) return;
    __builtin_prefetch(&stats_[r.stats_index], 1);
    const Stream& s = streams_[r.slot_plus_1 - 1];
    __builtin_prefetch(r.leg ? &s.spec.b : &s.spec.a);
    __builtin_prefetch(&s.legs[r.leg]);
    __builtin_prefetch(&s.forwards[(1u - r.leg) * 2 + r.rtcp]);
}
// Returns drop reason or none and sets decision.stream_slot.

}  // namespace sbc::dataplane
