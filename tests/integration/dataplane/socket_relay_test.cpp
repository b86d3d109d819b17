// Drives the socket backend on loopback, in both I/O modes (io_uring and recvmmsg): two UDP
// endpoints in the test process exchange real RTP through the relay (both directions, latching,
// RTCP, stats), and a SIP flood is limited and banned before signaling sees it. The io_uring
// specifics (a receive that runs out of ring buffers, the multishot re-arm) have their own test.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>
#include <vector>

#include "base/sockaddr.hpp"
#include "frame_builder.hpp"

using namespace sbc::dataplane;
using sbc::base::Endpoint;
using sbc::base::IpAddress;

namespace {
constexpr const char* kRelay = "127.0.77.1";
constexpr const char* kCaller = "127.0.77.2";
constexpr const char* kCallee = "127.0.77.3";

Endpoint ep(const char* a, std::uint16_t p) {
    return Endpoint{*IpAddress::parse(a), p};
}

// Every test relays through media ports 41000-41999.
PipelineConfig media_config() {
    auto cfg = PipelineConfig::defaults();
    cfg.media_port_min = 41000;
    cfg.media_port_max = 41999;
    return cfg;
}

// An rtcp-mux stream: relay ports `local` (caller's leg) and `local + 1` (callee's leg).
StreamSpec mux_stream(std::uint16_t local, std::uint16_t caller_port, std::uint16_t callee_port) {
    StreamSpec spec;
    spec.rtcp_mux = true;
    spec.a.local = ep(kRelay, local);
    spec.a.remote = ep(kCaller, caller_port);
    spec.b.local = ep(kRelay, static_cast<std::uint16_t>(local + 1));
    spec.b.remote = ep(kCallee, callee_port);
    return spec;
}

struct Udp {
    int fd = -1;
    explicit Udp(const Endpoint& local) {
        sockaddr_storage ss;
        const socklen_t len = sbc::base::to_sockaddr(local, ss);
        fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0);
    }
    ~Udp() { ::close(fd); }
    void send_to(const Endpoint& to, const std::vector<std::uint8_t>& data) const {
        sockaddr_storage ss;
        const socklen_t len = sbc::base::to_sockaddr(to, ss);
        REQUIRE(::sendto(fd, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) ==
                static_cast<ssize_t>(data.size()));
    }
    // Receives one datagram within timeout_ms; empty if none.
    std::vector<std::uint8_t> recv(int timeout_ms, Endpoint* from = nullptr) const {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) != 1) return {};
        std::vector<std::uint8_t> buf(4096);
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        const ssize_t n =
            ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&ss), &len);
        if (n < 0) return {};
        buf.resize(static_cast<std::size_t>(n));
        if (from) *from = sbc::base::from_sockaddr(ss).value_or(Endpoint{});
        return buf;
    }
};

// Relays until `dst` receives a datagram (or ~1 s passes).
std::vector<std::uint8_t> relay_until(SocketRelay& relay, const Udp& dst,
                                      const sbc::base::Clock& clock, Endpoint* from = nullptr) {
    for (int i = 0; i < 100; ++i) {
        relay.poll_once(10, clock);
        auto got = dst.recv(0, from);
        if (!got.empty()) return got;
    }
    return {};
}
}  // namespace

TEST_CASE("Socket relay: RTP both ways with latching, RTCP, stats") {
    Pipeline pipeline(media_config());
    const SocketIo io = GENERATE(SocketIo::uring, SocketIo::mmsg);  // each test in both modes
    INFO("io=" << socket_io_name(io));
    SocketRelay relay(pipeline, SocketRelayConfig{io});
    REQUIRE(relay.io_mode() == io);
    sbc::base::SystemClock clock;

    StreamSpec spec;
    spec.call_id = 7;
    spec.a.local = ep(kRelay, 41000);
    spec.a.remote = ep(kCaller, 42000);  // the caller's SDP says 42000 ...
    spec.b.local = ep(kRelay, 41002);
    spec.b.remote = ep(kCallee, 43000);
    auto id = relay.open_stream(spec, clock.monotonic());
    REQUIRE(id);
    CHECK(relay.open_sockets() == 4);

    Udp caller(ep(kCaller, 42100));  // ... but its NAT maps it to 42100
    Udp caller_rtcp(ep(kCaller, 42101));
    Udp callee(ep(kCallee, 43000));
    Udp callee_rtcp(ep(kCallee, 43001));

    // Caller -> callee, seq 1..20 with 18 missing.
    for (std::uint16_t seq = 1; seq <= 20; ++seq) {
        if (seq == 18) continue;
        auto pkt =
            sbc::dataplane::test::rtp_payload(seq, seq * 160u, 172, static_cast<std::uint8_t>(seq));
        caller.send_to(ep(kRelay, 41000), pkt);
        Endpoint from;
        auto got = relay_until(relay, callee, clock, &from);
        REQUIRE(got == pkt);
        CHECK(from == ep(kRelay, 41002));  // sent from the callee leg's local port
    }
    // Callee -> caller goes to the latched source (42100), not the signaled 42000.
    auto back = sbc::dataplane::test::rtp_payload(500, 8000, 100, 0x5a);
    callee.send_to(ep(kRelay, 41002), back);
    Endpoint from;
    auto got = relay_until(relay, caller, clock, &from);
    REQUIRE(got == back);
    CHECK(from == ep(kRelay, 41000));

    // RTCP on port+1 both ways.
    std::vector<std::uint8_t> rr = {0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78};
    caller_rtcp.send_to(ep(kRelay, 41001), rr);
    got = relay_until(relay, callee_rtcp, clock, &from);
    REQUIRE(got == rr);
    CHECK(from == ep(kRelay, 41003));
    callee_rtcp.send_to(ep(kRelay, 41003), rr);
    REQUIRE(relay_until(relay, caller_rtcp, clock) == rr);

    // A stranger cannot inject into the live caller leg.
    Udp stranger(ep("127.0.77.9", 44000));
    stranger.send_to(ep(kRelay, 41000), back);
    for (int i = 0; i < 5; ++i) relay.poll_once(5, clock);
    CHECK(callee.recv(20).empty());
    CHECK(pipeline.counters().drops[DropReason::latch_rejected] == 1);

    auto st = pipeline.media().stats(*id);
    REQUIRE(st);
    CHECK(st->a.packets == 20);  // 19 RTP + 1 RTCP
    CHECK(st->a.rtcp_packets == 1);
    CHECK(st->a.lost == 1);
    CHECK(st->a.latched_rtp == ep(kCaller, 42100));
    CHECK(st->b.packets == 2);
    CHECK(pipeline.counters().events[PipelineEvent::relayed] == 22);

    REQUIRE(relay.close_stream(*id));
    CHECK(relay.open_sockets() == 0);
}

TEST_CASE("Socket relay with rtcp-mux uses one socket per leg") {
    Pipeline pipeline(media_config());
    const SocketIo io = GENERATE(SocketIo::uring, SocketIo::mmsg);  // each test in both modes
    INFO("io=" << socket_io_name(io));
    SocketRelay relay(pipeline, SocketRelayConfig{io});
    REQUIRE(relay.io_mode() == io);
    sbc::base::SystemClock clock;
    const StreamSpec spec = mux_stream(41100, 42200, 43200);
    auto id = relay.open_stream(spec, clock.monotonic());
    REQUIRE(id);
    CHECK(relay.open_sockets() == 2);
    Udp caller(ep(kCaller, 42200));
    Udp callee(ep(kCallee, 43200));
    std::vector<std::uint8_t> sr = {0x80, 200, 0, 6, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0,
                                    0,    0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    auto rtp = sbc::dataplane::test::rtp_payload(1, 160);
    caller.send_to(ep(kRelay, 41100), rtp);
    REQUIRE(relay_until(relay, callee, clock) == rtp);
    caller.send_to(ep(kRelay, 41100), sr);
    REQUIRE(relay_until(relay, callee, clock) == sr);
    callee.send_to(ep(kRelay, 41101), sr);
    REQUIRE(relay_until(relay, caller, clock) == sr);
    auto st = pipeline.media().stats(*id);
    CHECK(st->a.rtcp_packets == 1);
    CHECK(st->b.rtcp_packets == 1);
}

namespace {
struct SigSink {
    int delivered = 0;
};
void on_sip(const PacketMeta&, void* ctx) {
    ++static_cast<SigSink*>(ctx)->delivered;
}
}  // namespace

TEST_CASE("Socket relay: a SIP flood is limited, then banned; others still get through") {
    auto cfg = PipelineConfig::defaults();
    cfg.ban_policy.violations_to_ban = 100;
    cfg.sip_udp_ports = {45060};
    Pipeline pipeline(cfg);
    const SocketIo io = GENERATE(SocketIo::uring, SocketIo::mmsg);  // each test in both modes
    INFO("io=" << socket_io_name(io));
    SocketRelay relay(pipeline, SocketRelayConfig{io});
    REQUIRE(relay.io_mode() == io);
    sbc::base::SystemClock clock;
    SigSink sink;
    CHECK_FALSE(relay.open_signaling(ep(kRelay, 45070), on_sip, &sink));  // not a SIP port
    REQUIRE(relay.open_signaling(ep(kRelay, 45060), on_sip, &sink));
    Udp attacker(ep("127.0.77.66", 45061));
    Udp friendly(ep("127.0.77.5", 45062));
    const auto reg = sbc::dataplane::test::text("REGISTER sip:example.com SIP/2.0\r\n\r\n");
    // 2000 REGISTERs as fast as possible, in batches so the socket buffer does not overflow.
    for (int batch = 0; batch < 20; ++batch) {
        for (int i = 0; i < 100; ++i) attacker.send_to(ep(kRelay, 45060), reg);
        while (relay.poll_once(5, clock) > 0) {
        }
    }
    const auto& c = pipeline.counters();
    INFO("delivered " << sink.delivered << " limited " << c.drops[DropReason::rate_limited]
                      << " banned " << c.drops[DropReason::banned]);
    CHECK(sink.delivered >= 20);
    CHECK(sink.delivered < 60);
    CHECK(c.drops[DropReason::rate_limited] == 100);
    CHECK(c.drops[DropReason::banned] + c.drops[DropReason::rate_limited] +
              static_cast<std::uint64_t>(sink.delivered) ==
          2000);
    auto bans = pipeline.bans().active(clock.monotonic());
    REQUIRE(bans.size() == 1);
    CHECK(bans[0].prefix.address() == *IpAddress::parse("127.0.77.66"));
    // Another source is unaffected.
    const int before = sink.delivered;
    friendly.send_to(ep(kRelay, 45060), reg);
    for (int i = 0; i < 20 && sink.delivered == before; ++i) relay.poll_once(10, clock);
    CHECK(sink.delivered == before + 1);
}

TEST_CASE("Socket relay: a SIP listener gets the receive buffer asked for, and reports it") {
    auto cfg = PipelineConfig::defaults();
    cfg.sip_udp_ports = {11390, 11391};
    Pipeline pipeline(cfg);
    SigSink sink;
    auto buffer_of = [](int fd) {
        int v = 0;
        socklen_t len = sizeof v;
        REQUIRE(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0);
        return v;
    };
    SocketRelayConfig kernel_default;
    kernel_default.io = SocketIo::mmsg;
    kernel_default.signaling_rcvbuf = 0;
    SocketRelay plain(pipeline, kernel_default);
    auto fd0 = plain.open_signaling(ep(kRelay, 11390), on_sip, &sink);
    REQUIRE(fd0);
    CHECK(plain.signaling_rcvbuf() == buffer_of(*fd0));

    SocketRelayConfig large;
    large.io = SocketIo::mmsg;
    large.signaling_rcvbuf = 8 << 20;
    SocketRelay relay(pipeline, large);
    auto fd = relay.open_signaling(ep(kRelay, 11391), on_sip, &sink);
    REQUIRE(fd);
    CHECK(relay.signaling_rcvbuf_requested() == (8 << 20));
    CHECK(relay.signaling_rcvbuf() == buffer_of(*fd));
    if (geteuid() == 0) {
        // SO_RCVBUFFORCE passes net.core.rmem_max; Linux doubles what it is given.
        CHECK(relay.signaling_rcvbuf() >= 2 * (8 << 20));
    } else {
        // Unprivileged: SO_RCVBUF, capped at net.core.rmem_max (which may be the default).
        CHECK(relay.signaling_rcvbuf() >= plain.signaling_rcvbuf());
    }
}

namespace {
struct BySource {
    std::map<std::uint16_t, int> delivered;  // source port -> datagrams handed to signaling
};
void count_by_source(const PacketMeta& m, void* ctx) {
    ++static_cast<BySource*>(ctx)->delivered[m.src_port];
}
}  // namespace

TEST_CASE("Socket relay: a protected signaling peer is not starved by a full listener queue") {
    auto cfg = PipelineConfig::defaults();
    cfg.sip_udp_ports = {11392};
    cfg.trusted = {*sbc::base::Prefix::parse("127.0.77.0/24")};  // no limits: only queues count
    Pipeline pipeline(cfg);
    const SocketIo io = GENERATE(SocketIo::uring, SocketIo::mmsg);
    INFO("io=" << socket_io_name(io));
    SocketRelayConfig rc;
    rc.io = io;
    rc.signaling_rcvbuf = 0;  // the kernel's default: a few hundred datagrams fill it
    SocketRelay relay(pipeline, rc);
    REQUIRE(relay.io_mode() == io);
    sbc::base::SystemClock clock;
    BySource sink;
    REQUIRE(relay.open_signaling(ep(kRelay, 11392), count_by_source, &sink));
    Udp flood(ep("127.0.77.66", 11393));
    Udp known(ep("127.0.77.5", 11394));
    Udp other(ep("127.0.77.6", 11395));
    CHECK_FALSE(relay.protect_signaling_peer(11393 + 100, ep("127.0.77.5", 11394)));  // no listener
    REQUIRE(relay.protect_signaling_peer(11392, ep("127.0.77.5", 11394)));
    REQUIRE(relay.protect_signaling_peer(11392, ep("127.0.77.5", 11394)));  // kept, not doubled
    CHECK(relay.signaling_peers() == 1);
    const auto msg = sbc::dataplane::test::text("OPTIONS sip:example.com SIP/2.0\r\n\r\n");
    // The listener's queue overflows while nobody reads it; then both callers send.
    for (int i = 0; i < 5000; ++i) flood.send_to(ep(kRelay, 11392), msg);
    for (int i = 0; i < 50; ++i) {
        known.send_to(ep(kRelay, 11392), msg);
        other.send_to(ep(kRelay, 11392), msg);
    }
    for (int idle = 0, round = 0; idle < 5 && round < 2000; ++round)
        idle = relay.poll_once(10, clock) > 0 ? 0 : idle + 1;
    INFO("flood " << sink.delivered[11393] << " known " << sink.delivered[11394] << " other "
                  << sink.delivered[11395]);
    CHECK(sink.delivered[11393] < 5000);  // the listener's queue did overflow
    CHECK(sink.delivered[11394] == 50);   // the protected peer lost nothing
    CHECK(sink.delivered[11395] < 50);    // an unprotected one shared the flood's fate
}

TEST_CASE("Socket relay: protected signaling peers are bounded, the oldest makes room") {
    auto cfg = PipelineConfig::defaults();
    cfg.sip_udp_ports = {11396};
    cfg.trusted = {*sbc::base::Prefix::parse("127.0.77.0/24")};
    Pipeline pipeline(cfg);
    const SocketIo io = GENERATE(SocketIo::uring, SocketIo::mmsg);
    INFO("io=" << socket_io_name(io));
    SocketRelayConfig rc;
    rc.io = io;
    rc.signaling_peers = 2;
    SocketRelay relay(pipeline, rc);
    sbc::base::SystemClock clock;
    BySource sink;
    REQUIRE(relay.open_signaling(ep(kRelay, 11396), count_by_source, &sink));
    Udp a(ep("127.0.77.7", 11397)), b(ep("127.0.77.8", 11398)), c(ep("127.0.77.9", 11399));
    REQUIRE(relay.protect_signaling_peer(11396, ep("127.0.77.7", 11397)));
    REQUIRE(relay.protect_signaling_peer(11396, ep("127.0.77.8", 11398)));
    REQUIRE(relay.protect_signaling_peer(11396, ep("127.0.77.9", 11399)));  // replaces a's
    CHECK(relay.signaling_peers() == 2);
    // Every caller still reaches signaling, through its own socket or the listener's.
    const auto msg = sbc::dataplane::test::text("OPTIONS sip:example.com SIP/2.0\r\n\r\n");
    for (const Udp* u : {&a, &b, &c}) u->send_to(ep(kRelay, 11396), msg);
    for (int round = 0; round < 200 && sink.delivered.size() < 3; ++round)
        relay.poll_once(10, clock);
    CHECK(sink.delivered[11397] == 1);
    CHECK(sink.delivered[11398] == 1);
    CHECK(sink.delivered[11399] == 1);
}

TEST_CASE("Socket relay bridges an IPv4 leg and an IPv6 leg") {
    Pipeline pipeline(media_config());
    const SocketIo io = GENERATE(SocketIo::uring, SocketIo::mmsg);  // each test in both modes
    INFO("io=" << socket_io_name(io));
    SocketRelay relay(pipeline, SocketRelayConfig{io});
    REQUIRE(relay.io_mode() == io);
    sbc::base::SystemClock clock;
    StreamSpec spec;
    spec.a.local = ep(kRelay, 41200);
    spec.a.remote = ep(kCaller, 42300);
    spec.b.local = ep("::1", 41202);
    spec.b.remote = ep("::1", 43300);
    auto id = relay.open_stream(spec, clock.monotonic());
    REQUIRE(id);
    Udp caller(ep(kCaller, 42300));
    Udp callee(ep("::1", 43300));
    auto rtp = sbc::dataplane::test::rtp_payload(9, 1440, 60, 0x33);
    caller.send_to(ep(kRelay, 41200), rtp);
    Endpoint from;
    REQUIRE(relay_until(relay, callee, clock, &from) == rtp);
    CHECK(from == ep("::1", 41202));
    callee.send_to(ep("::1", 41202), rtp);
    REQUIRE(relay_until(relay, caller, clock, &from) == rtp);
    CHECK(from == ep(kRelay, 41200));
    CHECK(pipeline.media().stats(*id)->b.latched_rtp == ep("::1", 43300));
}

TEST_CASE("Socket relay io_uring: more datagrams in flight than ring buffers, truncation, reuse") {
    Pipeline pipeline(media_config());
    SocketRelayConfig rc;
    rc.io = SocketIo::uring;
    rc.uring_buffers = 8;
    sbc::base::SystemClock clock;
    StreamSpec spec = mux_stream(41300, 42400, 43400);
    Udp caller(ep(kCaller, 42400));
    Udp callee(ep(kCallee, 43400));
    for (int round = 0; round < 2; ++round) {  // the second round reopens the same ports
        SocketRelay relay(pipeline, rc);
        REQUIRE(relay.io_mode() == SocketIo::uring);
        auto id = relay.open_stream(spec, clock.monotonic());
        REQUIRE(id);
        relay.poll_once(0, clock);  // arms the receives
        // 120 datagrams queued on one socket before the relay looks: 8 buffers take them in
        // turns; each shortage stops the multishot receive, which must be re-armed.
        constexpr std::uint16_t kCount = 120;
        for (std::uint16_t seq = 1; seq <= kCount; ++seq)
            caller.send_to(ep(kRelay, 41300), sbc::dataplane::test::rtp_payload(seq, seq * 160u));
        std::vector<std::uint16_t> got;
        for (int i = 0; i < 2000 && got.size() < kCount; ++i) {
            relay.poll_once(1, clock);
            for (auto d = callee.recv(0); !d.empty(); d = callee.recv(0))
                got.push_back(static_cast<std::uint16_t>(d[2] << 8 | d[3]));
        }
        REQUIRE(got.size() == kCount);
        for (std::uint16_t k = 0; k < kCount; ++k) CHECK(got[k] == k + 1);
        CHECK(relay.rx_buffer_shortages() > 0);
        CHECK(relay.tx_errors() == 0);
        // A datagram larger than a buffer is cut and dropped as truncated; the next one passes.
        const auto before = pipeline.counters().drops[DropReason::truncated];
        caller.send_to(ep(kRelay, 41300), std::vector<std::uint8_t>(3000, 0x80));
        for (int i = 0; i < 20; ++i) relay.poll_once(1, clock);
        CHECK(pipeline.counters().drops[DropReason::truncated] == before + 1);
        auto rtp = sbc::dataplane::test::rtp_payload(kCount + 1, 0);
        caller.send_to(ep(kRelay, 41300), rtp);
        // (the stream's sequence restarts each round: only the relay is checked here)
        REQUIRE(relay_until(relay, callee, clock) == rtp);
        REQUIRE(relay.close_stream(*id));
        CHECK(relay.open_sockets() == 0);
        spec.call_id += 1;
    }
}

TEST_CASE("Socket relay io_uring: connected egress follows the latched peer through a rebinding") {
    auto cfg = media_config();
    cfg.media.relatch_silence = sbc::base::millis(300);
    Pipeline pipeline(cfg);
    SocketRelayConfig rc;
    rc.io = SocketIo::uring;
    sbc::base::SystemClock clock;
    SocketRelay relay(pipeline, rc);
    REQUIRE(relay.io_mode() == SocketIo::uring);
    const StreamSpec spec = mux_stream(41400, 42500, 43500);
    auto id = relay.open_stream(spec, clock.monotonic());
    REQUIRE(id);
    Udp caller(ep(kCaller, 42500));
    Udp callee(ep(kCallee, 43500));
    auto pkt = [](std::uint16_t seq) { return sbc::dataplane::test::rtp_payload(seq, seq * 160u); };

    // Each leg's first send opens its port's twin, connected to the peer, and goes through it.
    caller.send_to(ep(kRelay, 41400), pkt(1));
    Endpoint from;
    REQUIRE(relay_until(relay, callee, clock, &from) == pkt(1));
    CHECK(from == ep(kRelay, 41401));
    callee.send_to(ep(kRelay, 41401), pkt(2));  // delivered to 41401's twin by the kernel
    REQUIRE(relay_until(relay, caller, clock, &from) == pkt(2));
    CHECK(from == ep(kRelay, 41400));
    CHECK(relay.connected_sockets() == 2);
    CHECK(relay.connected_sends() == 2);
    CHECK(relay.open_sockets() == 2);  // the twins are not media ports
    const auto opened = clock.monotonic();
    {
        // The ports stay exclusive: another relay cannot bind them (nor join their twins).
        Pipeline other_pipeline(media_config());
        SocketRelay other(other_pipeline, rc);
        auto clash = other.open_stream(spec, clock.monotonic());
        REQUIRE_FALSE(clash);
        CHECK(clash.error().message.find("Address already in use") != std::string::npos);
    }

    // The caller's NAT rebinds to 42501: its packets reach the port's own socket (the twin only
    // takes 42500's), and after 300 ms of silence from 42500 the leg re-latches.
    Udp rebound(ep(kCaller, 42501));
    usleep(350'000);
    rebound.send_to(ep(kRelay, 41400), pkt(3));
    REQUIRE(relay_until(relay, callee, clock) == pkt(3));
    CHECK(pipeline.counters().events[PipelineEvent::relatched] == 1);
    // Media to the caller now goes to 42501, at first unconnected (the twin is re-connected
    // at most once a second) ...
    callee.send_to(ep(kRelay, 41401), pkt(4));
    REQUIRE(relay_until(relay, rebound, clock, &from) == pkt(4));
    CHECK(from == ep(kRelay, 41400));
    CHECK(caller.recv(20).empty());
    // ... then through the twin, re-connected to 42501.
    while (clock.monotonic() - opened < sbc::base::millis(1100)) usleep(20'000);
    const auto sends = relay.connected_sends();
    callee.send_to(ep(kRelay, 41401), pkt(5));
    REQUIRE(relay_until(relay, rebound, clock, &from) == pkt(5));
    CHECK(from == ep(kRelay, 41400));
    CHECK(relay.connected_sends() == sends + 1);
    CHECK(relay.connected_sockets() == 2);
    // The new mapping's packets reach the twin and are relayed; the old mapping is now a
    // stranger while the new one is active: its packets reach the port's own socket and are
    // refused by the latch rule.
    rebound.send_to(ep(kRelay, 41400), pkt(6));
    REQUIRE(relay_until(relay, callee, clock) == pkt(6));
    caller.send_to(ep(kRelay, 41400), pkt(7));
    for (int i = 0; i < 5; ++i) relay.poll_once(5, clock);
    CHECK(callee.recv(20).empty());
    CHECK(pipeline.counters().drops[DropReason::latch_rejected] == 1);
    CHECK(relay.tx_errors() == 0);

    // Closing the stream closes the twins: the ports can be bound again.
    REQUIRE(relay.close_stream(*id));
    CHECK(relay.connected_sockets() == 0);
    CHECK(relay.open_sockets() == 0);
    Udp reuse_a(ep(kRelay, 41400));
    Udp reuse_b(ep(kRelay, 41401));
}

TEST_CASE("Socket relay io_uring without connected egress sends from the port's own socket") {
    Pipeline pipeline(media_config());
    SocketRelayConfig rc;
    rc.io = SocketIo::uring;
    rc.connected_egress = false;
    sbc::base::SystemClock clock;
    SocketRelay relay(pipeline, rc);
    REQUIRE(relay.io_mode() == SocketIo::uring);
    auto id = relay.open_stream(mux_stream(41500, 42600, 43600), clock.monotonic());
    REQUIRE(id);
    Udp caller(ep(kCaller, 42600));
    Udp callee(ep(kCallee, 43600));
    const auto p = sbc::dataplane::test::rtp_payload(1, 160);
    caller.send_to(ep(kRelay, 41500), p);
    REQUIRE(relay_until(relay, callee, clock) == p);
    CHECK(relay.connected_sockets() == 0);
    CHECK(relay.connected_sends() == 0);
    REQUIRE(relay.close_stream(*id));
}

TEST_CASE(
    "Socket relay io_uring: at the open-file limit, media ports take the twins' descriptors") {
    auto open_fds = [] {
        std::size_t n = 0;
        for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
            ++n;
        return n - 1;  // the iterator's own descriptor
    };
    rlimit saved{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    const rlim_t limit = open_fds() + 64;
    rlimit low = saved;
    low.rlim_cur = limit;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    std::size_t opened = 0, before = 0, twins_before_full = 0;
    bool relayed_after = false;
    {
        Pipeline pipeline(media_config());
        SocketRelayConfig rc;
        rc.io = SocketIo::uring;
        sbc::base::SystemClock clock;
        SocketRelay relay(pipeline, rc);
        REQUIRE(relay.io_mode() == SocketIo::uring);
        Udp caller(ep(kCaller, 42700));
        Udp callee(ep(kCallee, 43700));
        before = open_fds();
        // Four streams relaying both ways: eight twins.
        std::vector<StreamId> ids;
        for (std::uint16_t k = 0; k < 4; ++k) {
            auto id = relay.open_stream(
                mux_stream(static_cast<std::uint16_t>(41600 + 2 * k), 42700, 43700),
                clock.monotonic());
            REQUIRE(id);
            ids.push_back(*id);
            const auto p = sbc::dataplane::test::rtp_payload(1, 160);
            caller.send_to(ep(kRelay, static_cast<std::uint16_t>(41600 + 2 * k)), p);
            REQUIRE(relay_until(relay, callee, clock) == p);
            callee.send_to(ep(kRelay, static_cast<std::uint16_t>(41601 + 2 * k)), p);
            REQUIRE(relay_until(relay, caller, clock) == p);
        }
        twins_before_full = relay.connected_sockets();
        opened = ids.size();
        // Then streams until the limit: every descriptor ends up a media port.
        for (std::uint16_t k = 4; k < 200; ++k) {
            auto id = relay.open_stream(
                mux_stream(static_cast<std::uint16_t>(41600 + 2 * k), 42700, 43700),
                clock.monotonic());
            if (!id) break;
            ++opened;
        }
        CHECK(relay.connected_sockets() == 0);
        CHECK(relay.open_sockets() == 2 * opened);
        // The first stream still relays, unconnected.
        const auto p = sbc::dataplane::test::rtp_payload(2, 320);
        caller.send_to(ep(kRelay, 41600), p);
        relayed_after = relay_until(relay, callee, clock) == p;
    }
    REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    CHECK(twins_before_full == 8);
    // As many streams as without twins: every free descriptor became a media port (within one,
    // the count's own); had the eight twins stayed, four streams fewer would fit.
    CHECK(2 * opened + 2 >= limit - before);
    CHECK(relayed_after);
}

// The tests below use media ports 27000-27999 only.
namespace {
PipelineConfig burst_config() {
    auto cfg = PipelineConfig::defaults();
    cfg.media_port_min = 27000;
    cfg.media_port_max = 27999;
    cfg.stream_capacity = 1024;
    return cfg;
}

// Takes every datagram waiting on `u`; returns how many.
std::size_t drain(const Udp& u) {
    std::size_t n = 0;
    std::uint8_t buf[2048];
    while (::recv(u.fd, buf, sizeof buf, MSG_DONTWAIT) > 0) ++n;
    return n;
}
}  // namespace

TEST_CASE(
    "Socket relay: a thousand sockets fed faster than it relays: no buffer shortage, no loss") {
    const SocketIo io = GENERATE(SocketIo::uring, SocketIo::mmsg);
    INFO("io=" << socket_io_name(io));
    Pipeline pipeline(burst_config());
    SocketRelay relay(pipeline, SocketRelayConfig{io});
    REQUIRE(relay.io_mode() == io);
    sbc::base::SystemClock clock;
    // 499 streams, both legs receiving: 998 sockets, 8 datagrams each, 7,984 in all, about twice
    // the io_uring ring's 4,096 buffers. A relay whose kernel takes datagrams off the sockets
    // faster than it relays them runs out of buffers; the bare relay's recvmmsg never does.
    constexpr std::uint16_t kStreams = 499, kBurstPerSocket = 24;
    Udp caller(ep(kCaller, 27998));
    Udp callee(ep(kCallee, 27999));
    for (const Udp* u : {&caller, &callee}) {  // room for what the relay sends between drains
        const int bytes = 64 << 20;
        if (::setsockopt(u->fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
            (void)::setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    }
    for (std::uint16_t i = 0; i < kStreams; ++i)
        REQUIRE(
            relay.open_stream(mux_stream(static_cast<std::uint16_t>(27000 + 2 * i), 27998, 27999),
                              clock.monotonic()));
    CHECK(relay.open_sockets() == 2u * kStreams);
    relay.poll_once(0, clock);  // arms the receives
    // Another thread sends round after round to every socket, as fast as it can, while this
    // one relays: the relay falls behind and datagrams wait. A relay whose kernel takes them off
    // the sockets into ring buffers ahead of it runs out of buffers; the bare relay's recvmmsg
    // never does.
    std::atomic<std::size_t> sent{0};
    std::atomic<bool> done{false};
    std::thread sender([&] {
        for (std::uint16_t k = 1; k <= kBurstPerSocket; ++k) {
            const auto p = sbc::dataplane::test::rtp_payload(k, k * 160u);
            for (std::uint16_t i = 0; i < kStreams; ++i) {
                caller.send_to(ep(kRelay, static_cast<std::uint16_t>(27000 + 2 * i)), p);
                callee.send_to(ep(kRelay, static_cast<std::uint16_t>(27001 + 2 * i)), p);
                sent += 2;
            }
        }
        done = true;
    });
    std::size_t received = 0;
    const auto deadline = clock.monotonic() + 20 * sbc::base::kNanosPerSecond;
    for (int i = 0; i < 200000 && !(done && received == sent) && clock.monotonic() < deadline;
         ++i) {
        relay.poll_once(1, clock);
        received += drain(caller) + drain(callee);
    }
    sender.join();
    CHECK(received == sent);
    CHECK(relay.rx_buffer_shortages() == 0);
    CHECK(relay.tx_errors() == 0);
    CHECK(pipeline.counters().events[PipelineEvent::relayed] == sent);
}

TEST_CASE("Socket relay: wake() from another thread ends a long poll at once") {
    const SocketIo io = GENERATE(SocketIo::uring, SocketIo::mmsg);
    INFO("io=" << socket_io_name(io));
    Pipeline pipeline(burst_config());
    SocketRelay relay(pipeline, SocketRelayConfig{io});
    REQUIRE(relay.io_mode() == io);
    sbc::base::SystemClock clock;
    REQUIRE(relay.open_stream(mux_stream(27000, 27998, 27999), clock.monotonic()));
    relay.poll_once(0, clock);
    // Woken while it waits: the poll returns within well under its 2 s timeout.
    std::atomic<sbc::base::Nanos> woken_at{0};
    std::thread other([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        woken_at = clock.monotonic();
        relay.wake();
    });
    const auto start = clock.monotonic();
    std::size_t polls = 0;
    // A poll may return early for another reason (none expected on an idle relay): bounded.
    while (relay.wakeups() == 0 && polls < 5 && clock.monotonic() - start < 3'000'000'000) {
        relay.poll_once(2000, clock);
        ++polls;
    }
    const auto returned = clock.monotonic();
    other.join();
    CHECK(relay.wakeups() == 1);
    REQUIRE(woken_at.load() > 0);
    CHECK(returned - woken_at.load() < 100'000'000);  // 100 ms, on a loaded machine
    // Woken before it polls (several times): the next poll returns at once, one wake-up.
    relay.wake();
    relay.wake();
    const auto t0 = clock.monotonic();
    relay.poll_once(2000, clock);
    CHECK(clock.monotonic() - t0 < 100'000'000);
    CHECK(relay.wakeups() == 2);
    // And then it waits again.
    const auto t1 = clock.monotonic();
    relay.poll_once(200, clock);
    CHECK(clock.monotonic() - t1 >= 150'000'000);
    CHECK(relay.wakeups() == 2);
}
