#pragma once
// Maps a compiled policy (policy::Policy) onto the fraud engine's own configuration
// (fraud::EngineConfig): the one place that knows both vocabularies.
#include <memory>
#include <string>
#include <vector>

#include "base/base.hpp"
#include "fraud/fraud.hpp"
#include "policy/policy.hpp"

namespace sbc {

// Every [fraud], [[prefix_lists]], [[account_groups]], [numbering] and [scanners] setting
// of the policy, 1:1 by name. Fails only if the two vocabularies disagree on a name.
base::Result<fraud::EngineConfig> fraud_config(const policy::Policy& p);

// Why the fraud engine refuses the policy (fraud_config, then every check of Engine::create,
// without allocating its tables), each reason at the file:line:column of the rule, deny rule,
// prefix list or account group it is about. Empty: the engine accepts the policy. What
// `sbc policy check`, `sbc run --check`, start-up and reloads report.
std::vector<policy::Diagnostic> check_fraud_engine(const policy::Policy& p);

// A reason about the whole policy (no position): the first of its files, line 0.
policy::Diagnostic policy_diagnostic(const policy::Policy& p, std::string message);

// fraud_config + Engine::create, with an optional GeoIP database ("" = none).
base::Result<std::unique_ptr<fraud::Engine>> make_fraud_engine(const policy::Policy& p,
                                                               const std::string& geoip_database);

}  // namespace sbc
