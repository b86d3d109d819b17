// The fraud scoring engine: per-key state in fixed tables, rules over sliding windows,
// verdicts with their reasons. This file is the public API; engine_impl.hpp says where the
// rest lives.
#include "fraud/engine_impl.hpp"
#include "fraud/eviction.hpp"

namespace sbc::fraud {

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
    // One attempt, the lines it needs fetched before it is scored, as the burst pipeline does
    // for each attempt of a burst: its hash buckets (keys, call, ban) read back to back, then
    // its hot slots, distinct-set cold lines and call entry prefetched and read together. The
    // scoring code reaches those lines one after the other; fetched this way their misses
    // overlap instead of adding up.
    auto& m = *impl_;
    AttemptKeys k;
    m.attempt_keys(a, k);
    std::uint64_t acc = m.load_buckets(k);
    asm volatile("" ::"r"(acc));
    acc = m.fetch_state(k);
    asm volatile("" ::"r"(acc));
    m.attempt(a, k, out);
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
        Ctx c;
        c.kind = invite ? EventKind::invite : EventKind::request;
        c.now = a.now;
        c.now_s = to_seconds(a.now);
        c.direction = a.direction;
        c.target_hash = k.target_hash;
        if (invite) m.resolve_destination(c, k);
        m.count_banned(c, a.source);
        return;
    }
    if (invite && m.bans.size() &&
        ((k.has_key[kCaller] && m.hash_banned(k.key_hash[kCaller], a.now, &out.ban_until)) ||
         (k.has_key[kCallerPrefix] &&
          m.hash_banned(k.key_hash[kCallerPrefix], a.now, &out.ban_until)))) {
        out.action = out.shadow_action = Action::ban;
        out.banned_caller = true;
        m.counters.add(Counter::banned_caller_drops);
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
    c.direction = a.direction;
    m.resolve_keys(c, a.source, a.account, a.tenant, true, &k);
    if (invite) {
        m.resolve_destination(c, k);
        put_country(out.destination_country, c.dest_country);
        m.resolve_caller(c, k);
        put_country(out.caller_country, c.caller_country);
    }
    m.resolve_source(c, a.source, out);
    m.resolve_time(c, a.wall);
    m.resolve_scanner(c, a.user_agent);
    c.target_hash = k.target_hash;
    m.prepare(c);
    m.keep_undo = m.cfg.mode == Mode::enforce;
    m.update(c);
    m.keep_undo = false;
    m.evaluate(c, out);
    m.rollback_blocked(out);
    m.finish(c, a.source, out, a.trusted);
    // A source banned on a call attempt: its earlier authentication failures leave the
    // owner-side keys too.
    if (out.ban_target == BanTarget::source_address || out.ban_target == BanTarget::source_prefix)
        m.retract_source_credits(c.key_hash[kSourceIp], out.ban_target == BanTarget::source_prefix
                                                            ? c.key_hash[kSourcePrefix]
                                                            : 0);

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
            e->direction = static_cast<std::uint8_t>(c.direction);
            e->callback_candidate = 0;
            if (c.direction == Direction::inbound && k.ncaller &&
                ((c.caller_mask & m.callback_mask) || out.action != Action::allow) &&
                (out.action == Action::allow || out.action == Action::flag))
                e->callback_candidate = m.note_callback_candidate(k, a.now);
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
    c.direction = static_cast<Direction>(e->direction);
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
    if (c.short_ring && e->callback_candidate) m.learn_callback(*e, ev.now);
    m.prepare(c);
    m.update(c);
    m.housekeep(ev.now);
}

void Engine::on_auth(const AuthResult& a, Verdict& out) {
    auto& m = *impl_;
    out.reset();
    m.counters.add(Counter::auth_events);
    Ctx c;
    c.kind = EventKind::auth;
    c.now = a.now;
    c.now_s = to_seconds(a.now);
    c.direction = a.direction;
    c.auth_failed = !a.success;
    if (!a.success && !a.username.empty())
        c.username_hash = static_cast<std::uint32_t>(hash_string(a.username, 17));
    if (m.source_banned(a.source.addr, a.now, &out.ban_until)) {
        out.action = out.shadow_action = Action::ban;
        out.banned_source = true;
        m.counters.add(Counter::banned_source_drops);
        m.count_banned(c, a.source);
        return;
    }
    m.resolve_keys(c, a.source, a.username, a.tenant, true, nullptr, a.user_agent);
    m.resolve_source(c, a.source, out);
    m.resolve_scanner(c, a.user_agent);
    m.prepare(c);
    m.keep_undo = m.cfg.mode == Mode::enforce;
    m.credit_mark = m.auth_credit_next;
    m.update(c);
    m.keep_undo = false;
    m.evaluate(c, out);
    m.finish(c, a.source, out, a.trusted);
    m.rollback_auth(c, out);
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
    Ctx c;
    c.kind = EventKind::reg;
    c.now = r.now;
    c.now_s = to_seconds(r.now);
    c.direction = r.direction;
    if (!r.user.empty())
        c.target_hash = static_cast<std::uint32_t>(hash_string(r.user, kTargetSeed));
    // Wrong credentials or no such user (enumeration).
    if ((r.outcome == Outcome::auth_failure || r.outcome == Outcome::not_found) && !r.user.empty())
        c.username_hash = static_cast<std::uint32_t>(hash_string(r.user, 17));
    if (m.source_banned(r.source.addr, r.now, &out.ban_until)) {
        out.action = out.shadow_action = Action::ban;
        out.banned_source = true;
        m.counters.add(Counter::banned_source_drops);
        m.count_banned(c, r.source);
        return;
    }
    m.resolve_keys(c, r.source, r.user, r.tenant, true, nullptr, r.user_agent);
    m.resolve_source(c, r.source, out);
    m.resolve_scanner(c, r.user_agent);
    m.prepare(c);
    m.keep_undo = m.cfg.mode == Mode::enforce;
    m.credit_mark = m.auth_credit_next;
    m.update(c);
    m.keep_undo = false;
    m.evaluate(c, out);
    m.finish(c, r.source, out, r.trusted);
    m.rollback_auth(c, out);
    if (m.sink && (out.action != Action::allow || out.shadow_action != Action::allow)) {
        m.sink(to_json(out, r));
        m.counters.add(Counter::events_emitted);
    }
    m.housekeep(r.now);
}

bool Engine::is_banned(const base::IpAddress& a, base::Nanos now) const {
    return impl_->source_banned(a, now, nullptr);
}

std::uint64_t Engine::on_banned_drops(const base::Prefix& banned, std::uint64_t dropped,
                                      base::Nanos now) {
    auto& m = *impl_;
    if (dropped == 0 || !m.kinds[kSourcePrefix].used || m.bans.size() == 0) return 0;
    const base::IpAddress& a = banned.address();
    const unsigned full = a.is_v4() ? 32 : 128;
    const unsigned plen = a.is_v4() ? m.cfg.source_prefix_v4 : m.cfg.source_prefix_v6;
    std::uint64_t h = 0;
    if (banned.length() == full)
        h = a.hash();
    else if (banned.length() == plen)
        h = mix64(a.hash() ^ (std::uint64_t{plen} << 8) ^ kSalt[kSourcePrefix]);
    else
        return 0;
    std::int64_t i = m.bans.find(h);
    if (i < 0) return 0;  // not the engine's ban (rate limits, `sbc ctl ban`)
    const auto* b = static_cast<const BanEntry*>(m.bans.slot(static_cast<std::size_t>(i)));
    const std::uint64_t n = std::min<std::uint64_t>(dropped, 4096);
    Ctx c;
    c.kind = static_cast<EventKind>(b->kind);
    c.now = now;
    c.now_s = to_seconds(now);
    c.auth_failed = b->auth_failed;
    Source src;
    src.addr = a;
    m.resolve_keys(c, src, {}, {}, true, nullptr, {}, 1u << kSourcePrefix);
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        if (ki != kSourcePrefix) c.slot[ki] = -1;
    if (c.slot[kSourcePrefix] < 0) return 0;
    m.prepare(c);
    for (std::uint64_t k = 0; k < n; ++k) m.update(c);
    m.counters.add(Counter::banned_drops_counted, n);
    m.housekeep(now);
    return n;
}

bool Engine::is_caller_banned(std::string_view caller, base::Nanos now) const {
    CallAttempt a;
    a.caller = caller;
    a.callee = "0";
    AttemptKeys k;
    impl_->attempt_keys(a, k);
    return (k.has_key[kCaller] && impl_->hash_banned(k.key_hash[kCaller], now, nullptr)) ||
           (k.has_key[kCallerPrefix] &&
            impl_->hash_banned(k.key_hash[kCallerPrefix], now, nullptr));
}

std::vector<Engine::LearnedNumber> Engine::learned_callbacks(base::Nanos now) const {
    std::vector<LearnedNumber> out;
    const auto& t = impl_->callbacks;
    for (std::size_t i = 0; i < t.buckets(); ++i) {
        if (t.hash_at(i) == 0) continue;
        auto* e = static_cast<const CallbackEntry*>(t.slot(i));
        if (e->until > now) out.push_back({std::string(e->digits, e->len), e->until});
    }
    std::sort(out.begin(), out.end(),
              [](const LearnedNumber& a, const LearnedNumber& b) { return a.number < b.number; });
    return out;
}

// ---------------------------------------------------------------------------------------------
// Internal helpers of the public API

// An event of a banned source still counts toward its source prefix's windows (and nowhere
// else): a ban does not make the prefix's counts decay while the attack goes on.
void Engine::Impl::count_banned(Ctx& c, const Source& src) {
    if (!kinds[kSourcePrefix].used || src.addr.is_unspecified()) return;
    resolve_keys(c, src, {}, {}, true, nullptr, {}, 1u << kSourcePrefix);
    for (std::size_t ki = 0; ki < kKeyKindCount; ++ki)
        if (ki != kSourcePrefix) c.slot[ki] = -1;
    if (c.slot[kSourcePrefix] < 0) return;
    prepare(c);
    update(c);
    counters.add(Counter::banned_source_counted);
}

// A pending callback entry for an inbound call from a flagged range (learned if it ends as a
// short ring): 1 when there is one.
std::uint8_t Engine::Impl::note_callback_candidate(const AttemptKeys& k, base::Nanos now) {
    std::uint64_t h = k.key_hash[kCaller];
    std::int64_t i = callbacks.find(h);
    if (i < 0) {
        if (callbacks.full()) {
            // Full: the entry that stops being a reason soonest (pending ones first) goes.
            Victim v = sample_victim(callbacks, h, [&](std::size_t b) {
                return Candidate::ranked(
                    static_cast<const CallbackEntry*>(callbacks.slot(b))->until);
            });
            if (v.bucket < 0) return 0;
            callbacks.erase(static_cast<std::size_t>(v.bucket));
        }
        i = static_cast<std::int64_t>(callbacks.insert(h));
        auto* e = static_cast<CallbackEntry*>(callbacks.slot(static_cast<std::size_t>(i)));
        e->until = 0;
        e->len = static_cast<std::uint8_t>(std::min<std::size_t>(k.ncaller, sizeof(e->digits)));
        std::memcpy(e->digits, k.caller, e->len);
    }
    (void)now;
    return 1;
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
