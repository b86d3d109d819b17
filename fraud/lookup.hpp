#pragma once
// Internal to fraud/: lookup structures compiled from the configuration (globs, time zones,
// weekly business-hour maps; digit tries are base::DigitTrie).
#include <bitset>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/base.hpp"
#include "base/digit_trie.hpp"
#include "fraud/fraud.hpp"

namespace sbc::fraud::detail {

// The digit trie of prefix lists (bit per list, OR along the path) and calling codes (index+1
// into the country table, deepest wins) is the one in base/.
using base::DigitTrie;

// Case-insensitive glob with '*' only, matched anywhere in the text (scanner User-Agents).
class UaGlob {
  public:
    explicit UaGlob(std::string_view pattern);
    bool matches(std::string_view lowered_text) const;
    const std::string& pattern() const { return pattern_; }

  private:
    std::string pattern_;
    base::SubstringGlob glob_;
};

// UTC offsets of an IANA zone, read from its TZif file (RFC 8536). libstdc++ 12 has no
// std::chrono::tzdb, and TZ + localtime_r is neither thread-safe nor cheap per call.
class TimeZone {
  public:
    static base::Result<TimeZone> load(const std::string& zoneinfo_dir, const std::string& name);
    // The contents of a TZif file (`name` is for messages).
    static base::Result<TimeZone> parse(std::span<const unsigned char> bytes,
                                        const std::string& name);
    std::int32_t offset_at(std::int64_t unix_seconds) const;

  private:
    std::vector<std::int64_t> transitions_;
    std::vector<std::int32_t> offsets_;  // offset in force from transitions_[i]
    std::int32_t initial_offset_ = 0;
};

// A week of local minutes (bit = business minute), from BusinessHours ranges.
class WeekMap {
  public:
    static constexpr int kMinutes = 7 * 1440;
    void add(const BusinessHours& h);
    bool any() const { return set_; }
    // weekday 0 = Monday
    bool contains(int weekday, int minute) const { return bits_[weekday * 1440 + minute]; }

  private:
    std::bitset<kMinutes> bits_;
    bool set_ = false;
};

}  // namespace sbc::fraud::detail
