#pragma once
// Stream transports (TCP, TLS) without I/O: the bookkeeping of connections (limits per source
// and in all, handshake and idle deadlines, bytes buffered) and the framing of what each one
// receives into SIP messages (RFC 3261 §18.3) and keep-alives (RFC 5626 §3.5.1). The transport
// thread in sbc/ owns the sockets and TLS sessions and asks this table what to do; every
// decision takes `now` from the caller, so each limit is a unit test with a moved clock.
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "base/base.hpp"
#include "sbc/signaling/transaction.hpp"
#include "sip/sip.hpp"

namespace sbc::signaling {

// Sized for an open-file limit of 20,000: 4,096 connections leave the rest to the relay's
// sockets and the listeners.
struct StreamLimits {
    std::uint32_t max_connections = 4096;  // every stream listener together
    std::uint32_t max_per_source = 32;     // connections from one address
    std::size_t max_message_bytes = 65535;
    // Unframed input plus unsent output of one connection: a slow sender or a reader that never
    // reads cannot pin more than this.
    std::size_t max_buffered_bytes = 262144;
    // From accept to the end of the TLS handshake (TCP: to the dataplane's admission); for an
    // outgoing connection, from connect() to the end of its handshake.
    base::Nanos handshake_timeout = base::seconds(5);
    // Without a complete message or keep-alive (a partial message does not count).
    base::Nanos idle_timeout = base::seconds(300);
    // Connections the SBC opens itself (to next hops, trunks and Request-URIs over TCP/TLS),
    // on top of max_connections; one per destination, reused.
    std::uint32_t max_outgoing = 512;
};

#define SBC_SIGNALING_STREAM_EVENTS(X)                                                         \
    X(accepted, "connections accepted")                                                        \
    X(admitted, "connections admitted by the dataplane's bans and tcp_connect limits")         \
    X(refused_capacity, "connections refused: max_connections reached")                        \
    X(refused_per_source, "connections refused: the source's connection limit reached")        \
    X(refused_dataplane, "connections refused by the dataplane (banned or rate limited)")      \
    X(refused_queue_full, "connections refused: admission queue to the dataplane full")        \
    X(handshakes, "TLS handshakes completed")                                                  \
    X(handshake_failed, "TLS handshakes failed (version, cipher, certificate, garbage)")       \
    X(client_cert_refused, "TLS clients refused for a missing or unverified certificate")      \
    X(client_name_refused, "TLS client certificates with a name not allowed")                  \
    X(resumed, "TLS sessions resumed (clients of our listeners)")                              \
    X(handshake_timeout, "connections closed: no handshake (or admission) within the limit")   \
    X(idle_timeout, "connections closed: idle longer than the limit")                          \
    X(oversized, "connections closed: a message larger than max_message_bytes")                \
    X(framing_error, "connections closed: unframeable input (no Content-Length, garbage)")     \
    X(buffer_full, "connections closed: more than max_buffered_bytes pending")                 \
    X(messages, "SIP messages framed")                                                         \
    X(keepalives_answered, "CRLFCRLF keep-alives answered with CRLF (RFC 5626 §3.5.1)")        \
    X(closed_by_peer, "connections closed by the peer")                                        \
    X(read_errors, "connections closed on a read or TLS error")                                \
    X(inbox_full, "messages dropped: queue to the signaling thread full")                      \
    X(sent, "messages sent on connections")                                                    \
    X(send_no_connection, "messages not sent: the connection is gone")                         \
    X(outbox_full, "messages not sent: queue to the transport thread full")                    \
    X(connects, "outgoing connections started")                                                \
    X(connected, "outgoing connections established (TCP connected, TLS handshake done)")       \
    X(resumed_outgoing, "outgoing TLS connections that resumed the destination's session")     \
    X(connect_failed, "outgoing connections that failed (refused, unreachable, TLS, timeout)") \
    X(server_cert_refused, "outgoing TLS connections refused: server certificate or name")     \
    X(refused_outgoing_capacity, "outgoing connections refused: max_outgoing reached")         \
    X(reused, "messages sent on an outgoing connection already open")
SBC_DECLARE_COUNTER_LIST(StreamEvent, SBC_SIGNALING_STREAM_EVENTS)

using ConnectionId = std::uint64_t;  // never 0, never reused while the process runs

class StreamConnections {
  public:
    enum class State : std::uint8_t { admitting, handshaking, open };
    struct Connection {
        ConnectionId id = 0;
        base::Endpoint remote;
        std::uint32_t listener = 0;
        Transport transport = Transport::tcp;
        State state = State::admitting;  // outgoing: connecting
        bool outgoing = false;
        base::Nanos opened = 0, last_activity = 0;
        std::size_t output_bytes = 0;  // queued, not yet written
        sip::StreamFramer framer;
        Connection(const sip::Limits& l) : framer(l) {}
    };

    explicit StreamConnections(const StreamLimits& limits = {});

    // A connection accepted from `remote`: its id, or 0 with the refusal counted (capacity or
    // per source).
    ConnectionId open(const base::Endpoint& remote, std::uint32_t listener, Transport t,
                      base::Nanos now);
    // A connection the SBC opens to `remote` (a connect in progress): its id, or 0 with the
    // refusal counted (max_outgoing). Its deadline is handshake_timeout from now; connected()
    // moves it on as admitted() does for an accepted one.
    ConnectionId open_outgoing(const base::Endpoint& remote, std::uint32_t listener, Transport t,
                               base::Nanos now);
    void connected(ConnectionId id, base::Nanos now);
    // The dataplane admitted it: a TLS connection now handshakes, a TCP one is open.
    void admitted(ConnectionId id, base::Nanos now);
    // The TLS handshake completed.
    void established(ConnectionId id, base::Nanos now);
    void close(ConnectionId id);

    // Bytes read from the connection. Each complete message goes to `on_message` (the view
    // lives until it returns); `pongs` counts the CRLFCRLF pings to answer with CRLF. Returns
    // StreamEvent::messages while the connection may stay, else why it must be closed
    // (oversized, framing_error, buffer_full; counted here).
    StreamEvent receive(ConnectionId id, std::string_view bytes, base::Nanos now,
                        const std::function<void(std::string_view)>& on_message, int& pongs);
    // Output accounting: false (and counted as buffer_full) when `bytes` more would pass
    // max_buffered_bytes together with what the framer holds; the caller closes.
    bool queue_output(ConnectionId id, std::size_t bytes);
    void output_written(ConnectionId id, std::size_t bytes);

    // Connections past a deadline (handshake_timeout before open, idle_timeout after), with the
    // reason (counted here). The caller closes each.
    template <class F>
    void expire(base::Nanos now, F&& on_expired) {
        std::vector<std::pair<ConnectionId, StreamEvent>> due;
        for (const auto& [id, c] : connections_) {
            if (c->state != State::open) {
                if (now - c->opened >= limits_.handshake_timeout)
                    due.emplace_back(id, StreamEvent::handshake_timeout);
            } else if (now - c->last_activity >= limits_.idle_timeout) {
                due.emplace_back(id, StreamEvent::idle_timeout);
            }
        }
        for (const auto& [id, why] : due) {
            counters_.add(why);
            on_expired(id, why);
        }
    }

    const Connection* find(ConnectionId id) const;
    std::size_t size() const { return connections_.size(); }
    std::size_t outgoing() const { return outgoing_; }
    std::uint32_t from_source(const base::IpAddress& a) const;
    const StreamLimits& limits() const { return limits_; }
    base::CounterSet<StreamEvent>& counters() { return counters_; }
    const base::CounterSet<StreamEvent>& counters() const { return counters_; }

  private:
    Connection* get(ConnectionId id);
    StreamLimits limits_;
    sip::Limits framing_;
    ConnectionId next_id_ = 1;
    std::unordered_map<ConnectionId, std::unique_ptr<Connection>> connections_;
    std::unordered_map<base::IpAddress, std::uint32_t> per_source_;
    std::size_t outgoing_ = 0;
    base::CounterSet<StreamEvent> counters_;
};

}  // namespace sbc::signaling
