// pcap backend: a capture is the input (frames, and their timestamps as `now`), and what
// would be sent is written to an output capture. The only file that includes libpcap.
#include <pcap/pcap.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "dataplane/pcap_backend.hpp"

namespace sbc::dataplane {

namespace {
constexpr unsigned kBurst = 32;
constexpr std::uint32_t kMaxFrame = 262144;  // libpcap's largest snaplen
// A burst shares one `now`; it is cut when capture time moves on by more than this, so a
// packet's `now` is off by at most 20 us (jitter at 8 kHz: 0.16 timestamp units).
constexpr base::Nanos kBurstSpan = 20'000;

// The link header's protocol field says IPv4/IPv6 (SLL: offset 14, SLL2: offset 0, both
// big-endian ethertypes; BSD loopback: host-order address family).
bool link_carries_ip(int dlt, const Frame& f) {
    const std::uint8_t* h = f.data;
    std::uint16_t type = 0;
    switch (dlt) {
        case DLT_LINUX_SLL:
            type = static_cast<std::uint16_t>(h[-16 + 14] << 8 | h[-16 + 15]);
            break;
        case DLT_LINUX_SLL2:
            type = static_cast<std::uint16_t>(h[-20] << 8 | h[-19]);
            break;
        case DLT_NULL: {
            std::uint32_t fam;
            std::memcpy(&fam, h - 4, 4);
            return fam == 2 || fam == 24 || fam == 28 || fam == 30;  // AF_INET, AF_INET6 (BSDs)
        }
        default:
            return true;
    }
    return type == 0x0800 || type == 0x86DD;
}

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
    // Link headers in front of IP for the non-Ethernet types (`tcpdump -i any` gives SLL/SLL2).
    std::uint32_t l2 = 0;
    switch (dlt) {
        case DLT_EN10MB:
        case DLT_RAW:
            break;
        case DLT_LINUX_SLL:
            l2 = 16;
            break;
        case DLT_LINUX_SLL2:
            l2 = 20;
            break;
        case DLT_NULL:
            l2 = 4;
            break;
        default:
            return base::make_error(in_path + ": unsupported link type " + std::to_string(dlt) +
                                    " (Ethernet, raw IP, Linux cooked and BSD loopback are)");
    }
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
    std::array<base::Nanos, kBurst> stamps;
    // A record too late for the current burst stays in its slot (outside the burst) and is moved
    // to slot 0 to start the next one.
    int carry = -1;
    bool started = false;
    bool eof = false;
    while (!eof) {
        // Stage 1: read a burst of records sharing (roughly) one capture time.
        unsigned n = 0;
        base::Nanos now = 0;
        if (carry >= 0) {
            const std::size_t off = frames[carry].data - &storage[std::size_t(carry) * kMaxFrame];
            std::copy_n(&storage[std::size_t(carry) * kMaxFrame], headers[carry].caplen,
                        storage.begin());
            headers[0] = headers[carry];
            frames[0] = frames[carry];
            frames[0].data = storage.data() + off;
            now = stamps[0] = stamps[carry];
            n = 1;
            carry = -1;
        }
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
            stamps[n] = ts;
            const std::uint32_t caplen = std::min(h->caplen, kMaxFrame);
            std::uint8_t* buf = &storage[std::size_t{n} * kMaxFrame];
            std::copy(data, data + caplen, buf);
            headers[n] = *h;
            // Frames start at the Ethernet or IP header; the link header stays in front.
            const std::uint32_t skip = std::min(l2, caplen);
            const std::uint32_t wire = std::max(h->len, caplen);
            frames[n] =
                Frame{buf + skip, caplen - skip, kMaxFrame - skip, 0, wire - std::min(l2, wire)};
            headers[n].caplen = caplen;
            if (caplen < l2) frames[n].wire_len = 1;  // header cut: truncated
            if (ts - now > kBurstSpan) {
                carry = static_cast<int>(n);  // starts the next burst, with its own `now`
                break;
            }
            ++n;
        }
        if (n == 0 && carry < 0) break;
        if (n == 0) continue;
        // Stage 2: parse and decide.
        if (dlt == DLT_EN10MB) {
            parse_frames(std::span<const Frame>(frames.data(), n),
                         std::span<PacketMeta>(meta.data(), n),
                         std::span<Decision>(decisions.data(), n));
        } else {
            for (unsigned i = 0; i < n; ++i) {
                parse_ip_packet(frames[i], meta[i], decisions[i]);
                if (l2 && frames[i].wire_len <= frames[i].len && !link_carries_ip(dlt, frames[i]))
                    decisions[i] =
                        Decision{Action::to_kernel, DropReason::not_ip, 0, TrafficClass::other};
            }
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
                headers[i].caplen = frames[i].len + l2;
                headers[i].len = frames[i].len + l2;
                pcap_dump(reinterpret_cast<u_char*>(out.get()), &headers[i], frames[i].data - l2);
                ++result.written;
            }
        }
        pipeline.media().poll(now);
    }
    if (out) pcap_dump_flush(out.get());
    return result;
}

}  // namespace sbc::dataplane
