// socket backend: media relay over kernel UDP sockets. One socket per local media port (RTP,
// and RTCP on port+1 unless rtcp-mux), readiness from epoll, bursts in and out with
// recvmmsg/sendmmsg. The packets are relayed from the receive buffers (no copy).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "dataplane/dataplane.hpp"

namespace sbc::dataplane {

namespace {
constexpr std::size_t kBufSize = 2048;  // RTP fits; larger datagrams are cut (MSG_TRUNC: dropped)
constexpr int kMaxEvents = 64;
constexpr int kMaxBurstsPerSocket = 4;  // fairness between busy sockets

socklen_t to_sockaddr(const base::Endpoint& e, sockaddr_storage& ss) {
    std::memset(&ss, 0, sizeof ss);
    if (e.addr.is_v4()) {
        auto* s = reinterpret_cast<sockaddr_in*>(&ss);
        s->sin_family = AF_INET;
        s->sin_port = htons(e.port);
        std::memcpy(&s->sin_addr, e.addr.bytes().data() + 12, 4);
        return sizeof(sockaddr_in);
    }
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(e.port);
    std::memcpy(&s->sin6_addr, e.addr.bytes().data(), 16);
    return sizeof(sockaddr_in6);
}

void from_sockaddr(const sockaddr_storage& ss, base::IpAddress& a, std::uint16_t& port) {
    if (ss.ss_family == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
        a = base::IpAddress::v4_bytes(reinterpret_cast<const std::uint8_t*>(&s->sin_addr));
        port = ntohs(s->sin_port);
    } else {
        const auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
        a = base::IpAddress::v6(reinterpret_cast<const std::uint8_t*>(&s->sin6_addr));
        port = ntohs(s->sin6_port);
    }
}
}  // namespace

struct SocketRelay::Impl {
    int epfd = -1;
    std::vector<int> fd_by_port = std::vector<int>(65536, -1);
    std::vector<base::Endpoint> local_by_port = std::vector<base::Endpoint>(65536);
    std::vector<std::uint8_t> bufs = std::vector<std::uint8_t>(std::size_t{kBurst} * kBufSize);
    std::array<mmsghdr, kBurst> rx{};
    std::array<iovec, kBurst> rx_iov{};
    std::array<sockaddr_storage, kBurst> rx_names{};
    std::array<mmsghdr, kBurst> tx{};
    std::array<iovec, kBurst> tx_iov{};
    std::array<sockaddr_storage, kBurst> tx_names{};
    std::array<int, kBurst> tx_fd{};
    std::array<PacketMeta, kBurst> meta{};
    std::array<Decision, kBurst> decisions{};
};

SocketRelay::SocketRelay(Pipeline& pipeline)
    : pipeline_(pipeline), impl_(std::make_unique<Impl>()) {
    impl_->epfd = epoll_create1(EPOLL_CLOEXEC);
}

SocketRelay::~SocketRelay() {
    for (int fd : impl_->fd_by_port)
        if (fd >= 0) ::close(fd);
    if (impl_->epfd >= 0) ::close(impl_->epfd);
}

base::Result<StreamId> SocketRelay::open_stream(const StreamSpec& spec, base::Nanos now) {
    if (impl_->epfd < 0) return base::make_error("epoll unavailable");
    auto id = pipeline_.media().create(spec, now);
    if (!id) return id;
    std::vector<std::uint16_t> opened;
    auto fail = [&](const std::string& why) -> base::Result<StreamId> {
        for (auto p : opened) {
            ::close(impl_->fd_by_port[p]);
            impl_->fd_by_port[p] = -1;
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
            const socklen_t len = to_sockaddr(local, ss);
            const int fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) return fail(std::string("socket: ") + std::strerror(errno));
            if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
                const int e = errno;
                ::close(fd);
                return fail("bind " + local.to_string() + ": " + std::strerror(e));
            }
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.u32 = local.port;
            if (epoll_ctl(impl_->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
                ::close(fd);
                return fail(std::string("epoll_ctl: ") + std::strerror(errno));
            }
            impl_->fd_by_port[local.port] = fd;
            impl_->local_by_port[local.port] = local;
            opened.push_back(local.port);
            ++sockets_open_;
        }
    }
    return id;
}

base::Result<void> SocketRelay::open_signaling(const base::Endpoint& local,
                                               SignalingHandler handler, void* ctx) {
    if (impl_->fd_by_port[local.port] >= 0) return base::make_error("port already open");
    const auto& sip = pipeline_.config().sip_udp_ports;
    if (std::find(sip.begin(), sip.end(), local.port) == sip.end())
        return base::make_error("port " + std::to_string(local.port) +
                                " is not a configured SIP UDP port");
    sockaddr_storage ss;
    const socklen_t len = to_sockaddr(local, ss);
    const int fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return base::make_error(std::string("socket: ") + std::strerror(errno));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        const int e = errno;
        ::close(fd);
        return base::make_error("bind " + local.to_string() + ": " + std::strerror(e));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = local.port;
    if (epoll_ctl(impl_->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ::close(fd);
        return base::make_error(std::string("epoll_ctl: ") + std::strerror(errno));
    }
    impl_->fd_by_port[local.port] = fd;
    impl_->local_by_port[local.port] = local;
    ++sockets_open_;
    signaling_handler_ = handler;
    signaling_ctx_ = ctx;
    return {};
}

base::Result<void> SocketRelay::close_stream(StreamId id) {
    const StreamSpec* spec = pipeline_.media().spec(id);
    if (!spec) return base::make_error("no such stream");
    for (const LegSpec* leg : {&spec->a, &spec->b}) {
        for (unsigned k = 0; k < (spec->rtcp_mux ? 1u : 2u); ++k) {
            const std::uint16_t p = static_cast<std::uint16_t>(leg->local.port + k);
            if (impl_->fd_by_port[p] >= 0) {
                ::close(impl_->fd_by_port[p]);  // also leaves the epoll set
                impl_->fd_by_port[p] = -1;
                --sockets_open_;
            }
        }
    }
    return pipeline_.media().remove(id);
}

std::size_t SocketRelay::poll_once(int timeout_ms, const base::Clock& clock) {
    Impl& s = *impl_;
    epoll_event events[kMaxEvents];
    const int ready = epoll_wait(s.epfd, events, kMaxEvents, timeout_ms);
    std::size_t handled = 0;
    for (int e = 0; e < ready; ++e) {
        const std::uint16_t port = static_cast<std::uint16_t>(events[e].data.u32);
        const int fd = s.fd_by_port[port];
        if (fd < 0) continue;
        for (int round = 0; round < kMaxBurstsPerSocket; ++round) {
            // Stage 1: receive a burst.
            for (unsigned i = 0; i < kBurst; ++i) {
                s.rx_iov[i] = iovec{&s.bufs[i * kBufSize], kBufSize};
                s.rx[i].msg_hdr = msghdr{};
                s.rx[i].msg_hdr.msg_iov = &s.rx_iov[i];
                s.rx[i].msg_hdr.msg_iovlen = 1;
                s.rx[i].msg_hdr.msg_name = &s.rx_names[i];
                s.rx[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
            }
            const int n = recvmmsg(fd, s.rx.data(), kBurst, MSG_DONTWAIT, nullptr);
            if (n <= 0) break;
            const base::Nanos now = clock.monotonic();
            // Stage 2: what the kernel stripped, as pipeline metadata.
            const base::Endpoint& local = s.local_by_port[port];
            for (int i = 0; i < n; ++i) {
                PacketMeta& m = s.meta[i];
                m = PacketMeta{};
                from_sockaddr(s.rx_names[i], m.src, m.src_port);
                m.dst = local.addr;
                m.dst_port = port;
                m.l4_proto = 17;
                m.payload = &s.bufs[i * kBufSize];
                m.payload_len = static_cast<std::uint16_t>(s.rx[i].msg_len);
                if (!m.src.is_v4()) m.flags |= kFlagV6;
                s.decisions[i] = Decision{};
                if (s.rx[i].msg_hdr.msg_flags & MSG_TRUNC)
                    s.decisions[i] =
                        Decision{Action::drop, DropReason::truncated, 0, TrafficClass::other};
            }
            // Stage 3: bans, limits, relay lookup, latching.
            pipeline_.decide(std::span<const PacketMeta>(s.meta.data(), n),
                             std::span<Decision>(s.decisions.data(), n), now);
            // Stage 4: hand admitted SIP to signaling; send what is relayed, batched per
            // egress socket.
            unsigned t = 0;
            for (int i = 0; i < n; ++i) {
                if (s.decisions[i].action == Action::to_signaling && signaling_handler_)
                    signaling_handler_(s.meta[i], signaling_ctx_);
                if (s.decisions[i].action != Action::relay) continue;
                const auto& fwd = pipeline_.forward_of(s.decisions[i]);
                const int out = s.fd_by_port[fwd.from_local.port];
                if (out < 0) {
                    pipeline_.counters().drops.add(DropReason::tx_failed);
                    ++tx_errors_;
                    continue;
                }
                s.tx_iov[t] = iovec{&s.bufs[i * kBufSize], s.rx[i].msg_len};
                s.tx[t].msg_hdr = msghdr{};
                s.tx[t].msg_hdr.msg_iov = &s.tx_iov[t];
                s.tx[t].msg_hdr.msg_iovlen = 1;
                s.tx[t].msg_hdr.msg_name = &s.tx_names[t];
                s.tx[t].msg_hdr.msg_namelen = to_sockaddr(fwd.to_peer, s.tx_names[t]);
                s.tx_fd[t] = out;
                ++t;
            }
            for (unsigned a = 0; a < t;) {
                unsigned b = a + 1;
                while (b < t && s.tx_fd[b] == s.tx_fd[a]) ++b;
                unsigned sent = 0;
                while (sent < b - a) {
                    const int r = sendmmsg(s.tx_fd[a], &s.tx[a + sent], b - a - sent, MSG_DONTWAIT);
                    if (r <= 0) {
                        // A full socket buffer or an unreachable peer: count and drop the rest.
                        const unsigned lost = b - a - sent;
                        pipeline_.counters().drops.add(DropReason::tx_failed, lost);
                        tx_errors_ += lost;
                        break;
                    }
                    sent += static_cast<unsigned>(r);
                }
                a = b;
            }
            handled += static_cast<std::size_t>(n);
            if (n < static_cast<int>(kBurst)) break;
        }
    }
    // Inactivity checks are not per packet: every 10 ms at most.
    const base::Nanos now = clock.monotonic();
    if (now - last_media_poll_ >= base::millis(10)) {
        pipeline_.media().poll(now);
        last_media_poll_ = now;
    }
    return handled;
}

}  // namespace sbc::dataplane
