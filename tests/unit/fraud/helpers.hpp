#pragma once
// Shared by the fraud unit tests: a small configuration built in code (the engine tests do
// not depend on policy/), and event constructors on a virtual clock.
#include <string>
#include <vector>

#include "fraud/fraud.hpp"

namespace sbc::fraud::test {

constexpr base::Nanos kSec = base::kNanosPerSecond;
// Friday 2026-11-27 00:00:00 UTC.
constexpr base::UnixNanos kFriday = 1'795'737'600LL * kSec;

inline std::vector<CountryCode> test_country_codes() {
    return {{"1", "US"},   {"1876", "JM"}, {"33", "FR"},  {"32", "BE"},  {"44", "GB"},
            {"49", "DE"},  {"53", "CU"},   {"252", "SO"}, {"882", "XN"}, {"883", "XN"},
            {"881", "XS"}, {"850", "KP"},  {"234", "NG"}, {"7", "RU"},   {"41", "CH"}};
}

inline EngineConfig base_config() {
    EngineConfig c;
    c.home_country_code = "33";
    c.country_codes = test_country_codes();
    c.prefix_lists = {
        {"irsf", Category::irsf, {"882", "883", "881", "3732"}},
        {"premium", Category::premium, {"3389", "4490"}},
        {"domestic", Category::domestic, {"33"}},
    };
    c.max_tracked_keys = 4096;
    c.max_tracked_calls = 1024;
    return c;
}

inline Rule rule(std::string id, Feature f, KeyKind k, double threshold, double weight,
                 base::Nanos window = 600 * kSec, Op op = Op::ge) {
    Rule r;
    r.id = std::move(id);
    r.feature = f;
    r.key = k;
    r.threshold = threshold;
    r.weight = weight;
    r.window = window;
    r.op = op;
    return r;
}

struct Call {
    std::string call_id;
    std::string src = "192.0.2.10";
    std::string account = "1001";
    std::string callee = "33612345678";
    std::string ua = "Yealink SIP-T46S";
    RequestKind request = RequestKind::call;
    std::string country;
    std::string tenant;
};

inline CallAttempt attempt(const Call& c, base::Nanos now,
                           base::UnixNanos wall = kFriday + 10 * 3600 * kSec) {
    CallAttempt a;
    a.now = now;
    a.wall = wall;
    a.call_id = c.call_id;
    a.source.addr = *base::IpAddress::parse(c.src);
    a.source.port = 5060;
    a.source.transport = "udp";
    a.source.country = c.country;
    a.account = c.account;
    a.tenant = c.tenant;
    a.caller = c.account;
    a.callee = c.callee;
    a.user_agent = c.ua;
    a.request = c.request;
    return a;
}

inline AuthResult auth(const std::string& src, const std::string& user, bool ok, base::Nanos now,
                       std::string_view ua = {}) {
    AuthResult a;
    a.now = now;
    a.wall = kFriday + now;
    a.source.addr = *base::IpAddress::parse(src);
    a.source.port = 5060;
    a.username = user;
    a.user_agent = ua;
    a.success = ok;
    return a;
}

inline Registration registration(const std::string& src, const std::string& user, Outcome outcome,
                                 base::Nanos now, std::string_view ua = {}) {
    Registration r;
    r.now = now;
    r.wall = kFriday + now;
    r.source.addr = *base::IpAddress::parse(src);
    r.source.port = 5060;
    r.user = user;
    r.user_agent = ua;
    r.outcome = outcome;
    return r;
}

}  // namespace sbc::fraud::test
