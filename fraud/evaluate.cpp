// Rule evaluation: deny rules and destination allow-lists, then every ladder of rules over
// the values the event's keys hold, then the score, the action and its reasons.
#include "fraud/engine_impl.hpp"

namespace sbc::fraud {

void Engine::Impl::evaluate(Ctx& c, Verdict& out) {
    bool policy_observe = cfg.mode == Mode::observe;
    Action hard = Action::allow;
    auto push = [&](const Reason& r) {
        if (out.reason_count < Verdict::kMaxReasons)
            out.reasons[out.reason_count++] = r;
        else
            ++out.reasons_dropped;
    };
    // Hard rules: block (or ban) outright, whatever the score.
    for (const auto& d : denies) {
        bool hit = false;
        if (c.kind == EventKind::invite) {
            if (d.dest_mask && (c.dest_mask & d.dest_mask)) hit = true;
            if (c.dest_country && std::find(d.countries.begin(), d.countries.end(),
                                            c.dest_country) != d.countries.end())
                hit = true;
            if (d.caller_mask && (c.caller_mask & d.caller_mask)) hit = true;
            if (c.caller_country && std::find(d.caller_countries.begin(), d.caller_countries.end(),
                                              c.caller_country) != d.caller_countries.end())
                hit = true;
        }
        if (c.src_country && std::find(d.source_countries.begin(), d.source_countries.end(),
                                       c.src_country) != d.source_countries.end())
            hit = true;
        if (!hit) continue;
        Reason r;
        r.rule_id = d.rule->id;
        r.feature = Feature::count_;
        r.key = KeyKind::count_;
        r.value = 1;
        r.threshold = 1;
        r.hard = true;
        r.ban = d.rule->ban;
        r.observe = policy_observe;
        push(r);
        hard = std::max(hard, d.rule->ban ? Action::ban : Action::block);
    }
    if (c.kind == EventKind::invite && c.group >= 0 && c.ndigits && !c.extension) {
        // An allow-list: a destination of unknown country (international networks 882/883,
        // satellite 881) is not on it; an internal extension is no destination abroad.
        const auto& g = groups[static_cast<std::size_t>(c.group)];
        if (!g.allowed_dst.empty() && std::find(g.allowed_dst.begin(), g.allowed_dst.end(),
                                                c.dest_country) == g.allowed_dst.end()) {
            Reason r;
            r.rule_id = g.deny_id;
            r.feature = Feature::count_;
            r.key = KeyKind::account;
            r.value = 1;
            r.threshold = 1;
            r.hard = true;
            r.observe = policy_observe;
            push(r);
            hard = std::max(hard, Action::block);
        }
    }

    double score = 0, shadow = 0;
    const std::uint8_t* slots[kKeyKindCount];
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        slots[ki] = c.slot[ki] >= 0
                        ? static_cast<const std::uint8_t*>(key_tables[ki].table.slot(c.slot[ki]))
                        : nullptr;
    // A component's value, from the ladder's copy of where it sits in the slot.
    auto component = [&](const std::uint8_t* slot, const Probe& p) __attribute__((always_inline))
                         ->double {
        if (p.type == CompType::sequential) {
            auto* run = reinterpret_cast<const SequentialRun*>(slot + p.offset);
            return age_of(c.now_s, run->last_s) < p.window_s ? run->run : 0;
        }
        std::uint32_t e = slot_epoch(slot, p.width_idx, c);
        double into = c.into[p.width_idx];
        if (p.narrow) return ring_value(slot + p.offset, e, into);
        return ring_value(reinterpret_cast<const std::uint16_t*>(slot + p.offset), e, into);
    };
    const bool invite = c.kind == EventKind::invite;
    fired.clear();
    auto fire = [&](std::uint16_t li, double value) {
        ladder_value[li] = value;
        for (auto ri : ladders[li].rules) {
            const CompiledRule& cr = rules[ri];
            bool hit;
            switch (cr.op) {
                case Op::gt:
                    hit = value > cr.threshold;
                    break;
                case Op::ge:
                    hit = value >= cr.threshold;
                    break;
                case Op::lt:
                    hit = value < cr.threshold;
                    break;
                case Op::le:
                    hit = value <= cr.threshold;
                    break;
                default:
                    hit = value == cr.threshold;
                    break;
            }
            if (hit) fired.push_back(ri);
        }
    };
    for (const auto& l : invite ? invite_counters : other_counters) {
        if (!(c.scope_bits >> l.scope_idx & 1)) continue;
        const std::uint8_t* slot = slots[l.key_index];
        if (!slot) continue;
        double value =
            ring_value(slot + l.offset, slot_epoch(slot, l.width_idx, c), c.into[l.width_idx]);
        if (value < l.fire_floor) continue;
        fire(l.ladder, value);
    }
    for (auto li : invite ? invite_ladders : other_ladders) {
        const Ladder& l = ladders[li];
        if (!(c.scope_bits >> l.scope_idx & 1)) continue;
        const std::size_t ki = l.key_index;
        const std::uint8_t* slot = slots[ki];
        double value;
        switch (l.source) {
            case ValueSource::scanner:
                value = c.scanner ? 1 : 0;
                break;
            case ValueSource::off_hours:
                value = c.off_hours ? 1 : 0;
                break;
            case ValueSource::src_not_allowed:
                value = c.src_not_allowed ? 1 : 0;
                break;
            case ValueSource::callback:
                value = c.callback ? 1 : 0;
                break;
            case ValueSource::concurrent:
                if (!slot) continue;  // key absent or untracked
                value = reinterpret_cast<const KeyHeader*>(slot)->concurrent + 1;  // this call
                break;
            case ValueSource::ratio: {
                if (!slot) continue;
                double den = component(slot, l.b);
                if (den < l.min_den) continue;
                value = component(slot, l.a) / den;
                break;
            }
            default:
                if (!slot) continue;
                value = component(slot, l.a);
                break;
        }
        if (value < l.fire_floor) continue;
        fire(li, value);
    }
    // Reasons in rule order, as the policy lists them.
    std::sort(fired.begin(), fired.end());
    for (auto ri : fired) {
        const CompiledRule& cr = rules[ri];
        const Rule& r = *cr.rule;
        const std::size_t ki = cr.key_index;
        Reason reason;
        reason.rule_id = r.id;
        reason.feature = r.feature;
        reason.key = r.key;
        reason.value = ladder_value[rule_ladder[ri]];
        reason.op = r.op;
        reason.threshold = r.threshold;
        reason.weight = r.weight;
        reason.observe = cr.observe || policy_observe;
        push(reason);
        shadow += r.weight;
        if (!cr.observe) score += r.weight;
        if (slots[ki]) {
            // Evidence: this key now survives floods of new keys until it goes idle.
            auto* hdr = static_cast<KeyHeader*>(key_tables[ki].table.slot(c.slot[ki]));
            hdr->evidence_until_s = c.now_s + idle_s;
        }
    }
    score = std::min(score, cfg.score_cap);
    shadow = std::min(shadow, cfg.score_cap);
    auto by_score = [&](double s) {
        if (s >= cfg.ban_threshold) return Action::ban;
        if (s >= cfg.block_threshold) return Action::block;
        if (s >= cfg.flag_threshold) return Action::flag;
        return Action::allow;
    };
    out.score = score;
    out.shadow_score = shadow;
    out.shadow_action = std::max(by_score(shadow), hard);
    out.action = policy_observe ? Action::allow : std::max(by_score(score), hard);
}

// What a ban lands on: a rule keyed on the source prefix bans the prefix; traffic of a trusted
// trunk is never banned by address, the calling number (or, when a caller_prefix rule fired,
// its prefix) is banned instead, and with no calling number nothing is (the call is blocked).
void Engine::Impl::finish(Ctx& c, const Source& src, Verdict& out, bool trusted) {
    // A shared company address is never banned: the request is refused, its users go on.
    if (own_network(src.addr)) {
        if (out.action == Action::ban) out.action = Action::block;
        if (out.shadow_action == Action::ban) out.shadow_action = Action::block;
    }
    if (out.action == Action::ban) {
        bool by_prefix = false, by_caller_prefix = false;
        for (std::size_t i = 0; i < out.reason_count; ++i) {
            const Reason& r = out.reasons[i];
            if (r.observe || r.hard) continue;
            by_prefix = by_prefix || r.key == KeyKind::source_prefix;
            by_caller_prefix = by_caller_prefix || r.key == KeyKind::caller_prefix;
        }
        const base::Nanos until = c.now + cfg.ban_duration;
        if (trusted) {
            if (by_caller_prefix && c.has_key[kCallerPrefix]) {
                ban_hash(c.key_hash[kCallerPrefix], until, c.now);
                out.ban_target = BanTarget::caller_prefix;
                out.ban_until = until;
            } else if (c.has_key[kCaller]) {
                ban_hash(c.key_hash[kCaller], until, c.now);
                out.ban_target = BanTarget::caller;
                out.ban_until = until;
            } else {
                out.action = Action::block;  // nothing to ban but the trunk: the call is refused
            }
        } else if (!src.addr.is_unspecified()) {
            out.ban_until = until;
            if (by_prefix && c.has_key[kSourcePrefix]) {
                ban_hash(c.key_hash[kSourcePrefix], until, c.now, c.kind, c.auth_failed);
                out.ban_target = BanTarget::source_prefix;
                out.ban_prefix_length =
                    src.addr.is_v4() ? cfg.source_prefix_v4 : cfg.source_prefix_v6;
                if (auto* p = header(KeyKind::source_prefix, c))
                    p->evidence_until_s = c.now_s + idle_s;
            } else {
                ban(src.addr, out.ban_until, c.now, c.kind, c.auth_failed);
                out.ban_target = BanTarget::source_address;
            }
            auto* hdr = header(KeyKind::source_ip, c);
            if (hdr) hdr->evidence_until_s = c.now_s + idle_s;
        }
    }
    switch (out.action) {
        case Action::allow:
            counters.add(Counter::verdict_allow);
            break;
        case Action::flag:
            counters.add(Counter::verdict_flag);
            break;
        case Action::block:
            counters.add(Counter::verdict_block);
            break;
        case Action::ban:
            counters.add(Counter::verdict_ban);
            break;
        case Action::count_:
            break;
    }
    if (out.shadow_action != Action::allow && out.action == Action::allow)
        counters.add(Counter::shadow_non_allow);
}

}  // namespace sbc::fraud
