// The DPDK fast path: one loop on one lcore, each burst walked through named stages:
//
//   rx_burst -> to_frames
//     -> Pipeline::relay_fast -> fast_out  (the common relay case: checked, counted and
//                                            rewritten in one pass; L2 rewrite, tx)
//     -> the rest through the generic pipeline:
//        parse_frames -> Pipeline::decide -> split_by_action
//          -> relay_out       (rewrite in place, tx on the data port: the same mbuf, zero copy)
//          -> kernel_out      (tx on the exception port to the host stack)
//     -> free_drops      (counted by reason)
//   and for each exception port: rx_burst -> from_kernel_out (tx on its data port).
//
// No allocation, locks, logging or virtual calls per packet; what tx does not take is freed
// and counted as tx_full.
#include <rte_ether.h>
#include <rte_lcore.h>

#include <cstring>

#include "dataplane/dpdk/backend_impl.hpp"

namespace sbc::dataplane::dpdk {

namespace {

constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::uint16_t kEtherIpv6 = 0x86DD;
constexpr std::uint16_t kEtherArp = 0x0806;

inline std::uint16_t rd16(const std::uint8_t* p) {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

// The EtherType after any 802.1Q/802.1ad tags, and where its payload starts (0: too short).
std::uint16_t inner_ethertype(const Frame& f, std::uint32_t& l3) {
    std::uint32_t off = 12;
    for (int tags = 0; tags <= 2; ++tags) {
        if (f.len < off + 2) break;
        const std::uint16_t type = rd16(f.data + off);
        if (type != 0x8100 && type != 0x88A8 && type != 0x9100) {
            l3 = off + 2;
            return type;
        }
        off += 4;
    }
    l3 = 0;
    return 0;
}

class Worker {
  public:
    Worker(Backend::Impl& impl, RunResult& result)
        : impl_(impl), pipeline_(*impl.pipeline), burst_(impl.config.burst), result_(result) {}

    // One pass over a port pair; returns the frames received on both ports.
    unsigned poll(const PortPairState& pair, base::Nanos now) {
        unsigned got = 0;
        if (const std::uint16_t n = rte_eth_rx_burst(pair.data, 0, mbufs_, burst_); n > 0) {
            got += n;
            result_.counters.add(BackendCounter::rx, n);
            std::uint16_t rest = to_frames(n, pair.data);
            const RelayL2 l2{pair.data_mac.addr_bytes, impl_.config.next_hop_mac
                                                           ? impl_.config.next_hop_mac->data()
                                                           : nullptr};
            const std::size_t fast =
                pipeline_.relay_fast({frames_, rest}, {fast_, rest}, now, parse_options_, l2);
            if (fast == rest) {  // the whole burst: as it is
                send(pair.data, mbufs_, rest, BackendCounter::relayed);
                rest = 0;
            } else if (fast > 0) {
                rest = fast_out(rest, pair);
            }
            if (rest > 0) {
                parse_frames({frames_, rest}, {meta_, rest}, {decisions_, rest}, parse_options_);
                pipeline_.decide({meta_, rest}, {decisions_, rest}, now);
                split_by_action(rest);
                relay_out(pair);
                kernel_out(pair);
            }
            free_drops();
        }
        if (pair.exception != kNoPort) got += from_kernel_out(pair);
        return got;
    }

  private:
    // Fills frames_ from the burst's mbufs (data pointers, no copy). Multi-segment mbufs are
    // not for the fast path: set aside as drops. Returns the frames kept (compacted).
    std::uint16_t to_frames(std::uint16_t n, std::uint16_t port) {
        std::uint16_t kept = 0;
        // The NIC's checksum flags matter only when UDP checksums are verified at all.
        const bool verify = impl_.config.verify_udp_checksum;
        bool l4_csum_good = true;
        n_drop_ = 0;
        for (std::uint16_t i = 0; i < n; ++i) {
            rte_mbuf* m = mbufs_[i];
            if (m->nb_segs != 1) {
                drop_backend(m, BackendDrop::multi_segment);
                continue;
            }
            if (verify)
                l4_csum_good &=
                    (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD;
            mbufs_[kept] = m;
            // Capacity: from the data to the end of the buffer (data_len + tailroom).
            frames_[kept] = Frame{rte_pktmbuf_mtod(m, std::uint8_t*), m->data_len,
                                  static_cast<std::uint32_t>(m->buf_len - m->data_off), port, 0};
            ++kept;
        }
        // A NIC that verified every UDP checksum of the burst saves parse_frames the work.
        parse_options_.verify_udp_checksum = verify && !l4_csum_good;
        return kept;
    }

    // Sends what relay_fast relayed (rewritten up to L2 as rewrite_l2 would) and moves the
    // other frames, in order, to the front for the generic pipeline. Returns how many are left.
    std::uint16_t fast_out(std::uint16_t n, const PortPairState& pair) {
        std::uint16_t n_tx = 0, rest = 0;
        for (std::uint16_t i = 0; i < n; ++i) {
            if (fast_[i]) {
                tx_[n_tx++] = mbufs_[i];
            } else {
                mbufs_[rest] = mbufs_[i];
                frames_[rest] = frames_[i];
                ++rest;
            }
        }
        send(pair.data, tx_, n_tx, BackendCounter::relayed);
        return rest;
    }

    void split_by_action(std::uint16_t n) {
        n_relay_ = n_kernel_ = 0;
        for (std::uint16_t i = 0; i < n; ++i) {
            const Decision& d = decisions_[i];
            switch (d.action) {
                case Action::relay:
                    relay_idx_[n_relay_++] = i;
                    break;
                case Action::to_signaling:
                case Action::to_kernel:
                    if (addressed_to_us(i))
                        kernel_[n_kernel_++] = mbufs_[i];
                    else
                        drop_backend(mbufs_[i], BackendDrop::not_for_us);
                    break;
                case Action::drop:
                case Action::undecided:
                    result_.pipeline_drops.add(d.reason);
                    drop_[n_drop_++] = mbufs_[i];
                    break;
            }
        }
    }

    // The host stack gets only what it would accept itself: ARP asking for one of our
    // addresses, IP to one of our addresses, and IPv6 link-local multicast (neighbour
    // discovery, RFC 4861 §7.2.1). Anything else would be noise the kernel drops anyway.
    bool addressed_to_us(std::uint16_t i) const {
        if (pipeline_.config().local_addresses.empty()) return true;
        const Frame& f = frames_[i];
        std::uint32_t l3 = 0;
        switch (inner_ethertype(f, l3)) {
            case kEtherArp:
                // RFC 826: Ethernet/IPv4 ARP is 28 bytes; target protocol address at 24.
                return l3 != 0 && f.len >= l3 + 28 &&
                       is_local(base::IpAddress::v4_bytes(f.data + l3 + 24));
            case kEtherIpv4:
                return is_local(meta_[i].dst);
            case kEtherIpv6: {
                // Link-local unicast too: the host's own fe80:: address answers ND.
                const auto& b = meta_[i].dst.bytes();
                return is_local(meta_[i].dst) || (b[0] == 0xff && (b[1] & 0x0f) == 0x02) ||
                       (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
            }
            default:
                return false;
        }
    }

    bool is_local(const base::IpAddress& a) const {
        // The pipeline's current list: a reconfigure command may have changed it.
        for (const auto& l : pipeline_.config().local_addresses)
            if (l == a) return true;
        return false;
    }

    void relay_out(const PortPairState& pair) {
        std::uint16_t n_tx = 0;
        for (std::uint16_t k = 0; k < n_relay_; ++k) {
            const std::uint16_t i = relay_idx_[k];
            if (!Pipeline::rewrite_frame(frames_[i], meta_[i],
                                         pipeline_.forward_of(decisions_[i]))) {
                drop_backend(mbufs_[i], BackendDrop::rewrite_failed);
                continue;
            }
            rewrite_l2(frames_[i].data, pair);
            tx_[n_tx++] = mbufs_[i];
        }
        send(pair.data, tx_, n_tx, BackendCounter::relayed);
    }

    // The relayed frame leaves from our port towards the next hop: the configured one, or
    // the neighbour it came from.
    void rewrite_l2(std::uint8_t* eth, const PortPairState& pair) const {
        if (impl_.config.next_hop_mac)
            std::memcpy(eth, impl_.config.next_hop_mac->data(), 6);
        else
            std::memcpy(eth, eth + 6, 6);
        std::memcpy(eth + 6, pair.data_mac.addr_bytes, 6);
    }

    void kernel_out(const PortPairState& pair) {
        if (pair.exception == kNoPort) {
            for (std::uint16_t k = 0; k < n_kernel_; ++k)
                drop_backend(kernel_[k], BackendDrop::no_exception_port);
            return;
        }
        // Unicast frames are addressed to the host's interface, or its stack ignores them
        // (PACKET_OTHERHOST) when that interface could not take the data port's MAC.
        for (std::uint16_t k = 0; k < n_kernel_; ++k) {
            auto* eth = rte_pktmbuf_mtod(kernel_[k], std::uint8_t*);
            if ((eth[0] & 1) == 0) std::memcpy(eth, pair.exception_mac.addr_bytes, 6);
        }
        send(pair.exception, kernel_, n_kernel_, BackendCounter::to_kernel);
    }

    // What the host stack sends leaves from the data port's address.
    unsigned from_kernel_out(const PortPairState& pair) {
        const std::uint16_t n = rte_eth_rx_burst(pair.exception, 0, tx_, burst_);
        if (n == 0) return 0;
        for (std::uint16_t k = 0; k < n; ++k) {
            if (rte_pktmbuf_data_len(tx_[k]) >= 12)
                std::memcpy(rte_pktmbuf_mtod(tx_[k], std::uint8_t*) + 6, pair.data_mac.addr_bytes,
                            6);
        }
        send(pair.data, tx_, n, BackendCounter::from_kernel);
        return n;
    }

    void free_drops() {
        if (n_drop_ == 0) return;
        result_.counters.add(BackendCounter::dropped, n_drop_);
        rte_pktmbuf_free_bulk(drop_, n_drop_);
        n_drop_ = 0;
    }

    void send(std::uint16_t port, rte_mbuf** pkts, std::uint16_t n, BackendCounter sent_counter) {
        if (n == 0) return;
        const std::uint16_t sent = rte_eth_tx_burst(port, 0, pkts, n);
        result_.counters.add(sent_counter, sent);
        if (sent < n) {
            const unsigned left = n - sent;
            result_.drops.add(BackendDrop::tx_full, left);
            result_.counters.add(BackendCounter::dropped, left);
            rte_pktmbuf_free_bulk(pkts + sent, left);
        }
    }

    void drop_backend(rte_mbuf* m, BackendDrop reason) {
        result_.drops.add(reason);
        drop_[n_drop_++] = m;
    }

    Backend::Impl& impl_;
    Pipeline& pipeline_;
    const std::uint16_t burst_;
    RunResult& result_;
    ParseOptions parse_options_;

    rte_mbuf* mbufs_[kMaxBurst];
    Frame frames_[kMaxBurst];
    PacketMeta meta_[kMaxBurst];
    Decision decisions_[kMaxBurst];
    std::uint8_t fast_[kMaxBurst];
    std::uint16_t relay_idx_[kMaxBurst];
    rte_mbuf* tx_[kMaxBurst];
    rte_mbuf* kernel_[kMaxBurst];
    rte_mbuf* drop_[kMaxBurst];
    std::uint16_t n_relay_ = 0, n_kernel_ = 0, n_drop_ = 0;
};

}  // namespace

RunResult run_worker(Backend::Impl& impl, const StopCondition& stop, const base::Clock& clock,
                     const std::atomic<bool>& stop_flag) {
    RunResult result;
    result.lcore = rte_lcore_id();
    Worker worker(impl, result);
    const base::Nanos start = clock.monotonic();
    base::Nanos next_housekeeping = start;
    base::Nanos next_snapshot = start;
    std::uint32_t idle = 0;
    std::uint64_t polls = 0, empty = 0;
    // Reading the clock costs about as much as relaying a frame. While every poll brings full
    // bursts it is read every kClockEvery polls: `now` is then at most a few microseconds old
    // (four bursts at line rate), below one RTP timestamp unit even at 90 kHz, and far below
    // the latch, ban and inactivity times. With lighter traffic it is read every poll.
    constexpr unsigned kClockEvery = 4;
    unsigned polls_since_clock = kClockEvery;
    unsigned last_got = 0;
    base::Nanos now = start;
    while (!stop_flag.load(std::memory_order_relaxed)) {
        if (last_got < impl.config.burst || ++polls_since_clock >= kClockEvery) {
            now = clock.monotonic();
            polls_since_clock = 0;
        }
        if (stop.max_duration > 0 && now - start >= stop.max_duration) break;
        // Control commands (stream create/update/remove, bans, reloads) between bursts.
        if (impl.control.pending.load(std::memory_order_acquire) != 0) apply_control(impl, now);
        if (now >= next_housekeeping) {
            media_housekeeping(impl, now);
            next_housekeeping = now + kHousekeepingPeriod;
            if (now >= next_snapshot) {
                publish_snapshot(impl, result, now, true);
                next_snapshot = now + Backend::kSnapshotPeriod;
            }
        }
        unsigned got = 0;
        for (const auto& pair : impl.pairs) got += worker.poll(pair, now);
        last_got = got;
        ++polls;
        if (got == 0) {
            ++empty;
            if (stop.idle_polls > 0 && ++idle >= stop.idle_polls) break;
        } else {
            idle = 0;
        }
        if (stop.max_rx > 0 && result.counters[BackendCounter::rx] >= stop.max_rx) break;
    }
    result.counters.add(BackendCounter::polls, polls);
    result.counters.add(BackendCounter::empty_polls, empty);
    result.elapsed = clock.monotonic() - start;
    publish_snapshot(impl, result, clock.monotonic(), false);
    return result;
}

}  // namespace sbc::dataplane::dpdk
