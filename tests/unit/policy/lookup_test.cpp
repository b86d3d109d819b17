#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "policy/policy.hpp"

using namespace sbc::policy;
using sbc::base::IpAddress;
using sbc::base::Prefix;

namespace {
std::string random_digits(std::mt19937& rng, std::size_t len) {
    std::string s;
    for (std::size_t i = 0; i < len; ++i) s.push_back(static_cast<char>('0' + rng() % 10));
    return s;
}
}  // namespace

namespace {
// Checks lpm(), lpm_batch() and all_matches() against a scan of every prefix length.
void check_against_brute_force(std::size_t prefix_target, std::size_t max_len) {
    std::mt19937 rng(static_cast<unsigned>(prefix_target));
    std::vector<PrefixTable::Entry> entries;
    std::set<std::string> prefixes;
    for (std::size_t i = 0; prefixes.size() < prefix_target; ++i) {
        std::string d = random_digits(rng, 1 + rng() % max_len);
        if (!prefixes.insert(d).second) continue;
        entries.push_back({d, static_cast<std::uint32_t>(i % 5), PrefixCategory::custom});
    }
    auto table = PrefixTable::build(entries);
    REQUIRE(table.prefix_count() == prefixes.size());
    std::vector<std::string> numbers;
    for (int i = 0; i < 20000; ++i) {
        std::string n = (i % 2) ? entries[rng() % entries.size()].digits : std::string();
        n += random_digits(rng, 1 + rng() % 12);
        if (i % 97 == 0) n[n.size() / 2] = '#';  // non-digits end the walk
        numbers.push_back(n);
    }
    std::vector<std::string_view> views(numbers.begin(), numbers.end());
    std::vector<PrefixMatch> batch(views.size());
    table.lpm_batch(views, batch);
    for (std::size_t i = 0; i < numbers.size(); ++i) {
        const std::string& number = numbers[i];
        std::size_t best = 0;
        for (std::size_t len = 1; len <= number.size(); ++len) {
            if (number[len - 1] == '#') break;
            if (prefixes.count(number.substr(0, len))) best = len;
        }
        auto m = table.lpm(number);
        INFO(number);
        REQUIRE(m.length == best);
        REQUIRE(batch[i].length == best);
        PrefixMatch all[16];
        auto n = table.all_matches(number, all);
        std::size_t expected_all = 0;
        for (std::size_t len = 1; len <= std::min<std::size_t>(number.size(), 16); ++len) {
            if (number[len - 1] == '#') break;
            expected_all += prefixes.count(number.substr(0, len));
        }
        REQUIRE(n == expected_all);
        if (best) {
            REQUIRE(m.lists.size() == 1);
            CHECK(all[n - 1].length == best);
            for (std::size_t k = 1; k < n; ++k) CHECK(all[k - 1].length < all[k].length);
        }
    }
}
}  // namespace

TEST_CASE("prefix table longest match agrees with a brute-force scan", "[policy][lookup]") {
    SECTION("small table (4-digit direct index)") {
        check_against_brute_force(3000, 7);
    }
    SECTION("large table (6-digit direct index)") {
        check_against_brute_force(30000, 9);
    }
}

TEST_CASE("prefix table keeps every list of a shared prefix and its category", "[policy][lookup]") {
    auto t = PrefixTable::build({{"882", 0, PrefixCategory::irsf},
                                 {"882", 2, PrefixCategory::irsf},
                                 {"88216", 1, PrefixCategory::premium},
                                 {"1", 3, PrefixCategory::domestic}});
    auto m = t.lpm("882123");
    REQUIRE(m.matched());
    CHECK(m.length == 3);
    CHECK(m.category == PrefixCategory::irsf);
    CHECK(std::vector<std::uint32_t>(m.lists.begin(), m.lists.end()) ==
          std::vector<std::uint32_t>{0, 2});
    CHECK(t.lpm("8821699").category == PrefixCategory::premium);
    CHECK(t.lpm("12").length == 1);  // shorter than the direct table
    CHECK(t.lpm("1").length == 1);
    CHECK_FALSE(t.lpm("").matched());
    CHECK_FALSE(t.lpm("88").matched());
    CHECK(t.lpm("882+1").length == 3);  // non-digit stops the walk
    CHECK_FALSE(t.lpm("+882").matched());
    PrefixTable empty;
    CHECK_FALSE(empty.lpm("882").matched());
}

TEST_CASE("CIDR sets match the longest prefix of each family", "[policy][lookup]") {
    CidrSet s;
    s.add(*Prefix::parse("10.0.0.0/8"), 1);
    s.add(*Prefix::parse("10.1.0.0/16"), 2);
    s.add(*Prefix::parse("2001:db8::/32"), 3);
    s.add(*Prefix::parse("192.0.2.7"), 4);
    s.finalize();
    CHECK(s.longest(*IpAddress::parse("10.1.2.3"))->tag == 2);
    CHECK(s.longest(*IpAddress::parse("10.2.2.3"))->tag == 1);
    CHECK(s.longest(*IpAddress::parse("2001:db8::1"))->tag == 3);
    CHECK(s.longest(*IpAddress::parse("192.0.2.7"))->tag == 4);
    CHECK_FALSE(s.contains(*IpAddress::parse("192.0.2.8")));
    CHECK_FALSE(s.contains(*IpAddress::parse("11.0.0.1")));
    CHECK_FALSE(s.contains(*IpAddress::parse("::ffff:0:0")));
}

TEST_CASE("scanner globs match anywhere, case-insensitively", "[policy][lookup]") {
    Glob g("sipvicious");
    CHECK(g.matches("friendly SIPVicious scanner"));
    CHECK_FALSE(g.matches("sipvic"));
    Glob w("portsip*(fake)");
    CHECK(w.matches("PortSIP VoIP SDK 11 (fake)"));
    CHECK_FALSE(w.matches("(fake) PortSIP"));
}

TEST_CASE("account globs match whole strings", "[policy][lookup]") {
    ExactGlob g("10*");
    CHECK(g.matches("10"));
    CHECK(g.matches("1042"));
    CHECK_FALSE(g.matches("2104"));
    ExactGlob m("a*b*c");
    CHECK(m.matches("abc"));
    CHECK(m.matches("aXbYbZc"));
    CHECK_FALSE(m.matches("aXbYcZ"));
    CHECK(ExactGlob("*").matches(""));
    CHECK_FALSE(ExactGlob("1001").matches("10011"));
}
