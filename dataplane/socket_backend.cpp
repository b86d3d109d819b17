// socket backend: media relay over kernel UDP sockets. One socket per local media port (RTP,
// and RTCP on port+1 unless rtcp-mux). Two ways to move packets (SocketRelayConfig::io):
// - uring: every socket has a multishot recvmsg into a shared provided-buffer ring; a poll
//   reaps up to a burst of datagrams across all sockets, decides them together and queues one
//   sendmsg per relayed packet from its receive buffer; those sends go to the kernel with the
//   next wait in one io_uring_enter. With many streams each wake-up finds ~1 datagram per
//   socket, so per-socket batching (below) costs two syscalls per packet; this costs one per
//   burst.
//   Once a port sends to a peer, a second socket on the same port, connected to that peer,
//   carries the port's packets to it (see "connected egress" below).
// - mmsg: readiness from epoll, bursts in and out with recvmmsg/sendmmsg per socket.
// Either way packets are relayed from the receive buffers (no copy).
//
// Connected egress (uring): a send on an unconnected UDP socket pays a route lookup, a check
// that the source address is ours and a copy of the msghdr per packet, a visible share of the
// relay core's time at high packet rates; a connected socket keeps its route and takes a plain
// send. A media port cannot simply be connected: it would stop receiving from anyone but that
// peer, and a NAT rebinding (a new source address, RFC 4787 section 4.3) must still reach the
// pipeline to be re-latched. So the port's own socket stays unconnected and a twin joins it
// (SO_REUSEPORT, same address and port) connected to the peer: the kernel delivers the peer's
// datagrams to the connected twin (an exact 4-tuple match outranks the wildcard), everyone else's
// to the port's socket, and both feed the same pipeline. When the peer changes (re-latch), the twin
// is re-connected (at most once a second per port). Twins need file descriptors, and media ports
// come first: a twin is only opened while the relay's sockets stay twin_fd_reserve() below the
// open-file limit, and a new media port that finds the limit reached closes twins to make room
// (their ports send unconnected again). So the stream capacity is what it was without twins.

#include "dataplane/socket_relay_impl.hpp"

namespace sbc::dataplane {

const char* socket_io_name(SocketIo io) {
    switch (io) {
        case SocketIo::automatic:
            return "auto";
        case SocketIo::uring:
            return "uring";
        case SocketIo::mmsg:
            return "mmsg";
    }
    return "?";
}

SocketRelay::SocketRelay(Pipeline& pipeline, const SocketRelayConfig& config)
    : pipeline_(pipeline), impl_(std::make_unique<Impl>()) {
    io_ = SocketIo::mmsg;
    signaling_rcvbuf_requested_ = config.signaling_rcvbuf;
    impl_->peers.assign(config.signaling_peers, Impl::SignalingPeer{});
#if SBC_HAVE_LIBURING
    if (config.io != SocketIo::mmsg && impl_->start_uring(config.uring_buffers)) {
        io_ = SocketIo::uring;
        if (config.connected_egress) {
            rlimit rl{};
            if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                impl_->twins_enabled = true;
                impl_->twins.assign(65536, Impl::Twin{});
                impl_->fd_limit = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
            }
        }
    }
#else
    impl_->io_error = "built without liburing";
#endif
    if (config.io == SocketIo::uring && io_ != SocketIo::uring) return;  // open_stream fails
    impl_->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io_ == SocketIo::mmsg) {
        impl_->bufs.assign(std::size_t{kBurst} * kBufSize, 0);
        impl_->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (impl_->epfd < 0) impl_->io_error = std::string("epoll: ") + std::strerror(errno);
        if (impl_->epfd >= 0 && impl_->wake_fd >= 0) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u32 = kEpollWake;
            (void)epoll_ctl(impl_->epfd, EPOLL_CTL_ADD, impl_->wake_fd, &ev);
        }
    }
}

void SocketRelay::wake() {
    const std::uint64_t one = 1;
    if (impl_->wake_fd >= 0) (void)!::write(impl_->wake_fd, &one, sizeof one);
}

bool SocketRelay::take_wake() {
    std::uint64_t n = 0;
    if (impl_->wake_fd < 0 || ::read(impl_->wake_fd, &n, sizeof n) != sizeof n) return false;
    ++wakeups_;
    return true;
}

SocketRelay::~SocketRelay() {
#if SBC_HAVE_LIBURING
    impl_->stop_uring();  // drops the kernel's references to the sockets
#endif
    for (const auto& p : impl_->peers)
        if (p.fd >= 0) ::close(p.fd);
    for (int fd : impl_->fd_by_port)
        if (fd >= 0) ::close(fd);
    if (impl_->epfd >= 0) ::close(impl_->epfd);
    if (impl_->wake_fd >= 0) ::close(impl_->wake_fd);
}

std::size_t SocketRelay::connected_sockets() const {
#if SBC_HAVE_LIBURING
    return impl_->twins_open;
#else
    return 0;
#endif
}

base::Result<void> SocketRelay::watch(int fd, std::uint16_t port) {
    impl_->fd_by_port[port] = fd;
#if SBC_HAVE_LIBURING
    if (io_ == SocketIo::uring) {
        if (impl_->arm(port)) return {};
        impl_->fd_by_port[port] = -1;
        return base::make_error("io_uring: submission queue full");
    }
#endif
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = port;
    if (epoll_ctl(impl_->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        impl_->fd_by_port[port] = -1;
        return base::make_error(std::string("epoll_ctl: ") + std::strerror(errno));
    }
    return {};
}

void SocketRelay::unwatch(std::uint16_t port) {
#if SBC_HAVE_LIBURING
    if (io_ == SocketIo::uring) {
        if (impl_->twins_enabled) impl_->close_twin(port);
        impl_->disarm(port);
    }
#endif
    ::close(impl_->fd_by_port[port]);  // also leaves the epoll set
    impl_->fd_by_port[port] = -1;
}

base::Result<StreamId> SocketRelay::open_stream(const StreamSpec& spec, base::Nanos now) {
    if (io_ != SocketIo::uring && impl_->epfd < 0)
        return base::make_error("socket relay unavailable: " + impl_->io_error);
    auto id = pipeline_.media().create(spec, now);
    if (!id) return id;
    std::vector<std::uint16_t> opened;
    auto fail = [&](const std::string& why) -> base::Result<StreamId> {
        for (auto p : opened) {
            unwatch(p);
            --sockets_open_;
        }
        (void)pipeline_.media().remove(*id);
        return base::make_error(why);
    };
    for (const LegSpec* leg : {&spec.a, &spec.b}) {
        for (unsigned k = 0; k < (spec.rtcp_mux ? 1u : 2u); ++k) {
            const base::Endpoint local{leg->local.addr,
                                       static_cast<std::uint16_t>(leg->local.port + k)};
            sockaddr_storage ss;
            const socklen_t len = base::to_sockaddr(local, ss);
            int fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#if SBC_HAVE_LIBURING
            // Media ports come first: at the open-file limit, twins make room.
            if (fd < 0 && errno == EMFILE && impl_->twins_enabled && impl_->shed_twins(16) > 0)
                fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#endif
            if (fd < 0) return fail(std::string("socket: ") + std::strerror(errno));
            if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
                const int e = errno;
                ::close(fd);
                return fail("bind " + local.to_string() + ": " + std::strerror(e));
            }
#if SBC_HAVE_LIBURING
            // The port's connected twin will join it. Set after the bind, so that the bind
            // itself stays exclusive: a port that another socket (say, a second instance with
            // the same port range) holds fails here with EADDRINUSE instead of being shared.
            const int one = 1;
            if (impl_->twins_enabled)
                (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
#endif
            impl_->local_by_port[local.port] = local;
            if (auto w = watch(fd, local.port); !w) {
                ::close(fd);
                return fail(w.error().message);
            }
            opened.push_back(local.port);
            ++sockets_open_;
        }
    }
    return id;
}

base::Result<int> SocketRelay::open_signaling(const base::Endpoint& local, SignalingHandler handler,
                                              void* ctx) {
    if (io_ != SocketIo::uring && impl_->epfd < 0)
        return base::make_error("socket relay unavailable: " + impl_->io_error);
    if (impl_->fd_by_port[local.port] >= 0)
        return base::make_error("port " + std::to_string(local.port) +
                                " already open (the socket backend indexes its sockets by port: "
                                "give each listener a port of its own)");
    const auto& sip = pipeline_.config().sip_udp_ports;
    if (std::find(sip.begin(), sip.end(), local.port) == sip.end())
        return base::make_error("port " + std::to_string(local.port) +
                                " is not a configured SIP UDP port");
    sockaddr_storage ss;
    const socklen_t len = base::to_sockaddr(local, ss);
    const int fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return base::make_error(std::string("socket: ") + std::strerror(errno));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        const int e = errno;
        ::close(fd);
        return base::make_error("bind " + local.to_string() + ": " + std::strerror(e));
    }
    // A flood's bursts wait in the queue instead of being dropped there with the callers'
    // datagrams. Without CAP_NET_ADMIN SO_RCVBUFFORCE fails and SO_RCVBUF is capped by
    // net.core.rmem_max; either way the size in force is read back and reported.
    if (const int want = signaling_rcvbuf_requested_; want > 0) {
        if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) != 0)
            (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
    }
    // Protected peers' sockets will join the listener's port (set after the bind, which so
    // stays exclusive, as for media ports).
    if (!impl_->peers.empty()) {
        const int one = 1;
        (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    int got = 0;
    socklen_t got_len = sizeof got;
    if (::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &got_len) == 0) signaling_rcvbuf_ = got;
    impl_->local_by_port[local.port] = local;
    if (auto w = watch(fd, local.port); !w) {
        ::close(fd);
        return w.error();
    }
    ++sockets_open_;
    signaling_handler_ = handler;
    signaling_ctx_ = ctx;
    return fd;
}

std::size_t SocketRelay::signaling_peers() const {
    return impl_->peers_open;
}

void SocketRelay::close_signaling_peer(std::size_t slot) {
    Impl& s = *impl_;
    auto& p = s.peers[slot];
    if (p.fd < 0) return;
#if SBC_HAVE_LIBURING
    if (io_ == SocketIo::uring) s.disarm_peer(static_cast<std::uint32_t>(slot));
#endif
    ::close(p.fd);  // also leaves the epoll set
    const std::uint32_t gen = p.gen;
    p = Impl::SignalingPeer{};
    p.gen = gen;
    --s.peers_open;
}

base::Result<void> SocketRelay::protect_signaling_peer(std::uint16_t local_port,
                                                       const base::Endpoint& peer) {
    Impl& s = *impl_;
    if (s.peers.empty()) return base::make_error("signaling peers are off");
    const auto& sip = pipeline_.config().sip_udp_ports;
    if (s.fd_by_port[local_port] < 0 || std::find(sip.begin(), sip.end(), local_port) == sip.end())
        return base::make_error("port " + std::to_string(local_port) + " is not a SIP listener's");
    std::size_t slot = s.peers.size();
    for (std::size_t i = 0; i < s.peers.size(); ++i) {
        const auto& p = s.peers[i];
        if (p.fd >= 0 && p.port == local_port && p.peer == peer) return {};
        if (p.fd < 0 && slot == s.peers.size()) slot = i;
    }
    if (slot == s.peers.size()) {  // all taken: the oldest makes room
        slot = s.peer_cursor;
        s.peer_cursor = (s.peer_cursor + 1) % s.peers.size();
        close_signaling_peer(slot);
    }
    sockaddr_storage local, to;
    const socklen_t local_len = base::to_sockaddr(s.local_by_port[local_port], local);
    const socklen_t to_len = base::to_sockaddr(peer, to);
    if (local.ss_family != to.ss_family)
        return base::make_error("peer " + peer.to_string() + ": not the listener's family");
    const int fd = ::socket(local.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return base::make_error(std::string("socket: ") + std::strerror(errno));
    const int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&local), local_len) != 0 ||
        ::connect(fd, reinterpret_cast<sockaddr*>(&to), to_len) != 0) {
        const int e = errno;
        ::close(fd);
        return base::make_error("peer " + peer.to_string() + ": " + std::strerror(e));
    }
    auto& p = s.peers[slot];
    p.fd = fd;
    p.port = local_port;
    p.peer = peer;
    bool armed = false;
#if SBC_HAVE_LIBURING
    if (io_ == SocketIo::uring) armed = s.arm_peer(static_cast<std::uint32_t>(slot));
#endif
    if (io_ == SocketIo::mmsg) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u32 = kEpollPeer + static_cast<std::uint32_t>(slot);
        armed = epoll_ctl(s.epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
    }
    ++s.peers_open;
    if (!armed) {
        close_signaling_peer(slot);
        return base::make_error("peer " + peer.to_string() + ": cannot watch its socket");
    }
    return {};
}

base::Result<void> SocketRelay::close_stream(StreamId id) {
    const StreamSpec* spec = pipeline_.media().spec(id);
    if (!spec) return base::make_error("no such stream");
    for (const LegSpec* leg : {&spec->a, &spec->b}) {
        for (unsigned k = 0; k < (spec->rtcp_mux ? 1u : 2u); ++k) {
            const std::uint16_t p = static_cast<std::uint16_t>(leg->local.port + k);
            if (impl_->fd_by_port[p] >= 0) {
                unwatch(p);
                --sockets_open_;
            }
        }
    }
    return pipeline_.media().remove(id);
}

std::size_t SocketRelay::poll_once(int timeout_ms, const base::Clock& clock) {
    std::size_t handled = 0;
    if (io_ == SocketIo::uring)
        handled = poll_uring(timeout_ms, clock);
    else if (impl_->epfd >= 0)
        handled = poll_mmsg(timeout_ms, clock);
    // Inactivity checks are not per packet: every 10 ms at most.
    const base::Nanos now = clock.monotonic();
    if (now - last_media_poll_ >= base::millis(10)) {
        pipeline_.media().poll(now);
        last_media_poll_ = now;
    }
    return handled;
}

}  // namespace sbc::dataplane
