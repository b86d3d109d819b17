#include <catch2/catch.hpp>

#include "sip/sip.hpp"
#include "test_data.hpp"

using namespace sbc::sip;

TEST_CASE("framer yields whole messages from arbitrary chunks") {
    std::string a = sbc::sip::test::read_data("sip/invite_internal.sip");
    std::string b = sbc::sip::test::read_data("sip/register_digest.sip");
    std::string stream = "\r\n\r\n" + a + "\r\n" + b;
    for (std::size_t chunk : {1u, 7u, 100u, 5000u}) {
        StreamFramer f;
        std::vector<std::string> got;
        int pings = 0;
        for (std::size_t i = 0; i < stream.size(); i += chunk) {
            f.feed(std::string_view(stream).substr(i, chunk));
            for (;;) {
                StreamFramer::Frame fr = f.next();
                if (fr.kind == StreamFramer::Kind::need_more) break;
                REQUIRE(fr.kind != StreamFramer::Kind::error);
                if (fr.kind == StreamFramer::Kind::ping) ++pings;
                if (fr.kind == StreamFramer::Kind::message) got.emplace_back(fr.bytes);
            }
        }
        INFO(chunk);
        CHECK(pings == 1);
        REQUIRE(got.size() == 2);
        CHECK(got[0] == a);
        CHECK(got[1] == b);
        CHECK(f.buffered() == 0);
    }
    CHECK(StreamFramer::kPong == "\r\n");
}

TEST_CASE("framer errors: missing Content-Length, limits, conflicts") {
    StreamFramer f;
    f.feed("OPTIONS sip:a SIP/2.0\r\nCall-ID: 1\r\n\r\n");
    auto fr = f.next();
    CHECK(fr.kind == StreamFramer::Kind::error);
    CHECK(fr.error == "missing Content-Length on a stream transport (RFC 3261 §18.3)");
    CHECK(f.failed());
    CHECK(f.next().kind == StreamFramer::Kind::error);

    Limits lim;
    lim.max_header_bytes = 64;
    StreamFramer g(lim);
    g.feed(std::string(100, 'A'));
    CHECK(g.next().error == "header section larger than the limit");

    Limits lim2;
    lim2.max_message_size = 100;
    StreamFramer h(lim2);
    h.feed("OPTIONS sip:a SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
    CHECK(h.next().error == "message larger than the limit");

    StreamFramer k;
    k.feed("OPTIONS sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab");
    CHECK(k.next().error == "conflicting Content-Length values");

    StreamFramer w;
    w.feed("OPTIONS sip:a SIP/2.0\r\nContent-Length: 4\r\n\r\nab");
    CHECK(w.next().kind == StreamFramer::Kind::need_more);
    w.feed("cdEXTRA");
    auto m = w.next();
    REQUIRE(m.kind == StreamFramer::Kind::message);
    CHECK(m.bytes.substr(m.bytes.size() - 4) == "abcd");
    CHECK(w.buffered() == 5);
}

TEST_CASE("RFC 4475 messages on a stream transport") {
    // Only kind and error are read from these frames (their bytes die with the framer).
    auto frame = [](const std::string& name) {
        StreamFramer f;
        f.feed(sbc::sip::test::read_data("rfc4475/" + name + ".dat"));
        return f.next();
    };
    // §3.1.2.2: Content-Length larger than what arrived: wait for more (the transport times out).
    CHECK(frame("clerr").kind == StreamFramer::Kind::need_more);
    // §3.1.2.3: a negative Content-Length cannot be framed: close the connection.
    auto ncl = frame("ncl");
    CHECK(ncl.kind == StreamFramer::Kind::error);
    CHECK(ncl.error == "invalid Content-Length");
    // §3.3.9: conflicting Content-Length values.
    CHECK(frame("mcl01").error == "conflicting Content-Length values");
    // §3.4.1: RFC 2543 style without Content-Length is only framable on datagrams.
    CHECK(frame("inv2543").kind == StreamFramer::Kind::error);
    // §3.1.1.11: the binary multipart body is framed by Content-Length and then parses.
    StreamFramer fm;
    std::string mpart = sbc::sip::test::read_data("rfc4475/mpart01.dat");
    fm.feed(mpart);
    auto mp = fm.next();
    REQUIRE(mp.kind == StreamFramer::Kind::message);
    CHECK(mp.bytes == mpart);
    Message m;
    CHECK(m.parse(mp.bytes).ok);
    // §3.1.1.8: on a stream, the "trailing" INVITE is the next message.
    StreamFramer f;
    f.feed(sbc::sip::test::read_data("rfc4475/dblreq.dat"));
    auto first = f.next();
    REQUIRE(first.kind == StreamFramer::Kind::message);
    REQUIRE(m.parse(first.bytes).ok);
    CHECK(m.method() == Method::register_);
    auto second = f.next();
    REQUIRE(second.kind == StreamFramer::Kind::message);
    REQUIRE(m.parse(second.bytes).ok);
    CHECK(m.method() == Method::invite);
}
