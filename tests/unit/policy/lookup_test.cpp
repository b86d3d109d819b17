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

TEST_CASE("prefix table longest match agrees with a brute-force scan", "[policy][lookup]") {
    std::mt19937 rng(42);
    std::vector<PrefixTable::Entry> entries;
    std::set<std::string> prefixes;
    for (int i = 0; i < 3000; ++i) {
        std::string d = random_digits(rng, 1 + rng() % 7);
        if (!prefixes.insert(d).second) continue;
        entries.push_back({d, static_cast<std::uint32_t>(i % 5), PrefixCategory::custom});
    }
    auto table = PrefixTable::build(entries);
    CHECK(table.prefix_count() == prefixes.size());
    for (int i = 0; i < 20000; ++i) {
        std::string number = random_digits(rng, 1 + rng() % 12);
        std::size_t best = 0;
        for (std::size_t len = 1; len <= number.size(); ++len)
            if (prefixes.count(number.substr(0, len))) best = len;
        auto m = table.lpm(number);
        INFO(number);
        REQUIRE(m.length == best);
        if (best) {
            REQUIRE(m.lists.size() == 1);
            PrefixMatch all[16];
            auto n = table.all_matches(number, all);
            REQUIRE(n >= 1);
            CHECK(all[n - 1].length == best);
            for (std::size_t k = 1; k < n; ++k) CHECK(all[k - 1].length < all[k].length);
        }
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
