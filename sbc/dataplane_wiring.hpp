#pragma once
// Maps the node configuration (sbc.toml) and the compiled policy to the dataplane's
// PipelineConfig, and runs the dataplane inside `sbc run` (its own thread, the ban/unban/bans
// control commands, policy reloads applied through the pipeline's mailbox).
#include <atomic>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
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

    // The relay, the pipeline's tables and its counters belong to the dataplane thread: other
    // threads hand it work that it runs between two polls (within ~20 ms).
    std::future<std::string> post(std::function<std::string()> task);
    std::string call(std::function<std::string()> task) { return post(std::move(task)).get(); }

    // Dataplane thread only. Opens a UDP SIP listener fronted by the pipeline (bans and rate
    // limits first) and returns the listener's socket, for stateless answers from it.
    base::Result<int> open_signaling(const base::Endpoint& local,
                                     dataplane::SocketRelay::SignalingHandler handler, void* ctx);
    base::Nanos monotonic() const { return clock_.monotonic(); }
    base::UnixNanos wall() const { return clock_.wall(); }

    // Control command handlers (also used by tests).
    std::string stats_command();  // pipeline counters: events and drops by reason
    std::string media_command(std::string_view args);

    // Control command handlers (also used by tests).
    std::string ban_command(std::string_view args);
    std::string unban_command(std::string_view args);
    std::string bans_command() const;

  private:
    DataplaneRuntime(const dataplane::PipelineConfig& c, const policy::NodeConfig& node);
    void loop();
    void run_tasks();
    std::string media_add(std::string_view args);
    std::string media_del(std::string_view args);
    std::string media_list();
    bool wait_applied(base::Nanos before) const;

    dataplane::Pipeline pipeline_;
    dataplane::SocketRelay relay_;
    dataplane::ControlMailbox mailbox_;
    base::SystemClock clock_;
    std::atomic<bool> stop_{false};
    std::mutex tasks_mu_;
    std::deque<std::packaged_task<std::string()>> tasks_;
    std::atomic<bool> tasks_pending_{false};
    base::IpAddress media_a_addr_, media_b_addr_;           // our addresses for leg a / leg b
    std::map<std::uint32_t, dataplane::StreamId> streams_;  // `media` ids (dataplane thread)
    std::uint32_t next_stream_ = 1;
    std::thread thread_;
};

}  // namespace sbc
