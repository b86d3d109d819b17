// pcap backend: a capture is the input (frames, and their timestamps as `now`), and what
// would be sent is written to an output capture. The only file that includes libpcap.
#include <pcap/pcap.h>

#include <algorithm>
#include <memory>

#include "dataplane/dataplane.hpp"

namespace sbc::dataplane {

namespace {
constexpr unsigned kBurst = 32;
constexpr std::uint32_t kMaxFrame = 262144;  // libpcap's largest snaplen
// A burst shares one `now`; cut it when capture time moves on by more than this.
constexpr base::Nanos kBurstSpan = base::millis(1);

struct PcapCloser {
    void operator()(pcap_t* p) const { pcap_close(p); }
};
struct DumperCloser {
    void operator()(pcap_dumper_t* d) const { pcap_dump_close(d); }
};
}  // namespace

base::Result<PcapRunResult> run_pcap(Pipeline& pipeline, const std::string& in_path,
                                     const std::string& out_path, const PcapRunHooks& hooks) {
    char err[PCAP_ERRBUF_SIZE] = {};
    std::unique_ptr<pcap_t, PcapCloser> in(
        pcap_open_offline_with_tstamp_precision(in_path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err));
    if (!in) return base::make_error(in_path + ": " + err);
    const int dlt = pcap_datalink(in.get());
    if (dlt != DLT_EN10MB && dlt != DLT_RAW)
        return base::make_error(in_path + ": unsupported link type " + std::to_string(dlt) +
                                " (Ethernet and raw IP are)");
    std::unique_ptr<pcap_t, PcapCloser> dead;
    std::unique_ptr<pcap_dumper_t, DumperCloser> out;
    if (!out_path.empty()) {
        dead.reset(pcap_open_dead_with_tstamp_precision(dlt, 65535, PCAP_TSTAMP_PRECISION_NANO));
        out.reset(pcap_dump_open(dead.get(), out_path.c_str()));
        if (!out) return base::make_error(out_path + ": " + pcap_geterr(dead.get()));
    }

    PcapRunResult result;
    std::vector<std::uint8_t> storage(std::size_t{kBurst} * kMaxFrame);
    std::array<Frame, kBurst> frames;
    std::array<PacketMeta, kBurst> meta;
    std::array<Decision, kBurst> decisions;
    std::array<pcap_pkthdr, kBurst> headers;
    bool started = false;
    bool eof = false;
    while (!eof) {
        // Stage 1: read a burst of records sharing (roughly) one capture time.
        unsigned n = 0;
        base::Nanos now = 0;
        while (n < kBurst) {
            pcap_pkthdr* h = nullptr;
            const u_char* data = nullptr;
            const int rc = pcap_next_ex(in.get(), &h, &data);
            if (rc == PCAP_ERROR_BREAK) {
                eof = true;
                break;
            }
            if (rc < 0) {
                result.error = pcap_geterr(in.get());
                eof = true;
                break;
            }
            if (rc == 0) continue;
            ++result.records;
            const base::Nanos ts =
                static_cast<base::Nanos>(h->ts.tv_sec) * base::kNanosPerSecond + h->ts.tv_usec;
            result.last_time = ts;
            if (!started) {
                started = true;
                result.first_time = ts;
                if (hooks.on_start) hooks.on_start(pipeline, ts, hooks.ctx);
            }
            if (n == 0) now = ts;
            const std::uint32_t caplen = std::min(h->caplen, kMaxFrame);
            std::uint8_t* buf = &storage[std::size_t{n} * kMaxFrame];
            std::copy(data, data + caplen, buf);
            headers[n] = *h;
            frames[n] = Frame{buf, caplen, kMaxFrame, 0, std::max(h->len, caplen)};
            ++n;
            if (ts - now > kBurstSpan) break;
        }
        if (n == 0) break;
        // Stage 2: parse and decide.
        if (dlt == DLT_EN10MB) {
            parse_frames(std::span<const Frame>(frames.data(), n),
                         std::span<PacketMeta>(meta.data(), n),
                         std::span<Decision>(decisions.data(), n));
        } else {
            for (unsigned i = 0; i < n; ++i) parse_ip_packet(frames[i], meta[i], decisions[i]);
        }
        pipeline.decide(std::span<const PacketMeta>(meta.data(), n),
                        std::span<Decision>(decisions.data(), n), now);
        // Stage 3: rewrite what is relayed and write what would be sent.
        for (unsigned i = 0; i < n; ++i) {
            const Decision& d = decisions[i];
            bool write = false;
            if (d.action == Action::relay) {
                if (Pipeline::rewrite_frame(frames[i], meta[i], pipeline.forward_of(d))) {
                    write = true;
                } else {
                    pipeline.counters().drops.add(DropReason::family_mismatch);
                    pipeline.counters().events.add(PipelineEvent::dropped);
                }
            } else if (d.action == Action::to_signaling) {
                write = hooks.write_signaling;
            }
            if (write && out) {
                headers[i].caplen = frames[i].len;
                headers[i].len = frames[i].len;
                pcap_dump(reinterpret_cast<u_char*>(out.get()), &headers[i], frames[i].data);
                ++result.written;
            }
        }
        pipeline.media().poll(now);
    }
    if (out) pcap_dump_flush(out.get());
    return result;
}

}  // namespace sbc::dataplane
