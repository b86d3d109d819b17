// Engine::on_attempts (the prefetching burst path) gives exactly the verdicts of on_attempt
// called one attempt at a time, with the same state left behind.
#include <catch2/catch.hpp>
#include <random>

#include "helpers.hpp"

using namespace sbc;
using namespace sbc::fraud;
using namespace sbc::fraud::test;

namespace {

// Every feature on the key kinds that burst prefetching touches, with small thresholds so
// that many rules fire, plus scopes, counts restricted to lists, observe mode and a deny rule.
EngineConfig burst_config() {
    auto cfg = base_config();
    cfg.max_tracked_keys = 600;  // small: keys are created, evicted and expired in the run
    cfg.max_tracked_calls = 256;
    cfg.idle_key_expiry = 300 * kSec;
    cfg.scanner_user_agents = {"friendly-scanner"};
    AccountGroup g;
    g.name = "agents";
    g.account_patterns = {"1*"};
    g.tenant = "acme";
    g.business_hours = {{0x1f, 8 * 60, 19 * 60}};
    g.allowed_source_countries = {"FR"};
    cfg.account_groups.push_back(g);
    const base::Nanos m = 60 * kSec;
    cfg.rules = {
        rule("a1", Feature::attempts, KeyKind::account, 4, 10, m),
        rule("a2", Feature::attempts, KeyKind::account, 8, 20, 30 * m),
        rule("intl", Feature::international_attempts, KeyKind::account, 2, 20, 10 * m),
        rule("risk", Feature::high_risk_attempts, KeyKind::account, 1, 30, 60 * m),
        rule("dd", Feature::distinct_destinations, KeyKind::account, 5, 20, 10 * m),
        rule("dd-big", Feature::distinct_destinations, KeyKind::account, 40, 20, 10 * m),
        rule("dc", Feature::distinct_destination_countries, KeyKind::account, 3, 20, 30 * m),
        rule("seq", Feature::sequential_dialing, KeyKind::account, 3, 30, 15 * m),
        rule("conc", Feature::concurrent_calls, KeyKind::account, 3, 20),
        rule("short", Feature::short_call_ratio, KeyKind::account, 0.5, 20, 30 * m),
        rule("failed", Feature::failed_call_ratio, KeyKind::account, 0.5, 20, 30 * m),
        rule("off", Feature::off_hours, KeyKind::account, 1, 10, m),
        rule("src", Feature::source_country_not_allowed, KeyKind::account, 1, 20, m),
        rule("hop", Feature::country_change, KeyKind::account, 2, 20, 60 * m),
        rule("ip", Feature::attempts, KeyKind::source_ip, 6, 20, m),
        rule("sweep", Feature::request_sweep, KeyKind::source_ip, 6, 30, 5 * m),
        rule("ua", Feature::scanner_user_agent, KeyKind::source_ip, 1, 90, m),
        rule("rings", Feature::short_rings, KeyKind::source_ip, 2, 20, 10 * m),
        rule("pfx", Feature::attempts, KeyKind::source_prefix, 10, 20, m),
        rule("users", Feature::distinct_usernames, KeyKind::source_prefix, 4, 30, 10 * m),
        rule("tenant", Feature::attempts, KeyKind::tenant, 30, 10, m),
        rule("dest", Feature::attempts, KeyKind::destination_prefix, 12, 10, m),
    };
    // Counts restricted to lists (only attempts to a listed destination count).
    cfg.rules.push_back(rule("a-irsf", Feature::attempts, KeyKind::account, 2, 20, 10 * m));
    cfg.rules.back().lists = {"irsf"};
    cfg.rules.push_back(
        rule("dd-prem", Feature::distinct_destinations, KeyKind::account, 2, 20, 10 * m));
    cfg.rules.back().lists = {"premium"};
    cfg.rules[4].mode = Mode::observe;
    cfg.deny.push_back({"deny-kp", "", {"KP"}, {}, false, {}, {}});
    return cfg;
}

void same(const Verdict& a, const Verdict& b) {
    REQUIRE(a.action == b.action);
    REQUIRE(a.shadow_action == b.shadow_action);
    REQUIRE(a.score == b.score);
    REQUIRE(a.shadow_score == b.shadow_score);
    REQUIRE(a.duplicate == b.duplicate);
    REQUIRE(a.banned_source == b.banned_source);
    REQUIRE(a.ban_until == b.ban_until);
    REQUIRE(a.source_country == b.source_country);
    REQUIRE(a.destination_country == b.destination_country);
    REQUIRE(a.reason_count == b.reason_count);
    REQUIRE(a.reasons_dropped == b.reasons_dropped);
    for (std::size_t i = 0; i < a.reason_count; ++i) {
        REQUIRE(a.reasons[i].rule_id == b.reasons[i].rule_id);
        REQUIRE(a.reasons[i].value == b.reasons[i].value);
        REQUIRE(a.reasons[i].observe == b.reasons[i].observe);
    }
}

}  // namespace

TEST_CASE("a burst of attempts gets the verdicts of the same attempts one by one",
          "[fraud][engine][burst]") {
    auto one = Engine::create(burst_config());
    auto many = Engine::create(burst_config());
    REQUIRE(one);
    REQUIRE(many);
    std::mt19937 rng(11);
    const char* callees[] = {"33612345678", "33612345679", "8821234567", "4420712345",
                             "8501234567",  "33891234567", "4930123456", "+33 6 12 34 56 80"};
    const char* uas[] = {"Yealink SIP-T46S", "friendly-scanner", ""};
    const char* countries[] = {"FR", "FR", "FR", "NG", ""};
    const RequestKind kinds[] = {RequestKind::call, RequestKind::call, RequestKind::call,
                                 RequestKind::probe};
    std::vector<Call> calls;
    std::vector<std::string> ended;
    base::Nanos now = 0;
    std::size_t fired = 0, non_allow = 0, checked = 0, list_fired = 0;
    for (int round = 0; round < 400; ++round) {
        // A burst of 1..40 attempts (more than the pipeline's depth, and fewer).
        std::size_t n = 1 + rng() % 40;
        calls.assign(n, Call{});
        for (std::size_t i = 0; i < n; ++i) {
            Call& c = calls[i];
            c.call_id = "c" + std::to_string(rng() % 5000);  // some Call-IDs repeat
            c.src = "198.51." + std::to_string(rng() % 4) + "." + std::to_string(rng() % 40);
            c.account = std::to_string(rng() % 3 ? 1000 + rng() % 60 : 2000 + rng() % 60);
            c.callee = rng() % 3 ? std::string(callees[rng() % 8])
                                 : "3361234" + std::to_string(5000 + rng() % 40);
            c.ua = uas[rng() % 40 == 0 ? 1 : rng() % 50 == 0 ? 2 : 0];
            c.country = countries[rng() % 5];
            c.request = kinds[rng() % 4];
            c.tenant = rng() % 2 ? "" : "t" + std::to_string(rng() % 3);
        }
        std::vector<CallAttempt> in;
        for (const auto& c : calls) {
            now += static_cast<base::Nanos>(rng() % 3000) * 1'000'000;
            in.push_back(attempt(c, now, kFriday + 7 * 3600 * kSec + now));
        }
        std::vector<Verdict> a(n), b(n);
        for (std::size_t i = 0; i < n; ++i) (*one)->on_attempt(in[i], a[i]);
        (*many)->on_attempts(in, b);
        for (std::size_t i = 0; i < n; ++i) {
            same(a[i], b[i]);
            fired += a[i].reason_count;
            non_allow += a[i].action != Action::allow;
            for (std::size_t r = 0; r < a[i].reason_count; ++r)
                list_fired +=
                    a[i].reasons[r].rule_id == "a-irsf" || a[i].reasons[r].rule_id == "dd-prem";
            ++checked;
        }
        // Ends, answers and authentications between bursts, identical on both engines.
        for (std::size_t i = 0; i < n; i += 2) {
            const Outcome outcome = rng() % 4 == 0   ? Outcome::cancelled
                                    : rng() % 3 == 0 ? Outcome::busy
                                                     : Outcome::answered;
            if (outcome == Outcome::answered) {
                (*one)->on_answer({now, kFriday + now, calls[i].call_id});
                (*many)->on_answer({now, kFriday + now, calls[i].call_id});
            }
            now += static_cast<base::Nanos>(rng() % 20) * kSec;
            (*one)->on_end({now, kFriday + now, calls[i].call_id, outcome});
            (*many)->on_end({now, kFriday + now, calls[i].call_id, outcome});
        }
        if (rng() % 5 == 0) {
            // The event holds views: the strings must outlive it.
            std::string src = "198.51.0." + std::to_string(rng() % 40);
            std::string user = "u" + std::to_string(rng() % 30);
            auto ev = auth(src, user, false, now);
            Verdict x, y;
            (*one)->on_auth(ev, x);
            (*many)->on_auth(ev, y);
            same(x, y);
        }
        if (rng() % 50 == 0) now += 400 * kSec;  // idle: keys expire, windows empty
    }
    // The stream exercised the rules, not just the allow path.
    CHECK(checked > 5000);
    CHECK(fired > checked / 4);
    CHECK(non_allow > checked / 50);
    CHECK(list_fired > 0);
    CHECK((*one)->tracked_keys() == (*many)->tracked_keys());
    CHECK((*one)->tracked_calls() == (*many)->tracked_calls());
    for (std::size_t i = 0; i < kCounterCount; ++i)
        CHECK((*one)->counters()[static_cast<Counter>(i)] ==
              (*many)->counters()[static_cast<Counter>(i)]);
}
