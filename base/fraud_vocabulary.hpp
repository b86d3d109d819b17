#pragma once
// The words of the fraud rule language, declared once for the two modules that speak it: the
// policy (policy/, which reads them from TOML and renders them back) and the fraud engine
// (fraud/, which scores by them). Neither depends on the other, so the one list lives here;
// each module names the types in its own terms (policy::RuleKey and fraud::KeyKind are
// base::FraudKey) and nothing converts between two copies that could drift apart.
//
// Each list is an X-macro (base/counters.hpp): the enum, its names (the policy's TOML
// spelling, the engine's reasons and metric labels) and descriptions (docs, `sbc policy`).
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "base/counters.hpp"

namespace sbc::base {

// What a rule measures (docs/fraud.md, "Features").
#define SBC_FRAUD_FEATURES(X)                                                        \
    X(attempts, "call attempts (to `lists` when given)")                             \
    X(international_attempts, "attempts to another country")                         \
    X(high_risk_attempts, "attempts to irsf/premium/high_risk lists (or `lists`)")   \
    X(premium_attempts, "attempts to premium lists (or `lists`)")                    \
    X(distinct_destinations, "distinct dialed numbers (on `lists` when given)")      \
    X(distinct_destination_countries, "distinct destination countries")              \
    X(sequential_dialing, "longest run of destinations differing by small steps")    \
    X(concurrent_calls, "calls in progress now (no window)")                         \
    X(short_call_ratio, "answered calls shorter than short_call_seconds / answered") \
    X(failed_call_ratio, "failed calls / ended calls")                               \
    X(auth_failures, "authentication failures")                                      \
    X(distinct_usernames, "distinct usernames that failed auth/register")            \
    X(scanner_user_agent, "1 if the User-Agent matches a scanner signature")         \
    X(request_sweep, "distinct target users of OPTIONS/REGISTER/INVITE")             \
    X(off_hours, "1 if outside the account group's business hours")                  \
    X(source_country_not_allowed, "1 if the source country is not allowed")          \
    X(country_change, "distinct source countries of the key")                        \
    X(short_rings, "calls cancelled (487) within short_ring_seconds (Wangiri)")      \
    X(callback_short_ring, "1 if the dialed number rang in once lately from a flagged range")
SBC_DECLARE_COUNTER_LIST(FraudFeature, SBC_FRAUD_FEATURES)

// What a rule counts per (its `key`).
#define SBC_FRAUD_KEYS(X)                                                           \
    X(source_ip, "the source IP address")                                           \
    X(source_prefix, "the source prefix")                                           \
    X(account, "the calling account")                                               \
    X(tenant, "the tenant of the account")                                          \
    X(destination_prefix, "the matched destination prefix (else its country code)") \
    X(caller, "the calling number")                                                 \
    X(caller_prefix, "the matched calling-number prefix (else its country code)")   \
    X(device, "the account from one source address, port and User-Agent")
SBC_DECLARE_COUNTER_LIST(FraudKey, SBC_FRAUD_KEYS)

// A rule's comparison; the description is its spelling in the policy (`op = ">="`).
#define SBC_FRAUD_OPS(X) X(gt, ">") X(ge, ">=") X(lt, "<") X(le, "<=") X(eq, "==")
SBC_DECLARE_COUNTER_LIST(FraudOp, SBC_FRAUD_OPS)

constexpr bool compare(FraudOp op, double value, double threshold) {
    switch (op) {
        case FraudOp::gt:
            return value > threshold;
        case FraudOp::ge:
            return value >= threshold;
        case FraudOp::lt:
            return value < threshold;
        case FraudOp::le:
            return value <= threshold;
        case FraudOp::eq:
            return value == threshold;
        case FraudOp::count_:
            break;
    }
    return false;
}

// The category of a prefix list (`[[prefix_list]] category`): which features count it by
// default (irsf, premium and high_risk are the high-risk lists).
#define SBC_FRAUD_CATEGORIES(X)                                \
    X(irsf, "International revenue share fraud ranges")        \
    X(premium, "Premium-rate numbers")                         \
    X(high_risk, "Other high-risk destinations")               \
    X(domestic, "Domestic ranges")                             \
    X(emergency, "Emergency numbers (never blocked by score)") \
    X(custom, "Any other list")
SBC_DECLARE_COUNTER_LIST(FraudCategory, SBC_FRAUD_CATEGORIES)

// Whether a rule (or the whole fraud policy) acts or only reports.
#define SBC_FRAUD_MODES(X)              \
    X(enforce, "verdicts are acted on") \
    X(observe, "verdicts are reported, never acted on")
SBC_DECLARE_COUNTER_LIST(FraudMode, SBC_FRAUD_MODES)

// When a rule applies, by its account group's business hours (`scope.time`).
#define SBC_FRAUD_TIME_SCOPES(X)                                   \
    X(any, "at any time")                                          \
    X(business_hours, "within the account group's business hours") \
    X(off_hours, "outside the account group's business hours")
SBC_DECLARE_COUNTER_LIST(FraudTimeScope, SBC_FRAUD_TIME_SCOPES)

// Which way a call goes (docs/fraud.md, "Direction"). `unknown` is what an event carries when
// the adapter cannot tell; a rule's `scope.directions` names only the others.
#define SBC_FRAUD_DIRECTIONS(X)                                        \
    X(unknown, "not known (no rule scoped on a direction matches it)") \
    X(inbound, "from a carrier or the outside towards the company")    \
    X(outbound, "from the company's users towards the outside")        \
    X(internal, "between the company's own users and networks")
SBC_DECLARE_COUNTER_LIST(FraudDirection, SBC_FRAUD_DIRECTIONS)

// A direction a rule's scope may name ("inbound", "outbound", "internal"); nullopt otherwise.
constexpr std::optional<FraudDirection> scope_direction(std::string_view n) {
    for (std::size_t i = 1; i < kFraudDirectionCount; ++i)
        if (kFraudDirectionNames[i] == n) return static_cast<FraudDirection>(i);
    return std::nullopt;
}

// The days of business hours ("Mon-Fri 08:00-19:00"): bit d of BusinessHours::days is
// kWeekdayNames[d], Monday first.
inline constexpr std::array<std::string_view, 7> kWeekdayNames{"Mon", "Tue", "Wed", "Thu",
                                                               "Fri", "Sat", "Sun"};

}  // namespace sbc::base
