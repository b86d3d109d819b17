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
// that the source address is ours and a copy of the msghdr per packet (~12% of the relay core's
// time at 260 kpps); a connected socket keeps its route and takes a plain send. A media port
// cannot simply be connected: it would stop receiving from anyone but that peer, and a NAT
// rebinding (a new source address, RFC 4787 section 4.3) must still reach the pipeline to be
// re-latched. So the port's own socket stays unconnected and a twin joins it (SO_REUSEPORT,
// same address and port) connected to the peer: the kernel delivers the peer's datagrams to the
// connected twin (an exact 4-tuple match outranks the wildcard), everyone else's to the port's
// socket, and both feed the same pipeline. When the peer changes (re-latch), the twin is
// re-connected (at most once a second per port). Twins need file descriptors, and media ports
// come first: a twin is only opened while the relay's sockets stay twin_fd_reserve() below the
// open-file limit, and a new media port that finds the limit reached closes twins to make room
// (their ports send unconnected again). So the stream capacity is what it was without twins.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "dataplane/dataplane.hpp"

#if SBC_HAVE_LIBURING
#include <liburing.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <cstdio>
#endif

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

// A received datagram as pipeline metadata: the kernel stripped the headers, so the addresses
// and ports come from the socket (source) and the port it arrived on (destination).
void datagram_meta(const sockaddr_storage& src, const base::Endpoint& local,
                   const std::uint8_t* payload, std::size_t len, bool truncated, PacketMeta& m,
                   Decision& d) {
    m = PacketMeta{};
    from_sockaddr(src, m.src, m.src_port);
    m.dst = local.addr;
    m.dst_port = local.port;
    m.l4_proto = 17;
    m.payload = payload;
    m.payload_len = static_cast<std::uint16_t>(len);
    if (!m.src.is_v4()) m.flags |= kFlagV6;
    d = truncated ? Decision{Action::drop, DropReason::truncated, 0, TrafficClass::other}
                  : Decision{};
}
}  // namespace

#if SBC_HAVE_LIBURING
namespace {
constexpr std::uint16_t kBufGroup = 0;
constexpr unsigned kSqEntries = 256;
enum : std::uint64_t { kTagRecv = 1, kTagSend = 2, kTagCancel = 3, kTagRecvTwin = 4 };
// Below the open-file limit kept free of twins (signaling, TLS, control and new streams): an
// eighth of the limit, at most 1024.
std::uint64_t twin_fd_reserve(std::uint64_t limit) {
    return std::min<std::uint64_t>(1024, limit / 8);
}
constexpr base::Nanos kTwinReconnectGap = 1'000'000'000;
// user_data: kind (8 bits) | generation of the port's socket (24 bits) | port or buffer id.
std::uint64_t tag(std::uint64_t kind, std::uint32_t gen, std::uint32_t value) {
    return kind << 56 | (std::uint64_t{gen & 0xffffffu} << 32) | value;
}
}  // namespace
#endif

struct SocketRelay::Impl {
    int epfd = -1;
    std::vector<int> fd_by_port = std::vector<int>(65536, -1);
    std::vector<base::Endpoint> local_by_port = std::vector<base::Endpoint>(65536);
    std::vector<std::uint8_t> bufs;
    std::array<mmsghdr, kBurst> rx{};
    std::array<iovec, kBurst> rx_iov{};
    std::array<sockaddr_storage, kBurst> rx_names{};
    std::array<mmsghdr, kBurst> tx{};
    std::array<iovec, kBurst> tx_iov{};
    std::array<sockaddr_storage, kBurst> tx_names{};
    std::array<int, kBurst> tx_fd{};
    std::array<PacketMeta, kBurst> meta{};
    std::array<Decision, kBurst> decisions{};
    std::string io_error;  // why the requested mode is not available

#if SBC_HAVE_LIBURING
    bool ring_up = false;
    io_uring ring{};
    io_uring_buf_ring* br = nullptr;
    std::size_t br_bytes = 0;
    unsigned nbufs = 0;
    int mask = 0;
    unsigned returned = 0;  // buffers added to the ring, not yet published
    // Per buffer id: the sendmsg that relays the packet it holds.
    std::vector<msghdr> send_msg;
    std::vector<iovec> send_iov;
    std::vector<sockaddr_storage> send_name;
    msghdr recv_layout{};  // multishot recvmsg: room for the source address, no control data
    std::vector<std::uint32_t> gen_by_port = std::vector<std::uint32_t>(65536, 0);
    std::vector<std::uint32_t> rearm;  // port, | kRearmTwin for the port's twin
    static constexpr std::uint32_t kRearmTwin = 1u << 16;
    // Connected egress (see the top of the file), per local port.
    struct Twin {
        int fd = -1;
        bool tried = false;       // `changed` is set
        std::uint32_t gen = 0;    // generation of its receive, as gen_by_port
        base::Nanos changed = 0;  // last open, re-connect or failed attempt
        base::Endpoint peer;      // what it is connected to
    };
    bool twins_enabled = false;
    std::vector<Twin> twins;
    std::size_t twins_open = 0;
    std::uint16_t shed_cursor = 0;
    std::uint64_t fd_limit = 0;  // RLIMIT_NOFILE when the relay started
    std::array<std::uint16_t, kBurst> burst_bid{};

    bool start_uring(unsigned buffers) {
        // Multishot recvmsg (IORING_RECV_MULTISHOT) came with Linux 6.0; an older kernel
        // that has io_uring and buffer rings would fail every receive, so it gets the
        // recvmmsg mode instead.
        utsname u{};
        int major = 0, minor = 0;
        if (uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2 || major < 6) {
            io_error = std::string("kernel ") + u.release + " lacks multishot recvmsg (needs 6.0)";
            return false;
        }
        unsigned n = 1;
        while (n < buffers && n < 32768) n <<= 1;
        io_uring_params p{};
        p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
        p.cq_entries = std::max(4 * n, 1024u);
        int r = io_uring_queue_init_params(kSqEntries, &ring, &p);
        if (r < 0) {
            p = io_uring_params{};
            p.flags = IORING_SETUP_CQSIZE;
            p.cq_entries = std::max(4 * n, 1024u);
            r = io_uring_queue_init_params(kSqEntries, &ring, &p);
        }
        if (r < 0) {
            io_error = std::string("io_uring_queue_init: ") + std::strerror(-r);
            return false;
        }
        const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        br_bytes = (n * sizeof(io_uring_buf) + page - 1) / page * page;
        void* mem =
            mmap(nullptr, br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
            io_error = std::string("mmap: ") + std::strerror(errno);
            io_uring_queue_exit(&ring);
            return false;
        }
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
        reg.ring_entries = n;
        reg.bgid = kBufGroup;
        r = io_uring_register_buf_ring(&ring, &reg, 0);
        if (r != 0) {
            io_error = std::string("io_uring_register_buf_ring: ") + std::strerror(-r);
            munmap(mem, br_bytes);
            io_uring_queue_exit(&ring);
            return false;
        }
        br = static_cast<io_uring_buf_ring*>(mem);
        io_uring_buf_ring_init(br);
        nbufs = n;
        mask = io_uring_buf_ring_mask(n);
        bufs.assign(std::size_t{n} * kBufSize, 0);
        send_msg.assign(n, msghdr{});
        send_iov.assign(n, iovec{});
        send_name.assign(n, sockaddr_storage{});
        for (unsigned b = 0; b < n; ++b) give_back(static_cast<std::uint16_t>(b));
        publish();
        recv_layout.msg_namelen = sizeof(sockaddr_in6);
        ring_up = true;
        return true;
    }
    void give_back(std::uint16_t bid) {
        io_uring_buf_ring_add(br, &bufs[std::size_t{bid} * kBufSize], kBufSize, bid, mask,
                              static_cast<int>(returned++));
    }
    void publish() {
        if (returned == 0) return;
        io_uring_buf_ring_advance(br, static_cast<int>(returned));
        returned = 0;
    }
    // An SQE, submitting what is queued if the submission queue is full.
    io_uring_sqe* sqe() {
        io_uring_sqe* e = io_uring_get_sqe(&ring);
        if (!e) {
            io_uring_submit(&ring);
            e = io_uring_get_sqe(&ring);
        }
        return e;
    }
    bool arm(std::uint16_t port, bool twin = false) {
        io_uring_sqe* e = sqe();
        if (!e) return false;
        io_uring_prep_recvmsg_multishot(e, twin ? twins[port].fd : fd_by_port[port], &recv_layout,
                                        0);
        e->flags |= IOSQE_BUFFER_SELECT;
        e->buf_group = kBufGroup;
        io_uring_sqe_set_data64(e, twin ? tag(kTagRecvTwin, twins[port].gen, port)
                                        : tag(kTagRecv, gen_by_port[port], port));
        return true;
    }
    // Opens port's twin connected to `peer`, or re-connects it; false if there is none (yet).
    // Syscalls, so at most once per kTwinReconnectGap per port, whatever the outcome.
    bool join_twin(std::uint16_t port, const base::Endpoint& peer, std::size_t sockets_open,
                   base::Nanos now) {
        Twin& t = twins[port];
        if (t.tried && now - t.changed < kTwinReconnectGap) return false;
        t.tried = true;
        t.changed = now;
        sockaddr_storage to;
        const socklen_t to_len = to_sockaddr(peer, to);
        if (t.fd >= 0) {
            // Sends still queued through the twin are for the old peer: issue them first (a
            // UDP send completes inline unless its socket buffer is full).
            io_uring_submit(&ring);
            if (::connect(t.fd, reinterpret_cast<sockaddr*>(&to), to_len) != 0) return false;
            t.peer = peer;
            return true;
        }
        if (sockets_open + twins_open + twin_fd_reserve(fd_limit) >= fd_limit) return false;
        sockaddr_storage local;
        const socklen_t local_len = to_sockaddr(local_by_port[port], local);
        if (local.ss_family != to.ss_family) return false;
        const int fd = ::socket(local.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return false;
        const int one = 1;
        if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
            ::bind(fd, reinterpret_cast<sockaddr*>(&local), local_len) != 0 ||
            ::connect(fd, reinterpret_cast<sockaddr*>(&to), to_len) != 0) {
            ::close(fd);
            return false;
        }
        t.fd = fd;
        t.peer = peer;
        if (!arm(port, true)) {
            ::close(fd);
            t.fd = -1;
            return false;
        }
        ++twins_open;
        return true;
    }
    // Frees descriptors for new media ports: closes up to `n` twins (their ports send
    // unconnected again). Returns how many it closed.
    std::size_t shed_twins(std::size_t n) {
        std::size_t shed = 0;
        for (std::size_t k = 0; k < twins.size() && shed < n && twins_open > 0; ++k) {
            shed_cursor = static_cast<std::uint16_t>(shed_cursor + 1);
            if (twins[shed_cursor].fd < 0) continue;
            close_twin(shed_cursor);
            ++shed;
        }
        return shed;
    }
    void close_twin(std::uint16_t port) {
        Twin& t = twins[port];
        if (t.fd < 0) return;
        if (io_uring_sqe* e = sqe()) {
            io_uring_prep_cancel64(e, tag(kTagRecvTwin, t.gen, port), 0);
            io_uring_sqe_set_data64(e, tag(kTagCancel, 0, 0));
        }
        ++t.gen;
        io_uring_submit(&ring);
        ::close(t.fd);
        const std::uint32_t gen = t.gen;
        t = Twin{};
        t.gen = gen;
        --twins_open;
    }
    // Stops the port's receive; its socket may be closed after this (queued sends go first).
    void disarm(std::uint16_t port) {
        if (io_uring_sqe* e = sqe()) {
            io_uring_prep_cancel64(e, tag(kTagRecv, gen_by_port[port], port), 0);
            io_uring_sqe_set_data64(e, tag(kTagCancel, 0, 0));
        }
        ++gen_by_port[port];
        io_uring_submit(&ring);
    }
    void stop_uring() {
        if (!ring_up) return;
        // The ring's own teardown runs later in a kernel worker and keeps the sockets (and their
        // ports) until then: cancel the receives now so that closing the sockets frees the ports.
        for (std::size_t p = 0; p < fd_by_port.size(); ++p) {
            if (!twins.empty()) close_twin(static_cast<std::uint16_t>(p));
            if (fd_by_port[p] >= 0) disarm(static_cast<std::uint16_t>(p));
        }
        io_uring_queue_exit(&ring);
        munmap(br, br_bytes);
        ring_up = false;
    }
#endif
};

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
    if (io_ == SocketIo::mmsg) {
        impl_->bufs.assign(std::size_t{kBurst} * kBufSize, 0);
        impl_->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (impl_->epfd < 0) impl_->io_error = std::string("epoll: ") + std::strerror(errno);
    }
}

SocketRelay::~SocketRelay() {
#if SBC_HAVE_LIBURING
    impl_->stop_uring();  // drops the kernel's references to the sockets
#endif
    for (int fd : impl_->fd_by_port)
        if (fd >= 0) ::close(fd);
    if (impl_->epfd >= 0) ::close(impl_->epfd);
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
            const socklen_t len = to_sockaddr(local, ss);
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

std::size_t SocketRelay::poll_uring([[maybe_unused]] int timeout_ms,
                                    [[maybe_unused]] const base::Clock& clock) {
#if SBC_HAVE_LIBURING
    Impl& s = *impl_;
    for (std::uint32_t r : s.rearm) {
        const auto port = static_cast<std::uint16_t>(r);
        if (r & Impl::kRearmTwin) {
            if (s.twins[port].fd >= 0) s.arm(port, true);
        } else if (s.fd_by_port[port] >= 0) {
            s.arm(port);
        }
    }
    s.rearm.clear();
    // Stage 1: the sends queued by the last poll and any re-arms go to the kernel with the wait.
    io_uring_cqe* first = nullptr;
    __kernel_timespec ts{timeout_ms / 1000, static_cast<long long>(timeout_ms % 1000) * 1000000};
    io_uring_submit_and_wait_timeout(&s.ring, &first, 1, timeout_ms < 0 ? nullptr : &ts, nullptr);
    // Stage 2: reap completions across all sockets: finished sends give their buffer back,
    // received datagrams join the burst.
    unsigned n = 0, seen = 0, head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&s.ring, head, cqe) {
        if (n == kBurst) break;
        ++seen;
        const std::uint64_t ud = io_uring_cqe_get_data64(cqe);
        const std::uint64_t kind = ud >> 56;
        const std::uint32_t value = static_cast<std::uint32_t>(ud);
        if (kind == kTagSend) {
            if (cqe->res < 0) {
                pipeline_.counters().drops.add(DropReason::tx_failed);
                ++tx_errors_;
            }
            s.give_back(static_cast<std::uint16_t>(value));
            continue;
        }
        if (kind != kTagRecv && kind != kTagRecvTwin) continue;
        const std::uint16_t port = static_cast<std::uint16_t>(value);
        const bool twin = kind == kTagRecvTwin;
        const bool live = twin ? s.twins[port].fd >= 0 &&
                                     ((ud >> 32) & 0xffffffu) == (s.twins[port].gen & 0xffffffu)
                               : s.fd_by_port[port] >= 0 &&
                                     ((ud >> 32) & 0xffffffu) == (s.gen_by_port[port] & 0xffffffu);
        if (!(cqe->flags & IORING_CQE_F_MORE) && live) {
            if (cqe->res == -ENOBUFS) ++rx_buffer_shortages_;
            // A connected socket also reports its peer's ICMP errors (ECONNREFUSED...) on the
            // receive, which ends the multishot: a twin is re-armed whatever the error.
            if (cqe->res >= 0 || cqe->res == -ENOBUFS || cqe->res == -EINTR ||
                cqe->res == -EAGAIN || (twin && cqe->res != -ECANCELED))
                s.rearm.push_back(port | (twin ? Impl::kRearmTwin : 0u));
        }
        if (cqe->res < 0 || !(cqe->flags & IORING_CQE_F_BUFFER)) continue;
        const auto bid = static_cast<std::uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        std::uint8_t* buf = &s.bufs[std::size_t{bid} * kBufSize];
        io_uring_recvmsg_out* out = io_uring_recvmsg_validate(buf, cqe->res, &s.recv_layout);
        if (!live || !out) {
            s.give_back(bid);
            continue;
        }
        sockaddr_storage src{};
        std::memcpy(&src, io_uring_recvmsg_name(out),
                    std::min<std::size_t>(out->namelen, sizeof(sockaddr_in6)));
        datagram_meta(
            src, s.local_by_port[port],
            static_cast<const std::uint8_t*>(io_uring_recvmsg_payload(out, &s.recv_layout)),
            io_uring_recvmsg_payload_length(out, cqe->res, &s.recv_layout), out->flags & MSG_TRUNC,
            s.meta[n], s.decisions[n]);
        s.burst_bid[n] = bid;
        ++n;
    }
    io_uring_cq_advance(&s.ring, seen);
    if (n > 0) {
        // Stage 3: bans, limits, relay lookup, latching, once for the whole burst.
        const base::Nanos now = clock.monotonic();
        pipeline_.decide(std::span<const PacketMeta>(s.meta.data(), n),
                         std::span<Decision>(s.decisions.data(), n), now);
        // Stage 4: admitted SIP to signaling; one sendmsg per relayed packet from its receive
        // buffer (submitted with the next wait); every other buffer goes straight back.
        for (unsigned i = 0; i < n; ++i) {
            const std::uint16_t bid = s.burst_bid[i];
            if (s.decisions[i].action == Action::to_signaling && signaling_handler_)
                signaling_handler_(s.meta[i], signaling_ctx_);
            if (s.decisions[i].action != Action::relay) {
                s.give_back(bid);
                continue;
            }
            const auto& fwd = pipeline_.forward_of(s.decisions[i]);
            const std::uint16_t from = fwd.from_local.port;
            const int out = s.fd_by_port[from];
            // Whether the twin carries it is settled before this packet's SQE is taken:
            // join_twin may submit (queued sends, its receive's arming), which must never see
            // an SQE that is taken but not yet prepared.
            const bool connected = out >= 0 && s.twins_enabled &&
                                   ((s.twins[from].fd >= 0 && s.twins[from].peer == fwd.to_peer) ||
                                    s.join_twin(from, fwd.to_peer, sockets_open_, now));
            io_uring_sqe* e = out >= 0 ? s.sqe() : nullptr;
            if (!e) {
                pipeline_.counters().drops.add(DropReason::tx_failed);
                ++tx_errors_;
                s.give_back(bid);
                continue;
            }
            if (connected) {
                io_uring_prep_send(e, s.twins[from].fd, s.meta[i].payload, s.meta[i].payload_len,
                                   MSG_DONTWAIT);
                io_uring_sqe_set_data64(e, tag(kTagSend, 0, bid));
                ++connected_sends_;
                continue;
            }
            s.send_iov[bid] =
                iovec{const_cast<std::uint8_t*>(s.meta[i].payload), s.meta[i].payload_len};
            msghdr& h = s.send_msg[bid];
            h = msghdr{};
            h.msg_name = &s.send_name[bid];
            h.msg_namelen = to_sockaddr(fwd.to_peer, s.send_name[bid]);
            h.msg_iov = &s.send_iov[bid];
            h.msg_iovlen = 1;
            io_uring_prep_sendmsg(e, out, &h, MSG_DONTWAIT);
            io_uring_sqe_set_data64(e, tag(kTagSend, 0, bid));
        }
    }
    s.publish();
    return n;
#else
    return 0;
#endif
}

std::size_t SocketRelay::poll_mmsg(int timeout_ms, const base::Clock& clock) {
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
            for (int i = 0; i < n; ++i)
                datagram_meta(s.rx_names[i], local, &s.bufs[i * kBufSize], s.rx[i].msg_len,
                              s.rx[i].msg_hdr.msg_flags & MSG_TRUNC, s.meta[i], s.decisions[i]);
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
    return handled;
}

}  // namespace sbc::dataplane
