// relay-socket benchmark: packets per second one relay core forwards at < 0.1% loss.
//
// The relay under test is pinned to one CPU; the generator and the sink share the other. Relays:
// ours (SocketRelay in a child process), rtpengine in userspace mode (sessions set up through
// its ng control protocol), and `bare` (tests/bench/dataplane/bare_relay.cpp: epoll +
// recvmmsg/sendmmsg and a flat table, nothing else: the ceiling a userspace relay can reach on
// this kernel). `--peer direct` sends straight to the sink: the generator/sink ceiling.
//
// The load is real RTP streams: each stream has its own SSRC, its sequence number goes up by
// one and its timestamp by 160 per packet, and it sends one packet every `--ptime-ms` (20 ms,
// G.711), so a rate point of R packets/s is R * ptime streams (100 kpps = 2000 streams). The
// generator sends the streams round robin from one socket with sendmmsg (each stream's packet
// pre-built; only its sequence number and timestamp are written per packet), paced so that
// every stream is exactly one ptime apart. Before each point the streams start one after the
// other over one second (calls arriving, not a step: rtpengine drops a stream for good after
// repeated socket overflows).
//
// Two sinks. `--sink socket` (default): a UDP socket on loopback, counted with recvmmsg; on
// loopback the sink's whole receive path (netif_rx, process_backlog, ip_rcv, udp_rcv) runs on the
// sending core, so the relay core also pays the sink's receive work. `--sink wire` models a NIC:
// the sink address is routed to a network device whose driver counts and frees what it is given
// (`--sink-dev`, set up by scripts/bench.d/relay-socket inside its own network namespace), and
// what reached the sink is the growth of the device's counters over the measured phase.
//
//   bench_relay_socket --peer ours|rtpengine|bare|direct --rates 100000,200000 --seconds 3
//       [--ptime-ms 20] [--sink socket|wire] [--sink-dev sink0] [--bare PATH]
//       [--relay-addr A --rtpengine-addr A --gen-addr A --sink-addr A]
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/pipeline.hpp"
#include "dataplane/socket_backend.hpp"

using namespace sbc;

namespace {
constexpr const char* kDefaultRelayAddr = "127.0.88.1";
constexpr const char* kDefaultRtpengineAddr = "127.0.88.2";
constexpr const char* kDefaultGenAddr = "127.0.88.3";
constexpr const char* kDefaultSinkAddr = "127.0.88.4";
constexpr std::uint16_t kGenPort = 40000, kSinkPort = 40002, kNgPort = 22223;
// Ours and bare: stream i on ports base+4i (from the generator) and base+4i+2 (to the sink),
// RTCP multiplexed (RFC 5761), so a stream costs two sockets and ~9,900 streams fit in the
// open-file limit of 20,000.
constexpr std::uint16_t kOurPortBase = 20000;
constexpr int kMaxStreams = 9800;

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

sockaddr_in sa_of(const char* ip, std::uint16_t port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, ip, &sa.sin_addr);
    return sa;
}

int udp_socket(const char* ip, std::uint16_t port, int buf) {
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (buf) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
    }
    auto sa = sa_of(ip, port);
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        std::perror("bind");
        std::exit(1);
    }
    return fd;
}

// Where each party lives; outside loopback only inside a network namespace the script creates.
struct BenchAddrs {
    std::string relay = kDefaultRelayAddr;
    std::string rtpengine = kDefaultRtpengineAddr;
    std::string gen = kDefaultGenAddr;
    std::string sink = kDefaultSinkAddr;
};
BenchAddrs g_addr;

// Packets the wire sink's driver has taken from the stack. A dummy device counts them as
// tx_packets; an ifb device (what this kernel has when dummy is not built) counts a packet
// transmitted to it without a tc redirect as received and dropped (ifb_xmit), so it shows up in
// rx_dropped. Nothing else sends on or receives from the sink device, so the sum counts exactly
// the packets that reached it. The 32-bit rtnl_link_stats are enough: callers take differences
// modulo 2^32 over a few seconds.
std::uint32_t wire_sink_packets(const std::string& dev) {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) {
        std::perror("getifaddrs");
        std::exit(1);
    }
    bool found = false;
    std::uint32_t packets = 0;
    for (const ifaddrs* a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || a->ifa_addr->sa_family != AF_PACKET || !a->ifa_data ||
            dev != a->ifa_name)
            continue;
        const auto* st = static_cast<const rtnl_link_stats*>(a->ifa_data);
        packets = st->tx_packets + st->rx_dropped;
        found = true;
    }
    freeifaddrs(list);
    if (!found) {
        std::fprintf(stderr,
                     "sink device %s not found (run through scripts/bench.d/relay-socket "
                     "with SINK=wire)\n",
                     dev.c_str());
        std::exit(1);
    }
    return packets;
}

volatile sig_atomic_t g_stop = 0;
void on_term(int) {
    g_stop = 1;
}

// Our relay in a child process: one stream per pair of port pairs.
pid_t start_ours(int streams, int relay_cpu, int ready_fd) {
    const pid_t pid = fork();
    if (pid != 0) return pid;
    pin(relay_cpu);
    signal(SIGTERM, on_term);
    auto cfg = dataplane::PipelineConfig::defaults();
    cfg.media_port_min = kOurPortBase;
    cfg.media_port_max = static_cast<std::uint16_t>(kOurPortBase + 4 * streams + 4);
    cfg.stream_capacity = static_cast<std::uint32_t>(streams) + 16;
    dataplane::Pipeline pipeline(cfg);
    dataplane::SocketRelay relay(pipeline);
    base::SystemClock clock;
    const auto relay_ip = *base::IpAddress::parse(g_addr.relay);
    for (int i = 0; i < streams; ++i) {
        dataplane::StreamSpec s;
        s.call_id = static_cast<std::uint64_t>(i);
        s.rtcp_mux = true;
        s.a.local = {relay_ip, static_cast<std::uint16_t>(kOurPortBase + 4 * i)};
        s.a.remote = {*base::IpAddress::parse(g_addr.gen), kGenPort};
        s.b.local = {relay_ip, static_cast<std::uint16_t>(kOurPortBase + 4 * i + 2)};
        s.b.remote = {*base::IpAddress::parse(g_addr.sink), kSinkPort};
        if (!relay.open_stream(s, clock.monotonic())) _exit(3);
    }
    // Ready, and which I/O mode the default (auto) picked: 'u' io_uring, 'm' recvmmsg.
    char c = relay.io_mode() == dataplane::SocketIo::uring ? 'u' : 'm';
    if (write(ready_fd, &c, 1) != 1) _exit(4);
    while (!g_stop) relay.poll(50, clock);
    const auto& k = pipeline.counters();
    std::fprintf(stderr,
                 "  ours: relayed=%llu tx_failed=%llu latch_rejected=%llu sockets=%zu "
                 "rx_buffer_shortages=%llu\n",
                 static_cast<unsigned long long>(k.events[dataplane::PipelineEvent::relayed]),
                 static_cast<unsigned long long>(k.drops[dataplane::DropReason::tx_failed]),
                 static_cast<unsigned long long>(k.drops[dataplane::DropReason::latch_rejected]),
                 relay.open_sockets(),
                 static_cast<unsigned long long>(relay.rx_buffer_shortages()));
    _exit(0);
}

// The bare relay (bare_relay.cpp), pinned like the others; it writes one byte to ready_fd once
// its sockets are bound.
pid_t start_bare(const std::string& path, int streams, int relay_cpu, int ready_fd) {
    const pid_t pid = fork();
    if (pid != 0) return pid;
    pin(relay_cpu);
    const std::string n = std::to_string(streams), base = std::to_string(kOurPortBase),
                      sink_port = std::to_string(kSinkPort), fd = std::to_string(ready_fd);
    execl(path.c_str(), path.c_str(), "--addr", g_addr.relay.c_str(), "--port-base", base.c_str(),
          "--streams", n.c_str(), "--dest", g_addr.sink.c_str(), "--dest-port", sink_port.c_str(),
          "--ready-fd", fd.c_str(), static_cast<char*>(nullptr));
    std::perror("exec bare_relay");
    _exit(127);
}

// rtpengine as Debian ships it, in userspace mode, pinned (docs/peers.md).
pid_t start_rtpengine(int relay_cpu) {
    const pid_t pid = fork();
    if (pid != 0) return pid;
    pin(relay_cpu);
    const std::string iface = "--interface=" + g_addr.rtpengine;
    const std::string ng = "--listen-ng=" + g_addr.rtpengine + ":" + std::to_string(kNgPort);
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execlp("rtpengine", "rtpengine", "--table=-1", "--num-threads=1", "--config-file=none",
           "--delete-delay=0", iface.c_str(), ng.c_str(), "--port-min=20000", "--port-max=65000",
           "--foreground", "--log-stderr", "--log-level=3", static_cast<char*>(nullptr));
    _exit(127);
}

std::string bstr(const std::string& s) {
    return std::to_string(s.size()) + ":" + s;
}

// One ng request (bencode over UDP, "cookie <dict>"); returns the RTP port in the reply's SDP.
int ng_request(int fd, const std::string& cookie, const std::string& dict) {
    const std::string msg = cookie + " " + dict;
    auto to = sa_of(g_addr.rtpengine.c_str(), kNgPort);
    for (int attempt = 0; attempt < 50; ++attempt) {
        sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        char buf[4096];
        for (int wait = 0; wait < 20; ++wait) {
            pollfd pf{fd, POLLIN, 0};
            if (poll(&pf, 1, 10) <= 0) continue;
            const ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
            if (n > 0) {
                buf[n] = 0;
                if (std::strncmp(buf, cookie.c_str(), cookie.size()) != 0) continue;
                const char* m = std::strstr(buf, "m=audio ");
                if (!m || !std::strstr(buf, "result2:ok")) {
                    std::fprintf(stderr, "ng error: %s\n", buf);
                    return -1;
                }
                return std::atoi(m + 8);
            }
        }
    }
    return -1;
}

// offer (caller = generator) and answer (callee = sink); returns the port the caller sends to.
// Messages are built by appending: GCC 12 warns falsely (-Wrestrict) on `"d" + std::string`.
int rtpengine_session(int ng_fd, int i) {
    const std::string index = std::to_string(i);
    const std::string call = std::string("bench-").append(index);
    auto sdp = [](const std::string& ip, int port) {
        std::string s = "v=0\r\no=- 1 1 IN IP4 ";
        s += ip;
        s += "\r\ns=-\r\nc=IN IP4 ";
        s += ip;
        s += "\r\nt=0 0\r\nm=audio ";
        s += std::to_string(port);
        s += " RTP/AVP 0\r\na=rtcp-mux\r\n";
        return s;
    };
    auto dict = [](std::initializer_list<std::string> items) {
        std::string d = "d";
        for (const auto& item : items) d += bstr(item);
        d += "e";
        return d;
    };
    const std::string offer = dict({"command", "offer", "call-id", call, "from-tag", "caller",
                                    "sdp", sdp(g_addr.gen, kGenPort)});
    if (ng_request(ng_fd, std::string("o").append(index), offer) < 0) return -1;
    const std::string answer = dict({"command", "answer", "call-id", call, "from-tag", "caller",
                                     "to-tag", "callee", "sdp", sdp(g_addr.sink, kSinkPort)});
    return ng_request(ng_fd, std::string("a").append(index), answer);
}

struct Point {
    std::uint64_t sent = 0, received = 0, send_errors = 0;
    double seconds = 0;
};

// The streams the generator plays: one pre-built 172-byte RTP packet per stream (version 2,
// PT 0, its own SSRC, 160 bytes of payload), whose sequence number and timestamp are advanced
// in place for every packet sent.
struct Streams {
    static constexpr std::size_t kPacket = 172;
    std::vector<std::uint8_t> packets;  // stream i at i * kPacket
    std::vector<std::uint16_t> seq;
    std::vector<std::uint32_t> ts;
    std::vector<sockaddr_in> targets;

    explicit Streams(std::vector<sockaddr_in> to) : targets(std::move(to)) {
        const std::size_t n = targets.size();
        packets.assign(n * kPacket, 0xd5);
        seq.resize(n);
        ts.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            std::uint8_t* p = &packets[i * kPacket];
            p[0] = 0x80;
            p[1] = 0;
            const auto ssrc = static_cast<std::uint32_t>(0x5bc00000u + i);
            p[8] = static_cast<std::uint8_t>(ssrc >> 24);
            p[9] = static_cast<std::uint8_t>(ssrc >> 16);
            p[10] = static_cast<std::uint8_t>(ssrc >> 8);
            p[11] = static_cast<std::uint8_t>(ssrc);
            seq[i] = static_cast<std::uint16_t>(1000 + 7 * i);  // random-looking start (RFC 3550)
            ts[i] = static_cast<std::uint32_t>(160000u * i);
        }
    }
    // The next packet of stream i: sequence and timestamp written, then advanced.
    std::uint8_t* next(std::size_t i) {
        std::uint8_t* p = &packets[i * kPacket];
        p[2] = static_cast<std::uint8_t>(seq[i] >> 8);
        p[3] = static_cast<std::uint8_t>(seq[i]);
        p[4] = static_cast<std::uint8_t>(ts[i] >> 24);
        p[5] = static_cast<std::uint8_t>(ts[i] >> 16);
        p[6] = static_cast<std::uint8_t>(ts[i] >> 8);
        p[7] = static_cast<std::uint8_t>(ts[i]);
        ++seq[i];
        ts[i] += 160;
        return p;
    }
};

// Paced generator + sink on this core (sent/received: this phase's, for the phases' sum): every
// stream sends one packet per `ptime`, the streams spread evenly over it (packet k at start + k /
// rate goes to stream k mod n). With `ramp_s` > 0 stream i starts only at i / n * ramp_s (its slots
// before that are skipped, not sent), so the load grows from 0 to the full rate over the ramp. The
// sink is either a socket (sink_fd >= 0, drained here) or the device `wire_dev` (sink_fd < 0),
// whose counter is read before the load and after the drain.
Point run_load(int gen_fd, int sink_fd, const std::string& wire_dev, Streams& st, double ptime_s,
               double seconds, double ramp_s) {
    constexpr int kBurst = 64;
    const std::size_t n_streams = st.targets.size();
    const double rate = static_cast<double>(n_streams) / ptime_s;
    // A burst must not hold two packets of one stream (they share the stream's buffer).
    const auto burst = static_cast<int>(std::min<std::size_t>(kBurst, n_streams));
    mmsghdr tx[kBurst];
    iovec tx_iov[kBurst];
    mmsghdr rx[kBurst];
    iovec rx_iov[kBurst];
    static std::uint8_t rxbuf[kBurst][256];
    for (int i = 0; i < kBurst; ++i) {
        rx_iov[i] = {rxbuf[i], sizeof rxbuf[i]};
        rx[i] = {};
        rx[i].msg_hdr.msg_iov = &rx_iov[i];
        rx[i].msg_hdr.msg_iovlen = 1;
    }
    Point pt;
    std::uint64_t slot = 0;  // next slot k: stream k mod n, due at k / rate
    const double start = now_s();
    double t = 0;
    const std::uint32_t wire_before = sink_fd < 0 ? wire_sink_packets(wire_dev) : 0;
    auto drain = [&]() {
        if (sink_fd < 0) return;
        for (;;) {
            const int n = recvmmsg(sink_fd, rx, kBurst, MSG_DONTWAIT, nullptr);
            if (n <= 0) break;
            pt.received += static_cast<std::uint64_t>(n);
        }
    };
    while ((t = now_s() - start) < seconds) {
        const auto due = static_cast<std::uint64_t>(rate * t);
        bool full = false;
        while (slot < due && !full) {
            int msgs = 0;
            std::uint64_t k = slot;
            // At most one slot per stream in a burst: slots skipped during the ramp must not
            // let a stream's next slot in, or both would send the stream's latest packet.
            for (; k < due && msgs < burst && k - slot < n_streams; ++k) {
                const std::size_t i = k % n_streams;
                if (ramp_s > 0 &&
                    t < ramp_s * static_cast<double>(i) / static_cast<double>(n_streams))
                    continue;  // not started yet
                tx_iov[msgs] = {st.next(i), Streams::kPacket};
                tx[msgs] = {};
                tx[msgs].msg_hdr.msg_iov = &tx_iov[msgs];
                tx[msgs].msg_hdr.msg_iovlen = 1;
                tx[msgs].msg_hdr.msg_name = &st.targets[i];
                tx[msgs].msg_hdr.msg_namelen = sizeof(sockaddr_in);
                ++msgs;
            }
            slot = k;
            if (msgs == 0) continue;
            int r = sendmmsg(gen_fd, tx, static_cast<unsigned>(msgs), 0);
            if (r < 0) {
                if (errno != EAGAIN && errno != ENOBUFS)
                    pt.send_errors += static_cast<std::uint64_t>(msgs);
                r = 0;
            }
            // What the kernel did not take (a full send buffer) is not offered: those slots
            // are skipped, as packets lost before the relay would be, and the offered rate
            // falls short of the target (reported as generator-limited).
            if (r < msgs) full = true;
            pt.sent += static_cast<std::uint64_t>(r);
            drain();
        }
        drain();
    }
    pt.seconds = now_s() - start;
    const double end = now_s() + 0.3;
    if (sink_fd >= 0) {
        while (now_s() < end) drain();
    } else {
        std::this_thread::sleep_for(std::chrono::duration<double>(end - now_s()));
        pt.received = static_cast<std::uint32_t>(wire_sink_packets(wire_dev) - wire_before);
    }
    return pt;
}

std::vector<double> parse_rates(const char* s) {
    std::vector<double> out;
    while (*s) {
        out.push_back(std::atof(s));
        const char* c = std::strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
    return out;
}
}  // namespace

// --fit N [--mux]: opens as many of N streams as the open-file limit allows and reports the
// count, the sockets and the process's memory (the socket relay's capacity on this machine).
int fit(int streams, bool mux) {
    FILE* statm = std::fopen("/proc/self/statm", "r");  // opened before the limit is reached
    auto cfg = dataplane::PipelineConfig::defaults();
    cfg.media_port_min = 20000;
    cfg.media_port_max = 60000;
    cfg.stream_capacity = static_cast<std::uint32_t>(streams);
    dataplane::Pipeline pipeline(cfg);
    dataplane::SocketRelay relay(pipeline);
    base::SystemClock clock;
    const auto ip = *base::IpAddress::parse(kDefaultRelayAddr);
    int opened = 0;
    std::string why;
    const int step = mux ? 2 : 4;
    for (int i = 0; i < streams; ++i) {
        dataplane::StreamSpec s;
        s.rtcp_mux = mux;
        s.a.local = {ip, static_cast<std::uint16_t>(20000 + step * i)};
        s.a.remote = {*base::IpAddress::parse(kDefaultGenAddr), kGenPort};
        s.b.local = {ip, static_cast<std::uint16_t>(20000 + step * i + step / 2)};
        s.b.remote = {*base::IpAddress::parse(kDefaultSinkAddr), kSinkPort};
        auto id = relay.open_stream(s, clock.monotonic());
        if (!id) {
            why = id.error().message;
            break;
        }
        ++opened;
    }
    long rss = 0;
    if (statm) {
        long size = 0, pages = 0;
        std::rewind(statm);
        if (std::fscanf(statm, "%ld %ld", &size, &pages) == 2) rss = pages * 4;
        std::fclose(statm);
    }
    std::printf("fit mux=%d streams_opened=%d sockets=%zu rss_kb=%ld stop=\"%s\"\n", mux ? 1 : 0,
                opened, relay.open_sockets(), rss, why.c_str());
    return 0;
}

int main(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == "--fit")
            return fit(std::atoi(argv[i + 1]), argc > i + 2 && std::string(argv[i + 2]) == "--mux");
    std::string peer = "ours";
    std::vector<double> rates{50000, 100000, 150000, 200000};
    double seconds = 3, ptime_ms = 20;
    int relay_cpu = 0, load_cpu = 1;
    std::string sink = "socket", sink_dev = "sink0";
    // bare_relay is built next to this program.
    std::string bare_path = std::string(argv[0]);
    bare_path = bare_path.substr(0, bare_path.find_last_of('/') + 1) + "bare_relay";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--peer")
            peer = argv[i + 1];
        else if (k == "--rates")
            rates = parse_rates(argv[i + 1]);
        else if (k == "--seconds")
            seconds = std::atof(argv[i + 1]);
        else if (k == "--ptime-ms")
            ptime_ms = std::atof(argv[i + 1]);
        else if (k == "--relay-cpu")
            relay_cpu = std::atoi(argv[i + 1]);
        else if (k == "--load-cpu")
            load_cpu = std::atoi(argv[i + 1]);
        else if (k == "--sink")
            sink = argv[i + 1];
        else if (k == "--sink-dev")
            sink_dev = argv[i + 1];
        else if (k == "--bare")
            bare_path = argv[i + 1];
        else if (k == "--relay-addr")
            g_addr.relay = argv[i + 1];
        else if (k == "--rtpengine-addr")
            g_addr.rtpengine = argv[i + 1];
        else if (k == "--gen-addr")
            g_addr.gen = argv[i + 1];
        else if (k == "--sink-addr")
            g_addr.sink = argv[i + 1];
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (sink != "socket" && sink != "wire") {
        std::fprintf(stderr, "--sink socket|wire\n");
        return 2;
    }
    if (peer != "ours" && peer != "rtpengine" && peer != "bare" && peer != "direct") {
        std::fprintf(stderr, "--peer ours|rtpengine|bare|direct\n");
        return 2;
    }
    if (ptime_ms < 1 || ptime_ms > 1000) {
        std::fprintf(stderr, "--ptime-ms 1..1000\n");
        return 2;
    }
    const double ptime_s = ptime_ms / 1000;
    const bool wire = sink == "wire";
    if (wire) wire_sink_packets(sink_dev);  // fails early when the device is missing
    pin(load_cpu);
    signal(SIGPIPE, SIG_IGN);
    double best = 0;
    int failures = 0;
    for (double rate : rates) {
        const int streams = static_cast<int>(rate * ptime_s + 0.5);
        if (streams < 1 || streams > kMaxStreams) {
            std::fprintf(stderr, "rate %.0f: %d streams of %.0f ms, must be 1..%d\n", rate, streams,
                         ptime_ms, kMaxStreams);
            return 2;
        }
        pid_t child = -1;
        const char* io_note = "";  // ours: the socket relay's I/O mode
        std::vector<sockaddr_in> targets;
        const int gen_fd = udp_socket(g_addr.gen.c_str(), kGenPort, 8 << 20);
        const int sink_fd = wire ? -1 : udp_socket(g_addr.sink.c_str(), kSinkPort, 32 << 20);
        if (peer == "ours" || peer == "bare") {
            int pfd[2];
            if (pipe(pfd) != 0) return 1;
            child = peer == "ours" ? start_ours(streams, relay_cpu, pfd[1])
                                   : start_bare(bare_path, streams, relay_cpu, pfd[1]);
            close(pfd[1]);
            char c;
            if (read(pfd[0], &c, 1) != 1) {
                std::fprintf(stderr, "%s relay failed to start\n", peer.c_str());
                return 1;
            }
            if (peer == "ours") io_note = c == 'u' ? " io=uring" : " io=mmsg";
            close(pfd[0]);
            for (int i = 0; i < streams; ++i)
                targets.push_back(
                    sa_of(g_addr.relay.c_str(), static_cast<std::uint16_t>(kOurPortBase + 4 * i)));
        } else if (peer == "rtpengine") {
            child = start_rtpengine(relay_cpu);
            const int ng_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
            usleep(300000);
            for (int i = 0; i < streams; ++i) {
                const int port = rtpengine_session(ng_fd, i);
                if (port <= 0) {
                    std::fprintf(stderr,
                                 "rtpengine: session %d failed (is rtpengine-daemon installed?)\n",
                                 i);
                    kill(child, SIGKILL);
                    waitpid(child, nullptr, 0);
                    return 2;
                }
                targets.push_back(
                    sa_of(g_addr.rtpengine.c_str(), static_cast<std::uint16_t>(port)));
            }
            close(ng_fd);
        } else {
            for (int i = 0; i < streams; ++i)
                targets.push_back(sa_of(g_addr.sink.c_str(), kSinkPort));
        }
        Streams st(std::move(targets));
        // The streams start one after the other over 1 s, then all run 0.5 s before measuring.
        // Loss is counted over both phases: when a relay falls behind, packets sent during the
        // ramp still arrive in the measured phase, and counting phases apart would credit them
        // to it.
        const Point ramp = run_load(gen_fd, sink_fd, sink_dev, st, ptime_s, 1.5, 1.0);
        const Point p = run_load(gen_fd, sink_fd, sink_dev, st, ptime_s, seconds, 0);
        const std::uint64_t sent_all = ramp.sent + p.sent;
        const std::uint64_t received_all = ramp.received + p.received;
        const double loss =
            sent_all ? 1.0 - static_cast<double>(received_all) / static_cast<double>(sent_all)
                     : 1.0;
        const double offered = static_cast<double>(p.sent) / p.seconds;
        const bool gen_limited = offered < 0.98 * rate;
        std::printf(
            "peer=%s streams=%d ptime_ms=%.0f rate=%.0f offered=%.0f sent=%llu received=%llu "
            "loss=%.4f%% send_errors=%llu sink=%s%s%s\n",
            peer.c_str(), streams, ptime_ms, rate, offered, static_cast<unsigned long long>(p.sent),
            static_cast<unsigned long long>(p.received), loss * 100,
            static_cast<unsigned long long>(p.send_errors), sink.c_str(),
            gen_limited ? " (generator-limited)" : "", io_note);
        std::fflush(stdout);
        if (child > 0) {
            kill(child, SIGTERM);
            waitpid(child, nullptr, 0);
        }
        close(gen_fd);
        if (sink_fd >= 0) close(sink_fd);
        // The figure is what got through at < 0.1% loss, whether or not the generator reached
        // the target (a generator-limited point is flagged in the line above).
        if (loss < 0.001) {
            best = std::max(best, offered);
            failures = 0;
        } else if (++failures >= 2) {
            break;
        }
    }
    std::printf("best peer=%s pps=%.0f\n", peer.c_str(), best);
    return 0;
}
