// The capture decoder on arbitrary records: link type from the first byte, then records of a
// 2-byte length each (at most 64), each through decode, HEP unwrapping, fragment reassembly
// and TCP reassembly with small tables (so eviction and hold limits are reached), with a
// capture time that moves forward and sometimes back. Checks: views stay inside the record
// or the decoder's buffers (ASan), chunks of a flow never exceed the hold limit, tables stay
// within their capacities.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "dataplane/capture.hpp"

using namespace sbc::dataplane;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    static const std::uint32_t kLinks[] = {0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147};
    const std::uint32_t link = kLinks[data[0] % (sizeof kLinks / sizeof kLinks[0])];
    std::size_t pos = 1;
    CaptureLimits limits;
    limits.max_fragment_datagrams = 4;
    limits.max_tcp_flows = 4;
    limits.max_tcp_hold_bytes = 2048;
    limits.fragment_timeout = 1000;
    limits.tcp_idle_timeout = 5000;
    ParseOptions parse;
    parse.verify_udp_checksum = false;  // let more records reach the later stages
    CaptureDecoder d(limits, parse);
    std::vector<StreamChunk> chunks;
    sbc::base::Nanos t = 1000;
    for (int i = 0; i < 64 && pos + 2 <= size; ++i) {
        std::size_t len = (std::size_t{data[pos]} << 8 | data[pos + 1]) % 4096;
        pos += 2;
        if (len > size - pos) len = size - pos;
        std::vector<std::uint8_t> rec(data + pos, data + pos + len);  // exact size for ASan
        pos += len;
        t += (len & 1) ? 700 : -300;
        CaptureRecord r{t, link, rec.data(), static_cast<std::uint32_t>(rec.size()),
                        static_cast<std::uint32_t>(rec.size() + (len & 2))};
        auto p = d.decode(r);
        if (!p.ok) continue;
        HepMessage h;
        if (p.meta.l4_proto == 17 && d.is_hep(p.meta) && d.unwrap_hep(p.meta, t, h)) {
            if (h.meta.payload_len && !h.meta.payload) std::abort();
            continue;
        }
        if (p.meta.flags & kFlagFragment) {
            auto dg = d.reassemble(p, r);
            if (dg.ok && dg.meta.payload_len > 65535) std::abort();
        } else if (p.meta.l4_proto == 6) {
            chunks.clear();
            d.tcp_segment(p, chunks);
            std::size_t n = 0;
            for (const auto& c : chunks) n += c.bytes.size();
            volatile std::uint8_t sink = 0;
            for (const auto& c : chunks)
                for (char ch : c.bytes) sink = sink ^ static_cast<std::uint8_t>(ch);
            (void)sink;
            if (n > 65536 + limits.max_tcp_hold_bytes) std::abort();
        }
        if (d.fragment_datagrams() > limits.max_fragment_datagrams) std::abort();
        if (d.tcp_flows() > limits.max_tcp_flows) std::abort();
        d.expire(t);
        d.take_closed_flows();
    }
    return 0;
}
