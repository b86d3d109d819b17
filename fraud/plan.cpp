// The compiled plan: an EngineConfig checked and turned into slot layouts, rule ladders and
// lookup structures, and the StateLayout that decides whether a reload keeps the state.
#include "fraud/engine_impl.hpp"

namespace sbc::fraud {

namespace {

bool is_call_feature(Feature f) {
    switch (f) {
        case Feature::auth_failures:
        case Feature::distinct_usernames:
        case Feature::scanner_user_agent:
        case Feature::request_sweep:
        case Feature::source_country_not_allowed:
        case Feature::country_change:
            return false;
        default:
            return true;
    }
}

bool is_event_feature(Feature f) {
    return f == Feature::scanner_user_agent || f == Feature::off_hours ||
           f == Feature::source_country_not_allowed || f == Feature::callback_short_ring;
}

std::string format_window(base::Nanos w) {
    return std::to_string(w / base::kNanosPerSecond);
}

// Whether an event of kind `k` can count in a component of this type and value: the event
// kinds each case of `update` accepts.
bool counts_on(CompType type, std::uint8_t what, EventKind k) {
    switch (type) {
        case CompType::sequential:
            return k == EventKind::invite;
        case CompType::counter:
            switch (static_cast<CountEvent>(what)) {
                case CountEvent::attempt:
                case CountEvent::international:
                case CountEvent::list_hit:
                    return k == EventKind::invite;
                case CountEvent::answered:
                case CountEvent::short_answered:
                case CountEvent::ended:
                case CountEvent::failed:
                case CountEvent::short_ring:
                    return k == EventKind::end;
                case CountEvent::auth_failure:
                    return k == EventKind::auth;
            }
            return true;
        case CompType::distinct:
            switch (static_cast<DistinctValue>(what)) {
                case DistinctValue::destination:
                case DistinctValue::destination_country:
                    return k == EventKind::invite;
                case DistinctValue::failed_username:
                    return k == EventKind::auth || k == EventKind::reg;
                case DistinctValue::request_target:
                    return k == EventKind::invite || k == EventKind::request || k == EventKind::reg;
                case DistinctValue::source_country:
                    return k != EventKind::end;
            }
            return true;
    }
    return true;
}

std::string scope_signature(const CompiledScope& s) {
    std::string sig = std::to_string(s.directions) + "/";
    for (auto t : s.tenants) sig += std::to_string(t) + ",";
    sig += "/";
    for (auto g : s.groups) sig += g ? '1' : '0';
    sig += "/" + std::to_string(s.dest_mask) + "/" + std::to_string(static_cast<int>(s.time));
    return sig;
}

}  // namespace

base::Result<std::uint64_t> Engine::Impl::list_bit(const std::string& name) const {
    for (std::size_t i = 0; i < list_names.size(); ++i)
        if (list_names[i] == name) return std::uint64_t{1} << i;
    return base::make_error("unknown prefix list '" + name + "'");
}

base::Result<CompiledScope> Engine::Impl::compile_scope(const Scope& s) const {
    CompiledScope cs;
    for (auto d : s.directions)
        cs.directions |= static_cast<std::uint8_t>(1u << static_cast<unsigned>(d));
    for (const auto& t : s.tenants) cs.tenants.push_back(hash_string(t, kSalt[3]));
    if (!s.account_groups.empty()) {
        cs.groups.assign(cfg.account_groups.size(), 0);
        for (const auto& name : s.account_groups) {
            bool found = false;
            for (std::size_t i = 0; i < cfg.account_groups.size(); ++i)
                if (cfg.account_groups[i].name == name) cs.groups[i] = 1, found = true;
            if (!found) return base::make_error("unknown account group '" + name + "'");
        }
    }
    if (!s.destinations.empty()) {
        auto bit = list_bit(s.destinations);
        if (!bit) return bit.error();
        cs.dest_mask = *bit;
    }
    cs.time = s.time;
    return cs;
}

base::Result<std::uint16_t> Engine::Impl::scope_index(const CompiledScope& s) {
    if (scopes.empty()) {
        scopes.push_back(CompiledScope{});
        scope_sigs.push_back(scope_signature(CompiledScope{}));
    }
    auto sig = scope_signature(s);
    for (std::size_t i = 0; i < scope_sigs.size(); ++i)
        if (scope_sigs[i] == sig) return static_cast<std::uint16_t>(i);
    if (scopes.size() >= kMaxScopes)
        return base::make_error("at most 64 distinct rule scopes are supported");
    scopes.push_back(s);
    scope_sigs.push_back(sig);
    return static_cast<std::uint16_t>(scopes.size() - 1);
}

base::Result<std::uint16_t> Engine::Impl::width_index(base::Nanos w) {
    for (std::size_t i = 0; i < widths.size(); ++i)
        if (widths[i] == w) return static_cast<std::uint16_t>(i);
    if (widths.size() >= kMaxWidths)
        return base::make_error("at most 64 distinct rule windows are supported");
    span[widths.size()] = w * (kRingBuckets - 1);
    widths.push_back(w);
    return static_cast<std::uint16_t>(widths.size() - 1);
}

int Engine::Impl::add_component(KindPlan& kt, Component c) {
    c.signature = std::to_string(static_cast<int>(c.type)) + "/" + std::to_string(c.what) + "/" +
                  format_window(c.window) + "/" + std::to_string(c.list_mask) + "/";
    for (auto t : c.filter.tenants) c.signature += std::to_string(t) + ",";
    c.signature += "/";
    for (auto g : c.filter.groups) c.signature += g ? '1' : '0';
    c.signature += "/" + std::to_string(c.filter.dest_mask) + "/" +
                   std::to_string(static_cast<int>(c.filter.time)) + "/d" +
                   std::to_string(c.filter.directions) + (c.count_blocked ? "/kept" : "");
    for (std::size_t i = 0; i < kt.comps.size(); ++i) {
        if (kt.comps[i].signature == c.signature) {
            kt.comps[i].capacity = std::max(kt.comps[i].capacity, c.capacity);
            kt.comps[i].max_threshold = std::max(kt.comps[i].max_threshold, c.max_threshold);
            kt.comps[i].ratio = kt.comps[i].ratio || c.ratio;
            return static_cast<int>(i);
        }
    }
    kt.comps.push_back(std::move(c));
    return static_cast<int>(kt.comps.size() - 1);
}

base::Result<void> Engine::Impl::compile(bool with_tables) {
    using S = ConfigError::Subject;
    at(S::engine);
    if (cfg.max_tracked_keys == 0) return base::make_error("max_tracked_keys must be > 0");
    if (cfg.prefix_lists.size() > 64) {
        at(S::prefix_list, 64);
        return base::make_error("at most 64 prefix lists are supported by the fraud engine");
    }
    idle_s = std::max<std::uint32_t>(1, to_seconds(cfg.idle_key_expiry));

    for (std::size_t i = 0; i < cfg.prefix_lists.size(); ++i) {
        list_names.push_back(cfg.prefix_lists[i].name);
        for (const auto& p : cfg.prefix_lists[i].prefixes)
            lists.add(p, std::uint64_t{1} << i, true);
    }
    for (const auto& cc : cfg.country_codes) {
        // Several countries share a code (MA/EH on 212): the first listed is the answer, not
        // the last (a later add would overwrite it).
        if (countries.walk(cc.code).deepest_len == cc.code.size()) continue;
        country_iso.push_back(country_code16(cc.iso));
        country_code_str.push_back(cc.code);
        countries.add(cc.code, country_iso.size(), false);
    }
    home_code = cfg.home_country_code;
    home_country = country_code16(cfg.home_country);

    for (std::size_t gi = 0; gi < cfg.account_groups.size(); ++gi) {
        const auto& g = cfg.account_groups[gi];
        at(S::account_group, gi);
        Group cg;
        auto tz = TimeZone::load(cfg.zoneinfo_dir, g.timezone.empty() ? "UTC" : g.timezone);
        if (!tz) return base::make_error("account group '" + g.name + "': " + tz.error().message);
        cg.tz = std::move(*tz);
        for (const auto& h : g.business_hours) cg.hours.add(h);
        for (const auto& c : g.allowed_source_countries)
            cg.allowed_src.push_back(country_code16(c));
        for (const auto& c : g.allowed_destination_countries)
            cg.allowed_dst.push_back(country_code16(c));
        if (!g.allowed_source_countries.empty()) need_source_country = true;
        cg.tenant = g.tenant;
        if (!g.tenant.empty()) cg.tenant_hash = hash_string(g.tenant, kSalt[3]);
        cg.deny_id = "group:" + g.name + ":allowed_destination_countries";
        groups.push_back(std::move(cg));
        for (const auto& a : g.accounts) exact_accounts.emplace(a, static_cast<int>(gi));
        for (const auto& p : g.account_patterns)
            account_patterns.emplace_back(p, static_cast<int>(gi));
    }
    at(S::engine);
    for (const auto& ua : cfg.scanner_user_agents) scanner_globs.emplace_back(ua);

    std::vector<std::string> ids;
    for (const auto& r : cfg.rules) {
        at(S::rule, static_cast<std::size_t>(&r - cfg.rules.data()));
        auto err = [&](const std::string& m) {
            return base::make_error("rule '" + r.id + "': " + m);
        };
        if (r.id.empty()) return base::make_error("a fraud rule has no id");
        if (std::find(ids.begin(), ids.end(), r.id) != ids.end()) return err("duplicate rule id");
        ids.push_back(r.id);
        CompiledRule cr;
        cr.rule = &r;
        cr.observe = r.mode == Mode::observe;
        cr.call_feature = is_call_feature(r.feature);
        auto scope = compile_scope(r.scope);
        if (!scope) return err(scope.error().message);
        cr.scope = std::move(*scope);
        auto si = scope_index(cr.scope);
        if (!si) return err(si.error().message);
        cr.scope_idx = *si;
        bool windowed = !is_event_feature(r.feature) && r.feature != Feature::concurrent_calls;
        if (windowed && r.window < base::kNanosPerSecond) return err("window must be >= 1s");
        auto& kt = kinds[static_cast<std::size_t>(r.key)];
        kt.used = true;
        Component c;
        c.window = r.window;
        c.width = std::max<base::Nanos>(1, r.window / (kRingBuckets - 1));
        c.max_threshold = r.threshold;
        c.ratio = r.feature == Feature::short_call_ratio || r.feature == Feature::failed_call_ratio;
        c.window_s = std::max<std::uint32_t>(1, to_seconds(r.window));
        c.filter = cr.scope;
        c.scope_idx = cr.scope_idx;
        c.count_blocked = r.count_blocked;
        if (r.count_blocked) any_count_blocked = true;
        auto wi = width_index(c.width);
        if (!wi) return err(wi.error().message);
        c.width_idx = *wi;
        auto counter = [&](CountEvent e, std::uint64_t mask = 0) {
            Component x = c;
            x.type = CompType::counter;
            x.what = static_cast<std::uint8_t>(e);
            x.list_mask = mask;
            return add_component(kt, x);
        };
        auto distinct = [&](DistinctValue v, std::uint64_t mask = 0) -> base::Result<int> {
            if (r.threshold > 127)
                return err("distinct-count thresholds above 127 are not supported");
            Component x = c;
            x.type = CompType::distinct;
            x.what = static_cast<std::uint8_t>(v);
            x.list_mask = mask;
            x.capacity = std::clamp<std::uint32_t>(
                static_cast<std::uint32_t>(std::max(0.0, std::floor(r.threshold))) + 1, 4, 128);
            return add_component(kt, x);
        };
        auto lists_mask = [&](std::initializer_list<Category> cats) -> base::Result<std::uint64_t> {
            std::uint64_t m = 0;
            if (!r.lists.empty()) {
                for (const auto& n : r.lists) {
                    auto b = list_bit(n);
                    if (!b) return b.error();
                    m |= *b;
                }
            } else {
                for (std::size_t i = 0; i < cfg.prefix_lists.size(); ++i)
                    for (auto cat : cats)
                        if (cfg.prefix_lists[i].category == cat) m |= std::uint64_t{1} << i;
            }
            return m;
        };
        // `lists` restricts what a destination feature counts to attempts whose destination
        // is on one of them; other features have no destination to restrict.
        const bool takes_lists =
            r.feature == Feature::attempts || r.feature == Feature::high_risk_attempts ||
            r.feature == Feature::premium_attempts || r.feature == Feature::distinct_destinations;
        if (!r.lists.empty() && !takes_lists)
            return err(
                "lists apply only to attempts, high_risk_attempts, premium_attempts and "
                "distinct_destinations");
        switch (r.feature) {
            case Feature::attempts:
                if (r.lists.empty()) {
                    cr.comp_a = counter(CountEvent::attempt);
                } else {
                    // INVITEs to the lists: the count high_risk_attempts keeps for the same
                    // lists (the two rules share it).
                    auto m = lists_mask({});
                    if (!m) return err(m.error().message);
                    cr.comp_a = counter(CountEvent::list_hit, *m);
                }
                break;
            case Feature::international_attempts:
                cr.comp_a = counter(CountEvent::international);
                break;
            case Feature::high_risk_attempts:
            case Feature::premium_attempts: {
                auto m = r.feature == Feature::premium_attempts
                             ? lists_mask({Category::premium})
                             : lists_mask({Category::irsf, Category::premium, Category::high_risk});
                if (!m) return err(m.error().message);
                cr.comp_a = counter(CountEvent::list_hit, *m);
                break;
            }
            case Feature::distinct_destinations:
            case Feature::distinct_destination_countries:
            case Feature::distinct_usernames:
            case Feature::request_sweep:
            case Feature::country_change: {
                DistinctValue v =
                    r.feature == Feature::distinct_destinations ? DistinctValue::destination
                    : r.feature == Feature::distinct_destination_countries
                        ? DistinctValue::destination_country
                    : r.feature == Feature::distinct_usernames ? DistinctValue::failed_username
                    : r.feature == Feature::request_sweep      ? DistinctValue::request_target
                                                               : DistinctValue::source_country;
                std::uint64_t mask = 0;
                if (v == DistinctValue::destination && !r.lists.empty()) {
                    auto m = lists_mask({});
                    if (!m) return err(m.error().message);
                    mask = *m;
                }
                auto i = distinct(v, mask);
                if (!i) return i.error();
                cr.comp_a = *i;
                if (v == DistinctValue::source_country) need_source_country = true;
                break;
            }
            case Feature::sequential_dialing: {
                Component x = c;
                x.type = CompType::sequential;
                cr.comp_a = add_component(kt, x);
                break;
            }
            case Feature::short_call_ratio:
                cr.comp_a = counter(CountEvent::short_answered);
                cr.comp_b = counter(CountEvent::answered);
                break;
            case Feature::failed_call_ratio:
                cr.comp_a = counter(CountEvent::failed);
                cr.comp_b = counter(CountEvent::ended);
                break;
            case Feature::auth_failures:
                cr.comp_a = counter(CountEvent::auth_failure);
                break;
            case Feature::short_rings:
                cr.comp_a = counter(CountEvent::short_ring);
                break;
            case Feature::source_country_not_allowed:
                need_source_country = true;
                break;
            case Feature::concurrent_calls:
            case Feature::scanner_user_agent:
            case Feature::off_hours:
            case Feature::callback_short_ring:
            case Feature::count_:
                break;
        }
        cr.key_index = static_cast<std::uint8_t>(r.key);
        cr.op = r.op;
        cr.threshold = r.threshold;
        cr.min_den = std::max<double>(1, r.min_attempts);
        switch (r.feature) {
            case Feature::scanner_user_agent:
                cr.source = ValueSource::scanner;
                break;
            case Feature::off_hours:
                cr.source = ValueSource::off_hours;
                break;
            case Feature::source_country_not_allowed:
                cr.source = ValueSource::src_not_allowed;
                break;
            case Feature::concurrent_calls:
                cr.source = ValueSource::concurrent;
                break;
            case Feature::callback_short_ring:
                cr.source = ValueSource::callback;
                break;
            case Feature::short_call_ratio:
            case Feature::failed_call_ratio:
                cr.source = ValueSource::ratio;
                break;
            default:
                cr.source = ValueSource::component;
                break;
        }
        rules.push_back(std::move(cr));
    }
    at(S::engine);
    if (rules.size() > 0xffff) return base::make_error("at most 65535 fraud rules are supported");
    for (std::size_t i = 0; i < rules.size(); ++i) {
        const auto& cr = rules[i];
        const RuleValue& value = cr;
        const auto same = std::find_if(ladders.begin(), ladders.end(), [&](const Ladder& l) {
            return static_cast<const RuleValue&>(l) == value;
        });
        const auto li = static_cast<std::size_t>(same - ladders.begin());
        if (same == ladders.end()) {
            Ladder l;
            static_cast<RuleValue&>(l) = value;
            ladders.push_back(std::move(l));
        }
        ladders[li].rules.push_back(static_cast<std::uint16_t>(i));
        rule_ladder.push_back(static_cast<std::uint16_t>(li));
    }
    for (std::size_t li = 0; li < ladders.size(); ++li) {
        invite_ladders.push_back(static_cast<std::uint16_t>(li));
        if (!ladders[li].call_feature) other_ladders.push_back(static_cast<std::uint16_t>(li));
    }
    ladder_value.assign(ladders.size(), 0);
    fired.reserve(rules.size());
    {
        std::size_t records = 0;
        for (const auto& kt : kinds) records += 2 * kt.comps.size();
        undo.reserve(records);
    }
    for (const auto& d : cfg.deny) {
        at(S::deny_rule, static_cast<std::size_t>(&d - cfg.deny.data()));
        if (d.id.empty()) return base::make_error("a fraud deny rule has no id");
        if (std::find(ids.begin(), ids.end(), d.id) != ids.end())
            return base::make_error("deny rule '" + d.id + "': duplicate id");
        ids.push_back(d.id);
        CompiledDeny cd;
        cd.rule = &d;
        if (!d.destinations.empty()) {
            auto b = list_bit(d.destinations);
            if (!b) return base::make_error("deny rule '" + d.id + "': " + b.error().message);
            cd.dest_mask = *b;
        }
        for (const auto& c : d.countries) cd.countries.push_back(country_code16(c));
        for (const auto& c : d.source_countries) cd.source_countries.push_back(country_code16(c));
        if (!d.callers.empty()) {
            auto b = list_bit(d.callers);
            if (!b) return base::make_error("deny rule '" + d.id + "': " + b.error().message);
            cd.caller_mask = *b;
        }
        for (const auto& c : d.caller_countries) cd.caller_countries.push_back(country_code16(c));
        if (!cd.source_countries.empty()) need_source_country = true;
        denies.push_back(std::move(cd));
    }
    at(S::engine);

    // Lay out the slots and size the tables. The key budget is split between the key kinds
    // that rules read, so a flood of one kind cannot take another kind's room: addresses and
    // accounts (attacker-fed, unbounded) get 3 shares, source prefixes 2, tenants and
    // destination prefixes (bounded by configuration and numbering plans) 1.
    // Calling numbers and devices are attacker-fed too (3 shares); calling-number prefixes are
    // bounded by the numbering plan (1).
    constexpr std::size_t kShares[kKeyKindCount] = {3, 2, 3, 1, 1, 3, 1, 3};
    std::size_t shares = 0;
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) shares += kinds[ki].used ? kShares[ki] : 0;
    //
    // The hot slot holds what every event of the key reads: the header, sequential runs,
    // counters (8-bit buckets when no rule reading them is a ratio or has a threshold above
    // 254: a sub-bucket then saturates only after its rules have fired) and the summaries of
    // distinct sets, largest alignment first, rounded up to whole cache lines. The entries of
    // distinct sets go to the cold area.
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        auto& kt = kinds[ki];
        if (!kt.used) continue;
        std::size_t off = sizeof(KeyHeader);
        std::size_t cold = 0;
        for (auto& c : kt.comps) {
            if (c.type == CompType::counter) c.narrow = !c.ratio && c.max_threshold < 255;
            if (c.type == CompType::distinct) c.lines = distinct_lines(c.capacity);
        }
        auto place = [&](auto pred, std::size_t bytes) {
            for (auto& c : kt.comps) {
                if (!pred(c)) continue;
                c.offset = static_cast<std::uint32_t>(off);
                off += bytes;
                if (c.type == CompType::counter || c.type == CompType::distinct)
                    kt.rings.push_back(
                        {c.type == CompType::distinct
                             ? static_cast<std::uint32_t>(c.offset + offsetof(DistinctSummary, n))
                             : c.offset,
                         c.width_idx, c.narrow || c.type == CompType::distinct});
                if (c.type == CompType::distinct) {
                    c.cold_offset = static_cast<std::uint32_t>(cold);
                    cold += std::size_t{c.lines} * 64;
                }
            }
        };
        place([](const Component& c) { return c.type == CompType::sequential; },
              sizeof(SequentialRun));
        place([](const Component& c) { return c.type == CompType::counter && !c.narrow; },
              kRingBuckets * 2);
        place([](const Component& c) { return c.type == CompType::distinct; },
              sizeof(DistinctSummary));
        place([](const Component& c) { return c.type == CompType::counter && c.narrow; },
              kRingBuckets);
        for (const auto& r : kt.rings)
            if (std::find(kt.widths.begin(), kt.widths.end(), r.width_idx) == kt.widths.end())
                kt.widths.push_back(r.width_idx);
        kt.width_rings.resize(kt.widths.size());
        for (const auto& r : kt.rings) {
            auto wi = static_cast<std::size_t>(
                std::find(kt.widths.begin(), kt.widths.end(), r.width_idx) - kt.widths.begin());
            (r.narrow ? kt.width_rings[wi].narrow : kt.width_rings[wi].wide).push_back(r.offset);
        }
        for (std::size_t i = 0; i < kt.comps.size(); ++i)
            if (kt.comps[i].type == CompType::distinct) kt.distinct_comps.push_back(i);
        for (std::size_t k = 0; k < kEventKinds; ++k)
            for (std::size_t i = 0; i < kt.comps.size(); ++i)
                if (counts_on(kt.comps[i].type, kt.comps[i].what, static_cast<EventKind>(k))) {
                    const Component& x = kt.comps[i];
                    kt.by_event[k].push_back({x.type, x.what, x.narrow, x.width_idx, x.scope_idx,
                                              x.offset, x.cold_offset, x.lines, x.window_s,
                                              x.list_mask, x.count_blocked});
                }
        kt.slot_bytes = (off + 63) & ~std::size_t{63};
        kt.cold_bytes = cold;
        std::size_t cap = std::max<std::size_t>(64, cfg.max_tracked_keys * kShares[ki] / shares);
        if (with_tables) key_tables[ki].table.init(cap, kt.slot_bytes, kt.cold_bytes);
        KindLayout& kl = layout.kinds[ki];
        kl.used = true;
        kl.slot_bytes = kt.slot_bytes;
        kl.cold_bytes = kt.cold_bytes;
        kl.capacity = cap;
        for (const Component& x : kt.comps)
            kl.comps.push_back({x.signature, x.width, x.narrow, x.offset, x.cold_offset, x.lines});
    }
    for (auto& l : ladders) {
        const auto& kt = kinds[l.key_index];
        auto probe = [&](int ci) {
            Probe p;
            if (ci < 0) return p;
            const Component& comp = kt.comps[static_cast<std::size_t>(ci)];
            p.type = comp.type;
            p.narrow = comp.narrow || comp.type == CompType::distinct;
            p.width_idx = comp.width_idx;
            p.offset = comp.type == CompType::distinct
                           ? static_cast<std::uint32_t>(comp.offset + offsetof(DistinctSummary, n))
                           : comp.offset;
            p.window_s = comp.window_s;
            return p;
        };
        l.a = probe(l.comp_a);
        l.b = probe(l.comp_b);
        bool rising = true;
        double floor = std::numeric_limits<double>::infinity();
        for (auto ri : l.rules) {
            const auto& cr = rules[ri];
            rising = rising && (cr.op == Op::ge || cr.op == Op::gt);
            floor = std::min(floor, cr.threshold);
        }
        if (rising && !l.rules.empty()) l.fire_floor = floor;
    }
    invite_ladders.clear();
    other_ladders.clear();
    for (std::size_t li = 0; li < ladders.size(); ++li) {
        const Ladder& l = ladders[li];
        const auto i = static_cast<std::uint16_t>(li);
        if (l.source == ValueSource::component && l.a.type != CompType::sequential && l.a.narrow) {
            CounterLadder cl{i, l.key_index, l.scope_idx, l.a.width_idx, l.a.offset, l.fire_floor};
            invite_counters.push_back(cl);
            if (!l.call_feature) other_counters.push_back(cl);
        } else {
            invite_ladders.push_back(i);
            if (!l.call_feature) other_ladders.push_back(i);
        }
    }
    layout.call_capacity = std::max<std::uint64_t>(64, cfg.max_tracked_calls);
    layout.ban_capacity = std::max<std::uint32_t>(64, cfg.ban_capacity);
    layout.callback_capacity = std::max<std::uint32_t>(64, cfg.callback_capacity);
    if (cfg.callback_expiry <= 0) return base::make_error("callback_expiry must be > 0");
    if (cfg.callback_lists.empty()) {
        for (std::size_t i = 0; i < cfg.prefix_lists.size(); ++i) {
            auto cat = cfg.prefix_lists[i].category;
            if (cat == Category::irsf || cat == Category::premium || cat == Category::high_risk)
                callback_mask |= std::uint64_t{1} << i;
        }
    } else {
        for (const auto& n : cfg.callback_lists) {
            auto b = list_bit(n);
            if (!b) return base::make_error("callback_lists: " + b.error().message);
            callback_mask |= *b;
        }
    }
    if (with_tables) {
        calls.init(layout.call_capacity, sizeof(CallEntry), 0, true);
        bans.init(layout.ban_capacity, sizeof(BanEntry), 0, true);
        callbacks.init(layout.callback_capacity, sizeof(CallbackEntry), 0, true);
    }
    layout.source_prefix_v4 = cfg.source_prefix_v4;
    layout.source_prefix_v6 = cfg.source_prefix_v6;
    layout.short_call_seconds = cfg.short_call_seconds;
    layout.short_ring_seconds = cfg.short_ring_seconds;
    layout.sequential_max_step = cfg.sequential_max_step;
    layout.home_country_code = cfg.home_country_code;
    layout.list_names = list_names;
    for (const auto& g : cfg.account_groups) layout.group_names.push_back(g.name);
    return {};
}

// Takes over the running engine's state (tables, sweep positions, counters, event sink);
// `running` is left with this engine's empty tables and is discarded by the caller.
void Engine::Impl::take_state(Impl& running) {
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
        if (!kinds[ki].used) continue;
        key_tables[ki].table.swap(running.key_tables[ki].table);
        key_tables[ki].cursor = running.key_tables[ki].cursor;
        key_pace[ki] = running.key_pace[ki];
    }
    calls.swap(running.calls);
    calls_cursor = running.calls_cursor;
    bans.swap(running.bans);
    bans_cursor = running.bans_cursor;
    callbacks.swap(running.callbacks);
    call_pace = running.call_pace;
    ban_pace = running.ban_pace;
    sweep_last = running.sweep_last;
    auth_credits.swap(running.auth_credits);
    auth_credit_next = running.auth_credit_next;
    auth_credits_live = running.auth_credits_live;
    counters = running.counters;
    sink = std::move(running.sink);
}

}  // namespace sbc::fraud
