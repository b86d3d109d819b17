#include <catch2/catch.hpp>

#include "sip/sip.hpp"

using namespace sbc::sip;

TEST_CASE("sip URI parts") {
    std::vector<Param> pool;
    Uri u;
    REQUIRE(
        parse_uri("sips:alice:secret@[2001:db8::5]:5061;transport=tls;lr?Subject=hi", u, pool).ok);
    CHECK(u.kind == UriScheme::sips);
    CHECK(u.user == "alice");
    CHECK(u.password == "secret");
    CHECK(u.host == "[2001:db8::5]");
    CHECK(u.ipv6);
    CHECK(u.port == 5061);
    CHECK(u.params.count == 2);
    CHECK(pool[u.params.begin].name == "transport");
    CHECK(pool[u.params.begin].value == "tls");
    CHECK(u.headers_text == "Subject=hi");
}

TEST_CASE("tel and unknown schemes") {
    std::vector<Param> pool;
    Uri u;
    REQUIRE(parse_uri("tel:+1-201-555-0123;phone-context=example.com", u, pool).ok);
    CHECK(u.kind == UriScheme::tel);
    CHECK(u.user == "+1-201-555-0123");
    CHECK(u.params.count == 1);
    REQUIRE(parse_uri("soap.beep://192.0.2.103:3002", u, pool).ok);
    CHECK(u.kind == UriScheme::other);
    CHECK(u.scheme == "soap.beep");
    CHECK(u.opaque == "//192.0.2.103:3002");
}

TEST_CASE("bad URIs are refused") {
    std::vector<Param> pool;
    Uri u;
    CHECK_FALSE(parse_uri("sip:", u, pool).ok);
    CHECK_FALSE(parse_uri("nocolon", u, pool).ok);
    CHECK_FALSE(parse_uri("sip:a@host:99999", u, pool).ok);
    CHECK_FALSE(parse_uri("sip:a b@host", u, pool).ok);
    CHECK_FALSE(parse_uri("sip:host;;x", u, pool).ok);
    CHECK_FALSE(parse_uri("sip:[zz]", u, pool).ok);
}

TEST_CASE("unescape is one level, unquote, unfold, split_list") {
    CHECK(unescape("v%61lue%25%34%31") == "value%41");
    CHECK(unescape("%Z%45%4") == "%ZE%4");
    CHECK(unescape("null-%00-null") == std::string("null-\0-null", 11));
    CHECK(unquote("\"J Rosenberg \\\\\\\"\"") == "J Rosenberg \\\"");
    CHECK(unfold("a \r\n  b\r\n\tc") == "a b c");
    auto parts = split_list("<sip:a,b@x>;q=1, \"x,y\" <sip:c>,d");
    REQUIRE(parts.size() == 3);
    CHECK(parts[0] == "<sip:a,b@x>;q=1");
    CHECK(parts[1] == "\"x,y\" <sip:c>");
    CHECK(parts[2] == "d");
}
