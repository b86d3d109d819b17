#include <catch2/catch.hpp>
#include <optional>

#include "fraud/fraud.hpp"
#include "helpers.hpp"

using namespace sbc::fraud;
using namespace sbc::fraud::test;
using sbc::base::IpAddress;

namespace {

std::unique_ptr<Engine> make(EngineConfig c) {
    auto e = Engine::create(std::move(c));
    REQUIRE(e.ok());
    return std::move(*e);
}

const Reason* find_reason(const Verdict& v, std::string_view id) {
    for (std::size_t i = 0; i < v.reason_count; ++i)
        if (v.reasons[i].rule_id == id) return &v.reasons[i];
    return nullptr;
}

Verdict run(Engine& e, const Call& c, sbc::base::Nanos now) {
    Verdict v;
    e.on_attempt(attempt(c, now), v);
    return v;
}

}  // namespace

TEST_CASE("high-risk attempts fire a scored rule with its reasons", "[fraud][engine]") {
    auto cfg = base_config();
    cfg.rules.push_back(rule("irsf-burst", Feature::high_risk_attempts, KeyKind::account, 3, 70));
    auto e = make(cfg);
    Call c;
    c.callee = "+882 1600 1";
    for (int i = 0; i < 2; ++i) {
        c.call_id = "c" + std::to_string(i);
        CHECK(run(*e, c, i * kSec).action == Action::allow);
    }
    c.call_id = "c2";
    auto v = run(*e, c, 2 * kSec);
    CHECK(v.action == Action::block);
    CHECK(v.score == 70);
    const Reason* r = find_reason(v, "irsf-burst");
    REQUIRE(r);
    CHECK(r->value == Approx(3));
    CHECK(r->threshold == 3);
    CHECK(r->weight == 70);
    CHECK(r->key == KeyKind::account);
    CHECK(std::string(v.destination_country.data()) == "XN");
    // A domestic call of the same account does not add to the count, but the account keeps
    // its score while the evidence is in the window.
    c.callee = "33612345678";
    c.call_id = "d1";
    auto d = run(*e, c, 3 * kSec);
    REQUIRE(find_reason(d, "irsf-burst"));
    CHECK(find_reason(d, "irsf-burst")->value == Approx(3));
}

TEST_CASE("thresholds map the capped score to flag, block and ban", "[fraud][engine]") {
    auto cfg = base_config();
    cfg.rules.push_back(rule("a", Feature::attempts, KeyKind::account, 2, 35));
    cfg.rules.push_back(rule("b", Feature::attempts, KeyKind::account, 3, 35));
    cfg.rules.push_back(rule("c", Feature::attempts, KeyKind::account, 4, 500));
    auto e = make(cfg);
    Call c;
    c.call_id = "1";
    CHECK(run(*e, c, 0).action == Action::allow);
    c.call_id = "2";
    CHECK(run(*e, c, kSec).action == Action::flag);
    c.call_id = "3";
    CHECK(run(*e, c, 2 * kSec).action == Action::block);
    c.call_id = "4";
    auto v = run(*e, c, 3 * kSec);
    CHECK(v.action == Action::ban);
    CHECK(v.score == 100);  // capped
    CHECK(v.ban_until == 3 * kSec + cfg.ban_duration);
    CHECK(e->is_banned(*IpAddress::parse(c.src), 4 * kSec));
    CHECK_FALSE(e->is_banned(*IpAddress::parse(c.src), 3 * kSec + cfg.ban_duration));
    // A banned source is dropped without evaluation.
    c.call_id = "5";
    auto b = run(*e, c, 5 * kSec);
    CHECK(b.banned_source);
    CHECK(b.action == Action::ban);
    CHECK(e->counters()[Counter::banned_source_drops] == 1);
}

TEST_CASE("deny rules block outright whatever the score", "[fraud][engine]") {
    auto cfg = base_config();
    cfg.deny.push_back({"deny-irsf", "irsf", {}, {}, false, {}, {}});
    cfg.deny.push_back({"deny-kp", "", {"KP"}, {}, true, {}, {}});
    cfg.deny.push_back({"deny-src-ng", "", {}, {"NG"}, false, {}, {}});
    auto e = make(cfg);
    Call c;
    c.call_id = "1";
    c.callee = "8821234";
    auto v = run(*e, c, 0);
    CHECK(v.action == Action::block);
    REQUIRE(find_reason(v, "deny-irsf"));
    CHECK(find_reason(v, "deny-irsf")->hard);
    c.call_id = "2";
    c.callee = "850123456";
    CHECK(run(*e, c, kSec).action == Action::ban);
    c = Call{};
    c.call_id = "3";
    c.src = "192.0.2.99";
    c.country = "NG";
    CHECK(run(*e, c, 2 * kSec).action == Action::block);
    c.call_id = "4";
    c.country = "FR";
    CHECK(run(*e, c, 3 * kSec).action == Action::allow);
}

TEST_CASE("a retransmitted or forked INVITE is counted once", "[fraud][engine][failure-mode]") {
    auto cfg = base_config();
    cfg.rules.push_back(rule("attempts", Feature::attempts, KeyKind::account, 2, 70));
    auto e = make(cfg);
    Call c;
    c.call_id = "same@host";
    for (int i = 0; i < 5; ++i) {
        auto v = run(*e, c, i * kSec / 2);
        CHECK(v.action == Action::allow);
        CHECK(v.duplicate == (i > 0));
    }
    CHECK(e->counters()[Counter::duplicate_attempts] == 4);
    CHECK(e->concurrent_calls(KeyKind::account, "1001") == 1);
    c.call_id = "other@host";
    CHECK(run(*e, c, 3 * kSec).action == Action::block);  // the second real call
}

TEST_CASE("concurrent calls are released on every terminal state, exactly once",
          "[fraud][engine][failure-mode]") {
    auto cfg = base_config();
    cfg.rules.push_back(
        rule("conc", Feature::concurrent_calls, KeyKind::account, 100, 70, 0, Op::gt));
    auto e = make(cfg);
    Call c;
    const Outcome outcomes[] = {Outcome::answered, Outcome::busy,   Outcome::cancelled,
                                Outcome::timeout,  Outcome::failed, Outcome::rejected};
    for (int i = 0; i < 6; ++i) {
        c.call_id = "c" + std::to_string(i);
        run(*e, c, i * kSec);
        if (outcomes[i] == Outcome::answered) e->on_answer({i * kSec + kSec / 2, 0, c.call_id});
    }
    CHECK(e->concurrent_calls(KeyKind::account, "1001") == 6);
    CHECK(e->concurrent_calls(KeyKind::source_ip, "192.0.2.10") == 0);  // kind not tracked
    for (int i = 0; i < 6; ++i) {
        CallEnded end{100 * kSec, 0, "", outcomes[i]};
        std::string id = "c" + std::to_string(i);
        end.call_id = id;
        e->on_end(end);
        e->on_end(end);  // a retransmitted BYE / second final answer
        CHECK(e->concurrent_calls(KeyKind::account, "1001") == 5 - i);
    }
    // An end for a call never seen must not drive the counter below zero.
    e->on_end({101 * kSec, 0, "ghost", Outcome::answered});
    CHECK(e->concurrent_calls(KeyKind::account, "1001") == 0);
    CHECK(e->counters()[Counter::concurrent_underflow] == 0);
    CHECK(e->counters()[Counter::end_unknown_call] == 1);
}

TEST_CASE("a blocked call never holds a concurrent slot", "[fraud][engine][failure-mode]") {
    auto cfg = base_config();
    cfg.rules.push_back(
        rule("conc", Feature::concurrent_calls, KeyKind::account, 3, 70, 0, Op::ge));
    auto e = make(cfg);
    Call c;
    for (int i = 0; i < 10; ++i) {
        c.call_id = "c" + std::to_string(i);
        auto v = run(*e, c, i * kSec);
        CHECK(v.action == (i < 2 ? Action::allow : Action::block));
    }
    CHECK(e->concurrent_calls(KeyKind::account, "1001") == 2);
}

TEST_CASE("a full call table releases the counters of the calls it evicts",
          "[fraud][engine][failure-mode]") {
    auto cfg = base_config();
    cfg.max_tracked_calls = 64;
    cfg.rules.push_back(rule("conc", Feature::concurrent_calls, KeyKind::account, 1000, 1));
    auto e = make(cfg);
    Call c;
    for (int i = 0; i < 1000; ++i) {
        c.call_id = "c" + std::to_string(i);
        run(*e, c, i * kSec / 100);
    }
    CHECK(e->tracked_calls() <= 64);
    CHECK(e->concurrent_calls(KeyKind::account, "1001") ==
          static_cast<std::int64_t>(e->tracked_calls()));
    CHECK(e->counters()[Counter::calls_evicted] == 1000 - e->tracked_calls());
}

TEST_CASE("calls that never end are released after max_call_duration",
          "[fraud][engine][failure-mode]") {
    auto cfg = base_config();
    cfg.max_call_duration = 3600 * kSec;
    cfg.rules.push_back(rule("conc", Feature::concurrent_calls, KeyKind::account, 1000, 1));
    auto e = make(cfg);
    Call c;
    c.call_id = "lost";
    run(*e, c, 0);
    CHECK(e->concurrent_calls(KeyKind::account, "1001") == 1);
    e->expire(3601 * kSec, 1 << 20);
    CHECK(e->concurrent_calls(KeyKind::account, "1001") == 0);
    CHECK(e->counters()[Counter::calls_expired] == 1);
}

TEST_CASE("key memory is bounded; a flood of new keys does not evict keys with evidence",
          "[fraud][engine][failure-mode]") {
    auto cfg = base_config();
    cfg.max_tracked_keys = 256;
    cfg.rules.push_back(rule("per-src", Feature::attempts, KeyKind::source_ip, 3, 20, 3600 * kSec));
    auto e = make(cfg);
    std::size_t bytes = e->table_bytes();
    Call attacker;
    attacker.src = "203.0.113.66";
    for (int i = 0; i < 3; ++i) {
        attacker.call_id = "a" + std::to_string(i);
        run(*e, attacker, i * kSec);
    }
    // 100,000 one-shot sources (spoofed or a botnet) arrive.
    Call flood;
    for (int i = 0; i < 100000; ++i) {
        flood.src = "10." + std::to_string((i >> 16) & 255) + "." + std::to_string((i >> 8) & 255) +
                    "." + std::to_string(i & 255);
        flood.call_id = "f" + std::to_string(i);
        run(*e, flood, 10 * kSec + i * 1000);
        REQUIRE(e->tracked_keys() <= 256);
    }
    CHECK(e->table_bytes() == bytes);
    CHECK(e->counters()[Counter::keys_evicted] > 0);
    // The attacker's history survived: the fourth attempt still sees 4 in the window.
    attacker.call_id = "a3";
    auto v = run(*e, attacker, 20 * kSec);
    REQUIRE(find_reason(v, "per-src"));
    CHECK(find_reason(v, "per-src")->value == Approx(4));
}

// An engine whose keys expire after 600 s, with 500 sources and 500 accounts that each made
// one call in the first 50 s (1000 tracked keys).
static std::unique_ptr<Engine> engine_with_500_idle_callers() {
    auto cfg = base_config();
    cfg.idle_key_expiry = 600 * kSec;
    cfg.rules.push_back(rule("per-src", Feature::attempts, KeyKind::source_ip, 3, 20));
    cfg.rules.push_back(rule("per-acct", Feature::attempts, KeyKind::account, 3, 20));
    auto e = make(cfg);
    Call c;
    for (int i = 0; i < 500; ++i) {
        c.src = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250);
        c.account = "u" + std::to_string(i);
        c.call_id = "c" + std::to_string(i);
        run(*e, c, i * kSec / 10);
        e->on_end({i * kSec / 10 + kSec, 0, c.call_id, Outcome::busy});
    }
    return e;
}

TEST_CASE("idle keys are freed", "[fraud][engine][failure-mode]") {
    auto e = engine_with_500_idle_callers();
    CHECK(e->tracked_keys() == 1000);
    e->expire(700 * kSec, 1 << 20);
    CHECK(e->tracked_keys() == 0);
    CHECK(e->counters()[Counter::keys_expired] == 1000);
}

TEST_CASE("events alone free idle keys and ended calls, paced by time not by event count",
          "[fraud][engine][failure-mode]") {
    auto e = engine_with_500_idle_callers();
    CHECK(e->tracked_keys() == 1000);
    CHECK(e->tracked_calls() > 400);  // a few ended more than 32 s ago are already swept
    Call c;
    // One source and account keep calling, once every 10 s: the sweep walks each table once
    // per idle_key_expiry/4 (ended calls once per 64 s) however few events come.
    c.src = "192.0.2.1";
    c.account = "steady";
    sbc::base::Nanos t = 60 * kSec;
    for (int i = 0; t < 1500 * kSec; ++i, t += 10 * kSec) {
        c.call_id = "s" + std::to_string(i);
        run(*e, c, t);
        e->on_end({t + kSec, 0, c.call_id, Outcome::answered});
    }
    CHECK(e->tracked_keys() == 2);  // the steady source and account
    CHECK(e->counters()[Counter::keys_expired] == 1000);
    CHECK(e->tracked_calls() < 20);  // only the last ~96 s of ended calls are remembered
}

TEST_CASE("windows do not reset at a day boundary (no 2x burst at midnight)",
          "[fraud][engine][failure-mode]") {
    auto cfg = base_config();
    cfg.rules.push_back(rule("hourly", Feature::attempts, KeyKind::account, 10, 70, 3600 * kSec));
    auto e = make(cfg);
    Call c;
    const sbc::base::Nanos midnight = 86400 * kSec;  // monotonic and wall both at a day edge
    int n = 0;
    Action last = Action::allow;
    for (int i = 0; i < 9; ++i, ++n) {
        c.call_id = "a" + std::to_string(n);
        Verdict v;
        e->on_attempt(attempt(c, midnight - 60 * kSec + i * kSec, kFriday - 60 * kSec + i * kSec),
                      v);
        last = v.action;
    }
    CHECK(last == Action::allow);
    c.call_id = "after-midnight";
    Verdict v;
    e->on_attempt(attempt(c, midnight + 30 * kSec, kFriday + 30 * kSec), v);
    CHECK(v.action == Action::block);
}

TEST_CASE("observe mode records what a rule would do without acting", "[fraud][engine][observe]") {
    auto cfg = base_config();
    auto r = rule("new-rule", Feature::attempts, KeyKind::account, 1, 70);
    r.mode = Mode::observe;
    cfg.rules.push_back(r);
    cfg.rules.push_back(rule("old-rule", Feature::attempts, KeyKind::account, 1, 10));
    auto e = make(cfg);
    std::vector<std::string> lines;
    e->set_event_sink([&](std::string_view l) { lines.emplace_back(l); });
    Call c;
    c.call_id = "1";
    auto v = run(*e, c, 0);
    CHECK(v.action == Action::allow);
    CHECK(v.shadow_action == Action::block);
    CHECK(v.score == 10);
    CHECK(v.shadow_score == 80);
    REQUIRE(find_reason(v, "new-rule"));
    CHECK(find_reason(v, "new-rule")->observe);
    CHECK_FALSE(find_reason(v, "old-rule")->observe);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("\"shadow_action\":\"block\"") != std::string::npos);
    CHECK(e->counters()[Counter::shadow_non_allow] == 1);

    auto whole = base_config();
    whole.mode = Mode::observe;
    whole.rules.push_back(rule("r", Feature::attempts, KeyKind::account, 1, 100));
    whole.deny.push_back({"deny-irsf", "irsf", {}, {}, true, {}, {}});
    auto e2 = make(whole);
    c.callee = "88299";
    auto w = run(*e2, c, 0);
    CHECK(w.action == Action::allow);
    CHECK(w.shadow_action == Action::ban);
    CHECK_FALSE(e2->is_banned(*IpAddress::parse(c.src), kSec));
}

TEST_CASE("business hours follow the account group's time zone", "[fraud][engine][tz]") {
    auto cfg = base_config();
    AccountGroup g;
    g.name = "agents";
    g.account_patterns = {"10*"};
    g.timezone = "Europe/Paris";
    g.business_hours = {{0x1f, 8 * 60, 19 * 60}};
    cfg.account_groups.push_back(g);
    auto r = rule("off-intl", Feature::international_attempts, KeyKind::account, 1, 40);
    r.scope.time = TimeScope::off_hours;
    cfg.rules.push_back(r);
    cfg.rules.push_back(rule("off", Feature::off_hours, KeyKind::account, 1, 5));
    auto e = make(cfg);
    Call c;
    c.callee = "4420794600";
    auto at = [&](std::string id, sbc::base::UnixNanos wall) {
        c.call_id = std::move(id);
        Verdict v;
        e->on_attempt(attempt(c, wall - kFriday + 1000 * kSec, wall), v);
        return v;
    };
    // Friday 07:30 UTC = 08:30 in Paris (CET): business hours.
    CHECK(at("1", kFriday + 7 * 3600 * kSec + 1800 * kSec).reason_count == 0);
    // Friday 18:30 UTC = 19:30 in Paris: off hours.
    auto v = at("2", kFriday + 18 * 3600 * kSec + 1800 * kSec);
    CHECK(find_reason(v, "off-intl"));
    CHECK(find_reason(v, "off"));
    // Saturday noon: off hours. (Nothing but the schedule differs.)
    CHECK(find_reason(at("3", kFriday + 36 * 3600 * kSec), "off"));
    // An account outside the group has no business hours: never off hours.
    c.account = "2001";
    CHECK(at("4", kFriday + 36 * 3600 * kSec + kSec).reason_count == 0);
}

TEST_CASE("source country checks: not allowed, and one account in two countries",
          "[fraud][engine]") {
    auto cfg = base_config();
    AccountGroup g;
    g.name = "agents";
    g.accounts = {"1001"};
    g.allowed_source_countries = {"FR", "BE"};
    cfg.account_groups.push_back(g);
    cfg.rules.push_back(
        rule("src-country", Feature::source_country_not_allowed, KeyKind::account, 1, 40));
    cfg.rules.push_back(rule("hop", Feature::country_change, KeyKind::account, 2, 30, 3600 * kSec));
    auto e = make(cfg);
    Call c;
    c.country = "FR";
    c.call_id = "1";
    CHECK(run(*e, c, 0).reason_count == 0);
    c.country = "BE";
    c.call_id = "2";
    auto v = run(*e, c, 60 * kSec);
    CHECK(find_reason(v, "hop"));
    CHECK_FALSE(find_reason(v, "src-country"));
    c.country = "NG";
    c.call_id = "3";
    v = run(*e, c, 120 * kSec);
    CHECK(find_reason(v, "src-country"));
    CHECK(find_reason(v, "hop")->value == Approx(3));
    CHECK(v.action == Action::block);
}

TEST_CASE("sequential dialing measures runs of small increments", "[fraud][engine]") {
    auto cfg = base_config();
    cfg.rules.push_back(rule("seq", Feature::sequential_dialing, KeyKind::account, 4, 70));
    auto e = make(cfg);
    Call c;
    const char* numbers[] = {"4420700001", "4420700002", "4420700003", "4420700050",
                             "4420700100", "4420700101", "4420700102", "4420700103"};
    std::vector<bool> fired;
    for (int i = 0; i < 8; ++i) {
        c.call_id = std::to_string(i);
        c.callee = numbers[i];
        fired.push_back(find_reason(run(*e, c, i * kSec), "seq") != nullptr);
    }
    CHECK(fired == std::vector<bool>{false, false, false, false, false, false, false, true});
}

TEST_CASE("short-call and failed-call ratios need min_attempts samples", "[fraud][engine]") {
    auto cfg = base_config();
    auto s = rule("short", Feature::short_call_ratio, KeyKind::account, 0.8, 40, 3600 * kSec);
    s.min_attempts = 5;
    auto f =
        rule("failed", Feature::failed_call_ratio, KeyKind::account, 0.5, 30, 3600 * kSec, Op::gt);
    f.min_attempts = 4;
    cfg.rules.push_back(s);
    cfg.rules.push_back(f);
    auto e = make(cfg);
    Call c;
    sbc::base::Nanos t = 0;
    for (int i = 0; i < 5; ++i) {  // five answered 3-second calls
        c.call_id = "s" + std::to_string(i);
        CHECK_FALSE(find_reason(run(*e, c, t), "short"));
        e->on_answer({t + kSec, 0, c.call_id});
        e->on_end({t + 4 * kSec, 0, c.call_id, Outcome::answered});
        t += 10 * kSec;
    }
    c.call_id = "next";
    auto v = run(*e, c, t);
    REQUIRE(find_reason(v, "short"));
    CHECK(find_reason(v, "short")->value == Approx(1.0));
    CHECK_FALSE(find_reason(v, "failed"));  // 0 failed of 5
    for (int i = 0; i < 8; ++i) {
        c.call_id = "f" + std::to_string(i);
        run(*e, c, t + kSec);
        e->on_end({t + 2 * kSec, 0, c.call_id, Outcome::not_found});
        t += 10 * kSec;
    }
    c.call_id = "after";
    v = run(*e, c, t);
    REQUIRE(find_reason(v, "failed"));
    CHECK(find_reason(v, "failed")->value > 0.5);
}

TEST_CASE("auth failures and distinct usernames ban a brute-force source", "[fraud][engine]") {
    auto cfg = base_config();
    cfg.rules.push_back(rule("bf", Feature::auth_failures, KeyKind::source_ip, 10, 100, 60 * kSec));
    cfg.rules.push_back(
        rule("enum", Feature::distinct_usernames, KeyKind::source_prefix, 8, 40, 600 * kSec));
    auto e = make(cfg);
    Verdict v;
    int i = 0;
    for (; i < 50; ++i) {
        e->on_auth(auth("203.0.113.7", "1001", false, i * kSec / 10), v);
        if (v.action == Action::ban) break;
    }
    CHECK(i == 9);  // the 10th failure
    CHECK(e->is_banned(*IpAddress::parse("203.0.113.7"), 10 * kSec));
    // Distributed over a /24: each address fails with a different user, a few times each.
    for (i = 0; i < 50; ++i) {
        std::string src = "198.51.100." + std::to_string(i);
        e->on_auth(auth(src, "user" + std::to_string(i), false, 20 * kSec + i * kSec), v);
        if (v.action != Action::allow) break;
    }
    CHECK(i == 7);
    REQUIRE(find_reason(v, "enum"));
    CHECK(find_reason(v, "enum")->key == KeyKind::source_prefix);
    // Successful logins are not failures.
    e->on_auth(auth("192.0.2.50", "1001", true, 100 * kSec), v);
    CHECK(v.reason_count == 0);
}

TEST_CASE("scanner user agents and request sweeps", "[fraud][engine]") {
    auto cfg = base_config();
    cfg.scanner_user_agents = {"friendly-scanner", "sipvicious", "sipcli*"};
    cfg.rules.push_back(rule("ua", Feature::scanner_user_agent, KeyKind::source_ip, 1, 100));
    cfg.rules.push_back(
        rule("sweep", Feature::request_sweep, KeyKind::source_ip, 20, 100, 60 * kSec));
    auto e = make(cfg);
    Call c;
    c.request = RequestKind::probe;
    c.ua = "Friendly-Scanner";
    c.src = "203.0.113.200";
    c.callee = "100";
    CHECK(run(*e, c, 0).action == Action::ban);
    // No signature: the sweep across users is what gives it away.
    c.ua = "";
    c.src = "203.0.113.201";
    int i = 0;
    for (; i < 100; ++i) {
        c.callee = std::to_string(100 + i);
        if (run(*e, c, i * kSec / 20).action == Action::ban) break;
    }
    CHECK(i == 19);
    CHECK(e->counters()[Counter::requests] == 21);
    CHECK(e->counters()[Counter::attempts] == 0);
}

TEST_CASE("scanner user agents are checked on authentication results and registrations",
          "[fraud][engine]") {
    auto cfg = base_config();
    cfg.scanner_user_agents = {"friendly-scanner", "sipvicious"};
    cfg.rules.push_back(rule("ua", Feature::scanner_user_agent, KeyKind::source_ip, 1, 100));
    auto e = make(cfg);
    Verdict v;
    e->on_auth(auth("203.0.113.60", "1001", false, 0, "SIPVicious 0.3.4"), v);
    CHECK(v.action == Action::ban);
    REQUIRE(find_reason(v, "ua"));
    CHECK(find_reason(v, "ua")->value == 1);
    // A successful authentication from a scanner is still a scanner.
    e->on_auth(auth("203.0.113.61", "1001", true, kSec, "friendly-scanner"), v);
    CHECK(v.action == Action::ban);
    e->on_register(
        registration("203.0.113.62", "1001", Outcome::auth_challenge, 2 * kSec, "friendly-scanner"),
        v);
    CHECK(v.action == Action::ban);
    // An ordinary phone, and an event with no User-Agent (not a scanner unless configured).
    e->on_auth(auth("192.0.2.60", "1001", false, 3 * kSec, "Yealink SIP-T46S"), v);
    CHECK(v.action == Action::allow);
    CHECK(v.reason_count == 0);
    e->on_auth(auth("192.0.2.61", "1001", false, 4 * kSec), v);
    CHECK(v.action == Action::allow);

    cfg.empty_user_agent_is_scanner = true;
    auto strict = make(cfg);
    strict->on_auth(auth("192.0.2.62", "1001", false, 0), v);
    CHECK(v.action == Action::ban);
    strict->on_register(registration("192.0.2.63", "1001", Outcome::answered, kSec), v);
    CHECK(v.action == Action::ban);
}

TEST_CASE("a request sweep counts a user once whatever the method", "[fraud][engine]") {
    auto cfg = base_config();
    cfg.rules.push_back(rule("sweep", Feature::request_sweep, KeyKind::source_ip, 1, 1, 60 * kSec));
    auto e = make(cfg);
    Call c;
    c.src = "203.0.113.70";
    Verdict v;
    sbc::base::Nanos t = 0;
    std::string user;
    for (int i = 0; i < 5; ++i) {
        user = std::to_string(200 + i);
        c.callee = user;
        c.request = RequestKind::probe;
        c.call_id = "";
        e->on_attempt(attempt(c, t), v);
        e->on_register(registration(c.src, user, Outcome::auth_challenge, t + kSec / 10), v);
        c.request = RequestKind::call;
        c.call_id = "i" + std::to_string(i);
        e->on_attempt(attempt(c, t + kSec / 5), v);
        t += kSec;
    }
    REQUIRE(find_reason(v, "sweep"));
    CHECK(find_reason(v, "sweep")->value == Approx(5));
    // A REGISTER of a user already swept by OPTIONS and INVITE adds nothing.
    e->on_register(registration(c.src, "202", Outcome::auth_challenge, t), v);
    REQUIRE(find_reason(v, "sweep"));
    CHECK(find_reason(v, "sweep")->value == Approx(5));
}

TEST_CASE("short rings (Wangiri) count unanswered calls cancelled within seconds",
          "[fraud][engine]") {
    auto cfg = base_config();
    cfg.short_ring_seconds = 5;
    cfg.rules.push_back(
        rule("wangiri", Feature::short_rings, KeyKind::source_ip, 5, 70, 600 * kSec));
    auto e = make(cfg);
    Call c;
    c.src = "203.0.113.9";
    sbc::base::Nanos t = 0;
    Action last = Action::allow;
    int i = 0;
    for (; i < 20; ++i) {
        c.call_id = "w" + std::to_string(i);
        c.callee = "3361200" + std::to_string(1000 + i);
        Verdict v;
        e->on_attempt(attempt(c, t), v);
        last = v.action;
        if (last != Action::allow) break;
        e->on_end({t + 2 * kSec, 0, c.call_id, Outcome::cancelled});
        t += 3 * kSec;
    }
    CHECK(i == 5);
    CHECK(last == Action::block);
    // A long ring that is then cancelled is not a short ring.
    Call ok;
    ok.src = "192.0.2.77";
    for (int j = 0; j < 10; ++j) {
        ok.call_id = "l" + std::to_string(j);
        CHECK(run(*e, ok, t + j * 60 * kSec).action == Action::allow);
        e->on_end({t + j * 60 * kSec + 20 * kSec, 0, ok.call_id, Outcome::cancelled});
    }
}

TEST_CASE("lists restrict attempts and distinct destinations to the destinations on them",
          "[fraud][engine]") {
    auto cfg = base_config();
    auto irsf = rule("irsf-attempts", Feature::attempts, KeyKind::account, 3, 70);
    irsf.lists = {"irsf"};
    auto spread = rule("premium-spread", Feature::distinct_destinations, KeyKind::account, 3, 70);
    spread.lists = {"premium"};
    cfg.rules = {irsf, spread};
    auto e = make(cfg);
    Call c;
    sbc::base::Nanos t = 0;
    auto call = [&](const std::string& callee) {
        c.call_id = "c" + std::to_string(t);
        c.callee = callee;
        t += kSec;
        return run(*e, c, t);
    };
    // Six distinct domestic numbers: on neither list, so counted by neither rule.
    for (int i = 0; i < 6; ++i)
        CHECK(call("3361234560" + std::to_string(i)).action == Action::allow);
    CHECK(call("88216001").action == Action::allow);
    CHECK(call("88216002").action == Action::allow);
    auto v = call("88216003");
    CHECK(v.action == Action::block);
    REQUIRE(find_reason(v, "irsf-attempts"));
    CHECK(find_reason(v, "irsf-attempts")->value == Approx(3));
    CHECK_FALSE(find_reason(v, "premium-spread"));  // no premium number dialed yet
    // Like high_risk_attempts, the rule is read on every INVITE of the key: a domestic call of
    // the account still carries the evidence, without adding to it.
    v = call("33612345699");
    REQUIRE(find_reason(v, "irsf-attempts"));
    CHECK(find_reason(v, "irsf-attempts")->value == Approx(3));

    // Another account: distinct premium numbers only (3389 is on the premium list), a redial
    // counting once.
    c.account = "1002";
    for (int i = 0; i < 6; ++i)
        CHECK(call("3361234570" + std::to_string(i)).action == Action::allow);
    CHECK(call("33891000001").action == Action::allow);
    CHECK(call("33891000002").action == Action::allow);
    CHECK(call("33891000002").action == Action::allow);
    v = call("44901000003");
    CHECK(v.action == Action::block);
    REQUIRE(find_reason(v, "premium-spread"));
    CHECK(find_reason(v, "premium-spread")->value == Approx(3));
    CHECK_FALSE(find_reason(v, "irsf-attempts"));
}

TEST_CASE("failed_call_ratio is failed calls over ended calls, as documented", "[fraud][engine]") {
    // docs/fraud.md: calls ended with a final status >= 300 other than 487 / ended calls.
    // Calls in progress are in neither count, and a cancelled call (487) is an ended call
    // that did not fail.
    auto cfg = base_config();
    auto f = rule("failed", Feature::failed_call_ratio, KeyKind::account, 0, 1, 3600 * kSec);
    f.min_attempts = 1;
    cfg.rules.push_back(f);
    auto e = make(cfg);
    Call c;
    const struct {
        const char* id;
        std::optional<Outcome> end;  // none: still in progress
    } calls[] = {{"busy", Outcome::busy},        {"gone", Outcome::not_found},
                 {"cancel", Outcome::cancelled}, {"ok", Outcome::answered},
                 {"ringing", std::nullopt},      {"talking", std::nullopt}};
    sbc::base::Nanos t = 0;
    for (const auto& x : calls) {
        c.call_id = x.id;
        run(*e, c, t);
        if (x.end == Outcome::answered) e->on_answer({t + kSec, 0, x.id});
        if (x.end) e->on_end({t + 2 * kSec, 0, x.id, *x.end});
        t += 10 * kSec;
    }
    c.call_id = "next";
    auto v = run(*e, c, t);
    REQUIRE(find_reason(v, "failed"));
    // 2 failed (486, 404) of 4 ended; not 2 of 6 or 7 attempts.
    CHECK(find_reason(v, "failed")->value == Approx(0.5));
}

TEST_CASE("scopes restrict rules to tenants, groups and destinations", "[fraud][engine]") {
    auto cfg = base_config();
    AccountGroup g;
    g.name = "agents";
    g.account_patterns = {"10*"};
    g.tenant = "acme";
    cfg.account_groups.push_back(g);
    auto r = rule("acme-irsf", Feature::attempts, KeyKind::tenant, 1, 70);
    r.scope.tenants = {"acme"};
    r.scope.destinations = "irsf";
    r.scope.account_groups = {"agents"};
    cfg.rules.push_back(r);
    auto e = make(cfg);
    Call c;
    c.call_id = "1";
    CHECK(run(*e, c, 0).action == Action::allow);  // domestic: out of scope
    c.call_id = "2";
    c.callee = "88212345";
    auto v = run(*e, c, kSec);
    CHECK(v.action == Action::block);
    CHECK(find_reason(v, "acme-irsf")->value == Approx(1));  // only the in-scope call counted
    c.account = "2001";                                      // not in the group, no tenant
    c.call_id = "3";
    CHECK(run(*e, c, 2 * kSec).action == Action::allow);
}

TEST_CASE("configuration errors are reported", "[fraud][engine]") {
    auto cfg = base_config();
    cfg.rules.push_back(rule("x", Feature::attempts, KeyKind::account, 1, 1));
    cfg.rules.push_back(rule("x", Feature::attempts, KeyKind::account, 1, 1));
    CHECK_FALSE(Engine::create(cfg).ok());
    cfg = base_config();
    auto r = rule("y", Feature::high_risk_attempts, KeyKind::account, 1, 1);
    r.lists = {"nope"};
    cfg.rules.push_back(r);
    auto res = Engine::create(cfg);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().message.find("nope") != std::string::npos);
    // `lists` on a feature with no destination to restrict is refused, not ignored (the
    // policy loader refuses it too).
    cfg = base_config();
    auto failures = rule("z", Feature::auth_failures, KeyKind::source_ip, 1, 1);
    failures.lists = {"irsf"};
    cfg.rules.push_back(failures);
    res = Engine::create(cfg);
    REQUIRE_FALSE(res.ok());
    CHECK(res.error().message.find("lists apply only to") != std::string::npos);
    cfg = base_config();
    AccountGroup g;
    g.name = "g";
    g.timezone = "Nowhere/Land";
    cfg.account_groups.push_back(g);
    CHECK_FALSE(Engine::create(cfg).ok());
}

TEST_CASE("JSON event lines escape what attackers send", "[fraud][json]") {
    auto cfg = base_config();
    cfg.rules.push_back(rule("any", Feature::attempts, KeyKind::account, 1, 40));
    auto e = make(cfg);
    std::vector<std::string> lines;
    e->set_event_sink([&](std::string_view l) { lines.emplace_back(l); });
    Call c;
    c.call_id = "1";
    c.ua = std::string("evil\"ua\\\n\x01\xff\xc3\xa9");
    c.account = "a\"b";
    Verdict v;
    e->on_attempt(attempt(c, 0), v);
    REQUIRE(lines.size() == 1);
    const auto& l = lines[0];
    CHECK(l.find("\"ua\":\"evil\\\"ua\\\\\\n\\u0001\\ufffd\xc3\xa9\"") != std::string::npos);
    CHECK(l.find("\"account\":\"a\\\"b\"") != std::string::npos);
    CHECK(l.find("\"action\":\"flag\"") != std::string::npos);
    CHECK(l.find("{\"rule\":\"any\",\"feature\":\"attempts\",\"key\":\"account\",\"value\":1,"
                 "\"op\":\">=\",\"threshold\":1,\"weight\":40,\"observe\":false}") !=
          std::string::npos);
    CHECK(l.front() == '{');
    CHECK(l.back() == '}');
    CHECK(l.find('\n') == std::string::npos);
}

namespace {

EngineConfig attempts_config(double threshold, sbc::base::Nanos window = 600 * kSec) {
    auto cfg = base_config();
    cfg.rules.push_back(rule("burst", Feature::attempts, KeyKind::account, threshold, 70, window));
    return cfg;
}

// `n` attempts of account 1001, one a second from `from`, all expected to be allowed.
void feed_allowed(Engine& e, int from, int n) {
    Call c;
    for (int i = from; i < from + n; ++i) {
        c.call_id = "a" + std::to_string(i);
        REQUIRE(run(e, c, i * kSec).action == Action::allow);
    }
}

Verdict next_attempt(Engine& e, int i) {
    Call c;
    c.call_id = "a" + std::to_string(i);
    return run(e, c, i * kSec);
}

}  // namespace

TEST_CASE("a reconfigure keeping the state layout keeps every window", "[fraud][engine][reload]") {
    auto e = make(attempts_config(10));
    std::vector<std::string> lines;
    e->set_event_sink([&](std::string_view l) { lines.emplace_back(l); });
    feed_allowed(*e, 0, 6);
    const auto keys = e->tracked_keys();
    const auto attempts = e->counters()[Counter::attempts];

    auto kept = e->reconfigure(attempts_config(5));
    REQUIRE(kept.ok());
    CHECK(*kept);
    CHECK(e->config().rules[0].threshold == 5);
    CHECK(e->tracked_keys() == keys);
    CHECK(e->counters()[Counter::attempts] == attempts);
    // The 7th attempt is read against the new threshold with the six already counted.
    auto v = next_attempt(*e, 6);
    CHECK(v.action == Action::block);
    const Reason* r = find_reason(v, "burst");
    REQUIRE(r);
    CHECK(r->value == Approx(7));
    CHECK(r->threshold == 5);
    CHECK(lines.size() == 1);  // the event sink stays attached
}

TEST_CASE("calls in progress and bans survive a reconfigure", "[fraud][engine][reload]") {
    auto config = [](double conc_threshold) {
        auto cfg = base_config();
        cfg.rules.push_back(rule("conc", Feature::concurrent_calls, KeyKind::account,
                                 conc_threshold, 70, 0, Op::gt));
        cfg.deny.push_back({"deny-irsf", "irsf", {}, {}, true, {}, {}});
        return cfg;
    };
    auto e = make(config(100));
    Call c;
    for (int i = 0; i < 3; ++i) {
        c.call_id = "c" + std::to_string(i);
        REQUIRE(run(*e, c, i * kSec).action == Action::allow);
    }
    Call attacker;
    attacker.call_id = "x";
    attacker.src = "198.51.100.7";
    attacker.account = "2002";
    attacker.callee = "88216001";
    REQUIRE(run(*e, attacker, 5 * kSec).action == Action::ban);
    const auto attacker_addr = *IpAddress::parse(attacker.src);
    REQUIRE(e->is_banned(attacker_addr, 6 * kSec));

    auto cfg = config(2);
    cfg.ban_duration = 7200 * kSec;
    auto kept = e->reconfigure(cfg);
    REQUIRE(kept.ok());
    CHECK(*kept);
    CHECK(e->concurrent_calls(KeyKind::account, "1001") == 3);
    CHECK(e->is_banned(attacker_addr, 7 * kSec));
    CHECK(e->active_bans(7 * kSec) == 1);
    CHECK(e->counters()[Counter::bans_issued] == 1);
    // The three calls in progress (and this one) count against the lowered limit at once ...
    c.call_id = "c3";
    auto v = run(*e, c, 8 * kSec);
    CHECK(v.action == Action::block);
    REQUIRE(find_reason(v, "conc"));
    CHECK(find_reason(v, "conc")->value == Approx(4));
    // ... and their ends, found in the kept call table, release them.
    e->on_end({9 * kSec, 0, "c0", Outcome::answered});
    CHECK(e->concurrent_calls(KeyKind::account, "1001") == 2);
    CHECK(e->counters()[Counter::end_unknown_call] == 0);
}

TEST_CASE("a reconfigure needing another state layout changes nothing", "[fraud][engine][reload]") {
    auto e = make(attempts_config(10));
    feed_allowed(*e, 0, 6);
    // A valid configuration the running state does not fit: refused, nothing swapped.
    auto refused = [&](const EngineConfig& cfg) {
        auto kept = e->reconfigure(cfg);
        REQUIRE(kept.ok());
        CHECK_FALSE(*kept);
    };

    SECTION("another window") {
        refused(attempts_config(5, 300 * kSec));
    }
    SECTION("a feature needing new state") {
        auto cfg = attempts_config(5);
        cfg.rules.push_back(
            rule("spread", Feature::distinct_destinations, KeyKind::account, 20, 30));
        refused(cfg);
    }
    SECTION("another key kind") {
        auto cfg = attempts_config(5);
        cfg.rules.push_back(rule("ip", Feature::attempts, KeyKind::source_ip, 50, 30));
        refused(cfg);
    }
    SECTION("a threshold that needs wider counter buckets") {
        refused(attempts_config(300));
    }
    SECTION("lists added to a count (it would count other attempts)") {
        auto cfg = attempts_config(5);
        cfg.rules[0].lists = {"irsf"};
        refused(cfg);
    }
    SECTION("an invalid configuration") {
        auto cfg = attempts_config(5);
        cfg.rules.push_back(rule("burst", Feature::attempts, KeyKind::account, 1, 1));
        auto kept = e->reconfigure(cfg);
        REQUIRE_FALSE(kept.ok());
        CHECK(kept.error().message.find("duplicate") != std::string::npos);
    }
    // The old threshold still holds, over the same counts.
    CHECK(e->config().rules.size() == 1);
    CHECK(e->config().rules[0].threshold == 10);
    feed_allowed(*e, 6, 3);
    auto v = next_attempt(*e, 9);
    CHECK(v.action == Action::block);
    REQUIRE(find_reason(v, "burst"));
    CHECK(find_reason(v, "burst")->value == Approx(10));
}

TEST_CASE("a rule switched from observe to enforce in place acts on the next attempt",
          "[fraud][engine][reload][observe]") {
    auto cfg = attempts_config(3);
    cfg.rules[0].mode = Mode::observe;
    auto e = make(cfg);
    feed_allowed(*e, 0, 2);
    auto v = next_attempt(*e, 2);
    CHECK(v.action == Action::allow);
    CHECK(v.shadow_action == Action::block);

    cfg.rules[0].mode = Mode::enforce;
    auto kept = e->reconfigure(cfg);
    REQUIRE(kept.ok());
    CHECK(*kept);
    v = next_attempt(*e, 3);
    CHECK(v.action == Action::block);
    REQUIRE(find_reason(v, "burst"));
    CHECK_FALSE(find_reason(v, "burst")->observe);
    CHECK(find_reason(v, "burst")->value == Approx(4));
}

TEST_CASE("a distinct-count threshold retuned in place keeps the set's values",
          "[fraud][engine][reload]") {
    auto config = [](double threshold) {
        auto cfg = base_config();
        cfg.rules.push_back(
            rule("spread", Feature::distinct_destinations, KeyKind::account, threshold, 70));
        return cfg;
    };
    auto e = make(config(10));
    Call c;
    for (int i = 0; i < 6; ++i) {
        c.call_id = "d" + std::to_string(i);
        c.callee = "3361234560" + std::to_string(i);
        REQUIRE(run(*e, c, i * kSec).action == Action::allow);
    }
    auto kept = e->reconfigure(config(5));
    REQUIRE(kept.ok());
    CHECK(*kept);
    c.call_id = "d6";
    c.callee = "33612345606";
    auto v = run(*e, c, 6 * kSec);
    CHECK(v.action == Action::block);
    REQUIRE(find_reason(v, "spread"));
    CHECK(find_reason(v, "spread")->value == Approx(7));
}

TEST_CASE("a rule moved in place to a list already counted reads that list's counts",
          "[fraud][engine][reload]") {
    // Counts are kept per list (a component is its feature, window, scope and lists): moving a
    // rule to a list another rule already counts keeps the layout, and the rule reads what was
    // counted for that list; moving it to a list nobody counts needs new state (refused).
    auto config = [](std::string watched) {
        auto cfg = base_config();
        auto irsf = rule("irsf", Feature::high_risk_attempts, KeyKind::account, 100, 10);
        irsf.lists = {"irsf"};
        auto premium = rule("premium", Feature::premium_attempts, KeyKind::account, 100, 10);
        auto watch = rule("watch", Feature::attempts, KeyKind::account, 2, 70);
        watch.lists = {std::move(watched)};
        cfg.rules = {irsf, premium, watch};
        return cfg;
    };
    auto e = make(config("irsf"));
    Call c;
    const char* callees[] = {"88216001", "33891000001", "33891000002", "33891000003", "336123"};
    int i = 0;
    for (const char* callee : callees) {
        c.call_id = "c" + std::to_string(i);
        c.callee = callee;
        REQUIRE(run(*e, c, i++ * kSec).action == Action::allow);  // one irsf call: below 2
    }
    auto moved = e->reconfigure(config("premium"));
    REQUIRE(moved.ok());
    CHECK(*moved);
    c.call_id = "after";
    c.callee = "33612345678";
    auto v = run(*e, c, i * kSec);
    CHECK(v.action == Action::block);
    REQUIRE(find_reason(v, "watch"));
    CHECK(find_reason(v, "watch")->value == Approx(3));  // the premium calls before the reload

    auto cfg = config("premium");
    cfg.rules[2].lists = {"domestic"};  // counted by no rule yet
    auto refused = e->reconfigure(cfg);
    REQUIRE(refused.ok());
    CHECK_FALSE(*refused);
}
