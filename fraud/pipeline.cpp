// The burst pipeline: an attempt's keys hashed ahead of its scoring, the hash buckets of a
// whole burst read together, and the lines each attempt will touch prefetched a few attempts
// ahead. It changes when memory is read, never what is computed: on_attempts gives the same
// verdicts as on_attempt called for each attempt in turn.
#include "fraud/engine_impl.hpp"
#include "fraud/eviction.hpp"

namespace sbc::fraud {

std::size_t detail::number_digits(std::string_view number, char* out, std::size_t cap) {
    std::size_t n = 0;
    for (char ch : number) {
        if (ch >= '0' && ch <= '9') {
            if (n < cap) out[n++] = ch;
        } else if (ch == '+' || ch == ' ' || ch == '-' || ch == '.' || ch == '(' || ch == ')') {
            continue;  // visual separators
        } else {
            break;  // "@host", ";params": end of the number
        }
    }
    return n;
}

std::uint64_t detail::device_hash(std::uint64_t account_hash, const Source& src,
                                  std::string_view ua) {
    std::uint64_t h = account_hash ^ kSalt[kDevice];
    h = mix64(h ^ src.addr.hash());
    h = mix64(h ^ (std::uint64_t{src.port} << 17));
    return mix64(h ^ hash_string(ua, kSalt[kDevice]));
}

void Engine::Impl::attempt_keys(const CallAttempt& a, AttemptKeys& k) const {
    k.invite = a.request == RequestKind::call;
    k.call_hash = k.invite && !a.call_id.empty() ? hash_string(a.call_id, 0xca11) : 0;
    if (!a.source.addr.is_unspecified() && !own_network(a.source.addr)) {
        k.addr_hash = a.source.addr.hash();
        k.key_hash[0] = mix64(k.addr_hash ^ kSalt[0]);
        auto p = covering_prefix_hash(a.source.addr, cfg.source_prefix_v4, cfg.source_prefix_v6);
        k.key_hash[1] = mix64(p.address_hash ^ (std::uint64_t{p.length} << 8) ^ kSalt[1]);
        k.has_key[0] = k.has_key[1] = true;
    }
    if (!a.account.empty()) {
        k.key_hash[2] = hash_string(a.account, kSalt[2]);
        k.has_key[2] = true;
        // A device is only a key: with no rule on devices there is nothing to hash it for.
        if (kinds[kDevice].used) {
            k.key_hash[kDevice] = device_hash(k.key_hash[2], a.source, a.user_agent);
            k.has_key[kDevice] = true;
        }
    }
    k.ndigits = 0;
    k.ncaller = 0;
    if (k.invite) {
        k.ndigits = static_cast<std::uint8_t>(number_digits(a.callee, k.digits, sizeof(k.digits)));
        k.ncaller = static_cast<std::uint8_t>(number_digits(a.caller, k.caller, sizeof(k.caller)));
        if (k.ncaller) {
            std::string_view d{k.caller, k.ncaller};
            k.key_hash[kCaller] = hash_string(d, kSalt[kCaller]);
            k.has_key[kCaller] = true;
            auto lw = lists.walk(d);
            k.caller_mask = lw.mask;
            auto cw = countries.walk(d);
            k.caller_country = cw.deepest ? country_iso[cw.deepest - 1] : 0;
            std::size_t klen = lw.deepest_len ? lw.deepest_len
                               : cw.deepest   ? cw.deepest_len
                                              : std::min<std::size_t>(3, d.size());
            k.key_hash[kCallerPrefix] = hash_string(d.substr(0, klen), kSalt[kCallerPrefix]);
            k.has_key[kCallerPrefix] = true;
        }
        k.extension = a.callee_extension;
        if (k.ndigits) {
            k.dest_hash =
                static_cast<std::uint32_t>(hash_string({k.digits, k.ndigits}, kTargetSeed));
            auto cw = k.extension ? DigitTrie::Walk{} : countries.walk({k.digits, k.ndigits});
            k.dest_country = cw.deepest ? country_iso[cw.deepest - 1] : 0;
            k.code_len = cw.deepest ? cw.deepest_len : 0;
        }
    }
    // A callee that is all digits (the usual case) is its own digit string: one hash serves
    // both the destination and the request-target sets.
    if (!a.callee.empty())
        k.target_hash = k.invite && k.ndigits == a.callee.size()
                            ? k.dest_hash
                            : static_cast<std::uint32_t>(hash_string(a.callee, kTargetSeed));
    k.src_country = country_code16(a.source.country);
}

// Reads the hash buckets of an attempt's keys, its call and its source's ban entry (and the
// probe beyond them): the first step of the burst pipeline, see on_attempts.
std::uint64_t Engine::Impl::load_buckets(const AttemptKeys& k) const {
    std::uint64_t acc = 0;
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        if (k.has_key[ki] && kinds[ki].used)
            acc += static_cast<std::uint64_t>(key_tables[ki].table.find(k.key_hash[ki]));
    if (k.call_hash) acc += static_cast<std::uint64_t>(calls.find(k.call_hash));
    if (bans.size() && k.addr_hash) {
        acc += static_cast<std::uint64_t>(bans.find(k.addr_hash));
        // A ban of the source prefix is keyed by the prefix key's hash (source_banned).
        acc += static_cast<std::uint64_t>(bans.find(k.key_hash[kSourcePrefix]));
    }
    return acc;
}

// The value an attempt inserts into a distinct set, as far as it is known before the attempt
// is scored (0: none). A set restricted to lists may not take a destination (the lists are
// matched when the attempt is scored): one line read for nothing, never a wrong count.
std::uint32_t detail::distinct_value(const Component& comp, const AttemptKeys& k) {
    switch (static_cast<DistinctValue>(comp.what)) {
        case DistinctValue::destination:
            return k.invite && k.ndigits ? k.dest_hash : 0;
        case DistinctValue::destination_country:
            return k.invite ? k.dest_country : 0;
        case DistinctValue::request_target:
            return k.target_hash;
        case DistinctValue::source_country:
            return k.src_country;
        case DistinctValue::failed_username:
            break;
    }
    return 0;
}

// The lines an attempt reads beyond its hash buckets: its keys' hot slots and the cold lines
// its distinct-set insertions will touch. The burst pipeline prefetches them; just before the
// attempt is scored they are all read once more, independently of each other: the first
// access to a random line can cost more than its transfer even once it was prefetched (the
// translation of its page, a prefetch dropped), and independent loads issued together overlap
// those costs where the scoring code, reaching them one after the other, would pay them in
// turn. A key not found is left out, except that a key to be created in a full table has the
// entries its eviction will judge prefetched.
template <class Line>
std::uint64_t Engine::Impl::for_each_state_line(const AttemptKeys& k, bool sample_evictions,
                                                Line&& line) const {
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        if (!k.has_key[ki] || !kinds[ki].used) continue;
        const auto& kt = kinds[ki];
        const auto& table = key_tables[ki].table;
        std::int64_t at = table.find_hinted(k.key_hash[ki], k.hint[ki]);
        k.hint[ki] = at;
        if (at < 0) {
            // A key to be created in a full table: the entries its eviction will judge.
            if (sample_evictions && !table.room(k.key_hash[ki]))
                prefetch_sample(table, k.key_hash[ki]);
            continue;
        }
        auto i = static_cast<std::size_t>(at);
        const auto* slot = static_cast<const std::uint8_t*>(table.slot(i));
        for (std::size_t off = 0; off < kt.slot_bytes; off += 64) line(slot + off);
        if (kt.distinct_comps.empty()) continue;
        const auto* cold = static_cast<const std::uint8_t*>(table.cold(i));
        for (auto ci : kt.distinct_comps) {
            const auto& comp = kt.comps[ci];
            if (std::uint32_t h = distinct_value(comp, k))
                line(cold + comp.cold_offset + distinct_line_offset(h, comp.lines));
        }
    }
    std::uint64_t acc = 0;
    if (k.call_hash) {
        // The call entry: every line of it (88 bytes may straddle three lines), found from its
        // hash bucket, which load_buckets has brought in.
        acc += calls.find(k.call_hash) >= 0;
        const auto* e =
            static_cast<const std::uint8_t*>(calls.slot(calls.home(SlotTable::fix(k.call_hash))));
        line(e);
        line(e + 64);
        line(e + sizeof(CallEntry) - 1);
    }
    return acc;
}

// The lines an attempt reads beyond its hash buckets: its keys' hot slots and the cold lines
// its distinct-set insertions will touch. The burst pipeline prefetches them; just before the
// attempt is scored they are all read once more, independently of each other: the first
// access to a random line can cost more than its transfer even once it was prefetched (the
// translation of its page, a prefetch dropped), and independent loads issued together overlap
// those costs where the scoring code, reaching them one after the other, would pay them in
// turn. A key not found is left out, except that a key to be created in a full table has the
// entries its eviction will judge prefetched.
template <bool kTouch>
std::uint64_t Engine::Impl::state_lines(const AttemptKeys& k) const {
    std::uint64_t acc = 0;
    acc += for_each_state_line(
        k, !kTouch, [&](const void* p) __attribute__((always_inline)) {
            if constexpr (kTouch)
                acc += *static_cast<const volatile std::uint8_t*>(p);
            else
                __builtin_prefetch(p);
        });
    if constexpr (kTouch)
        if (bans.size() && k.addr_hash) acc += bans.find(k.addr_hash) >= 0;
    return acc;
}

std::uint64_t Engine::Impl::fetch_state(const AttemptKeys& k) const {
    // At most: every line of every hot slot, one cold line per distinct set, the call entry.
    const std::uint8_t* lines[kMaxFetchLines];
    std::size_t n = 0;
    std::uint64_t acc = for_each_state_line(
        k, true, [&](const void* p) __attribute__((always_inline)) {
            __builtin_prefetch(p);
            if (n < kMaxFetchLines) lines[n++] = static_cast<const std::uint8_t*>(p);
        });
    for (std::size_t j = 0; j < n; ++j) acc += *static_cast<const volatile std::uint8_t*>(lines[j]);
    if (bans.size() && k.addr_hash) acc += bans.find(k.addr_hash) >= 0;
    return acc;
}

template std::uint64_t Engine::Impl::state_lines<false>(const AttemptKeys&) const;
template std::uint64_t Engine::Impl::state_lines<true>(const AttemptKeys&) const;

namespace {
// Reads the first and last byte of each string an attempt's keys are hashed from, so that the
// burst's strings (wherever the caller keeps them) are brought in by independent loads issued
// together rather than one miss at a time in the middle of the hashing.
std::uint64_t string_lines(const CallAttempt& a) {
    std::uint64_t acc = 0;
    auto touch = [&](std::string_view s) {
        if (s.empty()) return;
        acc += static_cast<const volatile char*>(s.data())[0];
        acc += static_cast<const volatile char*>(s.data())[s.size() - 1];
    };
    touch(a.call_id);
    touch(a.account);
    touch(a.callee);
    touch(a.tenant);
    touch(a.user_agent);
    return acc;
}
}  // namespace

void Engine::on_attempts(std::span<const CallAttempt> in, std::span<Verdict> out) {
    // In chunks of kBatch attempts: first hash every attempt's strings and keys, then read the
    // hash buckets of all of them (its keys', its call's and its source's ban bucket) in one
    // tight loop of independent loads; then, kStateAhead attempts ahead, find the keys (their
    // buckets are in) and prefetch their hot slots, the cold lines the attempt's distinct-set
    // insertions will touch and its call entry; read those lines together just before the
    // attempt is scored. The buckets are loaded rather than prefetched because a software
    // prefetch of a random bucket is not guaranteed to have arrived by the time the lookup
    // needs it, and a load issued between the scoring of two attempts stalls as long as a miss;
    // loads issued back to back, with nothing else in between, overlap. The slot prefetches,
    // issued once the buckets are in, arrive in time.
    constexpr std::size_t kBatch = 32;
    constexpr std::size_t kStateAhead = 10;
    auto& m = *impl_;
    std::array<AttemptKeys, kBatch> keys;
    std::size_t n = std::min(in.size(), out.size());
    for (std::size_t base = 0; base < n; base += kBatch) {
        std::size_t len = std::min(kBatch, n - base);
        std::uint64_t acc = 0;
        for (std::size_t j = 0; j < len; ++j) acc += string_lines(in[base + j]);
        asm volatile("" ::"r"(acc));
        for (std::size_t j = 0; j < len; ++j) {
            keys[j] = AttemptKeys{};
            m.attempt_keys(in[base + j], keys[j]);
        }
        for (std::size_t j = 0; j < len; ++j) acc += m.load_buckets(keys[j]);
        asm volatile("" ::"r"(acc));
        for (std::size_t j = 0; j < std::min(len, kStateAhead); ++j) m.state_lines<false>(keys[j]);
        for (std::size_t j = 0; j < len; ++j) {
            if (j + kStateAhead < len) m.state_lines<false>(keys[j + kStateAhead]);
            std::uint64_t touched = m.state_lines<true>(keys[j]);
            asm volatile("" ::"r"(touched));
            m.attempt(in[base + j], keys[j], out[base + j]);
        }
    }
}

}  // namespace sbc::fraud
