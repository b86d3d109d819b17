// The call and ban tables, and the sweeps that expire idle keys, ended or overlong calls and
// lapsed bans.
#include "fraud/engine_impl.hpp"
#include "fraud/eviction.hpp"

namespace sbc::fraud {

bool Engine::Impl::hash_banned(std::uint64_t h, base::Nanos now, base::Nanos* until) const {
    if (bans.size() == 0) return false;
    std::int64_t i = bans.find(h);
    if (i < 0) return false;
    auto* b = static_cast<const BanEntry*>(bans.slot(static_cast<std::size_t>(i)));
    if (b->until <= now) return false;
    if (until) *until = b->until;
    return true;
}

// An address is banned by its own entry or by one on its source prefix (keyed by the prefix's
// key hash).
bool Engine::Impl::source_banned(const base::IpAddress& a, base::Nanos now,
                                 base::Nanos* until) const {
    if (bans.size() == 0 || a.is_unspecified()) return false;
    if (hash_banned(a.hash(), now, until)) return true;
    auto p = covering_prefix_hash(a, cfg.source_prefix_v4, cfg.source_prefix_v6);
    return hash_banned(mix64(p.address_hash ^ (std::uint64_t{p.length} << 8) ^ kSalt[1]), now,
                       until);
}

void Engine::Impl::ban(const base::IpAddress& a, base::Nanos until, base::Nanos now, EventKind kind,
                       bool auth_failed) {
    ban_hash(a.hash(), until, now, kind, auth_failed);
}

// Learns the calling number of an inbound call from a flagged range that rang once: an agent
// calling it back is then stopped (Feature::callback_short_ring) until the entry expires.
void Engine::Impl::learn_callback(const CallEntry& e, base::Nanos now) {
    if (!(e.keys & (1u << kCaller)) || callbacks.capacity() == 0) return;
    std::int64_t i = callbacks.find(e.key_hash[kCaller]);
    if (i < 0) return;  // its pending entry was evicted
    auto* x = static_cast<CallbackEntry*>(callbacks.slot(static_cast<std::size_t>(i)));
    x->until = std::max(x->until, now + cfg.callback_expiry);
    counters.add(Counter::callbacks_learned);
}

void Engine::Impl::ban_hash(std::uint64_t h, base::Nanos until, base::Nanos now, EventKind kind,
                            bool auth_failed) {
    std::int64_t i = bans.find(h);
    if (i < 0) {
        if (bans.full()) {
            // Full: drop an expired ban, else the one that would end soonest.
            Victim v = sample_victim(bans, h, [&](std::size_t b) {
                return Candidate::ranked(static_cast<const BanEntry*>(bans.slot(b))->until);
            });
            if (v.bucket >= 0) bans.erase(static_cast<std::size_t>(v.bucket));
            if (v.rank > now) counters.add(Counter::bans_evicted);
        }
        i = static_cast<std::int64_t>(bans.insert(h));
    }
    auto* b = static_cast<BanEntry*>(bans.slot(static_cast<std::size_t>(i)));
    b->until = std::max(b->until, until);
    b->kind = static_cast<std::uint8_t>(kind);
    b->auth_failed = auth_failed;
    counters.add(Counter::bans_issued);
}

std::int64_t Engine::Impl::insert_call(std::uint64_t h, base::Nanos now) {
    if (calls.full()) {
        // Prefer an ended call (tombstone); else the oldest call, whose counters are released
        // so that no concurrent counter is left stuck.
        Victim v = sample_victim(calls, h, [&](std::size_t b) {
            const CallEntry* e = call(static_cast<std::int64_t>(b));
            return e->ended ? Candidate::take() : Candidate::ranked(e->start);
        });
        if (v.bucket < 0) return -1;
        if (!v.taken) {
            release(*call(v.bucket), nullptr);
            counters.add(Counter::calls_evicted);
        }
        calls.erase(static_cast<std::size_t>(v.bucket));
    }
    (void)now;
    counters.add(Counter::calls_tracked);
    return static_cast<std::int64_t>(calls.insert(h));
}

// Ends a call's hold on the concurrent counters (exactly once: `counted` is cleared) and,
// given an end context, counts its outcome on each key.
void Engine::Impl::release(CallEntry& e, Ctx* end_ctx) {
    // In three passes, so that the misses of the call's keys overlap: every key's bucket
    // requested, then every key found and its slot requested, then the slots written.
    std::int64_t at[kKeyKindCount];
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        if ((e.keys & (1u << ki)) && kinds[ki].used) key_tables[ki].table.prefetch(e.key_hash[ki]);
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        at[ki] = -1;
        if (!(e.keys & (1u << ki)) || !kinds[ki].used) continue;
        at[ki] = key_tables[ki].table.find(e.key_hash[ki]);
        if (at[ki] >= 0) key_tables[ki].table.prefetch_slot(static_cast<std::size_t>(at[ki]));
    }
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        if (!(e.keys & (1u << ki)) || !kinds[ki].used) continue;
        auto& table = key_tables[ki].table;
        const std::int64_t i = at[ki];
        if (end_ctx) end_ctx->slot[ki] = i;
        if (i < 0 || !e.counted) continue;
        auto* hdr = static_cast<KeyHeader*>(table.slot(i));
        if (hdr->concurrent > 0)
            --hdr->concurrent;
        else
            counters.add(Counter::concurrent_underflow);
    }
    e.counted = 0;
}

void Engine::Impl::sweep(base::Nanos now, std::size_t budget) {
    std::size_t keys[kKeyKindCount];
    std::fill(std::begin(keys), std::end(keys), budget);
    sweep_some(now, keys, budget, budget);
}

// The per-event share of the sweep, paced by time rather than by events: each table is
// walked whole once per period (idle keys within idle_key_expiry/4, ended calls within
// kCallSweepPeriod, bans within kBanSweepPeriod) whatever the event rate, so a busy engine
// does not spend a cache miss per table and per event on keys that cannot have expired yet.
void Engine::Impl::housekeep(base::Nanos now) {
    base::Nanos dt = now - sweep_last;
    if (dt <= 0) return;
    sweep_last = now;
    auto share = [&](SweepPace& p, std::size_t buckets, base::Nanos period) -> std::size_t {
        p.debt += static_cast<double>(buckets) * static_cast<double>(std::min(dt, period)) /
                  static_cast<double>(period);
        // In runs of kSweepRun buckets: neighbouring buckets share their pages and lines, so
        // a run pays one first access where single buckets would each pay one.
        if (p.debt < static_cast<double>(kSweepRun)) return 0;
        auto n = std::min<std::size_t>(static_cast<std::size_t>(p.debt), kSweepMaxPerEvent);
        p.debt -= static_cast<double>(n);
        return n;
    };
    base::Nanos key_period = std::max<base::Nanos>(base::kNanosPerSecond, cfg.idle_key_expiry / 4);
    std::size_t keys[kKeyKindCount] = {};
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        if (kinds[ki].used)
            keys[ki] = share(key_pace[ki], key_tables[ki].table.buckets(), key_period);
    std::size_t nc = share(call_pace, calls.buckets(), kCallSweepPeriod);
    std::size_t nb = bans.size() ? share(ban_pace, bans.buckets(), kBanSweepPeriod) : 0;
    sweep_some(now, keys, nc, nb);
}

void Engine::Impl::sweep_some(base::Nanos now, const std::size_t (&key_budget)[kKeyKindCount],
                              std::size_t call_budget, std::size_t ban_budget) {
    std::uint32_t now_s = to_seconds(now);
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        if (!kinds[ki].used) continue;
        auto& kt = key_tables[ki];
        auto& t = kt.table;
        for (std::size_t n = 0; n < key_budget[ki] && t.size() > 0; ++n) {
            if (kt.cursor >= t.buckets()) kt.cursor = 0;
            std::size_t b = kt.cursor;
            t.prefetch_at(b + 4);
            if (t.hash_at(b) != 0) {
                auto* hdr = static_cast<const KeyHeader*>(t.slot(b));
                if (hdr->concurrent <= 0 && age_of(now_s, hdr->last_seen_s()) >= idle_s) {
                    t.erase(b);  // the next entry may shift into b: look at b again
                    counters.add(Counter::keys_expired);
                    continue;
                }
            }
            ++kt.cursor;
        }
    }
    if (call_budget && calls.size() > 0) {
        // The run's buckets and the first line of their entries (where `ended` and `start`
        // are), read by independent loads before the walk: the walk's own reads, one after
        // the other, each paid a miss (prefetches ahead of it did not bring them in).
        std::uint64_t acc = 0;
        std::size_t b = calls_cursor >= calls.buckets() ? 0 : calls_cursor;
        for (std::size_t n = 0; n < call_budget; ++n, b = calls.next(b))
            acc += calls.hash_at(b) + call(static_cast<std::int64_t>(b))->ended;
        asm volatile("" ::"r"(acc));
    }
    for (std::size_t n = 0; n < call_budget && calls.size() > 0; ++n) {
        if (calls_cursor >= calls.buckets()) calls_cursor = 0;
        std::size_t b = calls_cursor;
        if (calls.hash_at(b) != 0) {
            auto* e = call(static_cast<std::int64_t>(b));
            if (e->ended && now - e->ended >= kTombstone) {
                calls.erase(b);
                continue;
            }
            if (!e->ended && now - e->start >= cfg.max_call_duration) {
                release(*e, nullptr);
                counters.add(Counter::calls_expired);
                calls.erase(b);
                continue;
            }
        }
        ++calls_cursor;
    }
    for (std::size_t n = 0; n < ban_budget && bans.size() > 0; ++n) {
        if (bans_cursor >= bans.buckets()) bans_cursor = 0;
        std::size_t b = bans_cursor;
        if (bans.hash_at(b) != 0 && static_cast<const BanEntry*>(bans.slot(b))->until <= now) {
            bans.erase(b);
            continue;
        }
        ++bans_cursor;
    }
}

}  // namespace sbc::fraud
