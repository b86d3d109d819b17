#include "sbc/account_limiter.hpp"

#include <algorithm>
#include <bit>

namespace sbc {

namespace {
// Tokens of `e` at `now` (refilled, capped at the burst it was last used with).
double refilled(double tokens, base::Nanos last, double rate, double burst, base::Nanos now) {
    if (now <= last) return tokens;
    return std::min(burst, tokens + static_cast<double>(now - last) * rate / 1e9);
}
}  // namespace

AccountLimiter::AccountLimiter(std::uint32_t capacity, std::uint64_t seed)
    : seed_(base::mix64(seed | 1)) {
    std::uint64_t sets = std::max<std::uint64_t>(1, (capacity + kWays - 1) / kWays);
    sets = std::bit_ceil(sets);
    set_mask_ = sets - 1;
    entries_.resize(sets * kWays);
}

std::size_t AccountLimiter::memory_bytes() const {
    return entries_.size() * sizeof(Entry) + sizeof(*this);
}

std::uint64_t AccountLimiter::key_of(std::string_view account, policy::TrafficClass cls) const {
    std::uint64_t h = seed_ ^ (static_cast<std::uint64_t>(cls) + 1) * base::kGoldenGamma;
    for (unsigned char c : account) h = base::mix64(h ^ c);  // keyed: collisions cannot be aimed
    h = base::mix64(h ^ account.size());
    return h ? h : 1;
}

bool AccountLimiter::admit(std::string_view account, policy::TrafficClass cls,
                           const policy::RateLimit& limit, base::Nanos now) {
    if (!limit.enabled) return true;
    const double burst = std::max(1.0, limit.burst);
    const std::uint64_t key = key_of(account, cls);
    Entry* set = &entries_[(key & set_mask_) * kWays];
    Entry* e = nullptr;
    for (unsigned w = 0; w < kWays && !e; ++w)
        if (set[w].key == key) e = &set[w];
    if (!e) {
        Entry* empty = nullptr;
        Entry* full = nullptr;
        Entry* lru = nullptr;
        for (unsigned w = 0; w < kWays; ++w) {
            Entry& c = set[w];
            if (c.key == 0) {
                if (!empty) empty = &c;
                continue;
            }
            if (refilled(c.tokens, c.last, c.rate, c.burst, now) >= c.burst &&
                (!full || c.last < full->last))
                full = &c;
            if (!lru || c.last < lru->last) lru = &c;
        }
        if (empty) {
            e = empty;
            ++used_;
        } else if (full) {
            e = full;
            ++evicted_idle_;
        } else {
            e = lru;
            ++evicted_active_;
        }
        *e = Entry{key, now, burst, static_cast<float>(limit.rate), static_cast<float>(burst)};
    } else {
        // A reload may have changed the limit: refill with the current one.
        e->tokens = refilled(e->tokens, e->last, limit.rate, burst, now);
        e->last = std::max(e->last, now);
        e->rate = static_cast<float>(limit.rate);
        e->burst = static_cast<float>(burst);
    }
    if (e->tokens >= 1) {
        e->tokens -= 1;
        return true;
    }
    return false;
}

}  // namespace sbc
