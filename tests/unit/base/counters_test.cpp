#include <catch2/catch.hpp>

#include "base/counters.hpp"

#define TEST_REASONS(X) X(too_short, "packet too short") X(banned, "source banned")
SBC_DECLARE_COUNTER_LIST(TestReason, TEST_REASONS)

TEST_CASE("Counter lists generate enum, names and counters from one declaration") {
    STATIC_REQUIRE(kTestReasonCount == 2);
    CHECK(name(TestReason::banned) == "banned");
    CHECK(description(TestReason::too_short) == "packet too short");
    sbc::base::CounterSet<TestReason> a, b;
    a.add(TestReason::banned, 3);
    b.add(TestReason::banned);
    b.add(TestReason::too_short);
    a += b;
    CHECK(a[TestReason::banned] == 4);
    CHECK(a[TestReason::too_short] == 1);
}
