// URI parsing (RFC 3261 §19.1, RFC 3966) and the text helpers (unescape, unquote, unfold).
#include <cstring>

#include "sip/lex.hpp"
#include "sip/sip.hpp"

namespace sbc::sip {

using namespace lex;

const Param* find_param(std::span<const Param> params, std::string_view name) {
    for (const Param& p : params)
        if (iequals(p.name, name)) return &p;
    return nullptr;
}

namespace {

// Splits ";a=b;c" into the pool. Empty parameters are refused (RFC 3261 §25.1: uri-parameter
// needs a name).
bool split_uri_params(std::string_view text, ParamRange& range, std::vector<Param>& pool) {
    range.begin = static_cast<std::uint16_t>(pool.size());
    range.count = 0;
    std::size_t i = 0;
    while (i <= text.size()) {
        std::size_t semi = text.find(';', i);
        if (semi == std::string_view::npos) semi = text.size();
        std::string_view item = text.substr(i, semi - i);
        if (item.empty()) return false;
        Param prm;
        std::size_t eq = item.find('=');
        if (eq == std::string_view::npos) {
            prm.name = item;
        } else {
            prm.name = item.substr(0, eq);
            prm.value = item.substr(eq + 1);
            prm.has_value = true;
            if (prm.name.empty()) return false;
        }
        if (pool.size() >= 0xffff) return false;
        pool.push_back(prm);
        ++range.count;
        i = semi + 1;
    }
    return true;
}

}  // namespace

Status parse_uri(std::string_view text, Uri& out, std::vector<Param>& pool, const Limits& limits) {
    out = Uri{};
    return parse_fresh_uri(text, out, pool, limits);
}

// `u` is default-constructed by the caller (the parser parses into new table slots, which saves
// a copy per URI on the hot path).
Status parse_fresh_uri(std::string_view text, Uri& u, std::vector<Param>& pool,
                       const Limits& limits) {
    u.raw = text;
    if (text.size() > limits.max_uri_length) return Status::fail(414, Reject::uri_too_long);
    std::size_t colon = text.find(':');
    if (colon == std::string_view::npos || colon == 0)
        return Status::fail(400, Reject::uri_without_scheme);
    u.scheme = text.substr(0, colon);
    if (!(u.scheme[0] >= 'a' && u.scheme[0] <= 'z') && !(u.scheme[0] >= 'A' && u.scheme[0] <= 'Z'))
        return Status::fail(400, Reject::malformed_uri_scheme);
    for (char c : u.scheme)
        if (!is(c, kSchemeCh)) return Status::fail(400, Reject::malformed_uri_scheme);
    std::string_view rest = text.substr(colon + 1);
    if (rest.empty()) return Status::fail(400, Reject::empty_uri);
    // One pass: validate the characters and find the end of the userinfo.
    std::size_t at = std::string_view::npos;
    for (std::size_t k = 0; k < rest.size(); ++k) {
        char c = rest[k];
        if (!is(c, kUri)) return Status::fail(400, Reject::invalid_character_in_uri);
        if (c == '@' && at == std::string_view::npos) at = k;
    }

    auto sch = [&](std::string_view n) {
        return u.scheme.size() == n.size() && iequals(u.scheme, n);
    };
    if (sch("sip"))
        u.kind = UriScheme::sip;
    else if (sch("sips"))
        u.kind = UriScheme::sips;
    else if (sch("tel"))
        u.kind = UriScheme::tel;
    else {
        u.kind = UriScheme::other;
        u.opaque = rest;
        return Status::success();
    }

    if (u.kind == UriScheme::tel) {
        std::size_t semi = rest.find(';');
        u.user = rest.substr(0, semi);
        u.has_user = true;
        if (u.user.empty()) return Status::fail(400, Reject::empty_telephone_number);
        if (semi != std::string_view::npos) {
            u.params_text = rest.substr(semi + 1);
            if (!split_uri_params(u.params_text, u.params, pool))
                return Status::fail(400, Reject::empty_uri_parameter);
        }
        return Status::success();
    }

    // sip/sips: [userinfo "@"] hostport uri-parameters [headers]. The user part may hold ';',
    // '?' and ',' (RFC 4475 §3.1.1.9), so the userinfo ends at the first '@'.
    std::string_view hostpart = rest;
    if (at != std::string_view::npos) {
        std::string_view userinfo = rest.substr(0, at);
        hostpart = rest.substr(at + 1);
        std::size_t pc = userinfo.find(':');
        u.has_user = true;
        if (pc != std::string_view::npos) {
            u.user = userinfo.substr(0, pc);
            u.password = userinfo.substr(pc + 1);
            u.has_password = true;
        } else {
            u.user = userinfo;
        }
        if (u.user.empty()) return Status::fail(400, Reject::empty_uri_user);
    }
    std::size_t i = 0;
    if (!hostpart.empty() && hostpart[0] == '[') {
        std::size_t rb = hostpart.find(']');
        if (rb == std::string_view::npos || rb < 3)
            return Status::fail(400, Reject::malformed_ipv6_reference);
        for (std::size_t k = 1; k < rb; ++k) {
            char c = hostpart[k];
            if (!is(c, kHex) && c != ':' && c != '.')
                return Status::fail(400, Reject::malformed_ipv6_reference);
        }
        u.ipv6 = true;
        i = rb + 1;
    } else {
        while (i < hostpart.size() && is(hostpart[i], kHost)) ++i;
    }
    u.host = hostpart.substr(0, i);
    if (u.host.empty()) return Status::fail(400, Reject::uri_without_host);
    if (i < hostpart.size() && hostpart[i] == ':') {
        std::size_t b = ++i;
        while (i < hostpart.size() && is_digit(hostpart[i])) ++i;
        u.port_text = hostpart.substr(b, i - b);
        std::uint64_t port = 0;
        if (!parse_uint(u.port_text, 65535, port)) return Status::fail(400, Reject::bad_uri_port);
        u.port = static_cast<std::uint16_t>(port);
        u.has_port = true;
    }
    std::string_view tail = hostpart.substr(i);
    if (!tail.empty() && tail[0] != ';' && tail[0] != '?')
        return Status::fail(400, Reject::invalid_character_in_uri_host);
    std::size_t q = tail.find('?');
    std::string_view ptext = tail.substr(0, q);
    if (q != std::string_view::npos) {
        u.headers_text = tail.substr(q + 1);
        if (u.headers_text.empty()) return Status::fail(400, Reject::empty_uri_headers);
    }
    if (!ptext.empty()) {
        u.params_text = ptext.substr(1);
        if (!split_uri_params(u.params_text, u.params, pool))
            return Status::fail(400, Reject::empty_uri_parameter);
    }
    return Status::success();
}

std::string unescape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

std::string unquote(std::string_view s) {
    if (s.size() < 2 || s.front() != '"' || s.back() != '"') return std::string(s);
    std::string out;
    for (std::size_t i = 1; i + 1 < s.size(); ++i) {
        if (s[i] == '\\' && i + 2 < s.size()) ++i;
        out.push_back(s[i]);
    }
    return out;
}

std::string unfold(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r' || s[i] == '\n') {
            // Drop the whitespace before the line end and after it; keep one SP.
            while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
            while (i + 1 < s.size() && is_ws(s[i + 1])) ++i;
            out.push_back(' ');
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

std::vector<std::string_view> split_list(std::string_view v) {
    std::vector<std::string_view> out;
    std::size_t b = 0;
    bool in_quote = false, in_angle = false;
    for (std::size_t i = 0; i < v.size(); ++i) {
        char c = v[i];
        if (in_quote) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_quote = false;
        } else if (c == '"') {
            in_quote = true;
        } else if (c == '<') {
            in_angle = true;
        } else if (c == '>') {
            in_angle = false;
        } else if (c == ',' && !in_angle) {
            out.push_back(trim(v.substr(b, i - b)));
            b = i + 1;
        }
    }
    out.push_back(trim(v.substr(b)));
    return out;
}

}  // namespace sbc::sip
