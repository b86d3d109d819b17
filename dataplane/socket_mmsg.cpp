// socket backend, recvmmsg engine: readiness from epoll, bursts in and out with
// recvmmsg/sendmmsg per socket (see socket_backend.cpp for the design).
#include "dataplane/socket_relay_impl.hpp"

namespace sbc::dataplane {

std::size_t SocketRelay::poll_mmsg(int timeout_ms, const base::Clock& clock) {
    Impl& s = *impl_;
    epoll_event events[kMaxEvents];
    const int ready = epoll_wait(s.epfd, events, kMaxEvents, timeout_ms);
    std::size_t handled = 0;
    for (int e = 0; e < ready; ++e) {
        if (events[e].data.u32 == kEpollWake) {  // another thread handed work over
            take_wake();
            continue;
        }
        const std::uint32_t key = events[e].data.u32;
        std::uint16_t port = static_cast<std::uint16_t>(key);
        int fd = -1;
        if (key >= kEpollPeer) {  // a protected signaling peer's socket
            const std::uint32_t slot = key - kEpollPeer;
            if (slot >= s.peers.size()) continue;
            fd = s.peers[slot].fd;
            port = s.peers[slot].port;
        } else {
            fd = s.fd_by_port[port];
        }
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
                datagram_meta(s.rx_names[i], local, &s.bufs[i * kBufSize], s.rx[i].msg_len,
                              s.rx[i].msg_hdr.msg_flags & MSG_TRUNC, s.meta[i], s.decisions[i]);
                if (key >= kEpollPeer) s.meta[i].flags |= kFlagKnownPeer;
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
                s.tx[t].msg_hdr.msg_namelen = base::to_sockaddr(fwd.to_peer, s.tx_names[t]);
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
