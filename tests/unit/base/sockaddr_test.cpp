#include "base/sockaddr.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using namespace sbc::base;

namespace {
Endpoint ep(const char* text) {
    auto e = Endpoint::parse(text);
    REQUIRE(e);
    return *e;
}
}  // namespace

TEST_CASE("to_sockaddr fills an IPv4 sockaddr_in in network order") {
    sockaddr_storage ss;
    std::memset(&ss, 0xaa, sizeof ss);  // leftovers must be cleared
    const socklen_t len = to_sockaddr(ep("192.0.2.7:5060"), ss);
    REQUIRE(len == sizeof(sockaddr_in));
    const auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
    CHECK(s->sin_family == AF_INET);
    CHECK(ntohs(s->sin_port) == 5060);
    CHECK(ntohl(s->sin_addr.s_addr) == 0xC0000207u);
    CHECK(reinterpret_cast<const unsigned char*>(&ss)[sizeof(sockaddr_storage) - 1] == 0);
}

TEST_CASE("to_sockaddr fills an IPv6 sockaddr_in6") {
    sockaddr_storage ss;
    const socklen_t len = to_sockaddr(ep("[2001:db8::1]:443"), ss);
    REQUIRE(len == sizeof(sockaddr_in6));
    const auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
    CHECK(s->sin6_family == AF_INET6);
    CHECK(ntohs(s->sin6_port) == 443);
    char buf[INET6_ADDRSTRLEN];
    REQUIRE(inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof buf));
    CHECK(std::string(buf) == "2001:db8::1");
    CHECK(s->sin6_flowinfo == 0);
    CHECK(s->sin6_scope_id == 0);
}

TEST_CASE("from_sockaddr reverses to_sockaddr for both families") {
    for (const char* text : {"10.1.2.3:1", "127.0.0.1:65535", "[::1]:5060", "[fe80::2]:7"}) {
        const Endpoint e = ep(text);
        sockaddr_storage ss;
        to_sockaddr(e, ss);
        const auto back = from_sockaddr(ss);
        REQUIRE(back);
        CHECK(*back == e);
    }
}

TEST_CASE("from_sockaddr refuses other families") {
    sockaddr_storage ss{};
    ss.ss_family = AF_UNIX;
    CHECK_FALSE(from_sockaddr(ss));
    ss.ss_family = AF_UNSPEC;
    CHECK_FALSE(from_sockaddr(ss));
}

TEST_CASE("a socket bound through to_sockaddr reports the same endpoint") {
    sockaddr_storage ss;
    const socklen_t len = to_sockaddr(Endpoint{*IpAddress::parse("127.0.0.1"), 0}, ss);
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0);
    sockaddr_storage got{};
    socklen_t got_len = sizeof got;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&got), &got_len) == 0);
    ::close(fd);
    const auto e = from_sockaddr(got);
    REQUIRE(e);
    CHECK(e->addr.to_string() == "127.0.0.1");
    CHECK(e->port != 0);  // the kernel chose one
}
