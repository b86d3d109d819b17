#include "sbc/signaling/stream.hpp"

#include <string_view>

namespace sbc::signaling {

StreamConnections::StreamConnections(const StreamLimits& limits) : limits_(limits) {
    framing_.max_message_size = limits_.max_message_bytes;
    if (framing_.max_header_bytes > limits_.max_message_bytes)
        framing_.max_header_bytes = limits_.max_message_bytes;
}

StreamConnections::Connection* StreamConnections::get(ConnectionId id) {
    auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : it->second.get();
}

const StreamConnections::Connection* StreamConnections::find(ConnectionId id) const {
    auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : it->second.get();
}

std::uint32_t StreamConnections::from_source(const base::IpAddress& a) const {
    auto it = per_source_.find(a);
    return it == per_source_.end() ? 0 : it->second;
}

ConnectionId StreamConnections::open(const base::Endpoint& remote, std::uint32_t listener,
                                     Transport t, base::Nanos now) {
    if (connections_.size() >= limits_.max_connections) {
        counters_.add(StreamEvent::refused_capacity);
        return 0;
    }
    std::uint32_t& n = per_source_[remote.addr];
    if (n >= limits_.max_per_source) {
        counters_.add(StreamEvent::refused_per_source);
        return 0;
    }
    ++n;
    auto c = std::make_unique<Connection>(framing_);
    c->id = next_id_++;
    c->remote = remote;
    c->listener = listener;
    c->transport = t;
    c->opened = c->last_activity = now;
    const ConnectionId id = c->id;
    connections_.emplace(id, std::move(c));
    counters_.add(StreamEvent::accepted);
    return id;
}

ConnectionId StreamConnections::open_outgoing(const base::Endpoint& remote, std::uint32_t listener,
                                              Transport t, base::Nanos now) {
    if (outgoing_ >= limits_.max_outgoing) {
        counters_.add(StreamEvent::refused_outgoing_capacity);
        return 0;
    }
    ++outgoing_;
    auto c = std::make_unique<Connection>(framing_);
    c->id = next_id_++;
    c->remote = remote;
    c->listener = listener;
    c->transport = t;
    c->outgoing = true;
    c->opened = c->last_activity = now;
    const ConnectionId id = c->id;
    connections_.emplace(id, std::move(c));
    counters_.add(StreamEvent::connects);
    return id;
}

void StreamConnections::connected(ConnectionId id, base::Nanos now) {
    Connection* c = get(id);
    if (!c || !c->outgoing || c->state != State::admitting) return;
    if (c->transport == Transport::tls) {
        c->state = State::handshaking;  // the deadline still runs from connect()
    } else {
        c->state = State::open;
        c->last_activity = now;
        counters_.add(StreamEvent::connected);
    }
}

void StreamConnections::admitted(ConnectionId id, base::Nanos now) {
    Connection* c = get(id);
    if (!c || c->state != State::admitting) return;
    counters_.add(StreamEvent::admitted);
    if (c->transport == Transport::tls) {
        c->state = State::handshaking;  // the handshake deadline still runs from accept
    } else {
        c->state = State::open;
        c->last_activity = now;
    }
}

void StreamConnections::established(ConnectionId id, base::Nanos now) {
    Connection* c = get(id);
    if (!c || c->state == State::open) return;
    counters_.add(c->outgoing ? StreamEvent::connected : StreamEvent::handshakes);
    c->state = State::open;
    c->last_activity = now;
}

void StreamConnections::close(ConnectionId id) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    if (it->second->outgoing) {
        --outgoing_;
        connections_.erase(it);
        return;
    }
    auto s = per_source_.find(it->second->remote.addr);
    if (s != per_source_.end() && --s->second == 0) per_source_.erase(s);
    connections_.erase(it);
}

StreamEvent StreamConnections::receive(ConnectionId id, std::string_view bytes, base::Nanos now,
                                       const std::function<void(std::string_view)>& on_message,
                                       int& pongs) {
    pongs = 0;
    Connection* c = get(id);
    if (!c || c->state != State::open) return StreamEvent::framing_error;
    if (c->framer.buffered() + bytes.size() + c->output_bytes > limits_.max_buffered_bytes) {
        counters_.add(StreamEvent::buffer_full);
        return StreamEvent::buffer_full;
    }
    c->framer.feed(bytes);
    for (;;) {
        const auto f = c->framer.next();
        switch (f.kind) {
            case sip::StreamFramer::Kind::need_more:
                return StreamEvent::messages;
            case sip::StreamFramer::Kind::ping:
                // RFC 5626 §3.5.1: CRLFCRLF is answered with CRLF; it keeps the flow alive.
                ++pongs;
                c->last_activity = now;
                counters_.add(StreamEvent::keepalives_answered);
                break;
            case sip::StreamFramer::Kind::message:
                c->last_activity = now;
                counters_.add(StreamEvent::messages);
                on_message(f.bytes);
                break;
            case sip::StreamFramer::Kind::error: {
                const bool too_big = f.error.find("larger than") != std::string_view::npos;
                const auto why = too_big ? StreamEvent::oversized : StreamEvent::framing_error;
                counters_.add(why);
                return why;
            }
        }
    }
}

bool StreamConnections::queue_output(ConnectionId id, std::size_t bytes) {
    Connection* c = get(id);
    if (!c) return false;
    if (c->output_bytes + bytes + c->framer.buffered() > limits_.max_buffered_bytes) {
        counters_.add(StreamEvent::buffer_full);
        return false;
    }
    c->output_bytes += bytes;
    return true;
}

void StreamConnections::output_written(ConnectionId id, std::size_t bytes) {
    if (Connection* c = get(id))
        c->output_bytes -= bytes < c->output_bytes ? bytes : c->output_bytes;
}

}  // namespace sbc::signaling
