#pragma once
// IP addresses and prefixes (IPv4 and IPv6), the vocabulary every module speaks.
#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/hash.hpp"

namespace sbc::base {

// An IPv4 or IPv6 address. IPv4 is stored as an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) so that one 16-byte key serves both families in tables.
class IpAddress {
  public:
    constexpr IpAddress() = default;

    static IpAddress v4(std::uint32_t host_order) {
        IpAddress a;
        a.bytes_[10] = 0xff;
        a.bytes_[11] = 0xff;
        a.bytes_[12] = static_cast<std::uint8_t>(host_order >> 24);
        a.bytes_[13] = static_cast<std::uint8_t>(host_order >> 16);
        a.bytes_[14] = static_cast<std::uint8_t>(host_order >> 8);
        a.bytes_[15] = static_cast<std::uint8_t>(host_order);
        return a;
    }
    static IpAddress v4_bytes(const std::uint8_t* b4) {
        IpAddress a;
        a.bytes_[10] = 0xff;
        a.bytes_[11] = 0xff;
        std::memcpy(&a.bytes_[12], b4, 4);
        return a;
    }
    static IpAddress v6(const std::uint8_t* b16) {
        IpAddress a;
        std::memcpy(a.bytes_.data(), b16, 16);
        return a;
    }
    // Parses dotted IPv4 or textual IPv6 (RFC 4291 §2.2, with optional [brackets]).
    static std::optional<IpAddress> parse(std::string_view text);

    bool is_v4() const {
        static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return std::memcmp(bytes_.data(), kMapped, 12) == 0;
    }
    bool is_v6() const { return !is_v4(); }
    bool is_unspecified() const;
    bool is_loopback() const;
    // Host-order IPv4 value; only meaningful when is_v4().
    std::uint32_t v4_value() const {
        return (std::uint32_t{bytes_[12]} << 24) | (std::uint32_t{bytes_[13]} << 16) |
               (std::uint32_t{bytes_[14]} << 8) | std::uint32_t{bytes_[15]};
    }
    const std::array<std::uint8_t, 16>& bytes() const { return bytes_; }
    std::string to_string() const;

    auto operator<=>(const IpAddress&) const = default;
    // Two 64-bit compares: this sits on every relay and rate-limit lookup.
    bool operator==(const IpAddress& o) const {
        std::uint64_t a[2], b[2];
        std::memcpy(a, bytes_.data(), 16);
        std::memcpy(b, o.bytes_.data(), 16);
        return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
    }

    std::uint64_t hash() const {
        std::uint64_t hi, lo;
        std::memcpy(&hi, bytes_.data(), 8);
        std::memcpy(&lo, bytes_.data() + 8, 8);
        std::uint64_t h = hi * kGoldenGamma ^ lo;
        h ^= h >> 31;
        h *= 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 29;
        return h;
    }

  private:
    std::array<std::uint8_t, 16> bytes_{};
};

// An address prefix; the length counts bits of the family (0..32 for IPv4, 0..128 for IPv6).
class Prefix {
  public:
    Prefix() = default;
    Prefix(IpAddress addr, std::uint8_t len);  // host bits are cleared
    // "10.0.0.0/8", "2001:db8::/32", or a bare address (full length).
    static std::optional<Prefix> parse(std::string_view text);

    const IpAddress& address() const { return addr_; }
    std::uint8_t length() const { return len_; }  // in the family's own bits
    bool is_v4() const { return addr_.is_v4(); }
    bool contains(const IpAddress& a) const;
    bool contains(const Prefix& p) const {
        return p.len_ >= len_ && p.is_v4() == is_v4() && contains(p.addr_);
    }
    std::string to_string() const;

    auto operator<=>(const Prefix&) const = default;
    bool operator==(const Prefix&) const = default;

  private:
    std::uint8_t mapped_len() const {
        return is_v4() ? static_cast<std::uint8_t>(len_ + 96) : len_;
    }
    IpAddress addr_;
    std::uint8_t len_ = 0;
};

// The covering prefix of `a` with `v4_len` bits for IPv4 or `v6_len` for IPv6 (e.g. /24, /64).
Prefix covering_prefix(const IpAddress& a, std::uint8_t v4_len, std::uint8_t v6_len);

// A port number in decimal, 1..65535 (0 names no port), digits only.
std::optional<std::uint16_t> parse_port(std::string_view text);

struct Endpoint {
    IpAddress addr;
    std::uint16_t port = 0;
    // "1.2.3.4:5060" or "[2001:db8::1]:5060"; the port as parse_port() reads it.
    static std::optional<Endpoint> parse(std::string_view text);
    std::string to_string() const;  // "1.2.3.4:5060" or "[::1]:5060"
    bool operator==(const Endpoint&) const = default;
};

}  // namespace sbc::base

template <>
struct std::hash<sbc::base::IpAddress> {
    std::size_t operator()(const sbc::base::IpAddress& a) const noexcept { return a.hash(); }
};
