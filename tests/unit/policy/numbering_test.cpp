#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "policy/policy.hpp"

using namespace sbc::policy;

TEST_CASE("dialed numbers normalize to E.164 digits", "[policy][numbering]") {
    Numbering n;
    n.default_country_code = "33";
    CHECK(n.normalize("0612345678") == "33612345678");
    CHECK(n.normalize("+44 20 7946 0000") == "442079460000");
    CHECK(n.normalize("0044-20-7946-0000") == "442079460000");
    CHECK(n.normalize("sip:+8821234@example.com;user=phone") == "8821234");
    CHECK(n.normalize("tel:+1-876-555-0100") == "18765550100");
    CHECK(n.normalize("112") == "112");
    CHECK(n.normalize("06abc").empty());
    CHECK(n.normalize("").empty());
    CHECK(n.normalize("++33").empty());
    Numbering no_cc;
    CHECK(no_cc.normalize("0612345678").empty());  // national number, no country to add
}

TEST_CASE("destination country by longest calling code", "[policy][numbering]") {
    CHECK(destination_country("33612345678") == "FR");
    CHECK(destination_country("18765550100") == "JM");
    CHECK(destination_country("12125550100") == "US");
    CHECK(destination_country("14165550100") == "CA");
    CHECK(destination_country("4414815550") == "GG");
    CHECK(destination_country("442079460000") == "GB");
    CHECK(destination_country("5371234567") == "CU");
    CHECK(destination_country("8821234").empty());  // international networks, no country
    CHECK(calling_codes_of("DO").size() == 3);
    CHECK(calling_codes_of("XX").empty());
    for (const auto& c : country_calling_codes()) {
        CHECK(c.iso.size() == 2);
        CHECK_FALSE(c.code.empty());
    }
}

// NANPA area codes (one real NPA each, more for countries with several) and their country.
TEST_CASE("the North American Numbering Plan maps +1 by area code", "[policy][numbering]") {
    const std::map<std::string, std::vector<std::string>> nanp = {
        {"US", {"212", "415", "907", "808", "202", "900"}},
        {"CA", {"416", "514", "604", "867", "902", "204"}},
        {"AG", {"268"}},
        {"AI", {"264"}},
        {"AS", {"684"}},
        {"BB", {"246"}},
        {"BM", {"441"}},
        {"BS", {"242"}},
        {"DM", {"767"}},
        {"DO", {"809", "829", "849"}},
        {"GD", {"473"}},
        {"GU", {"671"}},
        {"JM", {"876", "658"}},
        {"KN", {"869"}},
        {"KY", {"345"}},
        {"LC", {"758"}},
        {"MP", {"670"}},
        {"MS", {"664"}},
        {"PR", {"787", "939"}},
        {"SX", {"721"}},
        {"TC", {"649"}},
        {"TT", {"868"}},
        {"VC", {"784"}},
        {"VG", {"284"}},
        {"VI", {"340"}},
    };
    CHECK(nanp.size() == 25);  // every NANP country and territory
    for (const auto& [iso, npas] : nanp) {
        for (const auto& npa : npas) {
            INFO(iso << " +1 " << npa);
            CHECK(destination_country("1" + npa + "5550100") == iso);
            const auto codes = calling_codes_of(iso);
            CHECK(std::find(codes.begin(), codes.end(), "1" + npa) != codes.end());
        }
    }
    // Toll-free and unassigned area codes belong to no country (not "the last +1 added").
    CHECK(destination_country("18005550100").empty());
    CHECK(destination_country("19995550100").empty());
    // A NANP country's codes are its area codes only: a prefix list of Canada is not the
    // whole of +1.
    for (auto code : calling_codes_of("CA")) CHECK(code.size() == 4);
    for (auto code : calling_codes_of("US")) CHECK(code.size() == 4);
    CHECK(calling_codes_of("US").size() > 300);
    CHECK(is_country_calling_code("1"));
    CHECK(is_country_calling_code("33"));
    CHECK_FALSE(is_country_calling_code("999"));
}

TEST_CASE("no calling code is listed twice for one zone of the plan", "[policy][numbering]") {
    // A code listed for two countries is answered by the first only: within the NANP every
    // area code must be unique.
    std::map<std::string_view, std::set<std::string_view>> by_code;
    for (const auto& c : country_calling_codes()) by_code[c.code].insert(c.iso);
    for (const auto& [code, isos] : by_code) {
        INFO(code);
        if (code.starts_with("1")) CHECK(isos.size() == 1);
    }
    CHECK(by_code.count("1") == 0);
}

TEST_CASE("the home country of a calling code", "[policy][numbering]") {
    CHECK(home_country_of("33") == "FR");
    CHECK(home_country_of("44") == "GB");
    CHECK(home_country_of("1").empty());    // NANP: 25 countries
    CHECK(home_country_of("590").empty());  // GP, BL, MF
}

TEST_CASE("NANP ten-digit dialing is national", "[policy][numbering]") {
    Numbering n;
    n.default_country_code = "1";
    n.national_prefix = "1";
    n.international_prefix = "011";
    CHECK(n.normalize("2125550100") == "12125550100");  // not +212 (Morocco)
    CHECK(n.normalize("12125550100") == "12125550100");
    CHECK(n.normalize("011442079460000") == "442079460000");
    CHECK(n.normalize("911") == "911");
    Numbering fr;
    fr.default_country_code = "33";
    CHECK(fr.normalize("2125550100") == "2125550100");  // only under +1
}

TEST_CASE("internal extensions are recognized by pattern and kept as dialed",
          "[policy][numbering]") {
    Numbering n;
    n.default_country_code = "33";
    n.extensions = {"2XXX", "0N"};
    CHECK(n.is_extension("2001"));
    CHECK(n.is_extension("sip:2001@pbx.example.com"));
    CHECK(n.normalize("2001") == "2001");
    CHECK_FALSE(n.is_extension("20011"));  // a pattern matches its length only
    CHECK_FALSE(n.is_extension("3001"));
    CHECK_FALSE(n.is_extension("2a01"));
    CHECK(n.is_extension("05"));
    CHECK(n.normalize("05") == "05");   // not the national prefix + "5"
    CHECK_FALSE(n.is_extension("01"));  // N is 2-9
    CHECK(n.normalize("0612345678") == "33612345678");
    Numbering none;
    CHECK_FALSE(none.is_extension("2001"));
    CHECK(Numbering::check_extension_pattern("2XXX").empty());
    CHECK(Numbering::check_extension_pattern("ZNX").empty());
    CHECK_FALSE(Numbering::check_extension_pattern("2xxx").empty());
    CHECK_FALSE(Numbering::check_extension_pattern("").empty());
    CHECK_FALSE(Numbering::check_extension_pattern("+2XX").empty());
    CHECK_FALSE(Numbering::check_extension_pattern("1234567890123456").empty());
}
