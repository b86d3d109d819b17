#pragma once
// Counter lists are declared once, as an X-macro, and generate the enum, the names
// (metric labels) and a fixed array of counters, so they cannot drift apart.
//
//   #define SBC_DROP_REASONS(X) X(bad_ip_header, "IPv4/IPv6 header malformed") X(banned, "source
//   banned") SBC_DECLARE_COUNTER_LIST(DropReason, SBC_DROP_REASONS)
//
// declares `enum class DropReason { bad_ip_header, banned, count_ }`,
// `name(DropReason)`, `description(DropReason)` and `kDropReasonCount`.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#define SBC_COUNTER_ENUM_(id, desc) id,
#define SBC_COUNTER_NAME_(id, desc) std::string_view{#id},
#define SBC_COUNTER_DESC_(id, desc) std::string_view{desc},

#define SBC_DECLARE_COUNTER_LIST(Enum, LIST)                                              \
    enum class Enum : std::uint16_t { LIST(SBC_COUNTER_ENUM_) count_ };                   \
    inline constexpr std::size_t k##Enum##Count = static_cast<std::size_t>(Enum::count_); \
    inline constexpr std::array<std::string_view, k##Enum##Count> k##Enum##Names{         \
        LIST(SBC_COUNTER_NAME_)};                                                         \
    inline constexpr std::array<std::string_view, k##Enum##Count> k##Enum##Descriptions{  \
        LIST(SBC_COUNTER_DESC_)};                                                         \
    constexpr std::string_view name(Enum e) {                                             \
        return k##Enum##Names[static_cast<std::size_t>(e)];                               \
    }                                                                                     \
    constexpr std::string_view description(Enum e) {                                      \
        return k##Enum##Descriptions[static_cast<std::size_t>(e)];                        \
    }

namespace sbc::base {

// Plain (single-writer) counters indexed by a counter-list enum. Each worker owns one
// set; readers sum the sets (no atomics on the fast path).
template <class Enum>
struct CounterSet {
    static constexpr std::size_t kSize = static_cast<std::size_t>(Enum::count_);
    std::array<std::uint64_t, kSize> values{};
    void add(Enum e, std::uint64_t n = 1) { values[static_cast<std::size_t>(e)] += n; }
    std::uint64_t operator[](Enum e) const { return values[static_cast<std::size_t>(e)]; }
    CounterSet& operator+=(const CounterSet& o) {
        for (std::size_t i = 0; i < kSize; ++i) values[i] += o.values[i];
        return *this;
    }
};

}  // namespace sbc::base
