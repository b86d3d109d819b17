// fraud_bench: call-attempt evaluations per second through the fraud engine with 100 rules
// and over a million tracked keys. Two paths over the same workload, each on a fresh engine:
//   single: Engine::on_attempt, one attempt per call: what the daemon runs (sbc/front_door.cpp
//           scores each INVITE as it arrives);
//   burst:  Engine::on_attempts in bursts of 32 (not called by the daemon today).
// Prints the table memory (fixed at creation) and RSS, a labeled line for the burst path, and
// ends with the RESULT line of the single path (path=single).
// --case adds the second round's key kinds on top of the 100 rules: `caller` (calling number
// and its prefix: 3 rules x 4 thresholds, every attempt carrying a calling number, a
// quarter of them inbound from a trusted trunk), `device` (account + address + port +
// User-Agent: 2 features x 4 thresholds); `base` (default) is the 100 rules alone.
//   fraud_bench [--keys N] [--evals N] [--rules N] [--path single|burst|both]
//               [--case base|caller|device] [--calls N] [--spacing-us N]
// --spacing-us: time between measured attempts (default 500: 2,000 attempts/s).
// --calls: the call table's capacity (default 2^18). With a small key budget and a small call
// table every table stays in cache: what is left is the engine's compute (profiling). The
// 1M Call-IDs of the workload then recycle through a small table: compare runs only with
// runs of the same arguments.
#include <time.h>
#include <algorithm>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "fraud/fraud.hpp"

using namespace sbc;
using namespace sbc::fraud;

namespace {

constexpr base::Nanos kSec = base::kNanosPerSecond;

double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9;
}

long rss_kib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

// 100 rules spread over every feature and key, with several windows: what a large operator
// policy looks like (most rules share state components, as they do in real policies).
enum class Case { base, caller, device };
Case g_case = Case::base;
std::size_t g_calls = 1 << 18;    // call table capacity (--calls)
base::Nanos g_spacing = 500'000;  // between measured attempts (--spacing-us)

EngineConfig config(std::size_t max_keys, int nrules) {
    EngineConfig c;
    c.home_country_code = "33";
    c.country_codes = {{"33", "FR"}, {"32", "BE"},  {"41", "CH"},  {"44", "GB"}, {"49", "DE"},
                       {"1", "US"},  {"882", "XN"}, {"881", "XS"}, {"53", "CU"}, {"252", "SO"}};
    c.prefix_lists = {{"irsf", Category::irsf, {"881", "882", "883", "3712", "53", "252"}},
                      {"premium", Category::premium, {"3389", "3381"}},
                      {"risky", Category::high_risk, {"2392", "2246"}}};
    AccountGroup g;
    g.name = "agents";
    g.account_patterns = {"a*"};
    g.tenant = "acme";
    g.timezone = "Europe/Paris";
    g.business_hours = {{0x1f, 8 * 60, 19 * 60}};
    g.allowed_source_countries = {"FR", "BE"};
    c.account_groups.push_back(g);
    c.scanner_user_agents = {"friendly-scanner", "sipvicious", "sipcli", "sip-scan", "pplsip"};
    c.max_tracked_keys = max_keys;
    c.max_tracked_calls = g_calls;
    // 25 (feature, key, window, scope) combinations, each with a ladder of 4 thresholds and
    // weights (as in tests/data/fraud/scenarios.toml: irsf-first/burst/flood): 100 rules.
    struct Base {
        Feature f;
        KeyKind k;
        base::Nanos window;
        double threshold;
        TimeScope time;
    };
    const base::Nanos m = 60 * kSec;
    const Base bases[] = {
        {Feature::attempts, KeyKind::account, m, 10, TimeScope::any},
        {Feature::attempts, KeyKind::account, 60 * m, 60, TimeScope::any},
        {Feature::international_attempts, KeyKind::account, 10 * m, 8, TimeScope::any},
        {Feature::high_risk_attempts, KeyKind::account, 60 * m, 1, TimeScope::any},
        {Feature::premium_attempts, KeyKind::account, 60 * m, 1, TimeScope::off_hours},
        {Feature::distinct_destinations, KeyKind::account, 10 * m, 15, TimeScope::any},
        {Feature::distinct_destination_countries, KeyKind::account, 30 * m, 4, TimeScope::any},
        {Feature::sequential_dialing, KeyKind::account, 15 * m, 4, TimeScope::any},
        {Feature::concurrent_calls, KeyKind::account, m, 3, TimeScope::any},
        {Feature::short_call_ratio, KeyKind::account, 30 * m, 0.5, TimeScope::any},
        {Feature::failed_call_ratio, KeyKind::account, 30 * m, 0.5, TimeScope::any},
        {Feature::off_hours, KeyKind::account, m, 1, TimeScope::any},
        {Feature::source_country_not_allowed, KeyKind::account, m, 1, TimeScope::any},
        {Feature::country_change, KeyKind::account, 60 * m, 2, TimeScope::any},
        {Feature::attempts, KeyKind::source_ip, m, 30, TimeScope::any},
        {Feature::auth_failures, KeyKind::source_ip, 5 * m, 10, TimeScope::any},
        {Feature::request_sweep, KeyKind::source_ip, 5 * m, 15, TimeScope::any},
        {Feature::scanner_user_agent, KeyKind::source_ip, m, 1, TimeScope::any},
        {Feature::short_rings, KeyKind::source_ip, 10 * m, 5, TimeScope::any},
        {Feature::attempts, KeyKind::source_prefix, m, 200, TimeScope::any},
        {Feature::auth_failures, KeyKind::source_prefix, 10 * m, 12, TimeScope::any},
        {Feature::distinct_usernames, KeyKind::source_prefix, 10 * m, 8, TimeScope::any},
        {Feature::attempts, KeyKind::tenant, m, 5000, TimeScope::any},
        {Feature::concurrent_calls, KeyKind::tenant, m, 2000, TimeScope::any},
        {Feature::attempts, KeyKind::destination_prefix, m, 200000, TimeScope::any},
    };
    // The second round's key kinds, on top of the nrules above (--case).
    std::vector<Base> extra;
    // Caller prefixes are country codes here (no caller list), each shared by most of the
    // traffic: their rules are rates with operator-scale thresholds, as destination_prefix's.
    if (g_case == Case::caller)
        extra = {{Feature::attempts, KeyKind::caller, 10 * m, 20, TimeScope::any},
                 {Feature::distinct_destinations, KeyKind::caller, 10 * m, 20, TimeScope::any},
                 {Feature::attempts, KeyKind::caller_prefix, m, 200000, TimeScope::any}};
    if (g_case == Case::device)
        extra = {{Feature::attempts, KeyKind::device, 10 * m, 20, TimeScope::any},
                 {Feature::distinct_destinations, KeyKind::device, 10 * m, 20, TimeScope::any}};
    const double ladder[] = {1, 1.5, 2, 3};
    const double weights[] = {10, 20, 30, 40};
    int i = 0;
    const int total = nrules + 4 * static_cast<int>(extra.size());
    for (int step = 0; step < 4 && i < total; ++step) {
        for (const auto& b : extra) {
            Rule r;
            r.id = "rule-x" + std::to_string(i++);
            r.feature = b.f;
            r.key = b.k;
            r.window = b.window;
            r.threshold = b.threshold * ladder[step];
            r.weight = weights[step];
            c.rules.push_back(r);
        }
        for (const auto& b : bases) {
            if (i >= total) break;
            Rule r;
            r.id = "rule-" + std::to_string(i++);
            r.feature = b.f;
            r.key = b.k;
            r.window = b.window;
            r.threshold = b.threshold * ladder[step];
            if (b.threshold <= 1) r.threshold = 1;  // 0/1 features: the ladder is by weight
            if (b.f == Feature::short_call_ratio || b.f == Feature::failed_call_ratio) {
                r.threshold = std::min(0.95, b.threshold * ladder[step]);
                r.min_attempts = 10;
            }
            r.weight = weights[step];
            r.scope.time = b.time;
            c.rules.push_back(r);
        }
    }
    c.deny.push_back({"deny-kp", "", {"KP"}, {}, false, "", {}});
    return c;
}

struct Run {
    double rate = 0;  // evaluations per CPU-second of this thread
    double cpu_secs = 0, wall_secs = 0;
    std::uint64_t non_allow = 0;
    std::size_t table_bytes = 0, tracked_keys = 0;
    long rss_kib = 0;
    std::map<std::string, std::uint64_t> fired;
};

enum class Path { single, burst };

const char* path_name(Path p) {
    return p == Path::single ? "single" : "burst";
}

// One engine, filled, then `evals` attempts through `path`. The attempts, their times and the
// call ends are the same for both paths.
bool run(Path path, std::size_t keys, std::size_t evals, int nrules, bool describe, Run& out) {
    long rss0 = rss_kib();
    auto created = Engine::create(config(keys, nrules));
    if (!created) {
        std::fprintf(stderr, "fraud_bench: %s\n", created.error().message.c_str());
        return false;
    }
    auto& e = **created;
    // As the daemon does at start (sbc/front_door.cpp): every page of the tables backed before
    // the first event, so no page fault is timed.
    e.commit_tables();
    if (describe) {
        std::printf(
            "engine: %d rules, key budget %zu (source_ip %zu, source_prefix %zu, account %zu, "
            "tenant %zu, destination_prefix %zu), tables %.1f MiB\n",
            nrules, keys, e.key_capacity(KeyKind::source_ip),
            e.key_capacity(KeyKind::source_prefix), e.key_capacity(KeyKind::account),
            e.key_capacity(KeyKind::tenant), e.key_capacity(KeyKind::destination_prefix),
            e.table_bytes() / 1048576.0);
        std::printf(
            "per-key state (hot slot read by every event / total): source_ip %zu/%zu B, "
            "source_prefix %zu/%zu B, account %zu/%zu B, tenant %zu/%zu B, destination_prefix "
            "%zu/%zu B\n",
            e.hot_slot_bytes(KeyKind::source_ip), e.slot_bytes(KeyKind::source_ip),
            e.hot_slot_bytes(KeyKind::source_prefix), e.slot_bytes(KeyKind::source_prefix),
            e.hot_slot_bytes(KeyKind::account), e.slot_bytes(KeyKind::account),
            e.hot_slot_bytes(KeyKind::tenant), e.slot_bytes(KeyKind::tenant),
            e.hot_slot_bytes(KeyKind::destination_prefix),
            e.slot_bytes(KeyKind::destination_prefix));
    }
    // Populations: as many sources and accounts as their tables hold.
    std::mt19937_64 rng(1);
    std::size_t nsrc = e.key_capacity(KeyKind::source_ip);
    std::size_t nacct = e.key_capacity(KeyKind::account);
    // Sources cluster in /24s (offices, NATs, ISP pools): as many /24s as their table holds,
    // ~1.5 addresses each, so the prefix table is full but not churning. (One address per /24
    // is the flood case: eviction sampling then costs ~15% more.)
    std::size_t nprefix = e.key_capacity(KeyKind::source_prefix);
    std::vector<std::uint32_t> prefixes(nprefix);
    for (auto& p : prefixes) p = (static_cast<std::uint32_t>(rng()) | 0x01000000u) & 0xffffff00u;
    std::vector<base::IpAddress> srcs(nsrc);
    for (auto& a : srcs)
        a = base::IpAddress::v4(prefixes[rng() % nprefix] |
                                static_cast<std::uint32_t>(rng() & 0xff));
    std::vector<std::string> accounts(nacct);
    for (std::size_t i = 0; i < nacct; ++i) accounts[i] = "a" + std::to_string(i);
    std::vector<std::string> tenants(64);
    for (std::size_t i = 0; i < tenants.size(); ++i) tenants[i] = "t" + std::to_string(i);
    // 85% domestic, 15% neighbours, 0.4% to risky ranges (IRSF, premium).
    const char* dests[] = {"3361", "3314", "3367", "3345", "3225", "4122", "4420", "4930"};
    const char* risky[] = {"8821", "3712", "3389", "5371"};
    std::vector<std::string> callees(1 << 16);
    for (auto& s : callees)
        s = std::string(rng() % 250 ? dests[rng() % 20 < 17 ? rng() % 4 : 4 + rng() % 4]
                                    : risky[rng() % 4]) +
            std::to_string(1000000 + rng() % 9000000);
    // Calling numbers (--case caller): a million customers' numbers in a few thousand ranges.
    std::vector<std::string> callers(g_case == Case::caller ? 1 << 20 : 0);
    for (auto& s : callers)
        s = std::string(rng() % 50 ? dests[rng() % 8] : risky[rng() % 4]) +
            std::to_string(1000000 + rng() % 9000000);
    std::vector<std::string> call_ids(1 << 20);
    for (std::size_t i = 0; i < call_ids.size(); ++i) call_ids[i] = "c" + std::to_string(i) + "@h";

    base::UnixNanos wall = 1'795'737'600LL * kSec + 10 * 3600 * kSec;
    auto make = [&](std::size_t i, base::Nanos now) {
        CallAttempt a;
        a.now = now;
        a.wall = wall + now;
        a.call_id = call_ids[i & (call_ids.size() - 1)];
        a.source.addr = srcs[i % nsrc];
        a.source.port = 5060;
        a.source.country = (i % 1024) ? "FR" : "NG";  // rare: stolen credentials used abroad
        a.account = accounts[(i * 7919) % nacct];
        a.tenant = tenants[i & 63];
        a.callee = callees[(i * 31) & (callees.size() - 1)];
        a.user_agent = (i % 4999) ? "Yealink SIP-T46S 66.86.0.15" : "friendly-scanner";
        if (!callers.empty()) {
            a.caller = callers[(i * 131) & (callers.size() - 1)];
            if ((i & 3) == 0) {  // inbound over a trusted trunk
                a.direction = Direction::inbound;
                a.trusted = true;
            } else {
                a.direction = Direction::outbound;
            }
        }
        if (g_case == Case::device) a.source.port = static_cast<std::uint16_t>(5060 + (i & 7));
        return a;
    };

    // Fill: one attempt per source/account so every key exists before measuring.
    Verdict v;
    std::size_t fill = std::max(nsrc, nacct);
    base::Nanos now = 0;
    for (std::size_t i = 0; i < fill; ++i) {
        now += 500'000;  // the same 2,000 attempts/s while filling
        CallAttempt a = make(i, now);
        a.call_id = {};
        e.on_attempt(a, v);
    }
    if (describe)
        std::printf(
            "tracked keys after fill: %zu (source_ip %zu, source_prefix %zu, account %zu)\n",
            e.tracked_keys(), e.tracked_keys(KeyKind::source_ip),
            e.tracked_keys(KeyKind::source_prefix), e.tracked_keys(KeyKind::account));

    // Measured: attempts (with Call-IDs, so the call table and concurrency are exercised) and
    // the end of each call 64 attempts later; only attempts are counted as evaluations.
    // Attempts come in groups of 32 (as a signaling worker drains its queue); each group is
    // followed by the ends of the calls of the group before. The single path scores the group
    // one attempt per on_attempt call, the burst path with one on_attempts call.
    // The workload is built in chunks of kChunk attempts outside the timed part: the strings
    // an attempt carries (Call-ID, account, callee, calling number) are copied into one buffer
    // in arrival order, as a signaling thread holds them in the messages it has just parsed,
    // so that the time is the engine's and not the harness's random reads of its populations.
    constexpr std::size_t kBurst = 32;
    constexpr std::size_t kChunk = 4096;
    std::vector<CallAttempt> chunk(kChunk);
    std::vector<char> arena(kChunk * 96);
    std::vector<Verdict> verdicts(kChunk);
    auto keep = [&](char*& at, std::string_view s) {
        std::memcpy(at, s.data(), s.size());
        std::string_view copy{at, s.size()};
        at += s.size();
        return copy;
    };
    out.cpu_secs = 0;
    double wall_secs = 0;
    for (std::size_t c0i = 0; c0i < evals; c0i += kChunk) {
        const std::size_t cn = std::min(kChunk, evals - c0i);
        char* at = arena.data();
        const base::Nanos chunk_start = now;
        for (std::size_t j = 0; j < cn; ++j) {
            const std::size_t i = c0i + j;
            now += g_spacing;  // by default 2,000 call attempts/s: a large operator's busy hour
            CallAttempt a = make((fill + i) * 104729, now);
            a.call_id = keep(at, call_ids[i & (call_ids.size() - 1)]);
            a.account = keep(at, a.account);
            a.callee = keep(at, a.callee);
            if (!a.caller.empty()) a.caller = keep(at, a.caller);
            chunk[j] = a;
        }
        double c0 = cpu_seconds();
        auto t0 = std::chrono::steady_clock::now();
        for (std::size_t b = 0; b < cn; b += kBurst) {
            const std::size_t n = std::min(kBurst, cn - b);
            if (path == Path::single) {
                for (std::size_t j = 0; j < n; ++j) e.on_attempt(chunk[b + j], verdicts[b + j]);
            } else {
                e.on_attempts({chunk.data() + b, n}, {verdicts.data() + b, n});
            }
            const std::size_t i = c0i + b;
            const base::Nanos t = chunk_start + static_cast<base::Nanos>(b + n) * g_spacing;
            if (i >= kBurst)
                for (std::size_t j = 0; j < kBurst; ++j)
                    e.on_end({t, wall + t, call_ids[(i - kBurst + j) & (call_ids.size() - 1)],
                              Outcome::answered});
        }
        out.cpu_secs += cpu_seconds() - c0;
        wall_secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (std::size_t j = 0; j < cn; ++j) {
            out.non_allow += verdicts[j].action != Action::allow;
            for (std::size_t r = 0; r < verdicts[j].reason_count; ++r)
                ++out.fired[std::string(verdicts[j].reasons[r].rule_id)];
        }
    }
    out.wall_secs = wall_secs;
    out.rate = static_cast<double>(evals) / out.cpu_secs;
    out.tracked_keys = e.tracked_keys();
    out.table_bytes = e.table_bytes();
    out.rss_kib = rss_kib();
    std::printf(
        "path=%s: evaluated %zu attempts in %.3f s of CPU (%.3f s wall): %.0f evals/s per core "
        "(%.0f ns each, call ends included), %lu non-allow verdicts; tracked keys at the end: "
        "%zu; table bytes %zu (%.1f MiB, fixed); RSS %.1f MiB (%.1f MiB before the engine)\n",
        path_name(path), evals, out.cpu_secs, out.wall_secs, out.rate,
        out.cpu_secs * 1e9 / static_cast<double>(evals), static_cast<unsigned long>(out.non_allow),
        out.tracked_keys, out.table_bytes, out.table_bytes / 1048576.0, out.rss_kib / 1024.0,
        rss0 / 1024.0);
    std::fflush(stdout);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t keys = 2'000'000;  // key budget
    std::size_t evals = 3'000'000;
    int nrules = 100;
    std::string paths = "both";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--keys")) keys = std::strtoull(argv[i + 1], nullptr, 10);
        if (!std::strcmp(argv[i], "--evals")) evals = std::strtoull(argv[i + 1], nullptr, 10);
        if (!std::strcmp(argv[i], "--rules")) nrules = std::atoi(argv[i + 1]);
        if (!std::strcmp(argv[i], "--path")) paths = argv[i + 1];
        if (!std::strcmp(argv[i], "--calls")) g_calls = std::strtoull(argv[i + 1], nullptr, 10);
        if (!std::strcmp(argv[i], "--spacing-us")) {
            g_spacing = std::strtoll(argv[i + 1], nullptr, 10) * 1000;
            if (g_spacing <= 0) {
                std::fprintf(stderr, "fraud_bench: --spacing-us takes a positive number\n");
                return 2;
            }
        }
        if (!std::strcmp(argv[i], "--case")) {
            const std::string c = argv[i + 1];
            if (c == "caller") {
                g_case = Case::caller;
            } else if (c == "device") {
                g_case = Case::device;
            } else if (c != "base") {
                std::fprintf(stderr, "fraud_bench: --case base|caller|device\n");
                return 2;
            }
        }
    }
    const char* case_name = g_case == Case::caller   ? "fraud-caller"
                            : g_case == Case::device ? "fraud-device"
                                                     : "fraud";
    if (paths != "both" && paths != "single" && paths != "burst") {
        std::fprintf(stderr, "fraud_bench: --path single|burst|both\n");
        return 2;
    }
    constexpr double kTarget = 1e6;  // evaluations/s per core
    Run single, burst;
    const bool do_single = paths != "burst", do_burst = paths != "single";
    // Each path on its own engine (created after the previous one is freed): same workload,
    // same starting state.
    if (do_single && !run(Path::single, keys, evals, nrules, true, single)) return 1;
    if (do_burst && !run(Path::burst, keys, evals, nrules, !do_single, burst)) return 1;
    const Run& shown = do_single ? single : burst;
    for (const auto& [id, count] : shown.fired)
        if (count * 100 >= evals)
            std::printf("  rule %s fired on %.1f%% of attempts\n", id.c_str(),
                        100.0 * static_cast<double>(count) / static_cast<double>(evals));
    if (do_single && do_burst && single.non_allow != burst.non_allow) {
        // on_attempts promises the verdicts of on_attempt one by one: a difference is a bug.
        std::fprintf(stderr,
                     "fraud_bench: the paths disagree: %lu non-allow (single) vs %lu (burst)\n",
                     static_cast<unsigned long>(single.non_allow),
                     static_cast<unsigned long>(burst.non_allow));
        return 1;
    }
    if (do_burst) {
        char vs[64] = "";
        if (do_single && single.rate > 0)
            std::snprintf(vs, sizeof vs, " (%.2fx the single path)", burst.rate / single.rate);
        std::printf(
            "burst path (Engine::on_attempts, 32 per call; not what the daemon calls): %.0f "
            "evals/s per core%s\n",
            burst.rate, vs);
    }
    const Run& r = do_single ? single : burst;
    const Path p = do_single ? Path::single : Path::burst;
    std::printf("target %.0f evals/s per core on the %s path: %s\n", kTarget, path_name(p),
                r.rate >= kTarget ? "met" : "NOT met");
    std::printf("RESULT case=%s metric=evals_per_s path=%s ours=%.0f\n", case_name, path_name(p),
                r.rate);
    return 0;
}
