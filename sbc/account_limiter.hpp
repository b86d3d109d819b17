#pragma once
// Per-account token buckets of the front door (`[rate_limits.<class>] per_account`), in a
// fixed-capacity table: accounts are attacker-chosen strings (From user, Authorization
// username), so the table never grows and a flood of invented accounts costs no memory.
//
// Set-associative, 8 ways per set chosen by a keyed hash of (class, account). The key is the
// 64-bit hash only (no string kept): two accounts share a bucket only on a full 64-bit
// collision, and the random key makes collisions impossible to aim at.
// A new key takes an empty way, else a way whose bucket has refilled to its burst (evicting it
// changes no decision: a fresh bucket is also full), else the least recently used way (counted
// as `evicted_active`: that account gets a fresh bucket if it comes back).
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/base.hpp"
#include "policy/policy.hpp"

namespace sbc {

class AccountLimiter {
  public:
    static constexpr std::uint32_t kWays = 8;
    // `capacity` entries, rounded up to a power-of-two number of sets; `seed` keys the hash.
    explicit AccountLimiter(std::uint32_t capacity, std::uint64_t seed);

    // One request of `account` in class `cls` at `now` against `limit` (the policy's
    // per_account limit of that class, passed per call so a reload applies at once).
    // true: admitted (a token taken, or no limit); false: over the limit.
    bool admit(std::string_view account, policy::TrafficClass cls, const policy::RateLimit& limit,
               base::Nanos now);

    std::size_t capacity() const { return entries_.size(); }
    std::size_t used() const { return used_; }
    std::uint64_t evicted_idle() const { return evicted_idle_; }
    std::uint64_t evicted_active() const { return evicted_active_; }
    std::size_t memory_bytes() const;

  private:
    struct Entry {
        std::uint64_t key = 0;  // 0 = empty
        base::Nanos last = 0;
        double tokens = 0;
        float rate = 0;  // of the last admit: says when the bucket is full again
        float burst = 0;
    };
    std::uint64_t key_of(std::string_view account, policy::TrafficClass cls) const;
    std::vector<Entry> entries_;
    std::uint64_t set_mask_ = 0;
    std::uint64_t seed_ = 0;
    std::size_t used_ = 0;
    std::uint64_t evicted_idle_ = 0;
    std::uint64_t evicted_active_ = 0;
};

}  // namespace sbc
