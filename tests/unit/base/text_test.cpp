#include "base/text.hpp"

#include <catch2/catch.hpp>

using namespace sbc::base;

TEST_CASE("to_lower folds ASCII letters only") {
    STATIC_REQUIRE(to_lower('A') == 'a');
    STATIC_REQUIRE(to_lower('z') == 'z');
    STATIC_REQUIRE(to_lower('@') == '@');
    STATIC_REQUIRE(to_lower('[') == '[');
    CHECK(to_lower("Via: SIP/2.0 \xC3\x89") == "via: sip/2.0 \xC3\x89");
    CHECK(to_lower("") == "");
}

TEST_CASE("iequals compares ASCII case-insensitively") {
    CHECK(iequals("Content-Type", "content-TYPE"));
    CHECK(iequals("", ""));
    CHECK_FALSE(iequals("Via", "Vias"));
    CHECK_FALSE(iequals("abc", "abd"));
    // Not a bit trick: '@' and '`', '[' and '{' differ only in bit 0x20 but are not letters.
    CHECK_FALSE(iequals("@", "`"));
    CHECK_FALSE(iequals("[", "{"));
}

TEST_CASE("glob_match matches whole strings, case-sensitive") {
    CHECK(glob_match("10*", "1001"));
    CHECK(glob_match("10*", "10"));
    CHECK_FALSE(glob_match("10*", "2100"));
    CHECK(glob_match("*-agent", "x-agent"));
    CHECK(glob_match("a*b*c", "axxbyyc"));
    CHECK_FALSE(glob_match("a*b*c", "axxbyy"));
    CHECK(glob_match("*", ""));
    CHECK(glob_match("", ""));
    CHECK_FALSE(glob_match("", "x"));
    CHECK(glob_match("exact", "exact"));
    CHECK_FALSE(glob_match("Exact", "exact"));
    // Backtracking: the first 'b' is not the one that must match.
    CHECK(glob_match("*ab", "aab"));
    CHECK(glob_match("a*ab*", "aXaab"));
}

TEST_CASE("iglob_match matches whole strings, case-insensitive") {
    CHECK(iglob_match("X-*", "x-internal-id"));
    CHECK(iglob_match("*-Internal", "X-INTERNAL"));
    CHECK_FALSE(iglob_match("X-*", "Via"));
    CHECK(iglob_match("server", "Server"));
    CHECK_FALSE(iglob_match("server", "Servers"));
    CHECK(iglob_match("X-*-Id", "x-a-b-id"));
    CHECK_FALSE(iglob_match("X-*-Id", "x-id"));
}

TEST_CASE("SubstringGlob finds its literal runs in order, anywhere, case-insensitive") {
    const SubstringGlob g("friendly*scanner");
    CHECK(g.matches("Friendly-Scanner 1.0"));
    CHECK(g.matches("the FRIENDLY thing, a scanner"));
    CHECK_FALSE(g.matches("scanner friendly"));  // order matters
    CHECK_FALSE(g.matches("friendlyscanne"));
    CHECK(g.matches_lowered("xx friendly yy scanner"));
    CHECK_FALSE(g.matches_lowered("FRIENDLY SCANNER"));  // the caller promised lower case
    CHECK_FALSE(g.empty());
    // Pieces do not overlap: "aa*aa" needs four a's.
    CHECK_FALSE(SubstringGlob("aa*aa").matches("aaa"));
    CHECK(SubstringGlob("aa*aa").matches("aaaa"));
    CHECK(SubstringGlob("*").empty());
    CHECK(SubstringGlob("").empty());
    CHECK(SubstringGlob("**").matches("anything"));
}
