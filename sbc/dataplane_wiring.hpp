#pragma once
// Maps the node configuration (sbc.toml) and the compiled policy to the dataplane's
// PipelineConfig, and runs the dataplane inside `sbc run`: one DataplaneRuntime, chosen by
// `[dataplane] backend`, gives the rest of sbc/ the same few operations (a signaling thread to
// run work on, UDP SIP listeners with a socket to answer from, bans, stats) and registers the
// `ban`, `unban`, `bans` and `media` control commands and follows policy reloads.
//
//   socket: one thread runs the socket relay; SIP listeners are sockets of the relay, fronted
//           by the pipeline (bans and rate limits before the front door sees a datagram).
//   dpdk:   the EAL's worker lcore runs the fast path (relay, bans, limits); SIP, ARP and ICMP
//           for our addresses reach the kernel through the exception port (a tap), and the
//           signaling thread reads the front door's plain kernel UDP sockets.
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "dataplane/dataplane.hpp"
#include "policy/policy.hpp"
#include "sbc/call_core.hpp"
#include "sbc/metrics.hpp"

namespace sbc {

class Daemon;

dataplane::PipelineConfig pipeline_config_from(const policy::NodeConfig& node,
                                               const policy::Policy* policy);

class DataplaneRuntime {
  public:
    // Starts the backend named by the node config ("socket" or "dpdk"; "pcap" is refused: it is
    // for offline use) with the current policy, registers the control commands and follows
    // policy reloads. Fails with a message naming the step (EAL arguments, a port, the tap).
    static base::Result<std::unique_ptr<DataplaneRuntime>> start(Daemon& daemon);
    virtual ~DataplaneRuntime() = default;

    virtual std::string_view backend() const = 0;

    // The signaling thread owns the front door's state. Other threads hand it work that it runs
    // between two polls; posting wakes it, so that the work runs at once.
    virtual std::future<std::string> post(std::function<std::string()> task) = 0;
    // Any thread: the signaling thread stops waiting and runs what was handed to it (TCP/TLS
    // messages, tasks, bans) now rather than at its next poll timeout. post() and post_ban()
    // wake it themselves.
    virtual void wake() = 0;
    std::string call(std::function<std::string()> task) { return post(std::move(task)).get(); }

    using SignalingHandler = dataplane::SocketRelay::SignalingHandler;
    // Signaling thread. Opens a UDP SIP listener whose datagrams `handler` gets on the
    // signaling thread (after the dataplane's bans and rate limits) and returns its socket, for
    // answers sent from the listener's own address and port. The socket stays the runtime's.
    virtual base::Result<int> open_signaling(const base::Endpoint& local, SignalingHandler handler,
                                             void* ctx) = 0;

    // Any thread: a ban for the dataplane's ban table; false when its queue is full.
    virtual bool post_ban(const base::Prefix& prefix, base::Nanos duration,
                          dataplane::BanOrigin origin) = 0;

    // Signaling thread: whether a TCP/TLS connection accepted from `remote` on `local` may be
    // read (and its handshake run): the pipeline's verdict on its SYN, with the same ban table
    // and tcp_connect buckets (a refusal counts as drop.banned or drop.rate_limited, and
    // sustained excess escalates to a ban). The dpdk backend answers true: its fast path
    // already judged the SYN before the kernel saw it.
    virtual bool admit_connection(const base::Endpoint& remote, const base::Endpoint& local) {
        (void)remote;
        (void)local;
        return true;
    }

    // Signaling thread: `remote` is a known caller of the UDP SIP listener `local` (a call of its
    // was answered): where the backend can, its datagrams get a receive queue of their own, so
    // that a flood filling the listener's queue cannot drop them (socket backend:
    // SocketRelay::protect_signaling_peer). The dpdk backend reads the wire before any socket
    // queue and has nothing to do.
    virtual void protect_signaling_peer(const base::Endpoint& local, const base::Endpoint& remote) {
        (void)local;
        (void)remote;
    }

    // Signaling thread: the dataplane's counters for `stats` (key=value lines).
    virtual std::string stats_command() = 0;
    // Signaling thread: the dataplane's metrics (see write_dataplane_metrics).
    virtual void write_metrics(MetricsWriter& w) = 0;
    // Signaling thread: the bans in force.
    virtual std::vector<dataplane::BanInfo> active_bans() = 0;

    // Signaling thread: `tick` runs after every poll of the signaling loop (at most ~20 ms
    // apart) with the monotonic time: the call core's timers.
    void set_tick(std::function<void(base::Nanos)> tick) { tick_ = std::move(tick); }
    // Signaling thread: the relay's streams for the call core (both backends offer them).
    virtual MediaStreams* media_streams() { return nullptr; }
    // Signaling thread: `handler` gets every media event of the relay (inactive, latched,
    // relatched) on the signaling thread, after the poll that collected it.
    void set_media_events(std::function<void(const dataplane::MediaEvent&)> handler) {
        media_events_handler_ = std::move(handler);
    }

    base::Nanos monotonic() const { return clock_.monotonic(); }
    base::UnixNanos wall() const { return clock_.wall(); }

  protected:
    DataplaneRuntime() = default;
    // The control commands every backend answers: ban, unban, bans, media.
    virtual std::string ban_command(std::string_view args) = 0;
    virtual std::string unban_command(std::string_view args) = 0;
    virtual std::string bans_command() const = 0;
    virtual std::string media_command(std::string_view args) = 0;
    void add_control_commands(Daemon& daemon);
    void tick() {
        if (tick_) tick_(clock_.monotonic());
    }
    void media_event(const dataplane::MediaEvent& e) {
        if (media_events_handler_) media_events_handler_(e);
    }
    base::SystemClock clock_;
    std::function<void(base::Nanos)> tick_;
    std::function<void(const dataplane::MediaEvent&)> media_events_handler_;
};

}  // namespace sbc
