#include <catch2/catch.hpp>

#include "sip/sip.hpp"
#include "test_data.hpp"

using namespace sbc::sip;

TEST_CASE("SDP session and media fields") {
    std::string bytes = sbc::sip::test::read_data("sip/invite_internal.sip");
    Message m;
    REQUIRE(m.parse(bytes).ok);
    Sdp sdp;
    REQUIRE(sdp.parse(m.body()).ok);
    CHECK(sdp.version() == "0");
    CHECK(sdp.origin_username() == "FreeSWITCH");
    CHECK(sdp.origin_address() == "10.10.1.20");
    CHECK(sdp.session_name() == "FreeSWITCH");
    REQUIRE(sdp.media().size() == 1);
    const SdpMedia& a = sdp.media()[0];
    CHECK(a.media == "audio");
    CHECK(a.port == 24680);
    CHECK(a.proto == "RTP/AVP");
    CHECK(a.formats == "0 8 101");
    CHECK(a.has_rtcp);
    CHECK(a.rtcp_port == 24681);
    CHECK(a.rtcp_address == "10.10.1.20");
    CHECK(a.direction == "sendrecv");
    CHECK_FALSE(sdp.rtcp_mux());
    CHECK(sdp.connection_address(0) == "10.10.1.20");
}

TEST_CASE("SDP rewrite keeps everything else byte-exact") {
    std::string body =
        "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtcp-mux\r\na=rtcp:4000\r\n"
        "m=video 5000 RTP/AVP 96\r\nc=IN IP4 10.0.0.2\r\na=rtcp:5001 IN IP4 10.0.0.2\r\n"
        "a=rtpmap:96 H264/90000\r\n";
    Sdp sdp;
    REQUIRE(sdp.parse(body).ok);
    CHECK(sdp.rtcp_mux());
    CHECK(sdp.connection_address(1) == "10.0.0.2");
    sdp.set_connection_address("2001:db8::7");
    sdp.set_media_port(0, 30000);
    sdp.set_media_port(1, 30002);
    sdp.set_rtcp(0, 30000, "2001:db8::7");
    sdp.set_rtcp(1, 30003, "2001:db8::7");
    std::string out = sdp.serialize();
    CHECK(out ==
          "v=0\r\no=- 1 2 IN IP6 2001:db8::7\r\ns=-\r\nc=IN IP6 2001:db8::7\r\nt=0 0\r\n"
          "m=audio 30000 RTP/AVP 0\r\na=rtcp-mux\r\na=rtcp:30000\r\n"
          "m=video 30002 RTP/AVP 96\r\nc=IN IP6 2001:db8::7\r\na=rtcp:30003 IN IP6 2001:db8::7\r\n"
          "a=rtpmap:96 H264/90000\r\n");
    Sdp again;
    REQUIRE(again.parse(out).ok);
    CHECK(again.media()[1].rtcp_port == 30003);
}

TEST_CASE("SDP errors") {
    Sdp sdp;
    CHECK_FALSE(sdp.parse("o=- 1 2 IN IP4 1.2.3.4\r\n").ok);
    CHECK_FALSE(sdp.parse("v=0\r\nm=audio x RTP/AVP 0\r\n").ok);
    CHECK_FALSE(sdp.parse("v=0\r\nbad line\r\n").ok);
    CHECK_FALSE(sdp.parse("v=0\r\no=short\r\n").ok);
    CHECK(sdp.parse("v=0\nm=audio 1 RTP/AVP 0\n").ok);
}
