// `sbc policy show`: the effective policy as TOML, defaults filled in and includes resolved.
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "policy/toml_reader.hpp"

namespace sbc::policy {

namespace {

std::string quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    return out + "\"";
}

template <class Range, class F>
std::string array(const Range& r, F&& f) {
    std::string out = "[";
    bool first = true;
    for (const auto& x : r) {
        if (!first) out += ", ";
        first = false;
        out += f(x);
    }
    return out + "]";
}

std::string strings(const std::vector<std::string>& v) {
    return array(v, quote);
}
// Shortest text that reads back as exactly `d` (so `show` round-trips every value).
std::string number(double d) {
    char buf[32];
    if (d > -1e15 && d < 1e15 && d == static_cast<double>(static_cast<long long>(d))) {
        std::snprintf(buf, sizeof buf, "%.0f", d);  // whole numbers as integers: "60", not "6e+01"
        return buf;
    }
    for (int precision = 1; precision <= 17; ++precision) {
        std::snprintf(buf, sizeof buf, "%.*g", precision, d);
        if (std::strtod(buf, nullptr) == d) break;
    }
    return buf;
}
std::string dur(base::Nanos d) {
    return quote(detail::format_duration(d));
}
std::string day_names(std::uint8_t days) {
    const auto& kDays = base::kWeekdayNames;
    std::string out;
    for (int d = 0; d < 7; ++d) {
        if (!(days & (1u << d))) continue;
        if (!out.empty()) out += ",";
        out += kDays[d];
    }
    return out;
}
std::string hm(int minutes) {
    char buf[32];  // room for any int, so no truncation whatever the value
    std::snprintf(buf, sizeof buf, "%02d:%02d", minutes / 60, minutes % 60);
    return buf;
}

}  // namespace

std::string render_policy(const Policy& p) {
    std::ostringstream o;
    o << "# effective policy: version " << p.version << ", hash " << p.hash << "\n";
    o << "# sources:";
    for (const auto& f : p.source_files) o << " " << f;
    o << "\n\n[policy]\nname = " << quote(p.name) << "\n";

    o << "\n[access]\ndefault = " << quote(p.access.default_allow ? "allow" : "deny") << "\n";
    auto cidrs = [](const std::vector<base::Prefix>& v) {
        return array(v, [](const base::Prefix& x) { return quote(x.to_string()); });
    };
    o << "allow = " << cidrs(p.access.allow_cidrs) << "\n";
    o << "deny = " << cidrs(p.access.deny_cidrs) << "\n";
    o << "internal = " << cidrs(p.access.internal_cidrs) << "\n";
    for (const auto& t : p.access.trusted_trunks)
        o << "\n[[access.trusted]]\nname = " << quote(t.name) << "\ncidrs = " << cidrs(t.cidrs)
          << "\n";

    o << "\n[rate_limits]\nsource_prefix_v4 = " << int(p.rate_limits.source_prefix_v4)
      << "\nsource_prefix_v6 = " << int(p.rate_limits.source_prefix_v6) << "\n";
    for (std::size_t c = 0; c < kTrafficClassCount; ++c) {
        o << "[rate_limits." << toml_name(static_cast<TrafficClass>(c)) << "]\n";
        bool any = false;
        for (std::size_t k = 0; k < kLimitKeyCount; ++k) {
            const auto& rl = p.rate_limits.limits[c][k];
            if (!rl.enabled) continue;
            any = true;
            o << toml_name(static_cast<LimitKey>(k)) << " = { rate = " << number(rl.rate)
              << ", burst = " << number(rl.burst) << " }\n";
        }
        if (!any) o << "# no limit\n";
    }

    const auto& b = p.bans;
    o << "\n[bans]\nbase = " << dur(b.base) << "\nfactor = " << number(b.factor)
      << "\nmax = " << dur(b.max) << "\nviolations = " << b.violations
      << "\nviolation_window = " << dur(b.violation_window) << "\nhistory = " << dur(b.history)
      << "\n";

    o << "\n[scanners]\naction = " << quote(name(p.scanners.action))
      << "\nempty_user_agent = " << (p.scanners.empty_user_agent_is_scanner ? "true" : "false")
      << "\nuser_agents = "
      << array(p.scanners.user_agents, [](const Glob& g) { return quote(g.pattern()); }) << "\n";

    const auto& t = p.topology;
    o << "\n[topology]\nhide_topology = " << (t.hide_topology ? "true" : "false")
      << "\nreplace_call_id = " << (t.replace_call_id ? "true" : "false")
      << "\nserver_header = " << quote(t.server_header)
      << "\nstrip_headers = " << strings(t.strip_headers) << "\n[topology.reason_phrases]\n";
    for (const auto& [code, phrase] : t.reason_phrases) o << code << " = " << quote(phrase) << "\n";

    const auto& n = p.numbering;
    o << "\n[numbering]\ndefault_country_code = " << quote(n.default_country_code)
      << "\nnational_prefix = " << quote(n.national_prefix)
      << "\ninternational_prefix = " << quote(n.international_prefix) << "\n";
    if (!n.home_country.empty()) o << "home_country = " << quote(n.home_country) << "\n";
    if (!n.extensions.empty()) o << "extensions = " << strings(n.extensions) << "\n";

    for (const auto& l : p.prefix_lists) {
        o << "\n[[prefix_lists]]\nname = " << quote(l.name)
          << "\ncategory = " << quote(name(l.category)) << "\n# declared in " << l.file;
        if (!l.countries.empty()) o << "; countries " << strings(l.countries) << " expanded";
        o << "\nprefixes = " << strings(l.prefixes) << "\n";
    }

    for (const auto& g : p.account_groups) {
        o << "\n[[account_groups]]\nname = " << quote(g.name)
          << "\naccounts = " << strings(g.accounts) << "\naccount_patterns = "
          << array(g.account_patterns, [](const ExactGlob& x) { return quote(x.pattern()); })
          << "\ntenant = " << quote(g.tenant) << "\ntimezone = " << quote(g.timezone)
          << "\nbusiness_hours = "
          << array(g.business_hours,
                   [](const BusinessHours& w) {
                       return quote(day_names(w.days) + " " + hm(w.start_minute) + "-" +
                                    hm(w.end_minute));
                   })
          << "\nallowed_source_countries = " << strings(g.allowed_source_countries)
          << "\nallowed_destination_countries = " << strings(g.allowed_destination_countries)
          << "\n";
    }

    const auto& f = p.fraud;
    o << "\n[fraud]\nmode = " << quote(name(f.mode)) << "\nscore_cap = " << number(f.score_cap)
      << "\nflag_threshold = " << number(f.flag_threshold)
      << "\nblock_threshold = " << number(f.block_threshold)
      << "\nban_threshold = " << number(f.ban_threshold)
      << "\nban_duration = " << dur(f.ban_duration) << "\nmax_tracked_keys = " << f.max_tracked_keys
      << "\nidle_key_expiry = " << dur(f.idle_key_expiry)
      << "\nshort_call_seconds = " << f.short_call_seconds
      << "\nend_calls_on_ban = " << (f.end_calls_on_ban ? "true" : "false")
      << "\ncallback_lists = " << strings(f.callback_lists)
      << "\ncallback_expiry = " << dur(f.callback_expiry)
      << "\ncallback_capacity = " << f.callback_capacity << "\n";
    // Empty with [access] internal set: the explicit opt-out (else derived from internal).
    if (!f.own_networks.empty() || !p.access.internal_cidrs.empty()) {
        std::vector<std::string> own;
        for (const auto& n : f.own_networks) own.push_back(n.to_string());
        o << "own_networks = " << strings(own) << "\n";
    }
    for (const auto& r : f.rules) {
        o << "\n[[fraud.rules]]  # " << r.file << ":" << r.line << "\nid = " << quote(r.id)
          << "\ndescription = " << quote(r.description) << "\nfeature = " << quote(name(r.feature))
          << "\nkey = " << quote(name(r.key)) << "\nwindow = " << dur(r.window)
          << "\nop = " << quote(description(r.op)) << "\nthreshold = " << number(r.threshold)
          << "\nweight = " << number(r.weight) << "\nmode = " << quote(name(r.mode))
          << "\nlists = " << strings(r.lists) << "\nmin_attempts = " << r.min_attempts
          << "\ncount_blocked = " << (r.count_blocked ? "true" : "false")
          << "\nscope.directions = " << strings(r.scope.directions)
          << "\nscope.tenants = " << strings(r.scope.tenants)
          << "\nscope.account_groups = " << strings(r.scope.account_groups)
          << "\nscope.destinations = " << quote(r.scope.destinations)
          << "\nscope.time = " << quote(name(r.scope.time)) << "\n";
    }
    for (const auto& d : f.deny) {
        o << "\n[[fraud.deny]]  # " << d.file << ":" << d.line << "\nid = " << quote(d.id)
          << "\ndestinations = " << quote(d.destinations)
          << "\ncountries = " << strings(d.countries)
          << "\nsource_countries = " << strings(d.source_countries)
          << "\ncallers = " << quote(d.callers)
          << "\ncaller_countries = " << strings(d.caller_countries)
          << "\naction = " << quote(name(d.action)) << "\n";
    }
    return o.str();
}

}  // namespace sbc::policy
