#include <catch2/catch.hpp>

#include "sip/sip.hpp"

using namespace sbc::sip;

namespace {

const std::string kInvite =
    "INVITE sip:+442071234567@sbc.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.1.2.3:5062;branch=z9hG4bKabc;rport\r\n"
    "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKdef\r\n"
    "Max-Forwards: 70\r\n"
    "From: \"Alice\" <sip:alice@example.com>;tag=f1\r\n"
    "To: <sip:+442071234567@sbc.example.com>\r\n"
    "Call-ID: c1@10.1.2.3\r\n"
    "CSeq: 7 INVITE\r\n"
    "Contact: <sip:alice@10.1.2.3:5062>\r\n"
    "User-Agent: softphone 1.0\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\n";

}  // namespace

TEST_CASE("a built response copies Via, From, To, Call-ID and CSeq and nothing else") {
    Message req;
    REQUIRE(req.parse(kInvite).ok);
    const std::pair<std::string_view, std::string_view> extra[] = {{"Retry-After", "30"}};
    ResponseOptions o;
    o.to_tag = "t42";
    o.source_address = "203.0.113.5";
    o.source_port = 40001;
    o.headers = extra;
    const std::string out = build_response(req, 503, {}, o);
    Message r;
    REQUIRE(r.parse(out).ok);
    CHECK_FALSE(r.is_request());
    CHECK(r.status_code() == 503);
    CHECK(r.reason_phrase() == "Service Unavailable");
    REQUIRE(r.vias().size() == 2);
    CHECK(r.vias()[0].received == "203.0.113.5");
    CHECK(r.vias()[0].rport_text == "40001");
    CHECK(r.vias()[0].branch == "z9hG4bKabc");
    CHECK_FALSE(r.vias()[1].has_received);
    CHECK(r.from()->tag == "f1");
    CHECK(r.to()->tag == "t42");
    CHECK(r.call_id() == "c1@10.1.2.3");
    CHECK(r.cseq()->number == 7);
    CHECK(r.cseq()->method == "INVITE");
    CHECK(r.find(HeaderId::contact) == nullptr);
    CHECK(r.find(HeaderId::user_agent) == nullptr);
    CHECK(r.find(HeaderId::max_forwards) == nullptr);
    CHECK(r.find(HeaderId::content_type) == nullptr);
    REQUIRE(r.find("Retry-After") != nullptr);
    CHECK(r.find("Retry-After")->value == "30");
    CHECK(r.body().empty());
    CHECK(r.content_length() == 0);
}

TEST_CASE("a built response keeps an existing To tag, adds none to 100, and takes a body") {
    std::string with_tag = kInvite;
    with_tag.replace(with_tag.find("sbc.example.com>\r\n"), 18, "sbc.example.com>;tag=x9\r\n");
    Message req;
    REQUIRE(req.parse(with_tag).ok);
    ResponseOptions o;
    o.to_tag = "ignored";
    o.body = "v=0\r\n";
    o.content_type = "application/sdp";
    Message r;
    const std::string ok = build_response(req, 200, "Fine", o);
    REQUIRE(r.parse(ok).ok);
    CHECK(r.reason_phrase() == "Fine");
    CHECK(r.to()->tag == "x9");
    CHECK(r.body() == "v=0\r\n");
    CHECK(r.content_type() == "application/sdp");

    Message plain;
    REQUIRE(plain.parse(kInvite).ok);
    ResponseOptions t;
    t.to_tag = "t1";
    Message trying;
    REQUIRE(trying.parse(build_response(plain, 100, {}, t)).ok);
    CHECK(trying.to()->tag.empty());
}

TEST_CASE("received is set only when sent-by differs unless rport was asked") {
    const std::string no_rport =
        "OPTIONS sip:sbc.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\n"
        "From: <sip:a@example.com>;tag=1\r\nTo: <sip:sbc.example.com>\r\n"
        "Call-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    Message req;
    REQUIRE(req.parse(no_rport).ok);
    ResponseOptions same;
    same.source_address = "198.51.100.7";
    same.source_port = 5060;
    Message r;
    REQUIRE(r.parse(build_response(req, 200, {}, same)).ok);
    CHECK_FALSE(r.vias()[0].has_received);
    CHECK_FALSE(r.vias()[0].has_rport);
    ResponseOptions nat;
    nat.source_address = "203.0.113.80";
    nat.source_port = 61000;
    REQUIRE(r.parse(build_response(req, 200, {}, nat)).ok);
    CHECK(r.vias()[0].received == "203.0.113.80");
    CHECK_FALSE(r.vias()[0].has_rport);
}

TEST_CASE("a stateless response: the same To tag for every retransmission, rport, Retry-After") {
    Message req;
    REQUIRE(req.parse(kInvite).ok);
    const sbc::base::Endpoint source{*sbc::base::IpAddress::parse("198.51.100.7"), 40000};
    const std::string a = stateless_response(req, 503, "Service Unavailable", source, 60);
    Message again;
    REQUIRE(again.parse(kInvite).ok);
    CHECK(stateless_response(again, 503, "Service Unavailable", source, 60) == a);
    Message resp;
    REQUIRE(resp.parse(a).ok);
    CHECK(resp.status_code() == 503);
    REQUIRE(resp.to());
    CHECK(resp.to()->tag.size() == 16);
    REQUIRE(!resp.vias().empty());
    CHECK(resp.vias()[0].received == "198.51.100.7");
    CHECK(resp.vias()[0].rport_text == "40000");
    CHECK(a.find("Retry-After: 60\r\n") != std::string::npos);
    CHECK(a.find("Server:") == std::string::npos);
    CHECK(a.find("User-Agent") == std::string::npos);
    // Another request (another branch) gets another tag; no Retry-After when 0.
    std::string other = kInvite;
    other.replace(other.find("z9hG4bKabc"), 10, "z9hG4bKxyz");
    Message req2;
    REQUIRE(req2.parse(other).ok);
    const std::string b = stateless_response(req2, 403, "Forbidden", source);
    Message resp2;
    REQUIRE(resp2.parse(b).ok);
    REQUIRE(resp2.to());
    CHECK(resp2.to()->tag != resp.to()->tag);
    CHECK(b.find("Retry-After") == std::string::npos);
}
