#include <CLI/CLI.hpp>

#include "sbc/cli.hpp"

namespace sbc::cli {

void register_policy_commands(CLI::App& /*app*/) {}

}  // namespace sbc::cli
