#pragma once
// The `sbc` program's command tree. Each area registers its own subcommands; main() only
// builds the tree and runs what was chosen.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
}

namespace sbc::cli {

void register_policy_commands(CLI::App& app);     // sbc policy check|show|test  (cli_policy.cpp)
void register_dataplane_commands(CLI::App& app);  // sbc relay ...               (cli_dataplane.cpp)
void register_sip_commands(CLI::App& app);        // sbc sip parse|rewrite ...   (cli_sip.cpp)
void register_replay_commands(CLI::App& app);     // sbc replay CAPTURE...       (cli_replay.cpp)

// sbc policy test: runs call attempts through the compiled policy (cli_policy_test.cpp).
// Unknown event keys are errors, or warnings with `lenient`.
int run_policy_test(const std::vector<std::string>& files, const std::string& call_json,
                    const std::string& calls_file, bool json, bool lenient = false);
// RFC 3339 date-time to Unix nanoseconds, exactly; "" or what is wrong with the text.
std::string parse_rfc3339(std::string_view text, std::int64_t& unix_nanos);

}  // namespace sbc::cli
