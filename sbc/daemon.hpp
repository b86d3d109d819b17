#pragma once
// `sbc run`: the long-running node. Loads sbc.toml and its policies, owns the PolicyStore,
// reloads on SIGHUP or the control socket, and runs until SIGTERM/SIGINT.
//
// Subsystems plug in through two hooks:
//   daemon.add_policy_participant({"name", [&](const auto& p) { prepare from *p; return
//       policy::PolicyChange::ready([..] { install what was prepared; }); }});
//   daemon.add_control_command("bans", [&](std::string_view args) { return list_bans(); });
// A reload is all or nothing: see policy::PolicyStore.
// Hot paths read `daemon.policies().current()` per decision and never cache a snapshot.
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.hpp"

namespace sbc {

class Daemon {
  public:
    // A control command gets the rest of the line after its name and returns the reply
    // (one or more lines). Protocol: the client sends one line, the server replies and closes.
    using ControlHandler = std::function<std::string(std::string_view args)>;

    // Loads the node config and its policies; on failure returns nullptr with every error in
    // `errors` and nothing started.
    static std::unique_ptr<Daemon> create(const std::string& config_path,
                                          std::vector<policy::Diagnostic>& errors);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    const policy::NodeConfig& config() const { return config_; }
    policy::PolicyStore& policies() { return *store_; }
    const policy::PolicyStore& policies() const { return *store_; }

    // Register before run(). Built in: reload, status, version, help.
    void add_control_command(std::string name, ControlHandler handler);
    // Joins the policy reloads (see policy::PolicyStore::add_participant): prepares and commits
    // the current policy at once; a refusal is returned and the participant does not join.
    [[nodiscard]] std::vector<policy::Diagnostic> add_policy_participant(
        policy::PolicyParticipant participant);

    // Runs the control socket and signal handling until stop(), SIGINT or the end of a drain;
    // returns the process exit code. SIGTERM drains ([control] drain_timeout), SIGHUP reloads.
    int run();
    // Drain (`sbc ctl drain`, SIGTERM): new calls are refused with 503 and Retry-After, calls in
    // progress may finish within `timeout`; then those left are hung up (BYE both legs) and
    // run() returns 0. Run-loop thread. Returns the `drain` reply.
    std::string drain(base::Nanos timeout);
    void stop();  // thread-safe, async-signal-safe

    // Reloads the policy files now (what SIGHUP and `sbc ctl reload` do), all or nothing;
    // logs every error and which participant refused.
    policy::PolicyStore::ReloadResult reload();
    // The `status` reply: key=value lines.
    std::string status_text() const;

    struct Impl;

  private:
    Daemon() = default;
    policy::NodeConfig config_;
    std::unique_ptr<policy::PolicyStore> store_;
    std::unique_ptr<Impl> impl_;
};

// `sbc ctl`: sends one command line to the control socket and returns the reply, or an error.
base::Result<std::string> control_request(const std::string& socket_path, std::string_view line,
                                          int timeout_ms = 5000);

}  // namespace sbc
