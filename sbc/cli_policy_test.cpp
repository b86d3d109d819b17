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

// Wall time: "wall" as Unix seconds or "YYYY-MM-DDTHH:MM:SSZ"; else the start wall time + t.
bool parse_wall(const json& j, base::UnixNanos start, base::Nanos t, base::UnixNanos& out) {
    auto it = j.find("wall");
    if (it == j.end()) {
        out = start + t;
        return true;
    }
    if (it->is_number()) {
        out = static_cast<base::UnixNanos>(it->get<double>() * 1e9);
        return true;
    }
    if (!it->is_string()) return false;
    std::tm tm{};
    const std::string s = it->get<std::string>();
    if (std::sscanf(s.c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                    &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    out = static_cast<base::UnixNanos>(timegm(&tm)) * base::kNanosPerSecond;
    return true;
}

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

void print_human(std::size_t n, double t, const std::string& what, const fraud::Verdict& v) {
    std::cout << "#" << n << " t=" << fmt(t) << "s " << what << ": " << upper(name(v.action));
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

class Runner final : FraudEventSink {
  public:
    Runner(const policy::Policy& p, fraud::Engine& e, bool json_out)
        : policy_(p), engine_(e), json_(json_out), observer_(*this, &p.numbering) {
        observer_.set_access(&p.access);
        start_wall_ = static_cast<base::UnixNanos>(std::time(nullptr)) * base::kNanosPerSecond;
    }

    // Returns "" or an error message for this input line.
    std::string run(const std::string& line) {
        json j;
        try {
            j = json::parse(line);
        } catch (const json::exception& e) {
            return std::string("not JSON: ") + e.what();
        }
        if (!j.is_object()) return "an event must be a JSON object";
        ++n_;
        if (auto it = j.find("t"); it != j.end()) {
            if (!it->is_number()) return "\"t\" must be a number of seconds";
            t_ = it->get<double>();
        }
        base::Nanos now = static_cast<base::Nanos>(t_ * 1e9);
        base::UnixNanos wall = 0;
        if (!parse_wall(j, start_wall_, now, wall))
            return "\"wall\" must be Unix seconds or YYYY-MM-DDTHH:MM:SSZ";
        std::string type = str(j, "type", "attempt");
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

        if (type == "attempt" || type == "request") {
            std::string call_id = str(j, "call_id", "call-" + std::to_string(n_));
            std::string account = str(j, "account");
            // The calling number, normalized like the dialed one (caller keys, callbacks).
            std::string from = normalize_callee(str(j, "from", account), &policy_.numbering);
            std::string method = str(j, "method", type == "request" ? "OPTIONS" : "INVITE");
            std::string to = normalize_callee(str(j, "to"), &policy_.numbering);
            // "direction": given, else derived as the live front door does (trusted trunks,
            // internal networks of [access]).
            ObservedMessage from_src;
            from_src.source = {src.addr, src.port};
            fraud::Direction direction = direction_of(from_src, &policy_.access, to);
            if (auto d = j.find("direction"); d != j.end()) {
                const auto* names = &fraud::kDirectionNames;
                auto it = d->is_string()
                              ? std::find(names->begin() + 1, names->end(), d->get<std::string>())
                              : names->end();
                if (it == names->end())
                    return "\"direction\" must be \"inbound\", \"outbound\" or \"internal\"";
                direction = static_cast<fraud::Direction>(it - names->begin());
            }
            fraud::CallAttempt a;
            a.now = now;
            a.wall = wall;
            a.call_id = call_id;
            a.source = src;
            a.account = account;
            a.tenant = tenant;
            a.caller = from;
            a.callee = to;
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
            std::string user = str(j, "user");
            fraud::AuthResult a;
            a.now = now;
            a.wall = wall;
            a.source = src;
            a.username = user;
            a.tenant = tenant;
            a.user_agent = ua;
            a.success = j.value("ok", false);
            auth(a);
        } else if (type == "register") {
            std::string user = str(j, "user");
            fraud::Registration r;
            r.now = now;
            r.wall = wall;
            r.source = src;
            r.user = user;
            r.tenant = tenant;
            r.user_agent = ua;
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
        } else {
            return "unknown event type '" + type +
                   "' (attempt, request, answer, end, auth, register, sip)";
        }
        return {};
    }

    void summary() {
        base::Nanos now = static_cast<base::Nanos>(t_ * 1e9);
        // SIP transactions still open settle as their timeouts would.
        if (sip_seen_) observer_.finish(now, start_wall_ + now);
        const auto& c = engine_.counters();
        if (json_) {
            json s = {{"event", "summary"},
                      {"events", stats_.events},
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
        if (json_)
            std::cout << line << "\n";
        else
            print_human(n_, t_, what, v);
    }

    const policy::Policy& policy_;
    fraud::Engine& engine_;
    bool json_;
    std::size_t n_ = 0;
    double t_ = 0;
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
                    const std::string& calls_file, bool json_out) {
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
    Runner runner(*loaded.value, **engine, json_out);
    if (!call_json.empty()) {
        auto err = runner.run(call_json);
        if (!err.empty()) {
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
        auto err = runner.run(line);
        if (!err.empty()) {
            std::cerr << calls_file << ":" << lineno << ": " << err << "\n";
            rc = 2;
        }
    }
    runner.summary();
    return rc;
}

}  // namespace sbc::cli
