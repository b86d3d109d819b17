// Replay's pure parts: call outcomes and the per-call comparison of two policies' runs.
#include "sbc/replay.hpp"

#include <catch2/catch.hpp>

namespace {

sbc::CallRecord call(const std::string& id, sbc::fraud::Action a, std::vector<std::string> rules) {
    sbc::CallRecord c;
    c.call_id = id;
    c.action = a;
    c.reasons = std::move(rules);
    return c;
}

}  // namespace

TEST_CASE("replay: call outcomes") {
    sbc::CallRecord c;
    CHECK(c.outcome() == "unanswered");
    c.end = sbc::fraud::Outcome::cancelled;
    CHECK(c.outcome() == "cancelled");
    c.end = sbc::fraud::Outcome::busy;
    CHECK(c.outcome() == "failed");
    c.answered = 10;
    c.ended = 20;
    c.end = sbc::fraud::Outcome::answered;
    CHECK(c.outcome() == "completed");
    c.action = sbc::fraud::Action::ban;
    CHECK(c.outcome() == "blocked");
}

TEST_CASE("replay: comparison lists differing verdicts and per-rule changes") {
    using A = sbc::fraud::Action;
    sbc::ReplayResult a, b;
    a.calls = {call("same", A::allow, {}), call("x", A::block, {"irsf", "rate"}),
               call("only-a", A::allow, {"rate"})};
    b.calls = {call("same", A::allow, {}), call("x", A::flag, {"irsf"})};
    auto cmp = sbc::compare_replays(a, b);
    REQUIRE(cmp.differing.size() == 2);
    CHECK(cmp.differing[0].call_id == "only-a");
    CHECK(cmp.differing[0].b == nullptr);
    CHECK(cmp.differing[1].call_id == "x");
    CHECK(cmp.differing[1].a->action == A::block);
    CHECK(cmp.differing[1].b->action == A::flag);
    CHECK(cmp.rule_changes.at("rate") == std::pair<std::uint64_t, std::uint64_t>{2, 0});
    CHECK(cmp.rule_changes.count("irsf") == 0);
    const auto text = sbc::comparison_text(cmp);
    CHECK(text.find("x: block") != std::string::npos);
    CHECK(text.find("=>  flag") != std::string::npos);
}
