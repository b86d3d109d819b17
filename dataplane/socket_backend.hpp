#pragma once
// dataplane/: the socket backend.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "dataplane/pipeline.hpp"

namespace sbc::dataplane {

// How SocketRelay moves packets. `uring`: a multishot recvmsg per socket into a provided
// buffer ring, one sendmsg per relayed packet, all submitted and reaped with one io_uring_enter
// per burst. `mmsg`: epoll + recvmmsg/sendmmsg (runs anywhere). `automatic`: uring when the
// kernel allows it (io_uring_queue_init succeeds, kernel.io_uring_disabled is 0), else mmsg.
enum class SocketIo : std::uint8_t { automatic, uring, mmsg };
const char* socket_io_name(SocketIo io);

struct SocketRelayConfig {
    SocketIo io = SocketIo::automatic;
    // uring only: receive buffers shared by all sockets (a power of two). Packets received but
    // not yet sent hold one each; when none is free a socket's receive pauses (counted in
    // rx_buffer_shortages) and the datagrams wait in its socket queue.
    unsigned uring_buffers = 4096;
    // uring only: a port that sends to a peer gets a second socket on the same port connected to
    // that peer, which carries the port's packets to it (no route lookup or address per send)
    // and receives the peer's; the port's own socket keeps receiving everyone else's, so
    // latching and re-latching are unchanged. Costs one file descriptor per sending port while
    // the relay's sockets stay well below the open-file limit (by an eighth of it, at most
    // 1024); at the limit, new media ports close twins to make room.
    bool connected_egress = true;
    // Receive buffer asked for each SIP listener socket (SO_RCVBUFFORCE, else SO_RCVBUF, which
    // net.core.rmem_max caps). The kernel's default (about 200 KiB, some 150 INVITEs) overflows
    // within a millisecond of a flood; a full queue drops callers' datagrams with the flood's.
    // The kernel charges only what is queued, so a large value costs memory only under load.
    // 0: leave the kernel's default.
    int signaling_rcvbuf = 16 << 20;
    // Known callers' own queues: protect_signaling_peer() gives a SIP listener's peer a socket
    // of its own on the listener's port, connected to it (SO_REUSEPORT; the kernel delivers an
    // exact 4-tuple match there, everyone else's datagrams to the listener). A flood that fills
    // the listener's queue then cannot drop the peer's datagrams. At most this many (each is a
    // file descriptor); when all are taken the oldest is closed for the new one. 0: none.
    unsigned signaling_peers = 256;
};

// socket backend: one UDP socket per local media port (RTP, and RTCP unless rtcp-mux),
// io_uring or epoll + recvmmsg/sendmmsg (SocketRelayConfig::io).
class SocketRelay {
  public:
    explicit SocketRelay(Pipeline& pipeline, const SocketRelayConfig& config = {});
    ~SocketRelay();
    SocketRelay(const SocketRelay&) = delete;
    SocketRelay& operator=(const SocketRelay&) = delete;

    // Creates the stream in the pipeline and opens/binds its sockets.
    base::Result<StreamId> open_stream(const StreamSpec& spec, base::Nanos now);
    base::Result<void> close_stream(StreamId id);
    // A UDP SIP listener fronted by the pipeline: what it admits is handed to `handler` (the
    // signaling layer); banned and over-limit sources are dropped before signaling sees them.
    using SignalingHandler = void (*)(const PacketMeta& meta, void* ctx);
    // Returns the listener's socket, which stays the relay's (open while the relay lives):
    // signaling sends its answers from it (RFC 3581 §4: a client behind NAT only takes the
    // response from where it sent the request).
    base::Result<int> open_signaling(const base::Endpoint& local, SignalingHandler handler,
                                     void* ctx);
    // The receive buffer the kernel gave the last SIP listener opened (SO_RCVBUF as read back:
    // twice what was asked, Linux counting its bookkeeping), and what was asked.
    int signaling_rcvbuf() const { return signaling_rcvbuf_; }
    // Gives `peer` (a caller known to signaling, e.g. one with an answered call) a socket of its
    // own on the SIP listener at `local_port` (SocketRelayConfig::signaling_peers). What it
    // receives takes the same path as the listener's (bans, limits, then signaling). A peer
    // that has one already keeps it. Fails when the port is not a SIP listener's, the feature
    // is off, or the socket cannot be opened (the open-file limit: the listener still serves
    // the peer, only without a queue of its own).
    base::Result<void> protect_signaling_peer(std::uint16_t local_port, const base::Endpoint& peer);
    std::size_t signaling_peers() const;
    int signaling_rcvbuf_requested() const { return signaling_rcvbuf_requested_; }
    // Waits up to timeout_ms for traffic and processes what is ready; returns packets handled.
    std::size_t poll_once(int timeout_ms, const base::Clock& clock);
    // The loop step for a dedicated thread: blocks up to idle_timeout_ms while traffic is light,
    // but does not sleep while the previous step found a busy relay (at least a burst's worth):
    // under load, sleeping and being woken per packet costs more than polling.
    std::size_t poll(int idle_timeout_ms, const base::Clock& clock) {
        last_handled_ = poll_once(last_handled_ >= kBurst / 2 ? 0 : idle_timeout_ms, clock);
        return last_handled_;
    }
    // Any thread: makes the current or next poll_once return at once instead of waiting for
    // traffic or its timeout, so that work another thread handed to the polling thread (a
    // message read from TCP/TLS, a control command) runs now. Wake-ups coalesce.
    void wake();
    // Wake-ups the polls consumed (several wake() calls before a poll count once).
    std::uint64_t wakeups() const { return wakeups_; }
    std::size_t open_sockets() const { return sockets_open_; }
    std::uint64_t tx_errors() const { return tx_errors_; }
    // The I/O mode running (never `automatic`).
    SocketIo io_mode() const { return io_; }
    // uring: times a socket's multishot receive stopped for want of a free buffer.
    std::uint64_t rx_buffer_shortages() const { return rx_buffer_shortages_; }
    // uring with connected_egress: ports sending through a connected twin socket, and the
    // packets sent that way.
    std::size_t connected_sockets() const;
    std::uint64_t connected_sends() const { return connected_sends_; }

    static constexpr unsigned kBurst = 64;

  private:
    struct Impl;
    std::size_t poll_mmsg(int timeout_ms, const base::Clock& clock);
    std::size_t poll_uring(int timeout_ms, const base::Clock& clock);
    base::Result<void> watch(int fd, std::uint16_t port);
    bool take_wake();
    void unwatch(std::uint16_t port);
    void close_signaling_peer(std::size_t slot);
    Pipeline& pipeline_;
    std::unique_ptr<Impl> impl_;
    std::size_t sockets_open_ = 0;
    std::uint64_t tx_errors_ = 0;
    std::uint64_t rx_buffer_shortages_ = 0;
    std::uint64_t connected_sends_ = 0;
    std::uint64_t wakeups_ = 0;
    SocketIo io_ = SocketIo::mmsg;
    base::Nanos last_media_poll_ = 0;
    std::size_t last_handled_ = 0;
    int signaling_rcvbuf_requested_ = 0;
    int signaling_rcvbuf_ = 0;
    SignalingHandler signaling_handler_ = nullptr;
    void* signaling_ctx_ = nullptr;
};

}  // namespace sbc::dataplane
