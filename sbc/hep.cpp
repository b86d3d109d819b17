#include "sbc/hep.hpp"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "base/sockaddr.hpp"

namespace sbc {

namespace {

namespace hep = base::hep;

void put16(std::string& out, std::uint16_t v) {
    out += static_cast<char>(v >> 8);
    out += static_cast<char>(v & 0xff);
}

void chunk(std::string& out, std::uint16_t type, const void* value, std::size_t len) {
    put16(out, hep::kVendorGeneric);
    put16(out, type);
    put16(out, static_cast<std::uint16_t>(hep::kChunkHeaderSize + len));
    out.append(static_cast<const char*>(value), len);
}

void chunk8(std::string& out, std::uint16_t type, std::uint8_t v) {
    chunk(out, type, &v, 1);
}

void chunk16(std::string& out, std::uint16_t type, std::uint16_t v) {
    const std::uint8_t b[2] = {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
    chunk(out, type, b, 2);
}

void chunk32(std::string& out, std::uint16_t type, std::uint32_t v) {
    const std::uint8_t b[4] = {static_cast<std::uint8_t>(v >> 24),
                               static_cast<std::uint8_t>(v >> 16),
                               static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
    chunk(out, type, b, 4);
}

}  // namespace

bool encode_hep3(const HepRecord& r, std::string& out) {
    out.clear();
    out.append(hep::kMagic, sizeof hep::kMagic);
    put16(out, 0);  // total length, filled in below
    // Both addresses in one family: a v4 leg is written as IPv4 chunks.
    const bool v4 = r.src.addr.is_v4() && r.dst.addr.is_v4();
    chunk8(out, hep::kIpFamily, v4 ? hep::kFamilyIpv4 : hep::kFamilyIpv6);
    chunk8(out, hep::kIpProtocol, r.tcp ? 6 : 17);
    if (v4) {
        chunk(out, hep::kIpv4Src, r.src.addr.bytes().data() + 12, 4);
        chunk(out, hep::kIpv4Dst, r.dst.addr.bytes().data() + 12, 4);
    } else {
        chunk(out, hep::kIpv6Src, r.src.addr.bytes().data(), 16);
        chunk(out, hep::kIpv6Dst, r.dst.addr.bytes().data(), 16);
    }
    chunk16(out, hep::kSrcPort, r.src.port);
    chunk16(out, hep::kDstPort, r.dst.port);
    chunk32(out, hep::kTimeSec, static_cast<std::uint32_t>(r.time / base::kNanosPerSecond));
    chunk32(out, hep::kTimeUsec,
            static_cast<std::uint32_t>((r.time % base::kNanosPerSecond) / 1000));
    chunk8(out, hep::kProtoType, hep::kProtoSip);
    chunk32(out, hep::kCaptureId, r.capture_id);
    const std::size_t rest =
        r.auth_key.size() + r.correlation_id.size() + r.payload.size() + 3 * hep::kChunkHeaderSize;
    if (out.size() + rest > 0xffff || r.auth_key.size() > 0xff00 ||
        r.correlation_id.size() > 0xff00) {
        out.clear();
        return false;
    }
    if (!r.auth_key.empty()) chunk(out, hep::kAuthKey, r.auth_key.data(), r.auth_key.size());
    if (!r.correlation_id.empty())
        chunk(out, hep::kCorrelationId, r.correlation_id.data(), r.correlation_id.size());
    chunk(out, hep::kPayload, r.payload.data(), r.payload.size());
    out[4] = static_cast<char>(out.size() >> 8);
    out[5] = static_cast<char>(out.size() & 0xff);
    return true;
}

base::Result<std::unique_ptr<HepExporter>> HepExporter::start(const base::Endpoint& collector,
                                                              std::uint32_t capture_id,
                                                              std::string auth_key,
                                                              std::size_t queue_slots) {
    sockaddr_storage ss;
    const socklen_t len = base::to_sockaddr(collector, ss);
    const int fd = ::socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return base::make_error(std::string("HEP socket: ") + std::strerror(errno));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        std::string err = std::strerror(errno);
        ::close(fd);
        return base::make_error("HEP collector " + collector.to_string() + ": " + err);
    }
    std::unique_ptr<HepExporter> e(
        new HepExporter(fd, capture_id, std::move(auth_key), queue_slots < 2 ? 2 : queue_slots));
    e->sender_ = std::thread([p = e.get()] { p->run(); });
    return e;
}

HepExporter::HepExporter(int fd, std::uint32_t capture_id, std::string auth_key, std::size_t slots)
    : fd_(fd), capture_id_(capture_id), auth_key_(std::move(auth_key)), slots_(slots) {}

HepExporter::~HepExporter() {
    stop_.store(true, std::memory_order_release);
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_one();
    if (sender_.joinable()) sender_.join();
    if (fd_ >= 0) ::close(fd_);
}

void HepExporter::capture(const base::Endpoint& src, const base::Endpoint& dst,
                          base::UnixNanos time, std::string_view correlation_id,
                          std::string_view sip) {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    if (h - tail_.load(std::memory_order_acquire) >= slots_.size()) {
        add(HepEvent::dropped_queue_full);
        return;
    }
    HepRecord r;
    r.src = src;
    r.dst = dst;
    r.time = time;
    r.capture_id = capture_id_;
    r.auth_key = auth_key_;
    r.correlation_id = correlation_id;
    r.payload = sip;
    if (!encode_hep3(r, slots_[h % slots_.size()])) {
        add(HepEvent::dropped_too_large);
        return;
    }
    head_.store(h + 1, std::memory_order_release);
    add(HepEvent::captured);
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_one();
}

void HepExporter::run() {
    for (;;) {
        const std::uint32_t seen = wake_.load(std::memory_order_acquire);
        const std::uint64_t h = head_.load(std::memory_order_acquire);
        std::uint64_t t = tail_.load(std::memory_order_relaxed);
        if (t == h) {
            if (stop_.load(std::memory_order_acquire)) return;
            wake_.wait(seen, std::memory_order_acquire);
            continue;
        }
        for (; t != h; ++t) {
            const std::string& p = slots_[t % slots_.size()];
            ssize_t n;
            do {
                n = ::send(fd_, p.data(), p.size(), 0);
            } while (n < 0 && errno == EINTR);
            add(n == static_cast<ssize_t>(p.size()) ? HepEvent::sent : HepEvent::send_failed);
            tail_.store(t + 1, std::memory_order_release);
        }
    }
}

std::string HepExporter::stats_text() const {
    std::string out;
    for (std::size_t i = 0; i < kHepEventCount; ++i)
        out += "hep." + std::string(kHepEventNames[i]) + "=" + std::to_string(counters_[i].load()) +
               "\n";
    return out;
}

}  // namespace sbc
