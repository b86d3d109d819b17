#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "base/fraud_vocabulary.hpp"

using namespace sbc::base;

namespace {

// Every name of a list is a distinct policy identifier (lower case, digits, '_') with a
// description, and name() of each value reads its own entry.
template <class Enum, std::size_t N>
void check_list(const std::array<std::string_view, N>& names,
                const std::array<std::string_view, N>& descriptions) {
    std::set<std::string_view> seen;
    for (std::size_t i = 0; i < N; ++i) {
        INFO(names[i]);
        CHECK_FALSE(names[i].empty());
        for (char c : names[i])
            CHECK(((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'));
        CHECK_FALSE(descriptions[i].empty());
        CHECK(seen.insert(names[i]).second);
        CHECK(name(static_cast<Enum>(i)) == names[i]);
    }
}

}  // namespace

TEST_CASE("the fraud vocabulary's lists are well formed", "[base][vocabulary]") {
    check_list<FraudFeature>(kFraudFeatureNames, kFraudFeatureDescriptions);
    check_list<FraudKey>(kFraudKeyNames, kFraudKeyDescriptions);
    check_list<FraudOp>(kFraudOpNames, kFraudOpDescriptions);
    check_list<FraudCategory>(kFraudCategoryNames, kFraudCategoryDescriptions);
    check_list<FraudMode>(kFraudModeNames, kFraudModeDescriptions);
    check_list<FraudTimeScope>(kFraudTimeScopeNames, kFraudTimeScopeDescriptions);
    check_list<FraudDirection>(kFraudDirectionNames, kFraudDirectionDescriptions);
    std::set<std::string_view> days(kWeekdayNames.begin(), kWeekdayNames.end());
    CHECK(days.size() == 7);
}

TEST_CASE("operators compare as spelled", "[base][vocabulary]") {
    for (std::size_t i = 0; i < kFraudOpCount; ++i) {
        const auto op = static_cast<FraudOp>(i);
        const std::string_view s = description(op);
        INFO(s);
        // The spelling decides: '<' or '>' orders, '=' admits equality.
        const bool lt = s.find('<') != std::string_view::npos;
        const bool gt = s.find('>') != std::string_view::npos;
        const bool eq = s.find('=') != std::string_view::npos;
        CHECK(compare(op, 1, 2) == lt);
        CHECK(compare(op, 2, 1) == gt);
        CHECK(compare(op, 1, 1) == eq);
    }
}

TEST_CASE("a scope names every direction but unknown", "[base][vocabulary]") {
    CHECK_FALSE(scope_direction("unknown"));
    CHECK_FALSE(scope_direction("sideways"));
    CHECK(scope_direction("inbound") == FraudDirection::inbound);
    CHECK(scope_direction("outbound") == FraudDirection::outbound);
    CHECK(scope_direction("internal") == FraudDirection::internal);
}
