#pragma once
// Deterministic fraud scenarios on a virtual clock: event streams (attacks and a legitimate
// call-center day) and a runner that measures detection delay against a policy.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fraud/fraud.hpp"

namespace sbc::scenarios {

struct Event {
    enum class Type { attempt, answer, end, auth, reg } type = Type::attempt;
    base::Nanos t = 0;  // virtual monotonic time; wall = day_start + t
    std::string src;
    std::string country;
    std::string account;
    std::string callee;
    std::string ua;
    std::string method = "INVITE";
    std::string call_id;
    std::string user;
    bool ok = false;
    int status = 200;
    bool fraud = false;  // part of the attack (measured), else background traffic
    // Attempts: calling number ("" = the account), direction and trust as the call observer
    // derives them, an internal extension dialed, the source port (device keys).
    std::string caller;
    fraud::Direction direction = fraud::Direction::unknown;
    bool trusted = false;
    bool extension = false;
    std::uint16_t port = 5060;
};

enum class Target { none, block, ban };

struct Scenario {
    std::string name;
    std::string description;
    base::UnixNanos wall_start = 0;  // wall time at t = 0
    std::vector<Event> events;
    Target target = Target::none;
    int target_events = 0;    // the target action within this many fraudulent events
    bool legitimate = false;  // no event may be flagged, blocked or banned
};

struct Outcome {
    std::string name;
    Target target = Target::none;
    int target_events = 0;
    int fraud_events = 0;
    int fraud_calls = 0;
    int first_block = 0;  // 1-based index among fraudulent events; 0 = never
    double first_block_s = -1;
    int first_ban = 0;
    double first_ban_s = -1;
    int fraud_calls_through = 0;  // fraudulent INVITEs allowed or only flagged
    int legit_events = 0;
    int legit_flagged = 0;  // legitimate events with action flag or worse
    int legit_blocked = 0;
    double legit_max_score = 0;
    std::string first_block_rules;  // rules that fired on the first blocked event
    std::string legit_flag_rules;   // rules behind flags of legitimate events (should be empty)
    bool met() const;
};

std::vector<Scenario> attack_scenarios();
Scenario callcenter_day();
Scenario extension_night();  // legitimate: internal extension calls at night

// Runs one scenario on a fresh engine.
Outcome run(const Scenario& s, fraud::Engine& engine);

// Markdown table of outcomes (docs/fraud.md is generated from it).
std::string table(const std::vector<Outcome>& outcomes);

}  // namespace sbc::scenarios
