#include "base/ip.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace sbc::base {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
        text = text.substr(1, text.size() - 2);
    }
    if (text.empty() || text.size() > 45) return std::nullopt;
    char buf[64];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    std::uint8_t out[16];
    if (text.find(':') == std::string_view::npos) {
        if (inet_pton(AF_INET, buf, out) != 1) return std::nullopt;
        return IpAddress::v4_bytes(out);
    }
    if (inet_pton(AF_INET6, buf, out) != 1) return std::nullopt;
    return IpAddress::v6(out);
}

bool IpAddress::is_unspecified() const {
    if (is_v4()) return v4_value() == 0;
    for (auto b : bytes_)
        if (b) return false;
    return true;
}

bool IpAddress::is_loopback() const {
    if (is_v4()) return bytes_[12] == 127;
    for (int i = 0; i < 15; ++i)
        if (bytes_[i]) return false;
    return bytes_[15] == 1;
}

std::string IpAddress::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    if (is_v4()) {
        inet_ntop(AF_INET, &bytes_[12], buf, sizeof buf);
    } else {
        inet_ntop(AF_INET6, bytes_.data(), buf, sizeof buf);
    }
    return buf;
}

namespace {
IpAddress mask(const IpAddress& a, unsigned mapped_len) {
    auto b = a.bytes();
    for (unsigned i = 0; i < 16; ++i) {
        unsigned bit0 = i * 8;
        if (bit0 >= mapped_len) {
            b[i] = 0;
        } else if (bit0 + 8 > mapped_len) {
            b[i] &= static_cast<std::uint8_t>(0xff << (8 - (mapped_len - bit0)));
        }
    }
    return IpAddress::v6(b.data());
}
}  // namespace

Prefix::Prefix(IpAddress addr, std::uint8_t len) : len_(len) {
    const unsigned max = addr.is_v4() ? 32 : 128;
    if (len_ > max) len_ = static_cast<std::uint8_t>(max);
    addr_ = mask(addr, addr.is_v4() ? len_ + 96u : len_);
}

std::optional<Prefix> Prefix::parse(std::string_view text) {
    auto slash = text.find('/');
    auto addr = IpAddress::parse(text.substr(0, slash));
    if (!addr) return std::nullopt;
    const unsigned max = addr->is_v4() ? 32 : 128;
    unsigned len = max;
    if (slash != std::string_view::npos) {
        auto digits = text.substr(slash + 1);
        auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
        if (ec != std::errc{} || p != digits.data() + digits.size() || digits.empty() || len > max)
            return std::nullopt;
    }
    return Prefix(*addr, static_cast<std::uint8_t>(len));
}

bool Prefix::contains(const IpAddress& a) const {
    if (a.is_v4() != is_v4()) return false;
    return mask(a, mapped_len()) == addr_;
}

std::string Prefix::to_string() const {
    return addr_.to_string() + "/" + std::to_string(len_);
}

Prefix covering_prefix(const IpAddress& a, std::uint8_t v4_len, std::uint8_t v6_len) {
    return Prefix(a, a.is_v4() ? v4_len : v6_len);
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
    if (text.empty() || text.size() > 5) return std::nullopt;
    unsigned v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v == 0 || v > 65535) return std::nullopt;
    return static_cast<std::uint16_t>(v);
}

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto addr = IpAddress::parse(text.substr(0, colon));  // takes "[v6]" as well
    auto port = parse_port(text.substr(colon + 1));
    if (!addr || !port) return std::nullopt;
    return Endpoint{*addr, *port};
}

std::string Endpoint::to_string() const {
    if (addr.is_v4()) return addr.to_string() + ":" + std::to_string(port);
    // Built by appending: GCC 12 at -O3 reports a false -Wrestrict on `"[" + std::string`.
    std::string out;
    out.reserve(INET6_ADDRSTRLEN + 8);
    out += '[';
    out += addr.to_string();
    out += "]:";
    out += std::to_string(port);
    return out;
}

}  // namespace sbc::base
