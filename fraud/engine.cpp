// The fraud scoring engine: per-key state in fixed tables, rules over sliding windows,
// verdicts with their reasons. This file is the public API; engine_impl.hpp says where the
// rest lives.
#include "fraud/engine_impl.hpp"

namespace sbc::fraud {

bool compare(Op op, double value, double threshold) {
    switch (op) {
        case Op::gt:
            return value > threshold;
        case Op::ge:
            return value >= threshold;
        case Op::lt:
            return value < threshold;
        case Op::le:
            return value <= threshold;
        case Op::eq:
            return value == threshold;
        case Op::count_:
            break;
    }
    return false;
}

// ---------------------------------------------------------------------------------------------
// Public API

Engine::~Engine() = default;

base::Result<std::unique_ptr<Engine>> Engine::create(EngineConfig config) {
    std::unique_ptr<Engine> e(new Engine());
    e->impl_ = std::make_unique<Impl>();
    e->impl_->cfg = std::move(config);
    auto r = e->impl_->compile();
    if (!r) return r.error();
    return e;
}

base::Result<bool> Engine::reconfigure(EngineConfig config) {
    // Compiled aside: an invalid configuration or another layout leaves the engine untouched.
    auto next = std::make_unique<Impl>();
    next->cfg = std::move(config);
    auto r = next->compile();
    if (!r) return r.error();
    if (!next->same_state_layout(*impl_)) return false;
    next->take_state(*impl_);
    impl_ = std::move(next);
    return true;
}

bool Engine::hand_over_state(Engine& next) noexcept {
    if (!next.impl_->same_state_layout(*impl_)) return false;
    next.impl_->take_state(*impl_);
    return true;
}

bool Engine::takes_state_of(const Engine& running) const noexcept {
    return impl_->same_state_layout(*running.impl_);
}

std::size_t Engine::commit_tables() {
    std::size_t n = impl_->calls.commit() + impl_->bans.commit();
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        if (impl_->kinds[ki].used) n += impl_->key_tables[ki].table.commit();
    return n;
}

std::optional<ConfigError> validate(const EngineConfig& config) {
    // The configuration is copied: compile() keeps pointers into its own.
    Engine::Impl probe;
    probe.cfg = config;
    auto r = probe.compile(false);
    if (r) return std::nullopt;
    return ConfigError{probe.compiling, probe.compiling_index, r.error().message};
}

void Engine::on_attempt(const CallAttempt& a, Verdict& out) {
    AttemptKeys k;
    impl_->attempt_keys(a, k);
    impl_->attempt(a, k, out);
}

void Engine::Impl::attempt(const CallAttempt& a, const AttemptKeys& k, Verdict& out) {
    auto& m = *this;
    out.reset();
    bool invite = k.invite;
    m.counters.add(invite ? Counter::attempts : Counter::requests);
    if (m.source_banned(a.source.addr, a.now, &out.ban_until)) {
        out.action = out.shadow_action = Action::ban;
        out.banned_source = true;
        m.counters.add(Counter::banned_source_drops);
        return;
    }
    std::uint64_t call_hash = k.call_hash;
    if (call_hash) {
        // Count each Call-ID once: retransmissions and forked INVITEs repeat the verdict.
        std::int64_t i = m.calls.find(call_hash);
        if (i >= 0) {
            out.action = out.shadow_action = static_cast<Action>(m.call(i)->action);
            out.duplicate = true;
            m.counters.add(Counter::duplicate_attempts);
            return;
        }
    }
    Ctx c;
    c.kind = invite ? EventKind::invite : EventKind::request;
    c.now = a.now;
    c.now_s = to_seconds(a.now);
    m.resolve_keys(c, a.source, a.account, a.tenant, true, &k);
    if (invite) {
        m.resolve_destination(c, k);
        put_country(out.destination_country, c.dest_country);
    }
    m.resolve_source(c, a.source, out);
    m.resolve_time(c, a.wall);
    m.resolve_scanner(c, a.user_agent);
    c.target_hash = k.target_hash;
    m.prepare(c);
    m.update(c);
    m.evaluate(c, out);
    m.finish(c, a.source, out);

    if (call_hash) {
        std::int64_t i = m.insert_call(call_hash, a.now);
        if (i >= 0) {
            auto* e = m.call(i);
            for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
                e->key_hash[ki] = c.key_hash[ki];
                if (c.has_key[ki]) e->keys |= static_cast<std::uint8_t>(1u << ki);
            }
            e->tenant_hash = c.tenant_hash;
            e->dest_mask = c.dest_mask;
            e->start = a.now;
            e->group = static_cast<std::int16_t>(c.group);
            e->action = static_cast<std::uint8_t>(out.action);
            e->off_hours = c.off_hours;
            if (out.action == Action::allow || out.action == Action::flag) {
                e->counted = 1;
                for (std::size_t ki = 0; ki < kKeyKindCount; ++ki) {
                    if (c.slot[ki] < 0) continue;
                    ++static_cast<KeyHeader*>(m.key_tables[ki].table.slot(c.slot[ki]))->concurrent;
                }
            } else {
                e->ended = a.now;  // rejected here: no answer or end will follow
            }
        }
    }
    if (m.sink && (out.action != Action::allow || out.shadow_action != Action::allow)) {
        m.sink(to_json(out, a));
        m.counters.add(Counter::events_emitted);
    }
    m.housekeep(a.now);
}

void Engine::on_answer(const CallAnswered& a) {
    auto& m = *impl_;
    std::int64_t i = m.calls.find(hash_string(a.call_id, 0xca11));
    if (i < 0) {
        m.counters.add(Counter::end_unknown_call);
        return;
    }
    auto* e = m.call(i);
    if (!e->ended && !e->answer)
        e->answer = std::max<base::Nanos>(a.now, 1);  // forks: first 200 wins
}

void Engine::on_end(const CallEnded& ev) {
    auto& m = *impl_;
    std::int64_t i = m.calls.find(hash_string(ev.call_id, 0xca11));
    if (i < 0) {
        m.counters.add(Counter::end_unknown_call);
        return;
    }
    auto* e = m.call(i);
    if (e->ended) return;  // already ended (BYE retransmission, CANCEL then 487, ...)
    Ctx c;
    c.kind = EventKind::end;
    c.now = ev.now;
    c.now_s = to_seconds(ev.now);
    c.tenant_hash = e->tenant_hash;
    c.group = e->group;
    c.dest_mask = e->dest_mask;
    c.off_hours = e->off_hours;
    bool counted = e->counted;
    m.release(*e, &c);
    e->ended = std::max<base::Nanos>(ev.now, 1);
    if (!counted) return;
    bool ok = ev.outcome == Outcome::answered;
    c.answered = e->answer != 0 && ok;
    if (c.answered)
        c.short_answered = ev.now - e->answer < static_cast<base::Nanos>(m.cfg.short_call_seconds) *
                                                    base::kNanosPerSecond;
    if (!c.answered) {
        // A caller giving up is not a failure. A short ring (Wangiri) is a caller cancelling
        // within seconds, not a busy callee.
        c.failed = ev.outcome != Outcome::answered && ev.outcome != Outcome::cancelled;
        c.short_ring = ev.outcome == Outcome::cancelled &&
                       ev.now - e->start < static_cast<base::Nanos>(m.cfg.short_ring_seconds) *
                                               base::kNanosPerSecond;
    }
    m.prepare(c);
    m.update(c);
    m.housekeep(ev.now);
}

void Engine::on_auth(const AuthResult& a, Verdict& out) {
    auto& m = *impl_;
    out.reset();
    m.counters.add(Counter::auth_events);
    if (m.source_banned(a.source.addr, a.now, &out.ban_until)) {
        out.action = out.shadow_action = Action::ban;
        out.banned_source = true;
        m.counters.add(Counter::banned_source_drops);
        return;
    }
    Ctx c;
    c.kind = EventKind::auth;
    c.now = a.now;
    c.now_s = to_seconds(a.now);
    m.resolve_keys(c, a.source, a.username, a.tenant, true);
    m.resolve_source(c, a.source, out);
    m.resolve_scanner(c, a.user_agent);
    c.auth_failed = !a.success;
    if (!a.success && !a.username.empty())
        c.username_hash = static_cast<std::uint32_t>(hash_string(a.username, 17));
    m.prepare(c);
    m.update(c);
    m.evaluate(c, out);
    m.finish(c, a.source, out);
    if (m.sink && (out.action != Action::allow || out.shadow_action != Action::allow)) {
        m.sink(to_json(out, a));
        m.counters.add(Counter::events_emitted);
    }
    m.housekeep(a.now);
}

void Engine::on_register(const Registration& r, Verdict& out) {
    auto& m = *impl_;
    out.reset();
    m.counters.add(Counter::register_events);
    if (m.source_banned(r.source.addr, r.now, &out.ban_until)) {
        out.action = out.shadow_action = Action::ban;
        out.banned_source = true;
        m.counters.add(Counter::banned_source_drops);
        return;
    }
    Ctx c;
    c.kind = EventKind::reg;
    c.now = r.now;
    c.now_s = to_seconds(r.now);
    m.resolve_keys(c, r.source, r.user, r.tenant, true);
    m.resolve_source(c, r.source, out);
    if (!r.user.empty())
        c.target_hash = static_cast<std::uint32_t>(hash_string(r.user, kTargetSeed));
    // Wrong credentials or no such user (enumeration).
    if ((r.outcome == Outcome::auth_failure || r.outcome == Outcome::not_found) && !r.user.empty())
        c.username_hash = static_cast<std::uint32_t>(hash_string(r.user, 17));
    m.resolve_scanner(c, r.user_agent);
    m.prepare(c);
    m.update(c);
    m.evaluate(c, out);
    m.finish(c, r.source, out);
    if (m.sink && (out.action != Action::allow || out.shadow_action != Action::allow)) {
        m.sink(to_json(out, r));
        m.counters.add(Counter::events_emitted);
    }
    m.housekeep(r.now);
}

bool Engine::is_banned(const base::IpAddress& a, base::Nanos now) const {
    return impl_->source_banned(a, now, nullptr);
}

void Engine::expire(base::Nanos now, std::size_t budget) {
    impl_->sweep(now, budget);
}

void Engine::set_event_sink(std::function<void(std::string_view)> sink) {
    impl_->sink = std::move(sink);
}

const base::CounterSet<Counter>& Engine::counters() const {
    return impl_->counters;
}

std::size_t Engine::tracked_keys() const {
    std::size_t n = 0;
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        n += impl_->kinds[ki].used ? impl_->key_tables[ki].table.size() : 0;
    return n;
}
std::size_t Engine::tracked_keys(KeyKind k) const {
    auto ki = static_cast<std::size_t>(k);
    return impl_->kinds[ki].used ? impl_->key_tables[ki].table.size() : 0;
}
std::size_t Engine::key_capacity(KeyKind k) const {
    auto ki = static_cast<std::size_t>(k);
    return impl_->kinds[ki].used ? impl_->key_tables[ki].table.capacity() : 0;
}
std::size_t Engine::slot_bytes(KeyKind k) const {
    const auto& kt = impl_->kinds[static_cast<std::size_t>(k)];
    return kt.used ? kt.slot_bytes + kt.cold_bytes : 0;
}
std::size_t Engine::hot_slot_bytes(KeyKind k) const {
    const auto& kt = impl_->kinds[static_cast<std::size_t>(k)];
    return kt.used ? kt.slot_bytes : 0;
}
std::size_t Engine::tracked_calls() const {
    return impl_->calls.size();
}

std::size_t Engine::active_bans(base::Nanos now) const {
    std::size_t n = 0;
    const auto& b = impl_->bans;
    for (std::size_t i = 0; i < b.buckets(); ++i)
        if (b.hash_at(i) != 0 && static_cast<const BanEntry*>(b.slot(i))->until > now) ++n;
    return n;
}

std::size_t Engine::table_bytes() const {
    std::size_t n = impl_->calls.bytes() + impl_->bans.bytes();
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        n += impl_->kinds[ki].used ? impl_->key_tables[ki].table.bytes() : 0;
    return n;
}

std::int64_t Engine::concurrent_calls(KeyKind k, std::string_view value) const {
    auto ki = static_cast<std::size_t>(k);
    if (!impl_->kinds[ki].used) return 0;
    const auto& table = impl_->key_tables[ki].table;
    std::int64_t i = table.find(impl_->key_hash_of(k, value));
    if (i < 0) return 0;
    return static_cast<const KeyHeader*>(table.slot(static_cast<std::size_t>(i)))->concurrent;
}

const EngineConfig& Engine::config() const {
    return impl_->cfg;
}

}  // namespace sbc::fraud
