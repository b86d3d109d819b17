// Stream connection bookkeeping and framing (sbc/signaling/stream.hpp) with a moved clock.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "sbc/signaling/stream.hpp"

using namespace sbc;
using namespace sbc::signaling;
using base::seconds;

namespace {

base::Endpoint ep(const char* a, std::uint16_t port) {
    return {*base::IpAddress::parse(a), port};
}

std::string options(std::string_view body = "") {
    return "OPTIONS sip:sbc SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK1\r\n"
           "From: <sip:a@x>;tag=1\r\nTo: <sip:sbc>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
           "Content-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

struct Sink {
    std::vector<std::string> messages;
    int pongs = 0;
    StreamEvent feed(StreamConnections& t, ConnectionId id, std::string_view bytes,
                     base::Nanos now) {
        int p = 0;
        auto r = t.receive(
            id, bytes, now, [this](std::string_view m) { messages.emplace_back(m); }, p);
        pongs += p;
        return r;
    }
};

}  // namespace

TEST_CASE("stream: per-source and total connection limits, released on close") {
    StreamLimits l;
    l.max_connections = 3;
    l.max_per_source = 2;
    StreamConnections t(l);
    const auto a1 = t.open(ep("192.0.2.1", 1000), 0, Transport::tcp, 0);
    const auto a2 = t.open(ep("192.0.2.1", 1001), 0, Transport::tcp, 0);
    CHECK(a1 != 0);
    CHECK(a2 != 0);
    CHECK(a1 != a2);
    CHECK(t.open(ep("192.0.2.1", 1002), 0, Transport::tcp, 0) == 0);
    CHECK(t.counters()[StreamEvent::refused_per_source] == 1);
    CHECK(t.from_source(*base::IpAddress::parse("192.0.2.1")) == 2);
    const auto b1 = t.open(ep("192.0.2.2", 1000), 0, Transport::tcp, 0);
    CHECK(b1 != 0);
    CHECK(t.open(ep("192.0.2.3", 1000), 0, Transport::tcp, 0) == 0);
    CHECK(t.counters()[StreamEvent::refused_capacity] == 1);
    t.close(a1);
    CHECK(t.from_source(*base::IpAddress::parse("192.0.2.1")) == 1);
    const auto a3 = t.open(ep("192.0.2.1", 1003), 0, Transport::tcp, 0);
    CHECK(a3 != 0);
    CHECK(a3 != a1);  // ids are never reused
    CHECK(t.size() == 3);
}

TEST_CASE("stream: nothing is read before admission; messages framed across chunks") {
    StreamConnections t;
    Sink s;
    const auto id = t.open(ep("192.0.2.1", 1000), 0, Transport::tcp, 0);
    const std::string m = options("hello");
    CHECK(s.feed(t, id, m, 0) == StreamEvent::framing_error);  // not admitted yet
    t.admitted(id, 0);
    CHECK(t.find(id)->state == StreamConnections::State::open);
    CHECK(s.feed(t, id, m.substr(0, 20), 1) == StreamEvent::messages);
    CHECK(s.messages.empty());
    CHECK(s.feed(t, id, m.substr(20) + m, 2) == StreamEvent::messages);
    REQUIRE(s.messages.size() == 2);
    CHECK(s.messages[0] == m);
    CHECK(s.messages[1] == m);
    CHECK(t.counters()[StreamEvent::messages] == 2);
}

TEST_CASE("stream: CRLFCRLF keep-alive answered (RFC 5626 §3.5.1), a lone CRLF skipped") {
    StreamConnections t;
    Sink s;
    const auto id = t.open(ep("192.0.2.1", 1000), 0, Transport::tcp, 0);
    t.admitted(id, 0);
    CHECK(s.feed(t, id, "\r\n\r\n", 0) == StreamEvent::messages);
    CHECK(s.pongs == 1);
    CHECK(s.feed(t, id, "\r\n", 0) == StreamEvent::messages);
    CHECK(s.pongs == 1);
    CHECK(s.feed(t, id, "\r\n\r\n\r\n\r\n" + options(), 0) == StreamEvent::messages);
    CHECK(s.pongs == 3);
    CHECK(s.messages.size() == 1);
    CHECK(t.counters()[StreamEvent::keepalives_answered] == 3);
}

TEST_CASE("stream: oversized and unframeable input close the connection, counted") {
    StreamLimits l;
    l.max_message_bytes = 1000;
    StreamConnections t(l);
    Sink s;
    const auto a = t.open(ep("192.0.2.1", 1000), 0, Transport::tcp, 0);
    t.admitted(a, 0);
    CHECK(s.feed(t, a, options(std::string(2000, 'x')), 0) == StreamEvent::oversized);
    const auto b = t.open(ep("192.0.2.1", 1001), 0, Transport::tcp, 0);
    t.admitted(b, 0);
    CHECK(s.feed(t, b, "INVITE sip:x SIP/2.0\r\nVia: x\r\n\r\n", 0) ==
          StreamEvent::framing_error);  // no Content-Length on a stream
    const auto c = t.open(ep("192.0.2.1", 1002), 0, Transport::tcp, 0);
    t.admitted(c, 0);
    // A header section that never ends: refused once it passes the limit.
    StreamEvent r = StreamEvent::messages;
    for (int i = 0; i < 100 && r == StreamEvent::messages; ++i)
        r = s.feed(t, c, "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 0);
    CHECK(r == StreamEvent::oversized);
    CHECK(t.counters()[StreamEvent::oversized] == 2);
    CHECK(t.counters()[StreamEvent::framing_error] == 1);
    CHECK(s.messages.empty());
}

TEST_CASE("stream: buffered input plus unsent output bounded per connection") {
    StreamLimits l;
    l.max_buffered_bytes = 4096;
    StreamConnections t(l);
    Sink s;
    const auto id = t.open(ep("192.0.2.1", 1000), 0, Transport::tcp, 0);
    t.admitted(id, 0);
    CHECK(t.queue_output(id, 3000));
    CHECK_FALSE(t.queue_output(id, 2000));
    CHECK(t.counters()[StreamEvent::buffer_full] == 1);
    t.output_written(id, 3000);
    CHECK(t.queue_output(id, 2000));
    CHECK(s.feed(t, id, std::string(1000, 'I'), 0) == StreamEvent::messages);  // partial
    CHECK(s.feed(t, id, std::string(1500, 'I'), 0) == StreamEvent::buffer_full);
    CHECK(t.counters()[StreamEvent::buffer_full] == 2);
}

TEST_CASE("stream: handshake and idle deadlines; a partial message is not activity") {
    StreamLimits l;
    l.handshake_timeout = seconds(5);
    l.idle_timeout = seconds(30);
    StreamConnections t(l);
    Sink s;
    const auto tls = t.open(ep("192.0.2.1", 1000), 0, Transport::tls, 0);
    t.admitted(tls, seconds(1));
    CHECK(t.find(tls)->state == StreamConnections::State::handshaking);
    const auto tcp = t.open(ep("192.0.2.2", 1000), 0, Transport::tcp, 0);
    t.admitted(tcp, 0);
    const auto slow = t.open(ep("192.0.2.3", 1000), 0, Transport::tls, 0);
    t.admitted(slow, 0);
    t.established(slow, seconds(2));
    std::vector<std::pair<ConnectionId, StreamEvent>> due;
    auto collect = [&](ConnectionId id, StreamEvent e) { due.emplace_back(id, e); };
    t.expire(seconds(4), collect);
    CHECK(due.empty());
    t.expire(seconds(5), collect);
    REQUIRE(due.size() == 1);
    CHECK(due[0] == std::make_pair(tls, StreamEvent::handshake_timeout));
    t.close(tls);
    due.clear();
    CHECK(s.feed(t, tcp, options(), seconds(20)) == StreamEvent::messages);
    CHECK(s.feed(t, slow, options().substr(0, 30), seconds(20)) == StreamEvent::messages);
    t.expire(seconds(32), collect);
    REQUIRE(due.size() == 1);
    CHECK(due[0] == std::make_pair(slow, StreamEvent::idle_timeout));
    due.clear();
    t.expire(seconds(50), collect);
    REQUIRE(due.size() == 2);  // slow (not closed by this test) and tcp
    CHECK(t.counters()[StreamEvent::handshake_timeout] == 1);
    CHECK(t.counters()[StreamEvent::idle_timeout] == 3);
}

TEST_CASE("stream: outgoing connections have their own limit and the handshake deadline") {
    StreamLimits l;
    l.max_connections = 1;
    l.max_outgoing = 2;
    l.handshake_timeout = base::seconds(2);
    StreamConnections t(l);
    // An accepted connection fills max_connections; outgoing ones do not count against it.
    CHECK(t.open(ep("192.0.2.1", 1000), 0, Transport::tcp, 0) != 0);
    const auto o1 = t.open_outgoing(ep("10.0.0.2", 5060), 7, Transport::tcp, 0);
    const auto o2 = t.open_outgoing(ep("10.0.0.3", 5061), 7, Transport::tls, 0);
    CHECK(o1 != 0);
    CHECK(o2 != 0);
    CHECK(t.open_outgoing(ep("10.0.0.4", 5060), 7, Transport::tcp, 0) == 0);
    CHECK(t.counters()[StreamEvent::refused_outgoing_capacity] == 1);
    CHECK(t.outgoing() == 2);
    CHECK(t.from_source(*base::IpAddress::parse("10.0.0.2")) == 0);  // not a source's quota
    // TCP is open once connected; TLS then handshakes, still under the deadline from connect.
    t.connected(o1, base::seconds(1));
    t.connected(o2, base::seconds(1));
    CHECK(t.find(o1)->state == StreamConnections::State::open);
    CHECK(t.find(o2)->state == StreamConnections::State::handshaking);
    CHECK(t.counters()[StreamEvent::connected] == 1);
    std::vector<ConnectionId> expired;
    t.expire(base::seconds(2), [&](ConnectionId id, StreamEvent why) {
        CHECK(why == StreamEvent::handshake_timeout);
        expired.push_back(id);
    });
    // The accepted one never admitted, the TLS one never handshaken; the TCP one lives on.
    CHECK(expired.size() == 2);
    CHECK(std::find(expired.begin(), expired.end(), o1) == expired.end());
    for (auto id : expired) t.close(id);
    CHECK(t.outgoing() == 1);
    CHECK(t.open_outgoing(ep("10.0.0.4", 5060), 7, Transport::tcp, 0) != 0);
}
