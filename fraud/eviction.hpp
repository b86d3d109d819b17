#pragma once
// Internal to fraud/: how a full table chooses the entry a newcomer replaces. The key, call and
// ban tables share the sampling and differ only in how they judge an entry.
#include <cstddef>
#include <cstdint>

#include "fraud/state.hpp"

namespace sbc::fraud::detail {

// A full table looks at a few occupied buckets from a position picked by the newcomer's hash,
// not at the whole table: eviction stays O(1), and which entries are looked at cannot be
// steered by an attacker who does not know the hash seeds.
constexpr std::size_t kEvictionSample = 8;  // occupied buckets judged
constexpr std::size_t kEvictionScan = 64;   // buckets walked to find them, at most

// A table's judgement of one sampled entry.
struct Candidate {
    enum class Kind : std::uint8_t {
        keep,  // never evicted by a newcomer
        take,  // evicted at once, the sampling stops
        rank,  // evicted if no other candidate ranks lower
    };
    Kind kind = Kind::keep;
    std::int64_t rank = 0;
    static Candidate keep() { return {Kind::keep, 0}; }
    static Candidate take(std::int64_t r = 0) { return {Kind::take, r}; }
    static Candidate ranked(std::int64_t r) { return {Kind::rank, r}; }
};

struct Victim {
    std::int64_t bucket = -1;  // -1: every candidate is kept
    std::int64_t rank = 0;     // the victim's (0 when there is none)
    bool taken = false;        // chosen by Candidate::take
};

// Where the sample of a newcomer `h` starts: in a set-associative table, its first set (when
// both its sets are full, the victim must come from the first); elsewhere a bucket picked by
// a second mix.
inline std::size_t sample_start(const SlotTable& t, std::uint64_t h) {
    return t.home(mix64(h));
}
inline std::size_t sample_start(const SetTable& t, std::uint64_t h) {
    return t.victim_set(h) * SetTable::kWays;
}

// `judge(bucket)` returns the Candidate for an occupied bucket of `t`; `h` is the newcomer's
// hash. Ties in rank go to the first bucket sampled. In a SetTable whose two sets of `h` are
// full, the kEvictionSample buckets judged are exactly the first set's ways.
template <class Table, class Judge>
Victim sample_victim(const Table& t, std::uint64_t h, Judge&& judge) {
    static_assert(kEvictionSample >= SetTable::kWays);
    Victim v;
    std::size_t pos = sample_start(t, h);
    for (std::size_t n = 0, seen = 0; n < kEvictionScan && seen < kEvictionSample; ++n) {
        std::size_t b = (pos + n) % t.buckets();
        if (t.hash_at(b) == 0) continue;
        ++seen;
        const Candidate c = judge(b);
        if (c.kind == Candidate::Kind::keep) continue;
        if (c.kind == Candidate::Kind::take) {
            v.bucket = static_cast<std::int64_t>(b);
            v.rank = c.rank;
            v.taken = true;
            return v;
        }
        if (v.bucket < 0 || c.rank < v.rank) {
            v.bucket = static_cast<std::int64_t>(b);
            v.rank = c.rank;
        }
    }
    return v;
}

// Starts loading the buckets and entry headers sample_victim(t, h, ...) will judge first, so
// that creating a key in a full table does not pay their misses one after the other.
template <class Table>
void prefetch_sample(const Table& t, std::uint64_t h) {
    const std::size_t pos = sample_start(t, h);
    for (std::size_t n = 0; n < 12; ++n) t.prefetch_at(pos + n);
}

}  // namespace sbc::fraud::detail
