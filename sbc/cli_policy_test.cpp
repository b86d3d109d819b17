// sbc policy test FILE... --call JSON | --calls FILE.jsonl [--json]
// Runs events (call attempts, answers, ends, authentication results, registrations) through
// the compiled policy and the fraud engine on a virtual clock, and explains every verdict.
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

class Runner {
  public:
    Runner(const policy::Policy& p, fraud::Engine& e, bool json_out)
        : policy_(p), engine_(e), json_(json_out) {
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
        fraud::Verdict v;

        if (type == "attempt" || type == "request") {
            std::string call_id = str(j, "call_id", "call-" + std::to_string(n_));
            std::string account = str(j, "account");
            std::string from = str(j, "from", account);
            std::string to_raw = str(j, "to");
            std::string method = str(j, "method", type == "request" ? "OPTIONS" : "INVITE");
            // Dialed digits to E.164 with the policy's [numbering]; a target that is not a
            // number (an OPTIONS to "sip:100@...", a user name) is kept as is.
            std::string to = policy_.numbering.normalize(to_raw);
            if (to.empty()) to = to_raw;
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
            a.method = method;
            engine_.on_attempt(a, v);
            std::string what = method + " " + (account.empty() ? "-" : account) + " -> " + to +
                               " from " + base::Endpoint{src.addr, src.port}.to_string();
            report(what, v, fraud::to_json(v, a), src_text);
        } else if (type == "answer") {
            engine_.on_answer({now, wall, str(j, "call_id")});
        } else if (type == "end") {
            int status = 200;
            if (auto it = j.find("status"); it != j.end() && it->is_number_integer())
                status = it->get<int>();
            engine_.on_end({now, wall, str(j, "call_id"), status});
        } else if (type == "auth") {
            std::string user = str(j, "user");
            bool ok = j.value("ok", false);
            fraud::AuthResult a;
            a.now = now;
            a.wall = wall;
            a.source = src;
            a.username = user;
            a.tenant = tenant;
            a.user_agent = ua;
            a.success = ok;
            engine_.on_auth(a, v);
            std::string what = std::string("auth ") + user + (ok ? " ok" : " FAILED") + " from " +
                               base::Endpoint{src.addr, src.port}.to_string();
            report(what, v, fraud::to_json(v, a), src_text);
        } else if (type == "register") {
            std::string user = str(j, "user");
            int status = 200;
            if (auto it = j.find("status"); it != j.end() && it->is_number_integer())
                status = it->get<int>();
            fraud::Registration r;
            r.now = now;
            r.wall = wall;
            r.source = src;
            r.user = user;
            r.tenant = tenant;
            r.user_agent = ua;
            r.status = status;
            engine_.on_register(r, v);
            std::string what = "REGISTER " + user + " (" + std::to_string(status) + ") from " +
                               base::Endpoint{src.addr, src.port}.to_string();
            report(what, v, fraud::to_json(v, r), src_text);
        } else {
            return "unknown event type '" + type +
                   "' (attempt, request, answer, end, auth, register)";
        }
        return {};
    }

    void summary() {
        base::Nanos now = static_cast<base::Nanos>(t_ * 1e9);
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
