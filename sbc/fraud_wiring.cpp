#include "sbc/fraud_wiring.hpp"

#include <span>
#include <type_traits>

namespace sbc {

// The policy and the engine share the rule language's words (base/fraud_vocabulary.hpp):
// features, keys, operators, categories, modes and time scopes are the same types on both
// sides; directions are kept as names by the policy and checked by it.
static_assert(std::is_same_v<policy::Feature, fraud::Feature>);
static_assert(std::is_same_v<policy::RuleKey, fraud::KeyKind>);
static_assert(std::is_same_v<policy::CompareOp, fraud::Op>);
static_assert(std::is_same_v<policy::PrefixCategory, fraud::Category>);
static_assert(std::is_same_v<policy::Mode, fraud::Mode>);
static_assert(std::is_same_v<policy::TimeScope, fraud::TimeScope>);

base::Result<fraud::EngineConfig> fraud_config(const policy::Policy& p) {
    fraud::EngineConfig c;
    const auto& f = p.fraud;
    c.mode = f.mode;
    c.score_cap = f.score_cap;
    c.flag_threshold = f.flag_threshold;
    c.block_threshold = f.block_threshold;
    c.ban_threshold = f.ban_threshold;
    c.ban_duration = f.ban_duration;
    c.max_tracked_keys = f.max_tracked_keys;
    c.idle_key_expiry = f.idle_key_expiry;
    c.short_call_seconds = f.short_call_seconds;
    c.own_networks = f.own_networks;
    // The call table holds calls in progress (and ended ones for 32 s): a quarter of the key
    // budget is far above any node's concurrent calls and keeps memory proportional.
    c.max_tracked_calls = std::max<std::uint64_t>(1024, f.max_tracked_keys / 4);
    c.source_prefix_v4 = p.rate_limits.source_prefix_v4;
    c.source_prefix_v6 = p.rate_limits.source_prefix_v6;
    c.home_country_code = p.numbering.default_country_code;
    c.home_country = p.numbering.home_country;
    for (const auto& cc : policy::country_calling_codes())
        c.country_codes.push_back({std::string(cc.code), std::string(cc.iso)});

    for (const auto& l : p.prefix_lists) {
        c.prefix_lists.push_back({l.name, l.category, l.prefixes});
    }
    for (const auto& g : p.account_groups) {
        fraud::AccountGroup ag;
        ag.name = g.name;
        ag.accounts = g.accounts;
        for (const auto& pat : g.account_patterns) ag.account_patterns.push_back(pat.pattern());
        ag.tenant = g.tenant;
        ag.timezone = g.timezone;
        for (const auto& h : g.business_hours)
            ag.business_hours.push_back({h.days, h.start_minute, h.end_minute});
        ag.allowed_source_countries = g.allowed_source_countries;
        ag.allowed_destination_countries = g.allowed_destination_countries;
        c.account_groups.push_back(std::move(ag));
    }
    for (const auto& g : p.scanners.user_agents) c.scanner_user_agents.push_back(g.pattern());
    c.empty_user_agent_is_scanner = p.scanners.empty_user_agent_is_scanner;

    c.callback_lists = f.callback_lists;
    c.callback_expiry = f.callback_expiry;
    c.callback_capacity = f.callback_capacity;
    for (const auto& r : f.rules) {
        fraud::Rule fr;
        fr.id = r.id;
        fr.description = r.description;
        fr.feature = r.feature;
        fr.key = r.key;
        fr.op = r.op;
        fr.window = r.window;
        fr.threshold = r.threshold;
        fr.weight = r.weight;
        fr.mode = r.mode;
        fr.scope.tenants = r.scope.tenants;
        fr.scope.account_groups = r.scope.account_groups;
        fr.scope.destinations = r.scope.destinations;
        fr.scope.time = r.scope.time;
        fr.lists = r.lists;
        fr.min_attempts = r.min_attempts;
        fr.count_blocked = r.count_blocked;
        for (const auto& dn : r.scope.directions) {
            auto dir = base::scope_direction(dn);
            if (!dir) return base::make_error("fraud engine has no call direction '" + dn + "'");
            fr.scope.directions.push_back(*dir);
        }
        c.rules.push_back(std::move(fr));
    }
    for (const auto& d : f.deny) {
        fraud::DenyRule fd;
        fd.id = d.id;
        fd.destinations = d.destinations;
        fd.countries = d.countries;
        fd.source_countries = d.source_countries;
        fd.callers = d.callers;
        fd.caller_countries = d.caller_countries;
        fd.ban = d.action == policy::DenyAction::ban;
        c.deny.push_back(std::move(fd));
    }
    return c;
}

policy::Diagnostic policy_diagnostic(const policy::Policy& p, std::string message) {
    return {p.source_files.empty() ? std::string() : p.source_files.front(), 0, 0,
            std::move(message)};
}

std::vector<policy::Diagnostic> check_fraud_engine(const policy::Policy& p) {
    auto cfg = fraud_config(p);
    if (!cfg) return {policy_diagnostic(p, "fraud engine: " + cfg.error().message)};
    auto refused = fraud::validate(*cfg);
    if (!refused) return {};
    // fraud_config keeps the policy's order: index i of the engine's rules, deny rules, lists
    // and groups is index i of the policy's.
    const auto at = [&](const auto& items) -> policy::Diagnostic {
        if (refused->index >= items.size()) return policy_diagnostic(p, refused->message);
        const auto& x = items[refused->index];
        return {x.file, x.line, x.column, refused->message};
    };
    policy::Diagnostic d;
    using S = fraud::ConfigError::Subject;
    switch (refused->subject) {
        case S::rule:
            d = at(p.fraud.rules);
            break;
        case S::deny_rule:
            d = at(p.fraud.deny);
            break;
        case S::prefix_list:
            d = at(p.prefix_lists);
            break;
        case S::account_group:
            d = at(p.account_groups);
            break;
        case S::engine:
            d = policy_diagnostic(p, refused->message);
            break;
    }
    d.message = "fraud engine: " + d.message;
    return {d};
}

base::Result<std::unique_ptr<fraud::Engine>> make_fraud_engine(const policy::Policy& p,
                                                               const std::string& geoip_database) {
    auto cfg = fraud_config(p);
    if (!cfg) return cfg.error();
    if (!geoip_database.empty()) {
        auto geo = fraud::GeoIp::open(geoip_database);
        if (!geo) return geo.error();
        cfg->geoip = *geo;
    }
    return fraud::Engine::create(std::move(*cfg));
}

}  // namespace sbc
