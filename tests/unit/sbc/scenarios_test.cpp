// The fraud scenarios against the scenario policy (TOML, loaded through policy/ and the
// wiring): detection targets for attacks, silence for a legitimate call-center day.
#include <catch2/catch.hpp>
#include <iostream>

#include "policy/policy.hpp"
#include "sbc/fraud_wiring.hpp"
#include "scenarios.hpp"

using namespace sbc;

namespace {

std::unique_ptr<fraud::Engine> engine_from(const std::string& file) {
    auto loaded = policy::load_policy({file});
    for (const auto& e : loaded.errors) UNSCOPED_INFO(e.to_string());
    REQUIRE(loaded.ok());
    auto engine = make_fraud_engine(*loaded.value, "");
    if (!engine) FAIL(engine.error().message);
    return std::move(*engine);
}

}  // namespace

TEST_CASE("attack scenarios are stopped within their targets", "[fraud][scenarios]") {
    std::vector<scenarios::Outcome> outcomes;
    for (const auto& s : scenarios::attack_scenarios()) {
        auto engine = engine_from(SBC_SCENARIO_POLICY);
        auto o = scenarios::run(s, *engine);
        outcomes.push_back(o);
        INFO(s.name);
        CHECK(o.fraud_events > 0);
        CHECK(o.met());
        CHECK(o.first_block > 0);  // every attack is stopped at some point
        CHECK(o.legit_blocked == 0);
    }
    std::cout << scenarios::table(outcomes);
}

TEST_CASE("a legitimate call-center day is never flagged or blocked", "[fraud][scenarios]") {
    auto engine = engine_from(SBC_SCENARIO_POLICY);
    auto day = scenarios::callcenter_day();
    auto o = scenarios::run(day, *engine);
    CHECK(o.legit_events > 10000);
    CHECK(o.legit_flagged == 0);
    CHECK(o.legit_blocked == 0);
    CHECK(o.legit_max_score < 30);
    // Every call ended: no concurrent counter is left behind.
    for (int a = 0; a < 100; ++a)
        CHECK(engine->concurrent_calls(fraud::KeyKind::account, std::to_string(1000 + a)) == 0);
    CHECK(engine->counters()[fraud::Counter::concurrent_underflow] == 0);
}

TEST_CASE("internal extension calls at night are not international attempts",
          "[fraud][scenarios]") {
    auto engine = engine_from(SBC_SCENARIO_POLICY);
    auto o = scenarios::run(scenarios::extension_night(), *engine);
    CHECK(o.legit_events == 60);
    CHECK(o.legit_flagged == 0);
    INFO(o.legit_flag_rules);
    CHECK(o.legit_blocked == 0);
}
