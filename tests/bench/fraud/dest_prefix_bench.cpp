// dest-prefix: the destination prefix lookup the live path performs, one number at a time.
//
// For every INVITE the fraud engine resolves the dialed number against the policy's prefix
// lists (Engine::Impl::resolve_destination: `lists.walk(digits)`, a DigitTrie with one bit per
// list, OR-ed along the path, and the length of the deepest match, which becomes the
// destination key). This bench builds that trie the way the engine does (DigitTrie::add with
// the list's bit, or_bits) from 100k prefixes in three lists and times DigitTrie::walk on
// 12-digit numbers, one call per number, as the engine calls it.
//
// Baseline, same numbers, same answers: std::unordered_map keyed by (prefix value, length)
// holding the OR of the list bits of the prefix and of every listed prefix above it, probed
// from the longest length down (one hash lookup per length, first hit wins). Both are checked
// to give the same mask and match length for every number before timing.
//
// Also timed: the two builds a policy with 100k prefixes goes through on the live path,
// policy::load_policy (parse, validation) and fraud::Engine::create (the engine's tries; small
// key tables so that the trie build dominates).
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
#include <utility>
#include <vector>

#include "fraud/fraud.hpp"
#include "fraud/lookup.hpp"
#include "policy/policy.hpp"

using namespace sbc;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kPrefixes = 100'000;
constexpr std::size_t kLists = 3;  // irsf, premium, high_risk
constexpr std::size_t kLookups = 1'000'000;
constexpr int kRuns = 5;

struct Answer {
    std::uint64_t mask = 0;
    std::size_t length = 0;
    bool operator==(const Answer&) const = default;
};

class HashBaseline {
  public:
    HashBaseline(const std::vector<std::string>& prefixes, const std::vector<std::uint64_t>& bits) {
        std::unordered_map<std::string, std::uint64_t> own;
        for (std::size_t i = 0; i < prefixes.size(); ++i) own[prefixes[i]] |= bits[i];
        map_.reserve(own.size() * 2);
        for (const auto& [p, b] : own) {
            std::uint64_t mask = b;
            for (std::size_t len = 1; len < p.size(); ++len)
                if (auto it = own.find(p.substr(0, len)); it != own.end()) mask |= it->second;
            map_.emplace(key(p, p.size()), mask);
            max_len_ = std::max(max_len_, p.size());
        }
    }
    Answer lookup(std::string_view digits) const {
        std::size_t n = std::min(digits.size(), max_len_);
        std::uint64_t values[24];
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) {
            v = v * 10 + static_cast<std::uint64_t>(digits[i] - '0');
            values[i] = v;
        }
        for (std::size_t len = n; len >= 1; --len)
            if (auto it = map_.find(values[len - 1] * 32 + len); it != map_.end())
                return {it->second, len};
        return {};
    }

  private:
    static std::uint64_t key(std::string_view d, std::size_t len) {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < len; ++i) v = v * 10 + static_cast<std::uint64_t>(d[i] - '0');
        return v * 32 + len;
    }
    std::unordered_map<std::uint64_t, std::uint64_t> map_;
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
// Operations per CPU-second of one thread (= per core), median of kRuns, of two loops run
// alternately (a, b, a, b, ...), so that the machine's load changes hit both alike.
template <class A, class B>
std::pair<double, double> median_rates_alternated(A&& run_a, B&& run_b, std::size_t ops) {
    std::vector<double> ra, rb;
    auto rate = [&](auto& run) {
        const double t0 = thread_cpu_seconds();
        run();
        return static_cast<double>(ops) / (thread_cpu_seconds() - t0);
    };
    for (int r = 0; r < kRuns; ++r) {
        ra.push_back(rate(run_a));
        rb.push_back(rate(run_b));
    }
    std::sort(ra.begin(), ra.end());
    std::sort(rb.begin(), rb.end());
    return {ra[ra.size() / 2], rb[rb.size() / 2]};
}

struct Millis {
    double wall = 0;
    double cpu = 0;
};

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
    auto codes = policy::country_calling_codes();
    // Realistic lists: a country calling code followed by 1-6 digits of range.
    std::unordered_set<std::string> unique;
    std::vector<std::string> prefixes;
    std::vector<std::uint64_t> bits;
    while (prefixes.size() < kPrefixes) {
        std::string p = std::string(codes[rng() % codes.size()].code) + digits(rng, 1 + rng() % 6);
        if (p.size() > 12 || !unique.insert(p).second) continue;
        bits.push_back(std::uint64_t{1} << (prefixes.size() % kLists));
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

    // The engine's trie, built as Engine::create builds `lists` (bit i for list i).
    auto t0 = Clock::now();
    fraud::detail::DigitTrie trie;
    for (std::size_t i = 0; i < prefixes.size(); ++i) trie.add(prefixes[i], bits[i], true);
    const double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    HashBaseline baseline(prefixes, bits);

    std::size_t hits = 0;
    for (auto n : views) {
        const auto w = trie.walk(n);
        const Answer ours{w.mask, w.deepest_len};
        if (!(ours == baseline.lookup(n))) {
            std::fprintf(stderr, "MISMATCH on %.*s\n", static_cast<int>(n.size()), n.data());
            return 1;
        }
        hits += w.deepest_len != 0;
    }

    volatile std::uint64_t sink = 0;
    auto run_ours = [&] {
        std::uint64_t s = 0;
        for (auto n : views) {
            const auto w = trie.walk(n);
            s += w.mask + w.deepest_len;
        }
        sink = sink + s;
    };
    auto run_base = [&] {
        std::uint64_t s = 0;
        for (auto n : views) {
            const auto a = baseline.lookup(n);
            s += a.mask + a.length;
        }
        sink = sink + s;
    };
    const auto [ours, base] = median_rates_alternated(run_ours, run_base, views.size());

    // The builds a reload with 100k prefixes goes through: the policy (from a prefix-list file
    // and inline), then the fraud engine that holds the tries.
    auto dir =
        std::filesystem::temp_directory_path() / ("sbc_dest_prefix_" + std::to_string(::getpid()));
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
        median_ms([&] { ok = ok && policy::load_policy({(dir / "file.toml").string()}).ok(); }, 5);
    Millis inline_ms = median_ms(
        [&] { ok = ok && policy::load_policy({(dir / "inline.toml").string()}).ok(); }, 3);
    std::filesystem::remove_all(dir);
    fraud::EngineConfig ec;
    ec.max_tracked_keys = 1024;
    ec.max_tracked_calls = 1024;
    const fraud::Category cats[kLists] = {fraud::Category::irsf, fraud::Category::premium,
                                          fraud::Category::high_risk};
    for (std::size_t l = 0; l < kLists; ++l) {
        fraud::PrefixList pl;
        pl.name = "list" + std::to_string(l);
        pl.category = cats[l];
        for (std::size_t i = l; i < prefixes.size(); i += kLists)
            pl.prefixes.push_back(prefixes[i]);
        ec.prefix_lists.push_back(std::move(pl));
    }
    Millis engine_ms = median_ms([&] { ok = ok && fraud::Engine::create(ec).ok(); }, 5);
    if (!ok) {
        std::fprintf(stderr, "policy or engine with 100k prefixes failed to build\n");
        return 1;
    }

    std::printf("prefixes: %zu in %zu lists, trie memory: %.1f MiB, trie build: %.1f ms\n",
                prefixes.size(), kLists, trie.bytes() / 1048576.0, build_ms);
    std::printf(
        "lookups: %zu 12-digit numbers per run (%.0f%% in a listed range), one at a time, median "
        "of %d runs alternated with the baseline, one thread, per CPU-second\n",
        views.size(), 100.0 * static_cast<double>(hits) / static_cast<double>(views.size()), kRuns);
    std::printf("ours (fraud DigitTrie::walk, as resolve_destination calls it): %.2f M lookups/s\n",
                ours / 1e6);
    std::printf("baseline (unordered_map probe per length, longest first): %.2f M lookups/s\n",
                base / 1e6);
    std::printf(
        "build with 100k prefixes: load_policy %.1f ms wall / %.1f ms CPU from a list file, "
        "%.1f ms wall / %.1f ms CPU inline; fraud::Engine::create %.1f ms wall / %.1f ms CPU\n",
        file_ms.wall, file_ms.cpu, inline_ms.wall, inline_ms.cpu, engine_ms.wall, engine_ms.cpu);
    std::printf(
        "RESULT case=dest-prefix metric=lookups_per_cpu_s path=single ours=%.0f "
        "unordered_map=%.0f ratio=%.2f\n",
        ours, base, ours / base);
    return 0;
}
