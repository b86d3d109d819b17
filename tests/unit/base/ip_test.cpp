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

TEST_CASE("ports parse as 1..65535, digits only") {
    using sbc::base::parse_port;
    CHECK(parse_port("5060") == std::uint16_t{5060});
    CHECK(parse_port("1") == std::uint16_t{1});
    CHECK(parse_port("65535") == std::uint16_t{65535});
    CHECK(parse_port("00080") == std::uint16_t{80});
    CHECK_FALSE(parse_port("0"));
    CHECK_FALSE(parse_port("65536"));
    CHECK_FALSE(parse_port("999999"));
    CHECK_FALSE(parse_port(""));
    CHECK_FALSE(parse_port("+80"));
    CHECK_FALSE(parse_port(" 80"));
    CHECK_FALSE(parse_port("80a"));
}

TEST_CASE("endpoints parse as addr:port and [v6]:port") {
    using sbc::base::Endpoint;
    auto v4 = Endpoint::parse("203.0.113.9:5060");
    REQUIRE(v4);
    CHECK(v4->addr == *IpAddress::parse("203.0.113.9"));
    CHECK(v4->port == 5060);
    auto v6 = Endpoint::parse("[2001:db8::1]:5061");
    REQUIRE(v6);
    CHECK(v6->addr == *IpAddress::parse("2001:db8::1"));
    CHECK(v6->port == 5061);
    CHECK(v6->to_string() == "[2001:db8::1]:5061");
    CHECK(Endpoint::parse(v4->to_string()) == v4);
    CHECK_FALSE(Endpoint::parse("203.0.113.9"));
    CHECK_FALSE(Endpoint::parse("203.0.113.9:"));
    CHECK_FALSE(Endpoint::parse("203.0.113.9:0"));
    CHECK_FALSE(Endpoint::parse("203.0.113.9:70000"));
    CHECK_FALSE(Endpoint::parse("example.com:5060"));
    CHECK_FALSE(Endpoint::parse("2001:db8::1"));  // no port: the last group is not one
    CHECK_FALSE(Endpoint::parse("[2001:db8::1]"));
    CHECK_FALSE(Endpoint::parse(""));
}
