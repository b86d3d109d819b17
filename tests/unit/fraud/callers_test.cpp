// The engine's second round: caller keys and call direction, trusted trunks banned by calling
// number, the callback list, device keys and blocked attempts, prefix bans.
#include <catch2/catch.hpp>
#include <string>

#include "helpers.hpp"

using namespace sbc;
using namespace sbc::fraud;
using namespace sbc::fraud::test;

namespace {

constexpr const char* kTrunk = "198.51.100.7";

EngineConfig inbound_config() {
    EngineConfig cfg = base_config();
    // A one-ring scam range in Jamaica (+1 876) and a flagged range on a high-risk list.
    cfg.prefix_lists.push_back({"jm-scam", Category::high_risk, {"1876555"}});
    cfg.ban_duration = 900 * kSec;
    return cfg;
}

// An inbound call over the carrier trunk from `caller` to one of the company's DIDs.
CallAttempt inbound(const std::string& call_id, const std::string& caller,
                    const std::string& callee, base::Nanos now) {
    CallAttempt a;
    a.now = now;
    a.wall = kFriday + 10 * 3600 * kSec + now;
    a.call_id = call_id;
    a.source.addr = *base::IpAddress::parse(kTrunk);
    a.source.port = 5060;
    a.account = "";
    a.caller = caller;
    a.callee = callee;
    a.user_agent = "carrier-sbc";
    a.direction = Direction::inbound;
    a.trusted = true;
    return a;
}

std::string did(int i) {
    return "3314000" + std::to_string(1000 + i);
}

}  // namespace

TEST_CASE("inbound sweep over a trusted trunk is banned by calling-number prefix, not address") {
    EngineConfig cfg = inbound_config();
    Rule r = rule("wangiri-sweep", Feature::distinct_destinations, KeyKind::caller_prefix, 5, 100);
    r.scope.directions = {Direction::inbound};
    cfg.rules.push_back(r);
    auto e = Engine::create(cfg);
    REQUIRE(e);
    auto& eng = **e;
    Verdict v;
    base::Nanos t = 1000 * kSec;
    for (int i = 0; i < 4; ++i) {
        eng.on_attempt(inbound("w" + std::to_string(i), "1876555000" + std::to_string(i), did(i),
                               t + i * kSec),
                       v);
        CHECK(v.action == Action::allow);
    }
    eng.on_attempt(inbound("w4", "18765550004", did(4), t + 4 * kSec), v);
    REQUIRE(v.action == Action::ban);
    CHECK(v.ban_target == BanTarget::caller_prefix);
    CHECK(std::string(v.caller_country.data()) == "JM");
    // The trunk carries every customer: it is never banned by address.
    CHECK_FALSE(eng.is_banned(*base::IpAddress::parse(kTrunk), t + 5 * kSec));
    CHECK(eng.is_caller_banned("+1 876 555 0999", t + 5 * kSec));
    eng.on_attempt(inbound("w5", "18765550999", did(5), t + 5 * kSec), v);
    CHECK(v.action == Action::ban);
    CHECK(v.banned_caller);
    // A customer calling in over the same trunk gets through.
    eng.on_attempt(inbound("c1", "33612345678", did(6), t + 6 * kSec), v);
    CHECK(v.action == Action::allow);
    CHECK_FALSE(v.banned_source);
}

TEST_CASE("a trusted trunk with no calling number is blocked, never banned by address") {
    EngineConfig cfg = inbound_config();
    cfg.rules.push_back(rule("trunk-rate", Feature::attempts, KeyKind::source_ip, 3, 100));
    auto e = Engine::create(cfg);
    REQUIRE(e);
    Verdict v;
    for (int i = 0; i < 3; ++i)
        (*e)->on_attempt(inbound("n" + std::to_string(i), "", did(i), kSec * (i + 1)), v);
    CHECK(v.action == Action::block);
    CHECK(v.ban_target == BanTarget::none);
    CHECK_FALSE((*e)->is_banned(*base::IpAddress::parse(kTrunk), 5 * kSec));
}

TEST_CASE("rules scoped on a direction ignore calls going the other way") {
    EngineConfig cfg = inbound_config();
    Rule r = rule("inbound-rate", Feature::attempts, KeyKind::caller, 3, 70);
    r.scope.directions = {Direction::inbound};
    cfg.rules.push_back(r);
    auto e = Engine::create(cfg);
    REQUIRE(e);
    Verdict v;
    for (int i = 0; i < 5; ++i) {
        CallAttempt a = inbound("o" + std::to_string(i), "33612345678", did(i), kSec * (i + 1));
        a.direction = Direction::outbound;
        (*e)->on_attempt(a, v);
        CHECK(v.action == Action::allow);
    }
    for (int i = 0; i < 3; ++i)
        (*e)->on_attempt(inbound("i" + std::to_string(i), "33612345678", did(i), kSec * (10 + i)),
                         v);
    CHECK(v.action == Action::block);
    // Unknown direction matches no directed scope.
    CallAttempt a = inbound("u", "33612345678", did(9), 20 * kSec);
    a.direction = Direction::unknown;
    (*e)->on_attempt(a, v);
    CHECK(v.action == Action::allow);
}

TEST_CASE("short rings of a caller range are read on the next INVITE from that range") {
    EngineConfig cfg = inbound_config();
    cfg.rules.push_back(rule("one-ring", Feature::short_rings, KeyKind::caller_prefix, 3, 70));
    auto e = Engine::create(cfg);
    REQUIRE(e);
    Verdict v;
    base::Nanos t = 100 * kSec;
    for (int i = 0; i < 3; ++i) {
        std::string id = "r" + std::to_string(i);
        (*e)->on_attempt(inbound(id, "1876555010" + std::to_string(i), did(i), t), v);
        CHECK(v.action == Action::allow);
        (*e)->on_end({t + 2 * kSec, kFriday, id, Outcome::cancelled});
        t += 10 * kSec;
    }
    (*e)->on_attempt(inbound("r9", "18765550199", did(9), t), v);
    CHECK(v.action == Action::block);
    REQUIRE(v.reason_count == 1);
    CHECK(v.reasons[0].key == KeyKind::caller_prefix);
    // Another range is not touched.
    (*e)->on_attempt(inbound("r10", "4420795000", did(10), t), v);
    CHECK(v.action == Action::allow);
}

TEST_CASE("an agent calling back a number that rang once from a flagged range is stopped") {
    EngineConfig cfg = inbound_config();
    cfg.callback_expiry = 3600 * kSec;
    cfg.rules.push_back(rule("callback", Feature::callback_short_ring, KeyKind::account, 1, 70));
    auto e = Engine::create(cfg);
    REQUIRE(e);
    auto& eng = **e;
    Verdict v;
    base::Nanos t = 50 * kSec;
    // Rang once from the flagged range: learned at the end of the call.
    eng.on_attempt(inbound("in1", "18765550042", did(1), t), v);
    eng.on_end({t + kSec, kFriday, "in1", Outcome::cancelled});
    // Rang long (a real caller who gave up): not learned.
    eng.on_attempt(inbound("in2", "18765550043", did(2), t), v);
    eng.on_end({t + 30 * kSec, kFriday, "in2", Outcome::cancelled});
    // Rang once from an unflagged range: not learned.
    eng.on_attempt(inbound("in3", "4420795000", did(3), t), v);
    eng.on_end({t + kSec, kFriday, "in3", Outcome::cancelled});
    auto learned = eng.learned_callbacks(t + 40 * kSec);
    REQUIRE(learned.size() == 1);
    CHECK(learned[0].number == "18765550042");
    CHECK(learned[0].until == t + kSec + cfg.callback_expiry);

    Call agent;
    agent.call_id = "cb1";
    agent.callee = "+1 876 555 0042";
    CallAttempt a = attempt(agent, t + 60 * kSec);
    a.direction = Direction::outbound;
    eng.on_attempt(a, v);
    CHECK(v.action == Action::block);
    agent.call_id = "cb2";
    agent.callee = "18765550043";
    eng.on_attempt(attempt(agent, t + 61 * kSec), v);
    CHECK(v.action == Action::allow);
    agent.call_id = "cb3";
    agent.callee = "4420795000";
    eng.on_attempt(attempt(agent, t + 62 * kSec), v);
    CHECK(v.action == Action::allow);
    // The entry expires.
    agent.call_id = "cb4";
    agent.callee = "18765550042";
    eng.on_attempt(attempt(agent, t + 2 * kSec + cfg.callback_expiry), v);
    CHECK(v.action == Action::allow);
    CHECK(eng.learned_callbacks(t + 2 * kSec + cfg.callback_expiry).empty());
}

TEST_CASE("deny rules on calling-number lists and countries") {
    EngineConfig cfg = inbound_config();
    DenyRule d;
    d.id = "deny-scam-callers";
    d.callers = "jm-scam";
    cfg.deny.push_back(d);
    DenyRule d2;
    d2.id = "deny-cu-callers";
    d2.caller_countries = {"CU"};
    cfg.deny.push_back(d2);
    auto e = Engine::create(cfg);
    REQUIRE(e);
    Verdict v;
    (*e)->on_attempt(inbound("d1", "18765550001", did(1), kSec), v);
    CHECK(v.action == Action::block);
    (*e)->on_attempt(inbound("d2", "5371234567", did(2), 2 * kSec), v);
    CHECK(v.action == Action::block);
    (*e)->on_attempt(inbound("d3", "18765660001", did(3), 3 * kSec), v);
    CHECK(v.action == Action::allow);
    CHECK(std::string(v.caller_country.data()) == "JM");
}

namespace {

// A compromised account: the attacker's device next to the owner's, behind the same NAT.
EngineConfig device_config(bool account_counts_blocked) {
    EngineConfig cfg = base_config();
    cfg.ban_threshold = 1000;  // block only: the NAT address is the owner's too
    cfg.rules.push_back(
        rule("device-sweep", Feature::distinct_destinations, KeyKind::device, 5, 70));
    Rule acct = rule("account-rate", Feature::attempts, KeyKind::account, 20, 70);
    acct.count_blocked = account_counts_blocked;
    cfg.rules.push_back(acct);
    return cfg;
}

void attack(Engine& eng, int n) {
    Verdict v;
    for (int i = 0; i < n; ++i) {
        Call c;
        c.call_id = "x" + std::to_string(i);
        c.ua = "Zoiper 5";
        c.callee = "44909" + std::to_string(100000 + i);
        CallAttempt a = attempt(c, (10 + i) * kSec);
        a.source.port = 40000;
        eng.on_attempt(a, v);
        CHECK(v.action == (i < 4 ? Action::allow : Action::block));
        if (i >= 4) CHECK(v.reasons[0].key == KeyKind::device);
    }
}

}  // namespace

TEST_CASE("a misbehaving device is stopped without locking its account's owner") {
    auto e = Engine::create(device_config(false));
    REQUIRE(e);
    attack(**e, 30);
    CHECK((*e)->counters()[Counter::blocked_not_counted] == 26);
    // The owner's phone, same account and NAT address, keeps working.
    Verdict v;
    for (int i = 0; i < 3; ++i) {
        Call owner;
        owner.call_id = "own" + std::to_string(i);
        owner.callee = "3361234567" + std::to_string(i);
        (*e)->on_attempt(attempt(owner, (50 + i) * kSec), v);
        CHECK(v.action == Action::allow);
    }
}

TEST_CASE("count_blocked: a rule that counts blocked attempts sees the attacker's") {
    auto e = Engine::create(device_config(true));
    REQUIRE(e);
    attack(**e, 30);
    Verdict v;
    Call owner;
    owner.call_id = "own";
    (*e)->on_attempt(attempt(owner, 50 * kSec), v);
    CHECK(v.action == Action::block);
    REQUIRE(v.reason_count >= 1);
    CHECK(v.reasons[0].rule_id == "account-rate");
}

TEST_CASE("a rule keyed on the source prefix bans the prefix, and banned sources keep counting") {
    EngineConfig cfg = base_config();
    cfg.ban_duration = 900 * kSec;
    cfg.rules.push_back(
        rule("prefix-brute", Feature::auth_failures, KeyKind::source_prefix, 20, 100, 600 * kSec));
    auto e = Engine::create(cfg);
    REQUIRE(e);
    auto& eng = **e;
    Verdict v;
    base::Nanos t = 100 * kSec;
    int host = 1;
    auto next_src = [&] { return "192.0.2." + std::to_string(host++); };
    for (int i = 0; i < 19; ++i) {
        eng.on_auth(auth(next_src(), "100", false, t), v);
        CHECK(v.action == Action::allow);
        t += kSec;
    }
    eng.on_auth(auth(next_src(), "100", false, t), v);
    REQUIRE(v.action == Action::ban);
    CHECK(v.ban_target == BanTarget::source_prefix);
    CHECK(v.ban_prefix_length == 24);
    const base::Nanos banned_at = t;
    CHECK(eng.is_banned(*base::IpAddress::parse("192.0.2.250"), t + kSec));
    CHECK_FALSE(eng.is_banned(*base::IpAddress::parse("192.0.3.1"), t + kSec));
    // The attack goes on through the ban, from new addresses of the prefix, every 20 s.
    for (t += 20 * kSec; t < banned_at + 900 * kSec; t += 20 * kSec) {
        eng.on_auth(auth(next_src(), "100", false, t), v);
        CHECK(v.banned_source);
    }
    CHECK(eng.counters()[Counter::banned_source_counted] >= 40);
    // The ban lapses; the prefix's window still holds the attack, so the next attempt is
    // banned at once instead of re-arming from zero.
    t = banned_at + 901 * kSec;
    CHECK_FALSE(eng.is_banned(*base::IpAddress::parse("192.0.2.9"), t));
    eng.on_auth(auth("192.0.2.9", "100", false, t), v);
    CHECK(v.action == Action::ban);
    CHECK(v.ban_target == BanTarget::source_prefix);
}

namespace {

// An account rule (the window its owner is judged by) under a stricter source rule.
EngineConfig auth_config(double source_weight, bool count_blocked = false) {
    EngineConfig cfg = base_config();
    cfg.ban_duration = 900 * kSec;
    auto account =
        rule("brute-force-account", Feature::auth_failures, KeyKind::account, 5, 60, 120 * kSec);
    account.count_blocked = count_blocked;
    cfg.rules.push_back(account);
    cfg.rules.push_back(rule("brute-force", Feature::auth_failures, KeyKind::source_ip, 4,
                             source_weight, 300 * kSec));
    return cfg;
}

// Four wrong passwords for 1001 from outside, one every 2 s; returns the last verdict.
Verdict guess(Engine& e, base::Nanos& t, const std::string& src = "203.0.113.9") {
    Verdict v;
    for (int i = 0; i < 4; ++i) {
        e.on_auth(auth(src, "1001", false, t, "friendly"), v);
        t += 2 * kSec;
    }
    return v;
}

// The owner, from the office: mistypes twice, then logs in.
void owner_mistypes_twice(Engine& e, base::Nanos t, Action expected) {
    Verdict v;
    e.on_auth(auth("192.0.2.10", "1001", false, t, "Yealink SIP-T46S"), v);
    CHECK(v.action == expected);
    e.on_auth(auth("192.0.2.10", "1001", false, t + kSec, "Yealink SIP-T46S"), v);
    CHECK(v.action == expected);
    e.on_auth(auth("192.0.2.10", "1001", true, t + 2 * kSec, "Yealink SIP-T46S"), v);
    CHECK(v.action == expected);
}

}  // namespace

TEST_CASE("a banned guesser's authentication failures leave the account its owner is judged by") {
    auto e = Engine::create(auth_config(100));
    REQUIRE(e);
    base::Nanos t = 10 * kSec;
    Verdict v = guess(**e, t);
    REQUIRE(v.action == Action::ban);
    CHECK(v.ban_target == BanTarget::source_address);
    CHECK((*e)->counters()[Counter::source_failures_retracted] == 1);
    // The account's window holds none of the attacker's four failures: the owner's two typos
    // are two, under the account rule's 5.
    owner_mistypes_twice(**e, t, Action::allow);
    // Still counted toward the source: its next try is refused as a banned source.
    (*e)->on_auth(auth("203.0.113.9", "1001", false, t + 5 * kSec), v);
    CHECK(v.banned_source);
}

TEST_CASE("a guesser blocked by a source rule (no ban) leaves the account too") {
    auto e = Engine::create(auth_config(60));
    REQUIRE(e);
    base::Nanos t = 10 * kSec;
    Verdict v = guess(**e, t);
    REQUIRE(v.action == Action::block);
    // It goes on, blocked each time; none of it reaches the account.
    for (int i = 0; i < 6; ++i) {
        (*e)->on_auth(auth("203.0.113.9", "1001", false, t, "friendly"), v);
        CHECK(v.action == Action::block);
        CHECK(v.reasons[0].rule_id == "brute-force");
        t += kSec;
    }
    owner_mistypes_twice(**e, t, Action::allow);
}

TEST_CASE("count_blocked on the account rule keeps a banned guesser's failures") {
    auto e = Engine::create(auth_config(100, true));
    REQUIRE(e);
    base::Nanos t = 10 * kSec;
    REQUIRE(guess(**e, t).action == Action::ban);
    CHECK((*e)->counters()[Counter::source_failures_retracted] == 0);
    // 4 + the owner's first typo: the account rule blocks the owner (the other side of the
    // trade-off).
    Verdict v;
    (*e)->on_auth(auth("192.0.2.10", "1001", false, t, "Yealink SIP-T46S"), v);
    CHECK(v.action == Action::block);
}

TEST_CASE("failures spread over sources no source rule stops still count toward the account") {
    auto e = Engine::create(auth_config(100));
    REQUIRE(e);
    base::Nanos t = 10 * kSec;
    Verdict v;
    for (int i = 0; i < 5; ++i) {
        (*e)->on_auth(auth("203.0.113." + std::to_string(10 + i), "1001", false, t), v);
        t += kSec;
    }
    CHECK(v.action == Action::block);
    REQUIRE(v.reason_count >= 1);
    CHECK(v.reasons[0].rule_id == "brute-force-account");
}

TEST_CASE("observe mode takes nothing back from the account") {
    EngineConfig cfg = auth_config(100);
    cfg.mode = Mode::observe;
    auto e = Engine::create(cfg);
    REQUIRE(e);
    base::Nanos t = 10 * kSec;
    Verdict v = guess(**e, t);
    CHECK(v.shadow_action == Action::ban);
    (*e)->on_auth(auth("192.0.2.10", "1001", false, t, "Yealink SIP-T46S"), v);
    CHECK(v.shadow_action == Action::block);
}

TEST_CASE("the fast path's drop counts of a prefix ban keep the prefix's windows from decaying") {
    EngineConfig cfg = base_config();
    cfg.ban_duration = 60 * kSec;
    cfg.rules.push_back(
        rule("prefix-brute", Feature::auth_failures, KeyKind::source_prefix, 20, 100, 30 * kSec));
    const auto prefix = *base::Prefix::parse("192.0.2.0/24");
    for (bool fed : {false, true}) {
        auto e = Engine::create(cfg);
        REQUIRE(e);
        auto& eng = **e;
        Verdict v;
        base::Nanos t = 100 * kSec;
        for (int i = 1; i <= 20; ++i) {
            eng.on_auth(auth("192.0.2." + std::to_string(i), "100", false, t), v);
            t += kSec;
        }
        REQUIRE(v.action == Action::ban);
        REQUIRE(v.ban_target == BanTarget::source_prefix);
        const base::Nanos lapse = v.ban_until;
        // The attack goes on; the dataplane drops it and reports 10 drops every 5 s.
        std::uint64_t counted = 0;
        for (t += 5 * kSec; t < lapse; t += 5 * kSec)
            if (fed) counted += eng.on_banned_drops(prefix, 10, t);
        CHECK(counted == (fed ? 110u : 0u));
        CHECK(eng.counters()[Counter::banned_drops_counted] == counted);
        // After the ban, a minute after the last failure the engine saw: without the drops the
        // window is empty and the rule has re-armed; with them it still holds the attack.
        t = lapse + kSec;
        eng.on_auth(auth("192.0.2.77", "100", false, t), v);
        CHECK(v.action == (fed ? Action::ban : Action::allow));
    }
}

TEST_CASE("drops of a ban the engine did not issue count nothing") {
    EngineConfig cfg = base_config();
    cfg.rules.push_back(
        rule("prefix-brute", Feature::auth_failures, KeyKind::source_prefix, 20, 100, 120 * kSec));
    auto e = Engine::create(cfg);
    REQUIRE(e);
    CHECK((*e)->on_banned_drops(*base::Prefix::parse("192.0.2.0/24"), 50, kSec) == 0);
    CHECK((*e)->on_banned_drops(*base::Prefix::parse("192.0.2.9/32"), 50, kSec) == 0);
    CHECK((*e)->on_banned_drops(*base::Prefix::parse("192.0.2.0/25"), 50, kSec) == 0);
}

TEST_CASE("authentication and registration events are counted only in their direction's scopes") {
    EngineConfig cfg = base_config();
    auto internal = rule("internal-typos", Feature::auth_failures, KeyKind::account, 3, 60);
    internal.scope.directions = {Direction::internal};
    cfg.rules.push_back(internal);
    auto outside = rule("outside-sweep", Feature::distinct_usernames, KeyKind::source_ip, 3, 60);
    outside.scope.directions = {Direction::outbound};
    cfg.rules.push_back(outside);
    auto e = Engine::create(cfg);
    REQUIRE(e);
    Verdict v;
    base::Nanos t = kSec;
    // Failures of another direction count nowhere.
    for (int i = 0; i < 5; ++i) {
        AuthResult a = auth("203.0.113.5", "1001", false, t += kSec);
        a.direction = Direction::outbound;
        (*e)->on_auth(a, v);
        CHECK(v.action == Action::allow);
        Registration r =
            registration("203.0.113.5", "u" + std::to_string(i), Outcome::not_found, t += kSec);
        r.direction = Direction::internal;
        (*e)->on_register(r, v);
        CHECK(v.action == Action::allow);
    }
    // An unknown direction matches no directed scope.
    (*e)->on_auth(auth("203.0.113.5", "1001", false, t += kSec), v);
    CHECK(v.action == Action::allow);
    for (int i = 0; i < 3; ++i) {
        AuthResult a = auth("10.0.0.5", "1001", false, t += kSec);
        a.direction = Direction::internal;
        (*e)->on_auth(a, v);
    }
    CHECK(v.action == Action::block);
    CHECK(v.reasons[0].rule_id == "internal-typos");
    for (int i = 0; i < 3; ++i) {
        Registration r =
            registration("203.0.113.6", "w" + std::to_string(i), Outcome::not_found, t += kSec);
        r.direction = Direction::outbound;
        (*e)->on_register(r, v);
    }
    CHECK(v.action == Action::block);
    CHECK(v.reasons[0].rule_id == "outside-sweep");
}
