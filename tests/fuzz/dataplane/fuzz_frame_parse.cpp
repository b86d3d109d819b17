// A burst of arbitrary frames through parse_frames, Pipeline::decide (two streams, IPv4 and
// IPv6, configured) and rewrite_frame for the relay decisions. Input: frames, each a 2-byte
// big-endian length and that many bytes (at most 32 frames; a short tail is one last frame).
// Checks: offsets stay inside the frame, and a rewritten frame parses again with the same
// verdict on its checksums. Then the same bytes go through Pipeline::relay_fast with the latches
// the first pass left: a frame it relays parses again, valid, from our address, same payload.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dataplane/dataplane.hpp"

using namespace sbc::dataplane;
using sbc::base::IpAddress;

namespace {

constexpr std::size_t kMaxFrames = 32;
constexpr std::size_t kMaxFrameLen = 2048;

IpAddress addr(const char* s) {
    return *IpAddress::parse(s);
}

PipelineConfig small_config() {
    auto c = PipelineConfig::defaults();
    c.local_addresses = {addr("203.0.113.1"), addr("2001:db8::1")};
    c.media_port_min = 30000;
    c.media_port_max = 30099;
    c.limiter_capacity = 256;
    c.ban_capacity = 64;
    c.stream_capacity = 8;
    c.event_capacity = 16;
    c.other_to_kernel = true;
    c.media.latch_window = sbc::base::seconds(3600);
    return c;
}

void check_bounds(const Frame& f, const PacketMeta& m, const Decision& d) {
    if (d.action == Action::drop) return;
    if (f.len < 14 && d.action != Action::drop) std::abort();
    if (m.l3_offset == 0) return;  // non-IP to the kernel
    if (m.l4_offset > f.len || m.payload_offset > f.len) std::abort();
    if (std::size_t{m.payload_offset} + m.payload_len > f.len) std::abort();
    if (m.payload && m.payload != f.data + m.payload_offset) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Each frame in its own buffer sized to it, so that ASan sees any read past its end.
    std::vector<std::vector<std::uint8_t>> buffers;
    while (size > 0 && buffers.size() < kMaxFrames) {
        std::size_t len = size;
        if (size >= 2) {
            len = std::min<std::size_t>((std::size_t{data[0]} << 8 | data[1]), size - 2);
            data += 2;
            size -= 2;
        }
        len = std::min(len, kMaxFrameLen);
        buffers.emplace_back(data, data + len);
        data += len;
        size -= len;
    }
    if (buffers.empty()) return 0;

    Pipeline p(small_config());
    StreamSpec v4;
    v4.a.local = {addr("203.0.113.1"), 30000};
    v4.a.remote = {addr("198.51.100.7"), 4000};
    v4.b.local = {addr("203.0.113.1"), 30002};
    v4.b.remote = {addr("192.0.2.20"), 6000};
    StreamSpec v6;
    v6.a.local = {addr("2001:db8::1"), 30010};
    v6.a.remote = {addr("2001:db8:1::7"), 4000};
    v6.b.local = {addr("2001:db8::1"), 30012};
    v6.b.remote = {addr("2001:db8:2::20"), 6000};
    v6.rtcp_mux = true;
    if (!p.media().create(v4, 0) || !p.media().create(v6, 0)) std::abort();

    const auto originals = buffers;  // rewrite_frame works in place
    const std::size_t n = buffers.size();
    std::vector<Frame> frames(n);
    for (std::size_t i = 0; i < n; ++i) {
        auto& b = buffers[i];
        frames[i] = Frame{b.data(), static_cast<std::uint32_t>(b.size()),
                          static_cast<std::uint32_t>(b.size()), 0, 0};
    }
    std::vector<PacketMeta> meta(n);
    std::vector<Decision> out(n);
    parse_frames(frames, meta, out);
    for (std::size_t i = 0; i < n; ++i) check_bounds(frames[i], meta[i], out[i]);
    p.decide(meta, out, sbc::base::millis(20));
    for (std::size_t i = 0; i < n; ++i) {
        if (out[i].action != Action::relay) continue;
        const auto& fwd = p.forward_of(out[i]);
        const auto before = buffers[i];
        if (!Pipeline::rewrite_frame(frames[i], meta[i], fwd)) {
            if (before != buffers[i]) std::abort();  // a refused rewrite leaves the frame alone
            continue;
        }
        // The rewritten frame is as valid as the original was (parse verified its checksums).
        PacketMeta m2;
        Decision d2;
        parse_frames({&frames[i], 1}, {&m2, 1}, {&d2, 1});
        if (d2.action == Action::drop) std::abort();
        if (m2.src != fwd.from_local.addr || m2.dst != fwd.to_peer.addr) std::abort();
        if (m2.src_port != fwd.from_local.port || m2.dst_port != fwd.to_peer.port) std::abort();
        if (m2.payload_len != meta[i].payload_len) std::abort();
    }
    // The fast path, each frame again in a buffer sized to it.
    buffers = originals;
    for (std::size_t i = 0; i < n; ++i)
        frames[i] = Frame{buffers[i].data(), static_cast<std::uint32_t>(buffers[i].size()),
                          static_cast<std::uint32_t>(buffers[i].size()), 0, 0};
    std::vector<std::uint8_t> relayed(n);
    const std::size_t fast = p.relay_fast(frames, relayed, sbc::base::millis(40));
    std::size_t counted = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (!relayed[i]) {
            if (buffers[i] != originals[i]) std::abort();  // handed back untouched
            continue;
        }
        ++counted;
        PacketMeta m2;
        Decision d2;
        parse_frames({&frames[i], 1}, {&m2, 1}, {&d2, 1});
        if (d2.action == Action::drop) std::abort();
        if (m2.src != addr("203.0.113.1") || m2.payload_len != meta[i].payload_len) std::abort();
    }
    if (counted != fast) std::abort();
    std::vector<MediaEvent> events(16);
    (void)p.media().drain_events(events);
    return 0;
}
