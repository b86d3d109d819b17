#include <CLI/CLI.hpp>

#include "sbc/cli.hpp"

namespace sbc::cli {

void register_dataplane_commands(CLI::App& /*app*/) {}

}  // namespace sbc::cli
