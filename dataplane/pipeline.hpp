#pragma once
// dataplane/: the pipeline: bans, classification, rate limits, relay lookup and latching.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "dataplane/ban_table.hpp"
#include "dataplane/media.hpp"
#include "dataplane/parse.hpp"
#include "dataplane/rate_limiter.hpp"
#include "dataplane/types.hpp"

namespace sbc::dataplane {

// ---------------------------------------------------------------------------------------
// The pipeline
// ---------------------------------------------------------------------------------------
// Pipeline::relay_fast can rewrite the Ethernet addresses of what it relays while the line is
// hot: source = `source`, destination = `destination` (the next hop) or, when that is null, the
// frame's own source (back to the neighbour it came from).
struct RelayL2 {
    const std::uint8_t* source = nullptr;       // 6 bytes; null: L2 left to the caller
    const std::uint8_t* destination = nullptr;  // 6 bytes; null: the frame's source
};

class Pipeline {
  public:
    explicit Pipeline(const PipelineConfig& config);
    // Fills out[i] for packets whose out[i].action is undecided: ban check first, then
    // classify (media port range / SIP ports / other), rate limit, relay lookup and latching.
    void decide(std::span<const PacketMeta> meta, std::span<Decision> out, base::Nanos now);

    using Forward = MediaControl::Forward;
    const Forward& forward_of(const Decision& d) const;
    // Rewrites IP addresses/ports of a relayed frame in place and fixes the IPv4 header and
    // UDP checksums incrementally (RFC 1624). L2 is left to the backend. Returns false (and
    // leaves the frame alone) when the frame's family differs from the forward's.
    static bool rewrite_frame(Frame& frame, const PacketMeta& meta, const Forward& fwd);

    // The relay fast path for a burst of Ethernet frames: the common case of an untagged
    // IPv4/UDP frame without options or fragmentation, from a leg's latched source to its
    // local port, is checked in a few word compares, counted in the leg's statistics and
    // rewritten in place at L3/L4 (and L2 if asked, below), exactly as parse_frames +
    // decide + rewrite_frame would (but for one documented case: a frame takes the forward
    // as it is when it comes, not as a latch later in the same burst leaves it; see
    // docs/dataplane.md, "The relay fast path"). relayed[i] becomes 1 for those frames and 0
    // for every other frame, which the caller runs through the generic pipeline unchanged
    // (VLAN, IPv6, options, fragments, SIP, unlatched or re-latching legs, sources that may be
    // banned, RTCP on an rtcp-mux port...). Returns the number relayed. Bans still come first: a
    // source the ban filter cannot clear is left to the generic pipeline.
    // With `l2.source` set, the Ethernet addresses are rewritten too (RelayL2).
    std::size_t relay_fast(std::span<Frame> frames, std::span<std::uint8_t> relayed,
                           base::Nanos now, const ParseOptions& options = {},
                           const RelayL2& l2 = {});

    MediaControl& media() { return media_; }
    BanTable& bans() { return bans_; }
    RateLimiter& limiter() { return limiter_; }
    const Counters& counters() const { return counters_; }
    Counters& counters() { return counters_; }
    const PipelineConfig& config() const { return config_; }
    // On policy reload: limits, ports and trusted sources change; tables and streams survive.
    void apply_config(const PipelineConfig& config);

  private:
    bool is_trusted(const base::IpAddress& a) const;
    bool is_local(const base::IpAddress& a) const;
    bool may_be_banned(const base::IpAddress& a) const;
    bool is_neighbour_discovery_for_us(const PacketMeta& m) const;
    void finish(Decision& d, Action a, DropReason r);

    PipelineConfig config_;
    RateLimiter limiter_;
    BanTable bans_;
    MediaControl media_;
    Counters counters_;
    std::array<std::uint8_t, 65536 / 8> sip_udp_{}, sip_tcp_{};  // port bitmaps
};

}  // namespace sbc::dataplane
