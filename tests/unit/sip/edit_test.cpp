#include <catch2/catch.hpp>

#include "sip/sip.hpp"
#include "test_data.hpp"

using namespace sbc::sip;
using sbc::sip::test::read_data;

TEST_CASE("serialize without edits copies the message") {
    std::string bytes = read_data("sip/invite_internal.sip");
    Message m;
    REQUIRE(m.parse(bytes).ok);
    CHECK(m.serialize() == bytes);
}

TEST_CASE("edits of URI parts and Via params, then re-parse") {
    std::string bytes = read_data("sip/invite_internal.sip");
    Message m;
    REQUIRE(m.parse(bytes).ok);
    m.set_uri_host(m.request_uri(), "carrier.example.net");
    m.set_uri_port(m.request_uri(), 0);
    m.set_uri_host(m.contacts()[0].uri, "203.0.113.10");
    m.set_uri_port(m.contacts()[0].uri, 5070);
    m.set_via_received(m.vias()[0], "192.0.2.1");
    m.set_via_rport(m.vias()[2], 40000);              // valued rport replaced
    m.set_via_received(m.vias()[1], "198.51.100.1");  // existing received replaced
    std::string out = m.serialize();
    Message r;
    REQUIRE(r.parse(out).ok);
    CHECK(r.request_uri().host == "carrier.example.net");
    CHECK_FALSE(r.request_uri().has_port);
    CHECK(r.contacts()[0].uri.host == "203.0.113.10");
    CHECK(r.contacts()[0].uri.port == 5070);
    CHECK(r.vias()[0].received == "192.0.2.1");
    CHECK(r.vias()[1].received == "198.51.100.1");
    CHECK(r.vias()[2].rport_text == "40000");
    CHECK(r.body() == m.body());
    // Untouched bytes are copied: everything after the first line ending that we edited.
    CHECK(out.find("User-Agent: FreeSWITCH-mod_sofia/1.10.9-release~64bit\r\n") !=
          std::string::npos);
}

TEST_CASE("valueless rport gets a value; port inserted when absent") {
    std::string bytes = read_data("sip/register_digest.sip");
    Message m;
    REQUIRE(m.parse(bytes).ok);
    m.set_via_rport(m.vias()[0], 6000);
    m.set_uri_port(m.request_uri(), 5080);
    m.set_uri_user(m.request_uri(), "reg");
    std::string out = m.serialize();
    CHECK(out.find(";rport=6000") != std::string::npos);
    Message r;
    REQUIRE(r.parse(out).ok);
    CHECK(r.vias()[0].rport_text == "6000");
    CHECK(r.request_uri().port == 5080);
    CHECK(r.request_uri().user == "reg");
}

TEST_CASE("add, remove and replace header fields; list values") {
    std::string bytes = read_data("sip/invite_internal.sip");
    Message m;
    REQUIRE(m.parse(bytes).ok);
    m.remove_via(m.vias()[1]);
    m.remove_name_addr(m.record_routes()[1]);
    CHECK(m.remove_headers(HeaderId::user_agent) == 1);
    CHECK(m.remove_headers("content-disposition") == 1);
    m.replace_header_value(*m.find(HeaderId::supported), "timer");
    m.add_header("X-Trace", "abc");
    m.add_header_first("Via", "SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKnew");
    std::string out = m.serialize();
    Message r;
    REQUIRE(r.parse(out).ok);
    REQUIRE(r.vias().size() == 3);
    CHECK(r.vias()[0].host == "192.0.2.99");
    CHECK(r.vias()[1].host == "203.0.113.10");
    CHECK(r.vias()[2].host == "10.10.1.20");
    REQUIRE(r.record_routes().size() == 1);
    CHECK(r.user_agent().empty());
    CHECK(r.find("Content-Disposition") == nullptr);
    CHECK(r.find(HeaderId::supported)->value == "timer");
    CHECK(r.headers().back().name == "X-Trace");
}

TEST_CASE("removing one value of a multi-value field keeps the others") {
    std::string bytes =
        "OPTIONS sip:a@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/UDP b;branch=z9hG4bK2,SIP/2.0/UDP "
        "c;branch=z9hG4bK3\r\n"
        "From: <sip:x@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: 1\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    for (int which = 0; which < 3; ++which) {
        Message m;
        REQUIRE(m.parse(bytes).ok);
        m.remove_via(m.vias()[static_cast<std::size_t>(which)]);
        std::string out = m.serialize();
        Message r;
        REQUIRE(r.parse(out).ok);
        REQUIRE(r.vias().size() == 2);
        std::string hosts;
        for (const Via& v : r.vias()) hosts += std::string(v.host);
        CHECK(hosts == std::string("abc").erase(static_cast<std::size_t>(which), 1));
    }
}

TEST_CASE("set_body fixes Content-Length; a missing one is added") {
    std::string bytes = read_data("sip/invite_internal.sip");
    Message m;
    REQUIRE(m.parse(bytes).ok);
    m.set_body("v=0\r\n");
    Message r;
    std::string out = m.serialize();
    REQUIRE(r.parse(out).ok);
    CHECK(r.body() == "v=0\r\n");
    CHECK(*r.content_length() == 5);

    std::string nocl =
        "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n"
        "Call-ID: 1\r\nCSeq: 1 OPTIONS\r\n\r\nhello";
    REQUIRE(m.parse(nocl).ok);
    out = m.serialize();
    REQUIRE(r.parse(out).ok);
    CHECK(*r.content_length() == 5);
    CHECK(r.body() == "hello");
}

TEST_CASE("received appended and valueless rport filled in on the same Via") {
    std::string bytes =
        "OPTIONS sip:a@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.44:5060;branch=z9hG4bK1;rport\r\n"
        "Call-ID: 1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    for (bool rport_first : {false, true}) {
        Message m;
        REQUIRE(m.parse(bytes).ok);
        if (rport_first) m.set_via_rport(m.vias()[0], 6000);
        m.set_via_received(m.vias()[0], "198.51.100.1");
        if (!rport_first) m.set_via_rport(m.vias()[0], 6000);
        std::string out = m.serialize();
        Message r;
        REQUIRE(r.parse(out).ok);
        CHECK(r.vias()[0].rport_text == "6000");
        CHECK(r.vias()[0].received == "198.51.100.1");
        CHECK(out.find("Via: SIP/2.0/UDP "
                       "192.0.2.44:5060;branch=z9hG4bK1;rport=6000;received=198.51.100.1\r\n") !=
              std::string::npos);
    }
}
