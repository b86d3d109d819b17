#include <catch2/catch.hpp>

#include "fraud/lookup.hpp"

using namespace sbc::fraud::detail;

TEST_CASE("digit trie ORs list bits along the path and reports the deepest match", "[fraud]") {
    DigitTrie t;
    t.add("88", 1, true);
    t.add("882", 2, true);
    t.add("8821", 4, true);
    auto w = t.walk("88216000");
    CHECK(w.mask == 7);
    CHECK(w.deepest == 4);
    CHECK(w.deepest_len == 4);
    CHECK(t.walk("33").mask == 0);
    CHECK(t.walk("883").mask == 1);
}

TEST_CASE("scanner user-agent globs are case-insensitive and match anywhere", "[fraud]") {
    CHECK(UaGlob("friendly-scanner").matches("friendly-scanner"));
    CHECK(UaGlob("sipvicious").matches("x sipvicious 0.3"));
    CHECK(UaGlob("sip*cli").matches("sipcli/v1.8"));
    CHECK_FALSE(UaGlob("sip*cli").matches("yealink sip-t46s"));
    CHECK_FALSE(UaGlob("*").matches("anything"));
}

TEST_CASE("account globs match whole strings", "[fraud]") {
    CHECK(sbc::base::glob_match("10*", "1001"));
    CHECK_FALSE(sbc::base::glob_match("10*", "2100"));
    CHECK(sbc::base::glob_match("*-agent", "x-agent"));
    CHECK(sbc::base::glob_match("a*b*c", "axxbyyc"));
    CHECK_FALSE(sbc::base::glob_match("a*b*c", "axxbyy"));
}

TEST_CASE("time zones come from TZif files with daylight saving", "[fraud][tz]") {
    auto paris = TimeZone::load("/usr/share/zoneinfo", "Europe/Paris");
    REQUIRE(paris.ok());
    CHECK(paris->offset_at(1'795'737'600) == 3600);  // 2026-11-27: CET
    CHECK(paris->offset_at(1'783'987'200) == 7200);  // 2026-07-14: CEST
    auto ny = TimeZone::load("/usr/share/zoneinfo", "America/New_York");
    REQUIRE(ny.ok());
    CHECK(ny->offset_at(1'795'737'600) == -5 * 3600);
    CHECK(TimeZone::load("/usr/share/zoneinfo", "Mars/Olympus").ok() == false);
    CHECK(TimeZone::load("/usr/share/zoneinfo", "../../etc/passwd").ok() == false);
    CHECK(TimeZone::load("/usr/share/zoneinfo", "UTC")->offset_at(0) == 0);
}

TEST_CASE("week map holds business minutes", "[fraud][tz]") {
    WeekMap m;
    m.add({0x1f, 8 * 60, 19 * 60});
    CHECK(m.contains(0, 8 * 60));
    CHECK_FALSE(m.contains(0, 19 * 60));
    CHECK(m.contains(4, 18 * 60 + 59));
    CHECK_FALSE(m.contains(5, 10 * 60));
}
