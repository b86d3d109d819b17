// Token buckets per (source, class) and (prefix, class) in a fixed-capacity table.
//
// Why this table: an attacker controls the keys (spoofed sources), so the table must neither
// grow nor let new keys push out the state of sources we already know to be well behaved.
// It is set-associative (8 ways per set, a set is chosen by hash): memory is fixed at
// construction. A key seen for the first time is "on probation"; a new key can only take an
// empty way, an established entry that has been idle for idle_evict_after, or the least
// recently used probation entry. A probation entry becomes established when its source comes
// back after establish_after (a real peer does; a one-shot spoofed packet never does).
// So a flood of millions of one-packet spoofed sources only churns the probation entries of
// each set and never evicts an active established source: the property the tests check.
// (A frequency sketch such as TinyLFU would admit heavy spoofed keys; age-based promotion plus
// idle-only eviction of established entries gives a guarantee we can state and test.)
// Sources on probation (and untracked ones, when a set is full of established entries) also
// share a class-wide "new sources" bucket, which caps what a spoofed flood gets through,
// since per-source buckets cannot (every spoofed key starts with a full bucket).
#include <algorithm>
#include <bit>

#include "dataplane/rate_limiter.hpp"

namespace sbc::dataplane {

namespace {
template <class T>
bool take_token(T& tokens, base::Nanos& last, const RateLimit& lim, base::Nanos now) {
    if (lim.unlimited()) return true;
    const double burst = std::max(1.0, lim.burst);
    if (now > last) {
        const double t =
            static_cast<double>(tokens) + static_cast<double>(now - last) * lim.rate_per_s / 1e9;
        tokens = static_cast<T>(std::min(burst, t));
        last = now;
    }
    if (tokens >= 1) {
        tokens -= 1;
        return true;
    }
    return false;
}
}  // namespace

RateLimiter::RateLimiter(std::uint32_t capacity, const PipelineConfig& config) {
    std::uint32_t sets = std::max<std::uint32_t>(1, (capacity + kWays - 1) / kWays);
    sets = std::bit_ceil(sets);
    set_mask_ = sets - 1;
    entries_.resize(std::size_t{sets} * kWays);
    ways_.assign(sets, WaySet{});
    apply_config(config);
    for (auto& b : new_source_buckets_) b.tokens = -1;  // filled on first use
}

void RateLimiter::apply_config(const PipelineConfig& c) {
    limits_ = c.limits;
    v4_len_ = c.v4_prefix_len;
    v6_len_ = c.v6_prefix_len;
    ban_policy_ = c.ban_policy;
    establish_after_ = c.establish_after;
    idle_evict_after_ = c.idle_evict_after;
}

std::size_t RateLimiter::memory_bytes() const {
    return entries_.size() * sizeof(Entry) + ways_.size() * sizeof(WaySet) + sizeof(*this);
}

std::uint64_t RateLimiter::key_hash(const base::IpAddress& key, std::uint8_t cls,
                                    std::uint8_t is_prefix) const {
    return base::mix64(key.hash() ^ (std::uint64_t{cls} << 1 | is_prefix) * base::kGoldenGamma);
}

void RateLimiter::prefetch(const base::IpAddress& src, TrafficClass cls_enum) const {
    const auto cls = static_cast<std::uint8_t>(cls_enum);
    __builtin_prefetch(&ways_[key_hash(src, cls, 0) & set_mask_]);
    if (!limits_[cls].per_prefix.unlimited()) {
        const base::Prefix p = base::covering_prefix(src, v4_len_, v6_len_);
        __builtin_prefetch(&ways_[key_hash(p.address(), cls, 1) & set_mask_]);
    }
}

const RateLimiter::Entry* RateLimiter::find(const base::IpAddress& key, std::uint8_t cls,
                                            std::uint8_t is_prefix) const {
    const std::uint64_t h = key_hash(key, cls, is_prefix);
    const std::size_t set = h & set_mask_;
    const std::uint32_t tag = static_cast<std::uint32_t>(h >> 32) | 1u;
    const WaySet& ws = ways_[set];
    for (unsigned w = 0; w < kWays; ++w) {
        if (ws.way[w].tag != tag) continue;
        const Entry& e = entries_[set * kWays + w];
        if (e.cls == cls && e.is_prefix == is_prefix && e.key == key) return &e;
    }
    return nullptr;
}

RateLimiter::Entry* RateLimiter::find_or_insert(const base::IpAddress& key, std::uint8_t cls,
                                                std::uint8_t is_prefix, base::Nanos now,
                                                bool& inserted) {
    inserted = false;
    const std::uint64_t h = key_hash(key, cls, is_prefix);
    const std::size_t set = h & set_mask_;
    const std::size_t base = set * kWays;
    const std::uint32_t tag = static_cast<std::uint32_t>(h >> 32) | 1u;
    WaySet& ws = ways_[set];
    for (unsigned w = 0; w < kWays; ++w) {
        if (ws.way[w].tag != tag) continue;
        Entry& e = entries_[base + w];
        if (e.cls == cls && e.is_prefix == is_prefix && e.key == key) return &e;
    }
    // The victim, from the stamps: ages in stamp units order entries as their last_seen does,
    // except within one unit, where the entries' own last_seen decide (as they do whether an
    // established entry has really been idle for idle_evict_after).
    const std::uint32_t now_units = stamp_units(now);
    const std::uint32_t idle_units = stamp_units(idle_evict_after_);
    auto age = [&](std::uint32_t stamp) { return (now_units - stamp) & ~kEstablishedBit; };
    int empty = -1, lru_probation = -1, idle = -1;
    std::uint32_t lru_age = 0;
    for (unsigned w = 0; w < kWays; ++w) {
        const Way& way = ws.way[w];
        if (way.tag == 0) {
            if (empty < 0) empty = static_cast<int>(w);
            continue;
        }
        if (empty >= 0) continue;  // an empty way wins; only the count of used ways matters
        const std::uint32_t a = age(way.stamp);
        if (!(way.stamp & kEstablishedBit)) {
            if (lru_probation < 0 || a > lru_age ||
                (a == lru_age &&
                 entries_[base + w].last_seen < entries_[base + lru_probation].last_seen)) {
                lru_probation = static_cast<int>(w);
                lru_age = a;
            }
        } else if (a >= idle_units) {
            const Entry& e = entries_[base + w];
            if (now - e.last_seen >= idle_evict_after_ &&
                (idle < 0 || e.last_seen < entries_[base + idle].last_seen))
                idle = static_cast<int>(w);
        }
    }
    const int victim = empty >= 0 ? empty : (idle >= 0 ? idle : lru_probation);
    if (victim < 0) return nullptr;  // every way holds an active established source
    if (ws.way[victim].tag == 0) ++used_;
    ws.way[victim].tag = tag;
    Entry& e = entries_[base + victim];
    e = Entry{};
    e.key = key;
    e.cls = cls;
    e.is_prefix = is_prefix;
    e.first_seen = now;
    e.last_seen = now;
    e.window_start = now;
    const RateLimit& lim = is_prefix ? limits_[cls].per_prefix : limits_[cls].per_source;
    e.tokens = static_cast<float>(std::max(1.0, lim.burst));
    restamp(&e);
    inserted = true;
    return &e;
}

bool RateLimiter::is_established(const base::IpAddress& src, TrafficClass cls) const {
    const Entry* e = find(src, static_cast<std::uint8_t>(cls), 0);
    return e && e->established;
}

RateLimiter::Verdict RateLimiter::admit(const base::IpAddress& src, TrafficClass cls_enum,
                                        base::Nanos now, bool vouched) {
    const auto cls = static_cast<std::uint8_t>(cls_enum);
    const ClassLimits& lim = limits_[cls];
    if (lim.per_source.unlimited() && lim.per_prefix.unlimited() && lim.new_sources.unlimited())
        return Verdict::admit;

    bool inserted = false;
    Entry* e = find_or_insert(src, cls, 0, now, inserted);
    bool ok = true;
    bool established = false;
    if (e) {
        if (!inserted) {
            ++e->hits;
            // Promotion: the source came back after establish_after while still on probation.
            if (!e->established && now - e->first_seen >= establish_after_) e->established = 1;
            ok = take_token(e->tokens, e->last_seen, lim.per_source, now);
        } else {
            ok = take_token(e->tokens, e->last_seen, lim.per_source, now);
        }
        if (vouched) e->established = 1;
        e->last_seen = now;
        restamp(e);
        established = e->established;
    } else {
        ++untracked_;
    }
    if (ok && !lim.per_prefix.unlimited()) {
        const base::Prefix p = base::covering_prefix(src, v4_len_, v6_len_);
        bool pins = false;
        Entry* pe = find_or_insert(p.address(), cls, 1, now, pins);
        if (pe) {
            if (!pins) {
                ++pe->hits;
                if (!pe->established && now - pe->first_seen >= establish_after_)
                    pe->established = 1;
            }
            ok = take_token(pe->tokens, pe->last_seen, lim.per_prefix, now);
            pe->last_seen = now;
            restamp(pe);
        }
    }
    if (ok && !established && !vouched && !lim.new_sources.unlimited()) {
        Bucket& b = new_source_buckets_[cls];
        if (b.tokens < 0) {
            b.tokens = std::max(1.0, lim.new_sources.burst);
            b.last = now;
        }
        ok = take_token(b.tokens, b.last, lim.new_sources, now);
    }
    if (ok) return Verdict::admit;
    if (!e || !ban_policy_.enabled) return Verdict::deny;
    // Sustained excess: count denials in a window; crossing the threshold asks for a ban.
    if (now - e->window_start > ban_policy_.window) {
        e->window_start = now;
        e->violations = 0;
    }
    if (++e->violations == ban_policy_.violations_to_ban) return Verdict::deny_ban;
    return Verdict::deny;
}

}  // namespace sbc::dataplane
