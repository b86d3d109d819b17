// policy-lpm: longest-prefix match over E.164 digits with 100k prefixes, against a
// straightforward baseline (std::unordered_map probed at every prefix length, longest first),
// and the time to compile a policy holding 100k prefixes.
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "policy/policy.hpp"

using namespace sbc::policy;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kPrefixes = 100'000;
constexpr std::size_t kLookups = 1'000'000;
constexpr int kRuns = 5;

// Baseline: one hash probe per prefix length, longest first, keyed by (value, length).
class HashBaseline {
  public:
    explicit HashBaseline(const std::vector<std::string>& prefixes) {
        map_.reserve(prefixes.size() * 2);
        for (std::uint32_t i = 0; i < prefixes.size(); ++i) {
            const auto& p = prefixes[i];
            map_.emplace(key(p, p.size()), i);
            max_len_ = std::max(max_len_, p.size());
        }
    }
    // Length of the longest matching prefix (0 = none).
    std::size_t lpm(std::string_view digits) const {
        std::size_t n = std::min(digits.size(), max_len_);
        std::uint64_t values[16];
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) {
            v = v * 10 + static_cast<std::uint64_t>(digits[i] - '0');
            values[i] = v;
        }
        for (std::size_t len = n; len >= 1; --len)
            if (map_.count(values[len - 1] * 16 + len)) return len;
        return 0;
    }

  private:
    static std::uint64_t key(std::string_view d, std::size_t len) {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < len; ++i) v = v * 10 + static_cast<std::uint64_t>(d[i] - '0');
        return v * 16 + len;
    }
    std::unordered_map<std::uint64_t, std::uint32_t> map_;
    std::size_t max_len_ = 0;
};

std::string digits(std::mt19937_64& rng, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('0' + rng() % 10));
    return s;
}

// CPU time of this thread: the machine is shared, and time spent descheduled is not ours.
double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Operations per CPU-second of one thread (= per core), median of kRuns.
template <class F>
double median_rate(F&& run, std::size_t ops) {
    std::vector<double> rates;
    for (int r = 0; r < kRuns; ++r) {
        double t0 = thread_cpu_seconds();
        run();
        double secs = thread_cpu_seconds() - t0;
        rates.push_back(static_cast<double>(ops) / secs);
    }
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
}

struct Millis {
    double wall = 0;
    double cpu = 0;
};

// Median wall and CPU milliseconds of `runs` runs.
template <class F>
Millis median_ms(F&& run, int runs) {
    std::vector<double> wall, cpu;
    for (int r = 0; r < runs; ++r) {
        auto t0 = Clock::now();
        double c0 = thread_cpu_seconds();
        run();
        cpu.push_back((thread_cpu_seconds() - c0) * 1e3);
        wall.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    std::sort(wall.begin(), wall.end());
    std::sort(cpu.begin(), cpu.end());
    return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261126);
    auto codes = country_calling_codes();
    // Realistic lists: a country calling code followed by 1-6 digits of range.
    std::unordered_set<std::string> unique;
    std::vector<std::string> prefixes;
    while (prefixes.size() < kPrefixes) {
        std::string p = std::string(codes[rng() % codes.size()].code) + digits(rng, 1 + rng() % 6);
        if (p.size() > 12 || !unique.insert(p).second) continue;
        prefixes.push_back(p);
    }
    // Dialed numbers: half inside a listed range, half ordinary numbers of some country.
    std::vector<std::string> numbers;
    numbers.reserve(kLookups);
    for (std::size_t i = 0; i < kLookups; ++i) {
        std::string n = (i % 2) ? prefixes[rng() % prefixes.size()]
                                : std::string(codes[rng() % codes.size()].code);
        n += digits(rng, n.size() < 12 ? 12 - n.size() : 1);
        numbers.push_back(std::move(n));
    }
    std::vector<std::string_view> views(numbers.begin(), numbers.end());

    std::vector<PrefixTable::Entry> entries;
    for (std::uint32_t i = 0; i < prefixes.size(); ++i)
        entries.push_back({prefixes[i], i % 7, PrefixCategory::irsf});
    auto t0 = Clock::now();
    auto table = PrefixTable::build(entries);
    double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    HashBaseline baseline(prefixes);

    // Both must agree before anything is timed.
    std::size_t hits = 0;
    for (auto n : views) {
        auto ours = table.lpm(n).length;
        if (ours != baseline.lpm(n)) {
            std::fprintf(stderr, "MISMATCH on %.*s\n", static_cast<int>(n.size()), n.data());
            return 1;
        }
        hits += ours != 0;
    }

    std::vector<PrefixMatch> results(views.size());
    table.lpm_batch(views, results);
    for (std::size_t i = 0; i < views.size(); ++i) {
        if (results[i].length != baseline.lpm(views[i])) {
            std::fprintf(stderr, "MISMATCH (batch) on %s\n", numbers[i].c_str());
            return 1;
        }
    }

    volatile std::size_t sink = 0;
    double ours = median_rate(
        [&] {
            // Batches of 64 numbers, as a signaling worker would hand over a burst.
            std::size_t s = 0;
            for (std::size_t i = 0; i < views.size(); i += 64) {
                const std::size_t n = std::min<std::size_t>(64, views.size() - i);
                table.lpm_batch(std::span(views).subspan(i, n), std::span(results).subspan(i, n));
            }
            for (std::size_t i = 0; i < views.size(); i += 4096) s += results[i].length;
            sink = sink + s;
        },
        views.size());
    double ours_single = median_rate(
        [&] {
            std::size_t s = 0;
            for (auto n : views) s += table.lpm(n).length;
            sink = sink + s;
        },
        views.size());
    double base = median_rate(
        [&] {
            std::size_t s = 0;
            for (auto n : views) s += baseline.lpm(n);
            sink = sink + s;
        },
        views.size());

    // Compiling whole policies with 100k prefixes: from a prefix-list file (how big lists are
    // meant to be shipped) and inline as a TOML array.
    auto dir =
        std::filesystem::temp_directory_path() / ("sbc_lpm_bench_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    {
        std::ofstream list(dir / "irsf.txt");
        for (const auto& p : prefixes) list << p << "\n";
        std::ofstream pol(dir / "file.toml");
        pol << "[[prefix_lists]]\nname = \"irsf\"\ncategory = \"irsf\"\nfile = \"irsf.txt\"\n";
        std::ofstream inl(dir / "inline.toml");
        inl << "[[prefix_lists]]\nname = \"irsf\"\ncategory = \"irsf\"\nprefixes = [\n";
        for (const auto& p : prefixes) inl << "\"" << p << "\",\n";
        inl << "]\n";
    }
    bool ok = true;
    Millis file_ms =
        median_ms([&] { ok = ok && load_policy({(dir / "file.toml").string()}).ok(); }, 5);
    Millis inline_ms =
        median_ms([&] { ok = ok && load_policy({(dir / "inline.toml").string()}).ok(); }, 3);
    std::filesystem::remove_all(dir);
    if (!ok) {
        std::fprintf(stderr, "policy with 100k prefixes failed to load\n");
        return 1;
    }

    std::printf("prefixes: %zu, trie nodes: %zu, trie memory: %.1f MiB, trie build: %.1f ms\n",
                table.prefix_count(), table.node_count(), table.memory_bytes() / 1048576.0,
                build_ms);
    std::printf(
        "lookups: %zu per run (%.0f%% hit), median of %d runs, one thread, per CPU-second\n",
        views.size(), 100.0 * hits / views.size(), kRuns);
    std::printf("ours (digit trie, lpm_batch in bursts of 64): %.2f M lookups/s\n", ours / 1e6);
    std::printf("ours (digit trie, one lpm() at a time): %.2f M lookups/s\n", ours_single / 1e6);
    std::printf("baseline (unordered_map probe per length): %.2f M lookups/s\n", base / 1e6);
    std::printf(
        "compile policy with 100k prefixes (target < 200 ms): %.1f ms wall / %.1f ms CPU "
        "from a list file; %.1f ms wall / %.1f ms CPU as an inline TOML array\n",
        file_ms.wall, file_ms.cpu, inline_ms.wall, inline_ms.cpu);
    std::printf(
        "RESULT case=policy-lpm metric=lookups_per_cpu_s ours=%.0f unordered_map=%.0f ratio=%.2f\n",
        ours, base, ours / base);
    return 0;
}
