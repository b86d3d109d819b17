#pragma once
// Internal to dataplane/'s socket backend: the state shared by its two I/O engines
// (socket_uring.cpp, socket_mmsg.cpp) and the code common to both (socket_backend.cpp).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "base/sockaddr.hpp"
#include "dataplane/media.hpp"
#include "dataplane/socket_backend.hpp"

#if SBC_HAVE_LIBURING
#include <liburing.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <cstdio>
#endif

namespace sbc::dataplane {

constexpr std::size_t kBufSize = 2048;  // RTP fits; larger datagrams are cut (MSG_TRUNC: dropped)
constexpr int kMaxEvents = 64;
constexpr int kMaxBurstsPerSocket = 4;  // fairness between busy sockets

// A received datagram as pipeline metadata: the kernel stripped the headers, so the addresses
// and ports come from the socket (source) and the port it arrived on (destination).
inline void datagram_meta(const sockaddr_storage& src, const base::Endpoint& local,
                          const std::uint8_t* payload, std::size_t len, bool truncated,
                          PacketMeta& m, Decision& d) {
    m = PacketMeta{};
    // Our sockets are AF_INET/AF_INET6; a name the kernel left empty stays [::]:0.
    if (const auto from = base::from_sockaddr(src)) {
        m.src = from->addr;
        m.src_port = from->port;
    }
    m.dst = local.addr;
    m.dst_port = local.port;
    m.l4_proto = 17;
    m.payload = payload;
    m.payload_len = static_cast<std::uint16_t>(len);
    if (!m.src.is_v4()) m.flags |= kFlagV6;
    d = truncated ? Decision{Action::drop, DropReason::truncated, 0, TrafficClass::other}
                  : Decision{};
}

#if SBC_HAVE_LIBURING
constexpr std::uint16_t kBufGroup = 0;
constexpr unsigned kSqEntries = 256;
enum : std::uint64_t {
    kTagRecv = 1,
    kTagSend = 2,
    kTagCancel = 3,
    kTagRecvTwin = 4,
    kTagWake = 5,
    kTagRecvPeer = 6  // a protected signaling peer's socket; value: its slot
};
// Below the open-file limit kept free of twins (signaling, TLS, control and new streams): an
// eighth of the limit, at most 1024.
inline std::uint64_t twin_fd_reserve(std::uint64_t limit) {
    return std::min<std::uint64_t>(1024, limit / 8);
}
constexpr base::Nanos kTwinReconnectGap = 1'000'000'000;
// user_data: kind (8 bits) | generation of the port's socket (24 bits) | port or buffer id.
inline std::uint64_t tag(std::uint64_t kind, std::uint32_t gen, std::uint32_t value) {
    return kind << 56 | (std::uint64_t{gen & 0xffffffu} << 32) | value;
}
#endif

// epoll user data of the wake-up eventfd (sockets carry their port, below 65536).
constexpr std::uint32_t kEpollWake = 1u << 16;
// epoll user data of a protected signaling peer's socket: this plus its slot.
constexpr std::uint32_t kEpollPeer = 1u << 17;

struct SocketRelay::Impl {
    int epfd = -1;
    int wake_fd = -1;  // SocketRelay::wake() writes it; a poll returns when it is readable
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
    // Protected signaling peers (SocketRelay::protect_signaling_peer), fixed slots.
    struct SignalingPeer {
        int fd = -1;
        std::uint16_t port = 0;  // the SIP listener's
        std::uint32_t gen = 0;   // generation of its receive (uring)
        base::Endpoint peer;
    };
    std::vector<SignalingPeer> peers;
    std::size_t peers_open = 0;
    std::size_t peer_cursor = 0;  // the slot taken next when all are in use (oldest first)
    std::array<Decision, kBurst> decisions{};
    std::string io_error;  // why the requested mode is not available

#if SBC_HAVE_LIBURING
    bool ring_up = false;
    // Deferred task running (IORING_SETUP_DEFER_TASKRUN): the kernel receives datagrams into
    // the ring's buffers only while the polling thread waits in io_uring_enter, a burst at a
    // time, never ahead of the relay (see socket_backend.cpp). The ring then belongs to one
    // thread, the first to poll: it is created disabled and enabled there.
    bool deferred = false;
    bool enabled = false;
    std::thread::id issuer;
    bool wake_armed = false;
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
    static constexpr std::uint32_t kRearmPeer = 1u << 17;  // | slot
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
        p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                  IORING_SETUP_R_DISABLED;
        p.cq_entries = std::max(4 * n, 1024u);
        int r = io_uring_queue_init_params(kSqEntries, &ring, &p);
        deferred = r >= 0;
        if (r < 0) {  // before Linux 6.1
            p = io_uring_params{};
            p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
            p.cq_entries = std::max(4 * n, 1024u);
            r = io_uring_queue_init_params(kSqEntries, &ring, &p);
        }
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
        enabled = !deferred;
        issuer = std::this_thread::get_id();
        return true;
    }
    // The first poll: the ring becomes this thread's, and what was opened before is armed.
    bool enable() {
        if (!enabled) {
            // liburing 2.3 declares io_uring_enable_rings but its library lacks it.
            if (::syscall(__NR_io_uring_register, ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                          nullptr, 0) != 0)
                return false;
            enabled = true;
            issuer = std::this_thread::get_id();
        }
        if (!wake_armed && wake_fd >= 0) {
            io_uring_sqe* e = sqe();
            if (!e) return true;
            io_uring_prep_poll_multishot(e, wake_fd, POLLIN);
            io_uring_sqe_set_data64(e, tag(kTagWake, 0, 0));
            wake_armed = true;
        }
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
        if (!e && enabled) {
            io_uring_submit(&ring);
            e = io_uring_get_sqe(&ring);
        }
        return e;
    }
    bool arm(std::uint16_t port, bool twin = false) {
        if (!enabled) {  // armed by the first poll
            rearm.push_back(port | (twin ? kRearmTwin : 0u));
            return true;
        }
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
    bool arm_peer(std::uint32_t slot) {
        if (!enabled) {
            rearm.push_back(slot | kRearmPeer);
            return true;
        }
        io_uring_sqe* e = sqe();
        if (!e) return false;
        io_uring_prep_recvmsg_multishot(e, peers[slot].fd, &recv_layout, 0);
        e->flags |= IOSQE_BUFFER_SELECT;
        e->buf_group = kBufGroup;
        io_uring_sqe_set_data64(e, tag(kTagRecvPeer, peers[slot].gen, slot));
        return true;
    }
    void disarm_peer(std::uint32_t slot) {
        rearm.erase(std::remove(rearm.begin(), rearm.end(), slot | kRearmPeer), rearm.end());
        if (enabled) {
            if (io_uring_sqe* e = sqe()) {
                io_uring_prep_cancel64(e, tag(kTagRecvPeer, peers[slot].gen, slot), 0);
                io_uring_sqe_set_data64(e, tag(kTagCancel, 0, 0));
            }
        }
        ++peers[slot].gen;
        if (enabled) submit_cancels();
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
        const socklen_t to_len = base::to_sockaddr(peer, to);
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
        const socklen_t local_len = base::to_sockaddr(local_by_port[port], local);
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
        submit_cancels();
        ::close(t.fd);
        const std::uint32_t gen = t.gen;
        t = Twin{};
        t.gen = gen;
        --twins_open;
    }
    // Stops the port's receive; its socket may be closed after this (queued sends go first).
    void disarm(std::uint16_t port) {
        // A re-arm still listed (the port's receive ended) must not arm a successor socket twice.
        rearm.erase(std::remove(rearm.begin(), rearm.end(), std::uint32_t{port}), rearm.end());
        if (!enabled) {  // not armed yet, only listed
            ++gen_by_port[port];
            return;
        }
        if (io_uring_sqe* e = sqe()) {
            io_uring_prep_cancel64(e, tag(kTagRecv, gen_by_port[port], port), 0);
            io_uring_sqe_set_data64(e, tag(kTagCancel, 0, 0));
        }
        ++gen_by_port[port];
        submit_cancels();
    }
    // Submits what is queued, cancels included. A cancelled receive lets go of its socket when
    // its completion runs, which a deferred ring does only when asked for events: asked here, so
    // that the socket closed next frees its port at once (it may be reopened right away).
    void submit_cancels() {
        if (deferred)
            io_uring_submit_and_get_events(&ring);
        else
            io_uring_submit(&ring);
    }
    void stop_uring() {
        if (!ring_up) return;
        // The ring's own teardown runs later in a kernel worker and keeps the sockets (and their
        // ports) until then: cancel the receives now so that closing the sockets frees the ports.
        // A deferred ring takes requests only from its polling thread; destroyed from another
        // one, its ports are freed by that teardown, a moment later.
        const bool may_submit = enabled && (!deferred || issuer == std::this_thread::get_id());
        for (std::size_t k = 0; may_submit && k < peers.size(); ++k)
            if (peers[k].fd >= 0) disarm_peer(static_cast<std::uint32_t>(k));
        for (std::size_t p = 0; may_submit && p < fd_by_port.size(); ++p) {
            if (!twins.empty()) close_twin(static_cast<std::uint16_t>(p));
            if (fd_by_port[p] >= 0) disarm(static_cast<std::uint16_t>(p));
        }
        io_uring_queue_exit(&ring);
        munmap(br, br_bytes);
        ring_up = false;
    }
#endif
};

}  // namespace sbc::dataplane
