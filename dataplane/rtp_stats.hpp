#pragma once
// Internal to dataplane/: the per-packet receive statistics of a relayed leg (RFC 3550 A.1
// sequence validation, A.3 loss figures, A.8 jitter), shared by the generic relay
// (MediaControl::on_packet) and the fast path (Pipeline::relay_fast) so that both count a
// packet identically. `S` is MediaControl::LegCounters.
#include <algorithm>
#include <cstdint>

#include "base/base.hpp"

namespace sbc::dataplane::rtp_stats {

constexpr std::uint8_t kSeqInitialized = 1, kHaveTransit = 2;  // LegCounters::rtp_state
constexpr std::uint32_t kRtpSeqMod = 1u << 16;
constexpr std::uint32_t kMaxDropout = 3000;  // RFC 3550 A.1
constexpr std::uint32_t kMaxMisorder = 100;
constexpr std::uint32_t kMinSequential = 2;

inline std::uint16_t rd16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
inline std::uint32_t rd32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           p[3];
}

// RFC 3550 A.1 init_seq.
template <class S>
void init_seq(S& s, std::uint16_t seq) {
    s.base_seq = seq;
    s.max_seq = seq;
    s.bad_seq = kRtpSeqMod + 1;
    s.cycles = 0;
    s.received = 0;
}

// RFC 3550 A.1 update_seq, every case: the first packet, probation, large jumps, restarts.
template <class S>
void update_seq_full(S& s, std::uint16_t seq) {
    if (!(s.rtp_state & kSeqInitialized)) {
        init_seq(s, seq);
        s.max_seq = static_cast<std::uint16_t>(seq - 1);
        s.probation = kMinSequential;
        s.rtp_state |= kSeqInitialized;
    }
    const std::uint16_t udelta = static_cast<std::uint16_t>(seq - s.max_seq);
    if (s.probation) {
        if (seq == static_cast<std::uint16_t>(s.max_seq + 1)) {
            s.probation--;
            s.max_seq = seq;
            if (s.probation == 0) {
                init_seq(s, seq);
                s.received++;
            }
        } else {
            s.probation = kMinSequential - 1;
            s.max_seq = seq;
        }
        return;
    }
    if (udelta < kMaxDropout) {
        if (seq < s.max_seq) ++s.cycles;  // one more wrap (RFC: cycles += RTP_SEQ_MOD)
        s.max_seq = seq;
    } else if (udelta <= kRtpSeqMod - kMaxMisorder) {
        if (seq == s.bad_seq) {
            init_seq(s, seq);  // the source restarted its sequence
        } else {
            s.bad_seq = (seq + 1u) & (kRtpSeqMod - 1);
            return;
        }
    }
    s.received++;
}

// The common case of a validated source and an in-order (or slightly late) packet first, with
// one compare chain; the rest of A.1 after it (inline too: a source that stays in probation,
// e.g. one repeating its sequence number, would otherwise pay a call per packet).
template <class S>
inline void update_seq(S& s, std::uint16_t seq) {
    const std::uint16_t udelta = static_cast<std::uint16_t>(seq - s.max_seq);
    if (s.probation == 0 && (s.rtp_state & kSeqInitialized) && udelta < kMaxDropout) {
        s.cycles = static_cast<std::uint16_t>(s.cycles + (seq < s.max_seq));
        s.max_seq = seq;
        s.received++;
        return;
    }
    update_seq_full(s, seq);
}

// Counts one accepted packet of a leg: packets, bytes, last arrival, and for RTP (RFC 3550
// §5.1: version 2, 12-byte fixed header) the sequence state and the A.8 jitter. Always
// inlined: the relay fast path is instantiated per Ethernet rewrite mode, and GCC's size
// limits would otherwise leave a call per packet.
template <class S>
[[gnu::always_inline]] inline void count_packet(S& c, bool rtcp, const std::uint8_t* payload,
                                                std::uint32_t len, base::Nanos now,
                                                std::uint64_t rate_q64) {
    ++c.packets;
    c.bytes += len;
    if (rtcp) {
        ++c.rtcp_packets;
        c.last_rx_rtcp = now;
        return;
    }
    c.last_rx_rtp = now;
    if (len < 12 || (payload[0] >> 6) != 2) return;
    update_seq(c, rd16(payload + 2));
    const std::uint32_t ts = rd32(payload + 4);
    // RFC 3550 A.8: arrival time in timestamp units; transit differences need no common clock
    // origin, so `now` (any time line) works.
    const auto arrival = static_cast<std::uint32_t>(
        (static_cast<unsigned __int128>(static_cast<std::uint64_t>(now)) * rate_q64) >> 64);
    const std::uint32_t transit = arrival - ts;
    if (c.rtp_state & kHaveTransit) {
        // RFC 3550 A.8, in integers: J += |D| - J/16 with J kept scaled by 16.
        const auto dd = static_cast<std::int32_t>(transit - c.last_transit);
        // |D| capped (2^26 units: hours of RTP time) so that 16 * J cannot overflow.
        const std::uint32_t ad = std::min<std::uint32_t>(
            dd < 0 ? 0u - static_cast<std::uint32_t>(dd) : static_cast<std::uint32_t>(dd),
            1u << 26);
        c.jitter_q4 += ad - ((c.jitter_q4 + 8) >> 4);
    }
    c.last_transit = transit;
    c.rtp_state |= kHaveTransit;
}

}  // namespace sbc::dataplane::rtp_stats
