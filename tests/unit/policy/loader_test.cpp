#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "policy/policy.hpp"

using namespace sbc::policy;

namespace {

const std::string kData = SBC_POLICY_TEST_DATA;
const std::string kExamples = std::string(SBC_SOURCE_DIR) + "/policy/examples";

Loaded<Policy> load_text(const std::string& text) {
    return load_policy_from_string(text, "test.toml");
}

bool has_error(const Loaded<Policy>& r, std::uint32_t line, const std::string& needle) {
    for (const auto& e : r.errors)
        if (e.line == line && e.message.find(needle) != std::string::npos) return true;
    return false;
}

std::string all_errors(const Loaded<Policy>& r) {
    std::string s;
    for (const auto& e : r.errors) s += e.to_string() + "\n";
    return s;
}

std::string strip_comments(const std::string& text) {
    std::istringstream in(text);
    std::string line, out;
    while (std::getline(in, line)) {
        if (auto hash = line.find("  # "); hash != std::string::npos) line.resize(hash);
        if (line.rfind("#", 0) == 0) continue;
        out += line + "\n";
    }
    return out;
}

}  // namespace

TEST_CASE("the example policies load and pass the checks", "[policy][loader]") {
    for (const char* name : {"callcenter.toml", "carrier-trunk.toml", "lab.toml"}) {
        INFO(name);
        auto r = load_policy({kExamples + "/" + name});
        INFO(all_errors(r));
        REQUIRE(r.ok());
        CHECK_FALSE(r.value->hash.empty());
        CHECK_FALSE(r.value->name.empty());
    }
}

TEST_CASE("the call-center example compiles into working lookups", "[policy][loader]") {
    auto r = load_policy({kExamples + "/callcenter.toml"});
    REQUIRE(r.ok());
    const Policy& p = *r.value;
    // irsf list comes from lists/irsf.txt plus Cuba (53) expanded from its country code.
    auto m = p.prefixes.lpm("88212345678");
    REQUIRE(m.matched());
    CHECK(m.category == PrefixCategory::irsf);
    CHECK(p.prefix_lists[m.lists[0]].name == "irsf");
    CHECK(p.prefixes.lpm("5371234567").category == PrefixCategory::irsf);
    CHECK(p.prefixes.lpm("33891234").category == PrefixCategory::premium);
    CHECK_FALSE(p.prefixes.lpm("33612345678").matched());
    // Scanners come from the included scanners.toml.
    CHECK(p.scanners.match("friendly-scanner") != nullptr);
    CHECK(p.scanners.match("Mozilla SIPVicious 0.3") != nullptr);
    CHECK(p.scanners.match("Yealink SIP-T46S") == nullptr);
    CHECK(p.source_files.size() == 3);
    // Access lists.
    CHECK(p.classify_source(*sbc::base::IpAddress::parse("192.0.2.200")) == SourceVerdict::denied);
    CHECK(p.classify_source(*sbc::base::IpAddress::parse("198.51.100.10")) ==
          SourceVerdict::trusted);
    CHECK(p.classify_source(*sbc::base::IpAddress::parse("203.0.113.9")) ==
          SourceVerdict::default_allow);
    // Account groups.
    REQUIRE(p.group_of("1042") != nullptr);
    CHECK(p.group_of("1042")->name == "agents");
    CHECK(p.group_of("2001")->name == "supervisors");
    CHECK(p.group_of("3001") == nullptr);
    CHECK(p.group_of("1042")->in_business_hours(0, 9 * 60));
    CHECK_FALSE(p.group_of("1042")->in_business_hours(6, 9 * 60));   // Sunday
    CHECK_FALSE(p.group_of("1042")->in_business_hours(5, 13 * 60));  // Saturday afternoon
    // Rate limits and fraud.
    CHECK(p.rate_limits.get(TrafficClass::sip_invite, LimitKey::source_address).rate == 5);
    CHECK(p.rate_limits.get(TrafficClass::sip_invite, LimitKey::source_address).burst == 20);
    CHECK_FALSE(p.rate_limits.get(TrafficClass::sip_other, LimitKey::account).enabled);
    CHECK(p.bans.duration_for(0) == 5 * 60 * sbc::base::kNanosPerSecond);
    CHECK(p.bans.duration_for(1) == 10 * 60 * sbc::base::kNanosPerSecond);
    CHECK(p.bans.duration_for(20) == p.bans.max);
    REQUIRE(p.fraud.rules.size() >= 3);
    CHECK(p.fraud.rules[0].id == "irsf-burst");
    CHECK(p.fraud.rules[0].list_indexes.size() == 1);
    // premium_attempts without `lists` counts every premium list.
    const auto& prem = p.fraud.rules[1];
    CHECK(prem.feature == Feature::premium_attempts);
    REQUIRE(prem.lists.size() == 1);
    CHECK(prem.lists[0] == "premium-fr");
    CHECK(prem.scope.time == TimeScope::off_hours);
}

TEST_CASE("every error is reported at once with file:line:column", "[policy][loader]") {
    const std::string path = kData + "/errors.toml";
    auto r = load_policy({path});
    REQUIRE_FALSE(r.ok());
    // Expected diagnostics are the "ERR" markers in the file itself.
    std::map<std::uint32_t, int> expected, got;
    std::ifstream in(path);
    std::string line;
    for (std::uint32_t n = 1; std::getline(in, line); ++n) {
        for (std::size_t at = line.find("ERR "); at != std::string::npos;
             at = line.find("ERR ", at + 1))
            expected[n]++;
    }
    for (const auto& e : r.errors) {
        CHECK(e.file == path);
        CHECK(e.column > 0);
        got[e.line]++;
    }
    INFO(all_errors(r));
    CHECK(got == expected);
    CHECK(has_error(r, 12, "did you mean 'per_account'"));
    CHECK(has_error(r, 48, "did you mean \"high_risk_attempts\""));
    CHECK(has_error(r, 52, "did you mean 'irsf'"));
    CHECK(has_error(r, 55, "duplicate rule id 'r1'"));
    CHECK(has_error(r, 29, "two categories"));
    CHECK(has_error(r, 7, "both allowed and denied"));
    // Errors come sorted in reading order.
    for (std::size_t i = 1; i < r.errors.size(); ++i)
        CHECK(r.errors[i - 1].line <= r.errors[i].line);
}

TEST_CASE("includes resolve relative to the including file, errors point at the right file",
          "[policy][loader]") {
    auto ok = load_policy({kData + "/include_main.toml"});
    INFO(all_errors(ok));
    REQUIRE(ok.ok());
    CHECK(ok.value->source_files.size() == 3);
    CHECK(ok.value->prefixes.lpm("88161234").length == 4);
    CHECK(ok.value->fraud.rules.at(0).list_indexes.size() == 1);

    auto bad = load_policy({kData + "/include_bad.toml"});
    REQUIRE_FALSE(bad.ok());
    INFO(all_errors(bad));
    auto find = [&](const std::string& file_suffix, std::uint32_t line, const std::string& text) {
        for (const auto& e : bad.errors)
            if (e.file.ends_with(file_suffix) && e.line == line &&
                e.message.find(text) != std::string::npos)
                return true;
        return false;
    };
    CHECK(find("include_bad.toml", 1, "cannot read included file"));
    CHECK(find("include_bad_part.toml", 2, "already set at"));
    CHECK(find("bad_prefixes.txt", 2, "'88x3'"));
    CHECK(find("bad_prefixes.txt", 5, "without '+'"));
    CHECK(bad.errors.size() == 4);

    auto cycle = load_policy({kData + "/include_cycle/a.toml"});
    REQUIRE_FALSE(cycle.ok());
    CHECK(cycle.errors.at(0).message.find("include cycle") != std::string::npos);
    CHECK(cycle.errors.at(0).file.ends_with("b.toml"));
}

TEST_CASE("a file included from two policies is read once", "[policy][loader]") {
    const std::string ex = kExamples;
    auto r = load_policy_from_string(
        "include = [\"" + ex + "/scanners.toml\", \"" + ex + "/scanners.toml\"]\n", "t.toml");
    INFO(all_errors(r));
    REQUIRE(r.ok());
    CHECK(r.value->scanners.user_agents.size() == 10);
    auto twice = load_policy({ex + "/lab.toml", ex + "/lab.toml"});
    REQUIRE_FALSE(twice.ok());
    CHECK(twice.errors.at(0).message.find("given twice") != std::string::npos);
}

TEST_CASE("includes and list files can be disabled for untrusted input", "[policy][loader]") {
    LoadOptions o;
    o.allow_includes = false;
    o.allow_file_lists = false;
    auto r = load_policy_from_string(
        "include = [\"/etc/passwd\"]\n[[prefix_lists]]\nname=\"a\"\ncategory=\"irsf\"\nfile=\"/etc/"
        "passwd\"\n",
        "fuzz.toml", o);
    REQUIRE_FALSE(r.ok());
    CHECK(has_error(r, 1, "include is disabled"));
    CHECK(has_error(r, 5, "prefix list files are disabled"));
}

TEST_CASE("syntax errors carry their position", "[policy][loader]") {
    auto r = load_text("[fraud]\nblock_threshold = = 3\n");
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].line == 2);
    CHECK(r.errors[0].message.find("TOML syntax") != std::string::npos);
}

TEST_CASE("wrong types, ranges and references", "[policy][loader]") {
    SECTION("wrong type") {
        auto r = load_text("[fraud]\nscore_cap = \"100\"\n");
        CHECK(has_error(r, 2, "'fraud.score_cap' must be a number, not a string"));
    }
    SECTION("unknown top-level key with suggestion") {
        auto r = load_text("[frau]\nmode = \"enforce\"\n");
        CHECK(has_error(r, 1, "did you mean 'fraud'"));
    }
    SECTION("a key in the wrong table says where it belongs") {
        auto r = load_text("[bans]\nblock_threshold = 50\n");
        CHECK(has_error(r, 2, "it belongs in [fraud]"));
    }
    SECTION("threshold above the cap") {
        auto r = load_text("[fraud]\nscore_cap = 50\n");
        CHECK(has_error(r, 1, "above score_cap"));
    }
    SECTION("dangling account group and tenant in a scope") {
        auto r = load_text(
            "[[account_groups]]\nname = \"agents\"\naccounts = [\"1\"]\ntenant = \"acme\"\n"
            "[[fraud.rules]]\nid = \"r\"\nfeature = \"attempts\"\nkey = \"account\"\nthreshold = "
            "1\nweight = 1\nscope.account_groups = [\"agent\"]\nscope.tenants = [\"acne\"]\n");
        CHECK(has_error(r, 11, "did you mean 'agents'"));
        CHECK(has_error(r, 12, "did you mean 'acme'"));
    }
    SECTION("an account in two groups") {
        auto r = load_text(
            "[[account_groups]]\nname = \"a\"\naccounts = [\"1\"]\n[[account_groups]]\nname = "
            "\"b\"\naccounts = [\"1\"]\n");
        CHECK(has_error(r, 6, "already in a group"));
    }
    SECTION("trusted inside denied") {
        auto r = load_text(
            "[access]\ndeny = [\"10.0.0.0/8\"]\n[[access.trusted]]\nname = \"t\"\ncidrs = "
            "[\"10.1.0.0/16\"]\n");
        CHECK(has_error(r, 5, "would never apply"));
    }
    SECTION("deny rule matching nothing and unknown country") {
        auto r = load_text(
            "[[fraud.deny]]\nid = \"d\"\n[[fraud.deny]]\nid = \"e\"\ncountries = "
            "[\"ZZ\"]\n");
        CHECK(has_error(r, 1, "matches nothing"));
        CHECK(has_error(r, 5, "not an ISO 3166-1"));
    }
    SECTION("stripping a mandatory header") {
        auto r = load_text("[topology]\nstrip_headers = [\"Via\", \"X-Foo\"]\n");
        CHECK(has_error(r, 2, "cannot be stripped"));
        CHECK(r.errors.size() == 1);
    }
    SECTION("lists only on destination features") {
        const std::string lists =
            "[[prefix_lists]]\nname = \"irsf\"\ncategory = \"irsf\"\nprefixes = [\"882\"]\n";
        auto bad = load_text(lists +
                             "[[fraud.rules]]\nid = \"r\"\nfeature = \"auth_failures\"\nkey = "
                             "\"source_ip\"\nthreshold = 5\nweight = 1\nlists = [\"irsf\"]\n");
        CHECK(has_error(bad, 11, "'lists' applies only to destination features"));
        for (const char* feature : {"attempts", "distinct_destinations"}) {
            INFO(feature);
            auto ok = load_text(lists + "[[fraud.rules]]\nid = \"r\"\nfeature = \"" + feature +
                                "\"\nkey = \"account\"\nthreshold = 5\nweight = 1\nlists = "
                                "[\"irsf\"]\n");
            INFO(all_errors(ok));
            REQUIRE(ok.ok());
            CHECK(ok.value->fraud.rules[0].lists == std::vector<std::string>{"irsf"});
            CHECK(ok.value->fraud.rules[0].list_indexes == std::vector<std::uint32_t>{0});
        }
    }
    SECTION("the same prefix in two lists of one category is allowed") {
        auto r = load_text(
            "[[prefix_lists]]\nname = \"a\"\ncategory = \"irsf\"\nprefixes = [\"882\"]\n"
            "[[prefix_lists]]\nname = \"b\"\ncategory = \"irsf\"\nprefixes = [\"882\"]\n");
        INFO(all_errors(r));
        REQUIRE(r.ok());
        auto m = r.value->prefixes.lpm("8821");
        CHECK(m.lists.size() == 2);
    }
}

TEST_CASE("show renders an effective policy that loads back to the same policy",
          "[policy][render]") {
    for (const char* name : {"callcenter.toml", "carrier-trunk.toml", "lab.toml"}) {
        INFO(name);
        auto r = load_policy({kExamples + "/" + name});
        REQUIRE(r.ok());
        std::string shown = render_policy(*r.value);
        auto again = load_policy_from_string(shown, "shown.toml");
        INFO(shown);
        INFO(all_errors(again));
        REQUIRE(again.ok());
        CHECK(strip_comments(render_policy(*again.value)) == strip_comments(shown));
    }
}

TEST_CASE("show keeps every number exact", "[policy][render]") {
    auto r = load_text(
        "[rate_limits.invite]\nper_source = { rate = 0.1234567891, burst = 1e6 }\n"
        "[[fraud.rules]]\nid = \"r\"\nfeature = \"short_call_ratio\"\nkey = \"account\"\n"
        "threshold = 0.333333333333\nweight = 12.75\n");
    REQUIRE(r.ok());
    auto again = load_policy_from_string(render_policy(*r.value), "shown.toml");
    REQUIRE(again.ok());
    const auto& a = r.value->rate_limits.get(TrafficClass::sip_invite, LimitKey::source_address);
    const auto& b =
        again.value->rate_limits.get(TrafficClass::sip_invite, LimitKey::source_address);
    CHECK(a.rate == b.rate);
    CHECK(a.burst == b.burst);
    CHECK(r.value->fraud.rules[0].threshold == again.value->fraud.rules[0].threshold);
    CHECK(again.value->fraud.rules[0].weight == 12.75);
}

TEST_CASE("defaults are filled in", "[policy][loader]") {
    auto r = load_text("");
    REQUIRE(r.ok());
    const auto& p = *r.value;
    CHECK(p.fraud.flag_threshold == 30);
    CHECK(p.fraud.block_threshold == 60);
    CHECK(p.fraud.ban_threshold == 90);
    CHECK(p.access.default_allow);
    CHECK(p.rate_limits.source_prefix_v4 == 24);
    CHECK(p.rate_limits.source_prefix_v6 == 64);
    CHECK_FALSE(p.prefixes.lpm("882").matched());
    std::string shown = render_policy(p);
    CHECK(shown.find("block_threshold = 60") != std::string::npos);
}

TEST_CASE("caller keys, directions, devices, callbacks and internal networks",
          "[policy][loader][fraud]") {
    const std::string base = R"([access]
internal = ["10.0.0.0/8", "192.168.0.0/16"]
[[access.trusted]]
name = "carrier"
cidrs = ["198.51.100.0/28"]
[[prefix_lists]]
name = "jm-scam"
category = "high_risk"
prefixes = ["1876555"]
[fraud]
callback_lists = ["jm-scam"]
callback_expiry = "3d"
callback_capacity = 4096
[[fraud.rules]]
id = "wangiri-sweep"
feature = "distinct_destinations"
key = "caller_prefix"
threshold = 5
weight = 100
scope.directions = ["inbound"]
[[fraud.rules]]
id = "device-sweep"
feature = "distinct_destinations"
key = "device"
threshold = 5
weight = 70
[[fraud.rules]]
id = "account-rate"
feature = "attempts"
key = "account"
threshold = 20
weight = 70
count_blocked = true
[[fraud.rules]]
id = "callback"
feature = "callback_short_ring"
key = "account"
threshold = 1
weight = 70
[[fraud.deny]]
id = "deny-scam"
callers = "jm-scam"
caller_countries = ["CU"]
)";
    auto r = load_text(base);
    INFO(all_errors(r));
    REQUIRE(r.ok());
    const Policy& p = *r.value;
    CHECK(p.access.internal.contains(*sbc::base::IpAddress::parse("10.1.2.3")));
    CHECK_FALSE(p.access.internal.contains(*sbc::base::IpAddress::parse("198.51.100.1")));
    CHECK(p.fraud.callback_lists == std::vector<std::string>{"jm-scam"});
    CHECK(p.fraud.callback_expiry == 3 * 86400 * sbc::base::kNanosPerSecond);
    CHECK(p.fraud.callback_capacity == 4096);
    REQUIRE(p.fraud.rules.size() == 4);
    CHECK(p.fraud.rules[0].key == RuleKey::caller_prefix);
    CHECK(p.fraud.rules[0].scope.directions == std::vector<std::string>{"inbound"});
    CHECK(p.fraud.rules[1].key == RuleKey::device);
    CHECK_FALSE(p.fraud.rules[1].count_blocked);
    CHECK(p.fraud.rules[2].count_blocked);
    CHECK(p.fraud.rules[3].feature == Feature::callback_short_ring);
    REQUIRE(p.fraud.deny.size() == 1);
    CHECK(p.fraud.deny[0].callers_list == 0);
    CHECK(p.fraud.deny[0].caller_countries == std::vector<std::string>{"CU"});
    // The effective policy loads back to the same keys.
    auto again = load_text(strip_comments(render_policy(p)));
    INFO(all_errors(again));
    REQUIRE(again.ok());
    CHECK(again.value->fraud.rules[2].count_blocked);
    CHECK(again.value->fraud.rules[0].scope.directions == p.fraud.rules[0].scope.directions);
    CHECK(again.value->access.internal_cidrs.size() == 2);
    CHECK(again.value->fraud.deny[0].callers == "jm-scam");

    // Mistakes point at file:line:column.
    auto bad = load_text(R"([access]
internal = ["10.0.0.0/33"]
[fraud]
callback_lists = ["nope"]
[[fraud.rules]]
id = "r"
feature = "attempts"
key = "caller"
threshold = 1
weight = 1
scope.directions = ["sideways"]
count_blocked = "yes"
[[fraud.deny]]
id = "d"
callers = "missing"
caller_countries = ["XX1"]
)");
    INFO(all_errors(bad));
    CHECK_FALSE(bad.ok());
    CHECK(has_error(bad, 2, "10.0.0.0/33"));
    CHECK(has_error(bad, 4, "nope"));
    CHECK(has_error(bad, 11, "sideways"));
    CHECK(has_error(bad, 12, "count_blocked"));
    CHECK(has_error(bad, 15, "missing"));
    CHECK(has_error(bad, 16, "XX1"));
    for (const auto& e : bad.errors) {
        CHECK(e.file == "test.toml");
        CHECK(e.column > 0);
    }
}

TEST_CASE("the numbering section's home country and extensions are checked",
          "[policy][loader][numbering]") {
    SECTION("a shared calling code needs a home country") {
        auto r = load_text("[numbering]\ndefault_country_code = \"1\"\n");
        REQUIRE_FALSE(r.ok());
        CHECK(has_error(r, 2, "home_country"));
        CHECK(r.errors[0].column == 24);
    }
    SECTION("the home country must be under the calling code") {
        auto r = load_text("[numbering]\ndefault_country_code = \"33\"\nhome_country = \"US\"\n");
        REQUIRE_FALSE(r.ok());
        CHECK(has_error(r, 3, "not reached by default_country_code"));
        auto r2 = load_text("[numbering]\nhome_country = \"US\"\n");
        CHECK(has_error(r2, 2, "needs 'numbering.default_country_code'"));
        auto r3 = load_text("[numbering]\ndefault_country_code = \"1\"\nhome_country = \"us\"\n");
        CHECK(has_error(r3, 3, "did you mean 'US'"));
    }
    SECTION("a home country follows from a code of one country") {
        auto r = load_text("[numbering]\ndefault_country_code = \"33\"\n");
        REQUIRE(r.ok());
        CHECK(r.value->numbering.home_country == "FR");
        auto jm = load_text("[numbering]\ndefault_country_code = \"1\"\nhome_country = \"JM\"\n");
        REQUIRE(jm.ok());
        CHECK(jm.value->numbering.home_country == "JM");
    }
    SECTION("extension patterns") {
        auto r = load_text(
            "[numbering]\ndefault_country_code = \"33\"\nextensions = [\"2XXX\", \"NXX\"]\n");
        REQUIRE(r.ok());
        CHECK(r.value->numbering.extensions == std::vector<std::string>{"2XXX", "NXX"});
        auto bad = load_text(
            "[numbering]\ndefault_country_code = \"33\"\nextensions = [\"2XXX\", \"2x\", "
            "\"00XX\", \"XXXX\", \"\"]\n");
        REQUIRE_FALSE(bad.ok());
        // Every bad pattern at once, each at its own column.
        std::vector<std::uint32_t> columns;
        for (const auto& e : bad.errors) {
            CHECK(e.line == 3);
            columns.push_back(e.column);
        }
        CHECK(columns == std::vector<std::uint32_t>{23, 29, 37, 45});
        CHECK(has_error(bad, 3, "'x' is not a digit"));
        CHECK(has_error(bad, 3, "start with the international prefix '00'"));
    }
}

TEST_CASE(
    "own networks: derived from [access] internal, refused where they overlap a trusted trunk") {
    // Derived: the company's networks are [access] internal; fraud keys them by account.
    auto derived = load_text(R"([access]
internal = ["10.0.0.0/8", "192.0.2.0/27"]
)");
    REQUIRE(derived.ok());
    REQUIRE(derived.value->fraud.own_networks.size() == 2);
    CHECK(derived.value->fraud.own_networks[1].to_string() == "192.0.2.0/27");
    // Given: it names the shared NATs among them, and they are internal for the direction.
    auto given = load_text(R"([access]
internal = ["10.0.0.0/8"]
[fraud]
own_networks = ["192.0.2.0/27"]
)");
    REQUIRE(given.ok());
    REQUIRE(given.value->fraud.own_networks.size() == 1);
    CHECK(given.value->access.internal.contains(*sbc::base::IpAddress::parse("192.0.2.9")));
    CHECK(given.value->access.internal.contains(*sbc::base::IpAddress::parse("10.0.0.1")));
    // Opted out explicitly: nothing keyed by account; the rendering keeps the opt-out.
    auto none = load_text(R"([access]
internal = ["10.0.0.0/8"]
[fraud]
own_networks = []
)");
    REQUIRE(none.ok());
    CHECK(none.value->fraud.own_networks.empty());
    auto again = load_text(strip_comments(render_policy(*none.value)));
    REQUIRE(again.ok());
    CHECK(again.value->fraud.own_networks.empty());
    // Contradictory: an own network overlapping a trusted trunk.
    for (const char* text : {R"([[access.trusted]]
name = "carrier"
cidrs = ["192.0.2.8/29"]
[fraud]
own_networks = ["192.0.2.0/27"]
)",
                             R"([access]
internal = ["198.51.100.10/32"]
[[access.trusted]]
name = "carrier"
cidrs = ["198.51.100.0/24"]
)"}) {
        auto bad = load_text(text);
        REQUIRE_FALSE(bad.ok());
        bool found = false;
        for (const auto& d : bad.errors)
            found =
                found || d.message.find("overlaps trusted trunk 'carrier'") != std::string::npos;
        CHECK(found);
    }
}
