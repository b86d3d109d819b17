// JSON event lines for verdicts. Hand-written: nlohmann-json stays in sbc/, and a verdict
// line is small and flat.
#include <cinttypes>
#include <cmath>
#include <cstdio>

#include "fraud/fraud.hpp"

namespace sbc::fraud {

namespace {

class JsonLine {
  public:
    JsonLine() {
        out_.reserve(512);
        out_ += '{';
    }

    JsonLine& key(std::string_view k) {
        if (out_.size() > 1 && out_.back() != '{' && out_.back() != '[') out_ += ',';
        string_value(k);
        out_ += ':';
        return *this;
    }
    JsonLine& str(std::string_view k, std::string_view v) {
        key(k);
        string_value(v);
        return *this;
    }
    JsonLine& num(std::string_view k, double v) {
        key(k);
        number(v);
        return *this;
    }
    JsonLine& boolean(std::string_view k, bool v) {
        key(k);
        out_ += v ? "true" : "false";
        return *this;
    }
    void open_array(std::string_view k) {
        key(k);
        out_ += '[';
    }
    void close_array() { out_ += ']'; }
    void open_object() {
        if (out_.back() != '[') out_ += ',';
        out_ += '{';
    }
    void close_object() { out_ += '}'; }
    std::string done() {
        out_ += '}';
        return std::move(out_);
    }

  private:
    void number(double v) {
        if (!std::isfinite(v)) {
            out_ += "null";  // JSON has no NaN/Infinity
            return;
        }
        char buf[32];
        if (v == std::floor(v) && std::fabs(v) < 1e15)
            std::snprintf(buf, sizeof buf, "%" PRId64, static_cast<std::int64_t>(v));
        else
            std::snprintf(buf, sizeof buf, "%.6g", v);
        out_ += buf;
    }
    // RFC 8259 §7: escape '"', '\\' and control characters; invalid UTF-8 bytes (SIP headers
    // come from attackers) become U+FFFD so every line stays valid JSON.
    void string_value(std::string_view s) {
        out_ += '"';
        for (std::size_t i = 0; i < s.size();) {
            auto c = static_cast<unsigned char>(s[i]);
            if (c < 0x80) {
                switch (c) {
                    case '"':
                        out_ += "\\\"";
                        break;
                    case '\\':
                        out_ += "\\\\";
                        break;
                    case '\n':
                        out_ += "\\n";
                        break;
                    case '\r':
                        out_ += "\\r";
                        break;
                    case '\t':
                        out_ += "\\t";
                        break;
                    default:
                        if (c < 0x20 || c == 0x7f) {
                            char buf[8];
                            std::snprintf(buf, sizeof buf, "\\u%04x", c);
                            out_ += buf;
                        } else {
                            out_ += static_cast<char>(c);
                        }
                }
                ++i;
                continue;
            }
            std::size_t len = utf8_length(s, i);
            if (len == 0) {
                out_ += "\\ufffd";
                ++i;
            } else {
                out_.append(s.substr(i, len));
                i += len;
            }
        }
        out_ += '"';
    }
    // Length of a valid UTF-8 sequence at s[i] (RFC 3629 §4), 0 if invalid.
    static std::size_t utf8_length(std::string_view s, std::size_t i) {
        auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
        auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xc0) == 0x80; };
        unsigned char c = b(0);
        if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
        if (c >= 0xe0 && c <= 0xef) {
            if (!cont(1) || !cont(2)) return 0;
            if (c == 0xe0 && b(1) < 0xa0) return 0;   // overlong
            if (c == 0xed && b(1) >= 0xa0) return 0;  // surrogates
            return 3;
        }
        if (c >= 0xf0 && c <= 0xf4) {
            if (!cont(1) || !cont(2) || !cont(3)) return 0;
            if (c == 0xf0 && b(1) < 0x90) return 0;
            if (c == 0xf4 && b(1) >= 0x90) return 0;
            return 4;
        }
        return 0;
    }
    std::string out_;
};

void verdict_fields(JsonLine& j, const Verdict& v) {
    j.str("action", name(v.action));
    j.str("shadow_action", name(v.shadow_action));
    j.num("score", v.score);
    j.num("shadow_score", v.shadow_score);
    if (v.duplicate) j.boolean("duplicate", true);
    if (v.banned_source) j.boolean("banned_source", true);
    if (v.banned_caller) j.boolean("banned_caller", true);
    if (v.ban_target != BanTarget::none) j.str("ban_target", name(v.ban_target));
    if (v.ban_prefix_length) j.num("ban_prefix_length", v.ban_prefix_length);
    if (v.ban_until) j.num("ban_until_ns", static_cast<double>(v.ban_until));
}

void reasons(JsonLine& j, const Verdict& v) {
    j.open_array("reasons");
    for (std::size_t i = 0; i < v.reason_count; ++i) {
        const auto& r = v.reasons[i];
        j.open_object();
        j.str("rule", r.rule_id);
        if (r.hard) {
            j.str("kind", r.ban ? "deny-ban" : "deny");
        } else {
            j.str("feature", name(r.feature));
            j.str("key", name(r.key));
            j.num("value", r.value);
            j.str("op", description(r.op));
            j.num("threshold", r.threshold);
            j.num("weight", r.weight);
        }
        j.boolean("observe", r.observe);
        j.close_object();
    }
    j.close_array();
    if (v.reasons_dropped) j.num("reasons_dropped", v.reasons_dropped);
}

void source(JsonLine& j, const Source& s, const Verdict& v) {
    j.str("src", base::Endpoint{s.addr, s.port}.to_string());
    if (!s.transport.empty()) j.str("transport", s.transport);
    if (v.source_country[0]) j.str("src_country", std::string_view(v.source_country.data(), 2));
}

double wall_seconds(base::UnixNanos w) {
    return static_cast<double>(w / base::kNanosPerSecond);
}

}  // namespace

std::string to_json(const Verdict& v, const CallAttempt& a) {
    JsonLine j;
    j.str("event", "fraud").str("kind", a.request == RequestKind::call ? "attempt" : "request");
    j.num("wall", wall_seconds(a.wall));
    verdict_fields(j, v);
    source(j, a.source, v);
    j.str("request", name(a.request));
    j.str("call_id", a.call_id).str("account", a.account);
    if (!a.tenant.empty()) j.str("tenant", a.tenant);
    j.str("from", a.caller).str("to", a.callee);
    if (v.destination_country[0])
        j.str("dst_country", std::string_view(v.destination_country.data(), 2));
    if (v.caller_country[0]) j.str("from_country", std::string_view(v.caller_country.data(), 2));
    if (a.direction != Direction::unknown) j.str("direction", name(a.direction));
    if (a.trusted) j.boolean("trusted", true);
    j.str("ua", a.user_agent);
    reasons(j, v);
    return j.done();
}

std::string to_json(const Verdict& v, const AuthResult& a) {
    JsonLine j;
    j.str("event", "fraud").str("kind", "auth");
    j.num("wall", wall_seconds(a.wall));
    verdict_fields(j, v);
    source(j, a.source, v);
    j.str("user", a.username).boolean("success", a.success);
    if (!a.tenant.empty()) j.str("tenant", a.tenant);
    j.str("ua", a.user_agent);
    reasons(j, v);
    return j.done();
}

std::string to_json(const Verdict& v, const Registration& r) {
    JsonLine j;
    j.str("event", "fraud").str("kind", "register");
    j.num("wall", wall_seconds(r.wall));
    verdict_fields(j, v);
    source(j, r.source, v);
    j.str("user", r.user).str("outcome", name(r.outcome));
    if (!r.tenant.empty()) j.str("tenant", r.tenant);
    j.str("ua", r.user_agent);
    reasons(j, v);
    return j.done();
}

}  // namespace sbc::fraud
