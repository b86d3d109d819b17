// The relay fast path (Pipeline::relay_fast): the common case of a relay, an untagged IPv4/UDP
// frame from a leg's latched source to one of our media ports, handled in two passes over the
// burst (headers, then relay) with one flat record per port (MediaControl::RelayRecord) and one
// statistics line per leg (MediaControl::LegCounters). Everything else is left untouched for the
// generic pipeline (parse_frames -> Pipeline::decide -> rewrite_frame), which stays the reference:
// for every frame the fast path relays, it writes the same bytes and counts the same statistics.
//
// Order: the generic pipeline runs after the fast pass, on the frames left over. So that no
// stream sees its packets out of order (RFC 3550 sequence and jitter state, latching and
// re-latching, which also change the other leg's forward), a frame that goes the generic way
// marks its stream, and every later frame of the burst for that stream goes the generic way
// too. Frames that cannot touch a fast stream need no mark: IPv6 ones (a fast record's local
// address is IPv4, so the generic path drops them as no_session without touching the stream),
// fragments and non-UDP (never relayed).
#include <algorithm>
#include <bit>
#include <cstring>
#include <type_traits>

#include "dataplane/checksum.hpp"
#include "dataplane/media_layout.hpp"
#include "dataplane/pipeline.hpp"
#include "dataplane/rtp_stats.hpp"

namespace sbc::dataplane {

namespace {

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), with `delta` = sum(~m) + sum(m') folded to 16 bits
// when the record was built. Folding early gives the same result: both sums are non-zero and
// congruent modulo 0xffff, so their folds are the same value in 1..0xffff. Both terms are at
// most 0xffff, so one end-around carry finishes the sum.
inline std::uint16_t apply_delta(std::uint16_t hc, std::uint32_t delta) {
    const std::uint32_t s = delta + static_cast<std::uint16_t>(~hc);
    return static_cast<std::uint16_t>(~((s & 0xffff) + (s >> 16)));
}

// RFC 791 §3.1: the 20-byte header's one's complement sum is all ones. The sum of its five
// 32-bit words (as loaded, any byte order) is congruent modulo 0xffff to that 16-bit sum times
// a unit (2^16 = 1 and a byte swap multiplies by 256, both invertible modulo 0xffff), and it is
// never 0 (the first byte is 0x45): so the checksum is right exactly when the plain sum is a
// multiple of 0xffff. One multiply-based remainder instead of four dependent folds.
inline bool ipv4_header_ok(const std::uint8_t* ip) {
    const std::uint64_t s =
        std::uint64_t{ld32(ip)} + ld32(ip + 4) + ld32(ip + 8) + ld32(ip + 12) + ld32(ip + 16);
    return s % 0xffff == 0;
}

// RFC 5761 §4: with rtcp-mux, RTCP is told apart by its packet type (192-223).
inline bool looks_like_rtcp(const std::uint8_t* payload, std::uint32_t len) {
    return len >= 8 && (payload[0] >> 6) == 2 && payload[1] >= 192 && payload[1] <= 223;
}

// Four header bytes as one word in memory order.
constexpr std::uint32_t word(std::uint8_t b0, std::uint8_t b1, std::uint8_t b2, std::uint8_t b3) {
    return std::endian::native == std::endian::little
               ? std::uint32_t{b0} | std::uint32_t{b1} << 8 | std::uint32_t{b2} << 16 |
                     std::uint32_t{b3} << 24
               : std::uint32_t{b0} << 24 | std::uint32_t{b1} << 16 | std::uint32_t{b2} << 8 |
                     std::uint32_t{b3};
}
// Frame bytes 12-15: EtherType IPv4 (no tag), version 4 with a 20-byte header; the TOS byte
// is ignored.
constexpr std::uint32_t kEthIpMask = word(0xff, 0xff, 0xff, 0);
constexpr std::uint32_t kEthIpWant = word(0x08, 0x00, 0x45, 0);
// Frame bytes 20-23 (IPv4 bytes 6-9): reserved bit, MF and fragment offset zero (DF may be
// set), protocol UDP; the TTL is ignored.
constexpr std::uint32_t kFragProtoMask = word(0xbf, 0xff, 0, 0xff);
constexpr std::uint32_t kFragProtoWant = word(0, 0, 0, 17);

constexpr std::size_t kChunk = 64;

// How relay_fast rewrites the Ethernet header: not at all (the caller does), towards a fixed
// next hop, or back to the sender.
enum class L2Mode { none, fixed, back };

// The destination port of a frame the fast case does not cover, if it is a complete IPv4/UDP
// datagram that the generic path may hand to a stream (tags skipped, options allowed); 0 if not.
[[gnu::noinline]] std::uint32_t generic_udp4_port(const Frame& f) {
    const std::uint8_t* e = f.data;
    const std::uint32_t len = f.len;
    if (f.wire_len > len || len < 14) return 0;
    std::uint32_t l3 = 14;
    std::uint16_t type = rd16(e + 12);
    for (int tags = 0; tags < 2 && (type == 0x8100 || type == 0x88A8 || type == 0x9100); ++tags) {
        if (len < l3 + 4) return 0;
        type = rd16(e + l3 + 2);
        l3 += 4;
    }
    if (type != 0x0800 || len < l3 + 20) return 0;
    const std::uint8_t* ip = e + l3;
    const std::uint32_t ihl = (ip[0] & 0x0f) * 4u;
    if (ip[9] != 17 || (rd16(ip + 6) & 0x3fff) != 0 || ihl < 20 || len < l3 + ihl + 8) return 0;
    return rd16(ip + ihl + 2);
}

}  // namespace

std::size_t Pipeline::relay_fast(std::span<Frame> frames, std::span<std::uint8_t> relayed,
                                 base::Nanos now, const ParseOptions& options, const RelayL2& l2) {
    const std::size_t total = std::min(frames.size(), relayed.size());
    MediaControl& mc = media_;
    if (mc.relay_.empty()) {  // no media port range (max below min): nothing to relay
        std::fill(relayed.begin(), relayed.begin() + static_cast<std::ptrdiff_t>(total), 0);
        return 0;
    }
    const std::uint32_t port_min = mc.port_min_, port_max = mc.port_max_;
    // The new Ethernet addresses as two words (bytes 0-7 and 8-11), stored whole per frame; when
    // the frame goes back where it came from, its old source (bytes 6-11, loaded as bytes 6-13)
    // is merged into the first.
    std::uint64_t l2_first = 0, l2_back_mask = 0;
    std::uint32_t l2_second = 0;
    const bool l2_back = l2.destination == nullptr;
    if (l2.source != nullptr) {
        std::uint8_t b[12] = {};
        if (!l2_back) std::memcpy(b, l2.destination, 6);
        std::memcpy(b + 6, l2.source, 6);
        std::memcpy(&l2_first, b, 8);
        std::memcpy(&l2_second, b + 8, 4);
        const std::uint8_t m[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0};
        std::memcpy(&l2_back_mask, m, 8);
    }
    // Read once: the frame stores below are byte stores, which may alias anything, and would
    // otherwise make the compiler reload these for every frame.
    const bool l2_rewrite = l2.source != nullptr;
    const bool verify_udp = options.verify_udp_checksum;
    MediaControl::RelayRecord* const relay = mc.relay_.data();
    MediaControl::LegCounters* const stats = mc.stats_.data();
    std::size_t done = 0;
    for (std::size_t base = 0; base < total; base += kChunk) {
        const std::size_t n = std::min(kChunk, total - base);
        Frame* f = frames.data() + base;
        std::uint8_t* ok = relayed.data() + base;
        // Per frame: the record of its destination port (nullptr: not a relay candidate at
        // all), and whether its headers are the fast case.
        const MediaControl::RelayRecord* rec[kChunk];
        bool fast[kChunk];
        // Stage 1: headers. A media-port frame that is not the fast case keeps its record (with
        // fast[i] false) so that its stream can be marked (see the order note at the top).
        for (std::size_t i = 0; i < n; ++i) {
            rec[i] = nullptr;
            fast[i] = false;
            const std::uint8_t* e = f[i].data;
            const std::uint32_t len = f[i].len;
            if (i + 2 < n) __builtin_prefetch(f[i + 2].data);  // a NIC's DMA is not in L1
            if (len >= 42 && f[i].wire_len <= len && (ld32(e + 12) & kEthIpMask) == kEthIpWant &&
                (ld32(e + 20) & kFragProtoMask) == kFragProtoWant) {
                const std::uint32_t dport = rd16(e + 36);
                if (dport - port_min > port_max - port_min) continue;
                rec[i] = &relay[dport - port_min];
                __builtin_prefetch(rec[i]);
                // Lengths consistent (Ethernet padding after the datagram allowed), a source
                // that can be a sender (RFC 1122 §3.2.1.3), and one the ban filter clears.
                const std::uint32_t ip_total = rd16(e + 16);
                const std::uint8_t s0 = e[26];
                // The IPv4 header checksum is checked here too, while the record is on its way.
                fast[i] = ip_total >= 28 && ip_total <= len - 14 && rd16(e + 38) == ip_total - 20 &&
                          s0 != 0 && s0 != 127 && s0 < 224 &&
                          !bans_.may_be_banned_v4(ld32(e + 26)) && ipv4_header_ok(e + 14);
            } else if (const std::uint32_t dport = generic_udp4_port(f[i]);
                       dport - port_min <= port_max - port_min) {
                rec[i] = &relay[dport - port_min];
            }
        }
        // Stage 2, in burst order: the record's identity check (marking streams that go the
        // generic way), the leg's statistics and the rewrite. Stage 1 asked for every record of
        // the burst; the statistics lines, whose index is in the record, are asked for first,
        // all together, so that their misses overlap too.
        std::uint32_t marked[kChunk];
        std::size_t n_marked = 0;
        auto is_marked = [&](std::uint32_t slot_plus_1) {
            for (std::size_t k = 0; k < n_marked; ++k)
                if (marked[k] == slot_plus_1) return true;
            return false;
        };
        // Stage 2 is instantiated per L2 rewrite (none, to a fixed next hop, back to the sender)
        // and per UDP checksum verification (on, or off when the NIC did it), both fixed for
        // the call: no per-frame branch on either, fewer live values.
        auto stage2 = [&](auto l2_mode, auto verify_mode) {
            constexpr L2Mode kL2 = decltype(l2_mode)::value;
            constexpr bool kVerifyUdp = decltype(verify_mode)::value;
            std::size_t relayed_here = 0;
            for (std::size_t i = 0; i < n; ++i)
                if (fast[i]) __builtin_prefetch(&stats[rec[i]->stats_index], 1);
            for (std::size_t i = 0; i < n; ++i) {
                const MediaControl::RelayRecord* r = rec[i];
                if (r == nullptr) {
                    ok[i] = 0;
                    continue;
                }
                std::uint8_t* ip = f[i].data + 14;
                std::uint8_t* udp = ip + 20;
                // Source, destination and ports (12 header bytes) against the record's copy of
                // them in the same order: two loads and one branch.
                const bool same =
                    ((ld64(ip + 12) ^ ld64(&r->source)) | (ld32(udp) ^ r->ports_in)) == 0;
                bool go = fast[i] && same && (r->flags & MediaControl::kRecordFast) &&
                          !(n_marked && is_marked(r->slot_plus_1));
                const std::uint32_t payload_len = rd16(udp + 4) - 8u;
                if (go && (r->flags & MediaControl::kRecordMux)) [[unlikely]]
                    go = !looks_like_rtcp(udp + 8, payload_len);
                if constexpr (kVerifyUdp) {
                    if (go && ld16(udp + 6) != 0) {
                        const std::uint32_t ulen = payload_len + 8;
                        std::uint32_t sum = checksum_add(0, ip + 12, 8) + 17 + ulen;
                        sum = checksum_add(sum, udp, ulen);
                        go = checksum_fold(sum) == 0xffff;
                    }
                }
                if (!go) [[unlikely]] {
                    ok[i] = 0;
                    if (r->slot_plus_1 != 0 && !is_marked(r->slot_plus_1))
                        marked[n_marked++] = r->slot_plus_1;
                    continue;
                }
                // The record's words are read before the first store into the frame (which may
                // alias them as far as the compiler knows).
                const std::uint32_t new_src = r->new_src, new_dst = r->new_dst,
                                    new_ports = r->new_ports, ip_delta = r->ip_delta,
                                    udp_delta = r->udp_delta;
                rtp_stats::count_packet(stats[r->stats_index], r->rtcp != 0, udp + 8, payload_len,
                                        now, r->rate_q64);
                // The old words are the record's (the frame matched them): only new words are
                // stored, and each checksum takes one precomputed RFC 1624 delta.
                st32(ip + 12, new_src);
                st32(ip + 16, new_dst);
                st16(ip + 10, apply_delta(ld16(ip + 10), ip_delta));
                st32(udp, new_ports);
                const std::uint16_t uc = ld16(udp + 6);
                if (uc != 0) {  // IPv4 UDP without checksum stays without (RFC 768)
                    const std::uint16_t nc = apply_delta(uc, udp_delta);
                    st16(udp + 6, nc == 0 ? 0xffff : nc);  // RFC 768: computed zero sent as ones
                }
                if constexpr (kL2 != L2Mode::none) {
                    std::uint8_t* eth = f[i].data;
                    std::uint64_t first = l2_first;
                    if constexpr (kL2 == L2Mode::back) {
                        std::uint64_t old;
                        std::memcpy(&old, eth + 6, 8);
                        first |= old & l2_back_mask;
                    }
                    std::memcpy(eth, &first, 8);
                    std::memcpy(eth + 8, &l2_second, 4);
                }
                ok[i] = 1;
                ++relayed_here;
            }
            return relayed_here;
        };
        auto with_l2 = [&](auto verify_mode) {
            if (!l2_rewrite)
                return stage2(std::integral_constant<L2Mode, L2Mode::none>{}, verify_mode);
            if (l2_back) return stage2(std::integral_constant<L2Mode, L2Mode::back>{}, verify_mode);
            return stage2(std::integral_constant<L2Mode, L2Mode::fixed>{}, verify_mode);
        };
        done += verify_udp ? with_l2(std::true_type{}) : with_l2(std::false_type{});
    }
    counters_.events.add(PipelineEvent::rx, done);
    counters_.events.add(PipelineEvent::relayed, done);
    return done;
}

}  // namespace sbc::dataplane
