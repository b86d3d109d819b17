// socket backend, io_uring engine: multishot receives into a provided-buffer ring, one
// io_uring_enter per burst (see socket_backend.cpp for the design).
#include "dataplane/socket_relay_impl.hpp"

namespace sbc::dataplane {

std::size_t SocketRelay::poll_uring([[maybe_unused]] int timeout_ms,
                                    [[maybe_unused]] const base::Clock& clock) {
#if SBC_HAVE_LIBURING
    Impl& s = *impl_;
    if ((!s.enabled || !s.wake_armed) && !s.enable()) return 0;
    for (std::uint32_t r : s.rearm) {
        const auto port = static_cast<std::uint16_t>(r);
        if (r & Impl::kRearmPeer) {
            if (port < s.peers.size() && s.peers[port].fd >= 0) s.arm_peer(port);
        } else if (r & Impl::kRearmTwin) {
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
        if (kind == kTagWake) {  // another thread handed work over
            take_wake();
            if (!(cqe->flags & IORING_CQE_F_MORE)) s.wake_armed = false;  // re-armed next poll
            continue;
        }
        if (kind != kTagRecv && kind != kTagRecvTwin && kind != kTagRecvPeer) continue;
        const bool twin = kind == kTagRecvTwin;
        const bool peer = kind == kTagRecvPeer;  // a protected signaling peer's socket
        const std::uint32_t gen = (ud >> 32) & 0xffffffu;
        std::uint16_t port = static_cast<std::uint16_t>(value);
        bool live = false;
        if (peer) {
            live = value < s.peers.size() && s.peers[value].fd >= 0 &&
                   gen == (s.peers[value].gen & 0xffffffu);
            port = live ? s.peers[value].port : 0;
        } else if (twin) {
            live = s.twins[port].fd >= 0 && gen == (s.twins[port].gen & 0xffffffu);
        } else {
            live = s.fd_by_port[port] >= 0 && gen == (s.gen_by_port[port] & 0xffffffu);
        }
        if (!(cqe->flags & IORING_CQE_F_MORE) && live) {
            if (cqe->res == -ENOBUFS) ++rx_buffer_shortages_;
            // A connected socket also reports its peer's ICMP errors (ECONNREFUSED...) on the
            // receive, which ends the multishot: a twin is re-armed whatever the error.
            if (cqe->res >= 0 || cqe->res == -ENOBUFS || cqe->res == -EINTR ||
                cqe->res == -EAGAIN || ((twin || peer) && cqe->res != -ECANCELED))
                s.rearm.push_back(peer ? (value | Impl::kRearmPeer)
                                       : (port | (twin ? Impl::kRearmTwin : 0u)));
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
        if (peer) s.meta[n].flags |= kFlagKnownPeer;
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
            h.msg_namelen = base::to_sockaddr(fwd.to_peer, s.send_name[bid]);
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

}  // namespace sbc::dataplane
