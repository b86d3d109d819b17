// sbc-dpdk-replay: runs the DPDK backend over a capture with net_pcap vdevs, the way the demo
// and operators use it to see what the fast path does with given traffic:
//
//   sbc-dpdk-replay --in IN.pcap --out OUT.pcap --kernel-out KERNEL.pcap --local 203.0.113.10
//                   --stream 30000=198.51.100.20:4000,30002=192.0.2.30:6000 [--seconds 2]
//
// Frames of IN go through the backend exactly as from a NIC; relayed media is written to OUT,
// what the host stack would get (SIP, ARP, ICMP for --local) to KERNEL. Prints the counters.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/base.hpp"
#include "dataplane/dataplane.hpp"
#include "dataplane/dpdk/dpdk.hpp"

namespace dp = sbc::dataplane;
namespace dpdk = sbc::dataplane::dpdk;

namespace {

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "sbc-dpdk-replay: %s\n"
                 "usage: sbc-dpdk-replay --in IN.pcap --out OUT.pcap --kernel-out KERNEL.pcap\n"
                 "         --local ADDR [--local ADDR...]\n"
                 "         [--stream A_PORT=A_PEER:PORT,B_PORT=B_PEER:PORT ...] [--seconds S]\n",
                 why);
    std::exit(2);
}

sbc::base::Endpoint endpoint(const std::string& text) {
    const auto e = sbc::base::Endpoint::parse(text);
    if (!e) usage(("not ADDR:PORT: " + text).c_str());
    return *e;
}

// "30000=198.51.100.20:4000" -> our port and the peer.
void leg(const std::string& text, const sbc::base::IpAddress& local, dp::LegSpec& out) {
    const auto eq = text.find('=');
    if (eq == std::string::npos) usage(("not PORT=PEER:PORT: " + text).c_str());
    out.local = {local, static_cast<std::uint16_t>(std::stoul(text.substr(0, eq)))};
    out.remote = endpoint(text.substr(eq + 1));
}

bool write_empty_pcap(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    const std::uint32_t header[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
    const bool ok = std::fwrite(header, sizeof header, 1, f) == 1;
    return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
    std::string in, out, kernel_out;
    std::vector<sbc::base::IpAddress> locals;
    std::vector<std::string> streams;
    double seconds = 2;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") usage("help");
        if (i + 1 >= argc) usage(("missing value for " + a).c_str());
        const std::string v = argv[++i];
        if (a == "--in") {
            in = v;
        } else if (a == "--out") {
            out = v;
        } else if (a == "--kernel-out") {
            kernel_out = v;
        } else if (a == "--local") {
            auto ip = sbc::base::IpAddress::parse(v);
            if (!ip) usage(("bad address: " + v).c_str());
            locals.push_back(*ip);
        } else if (a == "--stream") {
            streams.push_back(v);
        } else if (a == "--seconds") {
            seconds = std::stod(v);
        } else {
            usage(("unknown option " + a).c_str());
        }
    }
    if (in.empty() || out.empty() || kernel_out.empty() || locals.empty())
        usage("--in, --out, --kernel-out and --local are required");

    auto pc = dp::PipelineConfig::defaults();
    pc.local_addresses = locals;
    dp::Pipeline pipeline(pc);
    for (const auto& s : streams) {
        const auto comma = s.find(',');
        if (comma == std::string::npos) usage(("stream needs two legs: " + s).c_str());
        dp::StreamSpec spec;
        leg(s.substr(0, comma), locals[0], spec.a);
        leg(s.substr(comma + 1), locals[0], spec.b);
        if (auto r = pipeline.media().create(spec, 0); !r) {
            std::fprintf(stderr, "stream %s: %s\n", s.c_str(), r.error().message.c_str());
            return 1;
        }
    }

    // The exception port's "host stack" is a capture here: nothing comes back from it.
    const std::string kernel_in = kernel_out + ".empty-rx.pcap";
    if (!write_empty_pcap(kernel_in)) {
        std::fprintf(stderr, "cannot write %s\n", kernel_in.c_str());
        return 1;
    }
    dpdk::BackendConfig cfg;
    cfg.eal_args = {"-l",
                    "0,1",
                    "--no-huge",
                    "--no-pci",
                    "-m",
                    "256",
                    "--no-shconf",
                    "--file-prefix=sbc_replay" + std::to_string(getpid()),
                    "--log-level=*:error",
                    "--vdev=net_pcap0,rx_pcap=" + in + ",tx_pcap=" + out,
                    "--vdev=net_pcap1,rx_pcap=" + kernel_in + ",tx_pcap=" + kernel_out};
    cfg.ports = {{"net_pcap0", "net_pcap1"}};
    cfg.mbufs_per_port = 2047;
    cfg.rx_descriptors = cfg.tx_descriptors = 256;
    auto backend = dpdk::Backend::create(cfg, pipeline);
    if (!backend) {
        std::fprintf(stderr, "DPDK backend did not start: %s\n", backend.error().message.c_str());
        std::remove(kernel_in.c_str());
        return 1;
    }
    sbc::base::SystemClock clock;
    dpdk::StopCondition stop;
    stop.max_duration = sbc::base::seconds(seconds);
    stop.idle_polls = 100000;  // the capture is exhausted
    const dpdk::RunResult r = (*backend)->run(stop, clock);
    backend->reset();
    dpdk::shutdown_eal();
    std::remove(kernel_in.c_str());

    std::printf("dpdk backend: worker lcore %u, %.3f s, %zu stream(s)\n", r.lcore,
                static_cast<double>(r.elapsed) / 1e9, pipeline.media().active());
    for (std::size_t i = 0; i < dpdk::kBackendCounterCount; ++i) {
        const auto c = static_cast<dpdk::BackendCounter>(i);
        if (c == dpdk::BackendCounter::polls || c == dpdk::BackendCounter::empty_polls) continue;
        std::printf("  %-22s %10llu  %s\n", std::string(name(c)).c_str(),
                    static_cast<unsigned long long>(r.counters[c]),
                    std::string(description(c)).c_str());
    }
    std::printf("drops by reason:\n");
    for (std::size_t i = 0; i < dp::kDropReasonCount; ++i) {
        const auto d = static_cast<dp::DropReason>(i);
        if (r.pipeline_drops[d] == 0) continue;
        std::printf("  %-22s %10llu  %s\n", std::string(name(d)).c_str(),
                    static_cast<unsigned long long>(r.pipeline_drops[d]),
                    std::string(description(d)).c_str());
    }
    for (std::size_t i = 0; i < dpdk::kBackendDropCount; ++i) {
        const auto d = static_cast<dpdk::BackendDrop>(i);
        if (r.drops[d] == 0) continue;
        std::printf("  %-22s %10llu  %s\n", std::string(name(d)).c_str(),
                    static_cast<unsigned long long>(r.drops[d]),
                    std::string(description(d)).c_str());
    }
    return 0;
}
