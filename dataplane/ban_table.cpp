// Bans: a fixed-capacity set-associative table keyed by prefix (a single address is a
// full-length prefix). It is checked first for every packet, so the lookup is one hash probe
// per prefix length in use (usually only full-length).
#include <algorithm>
#include <bit>
#include <cstring>

#include "dataplane/ban_table.hpp"

namespace sbc::dataplane {

namespace {
constexpr base::Nanos kDefaultRemember = base::seconds(86400);

unsigned mapped_len(const base::Prefix& p) {
    return p.is_v4() ? p.length() + 96u : p.length();
}
}  // namespace

std::string_view name(BanOrigin o) {
    switch (o) {
        case BanOrigin::rate_limit:
            return "rate_limit";
        case BanOrigin::signaling:
            return "signaling";
        case BanOrigin::fraud:
            return "fraud";
        case BanOrigin::control:
            return "control";
    }
    return "?";
}

BanTable::BanTable(std::uint32_t capacity) {
    std::uint32_t sets = std::max<std::uint32_t>(1, (capacity + kWays - 1) / kWays);
    sets = std::bit_ceil(sets);
    set_mask_ = sets - 1;
    slots_.resize(std::size_t{sets} * kWays);
    hashes_.assign(slots_.size(), 0);
}

std::uint64_t BanTable::hash_of(const base::Prefix& p) const {
    std::uint64_t h = p.address().hash() ^ (std::uint64_t{p.length()} + 1) * base::kGoldenGamma;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    return h | 1;
}

BanTable::Slot* BanTable::find(const base::Prefix& p, std::uint64_t h) {
    const std::size_t base = (h & set_mask_) * kWays;
    const std::uint64_t* hs = &hashes_[base];
    for (unsigned w = 0; w < kWays; ++w)
        if (hs[w] == h && slots_[base + w].info.prefix == p) return &slots_[base + w];
    return nullptr;
}

base::Result<void> BanTable::ban(const base::Prefix& p, base::Nanos duration, BanOrigin origin,
                                 base::Nanos now) {
    const std::uint64_t h = hash_of(p);
    const base::Nanos expires = now + duration;
    if (Slot* s = find(p, h)) {
        s->info.expires = std::max(s->info.expires, expires);
        ++s->info.offenses;
        s->info.origin = origin;
        s->remember_until = std::max(s->remember_until, s->info.expires + kDefaultRemember);
        return {};
    }
    // Victim: an empty way, else a forgotten record, else the expired record remembered the
    // shortest, else the live ban expiring first if it expires before the new one would.
    Slot* set = &slots_[(h & set_mask_) * kWays];
    Slot* victim = nullptr;
    for (unsigned w = 0; w < kWays && !victim; ++w)
        if (set[w].hash == 0) victim = &set[w];
    if (!victim) {
        Slot* expired = nullptr;
        Slot* live = nullptr;
        for (unsigned w = 0; w < kWays; ++w) {
            Slot& s = set[w];
            if (s.info.expires <= now) {
                if (!expired || s.remember_until < expired->remember_until) expired = &s;
            } else if (!live || s.info.expires < live->info.expires) {
                live = &s;
            }
        }
        if (expired) {
            victim = expired;
        } else if (live && live->info.expires < expires) {
            victim = live;
        } else {
            return base::make_error("ban table full (capacity " + std::to_string(capacity()) + ")");
        }
        count_len(mapped_len(victim->info.prefix), -1);
        filter_removed(victim->info.prefix);
    }
    victim->hash = h;
    set_hash(victim, h);
    victim->info = BanInfo{p, expires, 1, origin, 0};
    victim->remember_until = expires + kDefaultRemember;
    count_len(mapped_len(p), +1);
    filter_add(p);
    return {};
}

base::Result<void> BanTable::ban_escalating(const base::IpAddress& a, const BanPolicy& policy,
                                            BanOrigin origin, base::Nanos now) {
    return ban_escalating(base::Prefix(a, a.is_v4() ? 32 : 128), policy, origin, now);
}

base::Result<void> BanTable::ban_escalating(const base::Prefix& p, const BanPolicy& policy,
                                            BanOrigin origin, base::Nanos now) {
    Slot* s = find(p, hash_of(p));
    std::uint32_t offenses = 0;
    if (s) {
        if (s->info.expires > now) return {};  // already banned
        if (s->remember_until > now) offenses = s->info.offenses;
    }
    if (policy.durations.empty()) return base::make_error("ban policy has no durations");
    const base::Nanos d =
        policy.durations[std::min<std::size_t>(offenses, policy.durations.size() - 1)];
    if (s && s->remember_until <= now) s->info.offenses = 0;
    auto r = ban(p, d, origin, now);
    if (!r) return r;
    if (Slot* t = find(p, hash_of(p))) t->remember_until = t->info.expires + policy.forget_after;
    return {};
}

bool BanTable::unban(const base::Prefix& p) {
    Slot* s = find(p, hash_of(p));
    if (!s) return false;
    count_len(mapped_len(s->info.prefix), -1);
    const base::Prefix removed = s->info.prefix;
    *s = Slot{};
    set_hash(s, 0);
    filter_removed(removed);
    return true;
}

void BanTable::filter_add(const base::Prefix& p) {
    if (!p.is_v4()) return;  // an IPv6 entry never matches an IPv4 source
    std::uint32_t w;
    std::memcpy(&w, p.address().bytes().data() + 12, 4);
    if (p.length() == 32) {
        const std::uint32_t h = exact_bit(w);
        v4_exact_[h >> 6] |= std::uint64_t{1} << (h & 63);
    } else if (p.length() >= 16) {
        const std::uint32_t b = w & 0xffffu;  // the first two address bytes
        v4_by16_[b >> 6] |= std::uint64_t{1} << (b & 63);
    } else {
        ++v4_unfiltered_;
    }
}

// Removal cannot clear a bit another entry may share: the bits stay (false positives, which
// only send a source to the full lookup) until enough entries have gone to make a rebuild
// from the live entries worth its scan of the table.
void BanTable::filter_removed(const base::Prefix& p) {
    if (p.is_v4() && p.length() < 16) --v4_unfiltered_;
    if (++filter_stale_ <= std::max<std::uint32_t>(64, live_)) return;
    filter_stale_ = 0;
    v4_exact_.fill(0);
    v4_by16_.fill(0);
    v4_unfiltered_ = 0;
    for (const Slot& s : slots_)
        if (s.hash != 0) filter_add(s.info.prefix);
}

void BanTable::count_len(unsigned len, int delta) {
    active_by_len_[len] = static_cast<std::uint32_t>(static_cast<int>(active_by_len_[len]) + delta);
    live_ = static_cast<std::uint32_t>(static_cast<int>(live_) + delta);
    const std::uint64_t bit = std::uint64_t{1} << (len & 63);
    if (active_by_len_[len])
        len_bits_[len >> 6] |= bit;
    else
        len_bits_[len >> 6] &= ~bit;
}

bool BanTable::is_banned(const base::IpAddress& a, base::Nanos now) {
    if (live_ == 0) return false;
    const bool v4 = a.is_v4();
    const int lowest = v4 ? 96 : 0;
    // Longest prefix first, visiting only the lengths that have entries.
    for (int word = 2; word >= 0; --word) {
        std::uint64_t bits = len_bits_[word];
        while (bits) {
            const int len = word * 64 + 63 - std::countl_zero(bits);
            bits &= ~(std::uint64_t{1} << (len & 63));
            if (len < lowest) return false;
            const base::Prefix p(a, static_cast<std::uint8_t>(v4 ? len - 96 : len));
            Slot* s = find(p, hash_of(p));
            if (s && s->info.expires > now) {
                ++s->info.hits;
                return true;
            }
        }
    }
    return false;
}

std::vector<BanInfo> BanTable::active(base::Nanos now) const {
    std::vector<BanInfo> out;
    for (const Slot& s : slots_)
        if (s.hash != 0 && s.info.expires > now) out.push_back(s.info);
    std::sort(out.begin(), out.end(),
              [](const BanInfo& x, const BanInfo& y) { return x.expires < y.expires; });
    return out;
}

}  // namespace sbc::dataplane
