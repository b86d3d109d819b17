#include <catch2/catch.hpp>

#include "sip/sip.hpp"
#include "test_data.hpp"

using namespace sbc::sip;
using sbc::sip::test::read_data;

TEST_CASE("INVITE with SDP: start line and typed headers") {
    std::string bytes = read_data("sip/invite_internal.sip");
    Message m;
    Status s = m.parse(bytes);
    REQUIRE(s.ok);
    CHECK(m.is_request());
    CHECK(m.method() == Method::invite);
    CHECK(m.method_name() == "INVITE");
    CHECK(m.request_uri().kind == UriScheme::sip);
    CHECK(m.request_uri().user == "+14155550123");
    CHECK(m.request_uri().host == "198.51.100.7");
    CHECK(m.request_uri().port == 5060);

    REQUIRE(m.vias().size() == 3);
    const Via& v0 = m.vias()[0];
    CHECK(v0.protocol_name == "SIP");
    CHECK(v0.protocol_version == "2.0");
    CHECK(v0.transport == "UDP");
    CHECK(v0.host == "203.0.113.10");
    CHECK(v0.port == 5060);
    CHECK(v0.branch == "z9hG4bK-sbc-4f1a2c7e");
    CHECK_FALSE(v0.has_rport);
    const Via& v1 = m.vias()[1];
    CHECK(v1.received == "10.10.1.5");
    CHECK(v1.has_rport);
    CHECK(v1.rport_text == "5060");
    auto p1 = m.params(v1.params);
    REQUIRE(p1.size() == 3);
    CHECK(p1[0].name == "branch");
    CHECK(p1[1].name == "received");
    CHECK(p1[2].name == "rport");
    CHECK(m.vias()[2].port == 5080);

    CHECK(m.max_forwards() == std::optional<std::uint8_t>(68));
    REQUIRE(m.record_routes().size() == 2);
    CHECK(m.record_routes()[1].uri.host == "10.10.1.5");
    REQUIRE(find_param(m.params(m.record_routes()[1].uri.params), "ftag"));
    CHECK(find_param(m.params(m.record_routes()[1].uri.params), "lr")->has_value == false);

    REQUIRE(m.from());
    CHECK(m.from()->display_name == "\"Alice Support\"");
    CHECK(unquote(m.from()->display_name) == "Alice Support");
    CHECK(m.from()->uri.user == "1001");
    CHECK(m.from()->tag == "Ka8Fm2pQ");
    REQUIRE(m.to());
    CHECK(m.to()->tag.empty());
    CHECK(m.call_id() == "5d9b2f3e-8c1a-4b7e-9f40-2a6c1e7d3b11");
    REQUIRE(m.cseq());
    CHECK(m.cseq()->number == 104872);
    CHECK(m.cseq()->method == "INVITE");
    REQUIRE(m.contacts().size() == 1);
    CHECK(m.contacts()[0].uri.host == "10.10.1.20");
    CHECK(m.contacts()[0].uri.port == 5080);
    CHECK(m.user_agent() == "FreeSWITCH-mod_sofia/1.10.9-release~64bit");
    CHECK(m.content_type() == "application/sdp");
    REQUIRE(m.content_length());
    CHECK(*m.content_length() == m.body().size());
    CHECK(m.body().substr(0, 5) == "v=0\r\n");
    CHECK(m.find("content-disposition") != nullptr);
    CHECK(m.find(HeaderId::supported)->value == "timer, path, replaces");
    CHECK(check_request(m).ok);
}

TEST_CASE("REGISTER with Digest credentials, Expires and Contact params") {
    std::string bytes = read_data("sip/register_digest.sip");
    Message m;
    REQUIRE(m.parse(bytes).ok);
    CHECK(m.method() == Method::register_);
    REQUIRE(m.authorization());
    const Credentials& c = *m.authorization();
    CHECK(c.scheme == "Digest");
    CHECK(c.username == "2002");
    CHECK(c.realm == "pbx.example.com");
    CHECK(c.nonce == "5f4e3d2c1b0a99887766554433221100");
    CHECK(c.uri == "sip:pbx.example.com");
    CHECK(c.response == "0a1b2c3d4e5f60718293a4b5c6d7e8f9");
    CHECK(c.algorithm == "MD5");
    CHECK(c.qop == "auth");
    CHECK(c.nc == "00000001");
    CHECK(m.expires() == std::optional<std::uint32_t>(3600));
    REQUIRE(m.contacts().size() == 1);
    CHECK(m.contacts()[0].expires == "3600");
    CHECK(find_param(m.params(m.contacts()[0].params), "+sip.instance")->value ==
          "\"<urn:uuid:00000000-0000-1000-8000-0004f2a1b2c3>\"");
    REQUIRE(m.vias().size() == 1);
    CHECK(m.vias()[0].has_rport);
    CHECK(m.vias()[0].rport_text.empty());
}

TEST_CASE("200 OK with Record-Route list") {
    std::string bytes = read_data("sip/ok_200_rr.sip");
    Message m;
    REQUIRE(m.parse(bytes).ok);
    CHECK_FALSE(m.is_request());
    CHECK(m.status_code() == 200);
    CHECK(m.reason_phrase() == "OK");
    CHECK(m.record_routes().size() == 2);
    CHECK(m.server() == "Carrier-SBC 4.2");
    CHECK(m.to()->tag == "as6d1f2a9b");
}

TEST_CASE("compact forms, folding, lists in one field, Contact star") {
    std::string bytes =
        "REGISTER sip:example.com SIP/2.0\r\n"
        "v: SIP/2.0/TCP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP "
        "[2001:db8::1]:5070;branch=z9hG4bK2\r\n"
        "f: <sip:a@example.com>;tag=1\r\n"
        "t: <sip:a@example.com>\r\n"
        "i: abc@host\r\n"
        "CSeq: 1\r\n  REGISTER\r\n"
        "m: *\r\n"
        "Expires: 0\r\n"
        "l: 0\r\n\r\n";
    Message m;
    REQUIRE(m.parse(bytes).ok);
    REQUIRE(m.vias().size() == 2);
    CHECK(m.vias()[1].host == "[2001:db8::1]");
    CHECK(m.vias()[1].port == 5070);
    CHECK(m.vias()[0].header == m.vias()[1].header);
    CHECK(m.call_id() == "abc@host");
    CHECK(m.cseq()->method == "REGISTER");
    CHECK(m.contact_star());
    CHECK(m.expires() == std::optional<std::uint32_t>(0));
    CHECK(header_id_from_name("K") == HeaderId::supported);
    CHECK(header_id_from_name("o") == HeaderId::event);
    CHECK(header_id_from_name("x") == HeaderId::session_expires);
    CHECK(header_id_from_name("CONTENT-length") == HeaderId::content_length);
    CHECK(header_id_from_name("X-Custom") == HeaderId::other);
}

TEST_CASE("limits refuse oversize input with a reason") {
    std::string bytes = read_data("sip/invite_internal.sip");
    Message m;
    Limits small;
    small.max_message_size = 100;
    Status s = m.parse(bytes, small);
    CHECK_FALSE(s.ok);
    CHECK(s.reason == "message too large");
    Limits few;
    few.max_headers = 5;
    s = m.parse(bytes, few);
    CHECK_FALSE(s.ok);
    CHECK(s.reason == "too many header fields");
    Limits shortline;
    shortline.max_line_length = 40;
    CHECK_FALSE(m.parse(bytes, shortline).ok);
    Limits uri;
    uri.max_uri_length = 10;
    s = m.parse(bytes, uri);
    CHECK_FALSE(s.ok);
    CHECK(s.sip_status == 414);
    Limits hdr;
    hdr.max_header_bytes = 200;
    s = m.parse(bytes, hdr);
    CHECK(s.reason == "header section too large");
}

TEST_CASE("parse_owned keeps its own copy") {
    Message m;
    {
        std::string bytes = read_data("sip/register_digest.sip");
        REQUIRE(m.parse_owned(bytes).ok);
        bytes.assign(bytes.size(), 'x');
    }
    CHECK(m.call_id() == "1c7a9e2f04b8c3d5@192.0.2.44");
    Message moved = std::move(m);
    CHECK(moved.authorization()->username == "2002");
}

TEST_CASE("every known header name maps to its id, in any case") {
    for (int i = 1; i <= static_cast<int>(HeaderId::identity_info); ++i) {
        HeaderId id = static_cast<HeaderId>(i);
        std::string name(canonical_header_name(id));
        INFO(name);
        REQUIRE_FALSE(name.empty());
        CHECK(header_id_from_name(name) == id);
        for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        CHECK(header_id_from_name(name) == id);
    }
}

TEST_CASE("a reused Message shows nothing from the previous parse") {
    std::string reg = read_data("sip/register_digest.sip");
    std::string ok = read_data("sip/ok_200_rr.sip");
    Message m;
    REQUIRE(m.parse(reg).ok);
    REQUIRE(m.authorization());
    REQUIRE(m.parse(ok).ok);
    CHECK(m.authorization() == nullptr);
    CHECK(m.request_uri().host.empty());
    CHECK(m.method_name().empty());
    CHECK_FALSE(m.expires());
    CHECK(m.vias().size() == 1);
    CHECK(m.record_routes().size() == 2);
    // A failed parse leaves nothing behind either.
    CHECK_FALSE(m.parse("INVITE sip:a@b SIP/2.0\r\nFrom: <sip:x@y>;;\r\n\r\n").ok);
    REQUIRE(m.parse(reg).ok);
    CHECK(m.from()->tag == "9fd2c41a");
    CHECK(m.record_routes().empty());
    CHECK(m.request_uri().host == "pbx.example.com");
}
