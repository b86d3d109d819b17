// ratelimit benchmark: limiter lookups per second when 10M distinct (spoofed) sources are
// offered, mixed with a set of established sources, and the memory that costs.
//   bench_ratelimit ours|unordered_map [--distinct N] [--established N] [--capacity N]
// `ours` is RateLimiter (fixed-capacity table); `unordered_map` is the naive baseline: a
// std::unordered_map of token buckets keyed by source, which grows with every new key.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/rate_limiter.hpp"

using namespace sbc;

namespace {
long status_kb(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key));
    return -1;
}

struct Xorshift {
    std::uint64_t x = 88172645463325252ULL;
    std::uint64_t next() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    }
};

// The baseline: one bucket per source in a hash map, no eviction.
class MapLimiter {
  public:
    explicit MapLimiter(dataplane::RateLimit l) : lim_(l) {}
    bool admit(const base::IpAddress& a, base::Nanos now) {
        auto [it, inserted] = map_.try_emplace(a, Bucket{lim_.burst, now});
        Bucket& b = it->second;
        if (!inserted) {
            b.tokens = std::min(
                lim_.burst, b.tokens + static_cast<double>(now - b.last) * lim_.rate_per_s / 1e9);
            b.last = now;
        }
        if (b.tokens >= 1) {
            b.tokens -= 1;
            return true;
        }
        return false;
    }
    std::size_t size() const { return map_.size(); }

  private:
    struct Bucket {
        double tokens;
        base::Nanos last;
    };
    dataplane::RateLimit lim_;
    std::unordered_map<base::IpAddress, Bucket> map_;
};
}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_ratelimit ours|unordered_map [--distinct N] ...\n");
        return 2;
    }
    const std::string mode = argv[1];
    std::uint64_t distinct = 10'000'000, established = 10'000;
    std::uint32_t capacity = 1u << 16;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--distinct")) distinct = std::strtoull(argv[i + 1], nullptr, 10);
        if (!std::strcmp(argv[i], "--established"))
            established = std::strtoull(argv[i + 1], nullptr, 10);
        if (!std::strcmp(argv[i], "--capacity"))
            capacity = static_cast<std::uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    }
    const long rss_before = status_kb("VmRSS:");
    const dataplane::RateLimit per_source{50, 100};
    auto cfg = dataplane::PipelineConfig::defaults();
    const auto cls = dataplane::TrafficClass::sip_other;
    cfg.limits[static_cast<std::size_t>(cls)] =
        dataplane::ClassLimits{per_source, {}, {100000, 100000}};
    cfg.limiter_capacity = capacity;

    std::vector<base::IpAddress> good;
    for (std::uint64_t i = 0; i < established; ++i)
        good.push_back(base::IpAddress::v4(0x0A000000u + static_cast<std::uint32_t>(i) * 13u));

    dataplane::RateLimiter ours(capacity, cfg);
    MapLimiter baseline(per_source);
    const bool is_ours = mode == "ours";
    auto admit = [&](const base::IpAddress& a, base::Nanos now) {
        return is_ours ? ours.admit(a, cls, now) == dataplane::RateLimiter::Verdict::admit
                       : baseline.admit(a, now);
    };
    // Established sources: seen twice, 2 s apart.
    for (auto& g : good) admit(g, 0);
    for (auto& g : good) admit(g, base::seconds(2));

    // 10M distinct spoofed sources, one packet each, with an established source every 4th op.
    Xorshift rng;
    base::Nanos now = base::seconds(3);
    std::uint64_t ops = 0, good_admitted = 0, good_ops = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < distinct; ++i) {
        now += 1000;  // 1M packets/s of capture time
        admit(base::IpAddress::v4(static_cast<std::uint32_t>(rng.next()) | 0x80000000u), now);
        ++ops;
        if ((i & 3) == 0) {
            good_admitted += admit(good[(i >> 2) % good.size()], now);
            ++good_ops;
            ++ops;
        }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::size_t kept = 0;
    if (is_ours)
        for (auto& g : good) kept += ours.is_established(g, cls);
    const long peak_kb = status_kb("VmHWM:");
    std::printf("mode=%s lookups=%llu seconds=%.3f lookups_per_s=%.0f\n", mode.c_str(),
                static_cast<unsigned long long>(ops), secs, static_cast<double>(ops) / secs);
    std::printf("mode=%s peak_rss_kb=%ld rss_growth_kb=%ld", mode.c_str(), peak_kb,
                status_kb("VmRSS:") - rss_before);
    if (is_ours) {
        std::printf(" table_bytes=%zu capacity=%zu entries=%zu established_kept=%zu/%zu",
                    ours.memory_bytes(), ours.capacity(), ours.size(), kept, good.size());
    } else {
        std::printf(" entries=%zu", baseline.size());
    }
    std::printf(
        " established_admitted=%.4f\n",
        good_ops ? static_cast<double>(good_admitted) / static_cast<double>(good_ops) : 0.0);
    return 0;
}
