#pragma once
// Maps the node configuration (sbc.toml) and the compiled policy to the dataplane's
// PipelineConfig, and runs the dataplane inside `sbc run` (its own thread, the ban/unban/bans
// control commands, policy reloads applied through the pipeline's mailbox).
#include <atomic>
#include <memory>
#include <thread>

#include "dataplane/dataplane.hpp"
#include "policy/policy.hpp"

namespace sbc {

class Daemon;

dataplane::PipelineConfig pipeline_config_from(const policy::NodeConfig& node,
                                               const policy::Policy* policy);

class DataplaneRuntime {
  public:
    // Starts the socket backend's loop on its own thread with the node's configuration and the
    // current policy, registers `ban`, `unban` and `bans` on the control socket and follows
    // policy reloads.
    static std::unique_ptr<DataplaneRuntime> attach(Daemon& daemon);
    ~DataplaneRuntime();
    dataplane::ControlMailbox& mailbox() { return mailbox_; }

    // Control command handlers (also used by tests).
    std::string ban_command(std::string_view args);
    std::string unban_command(std::string_view args);
    std::string bans_command() const;

  private:
    explicit DataplaneRuntime(const dataplane::PipelineConfig& c);
    void loop();
    bool wait_applied(base::Nanos before) const;

    dataplane::Pipeline pipeline_;
    dataplane::SocketRelay relay_;
    dataplane::ControlMailbox mailbox_;
    base::SystemClock clock_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace sbc
