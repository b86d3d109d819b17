#include "sbc/stream_transport.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "base/sockaddr.hpp"

namespace sbc {

using signaling::ConnectionId;
using signaling::StreamConnections;
using signaling::StreamEvent;
using signaling::Transport;

namespace {
// epoll user data: listeners and the wakeup are tagged apart from connection ids (which start
// at 1 and never reach the tags).
constexpr std::uint64_t kWakeTag = ~0ull;
constexpr std::uint64_t kListenerTag = 1ull << 63;
constexpr std::size_t kReadChunk = 16384;
// Per wakeup, so that one busy connection or a flood of connects cannot starve the others.
constexpr int kAcceptsPerEvent = 64;
constexpr std::size_t kReadsPerEvent = 8;
}  // namespace

struct StreamTransport::Conn {
    ConnectionId id = 0;
    int fd = -1;
    std::uint32_t listener = 0;        // index into listeners_ (accepted connections)
    std::uint32_t front_listener = 0;  // the front door's listener index, for what is read
    Transport transport = Transport::tcp;
    bool outgoing = false;
    bool connecting = false;   // outgoing: connect() in progress
    bool established = false;  // outgoing: connected (and the TLS handshake done)
    std::string pool_key;      // outgoing: the destination in pool_
    std::string server_name;   // outgoing TLS: the name verified ("" = the address)
    base::Endpoint remote, local;
    std::unique_ptr<tls::Session> tls;
    bool handshaking = false;
    bool want_write = false;  // waiting for EPOLLOUT
    bool reading = false;     // registered for EPOLLIN (after admission)
    std::string out;          // not yet written
};

StreamTransport::StreamTransport(const Options& options)
    : options_(options), conns_(options.limits) {}

base::Result<std::unique_ptr<StreamTransport>> StreamTransport::open(
    std::vector<ListenerSpec> listeners, const Options& options) {
    std::unique_ptr<StreamTransport> t(new StreamTransport(options));
    t->epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    t->wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->epoll_fd_ < 0 || t->wake_fd_ < 0)
        return base::make_error(std::string("stream transport: ") + std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeTag;
    ::epoll_ctl(t->epoll_fd_, EPOLL_CTL_ADD, t->wake_fd_, &ev);
    for (auto& spec : listeners) {
        const std::string name = std::string(spec.transport == Transport::tls ? "tls " : "tcp ") +
                                 spec.local.to_string();
        Listening l;
        l.spec = std::move(spec);
        if (l.spec.transport == Transport::tls) {
            auto ctx = tls::ServerContext::create(l.spec.tls);
            if (!ctx) return base::make_error("SIP listener " + name + ": " + ctx.error().message);
            l.tls = *ctx;
        }
        sockaddr_storage ss;
        const socklen_t len = base::to_sockaddr(l.spec.local, ss);
        const int fd =
            ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0) return base::make_error("SIP listener " + name + ": " + std::strerror(errno));
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        ::setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 1024) != 0) {
            const std::string why = std::strerror(errno);
            ::close(fd);
            return base::make_error("SIP listener " + name + ": " + why);
        }
        l.fd = fd;
        epoll_event lev{};
        lev.events = EPOLLIN;
        lev.data.u64 = kListenerTag | t->listeners_.size();
        ::epoll_ctl(t->epoll_fd_, EPOLL_CTL_ADD, fd, &lev);
        if (l.tls)
            spdlog::info("SIP listener {}: certificate {}", name, l.tls->certificate_summary());
        t->listeners_.push_back(std::move(l));
    }
    if (options.client_tls_enabled) {
        auto ctx = tls::ClientContext::create(options.client_tls);
        if (!ctx) return base::make_error("outgoing TLS: " + ctx.error().message);
        t->client_tls_ = *ctx;
    }
    return t;
}

StreamTransport::~StreamTransport() {
    stop();
    for (auto& [id, c] : by_id_) ::close(c->fd);
    for (auto& l : listeners_)
        if (l.fd >= 0) ::close(l.fd);
    if (wake_fd_ >= 0) ::close(wake_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void StreamTransport::start() {
    thread_ = std::thread([this] {
        // The daemon takes its signals through a signalfd; this thread must not receive them.
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &mask, nullptr);
        loop();
    });
}

void StreamTransport::stop() {
    if (stop_.exchange(true)) return;
    const std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
    if (thread_.joinable()) thread_.join();
}

std::size_t StreamTransport::drain(std::vector<Inbound>& out, std::size_t max) {
    std::size_t n = 0;
    bool left = false;
    {
        std::lock_guard lock(in_mu_);
        while (n < max && !inbox_.empty()) {
            out.push_back(std::move(inbox_.front()));
            inbox_.pop_front();
            ++n;
        }
        left = !inbox_.empty();
    }
    // More than one batch waiting: the signaling thread comes back for the rest at once.
    if (left && options_.wake_signaling) options_.wake_signaling();
    return n;
}

void StreamTransport::wake_signaling() {
    bool handed = false;
    {
        std::lock_guard lock(in_mu_);
        handed = handed_over_;
        handed_over_ = false;
    }
    if (handed && options_.wake_signaling) options_.wake_signaling();
}

void StreamTransport::admit(ConnectionId c, bool ok) {
    {
        std::lock_guard lock(out_mu_);
        // Verdicts are never dropped: at most one per connection the transport asked about,
        // and those are bounded by max_connections.
        Outbound o;
        o.kind = ok ? Outbound::Kind::admit : Outbound::Kind::refuse;
        o.connection = c;
        outbox_.push_back(std::move(o));
    }
    const std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
}

bool StreamTransport::send(ConnectionId c, std::string bytes) {
    {
        std::lock_guard lock(out_mu_);
        if (outbox_.size() >= options_.outbox_capacity) {
            outbox_full_.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        Outbound o;
        o.kind = Outbound::Kind::send;
        o.connection = c;
        o.bytes = std::move(bytes);
        outbox_.push_back(std::move(o));
    }
    const std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
    return true;
}

bool StreamTransport::send_to(Transport transport, const base::Endpoint& remote,
                              std::string server_name, std::uint32_t listener, std::string bytes) {
    {
        std::lock_guard lock(out_mu_);
        if (outbox_.size() >= options_.outbox_capacity) {
            outbox_full_.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        Outbound o;
        o.kind = Outbound::Kind::send_to;
        o.bytes = std::move(bytes);
        o.transport = transport;
        o.remote = remote;
        o.server_name = std::move(server_name);
        o.listener = listener;
        outbox_.push_back(std::move(o));
    }
    const std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
    return true;
}

base::Result<StreamTransport::Contexts> StreamTransport::prepare_tls() const {
    Contexts out(listeners_.size());
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
        if (listeners_[i].spec.transport != Transport::tls) continue;
        auto ctx = tls::ServerContext::create(listeners_[i].spec.tls);
        if (!ctx)
            return base::make_error("SIP listener tls " + listeners_[i].spec.local.to_string() +
                                    ": " + ctx.error().message);
        out[i] = *ctx;
    }
    return out;
}

void StreamTransport::install_tls(Contexts contexts) {
    std::lock_guard lock(tls_mu_);
    for (std::size_t i = 0; i < listeners_.size() && i < contexts.size(); ++i) {
        if (!contexts[i]) continue;
        if (contexts[i]->certificate_summary() != listeners_[i].tls->certificate_summary())
            spdlog::info("SIP listener tls {}: new certificate {}",
                         listeners_[i].spec.local.to_string(), contexts[i]->certificate_summary());
        listeners_[i].tls = std::move(contexts[i]);
    }
    tls_reloads_.fetch_add(1, std::memory_order_relaxed);
}

std::string StreamTransport::stats_text() const {
    base::CounterSet<StreamEvent> c;
    std::size_t open = 0;
    {
        std::lock_guard lock(stats_mu_);
        c = published_;
        open = published_open_;
    }
    std::string out;
    for (std::size_t i = 0; i < signaling::kStreamEventCount; ++i) {
        const auto e = static_cast<StreamEvent>(i);
        std::uint64_t v = c[e];
        if (e == StreamEvent::outbox_full) v += outbox_full_.load(std::memory_order_relaxed);
        out += "streams." + std::string(name(e)) + "=" + std::to_string(v) + "\n";
    }
    out += "streams.open=" + std::to_string(open) + "\n";
    {
        std::lock_guard lock(stats_mu_);
        out += "streams.outgoing_open=" + std::to_string(published_outgoing_) + "\n";
    }
    out += "streams.max_outgoing=" + std::to_string(options_.limits.max_outgoing) + "\n";
    out += "streams.max_connections=" + std::to_string(options_.limits.max_connections) + "\n";
    out += "tls.reloads=" + std::to_string(tls_reloads_.load(std::memory_order_relaxed)) + "\n";
    std::lock_guard lock(tls_mu_);
    for (const auto& l : listeners_)
        if (l.tls)
            out += "tls.certificate." + l.spec.local.to_string() + "=" +
                   l.tls->certificate_summary() + "\n";
    return out;
}

bool StreamTransport::push_inbound(Inbound item) {
    std::lock_guard lock(in_mu_);
    if (inbox_.size() >= options_.inbox_capacity) return false;
    inbox_.push_back(std::move(item));
    handed_over_ = true;
    return true;
}

void StreamTransport::publish(base::Nanos now, bool force) {
    if (!force && now - last_publish_ < base::millis(50)) return;
    last_publish_ = now;
    std::lock_guard lock(stats_mu_);
    published_ = conns_.counters();
    published_open_ = conns_.size();
    published_outgoing_ = conns_.outgoing();
}

void StreamTransport::loop() {
    epoll_event events[64];
    std::deque<Outbound> work;
    while (!stop_.load(std::memory_order_relaxed)) {
        const int n = ::epoll_wait(epoll_fd_, events, 64, 100);
        const base::Nanos now = clock_.monotonic();
        for (int i = 0; i < n; ++i) {
            const std::uint64_t tag = events[i].data.u64;
            if (tag == kWakeTag) {
                std::uint64_t v;
                (void)!::read(wake_fd_, &v, sizeof v);
                continue;
            }
            if (tag & kListenerTag) {
                accept_on(listeners_[tag & ~kListenerTag], now);
                continue;
            }
            auto it = by_id_.find(tag);
            if (it == by_id_.end()) continue;  // closed earlier in this batch
            Conn& c = *it->second;
            if (events[i].events & (EPOLLOUT)) on_writable(c, now);
            if (!by_id_.count(tag)) continue;
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
                on_readable(c, now);
        }
        {
            std::lock_guard lock(out_mu_);
            work.swap(outbox_);
        }
        for (auto& o : work) {
            if (o.kind == Outbound::Kind::send_to) {
                send_outgoing(o, now);
                continue;
            }
            if (o.kind != Outbound::Kind::send) {
                on_admit(o.connection, o.kind == Outbound::Kind::admit, now);
                continue;
            }
            auto it = by_id_.find(o.connection);
            if (it == by_id_.end() || it->second->handshaking || !it->second->reading) {
                conns_.counters().add(StreamEvent::send_no_connection);
                continue;
            }
            conns_.counters().add(StreamEvent::sent);
            queue(*it->second, o.bytes);
        }
        work.clear();
        if (now - last_expire_ >= base::millis(200)) {
            last_expire_ = now;
            conns_.expire(now, [this](ConnectionId id, StreamEvent) { close(id); });
        }
        wake_signaling();
        publish(now, false);
    }
    publish(clock_.monotonic(), true);
}

void StreamTransport::accept_on(Listening& l, base::Nanos now) {
    for (int i = 0; i < kAcceptsPerEvent; ++i) {
        sockaddr_storage ss;
        socklen_t len = sizeof ss;
        const int fd =
            ::accept4(l.fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE)
                spdlog::warn("SIP listener {}: out of file descriptors", l.spec.local.to_string());
            return;
        }
        const base::Endpoint remote = base::from_sockaddr(ss).value_or(base::Endpoint{});
        const ConnectionId id = conns_.open(
            remote, static_cast<std::uint32_t>(&l - listeners_.data()), l.spec.transport, now);
        if (id == 0) {
            ::close(fd);
            continue;
        }
        sockaddr_storage ls;
        socklen_t llen = sizeof ls;
        base::Endpoint local = l.spec.local;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ls), &llen) == 0)
            local = base::from_sockaddr(ls).value_or(l.spec.local);
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto c = std::make_unique<Conn>();
        c->id = id;
        c->fd = fd;
        c->listener = static_cast<std::uint32_t>(&l - listeners_.data());
        c->remote = remote;
        c->local = local;
        c->front_listener = l.spec.index;
        c->transport = l.spec.transport;
        Inbound ask;
        ask.kind = Inbound::Kind::admit;
        ask.connection = id;
        ask.listener = l.spec.index;
        ask.transport = l.spec.transport;
        ask.remote = remote;
        ask.local = local;
        if (!push_inbound(std::move(ask))) {
            conns_.counters().add(StreamEvent::refused_queue_full);
            conns_.close(id);
            ::close(fd);
            continue;
        }
        // Not read until admitted: registered with no events (errors and hang-ups still wake).
        epoll_event ev{};
        ev.events = 0;
        ev.data.u64 = id;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
        by_id_.emplace(id, std::move(c));
    }
}

void StreamTransport::on_admit(ConnectionId id, bool ok, base::Nanos now) {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return;  // timed out meanwhile
    if (!ok) {
        conns_.counters().add(StreamEvent::refused_dataplane);
        close(id);
        return;
    }
    Conn& c = *it->second;
    conns_.admitted(id, now);
    c.reading = true;
    if (listeners_[c.listener].spec.transport == Transport::tls) {
        std::shared_ptr<const tls::ServerContext> ctx;
        {
            std::lock_guard lock(tls_mu_);
            ctx = listeners_[c.listener].tls;
        }
        c.tls = std::make_unique<tls::Session>(std::move(ctx), c.fd);
        c.handshaking = true;
        handshake(c, now);
        return;
    }
    update_events(c);
}

void StreamTransport::handshake(Conn& c, base::Nanos now) {
    const auto r = c.tls->handshake();
    switch (r) {
        case tls::Session::Io::done:
            c.handshaking = false;
            c.want_write = false;
            conns_.established(c.id, now);
            if (c.tls->resumed())
                conns_.counters().add(c.outgoing ? StreamEvent::resumed_outgoing
                                                 : StreamEvent::resumed);
            if (c.outgoing) {
                c.established = true;
                // What was queued while connecting goes now.
                if (!c.out.empty() && !flush(c)) return;
            }
            update_events(c);
            on_readable(c, now);  // application data may have come with the handshake
            return;
        case tls::Session::Io::want_read:
            c.want_write = false;
            update_events(c);
            return;
        case tls::Session::Io::want_write:
            c.want_write = true;
            update_events(c);
            return;
        case tls::Session::Io::closed:
            conns_.counters().add(StreamEvent::closed_by_peer);
            close(c.id);
            return;
        case tls::Session::Io::failed:
            break;
    }
    switch (c.tls->failure()) {
        case tls::Session::Failure::client_certificate:
            conns_.counters().add(StreamEvent::client_cert_refused);
            break;
        case tls::Session::Failure::client_name:
            conns_.counters().add(StreamEvent::client_name_refused);
            break;
        case tls::Session::Failure::server_certificate:
            conns_.counters().add(StreamEvent::server_cert_refused);
            spdlog::warn("TLS to {} ({}): server certificate refused: {}", c.remote.to_string(),
                         c.server_name.empty() ? "its address" : c.server_name, c.tls->error());
            break;
        default:
            conns_.counters().add(StreamEvent::handshake_failed);
            break;
    }
    spdlog::debug("TLS handshake from {} failed: {}", c.remote.to_string(), c.tls->error());
    close(c.id);
}

void StreamTransport::on_readable(Conn& c, base::Nanos now) {
    if (!c.reading) {
        // An error or hang-up before admission (only those wake an unadmitted connection):
        // gone; the verdict, when it comes, finds nothing.
        conns_.counters().add(StreamEvent::closed_by_peer);
        close(c.id);
        return;
    }
    if (c.handshaking) {
        handshake(c, now);
        return;
    }
    const ConnectionId id = c.id;
    const std::uint32_t front_listener = c.front_listener;
    const Transport transport = c.transport;
    char buf[kReadChunk];
    for (std::size_t round = 0; round < kReadsPerEvent; ++round) {
        std::size_t got = 0;
        bool closed = false, failed = false, again = false;
        if (c.tls) {
            const auto r = c.tls->read(buf, sizeof buf, got);
            closed = r == tls::Session::Io::closed;
            failed = r == tls::Session::Io::failed;
            again = r == tls::Session::Io::want_read || r == tls::Session::Io::want_write;
        } else {
            const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
            if (n > 0) {
                got = static_cast<std::size_t>(n);
            } else if (n == 0) {
                closed = true;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                again = true;
            } else {
                failed = true;
            }
        }
        if (closed || failed) {
            conns_.counters().add(closed ? StreamEvent::closed_by_peer : StreamEvent::read_errors);
            close(id);
            return;
        }
        if (again || got == 0) return;
        int pongs = 0;
        const auto verdict = conns_.receive(
            id, std::string_view(buf, got), now,
            [&](std::string_view message) {
                Inbound m;
                m.kind = Inbound::Kind::message;
                m.connection = id;
                m.listener = front_listener;
                m.transport = transport;
                m.remote = c.remote;
                m.local = c.local;
                m.bytes.assign(message);
                if (!push_inbound(std::move(m))) conns_.counters().add(StreamEvent::inbox_full);
            },
            pongs);
        for (int i = 0; i < pongs && by_id_.count(id); ++i) queue(c, "\r\n");  // RFC 5626 §3.5.1
        if (verdict != StreamEvent::messages) {
            close(id);
            return;
        }
        if (!by_id_.count(id)) return;  // a failed write closed it
        if (got < sizeof buf && !c.tls) return;
    }
}

void StreamTransport::on_writable(Conn& c, base::Nanos now) {
    if (c.connecting) {
        finish_connect(c, now);
        return;
    }
    if (c.handshaking) {
        handshake(c, now);
        return;
    }
    if (flush(c)) update_events(c);
}

void StreamTransport::queue(Conn& c, std::string_view bytes) {
    if (!conns_.queue_output(c.id, bytes.size())) {
        close(c.id);  // a peer that does not read cannot pin our memory
        return;
    }
    c.out.append(bytes);
    // An outgoing connection still connecting or handshaking sends it once established.
    if (c.connecting || c.handshaking) return;
    if (!c.want_write && flush(c)) update_events(c);
}

bool StreamTransport::flush(Conn& c) {
    const ConnectionId id = c.id;
    std::size_t done = 0;
    bool blocked = false;
    while (done < c.out.size()) {
        std::size_t n = 0;
        if (c.tls) {
            const auto r = c.tls->write(c.out.data() + done, c.out.size() - done, n);
            if (r == tls::Session::Io::want_write || r == tls::Session::Io::want_read) {
                blocked = true;
                break;
            }
            if (r != tls::Session::Io::done) {
                conns_.counters().add(StreamEvent::read_errors);
                close(id);
                return false;
            }
        } else {
            const ssize_t w = ::send(c.fd, c.out.data() + done, c.out.size() - done, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    blocked = true;
                    break;
                }
                conns_.counters().add(StreamEvent::read_errors);
                close(id);
                return false;
            }
            n = static_cast<std::size_t>(w);
        }
        done += n;
    }
    c.out.erase(0, done);
    conns_.output_written(id, done);
    c.want_write = blocked;
    return true;
}

void StreamTransport::update_events(Conn& c) {
    epoll_event ev{};
    std::uint32_t events = 0;
    if (c.reading) events |= EPOLLIN | EPOLLRDHUP;
    if (c.want_write) events |= EPOLLOUT;
    ev.events = events;
    ev.data.u64 = c.id;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void StreamTransport::close(ConnectionId id) {
    auto it = by_id_.find(id);
    if (it != by_id_.end()) {
        Conn& c = *it->second;
        if (c.reading) {
            // Past the inbox's capacity: one per admitted connection, so bounded by
            // max_connections, and a lost one would leave bindings on a dead connection.
            Inbound gone;
            gone.kind = Inbound::Kind::closed;
            gone.connection = id;
            gone.listener = c.front_listener;
            gone.transport = c.outgoing ? c.transport : listeners_[c.listener].spec.transport;
            gone.remote = c.remote;
            gone.local = c.local;
            std::lock_guard lock(in_mu_);
            inbox_.push_back(std::move(gone));
            handed_over_ = true;
        }
        if (c.outgoing) {
            if (auto p = pool_.find(c.pool_key); p != pool_.end() && p->second == id)
                pool_.erase(p);  // the next send to this destination reconnects
            if (!c.established) {
                conns_.counters().add(StreamEvent::connect_failed);
                connect_failed(c.transport, c.remote, c.front_listener);
            }
        }
        if (c.tls) c.tls->shutdown();
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
        ::close(c.fd);
        by_id_.erase(it);
    }
    conns_.close(id);
}

}  // namespace sbc

namespace sbc {

void StreamTransport::connect_failed(Transport t, const base::Endpoint& remote,
                                     std::uint32_t listener) {
    Inbound f;
    f.kind = Inbound::Kind::connect_failed;
    f.transport = t;
    f.remote = remote;
    f.listener = listener;
    // Lost when the inbox is full: the transactions then end by their own timers.
    if (!push_inbound(std::move(f))) conns_.counters().add(StreamEvent::inbox_full);
}

void StreamTransport::send_outgoing(Outbound& o, base::Nanos now) {
    std::string key(signaling::transport_name(o.transport));
    key += ' ';
    key += o.remote.to_string();
    key += ' ';
    key += o.server_name;
    if (auto p = pool_.find(key); p != pool_.end()) {
        if (auto it = by_id_.find(p->second); it != by_id_.end()) {
            if (it->second->established) conns_.counters().add(StreamEvent::reused);
            conns_.counters().add(StreamEvent::sent);
            queue(*it->second, o.bytes);
            return;
        }
        pool_.erase(p);
    }
    if (o.transport == Transport::udp || (o.transport == Transport::tls && !client_tls_)) {
        conns_.counters().add(StreamEvent::connect_failed);
        connect_failed(o.transport, o.remote, o.listener);
        return;
    }
    const ConnectionId id = conns_.open_outgoing(o.remote, ~std::uint32_t{0}, o.transport, now);
    if (id == 0) {
        connect_failed(o.transport, o.remote, o.listener);
        return;
    }
    sockaddr_storage ss;
    const socklen_t len = base::to_sockaddr(o.remote, ss);
    const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        spdlog::warn("connection to {}: {}", o.remote.to_string(), std::strerror(errno));
        conns_.counters().add(StreamEvent::connect_failed);
        conns_.close(id);
        connect_failed(o.transport, o.remote, o.listener);
        return;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // From the address of the listener the Via names (the realm's interface), any port.
    for (const auto& l : listeners_) {
        if (l.spec.index != o.listener || l.spec.local.addr.is_v4() != o.remote.addr.is_v4())
            continue;
        sockaddr_storage src;
        const socklen_t slen = base::to_sockaddr(base::Endpoint{l.spec.local.addr, 0}, src);
        ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&src), slen) != 0)
            spdlog::debug("connection to {}: bind: {}", o.remote.to_string(), std::strerror(errno));
        break;
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
        spdlog::debug("connection to {}: {}", o.remote.to_string(), std::strerror(errno));
        ::close(fd);
        conns_.counters().add(StreamEvent::connect_failed);
        conns_.close(id);
        connect_failed(o.transport, o.remote, o.listener);
        return;
    }
    auto c = std::make_unique<Conn>();
    c->id = id;
    c->fd = fd;
    c->listener = ~std::uint32_t{0};
    c->front_listener = o.listener;
    c->transport = o.transport;
    c->outgoing = true;
    c->connecting = true;
    c->want_write = true;  // EPOLLOUT says the connect finished
    c->remote = o.remote;
    c->pool_key = key;
    c->server_name = o.server_name;
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = id;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    Conn& ref = *c;
    by_id_.emplace(id, std::move(c));
    pool_[key] = id;
    conns_.counters().add(StreamEvent::sent);
    queue(ref, o.bytes);
}

void StreamTransport::finish_connect(Conn& c, base::Nanos now) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
        spdlog::debug("connection to {}: {}", c.remote.to_string(), std::strerror(err));
        close(c.id);
        return;
    }
    sockaddr_storage ls;
    socklen_t llen = sizeof ls;
    if (::getsockname(c.fd, reinterpret_cast<sockaddr*>(&ls), &llen) == 0)
        c.local = base::from_sockaddr(ls).value_or(base::Endpoint{});
    c.connecting = false;
    c.want_write = false;
    c.reading = true;
    conns_.connected(c.id, now);
    if (c.transport == Transport::tls) {
        // Keyed by the pool's destination (transport, address, name verified): a session is
        // only offered to where it was verified.
        c.tls = std::make_unique<tls::Session>(
            client_tls_, c.fd, c.server_name.empty() ? c.remote.addr.to_string() : c.server_name,
            c.pool_key);
        c.handshaking = true;
        handshake(c, now);
        return;
    }
    c.established = true;
    if (!c.out.empty() && !flush(c)) return;
    update_events(c);
}

}  // namespace sbc
