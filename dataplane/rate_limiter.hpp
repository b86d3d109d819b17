#pragma once
// dataplane/: the rate limiter.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dataplane/types.hpp"

namespace sbc::dataplane {

// ---------------------------------------------------------------------------------------
// Rate limiter: token buckets per (source | prefix, class) in a fixed-capacity table.
// ---------------------------------------------------------------------------------------
class RateLimiter {
  public:
    enum class Verdict : std::uint8_t { admit, deny, deny_ban };

    RateLimiter(std::uint32_t capacity, const PipelineConfig& config);
    void apply_config(const PipelineConfig& config);

    // One token from the source's bucket, its prefix's bucket and (for sources on probation)
    // the class-wide new-source bucket. deny_ban: sustained excess reached the ban threshold.
    // `vouched`: signaling knows the source (a protected signaling peer): it counts as
    // established at once (kept, and out of the new-source bucket a flood exhausts); its own
    // and its prefix's buckets still apply.
    Verdict admit(const base::IpAddress& src, TrafficClass cls, base::Nanos now,
                  bool vouched = false);
    // Hints the cache about the sets admit(src, cls) will read (the source's and its prefix's),
    // so that a burst's misses overlap (the pipeline calls it for the burst first).
    void prefetch(const base::IpAddress& src, TrafficClass cls) const;

    std::size_t capacity() const { return entries_.size(); }
    std::size_t size() const { return used_; }
    std::size_t memory_bytes() const;
    std::uint64_t untracked() const { return untracked_; }
    // For tests and `sbc dataplane`: whether a source has an established entry for a class.
    bool is_established(const base::IpAddress& src, TrafficClass cls) const;

    static constexpr unsigned kWays = 8;

    struct Entry {
        base::IpAddress key;
        std::uint8_t cls = 0;
        std::uint8_t is_prefix = 0;
        std::uint8_t established = 0;
        std::uint8_t pad = 0;
        std::uint32_t hits = 0;
        float tokens = 0;
        std::uint32_t violations = 0;
        base::Nanos first_seen = 0;
        base::Nanos last_seen = 0;
        base::Nanos window_start = 0;
    };

  private:
    struct Bucket {
        double tokens = 0;
        base::Nanos last = 0;
    };
    Entry* find_or_insert(const base::IpAddress& key, std::uint8_t cls, std::uint8_t is_prefix,
                          base::Nanos now, bool& inserted);
    const Entry* find(const base::IpAddress& key, std::uint8_t cls, std::uint8_t is_prefix) const;
    static bool take(float& tokens, base::Nanos& last, const RateLimit& lim, base::Nanos now);

    // What a lookup and the choice of a victim read of a set, its eight ways in one cache line:
    // the tag (0 = empty way) and a stamp (bit 31: established; below it, last_seen in units of
    // 2^20 ns, modulo 2^31). A miss, and a new source (which scans the whole set for a victim,
    // the flood's case), then read one line instead of the set's eight entries; an entry is read
    // only when its tag matches, or when the coarse stamps cannot decide.
    struct Way {
        std::uint32_t tag = 0;
        std::uint32_t stamp = 0;
    };
    struct alignas(64) WaySet {
        std::array<Way, kWays> way{};
    };
    static constexpr std::uint32_t kEstablishedBit = 1u << 31;
    static constexpr unsigned kStampShift = 20;
    static std::uint32_t stamp_units(base::Nanos t) {
        return static_cast<std::uint32_t>(static_cast<std::uint64_t>(t) >> kStampShift) &
               ~kEstablishedBit;
    }
    Way& way_of(const Entry* e) {
        const auto i = static_cast<std::size_t>(e - entries_.data());
        return ways_[i / kWays].way[i % kWays];
    }
    void restamp(const Entry* e) {
        way_of(e).stamp = stamp_units(e->last_seen) | (e->established ? kEstablishedBit : 0u);
    }
    std::uint64_t key_hash(const base::IpAddress& key, std::uint8_t cls,
                           std::uint8_t is_prefix) const;

    std::vector<Entry> entries_;
    std::vector<WaySet> ways_;
    std::uint32_t set_mask_ = 0;
    std::size_t used_ = 0;
    std::uint64_t untracked_ = 0;
    std::array<ClassLimits, kTrafficClassCount> limits_{};
    std::array<Bucket, kTrafficClassCount> new_source_buckets_{};
    std::uint8_t v4_len_ = 24, v6_len_ = 64;
    BanPolicy ban_policy_;
    base::Nanos establish_after_ = 0, idle_evict_after_ = 0;
};

}  // namespace sbc::dataplane
