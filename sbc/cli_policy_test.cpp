// sbc policy test FILE... --call JSON | --calls FILE.jsonl [--json]
// Runs events (call attempts, answers, ends, authentication results, registrations, or SIP
// messages) through the compiled policy and the fraud engine on a virtual clock, and explains
// every verdict. Events reach the engine through the CallObserver, the SIP -> fraud mapping
// the live front door and `sbc replay` use.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fraud/fraud.hpp"
#include "policy/policy.hpp"
#include "sbc/call_observer.hpp"
#include "sbc/cli.hpp"
#include "sbc/fraud_wiring.hpp"

namespace sbc::cli {

namespace {

using nlohmann::json;

struct Stats {
    std::map<std::string, std::uint64_t> events;
    std::array<std::uint64_t, fraud::kActionCount> actions{};
    std::uint64_t shadow_non_allow = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t banned_drops = 0;
    std::uint64_t rejected = 0;
    std::uint64_t warnings = 0;
    struct Ban {
        std::string src;
        double t = 0;
        double seconds = 0;
        std::string rules;
    };
    std::vector<Ban> bans;
};

std::string str(const json& j, const char* k, std::string def = {}) {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return def;
    if (it->is_string()) return it->get<std::string>();
    return it->dump();
}

// "203.0.113.9", "203.0.113.9:5060", "[2001:db8::1]:5060", "2001:db8::1"
bool parse_source(const std::string& s, base::IpAddress& addr, std::uint16_t& port) {
    port = 5060;
    if (auto a = base::IpAddress::parse(s)) {
        addr = *a;
        return true;
    }
    const auto e = base::Endpoint::parse(s);
    if (!e) return false;
    addr = e->addr;
    port = e->port;
    return true;
}

bool digits_at(std::string_view s, std::size_t at, std::size_t n, int& out) {
    if (at + n > s.size()) return false;
    out = 0;
    for (std::size_t i = at; i < at + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + (s[i] - '0');
    }
    return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (the civil-from-days inverse).
std::int64_t days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int yoe = static_cast<int>(y - era * 400);
    const int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

}  // namespace

// RFC 3339 §5.6 date-time: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), "T" and "Z" in
// either case (§5.6 NOTE). The fraction is read to the nanosecond, exactly; a leap second
// (:60) has no Unix time and is refused. Returns "" or what is wrong.
std::string parse_rfc3339(std::string_view s, std::int64_t& out) {
    const char* expected =
        "expected an RFC 3339 time YYYY-MM-DDTHH:MM:SS[.fraction] with Z or a UTC offset "
        "(+HH:MM/-HH:MM)";
    int year, mon, day, hour, min, sec;
    if (!digits_at(s, 0, 4, year) || s.size() < 19 || s[4] != '-' || !digits_at(s, 5, 2, mon) ||
        s[7] != '-' || !digits_at(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't') ||
        !digits_at(s, 11, 2, hour) || s[13] != ':' || !digits_at(s, 14, 2, min) || s[16] != ':' ||
        !digits_at(s, 17, 2, sec))
        return expected;
    static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (mon < 1 || mon > 12) return "month " + std::to_string(mon) + " is not 01-12";
    const int mdays = kDays[mon - 1] + (mon == 2 && leap ? 1 : 0);
    if (day < 1 || day > mdays) return "day " + std::to_string(day) + " is not in that month";
    if (hour > 23 || min > 59) return "time of day out of range";
    if (sec == 60) return "a leap second (:60) has no Unix time";
    if (sec > 59) return "seconds out of range";
    std::size_t at = 19;
    std::int64_t nanos = 0;
    if (at < s.size() && s[at] == '.') {
        ++at;
        std::size_t n = 0;
        for (; at < s.size() && s[at] >= '0' && s[at] <= '9'; ++at, ++n) {
            if (n < 9)
                nanos = nanos * 10 + (s[at] - '0');
            else if (s[at] != '0')
                return "a fraction finer than a nanosecond cannot be kept exactly";
        }
        if (n == 0) return "a '.' must be followed by the fraction's digits";
        for (; n < 9; ++n) nanos *= 10;
    }
    if (at >= s.size()) return "no UTC offset: add Z or +HH:MM/-HH:MM (a local time is ambiguous)";
    std::int64_t offset = 0;
    if (s[at] == 'Z' || s[at] == 'z') {
        ++at;
    } else if (s[at] == '+' || s[at] == '-') {
        int oh, om;
        if (!digits_at(s, at + 1, 2, oh) || at + 3 >= s.size() || s[at + 3] != ':' ||
            !digits_at(s, at + 4, 2, om))
            return "the UTC offset must be +HH:MM or -HH:MM";
        if (oh > 23 || om > 59) return "UTC offset out of range";
        offset = (oh * 60 + om) * 60 * (s[at] == '-' ? -1 : 1);
        at += 6;
    } else {
        return expected;
    }
    if (at != s.size()) return "unexpected text after the time";
    const std::int64_t secs =
        days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec - offset;
    out = secs * base::kNanosPerSecond + nanos;
    return {};
}

namespace {

std::string fmt(double v) {
    char buf[32];
    if (v == std::floor(v) && std::fabs(v) < 1e15)
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    else
        std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
}

std::string upper(std::string_view s) {
    std::string u(s);
    for (auto& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return u;
}

void print_human(const std::string& where, double t, const std::string& what,
                 const fraud::Verdict& v) {
    std::cout << where << " t=" << fmt(t) << "s " << what << ": " << upper(name(v.action));
    if (v.banned_source) {
        std::cout << " (source under a ban)\n";
        return;
    }
    if (v.duplicate) {
        std::cout << " (duplicate Call-ID: counted once, verdict repeated)\n";
        return;
    }
    std::cout << " score " << fmt(v.score);
    if (v.shadow_action != v.action || v.shadow_score != v.score)
        std::cout << " (observe: would " << name(v.shadow_action) << ", score "
                  << fmt(v.shadow_score) << ")";
    if (v.action == fraud::Action::ban)
        std::cout << " ban " << fmt(static_cast<double>(v.ban_until) / 1e9 - t) << "s";
    std::cout << "\n";
    for (std::size_t i = 0; i < v.reason_count; ++i) {
        const auto& r = v.reasons[i];
        std::cout << "    " << r.rule_id << ": ";
        if (r.hard) {
            std::cout << "deny rule -> " << (r.ban ? "ban" : "block");
        } else {
            std::cout << name(r.feature) << "[" << name(r.key) << "] = " << fmt(r.value) << " "
                      << description(r.op) << " " << fmt(r.threshold) << " -> +" << fmt(r.weight);
        }
        if (r.observe) std::cout << " (observe)";
        std::cout << "\n";
    }
    if (v.reasons_dropped) std::cout << "    ... " << v.reasons_dropped << " more rules fired\n";
}

// A final status ("status", SIP) or an outcome by name ("outcome"); answered when neither.
std::string outcome_field(const json& j, fraud::Outcome& out) {
    out = fraud::Outcome::answered;
    if (auto it = j.find("outcome"); it != j.end()) {
        const std::string o = it->is_string() ? it->get<std::string>() : std::string();
        for (std::size_t i = 0; i < fraud::kOutcomeCount; ++i)
            if (fraud::kOutcomeNames[i] == o) {
                out = static_cast<fraud::Outcome>(i);
                return {};
            }
        std::string names;
        for (auto n : fraud::kOutcomeNames) names += (names.empty() ? "" : ", ") + std::string(n);
        return "unknown \"outcome\" '" + o + "' (" + names + ")";
    }
    if (auto it = j.find("status"); it != j.end()) {
        if (!it->is_number_integer()) return "\"status\" must be a SIP status code";
        out = outcome_of(it->get<int>());
    }
    return {};
}

// The keys each event type reads; any other key is a mistake in the input (a misspelt
// field would otherwise be silently ignored and the verdict explained without it).
struct EventKeys {
    std::string_view type;
    std::vector<std::string_view> keys;
};
const std::vector<std::string_view> kCommonKeys = {"type", "t", "wall", "id"};
const std::vector<std::string_view> kSourceKeys = {"src", "transport", "country", "ua", "tenant"};
const EventKeys kEventKeys[] = {
    {"attempt", {"account", "from", "to", "method", "call_id", "direction"}},
    {"request", {"account", "from", "to", "method", "call_id", "direction"}},
    {"answer", {"call_id"}},
    {"end", {"call_id", "status", "outcome"}},
    {"auth", {"account", "user", "ok", "direction"}},
    {"register", {"account", "user", "status", "outcome", "direction"}},
    {"sip", {"message", "dst"}},
};

const EventKeys* event_keys(std::string_view type) {
    for (const auto& e : kEventKeys)
        if (e.type == type) return &e;
    return nullptr;
}

bool known_key(const EventKeys& e, std::string_view key) {
    auto in = [&](const std::vector<std::string_view>& v) {
        return std::find(v.begin(), v.end(), key) != v.end();
    };
    if (in(kCommonKeys) || in(e.keys)) return true;
    return e.type != "answer" && e.type != "end" && in(kSourceKeys);
}

class Runner final : FraudEventSink {
  public:
    Runner(const policy::Policy& p, fraud::Engine& e, bool json_out, bool lenient)
        : policy_(p),
          engine_(e),
          json_(json_out),
          lenient_(lenient),
          observer_(*this, &p.numbering) {
        observer_.set_access(&p.access);
        start_wall_ = static_cast<base::UnixNanos>(std::time(nullptr)) * base::kNanosPerSecond;
    }

    // Scores one input line; returns "" or why the line was rejected (then nothing of it
    // reached the engine). Warnings (lenient mode) are reported here.
    std::string run(const std::string& line, std::size_t lineno) {
        lineno_ = lineno;
        id_.clear();
        json j;
        try {
            j = json::parse(line);
        } catch (const json::exception& e) {
            return std::string("not JSON: ") + e.what();
        }
        if (!j.is_object()) return "an event must be a JSON object";
        if (auto it = j.find("id"); it != j.end()) {
            if (!it->is_string() && !it->is_number_integer())
                return "\"id\" must be a string or an integer";
            id_ = it->is_string() ? it->get<std::string>() : it->dump();
        }
        std::string type = str(j, "type", "attempt");
        const EventKeys* keys = event_keys(type);
        if (!keys)
            return "unknown event type '" + type +
                   "' (attempt, request, answer, end, auth, register, sip)";
        for (const auto& [key, value] : j.items()) {
            if (known_key(*keys, key)) continue;
            std::string known;
            for (auto k : kCommonKeys)
                known += std::string(known.empty() ? "" : ", ") + std::string(k);
            if (type != "answer" && type != "end")
                for (auto k : kSourceKeys) known += ", " + std::string(k);
            for (auto k : keys->keys) known += ", " + std::string(k);
            std::string msg = "unknown key \"" + key + "\" in a " + type + " event (" + known + ")";
            if (!lenient_) return msg;
            warn(msg + "; ignored (--lenient)");
        }
        base::Nanos now = now_;
        base::UnixNanos wall = 0;
        bool has_wall = false;
        if (auto it = j.find("wall"); it != j.end()) {
            if (it->is_number_integer()) {
                wall = it->get<std::int64_t>() * base::kNanosPerSecond;
            } else if (it->is_number()) {
                // A JSON number is a double: exact to the microsecond at today's Unix times.
                wall = std::llround(it->get<double>() * 1e6) * 1000;
            } else if (it->is_string()) {
                if (auto err = parse_rfc3339(it->get<std::string>(), wall); !err.empty())
                    return "\"wall\" '" + it->get<std::string>() + "': " + err;
            } else {
                return "\"wall\" must be Unix seconds or an RFC 3339 time";
            }
            has_wall = true;
        }
        if (auto it = j.find("t"); it != j.end()) {
            if (!it->is_number()) return "\"t\" must be a number of seconds";
            now = static_cast<base::Nanos>(std::llround(it->get<double>() * 1e9));
            if (now < now_)
                return "\"t\" " + fmt(it->get<double>()) + " is before the previous event's " +
                       fmt(static_cast<double>(now_) / 1e9) + "s: events must be in time order";
            if (has_wall && !anchored_) anchor(now, wall);
        } else if (has_wall) {
            // Wall-clock times only: they drive the engine's clock.
            if (!anchored_) anchor(now_, wall);
            now = anchor_now_ + (wall - anchor_wall_);
            if (now < now_)
                return "\"wall\" is " + fmt(static_cast<double>(now_ - now) / 1e9) +
                       "s before the previous event's: events must be in time order";
        }
        if (!has_wall) wall = anchored_ ? anchor_wall_ + (now - anchor_now_) : start_wall_ + now;
        now_ = now;
        t_ = static_cast<double>(now) / 1e9;
        ++n_;
        ++stats_.events[type];
        std::string src_text = str(j, "src", "");
        fraud::Source src;
        std::uint16_t port = 5060;
        if (!src_text.empty() && !parse_source(src_text, src.addr, port))
            return "bad \"src\" address '" + src_text + "'";
        src.port = port;
        std::string transport = str(j, "transport", "udp");
        std::string country = str(j, "country");
        src.transport = transport;
        src.country = country;
        std::string ua = str(j, "ua");
        std::string tenant = str(j, "tenant");
        src_text_ = src_text;
        // The account is "account" in every event; "user" is its older name in auth and
        // register events.
        std::string account = str(j, "account");
        if (auto user = str(j, "user"); !user.empty()) {
            if (!account.empty() && account != user)
                return "\"account\" '" + account + "' and its alias \"user\" '" + user + "' differ";
            account = user;
        }

        // "direction": given, else derived as the live front door does (trusted trunks,
        // internal networks of [access]) from the source and the dialed number.
        auto direction_field = [&](std::string_view dialed, fraud::Direction& direction) {
            ObservedMessage from_src;
            from_src.source = {src.addr, src.port};
            direction = direction_of(from_src, &policy_.access, dialed);
            if (auto d = j.find("direction"); d != j.end()) {
                const auto* names = &fraud::kDirectionNames;
                auto it = d->is_string()
                              ? std::find(names->begin() + 1, names->end(), d->get<std::string>())
                              : names->end();
                if (it == names->end())
                    return std::string(
                        "\"direction\" must be \"inbound\", \"outbound\" or \"internal\"");
                direction = static_cast<fraud::Direction>(it - names->begin());
            }
            return std::string();
        };
        if (type == "attempt" || type == "request") {
            std::string call_id = str(j, "call_id", "call-" + std::to_string(n_));
            std::string account = str(j, "account");
            // The calling number, normalized like the dialed one (caller keys, callbacks).
            std::string from = normalize_callee(str(j, "from", account), &policy_.numbering);
            std::string method = str(j, "method", type == "request" ? "OPTIONS" : "INVITE");
            std::string to = normalize_callee(str(j, "to"), &policy_.numbering);
            fraud::Direction direction;
            if (auto err = direction_field(to, direction); !err.empty()) return err;
            fraud::CallAttempt a;
            a.now = now;
            a.wall = wall;
            a.call_id = call_id;
            a.source = src;
            a.account = account;
            a.tenant = tenant;
            a.caller = from;
            a.callee = to;
            a.callee_extension = policy_.numbering.is_extension(str(j, "to"));
            a.user_agent = ua;
            a.request = request_kind_of(method);
            a.direction = direction;
            a.trusted = policy_.access.trusted.contains(src.addr);
            label_ = method;
            attempt(a);
        } else if (type == "answer") {
            answered({now, wall, str(j, "call_id")});
        } else if (type == "end") {
            fraud::Outcome o;
            if (auto err = outcome_field(j, o); !err.empty()) return err;
            ended({now, wall, str(j, "call_id"), o});
        } else if (type == "auth") {
            fraud::AuthResult a;
            a.now = now;
            a.wall = wall;
            a.source = src;
            a.username = account;
            a.tenant = tenant;
            a.user_agent = ua;
            a.success = j.value("ok", false);
            a.trusted = policy_.access.trusted.contains(src.addr);
            if (auto err = direction_field({}, a.direction); !err.empty()) return err;
            auth(a);
        } else if (type == "register") {
            fraud::Registration r;
            r.now = now;
            r.wall = wall;
            r.source = src;
            r.user = account;
            r.tenant = tenant;
            r.user_agent = ua;
            r.trusted = policy_.access.trusted.contains(src.addr);
            if (auto err = direction_field({}, r.direction); !err.empty()) return err;
            if (auto err = outcome_field(j, r.outcome); !err.empty()) return err;
            registration(r);
        } else if (type == "sip") {
            // One SIP message as the SBC saw it (either direction): the observer follows its
            // transaction and call as `sbc replay` does, and scores what it yields.
            const std::string text = str(j, "message");
            sip::Message m;
            auto st = m.parse(text);
            if (st && m.is_request()) st = sip::check_request(m);
            if (!st)
                return "\"message\" is not a well-formed SIP message (" +
                       std::string(name(st.code)) + ")";
            ObservedMessage at;
            at.source = {src.addr, src.port};
            if (auto d = str(j, "dst");
                !d.empty() && !parse_source(d, at.destination.addr, at.destination.port))
                return "bad \"dst\" address '" + d + "'";
            at.tcp = transport == "tcp" || transport == "tls";
            at.tls = transport == "tls";
            at.now = now;
            at.wall = wall;
            label_ = std::string(m.method_name());
            from_sip_ = true;
            observer_.expire(now, wall);
            observer_.observe(m, at);
            from_sip_ = false;
            sip_seen_ = true;
        }
        return {};
    }

    // A line that was not scored, in the output stream with its line number and id.
    void rejected(const std::string& why) {
        ++stats_.rejected;
        if (json_) {
            json r = {{"event", "rejected"}, {"line", lineno_}, {"error", why}};
            if (!id_.empty()) r["id"] = id_;
            std::cout << r.dump() << "\n";
        } else {
            std::cout << "line " << lineno_ << where_id() << ": REJECTED: " << why << "\n";
        }
    }

    void summary() {
        base::Nanos now = now_;
        // SIP transactions still open settle as their timeouts would.
        if (sip_seen_)
            observer_.finish(now,
                             anchored_ ? anchor_wall_ + (now - anchor_now_) : start_wall_ + now);
        const auto& c = engine_.counters();
        if (json_) {
            json s = {{"event", "summary"},
                      {"events", stats_.events},
                      {"rejected", stats_.rejected},
                      {"warnings", stats_.warnings},
                      {"duplicates", stats_.duplicates},
                      {"banned_source_drops", stats_.banned_drops},
                      {"shadow_non_allow", stats_.shadow_non_allow},
                      {"active_bans", engine_.active_bans(now)},
                      {"tracked_keys", engine_.tracked_keys()},
                      {"table_bytes", engine_.table_bytes()}};
            json actions = json::object();
            for (std::size_t i = 0; i < fraud::kActionCount; ++i)
                actions[std::string(fraud::kActionNames[i])] = stats_.actions[i];
            s["verdicts"] = actions;
            json bans = json::array();
            for (const auto& b : stats_.bans)
                bans.push_back(
                    {{"src", b.src}, {"t", b.t}, {"seconds", b.seconds}, {"rules", b.rules}});
            s["bans"] = bans;
            std::cout << s.dump() << "\n";
            return;
        }
        std::cout << "\nsummary: ";
        bool first = true;
        for (const auto& [k, n] : stats_.events) {
            std::cout << (first ? "" : ", ") << n << " " << k;
            first = false;
        }
        if (stats_.rejected || stats_.warnings)
            std::cout << "\n  rejected lines: " << stats_.rejected << ", warnings "
                      << stats_.warnings;
        std::cout << "\n  verdicts:";
        for (std::size_t i = 0; i < fraud::kActionCount; ++i)
            std::cout << " " << fraud::kActionNames[i] << "=" << stats_.actions[i];
        std::cout << "  (duplicates " << stats_.duplicates << ", dropped from banned sources "
                  << stats_.banned_drops << ", observe-only non-allow " << stats_.shadow_non_allow
                  << ")\n";
        std::cout << "  bans issued: " << stats_.bans.size() << "\n";
        for (const auto& b : stats_.bans)
            std::cout << "    " << b.src << " at t=" << fmt(b.t) << "s for " << fmt(b.seconds)
                      << "s (" << b.rules << ")\n";
        std::cout << "  engine: " << engine_.tracked_keys() << " keys tracked, "
                  << engine_.tracked_calls() << " calls, " << engine_.table_bytes()
                  << " bytes of tables (fixed), keys evicted " << c[fraud::Counter::keys_evicted]
                  << "\n";
    }

  private:
    // -- FraudEventSink: every event, from JSON fields or from SIP, is scored here.
    void attempt(const fraud::CallAttempt& a) override {
        fraud::Verdict v;
        engine_.on_attempt(a, v);
        std::string what = label_ + " " + (a.account.empty() ? "-" : std::string(a.account)) +
                           " -> " + std::string(a.callee) + " from " +
                           base::Endpoint{a.source.addr, a.source.port}.to_string();
        report(what, v, fraud::to_json(v, a), source_text(a.source));
    }
    std::string source_text(const fraud::Source& s) const {
        return from_sip_ ? base::Endpoint{s.addr, s.port}.to_string() : src_text_;
    }
    void answered(const fraud::CallAnswered& a) override { engine_.on_answer(a); }
    void ended(const fraud::CallEnded& e) override { engine_.on_end(e); }
    void auth(const fraud::AuthResult& a) override {
        fraud::Verdict v;
        engine_.on_auth(a, v);
        std::string what = "auth " + std::string(a.username) + (a.success ? " ok" : " FAILED") +
                           " from " + base::Endpoint{a.source.addr, a.source.port}.to_string();
        report(what, v, fraud::to_json(v, a), source_text(a.source));
    }
    void registration(const fraud::Registration& r) override {
        fraud::Verdict v;
        engine_.on_register(r, v);
        std::string what = "REGISTER " + std::string(r.user) + " (" + std::string(name(r.outcome)) +
                           ") from " + base::Endpoint{r.source.addr, r.source.port}.to_string();
        report(what, v, fraud::to_json(v, r), source_text(r.source));
    }

    void report(const std::string& what, const fraud::Verdict& v, const std::string& line,
                const std::string& src_text) {
        if (v.duplicate) ++stats_.duplicates;
        if (v.banned_source) {
            ++stats_.banned_drops;
        } else {
            ++stats_.actions[static_cast<std::size_t>(v.action)];
            if (v.action == fraud::Action::allow && v.shadow_action != fraud::Action::allow)
                ++stats_.shadow_non_allow;
        }
        if (v.action == fraud::Action::ban && !v.banned_source && !v.duplicate) {
            std::string rules;
            for (std::size_t i = 0; i < v.reason_count; ++i)
                if (!v.reasons[i].observe)
                    rules += (rules.empty() ? "" : ", ") + std::string(v.reasons[i].rule_id);
            stats_.bans.push_back(
                {src_text, t_, static_cast<double>(v.ban_until) / 1e9 - t_, rules});
        }
        if (json_) {
            // The input's line and id first, so verdicts join to their input without order.
            std::string head = "{\"line\":" + std::to_string(lineno_);
            if (!id_.empty()) head += ",\"id\":" + json(id_).dump();
            std::cout << head << (line.size() > 2 ? "," : "") << line.substr(1) << "\n";
        } else {
            print_human("line " + std::to_string(lineno_) + where_id(), t_, what, v);
        }
    }

    std::string where_id() const { return id_.empty() ? "" : " id=" + id_; }

    void warn(const std::string& msg) {
        ++stats_.warnings;
        if (json_) {
            json w = {{"event", "warning"}, {"line", lineno_}, {"warning", msg}};
            if (!id_.empty()) w["id"] = id_;
            std::cout << w.dump() << "\n";
        } else {
            std::cout << "line " << lineno_ << where_id() << ": warning: " << msg << "\n";
        }
        std::cerr << "line " << lineno_ << ": warning: " << msg << "\n";
    }

    void anchor(base::Nanos now, base::UnixNanos wall) {
        anchored_ = true;
        anchor_now_ = now;
        anchor_wall_ = wall;
    }

    const policy::Policy& policy_;
    fraud::Engine& engine_;
    bool json_;
    bool lenient_;
    std::size_t n_ = 0;
    std::size_t lineno_ = 0;
    std::string id_;  // the event's "id", "" when it has none
    double t_ = 0;
    base::Nanos now_ = 0;  // the engine's clock: never goes back
    // The first wall-clock time seen and the engine time it was read at: wall-only events
    // advance the clock from it, and events without a wall time get one from it.
    bool anchored_ = false;
    base::Nanos anchor_now_ = 0;
    base::UnixNanos anchor_wall_ = 0;
    base::UnixNanos start_wall_ = 0;
    Stats stats_;
    CallObserver observer_;
    bool sip_seen_ = false;
    bool from_sip_ = false;  // events now come from a SIP message (their source is theirs)
    std::string label_;      // the method of the attempt being scored
    std::string src_text_;   // the event's "src" as written
};

}  // namespace

int run_policy_test(const std::vector<std::string>& files, const std::string& call_json,
                    const std::string& calls_file, bool json_out, bool lenient) {
    if (call_json.empty() == calls_file.empty()) {
        std::cerr << "sbc policy test: give exactly one of --call JSON or --calls FILE.jsonl\n";
        return 2;
    }
    auto loaded = policy::load_policy(files);
    if (!loaded.ok()) {
        for (const auto& e : loaded.errors) std::cerr << e.to_string() << "\n";
        return 1;
    }
    const char* geo = std::getenv("SBC_GEOIP_DATABASE");
    auto engine = make_fraud_engine(*loaded.value, geo ? geo : "");
    if (!engine) {
        std::cerr << "sbc policy test: " << engine.error().message << "\n";
        return 1;
    }
    Runner runner(*loaded.value, **engine, json_out, lenient);
    if (!call_json.empty()) {
        auto err = runner.run(call_json, 1);
        if (!err.empty()) {
            runner.rejected(err);
            std::cerr << "sbc policy test: --call: " << err << "\n";
            return 2;
        }
        return 0;
    }
    std::ifstream in(calls_file);
    if (!in) {
        std::cerr << "sbc policy test: cannot read " << calls_file << "\n";
        return 2;
    }
    std::string line;
    std::size_t lineno = 0;
    int rc = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.empty() || line[0] == '#') continue;
        auto err = runner.run(line, lineno);
        if (!err.empty()) {
            runner.rejected(err);
            std::cerr << calls_file << ":" << lineno << ": " << err << "\n";
            rc = 2;
        }
    }
    runner.summary();
    return rc;
}

}  // namespace sbc::cli
