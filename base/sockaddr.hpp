#pragma once
// Endpoint <-> BSD socket address, for the modules that call the socket API. Inline: the
// socket backend converts every received datagram's source.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>

#include "base/ip.hpp"

namespace sbc::base {

// Fills `ss` (zeroed first) with `e`; returns the length to give bind/connect/sendto.
inline socklen_t to_sockaddr(const Endpoint& e, sockaddr_storage& ss) {
    std::memset(&ss, 0, sizeof ss);
    if (e.addr.is_v4()) {
        auto* s = reinterpret_cast<sockaddr_in*>(&ss);
        s->sin_family = AF_INET;
        s->sin_port = htons(e.port);
        std::memcpy(&s->sin_addr, e.addr.bytes().data() + 12, 4);
        return sizeof(sockaddr_in);
    }
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(e.port);
    std::memcpy(&s->sin6_addr, e.addr.bytes().data(), 16);
    return sizeof(sockaddr_in6);
}

// The endpoint of an AF_INET or AF_INET6 address; nullopt for any other family.
inline std::optional<Endpoint> from_sockaddr(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
        return Endpoint{IpAddress::v4_bytes(reinterpret_cast<const std::uint8_t*>(&s->sin_addr)),
                        ntohs(s->sin_port)};
    }
    if (ss.ss_family == AF_INET6) {
        const auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
        return Endpoint{IpAddress::v6(reinterpret_cast<const std::uint8_t*>(&s->sin6_addr)),
                        ntohs(s->sin6_port)};
    }
    return std::nullopt;
}

}  // namespace sbc::base
