#pragma once
// Maps the node configuration (sbc.toml) and the compiled policy to the dataplane's
// PipelineConfig: rate limits, ban escalation, trusted trunks, SIP and media ports.
#include "dataplane/dataplane.hpp"
#include "policy/policy.hpp"

namespace sbc {

dataplane::PipelineConfig pipeline_config_from(const policy::NodeConfig& node,
                                               const policy::Policy* policy);

}  // namespace sbc
