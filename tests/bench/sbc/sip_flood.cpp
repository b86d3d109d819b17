// sbc-sip-flood: INVITEs from many spoofed IPv4 source addresses, as fast as the machine
// sends them (or paced), for the flood test and `scripts/bench flood`.
//
// Each packet is a whole IPv4/UDP datagram written through a raw socket (IP_HDRINCL): the
// source address is source_base + i for i in [0, sources), every INVITE has its own Call-ID,
// From tag, branch and caller, so to the SBC each is a stranger's first request. Datagrams go
// out in sendmmsg() bursts. Only loopback (127.0.0.0/8) and private (10/8, 172.16/12,
// 192.168/16) addresses are accepted, for the sources and the target alike: the generator is
// meant for a loopback interface or a network namespace the test created.
//
//   sbc-sip-flood --target 127.0.0.1:5060 [--sources 1000000] [--source-base 127.16.0.0]
//                 [--count N] [--seconds S] [--rate PER_SECOND] [--burst 64]
// Stops after N packets or S seconds, whichever comes first (both bounded; default: one
// packet per source, 60 s at most), or on SIGTERM/SIGINT (a test ends the flood when its calls
// are done). Prints one line: key=value pairs (sent, send_errors, seconds, rate).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

volatile std::sig_atomic_t stop_requested = 0;
extern "C" void request_stop(int) {
    stop_requested = 1;
}

constexpr std::size_t kMaxBurst = 256;
constexpr std::size_t kIpHeader = 20;
constexpr std::size_t kUdpHeader = 8;
constexpr std::size_t kMaxDatagram = 1400;

struct Options {
    std::uint32_t target_ip = 0;  // host order
    std::uint16_t target_port = 0;
    std::uint32_t source_base = 0x7f100000;  // 127.16.0.0
    std::uint32_t sources = 1000000;
    std::uint64_t count = 0;  // 0: one per source
    double seconds = 60.0;
    double rate = 0.0;  // 0: as fast as possible
    std::size_t burst = 64;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "sbc-sip-flood: %s\nusage: sbc-sip-flood --target IP:PORT [--sources N] "
                 "[--source-base IP] [--count N] [--seconds S] [--rate PER_SECOND] [--burst B]\n",
                 why);
    std::exit(2);
}

bool parse_ipv4(std::string_view text, std::uint32_t& out) {
    in_addr a{};
    const std::string s(text);
    if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
    out = ntohl(a.s_addr);
    return true;
}

// Loopback or RFC 1918: never an address that could leave the machine's own test networks.
bool contained(std::uint32_t ip) {
    return (ip >> 24) == 127 || (ip >> 24) == 10 || (ip >> 20) == 0xac1 || (ip >> 16) == 0xc0a8;
}

std::string dotted(std::uint32_t ip) {
    char b[INET_ADDRSTRLEN];
    std::snprintf(b, sizeof b, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255,
                  ip & 255);
    return b;
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (i + 1 >= argc) usage("missing value");
        const char* v = argv[++i];
        char* end = nullptr;
        if (a == "--target") {
            const std::string_view t = v;
            const auto colon = t.rfind(':');
            if (colon == std::string_view::npos || !parse_ipv4(t.substr(0, colon), o.target_ip))
                usage("--target wants IPv4:PORT");
            const long port = std::strtol(v + colon + 1, &end, 10);
            if (*end != '\0' || port < 1 || port > 65535) usage("bad target port");
            o.target_port = static_cast<std::uint16_t>(port);
        } else if (a == "--source-base") {
            if (!parse_ipv4(v, o.source_base)) usage("bad --source-base");
        } else if (a == "--sources") {
            const unsigned long n = std::strtoul(v, &end, 10);
            if (*end != '\0' || n < 1 || n > (1u << 24)) usage("--sources must be 1..16777216");
            o.sources = static_cast<std::uint32_t>(n);
        } else if (a == "--count") {
            o.count = std::strtoull(v, &end, 10);
            if (*end != '\0' || o.count < 1) usage("bad --count");
        } else if (a == "--seconds") {
            o.seconds = std::strtod(v, &end);
            if (*end != '\0' || !(o.seconds > 0 && o.seconds <= 3600)) usage("--seconds: 0..3600");
        } else if (a == "--rate") {
            o.rate = std::strtod(v, &end);
            if (*end != '\0' || o.rate < 0) usage("bad --rate");
        } else if (a == "--burst") {
            const unsigned long b = std::strtoul(v, &end, 10);
            if (*end != '\0' || b < 1 || b > kMaxBurst) usage("--burst must be 1..256");
            o.burst = b;
        } else {
            usage("unknown option");
        }
    }
    if (o.target_port == 0) usage("--target is required");
    if (!contained(o.target_ip)) usage("the target must be a loopback or private address");
    const std::uint64_t last = std::uint64_t{o.source_base} + o.sources - 1;
    if (last > 0xffffffffu || !contained(o.source_base) ||
        !contained(static_cast<std::uint32_t>(last)) ||
        (o.source_base >> 24) != (static_cast<std::uint32_t>(last) >> 24))
        usage("the sources must stay inside one loopback or private /8");
    if (o.count == 0) o.count = o.sources;
    return o;
}

// One datagram: IPv4 header (the kernel fills the checksum and the ID), UDP header with no
// checksum (allowed over IPv4, RFC 768), then the INVITE.
std::size_t build(std::uint8_t* out, const Options& o, std::uint32_t src, std::uint64_t n) {
    const std::uint16_t sport = static_cast<std::uint16_t>(5060 + (n % 1000));
    const std::string s = dotted(src);
    const std::string d = dotted(o.target_ip);
    static constexpr std::string_view kBody =
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    char* sip = reinterpret_cast<char*>(out + kIpHeader + kUdpHeader);
    const int len = std::snprintf(
        sip, kMaxDatagram - kIpHeader - kUdpHeader,
        "INVITE sip:+4420%07llu@%s:%u SIP/2.0\r\n"
        "Via: SIP/2.0/UDP %s:%u;branch=z9hG4bKf%llx;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:9%08llu@%s>;tag=f%llx\r\n"
        "To: <sip:+4420%07llu@%s>\r\n"
        "Call-ID: flood-%llx@%s\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:9%08llu@%s:%u>\r\n"
        "Content-Type: application/sdp\r\n"
        "Content-Length: %zu\r\n\r\n%.*s",
        static_cast<unsigned long long>(n % 10000000), d.c_str(), o.target_port, s.c_str(), sport,
        static_cast<unsigned long long>(n), static_cast<unsigned long long>(n % 100000000),
        s.c_str(), static_cast<unsigned long long>(n),
        static_cast<unsigned long long>(n % 10000000), d.c_str(),
        static_cast<unsigned long long>(n), s.c_str(),
        static_cast<unsigned long long>(n % 100000000), s.c_str(), sport, kBody.size(),
        static_cast<int>(kBody.size()), kBody.data());
    const std::size_t payload = static_cast<std::size_t>(std::max(len, 0));
    const std::size_t total = kIpHeader + kUdpHeader + payload;
    std::uint8_t* ip = out;
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2] = static_cast<std::uint8_t>(total >> 8);
    ip[3] = static_cast<std::uint8_t>(total);
    ip[4] = ip[5] = 0;  // ID: filled by the kernel
    ip[6] = 0x40;       // don't fragment
    ip[7] = 0;
    ip[8] = 64;  // TTL
    ip[9] = IPPROTO_UDP;
    ip[10] = ip[11] = 0;  // checksum: filled by the kernel
    const std::uint32_t sn = htonl(src), dn = htonl(o.target_ip);
    std::memcpy(ip + 12, &sn, 4);
    std::memcpy(ip + 16, &dn, 4);
    std::uint8_t* udp = ip + kIpHeader;
    const std::size_t ulen = kUdpHeader + payload;
    udp[0] = static_cast<std::uint8_t>(sport >> 8);
    udp[1] = static_cast<std::uint8_t>(sport);
    udp[2] = static_cast<std::uint8_t>(o.target_port >> 8);
    udp[3] = static_cast<std::uint8_t>(o.target_port);
    udp[4] = static_cast<std::uint8_t>(ulen >> 8);
    udp[5] = static_cast<std::uint8_t>(ulen);
    udp[6] = udp[7] = 0;
    return total;
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse_args(argc, argv);
    std::signal(SIGTERM, request_stop);
    std::signal(SIGINT, request_stop);
    const int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (fd < 0) {
        std::fprintf(stderr, "sbc-sip-flood: raw socket: %s (needs CAP_NET_RAW)\n",
                     std::strerror(errno));
        return 1;
    }
    const int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_addr.s_addr = htonl(o.target_ip);

    std::vector<std::array<std::uint8_t, kMaxDatagram>> bufs(o.burst);
    std::vector<iovec> iov(o.burst);
    std::vector<mmsghdr> msgs(o.burst);

    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration<double>(o.seconds);
    std::uint64_t sent = 0, errors = 0, n = 0;
    while (n < o.count && !stop_requested) {
        const auto now = Clock::now();
        if (now >= deadline) break;
        if (o.rate > 0) {
            const auto due = start + std::chrono::duration<double>(static_cast<double>(n) / o.rate);
            if (due > now) std::this_thread::sleep_for(due - now);
        }
        const std::size_t k =
            static_cast<std::size_t>(std::min<std::uint64_t>(o.burst, o.count - n));
        for (std::size_t j = 0; j < k; ++j, ++n) {
            const std::uint32_t src = o.source_base + static_cast<std::uint32_t>(n % o.sources);
            iov[j].iov_base = bufs[j].data();
            iov[j].iov_len = build(bufs[j].data(), o, src, n);
            msgs[j] = {};
            msgs[j].msg_hdr.msg_name = &dst;
            msgs[j].msg_hdr.msg_namelen = sizeof dst;
            msgs[j].msg_hdr.msg_iov = &iov[j];
            msgs[j].msg_hdr.msg_iovlen = 1;
        }
        std::size_t done = 0;
        int spins = 0;
        while (done < k && spins < 1000) {
            const int r = sendmmsg(fd, msgs.data() + done, static_cast<unsigned>(k - done), 0);
            if (r > 0) {
                done += static_cast<std::size_t>(r);
            } else if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
                ++spins;  // the loopback backlog is full: let the receiver catch up
                std::this_thread::yield();
            } else {
                break;
            }
        }
        sent += done;
        errors += k - done;
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("sent=%llu send_errors=%llu sources=%u seconds=%.3f rate=%.0f\n",
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(errors),
                static_cast<unsigned>(std::min<std::uint64_t>(o.sources, n)), secs,
                secs > 0 ? static_cast<double>(sent) / secs : 0.0);
    close(fd);
    return sent > 0 ? 0 : 1;
}
