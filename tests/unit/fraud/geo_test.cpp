#include <catch2/catch.hpp>
#include <cstdlib>

#include "fraud/fraud.hpp"
#include "helpers.hpp"

using namespace sbc::fraud;
using namespace sbc::fraud::test;

namespace {
std::string geo_db_path() {
    const char* p = std::getenv("SBC_TEST_GEOIP_DB");
    if (!p)
        FAIL(
            "SBC_TEST_GEOIP_DB is not set: run through ctest (it writes the database with "
            "tests/data/fraud/make_geoip_db.pl; apt-get install libmaxmind-db-writer-perl)");
    return p;
}
}  // namespace

TEST_CASE("GeoIP maps addresses to countries from a MaxMind database", "[fraud][geo]") {
    auto db = GeoIp::open(geo_db_path());
    REQUIRE(db.ok());
    auto& g = **db;
    CHECK(g.country(*sbc::base::IpAddress::parse("192.0.2.1")) == "FR");
    CHECK(g.country(*sbc::base::IpAddress::parse("203.0.113.200")) == "RU");
    CHECK(g.country(*sbc::base::IpAddress::parse("2001:db8::5")) == "DE");
    CHECK(g.country(*sbc::base::IpAddress::parse("100.64.0.1")) == "");
    CHECK_FALSE(GeoIp::open("/nonexistent.mmdb").ok());
}

TEST_CASE("the engine looks the source country up when the event has none", "[fraud][geo]") {
    auto db = GeoIp::open(geo_db_path());
    REQUIRE(db.ok());
    auto cfg = base_config();
    cfg.geoip = *db;
    cfg.deny.push_back({"deny-ru", "", {}, {"RU"}, false, {}, {}});
    auto e = Engine::create(cfg);
    REQUIRE(e.ok());
    Call c;
    c.call_id = "1";
    c.src = "203.0.113.130";
    Verdict v;
    (*e)->on_attempt(attempt(c, 0), v);
    CHECK(v.action == Action::block);
    CHECK(std::string(v.source_country.data()) == "RU");
    c.call_id = "2";
    c.src = "192.0.2.1";
    (*e)->on_attempt(attempt(c, kSec), v);
    CHECK(v.action == Action::allow);
    CHECK(std::string(v.source_country.data()) == "FR");
}
