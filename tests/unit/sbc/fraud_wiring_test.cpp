// The policy -> engine mapping is 1:1: every name of the contract reaches the engine.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include "policy/policy.hpp"
#include "sbc/fraud_wiring.hpp"

using namespace sbc;

TEST_CASE("every fraud setting of the policy reaches the engine configuration", "[fraud][wiring]") {
    const char* toml = R"(
[numbering]
default_country_code = "33"

[scanners]
user_agents = ["friendly-scanner"]

[[prefix_lists]]
name = "irsf"
category = "irsf"
prefixes = ["882"]
countries = ["CU"]

[[account_groups]]
name = "agents"
account_patterns = ["10*"]
tenant = "acme"
timezone = "Europe/Paris"
business_hours = ["Mon-Fri 08:00-19:00"]
allowed_source_countries = ["FR"]

[fraud]
mode = "observe"
score_cap = 150
flag_threshold = 20
block_threshold = 50
ban_threshold = 80
ban_duration = "15m"
max_tracked_keys = 5000
idle_key_expiry = "30m"
short_call_seconds = 7

[[fraud.rules]]
id = "r1"
feature = "high_risk_attempts"
key = "tenant"
window = "10m"
op = ">"
threshold = 3
weight = 40
mode = "observe"
scope.tenants = ["acme"]
scope.account_groups = ["agents"]
scope.destinations = "irsf"
scope.time = "off_hours"
lists = ["irsf"]
min_attempts = 5

[[fraud.deny]]
id = "d1"
destinations = "irsf"
countries = ["KP"]
source_countries = ["NG"]
action = "ban"
)";
    auto loaded = policy::load_policy_from_string(toml, "wiring.toml");
    for (const auto& e : loaded.errors) UNSCOPED_INFO(e.to_string());
    REQUIRE(loaded.ok());
    auto c = fraud_config(*loaded.value);
    REQUIRE(c.ok());
    CHECK(c->mode == fraud::Mode::observe);
    CHECK(c->score_cap == 150);
    CHECK(c->flag_threshold == 20);
    CHECK(c->block_threshold == 50);
    CHECK(c->ban_threshold == 80);
    CHECK(c->ban_duration == 15 * 60 * base::kNanosPerSecond);
    CHECK(c->max_tracked_keys == 5000);
    CHECK(c->idle_key_expiry == 30 * 60 * base::kNanosPerSecond);
    CHECK(c->short_call_seconds == 7);
    CHECK(c->home_country_code == "33");
    CHECK(c->scanner_user_agents == std::vector<std::string>{"friendly-scanner"});
    REQUIRE(c->prefix_lists.size() == 1);
    CHECK(c->prefix_lists[0].category == fraud::Category::irsf);
    CHECK(std::find(c->prefix_lists[0].prefixes.begin(), c->prefix_lists[0].prefixes.end(), "53") !=
          c->prefix_lists[0].prefixes.end());  // CU expanded to its calling code
    REQUIRE(c->account_groups.size() == 1);
    const auto& g = c->account_groups[0];
    CHECK(g.account_patterns == std::vector<std::string>{"10*"});
    CHECK(g.tenant == "acme");
    CHECK(g.timezone == "Europe/Paris");
    REQUIRE(g.business_hours.size() == 1);
    CHECK(g.business_hours[0].days == 0x1f);
    CHECK(g.business_hours[0].start_minute == 8 * 60);
    CHECK(g.business_hours[0].end_minute == 19 * 60);
    CHECK(g.allowed_source_countries == std::vector<std::string>{"FR"});
    REQUIRE(c->rules.size() == 1);
    const auto& r = c->rules[0];
    CHECK(r.id == "r1");
    CHECK(r.feature == fraud::Feature::high_risk_attempts);
    CHECK(r.key == fraud::KeyKind::tenant);
    CHECK(r.window == 600 * base::kNanosPerSecond);
    CHECK(r.op == fraud::Op::gt);
    CHECK(r.threshold == 3);
    CHECK(r.weight == 40);
    CHECK(r.mode == fraud::Mode::observe);
    CHECK(r.scope.tenants == std::vector<std::string>{"acme"});
    CHECK(r.scope.account_groups == std::vector<std::string>{"agents"});
    CHECK(r.scope.destinations == "irsf");
    CHECK(r.scope.time == fraud::TimeScope::off_hours);
    CHECK(r.lists == std::vector<std::string>{"irsf"});
    CHECK(r.min_attempts == 5);
    REQUIRE(c->deny.size() == 1);
    CHECK(c->deny[0].ban);
    CHECK(c->deny[0].destinations == "irsf");
    CHECK(c->deny[0].countries == std::vector<std::string>{"KP"});
    CHECK(c->deny[0].source_countries == std::vector<std::string>{"NG"});
    CHECK(fraud::Engine::create(*c).ok());
}

TEST_CASE("every feature and key of the vocabulary reaches the engine's rules", "[fraud][wiring]") {
    // The policy and the engine share one vocabulary (base/fraud_vocabulary.hpp): a rule
    // written with any of its features (or keys) is handed to the engine unchanged.
    for (std::size_t i = 0; i < base::kFraudFeatureCount + base::kFraudKeyCount; ++i) {
        const bool feature = i < base::kFraudFeatureCount;
        const std::string f(feature ? base::kFraudFeatureNames[i] : "attempts");
        const std::string k(feature ? "account"
                                    : base::kFraudKeyNames[i - base::kFraudFeatureCount]);
        INFO(f << " per " << k);
        auto loaded = policy::load_policy_from_string(
            "[[fraud.rules]]\nid = \"r\"\nthreshold = 1\nweight = 10\nmin_attempts = 1\n"
            "feature = \"" +
                f + "\"\nkey = \"" + k + "\"\n",
            "wiring.toml");
        REQUIRE(loaded.ok());
        auto c = fraud_config(*loaded.value);
        REQUIRE(c.ok());
        REQUIRE(c->rules.size() == 1);
        CHECK(name(c->rules[0].feature) == f);
        CHECK(name(c->rules[0].key) == k);
    }
}

TEST_CASE("the example call-center policy compiles into an engine", "[fraud][wiring]") {
    auto loaded = policy::load_policy({SBC_CALLCENTER_POLICY});
    for (const auto& e : loaded.errors) UNSCOPED_INFO(e.to_string());
    REQUIRE(loaded.ok());
    auto e = make_fraud_engine(*loaded.value, "");
    REQUIRE(e.ok());
    CHECK((*e)->config().rules.size() == loaded.value->fraud.rules.size());
}

namespace {

// A policy with one distinct-count rule of the given threshold after `filler` other rules.
std::string distinct_policy(int threshold, int filler_rules) {
    std::string toml = "[fraud]\nmode = \"enforce\"\n";
    for (int i = 0; i < filler_rules; ++i)
        toml += "\n[[fraud.rules]]\nid = \"w" + std::to_string(i) +
                "\"\nfeature = \"attempts\"\nkey = \"account\"\nwindow = \"" +
                std::to_string(i + 1) + "s\"\nop = \">=\"\nthreshold = 100\nweight = 10\n";
    toml +=
        "\n  [[fraud.rules]]\nid = \"countries\"\nfeature = \"distinct_destination_countries\"\n"
        "key = \"account\"\nwindow = \"30m\"\nop = \">=\"\nthreshold = " +
        std::to_string(threshold) + "\nweight = 30\n";
    return toml;
}

std::uint32_t line_of(const std::string& toml, std::string_view needle) {
    auto at = toml.find(needle);
    return static_cast<std::uint32_t>(std::count(toml.begin(), toml.begin() + at, '\n') + 1);
}

}  // namespace

TEST_CASE("the engine's limits are refused at the rule's file:line:column", "[fraud][wiring]") {
    SECTION("within the limits: nothing to report") {
        auto loaded = policy::load_policy_from_string(distinct_policy(127, 3), "ok.toml");
        REQUIRE(loaded.ok());
        CHECK(check_fraud_engine(*loaded.value).empty());
    }
    SECTION("a distinct-count threshold above the engine's") {
        const auto toml = distinct_policy(128, 2);
        auto loaded = policy::load_policy_from_string(toml, "limits.toml");
        for (const auto& e : loaded.errors) UNSCOPED_INFO(e.to_string());
        REQUIRE(loaded.ok());  // valid TOML and policy: only the engine refuses it
        auto c = fraud_config(*loaded.value);
        REQUIRE(c.ok());
        auto created = fraud::Engine::create(*c);
        REQUIRE_FALSE(created.ok());
        auto errors = check_fraud_engine(*loaded.value);
        REQUIRE(errors.size() == 1);
        const auto line = line_of(toml, "  [[fraud.rules]]\nid = \"countries\"");
        CHECK(errors[0].to_string() == "limits.toml:" + std::to_string(line) +
                                           ":3: fraud engine: " + created.error().message);
        CHECK(errors[0].message.find("distinct-count thresholds above 127") != std::string::npos);
    }
    SECTION("more distinct windows than the engine has") {
        const auto toml = distinct_policy(5, 64);  // 64 windows of 1..64 s, then a 65th (30m)
        auto loaded = policy::load_policy_from_string(toml, "windows.toml");
        REQUIRE(loaded.ok());
        auto errors = check_fraud_engine(*loaded.value);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].file == "windows.toml");
        CHECK(errors[0].line == line_of(toml, "  [[fraud.rules]]\nid = \"countries\""));
        CHECK(errors[0].column == 3);
        CHECK(errors[0].message.find("at most 64 distinct rule windows") != std::string::npos);
    }
    SECTION("more prefix lists than the engine has") {
        std::string toml;
        for (int i = 0; i < 65; ++i)
            toml += "[[prefix_lists]]\nname = \"l" + std::to_string(i) +
                    "\"\ncategory = \"premium\"\nprefixes = [\"9" + std::to_string(i) + "\"]\n";
        auto loaded = policy::load_policy_from_string(toml, "lists.toml");
        for (const auto& e : loaded.errors) UNSCOPED_INFO(e.to_string());
        REQUIRE(loaded.ok());
        auto errors = check_fraud_engine(*loaded.value);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0].line == line_of(toml, "[[prefix_lists]]\nname = \"l64\""));
        CHECK(errors[0].column == 1);
        CHECK(errors[0].message.find("at most 64 prefix lists") != std::string::npos);
    }
}

namespace {

// A policy whose one rule blocks the first international attempt of an account.
std::unique_ptr<fraud::Engine> intl_engine(const std::string& numbering, policy::Numbering& out) {
    const std::string toml = "[numbering]\n" + numbering + R"(
[fraud]
mode = "enforce"
block_threshold = 50

[[fraud.rules]]
id = "intl"
feature = "international_attempts"
key = "account"
window = "10m"
op = ">="
threshold = 1
weight = 60
)";
    auto p = policy::load_policy_from_string(toml, "intl.toml");
    for (const auto& e : p.errors) INFO(e.to_string());
    REQUIRE(p.ok());
    out = p.value->numbering;
    auto e = make_fraud_engine(*p.value, "");
    REQUIRE(e);
    return std::move(*e);
}

// One attempt of its own account (windows never mix) to `dialed`, scored as the front door
// scores it: normalized, extensions flagged.
fraud::Verdict call(fraud::Engine& e, const policy::Numbering& n, const std::string& dialed) {
    static int seq = 0;
    const std::string id = "c" + std::to_string(++seq), account = "acct" + id;
    const std::string callee = n.normalize(dialed);
    fraud::CallAttempt a;
    a.now = seq * base::kNanosPerSecond;
    a.wall = 1'795'737'600LL * base::kNanosPerSecond + a.now;
    a.call_id = id;
    a.source.addr = *base::IpAddress::parse("192.0.2.10");
    a.source.port = 5060;
    a.account = account;
    a.callee = callee;
    a.callee_extension = n.is_extension(dialed);
    a.user_agent = "Yealink";
    fraud::Verdict v;
    e.on_attempt(a, v);
    return v;
}

std::string country(const fraud::Verdict& v) {
    return std::string(v.destination_country.data(), v.destination_country[0] ? 2 : 0);
}

}  // namespace

TEST_CASE("a US node: +1 calls abroad in the NANP are international, US calls are not",
          "[fraud][wiring][numbering]") {
    policy::Numbering n;
    auto e = intl_engine(
        "default_country_code = \"1\"\nnational_prefix = \"1\"\ninternational_prefix = "
        "\"011\"\nhome_country = \"US\"\nextensions = [\"2XXX\"]\n",
        n);
    struct Case {
        const char* dialed;
        const char* country;
        fraud::Action action;
    };
    const Case cases[] = {
        {"12125550100", "US", fraud::Action::allow},
        {"2125550100", "US", fraud::Action::allow},
        {"19075550100", "US", fraud::Action::allow},
        {"14165550100", "CA", fraud::Action::block},
        {"18765550100", "JM", fraud::Action::block},
        {"18095550100", "DO", fraud::Action::block},
        {"12845550100", "VG", fraud::Action::block},
        {"17875550100", "PR", fraud::Action::block},
        {"011442079460000", "GB", fraud::Action::block},
        {"18005550100", "", fraud::Action::allow},
        {"2001", "", fraud::Action::allow},
    };
    for (const auto& c : cases) {
        INFO(c.dialed);
        auto v = call(*e, n, c.dialed);
        CHECK(country(v) == c.country);
        CHECK(v.action == c.action);
    }
}

TEST_CASE("a Canadian node: US calls are international", "[fraud][wiring][numbering]") {
    policy::Numbering n;
    auto e = intl_engine(
        "default_country_code = \"1\"\nnational_prefix = \"1\"\ninternational_prefix = "
        "\"011\"\nhome_country = \"CA\"\n",
        n);
    CHECK(call(*e, n, "14165550100").action == fraud::Action::allow);
    CHECK(call(*e, n, "12125550100").action == fraud::Action::block);
}

TEST_CASE("internal extensions are not international attempts", "[fraud][wiring][numbering]") {
    policy::Numbering n;
    // "2001" would be +20 (Egypt) and "0N" the national prefix without the pattern.
    auto e = intl_engine("default_country_code = \"33\"\nextensions = [\"2XXX\", \"3XX\"]\n", n);
    CHECK(call(*e, n, "2001").action == fraud::Action::allow);
    CHECK(call(*e, n, "301").action == fraud::Action::allow);
    CHECK(call(*e, n, "0612345678").action == fraud::Action::allow);
    CHECK(call(*e, n, "0044207946000").action == fraud::Action::block);
    // Without the section's patterns the same short number is a call to Egypt.
    policy::Numbering plain;
    auto e2 = intl_engine("default_country_code = \"33\"\n", plain);
    CHECK(call(*e2, plain, "2001").action == fraud::Action::block);
}

TEST_CASE("a calling code shared by two countries is the first one's",
          "[fraud][wiring][numbering]") {
    policy::Numbering n;
    auto e = intl_engine("default_country_code = \"33\"\n", n);
    CHECK(country(call(*e, n, "+212612345678")) == "MA");  // not EH, listed after it
}
