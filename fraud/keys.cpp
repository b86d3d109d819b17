// Keys: their hashes, their slots (found, created, or refused when the table is full of keys
// that carry evidence), and the rest of an event's context (account group, destination,
// source country, business hours, scanner User-Agent).
#include "fraud/engine_impl.hpp"
#include "fraud/eviction.hpp"

namespace sbc::fraud {

std::uint64_t Engine::Impl::key_hash_of(KeyKind k, std::string_view v) const {
    auto ki = static_cast<std::size_t>(k);
    switch (k) {
        case KeyKind::source_ip: {
            auto a = base::IpAddress::parse(v);
            return a ? mix64(a->hash() ^ kSalt[ki]) : 0;
        }
        case KeyKind::source_prefix: {
            auto p = base::Prefix::parse(v);
            return p ? mix64(p->address().hash() ^ (std::uint64_t{p->length()} << 8) ^ kSalt[ki])
                     : 0;
        }
        default:
            return hash_string(v, kSalt[ki]);
    }
}

std::int64_t Engine::Impl::find_or_create(KeyKind k, std::uint64_t h, base::Nanos now,
                                          std::int64_t hint) {
    std::uint32_t now_s = to_seconds(now);
    auto& t = key_tables[static_cast<std::size_t>(k)].table;
    std::int64_t i = t.find_hinted(h, hint);
    if (i >= 0) return i;
    if (!t.room(h)) {
        // The table is full, or the key's set is: the candidates are the set's keys (or,
        // when only the table is full, the first occupied buckets from the set on).
        // Idle keys go first; then the least recently seen key that carries no evidence (no
        // rule fired on it lately, no call in progress). Keys with evidence are never evicted
        // by newcomers: if every candidate has some, the new key is not tracked.
        Victim v = sample_victim(t, h, [&](std::size_t b) {
            auto* hdr = static_cast<const KeyHeader*>(t.slot(b));
            if (hdr->concurrent > 0 || hdr->evidence_until_s > now_s) return Candidate::keep();
            if (age_of(now_s, hdr->last_seen_s()) >= idle_s) return Candidate::take();
            return Candidate::ranked(hdr->last_seen_s());
        });
        if (v.bucket < 0) {
            counters.add(Counter::keys_untracked);
            return -1;
        }
        t.erase(static_cast<std::size_t>(v.bucket));
        counters.add(v.taken ? Counter::keys_expired : Counter::keys_evicted);
    }
    std::size_t j = t.insert(h);
    auto* hdr = static_cast<KeyHeader*>(t.slot(j));
    hdr->last_seen = now;
    counters.add(Counter::keys_created);
    return static_cast<std::int64_t>(j);
}

void Engine::Impl::resolve_keys(Ctx& c, const Source& src, std::string_view account,
                                std::string_view tenant, bool create, const AttemptKeys* pre,
                                std::string_view ua, std::uint32_t only) {
    // Account group: the first group (in configuration order) that contains the account.
    c.group = -1;
    if (!account.empty()) {
        int g = -1;
        if (!exact_accounts.empty()) {
            auto it = exact_accounts.find(account);
            if (it != exact_accounts.end()) g = it->second;
        }
        for (const auto& [pattern, gi] : account_patterns) {
            if (g >= 0 && gi >= g) break;
            if (base::glob_match(pattern, account)) {
                g = gi;
                break;
            }
        }
        c.group = g;
    }
    if (tenant.empty() && c.group >= 0) tenant = groups[static_cast<std::size_t>(c.group)].tenant;
    c.tenant_hash = tenant.empty() ? 0 : hash_string(tenant, kSalt[3]);

    auto set = [&](KeyKind k, std::uint64_t h) {
        auto ki = static_cast<std::size_t>(k);
        c.key_hash[ki] = h;
        c.has_key[ki] = true;
        if (kinds[ki].used && !pre) key_tables[ki].table.prefetch(h);
    };
    if (pre) {
        for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
            if (pre->has_key[ki]) set(static_cast<KeyKind>(ki), pre->key_hash[ki]);
    } else {
        if (!src.addr.is_unspecified() && !own_network(src.addr)) {
            set(KeyKind::source_ip, mix64(src.addr.hash() ^ kSalt[0]));
            auto p = covering_prefix_hash(src.addr, cfg.source_prefix_v4, cfg.source_prefix_v6);
            set(KeyKind::source_prefix,
                mix64(p.address_hash ^ (std::uint64_t{p.length} << 8) ^ kSalt[1]));
        }
        if (!account.empty()) {
            set(KeyKind::account, hash_string(account, kSalt[2]));
            set(KeyKind::device, device_hash(c.key_hash[2], src, ua));
        }
    }
    if (!tenant.empty()) set(KeyKind::tenant, c.tenant_hash);
    if (!create) return;
    // Second pass, once the buckets are on their way into the cache.
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        if (c.has_key[ki] && kinds[ki].used && (only >> ki & 1) &&
            ki != static_cast<std::size_t>(KeyKind::destination_prefix)) {
            if (pre) {
                c.slot[ki] =
                    find_or_create(static_cast<KeyKind>(ki), c.key_hash[ki], c.now, pre->hint[ki]);
                continue;  // its lines were read by the pipeline
            }
            c.slot[ki] = find_or_create(static_cast<KeyKind>(ki), c.key_hash[ki], c.now);
            if (c.slot[ki] >= 0)
                key_tables[ki].table.prefetch_slot(static_cast<std::size_t>(c.slot[ki]));
        }
}

bool Engine::Impl::scanner_ua(std::string_view ua) {
    // The same User-Agent as the previous event (a fleet sends one string): compared, not
    // hashed.
    if (ua.size() == last_ua_len && std::memcmp(ua.data(), last_ua, ua.size()) == 0)
        return last_ua_scanner;
    bool scanner = scanner_ua_memo(ua);
    if (ua.size() <= sizeof(last_ua)) {
        std::memcpy(last_ua, ua.data(), ua.size());
        last_ua_len = ua.size();
        last_ua_scanner = scanner;
    }
    return scanner;
}

// scanner_user_agent, for every event that is scored (attempts, other requests, authentication
// results, registrations): a signature is proof whatever the request.
void Engine::Impl::resolve_scanner(Ctx& c, std::string_view ua) {
    if (ua.empty())
        c.scanner = cfg.empty_user_agent_is_scanner;
    else if (!scanner_globs.empty())
        c.scanner = scanner_ua(ua);
}

bool Engine::Impl::scanner_ua_memo(std::string_view ua) {
    std::uint64_t h = SlotTable::fix(hash_string(ua, 0x5ca7));
    UaMemo& memo = ua_memo[h % ua_memo.size()];
    if (memo.hash == h) return memo.scanner;
    char buf[256];
    std::size_t n = std::min(ua.size(), sizeof(buf));
    for (std::size_t i = 0; i < n; ++i) buf[i] = base::to_lower(ua[i]);
    bool scanner = false;
    for (const auto& g : scanner_globs)
        if (g.matches({buf, n})) scanner = true;
    memo = {h, scanner};
    return scanner;
}

void Engine::Impl::resolve_destination(Ctx& c, const AttemptKeys& k) {
    c.ndigits = k.ndigits;
    if (c.ndigits == 0) return;
    std::memcpy(c.digits, k.digits, c.ndigits);
    auto d = c.digits_view();
    c.dest_hash = k.dest_hash;
    auto lw = lists.walk(d);
    c.dest_mask = lw.mask;
    std::size_t code_len = k.code_len;
    c.dest_country = k.dest_country;
    c.extension = k.extension;
    if (k.extension) {
        c.international = false;
    } else if (home_country && c.dest_country) {
        c.international = c.dest_country != home_country;
    } else if (!home_code.empty()) {
        c.international = code_len ? d.substr(0, code_len) != home_code : !d.starts_with(home_code);
    }
    // Destination key: the longest matching list prefix, else the calling code, else 3 digits.
    std::size_t klen = lw.deepest_len ? lw.deepest_len
                       : code_len     ? code_len
                                      : std::min<std::size_t>(3, d.size());
    auto ki = static_cast<std::size_t>(KeyKind::destination_prefix);
    c.key_hash[ki] = hash_string(d.substr(0, klen), kSalt[ki]);
    c.has_key[ki] = true;
    if (kinds[ki].used)
        c.slot[ki] = find_or_create(KeyKind::destination_prefix, c.key_hash[ki], c.now);
}

// The calling number's lists and country (deny rules, scopes and the callback list read
// them); its keys were hashed with the attempt's.
void Engine::Impl::resolve_caller(Ctx& c, const AttemptKeys& k) {
    c.caller_mask = k.caller_mask;
    c.caller_country = k.caller_country;
    if (k.ndigits && callbacks.size()) {
        // The dialed number against the callback list (keyed like a calling number).
        std::int64_t i = callbacks.find(hash_string({k.digits, k.ndigits}, kSalt[kCaller]));
        if (i >= 0) {
            auto* e =
                static_cast<const CallbackEntry*>(callbacks.slot(static_cast<std::size_t>(i)));
            c.callback = e->until > c.now;
        }
    }
}

void Engine::Impl::resolve_source(Ctx& c, const Source& src, Verdict& out) {
    if (!src.country.empty()) {
        c.src_country = country_code16(src.country);
    } else if (need_source_country && cfg.geoip) {
        c.src_country = country_code16(cfg.geoip->country(src.addr));
    }
    put_country(out.source_country, c.src_country);
    if (c.group >= 0) {
        const auto& g = groups[static_cast<std::size_t>(c.group)];
        if (!g.allowed_src.empty()) {
            // An unknown source country is not proof of anything: only a known, unlisted one.
            c.src_not_allowed =
                c.src_country != 0 && std::find(g.allowed_src.begin(), g.allowed_src.end(),
                                                c.src_country) == g.allowed_src.end();
        }
    }
}

void Engine::Impl::resolve_time(Ctx& c, base::UnixNanos wall) {
    if (c.group < 0) return;
    auto& g = groups[static_cast<std::size_t>(c.group)];
    if (!g.hours.any()) return;
    std::int64_t s = wall / base::kNanosPerSecond;
    if (s == g.hours_second) {
        c.off_hours = g.hours_off;
        return;
    }
    std::int64_t local = s + g.tz.offset_at(s);
    std::int64_t days = local >= 0 ? local / 86400 : (local - 86399) / 86400;
    int weekday = static_cast<int>(((days % 7) + 7 + 3) % 7);  // 1970-01-01 was a Thursday
    int minute = static_cast<int>((local - days * 86400) / 60);
    c.off_hours = !g.hours.contains(weekday, minute);
    g.hours_second = s;
    g.hours_off = c.off_hours;
}

}  // namespace sbc::fraud
