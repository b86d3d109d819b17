// sbc: edge Session Border Controller with toll-fraud detection.
#include <CLI/CLI.hpp>

#include "sbc/cli.hpp"

int main(int argc, char** argv) {
    CLI::App app{"sbc: edge Session Border Controller with toll-fraud detection"};
    app.require_subcommand(1);
    sbc::cli::register_policy_commands(app);
    sbc::cli::register_dataplane_commands(app);
    sbc::cli::register_sip_commands(app);
    sbc::cli::register_replay_commands(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return 0;
}
