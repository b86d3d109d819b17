#pragma once
// The TCP/TLS transport of `sbc run`: one thread of its own owns every stream socket (the
// listening ones and each connection), non-blocking under epoll, and runs the TLS handshakes
// and reads and writes (sbc/tls). It frames what it reads into SIP messages
// (signaling::StreamConnections) and hands them to the signaling thread (the dataplane's)
// through a bounded inbox; what the signaling thread sends on a connection comes back through a
// bounded outbox and an eventfd. The relay and the fraud engine never run here, and no
// handshake ever runs on the relay's thread.
//
// Outgoing connections (next hops, trunks, Request-URIs over TCP/TLS): the signaling thread
// hands bytes for a destination (transport, address, TLS name); the transport thread keeps one
// connection per destination, opens it when there is none (non-blocking connect, then the TLS
// handshake with the server certificate verified), queues what comes meanwhile, reuses it
// afterwards, and opens a new one after a loss. A connection that cannot be established (refused,
// unreachable, TLS failure, no handshake within handshake_timeout, max_outgoing reached) comes
// back to the signaling thread as a connect_failed item, so that its transactions fail over at
// once. What arrives on an outgoing connection is framed and handed over like the rest.
//
// A new connection is not read (nor is a handshake started) before the signaling thread has
// asked the dataplane's ban table and tcp_connect rate limiter about its source: the
// connection's first trip through the inbox is an admission request.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/base.hpp"
#include "sbc/signaling/stream.hpp"
#include "sbc/tls.hpp"

namespace sbc {

class MetricsWriter;

class StreamTransport {
  public:
    struct ListenerSpec {
        base::Endpoint local;
        signaling::Transport transport = signaling::Transport::tcp;
        std::uint32_t index = 0;  // the front door's listener index
        tls::ServerSettings tls;  // transport tls
    };
    struct Options {
        signaling::StreamLimits limits;
        std::size_t inbox_capacity = 8192;   // messages and admission requests
        std::size_t outbox_capacity = 8192;  // sends and admission verdicts
        // Outgoing TLS; without it a TLS destination fails at once.
        bool client_tls_enabled = false;
        tls::ClientSettings client_tls;
        // Called on the transport thread, once per round of its loop in which it handed items
        // over (and on the signaling thread when a drain leaves some behind): wakes the
        // signaling thread, so that it takes them at once instead of at its next poll timeout.
        std::function<void()> wake_signaling;
    };
    // To the signaling thread. `closed`: an admitted connection is gone (peer closed, error,
    // idle, limit), so whatever was bound to it (registrations) can go at once.
    struct Inbound {
        // connect_failed: an outgoing connection to `remote` over `transport` was not
        // established; `listener` is the one its sends named.
        enum class Kind : std::uint8_t {
            admit,
            message,
            closed,
            connect_failed
        } kind = Kind::message;
        signaling::ConnectionId connection = 0;
        std::uint32_t listener = 0;
        signaling::Transport transport = signaling::Transport::tcp;
        base::Endpoint remote, local;
        std::string bytes;
    };

    // Binds and listens on every listener and builds the TLS contexts (errors name the
    // listener or the file); the thread starts with start().
    static base::Result<std::unique_ptr<StreamTransport>> open(std::vector<ListenerSpec> listeners,
                                                               const Options& options);
    ~StreamTransport();
    StreamTransport(const StreamTransport&) = delete;
    StreamTransport& operator=(const StreamTransport&) = delete;
    void start();
    void stop();

    // Signaling thread: takes up to `max` items from the inbox.
    std::size_t drain(std::vector<Inbound>& out, std::size_t max);
    // Signaling thread: the dataplane's verdict on an admission request.
    void admit(signaling::ConnectionId c, bool ok);
    // Signaling thread: bytes for a connection; false when the outbox is full (counted).
    bool send(signaling::ConnectionId c, std::string bytes);
    // Signaling thread: bytes for `remote` over `transport` (tcp or tls) on the SBC's own
    // connection to it, opened if needed. `server_name` is the TLS name to verify and send as
    // SNI ("" = the address itself); `listener` names the front door listener that messages
    // received on the connection are attributed to. false when the outbox is full (counted).
    bool send_to(signaling::Transport transport, const base::Endpoint& remote,
                 std::string server_name, std::uint32_t listener, std::string bytes);

    // Reload, any thread: new TLS contexts from the same settings (the files are reread), built
    // aside; nullopt-equivalent error names the listener and the file. install() swaps them in:
    // new connections use them, established ones keep theirs.
    using Contexts = std::vector<std::shared_ptr<const tls::ServerContext>>;
    base::Result<Contexts> prepare_tls() const;
    void install_tls(Contexts contexts);

    // Any thread: the counters (published by the transport thread at least every 100 ms) and
    // the certificates in use, as key=value lines.
    std::string stats_text() const;
    // Signaling thread (the metrics page): the same counters as Prometheus families.
    void write_metrics(MetricsWriter& w) const;
    std::size_t listener_count() const { return listeners_.size(); }

  private:
    struct Listening {
        ListenerSpec spec;
        int fd = -1;
        std::shared_ptr<const tls::ServerContext> tls;  // guarded by tls_mu_
    };
    struct Conn;
    struct Outbound {
        enum class Kind : std::uint8_t { admit, refuse, send, send_to } kind = Kind::send;
        signaling::ConnectionId connection = 0;
        std::string bytes;
        // send_to
        signaling::Transport transport = signaling::Transport::tcp;
        base::Endpoint remote;
        std::string server_name;
        std::uint32_t listener = 0;
    };

    explicit StreamTransport(const Options& options);
    void loop();
    void wake_signaling();
    void accept_on(Listening& l, base::Nanos now);
    void send_outgoing(Outbound& o, base::Nanos now);
    void finish_connect(Conn& c, base::Nanos now);
    void connect_failed(signaling::Transport t, const base::Endpoint& remote,
                        std::uint32_t listener);
    void on_admit(signaling::ConnectionId id, bool ok, base::Nanos now);
    void on_readable(Conn& c, base::Nanos now);
    void on_writable(Conn& c, base::Nanos now);
    void handshake(Conn& c, base::Nanos now);
    void queue(Conn& c, std::string_view bytes);
    bool flush(Conn& c);
    void update_events(Conn& c);
    void close(signaling::ConnectionId id);
    bool push_inbound(Inbound item);
    void publish(base::Nanos now, bool force);

    Options options_;
    std::vector<Listening> listeners_;
    int epoll_fd_ = -1;
    int wake_fd_ = -1;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    base::SystemClock clock_;

    // Transport thread only.
    signaling::StreamConnections conns_;
    std::unordered_map<signaling::ConnectionId, std::unique_ptr<Conn>> by_id_;
    std::unordered_map<std::string, signaling::ConnectionId> pool_;  // destination -> outgoing
    std::shared_ptr<const tls::ClientContext> client_tls_;
    base::Nanos last_expire_ = 0, last_publish_ = 0;

    mutable std::mutex tls_mu_;

    std::mutex in_mu_;
    std::deque<Inbound> inbox_;
    bool handed_over_ = false;  // transport thread: items queued since the last wake
    std::mutex out_mu_;
    std::deque<Outbound> outbox_;

    mutable std::mutex stats_mu_;
    base::CounterSet<signaling::StreamEvent> published_;
    std::size_t published_open_ = 0;
    std::size_t published_outgoing_ = 0;
    std::atomic<std::uint64_t> outbox_full_{0};
    std::atomic<std::uint64_t> tls_reloads_{0};
};

}  // namespace sbc
