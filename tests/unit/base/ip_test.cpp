#include <catch2/catch.hpp>

#include "base/ip.hpp"

using sbc::base::IpAddress;
using sbc::base::Prefix;

TEST_CASE("IPv4 addresses parse, print and classify") {
    auto a = IpAddress::parse("203.0.113.9");
    REQUIRE(a);
    CHECK(a->is_v4());
    CHECK(a->v4_value() == 0xCB007109u);
    CHECK(a->to_string() == "203.0.113.9");
    CHECK(IpAddress::parse("127.0.0.5")->is_loopback());
    CHECK_FALSE(IpAddress::parse("256.1.1.1"));
    CHECK_FALSE(IpAddress::parse("1.2.3"));
    CHECK_FALSE(IpAddress::parse(""));
    CHECK_FALSE(IpAddress::parse(std::string(100, '1')));
}

TEST_CASE("IPv6 addresses parse with and without brackets") {
    auto a = IpAddress::parse("[2001:db8::1]");
    REQUIRE(a);
    CHECK(a->is_v6());
    CHECK(a->to_string() == "2001:db8::1");
    CHECK(IpAddress::parse("::1")->is_loopback());
    CHECK(IpAddress::parse("::")->is_unspecified());
    CHECK_FALSE(IpAddress::parse("2001:db8:::1"));
}

TEST_CASE("Prefixes clear host bits and test containment per family") {
    auto p = Prefix::parse("10.1.2.3/8");
    REQUIRE(p);
    CHECK(p->to_string() == "10.0.0.0/8");
    CHECK(p->contains(*IpAddress::parse("10.200.0.1")));
    CHECK_FALSE(p->contains(*IpAddress::parse("11.0.0.1")));
    CHECK_FALSE(p->contains(*IpAddress::parse("::ffff:0:0a00:1")));
    auto p6 = Prefix::parse("2001:db8::/32");
    REQUIRE(p6);
    CHECK(p6->contains(*IpAddress::parse("2001:db8:1::5")));
    CHECK_FALSE(p6->contains(*IpAddress::parse("10.0.0.1")));
    CHECK(Prefix::parse("0.0.0.0/0")->contains(*IpAddress::parse("8.8.8.8")));
    CHECK_FALSE(Prefix::parse("10.0.0.0/33"));
    CHECK_FALSE(Prefix::parse("10.0.0.0/"));
    CHECK_FALSE(Prefix::parse("10.0.0.0/8x"));
    CHECK(Prefix::parse("10.0.0.0/8")->contains(*Prefix::parse("10.9.0.0/16")));
    CHECK_FALSE(Prefix::parse("10.9.0.0/16")->contains(*Prefix::parse("10.0.0.0/8")));
    CHECK(sbc::base::covering_prefix(*IpAddress::parse("198.51.100.77"), 24, 64).to_string() ==
          "198.51.100.0/24");
}
