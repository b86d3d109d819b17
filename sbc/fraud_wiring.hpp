#pragma once
// Maps a compiled policy (policy::Policy) onto the fraud engine's own configuration
// (fraud::EngineConfig): the one place that knows both vocabularies.
#include <memory>
#include <string>

#include "base/base.hpp"
#include "fraud/fraud.hpp"
#include "policy/policy.hpp"

namespace sbc {

// Every [fraud], [[prefix_lists]], [[account_groups]], [numbering] and [scanners] setting
// of the policy, 1:1 by name. Fails only if the two vocabularies disagree on a name.
base::Result<fraud::EngineConfig> fraud_config(const policy::Policy& p);

// fraud_config + Engine::create, with an optional GeoIP database ("" = none).
base::Result<std::unique_ptr<fraud::Engine>> make_fraud_engine(const policy::Policy& p,
                                                               const std::string& geoip_database);

}  // namespace sbc
