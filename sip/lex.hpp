#pragma once
// Internal to sip/: character classes and a cursor over header values (RFC 3261 §25.1).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/text.hpp"

namespace sbc::sip::lex {

enum : std::uint8_t {
    kToken = 1,  // token chars: alphanum - . ! % * _ + ` ' ~
    kWs = 2,     // SP HT CR LF (inside a header value CR/LF only appear in folds)
    kDigit = 4,
    kUri = 8,    // characters allowed unescaped somewhere in a URI
    kHost = 16,  // hostname / IPv4 characters
    kHex = 32,
    kSchemeCh = 64,  // ALPHA DIGIT + - .
};

constexpr std::array<std::uint8_t, 256> make_table() {
    std::array<std::uint8_t, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] |= kToken | kDigit | kUri | kHost | kHex | kSchemeCh;
    for (int c = 'a'; c <= 'z'; ++c) t[c] |= kToken | kUri | kHost | kSchemeCh;
    for (int c = 'A'; c <= 'Z'; ++c) t[c] |= kToken | kUri | kHost | kSchemeCh;
    for (int c = 'a'; c <= 'f'; ++c) t[c] |= kHex;
    for (int c = 'A'; c <= 'F'; ++c) t[c] |= kHex;
    for (char c : std::string_view("-.!%*_+`'~")) t[static_cast<unsigned char>(c)] |= kToken;
    for (char c : std::string_view("-_.!~*'()%;/?:@&=+$,[]"))
        t[static_cast<unsigned char>(c)] |= kUri;
    for (char c : std::string_view("-._")) t[static_cast<unsigned char>(c)] |= kHost;
    for (char c : std::string_view("+-.")) t[static_cast<unsigned char>(c)] |= kSchemeCh;
    for (char c : std::string_view(" \t\r\n")) t[static_cast<unsigned char>(c)] |= kWs;
    return t;
}
inline constexpr std::array<std::uint8_t, 256> kClass = make_table();

inline bool is(char c, std::uint8_t cls) {
    return kClass[static_cast<unsigned char>(c)] & cls;
}
inline bool is_token(char c) {
    return is(c, kToken);
}
inline bool is_ws(char c) {
    return is(c, kWs);
}
inline bool is_digit(char c) {
    return is(c, kDigit);
}

using base::iequals;

inline std::string_view trim(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && is_ws(s[b])) ++b;
    while (e > b && is_ws(s[e - 1])) --e;
    return s.substr(b, e - b);
}

// Parses 1*DIGIT into v; false on overflow past `max` or when not all digits.
inline bool parse_uint(std::string_view s, std::uint64_t max, std::uint64_t& v) {
    if (s.empty() || s.size() > 40) return false;
    std::uint64_t x = 0;
    for (char c : s) {
        if (!is_digit(c)) return false;
        x = x * 10 + static_cast<std::uint64_t>(c - '0');
        if (x > max) return false;
    }
    v = x;
    return true;
}

// A cursor over [p, end). LWS (SP, HT and folds) is skipped with skip_ws().
struct Cursor {
    const char* p;
    const char* end;
    bool done() const { return p >= end; }
    char peek() const { return *p; }
    void skip_ws() {
        while (p < end && is_ws(*p)) ++p;
    }
    std::string_view token() {
        const char* b = p;
        while (p < end && is_token(*p)) ++p;
        return {b, static_cast<std::size_t>(p - b)};
    }
    bool eat(char c) {
        if (p < end && *p == c) {
            ++p;
            return true;
        }
        return false;
    }
    // A quoted-string starting at p (which is '"'); returns it with its quotes, or false when it
    // is not terminated (RFC 3261 §25.1 quoted-pair: '\' escapes any octet except CR/LF).
    bool quoted(std::string_view& out) {
        const char* b = p;
        ++p;
        while (p < end) {
            char c = *p;
            if (c == '\\') {
                if (p + 1 >= end) return false;
                p += 2;
                continue;
            }
            ++p;
            if (c == '"') {
                out = {b, static_cast<std::size_t>(p - b)};
                return true;
            }
        }
        return false;
    }
};

}  // namespace sbc::sip::lex

namespace sbc::sip {
struct Uri;
struct Param;
struct Limits;
struct Status;
Status parse_fresh_uri(std::string_view text, Uri& u, std::vector<Param>& pool,
                       const Limits& limits);
}  // namespace sbc::sip
