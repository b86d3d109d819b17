#include <catch2/catch.hpp>

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
