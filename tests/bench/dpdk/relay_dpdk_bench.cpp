// relay-dpdk bench: packets per second through the DPDK backend on one worker lcore, with a
// realistic number of media streams (relay lookup, latching, RTP statistics, rewrite and
// checksum update for every frame).
//
//   relay_dpdk_bench --write-pcap FILE [--streams N] [--packets-per-stream K]
//       writes the RTP frames: K packets per leg of every stream, in time order (each stream's
//       sequence numbers 1..K and timestamps 160..160K, one 20 ms G.711 frame apart)
//   relay_dpdk_bench --pcap FILE [--streams N] [--seconds S] [--warmup S] [--burst B]
//       replays FILE forever (net_pcap infinite_rx: each frame is copied into an mbuf, as a NIC
//       would), relays every frame, and sends it out of the same vdev (net_pcap tx with no
//       tx file: the PMD frees the frames). Prints "relay_dpdk pps=... rx=... relayed=...".
//
// scripts/bench.d/relay-dpdk runs dpdk-testpmd in io forward mode on the same vdev and file.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/base.hpp"
#include "dataplane/dpdk/dpdk.hpp"
#include "dataplane/pipeline.hpp"
#include "tests/integration/dataplane/dpdk/frames.hpp"

namespace dp = sbc::dataplane;
namespace dpdk = sbc::dataplane::dpdk;
using namespace sbc::dpdk_test;

namespace {

// CPU time the worker lcore's thread has run (the first field of its schedstat, in ns): the
// forwarding thread's share of a shared machine varies from run to run, and packets per
// second of that thread's CPU time is the figure that load does not move.
std::uint64_t worker_cpu_ns() {
    std::uint64_t total = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(e.path() / "comm");
        std::string name;
        std::getline(comm, name);
        if (name.find("worker") == std::string::npos) continue;
        std::ifstream st(e.path() / "schedstat");
        std::uint64_t ns = 0;
        if (st >> ns) total += ns;
    }
    return total;
}

const Mac kRouterMac{0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
const Mac kSbcMac{0x02, 0x00, 0x00, 0x00, 0x00, 0x10};
const Ip4 kSbc{203, 0, 113, 10};
constexpr std::uint16_t kFirstPort = 30000;

// RFC 2544's benchmarking range 198.18.0.0/15: callers in 198.18/16, callees in 198.19/16.
Ip4 caller(unsigned i) {
    return {198, 18, static_cast<std::uint8_t>(i / 250), static_cast<std::uint8_t>(i % 250 + 1)};
}
Ip4 callee(unsigned i) {
    return {198, 19, static_cast<std::uint8_t>(i / 250), static_cast<std::uint8_t>(i % 250 + 1)};
}
std::uint16_t port_a(unsigned i) {
    return static_cast<std::uint16_t>(kFirstPort + 4 * i);
}
std::uint16_t port_b(unsigned i) {
    return static_cast<std::uint16_t>(kFirstPort + 4 * i + 2);
}
sbc::base::IpAddress ip(const Ip4& a) {
    return sbc::base::IpAddress::v4_bytes(a.data());
}

// Real streams: one SSRC per leg, K G.711 packets (20 ms, 160 bytes) per leg with increasing
// sequence numbers and timestamps, streams interleaved in time order. net_pcap's infinite_rx
// replays the file in a loop, so each leg's sequence goes back from K to 1 once per loop: with
// K - 1 > 100 (RFC 3550 A.1 MAX_MISORDER) that is a "very large jump", which the statistics
// resolve by resynchronising on the next packet; the other K - 2 packets of the loop take the
// in-order path, as a live stream does. (A shorter file would leave every packet after the first
// loop counted as reordered.)
constexpr unsigned kDefaultPacketsPerStream = 120;
std::vector<Bytes> frames(unsigned streams, unsigned per_stream) {
    std::vector<Bytes> out;
    out.reserve(2ull * streams * per_stream);
    for (unsigned k = 1; k <= per_stream; ++k) {
        const auto seq = static_cast<std::uint16_t>(k);
        const std::uint32_t ts = 160u * k;
        for (unsigned i = 0; i < streams; ++i) {
            out.push_back(udp4(kSbcMac, kRouterMac, caller(i), 4000, kSbc, port_a(i),
                               rtp(0x10000 + i, seq, ts, 160)));
            out.push_back(udp4(kSbcMac, kRouterMac, callee(i), 6000, kSbc, port_b(i),
                               rtp(0x20000 + i, seq, ts, 160)));
        }
    }
    return out;
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: relay_dpdk_bench --write-pcap FILE [--streams N] "
                 "[--packets-per-stream K]\n"
                 "       relay_dpdk_bench --pcap FILE [--streams N] [--seconds S] [--warmup S] "
                 "[--burst B]\n");
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    std::string write_path, pcap;
    unsigned streams = 1000, burst = 32, per_stream = kDefaultPacketsPerStream;
    unsigned mbufs = 32767;
    double seconds = 10, warmup = 2;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) usage();
        const std::string v = argv[++i];
        if (a == "--write-pcap")
            write_path = v;
        else if (a == "--pcap")
            pcap = v;
        else if (a == "--streams")
            streams = static_cast<unsigned>(std::stoul(v));
        else if (a == "--seconds")
            seconds = std::stod(v);
        else if (a == "--warmup")
            warmup = std::stod(v);
        else if (a == "--burst")
            burst = static_cast<unsigned>(std::stoul(v));
        else if (a == "--packets-per-stream")
            per_stream = static_cast<unsigned>(std::stoul(v));
        else if (a == "--mbufs")
            mbufs = static_cast<unsigned>(std::stoul(v));
        else
            usage();
    }
    if (streams == 0 || streams > 8000) {
        std::fprintf(stderr, "--streams must be 1..8000 (media ports 30000..61999)\n");
        return 2;
    }
    if (per_stream == 0 || per_stream > 60000) {
        std::fprintf(stderr, "--packets-per-stream must be 1..60000\n");
        return 2;
    }
    if (!write_path.empty()) {
        write_pcap(write_path, frames(streams, per_stream));
        return 0;
    }
    if (pcap.empty()) usage();

    auto pc = dp::PipelineConfig::defaults();
    pc.local_addresses = {ip(kSbc)};
    pc.media_port_min = kFirstPort;
    pc.media_port_max = 65000;
    pc.stream_capacity = streams + 16;
    dp::Pipeline pipeline(pc);
    sbc::base::SystemClock clock;
    std::vector<dp::StreamId> ids;
    for (unsigned i = 0; i < streams; ++i) {
        dp::StreamSpec s;
        s.call_id = i;
        s.a.local = {ip(kSbc), port_a(i)};
        s.a.remote = {ip(caller(i)), 4000};
        s.b.local = {ip(kSbc), port_b(i)};
        s.b.remote = {ip(callee(i)), 6000};
        auto r = pipeline.media().create(s, clock.monotonic());
        if (!r) {
            std::fprintf(stderr, "stream %u: %s\n", i, r.error().message.c_str());
            return 1;
        }
        ids.push_back(*r);
    }

    dpdk::BackendConfig cfg;
    cfg.eal_args = {"-l",
                    "0,1",
                    "--no-huge",
                    "--no-pci",
                    "-m",
                    "1536",
                    "--no-shconf",
                    "--file-prefix=sbc_bench" + std::to_string(getpid()),
                    "--log-level=*:warning",
                    "--vdev=net_pcap0,rx_pcap=" + pcap + ",infinite_rx=1"};
    cfg.ports = {{"net_pcap0", ""}};
    cfg.burst = static_cast<std::uint16_t>(burst);
    cfg.mbufs_per_port = mbufs;  // infinite_rx keeps a copy of every frame of the file
    auto backend = dpdk::Backend::create(cfg, pipeline);
    if (!backend) {
        std::fprintf(stderr, "DPDK backend did not start: %s\n", backend.error().message.c_str());
        return 1;
    }
    dpdk::StopCondition stop;
    stop.max_duration = sbc::base::seconds(warmup);
    (void)(*backend)->run(stop, clock);  // latching, caches, branch predictors
    stop.max_duration = sbc::base::seconds(seconds);
    const std::uint64_t cpu0 = worker_cpu_ns();
    const auto r = (*backend)->run(stop, clock);
    const std::uint64_t cpu1 = worker_cpu_ns();
    using C = dpdk::BackendCounter;
    const double secs = static_cast<double>(r.elapsed) / 1e9;
    const double pps = static_cast<double>(r.counters[C::relayed]) / secs;
    std::printf(
        "relay_dpdk streams=%u seconds=%.2f rx=%llu relayed=%llu dropped=%llu tx_full=%llu "
        "lcore=%u pps=%.0f worker_cpu_s=%.3f pps_per_cpu_s=%.0f\n",
        streams, secs, static_cast<unsigned long long>(r.counters[C::rx]),
        static_cast<unsigned long long>(r.counters[C::relayed]),
        static_cast<unsigned long long>(r.counters[C::dropped]),
        static_cast<unsigned long long>(r.drops[dpdk::BackendDrop::tx_full]), r.lcore, pps,
        static_cast<double>(cpu1 - cpu0) / 1e9,
        cpu1 > cpu0
            ? static_cast<double>(r.counters[C::relayed]) / (static_cast<double>(cpu1 - cpu0) / 1e9)
            : 0.0);
    // What the RTP statistics made of the streams: `expected` counts from each leg's last
    // resynchronisation (at most K per leg, the file's length), `lost` stays at 0 when every
    // packet took the in-order path; the same sequence number over and over would leave
    // expected at 1 per leg.
    std::uint64_t packets = 0, expected = 0;
    std::int64_t lost = 0;
    for (const auto& id : ids)
        if (auto st = pipeline.media().stats(id)) {
            for (const auto* leg : {&st->a, &st->b}) {
                packets += leg->packets;
                expected += leg->expected;
                lost += leg->lost;
            }
        }
    std::printf("rtp_stats legs=%zu packets=%llu expected=%llu lost=%lld\n", 2 * ids.size(),
                static_cast<unsigned long long>(packets), static_cast<unsigned long long>(expected),
                static_cast<long long>(lost));
    backend->reset();
    dpdk::shutdown_eal();
    // Every frame is media of a known stream: anything not relayed is a bug, not a figure.
    return r.counters[C::relayed] == r.counters[C::rx] ? 0 : 1;
}
