// HEPv3 encoding, checked by decoding with the replay's HEP decoder, and the exporter's
// bounded queue against a UDP collector on loopback.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "base/sockaddr.hpp"
#include "dataplane/capture.hpp"
#include "sbc/hep.hpp"

using namespace sbc;

namespace {

const std::string kSip =
    "OPTIONS sip:x@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bK1\r\n"
    "Call-ID: abc\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

dataplane::HepMessage decode(const std::string& packet) {
    dataplane::CaptureDecoder decoder;
    dataplane::PacketMeta outer{};
    outer.l4_proto = 17;
    outer.dst_port = 9060;
    outer.payload = reinterpret_cast<const std::uint8_t*>(packet.data());
    outer.payload_len = static_cast<std::uint16_t>(packet.size());
    dataplane::HepMessage h;
    REQUIRE(decoder.unwrap_hep(outer, 0, h));
    return h;
}

// The value of chunk `type`, or "" when absent.
std::string chunk_value(const std::string& p, std::uint16_t type) {
    for (std::size_t off = 6; off + 6 <= p.size();) {
        const auto t =
            static_cast<std::uint16_t>((std::uint8_t(p[off + 2]) << 8) | std::uint8_t(p[off + 3]));
        const auto len =
            static_cast<std::size_t>((std::uint8_t(p[off + 4]) << 8) | std::uint8_t(p[off + 5]));
        if (len < 6) return {};
        if (t == type) return p.substr(off + 6, len - 6);
        off += len;
    }
    return {};
}

}  // namespace

TEST_CASE("HEPv3: addresses, ports, time, correlation id and payload survive a decode") {
    HepRecord r;
    r.src = *base::Endpoint::parse("198.51.100.7:5070");
    r.dst = *base::Endpoint::parse("203.0.113.1:5060");
    r.time = 1'700'000'000'123'456'789LL;
    r.capture_id = 2001;
    r.auth_key = "secret";
    r.correlation_id = "outside-call-1";
    r.payload = kSip;
    std::string p;
    REQUIRE(encode_hep3(r, p));
    CHECK(p.compare(0, 4, "HEP3") == 0);
    CHECK(((std::uint8_t(p[4]) << 8) | std::uint8_t(p[5])) == static_cast<int>(p.size()));
    const auto h = decode(p);
    CHECK(h.meta.src == r.src.addr);
    CHECK(h.meta.dst == r.dst.addr);
    CHECK(h.meta.src_port == 5070);
    CHECK(h.meta.dst_port == 5060);
    CHECK_FALSE(h.tcp);
    CHECK(h.time == 1'700'000'000'123'456'000LL);  // microseconds on the wire
    CHECK(std::string(reinterpret_cast<const char*>(h.meta.payload), h.meta.payload_len) == kSip);
    CHECK(chunk_value(p, base::hep::kCorrelationId) == "outside-call-1");
    CHECK(chunk_value(p, base::hep::kAuthKey) == "secret");
    CHECK(chunk_value(p, base::hep::kCaptureId) == std::string("\0\0\x07\xd1", 4));
    CHECK(chunk_value(p, base::hep::kProtoType) == std::string(1, '\x01'));
}

TEST_CASE("HEPv3: IPv6 legs, no optional chunks, and a payload too large for HEP") {
    HepRecord r;
    r.src = *base::Endpoint::parse("[2001:db8::1]:5060");
    r.dst = *base::Endpoint::parse("[2001:db8::2]:5062");
    r.payload = kSip;
    std::string p;
    REQUIRE(encode_hep3(r, p));
    const auto h = decode(p);
    CHECK(h.meta.src == r.src.addr);
    CHECK(h.meta.dst_port == 5062);
    CHECK(chunk_value(p, base::hep::kIpFamily) == std::string(1, '\x0a'));
    CHECK(chunk_value(p, base::hep::kCorrelationId).empty());
    CHECK(chunk_value(p, base::hep::kAuthKey).empty());
    const std::string big(70000, 'x');
    r.payload = big;
    CHECK_FALSE(encode_hep3(r, p));
}

TEST_CASE("HepExporter: sends to the collector; a full queue drops and counts, never blocks") {
    const int rx = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(rx >= 0);
    sockaddr_storage ss;
    base::Endpoint local{*base::IpAddress::parse("127.0.0.1"), 0};
    socklen_t len = base::to_sockaddr(local, ss);
    REQUIRE(::bind(rx, reinterpret_cast<sockaddr*>(&ss), len) == 0);
    len = sizeof ss;
    REQUIRE(::getsockname(rx, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    local.port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);

    auto e = HepExporter::start(local, 7, "", 4);
    REQUIRE(e);
    const auto src = *base::Endpoint::parse("127.0.0.1:5060");
    (*e)->capture(src, local, 1, "c1", kSip);
    // The first message arrives.
    pollfd p{rx, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 5000) == 1);
    char buf[2048];
    const auto n = ::recv(rx, buf, sizeof buf, 0);
    REQUIRE(n > 0);
    const auto h = decode(std::string(buf, static_cast<std::size_t>(n)));
    CHECK(h.meta.src_port == 5060);
    // A burst far over the 4 slots: whatever the sender thread keeps up with, every message is
    // either queued or counted as dropped, and capture() returned each time.
    for (int i = 0; i < 10000; ++i) (*e)->capture(src, local, 1, "c1", kSip);
    CHECK((*e)->count(HepEvent::captured) + (*e)->count(HepEvent::dropped_queue_full) == 10001);
    CHECK((*e)->count(HepEvent::dropped_queue_full) > 0);
    // Once the sender has caught up, a message too large for HEP's 16-bit length is refused
    // (a slot was free: not a queue drop).
    for (int i = 0; i < 500 && (*e)->count(HepEvent::sent) + (*e)->count(HepEvent::send_failed) <
                                   (*e)->count(HepEvent::captured);
         ++i)
        ::usleep(10000);
    const std::string too_big(70000, 'x');
    (*e)->capture(src, local, 1, "c1", too_big);
    CHECK((*e)->count(HepEvent::dropped_too_large) == 1);
    e->reset();  // sends what is queued, then stops
    ::close(rx);
}
