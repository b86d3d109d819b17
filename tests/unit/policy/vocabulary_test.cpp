// Walks every word of the fraud rule language (base/fraud_vocabulary.hpp) through the policy
// loader and renderer: each is accepted under its name, read as the shared enum the engine
// scores by, and rendered back under the same name.
#include <catch2/catch.hpp>

#include <string>

#include "base/fraud_vocabulary.hpp"
#include "policy/policy.hpp"

using namespace sbc;
using namespace sbc::policy;

namespace {

std::string errors_of(const Loaded<Policy>& r) {
    std::string s;
    for (const auto& e : r.errors) s += e.to_string() + "\n";
    return s;
}

// One rule with the given fields (TOML lines), after a prefix list and an account group.
Loaded<Policy> load_rule(const std::string& fields, const std::string& category = "irsf",
                         const std::string& hours = "Mon-Fri 08:00-19:00") {
    const std::string text = "[[prefix_lists]]\nname = \"l\"\ncategory = \"" + category +
                             "\"\nprefixes = [\"882\"]\n"
                             "[[account_groups]]\nname = \"g\"\naccounts = [\"1\"]\n"
                             "business_hours = [\"" +
                             hours +
                             "\"]\n"
                             "[[fraud.rules]]\nid = \"r\"\nthreshold = 1\nweight = 10\n" +
                             fields;
    return load_policy_from_string(text, "vocabulary.toml");
}

bool renders(const Policy& p, const std::string& needle) {
    return render_policy(p).find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("every feature of the vocabulary is a policy feature", "[policy][vocabulary]") {
    for (std::size_t i = 0; i < base::kFraudFeatureCount; ++i) {
        const auto f = static_cast<base::FraudFeature>(i);
        const std::string n(name(f));
        INFO(n);
        auto r = load_rule("feature = \"" + n + "\"\nkey = \"account\"\nmin_attempts = 1\n");
        UNSCOPED_INFO(errors_of(r));
        REQUIRE(r.ok());
        REQUIRE(r.value->fraud.rules.size() == 1);
        CHECK(r.value->fraud.rules[0].feature == f);
        CHECK(renders(*r.value, "feature = \"" + n + "\""));
    }
    auto r = load_rule("feature = \"no_such_feature\"\nkey = \"account\"\n");
    CHECK_FALSE(r.ok());
}

TEST_CASE("every key of the vocabulary is a policy rule key", "[policy][vocabulary]") {
    for (std::size_t i = 0; i < base::kFraudKeyCount; ++i) {
        const auto k = static_cast<base::FraudKey>(i);
        const std::string n(name(k));
        INFO(n);
        auto r = load_rule("feature = \"attempts\"\nkey = \"" + n + "\"\n");
        UNSCOPED_INFO(errors_of(r));
        REQUIRE(r.ok());
        CHECK(r.value->fraud.rules[0].key == k);
        CHECK(renders(*r.value, "key = \"" + n + "\""));
    }
}

TEST_CASE("every operator, mode and time scope of the vocabulary is policy syntax",
          "[policy][vocabulary]") {
    for (std::size_t i = 0; i < base::kFraudOpCount; ++i) {
        const auto op = static_cast<base::FraudOp>(i);
        const std::string spelled(description(op));
        INFO(spelled);
        auto r = load_rule("feature = \"attempts\"\nkey = \"account\"\nop = \"" + spelled + "\"\n");
        UNSCOPED_INFO(errors_of(r));
        REQUIRE(r.ok());
        CHECK(r.value->fraud.rules[0].op == op);
    }
    for (std::size_t i = 0; i < base::kFraudModeCount; ++i) {
        const auto m = static_cast<base::FraudMode>(i);
        const std::string n(name(m));
        INFO(n);
        auto r = load_rule("feature = \"attempts\"\nkey = \"account\"\nmode = \"" + n + "\"\n");
        UNSCOPED_INFO(errors_of(r));
        REQUIRE(r.ok());
        CHECK(r.value->fraud.rules[0].mode == m);
    }
    for (std::size_t i = 0; i < base::kFraudTimeScopeCount; ++i) {
        const auto t = static_cast<base::FraudTimeScope>(i);
        const std::string n(name(t));
        INFO(n);
        auto r =
            load_rule("feature = \"attempts\"\nkey = \"account\"\nscope.time = \"" + n + "\"\n");
        UNSCOPED_INFO(errors_of(r));
        REQUIRE(r.ok());
        CHECK(r.value->fraud.rules[0].scope.time == t);
    }
}

TEST_CASE("every call direction but unknown scopes a policy rule", "[policy][vocabulary]") {
    for (std::size_t i = 0; i < base::kFraudDirectionCount; ++i) {
        const auto d = static_cast<base::FraudDirection>(i);
        const std::string n(name(d));
        INFO(n);
        auto r = load_rule("feature = \"attempts\"\nkey = \"account\"\nscope.directions = [\"" + n +
                           "\"]\n");
        if (d == base::FraudDirection::unknown) {
            CHECK_FALSE(r.ok());
            CHECK_FALSE(base::scope_direction(n).has_value());
            continue;
        }
        UNSCOPED_INFO(errors_of(r));
        REQUIRE(r.ok());
        CHECK(r.value->fraud.rules[0].scope.directions == std::vector<std::string>{n});
        CHECK(base::scope_direction(n) == d);
    }
}

TEST_CASE("every list category and weekday of the vocabulary is policy syntax",
          "[policy][vocabulary]") {
    for (std::size_t i = 0; i < base::kFraudCategoryCount; ++i) {
        const auto c = static_cast<base::FraudCategory>(i);
        const std::string n(name(c));
        INFO(n);
        auto r = load_rule("feature = \"attempts\"\nkey = \"account\"\n", n);
        UNSCOPED_INFO(errors_of(r));
        REQUIRE(r.ok());
        REQUIRE(r.value->prefix_lists.size() == 1);
        CHECK(r.value->prefix_lists[0].category == c);
        CHECK(renders(*r.value, "category = \"" + n + "\""));
    }
    for (std::size_t d = 0; d < base::kWeekdayNames.size(); ++d) {
        const std::string n(base::kWeekdayNames[d]);
        INFO(n);
        auto r =
            load_rule("feature = \"attempts\"\nkey = \"account\"\n", "irsf", n + " 09:00-12:00");
        UNSCOPED_INFO(errors_of(r));
        REQUIRE(r.ok());
        REQUIRE(r.value->account_groups.size() == 1);
        REQUIRE(r.value->account_groups[0].business_hours.size() == 1);
        CHECK(r.value->account_groups[0].business_hours[0].days == (1u << d));
        CHECK(renders(*r.value, n + " 09:00-12:00"));
    }
}
