// Sliding windows: which scopes an event falls in, where `now` falls for each window width,
// and the state updates (rings advanced to the event's sub-bucket, then counted; distinct
// sets; sequential runs).
#include "fraud/engine_impl.hpp"

namespace sbc::fraud {

bool Engine::Impl::scope_match(const CompiledScope& s, const Ctx& c) const {
    if (s.directions && !(s.directions >> static_cast<unsigned>(c.direction) & 1)) return false;
    if (!s.tenants.empty() &&
        std::find(s.tenants.begin(), s.tenants.end(), c.tenant_hash) == s.tenants.end())
        return false;
    if (!s.groups.empty() && (c.group < 0 || !s.groups[static_cast<std::size_t>(c.group)]))
        return false;
    if (s.dest_mask && !(c.dest_mask & s.dest_mask)) return false;
    if (s.time == TimeScope::business_hours && c.off_hours) return false;
    if (s.time == TimeScope::off_hours && !c.off_hours) return false;
    return true;
}

// Once per event: which scopes match, and where `now` falls for every window width.
void Engine::Impl::prepare(Ctx& c) {
    c.scope_bits = 1;
    for (std::size_t i = 1; i < scopes.size(); ++i)
        if (scope_match(scopes[i], c)) c.scope_bits |= std::uint64_t{1} << i;
    // Events come in time order: the sub-bucket of the previous event (or the next one) is
    // found without the two 64-bit divisions per width.
    for (std::size_t i = 0; i < widths.size(); ++i) {
        base::Nanos w = widths[i];
        auto& cache = epoch_cache[i];
        if (c.now >= cache.start + w && c.now < cache.start + 2 * w) {
            ++cache.epoch;
            cache.start += w;
        } else if (c.now < cache.start || c.now >= cache.start + w) {
            cache.epoch = epoch_of(c.now, w);
            cache.start = static_cast<base::Nanos>(cache.epoch) * w;
        }
        c.epoch[i] = cache.epoch;
        c.epoch_start[i] = cache.start;
        c.into[i] = static_cast<double>(std::max<base::Nanos>(0, c.now - cache.start)) /
                    static_cast<double>(w);
    }
}

// Moves every ring of a slot to the event's epoch (the slot's epoch for a width is that of
// its newest event), clearing the sub-buckets skipped since.
void Engine::Impl::advance(const KindPlan& kt, std::uint8_t* slot, const Ctx& c) const {
    auto* hdr = reinterpret_cast<KeyHeader*>(slot);
    base::Nanos last = hdr->last_seen;
    if (c.now <= last) return;  // the rings are at this epoch already (or a later one)
    for (std::size_t wi = 0; wi < kt.widths.size(); ++wi) {
        const auto w = kt.widths[wi];
        base::Nanos start = c.epoch_start[w];
        if (last >= start) continue;  // same sub-bucket
        const auto& rings = kt.width_rings[wi];
        if (last < start - span[w]) {
            // Older than the whole ring (a key idle for a window): every bucket goes.
            for (auto off : rings.narrow) std::memset(slot + off, 0, kRingBuckets);
            for (auto off : rings.wide) std::memset(slot + off, 0, 2 * kRingBuckets);
            continue;
        }
        // The sub-bucket of `last`, counting back from the event's (no division).
        base::Nanos width = widths[w];
        std::uint32_t e = c.epoch[w] - 1;
        for (start -= width; last < start && c.epoch[w] - e < kRingBuckets; start -= width) --e;
        if (!rings.narrow.empty()) {
            const std::uint64_t keep = ring_keep8(e, c.epoch[w]);
            for (auto off : rings.narrow) ring_keep(slot + off, keep);
        }
        if (!rings.wide.empty()) {
            const unsigned __int128 keep = ring_keep16(e, c.epoch[w]);
            for (auto off : rings.wide)
                ring_keep(reinterpret_cast<std::uint16_t*>(slot + off), keep);
        }
    }
    hdr->last_seen = c.now;
}

void Engine::Impl::update(Ctx& c) {
    {
        // The hot slots of every key of the event read together, as independent loads: the
        // keys resolved after the pipeline's prefetch (tenant, destination prefix) and any
        // line evicted since cost one overlapped miss here instead of one each below.
        std::uint64_t acc = 0;
        for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
            if (c.slot[ki] < 0) continue;
            const auto* p = static_cast<const volatile std::uint8_t*>(
                key_tables[ki].table.slot(static_cast<std::size_t>(c.slot[ki])));
            for (std::size_t off = 0; off < kinds[ki].slot_bytes; off += 64) acc += p[off];
        }
        asm volatile("" ::"r"(acc));
    }
    // Which counted events this event is, once for every counter of every key (a list hit
    // also needs the counter's lists).
    auto bit = [](CountEvent e, bool on) { return on ? 1u << static_cast<unsigned>(e) : 0u; };
    const bool invite = c.kind == EventKind::invite, end = c.kind == EventKind::end;
    const std::uint32_t hits =
        bit(CountEvent::attempt, invite) |
        bit(CountEvent::international, invite && c.international) |
        bit(CountEvent::list_hit, invite) | bit(CountEvent::answered, end && c.answered) |
        bit(CountEvent::short_answered, end && c.short_answered) | bit(CountEvent::ended, end) |
        bit(CountEvent::failed, end && c.failed) |
        bit(CountEvent::auth_failure, c.kind == EventKind::auth && c.auth_failed) |
        bit(CountEvent::short_ring, end && c.short_ring);
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        if (c.slot[ki] < 0) continue;
        auto& kt = kinds[ki];
        auto& table = key_tables[ki].table;
        auto* base_ptr = static_cast<std::uint8_t*>(table.slot(c.slot[ki]));
        advance(kt, base_ptr, c);
        for (const UpdateOp& comp : kt.by_event[static_cast<std::size_t>(c.kind)]) {
            if (!(c.scope_bits >> comp.scope_idx & 1)) continue;
            void* p = base_ptr + comp.offset;
            // What this count changes, kept until the verdict says whether it stays.
            const bool log = keep_undo && !comp.count_blocked;
            auto save = [&](void* at, std::size_t len) __attribute__((always_inline)) {
                Undo& u = undo.emplace_back();
                u.at = static_cast<std::uint8_t*>(at);
                u.key = static_cast<std::uint8_t>(ki);
                u.len = static_cast<std::uint8_t>(len);
                switch (len) {
                    case 1:
                        std::memcpy(u.bytes, at, 1);
                        break;
                    case 2:
                        std::memcpy(u.bytes, at, 2);
                        break;
                    case 4:
                        std::memcpy(u.bytes, at, 4);
                        break;
                    default:
                        std::memcpy(u.bytes, at, 16);
                        break;
                }
            };
            switch (comp.type) {
                case CompType::counter: {
                    if (!(hits >> comp.what & 1)) break;
                    if (static_cast<CountEvent>(comp.what) == CountEvent::list_hit &&
                        !(c.dest_mask & comp.list_mask))
                        break;
                    std::uint32_t e = slot_epoch(base_ptr, comp.width_idx, c);
                    if (log) {
                        // The one bucket ring_add writes.
                        const std::size_t b = comp.narrow ? 1 : 2;
                        save(static_cast<std::uint8_t*>(p) + b * (e % kRingBuckets), b);
                    }
                    if (c.kind == EventKind::auth && keep_undo && !comp.count_blocked)
                        credit_auth_failure(c, ki, comp, e);
                    if (comp.narrow)
                        ring_add(static_cast<std::uint8_t*>(p), e);
                    else
                        ring_add(static_cast<std::uint16_t*>(p), e);
                    break;
                }
                case CompType::distinct: {
                    std::uint32_t h = 0;
                    switch (static_cast<DistinctValue>(comp.what)) {
                        case DistinctValue::destination:
                            if (c.kind == EventKind::invite && c.ndigits &&
                                (!comp.list_mask || (c.dest_mask & comp.list_mask)))
                                h = c.dest_hash;
                            break;
                        case DistinctValue::destination_country:
                            if (c.kind == EventKind::invite) h = c.dest_country;
                            break;
                        case DistinctValue::failed_username:
                            h = c.username_hash;
                            break;
                        case DistinctValue::request_target:
                            h = c.target_hash;
                            break;
                        case DistinctValue::source_country:
                            if (c.kind != EventKind::end) h = c.src_country;
                            break;
                    }
                    if (h) {
                        auto* cold = static_cast<std::uint8_t*>(table.cold(c.slot[ki]));
                        auto* entries = reinterpret_cast<DistinctEntry*>(cold + comp.cold_offset);
                        auto* sum = static_cast<DistinctSummary*>(p);
                        const std::uint32_t e = slot_epoch(base_ptr, comp.width_idx, c);
                        if (log) {
                            save(p, sizeof(DistinctSummary));
                            distinct_insert(*sum, entries, comp.lines, h, e,
                                            [&](DistinctEntry& x) { save(&x, sizeof(x)); });
                        } else {
                            distinct_insert(*sum, entries, comp.lines, h, e);
                        }
                    }
                    break;
                }
                case CompType::sequential: {
                    if (c.kind != EventKind::invite || c.ndigits == 0) break;
                    auto* run = static_cast<SequentialRun*>(p);
                    if (log) save(p, sizeof(SequentialRun));
                    auto d = c.digits_view();
                    if (d.size() > 18) d = d.substr(d.size() - 18);
                    std::uint64_t n = 0;
                    for (char ch : d) n = n * 10 + static_cast<std::uint64_t>(ch - '0');
                    std::uint64_t diff =
                        n > run->last_number ? n - run->last_number : run->last_number - n;
                    bool fresh = run->run != 0 && age_of(c.now_s, run->last_s) < comp.window_s;
                    if (fresh && run->last_len == d.size() && diff >= 1 &&
                        diff <= cfg.sequential_max_step) {
                        if (run->run != 0xffff) ++run->run;
                    } else if (!(fresh && diff == 0)) {
                        run->run =
                            1;  // a redial of the same number neither extends nor breaks a run
                    }
                    run->last_number = n;
                    run->last_len = static_cast<std::uint8_t>(d.size());
                    run->last_s = c.now_s;
                    break;
                }
            }
        }
    }
}

}  // namespace sbc::fraud

namespace sbc::fraud {

namespace {
void put_back(const Scratch::Undo& u) {
    std::memcpy(u.at, u.bytes, u.len);
}
}  // namespace

// A blocked attempt stays counted only toward the keys whose enforced rules blocked it (and in
// the components of rules with count_blocked): the rest of what counting it changed is put
// back, newest first.
void Engine::Impl::rollback_blocked(const Verdict& out) {
    if (undo.empty()) return;
    if (out.action == Action::block || out.action == Action::ban) {
        std::uint32_t blocking = 0;
        for (std::size_t i = 0; i < out.reason_count; ++i) {
            const Reason& r = out.reasons[i];
            if (!r.hard && !r.observe && r.key != KeyKind::count_)
                blocking |= 1u << static_cast<unsigned>(r.key);
        }
        bool any = false;
        for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
            if (blocking >> it->key & 1) continue;
            put_back(*it);
            any = true;
        }
        if (any) counters.add(Counter::blocked_not_counted);
    }
    undo.clear();
}

namespace {
// The keys a source owns: what they count is the source's own doing.
constexpr std::uint32_t kSourceSide = 1u << kSourceIp | 1u << kSourcePrefix | 1u << kDevice;
}  // namespace

void Engine::Impl::credit_auth_failure(const Ctx& c, std::size_t ki, const UpdateOp& comp,
                                       std::uint32_t epoch) {
    // Only failures from a source that can be blocked or banned, on the keys its owner is
    // judged by.
    if ((kSourceSide >> ki & 1) || !c.has_key[kSourceIp]) return;
    if (auth_credits.empty()) auth_credits.resize(kAuthCredits);
    AuthCredit& a = auth_credits[auth_credit_next];
    auth_credit_next = (auth_credit_next + 1) % kAuthCredits;
    a.source_ip = c.key_hash[kSourceIp];
    a.source_prefix = c.key_hash[kSourcePrefix];
    a.key_hash = c.key_hash[ki];
    a.epoch = epoch;
    a.offset = comp.offset;
    a.width_idx = comp.width_idx;
    a.key = static_cast<std::uint8_t>(ki);
    a.narrow = comp.narrow;
    if (auth_credits_live < kAuthCredits) ++auth_credits_live;
}

// Takes the credited failures of a source (or of every source of a prefix) back out of the
// keys they were counted in, while the sub-bucket they were counted in is still in the ring.
void Engine::Impl::retract_source_credits(std::uint64_t source_ip, std::uint64_t source_prefix) {
    if (auth_credits_live == 0) return;
    std::size_t live = 0;
    bool any = false;
    for (AuthCredit& a : auth_credits) {
        if (a.key_hash == 0) continue;
        if (!((source_ip && a.source_ip == source_ip) ||
              (source_prefix && a.source_prefix == source_prefix))) {
            ++live;
            continue;
        }
        const std::uint64_t h = a.key_hash;
        a.key_hash = 0;
        auto& table = key_tables[a.key].table;
        std::int64_t i = table.find(h);
        if (i < 0) continue;
        auto* slot = static_cast<std::uint8_t*>(table.slot(static_cast<std::size_t>(i)));
        std::uint32_t current =
            epoch_of(reinterpret_cast<const KeyHeader*>(slot)->last_seen, widths[a.width_idx]);
        if (current < a.epoch || current - a.epoch >= kRingBuckets) continue;  // slid out
        if (a.narrow) {
            std::uint8_t& b = slot[a.offset + a.epoch % kRingBuckets];
            if (b != 0 && b != 0xff) --b;
        } else {
            auto* ring = reinterpret_cast<std::uint16_t*>(slot + a.offset);
            std::uint16_t& b = ring[a.epoch % kRingBuckets];
            if (b != 0 && b != 0xffff) --b;
        }
        any = true;
    }
    auth_credits_live = live;
    if (any) counters.add(Counter::source_failures_retracted);
}

void Engine::Impl::rollback_auth(const Ctx& c, const Verdict& out) {
    bool by_source =
        out.ban_target == BanTarget::source_address || out.ban_target == BanTarget::source_prefix;
    std::uint32_t blocking = 0;
    if (out.action == Action::block || out.action == Action::ban)
        for (std::size_t i = 0; i < out.reason_count; ++i) {
            const Reason& r = out.reasons[i];
            if (!r.hard && !r.observe && r.key != KeyKind::count_)
                blocking |= 1u << static_cast<unsigned>(r.key);
        }
    if (blocking & kSourceSide) by_source = true;
    if (!by_source) {
        // Allowed, or stopped on the owner's keys alone: every count stays (the source's keys
        // are its own; an owner-side key that blocked keeps what it blocked on).
        undo.clear();
        return;
    }
    bool any = false;
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
        if (kSourceSide >> it->key & 1) continue;
        put_back(*it);
        any = true;
    }
    undo.clear();
    // This event's credits were just put back with the bytes they changed.
    if (!auth_credits.empty())
        for (std::size_t i = credit_mark; i != auth_credit_next; i = (i + 1) % kAuthCredits)
            auth_credits[i].key_hash = 0;
    if (any) counters.add(Counter::blocked_not_counted);
    const bool prefix =
        (blocking >> kSourcePrefix & 1) || out.ban_target == BanTarget::source_prefix;
    retract_source_credits(c.key_hash[kSourceIp], prefix ? c.key_hash[kSourcePrefix] : 0);
}

}  // namespace sbc::fraud
